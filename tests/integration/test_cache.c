/*
 * Integration: libkvfs against real kvfs-server processes, on the provider in
 * $KVFS_TEST_PROVIDER. Round trips of every size class, ranges, zero-copy,
 * attributes, rename, listing, uploads, clusters, concurrency and pinned
 * reads.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct h_cluster cl;
static kvfs_t *kv;

static void setup1(void)
{
	struct h_opts o = {.memory = "1536M", .max_value = "1G"};
	h_start(&cl, &o);
	kv = h_client(&cl);
}

static void setup3(void)
{
	struct h_opts o = {.servers = 3, .memory = "128M"};
	h_start(&cl, &o);
	kv = h_client(&cl);
}

static void teardown_all(void)
{
	kvfs_close(kv);
	h_stop(&cl);
}

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

struct lst {
	char names[64][32];
	int pfx[64];
	int n;
};

static int collect(void *arg, const struct kvfs_entry *e)
{
	struct lst *l = arg;
	if (l->n < 64) {
		snprintf(l->names[l->n], 32, "%s", e->name);
		l->pfx[l->n] = e->is_prefix;
	}
	l->n++;
	return 0;
}

static int count_cb(void *arg, const struct kvfs_entry *e)
{
	(void)e;
	(*(long *)arg)++;
	return 0;
}

Test(cache, cluster_routing_and_listing, .init = setup3, .fini = teardown_all, .timeout = 120)
{
	int per[3] = {0};
	char key[64];
	for (int i = 0; i < 3000; i++) {
		snprintf(key, sizeof(key), "d/k%05d", i);
		per[kvfs_server_of(kv, key)]++;
		cr_assert_eq(kvfs_put(kv, key, key, strlen(key), NULL), 0);
	}
	for (int s = 0; s < 3; s++)
		cr_assert(per[s] > 800 && per[s] < 1200, "server %d got %d of 3000 keys", s,
			  per[s]);
	/* Listing: one merged pass over all servers, in byte order, no duplicates. */
	long n = 0;
	cr_assert_eq(kvfs_list(kv, "d/", '/', count_cb, &n), 3000);
	cr_assert_eq(n, 3000);
	for (int i = 0; i < 3000; i += 7) {
		snprintf(key, sizeof(key), "d/k%05d", i);
		char buf[64];
		cr_assert_eq(kvfs_get(kv, key, buf, sizeof(buf), 0, NULL), (ssize_t)strlen(key));
		cr_assert_eq(memcmp(buf, key, strlen(key)), 0);
	}
	const char *tree[] = {"t/a", "t/b/1", "t/b/2", "t/c/", "t/d/e/f", "t/e"};
	for (int i = 0; i < 6; i++)
		cr_assert_eq(kvfs_put(kv, tree[i], "", 0, NULL), 0);
	struct lst l = {0};
	cr_assert_eq(kvfs_list(kv, "t/", '/', collect, &l), 5);
	const char *want[] = {"t/a", "t/b/", "t/c/", "t/d/", "t/e"};
	int wpfx[] = {0, 1, 1, 1, 0};
	for (int i = 0; i < 5; i++) {
		cr_assert_str_eq(l.names[i], want[i]);
		cr_assert_eq(l.pfx[i], wpfx[i], "%s", want[i]);
	}
	memset(&l, 0, sizeof(l));
	cr_assert_eq(kvfs_list(kv, "t/", 0, collect, &l), 6);
	for (int i = 0; i < 6; i++)
		cr_assert_str_eq(l.names[i], tree[i]);
	/* rename across servers is refused; within one it works */
	int moved = 0;
	for (int i = 0; i < 100 && !moved; i++) {
		snprintf(key, sizeof(key), "m/%d", i);
		int ret = kvfs_rename(kv, "d/k00000", key, 0);
		if (kvfs_server_of(kv, key) == kvfs_server_of(kv, "d/k00000")) {
			cr_assert_eq(ret, 0);
			moved = 1;
		} else {
			cr_assert_eq(ret, -EXDEV);
		}
	}
	cr_assert(moved);
	for (int s = 0; s < 3; s++) {
		struct kvfs_stats st;
		cr_assert_eq(kvfs_server_stats(kv, s, &st), 0);
		cr_assert_gt(st.keys, 800);
		cr_assert_str_eq(st.provider, h_provider());
		uint64_t rtt;
		cr_assert_eq(kvfs_ping(kv, s, &rtt), 0);
	}
}

