#!/usr/bin/env bash
# Packaging: build the Debian packages from a copy of the source tree
# (dpkg-buildpackage -b, DEB_BUILD_OPTIONS=nocheck), check them with lintian
# (no E: allowed), install them, and check that the installed kvfs-server
# runs as the system user kvfs the way kvfs-server.service starts it: from
# /etc/kvfs/kvfs.conf, with a root:kvfs 0640 secret, no capabilities,
# unlimited locked memory, and READY=1 / STOPPING=1 on $NOTIFY_SOCKET
# (PID 1 is not always systemd, so the test plays systemd's part). Clients:
# kvfsctl as user kvfs (shm) and as root over tcp. Then purge and check that
# the package's files are gone.
#
# Needs root and no kvfs-server package or /etc/kvfs of its own (exit 77
# otherwise; a failure when CI=true). Cleans up however it ends, and removes
# the user kvfs if it was not there before.
set -uo pipefail
src=${1:?usage: deb.sh SOURCE_DIR}
src=$(cd "$src" && pwd)
here=$(cd "$(dirname "$0")" && pwd)

skip() {
	if [ "${CI:-}" = true ]; then
		echo "FAIL: cannot run the packaging test: $* (CI must not skip it)"
		exit 1
	fi
	echo "SKIP: $*"
	exit 77
}
[ "$(id -u)" -eq 0 ] || skip "needs root (dpkg -i, a system user)"
for t in dpkg-buildpackage dh lintian setpriv prlimit python3 systemd-analyze; do
	command -v "$t" >/dev/null || skip "$t is not installed (scripts/deps installs it)"
done
if dpkg-query -W -f='${Status}' kvfs-server 2>/dev/null | grep -q "ok installed"; then
	skip "a kvfs-server package is installed here already; not touching it"
fi
[ -e /etc/kvfs ] && skip "/etc/kvfs exists without the package; not touching it"

tmp=$(mktemp -d /tmp/kvfs-deb-test.XXXXXX)
chmod 755 "$tmp"
installed=0 pid= npid= fail=0 pass=0
user_before=0 # the package keeps its user on purge; the test removes one it made
getent passwd kvfs >/dev/null && user_before=1
cleanup() {
	[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
	[ -n "$npid" ] && kill "$npid" 2>/dev/null
	wait 2>/dev/null
	if ((installed)); then
		rm -f /etc/kvfs/secret
		dpkg --purge kvfs-server kvfs-tools libkvfs2 >/dev/null 2>&1
	fi
	if ((!user_before)) && getent passwd kvfs >/dev/null; then
		userdel kvfs 2>/dev/null
		getent group kvfs >/dev/null && groupdel kvfs 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap "exit 1" INT TERM HUP

check() { # name, then a command that must succeed
	local name=$1
	shift
	if "$@" >"$tmp/check.out" 2>&1; then
		pass=$((pass + 1))
		echo "ok: $name"
	else
		fail=$((fail + 1))
		echo "FAIL: $name"
		sed 's/^/    /' "$tmp/check.out" | tail -20
	fi
}
die() {
	echo "FAIL: $*"
	exit 1
}

# --- build, from a copy (the tree may hold build directories, ./debian must not exist) ---
mkdir "$tmp/src"
tar -C "$src" --exclude='./build*' --exclude=./.git --exclude=./debian -cf - . | tar -C "$tmp/src" -xf - ||
	die "copying the source tree"
cp -a "$tmp/src/packaging/debian" "$tmp/src/debian"
start=$SECONDS
(cd "$tmp/src" && DEB_BUILD_OPTIONS="nocheck parallel=2" dpkg-buildpackage -us -uc -b) \
	>"$tmp/build.log" 2>&1 || {
	tail -40 "$tmp/build.log"
	die "dpkg-buildpackage -us -uc -b"
}
echo "ok: dpkg-buildpackage -us -uc -b ($((SECONDS - start)) s)"
changes=$(ls "$tmp"/kvfs_*_*.changes)
ver=$(dpkg-parsechangelog -l "$src/packaging/debian/changelog" -S Version)
arch=$(dpkg --print-architecture)
for p in kvfs-server kvfs-tools kvfs libkvfs2 libkvfs-dev; do
	[ -f "$tmp/${p}_${ver}_${arch}.deb" ] || die "no ${p}_${ver}_${arch}.deb"
done

# libfabric is dlopen()ed, so its dependency is written in debian/control.
deps() { dpkg-deb -f "$tmp/${1}_${ver}_${arch}.deb" Depends; }
fabric_deps() {
	deps libkvfs2 | grep -q 'libfabric1 (>= 1.11.0)' &&
		deps kvfs-server | grep -q 'libfabric1 (>= 1.11.0)' && ! deps libkvfs-dev | grep -q libfabric
}
check "libkvfs2 and kvfs-server depend on libfabric1, libkvfs-dev not on libfabric-dev" fabric_deps

# --- lintian: errors fail, the rest is shown ---
lintian --tag-display-limit 0 "$changes" >"$tmp/lintian.log" 2>&1
sed 's/^/    lintian: /' "$tmp/lintian.log"
check "lintian reports no errors" bash -c "! grep -q '^E:' '$tmp/lintian.log'"

# --- install, with a secret of the layout before 0.2.0-2 (root:root 0600) ---
mkdir /etc/kvfs
head -c 32 /dev/urandom | base64 >/etc/kvfs/secret
chmod 600 /etc/kvfs/secret
installed=1
dpkg -i "$tmp/libkvfs2_${ver}_${arch}.deb" "$tmp/kvfs-tools_${ver}_${arch}.deb" \
	"$tmp/kvfs-server_${ver}_${arch}.deb" >"$tmp/dpkg.log" 2>&1 || {
	cat "$tmp/dpkg.log"
	die "dpkg -i"
}
echo "ok: dpkg -i"
check "user kvfs exists, a system user without login" \
	bash -c 'u=$(getent passwd kvfs) && [ "$(echo "$u" | cut -d: -f3)" -lt 1000 ] &&
	case $(echo "$u" | cut -d: -f7) in */nologin|*/false) ;; *) exit 1;; esac && getent group kvfs'
