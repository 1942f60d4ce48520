/*
 * kvfsctl: the command-line tool of a kvfs cluster (see kvfsctl(1)).
 *
 * A thin user of libkvfs: every command parses its arguments first (usage
 * errors exit 2 before anything is opened), then opens the cluster from the
 * configuration file and does its work. Failures print exactly one line
 * "kvfsctl: CONTEXT: reason" on stderr and exit 1.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "kvfs/kvfs.h"
#include "common/config.h"
#include "common/log.h"
#include "tools/latency.h"

#define MIB		  (1024ull * 1024ull)
#define WHOLE_PUT_MAX	  (64 * MIB) /* regular files up to this are put in one call */
#define PUT_PIECE	  (4 * MIB)  /* upload_write piece (1..8 MiB) */
#define GET_PIECE	  (8 * MIB)  /* kvfs_get piece */
#define PROGRESS_MIN	  (64 * MIB) /* transfers above this get a progress bar on a TTY */
#define GET_ATTEMPTS	  3	     /* get restarts when the value changes underneath */
#define BENCH_MAX_THREADS 1024

enum { EXIT_FAIL = 1, EXIT_USAGE = 2 };
/* Returned by parse_args when the command should go on. */
#define PARSE_OK (-1)

struct ctl {
	const char *conf_arg; /* -c, or NULL */
	struct kvfs_config *cfg;
	kvfs_t *kv;
	/* Scratch for parse_args, sized by main for the whole argv. */
	char **pos;
	int npos;
	int *opt;
	char **optval;
	int nopt;
};

/* ------------------------------------------------------------------ */
/* Messages                                                           */
/* ------------------------------------------------------------------ */

/* One line "kvfsctl: ..." on stderr; newlines in keys are flattened. */
static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	char line[16384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "kvfsctl: %s\n", line);
}

static void usage(FILE *f)
{
	fputs("usage: kvfsctl [-c FILE] [-v] COMMAND [ARGS...]\n"
	      "\n"
	      "commands:\n"
	      "  put KEY [FILE|-] [--ttl SECONDS] [--mode OCTAL]\n"
	      "                         store FILE (default: stdin) as the value of KEY\n"
	      "  get KEY [FILE|-]       write the value of KEY to FILE (default: stdout)\n"
	      "  rm KEY...              delete keys\n"
	      "  ls [PREFIX] [-l] [-r]  list keys (-l: long format, -r: recursive)\n"
	      "  stat KEY               show the attributes of KEY\n"
	      "  mv SRC DST [--no-replace]\n"
	      "                         rename SRC to DST (same server only)\n"
	      "  ping [SERVER]          round trip to every server (or SERVER)\n"
	      "  stats [--json]         server statistics\n"
	      "  bench --op get|put --size BYTES --count N [--threads T] [--keys K]\n"
	      "        [--prefix P] [--copy] [--json]\n"
	      "                         measure latency and throughput\n"
	      "\n"
	      "options:\n"
	      "  -c FILE  configuration (default: $KVFS_CONF, else " KVFS_DEFAULT_CONF ")\n"
	      "  -v       more log output (repeat for debug)\n"
	      "  -h       this help\n",
	      f);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	char line[8192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "kvfsctl: %s\n", line);
	usage(stderr);
	return EXIT_USAGE;
}

/*
 * getopt_long over a command's argv (argv[0] = command name). Positionals go
 * to c->pos in order, options to c->opt/c->optval. "--" ends options.
 * Returns PARSE_OK, or the exit code to return at once (help / usage error).
 */
