/* log: see log.h. Lines are written with one write() so threads don't interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static enum log_level max_level = LOG_LVL_WARN;
static const char *ident = "kvfs";

void log_set_level(enum log_level lvl)
{
	max_level = lvl;
}

void log_set_ident(const char *id)
{
	ident = id;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *names[] = {"error", "warning", "info", "debug"};
	char line[1024];
	va_list ap;

	if (lvl > max_level)
		return;
	int n = snprintf(line, sizeof(line), "%s: %s: ", ident, names[lvl]);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}
