/*
 * libkvfs internals: the structs and calls the files of src/client share;
 * only the files of src/client include this. See include/kvfs/kvfs.h for the API.
 * The structs of uploads, pins and caller-registered regions are each
 * defined in the one file that uses their insides (upload.c, pin.c, mr.c).
 *
 * One struct conn per configured server: a TCP bootstrap/liveness socket, a
 * FI_THREAD_SAFE endpoint, two registered regions the server may write
 * (receive) or read (staging), NREQ request slots with their own send buffers
 * and NRECV posted reply buffers. Regions are cut into slots for bulk bytes.
 *
 * Progress: the first waiting thread becomes the conn's poller and reads the
 * CQ (busy-polling for 30 us from the start of its wait or the last
 * completion, then napping 20 us after each empty poll: SPIN_NS and
 * POLL_NAP_NS in rpc.c); others sleep on the conn's condition variable and
 * are woken when a reply or send completion lands, the conn breaks, or the
 * poller leaves (so another takes over); an empty poll wakes nobody. A freed
 * request or buffer slot wakes them only when someone waits for one. No lock
 * is held across a round trip. A reply is handed over in its receive buffer
 * (no copy); the waiter re-posts the buffer when done with it.
 *
 * A watchdog thread per kvfs_t frees a call stuck inside libfabric on a lock
 * a dead shm server left held (watchdog.c).
 *
 * Same-host reads: when the server runs on this host and we may ptrace it,
 * the conn maps the server's pool read-only (pool_attach) and kvfs_pin_map
 * answers with where a pinned value's bytes lie in it instead of moving them.
 *
 * Failure: a closed TCP channel, a fabric error or a timeout marks the conn
 * broken; every waiter fails (-EIO, or -ETIMEDOUT for the one whose deadline
 * passed), and the next call after the last user has left tears the endpoint
 * down (closing its memory registrations, so a late RMA from the old session
 * cannot land) and connects anew. The calls that waited for a connect that
 * failed return its error; the next call after them tries again.
 *
 * Locks, and what each guards:
 *
 *   conn->lock (L)  one conn's state: up, connecting, broken, users, the
 *                   poller and the sleepers, the session generation, the
 *                   free bitmaps of request and buffer slots, the flags of
 *                   each request, and the caller memory registered on that
 *                   session (conn->regs, kvfs_mr.per[i] for conns[i]). Its
 *                   conn->cond wakes every wait on the conn: a reply or send
 *                   completion, a free slot, the end of a connect or of a
 *                   registration, the last user of a broken session leaving.
 *                   The thread that connects sets up the new session's (L)
 *                   fields with the lock released: nothing reads them until
 *                   it marks the conn up.
 *   kv->lock        kv->mrs, the regions kvfs_close frees; nothing else.
 *   pin->map_lock   map_ready, segs and nsegs of one pin.
 *   kv->wd_lock     wd_stop (wd_cond wakes the watchdog to stop).
 *   kv->track_lock  the invalidation events queued for the callback
 *                   (track.c), track_stop.
 *
 * Lock order: none nest, but for kv->track_lock, a leaf that may be taken
 * with a conn->lock held (track.c); each other is dropped before another
 * is taken. No lock
 * is held across a network round trip, the TCP handshake included: a thread
 * that waits for a server first marks what it owns (conn->connecting,
 * mr_reg.busy, a request or buffer slot) and waits on a condition variable
 * with the lock released, or (a pin's map) fills memory of its own and
 * takes the lock only to install it. So a call waits only on the conn of
 * its own server, and a silent server stalls no other.
 *
 * Fields no lock guards say why:
 *   (S) the session's: written by the one thread that connects (it set
 *       conn->connecting) or by the teardown (conn->lock held, no users);
 *       read by the conn's users (conn_enter or sess_enter to conn_leave),
 *       for whom they do not change.
 *   (I) set when the object is made (kvfs_open, conn_init, ..._open), then
 *       read-only.
 *   (O) the owner's: whoever holds that request or buffer slot.
 *   (B) the thread that set conn->sock_busy (one direct round trip).
 *
 * Direct mode: the fabric's (S) fields are not set up; its users touch only
 * fd, limits and dbuf (under sock_busy). The upgrade sets the fabric's (S)
 * fields with conn->connecting set and no users (it waits for the last to
 * leave, and upgrade_wanted keeps new direct users out meanwhile).
 */
