/*
 * service: kvfs-server's fabric side. One thread per endpoint receives
 * requests, runs them against the store and replies; value bytes move by RMA
 * that this side initiates (GET: fi_write into the client's region; PUT and
 * upload writes: fi_read out of it). The pool is registered for local access
 * only, so no client can read or write server memory.
 *
 * Every receive buffer owns one struct op for the request it carries; the
 * buffer is re-posted when the op's reply has been sent. So at most NRX
 * requests are in flight per endpoint, with no allocation on the hot path.
 * An op moving bytes keeps up to WINDOW RMA pieces in flight; each piece has
 * its own libfabric context. An item being read is pinned (store_get) until
 * its last piece completes; an upload being written or read back (UP_READ)
 * is marked busy until then.
 *
 * Pins (PIN, PIN_GET, UNPIN): a session may hold up to MAX_PINS items pinned
 * in the store for long (a reader's open file), each named by a handle that
 * carries its table index, so PIN_GET finds it in O(1). A pinned item keeps
 * its bytes while it is replaced or deleted. Every PIN_GET takes a pin of its
 * own for its transfer (like a GET), so reads of one handle run concurrently
 * and an UNPIN never pulls the bytes from under an RMA in flight.
 *
 * A session is dropped when its TCP channel closes: no new RMA is started for
 * it, and it is freed (uploads aborted, pins released, address removed) once
 * nothing of it is in flight any more.
 */
#include "service.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>

#include "common/log.h"

#define NRX	      256
#define WINDOW	      8
#define PIECE_MAX     (64u << 20)
#define MAX_SESS      4096
#define MAX_UPS	      1024
#define MAX_PINS      4096 /* per session; the table doubles from 16 up to it */
#define PIN_IDX_BITS  16
#define PIN_NONE      UINT32_MAX
#define SPIN_NS	      (50 * 1000)	 /* idle: busy-poll this long, */
#define YIELD_NS      (300 * 1000)	 /* then poll yielding the core up to this, */
#define SHORT_NAP_US  20		 /* then nap this long at a time */
#define SHORT_NAPS_NS (20 * 1000 * 1000) /* for this long, then longer naps */
#define NAP_MAX_US    1000
#define STOP_GRACE_MS 3000

enum ctx_kind { CTX_RECV, CTX_SEND, CTX_RMA };

struct op;
struct opctx {
	struct fab_ctx fc; /* first: libfabric hands this pointer back */
	enum ctx_kind kind;
	struct op *op;
	uint64_t bytes; /* RMA piece length */
	int busy;
};

struct upslot {
	uint64_t id;
	struct upload *up;
	int busy;
};

_Static_assert(MAX_PINS <= 1 << PIN_IDX_BITS, "pin table index must fit a handle's low bits");

/* A pinned item; handle 0 = free slot, then next_free links it. */
struct pinslot {
	uint64_t handle; /* sequence << PIN_IDX_BITS | index in session.pins */
	struct item *it;
	uint32_t next_free;
};

struct session {
	uint64_t id, token;
	fab_addr_t addr;
	int dead, inflight;
	struct wire_region regions[REGION_MAX];
	unsigned access[REGION_MAX]; /* FAB_ACC_REMOTE_* granted by the client; 0 = unused */
	struct upslot *ups;
	int n_ups;
	uint64_t next_up;
	struct pinslot *pins;
	uint32_t pin_cap, n_pins, pin_free; /* pin_free: first free slot or PIN_NONE */
	uint64_t pin_seq;		    /* sequence of the last handle given out */
	unsigned bad_msgs;
};

struct op {
	struct opctx rx_ctx, tx_ctx, rma[WINDOW];
	struct svc_ep *e;
	uint8_t *rx, *tx;
	struct wire_req req;
	struct wire_rep rep;
	struct session *sess;
	int busy;
	enum { STAGE_RX, STAGE_RMA, STAGE_REPLY } stage; /* what a retry after -EAGAIN resumes */

	/* RMA transfer in progress */
	int writing;	   /* 1: pool -> client (fi_write), 0: client -> pool (fi_read) */
	struct item *item; /* writing: the pinned GET source, or NULL for UP_READ */
	struct upload *up; /* UP_READ source, UP_WRITE / PUT target */
	uint64_t up_id;	   /* UP_WRITE / UP_READ slot (busy until done), 0 for a whole PUT */
	uint64_t src_off, total, next;
	uint64_t raddr, rkey;
	int outstanding, err;
	int pending; /* on e->pending: waiting to post after -EAGAIN */
	int tx_len;
	struct op *next_pending;
};

struct svc_ep {
	struct srv *srv;
	char provider[32];
	struct fab_ep *ep;
	struct fab_mr *pool_mr, *msg_mr;
	size_t msg_size;
	uint8_t *msgs;
	struct op ops[NRX];
	int busy_ops;
	struct op *pending_head, *pending_tail;
	struct session *sess[MAX_SESS];
	uint32_t sess_gen;
	int n_sess;

	pthread_t thread;
	int started;
	pthread_mutex_t cmd_lock;
	pthread_cond_t cmd_cond;
	struct svc_cmd *cmds; /* cmd_lock */
	atomic_int n_cmds;    /* queued commands, read without cmd_lock */
	int exited;	      /* cmd_lock: the service thread is gone */
};

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void store_attr_from(struct store_attr *a, const struct wire_sa *sa)
{
	a->mask = sa->mask;
	a->mode = sa->mode;
	a->uid = sa->uid;
	a->gid = sa->gid;
	a->mtime_ns = sa->mtime_ns;
	a->ttl = sa->ttl;
}

/* ---- sessions ---------------------------------------------------------- */

static struct session *sess_lookup(struct svc_ep *e, uint64_t id, uint64_t token)
{
	struct session *s = e->sess[id % MAX_SESS];
	if (!s || s->id != id || s->token != token || s->dead)
		return NULL;
	return s;
}

static struct upslot *up_find(struct session *s, uint64_t id)
{
	for (int i = 0; i < s->n_ups; i++)
		if (s->ups[i].id == id)
			return &s->ups[i];
	return NULL;
}

