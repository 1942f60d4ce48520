/*
 * Unit tests of the server's item store: the directory index and listing
 * (src/server/store_dir.c), against a brute-force listing.
 */
#include "store_fixture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reference listing over a sorted key array. */
static void ref_list(char **keys, size_t nk, const char *prefix, char delim, const char *cursor,
		     struct names *out)
{
	size_t pl = strlen(prefix);
	char last[PROTO_MAX_KEY + 1] = "";
	int have_last = 0;

	for (size_t i = 0; i < nk; i++) {
		const char *k = keys[i];

		if (strncmp(k, prefix, pl))
			continue;
		const char *sl = delim ? strchr(k + pl, delim) : NULL;
		char name[PROTO_MAX_KEY + 1];
		int isp = sl != NULL;

		if (sl) {
			memcpy(name, k, (size_t)(sl - k) + 1);
			name[sl - k + 1] = 0;
		} else {
			strcpy(name, k);
		}
		if (have_last && strcmp(name, last) == 0)
			continue;
		strcpy(last, name);
		have_last = 1;
		if (cursor && strcmp(name, cursor) <= 0)
			continue;
		struct proto_attr a = {0};

		collect(out, name, strlen(name), isp ? NULL : &a);
	}
}

static void same(struct names *a, struct names *b, const char *what)
{
	cr_assert_eq(a->n, b->n, "%s: %zu vs %zu entries", what, a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		cr_assert_str_eq(a->v[i], b->v[i], "%s: entry %zu", what, i);
		cr_assert_eq(a->pfx[i], b->pfx[i], "%s: entry %zu (%s)", what, i, a->v[i]);
	}
}

static void list_all(struct store *s, const char *prefix, char delim, const char *cursor,
		     struct names *out)
{
	long n = store_list(s, prefix, strlen(prefix), delim, cursor, cursor ? strlen(cursor) : 0,
			    NOW, collect, out);

	cr_assert_eq(n, (long)out->n);
}

/* Page through with a small limit, cursor = last delivered name. */
static void list_paged(struct store *s, const char *prefix, char delim, size_t page,
		       struct names *out)
{
	char cur[PROTO_MAX_KEY + 1] = "";

	for (;;) {
		struct names p = {.limit = page};
		long n = store_list(s, prefix, strlen(prefix), delim, cur, strlen(cur), NOW,
				    collect, &p);

		cr_assert_eq(n, (long)p.n);
		cr_assert_leq(p.n, page);
		for (size_t i = 0; i < p.n; i++)
			collect(out, p.v[i], strlen(p.v[i]),
				p.pfx[i] ? NULL : &(struct proto_attr){0});
		if (p.n)
			strcpy(cur, p.v[p.n - 1]);
		size_t got = p.n;

		names_free(&p);
		if (got < page)
			break;
	}
}

