/*
 * kvfs-server: holds a kvfs cache node's values in a registered memory pool
 * and serves them over libfabric.
 *
 * Threads: the main thread runs the control loop (TCP accept, liveness of
 * every session's TCP channel, signals, expiry); each new connection gets a
 * short-lived handshake thread (version check, challenge-response, the
 * direct requests of a client that sends some (direct.c), fabric address
 * exchange) so a slow or hostile peer cannot stall others; each
 * fabric endpoint has its service thread (service.c).
 *
 * Bootstrap limits (README "Security"): HELLO to WELCOME within one
 * deadline of HANDSHAKE_MS in all (not per frame); MAX_HANDSHAKES slots in
 * all, at most server.handshakes_per_address of them for one peer address;
 * TCP keepalive and TCP_USER_TIMEOUT on every connection (sock_keepalive);
 * accept failing for want of descriptors pauses accepting (ACCEPT_PAUSE_MS)
 * instead of spinning on the ready listener. What a peer can cause is
 * logged rate-limited.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "common/sock.h"
#include "common/wire.h"
#include "service.h"

#define HANDSHAKE_MS	3000 /* HELLO to WELCOME, in all; and READY's send */
#define MAX_HANDSHAKES	64
#define ACCEPT_PAUSE_MS 100 /* accept out of descriptors: wait this long before the next */
/*
 * Connections past WELCOME (authenticated, when there is a secret) that are
 * serving direct requests or about to send SETUP: a budget of their own,
 * so that lazy clients, which may keep a connection for up to
 * WIRE_DIRECT_LIFE_MS, never take the handshake slots new clients need.
 */
#define MAX_DIRECTS 256
#define MAX_CONNS   4096
#define STR_(x)	    #x
#define STR(x)	    STR_(x)

struct conn {
	int fd;
	uint64_t session;
	struct svc_ep *ep;
};

static struct srv srv;
static pthread_mutex_t conn_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conn conns[MAX_CONNS]; /* conn_lock */
static int n_conns;		     /* conn_lock */
static int wake_fd = -1;
static atomic_int handshakes;
static atomic_int directs; /* threads in direct_serve (MAX_DIRECTS) */
/* Refused handshakes (junk, wrong version, wrong secret): any peer can cause them. */
static struct log_rl refused_rl = LOG_RL_INIT(LOG_RL_BURST, LOG_RL_INTERVAL_MS);
/* Connections turned away at accept (slots full, no descriptors): likewise. */
static struct log_rl accept_rl = LOG_RL_INIT(LOG_RL_BURST, LOG_RL_INTERVAL_MS);

/*
 * Handshake slots per peer address: one entry per address with slots
 * held (n > 0). At most MAX_HANDSHAKES + MAX_DIRECTS slots are held at
 * once (a direct connection takes its slot back for SETUP), so as many
 * entries always do.
 */
struct peer_slots {
	int family;
	uint8_t addr[16];
	int n;
};
static pthread_mutex_t peers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct peer_slots peers[MAX_HANDSHAKES + MAX_DIRECTS]; /* peers_lock */

