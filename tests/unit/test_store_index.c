/*
 * Unit tests of the server's item store: the key hash
 * (src/server/store_index.c) and the per-key memory overhead.
 */
#include "store_fixture.h"

#include <errno.h>
#include <stdio.h>

Test(store, many_keys_hash_and_delete)
{
	struct store *s = open_store(64 * MiB, MiB, 0);
	enum { N = 60000 };
	static char present[N];
	char key[32];
	uint64_t live = 0;

	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < N; i++) {
			int k = (int)(rnd() % N);

			snprintf(key, sizeof(key), "key%d", k);
			if (rnd() % 3) {
				cr_assert_eq(put_pat(s, key, (uint64_t)k, (size_t)(k % 40)), 0);
				live += !present[k];
				present[k] = 1;
			} else {
				int r = store_delete(s, key, strlen(key));

				cr_assert_eq(r, present[k] ? 0 : -ENOENT);
				live -= present[k];
				present[k] = 0;
			}
		}
		cr_assert_eq(stats(s).keys, live);
		for (int k = 0; k < N; k++) {
			snprintf(key, sizeof(key), "key%d", k);
			if (present[k])
				cr_assert_eq(check_key(s, key, (uint64_t)k, (size_t)(k % 40)), 0);
			else
				cr_assert_eq(store_stat(s, key, strlen(key), NOW, NULL), -ENOENT);
		}
	}
	cr_assert_eq(stats(s).evictions, 0);
	store_close(s);
}

/* ------------------------------------------------------------- overhead */

Test(store, overhead_1m, .timeout = 60)
{
	struct store *s = open_store(128 * MiB, MiB, 1);
	enum { N = 1000000 };
	uint8_t val[32];
	char key[17];

	memset(val, 'v', sizeof(val));
	for (uint64_t i = 0; i < N; i++) {
		uint64_t h = (i + 1) * 0x9e3779b97f4a7c15ull;

		h ^= h >> 29;
		snprintf(key, sizeof(key), "%016llx", (unsigned long long)h);
		cr_assert_eq(store_put(s, key, 16, val, 32, NULL, NOW, NULL), 0);
	}
	struct store_stats st = stats(s);

	cr_assert_eq(st.keys, N);
	cr_assert_eq(st.item_bytes, 48ull * N);
	double per = (double)(st.index_bytes + st.pool_used - st.item_bytes) / (double)st.keys;

	fprintf(stderr, "overhead at 1M keys: %.2f bytes/key (index %.2f, pool %.2f)\n", per,
		(double)st.index_bytes / N, (double)(st.pool_used - st.item_bytes) / N);
	cr_assert_leq(per, 80.0); /* store.h: a 56-byte header, 16 more than before times */
	/* spot check */
	for (uint64_t i = 0; i < N; i += 9973) {
		uint64_t h = (i + 1) * 0x9e3779b97f4a7c15ull;
		struct proto_attr a;

		h ^= h >> 29;
		snprintf(key, sizeof(key), "%016llx", (unsigned long long)h);
		cr_assert_eq(store_stat(s, key, 16, NOW, &a), 0);
		cr_assert_eq(a.size, 32);
	}
	long cnt = 0;

	cr_assert_eq(store_list(s, "", 0, '/', NULL, 0, NOW, count_cb, &cnt), N);
	store_close(s);
}