Test(store, list_basic)
{
	struct store *s = open_store(32 * MiB, MiB, 0);
	const char *keys[] = {"a",     "d/",	 "d/x",	    "d/y/z",  "d/y/",	   "dir/abc",
			      "dir/b", "dir/ab", "dir/ab/", "a//b",   "a//",	   "a/",
			      "z/q/r", "e/f/g/", "dir/abd", "dir/ac", "dir/ab/c/d"};
	size_t nk = sizeof(keys) / sizeof(keys[0]);
	struct names got = {0};

	for (size_t i = 0; i < nk; i++)
		cr_assert_eq(store_put(s, keys[i], strlen(keys[i]), "v", 1, NULL, NOW, NULL), 0);

	list_all(s, "", '/', NULL, &got);
	const char *top[] = {"a", "a/", "d/", "dir/", "e/", "z/"};

	cr_assert_eq(got.n, 6);
	for (size_t i = 0; i < 6; i++)
		cr_assert_str_eq(got.v[i], top[i]);
	cr_assert_eq(got.pfx[0], 0);
	cr_assert_eq(got.pfx[1], 1);
	names_free(&got);

	/* a marker key "d/" is listed as a key inside d/ */
	list_all(s, "d/", '/', NULL, &got);
	cr_assert_eq(got.n, 3);
	cr_assert_str_eq(got.v[0], "d/");
	cr_assert_eq(got.pfx[0], 0);
	cr_assert_str_eq(got.v[1], "d/x");
	cr_assert_str_eq(got.v[2], "d/y/");
	cr_assert_eq(got.pfx[2], 1);
	names_free(&got);

	/* prefix in the middle of a name */
	list_all(s, "dir/ab", '/', NULL, &got);
	cr_assert_eq(got.n, 4);
	cr_assert_str_eq(got.v[0], "dir/ab");
	cr_assert_str_eq(got.v[1], "dir/ab/");
	cr_assert_eq(got.pfx[1], 1);
	cr_assert_str_eq(got.v[2], "dir/abc");
	cr_assert_str_eq(got.v[3], "dir/abd");
	names_free(&got);

	/* empty components */
	list_all(s, "a/", '/', NULL, &got);
	cr_assert_eq(got.n, 2);
	cr_assert_str_eq(got.v[0], "a/");
	cr_assert_str_eq(got.v[1], "a//");
	cr_assert_eq(got.pfx[1], 1);
	names_free(&got);
	list_all(s, "a//", 0, NULL, &got);
	cr_assert_eq(got.n, 2);
	cr_assert_str_eq(got.v[0], "a//");
	cr_assert_str_eq(got.v[1], "a//b");
	names_free(&got);

	/* delim 0: every key in byte order */
	char *sorted[32];

	for (size_t i = 0; i < nk; i++)
		sorted[i] = (char *)keys[i];
	qsort(sorted, nk, sizeof(sorted[0]), cmpstr);
	list_all(s, "", 0, NULL, &got);
	cr_assert_eq(got.n, nk);
	for (size_t i = 0; i < nk; i++)
		cr_assert_str_eq(got.v[i], sorted[i]);
	names_free(&got);

	/* cursor inside a subtree, delim 0 */
	list_all(s, "dir/", 0, "dir/ab/", &got);
	cr_assert_eq(got.n, 5);
	cr_assert_str_eq(got.v[0], "dir/ab/c/d");
	cr_assert_str_eq(got.v[1], "dir/abc");
	names_free(&got);
	/* cursor = a common prefix, delim '/': skips its subtree */
	list_all(s, "dir/", '/', "dir/ab/", &got);
	cr_assert_eq(got.n, 4);
	cr_assert_str_eq(got.v[0], "dir/abc");
	names_free(&got);

	cr_assert_eq(store_list(s, "", 0, '-', NULL, 0, NOW, collect, &got), -EINVAL);
	cr_assert_eq(store_list(s, "nothere/", 8, '/', NULL, 0, NOW, collect, &got), 0);

	/* has_prefix */
	cr_assert(store_has_prefix(s, "d/", 2, NOW));
	cr_assert(store_has_prefix(s, "dir/ab/c/", 9, NOW));
	cr_assert(store_has_prefix(s, "di", 2, NOW));
	cr_assert(store_has_prefix(s, "", 0, NOW));
	cr_assert(!store_has_prefix(s, "dir/x", 5, NOW));
	cr_assert(!store_has_prefix(s, "q/", 2, NOW));
	cr_assert(!store_has_prefix(s, "dir/ab/c/d/", 11, NOW));
	cr_assert_eq(store_delete(s, "dir/ab/c/d", 10), 0);
	cr_assert(!store_has_prefix(s, "dir/ab/c/", 9, NOW));
	cr_assert(store_has_prefix(s, "dir/ab/", 7, NOW));
	cr_assert_eq(store_delete(s, "dir/ab/", 7), 0);
	cr_assert(!store_has_prefix(s, "dir/ab/", 7, NOW));
	list_all(s, "dir/", '/', NULL, &got);
	cr_assert_eq(got.n, 5);
	for (size_t i = 0; i < got.n; i++)
		cr_assert_eq(got.pfx[i], 0);
	names_free(&got);
	store_close(s);
}

Test(store, list_paging_10000)
{
	struct store *s = open_store(32 * MiB, MiB, 0);
	enum { N = 10000 };
	char **keys = malloc(N * sizeof(*keys));
	struct names full = {0}, paged = {0}, ref = {0};

	for (int i = 0; i < N; i++) {
		char k[64];
		uint64_t r = rnd();

		snprintf(k, sizeof(k), "p/%c/%08llx", 'a' + (int)(r % 3),
			 (unsigned long long)(r >> 20) & 0xffffffffull);
		keys[i] = strdup(k);
		cr_assert_eq(store_put(s, k, strlen(k), "v", 1, NULL, NOW, NULL), 0);
	}
	qsort(keys, N, sizeof(*keys), cmpstr);
	size_t nk = 0;

	for (int i = 0; i < N; i++)
		if (nk == 0 || strcmp(keys[nk - 1], keys[i]))
			keys[nk++] = keys[i];
		else
			free(keys[i]);
	list_all(s, "p/", 0, NULL, &full);
	ref_list(keys, nk, "p/", 0, NULL, &ref);
	same(&full, &ref, "full");
	list_paged(s, "p/", 0, 100, &paged);
	same(&paged, &ref, "paged");
	names_free(&full);
	names_free(&paged);
	names_free(&ref);
	list_paged(s, "p/b/", '/', 100, &paged);
	ref_list(keys, nk, "p/b/", '/', NULL, &ref);
	same(&paged, &ref, "paged b");
	cr_assert_gt(paged.n, 3000);
	names_free(&paged);
	names_free(&ref);
	for (size_t i = 0; i < nk; i++)
		free(keys[i]);
	free(keys);
	store_close(s);
}

