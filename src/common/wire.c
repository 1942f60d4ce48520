/*
 * wire: encoding and validation of kvfs messages (see wire.h).
 * Every read from a received buffer goes through struct rd, which turns any
 * overrun into a sticky error instead of an out-of-bounds access.
 */
#include "wire.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define REQ_MAGIC 0x5152564bu /* "KVRQ" */
#define REP_MAGIC 0x5052564bu /* "KVRP" */

struct wr {
	uint8_t *p;
	size_t cap, pos;
	int over;
};
struct rd {
	const uint8_t *p;
	size_t len, pos;
	int bad;
};

static void w_bytes(struct wr *w, const void *b, size_t n)
{
	if (w->over || n > w->cap - w->pos) {
		w->over = 1;
		return;
	}
	if (n)
		memcpy(w->p + w->pos, b, n);
	w->pos += n;
}
static void w_u8(struct wr *w, uint8_t v)
{
	w_bytes(w, &v, 1);
}
static void w_u16(struct wr *w, uint16_t v)
{
	v = htole16(v);
	w_bytes(w, &v, 2);
}
static void w_u32(struct wr *w, uint32_t v)
{
	v = htole32(v);
	w_bytes(w, &v, 4);
}
static void w_u64(struct wr *w, uint64_t v)
{
	v = htole64(v);
	w_bytes(w, &v, 8);
}

static const uint8_t *r_bytes(struct rd *r, size_t n)
{
	if (r->bad || n > r->len - r->pos) {
		r->bad = 1;
		return NULL;
	}
	const uint8_t *p = r->p + r->pos;
	r->pos += n;
	return p;
}
static void r_copy(struct rd *r, void *dst, size_t n)
{
	const uint8_t *p = r_bytes(r, n);
	if (p)
		memcpy(dst, p, n);
	else
		memset(dst, 0, n);
}
static uint8_t r_u8(struct rd *r)
{
	uint8_t v;
	r_copy(r, &v, 1);
	return v;
}
static uint16_t r_u16(struct rd *r)
{
	uint16_t v;
	r_copy(r, &v, 2);
	return le16toh(v);
}
static uint32_t r_u32(struct rd *r)
{
	uint32_t v;
	r_copy(r, &v, 4);
	return le32toh(v);
}
static uint64_t r_u64(struct rd *r)
{
	uint64_t v;
	r_copy(r, &v, 8);
	return le64toh(v);
}

/*
 * Short strings: u8 length + bytes, none of them NUL (w_str stops at one);
 * decoded into a NUL-terminated array. A NUL inside is refused: the string
 * would mean less than its bytes.
 */
static void w_str(struct wr *w, const char *s, size_t cap)
{
	size_t n = strnlen(s, cap < 255 ? cap : 255);
	w_u8(w, (uint8_t)n);
	w_bytes(w, s, n);
}
static void r_str(struct rd *r, char *dst, size_t cap)
{
	size_t n = r_u8(r);
	const uint8_t *p = r_bytes(r, n);
	if (!p || n >= cap || memchr(p, 0, n)) {
		r->bad = 1;
		dst[0] = 0;
		return;
	}
	memcpy(dst, p, n);
	dst[n] = 0;
}

static void w_region(struct wr *w, const struct wire_region *g)
{
	w_u64(w, g->base);
	w_u64(w, g->len);
	w_u64(w, g->key);
}
static void r_region(struct rd *r, struct wire_region *g)
{
	g->base = r_u64(r);
	g->len = r_u64(r);
	g->key = r_u64(r);
}

int wire_frame_header(const void *hdr, uint16_t *type, uint32_t *len, uint32_t max)
{
	struct rd r = {hdr, WIRE_FRAME_HDR, 0, 0};
	uint32_t magic = r_u32(&r);
	uint16_t proto = r_u16(&r);
	*type = r_u16(&r);
	*len = r_u32(&r);
	if (magic != WIRE_MAGIC || proto != WIRE_PROTO || *len > max)
		return -EPROTO;
	return 0;
}

