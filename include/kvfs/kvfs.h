/*
 * libkvfs: the client of a kvfs cluster.
 *
 * A kvfs_t holds one connection per configured server, opened by the first
 * call that needs it and re-opened by the next call after a failure (calls
 * that wait meanwhile share the outcome of that connect, its error too). Keys
 * are routed to servers by rendezvous hashing over the server names. Every
 * call is thread-safe: many threads may have requests in flight on one
 * kvfs_t; no lock is held across a round trip.
 *
 * Conventions
 *  - Calls return 0 (or a count >= 0) on success and a negative errno on
 *    failure; kvfs_strerror() describes it.
 *  - Arguments: the object (kv, up, p), the key, then buf, len, off (len,
 *    off without a buffer), other inputs, and out-parameters last; an err,
 *    errlen message buffer ends the list.
 *  - A pointer may be NULL only where it says "may be NULL"; otherwise NULL
 *    is refused with -EINVAL before anything is sent. A buffer may be NULL
 *    when its length is 0, and a callback's arg is passed on as it is.
 *    Calls that return nothing accept NULL.
 *  - Out-parameters are written only on success (after -EPROTO they may be
 *    partly written), except *lease and kvfs_config_load's *out, which are
 *    set to NULL on failure. After a failed read, buf holds undefined bytes.
 *
 * Errors. Each call lists its own. Besides them, a call that talks to a
 * server may return:
 *   -EIO        the server cannot be reached (refused, unreachable, or it
 *               refused the session), the connection was lost, the server
 *               is down (below), or an RMA of the value failed (rarely, the
 *               fabric's own errno instead); every request in flight on a
 *               lost connection fails; the next call reconnects
 *   -ETIMEDOUT  no answer within client.timeout_ms (to a request, or while
 *               connecting); the connection is then dropped (-EIO for the
 *               other requests on it) and the server is down for this
 *               kvfs_t: calls to it fail with -EIO at once, without
 *               waiting, until a background probe (every second) connects
 *   -EACCES     (connecting) a secret is required and none is configured, or
 *               the secrets differ
 *   -EPROTONOSUPPORT  (connecting) no common protocol version or provider
 *   -ESHUTDOWN  the server is shutting down
 *   -ENOMEM     out of memory, here or on the server
 *   -EPROTO     the server's reply makes no sense
 * After -EIO or -ETIMEDOUT, a call that changes a key may or may not have
 * taken effect. Calls taking a key also return -EINVAL (key NULL or "") and
 * -ENAMETOOLONG (longer than KVFS_MAX_KEY). Calls on an upload or a pin
 * never reconnect: once the session it lives in is gone (server restart,
 * lost connection) they return -EIO, for good.
 *
 * Receive and staging slots. Each connection has client.buffer / slot_size
 * receive slots (8 to 64) and as many staging slots. A copying read
 * (kvfs_get, kvfs_upload_read, kvfs_pin_get) of more than
 * limits.inline_threshold bytes and every lease of kvfs_get_lease or
 * kvfs_pin_get_lease take a receive slot (a kvfs_pin_map lease takes none);
 * such a write (kvfs_put, kvfs_upload_write), a staging slot. A call waits, without
 * a timeout, for a free one. So release leases soon: holding them all
 * blocks every such call to that server, and while a lease is held a lost
 * connection to its server cannot be re-opened (calls to it wait for the
 * release).
 */
#ifndef KVFS_KVFS_H
#define KVFS_KVFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KVFS_VERSION_MAJOR 0
/* 0.2: (len, off) in the lease and map calls, kvfs_open's out last, kvfs_limits per server */
#define KVFS_VERSION_MINOR 2

/* Longest key in bytes. */
#define KVFS_MAX_KEY 4096

typedef struct kvfs kvfs_t;
typedef struct kvfs_upload kvfs_upload_t;
typedef struct kvfs_mr kvfs_mr_t;
typedef struct kvfs_lease kvfs_lease_t;
typedef struct kvfs_pin kvfs_pin_t;
struct kvfs_config;
struct iovec;

/*
 * Owner and mode of a key whose writer stored none. A key put or committed
 * without KVFS_SET_UID / KVFS_SET_GID has uid / gid KVFS_ID_UNSET; one without
 * KVFS_SET_MODE has mode S_IFREG | 0644 | KVFS_MODE_UNSET, so a reader (the
 * mount) can apply its own defaults. Setting the mode (kvfs_setattr, or a
 * commit or put with KVFS_SET_MODE) clears the flag; a client cannot set it.
 * Rename keeps the source's attributes, flag included.
 */
