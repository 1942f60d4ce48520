/*
 * store: pool, slab allocator, key index, directory index, CLOCK eviction,
 * expiry and uploads. See store.h for the model; the implementation notes:
 *
 * Pool
 *   One mmap of npages * 1 MiB, aligned to 1 MiB (so an item can find the
 *   start of its own page from its address). Items are referenced by uint32
 *   "refs" = pool offset / 8, which limits the pool to 32 GiB (larger memory
 *   is rejected with -EINVAL). Free pages are kept in a bitmap and handed out
 *   lowest-first (or the page after a hint) so multi-page values coalesce.
 *
 * Pages
 *   FREE, SLAB (cut into chunks of one class), LARGE (value bytes of a large
 *   item; owner = the item's ref) or HELD (an upload's pages or a large value
 *   under construction; never evicted).
 *
 * Items
 *   40-byte header, key, then either the value (small item) or, with
 *   large set: padding to 4, {u32 n_ext, u32 tail_len}, n_ext x {i32 page
 *   delta from the item's own page, u32 pages}, then tail_len value bytes
 *   (the last bytes of the value, kept in the chunk instead of a mostly empty
 *   page). Value bytes [0, size - tail_len) are the extents' pages in order.
 *
 * Indexes
 *   Key hash: open addressing, linear probing, backward-shift deletion, uint32
 *   refs only (keys compared in the pool). Directory index: dir path ->
 *   node; a node keeps its direct items sorted in blocks of <= 256 refs, its
 *   child nodes sorted, and a count of all items below it.
 */
#include "common/hash.h"
#include "store.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HUGE_PAGE	   (2u << 20) /* transparent huge page */
#define PAGE		   ((uint64_t)STORE_PAGE_SIZE)
#define PAGE_SHIFT	   20
#define MIN_PAGES	   16
#define MAX_PAGES	   32768u /* 32 GiB: refs are uint32 in 8-byte units */
#define MIN_CHUNK	   48u
#define MAX_CHUNK	   (512u << 10)
#define MAX_CLASSES	   128 /* 118 are made */
#define NONE		   UINT32_MAX
#define HDR		   40u
#define DBLK		   256u
#define EXAMINE_PER_BUDGET 32

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
	uint32_t expiry;		     /* store lock: unix seconds, 0 = never */
	uint32_t mode, uid, gid;	     /* store lock */
};
_Static_assert(sizeof(struct item) == HDR, "item header must be 40 bytes");
_Static_assert(((uint64_t)MAX_PAGES << PAGE_SHIFT) < (1ull << 36), "vsize holds any value");
_Static_assert(MAX_CLASSES <= 128, "cls holds any class");
_Static_assert(KVFS_MAX_KEY <= 4096, "klen1 holds any key length");
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

struct dblk {
	uint32_t n;
	uint32_t ref[DBLK];
};

struct dnode {
	uint64_t hash;
	struct dnode *parent;
	char *path; /* ends in '/', "" for the root */
	uint32_t plen;
	uint32_t nblk, cblk;
	struct dblk **blk;
	uint64_t *bkey; /* per block: 8 bytes of its first key after path, big-endian */
	uint32_t nkid, ckid;
	struct dnode **kid;
	uint64_t ndesc; /* items in this node and below */
};

struct upload {
	struct upload *prev, *next;
	uint32_t *pages;
	uint32_t np, cap;
	uint64_t size;
	uint32_t klen;
	uint8_t key[];
};

struct store {
	uint8_t *base;
	void *map;
	size_t map_len;
	int pool_fd; /* memfd behind the pool, or -1 */
	uint32_t npages;
	uint64_t max_value;
	int evict_none;

	struct page *pg;
	uint64_t *freemap;
	uint32_t nfree;

	struct sclass cls[MAX_CLASSES];
	uint32_t ncls;

	uint64_t tick, next_version, seed;
	int64_t now;

	uint32_t *ht;
	uint32_t htn, htcount;
	uint32_t rmask; /* slot bits holding the ref; the rest hold hash bits */

	struct dnode *root;
	struct dnode **dm;
	uint32_t dmn, dmcount;
	uint64_t dir_bytes;

	uint64_t keys, item_bytes, evictions, expirations, nuploads;
	struct upload *uploads;

