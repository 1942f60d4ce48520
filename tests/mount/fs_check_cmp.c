/*
 * fs_check_cmp.c: how fs_check compares the two trees. Each call's results
 * (value or errno, with the errno pairs POSIX lets differ), then the state it
 * touched: lstat fields, contents, symlink targets, listings, open handles,
 * and the whole trees (full_compare). A difference ends the run (diverge).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "fs_check.h"

unsigned long nerr_matched;

/* --- results --------------------------------------------------------------- */

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

void same(const char *what, const struct result r[2])
{
	same_v(what, r, true);
}
void same_fd(const char *what, const struct result r[2])
{
	same_v(what, r, false);
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

void compare_bytes(const char *what, const unsigned char *a, const unsigned char *b, size_t n)
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

void compare_contents(const char *path)
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
void compare_path(const char *path)
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

/* stat both following symlinks: same result, same mtime (only right after utimens). */
void compare_mtime(const char *what, const char *path)
{
	struct stat st[2];
	struct result r[2];
	for (int s = 0; s < 2; s++)
		RES(r[s], fstatat(rootfd[s], path, &st[s], 0));
	same(what, r);
	if (r[REF].v == 0 && (st[SUT].st_mtim.tv_sec != st[REF].st_mtim.tv_sec ||
			      st[SUT].st_mtim.tv_nsec != st[REF].st_mtim.tv_nsec))
		diverge("%s: mtime %jd.%09ld under test, %jd.%09ld reference", what,
			(intmax_t)st[SUT].st_mtim.tv_sec, st[SUT].st_mtim.tv_nsec,
			(intmax_t)st[REF].st_mtim.tv_sec, st[REF].st_mtim.tv_nsec);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names in a directory, sorted; -1 with errno on error. */
int list(int s, const char *path, char ***out)
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
void compare_dir(const char *path, bool recurse)
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

void compare_handle(struct handle *h)
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

void full_compare(void)
{
	compare_path("");
	compare_dir("", true);
	for (int i = 0; i < NHANDLES; i++)
		if (hd[i].open)
			compare_handle(&hd[i]);
}
