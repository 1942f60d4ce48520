/*
 * kvfsctl batch: many commands in one session, one result line each.
 *
 * `kvfsctl batch [FILE|-]` reads lines (see kvfsctl(1), "BATCH"): words
 * separated by blanks, each optionally in double quotes, with the C escapes
 * \n \t \r \0 \\ \" \xHH and "\ " anywhere. Commands: put KEY VALUE, get
 * KEY, rm KEY, stat KEY, ping. Every command prints exactly one line: OK
 * (put, rm, ping with the round trips), "VALUE" (get: the value quoted and
 * escaped the same way), the attributes (stat), or ERR ERRNAME message.
 * Blank lines and lines starting with '#' print nothing. The cluster is
 * opened once; stdout is fully buffered (flushed per line on a terminal).
 *
 * The parser and executor (session_line) are shared with the interactive
 * mode (interactive.c): both loops feed it one line at a time.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvfs/kvfs.h"
#include "tools/kvfsctl/kvfsctl.h"

#define MAX_WORDS 4

struct word {
	char *s; /* NUL-terminated; may hold NULs (len counts them) */
	size_t len;
};

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * Split line (modified in place: words are decoded into it) into at most
 * MAX_WORDS words. Returns the count, or -1 with *err set.
 */
static int split_line(char *line, struct word *w, const char **err)
{
	char *p = line, *out;
	int n = 0;

	for (;;) {
		bool quoted = false;

		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			return n;
		if (n == MAX_WORDS) {
			*err = "too many words";
			return -1;
		}
		out = p;
		w[n].s = out;
		if (*p == '"') {
			quoted = true;
			p++;
		}
		for (;;) {
			int ch = (unsigned char)*p;

			if (!ch) {
				if (quoted) {
					*err = "unterminated quote";
					return -1;
				}
				break;
			}
			if (quoted && ch == '"') {
				p++;
				if (*p && *p != ' ' && *p != '\t') {
					*err = "text after a closing quote";
					return -1;
				}
				break;
			}
			if (!quoted && (ch == ' ' || ch == '\t'))
				break;
			if (!quoted && ch == '"') {
				*err = "quote inside a word";
				return -1;
			}
			p++;
			if (ch != '\\') {
				*out++ = (char)ch;
				continue;
			}
			ch = (unsigned char)*p++;
			switch (ch) {
			case 'n':
				*out++ = '\n';
				break;
			case 't':
				*out++ = '\t';
				break;
			case 'r':
				*out++ = '\r';
				break;
			case '0':
				*out++ = '\0';
				break;
			case '\\':
			case '"':
			case ' ':
			case '\'':
				*out++ = (char)ch;
				break;
			case 'x': {
				int hi = hexval((unsigned char)p[0]);
				int lo = hi < 0 ? -1 : hexval((unsigned char)p[1]);

				if (lo < 0) {
					*err = "\\x needs two hex digits";
					return -1;
				}
				*out++ = (char)(hi * 16 + lo);
				p += 2;
				break;
			}
			default:
				*err = ch ? "unknown escape" : "backslash at end of line";
				return -1;
			}
		}
		w[n].len = (size_t)(out - w[n].s);
		/* out never passes p, so the terminator overwrites only consumed text */
		if (*p)
			p++;
		*out = '\0';
		n++;
	}
}

/* The value quoted and escaped so split_line reads it back as one word. */
static void put_escaped(FILE *f, const unsigned char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	putc('"', f);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = s[i];

		if (ch == '"' || ch == '\\') {
			putc('\\', f);
			putc(ch, f);
		} else if (ch == '\n') {
			fputs("\\n", f);
		} else if (ch == '\t') {
			fputs("\\t", f);
		} else if (ch < 0x20 || ch >= 0x7f) {
			putc('\\', f);
			putc('x', f);
			putc(hex[ch >> 4], f);
			putc(hex[ch & 15], f);
		} else {
			putc(ch, f);
		}
	}
	fputs("\"\n", f);
}

static void put_err(FILE *f, int err, const char *msg)
{
	const char *name = strerrorname_np(err < 0 ? -err : err);

	fprintf(f, "ERR %s %s\n", name ? name : "EIO", msg);
}

static bool key_ok(struct session *s, const struct word *k)
{
	if (strlen(k->s) != k->len) {
		put_err(s->out, EINVAL, "key contains a NUL byte");
		return false;
	}
	return true;
}

static bool do_get(struct session *s, const char *key)
{
	struct kvfs_attr a;

	for (int attempt = 0; attempt < 3; attempt++) {
		ssize_t n = kvfs_get(s->c->kv, key, s->buf, s->cap, 0, &a);

		if (n == -EAGAIN)
			continue;
		if (n < 0) {
			put_err(s->out, (int)n, kvfs_strerror((int)n));
			return false;
		}
		if (a.size <= s->cap) {
			put_escaped(s->out, s->buf, (size_t)n);
			return true;
		}
		/* Larger than the buffer: grow to the value and read again. */
		unsigned char *nb = realloc(s->buf, (size_t)a.size);

		if (!nb) {
			put_err(s->out, ENOMEM, strerror(ENOMEM));
			return false;
		}
		s->buf = nb;
		s->cap = (size_t)a.size;
	}
	put_err(s->out, EAGAIN, "value changed during get");
	return false;
}

