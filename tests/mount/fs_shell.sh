#!/usr/bin/env bash
# Mount test: everyday shell tools on a real kvfs mount of two real servers
# ($KVFS_TEST_PROVIDER): echo/cat, cp -a of a tree in and out, mv, mkdir/rmdir,
# rm -r, ls -l, chmod, touch -d, atime/mtime/ctime after each kind of change
# (directories too), link counts (0 for an unlinked open file), symlinks,
# refused hard links, fifos, Unix sockets and device nodes (nodev by default,
# -o dev), mapped files (python mmap shared and private, sqlite3 WAL, LMDB),
# df, the user.kvfs.* xattrs, a second mount, a read-only mount, mount -t
# fuse.kvfs, the daemonizing start, O_APPEND, truncate, keys written by
# kvfsctl (valid and invalid as paths), a directory of 10,000 keys, and
# reads larger than a receive slot (client.buffer = 4M).
#   fs_shell.sh BUILD_DIR [SOURCE_DIR]
. "$(dirname "$0")/mount_lib.sh"
ml_init "$@"

ml_config 2
ml_servers_start || { record "servers start" 1; ml_finish; }
M=$T/m
ml_mount "$M" || { record "mount" 1; ml_finish; }
record "mount" 0
ra_kb() { cat "/sys/class/bdi/$(mountpoint -d "$1")/read_ahead_kb"; }
check "readahead of the mount is max_read (1 MiB)" test "$(ra_kb "$M")" = 1024

sz() { stat -c %s "$1"; }

# --- files ---------------------------------------------------------------
t_echo_cat() {
	echo hello >"$M/hello.txt" && test "$(cat "$M/hello.txt")" = hello
}
check "echo > file; cat file" t_echo_cat

t_overwrite() {
	echo "a much longer first line" >"$M/ow" && echo hi >"$M/ow" &&
		test "$(cat "$M/ow")" = hi && test "$(sz "$M/ow")" -eq 3
}
check "overwrite with a shorter value (O_TRUNC)" t_overwrite

t_append() {
	echo one >"$M/ap" && echo two >>"$M/ap" && printf 'three' >>"$M/ap" &&
		printf 'one\ntwo\nthree' | cmp - "$M/ap"
}
check "append with >> (O_APPEND)" t_append

t_empty() {
	: >"$M/empty" && test -f "$M/empty" && test "$(sz "$M/empty")" -eq 0 && test -z "$(cat "$M/empty")"
}
check "empty file" t_empty

t_truncate() {
	head -c 5000 /dev/urandom >"$T/tr.src" && cp "$T/tr.src" "$M/tr" &&
		truncate -s 100000 "$M/tr" && test "$(sz "$M/tr")" -eq 100000 &&
		cmp -n 5000 "$T/tr.src" "$M/tr" &&
		cmp -n 95000 -i 5000:0 "$M/tr" /dev/zero &&
		truncate -s 10 "$M/tr" && test "$(sz "$M/tr")" -eq 10 && cmp -n 10 "$T/tr.src" "$M/tr" &&
		truncate -s 0 "$M/tr" && test "$(sz "$M/tr")" -eq 0
}
check "truncate -s up (zeros), down, to 0" t_truncate

t_hole() {
	printf 'head' >"$M/hole" &&
		printf 'tail' | dd of="$M/hole" bs=1 seek=1048580 conv=notrunc status=none &&
		test "$(sz "$M/hole")" -eq 1048584 &&
		test "$(head -c 4 "$M/hole")" = head && test "$(tail -c 4 "$M/hole")" = tail &&
		cmp -n 1048576 -i 4:0 "$M/hole" /dev/zero
}
check "write past the end leaves a hole of zeros" t_hole

t_midwrite() {
	head -c 3000000 /dev/urandom >"$T/mid.src" && cp "$T/mid.src" "$M/mid" &&
		printf 'XYZ' | dd of="$M/mid" bs=1 seek=1500000 conv=notrunc status=none &&
		printf 'XYZ' | dd of="$T/mid.src" bs=1 seek=1500000 conv=notrunc status=none &&
		cmp "$T/mid.src" "$M/mid"
}
check "overwrite 3 bytes in the middle of a 3 MB file" t_midwrite

t_big() {
	head -c 50000001 /dev/urandom >"$T/big" && cp "$T/big" "$M/big" && cmp "$T/big" "$M/big" &&
		test "$(sz "$M/big")" -eq 50000001 && rm "$M/big"
}
check "cp of a 50 MB file in, cmp" t_big

