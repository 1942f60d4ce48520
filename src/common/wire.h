/*
 * wire: the kvfs protocol's messages, encoded little-endian with explicit
 * bounds checks. What the records they carry mean (set-mask, attributes,
 * counters) is proto.h's. Two channels:
 *
 * Bootstrap over TCP, framed: [u32 magic "KVFS"][u16 proto][u16 type][u32 len][body].
 *   c->s HELLO {proto, client nonce cn}
 *   s->c CHALLENGE {auth required, server nonce sn}
 *   c->s AUTH {HMAC-SHA256(secret, "kvfs-client" sn cn)}   (zeros when no auth)
 *   s->c WELCOME {mac, limits, providers}
 *   c->s SETUP {provider, fabric address, receive region, staging region, mac}
 *   s->c READY {session id, token, server fabric address, pool, mac}
 *   either way: ERROR {errno, text}. The socket then stays open as the
 *   session's liveness channel.
 * With a secret (auth required), WELCOME, SETUP and READY each carry a MAC
 * (wire_frame_mac) under the handshake's key K = HMAC-SHA256(secret,
 * "kvfs-session" cn sn): WELCOME's is the server's proof of the secret over
 * both nonces, and it and the others bind what they carry to this handshake
 * (no frame of another handshake, direction or type passes). Without a
 * secret the MACs are zeros and nobody checks them. A client that has a
 * secret refuses a server that does not ask for authentication. Nothing is
 * encrypted, and the frames after READY and the direct requests carry no
 * MAC: the secret proves who answered the handshake, not that nobody on
 * the path changes what follows (README "Security").
 *
 * Direct requests (README "Small requests on the bootstrap channel"): after
 * WELCOME and before any SETUP, the client may send instead
 *   c->s REQ {a request, encoded as over the fabric (wire_req_encode)}
 *   s->c REP {its reply (wire_rep_encode), data inline}
 * any number of times, one at a time, then SETUP (the session goes on as
 * above on the same socket) or close. These frames may be up to the
 * welcome's limits.msg_size; every other frame stays within WIRE_FRAME_MAX.
 * Only DIRECT ops (PING, GET, PUT, DELETE, STAT, SETATTR, RENAME) with no
 * buffer descriptor (region 0: values inline, at most the inline
 * threshold) are served; session, token are unused (0). A GET's reply
 * carries at most the inline threshold; its attr.size tells what is left.
 * Anything else (an op that needs a session, a region, a malformed
 * request, another frame type) gets ERROR and the connection is closed.
 * The server closes a direct connection that stays silent for
 * WIRE_DIRECT_IDLE_MS between requests, takes longer than its handshake
 * timeout over one frame, or has been open for WIRE_DIRECT_LIFE_MS (after
 * the reply it is working on): a client sends SETUP or reconnects before.
 *
 * Requests and replies over the fabric (FI_MSG): one layout for every op, a
 * fixed part then key, key2 (rename target / list cursor) and inline data.
 * A buffer descriptor {region, off, len} names bytes in one of the client's
 * registered regions; region 0 means "inline in the message".
 *
 * Pinned reads (a consistent version per open file), ops after UP_READ:
 *   PIN {key} -> {handle, attr}: the server pins the key's current value for
 *     the session (up to 4096 pins per session: -EMFILE beyond; -EBUSY when
 *     the value itself holds too many pins); it keeps its bytes while it is
 *     replaced or deleted, until UNPIN or the session's end.
 *   PIN_GET {handle, off, len, buf} -> {n, attr, inline data}: like GET on
 *     the pinned value: inline when buf is region 0 (at most the inline
 *     threshold), else RMA-written into buf; n = 0 at or past the end.
 *     Concurrent PIN_GETs of one handle are fine.
 *   PIN_GET with RQ_MAP -> {n, attr, segments}: where the bytes lie in the
 *     server's pool instead of the bytes (struct wire_seg, at most
 *     WIRE_MAP_SEGS; n = bytes they cover, less than len when more segments
 *     would be needed). For a client that mapped the pool (struct
 *     wire_pool); the bytes stay put until the pin is released.
 *   UNPIN {handle}. An unknown handle (never given, unpinned, another
 *     session's) gets -EBADF.
 *
 * Tracking (README "Consistency and listings"):
 *   TRACK {} -> {}: from now on the server remembers the keys this session
 *     STATs, GETs or PINs and the prefixes it LISTs, and tells it when one
 *     changes. Fabric sessions only (not a DIRECT op).
 *   INVAL, server -> client, unsolicited: a reply-shaped message with
 *     req_id 0 (no request has id 0), status 0, n entries in data, each
 *     {u8 kind (WIRE_INVAL_*), u16 klen, key}: the key changed or went, or
 *     a prefix ("a/", or "" for the top) gained or lost a key. Each tracked
 *     key is reported once, then forgotten until read again. RP_INVAL_ALL:
 *     the server lost track of what this session read (its table or this
 *     session's queue overflowed): drop everything cached from it.
 */
