/*
 * fs_check_ops.c: the operations fs_check applies to both trees, and how they
 * pick their paths (existing entries of the reference tree mostly, random
 * names otherwise). Each one draws its arguments from the seeded random
 * numbers, logs itself (hist) before it runs, and compares each call and the
 * state it touched.
 *
 * Operations: create (O_TRUNC) + write, pwrite at any offset (holes),
 * appends (O_APPEND), truncate up and down, whole-file reads in random chunk
 * sizes, stat, rename of files (over existing files too, RENAME_NOREPLACE
 * sometimes), unlink, chmod, chown, utimens, mkdir, rmdir, listings, symlinks,
 * O_EXCL creates, and up to two handles kept open across writes (pwrite,
 * append, pread, fstat, ftruncate, fsync, fchmod through the handle:
 * read-your-writes), closed later, sometimes right after a futimens (as cp -a
 * and tar -x do: the times must survive the close). Writes are sometimes larger than 1 MiB.
 * Mapped files: a file mapped read-only (shared) or private (written to,
 * which must not reach the file), a file opened O_RDWR and stored into
 * through a shared mapping (msync sometimes) then closed, the same through an
 * open handle (read back through it), and an open handle closed and opened
 * again.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "fs_check.h"

struct handle hd[NHANDLES];

/* --- paths ----------------------------------------------------------------- */

static const char *dir_names[] = {"d0", "d1", "d2"};
static const char *file_names[] = {"f0", "f1", "f2", "f3", "f4", "f5"};
static const char *link_names[] = {"l0", "l1"};

struct ent {
	char path[MAX_PATH_C];
	mode_t type;
};
static struct ent ents[MAX_ENTS];
static int nents;

/* Every entry of the reference tree (it is small). */
static void walk_ref(const char *rel)
{
	char full[PATH_MAX];
	snprintf(full, sizeof(full), "%s/%s", root[REF], rel);
	DIR *d = opendir(full);
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d)) && nents < MAX_ENTS) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		struct ent *e = &ents[nents];
		if (snprintf(e->path, sizeof(e->path), "%s%s%s", rel, *rel ? "/" : "",
			     de->d_name) >= (int)sizeof(e->path))
			continue;
		if (fstatat(rootfd[REF], e->path, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		e->type = st.st_mode & S_IFMT;
		nents++;
		if (S_ISDIR(st.st_mode))
			walk_ref(e->path);
	}
	closedir(d);
}

void scan(void)
{
	nents = 0;
	walk_ref("");
}

/* A random existing entry of the given type (0: any), or NULL. */
static const char *pick_existing(mode_t type)
{
	int idx[MAX_ENTS], n = 0;
	for (int i = 0; i < nents; i++)
		if (!type || ents[i].type == type)
			idx[n++] = i;
	return n ? ents[idx[below((uint64_t)n)]].path : NULL;
}

/* A random path, existing or not: directories d0..d2 up to two deep, then a name. */
static void random_path(char *out, size_t n, int kind /* 'f' 'd' 'l' */)
{
	int depth = (int)below(3);
	size_t l = 0;
	out[0] = 0;
	for (int i = 0; i < depth; i++)
		l += (size_t)snprintf(out + l, n - l, "%s/", dir_names[below(3)]);
	if (chance(5)) /* a type mix-up: a file name used as a directory */
		l += (size_t)snprintf(out + l, n - l, "%s/", file_names[below(6)]);
	const char *leaf = kind == 'd'	 ? dir_names[below(3)]
			   : kind == 'l' ? link_names[below(2)]
					 : file_names[below(6)];
	snprintf(out + l, n - l, "%s", leaf);
}

static void file_path(char *out, size_t n)
{
	const char *p = chance(75) ? pick_existing(S_IFREG) : NULL;
	if (p)
		snprintf(out, n, "%s", p);
	else
		random_path(out, n, 'f');
}

/* The path with symlinks resolved in the reference, relative to its root. */
static void canon(const char *path, char *out, size_t n)
{
	char full[PATH_MAX], res[PATH_MAX];
	size_t rl = strlen(root[REF]);
	snprintf(full, sizeof(full), "%s/%s", root[REF], path);
	if (realpath(full, res) && !strncmp(res, root[REF], rl) && res[rl] == '/')
		snprintf(out, n, "%s", res + rl + 1);
	else
		snprintf(out, n, "%s", path);
}

