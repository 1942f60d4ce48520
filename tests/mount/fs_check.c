/*
 * fs_check: a randomized file system checker. It applies the same random
 * sequence of operations to two directory trees, the one under test (a kvfs
 * mount) and a reference (a plain tmp dir), and compares what each operation
 * returns (value, or errno), and then the state it touched (type, size, mode,
 * owner, contents, listings), after every step; the whole trees every
 * --full-every steps and at the end. The first divergence ends the run with the
 * seed, the step and the tail of the operation history.
 *
 *   fs_check [--seed N] [--ops N] [--seconds S] [--skip OP,...] [--inject STEP]
 *            [--trace FILE] [-v] DIR_UNDER_TEST DIR_REFERENCE
 *
 * --inject STEP is the checker's own test: at STEP it creates a file in the
 * tree under test only, which the next full comparison must report.
 * --trace FILE logs each operation before it runs: if one hangs, the file
 * ends with it.
 *
 * Operations: create (O_TRUNC) + write, pwrite at any offset (holes),
 * appends (O_APPEND), truncate up and down, whole-file reads in random chunk
 * sizes, stat, rename of files (over existing files too, RENAME_NOREPLACE
 * sometimes), unlink, chmod, chown, utimens, mkdir, rmdir, listings, symlinks,
 * O_EXCL creates, and up to two handles kept open across writes (pwrite,
 * append, pread, fstat, ftruncate, fsync, fchmod through the handle:
 * read-your-writes), closed later, sometimes right after a futimens (as cp -a
 * and tar -x do: the times must survive the close). Writes are sometimes larger than 1 MiB.
 *
 * Semantics deliberately not compared, because kvfs (any object store behind
 * a file system) differs from POSIX there by design: a path is never touched
 * by anything but its handle while a handle on it is open (kvfs commits the
 * upload at close: last commit wins); directories are never renamed; hard
 * links are not made; atime/ctime/nlink/st_size of directories are ignored;
 * mtime is compared only right after utimens.
 *
 * Exit status: 0 no divergence, 1 divergence, 2 usage or set-up error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_FILE   (6u << 20) /* no file grows beyond this */
#define BUF_SIZE   (8u << 20) /* read buffers */
#define MAX_WRITE  (2560u << 10)
#define NHANDLES   2
#define HISTORY	   32
#define MAX_PATH_C 256
#define MAX_ENTS   512

enum { SUT = 0, REF = 1 };

struct result {
	long v; /* return value, -1 on error */
	int e;	/* errno when v < 0 */
};

struct handle {
	bool open;
	bool append;
	char path[MAX_PATH_C];	/* as opened */
	char canon[MAX_PATH_C]; /* resolved (symlinks) in the reference */
	int fd[2];
};

static const char *root[2];
static int rootfd[2];
static uint64_t seed, rng;
static unsigned long step, max_ops = 3000;
static double max_seconds = 120;
static unsigned full_every = 64;
static long inject_at = -1; /* self-test: make the trees differ at this step */
static bool verbose;
static FILE *trace; /* --trace FILE: each operation, written before it runs (for hangs) */
static char history[HISTORY][320];
static unsigned long nhist;
static struct handle hd[NHANDLES];
static unsigned char *wbuf, *rbuf[2];
static char skip_list[512];
static unsigned long nerr_matched, op_count[64];
static double op_time[64];

/* --- random numbers ---------------------------------------------------- */

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}
static bool chance(unsigned pct)
{
	return below(100) < pct;
}

static void fill(unsigned char *p, size_t n)
{
	uint64_t x = rnd() | 1;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
	for (; i < n; i++)
		p[i] = (unsigned char)rnd();
}

/* --- reporting ----------------------------------------------------------- */

static void hist(const char *fmt, ...)
{
	va_list ap;
	char *h = history[nhist % HISTORY];
	int n = snprintf(h, sizeof(history[0]), "#%lu ", step);
	va_start(ap, fmt);
	vsnprintf(h + n, sizeof(history[0]) - (size_t)n, fmt, ap);
	va_end(ap);
	nhist++;
	if (verbose)
		fprintf(stderr, "%s\n", h);
	if (trace) {
		fprintf(trace, "%s\n", h);
		fflush(trace);
	}
}

