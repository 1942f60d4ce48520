/*
 * libkvfs: the client. See include/kvfs/kvfs.h for the API contract.
 *
 * One struct conn per configured server: a TCP bootstrap/liveness socket, a
 * FI_THREAD_SAFE endpoint, two registered regions the server may write
 * (receive) or read (staging), NREQ request slots with their own send buffers
 * and NRECV posted reply buffers. Regions are cut into slots for bulk bytes.
 *
 * Progress: the first waiting thread becomes the conn's poller and reads the
 * CQ (spinning, then yielding the core between polls); others sleep on the
 * conn's condition variable and are woken when a reply or send completion
 * lands, the conn breaks, or the poller leaves (so another takes over); an
 * empty poll wakes nobody. A freed request or buffer slot wakes them only
 * when someone waits for one. No lock is held across a round trip. A reply is
 * handed over in its receive buffer (no copy); the waiter re-posts the buffer
 * when done with it.
 *
 * A watchdog thread per kvfs_t frees a call stuck inside libfabric on a lock
 * a dead shm server left held (see unwedge()).
 *
 * Same-host reads: when the server runs on this host and we may ptrace it,
 * the conn maps the server's pool read-only (pool_attach) and kvfs_pin_map
 * answers with where a pinned value's bytes lie in it instead of moving them.
 *
 * Failure: a closed TCP channel, a fabric error or a timeout marks the conn
 * broken; every waiter fails (-EIO, or -ETIMEDOUT for the one whose deadline
 * passed), and the next call after the last user has left tears the endpoint
 * down (closing its memory registrations, so a late RMA from the old session
 * cannot land) and connects anew.
 *
 * Lock order: kv->lock before conn->lock. conn->lock protects the fields
 * marked (L).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kvfs/kvfs.h"

#include "common/config.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/sock.h"
#include "common/wire.h"
#include "fabric/fabric.h"

#define NREQ	    64
#define NRECV	    (NREQ + 16)
#define MAX_SLOTS   64
#define SLOT_MAX    (8u << 20)
#define SPIN_NS	    (30 * 1000) /* busy-poll this long after the last completion... */
#define POLL_NAP_NS 20000	/* ...then nap this long between polls */
#define LIVENESS_MS 1
#define WEDGE_NS    (500 * 1000000LL) /* one libfabric call this long: see unwedge() */
#define WATCH_MS    100

struct conn;

struct creq {
	struct fab_ctx send_ctx; /* first */
	struct conn *c;
	uint64_t id;   /* (L) slot index | sequence << 8 */
	int active;    /* (L) */
	int sent;      /* (L) send completion seen */
	int replied;   /* (L) reply matched */
	int failed;    /* (L) status of a failed send or a broken conn */
	int rx;	       /* (L) receive buffer holding the reply, -1 none */
	size_t rx_len; /* (L) */
	uint8_t *tx;
	_Atomic int64_t fab_since; /* inside fab_post_send/fab_poll since (0: not); see unwedge() */
};

/*
 * A receive slot lent to the caller; one per slot, so lending allocates
 * nothing. Or (pin set) kvfs_pin_map's leases of that pin, which share one
 * and each hold a reference to the pin.
 */
struct kvfs_lease {
	struct conn *c;
	int slot;
	struct kvfs_pin *pin;
};

/* A server's pool mapped read-only; held by the conn and by each pin on it. */
struct pool_map {
	_Atomic int refs;
	const uint8_t *base;
	size_t len;
};

struct rxbuf {
	struct fab_ctx ctx; /* first */
	struct conn *c;
	int idx;
	_Atomic int64_t fab_since; /* inside fab_post_recv since (0: not); see unwedge() */
};

struct conn {
	struct kvfs *kv;
	int idx;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int up;		 /* (L) session established */
	int broken;	 /* (L) */
	int users;	 /* (L) threads inside calls on this conn */
	int poller;	 /* (L) a thread is reading the CQ */
	int sleepers;	 /* (L) threads waiting on cond */
	int res_waiters; /* (L) of them, those waiting for a free request or buffer slot */
	uint64_t gen;	 /* (L) session generation, bumped on every connect */

	int fd;
	struct fab_ep *ep;
	fab_addr_t srv_addr;
	char provider[32];
	struct wire_limits limits;
	uint64_t get_inline; /* largest zero-copy GET answered inline (see do_connect) */
	uint64_t session, token;
	struct pool_map *pool; /* the server's pool, when mapped (see pool_attach) */

	size_t region_size, slot_size;
	int n_slots;
	uint8_t *recv_region, *staging_region;
	struct fab_mr *recv_mr, *staging_mr, *msg_mr;
	uint64_t recv_free, staging_free;    /* (L) bitmaps of free slots */
	struct kvfs_lease leases[MAX_SLOTS]; /* leases[i] lends receive slot i */

	size_t msg_size;
	uint8_t *msgs;
	struct creq reqs[NREQ];
	uint64_t req_free; /* (L) bitmap */
	struct rxbuf rxs[NRECV];
};

/* A caller-registered region, registered lazily on each conn it is used on. */
struct kvfs_mr {
	struct kvfs *kv;
	uint8_t *buf;
	size_t len;
	struct kvfs_mr *next; /* kv->lock */
	struct {
		struct fab_mr *mr;
		uint64_t gen;	 /* conn generation it belongs to; 0 = none */
		uint32_t region; /* server's id for it */
	} per[KVFS_MAX_SERVERS]; /* conn->lock of that conn */
};

struct kvfs_upload {
	struct conn *c;
	uint64_t gen, handle, size;
	char key[KVFS_MAX_KEY + 1];
};

/*
 * A value pinned on c's server in session generation gen. Immutable but for
 * refs: kvfs_pin_close and each kvfs_pin_map lease hold one; the last drop
 * unpins (pin_put).
 */
struct kvfs_pin {
	struct conn *c;
	uint64_t gen, handle, size;
	struct pool_map *pool; /* c->pool when pinned, with a reference */
	_Atomic int refs;
	/* where the value lies in pool, fetched by the first kvfs_pin_map */
	pthread_mutex_t map_lock;
	struct kvfs_lease lease; /* what kvfs_pin_map lends: {.pin = this} */
	int map_ready;		 /* (map_lock) segs is complete */
	int nsegs;
	struct pin_seg {
		uint64_t voff; /* value offset of its first byte */
		uint64_t len;
		const uint8_t *addr;
	} * segs;
};

