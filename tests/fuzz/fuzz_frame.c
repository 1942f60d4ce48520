/*
 * fuzz_frame: libFuzzer target of the bootstrap frames' codec:
 * wire_frame_header on the first 12 bytes, then wire_frame_decode of the
 * header's type on every byte after them (whatever the header's length
 * says, so bodies too short and too long reach the decoder). A body that
 * decodes must be exactly what wire_frame_encode makes of the result.
 * Input: one frame as on the wire (tests/fuzz/corpus/frame, fuzz_seeds.c).
 */
#include <string.h>

#include "fuzz.h"

/* Room for the largest decoded frame of any type. */
union frame {
	struct wire_hello hello;
	struct wire_challenge ch;
	uint8_t mac[WIRE_MAC];
	struct wire_welcome w;
	struct wire_setup setup;
	struct wire_ready ready;
	struct wire_error err;
};

static void check_decoded(uint16_t type, const union frame *f)
{
	switch (type) {
	case WF_WELCOME:
		FUZZ_CHECK(f->w.n_provs >= 0 && f->w.n_provs <= WIRE_MAX_PROVS);
		for (int i = 0; i < f->w.n_provs; i++)
			FUZZ_CHECK(memchr(f->w.provs[i], 0, sizeof(f->w.provs[i])));
		break;
	case WF_SETUP:
		FUZZ_CHECK(memchr(f->setup.provider, 0, sizeof(f->setup.provider)));
		FUZZ_CHECK(f->setup.addr_len <= WIRE_ADDR_MAX);
		break;
	case WF_READY:
		FUZZ_CHECK(f->ready.addr_len <= WIRE_ADDR_MAX);
		break;
	case WF_ERROR:
		FUZZ_CHECK(memchr(f->err.text, 0, sizeof(f->err.text)));
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t again[WIRE_FRAME_HDR + WIRE_FRAME_MAX];
	uint16_t type;
	uint32_t len;
	const char *why = NULL;
	union frame f;
	if (size < WIRE_FRAME_HDR)
		return 0;
	int hret = wire_frame_header(data, &type, &len, WIRE_FRAME_MAX);
	FUZZ_CHECK(hret == 0 || hret == -EPROTO);
	if (hret == 0)
		FUZZ_CHECK(len <= WIRE_FRAME_MAX);
	/* The type field means the same whether or not the rest of the header is right. */
	type = (uint16_t)(data[6] | data[7] << 8);
	const uint8_t *body = data + WIRE_FRAME_HDR;
	size_t blen = size - WIRE_FRAME_HDR;
	memset(&f, 0xa5, sizeof(f));
	int ret = wire_frame_decode(type, body, blen, &f, &why);
	if (ret) {
		FUZZ_CHECK(ret == -EPROTO && why);
		return 0;
	}
	FUZZ_CHECK(type >= WF_HELLO && type <= WF_ERROR);
	check_decoded(type, &f);
	/* A decoded frame encodes back to the same bytes, header included. */
	int n = wire_frame_encode(again, sizeof(again), type, &f);
	FUZZ_CHECK(n == (int)size);
	FUZZ_CHECK(memcmp(again + WIRE_FRAME_HDR, body, blen) == 0);
	uint16_t t2;
	uint32_t l2;
	FUZZ_CHECK(wire_frame_header(again, &t2, &l2, WIRE_FRAME_MAX) == 0);
	FUZZ_CHECK(t2 == type && l2 == blen);
	return 0;
}