check "the secret became root:kvfs 0640" test "$(stat -c %U:%G:%a /etc/kvfs/secret)" = root:kvfs:640
check "units installed" test -f /lib/systemd/system/kvfs-server.service -a \
	-f /lib/systemd/system/kvfs-server@.service
check "systemd-analyze verify kvfs-server.service" \
	bash -c '! systemd-analyze verify /lib/systemd/system/kvfs-server.service 2>&1 | grep .'
check "systemd-analyze verify kvfs-server@local.service" \
	bash -c '! systemd-analyze verify kvfs-server@local.service 2>&1 | grep .'
for u in kvfs-server.service kvfs-server@local.service; do
	exp=$(systemd-analyze security --offline=true "$u" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	check "$u exposure $exp <= 4.0" awk -v e="${exp:-99}" 'BEGIN { exit !(e <= 4.0) }'
done
unit=/lib/systemd/system/kvfs-server.service
check "the unit runs it as kvfs, Type=notify, LimitMEMLOCK=infinity" bash -c "
	grep -qx 'User=kvfs' $unit && grep -qx 'Group=kvfs' $unit &&
	grep -qx 'Type=notify' $unit && grep -qx 'LimitMEMLOCK=infinity' $unit &&
	grep -qx 'CapabilityBoundingSet=' $unit && ! grep -q '^ExecReload' $unit"

# --- run it as the unit does: the installed config on a free port, with the secret ---
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -i -e "s/127.0.0.1:7400/127.0.0.1:$port/" \
	-e 's|# secret_file = "/etc/kvfs/secret";|secret_file = "/etc/kvfs/secret";|' /etc/kvfs/kvfs.conf
grep -q "127.0.0.1:$port" /etc/kvfs/kvfs.conf && grep -q '^ *secret_file' /etc/kvfs/kvfs.conf ||
	die "the installed kvfs.conf no longer has the lines this test edits"
exec_start=$(sed -n 's/^ExecStart=//p' $unit)
python3 "$here/notify.py" "$tmp/notify.sock" "$tmp/notify.log" 60 &
npid=$!
for _ in $(seq 50); do [ -S "$tmp/notify.sock" ] && break; sleep 0.1; done
chmod 777 "$tmp/notify.sock"
# LimitMEMLOCK=infinity, as systemd sets it; a container's root may lack
# CAP_SYS_RESOURCE to raise it (shm and tcp register without pinning).
memlock=unlimited:unlimited
if ! prlimit --memlock=$memlock true 2>/dev/null; then
	memlock=$(ulimit -Hl)
	[ "$memlock" = unlimited ] || memlock=$((memlock * 1024))
	echo "note: cannot raise RLIMIT_MEMLOCK here (no CAP_SYS_RESOURCE); the server runs with $memlock"
	memlock=$memlock:$memlock
fi
nofile=--nofile=65536:65536 # LimitNOFILE=65536, where this machine allows it
prlimit $nofile true 2>/dev/null || nofile=
# shellcheck disable=SC2086 # ExecStart's words
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin NOTIFY_SOCKET="$tmp/notify.sock" \
	prlimit --memlock=$memlock $nofile \
	setpriv --reuid=kvfs --regid=kvfs --init-groups --inh-caps=-all --bounding-set=-all \
	--no-new-privs $exec_start 2>"$tmp/server.log" &
pid=$!
ready=0
for _ in $(seq 100); do
	grep -q '^READY=1' "$tmp/notify.log" 2>/dev/null && ready=1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
check "READY=1 on NOTIFY_SOCKET" test "$ready" = 1
# Readiness means serving: the first request right after READY must work.
as_kvfs() { setpriv --reuid=kvfs --regid=kvfs --init-groups --inh-caps=-all "$@"; }
check "ping over the fabric right after READY=1 (kvfsctl as kvfs)" as_kvfs kvfsctl ping --fabric
check "the installed kvfsctl -h does not load libfabric (loaded at the first fabric use)" bash -c \
	"LD_DEBUG=files kvfsctl -h 2>&1 >/dev/null | grep -q 'file=libkvfs.so.2' &&
	! LD_DEBUG=files kvfsctl -h 2>&1 >/dev/null | grep -q 'file=libfabric.so.1'"
check "the server runs as kvfs with no capabilities" bash -c "
	p=$pid # env, prlimit and setpriv exec the server
	[ \"\$(stat -c %U /proc/\$p)\" = kvfs ] &&
	grep -q '^CapEff:[[:space:]]*0*$' /proc/\$p/status &&
	{ [ $memlock != unlimited:unlimited ] ||
	  grep -q '^Max locked memory *unlimited' /proc/\$p/limits; }"
head -c 3000000 /dev/urandom >"$tmp/value"
chmod 644 "$tmp/value"
check "put/get as kvfs (shm, same user)" bash -c "
	setpriv --reuid=kvfs --regid=kvfs --init-groups kvfsctl put big '$tmp/value' &&
	setpriv --reuid=kvfs --regid=kvfs --init-groups kvfsctl get big - | cmp - '$tmp/value'"
sed 's/provider = "auto"/provider = "tcp"/' /etc/kvfs/kvfs.conf >"$tmp/tcp.conf"
check "put/get as root over tcp" bash -c "
	kvfsctl -c '$tmp/tcp.conf' put k2 '$tmp/value' &&
	kvfsctl -c '$tmp/tcp.conf' get big - | cmp - '$tmp/value' &&
	kvfsctl -c '$tmp/tcp.conf' get k2 - | cmp - '$tmp/value'"
# Root is another user: shm cannot reach it; with provider auto its client
# is refused shm and takes tcp by itself, saying so with -v.
check "root's client on auto falls back from shm to tcp" bash -c "
	kvfsctl -v get big - 2>'$tmp/root-auto.log' | cmp - '$tmp/value' &&
	grep -q 'refused shm (a server of another user): using the network provider' '$tmp/root-auto.log' &&
	grep -q 'session on tcp' '$tmp/root-auto.log'"
# Asked for shm by name, it fails, and the refusal says what to do.
sed 's/provider = "auto"/provider = "shm"/' /etc/kvfs/kvfs.conf >"$tmp/shm.conf"
check "root's client on shm is told to use tcp" bash -c "
	! kvfsctl -c '$tmp/shm.conf' get big /dev/null 2>'$tmp/root-shm.log' &&
	grep -q 'use fabric.provider \"tcp\"' '$tmp/root-shm.log'"
kill -TERM "$pid"
rc=
for _ in $(seq 100); do
	kill -0 "$pid" 2>/dev/null || {
		wait "$pid"
		rc=$?
		break
	}
	sleep 0.1
done
pid=
check "SIGTERM: exit 0" test "${rc:-timeout}" = 0
check "STOPPING=1 on NOTIFY_SOCKET" grep -q '^STOPPING=1' "$tmp/notify.log"
[ "${rc:-}" = 0 ] || sed 's/^/    server: /' "$tmp/server.log"

# --- purge ---
rm -f /etc/kvfs/secret
check "dpkg --purge" dpkg --purge kvfs-server kvfs-tools libkvfs2
installed=0
check "the package's files are gone" bash -c '! [ -e /usr/sbin/kvfs-server -o -e /usr/bin/kvfsctl -o \
	-e /etc/kvfs/kvfs.conf -o -e /etc/kvfs -o -e /lib/systemd/system/kvfs-server.service ]'
check "purge keeps the user kvfs (Debian's usual way)" getent passwd kvfs

echo "$pass passed, $fail failed"
((fail == 0))
