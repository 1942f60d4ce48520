/*
 * file: open files of the kvfs mount (open, read, write, flush, fsync,
 * release), each open a struct handle (ops_int.h).
 *
 * - Open pins the key's current value on its server (kvfs_pin_open), so a
 *   handle reads one version from first to last byte. Reads lend the
 *   registered receive slot (kvfs_pin_get_lease) and reply from it: the
 *   bytes land there by RMA and go to the kernel with no copy (a read
 *   larger than a slot is copied out of it piece by piece). From a server
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
 * - The page cache is one per inode, so it holds one view of the file: the
 *   bytes of one version that cached readers share, or those of one writer
 *   (handle_opened). A writer alone on its file goes through the page cache,
 *   write-through (no writeback cache: each write is a FUSE_WRITE of up to
 *   max_write), so it can be mapped, shared and writable; the kernel writes
 *   dirty mapped pages back as FUSE_WRITEs on the handle before it sends
 *   FLUSH or FSYNC, and at munmap, so msync, fsync and close commit them,
 *   and pages dirtied after the last close are committed at RELEASE. Any
 *   other handle opened meanwhile bypasses the cache (direct I/O), and a
 *   writer opened while other handles are open does too (as before: its
 *   shared mappings fail with ENODEV). After a page-cache writer's commit
 *   the cache holds that version; after a failed commit the next open
 *   drops it (keep_cache off), so no uncommitted byte reaches a reader.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "common/log.h"
#include "fuse/ops_int.h"

/*
 * How long an open waits for handles that were closed (FLUSH) and whose
 * RELEASE, which the kernel sends asynchronously (behind other background
 * requests), has not come yet: the stores of a mapping that outlived its
 * close are committed at that RELEASE. 100 ms was too short under load
 * (fs-random in CI read the version before the mapping's stores).
 */
#define RELEASE_WAIT_NS (1000 * 1000000LL)
/* A read-only open of a value up to this size fetches it whole (reader_open). */
#define WHOLE_MAX (64 * 1024)

__thread struct fs_worker_buf *fs_tls_buf;

/* ---- handles and uploads ---------------------------------------------------- */

