/*
 * ops: the kvfs mount's lowlevel FUSE operations, each a thin translation
 * to libkvfs calls (file semantics: DESIGN.md, README "Semantics").
 *
 * - Names: key "a/b/c" is file a/b/c. A directory is a key prefix "a/b/"
 *   or a marker key "a/b/" that mkdir stores (it carries the directory's
 *   mode, owner and mtime). A file shadows a directory of the same name.
 *   Keys that cannot be paths are skipped in listings (inode.c name_ok).
 * - Open pins the key's current value on its server (kvfs_pin_open), so a
 *   handle reads one version from first to last byte. Reads lend the
 *   registered receive slot (kvfs_pin_get_lease) and reply from it: the
 *   bytes land there by RMA and go to the kernel with no copy. From a server
 *   on this host whose pool is mapped here, they reply straight from the
 *   pool (kvfs_pin_map), and the server moves nothing. A read-only
 *   open of a small value fetches it whole instead (reader_open). The page
 *   cache is kept only while the version is unchanged (see op_open).
 * - Writes go to the handle's upload session, opened at the first write
 *   (starting from the current value unless the file was created or
 *   truncated by this open). FUSE_WRITE data already sits in the worker's
 *   registered buffer, so the server pulls it from there (no copy).
 *   flush (close) and fsync commit; readers see the old or the new value.
 *   A handle with uncommitted writes reads them back from its upload.
 * - Listings are fetched whole at opendir (one pass per server) and served
 *   with attributes (readdirplus), so `ls -l` needs no request per file.
 * - Every libkvfs failure that means "server unreachable" becomes EIO.
 *
 * Locks: itab.lock (inode.h) for the inode table and each node's cached
 * state; handle.lock serialises the writes, truncates and commits of one
 * open file. Order: handle.lock, then itab.lock. No lock is held across a
 * request to a server except handle.lock (its upload is in use).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>

#include "common/log.h"
#include "fuse/fs.h"

#define KEYCAP (KVFS_MAX_KEY + 2) /* a key, a '/' and the NUL */
/*
 * A reader uses the page cache only when no handle here has been open for
 * writing for this long: the kernel keeps one size per inode, and a local
 * writer moves it under readers of other versions.
 */
#define WRITE_QUIET_NS (2 * 1000000000LL)
/* A read-only open of a value up to this size fetches it whole (reader_open). */
#define WHOLE_MAX (64 * 1024)

__thread struct fs_worker_buf *fs_tls_buf;

struct handle {
	pthread_mutex_t lock; /* guards the fields below */
	struct inode *node;
	int flags;	   /* open flags */
	int fresh;	   /* value known empty (created or O_TRUNC): no KEEP needed */
	kvfs_upload_t *up; /* pending writes, NULL when none */
	int dirty;	   /* up holds writes not yet committed */
	int cached;	   /* uses the page cache (else FOPEN_DIRECT_IO) */
	/*
	 * The version this handle reads, pinned on its server at open (or at
	 * the first read after a commit). Readers hold pin_lock shared for
	 * the whole read; replacing the pin takes it exclusively.
	 */
	pthread_rwlock_t pin_lock;
	kvfs_pin_t *pin;
	struct kvfs_attr pin_attr; /* the pinned (or whole) version's attributes */
	/*
	 * A reader of a small value holds the whole value instead of a pin
	 * (see reader_open); immutable once open.
	 */
	char *whole;
	size_t whole_len;
};

static struct fs *FS(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

int fs_errno(int err)
{
	switch (-err) {
	case 0:
		return 0;
	case ETIMEDOUT:
	case ECONNREFUSED:
	case ECONNRESET:
	case ECONNABORTED:
	case EPIPE:
	case ENOTCONN:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EPROTO:
	case ESHUTDOWN:
	case EBADMSG:
		return EIO;
	default:
		return err < 0 ? -err : EIO;
	}
}

static void reply_err(fuse_req_t req, int err)
{
	fuse_reply_err(req, fs_errno(err));
}

static uint32_t type_of(const struct kvfs_attr *a)
{
	return (a->mode & S_IFMT) == S_IFLNK ? S_IFLNK : S_IFREG;
}

/* Attributes of a directory without a marker key. */
static struct kvfs_attr dir_default(void)
{
	return (struct kvfs_attr){
	    .mode = S_IFDIR | KVFS_MODE_UNSET, .uid = KVFS_ID_UNSET, .gid = KVFS_ID_UNSET};
}

static void fill_stat(const struct fs *fs, uint64_t ino, uint32_t type, const struct kvfs_attr *a,
		      struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	mode_t perm;
	if (type == S_IFLNK)
		perm = 0777;
	else if (a->mode & KVFS_MODE_UNSET)
		perm = (type == S_IFDIR ? 0777 : 0666) & ~fs->o.umask;
	else
		perm = a->mode & 07777;
	st->st_mode = type | perm;
	st->st_nlink = type == S_IFDIR ? 2 : 1;
	st->st_uid = a->uid == KVFS_ID_UNSET ? fs->o.uid : a->uid;
	st->st_gid = a->gid == KVFS_ID_UNSET ? fs->o.gid : a->gid;
	st->st_size = type == S_IFDIR ? 0 : (off_t)a->size;
	st->st_blksize = (blksize_t)fs->o.max_write;
	st->st_blocks = (blkcnt_t)((a->size + 511) / 512);
	if (a->mtime_ns) {
		st->st_mtim.tv_sec = a->mtime_ns / 1000000000;
		st->st_mtim.tv_nsec = a->mtime_ns % 1000000000;
	} else {
		st->st_mtim = fs->mounted;
	}
	st->st_atim = st->st_ctim = st->st_mtim;
}

/*
 * Record fresh attributes of n and adjust them for showing: a pending
 * upload's size wins over the committed one.
 */
static int64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Caller holds itab.lock. */
static void do_set_attr(struct inode *n, const struct kvfs_attr *a)
{
	n->attr = *a;
	n->attr_ns = a->version ? mono_ns() : 0;
}

/*
 * The attributes to show the kernel for n, given the newest ones in a. Its
 * size must agree with the page cache: while readers here use the cache,
 * that is the cached version's; while a handle here has writes pending,
 * the pending size. Caller holds itab.lock.
 */
static void do_show(struct inode *n, struct kvfs_attr *a)
{
	if (n->nwriters)
		a->size = n->pending_size;
	else if (n->ncached && n->cache_attr.version && a->version != n->cache_version)
		*a = n->cache_attr;
}

static void node_seen(struct fs *fs, struct inode *n, struct kvfs_attr *a)
{
	pthread_mutex_lock(&fs->it.lock);
	do_set_attr(n, a);
	do_show(n, a);
	pthread_mutex_unlock(&fs->it.lock);
}

/*
 * How long the kernel may keep n's attributes. While n is open for writing
 * here, not at all: the size then depends on who asks (a reader's GETATTR
 * gets its own version's size, see reader_attr), and a cached size would cut
 * other readers' reads short.
 */
static double attr_ttl(struct fs *fs, struct inode *n)
{
	pthread_mutex_lock(&fs->it.lock);
	double t = n->nwopen ? 0 : fs->o.attr_timeout;
	pthread_mutex_unlock(&fs->it.lock);
	return t;
}

static void reply_entry(fuse_req_t req, struct fs *fs, struct inode *n, const struct kvfs_attr *a)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = n->ino;
	fill_stat(fs, n->ino, n->type, a, &e.attr);
	e.attr_timeout = attr_ttl(fs, n);
	e.entry_timeout = fs->o.entry_timeout;
	if (fuse_reply_entry(req, &e) == -ENOENT)
		itab_forget(&fs->it, n->ino, 1); /* the request was interrupted */
}