#ifndef KVFS_WIRE_H
#define KVFS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define WIRE_MAGIC 0x5346564bu /* "KVFS" */
#define WIRE_PROTO                                                                                 \
	2 /* 2: atime and ctime in attributes, atime in setattr; MACs on WELCOME, SETUP, READY */
#define WIRE_NONCE     32
#define WIRE_MAC       32
#define WIRE_FRAME_HDR 12
#define WIRE_FRAME_MAX 4096 /* bootstrap frames after authentication */
#define WIRE_FRAME_PRE 128  /* ... and before it: tiny until authenticated */
#define WIRE_ADDR_MAX  256
#define WIRE_MAX_PROVS 4

enum wire_frame_type {
	WF_HELLO = 1,
	WF_CHALLENGE,
	WF_AUTH,
	WF_WELCOME,
	WF_SETUP,
	WF_READY,
	WF_ERROR,
	WF_REQ, /* direct request (see above) */
	WF_REP, /* its reply */
};

#define WIRE_DIRECT_IDLE_MS 3000 /* direct phase: longest silence between requests */
/*
 * After WELCOME, the longest silence before the first frame: a fabric client
 * opens its endpoint and registers its buffers before it sends SETUP, which
 * takes seconds with large buffers on verbs, or under load.
 */
#define WIRE_FIRST_FRAME_MS 15000
#define WIRE_DIRECT_LIFE_MS 60000 /* direct phase: longest life of the connection */

/* Registered region of a client, as announced to a server. */
struct wire_region {
	uint64_t base; /* remote address of byte 0 (virtual address or 0) */
	uint64_t len;
	uint64_t key;
};

#define REGION_INLINE  0u
#define REGION_RECV    1u /* server may write (GET results, listings) */
#define REGION_STAGING 2u /* server may read (PUT and upload data) */
#define REGION_USER0   3u /* first caller-registered region */
#define REGION_MAX     64u

struct wire_limits {
	uint64_t max_key, max_value, inline_threshold, msg_size;
};

struct wire_hello {
	uint16_t proto;
	uint8_t nonce[WIRE_NONCE];
};
struct wire_challenge {
	uint8_t auth_required;
	uint8_t nonce[WIRE_NONCE];
};
struct wire_welcome {
	uint8_t mac[WIRE_MAC];
	struct wire_limits limits;
	int n_provs;
	char provs[WIRE_MAX_PROVS][32];
};
struct wire_setup {
	char provider[32];
	uint16_t addr_len;
	uint8_t addr[WIRE_ADDR_MAX];
	struct wire_region recv, staging;
	uint8_t mac[WIRE_MAC]; /* wire_frame_mac, or zeros without a secret */
};
/*
 * The server's pool, offered to clients on its host (README "Same-host
 * reads"): a client allowed to ptrace process pid takes its descriptor fd
 * (pidfd_getfd) and maps it read-only when it is a kvfs pool: a memfd named
 * "kvfs-pool", sealed against shrinking and growing, of exactly len bytes,
 * with fstat's dev and ino. pid 0: not offered.
 */
struct wire_pool {
	uint32_t pid;
	int32_t fd;
	uint64_t len, dev, ino;
};
struct wire_ready {
	uint64_t session, token;
	uint16_t addr_len;
	uint8_t addr[WIRE_ADDR_MAX];
	struct wire_pool pool;
	uint8_t mac[WIRE_MAC]; /* wire_frame_mac, or zeros without a secret */
};
struct wire_error {
	int32_t err;
	char text[200];
};

/* Encode a frame body into buf (cap bytes incl. header). Returns frame length or -EMSGSIZE. */
int wire_frame_encode(void *buf, size_t cap, uint16_t type, const void *body);
/*
 * Decode a frame body of the given type from body[0..len). Returns 0 or
 * -EPROTO (malformed, with a reason in *why): short or trailing bytes, a
 * length over its field, a string (provider, error text) with a NUL inside.
 */
