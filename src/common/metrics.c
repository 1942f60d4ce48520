/*
 * metrics: the registry, the text exposition format (0.0.4) and the
 * libmicrohttpd endpoint behind it (metrics.h).
 *
 * Design choices:
 * - Series are registered at start and never removed, so a struct metric
 *   stays valid for the registry's life and the hot path needs no lookup.
 * - Histogram buckets are kept per bucket (not cumulative) and summed up at
 *   rendering; _count is that sum, so it always equals the +Inf bucket even
 *   while observations race the scrape.
 * - A maintained HTTP server (libmicrohttpd) rather than a hand-written one:
 *   request parsing, keep-alive, timeouts and connection limits are its job.
 * - The listening socket is made here (bound to the one address) and handed
 *   to libmicrohttpd (MHD_OPTION_LISTEN_SOCKET): a failed bind then reports
 *   its errno, and the kvfs mount can bind before fuse_daemonize (an error
 *   still reaches the terminal) and start the thread after it.
 */
#include "common/metrics.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

const double metrics_buckets[METRICS_NBUCKETS] = {5e-6, 1e-5,	2.5e-5, 5e-5, 1e-4,   2.5e-4, 5e-4,
						  1e-3, 2.5e-3, 5e-3,	1e-2, 2.5e-2, 5e-2,   0.1,
						  0.25, 0.5,	1.0,	2.5,  5.0};

struct family;

struct metric {
	struct family *fam;
	char *labels; /* rendered: `a="x",b="y"`, "" for none */
	struct metric *next;
	atomic_uint_fast64_t value;			    /* counter; gauge (as int64 bits) */
	atomic_uint_fast64_t buckets[METRICS_NBUCKETS + 1]; /* histogram; last: +Inf */
	atomic_uint_fast64_t sum_ns;			    /* histogram */
};

struct family {
	char *name, *help;
	enum metric_type type;
	struct metric *series, **tail;
	struct family *next;
};

struct collector {
	metrics_collect_fn fn;
	void *arg;
	struct collector *next;
};

struct metrics {
	pthread_mutex_t lock;
	struct family *fams, **tail; /* lock */
	struct collector *cols;	     /* lock */
	struct collector **ctail;    /* lock */
};

/* A growing text buffer; err is set once an allocation failed. */
struct metrics_out {
	char *p;
	size_t len, cap;
	int err;
	const struct family *fam; /* metrics_emit_*: the family last emitted */
	char fam_name[128];
};

/* ---- names and text ------------------------------------------------------ */

static int name_ok(const char *s, int colon)
{
	if (!s || !*s)
		return 0;
	for (const char *p = s; *p; p++) {
		int c = (unsigned char)*p;
		int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
			    (colon && c == ':');
		if (!alpha && !(p > s && c >= '0' && c <= '9'))
			return 0;
	}
	return 1;
}

static void out_grow(struct metrics_out *o, size_t more)
{
	if (o->err || o->len + more + 1 <= o->cap)
		return;
	size_t cap = o->cap ? o->cap : 4096;
	while (cap < o->len + more + 1)
		cap *= 2;
	char *p = realloc(o->p, cap);
	if (!p) {
		o->err = 1;
		return;
	}
	o->p = p;
	o->cap = cap;
}

