#!/usr/bin/env python3
"""fs_mmap.py: memory-mapped files on a kvfs mount (issue 12), for fs_shell.sh.

    fs_mmap.py CASE DIR

Each CASE works on files under DIR (a directory of the mount) and exits 0
when every check holds, 1 with a message otherwise (77: a module it needs,
lmdb, is not installed). Cases:

  shared      MAP_SHARED read and write of files opened r+b and w+b: the
              bytes stored through the mapping are in the file after msync,
              and a handle opened before the msync still reads the old
              version, one opened after it the new one
  private     MAP_PRIVATE of files opened rb and r+b: writes stay private
  readonly    a file written and closed, then at once mapped read-only
              (MAP_SHARED) through a handle opened rb
  fdwrite     a read-only map through a handle opened r+b sees that handle's
              write()s (LMDB's way), and they are committed by close
  second      a file open for writing in this process, mapped through a
              second handle opened rb: MAP_PRIVATE works and shows the
              committed version; MAP_SHARED fails with ENODEV (README)
  munmap      bytes stored through a mapping, then munmap and close: committed
  lateclose   close first, then store through the still mapped file and
              munmap: committed at release
  sqlite      sqlite3 in WAL mode, two connections of this process
  lmdb        an LMDB environment written and read back (python3-lmdb)
"""
import errno
import mmap
import os
import sys
import time

PAGE = mmap.PAGESIZE


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def content(p):
    with open(p, "rb") as f:
        return f.read()


def put(p, data):
    with open(p, "wb") as f:
        f.write(data)


def pattern(n, seed):
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def case_shared(d):
    for mode in ("r+b", "w+b"):
        p = os.path.join(d, "shared-" + mode[0])
        old = pattern(3 * PAGE + 100, 1)
        put(p, old)
        with open(p, mode) as f:
            if mode == "w+b":  # truncated by the open: give it its bytes again
                f.write(old)
                f.flush()
                os.fsync(f.fileno())
            m = mmap.mmap(f.fileno(), 0)  # MAP_SHARED, read and write
            if m[:] != old:
                fail(f"{mode}: the mapping does not show the file's bytes")
            m[10:20] = b"0123456789"
            m[2 * PAGE : 2 * PAGE + 5] = b"HELLO"
            new = bytearray(old)
            new[10:20] = b"0123456789"
            new[2 * PAGE : 2 * PAGE + 5] = b"HELLO"
            with open(p, "rb") as before:  # opened before the msync
                m.flush()  # msync(MS_SYNC): FSYNC commits the upload
                if before.read() != old:
                    fail(f"{mode}: a handle opened before the msync read the new bytes")
            if content(p) != new:
                fail(f"{mode}: after msync a new handle does not read the mapped writes")
            if m[:] != new:
                fail(f"{mode}: the mapping changed after msync")
            m.close()
        if content(p) != new:
            fail(f"{mode}: after close the file does not hold the mapped writes")
    print("ok: shared mappings of r+b and w+b files, msync commits")


def case_private(d):
    for mode in ("rb", "r+b"):
        p = os.path.join(d, "private-" + mode[0:2].replace("+", "p"))
        old = pattern(2 * PAGE + 7, 2)
        put(p, old)
        with open(p, mode) as f:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)  # MAP_PRIVATE
            if m[:] != old:
                fail(f"{mode}: a private mapping does not show the file's bytes")
            m[0:4] = b"ZZZZ"
            if m[0:4] != b"ZZZZ":
                fail(f"{mode}: a private mapping does not keep its own writes")
            m.close()
        if content(p) != old:
            fail(f"{mode}: a private mapping's writes reached the file")
    print("ok: private mappings of rb and r+b files")