static void note_result(const char *what, const struct result r[2])
{
	char *h = history[(nhist ? nhist - 1 : 0) % HISTORY];
	size_t l = strlen(h);
	if (!strstr(h, " => "))
		snprintf(h + l, sizeof(history[0]) - l, " => %s%ld%s%s", what, r[SUT].v,
			 r[SUT].v < 0 ? " " : "", r[SUT].v < 0 ? strerror(r[SUT].e) : "");
}

static void diverge(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void diverge(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fprintf(stderr, "fs_check: DIVERGENCE at step %lu (seed %" PRIu64 "): ", step, seed);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n  under test: %s\n  reference:  %s\n  last operations (newest last):\n",
		root[SUT], root[REF]);
	unsigned long first = nhist > HISTORY ? nhist - HISTORY : 0;
	for (unsigned long i = first; i < nhist; i++)
		fprintf(stderr, "    %s\n", history[i % HISTORY]);
	fprintf(stderr,
		"  reproduce: fs_check --seed %" PRIu64
		" --ops %lu%s%s DIR_UNDER_TEST DIR_REFERENCE\n",
		seed, step + 1, skip_list[0] ? " --skip " : "", skip_list);
	exit(1);
}

#define E(x)                                                                                       \
	{                                                                                          \
		x, #x                                                                              \
	}
static const struct {
	int e;
	const char *name;
} enames[] = {E(EPERM),	 E(ENOENT),	E(EIO),		 E(EBADF),     E(EACCES), E(EEXIST),
	      E(EXDEV),	 E(ENOTDIR),	E(EISDIR),	 E(EINVAL),    E(EFBIG),  E(ENOSPC),
	      E(EROFS),	 E(EMLINK),	E(ENAMETOOLONG), E(ENOTEMPTY), E(ELOOP),  E(ENOTCONN),
	      E(ENOSYS), E(EOPNOTSUPP), E(ENODATA),	 E(ESTALE),    E(EBUSY)};
#undef E

static const char *ename(int e)
{
	static char b[64];
	for (size_t i = 0; i < sizeof(enames) / sizeof(enames[0]); i++)
		if (enames[i].e == e)
			return enames[i].name;
	snprintf(b, sizeof(b), "errno %d", e);
	return b;
}

static const char *rstr(const struct result *r, char *b, size_t n)
{
	if (r->v < 0)
		snprintf(b, n, "-1 %s (%s)", ename(r->e), strerror(r->e));
	else
		snprintf(b, n, "%ld", r->v);
	return b;
}

static bool errno_equiv(int a, int b)
{
	if (a == b)
		return true;
	/* POSIX allows either for rmdir of a non-empty directory. */
	if ((a == ENOTEMPTY || a == EEXIST) && (b == ENOTEMPTY || b == EEXIST))
		return true;
	return false;
}

/* Both sides returned the same (value unless it is a descriptor, or equivalent errno). */
static void same_v(const char *what, const struct result r[2], bool values)
{
	char a[128], b[128];
	note_result("", r);
	bool ok =
	    (r[SUT].v < 0) == (r[REF].v < 0) &&
	    (r[SUT].v < 0 ? errno_equiv(r[SUT].e, r[REF].e) : !values || r[SUT].v == r[REF].v);
	if (!ok)
		diverge("%s: under test returned %s, reference %s", what,
			rstr(&r[SUT], a, sizeof(a)), rstr(&r[REF], b, sizeof(b)));
	if (r[REF].v < 0)
		nerr_matched++;
}

static void same(const char *what, const struct result r[2])
{
	same_v(what, r, true);
}
static void same_fd(const char *what, const struct result r[2])
{
	same_v(what, r, false);
}

#define RES(r, expr)                                                                               \
	do {                                                                                       \
		errno = 0;                                                                         \
		(r).v = (long)(expr);                                                              \
		(r).e = (r).v < 0 ? errno : 0;                                                     \
	} while (0)

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

static void scan(void)
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
static bool busy(const char *path)
{
	char c[MAX_PATH_C];
	canon(path, c, sizeof(c));
	for (int i = 0; i < NHANDLES; i++)
		if (hd[i].open && (!strcmp(hd[i].path, path) || !strcmp(hd[i].canon, path) ||
				   !strcmp(hd[i].canon, c)))
			return true;
	return false;
}

