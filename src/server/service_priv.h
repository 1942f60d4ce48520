/*
 * service_priv: what the pieces of kvfs-server's fabric side share. The
 * endpoint with its ops and sessions; the calls between service.c (threads,
 * sessions, posting), dispatch.c (request -> handler, replies), rma.c (moving
 * value bytes) and the request handlers in handlers_*.c.
 *
 * Everything in a struct svc_ep but its cmd_* fields, with its ops and
 * sessions, belongs to the endpoint's one service thread and takes no lock;
 * the store is reached under srv.store_lock.
 */
#ifndef KVFS_SERVICE_PRIV_H
#define KVFS_SERVICE_PRIV_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/log.h"
#include "service.h"
#include "track.h"

#define NRX 256
/*
 * Ops in reserve: a stalled session's ops stay busy until the provider gives
 * their contexts back (rxm does not when a peer is only removed from the
 * AV), so each is replaced by a spare to keep NRX receives posted.
 */
#define NSPARE	 NRX
#define WINDOW	 8
#define MAX_SESS 4096
/*
 * Requests of one session that may hold receive buffers at once. A client
 * keeps at most 64 waiting for their reply (libkvfs's window); a buffer is
 * held until its reply's send completes, so a few more may be counted. Past
 * this the session is not reading its replies, and its requests are dropped:
 * it holds at most this share of NRX.
 */
#define SESS_MAX_OPS 96
#define MAX_PINS     4096 /* per session; the table doubles from 16 up to it */
#define PIN_IDX_BITS 16
#define PIN_NONE     UINT32_MAX
#define NNOTE	     16 /* send buffers per endpoint for invalidations (OP_INVAL) */

enum ctx_kind { CTX_RECV, CTX_SEND, CTX_RMA, CTX_NOTE };

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
	uint8_t *key; /* the upload's key, for the invalidation at commit */
	uint32_t klen;
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
	int addr_gone; /* stalled: its address was taken out of the AV before the free */
	struct wire_region regions[REGION_MAX];
	unsigned access[REGION_MAX]; /* FAB_ACC_REMOTE_* granted by the client; 0 = unused */
	struct upslot *ups;
	int n_ups;
	uint64_t next_up;
	struct pinslot *pins;
	uint32_t pin_cap, n_pins, pin_free; /* pin_free: first free slot or PIN_NONE */
	uint64_t pin_seq;		    /* sequence of the last handle given out */
	struct log_rl bad_rl;		    /* its refused requests' log lines */
	int tracking;			    /* sent OP_TRACK: reads are tracked (track.h) */
	uint32_t sidx; /* slot in srv.track: endpoint index * MAX_SESS + slot */
};

/* An invalidation message being sent (CTX_NOTE); the endpoint's thread owns it. */
struct note {
	struct opctx ctx; /* first: the completion's context is this */
	uint8_t *buf;	  /* msg_size bytes in the endpoint's registered messages */
	int busy;	  /* posted, or waiting to be (pending) */
	int pending;	  /* the provider said -EAGAIN: post again */
	int len;
	uint64_t sess_id; /* the session it goes to */
};

struct op {
	struct opctx rx_ctx, tx_ctx, rma[WINDOW];
	struct svc_ep *e;
	uint8_t *rx, *tx;
	struct wire_req req;
	struct wire_rep rep;
	struct session *sess;
	int busy;
	int retired; /* replaced by a spare (its session stalled): back to the spares when it ends
		      */
	struct op *next_spare;
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
	uint64_t t0;	       /* when the request was received (ns), for srv.latency */
	int64_t moved_ms;      /* last sign of life: received, an RMA piece done (stall check) */
	struct direct *direct; /* direct.c's op: its reply goes to that socket; NULL: fabric */
};

struct svc_ep {
	struct srv *srv;
	char provider[32];
	struct fab_ep *ep;
	struct fab_mr *pool_mr, *msg_mr;
	size_t msg_size;
	uint8_t *msgs;
	struct op ops[NRX + NSPARE]; /* the first NRX posted at start, the rest spares */
	struct op *spares;
	int busy_ops;
	struct op *pending_head, *pending_tail;
	struct session *sess[MAX_SESS];
	uint32_t sess_gen;
	int n_sess;
	int64_t stall_check_ms; /* next scan of the busy ops for stalled peers */
	struct log_rl junk_rl; /* messages of no session: anyone can send them */
	int index;	       /* in srv.eps */
	struct note notes[NNOTE];
	uint64_t track_seen; /* track_seq() when the sessions' queues were last emptied */
	int note_retry;	     /* some queue may still hold invalidations: look again */
	/* written by the service thread, read by stats and scrapes */
	atomic_uint_fast64_t bytes_in, bytes_out, error_replies, fabric_errors;
	atomic_uint_fast64_t over_cap,
	    stalls; /* requests dropped past SESS_MAX_OPS; stalled sessions */

