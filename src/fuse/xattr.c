/*
 * xattr: statfs and the extended attributes of the kvfs mount. statfs sums
 * the servers' pools. The only attributes are user.kvfs.ttl (settable),
 * user.kvfs.version and user.kvfs.server, computed from the key; none are
 * stored.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "fuse/ops_int.h"

/* ---- file system ---------------------------------------------------------- */

void op_statfs(fuse_req_t req, fuse_ino_t ino)
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

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
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

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
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
	ret = ret < 0 ? ret : kvfs_setattr(fs->kv, key, &sa, NULL);
	struct inode *n = ret ? NULL : itab_get(&fs->it, ino);
	if (n) {
		pthread_mutex_lock(&fs->it.lock);
		n->attr_ns = 0; /* a new expiry and ctime: the next getattr asks */
		pthread_mutex_unlock(&fs->it.lock);
	}
	return ret;
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
		 int flags)
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

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	if (strcmp(name, XA_TTL) == 0)
		reply_err(req, set_ttl(FS(req), ino, 0));
	else if (strcmp(name, XA_VERSION) == 0 || strcmp(name, XA_SERVER) == 0)
		reply_err(req, -ENOTSUP); /* read-only; see op_setxattr */
	else
		reply_err(req, -ENODATA);
}
