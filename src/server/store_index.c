/*
 * store_index: the key hash. Open addressing, linear probing, backward-shift
 * deletion, uint32 refs only (keys compared in the pool); the table grows by
 * half at 70% load. The lookup (ht_find) is inline in store_int.h, on the
 * GET path; here is what changes the table.
 */
#include "store_int.h"

#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_PAGE (2u << 20) /* transparent huge page */

static inline uint32_t mkslot(const struct store *s, uint32_t ref, uint64_t h)
{
	return ref | ((uint32_t)h & ~s->rmask);
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

int ht_insert(struct store *s, struct item *it, uint64_t h)
{
	if ((uint64_t)(s->htcount + 1) * 100 > (uint64_t)s->htn * 70) {
		if (ht_grow(s) && s->htcount + 2 >= s->htn)
			return -ENOMEM;
	}
	ht_place(s->ht, s->htn, mkslot(s, i2r(s, it), h), h);
	s->htcount++;
	return 0;
}

void ht_remove_slot(struct store *s, uint32_t i)
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

void ht_set(struct store *s, uint32_t slot, const struct item *it, uint64_t h)
{
	s->ht[slot] = mkslot(s, i2r(s, it), h);
}

int index_open(struct store *s)
{
	/* refs < npages << 17: the bits above can carry hash bits */
	uint32_t rbits = 17;

	while ((1ull << rbits) < ((uint64_t)s->npages << 17))
		rbits++;
	s->rmask = rbits >= 32 ? UINT32_MAX : (1u << rbits) - 1;
	s->htn = 1024;
	s->ht = malloc(s->htn * sizeof(*s->ht));
	if (!s->ht)
		return -ENOMEM;
	memset(s->ht, 0xff, s->htn * sizeof(*s->ht));
	return 0;
}

void index_close(struct store *s)
{
	free(s->ht);
}
