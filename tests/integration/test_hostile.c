/*
 * Integration: a hostile client. It speaks the protocol by hand (sock, wire
 * and fabric modules, no libkvfs) and sends malformed messages, oversized
 * lengths and out-of-range buffer descriptors, while a well-behaved libkvfs
 * client keeps being served. The server must answer errors and stay up.
 * And hostile servers (a thread of the test on a port of its own): a
 * libkvfs client with a secret must refuse them, and never map what they
 * name as the pool unless it is one.
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/sock.h"
#include "common/wire.h"
#include "fabric/fabric.h"
#include "harness.h"

static struct h_cluster cl;
static kvfs_t *kv;

struct raw {
	int fd;
	struct fab_ep *ep;
	fab_addr_t srv;
	struct wire_ready rd;
	struct wire_welcome w;
	uint8_t *region, *msgs;
	size_t region_len, msg_size;
	struct fab_mr *mr_w, *mr_r, *mr_msg;
	struct fab_ctx rx_ctx, tx_ctx;
};

static void start(void)
{
	h_start(&cl, NULL);
	kv = h_client(&cl);
}

static void stop(void)
{
	kvfs_close(kv);
	h_stop(&cl);
}

static void raw_connect(struct raw *r)
{
	char port[8];
	snprintf(port, sizeof(port), "%d", cl.ports[0]);
	r->fd = sock_connect("127.0.0.1", port, 2000);
	cr_assert_geq(r->fd, 0);
	struct wire_hello h = {.proto = WIRE_PROTO};
	struct wire_challenge ch;
	uint8_t mac[WIRE_MAC] = {0};
	cr_assert_eq(sock_send_frame(r->fd, WF_HELLO, &h, 2000), 0);
	cr_assert_eq(sock_recv_frame(r->fd, WF_CHALLENGE, &ch, WIRE_FRAME_MAX, 2000, NULL, 0), 0);
	cr_assert_eq(sock_send_frame(r->fd, WF_AUTH, mac, 2000), 0);
	cr_assert_eq(sock_recv_frame(r->fd, WF_WELCOME, &r->w, WIRE_FRAME_MAX, 2000, NULL, 0), 0);
	struct fab_open_args a = {.provider = h_provider(),
				  .node = strcmp(h_provider(), "shm") ? "127.0.0.1" : NULL};
	cr_assert_eq(fab_open(&r->ep, &a), 0);
	r->region_len = 1 << 20;
	r->region = aligned_alloc(4096, 2 * r->region_len);
	r->msg_size = r->w.limits.msg_size;
	r->msgs = aligned_alloc(4096, 2 * r->msg_size);
	cr_assert_eq(fab_mr_reg(r->ep, r->region, r->region_len, FAB_ACC_REMOTE_WRITE, &r->mr_w),
		     0);
	cr_assert_eq(fab_mr_reg(r->ep, r->region + r->region_len, r->region_len,
				FAB_ACC_REMOTE_READ, &r->mr_r),
		     0);
	cr_assert_eq(
	    fab_mr_reg(r->ep, r->msgs, 2 * r->msg_size, FAB_ACC_SEND | FAB_ACC_RECV, &r->mr_msg),
	    0);
	struct wire_setup s = {0};
	snprintf(s.provider, sizeof(s.provider), "%s", h_provider());
	size_t alen = sizeof(s.addr);
	cr_assert_eq(fab_getname(r->ep, s.addr, &alen), 0);
	s.addr_len = (uint16_t)alen;
	s.recv =
	    (struct wire_region){fab_mr_remote_base(r->mr_w), r->region_len, fab_mr_key(r->mr_w)};
	s.staging =
	    (struct wire_region){fab_mr_remote_base(r->mr_r), r->region_len, fab_mr_key(r->mr_r)};
	cr_assert_eq(sock_send_frame(r->fd, WF_SETUP, &s, 2000), 0);
	cr_assert_eq(sock_recv_frame(r->fd, WF_READY, &r->rd, WIRE_FRAME_MAX, 2000, NULL, 0), 0);
	cr_assert_eq(fab_av_insert(r->ep, r->rd.addr, r->rd.addr_len, &r->srv), 0);
	cr_assert_eq(fab_post_recv(r->ep, r->msgs, r->msg_size, fab_mr_desc(r->mr_msg), &r->rx_ctx),
		     0);
}

static void raw_close(struct raw *r)
{
	fab_mr_close(r->mr_w);
	fab_mr_close(r->mr_r);
	fab_mr_close(r->mr_msg);
	fab_close(r->ep);
	close(r->fd);
	free(r->region);
	free(r->msgs);
}

/*
 * Send len bytes of msg; wait up to 2 s for a reply. Returns the reply status,
 * or 1 when no reply came (the server dropped the message). out (may be NULL)
 * gets the reply (its data pointer is not valid).
 */
static int raw_send_rep(struct raw *r, const void *msg, size_t len, struct wire_rep *out)
{
	uint8_t *tx = r->msgs + r->msg_size;
	cr_assert_leq(len, r->msg_size);
	memcpy(tx, msg, len);
	int ret;
	while ((ret = fab_post_send(r->ep, tx, len, fab_mr_desc(r->mr_msg), r->srv, &r->tx_ctx)) ==
	       -EAGAIN) {
		struct fab_cqe e[4];
		fab_poll(r->ep, e, 4, 0);
	}
	cr_assert_eq(ret, 0);
	int64_t deadline = h_now_ms() + 2000;
	int sent = 0, got = 0, status = 1;
	while (h_now_ms() < deadline && !(sent && got)) {
		struct fab_cqe e[4];
		int n = fab_poll(r->ep, e, 4, 0);
		for (int i = 0; i < n; i++) {
			if (e[i].ctx == &r->tx_ctx) {
				sent = 1;
			} else if (e[i].ctx == &r->rx_ctx) {
				struct wire_rep rep;
				const char *why;
				cr_assert_eq(wire_rep_decode(r->msgs, e[i].len, &rep, &why), 0,
					     "server sent a malformed reply: %s", why);
				status = rep.status;
				got = 1;
				/* data stays in r->msgs until the next reply: nothing comes unasked
				 */
				if (out)
					*out = rep;
				cr_assert_eq(fab_post_recv(r->ep, r->msgs, r->msg_size,
							   fab_mr_desc(r->mr_msg), &r->rx_ctx),
					     0);
			}
		}
		if (sent && !got && h_now_ms() > deadline - 1000)
			break; /* dropped messages get no reply: one second is enough */
	}
	return status;
}

