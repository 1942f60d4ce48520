/*
 * proto: what the kvfs protocol means, apart from how wire.c lays it out
 * in bytes: the key length limit, the "unset" values a key's attributes
 * may hold, the set-mask of a PUT, commit or SETATTR, and the records
 * requests and replies carry (proto_setattr, proto_attr, proto_stats).
 *
 * The server, the store and the wire code use these and never
 * include/kvfs/kvfs.h: the public API is libkvfs's. libkvfs converts between
 * its public structs and these at its edge (src/client/convert.h), and checks
 * at compile time that each public value equals its protocol value here.
 */
#ifndef KVFS_PROTO_H
#define KVFS_PROTO_H

#include <stdint.h>

/* Longest key in bytes. */
#define PROTO_MAX_KEY 4096

/*
 * Owner and mode of a key whose writer stored none. A key put or committed
 * without PROTO_SET_UID / PROTO_SET_GID has uid / gid PROTO_ID_UNSET; one
 * without PROTO_SET_MODE has mode S_IFREG | 0644 | PROTO_MODE_UNSET, so a
 * reader (the mount) can apply its own defaults. A mode given with
 * PROTO_SET_MODE never carries PROTO_MODE_UNSET (the server strips it).
 * Rename keeps the source's attributes, flag included.
 */
#define PROTO_ID_UNSET	 0xffffffffu
#define PROTO_MODE_UNSET 0x80000000u

/* Bits of proto_setattr.mask: which of its fields to store. */
#define PROTO_SET_MODE	(1u << 0)
#define PROTO_SET_UID	(1u << 1)
#define PROTO_SET_GID	(1u << 2)
#define PROTO_SET_MTIME (1u << 3)
#define PROTO_SET_TTL	(1u << 4) /* expiry = now + ttl seconds (0 = never) */
#define PROTO_SET_ATIME (1u << 5)

/*
 * Attributes given with a PUT, commit or SETATTR. Fields whose bit is not in
 * mask take defaults on a PUT or commit (mode S_IFREG|0644|PROTO_MODE_UNSET,
 * uid/gid PROTO_ID_UNSET, mtime now, no expiry; atime that of the value
 * replaced, or now for a new key) and stay as they are on a SETATTR. The
 * ctime is never given: the server sets it to its own clock on every PUT,
 * commit, SETATTR and rename of the key (and a directory marker's mtime and
 * ctime when a key is created, deleted or renamed under it).
 */
struct proto_setattr {
	uint32_t mask; /* PROTO_SET_* */
	uint32_t mode, uid, gid;
	int64_t mtime_ns;
	int64_t atime_ns;
	int64_t ttl; /* seconds from now; 0 = never */
};

/* What a reply (and a listing entry) carries about a key. */
struct proto_attr {
	uint64_t size;	  /* value bytes */
	uint64_t version; /* changes on every write; never reused by a server */
	int64_t mtime_ns; /* nanoseconds since the epoch */
	int64_t atime_ns; /* as stored (set, not updated by reads) */
	int64_t ctime_ns; /* last change of value or attributes (the server's clock) */
	int64_t expiry;	  /* absolute unix seconds, 0 = never */
	uint32_t mode;	  /* type and permission bits; | PROTO_MODE_UNSET if none stored */
	uint32_t uid;	  /* PROTO_ID_UNSET if none stored */
	uint32_t gid;	  /* PROTO_ID_UNSET if none stored */
};

/* A server's counters, the payload of an OP_STATS reply. */
struct proto_stats {
	uint64_t gets, hits, misses, puts, deletes, evictions, expirations;
	uint64_t bytes_in, bytes_out, keys, pool_size, pool_used, sessions, uptime_s;
	uint64_t dropped_requests, stalled_sessions; /* the per-session limits (service_priv.h) */
	char provider[32];			     /* the provider the request came in on */
};

#endif