# --- mapped files (issue 12): tests/mount/fs_mmap.py -------------------------
# The system python3 has python3-lmdb (scripts/deps); a python3 on PATH
# before it may not.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
check "mmap: MAP_SHARED read/write of r+b and w+b files; msync commits, an earlier handle keeps the old version" "$PY" "$SRC/tests/mount/fs_mmap.py" shared "$M/mm"
check "mmap: MAP_PRIVATE of rb and r+b files keeps its writes private" "$PY" "$SRC/tests/mount/fs_mmap.py" private "$M/mm"
check "mmap: a file written and closed maps read-only (MAP_SHARED) at once" "$PY" "$SRC/tests/mount/fs_mmap.py" readonly "$M/mm"
check "mmap: a read-only map through an r+b handle sees its write()s" "$PY" "$SRC/tests/mount/fs_mmap.py" fdwrite "$M/mm"
check "mmap: a second handle of a file open for writing: MAP_PRIVATE works, MAP_SHARED ENODEV" "$PY" "$SRC/tests/mount/fs_mmap.py" second "$M/mm"
check "mmap: munmap + close commits the mapped writes" "$PY" "$SRC/tests/mount/fs_mmap.py" munmap "$M/mm"
check "mmap: stores after close are committed at munmap/release" "$PY" "$SRC/tests/mount/fs_mmap.py" lateclose "$M/mm"
check "sqlite3 WAL (its -shm mapped shared), two connections" "$PY" "$SRC/tests/mount/fs_mmap.py" sqlite "$M/mm"
t_sqlite_cli() {
	command -v sqlite3 >/dev/null || { echo "sqlite3 is not installed (scripts/deps)"; return 1; }
	sqlite3 "$M/mm/cli.db" "pragma journal_mode=wal; create table t(a); insert into t values(1);" &&
		test "$(sqlite3 "$M/mm/cli.db" 'select a from t')" = 1
}
check "sqlite3 db 'pragma journal_mode=wal; create table; insert' (the issue's command)" t_sqlite_cli
if "$PY" -c 'import lmdb' 2>/dev/null; then
	check "lmdb: an environment written, reopened read-only, read back" "$PY" "$SRC/tests/mount/fs_mmap.py" lmdb "$M/mm"
else
	echo "# python3-lmdb not installed (scripts/deps): the lmdb check is left out"
fi

# --- trees -----------------------------------------------------------------
mktree() {
	local d=$T/src
	mkdir -p "$d/sub/deeper" "$d/emptydir" "$d/other" &&
		for i in 0 1 2 3 4 5 6 7 8 9; do echo "file $i" >"$d/f$i"; done &&
		head -c 4095 /dev/urandom >"$d/sub/a4095" && head -c 4096 /dev/urandom >"$d/sub/a4096" &&
		head -c 1048577 /dev/urandom >"$d/sub/deeper/b1M" && head -c 3000000 /dev/urandom >"$d/other/c3M" &&
		: >"$d/sub/zero" && printf 'x' >"$d/one byte" && echo private >"$d/sub/private" &&
		chmod 600 "$d/sub/private" && chmod 755 "$d/f1" && chmod 700 "$d/other" &&
		chown 1000:1000 "$d/f2" &&
		ln -s f0 "$d/rel-link" && ln -s /etc/hostname "$d/abs-link" && ln -s nowhere "$d/dangling" &&
		ln -s ../f3 "$d/sub/up-link" && touch -d '2020-01-02 03:04:05' "$d/f4"
}
mktree || record "make the source tree" 1
# path type mode owner size target/mtime, one line per entry (dir mtimes and sizes left out)
listing() {
	(cd "$1" && find . -mindepth 1 \( -type d -printf '%P d %m %U:%G\n' \) -o \
		\( -type l -printf '%P l %U:%G -> %l\n' \) -o \( -printf '%P %y %m %U:%G %s %TY-%Tm-%Td %TH:%TM:%.2TS\n' \) | sort)
}
t_cp_in() {
	cp -a "$T/src" "$M/tree" && diff -r --no-dereference "$T/src" "$M/tree" && diff <(listing "$T/src") <(listing "$M/tree")
}
check "cp -a a tree in: diff -r identical, modes, owners, mtimes, symlinks kept" t_cp_in
t_cp_out() {
	cp -a "$M/tree" "$T/back" && diff -r --no-dereference "$T/src" "$T/back" && diff <(listing "$T/src") <(listing "$T/back")
}
check "cp -a the tree out again: identical" t_cp_out
t_ls_l() {
	ls -l "$M/tree/sub" >"$T/ls" && grep -E '^-rw-------.* 1?[0-9]* ?.*private$' "$T/ls" &&
		grep -E ' 4095 .* a4095$' "$T/ls" && grep -E ' 4096 .* a4096$' "$T/ls" && grep -E '^d.* deeper$' "$T/ls" &&
		grep -E '^l.* up-link -> \.\./f3$' "$T/ls" && test "$(grep -c . "$T/ls")" -eq 7
}
check "ls -l shows types, modes, sizes, link targets" t_ls_l

t_mv_file() {
	mv "$M/tree/f5" "$M/tree/f5-moved" && test ! -e "$M/tree/f5" && test "$(cat "$M/tree/f5-moved")" = "file 5" &&
		mv "$M/tree/f6" "$M/f6-top" && test "$(cat "$M/f6-top")" = "file 6" && test ! -e "$M/tree/f6" &&
		mv -f "$M/tree/f7" "$M/tree/f8" && test "$(cat "$M/tree/f8")" = "file 7" && test ! -e "$M/tree/f7"
}
check "mv a file (same dir, other dir, over an existing file)" t_mv_file
t_mv_dir() {
	mv "$M/tree/sub" "$M/sub-moved" 2>"$T/mv.err" && cat "$T/mv.err" && test ! -s "$T/mv.err" &&
		test ! -e "$M/tree/sub" && diff -r --no-dereference "$T/src/sub" "$M/sub-moved" &&
		mkdir "$M/emptyd" && mv "$M/emptyd" "$M/emptyd2" && test -d "$M/emptyd2" && test ! -e "$M/emptyd"
}
check "mv a directory (non-empty, and empty), without error messages" t_mv_dir

