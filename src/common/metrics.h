/*
 * metrics: a small Prometheus registry and its /metrics endpoint, for
 * kvfs-server and the kvfs mount (libkvfs and kvfsctl never serve).
 *
 * A registry holds metric families (a name, a help text, a type) and their
 * series (one fixed label set each, given at registration). Counters and
 * gauges are one atomic each, histograms one atomic per bucket plus the sum:
 * updating a series on a request path is an atomic add and takes no lock.
 * Values that live elsewhere (counters another module already keeps, the
 * store's state) are read at scrape time by a collector, a callback that
 * emits whole families into the rendering (metrics_emit_*), so no count is
 * kept twice.
 *
 * metrics_render() writes the text exposition format 0.0.4 (# HELP, # TYPE,
 * label values escaped). metrics_serve() runs it behind libmicrohttpd on one
 * address (GET /metrics; 404 for other paths, 405 for other methods).
 *
 * Locks: registry.lock guards the list of families and series and the
 * collectors (registration and rendering); the values are atomics, read and
 * written without it.
 */
#ifndef KVFS_METRICS_H
#define KVFS_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct metrics;	       /* a registry */
struct metric;	       /* one series: a family and a label set */
struct metrics_out;    /* a rendering in progress (collectors write into it) */
struct metrics_server; /* a running /metrics endpoint */

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

/* The histograms' bucket bounds in seconds: 5 us .. 5 s, then +Inf. */
#define METRICS_NBUCKETS 19
extern const double metrics_buckets[METRICS_NBUCKETS];

struct metrics *metrics_new(void);
/* Stops nothing: metrics_stop() every server of it first. */
void metrics_free(struct metrics *r);

/*
 * A new series of family name (created on first use with help and type; a
 * later series of the same name must have the same type). labels: NULL, or
 * name, value pairs ending with NULL: (const char *[]){"op", "get", NULL}.
 * Returns NULL on a bad metric or label name, a type clash, a label set
 * given twice, or no memory. Names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names
 * [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__"; values any bytes but NUL
 * (escaped in the output).
 */
struct metric *metrics_add_series(struct metrics *r, const char *name, const char *help,
				  enum metric_type type, const char *const *labels);

/* Counters: +n. Gauges: set, +delta (may be negative). */
void metric_inc(struct metric *m, uint64_t n);
void metric_set(struct metric *m, int64_t v);
void metric_add(struct metric *m, int64_t delta);
/* Histograms: one observation of ns nanoseconds (rendered in seconds). */
void metric_observe_ns(struct metric *m, uint64_t ns);
/* A counter's value, a gauge's, or a histogram's count of observations. */
uint64_t metric_value(const struct metric *m);
/* Nanoseconds now (CLOCK_MONOTONIC), for timing observations. */
uint64_t metrics_now_ns(void);

/*
 * A collector runs on every rendering, after the registered families, with
 * the registry's lock held (it must not register series). It emits families
 * with metrics_emit_family() and then their samples.
 */
typedef void (*metrics_collect_fn)(void *arg, struct metrics_out *out);
int metrics_add_collector(struct metrics *r, metrics_collect_fn fn, void *arg);
void metrics_emit_family(struct metrics_out *o, const char *name, const char *help,
			 enum metric_type type);
/* A sample of the family last emitted; labels as for metrics_add_series. */
void metrics_emit_u64(struct metrics_out *o, const char *const *labels, uint64_t v);
void metrics_emit_double(struct metrics_out *o, const char *const *labels, double v);

/*
 * The whole text, NUL-terminated, malloc'd (*len without the NUL); NULL
 * when out of memory.
 */
char *metrics_render(struct metrics *r, size_t *len);

/*
 * Serve GET /metrics of r on addr ("host:port", "[v6]:port"; the host a
 * literal address or a name resolving to one), that address only, from
 * libmicrohttpd's own thread. Returns 0, or -errno with a one-line reason in
 * err (e.g. "cannot listen on 127.0.0.1:9400: Address already in use").
 */
int metrics_serve(struct metrics *r, const char *addr, struct metrics_server **out, char *err,
		  size_t errlen);
/*
 * The same in two steps, for a process that forks in between (the socket
 * survives fork, a thread does not): metrics_listen binds and listens
 * (*fd, close-on-exec), metrics_serve_fd starts the thread on it and owns fd
 * from then on (closed on failure too).
 */
int metrics_listen(const char *addr, int *fd, char *err, size_t errlen);
int metrics_serve_fd(struct metrics *r, int fd, struct metrics_server **out, char *err,
		     size_t errlen);
void metrics_stop(struct metrics_server *s);

#endif
