/*
 * libkvfs tracking: kvfs_track, kvfs_track_state and the thread that reads
 * invalidations (OP_INVAL, wire.h) while nobody else waits for a reply.
 *
 * A tracking kvfs_t sends OP_TRACK on every new fabric session (track_session,
 * from enter() in conn.c, before the call that connected goes on). The
 * server's INVAL messages arrive in the conn's receive buffers like
 * replies; rpc.c tells them apart (req_id 0) and hands them here
 * (do_track_receive), under the conn's lock: they are copied into events
 * and the buffer goes back at once. One thread per kvfs_t (track_thread)
 * calls the user's callback with the events, outside every lock; when no
 * call waits on a conn, it takes the poller's role there for one poll at a
 * time (conn_poll_idle in rpc.c), so an idle client still reads its
 * invalidations within a millisecond (4 ms after 50 ms without any), checks the server's TCP
 * channel every 10 ms (a server that went away is LOST at once, not at the next call) and
 * reconnects a lost server (250 ms, doubling up to 4 s, between attempts) so that tracking comes
 * back without waiting for a call.
 *
 * kvfs_track_state: kv->track_epoch moves at every event, synchronously (at
 * receipt, under the conn's lock), so a caller that compares it around a
 * request learns of an invalidation that raced the reply before the event
 * reaches its callback; bit 0 stays clear while an event waits for the
 * callback (kv->track_undelivered) or a conn that has been up is not
 * tracked now (kv->track_bad).
 *
 * Locks: kv->track_lock guards the event queue and track_stop; it is a leaf
 * taken with a conn->lock held (the only nesting in libkvfs: conn->lock,
 * then kv->track_lock).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"

#include "common/log.h"

#define TQ_MAX	       65536 /* events queued; beyond: the server's events become one ALL */
#define LIVE_EVERY_NS  (10 * 1000000LL)
#define RETRY_FIRST_NS (250 * 1000000LL)
#define RETRY_MAX_NS   (4000 * 1000000LL)
#define BUSY_NAP_NS    1000000 /* between polls within QUIET_NS of a message, */
#define IDLE_NAP_NS    4000000 /* and after (an idle mount: ~0.6% of a core, not 2.3) */
#define QUIET_NS       (50 * 1000000LL)

struct tev {
	struct tev *next;
	int kind, server;
	size_t klen;
	char key[];
};

/* Queue an event; caller holds kv->track_lock. */
static void do_push(struct kvfs *kv, int kind, int server, const void *key, size_t klen)
{
	if (kind == KVFS_INVAL_CHANGED || kind == KVFS_INVAL_GONE) {
		if (kv->tq_all & (1ull << server))
			return; /* an ALL of that server is queued: it covers this */
		if (kv->tq_len >= TQ_MAX) {
			kv->tq_all |= 1ull << server;
			atomic_fetch_add(&kv->track_undelivered, 1);
			pthread_cond_signal(&kv->track_cond);
			return;
		}
	}
	struct tev *ev = malloc(sizeof(*ev) + klen + 1);
	if (!ev) {
		if (!(kv->tq_all & (1ull << server)))
			atomic_fetch_add(&kv->track_undelivered, 1);
		kv->tq_all |= 1ull << server;
		pthread_cond_signal(&kv->track_cond);
		return;
	}
	ev->next = NULL;
	ev->kind = kind;
	ev->server = server;
	ev->klen = klen;
	if (klen)
		memcpy(ev->key, key, klen);
	ev->key[klen] = 0;
	if (kv->tq_tail)
		kv->tq_tail->next = ev;
	else
		kv->tq_head = ev;
	kv->tq_tail = ev;
	kv->tq_len++;
	atomic_fetch_add(&kv->track_undelivered, 1);
	pthread_cond_signal(&kv->track_cond);
}

static void push(struct kvfs *kv, int kind, int server)
{
	pthread_mutex_lock(&kv->track_lock);
	do_push(kv, kind, server, NULL, 0);
	pthread_mutex_unlock(&kv->track_lock);
}

