/* log: see log.h. Lines are written with one write() so threads don't interleave. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static enum log_level max_level = LOG_LVL_WARN;
static const char *ident = "kvfs";
static log_sink_fn sink;
static void *sink_arg;
static int journal = -1; /* stderr is journald's stream: -1 not looked yet, 0, 1 */
static pthread_once_t journal_once = PTHREAD_ONCE_INIT;

void log_set_level(enum log_level lvl)
{
	max_level = lvl;
}

void log_set_ident(const char *id)
{
	ident = id;
}

void log_set_sink(log_sink_fn fn, void *arg)
{
	sink = fn;
	sink_arg = arg;
}

int log_is_journal_stream(const char *js, int fd)
{
	struct stat st;
	char *end;
	if (!js || !*js)
		return 0;
	errno = 0;
	unsigned long long dev = strtoull(js, &end, 10);
	if (end == js || *end != ':' || errno)
		return 0;
	const char *p = end + 1;
	unsigned long long ino = strtoull(p, &end, 10);
	if (end == p || *end || errno)
		return 0;
	if (fstat(fd, &st))
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

int log_detect_journal(void)
{
	journal = log_is_journal_stream(getenv("JOURNAL_STREAM"), STDERR_FILENO);
	return journal;
}

static void detect_once(void)
{
	log_detect_journal();
}

const char *log_priority_prefix(enum log_level lvl)
{
	/* syslog's LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */
	static const char *prio[] = {"<3>", "<4>", "<6>", "<7>"};
	return prio[lvl <= LOG_LVL_DEBUG ? lvl : LOG_LVL_ERROR];
}

/* notice: log_notice's line (no level name on a terminal, "<5>" in the journal). */
static void vlog_line(enum log_level lvl, int notice, const char *fmt, va_list ap)
{
	static const char *names[] = {"error", "warning", "info", "debug"};
	log_sink_fn fn = sink;
	char line[1024];
	int n = 0;

	if (!fn) {
		if (journal < 0)
			pthread_once(&journal_once, detect_once);
		if (journal > 0)
			n = snprintf(line, sizeof(line), "%s",
				     notice ? "<5>" : log_priority_prefix(lvl));
		else if (notice)
			n = snprintf(line, sizeof(line), "%s: ", ident);
		else
			n = snprintf(line, sizeof(line), "%s: %s: ", ident, names[lvl]);
	}
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	if (fn) {
		line[n] = '\0';
		fn(sink_arg, (int)lvl, line);
		return;
	}
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}

static void vlog(enum log_level lvl, const char *fmt, va_list ap)
{
	vlog_line(lvl, 0, fmt, ap);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;
	if (lvl > max_level)
		return;
	va_start(ap, fmt);
	vlog(lvl, fmt, ap);
	va_end(ap);
}

void log_notice(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog_line(LOG_LVL_INFO, 1, fmt, ap);
	va_end(ap);
}

void log_forward(void *arg, int level, const char *msg)
{
	(void)arg;
	if (level < LOG_LVL_ERROR || level > LOG_LVL_DEBUG)
		level = LOG_LVL_ERROR;
	log_msg((enum log_level)level, "%s", msg);
}

/* ---- rate limiting ------------------------------------------------------ */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void log_rl_init(struct log_rl *rl, unsigned burst, unsigned interval_ms)
{
	*rl = (struct log_rl){.burst = burst, .interval_ms = interval_ms};
	pthread_mutex_init(&rl->lock, NULL);
}

void log_rl_destroy(struct log_rl *rl)
{
	pthread_mutex_destroy(&rl->lock);
}

int log_rl_check(struct log_rl *rl, int64_t now_ms, unsigned *report)
{
	int ok;
	pthread_mutex_lock(&rl->lock);
	*report = 0;
	if (rl->window_start == 0 || now_ms - rl->window_start >= (int64_t)rl->interval_ms ||
	    now_ms < rl->window_start) {
		*report = rl->suppressed;
		rl->window_start = now_ms ? now_ms : 1;
		rl->printed = 0;
		rl->suppressed = 0;
	}
	ok = rl->printed < rl->burst;
	if (ok)
		rl->printed++;
	else
		rl->suppressed++;
	pthread_mutex_unlock(&rl->lock);
	return ok;
}

static void report_suppressed(enum log_level lvl, unsigned n)
{
	log_msg(lvl, "suppressed %u similar message%s", n, n == 1 ? "" : "s");
}

void log_ratelimited(struct log_rl *rl, enum log_level lvl, const char *fmt, ...)
{
	unsigned report;
	va_list ap;
	if (lvl > max_level)
		return;
	int ok = log_rl_check(rl, mono_ms(), &report);
	if (report) /* the lines of one limiter are alike: this one's level will do */
		report_suppressed(lvl, report);
	if (!ok) {
		pthread_mutex_lock(&rl->lock);
		rl->sup_level = lvl;
		pthread_mutex_unlock(&rl->lock);
		return;
	}
	va_start(ap, fmt);
	vlog(lvl, fmt, ap);
	va_end(ap);
}

void log_rl_flush(struct log_rl *rl)
{
	pthread_mutex_lock(&rl->lock);
	unsigned n = rl->suppressed;
	enum log_level lvl = rl->sup_level;
	rl->suppressed = 0;
	pthread_mutex_unlock(&rl->lock);
	if (n)
		report_suppressed(lvl, n);
}
