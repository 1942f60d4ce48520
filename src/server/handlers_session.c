/*
 * handlers_session: the requests on what a session holds besides uploads:
 * pins, registered regions and tracking (TRACK).
 *
 * Pins (PIN, PIN_GET, UNPIN): a session may hold up to MAX_PINS items pinned
 * in the store for long (a reader's open file), each named by a handle that
 * carries its table index, so PIN_GET finds it in O(1). A pinned item keeps
 * its bytes while it is replaced or deleted. Every PIN_GET takes a pin of its
 * own for its transfer (like a GET), so reads of one handle run concurrently
 * and an UNPIN never pulls the bytes from under an RMA in flight.
 *
 * Regions (REG, UNREG): buffers of the client's beyond the two of its setup,
 * in the session's region table that rma_check_desc() checks against.
 */
#include "service_priv.h"

#include <errno.h>
#include <stdlib.h>

static struct pinslot *pin_find(struct session *s, uint64_t handle)
{
	uint64_t i = handle & ((1u << PIN_IDX_BITS) - 1);
	if (!handle || i >= s->pin_cap || s->pins[i].handle != handle)
		return NULL;
	return &s->pins[i];
}

/* Room for one more pin in s's table (grown by doubling up to MAX_PINS). */
static int pin_reserve(struct session *s)
{
	if (s->n_pins >= MAX_PINS)
		return -EMFILE;
	if (s->pin_free != PIN_NONE)
		return 0;
	uint32_t cap = s->pin_cap ? 2 * s->pin_cap : 16;
	struct pinslot *n = realloc(s->pins, sizeof(*n) * cap);
	if (!n)
		return -ENOMEM;
	for (uint32_t i = s->pin_cap; i < cap; i++)
		n[i] = (struct pinslot){.next_free = i + 1 < cap ? i + 1 : PIN_NONE};
	s->pin_free = s->pin_cap;
	s->pins = n;
	s->pin_cap = cap;
	return 0;
}

/*
 * PIN_GET with RQ_MAP: reply with where [off, off+len) of the pinned item
 * lies in the pool (for a client on this host that mapped it), n = the bytes
 * covered. The pin keeps those bytes in place; nothing is copied.
 */
static int pin_map(struct svc_ep *e, struct op *o, struct item *it, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	struct iovec iov[WIRE_MAP_SEGS];
	struct wire_seg seg[WIRE_MAP_SEGS];
	uint64_t cov;
	if (!srv->pool.pid) {
		*why = "pool not offered for mapping";
		return -EOPNOTSUPP;
	}
	pthread_mutex_lock(&srv->store_lock);
	store_item_attr(it, &o->rep.attr);
	size_t k = store_item_iov(it, q->off, q->len, iov, WIRE_MAP_SEGS, &cov);
	const uint8_t *base = store_pool_base(srv->store);
	pthread_mutex_unlock(&srv->store_lock);
	for (size_t i = 0; i < k; i++)
		seg[i] = (struct wire_seg){(uint64_t)((const uint8_t *)iov[i].iov_base - base),
					   iov[i].iov_len};
	int len = wire_segs_encode(rep_data(o), WIRE_MAP_SEGS * WIRE_SEG_SIZE, seg, (int)k);
	atomic_fetch_add(&srv->ctr.hits, 1);
	o->rep.data = rep_data(o);
	o->rep.dlen = (uint32_t)len;
	o->rep.n = cov;
	svc_reply(e, o);
	return 0;
}

/*
 * PIN: pin the key's current item in the session's table; the reply carries
 * its handle and attributes. -ENOENT, -EMFILE (MAX_PINS held), -EBUSY (the
 * item holds STORE_PIN_MAX pins). PIN_GET: read [off, off+len) of a pinned
 * item like a GET (reply attr = the pinned item's), or with RQ_MAP say where
 * it lies (pin_map). UNPIN: release it; a
 * PIN_GET in flight keeps its own pin. Unknown handles: -EBADF.
 */
