/*
 * Integration: failures. A killed server gives errors within the timeout and
 * works again after a restart without reopening the client; SIGTERM exits
 * cleanly; a wrong secret gets nothing; a client's death frees its uploads;
 * a frozen server does not hold up calls to the others.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct h_cluster cl;
static kvfs_t *kv;

static void stop(void)
{
	if (kv)
		kvfs_close(kv);
	kv = NULL;
	h_stop(&cl);
}

static void start_short_timeout(void)
{
	struct h_opts o = {.timeout_ms = 1000, .memory = "512M"};
	h_start(&cl, &o);
	kv = h_client(&cl);
}

Test(failure, killed_server_errors_in_time_then_recovers, .init = start_short_timeout, .fini = stop,
     .timeout = 60)
{
	char b[8];
	cr_assert_eq(kvfs_put(kv, "k", "v", 1, NULL), 0);
	h_kill(&cl, 0, SIGKILL);
	int64_t t0 = h_now_ms();
	ssize_t n = kvfs_get(kv, "k", b, sizeof(b), 0, NULL);
	int64_t dt = h_now_ms() - t0;
	cr_assert(n == -EIO || n == -ETIMEDOUT, "get on a dead server: %zd", n);
	cr_assert_leq(dt, 1000 + 500, "took %lld ms", (long long)dt);
	t0 = h_now_ms();
	n = kvfs_put(kv, "k2", "v", 1, NULL);
	cr_assert(n == -EIO || n == -ETIMEDOUT);
	cr_assert_leq(h_now_ms() - t0, 1500);

	h_restart(&cl, 0);
	/* A restarted server is empty (it is a cache) but serves at once. */
	cr_assert_eq(kvfs_get(kv, "k", b, sizeof(b), 0, NULL), -ENOENT);
	cr_assert_eq(kvfs_put(kv, "k", "w", 1, NULL), 0);
	cr_assert_eq(kvfs_get(kv, "k", b, sizeof(b), 0, NULL), 1);
	cr_assert_eq(b[0], 'w');
}

/*
 * libfabric 1.17's shm: every process that sends to a server takes the lock
 * of the server's shared-memory region, and so does the server while it
 * works through its queue. A server SIGKILLed while holding it would leave
 * the client's next send spinning in libfabric forever. The client's
 * watchdog releases the lock once the server is gone. The unlucky kill is
 * made certain here: a child takes that lock and is killed, then the server.
 */
Test(failure, server_killed_holding_shm_lock, .init = start_short_timeout, .fini = stop,
     .timeout = 60)
{
	char b[8], path[300] = "", prefix[64];
	if (strcmp(h_provider(), "shm") != 0) {
		stop(); /* a skipped test runs no .fini */
		cr_skip_test("shm only: the region lock is the shm provider's");
	}
	cr_assert_eq(kvfs_put(kv, "k", "v", 1, NULL), 0); /* connected */
	snprintf(prefix, sizeof(prefix), "kvfs_%d_", (int)cl.pids[0]);
	DIR *d = opendir("/dev/shm");
	cr_assert_not_null(d);
	for (struct dirent *de; (de = readdir(d));)
		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
			snprintf(path, sizeof(path), "/dev/shm/%s", de->d_name);
	closedir(d);
	cr_assert(path[0], "no shm region of the server in /dev/shm");
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		int fd = open(path, O_RDWR);
		char *m = fd < 0 ? MAP_FAILED
				 : mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED)
			_exit(1);
		pthread_spin_lock((pthread_spinlock_t *)(m + 24)); /* 1.17: the region's lock */
		raise(SIGKILL);
		_exit(2);
	}
	int st;
	cr_assert_eq(waitpid(child, &st, 0), child);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the locking child failed");
	h_kill(&cl, 0, SIGKILL);

	int64_t t0 = h_now_ms();
	ssize_t n = kvfs_get(kv, "k", b, sizeof(b), 0, NULL);
	int64_t dt = h_now_ms() - t0;
	cr_assert(n == -EIO || n == -ETIMEDOUT, "get on a dead server: %zd", n);
	cr_assert_leq(dt, 1000 + 1000, "took %lld ms (timeout 1000 ms)", (long long)dt);
	h_restart(&cl, 0);
	cr_assert_eq(kvfs_put(kv, "k", "w", 1, NULL), 0);
	cr_assert_eq(kvfs_get(kv, "k", b, sizeof(b), 0, NULL), 1);
	cr_assert_eq(b[0], 'w');
}

