/*
 * libkvfs keyed calls: get, put, delete, stat, setattr and rename, copying
 * or zero-copy (kvfs_get_mr, kvfs_put_mr), and the reads of byte ranges that
 * uploads and pins share (read_range, lease_piece).
 *
 * A key's server is found by rendezvous hashing (kvfs_server_of); a call
 * enters that one conn and touches no state of the others. Small values
 * travel inline in the messages; larger ones by RMA to or from a slot of the
 * conn's regions (copied) or the caller's registered memory (zero-copy).
 * On a lazy kvfs_t (KVFS_OPEN_LAZY_FABRIC), get, put, delete, stat, setattr
 * and rename of values that fit a message go over the bootstrap socket
 * until a call needs the fabric (conn_enter_small, direct.c); the rest
 * enters the conn with conn_enter, which upgrades it.
 */
#include <errno.h>
#include <string.h>

#include "client/client_int.h"

static int check_key(const char *key, size_t *len)
{
	if (!key)
		return -EINVAL;
	*len = strnlen(key, KVFS_MAX_KEY + 1);
	if (*len == 0)
		return -EINVAL;
	if (*len > KVFS_MAX_KEY)
		return -ENAMETOOLONG;
	return 0;
}

/* Enter the conn of key's server. */
static int route(struct kvfs *kv, const char *key, size_t *klen, struct conn **out)
{
	int ret = kv ? check_key(key, klen) : -EINVAL;
	if (ret)
		return ret;
	struct conn *c = &kv->conns[kvfs_server_of(kv, key)];
	ret = conn_enter(c);
	if (ret)
		return ret;
	*out = c;
	return 0;
}

/* route for a small request: *direct set when it goes over the bootstrap socket. */
static int route_small(struct kvfs *kv, const char *key, size_t *klen, struct conn **out,
		       int *direct)
{
	int ret = kv ? check_key(key, klen) : -EINVAL;
	if (ret)
		return ret;
	struct conn *c = &kv->conns[kvfs_server_of(kv, key)];
	ret = conn_enter_small(c, direct);
	if (ret)
		return ret;
	*out = c;
	return 0;
}

/*
 * Enter key's server and start request q of op for key; direct NULL: by the
 * fabric, else as route_small. The caller leaves c.
 */
static int route_req(struct kvfs *kv, const char *key, uint8_t op, struct conn **out,
		     struct wire_req *q, int *direct)
{
	size_t klen;
	int ret = direct ? route_small(kv, key, &klen, out, direct) : route(kv, key, &klen, out);
	if (ret)
		return ret;
	req_init(*out, q, op);
	q->key = (const uint8_t *)key;
	q->klen = (uint32_t)klen;
	return 0;
}

/*
 * Read one piece [q->off, q->off + q->len) by request q (OP_GET, OP_UP_READ
 * or OP_PIN_GET, key or handle filled in): inline (region 0) or into desc.
 * Copies inline data to dst. Returns the bytes moved or -errno; attr (may be
 * NULL) gets the reply's attributes.
 */
static ssize_t read_piece(struct conn *c, struct wire_req *q, const struct wire_desc *desc,
			  void *dst, struct kvfs_attr *attr)
{
	struct wire_rep rep;
	struct creq *r;
	if (desc)
		q->buf = *desc;
	else
		q->buf = (struct wire_desc){0};
	int ret = call(c, q, &rep, &r);
	if (ret)
		return ret;
	ssize_t n = rep.status;
	if (!rep.status) {
		if (rep.n > q->len || (!desc && rep.n != rep.dlen)) {
			n = -EPROTO;
		} else {
			n = (ssize_t)rep.n;
			if (!desc && dst)
				memcpy(dst, rep.data, rep.n);
		}
		if (attr)
			attr_from_proto(attr, &rep.attr);
	}
	req_put(c, r);
	return n;
}

/* GET one piece: inline (region 0) or into desc. Copies inline data to dst. */
static ssize_t get_piece(struct conn *c, const char *key, size_t klen, uint64_t off, size_t len,
			 const struct wire_desc *desc, void *dst, struct kvfs_attr *attr)
{
	struct wire_req q;
	req_init(c, &q, OP_GET);
	q.key = (const uint8_t *)key;
	q.klen = (uint32_t)klen;
	q.off = off;
	q.len = len;
	return read_piece(c, &q, desc, dst, attr);
}