static void up_remove(struct session *s, struct upslot *u)
{
	*u = s->ups[--s->n_ups];
}

static void sess_free(struct svc_ep *e, struct session *s)
{
	struct srv *srv = e->srv;
	pthread_mutex_lock(&srv->store_lock);
	for (int i = 0; i < s->n_ups; i++)
		store_upload_abort(srv->store, s->ups[i].up);
	for (uint32_t i = 0; i < s->pin_cap; i++)
		if (s->pins[i].handle)
			store_release(srv->store, s->pins[i].it);
	pthread_mutex_unlock(&srv->store_lock);
	fab_av_remove(e->ep, s->addr);
	e->sess[s->id % MAX_SESS] = NULL;
	e->n_sess--;
	atomic_fetch_sub(&srv->ctr.sessions, 1);
	log_info("session %llx closed", (unsigned long long)s->id);
	free(s->ups);
	free(s->pins);
	free(s);
}

static void cmd_add(struct svc_ep *e, struct svc_cmd *c)
{
	struct session *s = NULL;
	int idx = -1;
	for (int i = 0; i < MAX_SESS; i++) {
		int j = (int)((e->sess_gen + (uint32_t)i) % MAX_SESS);
		if (!e->sess[j]) {
			idx = j;
			break;
		}
	}
	if (idx < 0) {
		c->result = -EUSERS;
		return;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		c->result = -ENOMEM;
		return;
	}
	c->result = fab_av_insert(e->ep, c->setup.addr, &s->addr);
	if (c->result) {
		free(s);
		return;
	}
	e->sess_gen++;
	s->id = ((uint64_t)e->sess_gen << 16) * MAX_SESS + (uint64_t)idx;
	wire_random(&s->token, sizeof(s->token));
	s->regions[REGION_RECV] = c->setup.recv;
	s->access[REGION_RECV] = FAB_ACC_REMOTE_WRITE;
	s->regions[REGION_STAGING] = c->setup.staging;
	s->access[REGION_STAGING] = FAB_ACC_REMOTE_READ;
	s->next_up = 1;
	s->pin_free = PIN_NONE;
	e->sess[idx] = s;
	e->n_sess++;
	atomic_fetch_add(&e->srv->ctr.sessions, 1);
	c->session = s->id;
	c->token = s->token;
}

static void cmd_drop(struct svc_ep *e, uint64_t id)
{
	struct session *s = e->sess[id % MAX_SESS];
	if (!s || s->id != id)
		return;
	s->dead = 1;
	if (s->inflight == 0)
		sess_free(e, s);
}

static void run_commands(struct svc_ep *e)
{
	if (!atomic_load_explicit(&e->n_cmds, memory_order_acquire))
		return; /* the hot loop's common case: no lock taken */
	pthread_mutex_lock(&e->cmd_lock);
	while (e->cmds) {
		struct svc_cmd *c = e->cmds;
		e->cmds = c->next;
		if (c->kind == CMD_ADD)
			cmd_add(e, c);
		else
			cmd_drop(e, c->drop_id);
		c->done = 1;
		atomic_fetch_sub(&e->n_cmds, 1);
	}
	pthread_cond_broadcast(&e->cmd_cond);
	pthread_mutex_unlock(&e->cmd_lock);
}

void svc_ep_command(struct svc_ep *e, struct svc_cmd *c)
{
	pthread_mutex_lock(&e->cmd_lock);
	c->done = 0;
	c->next = e->cmds;
	e->cmds = c;
	atomic_fetch_add(&e->n_cmds, 1);
	if (e->exited) {
		/* No service thread any more (shutdown): carry it out here. */
		pthread_mutex_unlock(&e->cmd_lock);
		run_commands(e);
		return;
	}
	while (!c->done)
		pthread_cond_wait(&e->cmd_cond, &e->cmd_lock);
	pthread_mutex_unlock(&e->cmd_lock);
}

/* ---- posting ------------------------------------------------------------ */

static void pending_push(struct svc_ep *e, struct op *o)
{
	if (o->pending)
		return;
	o->pending = 1;
	o->next_pending = NULL;
	if (e->pending_tail)
		e->pending_tail->next_pending = o;
	else
		e->pending_head = o;
	e->pending_tail = o;
}

static void post_rx(struct svc_ep *e, struct op *o)
{
	o->busy = 0;
	o->stage = STAGE_RX;
	int ret = fab_post_recv(e->ep, o->rx, e->msg_size, fab_mr_desc(e->msg_mr), &o->rx_ctx.fc);
	if (ret == -EAGAIN) {
		pending_push(e, o);
		return;
	}
	if (ret)
		log_error("cannot post a receive buffer: %s", strerror(-ret));
}

static void post_reply(struct svc_ep *e, struct op *o)
{
	int ret = fab_post_send(e->ep, o->tx, (size_t)o->tx_len, fab_mr_desc(e->msg_mr),
				o->sess->addr, &o->tx_ctx.fc);
	if (ret == -EAGAIN) {
		pending_push(e, o);
		return;
	}
	if (ret) {
		/* The peer is unreachable; the op is over. */
		o->sess->inflight--;
		if (o->sess->dead && o->sess->inflight == 0)
			sess_free(e, o->sess);
		e->busy_ops--;
		post_rx(e, o);
	}
}

/* Encode o->rep (data possibly in place) and send it. */
static void reply(struct svc_ep *e, struct op *o)
{
	o->stage = STAGE_REPLY;
	o->rep.op = o->req.op;
	o->rep.req_id = o->req.req_id;
	o->tx_len = wire_rep_encode(o->tx, e->msg_size, &o->rep);
	if (o->tx_len < 0) {
		log_error("reply does not fit a message");
		o->rep.status = -EMSGSIZE;
		o->rep.dlen = 0;
		o->rep.data = NULL;
		o->tx_len = wire_rep_encode(o->tx, e->msg_size, &o->rep);
	}
	post_reply(e, o);
}

static void reply_status(struct svc_ep *e, struct op *o, int status)
{
	o->rep.status = status;
	reply(e, o);
}

/* ---- RMA ---------------------------------------------------------------- */

static struct opctx *free_piece(struct op *o)
{
	for (int i = 0; i < WINDOW; i++)
		if (!o->rma[i].busy)
			return &o->rma[i];
	return NULL;
}