def case_readonly(d):
    p = os.path.join(d, "readonly")
    data = pattern(5 * PAGE + 3, 3)
    put(p, data)  # closed: committed; the reader maps it at once
    with open(p, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # MAP_SHARED
        if m[:] != data:
            fail("a read-only shared mapping does not show the file")
        m.close()
    print("ok: a file written, closed and mapped read-only at once")


def case_fdwrite(d):
    p = os.path.join(d, "fdwrite")
    old = pattern(4 * PAGE, 4)
    put(p, old)
    with open(p, "r+b", buffering=0) as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        os.pwrite(f.fileno(), b"written", PAGE + 1)
        if m[PAGE + 1 : PAGE + 8] != b"written":
            fail("a read-only map of a file open for writing misses that handle's write()")
        m.close()
    new = bytearray(old)
    new[PAGE + 1 : PAGE + 8] = b"written"
    if content(p) != new:
        fail("the write() is not in the file after close")
    print("ok: a read-only map through a handle opened r+b sees its write()s")


def case_second(d):
    p = os.path.join(d, "second")
    old = pattern(3 * PAGE, 5)
    put(p, old)
    with open(p, "r+b", buffering=0) as w:
        os.pwrite(w.fileno(), b"uncommitted", 0)
        with open(p, "rb") as r:
            m = mmap.mmap(r.fileno(), 0, access=mmap.ACCESS_COPY)
            if m[:] != old:
                fail("a private map of a second handle does not show the committed version")
            m.close()
            try:
                mmap.mmap(r.fileno(), 0, access=mmap.ACCESS_READ)
                fail("MAP_SHARED of a reader opened while the file is open for writing "
                     "worked; the README says ENODEV (update it)")
            except OSError as e:
                if e.errno != errno.ENODEV:
                    fail(f"MAP_SHARED of that reader: {e}, not ENODEV")
    if content(p)[:11] != b"uncommitted":
        fail("the writer's write() is not in the file after close")
    print("ok: a second handle maps privately; shared: ENODEV as documented")


def case_munmap(d):
    p = os.path.join(d, "munmap")
    put(p, pattern(2 * PAGE, 6))
    with open(p, "r+b") as f:
        m = mmap.mmap(f.fileno(), 0)
        m[PAGE : PAGE + 6] = b"munmap"
        m.close()  # munmap: the kernel writes the dirty page back
    if content(p)[PAGE : PAGE + 6] != b"munmap":
        fail("bytes stored through a mapping are not in the file after munmap and close")
    print("ok: munmap + close commits")


def case_lateclose(d):
    p = os.path.join(d, "lateclose")
    put(p, pattern(2 * PAGE, 7))
    f = open(p, "r+b")
    m = mmap.mmap(f.fileno(), 0)
    f.close()  # FLUSH: nothing to commit yet
    m[5:10] = b"after"
    m.close()  # munmap writes the page back; RELEASE (asynchronous) commits
    for _ in range(100):
        if content(p)[5:10] == b"after":
            break
        time.sleep(0.02)
    else:
        fail("bytes stored after close, then munmap: not committed")
    print("ok: stores after close are committed at munmap and release")


def case_sqlite(d):
    import sqlite3

    db = os.path.join(d, "wal.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    a = sqlite3.connect(db)
    if a.execute("pragma journal_mode=wal").fetchone()[0] != "wal":
        fail("journal_mode=wal refused")
    a.execute("create table t(x)")
    a.execute("insert into t values (1)")
    a.commit()
    b = sqlite3.connect(db)
    if b.execute("select sum(x) from t").fetchone()[0] != 1:
        fail("a second connection does not see the first one's row")
    b.execute("insert into t values (2)")
    b.commit()
    if a.execute("select sum(x) from t").fetchone()[0] != 3:
        fail("the first connection does not see the second one's row")
    total = 3
    for v in (4, 8, 16):  # commits of one connection, the other only reads
        a.execute("insert into t values (?)", (v,))
        a.commit()
        total += v
        if b.execute("select sum(x) from t").fetchone()[0] != total:
            fail(f"the second connection does not see the first one's row {v}")
    if b.execute("pragma integrity_check").fetchone()[0] != "ok":
        fail("integrity_check")
    a.close()
    b.close()
    c = sqlite3.connect(db)
    if c.execute("select sum(x) from t").fetchone()[0] != total:
        fail("after both closed, the rows are not there")
    c.close()
    print("ok: sqlite3 WAL, two connections")


def case_lmdb(d):
    try:
        import lmdb
    except ImportError:
        print("SKIP: python3-lmdb is not installed")
        sys.exit(77)
    path = os.path.join(d, "lmdb")
    for name in ("data.mdb", "lock.mdb"):
        if os.path.exists(os.path.join(path, name)):
            os.unlink(os.path.join(path, name))
    env = lmdb.open(path, map_size=16 << 20)
    with env.begin(write=True) as txn:
        for i in range(500):
            txn.put(b"k%04d" % i, b"v%d" % i * 20)
    with env.begin() as txn:
        if txn.get(b"k0042") != b"v42" * 20:
            fail("lmdb: a read transaction does not see the committed put")
    env.close()
    env = lmdb.open(path, map_size=16 << 20, readonly=True)
    with env.begin() as txn:
        n = sum(1 for _ in txn.cursor())
        if n != 500 or txn.get(b"k0499") != b"v499" * 20:
            fail(f"lmdb: reopened, {n} keys instead of 500")
    env.close()
    print("ok: lmdb environment written, reopened read-only, read back")


CASES = {
    "shared": case_shared,
    "private": case_private,
    "readonly": case_readonly,
    "fdwrite": case_fdwrite,
    "second": case_second,
    "munmap": case_munmap,
    "lateclose": case_lateclose,
    "sqlite": case_sqlite,
    "lmdb": case_lmdb,
}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in CASES:
        print(__doc__)
        sys.exit(2)
    os.makedirs(sys.argv[2], exist_ok=True)
    CASES[sys.argv[1]](sys.argv[2])