/* 8 threads x mixed ops; every acknowledged write must read back whole. */
struct worker {
	int id;
	int errors;
	int ops;
};

#define NKEYS 64

static void *mixed(void *arg)
{
	struct worker *w = arg;
	uint8_t *buf = malloc(300000), *rd = malloc(300000);
	unsigned seed = (unsigned)w->id * 7919u + 1;
	/* Each thread owns its keys, so it knows what must be there. */
	uint64_t last_seed[NKEYS] = {0};
	size_t last_len[NKEYS] = {0};
	for (int i = 0; i < 3000; i++) {
		int k = rand_r(&seed) % NKEYS;
		char key[64];
		snprintf(key, sizeof(key), "mt/%d/%d", w->id, k);
		int op = rand_r(&seed) % 10;
		if (op < 4) {
			size_t len = (size_t)(rand_r(&seed) % 4) == 0
					 ? (size_t)(rand_r(&seed) % 300000)
					 : (size_t)(rand_r(&seed) % 5000);
			uint64_t s = ((uint64_t)w->id << 32) | (uint64_t)i;
			h_fill(buf, len, s, 0);
			if (kvfs_put(kv, key, buf, len, NULL) == 0) {
				last_seed[k] = s;
				last_len[k] = len;
			} else {
				w->errors++;
			}
		} else if (op < 9) {
			ssize_t n = kvfs_get(kv, key, rd, 300000, 0, NULL);
			if (last_seed[k] == 0) {
				if (n != -ENOENT)
					w->errors++;
			} else if (n != (ssize_t)last_len[k] ||
				   !h_check(rd, (size_t)n, last_seed[k], 0)) {
				w->errors++;
			}
		} else {
			int ret = kvfs_delete(kv, key);
			if (ret != (last_seed[k] ? 0 : -ENOENT))
				w->errors++;
			last_seed[k] = 0;
		}
		w->ops++;
	}
	free(buf);
	free(rd);
	return NULL;
}

Test(cache, threads_mixed_checksummed, .init = setup3, .fini = teardown_all, .timeout = 300)
{
	pthread_t t[8];
	struct worker w[8];
	for (int i = 0; i < 8; i++) {
		w[i] = (struct worker){.id = i + 1};
		pthread_create(&t[i], NULL, mixed, &w[i]);
	}
	int errors = 0, ops = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		errors += w[i].errors;
		ops += w[i].ops;
	}
	cr_assert_eq(ops, 8 * 3000);
	cr_assert_eq(errors, 0, "%d of %d operations lost or tore a value", errors, ops);
}

/* Readers of one key while a writer replaces it: every read is one whole version. */
static volatile int stop_readers;
static void *reader(void *arg)
{
	int *bad = arg;
	uint8_t *rd = malloc(200000);
	while (!stop_readers) {
		struct kvfs_attr a;
		ssize_t n = kvfs_get(kv, "hot", rd, 200000, 0, &a);
		if (n < 0 && n != -EAGAIN) {
			(*bad)++;
			continue;
		}
		if (n < 8)
			continue;
		uint64_t s;
		memcpy(&s, rd, 8);
		if (!h_check(rd + 8, (size_t)n - 8, s, 0))
			(*bad)++;
	}
	free(rd);
	return NULL;
}

Test(cache, no_torn_values, .init = setup1, .fini = teardown_all, .timeout = 120)
{
	uint8_t *v = malloc(200000);
	pthread_t t[3];
	int bad[3] = {0};
	stop_readers = 0;
	memset(v, 0, 8);
	cr_assert_eq(kvfs_put(kv, "hot", v, 8, NULL), 0);
	for (int i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, reader, &bad[i]);
	for (uint64_t s = 1; s <= 300; s++) {
		size_t len = 8 + (size_t)(s * 997 % 190000);
		memcpy(v, &s, 8);
		h_fill(v + 8, len - 8, s, 0);
		cr_assert_eq(kvfs_put(kv, "hot", v, len, NULL), 0);
	}
	stop_readers = 1;
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(bad[i], 0, "reader %d saw %d torn or failed reads", i, bad[i]);
	}
	free(v);
}

