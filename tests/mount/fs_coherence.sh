#!/usr/bin/env bash
# Mount test: caches coherent across mounts (issue 12). Two mounts of one
# real server ($KVFS_TEST_PROVIDER): A writes, B reads with the invalidation
# defaults (60 s attribute and name timeouts), and C, a control, reads with
# -o noinval and the same 60 s timeouts. A change on A (size and bytes,
# rename, unlink, create, chmod) must show on B within WITHIN seconds, far
# below its timeouts, while C still shows the old state then (so the
# servers' invalidation is what did it, not an expired cache); a key's TTL
# caps how long B caches it; a key the server evicts goes from B too; a
# server restart in the middle makes B forget
# what it cached, and B still sees later changes.
#   fs_coherence.sh BUILD_DIR [SOURCE_DIR]
. "$(dirname "$0")/mount_lib.sh"
ml_init "$@"

WITHIN=${WITHIN:-0.5} # seconds: an invalidation takes milliseconds; 0.5 leaves room on a busy host

ml_config 1 32M 8M # a small pool: the eviction check fills it
ml_servers_start || { record "servers start" 1; ml_finish; }
A=$T/a B=$T/b C=$T/c
ml_mount "$A" || { record "mount A" 1; ml_finish; }
ml_mount "$B" || { record "mount B" 1; ml_finish; }
ml_mount "$C" -o noinval,attr_timeout=60,entry_timeout=60 || { record "mount C" 1; ml_finish; }

# within SECS CMD...: CMD succeeds within SECS seconds (polled every 10 ms); prints how long it took.
within() {
	local secs=$1 t0
	shift
	t0=$(ml_now)
	while ! "$@" >/dev/null 2>&1; do
		ml_le "$secs" "$(ml_since "$t0")" && { echo "not within $secs s: $*"; return 1; }
		sleep 0.01
	done
	echo "took $(ml_since "$t0") s"
}
size_is() { test "$(stat -c %s "$1")" = "$2"; }
has() { cat "$1" | grep -qx "$2"; }
gone() { ! stat "$1"; }
export -f within size_is has gone ml_now ml_since ml_le

t_change() {
	printf 'one\n' >"$A/f" || return 1
	size_is "$B/f" 4 && has "$B/f" one && size_is "$C/f" 4 || { echo "first reads"; return 1; }
	printf 'second value\n' >"$A/f" || return 1
	within "$WITHIN" size_is "$B/f" 13 || return 1
	within "$WITHIN" has "$B/f" 'second value' || return 1
	size_is "$C/f" 4 || { echo "the control mount saw the change at once: is its cache long?"; return 1; }
	# and again (a file B knows from a listing only: ls -l, readdirplus)
	printf 'l\n' >"$A/g" && ls -l "$B" >/dev/null && size_is "$B/g" 2 || return 1
	printf 'longer\n' >"$A/g" || return 1
	within "$WITHIN" size_is "$B/g" 7
}
check "a change on A (size and bytes) shows on B within $WITHIN s; the noinval control still shows the old size" t_change

t_names() {
	mkdir "$A/d" && printf 'x\n' >"$A/d/x" && printf 'w\n' >"$A/d/w" || return 1
	ls "$B/d" >/dev/null && stat "$B/d/x" "$B/d/w" >/dev/null && ls -l "$C/d" >/dev/null || return 1
	mv "$A/d/x" "$A/d/y" && rm "$A/d/w" && printf 'z\n' >"$A/d/z" || return 1
	within "$WITHIN" gone "$B/d/x" || return 1
	within "$WITHIN" gone "$B/d/w" || return 1
	test "$(ls "$B/d" | tr '\n' ' ')" = "y z " || { echo "B lists: $(ls "$B/d")"; return 1; }
	has "$B/d/y" x || return 1
	stat "$C/d/x" >/dev/null || { echo "the control dropped the renamed name at once"; return 1; }
	chmod 600 "$A/d/y" || return 1
	within "$WITHIN" sh -c "test \"\$(stat -c %a '$B/d/y')\" = 600"
}
check "rename, unlink, create and chmod on A show on B within $WITHIN s" t_names

t_evict() {
	local i n=0
	for ((i = 0; i < 3; i++)); do head -c 7M /dev/zero >"$A/big$i" || return 1; done
	ls -l "$B" >/dev/null || return 1
	# 3 x 7 MiB more than a 32 MiB pool holds: the server evicts some of big0..2
	for ((i = 3; i < 6; i++)); do head -c 7M /dev/zero >"$A/big$i" || return 1; done
	for ((i = 0; i < 3; i++)); do
		ctl stat "big$i" >/dev/null 2>&1 && continue
		n=$((n + 1))
		within "$WITHIN" gone "$B/big$i" || return 1
	done
	echo "$n of big0..2 evicted"
	[ "$n" -gt 0 ]
}
check "a key the server evicts goes from B within $WITHIN s" t_evict

t_ttl() {
	printf 'short-lived\n' >"$A/t" && setfattr -n user.kvfs.ttl -v 2 "$A/t" || return 1
	stat "$B/t" >/dev/null || return 1
	# the key expires on the server within 2 s (no invalidation is sent for that): B's cache ends with it
	within 3.5 gone "$B/t"
}
check "a key's TTL caps how long B caches it" t_ttl

t_restart_before() {
	printf 'before restart\n' >"$A/r" && has "$B/r" 'before restart'
}
check "B reads r before the server restarts" t_restart_before
ml_server_restart s0 || { record "server restarts" 1; ml_finish; }
t_restart_after() {
	# the restarted server is empty: B must not keep showing r from its 60 s cache
	within 2 gone "$B/r" || return 1
	printf 'after\n' >"$A/r2" || return 1
	has "$B/r2" after || return 1
	printf 'after, longer\n' >"$A/r2" || return 1
	within "$WITHIN" size_is "$B/r2" 14
}
check "after a server restart B drops its cache and still sees later changes" t_restart_after

ml_finish