/* Is a handle open on this path (as written or resolved)? */
bool busy(const char *path)
{
	char c[MAX_PATH_C];
	canon(path, c, sizeof(c));
	for (int i = 0; i < NHANDLES; i++)
		if (hd[i].open && (!strcmp(hd[i].path, path) || !strcmp(hd[i].canon, path) ||
				   !strcmp(hd[i].canon, c)))
			return true;
	return false;
}

/* --- operations ------------------------------------------------------------ */

static size_t write_size(void)
{
	unsigned p = (unsigned)below(100);
	if (p < 55)
		return (size_t)below(4096) + 1;
	if (p < 82)
		return 4096 + (size_t)below(124 << 10);
	if (p < 95)
		return (128u << 10) + (size_t)below(896u << 10);
	return (1u << 20) + (size_t)below(MAX_WRITE - (1u << 20)); /* > 1 MiB in one write */
}

static off_t cur_size(const char *path)
{
	struct stat st;
	return fstatat(rootfd[REF], path, &st, 0) == 0 ? st.st_size : 0;
}

static void clamp(off_t off, size_t *n)
{
	if ((uint64_t)off + *n > MAX_FILE)
		*n = off >= (off_t)MAX_FILE ? 0 : MAX_FILE - (size_t)off;
}

/* open(flags) + write(s) + close on both sides, comparing each call. */
static void op_write(const char *kind, int flags, bool at_offset)
{
	char path[MAX_PATH_C], what[MAX_PATH_C + 64];
	struct result r[2];
	int fd[2];
	file_path(path, sizeof(path));
	if (busy(path))
		return;
	mode_t mode = chance(80) ? 0644 : (mode_t)(0600 | below(0200));
	off_t off = 0;
	size_t n = write_size();
	if (at_offset) {
		off_t sz = cur_size(path);
		off = chance(60) ? (off_t)below((uint64_t)sz + 1)
				 : sz + (off_t)below(chance(80) ? 65536 : (2u << 20)); /* a hole */
	}
	clamp(off, &n);
	fill(wbuf, n);
	hist("%s %s flags 0%o mode 0%o offset %jd size %zu", kind, path, flags, mode, (intmax_t)off,
	     n);
	snprintf(what, sizeof(what), "%s: open %s", kind, path);
	for (int s = 0; s < 2; s++) {
		RES(r[s], openat(rootfd[s], path, flags, mode));
		fd[s] = (int)r[s].v;
	}
	same_fd(what, r);
	if (r[REF].v < 0)
		return;
	/* Sometimes in pieces, to see writes accumulate in one upload. */
	size_t done = 0;
	int pieces = chance(20) ? 1 + (int)below(4) : 1;
	for (int p = 0; p < pieces; p++) {
		size_t len = p == pieces - 1 ? n - done : (n - done) / 2;
		snprintf(what, sizeof(what), "%s: write %zu bytes at %jd to %s", kind, len,
			 (intmax_t)(off + (off_t)done), path);
		for (int s = 0; s < 2; s++) {
			if (flags & O_APPEND)
				RES(r[s], write(fd[s], wbuf + done, len));
			else
				RES(r[s], pwrite(fd[s], wbuf + done, len, off + (off_t)done));
		}
		same(what, r);
		done += len;
	}
	snprintf(what, sizeof(what), "%s: close %s", kind, path);
	for (int s = 0; s < 2; s++)
		RES(r[s], close(fd[s]));
	same(what, r);
	compare_path(path);
}