void wire_frame_wrap(void *hdr, uint16_t type, uint32_t len)
{
	struct wr w = {hdr, WIRE_FRAME_HDR, 0, 0};
	w_u32(&w, WIRE_MAGIC);
	w_u16(&w, WIRE_PROTO);
	w_u16(&w, type);
	w_u32(&w, len);
}

int wire_frame_encode(void *buf, size_t cap, uint16_t type, const void *body)
{
	struct wr w = {buf, cap, WIRE_FRAME_HDR, 0};
	if (cap < WIRE_FRAME_HDR)
		return -EMSGSIZE;
	switch (type) {
	case WF_HELLO: {
		const struct wire_hello *m = body;
		w_u16(&w, m->proto);
		w_bytes(&w, m->nonce, WIRE_NONCE);
		break;
	}
	case WF_CHALLENGE: {
		const struct wire_challenge *m = body;
		w_u8(&w, m->auth_required);
		w_bytes(&w, m->nonce, WIRE_NONCE);
		break;
	}
	case WF_AUTH:
		w_bytes(&w, body, WIRE_MAC);
		break;
	case WF_WELCOME: {
		const struct wire_welcome *m = body;
		w_bytes(&w, m->mac, WIRE_MAC);
		w_u64(&w, m->limits.max_key);
		w_u64(&w, m->limits.max_value);
		w_u64(&w, m->limits.inline_threshold);
		w_u64(&w, m->limits.msg_size);
		w_u8(&w, (uint8_t)m->n_provs);
		for (int i = 0; i < m->n_provs; i++)
			w_str(&w, m->provs[i], sizeof(m->provs[i]));
		break;
	}
	case WF_SETUP: {
		const struct wire_setup *m = body;
		w_str(&w, m->provider, sizeof(m->provider));
		w_u16(&w, m->addr_len);
		w_bytes(&w, m->addr, m->addr_len);
		w_region(&w, &m->recv);
		w_region(&w, &m->staging);
		w_bytes(&w, m->mac, WIRE_MAC);
		break;
	}
	case WF_READY: {
		const struct wire_ready *m = body;
		w_u64(&w, m->session);
		w_u64(&w, m->token);
		w_u16(&w, m->addr_len);
		w_bytes(&w, m->addr, m->addr_len);
		w_u32(&w, m->pool.pid);
		w_u32(&w, (uint32_t)m->pool.fd);
		w_u64(&w, m->pool.len);
		w_u64(&w, m->pool.dev);
		w_u64(&w, m->pool.ino);
		w_bytes(&w, m->mac, WIRE_MAC);
		break;
	}
	case WF_ERROR: {
		const struct wire_error *m = body;
		w_u32(&w, (uint32_t)m->err);
		w_str(&w, m->text, sizeof(m->text));
		break;
	}
	default:
		return -EINVAL;
	}
	if (w.over)
		return -EMSGSIZE;
	size_t body_len = w.pos - WIRE_FRAME_HDR;
	w.pos = 0;
	w_u32(&w, WIRE_MAGIC);
	w_u16(&w, WIRE_PROTO);
	w_u16(&w, type);
	w_u32(&w, (uint32_t)body_len);
	return (int)(body_len + WIRE_FRAME_HDR);
}