Test(failure, stopped_server_mid_large_transfer, .init = start_short_timeout, .fini = stop,
     .timeout = 60)
{
	size_t size = 256u << 20;
	uint8_t *v = malloc(size);
	h_fill(v, size, 3, 0);
	cr_assert_eq(kvfs_put(kv, "big", v, size, NULL), 0);
	/*
	 * Silent, not dead: only the timeout can tell. On tcp the server is
	 * frozen mid-transfer. On shm it is frozen while idle: libfabric's shm
	 * provider takes locks in memory it shares with the peer, so a server
	 * frozen inside an RMA stalls the client's progress until it resumes
	 * (a killed one does not; see the README's limits).
	 */
	int shm = strcmp(h_provider(), "shm") == 0;
	if (shm)
		kill(cl.pids[0], SIGSTOP);
	pid_t child = shm ? 1 : fork();
	if (child == 0) {
		usleep(30000);
		kill(cl.pids[0], SIGSTOP);
		_exit(0);
	}
	int64_t dt = 0;
	ssize_t n = 0;
	for (int i = 0; i < 50 && n >= 0; i++) {
		int64_t t0 = h_now_ms();
		n = kvfs_get(kv, "big", v, size, 0, NULL);
		dt = h_now_ms() - t0;
	}
	if (!shm)
		waitpid(child, NULL, 0);
	cr_assert(n == -EIO || n == -ETIMEDOUT, "got %zd", n);
	cr_assert_leq(dt, 1000 + 500, "the failing get took %lld ms", (long long)dt);
	/*
	 * It timed out, so it is down: the next calls fail at once instead of
	 * each waiting out the timeout again (the probe thread retries it).
	 */
	cr_assert_eq(kvfs_server_state(kv, 0), KVFS_SERVER_DOWN);
	for (int i = 0; i < 3; i++) {
		int64_t t0 = h_now_ms();
		int ret = kvfs_stat(kv, "big", NULL);
		dt = h_now_ms() - t0;
		cr_assert_eq(ret, -EIO, "a call to the down server: %s", kvfs_strerror(ret));
		cr_assert_leq(dt, 100, "a call to the down server took %lld ms, not at once",
			      (long long)dt);
	}
	kill(cl.pids[0], SIGCONT);
	/* The probe reconnects by itself once the server answers again (bounded wait). */
	int ret = -1;
	int64_t t0 = h_now_ms();
	while (ret && h_now_ms() - t0 < 10000) {
		ret = kvfs_stat(kv, "big", NULL);
		if (ret)
			usleep(50 * 1000);
	}
	cr_assert_eq(ret, 0, "no recovery after SIGCONT: %s", kvfs_strerror(ret));
	cr_log_info("up again %lld ms after SIGCONT", (long long)(h_now_ms() - t0));
	n = kvfs_get(kv, "big", v, size, 0, NULL);
	cr_assert_eq(n, (ssize_t)size, "get after recovery: %s",
		     n < 0 ? kvfs_strerror((int)n) : "short");
	cr_assert(h_check(v, size, 3, 0));
	free(v);
}

Test(failure, sigterm_exits_zero, .fini = stop, .timeout = 30)
{
	h_start(&cl, NULL);
	kv = h_client(&cl);
	cr_assert_eq(kvfs_put(kv, "a", "b", 1, NULL), 0);
	int st = h_kill(&cl, 0, SIGTERM);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}