/* uid/gid of a key whose writer stored none */
#define KVFS_ID_UNSET 0xffffffffu
/* set in mode when no mode was stored; the permission bits are then 0644 */
#define KVFS_MODE_UNSET 0x80000000u

/*
 * Attributes stored with each key. Times are nanoseconds since the epoch.
 * mtime and atime are what the writer gave (KVFS_SET_MTIME, KVFS_SET_ATIME)
 * or the server's clock at the put or commit; reads never change atime (as
 * with the noatime mount option). A put or commit without KVFS_SET_ATIME
 * keeps the replaced value's atime. ctime is the server's clock at the last
 * change of the value or of any attribute (put, commit, setattr, rename);
 * no caller sets it. A key ending in '/' (a directory's marker) also gets
 * mtime and ctime set when a key directly under it is created, deleted or
 * renamed on the same server.
 * Since libkvfs.so.2 (atime_ns and ctime_ns added).
 */
struct kvfs_attr {
	uint64_t size;	  /* value bytes */
	uint64_t version; /* changes on every write; never reused by a server */
	int64_t mtime_ns; /* last change of the value (or as set) */
	int64_t atime_ns; /* as set; not changed by reads */
	int64_t ctime_ns; /* last change of value or attributes; set by the server only */
	int64_t expiry;	  /* absolute unix seconds, 0 = never */
	uint32_t mode;	  /* type and permission bits; | KVFS_MODE_UNSET if none stored */
	uint32_t uid;	  /* KVFS_ID_UNSET if none stored */
	uint32_t gid;	  /* KVFS_ID_UNSET if none stored */
};

/* Bits of kvfs_setattr()'s and kvfs_upload_commit()'s mask. */
#define KVFS_SET_MODE  (1u << 0)
#define KVFS_SET_UID   (1u << 1)
#define KVFS_SET_GID   (1u << 2)
#define KVFS_SET_MTIME (1u << 3)
#define KVFS_SET_TTL   (1u << 4) /* expiry = now + ttl seconds (0 = never) */
#define KVFS_SET_ATIME (1u << 5) /* since libkvfs.so.2 */

/* Every call that applies one also sets the key's ctime to the server's clock. */
struct kvfs_setattr {
	uint32_t mask;
	uint32_t mode, uid, gid;
	int64_t mtime_ns;
	int64_t atime_ns; /* since libkvfs.so.2 */
	int64_t ttl;	  /* seconds from now, 0 = never expire */
};

/*
 * Configuration (the libconfig file of kvfs.conf(5), or built in code).
 *
 * kvfs_config_new: defaults and no servers; NULL when out of memory.
 * kvfs_config_load: reads kvfs_config_path(path) (path may be NULL). On
 *   failure *out = NULL and err (may be NULL) gets "FILE:LINE: setting:
 *   problem; valid: ...": -EINVAL (a syntax error, a bad setting or value),
 *   -ENAMETOOLONG (a path too long), -errno of reading the file or
 *   cluster.secret_file (-ENOENT, -EACCES, ...), -ENOMEM.
 * kvfs_config_add_server: -EINVAL (a bad name or "host:port" address),
 *   -EEXIST (the name is taken), -ENOSPC (64 servers already).
 * kvfs_config_set takes dotted names ("fabric.provider", "client.buffer", ...)
 *   and string values as they would appear in the file (sizes take K/M/G);
 *   err as for kvfs_config_load. -EINVAL (unknown setting, bad value); setting
 *   cluster.secret_file reads that file now, with its errors as above.
 */
struct kvfs_config *kvfs_config_new(void);
int kvfs_config_load(const char *path, struct kvfs_config **out, char *err, size_t errlen);
int kvfs_config_add_server(struct kvfs_config *cfg, const char *name, const char *address);
int kvfs_config_set(struct kvfs_config *cfg, const char *setting, const char *value, char *err,
		    size_t errlen);
void kvfs_config_free(struct kvfs_config *cfg);

/* The configuration file used when neither a path nor $KVFS_CONF is given. */
#define KVFS_CONFIG_DEFAULT "/etc/kvfs/kvfs.conf"

