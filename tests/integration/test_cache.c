/*
 * Integration: libkvfs against one real kvfs-server, on the provider in
 * $KVFS_TEST_PROVIDER. Round trips of every size class up to 1 GiB, ranges,
 * zero-copy and leases, attributes, rename and delete, and uploads (read
 * back before commit, written from registered memory). Clusters and
 * concurrency are in test_cluster.c, pinned reads in test_pin.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache_fixture.h"

static void roundtrip(size_t size, uint64_t seed)
{
	char key[64];
	snprintf(key, sizeof(key), "rt/%zu", size);
	uint8_t *v = malloc(size + 1), *r = malloc(size + 16);
	cr_assert(v && r);
	h_fill(v, size, seed, 0);
	int ret = kvfs_put(kv, key, v, size, NULL);
	cr_assert_eq(ret, 0, "put %zu: %s", size, kvfs_strerror(ret));
	struct kvfs_attr a;
	memset(r, 0x5a, size + 16);
	ssize_t n = kvfs_get(kv, key, r, size + 16, 0, &a);
	cr_assert_eq(n, (ssize_t)size, "get %zu returned %zd (%s)", size, n,
		     n < 0 ? kvfs_strerror((int)n) : "");
	cr_assert_eq(a.size, size);
	cr_assert(h_check(r, size, seed, 0), "value of %zu bytes differs", size);
	cr_assert_eq(r[size], 0x5a, "get wrote past the value");
	free(v);
	free(r);
}

Test(cache, sizes, .init = setup1, .fini = teardown_all, .timeout = 240)
{
	size_t sizes[] = {0, 1, 4095, 4096, 4097, (1 << 20) + 3, 64u << 20};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		roundtrip(sizes[i], i + 1);
}

Test(cache, one_gib, .init = setup1, .fini = teardown_all, .timeout = 300)
{
	roundtrip(1u << 30, 77);
	struct kvfs_attr a;
	cr_assert_eq(kvfs_stat(kv, "rt/1073741824", &a), 0);
	cr_assert_eq(a.size, 1u << 30);
	/* Over max_value: refused, nothing stored. */
	size_t big = (1u << 30) + 1;
	uint8_t *v = calloc(1, big);
	cr_assert_eq(kvfs_put(kv, "too-big", v, big, NULL), -EFBIG);
	cr_assert_eq(kvfs_stat(kv, "too-big", &a), -ENOENT);
	free(v);
}

Test(cache, ranges_and_zero_copy, .init = setup1, .fini = teardown_all, .timeout = 120)
{
	size_t size = (3u << 20) + 11;
	uint8_t *v = malloc(size), *r = malloc(size);
	h_fill(v, size, 5, 0);
	cr_assert_eq(kvfs_put(kv, "range", v, size, NULL), 0);
	size_t offs[] = {0, 1, 4095, 4096, (1u << 20) - 1, (2u << 20) + 7, size - 1};
	size_t lens[] = {1, 100, 4096, 4097, (1u << 20) + 5};
	for (size_t i = 0; i < 7; i++)
		for (size_t j = 0; j < 5; j++) {
			size_t want = lens[j];
			size_t expect = offs[i] + want > size ? size - offs[i] : want;
			ssize_t n = kvfs_get(kv, "range", r, want, offs[i], NULL);
			cr_assert_eq(n, (ssize_t)expect, "off %zu len %zu: %zd", offs[i], want, n);
			cr_assert(h_check(r, (size_t)n, 5, offs[i]));
		}
	cr_assert_eq(kvfs_get(kv, "range", r, 10, size + 5, NULL), 0, "read past the end");

	/* Zero copy: caller-registered memory, both directions. */
	kvfs_mr_t *mr;
	uint8_t *z = malloc(size);
	cr_assert_eq(kvfs_mr_reg(kv, z, size, &mr), 0);
	memset(z, 0, size);
	cr_assert_eq(kvfs_get_mr(kv, "range", z, size, 0, mr, NULL), (ssize_t)size);
	cr_assert(h_check(z, size, 5, 0));
	h_fill(z, size, 6, 0);
	cr_assert_eq(kvfs_put_mr(kv, "range2", z, size, mr, NULL), 0);
	cr_assert_eq(kvfs_get(kv, "range2", r, size, 0, NULL), (ssize_t)size);
	cr_assert(h_check(r, size, 6, 0));
	/* A buffer outside the registered memory is refused locally. */
	cr_assert_eq(kvfs_get_mr(kv, "range", r, size, 0, mr, NULL), -EFAULT);
	kvfs_mr_close(mr);
	free(z);

	/* Lease: bytes lent from the receive buffer. */
	const void *data;
	kvfs_lease_t *l;
	ssize_t n = kvfs_get_lease(kv, "range", 65536, 4096, &data, &l, NULL);
	cr_assert_eq(n, 65536);
	cr_assert(h_check(data, 65536, 5, 4096));
	kvfs_lease_release(l);
	free(v);
	free(r);
}