static void op_truncate(void)
{
	char path[MAX_PATH_C], what[MAX_PATH_C + 32];
	struct result r[2];
	file_path(path, sizeof(path));
	if (busy(path))
		return;
	off_t sz = cur_size(path), to;
	unsigned p = (unsigned)below(100);
	if (p < 40)
		to = (off_t)below((uint64_t)sz + 1);
	else if (p < 80)
		to = sz + (off_t)below(256u << 10);
	else if (p < 90)
		to = 0;
	else
		to = (off_t)below(4u << 20);
	if (to > (off_t)MAX_FILE)
		to = MAX_FILE;
	hist("truncate %s to %jd (was %jd)", path, (intmax_t)to, (intmax_t)sz);
	snprintf(what, sizeof(what), "truncate %s", path);
	for (int s = 0; s < 2; s++) {
		char full[PATH_MAX];
		snprintf(full, sizeof(full), "%s/%s", root[s], path);
		RES(r[s], truncate(full, to));
	}
	same(what, r);
	compare_path(path);
}

static void op_read(void)
{
	char path[MAX_PATH_C];
	file_path(path, sizeof(path));
	if (busy(path))
		return;
	hist("read %s", path);
	compare_contents(path);
}

static void op_stat(void)
{
	const char *p = pick_existing(0);
	char path[MAX_PATH_C];
	if (p && chance(85))
		snprintf(path, sizeof(path), "%s", p);
	else
		random_path(path, sizeof(path), "fdl"[below(3)]);
	if (busy(path))
		return;
	hist("stat %s", path);
	compare_path(path);
	/* following symlinks too */
	struct stat st[2];
	struct result r[2];
	char what[MAX_PATH_C + 16];
	snprintf(what, sizeof(what), "stat %s", path);
	for (int s = 0; s < 2; s++)
		RES(r[s], fstatat(rootfd[s], path, &st[s], 0));
	same(what, r);
	if (r[REF].v == 0 && (st[SUT].st_mode & S_IFMT) != (st[REF].st_mode & S_IFMT))
		diverge("%s: type 0%o under test, 0%o reference", what, st[SUT].st_mode & S_IFMT,
			st[REF].st_mode & S_IFMT);
}

static void op_rename(void)
{
	char src[MAX_PATH_C], dst[MAX_PATH_C], what[2 * MAX_PATH_C + 32];
	struct result r[2];
	const char *p = chance(85) ? pick_existing(chance(85) ? S_IFREG : S_IFLNK) : NULL;
	if (p)
		snprintf(src, sizeof(src), "%s", p);
	else
		random_path(src, sizeof(src), 'f');
	struct stat st;
	/* Files and symlinks only: directories are never renamed here. */
	if (!fstatat(rootfd[REF], src, &st, AT_SYMLINK_NOFOLLOW) && S_ISDIR(st.st_mode))
		return;
	p = chance(40) ? pick_existing(S_IFREG) : NULL;
	if (p)
		snprintf(dst, sizeof(dst), "%s", p);
	else
		random_path(dst, sizeof(dst), chance(90) ? 'f' : 'd');
	if (busy(src) || busy(dst))
		return;
	unsigned flags = chance(15) ? RENAME_NOREPLACE : 0;
	hist("rename %s -> %s%s", src, dst, flags ? " NOREPLACE" : "");
	snprintf(what, sizeof(what), "rename %s %s", src, dst);
	for (int s = 0; s < 2; s++)
		RES(r[s], renameat2(rootfd[s], src, rootfd[s], dst, flags));
	same(what, r);
	compare_path(src);
	compare_path(dst);
}

static void op_unlink(void)
{
	char path[MAX_PATH_C], what[MAX_PATH_C + 16];
	struct result r[2];
	const char *p = chance(80) ? pick_existing(chance(85) ? S_IFREG : 0) : NULL;
	if (p)
		snprintf(path, sizeof(path), "%s", p);
	else
		random_path(path, sizeof(path), "fdl"[below(3)]);
	if (busy(path))
		return;
	hist("unlink %s", path);
	snprintf(what, sizeof(what), "unlink %s", path);
	for (int s = 0; s < 2; s++)
		RES(r[s], unlinkat(rootfd[s], path, 0));
	same(what, r);
	compare_path(path);
}

static void op_chmod(void)
{
	char path[MAX_PATH_C], what[MAX_PATH_C + 16];
	struct result r[2];
	const char *p = pick_existing(chance(80) ? S_IFREG : S_IFDIR);
	if (!p)
		return;
	snprintf(path, sizeof(path), "%s", p);
	if (busy(path))
		return;
	mode_t m = (mode_t)(0700 | below(0100));
	hist("chmod %s 0%o", path, m);
	snprintf(what, sizeof(what), "chmod %s", path);
	for (int s = 0; s < 2; s++)
		RES(r[s], fchmodat(rootfd[s], path, m, 0));
	same(what, r);
	compare_path(path);
}

