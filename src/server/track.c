/*
 * track: the tracked-keys table and the per-session invalidation queues
 * (see track.h). Linear probing over 16-byte entries with backward-shift
 * deletion, so the table needs no tombstones; all the entries of one hash
 * lie in one probe run.
 */
#include "server/track.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/wire.h"

#define TRACK_SEED 0x747261636bULL /* "track" */

struct tentry {
	uint64_t hash;
	uint32_t epoch;
	uint16_t sidx;
	uint16_t used;
};
_Static_assert(sizeof(struct tentry) == 16, "a tracking entry is 16 bytes");

struct tsess {
	uint32_t epoch; /* entries of another epoch are stale */
	uint8_t on;	/* tracking */
	uint8_t all;	/* must forget everything: RP_INVAL_ALL next */
	uint8_t *q;	/* queued INVAL entries, encoded */
	size_t qlen, qcap;
	atomic_int has; /* qlen or all: read without the lock (track_has) */
};

struct track {
	pthread_mutex_t lock;
	struct tentry *tab; /* lock; NULL until the first track_on */
	uint32_t slots, mask, count;
	uint32_t n_sess;
	struct tsess *sess; /* lock */
	struct track_stats st;
	atomic_uint_fast64_t seq;
};

int track_open(struct track **out, uint32_t n_sess, uint32_t slots)
{
	if (slots < 16 || (slots & (slots - 1)) || n_sess == 0 || n_sess > 65536)
		return -EINVAL;
	struct track *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->sess = calloc(n_sess, sizeof(*t->sess));
	if (!t->sess) {
		free(t);
		return -ENOMEM;
	}
	pthread_mutex_init(&t->lock, NULL);
	t->slots = slots;
	t->mask = slots - 1;
	t->n_sess = n_sess;
	*out = t;
	return 0;
}

