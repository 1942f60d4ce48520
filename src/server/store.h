/*
 * store: the server's item memory. Owns the pool, the key index, the
 * directory index used for listing, eviction, expiry and upload sessions.
 *
 * Nothing here blocks or does I/O.
 *
 * Locking. The store takes no lock itself. Its caller keeps one, the store
 * lock (kvfs-server: srv.store_lock), which guards all the store holds: the
 * pool's pages and chunks, the key and directory indexes, the counters, every
 * item's pins, attributes, CLOCK reference bit and link state, and every
 * upload. Every call is made under it, except these:
 *  - store_item_iov on an item the caller holds pinned (store_get, store_pin,
 *    store_item_ref), and reading the value bytes it points to. A pinned item
 *    is never freed, and what store_item_iov reads (the value's size, the
 *    key length, whether the value lies in pages, and the key, extent table
 *    and value bytes behind the header) is written before the item is
 *    published and then only under the writer's own, sole pin. What the locked
 *    calls change on a pinned item (its pin count; the reference bit, set by
 *    every get and stat; its link state on delete or replace; its attributes)
 *    lies in other memory locations of the header, so the two never race.
 *    That is what lets kvfs-server's endpoint threads copy and RMA values
 *    side by side, taking the lock only to pin and to release.
 *  - store_pool_base, store_pool_fd, store_pool_size: fixed by store_open.
 *  - store_upload_size: it reads only the upload's size, which only the calls
 *    on that upload change; the upload's owner must not overlap them.
 *  - store_upload_fill: it writes only the upload's own pages, which nothing
 *    else touches (HELD pages are never evicted), and reads a KEEP source it
 *    holds pinned; the upload's owner must not overlap it with other calls.
 * store_item_attr needs the lock: store_setattr changes a pinned item's
 * attributes.
 *
 * Memory model
 *  - One pool of `memory` bytes (mmap'd once; the server registers it once).
 *  - The pool is cut into 1 MiB pages. A page either belongs to a slab class
 *    (cut into equal chunks) or holds part of a large value.
 *  - An item = 56-byte header + key + value, in one slab chunk when it fits
 *    the largest class; otherwise header + key + extent table in a chunk and
 *    the value in whole pages plus a tail chunk ("extents": pool ranges).
 *  - Per-key overhead beyond key and value bytes stays <= 80 B at 1M keys:
 *    header (56) + hash slot + slab rounding + directory slot.
 *  - Eviction "lru" is CLOCK (second chance, a reference bit per item set on
 *    every access); when a class has nothing to evict or a page is needed,
 *    the least recently touched page is emptied. "none" fails with -ENOSPC
 *    and never drops a key. Pinned items (store_get / store_pin until
 *    store_release) are never evicted or freed; a deleted or replaced pinned
 *    item is freed on its last release. When everything left is pinned,
 *    allocations fail with -ENOSPC.
 *  - Expired items are misses; store_expire() reclaims them in bounded steps.
 */
#ifndef KVFS_STORE_H
#define KVFS_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/proto.h"

#define STORE_PAGE_SIZE (1u << 20)

struct store;
struct item;
struct upload;

struct store_config {
	uint64_t memory;    /* pool bytes, rounded down to whole pages, >= 16 pages */
	uint64_t max_value; /* largest value; -EFBIG beyond */
	int evict_none;	    /* 1 = eviction "none" */
	int prefault;	    /* 1 = populate every pool page in store_open */
	/* Called (store lock held) with the key of each item evicted; may be NULL. */
	void (*evicted)(void *arg, const void *key, size_t klen);
	void *evicted_arg;
};

struct store_stats {
	uint64_t keys;
	uint64_t pool_size, pool_used; /* used = pages not free */
	uint64_t item_bytes;	       /* sum of key + value bytes of live items */
	uint64_t index_bytes;	       /* malloc'd index memory (hash, directories) */
	uint64_t evictions, expirations;
	uint64_t uploads; /* open upload sessions */
};

