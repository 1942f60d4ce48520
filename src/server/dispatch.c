/*
 * dispatch: a received request, from its message to its reply. Decodes it,
 * finds its session, applies the checks every request shares (a known
 * session, a key where the op needs one, not while stopping), runs the op's
 * handler from one table, and sends the error reply when the handler
 * returns -errno. Handlers send their own replies through svc_reply(),
 * which also records the op's service time (received -> reply posted, RMA
 * included) when /metrics is on. Direct requests (direct.c, on the
 * bootstrap socket) go through the same table and checks
 * (svc_check_direct, svc_run); their replies go back to the socket instead
 * of the fabric.
 */
#include "service_priv.h"

#include <errno.h>
#include <string.h>

#include "common/log.h"

/* What an op needs before its handler runs, and the handler. */
struct op_desc {
	svc_handler *run;
	unsigned char key;    /* the request must carry a key */
	unsigned char key2;   /* and a second one (the rename target) */
	unsigned char direct; /* served on the bootstrap channel too (wire.h) */
};

/*
 * Indexed by op. Its size is that of its last row, so the assert below fails
 * when a new op (last before OP_MAX_) has none; a row left out in between has
 * no handler and gets -EOPNOTSUPP.
 */
static const struct op_desc op_table[] = {
    [OP_PING] = {.run = handle_ping, .direct = 1},
    [OP_GET] = {.run = handle_get, .key = 1, .direct = 1},
    [OP_PUT] = {.run = handle_put, .key = 1, .direct = 1},
    [OP_DELETE] = {.run = handle_delete, .key = 1, .direct = 1},
    [OP_STAT] = {.run = handle_stat, .key = 1, .direct = 1},
    [OP_SETATTR] = {.run = handle_setattr, .key = 1, .direct = 1},
    [OP_RENAME] = {.run = handle_rename, .key = 1, .key2 = 1, .direct = 1},
    [OP_LIST] = {.run = handle_list},
    [OP_STATS] = {.run = handle_stats},
    [OP_REG] = {.run = handle_reg},
    [OP_UNREG] = {.run = handle_reg},
    [OP_UP_OPEN] = {.run = handle_upload, .key = 1},
    [OP_UP_WRITE] = {.run = handle_upload},
    [OP_UP_READ] = {.run = handle_upload},
    [OP_UP_TRUNC] = {.run = handle_upload},
    [OP_UP_COMMIT] = {.run = handle_upload},
    [OP_UP_ABORT] = {.run = handle_upload},
    [OP_PIN] = {.run = handle_pin, .key = 1},
    [OP_PIN_GET] = {.run = handle_pin},
    [OP_UNPIN] = {.run = handle_pin},
    [OP_INVAL] = {0}, /* server -> client only */
    [OP_TRACK] = {.run = handle_track},
};

_Static_assert(sizeof(op_table) / sizeof(op_table[0]) == OP_MAX_,
	       "op_table needs a row for every op");

void svc_reply(struct svc_ep *e, struct op *o)
{
	struct metric *lat = o->req.op < OP_MAX_ ? e->srv->latency[o->req.op] : NULL;
	if (lat)
		metric_observe_ns(lat, metrics_now_ns() - o->t0);
	if (o->rep.status < 0 && o->rep.status != -ENOENT)
		atomic_fetch_add_explicit(&e->error_replies, 1, memory_order_relaxed);
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
	if (o->direct)
		direct_post_reply(o);
	else
		svc_post_reply(e, o);
}

void svc_reply_status(struct svc_ep *e, struct op *o, int status)
{
	o->rep.status = status;
	svc_reply(e, o);
}

int svc_check_direct(const struct wire_req *q, const char **why)
{
	/* wire_req_decode() refuses ops outside 1..OP_MAX_-1, the table's rows */
	if (!op_table[q->op].direct) {
		*why = "op needs a fabric session (SETUP first)";
		return -EOPNOTSUPP;
	}
	if (q->buf.region != REGION_INLINE) {
		*why = "buffer descriptors need a fabric session (SETUP first)";
		return -EOPNOTSUPP;
	}
	return 0;
}

int svc_run(struct svc_ep *e, struct op *o, const char **why)
{
	const struct op_desc *d = &op_table[o->req.op];
	if (!d->run) {
		*why = "no handler for the op";
		return -EOPNOTSUPP;
	}
	if (d->key && o->req.klen == 0) {
		*why = "empty key";
		return -EINVAL;
	}
	if (d->key2 && o->req.k2len == 0) {
		*why = "empty rename target";
		return -EINVAL;
	}
	if (atomic_load(&e->srv->stopping))
		return -ESHUTDOWN;
	return d->run(e, o, why);
}

void svc_handle_request(struct svc_ep *e, struct op *o, size_t len)
{
	const char *why = "";
	int ret = wire_req_decode(o->rx, len, &e->srv->limits, &o->req, &why);
	struct session *s = NULL;

	if (len >= WIRE_REQ_FIXED)
		s = svc_sess_lookup(e, o->req.session, o->req.token);
	if (!s) {
		/* Nobody we can answer: unknown or dead session, or garbage. */
		log_ratelimited(&e->junk_rl, LOG_LVL_WARN,
				"dropped a %zu-byte message from an unknown session (%s)", len,
				ret ? why : "bad session id or token");
		svc_post_rx(e, o);
		return;
	}
	if (s->inflight >= SESS_MAX_OPS) {
		/* More than any client keeps in flight: it is not reading its replies. */
		atomic_fetch_add_explicit(&e->over_cap, 1, memory_order_relaxed);
		log_ratelimited(&s->bad_rl, LOG_LVL_WARN,
				"session %llx: over %d requests in flight: request dropped",
				(unsigned long long)s->id, SESS_MAX_OPS);
		svc_post_rx(e, o);
		return;
	}
	o->sess = s;
	o->t0 = e->srv->metrics ? metrics_now_ns() : 0;
	o->moved_ms = svc_now_ms();
	o->busy = 1;
	e->busy_ops++;
	s->inflight++;
	memset(&o->rep, 0, sizeof(o->rep));
	o->item = NULL;
	o->up = NULL;
	o->up_id = 0;
	/* wire_req_decode() refuses ops outside 1..OP_MAX_-1, the table's rows */
	if (!ret)
		ret = svc_run(e, o, &why);
	if (ret) {
		if (*why)
			log_ratelimited(&s->bad_rl, LOG_LVL_WARN,
					"session %llx: op %u refused: %s (%s)",
					(unsigned long long)s->id, o->req.op, why, strerror(-ret));
		svc_reply_status(e, o, ret);
	}
}
