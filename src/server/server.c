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
 */
#include <errno.h>
#include <getopt.h>
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

#define HANDSHAKE_MS   3000
#define MAX_HANDSHAKES 64
/*
 * Connections past WELCOME (authenticated, when there is a secret) that are
 * serving direct requests or about to send SETUP: a budget of their own,
 * so that lazy clients, which may keep a connection for up to
 * WIRE_DIRECT_LIFE_MS, never take the handshake slots new clients need.
 */
#define MAX_DIRECTS 256
#define MAX_CONNS   4096

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

static void send_error(int fd, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void send_error(int fd, int err, const char *fmt, ...)
{
	struct wire_error e = {.err = err};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e.text, sizeof(e.text), fmt, ap);
	va_end(ap);
	log_ratelimited(&refused_rl, err == -EACCES ? LOG_LVL_WARN : LOG_LVL_INFO,
			"refused a client: %s", e.text);
	sock_send_frame(fd, WF_ERROR, &e, 500);
}

static struct svc_ep *find_ep(const char *prov)
{
	for (int i = 0; i < srv.n_eps; i++)
		if (strcmp(svc_ep_provider(srv.eps[i]), prov) == 0)
			return srv.eps[i];
	return NULL;
}

/* The handshake of one connection; on success the fd joins the control loop. */
static void *handshake(void *arg)
{
	int fd = (int)(intptr_t)arg;
	struct wire_hello hello;
	struct wire_challenge ch = {.auth_required = srv.cfg.secret_len > 0};
	uint8_t mac[WIRE_MAC];
	struct wire_welcome w = {.limits = srv.limits};
	struct wire_setup setup;
	int ret;

	ret = sock_recv_frame(fd, WF_HELLO, &hello, WIRE_FRAME_PRE, HANDSHAKE_MS, NULL, 0);
	if (ret) {
		if (ret == -EPROTO)
			send_error(fd, -EPROTO, "not a kvfs hello (protocol %d expected)",
				   WIRE_PROTO);
		goto out;
	}
	if (hello.proto != WIRE_PROTO) {
		send_error(fd, -EPROTONOSUPPORT,
			   "protocol version %u not supported; this server speaks %d", hello.proto,
			   WIRE_PROTO);
		goto out;
	}
	wire_random(ch.nonce, sizeof(ch.nonce));
	if (sock_send_frame(fd, WF_CHALLENGE, &ch, HANDSHAKE_MS))
		goto out;
	if (sock_recv_frame(fd, WF_AUTH, mac, WIRE_FRAME_PRE, HANDSHAKE_MS, NULL, 0))
		goto out;
	if (ch.auth_required) {
		uint8_t want[WIRE_MAC];
		wire_mac(want, srv.cfg.secret, srv.cfg.secret_len, "kvfs-client", ch.nonce,
			 hello.nonce);
		if (!wire_mac_equal(want, mac)) {
			send_error(fd, -EACCES, "authentication failed: wrong secret");
			goto out;
		}
		wire_mac(w.mac, srv.cfg.secret, srv.cfg.secret_len, "kvfs-server", hello.nonce,
			 ch.nonce);
	}
	for (int i = 0; i < srv.n_eps && i < WIRE_MAX_PROVS; i++)
		snprintf(w.provs[w.n_provs++], sizeof(w.provs[0]), "%s",
			 svc_ep_provider(srv.eps[i]));
	if (sock_send_frame(fd, WF_WELCOME, &w, HANDSHAKE_MS))
		goto out;
	/* Direct requests (direct.c) until SETUP, if the client sends any. */
	if (atomic_fetch_add(&directs, 1) >= MAX_DIRECTS) {
		atomic_fetch_sub(&directs, 1);
		send_error(fd, -EUSERS, "too many connections past the handshake (%d)",
			   MAX_DIRECTS);
		goto out;
	}
	atomic_fetch_sub(&handshakes, 1); /* out of the handshake slots meanwhile */
	ret = direct_serve(&srv, fd, HANDSHAKE_MS, &setup);
	atomic_fetch_add(&handshakes, 1);
	atomic_fetch_sub(&directs, 1);
	if (ret)
		goto out;
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
	if (fd >= 0)
		close(fd);
	atomic_fetch_sub(&handshakes, 1);
	return NULL;
}

static void accept_one(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (atomic_fetch_add(&handshakes, 1) >= MAX_HANDSHAKES) {
		atomic_fetch_sub(&handshakes, 1);
		close(fd);
		return;
	}
	pthread_t t;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &at, handshake, (void *)(intptr_t)fd)) {
		atomic_fetch_sub(&handshakes, 1);
		close(fd);
	}
	pthread_attr_destroy(&at);
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
	int64_t last_expire = 0;
	for (;;) {
		int n = 0;
		pfd[n++] = (struct pollfd){.fd = lfd, .events = POLLIN};
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
			accept_one(lfd);
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
