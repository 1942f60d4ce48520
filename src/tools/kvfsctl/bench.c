/*
 * kvfsctl bench: latency and throughput of get or put from T threads on one
 * kvfs_t, over K keys "PREFIX00000000"... of SIZE bytes.
 *
 * cmd_bench parses (bench_parse), sizes the key set to the servers' pools
 * (bench_fit), writes the keys a get bench reads and gives each thread its
 * share (bench_setup), runs the threads (bench_run:
 * each registers its buffer and warms up, then all start the timed phase
 * together), checks a put bench's data (bench_verify) and merges the
 * latencies into the report (bench_report). Values carry their key's number
 * in the first 8 bytes, so a read of the wrong key or of stale bytes fails.
 * Zero-copy by default (kvfs_get_mr / kvfs_put_mr), --copy for the plain calls.
 * A get that finds no key (evicted by other traffic after the set-up) is
 * counted as a miss and reported, not a failure.
 */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvfs/kvfs.h"
#include "tools/kvfsctl/kvfsctl.h"
#include "tools/latency.h"

#define BENCH_MAX_THREADS 1024

struct bench_opts {
	const char *op, *prefix;
	uint64_t size, count, threads, nkeys;
	bool copy, json;
};

struct bench {
	kvfs_t *kv;
	bool put, copy;
	size_t size;
	uint64_t nkeys;
	char **keys;
	unsigned char *pattern; /* the value of key 0 ... minus the header */
	struct bthread *th;
	uint64_t nthreads;

	atomic_int stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int ready;	   /* lock: threads past set-up and warm-up */
	bool go;	   /* lock: start the timed phase */
	bool failed;	   /* lock */
	char errmsg[8192]; /* lock: the first failure's message */
};

struct bthread {
	struct bench *b;
	pthread_t tid;
	uint64_t nops, nwarm, next_key;
	uint64_t misses; /* timed gets that found no key */
	uint64_t *lat;
	uint64_t t_start, t_end;
	bool ran;
};

static void bench_fail(struct bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bench_fail(struct bench *b, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&b->lock);
	if (!b->failed) {
		va_start(ap, fmt);
		vsnprintf(b->errmsg, sizeof(b->errmsg), fmt, ap);
		va_end(ap);
		b->failed = true;
	}
	pthread_mutex_unlock(&b->lock);
	atomic_store(&b->stop, 1);
}

/* Bytes of the value of key k: offset i >= 8 from the pattern, 0..7 = k + 1 (LE). */
static void fill_pattern(unsigned char *p, size_t size)
{
	for (size_t i = 0; i < size; i++)
		p[i] = (unsigned char)(((uint32_t)i * 2654435761u) >> 24);
}

static void set_header(unsigned char *p, size_t size, uint64_t k)
{
	uint64_t h = k + 1;

	for (size_t i = 0; i < 8 && i < size; i++)
		p[i] = (unsigned char)(h >> (8 * i));
}

/* Index of the first wrong byte of key k's value in p, or size if right. */
static size_t check_value(const struct bench *b, const unsigned char *p, uint64_t k)
{
	unsigned char hdr[8];
	size_t i, hl = b->size < 8 ? b->size : 8;

	memset(hdr, 0, sizeof(hdr));
	set_header(hdr, hl, k);
	for (i = 0; i < hl; i++)
		if (p[i] != hdr[i])
			return i;
	for (; i < b->size; i++)
		if (p[i] != b->pattern[i])
			return i;
	return b->size;
}

/* One op on the thread's next key; 0 or -1 (reported). */
static int bench_op(struct bthread *t, unsigned char *buf, kvfs_mr_t *mr, bool *verified,
		    uint64_t *lat)
{
	struct bench *b = t->b;
	uint64_t k = t->next_key;
	const char *key = b->keys[k];
	uint64_t t0, t1;

	t->next_key = k + 1 == b->nkeys ? 0 : k + 1;
	if (b->put) {
		int rc;

		set_header(buf, b->size, k);
		t0 = lat_now_ns();
		rc = b->copy ? kvfs_put(b->kv, key, buf, b->size, NULL)
			     : kvfs_put_mr(b->kv, key, buf, b->size, mr, NULL);
		t1 = lat_now_ns();
		if (rc < 0) {
			bench_fail(b, "bench: put %s: %s", key, kvfs_strerror(rc));
			return -1;
		}
	} else {
		ssize_t n;

		t0 = lat_now_ns();
		n = b->copy ? kvfs_get(b->kv, key, buf, b->size, 0, NULL)
			    : kvfs_get_mr(b->kv, key, buf, b->size, 0, mr, NULL);
		t1 = lat_now_ns();
		if (n == -ENOENT) {
			t->misses++; /* evicted: counted and reported, the op timed */
			*lat = t1 - t0;
			return 0;
		}
		if (n < 0) {
			bench_fail(b, "bench: get %s: %s", key, kvfs_strerror((int)n));
			return -1;
		}
		if ((size_t)n != b->size) {
			bench_fail(b, "bench: get %s: returned %zd bytes, expected %zu", key, n,
				   b->size);
			return -1;
		}
		if (!*verified) {
			size_t bad = check_value(b, buf, k);

			if (bad != b->size) {
				bench_fail(b, "bench: get %s: wrong data at byte %zu", key, bad);
				return -1;
			}
			*verified = true;
		}
	}
	*lat = t1 - t0;
	return 0;
}

