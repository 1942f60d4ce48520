/*
 * inode: the mount's table of FUSE inode numbers.
 *
 * The kernel names files by inode number; kvfs names them by key. Each node
 * is one (parent, name) pair the kernel has looked up, so a key is the path
 * of names from the root: renaming a directory node moves everything below
 * it without touching the children. Nodes live until the kernel forgets
 * them (nlookup reaches 0) and no child needs them as a parent.
 *
 * A node whose name was unlinked or renamed over is "detached": it keeps
 * its number for the kernel, but (parent, name) lookups no longer find it.
 * A name whose type changes (file replaced by a directory) gets a new node,
 * because the kernel refuses an inode whose type changes.
 *
 * One mutex guards the whole table (itab.lock); holds are short and never
 * span a request to a server.
 */
#ifndef KVFS_FUSE_INODE_H
#define KVFS_FUSE_INODE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kvfs/kvfs.h"

#define ITAB_ROOT      1 /* FUSE_ROOT_ID */
#define NAME_MAX_BYTES 255

struct inode {
	uint64_t ino;
	struct inode *parent; /* NULL for the root */
	char *name;	      /* component ("" for the root) */
	uint32_t type;	      /* S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR or S_IFBLK */
	uint64_t nlookup;     /* the kernel's references */
	uint64_t nchild;      /* attached nodes naming this one as parent */
	uint64_t nopen;	      /* open file handles (RELEASE may come after FORGET) */
	int detached;

	/* Cached state, under itab.lock. */
	struct kvfs_attr attr;	     /* last attributes seen (attr.version 0 = none yet) */
	int64_t attr_ns;	     /* when (CLOCK_MONOTONIC) */
	uint64_t cache_version;	     /* version whose bytes the page cache may hold; 0 = none */
	int nwriters;		     /* handles with a pending upload */
	int nwopen;		     /* open writable handles */
	int64_t write_ns;	     /* last open or close of a writable handle (CLOCK_MONOTONIC) */
	struct kvfs_attr cache_attr; /* attributes of cache_version */
	int ncached;		     /* open readers that use the page cache */
	int nfiles;		     /* open file handles, readers and writers */
	int nflushed;	  /* of those, closed (FLUSH) with no I/O since: RELEASE is near */
	int nwflushed;	  /* of the flushed, writable ones */
	int pcw;	  /* a writer here uses the page cache (it was alone at open) */
	int pcw_mixed;	  /* another handle read meanwhile (a private mapping fills the cache) */
	int ncautious;	  /* cached readers opened soon after a write (file.c handle_opened) */
	int nwwait;	  /* writers waiting for those to close */
	uint64_t commits; /* commits made here: writers' older pins are stale (file.c) */
	uint64_t pending_size; /* size of the upload written last */
	int64_t commit_mtime; /* utimens while writes were pending: the commit keeps it (0 = now) */
	/* Device nodes: the device number (st_rdev) read from version rdev_version's value. */
	uint64_t rdev;
	uint64_t rdev_version;
	int rdev_known; /* rdev is set (by mknod: rdev_version 0, the version not known yet) */
	int dir_cached; /* a directory the kernel may serve from its cache (dir.c, coherence.c) */

	struct inode *next_ino, *next_name; /* hash chains */
};

struct itab {
	pthread_mutex_t lock;
	pthread_cond_t closed; /* broadcast (under lock) when a file handle closes */
	struct inode **by_ino, **by_name;
	size_t nbuckets, count;
	uint64_t next_ino;
	struct inode *root;
};

int itab_init(struct itab *t);
void itab_destroy(struct itab *t);

/*
 * Find or create the node for (parent, name) with the given type, and add
 * one kernel reference. An attached node of another type is detached and
 * replaced. Returns the node, or NULL (ENOMEM, or an unknown parent).
 */
struct inode *itab_lookup(struct itab *t, uint64_t parent, const char *name, uint32_t type);
/* The node, or NULL. The pointer stays valid while the kernel holds it. */
struct inode *itab_get(struct itab *t, uint64_t ino);
/* Drop n kernel references; frees the node when nothing needs it. */
void itab_forget(struct itab *t, uint64_t ino, uint64_t n);
/*
 * An open file handle holds its node: the kernel may send FORGET for the
 * inode before the daemon has processed the file's asynchronous RELEASE.
 * itab_unhold may free the node.
 */
void itab_hold(struct itab *t, struct inode *n);
void itab_unhold(struct itab *t, struct inode *n);

/*
 * The key of node ino plus suffix ("" or "/") into buf. Returns the key
 * length, -ENOENT (unknown node), or -ENAMETOOLONG (over cap - 1 bytes or
 * over KVFS_MAX_KEY).
 */
int itab_key(struct itab *t, uint64_t ino, const char *suffix, char *buf, size_t cap);
/* The key of (parent, name) plus suffix; as itab_key, and -ENAMETOOLONG for a bad component. */
int itab_child_key(struct itab *t, uint64_t parent, const char *name, const char *suffix, char *buf,
		   size_t cap);

/* (parent, name) was removed: detach its node, if any. */
void itab_unlink(struct itab *t, uint64_t parent, const char *name);
/*
 * Move the node at (parent, name), if any, to (newparent, newname); what was
 * there is detached. The moved node's cached attributes count as stale.
 */
int itab_rename(struct itab *t, uint64_t parent, const char *name, uint64_t newparent,
		const char *newname);

/*
 * For invalidations (coherence.c), caller holds t->lock: the attached node
 * named by key (components from the root; a trailing '/' is ignored; ""
 * is the root), or NULL; *parent gets the node of its last component's
 * directory when that is known (else NULL). No reference is taken.
 */
struct inode *do_itab_walk(struct itab *t, const char *key, size_t klen, struct inode **parent);
/* Call fn on every node, caller holds t->lock; fn must not change the table. */
void do_itab_each(struct itab *t, void (*fn)(void *arg, struct inode *n), void *arg);

/*
 * Can a stored key component be a file name? Not empty, not "." or "..",
 * at most 255 bytes, no '/'.
 */
int name_ok(const char *name, size_t len);

#endif