t_mkdir_rmdir() {
	mkdir "$M/d1" && test -d "$M/d1" && test -z "$(ls -A "$M/d1")" && rmdir "$M/d1" && test ! -e "$M/d1" &&
		mkdir -p "$M/d2/e/f" && test -d "$M/d2/e/f" && ! mkdir "$M/d2" 2>/dev/null
}
check "mkdir, mkdir -p, rmdir, mkdir of an existing dir fails" t_mkdir_rmdir
t_rmdir_notempty() {
	mkdir "$M/ne" && echo x >"$M/ne/x" && rmdir "$M/ne"
}
check_fail "rmdir of a non-empty directory: ENOTEMPTY" "Directory not empty" t_rmdir_notempty
t_emptied_dir_stays() {
	rm "$M/ne/x" && test -d "$M/ne" && test -z "$(ls -A "$M/ne")" && rmdir "$M/ne" && test ! -e "$M/ne"
}
check "a mkdir'ed dir stays after its last file is removed" t_emptied_dir_stays
t_rm_r() {
	rm -r "$M/tree" && test ! -e "$M/tree" && ! ls "$M" | grep -qx tree && test -z "$(ctl ls -r tree/)"
}
check "rm -r of a tree (and the keys are gone)" t_rm_r

t_chmod() {
	echo x >"$M/cm" && chmod 640 "$M/cm" && test "$(stat -c %a "$M/cm")" = 640 &&
		ls -l "$M/cm" | grep -q '^-rw-r----- ' && chmod u+x "$M/cm" && test "$(stat -c %a "$M/cm")" = 740 &&
		mkdir "$M/cmd" && chmod 711 "$M/cmd" && test "$(stat -c %a "$M/cmd")" = 711
}
check "chmod shown by stat and ls (file and dir)" t_chmod
t_chown() {
	echo x >"$M/co" && chown 1234:4321 "$M/co" && test "$(stat -c %u:%g "$M/co")" = 1234:4321
}
check "chown shown by stat" t_chown
t_touch_d() {
	echo x >"$M/td" && touch -d '2001-02-03 04:05:06.5' "$M/td" &&
		test "$(stat -c %Y "$M/td")" = "$(date -d '2001-02-03 04:05:06' +%s)" &&
		touch "$M/td-new" && test -f "$M/td-new" &&
		test $(($(date +%s) - $(stat -c %Y "$M/td-new"))) -le 5
}
check "touch -d sets the mtime; touch creates" t_touch_d
# --- times and link counts ----------------------------------------------------
# tstep FILE WHAT A M C CMD...: run CMD, then FILE's atime, mtime and ctime
# must each be "=" (unchanged), "+" (later) or an exact value in ns, against
# the times before CMD.
times_of() { stat -c '%.9X %.9Y %.9Z' "$1" | tr -d .; }
# tstep FILE WHAT WANT_ATIME WANT_MTIME WANT_CTIME CMD...: the times of FILE
# before and after CMD: = unchanged, + later, or a value. While a reader's
# handle is still open here, stat shows the version it reads; the kernel
# releases a closed handle asynchronously, so the "after" side gets up to
# 2 s (it says when it needed them).
tstep() {
	local f=$1 what=$2 want=("$3" "$4" "$5") before after i try ok
	shift 5
	read -ra before < <(times_of "$f") && "$@" || {
		echo "$what: failed"
		return 1
	}
	for ((try = 0; try < 20; try++)); do
		read -ra after < <(times_of "$f") || return 1
		ok=1
		for i in 0 1 2; do
			case ${want[i]} in
			=) [ "${after[i]}" = "${before[i]}" ] ;;
			+) [ "${after[i]}" -gt "${before[i]}" ] ;;
			*) [ "${after[i]}" = "${want[i]}" ] ;;
			esac || ok=0
		done
		((ok)) && break
		sleep 0.1
	done
	((try)) && echo "$what: the times were right after $((try * 100)) ms"
	((ok)) || {
		echo "$what: atime mtime ctime ${before[*]} -> ${after[*]}, wanted ${want[*]}"
		return 1
	}
}
utimens() { python3 -c 'import os, sys; os.utime(sys.argv[1], ns=(int(sys.argv[2]), int(sys.argv[3])))' "$@"; }
t_times_file() {
	local f=$M/tm
	echo one >"$f" && ls -l "$f" && findmnt -no OPTIONS "$M" | grep -qw noatime &&
		tstep "$f" "cat" = = = cat "$f" &&
		tstep "$f" "write (>>)" = + + sh -c "echo two >>'$f'" &&
		tstep "$f" "truncate" = + + truncate -s 2 "$f" &&
		tstep "$f" "chmod" = = + chmod 600 "$f" &&
		tstep "$f" "chown" = = + chown 12:34 "$f" &&
		tstep "$f" "utimens, distinct atime and mtime" 1111111111222333444 1222222222333444555 + \
			utimens "$f" 1111111111222333444 1222222222333444555 &&
		tstep "$f" "touch -a" + = + touch -a "$f" &&
		tstep "$f" "touch -a -d" 1000000000500000000 = + touch -a -d @1000000000.5 "$f" &&
		tstep "$f" "cat again" = = = cat "$f" &&
		tstep "$f" "rename (away and back)" = = + sh -c "mv '$f' '$f.2' && mv '$f.2' '$f'" &&
		test "$(stat -c %X:%Y "$f")" = 1000000000:1222222222 &&
		ctl stat tm | grep -E '^(atime|ctime): ' | tee "$T/ctl.st" && grep -q '^atime: *2001-09-0' "$T/ctl.st" &&
		test "$(stat -c %h "$f")" = 1 &&
		tstep "$f" "setfattr user.kvfs.ttl" = = + setfattr -n user.kvfs.ttl -v 100000 "$f"
}
check "file times: cat keeps all three; write, truncate: mtime+ctime; chmod, chown, ttl, rename: ctime; utimens, touch -a: atime as set" t_times_file
t_times_dir() {
	local d=$M/tdir
	mkdir "$d" &&
		tstep "$d" "create in it" = + + touch "$d/a" &&
		tstep "$d" "rewrite of a file in it" = = = sh -c "echo x >'$d/a'" &&
		tstep "$d" "ls" = = = ls "$d" &&
		tstep "$d" "mkdir in it" = + + mkdir "$d/sub" &&
		tstep "$d" "rename out of it" = + + mv "$d/a" "$d/sub/a" &&
		tstep "$d/sub" "rename into it" = + + mv "$d/sub/a" "$d/sub/b" &&
		tstep "$d" "symlink in it" = + + ln -s nowhere "$d/l" &&
		tstep "$d" "unlink in it" = + + rm "$d/l" &&
		rm "$d/sub/b" && tstep "$d" "rmdir in it" = + + rmdir "$d/sub" &&
		mkdir "$d/s1" "$d/s2" && test "$(stat -c %h "$d")" = 1 && test "$(stat -c %h "$d/s1")" = 1 &&
		test "$(stat -c %h "$M")" = 1 && find "$d" | sort | tee "$T/find" && test "$(wc -l <"$T/find")" -eq 3 &&
		echo x | ctl put implied/k && test "$(stat -c '%X %Y' "$M/implied")" = "$(stat -c '%Z %Z' "$M/implied")"
}
check "directory times follow create, mkdir, rename in/out, symlink, unlink, rmdir (not a rewrite, not ls); nlink 1" t_times_dir
t_unlinked_nlink() {
	python3 - "$M/unl" <<'PY'
import os, sys
p = sys.argv[1]
with open(p, "w") as f:
    f.write("data")
r = os.open(p, os.O_RDONLY)
w = os.open(p, os.O_WRONLY | os.O_APPEND)
assert os.fstat(r).st_nlink == 1, os.fstat(r)
os.unlink(p)
for fd, what in ((r, "reader"), (w, "writer")):
    st = os.fstat(fd)
    assert st.st_nlink == 0, "%s: %s" % (what, st)
assert os.pread(r, 10, 0) == b"data"
os.close(r)
os.close(w)
print("fstat after unlink: nlink 0 (reader and writer)")
PY
}
check "fstat of an open file after unlink: 0 links" t_unlinked_nlink

