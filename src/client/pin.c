/*
 * libkvfs pins: a value held on its server (kvfs_pin_*) so that reads of it
 * see one version, and, when the server is on this host, its pool mapped
 * read-only here (pool_attach) so that kvfs_pin_map answers with where the
 * pinned bytes lie instead of moving them.
 *
 * A pin lives in one session of its server, like an upload; the pool map is
 * held by the conn and by every pin taken on it, so a pin's bytes stay
 * mapped while it is open even after the conn reconnects.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/client_int.h"

#include "common/log.h"

/*
 * A value pinned on c's server in session generation gen. Immutable but for
 * refs and the map: kvfs_pin_close and each kvfs_pin_map lease hold a
 * reference; the last drop unpins (pin_put).
 */
struct kvfs_pin {
	struct conn *c;		    /* (I) */
	uint64_t gen, handle, size; /* (I) */
	struct pool_map *pool;	    /* (I) c->pool when pinned, with a reference */
	_Atomic int refs;
	struct kvfs_lease lease; /* (I) what kvfs_pin_map lends: {.pin = this} */
	/* where the value lies in pool, installed by the first kvfs_pin_map to fetch it */
	pthread_mutex_t map_lock;
	int map_ready; /* (map_lock) segs and nsegs are set */
	/* nsegs, segs: (map_lock) until map_ready, then read-only */
	int nsegs;
	struct pin_seg {
		uint64_t voff; /* value offset of its first byte */
		uint64_t len;
		const uint8_t *addr;
	} * segs;
};

void pool_put(struct pool_map *m)
{
	if (m && atomic_fetch_sub(&m->refs, 1) == 1) {
		munmap((void *)m->base, m->len);
		free(m);
	}
}

/*
 * Is fd the pool wp describes, as a kvfs-server makes it (store_slab.c): a
 * memfd named "kvfs-pool", sealed against shrinking and growing, of exactly
 * wp->len bytes, with wp's dev and ino? Whoever sent wp (without a secret,
 * whoever answered on the server's address) could otherwise have us map a
 * file of its choosing, and truncate it under us (SIGBUS on a read).
 */
static int is_kvfs_pool(int fd, const struct wire_pool *wp)
{
	static const char name[] = "/memfd:kvfs-pool";
	char path[64], link[64];
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_dev != wp->dev ||
	    (uint64_t)st.st_ino != wp->ino || (uint64_t)st.st_size != wp->len)
		return 0;
	int seals = fcntl(fd, F_GET_SEALS); /* only a memfd (or shmem file) has seals */
	if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
		return 0;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	if (n < (ssize_t)sizeof(name) - 1)
		return 0;
	link[n] = 0;
	/* "/memfd:kvfs-pool (deleted)": the name, then nothing or the kernel's suffix */
	return memcmp(link, name, sizeof(name) - 1) == 0 &&
	       (link[sizeof(name) - 1] == 0 || link[sizeof(name) - 1] == ' ');
}

struct pool_map *pool_attach(const struct kvfs_config *cfg, const struct wire_pool *wp,
			     const char *name)
{
	if (!cfg->local_map || !wp->pid || !wp->len || wp->len > SIZE_MAX)
		return NULL;
	int pfd = pidfd_open((pid_t)wp->pid, 0);
	int fd = pfd >= 0 ? pidfd_getfd(pfd, wp->fd, 0) : -1;
	int err = fd < 0 ? errno : 0;
	if (pfd >= 0)
		close(pfd);
	void *p = MAP_FAILED;
	if (fd >= 0 && is_kvfs_pool(fd, wp))
		p = mmap(NULL, (size_t)wp->len, PROT_READ, MAP_SHARED, fd, 0);
	if (fd >= 0)
		close(fd);
	struct pool_map *m = p == MAP_FAILED ? NULL : malloc(sizeof(*m));
	if (!m) {
		if (p != MAP_FAILED)
			munmap(p, (size_t)wp->len);
		log_debug("server %s: reads by RMA (its pool is not mappable here: %s)", name,
			  err ? strerror(err) : "not the pool the server described");
		return NULL;
	}
	atomic_init(&m->refs, 1);
	m->base = p;
	m->len = (size_t)wp->len;
	return m;
}

int kvfs_pin_open(kvfs_t *kv, const char *key, kvfs_pin_t **out, struct kvfs_attr *attr)
{
	struct wire_rep rep;
	if (!kv || !out)
		return -EINVAL;
	struct kvfs_pin *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	int ret = state_open(kv, key, OP_PIN, 0, &p->c, &p->gen, &rep);
	if (!ret)
		ret = sess_enter(p->c, p->gen); /* lost already: so is the pin */
	if (ret) {
		free(p);
		return ret;
	}
	p->pool = p->c->pool; /* stable while we are one of its users */
	if (p->pool)
		atomic_fetch_add(&p->pool->refs, 1);
	conn_leave(p->c);
	p->handle = rep.handle;
	p->size = rep.attr.size;
	atomic_init(&p->refs, 1);
	pthread_mutex_init(&p->map_lock, NULL);
	p->lease.pin = p;
	if (attr)
		attr_from_proto(attr, &rep.attr);
	*out = p;
	return 0;
}

static void pin_req(struct kvfs_pin *p, struct wire_req *q, uint8_t op)
{
	req_init(p->c, q, op);
	q->handle = p->handle;
}

ssize_t kvfs_pin_get_lease(kvfs_pin_t *p, size_t len, uint64_t off, const void **data,
			   kvfs_lease_t **lease)
{
	struct wire_req q;
	if (!lease)
		return -EINVAL;
	*lease = NULL;
	if (!p || !data)
		return -EINVAL;
	int ret = sess_enter(p->c, p->gen);
	if (ret)
		return ret;
	pin_req(p, &q, OP_PIN_GET);
	q.off = off;
	q.len = len;
	ssize_t n = lease_piece(p->c, &q, data, lease, NULL);
	if (n < 0)
		conn_leave(p->c);
	return n; /* a lease keeps the conn entered */
}