static void op_chown(void)
{
	static const unsigned ids[] = {0, 1000, 65534};
	char path[MAX_PATH_C], what[MAX_PATH_C + 16];
	struct result r[2];
	const char *p = pick_existing(chance(80) ? S_IFREG : S_IFDIR);
	if (!p)
		return;
	snprintf(path, sizeof(path), "%s", p);
	if (busy(path))
		return;
	uid_t u = ids[below(3)];
	gid_t g = ids[below(3)];
	hist("chown %s %u:%u", path, u, g);
	snprintf(what, sizeof(what), "chown %s", path);
	for (int s = 0; s < 2; s++)
		RES(r[s], fchownat(rootfd[s], path, u, g, 0));
	same(what, r);
	compare_path(path);
}

static void op_utimens(void)
{
	char path[MAX_PATH_C], what[MAX_PATH_C + 16];
	struct result r[2];
	const char *p = pick_existing(S_IFREG);
	if (!p)
		return;
	snprintf(path, sizeof(path), "%s", p);
	if (busy(path))
		return;
	struct timespec ts[2] = {
	    {.tv_sec = 1000000000 + (time_t)below(900000000), .tv_nsec = (long)below(1000000000)},
	    {.tv_sec = 1000000000 + (time_t)below(900000000), .tv_nsec = (long)below(1000000000)}};
	hist("utimens %s mtime %jd.%09ld", path, (intmax_t)ts[1].tv_sec, ts[1].tv_nsec);
	snprintf(what, sizeof(what), "utimensat %s", path);
	for (int s = 0; s < 2; s++)
		RES(r[s], utimensat(rootfd[s], path, ts, 0));
	same(what, r);
	compare_mtime(what, path);
}

static void op_mkdir(void)
{
	char path[MAX_PATH_C], what[MAX_PATH_C + 16];
	struct result r[2];
	random_path(path, sizeof(path), chance(90) ? 'd' : 'f');
	hist("mkdir %s", path);
	snprintf(what, sizeof(what), "mkdir %s", path);
	for (int s = 0; s < 2; s++)
		RES(r[s], mkdirat(rootfd[s], path, 0755));
	same(what, r);
	compare_path(path);
}

static void op_rmdir(void)
{
	char path[MAX_PATH_C], what[MAX_PATH_C + 16];
	struct result r[2];
	const char *p = chance(85) ? pick_existing(S_IFDIR) : NULL;
	if (p)
		snprintf(path, sizeof(path), "%s", p);
	else
		random_path(path, sizeof(path), chance(80) ? 'd' : 'f');
	hist("rmdir %s", path);
	snprintf(what, sizeof(what), "rmdir %s", path);
	for (int s = 0; s < 2; s++)
		RES(r[s], unlinkat(rootfd[s], path, AT_REMOVEDIR));
	same(what, r);
	compare_path(path);
}

static void op_list(void)
{
	const char *p = chance(85) ? pick_existing(S_IFDIR) : NULL;
	char path[MAX_PATH_C];
	if (p)
		snprintf(path, sizeof(path), "%s", p);
	else if (chance(50))
		path[0] = 0;
	else
		random_path(path, sizeof(path), 'd');
	hist("list %s", *path ? path : ".");
	compare_dir(path, false);
}

static void op_symlink(void)
{
	static const char *targets[] = {
	    "f0", "f1", "d0/f2", "d0", "/nonexistent-kvfs-target/x", "a name with spaces", "l0"};
	char path[MAX_PATH_C], what[MAX_PATH_C + 16];
	struct result r[2];
	random_path(path, sizeof(path), 'l');
	const char *t = targets[below(sizeof(targets) / sizeof(targets[0]))];
	hist("symlink %s -> %s", path, t);
	snprintf(what, sizeof(what), "symlink %s", path);
	for (int s = 0; s < 2; s++)
		RES(r[s], symlinkat(t, rootfd[s], path));
	same(what, r);
	compare_path(path);
}

