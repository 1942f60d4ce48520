#!/usr/bin/env bash
# Integration: kvfsctl against a real kvfs-server on $KVFS_TEST_PROVIDER
# (shm or tcp). Cleans up (server, temp files) however it ends.
set -uo pipefail
build=${1:?usage: kvfsctl.sh BUILD_DIR}
prov=${KVFS_TEST_PROVIDER:-tcp}
tmp=$(mktemp -d /tmp/kvfsctl-test.XXXXXX)
pid= spid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	[ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

# Two ports: $KVFS_TEST_PORT and the next one, else two free ones.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + RANDOM % 20000))
}
port=${KVFS_TEST_PORT:-$(free_port)}
sport=$([ -n "${KVFS_TEST_PORT:-}" ] && echo $((KVFS_TEST_PORT + 1)) || free_port)
cat >"$tmp/kvfs.conf" <<CONF
cluster = { servers = ( { name = "only"; address = "127.0.0.1:$port"; } ); };
fabric = { provider = "$prov"; };
server = { memory = "512M"; max_value = "256M"; };
client = { buffer = "32M"; timeout_ms = 10000; };
CONF
"$build/kvfs-server" -c "$tmp/kvfs.conf" 2>"$tmp/server.log" &
pid=$!
# A server with a small pool (64M; max_value defaults to it) for bench's sizing.
cat >"$tmp/small.conf" <<CONF
cluster = { servers = ( { name = "small"; address = "127.0.0.1:$sport"; } ); };
fabric = { provider = "$prov"; };
server = { memory = "64M"; };
client = { buffer = "32M"; timeout_ms = 10000; };
CONF
"$build/kvfs-server" -c "$tmp/small.conf" 2>"$tmp/small.log" &
spid=$!
export KVFS_CONF=$tmp/kvfs.conf
ctl="$build/kvfsctl"
for _ in $(seq 100); do "$ctl" ping >/dev/null 2>&1 && break; sleep 0.1; done
for _ in $(seq 100); do "$ctl" -c "$tmp/small.conf" ping >/dev/null 2>&1 && break; sleep 0.1; done

pass=0 fail=0
check() { # name, then a command that must succeed
	local name=$1
	shift
	if "$@" >"$tmp/out" 2>"$tmp/err"; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "FAIL: $name"
		sed 's/^/    /' "$tmp/out" "$tmp/err" | head -20
	fi
}

head -c 3000001 /dev/urandom >"$tmp/small"
head -c 100000000 /dev/urandom >"$tmp/big"
check "ping" "$ctl" ping
check "put file" "$ctl" put docs/small "$tmp/small"
check "get file" "$ctl" get docs/small "$tmp/small.back"
check "file identical" cmp "$tmp/small" "$tmp/small.back"
check "put stdin (streamed upload)" sh -c "cat '$tmp/big' | '$ctl' put docs/big -"
check "get stdout" sh -c "'$ctl' get docs/big - > '$tmp/big.back'"
check "large value identical" cmp "$tmp/big" "$tmp/big.back"
check "empty value" sh -c "printf '' | '$ctl' put docs/empty && test \"\$('$ctl' get docs/empty | wc -c)\" -eq 0"
check "ls folds directories" sh -c "'$ctl' put docs/sub/x /dev/null && '$ctl' ls docs/ | grep -qx 'docs/sub/'"
check "ls -l shows sizes" sh -c "'$ctl' ls -l docs/ | grep 'docs/small' | grep -q 3000001"
check "ls -r lists all" sh -c "test \"\$('$ctl' ls -r docs/ | wc -l)\" -eq 4"
check "stat" sh -c "'$ctl' stat docs/small | grep -q 3000001"
check "stat shows an owner never stored as -" sh -c \
	"'$ctl' stat docs/small > '$tmp/st' && grep -qx 'uid:     -' '$tmp/st' && grep -qx 'gid:     -' '$tmp/st' && grep -qx 'mode:    0100644' '$tmp/st'"
check "ls -l shows an owner never stored as -" sh -c \
	"'$ctl' ls -l docs/ | grep 'docs/small' | grep -q '^-rw-r--r--  *-  *- '"