/*
 * The file kvfs_open(path) and kvfs_config_load(path) read: path when
 * non-NULL, else $KVFS_CONF when set and not empty, else
 * KVFS_CONFIG_DEFAULT. Never fails; the string is path, the environment's
 * or a constant.
 */
const char *kvfs_config_path(const char *path);

/*
 * The servers of a configuration, in the order of cluster.servers (the
 * indexes kvfs_server_name() and kvfs_server_of() use on a kvfs_t opened
 * from it), without connecting to any.
 *
 * kvfs_config_server_count: the number of servers, or -EINVAL when cfg is NULL.
 * kvfs_config_server_name: the name of server idx (valid while cfg is), or
 *   NULL when cfg is NULL or idx is not in [0, count).
 * kvfs_config_server_address: its address as configured, "host:port" or
 *   "[v6]:port" for an IPv6 literal, into buf (at most KVFS_ADDRESS_MAX bytes
 *   with the NUL). Returns its length; -EINVAL when cfg or buf is NULL or idx
 *   is not in [0, count); -ERANGE when len is too small (buf then holds "").
 */
#define KVFS_ADDRESS_MAX 272
int kvfs_config_server_count(const struct kvfs_config *cfg);
const char *kvfs_config_server_name(const struct kvfs_config *cfg, int idx);
int kvfs_config_server_address(const struct kvfs_config *cfg, int idx, char *buf, size_t len);
/*
 * client.metrics of a configuration: the address ("host:port") the kvfs
 * mount serves Prometheus /metrics on, or NULL when unset (the default: no
 * endpoint) or cfg is NULL. libkvfs itself never serves it.
 */
const char *kvfs_config_client_metrics(const struct kvfs_config *cfg);

/*
 * A size as the configuration file takes it: decimal digits, then
 * optionally spaces and a suffix K, M, G or T (any case, powers of 1024),
 * which may be followed by "iB" or "B"; a "B" alone means bytes. "64M" =
 * "64 MiB" = 67108864. Returns 0 with *out set; -EINVAL when s or out is
 * NULL, s is not such a size (empty, a sign or space first, another suffix)
 * or the size does not fit in 64 bits.
 */
int kvfs_parse_size(const char *s, uint64_t *out);

/*
 * The library's log lines (a failed connect, a lost server, ...), for the
 * whole process. Each line whose level is at most the log level (default
 * KVFS_LOG_WARN) goes to stderr as "kvfs: warning: text", cut at 1 KiB.
 * kvfs_set_log hands them to fn(arg, level, text) instead, without that
 * prefix or a newline; fn may be called from any thread of the library,
 * several at once, and must not call into the library. fn NULL restores
 * stderr. Set it before opening a kvfs_t: changing it while lines are
 * logged is not synchronized. kvfs_set_log_level sets the highest level
 * logged, with or without fn; returns 0, or -EINVAL when level is not a
 * KVFS_LOG_* value.
 */
enum { KVFS_LOG_ERROR, KVFS_LOG_WARN, KVFS_LOG_INFO, KVFS_LOG_DEBUG };
typedef void (*kvfs_log_fn)(void *arg, int level, const char *line);
void kvfs_set_log(kvfs_log_fn fn, void *arg);
int kvfs_set_log_level(int level);

/*
 * Open a kvfs_t from the file kvfs_config_path(config_path) (config_path may
 * be NULL), or from a parsed config (copied; the caller keeps it). Nothing is
 * sent: each server is connected by the first call that needs it. Errors:
 * those of kvfs_config_load (kvfs_open; the message goes to the log),
 * -EINVAL (a configuration that is not valid, e.g. no servers), -ENOMEM.
 * kvfs_close ends every connection; nothing may use kv, or any upload, pin,
 * lease or mr of it, during or after it.
 *
 * Signals: libfabric is loaded (dlopen) at the first call that needs the
 * fabric, and a provider library of Debian's libfabric (libinfinipath)
 * installs handlers of its own then. libkvfs blocks signals in the calling
 * thread meanwhile and puts the program's handlers back before it returns;
 * a program with other threads that do not block signals should set its
 * handlers after its first call, or block signals in those threads.
 */
