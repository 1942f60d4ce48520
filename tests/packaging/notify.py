#!/usr/bin/env python3
# The systemd side of sd_notify(3) for tests/packaging/deb.sh: bind a datagram
# Unix socket at argv[1] and append each message (newlines as spaces) to
# argv[2], one line per message, until argv[3] seconds have passed.
import socket
import sys
import time

path, out, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
end = time.monotonic() + secs
with open(out, "a") as f:
    while time.monotonic() < end:
        s.settimeout(max(0.01, end - time.monotonic()))
        try:
            m = s.recv(4096)
        except socket.timeout:
            break
        f.write(m.decode(errors="replace").replace("\n", " ").strip() + "\n")
        f.flush()