#ifndef KVFS_CLIENT_INT_H
#define KVFS_CLIENT_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "kvfs/kvfs.h"

#include "client/convert.h"
#include "common/config.h"
#include "common/wire.h"
#include "fabric/fabric.h"

#define NREQ	  64
#define NRECV	  (NREQ + 16)
#define MAX_SLOTS 64

struct conn;
struct mr_reg;

struct creq {
	struct fab_ctx send_ctx;   /* first; the provider's while the send is posted */
	struct conn *c;		   /* (S) */
	uint64_t id;		   /* (L) slot index | sequence << 8 */
	int active;		   /* (L) */
	int sent;		   /* (L) send completion seen */
	int replied;		   /* (L) reply matched */
	int rx;			   /* (L) receive buffer holding the reply, -1 none */
	size_t rx_len;		   /* (L) */
	uint8_t *tx;		   /* (S) the send buffer; its bytes (O) */
	_Atomic int64_t fab_since; /* inside fab_post_send/fab_poll since (0: not); see unwedge() */
};

/*
 * A receive slot lent to the caller; one per slot, so lending allocates
 * nothing. Or (pin set) kvfs_pin_map's leases of that pin, which share one
 * and each hold a reference to the pin.
 */
struct kvfs_lease {
	struct conn *c;	      /* (O) of receive slot `slot` */
	int slot;	      /* (O) */
	struct kvfs_pin *pin; /* (I) */
};

/* A server's pool mapped read-only; held by the conn and by each pin on it. */
struct pool_map {
	_Atomic int refs;
	const uint8_t *base; /* (I) */
	size_t len;	     /* (I) */
};

struct rxbuf {
	struct fab_ctx ctx;	   /* first; the provider's while the receive is posted */
	struct conn *c;		   /* (S) */
	int idx;		   /* (S) */
	_Atomic int64_t fab_since; /* inside fab_post_recv since (0: not); see unwedge() */
};

struct conn {
	struct kvfs *kv; /* (I) */
	int idx;	 /* (I) */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* with lock: see the top of this file */
	int up;		     /* (L) session established */
	int no_shm; /* (S) the server refused this client shm (another user's): auto takes tcp */
	int connecting;	   /* (L) a thread sets up the session (connect_session), unlocked */
	uint64_t attempts; /* (L) connects ended, failed or not */
	int attempt_err;   /* (L) the last one's result: 0 or -errno */
	int attempt_bg;	   /* (L) the last one was track.c's reconnect, not a call's */
	int broken;	   /* (L) */
	int users;	   /* (L) threads inside calls on this conn */
	int poller;	   /* (L) a thread is reading the CQ */
	int sleepers;	   /* (L) threads waiting on cond */
	int res_waiters;   /* (L) of them, those waiting for a free request or buffer slot */
	uint64_t gen;	   /* (L) session generation, bumped on every connect */
	int ever_up;	   /* (L) tracking kvfs_t: a fabric session was up once (track.c) */
	int track_ok;	   /* (L) tracking kvfs_t: this session tracks (OP_TRACK answered) */
	/*
	 * Direct mode (KVFS_OPEN_LAZY_FABRIC; direct.c): the conn is up with the
	 * bootstrap socket authenticated and no fabric session yet; small
	 * requests go over the socket. A call that needs the fabric upgrades it
	 * (SETUP on the same socket) once no user is left.
	 */
	int direct;		     /* (L) up in direct mode */
	int sock_busy;		     /* (L) a thread has a direct round trip on fd (owns dbuf) */
	int upgrade_wanted;	     /* (L) threads waiting to upgrade: new direct users wait */
	int64_t direct_start;	     /* (L) when the direct connection was made (now_ns) */
	int64_t direct_last;	     /* (L) when its last round trip ended */
	uint64_t direct_seq;	     /* (L) req_id of the last direct request */
	uint64_t direct_count;	     /* (L) direct round trips on this connection */
	struct wire_welcome welcome; /* (S) the server's welcome: providers for an upgrade */
	/* (S) the handshake's MAC key (wire.h), for SETUP/READY of an upgrade; authed: it is set */
	uint8_t hs_key[WIRE_MAC];
	int hs_authed;
	uint8_t *dbuf;	  /* (S) direct frames, WIRE_FRAME_HDR + msg_size; bytes (B) */
	size_t dbuf_size; /* (S) */

