/*
 * rma: value bytes between the pool and a client's registered buffers. An op
 * moving bytes keeps up to WINDOW RMA pieces in flight; each piece has its
 * own libfabric context. An item being read is pinned (store_get) until its
 * last piece completes; an upload being written or read back (UP_READ) is
 * marked busy until then. Buffer descriptors from the wire are checked
 * against the session's regions before any RMA names them.
 *
 * The reads (GET, PIN_GET, UP_READ) send their bytes through rma_send_item()
 * and rma_send_upload(): inline in the reply when the request asks for that
 * (copied while the item is pinned, or under store_lock for an upload), else
 * by RMA writes into the client's buffer.
 */
#include "service_priv.h"

#include <errno.h>
#include <string.h>

#define PIECE_MAX (64u << 20)

static struct opctx *free_piece(struct op *o)
{
	for (int i = 0; i < WINDOW; i++)
		if (!o->rma[i].busy)
			return &o->rma[i];
	return NULL;
}

/* Post as many pieces as the window and the provider take. */
void rma_pump(struct svc_ep *e, struct op *o)
{
	struct srv *srv = e->srv;
	size_t iov_max = fab_iov_limit(e->ep);
	if (iov_max > 16)
		iov_max = 16;
	size_t piece_max = fab_max_msg_size(e->ep);
	if (piece_max > PIECE_MAX)
		piece_max = PIECE_MAX;

	while (!o->err && o->next < o->total && !o->sess->dead) {
		struct opctx *pc = free_piece(o);
		if (!pc)
			return;
		struct iovec iov[16];
		void *desc[16];
		uint64_t want = o->total - o->next, covered = 0;
		long n;
		if (want > piece_max)
			want = piece_max;
		if (o->writing && o->item) {
			n = (long)store_item_iov(o->item, o->src_off + o->next, want, iov, iov_max,
						 &covered);
		} else if (o->writing) {
			pthread_mutex_lock(&srv->store_lock);
			n = (long)store_upload_read_iov(srv->store, o->up, o->src_off + o->next,
							want, iov, iov_max, &covered);
			pthread_mutex_unlock(&srv->store_lock);
		} else {
			pthread_mutex_lock(&srv->store_lock);
			n = store_upload_iov(srv->store, o->up, o->src_off + o->next, want, iov,
					     iov_max, &covered);
			pthread_mutex_unlock(&srv->store_lock);
			store_upload_fill(srv->store, o->up); /* a hole before it: zeroes */
		}
		if (n <= 0 || covered == 0) {
			o->err = n < 0 ? (int)n : -EIO;
			break;
		}
		for (long i = 0; i < n; i++)
			desc[i] = fab_mr_desc(e->pool_mr);
		int ret = o->writing ? fab_post_write(e->ep, iov, desc, (size_t)n, o->sess->addr,
						      o->raddr + o->next, o->rkey, &pc->fc)
				     : fab_post_read(e->ep, iov, desc, (size_t)n, o->sess->addr,
						     o->raddr + o->next, o->rkey, &pc->fc);
		if (ret == -EAGAIN) {
			svc_pending_push(e, o);
			return;
		}
		if (ret) {
			atomic_fetch_add(&e->fabric_errors, 1);
			o->err = -EIO;
			break;
		}
		pc->busy = 1;
		pc->bytes = covered;
		o->next += covered;
		o->outstanding++;
	}
	if (o->sess->dead && !o->err)
		o->err = -ECONNRESET;
	if (o->outstanding == 0)
		rma_finish(e, o);
}

void rma_start(struct svc_ep *e, struct op *o, int writing, uint64_t raddr, uint64_t rkey)
{
	o->stage = STAGE_RMA;
	o->writing = writing;
	o->raddr = raddr;
	o->rkey = rkey;
	o->next = 0;
	o->outstanding = 0;
	o->err = 0;
	rma_pump(e, o);
}

/*
 * An UP_WRITE or UP_READ of total bytes at the request's offset starts: the
 * upload's slot is busy until up_done().
 */
void rma_claim_upload(struct op *o, struct upslot *u, uint64_t total)
{
	u->busy = 1;
	o->up_id = u->id;
	o->up = u->up;
	o->src_off = o->req.off;
	o->total = total;
}

/* An UP_WRITE or UP_READ is over: the upload's slot is free again. */
static void up_done(struct op *o)
{
	struct upslot *u = up_find(o->sess, o->up_id);
	if (u)
		u->busy = 0;
	o->rep.attr.size = store_upload_size(o->up);
	o->up_id = 0;
	o->up = NULL;
}

void rma_finish(struct svc_ep *e, struct op *o)
{
	struct srv *srv = e->srv;
	int err = o->err;
	o->rep.n = err ? 0 : o->total;
	if (o->writing) {
		if (o->item) {
			pthread_mutex_lock(&srv->store_lock);
			store_release(srv->store, o->item);
			pthread_mutex_unlock(&srv->store_lock);
			o->item = NULL;
		} else {
			up_done(o);
		}
		if (!err)
			atomic_fetch_add(&e->bytes_out, o->total);
	} else if (!o->up_id) {
		/* Whole-value PUT through an internal upload: publish or drop. */
		pthread_mutex_lock(&srv->store_lock);
		if (!err)
			err = store_upload_commit(srv->store, o->up, &o->req.sa, now_s(),
						  &o->rep.attr);
		else
			store_upload_abort(srv->store, o->up);
		pthread_mutex_unlock(&srv->store_lock);
		o->up = NULL;
		if (!err)
			svc_changed(e, o, o->req.key, o->req.klen, WIRE_INVAL_CHANGED, 1);
		if (!err)
			atomic_fetch_add(&e->bytes_in, o->total);
	} else {
		up_done(o);
		if (!err)
			atomic_fetch_add(&e->bytes_in, o->total);
	}
	if (err == -ECONNRESET || err == -ECANCELED)
		err = -EIO;
	svc_reply_status(e, o, err);
}

