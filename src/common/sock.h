/*
 * sock: the TCP side of kvfs (bootstrap and liveness): listening, connecting
 * with a deadline, and exchanging length-checked wire frames with a deadline.
 */
#ifndef KVFS_SOCK_H
#define KVFS_SOCK_H

#include <stddef.h>
#include <stdint.h>

/* Listen on host:port (SO_REUSEADDR, close-on-exec). Returns fd or -errno. */
int sock_listen(const char *host, const char *port);
/*
 * Connect within timeout_ms (TCP_NODELAY and sock_keepalive set). Returns fd
 * or -errno (-ETIMEDOUT).
 */
int sock_connect(const char *host, const char *port, int timeout_ms);
/*
 * Detect a peer that vanished (host down, cable cut: no FIN, no RST) on a
 * long-lived bootstrap connection: TCP keepalive after SOCK_KEEPIDLE_S of
 * quiet, SOCK_KEEPCNT probes SOCK_KEEPINTVL_S apart, and TCP_USER_TIMEOUT
 * (unacknowledged data or probes for SOCK_USER_TIMEOUT_MS fail the socket).
 * The socket then reports ETIMEDOUT, which the liveness checks see.
 */
#define SOCK_KEEPIDLE_S	     10
#define SOCK_KEEPINTVL_S     5
#define SOCK_KEEPCNT	     3
#define SOCK_USER_TIMEOUT_MS 25000
void sock_keepalive(int fd);
/* Encode and send one frame (see wire.h) within timeout_ms. Returns 0 or -errno. */
int sock_send_frame(int fd, uint16_t type, const void *body, int timeout_ms);
/*
 * Receive one frame of at most max body bytes within timeout_ms and decode it
 * into out as the expected type. A WF_ERROR frame instead returns its errno
 * (text copied to errtext). Returns 0 or -errno (-EPROTO for malformed input).
 */
int sock_recv_frame(int fd, uint16_t expect, void *out, uint32_t max, int timeout_ms, char *errtext,
		    size_t errlen);
/*
 * Frames whose body the caller encodes itself (REQ, REP: up to msg_size, more
 * than the struct frames' WIRE_FRAME_MAX). sock_send_body: buf holds the
 * body at buf + WIRE_FRAME_HDR, len bytes; the header is written in front
 * and the frame sent within timeout_ms. sock_recv_body: one frame of at most
 * max body bytes into buf within timeout_ms; *type and *len say what came.
 * Both return 0 or -errno (-EPROTO: bad header or longer than max).
 */
int sock_send_body(int fd, uint16_t type, void *buf, uint32_t len, int timeout_ms);
int sock_recv_body(int fd, uint16_t *type, void *buf, uint32_t max, uint32_t *len, int timeout_ms);
/* Numeric local address of a connected socket (to bind the fabric to the same interface). */
int sock_local_ip(int fd, char *buf, size_t len);
/* True when host names this machine (loopback or an address of a local interface). */
int sock_host_is_local(const char *host);

#endif
