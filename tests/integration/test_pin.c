/*
 * Integration: pinned reads (kvfs_pin_*), on the provider in
 * $KVFS_TEST_PROVIDER. A pin keeps its version through replace and delete,
 * read by lease, by copy and from the mapped pool (kvfs_pin_map), including
 * a value in more pool pieces than one reply can name and a lease that
 * outlives its pin; local_map = false; readers sharing a pin while the key
 * is rewritten; 4096 pins per session; a lost session's pins (EIO); a dead
 * client's pins freed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache_fixture.h"

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

Test(pin, pin_keeps_its_version, .init = setup1, .fini = teardown_all, .timeout = 240)
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
Test(pin, pin_map_views_the_pool, .init = setup1, .fini = teardown_all, .timeout = 240)
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

Test(pin, pin_map_needs_local_map, .init = setup_nomap, .fini = teardown_all)
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

Test(pin, pin_concurrent_reads_while_replaced, .init = setup1, .fini = teardown_all, .timeout = 240)
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

Test(pin, many_pins, .init = setup1, .fini = teardown_all, .timeout = 240)
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

Test(pin, pin_after_session_loss, .init = setup1, .fini = teardown_all, .timeout = 120)
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
Test(pin, client_death_releases_pins, .init = setup1, .fini = teardown_all, .timeout = 60)
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