Test(failure, wrong_secret_refused, .fini = stop, .timeout = 30)
{
	struct h_opts o = {.secret = "right horse battery", .client_secret = "wrong horse battery"};
	h_start(&cl, &o);
	kv = h_client(&cl);
	char b;
	cr_assert_eq(kvfs_put(kv, "k", "v", 1, NULL), -EACCES);
	cr_assert_eq(kvfs_get(kv, "k", &b, 1, 0, NULL), -EACCES);
	cr_assert(h_alive(&cl, 0));
	kvfs_close(kv);
	/* The right secret works on the same server. */
	kvfs_t *good;
	struct kvfs_config *cfg;
	char err[256];
	cr_assert_eq(kvfs_config_load(cl.server_conf, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(kvfs_open_config(cfg, &good), 0);
	kvfs_config_free(cfg);
	cr_assert_eq(kvfs_put(good, "k", "v", 1, NULL), 0);
	cr_assert_eq(kvfs_get(good, "k", &b, 1, 0, NULL), 1);
	kv = good;
}

Test(failure, secret_required_but_missing, .fini = stop, .timeout = 30)
{
	struct h_opts o = {.secret = "s3cret-s3cret"};
	h_start(&cl, &o);
	struct kvfs_config *cfg;
	char err[256];
	cr_assert_eq(kvfs_config_load(cl.conf, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(kvfs_config_set(cfg, "cluster.secret_file", "", err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_eq(kvfs_open_config(cfg, &kv), 0);
	kvfs_config_free(cfg);
	cr_assert_eq(kvfs_put(kv, "k", "v", 1, NULL), -EACCES);
}

Test(failure, client_death_frees_uploads, .fini = stop, .timeout = 60)
{
	struct h_opts o = {.memory = "64M"};
	h_start(&cl, &o);
	kv = h_client(&cl);
	struct kvfs_stats before, after;
	cr_assert_eq(kvfs_server_stats(kv, 0, &before), 0);
	pid_t child = fork();
	if (child == 0) {
		kvfs_t *k2;
		if (kvfs_open(cl.conf, &k2))
			_exit(1);
		kvfs_upload_t *up;
		if (kvfs_upload_open(k2, "pending", 0, &up))
			_exit(2);
		static uint8_t buf[8u << 20];
		for (int i = 0; i < 4; i++)
			if (kvfs_upload_write(up, buf, sizeof(buf), (uint64_t)i * sizeof(buf)))
				_exit(3);
		_exit(0); /* dies with the upload open */
	}
	int st;
	waitpid(child, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	int64_t deadline = h_now_ms() + 5000;
	do {
		usleep(50000);
		cr_assert_eq(kvfs_server_stats(kv, 0, &after), 0);
	} while (after.pool_used > before.pool_used && h_now_ms() < deadline);
	cr_assert_leq(after.pool_used, before.pool_used, "upload pages not freed: %llu > %llu",
		      (unsigned long long)after.pool_used, (unsigned long long)before.pool_used);
	cr_assert_eq(kvfs_stat(kv, "pending", NULL), -ENOENT);
	cr_assert_eq(after.sessions, 1);
}

/*
 * One server frozen (SIGSTOP, so its port still accepts) must not hold up
 * the others: while threads wait out the timeout on calls to its keys (in
 * the handshake of a fresh connection, or in the registration of memory on
 * an established one), zero-copy calls to a healthy server's keys, with
 * their own registration and handshake, take what they always take. And
 * the waiters wait one timeout, not one each: those that waited for
 * another's handshake fail with it.
 */
#define FROZEN_TIMEOUT_MS 4000
#define NWAITERS	  3

static int frozen = -1;

static struct waiter {
	pthread_t t;
	int started;
	int zero_copy; /* kvfs_mr_reg + kvfs_get_mr, else kvfs_get */
	char key[32];
	ssize_t ret;
	int64_t ms; /* how long its call took */
	_Atomic int done;
} waiters[NWAITERS];

static void start_two_frozen_timeout(void)
{
	struct h_opts o = {.servers = 2, .timeout_ms = FROZEN_TIMEOUT_MS};
	h_start(&cl, &o);
	kv = h_client(&cl);
}

/* Join the waiters first (they end by their timeout): kvfs_close needs no calls running. */
static void join_waiters(void)
{
	for (int i = 0; i < NWAITERS; i++) {
		if (waiters[i].started)
			pthread_join(waiters[i].t, NULL);
		waiters[i].started = 0;
	}
}

static void thaw_and_stop(void)
{
	join_waiters();
	if (frozen >= 0)
		kill(cl.pids[frozen], SIGCONT);
	frozen = -1;
	stop();
}

/* A key of server idx. */
static void key_of(int idx, const char *prefix, char *out, size_t n)
{
	for (int i = 0;; i++) {
		snprintf(out, n, "%s-%d", prefix, i);
		if (kvfs_server_of(kv, out) == idx)
			return;
	}
}

static void *wait_on_frozen(void *arg)
{
	struct waiter *w = arg;
	size_t len = 1u << 20;
	uint8_t *buf = malloc(len);
	kvfs_mr_t *mr = NULL;
	int64_t t0 = h_now_ms();
	ssize_t n = buf ? 0 : -ENOMEM;
	if (!n && w->zero_copy)
		n = kvfs_mr_reg(kv, buf, len, &mr);
	if (!n && w->zero_copy)
		n = kvfs_get_mr(kv, w->key, buf, len, 0, mr, NULL);
	else if (!n)
		n = kvfs_get(kv, w->key, buf, len, 0, NULL);
	w->ms = h_now_ms() - t0;
	kvfs_mr_close(mr);
	free(buf);
	w->ret = n;
	atomic_store(&w->done, 1);
	return NULL;
}

/* Freeze server `frozen`, start the waiters on its keys, time a healthy server's zero-copy calls.
 */
static void zero_copy_beside_frozen(int zero_copy)
{
	char key[32];
	size_t len = 1u << 20; /* above every inline threshold: by RMA, registered */
	uint8_t *v = malloc(len);
	cr_assert_not_null(v);
	frozen = 1;
	key_of(0, "healthy", key, sizeof(key));
	cr_assert_eq(kill(cl.pids[frozen], SIGSTOP), 0);
	for (int i = 0; i < NWAITERS; i++) {
		struct waiter *w = &waiters[i];
		char prefix[16];
		snprintf(prefix, sizeof(prefix), "frozen%d", i);
		key_of(frozen, prefix, w->key, sizeof(w->key));
		w->zero_copy = zero_copy;
		atomic_store(&w->done, 0);
		cr_assert_eq(pthread_create(&w->t, NULL, wait_on_frozen, w), 0);
		w->started = 1;
	}
	usleep(300 * 1000); /* the waiters are inside their calls by now */

	int64_t t0 = h_now_ms();
	kvfs_mr_t *mr;
	h_fill(v, len, 11, 0);
	cr_assert_eq(kvfs_mr_reg(kv, v, len, &mr), 0);
	int ret = kvfs_put_mr(kv, key, v, len, mr, NULL);
	cr_assert_eq(ret, 0, "put_mr: %s", kvfs_strerror(ret));
	memset(v, 0, len);
	ssize_t n = kvfs_get_mr(kv, key, v, len, 0, mr, NULL);
	cr_assert_eq(n, (ssize_t)len, "get_mr: %s", n < 0 ? kvfs_strerror((int)n) : "short");
	kvfs_mr_close(mr);
	int64_t dt = h_now_ms() - t0;
	int waiting = 0;
	for (int i = 0; i < NWAITERS; i++)
		waiting += !atomic_load(&waiters[i].done);

	join_waiters(); /* they wait out the timeout */
	kill(cl.pids[frozen], SIGCONT);
	frozen = -1;
	cr_assert(h_check(v, len, 11, 0));
	cr_assert_eq(waiting, NWAITERS, "a call to the frozen server ended first");
	cr_assert_leq(dt, FROZEN_TIMEOUT_MS / 4,
		      "zero-copy calls beside a frozen server took %lld ms", (long long)dt);
	for (int i = 0; i < NWAITERS; i++) {
		const struct waiter *w = &waiters[i];
		cr_assert(w->ret == -ETIMEDOUT || w->ret == -EIO,
			  "call %d to the frozen server: %zd", i, w->ret);
		cr_assert_leq(
		    w->ms, FROZEN_TIMEOUT_MS * 3 / 2,
		    "call %d to the frozen server took %lld ms (%d waiters, %d ms timeout)", i,
		    (long long)w->ms, NWAITERS, FROZEN_TIMEOUT_MS);
	}
	free(v);
}

Test(failure, frozen_server_handshake_holds_up_no_other, .init = start_two_frozen_timeout,
     .fini = thaw_and_stop, .timeout = 60)
{
	zero_copy_beside_frozen(0); /* a fresh client: both connect during the test */
}

Test(failure, frozen_server_registration_holds_up_no_other, .init = start_two_frozen_timeout,
     .fini = thaw_and_stop, .timeout = 60)
{
	char k[32];
	for (int i = 0; i < 2; i++) { /* both connected */
		key_of(i, "warm", k, sizeof(k));
		cr_assert_eq(kvfs_put(kv, k, "v", 1, NULL), 0);
	}
	zero_copy_beside_frozen(1);
}
