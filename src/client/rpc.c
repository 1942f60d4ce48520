/*
 * libkvfs round trips: request slots (req_get/req_put), the send and the
 * leader/follower wait for the reply (roundtrip), completion handling, and
 * the bulk slots of the receive and staging regions.
 *
 * Every wait sleeps on the conn's condition variable with c->lock released
 * by pthread_cond_wait; no lock is held while a request is on the wire.
 *
 * A received message with req_id 0 is no reply but an invalidation
 * (OP_INVAL): it goes to track.c and its buffer is reposted at once.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "client/client_int.h"

#include "common/log.h"

#define SPIN_NS	    (30 * 1000) /* busy-poll this long after the last completion... */
#define POLL_NAP_NS 20000	/* ...then nap this long between polls */
#define LIVENESS_MS 1

/*
 * Take the lowest free slot of bitmap *mask, waiting while there is none.
 * Returns its index, or -1 when c broke. Caller holds c->lock.
 */
static int do_take_free(struct conn *c, uint64_t *mask)
{
	while (!c->broken && !*mask) {
		c->sleepers++;
		c->res_waiters++;
		pthread_cond_wait(&c->cond, &c->lock);
		c->res_waiters--;
		c->sleepers--;
	}
	if (c->broken)
		return -1;
	int i = __builtin_ctzll(*mask);
	*mask &= ~(1ull << i);
	return i;
}

