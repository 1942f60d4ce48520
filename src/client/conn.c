/*
 * libkvfs connections: the handshake that sets up a session with one server,
 * entering and leaving a conn (reconnecting when its session broke), and
 * teardown.
 *
 * The handshake is a chain of small steps in its order, each undone on
 * failure in reverse order, in two parts: connect_direct (dial, greet,
 * authenticate, take the limits) gives an authenticated socket that can
 * carry direct requests (direct.c); upgrade (pick the provider, open the
 * endpoint, register the regions, SETUP/READY, start the session, attach
 * the pool map) makes it a fabric session. connect_session does both at
 * once; a lazy kvfs_t (KVFS_OPEN_LAZY_FABRIC) stops after the first for
 * small requests (conn_enter_small) and upgrades on the first call that
 * needs the fabric. They run with no lock held: the entering thread marks
 * the conn connecting, and the conn's other callers wait for the end on its
 * condition variable, while calls to other servers go on.
 * The bootstrap socket stays open for the session: the server never speaks
 * on it again, so anything readable on it means the session is over.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "client/client_int.h"

#include "common/log.h"
#include "common/sock.h"

void conn_init(struct conn *c, struct kvfs *kv, int idx, size_t slot_size, int n_slots)
{
	c->kv = kv;
	c->idx = idx;
	c->fd = -1;
	c->region_size = (size_t)n_slots * slot_size;
	c->slot_size = slot_size;
	c->n_slots = n_slots;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
}

/* Close the registrations of the receive, staging and message regions. */
static void regions_close(struct conn *c)
{
	fab_mr_close(c->recv_mr);
	fab_mr_close(c->staging_mr);
	fab_mr_close(c->msg_mr);
	c->recv_mr = c->staging_mr = c->msg_mr = NULL;
}

static void ep_close(struct conn *c)
{
	fab_close(c->ep);
	c->ep = NULL;
}

static void fd_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/*
 * End c's session: close what it registered, its endpoint and socket.
 * Caller holds c->lock, and c has no users and is not connecting.
 */
static void do_teardown(struct conn *c)
{
	do_mr_conn_close(c);
	regions_close(c);
	pool_put(c->pool);
	c->pool = NULL;
	ep_close(c);
	fd_close(c);
	do_track_lost(c);
	c->up = 0;
	c->broken = 0;
	c->direct = 0;
	c->sock_busy = 0;
	for (int i = 0; i < NREQ; i++)
		c->reqs[i].active = 0;
}

void conn_destroy(struct conn *c)
{
	pthread_mutex_lock(&c->lock);
	do_teardown(c);
	pthread_mutex_unlock(&c->lock);
	if (c->recv_region)
		munmap(c->recv_region, c->region_size);
	if (c->staging_region)
		munmap(c->staging_region, c->region_size);
	free(c->msgs);
	free(c->dbuf);
	explicit_bzero(c->hs_key, sizeof(c->hs_key));
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
}

/* ---- the handshake, step by step ------------------------------------------ */

/* What the steps of connect_session share. */
struct handshake {
	const struct kvfs_config *cfg;
	const struct kvfs_server_entry *se;
	int tmo;       /* client.timeout_ms: for dial to WELCOME in all, and for SETUP to READY */
	int64_t until; /* now_ns() deadline of the phase under way (see left) */
	char err[256]; /* what failed, for connect_session's one log line */
	struct wire_hello hello;
	struct wire_challenge ch;
	struct wire_welcome w;
	struct wire_ready rd;
	const char *prov; /* the provider picked, one of w.provs */
	int shm_refused;  /* SETUP on shm got EPERM: the server cannot reach us by shm */
	int upgrading;	  /* SETUP goes on a direct connection, which may have gone quiet */
	int sock_failed;  /* SETUP/READY failed on the socket itself (no error frame) */
};

/* Milliseconds left to h's deadline, at least 1 (a step past it then times out at once). */
static int left(const struct handshake *h)
{
	int64_t ms = (h->until - now_ns()) / 1000000;
	return ms < 1 ? 1 : ms > h->tmo ? h->tmo : (int)ms;
}

