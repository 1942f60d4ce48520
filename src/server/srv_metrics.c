/*
 * srv_metrics: kvfs-server's Prometheus /metrics (server.metrics). The
 * latency histograms per op are the registry's own series, updated by
 * dispatch.c; everything else is read at scrape time from where the server
 * keeps it already (srv.ctr, the endpoints' counters, the store under
 * store_lock, held for one store_stats and one store_class_stats), so no
 * count is kept twice and `kvfsctl stats` shows the same numbers.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "service.h"

#define L(...) ((const char *[]){__VA_ARGS__, NULL})
/* An endpoint's labels: its provider as configured, its domain as libfabric names it. */
#define EP(e) L("provider", svc_ep_provider(e), "domain", svc_ep_domain(e))

/* The ops as /metrics labels them. */
static const char *const op_names[OP_MAX_] = {
    [OP_PING] = "ping",		[OP_GET] = "get",	    [OP_PUT] = "put",
    [OP_DELETE] = "delete",	[OP_STAT] = "stat",	    [OP_SETATTR] = "setattr",
    [OP_RENAME] = "rename",	[OP_LIST] = "list",	    [OP_UP_OPEN] = "up_open",
    [OP_UP_WRITE] = "up_write", [OP_UP_TRUNC] = "up_trunc", [OP_UP_COMMIT] = "up_commit",
    [OP_UP_ABORT] = "up_abort", [OP_REG] = "reg",	    [OP_UNREG] = "unreg",
    [OP_STATS] = "stats",	[OP_UP_READ] = "up_read",   [OP_PIN] = "pin",
    [OP_PIN_GET] = "pin_get",	[OP_UNPIN] = "unpin",
};

static void counter(struct metrics_out *o, const char *name, const char *help, uint64_t v)
{
	metrics_emit_family(o, name, help, METRIC_COUNTER);
	metrics_emit_u64(o, NULL, v);
}

static void gauge(struct metrics_out *o, const char *name, const char *help, uint64_t v)
{
	metrics_emit_family(o, name, help, METRIC_GAUGE);
	metrics_emit_u64(o, NULL, v);
}

static void emit_requests(struct srv *s, struct metrics_out *o)
{
	metrics_emit_family(o, "kvfs_server_requests_total",
			    "Requests answered, by op (the count of "
			    "kvfs_server_request_duration_seconds).",
			    METRIC_COUNTER);
	for (int op = 1; op < OP_MAX_; op++)
		if (s->latency[op])
			metrics_emit_u64(o, L("op", op_names[op]), metric_value(s->latency[op]));
	counter(o, "kvfs_server_gets_total", "Lookups of a value (GET and PIN_GET).",
		atomic_load(&s->ctr.gets));
	counter(o, "kvfs_server_hits_total", "Lookups and pins that found the key.",
		atomic_load(&s->ctr.hits));
	counter(o, "kvfs_server_misses_total", "GETs of a key absent or expired.",
		atomic_load(&s->ctr.misses));
	counter(o, "kvfs_server_puts_total", "Values stored (PUT, upload commits).",
		atomic_load(&s->ctr.puts));
	counter(o, "kvfs_server_deletes_total", "DELETE requests.", atomic_load(&s->ctr.deletes));
}

/* One counter family with a sample per endpoint: the field at off of each's counters. */
static void per_ep(struct metrics_out *o, const char *name, const char *help,
		   const struct svc_ep *const *eps, const struct svc_ep_counters *c, int n,
		   size_t off)
{
	metrics_emit_family(o, name, help, METRIC_COUNTER);
	for (int i = 0; i < n; i++)
		metrics_emit_u64(o, EP(eps[i]), *(const uint64_t *)((const char *)&c[i] + off));
}

static void emit_endpoints(struct srv *s, struct metrics_out *o)
{
	struct svc_ep_counters c[SVC_MAX_EPS + 1];
	const struct svc_ep *eps[SVC_MAX_EPS + 1];
	int n = svc_counted_eps(s, eps);
	for (int i = 0; i < n; i++)
		svc_ep_counters(eps[i], &c[i]);
	per_ep(o, "kvfs_server_received_bytes_total",
	       "Value bytes received from clients (PUT, upload writes), by endpoint.", eps, c, n,
	       offsetof(struct svc_ep_counters, bytes_in));
	per_ep(o, "kvfs_server_sent_bytes_total",
	       "Value bytes sent to clients (GET, PIN_GET, UP_READ), by endpoint.", eps, c, n,
	       offsetof(struct svc_ep_counters, bytes_out));
	metrics_emit_family(o, "kvfs_server_errors_total",
			    "Errors by endpoint: kind=\"reply\" are replies with an error other "
			    "than no such key, kind=\"fabric\" failed completions and posts.",
			    METRIC_COUNTER);
	for (int i = 0; i < n; i++) {
		const char *p = svc_ep_provider(eps[i]), *d = svc_ep_domain(eps[i]);
		metrics_emit_u64(o, L("provider", p, "domain", d, "kind", "reply"),
				 c[i].error_replies);
		metrics_emit_u64(o, L("provider", p, "domain", d, "kind", "fabric"),
				 c[i].fabric_errors);
	}
	per_ep(o, "kvfs_server_dropped_requests_total",
	       "Requests dropped unanswered because their session had "
	       "96 requests in flight (the per-session cap), by endpoint.",
	       eps, c, n, offsetof(struct svc_ep_counters, over_cap));
	per_ep(o, "kvfs_server_stalled_sessions_total",
	       "Sessions dropped because a request of theirs made no progress for "
	       "server.stall_timeout_ms, by endpoint.",
	       eps, c, n, offsetof(struct svc_ep_counters, stalls));
}

