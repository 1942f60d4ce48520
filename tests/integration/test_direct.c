/*
 * Integration: lazy clients (KVFS_OPEN_LAZY_FABRIC) against a real
 * kvfs-server. Small calls go over the TCP bootstrap channel and open no
 * fabric session (the server's session count says so); anything bigger
 * upgrades the connection and moves the right bytes; lazy and fabric
 * clients share a server; threads share one lazy kvfs_t while it upgrades;
 * a quiet or restarted server is redialled without an error.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct h_cluster cl;
static kvfs_t *fab; /* a fabric client: reads the server's counters */
static kvfs_t *lazy;

static void start(void)
{
	h_start(&cl, NULL);
	fab = h_client(&cl);
	int ret = kvfs_open_flags(cl.conf, KVFS_OPEN_LAZY_FABRIC, &lazy);
	cr_assert_eq(ret, 0, "kvfs_open_flags: %s", kvfs_strerror(ret));
}

static void stop(void)
{
	kvfs_close(lazy);
	kvfs_close(fab);
	h_stop(&cl);
}

static struct kvfs_stats stats(void)
{
	struct kvfs_stats st;
	int ret = kvfs_server_stats(fab, 0, &st);
	cr_assert_eq(ret, 0, "stats: %s", kvfs_strerror(ret));
	return st;
}

Test(direct, small_calls_open_no_fabric_session, .init = start, .fini = stop, .timeout = 60)
{
	struct kvfs_stats st0 = stats();
	cr_assert_eq(st0.sessions, 1, "only the fabric client's session");
	struct kvfs_limits lim;
	cr_assert_eq(kvfs_limits(lazy, 0, &lim), 0);
	cr_assert_eq(lim.inline_threshold, 4096);
	uint64_t rtt = 0;
	cr_assert_eq(kvfs_ping(lazy, 0, &rtt), 0);
	cr_assert_gt(rtt, 0);

	const char *val = "abc";
	cr_assert_eq(kvfs_put(lazy, "d/k", val, 3, NULL), 0);
	char buf[64] = "";
	struct kvfs_attr a;
	cr_assert_eq(kvfs_get(lazy, "d/k", buf, sizeof(buf), 0, &a), 3);
	cr_assert_eq(memcmp(buf, val, 3), 0);
	cr_assert_eq(a.size, 3);
	cr_assert_eq(kvfs_get(lazy, "d/k", buf, 2, 1, NULL), 2);
	cr_assert_eq(memcmp(buf, "bc", 2), 0);
	cr_assert_eq(kvfs_get(lazy, "d/k", buf, sizeof(buf), 10, NULL), 0, "past the end");
	/* A buffer far larger than the inline threshold, a small value: still direct. */
	char *big = malloc(1 << 20);
	cr_assert_eq(kvfs_get(lazy, "d/k", big, 1 << 20, 0, NULL), 3);
	free(big);
	/* A value of exactly the inline threshold goes both ways directly. */
	char *full = malloc(4096), *back = malloc(8192);
	h_fill(full, 4096, 7, 0);
	cr_assert_eq(kvfs_put(lazy, "d/full", full, 4096, NULL), 0);
	cr_assert_eq(kvfs_get(lazy, "d/full", back, 8192, 0, NULL), 4096);
	cr_assert(h_check(back, 4096, 7, 0));
	free(full);
	free(back);

	struct kvfs_setattr sa = {.mask = KVFS_SET_MODE, .mode = 0600};
	cr_assert_eq(kvfs_setattr(lazy, "d/k", &sa, &a), 0);
	cr_assert_eq(a.mode & 07777, 0600);
	cr_assert_eq(kvfs_stat(lazy, "d/k", &a), 0);
	cr_assert_eq(a.mode & 07777, 0600);
	cr_assert_eq(kvfs_rename(lazy, "d/k", "d/k2", 0), 0);
	cr_assert_eq(kvfs_stat(lazy, "d/k", &a), -ENOENT);
	cr_assert_eq(kvfs_rename(lazy, "d/k2", "d/full", KVFS_RENAME_NOREPLACE), -EEXIST);
	cr_assert_eq(kvfs_delete(lazy, "d/k2"), 0);
	cr_assert_eq(kvfs_delete(lazy, "d/k2"), -ENOENT);
	cr_assert_eq(kvfs_get(lazy, "d/k2", buf, sizeof(buf), 0, NULL), -ENOENT);
	/* Errors of the call itself, before anything is sent. */
	cr_assert_eq(kvfs_put(lazy, "", val, 3, NULL), -EINVAL);
	cr_assert_eq(kvfs_get(lazy, "d/k", NULL, 3, 0, NULL), -EINVAL);

	/* The server counted the direct requests, and no session was opened for them. */
	struct kvfs_stats st = stats();
	cr_assert_eq(st.sessions, 1, "a lazy client opened a fabric session for small calls");
	cr_assert_geq(st.gets - st0.gets, 6);
	cr_assert_eq(st.puts - st0.puts, 2);
	cr_assert_eq(st.deletes - st0.deletes, 2);
	cr_assert_geq(st.misses - st0.misses, 1);
	cr_assert_geq(st.bytes_in - st0.bytes_in, 4099);
}

