/*
 * Integration: clients that hog a server. Raw clients that post GETs and
 * stop polling (a stopped process), and uploads whose truncates and KEEP
 * opens do long work, while a well-behaved client measures its latency.
 * Part of itest_hostile (hostile.h).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hostile.h"

/*
 * Clients that post GETs of a large value and then stop polling (a
 * SIGSTOPped process: its endpoint makes no progress, and on tcp the RMA
 * into it cannot finish). Each holds no more than its share of the server's
 * receive buffers, the server does not spin on them, a second client keeps
 * being served, and after server.stall_timeout_ms the stalled sessions are
 * dropped and their buffers replaced, so further stalled clients cannot
 * starve the others either.
 */
static void stall_start(void)
{
	struct h_opts o = {.stall_ms = 2000};
	h_start(&cl, &o);
	kv = h_client(&cl);
}

#define BIG (512 << 10)

/* Post GETs of "big" until the provider or the server stops taking them. */
static void post_gets_and_stop(struct raw *r)
{
	struct wire_req q = {.op = OP_GET, .key = (const uint8_t *)"big", .klen = 3, .len = BIG};
	q.buf = (struct wire_desc){REGION_RECV, 0, BIG};
	q.session = r->rd.session;
	q.token = r->rd.token;
	uint8_t *tx = r->msgs + r->msg_size;
	int n = wire_req_encode(tx, r->msg_size, &q);
	cr_assert_gt(n, 0);
	int posted = 0;
	int64_t until = h_now_ms() + 3000;
	while (posted < 400 && h_now_ms() < until) {
		int ret =
		    fab_post_send(r->ep, tx, (size_t)n, fab_mr_desc(r->mr_msg), r->srv, &r->tx_ctx);
		if (ret == -EAGAIN) {
			struct fab_cqe e[16];
			fab_poll(r->ep, e, 16, 0);
			continue;
		}
		cr_assert_eq(ret, 0);
		posted++;
	}
	cr_log_info("posted %d GETs, then stopped polling", posted);
}

/* The longest of 50 rounds of the good client, in ms. */
static int64_t good_rounds(int base)
{
	int64_t worst = 0;
	for (int i = 0; i < 50; i++) {
		int64_t t = h_now_ms();
		good_client_still_served(base + i);
		if (h_now_ms() - t > worst)
			worst = h_now_ms() - t;
	}
	return worst;
}

/* CPU seconds (user + system) the server has used, in ms. */
static int64_t server_cpu_ms(void)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)cl.pids[0]);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *p = strrchr(buf, ')');
	unsigned long long ut = 0, st = 0;
	cr_assert_eq(
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st), 2);
	return (int64_t)(ut + st) * 1000 / sysconf(_SC_CLK_TCK);
}

Test(hostile, stalled_clients_leave_others_served, .init = stall_start, .fini = stop,
     .timeout = 120)
{
	uint8_t *val = malloc(BIG);
	h_fill(val, BIG, 7, 0);
	cr_assert_eq(kvfs_put(kv, "big", val, BIG, NULL), 0);
	free(val);

	struct raw r[3];
	raw_connect(&r[0]);
	raw_connect(&r[1]);
	post_gets_and_stop(&r[0]);
	post_gets_and_stop(&r[1]);
	int64_t worst = good_rounds(1000);
	cr_log_info("two stalled clients: worst round trip of the other: %lld ms",
		    (long long)worst);
	cr_assert_lt(worst, 1000);
	int64_t cpu0 = server_cpu_ms(), t0 = h_now_ms();
	usleep(1000 * 1000);
	int64_t cpu = server_cpu_ms() - cpu0, wall = h_now_ms() - t0;
	cr_log_info("server CPU while they stall: %lld ms in %lld ms", (long long)cpu,
		    (long long)wall);
	cr_assert_lt(cpu, wall / 3, "the server spins on stalled requests");

	/* Their bootstrap channels close (the endpoints stay, unpolled): both sessions go. */
	close(r[0].fd);
	close(r[1].fd);
	struct kvfs_stats st = {0};
	t0 = h_now_ms();
	while (h_now_ms() - t0 < 6000) {
		cr_assert_eq(kvfs_server_stats(kv, 0, &st), 0);
		if (st.sessions == 1)
			break;
		usleep(100 * 1000);
	}
	cr_assert_eq(st.sessions, 1, "stalled sessions still counted after the stall timeout");
	cr_log_info("dropped requests %llu, stalled sessions %llu",
		    (unsigned long long)st.dropped_requests,
		    (unsigned long long)st.stalled_sessions);
	if (strcmp(h_provider(), "tcp") == 0) {
		/* shm's RMA is a copy by the server alone: nothing stalls there */
		cr_assert_geq(st.stalled_sessions, 2, "kvfsctl stats counts the stalled sessions");
		cr_assert_gt(st.dropped_requests, 0, "kvfsctl stats counts the dropped requests");
	}
	cr_log_info("stalled sessions gone after %lld ms", (long long)(h_now_ms() - t0));

	/* Their buffers were replaced: one more stalled client leaves room for the good one. */
	raw_connect(&r[2]);
	post_gets_and_stop(&r[2]);
	worst = good_rounds(2000);
	cr_log_info("a third stalled client: worst round trip of the other: %lld ms",
		    (long long)worst);
	cr_assert_lt(worst, 1000);
	for (int i = 0; i < 3; i++) {
		if (i < 2)
			r[i].fd = -1;
		raw_close(&r[i]);
	}
}

