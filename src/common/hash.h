/*
 * hash: a fast 64-bit hash for keys (key → server routing). Not
 * cryptographic; keys come from trusted clients of one cluster.
 */
#ifndef KVFS_HASH_H
#define KVFS_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Finaliser of splitmix64/murmur3: every input bit affects every output bit. */
static inline uint64_t hash_mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static inline uint64_t hash64(const void *data, size_t len, uint64_t seed)
{
	const uint8_t *p = data;
	uint64_t h = hash_mix(seed ^ (len * 0x9e3779b97f4a7c15ull));
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		h = hash_mix(h ^ w) + 0x9e3779b97f4a7c15ull;
		p += 8;
		len -= 8;
	}
	uint64_t t = 0;
	memcpy(&t, p, len);
	return hash_mix(h ^ t ^ ((uint64_t)len << 56));
}

#endif
