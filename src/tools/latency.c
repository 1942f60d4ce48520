/*
 * Latency helpers shared by the benchmark programs: see latency.h.
 */
#include "tools/latency.h"

#include <stdlib.h>
#include <time.h>

uint64_t lat_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile num/den of sorted v[0..n), n > 0, in microseconds. */
static double pct_us(const uint64_t *v, size_t n, uint64_t num, uint64_t den)
{
	uint64_t rank = ((uint64_t)n * num + den - 1) / den;

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)v[rank - 1] / 1e3;
}

void lat_summarize(uint64_t *samples, size_t n, struct lat_summary *out)
{
	*out = (struct lat_summary){.n = n};
	if (n == 0)
		return;
	qsort(samples, n, sizeof(*samples), cmp_u64);
	out->p50_us = pct_us(samples, n, 50, 100);
	out->p99_us = pct_us(samples, n, 99, 100);
	out->p999_us = pct_us(samples, n, 999, 1000);
}

void lat_rates(struct lat_summary *s, size_t op_bytes, uint64_t t_start, uint64_t t_end)
{
	double secs = (double)(t_end > t_start ? t_end - t_start : 1) / 1e9;

	s->ops_per_s = (double)s->n / secs;
	s->gbytes_per_s = (double)s->n * (double)op_bytes / secs / 1e9;
}

void lat_print_stats(FILE *f, const struct lat_summary *s, bool json)
{
	if (json)
		fprintf(f,
			"\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,\"ops_per_s\":%.0f,"
			"\"gbytes_per_s\":%.4f}\n",
			s->p50_us, s->p99_us, s->p999_us, s->ops_per_s, s->gbytes_per_s);
	else
		fprintf(f, ": p50 %.2f us  p99 %.2f us  p999 %.2f us  %.0f ops/s  %.3f GB/s\n",
			s->p50_us, s->p99_us, s->p999_us, s->ops_per_s, s->gbytes_per_s);
}
