/*
 * Integration: hostile peers of the bootstrap, beside test_hostile.c's
 * hostile client. Hostile servers (a thread of the test on a port of its
 * own) meet a libkvfs client with a secret, which must refuse them and never
 * map what they name as the pool unless it is one; and the server's
 * bootstrap limits (one handshake deadline, handshakes per address,
 * keepalive, accept out of descriptors).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/sock.h"
#include "common/wire.h"
#include "harness.h"
#include "hostile.h"

/* ---- hostile servers: a client with a secret trusts only a server that proves it ---- */

#define SECRET "a-shared-secret-for-the-hostile-servers"

enum fake_mode {
	FAKE_NOAUTH,	  /* CHALLENGE without auth_required */
	FAKE_BADMAC,	  /* auth_required, then a WELCOME whose MAC is made up */
	FAKE_SLOW,	  /* as FAKE_BADMAC, each answer 400 ms late */
	RELAY,		  /* relay to the real server, READY untouched */
	RELAY_POOL_NOMAC, /* ... READY's pool changed, its MAC left as it was */
	RELAY_POOL_FILE,  /* ... READY's pool changed to a plain file, MAC recomputed */
	RELAY_POOL_MEMFD, /* ... to a memfd named kvfs-pool of the size, not sealed */
};

/* A hostile peer in a thread of the test, listening on a loopback port of its own. */
struct fake {
	enum fake_mode mode;
	int lfd, port;
	pthread_t t;
	int file_fd;		  /* RELAY_POOL_*: the descriptor READY names instead of the pool */
	size_t after;		  /* bytes the client sent after the step it should stop at */
	int frames;		  /* frames relayed from the client (HELLO, AUTH, SETUP: 3) */
	struct wire_pool offered; /* the pool the real server offered (RELAY*) */
};

/* Read everything the client still sends until it closes (or 5 s pass): its byte count. */
static size_t drain(int fd)
{
	size_t n = 0;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 5000) != 1)
			return n;
		char b[512];
		ssize_t k = recv(fd, b, sizeof(b), 0);
		if (k <= 0)
			return n;
		n += (size_t)k;
	}
}