static void rma_finish(struct svc_ep *e, struct op *o);

/* Post as many pieces as the window and the provider take. */
static void rma_pump(struct svc_ep *e, struct op *o)
{
	struct srv *srv = e->srv;
	size_t iov_max = fab_iov_limit(e->ep);
	if (iov_max > 16)
		iov_max = 16;
	size_t piece_max = fab_max_msg_size(e->ep);
	if (piece_max > PIECE_MAX)
		piece_max = PIECE_MAX;

	while (!o->err && o->next < o->total && !o->sess->dead) {
		struct opctx *pc = free_piece(o);
		if (!pc)
			return;
		struct iovec iov[16];
		void *desc[16];
		uint64_t want = o->total - o->next, covered = 0;
		long n;
		if (want > piece_max)
			want = piece_max;
		if (o->writing && o->item) {
			n = (long)store_item_iov(o->item, o->src_off + o->next, want, iov, iov_max,
						 &covered);
		} else if (o->writing) {
			pthread_mutex_lock(&srv->store_lock);
			n = (long)store_upload_read_iov(srv->store, o->up, o->src_off + o->next,
							want, iov, iov_max, &covered);
			pthread_mutex_unlock(&srv->store_lock);
		} else {
			pthread_mutex_lock(&srv->store_lock);
			n = store_upload_iov(srv->store, o->up, o->src_off + o->next, want, iov,
					     iov_max, &covered);
			pthread_mutex_unlock(&srv->store_lock);
		}
		if (n <= 0 || covered == 0) {
			o->err = n < 0 ? (int)n : -EIO;
			break;
		}
		for (long i = 0; i < n; i++)
			desc[i] = fab_mr_desc(e->pool_mr);
		int ret = o->writing ? fab_post_write(e->ep, iov, desc, (size_t)n, o->sess->addr,
						      o->raddr + o->next, o->rkey, &pc->fc)
				     : fab_post_read(e->ep, iov, desc, (size_t)n, o->sess->addr,
						     o->raddr + o->next, o->rkey, &pc->fc);
		if (ret == -EAGAIN) {
			pending_push(e, o);
			return;
		}
		if (ret) {
			o->err = -EIO;
			break;
		}
		pc->busy = 1;
		pc->bytes = covered;
		o->next += covered;
		o->outstanding++;
	}
	if (o->sess->dead && !o->err)
		o->err = -ECONNRESET;
	if (o->outstanding == 0)
		rma_finish(e, o);
}

static void rma_start(struct svc_ep *e, struct op *o, int writing, uint64_t raddr, uint64_t rkey)
{
	o->stage = STAGE_RMA;
	o->writing = writing;
	o->raddr = raddr;
	o->rkey = rkey;
	o->next = 0;
	o->outstanding = 0;
	o->err = 0;
	rma_pump(e, o);
}

/* An UP_WRITE or UP_READ is over: the upload's slot is free again. */
static void up_done(struct op *o)
{
	struct upslot *u = up_find(o->sess, o->up_id);
	if (u)
		u->busy = 0;
	o->rep.attr.size = store_upload_size(o->up);
	o->up_id = 0;
	o->up = NULL;
}

static void rma_finish(struct svc_ep *e, struct op *o)
{
	struct srv *srv = e->srv;
	int err = o->err;
	o->rep.n = err ? 0 : o->total;
	if (o->writing) {
		if (o->item) {
			pthread_mutex_lock(&srv->store_lock);
			store_release(srv->store, o->item);
			pthread_mutex_unlock(&srv->store_lock);
			o->item = NULL;
		} else {
			up_done(o);
		}
		if (!err)
			atomic_fetch_add(&srv->ctr.bytes_out, o->total);
	} else if (!o->up_id) {
		/* Whole-value PUT through an internal upload: publish or drop. */
		struct store_attr a;
		store_attr_from(&a, &o->req.sa);
		pthread_mutex_lock(&srv->store_lock);
		if (!err)
			err = store_upload_commit(srv->store, o->up, &a, now_s(), &o->rep.attr);
		else
			store_upload_abort(srv->store, o->up);
		pthread_mutex_unlock(&srv->store_lock);
		o->up = NULL;
		if (!err)
			atomic_fetch_add(&srv->ctr.bytes_in, o->total);
	} else {
		up_done(o);
		if (!err)
			atomic_fetch_add(&srv->ctr.bytes_in, o->total);
	}
	if (err == -ECONNRESET || err == -ECANCELED)
		err = -EIO;
	reply_status(e, o, err);
}

/*
 * Check a buffer descriptor from the wire against the session's registered
 * regions. Returns 0 with the remote address and key, or -errno.
 */
static int check_desc(struct session *s, const struct wire_desc *d, uint64_t need, unsigned access,
		      uint64_t *raddr, uint64_t *rkey, const char **why)
{
	if (d->region == REGION_INLINE || d->region >= REGION_MAX || !s->access[d->region]) {
		*why = "unknown buffer region";
		return -EINVAL;
	}
	if (!(s->access[d->region] & access)) {
		*why = "region not registered for that access";
		return -EACCES;
	}
	const struct wire_region *g = &s->regions[d->region];
	if (d->len < need || d->off > g->len || d->len > g->len - d->off) {
		*why = "buffer descriptor outside the registered region";
		return -EFAULT;
	}
	*raddr = g->base + d->off;
	*rkey = g->key;
	return 0;
}

/* ---- request handlers ---------------------------------------------------- */

static uint8_t *rep_data(struct op *o)
{
	return o->tx + WIRE_REP_FIXED;
}

static size_t rep_room(struct svc_ep *e)
{
	return e->msg_size - WIRE_REP_FIXED;
}

/*
 * Send the request's range [off, off+len) of the pinned item it (GET,
 * PIN_GET; o->rep.attr already holds its attributes): inline in the reply
 * (region 0, or nothing to send), at most the inline threshold, else
 * RMA-written into the request's buffer descriptor. Takes over the caller's
 * pin on it: released once the bytes are sent, or at once on an error.
 * Returns 0 (replied) or -errno.
 */
