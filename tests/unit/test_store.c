/*
 * Unit tests of the server's item store: item life, the public calls, pins,
 * expiry and rename (src/server/store.c), and a stress run of all of it
 * against a model.
 */
#include "store_fixture.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ basics */

#define SEC(t) ((t)*1000000000LL)

static struct proto_attr stat_of(struct store *s, const char *key, int64_t now)
{
	struct proto_attr a;

	cr_assert_eq(store_stat(s, key, strlen(key), now, &a), 0, "stat %s", key);
	return a;
}

/*
 * atime as set and never by reads; ctime at every change of value or
 * attributes (put, commit, setattr, rename), from the caller's second when
 * the real clock is elsewhere (NOW is in 2023).
 */
Test(store, times)
{
	struct store *s = open_store(64 * MiB, 0, 0);
	struct proto_setattr sa = {
	    .mask = PROTO_SET_MTIME | PROTO_SET_ATIME, .mtime_ns = 5, .atime_ns = 7};
	struct proto_attr a;
	struct item *it;

	cr_assert_eq(store_put(s, "f", 1, "abc", 3, &sa, NOW, NULL), 0);
	a = stat_of(s, "f", NOW);
	cr_assert_eq(a.mtime_ns, 5);
	cr_assert_eq(a.atime_ns, 7);
	cr_assert_eq(a.ctime_ns, SEC(NOW));
	/* reads change nothing */
	cr_assert_eq(store_get(s, "f", 1, NOW + 1, &it), 0);
	store_release(s, it);
	a = stat_of(s, "f", NOW + 1);
	cr_assert_eq(a.atime_ns, 7);
	cr_assert_eq(a.ctime_ns, SEC(NOW));
	/* chmod, chown, utimens, TTL: ctime each time, the other times as given */
	struct proto_setattr m = {.mask = PROTO_SET_MODE, .mode = 0600};

	cr_assert_eq(store_setattr(s, "f", 1, &m, NOW + 2, &a), 0);
	cr_assert_eq(a.ctime_ns, SEC(NOW + 2));
	cr_assert_eq(a.mtime_ns, 5);
	cr_assert_eq(a.atime_ns, 7);
	m = (struct proto_setattr){.mask = PROTO_SET_UID | PROTO_SET_GID, .uid = 1, .gid = 2};
	cr_assert_eq(store_setattr(s, "f", 1, &m, NOW + 3, &a), 0);
	cr_assert_eq(a.ctime_ns, SEC(NOW + 3));
	m = (struct proto_setattr){.mask = PROTO_SET_ATIME, .atime_ns = 9};
	cr_assert_eq(store_setattr(s, "f", 1, &m, NOW + 4, &a), 0);
	cr_assert_eq(a.atime_ns, 9);
	cr_assert_eq(a.mtime_ns, 5);
	cr_assert_eq(a.ctime_ns, SEC(NOW + 4));
	m = (struct proto_setattr){.mask = PROTO_SET_TTL, .ttl = 1000};
	cr_assert_eq(store_setattr(s, "f", 1, &m, NOW + 5, &a), 0);
	cr_assert_eq(a.ctime_ns, SEC(NOW + 5));
	m = (struct proto_setattr){0};
	cr_assert_eq(store_setattr(s, "f", 1, &m, NOW + 6, &a), 0);
	cr_assert_eq(a.ctime_ns, SEC(NOW + 5), "an empty mask changes nothing");
	/* a new value: mtime and ctime now, the atime kept */
	cr_assert_eq(store_put(s, "f", 1, "abcd", 4, NULL, NOW + 7, NULL), 0);
	a = stat_of(s, "f", NOW + 7);
	cr_assert_eq(a.mtime_ns, SEC(NOW + 7));
	cr_assert_eq(a.ctime_ns, SEC(NOW + 7));
	cr_assert_eq(a.atime_ns, 9);
	/* an upload's commit (write, truncate) likewise */
	struct upload *up;

	cr_assert_eq(store_upload_open(s, "f", 1, 1, NOW + 8, &up), 0);
	cr_assert_eq(store_upload_truncate(s, up, 1), 0);
	cr_assert_eq(store_upload_commit(s, up, NULL, NOW + 8, &a), 0);
	cr_assert_eq(a.size, 1);
	cr_assert_eq(a.mtime_ns, SEC(NOW + 8));
	cr_assert_eq(a.ctime_ns, SEC(NOW + 8));
	cr_assert_eq(a.atime_ns, 9);
	/* rename: the ctime only */
	a = stat_of(s, "f", NOW + 9);
	cr_assert_eq(store_rename(s, "f", 1, "g", 1, 0), 0);
	a = stat_of(s, "g", NOW + 9);
	cr_assert_eq(a.mtime_ns, SEC(NOW + 8));
	cr_assert_eq(a.atime_ns, 9);
	cr_assert_eq(a.ctime_ns, SEC(NOW + 9));
	/* a new key without times: all three now */
	cr_assert_eq(store_put(s, "h", 1, "", 0, NULL, NOW + 9, NULL), 0);
	a = stat_of(s, "h", NOW + 9);
	cr_assert_eq(a.atime_ns, SEC(NOW + 9));
	cr_assert_eq(a.mtime_ns, SEC(NOW + 9));

	/* the real clock: nanoseconds within the caller's second, never backwards */
	int64_t now = (int64_t)time(NULL), prev;

	cr_assert_eq(store_put(s, "r", 1, "x", 1, NULL, now, NULL), 0);
	a = stat_of(s, "r", now);
	cr_assert_geq(a.ctime_ns, SEC(now));
	cr_assert_lt(a.ctime_ns, SEC(now + 1));
	cr_assert_eq(a.mtime_ns, a.ctime_ns);
	cr_assert_eq(a.atime_ns, a.ctime_ns);
	prev = a.ctime_ns;
	for (int i = 0; i < 100; i++) {
		m = (struct proto_setattr){.mask = PROTO_SET_MODE, .mode = 0600 + (i & 7)};
		cr_assert_eq(store_setattr(s, "r", 1, &m, now, &a), 0);
		cr_assert_geq(a.ctime_ns, prev);
		cr_assert_lt(a.ctime_ns, SEC(now + 1));
		prev = a.ctime_ns;
	}
	store_close(s);
}

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
	struct proto_attr a;
	uint64_t v1 = 0, v2 = 0, v3 = 0;
	char big[PROTO_MAX_KEY + 1];
	uint8_t buf[64];

	cr_assert_eq(store_put(s, "k", 1, "", 0, NULL, NOW, &v1), 0);
	cr_assert_eq(store_put(s, "one", 3, "x", 1, NULL, NOW, &v2), 0);
	cr_assert_gt(v1, 0);
	cr_assert_gt(v2, v1);
	cr_assert_eq(store_get(s, "k", 1, NOW, &it), 0);
	store_item_attr(it, &a);
	cr_assert_eq(a.size, 0);
	cr_assert_eq(a.version, v1);
	cr_assert_eq(a.mode, S_IFREG | 0644 | PROTO_MODE_UNSET);
	cr_assert_eq(a.uid, PROTO_ID_UNSET);
	cr_assert_eq(a.gid, PROTO_ID_UNSET);
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
	cr_assert_eq(store_put(s, big, PROTO_MAX_KEY, "val", 3, NULL, NOW, NULL), 0);
	cr_assert_eq(store_put(s, big, PROTO_MAX_KEY + 1, "val", 3, NULL, NOW, NULL),
		     -ENAMETOOLONG);
	cr_assert_eq(store_put(s, big, 0, "val", 3, NULL, NOW, NULL), -EINVAL);
	cr_assert_eq(store_get(s, big, PROTO_MAX_KEY, NOW, &it), 0);
	store_item_attr(it, &a);
	cr_assert_eq(a.size, 3);
	cr_assert_eq(read_item(it, 1, 10, buf, 1), 2);
	cr_assert_eq(memcmp(buf, "al", 2), 0);
	store_release(s, it);

	/* replace: new version, new bytes */
	struct proto_setattr sa = {.mask = PROTO_SET_MODE | PROTO_SET_UID | PROTO_SET_GID |
					   PROTO_SET_MTIME,
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
	struct proto_setattr sb = {
	    .mask = PROTO_SET_MODE | PROTO_SET_TTL, .mode = S_IFDIR | 0755, .ttl = 100};

	cr_assert_eq(store_setattr(s, "one", 3, &sb, NOW, &a), 0);
	cr_assert_eq(a.version, v3);
	cr_assert_eq(a.mode, S_IFREG | 0755);
	cr_assert_eq(a.expiry, NOW + 100);
	cr_assert_eq(store_setattr(s, "nope", 4, &sb, NOW, &a), -ENOENT);

	struct store_stats st = stats(s);

	cr_assert_eq(st.keys, 3);
	cr_assert_eq(st.item_bytes, 1 + 0 + 3 + 2 + PROTO_MAX_KEY + 3);

	cr_assert_eq(store_delete(s, "one", 3), 0);
	cr_assert_eq(store_delete(s, "one", 3), -ENOENT);
	cr_assert_eq(store_get(s, "one", 3, NOW, &it), -ENOENT);
	cr_assert_eq(store_stat(s, "one", 3, NOW, &a), -ENOENT);
	cr_assert_eq(store_delete(s, "k", 1), 0);
	cr_assert_eq(store_delete(s, big, PROTO_MAX_KEY), 0);
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

/* ------------------------------------------------------------------ pins */

Test(store, pinning)
{
	struct store *s = open_store(16 * MiB, 8 * MiB, 0);
	struct item *a, *b, *c;
	struct proto_attr at;
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
 * The lock contract of store.h: store_item_iov runs without the store lock on
 * pinned items (kvfs-server's endpoint threads) while locked calls touch,
 * re-attribute, replace and delete them and evict around them. The reader
 * sees every pinned byte intact.
 */
struct unlocked_reader {
	struct item *it[2];
	uint64_t seed[2], len[2];
	atomic_int stop;
	long rounds, bad;
};

static void *read_unlocked(void *arg)
{
	struct unlocked_reader *r = arg;

	while (!atomic_load(&r->stop) || r->rounds == 0) {
		for (int k = 0; k < 2; k++) {
			struct iovec iov[8];
			uint64_t off = 0, cov;

			while (off < r->len[k]) {
				size_t n =
				    store_item_iov(r->it[k], off, r->len[k] - off, iov, 8, &cov);

				for (size_t i = 0; i < n; i++) {
					const uint8_t *b = iov[i].iov_base;

					for (size_t j = 0; j < iov[i].iov_len; j += 4093)
						r->bad += b[j] != pat(r->seed[k], off + j);
					off += iov[i].iov_len;
				}
				if (!cov)
					break;
			}
			r->bad += off != r->len[k];
		}
		r->rounds++;
	}
	return NULL;
}

Test(store, pinned_reads_without_the_lock, .timeout = 60)
{
	struct store *s = open_store(16 * MiB, 8 * MiB, 0);
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct unlocked_reader r = {.seed = {1, 2}, .len = {300, 3 * MiB + 5}};
	struct proto_setattr sa = {
	    .mask = PROTO_SET_MODE | PROTO_SET_TTL, .mode = 0600, .ttl = 100};
	pthread_t t;
	char key[32];

	cr_assert_eq(put_pat(s, "small", 1, 300), 0);
	cr_assert_eq(put_pat(s, "big", 2, 3 * MiB + 5), 0);
	cr_assert_eq(store_pin(s, "small", 5, NOW, &r.it[0]), 0);
	cr_assert_eq(store_pin(s, "big", 3, NOW, &r.it[1]), 0);
	cr_assert_eq(pthread_create(&t, NULL, read_unlocked, &r), 0);
	for (int i = 0; i < 4000; i++) {
		struct item *it;

		pthread_mutex_lock(&lock);
		if (store_get(s, "small", 5, NOW, &it) == 0)
			store_release(s, it);
		store_stat(s, "big", 3, NOW, NULL);
		store_setattr(s, "small", 5, &sa, NOW, NULL);
		snprintf(key, sizeof(key), "fill%d", i);
		cr_assert_eq(put_pat(s, key, (uint64_t)i, 1000 + (size_t)(i % 40) * 1000), 0);
		if (i == 2000) {
			cr_assert_eq(put_pat(s, "small", 3, 10), 0);
			cr_assert_eq(store_delete(s, "big", 3), 0);
		}
		pthread_mutex_unlock(&lock);
	}
	atomic_store(&r.stop, 1);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_gt(r.rounds, 0);
	cr_assert_eq(r.bad, 0, "%ld bad reads in %ld rounds", r.bad, r.rounds);
	cr_assert_gt(stats(s).evictions, 0);
	uint64_t used = stats(s).pool_used;

	store_release(s, r.it[0]);
	store_release(s, r.it[1]);
	cr_assert_lt(stats(s).pool_used, used);
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

/* ------------------------------------------------------------------ TTL */

Test(store, ttl)
{
	struct store *s = open_store(32 * MiB, MiB, 0);
	struct proto_setattr ta = {.mask = PROTO_SET_TTL, .ttl = 10};
	struct proto_attr at;
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
				   &(struct proto_setattr){.mask = PROTO_SET_TTL, .ttl = 5},
				   NOW + 11, &at),
		     0);
	cr_assert_eq(at.expiry, NOW + 16);
	cr_assert_eq(store_setattr(s, "t/0", 3,
				   &(struct proto_setattr){.mask = PROTO_SET_TTL, .ttl = 0},
				   NOW + 11, &at),
		     0);
	cr_assert_eq(at.expiry, 0);
	cr_assert_eq(store_stat(s, "t/0", 3, NOW + 1100000, &at), 0);
	/* only-expired directory: has_prefix false */
	cr_assert_eq(store_put(s, "e/x", 3, v, 1, &ta, NOW, NULL), 0);
	cr_assert(store_has_prefix(s, "e/", 2, NOW));
	cr_assert(!store_has_prefix(s, "e/", 2, NOW + 11));
	store_close(s);
}

/* ----------------------------------------------------------- attributes */

Test(store, unset_owner_and_mode)
{
	struct store *s = open_store(32 * MiB, 8 * MiB, 0);
	struct proto_attr a;
	struct upload *up;

	/* defaults: no owner, mode 0644 flagged as not stored */
	cr_assert_eq(store_put(s, "d", 1, "x", 1, NULL, NOW, NULL), 0);
	cr_assert_eq(store_stat(s, "d", 1, NOW, &a), 0);
	cr_assert_eq(a.uid, PROTO_ID_UNSET);
	cr_assert_eq(a.gid, PROTO_ID_UNSET);
	cr_assert_eq(a.mode, S_IFREG | 0644 | PROTO_MODE_UNSET);
	/* an empty mask is the same as no attributes */
	cr_assert_eq(
	    store_put(s, "d", 1, "x", 1, &(struct proto_setattr){.mask = 0, .uid = 3}, NOW, NULL),
	    0);
	cr_assert_eq(store_stat(s, "d", 1, NOW, &a), 0);
	cr_assert_eq(a.uid, PROTO_ID_UNSET);
	/* setattr of the owner alone leaves the mode flagged */
	struct proto_setattr o = {.mask = PROTO_SET_UID, .uid = 1000};

	cr_assert_eq(store_setattr(s, "d", 1, &o, NOW, &a), 0);
	cr_assert_eq(a.uid, 1000);
	cr_assert_eq(a.gid, PROTO_ID_UNSET);
	cr_assert_eq(a.mode, S_IFREG | 0644 | PROTO_MODE_UNSET);
	/* setting the mode clears the flag, even to the same bits */
	struct proto_setattr m = {.mask = PROTO_SET_MODE, .mode = 0644};

	cr_assert_eq(store_setattr(s, "d", 1, &m, NOW, &a), 0);
	cr_assert_eq(a.mode, S_IFREG | 0644);
	/* a client cannot set the flag itself */
	m.mode = PROTO_MODE_UNSET | 0600;
	cr_assert_eq(store_setattr(s, "d", 1, &m, NOW, &a), 0);
	cr_assert_eq(a.mode, S_IFREG | 0600);
	cr_assert_eq(store_put(s, "p", 1, "x", 1, &m, NOW, NULL), 0);
	cr_assert_eq(store_stat(s, "p", 1, NOW, &a), 0);
	cr_assert_eq(a.mode, S_IFREG | 0600);
	m.mode = PROTO_MODE_UNSET | S_IFREG | 0640;
	cr_assert_eq(store_put(s, "p", 1, "x", 1, &m, NOW, NULL), 0);
	cr_assert_eq(store_stat(s, "p", 1, NOW, &a), 0);
	cr_assert_eq(a.mode, S_IFREG | 0640);
	/* rename keeps the attributes, flag and all */
	cr_assert_eq(store_put(s, "r", 1, "x", 1, NULL, NOW, NULL), 0);
	cr_assert_eq(store_rename(s, "r", 1, "r2", 2, 0), 0);
	cr_assert_eq(store_stat(s, "r2", 2, NOW, &a), 0);
	cr_assert_eq(a.mode, S_IFREG | 0644 | PROTO_MODE_UNSET);
	cr_assert_eq(a.uid, PROTO_ID_UNSET);
	/* commits set attributes afresh, as puts do (KEEP keeps bytes, not attributes) */
	cr_assert_eq(store_upload_open(s, "d", 1, 1, NOW, &up), 0);
	cr_assert_eq(store_upload_commit(s, up, NULL, NOW, &a), 0);
	cr_assert_eq(a.mode, S_IFREG | 0644 | PROTO_MODE_UNSET);
	cr_assert_eq(a.uid, PROTO_ID_UNSET);
	cr_assert_eq(a.gid, PROTO_ID_UNSET);
	struct proto_setattr all = {.mask = PROTO_SET_MODE | PROTO_SET_UID | PROTO_SET_GID,
				    .mode = 0755,
				    .uid = 0,
				    .gid = 0};

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
	struct proto_attr a, b;
	struct item *pinned;
	uint64_t v;

	cr_assert_eq(store_rename(s, "a", 1, "b", 1, 0), -ENOENT);
	cr_assert_eq(store_put(s, "a", 1, "AAA", 3,
			       &(struct proto_setattr){.mask = PROTO_SET_UID, .uid = 5}, NOW, &v),
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
	const size_t vl = 512 * 1024 - 56 - 100;

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