/*
 * Check a buffer descriptor from the wire against the session's registered
 * regions. Returns 0 with the remote address and key, or -errno.
 */
int rma_check_desc(struct session *s, const struct wire_desc *d, uint64_t need, unsigned access,
		   uint64_t *raddr, uint64_t *rkey, const char **why)
{
	if (d->region == REGION_INLINE || d->region >= REGION_MAX || !s->access[d->region]) {
		*why = "unknown buffer region";
		return -EINVAL;
	}
	if (!(s->access[d->region] & access)) {
		*why = "region not registered for that access";
		return -EACCES;
	}
	const struct wire_region *g = &s->regions[d->region];
	if (d->len < need || d->off > g->len || d->len > g->len - d->off) {
		*why = "buffer descriptor outside the registered region";
		return -EFAULT;
	}
	*raddr = g->base + d->off;
	*rkey = g->key;
	return 0;
}

/*
 * How much of [off, off+len) of a size-byte value a read sends, and whether
 * inline in the reply (region 0, or nothing to send): then at most the
 * inline threshold.
 */
static uint64_t read_span(const struct svc_ep *e, const struct op *o, uint64_t size, int *inl)
{
	const struct wire_req *q = &o->req;
	uint64_t n = q->off >= size ? 0 : size - q->off;
	if (n > q->len)
		n = q->len;
	*inl = q->buf.region == REGION_INLINE || n == 0;
	if (*inl && n > e->srv->limits.inline_threshold)
		n = e->srv->limits.inline_threshold;
	return n;
}

static void copy_iov(uint8_t *dst, const struct iovec *iov, size_t k)
{
	for (size_t i = 0; i < k; i++) {
		memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
}

/* Reply with the n bytes a read copied to rep_data(o). */
static void reply_inline(struct svc_ep *e, struct op *o, uint64_t n)
{
	atomic_fetch_add(&e->bytes_out, n);
	o->rep.data = rep_data(o);
	o->rep.dlen = (uint32_t)n;
	o->rep.n = n;
	svc_reply(e, o);
}

/*
 * Send the request's range [off, off+len) of the pinned item it (GET,
 * PIN_GET; o->rep.attr already holds its attributes): inline in the reply
 * (region 0, or nothing to send), at most the inline threshold, else
 * RMA-written into the request's buffer descriptor. Takes over the caller's
 * pin on it: released once the bytes are sent, or at once on an error.
 * Returns 0 (replied) or -errno.
 */
int rma_send_item(struct svc_ep *e, struct op *o, struct item *it, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	int inl;
	uint64_t n = read_span(e, o, o->rep.attr.size, &inl);
	if (inl) {
		uint64_t done = 0;
		while (done < n) {
			struct iovec iov[8];
			uint64_t cov;
			size_t k = store_item_iov(it, q->off + done, n - done, iov, 8, &cov);
			copy_iov(rep_data(o) + done, iov, k);
			done += cov;
		}
		pthread_mutex_lock(&srv->store_lock);
		store_release(srv->store, it);
		pthread_mutex_unlock(&srv->store_lock);
		reply_inline(e, o, n);
		return 0;
	}
	uint64_t raddr, rkey;
	int ret = rma_check_desc(o->sess, &q->buf, n, FAB_ACC_REMOTE_WRITE, &raddr, &rkey, why);
	if (ret) {
		pthread_mutex_lock(&srv->store_lock);
		store_release(srv->store, it);
		pthread_mutex_unlock(&srv->store_lock);
		return ret;
	}
	o->item = it;
	o->src_off = q->off;
	o->total = n;
	rma_start(e, o, 1, raddr, rkey);
	return 0;
}

/*
 * UP_READ: read back [off, off+len) of a pending upload, like a GET: inline
 * in the reply (region 0, at most the inline threshold), else RMA-written
 * into the client's region with the slot busy until it completes. The reply's
 * attr.size is the upload's size. Returns 0 (replied) or -errno.
 */
int rma_send_upload(struct svc_ep *e, struct op *o, struct upslot *u, const char **why)
{
	struct srv *srv = e->srv;
	struct wire_req *q = &o->req;
	pthread_mutex_lock(&srv->store_lock);
	uint64_t size = store_upload_size(u->up);
	pthread_mutex_unlock(&srv->store_lock);
	o->rep.attr.size = size;
	int inl;
	uint64_t n = read_span(e, o, size, &inl);
	if (inl) {
		uint64_t done = 0;
		pthread_mutex_lock(&srv->store_lock);
		while (done < n) {
			struct iovec iov[8];
			uint64_t cov;
			size_t k = store_upload_read_iov(srv->store, u->up, q->off + done, n - done,
							 iov, 8, &cov);
			copy_iov(rep_data(o) + done, iov, k);
			done += cov;
		}
		pthread_mutex_unlock(&srv->store_lock);
		reply_inline(e, o, n);
		return 0;
	}
	uint64_t raddr, rkey;
	int ret = rma_check_desc(o->sess, &q->buf, n, FAB_ACC_REMOTE_WRITE, &raddr, &rkey, why);
	if (ret)
		return ret;
	rma_claim_upload(o, u, n);
	rma_start(e, o, 1, raddr, rkey);
	return 0;
}