Test(cache, attributes_rename_delete, .init = setup1, .fini = teardown_all)
{
	struct kvfs_attr a, b;
	ssize_t st0 = kvfs_stat(kv, "nope", &a);
	cr_assert_eq(st0, -ENOENT, "stat of a missing key: %zd", st0);
	cr_assert_eq(kvfs_get(kv, "nope", &a, 1, 0, NULL), -ENOENT);
	struct kvfs_setattr sa = {.mask =
				      KVFS_SET_MODE | KVFS_SET_UID | KVFS_SET_GID | KVFS_SET_MTIME,
				  .mode = S_IFREG | 0600,
				  .uid = 1000,
				  .gid = 100,
				  .mtime_ns = 1700000000123456789ll};
	cr_assert_eq(kvfs_put(kv, "f", "hello", 5, &sa), 0);
	cr_assert_eq(kvfs_stat(kv, "f", &a), 0);
	cr_assert_eq(a.mode, S_IFREG | 0600);
	cr_assert_eq(a.uid, 1000);
	cr_assert_eq(a.gid, 100);
	cr_assert_eq(a.mtime_ns, 1700000000123456789ll);
	cr_assert_eq(a.size, 5);
	struct kvfs_setattr ch = {.mask = KVFS_SET_MODE, .mode = S_IFREG | 0644};
	cr_assert_eq(kvfs_setattr(kv, "f", &ch, &b), 0);
	cr_assert_eq(b.mode, S_IFREG | 0644);
	cr_assert_eq(b.version, a.version, "setattr must not change the version");
	cr_assert_eq(kvfs_put(kv, "f", "world!", 6, NULL), 0);
	cr_assert_eq(kvfs_stat(kv, "f", &b), 0);
	cr_assert_gt(b.version, a.version);
	/* A put without attributes stores no owner and no mode. */
	cr_assert_eq(b.uid, KVFS_ID_UNSET);
	cr_assert_eq(b.gid, KVFS_ID_UNSET);
	cr_assert_eq(b.mode, S_IFREG | 0644 | KVFS_MODE_UNSET);
	struct kvfs_setattr own = {.mask = KVFS_SET_UID, .uid = 0};
	cr_assert_eq(kvfs_setattr(kv, "f", &own, &b), 0);
	cr_assert_eq(b.uid, 0);
	cr_assert_eq(b.gid, KVFS_ID_UNSET);
	cr_assert_eq(b.mode, S_IFREG | 0644 | KVFS_MODE_UNSET);
	/* Setting the mode clears the flag; a client cannot set it. */
	ch.mode = KVFS_MODE_UNSET | 0640;
	cr_assert_eq(kvfs_setattr(kv, "f", &ch, &b), 0);
	cr_assert_eq(b.mode, S_IFREG | 0640);
	cr_assert_eq(kvfs_put(kv, "f2", "x", 1, &ch), 0);
	cr_assert_eq(kvfs_stat(kv, "f2", &b), 0);
	cr_assert_eq(b.mode, S_IFREG | 0640);
	cr_assert_eq(kvfs_delete(kv, "f2"), 0);
	kvfs_upload_t *up;
	cr_assert_eq(kvfs_upload_open(kv, "f3", 0, &up), 0);
	cr_assert_eq(kvfs_upload_commit(up, NULL, &b), 0);
	cr_assert_eq(b.uid, KVFS_ID_UNSET);
	cr_assert_eq(b.mode, S_IFREG | 0644 | KVFS_MODE_UNSET);
	cr_assert_eq(kvfs_delete(kv, "f3"), 0);
	cr_assert_eq(kvfs_put(kv, "f", "world!", 6, NULL), 0);

	/* rename within one server (single-server cluster) */
	cr_assert_eq(kvfs_rename(kv, "f", "g", 0), 0);
	cr_assert_eq(kvfs_stat(kv, "f", &a), -ENOENT);
	char buf[16];
	cr_assert_eq(kvfs_get(kv, "g", buf, sizeof(buf), 0, NULL), 6);
	cr_assert_eq(memcmp(buf, "world!", 6), 0);
	cr_assert_eq(kvfs_put(kv, "h", "x", 1, NULL), 0);
	cr_assert_eq(kvfs_rename(kv, "g", "h", KVFS_RENAME_NOREPLACE), -EEXIST);
	cr_assert_eq(kvfs_rename(kv, "g", "h", 0), 0);
	cr_assert_eq(kvfs_get(kv, "h", buf, sizeof(buf), 0, NULL), 6);
	cr_assert_eq(kvfs_rename(kv, "missing", "x", 0), -ENOENT);

	cr_assert_eq(kvfs_delete(kv, "h"), 0);
	cr_assert_eq(kvfs_delete(kv, "h"), -ENOENT);

	/* Invalid keys are refused before anything is sent. */
	cr_assert_eq(kvfs_put(kv, "", "x", 1, NULL), -EINVAL);
	char *longkey = malloc(KVFS_MAX_KEY + 2);
	memset(longkey, 'k', KVFS_MAX_KEY + 1);
	longkey[KVFS_MAX_KEY + 1] = 0;
	cr_assert_eq(kvfs_put(kv, longkey, "x", 1, NULL), -ENAMETOOLONG);
	longkey[KVFS_MAX_KEY] = 0;
	cr_assert_eq(kvfs_put(kv, longkey, "x", 1, NULL), 0, "a key of exactly the limit");
	cr_assert_eq(kvfs_get(kv, longkey, buf, 1, 0, NULL), 1);
	free(longkey);
}