int wire_frame_decode(uint16_t type, const void *body, size_t len, void *out, const char **why)
{
	struct rd r = {body, len, 0, 0};
	*why = "truncated frame";
	switch (type) {
	case WF_HELLO: {
		struct wire_hello *m = out;
		m->proto = r_u16(&r);
		r_copy(&r, m->nonce, WIRE_NONCE);
		break;
	}
	case WF_CHALLENGE: {
		struct wire_challenge *m = out;
		m->auth_required = r_u8(&r);
		r_copy(&r, m->nonce, WIRE_NONCE);
		break;
	}
	case WF_AUTH:
		r_copy(&r, out, WIRE_MAC);
		break;
	case WF_WELCOME: {
		struct wire_welcome *m = out;
		r_copy(&r, m->mac, WIRE_MAC);
		m->limits.max_key = r_u64(&r);
		m->limits.max_value = r_u64(&r);
		m->limits.inline_threshold = r_u64(&r);
		m->limits.msg_size = r_u64(&r);
		m->n_provs = r_u8(&r);
		if (m->n_provs > WIRE_MAX_PROVS) {
			*why = "too many providers";
			return -EPROTO;
		}
		for (int i = 0; i < m->n_provs; i++)
			r_str(&r, m->provs[i], sizeof(m->provs[i]));
		break;
	}
	case WF_SETUP: {
		struct wire_setup *m = out;
		r_str(&r, m->provider, sizeof(m->provider));
		m->addr_len = r_u16(&r);
		if (m->addr_len > WIRE_ADDR_MAX) {
			*why = "fabric address too long";
			return -EPROTO;
		}
		r_copy(&r, m->addr, m->addr_len);
		r_region(&r, &m->recv);
		r_region(&r, &m->staging);
		r_copy(&r, m->mac, WIRE_MAC);
		break;
	}
	case WF_READY: {
		struct wire_ready *m = out;
		m->session = r_u64(&r);
		m->token = r_u64(&r);
		m->addr_len = r_u16(&r);
		if (m->addr_len > WIRE_ADDR_MAX) {
			*why = "fabric address too long";
			return -EPROTO;
		}
		r_copy(&r, m->addr, m->addr_len);
		m->pool.pid = r_u32(&r);
		m->pool.fd = (int32_t)r_u32(&r);
		m->pool.len = r_u64(&r);
		m->pool.dev = r_u64(&r);
		m->pool.ino = r_u64(&r);
		r_copy(&r, m->mac, WIRE_MAC);
		break;
	}
	case WF_ERROR: {
		struct wire_error *m = out;
		m->err = (int32_t)r_u32(&r);
		r_str(&r, m->text, sizeof(m->text));
		break;
	}
	default:
		*why = "unknown frame type";
		return -EPROTO;
	}
	if (r.bad)
		return -EPROTO;
	if (r.pos != len) {
		*why = "trailing bytes in frame";
		return -EPROTO;
	}
	return 0;
}

size_t wire_msg_size(uint64_t inline_threshold)
{
	size_t n = WIRE_REQ_FIXED + 2 * PROTO_MAX_KEY + inline_threshold;
	return (n + 4095) & ~(size_t)4095; /* whole pages: buffers are page-aligned arrays */
}

int wire_req_encode(void *buf, size_t cap, const struct wire_req *q)
{
	struct wr w = {buf, cap, 0, 0};
	w_u8(&w, q->op);
	w_u8(&w, q->flags);
	w_u16(&w, (uint16_t)q->klen);
	w_u16(&w, (uint16_t)q->k2len);
	w_u16(&w, 0);
	w_u32(&w, q->dlen);
	w_u32(&w, REQ_MAGIC);
	w_u64(&w, q->session);
	w_u64(&w, q->token);
	w_u64(&w, q->req_id);
	w_u64(&w, q->off);
	w_u64(&w, q->len);
	w_u64(&w, q->handle);
	w_u32(&w, q->buf.region);
	w_u32(&w, q->sa.mask);
	w_u64(&w, q->buf.off);
	w_u64(&w, q->buf.len);
	w_u32(&w, q->sa.mode);
	w_u32(&w, q->sa.uid);
	w_u32(&w, q->sa.gid);
	w_u32(&w, 0);
	w_u64(&w, (uint64_t)q->sa.mtime_ns);
	w_u64(&w, (uint64_t)q->sa.atime_ns);
	w_u64(&w, (uint64_t)q->sa.ttl);
	if (q->klen > UINT16_MAX || q->k2len > UINT16_MAX)
		return -EMSGSIZE;
	w_bytes(&w, q->key, q->klen);
	w_bytes(&w, q->key2, q->k2len);
	w_bytes(&w, q->data, q->dlen);
	return w.over ? -EMSGSIZE : (int)w.pos;
}