/* ---- pinned reads ---------------------------------------------------------- */

static uint64_t pool_used(void)
{
	struct kvfs_stats st;
	cr_assert_eq(kvfs_server_stats(kv, 0, &st), 0);
	return st.pool_used;
}

/* Read all of p by leases of at most slot_size and check it is value seed of size bytes. */
static void pin_check_leases(kvfs_pin_t *p, size_t size, uint64_t seed, size_t piece)
{
	uint64_t off = 0;
	for (;;) {
		const void *data;
		kvfs_lease_t *l;
		ssize_t n = kvfs_pin_get_lease(p, piece, off, &data, &l);
		cr_assert_geq(n, 0, "lease at %llu: %s", (unsigned long long)off,
			      kvfs_strerror((int)n));
		size_t want = off >= size ? 0 : (size - off < piece ? size - off : piece);
		cr_assert_eq((size_t)n, want, "lease at %llu: %zd bytes", (unsigned long long)off,
			     n);
		cr_assert(h_check(data, (size_t)n, seed, off), "pinned bytes at %llu differ",
			  (unsigned long long)off);
		kvfs_lease_release(l);
		if (n == 0)
			break;
		off += (uint64_t)n;
	}
	cr_assert_eq(off, size);
}

/* Copy all of p (kvfs_pin_get, which goes in slot-size pieces) and check it. */
static void pin_check_copy(kvfs_pin_t *p, size_t size, uint64_t seed)
{
	uint8_t *r = malloc(size + 16);
	memset(r, 0x5a, size + 16);
	ssize_t n = kvfs_pin_get(p, r, size + 16, 0);
	cr_assert_eq(n, (ssize_t)size, "pin_get: %zd (%s)", n, n < 0 ? kvfs_strerror((int)n) : "");
	cr_assert(h_check(r, size, seed, 0), "pinned copy differs");
	cr_assert_eq(r[size], 0x5a, "pin_get wrote past the value");
	free(r);
}

