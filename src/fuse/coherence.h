/*
 * coherence: the mount's side of server invalidations (issue 12, README
 * "Consistency and listings"). With -o inval (the default) the mount asks
 * libkvfs to track what it reads (kvfs_track); each invalidation drops the
 * mount's own cached attributes of the node at once (in libkvfs's
 * callback) and queues the kernel's: a dedicated thread sends
 * fuse_lowlevel_notify_inval_inode / _inval_entry, never a request
 * handler, so a notification cannot deadlock against a request of the
 * same inode.
 *
 * Timeouts: replies may carry the long attr_timeout / entry_timeout only
 * while every server tracks this mount and no invalidation raced the
 * request (coh_begin took kvfs_track_state before it; coh_ttl compares).
 * Otherwise, or when a server's tracking is lost, they carry the fallback
 * (at most 1 s), and a lost or regained server makes the mount drop every
 * cached name and attribute. A key's expiry caps both.
 */
#ifndef KVFS_FUSE_COHERENCE_H
#define KVFS_FUSE_COHERENCE_H

#include <stdint.h>

struct fs;

/*
 * Start the notifier thread and, with track, tracking (after kvfs_open,
 * before the workers). 0, or -errno: the thread did not start (fs->coh
 * NULL), or tracking did not (the thread runs; coh_tracking is 0).
 */
int coh_start(struct fs *fs, int track);
/* Are the servers tracking for this mount (-o inval, and kvfs_track worked)? */
int coh_tracking(struct fs *fs);
/*
 * Have the kernel drop ino's pages and attributes, from the notifier thread:
 * never from a request handler, whose request may hold what the
 * invalidation waits for. Needs the thread (coh_start).
 */
void coh_inval_inode(struct fs *fs, uint64_t ino);
/* After kvfs_close (no more callbacks): stop the thread, free the queue. */
void coh_stop(struct fs *fs);

/* This thread's request begins: note the tracking state (see above). */
void coh_begin(struct fs *fs);
/* The state to note in a handle (a listing read at opendir, replied later). */
uint64_t coh_state(struct fs *fs);
/* This thread's request goes on with the state s noted earlier; coh_end: it is over. */
void coh_set(uint64_t s);
void coh_end(void);
/*
 * How long a reply of this thread's request may let the kernel cache what
 * it carries: base (the configured timeout) while coherent, else the
 * fallback; capped by expiry (absolute unix seconds, 0: none).
 */
double coh_ttl(struct fs *fs, double base, int64_t expiry);
/* May the mount's own attributes, age_ns old, answer a GETATTR? */
int coh_fresh(struct fs *fs, int64_t age_ns);

#endif