static void *bench_thread(void *arg)
{
	struct bthread *t = arg;
	struct bench *b = t->b;
	size_t blen = b->size ? b->size : 1;
	unsigned char *buf = NULL;
	kvfs_mr_t *mr = NULL;
	bool verified = false;
	uint64_t dummy;
	void *p = NULL;
	int rc;

	if (posix_memalign(&p, 4096, blen) != 0) {
		bench_fail(b, "bench: %s", strerror(ENOMEM));
		goto ready;
	}
	buf = p;
	if (b->put) {
		memcpy(buf, b->pattern, b->size);
	} else {
		/* The complement of the expected value: a GET that moves nothing fails. */
		for (size_t i = 0; i < b->size; i++)
			buf[i] = (unsigned char)~b->pattern[i];
		for (size_t i = 0; i < b->size && i < 8; i++)
			buf[i] = 0;
	}
	if (!b->copy) {
		rc = kvfs_mr_reg(b->kv, buf, blen, &mr);
		if (rc < 0) {
			mr = NULL;
			bench_fail(b, "bench: register buffer: %s", kvfs_strerror(rc));
			goto ready;
		}
	}
	for (uint64_t i = 0; i < t->nwarm && !atomic_load_explicit(&b->stop, memory_order_relaxed);
	     i++)
		if (bench_op(t, buf, mr, &verified, &dummy) < 0)
			break;
ready:
	pthread_mutex_lock(&b->lock);
	b->ready++;
	pthread_cond_broadcast(&b->cond);
	while (!b->go)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);

	if (buf && !atomic_load(&b->stop)) {
		uint64_t i;

		t->misses = 0; /* count the timed phase only */
		t->t_start = lat_now_ns();
		for (i = 0; i < t->nops; i++) {
			if (atomic_load_explicit(&b->stop, memory_order_relaxed))
				break;
			if (bench_op(t, buf, mr, &verified, &t->lat[i]) < 0)
				break;
		}
		t->t_end = lat_now_ns();
		t->ran = i == t->nops;
	}
	if (mr)
		kvfs_mr_close(mr);
	free(buf);
	return NULL;
}

/* Options into *o; PARSE_OK, or the exit code to return at once. */
static int bench_parse(struct ctl *c, int argc, char **argv, struct bench_opts *o)
{
	static const struct option lo[] = {
	    {"op", required_argument, NULL, 'o'},     {"size", required_argument, NULL, 's'},
	    {"count", required_argument, NULL, 'n'},  {"threads", required_argument, NULL, 't'},
	    {"keys", required_argument, NULL, 'k'},   {"json", no_argument, NULL, 'j'},
	    {"prefix", required_argument, NULL, 'p'}, {"copy", no_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},	      {NULL, 0, NULL, 0}};
	bool have_size = false, have_count = false, have_keys = false;
	int rc;

	rc = parse_args(c, argc, argv, "", lo);
	if (rc != PARSE_OK)
		return rc;
	memset(o, 0, sizeof(*o));
	o->prefix = "bench/";
	o->threads = 1;
	for (int i = 0; i < c->nopt; i++) {
		const char *v = c->optval[i];

		switch (c->opt[i]) {
		case 'o':
			if (strcmp(v, "get") != 0 && strcmp(v, "put") != 0)
				return usage_error("bench: --op must be get or put: %s", v);
			o->op = v;
			break;
		case 's':
			if (v[0] == '-' || kvfs_parse_size(v, &o->size) < 0 ||
			    o->size > SIZE_MAX / 2)
				return usage_error("bench: bad --size: %s", v);
			have_size = true;
			break;
		case 'n':
			if (parse_u64(v, &o->count) < 0 || o->count < 1 ||
			    o->count > UINT64_MAX / 64)
				return usage_error("bench: bad --count: %s", v);
			have_count = true;
			break;
		case 't':
			if (parse_u64(v, &o->threads) < 0 || o->threads < 1 ||
			    o->threads > BENCH_MAX_THREADS)
				return usage_error("bench: bad --threads (1..%d): %s",
						   BENCH_MAX_THREADS, v);
			break;
		case 'k':
			if (parse_u64(v, &o->nkeys) < 0 || o->nkeys < 1 || o->nkeys > 100000000)
				return usage_error("bench: bad --keys: %s", v);
			have_keys = true;
			break;
		case 'j':
			o->json = true;
			break;
		case 'p':
			o->prefix = v;
			break;
		case 'c':
			o->copy = true;
			break;
		}
	}
	if (c->npos > 0)
		return usage_error("bench: unexpected argument: %s", c->pos[0]);
	if (!o->op || !have_size || !have_count)
		return usage_error("bench: --op, --size and --count are required");
	if (!have_keys)
		o->nkeys = o->count < 1000 ? o->count : 1000;
	if (o->threads > o->count)
		o->threads = o->count; /* every thread does at least one op */
	return PARSE_OK;
}