Test(cache, uploads, .init = setup1, .fini = teardown_all, .timeout = 120)
{
	kvfs_upload_t *up;
	size_t size = (5u << 20) + 17;
	uint8_t *v = malloc(size), *r = malloc(size);
	h_fill(v, size, 9, 0);
	cr_assert_eq(kvfs_put(kv, "u", "old", 3, NULL), 0);
	cr_assert_eq(kvfs_upload_open(kv, "u", 0, &up), 0);
	/* Written back to front in uneven pieces. */
	size_t piece = 700001;
	for (size_t off = size - size % piece;; off -= piece) {
		size_t n = off + piece > size ? size - off : piece;
		cr_assert_eq(kvfs_upload_write(up, v + off, n, off), 0);
		if (off == 0)
			break;
	}
	cr_assert_eq(kvfs_upload_size(up), size);
	/* Readers see the old value until commit. */
	char old[8];
	cr_assert_eq(kvfs_get(kv, "u", old, sizeof(old), 0, NULL), 3);
	struct kvfs_attr a;
	cr_assert_eq(kvfs_upload_commit(up, NULL, &a), 0);
	cr_assert_eq(a.size, size);
	cr_assert_eq(kvfs_get(kv, "u", r, size, 0, NULL), (ssize_t)size);
	cr_assert(h_check(r, size, 9, 0));

	/* KEEP + truncate + append + hole. */
	cr_assert_eq(kvfs_upload_open(kv, "u", KVFS_UPLOAD_KEEP, &up), 0);
	cr_assert_eq(kvfs_upload_size(up), size);
	cr_assert_eq(kvfs_upload_truncate(up, 1000), 0);
	cr_assert_eq(kvfs_upload_write(up, "tail", 4, 2000), 0);
	cr_assert_eq(kvfs_upload_commit(up, NULL, &a), 0);
	cr_assert_eq(a.size, 2004);
	cr_assert_eq(kvfs_get(kv, "u", r, size, 0, NULL), 2004);
	cr_assert(h_check(r, 1000, 9, 0));
	for (int i = 1000; i < 2000; i++)
		cr_assert_eq(r[i], 0, "hole byte %d not zero", i);
	cr_assert_eq(memcmp(r + 2000, "tail", 4), 0);

	/* Abort leaves the value alone. */
	cr_assert_eq(kvfs_upload_open(kv, "u", 0, &up), 0);
	cr_assert_eq(kvfs_upload_write(up, "zzz", 3, 0), 0);
	kvfs_upload_abort(up);
	cr_assert_eq(kvfs_stat(kv, "u", &a), 0);
	cr_assert_eq(a.size, 2004);
	free(v);
	free(r);
}

/* Read back [off, off+len) of a pending upload and compare with the model ref of size bytes. */
static void up_check(kvfs_upload_t *up, uint64_t off, size_t len, const uint8_t *ref, uint64_t size)
{
	size_t want = off >= size ? 0 : (len < size - off ? len : (size_t)(size - off));
	uint8_t *b = malloc(len + 16);
	memset(b, 0x5a, len + 16);
	ssize_t n = kvfs_upload_read(up, b, len, off);
	cr_assert_eq(n, (ssize_t)want, "read-back off %llu len %zu: %zd (%s)",
		     (unsigned long long)off, len, n, n < 0 ? kvfs_strerror((int)n) : "");
	cr_assert(want == 0 || memcmp(b, ref + off, want) == 0,
		  "read-back off %llu len %zu differs", (unsigned long long)off, len);
	cr_assert_eq(b[want], 0x5a, "read-back wrote past what it returned");
	free(b);
}