void track_close(struct track *t)
{
	if (!t)
		return;
	for (uint32_t i = 0; i < t->n_sess; i++)
		free(t->sess[i].q);
	free(t->sess);
	free(t->tab);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static uint64_t khash(const void *key, size_t klen)
{
	return hash64(key, klen, TRACK_SEED);
}

/* Session s must forget everything: its entries go stale, its queue empties. */
static void do_forget_all(struct tsess *s)
{
	s->epoch++;
	s->all = 1;
	s->qlen = 0;
	atomic_store(&s->has, 1);
}

static void do_queue(struct track *t, struct tsess *s, unsigned kind, const void *key, size_t klen)
{
	if (s->all)
		return; /* everything goes anyway */
	size_t need = WIRE_INVAL_HDR + klen;
	if (s->qlen + need > TRACK_QUEUE_MAX) {
		do_forget_all(s);
		t->st.dropped++;
		return;
	}
	if (s->qlen + need > s->qcap) {
		size_t cap = s->qcap ? s->qcap : 1024;
		while (cap < s->qlen + need)
			cap *= 2;
		uint8_t *q = realloc(s->q, cap);
		if (!q) {
			do_forget_all(s);
			t->st.dropped++;
			return;
		}
		s->q = q;
		s->qcap = cap;
	}
	s->qlen += (size_t)wire_inval_encode(s->q + s->qlen, s->qcap - s->qlen, kind, key, klen);
	t->st.queued++;
	atomic_store(&s->has, 1);
}

/* Remove the entry at slot i, shifting back the rest of its run. */
static void do_remove(struct track *t, uint32_t i)
{
	uint32_t j = i;
	for (;;) {
		j = (j + 1) & t->mask;
		if (!t->tab[j].used)
			break;
		uint32_t k = (uint32_t)t->tab[j].hash & t->mask;
		/* Stays when its home k lies cyclically in (i, j]. */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		t->tab[i] = t->tab[j];
		i = j;
	}
	t->tab[i].used = 0;
	t->count--;
}

int track_on(struct track *t, uint32_t sidx)
{
	int ret = 0;
	if (sidx >= t->n_sess)
		return -EINVAL;
	pthread_mutex_lock(&t->lock);
	if (!t->tab) {
		t->tab = calloc(t->slots, sizeof(*t->tab));
		if (!t->tab)
			ret = -ENOMEM;
	}
	if (!ret) {
		struct tsess *s = &t->sess[sidx];
		if (!s->on) {
			s->epoch++;
			s->on = 1;
			s->all = 0;
			s->qlen = 0;
			atomic_store(&s->has, 0);
		}
	}
	pthread_mutex_unlock(&t->lock);
	return ret;
}

void track_off(struct track *t, uint32_t sidx)
{
	if (sidx >= t->n_sess)
		return;
	pthread_mutex_lock(&t->lock);
	struct tsess *s = &t->sess[sidx];
	s->on = 0;
	s->all = 0;
	atomic_store(&s->has, 0);
	s->epoch++;
	free(s->q);
	s->q = NULL;
	s->qlen = s->qcap = 0;
	pthread_mutex_unlock(&t->lock);
}

void track_read(struct track *t, uint32_t sidx, const void *key, size_t klen)
{
	uint64_t h = khash(key, klen);
	if (sidx >= t->n_sess)
		return;
	pthread_mutex_lock(&t->lock);
	struct tsess *s = &t->sess[sidx];
	if (!s->on || !t->tab)
		goto out;
	uint32_t i = (uint32_t)h & t->mask;
	for (; t->tab[i].used; i = (i + 1) & t->mask) {
		struct tentry *x = &t->tab[i];
		if (x->hash == h && x->sidx == sidx) {
			x->epoch = s->epoch;
			goto out;
		}
	}
	if (t->count + 1 > t->slots / 4 * 3) {
		/* Full: start afresh; every tracking session forgets what it cached. */
		memset(t->tab, 0, sizeof(*t->tab) * t->slots);
		t->count = 0;
		t->st.overflows++;
		for (uint32_t k = 0; k < t->n_sess; k++)
			if (t->sess[k].on)
				do_forget_all(&t->sess[k]);
		atomic_fetch_add(&t->seq, 1);
		i = (uint32_t)h & t->mask;
	}
	t->tab[i] =
	    (struct tentry){.hash = h, .epoch = s->epoch, .sidx = (uint16_t)sidx, .used = 1};
	t->count++;
out:
	pthread_mutex_unlock(&t->lock);
}

/* Take every entry of key's hash out of the table; queue key for their live sessions. */
static int do_changed(struct track *t, const void *key, size_t klen, unsigned kind, uint32_t self)
{
	uint64_t h = khash(key, klen);
	int queued = 0;
	uint32_t i = (uint32_t)h & t->mask;
	while (t->tab[i].used) {
		struct tentry x = t->tab[i];
		if (x.hash != h || x.sidx == self) {
			i = (i + 1) & t->mask;
			continue;
		}
		do_remove(t, i); /* slot i now holds the next of the run, or nothing */
		struct tsess *s = &t->sess[x.sidx];
		if (s->on && s->epoch == x.epoch) {
			do_queue(t, s, kind, key, klen);
			queued = 1;
		}
	}
	return queued;
}

void track_changed(struct track *t, const void *key, size_t klen, unsigned kind, int parents,
		   uint32_t self)
{
	const uint8_t *k = key;
	int queued = 0;
	pthread_mutex_lock(&t->lock);
	if (!t->tab || !t->count)
		goto out;
	queued |= do_changed(t, key, klen, kind, self);
	if (parents) {
		/* "a/b/c" and "a/b/c/" (a marker) both have the parents "a/b/", "a/" and "". */
		size_t end = klen && k[klen - 1] == '/' ? klen - 1 : klen;
		for (size_t p = end; p > 0; p--)
			if (k[p - 1] == '/')
				queued |= do_changed(t, k, p, WIRE_INVAL_CHANGED, self);
		queued |= do_changed(t, k, 0, WIRE_INVAL_CHANGED, self);
	}
out:
	pthread_mutex_unlock(&t->lock);
	if (queued)
		atomic_fetch_add(&t->seq, 1);
}

size_t track_take(struct track *t, uint32_t sidx, uint8_t *buf, size_t cap, uint64_t *n, int *all)
{
	size_t used = 0;
	*n = 0;
	*all = 0;
	if (sidx >= t->n_sess)
		return 0;
	pthread_mutex_lock(&t->lock);
	struct tsess *s = &t->sess[sidx];
	if (s->all) {
		s->all = 0;
		*all = 1;
		goto out;
	}
	size_t pos = 0, klen;
	unsigned kind;
	const uint8_t *key;
	while (pos < s->qlen) {
		size_t at = pos;
		if (wire_inval_next(s->q, s->qlen, &pos, &kind, &key, &klen) != 1)
			break; /* cannot be: we encoded them */
		if (used + (pos - at) > cap) {
			pos = at;
			break;
		}
		memcpy(buf + used, s->q + at, pos - at);
		used += pos - at;
		(*n)++;
	}
	if (pos) {
		memmove(s->q, s->q + pos, s->qlen - pos);
		s->qlen -= pos;
	}
out:
	atomic_store(&s->has, s->qlen > 0 || s->all);
	pthread_mutex_unlock(&t->lock);
	return used;
}

int track_has(struct track *t, uint32_t sidx)
{
	return sidx < t->n_sess && atomic_load_explicit(&t->sess[sidx].has, memory_order_acquire);
}

uint64_t track_seq(struct track *t)
{
	return atomic_load_explicit(&t->seq, memory_order_acquire);
}

void track_get_stats(struct track *t, struct track_stats *out)
{
	pthread_mutex_lock(&t->lock);
	*out = t->st;
	out->entries = t->count;
	pthread_mutex_unlock(&t->lock);
}