static int raw_send(struct raw *r, const void *msg, size_t len)
{
	return raw_send_rep(r, msg, len, NULL);
}

static int raw_req_rep(struct raw *r, struct wire_req *q, struct wire_rep *out)
{
	uint8_t *buf = malloc(r->msg_size * 2);
	q->session = r->rd.session;
	q->token = r->rd.token;
	q->req_id = 1;
	int n = wire_req_encode(buf, r->msg_size * 2, q);
	cr_assert_gt(n, 0);
	int st = raw_send_rep(r, buf, (size_t)(n > (int)r->msg_size ? (int)r->msg_size : n), out);
	free(buf);
	return st;
}

static int raw_req(struct raw *r, struct wire_req *q)
{
	return raw_req_rep(r, q, NULL);
}

/* Wait for the server's answer on a refused bootstrap: an error frame, EOF or a reset. */
static void expect_refusal(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	cr_assert_eq(poll(&p, 1, 5000), 1, "the server neither answered nor closed");
	char b[64];
	ssize_t n = recv(fd, b, sizeof(b), 0);
	cr_assert(n >= 0 || errno == ECONNRESET, "recv: %s", strerror(errno));
}

static void good_client_still_served(int round)
{
	char key[32], val[32], back[32];
	snprintf(key, sizeof(key), "good/%d", round);
	snprintf(val, sizeof(val), "value-%d", round);
	cr_assert_eq(kvfs_put(kv, key, val, strlen(val), NULL), 0, "round %d", round);
	cr_assert_eq(kvfs_get(kv, key, back, sizeof(back), 0, NULL), (ssize_t)strlen(val));
	cr_assert_eq(memcmp(back, val, strlen(val)), 0);
	cr_assert(h_alive(&cl, 0), "server died at round %d", round);
}

Test(hostile, bootstrap_garbage, .init = start, .fini = stop, .timeout = 60)
{
	char port[8];
	snprintf(port, sizeof(port), "%d", cl.ports[0]);
	/* Random bytes instead of a hello. */
	int fd = sock_connect("127.0.0.1", port, 2000);
	uint8_t junk[256];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	cr_assert_eq(send(fd, junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));
	expect_refusal(fd);
	close(fd);
	good_client_still_served(0);
	/* A frame header announcing 1 GiB before authentication. */
	fd = sock_connect("127.0.0.1", port, 2000);
	uint8_t hdr[WIRE_FRAME_HDR];
	uint32_t magic = WIRE_MAGIC, len = 1u << 30;
	uint16_t proto = WIRE_PROTO, type = WF_HELLO;
	memcpy(hdr, &magic, 4);
	memcpy(hdr + 4, &proto, 2);
	memcpy(hdr + 6, &type, 2);
	memcpy(hdr + 8, &len, 4);
	cr_assert_eq(send(fd, hdr, sizeof(hdr), MSG_NOSIGNAL), (ssize_t)sizeof(hdr));
	expect_refusal(fd);
	close(fd);
	/* Wrong protocol version. */
	fd = sock_connect("127.0.0.1", port, 2000);
	struct wire_hello h = {.proto = 99};
	cr_assert_eq(sock_send_frame(fd, WF_HELLO, &h, 2000), 0);
	struct wire_challenge ch;
	char text[200] = "";
	cr_assert_eq(
	    sock_recv_frame(fd, WF_CHALLENGE, &ch, WIRE_FRAME_MAX, 2000, text, sizeof(text)),
	    -EPROTONOSUPPORT);
	cr_assert(strstr(text, "version"), "error text: %s", text);
	close(fd);
	/* Connect and say nothing: the handshake times out, others are served meanwhile. */
	fd = sock_connect("127.0.0.1", port, 2000);
	good_client_still_served(1);
	close(fd);
	good_client_still_served(2);
}

/*
 * SETUP whose address is shorter than the provider's format, or of no
 * address family: the server pads it with zeros (it read uninitialised
 * stack there before) and checks it (on tcp, one such address in the AV
 * made every later client's insert fail); it refuses it or adds a peer
 * nobody answers, and keeps serving everyone else.
 */
Test(hostile, setup_with_short_address, .init = start, .fini = stop, .timeout = 60)
{
	char port[8];
	snprintf(port, sizeof(port), "%d", cl.ports[0]);
	const uint16_t lens[] = {1, 2, 3, 16, 28}; /* 16, 28: a socket address of no family */
	for (int round = 0; round < 5; round++) {
		uint16_t alen = lens[round];
		int fd = sock_connect("127.0.0.1", port, 2000);
		cr_assert_geq(fd, 0);
		struct wire_hello h = {.proto = WIRE_PROTO};
		struct wire_challenge ch;
		struct wire_welcome w;
		uint8_t mac[WIRE_MAC] = {0};
		cr_assert_eq(sock_send_frame(fd, WF_HELLO, &h, 2000), 0);
		cr_assert_eq(sock_recv_frame(fd, WF_CHALLENGE, &ch, WIRE_FRAME_MAX, 2000, NULL, 0),
			     0);
		cr_assert_eq(sock_send_frame(fd, WF_AUTH, mac, 2000), 0);
		cr_assert_eq(sock_recv_frame(fd, WF_WELCOME, &w, WIRE_FRAME_MAX, 2000, NULL, 0), 0);
		struct wire_setup s = {
		    .addr_len = alen, .recv = {4096, 4096, 1}, .staging = {8192, 4096, 2}};
		memset(s.addr, 'x', alen);
		snprintf(s.provider, sizeof(s.provider), "%s", h_provider());
		cr_assert_eq(sock_send_frame(fd, WF_SETUP, &s, 2000), 0);
		struct wire_ready rd;
		char text[200] = "";
		int ret =
		    sock_recv_frame(fd, WF_READY, &rd, WIRE_FRAME_MAX, 5000, text, sizeof(text));
		cr_assert(ret == 0 || ret == -EINVAL, "address of %u bytes: %s (%s)", alen,
			  strerror(-ret), text);
		close(fd);
		good_client_still_served(round);
	}
}

