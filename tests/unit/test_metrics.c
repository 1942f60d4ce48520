/*
 * Unit tests of the metrics registry and endpoint (src/common/metrics.c):
 * the text format (# HELP, # TYPE, counters, gauges), histograms' cumulative
 * buckets with _sum and _count, label and help escaping, refused names,
 * collectors, and real HTTP requests to the libmicrohttpd endpoint on
 * 127.0.0.1 and ::1 (ports 7920-7922): 200 with the text, 404, 405, and a clear
 * error for an address in use or malformed.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/metrics.h"

#define L(...) ((const char *[]){__VA_ARGS__, NULL})

static char *render(struct metrics *r)
{
	size_t len;
	char *t = metrics_render(r, &len);
	cr_assert_not_null(t);
	cr_assert_eq(strlen(t), len);
	return t;
}

static void has(const char *text, const char *line)
{
	cr_assert_not_null(strstr(text, line), "missing %s in:\n%s", line, text);
}

Test(metrics, counters_and_gauges)
{
	struct metrics *r = metrics_new();
	struct metric *g = metrics_add_series(r, "kvfs_x_requests_total", "Requests by op.",
					      METRIC_COUNTER, L("op", "get"));
	struct metric *p = metrics_add_series(r, "kvfs_x_requests_total", "Requests by op.",
					      METRIC_COUNTER, L("op", "put"));
	struct metric *u = metrics_add_series(r, "kvfs_x_up", "Up.", METRIC_GAUGE, NULL);
	cr_assert(g && p && u);
	metric_inc(g, 3);
	metric_inc(g, 2);
	metric_inc(p, 1);
	metric_set(u, 7);
	metric_add(u, -9);
	cr_assert_eq(metric_value(g), 5);
	char *t = render(r);
	/* one HELP and TYPE per family, its series after it */
	cr_assert_str_eq(t, "# HELP kvfs_x_requests_total Requests by op.\n"
			    "# TYPE kvfs_x_requests_total counter\n"
			    "kvfs_x_requests_total{op=\"get\"} 5\n"
			    "kvfs_x_requests_total{op=\"put\"} 1\n"
			    "# HELP kvfs_x_up Up.\n"
			    "# TYPE kvfs_x_up gauge\n"
			    "kvfs_x_up -2\n");
	free(t);
	metrics_free(r);
}

Test(metrics, histogram_buckets_sum_count)
{
	struct metrics *r = metrics_new();
	struct metric *h =
	    metrics_add_series(r, "kvfs_x_seconds", "Latency.", METRIC_HISTOGRAM, L("op", "get"));
	cr_assert_not_null(h);
	metric_observe_ns(h, 1000);	   /* 1 us: first bucket (5e-06) */
	metric_observe_ns(h, 5000);	   /* 5 us: on the bound, still in it (le) */
	metric_observe_ns(h, 300000);	   /* 300 us: le 0.0005 */
	metric_observe_ns(h, 10000000000); /* 10 s: only +Inf */
	cr_assert_eq(metric_value(h), 4);
	char *t = render(r);
	has(t, "# TYPE kvfs_x_seconds histogram\n");
	has(t, "kvfs_x_seconds_bucket{op=\"get\",le=\"5e-06\"} 2\n");
	has(t, "kvfs_x_seconds_bucket{op=\"get\",le=\"0.00025\"} 2\n");
	has(t, "kvfs_x_seconds_bucket{op=\"get\",le=\"0.0005\"} 3\n");
	has(t, "kvfs_x_seconds_bucket{op=\"get\",le=\"5\"} 3\n");
	has(t, "kvfs_x_seconds_bucket{op=\"get\",le=\"+Inf\"} 4\n");
	has(t, "kvfs_x_seconds_sum{op=\"get\"} 10.000306000\n");
	has(t, "kvfs_x_seconds_count{op=\"get\"} 4\n");
	/* cumulative: never decreasing, 20 buckets */
	int n = 0;
	unsigned long long last = 0;
	for (const char *p = t; (p = strstr(p, "_bucket{")); p++, n++) {
		unsigned long long v = strtoull(strchr(p, '}') + 2, NULL, 10);
		cr_assert_geq(v, last);
		last = v;
	}
	cr_assert_eq(n, METRICS_NBUCKETS + 1);
	free(t);
	metrics_free(r);
}