ssize_t read_range(struct conn *c, const struct wire_req *tmpl, void *buf, size_t len, uint64_t off,
		   struct kvfs_attr *attr)
{
	ssize_t total = 0;
	uint64_t version = 0;
	int slot = -1;
	uint8_t *dst = buf;
	struct kvfs_attr a = {0};
	for (;;) {
		struct wire_req q = *tmpl;
		size_t want = len - (size_t)total;
		ssize_t n;
		q.off = off + (uint64_t)total;
		if (want <= c->limits.inline_threshold) {
			q.len = want;
			n = read_piece(c, &q, NULL, dst + total, &a);
		} else {
			if (slot < 0)
				slot = slot_get(c, &c->recv_free);
			if (slot < 0) {
				n = -EIO;
			} else {
				if (want > c->slot_size)
					want = c->slot_size;
				q.len = want;
				struct wire_desc d = {REGION_RECV, (uint64_t)slot * c->slot_size,
						      want};
				n = read_piece(c, &q, &d, NULL, &a);
				if (n > 0)
					memcpy(dst + total, c->recv_region + d.off, (size_t)n);
			}
		}
		if (n < 0) {
			total = n;
			break;
		}
		if (version && a.version != version) {
			total = -EAGAIN; /* the value changed between pieces */
			break;
		}
		version = a.version;
		total += n;
		if (n == 0 || (size_t)total == len || off + (uint64_t)total >= a.size)
			break;
	}
	if (slot >= 0)
		slot_put(c, &c->recv_free, slot);
	if (attr)
		*attr = a;
	return total;
}

/*
 * GET [off, off+len) by direct request q (key filled in): the bytes read,
 * or -EMSGSIZE when the value goes on past what one reply carries (the
 * inline threshold), or -errno.
 */
static ssize_t get_direct(struct conn *c, struct wire_req *q, void *buf, size_t len, uint64_t off,
			  struct kvfs_attr *attr)
{
	struct wire_rep rep;
	size_t want = len < c->limits.inline_threshold ? len : c->limits.inline_threshold;
	q->off = off;
	q->len = want;
	int ret = direct_call(c, q, &rep, buf, want);
	if (ret)
		return ret;
	if (rep.status)
		return rep.status;
	if (rep.n != rep.dlen) {
		conn_break(c, "a direct GET reply whose count is not its data");
		return -EPROTO;
	}
	attr_from_proto(attr, &rep.attr);
	if (rep.n < len && off + rep.n < attr->size)
		return -EMSGSIZE;
	return (ssize_t)rep.n;
}

ssize_t kvfs_get(kvfs_t *kv, const char *key, void *buf, size_t len, uint64_t off,
		 struct kvfs_attr *attr)
{
	struct conn *c;
	struct kvfs_attr a;
	struct wire_req q;
	int direct;
	if (len && !buf)
		return -EINVAL;
	int ret = route_req(kv, key, OP_GET, &c, &q, &direct);
	if (ret)
		return ret;
	if (direct) {
		ssize_t n = get_direct(c, &q, buf, len, off, &a);
		if (n != -EMSGSIZE) {
			if (n >= 0 && attr)
				*attr = a;
			conn_leave(c);
			return n;
		}
		/* More than a direct reply carries: read it all by the fabric. */
		conn_leave(c);
		ret = conn_enter(c);
		if (ret)
			return ret;
		req_init(c, &q, OP_GET);
		q.key = (const uint8_t *)key;
		q.klen = (uint32_t)strlen(key);
	}
	ssize_t total = read_range(c, &q, buf, len, off, &a);
	if (total >= 0 && attr)
		*attr = a;
	conn_leave(c);
	return total;
}