/* A raw bootstrap connection past WELCOME (no secret here), or -1. */
static int raw_welcomed(void)
{
	char port[8];
	snprintf(port, sizeof(port), "%d", cl.ports[0]);
	int fd = sock_connect("127.0.0.1", port, 2000);
	struct wire_hello h = {.proto = WIRE_PROTO};
	struct wire_challenge ch;
	struct wire_welcome w;
	uint8_t mac[WIRE_MAC] = {0};
	if (fd < 0 || sock_send_frame(fd, WF_HELLO, &h, 2000) ||
	    sock_recv_frame(fd, WF_CHALLENGE, &ch, WIRE_FRAME_MAX, 2000, NULL, 0) ||
	    sock_send_frame(fd, WF_AUTH, mac, 2000) ||
	    sock_recv_frame(fd, WF_WELCOME, &w, WIRE_FRAME_MAX, 2000, NULL, 0)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/*
 * Connections past WELCOME that sit there (lazy clients keep theirs for up
 * to a minute) do not use up the 64 handshake slots: a new client still
 * gets in with 80 of them open.
 */
Test(hostile, idle_direct_connections_leave_handshakes_free, .init = start, .fini = stop,
     .timeout = 60)
{
	int fds[80];
	for (int i = 0; i < 80; i++) {
		fds[i] = raw_welcomed();
		cr_assert_geq(fds[i], 0, "connection %d got no welcome", i);
	}
	kvfs_t *k2;
	char back[8];
	cr_assert_eq(kvfs_open(cl.conf, &k2), 0);
	cr_assert_eq(kvfs_put(k2, "n", "new", 3, NULL), 0, "a new client with 80 held open");
	cr_assert_eq(kvfs_get(k2, "n", back, sizeof(back), 0, NULL), 3);
	kvfs_close(k2);
	for (int i = 0; i < 80; i++)
		close(fds[i]);
	good_client_still_served(0);
}

Test(hostile, malformed_requests, .init = start, .fini = stop, .timeout = 120)
{
	struct raw r;
	raw_connect(&r);
	struct wire_req q;
	int round = 10;

	/* A proper request works: the raw client is right. */
	memset(&q, 0, sizeof(q));
	q.op = OP_PING;
	cr_assert_eq(raw_req(&r, &q), 0);

	/* Garbage and truncated messages: dropped (no session to answer) or refused. */
	uint8_t junk[512];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 91 + 3);
	cr_assert_eq(raw_send(&r, junk, sizeof(junk)), 1);
	cr_assert_eq(raw_send(&r, junk, 3), 1);
	good_client_still_served(round++);

	/* Lengths that lie: klen beyond the message. */
	uint8_t msg[1024];
	memset(&q, 0, sizeof(q));
	q.op = OP_GET;
	q.key = (const uint8_t *)"abc";
	q.klen = 3;
	q.session = r.rd.session;
	q.token = r.rd.token;
	int n = wire_req_encode(msg, sizeof(msg), &q);
	msg[2] = 0xff; /* klen = 65535 */
	msg[3] = 0xff;
	cr_assert_eq(raw_send(&r, msg, (size_t)n), -ENAMETOOLONG);
	msg[2] = 200; /* klen 200 in a message that has 3 */
	msg[3] = 0;
	cr_assert_eq(raw_send(&r, msg, (size_t)n), -EPROTO);
	good_client_still_served(round++);

	/* Wrong token: the message is not from that session; dropped. */
	memset(&q, 0, sizeof(q));
	q.op = OP_PING;
	q.session = r.rd.session;
	q.token = r.rd.token ^ 1;
	q.req_id = 2;
	n = wire_req_encode(msg, sizeof(msg), &q);
	cr_assert_eq(raw_send(&r, msg, (size_t)n), 1);

	/* Put something to read. */
	memset(&q, 0, sizeof(q));
	q.op = OP_PUT;
	q.key = (const uint8_t *)"victim";
	q.klen = 6;
	uint8_t data[3000];
	memset(data, 'v', sizeof(data));
	q.data = data;
	q.dlen = sizeof(data);
	q.len = sizeof(data);
	cr_assert_eq(raw_req(&r, &q), 0);

	/* Out-of-range descriptors: past the end, huge offsets, wrapping, unknown region. */
	struct wire_desc bad[] = {
	    {REGION_RECV, r.region_len - 100, 3000},
	    {REGION_RECV, ~0ull - 10, 3000},
	    {REGION_RECV, 0, ~0ull},
	    {REGION_RECV, r.region_len + 1, 1},
	    {7, 0, 3000},
	    {REGION_MAX + 5, 0, 3000},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&q, 0, sizeof(q));
		q.op = OP_GET;
		q.key = (const uint8_t *)"victim";
		q.klen = 6;
		q.len = 3000;
		q.buf = bad[i];
		int st = raw_req(&r, &q);
		cr_assert(st == -EFAULT || st == -EINVAL, "descriptor %zu: status %d", i, st);
		good_client_still_served(round++);
	}
	/* A GET may not target the read-only staging region, a PUT may not read the receive one. */
	memset(&q, 0, sizeof(q));
	q.op = OP_GET;
	q.key = (const uint8_t *)"victim";
	q.klen = 6;
	q.len = 3000;
	q.buf = (struct wire_desc){REGION_STAGING, 0, 3000};
	cr_assert_eq(raw_req(&r, &q), -EACCES);
	memset(&q, 0, sizeof(q));
	q.op = OP_PUT;
	q.key = (const uint8_t *)"victim";
	q.klen = 6;
	q.len = 100000;
	q.buf = (struct wire_desc){REGION_RECV, 0, 100000};
	cr_assert_eq(raw_req(&r, &q), -EACCES);
	/* PUT whose descriptor is shorter than the value. */
	q.buf = (struct wire_desc){REGION_STAGING, 0, 100};
	cr_assert_eq(raw_req(&r, &q), -EFAULT);
	/* PUT larger than max_value. */
	q.len = r.w.limits.max_value + 1;
	q.buf = (struct wire_desc){REGION_STAGING, 0, 100};
	cr_assert_eq(raw_req(&r, &q), -EFBIG);
	/* Inline data that disagrees with the size. */
	memset(&q, 0, sizeof(q));
	q.op = OP_PUT;
	q.key = (const uint8_t *)"victim";
	q.klen = 6;
	q.len = 10;
	q.data = data;
	q.dlen = 5;
	cr_assert_eq(raw_req(&r, &q), -EINVAL);
	/* Upload ops on handles never opened. */
	memset(&q, 0, sizeof(q));
	q.op = OP_UP_WRITE;
	q.handle = 12345;
	q.len = 1;
	q.data = data;
	q.dlen = 1;
	cr_assert_eq(raw_req(&r, &q), -EBADF);
	q.op = OP_UP_COMMIT;
	cr_assert_eq(raw_req(&r, &q), -EBADF);
	memset(&q, 0, sizeof(q));
	q.op = OP_UP_READ;
	q.handle = 12345;
	q.len = 10;
	cr_assert_eq(raw_req(&r, &q), -EBADF);

	/* Reading back a real upload (the session's first handle is 1) through bad descriptors. */
	memset(&q, 0, sizeof(q));
	q.op = OP_UP_OPEN;
	q.flags = RQ_KEEP;
	q.key = (const uint8_t *)"victim";
	q.klen = 6;
	cr_assert_eq(raw_req(&r, &q), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&q, 0, sizeof(q));
		q.op = OP_UP_READ;
		q.handle = 1;
		q.len = 3000;
		q.buf = bad[i];
		int st = raw_req(&r, &q);
		cr_assert(st == -EFAULT || st == -EINVAL, "up_read descriptor %zu: status %d", i,
			  st);
		good_client_still_served(round++);
	}
	memset(&q, 0, sizeof(q));
	q.op = OP_UP_READ;
	q.handle = 1;
	q.len = 3000;
	q.buf = (struct wire_desc){REGION_STAGING, 0, 3000};
	cr_assert_eq(raw_req(&r, &q), -EACCES, "up_read into the read-only staging region");
	/* Descriptor shorter than what the read moves. */
	q.buf = (struct wire_desc){REGION_RECV, 0, 100};
	cr_assert_eq(raw_req(&r, &q), -EFAULT);
	/* A good read still works (the upload is not left busy), then the upload goes. */
	q.buf = (struct wire_desc){REGION_RECV, 0, 3000};
	cr_assert_eq(raw_req(&r, &q), 0);
	cr_assert_eq(memcmp(r.region, data, 3000), 0, "read-back landed wrong");
	q.buf = (struct wire_desc){REGION_INLINE, 0, 0};
	q.off = 1u << 30; /* far past the end: nothing */
	cr_assert_eq(raw_req(&r, &q), 0);
	memset(&q, 0, sizeof(q));
	q.op = OP_UP_ABORT;
	q.handle = 1;
	cr_assert_eq(raw_req(&r, &q), 0);
	q.op = OP_UP_READ;
	q.len = 10;
	cr_assert_eq(raw_req(&r, &q), -EBADF, "read of an aborted upload");
	/* Empty keys. */
	memset(&q, 0, sizeof(q));
	q.op = OP_DELETE;
	cr_assert_eq(raw_req(&r, &q), -EINVAL);
	/* Registering a region without access. */
	memset(&q, 0, sizeof(q));
	q.op = OP_REG;
	q.buf = (struct wire_desc){0, 4096, 0};
	cr_assert_eq(raw_req(&r, &q), -EINVAL);

	/* The victim value is untouched, and the server is still up. */
	char back[3000];
	cr_assert_eq(kvfs_get(kv, "victim", back, sizeof(back), 0, NULL), 3000);
	cr_assert_eq(memcmp(back, data, 3000), 0);
	good_client_still_served(round++);
	raw_close(&r);
	good_client_still_served(round++);
}

