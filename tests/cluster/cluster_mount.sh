#!/usr/bin/env bash
# cluster_mount.sh BUILD [SRC]: the mount on a client host, its keys on two
# server hosts (network namespaces, two tcp rails each, servers in their own
# pid namespaces: cluster_lib.sh).
#
# - the shell workflow: cp -a of a tree in and out, diff -r, mv of a file
#   and of a directory, ls -l, rm -r, with the tree's keys on both servers;
# - s1's host blackholed (iptables DROP, no RST), client.timeout_ms = 2000:
#   the first call to s1 (a `cat` of a file the mount had seen, whose
#   revalidation goes to s1) fails with EIO within the timeout + 1 s, and
#   from then on s1 is down: cat of seen and never-seen names there, and a
#   listing that needs s1, fail with EIO at once (< 0.5 s) instead of each
#   waiting the timeout again (twice for a seen file: the revalidation and a
#   fresh lookup); s2's files read at their usual latency meanwhile, and a
#   file is created there. The rule removed, the mount's probe brings s1
#   back within a bounded wait. Then again with a never-seen name first.
# - one mount with provider "auto" spanning a server on the client's own
#   host (s0: shm, its pool mapped) and the two on other hosts (tcp).
CL_HERE=$(cd "$(dirname "$0")" && pwd)
. "$CL_HERE/cluster_lib.sh"
cl_init "$@"
cl_net || { echo "FAIL: cannot build the namespaces"; exit 1; }
CL_TIMEOUT_MS=2000
cl_config tcp
cl_server_start s1 && cl_server_start s2 || { echo "FAIL: servers did not start"; exit 1; }
M=$T/mnt
ml_mount "$M" || { echo "FAIL: no mount"; exit 1; }

# --- the shell workflow -------------------------------------------------------
S=$T/src
mkdir -p "$S/d1/sub" "$S/d2" "$S/d3"
for i in $(seq 1 8); do
	echo "file $i of d1" >"$S/d1/f$i"
	echo "file $i of d2, $RANDOM" >"$S/d2/g$i"
	echo "file $i of d3" >"$S/d3/h$i"
done
echo deep >"$S/d1/sub/deep"
head -c 3145728 /dev/urandom >"$S/d2/big"
ln -s ../d2/g1 "$S/d1/link"
chmod 600 "$S/d1/f2"

check "cp -a of a tree into the mount" cp -a "$S" "$M/tree"
check "diff -r of the tree in the mount" diff -r "$S" "$M/tree"
servers_under() { # DIR: how many regular files below DIR each server holds
	local f
	find "$1" -type f | while read -r f; do
		getfattr --only-values -n user.kvfs.server "$f" 2>/dev/null
		echo
	done | sort | uniq -c
}
both_servers() {
	local s
	s=$(servers_under "$M/tree")
	echo "$s"
	echo "$s" | grep -q ' s1$' && echo "$s" | grep -q ' s2$'
}
check "the tree's keys are on both servers" both_servers
check "cp -a out of the mount, diff -r" sh -c "cp -a '$M/tree' '$T/copy-out' && diff -r '$S' '$T/copy-out'"
mv_file() {
	mv "$M/tree/d1/f3" "$M/tree/d2/f3-moved" && [ ! -e "$M/tree/d1/f3" ] &&
		cmp "$S/d1/f3" "$M/tree/d2/f3-moved"
}
check "mv of a file (to another directory)" mv_file
mv_dir() { # not empty: EXDEV, so mv copies and removes
	mv "$M/tree/d3" "$M/tree/d3-moved" && [ ! -e "$M/tree/d3" ] && diff -r "$S/d3" "$M/tree/d3-moved"
}
check "mv of a directory" mv_dir
ls_l() {
	ls -l "$M/tree/d2" >"$T/ls" || return 1
	cat "$T/ls"
	grep -qE "^-rw-r--r-- .* 3145728 .* big$" "$T/ls" && [ "$(grep -c ' g[0-9]$' "$T/ls")" = 8 ] &&
		ls -l "$M/tree/d1" | grep -qE '^-rw------- .* f2$'
}
check "ls -l shows sizes, modes and names" ls_l
rm_r() { rm -r "$M/tree/d3-moved" && [ ! -e "$M/tree/d3-moved" ] && ! ctl ls tree/d3-moved/ | grep -q .; }
check "rm -r of a directory" rm_r