ssize_t kvfs_pin_get(kvfs_pin_t *p, void *buf, size_t len, uint64_t off)
{
	struct wire_req q;
	if (!p || (len && !buf))
		return -EINVAL;
	int ret = sess_enter(p->c, p->gen);
	if (ret)
		return ret;
	pin_req(p, &q, OP_PIN_GET);
	/* the pinned version never changes, so no -EAGAIN between pieces */
	ssize_t n = read_range(p->c, &q, buf, len, off, NULL);
	conn_leave(p->c);
	return n;
}

/*
 * Ask the server where the whole pinned value lies in its pool (up to
 * WIRE_MAP_SEGS ranges per message) into a new array: *segs (the caller
 * frees it, on failure too) of *nsegs entries. Touches nothing of p but
 * what is (I). Caller has entered p->c. Returns 0 or -errno.
 */
static int pin_fetch_map(struct kvfs_pin *p, struct pin_seg **segs, int *nsegs)
{
	struct wire_seg seg[WIRE_MAP_SEGS];
	uint64_t done = 0;
	int cap = 0;
	*segs = NULL;
	*nsegs = 0;
	while (done < p->size) {
		struct wire_req q;
		struct wire_rep rep;
		struct creq *r;
		pin_req(p, &q, OP_PIN_GET);
		q.flags = RQ_MAP;
		q.off = done;
		q.len = p->size - done;
		int k = call(p->c, &q, &rep, &r);
		if (k)
			return k;
		k = rep.status;
		if (!k && (rep.n == 0 || rep.n > q.len))
			k = -EPROTO;
		if (!k)
			k = wire_segs_decode(rep.data, rep.dlen, rep.n, p->pool->len, seg,
					     WIRE_MAP_SEGS);
		req_put(p->c, r);
		if (k >= 0 && *nsegs + k > cap) {
			cap = 2 * (*nsegs + k);
			struct pin_seg *n = realloc(*segs, (size_t)cap * sizeof(*n));
			if (n)
				*segs = n;
			else
				k = -ENOMEM;
		}
		if (k < 0)
			return k;
		for (int i = 0; i < k; i++) {
			(*segs)[(*nsegs)++] =
			    (struct pin_seg){done, seg[i].len, p->pool->base + seg[i].off};
			done += seg[i].len;
		}
	}
	return 0;
}

/*
 * Make p's map ready: fetch it with no lock held and install it under
 * map_lock. Threads that find it missing at once each fetch one; the first
 * to finish installs its copy, the others free theirs (a pin's map is the
 * same whoever asks). Caller has entered p->c. Returns 0 or -errno.
 */
static int pin_map_ready(struct kvfs_pin *p)
{
	pthread_mutex_lock(&p->map_lock);
	int ready = p->map_ready;
	pthread_mutex_unlock(&p->map_lock);
	if (ready)
		return 0;
	struct pin_seg *segs;
	int nsegs;
	int ret = pin_fetch_map(p, &segs, &nsegs);
	pthread_mutex_lock(&p->map_lock);
	if (!ret && !p->map_ready) {
		p->segs = segs;
		p->nsegs = nsegs;
		p->map_ready = 1;
		segs = NULL;
	}
	pthread_mutex_unlock(&p->map_lock);
	free(segs);
	return ret;
}

ssize_t kvfs_pin_map(kvfs_pin_t *p, size_t len, uint64_t off, struct iovec *iov, int max, int *niov,
		     kvfs_lease_t **lease)
{
	if (!lease)
		return -EINVAL;
	*lease = NULL;
	if (!p || !iov || max < 1 || !niov)
		return -EINVAL;
	if (!p->pool)
		return -EOPNOTSUPP;
	/*
	 * The bytes would outlive the server (the mapping keeps them), but a
	 * pin of a lost session is gone, as for every other read.
	 */
	int ret = sess_enter(p->c, p->gen);
	if (ret)
		return ret;
	if (!liveness_ok(p->c)) {
		conn_break(p->c, "server closed the session");
		ret = -EIO;
	}
	if (!ret)
		ret = pin_map_ready(p);
	conn_leave(p->c);
	if (ret)
		return ret;
	/* segs, complete and immutable now: the first one holding off, then on */
	int lo = 0, hi = p->nsegs, n = 0;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (p->segs[mid].voff + p->segs[mid].len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	size_t total = 0;
	for (int i = lo; i < p->nsegs && total < len && n < max; i++, n++) {
		uint64_t skip = off + total - p->segs[i].voff;
		uint64_t take = p->segs[i].len - skip;
		if (take > len - total)
			take = len - total;
		iov[n] = (struct iovec){(void *)(p->segs[i].addr + skip), (size_t)take};
		total += (size_t)take;
	}
	atomic_fetch_add(&p->refs, 1);
	*lease = &p->lease;
	*niov = n;
	return (ssize_t)total;
}

void pin_put(struct kvfs_pin *p)
{
	if (atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	if (sess_enter(p->c, p->gen) == 0) {
		struct wire_req q;
		pin_req(p, &q, OP_UNPIN);
		call_simple(p->c, &q, NULL);
		conn_leave(p->c);
	}
	pool_put(p->pool);
	pthread_mutex_destroy(&p->map_lock);
	free(p->segs);
	free(p);
}

void kvfs_pin_close(kvfs_pin_t *p)
{
	if (p)
		pin_put(p);
}
