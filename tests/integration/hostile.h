/*
 * hostile: what test_hostile.c, test_hostile_peers.c and test_hostile_load.c
 * (one binary, itest_hostile) share: the cluster of one server and a well-behaved client
 * on it, and checks both use.
 */
#ifndef KVFS_TEST_HOSTILE_H
#define KVFS_TEST_HOSTILE_H

#include "common/wire.h"
#include "fabric/fabric.h"
#include "harness.h"

extern struct h_cluster cl;
extern kvfs_t *kv;

/* Fixtures: one server, no secret, and kv on it. */
void start(void);
void stop(void);
/* kv can put and get (round names the key), and the server is alive. */
void good_client_still_served(int round);
/* The server closes fd within ms milliseconds (nothing more than an error frame comes). */
void expect_closed(int fd, int ms);

/* A client speaking the protocol by hand: its bootstrap socket, session and endpoint. */
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
/*
 * Handshake and SETUP on server 0 (cr_assert on failure); one receive posted.
 * SETUP goes raw_setup_delay_ms (default 0) after the endpoint is set up.
 */
extern int raw_setup_delay_ms;
void raw_connect(struct raw *r);
/* Close what raw_connect opened (r->fd < 0: the socket is closed already). */
void raw_close(struct raw *r);

#endif