/*
 * Long work on an upload (a truncate to max_value zeroes it all, a KEEP open
 * copies the old value) is done outside the store lock: a client on another
 * endpoint (the bootstrap channel's direct requests run on their own thread)
 * keeps its latency meanwhile, far under the time one such call takes.
 */
struct lat_probe {
	kvfs_t *kv;
	atomic_int stop;
	int64_t worst_us;
	int n;
};

static void *probe_gets(void *arg)
{
	struct lat_probe *p = arg;
	char back[32];
	while (!atomic_load(&p->stop) && p->n < 900) { /* under the upgrade to fabric (1000) */
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		ssize_t n = kvfs_get(p->kv, "probe", back, sizeof(back), 0, NULL);
		clock_gettime(CLOCK_MONOTONIC, &b);
		if (n != 5)
			break;
		int64_t us = (b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000;
		if (us > p->worst_us)
			p->worst_us = us;
		p->n++;
		usleep(2000);
	}
	return NULL;
}

static void big_start(void)
{
	struct h_opts o = {.memory = "640M", .max_value = "256M"};
	h_start(&cl, &o);
	kv = h_client(&cl);
}

Test(hostile, long_upload_work_leaves_the_store_free, .init = big_start, .fini = stop,
     .timeout = 180)
{
	uint64_t max = 256ull << 20;
	cr_assert_eq(kvfs_put(kv, "probe", "hello", 5, NULL), 0);
	kvfs_upload_t *up;
	cr_assert_eq(kvfs_upload_open(kv, "kept", 0, &up), 0);
	cr_assert_eq(kvfs_upload_truncate(up, max / 2), 0);
	cr_assert_eq(kvfs_upload_commit(up, NULL, NULL), 0);

	struct lat_probe p = {0};
	cr_assert_eq(kvfs_open_flags(cl.conf, KVFS_OPEN_LAZY_FABRIC, &p.kv), 0);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, probe_gets, &p), 0);
	int64_t slowest_call = 0;
	for (int i = 0; i < 6; i++) {
		int64_t t0 = h_now_ms();
		if (i % 2 == 0) {
			cr_assert_eq(kvfs_upload_open(kv, "grow", 0, &up), 0);
			cr_assert_eq(kvfs_upload_truncate(up, max), 0); /* zeroes 256 MiB */
		} else {
			cr_assert_eq(kvfs_upload_open(kv, "kept", KVFS_UPLOAD_KEEP, &up),
				     0); /* copies 128 MiB */
		}
		int64_t d = h_now_ms() - t0;
		if (d > slowest_call)
			slowest_call = d;
		kvfs_upload_abort(up);
		usleep(20 * 1000);
	}
	atomic_store(&p.stop, 1);
	pthread_join(t, NULL);
	kvfs_close(p.kv);
	cr_log_info("slowest truncate/keep-open: %lld ms; the other client's worst GET: %lld us "
		    "(%d GETs)",
		    (long long)slowest_call, (long long)p.worst_us, p.n);
	cr_assert_gt(p.n, 10, "the probe client stopped early");
	cr_assert_lt(p.worst_us, slowest_call * 1000 / 2,
		     "a GET on another endpoint waited for the upload's long work");
}

/*
 * A client slow to send SETUP after WELCOME (registering large buffers takes
 * seconds on verbs, and on a loaded host) is waited for past the direct
 * phase's idle limit (WIRE_FIRST_FRAME_MS, not WIRE_DIRECT_IDLE_MS): once
 * such a client found its connection reset by the time it sent SETUP.
 */
Test(hostile, slow_setup_is_waited_for, .init = start, .fini = stop, .timeout = 60)
{
	struct raw r;
	raw_setup_delay_ms = WIRE_DIRECT_IDLE_MS + 500;
	raw_connect(&r); /* asserts that READY came */
	raw_setup_delay_ms = 0;
	raw_close(&r);
	good_client_still_served(3000);
}
