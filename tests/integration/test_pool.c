/*
 * Integration: a full pool under "lru" (old keys go, survivors are intact)
 * and "none" (ENOSPC, nothing lost), and TTL expiry, on real servers.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct h_cluster cl;
static kvfs_t *kv;

static void start(const char *eviction)
{
	struct h_opts o = {.memory = "32M", .max_value = "8M", .eviction = eviction};
	h_start(&cl, &o);
	kv = h_client(&cl);
}
static void start_lru(void)
{
	start("lru");
}
static void start_none(void)
{
	start("none");
}
static void stop(void)
{
	kvfs_close(kv);
	h_stop(&cl);
}

#define VAL (256 * 1024)

Test(pool, lru_evicts_old_keeps_bytes_right, .init = start_lru, .fini = stop, .timeout = 120)
{
	uint8_t *v = malloc(VAL), *r = malloc(VAL);
	char key[32];
	/* 4x the pool: most early keys must go. */
	for (int i = 0; i < 512; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		h_fill(v, VAL, (uint64_t)i + 1, 0);
		int ret = kvfs_put(kv, key, v, VAL, NULL);
		cr_assert_eq(ret, 0, "put %d: %s", i, kvfs_strerror(ret));
		/* keep k0 hot */
		if (i % 8 == 0)
			cr_assert_eq(kvfs_get(kv, "k0", r, VAL, 0, NULL), VAL, "hot key lost at %d",
				     i);
	}
	int present = 0, early_present = 0;
	for (int i = 0; i < 512; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		ssize_t n = kvfs_get(kv, key, r, VAL, 0, NULL);
		if (n == -ENOENT)
			continue;
		cr_assert_eq(n, VAL, "key %d: %zd", i, n);
		cr_assert(h_check(r, VAL, (uint64_t)i + 1, 0), "key %d has wrong bytes", i);
		present++;
		if (i > 0 && i < 100)
			early_present++;
	}
	cr_assert_gt(present, 60, "only %d keys survive in a 32M pool", present);
	cr_assert_lt(present, 130);
	cr_assert_lt(early_present, 10, "old keys should be evicted first (%d kept)",
		     early_present);
	cr_assert_eq(kvfs_get(kv, "k511", r, VAL, 0, NULL), VAL, "the newest key is gone");
	cr_assert_eq(kvfs_get(kv, "k0", r, VAL, 0, NULL), VAL, "the hot key is gone");
	struct kvfs_stats st;
	cr_assert_eq(kvfs_server_stats(kv, 0, &st), 0);
	cr_assert_gt(st.evictions, 300);
	free(v);
	free(r);
}

Test(pool, none_refuses_and_loses_nothing, .init = start_none, .fini = stop, .timeout = 120)
{
	uint8_t *v = malloc(VAL), *r = malloc(VAL);
	char key[32];
	int stored = 0, ret = 0;
	for (int i = 0; i < 512; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		h_fill(v, VAL, (uint64_t)i + 1, 0);
		ret = kvfs_put(kv, key, v, VAL, NULL);
		if (ret)
			break;
		stored++;
	}
	cr_assert_eq(ret, -ENOSPC, "full pool under none: %s", kvfs_strerror(ret));
	cr_assert_gt(stored, 60);
	/* Replacing a stored key with a bigger value fails too and keeps the old one. */
	uint8_t *big = malloc(4u << 20);
	cr_assert_eq(kvfs_put(kv, "k0", big, 4u << 20, NULL), -ENOSPC);
	for (int i = 0; i < stored; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		ssize_t n = kvfs_get(kv, key, r, VAL, 0, NULL);
		cr_assert_eq(n, VAL, "key %d lost under eviction none", i);
		cr_assert(h_check(r, VAL, (uint64_t)i + 1, 0), "key %d changed", i);
	}
	/* Delete one: room again. */
	cr_assert_eq(kvfs_delete(kv, "k1"), 0);
	cr_assert_eq(kvfs_put(kv, "again", v, VAL, NULL), 0);
	struct kvfs_stats st;
	cr_assert_eq(kvfs_server_stats(kv, 0, &st), 0);
	cr_assert_eq(st.evictions, 0);
	free(big);
	free(v);
	free(r);
}

Test(pool, ttl_expiry, .init = start_lru, .fini = stop, .timeout = 60)
{
	struct kvfs_setattr sa = {.mask = KVFS_SET_TTL, .ttl = 1};
	struct kvfs_attr a;
	cr_assert_eq(kvfs_put(kv, "short", "x", 1, &sa), 0);
	cr_assert_eq(kvfs_put(kv, "long", "y", 1, NULL), 0);
	cr_assert_eq(kvfs_stat(kv, "short", &a), 0);
	cr_assert_neq(a.expiry, 0);
	/* TTL set later on an existing key, and cleared on another. */
	cr_assert_eq(kvfs_put(kv, "later", "z", 1, NULL), 0);
	cr_assert_eq(kvfs_setattr(kv, "later", &sa, NULL), 0);
	cr_assert_eq(kvfs_put(kv, "cleared", "w", 1, &sa), 0);
	struct kvfs_setattr clr = {.mask = KVFS_SET_TTL, .ttl = 0};
	cr_assert_eq(kvfs_setattr(kv, "cleared", &clr, &a), 0);
	cr_assert_eq(a.expiry, 0);
	sleep(3);
	char b;
	cr_assert_eq(kvfs_get(kv, "short", &b, 1, 0, NULL), -ENOENT);
	cr_assert_eq(kvfs_get(kv, "later", &b, 1, 0, NULL), -ENOENT);
	cr_assert_eq(kvfs_get(kv, "long", &b, 1, 0, NULL), 1);
	cr_assert_eq(kvfs_get(kv, "cleared", &b, 1, 0, NULL), 1);
	struct kvfs_stats st;
	cr_assert_eq(kvfs_server_stats(kv, 0, &st), 0);
	cr_assert_geq(st.expirations, 2);
	cr_assert_eq(st.keys, 2);
}