check "put --ttl --mode" sh -c "echo x | '$ctl' put t/ttl --ttl 1 --mode 600 && '$ctl' stat t/ttl | grep -q 600"
check "mv" sh -c "'$ctl' mv docs/small docs/moved && '$ctl' get docs/moved | cmp - '$tmp/small'"
check "mv --no-replace refuses" sh -c "! '$ctl' mv docs/moved docs/big --no-replace"
check "rm" "$ctl" rm docs/moved docs/empty
check "get of a removed key fails with one line" sh -c \
	"! '$ctl' get docs/moved '$tmp/nothing' 2>'$tmp/e' && test \$(wc -l <'$tmp/e') -eq 1 && test ! -e '$tmp/nothing'"
check "rm of a missing key fails" sh -c "! '$ctl' rm docs/moved"
check "ttl expired" sh -c "sleep 2.5; ! '$ctl' get t/ttl >/dev/null 2>&1"
check "stats --json" sh -c "'$ctl' stats --json | grep -q '\"provider\"'"
batch_round_trip() { # quoting, escapes, a binary value, an error line that does not stop the run
	printf '%s\n' 'put "b key" "two words\n\x00\xff\"q\""' 'get b\ key' 'get b/missing' '# comment' '' \
		'rm "b key"' 'rm "b key"' 'ping' >"$tmp/batch.in"
	"$ctl" batch "$tmp/batch.in" >"$tmp/batch.out" && return 1 # one command failed: exit 1
	printf '%s\n' OK '"two words\n\x00\xff\"q\""' 'ERR ENOENT no such key' OK 'ERR ENOENT no such key' >"$tmp/batch.want"
	head -5 "$tmp/batch.out" | cmp - "$tmp/batch.want" && sed -n 6p "$tmp/batch.out" | grep -q '^OK only='
}
check "batch round trips, errors continue, exit 1" batch_round_trip
check "batch of 2000 puts and gets, exit 0" sh -c "for i in \$(seq 1000); do echo \"put bb/\$i v\$i\"; done >'$tmp/b2'; for i in \$(seq 1000); do echo \"get bb/\$i\"; done >>'$tmp/b2'; '$ctl' batch - <'$tmp/b2' >'$tmp/b2.out' && test \$(grep -c '^OK\$' '$tmp/b2.out') -eq 1000 && sed -n 2000p '$tmp/b2.out' | grep -qx '\"v1000\"'"
check "bench --json" sh -c "'$ctl' bench --op get --size 4096 --count 2000 --json | grep -q '\"p50_us\"'"
check "bench put" sh -c "'$ctl' bench --op put --size 1M --count 50 --keys 4 --json | grep -q gbytes_per_s"
# bench against the 64M pool: a key set larger than it is cut to what fits
# (80% of the pool, estimated per key) with a notice, and the run then finds
# every key; a value over max_value or the pool fails with one line, exit 1.
bench_fits() { # op
	local n
	"$ctl" -c "$tmp/small.conf" bench --op "$1" --size 8M --count 40 --keys 32 --prefix fit/ --json \
		>"$tmp/fit.out" 2>"$tmp/fit.err" || { cat "$tmp/fit.err"; return 1; }
	n=$(sed -n 's/^kvfsctl: bench: 32 keys of 8 MiB do not fit the pool (64 MiB): using \([0-9]*\)$/\1/p' "$tmp/fit.err")
	[ -n "$n" ] && [ "$n" -ge 1 ] && [ "$n" -lt 32 ] && [ "$(wc -l <"$tmp/fit.err")" -eq 1 ] &&
		grep -q "\"keys\": $n, \"misses\": 0," "$tmp/fit.out" || { cat "$tmp/fit.out" "$tmp/fit.err"; return 1; }
}
check "bench get sizes a key set larger than the pool" bench_fits get
check "bench put sizes a key set larger than the pool" bench_fits put
bench_too_big() { # size, message
	"$ctl" -c "$tmp/small.conf" bench --op get --size "$1" --count 5 >"$tmp/big.out" 2>"$tmp/big.err"
	[ $? -eq 1 ] && [ ! -s "$tmp/big.out" ] && echo "$2" | cmp - "$tmp/big.err"
}
check "bench --size over max_value fails" bench_too_big 100M \
	"kvfsctl: bench: --size 100 MiB is over server small's max_value (64 MiB)"