	/* (S): the session */
	int fd;
	struct fab_ep *ep;
	fab_addr_t srv_addr;
	struct wire_limits limits;
	uint64_t get_inline; /* largest zero-copy GET answered inline (see open_endpoint) */
	uint64_t session, token;
	struct pool_map *pool; /* the server's pool, when mapped (see pool_attach) */

	size_t region_size, slot_size;		      /* (I) */
	int n_slots;				      /* (I) */
	uint8_t *recv_region, *staging_region;	      /* (S) a slot's bytes (O) */
	struct fab_mr *recv_mr, *staging_mr, *msg_mr; /* (S) */
	uint64_t recv_free, staging_free;	      /* (L) bitmaps of free slots */
	struct kvfs_lease leases[MAX_SLOTS];	      /* (O) leases[i] lends receive slot i */

	size_t msg_size;	 /* (S) */
	uint8_t *msgs;		 /* (S) the send and receive buffers */
	struct creq reqs[NREQ];	 /* fields as marked */
	uint64_t req_free;	 /* (L) bitmap */
	struct rxbuf rxs[NRECV]; /* fields as marked */
	struct mr_reg *regs;	 /* (L) caller memory registered on this session */

	/*
	 * Down: a connect or request timed out. Calls fail with -EIO at once,
	 * without waiting, until the probe thread (probe.c) connects again.
	 */
	int down;	  /* (L) */
	int64_t probe_at; /* (L) while down: when the probe tries next (now_ns) */
};

struct kvfs {
	struct kvfs_config cfg; /* (I) */
	unsigned flags;		/* (I) KVFS_OPEN_* */
	pthread_mutex_t lock;
	struct kvfs_mr *mrs; /* lock */
	struct conn conns[KVFS_MAX_SERVERS];
	uint64_t name_hash[KVFS_MAX_SERVERS]; /* (I) */
	pthread_t wd;			      /* (I) watchdog(), started by watchdog_start */
	pthread_mutex_t wd_lock;
	pthread_cond_t wd_cond;
	int wd_stop; /* wd_lock */

	/* probe.c */
	pthread_t prober; /* probe(), started by probe_kick at the first server down */
	pthread_mutex_t probe_lock;
	pthread_cond_t probe_cond;
	int probe_started, probe_kicked, probe_quit; /* probe_lock */
	/* Tracking (track.c): set by kvfs_track before any other call, then (I). */
	kvfs_inval_cb track_fn;
	void *track_arg;
	pthread_t track_thr;
	int track_started;
	pthread_mutex_t track_lock;
	pthread_cond_t track_cond;
	struct tev *tq_head, *tq_tail; /* track_lock: events for track_fn */
	int tq_len;		       /* track_lock */
	uint64_t tq_all;	       /* track_lock: servers with an ALL pending (queue full) */
	int track_stop;		       /* track_lock */
	_Atomic uint64_t track_epoch;  /* see kvfs_track_state */
	_Atomic int track_bad;	       /* conns up once and not tracked now */
	_Atomic int track_undelivered; /* events queued, not yet through track_fn */
};

static inline int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CLOCK_REALTIME ns (< 1 s) from now, for pthread_cond_timedwait. */
static inline struct timespec realtime_in(long ns)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += ns;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

/* Caller holds c->lock. */
static inline void wake_all(struct conn *c)
{
	if (c->sleepers)
		pthread_cond_broadcast(&c->cond);
}

/* ---- conn.c: connections ---- */
void conn_init(struct conn *c, struct kvfs *kv, int idx, size_t slot_size, int n_slots);
/* Tear down c's session and free its buffers; nobody uses c any more. */
void conn_destroy(struct conn *c);
/* Enter a call on conn c: (re)connect when needed. Returns 0 or -errno. */
int conn_enter(struct conn *c);
/*
 * Enter c for a small request that the bootstrap channel can carry: like
 * conn_enter, but on a lazy kvfs_t (KVFS_OPEN_LAZY_FABRIC) a conn without a
 * fabric session is connected (or kept) in direct mode, and *direct says
 * so: then the call goes by call_small with direct set, or leaves and
 * conn_enter()s again to upgrade for anything bigger.
 */