t_symlink() {
	ln -s hello.txt "$M/ln1" && test "$(readlink "$M/ln1")" = hello.txt && test "$(cat "$M/ln1")" = hello &&
		test -L "$M/ln1" && ln -s /no/such/target "$M/ln2" && test "$(readlink "$M/ln2")" = /no/such/target &&
		mkdir -p "$M/lnd" && ln -s ../hello.txt "$M/lnd/up" && test "$(cat "$M/lnd/up")" = hello
}
check "ln -s, readlink, reading through symlinks" t_symlink
check_fail "ln (hard link) is refused: EPERM" "Operation not permitted" ln "$M/hello.txt" "$M/hard"

# --- fifos, sockets, devices: typed keys; the kernel serves their opens -------
mkdir -p "$M/sp"
t_fifo() {
	local w got
	mkfifo -m 640 "$M/sp/fifo" && test -p "$M/sp/fifo" &&
		test "$(stat -c '%F %a %s' "$M/sp/fifo")" = "fifo 640 0" || return 1
	# a writer and a reader meet in the kernel's pipe (an open sent to kvfs would fail: ENXIO)
	timeout 10 sh -c "printf 'through the fifo' >'$M/sp/fifo'" &
	w=$!
	got=$(timeout 10 cat "$M/sp/fifo") && wait "$w" && test "$got" = "through the fifo" &&
		test "$(ctl stat sp/fifo | awk '$1 == "mode:" { print $2 }')" = 010640
}
check "mkfifo: a fifo (type p, size 0); a writer and a reader pass data through it" t_fifo
t_devices() {
	mknod -m 620 "$M/sp/null" c 1 3 && mknod "$M/sp/loop" b 7 0 && ls -l "$M/sp" >"$T/ls.sp" &&
		cat "$T/ls.sp" && grep -Eq '^crw--w---- .* 1, +3 .* null$' "$T/ls.sp" &&
		grep -Eq '^brw-r--r-- .* 7, +0 .* loop$' "$T/ls.sp" &&
		test "$(stat -c '%F %t,%T %s' "$M/sp/null")" = "character special file 1,3 0" &&
		test "$(stat -c '%F %t,%T %s' "$M/sp/loop")" = "block special file 7,0 0" &&
		test "$(ctl get sp/null - | od -An -tx1 | tr -d ' \n')" = 0100000003000000 &&
		ctl stat sp/loop | grep -x 'device:  7, 0'
}
check "mknod c and b: ls -l and stat show type and major, minor (value: 8 bytes, kvfsctl stat)" t_devices
check "the mount is nodev by default" sh -c "grep ' $M ' /proc/self/mountinfo | grep -q '[ ,]nodev[ ,]'"
check_fail "open of a device node on a nodev mount: EACCES" "Permission denied" cat "$M/sp/null"
t_socket() {
	python3 - "$M/sp/sock" <<'PY'
import os, socket, stat, subprocess, sys
p = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
s.bind(p)
s.listen(1)
assert stat.S_ISSOCK(os.lstat(p).st_mode), oct(os.lstat(p).st_mode)
c = subprocess.Popen([sys.executable, "-c", """
import socket, sys
c = socket.socket(socket.AF_UNIX)
c.connect(sys.argv[1])
c.sendall(b"ping")
assert c.recv(4) == b"pong"
""", p])
s.settimeout(10)
a, _ = s.accept()
a.settimeout(10)
assert a.recv(4) == b"ping"
a.sendall(b"pong")
assert c.wait(10) == 0
PY
	test -S "$M/sp/sock" && test "$(stat -c '%F %s' "$M/sp/sock")" = "socket 0"
}
check "a Unix socket bound in the mount: another process connects, data both ways" t_socket
# A name in directory $2 whose key lives on another server than key $1's
# (kvfsctl: the kernel allows user.* xattrs on regular files and directories only).
other_server_name() {
	local s i
	s=$(ctl stat "$1" | awk '$1 == "server:" { print $2 }') && test -n "$s" || return 1
	for i in $(seq 0 31); do
		: >"$2/probe$i" || return 1
		if [ "$(getfattr --only-values -n user.kvfs.server "$2/probe$i")" != "$s" ]; then
			rm "$2/probe$i" && echo "probe$i"
			return
		fi
		rm "$2/probe$i" || return 1
	done
	return 1
}
t_special_attrs() {
	chmod 604 "$M/sp/fifo" && chown 1234:4321 "$M/sp/null" && chmod 600 "$M/sp/sock" &&
		touch -h -d '2001-02-03 04:05:06' "$M/sp/loop" &&
		test "$(stat -c %a "$M/sp/fifo") $(stat -c %a "$M/sp/sock") $(stat -c %u:%g "$M/sp/null")" = \
			"604 600 1234:4321" &&
		test "$(stat -c %Y "$M/sp/loop")" = "$(date -d '2001-02-03 04:05:06' +%s)" &&
		test "$(stat -c '%F %t,%T' "$M/sp/null")" = "character special file 1,3"
}
check "chmod, chown, touch of a fifo, a socket and devices" t_special_attrs
t_special_mv() {
	local far
	mv "$M/sp/fifo" "$M/sp/fifo2" && test -p "$M/sp/fifo2" && test ! -e "$M/sp/fifo" &&
		mv "$M/sp/sock" "$M/sp/sock2" && test -S "$M/sp/sock2" &&
		far=$(other_server_name sp/null "$M/sp") && echo "other server's name: $far" &&
		mv "$M/sp/null" "$M/sp/$far" && test ! -e "$M/sp/null" &&
		test "$(stat -c '%F %t,%T %a %u:%g' "$M/sp/$far")" = "character special file 1,3 620 1234:4321" &&
		mv "$M/sp/$far" "$M/sp/null" && test "$(stat -c '%F %t,%T' "$M/sp/null")" = "character special file 1,3"
}
check "mv of a fifo and a socket (one server), of a device to another server and back" t_special_mv
t_special_tar() {
	mkdir -p "$M/sp-tar/in" && mkfifo -m 600 "$M/sp-tar/in/f" && mknod -m 640 "$M/sp-tar/in/c" c 1 5 &&
		tar -C "$M/sp-tar" -cf "$T/sp.tar" in && mkdir "$M/sp-tar/out" && tar -C "$M/sp-tar/out" -xf "$T/sp.tar" &&
		(cd "$M/sp-tar/in" && stat -c '%n %F %a %t,%T %Y' f c) >"$T/sp.in" &&
		(cd "$M/sp-tar/out/in" && stat -c '%n %F %a %t,%T %Y' f c) >"$T/sp.out" &&
		cat "$T/sp.out" && diff "$T/sp.in" "$T/sp.out" && rm -r "$M/sp-tar"
}
check "tar of a directory with a fifo and a device, extracted in the mount again: the same" t_special_tar
check_fail "ln of a fifo (hard link) is refused: EPERM" "Operation not permitted" ln "$M/sp/fifo2" "$M/sp/hard"