/* Attributes a commit must carry so a rewrite keeps mode and owner. */
void commit_attrs(struct fs *fs, struct inode *n, struct kvfs_setattr *sa)
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
	if (h->cached && !h->fresh) {
		/*
		 * The upload starts from the key's current value; the pages
		 * cached so far are view_version's. Another version between
		 * them (written elsewhere) mixes the two in the page cache.
		 */
		struct kvfs_attr cur;
		if (kvfs_stat(fs->kv, key, &cur) || cur.version != h->view_version)
			__atomic_store_n(&h->mixed, 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_lock(&fs->it.lock);
	h->node->nwriters++;
	h->node->pending_size = kvfs_upload_size(h->up);
	if (h->cached)
		h->node->cache_version = 0; /* the cache now holds uncommitted bytes */
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
		/*
		 * A direct writer bypassed the page cache: it is stale. A
		 * page-cache writer's cache now holds the committed bytes,
		 * unless other versions' bytes got mixed in. After a failed
		 * commit cache_version stays 0 (h_upload), so the next open
		 * drops the cache.
		 */
		n->cache_version = 0;
		if (h->cached && !n->pcw_mixed && !__atomic_load_n(&h->mixed, __ATOMIC_RELAXED)) {
			n->cache_version = a.version;
			n->cache_attr = a;
		}
		h->view_version = a.version;
		n->commits++;
	}
	int inval = h->dirty && !ret && n->pcw && !h->cached;
	pthread_mutex_unlock(&fs->it.lock);
	if (inval)
		coh_inval_inode(fs, n->ino); /* from the notifier thread */
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

/*
 * Pin key into h->pin and learn the largest lease its server gives (the pin
 * connected it, so that sends nothing). Caller holds h->pin_lock
 * exclusively, or h is not shared yet.
 */
static int h_pin_open(struct fs *fs, struct handle *h, const char *key, struct kvfs_attr *a)
{
	struct kvfs_limits lim;
	pthread_mutex_lock(&fs->it.lock);
	h->pin_commits = h->node->commits;
	pthread_mutex_unlock(&fs->it.lock);
	int ret = kvfs_pin_open(fs->kv, key, &h->pin, a);
	if (ret)
		return ret;
	ret = kvfs_limits(fs->kv, kvfs_server_of(fs->kv, key), &lim);
	if (ret) {
		kvfs_pin_close(h->pin);
		h->pin = NULL;
		return ret;
	}
	h->lease_max = lim.slot_size;
	return 0;
}

struct handle *handle_new(struct fs *fs, struct inode *n, int flags)
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
int handle_close(struct fs *fs, struct handle *h)
{
	pthread_mutex_lock(&h->lock);
	int ret = h_commit(fs, h);
	pthread_mutex_unlock(&h->lock);
	struct inode *n = h->node;
	pthread_mutex_lock(&fs->it.lock);
	if (writable(h->flags)) {
		n->nwopen--;
		n->write_ns = mono_ns();
		if (h->cached)
			__atomic_store_n(&n->pcw, 0, __ATOMIC_RELAXED);
	} else if (h->cached) {
		n->ncached--;
		n->ncautious -= h->cautious;
	}
	n->nfiles--;
	if (h->flushed) {
		n->nflushed--;
		n->nwflushed -= writable(h->flags);
	}
	pthread_cond_broadcast(&fs->it.closed);
	pthread_mutex_unlock(&fs->it.lock);
	if (h->pin)
		kvfs_pin_close(h->pin);
	handle_free(fs, h);
	return ret;
}

/* ftruncate through a writable handle: resize its upload, published at flush. */
int handle_truncate(struct fs *fs, struct handle *h, uint64_t size)
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

/*
 * A GETATTR that names an open reader (the kernel sends one before reads
 * when attributes are stale) gets the size of the version that reader has
 * pinned, so the kernel does not cut its reads at the size of another
 * version. While someone here writes the file, or when that version is not
 * the newest one seen, that answer is not cached: the size is the inode's,
 * and cached readers of the newest version read up to it.
 */
int reader_attr(struct fs *fs, struct fuse_file_info *fi, struct kvfs_attr *a, double *timeout)
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
	pthread_mutex_lock(&fs->it.lock);
	if (ok && a->version != h->node->attr.version)
		*timeout = 0;
	if (ok && writable(h->flags) && h->pin_commits != h->node->commits)
		ok = 0; /* it will read what was committed here since (op_read) */
	pthread_mutex_unlock(&fs->it.lock);
	return ok;
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
	pthread_mutex_lock(&fs->it.lock);
	uint64_t seen = h->node->attr.version ? h->node->attr.size : 0;
	pthread_mutex_unlock(&fs->it.lock);
	if (seen <= WHOLE_MAX) {
		struct kvfs_limits lim;
		int ret = kvfs_limits(fs->kv, kvfs_server_of(fs->kv, key), &lim);
		if (ret)
			return ret;
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
	return h_pin_open(fs, h, key, a);
}

/*
 * May a handle opened on n use the page cache? Caller holds itab.lock.
 *
 * A writer only when no other handle is open: its writes and its mapped
 * pages land in the cache, which nobody else may read then. A reader only
 * when no handle here writes the file and every other cached reader reads
 * the same version. Within WRITE_QUIET_NS of a writer here a reader uses it
 * only alone, as a "cautious" reader: a writer that opens while cached
 * readers read moves the inode's one size (and O_TRUNC its pages) under
 * them, so writers wait for cautious readers to close (rewrite loops), and
 * readers opened meanwhile read around the cache. A file written and then
 * mapped read-only at once thus still maps.
 *
 * *wait: the answer is no only because of handles that may close soon
 * (closed but not yet released, or cautious readers), so it may change.
 */
static int do_may_cache(const struct inode *n, const struct handle *h, const struct kvfs_attr *a,
			int64_t now, int *wait, int *cautious)
{
	*cautious = 0;
	if (writable(h->flags)) {
		*wait = n->ncautious > 0 || (n->nfiles > 0 && n->nfiles == n->nflushed);
		return n->nfiles == 0;
	}
	*wait = n->nwopen > 0 && n->nwopen == n->nwflushed && !n->nwwait;
	if (n->nwopen || n->nwwait || (n->ncached && n->cache_version != a->version))
		return 0;
	if (now - n->write_ns > WRITE_QUIET_NS)
		return 1;
	*cautious = n->nfiles == 0;
	return *cautious;
}

void handle_opened(struct fs *fs, struct handle *h, struct fuse_file_info *fi,
		   const struct kvfs_attr *a)
{
	struct inode *n = h->node;
	int writer = writable(h->flags), wait, cautious, waited = 0;
	pthread_mutex_lock(&fs->it.lock);
	int64_t now = mono_ns(), until = now + RELEASE_WAIT_NS;
	for (;;) {
		h->cached = do_may_cache(n, h, a, now, &wait, &cautious);
		if (h->cached || !wait || now >= until)
			break;
		if (writer && !waited) {
			waited = 1;
			n->nwwait++; /* no new cautious readers meanwhile */
		}
		struct timespec ts = {.tv_sec = until / 1000000000LL,
				      .tv_nsec = until % 1000000000LL};
		pthread_cond_timedwait(&fs->it.closed, &fs->it.lock, &ts);
		now = mono_ns();
	}
	n->nwwait -= waited;
	if (waited)
		pthread_cond_broadcast(&fs->it.closed); /* readers waiting on nwwait */
	fi->keep_cache = 0;
	if (writer) {
		n->nwopen++;
		n->write_ns = now;
		if (h->cached) {
			/* pages of the version it opened may stay; it writes over them */
			fi->keep_cache = a && !h->fresh && n->cache_version == a->version;
			h->view_version = a && !h->fresh ? a->version : 0;
			__atomic_store_n(&n->pcw, 1, __ATOMIC_RELAXED);
			n->pcw_mixed = 0;
		}
		n->cache_version = 0;
	} else if (h->cached) {
		h->cautious = cautious;
		n->ncautious += cautious;
		n->ncached++;
		fi->keep_cache = n->cache_version == a->version;
		n->cache_version = a->version;
		n->cache_attr = *a;
	}
	n->nfiles++;
	/*
	 * Not over newer attributes (a commit while this open pinned): the
	 * kernel keeps one size per inode, and an older one would cut the
	 * reads of cached readers of the newer version short.
	 */
	if (a && !h->fresh && a->version >= n->attr.version)
		do_set_attr(n, a);
	pthread_mutex_unlock(&fs->it.lock);
	fi->direct_io = !h->cached;
	fi->fh = (uintptr_t)h;
}

/* Has a handle here committed since h pinned its version? */
static int h_pin_stale(struct fs *fs, struct handle *h)
{
	pthread_mutex_lock(&fs->it.lock);
	int stale = h->pin_commits != h->node->commits;
	pthread_mutex_unlock(&fs->it.lock);
	return stale;
}

/* A read or write after FLUSH: the handle is in use again (mapped after close). */
static void handle_unflush(struct fs *fs, struct handle *h)
{
	if (!__atomic_load_n(&h->flushed, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&fs->it.lock);
	if (h->flushed) {
		__atomic_store_n(&h->flushed, 0, __ATOMIC_RELAXED);
		h->node->nflushed--;
		h->node->nwflushed -= writable(h->flags);
	}
	pthread_mutex_unlock(&fs->it.lock);
}

void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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
	if (n->type != S_IFREG && n->type != S_IFLNK) {
		/* the kernel opens fifos, sockets and devices itself: never here */
		reply_err(req, -ENXIO);
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
		ret =
		    writable(fi->flags) ? h_pin_open(fs, h, key, &a) : reader_open(fs, h, key, &a);
		h->pin_attr = a;
		if (ret)
			goto fail;
	}
	handle_opened(fs, h, fi, h->fresh ? NULL : &a);
	fsm_open(!h->cached ? 0 : fi->keep_cache ? 2 : 1);
	if (fuse_reply_open(req, fi) == -ENOENT)
		handle_close(fs, h);
	return;
fail:
	handle_free(fs, h);
	reply_err(req, ret);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct handle *h = handle_of(fi);
	char key[KEYCAP];
	ssize_t n;

	handle_unflush(fs, h);
	if (!h->cached && __atomic_load_n(&h->node->pcw, __ATOMIC_RELAXED)) {
		/*
		 * A direct read beside a page-cache writer: if it fills a
		 * private mapping, its version's pages enter that writer's
		 * cache, which its commit then must not keep.
		 */
		pthread_mutex_lock(&fs->it.lock);
		h->node->pcw_mixed = h->node->pcw;
		pthread_mutex_unlock(&fs->it.lock);
	}
	pthread_mutex_lock(&h->lock);
	if (h->up) {
		/* read-your-writes: the pending value */
		void *buf = malloc(size ? size : 1);
		n = buf ? kvfs_upload_read(h->up, buf, size, (uint64_t)off) : -ENOMEM;
		pthread_mutex_unlock(&h->lock);
		if (n < 0) {
			reply_err(req, (int)n);
		} else {
			fsm_read((size_t)n);
			fuse_reply_buf(req, buf, (size_t)n);
		}
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
		fsm_read(len);
		fuse_reply_buf(req, copy, len);
		return;
	}
	if (writable(h->flags) && h_pin_stale(fs, h)) {
		/*
		 * Another handle here committed since this one pinned: a
		 * writer without pending writes reads the newest version
		 * (sqlite's connections share their files so).
		 */
		pthread_rwlock_wrlock(&h->pin_lock);
		if (h->pin && h_pin_stale(fs, h)) {
			kvfs_pin_close(h->pin);
			h->pin = NULL;
		}
		pthread_rwlock_unlock(&h->pin_lock);
	}
	pthread_rwlock_rdlock(&h->pin_lock);
	while (!h->pin) {
		/* first read after a commit here: pin what was published */
		pthread_rwlock_unlock(&h->pin_lock);
		pthread_rwlock_wrlock(&h->pin_lock);
		int len = h->pin ? 0 : itab_key(&fs->it, ino, "", key, sizeof(key));
		int ret = len < 0 ? len : h->pin ? 0 : h_pin_open(fs, h, key, &h->pin_attr);
		if (!ret && h->cached && writable(h->flags) &&
		    h->pin_attr.version != h->view_version)
			__atomic_store_n(&h->mixed, 1, __ATOMIC_RELAXED); /* changed elsewhere */
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
	kvfs_lease_t *lease = NULL;
	n = kvfs_pin_map(h->pin, size, (uint64_t)off, iov, 8, &niov, &lease);
	if (n == -EOPNOTSUPP && size <= h->lease_max) {
		const void *data;
		n = kvfs_pin_get_lease(h->pin, size, (uint64_t)off, &data, &lease);
		iov[0] = (struct iovec){(void *)data, n > 0 ? (size_t)n : 0};
		niov = 1;
	} else if (n == -EOPNOTSUPP) {
		/*
		 * A read larger than one receive slot (a small client.buffer):
		 * copied through one slot at a time into the worker's scratch
		 * buffer. Leasing several slots per read instead could leave
		 * every worker holding some and waiting for the rest.
		 */
		struct fs_worker_buf *wb = fs_tls_buf;
		if (wb && !wb->scratch)
			wb->scratch = malloc(fs->o.max_read);
		n = !wb || !wb->scratch ? -ENOMEM
					: kvfs_pin_get(h->pin, wb->scratch, size, (uint64_t)off);
		iov[0] = (struct iovec){wb ? wb->scratch : NULL, n > 0 ? (size_t)n : 0};
		niov = 1;
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
		fsm_read((size_t)n);
		fuse_reply_iov(req, iov, niov);
		kvfs_lease_release(lease);
	}
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
	      struct fuse_file_info *fi)
{
	(void)ino;
	struct fs *fs = FS(req);
	struct handle *h = handle_of(fi);
	if (!fi->writepage)
		handle_unflush(fs, h); /* a page written back after close: RELEASE follows */
	pthread_mutex_lock(&h->lock);
	int ret = h_upload(fs, h);
	if (!ret) {
		/*
		 * Through the page cache the kernel places appends itself (at
		 * its size), and the bytes must land where its pages have them.
		 */
		int append = (h->flags & O_APPEND) && !h->cached;
		uint64_t at = append ? kvfs_upload_size(h->up) : (uint64_t)off;
		struct fs_worker_buf *wb = fs_tls_buf;
		if (wb && buf >= (char *)wb->mem && buf + size <= (char *)wb->mem + wb->len)
			ret = kvfs_upload_write_mr(h->up, buf, size, at, wb->mr);
		else
			ret = kvfs_upload_write(h->up, buf, size, at);
		if (!ret)
			h_touched(fs, h);
		/*
		 * O_DSYNC, O_SYNC: each write is done when it is committed
		 * (LMDB writes its meta page so). Through the page cache the
		 * kernel sends FSYNC after the write itself.
		 */
		if (!ret && !h->cached && ((h->flags | fi->flags) & O_DSYNC))
			ret = h_commit(fs, h);
	}
	pthread_mutex_unlock(&h->lock);
	if (ret)
		reply_err(req, ret);
	else {
		fsm_written(size);
		fuse_reply_write(req, size);
	}
}

/*
 * FLUSH (a close) and FSYNC (fsync, msync) come after the kernel has sent
 * every dirty page of the file as FUSE_WRITE: commit them.
 */
static int h_sync(struct fs *fs, struct handle *h)
{
	pthread_mutex_lock(&h->lock);
	int ret = h->dirty ? h_commit(fs, h) : 0;
	pthread_mutex_unlock(&h->lock);
	return ret;
}

void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	struct fs *fs = FS(req);
	struct handle *h = handle_of(fi);
	int ret = h_sync(fs, h);
	pthread_mutex_lock(&fs->it.lock);
	if (!h->flushed) {
		__atomic_store_n(&h->flushed, 1, __ATOMIC_RELAXED);
		h->node->nflushed++;
		h->node->nwflushed += writable(h->flags);
	}
	pthread_mutex_unlock(&fs->it.lock);
	reply_err(req, ret);
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	reply_err(req, h_sync(FS(req), handle_of(fi)));
}

void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	int ret = handle_close(FS(req), handle_of(fi));
	if (ret)
		log_error("release: commit failed: %s", kvfs_strerror(ret));
	fuse_reply_err(req, 0);
}
