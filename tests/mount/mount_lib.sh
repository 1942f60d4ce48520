# mount_lib.sh: helpers sourced by the fs_*.sh mount tests (bash).
#
# A test sources this file, calls ml_init BUILD_DIR [SOURCE_DIR], then starts
# real kvfs-server processes on free loopback ports (provider
# $KVFS_TEST_PROVIDER: shm or tcp) and real FUSE mounts of them, runs checks,
# and ends with ml_finish. Whatever happens (a failed check, an error in the
# script, SIGINT/SIGTERM, a timeout) the EXIT trap unmounts every mount under
# the test's temp dir, ends every process it started (by pid) and removes the
# temp dir (after copying its logs to $ML_KEEP_LOGS, if that is a directory).
#
#   ml_init BUILD [SRC]         temp dir $T, skip (77) without root/FUSE
#   ml_tempdir PARENT           another temp dir $ML_TEMPDIR (e.g. on /dev/shm), removed at the end
#   ml_config N [MEMORY]        write $CONF for servers s0..s(N-1) on free ports;
#                               client.local_map = $ML_LOCAL_MAP: by default
#                               true on shm (reads from the mapped pool), false
#                               on tcp (reads by RMA), so both paths are tested
#   ml_servers_start            start them all, wait for `kvfsctl ping`
#   ml_server_start NAME | ml_server_stop NAME | ml_server_kill NAME [SIG]
#   ml_server_restart NAME      kill -9 (if running), start again (empty)
#   ml_mount MNT [ARGS...]      kvfs -c $CONF MNT -f ARGS in the background, wait for the mount
#   ml_umount MNT               fusermount3 -u, the daemon must exit 0
#   ml_daemon_pid MNT           pid of the daemon serving MNT
#   check NAME CMD...           CMD must succeed (within $CHECK_TIMEOUT s)
#   check_fail NAME TEXT CMD... CMD must fail and print TEXT (an strerror text)
#   record NAME RC [DETAIL]     count a result computed by the script itself
#   ml_finish                   stop everything cleanly, print "N passed, M failed", exit
#
# Functions that start mounts or servers must run in the test's own shell,
# not inside `check` (which runs its command in a subshell).

set -uo pipefail
export LC_ALL=C

ml_pass=0
ml_fail=0
ml_mounts=()            # mountpoints we mounted
declare -A ml_dpid=()   # mountpoint -> pid of a foreground daemon we started
declare -A ml_spid=()   # server name -> pid
declare -A ml_killed=() # pids we killed on purpose (their exit status is not checked)
ml_gen=0
ml_signalled=0          # set on SIGINT/SIGTERM: clean up fast (meson sends SIGKILL 0.5 s later)
ml_extra_dirs=()        # more temp dirs to remove at the end (ml_tempdir)
ml_shell=               # $BASHPID of the test's own shell: the only one that cleans up
T=
CONF=
ML_SLOW=1
ML_WRAP=()              # a command prefix for kvfsctl and the daemon (the cluster tests: nsenter --net)

ml_log() { printf '%s\n' "$*" >&2; }

# The first sanitizer report of a log, else its last 20 lines.
ml_log_excerpt() {
	if grep -qE 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$1" 2>/dev/null; then
		grep -m1 -A${ML_EXCERPT_LINES:-14} -E 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$1" | sed 's/^/    /'
	else
		tail -20 "$1" 2>/dev/null | sed 's/^/    /'
	fi
}

ml_skip() {
	if [ "${CI:-}" = true ] || [ -n "${KVFS_TEST_NO_SKIP:-}" ]; then
		echo "FAIL: cannot run the mount tests: $* (CI must not skip them)"
		exit 1
	fi
	echo "SKIP: $*"
	exit 77
}

