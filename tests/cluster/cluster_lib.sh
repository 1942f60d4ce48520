# cluster_lib.sh: a small cluster of network namespaces for the cluster_*.sh
# tests (bash), on top of tests/mount/mount_lib.sh (check, check_fail,
# record, ml_mount, ml_finish, its cleanup).
#
# Three "hosts": the client C and two servers S1 and S2, each a network
# namespace named kvfsT<pid>netns-{c,s1,s2}. Each server host is joined to the
# client by two veth pairs (two tcp rails, direct links, no switch):
#
#   rail a of S<i>: C 198.18.<i>1.1/24  <->  S<i> 198.18.<i>1.2/24
#   rail b of S<i>: C 198.18.<i>2.1/24  <->  S<i> 198.18.<i>2.2/24
#
# Only addresses of 198.18.0.0/15 (benchmarking, RFC 2544) and loopback are
# used, and only inside these namespaces. Each kvfs-server runs inside its
# host's namespace AND its own pid namespace (ip netns exec ... unshare --pid
# --fork), so the client can never map its pool (same-host reads need the
# server's pid): every byte travels by RMA over tcp. /dev/shm is shared,
# as between containers that share it. The client side
# (kvfsctl, the kvfs daemon) runs in C through `nsenter --net`, which keeps
# the test's mount namespace: the FUSE mount is visible to the test shell and
# its cleanup. However the test ends (EXIT, INT, TERM, HUP, PIPE), cl_cleanup unmounts,
# kills every process in the namespaces, deletes them (with their links,
# iptables rules and qdiscs) and then runs mount_lib's own cleanup.
#
#   cl_init BUILD [SRC]       skip (77) without root, ip netns, iptables, unshare, nsenter
#   cl_net                    make the namespaces and links
#   cl_config [PROV [LOCAL]]  $CONF: s1, s2 on rail a of their hosts (and, with LOCAL,
#                             s0 on the client's own host at 127.0.0.1), provider PROV
#   cl_server_start NAME      start it in its host (s0: on C itself), wait for a ping
#   cl_server_stop NAME       SIGTERM, it must exit 0
#   cl_blackhole NAME on|off  iptables DROP of everything arriving on its host's links
#   cn CMD...                 run CMD on the client host
#   ctl ARGS...               kvfsctl -c $CONF on the client host
#   server_of KEY             the server holding KEY (kvfsctl stat)
#   key_on SERVER PREFIX      a key PREFIX.N of SERVER's (a small value put there)
#   timed_fail LIMIT TEXT CMD...  CMD fails within LIMIT s, printing TEXT (stderr)

CL_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../mount/mount_lib.sh
. "$CL_HERE/../mount/mount_lib.sh"

CL_PFX=kvfsT$$netns-
CL_NS=()            # namespaces we made
declare -A cl_host=() # server name -> its namespace
declare -A cl_ip=()   # server name -> its address (rail a)
CL_PORT=7400

cl_init() {
	[ "$(id -u)" -eq 0 ] || ml_skip "not root (the cluster tests need network namespaces)"
	local t
	for t in ip iptables unshare nsenter; do
		command -v "$t" >/dev/null || ml_skip "$t is not installed (scripts/deps)"
	done
	export KVFS_TEST_PROVIDER=tcp
	ml_init "$@"
	trap cl_cleanup EXIT
	# A closed pipe (`| head`) or a hang-up must not leave namespaces behind either.
	trap 'ml_signalled=1; exit 129' HUP
	trap 'ml_signalled=1; exit 141' PIPE
	ip netns add "${CL_PFX}probe" 2>/dev/null || ml_skip "ip netns add fails here (no CAP_SYS_ADMIN, or no netns support)"
	ip netns del "${CL_PFX}probe"
	ip netns exec "$CL_PFX"c true 2>/dev/null && { echo "FATAL: namespace ${CL_PFX}c exists already"; exit 1; }
	ML_WRAP=(nsenter --net=/run/netns/"$CL_PFX"c)
}

