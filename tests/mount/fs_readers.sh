#!/usr/bin/env bash
# Mount test: atomic commits. fs_readers rewrites a file through a kvfs mount
# of two real servers ($KVFS_TEST_PROVIDER) (O_TRUNC rewrites and
# temp-file-plus-rename, versions of 8 bytes to 3 MiB) while reader threads on
# the same mount and on a second mount read it whole: every read must be one
# complete version, never a mix, never empty, never older than one already
# committed. First fs_readers' own test on a plain dir: renames must pass and
# O_TRUNC rewrites must be caught tearing.
#   fs_readers.sh BUILD_DIR [SOURCE_DIR]
. "$(dirname "$0")/mount_lib.sh"
ml_init "$@"
FSR=$BUILD/tests/mount/fs_readers
[ -x "$FSR" ] || { record "fs_readers is built ($FSR)" 1; ml_finish; }
versions=${FS_READERS_VERSIONS:-300}
secs=${FS_READERS_SECONDS:-15}
CHECK_TIMEOUT=$((secs + 30))

mkdir -p "$T/plain"
check "self-test: plain dir, rename-over versions: every read whole" "$FSR" --method rename --versions 100 --seconds 10 "$T/plain/a"
t_detects() {
	"$FSR" --method trunc --versions 100 --seconds 10 "$T/plain/b"
	[ $? -eq 1 ]
}
check "self-test: plain dir, O_TRUNC rewrites: torn reads are detected" t_detects

ml_config 2
ml_servers_start || { record "servers start" 1; ml_finish; }
M=$T/m
M2=$T/m2
ml_mount "$M" || { record "mount" 1; ml_finish; }
ml_mount "$M2" -o attr_timeout=0,entry_timeout=0,negative_timeout=0 || record "second mount" 1
mkdir -p "$M/r"

summary() { grep -h 'versions written' "$T/out" | sed 's/^/    /'; }
check "3 readers on the mount while the writer rewrites (O_TRUNC and rename)" \
	"$FSR" --versions "$versions" --seconds "$secs" --readers 3 --seed 1 "$M/r/key1"
summary
check "readers on a second mount only (attr_timeout=0)" \
	"$FSR" --versions "$versions" --seconds "$secs" --readers 2 --seed 2 "$M/r/key2" "$M2/r/key2"
summary
check "readers on the same mount and on a second mount" \
	"$FSR" --versions "$versions" --seconds "$secs" --readers 3 --seed 4 "$M/r/key4" "$M/r/key4" "$M2/r/key4"
summary
check "O_TRUNC rewrites only: every read whole" \
	"$FSR" --method trunc --versions "$((versions / 2))" --seconds "$secs" --readers 2 --seed 3 "$M/r/key3"
summary
check "the file ends as the last version" sh -c "test \"\$(stat -c %s '$M/r/key3')\" -gt 0 && test ! -e '$M/r/key1.tmp'"
ml_finish
