/*
 * store_upload: upload sessions. An upload is a pending value in HELD pages
 * (never evicted), written in place at any offset by RMA (store_upload_iov
 * hands out the pool ranges), truncated, read back; holes are zero-filled.
 * A commit hands its pages to a large item (only a short last page is copied,
 * into the item's chunk; a small value is copied whole) and publishes it in
 * one step; abort frees them.
 *
 * The long work on an upload (zeroing a hole up to max_value, copying the old
 * value into a KEEP open) is not done under the store lock: the locked call
 * reserves the pages and records the range, and store_upload_fill writes it
 * afterwards, without the lock, before the upload is used again.
 */
#include "store_int.h"

#include <stdlib.h>

struct upload {
	struct upload *prev, *next;
	uint32_t *pages;
	uint32_t np, cap;
	uint64_t size;
	uint64_t fill_from, fill_to; /* bytes store_upload_fill still owes: zeroes, or */
	struct item *fill_src;	     /* the KEEP source's bytes (pinned; released by the caller) */
	uint32_t klen;
	uint8_t key[];
};

static int up_reserve(struct store *s, struct upload *up, uint64_t bytes)
{
	uint64_t need64 = (bytes + PAGE - 1) >> PAGE_SHIFT;

	if (need64 <= up->np)
		return 0;
	if (need64 > s->npages)
		return -ENOSPC;
	uint32_t need = (uint32_t)need64;

	if (need > up->cap) {
		uint32_t nc = up->cap ? up->cap : 4;

		while (nc < need)
			nc *= 2;
		uint32_t *p = realloc(up->pages, nc * sizeof(*p));

		if (!p)
			return -ENOMEM;
		up->pages = p;
		up->cap = nc;
	}
	while (up->np < need) {
		uint32_t p = page_alloc(s, up->np ? up->pages[up->np - 1] + 1 : NONE, PK_HELD);

		if (p == NONE)
			return -ENOSPC;
		up->pages[up->np++] = p;
	}
	return 0;
}

static void up_zero(struct store *s, struct upload *up, uint64_t from, uint64_t to)
{
	while (from < to) {
		uint64_t in = from & (PAGE - 1), l = PAGE - in;

		if (l > to - from)
			l = to - from;
		memset(pgaddr(s, up->pages[from >> PAGE_SHIFT]) + in, 0, l);
		from += l;
	}
}

/*
 * Write what an upload still owes now, under the lock: for a caller that did
 * not call store_upload_fill before using the upload again, so no stale pool
 * bytes are ever read from it and no owed range outlives its pages.
 */
static void settle(struct store *s, struct upload *up)
{
	if (up->fill_to > up->fill_from || up->fill_src) {
		struct item *src = store_upload_fill(s, up);

		if (src)
			unpin(s, src);
	}
}

/* Record that [from, to) must be zeroed by store_upload_fill. */
static void owe_zeroes(struct upload *up, uint64_t from, uint64_t to)
{
	up->fill_from = from;
	up->fill_to = to;
}

static void up_trim(struct store *s, struct upload *up, uint64_t size)
{
	uint32_t need = (uint32_t)((size + PAGE - 1) >> PAGE_SHIFT);

	while (up->np > need)
		page_put(s, up->pages[--up->np]);
}

static void up_free(struct store *s, struct upload *up)
{
	if (up->fill_src)
		unpin(s, up->fill_src);
	pages_free(s, up->pages, up->np);
	if (up->prev)
		up->prev->next = up->next;
	else
		s->uploads = up->next;
	if (up->next)
		up->next->prev = up->prev;
	s->nuploads--;
	free(up->pages);
	free(up);
}

int store_upload_open(struct store *s, const void *key, size_t klen, int keep, int64_t now,
		      struct upload **out)
{
	int err = check_key(klen);
	struct upload *up;

	*out = NULL;
	if (err)
		return err;
	note_now(s, now);
	up = calloc(1, sizeof(*up) + klen);
	if (!up)
		return -ENOMEM;
	memcpy(up->key, key, klen);
	up->klen = (uint32_t)klen;
	up->next = s->uploads;
	if (s->uploads)
		s->uploads->prev = up;
	s->uploads = up;
	s->nuploads++;
	if (keep) {
		struct item *old = find_live(s, key, klen, now);

		if (old) {
			err = up_reserve(s, up, old->vsize);
			if (err) {
				up_free(s, up);
				return err;
			}
			pin(s, old); /* until store_upload_fill has copied it */
			up->fill_src = old;
			up->fill_from = 0;
			up->fill_to = up->size = old->vsize;
			/*
			 * An item past STORE_REF_MAX has room for one internal pin
			 * only, held under the lock: copy it now.
			 */
			if (old->refcount > STORE_REF_MAX)
				settle(s, up);
		}
	}
	*out = up;
	return 0;
}