t_df() {
	local size
	df "$M" && size=$(df -B1 --output=size "$M" | tail -1) && test "$size" -gt 0 &&
		test "$(stat -f -c %b "$M")" -gt 0 &&
		{ test "$size" -eq $((2 * 1500 * 1048576)) || { echo "size $size, not the 2 x 1500M of the servers' pools"; false; }; }
}
check "df shows the servers' pools (2 x 1500M)" t_df
t_ino_stable() {
	local a b
	mkdir -p "$M/ino/d" && echo x >"$M/ino/f" && ln -s f "$M/ino/l" &&
		a=$(stat -c '%n %i' "$M/ino" "$M/ino/d" "$M/ino/f" "$M/ino/l") && sleep 1.5 &&
		b=$(stat -c '%n %i' "$M/ino" "$M/ino/d" "$M/ino/f" "$M/ino/l") &&
		{ [ "$a" = "$b" ] || { printf 'before:\n%s\nafter 1.5 s (past entry_timeout):\n%s\n' "$a" "$b"; false; }; }
}
check "inode numbers stay the same when entries are looked up again (tar relies on it)" t_ino_stable

# --- xattrs ----------------------------------------------------------------
t_xattr_server() {
	local s c
	s=$(getfattr --only-values -n user.kvfs.server "$M/hello.txt") && echo "server: $s" &&
		c=$(ctl stat hello.txt | awk '$1 == "server:" { print $2 }') && test "$s" = "$c" &&
		case $s in s0 | s1) ;; *) false ;; esac
}
check "getfattr user.kvfs.server names the key's server" t_xattr_server
t_xattr_version() {
	local v1 v2
	v1=$(getfattr --only-values -n user.kvfs.version "$M/hello.txt") && echo "hello again" >"$M/hello.txt" &&
		v2=$(getfattr --only-values -n user.kvfs.version "$M/hello.txt") && echo "$v1 -> $v2" &&
		test -n "$v1" && test -n "$v2" && test "$v1" != "$v2" && echo hello >"$M/hello.txt"
}
check "user.kvfs.version changes after a write" t_xattr_version
check "setfattr of user.kvfs.version is refused" sh -c "! setfattr -n user.kvfs.version -v 12345 '$M/hello.txt'"
check "setfattr of user.kvfs.server is refused" sh -c "! setfattr -n user.kvfs.server -v s0 '$M/hello.txt'"
t_xattr_ttl() {
	local v i
	echo bye >"$M/ttl" && setfattr -n user.kvfs.ttl -v 3 "$M/ttl" &&
		v=$(getfattr --only-values -n user.kvfs.ttl "$M/ttl") && echo "ttl: $v" &&
		test "$v" -ge 1 && test "$v" -le 4 && test "$(cat "$M/ttl")" = bye &&
		ctl stat ttl | grep -q '^expiry: *[0-9]' || return 1
	# expires after 3 s; allow the 1 s attribute/entry caches and slack: 10 s at most
	for ((i = 0; i < 100 * ML_SLOW; i++)); do
		[ -e "$M/ttl" ] || break
		sleep 0.1
	done
	test ! -e "$M/ttl" && ! ls "$M" | grep -qx ttl && ! ctl get ttl >/dev/null 2>&1
}
check "setfattr user.kvfs.ttl: the key expires" t_xattr_ttl
t_xattr_ttl_default() {
	local v
	v=$(getfattr --only-values -n user.kvfs.ttl "$M/hello.txt") && echo "ttl: $v" && test "$v" = 0
}
check "user.kvfs.ttl of a key without expiry is 0" t_xattr_ttl_default