int wire_req_decode(const void *buf, size_t len, const struct wire_limits *lim, struct wire_req *q,
		    const char **why)
{
	struct rd r = {buf, len, 0, 0};
	memset(q, 0, sizeof(*q));
	if (len < WIRE_REQ_FIXED) {
		*why = "message shorter than a request header";
		return -EPROTO;
	}
	q->op = r_u8(&r);
	q->flags = r_u8(&r);
	q->klen = r_u16(&r);
	q->k2len = r_u16(&r);
	(void)r_u16(&r);
	q->dlen = r_u32(&r);
	if (r_u32(&r) != REQ_MAGIC) {
		*why = "bad request magic";
		return -EPROTO;
	}
	q->session = r_u64(&r);
	q->token = r_u64(&r);
	q->req_id = r_u64(&r);
	q->off = r_u64(&r);
	q->len = r_u64(&r);
	q->handle = r_u64(&r);
	q->buf.region = r_u32(&r);
	q->sa.mask = r_u32(&r);
	q->buf.off = r_u64(&r);
	q->buf.len = r_u64(&r);
	q->sa.mode = r_u32(&r);
	q->sa.uid = r_u32(&r);
	q->sa.gid = r_u32(&r);
	(void)r_u32(&r);
	q->sa.mtime_ns = (int64_t)r_u64(&r);
	q->sa.atime_ns = (int64_t)r_u64(&r);
	q->sa.ttl = (int64_t)r_u64(&r);
	if (q->op == 0 || q->op >= OP_MAX_) {
		*why = "unknown op";
		return -EPROTO;
	}
	if (q->klen > lim->max_key || q->k2len > lim->max_key) {
		*why = "key longer than the limit";
		return -ENAMETOOLONG;
	}
	if (q->dlen > lim->inline_threshold) {
		*why = "inline data over the inline threshold";
		return -EMSGSIZE;
	}
	if ((size_t)WIRE_REQ_FIXED + q->klen + q->k2len + q->dlen != len) {
		*why = "lengths do not add up to the message size";
		return -EPROTO;
	}
	q->key = r_bytes(&r, q->klen);
	q->key2 = r_bytes(&r, q->k2len);
	q->data = r_bytes(&r, q->dlen);
	return r.bad ? -EPROTO : 0;
}

static void w_attr(struct wr *w, const struct proto_attr *a)
{
	w_u64(w, a->size);
	w_u64(w, a->version);
	w_u64(w, (uint64_t)a->mtime_ns);
	w_u64(w, (uint64_t)a->atime_ns);
	w_u64(w, (uint64_t)a->ctime_ns);
	w_u64(w, (uint64_t)a->expiry);
	w_u32(w, a->mode);
	w_u32(w, a->uid);
	w_u32(w, a->gid);
	w_u32(w, 0);
}
static void r_attr(struct rd *r, struct proto_attr *a)
{
	a->size = r_u64(r);
	a->version = r_u64(r);
	a->mtime_ns = (int64_t)r_u64(r);
	a->atime_ns = (int64_t)r_u64(r);
	a->ctime_ns = (int64_t)r_u64(r);
	a->expiry = (int64_t)r_u64(r);
	a->mode = r_u32(r);
	a->uid = r_u32(r);
	a->gid = r_u32(r);
	(void)r_u32(r);
}

int wire_rep_encode(void *buf, size_t cap, const struct wire_rep *p)
{
	struct wr w = {buf, cap, 0, 0};
	w_u8(&w, p->op);
	w_u8(&w, p->flags);
	w_u16(&w, 0);
	w_u32(&w, (uint32_t)p->status);
	w_u64(&w, p->req_id);
	w_u64(&w, p->n);
	w_u64(&w, p->handle);
	w_u32(&w, p->dlen);
	w_u32(&w, REP_MAGIC);
	w_attr(&w, &p->attr);
	if (p->data == (const uint8_t *)buf + WIRE_REP_FIXED) {
		/* The caller gathered the payload in place already. */
		if (p->dlen > cap - w.pos)
			w.over = 1;
		w.pos += p->dlen;
	} else {
		w_bytes(&w, p->data, p->dlen);
	}
	return w.over ? -EMSGSIZE : (int)w.pos;
}

