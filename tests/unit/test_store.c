/*
 * Unit tests of the server's item store (src/server/store.c).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server/store.h"

#define MiB (1024ull * 1024)
#define NOW 1700000000LL

static struct store *open_store(uint64_t mem, uint64_t max_value, int none)
{
	struct store_config cfg = {.memory = mem, .max_value = max_value, .evict_none = none};
	struct store *s = NULL;

	cr_assert_eq(store_open(&s, &cfg), 0);
	cr_assert_not_null(s);
	return s;
}

static uint64_t rng_state = 88172645463325252ull;

/* $STORE_TEST_SEED picks another random sequence. */
static uint64_t rnd(void)
{
	static int seeded;

	if (!seeded) {
		const char *e = getenv("STORE_TEST_SEED");

		seeded = 1;
		if (e && strtoull(e, NULL, 0))
			rng_state = strtoull(e, NULL, 0);
	}
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Patterned bytes: depend on seed and absolute offset. */
static uint8_t pat(uint64_t seed, uint64_t off)
{
	uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ull + off * 0xbf58476d1ce4e5b9ull;

	x ^= x >> 31;
	x *= 0x94d049bb133111ebull;
	return (uint8_t)(x >> 29);
}

static void fill(uint8_t *b, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = pat(seed, i);
}

/* Read [off, off+len) of it via store_item_iov with at most max iovs per call. */
static uint64_t read_item(const struct item *it, uint64_t off, uint64_t len, uint8_t *out,
			  size_t max)
{
	struct iovec iov[64];
	uint64_t done = 0;

	cr_assert(max <= 64);
	while (done < len) {
		uint64_t cov = 0;
		size_t n = store_item_iov(it, off + done, len - done, iov, max, &cov);
		uint64_t sum = 0;

		cr_assert_leq(n, max);
		for (size_t i = 0; i < n; i++) {
			memcpy(out + done + sum, iov[i].iov_base, iov[i].iov_len);
			sum += iov[i].iov_len;
		}
		cr_assert_eq(sum, cov);
		if (!cov)
			break;
		done += cov;
	}
	return done;
}

/* Get key and check its value equals pattern seed of size len. */
static int check_key(struct store *s, const char *key, uint64_t seed, uint64_t len)
{
	struct item *it;
	struct kvfs_attr a;
	int r = store_get(s, key, strlen(key), NOW, &it);

	if (r)
		return r;
	store_item_attr(it, &a);
	cr_assert_eq(a.size, len, "%s: size %lu want %lu", key, (unsigned long)a.size,
		     (unsigned long)len);
	uint8_t *b = malloc(len + 1);

	cr_assert_eq(read_item(it, 0, len, b, 8), len);
	for (uint64_t i = 0; i < len; i++)
		if (b[i] != pat(seed, i))
			cr_assert_fail("%s: byte %lu differs", key, (unsigned long)i);
	free(b);
	store_release(s, it);
	return 0;
}

static int put_pat(struct store *s, const char *key, uint64_t seed, size_t len)
{
	uint8_t *b = malloc(len + 1);
	int r;

	fill(b, len, seed);
	r = store_put(s, key, strlen(key), b, len, NULL, NOW, NULL);
	free(b);
	return r;
}

static struct store_stats stats(struct store *s)
{
	struct store_stats st;

	store_stats(s, &st);
	return st;
}

/* ------------------------------------------------------------------ basics */

Test(store, open_limits)
{
	struct store *s = NULL;
	struct store_config c = {.memory = 15 * MiB, .max_value = MiB};

	cr_assert_eq(store_open(&s, &c), -EINVAL);
	c.memory = 16 * MiB + 12345;
	cr_assert_eq(store_open(&s, &c), 0);
	cr_assert_eq(store_pool_size(s), 16 * MiB);
	cr_assert_eq((uintptr_t)store_pool_base(s) % MiB, 0);
	store_close(s);
	c.memory = 33ull << 30;
	cr_assert_eq(store_open(&s, &c), -EINVAL);
}

/* The pool is a memfd: its bytes, read through the file, are the values'. */
Test(store, pool_is_a_shareable_file)
{
	struct store *s = open_store(32 * MiB, 8 * MiB, 0);
	struct item *it;
	struct iovec iov[1];
	uint64_t cov;
	char back[6];
	int fd = store_pool_fd(s);
	cr_assert_geq(fd, 0);
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, store_pool_size(s));
	cr_assert_eq(store_put(s, "k", 1, "hello", 5, NULL, NOW, NULL), 0);
	cr_assert_eq(store_get(s, "k", 1, NOW, &it), 0);
	cr_assert_eq(store_item_iov(it, 0, 5, iov, 1, &cov), 1);
	off_t at = (const uint8_t *)iov[0].iov_base - (const uint8_t *)store_pool_base(s);
	cr_assert_eq(pread(fd, back, 5, at), 5);
	cr_assert_eq(memcmp(back, "hello", 5), 0);
	store_release(s, it);
	store_close(s);
}

