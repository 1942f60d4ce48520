/*
 * libkvfs probe: one thread per kvfs_t, started when a server first goes
 * down (a connect or request to it timed out; conn.c do_mark_down), that
 * tries to connect to each down server every PROBE_MS and so brings it up
 * again. Meanwhile every call to a down server fails at once with -EIO, so
 * a dead or blackholed server costs its callers one timeout, not one each,
 * and a probe that waits out another timeout holds up no caller.
 *
 * Why a thread and not "one caller at a time, at an interval": that caller
 * would wait the full timeout on every probe of a server still dead (a
 * `cat` of a file there taking client.timeout_ms every PROBE_MS), while
 * the thread costs nothing until a server goes down and no caller ever
 * waits on a dead server twice.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "client/client_int.h"

#include "common/log.h"

#define PROBE_MAX_SLEEP_NS (999 * 1000000L) /* realtime_in takes less than 1 s */

static void *probe(void *arg)
{
	struct kvfs *kv = arg;
	pthread_mutex_lock(&kv->probe_lock);
	while (!kv->probe_quit) {
		kv->probe_kicked = 0;
		pthread_mutex_unlock(&kv->probe_lock);
		int64_t next = 0;
		for (int i = 0; i < kv->cfg.n_servers; i++) {
			int64_t t = conn_probe(&kv->conns[i]); /* no lock of ours held */
			if (t && (!next || t < next))
				next = t;
		}
		pthread_mutex_lock(&kv->probe_lock);
		if (kv->probe_quit || kv->probe_kicked)
			continue;
		if (!next) {
			pthread_cond_wait(&kv->probe_cond, &kv->probe_lock); /* nobody down */
			continue;
		}
		int64_t wait = next - now_ns();
		if (wait <= 0)
			continue;
		struct timespec ts =
		    realtime_in(wait < PROBE_MAX_SLEEP_NS ? (long)wait : PROBE_MAX_SLEEP_NS);
		pthread_cond_timedwait(&kv->probe_cond, &kv->probe_lock, &ts);
	}
	pthread_mutex_unlock(&kv->probe_lock);
	return NULL;
}

void probe_init(struct kvfs *kv)
{
	pthread_mutex_init(&kv->probe_lock, NULL);
	pthread_cond_init(&kv->probe_cond, NULL);
}

int probe_kick(struct kvfs *kv)
{
	pthread_mutex_lock(&kv->probe_lock);
	if (!kv->probe_started && !kv->probe_quit) {
		/* The library's thread takes none of the program's signals. */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		int ret = pthread_create(&kv->prober, NULL, probe, kv);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (ret)
			log_error("cannot start the client's probe thread: %s (calls to a "
				  "server that timed out keep trying it)",
				  strerror(ret));
		kv->probe_started = !ret;
	}
	kv->probe_kicked = 1;
	pthread_cond_signal(&kv->probe_cond);
	int ret = kv->probe_started ? 0 : -EAGAIN;
	pthread_mutex_unlock(&kv->probe_lock);
	return ret;
}

void probe_stop(struct kvfs *kv)
{
	pthread_mutex_lock(&kv->probe_lock);
	kv->probe_quit = 1;
	pthread_cond_signal(&kv->probe_cond);
	int started = kv->probe_started;
	pthread_mutex_unlock(&kv->probe_lock);
	if (started)
		pthread_join(kv->prober, NULL);
	pthread_mutex_destroy(&kv->probe_lock);
	pthread_cond_destroy(&kv->probe_cond);
}