check "bench --size that does not fit the pool fails" bench_too_big 60M \
	"kvfsctl: bench: one key of 60 MiB does not fit server small's pool (64 MiB)"
# Keys that vanish during a get bench (removed here; evicted by other traffic
# in real life) are counted misses, reported, not a failure.
bench_misses() {
	local b m
	"$ctl" -c "$tmp/small.conf" bench --op get --size 1M --count 20000 --keys 2 --prefix gone/ --json \
		>"$tmp/gone.out" 2>"$tmp/gone.err" &
	b=$!
	for _ in $(seq 200); do "$ctl" -c "$tmp/small.conf" stat gone/00000001 >/dev/null 2>&1 && break; sleep 0.05; done
	"$ctl" -c "$tmp/small.conf" rm gone/00000000 gone/00000001
	wait "$b" || { cat "$tmp/gone.err"; return 1; }
	m=$(sed -n 's/.*"misses": \([0-9]*\),.*/\1/p' "$tmp/gone.out")
	[ -n "$m" ] && [ "$m" -gt 0 ] &&
		grep -qx "kvfsctl: bench: $m of 20000 gets found no key (evicted or removed during the run)" "$tmp/gone.err" ||
		{ cat "$tmp/gone.out" "$tmp/gone.err"; return 1; }
}
check "bench get counts keys gone during the run as misses" bench_misses

# get while another client replaces the value without pause (bench put of one
# key, 16M: two kvfs_get calls of two pieces each, client.buffer 32M): a piece
# read that straddles two versions (kvfs_get's -EAGAIN) makes get start over;
# each get gives the whole value or fails saying so once its attempts are spent.
race_get() {
	local ok=0 i
	"$ctl" bench --op put --size 16M --count 1000000 --keys 1 --prefix race/ >/dev/null 2>&1 &
	local writer=$!
	for _ in $(seq 100); do "$ctl" stat race/00000000 >/dev/null 2>&1 && break; sleep 0.1; done
	for i in $(seq 10); do
		if "$ctl" get race/00000000 "$tmp/vr" 2>"$tmp/race.err"; then
			[ "$(wc -c <"$tmp/vr")" -eq 16777216 ] || { echo "get $i: short"; ok=1; }
		elif ! grep -qx 'kvfsctl: get race/00000000: value changed during get' "$tmp/race.err"; then
			echo "get $i:"; cat "$tmp/race.err"; ok=1
		fi
	done
	kill "$writer"
	wait "$writer" 2>/dev/null
	"$ctl" rm race/00000000
	rm -f "$tmp/vr"
	return $ok
}
check "get while the value is replaced" race_get
# Writers killed in the middle of 16M puts (the server is RMA-reading them):
# on shm the server once got a completion error naming no operation and
# crashed on it. It must stay up and serve.
killed_writers() {
	local i w
	for i in $(seq 12); do
		"$ctl" bench --op put --size 16M --count 1000000 --keys 1 --prefix kill/ >/dev/null 2>&1 &
		w=$!
		sleep "0.$((RANDOM % 9 + 1))"
		kill "$w"
		wait "$w" 2>/dev/null
		kill -0 "$pid" || { echo "server died after writer $i"; return 1; }
	done
	"$ctl" rm kill/00000000 2>/dev/null
	"$ctl" get docs/big | cmp - "$tmp/big"
}
check "writers killed mid-put leave the server serving" killed_writers
# SIGTERM at any moment of start-up, libfabric's loading and first
# fi_getinfo included, ends kvfsctl by that signal within 3 s: libinfinipath
# once replaced its handler with one that deadlocked in exit().
term_during_startup() {
	local d w n st
	for d in 0.01 0.03 0.06 0.1 0.15 0.2 0.3 0.5; do
		"$ctl" bench --op get --size 4K --count 100000000 --keys 1 --prefix term/ >/dev/null 2>&1 &
		w=$!
		sleep "$d"
		kill -TERM "$w"
		for n in $(seq 30); do
			kill -0 "$w" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$w" 2>/dev/null; then
			echo "kvfsctl still running 3 s after SIGTERM at $d s"
			kill -KILL "$w"
			wait "$w" 2>/dev/null
			return 1
		fi
		wait "$w"
		st=$?
		[ "$st" -eq 143 ] || { echo "SIGTERM at $d s: exit status $st, not 143"; return 1; }
	done
	"$ctl" rm term/00000000 2>/dev/null
	return 0
}
check "SIGTERM during start-up ends kvfsctl by the signal" term_during_startup
check "bad config names file and line" sh -c \
	"printf 'fabric = { provider = \"carrier-pigeon\"; };\n' > '$tmp/bad.conf'; ! '$ctl' -c '$tmp/bad.conf' ping 2>'$tmp/e'; grep -q 'bad.conf:1' '$tmp/e' && grep -q valid '$tmp/e'"