Test(store, roundtrip)
{
	struct store *s = open_store(32 * MiB, 8 * MiB, 0);
	struct item *it;
	struct kvfs_attr a;
	uint64_t v1 = 0, v2 = 0, v3 = 0;
	char big[KVFS_MAX_KEY + 1];
	uint8_t buf[64];

	cr_assert_eq(store_put(s, "k", 1, "", 0, NULL, NOW, &v1), 0);
	cr_assert_eq(store_put(s, "one", 3, "x", 1, NULL, NOW, &v2), 0);
	cr_assert_gt(v1, 0);
	cr_assert_gt(v2, v1);
	cr_assert_eq(store_get(s, "k", 1, NOW, &it), 0);
	store_item_attr(it, &a);
	cr_assert_eq(a.size, 0);
	cr_assert_eq(a.version, v1);
	cr_assert_eq(a.mode, S_IFREG | 0644 | KVFS_MODE_UNSET);
	cr_assert_eq(a.uid, KVFS_ID_UNSET);
	cr_assert_eq(a.gid, KVFS_ID_UNSET);
	cr_assert_eq(a.mtime_ns, NOW * 1000000000LL);
	cr_assert_eq(a.expiry, 0);
	uint64_t cov = 7;
	struct iovec iov[2];

	cr_assert_eq(store_item_iov(it, 0, 10, iov, 2, &cov), 0);
	cr_assert_eq(cov, 0);
	store_release(s, it);

	cr_assert_eq(store_get(s, "one", 3, NOW, &it), 0);
	cr_assert_eq(read_item(it, 0, 10, buf, 1), 1);
	cr_assert_eq(buf[0], 'x');
	store_release(s, it);

	memset(big, 'q', sizeof(big));
	big[0] = 'Z';
	cr_assert_eq(store_put(s, big, KVFS_MAX_KEY, "val", 3, NULL, NOW, NULL), 0);
	cr_assert_eq(store_put(s, big, KVFS_MAX_KEY + 1, "val", 3, NULL, NOW, NULL), -ENAMETOOLONG);
	cr_assert_eq(store_put(s, big, 0, "val", 3, NULL, NOW, NULL), -EINVAL);
	cr_assert_eq(store_get(s, big, KVFS_MAX_KEY, NOW, &it), 0);
	store_item_attr(it, &a);
	cr_assert_eq(a.size, 3);
	cr_assert_eq(read_item(it, 1, 10, buf, 1), 2);
	cr_assert_eq(memcmp(buf, "al", 2), 0);
	store_release(s, it);

	/* replace: new version, new bytes */
	struct store_attr sa = {.mask =
				    KVFS_SET_MODE | KVFS_SET_UID | KVFS_SET_GID | KVFS_SET_MTIME,
				.mode = 0600,
				.uid = 7,
				.gid = 8,
				.mtime_ns = 42};

	cr_assert_eq(store_put(s, "one", 3, "yz", 2, &sa, NOW, &v3), 0);
	cr_assert_gt(v3, v2);
	cr_assert_eq(store_stat(s, "one", 3, NOW, &a), 0);
	cr_assert_eq(a.size, 2);
	cr_assert_eq(a.version, v3);
	cr_assert_eq(a.mode, S_IFREG | 0600);
	cr_assert_eq(a.uid, 7);
	cr_assert_eq(a.gid, 8);
	cr_assert_eq(a.mtime_ns, 42);

	/* setattr keeps the version and the type bits */
	struct store_attr sb = {
	    .mask = KVFS_SET_MODE | KVFS_SET_TTL, .mode = S_IFDIR | 0755, .ttl = 100};

	cr_assert_eq(store_setattr(s, "one", 3, &sb, NOW, &a), 0);
	cr_assert_eq(a.version, v3);
	cr_assert_eq(a.mode, S_IFREG | 0755);
	cr_assert_eq(a.expiry, NOW + 100);
	cr_assert_eq(store_setattr(s, "nope", 4, &sb, NOW, &a), -ENOENT);

	struct store_stats st = stats(s);

	cr_assert_eq(st.keys, 3);
	cr_assert_eq(st.item_bytes, 1 + 0 + 3 + 2 + KVFS_MAX_KEY + 3);

	cr_assert_eq(store_delete(s, "one", 3), 0);
	cr_assert_eq(store_delete(s, "one", 3), -ENOENT);
	cr_assert_eq(store_get(s, "one", 3, NOW, &it), -ENOENT);
	cr_assert_eq(store_stat(s, "one", 3, NOW, &a), -ENOENT);
	cr_assert_eq(store_delete(s, "k", 1), 0);
	cr_assert_eq(store_delete(s, big, KVFS_MAX_KEY), 0);
	st = stats(s);
	cr_assert_eq(st.keys, 0);
	cr_assert_eq(st.item_bytes, 0);
	cr_assert_eq(st.pool_used, 0);

	/* max_value */
	uint8_t *v = calloc(1, 8 * MiB + 1);

	cr_assert_eq(store_put(s, "big", 3, v, 8 * MiB + 1, NULL, NOW, NULL), -EFBIG);
	cr_assert_eq(store_put(s, "big", 3, v, 8 * MiB, NULL, NOW, NULL), 0);
	free(v);
	store_close(s);
}

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
	const uint64_t sizes[] = {512 * 1024 - 40 - 5,
				  512 * 1024 - 40 - 4,
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

Test(store, pinning)
{
	struct store *s = open_store(16 * MiB, 8 * MiB, 0);
	struct item *a, *b, *c;
	struct kvfs_attr at;
	uint8_t *r = malloc(4 * MiB);
	char key[32];

	cr_assert_eq(put_pat(s, "A", 1, 200000), 0);
	cr_assert_eq(put_pat(s, "B", 2, 5000), 0);
	cr_assert_eq(put_pat(s, "C", 3, 3 * MiB + 17), 0);
	cr_assert_eq(store_get(s, "A", 1, NOW, &a), 0);
	cr_assert_eq(store_get(s, "B", 1, NOW, &b), 0);
	cr_assert_eq(store_get(s, "C", 1, NOW, &c), 0);
	/* delete A, replace B, leave C under pressure */
	cr_assert_eq(store_delete(s, "A", 1), 0);
	cr_assert_eq(store_get(s, "A", 1, NOW, &(struct item *){NULL}), -ENOENT);
	cr_assert_eq(put_pat(s, "B", 22, 6000), 0);
	cr_assert_eq(check_key(s, "B", 22, 6000), 0);
	for (int i = 0; i < 3000; i++) {
		snprintf(key, sizeof(key), "fill%d", i);
		cr_assert_eq(put_pat(s, key, (uint64_t)i, 20000 + (size_t)(i % 7) * 3000), 0);
	}
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "bigfill%d", i);
		cr_assert_eq(put_pat(s, key, (uint64_t)i, 2 * MiB + 5), 0);
	}
	cr_assert_gt(stats(s).evictions, 100);
	store_item_attr(a, &at);
	cr_assert_eq(at.size, 200000);
	cr_assert_eq(read_item(a, 0, 200000, r, 2), 200000);
	for (int i = 0; i < 200000; i++)
		cr_assert_eq(r[i], pat(1, (uint64_t)i));
	cr_assert_eq(read_item(b, 0, 5000, r, 2), 5000);
	for (int i = 0; i < 5000; i++)
		cr_assert_eq(r[i], pat(2, (uint64_t)i));
	cr_assert_eq(read_item(c, 0, 3 * MiB + 17, r, 2), 3 * MiB + 17);
	for (uint64_t i = 0; i < 3 * MiB + 17; i++)
		if (r[i] != pat(3, i))
			cr_assert_fail("C byte %lu", (unsigned long)i);
	/* C was never evicted while pinned */
	cr_assert_eq(store_stat(s, "C", 1, NOW, NULL), 0);
	store_release(s, a);
	store_release(s, b);
	store_release(s, c);
	/* everything can go now: memory is reclaimed */
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "bigfill%d", i);
		cr_assert_eq(put_pat(s, key, (uint64_t)i, 2 * MiB + 5), 0);
	}
	for (int i = 0; i < 3; i++) {
		snprintf(key, sizeof(key), "bigfill%d", i);
		cr_assert_eq(put_pat(s, key, (uint64_t)i, 5 * MiB), 0);
	}
	cr_assert_eq(store_stat(s, "C", 1, NOW, NULL), -ENOENT);
	/* delete all keys: the pool is empty again */
	for (int i = 0; i < 3000; i++) {
		snprintf(key, sizeof(key), "fill%d", i);
		store_delete(s, key, strlen(key));
	}
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "bigfill%d", i);
		store_delete(s, key, strlen(key));
	}
	store_delete(s, "B", 1);
	struct store_stats st = stats(s);

	cr_assert_eq(st.keys, 0);
	cr_assert_eq(st.pool_used, 0);
	free(r);
	store_close(s);
}

Test(store, pinned_delete_frees_on_release)
{
	struct store *s = open_store(16 * MiB, 8 * MiB, 0);
	struct item *a, *a2;

	cr_assert_eq(put_pat(s, "x", 1, 2 * MiB + 100), 0);
	cr_assert_eq(store_get(s, "x", 1, NOW, &a), 0);
	cr_assert_eq(store_get(s, "x", 1, NOW, &a2), 0);
	cr_assert_eq(a, a2);
	cr_assert_eq(store_delete(s, "x", 1), 0);
	cr_assert_gt(stats(s).pool_used, 2 * MiB);
	store_release(s, a);
	cr_assert_gt(stats(s).pool_used, 2 * MiB);
	store_release(s, a2);
	cr_assert_eq(stats(s).pool_used, 0);
	store_close(s);
}

/*
 * Long-lived pins (store_pin) stop at STORE_PIN_MAX, leaving room for the
 * pins of transfers (store_get, store_item_ref) up to STORE_REF_MAX, and
 * that still for the store's own short pin (rename, upload keep): the 16-bit
 * count never wraps.
 */