Test(metrics, escaping)
{
	struct metrics *r = metrics_new();
	struct metric *m =
	    metrics_add_series(r, "kvfs_x_total", "Back\\slash and\nnewline.", METRIC_COUNTER,
			       L("server", "a\"b\\c\nd", "kind", "x"));
	cr_assert_not_null(m);
	char *t = render(r);
	has(t, "# HELP kvfs_x_total Back\\\\slash and\\nnewline.\n");
	has(t, "kvfs_x_total{server=\"a\\\"b\\\\c\\nd\",kind=\"x\"} 0\n");
	free(t);
	metrics_free(r);
}

Test(metrics, refused_names)
{
	struct metrics *r = metrics_new();
	cr_assert_null(metrics_add_series(r, "", "h", METRIC_COUNTER, NULL));
	cr_assert_null(metrics_add_series(r, "1abc", "h", METRIC_COUNTER, NULL));
	cr_assert_null(metrics_add_series(r, "a-b", "h", METRIC_COUNTER, NULL));
	cr_assert_null(metrics_add_series(r, "ok", "h", METRIC_COUNTER, L("1x", "v")));
	cr_assert_null(metrics_add_series(r, "ok", "h", METRIC_COUNTER, L("__x", "v")));
	cr_assert_null(metrics_add_series(r, "ok", "h", METRIC_COUNTER, L("a:b", "v")));
	cr_assert_null(metrics_add_series(r, "ok", "h", METRIC_COUNTER, L("a", "1", "a", "2")));
	cr_assert_not_null(metrics_add_series(r, "ns:ok", "h", METRIC_COUNTER, L("a", "1")));
	/* the same label set twice, or the same name with another type */
	cr_assert_null(metrics_add_series(r, "ns:ok", "h", METRIC_COUNTER, L("a", "1")));
	cr_assert_null(metrics_add_series(r, "ns:ok", "h", METRIC_GAUGE, L("a", "2")));
	metrics_free(r);
}

static void collect(void *arg, struct metrics_out *o)
{
	int *calls = arg;
	(*calls)++;
	metrics_emit_family(o, "kvfs_x_pool_bytes", "Pool bytes by class.", METRIC_GAUGE);
	metrics_emit_u64(o, L("class", "64"), 1048576);
	metrics_emit_double(o, L("class", "large"), 2.5);
	metrics_emit_family(o, "kvfs_x_keys", "Keys.", METRIC_GAUGE);
	metrics_emit_u64(o, NULL, 42);
}

Test(metrics, collector)
{
	struct metrics *r = metrics_new();
	int calls = 0;
	cr_assert_eq(metrics_add_collector(r, collect, &calls), 0);
	char *t = render(r);
	cr_assert_eq(calls, 1);
	cr_assert_str_eq(t, "# HELP kvfs_x_pool_bytes Pool bytes by class.\n"
			    "# TYPE kvfs_x_pool_bytes gauge\n"
			    "kvfs_x_pool_bytes{class=\"64\"} 1048576\n"
			    "kvfs_x_pool_bytes{class=\"large\"} 2.5\n"
			    "# HELP kvfs_x_keys Keys.\n"
			    "# TYPE kvfs_x_keys gauge\n"
			    "kvfs_x_keys 42\n");
	free(t);
	metrics_free(r);
}

/* One HTTP/1.0 request to 127.0.0.1:port; the whole response, malloc'd. */
static char *http(int port, const char *request)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "%s", strerror(errno));
	size_t n = strlen(request);
	cr_assert_eq(write(fd, request, n), (ssize_t)n);
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	ssize_t k;
	while ((k = read(fd, buf + len, cap - len - 1)) > 0)
		len += (size_t)k;
	buf[len] = '\0';
	close(fd);
	return buf;
}