/*
 * The pool ranges of upload bytes [off, end), which must already be
 * reserved, merged where pages are adjacent: at most max entries. Returns
 * the entries used; *covered = bytes covered.
 */
static size_t up_ranges(const struct store *s, const struct upload *up, uint64_t off, uint64_t end,
			struct iovec *iov, size_t max, uint64_t *covered)
{
	uint64_t pos;
	size_t n = 0;

	for (pos = off; pos < end;) {
		uint64_t in = pos & (PAGE - 1), l = PAGE - in;
		uint8_t *addr = pgaddr(s, up->pages[pos >> PAGE_SHIFT]) + in;

		if (l > end - pos)
			l = end - pos;
		if (n && (uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == addr) {
			iov[n - 1].iov_len += l;
		} else {
			if (n == max)
				break;
			iov[n].iov_base = addr;
			iov[n].iov_len = l;
			n++;
		}
		pos += l;
	}
	*covered = pos - off;
	return n;
}

long store_upload_iov(struct store *s, struct upload *up, uint64_t off, uint64_t len,
		      struct iovec *iov, size_t max, uint64_t *covered)
{
	uint64_t end;
	size_t n;
	int err;

	*covered = 0;
	settle(s, up);
	if (!len || !max)
		return 0;
	if (off > s->max_value || len > s->max_value - off)
		return -EFBIG;
	end = off + len;
	err = up_reserve(s, up, end);
	if (err)
		return err;
	if (off > up->size)
		owe_zeroes(up, up->size, off);
	n = up_ranges(s, up, off, end, iov, max, covered);
	if (off + *covered > up->size)
		up->size = off + *covered;
	return (long)n;
}

size_t store_upload_read_iov(struct store *s, struct upload *up, uint64_t off, uint64_t len,
			     struct iovec *iov, size_t max, uint64_t *covered)
{
	uint64_t end;

	*covered = 0;
	settle(s, up);
	if (off >= up->size || !len || !max)
		return 0;
	end = len > up->size - off ? up->size : off + len;
	return up_ranges(s, up, off, end, iov, max, covered);
}

int store_upload_truncate(struct store *s, struct upload *up, uint64_t size)
{
	int err;

	settle(s, up);
	if (size > s->max_value)
		return -EFBIG;
	if (size <= up->size) {
		up->size = size;
		up_trim(s, up, size);
		return 0;
	}
	err = up_reserve(s, up, size);
	if (err)
		return err;
	owe_zeroes(up, up->size, size);
	up->size = size;
	return 0;
}

struct item *store_upload_fill(struct store *s, struct upload *up)
{
	struct item *src = up->fill_src;

	if (src) {
		struct vsrc v = {.it = src};

		for (uint64_t off = up->fill_from; off < up->fill_to;) {
			uint64_t l = up->fill_to - off < PAGE ? up->fill_to - off : PAGE;

			vsrc_read(s, &v, off, pgaddr(s, up->pages[off >> PAGE_SHIFT]), l);
			off += l;
		}
	} else {
		up_zero(s, up, up->fill_from, up->fill_to);
	}
	up->fill_src = NULL;
	up->fill_from = up->fill_to = 0;
	return src;
}

uint64_t store_upload_size(const struct upload *up)
{
	return up->size;
}

int store_upload_commit(struct store *s, struct upload *up, const struct proto_setattr *a,
			int64_t now, struct proto_attr *out)
{
	struct item *it;
	int err = 0;

	note_now(s, now);
	settle(s, up);
	if (up->size > s->max_value) {
		err = -EFBIG;
		goto done;
	}
	up_trim(s, up, up->size);
	if (HDR + up->klen + up->size <= MAX_CHUNK) {
		struct vsrc v = {.pages = up->pages};

		it = make_item(s, up->key, up->klen, up->size, &v, &err);
		if (!it)
			goto done;
	} else {
		it = build_large(s, up->key, up->klen, up->size, up->pages);
		if (!it) {
			err = -ENOSPC;
			goto done;
		}
		up->np = 0; /* the item owns them now */
	}
	set_new_attrs(s, it, a, now);
	it->version = s->next_version++;
	err = publish(s, it, now);
	if (!err && out)
		store_item_attr(it, out);
	unpin(s, it);
done:
	up_free(s, up);
	return err;
}

void store_upload_abort(struct store *s, struct upload *up)
{
	if (up)
		up_free(s, up);
}

void uploads_close(struct store *s)
{
	while (s->uploads) {
		struct upload *u = s->uploads;

		s->uploads = u->next;
		free(u->pages);
		free(u);
	}
}
