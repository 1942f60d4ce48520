/*
 * tcp_bench: GET/SET latency and throughput of memcached (text protocol) and
 * Redis (RESP) over TCP on 127.0.0.1, for comparison with kvfs.
 *
 * One connection per thread, one request in flight per connection (no
 * pipelining), latency = request sent to whole response read. For --op get
 * the keys are stored first (not timed) and each thread checks the bytes of
 * its first GET. Values carry their key number in the first 8 bytes and a
 * fixed pattern after it, so a wrong or stale value is caught.
 *
 * --load N stores N keys "m/%014d" (16 bytes) of --size bytes, pipelined in
 * batches, for the memory-per-key measurement; it prints one JSON line.
 *
 * Every socket has send/receive timeouts (--timeout ms) and the whole run is
 * bounded by --deadline seconds (SIGALRM), so a dead server ends the run.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <arpa/inet.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/config.h"
#include "tools/latency.h"

#define MAX_THR	 64
#define RBUF	 65536
#define LOAD_BAT 64

enum proto { P_MEMCACHED, P_REDIS };

static struct {
	enum proto proto;
	int port;
	int get; /* 1 = get, 0 = put (set) */
	size_t size;
	long count; /* total over all threads */
	int threads;
	long keys;
	int json;
	long load;
	int timeout_ms;
	int deadline_s;
} o = {.proto = P_MEMCACHED,
       .get = 1,
       .size = 4096,
       .count = 10000,
       .threads = 1,
       .timeout_ms = 10000,
       .deadline_s = 300};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "tcp_bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* ---- connection with a small read buffer ---- */

struct conn {
	int fd;
	size_t rpos, rlen;
	char rbuf[RBUF];
};

static int conn_open(struct conn *c)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o.port)};
	struct timeval tv = {.tv_sec = o.timeout_ms / 1000,
			     .tv_usec = (o.timeout_ms % 1000) * 1000};
	int one = 1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->rpos = c->rlen = 0;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	/* connect() honours SO_SNDTIMEO on Linux. */
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a))) {
		int e = errno;
		close(c->fd);
		c->fd = -1;
		return -e;
	}
	return 0;
}