int wire_frame_decode(uint16_t type, const void *body, size_t len, void *out, const char **why);
/* Parse the 12-byte header. Returns 0, or -EPROTO for a bad magic/proto/len > max. */
int wire_frame_header(const void *hdr, uint16_t *type, uint32_t *len, uint32_t max);
/*
 * Write the 12-byte header of a frame whose body of len bytes (encoded by
 * the caller, e.g. a REQ's wire_req_encode) follows it at hdr + 12.
 */
void wire_frame_wrap(void *hdr, uint16_t type, uint32_t len);

/* Fabric ops. */
enum wire_op {
	OP_PING = 1,
	OP_GET,
	OP_PUT,
	OP_DELETE,
	OP_STAT,
	OP_SETATTR,
	OP_RENAME,
	OP_LIST,
	OP_UP_OPEN,
	OP_UP_WRITE,
	OP_UP_TRUNC,
	OP_UP_COMMIT,
	OP_UP_ABORT,
	OP_REG,
	OP_UNREG,
	OP_STATS,
	OP_UP_READ, /* read back [off, off+len) of a pending upload, like GET */
	OP_PIN,	    /* pin key's current value: handle + attr */
	OP_PIN_GET, /* read [off, off+len) of a pinned value, like GET */
	OP_UNPIN,   /* release a pin */
	OP_INVAL,   /* s->c only, unsolicited (req_id 0): keys that changed (see below) */
	OP_TRACK,   /* c->s: track the keys this session reads from now on */
	OP_MAX_
};

struct wire_desc {
	uint32_t region;
	uint64_t off, len;
};

/* Request flags. */
#define RQ_KEEP	     1u /* UP_OPEN: start from current value */
#define RQ_NOREPLACE 2u /* RENAME */
#define RQ_DELIM     4u /* LIST: fold at '/' */
#define RQ_MAP	     8u /* PIN_GET: reply with pool segments, not bytes */

struct wire_req {
	uint8_t op, flags;
	uint64_t session, token, req_id;
	/* off, len: GET / UP_READ / PIN_GET / UP_WRITE range, PUT size, UP_TRUNC size, LIST max */
	uint64_t off, len;
	uint64_t handle; /* upload id; pin id; REG: remote key; UNREG: region id */
	struct wire_desc buf;
	struct proto_setattr sa;
	const uint8_t *key, *key2, *data;
	uint32_t klen, k2len, dlen;
};

/* Reply flags. */
#define RP_MORE	     1u /* LIST: more entries after the last one */
#define RP_INVAL_ALL 2u /* INVAL: forget everything read from this server */

/* Kinds of INVAL entries. */
#define WIRE_INVAL_CHANGED 1u /* new value or attributes; a prefix: its listing changed */
#define WIRE_INVAL_GONE	   2u /* deleted or renamed away */
#define WIRE_INVAL_HDR	   3u /* bytes before each entry's key */

struct wire_rep {
	uint8_t op, flags;
	int32_t status; /* 0 or -errno */
	uint64_t req_id;
	uint64_t n;	 /* bytes moved / entries listed */
	uint64_t handle; /* upload id / pin id / region id */
	struct proto_attr attr;
	const uint8_t *data;
	uint32_t dlen;
};

#define WIRE_REQ_FIXED 128
#define WIRE_REP_FIXED 104

/* Message buffer size for given limits: fixed part + two keys + inline data. */
size_t wire_msg_size(uint64_t inline_threshold);

/*
 * Returns bytes written, or -EMSGSIZE if it does not fit cap. A reply's data
 * may already sit in place at buf + WIRE_REP_FIXED (then it is not copied).
 */
int wire_req_encode(void *buf, size_t cap, const struct wire_req *r);
int wire_rep_encode(void *buf, size_t cap, const struct wire_rep *r);
/*
 * Decode, pointing key/data into buf. Checks lengths against the message and
 * the limits (max_key, max inline data). Returns 0 or -EPROTO / -ENAMETOOLONG /
 * -EMSGSIZE with a reason in *why.
 */
int wire_req_decode(const void *buf, size_t len, const struct wire_limits *lim, struct wire_req *r,
		    const char **why);
int wire_rep_decode(const void *buf, size_t len, struct wire_rep *r, const char **why);

/* Listing entries (in LIST replies): u16 nlen, u8 is_prefix, attr (if not), name. */
int wire_entry_encode(void *buf, size_t cap, const char *name, size_t nlen,
		      const struct proto_attr *attr);
