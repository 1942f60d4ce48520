/*
 * handlers_kv: the requests on one key's value: GET, PUT (inline, or RMA-read
 * through an internal upload that rma_finish() commits), DELETE, STAT,
 * SETATTR and RENAME. Each takes srv.store_lock only around its store call.
 * Reads of a tracking session are recorded before the store is read, and
 * changes reported after it has them (track.h), so no change between the
 * two goes untold.
 */
#include "service_priv.h"

#include <errno.h>

int handle_get(struct svc_ep *e, struct op *o, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	struct item *it;
	atomic_fetch_add(&srv->ctr.gets, 1);
	svc_track_read(e, o, q->key, q->klen);
	pthread_mutex_lock(&srv->store_lock);
	int ret = store_get(srv->store, q->key, q->klen, now_s(), &it);
	if (!ret)
		store_item_attr(it, &o->rep.attr);
	pthread_mutex_unlock(&srv->store_lock);
	if (ret) {
		atomic_fetch_add(&srv->ctr.misses, 1);
		return ret;
	}
	atomic_fetch_add(&srv->ctr.hits, 1);
	return rma_send_item(e, o, it, why);
}

int handle_put(struct svc_ep *e, struct op *o, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	int ret;
	atomic_fetch_add(&srv->ctr.puts, 1);
	if (q->len > srv->limits.max_value)
		return -EFBIG;
	if (q->buf.region == REGION_INLINE) {
		if (q->dlen != q->len) {
			*why = "inline data length differs from the value size";
			return -EINVAL;
		}
		pthread_mutex_lock(&srv->store_lock);
		ret =
		    store_put(srv->store, q->key, q->klen, q->data, q->dlen, &q->sa, now_s(), NULL);
		if (!ret)
			ret = store_stat(srv->store, q->key, q->klen, now_s(), &o->rep.attr);
		pthread_mutex_unlock(&srv->store_lock);
		if (ret)
			return ret;
		svc_changed(e, o, q->key, q->klen, WIRE_INVAL_CHANGED, 1);
		atomic_fetch_add(&e->bytes_in, q->len);
		svc_reply_status(e, o, 0);
		return 0;
	}
	uint64_t raddr, rkey;
	ret = rma_check_desc(o->sess, &q->buf, q->len, FAB_ACC_REMOTE_READ, &raddr, &rkey, why);
	if (ret)
		return ret;
	pthread_mutex_lock(&srv->store_lock);
	ret = store_upload_open(srv->store, q->key, q->klen, 0, now_s(), &o->up);
	pthread_mutex_unlock(&srv->store_lock);
	if (ret)
		return ret;
	o->up_id = 0;
	o->src_off = 0;
	o->total = q->len;
	if (q->len == 0) {
		o->err = 0;
		o->writing = 0;
		rma_finish(e, o);
		return 0;
	}
	rma_start(e, o, 0, raddr, rkey);
	return 0;
}

int handle_delete(struct svc_ep *e, struct op *o, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	(void)why;
	atomic_fetch_add(&srv->ctr.deletes, 1);
	pthread_mutex_lock(&srv->store_lock);
	int ret = store_delete(srv->store, q->key, q->klen);
	pthread_mutex_unlock(&srv->store_lock);
	if (!ret)
		svc_changed(e, o, q->key, q->klen, WIRE_INVAL_GONE, 1);
	svc_reply_status(e, o, ret);
	return 0;
}

int handle_stat(struct svc_ep *e, struct op *o, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	(void)why;
	svc_track_read(e, o, q->key, q->klen);
	pthread_mutex_lock(&srv->store_lock);
	int ret = store_stat(srv->store, q->key, q->klen, now_s(), &o->rep.attr);
	pthread_mutex_unlock(&srv->store_lock);
	svc_reply_status(e, o, ret);
	return 0;
}

int handle_setattr(struct svc_ep *e, struct op *o, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	(void)why;
	pthread_mutex_lock(&srv->store_lock);
	int ret = store_setattr(srv->store, q->key, q->klen, &q->sa, now_s(), &o->rep.attr);
	pthread_mutex_unlock(&srv->store_lock);
	if (!ret)
		svc_changed(e, o, q->key, q->klen, WIRE_INVAL_CHANGED, 0);
	svc_reply_status(e, o, ret);
	return 0;
}

int handle_rename(struct svc_ep *e, struct op *o, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	(void)why;
	pthread_mutex_lock(&srv->store_lock);
	int ret = store_rename(srv->store, q->key, q->klen, q->key2, q->k2len,
			       !!(q->flags & RQ_NOREPLACE));
	pthread_mutex_unlock(&srv->store_lock);
	if (!ret) {
		svc_changed(e, o, q->key, q->klen, WIRE_INVAL_GONE, 1);
		svc_changed(e, o, q->key2, q->k2len, WIRE_INVAL_CHANGED, 1);
	}
	svc_reply_status(e, o, ret);
	return 0;
}
