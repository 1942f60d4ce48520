/*
 * store_dir: the directory index, and listing by prefix over it.
 *
 * Dir path -> node (a hash table of nodes, the root apart); a node keeps its
 * direct items sorted in blocks of <= 256 refs (each block's first 8 key
 * bytes after the path cached for the binary search), its child nodes
 * sorted, and a count of all items below it. A listing visits only the
 * entries it returns: it starts in the prefix's node at the cursor, and
 * with delim '/' a child directory is one entry, not its items.
 */
#include "store_int.h"

#include <stdlib.h>

#define DBLK 256u

struct dblk {
	uint32_t n;
	uint32_t ref[DBLK];
};

struct dnode {
	uint64_t hash;
	struct dnode *parent;
	char *path; /* ends in '/', "" for the root */
	uint32_t plen;
	uint32_t nblk, cblk;
	struct dblk **blk;
	uint64_t *bkey; /* per block: 8 bytes of its first key after path, big-endian */
	uint32_t nkid, ckid;
	struct dnode **kid;
	uint64_t ndesc; /* items in this node and below */
};

static inline size_t dir_len(const uint8_t *key, size_t klen)
{
	const uint8_t *sl = memrchr(key, '/', klen);

	return sl ? (size_t)(sl - key) + 1 : 0;
}

static inline uint64_t dir_hash(const struct store *s, const void *p, size_t n)
{
	return hash64(p, n, s->seed ^ 0x5bd1e995u);
}

static struct dnode *dir_lookup(const struct store *s, const void *path, size_t plen)
{
	if (plen == 0)
		return s->root;

	uint64_t h = dir_hash(s, path, plen);
	uint32_t mask = s->dmn - 1, i = (uint32_t)h & mask;

	for (;; i = (i + 1) & mask) {
		struct dnode *d = s->dm[i];

		if (!d)
			return NULL;
		if (d->hash == h && d->plen == plen && memcmp(d->path, path, plen) == 0)
			return d;
	}
}

static int dm_grow(struct store *s)
{
	uint32_t n = s->dmn * 2;
	struct dnode **t = calloc(n, sizeof(*t));

	if (!t)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->dmn; i++) {
		struct dnode *d = s->dm[i];

		if (!d)
			continue;
		uint32_t j = (uint32_t)d->hash & (n - 1);

		while (t[j])
			j = (j + 1) & (n - 1);
		t[j] = d;
	}
	free(s->dm);
	s->dm = t;
	s->dir_bytes += (uint64_t)(n - s->dmn) * sizeof(*t);
	s->dmn = n;
	return 0;
}

static void dm_remove(struct store *s, struct dnode *d)
{
	uint32_t mask = s->dmn - 1, i = (uint32_t)d->hash & mask, j;

	while (s->dm[i] != d)
		i = (i + 1) & mask;
	j = i;
	for (;;) {
		j = (j + 1) & mask;
		struct dnode *e = s->dm[j];

		if (!e)
			break;
		uint32_t h = (uint32_t)e->hash & mask;

		if (((j - h) & mask) >= ((j - i) & mask)) {
			s->dm[i] = e;
			i = j;
		}
	}
	s->dm[i] = NULL;
	s->dmcount--;
}