static void op_excl(void)
{
	char path[MAX_PATH_C], what[MAX_PATH_C + 16];
	struct result r[2];
	file_path(path, sizeof(path));
	if (busy(path))
		return;
	hist("open O_CREAT|O_EXCL %s", path);
	snprintf(what, sizeof(what), "open excl %s", path);
	for (int s = 0; s < 2; s++)
		RES(r[s], openat(rootfd[s], path, O_WRONLY | O_CREAT | O_EXCL, 0640));
	same_fd(what, r);
	for (int s = 0; s < 2; s++)
		if (r[s].v >= 0)
			close((int)r[s].v);
	compare_path(path);
}

struct handle *pick_handle(bool want_open)
{
	int idx[NHANDLES], n = 0;
	for (int i = 0; i < NHANDLES; i++)
		if (hd[i].open == want_open)
			idx[n++] = i;
	return n ? &hd[idx[below((uint64_t)n)]] : NULL;
}

static void op_hopen(void)
{
	struct handle *h = pick_handle(false);
	char path[MAX_PATH_C], what[MAX_PATH_C + 16];
	struct result r[2];
	if (!h)
		return;
	file_path(path, sizeof(path));
	if (busy(path))
		return;
	int flags = O_RDWR;
	if (chance(30))
		flags |= O_APPEND;
	if (chance(20))
		flags |= O_TRUNC;
	if (chance(50))
		flags |= O_CREAT;
	hist("handle %ld: open %s flags 0%o", (long)(h - hd), path, flags);
	snprintf(what, sizeof(what), "open %s", path);
	for (int s = 0; s < 2; s++) {
		RES(r[s], openat(rootfd[s], path, flags, 0644));
		h->fd[s] = (int)r[s].v;
	}
	same_fd(what, r);
	if (r[REF].v < 0)
		return;
	h->open = true;
	h->append = flags & O_APPEND;
	snprintf(h->path, sizeof(h->path), "%s", path);
	canon(path, h->canon, sizeof(h->canon));
	compare_handle(h);
}

static void op_hwrite(void)
{
	struct handle *h = pick_handle(true);
	char what[MAX_PATH_C + 64];
	struct result r[2];
	struct stat st;
	if (!h)
		return;
	size_t n = write_size();
	off_t off = 0, sz = fstat(h->fd[REF], &st) == 0 ? st.st_size : 0;
	if (!h->append)
		off = chance(60) ? (off_t)below((uint64_t)sz + 1)
				 : sz + (off_t)below(chance(80) ? 65536 : (1u << 20));
	clamp(h->append ? sz : off, &n);
	fill(wbuf, n);
	hist("handle %ld: %s %zu bytes at %jd (%s)", (long)(h - hd),
	     h->append ? "append" : "pwrite", n, (intmax_t)(h->append ? sz : off), h->path);
	snprintf(what, sizeof(what), "write through open handle on %s", h->path);
	for (int s = 0; s < 2; s++) {
		if (h->append)
			RES(r[s], write(h->fd[s], wbuf, n));
		else
			RES(r[s], pwrite(h->fd[s], wbuf, n, off));
	}
	same(what, r);
}

static void op_hread(void)
{
	struct handle *h = pick_handle(true);
	char what[MAX_PATH_C + 64];
	struct result r[2];
	struct stat st;
	if (!h)
		return;
	off_t sz = fstat(h->fd[REF], &st) == 0 ? st.st_size : 0;
	off_t off = (off_t)below((uint64_t)sz + 4096);
	size_t n = chance(70) ? (size_t)below(65536) + 1 : (size_t)below(3u << 20) + 1;
	hist("handle %ld: pread %zu bytes at %jd (%s, size %jd)", (long)(h - hd), n, (intmax_t)off,
	     h->path, (intmax_t)sz);
	snprintf(what, sizeof(what), "pread through open handle on %s (read-your-writes)", h->path);
	for (int s = 0; s < 2; s++)
		RES(r[s], pread(h->fd[s], rbuf[s], n, off));
	same(what, r);
	if (r[REF].v > 0)
		compare_bytes(what, rbuf[SUT], rbuf[REF], (size_t)r[REF].v);
}