/* Write v[off, off+n) at off and mirror it into the model. */
static void up_put(kvfs_upload_t *up, const uint8_t *v, uint8_t *ref, uint64_t *size, uint64_t off,
		   size_t n)
{
	int ret = kvfs_upload_write(up, v + off, n, off);
	cr_assert_eq(ret, 0, "write off %llu len %zu: %s", (unsigned long long)off, n,
		     kvfs_strerror(ret));
	memcpy(ref + off, v + off, n);
	if (off + n > *size)
		*size = off + n;
}

Test(cache, upload_read_your_writes, .init = setup1, .fini = teardown_all, .timeout = 240)
{
	const uint64_t cap = 30u << 20, M = 1u << 20;
	uint8_t *v = malloc(cap), *ref = calloc(1, cap), *r = malloc(cap);
	uint64_t size = 0;
	struct kvfs_limits lim;
	kvfs_upload_t *up;
	cr_assert(v && ref && r);
	h_fill(v, cap, 31, 0);
	cr_assert_eq(kvfs_put(kv, "ryw", "old", 3, NULL), 0);
	cr_assert_eq(kvfs_limits(kv, kvfs_server_of(kv, "ryw"), &lim), 0);
	uint64_t slot = lim.slot_size;
	cr_assert_geq(slot, M);

	cr_assert_eq(kvfs_upload_open(kv, "ryw", 0, &up), 0);
	cr_assert_eq(kvfs_upload_read(up, r, 100, 0), 0, "an empty upload reads nothing");
	/* Small (inline), across the inline threshold, across slot-sized pieces, > 8 MiB. */
	up_put(up, v, ref, &size, 10, 100);
	up_put(up, v, ref, &size, 4000, 4097);
	up_put(up, v, ref, &size, slot - 7, 2 * slot + 15);
	up_put(up, v, ref, &size, 9 * M + 3, 5 * M);
	up_put(up, v, ref, &size, 27 * M + 1, 1);
	cr_assert_eq(kvfs_upload_size(up), size);
	/* Whole value (several slot pieces, holes zero), then ranges around every edge. */
	up_check(up, 0, (size_t)size, ref, size);
	up_check(up, 0, (size_t)size + 4096, ref, size);
	uint64_t offs[] = {0,	     9,	   109,		 3999,	    4096,	8097,
			   slot - 8, slot, 2 * slot - 1, 9 * M + 3, 14 * M + 2, 3 * slot + 7,
			   size - 1};
	size_t lens[] = {1, 100, 4096, 4097, M + 5, slot + 3};
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++)
		for (size_t j = 0; j < sizeof(lens) / sizeof(lens[0]); j++)
			up_check(up, offs[i], lens[j], ref, size);
	/* At and past the end: 0. */
	cr_assert_eq(kvfs_upload_read(up, r, 10, size), 0);
	cr_assert_eq(kvfs_upload_read(up, r, 10 * M, size + 5), 0);
	cr_assert_eq(kvfs_upload_read(up, r, 0, 5), 0);
	/* Readers of the key still see the committed value. */
	char old[8];
	struct kvfs_attr a;
	cr_assert_eq(kvfs_get(kv, "ryw", old, sizeof(old), 0, &a), 3);
	cr_assert_eq(memcmp(old, "old", 3), 0);
	/* Overwrite in the middle and truncate: the read-back follows. */
	h_fill(r, 3 * M, 32, 0);
	cr_assert_eq(kvfs_upload_write(up, r, 3 * M, 8 * M - 1), 0);
	memcpy(ref + 8 * M - 1, r, 3 * M);
	up_check(up, 7 * M, 5 * M, ref, size);
	cr_assert_eq(kvfs_upload_truncate(up, 12 * M + 5), 0);
	size = 12 * M + 5;
	up_check(up, 0, (size_t)cap, ref, size);
	cr_assert_eq(kvfs_upload_read(up, r, 1, size), 0);
	cr_assert_eq(kvfs_stat(kv, "ryw", &a), 0);
	cr_assert_eq(a.size, 3, "the committed value changed before commit");
	cr_assert_eq(kvfs_upload_commit(up, NULL, &a), 0);
	cr_assert_eq(a.size, size);
	cr_assert_eq(kvfs_get(kv, "ryw", r, (size_t)cap, 0, NULL), (ssize_t)size);
	cr_assert_eq(memcmp(r, ref, (size_t)size), 0);

	/* KEEP: the old value reads back before any write. */
	cr_assert_eq(kvfs_upload_open(kv, "ryw", KVFS_UPLOAD_KEEP, &up), 0);
	up_check(up, 0, (size_t)size, ref, size);
	up_check(up, slot - 3, 6, ref, size);
	kvfs_upload_abort(up);
	free(v);
	free(ref);
	free(r);
}