/*
 * Pool bytes one key of size bytes takes, conservatively: the item header
 * (40 B), the key, its hash and directory slots (together under 64 B, with
 * room to spare), and up to 1/8 more for the slab class the item, or a large
 * value's tail, rounds up to.
 */
static uint64_t key_footprint(uint64_t size, size_t keylen)
{
	uint64_t f = size + keylen + 128;

	return f + f / 8;
}

/*
 * Size the key set to the servers' pools. Keys go to servers by hash, so
 * walk them in order, adding each to its server, and stop at the first that
 * would take its server past 80% of its pool (the rest is for page rounding
 * and other keys); a shorter set gets a notice on stderr. Fails when one
 * value is over a server's max_value or does not fit its pool on its own.
 * 0 or -1 (reported).
 */
static int bench_fit(struct ctl *c, struct bench *b, const struct bench_opts *o)
{
	int n = kvfs_server_count(c->kv), ret = -1;
	size_t klen = strlen(o->prefix) + 24;
	uint64_t *budget = NULL, *used = NULL, pool = 0, fp, fit;
	char *key = NULL, s1[32], s2[32];

	if (n <= 0) {
		fail("bench: %s", n < 0 ? kvfs_strerror(n) : "no servers");
		return -1;
	}
	budget = calloc((size_t)n, sizeof(*budget));
	used = calloc((size_t)n, sizeof(*used));
	key = malloc(klen);
	if (!budget || !used || !key) {
		fail("bench: %s", strerror(ENOMEM));
		goto out;
	}
	fp = key_footprint(b->size, strlen(o->prefix) + 8);
	for (int i = 0; i < n; i++) {
		struct kvfs_limits lim;
		struct kvfs_stats st;
		int rc = kvfs_limits(c->kv, i, &lim);

		if (rc == 0)
			rc = kvfs_server_stats(c->kv, i, &st);
		if (rc < 0) {
			fail("bench: server %s: %s", srv_name(c, i), kvfs_strerror(rc));
			goto out;
		}
		if (b->size > lim.max_value) {
			fmt_bytes(b->size, s1, sizeof(s1));
			fmt_bytes(lim.max_value, s2, sizeof(s2));
			fail("bench: --size %s is over server %s's max_value (%s)", s1,
			     srv_name(c, i), s2);
			goto out;
		}
		budget[i] = st.pool_size / 5 * 4;
		if (fp > budget[i]) {
			fmt_bytes(b->size, s1, sizeof(s1));
			fmt_bytes(st.pool_size, s2, sizeof(s2));
			fail("bench: one key of %s does not fit server %s's pool (%s)", s1,
			     srv_name(c, i), s2);
			goto out;
		}
		pool += st.pool_size;
	}
	for (fit = 0; fit < b->nkeys; fit++) {
		int srv;

		snprintf(key, klen, "%s%08" PRIu64, o->prefix, fit);
		srv = kvfs_server_of(c->kv, key);
		if (srv < 0 || srv >= n) {
			fail("bench: %s: %s", key, kvfs_strerror(srv < 0 ? srv : -EINVAL));
			goto out;
		}
		if (used[srv] + fp > budget[srv])
			break;
		used[srv] += fp;
	}
	if (fit < b->nkeys) {
		fmt_bytes(b->size, s1, sizeof(s1));
		fmt_bytes(pool, s2, sizeof(s2));
		fprintf(stderr,
			"kvfsctl: bench: %" PRIu64 " keys of %s do not fit the pool%s (%s%s): "
			"using %" PRIu64 "\n",
			b->nkeys, s1, n > 1 ? "s" : "", s2, n > 1 ? " in all" : "", fit);
		b->nkeys = fit;
	}
	ret = 0;
out:
	free(budget);
	free(used);
	free(key);
	return ret;
}

