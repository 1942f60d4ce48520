/*
 * harness: start real kvfs-server processes on free loopback ports for the
 * integration tests, and make sure they die with the test (PR_SET_PDEATHSIG),
 * whatever happens to it. The provider comes from $KVFS_TEST_PROVIDER
 * (shm or tcp; default tcp).
 */
#ifndef KVFS_TEST_HARNESS_H
#define KVFS_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kvfs/kvfs.h"

#define H_MAX_SERVERS 4

struct h_opts {
	int servers;		   /* default 1 */
	const char *memory;	   /* default "256M" */
	const char *max_value;	   /* default = memory */
	const char *eviction;	   /* default "lru" */
	const char *secret;	   /* server secret; NULL = none */
	const char *client_secret; /* client secret when different (e.g. wrong) */
	int timeout_ms;		   /* default 10000; timeout tests set their own */
	const char *buffer;	   /* client.buffer, default "64M" */
	const char *local_map;	   /* client.local_map, default "true" */
	int stall_ms;		   /* server.stall_timeout_ms; 0 = the default */
};

struct h_cluster {
	char dir[256];
	char conf[300];	       /* what clients use */
	char server_conf[300]; /* what servers use */
	int n;
	int ports[H_MAX_SERVERS];
	pid_t pids[H_MAX_SERVERS];
	char names[H_MAX_SERVERS][16];
};

const char *h_provider(void);
/* Start the cluster; aborts the test (cr_assert) on failure. */
void h_start(struct h_cluster *c, const struct h_opts *o);
/* Signal server i and wait for it to exit; returns its wait status. */
int h_kill(struct h_cluster *c, int i, int sig);
/* Start server i again on the same port. */
void h_restart(struct h_cluster *c, int i);
void h_stop(struct h_cluster *c);
/* Open a client on the cluster (cr_assert on failure). */
kvfs_t *h_client(struct h_cluster *c);
/* Is server i still running? */
int h_alive(struct h_cluster *c, int i);

/* Deterministic test data: byte j of value `seed`. */
void h_fill(void *buf, size_t len, uint64_t seed, uint64_t off);
int h_check(const void *buf, size_t len, uint64_t seed, uint64_t off);
int64_t h_now_ms(void);

#endif