/* Random keys over a small alphabet with '/', compared against a brute-force listing. */
Test(store, list_random_model)
{
	struct store *s = open_store(32 * MiB, MiB, 0);
	enum { N = 3000 };
	char **keys = calloc(N, sizeof(*keys));
	size_t nk = 0;
	const char alpha[] = "ab/";

	for (int round = 0; round < 6; round++) {
		/* insert some, delete some */
		for (int i = 0; i < 600; i++) {
			char k[16];
			int l = 1 + (int)(rnd() % 8);

			for (int j = 0; j < l; j++)
				k[j] = alpha[rnd() % 3];
			k[l] = 0;
			if (rnd() % 4 == 0 && nk) {
				size_t d = rnd() % nk;

				cr_assert_eq(store_delete(s, keys[d], strlen(keys[d])), 0);
				free(keys[d]);
				keys[d] = keys[--nk];
				continue;
			}
			int dup = 0;

			for (size_t x = 0; x < nk; x++)
				if (!strcmp(keys[x], k))
					dup = 1;
			cr_assert_eq(store_put(s, k, (size_t)l, "v", 1, NULL, NOW, NULL), 0);
			if (!dup)
				keys[nk++] = strdup(k);
		}
		qsort(keys, nk, sizeof(*keys), cmpstr);
		cr_assert_eq(stats(s).keys, nk);
		/* prefixes: "", every key and its prefixes, some random strings */
		for (int t = 0; t < 150; t++) {
			char pre[16] = "";

			if (t) {
				const char *k = keys[rnd() % nk];
				size_t pl = rnd() % (strlen(k) + 1);

				memcpy(pre, k, pl);
				pre[pl] = 0;
				if (t % 7 == 0)
					pre[pl ? pl - 1 : 0] = 'b';
			}
			for (int dl = 0; dl < 2; dl++) {
				char delim = dl ? '/' : 0;
				struct names a = {0}, r = {0}, p = {0};

				list_all(s, pre, delim, NULL, &a);
				ref_list(keys, nk, pre, delim, NULL, &r);
				same(&a, &r, pre);
				list_paged(s, pre, delim, 1 + rnd() % 7, &p);
				same(&p, &r, pre);
				names_free(&a);
				names_free(&p);
				/* a cursor that was never delivered */
				const char *cur = keys[rnd() % nk];

				names_free(&r);
				list_all(s, pre, delim, cur, &a);
				ref_list(keys, nk, pre, delim, cur, &r);
				same(&a, &r, cur);
				names_free(&a);
				names_free(&r);
				int hp = 0;

				for (size_t x = 0; x < nk && !hp; x++)
					hp = strncmp(keys[x], pre, strlen(pre)) == 0;
				cr_assert_eq(!!store_has_prefix(s, pre, strlen(pre), NOW), hp,
					     "has_prefix(%s)", pre);
			}
		}
	}
	/* delete everything: the directory index is empty again */
	for (size_t i = 0; i < nk; i++) {
		cr_assert_eq(store_delete(s, keys[i], strlen(keys[i])), 0);
		free(keys[i]);
	}
	free(keys);
	struct names a = {0};

	cr_assert_eq(stats(s).keys, 0);
	cr_assert_eq(stats(s).pool_used, 0);
	cr_assert(!store_has_prefix(s, "", 0, NOW));
	list_all(s, "", 0, NULL, &a);
	cr_assert_eq(a.n, 0);
	store_close(s);
}

/*
 * A directory's marker gets mtime and ctime when a key directly under it is
 * created, deleted or renamed in or out; not when one is rewritten or its
 * attributes change, nor for keys further down.
 */