static int parse_args(struct ctl *c, int argc, char **argv, const char *shortopts,
		      const struct option *longopts)
{
	char optstring[64];
	int o;

	snprintf(optstring, sizeof(optstring), "-:h%s", shortopts);
	c->npos = 0;
	c->nopt = 0;
	optind = 0; /* glibc: full re-initialisation */
	opterr = 0;
	while ((o = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
		switch (o) {
		case 1:
			c->pos[c->npos++] = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			return usage_error("%s: option requires an argument: %s", argv[0],
					   argv[optind - 1]);
		case '?':
			if (optopt > 0 && optopt < 128 && optopt != '?')
				return usage_error("%s: unknown option: -%c", argv[0], optopt);
			return usage_error("%s: unknown option: %s", argv[0], argv[optind - 1]);
		default:
			c->opt[c->nopt] = o;
			c->optval[c->nopt++] = optarg;
			break;
		}
	}
	while (optind < argc)
		c->pos[c->npos++] = argv[optind++];
	return PARSE_OK;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                            */
/* ------------------------------------------------------------------ */

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

static int ctl_open(struct ctl *c)
{
	char err[1024] = "";
	const char *path = config_default_path(c->conf_arg);
	int rc;

	rc = kvfs_config_load(path, &c->cfg, err, sizeof(err));
	if (rc < 0) {
		c->cfg = NULL;
		if (err[0])
			fail("%s", err);
		else
			fail("%s: %s", path, kvfs_strerror(rc));
		return -1;
	}
	rc = kvfs_open_config(&c->kv, c->cfg);
	if (rc < 0) {
		c->kv = NULL;
		fail("%s: %s", path, kvfs_strerror(rc));
		return -1;
	}
	return 0;
}

static const char *srv_name(struct ctl *c, int idx)
{
	const char *n = kvfs_server_name(c->kv, idx);

	return n ? n : "?";
}

/* "host:port" of server idx as configured ("[v6]:port" for IPv6). */
static const char *srv_addr(struct ctl *c, int idx, char *buf, size_t len)
{
	const char *name = kvfs_server_name(c->kv, idx);

	for (int i = 0; name && c->cfg && i < c->cfg->n_servers; i++) {
		const struct kvfs_server_entry *e = &c->cfg->servers[i];

		if (strcmp(e->name, name) != 0)
			continue;
		if (strchr(e->host, ':'))
			snprintf(buf, len, "[%s]:%s", e->host, e->port);
		else
			snprintf(buf, len, "%s:%s", e->host, e->port);
		return buf;
	}
	snprintf(buf, len, "?");
	return buf;
}

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

/* Split nanoseconds since the epoch into seconds and nanoseconds (floor). */
static void split_ns(int64_t ns, time_t *sec, long *nsec)
{
	int64_t s = ns / 1000000000;
	int64_t r = ns % 1000000000;

	if (r < 0) {
		s--;
		r += 1000000000;
	}
	*sec = (time_t)s;
	*nsec = (long)r;
}

/* "YYYY-MM-DD HH:MM" in local time (sep between date and time). */
static void fmt_minutes(time_t t, char sep, char *buf, size_t len)
{
	struct tm tm;
	char f[32];

	snprintf(f, sizeof(f), "%%Y-%%m-%%d%c%%H:%%M", sep);
	if (!localtime_r(&t, &tm) || strftime(buf, len, f, &tm) == 0)
		snprintf(buf, len, "?");
}

/* ISO 8601 local time, with nanoseconds when ns >= 0: 2024-05-01T12:00:00.123456789+02:00 */
static void fmt_iso(time_t t, long ns, char *buf, size_t len)
{
	struct tm tm;
	char base[64], zone[16], frac[24] = "";

	if (!localtime_r(&t, &tm) || strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0 ||
	    strftime(zone, sizeof(zone), "%z", &tm) == 0) {
		snprintf(buf, len, "?");
		return;
	}
	if (ns >= 0)
		snprintf(frac, sizeof(frac), ".%09ld", ns);
	if (strlen(zone) == 5) /* +hhmm -> +hh:mm */
		snprintf(buf, len, "%s%s%.3s:%.2s", base, frac, zone, zone + 3);
	else
		snprintf(buf, len, "%s%s%s", base, frac, zone);
}

/* A stored uid or gid, or "-" when the writer stored none (KVFS_ID_UNSET). */
static const char *fmt_id(uint32_t id, char buf[12])
{
	if (id == KVFS_ID_UNSET)
		return "-";
	snprintf(buf, 12, "%" PRIu32, id);
	return buf;
}

/* Mode as ls prints it: -rw-r--r-- */
static void fmt_mode(uint32_t m, char s[11])
{
	switch (m & S_IFMT) {
	case S_IFDIR:
		s[0] = 'd';
		break;
	case S_IFLNK:
		s[0] = 'l';
		break;
	case S_IFCHR:
		s[0] = 'c';
		break;
	case S_IFBLK:
		s[0] = 'b';
		break;
	case S_IFIFO:
		s[0] = 'p';
		break;
	case S_IFSOCK:
		s[0] = 's';
		break;
	default:
		s[0] = '-';
		break;
	}
	s[1] = (m & S_IRUSR) ? 'r' : '-';
	s[2] = (m & S_IWUSR) ? 'w' : '-';
	s[3] = (m & S_ISUID) ? ((m & S_IXUSR) ? 's' : 'S') : ((m & S_IXUSR) ? 'x' : '-');
	s[4] = (m & S_IRGRP) ? 'r' : '-';
	s[5] = (m & S_IWGRP) ? 'w' : '-';
	s[6] = (m & S_ISGID) ? ((m & S_IXGRP) ? 's' : 'S') : ((m & S_IXGRP) ? 'x' : '-');
	s[7] = (m & S_IROTH) ? 'r' : '-';
	s[8] = (m & S_IWOTH) ? 'w' : '-';
	s[9] = (m & S_ISVTX) ? ((m & S_IXOTH) ? 't' : 'T') : ((m & S_IXOTH) ? 'x' : '-');
	s[10] = '\0';
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

/* ------------------------------------------------------------------ */
/* Progress bar and signal cleanup                                    */
/* ------------------------------------------------------------------ */

/* Set while a temporary output file exists / a progress line is shown. */
static char cleanup_path[PATH_MAX + 32];
static volatile sig_atomic_t cleanup_active;
static volatile sig_atomic_t progress_shown;

static void on_signal(int sig)
{
	if (cleanup_active)
		unlink(cleanup_path);
	if (progress_shown) {
		ssize_t w = write(STDERR_FILENO, "\r\033[K", 4);
		(void)w;
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static void install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN); /* write errors are reported instead */
}

struct progress {
	bool tty;
	uint64_t total; /* 0 = unknown (stream) */
	uint64_t t0, last;
};

static void progress_start(struct progress *p, uint64_t total)
{
	p->tty = isatty(STDERR_FILENO) == 1;
	p->total = total;
	p->t0 = lat_now_ns();
	p->last = 0;
}

static void progress_update(struct progress *p, uint64_t done)
{
	uint64_t t;
	double secs, mbs;

	if (!p->tty || (p->total ? p->total : done) <= PROGRESS_MIN)
		return;
	t = lat_now_ns();
	if (progress_shown && t - p->last < 100000000ull) /* at most 10 updates/s */
		return;
	p->last = t;
	secs = (double)(t - p->t0) / 1e9;
	mbs = secs > 0 ? (double)done / 1e6 / secs : 0;
	if (p->total) {
		char bar[31];
		double frac = (double)done / (double)p->total;
		int fill = (int)(frac * 30);

		if (fill > 30)
			fill = 30;
		memset(bar, '#', (size_t)fill);
		memset(bar + fill, '.', (size_t)(30 - fill));
		bar[30] = '\0';
		fprintf(stderr, "\r[%s] %5.1f%%  %9.1f MB/s ", bar, frac * 100, mbs);
	} else {
		fprintf(stderr, "\r%10.1f MB  %9.1f MB/s ", (double)done / 1e6, mbs);
	}
	progress_shown = 1;
}

static void progress_end(struct progress *p)
{
	(void)p;
	if (progress_shown) {
		fputs("\r\033[K", stderr);
		progress_shown = 0;
	}
}

/* ------------------------------------------------------------------ */
/* put                                                                */
/* ------------------------------------------------------------------ */

static int cmd_put(struct ctl *c, int argc, char **argv)
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
	if (ctl_open(c) < 0)
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
		rc = kvfs_put(c->kv, key, buf, (size_t)got, sap);
		if (rc < 0) {
			fail("put %s: %s", key, kvfs_strerror(rc));
			goto out;
		}
		ret = 0;
		goto out;
	}

	/* Stream: stdin, pipes, large files. */
	{
		kvfs_upload_t *up = NULL;
		uint64_t off = 0;

		buf = malloc(PUT_PIECE);
		if (!buf) {
			fail("put %s: %s", key, strerror(ENOMEM));
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
			ssize_t n = read_full(fd, buf, PUT_PIECE);

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

static int cmd_get(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	const char *key, *file, *fname;
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

	if (ctl_open(c) < 0)
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
			const char *slash = strrchr(file, '/');
			int dirlen = slash ? (int)(slash - file + 1) : 0;
			int n =
			    snprintf(cleanup_path, sizeof(cleanup_path), "%.*s.%s.kvfsctl-XXXXXX",
				     dirlen, file, slash ? slash + 1 : file);

			if (n < 0 || (size_t)n >= sizeof(cleanup_path)) {
				fail("%s: %s", file, strerror(ENAMETOOLONG));
				return EXIT_FAIL;
			}
			fd = mkstemp(cleanup_path);
			if (fd < 0) {
				fail("%s: %s", file, strerror(errno));
				return EXIT_FAIL;
			}
			cleanup_active = 1;
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
		if (done && rename(cleanup_path, file) < 0) {
			fail("%s: %s", file, strerror(errno));
			done = false;
		}
		if (!done)
			unlink(cleanup_path);
		cleanup_active = 0;
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

static int cmd_rm(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	int rc, ret = 0;

	rc = parse_args(c, argc, argv, "", lo);
	if (rc != PARSE_OK)
		return rc;
	if (c->npos < 1)
		return usage_error("rm: expected KEY...");
	if (ctl_open(c) < 0)
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

static int cmd_stat(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct kvfs_attr a;
	char mt[160], ex[160];
	time_t sec;
	long ns;
	int rc, srv;

	rc = parse_args(c, argc, argv, "", lo);
	if (rc != PARSE_OK)
		return rc;
	if (c->npos != 1)
		return usage_error("stat: expected KEY");
	if (ctl_open(c) < 0)
		return EXIT_FAIL;
	rc = kvfs_stat(c->kv, c->pos[0], &a);
	if (rc < 0) {
		fail("stat %s: %s", c->pos[0], kvfs_strerror(rc));
		return EXIT_FAIL;
	}
	split_ns(a.mtime_ns, &sec, &ns);
	fmt_iso(sec, ns, mt, sizeof(mt));
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
	printf("expiry:  %s\n", ex);
	printf("server:  %s\n", srv >= 0 ? srv_name(c, srv) : "?");
	return 0;
}

static int cmd_mv(struct ctl *c, int argc, char **argv)
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
	if (ctl_open(c) < 0)
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

/* ------------------------------------------------------------------ */
/* ls                                                                 */
/* ------------------------------------------------------------------ */

struct ls_state {
	struct ctl *c;
	bool lng;
};

static int ls_cb(void *arg, const struct kvfs_entry *e)
{
	struct ls_state *s = arg;

	if (s->lng) {
		if (e->is_prefix) {
			printf("%-10s %5s %5s %12s %-16s %10s %-16s %-8s ", "d---------", "-", "-",
			       "-", "-", "-", "-", "-");
		} else {
			char mode[11], mt[64], ex[64], ub[12], gb[12];
			time_t sec;
			long ns;

			fmt_mode(e->attr.mode & ~KVFS_MODE_UNSET, mode);
			split_ns(e->attr.mtime_ns, &sec, &ns);
			fmt_minutes(sec, ' ', mt, sizeof(mt));
			if (e->attr.expiry)
				fmt_minutes((time_t)e->attr.expiry, 'T', ex, sizeof(ex));
			else
				snprintf(ex, sizeof(ex), "-");
			printf("%-10s %5s %5s %12" PRIu64 " %-16s %10" PRIu64 " %-16s %-8s ", mode,
			       fmt_id(e->attr.uid, ub), fmt_id(e->attr.gid, gb), e->attr.size, mt,
			       e->attr.version, ex, srv_name(s->c, e->server));
		}
	}
	fwrite(e->name, 1, e->name_len, stdout);
	putchar('\n');
	return ferror(stdout) ? 1 : 0; /* stop on a broken stdout */
}

static int cmd_ls(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {{"long", no_argument, NULL, 'l'},
					   {"recursive", no_argument, NULL, 'r'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	struct ls_state s = {c, false};
	bool recursive = false;
	const char *prefix;
	ssize_t n;
	int rc;

	rc = parse_args(c, argc, argv, "lr", lo);
	if (rc != PARSE_OK)
		return rc;
	for (int i = 0; i < c->nopt; i++) {
		if (c->opt[i] == 'l')
			s.lng = true;
		else if (c->opt[i] == 'r')
			recursive = true;
	}
	if (c->npos > 1)
		return usage_error("ls: expected [PREFIX]");
	prefix = c->npos ? c->pos[0] : "";
	if (ctl_open(c) < 0)
		return EXIT_FAIL;
	n = kvfs_list(c->kv, prefix, recursive ? 0 : '/', ls_cb, &s);
	if (n < 0) {
		fflush(stdout);
		if (prefix[0])
			fail("ls %s: %s", prefix, kvfs_strerror((int)n));
		else
			fail("ls: %s", kvfs_strerror((int)n));
		return EXIT_FAIL;
	}
	return 0; /* stdout errors are caught in main */
}

/* ------------------------------------------------------------------ */
/* ping, stats                                                        */
/* ------------------------------------------------------------------ */

/* Servers to visit: all, or the one named. Returns count or -1 (reported). */
static int pick_servers(struct ctl *c, const char *cmd, const char *name, int *first)
{
	int n = kvfs_server_count(c->kv);

	if (n < 0) {
		fail("%s: %s", cmd, kvfs_strerror(n));
		return -1;
	}
	*first = 0;
	if (!name)
		return n;
	for (int i = 0; i < n; i++) {
		const char *s = kvfs_server_name(c->kv, i);

		if (s && strcmp(s, name) == 0) {
			*first = i;
			return 1;
		}
	}
	fail("%s %s: no such server in %s", cmd, name, config_default_path(c->conf_arg));
	return -1;
}

static int cmd_ping(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	int rc, first, n, failed = 0, last_err = 0, last_idx = 0;

	rc = parse_args(c, argc, argv, "", lo);
	if (rc != PARSE_OK)
		return rc;
	if (c->npos > 1)
		return usage_error("ping: expected [SERVER]");
	if (ctl_open(c) < 0)
		return EXIT_FAIL;
	n = pick_servers(c, "ping", c->npos ? c->pos[0] : NULL, &first);
	if (n < 0)
		return EXIT_FAIL;
	for (int i = first; i < first + n; i++) {
		char addr[300];
		uint64_t rtt = 0;

		srv_addr(c, i, addr, sizeof(addr));
		rc = kvfs_ping(c->kv, i, &rtt);
		if (rc < 0) {
			printf("%s %s failed: %s\n", srv_name(c, i), addr, kvfs_strerror(rc));
			failed++;
			last_err = rc;
			last_idx = i;
		} else {
			printf("%s %s ok %.1f us\n", srv_name(c, i), addr, (double)rtt / 1e3);
		}
		fflush(stdout);
	}
	if (failed == 1)
		fail("ping %s: %s", srv_name(c, last_idx), kvfs_strerror(last_err));
	else if (failed > 1)
		fail("ping: %d of %d servers failed", failed, n);
	return failed ? EXIT_FAIL : 0;
}

#define N_STAT_COLS 16

static const char *const stat_cols[N_STAT_COLS] = {
    "name",	 "provider",  "gets",	     "hits",	 "misses",    "puts",
    "deletes",	 "evictions", "expirations", "bytes_in", "bytes_out", "keys",
    "pool_size", "pool_used", "sessions",    "uptime_s"};

static void stat_values(const struct kvfs_stats *s, uint64_t v[N_STAT_COLS - 2])
{
	v[0] = s->gets;
	v[1] = s->hits;
	v[2] = s->misses;
	v[3] = s->puts;
	v[4] = s->deletes;
	v[5] = s->evictions;
	v[6] = s->expirations;
	v[7] = s->bytes_in;
	v[8] = s->bytes_out;
	v[9] = s->keys;
	v[10] = s->pool_size;
	v[11] = s->pool_used;
	v[12] = s->sessions;
	v[13] = s->uptime_s;
}

static int cmd_stats(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {
	    {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct kvfs_stats *st = NULL;
	int *err = NULL;
	bool json = false;
	int rc, n, first, failed = 0, last_idx = 0, last_err = 0;
	int width[N_STAT_COLS];

	rc = parse_args(c, argc, argv, "", lo);
	if (rc != PARSE_OK)
		return rc;
	for (int i = 0; i < c->nopt; i++)
		if (c->opt[i] == 'j')
			json = true;
	if (c->npos > 0)
		return usage_error("stats: unexpected argument: %s", c->pos[0]);
	if (ctl_open(c) < 0)
		return EXIT_FAIL;
	n = pick_servers(c, "stats", NULL, &first);
	if (n < 0)
		return EXIT_FAIL;
	st = calloc((size_t)n + 1, sizeof(*st));
	err = calloc((size_t)n + 1, sizeof(*err));
	if (!st || !err) {
		free(st);
		free(err);
		fail("stats: %s", strerror(ENOMEM));
		return EXIT_FAIL;
	}
	for (int i = 0; i < n; i++) {
		err[i] = kvfs_server_stats(c->kv, i, &st[i]);
		st[i].provider[sizeof(st[i].provider) - 1] = '\0';
		if (err[i] < 0) {
			failed++;
			last_idx = i;
			last_err = err[i];
		}
	}

	if (json) {
		printf("[");
		for (int i = 0; i < n; i++) {
			printf("%s\n  {\"name\": ", i ? "," : "");
			json_str(stdout, srv_name(c, i));
			if (err[i] < 0) {
				printf(", \"error\": ");
				json_str(stdout, kvfs_strerror(err[i]));
			} else {
				uint64_t v[N_STAT_COLS - 2];

				printf(", \"provider\": ");
				json_str(stdout, st[i].provider);
				stat_values(&st[i], v);
				for (int k = 0; k < N_STAT_COLS - 2; k++)
					printf(", \"%s\": %" PRIu64, stat_cols[k + 2], v[k]);
			}
			printf("}");
		}
		printf("%s]\n", n ? "\n" : "");
	} else {
		char num[32];

		for (int k = 0; k < N_STAT_COLS; k++)
			width[k] = (int)strlen(stat_cols[k]);
		for (int i = 0; i < n; i++) {
			uint64_t v[N_STAT_COLS - 2];
			int w = (int)strlen(srv_name(c, i));

			if (w > width[0])
				width[0] = w;
			if (err[i] < 0)
				continue;
			w = (int)strlen(st[i].provider);
			if (w > width[1])
				width[1] = w;
			stat_values(&st[i], v);
			for (int k = 0; k < N_STAT_COLS - 2; k++) {
				w = snprintf(num, sizeof(num), "%" PRIu64, v[k]);
				if (w > width[k + 2])
					width[k + 2] = w;
			}
		}
		for (int k = 0; k < N_STAT_COLS; k++)
			printf(k < 2 ? "%-*s%s" : "%*s%s", width[k], stat_cols[k],
			       k + 1 < N_STAT_COLS ? "  " : "\n");
		for (int i = 0; i < n; i++) {
			uint64_t v[N_STAT_COLS - 2];

			printf("%-*s  ", width[0], srv_name(c, i));
			if (err[i] < 0) {
				printf("error: %s\n", kvfs_strerror(err[i]));
				continue;
			}
			printf("%-*s  ", width[1], st[i].provider);
			stat_values(&st[i], v);
			for (int k = 0; k < N_STAT_COLS - 2; k++)
				printf("%*" PRIu64 "%s", width[k + 2], v[k],
				       k + 3 < N_STAT_COLS ? "  " : "\n");
		}
	}
	fflush(stdout);
	free(st);
	free(err);
	if (failed == 1)
		fail("stats %s: %s", srv_name(c, last_idx), kvfs_strerror(last_err));
	else if (failed > 1)
		fail("stats: %d of %d servers failed", failed, n);
	return failed ? EXIT_FAIL : 0;
}

/* ------------------------------------------------------------------ */
/* bench                                                              */
/* ------------------------------------------------------------------ */

struct bench {
	kvfs_t *kv;
	bool put, copy;
	size_t size;
	uint64_t nkeys;
	char **keys;
	const unsigned char *pattern; /* the value of key 0 ... minus the header */

	atomic_int stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int ready; /* threads past set-up and warm-up */
	bool go;
	bool failed;
	char errmsg[8192];
};

struct bthread {
	struct bench *b;
	pthread_t tid;
	uint64_t nops, nwarm, next_key;
	uint64_t *lat;
	uint64_t t_start, t_end;
	bool ran;
};

static void bench_fail(struct bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bench_fail(struct bench *b, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&b->lock);
	if (!b->failed) {
		va_start(ap, fmt);
		vsnprintf(b->errmsg, sizeof(b->errmsg), fmt, ap);
		va_end(ap);
		b->failed = true;
	}
	pthread_mutex_unlock(&b->lock);
	atomic_store(&b->stop, 1);
}

/* Bytes of the value of key k: offset i >= 8 from the pattern, 0..7 = k + 1 (LE). */
static void fill_pattern(unsigned char *p, size_t size)
{
	for (size_t i = 0; i < size; i++)
		p[i] = (unsigned char)(((uint32_t)i * 2654435761u) >> 24);
}

static void set_header(unsigned char *p, size_t size, uint64_t k)
{
	uint64_t h = k + 1;

	for (size_t i = 0; i < 8 && i < size; i++)
		p[i] = (unsigned char)(h >> (8 * i));
}

/* Index of the first wrong byte of key k's value in p, or size if right. */
static size_t check_value(const struct bench *b, const unsigned char *p, uint64_t k)
{
	unsigned char hdr[8];
	size_t i, hl = b->size < 8 ? b->size : 8;

	memset(hdr, 0, sizeof(hdr));
	set_header(hdr, hl, k);
	for (i = 0; i < hl; i++)
		if (p[i] != hdr[i])
			return i;
	for (; i < b->size; i++)
		if (p[i] != b->pattern[i])
			return i;
	return b->size;
}

/* One op on the thread's next key; 0 or -1 (reported). */
static int bench_op(struct bthread *t, unsigned char *buf, kvfs_mr_t *mr, bool *verified,
		    uint64_t *lat)
{
	struct bench *b = t->b;
	uint64_t k = t->next_key;
	const char *key = b->keys[k];
	uint64_t t0, t1;

	t->next_key = k + 1 == b->nkeys ? 0 : k + 1;
	if (b->put) {
		int rc;

		set_header(buf, b->size, k);
		t0 = lat_now_ns();
		rc = b->copy ? kvfs_put(b->kv, key, buf, b->size, NULL)
			     : kvfs_put_mr(b->kv, key, buf, b->size, mr, NULL);
		t1 = lat_now_ns();
		if (rc < 0) {
			bench_fail(b, "bench: put %s: %s", key, kvfs_strerror(rc));
			return -1;
		}
	} else {
		ssize_t n;

		t0 = lat_now_ns();
		n = b->copy ? kvfs_get(b->kv, key, buf, b->size, 0, NULL)
			    : kvfs_get_mr(b->kv, key, buf, b->size, 0, mr, NULL);
		t1 = lat_now_ns();
		if (n < 0) {
			bench_fail(b, "bench: get %s: %s", key, kvfs_strerror((int)n));
			return -1;
		}
		if ((size_t)n != b->size) {
			bench_fail(b, "bench: get %s: returned %zd bytes, expected %zu", key, n,
				   b->size);
			return -1;
		}
		if (!*verified) {
			size_t bad = check_value(b, buf, k);

			if (bad != b->size) {
				bench_fail(b, "bench: get %s: wrong data at byte %zu", key, bad);
				return -1;
			}
			*verified = true;
		}
	}
	*lat = t1 - t0;
	return 0;
}

static void *bench_thread(void *arg)
{
	struct bthread *t = arg;
	struct bench *b = t->b;
	size_t blen = b->size ? b->size : 1;
	unsigned char *buf = NULL;
	kvfs_mr_t *mr = NULL;
	bool verified = false;
	uint64_t dummy;
	void *p = NULL;
	int rc;

	if (posix_memalign(&p, 4096, blen) != 0) {
		bench_fail(b, "bench: %s", strerror(ENOMEM));
		goto ready;
	}
	buf = p;
	if (b->put) {
		memcpy(buf, b->pattern, b->size);
	} else {
		/* The complement of the expected value: a GET that moves nothing fails. */
		for (size_t i = 0; i < b->size; i++)
			buf[i] = (unsigned char)~b->pattern[i];
		for (size_t i = 0; i < b->size && i < 8; i++)
			buf[i] = 0;
	}
	if (!b->copy) {
		rc = kvfs_mr_reg(b->kv, buf, blen, &mr);
		if (rc < 0) {
			mr = NULL;
			bench_fail(b, "bench: register buffer: %s", kvfs_strerror(rc));
			goto ready;
		}
	}
	for (uint64_t i = 0; i < t->nwarm && !atomic_load_explicit(&b->stop, memory_order_relaxed);
	     i++)
		if (bench_op(t, buf, mr, &verified, &dummy) < 0)
			break;
ready:
	pthread_mutex_lock(&b->lock);
	b->ready++;
	pthread_cond_broadcast(&b->cond);
	while (!b->go)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);

	if (buf && !atomic_load(&b->stop)) {
		uint64_t i;

		t->t_start = lat_now_ns();
		for (i = 0; i < t->nops; i++) {
			if (atomic_load_explicit(&b->stop, memory_order_relaxed))
				break;
			if (bench_op(t, buf, mr, &verified, &t->lat[i]) < 0)
				break;
		}
		t->t_end = lat_now_ns();
		t->ran = i == t->nops;
	}
	if (mr)
		kvfs_mr_close(mr);
	free(buf);
	return NULL;
}

static int cmd_bench(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {
	    {"op", required_argument, NULL, 'o'},     {"size", required_argument, NULL, 's'},
	    {"count", required_argument, NULL, 'n'},  {"threads", required_argument, NULL, 't'},
	    {"keys", required_argument, NULL, 'k'},   {"json", no_argument, NULL, 'j'},
	    {"prefix", required_argument, NULL, 'p'}, {"copy", no_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},	      {NULL, 0, NULL, 0}};
	struct bench b;
	struct bthread *th = NULL;
	const char *op = NULL, *prefix = "bench/";
	uint64_t size = 0, count = 0, threads = 1, nkeys = 0, *all = NULL, total = 0;
	bool have_size = false, have_count = false, have_keys = false, json = false;
	bool lock_init = false;
	unsigned char *pattern = NULL, *vbuf = NULL;
	int created = 0, rc, ret = EXIT_FAIL;

	rc = parse_args(c, argc, argv, "", lo);
	if (rc != PARSE_OK)
		return rc;
	memset(&b, 0, sizeof(b));
	for (int i = 0; i < c->nopt; i++) {
		const char *v = c->optval[i];

		switch (c->opt[i]) {
		case 'o':
			if (strcmp(v, "get") != 0 && strcmp(v, "put") != 0)
				return usage_error("bench: --op must be get or put: %s", v);
			op = v;
			break;
		case 's':
			if (v[0] == '-' || config_parse_size(v, &size) < 0 || size > SIZE_MAX / 2)
				return usage_error("bench: bad --size: %s", v);
			have_size = true;
			break;
		case 'n':
			if (parse_u64(v, &count) < 0 || count < 1 || count > UINT64_MAX / 64)
				return usage_error("bench: bad --count: %s", v);
			have_count = true;
			break;
		case 't':
			if (parse_u64(v, &threads) < 0 || threads < 1 ||
			    threads > BENCH_MAX_THREADS)
				return usage_error("bench: bad --threads (1..%d): %s",
						   BENCH_MAX_THREADS, v);
			break;
		case 'k':
			if (parse_u64(v, &nkeys) < 0 || nkeys < 1 || nkeys > 100000000)
				return usage_error("bench: bad --keys: %s", v);
			have_keys = true;
			break;
		case 'j':
			json = true;
			break;
		case 'p':
			prefix = v;
			break;
		case 'c':
			b.copy = true;
			break;
		}
	}
	if (c->npos > 0)
		return usage_error("bench: unexpected argument: %s", c->pos[0]);
	if (!op || !have_size || !have_count)
		return usage_error("bench: --op, --size and --count are required");
	if (!have_keys)
		nkeys = count < 1000 ? count : 1000;
	if (threads > count)
		threads = count; /* every thread does at least one op */

	b.put = strcmp(op, "put") == 0;
	b.size = (size_t)size;
	b.nkeys = nkeys;
	atomic_init(&b.stop, 0);
	pthread_mutex_init(&b.lock, NULL);
	pthread_cond_init(&b.cond, NULL);
	lock_init = true;

	/* Keys and the value pattern. */
	b.keys = calloc(nkeys, sizeof(*b.keys));
	pattern = malloc(b.size ? b.size : 1);
	th = calloc(threads, sizeof(*th));
	if (!b.keys || !pattern || !th) {
		fail("bench: %s", strerror(ENOMEM));
		goto out;
	}
	for (uint64_t k = 0; k < nkeys; k++) {
		size_t len = strlen(prefix) + 24;

		b.keys[k] = malloc(len);
		if (!b.keys[k]) {
			fail("bench: %s", strerror(ENOMEM));
			goto out;
		}
		snprintf(b.keys[k], len, "%s%08" PRIu64, prefix, k);
	}
	fill_pattern(pattern, b.size);
	b.pattern = pattern;

	if (ctl_open(c) < 0)
		goto out;
	b.kv = c->kv;

	/* Set-up for get: every key holds its value. */
	if (!b.put) {
		vbuf = malloc(b.size ? b.size : 1);
		if (!vbuf) {
			fail("bench: %s", strerror(ENOMEM));
			goto out;
		}
		memcpy(vbuf, pattern, b.size);
		for (uint64_t k = 0; k < nkeys; k++) {
			set_header(vbuf, b.size, k);
			rc = kvfs_put(c->kv, b.keys[k], vbuf, b.size, NULL);
			if (rc < 0) {
				fail("bench: set-up put %s: %s", b.keys[k], kvfs_strerror(rc));
				goto out;
			}
		}
	}

	for (uint64_t i = 0; i < threads; i++) {
		struct bthread *t = &th[i];

		t->b = &b;
		t->nops = count / threads + (i < count % threads ? 1 : 0);
		t->nwarm = t->nops / 10 < 100 ? t->nops / 10 : 100;
		t->next_key = i * nkeys / threads;
		t->lat = malloc(t->nops * sizeof(*t->lat));
		if (!t->lat) {
			fail("bench: %s", strerror(ENOMEM));
			goto out;
		}
	}
	for (uint64_t i = 0; i < threads; i++) {
		rc = pthread_create(&th[i].tid, NULL, bench_thread, &th[i]);
		if (rc != 0) {
			bench_fail(&b, "bench: start thread: %s", strerror(rc));
			break;
		}
		created++;
	}
	/* Start the timed phase when every thread is past set-up and warm-up. */
	pthread_mutex_lock(&b.lock);
	while (b.ready < created)
		pthread_cond_wait(&b.cond, &b.lock);
	b.go = true;
	pthread_cond_broadcast(&b.cond);
	pthread_mutex_unlock(&b.lock);
	for (int i = 0; i < created; i++)
		pthread_join(th[i].tid, NULL);
	if (b.failed) {
		fail("%s", b.errmsg);
		goto out;
	}

	/* Put: read back the first key thread 0 wrote. */
	if (b.put) {
		uint64_t k = 0;
		ssize_t n;
		size_t bad;

		vbuf = malloc(b.size ? b.size : 1);
		if (!vbuf) {
			fail("bench: %s", strerror(ENOMEM));
			goto out;
		}
		n = kvfs_get(c->kv, b.keys[k], vbuf, b.size, 0, NULL);
		if (n < 0) {
			fail("bench: verify get %s: %s", b.keys[k], kvfs_strerror((int)n));
			goto out;
		}
		if ((size_t)n != b.size) {
			fail("bench: verify get %s: returned %zd bytes, expected %zu", b.keys[k], n,
			     b.size);
			goto out;
		}
		bad = check_value(&b, vbuf, k);
		if (bad != b.size) {
			fail("bench: verify get %s: wrong data at byte %zu", b.keys[k], bad);
			goto out;
		}
	}

	/* Merge, sort, report. */
	{
		uint64_t t_first = UINT64_MAX, t_last = 0, pos = 0;
		struct lat_summary ls;

		for (uint64_t i = 0; i < threads; i++) {
			if (!th[i].ran) {
				fail("bench: thread %" PRIu64 " did not finish", i);
				goto out;
			}
			total += th[i].nops;
			if (th[i].t_start < t_first)
				t_first = th[i].t_start;
			if (th[i].t_end > t_last)
				t_last = th[i].t_end;
		}
		all = malloc(total * sizeof(*all));
		if (!all) {
			fail("bench: %s", strerror(ENOMEM));
			goto out;
		}
		for (uint64_t i = 0; i < threads; i++) {
			memcpy(all + pos, th[i].lat, th[i].nops * sizeof(*all));
			pos += th[i].nops;
		}
		lat_summarize(all, (size_t)total, &ls);
		lat_rates(&ls, b.size, t_first, t_last);
		if (json) {
			printf(
			    "{\"op\": \"%s\", \"size\": %zu, \"count\": %" PRIu64
			    ", \"threads\": %" PRIu64 ", \"p50_us\": %.3f, \"p99_us\": %.3f"
			    ", \"p999_us\": %.3f, \"ops_per_s\": %.1f, \"gbytes_per_s\": %.6f}\n",
			    op, b.size, total, threads, ls.p50_us, ls.p99_us, ls.p999_us,
			    ls.ops_per_s, ls.gbytes_per_s);
		} else {
			printf("op:          %s%s\n", op, b.copy ? " (copy)" : " (zero-copy)");
			printf("size:        %zu bytes\n", b.size);
			printf("count:       %" PRIu64 "\n", total);
			printf("threads:     %" PRIu64 "\n", threads);
			printf("keys:        %" PRIu64 "\n", nkeys);
			printf("p50:         %.3f us\n", ls.p50_us);
			printf("p99:         %.3f us\n", ls.p99_us);
			printf("p99.9:       %.3f us\n", ls.p999_us);
			printf("ops/s:       %.1f\n", ls.ops_per_s);
			printf("throughput:  %.6f GB/s\n", ls.gbytes_per_s);
		}
	}
	ret = 0;

out:
	if (th)
		for (uint64_t i = 0; i < threads; i++)
			free(th[i].lat);
	free(th);
	if (b.keys)
		for (uint64_t k = 0; k < nkeys; k++)
			free(b.keys[k]);
	free(b.keys);
	free(pattern);
	free(vbuf);
	free(all);
	if (lock_init) {
		pthread_mutex_destroy(&b.lock);
		pthread_cond_destroy(&b.cond);
	}
	return ret;
}

/* ------------------------------------------------------------------ */
/* main                                                               */
/* ------------------------------------------------------------------ */

static int cmd_help(struct ctl *c, int argc, char **argv)
{
	(void)c;
	(void)argc;
	(void)argv;
	usage(stdout);
	return 0;
}

static const struct command {
	const char *name;
	int (*fn)(struct ctl *c, int argc, char **argv);
} commands[] = {
    {"put", cmd_put},	  {"get", cmd_get},   {"rm", cmd_rm},	  {"ls", cmd_ls},
    {"stat", cmd_stat},	  {"mv", cmd_mv},     {"ping", cmd_ping}, {"stats", cmd_stats},
    {"bench", cmd_bench}, {"help", cmd_help},
};

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"config", required_argument, NULL, 'c'},
					   {"verbose", no_argument, NULL, 'v'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	struct ctl c;
	const struct command *cmd = NULL;
	int o, verbose = 0, ret;

	memset(&c, 0, sizeof(c));
	log_set_ident("kvfsctl");
	install_signals();

	opterr = 0;
	while ((o = getopt_long(argc, argv, "+:c:vh", lo, NULL)) != -1) {
		switch (o) {
		case 'c':
			c.conf_arg = optarg;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			return usage_error("option requires an argument: %s", argv[optind - 1]);
		default:
			if (optopt > 0 && optopt < 128 && optopt != '?')
				return usage_error("unknown option: -%c", optopt);
			return usage_error("unknown option: %s", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("missing COMMAND");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[optind], commands[i].name) == 0)
			cmd = &commands[i];
	if (!cmd)
		return usage_error("unknown command: %s", argv[optind]);
	if (verbose == 1)
		log_set_level(LOG_LVL_INFO);
	else if (verbose > 1)
		log_set_level(LOG_LVL_DEBUG);

	c.pos = calloc((size_t)argc + 1, sizeof(*c.pos));
	c.opt = calloc((size_t)argc + 1, sizeof(*c.opt));
	c.optval = calloc((size_t)argc + 1, sizeof(*c.optval));
	if (!c.pos || !c.opt || !c.optval) {
		fail("%s", strerror(ENOMEM));
		ret = EXIT_FAIL;
	} else {
		ret = cmd->fn(&c, argc - optind, argv + optind);
	}
	if (c.kv)
		kvfs_close(c.kv);
	if (c.cfg)
		kvfs_config_free(c.cfg);
	free(c.pos);
	free(c.opt);
	free(c.optval);

	/* Output that never reached stdout is a failure. */
	errno = 0;
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (ret == 0)
			fail("stdout: %s", errno ? strerror(errno) : "write error");
		ret = ret ? ret : EXIT_FAIL;
	}
	return ret;
}
