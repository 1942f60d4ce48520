#!/usr/bin/env bash
# cluster_ctl.sh BUILD [SRC]: kvfsctl from a client host to two server hosts
# (network namespaces, two tcp rails each, servers in their own pid
# namespaces: cluster_lib.sh), then one server host blackholed.
#
# - put/stat/get/ls/rm of small and multi-MiB values (3 MiB, and 12 MiB:
#   more than one receive slot, so a multi-piece GET) on each server, checked
#   by sha256, and the bytes of each large get seen on the client's link;
# - s1's links dropping everything (iptables DROP, no RST): a call to its key
#   fails within client.timeout_ms + 1 s, a listing that needs it fails, s2
#   answers meanwhile as fast as before, and in one session (kvfsctl batch)
#   only the first call waits the timeout: the next fail at once (the server
#   is down until a probe reaches it);
# - the rule removed: the next calls work.
CL_HERE=$(cd "$(dirname "$0")" && pwd)
. "$CL_HERE/cluster_lib.sh"
cl_init "$@"
cl_net || { echo "FAIL: cannot build the namespaces"; exit 1; }
CL_TIMEOUT_MS=1000 # short: each blackholed call waits it once
cl_config tcp
cl_server_start s1 && cl_server_start s2 || { echo "FAIL: servers did not start"; exit 1; }

# A key of each server, found by kvfsctl stat (rendezvous hashing decides).
declare -A key=()
for ((i = 0; i < 64 && (${#key[@]} < 2); i++)); do
	echo "v$i" | ctl put "probe$i" - || break
	s=$(ctl stat "probe$i" | awk '$1 == "server:" { print $2 }')
	[ -n "${key[$s]:-}" ] || key[$s]=probe$i
done
record "keys found on both servers" $([ -n "${key[s1]:-}" ] && [ -n "${key[s2]:-}" ] && echo 0 || echo 1) "s1=${key[s1]:-} s2=${key[s2]:-}"

head -c 3145728 /dev/urandom >"$T/v3M"
head -c 12582912 /dev/urandom >"$T/v12M"
printf 'small value\n' >"$T/vsmall"

# rx bytes of the client's rail a to server S (where its fabric traffic goes).
cn_rx() { ip netns exec "${CL_PFX}c" cat "/sys/class/net/$1a/statistics/rx_bytes"; }
roundtrip() { # SERVER FILE: put under a key of SERVER's, get back, same sha256, on the link
	local s=$1 f=$2 k rx0 rx1 sz
	sz=$(stat -c %s "$f")
	k=$(key_on "$s" "${key[$s]}/$(basename "$f")") || { echo "no key on $s"; return 1; }
	echo "$k" >>"$T/keys.$s"
	ctl put "$k" "$f" || return 1
	[ "$(ctl stat "$k" | awk '$1 == "size:" { print $2 }')" = "$sz" ] || { echo "stat size differs"; return 1; }
	rx0=$(cn_rx "$s")
	ctl get "$k" "$T/got.$s" || return 1
	rx1=$(cn_rx "$s")
	[ "$(sha256sum <"$T/got.$s")" = "$(sha256sum <"$f")" ] || { echo "sha256 differs"; return 1; }
	# The value crossed the client's link to s (by RMA over tcp), not a shortcut.
	((rx1 - rx0 >= sz)) || { echo "only $((rx1 - rx0)) bytes arrived on link ${s}a for $sz"; return 1; }
}
for s in s1 s2; do
	: >"$T/keys.$s"
	for f in vsmall v3M v12M; do
		check "put/stat/get of $f on $s, sha256 and bytes on its link" roundtrip "$s" "$T/$f"
	done
done
ls_rm() { # SERVER: its keys listed under their prefix, removed, then misses
	local s=$1 k
	ctl ls "${key[$s]}/" >"$T/ls.$s" || return 1
	for k in $(cat "$T/keys.$s"); do
		grep -qxF "$k" "$T/ls.$s" || { echo "ls ${key[$s]}/ misses $k"; return 1; }
	done
	# shellcheck disable=SC2046
	ctl rm $(cat "$T/keys.$s") || return 1
	for k in $(cat "$T/keys.$s"); do
		if ctl get "$k" "$T/got.$s" 2>"$T/rmerr.$s" || ! grep -q 'no such key' "$T/rmerr.$s"; then
			echo "get of $k after rm: $(cat "$T/rmerr.$s")"
			return 1
		fi
	done
	! ctl ls "${key[$s]}/" | grep -q . || { echo "ls ${key[$s]}/ not empty after rm"; return 1; }
}
for s in s1 s2; do
	check "ls and rm of those keys on $s, get after rm: no such key" ls_rm "$s"
done
lists_both() { ctl ls >"$T/ls" && grep -qxF "${key[s1]}" "$T/ls" && grep -qxF "${key[s2]}" "$T/ls"; }
check "ls lists keys of both servers" lists_both

# Baseline latency of a one-shot get on the healthy server (the best of 3).
best() { # CMD...: fastest of 3 runs, seconds
	local b=999 t0 d
	for _ in 1 2 3; do
		t0=$(ml_now)
		"$@" >/dev/null 2>&1 || return 1
		d=$(ml_since "$t0")
		ml_le "$d" "$b" && b=$d
	done
	echo "$b"
}
base=$(best ctl get "${key[s2]}")

# --- s1 blackholed ----------------------------------------------------------
cl_blackhole s1 on
record "s1's links drop everything (iptables DROP)" $?
cl_lim=$(awk -v t="$CL_TIMEOUT_MS" -v f="$ML_SLOW" 'BEGIN { print (t / 1000 + 1) * f }')
check "get of s1's key fails within timeout_ms + 1 s" timed_fail "$cl_lim" "" ctl get "${key[s1]}"
check "put to s1 fails within timeout_ms + 1 s" timed_fail "$cl_lim" "" ctl put "${key[s1]}" "$T/vsmall"
check "ls (needs s1) fails, not a shorter listing, within timeout_ms + 1 s" timed_fail "$cl_lim" "" ctl ls
during=$(best ctl get "${key[s2]}")
echo "# one-shot get of s2's key, best of 3: $during s while s1 is blackholed, $base s before"
record "s2 answers at its usual latency meanwhile" \
	$(ml_le "$during" "$(awk -v b="$base" 'BEGIN { print b + 0.3 }')" && echo 0 || echo 1) \
	"one-shot get: $during s (before: $base s)"
# One session: the first call waits the timeout, the next ones fail at once.
batch_times() {
	local t0 d out bound
	bound=$(awk -v l="$cl_lim" 'BEGIN { print l + 0.5 }')
	t0=$(ml_now)
	out=$(printf 'get %s\nget %s\nget %s\nget %s\n' "${key[s1]}" "${key[s1]}" "${key[s1]}" "${key[s2]}" |
		ctl batch 2>/dev/null)
	d=$(ml_since "$t0")
	echo "$out"
	echo "# batch of 3 gets of s1's key and one of s2's: $d s (at most $bound s)" >&3
	[ "$(echo "$out" | grep -c '^ERR')" -eq 3 ] || { echo "not 3 errors"; return 1; }
	[ "$(echo "$out" | tail -1)" = '"v'"${key[s2]#probe}"'\n"' ] || { echo "s2's get did not answer"; return 1; }
	ml_le "$d" "$bound"
}
exec 3>&1
check "in one session only the first call to s1 waits: the next fail at once" batch_times
cl_blackhole s1 off
record "DROP rule removed" $?
check "the next get of s1's key works" ctl get "${key[s1]}"
check "ls works again, with both servers' keys" lists_both

cl_finish
