/*
 * store: item life (make, publish, unlink, free), the public calls on items
 * and expiry; see store.h for the model and store_int.h for the layout and
 * which file holds what. An item is built pinned and unlinked, then
 * published: it replaces the key's item in the hash slot and the directory
 * block in place, so readers see the old item or the new one.
 */
#include "store_int.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#define MIN_PAGES	   16
#define EXAMINE_PER_BUDGET 32

/* ------------------------------------------------------------ item life */

static void put_page(struct store *s, uint32_t p, void *arg)
{
	(void)arg;
	page_put(s, p);
}

void item_free(struct store *s, struct item *it)
{
	if (it->large)
		lg_each_page(s, it, put_page, NULL);
	chunk_free(s, it);
}

static void item_unlink(struct store *s, struct item *it)
{
	uint32_t slot = ht_find(s, ikey(it), ikl(it), item_hash(s, it));

	if (slot != NONE && ht_ref(s, slot) == i2r(s, it))
		ht_remove_slot(s, slot);
	dir_remove(s, it);
	s->keys--;
	s->item_bytes -= ikl(it) + it->vsize;
	it->flags &= ~IF_LINKED;
	if (!it->refcount)
		item_free(s, it);
}

void item_evict(struct store *s, struct item *it)
{
	s->evictions++;
	if (s->evicted)
		s->evicted(s->evicted_arg, ikey(it), ikl(it));
	item_unlink(s, it);
}

struct item *find_live(struct store *s, const void *key, size_t klen, int64_t now)
{
	uint32_t slot = ht_find(s, key, klen, hash64(key, klen, s->seed));

	if (slot == NONE)
		return NULL;
	struct item *it = r2i(s, ht_ref(s, slot));

	if (expired(it, now)) {
		s->expirations++;
		item_unlink(s, it);
		return NULL;
	}
	return it;
}

int publish(struct store *s, struct item *it, int64_t now)
{
	uint64_t h = item_hash(s, it);
	uint32_t slot = ht_find(s, ikey(it), ikl(it), h);
	int err;

	if (slot != NONE) {
		struct item *old = r2i(s, ht_ref(s, slot));

		if (expired(old, now))
			s->expirations++;
		else
			it->flags |= IF_REF;
		ht_set(s, slot, it, h);
		dir_replace(s, old, it);
		s->item_bytes -= ikl(old) + old->vsize;
		s->item_bytes += ikl(it) + it->vsize;
		old->flags &= ~IF_LINKED;
		it->flags |= IF_LINKED;
		if (!old->refcount)
			item_free(s, old);
		return 0;
	}
	err = dir_insert(s, it);
	if (err)
		return err;
	err = ht_insert(s, it, h);
	if (err) {
		dir_remove(s, it);
		return err;
	}
	s->keys++;
	s->item_bytes += ikl(it) + it->vsize;
	it->flags |= IF_LINKED;
	touch_parent(s, ikey(it), ikl(it), now);
	return 0;
}

int64_t change_ns(struct store *s, int64_t now)
{
	struct timespec ts;
	int64_t lo = now * 1000000000LL, t = lo;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec == now)
		t = lo + ts.tv_nsec;
	else if (ts.tv_sec == now + 1)
		/*
		 * The clock has left the request's second: its own time, or the
		 * rule below would reuse the last change's time and ctime would
		 * not move (seen in fs_shell: a touch -a across a second).
		 */
		t = lo + 1000000000LL + ts.tv_nsec;
	if (t < s->last_change_ns && s->last_change_ns < lo + 1000000000LL)
		t = s->last_change_ns;
	s->last_change_ns = t;
	return t;
}

void touch_parent(struct store *s, const void *key, size_t klen, int64_t now)
{
	const uint8_t *k = key, *sl;
	size_t n = klen;

	if (n && k[n - 1] == '/')
		n--;
	sl = n ? memrchr(k, '/', n) : NULL;
	if (!sl)
		return;
	struct item *d = find_live(s, k, (size_t)(sl - k) + 1, now);

	if (d)
		d->mtime_ns = d->ctime_ns = change_ns(s, now);
}

