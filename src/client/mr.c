/*
 * libkvfs caller-registered memory (kvfs_mr_*): a region the server moves
 * value bytes into or out of directly. kvfs_mr_reg only records it; it is
 * registered on a conn's session the first time a call on that conn uses it
 * (mr_desc), and the registration ends with the session (a late RMA of an
 * old session cannot land) or at kvfs_mr_close.
 *
 * Each registration is state of its conn (m->per[i], on conns[i].regs),
 * guarded by that conn's lock: registering on one server, or a teardown,
 * touches no other conn and no kvfs-wide lock, and no lock is held during
 * the OP_REG and OP_UNREG round trips. kv->lock guards only the list of
 * regions kvfs_close frees.
 */
#include <errno.h>
#include <stdlib.h>

#include "client/client_int.h"

/* A caller-registered region's registration on one conn's session; (L) of that conn. */
struct mr_reg {
	struct fab_mr *mr;   /* (L) NULL: not registered on the current session */
	uint32_t region;     /* (L) server's id for it */
	int busy;	     /* (L) a thread registers it, c->lock released */
	struct mr_reg *next; /* (L) on conn->regs while mr is set */
};

/* A caller-registered region, registered lazily on each conn it is used on. */
struct kvfs_mr {
	struct kvfs *kv;		     /* (I) */
	uint8_t *buf;			     /* (I) */
	size_t len;			     /* (I) */
	struct kvfs_mr *next;		     /* kv->lock */
	struct mr_reg per[KVFS_MAX_SERVERS]; /* per[i]: conns[i].lock */
};

int kvfs_mr_reg(kvfs_t *kv, void *buf, size_t len, kvfs_mr_t **out)
{
	if (!kv || !buf || !len || !out)
		return -EINVAL;
	struct kvfs_mr *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->kv = kv;
	m->buf = buf;
	m->len = len;
	pthread_mutex_lock(&kv->lock);
	m->next = kv->mrs;
	kv->mrs = m;
	pthread_mutex_unlock(&kv->lock);
	*out = m;
	return 0;
}

/*
 * Take reg (m's registration on c) off c's list of registrations. Caller
 * holds c->lock.
 */
static void do_reg_unlink(struct conn *c, struct mr_reg *reg)
{
	for (struct mr_reg **p = &c->regs; *p; p = &(*p)->next) {
		if (*p == reg) {
			*p = reg->next;
			break;
		}
	}
	reg->next = NULL;
}

/* Caller holds c->lock; returns with it held, reg not busy. */
static void do_wait_reg(struct conn *c, struct mr_reg *reg)
{
	while (reg->busy) {
		c->sleepers++;
		pthread_cond_wait(&c->cond, &c->lock);
		c->sleepers--;
	}
}

/*
 * End m's registration on c: OP_UNREG when the session is healthy (with
 * c->lock released for the round trip), then the local one.
 */
static void mr_conn_close(struct conn *c, struct kvfs_mr *m)
{
	struct mr_reg *reg = &m->per[c->idx];
	pthread_mutex_lock(&c->lock);
	do_wait_reg(c, reg);
	struct fab_mr *mr = reg->mr;
	uint32_t region = reg->region;
	reg->mr = NULL;
	if (mr)
		do_reg_unlink(c, reg);
	/* Entering holds off the teardown while we use the endpoint. */
	if (!mr || do_sess_enter(c, c->gen)) {
		fab_mr_close(mr); /* a broken session's endpoint is still open */
		pthread_mutex_unlock(&c->lock);
		return;
	}
	pthread_mutex_unlock(&c->lock);
	struct wire_req q;
	req_init(c, &q, OP_UNREG);
	q.handle = region;
	call_simple(c, &q, NULL);
	fab_mr_close(mr);
	conn_leave(c);
}

void kvfs_mr_close(kvfs_mr_t *m)
{
	if (!m)
		return;
	struct kvfs *kv = m->kv;
	pthread_mutex_lock(&kv->lock);
	for (struct kvfs_mr **p = &kv->mrs; *p; p = &(*p)->next) {
		if (*p == m) {
			*p = m->next;
			break;
		}
	}
	pthread_mutex_unlock(&kv->lock);
	for (int i = 0; i < kv->cfg.n_servers; i++)
		mr_conn_close(&kv->conns[i], m);
	free(m);
}

/*
 * Make sure m is registered on c's current session; returns the server's
 * region id. Caller has entered c, so the session stays while we register;
 * c->lock is released for the round trip, other threads that want m on c
 * meanwhile wait for it (reg->busy).
 */
static int mr_on_conn(struct conn *c, struct kvfs_mr *m, uint32_t *region)
{
	struct mr_reg *reg = &m->per[c->idx];
	pthread_mutex_lock(&c->lock);
	do_wait_reg(c, reg);
	if (reg->mr) {
		*region = reg->region;
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	reg->busy = 1;
	pthread_mutex_unlock(&c->lock);
	struct fab_mr *mr;
	struct wire_rep rep;
	int ret =
	    fab_mr_reg(c->ep, m->buf, m->len, FAB_ACC_REMOTE_WRITE | FAB_ACC_REMOTE_READ, &mr);
	if (!ret) {
		struct wire_req q;
		req_init(c, &q, OP_REG);
		q.buf = (struct wire_desc){0, fab_mr_remote_base(mr), m->len};
		q.handle = fab_mr_key(mr);
		q.off = 3; /* remote write and read */
		ret = call_simple(c, &q, &rep);
		if (ret == -ENOSPC)
			ret = -EMFILE; /* the session's region table is full, as for pins */
		if (ret)
			fab_mr_close(mr);
	}
	pthread_mutex_lock(&c->lock);
	if (!ret) {
		reg->mr = mr;
		reg->region = (uint32_t)rep.handle;
		reg->next = c->regs;
		c->regs = reg;
		*region = reg->region;
	}
	reg->busy = 0;
	wake_all(c);
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/* Does [buf, buf+len) lie inside m? */
static int mr_covers(const struct kvfs_mr *m, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	return p >= m->buf && len <= m->len && (size_t)(p - m->buf) <= m->len - len;
}

int mr_check(const struct kvfs *kv, const struct kvfs_mr *m, const void *buf, size_t len)
{
	if (!m || m->kv != kv || (len && !buf))
		return -EINVAL;
	return !len || mr_covers(m, buf, len) ? 0 : -EFAULT;
}

int mr_desc(struct conn *c, kvfs_mr_t *m, const void *buf, size_t len, struct wire_desc *d)
{
	const uint8_t *p = buf;
	if (!mr_covers(m, buf, len))
		return -EFAULT;
	uint32_t region;
	int ret = mr_on_conn(c, m, &region);
	if (ret)
		return ret;
	*d = (struct wire_desc){region, (uint64_t)(p - m->buf), len};
	return 0;
}

void do_mr_conn_close(struct conn *c)
{
	for (struct mr_reg *reg = c->regs, *next; reg; reg = next) {
		next = reg->next;
		fab_mr_close(reg->mr);
		reg->mr = NULL;
		reg->next = NULL;
	}
	c->regs = NULL;
}

void mr_free_all(struct kvfs *kv)
{
	while (kv->mrs) {
		struct kvfs_mr *m = kv->mrs;
		kv->mrs = m->next;
		free(m);
	}
}