Test(direct, larger_values_upgrade, .init = start, .fini = stop, .timeout = 60)
{
	size_t n = (1 << 20) + 100;
	uint8_t *v = malloc(n), *back = malloc(n);
	/* One byte over the inline threshold already needs the fabric. */
	h_fill(v, 4097, 3, 0);
	cr_assert_eq(kvfs_put(lazy, "over", v, 4097, NULL), 0);
	cr_assert_eq(stats().sessions, 2, "the lazy client upgraded");
	memset(back, 0, n);
	cr_assert_eq(kvfs_get(lazy, "over", back, n, 0, NULL), 4097);
	cr_assert(h_check(back, 4097, 3, 0));

	/* A fresh lazy client reads a large value: direct first, then the fabric. */
	kvfs_t *l2;
	cr_assert_eq(kvfs_open_flags(cl.conf, KVFS_OPEN_LAZY_FABRIC, &l2), 0);
	h_fill(v, n, 9, 0);
	cr_assert_eq(kvfs_put(fab, "big", v, n, NULL), 0);
	struct kvfs_attr a;
	cr_assert_eq(kvfs_stat(l2, "big", &a), 0);
	cr_assert_eq(a.size, n);
	cr_assert_eq(stats().sessions, 2, "stat went direct");
	memset(back, 0, n);
	cr_assert_eq(kvfs_get(l2, "big", back, n, 0, &a), (ssize_t)n);
	cr_assert(h_check(back, n, 9, 0), "upgraded read landed wrong");
	cr_assert_eq(a.size, n);
	cr_assert_eq(stats().sessions, 3);
	/* After the upgrade, small calls work as on any fabric client. */
	cr_assert_eq(kvfs_put(l2, "small", "x", 1, NULL), 0);
	cr_assert_eq(kvfs_get(l2, "small", back, 10, 0, NULL), 1);
	/* An upload on a lazy client: upgrades the same way. */
	kvfs_t *l3;
	kvfs_upload_t *up;
	cr_assert_eq(kvfs_open_flags(cl.conf, KVFS_OPEN_LAZY_FABRIC, &l3), 0);
	cr_assert_eq(kvfs_get(l3, "small", back, 10, 0, NULL), 1);
	cr_assert_eq(kvfs_upload_open(l3, "up", 0, &up), 0);
	cr_assert_eq(kvfs_upload_write(up, "hello", 5, 0), 0);
	cr_assert_eq(kvfs_upload_commit(up, NULL, NULL), 0);
	cr_assert_eq(kvfs_get(fab, "up", back, 10, 0, NULL), 5);
	cr_assert_eq(memcmp(back, "hello", 5), 0);
	kvfs_close(l3);
	kvfs_close(l2);
	free(v);
	free(back);
}

/* Threads on one lazy client (small calls, and one big put that upgrades it mid-way). */
struct worker {
	kvfs_t *kv;
	int id, big;
	int errors;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	char key[32], val[32], back[32];
	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "w%d/%d", w->id, i % 7);
		int len = snprintf(val, sizeof(val), "v%d-%d", w->id, i);
		if (kvfs_put(w->kv, key, val, (size_t)len, NULL) != 0 ||
		    kvfs_get(w->kv, key, back, sizeof(back), 0, NULL) != len ||
		    memcmp(back, val, (size_t)len) != 0)
			w->errors++;
		if (w->big && i == 50) {
			size_t n = 300000;
			uint8_t *b = malloc(n), *c = malloc(n);
			h_fill(b, n, 77, 0);
			if (kvfs_put(w->kv, "w/big", b, n, NULL) != 0 ||
			    kvfs_get(w->kv, "w/big", c, n, 0, NULL) != (ssize_t)n ||
			    !h_check(c, n, 77, 0))
				w->errors++;
			free(b);
			free(c);
		}
	}
	return NULL;
}

