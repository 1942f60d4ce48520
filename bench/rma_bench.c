/*
 * rma_bench: the raw libfabric reference for kvfs's GET and PUT paths.
 *
 * A "server" endpoint initiates RMA into (op write, like a GET) or out of (op
 * read, like a PUT) buffers that "clients" registered, exactly as kvfs-server
 * does, and nothing else: no index, no pool, no copy. One client round trip:
 *
 *   client: send request msg  ->  server: RMA size bytes (pieces of at most
 *   fab_max_msg_size / --chunk), wait for every RMA completion, send reply
 *   ->  client: reply received = one op; latency = request to reply.
 *
 * Bootstrap over TCP on 127.0.0.1: each client thread connects, sends its
 * fabric name and its buffer's address/key/size; the server answers with its
 * fabric name. Each client thread has its own endpoint and buffer; the one
 * server endpoint serves all of them from one loop. Both sides poll their CQ
 * (manual progress): spin for --spin-us, then sched_yield between polls (or
 * nap --nap-us in fab_poll) so five pollers on two cores still make progress.
 *
 * Modes: default forks (parent = server, so it is the ptracer-side ancestor
 * that shm's cross-memory attach allows; child = clients, which print the
 * result); --serve --port P runs only the server; --port P alone runs only the
 * clients against such a server. Every wait has a deadline (--timeout ms per
 * op, --deadline s for the whole run), and a vanished peer (TCP EOF) ends the
 * other side with an error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "fabric/fabric.h"
#include "tools/latency.h"

#define MAGIC	   0x6b76524dU /* "kvRM" */
#define MAX_THR	   64
#define RMA_WINDOW 16
#define MSG_SIZE   64

struct opts {
	const char *prov;
	int write; /* 1 = server fi_write into client (GET), 0 = fi_read (PUT) */
	size_t size;
	long count; /* total ops over all threads */
	int threads;
	int json;
	int port;
	int serve;
	int client_only;
	int timeout_ms;
	int deadline_s;
	int spin_us;
	int nap_us;
	size_t chunk;
};

/* TCP bootstrap messages (both ends are the same binary on the same host). */
struct hello {
	uint32_t magic, tid, nthreads, write;
	uint64_t size, count, raddr, rkey;
	uint32_t namelen, pad;
	uint8_t name[FAB_NAME_MAX];
};
struct welcome {
	uint32_t magic, status, namelen, pad;
	uint8_t name[FAB_NAME_MAX];
};
/* Fabric messages: request client -> server, reply server -> client. */
struct msg {
	uint32_t magic, tid;
	uint64_t seq;
	int32_t status; /* reply: 0 ok, 1 = data mismatch seen by server */
};

static struct opts o = {.prov = "shm",
			.write = 1,
			.size = 4096,
			.count = 10000,
			.threads = 1,
			.timeout_ms = 10000,
			.deadline_s = 300,
			.spin_us = 50};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "rma_bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static unsigned char pattern(uint32_t tid, size_t i)
{
	return (unsigned char)(i * 31u + tid * 7u + 0x5au);
}

static void fill(unsigned char *p, size_t n, uint32_t tid)
{
	for (size_t i = 0; i < n; i++)
		p[i] = pattern(tid, i);
}

static int check(const unsigned char *p, size_t n, uint32_t tid)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != pattern(tid, i))
			return -1;
	return 0;
}

/*
 * Nothing completed: keep spinning until spin_us has passed since `since`,
 * then either nap --nap-us inside fab_poll (like an idle kvfs thread) or yield
 * the CPU. Returns completions read meanwhile (into cq), like fab_poll.
 */
static int idle(struct fab_ep *ep, uint64_t since, struct fab_cqe *cq, int max)
{
	if (lat_now_ns() - since <= (uint64_t)o.spin_us * 1000)
		return 0;
	if (o.nap_us > 0)
		return fab_poll(ep, cq, max, o.nap_us);
	sched_yield();
	return 0;
}

/* ---- TCP helpers with deadlines ---- */