/* Open the bootstrap socket (c->fd). Logs its failure and returns -EIO. */
static int dial(struct conn *c, struct handshake *h)
{
	const struct kvfs_server_entry *se = h->se;
	c->hs_authed = 0;
	explicit_bzero(c->hs_key, sizeof(c->hs_key));
	h->until = now_ns() + (int64_t)h->tmo * 1000000; /* dial to WELCOME, in all */
	c->fd = sock_connect(se->host, se->port, left(h));
	if (c->fd < 0) {
		int ret = c->fd;
		c->fd = -1;
		log_warn("server %s (%s:%s): cannot connect: %s", se->name, se->host, se->port,
			 strerror(-ret));
		return ret == -ETIMEDOUT ? ret : -EIO; /* a timeout marks it down */
	}
	return 0;
}

/* Say hello with our nonce; read the server's challenge (h->ch). */
static int greet(struct conn *c, struct handshake *h)
{
	h->hello.proto = WIRE_PROTO;
	wire_random(h->hello.nonce, sizeof(h->hello.nonce));
	int ret = sock_send_frame(c->fd, WF_HELLO, &h->hello, left(h));
	if (!ret)
		ret = sock_recv_frame(c->fd, WF_CHALLENGE, &h->ch, WIRE_FRAME_MAX, left(h), h->err,
				      sizeof(h->err));
	return ret;
}

/* Does body (a frame of type, mac its mac field) carry the MAC of this handshake? */
static int frame_mac_ok(const struct conn *c, uint16_t type, const void *body,
			const uint8_t mac[WIRE_MAC])
{
	uint8_t want[WIRE_MAC];
	return wire_frame_mac(want, c->hs_key, type, body) == 0 && wire_mac_equal(want, mac);
}

/*
 * Answer the challenge (with the shared secret's MAC when the server asks
 * for it), read the welcome and check the server's proof of the secret.
 */
static int authenticate(struct conn *c, struct handshake *h)
{
	const struct kvfs_config *cfg = h->cfg;
	uint8_t mac[WIRE_MAC] = {0};
	if (h->ch.auth_required && cfg->secret_len == 0) {
		snprintf(h->err, sizeof(h->err),
			 "server requires a secret; set cluster.secret_file");
		return -EACCES;
	}
	if (!h->ch.auth_required && cfg->secret_len > 0) {
		/*
		 * Whoever answers there does not know the secret, or says it needs
		 * none: either way not a server we may trust with our writes (one
		 * that binds the port while the real server is down).
		 */
		snprintf(h->err, sizeof(h->err),
			 "server does not ask for authentication, but cluster.secret_file is "
			 "set: refusing a server that cannot prove the secret");
		return -EACCES;
	}
	if (h->ch.auth_required) {
		wire_mac(mac, cfg->secret, cfg->secret_len, "kvfs-client", h->ch.nonce,
			 h->hello.nonce);
		wire_session_key(c->hs_key, cfg->secret, cfg->secret_len, h->hello.nonce,
				 h->ch.nonce);
	}
	int ret = sock_send_frame(c->fd, WF_AUTH, mac, left(h));
	if (!ret)
		ret = sock_recv_frame(c->fd, WF_WELCOME, &h->w, WIRE_FRAME_MAX, left(h), h->err,
				      sizeof(h->err));
	if (ret)
		return ret;
	c->hs_authed = h->ch.auth_required;
	if (h->ch.auth_required && !frame_mac_ok(c, WF_WELCOME, &h->w, h->w.mac)) {
		snprintf(h->err, sizeof(h->err), "server failed to prove the shared secret");
		return -EACCES;
	}
	return 0;
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
	int local = sock_host_is_local(cfg->servers[c->idx].host) && !c->no_shm;
	for (int i = 0; local && i < w->n_provs; i++)
		if (strcmp(w->provs[i], "shm") == 0)
			return w->provs[i];
	for (int i = 0; i < w->n_provs; i++)
		if (strcmp(w->provs[i], "shm") != 0)
			return w->provs[i];
	snprintf(err, errlen, "no provider in common with the server");
	return NULL;
}

