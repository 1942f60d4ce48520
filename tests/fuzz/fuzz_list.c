/*
 * fuzz_list: libFuzzer target of a LIST reply's payload: wire_entry_decode
 * walked over it entry by entry, and wire_list_decode with a prefix and a
 * cursor, out[] sized as libkvfs sizes it (list.c: after
 * wire_list_count_ok). A batch that decodes must hold n entries under the
 * prefix, in strictly increasing order after the cursor, that encode back
 * to the same bytes, save the attributes' padding the decoder ignores.
 * Input: [u8 plen][u8 clen][u16 n, little-endian][prefix][cursor][entries]
 * (corpus/list, fuzz_seeds.c).
 */
#include <string.h>

#include "fuzz.h"

/*
 * An entry with attributes: u16 nlen, u8 is_prefix, then the attr (six u64,
 * four u32), whose last 4 bytes are padding.
 */
#define ATTR_PAD_OFF (3 + 6 * 8 + 3 * 4)
#define ATTR_PAD_LEN 4

static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int r = memcmp(a, b, alen < blen ? alen : blen);
	return r ? r : (alen > blen) - (alen < blen);
}

/* Every entry wire_entry_decode finds, one after another, until one is refused. */
static void walk(const uint8_t *d, size_t len)
{
	size_t pos = 0;
	while (pos < len) {
		const char *name;
		size_t nlen;
		int pfx;
		struct proto_attr a;
		int k = wire_entry_decode(d + pos, len - pos, &name, &nlen, &pfx, &a);
		if (k < 0) {
			FUZZ_CHECK(k == -EPROTO);
			return;
		}
		FUZZ_CHECK(k >= 3 && (size_t)k <= len - pos);
		FUZZ_CHECK(pfx == 0 || pfx == 1);
		FUZZ_CHECK((const uint8_t *)name + nlen == d + pos + k);
		pos += (size_t)k;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	size_t plen = data[0], clen = data[1];
	uint64_t n = (uint64_t)(data[2] | data[3] << 8);
	if (size - 4 < plen + clen)
		return 0;
	const char *prefix = (const char *)data + 4, *cursor = prefix + plen;
	const uint8_t *d = (const uint8_t *)cursor + clen;
	size_t dlen = size - 4 - plen - clen;
	walk(d, dlen);

	struct wire_entry *out = NULL;
	if (wire_list_count_ok(n, dlen)) {
		out = calloc(n ? n : 1, sizeof(*out));
		FUZZ_CHECK(out);
	}
	const char *why = NULL;
	int ret = wire_list_decode(d, dlen, n, prefix, plen, clen ? cursor : NULL, clen, out, &why);
	if (ret) {
		FUZZ_CHECK(ret == -EPROTO && why);
		free(out);
		return 0;
	}
	FUZZ_CHECK(out || n == 0);
	uint8_t *again = malloc(dlen ? dlen : 1), *want = malloc(dlen ? dlen : 1);
	FUZZ_CHECK(again && want);
	memcpy(want, d, dlen);
	size_t pos = 0;
	for (uint64_t i = 0; i < n; i++) {
		const struct wire_entry *e = &out[i];
		FUZZ_CHECK(e->nlen > 0 && e->nlen >= plen && memcmp(e->name, prefix, plen) == 0);
		FUZZ_CHECK((const uint8_t *)e->name >= d &&
			   (const uint8_t *)e->name + e->nlen <= d + dlen);
		if (i)
			FUZZ_CHECK(bytes_cmp(e->name, e->nlen, out[i - 1].name, out[i - 1].nlen) >
				   0);
		else if (clen)
			FUZZ_CHECK(bytes_cmp(e->name, e->nlen, cursor, clen) > 0);
		int k = wire_entry_encode(again + pos, dlen - pos, e->name, e->nlen,
					  e->is_prefix ? NULL : &e->attr);
		FUZZ_CHECK(k > 0);
		if (!e->is_prefix)
			memset(want + pos + ATTR_PAD_OFF, 0, ATTR_PAD_LEN);
		pos += (size_t)k;
	}
	FUZZ_CHECK(pos == dlen && memcmp(again, want, dlen) == 0);
	free(again);
	free(want);
	free(out);
	return 0;
}