/*
 * Opens the cluster, sizes the key set (bench_fit), makes the keys, the
 * value pattern and each thread's share of the ops and, for get, stores
 * every key's value. 0 or -1 (reported).
 */
static int bench_setup(struct ctl *c, struct bench *b, const struct bench_opts *o)
{
	unsigned char *vbuf = NULL;
	int rc, ret = -1;

	if (ctl_open(c) < 0)
		return -1;
	b->kv = c->kv;
	if (bench_fit(c, b, o) < 0)
		return -1;

	/* Keys and the value pattern. */
	b->keys = calloc(b->nkeys, sizeof(*b->keys));
	b->pattern = malloc(b->size ? b->size : 1);
	b->th = calloc(b->nthreads, sizeof(*b->th));
	if (!b->keys || !b->pattern || !b->th) {
		fail("bench: %s", strerror(ENOMEM));
		return -1;
	}
	for (uint64_t k = 0; k < b->nkeys; k++) {
		size_t len = strlen(o->prefix) + 24;

		b->keys[k] = malloc(len);
		if (!b->keys[k]) {
			fail("bench: %s", strerror(ENOMEM));
			return -1;
		}
		snprintf(b->keys[k], len, "%s%08" PRIu64, o->prefix, k);
	}
	fill_pattern(b->pattern, b->size);

	/* Set-up for get: every key holds its value. */
	if (!b->put) {
		vbuf = malloc(b->size ? b->size : 1);
		if (!vbuf) {
			fail("bench: %s", strerror(ENOMEM));
			goto out;
		}
		memcpy(vbuf, b->pattern, b->size);
		for (uint64_t k = 0; k < b->nkeys; k++) {
			set_header(vbuf, b->size, k);
			rc = kvfs_put(c->kv, b->keys[k], vbuf, b->size, NULL);
			if (rc < 0) {
				fail("bench: set-up put %s: %s", b->keys[k], kvfs_strerror(rc));
				goto out;
			}
		}
	}

	for (uint64_t i = 0; i < b->nthreads; i++) {
		struct bthread *t = &b->th[i];

		t->b = b;
		t->nops = o->count / b->nthreads + (i < o->count % b->nthreads ? 1 : 0);
		t->nwarm = t->nops / 10 < 100 ? t->nops / 10 : 100;
		t->next_key = i * b->nkeys / b->nthreads;
		t->lat = malloc(t->nops * sizeof(*t->lat));
		if (!t->lat) {
			fail("bench: %s", strerror(ENOMEM));
			goto out;
		}
	}
	ret = 0;
out:
	free(vbuf);
	return ret;
}

/* Start the threads, then the timed phase when all are ready; 0 or -1 (reported). */
static int bench_run(struct bench *b)
{
	int created = 0, rc;

	for (uint64_t i = 0; i < b->nthreads; i++) {
		rc = pthread_create(&b->th[i].tid, NULL, bench_thread, &b->th[i]);
		if (rc != 0) {
			bench_fail(b, "bench: start thread: %s", strerror(rc));
			break;
		}
		created++;
	}
	/* Start the timed phase when every thread is past set-up and warm-up. */
	pthread_mutex_lock(&b->lock);
	while (b->ready < created)
		pthread_cond_wait(&b->cond, &b->lock);
	b->go = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	for (int i = 0; i < created; i++)
		pthread_join(b->th[i].tid, NULL);
	if (b->failed) {
		fail("%s", b->errmsg);
		return -1;
	}
	return 0;
}

/* Put: read back the first key thread 0 wrote. 0 or -1 (reported). */
static int bench_verify(struct bench *b)
{
	uint64_t k = 0;
	unsigned char *vbuf;
	ssize_t n;
	size_t bad;
	int ret = -1;

	if (!b->put)
		return 0;
	vbuf = malloc(b->size ? b->size : 1);
	if (!vbuf) {
		fail("bench: %s", strerror(ENOMEM));
		return -1;
	}
	n = kvfs_get(b->kv, b->keys[k], vbuf, b->size, 0, NULL);
	if (n < 0) {
		fail("bench: verify get %s: %s", b->keys[k], kvfs_strerror((int)n));
		goto out;
	}
	if ((size_t)n != b->size) {
		fail("bench: verify get %s: returned %zd bytes, expected %zu", b->keys[k], n,
		     b->size);
		goto out;
	}
	bad = check_value(b, vbuf, k);
	if (bad != b->size) {
		fail("bench: verify get %s: wrong data at byte %zu", b->keys[k], bad);
		goto out;
	}
	ret = 0;
out:
	free(vbuf);
	return ret;
}

