/*
 * store_int: what the store's files share; only store_*.c include it (the
 * rest of the server goes through store.h). Like memcached's slabs.c /
 * items.c / assoc.c:
 *   store_slab.c    pool, pages, slab classes, CLOCK eviction
 *   store_index.c   key hash (the lookup itself is inline here: the GET path)
 *   store_dir.c     ordered per-directory index, listing
 *   store_upload.c  upload sessions
 *   store.c         item life, the public item calls, expiry
 *
 * Every function declared here runs under the store lock (store.h) and none
 * takes it. Struct fields are the store lock's unless marked otherwise.
 *
 * Items
 *   56-byte header, key, then either the value (small item) or, with
 *   large set: padding to 4, {u32 n_ext, u32 tail_len}, n_ext x {i32 page
 *   delta from the item's own page, u32 pages}, then tail_len value bytes
 *   (the last bytes of the value, kept in the chunk instead of a mostly empty
 *   page). Value bytes [0, size - tail_len) are the extents' pages in order.
 */
#ifndef KVFS_STORE_INT_H
#define KVFS_STORE_INT_H

#include "common/hash.h"
#include "store.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define PAGE	    ((uint64_t)STORE_PAGE_SIZE)
#define PAGE_SHIFT  20
#define MAX_PAGES   32768u /* 32 GiB: refs are uint32 in 8-byte units */
#define MAX_CHUNK   (512u << 10)
#define MAX_CLASSES 128 /* 118 are made */
#define NONE	    UINT32_MAX
#define HDR	    56u

enum { PK_FREE = 0, PK_SLAB, PK_LARGE, PK_HELD };

#define IF_REF	  1u /* CLOCK reference bit */
#define IF_LINKED 2u /* in the key and directory indexes */
#define IF_ALLOC  4u /* chunk holds an item (clear = free chunk) */

/*
 * An item header. Locks: all of it is the store lock's (store.h), except
 * that store_item_iov reads vsize, klen1 and large, the key, the extent table
 * and the value bytes without it, on an item its caller holds pinned. Those
 * are written only before the item is published, and never while anybody
 * else holds a pin (rename's page move clears large under its own, only
 * pin). What the store changes on a pinned item (refcount, flags, the
 * attributes) lies outside their bit-field run, which C11 counts as one
 * memory location: refcount and flags are plain integers, not bit-fields.
 */
struct item {
	__extension__ uint64_t version : 48; /* store lock (set before publish) */
	uint16_t refcount;		     /* store lock */
	__extension__ uint64_t vsize : 36;   /* fixed while pinned; <= 32 GiB pool */
	__extension__ uint64_t klen1 : 12;   /* fixed while pinned: key length - 1 */
	__extension__ uint64_t cls : 7;	     /* fixed while pinned: slab class */
	__extension__ uint64_t large : 1;    /* fixed while pinned: value in pages */
	uint8_t flags;			     /* store lock: IF_* */
	int64_t mtime_ns;		     /* store lock */
	int64_t atime_ns;		     /* store lock: as set, never by reads */
	int64_t ctime_ns;		     /* store lock: the store's clock (change_ns) */
	uint32_t expiry;		     /* store lock: unix seconds, 0 = never */
	uint32_t mode, uid, gid;	     /* store lock */
};
/*
 * 56 bytes: the two times added for atime and ctime (16) and no padding; an
 * 8-aligned struct with three 64-bit nanosecond times can be no smaller.
 */
_Static_assert(sizeof(struct item) == HDR, "item header must be 56 bytes");
_Static_assert(((uint64_t)MAX_PAGES << PAGE_SHIFT) < (1ull << 36), "vsize holds any value");
_Static_assert(MAX_CLASSES <= 128, "cls holds any class");
_Static_assert(PROTO_MAX_KEY <= 4096, "klen1 holds any key length");
_Static_assert(STORE_REF_MAX < 0xffff, "store_get must leave room for one internal pin");

