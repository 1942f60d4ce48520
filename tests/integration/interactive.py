#!/usr/bin/env python3
"""Integration: kvfsctl's interactive mode on a pseudo-terminal.

Starts a kvfs-server on $KVFS_TEST_PROVIDER (shm or tcp; port
$KVFS_TEST_PORT, else a free one), runs `kvfsctl -c CONF` on a pty as a
person would, and checks what it prints: put/get, recalling a line with the
up arrow (ESC [ A) and editing it, help, a bad line, quit and Ctrl-D (exit
0), the history file (~/.kvfsctl_history, $KVFSCTL_HISTORY, bounded to 1000
lines, loaded by the next session, none without HOME). Every wait is
bounded; the server, the sessions and the files go however it ends.
"""

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import time

build = sys.argv[1]
prov = os.environ.get("KVFS_TEST_PROVIDER", "tcp")
ctl = os.path.join(build, "kvfsctl")
children = []  # pids to kill at the end


class Failure(Exception):
    pass


class Session:
    """kvfsctl on a pty, its output read with bounded waits."""

    def __init__(self, env, cwd):
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.chdir(cwd)
                os.execve(ctl, [ctl, "-c", conf], env)
            finally:
                os._exit(127)
        self.pid, self.fd, self.buf, self.seen = pid, fd, b"", b""
        children.append(pid)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))

    def prompt(self):
        """Wait for the prompt, and a moment: libedit (3.1-20221030) prints it
        before it switches the tty to raw mode, and in between the canonical
        line discipline would take an erase or Ctrl-D (to a NUL) itself. A
        person cannot type that fast."""
        self.expect(rb"kvfs> ")
        time.sleep(0.2)

    def send(self, data):
        os.write(self.fd, data)

    def _read(self, timeout):
        r, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not r:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the other side is closed
            data = b""
        if not data:
            raise EOFError
        self.buf += data
        self.seen += data
        return True

    def expect(self, pattern, timeout=20):
        """Consume output up to the first match of pattern (bytes regex)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            try:
                if not self._read(deadline - time.monotonic()) and time.monotonic() >= deadline:
                    raise Failure("no %r within %ds; output: %r" % (pattern, timeout, self.seen))
            except EOFError:
                raise Failure("ended before %r; output: %r" % (pattern, self.seen))

    def wait(self, timeout=20):
        """The exit status once it ends (its output drained)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                children.remove(self.pid)
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            try:
                self._read(0.1)
            except EOFError:
                time.sleep(0.05)
        raise Failure("did not end within %ds; output: %r" % (timeout, self.seen))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def lines(path):
    with open(path) as f:
        return f.read().splitlines()


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
    except (Failure, AssertionError) as e:
        failed += 1
        print("FAIL: %s: %s" % (name, e))