/* A connection's peer, as its handshake thread knows it. */
struct peer {
	int fd;
	struct peer_slots key; /* family and address; n unused */
	char name[64];	       /* numeric address, for log lines */
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left to deadline, at least 1 (sock_* then time out at once). */
static int ms_left(int64_t deadline)
{
	int64_t left = deadline - mono_ms();
	return left < 1 ? 1 : (int)left;
}

/*
 * Take one of key's handshake slots: no more than limit (0: no limit, a
 * slot coming back from the direct phase). Returns 0 or -EUSERS.
 */
static int peer_take(const struct peer_slots *key, int limit)
{
	struct peer_slots *free_e = NULL;
	int ret = -EUSERS;
	pthread_mutex_lock(&peers_lock);
	for (size_t i = 0; i < sizeof(peers) / sizeof(peers[0]); i++) {
		struct peer_slots *e = &peers[i];
		if (e->n == 0) {
			if (!free_e)
				free_e = e;
			continue;
		}
		if (e->family == key->family && !memcmp(e->addr, key->addr, sizeof(e->addr))) {
			if (!limit || e->n < limit) {
				e->n++;
				ret = 0;
			}
			goto out;
		}
	}
	if (free_e) {
		*free_e = *key;
		free_e->n = 1;
		ret = 0;
	}
out:
	pthread_mutex_unlock(&peers_lock);
	return ret;
}

static void peer_give(const struct peer_slots *key)
{
	pthread_mutex_lock(&peers_lock);
	for (size_t i = 0; i < sizeof(peers) / sizeof(peers[0]); i++) {
		struct peer_slots *e = &peers[i];
		if (e->n && e->family == key->family &&
		    !memcmp(e->addr, key->addr, sizeof(e->addr))) {
			e->n--;
			break;
		}
	}
	pthread_mutex_unlock(&peers_lock);
}

/* A handshake slot: one of MAX_HANDSHAKES, one of the peer's. Returns 0 or -EUSERS. */
static int slot_take(const struct peer *p, int limit)
{
	if (atomic_fetch_add(&handshakes, 1) >= MAX_HANDSHAKES && limit) {
		atomic_fetch_sub(&handshakes, 1);
		return -EUSERS;
	}
	if (peer_take(&p->key, limit)) {
		atomic_fetch_sub(&handshakes, 1);
		return -EUSERS;
	}
	return 0;
}

static void slot_give(const struct peer *p)
{
	peer_give(&p->key);
	atomic_fetch_sub(&handshakes, 1);
}

static __thread const char *hs_peer = "?"; /* the handshake thread's peer, for send_error */

/* A handshake frame that did not come (the peer closed: nothing to say; too slow: a line). */
static void refused_quietly(int err, const char *what)
{
	if (err == -ETIMEDOUT)
		log_ratelimited(
		    &refused_rl, LOG_LVL_INFO,
		    "dropped a client (%s): no complete %s within the handshake's %d ms", hs_peer,
		    what, HANDSHAKE_MS);
}

static void send_error(int fd, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void send_error(int fd, int err, const char *fmt, ...)
{
	struct wire_error e = {.err = err};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e.text, sizeof(e.text), fmt, ap);
	va_end(ap);
	log_ratelimited(&refused_rl, err == -EACCES ? LOG_LVL_WARN : LOG_LVL_INFO,
			"refused a client (%s): %s", hs_peer, e.text);
	sock_send_frame(fd, WF_ERROR, &e, 500);
}

static struct svc_ep *find_ep(const char *prov)
{
	for (int i = 0; i < srv.n_eps; i++)
		if (strcmp(svc_ep_provider(srv.eps[i]), prov) == 0)
			return srv.eps[i];
	return NULL;
}

/* The handshake of one connection (arg: its struct peer); then the fd joins the control loop. */
static void *handshake(void *arg)
{
	struct peer *peer = arg;
	int fd = peer->fd;
	int64_t deadline = mono_ms() + HANDSHAKE_MS; /* HELLO to WELCOME, in all */
	struct wire_hello hello;
	struct wire_challenge ch = {.auth_required = srv.cfg.secret_len > 0};
	uint8_t mac[WIRE_MAC], key[WIRE_MAC] = {0}; /* key: the handshake's (wire.h) */
	struct wire_welcome w = {.limits = srv.limits};
	struct wire_setup setup;
	int ret;

	hs_peer = peer->name;
	ret = sock_recv_frame(fd, WF_HELLO, &hello, WIRE_FRAME_PRE, ms_left(deadline), NULL, 0);
	if (ret) {
		if (ret == -EPROTO)
			send_error(fd, -EPROTO, "not a kvfs hello (protocol %d expected)",
				   WIRE_PROTO);
		else
			refused_quietly(ret, "hello");
		goto out;
	}
	if (hello.proto != WIRE_PROTO) {
		send_error(fd, -EPROTONOSUPPORT,
			   "protocol version %u not supported; this server speaks %d", hello.proto,
			   WIRE_PROTO);
		goto out;
	}
	wire_random(ch.nonce, sizeof(ch.nonce));
	if (sock_send_frame(fd, WF_CHALLENGE, &ch, ms_left(deadline)))
		goto out;
	ret = sock_recv_frame(fd, WF_AUTH, mac, WIRE_FRAME_PRE, ms_left(deadline), NULL, 0);
	if (ret) {
		if (ret == -EPROTO)
			send_error(fd, -EPROTO, "not a kvfs auth frame");
		else
			refused_quietly(ret, "auth");
		goto out;
	}
	if (ch.auth_required) {
		uint8_t want[WIRE_MAC];
		wire_mac(want, srv.cfg.secret, srv.cfg.secret_len, "kvfs-client", ch.nonce,
			 hello.nonce);
		if (!wire_mac_equal(want, mac)) {
			send_error(fd, -EACCES, "authentication failed: wrong secret");
			goto out;
		}
		wire_session_key(key, srv.cfg.secret, srv.cfg.secret_len, hello.nonce, ch.nonce);
	}
	for (int i = 0; i < srv.n_eps && i < WIRE_MAX_PROVS; i++)
		snprintf(w.provs[w.n_provs++], sizeof(w.provs[0]), "%s",
			 svc_ep_provider(srv.eps[i]));
	/* with a secret: the proof of it over both nonces, and of these limits */
	if (ch.auth_required && wire_frame_mac(w.mac, key, WF_WELCOME, &w))
		goto out;
	if (sock_send_frame(fd, WF_WELCOME, &w, ms_left(deadline)))
		goto out;
	/* Direct requests (direct.c) until SETUP, if the client sends any. */
	if (atomic_fetch_add(&directs, 1) >= MAX_DIRECTS) {
		atomic_fetch_sub(&directs, 1);
		send_error(fd, -EUSERS, "too many connections past the handshake (%d)",
			   MAX_DIRECTS);
		goto out;
	}
	slot_give(peer); /* out of the handshake slots meanwhile */
	ret = direct_serve(&srv, fd, HANDSHAKE_MS, &setup);
	slot_take(peer, 0);
	atomic_fetch_sub(&directs, 1);
	if (ret)
		goto out;
	if (ch.auth_required) {
		uint8_t want[WIRE_MAC];
		if (wire_frame_mac(want, key, WF_SETUP, &setup) ||
		    !wire_mac_equal(want, setup.mac)) {
			send_error(fd, -EACCES, "setup failed its MAC (not from this handshake)");
			goto out;
		}
	}
	struct svc_ep *ep = find_ep(setup.provider);
	if (!ep) {
		send_error(fd, -EPROTONOSUPPORT, "provider \"%s\" is not served here",
			   setup.provider);
		goto out;
	}
	if (setup.addr_len == 0 || setup.recv.len == 0 || setup.staging.len == 0) {
		send_error(fd, -EINVAL, "setup without fabric address or buffer regions");
		goto out;
	}
	pthread_mutex_lock(&conn_lock);
	int full = n_conns >= MAX_CONNS;
	pthread_mutex_unlock(&conn_lock);
	if (full) {
		send_error(fd, -EUSERS, "too many sessions");
		goto out;
	}
	struct svc_cmd cmd = {.kind = CMD_ADD, .setup = setup};
	svc_ep_command(ep, &cmd);
	if (cmd.result) {
		/*
		 * On shm the address is a region of the client's, which only a
		 * server of the same user may open: EPERM tells a client on
		 * provider auto to take the network provider instead.
		 */
		int shm = strcmp(setup.provider, "shm") == 0;
		send_error(fd, shm ? -EPERM : cmd.result,
			   "cannot add the client's fabric address: %s%s", strerror(-cmd.result),
			   shm ? " (shm reaches only clients of the server's own user: use "
				 "fabric.provider \"tcp\")"
			       : "");
		goto out;
	}
	struct wire_ready rd = {.session = cmd.session, .token = cmd.token, .pool = srv.pool};
	ret = svc_ep_name(ep, rd.addr, &rd.addr_len);
	if (!ret && ch.auth_required)
		ret = wire_frame_mac(rd.mac, key, WF_READY, &rd);
	if (!ret)
		ret = sock_send_frame(fd, WF_READY, &rd, HANDSHAKE_MS);
	pthread_mutex_lock(&conn_lock);
	if (!ret && n_conns < MAX_CONNS && !atomic_load(&srv.stopping)) {
		conns[n_conns++] = (struct conn){fd, cmd.session, ep};
		fd = -1;
	}
	pthread_mutex_unlock(&conn_lock);
	if (fd >= 0) {
		struct svc_cmd drop = {.kind = CMD_DROP, .drop_id = cmd.session};
		svc_ep_command(ep, &drop);
	} else {
		log_info("session %llx opened on %s", (unsigned long long)cmd.session,
			 svc_ep_provider(ep));
		uint64_t one = 1;
		ssize_t wr = write(wake_fd, &one, sizeof(one));
		(void)wr;
	}
out:
	explicit_bzero(key, sizeof(key));
	if (fd >= 0)
		close(fd);
	slot_give(peer);
	free(peer);
	return NULL;
}

/*
 * Accept one connection and start its handshake thread. Returns 0, or
 * -errno when accept itself failed for a reason that will not pass at once
 * (no descriptors or memory: the caller pauses accepting).
 */
static int accept_one(int lfd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
			log_ratelimited(&accept_rl, LOG_LVL_WARN,
					"cannot accept connections: %s (pausing accept for %d ms)",
					strerror(err), ACCEPT_PAUSE_MS);
			return -err;
		}
		return 0; /* the peer gave up (ECONNABORTED), a signal: the next one */
	}
	struct peer *p = calloc(1, sizeof(*p));
	if (!p) {
		close(fd);
		return -ENOMEM;
	}
	p->fd = fd;
	p->key.family = ss.ss_family;
	if (ss.ss_family == AF_INET)
		memcpy(p->key.addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
	else if (ss.ss_family == AF_INET6)
		memcpy(p->key.addr, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
	if (getnameinfo((struct sockaddr *)&ss, sl, p->name, sizeof(p->name), NULL, 0,
			NI_NUMERICHOST))
		snprintf(p->name, sizeof(p->name), "?");
	if (slot_take(p, (int)srv.cfg.server_hs_per_addr)) {
		log_ratelimited(&accept_rl, LOG_LVL_INFO,
				"turned away a connection from %s: %s handshakes at once", p->name,
				atomic_load(&handshakes) >= MAX_HANDSHAKES
				    ? "already " STR(MAX_HANDSHAKES)
				    : "server.handshakes_per_address");
		close(fd);
		free(p);
		return 0;
	}
	sock_keepalive(fd);
	pthread_t t;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &at, handshake, p)) {
		slot_give(p);
		close(fd);
		free(p);
	}
	pthread_attr_destroy(&at);
	return 0;
}

