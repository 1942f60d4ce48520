/*
 * libkvfs direct mode: small requests over the bootstrap socket (wire.h
 * "Direct requests") while a lazy kvfs_t's conn has no fabric session: one
 * REQ frame, one REP frame, a blocking wait in poll up to client.timeout_ms,
 * no endpoint, no naps. The socket carries one request at a time: a thread
 * takes conn->sock_busy (under conn->lock) for its round trip, with the
 * lock released while it is on the wire, and others wait on conn->cond.
 * A failed round trip breaks the conn like a lost fabric session.
 */
#include <errno.h>
#include <string.h>

#include "client/client_int.h"

#include "common/log.h"
#include "common/sock.h"

/* The round trip itself, by the sock_busy holder. Returns 0 or -errno; *why on failure. */
static int exchange(struct conn *c, struct wire_req *q, struct wire_rep *rep, void *dst, size_t cap,
		    const char **why)
{
	int tmo = (int)c->kv->cfg.timeout_ms;
	uint8_t *body = c->dbuf + WIRE_FRAME_HDR;
	uint32_t max = (uint32_t)(c->dbuf_size - WIRE_FRAME_HDR), len;
	uint16_t type;
	int n = wire_req_encode(body, max, q);
	if (n < 0) {
		*why = NULL; /* ours, not the conn's */
		return n;
	}
	*why = "cannot send";
	int ret = sock_send_body(c->fd, WF_REQ, c->dbuf, (uint32_t)n, tmo);
	if (ret)
		return ret;
	*why = "no reply";
	ret = sock_recv_body(c->fd, &type, body, max, &len, tmo);
	if (ret)
		return ret == -ETIMEDOUT ? ret : -EIO;
	if (type == WF_ERROR) {
		struct wire_error e;
		*why = "malformed error frame";
		if (wire_frame_decode(WF_ERROR, body, len, &e, why))
			return -EIO;
		log_warn("server %s refused a direct request: %s", c->kv->cfg.servers[c->idx].name,
			 e.text);
		*why = "server closed the direct connection";
		return e.err == -ESHUTDOWN ? -ESHUTDOWN : -EIO;
	}
	*why = "malformed reply";
	if (type != WF_REP || wire_rep_decode(body, len, rep, why) || rep->req_id != q->req_id ||
	    rep->op != q->op || rep->dlen > cap)
		return -EIO;
	if (rep->dlen)
		memcpy(dst, rep->data, rep->dlen);
	rep->data = dst;
	return 0;
}

int direct_call(struct conn *c, struct wire_req *q, struct wire_rep *rep, void *dst, size_t cap)
{
	pthread_mutex_lock(&c->lock);
	while (c->sock_busy && !c->broken) {
		c->sleepers++;
		pthread_cond_wait(&c->cond, &c->lock);
		c->sleepers--;
	}
	if (c->broken) {
		pthread_mutex_unlock(&c->lock);
		return -EIO;
	}
	c->sock_busy = 1;
	q->req_id = ++c->direct_seq;
	c->direct_count++;
	pthread_mutex_unlock(&c->lock);

	q->session = 0;
	q->token = 0;
	const char *why = NULL;
	int ret = exchange(c, q, rep, dst, cap, &why);

	pthread_mutex_lock(&c->lock);
	c->sock_busy = 0;
	c->direct_last = now_ns();
	if (ret && why) {
		do_break(c, why); /* wakes everyone */
		if (ret == -ETIMEDOUT)
			do_mark_down(c);
	} else
		wake_all(c);
	pthread_mutex_unlock(&c->lock);
	return ret;
}

int call_small(struct conn *c, int direct, struct wire_req *q, struct wire_rep *rep_out)
{
	if (!direct)
		return call_simple(c, q, rep_out);
	struct wire_rep rep;
	if (rep_out)
		*rep_out = (struct wire_rep){0};
	int ret = direct_call(c, q, &rep, NULL, 0);
	if (ret)
		return ret;
	if (rep_out) {
		*rep_out = rep;
		rep_out->data = NULL;
	}
	return rep.status;
}
