/*
 * store_slab: the pool, its pages, the slab classes and eviction.
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
 * Eviction
 *   CLOCK per class (a reference bit per item, set by touch); when a class
 *   has nothing to evict or a whole page is needed, the least recently
 *   touched page without pins is emptied.
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define MIN_CHUNK 48u

/* -------------------------------------------------------- page allocator */

static inline bool page_isfree(const struct store *s, uint32_t p)
{
	return (s->freemap[p >> 6] >> (p & 63)) & 1;
}

void page_put(struct store *s, uint32_t p)
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

uint32_t page_alloc(struct store *s, uint32_t hint, uint8_t kind)
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

void chunk_free(struct store *s, struct item *it)
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

uint32_t class_for(const struct store *s, size_t size)
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

struct item *chunk_alloc(struct store *s, uint32_t ci)
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

static void tick_page(struct store *s, uint32_t p, void *arg)
{
	s->pg[p].tick = *(const uint64_t *)arg;
}

void touch(struct store *s, struct item *it)
{
	uint64_t t = ++s->tick;

	it->flags |= IF_REF;
	s->pg[i2pg(s, it)].tick = t;
	if (it->large)
		lg_each_page(s, it, tick_page, &t);
}

void pages_free(struct store *s, uint32_t *pages, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		page_put(s, pages[i]);
}

int pages_alloc(struct store *s, uint32_t *pages, uint32_t from, uint32_t n)
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

/* ------------------------------------------------------------ open, close */

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
	/*
	 * Sealed at its size: clients that map it check the seals (a pool
	 * nobody can shrink under their mapping) and the name (pin.c).
	 */
	int fd = memfd_create("kvfs-pool", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	void *p = MAP_FAILED;
	if (fd >= 0 && ftruncate(fd, (off_t)len) == 0 &&
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0)
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

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/*
 * Give every page of the pool its memory before the first request, so the
 * first PUTs into a fresh server run as fast as later ones instead of
 * paying a page fault (and a zeroed page) per 4 KiB; registering the pool
 * with a NIC pins, and so faults in, every page anyway. MADV_POPULATE_WRITE
 * where the kernel has it, else a write per page; one thread per CPU (up to
 * 8) on its own part, since zeroing pages is what it costs.
 */
struct populate_part {
	uint8_t *p;
	size_t len;
	int ret; /* 0 or -ENOMEM (the host cannot back the pool) */
	pthread_t thread;
};

static void *populate_part(void *arg)
{
	struct populate_part *w = arg;

	if (madvise(w->p, w->len, MADV_POPULATE_WRITE) == 0)
		return NULL;
	if (errno != EINVAL) {
		w->ret = -ENOMEM;
		return NULL;
	}
	long sys = sysconf(_SC_PAGESIZE);
	size_t step = sys > 0 ? (size_t)sys : 4096;
	for (size_t off = 0; off < w->len; off += step)
		((volatile uint8_t *)w->p)[off] = 0;
	return NULL;
}

/* Returns 0 or -ENOMEM. */
static int pool_populate(struct store *s)
{
	struct populate_part w[8] = {0};
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = cpus < 1 ? 1 : cpus > 8 ? 8 : (size_t)cpus;
	size_t per = (s->npages + n - 1) / n * (size_t)PAGE;
	int ret = 0;

	for (size_t i = 0; i < n; i++) {
		size_t off = i * per;
		w[i].p = (uint8_t *)s->map + (off < s->map_len ? off : s->map_len);
		w[i].len = off >= s->map_len ? 0 : s->map_len - off < per ? s->map_len - off : per;
		if (i == 0 || pthread_create(&w[i].thread, NULL, populate_part, &w[i]))
			w[i].thread = 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (w[i].thread)
			pthread_join(w[i].thread, NULL);
		else
			populate_part(&w[i]); /* part 0, or a thread that could not start */
		if (w[i].ret)
			ret = w[i].ret;
	}
	return ret;
}

int slab_open(struct store *s, uint32_t npages, int prefault)
{
	s->npages = npages;
	s->pool_fd = -1;
	if (pool_map(s, (size_t)npages * PAGE))
		return -ENOMEM;
	/* Transparent huge pages where the kernel allows: fewer TLB misses per GET. */
	madvise(s->map, s->map_len, MADV_HUGEPAGE);
	if (prefault && pool_populate(s))
		return -ENOMEM;

	s->pg = calloc(npages, sizeof(*s->pg));
	s->freemap = calloc((npages + 63) / 64, sizeof(uint64_t));
	if (!s->pg || !s->freemap)
		return -ENOMEM;
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
	return 0;
}

void slab_close(struct store *s)
{
	free(s->freemap);
	free(s->pg);
	if (s->map)
		munmap(s->map, s->map_len);
	if (s->pool_fd >= 0)
		close(s->pool_fd);
}

_Static_assert(MAX_CLASSES <= STORE_MAX_CLASSES, "store_class_stats has room for every class");

int store_class_stats(struct store *s, struct store_class_stats *out, int max)
{
	uint32_t pages[MAX_CLASSES] = {0}, large = 0;
	uint64_t used[MAX_CLASSES] = {0};
	int n = 0;

	for (uint32_t p = 0; p < s->npages; p++) {
		const struct page *pg = &s->pg[p];
		if (pg->kind == PK_SLAB && pg->cls < MAX_CLASSES) {
			pages[pg->cls]++;
			used[pg->cls] += pg->nused;
		} else if (pg->kind == PK_LARGE || pg->kind == PK_HELD) {
			large++;
		}
	}
	for (uint32_t c = 0; c < s->ncls && n < max; c++)
		if (pages[c])
			out[n++] = (struct store_class_stats){.chunk_size = s->cls[c].size,
							      .pages = pages[c],
							      .chunks = (uint64_t)pages[c] *
									s->cls[c].perpage,
							      .chunks_used = used[c]};
	if (large && n < max)
		out[n++] = (struct store_class_stats){.pages = large};
	return n;
}
