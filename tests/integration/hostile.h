/*
 * hostile: what test_hostile.c and test_hostile_peers.c (one binary,
 * itest_hostile) share: the cluster of one server and a well-behaved client
 * on it, and checks both use.
 */
#ifndef KVFS_TEST_HOSTILE_H
#define KVFS_TEST_HOSTILE_H

#include "harness.h"

extern struct h_cluster cl;
extern kvfs_t *kv;

/* Fixtures: one server, no secret, and kv on it. */
void start(void);
void stop(void);
/* kv can put and get (round names the key), and the server is alive. */
void good_client_still_served(int round);
/* The server closes fd within ms milliseconds (nothing more than an error frame comes). */
void expect_closed(int fd, int ms);

#endif
