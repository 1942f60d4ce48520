/*
 * fuzz_req: libFuzzer target of wire_req_decode with a server's default
 * limits (fuzz.h). A request that decodes must keep its promises (key,
 * key2 and data inside the message and within the limits, lengths adding
 * up) and encode back to the same bytes, save the two reserved fields the
 * decoder ignores. Input: one request message (corpus/req, fuzz_seeds.c).
 */
#include <string.h>

#include "fuzz.h"

/* The reserved fields of a request's fixed part (wire_req_encode writes zeros). */
#define RSV1_OFF 6
#define RSV1_LEN 2
#define RSV2_OFF 100
#define RSV2_LEN 4

static int inside(const uint8_t *p, uint32_t n, const uint8_t *buf, size_t len)
{
	return n == 0 || (p && p >= buf && n <= len && (size_t)(p - buf) <= len - n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_req q;
	const char *why = NULL;
	int ret = wire_req_decode(data, size, &fuzz_limits, &q, &why);
	if (ret) {
		FUZZ_CHECK((ret == -EPROTO || ret == -ENAMETOOLONG || ret == -EMSGSIZE) && why);
		return 0;
	}
	FUZZ_CHECK(q.op >= 1 && q.op < OP_MAX_);
	FUZZ_CHECK(q.klen <= fuzz_limits.max_key && q.k2len <= fuzz_limits.max_key);
	FUZZ_CHECK(q.dlen <= fuzz_limits.inline_threshold);
	FUZZ_CHECK((size_t)WIRE_REQ_FIXED + q.klen + q.k2len + q.dlen == size);
	FUZZ_CHECK(inside(q.key, q.klen, data, size));
	FUZZ_CHECK(inside(q.key2, q.k2len, data, size));
	FUZZ_CHECK(inside(q.data, q.dlen, data, size));

	uint8_t *again = malloc(size);
	uint8_t *want = malloc(size);
	FUZZ_CHECK(again && want);
	int n = wire_req_encode(again, size, &q);
	FUZZ_CHECK(n == (int)size);
	memcpy(want, data, size);
	memset(want + RSV1_OFF, 0, RSV1_LEN);
	memset(want + RSV2_OFF, 0, RSV2_LEN);
	FUZZ_CHECK(memcmp(again, want, size) == 0);
	free(again);
	free(want);
	return 0;
}
