/*
 * track: which sessions read which keys, so that a change can be told to
 * them (OP_TRACK / OP_INVAL in wire.h, README "Consistency and listings").
 *
 * A session that sent OP_TRACK has each key it STATs, GETs or PINs and each
 * prefix it LISTs recorded as one 16-byte entry {key hash, session slot,
 * slot epoch} in one open-addressing table for the whole server (all
 * endpoints). A change of key K (PUT, commit, DELETE, RENAME, SETATTR,
 * eviction) takes every entry of K's hash out of the table, but the
 * writer's, and queues {kind, K} for each live session it names; a change that adds or removes a key does the
 * same for each prefix above K ("a/b/", "a/", ""), so listings cached by
 * tracking sessions are invalidated too. Hash collisions only cost a
 * needless invalidation. The service thread of each session's endpoint
 * takes the queued entries (track_take) and sends them.
 *
 * Bounds and fallbacks: the table holds at most 3/4 of its slots; when it
 * is full it is emptied and every tracking session is told to forget all
 * it cached (RP_INVAL_ALL), after which tracking starts afresh. A session's
 * queue holds at most TRACK_QUEUE_MAX bytes: a session that does not take
 * its invalidations loses its entries (its slot epoch moves on) and gets
 * RP_INVAL_ALL once it takes messages again. An entry of a session that
 * ended is stale (another epoch) and is dropped when met.
 *
 * Thread safety: every call takes track's own mutex, a leaf (it may be
 * taken with srv.store_lock held; nothing is taken under it).
 */
#ifndef KVFS_SERVER_TRACK_H
#define KVFS_SERVER_TRACK_H

#include <stddef.h>
#include <stdint.h>

#define TRACK_SLOTS_DEFAULT (1u << 20)	/* 16 MiB of entries, allocated at the first track_on */
#define TRACK_QUEUE_MAX	    (64 * 1024) /* bytes of invalidations queued per session */

struct track;

/* Counters, for tests and stats. */
struct track_stats {
	uint64_t entries;   /* in the table now */
	uint64_t overflows; /* table emptied because full */
	uint64_t dropped;   /* sessions that lost their entries because their queue was full */
	uint64_t queued;    /* invalidation entries queued */
};

/* n_sess: session slots (0 .. n_sess-1); slots: table size, a power of two >= 16. */
int track_open(struct track **out, uint32_t n_sess, uint32_t slots);
void track_close(struct track *t);

/* Slot sidx starts tracking (a new session, or one that sent OP_TRACK). 0 or -ENOMEM. */
int track_on(struct track *t, uint32_t sidx);
/* Slot sidx's session ended: its entries go stale, its queue is freed. */
void track_off(struct track *t, uint32_t sidx);
/* Session sidx (tracking) read key (or listed prefix) key. Call before reading the store. */
void track_read(struct track *t, uint32_t sidx, const void *key, size_t klen);
/*
 * Key changed (kind WIRE_INVAL_CHANGED) or went (WIRE_INVAL_GONE); parents:
 * a key was added or removed, so each prefix above key changed too. Call
 * after the store has the change. Session self (the writer; TRACK_NONE:
 * none) is not told, and keeps its entries: its own client knows what it
 * did (Redis's NOLOOP), and must still hear of the next writer's change.
 */
#define TRACK_NONE UINT32_MAX
void track_changed(struct track *t, const void *key, size_t klen, unsigned kind, int parents,
		   uint32_t self);
/*
 * Take session sidx's queued invalidations: whole entries, as many as fit
 * buf[0, cap), encoded as an INVAL message's data. Returns the bytes, *n
 * the entries, *all whether the session must forget everything (then
 * nothing else is returned). 0 with *all 0: nothing queued.
 */
size_t track_take(struct track *t, uint32_t sidx, uint8_t *buf, size_t cap, uint64_t *n, int *all);
/* Has session sidx anything queued (no lock taken: a hint for the sender)? */
int track_has(struct track *t, uint32_t sidx);
/* Something was queued since the value last returned (an endpoint's cheap "any work?" check). */
uint64_t track_seq(struct track *t);
void track_get_stats(struct track *t, struct track_stats *out);

#endif