Test(cache, upload_write_zero_copy, .init = setup1, .fini = teardown_all, .timeout = 240)
{
	const size_t len = 24u << 20, M = 1u << 20;
	uint8_t *z = malloc(len + 8192), *r = malloc(len);
	kvfs_mr_t *mr;
	kvfs_upload_t *up;
	struct kvfs_attr a;
	cr_assert(z && r);
	/* The value's byte j sits at z + 4097 + j: unaligned within the region. */
	uint8_t *src = z + 4097;
	h_fill(src, len, 41, 0);
	cr_assert_eq(kvfs_mr_reg(kv, z, len + 8192, &mr), 0);
	cr_assert_eq(kvfs_put(kv, "zc", "old", 3, NULL), 0);
	cr_assert_eq(kvfs_upload_open(kv, "zc", 0, &up), 0);
	/* Out of order: 8 MiB+ across slot pieces, 1 MiB pieces, a small inline one. */
	struct {
		size_t off, n;
	} w[] = {
	    {9 * M + 5, 8 * M + 3}, {0, M},	{M, M},
	    {2 * M, 7 * M},	    {9 * M, 5}, {17 * M + 8, len - 17 * M - 8 - 100},
	    {len - 100, 100},
	};
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
		int ret = kvfs_upload_write_mr(up, src + w[i].off, w[i].n, w[i].off, mr);
		cr_assert_eq(ret, 0, "write %zu: %s", i, kvfs_strerror(ret));
	}
	cr_assert_eq(kvfs_upload_size(up), len);
	/* Not inside mr: refused locally (-EFAULT, as kvfs_get_mr does); no mr: -EINVAL. */
	cr_assert_eq(kvfs_upload_write_mr(up, r, M, 0, mr), -EFAULT);
	cr_assert_eq(kvfs_upload_write_mr(up, z + 8192, len + 1, 0, mr), -EFAULT);
	cr_assert_eq(kvfs_upload_write_mr(up, z - 1, 2, 0, mr), -EFAULT);
	cr_assert_eq(kvfs_upload_write_mr(up, z, M, 0, NULL), -EINVAL);
	cr_assert_eq(kvfs_upload_size(up), len);
	/* Readers see the old value until commit; then every byte. */
	cr_assert_eq(kvfs_get(kv, "zc", r, 8, 0, NULL), 3);
	cr_assert_eq(kvfs_upload_read(up, r, len, 0), (ssize_t)len);
	cr_assert(h_check(r, len, 41, 0), "read-back before commit differs");
	cr_assert_eq(kvfs_upload_commit(up, NULL, &a), 0);
	cr_assert_eq(a.size, len);
	memset(r, 0, len);
	cr_assert_eq(kvfs_get(kv, "zc", r, len, 0, NULL), (ssize_t)len);
	cr_assert(h_check(r, len, 41, 0), "committed value differs");

	/* KEEP and patch from the region at offsets past 8 MiB; mixed with copying writes. */
	cr_assert_eq(kvfs_upload_open(kv, "zc", KVFS_UPLOAD_KEEP, &up), 0);
	h_fill(z, M, 42, 0);
	cr_assert_eq(kvfs_upload_write_mr(up, z, M, 11 * M + 1, mr), 0);
	cr_assert_eq(kvfs_upload_write(up, z, 10, len), 0);
	cr_assert_eq(kvfs_upload_commit(up, NULL, &a), 0);
	cr_assert_eq(a.size, len + 10);
	cr_assert_eq(kvfs_get(kv, "zc", r, len, 0, NULL), (ssize_t)len);
	cr_assert(h_check(r, 11 * M + 1, 41, 0));
	cr_assert(h_check(r + 11 * M + 1, M, 42, 0));
	cr_assert(h_check(r + 12 * M + 1, len - 12 * M - 1, 41, 12 * M + 1));
	kvfs_mr_close(mr);
	free(z);
	free(r);
}
