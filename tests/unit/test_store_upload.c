/*
 * Unit tests of the server's item store: upload sessions (src/server/store_upload.c).
 */
#include "store_fixture.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

/*
 * Read [off, off+len) of the pending upload through iovs of at most max
 * entries into out; returns the bytes read. Checks that each call covers what
 * its iovs hold and that a read allocates nothing.
 */
static uint64_t up_read(struct store *s, struct upload *up, uint64_t off, uint64_t len,
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
static void up_check(struct store *s, struct upload *up, uint64_t off, uint64_t len,
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
	struct proto_attr a;

	cr_assert_eq(store_upload_commit(s, up, NULL, NOW, &a), 0);
	cr_assert_eq(a.size, size);
	cr_assert_eq(stats(s).uploads, 0);
	check_val(s, "up/one", ref, size);

	/* small commit path, with attributes */
	cr_assert_eq(store_upload_open(s, "up/small", 8, 0, NOW, &up), 0);
	cr_assert_eq(up_write(s, up, 10, src, 20, 1), 0);
	struct proto_setattr sa = {.mask = PROTO_SET_MODE, .mode = 0444};

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
	struct proto_attr a;

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
			       &(struct proto_setattr){.mask = PROTO_SET_TTL, .ttl = 1}, NOW, NULL),
		     0);
	cr_assert_eq(store_put(s, "t", 1, "b", 1, NULL, NOW + 5, NULL), 0);
	cr_assert_eq(stats(s).expirations, 1);
	cr_assert_eq(stats(s).keys, 2);
	free(src);
	/* u[3] still open: store_close frees it */
	store_close(s);
}

/*
 * The long work of an upload (zeroing a hole, copying a KEEP source) is owed
 * by the locked call and written by store_upload_fill outside the store lock;
 * a caller that skips the fill still never sees stale pool bytes.
 */
Test(store, upload_fill_outside_the_lock)
{
	struct store *s = open_store(64 * MiB, 32 * MiB, 0);
	uint8_t *ref = calloc(1, 8 * MiB), *b = malloc(8 * MiB);
	struct upload *up;
	struct iovec iov[4];
	uint64_t cov;

	/* Dirty the pool, free it: new pages then hold stale bytes. */
	fill(b, 8 * MiB, 9);
	cr_assert_eq(store_put(s, "dirt", 4, b, 8 * MiB, NULL, NOW, NULL), 0);
	cr_assert_eq(store_delete(s, "dirt", 4), 0);

	/* A write past the end: the hole is owed, the fill zeroes it. */
	cr_assert_eq(store_upload_open(s, "h", 1, 0, NOW, &up), 0);
	cr_assert_gt(store_upload_iov(s, up, 5 * MiB + 3, 1, iov, 4, &cov), 0);
	memcpy(iov[0].iov_base, "x", 1);
	cr_assert_null(store_upload_fill(s, up));
	ref[5 * MiB + 3] = 'x';
	up_check(s, up, 0, 5 * MiB + 4, ref, 5 * MiB + 4, 4);
	/* Growing by truncate, with the fill skipped: the next call writes the zeroes. */
	cr_assert_eq(store_upload_truncate(s, up, 7 * MiB), 0);
	up_check(s, up, 0, 7 * MiB, ref, 7 * MiB, 4);
	store_upload_abort(s, up);

	/* KEEP: the source stays pinned until the fill has copied it, and survives a delete. */
	fill(ref, 3 * MiB + 5, 21);
	cr_assert_eq(store_put(s, "k", 1, ref, 3 * MiB + 5, NULL, NOW, NULL), 0);
	cr_assert_eq(store_upload_open(s, "k", 1, 1, NOW, &up), 0);
	cr_assert_eq(store_delete(s, "k", 1), 0);
	fill(b, 4 * MiB, 33);
	cr_assert_eq(store_put(s, "other", 5, b, 4 * MiB, NULL, NOW, NULL), 0);
	struct item *src = store_upload_fill(s, up);
	cr_assert_not_null(src, "the KEEP source comes back for the caller to release");
	store_release(s, src);
	up_check(s, up, 0, 3 * MiB + 5, ref, 3 * MiB + 5, 4);
	store_upload_abort(s, up);
	/* KEEP with the fill skipped: reading it settles the copy first. */
	cr_assert_eq(store_put(s, "k", 1, ref, 3 * MiB + 5, NULL, NOW, NULL), 0);
	cr_assert_eq(store_upload_open(s, "k", 1, 1, NOW, &up), 0);
	up_check(s, up, 0, 3 * MiB + 5, ref, 3 * MiB + 5, 4);
	store_upload_abort(s, up);
	/* An abort before the fill releases the source's pin: the key can be freed. */
	cr_assert_eq(store_upload_open(s, "k", 1, 1, NOW, &up), 0);
	store_upload_abort(s, up);
	cr_assert_eq(store_delete(s, "k", 1), 0);
	cr_assert_eq(stats(s).keys, 1, "only \"other\" is left");

	free(ref);
	free(b);
	store_close(s);
}