struct page {
	uint8_t kind, cls;
	uint16_t pad;
	uint32_t nused;	       /* SLAB: chunks holding items */
	uint32_t carved;       /* SLAB: chunks [0, carved) were initialised */
	uint32_t free_head;    /* SLAB: free chunk list (chunk indices) */
	uint32_t npinned;      /* SLAB: items with refcount > 0 */
	uint32_t owner;	       /* LARGE: ref of the owning item */
	uint32_t prev, next;   /* SLAB: all pages of the class */
	uint32_t aprev, anext; /* SLAB: pages of the class with a free chunk */
	uint64_t tick;	       /* last touched */
};

struct sclass {
	uint32_t size, perpage;
	uint32_t head, tail; /* all pages */
	uint32_t avail;	     /* pages with a free chunk */
	uint32_t hand_pg, hand_idx;
	uint32_t npages;
};

struct dnode;
struct upload;

/*
 * Locks: every field is the store lock's except those marked "fixed", which
 * store_open sets and nothing changes after (store_pool_* read them unlocked).
 */
struct store {
	/* pool (store_slab.c) */
	uint8_t *base;	    /* fixed */
	void *map;	    /* fixed */
	size_t map_len;	    /* fixed */
	int pool_fd;	    /* fixed: memfd behind the pool, or -1 */
	uint32_t npages;    /* fixed */
	uint64_t max_value; /* fixed */
	int evict_none;	    /* fixed */
	void (*evicted)(void *arg, const void *key, size_t klen); /* fixed: store_config's */
	void *evicted_arg;					  /* fixed */

	struct page *pg;
	uint64_t *freemap;
	uint32_t nfree;

	struct sclass cls[MAX_CLASSES];
	uint32_t ncls;

	uint64_t tick, next_version;
	uint64_t seed; /* fixed */
	int64_t now;
	int64_t last_change_ns; /* change_ns's last stamp */

	/* key hash (store_index.c) */
	uint32_t *ht;
	uint32_t htn, htcount;
	uint32_t rmask; /* fixed: slot bits holding the ref; the rest hold hash bits */

	/* directory index (store_dir.c) */
	struct dnode *root;
	struct dnode **dm;
	uint32_t dmn, dmcount;
	uint64_t dir_bytes;

	uint64_t keys, item_bytes, evictions, expirations, nuploads;
	struct upload *uploads; /* store_upload.c */

	uint32_t exp_pg, exp_idx;
	char namebuf[PROTO_MAX_KEY + 1];
};

/* ---------------------------------------------------------------- helpers */

static inline uint32_t ikl(const struct item *it)
{
	return (uint32_t)it->klen1 + 1;
}

static inline const uint8_t *ikey(const struct item *it)
{
	return (const uint8_t *)it + HDR;
}

static inline uint8_t *ikey_w(struct item *it)
{
	return (uint8_t *)it + HDR;
}

static inline struct item *r2i(const struct store *s, uint32_t ref)
{
	return (struct item *)(s->base + ((size_t)ref << 3));
}

static inline uint32_t i2r(const struct store *s, const struct item *it)
{
	return (uint32_t)(((const uint8_t *)it - s->base) >> 3);
}

static inline uint32_t i2pg(const struct store *s, const struct item *it)
{
	return (uint32_t)(((const uint8_t *)it - s->base) >> PAGE_SHIFT);
}

static inline uint8_t *pgaddr(const struct store *s, uint32_t p)
{
	return s->base + ((size_t)p << PAGE_SHIFT);
}

static inline struct item *chunk_at(const struct store *s, uint32_t p, uint32_t size, uint32_t idx)
{
	return (struct item *)(pgaddr(s, p) + (size_t)idx * size);
}

static inline int kcmp(const void *a, size_t al, const void *b, size_t bl)
{
	size_t m = al < bl ? al : bl;
	int r = m ? memcmp(a, b, m) : 0;

	if (r)
		return r;
	return (al > bl) - (al < bl);
}

static inline int icmp(const struct item *it, const void *k, size_t kl)
{
	return kcmp(ikey(it), ikl(it), k, kl);
}

static inline bool starts_with(const void *s, size_t sl, const void *p, size_t pl)
{
	return sl >= pl && (pl == 0 || memcmp(s, p, pl) == 0);
}

static inline size_t align4(size_t x)
{
	return (x + 3) & ~(size_t)3;
}