static int send_item(struct svc_ep *e, struct op *o, struct item *it, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	uint64_t size = o->rep.attr.size;
	uint64_t n = q->off >= size ? 0 : size - q->off;
	if (n > q->len)
		n = q->len;
	if (q->buf.region == REGION_INLINE || n == 0) {
		if (n > srv->limits.inline_threshold)
			n = srv->limits.inline_threshold;
		uint64_t done = 0;
		while (done < n) {
			struct iovec iov[8];
			uint64_t cov;
			size_t k = store_item_iov(it, q->off + done, n - done, iov, 8, &cov);
			uint8_t *dst = rep_data(o) + done;
			for (size_t i = 0; i < k; i++) {
				memcpy(dst, iov[i].iov_base, iov[i].iov_len);
				dst += iov[i].iov_len;
			}
			done += cov;
		}
		pthread_mutex_lock(&srv->store_lock);
		store_release(srv->store, it);
		pthread_mutex_unlock(&srv->store_lock);
		atomic_fetch_add(&srv->ctr.bytes_out, n);
		o->rep.data = rep_data(o);
		o->rep.dlen = (uint32_t)n;
		o->rep.n = n;
		reply(e, o);
		return 0;
	}
	uint64_t raddr, rkey;
	int ret = check_desc(o->sess, &q->buf, n, FAB_ACC_REMOTE_WRITE, &raddr, &rkey, why);
	if (ret) {
		pthread_mutex_lock(&srv->store_lock);
		store_release(srv->store, it);
		pthread_mutex_unlock(&srv->store_lock);
		return ret;
	}
	o->item = it;
	o->src_off = q->off;
	o->total = n;
	rma_start(e, o, 1, raddr, rkey);
	return 0;
}

static int do_get(struct svc_ep *e, struct op *o, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	struct item *it;
	atomic_fetch_add(&srv->ctr.gets, 1);
	pthread_mutex_lock(&srv->store_lock);
	int ret = store_get(srv->store, q->key, q->klen, now_s(), &it);
	if (!ret)
		store_item_attr(it, &o->rep.attr);
	pthread_mutex_unlock(&srv->store_lock);
	if (ret) {
		atomic_fetch_add(&srv->ctr.misses, 1);
		return ret;
	}
	atomic_fetch_add(&srv->ctr.hits, 1);
	return send_item(e, o, it, why);
}

static struct pinslot *pin_find(struct session *s, uint64_t handle)
{
	uint64_t i = handle & ((1u << PIN_IDX_BITS) - 1);
	if (!handle || i >= s->pin_cap || s->pins[i].handle != handle)
		return NULL;
	return &s->pins[i];
}

/* Room for one more pin in s's table (grown by doubling up to MAX_PINS). */
static int pin_reserve(struct session *s)
{
	if (s->n_pins >= MAX_PINS)
		return -EMFILE;
	if (s->pin_free != PIN_NONE)
		return 0;
	uint32_t cap = s->pin_cap ? 2 * s->pin_cap : 16;
	struct pinslot *n = realloc(s->pins, sizeof(*n) * cap);
	if (!n)
		return -ENOMEM;
	for (uint32_t i = s->pin_cap; i < cap; i++)
		n[i] = (struct pinslot){.next_free = i + 1 < cap ? i + 1 : PIN_NONE};
	s->pin_free = s->pin_cap;
	s->pins = n;
	s->pin_cap = cap;
	return 0;
}

/*
 * PIN_GET with RQ_MAP: reply with where [off, off+len) of the pinned item
 * lies in the pool (for a client on this host that mapped it), n = the bytes
 * covered. The pin keeps those bytes in place; nothing is copied.
 */
static int pin_map(struct svc_ep *e, struct op *o, struct item *it, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	struct iovec iov[WIRE_MAP_SEGS];
	struct wire_seg seg[WIRE_MAP_SEGS];
	uint64_t cov;
	if (!srv->pool.pid) {
		*why = "pool not offered for mapping";
		return -EOPNOTSUPP;
	}
	pthread_mutex_lock(&srv->store_lock);
	store_item_attr(it, &o->rep.attr);
	size_t k = store_item_iov(it, q->off, q->len, iov, WIRE_MAP_SEGS, &cov);
	const uint8_t *base = store_pool_base(srv->store);
	pthread_mutex_unlock(&srv->store_lock);
	for (size_t i = 0; i < k; i++)
		seg[i] = (struct wire_seg){(uint64_t)((const uint8_t *)iov[i].iov_base - base),
					   iov[i].iov_len};
	int len = wire_segs_encode(rep_data(o), WIRE_MAP_SEGS * WIRE_SEG_SIZE, seg, (int)k);
	atomic_fetch_add(&srv->ctr.hits, 1);
	o->rep.data = rep_data(o);
	o->rep.dlen = (uint32_t)len;
	o->rep.n = cov;
	reply(e, o);
	return 0;
}

/*
 * PIN: pin the key's current item in the session's table; the reply carries
 * its handle and attributes. -ENOENT, -EMFILE (MAX_PINS held), -EBUSY (the
 * item holds STORE_PIN_MAX pins). PIN_GET: read [off, off+len) of a pinned
 * item like a GET (reply attr = the pinned item's), or with RQ_MAP say where
 * it lies (pin_map). UNPIN: release it; a
 * PIN_GET in flight keeps its own pin. Unknown handles: -EBADF.
 */