# --- kvfsctl and the mount ---------------------------------------------------
t_from_ctl() {
	head -c 2345678 /dev/urandom >"$T/fromctl" && ctl put fromctl/data "$T/fromctl" &&
		cmp "$T/fromctl" "$M/fromctl/data" && ls "$M/fromctl" | grep -qx data && test -d "$M/fromctl" &&
		test "$(sz "$M/fromctl/data")" -eq 2345678 &&
		echo "mode test" | ctl put fromctl/m600 --mode 600 && test "$(stat -c %a "$M/fromctl/m600")" = 600
}
check "a key put with kvfsctl reads as a file (size, mode)" t_from_ctl
t_to_ctl() {
	test "$(ctl get hello.txt -)" = hello && ctl get fromctl/data "$T/fromctl.back" && cmp "$T/fromctl" "$T/fromctl.back"
}
check "a file written through the mount reads with kvfsctl" t_to_ctl
t_invalid_keys() {
	local long
	long=$(printf 'x%.0s' $(seq 256))
	echo bad | ctl put 'inv//double' && echo bad | ctl put 'inv/./dot' && echo bad | ctl put 'inv/../dotdot' &&
		echo bad | ctl put "inv/$long" && echo good | ctl put 'inv/ok' && echo bad | ctl put '/leading' &&
		ls -la "$M/inv" && test "$(ls -A "$M/inv")" = ok && test "$(cat "$M/inv/ok")" = good &&
		! ls -A "$M" | grep -qx leading && ls -A "$M" >/dev/null &&
		test "$(ctl get 'inv//double' -)" = bad && test "$(ctl get 'inv/./dot' -)" = bad &&
		test "$(ctl get "inv/$long" -)" = bad && test "$(ctl get /leading -)" = bad
}
check "keys that cannot be paths (a//b, ., .., 256-byte part) are not listed but kvfsctl gets them" t_invalid_keys

t_10k() {
	local t0 n
	ctl bench --op put --size 16 --count 10000 --keys 10000 --threads 4 --prefix many/k --json >/dev/null || return 1
	test "$(ctl ls many/ | wc -l)" -eq 10000 || { echo "kvfsctl ls many/ does not show 10000 keys"; return 1; }
	t0=$(ml_now)
	n=$(ls -l "$M/many" | grep -c '^-rw') && echo "ls -l: $n files in $(ml_since "$t0") s" && test "$n" -eq 10000 &&
		n=$(ls "$M/many" | sort -u | wc -l) && test "$n" -eq 10000 &&
		test "$(cat "$M/many/k00009999" | wc -c)" -eq 16 && test "$(ls "$M/many" | head -1)" = k00000000
}
check "ls -l of a directory of 10,000 keys lists all 10,000" t_10k

# --- other mounts ---------------------------------------------------------------
M2=$T/m2
if ml_mount "$M2" -o attr_timeout=0,entry_timeout=0,negative_timeout=0; then
	t_second_mount() {
		local i
		echo "from the first" >"$M/shared" && test "$(cat "$M2/shared")" = "from the first" &&
			echo "from the second" >"$M2/shared2" &&
			for ((i = 0; i < 40; i++)); do # the first mount caches entries for 1 s
				[ "$(cat "$M/shared2" 2>/dev/null)" = "from the second" ] && break
				sleep 0.1
			done &&
			test "$(cat "$M/shared2")" = "from the second" &&
			echo "changed" >"$M/shared" && test "$(cat "$M2/shared")" = changed &&
			rm "$M/shared" && test ! -e "$M2/shared" && diff <(ls "$M") <(ls "$M2")
	}
	check "a second mount sees the first's writes (and the other way round)" t_second_mount
	ml_umount "$M2"
	record "unmount the second mount" $?
else
	record "second mount (attr_timeout=0,entry_timeout=0)" 1
fi

