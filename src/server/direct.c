/*
 * direct: small requests on the bootstrap channel (wire.h "Direct
 * requests"), for clients that would rather not set up a fabric session for
 * a few small values (kvfsctl's one-shot commands, libkvfs with
 * KVFS_OPEN_LAZY_FABRIC).
 *
 * They run on the connection's handshake thread (server.c), between WELCOME
 * and SETUP, through dispatch.c's op table, its checks and the very handlers
 * of the fabric path, with the "direct endpoint": a struct svc_ep with no
 * fabric and no service thread, whose fields (srv, provider, msg_size) are
 * set by direct_open and only read afterwards, so every connection thread
 * may use it. Each connection has its own struct op (and buffers); its
 * replies go to the socket (direct_post_reply), not to the fabric. Only ops
 * marked direct in the table, with values inline, are served: no session,
 * no RMA, nothing left behind on the server when the connection goes.
 *
 * Limits (the connection holds one of server.c's handshake slots all along):
 * WIRE_FIRST_FRAME_MS of silence before the first frame (SETUP comes after
 * the client's endpoint is set up), WIRE_DIRECT_IDLE_MS before the others, the handshake timeout
 * over one frame (a partial frame then a stall), WIRE_DIRECT_LIFE_MS in all, and frames of at most
 * limits.msg_size. Anything malformed or out of place gets an ERROR frame, a rate-limited log line,
 * and the connection is closed.
 */
#include "service_priv.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/sock.h"

#define STOP_CHECK_MS 100 /* waiting for a frame: how often to look at srv.stopping */

struct direct {
	int fd;
	int frame_ms; /* the handshake timeout, per frame */
	int err;      /* sending a reply failed: close */
	uint8_t *rx;  /* received body, msg_size bytes */
	uint8_t *txf; /* reply frame: header, then the op's tx (msg_size) */
};

static struct svc_ep *direct_ep; /* set by direct_open, then read-only */
/* Refused direct requests and frames: any authenticated peer can cause them. */
static struct log_rl direct_rl = LOG_RL_INIT(LOG_RL_BURST, LOG_RL_INTERVAL_MS);

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int direct_open(struct srv *s)
{
	struct svc_ep *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->srv = s;
	snprintf(e->provider, sizeof(e->provider), "direct");
	e->msg_size = s->limits.msg_size;
	direct_ep = e;
	s->direct_ep = e;
	return 0;
}

void direct_close(void)
{
	if (direct_ep)
		direct_ep->srv->direct_ep = NULL;
	free(direct_ep);
	direct_ep = NULL;
	log_rl_flush(&direct_rl);
}

static void refuse(struct direct *d, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refuse(struct direct *d, int err, const char *fmt, ...)
{
	struct wire_error e = {.err = err};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e.text, sizeof(e.text), fmt, ap);
	va_end(ap);
	log_ratelimited(&direct_rl, LOG_LVL_INFO, "closed a direct connection: %s", e.text);
	sock_send_frame(d->fd, WF_ERROR, &e, 500);
}

void direct_post_reply(struct op *o)
{
	struct direct *d = o->direct;
	int ret = sock_send_body(d->fd, WF_REP, d->txf, (uint32_t)o->tx_len, d->frame_ms);
	if (ret)
		d->err = ret;
}

/*
 * Wait up to idle_ms for the first byte of a frame, looking at srv.stopping
 * meanwhile. 0, -ETIMEDOUT, -ESHUTDOWN, or -ECONNRESET (closed or failed).
 */
static int wait_frame(struct srv *srv, int fd, int idle_ms)
{
	int64_t deadline = mono_ms() + idle_ms;
	for (;;) {
		if (atomic_load(&srv->stopping))
			return -ESHUTDOWN;
		int64_t left = deadline - mono_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int n = poll(&p, 1, left < STOP_CHECK_MS ? (int)left : STOP_CHECK_MS);
		if (n > 0)
			return (p.revents & POLLIN) ? 0 : -ECONNRESET;
		if (n < 0 && errno != EINTR)
			return -ECONNRESET;
	}
}

