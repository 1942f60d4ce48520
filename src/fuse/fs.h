/*
 * fs: state shared by the kvfs mount's lowlevel operations (ops.c and the
 * files of ops_int.h) and its main loop (main.c).
 */
#ifndef KVFS_FUSE_FS_H
#define KVFS_FUSE_FS_H

#include <fuse_lowlevel.h>
#include <stdint.h>
#include <sys/types.h>

#include "fuse/inode.h"
#include "kvfs/kvfs.h"

struct fs_opts {
	char *config;	 /* -c FILE or the first argument */
	int ro;		 /* -o ro */
	int allow_other; /* -o allow_other (adds default_permissions) */
	uid_t uid;	 /* owner of keys that stored none */
	gid_t gid;	 /* group of keys that stored none */
	mode_t umask;	 /* applied to keys that stored no mode */
	double attr_timeout, entry_timeout, negative_timeout;
	int inval;	      /* -o inval (default) / noinval: track, and long timeouts */
	double short_timeout; /* the fallback while not coherent (coherence.h) */
	unsigned max_read, max_write;
	unsigned threads;
};

struct fs {
	kvfs_t *kv;
	struct fs_opts o;
	struct itab it;
	struct fuse_session *se;
	const char *mnt;	 /* the mount point (absolute) */
	struct timespec mounted; /* time shown for directories without a marker key */
	struct coh *coh;	 /* invalidations (coherence.h), NULL: -o noinval */
};

/* The worker's registered receive buffer, where FUSE_WRITE data lands. */
struct fs_worker_buf {
	void *mem;
	size_t len;
	kvfs_mr_t *mr;
	char *scratch; /* max_read bytes for reads larger than a slot (file.c), or NULL */
};
/* Set by each worker thread for itself (NULL elsewhere). */
extern __thread struct fs_worker_buf *fs_tls_buf;

extern const struct fuse_lowlevel_ops fs_ops;

#endif