int wire_rep_decode(const void *buf, size_t len, struct wire_rep *p, const char **why)
{
	struct rd r = {buf, len, 0, 0};
	memset(p, 0, sizeof(*p));
	if (len < WIRE_REP_FIXED) {
		*why = "message shorter than a reply header";
		return -EPROTO;
	}
	p->op = r_u8(&r);
	p->flags = r_u8(&r);
	(void)r_u16(&r);
	p->status = (int32_t)r_u32(&r);
	p->req_id = r_u64(&r);
	p->n = r_u64(&r);
	p->handle = r_u64(&r);
	p->dlen = r_u32(&r);
	if (r_u32(&r) != REP_MAGIC) {
		*why = "bad reply magic";
		return -EPROTO;
	}
	r_attr(&r, &p->attr);
	if ((size_t)WIRE_REP_FIXED + p->dlen != len) {
		*why = "lengths do not add up to the message size";
		return -EPROTO;
	}
	if (p->status > 0 || p->status < -4095) {
		*why = "status out of range";
		return -EPROTO;
	}
	p->data = r_bytes(&r, p->dlen);
	return r.bad ? -EPROTO : 0;
}

int wire_entry_encode(void *buf, size_t cap, const char *name, size_t nlen,
		      const struct proto_attr *attr)
{
	struct wr w = {buf, cap, 0, 0};
	if (nlen > UINT16_MAX)
		return -EMSGSIZE;
	w_u16(&w, (uint16_t)nlen);
	w_u8(&w, attr ? 0 : 1);
	if (attr)
		w_attr(&w, attr);
	w_bytes(&w, name, nlen);
	return w.over ? -EMSGSIZE : (int)w.pos;
}

int wire_entry_decode(const void *buf, size_t len, const char **name, size_t *nlen, int *is_prefix,
		      struct proto_attr *attr)
{
	struct rd r = {buf, len, 0, 0};
	*nlen = r_u16(&r);
	*is_prefix = r_u8(&r);
	memset(attr, 0, sizeof(*attr));
	if (*is_prefix > 1)
		return -EPROTO;
	if (!*is_prefix)
		r_attr(&r, attr);
	*name = (const char *)r_bytes(&r, *nlen);
	return r.bad ? -EPROTO : (int)r.pos;
}

int wire_list_count_ok(uint64_t n, size_t dlen)
{
	return n <= dlen / 3;
}

static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int r = memcmp(a, b, alen < blen ? alen : blen);
	return r ? r : (alen > blen) - (alen < blen);
}

int wire_list_decode(const uint8_t *data, size_t dlen, uint64_t n, const char *prefix, size_t plen,
		     const char *cursor, size_t clen, struct wire_entry *out, const char **why)
{
	size_t pos = 0;
	if (!wire_list_count_ok(n, dlen)) {
		*why = "more entries than the reply holds";
		return -EPROTO;
	}
	for (uint64_t i = 0; i < n; i++) {
		struct wire_entry *e = &out[i];
		int k = wire_entry_decode(data + pos, dlen - pos, &e->name, &e->nlen, &e->is_prefix,
					  &e->attr);
		if (k < 0) {
			*why = "a truncated entry";
			return -EPROTO;
		}
		pos += (size_t)k;
		if (e->nlen == 0 || e->nlen < plen || memcmp(e->name, prefix, plen) != 0) {
			*why = "a name outside the prefix";
			return -EPROTO;
		}
		const char *prev = i ? out[i - 1].name : cursor;
		size_t prev_len = i ? out[i - 1].nlen : clen;
		if ((i || clen) && bytes_cmp(e->name, e->nlen, prev, prev_len) <= 0) {
			*why = "names out of order or repeated";
			return -EPROTO;
		}
	}
	if (pos != dlen) {
		*why = "bytes after the last entry";
		return -EPROTO;
	}
	return 0;
}