M3=$T/m3
if ml_mount "$M3" -o ro; then
	check "ro mount reads" sh -c "test \"\$(cat '$M3/hello.txt')\" = hello && ls '$M3/fromctl' | grep -qx data"
	check_fail "ro mount: create fails with EROFS" "Read-only file system" sh -c "echo x > '$M3/new'"
	check_fail "ro mount: overwrite fails with EROFS" "Read-only file system" sh -c "echo x > '$M3/hello.txt'"
	check_fail "ro mount: rm fails with EROFS" "Read-only file system" rm "$M3/hello.txt"
	check_fail "ro mount: mkdir fails with EROFS" "Read-only file system" mkdir "$M3/newdir"
	check_fail "ro mount: chmod fails with EROFS" "Read-only file system" chmod 600 "$M3/hello.txt"
	check_fail "ro mount: setfattr ttl fails with EROFS" "Read-only file system" setfattr -n user.kvfs.ttl -v 5 "$M3/hello.txt"
	check "ro mount: nothing changed" sh -c "test \"\$(cat '$M/hello.txt')\" = hello && test ! -e '$M/new' && test ! -e '$M/newdir'"
	ml_umount "$M3"
	record "unmount the ro mount" $?
else
	record "ro mount" 1
fi

# -o dev: device nodes open the real devices (root only). A new daemon learns
# the numbers from the keys: by lookup (stat) and by listing (ls -l).
M11=$T/m11
if ml_mount "$M11" -o dev; then
	t_dev_mount() {
		local got
		grep " $M11 " /proc/self/mountinfo | grep -v '[ ,]nodev[ ,]' &&
			test "$(stat -c '%F %t,%T' "$M11/sp/null")" = "character special file 1,3" &&
			ls -l "$M11/sp" | grep -E '^brw-r--r-- .* 7, +0 .* loop$' && test -p "$M11/sp/fifo2" &&
			test -S "$M11/sp/sock2" &&
			got=$(cat "$M11/sp/null" | wc -c) && test "$got" -eq 0 && echo discarded >"$M11/sp/null" &&
			test "$(ctl get sp/null - | od -An -tx1 | tr -d ' \n')" = 0100000003000000
	}
	check "-o dev: a new mount shows the special files; device 1,3 opens as /dev/null (empty, takes writes)" t_dev_mount
	ml_umount "$M11"
	record "unmount the -o dev mount" $?
else
	record "mount -o dev" 1
fi
t_special_rm() {
	rm "$M/sp/fifo2" "$M/sp/sock2" "$M/sp/null" "$M/sp/loop" && test -z "$(ls -A "$M/sp")" &&
		rmdir "$M/sp" && for k in sp/fifo2 sp/sock2 sp/null sp/loop sp/; do
			! ctl stat "$k" >/dev/null 2>&1 || { echo "key $k is still there"; return 1; }
		done
}
check "rm of a fifo, a socket and devices (and their keys are gone)" t_special_rm

# mount(8): `mount -t fuse.kvfs CONFIG MNT -o OPTS` runs /sbin/mount.fuse.kvfs
# (the installed name of mount.kvfs), with a sanitized PATH. So that the build
# tree's helper and daemon are the ones found, without touching the system,
# this runs in a private mount namespace where an overlay adds
# mount.fuse.kvfs and kvfs to /sbin. The mount lives in that namespace only.
M4=$T/m4
helper=
for h in "$BUILD/mount.kvfs" "$SRC/src/fuse/mount.kvfs"; do
	[ -x "$h" ] && { helper=$h; break; }
done
if [ -n "$helper" ]; then
	t_mount_t() {
		local sbin
		sbin=$(readlink -f /sbin)
		mkdir -p "$T/sbin-extra" "$M4" && ln -sf "$helper" "$T/sbin-extra/mount.fuse.kvfs" &&
			ln -sf "$BUILD/kvfs" "$T/sbin-extra/kvfs" || return 1
		unshare -m --propagation private sh -c "
			set -e
			mount -t overlay kvfs-test-sbin -o 'lowerdir=$T/sbin-extra:$sbin' '$sbin'
			mount -t fuse.kvfs '$CONF' '$M4' -o attr_timeout=0,entry_timeout=0,_netdev
			mountpoint -q '$M4'
			grep ' $M4 ' /proc/self/mountinfo
			test \"\$(cat '$M4/hello.txt')\" = hello
			echo viamount > '$M4/viamount'
			fusermount3 -u '$M4'" || return 1
		test "$(cat "$M/viamount")" = viamount
	}
	check "mount -t fuse.kvfs CONFIG MNT -o ... (through mount.fuse.kvfs): the mount works" t_mount_t
	M5=$T/m5
	mkdir -p "$M5"
	if out=$(timeout -k 1 30 "$helper" "$CONF" "$M5" -o ro,_netdev 2>&1) && ml_answers "$M5"; then
		ml_mounts+=("$M5")
		check "mount.kvfs CONFIG MNT -o ro,_netdev: mounted read-only" sh -c "test \"\$(cat '$M5/hello.txt')\" = hello && ! touch '$M5/x' 2>/dev/null"
		ml_umount "$M5"
		record "unmount the mount.kvfs mount" $?
	else
		record "$helper CONFIG MNT -o ro" 1 "$out"
	fi
else
	record "mount.kvfs helper exists (build dir or src/fuse)" 1
fi