/* Decode one entry at buf; returns bytes consumed or -EPROTO. name is not NUL-terminated. */
int wire_entry_decode(const void *buf, size_t len, const char **name, size_t *nlen, int *is_prefix,
		      struct proto_attr *attr);

/* One decoded listing entry; name points into the reply, not NUL-terminated. */
struct wire_entry {
	const char *name;
	size_t nlen;
	int is_prefix;
	struct proto_attr attr;
};
/*
 * The entries of a LIST reply (n of them in data[0, dlen)) into out[n]. A
 * batch must hold exactly n entries, every name non-empty and under prefix,
 * in strictly increasing byte order after the cursor (clen 0: no cursor):
 * that is what makes each batch progress, so a server that repeats a cursor
 * cannot make a listing loop. wire_list_count_ok(n, dlen) says whether n can
 * be that many (each entry takes 3 bytes at least), before out is sized by
 * it. Returns 0, or -EPROTO with *why set.
 */
int wire_list_count_ok(uint64_t n, size_t dlen);
int wire_list_decode(const uint8_t *data, size_t dlen, uint64_t n, const char *prefix, size_t plen,
		     const char *cursor, size_t clen, struct wire_entry *out, const char **why);

/* A range of the server's pool (PIN_GET with RQ_MAP), 16 bytes on the wire. */
struct wire_seg {
	uint64_t off, len;
};
#define WIRE_SEG_SIZE 16
#define WIRE_MAP_SEGS 128

/* Returns bytes written (n * WIRE_SEG_SIZE) or -EMSGSIZE. */
int wire_segs_encode(void *buf, size_t cap, const struct wire_seg *seg, int n);
/*
 * Decode the segments of a PIN_GET RQ_MAP reply: at most max, each non-empty
 * and inside a pool of pool_len bytes, together covering exactly total bytes.
 * Returns their number or -EPROTO.
 */
int wire_segs_decode(const void *buf, size_t len, uint64_t total, uint64_t pool_len,
		     struct wire_seg *seg, int max);

/* One INVAL entry at buf. Returns bytes written or -EMSGSIZE. */
int wire_inval_encode(void *buf, size_t cap, unsigned kind, const void *key, size_t klen);
/*
 * The entry of an INVAL message's data at *pos (advanced past it): 1 with
 * *kind, *key (into data, not NUL-terminated) and *klen set; 0 at the end;
 * -EPROTO for a bad kind, a key over PROTO_MAX_KEY or a cut entry.
 * wire_inval_check: the whole of data holds exactly n well-formed entries.
 */
int wire_inval_next(const uint8_t *data, size_t dlen, size_t *pos, unsigned *kind,
		    const uint8_t **key, size_t *klen);
int wire_inval_check(const uint8_t *data, size_t dlen, uint64_t n, const char **why);

/* Stats payload (OP_STATS reply data); decode: -EPROTO unless len is exactly one payload. */
int wire_stats_encode(void *buf, size_t cap, const struct proto_stats *st);
int wire_stats_decode(const void *buf, size_t len, struct proto_stats *st);

/* HMAC-SHA256(secret, label || a || b) into mac. */
void wire_mac(uint8_t mac[WIRE_MAC], const uint8_t *secret, size_t slen, const char *label,
	      const uint8_t a[WIRE_NONCE], const uint8_t b[WIRE_NONCE]);
int wire_mac_equal(const uint8_t a[WIRE_MAC], const uint8_t b[WIRE_MAC]);
/* The handshake's key: HMAC-SHA256(secret, "kvfs-session" cn sn). */
void wire_session_key(uint8_t key[WIRE_MAC], const uint8_t *secret, size_t slen,
		      const uint8_t cn[WIRE_NONCE], const uint8_t sn[WIRE_NONCE]);
/*
 * The MAC of a WELCOME, SETUP or READY body under key: HMAC-SHA256(key,
 * "kvfs-frame" || the frame as encoded, header included, with its mac field
 * zeroed), so it covers the type and every field the receiver decodes.
 * Returns 0, or -EINVAL for another type or a body that does not encode.
 */
int wire_frame_mac(uint8_t mac[WIRE_MAC], const uint8_t key[WIRE_MAC], uint16_t type,
		   const void *body);
/* Random bytes (getrandom, else /dev/urandom; aborts with neither). */
void wire_random(void *buf, size_t len);

#endif