static void out_mem(struct metrics_out *o, const char *s, size_t n)
{
	out_grow(o, n);
	if (o->err)
		return;
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void out_str(struct metrics_out *o, const char *s)
{
	out_mem(o, s, strlen(s));
}

static void out_fmt(struct metrics_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void out_fmt(struct metrics_out *o, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		out_mem(o, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* s with \ and newline escaped, and " too in label values (quote). */
static void out_escaped(struct metrics_out *o, const char *s, int quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			out_str(o, "\\\\");
		else if (*s == '\n')
			out_str(o, "\\n");
		else if (quote && *s == '"')
			out_str(o, "\\\"");
		else
			out_mem(o, s, 1);
	}
}

/* Render name, value pairs as `a="x",b="y"`; -EINVAL on a bad label name. */
static int render_labels(struct metrics_out *o, const char *const *labels)
{
	for (int i = 0; labels && labels[i]; i += 2) {
		if (!labels[i + 1] || !name_ok(labels[i], 0) || strncmp(labels[i], "__", 2) == 0)
			return -EINVAL;
		for (int j = 0; j < i; j += 2)
			if (strcmp(labels[i], labels[j]) == 0)
				return -EINVAL;
		if (i)
			out_str(o, ",");
		out_str(o, labels[i]);
		out_str(o, "=\"");
		out_escaped(o, labels[i + 1], 1);
		out_str(o, "\"");
	}
	return 0;
}

static const char *type_name(enum metric_type t)
{
	return t == METRIC_COUNTER ? "counter" : t == METRIC_GAUGE ? "gauge" : "histogram";
}

static void out_header(struct metrics_out *o, const char *name, const char *help,
		       enum metric_type type)
{
	out_fmt(o, "# HELP %s ", name);
	out_escaped(o, help, 0);
	out_fmt(o, "\n# TYPE %s %s\n", name, type_name(type));
}

/* A double as the format wants it: Go's float syntax, +Inf for infinity. */
static void out_double(struct metrics_out *o, double v)
{
	if (v != v)
		out_str(o, "NaN");
	else if (v > 1e308 * 10)
		out_str(o, "+Inf");
	else if (v < -1e308 * 10)
		out_str(o, "-Inf");
	else
		out_fmt(o, "%.15g", v);
}

/* name{labels[,extra]} */
static void out_series(struct metrics_out *o, const char *name, const char *suffix,
		       const char *labels, const char *extra)
{
	out_str(o, name);
	out_str(o, suffix);
	if (*labels || extra) {
		out_str(o, "{");
		out_str(o, labels);
		if (extra) {
			if (*labels)
				out_str(o, ",");
			out_str(o, extra);
		}
		out_str(o, "}");
	}
	out_str(o, " ");
}

/* ---- the registry ---------------------------------------------------------- */

struct metrics *metrics_new(void)
{
	struct metrics *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	pthread_mutex_init(&r->lock, NULL);
	r->tail = &r->fams;
	r->ctail = &r->cols;
	return r;
}

void metrics_free(struct metrics *r)
{
	if (!r)
		return;
	while (r->fams) {
		struct family *f = r->fams;
		r->fams = f->next;
		while (f->series) {
			struct metric *m = f->series;
			f->series = m->next;
			free(m->labels);
			free(m);
		}
		free(f->name);
		free(f->help);
		free(f);
	}
	while (r->cols) {
		struct collector *c = r->cols;
		r->cols = c->next;
		free(c);
	}
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static struct family *family_get(struct metrics *r, const char *name, const char *help,
				 enum metric_type type)
{
	for (struct family *f = r->fams; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f->type == type ? f : NULL;
	struct family *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->name = strdup(name);
	f->help = strdup(help ? help : "");
	if (!f->name || !f->help) {
		free(f->name);
		free(f->help);
		free(f);
		return NULL;
	}
	f->type = type;
	f->tail = &f->series;
	*r->tail = f;
	r->tail = &f->next;
	return f;
}

struct metric *metrics_add_series(struct metrics *r, const char *name, const char *help,
				  enum metric_type type, const char *const *labels)
{
	struct metrics_out l = {0};
	struct metric *m = NULL;
	if (!r || !name_ok(name, 1) || render_labels(&l, labels) < 0 || l.err)
		goto out;
	if (!l.p) {
		l.p = strdup("");
		if (!l.p)
			goto out;
	}
	pthread_mutex_lock(&r->lock);
	struct family *f = family_get(r, name, help, type);
	int dup = 0;
	for (struct metric *s = f ? f->series : NULL; s; s = s->next)
		dup |= strcmp(s->labels, l.p) == 0;
	if (f && !dup && (m = calloc(1, sizeof(*m)))) {
		m->fam = f;
		m->labels = l.p;
		l.p = NULL;
		*f->tail = m;
		f->tail = &m->next;
	}
	pthread_mutex_unlock(&r->lock);
out:
	free(l.p);
	return m;
}

void metric_inc(struct metric *m, uint64_t n)
{
	atomic_fetch_add_explicit(&m->value, n, memory_order_relaxed);
}

void metric_set(struct metric *m, int64_t v)
{
	atomic_store_explicit(&m->value, (uint64_t)v, memory_order_relaxed);
}

void metric_add(struct metric *m, int64_t delta)
{
	atomic_fetch_add_explicit(&m->value, (uint64_t)delta, memory_order_relaxed);
}

void metric_observe_ns(struct metric *m, uint64_t ns)
{
	double s = (double)ns / 1e9;
	int i = 0;
	while (i < METRICS_NBUCKETS && s > metrics_buckets[i])
		i++;
	atomic_fetch_add_explicit(&m->buckets[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->sum_ns, ns, memory_order_relaxed);
}

uint64_t metric_value(const struct metric *m)
{
	if (m->fam->type != METRIC_HISTOGRAM)
		return atomic_load_explicit(&m->value, memory_order_relaxed);
	uint64_t n = 0;
	for (int i = 0; i <= METRICS_NBUCKETS; i++)
		n += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
	return n;
}

uint64_t metrics_now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int metrics_add_collector(struct metrics *r, metrics_collect_fn fn, void *arg)
{
	struct collector *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fn = fn;
	c->arg = arg;
	pthread_mutex_lock(&r->lock);
	*r->ctail = c;
	r->ctail = &c->next;
	pthread_mutex_unlock(&r->lock);
	return 0;
}

/* ---- rendering --------------------------------------------------------------- */

static void render_histogram(struct metrics_out *o, const struct family *f, const struct metric *m)
{
	uint64_t cum = 0;
	char le[48];
	for (int i = 0; i <= METRICS_NBUCKETS; i++) {
		cum += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
		if (i < METRICS_NBUCKETS)
			snprintf(le, sizeof(le), "le=\"%g\"", metrics_buckets[i]);
		else
			snprintf(le, sizeof(le), "le=\"+Inf\"");
		out_series(o, f->name, "_bucket", m->labels, le);
		out_fmt(o, "%llu\n", (unsigned long long)cum);
	}
	/* seconds, exactly: the nanoseconds with the point moved */
	uint64_t ns = atomic_load_explicit(&m->sum_ns, memory_order_relaxed);
	out_series(o, f->name, "_sum", m->labels, NULL);
	out_fmt(o, "%llu.%09llu\n", (unsigned long long)(ns / 1000000000u),
		(unsigned long long)(ns % 1000000000u));
	out_series(o, f->name, "_count", m->labels, NULL);
	out_fmt(o, "%llu\n", (unsigned long long)cum);
}

char *metrics_render(struct metrics *r, size_t *len)
{
	struct metrics_out o = {0};
	out_grow(&o, 0);
	pthread_mutex_lock(&r->lock);
	for (const struct family *f = r->fams; f; f = f->next) {
		out_header(&o, f->name, f->help, f->type);
		for (const struct metric *m = f->series; m; m = m->next) {
			if (f->type == METRIC_HISTOGRAM) {
				render_histogram(&o, f, m);
				continue;
			}
			uint64_t v = atomic_load_explicit(&m->value, memory_order_relaxed);
			out_series(&o, f->name, "", m->labels, NULL);
			if (f->type == METRIC_GAUGE)
				out_fmt(&o, "%lld\n", (long long)(int64_t)v);
			else
				out_fmt(&o, "%llu\n", (unsigned long long)v);
		}
	}
	for (const struct collector *c = r->cols; c; c = c->next)
		c->fn(c->arg, &o);
	pthread_mutex_unlock(&r->lock);
	if (o.err) {
		free(o.p);
		return NULL;
	}
	*len = o.len;
	return o.p;
}

void metrics_emit_family(struct metrics_out *o, const char *name, const char *help,
			 enum metric_type type)
{
	snprintf(o->fam_name, sizeof(o->fam_name), "%s", name);
	out_header(o, name, help, type);
}

static int emit_start(struct metrics_out *o, const char *const *labels)
{
	struct metrics_out l = {0};
	int bad = render_labels(&l, labels) < 0 || l.err;
	if (!bad)
		out_series(o, o->fam_name, "", l.p ? l.p : "", NULL);
	free(l.p);
	return bad ? -EINVAL : 0;
}

void metrics_emit_u64(struct metrics_out *o, const char *const *labels, uint64_t v)
{
	if (emit_start(o, labels) == 0)
		out_fmt(o, "%llu\n", (unsigned long long)v);
}

void metrics_emit_double(struct metrics_out *o, const char *const *labels, double v)
{
	if (emit_start(o, labels) == 0) {
		out_double(o, v);
		out_str(o, "\n");
	}
}

/* ---- the endpoint -------------------------------------------------------------- */

struct metrics_server {
	struct MHD_Daemon *d;
	struct metrics *r;
};

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text,
				  const char *allow)
{
	struct MHD_Response *rsp =
	    MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
	if (!rsp)
		return MHD_NO;
	MHD_add_response_header(rsp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	if (allow)
		MHD_add_response_header(rsp, MHD_HTTP_HEADER_ALLOW, allow);
	enum MHD_Result ret = MHD_queue_response(c, status, rsp);
	MHD_destroy_response(rsp);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_len, void **con_cls)
{
	struct metrics_server *s = cls;
	(void)version;
	(void)upload;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		*upload_len = 0; /* a body is not read: answered and the connection closed */
		return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET is served here\n",
				  "GET, HEAD");
	}
	if (!*con_cls) { /* the headers: answer on the next call */
		*con_cls = s;
		return MHD_YES;
	}
	if (strcmp(url, "/metrics") != 0)
		return reply_text(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics\n", NULL);
	size_t len;
	char *text = metrics_render(s->r, &len);
	if (!text)
		return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", NULL);
	struct MHD_Response *rsp =
	    MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!rsp) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(rsp, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, rsp);
	MHD_destroy_response(rsp);
	return ret;
}

/* libmicrohttpd's own messages: the last one explains a failed start. */
static __thread char mhd_last[256];

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	vsnprintf(mhd_last, sizeof(mhd_last), fmt, ap);
	size_t n = strlen(mhd_last);
	while (n && (mhd_last[n - 1] == '\n' || mhd_last[n - 1] == '\r'))
		mhd_last[--n] = '\0';
	log_msg(LOG_LVL_INFO, "metrics endpoint: %s", mhd_last);
}

/* "host:port" or "[v6]:port" into its parts; -EINVAL when malformed. */
static int split_addr(const char *addr, char *host, size_t hlen, char *port, size_t plen)
{
	const char *h = addr, *he, *p;
	if (*addr == '[') {
		h = addr + 1;
		he = strchr(h, ']');
		if (!he || he[1] != ':')
			return -EINVAL;
		p = he + 2;
	} else {
		he = strrchr(addr, ':');
		if (!he)
			return -EINVAL;
		p = he + 1;
	}
	if (he == h || (size_t)(he - h) >= hlen || !*p || strlen(p) >= plen)
		return -EINVAL;
	memcpy(host, h, (size_t)(he - h));
	host[he - h] = '\0';
	strcpy(port, p);
	return 0;
}

int metrics_listen(const char *addr, int *fd, char *err, size_t errlen)
{
	char host[256], port[16];
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV | AI_PASSIVE},
			*ai = NULL;
	if (split_addr(addr, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(err, errlen, "%s is not host:port", addr);
		return -EINVAL;
	}
	int g = getaddrinfo(host, port, &hints, &ai);
	if (g) {
		snprintf(err, errlen, "cannot resolve %s: %s", addr, gai_strerror(g));
		return -EINVAL;
	}
	int ret = 0, one = 1;
	int s = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (ai->ai_family == AF_INET6 &&
	     setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(s, ai->ai_addr, ai->ai_addrlen) < 0 || listen(s, 64) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
		if (s >= 0)
			close(s);
	} else {
		*fd = s;
	}
	freeaddrinfo(ai);
	return ret;
}

int metrics_serve_fd(struct metrics *r, int fd, struct metrics_server **out, char *err,
		     size_t errlen)
{
	struct metrics_server *s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->r = r;
	mhd_last[0] = '\0';
	/*
	 * epoll or poll, not select(): a busy server's fds pass FD_SETSIZE,
	 * and select() would refuse every scrape then. The HTTP thread takes
	 * none of the program's signals (they are all blocked while it starts).
	 */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	s->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
				on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, 64u,
				MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!s->d) {
		snprintf(err, errlen, "cannot start the HTTP server: %s",
			 mhd_last[0] ? mhd_last : "libmicrohttpd failed");
		close(fd);
		free(s);
		return -EIO;
	}
	*out = s;
	return 0;
}

int metrics_serve(struct metrics *r, const char *addr, struct metrics_server **out, char *err,
		  size_t errlen)
{
	int fd;
	int ret = metrics_listen(addr, &fd, err, errlen);
	return ret ? ret : metrics_serve_fd(r, fd, out, err, errlen);
}

void metrics_stop(struct metrics_server *s)
{
	if (!s)
		return;
	MHD_stop_daemon(s->d);
	free(s);
}