/* Index of the first child of d whose path is >= (or > when upper) p. */
static uint32_t kid_bound(const struct dnode *d, const void *p, size_t pl, bool upper)
{
	uint32_t lo = 0, hi = d->nkid;

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		int c = kcmp(d->kid[mid]->path, d->kid[mid]->plen, p, pl);

		if (c < 0 || (upper && c == 0))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void dnode_free(struct store *s, struct dnode *d)
{
	s->dir_bytes -= sizeof(*d) + d->plen + 1 +
			(uint64_t)d->cblk * (sizeof(*d->blk) + sizeof(*d->bkey)) +
			(uint64_t)d->ckid * sizeof(*d->kid);
	for (uint32_t i = 0; i < d->nblk; i++)
		free(d->blk[i]);
	s->dir_bytes -= (uint64_t)d->nblk * sizeof(struct dblk);
	free(d->blk);
	free(d->bkey);
	free(d->kid);
	free(d->path);
	free(d);
}

/* Free empty nodes from d upwards (never the root). */
static void dir_prune(struct store *s, struct dnode *d)
{
	while (d && d != s->root && d->ndesc == 0 && d->nkid == 0 && d->nblk == 0) {
		struct dnode *par = d->parent;
		uint32_t i = kid_bound(par, d->path, d->plen, false);

		if (i < par->nkid && par->kid[i] == d) {
			memmove(&par->kid[i], &par->kid[i + 1],
				(par->nkid - i - 1) * sizeof(*par->kid));
			par->nkid--;
		}
		dm_remove(s, d);
		dnode_free(s, d);
		d = par;
	}
}

static struct dnode *dir_get(struct store *s, const uint8_t *path, size_t plen)
{
	struct dnode *d = dir_lookup(s, path, plen), *par;

	if (d)
		return d;
	/* parent = path up to the previous '/' */
	par = dir_get(s, path, dir_len(path, plen - 1));
	if (!par)
		return NULL;
	if ((uint64_t)(s->dmcount + 1) * 4 > (uint64_t)s->dmn * 3 && dm_grow(s))
		goto fail;
	if (par->nkid == par->ckid) {
		uint32_t nc = par->ckid ? par->ckid * 2 : 4;
		struct dnode **k = realloc(par->kid, nc * sizeof(*k));

		if (!k)
			goto fail;
		s->dir_bytes += (uint64_t)(nc - par->ckid) * sizeof(*k);
		par->kid = k;
		par->ckid = nc;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		goto fail;
	d->path = malloc(plen + 1);
	if (!d->path) {
		free(d);
		goto fail;
	}
	memcpy(d->path, path, plen);
	d->path[plen] = 0;
	d->plen = (uint32_t)plen;
	d->hash = dir_hash(s, path, plen);
	d->parent = par;
	s->dir_bytes += sizeof(*d) + plen + 1;

	uint32_t i = kid_bound(par, path, plen, false);

	memmove(&par->kid[i + 1], &par->kid[i], (par->nkid - i) * sizeof(*par->kid));
	par->kid[i] = d;
	par->nkid++;

	uint32_t mask = s->dmn - 1, j = (uint32_t)d->hash & mask;

	while (s->dm[j])
		j = (j + 1) & mask;
	s->dm[j] = d;
	s->dmcount++;
	return d;
fail:
	dir_prune(s, par);
	return NULL;
}

static inline const struct item *blk_first(const struct store *s, const struct dblk *b)
{
	return r2i(s, b->ref[0]);
}

/* Bytes [off, off + 8) of a key, big-endian, zero-padded. */
static inline uint64_t key8(const uint8_t *k, size_t kl, size_t off)
{
	uint8_t b[8] = {0};
	uint64_t v;

	if (kl > off)
		memcpy(b, k + off, kl - off < 8 ? kl - off : 8);
	memcpy(&v, b, 8);
	return __builtin_bswap64(v);
}

static void blk_fix(const struct store *s, struct dnode *d, uint32_t i)
{
	const struct item *f = blk_first(s, d->blk[i]);

	d->bkey[i] = key8(ikey(f), ikl(f), d->plen);
}

static void blk_arr_ins(struct dnode *d, uint32_t i, struct dblk *b)
{
	memmove(&d->blk[i + 1], &d->blk[i], (d->nblk - i) * sizeof(*d->blk));
	memmove(&d->bkey[i + 1], &d->bkey[i], (d->nblk - i) * sizeof(*d->bkey));
	d->blk[i] = b;
	d->bkey[i] = 0;
	d->nblk++;
}

static void blk_arr_del(struct dnode *d, uint32_t i)
{
	memmove(&d->blk[i], &d->blk[i + 1], (d->nblk - i - 1) * sizeof(*d->blk));
	memmove(&d->bkey[i], &d->bkey[i + 1], (d->nblk - i - 1) * sizeof(*d->bkey));
	d->nblk--;
}

/*
 * Block that holds (or would hold) key: the last whose first key is <= key.
 * Keys below d's path compare by the cached 8 bytes first (all keys of d
 * start with d->path).
 */
static uint32_t blk_find(const struct store *s, const struct dnode *d, const void *k, size_t kl)
{
	uint32_t lo = 1, hi = d->nblk; /* block 0 also takes keys below its first */
	bool fast = starts_with(k, kl, d->path, d->plen);
	uint64_t t8 = fast ? key8(k, kl, d->plen) : 0;

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		int c;

		if (fast && d->bkey[mid] != t8)
			c = d->bkey[mid] < t8 ? -1 : 1;
		else
			c = icmp(blk_first(s, d->blk[mid]), k, kl);
		if (c <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo - 1;
}

/* First index in b whose key is >= k (> k when upper). */
static uint32_t blk_bound(const struct store *s, const struct dblk *b, const void *k, size_t kl,
			  bool upper)
{
	uint32_t lo = 0, hi = b->n;

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		int c = icmp(r2i(s, b->ref[mid]), k, kl);

		if (c < 0 || (upper && c == 0))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int blk_array_room(struct store *s, struct dnode *d)
{
	if (d->nblk < d->cblk)
		return 0;
	uint32_t nc = d->cblk ? d->cblk * 2 : 1;
	struct dblk **a = realloc(d->blk, nc * sizeof(*a));

	if (!a)
		return -ENOMEM;
	d->blk = a;
	uint64_t *k = realloc(d->bkey, nc * sizeof(*k));

	if (!k)
		return -ENOMEM;
	d->bkey = k;
	s->dir_bytes += (uint64_t)(nc - d->cblk) * (sizeof(*a) + sizeof(*k));
	d->cblk = nc;
	return 0;
}

int dir_insert(struct store *s, struct item *it)
{
	const uint8_t *key = ikey(it);
	size_t kl = ikl(it);
	struct dnode *d = dir_get(s, key, dir_len(key, kl));
	uint32_t ref = i2r(s, it);

	if (!d)
		return -ENOMEM;
	if (blk_array_room(s, d))
		goto fail;
	if (d->nblk == 0) {
		struct dblk *b = malloc(sizeof(*b));

		if (!b)
			goto fail;
		b->n = 0;
		blk_arr_ins(d, 0, b);
		s->dir_bytes += sizeof(*b);
	}
	uint32_t bi = blk_find(s, d, key, kl);
	struct dblk *b = d->blk[bi];
	uint32_t pos = blk_bound(s, b, key, kl, false);

	if (b->n == DBLK) {
		struct dblk *nb = malloc(sizeof(*nb));

		if (!nb)
			goto fail;
		s->dir_bytes += sizeof(*nb);
		nb->n = DBLK / 2;
		memcpy(nb->ref, b->ref + DBLK / 2, (DBLK / 2) * sizeof(uint32_t));
		b->n = DBLK / 2;
		blk_arr_ins(d, bi + 1, nb);
		blk_fix(s, d, bi + 1);
		if (pos > DBLK / 2) {
			b = nb;
			bi++;
			pos -= DBLK / 2;
		}
	}
	memmove(&b->ref[pos + 1], &b->ref[pos], (b->n - pos) * sizeof(uint32_t));
	b->ref[pos] = ref;
	b->n++;
	if (pos == 0)
		blk_fix(s, d, bi);
	for (struct dnode *x = d; x; x = x->parent)
		x->ndesc++;
	return 0;
fail:
	if (d->nblk == 0)
		dir_prune(s, d);
	return -ENOMEM;
}

/* Locate it in its directory node: returns the node, *bi, *pos. */
static struct dnode *dir_locate(const struct store *s, const struct item *it, uint32_t *bi,
				uint32_t *pos)
{
	const uint8_t *key = ikey(it);
	size_t kl = ikl(it);
	struct dnode *d = dir_lookup(s, key, dir_len(key, kl));

	if (!d || !d->nblk)
		return NULL;
	*bi = blk_find(s, d, key, kl);
	*pos = blk_bound(s, d->blk[*bi], key, kl, false);
	if (*pos >= d->blk[*bi]->n || d->blk[*bi]->ref[*pos] != i2r(s, it))
		return NULL;
	return d;
}

void dir_remove(struct store *s, struct item *it)
{
	uint32_t bi, pos;
	struct dnode *d = dir_locate(s, it, &bi, &pos);

	if (!d)
		return;
	struct dblk *b = d->blk[bi];

	memmove(&b->ref[pos], &b->ref[pos + 1], (b->n - pos - 1) * sizeof(uint32_t));
	b->n--;
	if (b->n == 0) {
		free(b);
		s->dir_bytes -= sizeof(*b);
		blk_arr_del(d, bi);
		b = NULL;
	} else if (pos == 0) {
		blk_fix(s, d, bi);
	}
	if (b && b->n < DBLK / 4) {
		struct dblk *a = NULL, *c = NULL;
		uint32_t ci = 0;

		if (bi + 1 < d->nblk && b->n + d->blk[bi + 1]->n <= DBLK * 3 / 4) {
			a = b;
			c = d->blk[bi + 1];
			ci = bi + 1;
		} else if (bi > 0 && b->n + d->blk[bi - 1]->n <= DBLK * 3 / 4) {
			a = d->blk[bi - 1];
			c = b;
			ci = bi;
		}
		if (a) {
			memcpy(&a->ref[a->n], c->ref, c->n * sizeof(uint32_t));
			a->n += c->n;
			free(c);
			s->dir_bytes -= sizeof(*c);
			blk_arr_del(d, ci);
		}
	}
	for (struct dnode *x = d; x; x = x->parent)
		x->ndesc--;
	dir_prune(s, d);
}

void dir_replace(struct store *s, struct item *old, struct item *nw)
{
	uint32_t bi, pos;
	struct dnode *d = dir_locate(s, old, &bi, &pos);

	if (d)
		d->blk[bi]->ref[pos] = i2r(s, nw);
}

/* ---------------------------------------------------------------- listing */

struct lister {
	struct store *s;
	store_list_cb cb;
	void *arg;
	const uint8_t *pre;
	size_t plen;
	const uint8_t *cur;
	size_t clen;
	int64_t now;
	char delim;
	int stop;
	int probe; /* has_prefix: stop at the first live item */
	long count;
};

static void list_node(struct lister *L, const struct dnode *d, bool top)
{
	struct store *s = L->s;
	bool filt = top && L->plen > d->plen;
	uint32_t bi = 0, ii = 0, ki = 0;

	/* start among the items */
	if (d->nblk) {
		if (filt) {
			bi = blk_find(s, d, L->pre, L->plen);
			ii = blk_bound(s, d->blk[bi], L->pre, L->plen, false);
		}
		if (L->clen) {
			uint32_t cbi = blk_find(s, d, L->cur, L->clen);
			uint32_t cii = blk_bound(s, d->blk[cbi], L->cur, L->clen, true);

			if (cbi > bi || (cbi == bi && cii > ii)) {
				bi = cbi;
				ii = cii;
			}
		}
	}
	/* start among the child directories */
	if (filt)
		ki = kid_bound(d, L->pre, L->plen, false);
	if (L->clen) {
		uint32_t c = kid_bound(d, L->cur, L->clen, true);

		if (L->delim == 0 && c > 0 &&
		    starts_with(L->cur, L->clen, d->kid[c - 1]->path, d->kid[c - 1]->plen))
			c--;
		if (c > ki)
			ki = c;
	}
	for (;;) {
		const struct item *it = NULL;
		const struct dnode *k = NULL;

		while (bi < d->nblk && ii >= d->blk[bi]->n) {
			bi++;
			ii = 0;
		}
		if (bi < d->nblk) {
			it = r2i(s, d->blk[bi]->ref[ii]);
			if (filt && !starts_with(ikey(it), ikl(it), L->pre, L->plen)) {
				it = NULL;
				bi = d->nblk;
			}
		}
		if (ki < d->nkid) {
			k = d->kid[ki];
			if (filt && !starts_with(k->path, k->plen, L->pre, L->plen)) {
				k = NULL;
				ki = d->nkid;
			}
		}
		if (!it && !k)
			return;
		if (it && (!k || icmp(it, k->path, k->plen) < 0)) {
			ii++;
			if (expired(it, L->now))
				continue;
			if (L->probe) {
				L->count++;
				L->stop = 1;
				return;
			}
			struct proto_attr a;

			memcpy(s->namebuf, ikey(it), ikl(it));
			s->namebuf[ikl(it)] = 0;
			store_item_attr(it, &a);
			if (L->cb(L->arg, s->namebuf, ikl(it), &a)) {
				L->stop = 1;
				return;
			}
			L->count++;
			continue;
		}
		ki++;
		if (L->delim == 0) {
			list_node(L, k, false);
			if (L->stop)
				return;
			continue;
		}
		memcpy(s->namebuf, k->path, k->plen);
		s->namebuf[k->plen] = 0;
		if (L->cb(L->arg, s->namebuf, k->plen, NULL)) {
			L->stop = 1;
			return;
		}
		L->count++;
	}
}

long store_list(struct store *s, const void *prefix, size_t plen, char delim, const void *cursor,
		size_t clen, int64_t now, store_list_cb cb, void *arg)
{
	struct lister L = {.s = s,
			   .cb = cb,
			   .arg = arg,
			   .pre = prefix,
			   .plen = plen,
			   .cur = cursor,
			   .clen = clen,
			   .now = now,
			   .delim = delim};
	const struct dnode *d;

	if (delim != 0 && delim != '/')
		return -EINVAL;
	if (plen > PROTO_MAX_KEY || clen > PROTO_MAX_KEY)
		return -ENAMETOOLONG;
	note_now(s, now);
	d = dir_lookup(s, prefix, plen ? dir_len(prefix, plen) : 0);
	if (!d)
		return 0;
	list_node(&L, d, true);
	return L.count;
}

int store_has_prefix(struct store *s, const void *prefix, size_t plen, int64_t now)
{
	struct lister L = {.s = s, .pre = prefix, .plen = plen, .now = now, .probe = 1};
	const struct dnode *d;

	if (plen > PROTO_MAX_KEY)
		return 0;
	note_now(s, now);
	d = dir_lookup(s, prefix, plen ? dir_len(prefix, plen) : 0);
	if (!d || !d->ndesc)
		return 0;
	list_node(&L, d, true);
	return L.count > 0;
}

/* ------------------------------------------------------------ open, close */

int dir_open(struct store *s)
{
	s->dmn = 64;
	s->dm = calloc(s->dmn, sizeof(*s->dm));
	s->root = calloc(1, sizeof(*s->root));
	if (s->root)
		s->root->path = calloc(1, 1);
	if (!s->dm || !s->root || !s->root->path)
		return -ENOMEM;
	s->dir_bytes = sizeof(*s->root) + 1 + s->dmn * sizeof(*s->dm);
	return 0;
}

void dir_close(struct store *s)
{
	if (s->dm) {
		for (uint32_t i = 0; i < s->dmn; i++)
			if (s->dm[i])
				dnode_free(s, s->dm[i]);
	}
	if (s->root)
		dnode_free(s, s->root);
	free(s->dm);
}