void vsrc_read(const struct store *s, const struct vsrc *v, uint64_t off, void *dst, uint64_t len)
{
	uint8_t *d = dst;

	if (!len)
		return;
	if (v->buf) {
		memcpy(d, v->buf + off, len);
	} else if (v->it) {
		while (len) {
			struct iovec iov[8];
			uint64_t cov;
			size_t n = store_item_iov(v->it, off, len, iov, 8, &cov);

			for (size_t i = 0; i < n; i++) {
				memcpy(d, iov[i].iov_base, iov[i].iov_len);
				d += iov[i].iov_len;
			}
			if (!cov)
				break;
			off += cov;
			len -= cov;
		}
	} else {
		while (len) {
			uint64_t in = off & (PAGE - 1), l = PAGE - in;

			if (l > len)
				l = len;
			memcpy(d, pgaddr(s, v->pages[off >> PAGE_SHIFT]) + in, l);
			d += l;
			off += l;
			len -= l;
		}
	}
}

static uint32_t count_ext(const uint32_t *pages, uint32_t n)
{
	uint32_t e = 0;

	for (uint32_t i = 0; i < n; i++)
		if (i == 0 || pages[i] != pages[i - 1] + 1)
			e++;
	return e;
}

struct item *build_large(struct store *s, const void *key, size_t klen, uint64_t size,
			 const uint32_t *pages)
{
	uint32_t full = (uint32_t)(size >> PAGE_SHIFT);
	uint32_t r = (uint32_t)(size & (PAGE - 1));
	uint32_t next = count_ext(pages, full), keep = full, tail = 0;

	if (r) {
		if (lg_size(klen, next, r) <= MAX_CHUNK) {
			tail = r;
		} else {
			keep = full + 1;
			next = count_ext(pages, keep);
		}
	}
	struct item *it = chunk_alloc(s, class_for(s, lg_size(klen, next, tail)));

	if (!it)
		return NULL;
	int64_t ip = i2pg(s, it);
	uint32_t ref = i2r(s, it);

	it->klen1 = klen - 1;
	it->vsize = size;
	it->large = 1;
	memcpy(ikey_w(it), key, klen);

	uint32_t *t = lg_tab(it);
	uint32_t e = 0;

	t[0] = next;
	t[1] = tail;
	for (uint32_t i = 0; i < keep; i++) {
		if (i == 0 || pages[i] != pages[i - 1] + 1) {
			t[2 + 2 * e] = (uint32_t)(int32_t)((int64_t)pages[i] - ip);
			t[3 + 2 * e] = 0;
			e++;
		}
		t[1 + 2 * e]++;
		s->pg[pages[i]].kind = PK_LARGE;
		s->pg[pages[i]].owner = ref;
		s->pg[pages[i]].tick = s->tick;
	}
	if (tail) {
		memcpy(lg_tailp(it), pgaddr(s, pages[full]), tail);
		page_put(s, pages[full]);
	}
	return it;
}

struct item *make_item(struct store *s, const void *key, size_t klen, uint64_t size,
		       const struct vsrc *v, int *err)
{
	struct item *it;

	if (HDR + klen + size <= MAX_CHUNK) {
		it = chunk_alloc(s, class_for(s, HDR + klen + size));
		if (!it) {
			*err = -ENOSPC;
			return NULL;
		}
		it->klen1 = klen - 1;
		it->vsize = size;
		memcpy(ikey_w(it), key, klen);
		vsrc_read(s, v, 0, ikey_w(it) + klen, size);
		return it;
	}
	uint64_t np64 = (size + PAGE - 1) >> PAGE_SHIFT;

	if (np64 > s->npages) {
		*err = -ENOSPC;
		return NULL;
	}
	uint32_t np = (uint32_t)np64;
	uint32_t *pages = calloc(np, sizeof(*pages));

	if (!pages) {
		*err = -ENOMEM;
		return NULL;
	}
	*err = pages_alloc(s, pages, 0, np);
	if (*err) {
		free(pages);
		return NULL;
	}
	for (uint32_t i = 0; i < np; i++) {
		uint64_t off = (uint64_t)i << PAGE_SHIFT;
		uint64_t l = size - off < PAGE ? size - off : PAGE;

		vsrc_read(s, v, off, pgaddr(s, pages[i]), l);
	}
	it = build_large(s, key, klen, size, pages);
	if (!it) {
		pages_free(s, pages, np);
		*err = -ENOSPC;
	}
	free(pages);
	return it;
}

static uint32_t clamp_expiry(int64_t now, int64_t ttl)
{
	if (ttl <= 0)
		return 0;
	int64_t e = now > INT64_MAX - ttl ? INT64_MAX : now + ttl;

	if (e < 1)
		e = 1;
	if (e > (int64_t)UINT32_MAX)
		e = UINT32_MAX;
	return (uint32_t)e;
}

