/*
 * kvfsctl progress: the progress bar of transfers above PROGRESS_MIN when
 * stderr is a TTY (at most 10 updates a second), and the cleanup a fatal
 * signal does: remove get's temporary output file, erase the progress line,
 * then die of the signal.
 */

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/kvfsctl/kvfsctl.h"
#include "tools/latency.h"

#define PROGRESS_MIN (64 * MIB) /* transfers above this get a progress bar on a TTY */

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

void install_signals(void)
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

int tmp_create(const char *file, const char **path)
{
	const char *slash = strrchr(file, '/');
	int dirlen = slash ? (int)(slash - file + 1) : 0;
	int n = snprintf(cleanup_path, sizeof(cleanup_path), "%.*s.%s.kvfsctl-XXXXXX", dirlen, file,
			 slash ? slash + 1 : file);
	int fd;

	if (n < 0 || (size_t)n >= sizeof(cleanup_path))
		return -ENAMETOOLONG;
	fd = mkstemp(cleanup_path);
	if (fd < 0)
		return -errno;
	cleanup_active = 1;
	*path = cleanup_path;
	return fd;
}

void tmp_release(void)
{
	cleanup_active = 0;
}

void progress_start(struct progress *p, uint64_t total)
{
	p->tty = isatty(STDERR_FILENO) == 1;
	p->total = total;
	p->t0 = lat_now_ns();
	p->last = 0;
}

void progress_update(struct progress *p, uint64_t done)
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

void progress_end(struct progress *p)
{
	(void)p;
	if (progress_shown) {
		fputs("\r\033[K", stderr);
		progress_shown = 0;
	}
}
