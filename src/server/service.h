/*
 * service: kvfs-server's state shared by the bootstrap (TCP) side in
 * server.c and the fabric side (service.c, dispatch.c, rma.c, handlers_*.c;
 * their shared internals are in service_priv.h).
 *
 * One endpoint (struct svc_ep) per provider the server offers, each with one
 * service thread that owns every fi_* call on it, its sessions' fabric state
 * and its receive buffers. The bootstrap side never calls into the fabric:
 * it queues commands (add/drop session) that the service thread carries out.
 *
 * Lock order: srv.store_lock is a leaf; svc_ep.cmd_lock is a leaf.
 */
#ifndef KVFS_SERVICE_H
#define KVFS_SERVICE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common/config.h"
#include "common/metrics.h"
#include "common/wire.h"
#include "fabric/fabric.h"
#include "store.h"

#define SVC_MAX_EPS 4

struct srv;
struct svc_ep;
struct session;

/* The server's counts (kvfsctl stats, /metrics); bytes are per endpoint (svc_ep_counters). */
struct srv_counters {
	atomic_uint_fast64_t gets, hits, misses, puts, deletes, sessions;
	atomic_uint_fast64_t pins; /* pins open (OP_PIN until OP_UNPIN or the session's end) */
};

/* One endpoint's counts, read with svc_ep_counters. */
struct svc_ep_counters {
	uint64_t bytes_in, bytes_out; /* value bytes received (PUT, UP_WRITE), sent (GET, ...) */
	uint64_t error_replies;	      /* replies with an error other than -ENOENT */
	uint64_t fabric_errors;	      /* failed completions and posts */
	uint64_t over_cap; /* requests dropped: their session had SESS_MAX_OPS in flight */
	uint64_t stalls;   /* sessions dropped: a request made no progress (stall timeout) */
};

struct srv {
	struct kvfs_config cfg;
	int self; /* index of this server in cfg.servers */
	struct wire_limits limits;
	int64_t started;

	pthread_mutex_t store_lock;
	struct store *store;   /* store_lock */
	struct wire_pool pool; /* offered to clients on this host; pid 0: none */

	struct svc_ep *eps[SVC_MAX_EPS];
	int n_eps;
	struct svc_ep *direct_ep; /* direct.c's (no fabric), from direct_open to direct_close */
	struct srv_counters ctr;
	atomic_int stopping;
	struct track *track; /* tracked keys of every endpoint's sessions (track.h) */

	/* /metrics (srv_metrics.c); NULL when server.metrics is off */
	struct metrics *metrics;
	struct metrics_server *metrics_srv;
	struct metric *latency[OP_MAX_]; /* service time per op; NULL: not measured */
};

/* A command from the bootstrap side to a service thread. */
enum svc_cmd_kind { CMD_ADD, CMD_DROP };
struct svc_cmd {
	enum svc_cmd_kind kind;
	/* CMD_ADD in: */
	struct wire_setup setup;
	/* CMD_ADD out: */
	uint64_t session, token;
	int result;
	/* CMD_DROP in: */
	uint64_t drop_id;

	int done;
	struct svc_cmd *next;
};

/* The tracking table (track.h): open before the endpoints, close after them. 0 or -errno. */
int svc_track_open(struct srv *s);
void svc_track_close(struct srv *s);
/* The store evicted key (store_config.evicted; arg is the srv): tell its trackers. */
void svc_evicted(void *arg, const void *key, size_t klen);

int svc_ep_open(struct srv *s, const char *provider, const char *node, struct svc_ep **out);
void svc_ep_close(struct svc_ep *e);
const char *svc_ep_provider(const struct svc_ep *e); /* as configured: "tcp", "shm", ... */
const char *svc_ep_domain(const struct svc_ep *e);   /* as libfabric names it: "mlx5_0", "lo" */
int svc_ep_name(const struct svc_ep *e, uint8_t *buf, uint16_t *len);
void svc_ep_counters(const struct svc_ep *e, struct svc_ep_counters *out);
/*
 * The endpoints whose counters make the server's (stats, /metrics): the
 * fabric ones, then the direct one when open. Returns how many, at most
 * SVC_MAX_EPS + 1.
 */
int svc_counted_eps(const struct srv *s, const struct svc_ep *out[SVC_MAX_EPS + 1]);
int svc_ep_start(struct svc_ep *e);
/* Wait for the service thread to finish in-flight work and exit (after srv.stopping). */
void svc_ep_join(struct svc_ep *e);
/* Queue a command and wait until the service thread has carried it out. */
void svc_ep_command(struct svc_ep *e, struct svc_cmd *c);

/*
 * srv_metrics.c: serve /metrics on s->cfg.server_metrics (after the store
 * and the endpoints are open, before the service threads start). Returns 0
 * (also when off) or -errno with a one-line reason in err.
 */
int srv_metrics_start(struct srv *s, char *err, size_t errlen);
void srv_metrics_stop(struct srv *s);

/*
 * direct.c: requests on the bootstrap channel (wire.h). direct_open before
 * the first connection is accepted, direct_close after the last handshake
 * thread is gone. direct_serve runs on a handshake thread after WELCOME:
 * serves direct requests on fd until the client sends SETUP (decoded into
 * *setup; returns 0) or the connection is to be closed (returns -errno, any
 * error frame already sent). frame_ms: the handshake timeout per frame.
 */
int direct_open(struct srv *s);
void direct_close(void);
int direct_serve(struct srv *s, int fd, int frame_ms, struct wire_setup *setup);

#endif