int kvfs_open(const char *config_path, kvfs_t **out);
int kvfs_open_config(const struct kvfs_config *cfg, kvfs_t **out);
/*
 * kvfs_open and kvfs_open_config with flags (0: the same; unknown bits:
 * -EINVAL). KVFS_OPEN_LAZY_FABRIC, for short-lived clients (a script's
 * one command): a server is first connected without a fabric session, and
 * kvfs_get, kvfs_put, kvfs_delete, kvfs_stat, kvfs_setattr, kvfs_rename,
 * kvfs_ping and kvfs_limits of values up to limits.inline_threshold go over
 * the TCP bootstrap channel, one request at a time per server, with no
 * libfabric set-up at all (it costs a few hundred ms of start-up). The first
 * call that needs more (a larger value, an upload, a pin, a listing, stats,
 * registered memory) sets up the fabric session on the same connection, and
 * so does a small call once the connection has carried 1000 requests or
 * been up for 30 s; from then on the kvfs_t works as without the flag. A
 * kvfs_get of more than the inline threshold asks the TCP channel first and
 * goes on by the fabric only when the value is larger. kvfs_ping then measures the TCP round
 * trip. Servers older than this flag close such a connection (-EIO).
 */
#define KVFS_OPEN_LAZY_FABRIC 1u
int kvfs_open_flags(const char *config_path, unsigned flags, kvfs_t **out);
int kvfs_open_config_flags(const struct kvfs_config *cfg, unsigned flags, kvfs_t **out);
void kvfs_close(kvfs_t *kv);
/* A description of err (negative or not); never NULL. */
const char *kvfs_strerror(int err);

/*
 * Limits of server (an index as for kvfs_server_name) as agreed when this
 * client connected to it; connects first when it is not, with the errors of
 * any call, and -EINVAL when server is out of range. A reconnect may change
 * them (a server restarted with another configuration).
 */
struct kvfs_limits {
	uint64_t max_key;	   /* longest key: KVFS_MAX_KEY */
	uint64_t max_value;	   /* largest value (server.max_value); larger: -EFBIG */
	uint64_t inline_threshold; /* ranges up to this size travel in the messages */
	uint64_t slot_size;	   /* largest lease, piece of a copying read or write */
};
int kvfs_limits(kvfs_t *kv, int server, struct kvfs_limits *out);

/*
 * GET [off, off+len) of key into buf. Returns the bytes copied: short at the
 * end of the value, 0 at or past it. attr (may be NULL) gets the key's
 * attributes. -ENOENT: no such key (or it expired). A range larger than
 * limits.slot_size is read by several requests: -EAGAIN when the value was
 * replaced between them (read again, or pin it). -EBUSY: the value holds
 * the most pins it can (65534, see kvfs_pin_open).
 */
ssize_t kvfs_get(kvfs_t *kv, const char *key, void *buf, size_t len, uint64_t off,
		 struct kvfs_attr *attr);

/*
 * GET [off, off+len) of key into a receive slot and lend it, with no copy:
 * *data points at the bytes, valid until kvfs_lease_release(*lease). Returns
 * the bytes, as kvfs_get; every return >= 0, 0 included, holds a lease to
 * release. len at most limits.slot_size, else -EINVAL. attr (may be NULL) as
 * for kvfs_get. Errors of kvfs_get, but not -EAGAIN (one request). A lost
 * connection is re-opened only once its leases are released: a thread that
 * holds one and calls that server again after a call to it failed waits for
 * itself, forever.
 */
ssize_t kvfs_get_lease(kvfs_t *kv, const char *key, size_t len, uint64_t off, const void **data,
		       kvfs_lease_t **lease, struct kvfs_attr *attr);
void kvfs_lease_release(kvfs_lease_t *lease);

/*
 * Register caller memory so kvfs_get_mr, kvfs_put_mr and kvfs_upload_write_mr
 * move bytes straight into or out of it by RMA, with no copy. The memory must
 * stay valid until kvfs_mr_close. Nothing is sent here: each server's
 * connection registers it the first time it moves bytes by RMA there, which
 * may then fail with -EMFILE (61 regions registered on that server by this
 * kvfs_t) or -errno of the fabric's registration. -EINVAL: len 0.
 */
int kvfs_mr_reg(kvfs_t *kv, void *buf, size_t len, kvfs_mr_t **out);
void kvfs_mr_close(kvfs_mr_t *mr);
/*
 * Like kvfs_get and kvfs_put, with buf inside mr: one request of any length,
 * the server writing into or reading from buf by RMA (short ranges travel
 * inline). -EINVAL: mr is NULL or of another kvfs_t; -EFAULT: [buf, buf+len)
 * is not inside mr (checked whatever len). kvfs_get_mr never returns -EAGAIN.
 */
