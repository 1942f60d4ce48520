/*
 * cache_fixture: what test_cache.c, test_cluster.c and test_pin.c share (in
 * cache_fixture.c): the cluster under test, its client, and the one-server
 * setup most of their tests start from (a 1536M pool, values up to 1G).
 */
#ifndef KVFS_TEST_CACHE_FIXTURE_H
#define KVFS_TEST_CACHE_FIXTURE_H

#include "harness.h"

extern struct h_cluster cl;
extern kvfs_t *kv;

/* One server with room for a 1 GiB value; .init of a Test. */
void setup1(void);
/* Close kv and stop the cluster; .fini of every Test. */
void teardown_all(void);

#endif
