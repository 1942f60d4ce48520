#!/bin/sh
# libkvfs exports exactly its API: every dynamic symbol it defines is a
# function declared in include/kvfs/kvfs.h (besides the version nodes KVFS_1,
# KVFS_1.1 of src/client/libkvfs.map), and every function declared there is exported.
# The common modules it links in (config_*, fab_*, log_*, sock_*, wire_*)
# must stay hidden.
set -u
lib=${1:?usage: symbols.sh LIBKVFS.so KVFS.H}
hdr=${2:?usage: symbols.sh LIBKVFS.so KVFS.H}
command -v nm >/dev/null || { echo "nm not found"; exit 77; }
tmp=$(mktemp -d /tmp/kvfs-symbols.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

nm -D --defined-only "$lib" >"$tmp/nm" || exit 1
# "ADDR TYPE NAME[@@VERSION]"; the version node is an absolute symbol.
awk '!($2 == "A" && $3 ~ /^KVFS_1(\.[0-9]+)?$/) { sub(/@.*/, "", $3); print $3 }' "$tmp/nm" | sort -u >"$tmp/exported"
grep -oE '\bkvfs_[a-z0-9_]+ *\(' "$hdr" | sed 's/ *($//' | sort -u >"$tmp/declared"

rc=0
if grep -qv '^kvfs_' "$tmp/exported"; then
	echo "libkvfs exports symbols outside kvfs_*:"
	grep -v '^kvfs_' "$tmp/exported" | sed 's/^/    /'
	rc=1
fi
if ! cmp -s "$tmp/exported" "$tmp/declared"; then
	echo "exported kvfs_* (<) and functions declared in kvfs.h (>) differ:"
	diff "$tmp/exported" "$tmp/declared" | grep '^[<>]' | sed 's/^/    /'
	rc=1
fi
[ -s "$tmp/exported" ] || { echo "no symbols read from $lib"; rc=1; }
[ "$rc" -eq 0 ] && echo "$(wc -l <"$tmp/exported") symbols, all kvfs_* and declared in kvfs.h"
exit "$rc"
