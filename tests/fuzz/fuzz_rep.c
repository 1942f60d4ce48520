/*
 * fuzz_rep: libFuzzer target of wire_rep_decode, and of the invalidation
 * entries an OP_INVAL message carries (wire_inval_check, wire_inval_next).
 * A reply that decodes must keep its promises (status 0 or -errno, data
 * inside the message, lengths adding up) and encode back to the same bytes,
 * save the reserved fields the decoder ignores. Input: one reply message (corpus/rep,
 * fuzz_seeds.c).
 */
#include <string.h>

#include "fuzz.h"

/* The reserved fields of a reply's fixed part (wire_rep_encode writes zeros). */
#define RSV1_OFF 2 /* after op, flags */
#define RSV1_LEN 2
#define RSV2_OFF (WIRE_REP_FIXED - 4) /* the attr's padding, last in the fixed part */
#define RSV2_LEN 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_rep p;
	const char *why = NULL;
	int ret = wire_rep_decode(data, size, &p, &why);
	if (ret) {
		FUZZ_CHECK(ret == -EPROTO && why);
		return 0;
	}
	FUZZ_CHECK(p.status <= 0 && p.status >= -4095);
	FUZZ_CHECK((size_t)WIRE_REP_FIXED + p.dlen == size);
	FUZZ_CHECK(p.dlen == 0 || p.data == data + WIRE_REP_FIXED);

	if (p.op == OP_INVAL && wire_inval_check(p.data, p.dlen, p.n, &why) == 0) {
		/* an invalidation the client would act on: n entries, keys inside data */
		size_t pos = 0, klen;
		unsigned kind;
		const uint8_t *key;
		uint64_t seen = 0;
		while (wire_inval_next(p.data, p.dlen, &pos, &kind, &key, &klen) == 1) {
			FUZZ_CHECK(kind == WIRE_INVAL_CHANGED || kind == WIRE_INVAL_GONE);
			FUZZ_CHECK(klen <= PROTO_MAX_KEY && key >= p.data &&
				   key + klen <= p.data + p.dlen);
			seen++;
		}
		FUZZ_CHECK(seen == p.n && pos == p.dlen);
	}

	uint8_t *again = malloc(size);
	uint8_t *want = malloc(size);
	FUZZ_CHECK(again && want);
	int n = wire_rep_encode(again, size, &p);
	FUZZ_CHECK(n == (int)size);
	memcpy(want, data, size);
	memset(want + RSV1_OFF, 0, RSV1_LEN);
	memset(want + RSV2_OFF, 0, RSV2_LEN);
	FUZZ_CHECK(memcmp(again, want, size) == 0);
	free(again);
	free(want);
	return 0;
}