# --- s1 blackholed --------------------------------------------------------------
# A file of each server that the mount has seen (read), names it never saw
# on s1 (put by kvfsctl, not listed since), and a free name of s2's.
# s2's are at the top of the mount: a path through a directory needs every
# server while the kernel revalidates that directory (a listing: see the
# README, "a dead server"), so below the top, s2's files fail too.
seen1=
for f in "$M"/tree/d1/f* "$M"/tree/d2/g*; do
	s=$(getfattr --only-values -n user.kvfs.server "$f" 2>/dev/null)
	[ "$s" = s1 ] && [ -z "$seen1" ] && seen1=$f
done
seen2=$(key_on s2 top-s2) && seen2=$M/$seen2
unseen1=$(key_on s1 tree/d2/unseen-a)
unseen1b=$(key_on s1 tree/d2/unseen-b)
new2=$(key_on s2 new-s2) && ctl rm "$new2"
record "a seen file of each server, unseen names on s1" \
	$([ -n "$seen1" ] && [ -n "$seen2" ] && [ -n "$unseen1" ] && [ -n "$unseen1b" ] && [ -n "$new2" ] && echo 0 || echo 1) \
	"s1: $seen1, s2: $seen2; unseen on s1: $unseen1 $unseen1b; new on s2: $new2"
cat "$seen1" "$seen2" >/dev/null

