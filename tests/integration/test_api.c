/*
 * Integration: the contract of include/kvfs/kvfs.h itself, against a real
 * kvfs-server: every public call refuses a NULL it does not document as
 * allowed with -EINVAL (void calls ignore it), out-parameters are written
 * only as the header says, the limits are each server's own, and the
 * zero-copy calls check their buffer against the region whatever the length,
 * kvfs_server_state follows a session from idle to up, and to down, and
 * kvfs_track tells changes, deletes, listings, the loss of a server and its
 * return.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "harness.h"

static struct h_cluster cl;
static kvfs_t *kv;

static void setup1(void)
{
	struct h_opts o = {.memory = "128M", .max_value = "48M"};
	h_start(&cl, &o);
	kv = h_client(&cl);
}

static void setup3(void)
{
	struct h_opts o = {.servers = 3, .memory = "64M"};
	h_start(&cl, &o);
	kv = h_client(&cl);
}

static void teardown_all(void)
{
	kvfs_close(kv);
	h_stop(&cl);
}

/* A lease pointer a failed call must overwrite with NULL. */
#define NOT_NULL ((kvfs_lease_t *)&cl)

Test(api, null_config_and_open, .init = setup1, .fini = teardown_all)
{
	struct kvfs_config *cfg = kvfs_config_new();
	char buf[KVFS_ADDRESS_MAX], err[256];
	uint64_t size;
	kvfs_t *k2;
	cr_assert_not_null(cfg);
	cr_assert_eq(kvfs_config_load(cl.conf, NULL, err, sizeof(err)), -EINVAL);
	cr_assert_eq(kvfs_config_add_server(NULL, "a", "127.0.0.1:1"), -EINVAL);
	cr_assert_eq(kvfs_config_add_server(cfg, NULL, "127.0.0.1:1"), -EINVAL);
	cr_assert_eq(kvfs_config_add_server(cfg, "a", NULL), -EINVAL);
	cr_assert_eq(kvfs_config_set(NULL, "client.timeout_ms", "100", NULL, 0), -EINVAL);
	cr_assert_eq(kvfs_config_set(cfg, NULL, "100", NULL, 0), -EINVAL);
	cr_assert_eq(kvfs_config_set(cfg, "client.timeout_ms", NULL, NULL, 0), -EINVAL);
	cr_assert_eq(kvfs_config_server_count(NULL), -EINVAL);
	cr_assert_null(kvfs_config_server_name(NULL, 0));
	cr_assert_eq(kvfs_config_server_address(NULL, 0, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(kvfs_config_add_server(cfg, "a", "127.0.0.1:1"), 0);
	cr_assert_eq(kvfs_config_server_address(cfg, 0, NULL, 0), -EINVAL);
	cr_assert_eq(kvfs_parse_size(NULL, &size), -EINVAL);
	cr_assert_eq(kvfs_parse_size("1M", NULL), -EINVAL);
	cr_assert_eq(kvfs_open(cl.conf, NULL), -EINVAL);
	cr_assert_eq(kvfs_open_config(NULL, &k2), -EINVAL);
	cr_assert_eq(kvfs_open_config(cfg, NULL), -EINVAL);
	cr_assert_eq(kvfs_open_flags(cl.conf, KVFS_OPEN_LAZY_FABRIC, NULL), -EINVAL);
	cr_assert_eq(kvfs_open_config_flags(NULL, 0, &k2), -EINVAL);
	cr_assert_eq(kvfs_open_config_flags(cfg, KVFS_OPEN_LAZY_FABRIC, NULL), -EINVAL);
	/* Unknown flags are refused, not ignored. */
	cr_assert_eq(kvfs_open_flags(cl.conf, 2, &k2), -EINVAL);
	cr_assert_eq(kvfs_open_config_flags(cfg, ~KVFS_OPEN_LAZY_FABRIC, &k2), -EINVAL);
	cr_assert_not_null(kvfs_strerror(0));
	cr_assert_not_null(kvfs_strerror(-EAGAIN));
	cr_assert_not_null(kvfs_strerror(-123456));
	/* void calls take NULL */
	kvfs_config_free(NULL);
	kvfs_close(NULL);
	kvfs_lease_release(NULL);
	kvfs_mr_close(NULL);
	kvfs_upload_abort(NULL);
	kvfs_pin_close(NULL);
	kvfs_config_free(cfg);
}

Test(api, null_keyed_calls, .init = setup1, .fini = teardown_all)
{
	char b[16];
	struct kvfs_attr a;
	struct kvfs_setattr sa = {0};
	const void *data;
	kvfs_lease_t *l;
	cr_assert_eq(kvfs_put(kv, "k", "value", 5, NULL), 0);

	cr_assert_eq(kvfs_get(NULL, "k", b, 1, 0, NULL), -EINVAL);
	cr_assert_eq(kvfs_get(kv, NULL, b, 1, 0, NULL), -EINVAL);
	cr_assert_eq(kvfs_get(kv, "k", NULL, 1, 0, NULL), -EINVAL);
	cr_assert_eq(kvfs_get(kv, "k", NULL, 0, 0, &a), 0, "a buffer may be NULL with length 0");
	cr_assert_eq(a.size, 5);

	l = NOT_NULL;
	cr_assert_eq(kvfs_get_lease(NULL, "k", 1, 0, &data, &l, NULL), -EINVAL);
	cr_assert_null(l, "*lease is NULL after a failure");
	l = NOT_NULL;
	cr_assert_eq(kvfs_get_lease(kv, NULL, 1, 0, &data, &l, NULL), -EINVAL);
	cr_assert_null(l);
	l = NOT_NULL;
	cr_assert_eq(kvfs_get_lease(kv, "k", 1, 0, NULL, &l, NULL), -EINVAL);
	cr_assert_null(l);
	cr_assert_eq(kvfs_get_lease(kv, "k", 1, 0, &data, NULL, NULL), -EINVAL);
	l = NOT_NULL;
	cr_assert_eq(kvfs_get_lease(kv, "absent", 1, 0, &data, &l, NULL), -ENOENT);
	cr_assert_null(l);

	cr_assert_eq(kvfs_put(NULL, "k", "v", 1, NULL), -EINVAL);
	cr_assert_eq(kvfs_put(kv, NULL, "v", 1, NULL), -EINVAL);
	cr_assert_eq(kvfs_put(kv, "k2", NULL, 1, NULL), -EINVAL);
	cr_assert_eq(kvfs_stat(kv, "k2", NULL), -ENOENT, "refused before anything was sent");
	cr_assert_eq(kvfs_put(kv, "empty", NULL, 0, NULL), 0);
	cr_assert_eq(kvfs_stat(kv, "empty", &a), 0);
	cr_assert_eq(a.size, 0);

	cr_assert_eq(kvfs_delete(NULL, "k"), -EINVAL);
	cr_assert_eq(kvfs_delete(kv, NULL), -EINVAL);
	cr_assert_eq(kvfs_stat(NULL, "k", &a), -EINVAL);
	cr_assert_eq(kvfs_stat(kv, NULL, &a), -EINVAL);
	cr_assert_eq(kvfs_setattr(NULL, "k", &sa, NULL), -EINVAL);
	cr_assert_eq(kvfs_setattr(kv, NULL, &sa, NULL), -EINVAL);
	cr_assert_eq(kvfs_rename(NULL, "k", "k3", 0), -EINVAL);
	cr_assert_eq(kvfs_rename(kv, NULL, "k3", 0), -EINVAL);
	cr_assert_eq(kvfs_rename(kv, "k", NULL, 0), -EINVAL);
	cr_assert_eq(kvfs_list(NULL, "", '/', NULL, NULL), -EINVAL);
	cr_assert_eq(kvfs_list(kv, "", 'x', NULL, NULL), -EINVAL, "delim is 0 or '/'");
	cr_assert_eq(kvfs_list(kv, NULL, 0, NULL, NULL), 2, "prefix and cb may be NULL");
	cr_assert_eq(kvfs_get(kv, "k", b, sizeof(b), 0, NULL), 5, "nothing was changed");
}

Test(api, null_cluster_info, .init = setup1, .fini = teardown_all)
{
	struct kvfs_stats st;
	struct kvfs_limits lim;
	uint64_t rtt = 0;
	cr_assert_eq(kvfs_server_count(NULL), -EINVAL);
	cr_assert_null(kvfs_server_name(NULL, 0));
	cr_assert_eq(kvfs_server_of(NULL, "k"), -EINVAL);
	cr_assert_eq(kvfs_server_of(kv, NULL), -EINVAL);
	cr_assert_null(kvfs_server_name(kv, kvfs_server_of(kv, NULL)));
	cr_assert_eq(kvfs_server_stats(NULL, 0, &st), -EINVAL);
	cr_assert_eq(kvfs_server_stats(kv, 0, NULL), -EINVAL);
	cr_assert_eq(kvfs_ping(NULL, 0, &rtt), -EINVAL);
	cr_assert_eq(kvfs_ping(kv, 0, NULL), 0, "rtt_ns may be NULL");
	cr_assert_eq(kvfs_limits(NULL, 0, &lim), -EINVAL);
	cr_assert_eq(kvfs_limits(kv, 0, NULL), -EINVAL);
	cr_assert_eq(kvfs_set_log_level(-1), -EINVAL);
}

Test(api, null_mr_calls, .init = setup1, .fini = teardown_all)
{
	static uint8_t buf[1u << 16], other[64];
	kvfs_mr_t *mr, *foreign;
	kvfs_t *k2 = h_client(&cl);
	cr_assert_eq(kvfs_mr_reg(NULL, buf, sizeof(buf), &mr), -EINVAL);
	cr_assert_eq(kvfs_mr_reg(kv, NULL, sizeof(buf), &mr), -EINVAL);
	cr_assert_eq(kvfs_mr_reg(kv, buf, 0, &mr), -EINVAL);
	cr_assert_eq(kvfs_mr_reg(kv, buf, sizeof(buf), NULL), -EINVAL);
	cr_assert_eq(kvfs_mr_reg(kv, buf, sizeof(buf), &mr), 0);
	cr_assert_eq(kvfs_mr_reg(k2, buf, sizeof(buf), &foreign), 0);
	cr_assert_eq(kvfs_put(kv, "k", "value", 5, NULL), 0);

	cr_assert_eq(kvfs_get_mr(NULL, "k", buf, 5, 0, mr, NULL), -EINVAL);
	cr_assert_eq(kvfs_get_mr(kv, NULL, buf, 5, 0, mr, NULL), -EINVAL);
	cr_assert_eq(kvfs_get_mr(kv, "k", NULL, 5, 0, mr, NULL), -EINVAL);
	cr_assert_eq(kvfs_get_mr(kv, "k", buf, 5, 0, NULL, NULL), -EINVAL);
	cr_assert_eq(kvfs_get_mr(kv, "k", buf, 5, 0, foreign, NULL), -EINVAL, "another kvfs_t's");
	/* Outside the region: -EFAULT, short (inline) ranges too. */
	cr_assert_eq(kvfs_get_mr(kv, "k", other, 5, 0, mr, NULL), -EFAULT);
	cr_assert_eq(kvfs_get_mr(kv, "k", buf + sizeof(buf) - 2, 5, 0, mr, NULL), -EFAULT);
	cr_assert_eq(kvfs_get_mr(kv, "k", buf, 5, 0, mr, NULL), 5);
	cr_assert_eq(memcmp(buf, "value", 5), 0);

	cr_assert_eq(kvfs_put_mr(NULL, "k2", buf, 5, mr, NULL), -EINVAL);
	cr_assert_eq(kvfs_put_mr(kv, NULL, buf, 5, mr, NULL), -EINVAL);
	cr_assert_eq(kvfs_put_mr(kv, "k2", NULL, 5, mr, NULL), -EINVAL);
	cr_assert_eq(kvfs_put_mr(kv, "k2", buf, 5, NULL, NULL), -EINVAL);
	cr_assert_eq(kvfs_put_mr(kv, "k2", buf, 5, foreign, NULL), -EINVAL);
	cr_assert_eq(kvfs_put_mr(kv, "k2", other, 5, mr, NULL), -EFAULT);
	cr_assert_eq(kvfs_stat(kv, "k2", NULL), -ENOENT, "refused before anything was sent");
	cr_assert_eq(kvfs_put_mr(kv, "k2", buf, 5, mr, NULL), 0);

	kvfs_upload_t *up;
	cr_assert_eq(kvfs_upload_open(kv, "up", 0, &up), 0);
	cr_assert_eq(kvfs_upload_write_mr(NULL, buf, 5, 0, mr), -EINVAL);
	cr_assert_eq(kvfs_upload_write_mr(up, NULL, 5, 0, mr), -EINVAL);
	cr_assert_eq(kvfs_upload_write_mr(up, buf, 5, 0, NULL), -EINVAL);
	cr_assert_eq(kvfs_upload_write_mr(up, buf, 5, 0, foreign), -EINVAL);
	cr_assert_eq(kvfs_upload_write_mr(up, other, 5, 0, mr), -EFAULT);
	cr_assert_eq(kvfs_upload_size(up), 0);
	cr_assert_eq(kvfs_upload_write_mr(up, buf, 5, 0, mr), 0);
	cr_assert_eq(kvfs_upload_size(up), 5);
	kvfs_upload_abort(up);
	kvfs_mr_close(foreign);
	kvfs_mr_close(mr);
	kvfs_close(k2);
}

Test(api, null_uploads, .init = setup1, .fini = teardown_all)
{
	kvfs_upload_t *up;
	char b[16];
	struct kvfs_attr a;
	cr_assert_eq(kvfs_upload_open(NULL, "up", 0, &up), -EINVAL);
	cr_assert_eq(kvfs_upload_open(kv, NULL, 0, &up), -EINVAL);
	cr_assert_eq(kvfs_upload_open(kv, "up", 0, NULL), -EINVAL);
	cr_assert_eq(kvfs_upload_write(NULL, "x", 1, 0), -EINVAL);
	cr_assert_eq(kvfs_upload_read(NULL, b, 1, 0), -EINVAL);
	cr_assert_eq(kvfs_upload_truncate(NULL, 0), -EINVAL);
	cr_assert_eq(kvfs_upload_size(NULL), 0);
	cr_assert_eq(kvfs_upload_commit(NULL, NULL, NULL), -EINVAL);

	cr_assert_eq(kvfs_upload_open(kv, "up", 0, &up), 0);
	cr_assert_eq(kvfs_upload_write(up, NULL, 1, 0), -EINVAL);
	cr_assert_eq(kvfs_upload_write(up, NULL, 0, 0), 0);
	cr_assert_eq(kvfs_upload_write(up, "abc", 3, 0), 0);
	cr_assert_eq(kvfs_upload_read(up, NULL, 1, 0), -EINVAL);
	cr_assert_eq(kvfs_upload_read(up, NULL, 0, 0), 0);
	cr_assert_eq(kvfs_upload_commit(up, NULL, &a), 0, "sa may be NULL");
	cr_assert_eq(a.size, 3);
	cr_assert_eq(kvfs_get(kv, "up", b, sizeof(b), 0, NULL), 3);
}

Test(api, null_pins, .init = setup1, .fini = teardown_all)
{
	kvfs_pin_t *p;
	char b[16];
	const void *data;
	kvfs_lease_t *l;
	struct iovec iov[4];
	int n;
	cr_assert_eq(kvfs_put(kv, "k", "value", 5, NULL), 0);
	cr_assert_eq(kvfs_pin_open(NULL, "k", &p, NULL), -EINVAL);
	cr_assert_eq(kvfs_pin_open(kv, NULL, &p, NULL), -EINVAL);
	cr_assert_eq(kvfs_pin_open(kv, "k", NULL, NULL), -EINVAL);
	cr_assert_eq(kvfs_pin_open(kv, "k", &p, NULL), 0, "attr may be NULL");

	cr_assert_eq(kvfs_pin_get(NULL, b, 1, 0), -EINVAL);
	cr_assert_eq(kvfs_pin_get(p, NULL, 1, 0), -EINVAL);
	cr_assert_eq(kvfs_pin_get(p, NULL, 0, 0), 0);
	l = NOT_NULL;
	cr_assert_eq(kvfs_pin_get_lease(NULL, 1, 0, &data, &l), -EINVAL);
	cr_assert_null(l);
	l = NOT_NULL;
	cr_assert_eq(kvfs_pin_get_lease(p, 1, 0, NULL, &l), -EINVAL);
	cr_assert_null(l);
	cr_assert_eq(kvfs_pin_get_lease(p, 1, 0, &data, NULL), -EINVAL);
	l = NOT_NULL;
	cr_assert_eq(kvfs_pin_map(NULL, 1, 0, iov, 4, &n, &l), -EINVAL);
	cr_assert_null(l);
	l = NOT_NULL;
	cr_assert_eq(kvfs_pin_map(p, 1, 0, NULL, 4, &n, &l), -EINVAL);
	cr_assert_null(l);
	l = NOT_NULL;
	cr_assert_eq(kvfs_pin_map(p, 1, 0, iov, 0, &n, &l), -EINVAL, "max is at least 1");
	cr_assert_null(l);
	l = NOT_NULL;
	cr_assert_eq(kvfs_pin_map(p, 1, 0, iov, 4, NULL, &l), -EINVAL);
	cr_assert_null(l);
	cr_assert_eq(kvfs_pin_map(p, 1, 0, iov, 4, &n, NULL), -EINVAL);

	/* The pin still reads. */
	cr_assert_eq(kvfs_pin_get(p, b, sizeof(b), 0), 5);
	cr_assert_eq(kvfs_pin_get_lease(p, 5, 0, &data, &l), 5);
	cr_assert_eq(memcmp(data, "value", 5), 0);
	kvfs_lease_release(l);
	kvfs_pin_close(p);
}

/* The limits come from the server's session, not from the client's kvfs.conf. */
Test(api, limits_are_the_servers, .init = setup1, .fini = teardown_all)
{
	struct kvfs_config *cfg;
	struct kvfs_limits lim = {0};
	char err[256];
	kvfs_t *k2;
	cr_assert_eq(kvfs_config_load(cl.conf, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(kvfs_config_set(cfg, "server.max_value", "1M", err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_eq(kvfs_open_config(cfg, &k2), 0);
	kvfs_config_free(cfg);
	cr_assert_eq(kvfs_limits(k2, -1, &lim), -EINVAL);
	cr_assert_eq(kvfs_limits(k2, 1, &lim), -EINVAL);
	/* The first call on k2: it connects. */
	cr_assert_eq(kvfs_limits(k2, 0, &lim), 0);
	cr_assert_eq(lim.max_key, KVFS_MAX_KEY);
	cr_assert_eq(lim.max_value, 48u << 20, "max_value %llu", (unsigned long long)lim.max_value);
	cr_assert_gt(lim.inline_threshold, 0);
	cr_assert_geq(lim.slot_size, 4096);
	kvfs_close(k2);
}

Test(api, limits_per_server, .init = setup3, .fini = teardown_all)
{
	struct kvfs_limits lim;
	uint64_t rtt = 12345;
	for (int i = 0; i < 3; i++)
		cr_assert_eq(kvfs_limits(kv, i, &lim), 0, "server %d", i);
	cr_assert_eq(kvfs_limits(kv, 3, &lim), -EINVAL);
	h_kill(&cl, 1, SIGKILL);
	/* A fresh client: server 1 was never reached, so asking connects and fails. */
	kvfs_t *k2 = h_client(&cl);
	cr_assert_eq(kvfs_limits(k2, 1, &lim), -EIO);
	cr_assert_eq(kvfs_limits(k2, 0, &lim), 0);
	cr_assert_eq(kvfs_limits(k2, 2, &lim), 0);
	cr_assert_eq(kvfs_ping(k2, 1, &rtt), -EIO);
	cr_assert_eq(rtt, 12345, "*rtt_ns is written only on success");
	kvfs_close(k2);
}

Test(api, server_state, .init = setup3, .fini = teardown_all)
{
	cr_assert_eq(kvfs_server_state(NULL, 0), -EINVAL);
	cr_assert_eq(kvfs_server_state(kv, -1), -EINVAL);
	cr_assert_eq(kvfs_server_state(kv, 3), -EINVAL);
	kvfs_t *k2 = h_client(&cl);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(kvfs_server_state(k2, i), KVFS_SERVER_IDLE, "no session before use");
	cr_assert_eq(kvfs_ping(k2, 0, NULL), 0);
	cr_assert_eq(kvfs_server_state(k2, 0), KVFS_SERVER_UP);
	cr_assert_eq(kvfs_server_state(k2, 1), KVFS_SERVER_IDLE, "asking sends nothing");
	h_kill(&cl, 1, SIGKILL);
	cr_assert_eq(kvfs_ping(k2, 1, NULL), -EIO);
	cr_assert_eq(kvfs_server_state(k2, 1), KVFS_SERVER_DOWN, "the connect failed");
	cr_assert_eq(kvfs_server_state(k2, 0), KVFS_SERVER_UP);
	/* a session that breaks: down once a call has failed on it */
	cr_assert_eq(kvfs_ping(k2, 2, NULL), 0);
	cr_assert_eq(kvfs_server_state(k2, 2), KVFS_SERVER_UP);
	h_kill(&cl, 2, SIGKILL);
	cr_assert_lt(kvfs_ping(k2, 2, NULL), 0);
	kvfs_ping(k2, 2, NULL); /* the reconnect fails too */
	cr_assert_eq(kvfs_server_state(k2, 2), KVFS_SERVER_DOWN);
	kvfs_close(k2);
}

/* kvfs_track: what the callback was told, for the test to wait on. */
struct seen {
	pthread_mutex_t lock;
	char log[4096]; /* "kind:key " per event */
};

static void seen_cb(void *arg, const struct kvfs_inval *ev)
{
	struct seen *s = arg;
	pthread_mutex_lock(&s->lock);
	size_t l = strlen(s->log);
	snprintf(s->log + l, sizeof(s->log) - l, "%d:%s ", ev->kind, ev->key);
	pthread_mutex_unlock(&s->lock);
}

/* Wait up to ms for "kind:key " in the log; then clear the log. */
static int seen_wait(struct seen *s, const char *what, int ms)
{
	int64_t end = h_now_ms() + ms;
	for (;;) {
		pthread_mutex_lock(&s->lock);
		int found = strstr(s->log, what) != NULL;
		if (found || h_now_ms() > end)
			s->log[0] = 0;
		pthread_mutex_unlock(&s->lock);
		if (found)
			return 1;
		if (h_now_ms() > end)
			return 0;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
}

static int count_cb(void *arg, const struct kvfs_entry *e)
{
	(void)e;
	(*(int *)arg)++;
	return 0;
}

Test(api, track_tells_changes_losses_and_returns, .init = setup1, .fini = teardown_all)
{
	static struct seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct kvfs_attr a;
	int n = 0;
	cr_assert_eq(kvfs_track(NULL, seen_cb, &s), -EINVAL);
	cr_assert_eq(kvfs_track(kv, NULL, &s), -EINVAL);
	cr_assert_eq(kvfs_track_state(kv), 0, "0 without kvfs_track");
	cr_assert_eq(kvfs_track(kv, seen_cb, &s), 0);
	cr_assert_eq(kvfs_track(kv, seen_cb, &s), -EBUSY);
	kvfs_t *w = h_client(&cl); /* the other writer: not tracking */
	cr_assert_eq(kvfs_put(w, "t/a", "1", 1, NULL), 0);
	cr_assert_eq(kvfs_stat(kv, "t/a", &a), 0); /* connects: tracked from the first call */
	cr_assert(seen_wait(&s, "5: ", 1000), "BACK when the session tracks");
	uint64_t st = kvfs_track_state(kv);
	cr_assert_eq(st & 1, 1, "coherent: every server tracks");
	cr_assert_eq(kvfs_put(w, "t/a", "22", 2, NULL), 0);
	cr_assert(seen_wait(&s, "1:t/a ", 1000), "a change of a key read: CHANGED");
	cr_assert_neq(kvfs_track_state(kv), st, "the state moved");
	/* told once: a second change without a read in between says nothing */
	cr_assert_eq(kvfs_put(w, "t/a", "333", 3, NULL), 0);
	cr_assert_not(seen_wait(&s, "1:t/a ", 200));
	cr_assert_eq(kvfs_stat(kv, "t/a", &a), 0);
	cr_assert_eq(kvfs_delete(w, "t/a"), 0);
	cr_assert(seen_wait(&s, "2:t/a ", 1000), "a delete: GONE");
	/* its own writes: not told */
	cr_assert_eq(kvfs_put(kv, "t/own", "x", 1, NULL), 0);
	cr_assert_eq(kvfs_stat(kv, "t/own", &a), 0);
	cr_assert_eq(kvfs_put(kv, "t/own", "yy", 2, NULL), 0);
	cr_assert_not(seen_wait(&s, "t/own", 200));
	/* a listed prefix: a key added under it */
	cr_assert_geq(kvfs_list(kv, "t/", '/', count_cb, &n), 0);
	cr_assert_eq(kvfs_put(w, "t/new", "n", 1, NULL), 0);
	cr_assert(seen_wait(&s, "1:t/ ", 1000), "a key added under a listed prefix");
	/* the server dies: LOST at once (no call needed), then BACK by itself */
	h_kill(&cl, 0, SIGKILL);
	cr_assert(seen_wait(&s, "4: ", 1000), "LOST without a call");
	cr_assert_eq(kvfs_track_state(kv) & 1, 0, "not coherent while lost");
	h_restart(&cl, 0);
	cr_assert(seen_wait(&s, "5: ", 6000), "BACK by the background reconnect");
	cr_assert_eq(kvfs_track_state(kv) & 1, 1);
	kvfs_close(w);
}