/* The session's TCP channel closed (or spoke out of turn): drop the session. */
static void drop_conn(int i)
{
	struct conn c;
	pthread_mutex_lock(&conn_lock);
	c = conns[i];
	conns[i] = conns[--n_conns];
	pthread_mutex_unlock(&conn_lock);
	struct svc_cmd cmd = {.kind = CMD_DROP, .drop_id = c.session};
	svc_ep_command(c.ep, &cmd);
	close(c.fd);
}

static int control_loop(int lfd, int sfd)
{
	static struct pollfd pfd[MAX_CONNS + 3];
	int64_t last_expire = 0, accept_paused_until = 0;
	for (;;) {
		int n = 0;
		/* accepting paused: poll ignores a negative fd (the listener stays ready) */
		int paused = accept_paused_until && mono_ms() < accept_paused_until;
		pfd[n++] = (struct pollfd){.fd = paused ? -1 : lfd, .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = wake_fd, .events = POLLIN};
		pthread_mutex_lock(&conn_lock);
		int nc = n_conns;
		for (int i = 0; i < nc; i++)
			pfd[n++] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
		pthread_mutex_unlock(&conn_lock);

		int r = poll(pfd, (nfds_t)n, 100);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (pfd[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				log_info("signal %u: stopping", si.ssi_signo);
				sd_notify(0, "STOPPING=1");
				return 0;
			}
		}
		if (pfd[2].revents & POLLIN) {
			uint64_t v;
			ssize_t rd = read(wake_fd, &v, sizeof(v));
			(void)rd;
		}
		if (pfd[0].revents & POLLIN)
			accept_paused_until = accept_one(lfd) ? mono_ms() + ACCEPT_PAUSE_MS : 0;
		/* Walk backwards: drop_conn moves the last entry into the hole. */
		for (int i = nc - 1; i >= 0; i--) {
			if (!pfd[3 + i].revents)
				continue;
			char b[64];
			ssize_t k = recv(pfd[3 + i].fd, b, sizeof(b), MSG_DONTWAIT);
			if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR) || k > 0)
				drop_conn(i);
		}
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		if (ms - last_expire >= 100) {
			last_expire = ms;
			pthread_mutex_lock(&srv.store_lock);
			store_expire(srv.store, (int64_t)time(NULL), 1000);
			pthread_mutex_unlock(&srv.store_lock);
		}
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvfs-server [-c FILE] [--name NAME] [--probe] [-v]\n"
		"  -c, --config FILE  configuration (default $KVFS_CONF, else %s)\n"
		"  -n, --name NAME    which cluster.servers entry this is (default: the only one)\n"
		"  --probe            print the libfabric providers found and what \"auto\" picks\n"
		"  -v, --verbose      log sessions (twice: debug)\n",
		KVFS_DEFAULT_CONF);
}

