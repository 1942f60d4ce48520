/*
 * Unit tests of the server's item store: pages, slab chunks, large values
 * and eviction (src/server/store_slab.c).
 */
#include "store_fixture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ------------------------------------------------------------- chunking */

Test(store, large_value_chunks)
{
	struct store *s = open_store(32 * MiB, 16 * MiB, 0);
	const uint64_t len = 5 * MiB + 3;
	uint8_t *b = malloc(len), *r = malloc(len);
	struct item *it;

	fill(b, len, 77);
	cr_assert_eq(put_pat(s, "small", 1, 100), 0);
	cr_assert_eq(store_put(s, "big/value", 9, b, len, NULL, NOW, NULL), 0);
	cr_assert_eq(store_get(s, "big/value", 9, NOW, &it), 0);
	memset(r, 0, len);
	cr_assert_eq(read_item(it, 0, len, r, 1), len);
	cr_assert_eq(memcmp(b, r, len), 0);
	for (int i = 0; i < 200; i++) {
		uint64_t off = rnd() % (len + 10), l = rnd() % (2 * MiB + 5);
		size_t max = 1 + rnd() % 3;
		uint64_t want = off >= len ? 0 : (l < len - off ? l : len - off);

		cr_assert_eq(read_item(it, off, l, r, max), want);
		if (want)
			cr_assert_eq(memcmp(b + off, r, want), 0, "off %lu len %lu",
				     (unsigned long)off, (unsigned long)l);
	}
	/* offsets right at the boundaries of the tail */
	cr_assert_eq(read_item(it, 5 * MiB - 1, 4, r, 1), 4);
	cr_assert_eq(memcmp(b + 5 * MiB - 1, r, 4), 0);
	cr_assert_eq(read_item(it, 5 * MiB + 2, 100, r, 1), 1);
	cr_assert_eq(r[0], b[5 * MiB + 2]);
	store_release(s, it);
	cr_assert_eq(check_key(s, "small", 1, 100), 0);

	/* sizes around the page and chunk boundaries */
	const uint64_t sizes[] = {512 * 1024 - 56 - 5,
				  512 * 1024 - 56 - 4,
				  512 * 1024,
				  MiB - 1,
				  MiB,
				  MiB + 1,
				  2 * MiB - 7,
				  3 * MiB,
				  3 * MiB + 700 * 1024};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		cr_assert_eq(put_pat(s, "edge", i, sizes[i]), 0);
		cr_assert_eq(check_key(s, "edge", i, sizes[i]), 0);
	}
	cr_assert_eq(store_delete(s, "edge", 4), 0);
	cr_assert_eq(store_delete(s, "big/value", 9), 0);
	cr_assert_eq(store_delete(s, "small", 5), 0);
	cr_assert_eq(stats(s).pool_used, 0);
	free(b);
	free(r);
	store_close(s);
}

Test(store, one_extent)
{
	struct store *s = open_store(128 * MiB, 128 * MiB, 0);
	const uint64_t len = 64 * MiB;
	uint8_t *b = malloc(len);
	struct item *it;
	struct iovec iov[16];
	uint64_t cov;

	fill(b, len, 5);
	cr_assert_eq(store_put(s, "sixty-four", 10, b, len, NULL, NOW, NULL), 0);
	cr_assert_eq(store_get(s, "sixty-four", 10, NOW, &it), 0);
	cr_assert_eq(store_item_iov(it, 0, len, iov, 16, &cov), 1);
	cr_assert_eq(cov, len);
	cr_assert_eq(iov[0].iov_len, len);
	cr_assert_eq(memcmp(iov[0].iov_base, b, len), 0);
	/* the value lies inside the pool */
	cr_assert_geq((uint8_t *)iov[0].iov_base, (uint8_t *)store_pool_base(s));
	cr_assert_leq((uint8_t *)iov[0].iov_base + len,
		      (uint8_t *)store_pool_base(s) + store_pool_size(s));
	store_release(s, it);
	cr_assert_eq(stats(s).pool_used, 65 * MiB);
	free(b);
	store_close(s);
}

/* ------------------------------------------------------------- eviction */

