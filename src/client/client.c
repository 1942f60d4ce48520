/*
 * libkvfs: opening and closing a client, and what it tells about the
 * cluster (limits, servers, key routing, stats, ping). See
 * include/kvfs/kvfs.h for the API contract and client_int.h for how the
 * client is built; the calls themselves are in kv.c, list.c, upload.c,
 * pin.c and mr.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"

#include "common/hash.h"
#include "common/log.h"

#define SLOT_MAX (8u << 20)

const char *kvfs_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return "success";
	case ENOENT:
		return "no such key";
	case EIO:
		return "server unreachable or connection lost";
	case ETIMEDOUT:
		return "server did not answer in time (client.timeout_ms)";
	case EACCES:
		return "access denied (wrong or missing secret, a server that cannot prove the "
		       "secret, or region access)";
	case ENOSPC:
		return "server memory full (eviction \"none\", or all of it pinned)";
	case EFBIG:
		return "value larger than server.max_value";
	case ENAMETOOLONG:
		return "key too long";
	case EXDEV:
		return "source and target live on different servers";
	case EPROTO:
		return "protocol error (malformed message)";
	case EPROTONOSUPPORT:
		return "no common protocol version or fabric provider";
	case EFAULT:
		return "buffer outside the registered region (kvfs_mr_t)";
	case EBADF:
		return "unknown upload or pin handle";
	case EAGAIN:
		return "value changed while it was read; read again";
	case EBUSY:
		return "busy: too many pins on the value, or another request on the upload";
	case EMFILE:
		return "too many uploads, pins or regions in this session";
	case ESHUTDOWN:
		return "server is shutting down";
	case EOPNOTSUPP:
		return "server's pool is not mapped here";
	default:
		return strerror(err);
	}
}

static int open_common(struct kvfs *kv)
{
	char err[256];
	int ret = config_validate(&kv->cfg, err, sizeof(err));
	if (ret) {
		log_error("%s", err);
		return ret;
	}
	pthread_mutex_init(&kv->lock, NULL);
	track_init(kv);
	size_t region = kv->cfg.client_buffer;
	size_t slot = region / 8;
	if (slot > SLOT_MAX)
		slot = SLOT_MAX;
	slot &= ~(size_t)4095;
	int n_slots = (int)(region / slot);
	if (n_slots > MAX_SLOTS)
		n_slots = MAX_SLOTS;
	for (int i = 0; i < kv->cfg.n_servers; i++) {
		conn_init(&kv->conns[i], kv, i, slot, n_slots);
		kv->name_hash[i] =
		    hash64(kv->cfg.servers[i].name, strlen(kv->cfg.servers[i].name), 0);
	}
	probe_init(kv);
	ret = watchdog_start(kv);
	if (ret)
		probe_stop(kv);
	return ret;
}

int kvfs_open_config_flags(const struct kvfs_config *cfg, unsigned flags, kvfs_t **out)
{
	if (!cfg || !out || (flags & ~KVFS_OPEN_LAZY_FABRIC))
		return -EINVAL;
	struct kvfs *kv = calloc(1, sizeof(*kv));
	if (!kv)
		return -ENOMEM;
	kv->cfg = *cfg;
	kv->flags = flags;
	int ret = open_common(kv);
	if (ret) {
		free(kv);
		return ret;
	}
	*out = kv;
	return 0;
}

int kvfs_open_config(const struct kvfs_config *cfg, kvfs_t **out)
{
	return kvfs_open_config_flags(cfg, 0, out);
}

int kvfs_open_flags(const char *path, unsigned flags, kvfs_t **out)
{
	if (!out || (flags & ~KVFS_OPEN_LAZY_FABRIC))
		return -EINVAL;
	struct kvfs *kv = calloc(1, sizeof(*kv));
	char err[512];
	if (!kv)
		return -ENOMEM;
	kv->flags = flags;
	int ret = config_load(&kv->cfg, config_default_path(path), err, sizeof(err));
	if (ret) {
		log_error("%s", err);
		free(kv);
		return ret;
	}
	ret = open_common(kv);
	if (ret) {
		free(kv);
		return ret;
	}
	*out = kv;
	return 0;
}

int kvfs_open(const char *path, kvfs_t **out)
{
	return kvfs_open_flags(path, 0, out);
}

void kvfs_close(kvfs_t *kv)
{
	if (!kv)
		return;
	probe_stop(kv);
	watchdog_stop(kv);
	track_stop(kv);
	for (int i = 0; i < kv->cfg.n_servers; i++)
		conn_destroy(&kv->conns[i]);
	mr_free_all(kv);
	pthread_mutex_destroy(&kv->lock);
	free(kv);
}

/* Enter the conn of server idx; direct NULL: by the fabric, else as conn_enter_small. */
static int server_enter(struct kvfs *kv, int idx, struct conn **out, int *direct)
{
	if (!kv || idx < 0 || idx >= kv->cfg.n_servers)
		return -EINVAL;
	*out = &kv->conns[idx];
	return direct ? conn_enter_small(*out, direct) : conn_enter(*out);
}