static int io_full(int fd, void *buf, size_t len, int writing, int timeout_ms)
{
	uint64_t end = lat_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	char *p = buf;
	while (len) {
		uint64_t t = lat_now_ns();
		if (t >= end)
			return -ETIMEDOUT;
		struct pollfd pfd = {.fd = fd, .events = writing ? POLLOUT : POLLIN};
		int r = poll(&pfd, 1, (int)((end - t) / 1000000ull) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			continue;
		ssize_t n = writing ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int tcp_listen(int port, int *bound_port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	socklen_t alen = sizeof(a);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, MAX_THR))
		die("bind/listen 127.0.0.1:%d: %s", port, strerror(errno));
	if (getsockname(fd, (struct sockaddr *)&a, &alen))
		die("getsockname: %s", strerror(errno));
	*bound_port = ntohs(a.sin_port);
	return fd;
}

static int tcp_connect(int port, int timeout_ms)
{
	uint64_t end = lat_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int one = 1;
		if (fd < 0)
			return -errno;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			return fd;
		int e = errno;
		close(fd);
		if (lat_now_ns() >= end)
			return -e;
		usleep(20000); /* server may still be starting */
	}
}

/* ---- server ---- */

enum { K_RECV = 1, K_RMA, K_SEND };

struct opctx {
	struct fab_ctx fc; /* first: the provider's per-op storage */
	int kind;
	int idx; /* client index, or recv slot */
};

struct sclient {
	int fd;
	int done;
	uint32_t tid;
	fab_addr_t addr;
	uint64_t raddr, rkey, count, served;
	unsigned char *buf;
	struct fab_mr *mr;
	/* current op */
	int busy;	   /* a request is being served */
	int need_reply;	   /* RMA done, reply not yet posted */
	int send_inflight; /* reply posted, completion not yet seen */
	uint64_t seq;
	size_t next_off;
	int outstanding;
	int bad;
	struct opctx rma_ctx[RMA_WINDOW];
	int rma_free[RMA_WINDOW], nfree;
	struct opctx send_ctx;
	struct msg *reply;
};

static void server_post_recv(struct fab_ep *ep, struct msg *slots, void *desc, struct opctx *rctx,
			     int i)
{
	uint64_t t = lat_now_ns();
	int r;
	while ((r = fab_post_recv(ep, &slots[i], sizeof(slots[i]), desc, &rctx[i].fc)) == -EAGAIN) {
		struct fab_cqe c[1];
		(void)c;
		if (lat_now_ns() - t > (uint64_t)o.timeout_ms * 1000000ull)
			die("server: fi_recv stays busy");
		sched_yield();
	}
	if (r)
		die("server: fi_recv: %s", strerror(-r));
}