/* A client-supplied mode: S_IFREG unless typed; never the "unset" flag. */
static uint32_t mode_for_new(uint32_t m)
{
	m &= ~PROTO_MODE_UNSET;
	return (m & S_IFMT) ? m : (S_IFREG | (m & 07777));
}

void set_new_attrs(struct store *s, struct item *it, const struct proto_setattr *a, int64_t now)
{
	uint32_t mask = a ? a->mask : 0;
	int64_t t = change_ns(s, now);

	it->mode =
	    (mask & PROTO_SET_MODE) ? mode_for_new(a->mode) : (S_IFREG | 0644 | PROTO_MODE_UNSET);
	it->uid = (mask & PROTO_SET_UID) ? a->uid : PROTO_ID_UNSET;
	it->gid = (mask & PROTO_SET_GID) ? a->gid : PROTO_ID_UNSET;
	it->mtime_ns = (mask & PROTO_SET_MTIME) ? a->mtime_ns : t;
	it->ctime_ns = t;
	it->expiry = (mask & PROTO_SET_TTL) ? clamp_expiry(now, a->ttl) : 0;
	if (mask & PROTO_SET_ATIME) {
		it->atime_ns = a->atime_ns;
	} else {
		uint32_t slot = ht_find(s, ikey(it), ikl(it), item_hash(s, it));
		const struct item *old = slot == NONE ? NULL : r2i(s, ht_ref(s, slot));

		it->atime_ns = old && !expired(old, now) ? old->atime_ns : t;
	}
}

/* ---------------------------------------------------------------- public */

int store_open(struct store **out, const struct store_config *cfg)
{
	uint64_t npages = cfg->memory >> PAGE_SHIFT;
	struct store *s;

	*out = NULL;
	if (npages < MIN_PAGES || npages > MAX_PAGES)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->max_value = cfg->max_value ? cfg->max_value : npages * PAGE;
	s->evict_none = cfg->evict_none;
	s->evicted = cfg->evicted;
	s->evicted_arg = cfg->evicted_arg;
	if (slab_open(s, (uint32_t)npages, cfg->prefault) || index_open(s) || dir_open(s)) {
		store_close(s);
		return -ENOMEM;
	}

	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	s->seed = hash64(&ts, sizeof(ts), (uintptr_t)s ^ 0x8ebc6af09c88c6e3ULL);
	s->next_version = 1;
	s->exp_pg = 0;
	*out = s;
	return 0;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	uploads_close(s);
	dir_close(s);
	index_close(s);
	slab_close(s);
	free(s);
}

void *store_pool_base(struct store *s)
{
	return s->base;
}

int store_pool_fd(struct store *s)
{
	return s->pool_fd;
}

size_t store_pool_size(struct store *s)
{
	return (size_t)s->npages * PAGE;
}

void store_stats(struct store *s, struct store_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->keys = s->keys;
	out->pool_size = (uint64_t)s->npages * PAGE;
	out->pool_used = (uint64_t)(s->npages - s->nfree) * PAGE;
	out->item_bytes = s->item_bytes;
	out->index_bytes = (uint64_t)s->htn * sizeof(*s->ht) + s->dir_bytes;
	out->evictions = s->evictions;
	out->expirations = s->expirations;
	out->uploads = s->nuploads;
}

/* The live item of a checked key at now: 0, -ENOENT or a key error. */
static int lookup(struct store *s, const void *key, size_t klen, int64_t now, struct item **it)
{
	int err = check_key(klen);

	if (err)
		return err;
	note_now(s, now);
	*it = find_live(s, key, klen, now);
	return *it ? 0 : -ENOENT;
}

/* store_get and store_pin: refuse at limit pins. */
static int get_pinned(struct store *s, const void *key, size_t klen, int64_t now, uint32_t limit,
		      struct item **out)
{
	struct item *it;
	int err = lookup(s, key, klen, now, &it);

	*out = NULL;
	if (err)
		return err;
	if (it->refcount >= limit)
		return -EBUSY;
	pin(s, it);
	touch(s, it);
	*out = it;
	return 0;
}

int store_get(struct store *s, const void *key, size_t klen, int64_t now, struct item **out)
{
	return get_pinned(s, key, klen, now, STORE_REF_MAX, out);
}

