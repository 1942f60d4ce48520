/*
 * Integration: a hostile client. It speaks the protocol by hand (sock, wire
 * and fabric modules, no libkvfs) and sends malformed messages, oversized
 * lengths and out-of-range buffer descriptors, while a well-behaved libkvfs
 * client keeps being served. The server must answer errors and stay up.
 * Hostile servers and the bootstrap limits: test_hostile_peers.c; clients
 * that stall and long upload work: test_hostile_load.c, in the same binary.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/sock.h"
#include "common/wire.h"
#include "fabric/fabric.h"
#include "harness.h"
#include "hostile.h"

struct h_cluster cl;
kvfs_t *kv;

void start(void)
{
	h_start(&cl, NULL);
	kv = h_client(&cl);
}

void stop(void)
{
	kvfs_close(kv);
	h_stop(&cl);
}

int raw_setup_delay_ms;

void raw_connect(struct raw *r)
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
	if (raw_setup_delay_ms)
		usleep((useconds_t)raw_setup_delay_ms * 1000);
	cr_assert_eq(sock_send_frame(r->fd, WF_SETUP, &s, 2000), 0);
	cr_assert_eq(sock_recv_frame(r->fd, WF_READY, &r->rd, WIRE_FRAME_MAX, 2000, NULL, 0), 0);
	cr_assert_eq(fab_av_insert(r->ep, r->rd.addr, r->rd.addr_len, &r->srv), 0);
	cr_assert_eq(fab_post_recv(r->ep, r->msgs, r->msg_size, fab_mr_desc(r->mr_msg), &r->rx_ctx),
		     0);
}

void raw_close(struct raw *r)
{
	fab_mr_close(r->mr_w);
	fab_mr_close(r->mr_r);
	fab_mr_close(r->mr_msg);
	fab_close(r->ep);
	if (r->fd >= 0)
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

void good_client_still_served(int round)
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
void expect_closed(int fd, int ms)
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
