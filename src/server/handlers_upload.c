/*
 * handlers_upload: upload sessions (UP_OPEN, UP_WRITE, UP_READ, UP_TRUNC,
 * UP_COMMIT, UP_ABORT). A session holds up to MAX_UPS pending uploads, each
 * named by a handle; an upload that an RMA is writing or reading back is busy
 * until it completes (rma.c), and other requests on it get -EBUSY.
 */
#include "service_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_UPS 1024

static void up_remove(struct session *s, struct upslot *u)
{
	free(u->key);
	*u = s->ups[--s->n_ups];
}

/*
 * Copy inline bytes into an upload at off: the pages are reserved under
 * store_lock, the bytes (and the zeroes of a hole before off) written
 * without it. *size gets the upload's size.
 */
static int do_upload_copy(struct srv *srv, struct upload *up, uint64_t off, const uint8_t *data,
			  uint64_t len, uint64_t *size)
{
	uint64_t done = 0;
	int ret = 0;
	while (done < len && !ret) {
		struct iovec iov[8];
		uint64_t cov;
		pthread_mutex_lock(&srv->store_lock);
		long k = store_upload_iov(srv->store, up, off + done, len - done, iov, 8, &cov);
		pthread_mutex_unlock(&srv->store_lock);
		store_upload_fill(srv->store, up);
		if (k < 0)
			ret = (int)k;
		for (long i = 0; i < k; i++) {
			memcpy(iov[i].iov_base, data + done, iov[i].iov_len);
			done += iov[i].iov_len;
		}
	}
	*size = store_upload_size(up);
	return ret;
}

int handle_upload(struct svc_ep *e, struct op *o, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	struct session *s = o->sess;
	int ret = 0;

	if (q->op == OP_UP_OPEN) {
		if (s->n_ups >= MAX_UPS)
			return -EMFILE;
		struct upload *up;
		pthread_mutex_lock(&srv->store_lock);
		ret = store_upload_open(srv->store, q->key, q->klen, !!(q->flags & RQ_KEEP),
					now_s(), &up);
		pthread_mutex_unlock(&srv->store_lock);
		if (ret)
			return ret;
		struct item *src = store_upload_fill(srv->store, up); /* KEEP: the old value */
		if (src) {
			pthread_mutex_lock(&srv->store_lock);
			store_release(srv->store, src);
			pthread_mutex_unlock(&srv->store_lock);
		}
		if (s->n_ups % 16 == 0) {
			struct upslot *n = realloc(s->ups, sizeof(*n) * (size_t)(s->n_ups + 16));
			if (!n) {
				pthread_mutex_lock(&srv->store_lock);
				store_upload_abort(srv->store, up);
				pthread_mutex_unlock(&srv->store_lock);
				return -ENOMEM;
			}
			s->ups = n;
		}
		uint8_t *key = malloc(q->klen);
		if (!key) {
			pthread_mutex_lock(&srv->store_lock);
			store_upload_abort(srv->store, up);
			pthread_mutex_unlock(&srv->store_lock);
			return -ENOMEM;
		}
		memcpy(key, q->key, q->klen);
		s->ups[s->n_ups++] =
		    (struct upslot){.id = s->next_up, .up = up, .key = key, .klen = q->klen};
		o->rep.handle = s->next_up++;
		o->rep.attr.size = store_upload_size(up);
		svc_reply_status(e, o, 0);
		return 0;
	}

	struct upslot *u = up_find(s, q->handle);
	if (!u) {
		*why = "unknown upload handle";
		return -EBADF;
	}
	if (u->busy)
		return -EBUSY;
	switch (q->op) {
	case OP_UP_READ:
		return rma_send_upload(e, o, u, why);
	case OP_UP_WRITE:
		if (q->len > srv->limits.max_value || q->off > srv->limits.max_value - q->len)
			return -EFBIG;
		if (q->buf.region == REGION_INLINE) {
			if (q->dlen != q->len) {
				*why = "inline data length differs from the write length";
				return -EINVAL;
			}
			ret =
			    do_upload_copy(srv, u->up, q->off, q->data, q->dlen, &o->rep.attr.size);
			if (!ret)
				atomic_fetch_add(&e->bytes_in, q->dlen);
			o->rep.n = ret ? 0 : q->dlen;
			break;
		}
		uint64_t raddr, rkey;
		ret = rma_check_desc(s, &q->buf, q->len, FAB_ACC_REMOTE_READ, &raddr, &rkey, why);
		if (ret)
			return ret;
		rma_claim_upload(o, u, q->len);
		if (q->len == 0) {
			o->err = 0;
			o->writing = 0; /* not left over from this op's previous request */
			rma_finish(e, o);
			return 0;
		}
		rma_start(e, o, 0, raddr, rkey);
		return 0;
	case OP_UP_TRUNC:
		if (q->len > srv->limits.max_value)
			return -EFBIG;
		pthread_mutex_lock(&srv->store_lock);
		ret = store_upload_truncate(srv->store, u->up, q->len);
		pthread_mutex_unlock(&srv->store_lock);
		store_upload_fill(srv->store, u->up); /* growing: the zeroes */
		o->rep.attr.size = store_upload_size(u->up);
		break;
	case OP_UP_COMMIT:
		pthread_mutex_lock(&srv->store_lock);
		ret = store_upload_commit(srv->store, u->up, &q->sa, now_s(), &o->rep.attr);
		pthread_mutex_unlock(&srv->store_lock);
		if (!ret)
			svc_changed(e, o, u->key, u->klen, WIRE_INVAL_CHANGED, 1);
		/* commit frees the upload whether or not it succeeds */
		up_remove(s, u);
		atomic_fetch_add(&srv->ctr.puts, 1);
		break;
	case OP_UP_ABORT:
		pthread_mutex_lock(&srv->store_lock);
		store_upload_abort(srv->store, u->up);
		pthread_mutex_unlock(&srv->store_lock);
		up_remove(s, u);
		break;
	}
	svc_reply_status(e, o, ret);
	return 0;
}