/* The session's limits: set by its connect, so stable while we are entered. */
int kvfs_limits(kvfs_t *kv, int server, struct kvfs_limits *out)
{
	struct conn *c;
	int direct;
	int ret = out ? server_enter(kv, server, &c, &direct) : -EINVAL;
	if (ret)
		return ret;
	*out = (struct kvfs_limits){.max_key = KVFS_MAX_KEY,
				    .max_value = c->limits.max_value,
				    .inline_threshold = c->limits.inline_threshold,
				    .slot_size = c->slot_size};
	conn_leave(c);
	return 0;
}

int kvfs_server_count(kvfs_t *kv)
{
	return kv ? kv->cfg.n_servers : -EINVAL;
}

const char *kvfs_server_name(kvfs_t *kv, int idx)
{
	return kv && idx >= 0 && idx < kv->cfg.n_servers ? kv->cfg.servers[idx].name : NULL;
}

int kvfs_server_state(kvfs_t *kv, int idx)
{
	if (!kv || idx < 0 || idx >= kv->cfg.n_servers)
		return -EINVAL;
	struct conn *c = &kv->conns[idx];
	pthread_mutex_lock(&c->lock);
	int st = c->up && !c->broken					   ? KVFS_SERVER_UP
		 : c->down || c->broken || (c->attempts && c->attempt_err) ? KVFS_SERVER_DOWN
									   : KVFS_SERVER_IDLE;
	pthread_mutex_unlock(&c->lock);
	return st;
}

/* Rendezvous hashing: the server with the highest hash(key, server) wins. */
int kvfs_server_of(kvfs_t *kv, const char *key)
{
	if (!kv || !key)
		return -EINVAL;
	uint64_t kh = hash64(key, strlen(key), 0x6b766673);
	int best = 0;
	uint64_t best_score = 0;
	for (int i = 0; i < kv->cfg.n_servers; i++) {
		uint64_t s = hash_mix(kh ^ kv->name_hash[i]);
		if (i == 0 || s > best_score) {
			best = i;
			best_score = s;
		}
	}
	return best;
}

int kvfs_server_stats(kvfs_t *kv, int idx, struct kvfs_stats *out)
{
	struct conn *c;
	int ret = out ? server_enter(kv, idx, &c, NULL) : -EINVAL;
	if (ret)
		return ret;
	struct wire_req q;
	struct wire_rep rep;
	struct proto_stats st;
	struct creq *r;
	req_init(c, &q, OP_STATS);
	ret = call(c, &q, &rep, &r);
	if (!ret) {
		ret = rep.status;
		if (!ret) {
			ret = wire_stats_decode(rep.data, rep.dlen, &st) ? -EPROTO : 0;
			stats_from_proto(out, &st);
		}
		req_put(c, r);
	}
	conn_leave(c);
	return ret;
}

int kvfs_ping(kvfs_t *kv, int idx, uint64_t *rtt_ns)
{
	struct conn *c;
	int direct;
	int ret = server_enter(kv, idx, &c, &direct);
	if (ret)
		return ret;
	struct wire_req q;
	req_init(c, &q, OP_PING);
	int64_t t0 = now_ns();
	ret = call_small(c, direct, &q, NULL);
	if (!ret && rtt_ns)
		*rtt_ns = (uint64_t)(now_ns() - t0);
	conn_leave(c);
	return ret;
}