/* --- comparing state ----------------------------------------------------- */

static ssize_t read_all(int s, const char *path, unsigned char *buf, size_t cap, int *err)
{
	int fd = openat(rootfd[s], path, O_RDONLY);
	size_t got = 0;
	static const size_t chunks[] = {4096, 65536, 131072 + 13, 1u << 20, 3u << 20};
	size_t chunk = chunks[below(5)];
	if (fd < 0) {
		*err = errno;
		return -1;
	}
	for (;;) {
		size_t want = cap - got < chunk ? cap - got : chunk;
		ssize_t r = read(fd, buf + got, want);
		if (r < 0) {
			*err = errno;
			close(fd);
			return -1;
		}
		if (r == 0 || want == 0)
			break;
		got += (size_t)r;
	}
	if (close(fd) < 0) {
		*err = errno;
		return -1;
	}
	return (ssize_t)got;
}

static void compare_bytes(const char *what, const unsigned char *a, const unsigned char *b,
			  size_t n)
{
	if (!memcmp(a, b, n))
		return;
	size_t i = 0;
	while (a[i] == b[i])
		i++;
	size_t j = i;
	while (j < n && a[j] != b[j])
		j++;
	diverge("%s: contents differ at byte %zu (first differing run %zu bytes; under test "
		"0x%02x, reference 0x%02x)",
		what, i, j - i, a[i], b[i]);
}

static void compare_contents(const char *path)
{
	int e[2] = {0, 0};
	ssize_t n[2];
	for (int s = 0; s < 2; s++)
		n[s] = read_all(s, path, rbuf[s], BUF_SIZE, &e[s]);
	if ((n[SUT] < 0) != (n[REF] < 0) || (n[REF] < 0 && !errno_equiv(e[SUT], e[REF])))
		diverge("read of %s: under test %s, reference %s", path,
			n[SUT] < 0 ? strerror(e[SUT]) : "ok", n[REF] < 0 ? strerror(e[REF]) : "ok");
	if (n[REF] < 0)
		return;
	if (n[SUT] != n[REF])
		diverge("read of %s: under test read %zd bytes, reference %zd", path, n[SUT],
			n[REF]);
	char what[MAX_PATH_C + 16];
	snprintf(what, sizeof(what), "read of %s", path);
	compare_bytes(what, rbuf[SUT], rbuf[REF], (size_t)n[REF]);
}

/* lstat both; same existence, type, size (files, symlinks), permissions,
 * owner; contents of files (unless a handle is open on them), symlink targets. */