static int run_server(int lfd)
{
	struct fab_ep *ep;
	struct fab_open_args fa = {.provider = o.prov,
				   .node = strcmp(o.prov, "tcp") == 0 ? "127.0.0.1" : NULL};
	int r = fab_open(&ep, &fa);
	if (r)
		die("server: fab_open(%s): %s", o.prov, strerror(-r));
	size_t maxmsg = fab_max_msg_size(ep);
	size_t chunk = o.chunk && o.chunk < maxmsg ? o.chunk : maxmsg;
	int nthr = o.threads;
	struct sclient *cl = calloc((size_t)nthr, sizeof(*cl));
	int nrecv = 2 * nthr;
	/* msg region: nrecv receive slots + one reply per client */
	struct msg *slots = aligned_alloc(
	    4096, (4096 + sizeof(struct msg) * (size_t)(nrecv + nthr) + 4095) & ~(size_t)4095);
	struct opctx *rctx = calloc((size_t)nrecv, sizeof(*rctx));
	struct fab_mr *msg_mr;
	if (!cl || !slots || !rctx)
		die("server: out of memory");
	memset(slots, 0, sizeof(struct msg) * (size_t)(nrecv + nthr));
	r = fab_mr_reg(ep, slots, sizeof(struct msg) * (size_t)(nrecv + nthr),
		       FAB_ACC_SEND | FAB_ACC_RECV, &msg_mr);
	if (r)
		die("server: fab_mr_reg(msg): %s", strerror(-r));
	void *mdesc = fab_mr_desc(msg_mr);

	for (int i = 0; i < nrecv; i++) {
		rctx[i].kind = K_RECV;
		rctx[i].idx = i;
		server_post_recv(ep, slots, mdesc, rctx, i);
	}

	uint8_t myname[FAB_NAME_MAX];
	size_t mylen = sizeof(myname);
	r = fab_getname(ep, myname, &mylen);
	if (r)
		die("server: fab_getname: %s", strerror(-r));

	/* Accept every client and exchange addresses. */
	for (int n = 0; n < nthr; n++) {
		struct pollfd pfd = {.fd = lfd, .events = POLLIN};
		if (poll(&pfd, 1, o.timeout_ms) <= 0)
			die("server: client %d did not connect within %d ms", n, o.timeout_ms);
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			die("server: accept: %s", strerror(errno));
		struct hello h;
		if (io_full(fd, &h, sizeof(h), 0, o.timeout_ms) || h.magic != MAGIC ||
		    h.tid >= (uint32_t)nthr || h.namelen > FAB_NAME_MAX || cl[h.tid].buf)
			die("server: bad hello from client %d", n);
		if (h.size != o.size || (int)h.write != o.write || h.nthreads != (uint32_t)nthr)
			die("server: client options differ from ours (size/op/threads)");
		struct sclient *c = &cl[h.tid];
		c->fd = fd;
		c->tid = h.tid;
		c->raddr = h.raddr;
		c->rkey = h.rkey;
		c->count = h.count;
		c->reply = &slots[nrecv + (int)h.tid];
		c->send_ctx.kind = K_SEND;
		c->send_ctx.idx = (int)h.tid;
		c->nfree = RMA_WINDOW;
		for (int k = 0; k < RMA_WINDOW; k++) {
			c->rma_ctx[k].kind = K_RMA;
			c->rma_ctx[k].idx = (int)h.tid;
			c->rma_free[k] = k;
		}
		c->buf = aligned_alloc(4096, (o.size + 4095) & ~(size_t)4095);
		if (!c->buf)
			die("server: out of memory for %zu bytes", o.size);
		if (o.write)
			fill(c->buf, o.size, c->tid);
		else
			memset(c->buf, 0, o.size);
		r = fab_mr_reg(ep, c->buf, o.size, FAB_ACC_WRITE | FAB_ACC_READ, &c->mr);
		if (r)
			die("server: fab_mr_reg(%zu): %s", o.size, strerror(-r));
		r = fab_av_insert(ep, h.name, h.namelen, &c->addr);
		if (r)
			die("server: fab_av_insert: %s", strerror(-r));
		struct welcome w = {.magic = MAGIC, .namelen = (uint32_t)mylen};
		memcpy(w.name, myname, mylen);
		if (io_full(fd, &w, sizeof(w), 1, o.timeout_ms))
			die("server: sending welcome failed");
		if (c->count == 0)
			c->done = 1;
	}

	int remaining = 0;
	for (int i = 0; i < nthr; i++)
		remaining += !cl[i].done;
	uint64_t last_progress = lat_now_ns(), last_sock_check = last_progress;
	while (remaining > 0) {
		struct fab_cqe cq[16];
		int n = fab_poll(ep, cq, 16, 0);
		uint64_t t = lat_now_ns();
		if (n == 0) {
			if (t - last_progress > (uint64_t)o.timeout_ms * 1000000ull)
				die("server: no progress for %d ms (%d clients unfinished)",
				    o.timeout_ms, remaining);
			if (t - last_sock_check > 100000000ull) {
				/* A client's TCP socket readable = it closed (or died). */
				last_sock_check = t;
				for (int i = 0; i < nthr; i++) {
					struct pollfd pfd = {.fd = cl[i].fd, .events = POLLIN};
					if (!cl[i].done && poll(&pfd, 1, 0) > 0)
						die("server: client %d went away", i);
				}
			}
			n = idle(ep, last_progress, cq, 16);
		}
		if (n < 0)
			die("server: fab_poll: %s", strerror(-n));
		if (n > 0)
			last_progress = t;
		for (int i = 0; i < n; i++) {
			struct opctx *x = cq[i].ctx;
			if (cq[i].err)
				die("server: completion error %s", strerror(-cq[i].err));
			if (x->kind == K_RECV) {
				struct msg m = slots[x->idx];
				server_post_recv(ep, slots, mdesc, rctx, x->idx);
				if (cq[i].len < sizeof(m) || m.magic != MAGIC ||
				    m.tid >= (uint32_t)nthr || cl[m.tid].busy)
					die("server: bad request");
				struct sclient *c = &cl[m.tid];
				c->busy = 1;
				c->seq = m.seq;
				c->next_off = 0;
				c->bad = 0;
			} else if (x->kind == K_RMA) {
				struct sclient *c = &cl[x->idx];
				c->rma_free[c->nfree++] = (int)(x - c->rma_ctx);
				c->outstanding--;
				if (c->outstanding == 0 && c->next_off >= o.size) {
					if (!o.write && c->served == 0 &&
					    check(c->buf, o.size, c->tid))
						c->bad = 1;
					c->need_reply = 1;
				}
			} else if (x->kind == K_SEND) {
				struct sclient *c = &cl[x->idx];
				c->send_inflight = 0;
				if (c->served == c->count && !c->done) {
					c->done = 1;
					remaining--;
				}
			}
		}
		/* Post what can be posted. */
		for (int i = 0; i < nthr; i++) {
			struct sclient *c = &cl[i];
			while (c->busy && !c->need_reply && c->next_off < o.size && c->nfree > 0) {
				size_t len = o.size - c->next_off;
				if (len > chunk)
					len = chunk;
				struct iovec iov = {c->buf + c->next_off, len};
				void *desc = fab_mr_desc(c->mr);
				struct opctx *x = &c->rma_ctx[c->rma_free[c->nfree - 1]];
				r = o.write
					? fab_post_write(ep, &iov, &desc, 1, c->addr,
							 c->raddr + c->next_off, c->rkey, &x->fc)
					: fab_post_read(ep, &iov, &desc, 1, c->addr,
							c->raddr + c->next_off, c->rkey, &x->fc);
				if (r == -EAGAIN)
					break;
				if (r)
					die("server: RMA post: %s", strerror(-r));
				c->nfree--;
				c->outstanding++;
				c->next_off += len;
			}
			if (c->need_reply && !c->send_inflight) {
				*c->reply = (struct msg){
				    .magic = MAGIC, .tid = c->tid, .seq = c->seq, .status = c->bad};
				r = fab_post_send(ep, c->reply, sizeof(*c->reply), mdesc, c->addr,
						  &c->send_ctx.fc);
				if (r == -EAGAIN)
					continue;
				if (r)
					die("server: fi_send: %s", strerror(-r));
				c->send_inflight = 1;
				c->need_reply = 0;
				c->busy = 0;
				c->served++;
			}
		}
	}
	/* Each client closes its TCP socket when it is done; wait for that (bounded). */
	for (int i = 0; i < nthr; i++) {
		char b;
		io_full(cl[i].fd, &b, 1, 0, 2000);
		close(cl[i].fd);
	}
	for (int i = 0; i < nthr; i++) {
		fab_mr_close(cl[i].mr);
		free(cl[i].buf);
	}
	fab_mr_close(msg_mr);
	fab_close(ep);
	free(slots);
	free(rctx);
	free(cl);
	return 0;
}