/* Send every byte of iov (modified). 0 or -errno (-EAGAIN = timed out). */
static int send_iov(struct conn *c, struct iovec *iov, int n)
{
	while (n > 0) {
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static int fill_rbuf(struct conn *c)
{
	if (c->rpos == c->rlen)
		c->rpos = c->rlen = 0;
	if (c->rlen == RBUF) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
		c->rlen -= c->rpos;
		c->rpos = 0;
	}
	for (;;) {
		ssize_t r = recv(c->fd, c->rbuf + c->rlen, RBUF - c->rlen, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ECONNRESET;
		c->rlen += (size_t)r;
		return 0;
	}
}

/* One CRLF-terminated line (without CRLF) into out. 0 or -errno. */
static int read_line(struct conn *c, char *out, size_t max)
{
	for (;;) {
		char *p =
		    c->rpos < c->rlen ? memchr(c->rbuf + c->rpos, '\n', c->rlen - c->rpos) : NULL;
		if (p) {
			size_t n = (size_t)(p - (c->rbuf + c->rpos));
			if (n > 0 && c->rbuf[c->rpos + n - 1] == '\r')
				n--;
			if (n >= max)
				return -EPROTO;
			memcpy(out, c->rbuf + c->rpos, n);
			out[n] = 0;
			c->rpos = (size_t)(p - c->rbuf) + 1;
			return 0;
		}
		if (c->rlen - c->rpos >= RBUF - 1)
			return -EPROTO;
		int r = fill_rbuf(c);
		if (r)
			return r;
	}
}

/* Exactly n bytes into dst (buffered bytes first, then straight from the socket). */
static int read_exact(struct conn *c, void *dst, size_t n)
{
	char *d = dst;
	size_t have = c->rlen - c->rpos;
	if (have > n)
		have = n;
	memcpy(d, c->rbuf + c->rpos, have);
	c->rpos += have;
	d += have;
	n -= have;
	while (n) {
		ssize_t r = recv(c->fd, d, n, MSG_WAITALL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ECONNRESET;
		d += r;
		n -= (size_t)r;
	}
	return 0;
}

/* ---- values ---- */

static void make_template(unsigned char *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		v[i] = (unsigned char)(i * 7u + 3u);
}

static void stamp(unsigned char *v, size_t n, uint64_t key)
{
	memcpy(v, &key, n < 8 ? n : 8);
}

static int verify(const unsigned char *v, const unsigned char *tmpl, size_t n, uint64_t key)
{
	uint64_t k = 0;
	size_t h = n < 8 ? n : 8;
	memcpy(&k, v, h);
	if (h == 8 && k != key)
		return -1;
	return memcmp(v + h, tmpl + h, n - h) ? -1 : 0;
}

/* ---- protocol ---- */

static int key_name(char *out, size_t max, const char *fmt, long i)
{
	return snprintf(out, max, fmt, i);
}

/* Request header + body trailer for SET of key with len bytes. */
static size_t set_header(char *h, size_t max, const char *key, size_t klen, size_t len)
{
	if (o.proto == P_MEMCACHED)
		return (size_t)snprintf(h, max, "set %s 0 0 %zu\r\n", key, len);
	return (size_t)snprintf(h, max, "*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$%zu\r\n", klen, key,
				len);
}

static size_t get_request(char *h, size_t max, const char *key, size_t klen)
{
	if (o.proto == P_MEMCACHED)
		return (size_t)snprintf(h, max, "get %s\r\n", key);
	return (size_t)snprintf(h, max, "*2\r\n$3\r\nGET\r\n$%zu\r\n%s\r\n", klen, key);
}

static const char *set_reply(struct conn *c)
{
	char line[256];
	if (read_line(c, line, sizeof(line)))
		return "reading the SET reply failed";
	if (o.proto == P_MEMCACHED ? strcmp(line, "STORED") : strcmp(line, "+OK")) {
		static __thread char msg[300];
		snprintf(msg, sizeof(msg), "SET answered '%s'", line);
		return msg;
	}
	return NULL;
}

static const char *do_set(struct conn *c, const char *key, const void *val, size_t len)
{
	char h[512];
	size_t hl = set_header(h, sizeof(h), key, strlen(key), len);
	struct iovec iov[3] = {{h, hl}, {(void *)val, len}, {"\r\n", 2}};
	if (send_iov(c, iov, 3))
		return "sending SET failed";
	return set_reply(c);
}

/* GET into buf (capacity cap). *got = value length. */
static const char *do_get(struct conn *c, const char *key, void *buf, size_t cap, size_t *got)
{
	char h[512], line[512];
	size_t hl = get_request(h, sizeof(h), key, strlen(key));
	struct iovec iov[1] = {{h, hl}};
	if (send_iov(c, iov, 1))
		return "sending GET failed";
	if (read_line(c, line, sizeof(line)))
		return "reading the GET reply failed";
	unsigned long long len;
	if (o.proto == P_MEMCACHED) {
		char k[300];
		unsigned flags;
		if (strcmp(line, "END") == 0)
			return "GET missed (key not stored or evicted)";
		if (sscanf(line, "VALUE %299s %u %llu", k, &flags, &len) != 3)
			return "bad GET reply";
	} else {
		if (strcmp(line, "$-1") == 0)
			return "GET missed (key not stored)";
		if (line[0] != '$' || sscanf(line + 1, "%llu", &len) != 1)
			return "bad GET reply";
	}
	if (len > cap)
		return "GET reply longer than the value";
	if (read_exact(c, buf, (size_t)len) || read_line(c, line, sizeof(line)) || line[0])
		return "reading the value failed";
	if (o.proto == P_MEMCACHED && (read_line(c, line, sizeof(line)) || strcmp(line, "END")))
		return "GET reply not terminated by END";
	*got = (size_t)len;
	return NULL;
}

/* ---- benchmark threads ---- */

struct thr {
	pthread_t th;
	int tid;
	long count;
	uint64_t *lat;
	uint64_t t_start, t_end;
	const char *err;
};

static pthread_barrier_t barrier_ready, barrier_go;
static unsigned char *tmpl;

static void *bench_thread(void *arg)
{
	struct thr *t = arg;
	struct conn *c = malloc(sizeof(*c));
	unsigned char *val = malloc(o.size + 8), *rbuf = malloc(o.size + 8);
	char key[64];
	int ready = 0;

	if (!c || !val || !rbuf) {
		t->err = "out of memory";
		goto out;
	}
	c->fd = -1;
	memcpy(val, tmpl, o.size);
	if (conn_open(c)) {
		t->err = "cannot connect to 127.0.0.1";
		goto out;
	}
	if (o.get) {
		/* Store this thread's share of the keys (untimed). */
		for (long k = t->tid; k < o.keys; k += o.threads) {
			key_name(key, sizeof(key), "tb/%08ld", k);
			stamp(val, o.size, (uint64_t)k);
			if ((t->err = do_set(c, key, val, o.size)))
				goto out;
		}
	}
	/* Untimed warm-up ops first, like kvfsctl bench: min(count/10, 100). */
	long nwarm = t->count / 10 < 100 ? t->count / 10 : 100;
	for (long j = -nwarm; j < t->count; j++) {
		long i = j < 0 ? j + nwarm : j;
		long k = (t->tid + i * o.threads) % o.keys;
		if (j == 0) {
			pthread_barrier_wait(&barrier_ready);
			ready = 1;
			pthread_barrier_wait(&barrier_go);
			t->t_start = lat_now_ns();
		}
		key_name(key, sizeof(key), "tb/%08ld", k);
		uint64_t t0 = lat_now_ns();
		if (o.get) {
			size_t got = 0;
			t->err = do_get(c, key, rbuf, o.size + 8, &got);
			t->lat[i] = lat_now_ns() - t0;
			if (t->err)
				goto out;
			if (j == -nwarm &&
			    (got != o.size || verify(rbuf, tmpl, o.size, (uint64_t)k))) {
				t->err = "first GET returned wrong bytes";
				goto out;
			}
		} else {
			stamp(val, o.size, (uint64_t)k);
			t0 = lat_now_ns();
			t->err = do_set(c, key, val, o.size);
			t->lat[i] = lat_now_ns() - t0;
			if (t->err)
				goto out;
		}
	}
	t->t_end = lat_now_ns();
out:
	if (!ready) {
		pthread_barrier_wait(&barrier_ready);
		pthread_barrier_wait(&barrier_go);
	}
	if (c && c->fd >= 0)
		close(c->fd);
	free(c);
	free(val);
	free(rbuf);
	return NULL;
}

static int run_bench(void)
{
	struct thr *t = calloc((size_t)o.threads, sizeof(*t));
	uint64_t *lat = calloc((size_t)o.count, sizeof(uint64_t));
	if (!t || !lat)
		die("out of memory");
	pthread_barrier_init(&barrier_ready, NULL, (unsigned)o.threads + 1);
	pthread_barrier_init(&barrier_go, NULL, (unsigned)o.threads + 1);
	long off = 0;
	for (int i = 0; i < o.threads; i++) {
		t[i].tid = i;
		t[i].count = o.count / o.threads + (i < o.count % o.threads);
		t[i].lat = lat + off;
		off += t[i].count;
		if (pthread_create(&t[i].th, NULL, bench_thread, &t[i]))
			die("pthread_create failed");
	}
	pthread_barrier_wait(&barrier_ready); /* every key stored */
	pthread_barrier_wait(&barrier_go);
	int fail = 0;
	uint64_t t0 = UINT64_MAX, t1 = 0;
	for (int i = 0; i < o.threads; i++) {
		pthread_join(t[i].th, NULL);
		if (t[i].err) {
			fprintf(stderr, "tcp_bench: thread %d: %s\n", i, t[i].err);
			fail = 1;
		}
		if (t[i].t_start < t0)
			t0 = t[i].t_start;
		if (t[i].t_end > t1)
			t1 = t[i].t_end;
	}
	if (fail)
		return 1;
	struct lat_summary ls;
	lat_summarize(lat, (size_t)o.count, &ls);
	lat_rates(&ls, o.size, t0, t1);
	const char *proto = o.proto == P_MEMCACHED ? "memcached" : "redis";
	const char *op = o.get ? "get" : "put";
	if (o.json)
		printf("{\"proto\":\"%s\",\"op\":\"%s\",\"size\":%zu,\"count\":%ld,"
		       "\"threads\":%d,\"keys\":%ld,",
		       proto, op, o.size, o.count, o.threads, o.keys);
	else
		printf("%s %s size %zu count %ld threads %d keys %ld", proto, op, o.size, o.count,
		       o.threads, o.keys);
	lat_print_stats(stdout, &ls, o.json);
	fflush(stdout);
	free(lat);
	free(t);
	return 0;
}

/* ---- --load: bulk store of N small keys, pipelined in batches ---- */

struct loader {
	pthread_t th;
	int tid;
	const char *err;
};

static void *load_thread(void *arg)
{
	struct loader *l = arg;
	struct conn *c = malloc(sizeof(*c));
	size_t per = 256 + o.size + 2;
	char *req = malloc(per * LOAD_BAT);
	unsigned char *val = malloc(o.size + 8);
	if (!c || !req || !val) {
		l->err = "out of memory";
		goto out;
	}
	c->fd = -1;
	memcpy(val, tmpl, o.size);
	if (conn_open(c)) {
		l->err = "cannot connect to 127.0.0.1";
		goto out;
	}
	for (long i = l->tid; i < o.load;) {
		size_t len = 0;
		int nb = 0;
		for (; nb < LOAD_BAT && i < o.load; nb++, i += o.threads) {
			char key[64];
			int kl = key_name(key, sizeof(key), "m/%014ld", i);
			stamp(val, o.size, (uint64_t)i);
			len += set_header(req + len, 256, key, (size_t)kl, o.size);
			memcpy(req + len, val, o.size);
			len += o.size;
			memcpy(req + len, "\r\n", 2);
			len += 2;
		}
		struct iovec iov = {req, len};
		if (send_iov(c, &iov, 1)) {
			l->err = "sending SETs failed";
			goto out;
		}
		for (int k = 0; k < nb; k++)
			if ((l->err = set_reply(c)))
				goto out;
	}
out:
	if (c && c->fd >= 0)
		close(c->fd);
	free(c);
	free(req);
	free(val);
	return NULL;
}

static int run_load(void)
{
	struct loader l[MAX_THR];
	uint64_t t0 = lat_now_ns();
	int fail = 0;
	for (int i = 0; i < o.threads; i++) {
		l[i] = (struct loader){.tid = i};
		if (pthread_create(&l[i].th, NULL, load_thread, &l[i]))
			die("pthread_create failed");
	}
	for (int i = 0; i < o.threads; i++) {
		pthread_join(l[i].th, NULL);
		if (l[i].err) {
			fprintf(stderr, "tcp_bench: load thread %d: %s\n", i, l[i].err);
			fail = 1;
		}
	}
	if (fail)
		return 1;
	double secs = (double)(lat_now_ns() - t0) / 1e9;
	printf("{\"proto\":\"%s\",\"load\":%ld,\"key_bytes\":16,\"size\":%zu,\"threads\":%d,"
	       "\"seconds\":%.2f}\n",
	       o.proto == P_MEMCACHED ? "memcached" : "redis", o.load, o.size, o.threads, secs);
	return 0;
}

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: tcp_bench --proto memcached|redis --port P --op get|put --size BYTES\n"
	    "                 --count N [--threads T] [--keys K] [--json]\n"
	    "                 [--timeout MS] [--deadline S]\n"
	    "       tcp_bench --proto memcached|redis --port P --load N [--size BYTES] "
	    "[--threads T]\n"
	    "  count is the total over all threads; keys default to min(1000, 256 MiB/size).\n"
	    "  --load N stores keys m/%%014d (16 bytes), pipelined, and prints one JSON line.\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"proto", 1, 0, 'p'},
					   {"port", 1, 0, 'P'},
					   {"op", 1, 0, 'o'},
					   {"size", 1, 0, 's'},
					   {"count", 1, 0, 'n'},
					   {"threads", 1, 0, 't'},
					   {"keys", 1, 0, 'k'},
					   {"json", 0, 0, 'j'},
					   {"load", 1, 0, 'l'},
					   {"timeout", 1, 0, 'T'},
					   {"deadline", 1, 0, 'D'},
					   {"help", 0, 0, 'h'},
					   {0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (strcmp(optarg, "memcached") == 0)
				o.proto = P_MEMCACHED;
			else if (strcmp(optarg, "redis") == 0)
				o.proto = P_REDIS;
			else
				usage();
			break;
		case 'P':
			o.port = atoi(optarg);
			break;
		case 'o':
			if (strcmp(optarg, "get") == 0)
				o.get = 1;
			else if (strcmp(optarg, "put") == 0 || strcmp(optarg, "set") == 0)
				o.get = 0;
			else
				usage();
			break;
		case 's': {
			uint64_t v;
			if (config_parse_size(optarg, &v) < 0 || v > SIZE_MAX)
				die("bad size '%s'", optarg);
			o.size = (size_t)v;
			break;
		}
		case 'n':
			o.count = atol(optarg);
			break;
		case 't':
			o.threads = atoi(optarg);
			break;
		case 'k':
			o.keys = atol(optarg);
			break;
		case 'j':
			o.json = 1;
			break;
		case 'l':
			o.load = atol(optarg);
			break;
		case 'T':
			o.timeout_ms = atoi(optarg);
			break;
		case 'D':
			o.deadline_s = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || o.port <= 0 || o.port > 65535 || o.size == 0 || o.threads < 1 ||
	    o.threads > MAX_THR || o.timeout_ms <= 0 || o.load < 0 ||
	    (!o.load && o.count < o.threads) || o.size > (1ull << 30))
		usage();
	if (o.keys <= 0) {
		o.keys = (long)((256ull << 20) / o.size);
		if (o.keys > 1000)
			o.keys = 1000;
		if (o.keys < 1)
			o.keys = 1;
	}
	if (o.deadline_s > 0)
		alarm((unsigned)o.deadline_s);
	tmpl = malloc(o.size + 8);
	if (!tmpl)
		die("out of memory");
	make_template(tmpl, o.size);
	return o.load ? run_load() : run_bench();
}