static int do_pin(struct svc_ep *e, struct op *o, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	struct session *s = o->sess;
	struct pinslot *p;
	struct item *it;
	int ret;

	if (q->op == OP_PIN) {
		ret = pin_reserve(s);
		if (ret)
			return ret;
		pthread_mutex_lock(&srv->store_lock);
		ret = store_pin(srv->store, q->key, q->klen, now_s(), &it);
		if (!ret)
			store_item_attr(it, &o->rep.attr);
		pthread_mutex_unlock(&srv->store_lock);
		if (ret)
			return ret;
		uint32_t i = s->pin_free;
		p = &s->pins[i];
		s->pin_free = p->next_free;
		s->n_pins++;
		p->handle = ++s->pin_seq << PIN_IDX_BITS | i;
		p->it = it;
		o->rep.handle = p->handle;
		reply_status(e, o, 0);
		return 0;
	}
	p = pin_find(s, q->handle);
	if (!p) {
		*why = "unknown pin handle";
		return -EBADF;
	}
	if (q->op == OP_UNPIN) {
		pthread_mutex_lock(&srv->store_lock);
		store_release(srv->store, p->it);
		pthread_mutex_unlock(&srv->store_lock);
		*p = (struct pinslot){.next_free = s->pin_free};
		s->pin_free = (uint32_t)(p - s->pins);
		s->n_pins--;
		reply_status(e, o, 0);
		return 0;
	}
	atomic_fetch_add(&srv->ctr.gets, 1);
	if (q->flags & RQ_MAP)
		return pin_map(e, o, p->it, why);
	pthread_mutex_lock(&srv->store_lock);
	ret = store_item_ref(srv->store, p->it);
	if (!ret)
		store_item_attr(p->it, &o->rep.attr);
	pthread_mutex_unlock(&srv->store_lock);
	if (ret)
		return ret;
	atomic_fetch_add(&srv->ctr.hits, 1);
	return send_item(e, o, p->it, why);
}

/* Copy inline bytes into an upload at off. Caller holds store_lock. */
static int do_upload_copy(struct store *st, struct upload *up, uint64_t off, const uint8_t *data,
			  uint64_t len)
{
	uint64_t done = 0;
	while (done < len) {
		struct iovec iov[8];
		uint64_t cov;
		long k = store_upload_iov(st, up, off + done, len - done, iov, 8, &cov);
		if (k < 0)
			return (int)k;
		for (long i = 0; i < k; i++) {
			memcpy(iov[i].iov_base, data + done, iov[i].iov_len);
			done += iov[i].iov_len;
		}
	}
	return 0;
}

/*
 * UP_READ: read back [off, off+len) of a pending upload, like a GET: inline
 * in the reply (region 0, at most the inline threshold), else RMA-written
 * into the client's region with the slot busy until it completes. The reply's
 * attr.size is the upload's size. Returns 0 (replied) or -errno.
 */
static int do_up_read(struct svc_ep *e, struct op *o, struct upslot *u, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	pthread_mutex_lock(&srv->store_lock);
	uint64_t size = store_upload_size(u->up);
	pthread_mutex_unlock(&srv->store_lock);
	uint64_t n = q->off >= size ? 0 : size - q->off;
	if (n > q->len)
		n = q->len;
	o->rep.attr.size = size;
	if (q->buf.region == REGION_INLINE || n == 0) {
		if (n > srv->limits.inline_threshold)
			n = srv->limits.inline_threshold;
		uint64_t done = 0;
		pthread_mutex_lock(&srv->store_lock);
		while (done < n) {
			struct iovec iov[8];
			uint64_t cov;
			size_t k = store_upload_read_iov(srv->store, u->up, q->off + done, n - done,
							 iov, 8, &cov);
			uint8_t *dst = rep_data(o) + done;
			for (size_t i = 0; i < k; i++) {
				memcpy(dst, iov[i].iov_base, iov[i].iov_len);
				dst += iov[i].iov_len;
			}
			done += cov;
		}
		pthread_mutex_unlock(&srv->store_lock);
		atomic_fetch_add(&srv->ctr.bytes_out, n);
		o->rep.data = rep_data(o);
		o->rep.dlen = (uint32_t)n;
		o->rep.n = n;
		reply(e, o);
		return 0;
	}
	uint64_t raddr, rkey;
	int ret = check_desc(o->sess, &q->buf, n, FAB_ACC_REMOTE_WRITE, &raddr, &rkey, why);
	if (ret)
		return ret;
	u->busy = 1;
	o->up_id = u->id;
	o->up = u->up;
	o->src_off = q->off;
	o->total = n;
	rma_start(e, o, 1, raddr, rkey);
	return 0;
}

static int do_put(struct svc_ep *e, struct op *o, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	struct store_attr a;
	int ret;
	store_attr_from(&a, &q->sa);
	atomic_fetch_add(&srv->ctr.puts, 1);
	if (q->len > srv->limits.max_value)
		return -EFBIG;
	if (q->buf.region == REGION_INLINE) {
		if (q->dlen != q->len) {
			*why = "inline data length differs from the value size";
			return -EINVAL;
		}
		pthread_mutex_lock(&srv->store_lock);
		ret = store_put(srv->store, q->key, q->klen, q->data, q->dlen, &a, now_s(), NULL);
		if (!ret)
			ret = store_stat(srv->store, q->key, q->klen, now_s(), &o->rep.attr);
		pthread_mutex_unlock(&srv->store_lock);
		if (ret)
			return ret;
		atomic_fetch_add(&srv->ctr.bytes_in, q->len);
		reply_status(e, o, 0);
		return 0;
	}
	uint64_t raddr, rkey;
	ret = check_desc(o->sess, &q->buf, q->len, FAB_ACC_REMOTE_READ, &raddr, &rkey, why);
	if (ret)
		return ret;
	pthread_mutex_lock(&srv->store_lock);
	ret = store_upload_open(srv->store, q->key, q->klen, 0, now_s(), &o->up);
	pthread_mutex_unlock(&srv->store_lock);
	if (ret)
		return ret;
	o->up_id = 0;
	o->src_off = 0;
	o->total = q->len;
	if (q->len == 0) {
		o->err = 0;
		o->writing = 0;
		rma_finish(e, o);
		return 0;
	}
	rma_start(e, o, 0, raddr, rkey);
	return 0;
}

struct list_ctx {
	uint8_t *buf;
	size_t room, used;
	uint64_t max, count;
	int more;
};

static int list_cb(void *arg, const char *name, size_t nlen, const struct kvfs_attr *a)
{
	struct list_ctx *l = arg;
	if (l->max && l->count >= l->max) {
		l->more = 1;
		return 1;
	}
	int n = wire_entry_encode(l->buf + l->used, l->room - l->used, name, nlen, a);
	if (n < 0) {
		l->more = 1;
		return 1;
	}
	l->used += (size_t)n;
	l->count++;
	return 0;
}