Test(cache, pin_keeps_its_version, .init = setup1, .fini = teardown_all, .timeout = 240)
{
	struct kvfs_limits lim;
	struct kvfs_attr a, b;
	kvfs_pin_t *p, *small;
	uint64_t base = pool_used();
	size_t size = (20u << 20) + 5, size2 = (3u << 20) + 1; /* > 2 slots of 8 MiB */
	uint8_t *v = malloc(size);
	char buf[64];

	cr_assert_eq(kvfs_pin_open(kv, "pin/none", &p, &a), -ENOENT);
	h_fill(v, size, 31, 0);
	cr_assert_eq(kvfs_put(kv, "pin/big", v, size, NULL), 0);
	cr_assert_eq(kvfs_put(kv, "pin/small", "0123456789", 10, NULL), 0);
	cr_assert_eq(kvfs_pin_open(kv, "pin/big", &p, &a), 0);
	cr_assert_eq(kvfs_pin_open(kv, "pin/small", &small, NULL), 0);
	cr_assert_eq(a.size, size);
	cr_assert_eq(kvfs_limits(kv, kvfs_server_of(kv, "pin/big"), &lim), 0);
	cr_assert_geq(lim.slot_size, 4096);
	cr_assert_lt(lim.slot_size, size / 2, "the value must take several slot-size pieces");

	/* Replaced: readers of the pin still see the old version, whole. */
	h_fill(v, size2, 32, 0);
	cr_assert_eq(kvfs_put(kv, "pin/big", v, size2, NULL), 0);
	cr_assert_eq(kvfs_put(kv, "pin/small", "abc", 3, NULL), 0);
	cr_assert_eq(kvfs_stat(kv, "pin/big", &b), 0);
	cr_assert_eq(b.size, size2);
	cr_assert_neq(b.version, a.version);
	pin_check_leases(p, size, 31, (size_t)lim.slot_size);
	pin_check_leases(p, size, 31, 1000003);
	pin_check_copy(p, size, 31);
	cr_assert_eq(kvfs_pin_get(small, buf, sizeof(buf), 0), 10);
	cr_assert_eq(memcmp(buf, "0123456789", 10), 0);
	cr_assert_eq(kvfs_pin_get(small, buf, 4, 6), 4);
	cr_assert_eq(memcmp(buf, "6789", 4), 0);
	/* New readers see the new version. */
	cr_assert_eq(kvfs_get(kv, "pin/big", v, size, 0, NULL), (ssize_t)size2);
	cr_assert(h_check(v, size2, 32, 0));

	/* Ranges, the end and past it. */
	ssize_t n = kvfs_pin_get(p, v, 4097, size - 100);
	cr_assert_eq(n, 100);
	cr_assert(h_check(v, 100, 31, size - 100));
	cr_assert_eq(kvfs_pin_get(p, v, 10, size), 0, "pin_get at the end");
	cr_assert_eq(kvfs_pin_get(p, v, 10, size + 12345), 0, "pin_get past the end");
	cr_assert_eq(kvfs_pin_get(small, buf, 10, 10), 0);
	const void *data;
	kvfs_lease_t *l;
	cr_assert_eq(kvfs_pin_get_lease(p, 4096, size + 1, &data, &l), 0);
	kvfs_lease_release(l);
	cr_assert_eq(kvfs_pin_get_lease(p, (size_t)lim.slot_size + 1, 0, &data, &l), -EINVAL);

	/* Deleted: still readable through the pin, like an unlinked open file. */
	cr_assert_eq(kvfs_delete(kv, "pin/big"), 0);
	cr_assert_eq(kvfs_delete(kv, "pin/small"), 0);
	cr_assert_eq(kvfs_stat(kv, "pin/big", NULL), -ENOENT);
	pin_check_copy(p, size, 31);
	cr_assert_eq(kvfs_pin_get(small, buf, sizeof(buf), 0), 10);
	uint64_t pinned = pool_used();
	cr_assert_geq(pinned, base + size, "the pinned value's memory is in use");

	/* Unpinning frees it. */
	kvfs_pin_close(p);
	kvfs_pin_close(small);
	kvfs_pin_close(NULL);
	uint64_t after = pool_used();
	cr_assert_leq(after, base + (1u << 20), "pool used %llu after unpin, %llu before",
		      (unsigned long long)after, (unsigned long long)base);
	free(v);
}

/* Map all of p in pieces (kvfs_pin_map) and check the views. */
static void pin_check_map(kvfs_pin_t *p, size_t size, uint64_t seed, size_t piece)
{
	for (uint64_t off = 0;; off += piece) {
		struct iovec iov[16];
		kvfs_lease_t *l;
		int n = -1;
		ssize_t got = kvfs_pin_map(p, piece, off, iov, 16, &n, &l);
		size_t want = off >= size ? 0 : (size - off < piece ? size - off : piece);
		cr_assert_eq(got, (ssize_t)want, "map at %llu: %zd (%s)", (unsigned long long)off,
			     got, got < 0 ? kvfs_strerror((int)got) : "");
		size_t at = 0;
		for (int i = 0; i < n; i++) {
			cr_assert(h_check(iov[i].iov_base, iov[i].iov_len, seed, off + at),
				  "mapped bytes at %llu differ", (unsigned long long)(off + at));
			at += iov[i].iov_len;
		}
		cr_assert_eq(at, want);
		kvfs_lease_release(l);
		if (!want)
			break;
	}
}

/*
 * Same-host reads: a value in more pieces of the pool than one reply can
 * describe, mapped at odd offsets, then held by a lease past its pin's close,
 * its replacement and its deletion.
 */