Test(store, pin_limits, .timeout = 60)
{
	struct store *s = open_store(16 * MiB, 8 * MiB, 0);
	struct item *it, *first, *x;
	struct upload *up;
	uint32_t held = 0;

	cr_assert_eq(put_pat(s, "k", 5, 3 * MiB + 1), 0);
	cr_assert_eq(store_pin(s, "k", 1, NOW, &first), 0);
	held++;
	for (; held < STORE_PIN_MAX; held++) {
		cr_assert_eq(store_pin(s, "k", 1, NOW, &it), 0, "pin %u", held);
		cr_assert_eq(it, first);
	}
	cr_assert_eq(store_pin(s, "k", 1, NOW, &it), -EBUSY);
	cr_assert_null(it);
	/* transfers still find room */
	cr_assert_eq(store_item_ref(s, first), 0);
	held++;
	for (; held < STORE_REF_MAX; held++)
		cr_assert_eq(store_get(s, "k", 1, NOW, &it), 0, "get at %u pins", held);
	cr_assert_eq(store_get(s, "k", 1, NOW, &it), -EBUSY);
	cr_assert_eq(store_item_ref(s, first), -EBUSY);
	cr_assert_eq(store_pin(s, "k", 1, NOW, &it), -EBUSY);
	/* the store's own short pins: keep-open and rename of a full item */
	cr_assert_eq(store_upload_open(s, "k", 1, 1, NOW, &up), 0);
	cr_assert_eq(store_upload_size(up), 3 * MiB + 1);
	store_upload_abort(s, up);
	cr_assert_eq(store_rename(s, "k", 1, "k2", 2, 0), 0);
	cr_assert_eq(check_key(s, "k2", 5, 3 * MiB + 1), 0);
	cr_assert_eq(store_stat(s, "k", 1, NOW, NULL), -ENOENT);
	/* the renamed-away item is alive (pinned) and intact */
	uint8_t *r = malloc(3 * MiB + 1);
	cr_assert_eq(read_item(first, 0, 3 * MiB + 1, r, 4), 3 * MiB + 1);
	for (uint64_t i = 0; i < 3 * MiB + 1; i++)
		if (r[i] != pat(5, i))
			cr_assert_fail("pinned byte %lu", (unsigned long)i);
	free(r);
	uint64_t used = stats(s).pool_used;
	while (held--)
		store_release(s, first);
	/* its last release freed it: only k2 is left */
	cr_assert_lt(stats(s).pool_used, used);
	cr_assert_eq(stats(s).keys, 1);
	cr_assert_eq(store_pin(s, "k2", 2, NOW, &x), 0);
	store_release(s, x);
	store_delete(s, "k2", 2);
	cr_assert_eq(stats(s).pool_used, 0);
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
		struct kvfs_attr a;
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

/* ------------------------------------------------------------------ TTL */

static int count_cb(void *arg, const char *name, size_t nlen, const struct kvfs_attr *a)
{
	(void)name;
	(void)nlen;
	(void)a;
	++*(long *)arg;
	return 0;
}

Test(store, ttl)
{
	struct store *s = open_store(32 * MiB, MiB, 0);
	struct store_attr ta = {.mask = KVFS_SET_TTL, .ttl = 10};
	struct kvfs_attr at;
	char key[32];
	uint8_t v[50] = {0};
	struct item *it;

	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof(key), "t/%d", i);
		cr_assert_eq(
		    store_put(s, key, strlen(key), v, sizeof(v), i % 2 ? &ta : NULL, NOW, NULL), 0);
	}
	cr_assert_eq(store_stat(s, "t/1", 3, NOW + 9, &at), 0);
	cr_assert_eq(at.expiry, NOW + 10);
	long cnt = 0;

	cr_assert_eq(store_list(s, "t/", 2, '/', NULL, 0, NOW + 9, count_cb, &cnt), 2000);
	cr_assert_eq(store_expire(s, NOW + 9, 100000), 0);
	/* expired (a TTL of 10 s lives at least 10 s): misses, skipped by listing */
	cr_assert_eq(store_get(s, "t/1", 3, NOW + 11, &it), -ENOENT);
	cr_assert_eq(store_stat(s, "t/3", 3, NOW + 11, &at), -ENOENT);
	cr_assert_eq(store_get(s, "t/2", 3, NOW + 11, &it), 0);
	store_release(s, it);
	cr_assert_eq(stats(s).expirations, 2);
	cnt = 0;
	cr_assert_eq(store_list(s, "t/", 2, 0, NULL, 0, NOW + 11, count_cb, &cnt), 1000);
	cr_assert(store_has_prefix(s, "t/", 2, NOW + 11));
	/* bounded reclaim */
	int total = 0, calls = 0;

	for (;;) {
		int r = store_expire(s, NOW + 11, 64);

		cr_assert_leq(r, 64);
		total += r;
		calls++;
		if (total == 998 || calls > 100000)
			break;
	}
	cr_assert_eq(total, 998);
	cr_assert_gt(calls, 10);
	struct store_stats st = stats(s);

	cr_assert_eq(st.expirations, 1000);
	cr_assert_eq(st.keys, 1000);
	cr_assert_eq(store_expire(s, NOW + 11, 100000), 0);
	/* setattr: ttl 0 = never; a new ttl */
	cr_assert_eq(store_setattr(s, "t/0", 3,
				   &(struct store_attr){.mask = KVFS_SET_TTL, .ttl = 5}, NOW + 11,
				   &at),
		     0);
	cr_assert_eq(at.expiry, NOW + 16);
	cr_assert_eq(store_setattr(s, "t/0", 3,
				   &(struct store_attr){.mask = KVFS_SET_TTL, .ttl = 0}, NOW + 11,
				   &at),
		     0);
	cr_assert_eq(at.expiry, 0);
	cr_assert_eq(store_stat(s, "t/0", 3, NOW + 1100000, &at), 0);
	/* only-expired directory: has_prefix false */
	cr_assert_eq(store_put(s, "e/x", 3, v, 1, &ta, NOW, NULL), 0);
	cr_assert(store_has_prefix(s, "e/", 2, NOW));
	cr_assert(!store_has_prefix(s, "e/", 2, NOW + 11));
	store_close(s);
}

/* -------------------------------------------------------------- uploads */

/* Write buf into [off, off+len) of the upload through iovs of at most max entries. */
static long up_write(struct store *s, struct upload *up, uint64_t off, const uint8_t *buf,
		     uint64_t len, size_t max)
{
	struct iovec iov[8];
	uint64_t done = 0;

	while (done < len) {
		uint64_t cov;
		long n = store_upload_iov(s, up, off + done, len - done, iov, max, &cov);

		if (n < 0)
			return n;
		uint64_t sum = 0;

		for (long i = 0; i < n; i++) {
			memcpy(iov[i].iov_base, buf + done + sum, iov[i].iov_len);
			sum += iov[i].iov_len;
		}
		cr_assert_eq(sum, cov);
		cr_assert_gt(cov, 0);
		done += cov;
	}
	return 0;
}

/*
 * Read [off, off+len) of the pending upload through iovs of at most max
 * entries into out; returns the bytes read. Checks that each call covers what
 * its iovs hold and that a read allocates nothing.
 */
static uint64_t up_read(struct store *s, const struct upload *up, uint64_t off, uint64_t len,
			uint8_t *out, size_t max)
{
	struct iovec iov[8];
	uint64_t done = 0, used = stats(s).pool_used;

	cr_assert(max <= 8);
	while (done < len) {
		uint64_t cov = 77;
		size_t n = store_upload_read_iov(s, up, off + done, len - done, iov, max, &cov);
		uint64_t sum = 0;

		cr_assert_leq(n, max);
		for (size_t i = 0; i < n; i++) {
			memcpy(out + done + sum, iov[i].iov_base, iov[i].iov_len);
			sum += iov[i].iov_len;
		}
		cr_assert_eq(sum, cov);
		if (!n)
			break;
		done += cov;
	}
	cr_assert_eq(stats(s).pool_used, used, "a read-back allocated pages");
	return done;
}

/* up_read of [off, off+len) equals ref (the model of a pending value of size bytes). */
static void up_check(struct store *s, const struct upload *up, uint64_t off, uint64_t len,
		     const uint8_t *ref, uint64_t size, size_t max)
{
	uint64_t want = off >= size ? 0 : (len < size - off ? len : size - off);
	uint8_t *b = malloc(len + 1);
	uint64_t got = up_read(s, up, off, len, b, max);

	cr_assert_eq(got, want, "read-back [%lu, +%lu) of %lu: %lu bytes", (unsigned long)off,
		     (unsigned long)len, (unsigned long)size, (unsigned long)got);
	if (want && memcmp(b, ref + off, want) != 0)
		cr_assert_fail("read-back [%lu, +%lu) differs", (unsigned long)off,
			       (unsigned long)want);
	free(b);
}

static void check_val(struct store *s, const char *key, const uint8_t *ref, uint64_t len)
{
	struct item *it;
	struct kvfs_attr a;
	uint8_t *b = malloc(len + 1);

	cr_assert_eq(store_get(s, key, strlen(key), NOW, &it), 0);
	store_item_attr(it, &a);
	cr_assert_eq(a.size, len);
	cr_assert_eq(read_item(it, 0, len, b, 3), len);
	cr_assert_eq(memcmp(b, ref, len), 0);
	store_release(s, it);
	free(b);
}