ssize_t lease_piece(struct conn *c, struct wire_req *q, const void **data, kvfs_lease_t **lease,
		    struct kvfs_attr *attr)
{
	if (q->len > c->slot_size)
		return -EINVAL;
	int slot = slot_get(c, &c->recv_free);
	if (slot < 0)
		return -EIO;
	struct wire_desc d = {REGION_RECV, (uint64_t)slot * c->slot_size, q->len};
	ssize_t n = read_piece(c, q, &d, NULL, attr);
	if (n < 0) {
		slot_put(c, &c->recv_free, slot);
		return n;
	}
	struct kvfs_lease *l = &c->leases[slot];
	*l = (struct kvfs_lease){.c = c, .slot = slot};
	*data = c->recv_region + d.off;
	*lease = l;
	return n;
}

ssize_t kvfs_get_lease(kvfs_t *kv, const char *key, size_t len, uint64_t off, const void **data,
		       kvfs_lease_t **lease, struct kvfs_attr *attr)
{
	struct conn *c;
	struct wire_req q;
	if (!lease)
		return -EINVAL;
	*lease = NULL;
	if (!data)
		return -EINVAL;
	int ret = route_req(kv, key, OP_GET, &c, &q, NULL);
	if (ret)
		return ret;
	q.off = off;
	q.len = len;
	ssize_t n = lease_piece(c, &q, data, lease, attr);
	if (n < 0)
		conn_leave(c);
	return n; /* a lease keeps the conn entered */
}

void kvfs_lease_release(kvfs_lease_t *l)
{
	if (!l)
		return;
	if (l->pin) {
		pin_put(l->pin);
		return;
	}
	struct conn *c = l->c;
	slot_put(c, &c->recv_free, l->slot);
	conn_leave(c);
}

/*
 * PUT inline (over the bootstrap socket when direct), or from a staging slot
 * or registered region.
 */
static int put_one(struct conn *c, int direct, const char *key, size_t klen, const void *buf,
		   size_t len, const struct wire_desc *desc, const struct kvfs_setattr *sa)
{
	struct wire_req q;
	req_init(c, &q, OP_PUT);
	q.key = (const uint8_t *)key;
	q.klen = (uint32_t)klen;
	q.len = len;
	setattr_to_proto(&q.sa, sa);
	if (desc) {
		q.buf = *desc;
	} else {
		q.data = buf;
		q.dlen = (uint32_t)len;
	}
	return call_small(c, direct, &q, NULL);
}

int kvfs_put(kvfs_t *kv, const char *key, const void *buf, size_t len,
	     const struct kvfs_setattr *sa)
{
	struct conn *c;
	size_t klen;
	int direct;
	if (len && !buf)
		return -EINVAL;
	int ret = route_small(kv, key, &klen, &c, &direct);
	if (ret)
		return ret;
	if (direct && len > c->limits.inline_threshold) {
		conn_leave(c); /* too big for the bootstrap socket: upgrade */
		direct = 0;
		ret = conn_enter(c);
		if (ret)
			return ret;
	}
	if (len <= c->limits.inline_threshold) {
		ret = put_one(c, direct, key, klen, buf, len, NULL, sa);
	} else if (len <= c->slot_size) {
		int slot = slot_get(c, &c->staging_free);
		if (slot < 0) {
			ret = -EIO;
		} else {
			struct wire_desc d = {REGION_STAGING, (uint64_t)slot * c->slot_size, len};
			memcpy(c->staging_region + d.off, buf, len);
			ret = put_one(c, 0, key, klen, NULL, len, &d, sa);
			slot_put(c, &c->staging_free, slot);
		}
	} else {
		conn_leave(c);
		kvfs_upload_t *up;
		ret = kvfs_upload_open(kv, key, 0, &up);
		if (ret)
			return ret;
		ret = kvfs_upload_write(up, buf, len, 0);
		if (ret) {
			kvfs_upload_abort(up);
			return ret;
		}
		return kvfs_upload_commit(up, sa, NULL);
	}
	conn_leave(c);
	return ret;
}

/* A request about one key that moves no value bytes: route, call, leave. */
static int key_call(struct kvfs *kv, const char *key, uint8_t op, const struct kvfs_setattr *sa,
		    struct kvfs_attr *attr)
{
	struct conn *c;
	struct wire_req q;
	struct wire_rep rep;
	int direct;
	int ret = route_req(kv, key, op, &c, &q, &direct);
	if (ret)
		return ret;
	setattr_to_proto(&q.sa, sa);
	ret = call_small(c, direct, &q, &rep);
	if (!ret && attr)
		attr_from_proto(attr, &rep.attr);
	conn_leave(c);
	return ret;
}