ml_init() {
	BUILD=$(cd "${1:?usage: $0 BUILD_DIR [SOURCE_DIR]}" && pwd)
	SRC=${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
	PROV=${KVFS_TEST_PROVIDER:-tcp}
	if [ "$PROV" = shm ]; then ML_LOCAL_MAP=${ML_LOCAL_MAP:-true}; else ML_LOCAL_MAP=${ML_LOCAL_MAP:-false}; fi
	[ "$(id -u)" -eq 0 ] || ml_skip "not root (the mount tests need root for FUSE, mount and allow_other)"
	[ -c /dev/fuse ] && [ -r /dev/fuse ] && [ -w /dev/fuse ] || ml_skip "/dev/fuse is missing or not usable"
	grep -qw fuse /proc/filesystems || ml_skip "the kernel has no fuse file system (modprobe fuse)"
	command -v fusermount3 >/dev/null || ml_skip "fusermount3 is not installed (apt-get install fuse3)"
	[ -x "$BUILD/kvfs" ] || ml_skip "$BUILD/kvfs is not built"
	[ -x "$BUILD/kvfs-server" ] && [ -x "$BUILD/kvfsctl" ] || ml_skip "kvfs-server or kvfsctl is not built in $BUILD"
	if [ "$PROV" = shm ] && [ ! -w /dev/shm ]; then
		ml_skip "/dev/shm is not writable: the shm provider cannot run"
	fi
	# Sanitizer builds are several times slower: scale the time bounds.
	if grep -qE '"name": "b_sanitize", "value": "(address|undefined|thread|memory)' "$BUILD/meson-info/intro-buildoptions.json" 2>/dev/null ||
		ldd "$BUILD/kvfs" 2>/dev/null | grep -q libasan; then
		ML_SLOW=3
	fi
	# Not /tmp/kvfs-*: a stray `rm -rf /tmp/kvfs-*` elsewhere would descend into our live mounts.
	T=$(mktemp -d "${TMPDIR:-/tmp}/fsmount-$(basename "$0" .sh)-$PROV.XXXXXX")
	ml_shell=$BASHPID
	trap ml_cleanup EXIT
	trap 'ml_signalled=1; exit 130' INT
	trap 'ml_signalled=1; exit 143' TERM
	umask 022
	echo "# $(basename "$0"): provider $PROV, build $BUILD, temp $T, slow factor $ML_SLOW"
}

# ml_tempdir PARENT: a temp dir under PARENT (e.g. /dev/shm) in $ML_TEMPDIR,
# removed at the end. Call it in the test's shell, not in $(...).
ml_tempdir() {
	ML_TEMPDIR=$(mktemp -d "$1/fsmount-$(basename "$0" .sh).XXXXXX") || return 1
	ml_extra_dirs+=("$ML_TEMPDIR")
}

ml_now() { date +%s.%N; }
# Seconds elapsed since a ml_now stamp, 3 decimals.
ml_since() { awk -v a="$1" -v b="$(ml_now)" 'BEGIN { printf "%.3f", b - a }'; }
# Is A <= B (decimal numbers)?
ml_le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

# Is PID a live process (not a zombie)?
ml_alive() {
	local s
	[ -r "/proc/$1/stat" ] || return 1
	read -r s <"/proc/$1/stat" 2>/dev/null || return 1
	s=${s##*) }
	[ "${s%% *}" != Z ]
}

# Wait up to SECONDS (may be fractional) for PID to end. 0 if it ended.
ml_wait_gone() {
	local pid=$1 n
	n=$(awk -v s="$2" 'BEGIN { printf "%d", s * 20 }')
	while ((n-- > 0)); do
		ml_alive "$pid" || return 0
		sleep 0.05
	done
	! ml_alive "$pid"
}

# ml_reap PID SECONDS: wait for our child PID to end, at most SECONDS; its exit
# status, or 125 if it is still there (e.g. in D state on a hung mount: a
# plain `wait` would block us too).
ml_reap() {
	ml_wait_gone "$1" "$2" || return 125
	wait "$1" 2>/dev/null
}

# PID and all its descendants, children first.
ml_tree() {
	local c
	for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
		ml_tree "$c"
	done
	echo "$1"
}

ml_kill_tree() { # PID SIG
	local p
	for p in $(ml_tree "$1"); do
		kill -"$2" "$p" 2>/dev/null
	done
}

ml_free_ports() { # N: N distinct free loopback ports, one a line
	python3 - "$1" 2>/dev/null <<'PY' || for ((i = 0; i < $1; i++)); do echo $((20000 + RANDOM % 20000 + i)); done
import socket, sys
ss = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    ss.append(s)
for s in ss:
    print(s.getsockname()[1])
PY
}

# ml_config N [MEMORY [MAX_VALUE]]: a new config $CONF for servers s0..s(N-1).
# Servers of an earlier config must be stopped first (names are reused).
ml_config() {
	local n=$1 mem=${2:-1500M} maxv=${3:-1200M} i sep=
	local -a ports
	mapfile -t ports < <(ml_free_ports "$n")
	ml_gen=$((ml_gen + 1))
	CONF=$T/kvfs-$ml_gen.conf
	ML_SERVERS=()
	{
		printf 'cluster = { servers = ('
		for ((i = 0; i < n; i++)); do
			printf '%s { name = "s%d"; address = "127.0.0.1:%s"; }' "$sep" "$i" "${ports[$i]}"
			sep=,
			ML_SERVERS+=("s$i")
		done
		printf ' ); };\n'
		printf 'fabric = { provider = "%s"; };\n' "$PROV"
		printf 'server = { memory = "%s"; max_value = "%s"; };\n' "$mem" "$maxv"
		printf 'client = { buffer = "64M"; timeout_ms = 2000; local_map = %s; };\n' "$ML_LOCAL_MAP"
	} >"$CONF"
	export KVFS_CONF=$CONF
}

ctl() { "${ML_WRAP[@]}" "$BUILD/kvfsctl" -c "$CONF" "$@"; }

ml_server_start() { # NAME: start it, wait (bounded) until it answers a ping
	local name=$1 i
	"$BUILD/kvfs-server" -c "$CONF" --name "$name" 2>>"$T/server-$name.log" &
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

ml_servers_start() {
	local s
	for s in "${ML_SERVERS[@]}"; do
		ml_server_start "$s" || return 1
	done
}

ml_server_kill() { # NAME [SIG]: signal it and wait until it is gone
	local name=$1 sig=${2:-KILL} pid=${ml_spid[$1]:-}
	[ -n "$pid" ] || return 0
	[ "$sig" = KILL ] && ml_killed[$pid]=1
	kill -"$sig" "$pid" 2>/dev/null
	ml_wait_gone "$pid" $((10 * ML_SLOW)) || { kill -KILL "$pid" 2>/dev/null; ml_killed[$pid]=1; }
	ml_reap "$pid" 5
	ml_spid[$name]=
	return 0
}

# ml_server_stop NAME: SIGTERM; the server must exit 0 (sanitizer reports make it fail).
ml_server_stop() {
	local name=$1 pid=${ml_spid[$1]:-} rc
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	if ! ml_wait_gone "$pid" $((10 * ML_SLOW)); then
		ml_log "server $name ignored SIGTERM for $((10 * ML_SLOW)) s"
		kill -KILL "$pid" 2>/dev/null
	fi
	ml_reap "$pid" 5
	rc=$?
	ml_spid[$name]=
	[ "$rc" -eq 0 ] || { ml_log "server $name exited $rc; its log:"; ml_log_excerpt "$T/server-$name.log" >&2; }
	return "$rc"
}

ml_server_restart() {
	ml_server_kill "$1" KILL
	ml_server_start "$1"
}

ml_mounted() { # MNT: is it in the mount table (does not touch the file system)
	awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo
}

# ml_mount MNT [ARGS...]: mount $CONF on MNT with a foreground daemon (its
# stderr in $T/kvfs-<mnt>.log), wait (bounded) until the mount is up.
ml_mount() {
	local mnt=$1 log i pid
	shift
	mkdir -p "$mnt"
	log=$T/kvfs-$(basename "$mnt").log
	echo "# kvfs -c $CONF $mnt -f $*" >>"$log"
	"${ML_WRAP[@]}" "$BUILD/kvfs" -c "$CONF" "$mnt" -f "$@" 2>>"$log" &
	pid=$!
	ml_dpid[$mnt]=$pid
	ml_mounts+=("$mnt")
	for ((i = 0; i < 200 * ML_SLOW; i++)); do
		if ml_mounted "$mnt"; then
			ml_answers "$mnt" && return 0
			break
		fi
		ml_alive "$pid" || break
		sleep 0.05
	done
	ml_log "mount of $mnt did not come up; daemon log:"
	tail -20 "$log" >&2
	return 1
}

# ml_answers MNT: MNT is a mount point whose file system answers a stat
# within 10 s (x slow factor). A hung daemon leaves the stat stuck (a FUSE
# request already read by the daemon cannot be interrupted) but not us.
ml_answers() {
	local pid
	timeout -k 1 60 mountpoint -q "$1" &
	pid=$!
	if ! ml_wait_gone "$pid" $((10 * ML_SLOW)); then
		ml_log "$1 does not answer a stat within $((10 * ML_SLOW)) s"
		return 1
	fi
	wait "$pid"
}

# Pid of the kvfs daemon serving MNT: the one we started, else (daemonized, or
# through mount(8)) the process whose command line names MNT.
ml_daemon_pid() {
	local mnt=$1 p
	if [ -n "${ml_dpid[$mnt]:-}" ] && ml_alive "${ml_dpid[$mnt]}"; then
		echo "${ml_dpid[$mnt]}"
		return 0
	fi
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" = $$ ] && continue
		[ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$(readlink -f "$BUILD/kvfs")" ] || continue
		tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -qxF "$mnt" && { echo "$p"; return 0; }
	done
	return 1
}

# ml_umount MNT: fusermount3 -u; the daemon must end, and exit 0 if it is ours.
ml_umount() {
	local mnt=$1 pid rc=0 out
	pid=${ml_dpid[$mnt]:-} # ours, even if it died (its exit status tells how)
	[ -n "$pid" ] || pid=$(ml_daemon_pid "$mnt")
	if ! out=$(timeout 20 fusermount3 -u "$mnt" 2>&1); then
		ml_log "fusermount3 -u $mnt failed: $out"
		return 1
	fi
	if [ -n "$pid" ]; then
		if ! ml_wait_gone "$pid" $((15 * ML_SLOW)); then
			ml_log "daemon $pid of $mnt still runs $((15 * ML_SLOW)) s after the unmount"
			kill -KILL "$pid" 2>/dev/null
			ml_killed[$pid]=1
			rc=1
		fi
		if [ "${ml_dpid[$mnt]:-}" = "$pid" ]; then
			ml_reap "$pid" 5
			local st=$?
			if [ -z "${ml_killed[$pid]:-}" ] && [ "$st" -ne 0 ]; then
				ml_log "daemon of $mnt exited $st; its log:"
				ml_log_excerpt "$T/kvfs-$(basename "$mnt").log" >&2
				rc=1
			fi
		fi
	fi
	ml_dpid[$mnt]=
	return "$rc"
}

# Processes whose command line names our temp dir (daemons, servers, helpers).
ml_our_pids() {
	local p
	[ -n "$T" ] || return 0
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" = $$ ] || [ "$p" = "$BASHPID" ] && continue
		grep -qF "$T" "/proc/$p/cmdline" 2>/dev/null && echo "$p"
	done
}

# Only in the test's own shell. A child it has just forked (for `cmd &`,
# $(...), a pipeline) keeps the test's traps until it execs or resets them,
# and a signal in that window runs them there: a TERM to ml_run's timer once
# made the timer's child unmount everything, kill the servers and remove $T
# under the running test; meson's TERM to the process group reaches them too.
ml_cleanup() {
	local rc=$? m p pids
	[ "$BASHPID" = "$ml_shell" ] || exit "$rc"
	trap - EXIT INT TERM
	[ -n "$T" ] || exit "$rc"
	# 1. Detach every mount under $T (lazy: nothing can keep it busy).
	for m in $(awk -v t="$T/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
		fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	# 2. End daemons and helpers, then servers; TERM first, KILL after 5 s
	#    (at once when we were signalled: meson kills us 0.5 s later).
	pids="${ml_dpid[*]} $(ml_our_pids) ${ml_spid[*]}"
	if [ "$ml_signalled" = 1 ]; then
		for p in $pids; do kill -KILL "$p" 2>/dev/null; done
		rm -rf --one-file-system "$T" "${ml_extra_dirs[@]}" 2>/dev/null
	fi
	for p in $pids; do kill -TERM "$p" 2>/dev/null; done
	for p in $pids; do ml_wait_gone "$p" 5 || kill -KILL "$p" 2>/dev/null; done
	for p in $pids; do ml_wait_gone "$p" 2; done
	for p in $pids; do wait "$p" 2>/dev/null; done # reap ours (a plain `wait` would wait for any child)
	# 3. The temp dir, never crossing into a mount that is somehow still there
	#    (its logs are kept in $ML_KEEP_LOGS first, when that names a directory).
	if [ -n "${ML_KEEP_LOGS:-}" ] && [ -d "$ML_KEEP_LOGS" ]; then
		cp "$T"/*.log "$ML_KEEP_LOGS"/ 2>/dev/null
	fi
	rm -rf --one-file-system "$T" "${ml_extra_dirs[@]}" 2>/dev/null
	exit "$rc"
}

# --- checks -----------------------------------------------------------------

CHECK_TIMEOUT=${CHECK_TIMEOUT:-60}

ml_result() { # NAME RC SECONDS OUTFILE ERRFILE
	if [ "$2" -eq 0 ]; then
		ml_pass=$((ml_pass + 1))
		echo "ok   $1 ($3 s)"
	else
		ml_fail=$((ml_fail + 1))
		echo "FAIL: $1 ($3 s)"
		cat "$4" "$5" 2>/dev/null | head -40 | sed 's/^/    /'
	fi
}

# Run CMD in a subshell with stdout/stderr in $T/out, $T/err, killed (with its
# children) after $CHECK_TIMEOUT * slow-factor seconds. Sets ml_rc.
ml_run() {
	local limit=$((CHECK_TIMEOUT * ML_SLOW)) cpid wpid which
	if [ ! -d "$T" ]; then
		echo "FATAL: the temp dir $T vanished (removed from outside the test)"
		exit 1
	fi
	("$@") >"$T/out" 2>"$T/err" </dev/null &
	cpid=$!
	sleep "$limit" &
	wpid=$!
	wait -n -p which "$cpid" "$wpid"
	ml_rc=$?
	if [ "$which" != "$cpid" ]; then
		echo "TIMEOUT: still running after $limit s; killed" >>"$T/err"
		ml_kill_tree "$cpid" KILL
		ml_reap "$cpid" 5 ||
			echo "(and still there 5 s after SIGKILL: stuck in a FUSE request the daemon never answers)" >>"$T/err"
		ml_rc=124
	else
		# KILL: a TERM can land before the timer's child has exec'd sleep,
		# where bash either runs the test's TERM trap or loses it (and the
		# wait below then lasts the whole limit).
		kill -KILL "$wpid" 2>/dev/null
		wait "$wpid" 2>/dev/null
	fi
	return 0
}

check() { # NAME CMD...: CMD must exit 0
	local name=$1 t0
	shift
	t0=$(ml_now)
	ml_run "$@"
	ml_result "$name" "$ml_rc" "$(ml_since "$t0")" "$T/out" "$T/err"
}

check_fail() { # NAME TEXT CMD...: CMD must exit non-zero and print TEXT (e.g. an strerror text)
	local name=$1 text=$2 t0 rc
	shift 2
	t0=$(ml_now)
	ml_run "$@"
	if [ "$ml_rc" -eq 0 ]; then
		echo "expected a failure with \"$text\", but the command succeeded" >>"$T/err"
		rc=1
	elif [ "$ml_rc" -eq 124 ]; then
		rc=1
	elif ! grep -qF -- "$text" "$T/out" "$T/err"; then
		echo "failed (exit $ml_rc) as expected, but without \"$text\"" >>"$T/err"
		rc=1
	else
		rc=0
	fi
	ml_result "$name" "$rc" "$(ml_since "$t0")" "$T/out" "$T/err"
}

record() { # NAME RC [DETAIL]
	printf '%s\n' "${3:-}" >"$T/out"
	: >"$T/err"
	ml_result "$1" "$2" - "$T/out" "$T/err"
}

# Sanitizer or crash reports in any log of ours.
ml_scan_logs() {
	local f bad=0
	for f in "$T"/*.log; do
		[ -f "$f" ] || continue
		if grep -qE 'ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer' "$f"; then
			echo "sanitizer report in $(basename "$f"):"
			ml_log_excerpt "$f"
			bad=1
		fi
	done
	return "$bad"
}

# Unmount everything cleanly, stop the servers, scan the logs, print the
# summary and exit (0 only if every check passed).
ml_finish() {
	local m s rc
	for m in "${ml_mounts[@]}"; do
		ml_mounted "$m" || continue
		ml_umount "$m"
		rc=$? # before any $(...) in the record line resets $?
		record "unmount ${m##*/} (daemon exits 0)" "$rc"
	done
	for s in "${!ml_spid[@]}"; do
		[ -n "${ml_spid[$s]}" ] || continue
		ml_server_stop "$s"
		record "server $s stops cleanly on SIGTERM" $?
	done
	ml_scan_logs >"$T/scan" 2>&1
	record "no sanitizer reports in the logs" $? "$(cat "$T/scan")"
	echo "$ml_pass passed, $ml_fail failed"
	[ "$ml_fail" -eq 0 ]
	exit
}