Test(store, clock_lru)
{
	struct store *s = open_store(16 * MiB, MiB, 0);
	enum { VLEN = 1000, TOUCH = 100 };
	char key[32];
	int n = 0;

	/* fill until the first eviction */
	while (stats(s).evictions == 0) {
		snprintf(key, sizeof(key), "k%06d", n);
		cr_assert_eq(put_pat(s, key, (uint64_t)n, VLEN), 0);
		n++;
	}
	cr_assert_gt(n, 10000);
	/* touch a set of early keys */
	int touched = 0;

	for (int i = 0; i < n && touched < TOUCH; i++) {
		struct item *it;

		snprintf(key, sizeof(key), "k%06d", i);
		if (store_get(s, key, strlen(key), NOW, &it) == 0) {
			store_release(s, it);
			touched++;
		}
	}
	cr_assert_eq(touched, TOUCH);
	/* keep putting: half the pool again */
	int more = n / 2;

	for (int i = 0; i < more; i++) {
		snprintf(key, sizeof(key), "k%06d", n + i);
		cr_assert_eq(put_pat(s, key, (uint64_t)(n + i), VLEN), 0);
	}
	struct store_stats st = stats(s);
	int missing = 0;

	for (int i = 0; i < n + more; i++) {
		snprintf(key, sizeof(key), "k%06d", i);
		int r = check_key(s, key, (uint64_t)i, VLEN);

		cr_assert(r == 0 || r == -ENOENT);
		missing += r != 0;
	}
	cr_assert_eq((uint64_t)missing, st.evictions);
	cr_assert_eq(st.keys, (uint64_t)(n + more - missing));
	cr_assert_geq(st.evictions, (uint64_t)more);
	/* every touched key survived; the untouched old keys went first */
	for (int i = 1; i < n; i++) {
		snprintf(key, sizeof(key), "k%06d", i);
		int r = store_stat(s, key, strlen(key), NOW, NULL);

		if (i <= TOUCH)
			cr_assert_eq(r, 0, "touched key %s was evicted", key);
		else if (i < TOUCH + more)
			cr_assert_eq(r, -ENOENT, "untouched old key %s survived", key);
	}
	/* the newest keys are all there */
	for (int i = n; i < n + more; i++) {
		snprintf(key, sizeof(key), "k%06d", i);
		cr_assert_eq(store_stat(s, key, strlen(key), NOW, NULL), 0);
	}
	store_close(s);
}

Test(store, evict_none)
{
	struct store *s = open_store(16 * MiB, 8 * MiB, 1);
	enum { VLEN = 100000 };
	char key[32];
	int n = 0, r;

	for (;;) {
		snprintf(key, sizeof(key), "n%d", n);
		r = put_pat(s, key, (uint64_t)n, VLEN);
		if (r)
			break;
		n++;
	}
	cr_assert_eq(r, -ENOSPC);
	cr_assert_gt(n, 100);
	/* a failed replace keeps the old value; large values fail too */
	cr_assert_eq(put_pat(s, "n0", 999, 2 * MiB), -ENOSPC);
	cr_assert_eq(put_pat(s, "n1", 999, VLEN), -ENOSPC);
	struct upload *up;
	struct iovec iov[4];
	uint64_t cov;

	cr_assert_eq(store_upload_open(s, "n2", 2, 0, NOW, &up), 0);
	cr_assert_eq(store_upload_iov(s, up, 0, 3 * MiB, iov, 4, &cov), -ENOSPC);
	store_upload_abort(s, up);
	struct store_stats st = stats(s);

	cr_assert_eq(st.evictions, 0);
	cr_assert_eq(st.keys, (uint64_t)n);
	cr_assert_eq(st.uploads, 0);
	for (int i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "n%d", i);
		cr_assert_eq(check_key(s, key, (uint64_t)i, VLEN), 0);
	}
	/* after deleting some, puts work again */
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "n%d", i);
		cr_assert_eq(store_delete(s, key, strlen(key)), 0);
	}
	cr_assert_eq(put_pat(s, "again", 3, VLEN), 0);
	cr_assert_eq(check_key(s, "again", 3, VLEN), 0);
	store_close(s);
}

/*
 * Pinned items are never evicted, whether linked or replaced/deleted: with
 * the pool full of them a PUT fails with -ENOSPC under lru, and every pinned
 * byte survives. Released, the memory is reused.
 */
Test(store, pinned_pool_full_enospc, .timeout = 60)
{
	struct store *s = open_store(16 * MiB, 8 * MiB, 0);
	struct item *p[6];
	char key[32];
	const size_t big = 2 * MiB + 5;

	for (int i = 0; i < 6; i++) {
		snprintf(key, sizeof(key), "pin%d", i);
		cr_assert_eq(put_pat(s, key, 100 + (uint64_t)i, big), 0);
		cr_assert_eq(store_pin(s, key, strlen(key), NOW, &p[i]), 0);
		/* replaced (even numbers) or deleted (odd): unlinked but pinned */
		if (i % 2 == 0)
			cr_assert_eq(put_pat(s, key, 200 + (uint64_t)i, 1000), 0);
		else
			cr_assert_eq(store_delete(s, key, strlen(key)), 0);
	}
	cr_assert_geq(stats(s).pool_used, 12 * MiB);
	/* no room, nothing evictable: refused, not corrupted */
	cr_assert_eq(put_pat(s, "huge", 7, 8 * MiB), -ENOSPC);
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "f%d", i);
		int r = put_pat(s, key, 300 + (uint64_t)i, 1 * MiB + 7);
		cr_assert(r == 0 || r == -ENOSPC, "put %s: %d", key, r);
	}
	uint8_t *r = malloc(big);
	for (int i = 0; i < 6; i++) {
		struct proto_attr a;
		store_item_attr(p[i], &a);
		cr_assert_eq(a.size, big);
		cr_assert_eq(read_item(p[i], 0, big, r, 3), big);
		for (uint64_t j = 0; j < big; j++)
			if (r[j] != pat(100 + (uint64_t)i, j))
				cr_assert_fail("pinned value %d byte %lu", i, (unsigned long)j);
	}
	free(r);
	for (int i = 0; i < 6; i++)
		store_release(s, p[i]);
	cr_assert_eq(put_pat(s, "huge", 7, 8 * MiB), 0);
	cr_assert_eq(check_key(s, "huge", 7, 8 * MiB), 0);
	store_close(s);
}