static void op_htrunc(void)
{
	struct handle *h = pick_handle(true);
	char what[MAX_PATH_C + 64];
	struct result r[2];
	struct stat st;
	if (!h)
		return;
	off_t sz = fstat(h->fd[REF], &st) == 0 ? st.st_size : 0;
	off_t to = chance(50) ? (off_t)below((uint64_t)sz + 1) : sz + (off_t)below(1u << 20);
	if (to > (off_t)MAX_FILE)
		to = MAX_FILE;
	hist("handle %ld: ftruncate %s to %jd (was %jd)", (long)(h - hd), h->path, (intmax_t)to,
	     (intmax_t)sz);
	snprintf(what, sizeof(what), "ftruncate open handle on %s", h->path);
	for (int s = 0; s < 2; s++)
		RES(r[s], ftruncate(h->fd[s], to));
	same(what, r);
	compare_handle(h);
}

static void op_hfsync(void)
{
	struct handle *h = pick_handle(true);
	char what[MAX_PATH_C + 64];
	struct result r[2];
	if (!h)
		return;
	hist("handle %ld: fsync %s", (long)(h - hd), h->path);
	snprintf(what, sizeof(what), "fsync %s", h->path);
	for (int s = 0; s < 2; s++)
		RES(r[s], fsync(h->fd[s]));
	same(what, r);
	compare_handle(h);
}

void op_hclose(void)
{
	struct handle *h = pick_handle(true);
	char what[MAX_PATH_C + 64];
	struct result r[2];
	if (!h)
		return;
	hist("handle %ld: close %s", (long)(h - hd), h->path);
	compare_handle(h);
	snprintf(what, sizeof(what), "close %s", h->path);
	for (int s = 0; s < 2; s++)
		RES(r[s], close(h->fd[s]));
	h->open = false;
	same(what, r);
	compare_path(h->path);
}

/* fchmod through an open handle (cp -a does it before close); compared at close. */
static void op_hchmod(void)
{
	struct handle *h = pick_handle(true);
	char what[MAX_PATH_C + 64];
	struct result r[2];
	if (!h)
		return;
	mode_t m = (mode_t)(0600 | below(0200));
	hist("handle %ld: fchmod %s 0%o", (long)(h - hd), h->path, m);
	snprintf(what, sizeof(what), "fchmod open handle on %s", h->path);
	for (int s = 0; s < 2; s++)
		RES(r[s], fchmod(h->fd[s], m));
	same(what, r);
	compare_handle(h);
}

/* futimens through an open handle, then close (as cp -a and tar -x do): the
 * times set must survive the close. */
static void op_hutimens(void)
{
	struct handle *h = pick_handle(true);
	char what[MAX_PATH_C + 64];
	struct result r[2];
	if (!h)
		return;
	struct timespec ts[2] = {
	    {.tv_sec = 1000000000 + (time_t)below(900000000), .tv_nsec = (long)below(1000000000)},
	    {.tv_sec = 1000000000 + (time_t)below(900000000), .tv_nsec = (long)below(1000000000)}};
	hist("handle %ld: futimens %s mtime %jd.%09ld, then close", (long)(h - hd), h->path,
	     (intmax_t)ts[1].tv_sec, ts[1].tv_nsec);
	snprintf(what, sizeof(what), "futimens open handle on %s", h->path);
	for (int s = 0; s < 2; s++)
		RES(r[s], futimens(h->fd[s], ts));
	same(what, r);
	snprintf(what, sizeof(what), "close %s", h->path);
	for (int s = 0; s < 2; s++)
		RES(r[s], close(h->fd[s]));
	h->open = false;
	same(what, r);
	compare_path(h->path);
	snprintf(what, sizeof(what), "stat %s after futimens and close", h->path);
	compare_mtime(what, h->path);
}

/* --- mapped files ---------------------------------------------------------- */

/*
 * Map len bytes of fd[s] on both sides (MAP_SHARED or MAP_PRIVATE, PROT_READ
 * or read and write), comparing the results. Returns false (both unmapped)
 * when the reference could not map.
 */