int handle_pin(struct svc_ep *e, struct op *o, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	struct session *s = o->sess;
	struct pinslot *p;
	struct item *it;
	int ret;

	if (q->op == OP_PIN) {
		ret = pin_reserve(s);
		if (ret)
			return ret;
		svc_track_read(e, o, q->key, q->klen);
		pthread_mutex_lock(&srv->store_lock);
		ret = store_pin(srv->store, q->key, q->klen, now_s(), &it);
		if (!ret)
			store_item_attr(it, &o->rep.attr);
		pthread_mutex_unlock(&srv->store_lock);
		if (ret)
			return ret;
		uint32_t i = s->pin_free;
		p = &s->pins[i];
		s->pin_free = p->next_free;
		s->n_pins++;
		atomic_fetch_add(&srv->ctr.pins, 1);
		p->handle = ++s->pin_seq << PIN_IDX_BITS | i;
		p->it = it;
		o->rep.handle = p->handle;
		svc_reply_status(e, o, 0);
		return 0;
	}
	p = pin_find(s, q->handle);
	if (!p) {
		*why = "unknown pin handle";
		return -EBADF;
	}
	if (q->op == OP_UNPIN) {
		pthread_mutex_lock(&srv->store_lock);
		store_release(srv->store, p->it);
		pthread_mutex_unlock(&srv->store_lock);
		*p = (struct pinslot){.next_free = s->pin_free};
		s->pin_free = (uint32_t)(p - s->pins);
		s->n_pins--;
		atomic_fetch_sub(&srv->ctr.pins, 1);
		svc_reply_status(e, o, 0);
		return 0;
	}
	atomic_fetch_add(&srv->ctr.gets, 1);
	if (q->flags & RQ_MAP)
		return pin_map(e, o, p->it, why);
	pthread_mutex_lock(&srv->store_lock);
	ret = store_item_ref(srv->store, p->it);
	if (!ret)
		store_item_attr(p->it, &o->rep.attr);
	pthread_mutex_unlock(&srv->store_lock);
	if (ret)
		return ret;
	atomic_fetch_add(&srv->ctr.hits, 1);
	return rma_send_item(e, o, p->it, why);
}

int handle_reg(struct svc_ep *e, struct op *o, const char **why)
{
	struct wire_req *q = &o->req;
	struct session *s = o->sess;
	if (q->op == OP_UNREG) {
		if (q->handle < REGION_USER0 || q->handle >= REGION_MAX || !s->access[q->handle]) {
			*why = "unknown region";
			return -EINVAL;
		}
		s->access[q->handle] = 0;
		svc_reply_status(e, o, 0);
		return 0;
	}
	unsigned acc =
	    ((q->off & 1) ? FAB_ACC_REMOTE_WRITE : 0) | ((q->off & 2) ? FAB_ACC_REMOTE_READ : 0);
	if (!acc || q->buf.len == 0) {
		*why = "region without access or length";
		return -EINVAL;
	}
	for (unsigned r = REGION_USER0; r < REGION_MAX; r++) {
		if (!s->access[r]) {
			s->access[r] = acc;
			s->regions[r] = (struct wire_region){q->buf.off, q->buf.len, q->handle};
			o->rep.handle = r;
			svc_reply_status(e, o, 0);
			return 0;
		}
	}
	return -ENOSPC;
}

/*
 * TRACK: from now on the session's reads are tracked and it gets OP_INVAL
 * messages (track.h). Idempotent.
 */
int handle_track(struct svc_ep *e, struct op *o, const char **why)
{
	struct session *s = o->sess;
	(void)why;
	if (!s)
		return -EOPNOTSUPP; /* not reached: not a direct op */
	int ret = track_on(e->srv->track, s->sidx);
	if (!ret)
		s->tracking = 1;
	svc_reply_status(e, o, ret);
	return 0;
}