/* Pinned reads through bad handles and descriptors: errors, and the server keeps serving. */
Test(hostile, pins, .init = start, .fini = stop, .timeout = 120)
{
	struct raw r;
	struct wire_req q;
	struct wire_rep rep;
	int round = 100;
	uint8_t data[3000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 1);
	cr_assert_eq(kvfs_put(kv, "victim", data, sizeof(data), NULL), 0);
	raw_connect(&r);

	/* Handles never given out. */
	uint64_t never[] = {0, 1, 12345, 1ull << 16, ~0ull};
	for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
		memset(&q, 0, sizeof(q));
		q.op = OP_PIN_GET;
		q.handle = never[i];
		q.len = 100;
		cr_assert_eq(raw_req(&r, &q), -EBADF, "pin_get of handle %llx",
			     (unsigned long long)never[i]);
		q.buf = (struct wire_desc){REGION_RECV, 0, 100};
		cr_assert_eq(raw_req(&r, &q), -EBADF);
		q.op = OP_UNPIN;
		cr_assert_eq(raw_req(&r, &q), -EBADF, "unpin of handle %llx",
			     (unsigned long long)never[i]);
	}
	/* PIN needs a key that exists. */
	memset(&q, 0, sizeof(q));
	q.op = OP_PIN;
	cr_assert_eq(raw_req(&r, &q), -EINVAL, "pin of the empty key");
	q.key = (const uint8_t *)"absent";
	q.klen = 6;
	cr_assert_eq(raw_req(&r, &q), -ENOENT);
	q.key = (const uint8_t *)"victim";
	cr_assert_eq(raw_req_rep(&r, &q, &rep), 0);
	cr_assert_eq(rep.attr.size, sizeof(data));
	uint64_t h = rep.handle;
	cr_assert_neq(h, 0);
	good_client_still_served(round++);

	/* Out-of-range descriptors. */
	struct wire_desc bad[] = {
	    {REGION_RECV, r.region_len - 100, 3000},
	    {REGION_RECV, ~0ull - 10, 3000},
	    {REGION_RECV, 0, ~0ull},
	    {REGION_RECV, r.region_len + 1, 1},
	    {7, 0, 3000},
	    {REGION_MAX + 5, 0, 3000},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&q, 0, sizeof(q));
		q.op = OP_PIN_GET;
		q.handle = h;
		q.len = 3000;
		q.buf = bad[i];
		int st = raw_req(&r, &q);
		cr_assert(st == -EFAULT || st == -EINVAL, "pin_get descriptor %zu: status %d", i,
			  st);
		good_client_still_served(round++);
	}
	memset(&q, 0, sizeof(q));
	q.op = OP_PIN_GET;
	q.handle = h;
	q.len = 3000;
	q.buf = (struct wire_desc){REGION_STAGING, 0, 3000};
	cr_assert_eq(raw_req(&r, &q), -EACCES, "pin_get into the read-only staging region");
	q.buf = (struct wire_desc){REGION_RECV, 0, 100};
	cr_assert_eq(raw_req(&r, &q), -EFAULT, "descriptor shorter than the read");

	/* Reads of the pinned (since replaced) value: RMA, inline, clamped, past the end. */
	cr_assert_eq(kvfs_put(kv, "victim", "new", 3, NULL), 0);
	memset(r.region, 0, 3000);
	q.buf = (struct wire_desc){REGION_RECV, 0, 3000};
	cr_assert_eq(raw_req_rep(&r, &q, &rep), 0);
	cr_assert_eq(rep.n, 3000);
	cr_assert_eq(memcmp(r.region, data, 3000), 0, "pinned read landed wrong");
	q.len = ~0ull;
	cr_assert_eq(raw_req_rep(&r, &q, &rep), 0);
	cr_assert_eq(rep.n, 3000);
	q.buf = (struct wire_desc){REGION_INLINE, 0, 0};
	q.off = 2990;
	cr_assert_eq(raw_req_rep(&r, &q, &rep), 0);
	cr_assert_eq(rep.n, 10);
	cr_assert_eq(rep.dlen, 10);
	q.off = 3000;
	cr_assert_eq(raw_req_rep(&r, &q, &rep), 0);
	cr_assert_eq(rep.n, 0);
	q.off = ~0ull;
	cr_assert_eq(raw_req_rep(&r, &q, &rep), 0);
	cr_assert_eq(rep.n, 0);
	/* Where the pinned bytes lie (RQ_MAP): in the pool, clamped, none past the end. */
	struct wire_seg seg[WIRE_MAP_SEGS];
	struct {
		uint64_t off, len, n;
	} maps[] = {{0, ~0ull, 3000}, {2990, 100, 10}, {3000, 5, 0}, {~0ull, ~0ull, 0}};
	q.flags = RQ_MAP;
	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		q.off = maps[i].off;
		q.len = maps[i].len;
		cr_assert_eq(raw_req_rep(&r, &q, &rep), 0);
		cr_assert_eq(rep.n, maps[i].n, "map %zu: %llu bytes", i, (unsigned long long)rep.n);
		cr_assert_eq(
		    wire_segs_decode(rep.data, rep.dlen, rep.n, r.rd.pool.len, seg, WIRE_MAP_SEGS),
		    maps[i].n ? 1 : 0, "map %zu: segments inside the pool", i);
	}
	q.flags = 0;
	/* The same slot index with another sequence is not this pin. */
	q.off = 0;
	q.handle = h + (1ull << 16);
	cr_assert_eq(raw_req(&r, &q), -EBADF);
	q.flags = RQ_MAP;
	cr_assert_eq(raw_req(&r, &q), -EBADF, "map of another pin");
	q.flags = 0;

	/* UNPIN twice: the second is refused, and the handle is dead. */
	memset(&q, 0, sizeof(q));
	q.op = OP_UNPIN;
	q.handle = h;
	cr_assert_eq(raw_req(&r, &q), 0);
	cr_assert_eq(raw_req(&r, &q), -EBADF, "second unpin");
	q.op = OP_PIN_GET;
	q.len = 10;
	cr_assert_eq(raw_req(&r, &q), -EBADF, "read of an unpinned handle");
	good_client_still_served(round++);

	/* Pins held when the session ends are released with it. */
	memset(&q, 0, sizeof(q));
	q.op = OP_PIN;
	q.key = (const uint8_t *)"victim";
	q.klen = 6;
	for (int i = 0; i < 100; i++)
		cr_assert_eq(raw_req(&r, &q), 0);
	raw_close(&r);
	good_client_still_served(round++);
	cr_assert_eq(kvfs_delete(kv, "victim"), 0);
	good_client_still_served(round++);
}

