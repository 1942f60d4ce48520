/*
 * coherence: invalidations from the servers to the kernel's caches (see
 * coherence.h). libkvfs's tracking thread calls inval_cb; it resolves the
 * key to the nodes it names under itab.lock, forgets their cached
 * attributes there and then, and queues {what to tell the kernel} for
 * coh_thread, which sends the notifications with no lock held. A queue over
 * COH_QUEUE_MAX entries turns into one "everything" (every known node).
 */
#include "fuse/coherence.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "fuse/fs.h"
#include "fuse/ops_int.h"

#define COH_QUEUE_MAX 65536

struct cnote {
	struct cnote *next;
	uint64_t ino;	 /* inval_inode of it, 0: none */
	uint64_t parent; /* inval_entry(parent, name), 0: none */
	char name[];
};

struct coh {
	struct fs *fs;
	pthread_t thr;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct cnote *head, *tail; /* lock */
	int len;		   /* lock */
	int all;		   /* lock: tell the kernel to forget every node */
	int stop;		   /* lock */
	int tracking;		   /* kvfs_track took our callback (fixed after coh_start) */
};

int coh_tracking(struct fs *fs)
{
	return fs->coh && fs->coh->tracking;
}

static __thread uint64_t tls_state; /* 0: no coh_begin, never coherent */

uint64_t coh_state(struct fs *fs)
{
	return coh_tracking(fs) ? kvfs_track_state(fs->kv) : 0;
}

void coh_begin(struct fs *fs)
{
	tls_state = coh_state(fs);
}

void coh_set(uint64_t s)
{
	tls_state = s;
}

void coh_end(void)
{
	tls_state = 0;
}

static int coherent(struct fs *fs)
{
	uint64_t s = kvfs_track_state(fs->kv);
	return (s & 1) && s == tls_state;
}

double coh_ttl(struct fs *fs, double base, int64_t expiry)
{
	double t = base;
	if (coh_tracking(fs) && !coherent(fs))
		t = base < fs->o.short_timeout ? base : fs->o.short_timeout;
	if (expiry > 0) {
		double left = (double)(expiry - (int64_t)time(NULL));
		if (left < t)
			t = left > 0 ? left : 0;
	}
	return t;
}

int coh_fresh(struct fs *fs, int64_t age_ns)
{
	if (coh_tracking(fs) && !coherent(fs))
		return 0;
	return age_ns < (int64_t)(fs->o.attr_timeout * 1e9);
}

/* Caller holds c->lock. */
static void do_push(struct coh *c, uint64_t ino, uint64_t parent, const char *name, size_t nlen)
{
	if (c->all)
		return;
	if (c->len >= COH_QUEUE_MAX) {
		c->all = 1;
		pthread_cond_signal(&c->cond);
		return;
	}
	struct cnote *m = malloc(sizeof(*m) + nlen + 1);
	if (!m) {
		c->all = 1;
		pthread_cond_signal(&c->cond);
		return;
	}
	m->next = NULL;
	m->ino = ino;
	m->parent = parent;
	memcpy(m->name, name, nlen);
	m->name[nlen] = 0;
	if (c->tail)
		c->tail->next = m;
	else
		c->head = m;
	c->tail = m;
	c->len++;
	pthread_cond_signal(&c->cond);
}

static void forget_attr(void *arg, struct inode *n)
{
	(void)arg;
	n->attr_ns = 0;
	n->dir_cached = 0;
}