static bool do_stat(struct session *s, const char *key)
{
	struct kvfs_attr a;
	int rc = kvfs_stat(s->c->kv, key, &a);
	int srv;

	if (rc < 0) {
		put_err(s->out, rc, kvfs_strerror(rc));
		return false;
	}
	srv = kvfs_server_of(s->c->kv, key);
	fprintf(s->out,
		"size=%" PRIu64 " version=%" PRIu64 " mode=0%o mtime_ns=%" PRId64
		" atime_ns=%" PRId64 " ctime_ns=%" PRId64 " expiry=%" PRId64 " server=%s\n",
		a.size, a.version, (unsigned)(a.mode & ~KVFS_MODE_UNSET), a.mtime_ns, a.atime_ns,
		a.ctime_ns, a.expiry, srv >= 0 ? srv_name(s->c, srv) : "?");
	return true;
}

static bool do_ping(struct session *s)
{
	int n = kvfs_server_count(s->c->kv);
	char line[4096] = "";
	size_t len = 0;

	for (int i = 0; i < n; i++) {
		uint64_t rtt = 0;
		int rc = kvfs_ping(s->c->kv, i, &rtt);

		if (rc < 0) {
			snprintf(line, sizeof(line), "ping %s: %s", srv_name(s->c, i),
				 kvfs_strerror(rc));
			put_err(s->out, rc, line);
			return false;
		}
		if (len < sizeof(line))
			len += (size_t)snprintf(line + len, sizeof(line) - len, " %s=%.1fus",
						srv_name(s->c, i), (double)rtt / 1e3);
	}
	fprintf(s->out, "OK%s\n", n > 0 ? line : "");
	return true;
}

const char session_commands[] = "put KEY VALUE | get KEY | rm KEY | stat KEY | ping";

int session_init(struct session *s, struct ctl *c, FILE *out)
{
	s->c = c;
	s->out = out;
	s->cap = 64 * 1024;
	s->buf = malloc(s->cap);
	if (!s->buf) {
		fail("%s", strerror(ENOMEM));
		return -1;
	}
	return 0;
}

void session_free(struct session *s)
{
	free(s->buf);
	s->buf = NULL;
}

/* One line without its raw NULs checked; true when it succeeded (or printed nothing). */
static bool run_line(struct session *s, char *line)
{
	struct word w[MAX_WORDS];
	const char *err = NULL, *cmd;
	int n, rc;

	while (*line == ' ' || *line == '\t')
		line++;
	if (!*line || *line == '#')
		return true;
	n = split_line(line, w, &err);
	if (n < 0) {
		put_err(s->out, EINVAL, err);
		return false;
	}
	cmd = w[0].s;
	if (strcmp(cmd, "put") == 0 && n == 3) {
		if (!key_ok(s, &w[1]))
			return false;
		rc = kvfs_put(s->c->kv, w[1].s, w[2].s, w[2].len, NULL);
		if (rc < 0) {
			put_err(s->out, rc, kvfs_strerror(rc));
			return false;
		}
		fputs("OK\n", s->out);
		return true;
	}
	if ((strcmp(cmd, "get") == 0 || strcmp(cmd, "rm") == 0 || strcmp(cmd, "stat") == 0) &&
	    n == 2) {
		if (!key_ok(s, &w[1]))
			return false;
		if (cmd[0] == 'g')
			return do_get(s, w[1].s);
		if (cmd[0] == 's')
			return do_stat(s, w[1].s);
		{
			rc = kvfs_delete(s->c->kv, w[1].s);
			if (rc < 0) {
				put_err(s->out, rc, kvfs_strerror(rc));
				return false;
			}
			fputs("OK\n", s->out);
			return true;
		}
	}
	if (strcmp(cmd, "ping") == 0 && n == 1)
		return do_ping(s);
	{
		char msg[128];

		snprintf(msg, sizeof(msg), "expected: %s", session_commands);
		put_err(s->out, EINVAL, msg);
	}
	return false;
}

bool session_line(struct session *s, char *line, size_t len)
{
	if (len != strlen(line)) {
		put_err(s->out, EINVAL, "raw NUL byte in line (use \\0)");
		return false;
	}
	return run_line(s, line);
}

int cmd_batch(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct session s;
	const char *file;
	FILE *in;
	char *line = NULL;
	size_t lcap = 0;
	ssize_t len;
	bool tty, any_failed = false;
	int rc;

	rc = parse_args(c, argc, argv, "", lo);
	if (rc != PARSE_OK)
		return rc;
	if (c->npos > 1)
		return usage_error("batch: expected [FILE|-]");
	file = c->npos ? c->pos[0] : "-";
	if (strcmp(file, "-") == 0) {
		in = stdin;
	} else {
		in = fopen(file, "r");
		if (!in) {
			fail("%s: %s", file, strerror(errno));
			return EXIT_FAIL;
		}
	}
	/* Lazy: short batches never set up the fabric; long ones upgrade (libkvfs) */
	if (ctl_open_flags(c, KVFS_OPEN_LAZY_FABRIC) < 0) {
		if (in != stdin)
			fclose(in);
		return EXIT_FAIL;
	}
	tty = isatty(STDOUT_FILENO);
	if (!tty)
		setvbuf(stdout, NULL, _IOFBF, 1 << 20);
	if (session_init(&s, c, stdout) < 0) {
		if (in != stdin)
			fclose(in);
		return EXIT_FAIL;
	}
	while ((len = getline(&line, &lcap, in)) > 0) {
		if (line[len - 1] == '\n')
			line[--len] = '\0';
		if (len > 0 && line[len - 1] == '\r')
			line[--len] = '\0';
		if (!session_line(&s, line, (size_t)len))
			any_failed = true;
		if (tty)
			fflush(stdout);
	}
	if (ferror(in)) {
		fail("%s: %s", file, strerror(errno));
		any_failed = true;
	}
	free(line);
	session_free(&s);
	if (in != stdin)
		fclose(in);
	return any_failed ? EXIT_FAIL : 0;
}
