/* harness: see harness.h. */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef KVFS_BUILD_DIR
#define KVFS_BUILD_DIR "."
#endif

const char *h_provider(void)
{
	const char *p = getenv("KVFS_TEST_PROVIDER");
	return p && *p ? p : "tcp";
}

int64_t h_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	cr_assert(fd >= 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void write_conf(struct h_cluster *c, const char *path, const struct h_opts *o,
		       const char *secret)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "cluster = {\n  servers = (");
	for (int i = 0; i < c->n; i++)
		fprintf(f, "%s{ name = \"%s\"; address = \"127.0.0.1:%d\"; }", i ? ", " : "",
			c->names[i], c->ports[i]);
	fprintf(f, ");\n");
	if (secret) {
		char sp[320];
		snprintf(sp, sizeof(sp), "%s.secret", path);
		FILE *s = fopen(sp, "w");
		cr_assert_not_null(s);
		fputs(secret, s);
		fclose(s);
		chmod(sp, 0600);
		fprintf(f, "  secret_file = \"%s\";\n", sp);
	}
	fprintf(f, "};\nfabric = { provider = \"%s\"; };\n", h_provider());
	const char *mem = o->memory ? o->memory : "256M";
	/*
	 * Without prefault: these tests start some hundred servers (each cache
	 * fixture's pool is 1.5 GiB, ~0.9 s to prefault). server.prefault's
	 * default (true) is what the mount tests' and kvfsctl's servers run;
	 * unit-store-slab checks the pool it makes.
	 */
	fprintf(f,
		"server = { memory = \"%s\"; max_value = \"%s\"; eviction = \"%s\"; "
		"prefault = false; ",
		mem, o->max_value ? o->max_value : mem, o->eviction ? o->eviction : "lru");
	if (o->stall_ms)
		fprintf(f, "stall_timeout_ms = %d; ", o->stall_ms);
	fprintf(f, "};\n");
	fprintf(f, "client = { buffer = \"%s\"; timeout_ms = %d; local_map = %s; };\n",
		o->buffer ? o->buffer : "64M", o->timeout_ms ? o->timeout_ms : 10000,
		o->local_map ? o->local_map : "true");
	fclose(f);
}

static int port_open(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

static void spawn(struct h_cluster *c, int i)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		char log[320];
		snprintf(log, sizeof(log), "%s/server-%s.log", c->dir, c->names[i]);
		FILE *lf = freopen(log, "a", stderr);
		(void)lf;
		execl(KVFS_BUILD_DIR "/kvfs-server", "kvfs-server", "-c", c->server_conf, "--name",
		      c->names[i], "-v", (char *)NULL);
		_exit(127);
	}
	c->pids[i] = pid;
	/* generous: a loaded 2-core machine starts a server in well under 1 s */
	int64_t deadline = h_now_ms() + 30000;
	while (!port_open(c->ports[i])) {
		int st = 0;
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w != 0 || h_now_ms() > deadline) {
			char log[320], why[64], line[256] = "";
			snprintf(log, sizeof(log), "%s/server-%s.log", c->dir, c->names[i]);
			FILE *lf = fopen(log, "r");
			if (lf) {
				if (!fgets(line, sizeof(line), lf))
					line[0] = 0;
				fclose(lf);
			}
			if (w == 0)
				snprintf(why, sizeof(why), "not listening after 30 s");
			else if (WIFEXITED(st))
				snprintf(why, sizeof(why), "exited with status %d",
					 WEXITSTATUS(st));
			else
				snprintf(why, sizeof(why), "killed by signal %d", WTERMSIG(st));
			if (w == 0) {
				kill(pid, SIGKILL);
				waitpid(pid, NULL, 0);
			}
			c->pids[i] = 0;
			h_stop(c); /* .fini does not run when .init fails: clean up here */
			cr_assert_fail("kvfs-server %s did not start (%s): %s", c->names[i], why,
				       line);
		}
		usleep(10000);
	}
}

void h_start(struct h_cluster *c, const struct h_opts *o)
{
	static const struct h_opts defaults = {0};
	if (!o)
		o = &defaults;
	memset(c, 0, sizeof(*c));
	c->n = o->servers ? o->servers : 1;
	snprintf(c->dir, sizeof(c->dir), "/tmp/kvfs-test-XXXXXX");
	cr_assert_not_null(mkdtemp(c->dir));
	for (int i = 0; i < c->n; i++) {
		snprintf(c->names[i], sizeof(c->names[i]), "s%d", i);
		c->ports[i] = free_port();
	}
	snprintf(c->server_conf, sizeof(c->server_conf), "%s/server.conf", c->dir);
	snprintf(c->conf, sizeof(c->conf), "%s/client.conf", c->dir);
	write_conf(c, c->server_conf, o, o->secret);
	write_conf(c, c->conf, o, o->client_secret ? o->client_secret : o->secret);
	for (int i = 0; i < c->n; i++)
		spawn(c, i);
}

int h_kill(struct h_cluster *c, int i, int sig)
{
	int st = 0;
	if (c->pids[i] <= 0)
		return -1;
	kill(c->pids[i], sig);
	waitpid(c->pids[i], &st, 0);
	c->pids[i] = 0;
	return st;
}

void h_restart(struct h_cluster *c, int i)
{
	spawn(c, i);
}

int h_alive(struct h_cluster *c, int i)
{
	int st;
	return c->pids[i] > 0 && waitpid(c->pids[i], &st, WNOHANG) == 0;
}

void h_stop(struct h_cluster *c)
{
	for (int i = 0; i < c->n; i++) {
		if (c->pids[i] > 0) {
			int st = h_kill(c, i, SIGTERM);
			cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0,
				  "kvfs-server %s did not exit cleanly on SIGTERM (status %#x)",
				  c->names[i], st);
		}
	}
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", c->dir);
}

kvfs_t *h_client(struct h_cluster *c)
{
	kvfs_t *kv = NULL;
	int ret = kvfs_open(c->conf, &kv);
	cr_assert_eq(ret, 0, "kvfs_open: %s", kvfs_strerror(ret));
	return kv;
}

static uint8_t byte_at(uint64_t seed, uint64_t pos)
{
	uint64_t x = (seed * 0x9e3779b97f4a7c15ull) ^ (pos / 8);
	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 32;
	return (uint8_t)(x >> ((pos % 8) * 8));
}

void h_fill(void *buf, size_t len, uint64_t seed, uint64_t off)
{
	uint8_t *p = buf;
	for (size_t i = 0; i < len; i++)
		p[i] = byte_at(seed, off + i);
}

int h_check(const void *buf, size_t len, uint64_t seed, uint64_t off)
{
	const uint8_t *p = buf;
	for (size_t i = 0; i < len; i++)
		if (p[i] != byte_at(seed, off + i))
			return 0;
	return 1;
}