# One cat: its seconds on stdout ("fail" if it did not fail with EIO, "ok" if it worked).
cat_time() {
	local t0 d
	t0=$(ml_now)
	if cat "$1" >/dev/null 2>"$T/cat.err"; then
		d=$(ml_since "$t0")
		echo "ok $d"
		return
	fi
	d=$(ml_since "$t0")
	grep -q 'Input/output error' "$T/cat.err" && echo "EIO $d" || echo "fail $d $(cat "$T/cat.err")"
}
best_cat() { # FILE: the fastest of 3 cats, seconds
	local b=999 r
	for _ in 1 2 3; do
		r=$(cat_time "$1")
		[ "${r%% *}" = ok ] || { echo "$r"; return; }
		ml_le "${r#ok }" "$b" && b=${r#ok }
	done
	echo "$b"
}
lim1=$(awk -v t="$CL_TIMEOUT_MS" -v f="$ML_SLOW" 'BEGIN { print (t / 1000 + 1) * f }')
fast=$(awk -v f="$ML_SLOW" 'BEGIN { print 0.5 * f }')
is_eio_within() { # RESULT LIMIT
	[ "${1%% *}" = EIO ] && ml_le "${1#EIO }" "$2"
}
base2=$(best_cat "$seen2")
# wait_up FILE: cat it every 0.1 s until it works (at most 15 s); prints the seconds.
wait_up() {
	local t0 i
	t0=$(ml_now)
	for ((i = 0; i < 150 * ML_SLOW; i++)); do
		cat "$1" >/dev/null 2>&1 && { ml_since "$t0"; return 0; }
		sleep 0.1
	done
	echo "not within $((15 * ML_SLOW)) s"
	return 1
}

sleep 1.1 # past attr_timeout and entry_timeout (1 s): the next cat revalidates at s1
cl_blackhole s1 on
record "s1's links drop everything (iptables DROP)" $?
r=$(cat_time "$seen1")
record "cat of a seen file of s1: EIO within timeout_ms + 1 s" "$(is_eio_within "$r" "$lim1" && echo 0 || echo 1)" "$r"
echo "# blackholed, seen file first: cat of the seen file of s1: $r s"
r2=$(cat_time "$seen1")
record "cat of it again: EIO at once (s1 is down)" "$(is_eio_within "$r2" "$fast" && echo 0 || echo 1)" "$r2"
r3=$(cat_time "$M/$unseen1")
record "cat of a never-seen name of s1: EIO at once" "$(is_eio_within "$r3" "$fast" && echo 0 || echo 1)" "$r3"
echo "# then: seen file again: $r2 s; a never-seen name: $r3 s"
check "ls of a directory with keys on s1 fails with EIO at once, not a shorter listing" \
	timed_fail "$fast" "Input/output error" ls "$M/tree/d2"
during2=$(best_cat "$seen2")
record "s2's file reads at its usual latency meanwhile" \
	"$(ml_le "$during2" "$(awk -v b="$base2" 'BEGIN { print b + 0.3 }')" && echo 0 || echo 1)" \
	"cat, best of 3: $during2 s (before: $base2 s)"
echo "# cat of s2's file, best of 3: $during2 s while s1 is blackholed, $base2 s before"
check "s2's file rewritten meanwhile" sh -c "echo written-during > '$seen2' && grep -qx written-during '$seen2'"
# A new name needs every server (is it a directory? a listing): EIO, at once.
check "a new name fails with EIO at once meanwhile (the lookup lists every server)" \
	timed_fail "$fast" "Input/output error" sh -c "echo x > '$M/$new2'"
cl_blackhole s1 off
record "DROP rule removed" $?
up=$(wait_up "$seen1")
record "s1 back: cat of its file works again (the probe reconnected)" $? "after $up s"
echo "# s1 answers again $up s after the rule went"
check "the tree reads whole again" diff -r -x f3 "$S/d1" "$M/tree/d1"

# Again, a never-seen name first.
sleep 1.1
cl_blackhole s1 on
record "s1 blackholed again" $?
r=$(cat_time "$M/$unseen1b")
record "cat of a never-seen name of s1 first: EIO within timeout_ms + 1 s" "$(is_eio_within "$r" "$lim1" && echo 0 || echo 1)" "$r"
r2=$(cat_time "$seen1")
record "then cat of a seen file of s1: EIO at once" "$(is_eio_within "$r2" "$fast" && echo 0 || echo 1)" "$r2"
echo "# blackholed, never-seen name first: $r s; then the seen file: $r2 s"
cl_blackhole s1 off
record "DROP rule removed" $?
up=$(wait_up "$seen1")
record "s1 back again" $? "after $up s"
check "the never-seen name reads after it is back" sh -c "[ \"\$(cat '$M/$unseen1b')\" = x${unseen1b##*.} ]"
ml_umount "$M"
record "unmount (daemon exits 0)" $?

# --- provider auto: a server on the client's host and two on others ---------------
for s in s1 s2; do
	cl_server_stop "$s"
	record "server $s stops cleanly on SIGTERM" $?
done
cl_config auto 1
cl_server_start s0 && cl_server_start s1 && cl_server_start s2 || { echo "FAIL: servers did not start"; exit 1; }
M2=$T/mnt-auto
ml_mount "$M2" -d || { echo "FAIL: no mount"; exit 1; }
check "auto: cp -a of the tree in, diff -r" sh -c "cp -a '$S' '$M2/tree' && diff -r '$S' '$M2/tree'"
all_three() {
	local s
	s=$(servers_under "$M2/tree")
	echo "$s"
	echo "$s" | grep -q ' s0$' && { echo "$s" | grep -q ' s1$' || echo "$s" | grep -q ' s2$'; }
}
check "auto: keys on the local server and on another host's" all_three
check "auto: cp -a out, diff -r" sh -c "cp -a '$M2/tree' '$T/copy-out-auto' && diff -r '$S' '$T/copy-out-auto'"
L=$T/kvfs-mnt-auto.log
check "auto: s0 (this host) by shm, its pool mapped" grep -q 'server s0: session on shm, reads from its pool mapped here' "$L"
check "auto: s1 and s2 (other hosts) by tcp, no pool mapped" sh -c "
	for s in s1 s2; do grep -q \"server \$s: session on tcp\" '$L' || exit 1; done
	! grep -qE 'server s[12]: session on .*pool mapped' '$L'"

cl_finish
