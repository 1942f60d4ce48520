/*
 * inode: the mount's inode table (see inode.h). Two chained hash tables
 * over the same nodes, one by number and one by (parent, name); they grow
 * by doubling at load 1.
 */
#include "fuse/inode.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/hash.h"

static size_t name_bucket(const struct itab *t, uint64_t parent, const char *name)
{
	return (size_t)(hash_mix(hash64(name, strlen(name), 0) ^ parent) & (t->nbuckets - 1));
}

static size_t ino_bucket(const struct itab *t, uint64_t ino)
{
	return (size_t)(hash_mix(ino) & (t->nbuckets - 1));
}

static void link_ino(struct itab *t, struct inode *n)
{
	size_t b = ino_bucket(t, n->ino);
	n->next_ino = t->by_ino[b];
	t->by_ino[b] = n;
}

static void link_name(struct itab *t, struct inode *n)
{
	size_t b = name_bucket(t, n->parent->ino, n->name);
	n->next_name = t->by_name[b];
	t->by_name[b] = n;
}

static void unlink_name(struct itab *t, struct inode *n)
{
	struct inode **p = &t->by_name[name_bucket(t, n->parent->ino, n->name)];
	while (*p && *p != n)
		p = &(*p)->next_name;
	if (*p)
		*p = n->next_name;
}

static void unlink_ino(struct itab *t, struct inode *n)
{
	struct inode **p = &t->by_ino[ino_bucket(t, n->ino)];
	while (*p && *p != n)
		p = &(*p)->next_ino;
	if (*p)
		*p = n->next_ino;
}

static int grow(struct itab *t)
{
	size_t old = t->nbuckets, nb = old * 2;
	struct inode **bi = calloc(nb, sizeof(*bi)), **bn = calloc(nb, sizeof(*bn));
	if (!bi || !bn) {
		free(bi);
		free(bn);
		return -ENOMEM;
	}
	struct inode **oi = t->by_ino;
	free(t->by_name);
	t->by_ino = bi;
	t->by_name = bn;
	t->nbuckets = nb;
	for (size_t b = 0; b < old; b++) {
		for (struct inode *n = oi[b], *next; n; n = next) {
			next = n->next_ino;
			link_ino(t, n);
			if (n->parent && !n->detached)
				link_name(t, n);
		}
	}
	free(oi);
	return 0;
}

static struct inode *do_get(struct itab *t, uint64_t ino)
{
	struct inode *n = t->by_ino[ino_bucket(t, ino)];
	while (n && n->ino != ino)
		n = n->next_ino;
	return n;
}

static struct inode *do_find(struct itab *t, uint64_t parent, const char *name)
{
	struct inode *n = t->by_name[name_bucket(t, parent, name)];
	while (n && !(n->parent->ino == parent && strcmp(n->name, name) == 0))
		n = n->next_name;
	return n;
}

static void do_detach(struct itab *t, struct inode *n)
{
	if (n->detached)
		return;
	unlink_name(t, n);
	n->detached = 1;
}

/* Free n and any parents it was the last reason to keep. */
static void do_maybe_free(struct itab *t, struct inode *n)
{
	while (n && n->parent && n->nlookup == 0 && n->nchild == 0 && n->nopen == 0) {
		struct inode *p = n->parent;
		if (!n->detached)
			unlink_name(t, n);
		unlink_ino(t, n);
		t->count--;
		free(n->name);
		free(n);
		p->nchild--;
		n = p;
	}
}

int itab_init(struct itab *t)
{
	memset(t, 0, sizeof(*t));
	t->nbuckets = 1024;
	t->by_ino = calloc(t->nbuckets, sizeof(*t->by_ino));
	t->by_name = calloc(t->nbuckets, sizeof(*t->by_name));
	t->root = calloc(1, sizeof(*t->root));
	char *rname = strdup("");
	if (!t->by_ino || !t->by_name || !t->root || !rname) {
		free(rname);
		itab_destroy(t);
		return -ENOMEM;
	}
	pthread_mutex_init(&t->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->closed, &ca);
	pthread_condattr_destroy(&ca);
	t->root->ino = ITAB_ROOT;
	t->root->name = rname;
	t->root->type = S_IFDIR;
	t->root->nlookup = 1;
	link_ino(t, t->root);
	t->count = 1;
	t->next_ino = ITAB_ROOT + 1;
	return 0;
}

void itab_destroy(struct itab *t)
{
	if (t->by_ino) {
		for (size_t b = 0; b < t->nbuckets; b++) {
			for (struct inode *n = t->by_ino[b], *next; n; n = next) {
				next = n->next_ino;
				free(n->name);
				free(n);
			}
		}
		pthread_mutex_destroy(&t->lock);
		pthread_cond_destroy(&t->closed);
	} else {
		free(t->root);
	}
	free(t->by_ino);
	free(t->by_name);
	memset(t, 0, sizeof(*t));
}

struct inode *itab_lookup(struct itab *t, uint64_t parent, const char *name, uint32_t type)
{
	pthread_mutex_lock(&t->lock);
	struct inode *p = do_get(t, parent), *n = NULL;
	if (!p)
		goto out;
	n = do_find(t, parent, name);
	if (n && n->type != type) {
		do_detach(t, n);
		n = NULL;
	}
	if (!n) {
		if (t->count >= t->nbuckets && grow(t))
			goto out;
		n = calloc(1, sizeof(*n));
		if (!n || !(n->name = strdup(name))) {
			free(n);
			n = NULL;
			goto out;
		}
		n->ino = t->next_ino++;
		n->parent = p;
		n->type = type;
		p->nchild++;
		link_ino(t, n);
		link_name(t, n);
		t->count++;
	}
	n->nlookup++;
out:
	pthread_mutex_unlock(&t->lock);
	return n;
}