/* ---- directory probing ------------------------------------------------------ */

struct probe {
	size_t plen;
	int marker, children;
	struct kvfs_attr attr;
};

static int probe_cb(void *arg, const struct kvfs_entry *e)
{
	struct probe *p = arg;
	if (!e->is_prefix && e->name_len == p->plen) {
		p->marker = 1;
		p->attr = e->attr;
		return 0;
	}
	p->children = 1;
	return 1;
}

/*
 * Does directory dkey (ending in '/') exist, and is it empty? One listing
 * pass per server, stopping at the first child. Returns 0 or -errno.
 */
static int probe_dir(struct fs *fs, const char *dkey, struct probe *p)
{
	memset(p, 0, sizeof(*p));
	p->plen = strlen(dkey);
	ssize_t n = kvfs_list(fs->kv, dkey, '/', probe_cb, p);
	return n < 0 ? (int)n : 0;
}

/*
 * What is at key (length len, buffer of KEYCAP)? A file or symlink key wins;
 * else a directory (marker attributes when there is a marker). Returns 0,
 * -ENOENT or -errno.
 */
static int resolve(struct fs *fs, char *key, int len, uint32_t *type, struct kvfs_attr *a)
{
	int ret = kvfs_stat(fs->kv, key, a);
	if (ret == 0) {
		*type = type_of(a);
		return 0;
	}
	if (ret != -ENOENT || len >= KVFS_MAX_KEY)
		return ret;
	struct probe p;
	memcpy(key + len, "/", 2);
	ret = probe_dir(fs, key, &p);
	key[len] = 0;
	if (ret)
		return ret;
	if (!p.marker && !p.children)
		return -ENOENT;
	*type = S_IFDIR;
	*a = p.marker ? p.attr : dir_default();
	return 0;
}