Test(store, upload_random_writes)
{
	struct store *s = open_store(64 * MiB, 16 * MiB, 0);
	const uint64_t cap = 6 * MiB;
	uint8_t *ref = calloc(1, cap), *src = malloc(cap);
	uint64_t size = 0;
	struct upload *up;
	uint64_t base = stats(s).pool_used;

	fill(src, cap, 9);
	cr_assert_eq(store_upload_open(s, "up/one", 6, 0, NOW, &up), 0);
	cr_assert_eq(stats(s).uploads, 1);
	for (int i = 0; i < 300; i++) {
		uint64_t op = rnd() % 10;

		if (op < 8) {
			uint64_t off = rnd() % (cap - 1), len = 1 + rnd() % (op < 2 ? MiB : 5000);

			if (off + len > cap)
				len = cap - off;
			cr_assert_eq(up_write(s, up, off, src + off, len, 1 + rnd() % 3), 0);
			if (off > size)
				memset(ref + size, 0, off - size);
			memcpy(ref + off, src + off, len);
			if (off + len > size)
				size = off + len;
		} else {
			uint64_t ns = rnd() % cap;

			cr_assert_eq(store_upload_truncate(s, up, ns), 0);
			if (ns > size)
				memset(ref + size, 0, ns - size);
			size = ns;
		}
		cr_assert_eq(store_upload_size(up), size);
		/* read-your-writes at a random range */
		uint64_t roff = rnd() % (size + 2), rlen = rnd() % (2 * MiB);

		up_check(s, up, roff, rlen, ref, size, 1 + rnd() % 3);
	}
	/* a final hole, a grow and shrink */
	cr_assert_eq(store_upload_truncate(s, up, 100), 0);
	cr_assert_eq(up_write(s, up, 3 * MiB + 5, src, 10, 2), 0);
	memset(ref + 100, 0, 3 * MiB + 5 - 100);
	memcpy(ref + 3 * MiB + 5, src, 10);
	size = 3 * MiB + 15;
	cr_assert_eq(store_upload_size(up), size);
	/* not visible before commit */
	cr_assert_eq(store_stat(s, "up/one", 6, NOW, NULL), -ENOENT);
	struct kvfs_attr a;

	cr_assert_eq(store_upload_commit(s, up, NULL, NOW, &a), 0);
	cr_assert_eq(a.size, size);
	cr_assert_eq(stats(s).uploads, 0);
	check_val(s, "up/one", ref, size);

	/* small commit path, with attributes */
	cr_assert_eq(store_upload_open(s, "up/small", 8, 0, NOW, &up), 0);
	cr_assert_eq(up_write(s, up, 10, src, 20, 1), 0);
	struct store_attr sa = {.mask = KVFS_SET_MODE, .mode = 0444};

	cr_assert_eq(store_upload_commit(s, up, &sa, NOW, &a), 0);
	cr_assert_eq(a.mode, S_IFREG | 0444);
	memset(ref, 0, 10);
	memcpy(ref + 10, src, 20);
	check_val(s, "up/small", ref, 30);

	/* abort frees pages */
	cr_assert_eq(store_delete(s, "up/one", 6), 0);
	cr_assert_eq(store_delete(s, "up/small", 8), 0);
	cr_assert_eq(stats(s).pool_used, base);
	cr_assert_eq(store_upload_open(s, "up/ab", 5, 0, NOW, &up), 0);
	cr_assert_eq(up_write(s, up, 0, src, 5 * MiB, 4), 0);
	cr_assert_geq(stats(s).pool_used, 5 * MiB);
	store_upload_abort(s, up);
	cr_assert_eq(stats(s).pool_used, base);
	cr_assert_eq(stats(s).uploads, 0);

	/* EFBIG */
	cr_assert_eq(store_upload_open(s, "up/big", 6, 0, NOW, &up), 0);
	struct iovec iov[2];
	uint64_t cov;

	cr_assert_eq(store_upload_iov(s, up, 16 * MiB - 1, 2, iov, 2, &cov), -EFBIG);
	cr_assert_eq(store_upload_truncate(s, up, 16 * MiB + 1), -EFBIG);
	cr_assert_eq(store_upload_iov(s, up, 16 * MiB - 1, 1, iov, 2, &cov), 1);
	cr_assert_eq(store_upload_commit(s, up, NULL, NOW, NULL), 0);
	cr_assert_eq(store_stat(s, "up/big", 6, NOW, &a), 0);
	cr_assert_eq(a.size, 16 * MiB);
	free(ref);
	free(src);
	store_close(s);
}

Test(store, upload_keep_and_atomic_commit)
{
	struct store *s = open_store(64 * MiB, 32 * MiB, 0);
	const uint64_t old_len = 2 * MiB + 333;
	uint8_t *ref = malloc(8 * MiB), *src = malloc(8 * MiB);
	struct upload *up;
	struct item *old;
	uint64_t v_old, cov;
	struct kvfs_attr a;

	fill(ref, old_len, 4);
	cr_assert_eq(store_put(s, "f", 1, ref, old_len, NULL, NOW, &v_old), 0);
	cr_assert_eq(store_upload_open(s, "f", 1, 1, NOW, &up), 0);
	cr_assert_eq(store_upload_size(up), old_len);
	/* append and patch */
	fill(src, 8 * MiB, 11);
	cr_assert_eq(up_write(s, up, old_len, src, MiB, 2), 0);
	memcpy(ref + old_len, src, MiB);
	cr_assert_eq(up_write(s, up, 100, src + 5, 50, 1), 0);
	memcpy(ref + 100, src + 5, 50);
	/* old value still there, pin it */
	cr_assert_eq(store_get(s, "f", 1, NOW, &old), 0);
	store_item_attr(old, &a);
	cr_assert_eq(a.version, v_old);
	cr_assert_eq(a.size, old_len);
	cr_assert_eq(store_upload_commit(s, up, NULL, NOW, &a), 0);
	cr_assert_gt(a.version, v_old);
	cr_assert_eq(a.size, old_len + MiB);
	check_val(s, "f", ref, old_len + MiB);
	/* the pinned old value is intact */
	uint8_t *b = malloc(old_len);

	cr_assert_eq(read_item(old, 0, old_len, b, 2), old_len);
	for (uint64_t i = 0; i < old_len; i++)
		if (b[i] != pat(4, i))
			cr_assert_fail("old byte %lu", (unsigned long)i);
	store_release(s, old);
	free(b);
	/* keep of a missing key starts empty; small value kept */
	cr_assert_eq(store_upload_open(s, "nokey", 5, 1, NOW, &up), 0);
	cr_assert_eq(store_upload_size(up), 0);
	store_upload_abort(s, up);
	cr_assert_eq(store_put(s, "s", 1, "hello", 5, NULL, NOW, NULL), 0);
	cr_assert_eq(store_upload_open(s, "s", 1, 1, NOW, &up), 0);
	cr_assert_eq(store_upload_size(up), 5);
	cr_assert_eq(store_upload_truncate(s, up, 8), 0);
	struct iovec iov[2];

	cr_assert_eq(store_upload_iov(s, up, 8, 1, iov, 2, &cov), 1);
	memcpy(iov[0].iov_base, "!", 1);
	cr_assert_eq(store_upload_commit(s, up, NULL, NOW, NULL), 0);
	check_val(s, "s", (const uint8_t *)"hello\0\0\0!", 9);
	/* commit of a large upload: pages are taken over (no growth of pool use) */
	cr_assert_eq(store_upload_open(s, "L", 1, 0, NOW, &up), 0);
	cr_assert_eq(up_write(s, up, 0, src, 8 * MiB, 8), 0);
	uint64_t used = stats(s).pool_used;

	cr_assert_eq(store_upload_commit(s, up, NULL, NOW, NULL), 0);
	cr_assert_leq(stats(s).pool_used, used + MiB);
	check_val(s, "L", src, 8 * MiB);
	free(ref);
	free(src);
	store_close(s);
}

