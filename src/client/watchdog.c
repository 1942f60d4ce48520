/*
 * libkvfs watchdog for libfabric 1.17's shm provider: frees a call stuck
 * inside libfabric on a lock a dead server left held (see unwedge()).
 *
 * A file of its own so that it goes when that libfabric version does: the
 * rest of the client only marks, in each request and receive buffer's
 * fab_since, when it entered a libfabric call, and starts and stops the
 * thread (watchdog_start, watchdog_stop).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "client/client_int.h"

#include "common/log.h"

#define WEDGE_NS (500 * 1000000LL) /* one libfabric call this long: see unwedge() */
#define WATCH_MS 100

/*
 * The watchdog: a call stuck in one fab_post_send, fab_poll or
 * fab_post_recv for WEDGE_NS while its server is gone means, on shm with
 * libfabric 1.17, that the server died holding the lock of a shared region
 * (its own, which every sender takes, or ours), and the call spins on it
 * forever: no caller can get it out, it is inside libfabric. Release that lock (fab_shm_unwedge):
 * the call returns, sees the broken conn and fails like any other, and the
 * conn reconnects once the server is back. Checked every WATCH_MS by one
 * thread per kvfs_t.
 */
static void unwedge(struct conn *c)
{
	int64_t now = now_ns();
	int stuck = 0;
	pthread_mutex_lock(&c->lock);
	int look = !c->connecting && c->ep; /* the connecting thread owns the session's fields */
	for (int i = 0; i < NREQ && look; i++) {
		int64_t since = atomic_load(&c->reqs[i].fab_since);
		stuck |= c->reqs[i].active && since && now - since > WEDGE_NS;
	}
	for (int i = 0; i < NRECV && look; i++) {
		int64_t since = atomic_load(&c->rxs[i].fab_since);
		stuck |= since && now - since > WEDGE_NS;
	}
	/*
	 * Keep the endpoint while we look. Not sess_enter: the stuck call's
	 * conn is often broken already (its waiters timed out), and the
	 * endpoint stays for it until it is freed.
	 */
	if (stuck)
		c->users++;
	pthread_mutex_unlock(&c->lock);
	if (!stuck)
		return;
	if (!liveness_ok(c) && fab_shm_unwedge(c->ep) > 0)
		log_warn("server %s: freed a call stuck on a lock the dead server held",
			 c->kv->cfg.servers[c->idx].name);
	conn_leave(c);
}

static void *watchdog(void *arg)
{
	struct kvfs *kv = arg;
	pthread_mutex_lock(&kv->wd_lock);
	while (!kv->wd_stop) {
		struct timespec ts = realtime_in(WATCH_MS * 1000000L);
		pthread_cond_timedwait(&kv->wd_cond, &kv->wd_lock, &ts);
		if (kv->wd_stop)
			break;
		pthread_mutex_unlock(&kv->wd_lock);
		for (int i = 0; i < kv->cfg.n_servers; i++)
			unwedge(&kv->conns[i]);
		pthread_mutex_lock(&kv->wd_lock);
	}
	pthread_mutex_unlock(&kv->wd_lock);
	return NULL;
}

int watchdog_start(struct kvfs *kv)
{
	pthread_mutex_init(&kv->wd_lock, NULL);
	pthread_cond_init(&kv->wd_cond, NULL);
	/* The library's thread takes none of the program's signals: it inherits all blocked. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int ret = pthread_create(&kv->wd, NULL, watchdog, kv);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret)
		log_error("cannot start the client's watchdog thread: %s", strerror(ret));
	return ret ? -ENOMEM : 0; /* -EAGAIN means a read raced a write (kvfs.h) */
}

void watchdog_stop(struct kvfs *kv)
{
	pthread_mutex_lock(&kv->wd_lock);
	kv->wd_stop = 1;
	pthread_cond_signal(&kv->wd_cond);
	pthread_mutex_unlock(&kv->wd_lock);
	pthread_join(kv->wd, NULL);
	pthread_mutex_destroy(&kv->wd_lock);
	pthread_cond_destroy(&kv->wd_cond);
}
