/*
 * fuzz_segs: libFuzzer target of wire_segs_decode, the pool ranges of a
 * PIN_GET RQ_MAP reply, with seg[] of WIRE_MAP_SEGS as in libkvfs (pin.c).
 * Decoded segments must be non-empty, inside the pool, cover exactly the
 * total, and encode back to the same bytes.
 * Input: [u64 total][u64 pool_len][segments] little-endian (corpus/segs,
 * fuzz_seeds.c).
 */
#include <string.h>

#include "fuzz.h"

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct wire_seg seg[WIRE_MAP_SEGS];
	static uint8_t again[WIRE_MAP_SEGS * WIRE_SEG_SIZE];
	if (size < 16)
		return 0;
	uint64_t total = le64(data), pool_len = le64(data + 8);
	const uint8_t *d = data + 16;
	size_t len = size - 16;
	/* d ends where libFuzzer's allocation ends: a read past it is ASan's. */
	int n = wire_segs_decode(d, len, total, pool_len, seg, WIRE_MAP_SEGS);
	if (n < 0) {
		FUZZ_CHECK(n == -EPROTO);
		return 0;
	}
	FUZZ_CHECK(n <= WIRE_MAP_SEGS && (size_t)n * WIRE_SEG_SIZE == len);
	uint64_t sum = 0;
	for (int i = 0; i < n; i++) {
		FUZZ_CHECK(seg[i].len > 0 && seg[i].off <= pool_len &&
			   seg[i].len <= pool_len - seg[i].off);
		FUZZ_CHECK(seg[i].len <= UINT64_MAX - sum);
		sum += seg[i].len;
	}
	FUZZ_CHECK(sum == total);
	FUZZ_CHECK(wire_segs_encode(again, sizeof(again), seg, n) == (int)len);
	FUZZ_CHECK(memcmp(again, d, len) == 0);
	return 0;
}