/* ---- client ---- */

struct cthread {
	pthread_t th;
	uint32_t tid;
	uint64_t count, nwarm;
	uint64_t *lat;
	uint64_t t_start, t_end;
	const char *err;
};

static pthread_barrier_t barrier;
static int server_port;

struct cctx {
	struct fab_ctx fc;
	int kind;
};

/* Wait for both the request's send completion and the reply, or fail. */
static const char *client_wait(struct fab_ep *ep, struct cctx *sctx, struct cctx *rctx, int *sent,
			       int *got)
{
	uint64_t start = lat_now_ns();
	uint64_t deadline = start + (uint64_t)o.timeout_ms * 1000000ull;
	while (!*sent || !*got) {
		struct fab_cqe cq[4];
		int n = fab_poll(ep, cq, 4, 0);
		if (n == 0) {
			if (lat_now_ns() > deadline)
				return "timed out waiting for the server's reply";
			n = idle(ep, start, cq, 4);
		}
		if (n < 0)
			return "fab_poll failed";
		for (int i = 0; i < n; i++) {
			if (cq[i].err)
				return "completion error";
			if (cq[i].ctx == sctx)
				*sent = 1;
			else if (cq[i].ctx == rctx)
				*got = 1;
		}
	}
	return NULL;
}

static void *client_thread(void *arg)
{
	struct cthread *ct = arg;
	struct fab_ep *ep = NULL;
	struct fab_mr *mr = NULL, *msg_mr = NULL;
	unsigned char *buf = NULL;
	struct msg *m = NULL;
	int fd = -1, r;
	int joined = 0;
	struct fab_open_args fa = {.provider = o.prov,
				   .node = strcmp(o.prov, "tcp") == 0 ? "127.0.0.1" : NULL};

	r = fab_open(&ep, &fa);
	if (r) {
		ct->err = "fab_open failed";
		goto out;
	}
	buf = aligned_alloc(4096, (o.size + 4095) & ~(size_t)4095);
	m = aligned_alloc(4096, 4096);
	if (!buf || !m) {
		ct->err = "out of memory";
		goto out;
	}
	if (o.write)
		memset(buf, 0, o.size);
	else
		fill(buf, o.size, ct->tid);
	r = fab_mr_reg(ep, buf, o.size, FAB_ACC_REMOTE_WRITE | FAB_ACC_REMOTE_READ, &mr);
	if (!r)
		r = fab_mr_reg(ep, m, 4096, FAB_ACC_SEND | FAB_ACC_RECV, &msg_mr);
	if (r) {
		ct->err = "fab_mr_reg failed";
		goto out;
	}
	struct hello h = {.magic = MAGIC,
			  .tid = ct->tid,
			  .nthreads = (uint32_t)o.threads,
			  .write = (uint32_t)o.write,
			  .size = o.size,
			  .count = ct->nwarm + ct->count,
			  .raddr = fab_mr_remote_base(mr),
			  .rkey = fab_mr_key(mr)};
	size_t nl = sizeof(h.name);
	if (fab_getname(ep, h.name, &nl)) {
		ct->err = "fab_getname failed";
		goto out;
	}
	h.namelen = (uint32_t)nl;
	fd = tcp_connect(server_port, o.timeout_ms);
	if (fd < 0) {
		ct->err = "cannot connect to the server's TCP port";
		goto out;
	}
	struct welcome w;
	if (io_full(fd, &h, sizeof(h), 1, o.timeout_ms) ||
	    io_full(fd, &w, sizeof(w), 0, o.timeout_ms) || w.magic != MAGIC ||
	    w.namelen > FAB_NAME_MAX) {
		ct->err = "bootstrap with the server failed";
		goto out;
	}
	fab_addr_t srv;
	if (fab_av_insert(ep, w.name, w.namelen, &srv)) {
		ct->err = "fab_av_insert failed";
		goto out;
	}
	void *mdesc = fab_mr_desc(msg_mr);
	struct msg *req = &m[0], *rep = &m[1];
	struct cctx sctx = {.kind = 1}, rctx = {.kind = 2};

	/* Untimed warm-up ops first (connection set-up, caches), like kvfsctl bench. */
	for (uint64_t i = 0; i < ct->nwarm + ct->count; i++) {
		int sent = 0, got = 0;
		if (i == ct->nwarm) {
			pthread_barrier_wait(&barrier);
			joined = 1;
			ct->t_start = lat_now_ns();
		}
		memset(rep, 0, sizeof(*rep));
		uint64_t t0 = lat_now_ns();
		while ((r = fab_post_recv(ep, rep, sizeof(*rep), mdesc, &rctx.fc)) == -EAGAIN)
			fab_poll(ep, (struct fab_cqe[1]){{0}}, 1, 0);
		*req = (struct msg){.magic = MAGIC, .tid = ct->tid, .seq = i};
		while (!r) {
			r = fab_post_send(ep, req, sizeof(*req), mdesc, srv, &sctx.fc);
			if (r != -EAGAIN || lat_now_ns() - t0 > (uint64_t)o.timeout_ms * 1000000ull)
				break;
			r = 0;
			struct fab_cqe c[4];
			int n = fab_poll(ep, c, 4, 0);
			for (int k = 0; k < n; k++)
				if (c[k].ctx == &rctx)
					got = 1;
		}
		if (r) {
			ct->err = "posting the request failed";
			goto out;
		}
		ct->err = client_wait(ep, &sctx, &rctx, &sent, &got);
		uint64_t t1 = lat_now_ns();
		if (ct->err)
			goto out;
		if (i >= ct->nwarm)
			ct->lat[i - ct->nwarm] = t1 - t0;
		if (rep->magic != MAGIC || rep->seq != i || rep->status) {
			ct->err =
			    rep->status ? "server saw wrong bytes after its RMA read" : "bad reply";
			goto out;
		}
		if (i == 0 && o.write && check(buf, o.size, ct->tid)) {
			ct->err = "wrong bytes after the server's RMA write";
			goto out;
		}
	}
	ct->t_end = lat_now_ns();
out:
	if (!joined)
		pthread_barrier_wait(&barrier);
	if (fd >= 0)
		close(fd);
	fab_mr_close(mr);
	fab_mr_close(msg_mr);
	fab_close(ep);
	free(buf);
	free(m);
	return NULL;
}