/*
 * The pool's pages by use: one entry per slab class holding pages (its
 * chunk size, pages, chunks and chunks holding items), then one with
 * chunk_size 0 for the pages of large values and uploads. Walks the page
 * table once (up to 32768 pages); for scrapes, not for request paths.
 */
struct store_class_stats {
	uint32_t chunk_size; /* 0: whole pages of large values and uploads */
	uint32_t pages;
	uint64_t chunks, chunks_used; /* slab classes only */
};
#define STORE_MAX_CLASSES 128
/* Fills at most max entries; returns how many. */
int store_class_stats(struct store *s, struct store_class_stats *out, int max);

/* Open a store (maps the pool). Returns 0 or -ENOMEM/-EINVAL. */
int store_open(struct store **out, const struct store_config *cfg);
void store_close(struct store *s);
void *store_pool_base(struct store *s);
/*
 * The memfd the pool is mapped from (the store keeps it open), or -1 when the
 * pool is anonymous memory. Byte i of the pool is byte i of the file.
 */
int store_pool_fd(struct store *s);
size_t store_pool_size(struct store *s);
void store_stats(struct store *s, struct store_stats *out);

/*
 * Pins. An item holds at most STORE_REF_MAX pins (its refcount is 16 bits;
 * the rest is kept for the store's own short pins), of which long-lived ones
 * (store_pin) at most STORE_PIN_MAX, so the short pins of transfers always
 * find room (a server has at most 4 x 256 requests in flight). A pinned item
 * keeps its bytes and attributes' size and version: it is never evicted or
 * freed, and a replaced, deleted, renamed or expired one lives on, unlinked,
 * until its last release.
 */
#define STORE_REF_MAX 0xfffeu
#define STORE_PIN_MAX (STORE_REF_MAX - 4096u)

/*
 * Look key up and pin it. now = unix seconds (for expiry). Marks it
 * recently used. Returns 0, -ENOENT (absent or expired), -EBUSY (the item
 * holds STORE_REF_MAX pins).
 */
int store_get(struct store *s, const void *key, size_t klen, int64_t now, struct item **out);
/*
 * Like store_get, for a pin held long (a reader's open file): -EBUSY once the
 * item holds STORE_PIN_MAX pins.
 */
int store_pin(struct store *s, const void *key, size_t klen, int64_t now, struct item **out);
/*
 * One more pin on it, which the caller holds pinned (e.g. for a transfer
 * that may outlive the caller's own pin). Returns 0 or -EBUSY (STORE_REF_MAX).
 */
int store_item_ref(struct store *s, struct item *it);
/* Unpin; frees the item if it was deleted/replaced meanwhile. */
void store_release(struct store *s, struct item *it);
void store_item_attr(const struct item *it, struct proto_attr *out);
/*
 * Fill iov (at most max entries) with the pool ranges holding value bytes
 * [off, off+len) (clamped to the value size). Returns the entries used;
 * *covered = bytes covered (less than requested when max was too small:
 * call again from off + *covered). Needs no lock on a pinned item (Locking).
 */
size_t store_item_iov(const struct item *it, uint64_t off, uint64_t len, struct iovec *iov,
		      size_t max, uint64_t *covered);

/*
 * Insert or replace key with a copy of val. *version (may be NULL) gets the
 * new version. a (may be NULL; so for store_upload_commit): the fields not in
 * its mask take proto_setattr's defaults; a given mode never carries
 * PROTO_MODE_UNSET (it is stripped).
 */
int store_put(struct store *s, const void *key, size_t klen, const void *val, size_t vlen,
	      const struct proto_setattr *a, int64_t now, uint64_t *version);
/* -ENOENT when absent. */
int store_delete(struct store *s, const void *key, size_t klen);
int store_stat(struct store *s, const void *key, size_t klen, int64_t now, struct proto_attr *out);
/*
 * Apply the PROTO_SET_* fields of a; the version does not change, the ctime
 * does (a non-empty mask).
 */
