/*
 * Unit tests of the fabric module: two endpoints in one process exchange a
 * message and do RMA both ways with registered memory (on shm and tcp), and
 * stale shm regions of dead processes are swept.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fabric/fabric.h"

static int wait_for(struct fab_ep *a, struct fab_ep *b, struct fab_ctx *want, struct fab_cqe *got)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct fab_cqe e[8];
		struct fab_ep *eps[2] = {a, b};
		for (int k = 0; k < 2; k++) {
			int n = fab_poll(eps[k], e, 8, 0);
			for (int i = 0; i < n; i++)
				if (e[i].ctx == want) {
					*got = e[i];
					return 0;
				}
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 5)
			return -ETIMEDOUT;
	}
}

/* Post with retries: -EAGAIN means "drive progress and try again". */
#define POST(a, b, call)                                                                           \
	__extension__({                                                                            \
		int r_;                                                                            \
		struct fab_cqe e_[8];                                                              \
		for (int i_ = 0; (r_ = (call)) == -EAGAIN && i_ < 100000; i_++) {                  \
			fab_poll(a, e_, 8, 0);                                                     \
			fab_poll(b, e_, 8, 0);                                                     \
		}                                                                                  \
		r_;                                                                                \
	})

static void exchange(const char *prov)
{
	struct fab_ep *srv, *cli;
	const char *node = strcmp(prov, "tcp") == 0 ? "127.0.0.1" : NULL;
	struct fab_open_args a = {.provider = prov, .node = node};
	cr_assert_eq(fab_open(&srv, &a), 0, "%s server endpoint", prov);
	cr_assert_eq(fab_open(&cli, &a), 0, "%s client endpoint", prov);
	cr_assert_str_neq(fab_provider(srv), "");
	cr_assert_geq(fab_iov_limit(srv), 1);

	uint8_t name[FAB_NAME_MAX];
	size_t len = sizeof(name);
	fab_addr_t to_srv, to_cli;
	cr_assert_eq(fab_getname(srv, name, &len), 0);
	cr_assert_eq(fab_av_insert(cli, name, 0, &to_srv), -EINVAL, "an empty address");
	cr_assert_eq(fab_av_insert(cli, name, FAB_NAME_MAX + 1, &to_srv), -EINVAL,
		     "an address longer than any");
	cr_assert_eq(fab_av_insert(cli, name, len, &to_srv), 0);
	len = sizeof(name);
	cr_assert_eq(fab_getname(cli, name, &len), 0);
	cr_assert_eq(fab_av_insert(srv, name, len, &to_cli), 0);

	size_t sz = 1 << 20;
	uint8_t *local = aligned_alloc(4096, sz), *remote = aligned_alloc(4096, sz);
	uint8_t *msgs = aligned_alloc(4096, 8192);
	for (size_t i = 0; i < sz; i++) {
		local[i] = (uint8_t)(i * 7);
		remote[i] = 0;
	}
	struct fab_mr *lmr, *rmr, *smr, *cmr;
	cr_assert_eq(fab_mr_reg(srv, local, sz, FAB_ACC_WRITE | FAB_ACC_READ, &lmr), 0);
	cr_assert_eq(fab_mr_reg(cli, remote, sz, FAB_ACC_REMOTE_WRITE | FAB_ACC_REMOTE_READ, &rmr),
		     0);
	cr_assert_eq(fab_mr_reg(srv, msgs, 4096, FAB_ACC_RECV, &smr), 0);
	cr_assert_eq(fab_mr_reg(cli, msgs + 4096, 4096, FAB_ACC_SEND, &cmr), 0);

	/* A message client -> server. */
	struct fab_ctx rctx, sctx, wctx, rdctx;
	struct fab_cqe got;
	cr_assert_eq(fab_post_recv(srv, msgs, 4096, fab_mr_desc(smr), &rctx), 0);
	memcpy(msgs + 4096, "hello fabric", 12);
	cr_assert_eq(
	    POST(srv, cli, fab_post_send(cli, msgs + 4096, 12, fab_mr_desc(cmr), to_srv, &sctx)),
	    0);
	cr_assert_eq(wait_for(srv, cli, &rctx, &got), 0, "no receive completion");
	cr_assert_eq(got.err, 0);
	cr_assert_eq(got.len, 12);
	cr_assert_eq(memcmp(msgs, "hello fabric", 12), 0);

	/* Server-initiated RMA write of two iov pieces into the client's region. */
	struct iovec iov[2] = {{local, 4096}, {local + 4096, sz / 2 - 4096}};
	void *desc[2] = {fab_mr_desc(lmr), fab_mr_desc(lmr)};
	uint64_t base = fab_mr_remote_base(rmr);
	cr_assert_eq(
	    POST(srv, cli,
		 fab_post_write(srv, iov, desc, 2, to_cli, base + 100, fab_mr_key(rmr), &wctx)),
	    0);
	cr_assert_eq(wait_for(srv, cli, &wctx, &got), 0, "no write completion");
	cr_assert_eq(got.err, 0);
	/* As kvfs does: a message sent after the write's completion arrives after its data. */
	struct fab_mr *smr2, *cmr2;
	struct fab_ctx r2, s2;
	cr_assert_eq(fab_mr_reg(srv, msgs + 4096, 4096, FAB_ACC_SEND, &smr2), 0);
	cr_assert_eq(fab_mr_reg(cli, msgs, 4096, FAB_ACC_RECV, &cmr2), 0);
	cr_assert_eq(fab_post_recv(cli, msgs, 4096, fab_mr_desc(cmr2), &r2), 0);
	cr_assert_eq(
	    POST(srv, cli, fab_post_send(srv, msgs + 4096, 4, fab_mr_desc(smr2), to_cli, &s2)), 0);
	cr_assert_eq(wait_for(cli, srv, &r2, &got), 0, "no reply after the write");
	cr_assert_eq(memcmp(remote + 100, local, sz / 2), 0, "reply overtook the written data");
	cr_assert_eq(remote[99], 0);

	/* ...and a read back out of it into the other half. */
	struct iovec riov = {local + sz / 2, sz / 2};
	memset(local + sz / 2, 0, sz / 2);
	cr_assert_eq(
	    POST(srv, cli,
		 fab_post_read(srv, &riov, desc, 1, to_cli, base + 100, fab_mr_key(rmr), &rdctx)),
	    0);
	cr_assert_eq(wait_for(srv, cli, &rdctx, &got), 0, "no read completion");
	cr_assert_eq(got.err, 0);
	cr_assert_eq(memcmp(local + sz / 2, local, sz / 2), 0);

	fab_mr_close(lmr);
	fab_mr_close(rmr);
	fab_mr_close(smr);
	fab_mr_close(cmr);
	fab_mr_close(smr2);
	fab_mr_close(cmr2);
	fab_close(cli);
	fab_close(srv);
	free(local);
	free(remote);
	free(msgs);
}