static int run_clients(void)
{
	struct cthread *ct = calloc((size_t)o.threads, sizeof(*ct));
	uint64_t *lat = calloc((size_t)o.count ? (size_t)o.count : 1, sizeof(uint64_t));
	if (!ct || !lat)
		die("out of memory");
	pthread_barrier_init(&barrier, NULL, (unsigned)o.threads);
	uint64_t off = 0;
	for (int i = 0; i < o.threads; i++) {
		ct[i].tid = (uint32_t)i;
		ct[i].count = (uint64_t)(o.count / o.threads + (i < o.count % o.threads));
		ct[i].nwarm = ct[i].count / 10 < 100 ? ct[i].count / 10 : 100;
		ct[i].lat = lat + off;
		off += ct[i].count;
		if (pthread_create(&ct[i].th, NULL, client_thread, &ct[i]))
			die("pthread_create failed");
	}
	int fail = 0;
	uint64_t t0 = UINT64_MAX, t1 = 0;
	for (int i = 0; i < o.threads; i++) {
		pthread_join(ct[i].th, NULL);
		if (ct[i].err) {
			fprintf(stderr, "rma_bench: client thread %d: %s\n", i, ct[i].err);
			fail = 1;
		}
		if (ct[i].t_start < t0)
			t0 = ct[i].t_start;
		if (ct[i].t_end > t1)
			t1 = ct[i].t_end;
	}
	if (fail)
		return 1;
	struct lat_summary ls;
	lat_summarize(lat, (size_t)o.count, &ls);
	lat_rates(&ls, o.size, t0, t1);
	const char *op = o.write ? "write" : "read";
	if (o.json)
		printf("{\"provider\":\"%s\",\"op\":\"%s\",\"size\":%zu,\"count\":%ld,"
		       "\"threads\":%d,",
		       o.prov, op, o.size, o.count, o.threads);
	else
		printf("rma %s (%s) size %zu count %ld threads %d", op, o.prov, o.size, o.count,
		       o.threads);
	lat_print_stats(stdout, &ls, o.json);
	fflush(stdout);
	free(lat);
	free(ct);
	return 0;
}

