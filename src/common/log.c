/* log: see log.h. Lines are written with one write() so threads don't interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static enum log_level max_level = LOG_LVL_WARN;
static const char *ident = "kvfs";
static log_sink_fn sink;
static void *sink_arg;

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

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *names[] = {"error", "warning", "info", "debug"};
	log_sink_fn fn = sink;
	char line[1024];
	va_list ap;
	int n = 0;

	if (lvl > max_level)
		return;
	if (!fn)
		n = snprintf(line, sizeof(line), "%s: %s: ", ident, names[lvl]);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
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

void log_forward(void *arg, int level, const char *msg)
{
	(void)arg;
	if (level < LOG_LVL_ERROR || level > LOG_LVL_DEBUG)
		level = LOG_LVL_ERROR;
	log_msg((enum log_level)level, "%s", msg);
}