ssize_t kvfs_get_mr(kvfs_t *kv, const char *key, void *buf, size_t len, uint64_t off, kvfs_mr_t *mr,
		    struct kvfs_attr *attr);
int kvfs_put_mr(kvfs_t *kv, const char *key, const void *buf, size_t len, kvfs_mr_t *mr,
		const struct kvfs_setattr *sa);

/*
 * PUT the whole value (atomic replace: readers see the old or the new one).
 * sa (may be NULL: defaults) gives its attributes. -EFBIG: len over
 * limits.max_value; -ENOSPC: the server's memory is full (eviction "none",
 * or all of it pinned). A value over limits.slot_size goes by an upload,
 * with its errors.
 */
int kvfs_put(kvfs_t *kv, const char *key, const void *buf, size_t len,
	     const struct kvfs_setattr *sa);
/* -ENOENT: no such key. */
int kvfs_delete(kvfs_t *kv, const char *key);
/* attr (may be NULL) gets the key's attributes. -ENOENT: no such key. */
int kvfs_stat(kvfs_t *kv, const char *key, struct kvfs_attr *attr);
/*
 * Apply the fields of sa (may be NULL: none) that its mask names; the
 * version does not change, the ctime does (a non-empty mask). attr_out (may
 * be NULL) gets the result. -ENOENT.
 */
int kvfs_setattr(kvfs_t *kv, const char *key, const struct kvfs_setattr *sa,
		 struct kvfs_attr *attr_out);
/*
 * Atomic rename on one server, attributes kept but a new ctime, a new
 * version. -EXDEV: src and dst live on different servers; -ENOENT: no src;
 * -EEXIST: with KVFS_RENAME_NOREPLACE, dst exists (src == dst included);
 * -ENOSPC: no room for the moved value.
 */
#define KVFS_RENAME_NOREPLACE 1u
int kvfs_rename(kvfs_t *kv, const char *src, const char *dst, unsigned flags);

/*
 * LIST keys that start with prefix (may be NULL: all keys), in byte order.
 * With delim '/', keys with a further '/' after the prefix are folded into
 * one common prefix entry (is_prefix = 1, name ends in '/'); delim 0 lists
 * every key; any other delim: -EINVAL. cb (may be NULL: count only) gets each
 * entry, valid during the call, and returns 0 to continue, non-zero to stop.
 * Listing visits every server once (one pass, continued by cursor); one that
 * cannot be reached fails it. Returns the number of entries passed to cb
 * (the one it stopped at included) or -errno: -ENAMETOOLONG (prefix longer
 * than KVFS_MAX_KEY).
 */
struct kvfs_entry {
	const char *name; /* the full key or common prefix, NUL-terminated */
	size_t name_len;
	int is_prefix;
	struct kvfs_attr attr; /* valid when !is_prefix */
	int server;	       /* index into the cluster's servers */
};
typedef int (*kvfs_list_cb)(void *arg, const struct kvfs_entry *e);
ssize_t kvfs_list(kvfs_t *kv, const char *prefix, char delim, kvfs_list_cb cb, void *arg);

/*
 * Uploads: a pending value written at any offset, published atomically. An
 * upload lives in the session of its key's server (see Errors: -EIO once
 * that is gone; abort it then). One thread at a time per upload: while a
 * request moves an upload's bytes by RMA, other requests on it get -EBUSY.
 *
 * kvfs_upload_open: -EMFILE (1024 uploads open by this kvfs_t on that
 *   server), -ENOSPC (KVFS_UPLOAD_KEEP: no room for the copy).
 * kvfs_upload_write: -EFBIG (off + len over limits.max_value), -ENOSPC.
 *   Pieces written before a failure stay written.
 * kvfs_upload_write_mr: the same, zero-copy: the server RMA-reads straight
 *   from buf inside mr (-EINVAL, -EFAULT as for kvfs_get_mr, -EMFILE as for
 *   kvfs_mr_reg), in pieces of at most limits.slot_size.
 * kvfs_upload_read: [off, off+len) of the pending value into buf
 *   (read-your-writes). Returns the bytes copied, short at its end, 0 at or
 *   after it.
 * kvfs_upload_truncate: -EFBIG (size over limits.max_value), -ENOSPC.
 * kvfs_upload_size: the pending size after the last call on up; 0 if up is
 *   NULL.
 * kvfs_upload_commit: publish, with sa (may be NULL: defaults) as for
 *   kvfs_put; attr_out (may be NULL) gets the new attributes. -ENOSPC. Frees
 *   up whatever it returns but -EBUSY (up stays open: commit again or
 *   abort); after -EIO or -ETIMEDOUT the value may or may not be published.
 * kvfs_upload_abort: discard; frees up.
 */