struct inode *itab_get(struct itab *t, uint64_t ino)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = do_get(t, ino);
	pthread_mutex_unlock(&t->lock);
	return n;
}

void itab_forget(struct itab *t, uint64_t ino, uint64_t count)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = do_get(t, ino);
	if (n && n->parent) {
		n->nlookup = count > n->nlookup ? 0 : n->nlookup - count;
		do_maybe_free(t, n);
	}
	pthread_mutex_unlock(&t->lock);
}

void itab_hold(struct itab *t, struct inode *n)
{
	pthread_mutex_lock(&t->lock);
	n->nopen++;
	pthread_mutex_unlock(&t->lock);
}

void itab_unhold(struct itab *t, struct inode *n)
{
	pthread_mutex_lock(&t->lock);
	n->nopen--;
	do_maybe_free(t, n);
	pthread_mutex_unlock(&t->lock);
}

/* Append the path of n (without leading '/') at buf[0..); returns length or -ENAMETOOLONG. */
static int do_path(const struct inode *n, char *buf, size_t cap)
{
	if (!n->parent)
		return 0;
	int len = do_path(n->parent, buf, cap);
	if (len < 0)
		return len;
	size_t nl = strlen(n->name), need = (size_t)len + (len ? 1 : 0) + nl;
	if (need >= cap)
		return -ENAMETOOLONG;
	if (len)
		buf[len++] = '/';
	memcpy(buf + len, n->name, nl);
	return (int)need;
}

static int finish_key(char *buf, size_t cap, int len, const char *name, const char *suffix)
{
	if (len < 0)
		return len;
	size_t nl = name ? strlen(name) : 0, sl = strlen(suffix);
	size_t total = (size_t)len + (name && len ? 1 : 0) + nl + sl;
	if (total >= cap || total > KVFS_MAX_KEY)
		return -ENAMETOOLONG;
	if (name) {
		if (len)
			buf[len++] = '/';
		memcpy(buf + len, name, nl);
		len += (int)nl;
	}
	memcpy(buf + len, suffix, sl + 1);
	return (int)total;
}

int itab_key(struct itab *t, uint64_t ino, const char *suffix, char *buf, size_t cap)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = do_get(t, ino);
	int len = n ? do_path(n, buf, cap) : -ENOENT;
	pthread_mutex_unlock(&t->lock);
	return finish_key(buf, cap, len, NULL, suffix);
}

int itab_child_key(struct itab *t, uint64_t parent, const char *name, const char *suffix, char *buf,
		   size_t cap)
{
	size_t nl = strlen(name);
	if (nl > NAME_MAX_BYTES)
		return -ENAMETOOLONG;
	if (!name_ok(name, nl))
		return -EINVAL;
	pthread_mutex_lock(&t->lock);
	struct inode *p = do_get(t, parent);
	int len = p ? do_path(p, buf, cap) : -ENOENT;
	pthread_mutex_unlock(&t->lock);
	return finish_key(buf, cap, len, name, suffix);
}

void itab_unlink(struct itab *t, uint64_t parent, const char *name)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = do_find(t, parent, name);
	if (n)
		do_detach(t, n);
	pthread_mutex_unlock(&t->lock);
}

int itab_rename(struct itab *t, uint64_t parent, const char *name, uint64_t newparent,
		const char *newname)
{
	int ret = 0;
	char *nn = strdup(newname);
	if (!nn)
		return -ENOMEM;
	pthread_mutex_lock(&t->lock);
	struct inode *np = do_get(t, newparent), *n = do_find(t, parent, name);
	struct inode *old = do_find(t, newparent, newname);
	if (old && old != n)
		do_detach(t, old);
	if (!n || !np) {
		free(nn);
		goto out;
	}
	unlink_name(t, n);
	struct inode *op = n->parent;
	free(n->name);
	n->name = nn;
	n->parent = np;
	np->nchild++;
	link_name(t, n);
	n->attr_ns = 0; /* a new key, and a new ctime: ask its server */
	op->nchild--;
	do_maybe_free(t, op);
out:
	pthread_mutex_unlock(&t->lock);
	return ret;
}

int name_ok(const char *name, size_t len)
{
	if (len == 0 || len > NAME_MAX_BYTES || memchr(name, '/', len))
		return 0;
	if (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.')))
		return 0;
	return 1;
}

struct inode *do_itab_walk(struct itab *t, const char *key, size_t klen, struct inode **parent)
{
	struct inode *n = t->root, *p = NULL;
	char name[NAME_MAX_BYTES + 1];
	size_t i = 0;
	if (klen && key[klen - 1] == '/')
		klen--;
	while (i < klen) {
		size_t j = i;
		while (j < klen && key[j] != '/')
			j++;
		if (!n || j == i || j - i > NAME_MAX_BYTES) {
			*parent = NULL;
			return NULL; /* a directory above is not known, or no path */
		}
		memcpy(name, key + i, j - i);
		name[j - i] = 0;
		p = n;
		n = do_find(t, p->ino, name);
		i = j + 1;
	}
	*parent = p;
	return n;
}

void do_itab_each(struct itab *t, void (*fn)(void *arg, struct inode *n), void *arg)
{
	for (size_t b = 0; b < t->nbuckets; b++)
		for (struct inode *n = t->by_ino[b]; n; n = n->next_ino)
			fn(arg, n);
}