Test(direct, threads_lazy_and_fabric_clients_mix, .init = start, .fini = stop, .timeout = 120)
{
	kvfs_t *other;
	cr_assert_eq(kvfs_open_flags(cl.conf, KVFS_OPEN_LAZY_FABRIC, &other), 0);
	struct worker w[6] = {
	    {lazy, 0, 0, 0}, {lazy, 1, 0, 0},  {lazy, 2, 1, 0},
	    {lazy, 3, 0, 0}, {other, 4, 0, 0}, {fab, 5, 0, 0},
	};
	pthread_t t[6];
	for (int i = 0; i < 6; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
	for (int i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		cr_expect_eq(w[i].errors, 0, "worker %d: %d failed rounds", i, w[i].errors);
	}
	/* Each sees what the others wrote, whichever way it goes. */
	char back[32];
	cr_assert_eq(kvfs_get(other, "w5/3", back, sizeof(back), 0, NULL), 6); /* "v5-199" */
	cr_assert_eq(memcmp(back, "v5-199", 6), 0);
	cr_assert_eq(kvfs_get(fab, "w4/3", back, sizeof(back), 0, NULL), 6);
	cr_assert_eq(memcmp(back, "v4-199", 6), 0);
	/* lazy upgraded (its big put), other stayed direct: fab + lazy. */
	cr_assert_eq(stats().sessions, 2);
	kvfs_close(other);
}

Test(direct, quiet_and_restarted_server_redialled, .init = start, .fini = stop, .timeout = 60)
{
	char back[16];
	cr_assert_eq(kvfs_put(lazy, "q", "1", 1, NULL), 0);
	/* Quiet for longer than half the server's idle limit: redialled, no error. */
	usleep(2000 * 1000);
	cr_assert_eq(kvfs_get(lazy, "q", back, sizeof(back), 0, NULL), 1);
	/* Past the server's idle limit itself (it closed the connection). */
	usleep(3500 * 1000);
	cr_assert_eq(kvfs_get(lazy, "q", back, sizeof(back), 0, NULL), 1);
	/* Restarted server: the closed socket is seen before the next request. */
	h_kill(&cl, 0, SIGTERM);
	h_restart(&cl, 0);
	cr_assert_eq(kvfs_get(lazy, "q", back, sizeof(back), 0, NULL), -ENOENT,
		     "a fresh server has no keys; the call must not fail on the old socket");
	cr_assert_eq(kvfs_put(lazy, "q", "2", 1, NULL), 0);
	cr_assert_eq(kvfs_get(lazy, "q", back, sizeof(back), 0, NULL), 1);
	cr_assert_eq(back[0], '2');
	/* A killed server in the middle: -EIO or a fresh connect, never a hang. */
	h_kill(&cl, 0, SIGKILL);
	int ret = kvfs_get(lazy, "q", back, sizeof(back), 0, NULL);
	cr_assert(ret == -EIO, "get from a dead server: %d", ret);
	h_restart(&cl, 0);
	cr_assert_eq(kvfs_put(lazy, "q", "3", 1, NULL), 0);
}

/*
 * A lazy client quiet for a while, then a call that needs the fabric: the
 * upgrade must not send SETUP on a direct connection the server has closed
 * as idle (it failed with EIO), and a connection that breaks under SETUP is
 * replaced once.
 */
Test(direct, quiet_lazy_client_upgrades, .init = start, .fini = stop, .timeout = 60)
{
	size_t n = 100000;
	uint8_t *v = malloc(n), *back = malloc(n);
	h_fill(v, n, 5, 0);
	cr_assert_eq(kvfs_put(fab, "qbig", v, n, NULL), 0);
	for (int wait_ms = 1000; wait_ms <= 4000; wait_ms += 1500) {
		kvfs_t *l;
		cr_assert_eq(kvfs_open_flags(cl.conf, KVFS_OPEN_LAZY_FABRIC, &l), 0);
		cr_assert_eq(kvfs_put(l, "qs", "1", 1, NULL), 0);
		usleep((useconds_t)wait_ms * 1000);
		/* a large put needs the fabric from the start (a get asks direct first) */
		cr_assert_eq(kvfs_put(l, "qbig", v, n, NULL), 0,
			     "a large put %d ms after a direct call", wait_ms);
		memset(back, 0, n);
		cr_assert_eq(kvfs_get(l, "qbig", back, n, 0, NULL), (ssize_t)n);
		cr_assert(h_check(back, n, 5, 0));
		kvfs_close(l);
	}
	free(v);
	free(back);
}

Test(direct, busy_lazy_client_takes_the_fabric, .init = start, .fini = stop, .timeout = 60)
{
	/* 1000 direct requests, then the next call upgrades (not a short-lived client). */
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(kvfs_put(lazy, "busy", &i, sizeof(i), NULL), 0);
	cr_assert_eq(stats().sessions, 1, "still direct after 1000 requests");
	int back = -1;
	cr_assert_eq(kvfs_get(lazy, "busy", &back, sizeof(back), 0, NULL), (ssize_t)sizeof(back));
	cr_assert_eq(back, 999);
	cr_assert_eq(stats().sessions, 2, "the 1001st request went by the fabric");
}

static void stop_cluster(void)
{
	h_stop(&cl);
}

Test(direct, secrets_checked_before_any_direct_request, .fini = stop_cluster, .timeout = 30)
{
	struct h_opts o = {.secret = "right horse battery", .client_secret = "wrong horse battery"};
	h_start(&cl, &o);
	kvfs_t *bad, *good;
	char b;
	cr_assert_eq(kvfs_open_flags(cl.conf, KVFS_OPEN_LAZY_FABRIC, &bad), 0);
	cr_assert_eq(kvfs_put(bad, "k", "v", 1, NULL), -EACCES);
	cr_assert_eq(kvfs_get(bad, "k", &b, 1, 0, NULL), -EACCES);
	kvfs_close(bad);
	/* The right secret (the server's own config) works, directly. */
	cr_assert_eq(kvfs_open_flags(cl.server_conf, KVFS_OPEN_LAZY_FABRIC, &good), 0);
	cr_assert_eq(kvfs_put(good, "k", "v", 1, NULL), 0);
	cr_assert_eq(kvfs_get(good, "k", &b, 1, 0, NULL), 1);
	cr_assert_eq(b, 'v');
	kvfs_close(good);
}