struct kvfs {
	struct kvfs_config cfg;
	pthread_mutex_t lock;
	struct kvfs_mr *mrs; /* lock */
	struct conn conns[KVFS_MAX_SERVERS];
	uint64_t name_hash[KVFS_MAX_SERVERS];
	pthread_t wd; /* watchdog(), started by open_common */
	pthread_mutex_t wd_lock;
	pthread_cond_t wd_cond;
	int wd_stop; /* wd_lock */
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CLOCK_REALTIME ns (< 1 s) from now, for pthread_cond_timedwait. */
static struct timespec realtime_in(long ns)
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

static void wake_all(struct conn *c)
{
	if (c->sleepers)
		pthread_cond_broadcast(&c->cond);
}

/* ---- connection set-up and teardown ------------------------------------- */

static void pool_put(struct pool_map *m)
{
	if (m && atomic_fetch_sub(&m->refs, 1) == 1) {
		munmap((void *)m->base, m->len);
		free(m);
	}
}

/*
 * Map the pool the server offers (wire_pool) read-only, when it is the one
 * the server described: same host, and we may ptrace the server (what
 * pidfd_getfd asks, as shm's cross-memory attach does). Returns NULL
 * otherwise; the conn then reads by RMA as always.
 */
static struct pool_map *pool_attach(const struct kvfs_config *cfg, const struct wire_pool *wp,
				    const char *name)
{
	if (!cfg->local_map || !wp->pid || !wp->len || wp->len > SIZE_MAX)
		return NULL;
	int pfd = pidfd_open((pid_t)wp->pid, 0);
	int fd = pfd >= 0 ? pidfd_getfd(pfd, wp->fd, 0) : -1;
	int err = fd < 0 ? errno : 0;
	if (pfd >= 0)
		close(pfd);
	struct stat st;
	void *p = MAP_FAILED;
	if (fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_dev == wp->dev &&
	    (uint64_t)st.st_ino == wp->ino && (uint64_t)st.st_size >= wp->len)
		p = mmap(NULL, (size_t)wp->len, PROT_READ, MAP_SHARED, fd, 0);
	if (fd >= 0)
		close(fd);
	struct pool_map *m = p == MAP_FAILED ? NULL : malloc(sizeof(*m));
	if (!m) {
		if (p != MAP_FAILED)
			munmap(p, (size_t)wp->len);
		log_debug("server %s: reads by RMA (its pool is not mappable here: %s)", name,
			  err ? strerror(err) : "not the pool the server described");
		return NULL;
	}
	atomic_init(&m->refs, 1);
	m->base = p;
	m->len = (size_t)wp->len;
	return m;
}

static void teardown(struct conn *c)
{
	struct kvfs *kv = c->kv;
	for (struct kvfs_mr *m = kv->mrs; m; m = m->next) {
		if (m->per[c->idx].mr) {
			fab_mr_close(m->per[c->idx].mr);
			m->per[c->idx].mr = NULL;
			m->per[c->idx].gen = 0;
		}
	}
	fab_mr_close(c->recv_mr);
	fab_mr_close(c->staging_mr);
	fab_mr_close(c->msg_mr);
	c->recv_mr = c->staging_mr = c->msg_mr = NULL;
	pool_put(c->pool);
	c->pool = NULL;
	fab_close(c->ep);
	c->ep = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->up = 0;
	c->broken = 0;
	for (int i = 0; i < NREQ; i++)
		c->reqs[i].active = 0;
}

static const char *pick_provider(struct conn *c, const struct wire_welcome *w, char *err,
				 size_t errlen)
{
	const struct kvfs_config *cfg = &c->kv->cfg;
	const char *want = cfg->provider;
	if (strcmp(want, "auto") != 0) {
		for (int i = 0; i < w->n_provs; i++)
			if (strcmp(w->provs[i], want) == 0)
				return w->provs[i];
		snprintf(err, errlen, "server does not offer provider %s", want);
		return NULL;
	}
	int local = sock_host_is_local(cfg->servers[c->idx].host);
	for (int i = 0; local && i < w->n_provs; i++)
		if (strcmp(w->provs[i], "shm") == 0)
			return w->provs[i];
	for (int i = 0; i < w->n_provs; i++)
		if (strcmp(w->provs[i], "shm") != 0)
			return w->provs[i];
	snprintf(err, errlen, "no provider in common with the server");
	return NULL;
}

static void *map_region(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* Connect and set up a session. Caller holds c->lock with no other users. */
static int do_connect(struct conn *c)
{
	struct kvfs *kv = c->kv;
	const struct kvfs_config *cfg = &kv->cfg;
	const struct kvfs_server_entry *se = &cfg->servers[c->idx];
	int tmo = (int)cfg->timeout_ms;
	char err[256] = "";
	struct wire_hello hello = {.proto = WIRE_PROTO};
	struct wire_challenge ch;
	struct wire_welcome w;
	struct wire_setup setup = {0};
	struct wire_ready rd;
	uint8_t mac[WIRE_MAC] = {0};
	int ret;

	c->fd = sock_connect(se->host, se->port, tmo);
	if (c->fd < 0) {
		ret = c->fd;
		c->fd = -1;
		log_warn("server %s (%s:%s): cannot connect: %s", se->name, se->host, se->port,
			 strerror(-ret));
		return -EIO;
	}
	wire_random(hello.nonce, sizeof(hello.nonce));
	ret = sock_send_frame(c->fd, WF_HELLO, &hello, tmo);
	if (!ret)
		ret = sock_recv_frame(c->fd, WF_CHALLENGE, &ch, WIRE_FRAME_MAX, tmo, err,
				      sizeof(err));
	if (ret)
		goto fail;
	if (ch.auth_required && cfg->secret_len == 0) {
		snprintf(err, sizeof(err), "server requires a secret; set cluster.secret_file");
		ret = -EACCES;
		goto fail;
	}
	if (ch.auth_required)
		wire_mac(mac, cfg->secret, cfg->secret_len, "kvfs-client", ch.nonce, hello.nonce);
	ret = sock_send_frame(c->fd, WF_AUTH, mac, tmo);
	if (!ret)
		ret = sock_recv_frame(c->fd, WF_WELCOME, &w, WIRE_FRAME_MAX, tmo, err, sizeof(err));
	if (ret)
		goto fail;
	if (ch.auth_required) {
		uint8_t want[WIRE_MAC];
		wire_mac(want, cfg->secret, cfg->secret_len, "kvfs-server", hello.nonce, ch.nonce);
		if (!wire_mac_equal(want, w.mac)) {
			snprintf(err, sizeof(err), "server failed to prove the shared secret");
			ret = -EACCES;
			goto fail;
		}
	}
	if (w.limits.msg_size < WIRE_REQ_FIXED + 2 * KVFS_MAX_KEY ||
	    w.limits.msg_size > (1u << 20) || w.limits.inline_threshold > 65536) {
		snprintf(err, sizeof(err), "server limits out of range");
		ret = -EPROTO;
		goto fail;
	}
	c->limits = w.limits;
	const char *prov = pick_provider(c, &w, err, sizeof(err));
	if (!prov) {
		ret = -EPROTONOSUPPORT;
		goto fail;
	}
	snprintf(c->provider, sizeof(c->provider), "%s", prov);

	char local_ip[64];
	struct fab_open_args fa = {
	    .provider = prov, .domain = cfg->n_domains ? cfg->domains[0] : NULL, .thread_safe = 1};
	if (strcmp(prov, "shm") == 0 || strcmp(prov, "tcp") == 0)
		fa.domain = NULL;
	if (strcmp(prov, "shm") != 0 && sock_local_ip(c->fd, local_ip, sizeof(local_ip)) == 0)
		fa.node = local_ip; /* the fabric goes out the interface the bootstrap used */
	ret = fab_open(&c->ep, &fa);
	if (ret) {
		snprintf(err, sizeof(err), "cannot open fabric provider %s", prov);
		goto fail;
	}

	/* Buffers survive reconnects; registrations do not. */
	if (!c->recv_region) {
		c->recv_region = map_region(c->region_size);
		c->staging_region = map_region(c->region_size);
		if (!c->recv_region || !c->staging_region) {
			ret = -ENOMEM;
			goto fail;
		}
	}
	if (!c->msgs || c->msg_size != w.limits.msg_size) {
		free(c->msgs);
		c->msg_size = w.limits.msg_size;
		c->msgs = aligned_alloc(4096, (size_t)(NREQ + NRECV) * c->msg_size);
		if (!c->msgs) {
			ret = -ENOMEM;
			goto fail;
		}
		memset(c->msgs, 0, (size_t)(NREQ + NRECV) * c->msg_size);
	}
	ret = fab_mr_reg(c->ep, c->recv_region, c->region_size, FAB_ACC_REMOTE_WRITE, &c->recv_mr);
	if (!ret)
		ret = fab_mr_reg(c->ep, c->staging_region, c->region_size, FAB_ACC_REMOTE_READ,
				 &c->staging_mr);
	if (!ret)
		ret = fab_mr_reg(c->ep, c->msgs, (size_t)(NREQ + NRECV) * c->msg_size,
				 FAB_ACC_SEND | FAB_ACC_RECV, &c->msg_mr);
	if (ret) {
		snprintf(err, sizeof(err), "cannot register buffers");
		goto fail;
	}
	/*
	 * shm moves messages above its inject size by a slower path than an RMA
	 * write: there, zero-copy GETs (kvfs_get_mr) whose reply would not fit
	 * use RMA into the caller's memory (4 KiB p50 3.2 us instead of 4.0).
	 * Copying GETs stay inline (RMA to a slot plus a copy is slower); on
	 * tcp one inline message is faster either way.
	 */
	c->get_inline = c->limits.inline_threshold;
	if (strcmp(prov, "shm") == 0 && fab_inject_size(c->ep) > WIRE_REP_FIXED &&
	    fab_inject_size(c->ep) - WIRE_REP_FIXED < c->get_inline)
		c->get_inline = fab_inject_size(c->ep) - WIRE_REP_FIXED;
	snprintf(setup.provider, sizeof(setup.provider), "%s", prov);
	size_t alen = sizeof(setup.addr);
	ret = fab_getname(c->ep, setup.addr, &alen);
	if (ret)
		goto fail;
	setup.addr_len = (uint16_t)alen;
	setup.recv = (struct wire_region){fab_mr_remote_base(c->recv_mr), c->region_size,
					  fab_mr_key(c->recv_mr)};
	setup.staging = (struct wire_region){fab_mr_remote_base(c->staging_mr), c->region_size,
					     fab_mr_key(c->staging_mr)};
	ret = sock_send_frame(c->fd, WF_SETUP, &setup, tmo);
	if (!ret)
		ret = sock_recv_frame(c->fd, WF_READY, &rd, WIRE_FRAME_MAX, tmo, err, sizeof(err));
	if (ret)
		goto fail;
	ret = fab_av_insert(c->ep, rd.addr, &c->srv_addr);
	if (ret) {
		snprintf(err, sizeof(err), "cannot add the server's fabric address");
		goto fail;
	}
	c->session = rd.session;
	c->token = rd.token;
	c->pool = pool_attach(cfg, &rd.pool, se->name);
	c->req_free = NREQ == 64 ? ~0ull : ((1ull << NREQ) - 1);
	c->recv_free = c->staging_free = c->n_slots == 64 ? ~0ull : ((1ull << c->n_slots) - 1);
	for (int i = 0; i < NREQ; i++)
		c->reqs[i] =
		    (struct creq){.c = c, .rx = -1, .tx = c->msgs + (size_t)i * c->msg_size};
	for (int i = 0; i < NRECV; i++) {
		c->rxs[i] = (struct rxbuf){.c = c, .idx = i};
		ret = fab_post_recv(c->ep, c->msgs + (size_t)(NREQ + i) * c->msg_size, c->msg_size,
				    fab_mr_desc(c->msg_mr), &c->rxs[i].ctx);
		if (ret)
			goto fail;
	}
	c->gen++;
	c->up = 1;
	log_info("server %s: session on %s%s", se->name, fab_provider(c->ep),
		 c->pool ? ", reads from its pool mapped here" : "");
	return 0;
fail:
	log_warn("server %s (%s:%s): %s%s%s", se->name, se->host, se->port, err[0] ? err : "",
		 err[0] ? ": " : "", strerror(-ret));
	teardown(c);
	if (ret == -ETIMEDOUT || ret == -EACCES || ret == -EPROTONOSUPPORT || ret == -ENOMEM)
		return ret;
	return -EIO;
}

/* Enter a call on conn c: (re)connect when needed. */
static int conn_enter(struct conn *c)
{
	int ret = 0;
	pthread_mutex_lock(&c->lock);
	if (c->up && !c->broken) {
		c->users++; /* the common case: one lock, no waiting */
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	for (;;) {
		/* Wait for the users of a broken session to leave... */
		while (c->broken && c->users > 0) {
			c->sleepers++;
			pthread_cond_wait(&c->cond, &c->lock);
			c->sleepers--;
		}
		pthread_mutex_unlock(&c->lock);
		/* ...then take kv->lock first: teardown closes caller-registered memory. */
		pthread_mutex_lock(&c->kv->lock);
		pthread_mutex_lock(&c->lock);
		if (!(c->broken && c->users > 0))
			break;
		pthread_mutex_unlock(&c->kv->lock);
	}
	if (c->broken)
		teardown(c);
	if (!c->up)
		ret = do_connect(c);
	if (!ret)
		c->users++;
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&c->kv->lock);
	return ret;
}

static void conn_leave(struct conn *c)
{
	pthread_mutex_lock(&c->lock);
	c->users--;
	if (c->users == 0 && c->broken)
		wake_all(c);
	pthread_mutex_unlock(&c->lock);
}

/*
 * Enter c for a call on the server-side state (an upload, a pin) of session
 * generation gen. Returns 0, or -EIO without connecting when that session is
 * gone (and the state with it) or the conn is broken.
 */
static int sess_enter(struct conn *c, uint64_t gen)
{
	pthread_mutex_lock(&c->lock);
	int ok = c->up && !c->broken && c->gen == gen;
	if (ok)
		c->users++;
	pthread_mutex_unlock(&c->lock);
	return ok ? 0 : -EIO;
}

/* Mark broken; caller holds c->lock. */
static void do_break(struct conn *c, const char *why)
{
	if (!c->broken) {
		log_warn("server %s: connection lost: %s", c->kv->cfg.servers[c->idx].name, why);
		c->broken = 1;
	}
	wake_all(c);
}

/* ---- requests ------------------------------------------------------------ */

static struct creq *req_get(struct conn *c)
{
	struct creq *r = NULL;
	pthread_mutex_lock(&c->lock);
	while (!c->broken && !c->req_free) {
		c->sleepers++;
		c->res_waiters++;
		pthread_cond_wait(&c->cond, &c->lock);
		c->res_waiters--;
		c->sleepers--;
	}
	if (!c->broken) {
		int i = __builtin_ctzll(c->req_free);
		c->req_free &= ~(1ull << i);
		r = &c->reqs[i];
		r->id = (uint64_t)i | ((r->id >> 8) + 1) << 8;
		r->active = 1;
		r->sent = r->replied = r->failed = 0;
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

/*
 * Release a request slot. If the send never completed (broken conn), the
 * slot stays out of use until the teardown resets everything.
 */
static void req_put(struct conn *c, struct creq *r)
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
		if (wire_rep_decode(msg, e->len, &rep, &why) == 0) {
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
	if (e->err) {
		r->failed = e->err;
		do_break(c, "send failed");
	}
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

static int liveness_ok(struct conn *c)
{
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	if (poll(&p, 1, 0) > 0)
		return 0; /* the server never speaks on it: data or EOF both mean trouble */
	return 1;
}

/*
 * The watchdog: a call stuck in one fab_post_send, fab_poll or
 * fab_post_recv for WEDGE_NS while its server is gone means, on shm with
 * libfabric 1.17, that the server died holding the lock of a shared region
 * (its own, which every sender takes, or ours), and the call spins on it
 * forever: no caller can get it out, it is inside libfabric. Release that lock (fab_shm_unwedge):
 * the call returns, sees the broken conn and fails like any other, and the
 * conn reconnects once the server is back. Checked every WATCH_MS by one
 * thread per kvfs_t.
 */
static void unwedge(struct conn *c)
{
	int64_t now = now_ns();
	int stuck = 0;
	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < NREQ && c->ep; i++) {
		int64_t since = atomic_load(&c->reqs[i].fab_since);
		stuck |= c->reqs[i].active && since && now - since > WEDGE_NS;
	}
	for (int i = 0; i < NRECV && c->ep; i++) {
		int64_t since = atomic_load(&c->rxs[i].fab_since);
		stuck |= since && now - since > WEDGE_NS;
	}
	if (stuck)
		c->users++; /* keep the endpoint while we look */
	pthread_mutex_unlock(&c->lock);
	if (!stuck)
		return;
	if (!liveness_ok(c) && fab_shm_unwedge(c->ep) > 0)
		log_warn("server %s: freed a call stuck on a lock the dead server held",
			 c->kv->cfg.servers[c->idx].name);
	conn_leave(c);
}

static void *watchdog(void *arg)
{
	struct kvfs *kv = arg;
	pthread_mutex_lock(&kv->wd_lock);
	while (!kv->wd_stop) {
		struct timespec ts = realtime_in(WATCH_MS * 1000000L);
		pthread_cond_timedwait(&kv->wd_cond, &kv->wd_lock, &ts);
		if (kv->wd_stop)
			break;
		pthread_mutex_unlock(&kv->wd_lock);
		for (int i = 0; i < kv->cfg.n_servers; i++)
			unwedge(&kv->conns[i]);
		pthread_mutex_lock(&kv->wd_lock);
	}
	pthread_mutex_unlock(&kv->wd_lock);
	return NULL;
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
		pthread_mutex_lock(&c->lock);
		do_break(c, "cannot send");
		pthread_mutex_unlock(&c->lock);
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

static void req_init(struct conn *c, struct wire_req *q, uint8_t op)
{
	memset(q, 0, sizeof(*q));
	q->op = op;
	q->session = c->session;
	q->token = c->token;
}

/*
 * One request/reply. On success returns 0 and the caller owns *out (reply
 * buffer) until it calls req_put(c, *out).
 */
static int call(struct conn *c, struct wire_req *q, struct wire_rep *rep, struct creq **out)
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

/*
 * call() for replies without payload: returns the status, attr copied out
 * (*rep_out is zeroed first, so it is defined on every path).
 */
static int call_simple(struct conn *c, struct wire_req *q, struct wire_rep *rep_out)
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

/* ---- slots ---------------------------------------------------------------- */

static int slot_get(struct conn *c, uint64_t *mask)
{
	int s = -1;
	pthread_mutex_lock(&c->lock);
	while (!c->broken && !*mask) {
		c->sleepers++;
		c->res_waiters++;
		pthread_cond_wait(&c->cond, &c->lock);
		c->res_waiters--;
		c->sleepers--;
	}
	if (!c->broken) {
		s = __builtin_ctzll(*mask);
		*mask &= ~(1ull << s);
	}
	pthread_mutex_unlock(&c->lock);
	return s;
}

static void slot_put(struct conn *c, uint64_t *mask, int s)
{
	pthread_mutex_lock(&c->lock);
	*mask |= 1ull << s;
	if (c->res_waiters)
		wake_all(c);
	pthread_mutex_unlock(&c->lock);
}

/* ---- public API ------------------------------------------------------------ */

const char *kvfs_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return "success";
	case ENOENT:
		return "no such key";
	case EIO:
		return "server unreachable or connection lost";
	case ETIMEDOUT:
		return "server did not answer in time (client.timeout_ms)";
	case EACCES:
		return "access denied (wrong or missing secret, or region access)";
	case ENOSPC:
		return "server memory full (eviction \"none\")";
	case EFBIG:
		return "value larger than server.max_value";
	case ENAMETOOLONG:
		return "key too long";
	case EXDEV:
		return "source and target live on different servers";
	case EPROTO:
		return "protocol error (malformed message)";
	case EPROTONOSUPPORT:
		return "no common protocol version or fabric provider";
	case EFAULT:
		return "buffer descriptor outside the registered region";
	case EBADF:
		return "unknown upload or pin handle";
	default:
		return strerror(err);
	}
}

static int open_common(struct kvfs *kv)
{
	char err[256];
	int ret = config_validate(&kv->cfg, err, sizeof(err));
	if (ret) {
		log_error("%s", err);
		return ret;
	}
	pthread_mutex_init(&kv->lock, NULL);
	size_t region = kv->cfg.client_buffer;
	size_t slot = region / 8;
	if (slot > SLOT_MAX)
		slot = SLOT_MAX;
	slot &= ~(size_t)4095;
	int n_slots = (int)(region / slot);
	if (n_slots > MAX_SLOTS)
		n_slots = MAX_SLOTS;
	for (int i = 0; i < kv->cfg.n_servers; i++) {
		struct conn *c = &kv->conns[i];
		c->kv = kv;
		c->idx = i;
		c->fd = -1;
		c->region_size = (size_t)n_slots * slot;
		c->slot_size = slot;
		c->n_slots = n_slots;
		pthread_mutex_init(&c->lock, NULL);
		pthread_cond_init(&c->cond, NULL);
		kv->name_hash[i] =
		    hash64(kv->cfg.servers[i].name, strlen(kv->cfg.servers[i].name), 0);
	}
	pthread_mutex_init(&kv->wd_lock, NULL);
	pthread_cond_init(&kv->wd_cond, NULL);
	ret = -pthread_create(&kv->wd, NULL, watchdog, kv);
	if (ret)
		log_error("cannot start the client's watchdog thread: %s", strerror(-ret));
	return ret;
}

int kvfs_open_config(kvfs_t **out, const struct kvfs_config *cfg)
{
	struct kvfs *kv = calloc(1, sizeof(*kv));
	if (!kv)
		return -ENOMEM;
	kv->cfg = *cfg;
	int ret = open_common(kv);
	if (ret) {
		free(kv);
		return ret;
	}
	*out = kv;
	return 0;
}

int kvfs_open(kvfs_t **out, const char *path)
{
	struct kvfs *kv = calloc(1, sizeof(*kv));
	char err[512];
	if (!kv)
		return -ENOMEM;
	int ret = config_load(&kv->cfg, config_default_path(path), err, sizeof(err));
	if (ret) {
		log_error("%s", err);
		free(kv);
		return ret;
	}
	ret = open_common(kv);
	if (ret) {
		free(kv);
		return ret;
	}
	*out = kv;
	return 0;
}

void kvfs_close(kvfs_t *kv)
{
	if (!kv)
		return;
	pthread_mutex_lock(&kv->wd_lock);
	kv->wd_stop = 1;
	pthread_cond_signal(&kv->wd_cond);
	pthread_mutex_unlock(&kv->wd_lock);
	pthread_join(kv->wd, NULL);
	pthread_mutex_destroy(&kv->wd_lock);
	pthread_cond_destroy(&kv->wd_cond);
	for (int i = 0; i < kv->cfg.n_servers; i++) {
		struct conn *c = &kv->conns[i];
		teardown(c);
		if (c->recv_region)
			munmap(c->recv_region, c->region_size);
		if (c->staging_region)
			munmap(c->staging_region, c->region_size);
		free(c->msgs);
		pthread_mutex_destroy(&c->lock);
		pthread_cond_destroy(&c->cond);
	}
	while (kv->mrs) {
		struct kvfs_mr *m = kv->mrs;
		kv->mrs = m->next;
		free(m);
	}
	pthread_mutex_destroy(&kv->lock);
	free(kv);
}

void kvfs_limits(kvfs_t *kv, struct kvfs_limits *out)
{
	struct conn *c = &kv->conns[0];
	out->max_key = KVFS_MAX_KEY;
	out->max_value = kv->cfg.server_max_value;
	out->inline_threshold = kv->cfg.inline_threshold;
	pthread_mutex_lock(&c->lock);
	if (c->up) {
		out->max_value = c->limits.max_value;
		out->inline_threshold = c->limits.inline_threshold;
	}
	pthread_mutex_unlock(&c->lock);
	out->slot_size = c->slot_size;
}

int kvfs_server_count(kvfs_t *kv)
{
	return kv->cfg.n_servers;
}

const char *kvfs_server_name(kvfs_t *kv, int idx)
{
	return idx >= 0 && idx < kv->cfg.n_servers ? kv->cfg.servers[idx].name : NULL;
}

/* Rendezvous hashing: the server with the highest hash(key, server) wins. */
int kvfs_server_of(kvfs_t *kv, const char *key)
{
	uint64_t kh = hash64(key, strlen(key), 0x6b766673);
	int best = 0;
	uint64_t best_score = 0;
	for (int i = 0; i < kv->cfg.n_servers; i++) {
		uint64_t s = hash_mix(kh ^ kv->name_hash[i]);
		if (i == 0 || s > best_score) {
			best = i;
			best_score = s;
		}
	}
	return best;
}

static int check_key(const char *key, size_t *len)
{
	if (!key)
		return -EINVAL;
	*len = strnlen(key, KVFS_MAX_KEY + 1);
	if (*len == 0)
		return -EINVAL;
	if (*len > KVFS_MAX_KEY)
		return -ENAMETOOLONG;
	return 0;
}

/* Enter the conn of key's server. */
static int route(struct kvfs *kv, const char *key, size_t *klen, struct conn **out)
{
	int ret = check_key(key, klen);
	if (ret)
		return ret;
	struct conn *c = &kv->conns[kvfs_server_of(kv, key)];
	ret = conn_enter(c);
	if (ret)
		return ret;
	*out = c;
	return 0;
}

/* Enter key's server and start request q of op for key. The caller leaves c. */
static int route_req(struct kvfs *kv, const char *key, uint8_t op, struct conn **out,
		     struct wire_req *q)
{
	size_t klen;
	int ret = route(kv, key, &klen, out);
	if (ret)
		return ret;
	req_init(*out, q, op);
	q->key = (const uint8_t *)key;
	q->klen = (uint32_t)klen;
	return 0;
}

static void sa_to_wire(struct wire_sa *w, const struct kvfs_setattr *sa)
{
	if (!sa)
		return;
	w->mask = sa->mask;
	w->mode = sa->mode;
	w->uid = sa->uid;
	w->gid = sa->gid;
	w->mtime_ns = sa->mtime_ns;
	w->ttl = sa->ttl;
}

/*
 * Read one piece [q->off, q->off + q->len) by request q (OP_GET, OP_UP_READ
 * or OP_PIN_GET, key or handle filled in): inline (region 0) or into desc.
 * Copies inline data to dst. Returns the bytes moved or -errno; attr (may be
 * NULL) gets the reply's attributes.
 */
static ssize_t read_piece(struct conn *c, struct wire_req *q, const struct wire_desc *desc,
			  void *dst, struct kvfs_attr *attr)
{
	struct wire_rep rep;
	struct creq *r;
	if (desc)
		q->buf = *desc;
	else
		q->buf = (struct wire_desc){0};
	int ret = call(c, q, &rep, &r);
	if (ret)
		return ret;
	ssize_t n = rep.status;
	if (!rep.status) {
		if (rep.n > q->len || (!desc && rep.n != rep.dlen)) {
			n = -EPROTO;
		} else {
			n = (ssize_t)rep.n;
			if (!desc && dst)
				memcpy(dst, rep.data, rep.n);
		}
		if (attr)
			*attr = rep.attr;
	}
	req_put(c, r);
	return n;
}

/* GET one piece: inline (region 0) or into desc. Copies inline data to dst. */
static ssize_t get_piece(struct conn *c, const char *key, size_t klen, uint64_t off, size_t len,
			 const struct wire_desc *desc, void *dst, struct kvfs_attr *attr)
{
	struct wire_req q;
	req_init(c, &q, OP_GET);
	q.key = (const uint8_t *)key;
	q.klen = (uint32_t)klen;
	q.off = off;
	q.len = len;
	return read_piece(c, &q, desc, dst, attr);
}

/*
 * Read [off, off+len) into buf by requests like *tmpl (OP_GET, OP_UP_READ or
 * OP_PIN_GET with its key or handle): inline while what is left fits a
 * message, else in pieces of at most slot_size through one receive slot,
 * copied out. Stops at the end of the value (reply attr.size). Returns the bytes read, or -errno;
 * -EAGAIN when the value's version changed between pieces. *attr gets the last
 * reply's attributes. Caller has entered c.
 */
static ssize_t read_range(struct conn *c, const struct wire_req *tmpl, void *buf, size_t len,
			  uint64_t off, struct kvfs_attr *attr)
{
	ssize_t total = 0;
	uint64_t version = 0;
	int slot = -1;
	uint8_t *dst = buf;
	struct kvfs_attr a = {0};
	for (;;) {
		struct wire_req q = *tmpl;
		size_t want = len - (size_t)total;
		ssize_t n;
		q.off = off + (uint64_t)total;
		if (want <= c->limits.inline_threshold) {
			q.len = want;
			n = read_piece(c, &q, NULL, dst + total, &a);
		} else {
			if (slot < 0)
				slot = slot_get(c, &c->recv_free);
			if (slot < 0) {
				n = -EIO;
			} else {
				if (want > c->slot_size)
					want = c->slot_size;
				q.len = want;
				struct wire_desc d = {REGION_RECV, (uint64_t)slot * c->slot_size,
						      want};
				n = read_piece(c, &q, &d, NULL, &a);
				if (n > 0)
					memcpy(dst + total, c->recv_region + d.off, (size_t)n);
			}
		}
		if (n < 0) {
			total = n;
			break;
		}
		if (version && a.version != version) {
			total = -EAGAIN; /* the value changed between pieces */
			break;
		}
		version = a.version;
		total += n;
		if (n == 0 || (size_t)total == len || off + (uint64_t)total >= a.size)
			break;
	}
	if (slot >= 0)
		slot_put(c, &c->recv_free, slot);
	if (attr)
		*attr = a;
	return total;
}

ssize_t kvfs_get(kvfs_t *kv, const char *key, void *buf, size_t len, uint64_t off,
		 struct kvfs_attr *attr)
{
	struct conn *c;
	struct kvfs_attr a;
	struct wire_req q;
	int ret = route_req(kv, key, OP_GET, &c, &q);
	if (ret)
		return ret;
	ssize_t total = read_range(c, &q, buf, len, off, &a);
	if (total >= 0 && attr)
		*attr = a;
	conn_leave(c);
	return total;
}

/*
 * Read one piece by request q (OP_GET or OP_PIN_GET with its key or handle,
 * off and len) into a free receive slot and lend it. Returns the bytes read;
 * the lease then keeps c entered (kvfs_lease_release leaves it). On error
 * (-EINVAL when len > slot_size) the caller leaves c.
 */
static ssize_t lease_piece(struct conn *c, struct wire_req *q, const void **data,
			   kvfs_lease_t **lease, struct kvfs_attr *attr)
{
	if (q->len > c->slot_size)
		return -EINVAL;
	int slot = slot_get(c, &c->recv_free);
	if (slot < 0)
		return -EIO;
	struct wire_desc d = {REGION_RECV, (uint64_t)slot * c->slot_size, q->len};
	ssize_t n = read_piece(c, q, &d, NULL, attr);
	if (n < 0) {
		slot_put(c, &c->recv_free, slot);
		return n;
	}
	struct kvfs_lease *l = &c->leases[slot];
	*l = (struct kvfs_lease){.c = c, .slot = slot};
	*data = c->recv_region + d.off;
	*lease = l;
	return n;
}

ssize_t kvfs_get_lease(kvfs_t *kv, const char *key, uint64_t off, size_t len, const void **data,
		       kvfs_lease_t **lease, struct kvfs_attr *attr)
{
	struct conn *c;
	struct wire_req q;
	int ret = route_req(kv, key, OP_GET, &c, &q);
	if (ret)
		return ret;
	q.off = off;
	q.len = len;
	ssize_t n = lease_piece(c, &q, data, lease, attr);
	if (n < 0)
		conn_leave(c);
	return n; /* a lease keeps the conn entered */
}

static void pin_put(struct kvfs_pin *p);

void kvfs_lease_release(kvfs_lease_t *l)
{
	if (!l)
		return;
	if (l->pin) {
		pin_put(l->pin);
		return;
	}
	struct conn *c = l->c;
	slot_put(c, &c->recv_free, l->slot);
	conn_leave(c);
}

/* PUT inline, or from a staging slot / registered region. */
static int put_one(struct conn *c, const char *key, size_t klen, const void *buf, size_t len,
		   const struct wire_desc *desc, const struct kvfs_setattr *sa)
{
	struct wire_req q;
	req_init(c, &q, OP_PUT);
	q.key = (const uint8_t *)key;
	q.klen = (uint32_t)klen;
	q.len = len;
	sa_to_wire(&q.sa, sa);
	if (desc) {
		q.buf = *desc;
	} else {
		q.data = buf;
		q.dlen = (uint32_t)len;
	}
	return call_simple(c, &q, NULL);
}

int kvfs_put(kvfs_t *kv, const char *key, const void *buf, size_t len,
	     const struct kvfs_setattr *sa)
{
	struct conn *c;
	size_t klen;
	int ret = route(kv, key, &klen, &c);
	if (ret)
		return ret;
	if (len <= c->limits.inline_threshold) {
		ret = put_one(c, key, klen, buf, len, NULL, sa);
	} else if (len <= c->slot_size) {
		int slot = slot_get(c, &c->staging_free);
		if (slot < 0) {
			ret = -EIO;
		} else {
			struct wire_desc d = {REGION_STAGING, (uint64_t)slot * c->slot_size, len};
			memcpy(c->staging_region + d.off, buf, len);
			ret = put_one(c, key, klen, NULL, len, &d, sa);
			slot_put(c, &c->staging_free, slot);
		}
	} else {
		conn_leave(c);
		kvfs_upload_t *up;
		ret = kvfs_upload_open(kv, key, 0, &up);
		if (ret)
			return ret;
		ret = kvfs_upload_write(up, buf, len, 0);
		if (ret) {
			kvfs_upload_abort(up);
			return ret;
		}
		return kvfs_upload_commit(up, sa, NULL);
	}
	conn_leave(c);
	return ret;
}

/* A request about one key that moves no value bytes: route, call, leave. */
static int key_call(struct kvfs *kv, const char *key, uint8_t op, const struct kvfs_setattr *sa,
		    struct kvfs_attr *attr)
{
	struct conn *c;
	struct wire_req q;
	struct wire_rep rep;
	int ret = route_req(kv, key, op, &c, &q);
	if (ret)
		return ret;
	sa_to_wire(&q.sa, sa);
	ret = call_simple(c, &q, &rep);
	if (!ret && attr)
		*attr = rep.attr;
	conn_leave(c);
	return ret;
}

int kvfs_delete(kvfs_t *kv, const char *key)
{
	return key_call(kv, key, OP_DELETE, NULL, NULL);
}

int kvfs_stat(kvfs_t *kv, const char *key, struct kvfs_attr *attr)
{
	return key_call(kv, key, OP_STAT, NULL, attr);
}

int kvfs_setattr(kvfs_t *kv, const char *key, const struct kvfs_setattr *sa,
		 struct kvfs_attr *attr_out)
{
	return key_call(kv, key, OP_SETATTR, sa, attr_out);
}

int kvfs_rename(kvfs_t *kv, const char *src, const char *dst, unsigned flags)
{
	size_t slen, dlen;
	int ret = check_key(dst, &dlen);
	if (ret)
		return ret;
	ret = check_key(src, &slen);
	if (ret)
		return ret;
	if (kvfs_server_of(kv, src) != kvfs_server_of(kv, dst))
		return -EXDEV;
	struct conn *c;
	ret = route(kv, src, &slen, &c);
	if (ret)
		return ret;
	struct wire_req q;
	req_init(c, &q, OP_RENAME);
	q.key = (const uint8_t *)src;
	q.klen = (uint32_t)slen;
	q.key2 = (const uint8_t *)dst;
	q.k2len = (uint32_t)dlen;
	q.flags = (flags & KVFS_RENAME_NOREPLACE) ? RQ_NOREPLACE : 0;
	ret = call_simple(c, &q, NULL);
	conn_leave(c);
	return ret;
}

/* ---- listing: one pass per server, merged in byte order ---------------------- */

struct lentry {
	char *name;
	size_t nlen;
	int is_prefix;
	struct kvfs_attr attr;
};

struct lstream {
	struct conn *c;
	struct lentry *ents;
	size_t n, pos;
	int more, done;
	char *cursor;
	size_t clen;
};

static void lstream_clear(struct lstream *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->ents[i].name);
	free(s->ents);
	s->ents = NULL;
	s->n = s->pos = 0;
}

/* Fetch the next batch of one server's listing. */
static int lstream_fill(struct lstream *s, const char *prefix, size_t plen, char delim)
{
	struct conn *c = s->c;
	struct wire_req q;
	struct wire_rep rep;
	struct creq *r;
	lstream_clear(s);
	req_init(c, &q, OP_LIST);
	q.key = (const uint8_t *)prefix;
	q.klen = (uint32_t)plen;
	q.key2 = (const uint8_t *)s->cursor;
	q.k2len = (uint32_t)s->clen;
	q.flags = delim ? RQ_DELIM : 0;
	int ret = call(c, &q, &rep, &r);
	if (ret)
		return ret;
	if (rep.status) {
		ret = rep.status;
		goto out;
	}
	s->ents = calloc(rep.n ? rep.n : 1, sizeof(*s->ents));
	if (!s->ents) {
		ret = -ENOMEM;
		goto out;
	}
	size_t pos = 0;
	for (uint64_t i = 0; i < rep.n; i++) {
		struct lentry *e = &s->ents[s->n];
		const char *name;
		int k = wire_entry_decode(rep.data + pos, rep.dlen - pos, &name, &e->nlen,
					  &e->is_prefix, &e->attr);
		if (k < 0) {
			ret = -EPROTO;
			goto out;
		}
		pos += (size_t)k;
		e->name = malloc(e->nlen + 1);
		if (!e->name) {
			ret = -ENOMEM;
			goto out;
		}
		memcpy(e->name, name, e->nlen);
		e->name[e->nlen] = 0;
		s->n++;
	}
	s->more = (rep.flags & RP_MORE) && s->n > 0;
	if (s->n) {
		struct lentry *last = &s->ents[s->n - 1];
		char *cur = realloc(s->cursor, last->nlen + 1);
		if (!cur) {
			ret = -ENOMEM;
			goto out;
		}
		memcpy(cur, last->name, last->nlen + 1);
		s->cursor = cur;
		s->clen = last->nlen;
	}
out:
	req_put(c, r);
	return ret;
}

static int name_cmp(const struct lentry *a, const struct lentry *b)
{
	size_t n = a->nlen < b->nlen ? a->nlen : b->nlen;
	int r = memcmp(a->name, b->name, n);
	return r ? r : (a->nlen > b->nlen) - (a->nlen < b->nlen);
}

ssize_t kvfs_list(kvfs_t *kv, const char *prefix, char delim, kvfs_list_cb cb, void *arg)
{
	int ns = kv->cfg.n_servers;
	struct lstream *st = calloc((size_t)ns, sizeof(*st));
	size_t plen = prefix ? strnlen(prefix, KVFS_MAX_KEY + 1) : 0;
	ssize_t count = 0;
	int ret = 0, entered = 0;
	if (!st)
		return -ENOMEM;
	if (plen > KVFS_MAX_KEY) {
		free(st);
		return -ENAMETOOLONG;
	}
	for (int i = 0; i < ns; i++, entered++) {
		st[i].c = &kv->conns[i];
		ret = conn_enter(st[i].c);
		if (ret)
			goto out;
	}
	for (int i = 0; i < ns; i++) {
		ret = lstream_fill(&st[i], prefix ? prefix : "", plen, delim);
		if (ret)
			goto out;
	}
	struct lentry prev = {0};
	char *prev_buf = NULL;
	for (;;) {
		int best = -1;
		for (int i = 0; i < ns; i++) {
			struct lstream *s = &st[i];
			if (s->pos == s->n && s->more) {
				ret = lstream_fill(s, prefix ? prefix : "", plen, delim);
				if (ret)
					goto out_prev;
			}
			if (s->pos == s->n)
				continue;
			if (best < 0 ||
			    name_cmp(&s->ents[s->pos], &st[best].ents[st[best].pos]) < 0)
				best = i;
		}
		if (best < 0)
			break;
		struct lentry *e = &st[best].ents[st[best].pos++];
		/* A common prefix shows up from every server that has keys under it. */
		if (prev_buf && e->is_prefix && prev.is_prefix && name_cmp(e, &prev) == 0)
			continue;
		struct kvfs_entry out = {.name = e->name,
					 .name_len = e->nlen,
					 .is_prefix = e->is_prefix,
					 .attr = e->attr,
					 .server = best};
		count++;
		if (cb && cb(arg, &out))
			break;
		char *nb = realloc(prev_buf, e->nlen + 1);
		if (!nb) {
			ret = -ENOMEM;
			goto out_prev;
		}
		memcpy(nb, e->name, e->nlen + 1);
		prev_buf = nb;
		prev =
		    (struct lentry){.name = prev_buf, .nlen = e->nlen, .is_prefix = e->is_prefix};
	}
out_prev:
	free(prev_buf);
out:
	for (int i = 0; i < ns; i++) {
		lstream_clear(&st[i]);
		free(st[i].cursor);
		if (i < entered)
			conn_leave(st[i].c);
	}
	free(st);
	return ret ? ret : count;
}

/* ---- uploads ------------------------------------------------------------------ */

/*
 * Open server-side state of key (an upload or a pin) by request op: on
 * success *cp and *gen (the session it lives in) say where it is, and *rep
 * holds its handle and the value's attributes. Returns 0 or -errno.
 */
static int state_open(kvfs_t *kv, const char *key, uint8_t op, uint8_t flags, struct conn **cp,
		      uint64_t *gen, struct wire_rep *rep)
{
	struct conn *c;
	struct wire_req q;
	int ret = route_req(kv, key, op, &c, &q);
	if (ret)
		return ret;
	q.flags = flags;
	ret = call_simple(c, &q, rep);
	if (!ret) {
		*cp = c;
		pthread_mutex_lock(&c->lock);
		*gen = c->gen; /* stable: we are one of its users */
		pthread_mutex_unlock(&c->lock);
	}
	conn_leave(c);
	return ret;
}

int kvfs_upload_open(kvfs_t *kv, const char *key, unsigned flags, kvfs_upload_t **out)
{
	struct wire_rep rep;
	struct kvfs_upload *up = calloc(1, sizeof(*up));
	if (!up)
		return -ENOMEM;
	int ret = state_open(kv, key, OP_UP_OPEN, (flags & KVFS_UPLOAD_KEEP) ? RQ_KEEP : 0, &up->c,
			     &up->gen, &rep);
	if (ret) {
		free(up);
		return ret;
	}
	up->handle = rep.handle;
	up->size = rep.attr.size;
	snprintf(up->key, sizeof(up->key), "%s", key);
	*out = up;
	return 0;
}

/* Enter an upload's conn; its session must be the one the upload lives in. */
static int up_enter(struct kvfs_upload *up)
{
	return sess_enter(up->c, up->gen);
}

static int mr_desc(struct conn *c, kvfs_mr_t *m, const void *buf, size_t len, struct wire_desc *d);

/*
 * Write buf[0, len) at off into the upload: inline while what is left fits a
 * message, else pieces of at most slot_size that the server RMA-reads from mr
 * (zero-copy; buf lies inside it) or, with mr NULL, from a staging slot the
 * bytes are copied into. Returns 0 or -errno.
 */
static int upload_write(struct kvfs_upload *up, const void *buf, size_t len, uint64_t off,
			kvfs_mr_t *mr)
{
	int ret = up_enter(up);
	if (ret)
		return ret;
	struct conn *c = up->c;
	const uint8_t *src = buf;
	int slot = -1;
	size_t done = 0;
	while (!ret && (done < len || len == 0)) {
		struct wire_req q;
		struct wire_rep rep;
		size_t n = len - done;
		req_init(c, &q, OP_UP_WRITE);
		q.handle = up->handle;
		q.off = off + done;
		if (n <= c->limits.inline_threshold) {
			q.data = src + done;
			q.dlen = (uint32_t)n;
		} else if (mr) {
			if (n > c->slot_size)
				n = c->slot_size;
			ret = mr_desc(c, mr, src + done, n, &q.buf);
			if (ret)
				break;
		} else {
			if (slot < 0)
				slot = slot_get(c, &c->staging_free);
			if (slot < 0) {
				ret = -EIO;
				break;
			}
			if (n > c->slot_size)
				n = c->slot_size;
			q.buf =
			    (struct wire_desc){REGION_STAGING, (uint64_t)slot * c->slot_size, n};
			memcpy(c->staging_region + q.buf.off, src + done, n);
		}
		q.len = n;
		ret = call_simple(c, &q, &rep);
		if (!ret)
			up->size = rep.attr.size;
		done += n;
		if (len == 0)
			break;
	}
	if (slot >= 0)
		slot_put(c, &c->staging_free, slot);
	conn_leave(c);
	return ret;
}

int kvfs_upload_write(kvfs_upload_t *up, const void *buf, size_t len, uint64_t off)
{
	return upload_write(up, buf, len, off, NULL);
}

int kvfs_upload_write_mr(kvfs_upload_t *up, const void *buf, size_t len, uint64_t off,
			 kvfs_mr_t *mr)
{
	const uint8_t *p = buf;
	if (!mr || !p || mr->kv != up->c->kv || p < mr->buf || len > mr->len ||
	    (size_t)(p - mr->buf) > mr->len - len)
		return -EINVAL;
	return upload_write(up, buf, len, off, mr);
}

ssize_t kvfs_upload_read(kvfs_upload_t *up, void *buf, size_t len, uint64_t off)
{
	int ret = up_enter(up);
	if (ret)
		return ret;
	struct wire_req q;
	req_init(up->c, &q, OP_UP_READ);
	q.handle = up->handle;
	ssize_t n = read_range(up->c, &q, buf, len, off, NULL);
	conn_leave(up->c);
	return n;
}

static int up_simple(struct kvfs_upload *up, uint8_t op, uint64_t len,
		     const struct kvfs_setattr *sa, struct wire_rep *rep)
{
	int ret = up_enter(up);
	if (ret)
		return ret;
	struct wire_req q;
	req_init(up->c, &q, op);
	q.handle = up->handle;
	q.len = len;
	sa_to_wire(&q.sa, sa);
	ret = call_simple(up->c, &q, rep);
	conn_leave(up->c);
	return ret;
}

int kvfs_upload_truncate(kvfs_upload_t *up, uint64_t size)
{
	struct wire_rep rep;
	int ret = up_simple(up, OP_UP_TRUNC, size, NULL, &rep);
	if (!ret)
		up->size = rep.attr.size;
	return ret;
}

uint64_t kvfs_upload_size(const kvfs_upload_t *up)
{
	return up->size;
}

int kvfs_upload_commit(kvfs_upload_t *up, const struct kvfs_setattr *sa, struct kvfs_attr *attr_out)
{
	struct wire_rep rep;
	int ret = up_simple(up, OP_UP_COMMIT, 0, sa, &rep);
	if (!ret && attr_out)
		*attr_out = rep.attr;
	free(up);
	return ret;
}

void kvfs_upload_abort(kvfs_upload_t *up)
{
	if (!up)
		return;
	up_simple(up, OP_UP_ABORT, 0, NULL, NULL);
	free(up);
}

/* ---- pinned reads ------------------------------------------------------------- */

int kvfs_pin_open(kvfs_t *kv, const char *key, kvfs_pin_t **out, struct kvfs_attr *attr)
{
	struct wire_rep rep;
	struct kvfs_pin *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	int ret = state_open(kv, key, OP_PIN, 0, &p->c, &p->gen, &rep);
	if (ret) {
		free(p);
		return ret;
	}
	p->handle = rep.handle;
	p->size = rep.attr.size;
	atomic_init(&p->refs, 1);
	pthread_mutex_init(&p->map_lock, NULL);
	p->lease.pin = p;
	if (sess_enter(p->c, p->gen) == 0) {
		p->pool = p->c->pool; /* stable while we are one of its users */
		if (p->pool)
			atomic_fetch_add(&p->pool->refs, 1);
		conn_leave(p->c);
	}
	if (attr)
		*attr = rep.attr;
	*out = p;
	return 0;
}

static void pin_req(struct kvfs_pin *p, struct wire_req *q, uint8_t op)
{
	req_init(p->c, q, op);
	q->handle = p->handle;
}

ssize_t kvfs_pin_get_lease(kvfs_pin_t *p, uint64_t off, size_t len, const void **data,
			   kvfs_lease_t **lease)
{
	struct wire_req q;
	int ret = sess_enter(p->c, p->gen);
	if (ret)
		return ret;
	pin_req(p, &q, OP_PIN_GET);
	q.off = off;
	q.len = len;
	ssize_t n = lease_piece(p->c, &q, data, lease, NULL);
	if (n < 0)
		conn_leave(p->c);
	return n; /* a lease keeps the conn entered */
}

ssize_t kvfs_pin_get(kvfs_pin_t *p, void *buf, size_t len, uint64_t off)
{
	struct wire_req q;
	int ret = sess_enter(p->c, p->gen);
	if (ret)
		return ret;
	pin_req(p, &q, OP_PIN_GET);
	/* the pinned version never changes, so no -EAGAIN between pieces */
	ssize_t n = read_range(p->c, &q, buf, len, off, NULL);
	conn_leave(p->c);
	return n;
}

/*
 * Ask the server where the whole pinned value lies in its pool (up to
 * WIRE_MAP_SEGS ranges per message) into p->segs. Caller holds p->map_lock
 * and has entered p->c. Returns 0 or -errno.
 */
static int pin_fetch_map(struct kvfs_pin *p)
{
	struct wire_seg seg[WIRE_MAP_SEGS];
	uint64_t done = 0;
	int cap = 0;
	p->nsegs = 0;
	while (done < p->size) {
		struct wire_req q;
		struct wire_rep rep;
		struct creq *r;
		pin_req(p, &q, OP_PIN_GET);
		q.flags = RQ_MAP;
		q.off = done;
		q.len = p->size - done;
		int k = call(p->c, &q, &rep, &r);
		if (k)
			return k;
		k = rep.status;
		if (!k && (rep.n == 0 || rep.n > q.len))
			k = -EPROTO;
		if (!k)
			k = wire_segs_decode(rep.data, rep.dlen, rep.n, p->pool->len, seg,
					     WIRE_MAP_SEGS);
		req_put(p->c, r);
		if (k >= 0 && p->nsegs + k > cap) {
			cap = 2 * (p->nsegs + k);
			struct pin_seg *n = realloc(p->segs, (size_t)cap * sizeof(*n));
			if (n)
				p->segs = n;
			else
				k = -ENOMEM;
		}
		if (k < 0)
			return k;
		for (int i = 0; i < k; i++) {
			p->segs[p->nsegs++] =
			    (struct pin_seg){done, seg[i].len, p->pool->base + seg[i].off};
			done += seg[i].len;
		}
	}
	return 0;
}

ssize_t kvfs_pin_map(kvfs_pin_t *p, uint64_t off, size_t len, struct iovec *iov, int max, int *niov,
		     kvfs_lease_t **lease)
{
	if (!p->pool)
		return -EOPNOTSUPP;
	/*
	 * The bytes would outlive the server (the mapping keeps them), but a
	 * pin of a lost session is gone, as for every other read.
	 */
	int ret = sess_enter(p->c, p->gen);
	if (ret)
		return ret;
	if (!liveness_ok(p->c)) {
		pthread_mutex_lock(&p->c->lock);
		do_break(p->c, "server closed the session");
		pthread_mutex_unlock(&p->c->lock);
		ret = -EIO;
	}
	pthread_mutex_lock(&p->map_lock);
	if (!ret && !p->map_ready) {
		ret = pin_fetch_map(p);
		p->map_ready = !ret;
	}
	pthread_mutex_unlock(&p->map_lock);
	conn_leave(p->c);
	if (ret)
		return ret;
	/* segs, complete and immutable now: the first one holding off, then on */
	int lo = 0, hi = p->nsegs, n = 0;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (p->segs[mid].voff + p->segs[mid].len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	size_t total = 0;
	for (int i = lo; i < p->nsegs && total < len && n < max; i++, n++) {
		uint64_t skip = off + total - p->segs[i].voff;
		uint64_t take = p->segs[i].len - skip;
		if (take > len - total)
			take = len - total;
		iov[n] = (struct iovec){(void *)(p->segs[i].addr + skip), (size_t)take};
		total += (size_t)take;
	}
	atomic_fetch_add(&p->refs, 1);
	*lease = &p->lease;
	*niov = n;
	return (ssize_t)total;
}

static void pin_put(struct kvfs_pin *p)
{
	if (atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	if (sess_enter(p->c, p->gen) == 0) {
		struct wire_req q;
		pin_req(p, &q, OP_UNPIN);
		call_simple(p->c, &q, NULL);
		conn_leave(p->c);
	}
	pool_put(p->pool);
	pthread_mutex_destroy(&p->map_lock);
	free(p->segs);
	free(p);
}

void kvfs_pin_close(kvfs_pin_t *p)
{
	if (p)
		pin_put(p);
}

/* ---- caller-registered memory ---------------------------------------------------- */

int kvfs_mr_reg(kvfs_t *kv, void *buf, size_t len, kvfs_mr_t **out)
{
	if (!buf || !len)
		return -EINVAL;
	struct kvfs_mr *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->kv = kv;
	m->buf = buf;
	m->len = len;
	pthread_mutex_lock(&kv->lock);
	m->next = kv->mrs;
	kv->mrs = m;
	pthread_mutex_unlock(&kv->lock);
	*out = m;
	return 0;
}

void kvfs_mr_close(kvfs_mr_t *m)
{
	if (!m)
		return;
	struct kvfs *kv = m->kv;
	pthread_mutex_lock(&kv->lock);
	for (struct kvfs_mr **p = &kv->mrs; *p; p = &(*p)->next) {
		if (*p == m) {
			*p = m->next;
			break;
		}
	}
	for (int i = 0; i < kv->cfg.n_servers; i++) {
		struct conn *c = &kv->conns[i];
		pthread_mutex_lock(&c->lock);
		if (m->per[i].mr && c->up && !c->broken && c->gen == m->per[i].gen) {
			uint32_t region = m->per[i].region;
			c->users++;
			pthread_mutex_unlock(&c->lock);
			struct wire_req q;
			req_init(c, &q, OP_UNREG);
			q.handle = region;
			call_simple(c, &q, NULL);
			pthread_mutex_lock(&c->lock);
			c->users--;
			if (c->users == 0 && c->broken)
				wake_all(c);
		}
		if (m->per[i].mr)
			fab_mr_close(m->per[i].mr);
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_unlock(&kv->lock);
	free(m);
}

/*
 * Make sure m is registered on c's current session; returns the server's
 * region id. Caller has entered c.
 */
static int mr_on_conn(struct conn *c, struct kvfs_mr *m, uint32_t *region)
{
	struct kvfs *kv = c->kv;
	pthread_mutex_lock(&kv->lock);
	pthread_mutex_lock(&c->lock);
	uint64_t gen = c->gen;
	if (m->per[c->idx].mr && m->per[c->idx].gen == gen) {
		*region = m->per[c->idx].region;
		pthread_mutex_unlock(&c->lock);
		pthread_mutex_unlock(&kv->lock);
		return 0;
	}
	pthread_mutex_unlock(&c->lock);
	struct fab_mr *mr;
	int ret =
	    fab_mr_reg(c->ep, m->buf, m->len, FAB_ACC_REMOTE_WRITE | FAB_ACC_REMOTE_READ, &mr);
	if (ret)
		goto out;
	struct wire_req q;
	struct wire_rep rep;
	req_init(c, &q, OP_REG);
	q.buf = (struct wire_desc){0, fab_mr_remote_base(mr), m->len};
	q.handle = fab_mr_key(mr);
	q.off = 3; /* remote write and read */
	ret = call_simple(c, &q, &rep);
	if (ret) {
		fab_mr_close(mr);
		goto out;
	}
	m->per[c->idx].mr = mr;
	m->per[c->idx].gen = gen;
	m->per[c->idx].region = (uint32_t)rep.handle;
	*region = (uint32_t)rep.handle;
out:
	pthread_mutex_unlock(&kv->lock);
	return ret;
}

static int mr_desc(struct conn *c, kvfs_mr_t *m, const void *buf, size_t len, struct wire_desc *d)
{
	const uint8_t *p = buf;
	if (p < m->buf || len > m->len || (size_t)(p - m->buf) > m->len - len)
		return -EFAULT;
	uint32_t region;
	int ret = mr_on_conn(c, m, &region);
	if (ret)
		return ret;
	*d = (struct wire_desc){region, (uint64_t)(p - m->buf), len};
	return 0;
}

ssize_t kvfs_get_mr(kvfs_t *kv, const char *key, void *buf, size_t len, uint64_t off, kvfs_mr_t *mr,
		    struct kvfs_attr *attr)
{
	struct conn *c;
	size_t klen;
	struct wire_desc d;
	int ret = route(kv, key, &klen, &c);
	if (ret)
		return ret;
	ssize_t n;
	if (len <= c->get_inline) {
		n = get_piece(c, key, klen, off, len, NULL, buf, attr);
	} else {
		n = mr_desc(c, mr, buf, len, &d);
		if (!n)
			n = get_piece(c, key, klen, off, len, &d, NULL, attr);
	}
	conn_leave(c);
	return n;
}

int kvfs_put_mr(kvfs_t *kv, const char *key, const void *buf, size_t len, kvfs_mr_t *mr,
		const struct kvfs_setattr *sa)
{
	struct conn *c;
	size_t klen;
	struct wire_desc d;
	int ret = route(kv, key, &klen, &c);
	if (ret)
		return ret;
	if (len <= c->limits.inline_threshold) {
		ret = put_one(c, key, klen, buf, len, NULL, sa);
	} else {
		ret = mr_desc(c, mr, buf, len, &d);
		if (!ret)
			ret = put_one(c, key, klen, NULL, len, &d, sa);
	}
	conn_leave(c);
	return ret;
}

/* ---- cluster information ------------------------------------------------------------ */

int kvfs_server_stats(kvfs_t *kv, int idx, struct kvfs_stats *out)
{
	if (idx < 0 || idx >= kv->cfg.n_servers)
		return -EINVAL;
	struct conn *c = &kv->conns[idx];
	int ret = conn_enter(c);
	if (ret)
		return ret;
	struct wire_req q;
	struct wire_rep rep;
	struct creq *r;
	req_init(c, &q, OP_STATS);
	ret = call(c, &q, &rep, &r);
	if (!ret) {
		ret = rep.status;
		if (!ret && wire_stats_decode(rep.data, rep.dlen, out))
			ret = -EPROTO;
		req_put(c, r);
	}
	conn_leave(c);
	return ret;
}

int kvfs_ping(kvfs_t *kv, int idx, uint64_t *rtt_ns)
{
	if (idx < 0 || idx >= kv->cfg.n_servers)
		return -EINVAL;
	struct conn *c = &kv->conns[idx];
	int ret = conn_enter(c);
	if (ret)
		return ret;
	struct wire_req q;
	req_init(c, &q, OP_PING);
	int64_t t0 = now_ns();
	ret = call_simple(c, &q, NULL);
	if (rtt_ns)
		*rtt_ns = (uint64_t)(now_ns() - t0);
	conn_leave(c);
	return ret;
}