static void compare_path(const char *path)
{
	struct stat st[2];
	struct result r[2];
	char what[MAX_PATH_C + 16];
	snprintf(what, sizeof(what), "lstat %s", *path ? path : ".");
	for (int s = 0; s < 2; s++)
		RES(r[s], fstatat(rootfd[s], *path ? path : ".", &st[s], AT_SYMLINK_NOFOLLOW));
	same(what, r);
	if (r[REF].v < 0)
		return;
	mode_t t = st[REF].st_mode & S_IFMT;
	if ((st[SUT].st_mode & S_IFMT) != t)
		diverge("%s: type 0%o under test, 0%o reference", what, st[SUT].st_mode & S_IFMT,
			t);
	bool open_here = busy(path);
	if (t == S_IFREG && !open_here && st[SUT].st_size != st[REF].st_size)
		diverge("%s: size %jd under test, %jd reference", what, (intmax_t)st[SUT].st_size,
			(intmax_t)st[REF].st_size);
	if (t != S_IFLNK && (st[SUT].st_mode & 07777) != (st[REF].st_mode & 07777) && !open_here)
		diverge("%s: mode 0%o under test, 0%o reference", what, st[SUT].st_mode & 07777,
			st[REF].st_mode & 07777);
	if (!open_here && (st[SUT].st_uid != st[REF].st_uid || st[SUT].st_gid != st[REF].st_gid))
		diverge("%s: owner %u:%u under test, %u:%u reference", what, st[SUT].st_uid,
			st[SUT].st_gid, st[REF].st_uid, st[REF].st_gid);
	if (t == S_IFLNK) {
		char l[2][PATH_MAX];
		ssize_t n[2];
		for (int s = 0; s < 2; s++)
			n[s] = readlinkat(rootfd[s], path, l[s], sizeof(l[s]) - 1);
		if (n[SUT] != n[REF] || (n[REF] > 0 && memcmp(l[SUT], l[REF], (size_t)n[REF])))
			diverge("readlink %s: under test %zd \"%.*s\", reference %zd \"%.*s\"",
				path, n[SUT], (int)(n[SUT] > 0 ? n[SUT] : 0), l[SUT], n[REF],
				(int)(n[REF] > 0 ? n[REF] : 0), l[REF]);
		if (st[SUT].st_size != st[REF].st_size)
			diverge("%s: symlink size %jd under test, %jd reference", what,
				(intmax_t)st[SUT].st_size, (intmax_t)st[REF].st_size);
	}
	if (t == S_IFREG && !open_here)
		compare_contents(path);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names in a directory, sorted; -1 with errno on error. */
static int list(int s, const char *path, char ***out)
{
	int fd = openat(rootfd[s], *path ? path : ".", O_RDONLY | O_DIRECTORY);
	DIR *d;
	struct dirent *de;
	char **v = NULL;
	int n = 0, cap = 0;
	if (fd < 0)
		return -1;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	errno = 0;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			v = realloc(v, (size_t)cap * sizeof(*v));
			if (!v)
				abort();
		}
		v[n++] = strdup(de->d_name);
		errno = 0;
	}
	int e = errno;
	closedir(d);
	if (e) {
		for (int i = 0; i < n; i++)
			free(v[i]);
		free(v);
		errno = e;
		return -1;
	}
	if (n > 1)
		qsort(v, (size_t)n, sizeof(*v), cmp_str);
	*out = v;
	return n;
}

static void free_list(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Compare the listing of a directory; with recurse, every entry below it too. */
static void compare_dir(const char *path, bool recurse)
{
	char **v[2] = {NULL, NULL};
	struct result r[2];
	char what[MAX_PATH_C + 16];
	snprintf(what, sizeof(what), "readdir %s", *path ? path : ".");
	for (int s = 0; s < 2; s++) {
		errno = 0;
		r[s].v = list(s, path, &v[s]);
		r[s].e = r[s].v < 0 ? errno : 0;
	}
	if (r[SUT].v < 0 || r[REF].v < 0) {
		same(what, r);
		return;
	}
	int n = (int)r[REF].v;
	bool eq = r[SUT].v == r[REF].v;
	for (int i = 0; eq && i < n; i++)
		eq = !strcmp(v[SUT][i], v[REF][i]);
	if (!eq) {
		char a[4096] = "", b[4096] = "";
		for (int k = 0; k < (int)r[SUT].v; k++)
			snprintf(a + strlen(a), sizeof(a) - strlen(a), " %s", v[SUT][k]);
		for (int k = 0; k < n; k++)
			snprintf(b + strlen(b), sizeof(b) - strlen(b), " %s", v[REF][k]);
		diverge("%s: under test lists [%s ], reference [%s ]", what, a, b);
	}
	for (int i = 0; i < n; i++) {
		char sub[MAX_PATH_C];
		snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "/" : "", v[REF][i]);
		if (recurse) {
			compare_path(sub);
			struct stat st;
			if (!fstatat(rootfd[REF], sub, &st, AT_SYMLINK_NOFOLLOW) &&
			    S_ISDIR(st.st_mode))
				compare_dir(sub, true);
		}
	}
	free_list(v[SUT], n);
	free_list(v[REF], n);
}