#define KVFS_UPLOAD_KEEP 1u /* start from the current value (if any) */
int kvfs_upload_open(kvfs_t *kv, const char *key, unsigned flags, kvfs_upload_t **out);
int kvfs_upload_write(kvfs_upload_t *up, const void *buf, size_t len, uint64_t off);
int kvfs_upload_write_mr(kvfs_upload_t *up, const void *buf, size_t len, uint64_t off,
			 kvfs_mr_t *mr);
ssize_t kvfs_upload_read(kvfs_upload_t *up, void *buf, size_t len, uint64_t off);
int kvfs_upload_truncate(kvfs_upload_t *up, uint64_t size);
uint64_t kvfs_upload_size(const kvfs_upload_t *up);
int kvfs_upload_commit(kvfs_upload_t *up, const struct kvfs_setattr *sa,
		       struct kvfs_attr *attr_out);
void kvfs_upload_abort(kvfs_upload_t *up);

/*
 * Pinned reads: one version of a key from the first byte to the last, while
 * other clients replace or delete it (what an open file needs).
 *
 * kvfs_pin_open pins the key's current value on its server and gives its
 * attributes (attr may be NULL). The server keeps that value's bytes, even
 * after the key is replaced, deleted, renamed or expires, and never evicts
 * it, until kvfs_pin_close: its memory stays in use until the last pin on it
 * closes (with pinned values filling the pool, writes fail with -ENOSPC).
 * -ENOENT (absent or expired), -EMFILE (4096 pins held by this kvfs_t on
 * that server), -EBUSY (the value holds ~61000 pins, from every client).
 *
 * kvfs_pin_get copies [off, off+len) into buf, in pieces of at most
 * limits.slot_size; kvfs_pin_get_lease reads it into a receive slot and
 * lends it, as kvfs_get_lease does (len <= limits.slot_size, else -EINVAL;
 * every return >= 0 holds a lease). Both return the bytes read, short at the
 * end of the value, 0 at or past it; never -EAGAIN.
 *
 * kvfs_pin_map moves nothing: when the pin's server runs on this host and its
 * pool is mapped here (client.local_map, README "Same-host reads"), it fills
 * iov (at most max >= 1 entries) with read-only views of [off, off+len) of
 * the pinned value in that pool, *niov = entries used, and returns the bytes
 * they cover: short at the end of the value or when max entries are not
 * enough (a range of n MiB needs at most n + 2). The first call of a pin asks
 * the server where the value lies (one message per 128 pieces; first calls
 * running at once each ask); later ones send nothing. Every return >= 0
 * holds a lease: the views stay valid until it is released
 * (kvfs_lease_release), even if kvfs_pin_close runs first. That lease holds
 * only the pin, not the connection; a kvfs_pin_get_lease lease holds the
 * connection as kvfs_get_lease's does (a thread that holds one and calls its
 * server again after a failure waits for itself, forever).
 * -EOPNOTSUPP when the pool is not mapped (read with kvfs_pin_get_lease
 * instead).
 *
 * A pin lives in its server's session: once that is lost (server restart,
 * broken connection), reads return -EIO, and the caller re-opens a pin (the
 * value may have changed). Reads of one pin may run concurrently from any
 * number of threads; kvfs_pin_close must not run concurrently with them.
 * kvfs_pin_close sends one message (nothing when the session is gone, whose
 * end released the pin) and frees p.
 */
int kvfs_pin_open(kvfs_t *kv, const char *key, kvfs_pin_t **out, struct kvfs_attr *attr);
ssize_t kvfs_pin_get(kvfs_pin_t *p, void *buf, size_t len, uint64_t off);
ssize_t kvfs_pin_get_lease(kvfs_pin_t *p, size_t len, uint64_t off, const void **data,
			   kvfs_lease_t **lease);
ssize_t kvfs_pin_map(kvfs_pin_t *p, size_t len, uint64_t off, struct iovec *iov, int max, int *niov,
		     kvfs_lease_t **lease);
void kvfs_pin_close(kvfs_pin_t *p);

