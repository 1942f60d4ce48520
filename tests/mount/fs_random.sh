#!/usr/bin/env bash
# Mount test: the randomized checker fs_check applies the same random
# operations to a kvfs mount of two real servers ($KVFS_TEST_PROVIDER) and to
# a plain temp dir, comparing every result. First its own test on two plain
# dirs (no divergence allowed, and an injected difference must be found), then
# fixed seeds 1, 2, 3 and one random seed (printed) on the mount.
#   fs_random.sh BUILD_DIR [SOURCE_DIR]
# Environment: FS_RANDOM_OPS (default 3000), FS_RANDOM_SECONDS per seed (20),
# FS_RANDOM_SEEDS (default "1 2 3 random").
. "$(dirname "$0")/mount_lib.sh"
ml_init "$@"
FSC=$BUILD/tests/mount/fs_check
[ -x "$FSC" ] || { record "fs_check is built ($FSC)" 1; ml_finish; }
ops=${FS_RANDOM_OPS:-3000}
secs=${FS_RANDOM_SECONDS:-20}
seeds=${FS_RANDOM_SEEDS:-1 2 3 random}
CHECK_TIMEOUT=$((secs + 60))

# The checker's own test: plain dir against plain dir (tmpfs against tmpfs if
# /dev/shm is there).
refroot=$T
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	ml_tempdir /dev/shm && refroot=$ML_TEMPDIR
fi
selftest() {
	mkdir -p "$refroot/self-a$1" "$refroot/self-b$1" &&
		"$FSC" --seed "$1" --ops "$ops" --seconds "$secs" "$refroot/self-a$1" "$refroot/self-b$1"
}
check "self-test: fs_check on two plain dirs, seed 1: no divergence" selftest 1
check "self-test: fs_check on two plain dirs, seed 2: no divergence" selftest 2
inject() {
	mkdir -p "$T/inj-a" "$refroot/inj-b"
	"$FSC" --seed 5 --ops 500 --inject 100 "$T/inj-a" "$refroot/inj-b" 2>"$T/inj.err"
	local rc=$?
	cat "$T/inj.err"
	[ "$rc" -eq 1 ] && grep -q 'DIVERGENCE.*injected-difference' "$T/inj.err"
}
check "self-test: fs_check finds an injected difference" inject
rm -rf "$refroot"/self-a* "$refroot"/self-b* "$T/inj-a" "$refroot/inj-b"

ml_config 2
ml_servers_start || { record "servers start" 1; ml_finish; }
M=$T/m
ml_mount "$M" || { record "mount" 1; ml_finish; }

run_seed() { # SEED
	mkdir -p "$M/seed$1" "$refroot/ref$1" || return 1
	"$FSC" --seed "$1" --ops "$ops" --seconds "$secs" --trace "$T/trace$1" "$M/seed$1" "$refroot/ref$1"
}
for s in $seeds; do
	[ "$s" = random ] && s=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ') && echo "# random seed: $s"
	check "fs_check seed $s: the mount behaves as the reference dir" run_seed "$s"
	if [ "$ml_rc" -eq 124 ]; then # killed: the operation it hung in is the trace's last line
		echo "    the last operations before the hang:"
		tail -5 "$T/trace$s" | sed 's/^/      /'
	fi
	grep -h 'operations in' "$T/out" | sed 's/^/    /'
	rm -rf "${refroot:?}/ref$s"
done
check "the mount still lists" ls "$M"
ml_finish