Test(cache, pin_map_views_the_pool, .init = setup1, .fini = teardown_all, .timeout = 240)
{
	size_t one = 1u << 20, size = (140u << 20) + 12345;
	uint8_t *v = malloc(size);
	char key[32];
	/* 130 free single pages between used ones: the big value is in >= 131 extents */
	h_fill(v, size, 71, 0);
	for (int i = 0; i < 260; i++) {
		snprintf(key, sizeof(key), "frag/%03d", i);
		cr_assert_eq(kvfs_put(kv, key, v, one, NULL), 0);
	}
	for (int i = 0; i < 260; i += 2) {
		snprintf(key, sizeof(key), "frag/%03d", i);
		cr_assert_eq(kvfs_delete(kv, key), 0);
	}
	uint64_t base = pool_used();
	cr_assert_eq(kvfs_put(kv, "map/big", v, size, NULL), 0);
	cr_assert_eq(kvfs_put(kv, "map/small", "0123456789", 10, NULL), 0);
	kvfs_pin_t *p, *small;
	cr_assert_eq(kvfs_pin_open(kv, "map/big", &p, NULL), 0);
	cr_assert_eq(kvfs_pin_open(kv, "map/small", &small, NULL), 0);
	h_fill(v, 5000, 72, 0);
	cr_assert_eq(kvfs_put(kv, "map/big", v, 5000, NULL), 0);

	pin_check_map(p, size, 71, one);
	pin_check_map(p, size, 71, 777777);
	pin_check_map(p, size, 71, 4096 * 3 + 1);
	/* a view per extent crossed: one entry is too few for two pages */
	struct iovec iov[4];
	kvfs_lease_t *l;
	int n;
	cr_assert_eq(kvfs_pin_map(p, 20, one - 10, iov, 1, &n, &l), 10);
	cr_assert_eq(n, 1);
	kvfs_lease_release(l);
	cr_assert_eq(kvfs_pin_map(p, 20, size + 5, iov, 4, &n, &l), 0);
	cr_assert_eq(n, 0);
	kvfs_lease_release(l);
	cr_assert_eq(kvfs_pin_map(small, 100, 3, iov, 4, &n, &l), 7);
	cr_assert(n == 1 && memcmp(iov[0].iov_base, "3456789", 7) == 0);
	kvfs_lease_release(l);
	kvfs_pin_close(small);

	/* The lease holds the pin: its bytes stay while the key is deleted and the pin closed. */
	cr_assert_eq(kvfs_pin_map(p, 4096, size - 100, iov, 4, &n, &l), 100);
	kvfs_pin_close(p);
	cr_assert_eq(kvfs_delete(kv, "map/big"), 0);
	cr_assert_geq(pool_used(), base + size - one, "a leased value's memory is in use");
	cr_assert(h_check(iov[0].iov_base, iov[0].iov_len, 71, size - 100));
	kvfs_lease_release(l);
	cr_assert_leq(pool_used(), base + one, "the last lease released the value");
	free(v);
}

static void setup_nomap(void)
{
	struct h_opts o = {.memory = "64M", .local_map = "false"};
	h_start(&cl, &o);
	kv = h_client(&cl);
}

Test(cache, pin_map_needs_local_map, .init = setup_nomap, .fini = teardown_all)
{
	kvfs_pin_t *p;
	struct iovec iov[4];
	kvfs_lease_t *l;
	int n;
	char b[8];
	cr_assert_eq(kvfs_put(kv, "k", "value", 5, NULL), 0);
	cr_assert_eq(kvfs_pin_open(kv, "k", &p, NULL), 0);
	cr_assert_eq(kvfs_pin_map(p, 5, 0, iov, 4, &n, &l), -EOPNOTSUPP);
	cr_assert_eq(kvfs_pin_get(p, b, sizeof(b), 0), 5, "reads by RMA instead");
	cr_assert_eq(memcmp(b, "value", 5), 0);
	kvfs_pin_close(p);
}

/* Many readers share one pin while a writer replaces the key over and over. */
struct pin_reader {
	kvfs_pin_t *p;
	size_t size;
	uint64_t seed;
	int bad, reads;
};

static void *pin_reader(void *arg)
{
	struct pin_reader *r = arg;
	size_t piece = 777777;
	uint8_t *b = malloc(piece);
	for (int round = 0; round < 3; round++) {
		for (uint64_t off = (uint64_t)round * 4099; off < r->size; off += piece) {
			ssize_t n = kvfs_pin_get(r->p, b, piece, off);
			size_t want = r->size - off < piece ? r->size - off : piece;
			if (n != (ssize_t)want || !h_check(b, want, r->seed, off))
				r->bad++;
			r->reads++;
		}
	}
	free(b);
	return NULL;
}