/* BYTES with an optional K/M/G/T suffix (config_parse_size), or die. */
static size_t size_arg(const char *s)
{
	uint64_t v;

	if (config_parse_size(s, &v) < 0 || v > SIZE_MAX)
		die("bad size '%s'", s);
	return (size_t)v;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: rma_bench --provider shm|tcp --op write|read --size BYTES --count N\n"
		"                 [--threads T] [--json] [--port P [--serve]] [--chunk BYTES]\n"
		"                 [--timeout MS] [--deadline S] [--spin-us US] [--nap-us US]\n"
		"  op write: server fi_write()s size bytes into the client's buffer (like a GET)\n"
		"  op read:  server fi_read()s size bytes out of the client's buffer (like a PUT)\n"
		"  count is the total over all threads. Without --port, forks the server.\n"
		"  --serve --port P: only the server; --port P alone: only the clients.\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"provider", 1, 0, 'p'}, {"op", 1, 0, 'o'},	      {"size", 1, 0, 's'},
	    {"count", 1, 0, 'n'},    {"threads", 1, 0, 't'},  {"json", 0, 0, 'j'},
	    {"port", 1, 0, 'P'},     {"serve", 0, 0, 'S'},    {"chunk", 1, 0, 'c'},
	    {"timeout", 1, 0, 'T'},  {"deadline", 1, 0, 'D'}, {"spin-us", 1, 0, 'y'},
	    {"nap-us", 1, 0, 'b'},   {"help", 0, 0, 'h'},     {0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'p':
			o.prov = optarg;
			break;
		case 'o':
			if (strcmp(optarg, "write") == 0 || strcmp(optarg, "get") == 0)
				o.write = 1;
			else if (strcmp(optarg, "read") == 0 || strcmp(optarg, "put") == 0)
				o.write = 0;
			else
				usage();
			break;
		case 's':
			o.size = size_arg(optarg);
			break;
		case 'n':
			o.count = atol(optarg);
			break;
		case 't':
			o.threads = atoi(optarg);
			break;
		case 'j':
			o.json = 1;
			break;
		case 'P':
			o.port = atoi(optarg);
			break;
		case 'S':
			o.serve = 1;
			break;
		case 'c':
			o.chunk = size_arg(optarg);
			break;
		case 'T':
			o.timeout_ms = atoi(optarg);
			break;
		case 'D':
			o.deadline_s = atoi(optarg);
			break;
		case 'y':
			o.spin_us = atoi(optarg);
			break;
		case 'b':
			o.nap_us = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || o.size == 0 || o.count < 0 || o.threads < 1 || o.threads > MAX_THR ||
	    o.timeout_ms <= 0 || o.port < 0 || o.port > 65535 || (o.serve && !o.port) ||
	    o.count < o.threads)
		usage();
	if (strcmp(o.prov, "shm") != 0 && strcmp(o.prov, "tcp") != 0)
		die("provider must be shm or tcp (loopback only)");
	log_set_ident("rma_bench");
	if (o.deadline_s > 0)
		alarm((unsigned)o.deadline_s); /* SIGALRM ends the process: a hard bound */

	if (o.serve) {
		int bound;
		int lfd = tcp_listen(o.port, &bound);
		return run_server(lfd);
	}
	if (o.port) {
		server_port = o.port;
		return run_clients();
	}
	int lfd = tcp_listen(0, &server_port);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		/* Clients: die with the server. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		close(lfd);
		fflush(stdout);
		_exit(run_clients());
	}
	int rc = run_server(lfd);
	int st = 0;
	/* The clients finish right after their last reply; bounded wait anyway. */
	for (int i = 0; i < 500; i++) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			return rc ? rc : (WIFEXITED(st) ? WEXITSTATUS(st) : 1);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return 1;
}
