/*
 * dir: directory listings of the kvfs mount (opendir, readdir,
 * readdirplus, releasedir). Listings are fetched whole at opendir (one pass
 * per server) and served with attributes (readdirplus), so `ls -l` needs no
 * request per file (but for device nodes seen for the first time, or
 * changed: one small GET each for the device number, see node_rdev).
 *
 * With invalidations (coherence.h) the kernel keeps each listing in its
 * directory cache (cache_readdir): a directory listed while coherent is
 * marked dir_cached, and its next opendir keeps the kernel's cache and
 * lists nothing unless the kernel asks for entries after all (then the
 * listing is fetched at that first readdir). An invalidation of the
 * directory's prefix clears the mark and drops the kernel's cache.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "fuse/ops_int.h"

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
	uint64_t coh; /* tracking state before the listing (coherence.h) */
	int listed;   /* e[] holds the listing (else fetched at the first readdir) */
	char *key;    /* the listed prefix, for a listing fetched late */
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
	free(d->key);
	free(d);
}

/* Fetch d's listing (d->key). Returns 0 or -errno. */
static int dir_list(struct fs *fs, struct dirh *d)
{
	static const struct kvfs_attr none;
	int ret;
	if ((ret = dir_add(d, ".", 1, S_IFDIR, &none)) ||
	    (ret = dir_add(d, "..", 2, S_IFDIR, &none)))
		return ret;
	d->coh = coh_state(fs);
	log_debug("listing \"%s\"", d->key);
	ssize_t n = kvfs_list(fs->kv, d->key, '/', dir_cb, d);
	if (n < 0 || d->err)
		return d->err ? d->err : (int)n;
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
	d->listed = 1;
	return 0;
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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
	d->key = strdup(key);
	if (!d->key) {
		ret = -ENOMEM;
		goto fail;
	}
	struct inode *dn = itab_get(&fs->it, ino);
	int keep = 0;
	if (coh_tracking(fs) && dn) {
		uint64_t st = coh_state(fs);
		pthread_mutex_lock(&fs->it.lock);
		keep = dn->dir_cached && (st & 1);
		pthread_mutex_unlock(&fs->it.lock);
	}
	if (!keep) {
		if ((ret = dir_list(fs, d)) != 0)
			goto fail;
		if (coh_tracking(fs) && dn) {
			/* listed while coherent: the kernel may keep it */
			uint64_t st = coh_state(fs);
			pthread_mutex_lock(&fs->it.lock);
			dn->dir_cached = (st & 1) && st == d->coh;
			pthread_mutex_unlock(&fs->it.lock);
		}
	}
	fi->fh = (uintptr_t)d;
	fi->cache_readdir = fs->coh != NULL;
	fi->keep_cache = keep;
	if (fuse_reply_open(req, fi) == -ENOENT)
		dir_free(d);
	return;
fail:
	if (d)
		dir_free(d);
	reply_err(req, ret);
}

static void dir_reply(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		      struct fuse_file_info *fi, int plus)
{
	struct fs *fs = FS(req);
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
	int ret;
	if (!d->listed && (ret = dir_list(fs, d)) != 0) {
		reply_err(req, ret); /* the kernel's cache did not cover it after all */
		return;
	}
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
				int known = 1;
				if (!a.version && e->type == S_IFDIR)
					a = dir_default();
				if (is_dev(e->type)) {
					char key[KEYCAP];
					int kl = itab_child_key(&fs->it, ino, e->name, "", key,
								sizeof(key));
					known = kl >= 0 && node_rdev(fs, n, key, &a) == 0;
				}
				if (e->has_attr)
					node_seen(fs, n, &a);
				ep.ino = n->ino;
				fill_stat(fs, n->ino, e->type, &a, &ep.attr);
				stat_rdev(fs, n, &ep.attr);
				ep.entry_timeout = entry_ttl(fs, n);
				/* a directory's attributes live in its marker: not listed */
				ep.attr_timeout = e->has_attr ? attr_ttl(fs, n) : 0;
				if (!known) {
					/*
					 * The name without an inode (nodeid 0): the kernel
					 * fixes a device's number when it first makes the
					 * inode, so it looks the name up instead.
					 */
					itab_forget(&fs->it, n->ino, 1);
					n = NULL;
					ep.ino = 0;
				}
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

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	dir_reply(req, ino, size, off, fi, 0);
}

void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
	coh_set(d->listed ? d->coh : coh_state(FS(req))); /* what the listing saw */
	dir_reply(req, ino, size, off, fi, 1);
	coh_end();
}

void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	dir_free((struct dirh *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}
