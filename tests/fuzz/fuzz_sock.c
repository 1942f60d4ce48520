/*
 * fuzz_sock: libFuzzer target of the bootstrap frame reader (sock.c),
 * fed through a socketpair: the input is written to one end, which is then
 * shut, and the other end is read the way one side of a handshake reads it.
 * The first byte says which side:
 *   even: kvfs-server (server.c, direct.c): HELLO and AUTH of at most
 *     WIRE_FRAME_PRE bytes, then direct REQ frames (each decoded by
 *     wire_req_decode) until a SETUP, another frame or the end;
 *   odd: libkvfs (conn.c, direct.c): CHALLENGE and WELCOME of at most
 *     WIRE_FRAME_MAX bytes, then READY when bit 1 is clear, else direct REP
 *     and ERROR frames (wire_rep_decode) until the end.
 * Direct frames are read into a buffer of exactly msg_size bytes, as both
 * sides allocate it. The rest of the input is the byte stream
 * (corpus/sock, fuzz_seeds.c). Nothing is timed: the shut end makes a
 * short stream -ECONNRESET at once.
 */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/sock.h"
#include "fuzz.h"

#define TMO 1000

static int recv_ok(int ret)
{
	/* A reader's failures: its own -EPROTO, the shut end, or an ERROR frame's errno. */
	FUZZ_CHECK(ret <= 0 && ret > -4096);
	return ret == 0;
}

static void server_side(int fd)
{
	struct wire_hello hello;
	uint8_t mac[WIRE_MAC];
	if (!recv_ok(sock_recv_frame(fd, WF_HELLO, &hello, WIRE_FRAME_PRE, TMO, NULL, 0)))
		return;
	if (!recv_ok(sock_recv_frame(fd, WF_AUTH, mac, WIRE_FRAME_PRE, TMO, NULL, 0)))
		return;
	size_t msg = fuzz_limits.msg_size;
	uint8_t *rx = malloc(msg);
	FUZZ_CHECK(rx);
	for (;;) {
		uint16_t type;
		uint32_t len = UINT32_MAX;
		if (!recv_ok(sock_recv_body(fd, &type, rx, (uint32_t)msg, &len, TMO)))
			break;
		FUZZ_CHECK(len <= msg);
		const char *why;
		if (type == WF_SETUP) {
			struct wire_setup setup;
			if (len <= WIRE_FRAME_MAX &&
			    wire_frame_decode(WF_SETUP, rx, len, &setup, &why) == 0)
				FUZZ_CHECK(setup.addr_len <= WIRE_ADDR_MAX);
			break;
		}
		if (type != WF_REQ)
			break;
		struct wire_req q;
		if (wire_req_decode(rx, len, &fuzz_limits, &q, &why))
			break;
	}
	free(rx);
}

static void client_side(int fd, int direct)
{
	char err[256];
	struct wire_challenge ch;
	struct wire_welcome w;
	err[0] = 0;
	if (!recv_ok(sock_recv_frame(fd, WF_CHALLENGE, &ch, WIRE_FRAME_MAX, TMO, err, sizeof(err))))
		return;
	FUZZ_CHECK(memchr(err, 0, sizeof(err)));
	if (!recv_ok(sock_recv_frame(fd, WF_WELCOME, &w, WIRE_FRAME_MAX, TMO, err, sizeof(err))))
		return;
	FUZZ_CHECK(w.n_provs >= 0 && w.n_provs <= WIRE_MAX_PROVS);
	if (!direct) {
		struct wire_ready rd;
		if (recv_ok(
			sock_recv_frame(fd, WF_READY, &rd, WIRE_FRAME_MAX, TMO, err, sizeof(err))))
			FUZZ_CHECK(rd.addr_len <= WIRE_ADDR_MAX);
		return;
	}
	size_t msg = fuzz_limits.msg_size;
	uint8_t *body = malloc(msg);
	FUZZ_CHECK(body);
	for (;;) {
		uint16_t type;
		uint32_t len = UINT32_MAX;
		if (!recv_ok(sock_recv_body(fd, &type, body, (uint32_t)msg, &len, TMO)))
			break;
		FUZZ_CHECK(len <= msg);
		const char *why;
		if (type == WF_ERROR) {
			struct wire_error e;
			if (wire_frame_decode(WF_ERROR, body, len, &e, &why) == 0)
				FUZZ_CHECK(memchr(e.text, 0, sizeof(e.text)));
			break;
		}
		struct wire_rep rep;
		if (type != WF_REP || wire_rep_decode(body, len, &rep, &why))
			break;
	}
	free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	if (size < 1)
		return 0;
	FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	/* The whole stream fits the socket's buffer (-max_len in meson.build). */
	size_t off = 1;
	while (off < size) {
		ssize_t n = write(sv[1], data + off, size - off);
		FUZZ_CHECK(n > 0);
		off += (size_t)n;
	}
	close(sv[1]);
	if (data[0] & 1)
		client_side(sv[0], data[0] & 2);
	else
		server_side(sv[0]);
	close(sv[0]);
	return 0;
}