/* ---- direct requests on the bootstrap channel (wire.h) ---------------------- */

/* A bootstrap connection authenticated up to WELCOME: direct requests may follow. */
static int raw_welcome(struct wire_welcome *w)
{
	char port[8];
	snprintf(port, sizeof(port), "%d", cl.ports[0]);
	int fd = sock_connect("127.0.0.1", port, 2000);
	cr_assert_geq(fd, 0);
	struct wire_hello h = {.proto = WIRE_PROTO};
	struct wire_challenge ch;
	uint8_t mac[WIRE_MAC] = {0};
	cr_assert_eq(sock_send_frame(fd, WF_HELLO, &h, 2000), 0);
	cr_assert_eq(sock_recv_frame(fd, WF_CHALLENGE, &ch, WIRE_FRAME_MAX, 2000, NULL, 0), 0);
	cr_assert_eq(sock_send_frame(fd, WF_AUTH, mac, 2000), 0);
	cr_assert_eq(sock_recv_frame(fd, WF_WELCOME, w, WIRE_FRAME_MAX, 2000, NULL, 0), 0);
	return fd;
}

/* Frame buffer for the direct tests: header + the largest body there is. */
static uint8_t dframe[WIRE_FRAME_HDR + (1 << 20) + 1];

/*
 * Read the answer to a direct request: 1 for a REP (decoded into *rep, data
 * in dframe), or the errno of an ERROR frame (its text in text).
 */
