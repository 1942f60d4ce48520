/*
 * fsmetrics: the kvfs mount's Prometheus /metrics (client.metrics): FUSE
 * requests by type with their latency, error replies by errno, bytes read
 * and written, opens by page-cache use, and each server's session state
 * from libkvfs. One mount per process, so the state is this module's own.
 *
 * Every call below is a no-op until fsm_start (the metrics are off by
 * default), and cheap after it: one or two atomic adds, no lock.
 */
#ifndef KVFS_FUSE_FSMETRICS_H
#define KVFS_FUSE_FSMETRICS_H

#include <stddef.h>
#include <stdint.h>

#include "kvfs/kvfs.h"

/*
 * Bind addr now (before fuse_daemonize, so an error reaches the terminal):
 * 0, or -errno with a one-line reason in err.
 */
int fsm_listen(const char *addr, char *err, size_t errlen);
/* Start serving (after fuse_daemonize, with the kvfs_t whose servers it shows). */
int fsm_start(kvfs_t *kv, char *err, size_t errlen);
void fsm_stop(void);

/* A request of FUSE opcode op took ns, its handler's reply included. */
void fsm_request(uint32_t op, uint64_t ns);
/* Nanoseconds now, when fsm_start has run; else 0 (nothing to time). */
uint64_t fsm_clock(void);
/* An error reply with errno err (positive). */
void fsm_error(int err);
void fsm_read(size_t bytes);
void fsm_written(size_t bytes);
/* An open: 0 direct I/O, 1 through the page cache, 2 keeping the cache (keep_cache). */
void fsm_open(int cache);

#endif