static inline bool expired(const struct item *it, int64_t now)
{
	return it->expiry && (int64_t)it->expiry < now;
}

static inline void note_now(struct store *s, int64_t now)
{
	if (now > s->now)
		s->now = now;
}

static inline int check_key(size_t klen)
{
	if (klen == 0)
		return -EINVAL;
	if (klen > PROTO_MAX_KEY)
		return -ENAMETOOLONG;
	return 0;
}

/* Large item layout. */
static inline uint32_t *lg_tab(const struct item *it)
{
	return (uint32_t *)((uint8_t *)it + align4(HDR + ikl(it)));
}

static inline size_t lg_size(size_t klen, size_t next, size_t tail)
{
	return align4(HDR + klen) + 8 + 8 * next + tail;
}

static inline uint8_t *lg_tailp(const struct item *it)
{
	uint32_t *t = lg_tab(it);

	return (uint8_t *)(t + 2 + 2 * (size_t)t[0]);
}

/* Call fn(s, page, arg) for each page of a large item's extents. */
static inline void lg_each_page(struct store *s, const struct item *it,
				void (*fn)(struct store *s, uint32_t page, void *arg), void *arg)
{
	const uint32_t *t = lg_tab(it);
	int64_t ip = i2pg(s, it);

	for (uint32_t e = 0; e < t[0]; e++) {
		int64_t p0 = ip + (int32_t)t[2 + 2 * e];

		for (uint32_t k = 0; k < t[3 + 2 * e]; k++)
			fn(s, (uint32_t)(p0 + k), arg);
	}
}

static inline const uint8_t *item_page_base(const struct item *it)
{
	return (const uint8_t *)((uintptr_t)it & ~(uintptr_t)(PAGE - 1));
}

/* -------------------------------------------- pool and slabs (store_slab.c) */

/*
 * Map the pool of npages and set up its pages and slab classes; with
 * prefault, give every page its memory now (see pool_populate). 0 or -ENOMEM.
 */
int slab_open(struct store *s, uint32_t npages, int prefault);
void slab_close(struct store *s);
void page_put(struct store *s, uint32_t p);
/* A whole page (kind set by the caller), evicting under lru. */
uint32_t page_alloc(struct store *s, uint32_t hint, uint8_t kind);
/* Allocate n HELD pages (preferring consecutive ones). */
int pages_alloc(struct store *s, uint32_t *pages, uint32_t from, uint32_t n);
void pages_free(struct store *s, uint32_t *pages, uint32_t n);
uint32_t class_for(const struct store *s, size_t size);
/*
 * A chunk of class ci, returned as a pinned, unlinked item with a zeroed
 * header. NULL = -ENOSPC.
 */
struct item *chunk_alloc(struct store *s, uint32_t ci);
void chunk_free(struct store *s, struct item *it);
/* Mark it recently used: its CLOCK bit and its pages' ticks. */
void touch(struct store *s, struct item *it);

/* ------------------------------------------------ item life (store.c) */

void item_free(struct store *s, struct item *it);
/* Unlink it, counted as an eviction. */
void item_evict(struct store *s, struct item *it);
/* Live (linked, unexpired) item for key; an expired one is reclaimed. */
struct item *find_live(struct store *s, const void *key, size_t klen, int64_t now);
/*
 * Make the (pinned, unlinked) item it visible under its key, replacing any
 * current item (which is freed, or on its last release when pinned).
 */
int publish(struct store *s, struct item *it, int64_t now);

/* Value bytes from a buffer, an item or an upload's pages. */
struct vsrc {
	const uint8_t *buf;
	const struct item *it;
	const uint32_t *pages;
};

void vsrc_read(const struct store *s, const struct vsrc *v, uint64_t off, void *dst, uint64_t len);
/* A new pinned, unlinked item for key with the given value. */
struct item *make_item(struct store *s, const void *key, size_t klen, uint64_t size,
		       const struct vsrc *v, int *err);
/*
 * Build a large item (pinned, unlinked) over pages[0, np) (HELD pages holding
 * value bytes [0, size), np = ceil(size / PAGE)). The last partial page is
 * copied into the chunk when it fits there. On success the pages belong to
 * the item (or are freed); on failure (NULL) they are untouched.
 */