/* Fresh attributes of node ino from its server. */
static int fetch(struct fs *fs, fuse_ino_t ino, struct inode **np, struct kvfs_attr *a)
{
	char key[KEYCAP];
	struct inode *n = itab_get(&fs->it, ino);
	if (!n)
		return -ENOENT;
	*np = n;
	if (ino == ITAB_ROOT) {
		*a = dir_default();
		return 0;
	}
	int len = itab_key(&fs->it, ino, n->type == S_IFDIR ? "/" : "", key, sizeof(key));
	if (len < 0)
		return len;
	if (n->type == S_IFDIR) {
		struct probe p;
		int ret = probe_dir(fs, key, &p);
		if (ret)
			return ret;
		if (!p.marker && !p.children)
			return -ENOENT;
		*a = p.marker ? p.attr : dir_default();
		return 0;
	}
	/*
	 * Attributes fetched within attr_timeout (by open, a commit, a lookup)
	 * are as good as the kernel's own cache would have been.
	 */
	pthread_mutex_lock(&fs->it.lock);
	int fresh = n->attr_ns && mono_ns() - n->attr_ns < (int64_t)(fs->o.attr_timeout * 1e9);
	if (fresh) {
		*a = n->attr;
		do_show(n, a);
	}
	pthread_mutex_unlock(&fs->it.lock);
	if (fresh)
		return 0;
	int ret = kvfs_stat(fs->kv, key, a);
	if (ret)
		return ret;
	if (type_of(a) != n->type)
		return -ENOENT; /* replaced by a key of another type */
	node_seen(fs, n, a);
	return 0;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = FS(req);
	char key[KEYCAP];
	struct kvfs_attr a;
	uint32_t type;
	int len = itab_child_key(&fs->it, parent, name, "", key, sizeof(key));
	int ret = len < 0 ? len : resolve(fs, key, len, &type, &a);
	if (ret == -EINVAL)
		ret = -ENOENT;
	if (ret == -ENOENT && fs->o.negative_timeout > 0) {
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->o.negative_timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (ret) {
		reply_err(req, ret);
		return;
	}
	struct inode *n = itab_lookup(&fs->it, parent, name, type);
	if (!n) {
		reply_err(req, -ENOMEM);
		return;
	}
	if (type != S_IFDIR)
		node_seen(fs, n, &a);
	reply_entry(req, fs, n, &a);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	itab_forget(&FS(req)->it, ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		itab_forget(&FS(req)->it, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void reply_attr(fuse_req_t req, struct fs *fs, struct inode *n, const struct kvfs_attr *a)
{
	struct stat st;
	fill_stat(fs, n->ino, n->type, a, &st);
	fuse_reply_attr(req, &st, attr_ttl(fs, n));
}

static struct handle *handle_of(struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

/*
 * A GETATTR that names an open reader (the kernel sends one before reads
 * when attributes are stale) gets the size of the version that reader has
 * pinned, so the kernel does not cut its reads at the size of another
 * version. While someone here writes the file, that answer is not cached.
 */
static int reader_attr(struct fs *fs, struct fuse_file_info *fi, struct kvfs_attr *a,
		       double *timeout)
{
	struct handle *h = fi ? handle_of(fi) : NULL;
	int ok = 0;
	if (!h)
		return 0;
	pthread_mutex_lock(&h->lock);
	if (!h->up) {
		pthread_rwlock_rdlock(&h->pin_lock);
		if (h->pin || h->whole) {
			*a = h->pin_attr;
			ok = 1;
		}
		pthread_rwlock_unlock(&h->pin_lock);
	}
	pthread_mutex_unlock(&h->lock);
	*timeout = attr_ttl(fs, h->node);
	return ok;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct inode *n;
	struct kvfs_attr a;
	double timeout;
	if (reader_attr(fs, fi, &a, &timeout)) {
		struct stat st;
		n = handle_of(fi)->node;
		fill_stat(fs, n->ino, n->type, &a, &st);
		fuse_reply_attr(req, &st, timeout);
		return;
	}
	int ret = fetch(fs, ino, &n, &a);
	if (ret)
		reply_err(req, ret);
	else
		reply_attr(req, fs, n, &a);
}

/* ---- handles and uploads ---------------------------------------------------- */

/* Attributes a commit must carry so a rewrite keeps mode and owner. */
static void commit_attrs(struct fs *fs, struct inode *n, struct kvfs_setattr *sa)
{
	memset(sa, 0, sizeof(*sa));
	pthread_mutex_lock(&fs->it.lock);
	const struct kvfs_attr *a = &n->attr;
	if (!(a->mode & KVFS_MODE_UNSET) && (a->mode & 07777)) {
		sa->mask |= KVFS_SET_MODE;
		sa->mode = S_IFREG | (a->mode & 07777);
	}
	if (a->uid != KVFS_ID_UNSET) {
		sa->mask |= KVFS_SET_UID;
		sa->uid = a->uid;
	}
	if (a->gid != KVFS_ID_UNSET) {
		sa->mask |= KVFS_SET_GID;
		sa->gid = a->gid;
	}
	if (n->commit_mtime) {
		sa->mask |= KVFS_SET_MTIME;
		sa->mtime_ns = n->commit_mtime;
	}
	pthread_mutex_unlock(&fs->it.lock);
}

/* Open h's upload if it has none. Caller holds h->lock. */
static int h_upload(struct fs *fs, struct handle *h)
{
	if (h->up)
		return 0;
	char key[KEYCAP];
	int len = itab_key(&fs->it, h->node->ino, "", key, sizeof(key));
	if (len < 0)
		return len;
	int ret = kvfs_upload_open(fs->kv, key, h->fresh ? 0 : KVFS_UPLOAD_KEEP, &h->up);
	if (ret)
		return ret;
	pthread_mutex_lock(&fs->it.lock);
	h->node->nwriters++;
	h->node->pending_size = kvfs_upload_size(h->up);
	pthread_mutex_unlock(&fs->it.lock);
	return 0;
}

/* After a write or truncate: the node shows the upload's size. Caller holds h->lock. */
static void h_touched(struct fs *fs, struct handle *h)
{
	h->dirty = 1;
	pthread_mutex_lock(&fs->it.lock);
	h->node->pending_size = kvfs_upload_size(h->up);
	h->node->commit_mtime = 0; /* a write after utimens: the commit time counts */
	pthread_mutex_unlock(&fs->it.lock);
}

/*
 * Publish h's writes (or drop an unused upload). Caller holds h->lock.
 * Returns 0 or -errno; the upload is gone either way.
 */
static int h_commit(struct fs *fs, struct handle *h)
{
	if (!h->up)
		return 0;
	int ret = 0;
	struct kvfs_attr a;
	struct inode *n = h->node;
	if (h->dirty) {
		struct kvfs_setattr sa;
		commit_attrs(fs, n, &sa);
		ret = kvfs_upload_commit(h->up, &sa, &a);
	} else {
		kvfs_upload_abort(h->up);
	}
	pthread_mutex_lock(&fs->it.lock);
	n->nwriters--;
	if (h->dirty && !ret) {
		do_set_attr(n, &a);
		n->commit_mtime = 0;
		n->cache_version = 0; /* writers bypass the page cache: it is stale */
	}
	pthread_mutex_unlock(&fs->it.lock);
	h->up = NULL;
	h->dirty = 0;
	h->fresh = 0;
	pthread_rwlock_wrlock(&h->pin_lock);
	if (h->pin)
		kvfs_pin_close(h->pin); /* reads now see what was published */
	h->pin = NULL;
	pthread_rwlock_unlock(&h->pin_lock);
	return ret;
}

static int writable(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY;
}

static struct handle *handle_new(struct fs *fs, struct inode *n, int flags)
{
	struct handle *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	pthread_mutex_init(&h->lock, NULL);
	pthread_rwlock_init(&h->pin_lock, NULL);
	h->node = n; /* held until the handle is freed */
	h->flags = flags;
	itab_hold(&fs->it, n);
	return h;
}

static void handle_free(struct fs *fs, struct handle *h)
{
	itab_unhold(&fs->it, h->node);
	pthread_mutex_destroy(&h->lock);
	pthread_rwlock_destroy(&h->pin_lock);
	free(h->whole);
	free(h);
}

/* The last of an open file: publish its writes, drop its counts, free it. */
static int handle_close(struct fs *fs, struct handle *h)
{
	pthread_mutex_lock(&h->lock);
	int ret = h_commit(fs, h);
	pthread_mutex_unlock(&h->lock);
	pthread_mutex_lock(&fs->it.lock);
	if (writable(h->flags)) {
		h->node->nwopen--;
		h->node->write_ns = mono_ns();
	}
	if (h->cached)
		h->node->ncached--;
	pthread_mutex_unlock(&fs->it.lock);
	if (h->pin)
		kvfs_pin_close(h->pin);
	handle_free(fs, h);
	return ret;
}

/*
 * Open key for reading into h: a value of at most WHOLE_MAX bytes is fetched
 * whole by one GET (inline when the size last seen fits a message) and the
 * handle's reads are served from memory, with no pin to take and drop: one
 * round trip for open, read and close of a small file. A larger value is
 * pinned. *a gets the version's attributes.
 */
static int reader_open(struct fs *fs, struct handle *h, const char *key, struct kvfs_attr *a)
{
	struct kvfs_limits lim;
	kvfs_limits(fs->kv, &lim);
	pthread_mutex_lock(&fs->it.lock);
	uint64_t seen = h->node->attr.version ? h->node->attr.size : 0;
	pthread_mutex_unlock(&fs->it.lock);
	if (seen <= WHOLE_MAX) {
		size_t want = seen <= lim.inline_threshold ? lim.inline_threshold : WHOLE_MAX;
		char *buf = malloc(want ? want : 1);
		ssize_t n = buf ? kvfs_get(fs->kv, key, buf, want, 0, a) : -ENOMEM;
		if (n >= 0 && a->size == (uint64_t)n) {
			char *fit = realloc(buf, n ? (size_t)n : 1);
			h->whole = fit ? fit : buf;
			h->whole_len = (size_t)n;
			return 0;
		}
		free(buf);
		if (n < 0 && n != -EAGAIN)
			return (int)n;
		/* it grew (or changed while read): pin it */
	}
	return kvfs_pin_open(fs->kv, key, &h->pin, a);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	char key[KEYCAP];
	struct inode *n = itab_get(&fs->it, ino);
	struct kvfs_attr a;
	int ret = 0;
	if (!n) {
		reply_err(req, -ENOENT);
		return;
	}
	if (n->type == S_IFDIR) {
		reply_err(req, -EISDIR);
		return;
	}
	if (fs->o.ro && (writable(fi->flags) || (fi->flags & O_TRUNC))) {
		reply_err(req, -EROFS);
		return;
	}
	struct handle *h = handle_new(fs, n, fi->flags);
	if (!h) {
		reply_err(req, -ENOMEM);
		return;
	}
	int len = itab_key(&fs->it, ino, "", key, sizeof(key));
	if (len < 0) {
		ret = len;
		goto fail;
	}
	if ((fi->flags & O_TRUNC) && writable(fi->flags)) {
		/* Atomic O_TRUNC: the new value starts empty and is published on close. */
		h->fresh = 1;
		ret = h_upload(fs, h);
		if (ret)
			goto fail;
		h_touched(fs, h);
	} else {
		ret = writable(fi->flags) ? kvfs_pin_open(fs->kv, key, &h->pin, &a)
					  : reader_open(fs, h, key, &a);
		h->pin_attr = a;
		if (ret)
			goto fail;
	}
	/*
	 * The page cache is one per inode and holds one version's bytes
	 * (cache_version). A reader uses it only when nobody here writes the
	 * file and every other cached reader reads that same version; the
	 * others read straight from the server (direct I/O). Writers always
	 * write through to their upload.
	 */
	pthread_mutex_lock(&fs->it.lock);
	int64_t now = mono_ns();
	if (writable(fi->flags)) {
		n->nwopen++;
		n->write_ns = now;
		n->cache_version = 0;
	} else if (n->nwopen == 0 && now - n->write_ns > WRITE_QUIET_NS &&
		   (n->ncached == 0 || n->cache_version == a.version)) {
		h->cached = 1;
		n->ncached++;
		fi->keep_cache = n->cache_version == a.version;
		n->cache_version = a.version;
		n->cache_attr = a;
	}
	if (!(fi->flags & O_TRUNC))
		do_set_attr(n, &a);
	pthread_mutex_unlock(&fs->it.lock);
	fi->direct_io = !h->cached;
	fi->fh = (uintptr_t)h;
	if (fuse_reply_open(req, fi) == -ENOENT)
		handle_close(fs, h);
	return;
fail:
	handle_free(fs, h);
	reply_err(req, ret);
}

static struct kvfs_setattr new_attrs(fuse_req_t req, mode_t mode)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	return (struct kvfs_setattr){.mask = KVFS_SET_MODE | KVFS_SET_UID | KVFS_SET_GID,
				     .mode = mode,
				     .uid = ctx->uid,
				     .gid = ctx->gid};
}

/* The attributes just stored by a PUT with sa (the version follows at the next stat). */
static struct kvfs_attr stored_attr(const struct kvfs_setattr *sa, uint64_t size)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	return (struct kvfs_attr){.size = size,
				  .mtime_ns = now.tv_sec * 1000000000LL + now.tv_nsec,
				  .mode = sa->mode,
				  .uid = sa->uid,
				  .gid = sa->gid};
}

/* Store an empty regular file (create, mknod) and look it up. */
static int make_file(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     struct inode **np, struct kvfs_attr *a)
{
	struct fs *fs = FS(req);
	char key[KEYCAP];
	if (fs->o.ro)
		return -EROFS;
	int len = itab_child_key(&fs->it, parent, name, "", key, sizeof(key));
	if (len < 0)
		return len;
	struct kvfs_setattr sa = new_attrs(req, S_IFREG | (mode & 07777));
	int ret = kvfs_put(fs->kv, key, NULL, 0, &sa);
	if (ret)
		return ret;
	*a = stored_attr(&sa, 0);
	*np = itab_lookup(&fs->it, parent, name, S_IFREG);
	if (!*np)
		return -ENOMEM;
	node_seen(fs, *np, a);
	return 0;
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct inode *n;
	struct kvfs_attr a;
	int ret = make_file(req, parent, name, mode, &n, &a);
	if (ret) {
		reply_err(req, ret);
		return;
	}
	struct handle *h = handle_new(fs, n, fi->flags);
	if (!h) {
		itab_forget(&fs->it, n->ino, 1);
		reply_err(req, -ENOMEM);
		return;
	}
	h->fresh = 1;
	pthread_mutex_lock(&fs->it.lock);
	n->nwopen++;
	n->write_ns = mono_ns();
	n->cache_version = 0;
	pthread_mutex_unlock(&fs->it.lock);
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1;
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = n->ino;
	fill_stat(fs, n->ino, n->type, &a, &e.attr);
	e.attr_timeout = attr_ttl(fs, n);
	e.entry_timeout = fs->o.entry_timeout;
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		handle_close(fs, h);
		itab_forget(&fs->it, n->ino, 1);
	}
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)rdev;
	struct inode *n;
	struct kvfs_attr a;
	if (!S_ISREG(mode)) {
		reply_err(req, -EPERM); /* no fifos, sockets or devices */
		return;
	}
	int ret = make_file(req, parent, name, mode, &n, &a);
	if (ret)
		reply_err(req, ret);
	else
		reply_entry(req, FS(req), n, &a);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct handle *h = handle_of(fi);
	char key[KEYCAP];
	ssize_t n;

	pthread_mutex_lock(&h->lock);
	if (h->up) {
		/* read-your-writes: the pending value */
		void *buf = malloc(size ? size : 1);
		n = buf ? kvfs_upload_read(h->up, buf, size, (uint64_t)off) : -ENOMEM;
		pthread_mutex_unlock(&h->lock);
		if (n < 0)
			reply_err(req, (int)n);
		else
			fuse_reply_buf(req, buf, (size_t)n);
		free(buf);
		return;
	}
	pthread_mutex_unlock(&h->lock);
	if (h->whole) {
		/*
		 * Reply from a copy, not from h: once the reply is written the
		 * reader may close the file and its RELEASE, on another worker,
		 * free h while fuse_reply_buf returns (sanitizers check writev's
		 * buffers after the call). At most WHOLE_MAX bytes.
		 */
		char copy[WHOLE_MAX];
		size_t at = (uint64_t)off < h->whole_len ? (size_t)off : h->whole_len;
		size_t len = h->whole_len - at < size ? h->whole_len - at : size;
		memcpy(copy, h->whole + at, len);
		fuse_reply_buf(req, copy, len);
		return;
	}
	pthread_rwlock_rdlock(&h->pin_lock);
	while (!h->pin) {
		/* first read after this handle committed: pin what it published */
		pthread_rwlock_unlock(&h->pin_lock);
		pthread_rwlock_wrlock(&h->pin_lock);
		int len = h->pin ? 0 : itab_key(&fs->it, ino, "", key, sizeof(key));
		int ret = len < 0  ? len
			  : h->pin ? 0
				   : kvfs_pin_open(fs->kv, key, &h->pin, &h->pin_attr);
		pthread_rwlock_unlock(&h->pin_lock);
		if (ret) {
			reply_err(req, ret == -ENOENT ? -ESTALE : ret);
			return;
		}
		pthread_rwlock_rdlock(&h->pin_lock);
	}
	/*
	 * From the server's pool mapped here when it runs on this host, else
	 * from a receive slot the bytes were written into. A read of at most
	 * 1 MiB (max_read) needs at most 3 views, so a short map is the end.
	 */
	struct iovec iov[8];
	int niov = 1;
	kvfs_lease_t *lease;
	n = kvfs_pin_map(h->pin, (uint64_t)off, size, iov, 8, &niov, &lease);
	if (n == -EOPNOTSUPP) {
		const void *data;
		n = kvfs_pin_get_lease(h->pin, (uint64_t)off, size, &data, &lease);
		iov[0] = (struct iovec){(void *)data, n > 0 ? (size_t)n : 0};
	}
	/*
	 * Done with h before replying: once the reply is out, the reader may
	 * close the file and its RELEASE, on another worker, free h. The
	 * leased bytes do not depend on h.
	 */
	pthread_rwlock_unlock(&h->pin_lock);
	if (n < 0)
		reply_err(req, (int)n);
	else {
		fuse_reply_iov(req, iov, niov);
		kvfs_lease_release(lease);
	}
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)ino;
	struct fs *fs = FS(req);
	struct handle *h = handle_of(fi);
	pthread_mutex_lock(&h->lock);
	int ret = h_upload(fs, h);
	if (!ret) {
		uint64_t at = (h->flags & O_APPEND) ? kvfs_upload_size(h->up) : (uint64_t)off;
		struct fs_worker_buf *wb = fs_tls_buf;
		if (wb && buf >= (char *)wb->mem && buf + size <= (char *)wb->mem + wb->len)
			ret = kvfs_upload_write_mr(h->up, buf, size, at, wb->mr);
		else
			ret = kvfs_upload_write(h->up, buf, size, at);
		if (!ret)
			h_touched(fs, h);
	}
	pthread_mutex_unlock(&h->lock);
	if (ret)
		reply_err(req, ret);
	else
		fuse_reply_write(req, size);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	struct handle *h = handle_of(fi);
	pthread_mutex_lock(&h->lock);
	int ret = h->dirty ? h_commit(FS(req), h) : 0;
	pthread_mutex_unlock(&h->lock);
	reply_err(req, ret);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	op_flush(req, ino, fi);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	int ret = handle_close(FS(req), handle_of(fi));
	if (ret)
		log_error("release: commit failed: %s", kvfs_strerror(ret));
	fuse_reply_err(req, 0);
}