int wire_segs_encode(void *buf, size_t cap, const struct wire_seg *seg, int n)
{
	struct wr w = {buf, cap, 0, 0};
	for (int i = 0; i < n; i++) {
		w_u64(&w, seg[i].off);
		w_u64(&w, seg[i].len);
	}
	return w.over ? -EMSGSIZE : (int)w.pos;
}

int wire_segs_decode(const void *buf, size_t len, uint64_t total, uint64_t pool_len,
		     struct wire_seg *seg, int max)
{
	struct rd r = {buf, len, 0, 0};
	uint64_t sum = 0;
	int n = 0;
	if (len % WIRE_SEG_SIZE || len / WIRE_SEG_SIZE > (size_t)max)
		return -EPROTO;
	for (; r.pos < len; n++) {
		seg[n].off = r_u64(&r);
		seg[n].len = r_u64(&r);
		if (!seg[n].len || seg[n].off > pool_len || seg[n].len > pool_len - seg[n].off ||
		    seg[n].len > total - sum)
			return -EPROTO;
		sum += seg[n].len;
	}
	return sum == total ? n : -EPROTO;
}

int wire_inval_encode(void *buf, size_t cap, unsigned kind, const void *key, size_t klen)
{
	struct wr w = {buf, cap, 0, 0};
	if (klen > PROTO_MAX_KEY)
		return -EMSGSIZE;
	w_u8(&w, (uint8_t)kind);
	w_u16(&w, (uint16_t)klen);
	w_bytes(&w, key, klen);
	return w.over ? -EMSGSIZE : (int)w.pos;
}

int wire_inval_next(const uint8_t *data, size_t dlen, size_t *pos, unsigned *kind,
		    const uint8_t **key, size_t *klen)
{
	if (*pos >= dlen)
		return 0;
	struct rd r = {data, dlen, *pos, 0};
	*kind = r_u8(&r);
	*klen = r_u16(&r);
	*key = r_bytes(&r, *klen);
	if (r.bad || *klen > PROTO_MAX_KEY ||
	    (*kind != WIRE_INVAL_CHANGED && *kind != WIRE_INVAL_GONE))
		return -EPROTO;
	*pos = r.pos;
	return 1;
}

int wire_inval_check(const uint8_t *data, size_t dlen, uint64_t n, const char **why)
{
	size_t pos = 0, klen;
	unsigned kind;
	const uint8_t *key;
	uint64_t seen = 0;
	int ret;
	while ((ret = wire_inval_next(data, dlen, &pos, &kind, &key, &klen)) == 1)
		seen++;
	if (ret < 0) {
		*why = "malformed invalidation entry";
		return -EPROTO;
	}
	if (seen != n) {
		*why = "invalidation count differs from its entries";
		return -EPROTO;
	}
	return 0;
}

#define N_STATS 16
static uint64_t *stat_field(struct proto_stats *st, int i)
{
	uint64_t *f[N_STATS] = {
	    &st->gets,	    &st->hits,	    &st->misses,	   &st->puts,
	    &st->deletes,   &st->evictions, &st->expirations,	   &st->bytes_in,
	    &st->bytes_out, &st->keys,	    &st->pool_size,	   &st->pool_used,
	    &st->sessions,  &st->uptime_s,  &st->dropped_requests, &st->stalled_sessions};
	return f[i];
}

int wire_stats_encode(void *buf, size_t cap, const struct proto_stats *st)
{
	struct wr w = {buf, cap, 0, 0};
	w_u8(&w, N_STATS);
	for (int i = 0; i < N_STATS; i++)
		w_u64(&w, *stat_field((struct proto_stats *)st, i));
	w_str(&w, st->provider, sizeof(st->provider));
	return w.over ? -EMSGSIZE : (int)w.pos;
}