	uint32_t exp_pg, exp_idx;
	char namebuf[KVFS_MAX_KEY + 1];
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

static int check_key(size_t klen)
{
	if (klen == 0)
		return -EINVAL;
	if (klen > KVFS_MAX_KEY)
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

static inline const uint8_t *item_page_base(const struct item *it)
{
	return (const uint8_t *)((uintptr_t)it & ~(uintptr_t)(PAGE - 1));
}

/* -------------------------------------------------------- page allocator */

static inline bool page_isfree(const struct store *s, uint32_t p)
{
	return (s->freemap[p >> 6] >> (p & 63)) & 1;
}

static void page_put(struct store *s, uint32_t p)
{
	s->pg[p].kind = PK_FREE;
	s->pg[p].owner = NONE;
	s->freemap[p >> 6] |= 1ull << (p & 63);
	s->nfree++;
}

static uint32_t page_take(struct store *s, uint32_t hint)
{
	uint32_t p = NONE;

	if (!s->nfree)
		return NONE;
	if (hint < s->npages && page_isfree(s, hint)) {
		p = hint;
	} else {
		uint32_t nw = (s->npages + 63) / 64;

		for (uint32_t w = 0; w < nw; w++) {
			if (s->freemap[w]) {
				p = w * 64 + (uint32_t)__builtin_ctzll(s->freemap[w]);
				break;
			}
		}
		if (p == NONE)
			return NONE;
	}
	s->freemap[p >> 6] &= ~(1ull << (p & 63));
	s->nfree--;
	s->pg[p].tick = ++s->tick;
	s->pg[p].owner = NONE;
	return p;
}

static void item_evict(struct store *s, struct item *it);

/*
 * Empty the least recently touched page that has nothing pinned (a slab page:
 * evict all its items; a large value's page: evict that item). Returns false
 * when no page can be emptied.
 */
static bool evict_page(struct store *s)
{
	uint32_t best = NONE;
	uint64_t bt = 0;

	for (uint32_t p = 0; p < s->npages; p++) {
		const struct page *pg = &s->pg[p];

		if (pg->kind == PK_SLAB) {
			if (pg->npinned)
				continue;
		} else if (pg->kind == PK_LARGE) {
			if (pg->owner == NONE || r2i(s, pg->owner)->refcount)
				continue;
		} else {
			continue;
		}
		if (best == NONE || pg->tick < bt) {
			best = p;
			bt = pg->tick;
		}
	}
	if (best == NONE)
		return false;
	if (s->pg[best].kind == PK_LARGE) {
		item_evict(s, r2i(s, s->pg[best].owner));
		return true;
	}
	uint32_t size = s->cls[s->pg[best].cls].size;
	uint32_t carved = s->pg[best].carved;

	for (uint32_t i = 0; i < carved && s->pg[best].kind == PK_SLAB; i++) {
		struct item *it = chunk_at(s, best, size, i);

		if ((it->flags & IF_ALLOC) && (it->flags & IF_LINKED) && !it->refcount)
			item_evict(s, it);
	}
	return s->pg[best].kind == PK_FREE;
}

/* A whole page (kind set by the caller), evicting under lru. */
static uint32_t page_alloc(struct store *s, uint32_t hint, uint8_t kind)
{
	uint32_t p = page_take(s, hint);

	while (p == NONE && !s->evict_none) {
		if (!evict_page(s))
			break;
		p = page_take(s, hint);
	}
	if (p != NONE) {
		s->pg[p].kind = kind;
		s->pg[p].owner = NONE;
	}
	return p;
}

/* -------------------------------------------------------------- slab pages */

static void avail_add(struct store *s, struct sclass *c, uint32_t p)
{
	struct page *pg = &s->pg[p];

	pg->aprev = NONE;
	pg->anext = c->avail;
	if (c->avail != NONE)
		s->pg[c->avail].aprev = p;
	c->avail = p;
}

static void avail_del(struct store *s, struct sclass *c, uint32_t p)
{
	struct page *pg = &s->pg[p];

	if (pg->aprev != NONE)
		s->pg[pg->aprev].anext = pg->anext;
	else
		c->avail = pg->anext;
	if (pg->anext != NONE)
		s->pg[pg->anext].aprev = pg->aprev;
	pg->aprev = pg->anext = NONE;
}

static inline bool page_has_free(const struct page *pg, const struct sclass *c)
{
	return pg->free_head != NONE || pg->carved < c->perpage;
}

static void slab_init(struct store *s, uint32_t p, uint32_t ci)
{
	struct sclass *c = &s->cls[ci];
	struct page *pg = &s->pg[p];

	pg->kind = PK_SLAB;
	pg->cls = (uint8_t)ci;
	pg->nused = pg->carved = pg->npinned = 0;
	pg->free_head = NONE;
	pg->owner = NONE;
	pg->next = NONE;
	pg->prev = c->tail;
	if (c->tail != NONE)
		s->pg[c->tail].next = p;
	else
		c->head = p;
	c->tail = p;
	c->npages++;
	avail_add(s, c, p);
}

static void slab_release(struct store *s, uint32_t p)
{
	struct page *pg = &s->pg[p];
	struct sclass *c = &s->cls[pg->cls];

	if (page_has_free(pg, c))
		avail_del(s, c, p);
	if (c->hand_pg == p) {
		c->hand_pg = pg->next;
		c->hand_idx = 0;
	}
	if (pg->prev != NONE)
		s->pg[pg->prev].next = pg->next;
	else
		c->head = pg->next;
	if (pg->next != NONE)
		s->pg[pg->next].prev = pg->prev;
	else
		c->tail = pg->prev;
	c->npages--;
	page_put(s, p);
}

static void chunk_free(struct store *s, struct item *it)
{
	uint32_t p = i2pg(s, it);
	struct page *pg = &s->pg[p];
	struct sclass *c = &s->cls[pg->cls];
	uint32_t idx = (uint32_t)(((uint8_t *)it - pgaddr(s, p)) / c->size);
	bool had = page_has_free(pg, c);

	it->flags = 0;
	it->refcount = 0;
	memcpy(&it->mtime_ns, &pg->free_head, sizeof(uint32_t));
	pg->free_head = idx;
	pg->nused--;
	if (!pg->nused) {
		slab_release(s, p);
		return;
	}
	if (!had)
		avail_add(s, c, p);
}

static uint32_t class_for(const struct store *s, size_t size)
{
	uint32_t lo = 0, hi = s->ncls - 1;

	if (size <= 512)
		return size <= MIN_CHUNK ? 0 : (uint32_t)((size - MIN_CHUNK + 7) / 8);
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;

		if (s->cls[mid].size >= size)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

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

static void item_free(struct store *s, struct item *it);

static inline void unpin(struct store *s, struct item *it)
{
	if (--it->refcount == 0) {
		s->pg[i2pg(s, it)].npinned--;
		if (!(it->flags & IF_LINKED))
			item_free(s, it);
	}
}

/*
 * CLOCK sweep of class ci: skip pinned items, clear reference bits, evict the
 * first unreferenced item. False when nothing in the class can be evicted.
 */
static bool clock_evict(struct store *s, uint32_t ci)
{
	struct sclass *c = &s->cls[ci];
	uint64_t limit = 2 * (uint64_t)c->npages * (c->perpage + 1) + 2;
	uint32_t p = c->hand_pg, idx = c->hand_idx;

	while (limit--) {
		if (p == NONE) {
			p = c->head;
			idx = 0;
			if (p == NONE)
				break;
		}
		struct page *pg = &s->pg[p];

		if (idx >= pg->carved) {
			p = pg->next;
			idx = 0;
			continue;
		}
		struct item *it = chunk_at(s, p, c->size, idx++);

		if ((it->flags & (IF_ALLOC | IF_LINKED)) != (IF_ALLOC | IF_LINKED) || it->refcount)
			continue;
		if (it->flags & IF_REF) {
			it->flags &= ~IF_REF;
			continue;
		}
		c->hand_pg = p;
		c->hand_idx = idx;
		item_evict(s, it);
		return true;
	}
	c->hand_pg = p;
	c->hand_idx = idx;
	return false;
}

/*
 * A chunk of class ci, returned as a pinned, unlinked item with a zeroed
 * header. NULL = -ENOSPC.
 */
static struct item *chunk_alloc(struct store *s, uint32_t ci)
{
	struct sclass *c = &s->cls[ci];

	for (;;) {
		if (c->avail != NONE) {
			uint32_t p = c->avail;
			struct page *pg = &s->pg[p];
			uint32_t idx;
			struct item *it;

			if (pg->free_head != NONE) {
				idx = pg->free_head;
				it = chunk_at(s, p, c->size, idx);
				memcpy(&pg->free_head, &it->mtime_ns, sizeof(uint32_t));
			} else {
				idx = pg->carved++;
				it = chunk_at(s, p, c->size, idx);
			}
			pg->nused++;
			if (!page_has_free(pg, c))
				avail_del(s, c, p);
			memset(it, 0, HDR);
			it->flags = IF_ALLOC;
			it->cls = ci;
			it->refcount = 1;
			pg->npinned++;
			pg->tick = ++s->tick;
			return it;
		}
		uint32_t p = page_take(s, NONE);

		if (p != NONE) {
			slab_init(s, p, ci);
			continue;
		}
		if (s->evict_none)
			return NULL;
		if (clock_evict(s, ci))
			continue;
		if (evict_page(s))
			continue;
		return NULL;
	}
}

/* ------------------------------------------------------------ hash index */

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

static inline uint32_t mkslot(const struct store *s, uint32_t ref, uint64_t h)
{
	return ref | ((uint32_t)h & ~s->rmask);
}

static inline uint32_t ht_ref(const struct store *s, uint32_t slot)
{
	return slot_ref(s, s->ht[slot]);
}

/* Slot of key, or NONE. */
static uint32_t ht_find(const struct store *s, const void *key, size_t klen, uint64_t h)
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

static void ht_place(uint32_t *t, uint32_t n, uint32_t v, uint64_t h)
{
	uint32_t i = ht_home(h, n);

	while (t[i] != NONE)
		if (++i == n)
			i = 0;
	t[i] = v;
}

static int ht_grow(struct store *s)
{
	uint32_t n = s->htn + s->htn / 2;
	size_t bytes = (size_t)n * sizeof(uint32_t);
	uint32_t *t;

	/* Big tables on huge pages: a lookup at 1M keys should not miss the TLB too. */
	if (bytes >= HUGE_PAGE) {
		bytes = (bytes + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
		t = aligned_alloc(HUGE_PAGE, bytes);
		if (t)
			madvise(t, bytes, MADV_HUGEPAGE);
	} else {
		t = malloc(bytes);
	}
	if (!t)
		return -ENOMEM;
	memset(t, 0xff, (size_t)n * sizeof(*t));
	for (uint32_t i = 0; i < s->htn; i++)
		if (s->ht[i] != NONE)
			ht_place(t, n, s->ht[i], item_hash(s, r2i(s, ht_ref(s, i))));
	free(s->ht);
	s->ht = t;
	s->htn = n;
	return 0;
}

static int ht_insert(struct store *s, struct item *it, uint64_t h)
{
	if ((uint64_t)(s->htcount + 1) * 100 > (uint64_t)s->htn * 70) {
		if (ht_grow(s) && s->htcount + 2 >= s->htn)
			return -ENOMEM;
	}
	ht_place(s->ht, s->htn, mkslot(s, i2r(s, it), h), h);
	s->htcount++;
	return 0;
}

static void ht_remove_slot(struct store *s, uint32_t i)
{
	uint32_t n = s->htn, j = i;

	for (;;) {
		if (++j == n)
			j = 0;
		uint32_t v = s->ht[j];

		if (v == NONE)
			break;
		uint32_t h = ht_home(item_hash(s, r2i(s, slot_ref(s, v))), n);
		uint32_t dh = (j + n - h) % n, di = (j + n - i) % n;

		if (dh >= di) {
			s->ht[i] = v;
			i = j;
		}
	}
	s->ht[i] = NONE;
	s->htcount--;
}

/* ------------------------------------------------------- directory index */

static inline size_t dir_len(const uint8_t *key, size_t klen)
{
	const uint8_t *sl = memrchr(key, '/', klen);

	return sl ? (size_t)(sl - key) + 1 : 0;
}

static inline uint64_t dir_hash(const struct store *s, const void *p, size_t n)
{
	return hash64(p, n, s->seed ^ 0x5bd1e995u);
}

static struct dnode *dir_lookup(const struct store *s, const void *path, size_t plen)
{
	if (plen == 0)
		return s->root;

	uint64_t h = dir_hash(s, path, plen);
	uint32_t mask = s->dmn - 1, i = (uint32_t)h & mask;

	for (;; i = (i + 1) & mask) {
		struct dnode *d = s->dm[i];

		if (!d)
			return NULL;
		if (d->hash == h && d->plen == plen && memcmp(d->path, path, plen) == 0)
			return d;
	}
}

static int dm_grow(struct store *s)
{
	uint32_t n = s->dmn * 2;
	struct dnode **t = calloc(n, sizeof(*t));

	if (!t)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->dmn; i++) {
		struct dnode *d = s->dm[i];

		if (!d)
			continue;
		uint32_t j = (uint32_t)d->hash & (n - 1);

		while (t[j])
			j = (j + 1) & (n - 1);
		t[j] = d;
	}
	free(s->dm);
	s->dm = t;
	s->dir_bytes += (uint64_t)(n - s->dmn) * sizeof(*t);
	s->dmn = n;
	return 0;
}

static void dm_remove(struct store *s, struct dnode *d)
{
	uint32_t mask = s->dmn - 1, i = (uint32_t)d->hash & mask, j;

	while (s->dm[i] != d)
		i = (i + 1) & mask;
	j = i;
	for (;;) {
		j = (j + 1) & mask;
		struct dnode *e = s->dm[j];

		if (!e)
			break;
		uint32_t h = (uint32_t)e->hash & mask;

		if (((j - h) & mask) >= ((j - i) & mask)) {
			s->dm[i] = e;
			i = j;
		}
	}
	s->dm[i] = NULL;
	s->dmcount--;
}

/* Index of the first child of d whose path is >= (or > when upper) p. */
static uint32_t kid_bound(const struct dnode *d, const void *p, size_t pl, bool upper)
{
	uint32_t lo = 0, hi = d->nkid;

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		int c = kcmp(d->kid[mid]->path, d->kid[mid]->plen, p, pl);

		if (c < 0 || (upper && c == 0))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void dnode_free(struct store *s, struct dnode *d)
{
	s->dir_bytes -= sizeof(*d) + d->plen + 1 +
			(uint64_t)d->cblk * (sizeof(*d->blk) + sizeof(*d->bkey)) +
			(uint64_t)d->ckid * sizeof(*d->kid);
	for (uint32_t i = 0; i < d->nblk; i++)
		free(d->blk[i]);
	s->dir_bytes -= (uint64_t)d->nblk * sizeof(struct dblk);
	free(d->blk);
	free(d->bkey);
	free(d->kid);
	free(d->path);
	free(d);
}

/* Free empty nodes from d upwards (never the root). */
static void dir_prune(struct store *s, struct dnode *d)
{
	while (d && d != s->root && d->ndesc == 0 && d->nkid == 0 && d->nblk == 0) {
		struct dnode *par = d->parent;
		uint32_t i = kid_bound(par, d->path, d->plen, false);

		if (i < par->nkid && par->kid[i] == d) {
			memmove(&par->kid[i], &par->kid[i + 1],
				(par->nkid - i - 1) * sizeof(*par->kid));
			par->nkid--;
		}
		dm_remove(s, d);
		dnode_free(s, d);
		d = par;
	}
}

static struct dnode *dir_get(struct store *s, const uint8_t *path, size_t plen)
{
	struct dnode *d = dir_lookup(s, path, plen), *par;

	if (d)
		return d;
	/* parent = path up to the previous '/' */
	par = dir_get(s, path, dir_len(path, plen - 1));
	if (!par)
		return NULL;
	if ((uint64_t)(s->dmcount + 1) * 4 > (uint64_t)s->dmn * 3 && dm_grow(s))
		goto fail;
	if (par->nkid == par->ckid) {
		uint32_t nc = par->ckid ? par->ckid * 2 : 4;
		struct dnode **k = realloc(par->kid, nc * sizeof(*k));

		if (!k)
			goto fail;
		s->dir_bytes += (uint64_t)(nc - par->ckid) * sizeof(*k);
		par->kid = k;
		par->ckid = nc;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		goto fail;
	d->path = malloc(plen + 1);
	if (!d->path) {
		free(d);
		goto fail;
	}
	memcpy(d->path, path, plen);
	d->path[plen] = 0;
	d->plen = (uint32_t)plen;
	d->hash = dir_hash(s, path, plen);
	d->parent = par;
	s->dir_bytes += sizeof(*d) + plen + 1;

	uint32_t i = kid_bound(par, path, plen, false);

	memmove(&par->kid[i + 1], &par->kid[i], (par->nkid - i) * sizeof(*par->kid));
	par->kid[i] = d;
	par->nkid++;

	uint32_t mask = s->dmn - 1, j = (uint32_t)d->hash & mask;

	while (s->dm[j])
		j = (j + 1) & mask;
	s->dm[j] = d;
	s->dmcount++;
	return d;
fail:
	dir_prune(s, par);
	return NULL;
}

static inline const struct item *blk_first(const struct store *s, const struct dblk *b)
{
	return r2i(s, b->ref[0]);
}

/* Bytes [off, off + 8) of a key, big-endian, zero-padded. */
static inline uint64_t key8(const uint8_t *k, size_t kl, size_t off)
{
	uint8_t b[8] = {0};
	uint64_t v;

	if (kl > off)
		memcpy(b, k + off, kl - off < 8 ? kl - off : 8);
	memcpy(&v, b, 8);
	return __builtin_bswap64(v);
}

static void blk_fix(const struct store *s, struct dnode *d, uint32_t i)
{
	const struct item *f = blk_first(s, d->blk[i]);

	d->bkey[i] = key8(ikey(f), ikl(f), d->plen);
}

static void blk_arr_ins(struct dnode *d, uint32_t i, struct dblk *b)
{
	memmove(&d->blk[i + 1], &d->blk[i], (d->nblk - i) * sizeof(*d->blk));
	memmove(&d->bkey[i + 1], &d->bkey[i], (d->nblk - i) * sizeof(*d->bkey));
	d->blk[i] = b;
	d->bkey[i] = 0;
	d->nblk++;
}

static void blk_arr_del(struct dnode *d, uint32_t i)
{
	memmove(&d->blk[i], &d->blk[i + 1], (d->nblk - i - 1) * sizeof(*d->blk));
	memmove(&d->bkey[i], &d->bkey[i + 1], (d->nblk - i - 1) * sizeof(*d->bkey));
	d->nblk--;
}

/*
 * Block that holds (or would hold) key: the last whose first key is <= key.
 * Keys below d's path compare by the cached 8 bytes first (all keys of d
 * start with d->path).
 */
static uint32_t blk_find(const struct store *s, const struct dnode *d, const void *k, size_t kl)
{
	uint32_t lo = 1, hi = d->nblk; /* block 0 also takes keys below its first */
	bool fast = starts_with(k, kl, d->path, d->plen);
	uint64_t t8 = fast ? key8(k, kl, d->plen) : 0;

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		int c;

		if (fast && d->bkey[mid] != t8)
			c = d->bkey[mid] < t8 ? -1 : 1;
		else
			c = icmp(blk_first(s, d->blk[mid]), k, kl);
		if (c <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo - 1;
}

/* First index in b whose key is >= k (> k when upper). */
static uint32_t blk_bound(const struct store *s, const struct dblk *b, const void *k, size_t kl,
			  bool upper)
{
	uint32_t lo = 0, hi = b->n;

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		int c = icmp(r2i(s, b->ref[mid]), k, kl);

		if (c < 0 || (upper && c == 0))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int blk_array_room(struct store *s, struct dnode *d)
{
	if (d->nblk < d->cblk)
		return 0;
	uint32_t nc = d->cblk ? d->cblk * 2 : 1;
	struct dblk **a = realloc(d->blk, nc * sizeof(*a));

	if (!a)
		return -ENOMEM;
	d->blk = a;
	uint64_t *k = realloc(d->bkey, nc * sizeof(*k));

	if (!k)
		return -ENOMEM;
	d->bkey = k;
	s->dir_bytes += (uint64_t)(nc - d->cblk) * (sizeof(*a) + sizeof(*k));
	d->cblk = nc;
	return 0;
}

static int dir_insert(struct store *s, struct item *it)
{
	const uint8_t *key = ikey(it);
	size_t kl = ikl(it);
	struct dnode *d = dir_get(s, key, dir_len(key, kl));
	uint32_t ref = i2r(s, it);

	if (!d)
		return -ENOMEM;
	if (blk_array_room(s, d))
		goto fail;
	if (d->nblk == 0) {
		struct dblk *b = malloc(sizeof(*b));

		if (!b)
			goto fail;
		b->n = 0;
		blk_arr_ins(d, 0, b);
		s->dir_bytes += sizeof(*b);
	}
	uint32_t bi = blk_find(s, d, key, kl);
	struct dblk *b = d->blk[bi];
	uint32_t pos = blk_bound(s, b, key, kl, false);

	if (b->n == DBLK) {
		struct dblk *nb = malloc(sizeof(*nb));

		if (!nb)
			goto fail;
		s->dir_bytes += sizeof(*nb);
		nb->n = DBLK / 2;
		memcpy(nb->ref, b->ref + DBLK / 2, (DBLK / 2) * sizeof(uint32_t));
		b->n = DBLK / 2;
		blk_arr_ins(d, bi + 1, nb);
		blk_fix(s, d, bi + 1);
		if (pos > DBLK / 2) {
			b = nb;
			bi++;
			pos -= DBLK / 2;
		}
	}
	memmove(&b->ref[pos + 1], &b->ref[pos], (b->n - pos) * sizeof(uint32_t));
	b->ref[pos] = ref;
	b->n++;
	if (pos == 0)
		blk_fix(s, d, bi);
	for (struct dnode *x = d; x; x = x->parent)
		x->ndesc++;
	return 0;
fail:
	if (d->nblk == 0)
		dir_prune(s, d);
	return -ENOMEM;
}

/* Locate it in its directory node: returns the node, *bi, *pos. */
static struct dnode *dir_locate(const struct store *s, const struct item *it, uint32_t *bi,
				uint32_t *pos)
{
	const uint8_t *key = ikey(it);
	size_t kl = ikl(it);
	struct dnode *d = dir_lookup(s, key, dir_len(key, kl));

	if (!d || !d->nblk)
		return NULL;
	*bi = blk_find(s, d, key, kl);
	*pos = blk_bound(s, d->blk[*bi], key, kl, false);
	if (*pos >= d->blk[*bi]->n || d->blk[*bi]->ref[*pos] != i2r(s, it))
		return NULL;
	return d;
}

static void dir_remove(struct store *s, struct item *it)
{
	uint32_t bi, pos;
	struct dnode *d = dir_locate(s, it, &bi, &pos);

	if (!d)
		return;
	struct dblk *b = d->blk[bi];

	memmove(&b->ref[pos], &b->ref[pos + 1], (b->n - pos - 1) * sizeof(uint32_t));
	b->n--;
	if (b->n == 0) {
		free(b);
		s->dir_bytes -= sizeof(*b);
		blk_arr_del(d, bi);
		b = NULL;
	} else if (pos == 0) {
		blk_fix(s, d, bi);
	}
	if (b && b->n < DBLK / 4) {
		struct dblk *a = NULL, *c = NULL;
		uint32_t ci = 0;

		if (bi + 1 < d->nblk && b->n + d->blk[bi + 1]->n <= DBLK * 3 / 4) {
			a = b;
			c = d->blk[bi + 1];
			ci = bi + 1;
		} else if (bi > 0 && b->n + d->blk[bi - 1]->n <= DBLK * 3 / 4) {
			a = d->blk[bi - 1];
			c = b;
			ci = bi;
		}
		if (a) {
			memcpy(&a->ref[a->n], c->ref, c->n * sizeof(uint32_t));
			a->n += c->n;
			free(c);
			s->dir_bytes -= sizeof(*c);
			blk_arr_del(d, ci);
		}
	}
	for (struct dnode *x = d; x; x = x->parent)
		x->ndesc--;
	dir_prune(s, d);
}

static void dir_replace(struct store *s, struct item *old, struct item *nw)
{
	uint32_t bi, pos;
	struct dnode *d = dir_locate(s, old, &bi, &pos);

	if (d)
		d->blk[bi]->ref[pos] = i2r(s, nw);
}

/* ------------------------------------------------------------ item life */

static void item_free(struct store *s, struct item *it)
{
	if (it->large) {
		const uint32_t *t = lg_tab(it);
		int64_t ip = i2pg(s, it);

		for (uint32_t e = 0; e < t[0]; e++) {
			int64_t p0 = ip + (int32_t)t[2 + 2 * e];

			for (uint32_t k = 0; k < t[3 + 2 * e]; k++)
				page_put(s, (uint32_t)(p0 + k));
		}
	}
	chunk_free(s, it);
}

static void item_unlink(struct store *s, struct item *it)
{
	uint32_t slot = ht_find(s, ikey(it), ikl(it), item_hash(s, it));

	if (slot != NONE && ht_ref(s, slot) == i2r(s, it))
		ht_remove_slot(s, slot);
	dir_remove(s, it);
	s->keys--;
	s->item_bytes -= ikl(it) + it->vsize;
	it->flags &= ~IF_LINKED;
	if (!it->refcount)
		item_free(s, it);
}

static void item_evict(struct store *s, struct item *it)
{
	s->evictions++;
	item_unlink(s, it);
}

static void touch(struct store *s, struct item *it)
{
	uint64_t t = ++s->tick;

	it->flags |= IF_REF;
	s->pg[i2pg(s, it)].tick = t;
	if (it->large) {
		const uint32_t *tab = lg_tab(it);
		int64_t ip = i2pg(s, it);

		for (uint32_t e = 0; e < tab[0]; e++) {
			int64_t p0 = ip + (int32_t)tab[2 + 2 * e];

			for (uint32_t k = 0; k < tab[3 + 2 * e]; k++)
				s->pg[p0 + k].tick = t;
		}
	}
}

/* Live (linked, unexpired) item for key; an expired one is reclaimed. */
static struct item *find_live(struct store *s, const void *key, size_t klen, int64_t now)
{
	uint32_t slot = ht_find(s, key, klen, hash64(key, klen, s->seed));

	if (slot == NONE)
		return NULL;
	struct item *it = r2i(s, ht_ref(s, slot));

	if (expired(it, now)) {
		s->expirations++;
		item_unlink(s, it);
		return NULL;
	}
	return it;
}

/*
 * Make the (pinned, unlinked) item it visible under its key, replacing any
 * current item (which is freed, or on its last release when pinned).
 */
static int publish(struct store *s, struct item *it, int64_t now)
{
	uint64_t h = item_hash(s, it);
	uint32_t slot = ht_find(s, ikey(it), ikl(it), h);
	int err;

	if (slot != NONE) {
		struct item *old = r2i(s, ht_ref(s, slot));

		if (expired(old, now))
			s->expirations++;
		else
			it->flags |= IF_REF;
		s->ht[slot] = mkslot(s, i2r(s, it), h);
		dir_replace(s, old, it);
		s->item_bytes -= ikl(old) + old->vsize;
		s->item_bytes += ikl(it) + it->vsize;
		old->flags &= ~IF_LINKED;
		it->flags |= IF_LINKED;
		if (!old->refcount)
			item_free(s, old);
		return 0;
	}
	err = dir_insert(s, it);
	if (err)
		return err;
	err = ht_insert(s, it, h);
	if (err) {
		dir_remove(s, it);
		return err;
	}
	s->keys++;
	s->item_bytes += ikl(it) + it->vsize;
	it->flags |= IF_LINKED;
	return 0;
}

/* Value bytes from a buffer, an item or an upload. */
struct vsrc {
	const uint8_t *buf;
	const struct item *it;
	const struct upload *up;
};

static void vsrc_read(const struct store *s, const struct vsrc *v, uint64_t off, void *dst,
		      uint64_t len)
{
	uint8_t *d = dst;

	if (!len)
		return;
	if (v->buf) {
		memcpy(d, v->buf + off, len);
	} else if (v->it) {
		while (len) {
			struct iovec iov[8];
			uint64_t cov;
			size_t n = store_item_iov(v->it, off, len, iov, 8, &cov);

			for (size_t i = 0; i < n; i++) {
				memcpy(d, iov[i].iov_base, iov[i].iov_len);
				d += iov[i].iov_len;
			}
			if (!cov)
				break;
			off += cov;
			len -= cov;
		}
	} else {
		while (len) {
			uint64_t in = off & (PAGE - 1), l = PAGE - in;

			if (l > len)
				l = len;
			memcpy(d, pgaddr(s, v->up->pages[off >> PAGE_SHIFT]) + in, l);
			d += l;
			off += l;
			len -= l;
		}
	}
}

static uint32_t count_ext(const uint32_t *pages, uint32_t n)
{
	uint32_t e = 0;

	for (uint32_t i = 0; i < n; i++)
		if (i == 0 || pages[i] != pages[i - 1] + 1)
			e++;
	return e;
}

static void pages_free(struct store *s, uint32_t *pages, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		page_put(s, pages[i]);
}

/*
 * Build a large item (pinned, unlinked) over pages[0, np) (HELD pages holding
 * value bytes [0, size), np = ceil(size / PAGE)). The last partial page is
 * copied into the chunk when it fits there. On success the pages belong to
 * the item (or are freed); on failure (NULL) they are untouched.
 */
static struct item *build_large(struct store *s, const void *key, size_t klen, uint64_t size,
				const uint32_t *pages)
{
	uint32_t full = (uint32_t)(size >> PAGE_SHIFT);
	uint32_t r = (uint32_t)(size & (PAGE - 1));
	uint32_t next = count_ext(pages, full), keep = full, tail = 0;

	if (r) {
		if (lg_size(klen, next, r) <= MAX_CHUNK) {
			tail = r;
		} else {
			keep = full + 1;
			next = count_ext(pages, keep);
		}
	}
	struct item *it = chunk_alloc(s, class_for(s, lg_size(klen, next, tail)));

	if (!it)
		return NULL;
	int64_t ip = i2pg(s, it);
	uint32_t ref = i2r(s, it);

	it->klen1 = klen - 1;
	it->vsize = size;
	it->large = 1;
	memcpy(ikey_w(it), key, klen);

	uint32_t *t = lg_tab(it);
	uint32_t e = 0;

	t[0] = next;
	t[1] = tail;
	for (uint32_t i = 0; i < keep; i++) {
		if (i == 0 || pages[i] != pages[i - 1] + 1) {
			t[2 + 2 * e] = (uint32_t)(int32_t)((int64_t)pages[i] - ip);
			t[3 + 2 * e] = 0;
			e++;
		}
		t[1 + 2 * e]++;
		s->pg[pages[i]].kind = PK_LARGE;
		s->pg[pages[i]].owner = ref;
		s->pg[pages[i]].tick = s->tick;
	}
	if (tail) {
		memcpy(lg_tailp(it), pgaddr(s, pages[full]), tail);
		page_put(s, pages[full]);
	}
	return it;
}

/* Allocate n HELD pages (preferring consecutive ones). */
static int pages_alloc(struct store *s, uint32_t *pages, uint32_t from, uint32_t n)
{
	for (uint32_t i = from; i < n; i++) {
		uint32_t p = page_alloc(s, i ? pages[i - 1] + 1 : NONE, PK_HELD);

		if (p == NONE) {
			pages_free(s, pages + from, i - from);
			return -ENOSPC;
		}
		pages[i] = p;
	}
	return 0;
}

/* A new pinned, unlinked item for key with the given value. */
static struct item *make_item(struct store *s, const void *key, size_t klen, uint64_t size,
			      const struct vsrc *v, int *err)
{
	struct item *it;

	if (HDR + klen + size <= MAX_CHUNK) {
		it = chunk_alloc(s, class_for(s, HDR + klen + size));
		if (!it) {
			*err = -ENOSPC;
			return NULL;
		}
		it->klen1 = klen - 1;
		it->vsize = size;
		memcpy(ikey_w(it), key, klen);
		vsrc_read(s, v, 0, ikey_w(it) + klen, size);
		return it;
	}
	uint64_t np64 = (size + PAGE - 1) >> PAGE_SHIFT;

	if (np64 > s->npages) {
		*err = -ENOSPC;
		return NULL;
	}
	uint32_t np = (uint32_t)np64;
	uint32_t *pages = calloc(np, sizeof(*pages));

	if (!pages) {
		*err = -ENOMEM;
		return NULL;
	}
	*err = pages_alloc(s, pages, 0, np);
	if (*err) {
		free(pages);
		return NULL;
	}
	for (uint32_t i = 0; i < np; i++) {
		uint64_t off = (uint64_t)i << PAGE_SHIFT;
		uint64_t l = size - off < PAGE ? size - off : PAGE;

		vsrc_read(s, v, off, pgaddr(s, pages[i]), l);
	}
	it = build_large(s, key, klen, size, pages);
	if (!it) {
		pages_free(s, pages, np);
		*err = -ENOSPC;
	}
	free(pages);
	return it;
}

static uint32_t clamp_expiry(int64_t now, int64_t ttl)
{
	if (ttl <= 0)
		return 0;
	int64_t e = now > INT64_MAX - ttl ? INT64_MAX : now + ttl;

	if (e < 1)
		e = 1;
	if (e > (int64_t)UINT32_MAX)
		e = UINT32_MAX;
	return (uint32_t)e;
}

/* A client-supplied mode: S_IFREG unless typed; never the "unset" flag. */
static uint32_t mode_for_new(uint32_t m)
{
	m &= ~KVFS_MODE_UNSET;
	return (m & S_IFMT) ? m : (S_IFREG | (m & 07777));
}

static void set_new_attrs(struct item *it, const struct store_attr *a, int64_t now)
{
	uint32_t mask = a ? a->mask : 0;

	it->mode =
	    (mask & KVFS_SET_MODE) ? mode_for_new(a->mode) : (S_IFREG | 0644 | KVFS_MODE_UNSET);
	it->uid = (mask & KVFS_SET_UID) ? a->uid : KVFS_ID_UNSET;
	it->gid = (mask & KVFS_SET_GID) ? a->gid : KVFS_ID_UNSET;
	it->mtime_ns = (mask & KVFS_SET_MTIME) ? a->mtime_ns : now * 1000000000LL;
	it->expiry = (mask & KVFS_SET_TTL) ? clamp_expiry(now, a->ttl) : 0;
}

/* ---------------------------------------------------------------- public */

/*
 * Map the pool: len bytes at a 1 MiB-aligned address, from a memfd shared
 * with the mapping, so that a client on this host allowed to ptrace the
 * server may map it read-only (store_pool_fd). Anonymous memory when no
 * memfd can be had. Returns 0 or -ENOMEM.
 */
static int pool_map(struct store *s, size_t len)
{
	/* reserve len + a page, keep the aligned len bytes, give back the slack */
	uint8_t *r =
	    mmap(NULL, len + PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r == MAP_FAILED)
		return -ENOMEM;
	uintptr_t m = (uintptr_t)r, a = (m + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
	if (a > m)
		munmap(r, a - m);
	munmap((void *)(a + len), m + len + PAGE - (a + len));
	int fd = memfd_create("kvfs-pool", MFD_CLOEXEC);
	void *p = MAP_FAILED;
	if (fd >= 0 && ftruncate(fd, (off_t)len) == 0)
		p = mmap((void *)a, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	if (p == MAP_FAILED) {
		if (fd >= 0)
			close(fd);
		fd = -1;
		p = mmap((void *)a, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	}
	if (p == MAP_FAILED) {
		munmap((void *)a, len);
		return -ENOMEM;
	}
	s->pool_fd = fd;
	s->map = p;
	s->map_len = len;
	s->base = p;
	return 0;
}

int store_open(struct store **out, const struct store_config *cfg)
{
	uint64_t npages = cfg->memory >> PAGE_SHIFT;
	struct store *s;

	*out = NULL;
	if (npages < MIN_PAGES || npages > MAX_PAGES)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->npages = (uint32_t)npages;
	/* refs < npages << 17: the bits above can carry hash bits */
	uint32_t rbits = 17;

	while ((1ull << rbits) < (npages << 17))
		rbits++;
	s->rmask = rbits >= 32 ? UINT32_MAX : (1u << rbits) - 1;
	s->max_value = cfg->max_value ? cfg->max_value : npages * PAGE;
	s->evict_none = cfg->evict_none;
	s->pool_fd = -1;
	if (pool_map(s, (size_t)npages * PAGE)) {
		free(s);
		return -ENOMEM;
	}
	/* Transparent huge pages where the kernel allows: fewer TLB misses per GET. */
	madvise(s->map, s->map_len, MADV_HUGEPAGE);

	s->pg = calloc(npages, sizeof(*s->pg));
	s->freemap = calloc((npages + 63) / 64, sizeof(uint64_t));
	s->htn = 1024;
	s->ht = malloc(s->htn * sizeof(*s->ht));
	s->dmn = 64;
	s->dm = calloc(s->dmn, sizeof(*s->dm));
	s->root = calloc(1, sizeof(*s->root));
	if (s->root)
		s->root->path = calloc(1, 1);
	if (!s->pg || !s->freemap || !s->ht || !s->dm || !s->root || !s->root->path) {
		store_close(s);
		return -ENOMEM;
	}
	memset(s->ht, 0xff, s->htn * sizeof(*s->ht));
	s->dir_bytes = sizeof(*s->root) + 1 + s->dmn * sizeof(*s->dm);
	for (uint32_t p = 0; p < s->npages; p++) {
		s->pg[p].owner = NONE;
		page_put(s, p);
	}

	/* classes: 48..512 step 8, then x1.125 (multiple of 8) up to 512 KiB */
	uint32_t sz;

	for (sz = MIN_CHUNK; sz <= 512; sz += 8)
		s->cls[s->ncls++].size = sz;
	for (sz = 512;;) {
		sz = (sz + sz / 8 + 7) & ~7u;
		if (sz >= MAX_CHUNK) {
			s->cls[s->ncls++].size = MAX_CHUNK;
			break;
		}
		s->cls[s->ncls++].size = sz;
	}
	for (uint32_t i = 0; i < s->ncls; i++) {
		struct sclass *c = &s->cls[i];

		c->perpage = (uint32_t)(PAGE / c->size);
		c->head = c->tail = c->avail = c->hand_pg = NONE;
	}

	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	s->seed = hash64(&ts, sizeof(ts), (uintptr_t)s ^ 0x8ebc6af09c88c6e3ULL);
	s->next_version = 1;
	s->exp_pg = 0;
	*out = s;
	return 0;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	while (s->uploads) {
		struct upload *u = s->uploads;

		s->uploads = u->next;
		free(u->pages);
		free(u);
	}
	if (s->dm) {
		for (uint32_t i = 0; i < s->dmn; i++)
			if (s->dm[i])
				dnode_free(s, s->dm[i]);
	}
	if (s->root) {
		for (uint32_t i = 0; i < s->root->nblk; i++)
			free(s->root->blk[i]);
		free(s->root->blk);
		free(s->root->bkey);
		free(s->root->kid);
		free(s->root->path);
		free(s->root);
	}
	free(s->dm);
	free(s->ht);
	free(s->freemap);
	free(s->pg);
	if (s->map)
		munmap(s->map, s->map_len);
	if (s->pool_fd >= 0)
		close(s->pool_fd);
	free(s);
}

void *store_pool_base(struct store *s)
{
	return s->base;
}

int store_pool_fd(struct store *s)
{
	return s->pool_fd;
}

size_t store_pool_size(struct store *s)
{
	return (size_t)s->npages * PAGE;
}

void store_stats(struct store *s, struct store_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->keys = s->keys;
	out->pool_size = (uint64_t)s->npages * PAGE;
	out->pool_used = (uint64_t)(s->npages - s->nfree) * PAGE;
	out->item_bytes = s->item_bytes;
	out->index_bytes = (uint64_t)s->htn * sizeof(*s->ht) + s->dir_bytes;
	out->evictions = s->evictions;
	out->expirations = s->expirations;
	out->uploads = s->nuploads;
}

/* store_get and store_pin: refuse at limit pins. */
static int get_pinned(struct store *s, const void *key, size_t klen, int64_t now, uint32_t limit,
		      struct item **out)
{
	int err = check_key(klen);
	struct item *it;

	*out = NULL;
	if (err)
		return err;
	note_now(s, now);
	it = find_live(s, key, klen, now);
	if (!it)
		return -ENOENT;
	if (it->refcount >= limit)
		return -EBUSY;
	pin(s, it);
	touch(s, it);
	*out = it;
	return 0;
}

int store_get(struct store *s, const void *key, size_t klen, int64_t now, struct item **out)
{
	return get_pinned(s, key, klen, now, STORE_REF_MAX, out);
}

int store_pin(struct store *s, const void *key, size_t klen, int64_t now, struct item **out)
{
	return get_pinned(s, key, klen, now, STORE_PIN_MAX, out);
}

int store_item_ref(struct store *s, struct item *it)
{
	if (it->refcount >= STORE_REF_MAX)
		return -EBUSY;
	pin(s, it);
	return 0;
}

void store_release(struct store *s, struct item *it)
{
	if (it)
		unpin(s, it);
}

void store_item_attr(const struct item *it, struct kvfs_attr *out)
{
	out->size = it->vsize;
	out->version = it->version;
	out->mtime_ns = it->mtime_ns;
	out->expiry = it->expiry;
	out->mode = it->mode;
	out->uid = it->uid;
	out->gid = it->gid;
}

size_t store_item_iov(const struct item *it, uint64_t off, uint64_t len, struct iovec *iov,
		      size_t max, uint64_t *covered)
{
	uint64_t size = it->vsize, end, pos;
	size_t n = 0;

	*covered = 0;
	if (off >= size || !len || !max)
		return 0;
	end = len > size - off ? size : off + len;
	if (!it->large) {
		iov[0].iov_base = (uint8_t *)ikey(it) + ikl(it) + off;
		iov[0].iov_len = end - off;
		*covered = end - off;
		return 1;
	}
	const uint32_t *t = lg_tab(it);
	const uint8_t *ipb = item_page_base(it);
	uint64_t big = size - t[1], ebase = 0;

	pos = off;
	for (uint32_t e = 0; e < t[0] && pos < end && pos < big; e++) {
		uint64_t elen = (uint64_t)t[3 + 2 * e] << PAGE_SHIFT;

		if (elen > big - ebase)
			elen = big - ebase;
		if (pos < ebase + elen) {
			uint64_t stop = ebase + elen < end ? ebase + elen : end;

			if (n == max)
				break;
			iov[n].iov_base = (uint8_t *)ipb +
					  (int64_t)(int32_t)t[2 + 2 * e] * (int64_t)PAGE +
					  (pos - ebase);
			iov[n].iov_len = stop - pos;
			n++;
			pos = stop;
		}
		ebase += elen;
	}
	if (pos < end && pos >= big && n < max) {
		iov[n].iov_base = lg_tailp(it) + (pos - big);
		iov[n].iov_len = end - pos;
		n++;
		pos = end;
	}
	*covered = pos - off;
	return n;
}

int store_put(struct store *s, const void *key, size_t klen, const void *val, size_t vlen,
	      const struct store_attr *a, int64_t now, uint64_t *version)
{
	int err = check_key(klen);
	struct vsrc v = {.buf = val};
	struct item *it;

	if (err)
		return err;
	if (vlen > s->max_value)
		return -EFBIG;
	note_now(s, now);
	it = make_item(s, key, klen, vlen, &v, &err);
	if (!it)
		return err;
	set_new_attrs(it, a, now);
	it->version = s->next_version++;
	err = publish(s, it, now);
	if (!err && version)
		*version = it->version;
	unpin(s, it); /* frees it when publish failed */
	return err;
}

int store_delete(struct store *s, const void *key, size_t klen)
{
	int err = check_key(klen);
	struct item *it;

	if (err)
		return err;
	it = find_live(s, key, klen, s->now);
	if (!it)
		return -ENOENT;
	item_unlink(s, it);
	return 0;
}

int store_stat(struct store *s, const void *key, size_t klen, int64_t now, struct kvfs_attr *out)
{
	int err = check_key(klen);
	struct item *it;

	if (err)
		return err;
	note_now(s, now);
	it = find_live(s, key, klen, now);
	if (!it)
		return -ENOENT;
	touch(s, it);
	if (out)
		store_item_attr(it, out);
	return 0;
}

int store_setattr(struct store *s, const void *key, size_t klen, const struct store_attr *a,
		  int64_t now, struct kvfs_attr *out)
{
	int err = check_key(klen);
	struct item *it;

	if (err)
		return err;
	note_now(s, now);
	it = find_live(s, key, klen, now);
	if (!it)
		return -ENOENT;
	if (a) {
		if (a->mask & KVFS_SET_MODE)
			it->mode = (it->mode & S_IFMT) | (a->mode & 07777);
		if (a->mask & KVFS_SET_UID)
			it->uid = a->uid;
		if (a->mask & KVFS_SET_GID)
			it->gid = a->gid;
		if (a->mask & KVFS_SET_MTIME)
			it->mtime_ns = a->mtime_ns;
		if (a->mask & KVFS_SET_TTL)
			it->expiry = clamp_expiry(now, a->ttl);
	}
	touch(s, it);
	if (out)
		store_item_attr(it, out);
	return 0;
}

int store_rename(struct store *s, const void *src, size_t slen, const void *dst, size_t dlen,
		 int noreplace)
{
	int err = check_key(slen);
	struct item *old, *it = NULL;

	if (err || (err = check_key(dlen)))
		return err;
	old = find_live(s, src, slen, s->now);
	if (!old)
		return -ENOENT;
	if (slen == dlen && memcmp(src, dst, slen) == 0)
		return noreplace ? -EEXIST : 0;
	if (noreplace && find_live(s, dst, dlen, s->now))
		return -EEXIST;
	pin(s, old);
	if (old->large && old->refcount == 1) {
		/* nobody reads it: move its pages to a new header chunk */
		const uint32_t *t = lg_tab(old);
		size_t need = lg_size(dlen, t[0], t[1]);

		if (need <= MAX_CHUNK && (it = chunk_alloc(s, class_for(s, need)))) {
			int64_t op = i2pg(s, old), np = i2pg(s, it);
			uint32_t ref = i2r(s, it);

			it->klen1 = dlen - 1;
			it->vsize = old->vsize;
			it->large = 1;
			memcpy(ikey_w(it), dst, dlen);
			uint32_t *nt = lg_tab(it);

			nt[0] = t[0];
			nt[1] = t[1];
			for (uint32_t e = 0; e < t[0]; e++) {
				int64_t p0 = op + (int32_t)t[2 + 2 * e];

				nt[2 + 2 * e] = (uint32_t)(int32_t)(p0 - np);
				nt[3 + 2 * e] = t[3 + 2 * e];
				for (uint32_t k = 0; k < t[3 + 2 * e]; k++)
					s->pg[p0 + k].owner = ref;
			}
			memcpy(lg_tailp(it), lg_tailp(old), t[1]);
			/* old keeps no pages now */
			item_unlink(s, old);
			old->large = 0;
		}
	}
	if (!it) {
		struct vsrc v = {.it = old};

		it = make_item(s, dst, dlen, old->vsize, &v, &err);
		if (!it) {
			unpin(s, old);
			return err;
		}
	}
	it->mode = old->mode;
	it->uid = old->uid;
	it->gid = old->gid;
	it->mtime_ns = old->mtime_ns;
	it->expiry = old->expiry;
	it->version = s->next_version++;
	err = publish(s, it, s->now);
	if (err) {
		/* (-ENOMEM only; after a page move the value is lost with it) */
		unpin(s, it);
		unpin(s, old);
		return err;
	}
	it->flags |= IF_REF;
	if (old->flags & IF_LINKED)
		item_unlink(s, old);
	unpin(s, it);
	unpin(s, old);
	return 0;
}

/* ---------------------------------------------------------------- listing */

struct lister {
	struct store *s;
	store_list_cb cb;
	void *arg;
	const uint8_t *pre;
	size_t plen;
	const uint8_t *cur;
	size_t clen;
	int64_t now;
	char delim;
	int stop;
	int probe; /* has_prefix: stop at the first live item */
	long count;
};

static void list_node(struct lister *L, const struct dnode *d, bool top)
{
	struct store *s = L->s;
	bool filt = top && L->plen > d->plen;
	uint32_t bi = 0, ii = 0, ki = 0;

	/* start among the items */
	if (d->nblk) {
		if (filt) {
			bi = blk_find(s, d, L->pre, L->plen);
			ii = blk_bound(s, d->blk[bi], L->pre, L->plen, false);
		}
		if (L->clen) {
			uint32_t cbi = blk_find(s, d, L->cur, L->clen);
			uint32_t cii = blk_bound(s, d->blk[cbi], L->cur, L->clen, true);

			if (cbi > bi || (cbi == bi && cii > ii)) {
				bi = cbi;
				ii = cii;
			}
		}
	}
	/* start among the child directories */
	if (filt)
		ki = kid_bound(d, L->pre, L->plen, false);
	if (L->clen) {
		uint32_t c = kid_bound(d, L->cur, L->clen, true);

		if (L->delim == 0 && c > 0 &&
		    starts_with(L->cur, L->clen, d->kid[c - 1]->path, d->kid[c - 1]->plen))
			c--;
		if (c > ki)
			ki = c;
	}
	for (;;) {
		const struct item *it = NULL;
		const struct dnode *k = NULL;

		while (bi < d->nblk && ii >= d->blk[bi]->n) {
			bi++;
			ii = 0;
		}
		if (bi < d->nblk) {
			it = r2i(s, d->blk[bi]->ref[ii]);
			if (filt && !starts_with(ikey(it), ikl(it), L->pre, L->plen)) {
				it = NULL;
				bi = d->nblk;
			}
		}
		if (ki < d->nkid) {
			k = d->kid[ki];
			if (filt && !starts_with(k->path, k->plen, L->pre, L->plen)) {
				k = NULL;
				ki = d->nkid;
			}
		}
		if (!it && !k)
			return;
		if (it && (!k || icmp(it, k->path, k->plen) < 0)) {
			ii++;
			if (expired(it, L->now))
				continue;
			if (L->probe) {
				L->count++;
				L->stop = 1;
				return;
			}
			struct kvfs_attr a;

			memcpy(s->namebuf, ikey(it), ikl(it));
			s->namebuf[ikl(it)] = 0;
			store_item_attr(it, &a);
			if (L->cb(L->arg, s->namebuf, ikl(it), &a)) {
				L->stop = 1;
				return;
			}
			L->count++;
			continue;
		}
		ki++;
		if (L->delim == 0) {
			list_node(L, k, false);
			if (L->stop)
				return;
			continue;
		}
		memcpy(s->namebuf, k->path, k->plen);
		s->namebuf[k->plen] = 0;
		if (L->cb(L->arg, s->namebuf, k->plen, NULL)) {
			L->stop = 1;
			return;
		}
		L->count++;
	}
}

long store_list(struct store *s, const void *prefix, size_t plen, char delim, const void *cursor,
		size_t clen, int64_t now, store_list_cb cb, void *arg)
{
	struct lister L = {.s = s,
			   .cb = cb,
			   .arg = arg,
			   .pre = prefix,
			   .plen = plen,
			   .cur = cursor,
			   .clen = clen,
			   .now = now,
			   .delim = delim};
	const struct dnode *d;

	if (delim != 0 && delim != '/')
		return -EINVAL;
	if (plen > KVFS_MAX_KEY || clen > KVFS_MAX_KEY)
		return -ENAMETOOLONG;
	note_now(s, now);
	d = dir_lookup(s, prefix, plen ? dir_len(prefix, plen) : 0);
	if (!d)
		return 0;
	list_node(&L, d, true);
	return L.count;
}

int store_has_prefix(struct store *s, const void *prefix, size_t plen, int64_t now)
{
	struct lister L = {.s = s, .pre = prefix, .plen = plen, .now = now, .probe = 1};
	const struct dnode *d;

	if (plen > KVFS_MAX_KEY)
		return 0;
	note_now(s, now);
	d = dir_lookup(s, prefix, plen ? dir_len(prefix, plen) : 0);
	if (!d || !d->ndesc)
		return 0;
	list_node(&L, d, true);
	return L.count > 0;
}

/* ---------------------------------------------------------------- uploads */

static int up_reserve(struct store *s, struct upload *up, uint64_t bytes)
{
	uint64_t need64 = (bytes + PAGE - 1) >> PAGE_SHIFT;

	if (need64 <= up->np)
		return 0;
	if (need64 > s->npages)
		return -ENOSPC;
	uint32_t need = (uint32_t)need64;

	if (need > up->cap) {
		uint32_t nc = up->cap ? up->cap : 4;

		while (nc < need)
			nc *= 2;
		uint32_t *p = realloc(up->pages, nc * sizeof(*p));

		if (!p)
			return -ENOMEM;
		up->pages = p;
		up->cap = nc;
	}
	while (up->np < need) {
		uint32_t p = page_alloc(s, up->np ? up->pages[up->np - 1] + 1 : NONE, PK_HELD);

		if (p == NONE)
			return -ENOSPC;
		up->pages[up->np++] = p;
	}
	return 0;
}

static void up_zero(struct store *s, struct upload *up, uint64_t from, uint64_t to)
{
	while (from < to) {
		uint64_t in = from & (PAGE - 1), l = PAGE - in;

		if (l > to - from)
			l = to - from;
		memset(pgaddr(s, up->pages[from >> PAGE_SHIFT]) + in, 0, l);
		from += l;
	}
}

static void up_trim(struct store *s, struct upload *up, uint64_t size)
{
	uint32_t need = (uint32_t)((size + PAGE - 1) >> PAGE_SHIFT);

	while (up->np > need)
		page_put(s, up->pages[--up->np]);
}

static void up_free(struct store *s, struct upload *up)
{
	pages_free(s, up->pages, up->np);
	if (up->prev)
		up->prev->next = up->next;
	else
		s->uploads = up->next;
	if (up->next)
		up->next->prev = up->prev;
	s->nuploads--;
	free(up->pages);
	free(up);
}

int store_upload_open(struct store *s, const void *key, size_t klen, int keep, int64_t now,
		      struct upload **out)
{
	int err = check_key(klen);
	struct upload *up;

	*out = NULL;
	if (err)
		return err;
	note_now(s, now);
	up = calloc(1, sizeof(*up) + klen);
	if (!up)
		return -ENOMEM;
	memcpy(up->key, key, klen);
	up->klen = (uint32_t)klen;
	up->next = s->uploads;
	if (s->uploads)
		s->uploads->prev = up;
	s->uploads = up;
	s->nuploads++;
	if (keep) {
		struct item *old = find_live(s, key, klen, now);

		if (old) {
			struct vsrc v = {.it = old};

			pin(s, old);
			err = up_reserve(s, up, old->vsize);
			if (!err) {
				for (uint32_t i = 0; i < up->np; i++) {
					uint64_t off = (uint64_t)i << PAGE_SHIFT;
					uint64_t l =
					    old->vsize - off < PAGE ? old->vsize - off : PAGE;

					vsrc_read(s, &v, off, pgaddr(s, up->pages[i]), l);
				}
				up->size = old->vsize;
			}
			unpin(s, old);
			if (err) {
				up_free(s, up);
				return err;
			}
		}
	}
	*out = up;
	return 0;
}

/*
 * The pool ranges of upload bytes [off, end), which must already be
 * reserved, merged where pages are adjacent: at most max entries. Returns
 * the entries used; *covered = bytes covered.
 */
static size_t up_ranges(const struct store *s, const struct upload *up, uint64_t off, uint64_t end,
			struct iovec *iov, size_t max, uint64_t *covered)
{
	uint64_t pos;
	size_t n = 0;

	for (pos = off; pos < end;) {
		uint64_t in = pos & (PAGE - 1), l = PAGE - in;
		uint8_t *addr = pgaddr(s, up->pages[pos >> PAGE_SHIFT]) + in;

		if (l > end - pos)
			l = end - pos;
		if (n && (uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == addr) {
			iov[n - 1].iov_len += l;
		} else {
			if (n == max)
				break;
			iov[n].iov_base = addr;
			iov[n].iov_len = l;
			n++;
		}
		pos += l;
	}
	*covered = pos - off;
	return n;
}

long store_upload_iov(struct store *s, struct upload *up, uint64_t off, uint64_t len,
		      struct iovec *iov, size_t max, uint64_t *covered)
{
	uint64_t end;
	size_t n;
	int err;

	*covered = 0;
	if (!len || !max)
		return 0;
	if (off > s->max_value || len > s->max_value - off)
		return -EFBIG;
	end = off + len;
	err = up_reserve(s, up, end);
	if (err)
		return err;
	if (off > up->size)
		up_zero(s, up, up->size, off);
	n = up_ranges(s, up, off, end, iov, max, covered);
	if (off + *covered > up->size)
		up->size = off + *covered;
	return (long)n;
}

size_t store_upload_read_iov(const struct store *s, const struct upload *up, uint64_t off,
			     uint64_t len, struct iovec *iov, size_t max, uint64_t *covered)
{
	uint64_t end;

	*covered = 0;
	if (off >= up->size || !len || !max)
		return 0;
	end = len > up->size - off ? up->size : off + len;
	return up_ranges(s, up, off, end, iov, max, covered);
}

int store_upload_truncate(struct store *s, struct upload *up, uint64_t size)
{
	int err;

	if (size > s->max_value)
		return -EFBIG;
	if (size <= up->size) {
		up->size = size;
		up_trim(s, up, size);
		return 0;
	}
	err = up_reserve(s, up, size);
	if (err)
		return err;
	up_zero(s, up, up->size, size);
	up->size = size;
	return 0;
}

uint64_t store_upload_size(const struct upload *up)
{
	return up->size;
}

int store_upload_commit(struct store *s, struct upload *up, const struct store_attr *a, int64_t now,
			struct kvfs_attr *out)
{
	struct item *it;
	int err = 0;

	note_now(s, now);
	if (up->size > s->max_value) {
		err = -EFBIG;
		goto done;
	}
	up_trim(s, up, up->size);
	if (HDR + up->klen + up->size <= MAX_CHUNK) {
		struct vsrc v = {.up = up};

		it = make_item(s, up->key, up->klen, up->size, &v, &err);
		if (!it)
			goto done;
	} else {
		it = build_large(s, up->key, up->klen, up->size, up->pages);
		if (!it) {
			err = -ENOSPC;
			goto done;
		}
		up->np = 0; /* the item owns them now */
	}
	set_new_attrs(it, a, now);
	it->version = s->next_version++;
	err = publish(s, it, now);
	if (!err && out)
		store_item_attr(it, out);
	unpin(s, it);
done:
	up_free(s, up);
	return err;
}

void store_upload_abort(struct store *s, struct upload *up)
{
	if (up)
		up_free(s, up);
}

/* ---------------------------------------------------------------- expiry */

int store_expire(struct store *s, int64_t now, int budget)
{
	uint64_t steps;
	uint32_t p = s->exp_pg, idx = s->exp_idx;
	int done = 0;

	if (budget <= 0)
		return 0;
	note_now(s, now);
	steps = (uint64_t)budget * EXAMINE_PER_BUDGET;
	while (steps-- && done < budget) {
		if (p >= s->npages) {
			p = 0;
			idx = 0;
		}
		const struct page *pg = &s->pg[p];

		if (pg->kind != PK_SLAB || idx >= pg->carved) {
			p++;
			idx = 0;
			continue;
		}
		struct item *it = chunk_at(s, p, s->cls[pg->cls].size, idx++);

		if ((it->flags & (IF_ALLOC | IF_LINKED)) == (IF_ALLOC | IF_LINKED) &&
		    expired(it, now)) {
			s->expirations++;
			item_unlink(s, it);
			done++;
		}
	}
	s->exp_pg = p;
	s->exp_idx = idx;
	return done;
}