static volatile int stop_writer;
static void *replacer(void *arg)
{
	size_t size = 12u << 20;
	uint8_t *v = malloc(size);
	int *bad = arg;
	for (uint64_t s = 500; !stop_writer; s++) {
		size_t len = (size_t)(s * 7919 % size) + 1;
		h_fill(v, len, s, 0);
		if (kvfs_put(kv, "pin/hot", v, len, NULL))
			++*bad;
	}
	free(v);
	return NULL;
}

Test(cache, pin_concurrent_reads_while_replaced, .init = setup1, .fini = teardown_all,
     .timeout = 240)
{
	size_t size = (10u << 20) + 333;
	uint8_t *v = malloc(size);
	h_fill(v, size, 41, 0);
	cr_assert_eq(kvfs_put(kv, "pin/hot", v, size, NULL), 0);
	free(v);
	struct pin_reader rd[4];
	pthread_t t[4], w;
	int wbad = 0;
	kvfs_pin_t *p;
	cr_assert_eq(kvfs_pin_open(kv, "pin/hot", &p, NULL), 0);
	stop_writer = 0;
	pthread_create(&w, NULL, replacer, &wbad);
	for (int i = 0; i < 4; i++) {
		rd[i] = (struct pin_reader){.p = p, .size = size, .seed = 41};
		pthread_create(&t[i], NULL, pin_reader, &rd[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	/* Pins opened while the writer runs each see one whole version. */
	for (int i = 0; i < 20; i++) {
		kvfs_pin_t *q;
		struct kvfs_attr a;
		cr_assert_eq(kvfs_pin_open(kv, "pin/hot", &q, &a), 0);
		uint8_t *b = malloc(a.size + 1);
		cr_assert_eq(kvfs_pin_get(q, b, a.size + 1, 0), (ssize_t)a.size);
		/* the first value (seed 41), or a writer's: seed c, c * 7919 % 12 MiB + 1 bytes */
		uint64_t seed = a.size == size ? 41 : 0;
		for (uint64_t c = 500; !seed && c < 500 + 100000; c++)
			if ((size_t)(c * 7919 % (12u << 20)) + 1 == a.size)
				seed = c;
		cr_assert(seed && h_check(b, a.size, seed, 0), "pinned read %d is torn", i);
		free(b);
		kvfs_pin_close(q);
	}
	stop_writer = 1;
	pthread_join(w, NULL);
	cr_assert_eq(wbad, 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(rd[i].bad, 0, "reader %d: %d of %d reads wrong", i, rd[i].bad,
			     rd[i].reads);
	kvfs_pin_close(p);
}

Test(cache, many_pins, .init = setup1, .fini = teardown_all, .timeout = 240)
{
	enum { MAX = 4096 };
	kvfs_pin_t **p = calloc(MAX + 1, sizeof(*p));
	uint64_t base = pool_used();
	uint8_t *v = malloc(100000);
	char key[32];
	h_fill(v, 100000, 51, 0);
	for (int i = 0; i < 64; i++) {
		snprintf(key, sizeof(key), "pins/%d", i);
		cr_assert_eq(kvfs_put(kv, key, v, 100000, NULL), 0);
	}
	for (int i = 0; i < MAX; i++) {
		snprintf(key, sizeof(key), "pins/%d", i % 64);
		int ret = kvfs_pin_open(kv, key, &p[i], NULL);
		cr_assert_eq(ret, 0, "pin %d: %s", i, kvfs_strerror(ret));
	}
	cr_assert_eq(kvfs_pin_open(kv, "pins/0", &p[MAX], NULL), -EMFILE);
	/* Replace every key: all the old versions stay readable. */
	h_fill(v, 100000, 52, 0);
	for (int i = 0; i < 64; i++) {
		snprintf(key, sizeof(key), "pins/%d", i);
		cr_assert_eq(kvfs_put(kv, key, v, 100000, NULL), 0);
	}
	for (int i = 0; i < MAX; i += 97) {
		cr_assert_eq(kvfs_pin_get(p[i], v, 100000, 0), 100000);
		cr_assert(h_check(v, 100000, 51, 0), "pin %d", i);
	}
	/* A closed pin's room is reused, and its handle is dead. */
	kvfs_pin_close(p[7]);
	cr_assert_eq(kvfs_pin_open(kv, "pins/3", &p[7], NULL), 0);
	cr_assert_eq(kvfs_pin_get(p[7], v, 100000, 0), 100000);
	cr_assert(h_check(v, 100000, 52, 0));
	for (int i = 0; i < MAX; i++)
		kvfs_pin_close(p[i]);
	for (int i = 0; i < 64; i++) {
		snprintf(key, sizeof(key), "pins/%d", i);
		cr_assert_eq(kvfs_delete(kv, key), 0);
	}
	cr_assert_leq(pool_used(), base + (1u << 20), "pinned values not freed");
	free(p);
	free(v);
}

Test(cache, pin_after_session_loss, .init = setup1, .fini = teardown_all, .timeout = 120)
{
	char b[16];
	kvfs_pin_t *p, *q;
	cr_assert_eq(kvfs_put(kv, "pin/k", "before", 6, NULL), 0);
	cr_assert_eq(kvfs_pin_open(kv, "pin/k", &p, NULL), 0);
	cr_assert_eq(kvfs_pin_open(kv, "pin/k", &q, NULL), 0);
	cr_assert_eq(kvfs_pin_get(p, b, sizeof(b), 0), 6);
	struct iovec iov[2];
	kvfs_lease_t *ml;
	int n;
	ssize_t mapped = kvfs_pin_map(q, 6, 0, iov, 2, &n, &ml);
	cr_assert(mapped == 6 || mapped == -EOPNOTSUPP);
	if (mapped > 0)
		kvfs_lease_release(ml);
	h_kill(&cl, 0, SIGKILL);
	h_restart(&cl, 0);
	/* The session (and its pins) died with the server, though a map would still show it. */
	if (mapped > 0)
		cr_assert_eq(kvfs_pin_map(q, 6, 0, iov, 2, &n, &ml), -EIO);
	cr_assert_eq(kvfs_pin_get(p, b, sizeof(b), 0), -EIO);
	const void *data;
	kvfs_lease_t *l;
	cr_assert_eq(kvfs_pin_get_lease(q, 16, 0, &data, &l), -EIO);
	/* Other calls reconnect; the old pins stay dead on the new session. */
	cr_assert_eq(kvfs_put(kv, "pin/k", "after", 5, NULL), 0);
	cr_assert_eq(kvfs_pin_get(p, b, sizeof(b), 0), -EIO);
	kvfs_pin_close(p);
	kvfs_pin_close(q);
	cr_assert_eq(kvfs_pin_open(kv, "pin/k", &p, NULL), 0);
	cr_assert_eq(kvfs_pin_get(p, b, sizeof(b), 0), 5);
	cr_assert_eq(memcmp(b, "after", 5), 0);
	kvfs_pin_close(p);
}

/* A client that dies with pins open: its session's end releases them. */
Test(cache, client_death_releases_pins, .init = setup1, .fini = teardown_all, .timeout = 60)
{
	size_t size = 6u << 20;
	uint8_t *v = malloc(size);
	h_fill(v, size, 61, 0);
	uint64_t base = pool_used();
	cr_assert_eq(kvfs_put(kv, "pin/dying", v, size, NULL), 0);
	pid_t child = fork();
	if (child == 0) {
		kvfs_t *k2;
		kvfs_pin_t *p;
		if (kvfs_open(cl.conf, &k2))
			_exit(1);
		for (int i = 0; i < 3; i++)
			if (kvfs_pin_open(k2, "pin/dying", &p, NULL))
				_exit(2);
		if (kvfs_delete(k2, "pin/dying"))
			_exit(3);
		if (kvfs_pin_get(p, v, size, 0) != (ssize_t)size || !h_check(v, size, 61, 0))
			_exit(4);
		_exit(0); /* dies with the pins open */
	}
	int st;
	waitpid(child, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	int64_t deadline = h_now_ms() + 5000;
	uint64_t used;
	while ((used = pool_used()) > base && h_now_ms() < deadline)
		usleep(50000);
	cr_assert_leq(used, base, "pinned pages not freed: %llu > %llu", (unsigned long long)used,
		      (unsigned long long)base);
	free(v);
}
