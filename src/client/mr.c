/*
 * libkvfs caller-registered memory (kvfs_mr_*): a region the server moves
 * value bytes into or out of directly. kvfs_mr_reg only records it; it is
 * registered on a conn's session the first time a call on that conn uses it
 * (mr_desc), and the registration ends with the session (a late RMA of an
 * old session cannot land) or at kvfs_mr_close.
 */
#include <errno.h>
#include <stdlib.h>

#include "client/client_int.h"

int kvfs_mr_reg(kvfs_t *kv, void *buf, size_t len, kvfs_mr_t **out)
{
	if (!buf || !len)
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
	for (int i = 0; i < kv->cfg.n_servers; i++) {
		struct conn *c = &kv->conns[i];
		pthread_mutex_lock(&c->lock);
		if (m->per[i].mr && c->up && !c->broken && c->gen == m->per[i].gen) {
			uint32_t region = m->per[i].region;
			c->users++;
			pthread_mutex_unlock(&c->lock);
			struct wire_req q;
			req_init(c, &q, OP_UNREG);
			q.handle = region;
			call_simple(c, &q, NULL);
			pthread_mutex_lock(&c->lock);
			c->users--;
			if (c->users == 0 && c->broken)
				wake_all(c);
		}
		if (m->per[i].mr)
			fab_mr_close(m->per[i].mr);
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_unlock(&kv->lock);
	free(m);
}

/*
 * Make sure m is registered on c's current session; returns the server's
 * region id. Caller has entered c.
 */
static int mr_on_conn(struct conn *c, struct kvfs_mr *m, uint32_t *region)
{
	struct kvfs *kv = c->kv;
	pthread_mutex_lock(&kv->lock);
	pthread_mutex_lock(&c->lock);
	uint64_t gen = c->gen;
	if (m->per[c->idx].mr && m->per[c->idx].gen == gen) {
		*region = m->per[c->idx].region;
		pthread_mutex_unlock(&c->lock);
		pthread_mutex_unlock(&kv->lock);
		return 0;
	}
	pthread_mutex_unlock(&c->lock);
	struct fab_mr *mr;
	int ret =
	    fab_mr_reg(c->ep, m->buf, m->len, FAB_ACC_REMOTE_WRITE | FAB_ACC_REMOTE_READ, &mr);
	if (ret)
		goto out;
	struct wire_req q;
	struct wire_rep rep;
	req_init(c, &q, OP_REG);
	q.buf = (struct wire_desc){0, fab_mr_remote_base(mr), m->len};
	q.handle = fab_mr_key(mr);
	q.off = 3; /* remote write and read */
	ret = call_simple(c, &q, &rep);
	if (ret) {
		fab_mr_close(mr);
		goto out;
	}
	m->per[c->idx].mr = mr;
	m->per[c->idx].gen = gen;
	m->per[c->idx].region = (uint32_t)rep.handle;
	*region = (uint32_t)rep.handle;
out:
	pthread_mutex_unlock(&kv->lock);
	return ret;
}

int mr_covers(const struct kvfs_mr *m, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	return p >= m->buf && len <= m->len && (size_t)(p - m->buf) <= m->len - len;
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
	for (struct kvfs_mr *m = c->kv->mrs; m; m = m->next) {
		if (m->per[c->idx].mr) {
			fab_mr_close(m->per[c->idx].mr);
			m->per[c->idx].mr = NULL;
			m->per[c->idx].gen = 0;
		}
	}
}
