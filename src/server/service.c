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
 *
 * A session is dropped when its TCP channel closes: no new RMA is started for
 * it, and it is freed (uploads aborted, pins released, address removed) once
 * nothing of it is in flight any more.
 *
 * Invalidations (track.h) go out from each endpoint's own thread in NNOTE
 * send buffers of their own: when track_seq() moved (any thread queued
 * some), it takes each tracking session's queue into them and posts them,
 * but only for a session with no request in flight, so that an
 * invalidation never overtakes the reply to a read it is about (sends to a
 * peer keep their order, FI_ORDER_SAS). A provider that says -EAGAIN gets
 * the message again later; nothing blocks the thread.
 *
 * This file: the endpoints, their service threads and poll loop, sessions
 * and posting. A received request goes to dispatch.c, which runs it by one of
 * the handlers_*.c; rma.c moves the bytes (service_priv.h).
 */
#include "service_priv.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "common/log.h"

#define SPIN_NS	      (50 * 1000)	 /* idle: busy-poll this long, */
#define YIELD_NS      (300 * 1000)	 /* then poll yielding the core up to this, */
#define SHORT_NAP_US  20		 /* then nap this long at a time */
#define SHORT_NAPS_NS (20 * 1000 * 1000) /* for this long, then longer naps */
#define NAP_MAX_US    1000
#define STOP_GRACE_MS 3000
#define BUSY_QUIET_NS (100 * 1000 * 1000)
#define BUSY_NAP_US   100
#define STALL_SCAN_MS 250

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

/* ---- sessions ---------------------------------------------------------- */