cn() { nsenter --net=/run/netns/"$CL_PFX"c "$@"; }

# Run as the EXIT trap of the test's shell only (see ml_cleanup).
cl_cleanup() {
	local rc=$? m ns p
	[ "$BASHPID" = "$ml_shell" ] || exit "$rc"
	trap - EXIT INT TERM HUP
	trap "" PIPE # a closed pipe must not end the cleanup (writes just fail)
	if [ -n "$T" ]; then
		for m in $(awk -v t="$T/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
			fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
		done
	fi
	for ns in "${CL_NS[@]}"; do
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
	done
	for ns in "${CL_NS[@]}"; do
		for p in $(ip netns pids "$ns" 2>/dev/null); do ml_wait_gone "$p" 5; done
		ip netns del "$ns" 2>/dev/null
	done
	(exit "$rc")
	ml_cleanup
}

cl_link() { # NS_A IF_A ADDR_A NS_B IF_B ADDR_B: a veth pair between two namespaces
	ip link add "$2" netns "$1" type veth peer name "$5" netns "$4" &&
		ip -n "$1" addr add "$3/24" dev "$2" && ip -n "$1" link set "$2" up &&
		ip -n "$4" addr add "$6/24" dev "$5" && ip -n "$4" link set "$5" up
}

cl_net() {
	local ns i r n
	for ns in c s1 s2; do
		CL_NS+=("$CL_PFX$ns")
		ip netns add "$CL_PFX$ns" || return 1
		ip -n "$CL_PFX$ns" link set lo up || return 1
	done
	for i in 1 2; do
		n=0
		for r in a b; do
			n=$((n + 1))
			cl_link "$CL_PFX"c "s$i$r" "198.18.$i$n.1" "${CL_PFX}s$i" "c$r" "198.18.$i$n.2" || return 1
		done
		cl_host[s$i]=${CL_PFX}s$i
		cl_ip[s$i]=198.18.${i}1.2
	done
	cl_host[s0]=${CL_PFX}c
	cl_ip[s0]=127.0.0.1
	# Both rails carry packets: a TCP connect to each server address is
	# answered (accepted, or refused with an RST: nothing listens yet).
	for i in 1 2; do
		for n in 1 2; do
			cl_reaches "198.18.$i$n.2" || { ml_log "198.18.$i$n.2 does not answer"; return 1; }
		done
	done
}

# cl_reaches IP [PORT]: a TCP connect from the client host is answered within 2 s.
cl_reaches() {
	local out
	out=$(cn timeout 2 bash -c "exec 3<>/dev/tcp/$1/${2:-9}" 2>&1) && return 0
	[[ $out == *"Connection refused"* ]]
}

# cl_config [PROV [LOCAL]]: servers s1 and s2 (and s0 on the client's host
# when LOCAL is 1), client.timeout_ms = $CL_TIMEOUT_MS (default 2000).
cl_config() {
	local prov=${1:-tcp} local=${2:-0} s sep=
	ml_gen=$((ml_gen + 1))
	CONF=$T/kvfs-$ml_gen.conf
	ML_SERVERS=(s1 s2)
	[ "$local" = 1 ] && ML_SERVERS=(s0 s1 s2)
	{
		printf 'cluster = { servers = ('
		for s in "${ML_SERVERS[@]}"; do
			printf '%s { name = "%s"; address = "%s:%s"; }' "$sep" "$s" "${cl_ip[$s]}" "$CL_PORT"
			sep=,
		done
		printf ' ); };\n'
		printf 'fabric = { provider = "%s"; };\n' "$prov"
		printf 'server = { memory = "256M"; max_value = "64M"; };\n'
		printf 'client = { buffer = "64M"; timeout_ms = %s; };\n' "${CL_TIMEOUT_MS:-2000}"
	} >"$CONF"
	export KVFS_CONF=$CONF
}

cl_server_start() { # NAME
	local name=$1 i
	if [ "$name" = s0 ]; then
		nsenter --net=/run/netns/"$CL_PFX"c "$BUILD/kvfs-server" -c "$CONF" --name "$name" 2>>"$T/server-$name.log" &
	else
		# /dev/shm stays shared, as with containers that share it: each
		# server here is pid 1 of its namespace, and must leave the shm
		# regions of other pid namespaces alone (src/fabric: shm_sweep).
		ip netns exec "${cl_host[$name]}" unshare --pid --fork --kill-child \
			"$BUILD/kvfs-server" -c "$CONF" --name "$name" 2>>"$T/server-$name.log" &
	fi
	ml_spid[$name]=$!
	for ((i = 0; i < 100 * ML_SLOW; i++)); do
		ctl ping "$name" >/dev/null 2>&1 && return 0
		ml_alive "${ml_spid[$name]}" || break
		sleep 0.1
	done
	ml_log "server $name did not come up; its log:"
	tail -20 "$T/server-$name.log" >&2
	return 1
}

# The kvfs-server process of NAME (inside unshare's pid namespace, seen from ours).
cl_server_pid() {
	local p
	if [ "$1" = s0 ]; then
		echo "${ml_spid[$1]}"
		return
	fi
	p=$(ps -o pid= --ppid "${ml_spid[$1]}" 2>/dev/null | head -1)
	echo "${p// /}"
}

# SIGTERM to the server itself (unshare then exits with its status).
cl_server_stop() {
	local name=$1 pid=${ml_spid[$1]:-} srv rc
	[ -n "$pid" ] || return 0
	srv=$(cl_server_pid "$name")
	kill -TERM "${srv:-$pid}" 2>/dev/null
	ml_reap "$pid" $((10 * ML_SLOW))
	rc=$?
	ml_spid[$name]=
	[ "$rc" -eq 0 ] || { ml_log "server $name exited $rc; its log:"; ml_log_excerpt "$T/server-$name.log" >&2; }
	return "$rc"
}

# cl_blackhole NAME on|off: drop (no RST, no ICMP) every packet arriving at
# NAME's host on its links, both rails.
cl_blackhole() {
	local ns=${cl_host[$1]} op=-A
	[ "$2" = off ] && op=-D
	ip netns exec "$ns" iptables -w 5 "$op" INPUT -i ca -j DROP &&
		ip netns exec "$ns" iptables -w 5 "$op" INPUT -i cb -j DROP
}

server_of() { ctl stat "$1" | awk '$1 == "server:" { print $2 }'; }

key_on() {
	local j
	for ((j = 0; j < 64; j++)); do
		echo "x$j" | ctl put "$2.$j" - || return 1
		[ "$(server_of "$2.$j")" = "$1" ] && { echo "$2.$j"; return 0; }
		ctl rm "$2.$j" || return 1
	done
	return 1
}

# timed_fail LIMIT TEXT CMD...: CMD fails within LIMIT seconds and its
# stderr holds TEXT; prints how long it took. For `check`.
timed_fail() {
	local lim=$1 text=$2 t0 d
	shift 2
	t0=$(ml_now)
	"$@" >/dev/null 2>"$T/tf.err" && { echo "succeeded"; return 1; }
	d=$(ml_since "$t0")
	echo "failed after $d s: $(head -1 "$T/tf.err")"
	grep -qF -- "$text" "$T/tf.err" || { echo "without \"$text\""; return 1; }
	ml_le "$d" "$lim"
}

# Stop the servers by SIGTERM (each must exit 0), then ml_finish.
cl_finish() {
	local m s rc
	for m in "${ml_mounts[@]}"; do
		ml_mounted "$m" || continue
		ml_umount "$m"
		rc=$?
		record "unmount ${m##*/} (daemon exits 0)" "$rc"
	done
	for s in "${!ml_spid[@]}"; do
		[ -n "${ml_spid[$s]}" ] || continue
		cl_server_stop "$s"
		record "server $s stops cleanly on SIGTERM" $?
	done
	ml_finish
}