	pthread_t thread;
	int started;
	pthread_mutex_t cmd_lock;
	pthread_cond_t cmd_cond;
	struct svc_cmd *cmds; /* cmd_lock */
	atomic_int n_cmds;    /* queued commands, read without cmd_lock */
	int exited;	      /* cmd_lock: the service thread is gone */
};

static inline int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static inline int64_t svc_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline struct upslot *up_find(struct session *s, uint64_t id)
{
	for (int i = 0; i < s->n_ups; i++)
		if (s->ups[i].id == id)
			return &s->ups[i];
	return NULL;
}

/* Where a reply's inline data goes, and how much fits there. */
static inline uint8_t *rep_data(struct op *o)
{
	return o->tx + WIRE_REP_FIXED;
}

static inline size_t rep_room(struct svc_ep *e)
{
	return e->msg_size - WIRE_REP_FIXED;
}

/* service.c: sessions and posting. */
struct session *svc_sess_lookup(struct svc_ep *e, uint64_t id, uint64_t token);
/* Queue o to post again (its o->stage) after the provider said -EAGAIN. */
void svc_pending_push(struct svc_ep *e, struct op *o);
void svc_post_rx(struct svc_ep *e, struct op *o);
void svc_post_reply(struct svc_ep *e, struct op *o);

/* Tracking (track.h): o's session reads key, when it tracks; a key changed. */
static inline void svc_track_read(struct svc_ep *e, struct op *o, const void *key, size_t klen)
{
	if (o->sess && o->sess->tracking)
		track_read(e->srv->track, o->sess->sidx, key, klen);
}
static inline void svc_changed(struct svc_ep *e, struct op *o, const void *key, size_t klen,
			       unsigned kind, int parents)
{
	uint32_t self = o->sess && o->sess->tracking ? o->sess->sidx : TRACK_NONE;
	if (e->srv->track)
		track_changed(e->srv->track, key, klen, kind, parents, self);
}

/* dispatch.c: a received request, and its reply. */
void svc_handle_request(struct svc_ep *e, struct op *o, size_t len);
/*
 * The checks every decoded request shares (a handler, its keys, not while
 * stopping), then its handler: 0 (it replied) or -errno (*why set when the
 * request is at fault) for the caller to reply.
 */
int svc_run(struct svc_ep *e, struct op *o, const char **why);
/* May a decoded request go on the bootstrap channel? 0, or -EOPNOTSUPP with *why. */
int svc_check_direct(const struct wire_req *q, const char **why);
/* Encode o->rep (data possibly in place) and send it. */
void svc_reply(struct svc_ep *e, struct op *o);
void svc_reply_status(struct svc_ep *e, struct op *o, int status);

/* direct.c: send the reply svc_reply() encoded in o->tx to o's socket. */
void direct_post_reply(struct op *o);

/* rma.c: value bytes between the pool and the client's buffers. */
int rma_check_desc(struct session *s, const struct wire_desc *d, uint64_t need, unsigned access,
		   uint64_t *raddr, uint64_t *rkey, const char **why);
int rma_send_item(struct svc_ep *e, struct op *o, struct item *it, const char **why);
int rma_send_upload(struct svc_ep *e, struct op *o, struct upslot *u, const char **why);
void rma_claim_upload(struct op *o, struct upslot *u, uint64_t total);
void rma_start(struct svc_ep *e, struct op *o, int writing, uint64_t raddr, uint64_t rkey);
void rma_pump(struct svc_ep *e, struct op *o);
void rma_finish(struct svc_ep *e, struct op *o);

/*
 * The request handlers, one per op (dispatch.c's table). Each replies itself
 * and returns 0, or returns -errno (with *why set for the log when the
 * request itself is at fault) for dispatch.c to send as an error reply.
 */
typedef int svc_handler(struct svc_ep *e, struct op *o, const char **why);
/* handlers_kv.c */
svc_handler handle_get, handle_put, handle_delete, handle_stat, handle_setattr, handle_rename;
/* handlers_info.c */
svc_handler handle_list, handle_stats, handle_ping;
/* handlers_upload.c */
svc_handler handle_upload;
/* handlers_session.c */
svc_handler handle_pin, handle_reg, handle_track;

#endif
