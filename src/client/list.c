/*
 * libkvfs listing: one pass per server, merged in byte order. Each server
 * answers a batch of names at a time after a cursor (the last name it sent);
 * kvfs_list keeps one stream per server and hands the smallest head to the
 * callback, dropping the common prefixes that several servers report.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"

#include "common/log.h"

struct lentry {
	char *name;
	size_t nlen;
	int is_prefix;
	struct proto_attr attr;
};

struct lstream {
	struct conn *c;
	struct lentry *ents;
	size_t n, pos;
	int more, done;
	char *cursor;
	size_t clen;
};

static void lstream_clear(struct lstream *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->ents[i].name);
	free(s->ents);
	s->ents = NULL;
	s->n = s->pos = 0;
}

/* Fetch the next batch of one server's listing. */
static int lstream_fill(struct lstream *s, const char *prefix, size_t plen, char delim)
{
	struct conn *c = s->c;
	struct wire_req q;
	struct wire_rep rep;
	struct creq *r;
	lstream_clear(s);
	req_init(c, &q, OP_LIST);
	q.key = (const uint8_t *)prefix;
	q.klen = (uint32_t)plen;
	q.key2 = (const uint8_t *)s->cursor;
	q.k2len = (uint32_t)s->clen;
	q.flags = delim ? RQ_DELIM : 0;
	int ret = call(c, &q, &rep, &r);
	if (ret)
		return ret;
	if (rep.status) {
		ret = rep.status;
		goto out;
	}
	const char *why = "";
	struct wire_entry *we = NULL;
	if (wire_list_count_ok(rep.n, rep.dlen)) {
		we = calloc(rep.n ? rep.n : 1, sizeof(*we));
		s->ents = calloc(rep.n ? rep.n : 1, sizeof(*s->ents));
		if (!we || !s->ents) {
			free(we);
			ret = -ENOMEM;
			goto out;
		}
	}
	ret =
	    wire_list_decode(rep.data, rep.dlen, rep.n, prefix, plen, s->cursor, s->clen, we, &why);
	if (ret) {
		log_warn("server %s: bad listing reply: %s", c->kv->cfg.servers[c->idx].name, why);
		free(we);
		goto out;
	}
	for (uint64_t i = 0; i < rep.n; i++) {
		struct lentry *e = &s->ents[s->n];
		e->nlen = we[i].nlen;
		e->is_prefix = we[i].is_prefix;
		e->attr = we[i].attr;
		e->name = malloc(e->nlen + 1);
		if (!e->name) {
			free(we);
			ret = -ENOMEM;
			goto out;
		}
		memcpy(e->name, we[i].name, e->nlen);
		e->name[e->nlen] = 0;
		s->n++;
	}
	free(we);
	s->more = (rep.flags & RP_MORE) && s->n > 0;
	if (s->n) {
		struct lentry *last = &s->ents[s->n - 1];
		char *cur = realloc(s->cursor, last->nlen + 1);
		if (!cur) {
			ret = -ENOMEM;
			goto out;
		}
		memcpy(cur, last->name, last->nlen + 1);
		s->cursor = cur;
		s->clen = last->nlen;
	}
out:
	req_put(c, r);
	return ret;
}

static int name_cmp(const struct lentry *a, const struct lentry *b)
{
	size_t n = a->nlen < b->nlen ? a->nlen : b->nlen;
	int r = memcmp(a->name, b->name, n);
	return r ? r : (a->nlen > b->nlen) - (a->nlen < b->nlen);
}

ssize_t kvfs_list(kvfs_t *kv, const char *prefix, char delim, kvfs_list_cb cb, void *arg)
{
	if (!kv || (delim && delim != '/'))
		return -EINVAL;
	int ns = kv->cfg.n_servers;
	struct lstream *st = calloc((size_t)ns, sizeof(*st));
	size_t plen = prefix ? strnlen(prefix, KVFS_MAX_KEY + 1) : 0;
	ssize_t count = 0;
	int ret = 0, entered = 0;
	if (!st)
		return -ENOMEM;
	if (plen > KVFS_MAX_KEY) {
		free(st);
		return -ENAMETOOLONG;
	}
	for (int i = 0; i < ns; i++, entered++) {
		st[i].c = &kv->conns[i];
		ret = conn_enter(st[i].c);
		if (ret)
			goto out;
	}
	for (int i = 0; i < ns; i++) {
		ret = lstream_fill(&st[i], prefix ? prefix : "", plen, delim);
		if (ret)
			goto out;
	}
	struct lentry prev = {0};
	char *prev_buf = NULL;
	for (;;) {
		int best = -1;
		for (int i = 0; i < ns; i++) {
			struct lstream *s = &st[i];
			if (s->pos == s->n && s->more) {
				ret = lstream_fill(s, prefix ? prefix : "", plen, delim);
				if (ret)
					goto out_prev;
			}
			if (s->pos == s->n)
				continue;
			if (best < 0 ||
			    name_cmp(&s->ents[s->pos], &st[best].ents[st[best].pos]) < 0)
				best = i;
		}
		if (best < 0)
			break;
		struct lentry *e = &st[best].ents[st[best].pos++];
		/* A common prefix shows up from every server that has keys under it. */
		if (prev_buf && e->is_prefix && prev.is_prefix && name_cmp(e, &prev) == 0)
			continue;
		struct kvfs_entry out = {.name = e->name,
					 .name_len = e->nlen,
					 .is_prefix = e->is_prefix,
					 .server = best};
		attr_from_proto(&out.attr, &e->attr);
		count++;
		if (cb && cb(arg, &out))
			break;
		char *nb = realloc(prev_buf, e->nlen + 1);
		if (!nb) {
			ret = -ENOMEM;
			goto out_prev;
		}
		memcpy(nb, e->name, e->nlen + 1);
		prev_buf = nb;
		prev =
		    (struct lentry){.name = prev_buf, .nlen = e->nlen, .is_prefix = e->is_prefix};
	}
out_prev:
	free(prev_buf);
out:
	for (int i = 0; i < ns; i++) {
		lstream_clear(&st[i]);
		free(st[i].cursor);
		if (i < entered)
			conn_leave(st[i].c);
	}
	free(st);
	return ret ? ret : count;
}