static int direct_answer(int fd, struct wire_rep *rep, char *text, size_t tlen)
{
	uint16_t type;
	uint32_t len;
	uint8_t *body = dframe + WIRE_FRAME_HDR;
	const char *why;
	int ret = sock_recv_body(fd, &type, body, 1 << 20, &len, 5000);
	cr_assert_eq(ret, 0, "no answer to a direct request: %s", strerror(-ret));
	if (type == WF_ERROR) {
		struct wire_error e;
		cr_assert_eq(wire_frame_decode(WF_ERROR, body, len, &e, &why), 0);
		snprintf(text, tlen, "%s", e.text);
		cr_assert_lt(e.err, 0);
		return e.err;
	}
	cr_assert_eq(type, WF_REP, "frame type %u in answer to a direct request", type);
	cr_assert_eq(wire_rep_decode(body, len, rep, &why), 0, "malformed direct reply: %s", why);
	return 1;
}

/* One direct request q: its REP status, or (refused) the error frame's errno - 1000. */
static int direct_req(int fd, struct wire_req *q, struct wire_rep *rep, char *text, size_t tlen)
{
	int n = wire_req_encode(dframe + WIRE_FRAME_HDR, 1 << 20, q);
	cr_assert_gt(n, 0);
	cr_assert_eq(sock_send_body(fd, WF_REQ, dframe, (uint32_t)n, 2000), 0);
	int ret = direct_answer(fd, rep, text, tlen);
	return ret == 1 ? rep->status : ret - 1000;
}

/* The server closes fd within ms milliseconds (nothing more than an error frame comes). */
static void expect_closed(int fd, int ms)
{
	int64_t deadline = h_now_ms() + ms;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int left = (int)(deadline - h_now_ms());
		cr_assert_gt(left, 0, "the server did not close the connection in %d ms", ms);
		cr_assert_eq(poll(&p, 1, left), 1, "the server did not close the connection");
		char b[256];
		ssize_t n = recv(fd, b, sizeof(b), 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return;
		cr_assert_gt(n, 0, "recv: %s", strerror(errno));
	}
}

/* Threads of the server process (handshake threads come and go). */
static int server_threads(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)cl.pids[0]);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	char line[256];
	int n = -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

static void wait_threads(int want, int ms, const char *what)
{
	int64_t deadline = h_now_ms() + ms;
	while (server_threads() != want && h_now_ms() < deadline)
		usleep(20000);
	cr_assert_eq(server_threads(), want, "%s: %d server threads, want %d", what,
		     server_threads(), want);
}

static struct wire_req dq(uint8_t op, const char *key)
{
	struct wire_req q = {.op = op};
	if (key) {
		q.key = (const uint8_t *)key;
		q.klen = (uint32_t)strlen(key);
	}
	return q;
}