void do_track_receive(struct conn *c, const struct wire_rep *rep)
{
	struct kvfs *kv = c->kv;
	const char *why = "";
	if (!kv->track_fn)
		return;
	if (wire_inval_check(rep->data, rep->dlen, rep->n, &why)) {
		log_warn("server %s: malformed invalidation dropped: %s",
			 kv->cfg.servers[c->idx].name, why);
		return;
	}
	atomic_fetch_add(&kv->track_epoch, 1);
	pthread_mutex_lock(&kv->track_lock);
	if (rep->flags & RP_INVAL_ALL) {
		do_push(kv, KVFS_INVAL_ALL, c->idx, NULL, 0);
	} else {
		size_t pos = 0, klen;
		unsigned kind;
		const uint8_t *key;
		while (wire_inval_next(rep->data, rep->dlen, &pos, &kind, &key, &klen) == 1)
			do_push(kv, kind == WIRE_INVAL_GONE ? KVFS_INVAL_GONE : KVFS_INVAL_CHANGED,
				c->idx, key, klen);
	}
	pthread_mutex_unlock(&kv->track_lock);
}

void do_track_up(struct conn *c)
{
	struct kvfs *kv = c->kv;
	if (!kv->track_fn || c->ever_up)
		return;
	c->ever_up = 1;
	atomic_fetch_add(&kv->track_bad, 1);
	atomic_fetch_add(&kv->track_epoch, 1);
}

void do_track_lost(struct conn *c)
{
	struct kvfs *kv = c->kv;
	if (!c->track_ok)
		return;
	c->track_ok = 0;
	atomic_fetch_add(&kv->track_bad, 1);
	atomic_fetch_add(&kv->track_epoch, 1);
	push(kv, KVFS_INVAL_LOST, c->idx);
}

int track_session(struct conn *c)
{
	struct kvfs *kv = c->kv;
	struct wire_req q;
	req_init(c, &q, OP_TRACK);
	int ret = call_simple(c, &q, NULL);
	pthread_mutex_lock(&c->lock);
	if (!ret && !c->broken && !c->track_ok) {
		c->track_ok = 1;
		atomic_fetch_sub(&kv->track_bad, 1);
		atomic_fetch_add(&kv->track_epoch, 1);
		pthread_mutex_lock(&kv->track_lock);
		do_push(kv, KVFS_INVAL_BACK, c->idx, NULL, 0);
		pthread_mutex_unlock(&kv->track_lock);
	}
	if (ret && !c->broken) {
		log_warn("server %s: cannot track keys (%s): caching briefly",
			 kv->cfg.servers[c->idx].name, strerror(ret < 0 ? -ret : ret));
		ret = 0; /* the session works; its server just does not track (too old) */
	}
	pthread_mutex_unlock(&c->lock);
	if (ret) {
		conn_leave(c);
		return -EIO;
	}
	return 0;
}

static __thread int self;

int track_is_self(void)
{
	return self;
}

