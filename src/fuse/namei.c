/*
 * namei: the kvfs mount's name operations (create, mknod, mkdir, symlink,
 * readlink, unlink, rmdir, rename, link). A name is a key: creating stores
 * one (mkdir a directory's marker key), removing deletes it, and rename
 * renames it on its server, or copies it across servers (move_across).
 * mknod stores fifos, sockets and devices as typed keys (common/devnum.h);
 * a key has one name, so link is refused.
 *
 * Directory times: the server that links or unlinks key "a/b/c" sets the
 * mtime and ctime of marker "a/b/" itself when it holds it (no request of
 * ours). When the marker lives on another server, dir_changed asks that one
 * (one more request, only then; an implied directory has no marker and
 * shows the mount's start time).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h> /* RENAME_NOREPLACE */
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "common/devnum.h"
#include "fuse/ops_int.h"

/*
 * A new name's attributes: the caller's owner, and atime = mtime = now by
 * our clock, so that the entry we reply (stored_attr) shows what the server
 * stores (its ctime is its own clock, at or after ours on one host).
 */
static struct kvfs_setattr new_attrs(fuse_req_t req, mode_t mode)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t t = now.tv_sec * 1000000000LL + now.tv_nsec;
	return (struct kvfs_setattr){.mask = KVFS_SET_MODE | KVFS_SET_UID | KVFS_SET_GID |
					     KVFS_SET_MTIME | KVFS_SET_ATIME,
				     .mode = mode,
				     .uid = ctx->uid,
				     .gid = ctx->gid,
				     .mtime_ns = t,
				     .atime_ns = t};
}

/*
 * A name under directory node parent was created or removed as key child:
 * the directory's marker gets mtime and ctime now, when child's server did
 * not do it itself (it holds the marker only if the two keys share a
 * server). Best effort: a directory without a marker, or an error, leaves
 * the times as they are; the name operation has succeeded anyway.
 */
static void dir_changed(struct fs *fs, fuse_ino_t parent, const char *child)
{
	char dkey[KEYCAP];
	struct timespec now;
	if (parent == ITAB_ROOT || itab_key(&fs->it, parent, "/", dkey, sizeof(dkey)) < 0 ||
	    kvfs_server_of(fs->kv, dkey) == kvfs_server_of(fs->kv, child))
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	struct kvfs_setattr sa = {.mask = KVFS_SET_MTIME,
				  .mtime_ns = now.tv_sec * 1000000000LL + now.tv_nsec};
	(void)kvfs_setattr(fs->kv, dkey, &sa, NULL);
}

/*
 * The attributes just stored by a PUT with sa from new_attrs (the version,
 * and the server's ctime, follow at the next stat).
 */
static struct kvfs_attr stored_attr(const struct kvfs_setattr *sa, uint64_t size)
{
	return (struct kvfs_attr){.size = size,
				  .mtime_ns = sa->mtime_ns,
				  .atime_ns = sa->atime_ns,
				  .ctime_ns = sa->mtime_ns,
				  .mode = sa->mode,
				  .uid = sa->uid,
				  .gid = sa->gid};
}

/*
 * Store a file of type (mode & S_IFMT) with value val (create, mknod) and
 * look it up.
 */
static int make_file(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     const void *val, size_t vlen, struct inode **np, struct kvfs_attr *a)
{
	struct fs *fs = FS(req);
	char key[KEYCAP];
	if (fs->o.ro)
		return -EROFS;
	int len = itab_child_key(&fs->it, parent, name, "", key, sizeof(key));
	if (len < 0)
		return len;
	struct kvfs_setattr sa = new_attrs(req, mode);
	int ret = kvfs_put(fs->kv, key, val, vlen, &sa);
	if (ret)
		return ret;
	dir_changed(fs, parent, key);
	*a = stored_attr(&sa, vlen);
	*np = itab_lookup(&fs->it, parent, name, type_of(a));
	if (!*np)
		return -ENOMEM;
	node_seen(fs, *np, a);
	return 0;
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	       struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct inode *n;
	struct kvfs_attr a;
	int ret = make_file(req, parent, name, S_IFREG | (mode & 07777), NULL, 0, &n, &a);
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
	handle_opened(fs, h, fi, &a);
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = n->ino;
	fill_stat(fs, n->ino, n->type, &a, &e.attr);
	e.attr_timeout = attr_ttl(fs, n);
	e.entry_timeout = entry_ttl(fs, n);
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		handle_close(fs, h);
		itab_forget(&fs->it, n->ino, 1);
	}
}

