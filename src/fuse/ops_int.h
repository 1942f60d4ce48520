/*
 * ops_int: what the files of the mount's lowlevel operations share, and
 * only they (main.c sees fs.h). ops.c holds the operations table, inode
 * attributes and lookups; file.c open files; namei.c names; dir.c
 * listings; xattr.c extended attributes and statfs.
 *
 * Locks: itab.lock (inode.h) for the inode table and each node's cached
 * state; handle.lock serialises the writes, truncates and commits of one
 * open file. Order: handle.lock, then itab.lock. No lock is held across a
 * request to a server except handle.lock (its upload is in use).
 */
#ifndef KVFS_FUSE_OPS_INT_H
#define KVFS_FUSE_OPS_INT_H

#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "fuse/coherence.h"
#include "fuse/fs.h"
#include "fuse/fsmetrics.h"

#define KEYCAP (KVFS_MAX_KEY + 2) /* a key, a '/' and the NUL */
/*
 * For this long after a handle here was open for writing, readers use the
 * page cache only alone (file.c) and attributes are not cached (ops.c
 * attr_ttl): the kernel keeps one size per inode, and a local writer moves
 * it under readers of other versions.
 */
#define WRITE_QUIET_NS (2 * 1000000000LL)

/* An open file (fi->fh). */
struct handle {
	/* guards fresh, up, dirty and cached; node and flags never change after open */
	pthread_mutex_t lock;
	struct inode *node;
	int flags;	   /* open flags */
	int fresh;	   /* value known empty (created or O_TRUNC): no KEEP needed */
	kvfs_upload_t *up; /* pending writes, NULL when none */
	int dirty;	   /* up holds writes not yet committed */
	int cached;	   /* uses the page cache (else FOPEN_DIRECT_IO); fixed at open */
	/*
	 * A writer using the page cache: the version its cached pages came
	 * from (the pinned one, then each commit's), and whether they may
	 * also hold another version's bytes (the key changed elsewhere in
	 * between), so that its commits must not leave them as the cache.
	 */
	uint64_t view_version;
	int mixed;
	int flushed;  /* itab.lock: closed (FLUSH) with no read or write since */
	int cautious; /* a reader cached soon after a write (file.c do_may_cache); fixed at open */
	/*
	 * The version this handle reads, pinned on its server at open (or at
	 * the first read after a commit). Readers hold pin_lock shared for
	 * the whole read; replacing the pin takes it exclusively.
	 */
	pthread_rwlock_t pin_lock;
	kvfs_pin_t *pin;	   /* pin_lock */
	struct kvfs_attr pin_attr; /* pin_lock: the pinned (or whole) version's attributes */
	size_t lease_max;	   /* pin_lock: the pin's server's largest lease (slot_size) */
	uint64_t pin_commits;	   /* pin_lock: node->commits when the pin was taken */
	/*
	 * A reader of a small value holds the whole value instead of a pin
	 * (see reader_open); immutable once open.
	 */
	char *whole;
	size_t whole_len;
};

/* Map a libkvfs error to what a file system caller should see (positive errno). */
int fs_errno(int err);

static inline struct fs *FS(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* An error reply (err 0: a success without data), counted for /metrics. */
static inline void reply_err(fuse_req_t req, int err)
{
	int e = fs_errno(err);
	fsm_error(e);
	fuse_reply_err(req, e);
}

/*
 * The file type a key's stored mode gives it: a symlink, fifo, socket or
 * device when typed so (common/devnum.h), else a regular file.
 */
static inline uint32_t type_of(const struct kvfs_attr *a)
{
	switch (a->mode & S_IFMT) {
	case S_IFLNK:
	case S_IFIFO:
	case S_IFSOCK:
	case S_IFCHR:
	case S_IFBLK:
		return a->mode & S_IFMT;
	default:
		return S_IFREG;
	}
}

/* A device node: its device number lives in its value (common/devnum.h). */
static inline int is_dev(uint32_t type)
{
	return type == S_IFCHR || type == S_IFBLK;
}

/* Attributes of a directory without a marker key. */
static inline struct kvfs_attr dir_default(void)
{
	return (struct kvfs_attr){
	    .mode = S_IFDIR | KVFS_MODE_UNSET, .uid = KVFS_ID_UNSET, .gid = KVFS_ID_UNSET};
}

static inline int64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static inline struct handle *handle_of(struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

static inline int writable(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY;
}

/* ---- attributes and lookups (ops.c) ---------------------------------------- */

void fill_stat(const struct fs *fs, uint64_t ino, uint32_t type, const struct kvfs_attr *a,
	       struct stat *st);
/* Caller holds itab.lock. */
void do_set_attr(struct inode *n, const struct kvfs_attr *a);
/*
 * Record fresh attributes of n and adjust them for showing: a pending
 * upload's size wins over the committed one.
 */
void node_seen(struct fs *fs, struct inode *n, struct kvfs_attr *a);
/*
 * How long the kernel may keep n's attributes (attr_ttl) and its name
 * (entry_ttl) from this thread's reply: the configured timeouts while
 * invalidations make that safe (coherence.h), capped by the key's expiry.
 */
double attr_ttl(struct fs *fs, struct inode *n);
double entry_ttl(struct fs *fs, struct inode *n);
void reply_entry(fuse_req_t req, struct fs *fs, struct inode *n, const struct kvfs_attr *a);
/*
 * Device nodes (is_dev): make sure n's device number is known for the
 * version in *a, from n's cache, else by a GET of key's value (one small
 * round trip, never for other types), which also refreshes *a. Returns 0,
 * -ENOENT (replaced by a key of another type meanwhile) or -errno.
 */
int node_rdev(struct fs *fs, struct inode *n, const char *key, struct kvfs_attr *a);
/* st->st_rdev of a device node, as node_rdev last learnt it. */
void stat_rdev(struct fs *fs, struct inode *n, struct stat *st);

struct probe {
	size_t plen;
	int marker, children;
	struct kvfs_attr attr;
};
int probe_dir(struct fs *fs, const char *dkey, struct probe *p);
int resolve(struct fs *fs, char *key, int len, uint32_t *type, struct kvfs_attr *a);

/* ---- open files (file.c) ---------------------------------------------------- */

void commit_attrs(struct fs *fs, struct inode *n, struct kvfs_setattr *sa);
struct handle *handle_new(struct fs *fs, struct inode *n, int flags);
/*
 * The new handle h (its pin taken, or its value new) is open: decide whether
 * it uses the page cache (fi->direct_io, fi->keep_cache) and count it on its
 * node. a: the version it reads (NULL when its value starts empty: O_TRUNC).
 * May wait up to 100 ms for handles that were closed but not yet released.
 */
void handle_opened(struct fs *fs, struct handle *h, struct fuse_file_info *fi,
		   const struct kvfs_attr *a);
int handle_close(struct fs *fs, struct handle *h);
int handle_truncate(struct fs *fs, struct handle *h, uint64_t size);
int reader_attr(struct fs *fs, struct fuse_file_info *fi, struct kvfs_attr *a, double *timeout);

/* ---- the operations, for fs_ops (ops.c) ------------------------------------- */

void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
	      struct fuse_file_info *fi);
void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	       struct fuse_file_info *fi);
void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void op_readlink(fuse_req_t req, fuse_ino_t ino);
void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
	       const char *newname, unsigned int flags);
void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);

void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi);
void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

void op_statfs(fuse_req_t req, fuse_ino_t ino);
void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
		 int flags);
void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

#endif