/* ---- attributes ----------------------------------------------------------- */

/* truncate(2) without an open handle: publish a resized copy at once. */
static int truncate_key(struct fs *fs, struct inode *n, const char *key, uint64_t size)
{
	kvfs_upload_t *up;
	struct kvfs_setattr sa;
	struct kvfs_attr a;
	int ret = kvfs_upload_open(fs->kv, key, size ? KVFS_UPLOAD_KEEP : 0, &up);
	if (ret)
		return ret;
	ret = kvfs_upload_truncate(up, size);
	if (ret) {
		kvfs_upload_abort(up);
		return ret;
	}
	commit_attrs(fs, n, &sa);
	ret = kvfs_upload_commit(up, &sa, &a);
	if (!ret)
		node_seen(fs, n, &a);
	return ret;
}

static int handle_truncate(struct fs *fs, struct handle *h, uint64_t size)
{
	pthread_mutex_lock(&h->lock);
	if (!h->up && size == 0)
		h->fresh = 1;
	int ret = h_upload(fs, h);
	if (!ret)
		ret = kvfs_upload_truncate(h->up, size);
	if (!ret)
		h_touched(fs, h);
	pthread_mutex_unlock(&h->lock);
	return ret;
}

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	char key[KEYCAP];
	struct inode *n = itab_get(&fs->it, ino);
	struct kvfs_setattr sa = {0};
	struct kvfs_attr a;
	int ret, len;

	if (!n || ino == ITAB_ROOT) {
		reply_err(req, n ? -EPERM : -ENOENT);
		return;
	}
	if (fs->o.ro) {
		reply_err(req, -EROFS);
		return;
	}
	len = itab_key(&fs->it, ino, n->type == S_IFDIR ? "/" : "", key, sizeof(key));
	if (len < 0) {
		reply_err(req, len);
		return;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (n->type != S_IFREG) {
			reply_err(req, n->type == S_IFDIR ? -EISDIR : -EINVAL);
			return;
		}
		if (fi && writable(handle_of(fi)->flags))
			ret = handle_truncate(fs, handle_of(fi), (uint64_t)attr->st_size);
		else
			ret = truncate_key(fs, n, key, (uint64_t)attr->st_size);
		if (ret) {
			reply_err(req, ret);
			return;
		}
	}
	if (to_set & FUSE_SET_ATTR_MODE) {
		sa.mask |= KVFS_SET_MODE;
		sa.mode = n->type | (attr->st_mode & 07777);
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		sa.mask |= KVFS_SET_UID;
		sa.uid = attr->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		sa.mask |= KVFS_SET_GID;
		sa.gid = attr->st_gid;
	}
	if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		sa.mask |= KVFS_SET_MTIME;
		sa.mtime_ns =
		    (to_set & FUSE_SET_ATTR_MTIME_NOW) ? ts_ns(&now) : ts_ns(&attr->st_mtim);
		pthread_mutex_lock(&fs->it.lock);
		if (n->nwriters)
			n->commit_mtime = sa.mtime_ns; /* else the pending commit would undo it */
		pthread_mutex_unlock(&fs->it.lock);
	}
	if (sa.mask) {
		ret = kvfs_setattr(fs->kv, key, &sa, &a);
		if (ret == -ENOENT && n->type == S_IFDIR) {
			/* a directory without a marker gets one, carrying the attributes */
			if (!(sa.mask & KVFS_SET_MODE)) {
				sa.mask |= KVFS_SET_MODE;
				sa.mode = S_IFDIR | (0777 & ~fs->o.umask);
			}
			ret = kvfs_put(fs->kv, key, NULL, 0, &sa);
		}
		if (ret) {
			reply_err(req, ret);
			return;
		}
	}
	pthread_mutex_lock(&fs->it.lock);
	n->attr_ns = 0; /* changed: ask the server */
	pthread_mutex_unlock(&fs->it.lock);
	ret = fetch(fs, ino, &n, &a);
	if (ret)
		reply_err(req, ret);
	else
		reply_attr(req, fs, n, &a);
}

