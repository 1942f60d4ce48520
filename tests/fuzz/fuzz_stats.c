/*
 * fuzz_stats: libFuzzer target of wire_stats_decode, an OP_STATS reply's
 * payload. Decoded stats must carry a NUL-terminated provider name and
 * encode back to the same bytes. Input: one payload (corpus/stats,
 * fuzz_seeds.c).
 */
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t again[1024];
	struct proto_stats st;
	int ret = wire_stats_decode(data, size, &st);
	if (ret) {
		FUZZ_CHECK(ret == -EPROTO);
		return 0;
	}
	FUZZ_CHECK(memchr(st.provider, 0, sizeof(st.provider)));
	int n = wire_stats_encode(again, sizeof(again), &st);
	FUZZ_CHECK(n == (int)size);
	FUZZ_CHECK(memcmp(again, data, size) == 0);
	return 0;
}