int store_pin(struct store *s, const void *key, size_t klen, int64_t now, struct item **out)
{
	return get_pinned(s, key, klen, now, STORE_PIN_MAX, out);
}

int store_item_ref(struct store *s, struct item *it)
{
	if (it->refcount >= STORE_REF_MAX)
		return -EBUSY;
	pin(s, it);
	return 0;
}

void store_release(struct store *s, struct item *it)
{
	if (it)
		unpin(s, it);
}

void store_item_attr(const struct item *it, struct proto_attr *out)
{
	out->size = it->vsize;
	out->version = it->version;
	out->mtime_ns = it->mtime_ns;
	out->atime_ns = it->atime_ns;
	out->ctime_ns = it->ctime_ns;
	out->expiry = it->expiry;
	out->mode = it->mode;
	out->uid = it->uid;
	out->gid = it->gid;
}

size_t store_item_iov(const struct item *it, uint64_t off, uint64_t len, struct iovec *iov,
		      size_t max, uint64_t *covered)
{
	uint64_t size = it->vsize, end, pos;
	size_t n = 0;

	*covered = 0;
	if (off >= size || !len || !max)
		return 0;
	end = len > size - off ? size : off + len;
	if (!it->large) {
		iov[0].iov_base = (uint8_t *)ikey(it) + ikl(it) + off;
		iov[0].iov_len = end - off;
		*covered = end - off;
		return 1;
	}
	const uint32_t *t = lg_tab(it);
	const uint8_t *ipb = item_page_base(it);
	uint64_t big = size - t[1], ebase = 0;

	pos = off;
	for (uint32_t e = 0; e < t[0] && pos < end && pos < big; e++) {
		uint64_t elen = (uint64_t)t[3 + 2 * e] << PAGE_SHIFT;

		if (elen > big - ebase)
			elen = big - ebase;
		if (pos < ebase + elen) {
			uint64_t stop = ebase + elen < end ? ebase + elen : end;

			if (n == max)
				break;
			iov[n].iov_base = (uint8_t *)ipb +
					  (int64_t)(int32_t)t[2 + 2 * e] * (int64_t)PAGE +
					  (pos - ebase);
			iov[n].iov_len = stop - pos;
			n++;
			pos = stop;
		}
		ebase += elen;
	}
	if (pos < end && pos >= big && n < max) {
		iov[n].iov_base = lg_tailp(it) + (pos - big);
		iov[n].iov_len = end - pos;
		n++;
		pos = end;
	}
	*covered = pos - off;
	return n;
}

int store_put(struct store *s, const void *key, size_t klen, const void *val, size_t vlen,
	      const struct proto_setattr *a, int64_t now, uint64_t *version)
{
	int err = check_key(klen);
	struct vsrc v = {.buf = val};
	struct item *it;

	if (err)
		return err;
	if (vlen > s->max_value)
		return -EFBIG;
	note_now(s, now);
	it = make_item(s, key, klen, vlen, &v, &err);
	if (!it)
		return err;
	set_new_attrs(s, it, a, now);
	it->version = s->next_version++;
	err = publish(s, it, now);
	if (!err && version)
		*version = it->version;
	unpin(s, it); /* frees it when publish failed */
	return err;
}

int store_delete(struct store *s, const void *key, size_t klen)
{
	int err = check_key(klen);
	struct item *it;

	if (err)
		return err;
	it = find_live(s, key, klen, s->now);
	if (!it)
		return -ENOENT;
	item_unlink(s, it);
	touch_parent(s, key, klen, s->now);
	return 0;
}

int store_stat(struct store *s, const void *key, size_t klen, int64_t now, struct proto_attr *out)
{
	struct item *it;
	int err = lookup(s, key, klen, now, &it);

	if (err)
		return err;
	touch(s, it);
	if (out)
		store_item_attr(it, out);
	return 0;
}

int store_setattr(struct store *s, const void *key, size_t klen, const struct proto_setattr *a,
		  int64_t now, struct proto_attr *out)
{
	struct item *it;
	int err = lookup(s, key, klen, now, &it);

	if (err)
		return err;
	if (a && a->mask) {
		it->ctime_ns = change_ns(s, now);
		if (a->mask & PROTO_SET_MODE)
			it->mode = (it->mode & S_IFMT) | (a->mode & 07777);
		if (a->mask & PROTO_SET_UID)
			it->uid = a->uid;
		if (a->mask & PROTO_SET_GID)
			it->gid = a->gid;
		if (a->mask & PROTO_SET_MTIME)
			it->mtime_ns = a->mtime_ns;
		if (a->mask & PROTO_SET_ATIME)
			it->atime_ns = a->atime_ns;
		if (a->mask & PROTO_SET_TTL)
			it->expiry = clamp_expiry(now, a->ttl);
	}
	touch(s, it);
	if (out)
		store_item_attr(it, out);
	return 0;
}