static bool map_both(const char *what, int fd[2], size_t len, int prot, int flags, void *m[2])
{
	struct result r[2];
	for (int s = 0; s < 2; s++) {
		errno = 0;
		m[s] = mmap(NULL, len, prot, flags, fd[s], 0);
		r[s].v = m[s] == MAP_FAILED ? -1 : 0;
		r[s].e = m[s] == MAP_FAILED ? errno : 0;
	}
	same(what, r);
	return m[REF] != MAP_FAILED;
}

/* Store random bytes into both shared mappings of len bytes, msync sometimes. */
static void store_both(const char *path, void *m[2], size_t len)
{
	char what[MAX_PATH_C + 64];
	struct result r[2];
	size_t off = (size_t)below(len), n = 1 + (size_t)below(chance(70) ? 8192 : len - off);
	if (n > len - off)
		n = len - off;
	if (n > MAX_WRITE) /* wbuf's size */
		n = MAX_WRITE;
	fill(wbuf, n);
	hist("  store %zu bytes at %zu through the mapping", n, off);
	for (int s = 0; s < 2; s++)
		memcpy((char *)m[s] + off, wbuf, n);
	if (chance(50)) {
		snprintf(what, sizeof(what), "msync %s", path);
		for (int s = 0; s < 2; s++)
			RES(r[s], msync(m[s], len, MS_SYNC));
		same(what, r);
	}
}

/* A file mapped read-only (shared) or private (then written to): its bytes. */
static void op_mmapread(void)
{
	char path[MAX_PATH_C], what[MAX_PATH_C + 32];
	struct result r[2];
	int fd[2];
	void *m[2];
	file_path(path, sizeof(path));
	if (busy(path))
		return;
	size_t len = (size_t)cur_size(path);
	int priv = chance(40);
	hist("mmap %s %s, %zu bytes", priv ? "private" : "read-only", path, len);
	snprintf(what, sizeof(what), "open for mmap %s", path);
	for (int s = 0; s < 2; s++) {
		RES(r[s], openat(rootfd[s], path, O_RDONLY));
		fd[s] = (int)r[s].v;
	}
	same_fd(what, r);
	if (r[REF].v < 0)
		return;
	snprintf(what, sizeof(what), "mmap %s", path);
	if (len && map_both(what, fd, len, PROT_READ | (priv ? PROT_WRITE : 0),
			    priv ? MAP_PRIVATE : MAP_SHARED, m)) {
		snprintf(what, sizeof(what), "bytes of the mapping of %s", path);
		compare_bytes(what, m[SUT], m[REF], len);
		if (priv) {
			fill(wbuf, len < 4096 ? len : 4096);
			for (int s = 0; s < 2; s++)
				memcpy(m[s], wbuf, len < 4096 ? len : 4096);
		}
		for (int s = 0; s < 2; s++)
			munmap(m[s], len);
	}
	snprintf(what, sizeof(what), "close after mmap %s", path);
	for (int s = 0; s < 2; s++)
		RES(r[s], close(fd[s]));
	same(what, r);
	compare_path(path);
}

/* open O_RDWR, store through a shared mapping, munmap and close (in either order). */
static void op_mmapwrite(void)
{
	char path[MAX_PATH_C], what[MAX_PATH_C + 32];
	struct result r[2];
	int fd[2];
	void *m[2];
	file_path(path, sizeof(path));
	if (busy(path))
		return;
	size_t len = (size_t)cur_size(path);
	int late = chance(30); /* close first, store and munmap after */
	hist("mmap shared writable %s, %zu bytes%s", path, len,
	     late ? ", closed before munmap" : "");
	snprintf(what, sizeof(what), "open O_RDWR for mmap %s", path);
	for (int s = 0; s < 2; s++) {
		RES(r[s], openat(rootfd[s], path, O_RDWR));
		fd[s] = (int)r[s].v;
	}
	same_fd(what, r);
	if (r[REF].v < 0)
		return;
	snprintf(what, sizeof(what), "mmap shared %s", path);
	int mapped = len && map_both(what, fd, len, PROT_READ | PROT_WRITE, MAP_SHARED, m);
	if (mapped && !late) {
		store_both(path, m, len);
		for (int s = 0; s < 2; s++)
			munmap(m[s], len);
	}
	snprintf(what, sizeof(what), "close after mmap %s", path);
	for (int s = 0; s < 2; s++)
		RES(r[s], close(fd[s]));
	same(what, r);
	if (mapped && late) {
		store_both(path, m, len);
		/* committed at RELEASE, which the kernel sends after the munmap */
		for (int s = 0; s < 2; s++)
			munmap(m[s], len);
	}
	compare_path(path);
}

