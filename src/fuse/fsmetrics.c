/*
 * fsmetrics: the kvfs mount's /metrics (fsmetrics.h).
 *
 * What the latency measures: main.c's worker times fuse_session_process_buf,
 * from a request read off /dev/fuse to the return of its handler. Every
 * handler of this mount replies before it returns, so that is the service
 * time of the request including its reply's write to the kernel; it leaves
 * out the kernel's own queueing before the worker read it. Requests are
 * labelled by FUSE opcode; those the mount does not implement (libfuse
 * answers them with ENOSYS) are op="other".
 *
 * Errors are the mount's error replies (reply_err in ops_int.h), counted per
 * errno in a fixed table and rendered at scrape time for the errnos seen;
 * libfuse's own ENOSYS replies are not among them.
 */
#include "fuse/fsmetrics.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/metrics.h"

#define L(...) ((const char *[]){__VA_ARGS__, NULL})

/* The FUSE opcodes (linux/fuse.h) of the operations in ops.c's table. */
static const struct {
	uint32_t op;
	const char *name;
} opnames[] = {
    {1, "lookup"},	  {2, "forget"},       {3, "getattr"},	   {4, "setattr"},
    {5, "readlink"},	  {6, "symlink"},      {8, "mknod"},	   {9, "mkdir"},
    {10, "unlink"},	  {11, "rmdir"},       {12, "rename"},	   {13, "link"},
    {14, "open"},	  {15, "read"},	       {16, "write"},	   {17, "statfs"},
    {18, "release"},	  {20, "fsync"},       {21, "setxattr"},   {22, "getxattr"},
    {23, "listxattr"},	  {24, "removexattr"}, {25, "flush"},	   {26, "init"},
    {27, "opendir"},	  {28, "readdir"},     {29, "releasedir"}, {35, "create"},
    {42, "batch_forget"}, {44, "readdirplus"}, {45, "rename2"},
};
#define NOPS	  (sizeof(opnames) / sizeof(opnames[0]))
#define MAX_OP	  64
#define MAX_ERRNO 256

static struct {
	struct metrics *reg;
	struct metrics_server *srv;
	kvfs_t *kv;
	int fd;			      /* from fsm_listen until fsm_start */
	struct metric *by_op[MAX_OP]; /* the opcode's histogram, or "other" */
	struct metric *other;
	struct metric *read_bytes, *written_bytes;
	struct metric *opens[3];
	atomic_uint_fast64_t errors[MAX_ERRNO]; /* by errno; the last: any larger */
} m = {.fd = -1};

static atomic_int on;

uint64_t fsm_clock(void)
{
	return atomic_load_explicit(&on, memory_order_acquire) ? metrics_now_ns() : 0;
}

void fsm_request(uint32_t op, uint64_t ns)
{
	if (!atomic_load_explicit(&on, memory_order_acquire))
		return;
	metric_observe_ns(op < MAX_OP && m.by_op[op] ? m.by_op[op] : m.other, ns);
}

void fsm_error(int err)
{
	if (!atomic_load_explicit(&on, memory_order_acquire) || err <= 0)
		return;
	atomic_fetch_add_explicit(&m.errors[err < MAX_ERRNO ? err : MAX_ERRNO - 1], 1,
				  memory_order_relaxed);
}

void fsm_read(size_t bytes)
{
	if (atomic_load_explicit(&on, memory_order_acquire))
		metric_inc(m.read_bytes, bytes);
}

void fsm_written(size_t bytes)
{
	if (atomic_load_explicit(&on, memory_order_acquire))
		metric_inc(m.written_bytes, bytes);
}

void fsm_open(int cache)
{
	if (atomic_load_explicit(&on, memory_order_acquire) && cache >= 0 && cache <= 2)
		metric_inc(m.opens[cache], 1);
}