Test(store, upload_read_back)
{
	struct store *s = open_store(64 * MiB, 32 * MiB, 0);
	const uint64_t cap = 12 * MiB;
	uint8_t *ref = calloc(1, cap), *src = malloc(cap);
	struct upload *up;
	struct iovec iov[4];
	uint64_t cov, size;

	fill(src, cap, 21);
	cr_assert_eq(store_upload_open(s, "rb", 2, 0, NOW, &up), 0);
	/* empty: nothing to read, nothing touched */
	cov = 5;
	cr_assert_eq(store_upload_read_iov(s, up, 0, 100, iov, 4, &cov), 0);
	cr_assert_eq(cov, 0);
	/* writes straddling 1 MiB page boundaries, with a hole between them */
	cr_assert_eq(up_write(s, up, MiB - 10, src, 20, 2), 0);
	memcpy(ref + MiB - 10, src, 20);
	cr_assert_eq(up_write(s, up, 3 * MiB - 5, src + 100, 2 * MiB + 10, 3), 0);
	memcpy(ref + 3 * MiB - 5, src + 100, 2 * MiB + 10);
	size = 5 * MiB + 5;
	cr_assert_eq(store_upload_size(up), size);
	/* holes read as zeroes; every max, every boundary */
	for (size_t max = 1; max <= 4; max++) {
		up_check(s, up, 0, size, ref, size, max);
		up_check(s, up, MiB - 11, 22, ref, size, max);
		up_check(s, up, 2 * MiB - 1, 2 * MiB + 2, ref, size, max);
		up_check(s, up, 4 * MiB, 10 * MiB, ref, size, max); /* short at the end */
		up_check(s, up, size - 1, 1, ref, size, max);
	}
	/* one iov covers at most what max allows: with max 1 a page-crossing range may stop short
	 */
	cr_assert_eq(store_upload_read_iov(s, up, MiB - 10, 20, iov, 1, &cov), 1);
	cr_assert_gt(cov, 0);
	cr_assert_leq(cov, 20);
	cr_assert_eq(iov[0].iov_len, cov);
	/* at and after the end; zero length; no room */
	cr_assert_eq(store_upload_read_iov(s, up, size, 10, iov, 4, &cov), 0);
	cr_assert_eq(cov, 0);
	cr_assert_eq(store_upload_read_iov(s, up, size + MiB, 10, iov, 4, &cov), 0);
	cr_assert_eq(store_upload_read_iov(s, up, 0, 0, iov, 4, &cov), 0);
	cr_assert_eq(store_upload_read_iov(s, up, 0, 10, iov, 0, &cov), 0);
	cr_assert_eq(cov, 0);
	cr_assert_eq(store_upload_size(up), size, "a read changed the size");
	/* after a shrinking truncate: clamped to the new size */
	cr_assert_eq(store_upload_truncate(s, up, 3 * MiB + 7), 0);
	size = 3 * MiB + 7;
	up_check(s, up, 0, 12 * MiB, ref, size, 2);
	up_check(s, up, 3 * MiB, 100, ref, size, 1);
	cr_assert_eq(store_upload_read_iov(s, up, 3 * MiB + 7, 1, iov, 4, &cov), 0);
	/* growing again (truncate, then a write past the end): the gap reads as zeroes */
	cr_assert_eq(store_upload_truncate(s, up, 4 * MiB), 0);
	memset(ref + size, 0, 4 * MiB - size);
	cr_assert_eq(up_write(s, up, 9 * MiB - 3, src + 7, 3 * MiB, 4), 0);
	memset(ref + 4 * MiB, 0, 5 * MiB - 3);
	memcpy(ref + 9 * MiB - 3, src + 7, 3 * MiB);
	size = 12 * MiB - 3;
	cr_assert_eq(store_upload_size(up), size);
	up_check(s, up, 0, size, ref, size, 4);
	up_check(s, up, 3 * MiB, 2 * MiB, ref, size, 1);
	/* the committed value is what was read back */
	cr_assert_eq(store_upload_commit(s, up, NULL, NOW, NULL), 0);
	check_val(s, "rb", ref, size);
	/* KEEP: reads back the old value, then the patched one */
	cr_assert_eq(store_upload_open(s, "rb", 2, 1, NOW, &up), 0);
	up_check(s, up, MiB - 100, 3 * MiB, ref, size, 3);
	cr_assert_eq(up_write(s, up, 2 * MiB - 1, src, 2, 1), 0);
	memcpy(ref + 2 * MiB - 1, src, 2);
	up_check(s, up, 2 * MiB - 3, 6, ref, size, 1);
	store_upload_abort(s, up);
	free(ref);
	free(src);
	store_close(s);
}

Test(store, unset_owner_and_mode)
{
	struct store *s = open_store(32 * MiB, 8 * MiB, 0);
	struct kvfs_attr a;
	struct upload *up;

	/* defaults: no owner, mode 0644 flagged as not stored */
	cr_assert_eq(store_put(s, "d", 1, "x", 1, NULL, NOW, NULL), 0);
	cr_assert_eq(store_stat(s, "d", 1, NOW, &a), 0);
	cr_assert_eq(a.uid, KVFS_ID_UNSET);
	cr_assert_eq(a.gid, KVFS_ID_UNSET);
	cr_assert_eq(a.mode, S_IFREG | 0644 | KVFS_MODE_UNSET);
	/* an empty mask is the same as no attributes */
	cr_assert_eq(
	    store_put(s, "d", 1, "x", 1, &(struct store_attr){.mask = 0, .uid = 3}, NOW, NULL), 0);
	cr_assert_eq(store_stat(s, "d", 1, NOW, &a), 0);
	cr_assert_eq(a.uid, KVFS_ID_UNSET);
	/* setattr of the owner alone leaves the mode flagged */
	struct store_attr o = {.mask = KVFS_SET_UID, .uid = 1000};

	cr_assert_eq(store_setattr(s, "d", 1, &o, NOW, &a), 0);
	cr_assert_eq(a.uid, 1000);
	cr_assert_eq(a.gid, KVFS_ID_UNSET);
	cr_assert_eq(a.mode, S_IFREG | 0644 | KVFS_MODE_UNSET);
	/* setting the mode clears the flag, even to the same bits */
	struct store_attr m = {.mask = KVFS_SET_MODE, .mode = 0644};

	cr_assert_eq(store_setattr(s, "d", 1, &m, NOW, &a), 0);
	cr_assert_eq(a.mode, S_IFREG | 0644);
	/* a client cannot set the flag itself */
	m.mode = KVFS_MODE_UNSET | 0600;
	cr_assert_eq(store_setattr(s, "d", 1, &m, NOW, &a), 0);
	cr_assert_eq(a.mode, S_IFREG | 0600);
	cr_assert_eq(store_put(s, "p", 1, "x", 1, &m, NOW, NULL), 0);
	cr_assert_eq(store_stat(s, "p", 1, NOW, &a), 0);
	cr_assert_eq(a.mode, S_IFREG | 0600);
	m.mode = KVFS_MODE_UNSET | S_IFREG | 0640;
	cr_assert_eq(store_put(s, "p", 1, "x", 1, &m, NOW, NULL), 0);
	cr_assert_eq(store_stat(s, "p", 1, NOW, &a), 0);
	cr_assert_eq(a.mode, S_IFREG | 0640);
	/* rename keeps the attributes, flag and all */
	cr_assert_eq(store_put(s, "r", 1, "x", 1, NULL, NOW, NULL), 0);
	cr_assert_eq(store_rename(s, "r", 1, "r2", 2, 0), 0);
	cr_assert_eq(store_stat(s, "r2", 2, NOW, &a), 0);
	cr_assert_eq(a.mode, S_IFREG | 0644 | KVFS_MODE_UNSET);
	cr_assert_eq(a.uid, KVFS_ID_UNSET);
	/* commits set attributes afresh, as puts do (KEEP keeps bytes, not attributes) */
	cr_assert_eq(store_upload_open(s, "d", 1, 1, NOW, &up), 0);
	cr_assert_eq(store_upload_commit(s, up, NULL, NOW, &a), 0);
	cr_assert_eq(a.mode, S_IFREG | 0644 | KVFS_MODE_UNSET);
	cr_assert_eq(a.uid, KVFS_ID_UNSET);
	cr_assert_eq(a.gid, KVFS_ID_UNSET);
	struct store_attr all = {
	    .mask = KVFS_SET_MODE | KVFS_SET_UID | KVFS_SET_GID, .mode = 0755, .uid = 0, .gid = 0};

	cr_assert_eq(store_upload_open(s, "d", 1, 1, NOW, &up), 0);
	cr_assert_eq(store_upload_commit(s, up, &all, NOW, &a), 0);
	cr_assert_eq(a.mode, S_IFREG | 0755);
	cr_assert_eq(a.uid, 0, "uid 0 is a stored owner, not the default");
	cr_assert_eq(a.gid, 0);
	store_close(s);
}

/* --------------------------------------------------------------- rename */

