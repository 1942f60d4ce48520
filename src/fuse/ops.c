/*
 * ops: the kvfs mount's lowlevel FUSE operations, each a thin translation
 * to libkvfs calls (file semantics: DESIGN.md, README "Semantics"). This
 * file has the operations table, inode attributes and lookups; open files
 * are in file.c, names in namei.c, listings in dir.c, extended attributes
 * and statfs in xattr.c (what they share, and the locks: ops_int.h).
 *
 * - Names: key "a/b/c" is file a/b/c. A directory is a key prefix "a/b/"
 *   or a marker key "a/b/" that mkdir stores (it carries the directory's
 *   mode, owner and times). A file shadows a directory of the same name.
 * - Times (README "Semantics"): atime, mtime and ctime are the key's; reads
 *   never change atime (the mount is noatime). A directory shows its
 *   marker's, which its server updates when a key directly under it is
 *   created, deleted or renamed there; an implied directory (no marker)
 *   shows the mount's start.
 * - Link counts: 1 for a file, 0 once it is unlinked or renamed over (a
 *   detached node: fstat of an open file), and 1 for a directory, the
 *   "not counted" convention (btrfs, many FUSE file systems) that tells
 *   find(1) not to infer subdirectories from it: counting them would take a
 *   listing on every server per stat.
 *   Keys that cannot be paths are skipped in listings (inode.c name_ok).
 * - Fifos, sockets and devices are typed keys, like symlinks
 *   (common/devnum.h): the kernel serves their opens itself. A device's
 *   number is its value; it costs a GET where a device is first seen or
 *   has changed (node_rdev), and nothing for other types. Their st_size
 *   is 0, whatever the value holds.
 * - Every libkvfs failure that means "server unreachable" becomes EIO.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "common/devnum.h"
#include "fuse/ops_int.h"

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

void fill_stat(const struct fs *fs, uint64_t ino, uint32_t type, const struct kvfs_attr *a,
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
	st->st_nlink = 1;
	st->st_uid = a->uid == KVFS_ID_UNSET ? fs->o.uid : a->uid;
	st->st_gid = a->gid == KVFS_ID_UNSET ? fs->o.gid : a->gid;
	uint64_t size =
	    type == S_IFREG || type == S_IFLNK ? a->size : 0; /* not a special's value */
	st->st_size = (off_t)size;
	st->st_blksize = (blksize_t)fs->o.max_write;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);
	if (a->mtime_ns) {
		st->st_mtim.tv_sec = a->mtime_ns / 1000000000;
		st->st_mtim.tv_nsec = a->mtime_ns % 1000000000;
	} else {
		st->st_mtim = fs->mounted;
	}
	st->st_atim = st->st_ctim = st->st_mtim;
	if (a->atime_ns) {
		st->st_atim.tv_sec = a->atime_ns / 1000000000;
		st->st_atim.tv_nsec = a->atime_ns % 1000000000;
	}
	if (a->ctime_ns) {
		st->st_ctim.tv_sec = a->ctime_ns / 1000000000;
		st->st_ctim.tv_nsec = a->ctime_ns % 1000000000;
	}
}

/* An unlinked (or renamed over) node has no name left: 0 links. */
static void node_nlink(struct fs *fs, struct inode *n, struct stat *st)
{
	pthread_mutex_lock(&fs->it.lock);
	if (n->detached)
		st->st_nlink = 0;
	pthread_mutex_unlock(&fs->it.lock);
}

/* Caller holds itab.lock. */
void do_set_attr(struct inode *n, const struct kvfs_attr *a)
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

/*
 * Record fresh attributes of n and adjust them for showing: a pending
 * upload's size wins over the committed one.
 */
void node_seen(struct fs *fs, struct inode *n, struct kvfs_attr *a)
{
	pthread_mutex_lock(&fs->it.lock);
	do_set_attr(n, a);
	do_show(n, a);
	pthread_mutex_unlock(&fs->it.lock);
}

/*
 * How long the kernel may keep n's attributes. While n is open for writing
 * here, and for WRITE_QUIET_NS after, not at all: the size then depends on
 * who asks (a reader's GETATTR gets its own version's size, see
 * reader_attr; a lookup racing a commit may get the older one), and a
 * cached size would cut other readers' reads short. Asking again costs no
 * round trip to the server (fetch).
 */