/* ---- names ---------------------------------------------------------------- */

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = FS(req);
	char key[KEYCAP], target[KVFS_MAX_KEY + 1];
	int len = itab_key(&fs->it, ino, "", key, sizeof(key));
	ssize_t n = len < 0 ? len : kvfs_get(fs->kv, key, target, KVFS_MAX_KEY, 0, NULL);
	if (n < 0) {
		reply_err(req, (int)n);
		return;
	}
	target[n] = 0;
	fuse_reply_readlink(req, target);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct fs *fs = FS(req);
	char key[KEYCAP];
	size_t tl = strlen(link);
	int len = fs->o.ro ? -EROFS : itab_child_key(&fs->it, parent, name, "", key, sizeof(key));
	if (len >= 0 && tl > KVFS_MAX_KEY)
		len = -ENAMETOOLONG;
	struct kvfs_setattr sa = new_attrs(req, S_IFLNK | 0777);
	int ret = len < 0 ? len : kvfs_put(fs->kv, key, link, tl, &sa);
	if (ret) {
		reply_err(req, ret);
		return;
	}
	struct kvfs_attr a = stored_attr(&sa, tl);
	struct inode *n = itab_lookup(&fs->it, parent, name, S_IFLNK);
	if (!n) {
		reply_err(req, -ENOMEM);
		return;
	}
	node_seen(fs, n, &a);
	reply_entry(req, fs, n, &a);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fs *fs = FS(req);
	char key[KEYCAP];
	int len = fs->o.ro ? -EROFS : itab_child_key(&fs->it, parent, name, "/", key, sizeof(key));
	struct kvfs_setattr sa = new_attrs(req, S_IFDIR | (mode & 07777));
	int ret = len < 0 ? len : kvfs_put(fs->kv, key, NULL, 0, &sa);
	if (ret) {
		reply_err(req, ret);
		return;
	}
	struct kvfs_attr a = stored_attr(&sa, 0);
	struct inode *n = itab_lookup(&fs->it, parent, name, S_IFDIR);
	if (!n)
		reply_err(req, -ENOMEM);
	else
		reply_entry(req, fs, n, &a);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = FS(req);
	char key[KEYCAP];
	int len = fs->o.ro ? -EROFS : itab_child_key(&fs->it, parent, name, "", key, sizeof(key));
	int ret = len < 0 ? len : kvfs_delete(fs->kv, key);
	if (!ret)
		itab_unlink(&fs->it, parent, name);
	reply_err(req, ret);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = FS(req);
	char key[KEYCAP];
	struct probe p;
	int len = fs->o.ro ? -EROFS : itab_child_key(&fs->it, parent, name, "/", key, sizeof(key));
	int ret = len < 0 ? len : probe_dir(fs, key, &p);
	if (!ret) {
		if (p.children)
			ret = -ENOTEMPTY;
		else if (!p.marker)
			ret = -ENOENT;
		else
			ret = kvfs_delete(fs->kv, key);
	}
	if (!ret)
		itab_unlink(&fs->it, parent, name);
	reply_err(req, ret);
}

