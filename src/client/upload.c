/*
 * libkvfs uploads: a value written in pieces into server-side state that
 * becomes the key's value only at commit (kvfs_upload_*). The state lives in
 * one session of the key's server; once that session is gone, so is the
 * upload (up_enter fails with -EIO rather than reconnecting).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"

struct kvfs_upload {
	struct conn *c;	      /* (I) */
	uint64_t gen, handle; /* (I) */
	uint64_t size;	      /* no lock: each call on the upload sets it from its reply */
};

int kvfs_upload_open(kvfs_t *kv, const char *key, unsigned flags, kvfs_upload_t **out)
{
	struct wire_rep rep;
	if (!kv || !out)
		return -EINVAL;
	struct kvfs_upload *up = calloc(1, sizeof(*up));
	if (!up)
		return -ENOMEM;
	int ret = state_open(kv, key, OP_UP_OPEN, (flags & KVFS_UPLOAD_KEEP) ? RQ_KEEP : 0, &up->c,
			     &up->gen, &rep);
	if (ret) {
		free(up);
		return ret;
	}
	up->handle = rep.handle;
	up->size = rep.attr.size;
	*out = up;
	return 0;
}

/* Enter an upload's conn; its session must be the one the upload lives in. */
static int up_enter(struct kvfs_upload *up)
{
	return up ? sess_enter(up->c, up->gen) : -EINVAL;
}

/*
 * Write buf[0, len) at off into the upload: inline while what is left fits a
 * message, else pieces of at most slot_size that the server RMA-reads from mr
 * (zero-copy; buf lies inside it) or, with mr NULL, from a staging slot the
 * bytes are copied into. Returns 0 or -errno.
 */
static int upload_write(struct kvfs_upload *up, const void *buf, size_t len, uint64_t off,
			kvfs_mr_t *mr)
{
	int ret = up_enter(up);
	if (ret)
		return ret;
	struct conn *c = up->c;
	const uint8_t *src = buf;
	int slot = -1;
	size_t done = 0;
	while (!ret && (done < len || len == 0)) {
		struct wire_req q;
		struct wire_rep rep;
		size_t n = len - done;
		req_init(c, &q, OP_UP_WRITE);
		q.handle = up->handle;
		q.off = off + done;
		if (n <= c->limits.inline_threshold) {
			q.data = src + done;
			q.dlen = (uint32_t)n;
		} else if (mr) {
			if (n > c->slot_size)
				n = c->slot_size;
			ret = mr_desc(c, mr, src + done, n, &q.buf);
			if (ret)
				break;
		} else {
			if (slot < 0)
				slot = slot_get(c, &c->staging_free);
			if (slot < 0) {
				ret = -EIO;
				break;
			}
			if (n > c->slot_size)
				n = c->slot_size;
			q.buf =
			    (struct wire_desc){REGION_STAGING, (uint64_t)slot * c->slot_size, n};
			memcpy(c->staging_region + q.buf.off, src + done, n);
		}
		q.len = n;
		ret = call_simple(c, &q, &rep);
		if (!ret)
			up->size = rep.attr.size;
		done += n;
		if (len == 0)
			break;
	}
	if (slot >= 0)
		slot_put(c, &c->staging_free, slot);
	conn_leave(c);
	return ret;
}

int kvfs_upload_write(kvfs_upload_t *up, const void *buf, size_t len, uint64_t off)
{
	if (len && !buf)
		return -EINVAL;
	return upload_write(up, buf, len, off, NULL);
}

int kvfs_upload_write_mr(kvfs_upload_t *up, const void *buf, size_t len, uint64_t off,
			 kvfs_mr_t *mr)
{
	int ret = up ? mr_check(up->c->kv, mr, buf, len) : -EINVAL;
	return ret ? ret : upload_write(up, buf, len, off, mr);
}

ssize_t kvfs_upload_read(kvfs_upload_t *up, void *buf, size_t len, uint64_t off)
{
	int ret = len && !buf ? -EINVAL : up_enter(up);
	if (ret)
		return ret;
	struct wire_req q;
	req_init(up->c, &q, OP_UP_READ);
	q.handle = up->handle;
	ssize_t n = read_range(up->c, &q, buf, len, off, NULL);
	conn_leave(up->c);
	return n;
}

static int up_simple(struct kvfs_upload *up, uint8_t op, uint64_t len,
		     const struct kvfs_setattr *sa, struct wire_rep *rep)
{
	int ret = up_enter(up);
	if (ret)
		return ret;
	struct wire_req q;
	req_init(up->c, &q, op);
	q.handle = up->handle;
	q.len = len;
	setattr_to_proto(&q.sa, sa);
	ret = call_simple(up->c, &q, rep);
	conn_leave(up->c);
	return ret;
}

int kvfs_upload_truncate(kvfs_upload_t *up, uint64_t size)
{
	struct wire_rep rep;
	int ret = up_simple(up, OP_UP_TRUNC, size, NULL, &rep);
	if (!ret)
		up->size = rep.attr.size;
	return ret;
}

uint64_t kvfs_upload_size(const kvfs_upload_t *up)
{
	return up ? up->size : 0;
}

int kvfs_upload_commit(kvfs_upload_t *up, const struct kvfs_setattr *sa, struct kvfs_attr *attr_out)
{
	struct wire_rep rep;
	int ret = up_simple(up, OP_UP_COMMIT, 0, sa, &rep);
	if (!ret && attr_out)
		attr_from_proto(attr_out, &rep.attr);
	if (ret != -EBUSY) /* the server keeps a busy upload, and another call is using up */
		free(up);
	return ret;
}

void kvfs_upload_abort(kvfs_upload_t *up)
{
	if (!up)
		return;
	up_simple(up, OP_UP_ABORT, 0, NULL, NULL);
	free(up);
}