int conn_enter_small(struct conn *c, int *direct);
void conn_leave(struct conn *c);
/*
 * Enter c for a call on the server-side state (an upload, a pin) of session
 * generation gen. Returns 0, or -EIO without connecting when that session is
 * gone (and the state with it) or the conn is broken.
 */
int sess_enter(struct conn *c, uint64_t gen);
/* sess_enter with c->lock held. */
int do_sess_enter(struct conn *c, uint64_t gen);
/* Mark broken (and log why, once per session); do_break: caller holds c->lock. */
void do_break(struct conn *c, const char *why);
void conn_break(struct conn *c, const char *why);
/* Is the server's TCP channel still quiet (0: it closed or spoke)? */
int liveness_ok(struct conn *c);
/* How long a down server waits between the end of one probe and the next. */
#define PROBE_MS 1000
/*
 * Mark c down (it did not answer within client.timeout_ms): its calls fail
 * at once with -EIO until the probe reconnects. Caller holds c->lock.
 */
void do_mark_down(struct conn *c);
/*
 * The probe's turn on c: when c is down and its probe is due, connect
 * (blocking up to the timeout, no lock held); success makes c up again.
 * Returns when c wants the probe next (now_ns time), 0 when it is not down.
 */
int64_t conn_probe(struct conn *c);

/* ---- rpc.c: request slots and round trips ---- */
void req_init(struct conn *c, struct wire_req *q, uint8_t op);
/*
 * One request/reply. On success returns 0 and the caller owns *out (reply
 * buffer) until it calls req_put(c, *out).
 */
int call(struct conn *c, struct wire_req *q, struct wire_rep *rep, struct creq **out);
/*
 * Release a request slot. If the send never completed (broken conn), the
 * slot stays out of use until the teardown resets everything.
 */
void req_put(struct conn *c, struct creq *r);
/*
 * call() for replies without payload: returns the status, attr copied out
 * (*rep_out is zeroed first, so it is defined on every path).
 */
int call_simple(struct conn *c, struct wire_req *q, struct wire_rep *rep_out);
/* Take a free slot of bitmap *mask (c->recv_free, c->staging_free); -1 when c broke. */
int slot_get(struct conn *c, uint64_t *mask);
void slot_put(struct conn *c, uint64_t *mask, int s);

/* ---- direct.c: requests on the bootstrap socket (direct mode) ---- */
/*
 * One direct round trip of q (op, key, inline data; session, token and
 * req_id are filled in): 0 with *rep decoded, its data (at most cap bytes,
 * else -EPROTO) copied to dst and rep->data pointing there; or -errno, the
 * conn then broken (-EIO, -ETIMEDOUT) unless q did not fit a frame
 * (-EMSGSIZE). Blocks in poll up to client.timeout_ms; no naps. Direct
 * round trips on one conn take turns (conn->sock_busy). Caller entered c
 * with direct set.
 */
int direct_call(struct conn *c, struct wire_req *q, struct wire_rep *rep, void *dst, size_t cap);
/* call_simple, or its direct twin when direct is set. */
int call_small(struct conn *c, int direct, struct wire_req *q, struct wire_rep *rep_out);

/* ---- probe.c: the thread that reconnects down servers ---- */
void probe_init(struct kvfs *kv);
/*
 * Wake the probe thread (start it, the first time); any lock of a conn may
 * be held. 0, or -EAGAIN when there is no probe thread (it could not start).
 */
int probe_kick(struct kvfs *kv);
/* Stop and join it (waits for a connect in progress: at most client.timeout_ms). */
void probe_stop(struct kvfs *kv);
/*
 * Poll c's CQ once as its poller, when it is up, tracked, and nobody else
 * polls it (track.c's thread, between calls); live: check the TCP channel
 * too. Returns 1 when something completed.
 */
int conn_poll_idle(struct conn *c, int live);

