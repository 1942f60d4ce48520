/*
 * hash: the 64-bit key hash of kvfs (a wyhash-style mix of 16-byte blocks).
 * The store's index and the client's server routing both use it. Not
 * cryptographic: keys come from authenticated clients of one cluster.
 */
#ifndef KVFS_HASH_H
#define KVFS_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HASH_P0 0xa0761d6478bd642fULL
#define HASH_P1 0xe7037ed1a0b428dbULL
#define HASH_P2 0x8ebc6af09c88c6e3ULL
#define HASH_P3 0x589965cc75374cc3ULL

/* 64x64 -> 128 multiply, folded: every input bit reaches every output bit. */
static inline uint64_t hash_mum(uint64_t a, uint64_t b)
{
	__extension__ typedef unsigned __int128 u128;
	u128 r = (u128)a * b;
	return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t hash_rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline uint64_t hash_rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* Mix one 64-bit value (e.g. a key hash with a server's). */
static inline uint64_t hash_mix(uint64_t x)
{
	return hash_mum(x ^ HASH_P0, x ^ HASH_P1);
}

static inline uint64_t hash64(const void *data, size_t n, uint64_t seed)
{
	const uint8_t *p = data;
	uint64_t h = seed ^ hash_mum(seed ^ HASH_P0, (uint64_t)n ^ HASH_P1);
	uint64_t a, b;

	while (n > 16) {
		h = hash_mum(hash_rd64(p) ^ HASH_P1, hash_rd64(p + 8) ^ h);
		p += 16;
		n -= 16;
	}
	if (n >= 8) {
		a = hash_rd64(p);
		b = hash_rd64(p + n - 8);
	} else if (n >= 4) {
		a = hash_rd32(p);
		b = hash_rd32(p + n - 4);
	} else if (n > 0) {
		a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
		b = 0;
	} else {
		a = b = 0;
	}
	h = hash_mum(a ^ HASH_P1, b ^ h ^ HASH_P2);
	return hash_mum(h ^ HASH_P3, (uint64_t)n ^ HASH_P0 ^ seed);
}

#endif