/* One REQ frame of len bytes in d->rx: 0 when the connection may go on. */
static int serve_one(struct srv *srv, struct direct *d, struct op *o, uint32_t len)
{
	const char *why = "";
	int ret = wire_req_decode(d->rx, len, &srv->limits, &o->req, &why);
	if (ret) {
		refuse(d, -EPROTO, "malformed direct request (%s)", why);
		return -EPROTO;
	}
	ret = svc_check_direct(&o->req, &why);
	if (ret) {
		refuse(d, ret, "op %u refused on the bootstrap channel: %s", o->req.op, why);
		return ret;
	}
	memset(&o->rep, 0, sizeof(o->rep));
	o->t0 = srv->metrics ? metrics_now_ns() : 0; /* the service time, as svc_handle_request */
	o->item = NULL;
	o->up = NULL;
	o->up_id = 0;
	why = "";
	ret = svc_run(direct_ep, o, &why);
	if (ret) {
		if (*why)
			log_ratelimited(&direct_rl, LOG_LVL_WARN, "direct op %u refused: %s (%s)",
					o->req.op, why, strerror(-ret));
		svc_reply_status(direct_ep, o, ret);
	}
	return d->err;
}

int direct_serve(struct srv *srv, int fd, int frame_ms, struct wire_setup *setup)
{
	size_t msg = srv->limits.msg_size;
	struct direct d = {.fd = fd, .frame_ms = frame_ms};
	struct op *o = NULL;
	int64_t end = mono_ms() + WIRE_DIRECT_LIFE_MS;
	int ret;
	for (;;) {
		uint16_t type;
		uint32_t len;
		int64_t left = end - mono_ms();
		if (left <= 0) {
			ret = -ETIMEDOUT; /* the client should have sent SETUP or closed by now */
			refuse(&d, ret, "direct connection open longer than %d ms",
			       WIRE_DIRECT_LIFE_MS);
			break;
		}
		int idle = d.rx ? WIRE_DIRECT_IDLE_MS : WIRE_FIRST_FRAME_MS; /* rx: a frame came */
		ret = wait_frame(srv, fd, left < idle ? (int)left : idle);
		if (ret == -ESHUTDOWN)
			refuse(&d, ret, "server is shutting down");
		if (ret)
			break;
		if (!d.rx) {
			d.rx = malloc(msg);
			if (!d.rx) {
				ret = -ENOMEM;
				refuse(&d, ret, "out of memory");
				break;
			}
		}
		ret = sock_recv_body(fd, &type, d.rx, (uint32_t)msg, &len, frame_ms);
		if (ret == -EPROTO) {
			refuse(&d, ret, "not a kvfs frame, or longer than %zu bytes", msg);
			break;
		}
		if (ret) {
			if (ret == -ETIMEDOUT)
				log_ratelimited(&direct_rl, LOG_LVL_INFO,
						"closed a direct connection: frame not received "
						"within %d ms",
						frame_ms);
			break;
		}
		if (type == WF_SETUP) {
			const char *why;
			if (len > WIRE_FRAME_MAX ||
			    wire_frame_decode(WF_SETUP, d.rx, len, setup, &why)) {
				ret = -EPROTO;
				refuse(&d, ret, "malformed setup");
				break;
			}
			ret = 0;
			break;
		}
		if (type != WF_REQ) {
			ret = -EPROTO;
			refuse(&d, ret, "frame type %u where a setup or direct request belongs",
			       type);
			break;
		}
		if (!o) {
			o = calloc(1, sizeof(*o));
			d.txf = o ? malloc(WIRE_FRAME_HDR + msg) : NULL;
			if (!d.txf) {
				ret = -ENOMEM;
				refuse(&d, ret, "out of memory");
				break;
			}
			o->e = direct_ep;
			o->direct = &d;
			o->rx = d.rx;
			o->tx = d.txf + WIRE_FRAME_HDR;
		}
		ret = serve_one(srv, &d, o, len);
		if (ret)
			break;
	}
	free(o);
	free(d.txf);
	free(d.rx);
	return ret;
}
