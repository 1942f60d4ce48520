/*
 * Latency helpers shared by the benchmark programs (kvfsctl bench,
 * bench/rma_bench, bench/tcp_bench, bench/load_keys): a monotonic clock,
 * nearest-rank percentiles of per-op latency samples, throughput over a
 * timed phase, and the statistics part of a one-line report.
 */
#ifndef KVFS_TOOLS_LATENCY_H
#define KVFS_TOOLS_LATENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct lat_summary {
	size_t n;			/* samples */
	double p50_us, p99_us, p999_us; /* nearest-rank percentiles, microseconds */
	double ops_per_s, gbytes_per_s; /* set by lat_rates(), 0 before */
};

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t lat_now_ns(void);

/*
 * Sort samples[0..n) (nanoseconds) in place and fill *out with their
 * nearest-rank p50/p99/p99.9 (the ceil(p * n)-th smallest sample) in
 * microseconds; every field is 0 when n is 0. Rates are zeroed.
 */
void lat_summarize(uint64_t *samples, size_t n, struct lat_summary *out);

/*
 * Set ops_per_s and gbytes_per_s (10^9 bytes/s) of s->n ops of op_bytes each,
 * timed from t_start to t_end (lat_now_ns() values; at least 1 ns).
 */
void lat_rates(struct lat_summary *s, size_t op_bytes, uint64_t t_start, uint64_t t_end);

/*
 * Print the statistics that end a one-line report, after the caller's own
 * fields. JSON: "p50_us":..,"p99_us":..,"p999_us":..,"ops_per_s":..,
 * "gbytes_per_s":..} -- the caller has printed '{' and its fields, each
 * followed by ','. Human: ": p50 X us  p99 X us  p999 X us  N ops/s  X GB/s".
 * Both end with a newline.
 */
void lat_print_stats(FILE *f, const struct lat_summary *s, bool json);

#endif