Test(store, rename)
{
	struct store *s = open_store(64 * MiB, 32 * MiB, 0);
	struct kvfs_attr a, b;
	struct item *pinned;
	uint64_t v;

	cr_assert_eq(store_rename(s, "a", 1, "b", 1, 0), -ENOENT);
	cr_assert_eq(store_put(s, "a", 1, "AAA", 3,
			       &(struct store_attr){.mask = KVFS_SET_UID, .uid = 5}, NOW, &v),
		     0);
	cr_assert_eq(store_put(s, "b", 1, "BB", 2, NULL, NOW, NULL), 0);
	cr_assert_eq(store_rename(s, "a", 1, "b", 1, 1), -EEXIST);
	cr_assert_eq(store_stat(s, "a", 1, NOW, &a), 0);
	cr_assert_eq(store_rename(s, "a", 1, "dir/longer-name", 15, 1), 0);
	cr_assert_eq(store_stat(s, "a", 1, NOW, NULL), -ENOENT);
	cr_assert_eq(store_stat(s, "dir/longer-name", 15, NOW, &b), 0);
	cr_assert_gt(b.version, a.version);
	cr_assert_eq(b.uid, 5);
	cr_assert_eq(b.size, 3);
	check_val(s, "dir/longer-name", (const uint8_t *)"AAA", 3);
	/* overwrite */
	cr_assert_eq(store_rename(s, "dir/longer-name", 15, "b", 1, 0), 0);
	check_val(s, "b", (const uint8_t *)"AAA", 3);
	cr_assert_eq(stats(s).keys, 1);
	cr_assert(!store_has_prefix(s, "dir/", 4, NOW));
	/* large, unpinned: pages move */
	cr_assert_eq(put_pat(s, "big", 8, 5 * MiB + 9), 0);
	uint64_t used = stats(s).pool_used;

	cr_assert_eq(store_rename(s, "big", 3, "big2", 4, 0), 0);
	cr_assert_eq(stats(s).pool_used, used);
	cr_assert_eq(check_key(s, "big2", 8, 5 * MiB + 9), 0);
	cr_assert_eq(check_key(s, "big", 8, 5 * MiB + 9), -ENOENT);
	/* large, pinned: copied; the reader keeps its bytes */
	cr_assert_eq(store_get(s, "big2", 4, NOW, &pinned), 0);
	cr_assert_eq(store_rename(s, "big2", 4, "big3", 4, 0), 0);
	cr_assert_eq(check_key(s, "big3", 8, 5 * MiB + 9), 0);
	cr_assert_eq(store_stat(s, "big2", 4, NOW, NULL), -ENOENT);
	uint8_t *r = malloc(5 * MiB + 9);

	cr_assert_eq(read_item(pinned, 0, 5 * MiB + 9, r, 4), 5 * MiB + 9);
	for (uint64_t i = 0; i < 5 * MiB + 9; i++)
		if (r[i] != pat(8, i))
			cr_assert_fail("pinned byte %lu", (unsigned long)i);
	store_release(s, pinned);
	free(r);
	cr_assert_eq(stats(s).pool_used, used);
	/* small value whose new key makes it large, and back */
	char longkey[4000];

	memset(longkey, 'k', sizeof(longkey));
	const size_t vl = 512 * 1024 - 40 - 100;

	cr_assert_eq(put_pat(s, "edge", 3, vl), 0);
	cr_assert_eq(store_rename(s, "edge", 4, longkey, sizeof(longkey), 0), 0);
	cr_assert_eq(store_get(s, longkey, sizeof(longkey), NOW, &pinned), 0);
	r = malloc(vl);
	cr_assert_eq(read_item(pinned, 0, vl, r, 4), vl);
	for (size_t i = 0; i < vl; i++)
		cr_assert_eq(r[i], pat(3, i));
	store_release(s, pinned);
	cr_assert_eq(store_rename(s, longkey, sizeof(longkey), "edge", 4, 0), 0);
	cr_assert_eq(check_key(s, "edge", 3, vl), 0);
	free(r);
	/* same name */
	cr_assert_eq(store_rename(s, "edge", 4, "edge", 4, 0), 0);
	cr_assert_eq(store_rename(s, "edge", 4, "edge", 4, 1), -EEXIST);
	cr_assert_eq(check_key(s, "edge", 3, vl), 0);
	store_close(s);
}

/* -------------------------------------------------------------- listing */

struct names {
	char **v;
	int *pfx;
	size_t n, cap;
	size_t limit; /* stop (return 1) when n reaches limit */
};

static int collect(void *arg, const char *name, size_t nlen, const struct kvfs_attr *a)
{
	struct names *L = arg;

	cr_assert_eq(strlen(name), nlen);
	if (L->limit && L->n == L->limit)
		return 1;
	if (L->n == L->cap) {
		L->cap = L->cap ? L->cap * 2 : 64;
		L->v = realloc(L->v, L->cap * sizeof(*L->v));
		L->pfx = realloc(L->pfx, L->cap * sizeof(*L->pfx));
	}
	L->v[L->n] = strndup(name, nlen);
	L->pfx[L->n] = a == NULL;
	if (a == NULL)
		cr_assert_eq(name[nlen - 1], '/');
	L->n++;
	return 0;
}

static void names_free(struct names *L)
{
	for (size_t i = 0; i < L->n; i++)
		free(L->v[i]);
	free(L->v);
	free(L->pfx);
	memset(L, 0, sizeof(*L));
}

static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reference listing over a sorted key array. */
static void ref_list(char **keys, size_t nk, const char *prefix, char delim, const char *cursor,
		     struct names *out)
{
	size_t pl = strlen(prefix);
	char last[KVFS_MAX_KEY + 1] = "";
	int have_last = 0;

	for (size_t i = 0; i < nk; i++) {
		const char *k = keys[i];

		if (strncmp(k, prefix, pl))
			continue;
		const char *sl = delim ? strchr(k + pl, delim) : NULL;
		char name[KVFS_MAX_KEY + 1];
		int isp = sl != NULL;

		if (sl) {
			memcpy(name, k, (size_t)(sl - k) + 1);
			name[sl - k + 1] = 0;
		} else {
			strcpy(name, k);
		}
		if (have_last && strcmp(name, last) == 0)
			continue;
		strcpy(last, name);
		have_last = 1;
		if (cursor && strcmp(name, cursor) <= 0)
			continue;
		struct kvfs_attr a = {0};

		collect(out, name, strlen(name), isp ? NULL : &a);
	}
}

static void same(struct names *a, struct names *b, const char *what)
{
	cr_assert_eq(a->n, b->n, "%s: %zu vs %zu entries", what, a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		cr_assert_str_eq(a->v[i], b->v[i], "%s: entry %zu", what, i);
		cr_assert_eq(a->pfx[i], b->pfx[i], "%s: entry %zu (%s)", what, i, a->v[i]);
	}
}

static void list_all(struct store *s, const char *prefix, char delim, const char *cursor,
		     struct names *out)
{
	long n = store_list(s, prefix, strlen(prefix), delim, cursor, cursor ? strlen(cursor) : 0,
			    NOW, collect, out);

	cr_assert_eq(n, (long)out->n);
}

/* Page through with a small limit, cursor = last delivered name. */
static void list_paged(struct store *s, const char *prefix, char delim, size_t page,
		       struct names *out)
{
	char cur[KVFS_MAX_KEY + 1] = "";

	for (;;) {
		struct names p = {.limit = page};
		long n = store_list(s, prefix, strlen(prefix), delim, cur, strlen(cur), NOW,
				    collect, &p);

		cr_assert_eq(n, (long)p.n);
		cr_assert_leq(p.n, page);
		for (size_t i = 0; i < p.n; i++)
			collect(out, p.v[i], strlen(p.v[i]),
				p.pfx[i] ? NULL : &(struct kvfs_attr){0});
		if (p.n)
			strcpy(cur, p.v[p.n - 1]);
		size_t got = p.n;

		names_free(&p);
		if (got < page)
			break;
	}
}

