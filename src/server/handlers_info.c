/*
 * handlers_info: the requests about the cache rather than one value: LIST
 * (one reply's worth of entries, RP_MORE when there are more), STATS (the
 * server's counters and the store's) and PING.
 */
#include "service_priv.h"

#include <errno.h>
#include <stdio.h>

struct list_ctx {
	uint8_t *buf;
	size_t room, used;
	uint64_t max, count;
	int more;
	struct svc_ep *e;
	struct op *o;
};

static int list_cb(void *arg, const char *name, size_t nlen, const struct proto_attr *a)
{
	struct list_ctx *l = arg;
	if (l->max && l->count >= l->max) {
		l->more = 1;
		return 1;
	}
	int n = wire_entry_encode(l->buf + l->used, l->room - l->used, name, nlen, a);
	if (n < 0) {
		l->more = 1;
		return 1;
	}
	l->used += (size_t)n;
	/*
	 * Each listed key (or folded prefix) too: its attributes are cached
	 * with the listing (readdirplus). Under store_lock, so a change of it
	 * is reported after this.
	 */
	svc_track_read(l->e, l->o, name, nlen);
	l->count++;
	return 0;
}

int handle_list(struct svc_ep *e, struct op *o, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	struct list_ctx l = {
	    .buf = rep_data(o), .room = rep_room(e), .max = q->len, .e = e, .o = o};
	(void)why;
	svc_track_read(e, o, q->key, q->klen); /* the prefix: a key added or removed under it */
	pthread_mutex_lock(&srv->store_lock);
	long ret = store_list(srv->store, q->key, q->klen, (q->flags & RQ_DELIM) ? '/' : 0, q->key2,
			      q->k2len, now_s(), list_cb, &l);
	pthread_mutex_unlock(&srv->store_lock);
	if (ret < 0)
		return (int)ret;
	if (l.more && l.count == 0)
		return -EMSGSIZE;
	o->rep.n = l.count;
	o->rep.flags = l.more ? RP_MORE : 0;
	o->rep.data = rep_data(o);
	o->rep.dlen = (uint32_t)l.used;
	svc_reply(e, o);
	return 0;
}

int handle_stats(struct svc_ep *e, struct op *o, const char **why)
{
	struct srv *srv = e->srv;
	struct proto_stats st = {0};
	struct store_stats ss;
	(void)why;
	pthread_mutex_lock(&srv->store_lock);
	store_stats(srv->store, &ss);
	pthread_mutex_unlock(&srv->store_lock);
	st.gets = atomic_load(&srv->ctr.gets);
	st.hits = atomic_load(&srv->ctr.hits);
	st.misses = atomic_load(&srv->ctr.misses);
	st.puts = atomic_load(&srv->ctr.puts);
	st.deletes = atomic_load(&srv->ctr.deletes);
	const struct svc_ep *eps[SVC_MAX_EPS + 1];
	int n_eps = svc_counted_eps(srv, eps);
	for (int i = 0; i < n_eps; i++) {
		struct svc_ep_counters c;
		svc_ep_counters(eps[i], &c);
		st.bytes_in += c.bytes_in;
		st.bytes_out += c.bytes_out;
		st.dropped_requests += c.over_cap;
		st.stalled_sessions += c.stalls;
	}
	st.sessions = atomic_load(&srv->ctr.sessions);
	st.evictions = ss.evictions;
	st.expirations = ss.expirations;
	st.keys = ss.keys;
	st.pool_size = ss.pool_size;
	st.pool_used = ss.pool_used;
	st.uptime_s = (uint64_t)(now_s() - srv->started);
	snprintf(st.provider, sizeof(st.provider), "%s", e->provider);
	int n = wire_stats_encode(rep_data(o), rep_room(e), &st);
	if (n < 0)
		return n;
	o->rep.data = rep_data(o);
	o->rep.dlen = (uint32_t)n;
	svc_reply(e, o);
	return 0;
}

int handle_ping(struct svc_ep *e, struct op *o, const char **why)
{
	(void)why;
	svc_reply_status(e, o, 0);
	return 0;
}