check "unreachable server fails fast" sh -c \
	"sed 's/:$port/:1/' '$KVFS_CONF' > '$tmp/dead.conf'; ! timeout 5 '$ctl' -c '$tmp/dead.conf' get x"
check "libkvfs logs as kvfsctl, info lines with -v" sh -c \
	"'$ctl' -c '$tmp/dead.conf' ping 2>'$tmp/e'; grep -q '^kvfsctl: warning: server only (127.0.0.1:1): cannot connect' '$tmp/e' && ! '$ctl' stat docs/big 2>&1 >/dev/null | grep -q . && '$ctl' -v stat docs/big 2>&1 >/dev/null | grep -q '^kvfsctl: info: server only: connected; small requests over TCP' && '$ctl' -v ls docs/ 2>&1 >/dev/null | grep -q '^kvfsctl: info: server only: session on'"
# One-shot commands on small values never set up the fabric: they do not
# load libfabric.so.1 nor open what its initialisation or an endpoint opens
# (/proc/kallsyms, shm's /dev/shm files, hugepage probing), which
# `ping --fabric` shows it does.
fabric_files='libfabric\.so|/proc/kallsyms|/dev/shm/|/sys/kernel/mm/hugepages|/sys/class/infiniband'
no_fabric() { # command...: runs it under strace; fails if it touched the fabric
	# (LeakSanitizer cannot run under ptrace: off for these runs of an ASan build)
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
		strace -f -qq -e trace=openat,open -o "$tmp/trace" "$@" >"$tmp/trace.out" || return 1
	if grep -E "$fabric_files" "$tmp/trace"; then return 1; fi
	return 0
}
one_shots() {
	echo abc >"$tmp/abc"
	no_fabric "$ctl" put o/k "$tmp/abc" &&
		no_fabric sh -c "echo piped | '$ctl' put o/p" &&
		no_fabric "$ctl" get o/k && grep -qx abc "$tmp/trace.out" &&
		no_fabric "$ctl" stat o/k && grep -q 'size:    4' "$tmp/trace.out" &&
		no_fabric "$ctl" mv o/p o/q &&
		no_fabric "$ctl" rm o/k o/q &&
		no_fabric "$ctl" ping && grep -q 'ok .* us (tcp)' "$tmp/trace.out" &&
		! "$ctl" get o/k 2>/dev/null &&
		! no_fabric "$ctl" ping --fabric # the check sees a fabric set-up
}
if command -v strace >/dev/null && strace -f -qq -e trace=openat -o /dev/null true 2>/dev/null; then
	check "one-shot get, put, stat, mv, rm, ping set up no fabric" one_shots
else
	echo "SKIP: one-shot commands without the fabric (no usable strace)"
fi
check "one-shot get of a large value upgrades" sh -c \
	"'$ctl' put o/big '$tmp/big' && '$ctl' get o/big | cmp - '$tmp/big' && '$ctl' rm o/big"