static int do_list(struct svc_ep *e, struct op *o)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	struct list_ctx l = {.buf = rep_data(o), .room = rep_room(e), .max = q->len};
	pthread_mutex_lock(&srv->store_lock);
	long ret = store_list(srv->store, q->key, q->klen, (q->flags & RQ_DELIM) ? '/' : 0, q->key2,
			      q->k2len, now_s(), list_cb, &l);
	pthread_mutex_unlock(&srv->store_lock);
	if (ret < 0)
		return (int)ret;
	if (l.more && l.count == 0)
		return -EMSGSIZE;
	o->rep.n = l.count;
	o->rep.flags = l.more ? RP_MORE : 0;
	o->rep.data = rep_data(o);
	o->rep.dlen = (uint32_t)l.used;
	reply(e, o);
	return 0;
}

static int do_stats(struct svc_ep *e, struct op *o)
{
	struct srv *srv = e->srv;
	struct kvfs_stats st = {0};
	struct store_stats ss;
	pthread_mutex_lock(&srv->store_lock);
	store_stats(srv->store, &ss);
	pthread_mutex_unlock(&srv->store_lock);
	st.gets = atomic_load(&srv->ctr.gets);
	st.hits = atomic_load(&srv->ctr.hits);
	st.misses = atomic_load(&srv->ctr.misses);
	st.puts = atomic_load(&srv->ctr.puts);
	st.deletes = atomic_load(&srv->ctr.deletes);
	st.bytes_in = atomic_load(&srv->ctr.bytes_in);
	st.bytes_out = atomic_load(&srv->ctr.bytes_out);
	st.sessions = atomic_load(&srv->ctr.sessions);
	st.evictions = ss.evictions;
	st.expirations = ss.expirations;
	st.keys = ss.keys;
	st.pool_size = ss.pool_size;
	st.pool_used = ss.pool_used;
	st.uptime_s = (uint64_t)(now_s() - srv->started);
	snprintf(st.provider, sizeof(st.provider), "%s", e->provider);
	int n = wire_stats_encode(rep_data(o), rep_room(e), &st);
	if (n < 0)
		return n;
	o->rep.data = rep_data(o);
	o->rep.dlen = (uint32_t)n;
	reply(e, o);
	return 0;
}

static int do_upload(struct svc_ep *e, struct op *o, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	struct session *s = o->sess;
	struct store_attr a;
	int ret = 0;

	if (q->op == OP_UP_OPEN) {
		if (s->n_ups >= MAX_UPS)
			return -EMFILE;
		struct upload *up;
		pthread_mutex_lock(&srv->store_lock);
		ret = store_upload_open(srv->store, q->key, q->klen, !!(q->flags & RQ_KEEP),
					now_s(), &up);
		pthread_mutex_unlock(&srv->store_lock);
		if (ret)
			return ret;
		if (s->n_ups % 16 == 0) {
			struct upslot *n = realloc(s->ups, sizeof(*n) * (size_t)(s->n_ups + 16));
			if (!n) {
				pthread_mutex_lock(&srv->store_lock);
				store_upload_abort(srv->store, up);
				pthread_mutex_unlock(&srv->store_lock);
				return -ENOMEM;
			}
			s->ups = n;
		}
		s->ups[s->n_ups++] = (struct upslot){.id = s->next_up, .up = up};
		o->rep.handle = s->next_up++;
		o->rep.attr.size = store_upload_size(up);
		reply_status(e, o, 0);
		return 0;
	}

	struct upslot *u = up_find(s, q->handle);
	if (!u) {
		*why = "unknown upload handle";
		return -EBADF;
	}
	if (u->busy)
		return -EBUSY;
	switch (q->op) {
	case OP_UP_READ:
		return do_up_read(e, o, u, why);
	case OP_UP_WRITE:
		if (q->len > srv->limits.max_value || q->off > srv->limits.max_value - q->len)
			return -EFBIG;
		if (q->buf.region == REGION_INLINE) {
			if (q->dlen != q->len) {
				*why = "inline data length differs from the write length";
				return -EINVAL;
			}
			pthread_mutex_lock(&srv->store_lock);
			ret = do_upload_copy(srv->store, u->up, q->off, q->data, q->dlen);
			o->rep.attr.size = store_upload_size(u->up);
			pthread_mutex_unlock(&srv->store_lock);
			if (!ret)
				atomic_fetch_add(&srv->ctr.bytes_in, q->dlen);
			o->rep.n = ret ? 0 : q->dlen;
			break;
		}
		uint64_t raddr, rkey;
		ret = check_desc(s, &q->buf, q->len, FAB_ACC_REMOTE_READ, &raddr, &rkey, why);
		if (ret)
			return ret;
		u->busy = 1;
		o->up_id = u->id;
		o->up = u->up;
		o->src_off = q->off;
		o->total = q->len;
		if (q->len == 0) {
			o->err = 0;
			o->writing = 0; /* not left over from this op's previous request */
			rma_finish(e, o);
			return 0;
		}
		rma_start(e, o, 0, raddr, rkey);
		return 0;
	case OP_UP_TRUNC:
		if (q->len > srv->limits.max_value)
			return -EFBIG;
		pthread_mutex_lock(&srv->store_lock);
		ret = store_upload_truncate(srv->store, u->up, q->len);
		o->rep.attr.size = store_upload_size(u->up);
		pthread_mutex_unlock(&srv->store_lock);
		break;
	case OP_UP_COMMIT:
		store_attr_from(&a, &q->sa);
		pthread_mutex_lock(&srv->store_lock);
		ret = store_upload_commit(srv->store, u->up, &a, now_s(), &o->rep.attr);
		pthread_mutex_unlock(&srv->store_lock);
		/* commit frees the upload whether or not it succeeds */
		up_remove(s, u);
		atomic_fetch_add(&srv->ctr.puts, 1);
		break;
	case OP_UP_ABORT:
		pthread_mutex_lock(&srv->store_lock);
		store_upload_abort(srv->store, u->up);
		pthread_mutex_unlock(&srv->store_lock);
		up_remove(s, u);
		break;
	}
	reply_status(e, o, ret);
	return 0;
}