/*
 * Take the welcome's limits (c->limits) when sane, keep the welcome for an
 * upgrade, and size the buffer of direct frames (c->dbuf) by them.
 */
static int take_limits(struct conn *c, struct handshake *h)
{
	const struct wire_limits *l = &h->w.limits;
	if (l->msg_size < WIRE_REQ_FIXED + 2 * KVFS_MAX_KEY || l->msg_size > (1u << 20) ||
	    l->inline_threshold > 65536 || l->msg_size < WIRE_REP_FIXED + l->inline_threshold) {
		snprintf(h->err, sizeof(h->err), "server limits out of range");
		return -EPROTO;
	}
	c->limits = *l;
	c->welcome = h->w;
	size_t need = WIRE_FRAME_HDR + l->msg_size;
	if (!c->dbuf || c->dbuf_size != need) {
		free(c->dbuf);
		c->dbuf_size = need;
		c->dbuf = malloc(need);
		if (!c->dbuf) {
			c->dbuf_size = 0;
			return -ENOMEM;
		}
	}
	return 0;
}

/* Pick the provider (h->prov) among those of the welcome. */
static int choose_provider(struct conn *c, struct handshake *h)
{
	h->prov = pick_provider(c, &c->welcome, h->err, sizeof(h->err));
	if (!h->prov)
		return -EPROTONOSUPPORT;
	return 0;
}

/*
 * Open the endpoint (c->ep) on h->prov, out the interface the bootstrap
 * used, and size c->get_inline by it.
 */