struct item *build_large(struct store *s, const void *key, size_t klen, uint64_t size,
			 const uint32_t *pages);
/*
 * The attributes of a new value for it's key: a's fields, the defaults of
 * proto_setattr for the others (atime: that of the key's current value when
 * there is one), ctime now.
 */
void set_new_attrs(struct store *s, struct item *it, const struct proto_setattr *a, int64_t now);
/*
 * A ctime stamp for a change at now (unix seconds): the real clock in ns
 * while it lies in that second, else the second's start (a caller with its
 * own clock, as the unit tests), never below the last stamp given in the
 * same second. A vDSO clock_gettime, no syscall.
 */
int64_t change_ns(struct store *s, int64_t now);
/*
 * A key was created or removed: the marker of the directory holding it
 * (key "a/b/c" or "a/b/c/" -> marker "a/b/"), when this store has one, gets
 * mtime and ctime now. Nothing for a key at the top.
 */
void touch_parent(struct store *s, const void *key, size_t klen, int64_t now);

/*
 * Callers keep refcount <= STORE_REF_MAX (0xfffe), so the store's own short
 * pins (rename, upload keep: one at a time, under the caller's lock) never
 * wrap the 16-bit count.
 */
static inline void pin(struct store *s, struct item *it)
{
	if (it->refcount++ == 0)
		s->pg[i2pg(s, it)].npinned++;
}

static inline void unpin(struct store *s, struct item *it)
{
	if (--it->refcount == 0) {
		s->pg[i2pg(s, it)].npinned--;
		if (!(it->flags & IF_LINKED))
			item_free(s, it);
	}
}

/* ------------------------------------------------ key hash (store_index.c) */

/* The empty table for the pool's refs. 0 or -ENOMEM. */
int index_open(struct store *s);
void index_close(struct store *s);
int ht_insert(struct store *s, struct item *it, uint64_t h);
/* Slot (from ht_find) now holds it, an item with the same key. */
void ht_set(struct store *s, uint32_t slot, const struct item *it, uint64_t h);
void ht_remove_slot(struct store *s, uint32_t i);

static inline uint32_t ht_home(uint64_t h, uint32_t n)
{
	return (uint32_t)(((h >> 32) * (uint64_t)n) >> 32);
}

static inline uint64_t item_hash(const struct store *s, const struct item *it)
{
	return hash64(ikey(it), ikl(it), s->seed);
}

/*
 * A slot holds a ref; refs of pools below 32 GiB leave high bits unused, and
 * those hold a few bits of the key's hash (a free filter against probing
 * into the pool for every occupied slot). tbits = 0 for a 32 GiB pool.
 */
static inline uint32_t slot_ref(const struct store *s, uint32_t v)
{
	return v & s->rmask;
}

static inline uint32_t ht_ref(const struct store *s, uint32_t slot)
{
	return slot_ref(s, s->ht[slot]);
}

/* Slot of key, or NONE. */
static inline uint32_t ht_find(const struct store *s, const void *key, size_t klen, uint64_t h)
{
	uint32_t n = s->htn, i = ht_home(h, n), tag = (uint32_t)h & ~s->rmask;

	for (;;) {
		uint32_t v = s->ht[i];

		if (v == NONE)
			return NONE;
		if ((v & ~s->rmask) == tag) {
			const struct item *it = r2i(s, slot_ref(s, v));

			if (ikl(it) == klen && memcmp(ikey(it), key, klen) == 0)
				return i;
		}
		if (++i == n)
			i = 0;
	}
}

/* ------------------------------------------ directory index (store_dir.c) */

/* The root node and an empty node table. 0 or -ENOMEM. */
int dir_open(struct store *s);
void dir_close(struct store *s);
int dir_insert(struct store *s, struct item *it);
void dir_remove(struct store *s, struct item *it);
void dir_replace(struct store *s, struct item *old, struct item *nw);

/* ------------------------------------------------ uploads (store_upload.c) */

/* Free every open upload's memory (store_close: the pool goes too). */
void uploads_close(struct store *s);

#endif