static void *track_thread(void *arg)
{
	struct kvfs *kv = arg;
	self = 1;
	int64_t next_live = 0, last_msg = 0, retry_at[KVFS_MAX_SERVERS] = {0},
		backoff[KVFS_MAX_SERVERS] = {0};
	pthread_mutex_lock(&kv->track_lock);
	while (!kv->track_stop) {
		struct tev *list = kv->tq_head;
		uint64_t all = kv->tq_all;
		kv->tq_head = kv->tq_tail = NULL;
		kv->tq_len = 0;
		kv->tq_all = 0;
		pthread_mutex_unlock(&kv->track_lock);
		for (int i = 0; i < kv->cfg.n_servers; i++)
			if (all & (1ull << i)) {
				struct kvfs_inval ev = {KVFS_INVAL_ALL, i, "", 0};
				kv->track_fn(kv->track_arg, &ev);
			}
		int got = list != NULL, told = __builtin_popcountll(all);
		while (list) {
			struct tev *n = list->next;
			struct kvfs_inval ev = {list->kind, list->server, list->key, list->klen};
			kv->track_fn(kv->track_arg, &ev);
			free(list);
			list = n;
			told++;
		}
		if (told)
			atomic_fetch_sub(&kv->track_undelivered, told);
		int64_t now = now_ns();
		int live = now > next_live;
		if (live)
			next_live = now + LIVE_EVERY_NS;
		for (int i = 0; i < kv->cfg.n_servers; i++) {
			struct conn *c = &kv->conns[i];
			got |= conn_poll_idle(c, live);
			pthread_mutex_lock(&c->lock);
			int lost = c->ever_up && !c->track_ok && !c->connecting;
			pthread_mutex_unlock(&c->lock);
			if (!lost) {
				backoff[i] = 0;
				continue;
			}
			if (!backoff[i]) {
				backoff[i] = RETRY_FIRST_NS;
				retry_at[i] = now + backoff[i];
			}
			if (now < retry_at[i])
				continue;
			if (conn_enter(c) == 0) {
				conn_leave(c);
			} else {
				backoff[i] =
				    backoff[i] * 2 > RETRY_MAX_NS ? RETRY_MAX_NS : backoff[i] * 2;
			}
			retry_at[i] = now_ns() + backoff[i];
		}
		if (got)
			last_msg = now;
		pthread_mutex_lock(&kv->track_lock);
		if (!got && !kv->tq_head && !kv->tq_all && !kv->track_stop) {
			struct timespec ts =
			    realtime_in(now - last_msg < QUIET_NS ? BUSY_NAP_NS : IDLE_NAP_NS);
			pthread_cond_timedwait(&kv->track_cond, &kv->track_lock, &ts);
		}
	}
	pthread_mutex_unlock(&kv->track_lock);
	return NULL;
}

int kvfs_track(kvfs_t *kv, kvfs_inval_cb fn, void *arg)
{
	if (!kv || !fn || (kv->flags & KVFS_OPEN_LAZY_FABRIC))
		return -EINVAL;
	if (kv->track_fn)
		return -EBUSY;
	kv->track_fn = fn;
	kv->track_arg = arg;
	int ret = pthread_create(&kv->track_thr, NULL, track_thread, kv);
	if (ret) {
		kv->track_fn = NULL;
		return -ret;
	}
	kv->track_started = 1;
	return 0;
}

uint64_t kvfs_track_state(kvfs_t *kv)
{
	if (!kv || !kv->track_fn)
		return 0;
	uint64_t e = atomic_load(&kv->track_epoch);
	int bad = atomic_load(&kv->track_bad) + atomic_load(&kv->track_undelivered);
	if (atomic_load(&kv->track_epoch) != e)
		bad = 1;
	return e << 1 | (bad == 0);
}

void track_init(struct kvfs *kv)
{
	pthread_mutex_init(&kv->track_lock, NULL);
	pthread_cond_init(&kv->track_cond, NULL);
}

void track_stop(struct kvfs *kv)
{
	if (kv->track_started) {
		pthread_mutex_lock(&kv->track_lock);
		kv->track_stop = 1;
		pthread_cond_signal(&kv->track_cond);
		pthread_mutex_unlock(&kv->track_lock);
		pthread_join(kv->track_thr, NULL);
		kv->track_started = 0;
	}
	/* The teardowns that follow (kvfs_close) have nothing to tell any more. */
	for (int i = 0; i < kv->cfg.n_servers; i++) {
		pthread_mutex_lock(&kv->conns[i].lock);
		kv->conns[i].track_ok = 0;
		pthread_mutex_unlock(&kv->conns[i].lock);
	}
	while (kv->tq_head) {
		struct tev *n = kv->tq_head->next;
		free(kv->tq_head);
		kv->tq_head = n;
	}
	pthread_mutex_destroy(&kv->track_lock);
	pthread_cond_destroy(&kv->track_cond);
}