/*
 * Move a file to a key on another server: copy in receive-slot pieces
 * through an upload, publish with the same attributes, then delete the
 * source. Not atomic: a reader may see both names for a moment.
 */
static int move_across(struct fs *fs, const char *src, const char *dst, int noreplace)
{
	struct kvfs_attr a, d;
	struct kvfs_limits lim;
	kvfs_upload_t *up = NULL;
	kvfs_pin_t *pin;
	if (noreplace && kvfs_stat(fs->kv, dst, &d) == 0)
		return -EEXIST;
	int ret = kvfs_pin_open(fs->kv, src, &pin, &a); /* one version, start to end */
	if (ret)
		return ret;
	kvfs_limits(fs->kv, &lim);
	ret = kvfs_upload_open(fs->kv, dst, 0, &up);
	for (uint64_t off = 0; off < a.size && !ret;) {
		const void *data;
		kvfs_lease_t *lease;
		uint64_t want = a.size - off < lim.slot_size ? a.size - off : lim.slot_size;
		ssize_t n = kvfs_pin_get_lease(pin, off, want, &data, &lease);
		if (n <= 0) {
			ret = n < 0 ? (int)n : -EIO;
			break;
		}
		ret = kvfs_upload_write(up, data, (size_t)n, off);
		kvfs_lease_release(lease);
		off += (uint64_t)n;
	}
	kvfs_pin_close(pin);
	if (ret) {
		if (up)
			kvfs_upload_abort(up);
		return ret;
	}
	struct kvfs_setattr sa = {.mask = KVFS_SET_MTIME, .mtime_ns = a.mtime_ns};
	if (!(a.mode & KVFS_MODE_UNSET)) {
		sa.mask |= KVFS_SET_MODE;
		sa.mode = a.mode;
	}
	if (a.uid != KVFS_ID_UNSET) {
		sa.mask |= KVFS_SET_UID;
		sa.uid = a.uid;
	}
	if (a.gid != KVFS_ID_UNSET) {
		sa.mask |= KVFS_SET_GID;
		sa.gid = a.gid;
	}
	if (a.expiry) {
		time_t now = time(NULL);
		sa.mask |= KVFS_SET_TTL;
		sa.ttl = a.expiry > now ? a.expiry - now : 1;
	}
	ret = kvfs_upload_commit(up, &sa, NULL);
	if (!ret)
		ret = kvfs_delete(fs->kv, src);
	return ret;
}