# top while a get bench runs: a header and one line per refresh and server,
# with the gets it sees; a dead server is an error line and exit 1.
top_traffic() {
	local b
	"$ctl" bench --op get --size 4096 --count 10000000 --keys 100 --prefix top/ >/dev/null 2>&1 &
	b=$!
	for _ in $(seq 100); do "$ctl" stat top/00000099 >/dev/null 2>&1 && break; sleep 0.05; done
	sleep 0.3
	timeout 20 "$ctl" top --interval 0.3 --count 2 >"$tmp/top.out" 2>"$tmp/top.err"
	local rc=$?
	kill "$b"
	wait "$b" 2>/dev/null
	[ $rc -eq 0 ] && [ ! -s "$tmp/top.err" ] && [ "$(wc -l <"$tmp/top.out")" -eq 3 ] &&
		head -1 "$tmp/top.out" | grep -q '^server  *keys  *pool_used  *gets/s  *hits/s  *misses/s  *puts/s  *deletes/s  *in/s  *out/s$' &&
		[ "$(grep -c '^only  ' "$tmp/top.out")" -eq 2 ] &&
		awk 'NR > 1 && $4 > 0 { n++ } END { exit n == 2 ? 0 : 1 }' "$tmp/top.out" ||
		{ cat "$tmp/top.out" "$tmp/top.err"; return 1; }
}
check "top --count 2 while traffic runs" top_traffic
check "top on a dead server: error line, exit 1" sh -c \
	"timeout 20 '$ctl' -c '$tmp/dead.conf' top --interval 0.1 --count 1 >'$tmp/o' 2>'$tmp/e'; test \$? -eq 1 && grep -q '^only  *error: ' '$tmp/o' && grep -q '^kvfsctl: top only: ' '$tmp/e'"
check "top --interval 0 is a usage error" sh -c "'$ctl' top --interval 0 2>/dev/null; test \$? -eq 2"
check "usage error exits 2" sh -c "'$ctl' frobnicate; test \$? -eq 2"
check "kvfs-server --probe explains auto" sh -c "'$build/kvfs-server' --probe | grep -q 'auto would serve on:.*$prov'"
# libfabric is loaded (dlopen) at the first fabric use, not at start: the
# psm library constructor it brings costs ~200 ms in every process loading it.
check "kvfsctl -h does not load libfabric" sh -c \
	"LD_DEBUG=files '$ctl' -h 2>'$tmp/ld' >/dev/null && grep -q 'file=libkvfs.so.2' '$tmp/ld' && ! grep -q 'file=libfabric.so.1' '$tmp/ld'"
check "kvfsctl ping --fabric loads libfabric" sh -c \
	"LD_DEBUG=files '$ctl' ping --fabric 2>&1 >/dev/null | grep -q 'file=libfabric.so.1 .*dynamically loaded by'"
# A libfabric.so.1 that cannot be loaded (not an ELF file; an ELF library
# without fi_getinfo@FABRIC_1.3): a clear error, no crash.
mkdir "$tmp/nolib" "$tmp/nosym"
echo "not a library" >"$tmp/nolib/libfabric.so.1"
cp "$build/libkvfs.so.2" "$tmp/nosym/libfabric.so.1"
check "unloadable libfabric.so.1: kvfsctl fails saying why" sh -c \
	"! LD_LIBRARY_PATH='$tmp/nolib' '$ctl' ping --fabric >/dev/null 2>'$tmp/e' && grep -q '^kvfsctl: error: cannot load libfabric.so.1: .*nolib/libfabric.so.1: ' '$tmp/e'"
check "libfabric.so.1 without fi_getinfo@FABRIC_1.3: kvfsctl fails saying why" sh -c \
	"! LD_LIBRARY_PATH='$tmp/nosym' '$ctl' get docs/big >/dev/null 2>'$tmp/e' && grep -q '^kvfsctl: error: cannot load libfabric.so.1: .*fi_getinfo, version FABRIC_1.3' '$tmp/e'"
check "unloadable libfabric.so.1: kvfs-server --probe exits 1 saying why" sh -c \
	"LD_LIBRARY_PATH='$tmp/nolib' '$build/kvfs-server' --probe >/dev/null 2>'$tmp/e'; test \$? -eq 1 && grep -q 'cannot load libfabric.so.1' '$tmp/e'"
check "server still up" kill -0 "$pid"
check "small server still up" kill -0 "$spid"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