Test(metrics, http_endpoint)
{
	struct metrics *r = metrics_new();
	struct metric *m = metrics_add_series(r, "kvfs_x_total", "X.", METRIC_COUNTER, NULL);
	struct metrics_server *s;
	char err[256];
	metric_inc(m, 11);
	cr_assert_eq(metrics_serve(r, "127.0.0.1:7920", &s, err, sizeof(err)), 0, "%s", err);

	char *rsp = http(7920, "GET /metrics HTTP/1.0\r\n\r\n");
	cr_assert_eq(strncmp(rsp, "HTTP/1.0 200", 12) && strncmp(rsp, "HTTP/1.1 200", 12), 0, "%s",
		     rsp);
	has(rsp, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n");
	has(rsp, "\r\n\r\n# HELP kvfs_x_total X.\n# TYPE kvfs_x_total counter\nkvfs_x_total 11\n");
	free(rsp);

	rsp = http(7920, "GET /other HTTP/1.0\r\n\r\n");
	cr_assert_not_null(strstr(rsp, " 404 "), "%s", rsp);
	free(rsp);
	rsp = http(7920, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
	cr_assert_not_null(strstr(rsp, " 405 "), "%s", rsp);
	has(rsp, "Allow: GET, HEAD\r\n");
	free(rsp);

	/* a second server on the same address: a clear error, not a crash */
	struct metrics_server *s2;
	cr_assert_lt(metrics_serve(r, "127.0.0.1:7920", &s2, err, sizeof(err)), 0);
	cr_assert_not_null(strstr(err, "127.0.0.1:7920"), "%s", err);
	metrics_stop(s);
	metrics_free(r);
}

Test(metrics, bad_addresses)
{
	struct metrics *r = metrics_new();
	struct metrics_server *s;
	char err[256];
	cr_assert_eq(metrics_serve(r, "127.0.0.1", &s, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "host:port"), "%s", err);
	cr_assert_eq(metrics_serve(r, "[::1:7921", &s, err, sizeof(err)), -EINVAL);
	cr_assert_eq(metrics_serve(r, "no.such.host.invalid:7921", &s, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "cannot resolve"), "%s", err);
	/* an address of no interface here */
	cr_assert_lt(metrics_serve(r, "192.0.2.1:7921", &s, err, sizeof(err)), 0);
	cr_assert_not_null(strstr(err, "192.0.2.1:7921"), "%s", err);
	metrics_free(r);
}

Test(metrics, address_in_use_message)
{
	struct metrics *r = metrics_new();
	struct metrics_server *s, *s2;
	char err[256];
	cr_assert_eq(metrics_serve(r, "127.0.0.1:7922", &s, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(metrics_serve(r, "127.0.0.1:7922", &s2, err, sizeof(err)), -EADDRINUSE);
	cr_assert_str_eq(err, "cannot listen on 127.0.0.1:7922: Address already in use");
	metrics_stop(s);
	metrics_free(r);
}

Test(metrics, ipv6_loopback)
{
	struct metrics *r = metrics_new();
	struct metrics_server *s;
	char err[256];
	int ret = metrics_serve(r, "[::1]:7921", &s, err, sizeof(err));
	if (ret == -EADDRNOTAVAIL || ret == -EAFNOSUPPORT)
		cr_skip_test("no IPv6 loopback here: %s", err);
	cr_assert_eq(ret, 0, "%s", err);
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(7921)};
	a.sin6_addr = in6addr_loopback;
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "%s", strerror(errno));
	const char *q = "GET /metrics HTTP/1.0\r\n\r\n";
	cr_assert_eq(write(fd, q, strlen(q)), (ssize_t)strlen(q));
	char buf[512] = {0};
	cr_assert_gt(read(fd, buf, sizeof(buf) - 1), 0);
	cr_assert_not_null(strstr(buf, " 200 "), "%s", buf);
	close(fd);
	metrics_stop(s);
	metrics_free(r);
}