static void relay(struct fake *f, int cfd)
{
	char port[8];
	snprintf(port, sizeof(port), "%d", cl.ports[0]);
	int sfd = sock_connect("127.0.0.1", port, 2000);
	struct wire_hello h;
	struct wire_challenge ch;
	uint8_t mac[WIRE_MAC];
	struct wire_welcome w;
	struct wire_setup s;
	struct wire_ready rd;
	if (sfd < 0 || sock_recv_frame(cfd, WF_HELLO, &h, WIRE_FRAME_MAX, 5000, NULL, 0) ||
	    sock_send_frame(sfd, WF_HELLO, &h, 2000) ||
	    sock_recv_frame(sfd, WF_CHALLENGE, &ch, WIRE_FRAME_MAX, 5000, NULL, 0) ||
	    sock_send_frame(cfd, WF_CHALLENGE, &ch, 2000) ||
	    sock_recv_frame(cfd, WF_AUTH, mac, WIRE_FRAME_MAX, 5000, NULL, 0) ||
	    sock_send_frame(sfd, WF_AUTH, mac, 2000) ||
	    sock_recv_frame(sfd, WF_WELCOME, &w, WIRE_FRAME_MAX, 5000, NULL, 0) ||
	    sock_send_frame(cfd, WF_WELCOME, &w, 2000) ||
	    sock_recv_frame(cfd, WF_SETUP, &s, WIRE_FRAME_MAX, 5000, NULL, 0) ||
	    sock_send_frame(sfd, WF_SETUP, &s, 2000) ||
	    sock_recv_frame(sfd, WF_READY, &rd, WIRE_FRAME_MAX, 5000, NULL, 0))
		goto out;
	f->frames = 3;
	f->offered = rd.pool;
	if (f->mode != RELAY) {
		struct stat st;
		fstat(f->file_fd, &st);
		rd.pool = (struct wire_pool){(uint32_t)getpid(), f->file_fd, rd.pool.len,
					     (uint64_t)st.st_dev, (uint64_t)st.st_ino};
	}
	if (f->mode >= RELAY_POOL_FILE) {
		/* what a peer that knows the secret (and so every key) can do */
		uint8_t key[WIRE_MAC];
		wire_session_key(key, (const uint8_t *)SECRET, strlen(SECRET), h.nonce, ch.nonce);
		wire_frame_mac(rd.mac, key, WF_READY, &rd);
	}
	if (sock_send_frame(cfd, WF_READY, &rd, 2000))
		goto out;
	/* The session goes on over the fabric; hold both channels until either closes. */
	struct pollfd p[2] = {{.fd = cfd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
	poll(p, 2, 60000);
out:
	if (sfd >= 0)
		close(sfd);
}

static void *fake_thread(void *arg)
{
	struct fake *f = arg;
	int cfd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (cfd < 0)
		return NULL;
	if (f->mode >= RELAY) {
		relay(f, cfd);
		close(cfd);
		return NULL;
	}
	struct wire_hello h;
	struct wire_challenge ch = {.auth_required = f->mode != FAKE_NOAUTH};
	int late_us = f->mode == FAKE_SLOW ? 400000 : 0;
	uint8_t mac[WIRE_MAC];
	wire_random(ch.nonce, sizeof(ch.nonce));
	if (sock_recv_frame(cfd, WF_HELLO, &h, WIRE_FRAME_MAX, 5000, NULL, 0) || usleep(late_us) ||
	    sock_send_frame(cfd, WF_CHALLENGE, &ch, 2000))
		goto out;
	f->frames = 1;
	if (f->mode != FAKE_NOAUTH) {
		struct wire_welcome w = {
		    .limits = {PROTO_MAX_KEY, 1 << 20, 4096, wire_msg_size(4096)}, .n_provs = 1};
		snprintf(w.provs[0], sizeof(w.provs[0]), "%s", h_provider());
		wire_random(w.mac, sizeof(w.mac));
		if (sock_recv_frame(cfd, WF_AUTH, mac, WIRE_FRAME_MAX, 5000, NULL, 0) ||
		    usleep(late_us) || sock_send_frame(cfd, WF_WELCOME, &w, 2000))
			goto out;
		f->frames = 2;
	}
	f->after = drain(cfd); /* a SETUP, a direct request: what must not come */
out:
	close(cfd);
	return NULL;
}

/* Start f (mode set) on a loopback port; conf gets a client config (with SECRET) naming it. */
static void fake_start(struct fake *f, char *conf, size_t clen)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(f->lfd, 0);
	cr_assert_eq(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(f->lfd, 4), 0);
	cr_assert_eq(getsockname(f->lfd, (struct sockaddr *)&a, &al), 0);
	f->port = ntohs(a.sin_port);
	/* the cluster's client config, with the fake's port for the server's */
	char text[4096], from[32], to[32];
	FILE *in = fopen(cl.conf, "r");
	cr_assert_not_null(in);
	size_t n = fread(text, 1, sizeof(text) - 1, in);
	fclose(in);
	text[n] = 0;
	snprintf(from, sizeof(from), "127.0.0.1:%d\"", cl.ports[0]);
	snprintf(to, sizeof(to), "127.0.0.1:%d\"", f->port);
	char *at = strstr(text, from);
	cr_assert_not_null(at);
	snprintf(conf, clen, "%s/fake-%d.conf", cl.dir, (int)f->mode);
	FILE *out = fopen(conf, "w");
	cr_assert_not_null(out);
	fprintf(out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
	fclose(out);
	cr_assert_eq(pthread_create(&f->t, NULL, fake_thread, f), 0);
}

static void fake_join(struct fake *f)
{
	pthread_join(f->t, NULL);
	close(f->lfd);
}

static void start_secret(void)
{
	struct h_opts o = {.secret = SECRET};
	h_start(&cl, &o);
	kv = h_client(&cl);
}

/*
 * A client with cluster.secret_file and a fake server on the server's
 * address (what a local user can bind while the real one is down): one
 * that asks for no authentication, one whose WELCOME proves nothing (and
 * the same 400 ms late per frame: the client's deadline is overall), one
 * that relays to the real server but changes READY's pool (to a plain file,
 * without its MAC and with it recomputed; to an unsealed memfd named
 * kvfs-pool, with it). The client refuses the first three with EACCES and
 * sends nothing past the step that failed; it never maps a descriptor that
 * is not a kvfs pool (a plain file the peer names with a valid MAC):
 * kvfs_pin_map then says -EOPNOTSUPP and reads go by RMA. An untouched
 * relay shows the relay itself is sound (the real pool is mapped).
 */
Test(hostile, client_refuses_fake_servers, .init = start_secret, .fini = stop, .timeout = 60)
{
	char conf[400], back[16];
	kvfs_t *k;
	struct fake f;

	f = (struct fake){.mode = FAKE_NOAUTH};
	fake_start(&f, conf, sizeof(conf));
	cr_assert_eq(kvfs_open(conf, &k), 0);
	cr_assert_eq(kvfs_put(k, "stolen", "secret data", 11, NULL), -EACCES,
		     "a client with a secret accepted a server that asks for none");
	kvfs_close(k);
	fake_join(&f);
	cr_assert_eq(f.frames, 1);
	cr_assert_eq(f.after, 0, "the client sent %zu bytes to a server without auth", f.after);

	f = (struct fake){.mode = FAKE_BADMAC};
	fake_start(&f, conf, sizeof(conf));
	cr_assert_eq(kvfs_open(conf, &k), 0);
	cr_assert_eq(kvfs_put(k, "stolen", "secret data", 11, NULL), -EACCES,
		     "a client accepted a WELCOME with a wrong MAC");
	kvfs_close(k);
	fake_join(&f);
	cr_assert_eq(f.frames, 2);
	cr_assert_eq(f.after, 0, "the client sent %zu bytes after a wrong MAC", f.after);

	/*
	 * A server that answers each frame 400 ms late, to a client with
	 * client.timeout_ms = 500: the handshake up to WELCOME has 500 ms in
	 * all, not per frame (per frame it would get the WELCOME at 800 ms).
	 */
	f = (struct fake){.mode = FAKE_SLOW};
	fake_start(&f, conf, sizeof(conf));
	struct kvfs_config *cfg;
	char err[256];
	cr_assert_eq(kvfs_config_load(conf, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(kvfs_config_set(cfg, "client.timeout_ms", "500", err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_eq(kvfs_open_config(cfg, &k), 0);
	kvfs_config_free(cfg);
	int64_t t0 = h_now_ms();
	cr_assert_eq(kvfs_put(k, "stolen", "secret data", 11, NULL), -ETIMEDOUT);
	int64_t dt = h_now_ms() - t0;
	cr_assert(dt >= 450 && dt < 790, "the handshake failed after %lld ms", (long long)dt);
	kvfs_close(k);
	fake_join(&f);

	/* The plain file a hostile READY names: the size of the pool, with a marker. */
	char path[320];
	snprintf(path, sizeof(path), "%s/not-a-pool", cl.dir);
	int file_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(file_fd, 0);
	cr_assert_eq(pwrite(file_fd, "MARKER", 6, 0), 6);
	int memfd = memfd_create("kvfs-pool", MFD_CLOEXEC); /* the name, not the seals */
	cr_assert_geq(memfd, 0);

	cr_assert_eq(kvfs_put(kv, "v", "value", 5, NULL), 0);
	for (int mode = RELAY; mode <= RELAY_POOL_MEMFD; mode++) {
		f = (struct fake){.mode = (enum fake_mode)mode,
				  .file_fd = mode == RELAY_POOL_MEMFD ? memfd : file_fd};
		fake_start(&f, conf, sizeof(conf));
		cr_assert_eq(kvfs_open(conf, &k), 0);
		kvfs_pin_t *p = NULL;
		int ret = kvfs_pin_open(k, "v", &p, NULL);
		if (mode == RELAY_POOL_NOMAC) {
			cr_assert_eq(ret, -EACCES, "a READY with a forged pool and no MAC: %s",
				     kvfs_strerror(ret));
			kvfs_close(k);
			fake_join(&f);
			continue;
		}
		cr_assert_eq(ret, 0, "relay mode %d: %s", mode, kvfs_strerror(ret));
		struct iovec iov[4];
		kvfs_lease_t *l;
		int n = 0;
		ssize_t got = kvfs_pin_map(p, 5, 0, iov, 4, &n, &l);
		if (mode == RELAY) {
			cr_assert_eq(got, 5, "the real pool through the relay: %zd", got);
			cr_assert_eq(memcmp(iov[0].iov_base, "value", 5), 0);
			kvfs_lease_release(l);
			/* the next relays name the plain file, as large as the real pool */
			cr_assert_eq(ftruncate(file_fd, (off_t)f.offered.len), 0);
			cr_assert_eq(ftruncate(memfd, (off_t)f.offered.len), 0);
		} else {
			cr_assert_eq(got, -EOPNOTSUPP, "%s was mapped as the pool (%zd)",
				     mode == RELAY_POOL_FILE ? "a plain file" : "an unsealed memfd",
				     got);
			cr_assert_eq(kvfs_pin_get(p, back, sizeof(back), 0), 5, "reads by RMA");
			cr_assert_eq(memcmp(back, "value", 5), 0);
		}
		kvfs_pin_close(p);
		kvfs_close(k);
		fake_join(&f);
	}
	close(file_fd);
	close(memfd);
	good_client_still_served(400);
}

/* ---- bootstrap limits (server.c) ------------------------------------------------------ */

/* A TCP connection to the server from loopback address src (127.0.0.0/8 is all local). */
static int connect_from(const char *src)
{
	struct sockaddr_in a = {.sin_family = AF_INET}, b = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	inet_pton(AF_INET, src, &a.sin_addr);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0, "bind %s: %s", src,
		     strerror(errno));
	inet_pton(AF_INET, "127.0.0.1", &b.sin_addr);
	b.sin_port = htons((uint16_t)cl.ports[0]);
	cr_assert_eq(connect(fd, (struct sockaddr *)&b, sizeof(b)), 0, "connect: %s",
		     strerror(errno));
	return fd;
}

/* The server's socket of the connection from local port lport: its timer is keepalive's. */
static int server_side_keepalive(int lport)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	cr_assert_not_null(f);
	char line[512];
	int found = -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned la, lp, ra, rp, st, tr;
		if (sscanf(line, " %*d: %x:%x %x:%x %x %*x:%*x %x:", &la, &lp, &ra, &rp, &st,
			   &tr) == 6 &&
		    (int)lp == cl.ports[0] && (int)rp == lport && st == 1 /* ESTABLISHED */)
			found = tr == 2; /* timer 2: keepalive */
	}
	fclose(f);
	return found;
}

/*
 * More silent handshakes from one address than server.handshakes_per_address
 * (8): the ninth is closed at once, while a real client (from 127.0.0.1)
 * and another address are served. A peer that trickles its frames (HELLO
 * after 2.5 s, then its AUTH a byte at a time) is dropped by the overall
 * deadline (3 s from connect; per frame it had until 5.5 s), as are the
 * silent ones. Both ends of a bootstrap connection have TCP keepalive.
 */
Test(hostile, bootstrap_limits, .init = start, .fini = stop, .timeout = 60)
{
	int fds[8];
	good_client_still_served(499); /* serving: it accepts at once from here on */
	int64_t t0 = h_now_ms();
	int slow = connect_from("127.0.0.3");
	for (int i = 0; i < 8; i++)
		fds[i] = connect_from("127.0.0.2");
	int extra = connect_from("127.0.0.2");
	expect_closed(extra, 1500); /* at once, not at the 3 s deadline */
	close(extra);
	cr_assert_lt(h_now_ms() - t0, 2000, "the ninth handshake of one address was accepted");
	kvfs_t *k2;
	cr_assert_eq(kvfs_open(cl.conf, &k2), 0);
	cr_assert_eq(kvfs_put(k2, "n", "new", 3, NULL), 0, "a client from another address");
	kvfs_close(k2);
	good_client_still_served(500);

	/* keepalive: our side (sock_connect) and the server's */
	char port[8];
	snprintf(port, sizeof(port), "%d", cl.ports[0]);
	int kfd = sock_connect("127.0.0.1", port, 2000);
	cr_assert_geq(kfd, 0);
	int on = 0;
	unsigned ut = 0;
	socklen_t ol = sizeof(on), ul = sizeof(ut);
	cr_assert_eq(getsockopt(kfd, SOL_SOCKET, SO_KEEPALIVE, &on, &ol), 0);
	cr_assert_eq(getsockopt(kfd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, &ul), 0);
	cr_assert(on && ut == SOCK_USER_TIMEOUT_MS, "client socket: keepalive %d, user timeout %u",
		  on, ut);
	struct sockaddr_in me;
	socklen_t ml = sizeof(me);
	cr_assert_eq(getsockname(kfd, (struct sockaddr *)&me, &ml), 0);
	int64_t kd = h_now_ms() + 2000;
	int ka;
	while ((ka = server_side_keepalive(ntohs(me.sin_port))) != 1 && h_now_ms() < kd)
		usleep(20000); /* until the server has accepted it */
	cr_assert_eq(ka, 1, "the server's end of a bootstrap connection has no keepalive timer");
	close(kfd);

	/* the trickler: HELLO at 2.5 s, then its AUTH byte by byte */
	int64_t wait = t0 + 2500 - h_now_ms();
	if (wait > 0)
		usleep((useconds_t)wait * 1000);
	struct wire_hello h = {.proto = WIRE_PROTO};
	struct wire_challenge ch;
	cr_assert_eq(sock_send_frame(slow, WF_HELLO, &h, 2000), 0);
	cr_assert_eq(sock_recv_frame(slow, WF_CHALLENGE, &ch, WIRE_FRAME_MAX, 2000, NULL, 0), 0,
		     "a HELLO 2.5 s after connecting is still in time");
	uint8_t auth[WIRE_FRAME_HDR + WIRE_MAC] = {0}, mac[WIRE_MAC] = {0};
	cr_assert_eq(wire_frame_encode(auth, sizeof(auth), WF_AUTH, mac), (int)sizeof(auth));
	int closed = 0;
	for (size_t i = 0; i < sizeof(auth) && !closed; i++) {
		if (send(slow, auth + i, 1, MSG_NOSIGNAL) != 1)
			closed = 1;
		struct pollfd p = {.fd = slow, .events = POLLIN};
		if (!closed && poll(&p, 1, 150) == 1)
			closed = 1; /* EOF (or an error frame): the server gave up on it */
		if (h_now_ms() - t0 > 4500)
			break;
	}
	int64_t dt = h_now_ms() - t0;
	cr_assert(closed, "a trickling handshake still open after %lld ms", (long long)dt);
	cr_assert(dt >= 2900 && dt < 4000, "dropped after %lld ms; the deadline is 3000",
		  (long long)dt);
	close(slow);
	for (int i = 0; i < 8; i++) {
		expect_closed(fds[i], 1500); /* silent: dropped at the same deadline */
		close(fds[i]);
	}
	good_client_still_served(501);
}

/* utime + stime of process pid, in clock ticks. */
static long long cpu_ticks(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')'); /* after the command name, which may hold spaces */
	cr_assert_not_null(p);
	long long ut = 0, st = 0;
	cr_assert_eq(
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &ut, &st), 2);
	return ut + st;
}

/* Lines of the server's log that hold s. */
static int log_lines(const char *s)
{
	char path[320], line[1024];
	snprintf(path, sizeof(path), "%s/server-%s.log", cl.dir, cl.names[0]);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, s) != NULL;
	fclose(f);
	return n;
}

