/*
 * Integration: a 3-server cluster and concurrent callers, on the provider in
 * $KVFS_TEST_PROVIDER. Routing spreads keys evenly, a listing is one merged
 * pass over all servers, rename works within a server and is refused across
 * them; 8 threads of checksummed mixed ops lose and tear nothing; readers of
 * one key while it is rewritten see only whole versions.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_fixture.h"

static void setup3(void)
{
	struct h_opts o = {.servers = 3, .memory = "128M"};
	h_start(&cl, &o);
	kv = h_client(&cl);
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

Test(cluster, cluster_routing_and_listing, .init = setup3, .fini = teardown_all, .timeout = 120)
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

Test(cluster, threads_mixed_checksummed, .init = setup3, .fini = teardown_all, .timeout = 300)
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

Test(cluster, no_torn_values, .init = setup1, .fini = teardown_all, .timeout = 120)
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