static int do_reg(struct svc_ep *e, struct op *o, const char **why)
{
	struct wire_req *q = &o->req;
	struct session *s = o->sess;
	if (q->op == OP_UNREG) {
		if (q->handle < REGION_USER0 || q->handle >= REGION_MAX || !s->access[q->handle]) {
			*why = "unknown region";
			return -EINVAL;
		}
		s->access[q->handle] = 0;
		reply_status(e, o, 0);
		return 0;
	}
	unsigned acc =
	    ((q->off & 1) ? FAB_ACC_REMOTE_WRITE : 0) | ((q->off & 2) ? FAB_ACC_REMOTE_READ : 0);
	if (!acc || q->buf.len == 0) {
		*why = "region without access or length";
		return -EINVAL;
	}
	for (unsigned r = REGION_USER0; r < REGION_MAX; r++) {
		if (!s->access[r]) {
			s->access[r] = acc;
			s->regions[r] = (struct wire_region){q->buf.off, q->buf.len, q->handle};
			o->rep.handle = r;
			reply_status(e, o, 0);
			return 0;
		}
	}
	return -ENOSPC;
}

/* Run one request; replies itself or returns -errno for an error reply. */
static int dispatch(struct svc_ep *e, struct op *o, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	struct store_attr a;
	int ret;

	if (atomic_load(&srv->stopping))
		return -ESHUTDOWN;
	switch (q->op) {
	case OP_PING:
		reply_status(e, o, 0);
		return 0;
	case OP_GET:
		return do_get(e, o, why);
	case OP_PUT:
		return do_put(e, o, why);
	case OP_DELETE:
		atomic_fetch_add(&srv->ctr.deletes, 1);
		pthread_mutex_lock(&srv->store_lock);
		ret = store_delete(srv->store, q->key, q->klen);
		pthread_mutex_unlock(&srv->store_lock);
		break;
	case OP_STAT:
		pthread_mutex_lock(&srv->store_lock);
		ret = store_stat(srv->store, q->key, q->klen, now_s(), &o->rep.attr);
		pthread_mutex_unlock(&srv->store_lock);
		break;
	case OP_SETATTR:
		store_attr_from(&a, &q->sa);
		pthread_mutex_lock(&srv->store_lock);
		ret = store_setattr(srv->store, q->key, q->klen, &a, now_s(), &o->rep.attr);
		pthread_mutex_unlock(&srv->store_lock);
		break;
	case OP_RENAME:
		pthread_mutex_lock(&srv->store_lock);
		ret = store_rename(srv->store, q->key, q->klen, q->key2, q->k2len,
				   !!(q->flags & RQ_NOREPLACE));
		pthread_mutex_unlock(&srv->store_lock);
		break;
	case OP_LIST:
		return do_list(e, o);
	case OP_STATS:
		return do_stats(e, o);
	case OP_REG:
	case OP_UNREG:
		return do_reg(e, o, why);
	case OP_PIN:
	case OP_PIN_GET:
	case OP_UNPIN:
		return do_pin(e, o, why);
	default:
		return do_upload(e, o, why);
	}
	if (ret)
		return ret;
	reply_status(e, o, 0);
	return 0;
}

static int key_required(uint8_t op)
{
	switch (op) {
	case OP_GET:
	case OP_PUT:
	case OP_DELETE:
	case OP_STAT:
	case OP_SETATTR:
	case OP_RENAME:
	case OP_UP_OPEN:
	case OP_PIN:
		return 1;
	default:
		return 0;
	}
}

static void handle_request(struct svc_ep *e, struct op *o, size_t len)
{
	const char *why = "";
	int ret = wire_req_decode(o->rx, len, &e->srv->limits, &o->req, &why);
	struct session *s = NULL;

	if (len >= WIRE_REQ_FIXED)
		s = sess_lookup(e, o->req.session, o->req.token);
	if (!s) {
		/* Nobody we can answer: unknown or dead session, or garbage. */
		log_warn("dropped a %zu-byte message from an unknown session (%s)", len,
			 ret ? why : "bad session id or token");
		post_rx(e, o);
		return;
	}
	o->sess = s;
	o->busy = 1;
	e->busy_ops++;
	s->inflight++;
	memset(&o->rep, 0, sizeof(o->rep));
	o->item = NULL;
	o->up = NULL;
	o->up_id = 0;
	if (!ret && key_required(o->req.op) && o->req.klen == 0) {
		ret = -EINVAL;
		why = "empty key";
	}
	if (!ret && o->req.op == OP_RENAME && o->req.k2len == 0) {
		ret = -EINVAL;
		why = "empty rename target";
	}
	if (!ret)
		ret = dispatch(e, o, &why);
	if (ret) {
		if (*why && s->bad_msgs++ < 20)
			log_warn("session %llx: op %u refused: %s (%s)", (unsigned long long)s->id,
				 o->req.op, why, strerror(-ret));
		reply_status(e, o, ret);
	}
}

static void on_send_done(struct svc_ep *e, struct op *o)
{
	struct session *s = o->sess;
	o->sess = NULL;
	e->busy_ops--;
	if (--s->inflight == 0 && s->dead)
		sess_free(e, s);
	post_rx(e, o);
}

static void on_completion(struct svc_ep *e, const struct fab_cqe *c)
{
	struct opctx *x = (struct opctx *)c->ctx;
	struct op *o = x->op;
	switch (x->kind) {
	case CTX_RECV:
		if (c->err) {
			if (c->err != -ECANCELED && !atomic_load(&e->srv->stopping))
				post_rx(e, o);
			return;
		}
		handle_request(e, o, c->len);
		return;
	case CTX_SEND:
		on_send_done(e, o);
		return;
	case CTX_RMA:
		x->busy = 0;
		o->outstanding--;
		if (c->err && !o->err)
			o->err = c->err;
		rma_pump(e, o);
		return;
	}
}

static void retry_pending(struct svc_ep *e)
{
	struct op *list = e->pending_head;
	e->pending_head = e->pending_tail = NULL;
	while (list) {
		struct op *o = list;
		list = o->next_pending;
		o->pending = 0;
		if (o->stage == STAGE_RX)
			post_rx(e, o);
		else if (o->stage == STAGE_RMA)
			rma_pump(e, o);
		else
			post_reply(e, o);
	}
}