static int rename_key(struct fs *fs, const char *src, const char *dst, int noreplace)
{
	int ret = kvfs_rename(fs->kv, src, dst, noreplace ? KVFS_RENAME_NOREPLACE : 0);
	if (ret == -EXDEV)
		ret = move_across(fs, src, dst, noreplace);
	return ret;
}

/*
 * Directories: only an empty one (its marker key) is renamed; a non-empty
 * one answers EXDEV, so mv(1) falls back to copying and removing.
 */
static int rename_dir(struct fs *fs, char *src, int slen, char *dst, int dlen, int noreplace)
{
	struct probe p, q;
	uint32_t type;
	struct kvfs_attr a;
	int ret;
	if (slen >= KVFS_MAX_KEY || dlen >= KVFS_MAX_KEY)
		return -ENAMETOOLONG;
	ret = resolve(fs, dst, dlen, &type, &a);
	if (ret == 0 && type != S_IFDIR)
		return -ENOTDIR;
	if (ret == 0 && noreplace)
		return -EEXIST;
	if (ret && ret != -ENOENT)
		return ret;
	memcpy(src + slen, "/", 2);
	memcpy(dst + dlen, "/", 2);
	ret = probe_dir(fs, src, &p);
	if (ret)
		return ret;
	if (p.children)
		return -EXDEV;
	if (type == S_IFDIR) {
		ret = probe_dir(fs, dst, &q);
		if (ret)
			return ret;
		if (q.children)
			return -ENOTEMPTY;
	}
	return rename_key(fs, src, dst, 0);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct fs *fs = FS(req);
	char src[KEYCAP], dst[KEYCAP];
	uint32_t type;
	struct kvfs_attr a;
	int ret;
	if (flags & ~RENAME_NOREPLACE) {
		reply_err(req, -EINVAL); /* RENAME_EXCHANGE and RENAME_WHITEOUT */
		return;
	}
	if (fs->o.ro) {
		reply_err(req, -EROFS);
		return;
	}
	int slen = itab_child_key(&fs->it, parent, name, "", src, sizeof(src));
	int dlen = itab_child_key(&fs->it, newparent, newname, "", dst, sizeof(dst));
	ret = slen < 0 ? slen : dlen < 0 ? dlen : resolve(fs, src, slen, &type, &a);
	if (!ret) {
		if (type == S_IFDIR)
			ret = rename_dir(fs, src, slen, dst, dlen, flags & RENAME_NOREPLACE);
		else
			ret = rename_key(fs, src, dst, flags & RENAME_NOREPLACE);
	}
	if (!ret)
		ret = itab_rename(&fs->it, parent, name, newparent, newname);
	reply_err(req, ret);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	reply_err(req, -EPERM); /* a key has one name: no hard links */
}

/* ---- directories ---------------------------------------------------------- */

struct dent {
	char *name;
	uint32_t type;
	int has_attr;
	struct kvfs_attr attr;
};

struct dirh {
	struct dent *e;
	size_t n, cap;
	size_t plen; /* the listed prefix's length */
	int err;
};

static int dir_add(struct dirh *d, const char *name, size_t nlen, uint32_t type,
		   const struct kvfs_attr *a)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct dent *e = realloc(d->e, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		d->e = e;
		d->cap = cap;
	}
	struct dent *e = &d->e[d->n];
	e->name = strndup(name, nlen);
	if (!e->name)
		return -ENOMEM;
	e->type = type;
	e->has_attr = a != NULL;
	if (a)
		e->attr = *a;
	d->n++;
	return 0;
}

static int dir_cb(void *arg, const struct kvfs_entry *e)
{
	struct dirh *d = arg;
	const char *name = e->name + d->plen;
	size_t nlen = e->name_len - d->plen;
	uint32_t type;
	if (e->is_prefix) {
		nlen--; /* the trailing '/' */
		type = S_IFDIR;
	} else if (nlen == 0) {
		return 0; /* this directory's own marker */
	} else {
		type = type_of(&e->attr);
	}
	if (!name_ok(name, nlen))
		return 0; /* not a path: reachable through kvfsctl only */
	d->err = dir_add(d, name, nlen, type, e->is_prefix ? NULL : &e->attr);
	return d->err;
}

/* By name; of a file and a directory with one name, the file comes first and wins. */
static int dent_cmp(const void *x, const void *y)
{
	const struct dent *a = x, *b = y;
	int c = strcmp(a->name, b->name);
	if (c)
		return c;
	return (a->type == S_IFDIR) - (b->type == S_IFDIR);
}

static void dir_free(struct dirh *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->e[i].name);
	free(d->e);
	free(d);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	char key[KEYCAP];
	struct dirh *d = calloc(1, sizeof(*d));
	int ret = d ? 0 : -ENOMEM;
	int len = ret ? ret : itab_key(&fs->it, ino, ino == ITAB_ROOT ? "" : "/", key, sizeof(key));
	if (len < 0) {
		ret = len;
		goto fail;
	}
	d->plen = (size_t)len;
	static const struct kvfs_attr none;
	if ((ret = dir_add(d, ".", 1, S_IFDIR, &none)) ||
	    (ret = dir_add(d, "..", 2, S_IFDIR, &none)))
		goto fail;
	ssize_t n = kvfs_list(fs->kv, key, '/', dir_cb, d);
	if (n < 0 || d->err) {
		ret = d->err ? d->err : (int)n;
		goto fail;
	}
	qsort(d->e + 2, d->n - 2, sizeof(*d->e), dent_cmp);
	size_t w = 2;
	for (size_t i = 2; i < d->n; i++) {
		if (w > 2 && strcmp(d->e[w - 1].name, d->e[i].name) == 0) {
			free(d->e[i].name); /* a directory shadowed by a file */
			continue;
		}
		d->e[w++] = d->e[i];
	}
	d->n = w;
	fi->fh = (uintptr_t)d;
	fi->cache_readdir = 0;
	if (fuse_reply_open(req, fi) == -ENOENT)
		dir_free(d);
	return;