/* libkvfs's tracking thread: one event (see kvfs_track). */
static void inval_cb(void *arg, const struct kvfs_inval *ev)
{
	struct coh *c = arg;
	struct itab *t = &c->fs->it;
	if (ev->kind != KVFS_INVAL_CHANGED && ev->kind != KVFS_INVAL_GONE) {
		/* ALL, LOST, BACK: nothing cached can be trusted */
		pthread_mutex_lock(&t->lock);
		do_itab_each(t, forget_attr, NULL);
		pthread_mutex_unlock(&t->lock);
		pthread_mutex_lock(&c->lock);
		c->all = 1;
		pthread_cond_signal(&c->cond);
		pthread_mutex_unlock(&c->lock);
		return;
	}
	size_t klen = ev->klen;
	int isdir = klen == 0 || ev->key[klen - 1] == '/';
	size_t end = isdir && klen ? klen - 1 : klen;
	size_t s = end;
	while (s > 0 && ev->key[s - 1] != '/')
		s--;
	struct inode *p = NULL;
	uint64_t ino = 0, parent = 0;
	pthread_mutex_lock(&t->lock);
	struct inode *n = do_itab_walk(t, ev->key, klen, &p);
	if (n) {
		n->attr_ns = 0;
		n->dir_cached = 0;
		ino = n->ino;
	}
	/*
	 * The name: when it went, or (a file) when we know only its directory
	 * (the kernel may cache that it does not exist). Not for a listing
	 * that changed: dropping a directory's name drops all below it.
	 */
	if (p && (ev->kind == KVFS_INVAL_GONE || (!n && !isdir)))
		parent = p->ino;
	pthread_mutex_unlock(&t->lock);
	if (!ino && !parent)
		return;
	pthread_mutex_lock(&c->lock);
	do_push(c, ino, parent, ev->key + s, end - s);
	pthread_mutex_unlock(&c->lock);
}

struct all_ctx {
	struct cnote **list;
	int err;
};

static void collect(void *arg, struct inode *n)
{
	struct all_ctx *a = arg;
	size_t nlen = strlen(n->name);
	struct cnote *m = malloc(sizeof(*m) + nlen + 1);
	if (!m) {
		a->err = 1;
		return;
	}
	m->ino = n->ino;
	m->parent = n->parent && !n->detached ? n->parent->ino : 0;
	memcpy(m->name, n->name, nlen + 1);
	m->next = *a->list;
	*a->list = m;
}

static void tell(struct fs *fs, const struct cnote *m)
{
	/* -ENOENT: the kernel had nothing cached; anything else is worth a line */
	int ret = 0;
	if (m->parent)
		ret = fuse_lowlevel_notify_inval_entry(fs->se, m->parent, m->name, strlen(m->name));
	if (ret && ret != -ENOENT)
		log_debug("notify_inval_entry(%llu, %s): %s", (unsigned long long)m->parent,
			  m->name, strerror(-ret));
	if (m->ino)
		ret = fuse_lowlevel_notify_inval_inode(fs->se, m->ino, 0, 0);
	if (m->ino && ret && ret != -ENOENT)
		log_debug("notify_inval_inode(%llu): %s", (unsigned long long)m->ino,
			  strerror(-ret));
}

static void *coh_thread(void *arg)
{
	struct coh *c = arg;
	struct fs *fs = c->fs;
	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		if (!c->head && !c->all) {
			pthread_cond_wait(&c->cond, &c->lock);
			continue;
		}
		struct cnote *list = c->head;
		int all = c->all;
		c->head = c->tail = NULL;
		c->len = 0;
		c->all = 0;
		pthread_mutex_unlock(&c->lock);
		if (all) {
			while (list) {
				struct cnote *n = list->next;
				free(list);
				list = n;
			}
			struct all_ctx a = {.list = &list};
			pthread_mutex_lock(&fs->it.lock);
			do_itab_each(&fs->it, collect, &a);
			pthread_mutex_unlock(&fs->it.lock);
		}
		while (list) {
			struct cnote *n = list->next;
			tell(fs, list);
			free(list);
			list = n;
		}
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

int coh_start(struct fs *fs, int track)
{
	struct coh *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fs = fs;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	int ret = pthread_create(&c->thr, NULL, coh_thread, c);
	if (ret) {
		free(c);
		return -ret;
	}
	fs->coh = c;
	if (track) {
		ret = kvfs_track(fs->kv, inval_cb, c);
		c->tracking = !ret;
	}
	return ret > 0 ? -ret : ret;
}

void coh_inval_inode(struct fs *fs, uint64_t ino)
{
	struct coh *c = fs->coh;
	pthread_mutex_lock(&c->lock);
	do_push(c, ino, 0, "", 0);
	pthread_mutex_unlock(&c->lock);
}

void coh_stop(struct fs *fs)
{
	struct coh *c = fs->coh;
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = 1;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thr, NULL);
	while (c->head) {
		struct cnote *n = c->head->next;
		free(c->head);
		c->head = n;
	}
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c);
	fs->coh = NULL;
}