static void *svc_thread(void *arg)
{
	struct svc_ep *e = arg;
	struct fab_cqe cqe[16];
	int nap = 0;
	int64_t stop_at = 0, idle_since = 0;

	/* naps of a few microseconds must not be stretched by the default 50 us timer slack */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
	for (int i = 0; i < NRX; i++)
		post_rx(e, &e->ops[i]);
	for (;;) {
		run_commands(e);
		if (atomic_load(&e->srv->stopping)) {
			if (!stop_at)
				stop_at = mono_ms() + STOP_GRACE_MS;
			if (e->busy_ops == 0 || mono_ms() > stop_at)
				break;
		}
		/*
		 * With requests in flight, keep polling (their RMA only moves while
		 * we do). Idle: busy-poll for SPIN_NS, then poll yielding the core
		 * to anyone who wants it until YIELD_NS (a client's next request
		 * often comes within that), then nap SHORT_NAP_US at a time, and
		 * after SHORT_NAPS_NS of quiet with a growing interval up to
		 * NAP_MAX_US, so an idle server costs almost no CPU. A long busy
		 * spin would take a core from the clients and the kernel on a small
		 * shared host (two servers and a FUSE mount on 2 cores: ~5x slower
		 * file operations).
		 */
		int napping = 0;
		if (e->busy_ops == 0) {
			int64_t t = mono_ns();
			if (!idle_since)
				idle_since = t;
			else if (t - idle_since > SHORT_NAPS_NS)
				nap = nap < NAP_MAX_US ? nap * 2 : NAP_MAX_US, napping = 1;
			else if (t - idle_since > YIELD_NS)
				nap = SHORT_NAP_US, napping = 1;
			else if (t - idle_since > SPIN_NS)
				sched_yield();
		}
		int n = fab_poll(e->ep, cqe, 16, napping ? nap : 0);
		if (n > 0) {
			idle_since = 0;
			nap = 0;
			for (int i = 0; i < n; i++)
				on_completion(e, &cqe[i]);
		}
		if (e->pending_head)
			retry_pending(e);
	}
	if (e->busy_ops)
		log_warn("%s: %d requests still in flight at exit", e->provider, e->busy_ops);
	return NULL;
}

/* ---- endpoint life -------------------------------------------------------- */

int svc_ep_open(struct srv *s, const char *provider, const char *node, struct svc_ep **out)
{
	struct svc_ep *e = calloc(1, sizeof(*e));
	int ret;
	if (!e)
		return -ENOMEM;
	e->srv = s;
	snprintf(e->provider, sizeof(e->provider), "%s", provider);
	pthread_mutex_init(&e->cmd_lock, NULL);
	pthread_cond_init(&e->cmd_cond, NULL);
	struct fab_open_args a = {.provider = provider,
				  .domain = s->cfg.n_domains ? s->cfg.domains[0] : NULL,
				  .node = node};
	if (strcmp(provider, "shm") == 0 || strcmp(provider, "tcp") == 0)
		a.domain = NULL; /* domains name NICs; shm and tcp pick by address */
	ret = fab_open(&e->ep, &a);
	if (ret)
		goto err;
	e->msg_size = s->limits.msg_size;
	size_t bytes = (size_t)NRX * 2 * e->msg_size;
	e->msgs = aligned_alloc(4096, bytes);
	if (!e->msgs) {
		ret = -ENOMEM;
		goto err;
	}
	memset(e->msgs, 0, bytes);
	ret = fab_mr_reg(e->ep, e->msgs, bytes, FAB_ACC_SEND | FAB_ACC_RECV, &e->msg_mr);
	if (ret)
		goto err;
	ret = fab_mr_reg(e->ep, store_pool_base(s->store), store_pool_size(s->store),
			 FAB_ACC_WRITE | FAB_ACC_READ, &e->pool_mr);
	if (ret)
		goto err;
	for (int i = 0; i < NRX; i++) {
		struct op *o = &e->ops[i];
		o->e = e;
		o->rx = e->msgs + (size_t)(2 * i) * e->msg_size;
		o->tx = o->rx + e->msg_size;
		o->rx_ctx = (struct opctx){.kind = CTX_RECV, .op = o};
		o->tx_ctx = (struct opctx){.kind = CTX_SEND, .op = o};
		for (int w = 0; w < WINDOW; w++)
			o->rma[w] = (struct opctx){.kind = CTX_RMA, .op = o};
	}
	log_info("serving on %s (iov_limit %zu)", fab_provider(e->ep), fab_iov_limit(e->ep));
	*out = e;
	return 0;
err:
	svc_ep_close(e);
	return ret;
}

void svc_ep_close(struct svc_ep *e)
{
	if (!e)
		return;
	for (int i = 0; i < MAX_SESS; i++)
		if (e->sess[i]) {
			e->sess[i]->inflight = 0;
			sess_free(e, e->sess[i]);
		}
	fab_mr_close(e->pool_mr);
	fab_mr_close(e->msg_mr);
	fab_close(e->ep);
	free(e->msgs);
	pthread_mutex_destroy(&e->cmd_lock);
	pthread_cond_destroy(&e->cmd_cond);
	free(e);
}

const char *svc_ep_provider(const struct svc_ep *e)
{
	return e->provider;
}

int svc_ep_name(const struct svc_ep *e, uint8_t *buf, uint16_t *len)
{
	size_t l = WIRE_ADDR_MAX;
	int ret = fab_getname(e->ep, buf, &l);
	*len = (uint16_t)l;
	return ret;
}

int svc_ep_start(struct svc_ep *e)
{
	int ret = pthread_create(&e->thread, NULL, svc_thread, e);
	if (ret)
		return -ret;
	e->started = 1;
	return 0;
}

void svc_ep_join(struct svc_ep *e)
{
	if (!e->started)
		return;
	pthread_join(e->thread, NULL);
	e->started = 0;
	pthread_mutex_lock(&e->cmd_lock);
	e->exited = 1;
	pthread_mutex_unlock(&e->cmd_lock);
	/* Commands queued after the thread left still need an answer. */
	run_commands(e);
}