/*
 * Cluster information. Servers are numbered 0 .. kvfs_server_count() - 1,
 * in the order of cluster.servers. kvfs_server_count, kvfs_server_name (NULL
 * when idx is out of range) and kvfs_server_of (the index of key's server)
 * send nothing. kvfs_server_stats and kvfs_ping (a round trip over the
 * fabric) connect when needed; -EINVAL when idx is out of range. kvfs_ping:
 * *rtt_ns (may be NULL) gets the round-trip time.
 */
int kvfs_server_count(kvfs_t *kv);
const char *kvfs_server_name(kvfs_t *kv, int idx);
int kvfs_server_of(kvfs_t *kv, const char *key);

struct kvfs_stats {
	uint64_t gets, hits, misses, puts, deletes, evictions, expirations;
	uint64_t bytes_in, bytes_out, keys, pool_size, pool_used, sessions, uptime_s;
	uint64_t dropped_requests; /* unanswered: their session had 96 requests in flight */
	uint64_t stalled_sessions; /* dropped after server.stall_timeout_ms without progress */
	char provider[32];
};
int kvfs_server_stats(kvfs_t *kv, int idx, struct kvfs_stats *out);
/*
 * What this kvfs_t knows of server idx's session, without sending anything:
 * KVFS_SERVER_IDLE (no session: none was needed yet, as connections are
 * made on first use, or a broken one was torn down and none needed since),
 * KVFS_SERVER_UP (a session is established), KVFS_SERVER_DOWN (its session
 * broke, or the last attempt to connect failed; the next call tries again,
 * or, after a timeout, the probe does).
 * -EINVAL when kv is NULL or idx is out of range.
 */
enum { KVFS_SERVER_IDLE = 0, KVFS_SERVER_UP = 1, KVFS_SERVER_DOWN = 2 };
int kvfs_server_state(kvfs_t *kv, int idx);
int kvfs_ping(kvfs_t *kv, int idx, uint64_t *rtt_ns);

/*
 * Invalidations (since 1.1, symbol version KVFS_1.1; README "Consistency
 * and listings"). kvfs_track asks every server this kvfs_t connects to
 * (from now on, and at every reconnect) to track the keys it reads (stat,
 * get, pins, listings' prefixes) and to tell it when one changes; fn is then
 * called with each event, one at a time, on a thread of libkvfs's, outside
 * every lock of libkvfs. fn must return soon and must not call libkvfs
 * (queue the work: it holds up the reading of every server's messages).
 * Call it once, before any other call on kv; -EINVAL when fn is NULL, -EBUSY
 * on a second call, -EAGAIN/-ENOMEM when the thread cannot start. Fabric
 * sessions only: a KVFS_OPEN_LAZY_FABRIC kvfs_t gets -EINVAL.
 *
 * Event kinds: KVFS_INVAL_CHANGED (key has a new value or attributes; a key
 * ending in '/' or the empty key: a listing of that prefix changed),
 * KVFS_INVAL_GONE (key was deleted or renamed away), KVFS_INVAL_ALL (forget
 * everything read from server: it lost track, e.g. its table was full),
 * KVFS_INVAL_LOST (the session with server broke: nothing will be told
 * until KVFS_INVAL_BACK, when a new session tracks again; anything cached
 * from server in between may be stale). key is NUL-terminated, valid during
 * the call only, and "" for ALL, LOST and BACK.
 *
 * kvfs_track_state: a value that changes whenever an invalidation arrives or
 * a server's tracking is lost or back, with bit 0 set when every server
 * connected so far is tracked now. Read it before a request and again
 * before caching its result: when the two differ, or bit 0 is clear, the
 * result may already be stale (cache it briefly). 0 without kvfs_track.
 */
enum {
	KVFS_INVAL_CHANGED = 1,
	KVFS_INVAL_GONE = 2,
	KVFS_INVAL_ALL = 3,
	KVFS_INVAL_LOST = 4,
	KVFS_INVAL_BACK = 5
};
struct kvfs_inval {
	int kind;	 /* KVFS_INVAL_* */
	int server;	 /* index as for kvfs_server_name */
	const char *key; /* NUL-terminated */
	size_t klen;
};
typedef void (*kvfs_inval_cb)(void *arg, const struct kvfs_inval *ev);
int kvfs_track(kvfs_t *kv, kvfs_inval_cb fn, void *arg);
uint64_t kvfs_track_state(kvfs_t *kv);

#ifdef __cplusplus
}
#endif
#endif