Test(hostile, direct_requests, .init = start, .fini = stop, .timeout = 120)
{
	struct wire_welcome w;
	struct wire_rep rep;
	struct wire_req q;
	struct kvfs_stats st0, st1;
	char text[200] = "";
	uint8_t data[4096];
	memset(data, 'd', sizeof(data));
	cr_assert_eq(kvfs_server_stats(kv, 0, &st0), 0);

	/* Served: the ops of the table, inline. */
	int fd = raw_welcome(&w);
	q = dq(OP_PING, NULL);
	cr_assert_eq(direct_req(fd, &q, &rep, text, sizeof(text)), 0);
	q = dq(OP_PUT, "dk");
	q.data = data;
	q.dlen = q.len = sizeof(data);
	cr_assert_eq(direct_req(fd, &q, &rep, text, sizeof(text)), 0);
	cr_assert_eq(rep.attr.size, sizeof(data));
	/* GET with a huge range: at most the inline threshold, and the right bytes. */
	q = dq(OP_GET, "dk");
	q.len = ~0ull;
	cr_assert_eq(direct_req(fd, &q, &rep, text, sizeof(text)), 0);
	cr_assert_eq(rep.n, sizeof(data));
	cr_assert_eq(rep.dlen, sizeof(data));
	cr_assert_eq(memcmp(rep.data, data, sizeof(data)), 0);
	q.off = ~0ull - 5; /* far past the end */
	cr_assert_eq(direct_req(fd, &q, &rep, text, sizeof(text)), 0);
	cr_assert_eq(rep.n, 0);
	q = dq(OP_STAT, "dk");
	cr_assert_eq(direct_req(fd, &q, &rep, text, sizeof(text)), 0);
	cr_assert_eq(rep.attr.size, sizeof(data));
	q = dq(OP_RENAME, "dk");
	q.key2 = (const uint8_t *)"dk2";
	q.k2len = 3;
	cr_assert_eq(direct_req(fd, &q, &rep, text, sizeof(text)), 0);
	/* Refused by the handlers as on the fabric; the connection goes on. */
	q = dq(OP_PUT, "dk");
	q.len = 10; /* inline length that lies about the value size */
	q.data = data;
	q.dlen = 5;
	cr_assert_eq(direct_req(fd, &q, &rep, text, sizeof(text)), -EINVAL);
	q = dq(OP_DELETE, NULL);
	cr_assert_eq(direct_req(fd, &q, &rep, text, sizeof(text)), -EINVAL, "empty key");
	q = dq(OP_RENAME, "dk2");
	cr_assert_eq(direct_req(fd, &q, &rep, text, sizeof(text)), -EINVAL, "no target");
	q = dq(OP_GET, "absent");
	cr_assert_eq(direct_req(fd, &q, &rep, text, sizeof(text)), -ENOENT);
	q = dq(OP_DELETE, "dk2");
	cr_assert_eq(direct_req(fd, &q, &rep, text, sizeof(text)), 0);
	/* A buffer descriptor: refused with an error frame, and closed. */
	q = dq(OP_GET, "dk2");
	q.len = 100;
	q.buf = (struct wire_desc){REGION_RECV, 0, 100};
	cr_assert_eq(direct_req(fd, &q, &rep, text, sizeof(text)), -EOPNOTSUPP - 1000);
	cr_assert(strstr(text, "fabric session"), "error text: %s", text);
	expect_closed(fd, 2000);
	close(fd);
	good_client_still_served(200);
	/* The server counted them. */
	cr_assert_eq(kvfs_server_stats(kv, 0, &st1), 0);
	cr_assert_geq(st1.gets - st0.gets, 3);
	cr_assert_geq(st1.puts - st0.puts, 2);
	cr_assert_eq(st1.deletes - st0.deletes, 1,
		     "the delete with a key (not the refused empty one)");

	/* Ops that need a session: an error frame, then closed. */
	uint8_t ops[] = {OP_UP_OPEN, OP_PIN, OP_REG, OP_LIST, OP_STATS, OP_PIN_GET, OP_UP_WRITE};
	for (size_t i = 0; i < sizeof(ops); i++) {
		fd = raw_welcome(&w);
		q = dq(ops[i], "dk");
		cr_assert_eq(direct_req(fd, &q, &rep, text, sizeof(text)), -EOPNOTSUPP - 1000,
			     "op %u", ops[i]);
		expect_closed(fd, 2000);
		close(fd);
	}
	good_client_still_served(201);

	/* Malformed requests: a bad op, a data length that lies, truncated. */
	uint8_t *body = dframe + WIRE_FRAME_HDR;
	struct {
		const char *what;
		size_t at;
		uint8_t byte;
		int cut;
	} bad[] = {
	    {"op 99", 0, 99, 0},
	    {"op 0", 0, 0, 0},
	    {"dlen beyond the frame", 8, 100, 0},
	    {"klen beyond the frame", 2, 200, 0},
	    {"bad magic", 12, 0, 0},
	    {"truncated header", 0, OP_PUT, 100},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fd = raw_welcome(&w);
		q = dq(OP_PUT, "dk");
		q.data = data;
		q.dlen = q.len = 3;
		int n = wire_req_encode(body, 1 << 20, &q);
		body[bad[i].at] = bad[i].byte;
		if (bad[i].cut)
			n = bad[i].cut;
		cr_assert_eq(sock_send_body(fd, WF_REQ, dframe, (uint32_t)n, 2000), 0);
		cr_assert_eq(direct_answer(fd, &rep, text, sizeof(text)), -EPROTO, "%s",
			     bad[i].what);
		expect_closed(fd, 2000);
		close(fd);
	}
	good_client_still_served(202);

	/* Frames out of place: too long for the limits, an unknown type, a second hello. */
	fd = raw_welcome(&w);
	wire_frame_wrap(dframe, WF_REQ, (uint32_t)w.limits.msg_size + 1);
	cr_assert_eq(send(fd, dframe, WIRE_FRAME_HDR, MSG_NOSIGNAL), WIRE_FRAME_HDR);
	cr_assert_eq(direct_answer(fd, &rep, text, sizeof(text)), -EPROTO, "oversized frame");
	expect_closed(fd, 2000);
	close(fd);
	fd = raw_welcome(&w);
	cr_assert_eq(sock_send_body(fd, 77, dframe, 0, 2000), 0);
	cr_assert_eq(direct_answer(fd, &rep, text, sizeof(text)), -EPROTO, "frame type 77");
	expect_closed(fd, 2000);
	close(fd);
	fd = raw_welcome(&w);
	struct wire_hello h = {.proto = WIRE_PROTO};
	cr_assert_eq(sock_send_frame(fd, WF_HELLO, &h, 2000), 0);
	cr_assert_eq(direct_answer(fd, &rep, text, sizeof(text)), -EPROTO, "second hello");
	expect_closed(fd, 2000);
	close(fd);
	/* A setup frame longer than any setup. */
	fd = raw_welcome(&w);
	memset(body, 0, WIRE_FRAME_MAX + 1);
	cr_assert_eq(sock_send_body(fd, WF_SETUP, dframe, WIRE_FRAME_MAX + 1, 2000), 0);
	cr_assert_eq(direct_answer(fd, &rep, text, sizeof(text)), -EPROTO, "long setup");
	expect_closed(fd, 2000);
	close(fd);
	good_client_still_served(203);
}