/*
 * Small items of one size fill the pool; another size class must steal a page
 * (it has nothing of its own to evict), and a large value takes whole pages.
 */
Test(store, page_steal_across_classes)
{
	struct store *s = open_store(16 * MiB, 8 * MiB, 0);
	char key[32];
	int n = 0;

	while (stats(s).evictions == 0) {
		snprintf(key, sizeof(key), "s%d", n);
		cr_assert_eq(put_pat(s, key, (uint64_t)n, 100), 0);
		n++;
	}
	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "L%d", i);
		cr_assert_eq(put_pat(s, key, (uint64_t)i, 30000), 0);
	}
	int present_l = 0;

	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "L%d", i);
		int r = check_key(s, key, (uint64_t)i, 30000);

		cr_assert(r == 0 || r == -ENOENT);
		if (i >= 180)
			cr_assert_eq(r, 0, "recent %s evicted", key);
		present_l += r == 0;
	}
	cr_assert_eq(put_pat(s, "huge", 1, 6 * MiB), 0);
	cr_assert_eq(check_key(s, "huge", 1, 6 * MiB), 0);
	int present = 0;

	for (int i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "s%d", i);
		int r = check_key(s, key, (uint64_t)i, 100);

		cr_assert(r == 0 || r == -ENOENT);
		present += r == 0;
	}
	cr_assert_gt(present, n / 2);
	struct store_stats st = stats(s);

	cr_assert_eq(st.keys, (uint64_t)(present + present_l + 1));
	cr_assert_eq(st.evictions, (uint64_t)(n + 200 - present - present_l));
	store_close(s);
}

/* ------------------------------------------------------------- prefault */

/* Pages of [p, p + len) the kernel has in memory (mincore). */
static size_t resident_pages(void *p, size_t len)
{
	size_t n = len / 4096, in = 0;
	unsigned char *v = malloc(n);

	cr_assert_not_null(v);
	cr_assert_eq(mincore(p, len, v), 0, "mincore: %s", strerror(errno));
	for (size_t i = 0; i < n; i++)
		in += v[i] & 1;
	free(v);
	return in;
}

Test(store, prefault_gives_every_page_its_memory)
{
	struct store_config c = {.memory = 48 * MiB, .max_value = 8 * MiB, .prefault = 1};
	struct store *s;

	cr_assert_eq(store_open(&s, &c), 0);
	cr_assert_eq(resident_pages(store_pool_base(s), store_pool_size(s)),
		     store_pool_size(s) / 4096);
	cr_assert_eq(put_pat(s, "k", 1, 3 * MiB), 0);
	cr_assert_eq(check_key(s, "k", 1, 3 * MiB), 0);
	store_close(s);

	/* without it, a fresh pool has (almost) nothing in memory */
	c.prefault = 0;
	cr_assert_eq(store_open(&s, &c), 0);
	cr_assert_lt(resident_pages(store_pool_base(s), store_pool_size(s)),
		     store_pool_size(s) / 4096 / 4);
	store_close(s);
}

/* ---------------------------------------------------------- class stats */

Test(store, class_stats)
{
	struct store *s = open_store(32 * MiB, 16 * MiB, 0);
	struct store_class_stats cs[STORE_MAX_CLASSES];
	cr_assert_eq(store_class_stats(s, cs, STORE_MAX_CLASSES), 0, "an empty pool uses nothing");
	for (int i = 0; i < 10; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%d", i);
		cr_assert_eq(put_pat(s, k, i, 100), 0);
	}
	uint8_t *big = calloc(1, 3 * MiB);
	cr_assert_eq(store_put(s, "big", 3, big, 3 * MiB, NULL, NOW, NULL), 0);
	free(big);
	int n = store_class_stats(s, cs, STORE_MAX_CLASSES);
	uint64_t used = 0, pages = 0;
	int large = 0;
	for (int i = 0; i < n; i++) {
		pages += cs[i].pages;
		if (cs[i].chunk_size == 0) {
			large = 1;
			cr_assert_eq(i, n - 1, "the large pages come last");
			cr_assert_geq(cs[i].pages, 2);
			continue;
		}
		cr_assert_leq(cs[i].chunks_used, cs[i].chunks);
		cr_assert_eq(cs[i].chunks % cs[i].pages, 0);
		used += cs[i].chunks_used;
	}
	cr_assert(large);
	cr_assert_eq(used, 11, "10 small items and the big one's header chunk");
	struct store_stats st;
	store_stats(s, &st);
	cr_assert_eq(pages * STORE_PAGE_SIZE, st.pool_used, "the classes add up to pool_used");
	cr_assert_eq(store_class_stats(s, cs, 1), 1, "at most max entries");
	store_close(s);
}
