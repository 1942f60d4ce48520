/*
 * store_fixture: the helpers the store's unit tests share (store_fixture.c).
 */
#ifndef KVFS_STORE_FIXTURE_H
#define KVFS_STORE_FIXTURE_H

#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "server/store.h"

#define MiB (1024ull * 1024)
#define NOW 1700000000LL

struct store *open_store(uint64_t mem, uint64_t max_value, int none);
/* $STORE_TEST_SEED picks another random sequence. */
uint64_t rnd(void);
/* Patterned bytes: depend on seed and absolute offset. */
uint8_t pat(uint64_t seed, uint64_t off);
void fill(uint8_t *b, size_t n, uint64_t seed);
/* Read [off, off+len) of it via store_item_iov with at most max iovs per call. */
uint64_t read_item(const struct item *it, uint64_t off, uint64_t len, uint8_t *out, size_t max);
/* Get key and check its value equals pattern seed of size len. */
int check_key(struct store *s, const char *key, uint64_t seed, uint64_t len);
int put_pat(struct store *s, const char *key, uint64_t seed, size_t len);
struct store_stats stats(struct store *s);
/* A store_list callback counting into *(long *)arg. */
int count_cb(void *arg, const char *name, size_t nlen, const struct proto_attr *a);
/* Write buf into [off, off+len) of the upload through iovs of at most max entries. */
long up_write(struct store *s, struct upload *up, uint64_t off, const uint8_t *buf, uint64_t len,
	      size_t max);
/* Get key and check its value equals ref[0, len). */
void check_val(struct store *s, const char *key, const uint8_t *ref, uint64_t len);

/* Names a listing delivered (collect is its store_list callback). */
struct names {
	char **v;
	int *pfx;
	size_t n, cap;
	size_t limit; /* stop (return 1) when n reaches limit */
};
int collect(void *arg, const char *name, size_t nlen, const struct proto_attr *a);
void names_free(struct names *L);

#endif