/* Merge, sort, report. 0 or -1 (reported). */
static int bench_report(const struct bench *b, const struct bench_opts *o)
{
	uint64_t t_first = UINT64_MAX, t_last = 0, pos = 0, total = 0, misses = 0, *all;
	struct lat_summary ls;

	for (uint64_t i = 0; i < b->nthreads; i++) {
		const struct bthread *t = &b->th[i];

		if (!t->ran) {
			fail("bench: thread %" PRIu64 " did not finish", i);
			return -1;
		}
		total += t->nops;
		misses += t->misses;
		if (t->t_start < t_first)
			t_first = t->t_start;
		if (t->t_end > t_last)
			t_last = t->t_end;
	}
	all = malloc(total * sizeof(*all));
	if (!all) {
		fail("bench: %s", strerror(ENOMEM));
		return -1;
	}
	for (uint64_t i = 0; i < b->nthreads; i++) {
		memcpy(all + pos, b->th[i].lat, b->th[i].nops * sizeof(*all));
		pos += b->th[i].nops;
	}
	lat_summarize(all, (size_t)total, &ls);
	lat_rates(&ls, b->size, t_first, t_last);
	if (total)
		ls.gbytes_per_s *= (double)(total - misses) / (double)total; /* misses move none */
	if (misses)
		fprintf(stderr,
			"kvfsctl: bench: %" PRIu64 " of %" PRIu64
			" gets found no key (evicted or removed during the run)\n",
			misses, total);
	if (o->json) {
		printf("{\"op\": \"%s\", \"size\": %zu, \"count\": %" PRIu64
		       ", \"threads\": %" PRIu64 ", \"keys\": %" PRIu64 ", \"misses\": %" PRIu64
		       ", \"p50_us\": %.3f, \"p99_us\": %.3f"
		       ", \"p999_us\": %.3f, \"ops_per_s\": %.1f, \"gbytes_per_s\": %.6f}\n",
		       o->op, b->size, total, b->nthreads, b->nkeys, misses, ls.p50_us, ls.p99_us,
		       ls.p999_us, ls.ops_per_s, ls.gbytes_per_s);
	} else {
		printf("op:          %s%s\n", o->op, b->copy ? " (copy)" : " (zero-copy)");
		printf("size:        %zu bytes\n", b->size);
		printf("count:       %" PRIu64 "\n", total);
		printf("threads:     %" PRIu64 "\n", b->nthreads);
		printf("keys:        %" PRIu64 "\n", b->nkeys);
		if (!b->put)
			printf("misses:      %" PRIu64 "\n", misses);
		printf("p50:         %.3f us\n", ls.p50_us);
		printf("p99:         %.3f us\n", ls.p99_us);
		printf("p99.9:       %.3f us\n", ls.p999_us);
		printf("ops/s:       %.1f\n", ls.ops_per_s);
		printf("throughput:  %.6f GB/s\n", ls.gbytes_per_s);
	}
	free(all);
	return 0;
}

static void bench_free(struct bench *b)
{
	if (b->th)
		for (uint64_t i = 0; i < b->nthreads; i++)
			free(b->th[i].lat);
	free(b->th);
	if (b->keys)
		for (uint64_t k = 0; k < b->nkeys; k++)
			free(b->keys[k]);
	free(b->keys);
	free(b->pattern);
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
}

int cmd_bench(struct ctl *c, int argc, char **argv)
{
	struct bench_opts o;
	struct bench b;
	int rc, ret = EXIT_FAIL;

	rc = bench_parse(c, argc, argv, &o);
	if (rc != PARSE_OK)
		return rc;
	memset(&b, 0, sizeof(b));
	b.put = strcmp(o.op, "put") == 0;
	b.copy = o.copy;
	b.size = (size_t)o.size;
	b.nkeys = o.nkeys;
	b.nthreads = o.threads;
	atomic_init(&b.stop, 0);
	pthread_mutex_init(&b.lock, NULL);
	pthread_cond_init(&b.cond, NULL);

	if (bench_setup(c, &b, &o) == 0 && bench_run(&b) == 0 && bench_verify(&b) == 0 &&
	    bench_report(&b, &o) == 0)
		ret = 0;
	bench_free(&b);
	return ret;
}