int wire_stats_decode(const void *buf, size_t len, struct proto_stats *st)
{
	struct rd r = {buf, len, 0, 0};
	memset(st, 0, sizeof(*st));
	if (r_u8(&r) != N_STATS)
		return -EPROTO;
	for (int i = 0; i < N_STATS; i++)
		*stat_field(st, i) = r_u64(&r);
	r_str(&r, st->provider, sizeof(st->provider));
	return r.bad || r.pos != len ? -EPROTO : 0;
}

void wire_mac(uint8_t mac[WIRE_MAC], const uint8_t *secret, size_t slen, const char *label,
	      const uint8_t a[WIRE_NONCE], const uint8_t b[WIRE_NONCE])
{
	uint8_t msg[64 + 2 * WIRE_NONCE];
	size_t ll = strnlen(label, 64);
	unsigned int outlen = WIRE_MAC;
	memcpy(msg, label, ll);
	memcpy(msg + ll, a, WIRE_NONCE);
	memcpy(msg + ll + WIRE_NONCE, b, WIRE_NONCE);
	if (!HMAC(EVP_sha256(), secret, (int)slen, msg, ll + 2 * WIRE_NONCE, mac, &outlen))
		memset(mac, 0, WIRE_MAC);
}

int wire_mac_equal(const uint8_t a[WIRE_MAC], const uint8_t b[WIRE_MAC])
{
	return CRYPTO_memcmp(a, b, WIRE_MAC) == 0;
}

void wire_session_key(uint8_t key[WIRE_MAC], const uint8_t *secret, size_t slen,
		      const uint8_t cn[WIRE_NONCE], const uint8_t sn[WIRE_NONCE])
{
	wire_mac(key, secret, slen, "kvfs-session", cn, sn);
}

int wire_frame_mac(uint8_t mac[WIRE_MAC], const uint8_t key[WIRE_MAC], uint16_t type,
		   const void *body)
{
	static const char label[] = "kvfs-frame";
	uint8_t buf[sizeof(label) - 1 + WIRE_FRAME_HDR + WIRE_FRAME_MAX];
	const size_t ll = sizeof(label) - 1;
	unsigned int outlen = WIRE_MAC;
	memset(mac, 0, WIRE_MAC);
	if (type != WF_WELCOME && type != WF_SETUP && type != WF_READY)
		return -EINVAL;
	memcpy(buf, label, ll);
	int n = wire_frame_encode(buf + ll, sizeof(buf) - ll, type, body);
	if (n < WIRE_FRAME_HDR + WIRE_MAC)
		return -EINVAL;
	/* the mac field: first in a WELCOME, last in a SETUP or READY */
	size_t at = type == WF_WELCOME ? WIRE_FRAME_HDR : (size_t)n - WIRE_MAC;
	memset(buf + ll + at, 0, WIRE_MAC);
	if (!HMAC(EVP_sha256(), key, WIRE_MAC, buf, ll + (size_t)n, mac, &outlen))
		return -EINVAL;
	return 0;
}

/* Read len bytes of /dev/urandom into p; 0, or -errno. */
static int urandom(uint8_t *p, size_t len)
{
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? -errno : -EIO;
			close(fd);
			return err;
		}
		p += n;
		len -= (size_t)n;
	}
	close(fd);
	return 0;
}

/*
 * getrandom(2), retried when a signal interrupts it. A kernel without it
 * (ENOSYS) or a sandbox that refuses it (EPERM) gets /dev/urandom. With no
 * randomness at all there is no safe nonce or token: the process stops with
 * a message rather than loop or go on with predictable bytes.
 */
void wire_random(void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = getrandom(p, len, 0);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		int err = n < 0 ? errno : EIO;
		int uerr = urandom(p, len);
		if (!uerr)
			return;
		fprintf(stderr, "kvfs: no random bytes: getrandom: %s; /dev/urandom: %s\n",
			strerror(err), strerror(-uerr));
		abort();
	}
}
