#!/usr/bin/env bash
# run.sh TARGET CORPUS SECONDS [libFuzzer flags...]: run one fuzz target for
# SECONDS over the seeds in CORPUS (read only: what it finds goes to a
# scratch directory, removed at the end). A crash, leak or timeout fails
# (exit 1, never libFuzzer's 77, which meson would take for a skip); its
# input is kept as ./crash-*, ./leak-* or ./timeout-* in the working
# directory (the build's tests/fuzz) and the log says which. README "Fuzzing".
set -uo pipefail
target=$1 corpus=$2 seconds=$3
shift 3
scratch=$(mktemp -d "${TMPDIR:-/tmp}/kvfs-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$scratch"' EXIT
"$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -error_exitcode=1 \
	-timeout_exitcode=1 -print_final_stats=1 -artifact_prefix="$PWD/" "$@" "$scratch" "$corpus"
rc=$?
((rc == 0)) || exit 1