int store_rename(struct store *s, const void *src, size_t slen, const void *dst, size_t dlen,
		 int noreplace)
{
	int err = check_key(slen);
	struct item *old, *it = NULL;

	if (err || (err = check_key(dlen)))
		return err;
	old = find_live(s, src, slen, s->now);
	if (!old)
		return -ENOENT;
	if (slen == dlen && memcmp(src, dst, slen) == 0)
		return noreplace ? -EEXIST : 0;
	if (noreplace && find_live(s, dst, dlen, s->now))
		return -EEXIST;
	pin(s, old);
	if (old->large && old->refcount == 1) {
		/* nobody reads it: move its pages to a new header chunk */
		const uint32_t *t = lg_tab(old);
		size_t need = lg_size(dlen, t[0], t[1]);

		if (need <= MAX_CHUNK && (it = chunk_alloc(s, class_for(s, need)))) {
			int64_t op = i2pg(s, old), np = i2pg(s, it);
			uint32_t ref = i2r(s, it);

			it->klen1 = dlen - 1;
			it->vsize = old->vsize;
			it->large = 1;
			memcpy(ikey_w(it), dst, dlen);
			uint32_t *nt = lg_tab(it);

			nt[0] = t[0];
			nt[1] = t[1];
			for (uint32_t e = 0; e < t[0]; e++) {
				int64_t p0 = op + (int32_t)t[2 + 2 * e];

				nt[2 + 2 * e] = (uint32_t)(int32_t)(p0 - np);
				nt[3 + 2 * e] = t[3 + 2 * e];
				for (uint32_t k = 0; k < t[3 + 2 * e]; k++)
					s->pg[p0 + k].owner = ref;
			}
			memcpy(lg_tailp(it), lg_tailp(old), t[1]);
			/* old keeps no pages now */
			item_unlink(s, old);
			old->large = 0;
		}
	}
	if (!it) {
		struct vsrc v = {.it = old};

		it = make_item(s, dst, dlen, old->vsize, &v, &err);
		if (!it) {
			unpin(s, old);
			return err;
		}
	}
	it->mode = old->mode;
	it->uid = old->uid;
	it->gid = old->gid;
	it->mtime_ns = old->mtime_ns;
	it->atime_ns = old->atime_ns;
	it->ctime_ns = change_ns(s, s->now); /* a rename changes the file's ctime */
	it->expiry = old->expiry;
	it->version = s->next_version++;
	err = publish(s, it, s->now); /* a new dst key touches its directory */
	if (err) {
		/* (-ENOMEM only; after a page move the value is lost with it) */
		unpin(s, it);
		unpin(s, old);
		return err;
	}
	it->flags |= IF_REF;
	if (old->flags & IF_LINKED)
		item_unlink(s, old);
	touch_parent(s, src, slen, s->now);
	touch_parent(s, dst, dlen, s->now); /* again when dst replaced a key: no matter */
	unpin(s, it);
	unpin(s, old);
	return 0;
}

/* ---------------------------------------------------------------- expiry */

int store_expire(struct store *s, int64_t now, int budget)
{
	uint64_t steps;
	uint32_t p = s->exp_pg, idx = s->exp_idx;
	int done = 0;

	if (budget <= 0)
		return 0;
	note_now(s, now);
	steps = (uint64_t)budget * EXAMINE_PER_BUDGET;
	while (steps-- && done < budget) {
		if (p >= s->npages) {
			p = 0;
			idx = 0;
		}
		const struct page *pg = &s->pg[p];

		if (pg->kind != PK_SLAB || idx >= pg->carved) {
			p++;
			idx = 0;
			continue;
		}
		struct item *it = chunk_at(s, p, s->cls[pg->cls].size, idx++);

		if ((it->flags & (IF_ALLOC | IF_LINKED)) == (IF_ALLOC | IF_LINKED) &&
		    expired(it, now)) {
			s->expirations++;
			item_unlink(s, it);
			done++;
		}
	}
	s->exp_pg = p;
	s->exp_idx = idx;
	return done;
}