double attr_ttl(struct fs *fs, struct inode *n)
{
	pthread_mutex_lock(&fs->it.lock);
	int64_t expiry = n->attr.expiry;
	int open_w = n->nwopen > 0 || mono_ns() - n->write_ns < WRITE_QUIET_NS;
	pthread_mutex_unlock(&fs->it.lock);
	return open_w ? 0 : coh_ttl(fs, fs->o.attr_timeout, expiry);
}

double entry_ttl(struct fs *fs, struct inode *n)
{
	pthread_mutex_lock(&fs->it.lock);
	int64_t expiry = n->attr.expiry;
	pthread_mutex_unlock(&fs->it.lock);
	return coh_ttl(fs, fs->o.entry_timeout, expiry);
}

int node_rdev(struct fs *fs, struct inode *n, const char *key, struct kvfs_attr *a)
{
	if (!is_dev(n->type))
		return 0;
	pthread_mutex_lock(&fs->it.lock);
	int known = n->rdev_known && a->version && n->rdev_version == a->version;
	pthread_mutex_unlock(&fs->it.lock);
	if (known)
		return 0;
	unsigned char v[DEVNUM_LEN];
	struct kvfs_attr g;
	uint32_t ma, mi;
	ssize_t len = kvfs_get(fs->kv, key, v, sizeof(v), 0, &g);
	if (len < 0)
		return (int)len;
	if (type_of(&g) != n->type)
		return -ENOENT;
	/* a value of another length (put by hand) is device 0, 0 */
	devnum_decode(v, g.size == DEVNUM_LEN ? (size_t)len : 0, &ma, &mi);
	pthread_mutex_lock(&fs->it.lock);
	n->rdev = makedev(ma, mi);
	n->rdev_version = g.version;
	n->rdev_known = 1;
	pthread_mutex_unlock(&fs->it.lock);
	*a = g;
	return 0;
}

void stat_rdev(struct fs *fs, struct inode *n, struct stat *st)
{
	if (!is_dev(n->type))
		return;
	pthread_mutex_lock(&fs->it.lock);
	st->st_rdev = (dev_t)n->rdev;
	pthread_mutex_unlock(&fs->it.lock);
}

void reply_entry(fuse_req_t req, struct fs *fs, struct inode *n, const struct kvfs_attr *a)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = n->ino;
	fill_stat(fs, n->ino, n->type, a, &e.attr);
	stat_rdev(fs, n, &e.attr);
	e.attr_timeout = attr_ttl(fs, n);
	e.entry_timeout = entry_ttl(fs, n);
	if (fuse_reply_entry(req, &e) == -ENOENT)
		itab_forget(&fs->it, n->ino, 1); /* the request was interrupted */
}

/* ---- directory probing ------------------------------------------------------ */

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
int probe_dir(struct fs *fs, const char *dkey, struct probe *p)
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
int resolve(struct fs *fs, char *key, int len, uint32_t *type, struct kvfs_attr *a)
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
	int fresh = n->attr_ns && coh_fresh(fs, mono_ns() - n->attr_ns) &&
		    (!is_dev(n->type) || (n->rdev_known && n->rdev_version == n->attr.version));
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
	ret = node_rdev(fs, n, key, a);
	if (ret)
		return ret;
	node_seen(fs, n, a);
	return 0;
}

static void lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
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
	if (is_dev(type) && (ret = node_rdev(fs, n, key, &a)) != 0) {
		itab_forget(&fs->it, n->ino, 1);
		reply_err(req, ret);
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
	stat_rdev(fs, n, &st);
	node_nlink(fs, n, &st);
	fuse_reply_attr(req, &st, attr_ttl(fs, n));
}

static void getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct inode *n;
	struct kvfs_attr a;
	double timeout;
	if (reader_attr(fs, fi, &a, &timeout)) {
		struct stat st;
		n = handle_of(fi)->node;
		fill_stat(fs, n->ino, n->type, &a, &st);
		node_nlink(fs, n, &st);
		fuse_reply_attr(req, &st, timeout);
		return;
	}
	int ret = fetch(fs, ino, &n, &a);
	if (ret)
		reply_err(req, ret);
	else
		reply_attr(req, fs, n, &a);
}

/* The state of tracking before the request, for its reply's timeouts (coherence.h). */
static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	coh_begin(FS(req));
	lookup(req, parent, name);
	coh_end();
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	coh_begin(FS(req));
	getattr(req, ino, fi);
	coh_end();
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
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		sa.mask |= KVFS_SET_ATIME;
		sa.atime_ns =
		    (to_set & FUSE_SET_ATTR_ATIME_NOW) ? ts_ns(&now) : ts_ns(&attr->st_atim);
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