/* Store through a shared mapping of an open handle; read back through it. */
static void op_hmmap(void)
{
	struct handle *h = pick_handle(true);
	char what[MAX_PATH_C + 64];
	struct stat st;
	void *m[2];
	if (!h || fstat(h->fd[REF], &st) || st.st_size == 0)
		return;
	size_t len = (size_t)st.st_size;
	hist("handle %ld: mmap shared %s, %zu bytes", (long)(h - hd), h->path, len);
	snprintf(what, sizeof(what), "mmap open handle on %s", h->path);
	if (!map_both(what, h->fd, len, PROT_READ | PROT_WRITE, MAP_SHARED, m))
		return;
	snprintf(what, sizeof(what), "bytes of the mapping of open handle on %s", h->path);
	compare_bytes(what, m[SUT], m[REF], len);
	store_both(h->path, m, len);
	for (int s = 0; s < 2; s++)
		munmap(m[s], len);
	compare_handle(h);
}

/* Close an open handle and open its path again (read and write, no O_TRUNC). */
static void op_hreopen(void)
{
	struct handle *h = pick_handle(true);
	char what[MAX_PATH_C + 32];
	struct result r[2];
	if (!h)
		return;
	int flags = O_RDWR | (h->append ? O_APPEND : 0);
	hist("handle %ld: close and reopen %s flags 0%o", (long)(h - hd), h->path, flags);
	snprintf(what, sizeof(what), "close %s", h->path);
	for (int s = 0; s < 2; s++)
		RES(r[s], close(h->fd[s]));
	same(what, r);
	snprintf(what, sizeof(what), "reopen %s", h->path);
	for (int s = 0; s < 2; s++) {
		RES(r[s], openat(rootfd[s], h->path, flags));
		h->fd[s] = (int)r[s].v;
	}
	same_fd(what, r);
	if (r[REF].v < 0) {
		h->open = false;
		compare_path(h->path);
		return;
	}
	compare_handle(h);
}

static void op_create(void)
{
	op_write("create", O_WRONLY | O_CREAT | O_TRUNC, false);
}
static void op_pwrite(void)
{
	op_write("pwrite", O_WRONLY | (chance(20) ? O_CREAT : 0), true);
}
static void op_append(void)
{
	op_write("append", O_WRONLY | O_APPEND | (chance(30) ? O_CREAT : 0), false);
}

const struct op ops[] = {
    {"create", 12, op_create},	  {"pwrite", 10, op_pwrite},	  {"append", 8, op_append},
    {"truncate", 6, op_truncate}, {"read", 8, op_read},		  {"stat", 5, op_stat},
    {"rename", 9, op_rename},	  {"unlink", 5, op_unlink},	  {"chmod", 3, op_chmod},
    {"chown", 2, op_chown},	  {"utimens", 2, op_utimens},	  {"mkdir", 5, op_mkdir},
    {"rmdir", 4, op_rmdir},	  {"list", 5, op_list},		  {"symlink", 2, op_symlink},
    {"excl", 2, op_excl},	  {"hopen", 4, op_hopen},	  {"hwrite", 9, op_hwrite},
    {"hread", 6, op_hread},	  {"htrunc", 2, op_htrunc},	  {"hfsync", 1, op_hfsync},
    {"hclose", 3, op_hclose},	  {"hchmod", 1, op_hchmod},	  {"hutimens", 1, op_hutimens},
    {"mmapread", 4, op_mmapread}, {"mmapwrite", 4, op_mmapwrite}, {"hmmap", 3, op_hmmap},
    {"hreopen", 2, op_hreopen},
};
const size_t nops = sizeof(ops) / sizeof(ops[0]);