/* ---- track.c: invalidations ---- */
struct tev;
void track_init(struct kvfs *kv);
void track_stop(struct kvfs *kv);
/*
 * OP_TRACK on c's new session; caller entered c. 0 (also when the server
 * does not track: then c stays untracked), or -EIO with c left and broken.
 */
int track_session(struct conn *c);
/* Caller holds c->lock: an INVAL message; a fabric session came up; c's tracking is over. */
void do_track_receive(struct conn *c, const struct wire_rep *rep);
void do_track_up(struct conn *c);
void do_track_lost(struct conn *c);
/* Is this track.c's thread (its reconnects' errors are no call's to share)? */
int track_is_self(void);

/* ---- watchdog.c: the libfabric 1.17 shm lock watchdog ---- */
int watchdog_start(struct kvfs *kv);
void watchdog_stop(struct kvfs *kv);

/* ---- kv.c: keyed requests ---- */
/*
 * Read [off, off+len) into buf by requests like *tmpl (OP_GET, OP_UP_READ or
 * OP_PIN_GET with its key or handle): inline while what is left fits a
 * message, else in pieces of at most slot_size through one receive slot,
 * copied out. Stops at the end of the value (reply attr.size). Returns the bytes read, or -errno;
 * -EAGAIN when the value's version changed between pieces. *attr gets the last
 * reply's attributes. Caller has entered c.
 */
ssize_t read_range(struct conn *c, const struct wire_req *tmpl, void *buf, size_t len, uint64_t off,
		   struct kvfs_attr *attr);
/*
 * Read one piece by request q (OP_GET or OP_PIN_GET with its key or handle,
 * off and len) into a free receive slot and lend it. Returns the bytes read;
 * the lease then keeps c entered (kvfs_lease_release leaves it). On error
 * (-EINVAL when len > slot_size) the caller leaves c.
 */
ssize_t lease_piece(struct conn *c, struct wire_req *q, const void **data, kvfs_lease_t **lease,
		    struct kvfs_attr *attr);
/*
 * Open server-side state of key (an upload or a pin) by request op: on
 * success *cp and *gen (the session it lives in) say where it is, and *rep
 * holds its handle and the value's attributes. Returns 0 or -errno.
 */
int state_open(kvfs_t *kv, const char *key, uint8_t op, uint8_t flags, struct conn **cp,
	       uint64_t *gen, struct wire_rep *rep);

/* ---- pin.c: pins and same-host pool maps ---- */
/*
 * Map the pool the server offers (wire_pool) read-only, when it is the one
 * the server described and a kvfs pool (a sealed memfd "kvfs-pool" of that
 * size): same host, and we may ptrace the server (what pidfd_getfd asks, as
 * shm's cross-memory attach does). Returns NULL otherwise; the conn then
 * reads by RMA as always. wp is authenticated (READY's MAC) only with a
 * secret; without one, the checks still keep a file of the sender's
 * choosing from being mapped.
 */
struct pool_map *pool_attach(const struct kvfs_config *cfg, const struct wire_pool *wp,
			     const char *name);
void pool_put(struct pool_map *m);
/* Drop a reference to p; the last one unpins it. */
void pin_put(struct kvfs_pin *p);

/* ---- mr.c: caller-registered memory ---- */
/*
 * The arguments of a zero-copy call on kv: 0; -EINVAL when m is NULL or of
 * another kvfs_t, or buf NULL with len > 0; -EFAULT when [buf, buf+len) is
 * not inside m. Checked before anything is sent, whatever the length.
 */
int mr_check(const struct kvfs *kv, const struct kvfs_mr *m, const void *buf, size_t len);
/*
 * The descriptor of [buf, buf+len) inside m on c's session, registering m
 * there first when needed. Returns 0, -EFAULT outside m, or -errno. Caller
 * has entered c.
 */
int mr_desc(struct conn *c, kvfs_mr_t *m, const void *buf, size_t len, struct wire_desc *d);
/* Close every caller registration on c's session; caller holds c->lock. */
void do_mr_conn_close(struct conn *c);
/* Free the regions left on kv->mrs: kvfs_close, after every conn_destroy. */
void mr_free_all(struct kvfs *kv);

#endif