static pid_t nofile_pid;
static struct rlimit nofile_old;

/* The server gets its descriptors back however the test ends, then stops. */
static void stop_nofile(void)
{
	if (nofile_pid > 0)
		prlimit(nofile_pid, RLIMIT_NOFILE, &nofile_old, NULL);
	stop();
}

/*
 * A server out of descriptors (RLIMIT_NOFILE lowered under it, prlimit)
 * hammered with connections: accept fails with EMFILE, and the server
 * pauses accepting instead of spinning on the ready listener (its CPU time
 * over half a second stays under a fifth of it: it was all of it), logs it rate-limited,
 * and serves new clients once descriptors are back.
 */
Test(hostile, accept_out_of_descriptors_does_not_spin, .init = start, .fini = stop_nofile,
     .timeout = 60)
{
	pid_t pid = cl.pids[0];
	struct rlimit old, low;
	good_client_still_served(599); /* the server is up, endpoints and all */
	cr_assert_eq(prlimit(pid, RLIMIT_NOFILE, NULL, &old), 0);
	/* its lowest free descriptor: the new limit leaves no room for another */
	char dir[64];
	static char open_fd[65536];
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(dir);
	cr_assert_not_null(d);
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_name[0] != '.' && atol(e->d_name) < (long)sizeof(open_fd))
			open_fd[atol(e->d_name)] = 1;
	closedir(d);
	long lowest = 0;
	while (open_fd[lowest])
		lowest++;
	low = (struct rlimit){.rlim_cur = (rlim_t)lowest, .rlim_max = old.rlim_max};
	nofile_pid = pid;
	nofile_old = old;
	cr_assert_eq(prlimit(pid, RLIMIT_NOFILE, &low, NULL), 0, "prlimit: %s", strerror(errno));
	/* from 127.0.0.4..: 8 per address, within the per-address limit */
	int fds[100];
	for (int i = 0; i < 100; i++) {
		char src[16];
		snprintf(src, sizeof(src), "127.0.0.%d", 4 + i / 8);
		fds[i] = connect_from(src);
	}
	usleep(100000);
	long long c0 = cpu_ticks(pid);
	usleep(500000);
	long long used = cpu_ticks(pid) - c0;
	long hz = sysconf(_SC_CLK_TCK);
	cr_assert_lt(used, hz / 10,
		     "the server used %lld ticks (of %ld a second) in half a second out of "
		     "descriptors",
		     used, hz);
	int lines = log_lines("cannot accept connections");
	cr_assert(lines >= 1 && lines <= 12, "%d log lines about accept", lines);
	cr_assert_eq(prlimit(pid, RLIMIT_NOFILE, &old, NULL), 0);
	nofile_pid = 0;
	for (int i = 0; i < 100; i++)
		close(fds[i]);
	kvfs_t *k2;
	cr_assert_eq(kvfs_open(cl.conf, &k2), 0);
	cr_assert_eq(kvfs_put(k2, "n", "new", 3, NULL), 0, "served again with descriptors back");
	kvfs_close(k2);
	good_client_still_served(600);
}
