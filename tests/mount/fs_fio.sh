#!/usr/bin/env bash
# Mount test: fio write-and-verify jobs (crc32c) on a kvfs mount of one real
# server ($KVFS_TEST_PROVIDER): sequential and random writes with several block
# sizes, two jobs at once, then a verify-only pass in a new process (reads what
# the close committed). No verify errors, no I/O errors. Sizes and run times
# are bounded.
#   fs_fio.sh BUILD_DIR [SOURCE_DIR]
. "$(dirname "$0")/mount_lib.sh"
ml_init "$@"
command -v fio >/dev/null || { record "fio is installed (scripts/deps)" 1; ml_finish; }

ml_config 1
ml_servers_start || { record "servers start" 1; ml_finish; }
M=$T/m
ml_mount "$M" || { record "mount" 1; ml_finish; }
mkdir -p "$M/fio"
runtime=$((60 * ML_SLOW))
CHECK_TIMEOUT=$((runtime + 60))

fio_job() { # NAME ARGS...: fails on a non-zero exit or any error or verify complaint in the output
	local name=$1
	shift
	cd "$T" || return 1 # fio writes state files in the current directory
	fio --name="$name" --directory="$M/fio" --ioengine=psync --fallocate=none --direct=0 \
		--verify=crc32c --verify_fatal=1 --verify_dump=0 --verify_state_save=0 --randseed=1234 \
		--runtime="$runtime" --group_reporting "$@" >"$T/fio-$name.out" 2>&1
	local rc=$?
	grep -E 'err=|verify|bad|error' "$T/fio-$name.out" | head -20
	grep -E 'WRITE:|READ:' "$T/fio-$name.out"
	[ "$rc" -eq 0 ] && ! grep -E 'err= *[1-9]|verify: bad|bad magic|crc32c: verify failed|fio: .*error' "$T/fio-$name.out"
}

check "fio sequential write bs=1M size=64M, verify" fio_job seq1m --rw=write --bs=1M --size=64M --do_verify=1 --end_fsync=1
check "fio verify-only of seq1m in a new process (committed data)" fio_job seq1m --rw=write --bs=1M --size=64M --verify_only
check "fio random write bs=4k size=8M, verify" fio_job rand4k --rw=randwrite --bs=4k --size=8M --do_verify=1
check "fio verify-only of rand4k in a new process" fio_job rand4k --rw=randwrite --bs=4k --size=8M --verify_only
check "fio random write bs=4k..1M size=48M, verify" fio_job randmix --rw=randwrite --bsrange=4k-1M --size=48M --do_verify=1 --fsync=16
check "fio sequential write bs=64k, 2 jobs at once, 24M each, verify" fio_job two --rw=write --bs=64k --size=24M --numjobs=2 --do_verify=1
check "fio random write bs=128k over an existing file (no truncate), verify" fio_job rand4k --rw=randwrite --bs=128k --size=8M --do_verify=1 --overwrite=1
check "fio files are listed with their sizes" sh -c "ls -l '$M/fio' && test \"\$(stat -c %s '$M/fio/seq1m.0.0')\" -eq 67108864"
ml_finish