# Mount options: uid/gid/umask for keys without stored owner/mode,
# allow_other (with default_permissions), max_read/max_write.
M7=$T/m7
if ml_mount "$M7" -o uid=1234,gid=4321,umask=027; then
	t_owner_defaults() {
		echo plain | ctl put opts/plain && ls -ln "$M7/opts" &&
			test "$(stat -c %u:%g "$M7/opts/plain")" = 1234:4321 &&
			test $((0$(stat -c %a "$M7/opts/plain") & 027)) -eq 0 &&
			test "$(stat -c %u:%g "$M7/hello.txt")" = 0:0 # stored owner wins
	}
	check "uid=,gid=,umask= apply to keys without stored owner/mode" t_owner_defaults
	ml_umount "$M7"
	record "unmount the uid/gid/umask mount" $?
else
	record "mount -o uid=1234,gid=4321,umask=027" 1
fi
chmod 755 "$T" # so that another user can reach the mountpoints at all
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
check_fail "without allow_other another user is refused" "Permission denied" as_nobody ls "$M"
M8=$T/m8
if ml_mount "$M8" -o allow_other; then
	t_allow_other() {
		echo public >"$M/pub" && chmod 644 "$M/pub" && echo secret >"$M/priv" && chmod 600 "$M/priv" &&
			test "$(as_nobody cat "$M8/pub")" = public && ! as_nobody cat "$M8/priv" 2>"$T/e" &&
			grep -q "Permission denied" "$T/e" && ! as_nobody touch "$M8/by-nobody" 2>/dev/null &&
			mkdir -p "$M8/open" && chmod 777 "$M8/open" && as_nobody sh -c "echo mine > '$M8/open/nob'" &&
			test "$(stat -c %u "$M8/open/nob")" = 65534
	}
	check "allow_other: other users read by the mode bits (default_permissions)" t_allow_other
	ml_umount "$M8"
	record "unmount the allow_other mount" $?
else
	record "mount -o allow_other" 1
fi
M9=$T/m9
if ml_mount "$M9" -o max_read=65536,max_write=65536; then
	check "max_read=64K: readahead 64 KiB" test "$(ra_kb "$M9")" = 64
	check "max_read=64K,max_write=64K: a 5 MB file round-trips" sh -c "head -c 5000000 /dev/urandom > '$T/r5' && cp '$T/r5' '$M9/r5' && cmp '$T/r5' '$M9/r5' && cmp '$T/r5' '$M/r5'"
	ml_umount "$M9"
	record "unmount the max_read/max_write mount" $?
else
	record "mount -o max_read=65536,max_write=65536" 1
fi

# client.buffer = 4M: receive slots of 512 KiB, half a FUSE read (max_read
# 1 MiB), so a read by RMA (local_map = false, on shm too) is copied through
# a slot piece by piece. A writer kept open makes the readers use direct I/O, whose reads
# have the reader's size (page-cache reads are smaller): dd bs=1M and cat of a
# 6 MB file must give its bytes.
SMALL=$T/small-buffer.conf
sed -e 's/buffer = "64M"/buffer = "4M"/' -e 's/local_map = true/local_map = false/' "$CONF" >"$SMALL"
M10=$T/m10
if grep -q 'buffer = "4M".*local_map = false' "$SMALL" && CONF=$SMALL ml_mount "$M10"; then
	t_small_slots() {
		head -c 6300000 /dev/urandom >"$T/s6" && cp "$T/s6" "$M10/s6" && exec 3>>"$M10/s6" &&
			dd if="$M10/s6" bs=1M status=none | cmp "$T/s6" - && cat "$M10/s6" | cmp "$T/s6" - &&
			exec 3>&- && cmp "$T/s6" "$M/s6"
	}
	check "client.buffer = 4M, local_map = false: dd bs=1M and cat of a 6 MB file" t_small_slots
	ml_umount "$M10"
	record "unmount the client.buffer = 4M mount" $?
else
	record "mount with client.buffer = 4M, local_map = false" 1 "$(cat "$SMALL")"
fi

# Without -f the daemon forks once the mount is ready: no waiting.
M6=$T/m6
mkdir -p "$M6"
if out=$(timeout -k 1 30 "$BUILD/kvfs" -c "$CONF" "$M6" 2>&1); then
	ml_mounts+=("$M6")
	check "kvfs without -f: mounted when it returns" sh -c "mountpoint -q '$M6' && test \"\$(cat '$M6/hello.txt')\" = hello"
	ml_umount "$M6"
	record "unmount the daemonized mount" $?
else
	record "kvfs -c CONF MNT (daemonizing)" 1 "$out"
fi

# Bad options and a broken config: a clear error, no mount.
t_bad_options() {
	local o out bad=$T/mbad
	mkdir -p "$bad"
	printf 'cluster = { servers = ( { name = "x" } ) }\n' >"$T/broken.conf"
	for o in -omax_read=4194304 -omax_write=100 -othreads=0 -othreads=65 -oumask=1777 \
		-oattr_timeout=-1 "-c $T/broken.conf" "-c $T/missing.conf"; do
		# shellcheck disable=SC2086 # "-c FILE" is two words
		if out=$(timeout -k 1 10 "$BUILD/kvfs" -c "$CONF" "$bad" -f $o 2>&1); then
			echo "accepted: $o"
			fusermount3 -u -z "$bad" 2>/dev/null
			return 1
		fi
		ml_mounted "$bad" && { echo "mounted with $o"; fusermount3 -u -z "$bad"; return 1; }
		grep -q "^kvfs: " <<<"$out" || { echo "no clear error for $o: $out"; return 1; }
	done
}
check "bad options and a broken config: refused with an error, nothing mounted" t_bad_options

check "the main mount still works" sh -c "test \"\$(cat '$M/hello.txt')\" = hello && ls '$M' >/dev/null"
ml_finish
