/*
 * kvfsctl: what its command families share (private header).
 *
 * main.c parses the global options and dispatches to a cmd_* of kv.c,
 * list.c, admin.c, bench.c, batch.c, top.c or (no command) interactive.c. Each command parses its
 * own arguments with parse_args first (usage errors exit 2 before anything is opened), then opens
 * the cluster with ctl_open. Failures print exactly one line "kvfsctl: CONTEXT: reason" on stderr
 * (fail) and exit 1.
 */
#ifndef KVFS_TOOLS_KVFSCTL_H
#define KVFS_TOOLS_KVFSCTL_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "kvfs/kvfs.h"

#define MIB (1024ull * 1024ull)

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

/* main.c: messages, arguments, opening the cluster */

/* One line "kvfsctl: ..." on stderr; newlines in keys are flattened. */
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The message and the usage on stderr; returns EXIT_USAGE. */
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * getopt_long over a command's argv (argv[0] = command name). Positionals go
 * to c->pos in order, options to c->opt/c->optval. "--" ends options.
 * Returns PARSE_OK, or the exit code to return at once (help / usage error).
 */
int parse_args(struct ctl *c, int argc, char **argv, const char *shortopts,
	       const struct option *longopts);
/* A decimal without sign or suffix; 0 or -EINVAL. */
int parse_u64(const char *s, uint64_t *out);
/* Load the configuration and open the cluster; 0 or -1 (reported). */
int ctl_open(struct ctl *c);
/*
 * ctl_open with kvfs_open_config_flags flags: the one-shot commands (get,
 * put, rm, stat, mv, ping) open with KVFS_OPEN_LAZY_FABRIC, so small values
 * go over the TCP bootstrap channel without any libfabric set-up.
 */
int ctl_open_flags(struct ctl *c, unsigned flags);
/* Name of server idx, "?" if none. */
const char *srv_name(struct ctl *c, int idx);

/* format.c: times, modes, owners, sizes and JSON strings as the commands print them */

/* A byte count for people: "1000 B", "64 MiB", "1.5 GiB". */
void fmt_bytes(uint64_t n, char *buf, size_t len);

/* Split nanoseconds since the epoch into seconds and nanoseconds (floor). */
void split_ns(int64_t ns, time_t *sec, long *nsec);
/* "YYYY-MM-DD HH:MM" in local time (sep between date and time). */
void fmt_minutes(time_t t, char sep, char *buf, size_t len);
/* ISO 8601 local time, with nanoseconds when ns >= 0: 2024-05-01T12:00:00.123456789+02:00 */
void fmt_iso(time_t t, long ns, char *buf, size_t len);
/* A stored uid or gid, or "-" when the writer stored none (KVFS_ID_UNSET). */
const char *fmt_id(uint32_t id, char buf[12]);
/* Mode as ls prints it: -rw-r--r-- */
void fmt_mode(uint32_t m, char s[11]);
void json_str(FILE *f, const char *s);

/* progress.c: the progress bar of long transfers, and signal cleanup */

struct progress {
	bool tty;
	uint64_t total; /* 0 = unknown (stream) */
	uint64_t t0, last;
};

/* Fatal signals remove the temporary file and the progress line; SIGPIPE is ignored. */
void install_signals(void);
void progress_start(struct progress *p, uint64_t total);
void progress_update(struct progress *p, uint64_t done);
void progress_end(struct progress *p);
/*
 * Create the temporary file ".NAME.kvfsctl-XXXXXX" next to file; a fatal
 * signal removes it until tmp_release. Returns its fd (*path = its name,
 * valid until the next tmp_create) or -errno.
 */
int tmp_create(const char *file, const char **path);
void tmp_release(void);

/* batch.c: the command lines of batch and interactive mode (kvfsctl(1), BATCH) */

struct session {
	struct ctl *c;	    /* opened */
	FILE *out;	    /* where the result lines go */
	unsigned char *buf; /* get's buffer, grown to the largest value read */
	size_t cap;
};

/* The commands session_line runs, for messages: "put KEY VALUE | get KEY | ...". */
extern const char session_commands[];
/* A session on c (opened) printing to out; 0 or -1 (reported). */
int session_init(struct session *s, struct ctl *c, FILE *out);
void session_free(struct session *s);
/*
 * Run one command line of len bytes (without its newline; modified in
 * place) and print its one result line, OK / "VALUE" / attributes / ERR
 * ERRNAME message; blank and '#' lines print nothing. True unless it failed.
 */
bool session_line(struct session *s, char *line, size_t len);

/* The commands: argv[0] is the command name; each returns the exit code. */
int cmd_put(struct ctl *c, int argc, char **argv);   /* kv.c */
int cmd_get(struct ctl *c, int argc, char **argv);   /* kv.c */
int cmd_rm(struct ctl *c, int argc, char **argv);    /* kv.c */
int cmd_stat(struct ctl *c, int argc, char **argv);  /* kv.c */
int cmd_mv(struct ctl *c, int argc, char **argv);    /* kv.c */
int cmd_ls(struct ctl *c, int argc, char **argv);    /* list.c */
int cmd_ping(struct ctl *c, int argc, char **argv);  /* admin.c */
int cmd_stats(struct ctl *c, int argc, char **argv); /* admin.c */
int cmd_bench(struct ctl *c, int argc, char **argv); /* bench.c */
int cmd_batch(struct ctl *c, int argc, char **argv); /* batch.c */
int cmd_top(struct ctl *c, int argc, char **argv);   /* top.c */
/* interactive.c: no command, stdin a terminal: prompt, line editing, history */
int cmd_interactive(struct ctl *c);

#endif