/* A gauge per slab class (not the large pages): its chunks, or those in use. */
static void class_chunks(struct metrics_out *o, const char *name, const char *help,
			 const struct store_class_stats *cs, int n, int used)
{
	metrics_emit_family(o, name, help, METRIC_GAUGE);
	for (int i = 0; i < n; i++) {
		char cls[16];
		snprintf(cls, sizeof(cls), "%u", cs[i].chunk_size);
		if (cs[i].chunk_size)
			metrics_emit_u64(o, L("class", cls),
					 used ? cs[i].chunks_used : cs[i].chunks);
	}
}

static void emit_store(struct srv *s, struct metrics_out *o)
{
	struct store_stats st;
	struct store_class_stats cs[STORE_MAX_CLASSES];
	pthread_mutex_lock(&s->store_lock);
	store_stats(s->store, &st);
	int n = store_class_stats(s->store, cs, STORE_MAX_CLASSES);
	pthread_mutex_unlock(&s->store_lock);

	counter(o, "kvfs_server_evictions_total", "Items evicted to make room.", st.evictions);
	counter(o, "kvfs_server_expirations_total", "Items reclaimed after their expiry.",
		st.expirations);
	gauge(o, "kvfs_server_keys", "Keys stored.", st.keys);
	gauge(o, "kvfs_server_item_bytes", "Key and value bytes of the stored items.",
	      st.item_bytes);
	gauge(o, "kvfs_server_pool_size_bytes", "Bytes of the memory pool.", st.pool_size);
	metrics_emit_family(o, "kvfs_server_pool_used_bytes",
			    "Pool bytes in use (whole 1 MiB pages), by slab class: its chunk size "
			    "in bytes, or \"large\" for pages of large values and uploads.",
			    METRIC_GAUGE);
	for (int i = 0; i < n; i++) {
		char cls[16];
		snprintf(cls, sizeof(cls), "%u", cs[i].chunk_size);
		metrics_emit_u64(o, L("class", cs[i].chunk_size ? cls : "large"),
				 (uint64_t)cs[i].pages * STORE_PAGE_SIZE);
	}
	class_chunks(o, "kvfs_server_slab_chunks",
		     "Chunks of the pages a slab class holds, by class (chunk size).", cs, n, 0);
	class_chunks(o, "kvfs_server_slab_chunks_used",
		     "Chunks holding an item, by slab class (chunk size).", cs, n, 1);
	gauge(o, "kvfs_server_uploads_open",
	      "Uploads open (kvfs_upload_open sessions and whole PUTs in flight).", st.uploads);
}

static void collect(void *arg, struct metrics_out *o)
{
	struct srv *s = arg;
	emit_requests(s, o);
	emit_endpoints(s, o);
	emit_store(s, o);
	gauge(o, "kvfs_server_sessions", "Client sessions open.", atomic_load(&s->ctr.sessions));
	gauge(o, "kvfs_server_pins_open", "Pins open (a reader's open file holds one).",
	      atomic_load(&s->ctr.pins));
	gauge(o, "kvfs_server_start_time_seconds", "When the server started (unix seconds).",
	      (uint64_t)s->started);
}

int srv_metrics_start(struct srv *s, char *err, size_t errlen)
{
	if (!s->cfg.server_metrics[0])
		return 0;
	s->metrics = metrics_new();
	if (!s->metrics) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (int op = 1; op < OP_MAX_; op++) {
		if (!op_names[op])
			continue; /* an op without a name here is not measured */
		s->latency[op] = metrics_add_series(
		    s->metrics, "kvfs_server_request_duration_seconds",
		    "Service time of requests by op: from the request's arrival to its reply "
		    "being posted, including the RMA that moves the value.",
		    METRIC_HISTOGRAM, L("op", op_names[op]));
		if (!s->latency[op]) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	int ret = metrics_add_collector(s->metrics, collect, s);
	if (!ret)
		ret =
		    metrics_serve(s->metrics, s->cfg.server_metrics, &s->metrics_srv, err, errlen);
	if (ret) {
		if (ret == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		return ret;
	}
	return 0;
}

void srv_metrics_stop(struct srv *s)
{
	metrics_stop(s->metrics_srv);
	s->metrics_srv = NULL;
	/* the service threads are gone: nothing observes into the registry any more */
	memset(s->latency, 0, sizeof(s->latency));
	metrics_free(s->metrics);
	s->metrics = NULL;
}
