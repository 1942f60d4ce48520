/*
 * log: one-line diagnostics to stderr, with a level filter set once at
 * start. When stderr is a journald stream (JOURNAL_STREAM names stderr's
 * device and inode, see sd-daemon(3)), each line starts with its priority
 * ("<3>" error, "<4>" warning, "<6>" info, "<7>" debug) so the journal keeps
 * it; otherwise lines read "ident: level: text". A sink set with
 * log_set_sink receives each line that passes the filter instead, without
 * either prefix (libkvfs's kvfs_set_log is one).
 *
 * Lines a peer can cause go through a rate limiter (struct log_rl): at most
 * `burst` lines per `interval_ms`, then one "suppressed N similar messages"
 * line when the next window opens (or at log_rl_flush).
 */
#ifndef KVFS_LOG_H
#define KVFS_LOG_H

#include <pthread.h>
#include <stdint.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* A log line's receiver: level is an enum log_level, msg has no newline. */
typedef void (*log_sink_fn)(void *arg, int level, const char *msg);

void log_set_level(enum log_level lvl);
void log_set_ident(const char *ident);
/* NULL = stderr again. Set at start, before other threads log. */
void log_set_sink(log_sink_fn fn, void *arg);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * A line shown at every log level (a server's "listening on ..."): "ident:
 * text" on stderr, or with the notice priority "<5>" when stderr is the
 * journal; to the sink as an info line.
 */
void log_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * A sink that logs the line as this program's own (for kvfs_set_log, whose
 * lines come from libkvfs's copy of this module; never this copy's own sink).
 */
void log_forward(void *arg, int level, const char *msg);

/*
 * 1 if `journal_stream` (JOURNAL_STREAM's value, "DEV:INO") names the file
 * open on fd, else 0 (NULL, malformed, or another file).
 */
int log_is_journal_stream(const char *journal_stream, int fd);
/*
 * Look again whether stderr is the journal (done once by itself at the first
 * line; call it after redirecting stderr). Returns the answer.
 */
int log_detect_journal(void);
/* The sd-daemon priority prefix of a level: "<3>", "<4>", "<6>" or "<7>". */
const char *log_priority_prefix(enum log_level lvl);

/* A rate limiter for one kind of line (one peer's, or one call site's). */
struct log_rl {
	pthread_mutex_t lock;
	unsigned burst;		  /* lines allowed per window */
	unsigned interval_ms;	  /* the window */
	int64_t window_start;	  /* lock: ms, monotonic; 0 = no window yet */
	unsigned printed;	  /* lock: lines let through in this window */
	unsigned suppressed;	  /* lock: lines held back in this window */
	enum log_level sup_level; /* lock: the level of the last held-back line */
};
#define LOG_RL_INIT(burst_, interval_ms_)                                                          \
	{                                                                                          \
		.lock = PTHREAD_MUTEX_INITIALIZER, .burst = (burst_),                              \
		.interval_ms = (interval_ms_)                                                      \
	}
/* Defaults for lines a peer causes: 10 lines per 5 s. */
#define LOG_RL_BURST	   10
#define LOG_RL_INTERVAL_MS 5000

void log_rl_init(struct log_rl *rl, unsigned burst, unsigned interval_ms);
void log_rl_destroy(struct log_rl *rl);
/*
 * The decision, at time now_ms: 1 = print this line, 0 = hold it back.
 * *report is set to the number of lines held back in the window that just
 * closed (to be reported before this line), else 0.
 */
int log_rl_check(struct log_rl *rl, int64_t now_ms, unsigned *report);
/* log_msg through rl: lines over the limit are counted instead of printed. */
void log_ratelimited(struct log_rl *rl, enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Report the lines held back so far, if any (e.g. when the peer goes away). */
void log_rl_flush(struct log_rl *rl);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
