/*
 * store_fixture: the helpers the store's unit tests share (test_store*.c):
 * a store to test, a random sequence, patterned values and checks of them,
 * upload writes, a listing collector.
 */
#include "store_fixture.h"

#include <stdio.h>
#include <stdlib.h>

struct store *open_store(uint64_t mem, uint64_t max_value, int none)
{
	struct store_config cfg = {.memory = mem, .max_value = max_value, .evict_none = none};
	struct store *s = NULL;

	cr_assert_eq(store_open(&s, &cfg), 0);
	cr_assert_not_null(s);
	return s;
}

static uint64_t rng_state = 88172645463325252ull;

uint64_t rnd(void)
{
	static int seeded;

	if (!seeded) {
		const char *e = getenv("STORE_TEST_SEED");

		seeded = 1;
		if (e && strtoull(e, NULL, 0))
			rng_state = strtoull(e, NULL, 0);
	}
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

uint8_t pat(uint64_t seed, uint64_t off)
{
	uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ull + off * 0xbf58476d1ce4e5b9ull;

	x ^= x >> 31;
	x *= 0x94d049bb133111ebull;
	return (uint8_t)(x >> 29);
}

void fill(uint8_t *b, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = pat(seed, i);
}

uint64_t read_item(const struct item *it, uint64_t off, uint64_t len, uint8_t *out, size_t max)
{
	struct iovec iov[64];
	uint64_t done = 0;

	cr_assert(max <= 64);
	while (done < len) {
		uint64_t cov = 0;
		size_t n = store_item_iov(it, off + done, len - done, iov, max, &cov);
		uint64_t sum = 0;

		cr_assert_leq(n, max);
		for (size_t i = 0; i < n; i++) {
			memcpy(out + done + sum, iov[i].iov_base, iov[i].iov_len);
			sum += iov[i].iov_len;
		}
		cr_assert_eq(sum, cov);
		if (!cov)
			break;
		done += cov;
	}
	return done;
}

int check_key(struct store *s, const char *key, uint64_t seed, uint64_t len)
{
	struct item *it;
	struct proto_attr a;
	int r = store_get(s, key, strlen(key), NOW, &it);

	if (r)
		return r;
	store_item_attr(it, &a);
	cr_assert_eq(a.size, len, "%s: size %lu want %lu", key, (unsigned long)a.size,
		     (unsigned long)len);
	uint8_t *b = malloc(len + 1);

	cr_assert_eq(read_item(it, 0, len, b, 8), len);
	for (uint64_t i = 0; i < len; i++)
		if (b[i] != pat(seed, i))
			cr_assert_fail("%s: byte %lu differs", key, (unsigned long)i);
	free(b);
	store_release(s, it);
	return 0;
}

int put_pat(struct store *s, const char *key, uint64_t seed, size_t len)
{
	uint8_t *b = malloc(len + 1);
	int r;

	fill(b, len, seed);
	r = store_put(s, key, strlen(key), b, len, NULL, NOW, NULL);
	free(b);
	return r;
}

struct store_stats stats(struct store *s)
{
	struct store_stats st;

	store_stats(s, &st);
	return st;
}

int count_cb(void *arg, const char *name, size_t nlen, const struct proto_attr *a)
{
	(void)name;
	(void)nlen;
	(void)a;
	++*(long *)arg;
	return 0;
}

long up_write(struct store *s, struct upload *up, uint64_t off, const uint8_t *buf, uint64_t len,
	      size_t max)
{
	struct iovec iov[8];
	uint64_t done = 0;

	while (done < len) {
		uint64_t cov;
		long n = store_upload_iov(s, up, off + done, len - done, iov, max, &cov);

		if (n < 0)
			return n;
		uint64_t sum = 0;

		for (long i = 0; i < n; i++) {
			memcpy(iov[i].iov_base, buf + done + sum, iov[i].iov_len);
			sum += iov[i].iov_len;
		}
		cr_assert_eq(sum, cov);
		cr_assert_gt(cov, 0);
		done += cov;
	}
	return 0;
}

void check_val(struct store *s, const char *key, const uint8_t *ref, uint64_t len)
{
	struct item *it;
	struct proto_attr a;
	uint8_t *b = malloc(len + 1);

	cr_assert_eq(store_get(s, key, strlen(key), NOW, &it), 0);
	store_item_attr(it, &a);
	cr_assert_eq(a.size, len);
	cr_assert_eq(read_item(it, 0, len, b, 3), len);
	cr_assert_eq(memcmp(b, ref, len), 0);
	store_release(s, it);
	free(b);
}

int collect(void *arg, const char *name, size_t nlen, const struct proto_attr *a)
{
	struct names *L = arg;

	cr_assert_eq(strlen(name), nlen);
	if (L->limit && L->n == L->limit)
		return 1;
	if (L->n == L->cap) {
		L->cap = L->cap ? L->cap * 2 : 64;
		L->v = realloc(L->v, L->cap * sizeof(*L->v));
		L->pfx = realloc(L->pfx, L->cap * sizeof(*L->pfx));
	}
	L->v[L->n] = strndup(name, nlen);
	L->pfx[L->n] = a == NULL;
	if (a == NULL)
		cr_assert_eq(name[nlen - 1], '/');
	L->n++;
	return 0;
}

void names_free(struct names *L)
{
	for (size_t i = 0; i < L->n; i++)
		free(L->v[i]);
	free(L->v);
	free(L->pfx);
	memset(L, 0, sizeof(*L));
}