Test(store, dir_times)
{
	struct store *s = open_store(64 * MiB, 0, 0);
	const int64_t G = 1000000000LL;
	struct proto_setattr old = {.mask = PROTO_SET_MTIME, .mtime_ns = 1};
	struct proto_attr a;

#define DIR_TIMES(key, t)                                                                          \
	do {                                                                                       \
		cr_assert_eq(store_stat(s, key, strlen(key), s_now, &a), 0);                       \
		cr_assert_eq(a.mtime_ns, (t), "%s mtime %lld", key, (long long)a.mtime_ns);        \
		cr_assert_eq(a.ctime_ns, (t), "%s ctime %lld", key, (long long)a.ctime_ns);        \
	} while (0)
	int64_t s_now = NOW;

	cr_assert_eq(store_put(s, "d/", 2, "", 0, &old, NOW, NULL), 0);
	cr_assert_eq(store_put(s, "e/", 2, "", 0, &old, NOW, NULL), 0);
	cr_assert_eq(store_put(s, "top", 3, "x", 1, NULL, NOW, NULL), 0); /* no parent */
	cr_assert_eq(store_stat(s, "d/", 2, NOW, &a), 0);
	cr_assert_eq(a.mtime_ns, 1);
	cr_assert_eq(a.ctime_ns, NOW * G);
	/* create */
	s_now = NOW + 1;
	cr_assert_eq(store_put(s, "d/x", 3, "x", 1, NULL, s_now, NULL), 0);
	DIR_TIMES("d/", (NOW + 1) * G);
	/* rewrite and setattr of the child: the directory does not change */
	s_now = NOW + 2;
	cr_assert_eq(store_put(s, "d/x", 3, "yy", 2, NULL, s_now, NULL), 0);
	struct proto_setattr m = {.mask = PROTO_SET_MODE, .mode = 0600};
	cr_assert_eq(store_setattr(s, "d/x", 3, &m, s_now, NULL), 0);
	DIR_TIMES("d/", (NOW + 1) * G);
	/* mkdir of a subdirectory changes the parent; a key in it only itself */
	s_now = NOW + 3;
	cr_assert_eq(store_put(s, "d/sub/", 6, "", 0, NULL, s_now, NULL), 0);
	DIR_TIMES("d/", (NOW + 3) * G);
	s_now = NOW + 4;
	cr_assert_eq(store_put(s, "d/sub/y", 7, "y", 1, NULL, s_now, NULL), 0);
	DIR_TIMES("d/sub/", (NOW + 4) * G);
	DIR_TIMES("d/", (NOW + 3) * G);
	/* unlink (delete runs at the store's latest now) */
	s_now = NOW + 5;
	cr_assert_eq(store_stat(s, "top", 3, s_now, NULL), 0);
	cr_assert_eq(store_delete(s, "d/x", 3), 0);
	DIR_TIMES("d/", (NOW + 5) * G);
	/* rename out of d/sub/ into e/: both */
	s_now = NOW + 6;
	cr_assert_eq(store_stat(s, "top", 3, s_now, NULL), 0);
	cr_assert_eq(store_rename(s, "d/sub/y", 7, "e/y", 3, 0), 0);
	DIR_TIMES("d/sub/", (NOW + 6) * G);
	DIR_TIMES("e/", (NOW + 6) * G);
	DIR_TIMES("d/", (NOW + 5) * G);
	/* rename over an existing key changes its directory too */
	s_now = NOW + 7;
	cr_assert_eq(store_put(s, "d/z", 3, "z", 1, NULL, s_now, NULL), 0);
	s_now = NOW + 8;
	cr_assert_eq(store_stat(s, "top", 3, s_now, NULL), 0);
	cr_assert_eq(store_rename(s, "e/y", 3, "d/z", 3, 0), 0);
	DIR_TIMES("d/", (NOW + 8) * G);
	DIR_TIMES("e/", (NOW + 8) * G);
	/* rmdir of the subdirectory */
	s_now = NOW + 9;
	cr_assert_eq(store_stat(s, "top", 3, s_now, NULL), 0);
	cr_assert_eq(store_delete(s, "d/sub/", 6), 0);
	DIR_TIMES("d/", (NOW + 9) * G);
	/* an upload that creates a key */
	struct upload *up;

	s_now = NOW + 10;
	cr_assert_eq(store_upload_open(s, "d/u", 3, 0, s_now, &up), 0);
	cr_assert_eq(store_upload_commit(s, up, NULL, s_now, NULL), 0);
	DIR_TIMES("d/", (NOW + 10) * G);
	/* no marker (an implied directory): nothing to change, nothing made */
	cr_assert_eq(store_put(s, "n/a", 3, "a", 1, NULL, s_now, NULL), 0);
	cr_assert_eq(store_stat(s, "n/", 2, s_now, NULL), -ENOENT);
#undef DIR_TIMES
	store_close(s);
}