Test(hostile, direct_out_of_turn_and_stalls, .init = start, .fini = stop, .timeout = 120)
{
	char port[8];
	struct wire_welcome w;
	struct wire_rep rep;
	char text[200];
	snprintf(port, sizeof(port), "%d", cl.ports[0]);
	struct wire_req q = dq(OP_PING, NULL);
	uint8_t *body = dframe + WIRE_FRAME_HDR;
	int n = wire_req_encode(body, 1 << 20, &q);

	/* A direct request before authentication: instead of the hello, or of the auth. */
	int fd = sock_connect("127.0.0.1", port, 2000);
	cr_assert_eq(sock_send_body(fd, WF_REQ, dframe, (uint32_t)n, 2000), 0);
	expect_refusal(fd);
	close(fd);
	fd = sock_connect("127.0.0.1", port, 2000);
	struct wire_hello h = {.proto = WIRE_PROTO};
	struct wire_challenge ch;
	cr_assert_eq(sock_send_frame(fd, WF_HELLO, &h, 2000), 0);
	cr_assert_eq(sock_recv_frame(fd, WF_CHALLENGE, &ch, WIRE_FRAME_MAX, 2000, NULL, 0), 0);
	cr_assert_eq(sock_send_body(fd, WF_REQ, dframe, (uint32_t)n, 2000), 0);
	expect_closed(fd, 5000);
	close(fd);
	good_client_still_served(300);

	/* A direct request after SETUP: the session is over. */
	struct raw r;
	raw_connect(&r);
	cr_assert_eq(raw_req(&r, &q), 0, "the session works");
	cr_assert_eq(sock_send_body(r.fd, WF_REQ, dframe, (uint32_t)n, 2000), 0);
	expect_closed(r.fd, 5000);
	q = dq(OP_PING, NULL);
	cr_assert_eq(raw_req(&r, &q), 1, "the dropped session's requests are not answered");
	raw_close(&r);
	good_client_still_served(301);

	/*
	 * A partial frame, then a stall: the connection's thread is freed by the
	 * handshake timeout (3 s) over the frame. Likewise a connection silent
	 * after the welcome, or between requests (WIRE_DIRECT_IDLE_MS).
	 */
	int base = server_threads();
	fd = raw_welcome(&w);
	wait_threads(base + 1, 2000, "one direct connection");
	q = dq(OP_GET, "stall");
	q.len = 10;
	n = wire_req_encode(body, 1 << 20, &q);
	wire_frame_wrap(dframe, WF_REQ, (uint32_t)n);
	cr_assert_eq(send(fd, dframe, WIRE_FRAME_HDR + 50, MSG_NOSIGNAL), WIRE_FRAME_HDR + 50);
	int64_t t0 = h_now_ms();
	good_client_still_served(302);
	expect_closed(fd, 6000);
	cr_assert_geq(h_now_ms() - t0, 2000, "closed before the handshake timeout");
	close(fd);
	wait_threads(base, 2000, "after a stalled frame");

	fd = raw_welcome(&w);
	q = dq(OP_PING, NULL);
	cr_assert_eq(direct_req(fd, &q, &rep, text, sizeof(text)), 0);
	t0 = h_now_ms();
	expect_closed(fd, WIRE_DIRECT_IDLE_MS + 3000);
	cr_assert_geq(h_now_ms() - t0, WIRE_DIRECT_IDLE_MS - 500, "closed before the idle limit");
	close(fd);
	wait_threads(base, 2000, "after an idle direct connection");
	good_client_still_served(303);
}

/* ---- hostile servers: a client with a secret trusts only a server that proves it ---- */

#define SECRET "a-shared-secret-for-the-hostile-servers"

enum fake_mode {
	FAKE_NOAUTH,	  /* CHALLENGE without auth_required */
	FAKE_BADMAC,	  /* auth_required, then a WELCOME whose MAC is made up */
	RELAY,		  /* relay to the real server, READY untouched */
	RELAY_POOL_NOMAC, /* ... READY's pool changed, its MAC left as it was */
	RELAY_POOL_FILE,  /* ... READY's pool changed to a plain file, MAC recomputed */
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
	if (f->mode == RELAY_POOL_FILE) {
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
	struct wire_challenge ch = {.auth_required = f->mode == FAKE_BADMAC};
	uint8_t mac[WIRE_MAC];
	wire_random(ch.nonce, sizeof(ch.nonce));
	if (sock_recv_frame(cfd, WF_HELLO, &h, WIRE_FRAME_MAX, 5000, NULL, 0) ||
	    sock_send_frame(cfd, WF_CHALLENGE, &ch, 2000))
		goto out;
	f->frames = 1;
	if (f->mode == FAKE_BADMAC) {
		struct wire_welcome w = {
		    .limits = {PROTO_MAX_KEY, 1 << 20, 4096, wire_msg_size(4096)}, .n_provs = 1};
		snprintf(w.provs[0], sizeof(w.provs[0]), "%s", h_provider());
		wire_random(w.mac, sizeof(w.mac));
		if (sock_recv_frame(cfd, WF_AUTH, mac, WIRE_FRAME_MAX, 5000, NULL, 0) ||
		    sock_send_frame(cfd, WF_WELCOME, &w, 2000))
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
 * that asks for no authentication, one whose WELCOME proves nothing, one
 * that relays to the real server but changes READY's pool, with and
 * without its MAC. The client refuses the first three with EACCES and
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

	/* The plain file a hostile READY names: the size of the pool, with a marker. */
	char path[320];
	snprintf(path, sizeof(path), "%s/not-a-pool", cl.dir);
	int file_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(file_fd, 0);
	cr_assert_eq(pwrite(file_fd, "MARKER", 6, 0), 6);

	cr_assert_eq(kvfs_put(kv, "v", "value", 5, NULL), 0);
	for (int mode = RELAY; mode <= RELAY_POOL_FILE; mode++) {
		f = (struct fake){.mode = (enum fake_mode)mode, .file_fd = file_fd};
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
		} else {
			cr_assert_eq(got, -EOPNOTSUPP, "a plain file was mapped as the pool (%zd)",
				     got);
			cr_assert_eq(kvfs_pin_get(p, back, sizeof(back), 0), 5, "reads by RMA");
			cr_assert_eq(memcmp(back, "value", 5), 0);
		}
		kvfs_pin_close(p);
		kvfs_close(k);
		fake_join(&f);
	}
	close(file_fd);
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