Test(store, list_basic)
{
	struct store *s = open_store(32 * MiB, MiB, 0);
	const char *keys[] = {"a",     "d/",	 "d/x",	    "d/y/z",  "d/y/",	   "dir/abc",
			      "dir/b", "dir/ab", "dir/ab/", "a//b",   "a//",	   "a/",
			      "z/q/r", "e/f/g/", "dir/abd", "dir/ac", "dir/ab/c/d"};
	size_t nk = sizeof(keys) / sizeof(keys[0]);
	struct names got = {0};

	for (size_t i = 0; i < nk; i++)
		cr_assert_eq(store_put(s, keys[i], strlen(keys[i]), "v", 1, NULL, NOW, NULL), 0);

	list_all(s, "", '/', NULL, &got);
	const char *top[] = {"a", "a/", "d/", "dir/", "e/", "z/"};

	cr_assert_eq(got.n, 6);
	for (size_t i = 0; i < 6; i++)
		cr_assert_str_eq(got.v[i], top[i]);
	cr_assert_eq(got.pfx[0], 0);
	cr_assert_eq(got.pfx[1], 1);
	names_free(&got);

	/* a marker key "d/" is listed as a key inside d/ */
	list_all(s, "d/", '/', NULL, &got);
	cr_assert_eq(got.n, 3);
	cr_assert_str_eq(got.v[0], "d/");
	cr_assert_eq(got.pfx[0], 0);
	cr_assert_str_eq(got.v[1], "d/x");
	cr_assert_str_eq(got.v[2], "d/y/");
	cr_assert_eq(got.pfx[2], 1);
	names_free(&got);

	/* prefix in the middle of a name */
	list_all(s, "dir/ab", '/', NULL, &got);
	cr_assert_eq(got.n, 4);
	cr_assert_str_eq(got.v[0], "dir/ab");
	cr_assert_str_eq(got.v[1], "dir/ab/");
	cr_assert_eq(got.pfx[1], 1);
	cr_assert_str_eq(got.v[2], "dir/abc");
	cr_assert_str_eq(got.v[3], "dir/abd");
	names_free(&got);

	/* empty components */
	list_all(s, "a/", '/', NULL, &got);
	cr_assert_eq(got.n, 2);
	cr_assert_str_eq(got.v[0], "a/");
	cr_assert_str_eq(got.v[1], "a//");
	cr_assert_eq(got.pfx[1], 1);
	names_free(&got);
	list_all(s, "a//", 0, NULL, &got);
	cr_assert_eq(got.n, 2);
	cr_assert_str_eq(got.v[0], "a//");
	cr_assert_str_eq(got.v[1], "a//b");
	names_free(&got);

	/* delim 0: every key in byte order */
	char *sorted[32];

	for (size_t i = 0; i < nk; i++)
		sorted[i] = (char *)keys[i];
	qsort(sorted, nk, sizeof(sorted[0]), cmpstr);
	list_all(s, "", 0, NULL, &got);
	cr_assert_eq(got.n, nk);
	for (size_t i = 0; i < nk; i++)
		cr_assert_str_eq(got.v[i], sorted[i]);
	names_free(&got);

	/* cursor inside a subtree, delim 0 */
	list_all(s, "dir/", 0, "dir/ab/", &got);
	cr_assert_eq(got.n, 5);
	cr_assert_str_eq(got.v[0], "dir/ab/c/d");
	cr_assert_str_eq(got.v[1], "dir/abc");
	names_free(&got);
	/* cursor = a common prefix, delim '/': skips its subtree */
	list_all(s, "dir/", '/', "dir/ab/", &got);
	cr_assert_eq(got.n, 4);
	cr_assert_str_eq(got.v[0], "dir/abc");
	names_free(&got);

	cr_assert_eq(store_list(s, "", 0, '-', NULL, 0, NOW, collect, &got), -EINVAL);
	cr_assert_eq(store_list(s, "nothere/", 8, '/', NULL, 0, NOW, collect, &got), 0);

	/* has_prefix */
	cr_assert(store_has_prefix(s, "d/", 2, NOW));
	cr_assert(store_has_prefix(s, "dir/ab/c/", 9, NOW));
	cr_assert(store_has_prefix(s, "di", 2, NOW));
	cr_assert(store_has_prefix(s, "", 0, NOW));
	cr_assert(!store_has_prefix(s, "dir/x", 5, NOW));
	cr_assert(!store_has_prefix(s, "q/", 2, NOW));
	cr_assert(!store_has_prefix(s, "dir/ab/c/d/", 11, NOW));
	cr_assert_eq(store_delete(s, "dir/ab/c/d", 10), 0);
	cr_assert(!store_has_prefix(s, "dir/ab/c/", 9, NOW));
	cr_assert(store_has_prefix(s, "dir/ab/", 7, NOW));
	cr_assert_eq(store_delete(s, "dir/ab/", 7), 0);
	cr_assert(!store_has_prefix(s, "dir/ab/", 7, NOW));
	list_all(s, "dir/", '/', NULL, &got);
	cr_assert_eq(got.n, 5);
	for (size_t i = 0; i < got.n; i++)
		cr_assert_eq(got.pfx[i], 0);
	names_free(&got);
	store_close(s);
}

Test(store, list_paging_10000)
{
	struct store *s = open_store(32 * MiB, MiB, 0);
	enum { N = 10000 };
	char **keys = malloc(N * sizeof(*keys));
	struct names full = {0}, paged = {0}, ref = {0};

	for (int i = 0; i < N; i++) {
		char k[64];
		uint64_t r = rnd();

		snprintf(k, sizeof(k), "p/%c/%08llx", 'a' + (int)(r % 3),
			 (unsigned long long)(r >> 20) & 0xffffffffull);
		keys[i] = strdup(k);
		cr_assert_eq(store_put(s, k, strlen(k), "v", 1, NULL, NOW, NULL), 0);
	}
	qsort(keys, N, sizeof(*keys), cmpstr);
	size_t nk = 0;

	for (int i = 0; i < N; i++)
		if (nk == 0 || strcmp(keys[nk - 1], keys[i]))
			keys[nk++] = keys[i];
		else
			free(keys[i]);
	list_all(s, "p/", 0, NULL, &full);
	ref_list(keys, nk, "p/", 0, NULL, &ref);
	same(&full, &ref, "full");
	list_paged(s, "p/", 0, 100, &paged);
	same(&paged, &ref, "paged");
	names_free(&full);
	names_free(&paged);
	names_free(&ref);
	list_paged(s, "p/b/", '/', 100, &paged);
	ref_list(keys, nk, "p/b/", '/', NULL, &ref);
	same(&paged, &ref, "paged b");
	cr_assert_gt(paged.n, 3000);
	names_free(&paged);
	names_free(&ref);
	for (size_t i = 0; i < nk; i++)
		free(keys[i]);
	free(keys);
	store_close(s);
}

/* Random keys over a small alphabet with '/', compared against a brute-force listing. */
Test(store, list_random_model)
{
	struct store *s = open_store(32 * MiB, MiB, 0);
	enum { N = 3000 };
	char **keys = calloc(N, sizeof(*keys));
	size_t nk = 0;
	const char alpha[] = "ab/";

	for (int round = 0; round < 6; round++) {
		/* insert some, delete some */
		for (int i = 0; i < 600; i++) {
			char k[16];
			int l = 1 + (int)(rnd() % 8);

			for (int j = 0; j < l; j++)
				k[j] = alpha[rnd() % 3];
			k[l] = 0;
			if (rnd() % 4 == 0 && nk) {
				size_t d = rnd() % nk;

				cr_assert_eq(store_delete(s, keys[d], strlen(keys[d])), 0);
				free(keys[d]);
				keys[d] = keys[--nk];
				continue;
			}
			int dup = 0;

			for (size_t x = 0; x < nk; x++)
				if (!strcmp(keys[x], k))
					dup = 1;
			cr_assert_eq(store_put(s, k, (size_t)l, "v", 1, NULL, NOW, NULL), 0);
			if (!dup)
				keys[nk++] = strdup(k);
		}
		qsort(keys, nk, sizeof(*keys), cmpstr);
		cr_assert_eq(stats(s).keys, nk);
		/* prefixes: "", every key and its prefixes, some random strings */
		for (int t = 0; t < 150; t++) {
			char pre[16] = "";

			if (t) {
				const char *k = keys[rnd() % nk];
				size_t pl = rnd() % (strlen(k) + 1);

				memcpy(pre, k, pl);
				pre[pl] = 0;
				if (t % 7 == 0)
					pre[pl ? pl - 1 : 0] = 'b';
			}
			for (int dl = 0; dl < 2; dl++) {
				char delim = dl ? '/' : 0;
				struct names a = {0}, r = {0}, p = {0};

				list_all(s, pre, delim, NULL, &a);
				ref_list(keys, nk, pre, delim, NULL, &r);
				same(&a, &r, pre);
				list_paged(s, pre, delim, 1 + rnd() % 7, &p);
				same(&p, &r, pre);
				names_free(&a);
				names_free(&p);
				/* a cursor that was never delivered */
				const char *cur = keys[rnd() % nk];

				names_free(&r);
				list_all(s, pre, delim, cur, &a);
				ref_list(keys, nk, pre, delim, cur, &r);
				same(&a, &r, cur);
				names_free(&a);
				names_free(&r);
				int hp = 0;

				for (size_t x = 0; x < nk && !hp; x++)
					hp = strncmp(keys[x], pre, strlen(pre)) == 0;
				cr_assert_eq(!!store_has_prefix(s, pre, strlen(pre), NOW), hp,
					     "has_prefix(%s)", pre);
			}
		}
	}
	/* delete everything: the directory index is empty again */
	for (size_t i = 0; i < nk; i++) {
		cr_assert_eq(store_delete(s, keys[i], strlen(keys[i])), 0);
		free(keys[i]);
	}
	free(keys);
	struct names a = {0};

	cr_assert_eq(stats(s).keys, 0);
	cr_assert_eq(stats(s).pool_used, 0);
	cr_assert(!store_has_prefix(s, "", 0, NOW));
	list_all(s, "", 0, NULL, &a);
	cr_assert_eq(a.n, 0);
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
	cr_assert_leq(per, 64.0);
	/* spot check */
	for (uint64_t i = 0; i < N; i += 9973) {
		uint64_t h = (i + 1) * 0x9e3779b97f4a7c15ull;
		struct kvfs_attr a;

		h ^= h >> 29;
		snprintf(key, sizeof(key), "%016llx", (unsigned long long)h);
		cr_assert_eq(store_stat(s, key, 16, NOW, &a), 0);
		cr_assert_eq(a.size, 32);
	}
	long cnt = 0;

	cr_assert_eq(store_list(s, "", 0, '/', NULL, 0, NOW, count_cb, &cnt), N);
	store_close(s);
}

