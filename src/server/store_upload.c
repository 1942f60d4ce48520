/*
 * store_upload: upload sessions. An upload is a pending value in HELD pages
 * (never evicted), written in place at any offset by RMA (store_upload_iov
 * hands out the pool ranges), truncated, read back; holes are zero-filled.
 * A commit hands its pages to a large item (only a short last page is copied,
 * into the item's chunk; a small value is copied whole) and publishes it in
 * one step; abort frees them.
 */
#include "store_int.h"

#include <stdlib.h>

struct upload {
	struct upload *prev, *next;
	uint32_t *pages;
	uint32_t np, cap;
	uint64_t size;
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

static void up_trim(struct store *s, struct upload *up, uint64_t size)
{
	uint32_t need = (uint32_t)((size + PAGE - 1) >> PAGE_SHIFT);

	while (up->np > need)
		page_put(s, up->pages[--up->np]);
}

static void up_free(struct store *s, struct upload *up)
{
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
			struct vsrc v = {.it = old};

			pin(s, old);
			err = up_reserve(s, up, old->vsize);
			if (!err) {
				for (uint32_t i = 0; i < up->np; i++) {
					uint64_t off = (uint64_t)i << PAGE_SHIFT;
					uint64_t l =
					    old->vsize - off < PAGE ? old->vsize - off : PAGE;

					vsrc_read(s, &v, off, pgaddr(s, up->pages[i]), l);
				}
				up->size = old->vsize;
			}
			unpin(s, old);
			if (err) {
				up_free(s, up);
				return err;
			}
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
	if (!len || !max)
		return 0;
	if (off > s->max_value || len > s->max_value - off)
		return -EFBIG;
	end = off + len;
	err = up_reserve(s, up, end);
	if (err)
		return err;
	if (off > up->size)
		up_zero(s, up, up->size, off);
	n = up_ranges(s, up, off, end, iov, max, covered);
	if (off + *covered > up->size)
		up->size = off + *covered;
	return (long)n;
}

size_t store_upload_read_iov(const struct store *s, const struct upload *up, uint64_t off,
			     uint64_t len, struct iovec *iov, size_t max, uint64_t *covered)
{
	uint64_t end;

	*covered = 0;
	if (off >= up->size || !len || !max)
		return 0;
	end = len > up->size - off ? up->size : off + len;
	return up_ranges(s, up, off, end, iov, max, covered);
}

int store_upload_truncate(struct store *s, struct upload *up, uint64_t size)
{
	int err;

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
	up_zero(s, up, up->size, size);
	up->size = size;
	return 0;
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