int store_setattr(struct store *s, const void *key, size_t klen, const struct proto_setattr *a,
		  int64_t now, struct proto_attr *out);
/*
 * Atomic rename, attributes kept but the ctime (now). -ENOENT (no src),
 * -EEXIST (dst exists and noreplace).
 *
 * Directory times: store_put and store_upload_commit of a new key,
 * store_delete and store_rename (both names) set the mtime and ctime of the
 * marker key of the key's directory ("a/b/" for "a/b/c" and "a/b/c/") when
 * this store holds one. Eviction and expiry do not.
 */
int store_rename(struct store *s, const void *src, size_t slen, const void *dst, size_t dlen,
		 int noreplace);

/*
 * List keys starting with prefix in byte order, after cursor (exclusive;
 * clen 0 = from the start). delim '/' folds keys with a further '/' after
 * the prefix into one entry, name = prefix .. '/' (attr NULL); delim 0 lists
 * all keys. cb returns non-zero to stop (that entry is not counted as
 * delivered: resume with the last delivered name as cursor). Visits only
 * the entries listed, not every key. Returns entries delivered, or -errno.
 */
typedef int (*store_list_cb)(void *arg, const char *name, size_t nlen, const struct proto_attr *a);
long store_list(struct store *s, const void *prefix, size_t plen, char delim, const void *cursor,
		size_t clen, int64_t now, store_list_cb cb, void *arg);

/* True when some key starts with prefix (e.g. "dir/"); for rmdir checks. */
int store_has_prefix(struct store *s, const void *prefix, size_t plen, int64_t now);

/*
 * Uploads. open: empty, or (keep) a copy of the current value. Writing is
 * two-step so RMA can land straight in the pool: store_upload_iov reserves
 * [off, off+len) (allocating pages, growing the size, zero-filling holes) and
 * returns the pool ranges to receive into. Returns entries used, or -ENOSPC /
 * -EFBIG; *covered as for store_item_iov.
 * commit publishes atomically (readers see the old or the new value) and frees
 * the upload; abort frees it.
 */
int store_upload_open(struct store *s, const void *key, size_t klen, int keep, int64_t now,
		      struct upload **out);
long store_upload_iov(struct store *s, struct upload *up, uint64_t off, uint64_t len,
		      struct iovec *iov, size_t max, uint64_t *covered);
/*
 * Like store_item_iov over the upload's pending bytes: the pool ranges holding
 * [off, off+len) clamped to the upload's size (holes read as the zeroes they
 * were filled with). Returns the entries used (0 at or after the end);
 * *covered as for store_item_iov. Never allocates or changes anything; the
 * ranges stay valid until the upload is next written, truncated or freed.
 */
size_t store_upload_read_iov(struct store *s, struct upload *up, uint64_t off, uint64_t len,
			     struct iovec *iov, size_t max, uint64_t *covered);
int store_upload_truncate(struct store *s, struct upload *up, uint64_t size);
uint64_t store_upload_size(const struct upload *up);
/*
 * Without the store lock, by the upload's owner right after the locked call
 * that asked for it (store_upload_open with keep, store_upload_iov past the
 * end, store_upload_truncate growing it): write the bytes that call left
 * owed (the old value's copy, or zeroes), so the store lock is never held
 * for work proportional to max_value. Returns the KEEP source item, still
 * pinned, for the caller to store_release under the lock; else NULL. Any
 * locked call on the upload first writes what is still owed itself.
 */
struct item *store_upload_fill(struct store *s, struct upload *up);
int store_upload_commit(struct store *s, struct upload *up, const struct proto_setattr *a,
			int64_t now, struct proto_attr *out);
void store_upload_abort(struct store *s, struct upload *up);

/* Reclaim up to budget expired items. Returns how many. */
int store_expire(struct store *s, int64_t now, int budget);

#endif