/* ------------------------------------------------------------ stress */

struct mkey {
	char name[24];
	uint64_t seed, len;
	int live;
};

static uint64_t stress_len(void)
{
	uint64_t r = rnd() % 100;

	if (r < 70)
		return rnd() % 600;
	if (r < 90)
		return 1000 + rnd() % 60000;
	if (r < 97)
		return 100000 + rnd() % 500000;
	return MiB + rnd() % (3 * MiB);
}

/* Random puts, deletes, renames, pins and uploads under eviction, against a model. */
Test(store, stress_lru_model, .timeout = 60)
{
	struct store *s = open_store(24 * MiB, 8 * MiB, 0);
	enum { NK = 400, OPS = 20000, NPIN = 6 };
	static struct mkey m[NK];
	struct {
		struct item *it;
		uint64_t seed, len;
	} pins[NPIN] = {0};
	uint64_t seedgen = 1000;
	uint8_t *buf = malloc(4 * MiB);

	for (int i = 0; i < NK; i++)
		snprintf(m[i].name, sizeof(m[i].name), "%c/%c%d", 'a' + i % 4, 'x' + i % 3, i);
	for (int op = 0; op < OPS; op++) {
		int k = (int)(rnd() % NK), r;
		uint64_t what = rnd() % 100;

		if (what < 45) {
			uint64_t len = stress_len(), seed = ++seedgen;

			fill(buf, len, seed);
			r = store_put(s, m[k].name, strlen(m[k].name), buf, len, NULL, NOW, NULL);
			if (r == 0) {
				m[k].seed = seed;
				m[k].len = len;
				m[k].live = 1;
			} else {
				cr_assert_eq(r, -ENOSPC);
			}
		} else if (what < 60) {
			r = check_key(s, m[k].name, m[k].seed, m[k].len);
			if (!m[k].live)
				cr_assert_eq(r, -ENOENT);
			if (r)
				m[k].live = 0;
		} else if (what < 70) {
			r = store_delete(s, m[k].name, strlen(m[k].name));
			if (!m[k].live)
				cr_assert_eq(r, -ENOENT);
			m[k].live = 0;
		} else if (what < 78) {
			int d = (int)(rnd() % NK), nr = (int)(rnd() % 2);

			r = store_rename(s, m[k].name, strlen(m[k].name), m[d].name,
					 strlen(m[d].name), nr);
			if (!m[k].live) {
				cr_assert_eq(r, -ENOENT);
			} else if (r == -ENOENT) {
				m[k].live = 0; /* was evicted */
			} else if (k == d) {
				cr_assert(r == 0 || r == -EEXIST);
			} else if (r == -EEXIST) {
				cr_assert(nr);
				cr_assert_eq(store_stat(s, m[d].name, strlen(m[d].name), NOW, NULL),
					     0);
			} else if (r == 0) {
				m[d].seed = m[k].seed;
				m[d].len = m[k].len;
				m[d].live = 1;
				m[k].live = 0;
			} else {
				cr_assert_eq(r, -ENOSPC);
			}
		} else if (what < 88) {
			int p = (int)(rnd() % NPIN);

			if (pins[p].it) {
				uint64_t len = pins[p].len;

				cr_assert_eq(read_item(pins[p].it, 0, len, buf, 2), len);
				for (uint64_t i = 0; i < len; i++)
					if (buf[i] != pat(pins[p].seed, i))
						cr_assert_fail("pinned byte %lu", (unsigned long)i);
				store_release(s, pins[p].it);
				pins[p].it = NULL;
			} else if (store_get(s, m[k].name, strlen(m[k].name), NOW, &pins[p].it) ==
				   0) {
				cr_assert(m[k].live);
				pins[p].seed = m[k].seed;
				pins[p].len = m[k].len;
			} else {
				m[k].live = 0;
			}
		} else {
			/* upload: keep or not, a few writes, commit or abort */
			struct upload *up;
			int keep = (int)(rnd() % 2);
			uint64_t seed = ++seedgen, len = stress_len();

			r = store_upload_open(s, m[k].name, strlen(m[k].name), keep, NOW, &up);
			if (r) {
				cr_assert_eq(r, -ENOSPC);
				continue;
			}
			if (keep && store_upload_size(up) == 0)
				m[k].live = m[k].live && m[k].len == 0;
			fill(buf, len, seed);
			long w = up_write(s, up, 0, buf, len, 1 + rnd() % 3);

			if (w == 0 && store_upload_size(up) > len)
				w = store_upload_truncate(s, up, len);
			if (w || rnd() % 5 == 0) {
				store_upload_abort(s, up);
				continue;
			}
			cr_assert_eq(store_upload_size(up), len);
			r = store_upload_commit(s, up, NULL, NOW, NULL);
			if (r == 0) {
				m[k].seed = seed;
				m[k].len = len;
				m[k].live = 1;
			} else {
				cr_assert_eq(r, -ENOSPC);
			}
		}
		if (op % 2000 == 1999) {
			/* full check: listing = live keys, bytes right */
			struct names all = {0};
			long n = store_list(s, "", 0, 0, NULL, 0, NOW, collect, &all);

			cr_assert_eq((uint64_t)n, stats(s).keys);
			for (size_t i = 1; i < all.n; i++)
				cr_assert_lt(strcmp(all.v[i - 1], all.v[i]), 0);
			names_free(&all);
			for (int i = 0; i < NK; i++) {
				r = check_key(s, m[i].name, m[i].seed, m[i].len);
				if (!m[i].live)
					cr_assert_eq(r, -ENOENT, "%s", m[i].name);
				if (r)
					m[i].live = 0;
			}
		}
	}
	struct store_stats st = stats(s);

	cr_assert_gt(st.evictions, 100);
	for (int p = 0; p < NPIN; p++)
		store_release(s, pins[p].it);
	for (int i = 0; i < NK; i++)
		store_delete(s, m[i].name, strlen(m[i].name));
	st = stats(s);
	cr_assert_eq(st.keys, 0);
	cr_assert_eq(st.item_bytes, 0);
	cr_assert_eq(st.pool_used, 0);
	cr_assert(!store_has_prefix(s, "", 0, NOW));
	free(buf);
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

Test(store, concurrent_uploads_and_close)
{
	struct store *s = open_store(32 * MiB, 8 * MiB, 0);
	struct upload *u[4];
	uint8_t *src = malloc(3 * MiB);

	fill(src, 3 * MiB, 21);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(store_upload_open(s, i < 2 ? "same" : (i == 2 ? "x" : "y"),
					       i < 2 ? 4 : 1, 0, NOW, &u[i]),
			     0);
	cr_assert_eq(stats(s).uploads, 4);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(up_write(s, u[i], 0, src + i, 2 * MiB + (uint64_t)i, 2), 0);
	/* commit from the middle of the list, then the others; the last commit wins */
	cr_assert_eq(store_upload_commit(s, u[1], NULL, NOW, NULL), 0);
	check_val(s, "same", src + 1, 2 * MiB + 1);
	cr_assert_eq(store_upload_commit(s, u[0], NULL, NOW, NULL), 0);
	check_val(s, "same", src, 2 * MiB);
	store_upload_abort(s, u[2]);
	cr_assert_eq(stats(s).uploads, 1);
	cr_assert_eq(store_stat(s, "x", 1, NOW, NULL), -ENOENT);
	/* a put over an expired key replaces it and counts the expiration */
	cr_assert_eq(store_put(s, "t", 1, "a", 1,
			       &(struct store_attr){.mask = KVFS_SET_TTL, .ttl = 1}, NOW, NULL),
		     0);
	cr_assert_eq(store_put(s, "t", 1, "b", 1, NULL, NOW + 5, NULL), 0);
	cr_assert_eq(stats(s).expirations, 1);
	cr_assert_eq(stats(s).keys, 2);
	free(src);
	/* u[3] still open: store_close frees it */
	store_close(s);
}