struct session *svc_sess_lookup(struct svc_ep *e, uint64_t id, uint64_t token)
{
	struct session *s = e->sess[id % MAX_SESS];
	if (!s || s->id != id || s->token != token || s->dead)
		return NULL;
	return s;
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
	for (int i = 0; i < s->n_ups; i++)
		free(s->ups[i].key);
	if (s->tracking)
		track_off(srv->track, s->sidx);
	atomic_fetch_sub(&srv->ctr.pins, s->n_pins);
	if (!s->addr_gone)
		fab_av_remove(e->ep, s->addr);
	e->sess[s->id % MAX_SESS] = NULL;
	e->n_sess--;
	if (!s->addr_gone)
		atomic_fetch_sub(&srv->ctr.sessions, 1);
	log_rl_flush(&s->bad_rl);
	log_rl_destroy(&s->bad_rl);
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
	c->result = fab_av_insert(e->ep, c->setup.addr, c->setup.addr_len, &s->addr);
	if (c->result) {
		free(s);
		return;
	}
	e->sess_gen++;
	s->id = ((uint64_t)e->sess_gen << 16) * MAX_SESS + (uint64_t)idx;
	wire_random(&s->token, sizeof(s->token));
	s->sidx = (uint32_t)e->index * MAX_SESS + (uint32_t)idx;
	s->regions[REGION_RECV] = c->setup.recv;
	s->access[REGION_RECV] = FAB_ACC_REMOTE_WRITE;
	s->regions[REGION_STAGING] = c->setup.staging;
	s->access[REGION_STAGING] = FAB_ACC_REMOTE_READ;
	log_rl_init(&s->bad_rl, LOG_RL_BURST, LOG_RL_INTERVAL_MS);
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

void svc_pending_push(struct svc_ep *e, struct op *o)
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

void svc_post_rx(struct svc_ep *e, struct op *o)
{
	o->busy = 0;
	o->stage = STAGE_RX;
	int ret = fab_post_recv(e->ep, o->rx, e->msg_size, fab_mr_desc(e->msg_mr), &o->rx_ctx.fc);
	if (ret == -EAGAIN) {
		svc_pending_push(e, o);
		return;
	}
	if (ret)
		log_error("cannot post a receive buffer: %s", strerror(-ret));
}

/* o's reply is sent (or cannot be): free its session if that was its last op, repost o. */
static void op_over(struct svc_ep *e, struct op *o)
{
	struct session *s = o->sess;
	o->sess = NULL;
	e->busy_ops--;
	if (--s->inflight == 0 && s->dead)
		sess_free(e, s);
	if (o->retired) {
		o->retired = 0;
		o->busy = 0;
		o->next_spare = e->spares;
		e->spares = o;
		return;
	}
	svc_post_rx(e, o);
}

void svc_post_reply(struct svc_ep *e, struct op *o)
{
	if (o->sess->addr_gone) {
		op_over(e, o); /* stalled and dropped: no address to send to */
		return;
	}
	int ret = fab_post_send(e->ep, o->tx, (size_t)o->tx_len, fab_mr_desc(e->msg_mr),
				o->sess->addr, &o->tx_ctx.fc);
	if (ret == -EAGAIN) {
		svc_pending_push(e, o);
		return;
	}
	if (ret) {
		atomic_fetch_add(&e->fabric_errors, 1);
		op_over(e, o); /* the peer is unreachable */
	}
}

/* ---- invalidations ------------------------------------------------------- */

int svc_track_open(struct srv *s)
{
	return track_open(&s->track, SVC_MAX_EPS * MAX_SESS, TRACK_SLOTS_DEFAULT);
}

void svc_evicted(void *arg, const void *key, size_t klen)
{
	struct srv *s = arg;
	if (s->track)
		track_changed(s->track, key, klen, WIRE_INVAL_GONE, 1, TRACK_NONE);
}

void svc_track_close(struct srv *s)
{
	track_close(s->track);
	s->track = NULL;
}

static struct session *sess_by_id(struct svc_ep *e, uint64_t id)
{
	struct session *s = e->sess[id % MAX_SESS];
	return s && s->id == id && !s->dead ? s : NULL;
}

/* Post note m; 0, or -EAGAIN (m stays pending for retry). A dead peer frees it. */
static int note_post(struct svc_ep *e, struct note *m)
{
	struct session *s = sess_by_id(e, m->sess_id);
	if (!s) {
		m->busy = m->pending = 0;
		return 0;
	}
	int ret = fab_post_send(e->ep, m->buf, (size_t)m->len, fab_mr_desc(e->msg_mr), s->addr,
				&m->ctx.fc);
	if (ret == -EAGAIN) {
		m->pending = 1;
		return -EAGAIN;
	}
	m->pending = 0;
	if (ret) {
		atomic_fetch_add(&e->fabric_errors, 1);
		m->busy = 0;
	}
	return 0;
}

static struct note *note_free(struct svc_ep *e)
{
	for (int i = 0; i < NNOTE; i++)
		if (!e->notes[i].busy)
			return &e->notes[i];
	return NULL;
}

/* Send what s has queued, while buffers last. Returns 0 when its queue is empty. */
static int notes_for(struct svc_ep *e, struct session *s)
{
	for (;;) {
		struct note *m = note_free(e);
		if (!m)
			return 1;
		struct wire_rep rep = {.op = OP_INVAL};
		int all;
		size_t len = track_take(e->srv->track, s->sidx, m->buf + WIRE_REP_FIXED,
					e->msg_size - WIRE_REP_FIXED, &rep.n, &all);
		if (!len && !all)
			return 0;
		rep.flags = all ? RP_INVAL_ALL : 0;
		rep.data = m->buf + WIRE_REP_FIXED;
		rep.dlen = (uint32_t)len;
		m->len = wire_rep_encode(m->buf, e->msg_size, &rep);
		m->busy = 1;
		m->sess_id = s->id;
		if (note_post(e, m))
			return 1;
	}
}

/* Send the invalidations queued for this endpoint's sessions (see the top). */
static void send_notes(struct svc_ep *e)
{
	struct track *t = e->srv->track;
	if (!t)
		return;
	uint64_t seq = track_seq(t);
	if (seq == e->track_seen && !e->note_retry)
		return;
	int retry = 0;
	for (int i = 0; i < NNOTE; i++)
		if (e->notes[i].pending && note_post(e, &e->notes[i]))
			retry = 1;
	e->track_seen = seq;
	for (int i = 0; i < MAX_SESS && !retry; i++) {
		struct session *s = e->sess[i];
		if (!s || !s->tracking || s->dead || !track_has(t, s->sidx))
			continue;
		if (s->inflight)
			retry = 1; /* after its replies */
		else
			retry |= notes_for(e, s);
	}
	e->note_retry = retry;
}

/* ---- completions and the poll loop ---------------------------------------- */

static void on_completion(struct svc_ep *e, const struct fab_cqe *c)
{
	struct opctx *x = (struct opctx *)c->ctx;
	struct op *o = x->op;
	switch (x->kind) {
	case CTX_RECV:
		if (c->err) {
			if (c->err != -ECANCELED && !atomic_load(&e->srv->stopping)) {
				atomic_fetch_add(&e->fabric_errors, 1);
				svc_post_rx(e, o);
			}
			return;
		}
		svc_handle_request(e, o, c->len);
		return;
	case CTX_SEND:
		if (c->err)
			atomic_fetch_add(&e->fabric_errors, 1);
		op_over(e, o);
		return;
	case CTX_NOTE: {
		struct note *m = (struct note *)x;
		if (c->err)
			atomic_fetch_add(&e->fabric_errors, 1);
		m->busy = 0;
		e->note_retry = 1;
		return;
	}
	case CTX_RMA:
		x->busy = 0;
		o->moved_ms = svc_now_ms();
		o->outstanding--;
		if (c->err)
			atomic_fetch_add(&e->fabric_errors, 1);
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
			svc_post_rx(e, o);
		else if (o->stage == STAGE_RMA)
			rma_pump(e, o);
		else
			svc_post_reply(e, o);
	}
}

/*
 * A peer that stopped making progress (a stopped process, a vanished host)
 * holds the receive buffers of its requests for as long as their RMA or
 * reply cannot finish. When one of its ops has not moved for the stall
 * timeout, the session is dropped and its address taken out of the AV, so
 * nothing new is posted to it. A provider may still never hand back what is
 * posted (rxm does not), so each stuck op is retired: a spare takes over its
 * receive, and the op joins the spares if its completions ever come. The
 * session is freed with its last op.
 */
static void check_stalls(struct svc_ep *e, int64_t now)
{
	int64_t stall = e->srv->cfg.server_stall_ms;
	e->stall_check_ms = now + STALL_SCAN_MS;
	for (int i = 0; i < NRX + NSPARE; i++) {
		struct op *o = &e->ops[i];
		struct session *s = o->sess;
		if (!o->busy || !s || s->addr_gone || now - o->moved_ms < stall)
			continue;
		log_warn("session %llx: a request made no progress for %lld ms: session dropped",
			 (unsigned long long)s->id, (long long)stall);
		atomic_fetch_sub(&e->srv->ctr.sessions, 1); /* gone, even if its ops never end */
		atomic_fetch_add_explicit(&e->stalls, 1, memory_order_relaxed);
		s->dead = 1;
		s->addr_gone = 1;
		fab_av_remove(e->ep, s->addr);
	}
	/* Each stalled op's receive is taken over by a spare. */
	for (int i = 0; i < NRX + NSPARE; i++) {
		struct op *o = &e->ops[i];
		if (!o->busy || o->retired || !o->sess || !o->sess->addr_gone)
			continue;
		struct op *spare = e->spares;
		if (!spare) {
			log_ratelimited(&e->junk_rl, LOG_LVL_WARN,
					"no spare receive buffer left for a stalled request");
			break;
		}
		e->spares = spare->next_spare;
		o->retired = 1;
		svc_post_rx(e, spare);
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
		svc_post_rx(e, &e->ops[i]);
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
		 * we do), unless nothing has completed for BUSY_QUIET_NS: then a
		 * peer has stopped taking its bytes (a stopped process, a vanished
		 * host), and polling every BUSY_NAP_US, growing to NAP_MAX_US,
		 * still feeds a slow link (a socket buffer's worth per poll) while
		 * leaving the core to others. Idle: busy-poll for SPIN_NS,
		 * then poll yielding the core to anyone who wants it until
		 * YIELD_NS (a client's next request often comes within that), then
		 * nap SHORT_NAP_US at a time, and after SHORT_NAPS_NS of quiet with
		 * a growing interval up to NAP_MAX_US, so an idle server costs
		 * almost no CPU. A long busy spin would take a core from the
		 * clients and the kernel on a small shared host (two servers and a
		 * FUSE mount on 2 cores: ~5x slower file operations).
		 */
		int napping = 0;
		int64_t t = mono_ns();
		if (!idle_since)
			idle_since = t; /* quiet since: the last completion */
		if (e->busy_ops == 0) {
			if (t - idle_since > SHORT_NAPS_NS)
				nap = nap < NAP_MAX_US ? nap * 2 : NAP_MAX_US, napping = 1;
			else if (t - idle_since > YIELD_NS)
				nap = SHORT_NAP_US, napping = 1;
			else if (t - idle_since > SPIN_NS)
				sched_yield();
		} else if (t - idle_since > BUSY_QUIET_NS) {
			nap = nap < BUSY_NAP_US	 ? BUSY_NAP_US
			      : nap < NAP_MAX_US ? nap * 2
						 : NAP_MAX_US;
			napping = 1;
			if (t / 1000000 >= e->stall_check_ms)
				check_stalls(e, t / 1000000);
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
		send_notes(e);
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
	log_rl_init(&e->junk_rl, LOG_RL_BURST, LOG_RL_INTERVAL_MS);
	struct fab_open_args a = {.provider = provider,
				  .domain = s->cfg.n_domains ? s->cfg.domains[0] : NULL,
				  .node = node};
	if (strcmp(provider, "shm") == 0 || strcmp(provider, "tcp") == 0)
		a.domain = NULL; /* domains name NICs; shm and tcp pick by address */
	ret = fab_open(&e->ep, &a);
	if (ret)
		goto err;
	e->msg_size = s->limits.msg_size;
	e->index = s->n_eps;
	size_t bytes = ((size_t)(NRX + NSPARE) * 2 + NNOTE) * e->msg_size;
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
	for (int i = 0; i < NRX + NSPARE; i++) {
		struct op *o = &e->ops[i];
		if (i >= NRX) {
			o->next_spare = e->spares;
			e->spares = o;
		}
		o->e = e;
		o->rx = e->msgs + (size_t)(2 * i) * e->msg_size;
		o->tx = o->rx + e->msg_size;
		o->rx_ctx = (struct opctx){.kind = CTX_RECV, .op = o};
		o->tx_ctx = (struct opctx){.kind = CTX_SEND, .op = o};
		for (int w = 0; w < WINDOW; w++)
			o->rma[w] = (struct opctx){.kind = CTX_RMA, .op = o};
	}
	for (int i = 0; i < NNOTE; i++) {
		e->notes[i].ctx = (struct opctx){.kind = CTX_NOTE};
		e->notes[i].buf = e->msgs + ((size_t)(NRX + NSPARE) * 2 + (size_t)i) * e->msg_size;
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
	log_rl_flush(&e->junk_rl);
	log_rl_destroy(&e->junk_rl);
	free(e);
}

const char *svc_ep_provider(const struct svc_ep *e)
{
	return e->provider;
}

const char *svc_ep_domain(const struct svc_ep *e)
{
	return e->ep ? fab_domain(e->ep) : "bootstrap"; /* the direct endpoint: no fabric */
}

int svc_counted_eps(const struct srv *s, const struct svc_ep *out[SVC_MAX_EPS + 1])
{
	int n = 0;
	for (int i = 0; i < s->n_eps; i++)
		out[n++] = s->eps[i];
	if (s->direct_ep)
		out[n++] = s->direct_ep;
	return n;
}

void svc_ep_counters(const struct svc_ep *e, struct svc_ep_counters *out)
{
	out->bytes_in = atomic_load_explicit(&e->bytes_in, memory_order_relaxed);
	out->bytes_out = atomic_load_explicit(&e->bytes_out, memory_order_relaxed);
	out->error_replies = atomic_load_explicit(&e->error_replies, memory_order_relaxed);
	out->fabric_errors = atomic_load_explicit(&e->fabric_errors, memory_order_relaxed);
	out->over_cap = atomic_load_explicit(&e->over_cap, memory_order_relaxed);
	out->stalls = atomic_load_explicit(&e->stalls, memory_order_relaxed);
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
