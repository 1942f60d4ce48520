/* Unit tests of libkvfs's key routing (rendezvous hashing); no server needed. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "kvfs/kvfs.h"

static kvfs_t *cluster(int n)
{
	struct kvfs_config *cfg = kvfs_config_new();
	char name[16], addr[32], err[256];
	cr_assert_not_null(cfg);
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "node-%d", i);
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", 7400 + i);
		cr_assert_eq(kvfs_config_add_server(cfg, name, addr), 0);
	}
	cr_assert_eq(kvfs_config_set(cfg, "fabric.provider", "tcp", err, sizeof(err)), 0, "%s",
		     err);
	kvfs_t *kv;
	cr_assert_eq(kvfs_open_config(cfg, &kv), 0);
	kvfs_config_free(cfg);
	return kv;
}

Test(routing, spreads_evenly)
{
	kvfs_t *kv = cluster(5);
	int per[5] = {0};
	char key[32];
	for (int i = 0; i < 100000; i++) {
		snprintf(key, sizeof(key), "dir/file-%d", i);
		int s = kvfs_server_of(kv, key);
		cr_assert(s >= 0 && s < 5);
		per[s]++;
	}
	for (int s = 0; s < 5; s++)
		cr_assert(per[s] > 19000 && per[s] < 21000, "server %d got %d of 100000", s,
			  per[s]);
	kvfs_close(kv);
}

Test(routing, stable_and_minimal_moves)
{
	kvfs_t *a = cluster(4), *b = cluster(5);
	char key[32];
	int moved = 0;
	for (int i = 0; i < 50000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		int sa = kvfs_server_of(a, key), sb = kvfs_server_of(b, key);
		cr_assert_eq(sa, kvfs_server_of(a, key), "routing is not deterministic");
		if (sa != sb) {
			/* Adding node-4 only takes keys; it never shuffles the others. */
			cr_assert_eq(sb, 4, "key %s moved between old servers", key);
			moved++;
		}
	}
	cr_assert(moved > 9000 && moved < 11000, "%d of 50000 keys moved (expect ~1/5)", moved);
	cr_assert_str_eq(kvfs_server_name(b, 4), "node-4");
	cr_assert_eq(kvfs_server_count(b), 5);
	kvfs_close(a);
	kvfs_close(b);
}

Test(routing, names_not_order_decide)
{
	/* The same names in another order route every key to the same name. */
	struct kvfs_config *cfg = kvfs_config_new();
	kvfs_config_add_server(cfg, "node-2", "127.0.0.1:7402");
	kvfs_config_add_server(cfg, "node-0", "127.0.0.1:7400");
	kvfs_config_add_server(cfg, "node-1", "127.0.0.1:7401");
	kvfs_t *x, *y = cluster(3);
	cr_assert_eq(kvfs_open_config(cfg, &x), 0);
	kvfs_config_free(cfg);
	char key[32];
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "key/%d", i);
		cr_assert_str_eq(kvfs_server_name(x, kvfs_server_of(x, key)),
				 kvfs_server_name(y, kvfs_server_of(y, key)));
	}
	kvfs_close(x);
	kvfs_close(y);
}
