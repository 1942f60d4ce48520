/*
 * log: one-line diagnostics to stderr (or syslog-friendly stderr under
 * systemd), with a level filter set once at start. A sink set with
 * log_set_sink receives each line that passes the filter instead, without
 * the "ident: level: " prefix (libkvfs's kvfs_set_log is one).
 */
#ifndef KVFS_LOG_H
#define KVFS_LOG_H

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* A log line's receiver: level is an enum log_level, msg has no newline. */
typedef void (*log_sink_fn)(void *arg, int level, const char *msg);

void log_set_level(enum log_level lvl);
void log_set_ident(const char *ident);
/* NULL = stderr again. Set at start, before other threads log. */
void log_set_sink(log_sink_fn fn, void *arg);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * A sink that logs the line as this program's own (for kvfs_set_log, whose
 * lines come from libkvfs's copy of this module; never this copy's own sink).
 */
void log_forward(void *arg, int level, const char *msg);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