/*
 * A regular file, fifo or socket (bind(2) of a Unix socket) has an empty
 * value; a device its number. The kernel has checked the type and, for
 * devices, CAP_MKNOD; whether a device node opens is the mount's
 * nodev/dev (the kernel's too).
 */
void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct fs *fs = FS(req);
	struct inode *n;
	struct kvfs_attr a;
	unsigned char val[DEVNUM_LEN];
	size_t vlen = 0;
	uint32_t type = mode & S_IFMT;
	switch (type) {
	case 0:
		type = S_IFREG;
		break;
	case S_IFREG:
	case S_IFIFO:
	case S_IFSOCK:
		break;
	case S_IFCHR:
	case S_IFBLK:
		devnum_encode(major(rdev), minor(rdev), val);
		vlen = sizeof(val);
		break;
	default:
		reply_err(req, -EPERM);
		return;
	}
	int ret = make_file(req, parent, name, type | (mode & 07777), val, vlen, &n, &a);
	if (ret) {
		reply_err(req, ret);
		return;
	}
	if (is_dev(type)) {
		pthread_mutex_lock(&fs->it.lock);
		n->rdev = makedev(major(rdev), minor(rdev));
		n->rdev_version = 0; /* the PUT's version is learnt at the next stat */
		n->rdev_known = 1;
		pthread_mutex_unlock(&fs->it.lock);
	}
	reply_entry(req, fs, n, &a);
}

void op_readlink(fuse_req_t req, fuse_ino_t ino)
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

void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
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
	dir_changed(fs, parent, key);
	struct kvfs_attr a = stored_attr(&sa, tl);
	struct inode *n = itab_lookup(&fs->it, parent, name, S_IFLNK);
	if (!n) {
		reply_err(req, -ENOMEM);
		return;
	}
	node_seen(fs, n, &a);
	reply_entry(req, fs, n, &a);
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
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
	dir_changed(fs, parent, key);
	struct kvfs_attr a = stored_attr(&sa, 0);
	struct inode *n = itab_lookup(&fs->it, parent, name, S_IFDIR);
	if (!n)
		reply_err(req, -ENOMEM);
	else
		reply_entry(req, fs, n, &a);
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = FS(req);
	char key[KEYCAP];
	int len = fs->o.ro ? -EROFS : itab_child_key(&fs->it, parent, name, "", key, sizeof(key));
	int ret = len < 0 ? len : kvfs_delete(fs->kv, key);
	if (!ret) {
		itab_unlink(&fs->it, parent, name);
		dir_changed(fs, parent, key);
	}
	reply_err(req, ret);
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
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
	if (!ret) {
		itab_unlink(&fs->it, parent, name);
		dir_changed(fs, parent, key);
	}
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
	ret = kvfs_limits(fs->kv, kvfs_server_of(fs->kv, src), &lim); /* the pin's server */
	if (!ret)
		ret = kvfs_upload_open(fs->kv, dst, 0, &up);
	for (uint64_t off = 0; off < a.size && !ret;) {
		const void *data;
		kvfs_lease_t *lease;
		uint64_t want = a.size - off < lim.slot_size ? a.size - off : lim.slot_size;
		ssize_t n = kvfs_pin_get_lease(pin, want, off, &data, &lease);
		if (n <= 0) {
			kvfs_lease_release(lease); /* 0 bytes hold one too; NULL on failure */
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
	struct kvfs_setattr sa = {.mask = KVFS_SET_MTIME | KVFS_SET_ATIME,
				  .mtime_ns = a.mtime_ns,
				  .atime_ns = a.atime_ns};
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

void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
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
	if (!ret) {
		/* src and dst end in '/' when a directory was renamed (rename_dir) */
		dir_changed(fs, parent, src);
		dir_changed(fs, newparent, dst);
		ret = itab_rename(&fs->it, parent, name, newparent, newname);
	}
	reply_err(req, ret);
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	reply_err(req, -EPERM); /* a key has one name: no hard links */
}
