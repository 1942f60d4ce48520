/*
 * kvfsctl kv: the commands on single keys, put, get, rm, stat and mv.
 *
 * put stores a small regular file, or a stream (stdin, a pipe) that ends
 * within its first piece, with one atomic kvfs_put, and streams anything
 * else (large files, long streams) through an upload, published only when
 * all of it arrived. The one-shot commands open the cluster lazily
 * (KVFS_OPEN_LAZY_FABRIC): small values never set up the fabric. get reads in pieces into a
 * temporary file renamed over FILE at the end, and starts over when the value is replaced between
 * its pieces. stat of a device node (a key of type S_IFCHR or S_IFBLK, see
 * common/devnum.h) also reads its value and shows the device number.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "common/devnum.h"
#include "kvfs/kvfs.h"
#include "tools/kvfsctl/kvfsctl.h"

#define WHOLE_PUT_MAX (64 * MIB) /* regular files up to this are put in one call */
#define PUT_PIECE     (4 * MIB)	 /* upload_write piece (1..8 MiB) */
#define GET_PIECE     (8 * MIB)	 /* kvfs_get piece */
#define GET_ATTEMPTS  3		 /* get restarts when the value changes underneath */

/* Read until len bytes or EOF; returns bytes read or -1 (errno set). */
static ssize_t read_full(int fd, void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = read(fd, (char *)buf + done, len - done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* Write all of buf; 0 or -1 (errno set). */
static int write_full(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		done += (size_t)n;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* put                                                                */
/* ------------------------------------------------------------------ */

/* One atomic put of the whole value: 0, or EXIT_FAIL with the message given. */
static int put_whole(struct ctl *c, const char *key, const void *buf, size_t len,
		     const struct kvfs_setattr *sap)
{
	int rc = kvfs_put(c->kv, key, buf, len, sap);
	if (rc < 0) {
		fail("put %s: %s", key, kvfs_strerror(rc));
		return EXIT_FAIL;
	}
	return 0;
}

int cmd_put(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {{"ttl", required_argument, NULL, 't'},
					   {"mode", required_argument, NULL, 'm'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	struct kvfs_setattr sa;
	const struct kvfs_setattr *sap;
	const char *key, *file, *fname;
	struct stat st;
	struct progress pr;
	void *buf = NULL;
	int fd, rc, ret = EXIT_FAIL;

	rc = parse_args(c, argc, argv, "", lo);
	if (rc != PARSE_OK)
		return rc;
	memset(&sa, 0, sizeof(sa));
	for (int i = 0; i < c->nopt; i++) {
		uint64_t v;
		char *end;

		if (c->opt[i] == 't') {
			if (parse_u64(c->optval[i], &v) < 0 || v > INT64_MAX)
				return usage_error("put: bad --ttl: %s", c->optval[i]);
			sa.mask |= KVFS_SET_TTL;
			sa.ttl = (int64_t)v;
		} else if (c->opt[i] == 'm') {
			errno = 0;
			v = strtoull(c->optval[i], &end, 8);
			if (!c->optval[i][0] || *end || errno || c->optval[i][0] == '-' ||
			    v > 07777)
				return usage_error("put: bad --mode (octal, at most 7777): %s",
						   c->optval[i]);
			sa.mask |= KVFS_SET_MODE;
			sa.mode = (uint32_t)v;
		}
	}
	if (c->npos < 1 || c->npos > 2)
		return usage_error("put: expected KEY [FILE|-]");
	key = c->pos[0];
	file = c->npos > 1 ? c->pos[1] : "-";
	sap = sa.mask ? &sa : NULL;

	if (strcmp(file, "-") == 0) {
		fd = STDIN_FILENO;
		fname = "stdin";
	} else {
		fd = open(file, O_RDONLY | O_CLOEXEC);
		fname = file;
		if (fd < 0) {
			fail("%s: %s", file, strerror(errno));
			return EXIT_FAIL;
		}
	}
	if (fstat(fd, &st) < 0) {
		fail("%s: %s", fname, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		fail("%s: %s", fname, strerror(EISDIR));
		goto out;
	}
	if (ctl_open_flags(c, KVFS_OPEN_LAZY_FABRIC) < 0)
		goto out;

	if (fd != STDIN_FILENO && S_ISREG(st.st_mode) && (uint64_t)st.st_size <= WHOLE_PUT_MAX) {
		/* Small regular file: one atomic put. */
		size_t len = (size_t)st.st_size;
		ssize_t got;

		buf = malloc(len ? len : 1);
		if (!buf) {
			fail("put %s: %s", key, strerror(ENOMEM));
			goto out;
		}
		got = read_full(fd, buf, len);
		if (got < 0) {
			fail("%s: %s", fname, strerror(errno));
			goto out;
		}
		ret = put_whole(c, key, buf, (size_t)got, sap);
		goto out;
	}

	/* Stream: stdin, pipes, large files. */
	{
		kvfs_upload_t *up = NULL;
		uint64_t off = 0;
		ssize_t first;

		buf = malloc(PUT_PIECE);
		if (!buf) {
			fail("put %s: %s", key, strerror(ENOMEM));
			goto out;
		}
		first = read_full(fd, buf, PUT_PIECE);
		if (first < 0) {
			fail("%s: %s", fname, strerror(errno));
			goto out;
		}
		if ((size_t)first < PUT_PIECE) {
			/* It all came in the first piece: one atomic put. */
			ret = put_whole(c, key, buf, (size_t)first, sap);
			goto out;
		}
		rc = kvfs_upload_open(c->kv, key, 0, &up);
		if (rc < 0) {
			fail("put %s: %s", key, kvfs_strerror(rc));
			goto out;
		}
		progress_start(&pr, S_ISREG(st.st_mode) && fd != STDIN_FILENO ? (uint64_t)st.st_size
									      : 0);
		for (;;) {
			ssize_t n = first >= 0 ? first : read_full(fd, buf, PUT_PIECE);

			first = -1;
			if (n < 0) {
				int e = errno;

				progress_end(&pr);
				kvfs_upload_abort(up);
				fail("%s: %s", fname, strerror(e));
				goto out;
			}
			if (n == 0)
				break;
			rc = kvfs_upload_write(up, buf, (size_t)n, off);
			if (rc < 0) {
				progress_end(&pr);
				kvfs_upload_abort(up);
				fail("put %s: %s", key, kvfs_strerror(rc));
				goto out;
			}
			off += (uint64_t)n;
			progress_update(&pr, off);
			if ((size_t)n < PUT_PIECE) /* read_full stops short only at EOF */
				break;
		}
		progress_end(&pr);
		rc = kvfs_upload_commit(up, sap, NULL); /* frees up */
		if (rc < 0) {
			fail("put %s: %s", key, kvfs_strerror(rc));
			goto out;
		}
		ret = 0;
	}
out:
	free(buf);
	if (fd != STDIN_FILENO)
		close(fd);
	return ret;
}

/* ------------------------------------------------------------------ */
/* get                                                                */
/* ------------------------------------------------------------------ */

int cmd_get(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	const char *key, *file, *fname, *tmp = NULL;
	struct kvfs_attr a0, a;
	struct progress pr;
	void *buf = NULL;
	bool seekable = false, use_tmp = false, done = false;
	int fd = -1, rc, ret = EXIT_FAIL;

	rc = parse_args(c, argc, argv, "", lo);
	if (rc != PARSE_OK)
		return rc;
	if (c->npos < 1 || c->npos > 2)
		return usage_error("get: expected KEY [FILE|-]");
	key = c->pos[0];
	file = c->npos > 1 ? c->pos[1] : "-";

	if (ctl_open_flags(c, KVFS_OPEN_LAZY_FABRIC) < 0)
		return EXIT_FAIL;
	/* Fail on a missing key before creating anything. */
	rc = kvfs_stat(c->kv, key, &a0);
	if (rc < 0) {
		fail("get %s: %s", key, kvfs_strerror(rc));
		return EXIT_FAIL;
	}

	if (strcmp(file, "-") == 0) {
		fd = STDOUT_FILENO;
		fname = "stdout";
	} else {
		struct stat st;

		fname = file;
		if (stat(file, &st) == 0 && !S_ISREG(st.st_mode)) {
			/* Device, FIFO, ...: write in place (never replace it). */
			fd = open(file, O_WRONLY | O_CLOEXEC);
			if (fd < 0) {
				fail("%s: %s", file, strerror(errno));
				return EXIT_FAIL;
			}
		} else {
			/* Temporary file next to FILE, renamed over it on success. */
			fd = tmp_create(file, &tmp);
			if (fd < 0) {
				fail("%s: %s", file, strerror(-fd));
				return EXIT_FAIL;
			}
			use_tmp = true;
			seekable = true;
		}
	}

	buf = malloc(GET_PIECE);
	if (!buf) {
		fail("get %s: %s", key, strerror(ENOMEM));
		goto out;
	}
	for (int attempt = 0;; attempt++) {
		uint64_t off = 0, size;
		bool changed = false;

		if (attempt > 0) {
			rc = kvfs_stat(c->kv, key, &a0);
			if (rc < 0) {
				fail("get %s: %s", key, kvfs_strerror(rc));
				goto out;
			}
		}
		size = a0.size;
		progress_start(&pr, size);
		while (off < size) {
			size_t want = size - off < GET_PIECE ? (size_t)(size - off) : GET_PIECE;
			ssize_t n = kvfs_get(c->kv, key, buf, want, off, &a);

			if (n == -EAGAIN) { /* replaced between the pieces of this read */
				changed = true;
				break;
			}
			if (n < 0) {
				progress_end(&pr);
				fail("get %s: %s", key, kvfs_strerror((int)n));
				goto out;
			}
			if (a.version != a0.version || (size_t)n != want) {
				changed = true;
				break;
			}
			if (write_full(fd, buf, (size_t)n) < 0) {
				int e = errno;

				progress_end(&pr);
				fail("%s: %s", fname, strerror(e));
				goto out;
			}
			off += (uint64_t)n;
			progress_update(&pr, off);
		}
		progress_end(&pr);
		if (!changed)
			break;
		/* The value was replaced between pieces: start over if we can. */
		if (attempt + 1 >= GET_ATTEMPTS || (!seekable && off > 0)) {
			fail("get %s: value changed during get", key);
			goto out;
		}
		if (seekable && (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)) {
			fail("%s: %s", fname, strerror(errno));
			goto out;
		}
	}
	done = true;

out:
	free(buf);
	if (use_tmp) {
		if (done) {
			mode_t um = umask(0);

			umask(um);
			if (fchmod(fd, 0666 & ~um) < 0) {
				fail("%s: %s", file, strerror(errno));
				done = false;
			}
		}
		if (close(fd) < 0 && done) {
			fail("%s: %s", file, strerror(errno));
			done = false;
		}
		if (done && rename(tmp, file) < 0) {
			fail("%s: %s", file, strerror(errno));
			done = false;
		}
		if (!done)
			unlink(tmp);
		tmp_release();
	} else if (fd >= 0 && fd != STDOUT_FILENO) {
		if (close(fd) < 0 && done) {
			fail("%s: %s", file, strerror(errno));
			done = false;
		}
	}
	if (done)
		ret = 0;
	return ret;
}

/* ------------------------------------------------------------------ */
/* rm, stat, mv                                                       */
/* ------------------------------------------------------------------ */

int cmd_rm(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	int rc, ret = 0;

	rc = parse_args(c, argc, argv, "", lo);
	if (rc != PARSE_OK)
		return rc;
	if (c->npos < 1)
		return usage_error("rm: expected KEY...");
	if (ctl_open_flags(c, KVFS_OPEN_LAZY_FABRIC) < 0)
		return EXIT_FAIL;
	for (int i = 0; i < c->npos; i++) {
		rc = kvfs_delete(c->kv, c->pos[i]);
		if (rc < 0) {
			fail("rm %s: %s", c->pos[i], kvfs_strerror(rc));
			ret = EXIT_FAIL;
		}
	}
	return ret;
}

int cmd_stat(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct kvfs_attr a;
	char mt[160], at[160], ct[160], ex[160];
	time_t sec;
	long ns;
	int rc, srv;

	rc = parse_args(c, argc, argv, "", lo);
	if (rc != PARSE_OK)
		return rc;
	if (c->npos != 1)
		return usage_error("stat: expected KEY");
	if (ctl_open_flags(c, KVFS_OPEN_LAZY_FABRIC) < 0)
		return EXIT_FAIL;
	rc = kvfs_stat(c->kv, c->pos[0], &a);
	if (rc < 0) {
		fail("stat %s: %s", c->pos[0], kvfs_strerror(rc));
		return EXIT_FAIL;
	}
	split_ns(a.mtime_ns, &sec, &ns);
	fmt_iso(sec, ns, mt, sizeof(mt));
	split_ns(a.atime_ns, &sec, &ns);
	fmt_iso(sec, ns, at, sizeof(at));
	split_ns(a.ctime_ns, &sec, &ns);
	fmt_iso(sec, ns, ct, sizeof(ct));
	if (a.expiry)
		fmt_iso((time_t)a.expiry, -1, ex, sizeof(ex));
	else
		snprintf(ex, sizeof(ex), "never");
	srv = kvfs_server_of(c->kv, c->pos[0]);
	printf("key:     %s\n", c->pos[0]);
	printf("size:    %" PRIu64 "\n", a.size);
	printf("version: %" PRIu64 "\n", a.version);
	char ub[12], gb[12];
	printf("mode:    0%o\n", (unsigned)(a.mode & ~KVFS_MODE_UNSET));
	printf("uid:     %s\n", fmt_id(a.uid, ub));
	printf("gid:     %s\n", fmt_id(a.gid, gb));
	printf("mtime:   %s\n", mt);
	printf("atime:   %s\n", at);
	printf("ctime:   %s\n", ct);
	printf("expiry:  %s\n", ex);
	printf("server:  %s\n", srv >= 0 ? srv_name(c, srv) : "?");
	if (S_ISCHR(a.mode) || S_ISBLK(a.mode)) {
		/* a device node of the mount: its number is its value (common/devnum.h) */
		unsigned char v[DEVNUM_LEN];
		uint32_t ma, mi;
		ssize_t n = kvfs_get(c->kv, c->pos[0], v, sizeof(v), 0, NULL);
		if (n >= 0 && devnum_decode(v, (size_t)n, &ma, &mi) == 0)
			printf("device:  %" PRIu32 ", %" PRIu32 "\n", ma, mi);
		else
			printf("device:  ? (the value is not a device number)\n");
	}
	return 0;
}

int cmd_mv(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {{"no-replace", no_argument, NULL, 'n'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	unsigned flags = 0;
	int rc;

	rc = parse_args(c, argc, argv, "", lo);
	if (rc != PARSE_OK)
		return rc;
	for (int i = 0; i < c->nopt; i++)
		if (c->opt[i] == 'n')
			flags |= KVFS_RENAME_NOREPLACE;
	if (c->npos != 2)
		return usage_error("mv: expected SRC DST");
	if (ctl_open_flags(c, KVFS_OPEN_LAZY_FABRIC) < 0)
		return EXIT_FAIL;
	rc = kvfs_rename(c->kv, c->pos[0], c->pos[1], flags);
	if (rc == -EXDEV) {
		fail("mv %s %s: source and destination live on different servers (%s, %s); "
		     "rename works only within one server (use get + put + rm)",
		     c->pos[0], c->pos[1], srv_name(c, kvfs_server_of(c->kv, c->pos[0])),
		     srv_name(c, kvfs_server_of(c->kv, c->pos[1])));
		return EXIT_FAIL;
	}
	if (rc < 0) {
		fail("mv %s %s: %s", c->pos[0], c->pos[1], kvfs_strerror(rc));
		return EXIT_FAIL;
	}
	return 0;
}