fail:
	if (d)
		dir_free(d);
	reply_err(req, ret);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, int plus)
{
	struct fs *fs = FS(req);
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
	char *buf = malloc(size);
	size_t used = 0;
	if (!buf) {
		reply_err(req, -ENOMEM);
		return;
	}
	for (size_t i = (size_t)off; i < d->n; i++) {
		struct dent *e = &d->e[i];
		size_t need;
		if (!plus) {
			struct stat st = {.st_ino = i + 2, .st_mode = e->type};
			need = fuse_add_direntry(req, buf + used, size - used, e->name, &st,
						 (off_t)i + 1);
		} else {
			struct fuse_entry_param ep;
			struct inode *n = NULL;
			memset(&ep, 0, sizeof(ep));
			if (i < 2) { /* "." and "..": no lookup */
				ep.attr.st_ino = ino;
				ep.attr.st_mode = S_IFDIR;
			} else {
				n = itab_lookup(&fs->it, ino, e->name, e->type);
				if (!n)
					break;
				struct kvfs_attr a = e->has_attr ? e->attr : n->attr;
				if (!a.version && e->type == S_IFDIR)
					a = dir_default();
				if (e->has_attr)
					node_seen(fs, n, &a);
				ep.ino = n->ino;
				fill_stat(fs, n->ino, e->type, &a, &ep.attr);
				ep.entry_timeout = fs->o.entry_timeout;
				/* a directory's attributes live in its marker: not listed */
				ep.attr_timeout = e->has_attr ? attr_ttl(fs, n) : 0;
			}
			need = fuse_add_direntry_plus(req, buf + used, size - used, e->name, &ep,
						      (off_t)i + 1);
			if (need > size - used && n)
				itab_forget(&fs->it, n->ino, 1);
		}
		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 1);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	dir_free((struct dirh *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* ---- file system ---------------------------------------------------------- */

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct fs *fs = FS(req);
	struct statvfs sv;
	uint64_t size = 0, used = 0, keys = 0;
	int ok = 0, err = 0;
	for (int i = 0; i < kvfs_server_count(fs->kv); i++) {
		struct kvfs_stats st;
		int ret = kvfs_server_stats(fs->kv, i, &st);
		if (ret) {
			err = ret;
			continue;
		}
		ok++;
		size += st.pool_size;
		used += st.pool_used < st.pool_size ? st.pool_used : st.pool_size;
		keys += st.keys;
	}
	if (!ok) {
		reply_err(req, err);
		return;
	}
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = 4096;
	sv.f_blocks = size / 4096;
	sv.f_bfree = sv.f_bavail = (size - used) / 4096;
	sv.f_files = keys + sv.f_bfree;
	sv.f_ffree = sv.f_favail = sv.f_bfree;
	sv.f_namemax = NAME_MAX_BYTES;
	fuse_reply_statfs(req, &sv);
}

/* ---- extended attributes -------------------------------------------------- */

#define XA_TTL	   "user.kvfs.ttl"
#define XA_VERSION "user.kvfs.version"
#define XA_SERVER  "user.kvfs.server"

static int xattr_key(struct fs *fs, fuse_ino_t ino, char *key)
{
	struct inode *n = itab_get(&fs->it, ino);
	if (!n)
		return -ENOENT;
	if (ino == ITAB_ROOT)
		return -ENODATA;
	return itab_key(&fs->it, ino, n->type == S_IFDIR ? "/" : "", key, KEYCAP);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs *fs = FS(req);
	char key[KEYCAP], val[64];
	struct kvfs_attr a;
	int ret;
	if (strcmp(name, XA_TTL) && strcmp(name, XA_VERSION) && strcmp(name, XA_SERVER)) {
		reply_err(req, -ENODATA); /* no other attributes are stored */
		return;
	}
	ret = xattr_key(fs, ino, key);
	if (ret >= 0 && strcmp(name, XA_SERVER) == 0) {
		snprintf(val, sizeof(val), "%s",
			 kvfs_server_name(fs->kv, kvfs_server_of(fs->kv, key)));
	} else if (ret >= 0) {
		ret = kvfs_stat(fs->kv, key, &a);
		if (ret == -ENOENT)
			ret = -ENODATA; /* a directory without a marker */
		time_t now = time(NULL);
		if (!ret && strcmp(name, XA_VERSION) == 0)
			snprintf(val, sizeof(val), "%" PRIu64, a.version);
		else if (!ret)
			snprintf(val, sizeof(val), "%" PRId64,
				 a.expiry ? (a.expiry > now ? a.expiry - now : 1) : 0);
	}
	if (ret < 0) {
		reply_err(req, ret);
		return;
	}
	size_t len = strlen(val);
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		reply_err(req, -ERANGE);
	else
		fuse_reply_buf(req, val, len);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	static const char names[] = XA_TTL "\0" XA_VERSION "\0" XA_SERVER;
	(void)ino;
	if (size == 0)
		fuse_reply_xattr(req, sizeof(names));
	else if (size < sizeof(names))
		reply_err(req, -ERANGE);
	else
		fuse_reply_buf(req, names, sizeof(names));
}

static int set_ttl(struct fs *fs, fuse_ino_t ino, int64_t ttl)
{
	char key[KEYCAP];
	int ret = fs->o.ro ? -EROFS : xattr_key(fs, ino, key);
	struct kvfs_setattr sa = {.mask = KVFS_SET_TTL, .ttl = ttl};
	return ret < 0 ? ret : kvfs_setattr(fs->kv, key, &sa, NULL);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	(void)flags;
	char num[32], *end;
	/*
	 * version and server are read-only. ENOTSUP (not EPERM) because cp -a
	 * and mv copy every listed attribute and skip only that error.
	 */
	if (strcmp(name, XA_TTL) != 0) {
		reply_err(req, -ENOTSUP);
		return;
	}
	if (size == 0 || size >= sizeof(num)) {
		reply_err(req, -EINVAL);
		return;
	}
	memcpy(num, value, size);
	num[size] = 0;
	errno = 0;
	long long ttl = strtoll(num, &end, 10);
	if (errno || end == num || (*end && *end != '\n') || ttl < 0) {
		reply_err(req, -EINVAL);
		return;
	}
	reply_err(req, set_ttl(FS(req), ino, ttl));
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	if (strcmp(name, XA_TTL) == 0)
		reply_err(req, set_ttl(FS(req), ino, 0));
	else if (strcmp(name, XA_VERSION) == 0 || strcmp(name, XA_SERVER) == 0)
		reply_err(req, -ENOTSUP); /* read-only; see op_setxattr */
	else
		reply_err(req, -ENODATA);
}

/* ---- session -------------------------------------------------------------- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;
	conn->max_write = fs->o.max_write;
	conn->max_read = fs->o.max_read;
	conn->want |= FUSE_CAP_ASYNC_READ | FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	/* always readdirplus: `ls -l` must not turn into a lookup per file */
	conn->want &=
	    ~(unsigned)(FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_WRITEBACK_CACHE |
			FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE |
			FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
	conn->time_gran = 1;
}

const struct fuse_lowlevel_ops fs_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .create = op_create,
};