static int open_endpoint(struct conn *c, struct handshake *h)
{
	const struct kvfs_config *cfg = h->cfg;
	const char *prov = h->prov;
	char local_ip[64];
	struct fab_open_args fa = {
	    .provider = prov, .domain = cfg->n_domains ? cfg->domains[0] : NULL, .thread_safe = 1};
	if (strcmp(prov, "shm") == 0 || strcmp(prov, "tcp") == 0)
		fa.domain = NULL;
	if (strcmp(prov, "shm") != 0 && sock_local_ip(c->fd, local_ip, sizeof(local_ip)) == 0)
		fa.node = local_ip; /* the fabric goes out the interface the bootstrap used */
	int ret = fab_open(&c->ep, &fa);
	if (ret) {
		snprintf(h->err, sizeof(h->err), "cannot open fabric provider %s", prov);
		return ret;
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
	return 0;
}

static void *map_region(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/*
 * Register the receive, staging and message regions on c->ep, allocating
 * them first when needed (buffers survive reconnects; registrations do not).
 */
static int register_regions(struct conn *c, struct handshake *h)
{
	int ret;
	if (!c->recv_region) {
		c->recv_region = map_region(c->region_size);
		c->staging_region = map_region(c->region_size);
		if (!c->recv_region || !c->staging_region)
			return -ENOMEM;
	}
	if (!c->msgs || c->msg_size != c->limits.msg_size) {
		free(c->msgs);
		c->msg_size = c->limits.msg_size;
		c->msgs = aligned_alloc(4096, (size_t)(NREQ + NRECV) * c->msg_size);
		if (!c->msgs)
			return -ENOMEM;
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
		snprintf(h->err, sizeof(h->err), "cannot register buffers");
		regions_close(c);
	}
	return ret;
}

/*
 * SETUP: tell the server our fabric address and regions; READY (h->rd): its
 * address (c->srv_addr), our session and token.
 */
static int exchange_setup(struct conn *c, struct handshake *h)
{
	struct wire_setup setup = {0};
	snprintf(setup.provider, sizeof(setup.provider), "%s", h->prov);
	size_t alen = sizeof(setup.addr);
	int ret = fab_getname(c->ep, setup.addr, &alen);
	if (ret)
		return ret;
	setup.addr_len = (uint16_t)alen;
	setup.recv = (struct wire_region){fab_mr_remote_base(c->recv_mr), c->region_size,
					  fab_mr_key(c->recv_mr)};
	setup.staging = (struct wire_region){fab_mr_remote_base(c->staging_mr), c->region_size,
					     fab_mr_key(c->staging_mr)};
	if (c->hs_authed)
		wire_frame_mac(setup.mac, c->hs_key, WF_SETUP, &setup);
	h->until = now_ns() + (int64_t)h->tmo * 1000000; /* SETUP to READY, in all */
	ret = sock_send_frame(c->fd, WF_SETUP, &setup, left(h));
	if (!ret)
		ret = sock_recv_frame(c->fd, WF_READY, &h->rd, WIRE_FRAME_MAX, left(h), h->err,
				      sizeof(h->err));
	if (ret) {
		h->shm_refused = ret == -EPERM && strcmp(h->prov, "shm") == 0;
		h->sock_failed = !h->err[0]; /* an ERROR frame would have said why */
		return ret;
	}
	if (c->hs_authed && !frame_mac_ok(c, WF_READY, &h->rd, h->rd.mac)) {
		/* not the server's READY for this SETUP: trust nothing of it (its pool) */
		snprintf(h->err, sizeof(h->err), "the server's READY failed its MAC");
		return -EACCES;
	}
	ret = fab_av_insert(c->ep, h->rd.addr, h->rd.addr_len, &c->srv_addr);
	if (ret) {
		snprintf(h->err, sizeof(h->err), "cannot add the server's fabric address");
		return ret;
	}
	c->session = h->rd.session;
	c->token = h->rd.token;
	return 0;
}

/* Reset the request and buffer slots and post every receive buffer. */
static int start_session(struct conn *c)
{
	c->req_free = NREQ == 64 ? ~0ull : ((1ull << NREQ) - 1);
	c->recv_free = c->staging_free = c->n_slots == 64 ? ~0ull : ((1ull << c->n_slots) - 1);
	for (int i = 0; i < NREQ; i++)
		c->reqs[i] =
		    (struct creq){.c = c, .rx = -1, .tx = c->msgs + (size_t)i * c->msg_size};
	for (int i = 0; i < NRECV; i++) {
		c->rxs[i] = (struct rxbuf){.c = c, .idx = i};
		int ret = fab_post_recv(c->ep, c->msgs + (size_t)(NREQ + i) * c->msg_size,
					c->msg_size, fab_mr_desc(c->msg_mr), &c->rxs[i].ctx);
		if (ret)
			return ret;
	}
	return 0;
}

/* One log line for a failed handshake step; the error as the caller returns it. */
static int handshake_failed(struct handshake *h, int ret)
{
	const struct kvfs_server_entry *se = h->se;
	log_warn("server %s (%s:%s): %s%s%s", se->name, se->host, se->port, h->err[0] ? h->err : "",
		 h->err[0] ? ": " : "", strerror(-ret));
	if (ret == -ETIMEDOUT || ret == -EACCES || ret == -EPROTONOSUPPORT || ret == -ENOMEM)
		return ret;
	return -EIO;
}

/*
 * Dial, greet, authenticate and take the limits: c->fd is then a socket
 * that can carry direct requests, or SETUP. Caller has set c->connecting
 * (nobody else touches the session's fields) and holds no lock: every step
 * may wait for the server up to the timeout.
 */
static int connect_direct(struct conn *c, struct handshake *h)
{
	int ret = dial(c, h);
	if (ret)
		return ret; /* logged */
	ret = greet(c, h);
	if (!ret)
		ret = authenticate(c, h);
	if (!ret)
		ret = take_limits(c, h);
	if (ret) {
		fd_close(c);
		return handshake_failed(h, ret);
	}
	return 0;
}

/*
 * Make the authenticated socket c->fd a fabric session. Caller as for
 * connect_direct; on failure what it set up is undone but for the socket,
 * whose state is then unknown (the caller closes it).
 */
static int upgrade(struct conn *c, struct handshake *h)
{
	int ret = choose_provider(c, h);
	if (ret)
		goto fail;
	ret = open_endpoint(c, h);
	if (ret)
		goto fail;
	ret = register_regions(c, h);
	if (ret)
		goto close_ep;
	ret = exchange_setup(c, h);
	if (ret)
		goto close_regions;
	ret = start_session(c);
	if (ret)
		goto close_regions;
	c->pool = pool_attach(h->cfg, &h->rd.pool, h->se->name);
	log_info("server %s: session on %s%s", h->se->name, fab_provider(c->ep),
		 c->pool ? ", reads from its pool mapped here" : "");
	return 0;
close_regions:
	regions_close(c);
close_ep:
	ep_close(c);
fail:
	if (h->shm_refused && strcmp(h->cfg->provider, "auto") == 0)
		return -EPERM; /* connect_conn tries again without shm */
	if (h->sock_failed && h->upgrading)
		return ret; /* connect_conn tries again on a new connection */
	return handshake_failed(h, ret);
}

/*
 * Connect: in direct mode (direct set), or with a fabric session; or
 * upgrade (upgrading set: c->fd is a direct connection). The caller has set
 * c->connecting and makes the conn up.
 */
static int connect_conn(struct conn *c, int direct, int upgrading)
{
	const struct kvfs_config *cfg = &c->kv->cfg;
	struct handshake h = {.cfg = cfg, .se = &cfg->servers[c->idx], .tmo = (int)cfg->timeout_ms};
	int ret = 0;
	if (!upgrading)
		ret = connect_direct(c, &h);
	if (!ret && direct)
		log_info("server %s: connected; small requests over TCP until a call needs the "
			 "fabric",
			 h.se->name);
	if (ret || direct)
		return ret;
	h.upgrading = upgrading;
	ret = upgrade(c, &h);
	if (ret && h.sock_failed && h.upgrading) {
		/*
		 * The direct connection broke under SETUP (the server closed it as
		 * idle, or restarted): nothing was lost, so connect anew, once.
		 */
		log_info("server %s: the connection closed under SETUP: connecting again",
			 h.se->name);
		fd_close(c);
		h = (struct handshake){.cfg = cfg, .se = h.se, .tmo = h.tmo};
		ret = connect_direct(c, &h);
		if (!ret)
			ret = upgrade(c, &h);
	}
	if (ret == -EPERM && h.shm_refused) {
		/*
		 * A server of another user cannot reach a client's shm region: with
		 * provider auto, a same-host client takes the next provider
		 * instead, from now on (the server closed this connection).
		 */
		log_info("server %s: refused shm (a server of another user): using the network "
			 "provider",
			 h.se->name);
		c->no_shm = 1;
		fd_close(c);
		h = (struct handshake){.cfg = cfg, .se = h.se, .tmo = h.tmo};
		ret = connect_direct(c, &h);
		if (!ret)
			ret = upgrade(c, &h);
	}
	if (ret)
		fd_close(c);
	return ret;
}

/* Is c's direct connection too quiet (the server may be closing it) or gone? */
static int do_direct_stale(struct conn *c, int64_t now)
{
	return now - c->direct_last > (int64_t)WIRE_DIRECT_IDLE_MS * 1000000 / 2 || !liveness_ok(c);
}

/*
 * A lazy conn upgrades to the fabric, for good, after this many direct
 * requests: each costs ~20-40 us more than over the fabric (measured on
 * loopback, shm: ~40-55 against ~17 us), the set-up of the fabric ~340 ms
 * (loading libfabric included), so a client this busy is not a short one,
 * and a long batch pays only some 40-80 ms for having started direct
 * (README, kvfsctl batch).
 */
#define DIRECT_UPGRADE_REQS 1000

/* Has c been in direct mode for long, or busily (not a short-lived client: take the fabric)? */
static int do_direct_old(struct conn *c, int64_t now)
{
	return now - c->direct_start > (int64_t)WIRE_DIRECT_LIFE_MS * 1000000 / 2 ||
	       c->direct_count >= DIRECT_UPGRADE_REQS;
}

/*
 * The end of a connect (by enter or the probe) with result ret: up, or
 * down when it timed out. Caller holds c->lock and had set c->connecting.
 */
static void do_connected(struct conn *c, int ret, int small, int upgrading, int bg)
{
	c->connecting = 0;
	c->attempts++;
	c->attempt_err = ret;
	c->attempt_bg = bg;
	if (!ret) {
		c->gen++;
		c->up = 1;
		c->direct = small;
		if (small) {
			c->direct_start = c->direct_last = now_ns();
			c->direct_count = 0;
		} else {
			do_track_up(c);
		}
	} else if (upgrading) {
		do_teardown(c); /* the socket is in no known state */
	}
	if (ret == -ETIMEDOUT) {
		do_mark_down(c);
	} else if (c->down) {
		c->down = 0; /* it answers (or refuses at once): callers connect themselves */
		log_info("server %s: answers again", c->kv->cfg.servers[c->idx].name);
	}
	wake_all(c);
}

void do_mark_down(struct conn *c)
{
	int64_t now = now_ns();
	if (!c->down && probe_kick(c->kv) == 0) {
		log_warn("server %s: no answer within client.timeout_ms (%u ms): down; its "
			 "calls fail at once until it answers a probe (every %d ms)",
			 c->kv->cfg.servers[c->idx].name, (unsigned)c->kv->cfg.timeout_ms,
			 PROBE_MS);
		c->down = 1;
	}
	c->probe_at = now + (int64_t)PROBE_MS * 1000000;
}

int64_t conn_probe(struct conn *c)
{
	int lazy = (c->kv->flags & KVFS_OPEN_LAZY_FABRIC) != 0;
	pthread_mutex_lock(&c->lock);
	int64_t now = now_ns(), next = 0;
	if (c->down && (now < c->probe_at || c->connecting || c->users))
		next =
		    now < c->probe_at ? c->probe_at : now + 100 * 1000000LL; /* users leave fast */
	if (!c->down || next) {
		pthread_mutex_unlock(&c->lock);
		return next;
	}
	if (c->broken || c->up)
		do_teardown(c);
	c->connecting = 1;
	pthread_mutex_unlock(&c->lock);
	int ret = connect_conn(c, lazy, 0); /* a lazy kvfs_t's probe: a direct connection */
	pthread_mutex_lock(&c->lock);
	do_connected(c, ret, lazy, 0, 1);
	next = c->down ? c->probe_at : 0;
	int track = !ret && !lazy && c->kv->track_fn;
	if (track)
		c->users++;
	pthread_mutex_unlock(&c->lock);
	if (track && track_session(c) == 0) /* a fabric session: tracked like any other */
		conn_leave(c);
	return next;
}

/*
 * Enter c; small: a direct conn will do (a lazy kvfs_t's small request).
 * See conn_enter and conn_enter_small.
 */
static int enter(struct conn *c, int small, int *direct)
{
	int waited = 0, wanting = 0;
	uint64_t attempt = 0;
	small = small && (c->kv->flags & KVFS_OPEN_LAZY_FABRIC);
	pthread_mutex_lock(&c->lock);
	/*
	 * Wait for the users of a broken session to leave, for another thread's
	 * connect or upgrade to end (it may have brought the conn up: when it
	 * failed instead, fail with its error rather than try again at once, so
	 * k threads waiting on a silent server wait one timeout, not k), and,
	 * to upgrade a direct conn, for its users to leave.
	 */
	for (;;) {
		if (c->down) {
			/* It timed out: fail at once; the probe thread tries it again. */
			if (wanting)
				c->upgrade_wanted--;
			pthread_mutex_unlock(&c->lock);
			return -EIO;
		}
		int healthy = c->up && !c->broken;
		if (healthy && !c->direct) {
			c->users++; /* the common case: one lock, no waiting */
			if (wanting)
				c->upgrade_wanted--;
			pthread_mutex_unlock(&c->lock);
			if (direct)
				*direct = 0;
			return 0;
		}
		int64_t now = healthy && c->direct ? now_ns() : 0;
		if (healthy && c->direct && small && !c->connecting && !c->upgrade_wanted &&
		    do_direct_old(c, now))
			small = 0; /* upgrade below */
		if (healthy && c->direct && small && !c->connecting && !c->upgrade_wanted) {
			if (c->users == 0 && do_direct_stale(c, now)) {
				do_teardown(c); /* quietly: no request was lost; connect anew */
				continue;
			}
			c->users++;
			pthread_mutex_unlock(&c->lock);
			*direct = 1;
			return 0;
		}
		int busy = c->connecting || (c->broken && c->users > 0) ||
			   (healthy && c->direct && (small || c->users > 0));
		if (!busy)
			break;
		if (c->connecting && !waited) {
			waited = 1;
			attempt = c->attempts;
		}
		if (healthy && c->direct && !small && !wanting) {
			wanting = 1;
			c->upgrade_wanted++;
		}
		c->sleepers++;
		pthread_cond_wait(&c->cond, &c->lock);
		c->sleepers--;
		if (waited && c->attempts != attempt && c->attempt_err && !c->attempt_bg) {
			int ret = c->attempt_err;
			if (wanting)
				c->upgrade_wanted--;
			pthread_mutex_unlock(&c->lock);
			return ret;
		}
	}
	if (wanting)
		c->upgrade_wanted--;
	/* Not connecting, no users: a direct conn to upgrade, or nothing (or broken) to replace. */
	int upgrading = c->up && !c->broken && c->direct;
	if (upgrading && do_direct_stale(c, now_ns()))
		upgrading = 0; /* quiet for long, or closed: a new connection, not SETUP on it */
	if (!upgrading && (c->broken || c->up))
		do_teardown(c);
	c->connecting = 1;
	pthread_mutex_unlock(&c->lock);
	int ret = connect_conn(c, small, upgrading);
	pthread_mutex_lock(&c->lock);
	do_connected(c, ret, small, upgrading, track_is_self());
	if (!ret)
		c->users++;
	pthread_mutex_unlock(&c->lock);
	if (!ret && !small && c->kv->track_fn)
		ret = track_session(c); /* before the call that connected goes on */
	if (!ret && direct)
		*direct = small;
	return ret;
}

int conn_enter(struct conn *c)
{
	return enter(c, 0, NULL);
}

int conn_enter_small(struct conn *c, int *direct)
{
	return enter(c, 1, direct);
}

void conn_leave(struct conn *c)
{
	pthread_mutex_lock(&c->lock);
	c->users--;
	if (c->users == 0 && (c->broken || c->upgrade_wanted))
		wake_all(c);
	pthread_mutex_unlock(&c->lock);
}

int do_sess_enter(struct conn *c, uint64_t gen)
{
	int ok = c->up && !c->broken && !c->direct && c->gen == gen;
	if (ok)
		c->users++;
	return ok ? 0 : -EIO;
}

int sess_enter(struct conn *c, uint64_t gen)
{
	pthread_mutex_lock(&c->lock);
	int ret = do_sess_enter(c, gen);
	pthread_mutex_unlock(&c->lock);
	return ret;
}

void do_break(struct conn *c, const char *why)
{
	if (!c->broken) {
		log_warn("server %s: connection lost: %s", c->kv->cfg.servers[c->idx].name, why);
		c->broken = 1;
		do_track_lost(c);
	}
	wake_all(c);
}

void conn_break(struct conn *c, const char *why)
{
	pthread_mutex_lock(&c->lock);
	do_break(c, why);
	pthread_mutex_unlock(&c->lock);
}

int liveness_ok(struct conn *c)
{
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	if (poll(&p, 1, 0) > 0)
		return 0; /* the server never speaks on it: data or EOF both mean trouble */
	return 1;
}
