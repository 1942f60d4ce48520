/*
 * kvfsctl top: per-server rates, refreshed, like `redis-cli --stat`.
 *
 * Every --interval seconds (default 1) it asks each server for its counters
 * (kvfs_server_stats) and prints one line per server: keys, pool used, and
 * per second over the interval gets, hits, misses, puts, deletes and bytes
 * in and out. The column header repeats every 20 refreshes. --count N stops
 * after N refreshes; otherwise it runs until interrupted. A server that
 * cannot be asked gets an error line (and its rates start over); the exit
 * status is then 1.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvfs/kvfs.h"
#include "tools/kvfsctl/kvfsctl.h"

#define HEADER_EVERY 20

struct sample {
	struct kvfs_stats st;
	int rc; /* of kvfs_server_stats: 0 or -errno */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Per second; a counter that went back (the server restarted) counts from 0. */
static double rate(uint64_t cur, uint64_t prev, double secs)
{
	return (double)(cur >= prev ? cur - prev : cur) / secs;
}

static void sample_all(struct ctl *c, struct sample *s, int n)
{
	for (int i = 0; i < n; i++)
		s[i].rc = kvfs_server_stats(c->kv, i, &s[i].st);
}

static void print_line(struct ctl *c, int i, int w, const struct sample *cur,
		       const struct sample *prev, double secs, int *err)
{
	const struct kvfs_stats *a = &cur->st, *b = &prev->st;
	char used[32], in[32], out[32];

	if (cur->rc < 0) {
		printf("%-*s  error: %s\n", w, srv_name(c, i), kvfs_strerror(cur->rc));
		*err = cur->rc;
		return;
	}
	fmt_bytes(a->pool_used, used, sizeof(used));
	if (prev->rc < 0) { /* no rates before two good samples */
		printf("%-*s  %10" PRIu64 "  %10s  %8s\n", w, srv_name(c, i), a->keys, used,
		       "(rates next time)");
		return;
	}
	fmt_bytes((uint64_t)rate(a->bytes_in, b->bytes_in, secs), in, sizeof(in));
	fmt_bytes((uint64_t)rate(a->bytes_out, b->bytes_out, secs), out, sizeof(out));
	printf("%-*s  %10" PRIu64 "  %10s  %8.0f  %8.0f  %8.0f  %8.0f  %8.0f  %10s  %10s\n", w,
	       srv_name(c, i), a->keys, used, rate(a->gets, b->gets, secs),
	       rate(a->hits, b->hits, secs), rate(a->misses, b->misses, secs),
	       rate(a->puts, b->puts, secs), rate(a->deletes, b->deletes, secs), in, out);
}

int cmd_top(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {{"interval", required_argument, NULL, 'i'},
					   {"count", required_argument, NULL, 'n'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	struct sample *cur, *prev, *t;
	double interval = 1, t_prev, t_next;
	uint64_t count = 0; /* 0: until interrupted */
	int rc, n, w = 6, last_err = 0, last_idx = 0;

	rc = parse_args(c, argc, argv, "", lo);
	if (rc != PARSE_OK)
		return rc;
	for (int i = 0; i < c->nopt; i++) {
		const char *v = c->optval[i];
		char *end;

		if (c->opt[i] == 'i') {
			errno = 0;
			interval = strtod(v, &end);
			if (errno || end == v || *end || !(interval >= 0.01 && interval <= 3600))
				return usage_error("top: bad --interval (0.01 to 3600 seconds): %s",
						   v);
		} else if (c->opt[i] == 'n') {
			if (parse_u64(v, &count) < 0 || count < 1)
				return usage_error("top: bad --count: %s", v);
		}
	}
	if (c->npos > 0)
		return usage_error("top: unexpected argument: %s", c->pos[0]);
	if (ctl_open(c) < 0)
		return EXIT_FAIL;
	n = kvfs_server_count(c->kv);
	if (n < 0) {
		fail("top: %s", kvfs_strerror(n));
		return EXIT_FAIL;
	}
	cur = calloc((size_t)n + 1, sizeof(*cur));
	prev = calloc((size_t)n + 1, sizeof(*prev));
	if (!cur || !prev) {
		free(cur);
		free(prev);
		fail("top: %s", strerror(ENOMEM));
		return EXIT_FAIL;
	}
	for (int i = 0; i < n; i++)
		if ((int)strlen(srv_name(c, i)) > w)
			w = (int)strlen(srv_name(c, i));

	sample_all(c, prev, n);
	t_prev = now_s();
	t_next = t_prev;
	for (uint64_t r = 0; count == 0 || r < count; r++) {
		double t_now, left;

		t_next += interval;
		while ((left = t_next - now_s()) > 0) {
			struct timespec ts = {(time_t)left,
					      (long)((left - (double)(time_t)left) * 1e9)};

			nanosleep(&ts, NULL);
		}
		sample_all(c, cur, n);
		t_now = now_s();
		if (r % HEADER_EVERY == 0)
			printf("%-*s  %10s  %10s  %8s  %8s  %8s  %8s  %8s  %10s  %10s\n", w,
			       "server", "keys", "pool_used", "gets/s", "hits/s", "misses/s",
			       "puts/s", "deletes/s", "in/s", "out/s");
		for (int i = 0; i < n; i++) {
			int err = 0;

			print_line(c, i, w, &cur[i], &prev[i], t_now - t_prev, &err);
			if (err) {
				last_err = err;
				last_idx = i;
			}
		}
		fflush(stdout);
		t = prev;
		prev = cur;
		cur = t;
		t_prev = t_now;
	}
	free(cur);
	free(prev);
	if (last_err)
		fail("top %s: %s", srv_name(c, last_idx), kvfs_strerror(last_err));
	return last_err ? EXIT_FAIL : 0;
}