Test(fabric, message_and_rma_shm)
{
	exchange("shm");
}

Test(fabric, message_and_rma_tcp)
{
	exchange("tcp");
}

Test(fabric, unknown_provider_is_enodev)
{
	struct fab_ep *e;
	struct fab_open_args a = {.provider = "no-such-provider"};
	cr_assert_eq(fab_open(&e, &a), -ENODEV);
	cr_assert_not(fab_provider_available("no-such-provider"));
	cr_assert(fab_provider_available("tcp"));
}

Test(fabric, stale_shm_regions_of_dead_processes_are_swept)
{
	pid_t dead = fork();
	if (dead == 0)
		_exit(0);
	waitpid(dead, NULL, 0); /* now no process has that pid (until reused) */
	struct stat ns;
	cr_assert_eq(stat("/proc/self/ns/pid", &ns), 0);
	char stale[128], stale_ns[128], alive[128], foreign[128];
	snprintf(stale, sizeof(stale), "/dev/shm/kvfs_%d_deadbeef:0:0", (int)dead);
	snprintf(stale_ns, sizeof(stale_ns), "/dev/shm/kvfs_%d_deadbee0_%lx:0:0", (int)dead,
		 (unsigned long)ns.st_ino);
	snprintf(alive, sizeof(alive), "/dev/shm/kvfs_%d_cafef00d:0:0", (int)getpid());
	/* That pid in another pid namespace (a container): not ours to judge. */
	snprintf(foreign, sizeof(foreign), "/dev/shm/kvfs_%d_f00dcafe_%lx:0:0", (int)dead,
		 (unsigned long)ns.st_ino + 1);
	const char *made[] = {stale, stale_ns, alive, foreign};
	for (int i = 0; i < 4; i++) {
		int fd = open(made[i], O_CREAT | O_RDWR, 0600);
		cr_assert_geq(fd, 0);
		close(fd);
	}
	struct fab_ep *e;
	struct fab_open_args a = {.provider = "shm"};
	cr_assert_eq(fab_open(&e, &a), 0);
	struct stat st;
	cr_assert_eq(stat(stale, &st), -1, "the dead process's region is still there");
	cr_assert_eq(stat(stale_ns, &st), -1, "the dead process's tagged region is still there");
	cr_assert_eq(stat(alive, &st), 0, "a live process's region was removed");
	cr_assert_eq(stat(foreign, &st), 0, "another pid namespace's region was removed");
	unlink(alive);
	unlink(foreign);
	fab_close(e);
}