int kvfs_delete(kvfs_t *kv, const char *key)
{
	return key_call(kv, key, OP_DELETE, NULL, NULL);
}

int kvfs_stat(kvfs_t *kv, const char *key, struct kvfs_attr *attr)
{
	return key_call(kv, key, OP_STAT, NULL, attr);
}

int kvfs_setattr(kvfs_t *kv, const char *key, const struct kvfs_setattr *sa,
		 struct kvfs_attr *attr_out)
{
	return key_call(kv, key, OP_SETATTR, sa, attr_out);
}

int kvfs_rename(kvfs_t *kv, const char *src, const char *dst, unsigned flags)
{
	size_t slen, dlen;
	if (!kv)
		return -EINVAL;
	int ret = check_key(dst, &dlen);
	if (ret)
		return ret;
	ret = check_key(src, &slen);
	if (ret)
		return ret;
	if (kvfs_server_of(kv, src) != kvfs_server_of(kv, dst))
		return -EXDEV;
	struct conn *c;
	int direct;
	ret = route_small(kv, src, &slen, &c, &direct);
	if (ret)
		return ret;
	struct wire_req q;
	req_init(c, &q, OP_RENAME);
	q.key = (const uint8_t *)src;
	q.klen = (uint32_t)slen;
	q.key2 = (const uint8_t *)dst;
	q.k2len = (uint32_t)dlen;
	q.flags = (flags & KVFS_RENAME_NOREPLACE) ? RQ_NOREPLACE : 0;
	ret = call_small(c, direct, &q, NULL);
	conn_leave(c);
	return ret;
}

/* Check a zero-copy call's buffer and region (mr_check), then route. */
static int route_mr(struct kvfs *kv, const char *key, const kvfs_mr_t *mr, const void *buf,
		    size_t len, size_t *klen, struct conn **out)
{
	int ret = mr_check(kv, mr, buf, len);
	return ret ? ret : route(kv, key, klen, out);
}

ssize_t kvfs_get_mr(kvfs_t *kv, const char *key, void *buf, size_t len, uint64_t off, kvfs_mr_t *mr,
		    struct kvfs_attr *attr)
{
	struct conn *c;
	size_t klen;
	int ret = route_mr(kv, key, mr, buf, len, &klen, &c);
	if (ret)
		return ret;
	ssize_t n;
	if (len <= c->get_inline) {
		n = get_piece(c, key, klen, off, len, NULL, buf, attr);
	} else {
		struct wire_desc d;
		n = mr_desc(c, mr, buf, len, &d);
		if (!n)
			n = get_piece(c, key, klen, off, len, &d, NULL, attr);
	}
	conn_leave(c);
	return n;
}

int kvfs_put_mr(kvfs_t *kv, const char *key, const void *buf, size_t len, kvfs_mr_t *mr,
		const struct kvfs_setattr *sa)
{
	struct conn *c;
	size_t klen;
	struct wire_desc d;
	int ret = route_mr(kv, key, mr, buf, len, &klen, &c);
	if (ret)
		return ret;
	if (len <= c->limits.inline_threshold) {
		ret = put_one(c, 0, key, klen, buf, len, NULL, sa);
	} else {
		ret = mr_desc(c, mr, buf, len, &d);
		if (!ret)
			ret = put_one(c, 0, key, klen, NULL, len, &d, sa);
	}
	conn_leave(c);
	return ret;
}

int state_open(kvfs_t *kv, const char *key, uint8_t op, uint8_t flags, struct conn **cp,
	       uint64_t *gen, struct wire_rep *rep)
{
	struct conn *c;
	struct wire_req q;
	int ret = route_req(kv, key, op, &c, &q, NULL);
	if (ret)
		return ret;
	q.flags = flags;
	ret = call_simple(c, &q, rep);
	if (!ret) {
		*cp = c;
		pthread_mutex_lock(&c->lock);
		*gen = c->gen; /* stable: we are one of its users */
		pthread_mutex_unlock(&c->lock);
	}
	conn_leave(c);
	return ret;
}