static struct creq *req_get(struct conn *c)
{
	struct creq *r = NULL;
	pthread_mutex_lock(&c->lock);
	int i = do_take_free(c, &c->req_free);
	if (i >= 0) {
		r = &c->reqs[i];
		r->id = (uint64_t)i | ((r->id >> 8) + 1) << 8;
		r->active = 1;
		r->sent = r->replied = 0;
		r->rx = -1;
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

static void repost_rx(struct conn *c, int rx)
{
	int ret;
	atomic_store(&c->rxs[rx].fab_since, now_ns());
	do {
		ret = fab_post_recv(c->ep, c->msgs + (size_t)(NREQ + rx) * c->msg_size, c->msg_size,
				    fab_mr_desc(c->msg_mr), &c->rxs[rx].ctx);
		if (ret == -EAGAIN)
			sched_yield();
	} while (ret == -EAGAIN);
	atomic_store(&c->rxs[rx].fab_since, 0);
}

void req_put(struct conn *c, struct creq *r)
{
	int rx;
	pthread_mutex_lock(&c->lock);
	rx = r->rx;
	r->rx = -1;
	r->active = 0;
	if (r->sent || !c->broken) {
		c->req_free |= 1ull << (r - c->reqs);
		if (c->res_waiters)
			wake_all(c);
	}
	int up = !c->broken;
	pthread_mutex_unlock(&c->lock);
	if (rx >= 0 && up)
		repost_rx(c, rx);
}

/*
 * Handle one completion. Caller holds c->lock. Returns 1 when a waiter may
 * care (a reply matched, a send completed): the caller then wakes the
 * sleepers once for its whole batch (do_complete_batch). A broken conn wakes
 * them itself.
 */
static int do_complete(struct conn *c, const struct fab_cqe *e)
{
	if (!e->ctx) {
		do_break(c, "completion without context");
		return 0;
	}
	if ((void *)e->ctx >= (void *)c->rxs && (void *)e->ctx < (void *)(c->rxs + NRECV)) {
		struct rxbuf *b = e->ctx;
		if (e->err) {
			do_break(c, "receive failed");
			return 0;
		}
		uint8_t *msg = c->msgs + (size_t)(NREQ + b->idx) * c->msg_size;
		struct wire_rep rep;
		const char *why;
		int bad = wire_rep_decode(msg, e->len, &rep, &why);
		if (!bad && rep.req_id == 0 && rep.op == OP_INVAL) {
			do_track_receive(c, &rep); /* unsolicited: no request has id 0 */
		} else if (!bad) {
			uint64_t i = rep.req_id & 0xff;
			struct creq *r = i < NREQ ? &c->reqs[i] : NULL;
			if (r && r->active && r->id == rep.req_id && !r->replied) {
				r->replied = 1;
				r->rx = b->idx;
				r->rx_len = e->len;
				return 1;
			}
		} else {
			log_warn("server %s: malformed reply dropped: %s",
				 c->kv->cfg.servers[c->idx].name, why);
		}
		/* Stale or garbage: give the buffer back. */
		pthread_mutex_unlock(&c->lock);
		repost_rx(c, b->idx);
		pthread_mutex_lock(&c->lock);
		return 0;
	}
	struct creq *r = e->ctx;
	if (e->err)
		do_break(c, "send failed");
	r->sent = 1;
	return 1;
}

/* do_complete() a batch of k completions, then wake the sleepers once if any cares. */
static void do_complete_batch(struct conn *c, const struct fab_cqe *e, int k)
{
	int wake = 0;
	for (int i = 0; i < k; i++)
		wake |= do_complete(c, &e[i]);
	if (wake)
		wake_all(c);
}

/*
 * Send r's request (already encoded in r->tx, n bytes) and wait for the
 * reply. Returns 0 with *rep decoded from the reply buffer (valid until
 * req_put), or -errno.
 */
static int roundtrip(struct conn *c, struct creq *r, int n, struct wire_rep *rep)
{
	int64_t deadline = now_ns() + (int64_t)c->kv->cfg.timeout_ms * 1000000;
	int64_t next_live = now_ns() + LIVENESS_MS * 1000000;
	int ret;
	for (;;) {
		atomic_store(&r->fab_since, now_ns());
		ret = fab_post_send(c->ep, r->tx, (size_t)n, fab_mr_desc(c->msg_mr), c->srv_addr,
				    &r->send_ctx);
		if (ret != -EAGAIN) {
			atomic_store(&r->fab_since, 0);
			break;
		}
		struct fab_cqe e[8];
		int k = fab_poll(c->ep, e, 8, 0);
		atomic_store(&r->fab_since, 0);
		pthread_mutex_lock(&c->lock);
		do_complete_batch(c, e, k);
		pthread_mutex_unlock(&c->lock);
		if (now_ns() > deadline)
			return -ETIMEDOUT;
	}
	if (ret) {
		conn_break(c, "cannot send");
		return -EIO;
	}
	/*
	 * Leader/follower wait: one waiter at a time polls the CQ; the others
	 * sleep on c->cond and are woken only when something they wait for may
	 * have happened (a batch with a matched reply or send completion, a
	 * broken conn, or the poller leaving: see below), never by an empty
	 * poll. The 1 ms timed sleep is the safety net for a missed hand-over
	 * and keeps every waiter's deadline checked.
	 */
	int polled = 0;
	int64_t spin_until = now_ns() + SPIN_NS;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		if (r->replied && r->sent)
			break;
		if (c->broken) {
			ret = -EIO;
			break;
		}
		int64_t t = now_ns();
		if (t > deadline) {
			do_break(c, "request timed out");
			do_mark_down(c);
			ret = -ETIMEDOUT;
			break;
		}
		if (c->poller) {
			c->sleepers++;
			struct timespec ts = realtime_in(1000000);
			pthread_cond_timedwait(&c->cond, &c->lock, &ts);
			c->sleepers--;
			polled = 0;
			continue;
		}
		c->poller = 1;
		polled = 1;
		pthread_mutex_unlock(&c->lock);
		struct fab_cqe e[16];
		/*
		 * Keep polling for the whole wait: with manual progress the bytes
		 * of an RMA into our memory only move while we poll, and no
		 * completion marks them. After a short spin (small requests end
		 * within it), nap POLL_NAP_NS between polls: yielding instead kept
		 * a core busy and starved the server and the kernel on 2 cores
		 * (a FUSE cold read went from 0.55 to 1.5 GB/s). Callers that wait
		 * often may lower their timer slack (the mount does).
		 */
		atomic_store(&r->fab_since, t);
		int k = fab_poll(c->ep, e, 16, 0);
		atomic_store(&r->fab_since, 0);
		if (k == 0 && t > spin_until) {
			struct timespec nap = {0, POLL_NAP_NS};
			nanosleep(&nap, NULL);
		}
		int live = 1;
		if (t > next_live) {
			live = liveness_ok(c);
			next_live = t + LIVENESS_MS * 1000000;
		}
		pthread_mutex_lock(&c->lock);
		/* Released, and taken again at once unless our request is over. */
		c->poller = 0;
		if (k < 0)
			do_break(c, "completion queue failed");
		if (!live)
			do_break(c, "server closed the session");
		if (k > 0) {
			do_complete_batch(c, e, k);
			spin_until = now_ns() + SPIN_NS;
		}
	}
	/*
	 * Hand over: we polled last and leave now, so wake the sleepers for one
	 * of them to take the role while their requests are outstanding (usually
	 * a no-op: the completion that ended our wait woke them already).
	 */
	if (polled)
		wake_all(c);
	pthread_mutex_unlock(&c->lock);
	if (ret)
		return ret;
	const char *why;
	ret = wire_rep_decode(c->msgs + (size_t)(NREQ + r->rx) * c->msg_size, r->rx_len, rep, &why);
	if (ret)
		return -EIO;
	return 0;
}

void req_init(struct conn *c, struct wire_req *q, uint8_t op)
{
	memset(q, 0, sizeof(*q));
	q->op = op;
	q->session = c->session;
	q->token = c->token;
}

int call(struct conn *c, struct wire_req *q, struct wire_rep *rep, struct creq **out)
{
	struct creq *r = req_get(c);
	if (!r)
		return -EIO;
	q->session = c->session;
	q->token = c->token;
	q->req_id = r->id;
	int n = wire_req_encode(r->tx, c->msg_size, q);
	if (n < 0) {
		req_put(c, r);
		return n;
	}
	int ret = roundtrip(c, r, n, rep);
	if (ret) {
		req_put(c, r);
		return ret;
	}
	*out = r;
	return 0;
}

int call_simple(struct conn *c, struct wire_req *q, struct wire_rep *rep_out)
{
	struct wire_rep rep;
	struct creq *r;
	if (rep_out)
		*rep_out = (struct wire_rep){0};
	int ret = call(c, q, &rep, &r);
	if (ret)
		return ret;
	if (rep_out) {
		*rep_out = rep;
		rep_out->data = NULL;
	}
	req_put(c, r);
	return rep.status;
}

int slot_get(struct conn *c, uint64_t *mask)
{
	pthread_mutex_lock(&c->lock);
	int s = do_take_free(c, mask);
	pthread_mutex_unlock(&c->lock);
	return s;
}

void slot_put(struct conn *c, uint64_t *mask, int s)
{
	pthread_mutex_lock(&c->lock);
	*mask |= 1ull << s;
	if (c->res_waiters)
		wake_all(c);
	pthread_mutex_unlock(&c->lock);
}

int conn_poll_idle(struct conn *c, int live)
{
	pthread_mutex_lock(&c->lock);
	if (!c->up || c->broken || c->direct || c->connecting || c->poller || !c->track_ok) {
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	c->poller = 1;
	c->users++;
	pthread_mutex_unlock(&c->lock);
	struct fab_cqe e[16];
	int k = fab_poll(c->ep, e, 16, 0);
	int ok = live ? liveness_ok(c) : 1;
	pthread_mutex_lock(&c->lock);
	c->poller = 0;
	if (k < 0)
		do_break(c, "completion queue failed");
	if (!ok)
		do_break(c, "server closed the session");
	if (k > 0)
		do_complete_batch(c, e, k);
	wake_all(c); /* hand over to a waiter that came meanwhile */
	c->users--;  /* as conn_leave: wake_all above covered its wake-up */
	pthread_mutex_unlock(&c->lock);
	return k > 0;
}