int main(int argc, char **argv)
{
	const char *conf = NULL, *name = NULL;
	int probe = 0, verbose = 0, ret;
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'}, {"name", required_argument, NULL, 'n'},
	    {"probe", no_argument, NULL, 'p'},	      {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},	      {0}};
	int c;
	while ((c = getopt_long(argc, argv, "c:n:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 'p':
			probe = 1;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	log_set_ident("kvfs-server");
	log_set_level(verbose >= 2 ? LOG_LVL_DEBUG : verbose ? LOG_LVL_INFO : LOG_LVL_WARN);
	conf = config_default_path(conf);

	char err[512];
	ret = config_load(&srv.cfg, conf, err, sizeof(err));
	if (probe) {
		if (ret)
			config_defaults(&srv.cfg);
		return fab_probe(stdout, srv.cfg.provider) ? 1 : 0;
	}
	if (ret) {
		log_error("%s", err);
		return 1;
	}
	srv.self = config_find_server(&srv.cfg, name);
	if (srv.self < 0) {
		char names[512] = "";
		size_t n = 0;
		for (int i = 0; i < srv.cfg.n_servers && n < sizeof(names); i++)
			n += (size_t)snprintf(names + n, sizeof(names) - n, " %s",
					      srv.cfg.servers[i].name);
		log_error("%s: %s; valid: --name with one of%s", conf,
			  name ? "no such server in cluster.servers"
			       : "several servers in cluster.servers",
			  names);
		return 1;
	}
	const struct kvfs_server_entry *me = &srv.cfg.servers[srv.self];
	srv.limits = (struct wire_limits){.max_key = PROTO_MAX_KEY,
					  .max_value = srv.cfg.server_max_value,
					  .inline_threshold = srv.cfg.inline_threshold,
					  .msg_size = wire_msg_size(srv.cfg.inline_threshold)};
	srv.started = (int64_t)time(NULL);
	pthread_mutex_init(&srv.store_lock, NULL);
	struct store_config sc = {.memory = srv.cfg.server_memory,
				  .max_value = srv.cfg.server_max_value,
				  .evict_none = srv.cfg.eviction == KVFS_EVICT_NONE,
				  .prefault = srv.cfg.server_prefault,
				  .evicted = svc_evicted,
				  .evicted_arg = &srv};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ret = store_open(&srv.store, &sc);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (ret) {
		log_error("%s: server.memory: cannot set up a pool of %llu bytes: %s%s", conf,
			  (unsigned long long)sc.memory, strerror(-ret),
			  sc.prefault ? " (server.prefault = false starts without giving the pool "
					"its memory first)"
				      : "");
		return 1;
	}
	log_info("pool of %llu MiB set up in %.0f ms (%s)",
		 (unsigned long long)(store_pool_size(srv.store) >> 20),
		 (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6,
		 sc.prefault ? "prefaulted" : "not prefaulted");
	if (svc_track_open(&srv)) {
		log_error("cannot set up the table of tracked keys: out of memory");
		store_close(srv.store);
		return 1;
	}
	struct stat pst;
	if (store_pool_fd(srv.store) >= 0 && fstat(store_pool_fd(srv.store), &pst) == 0)
		srv.pool = (struct wire_pool){(uint32_t)getpid(), store_pool_fd(srv.store),
					      store_pool_size(srv.store), pst.st_dev, pst.st_ino};

	/*
	 * SIGTERM and SIGINT wait in a signalfd from here on: one that comes
	 * while the endpoints are set up (clients may already be queued on the
	 * address) ends the server cleanly once the control loop starts.
	 */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	/*
	 * The address first, before the fabric endpoints: tcp's listens on a
	 * port the kernel picks, which could otherwise be this very port (a
	 * port a test found free a moment ago), and the bootstrap would then
	 * fail to bind while that endpoint answered on it. Clients that come
	 * meanwhile wait in the backlog until the control loop accepts them.
	 */
	int lfd = sock_listen(me->host, me->port);
	if (lfd < 0) {
		log_error("%s: cluster.servers[%s].address %s:%s: cannot listen: %s", conf,
			  me->name, me->host, me->port, strerror(-lfd));
		return 1;
	}
	const char *provs[SVC_MAX_EPS];
	int n_provs;
	if (strcmp(srv.cfg.provider, "auto") == 0) {
		n_provs = fab_auto_providers(provs, SVC_MAX_EPS);
	} else {
		provs[0] = srv.cfg.provider;
		n_provs = 1;
	}
	for (int i = 0; i < n_provs; i++) {
		const char *node = strcmp(provs[i], "shm") == 0 ? NULL : me->host;
		ret = svc_ep_open(&srv, provs[i], node, &srv.eps[srv.n_eps]);
		if (ret) {
			log_error("%s: fabric.provider: cannot serve on %s: %s", conf, provs[i],
				  strerror(-ret));
			continue;
		}
		srv.n_eps++;
	}
	if (srv.n_eps == 0) {
		log_error("%s: fabric.provider \"%s\": no usable provider; "
			  "run kvfs-server --probe to see what libfabric offers",
			  conf, srv.cfg.provider);
		return 1;
	}

	ret = direct_open(&srv);
	if (ret) {
		log_error("cannot set up the bootstrap channel's requests: %s", strerror(-ret));
		return 1;
	}
	/* Before the service threads: they time requests once srv.metrics is set. */
	ret = srv_metrics_start(&srv, err, sizeof(err));
	if (ret) {
		log_error("%s: server.metrics: %s", conf, err);
		return 1;
	}
	for (int i = 0; i < srv.n_eps; i++) {
		ret = svc_ep_start(srv.eps[i]);
		if (ret) {
			log_error("cannot start a service thread: %s", strerror(-ret));
			return 1;
		}
	}
	char provlist[SVC_MAX_EPS * 32] = "";
	for (int i = 0, n = 0; i < srv.n_eps && n < (int)sizeof(provlist); i++)
		n += snprintf(provlist + n, sizeof(provlist) - (size_t)n, " %s",
			      svc_ep_provider(srv.eps[i]));
	log_notice("%s listening on %s:%s, pool %llu MiB, providers:%s", me->name, me->host,
		   me->port, (unsigned long long)(store_pool_size(srv.store) >> 20), provlist);
	if (srv.metrics_srv)
		log_notice("metrics on http://%s/metrics", srv.cfg.server_metrics);
	/* Under systemd (Type=notify): the listener and every endpoint are up. */
	sd_notifyf(0, "READY=1\nSTATUS=serving on %s:%s", me->host, me->port);

	ret = control_loop(lfd, sfd);
	close(lfd);
	atomic_store(&srv.stopping, 1);
	for (int i = 0; i < srv.n_eps; i++)
		svc_ep_join(srv.eps[i]);
	/* Handshakes still running see stopping and drop their session. */
	while (atomic_load(&handshakes) > 0 || atomic_load(&directs) > 0)
		usleep(10000);
	pthread_mutex_lock(&conn_lock);
	for (int i = 0; i < n_conns; i++)
		close(conns[i].fd);
	n_conns = 0;
	pthread_mutex_unlock(&conn_lock);
	srv_metrics_stop(&srv);
	for (int i = 0; i < srv.n_eps; i++)
		svc_ep_close(srv.eps[i]);
	direct_close();
	svc_track_close(&srv);
	store_close(srv.store);
	close(sfd);
	close(wake_fd);
	return ret ? 1 : 0;
}