tmp = tempfile.mkdtemp(prefix="kvfsctl-interactive.")
server = None
passed = failed = 0
signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
try:
    port = int(os.environ.get("KVFS_TEST_PORT") or free_port())
    conf = os.path.join(tmp, "kvfs.conf")
    with open(conf, "w") as f:
        f.write('cluster = { servers = ( { name = "only"; address = "127.0.0.1:%d"; } ); };\n'
                'fabric = { provider = "%s"; };\n'
                'server = { memory = "64M"; };\n'
                'client = { timeout_ms = 10000; };\n' % (port, prov))
    server = subprocess.Popen([os.path.join(build, "kvfs-server"), "-c", conf],
                              stderr=open(os.path.join(tmp, "server.log"), "w"))
    for _ in range(100):
        if subprocess.run([ctl, "-c", conf, "ping"], capture_output=True, timeout=20).returncode == 0:
            break
        time.sleep(0.1)
    else:
        raise Failure("server did not answer")

    home = os.path.join(tmp, "home")
    os.mkdir(home)
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm", "LANG": "C.UTF-8"}
    env_home = dict(base, HOME=home)
    hist = os.path.join(home, ".kvfsctl_history")

    def first_session():
        s = Session(env_home, tmp)
        s.prompt()
        s.send(b"put k v\r")
        s.expect(rb"\r\nOK\r\n")
        s.prompt()
        s.send(b"get k\r")
        s.expect(rb'\r\n"v"\r\n')
        s.prompt()
        # Up twice: "put k v"; delete the v, type v2. (libedit redraws only
        # what changed, so the proof is what the line then does.)
        s.send(b"\x1b[A\x1b[A\x7fv2\r")
        s.expect(rb"\r\nOK\r\n")
        s.prompt()
        s.send(b"get k\r")
        s.expect(rb'\r\n"v2"\r\n')
        s.prompt()
        s.send(b"get nope\r")
        s.expect(rb"\r\nERR ENOENT no such key\r\n")
        s.prompt()
        s.send(b"frobnicate k\r")
        s.expect(rb"ERR EINVAL expected: put KEY VALUE \| get KEY")
        s.prompt()
        s.send(b"help\r")
        s.expect(rb"quit, exit")
        s.prompt()
        s.send(b"quit\r")
        rc = s.wait()
        assert rc == 0, "exit status %d" % rc
        want = ["put k v", "get k", "put k v2", "get k", "get nope", "frobnicate k", "help"]
        assert lines(hist) == want, "history %r" % lines(hist)
        mode = os.stat(hist).st_mode & 0o777
        assert mode == 0o600, "history mode %o" % mode

    check("put, get, up-arrow recall and edit, help, quit; history file", first_session)

    def second_session():
        s = Session(env_home, tmp)
        s.prompt()
        s.send(b"\x1b[A\x1b[A\x1b[A\x1b[A\r")  # help, frobnicate k, get nope, get k
        s.expect(rb'\r\n"v2"\r\n')
        s.prompt()
        s.send(b"\x04")  # Ctrl-D on an empty line
        rc = s.wait()
        assert rc == 0, "exit status %d" % rc
        assert lines(hist)[-1] == "get k" and len(lines(hist)) == 8, "history %r" % lines(hist)

    check("history loaded by the next session; Ctrl-D exits 0", second_session)

    def bounded():
        h3 = os.path.join(tmp, "h3")
        with open(h3, "w") as f:
            f.write("".join("# old %d\n" % i for i in range(1, 1501)))
        s = Session(dict(base, KVFSCTL_HISTORY=h3), tmp)  # and no HOME
        s.prompt()
        s.send(b"ping\r")
        s.expect(rb"\r\nOK only=[0-9.]+us\r\n")
        s.prompt()
        s.send(b"exit\r")
        rc = s.wait()
        assert rc == 0, "exit status %d" % rc
        got = lines(h3)
        assert len(got) == 1000 and got[0] == "# old 502" and got[-1] == "ping", \
            "%d lines, %r ... %r" % (len(got), got[:1], got[-1:])

    check("$KVFSCTL_HISTORY, bounded to 1000 lines", bounded)

    def no_home():
        empty = os.path.join(tmp, "empty")
        os.mkdir(empty)
        s = Session(dict(base), empty)
        s.prompt()
        s.send(b"get k\r")
        s.expect(rb'\r\n"v2"\r\n')
        s.prompt()
        s.send(b"quit\r")
        rc = s.wait()
        assert rc == 0, "exit status %d" % rc
        assert os.listdir(empty) == [], "files: %r" % os.listdir(empty)
        assert b"warning" not in s.seen, "output %r" % s.seen

    check("no HOME: no history file, no warning", no_home)

    def piped():
        r = subprocess.run([ctl, "-c", conf], input=b"put p 1\nget p\n", capture_output=True,
                           timeout=20)
        assert r.returncode == 0 and r.stdout == b'OK\n"1"\n', "%r" % (r,)

    check("no command, stdin not a terminal: batch from stdin", piped)
except Failure as e:
    failed += 1
    print("FAIL: %s" % e)
finally:
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
    if server:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    shutil.rmtree(tmp, ignore_errors=True)

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed or not passed else 0)