static void collect(void *arg, struct metrics_out *o)
{
	(void)arg;
	metrics_emit_family(o, "kvfs_mount_errors_total",
			    "Error replies of the mount's operations, by errno (ENOENT includes "
			    "lookups of names that do not exist).",
			    METRIC_COUNTER);
	for (int e = 1; e < MAX_ERRNO; e++) {
		uint64_t n = atomic_load_explicit(&m.errors[e], memory_order_relaxed);
		if (!n)
			continue;
		char num[16];
		const char *name = e < MAX_ERRNO - 1 ? strerrorname_np(e) : "other";
		if (!name) {
			snprintf(num, sizeof(num), "E%d", e);
			name = num;
		}
		metrics_emit_u64(o, L("errno", name), n);
	}
	static const char *const states[] = {"idle", "up", "down"};
	int n = kvfs_server_count(m.kv);
	metrics_emit_family(o, "kvfs_mount_server_up",
			    "1 while the mount has a session with the server, else 0.",
			    METRIC_GAUGE);
	for (int i = 0; i < n; i++)
		metrics_emit_u64(o, L("server", kvfs_server_name(m.kv, i)),
				 kvfs_server_state(m.kv, i) == KVFS_SERVER_UP);
	metrics_emit_family(o, "kvfs_mount_server_state",
			    "The mount's session with each server, one series per state set to 1: "
			    "idle (none needed yet), up, down (broke or cannot connect).",
			    METRIC_GAUGE);
	for (int i = 0; i < n; i++) {
		int st = kvfs_server_state(m.kv, i);
		for (int k = 0; k < 3; k++)
			metrics_emit_u64(
			    o, L("server", kvfs_server_name(m.kv, i), "state", states[k]), st == k);
	}
}

int fsm_listen(const char *addr, char *err, size_t errlen)
{
	return metrics_listen(addr, &m.fd, err, errlen);
}

static int registry(void)
{
	static const char *help_ops =
	    "FUSE requests by operation and the time the mount took for each: from reading the "
	    "request off /dev/fuse to the return of its handler, which has written the reply "
	    "(the kernel's queueing before that is not included). op=\"other\": operations the "
	    "mount does not implement.";
	static const char *const open_kind[] = {"direct", "page_cache", "keep_cache"};
	m.reg = metrics_new();
	if (!m.reg)
		return -ENOMEM;
	for (size_t i = 0; i < NOPS; i++) {
		m.by_op[opnames[i].op] =
		    metrics_add_series(m.reg, "kvfs_mount_request_duration_seconds", help_ops,
				       METRIC_HISTOGRAM, L("op", opnames[i].name));
		if (!m.by_op[opnames[i].op])
			return -ENOMEM;
	}
	m.other = metrics_add_series(m.reg, "kvfs_mount_request_duration_seconds", help_ops,
				     METRIC_HISTOGRAM, L("op", "other"));
	m.read_bytes = metrics_add_series(m.reg, "kvfs_mount_read_bytes_total",
					  "Bytes the mount returned to read requests (page-cache "
					  "hits never reach it).",
					  METRIC_COUNTER, NULL);
	m.written_bytes =
	    metrics_add_series(m.reg, "kvfs_mount_written_bytes_total",
			       "Bytes of write requests the mount accepted.", METRIC_COUNTER, NULL);
	for (int k = 0; k < 3; k++) {
		m.opens[k] = metrics_add_series(
		    m.reg, "kvfs_mount_opens_total",
		    "Files opened, by how reads are served: direct (from the server; writers, "
		    "and readers of a value changing here), page_cache (through the page cache, "
		    "filled anew), keep_cache (the page cache kept from an earlier open of the "
		    "same version: reads of cached pages are page-cache hits).",
		    METRIC_COUNTER, L("cache", open_kind[k]));
		if (!m.opens[k])
			return -ENOMEM;
	}
	if (!m.other || !m.read_bytes || !m.written_bytes)
		return -ENOMEM;
	return metrics_add_collector(m.reg, collect, NULL);
}

int fsm_start(kvfs_t *kv, char *err, size_t errlen)
{
	if (m.fd < 0)
		return 0;
	m.kv = kv;
	int ret = registry();
	if (ret) {
		snprintf(err, errlen, "out of memory");
		return ret;
	}
	ret = metrics_serve_fd(m.reg, m.fd, &m.srv, err, errlen);
	m.fd = -1;
	if (ret)
		return ret;
	atomic_store(&on, 1);
	return 0;
}

void fsm_stop(void)
{
	atomic_store(&on, 0);
	metrics_stop(m.srv);
	m.srv = NULL;
	if (m.fd >= 0)
		close(m.fd);
	m.fd = -1;
	/* the workers are joined: nothing updates the series any more */
	metrics_free(m.reg);
	m.reg = NULL;
}