static void compare_handle(struct handle *h)
{
	struct stat st[2];
	struct result r[2];
	char what[MAX_PATH_C + 32];
	snprintf(what, sizeof(what), "fstat (open handle) %s", h->path);
	for (int s = 0; s < 2; s++)
		RES(r[s], fstat(h->fd[s], &st[s]));
	same(what, r);
	if (r[REF].v < 0)
		return;
	if (st[SUT].st_size != st[REF].st_size)
		diverge("%s: size %jd under test, %jd reference", what, (intmax_t)st[SUT].st_size,
			(intmax_t)st[REF].st_size);
	size_t n = (size_t)st[REF].st_size;
	snprintf(what, sizeof(what), "pread whole (open handle) %s", h->path);
	for (int s = 0; s < 2; s++)
		RES(r[s], pread(h->fd[s], rbuf[s], n + 1, 0));
	same(what, r);
	if (r[REF].v > 0)
		compare_bytes(what, rbuf[SUT], rbuf[REF], (size_t)r[REF].v);
}

static void full_compare(void)
{
	compare_path("");
	compare_dir("", true);
	for (int i = 0; i < NHANDLES; i++)
		if (hd[i].open)
			compare_handle(&hd[i]);
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
	struct stat st[2];
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
	for (int s = 0; s < 2; s++)
		RES(r[s], fstatat(rootfd[s], path, &st[s], 0));
	same(what, r);
	if (r[REF].v == 0 && (st[SUT].st_mtim.tv_sec != st[REF].st_mtim.tv_sec ||
			      st[SUT].st_mtim.tv_nsec != st[REF].st_mtim.tv_nsec))
		diverge("%s: mtime %jd.%09ld under test, %jd.%09ld reference", what,
			(intmax_t)st[SUT].st_mtim.tv_sec, st[SUT].st_mtim.tv_nsec,
			(intmax_t)st[REF].st_mtim.tv_sec, st[REF].st_mtim.tv_nsec);
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

static struct handle *pick_handle(bool want_open)
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

static void op_hclose(void)
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
	struct stat st[2];
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
	for (int s = 0; s < 2; s++)
		RES(r[s], fstatat(rootfd[s], h->path, &st[s], 0));
	same(what, r);
	if (r[REF].v == 0 && (st[SUT].st_mtim.tv_sec != st[REF].st_mtim.tv_sec ||
			      st[SUT].st_mtim.tv_nsec != st[REF].st_mtim.tv_nsec))
		diverge("%s: mtime %jd.%09ld under test, %jd.%09ld reference", what,
			(intmax_t)st[SUT].st_mtim.tv_sec, st[SUT].st_mtim.tv_nsec,
			(intmax_t)st[REF].st_mtim.tv_sec, st[REF].st_mtim.tv_nsec);
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

struct op {
	const char *name;
	unsigned weight;
	void (*fn)(void);
};

static struct op ops[] = {
    {"create", 12, op_create},	  {"pwrite", 10, op_pwrite},  {"append", 8, op_append},
    {"truncate", 6, op_truncate}, {"read", 8, op_read},	      {"stat", 5, op_stat},
    {"rename", 9, op_rename},	  {"unlink", 5, op_unlink},   {"chmod", 3, op_chmod},
    {"chown", 2, op_chown},	  {"utimens", 2, op_utimens}, {"mkdir", 5, op_mkdir},
    {"rmdir", 4, op_rmdir},	  {"list", 5, op_list},	      {"symlink", 2, op_symlink},
    {"excl", 2, op_excl},	  {"hopen", 4, op_hopen},     {"hwrite", 9, op_hwrite},
    {"hread", 6, op_hread},	  {"htrunc", 2, op_htrunc},   {"hfsync", 1, op_hfsync},
    {"hclose", 3, op_hclose},	  {"hchmod", 1, op_hchmod},   {"hutimens", 1, op_hutimens},
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

static bool skipped(const char *name)
{
	char b[sizeof(skip_list) + 2], n[64];
	snprintf(b, sizeof(b), ",%s,", skip_list);
	snprintf(n, sizeof(n), ",%s,", name);
	return strstr(b, n) != NULL;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: fs_check [--seed N] [--ops N] [--seconds S] [--full-every N] [--skip OP,...]\n"
	    "                [--inject STEP] [--trace FILE] [-v]\n"
	    "                DIR_UNDER_TEST DIR_REFERENCE\n"
	    "  Applies the same random operations to both trees and compares every result.\n"
	    "  Both directories must be empty. Exit 0: no divergence, 1: divergence, 2: usage.\n"
	    "  operations:");
	for (size_t i = 0; i < NOPS; i++)
		fprintf(stderr, " %s", ops[i].name);
	fprintf(stderr, "\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"seed", required_argument, NULL, 's'},    {"ops", required_argument, NULL, 'n'},
	    {"seconds", required_argument, NULL, 't'}, {"full-every", required_argument, NULL, 'f'},
	    {"skip", required_argument, NULL, 'k'},    {"inject", required_argument, NULL, 'i'},
	    {"trace", required_argument, NULL, 'T'},   {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},	       {NULL, 0, NULL, 0}};
	int c;
	seed = (uint64_t)time(NULL);
	while ((c = getopt_long(argc, argv, "s:n:t:f:k:i:T:vh", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			max_ops = strtoul(optarg, NULL, 0);
			break;
		case 't':
			max_seconds = strtod(optarg, NULL);
			break;
		case 'f':
			full_every = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'k':
			snprintf(skip_list, sizeof(skip_list), "%s", optarg);
			break;
		case 'i':
			inject_at = strtol(optarg, NULL, 0);
			break;
		case 'T':
			trace = fopen(optarg, "w");
			if (!trace) {
				fprintf(stderr, "fs_check: %s: %s\n", optarg, strerror(errno));
				return 2;
			}
			break;
		case 'v':
			verbose = true;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2)
		usage();
	root[SUT] = argv[optind];
	root[REF] = argv[optind + 1];
	umask(022);
	for (int s = 0; s < 2; s++) {
		char **v;
		int n;
		rootfd[s] = open(root[s], O_RDONLY | O_DIRECTORY);
		if (rootfd[s] < 0) {
			fprintf(stderr, "fs_check: %s: %s\n", root[s], strerror(errno));
			return 2;
		}
		n = list(s, "", &v);
		if (n != 0) {
			fprintf(stderr, "fs_check: %s: %s\n", root[s],
				n < 0 ? strerror(errno) : "not empty");
			return 2;
		}
		free(v);
	}
	wbuf = malloc(MAX_WRITE);
	rbuf[0] = malloc(BUF_SIZE + 1);
	rbuf[1] = malloc(BUF_SIZE + 1);
	if (!wbuf || !rbuf[0] || !rbuf[1]) {
		fprintf(stderr, "fs_check: out of memory\n");
		return 2;
	}
	unsigned total = 0;
	for (size_t i = 0; i < NOPS; i++)
		if (!skipped(ops[i].name))
			total += ops[i].weight;
	if (!total)
		usage();
	printf("fs_check: seed %" PRIu64 ", up to %lu operations or %.0f s\n", seed, max_ops,
	       max_seconds);
	fflush(stdout);
	rng = seed;
	double t0 = now_s();
	for (step = 0; step < max_ops; step++) {
		if (now_s() - t0 > max_seconds) {
			printf("fs_check: time bound reached after %lu operations\n", step);
			break;
		}
		scan();
		unsigned pick = (unsigned)below(total);
		size_t i = 0;
		for (;; i++) {
			if (skipped(ops[i].name))
				continue;
			if (pick < ops[i].weight)
				break;
			pick -= ops[i].weight;
		}
		op_count[i]++;
		double t1 = now_s();
		ops[i].fn();
		if ((long)step == inject_at) {
			/* The checker's own test: a file only the tree under test has. */
			int fd =
			    openat(rootfd[SUT], "injected-difference", O_WRONLY | O_CREAT, 0644);
			hist("(self-test: created injected-difference under test only: fd %d)", fd);
			if (fd >= 0)
				close(fd);
		}
		if (full_every && step % full_every == full_every - 1) {
			hist("(full compare)");
			full_compare();
		}
		op_time[i] += now_s() - t1;
	}
	unsigned long done = step;
	while (pick_handle(true))
		op_hclose();
	hist("(final full compare)");
	full_compare();
	printf("fs_check: seed %" PRIu64
	       ": %lu operations in %.1f s, %lu expected errors matched, 0 divergences\n",
	       seed, done, now_s() - t0, nerr_matched);
	printf("fs_check: operations/time (with the comparisons after them):");
	for (size_t i = 0; i < NOPS; i++)
		printf(" %s=%lu/%.1fs", ops[i].name, op_count[i], op_time[i]);
	printf("\n");
	return 0;
}
