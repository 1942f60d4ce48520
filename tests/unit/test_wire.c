/*
 * Unit tests of the wire format: round trips, and hostile input of every
 * shape; and of the device-number encoding of device keys (common/devnum.h).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "client/convert.h"
#include "common/devnum.h"
#include "common/wire.h"

static const struct wire_limits lim = {
    .max_key = PROTO_MAX_KEY, .max_value = 1 << 30, .inline_threshold = 4096, .msg_size = 16384};

static int encode_sample(uint8_t *buf, size_t cap, const char *key, const void *data, uint32_t dlen)
{
	struct wire_req q = {
	    .op = OP_PUT,
	    .flags = RQ_NOREPLACE,
	    .session = 0x1122334455667788ull,
	    .token = 42,
	    .req_id = 7,
	    .off = 1,
	    .len = dlen,
	    .handle = 9,
	    .buf = {REGION_STAGING, 4096, 8192},
	    .sa = {PROTO_SET_MODE | PROTO_SET_TTL | PROTO_SET_ATIME, 0100600, 1, 2, -5, 9, 60},
	    .key = (const uint8_t *)key,
	    .klen = (uint32_t)strlen(key),
	    .key2 = (const uint8_t *)"dst",
	    .k2len = 3,
	    .data = data,
	    .dlen = dlen};
	return wire_req_encode(buf, cap, &q);
}

Test(wire, request_round_trip)
{
	uint8_t buf[16384], data[100];
	memset(data, 0xab, sizeof(data));
	int n = encode_sample(buf, sizeof(buf), "a/b/c", data, sizeof(data));
	cr_assert_eq(n, WIRE_REQ_FIXED + 5 + 3 + 100);
	struct wire_req q;
	const char *why = NULL;
	cr_assert_eq(wire_req_decode(buf, (size_t)n, &lim, &q, &why), 0);
	cr_assert_eq(q.op, OP_PUT);
	cr_assert_eq(q.flags, RQ_NOREPLACE);
	cr_assert_eq(q.session, 0x1122334455667788ull);
	cr_assert_eq(q.token, 42);
	cr_assert_eq(q.req_id, 7);
	cr_assert_eq(q.buf.region, REGION_STAGING);
	cr_assert_eq(q.buf.off, 4096);
	cr_assert_eq(q.buf.len, 8192);
	cr_assert_eq(q.sa.mode, 0100600);
	cr_assert_eq(q.sa.mask, PROTO_SET_MODE | PROTO_SET_TTL | PROTO_SET_ATIME);
	cr_assert_eq(q.sa.mtime_ns, -5);
	cr_assert_eq(q.sa.atime_ns, 9);
	cr_assert_eq(q.sa.ttl, 60);
	cr_assert_eq(q.klen, 5);
	cr_assert_eq(memcmp(q.key, "a/b/c", 5), 0);
	cr_assert_eq(memcmp(q.key2, "dst", 3), 0);
	cr_assert_eq(q.dlen, 100);
	cr_assert_eq(memcmp(q.data, data, 100), 0);
}

Test(wire, request_truncated_at_every_length)
{
	uint8_t buf[16384];
	int n = encode_sample(buf, sizeof(buf), "key", "xyz", 3);
	for (int len = 0; len < n; len++) {
		struct wire_req q;
		const char *why = NULL;
		int ret = wire_req_decode(buf, (size_t)len, &lim, &q, &why);
		cr_assert_neq(ret, 0, "truncated to %d bytes accepted", len);
		cr_assert_not_null(why);
	}
}

Test(wire, request_trailing_bytes_refused)
{
	uint8_t buf[16384];
	int n = encode_sample(buf, sizeof(buf), "key", "xyz", 3);
	struct wire_req q;
	const char *why;
	cr_assert_eq(wire_req_decode(buf, (size_t)n + 1, &lim, &q, &why), -EPROTO);
}

Test(wire, oversized_key_and_inline_data_refused)
{
	uint8_t *buf = malloc(3 * 65536);
	char *key = malloc(PROTO_MAX_KEY + 2);
	memset(key, 'k', PROTO_MAX_KEY + 1);
	key[PROTO_MAX_KEY + 1] = 0;
	struct wire_req q;
	const char *why;
	int n = encode_sample(buf, 3 * 65536, key, "", 0);
	cr_assert_gt(n, 0);
	cr_assert_eq(wire_req_decode(buf, (size_t)n, &lim, &q, &why), -ENAMETOOLONG);
	key[PROTO_MAX_KEY] = 0; /* exactly the limit: fine */
	n = encode_sample(buf, 3 * 65536, key, "", 0);
	cr_assert_eq(wire_req_decode(buf, (size_t)n, &lim, &q, &why), 0);

	uint8_t *data = calloc(1, 4097);
	n = encode_sample(buf, 3 * 65536, "k", data, 4097);
	cr_assert_eq(wire_req_decode(buf, (size_t)n, &lim, &q, &why), -EMSGSIZE);
	free(data);
	free(key);
	free(buf);
}

Test(wire, lengths_that_lie_refused)
{
	uint8_t buf[16384];
	int n = encode_sample(buf, sizeof(buf), "key", "xyz", 3);
	struct wire_req q;
	const char *why;
	/* klen field (offset 2) claims more key than the message has. */
	buf[2] = 0xff;
	buf[3] = 0x0f;
	cr_assert_neq(wire_req_decode(buf, (size_t)n, &lim, &q, &why), 0);
	/* dlen (offset 8) says 2^32-1. */
	n = encode_sample(buf, sizeof(buf), "key", "xyz", 3);
	memset(buf + 8, 0xff, 4);
	cr_assert_neq(wire_req_decode(buf, (size_t)n, &lim, &q, &why), 0);
}

Test(wire, bad_magic_and_op_refused)
{
	uint8_t buf[16384];
	int n = encode_sample(buf, sizeof(buf), "key", "", 0);
	struct wire_req q;
	const char *why;
	buf[12] ^= 1;
	cr_assert_eq(wire_req_decode(buf, (size_t)n, &lim, &q, &why), -EPROTO);
	n = encode_sample(buf, sizeof(buf), "key", "", 0);
	buf[0] = OP_MAX_;
	cr_assert_eq(wire_req_decode(buf, (size_t)n, &lim, &q, &why), -EPROTO);
	buf[0] = 0;
	cr_assert_eq(wire_req_decode(buf, (size_t)n, &lim, &q, &why), -EPROTO);
}

Test(wire, random_garbage_never_crashes)
{
	uint8_t buf[2048];
	srand(1);
	for (int i = 0; i < 20000; i++) {
		size_t len = (size_t)rand() % sizeof(buf);
		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)rand();
		struct wire_req q;
		struct wire_rep p;
		const char *why;
		if (wire_req_decode(buf, len, &lim, &q, &why) == 0)
			cr_assert_eq((size_t)WIRE_REQ_FIXED + q.klen + q.k2len + q.dlen, len);
		if (wire_rep_decode(buf, len, &p, &why) == 0)
			cr_assert_eq((size_t)WIRE_REP_FIXED + p.dlen, len);
		const char *name;
		size_t nlen;
		int pfx;
		struct proto_attr a;
		int k = wire_entry_decode(buf, len, &name, &nlen, &pfx, &a);
		if (k >= 0)
			cr_assert_leq((size_t)k, len);
	}
}

Test(wire, reply_round_trip_and_in_place_data)
{
	uint8_t buf[8192];
	struct wire_rep p = {.op = OP_GET,
			     .status = -ENOENT,
			     .req_id = 99,
			     .n = 5,
			     .handle = 3,
			     .attr = {.size = 5,
				      .version = 8,
				      .mtime_ns = 123,
				      .atime_ns = -124,
				      .ctime_ns = 1700000000123456789ll,
				      .expiry = 77,
				      .mode = 0100644,
				      .uid = 5,
				      .gid = 6}};
	memcpy(buf + WIRE_REP_FIXED, "hello", 5);
	p.data = buf + WIRE_REP_FIXED; /* gathered in place */
	p.dlen = 5;
	int n = wire_rep_encode(buf, sizeof(buf), &p);
	cr_assert_eq(n, WIRE_REP_FIXED + 5);
	struct wire_rep d;
	const char *why;
	cr_assert_eq(wire_rep_decode(buf, (size_t)n, &d, &why), 0);
	cr_assert_eq(d.status, -ENOENT);
	cr_assert_eq(d.req_id, 99);
	cr_assert_eq(d.attr.version, 8);
	cr_assert_eq(d.attr.mtime_ns, 123);
	cr_assert_eq(d.attr.atime_ns, -124);
	cr_assert_eq(d.attr.ctime_ns, 1700000000123456789ll);
	cr_assert_eq(d.attr.expiry, 77);
	cr_assert_eq(d.attr.mode, 0100644);
	cr_assert_eq(d.attr.uid, 5);
	cr_assert_eq(d.attr.gid, 6);
	cr_assert_eq(memcmp(d.data, "hello", 5), 0);
	/* A positive or absurd status is refused. */
	p.status = 5;
	n = wire_rep_encode(buf, sizeof(buf), &p);
	cr_assert_eq(wire_rep_decode(buf, (size_t)n, &d, &why), -EPROTO);
	/* Does not fit: -EMSGSIZE, never an overrun. */
	p.status = 0;
	cr_assert_eq(wire_rep_encode(buf, WIRE_REP_FIXED + 4, &p), -EMSGSIZE);
}

Test(wire, frames_round_trip_and_reject)
{
	uint8_t buf[WIRE_FRAME_MAX + WIRE_FRAME_HDR];
	struct wire_setup s = {.provider = "tcp",
			       .addr_len = 3,
			       .addr = {1, 2, 3},
			       .recv = {1, 2, 3},
			       .staging = {4, 5, 6}};
	int n = wire_frame_encode(buf, sizeof(buf), WF_SETUP, &s);
	cr_assert_gt(n, WIRE_FRAME_HDR);
	uint16_t type;
	uint32_t len;
	cr_assert_eq(wire_frame_header(buf, &type, &len, WIRE_FRAME_MAX), 0);
	cr_assert_eq(type, WF_SETUP);
	cr_assert_eq(len, (uint32_t)n - WIRE_FRAME_HDR);
	/* Before authentication frames are tiny: a setup is too big. */
	cr_assert_eq(wire_frame_header(buf, &type, &len, 16), -EPROTO);
	struct wire_setup d;
	const char *why;
	cr_assert_eq(wire_frame_decode(WF_SETUP, buf + WIRE_FRAME_HDR, len, &d, &why), 0);
	cr_assert_str_eq(d.provider, "tcp");
	cr_assert_eq(d.staging.key, 6);
	for (uint32_t l = 0; l < len; l++)
		cr_assert_eq(wire_frame_decode(WF_SETUP, buf + WIRE_FRAME_HDR, l, &d, &why),
			     -EPROTO);
	/* An address length over the maximum is refused, not copied. */
	buf[WIRE_FRAME_HDR + 4] = 0xff;
	buf[WIRE_FRAME_HDR + 5] = 0xff;
	cr_assert_eq(wire_frame_decode(WF_SETUP, buf + WIRE_FRAME_HDR, len, &d, &why), -EPROTO);
	/* Bad magic. */
	n = wire_frame_encode(buf, sizeof(buf), WF_SETUP, &s);
	buf[0] ^= 0xff;
	cr_assert_eq(wire_frame_header(buf, &type, &len, WIRE_FRAME_MAX), -EPROTO);
}

Test(wire, direct_frames_wrap_requests_and_replies)
{
	static uint8_t buf[WIRE_FRAME_HDR + 16384];
	uint8_t data[4096];
	memset(data, 0x5a, sizeof(data));
	/* A REQ: header written in front of a request the caller encoded. */
	int n = encode_sample(buf + WIRE_FRAME_HDR, sizeof(buf) - WIRE_FRAME_HDR, "k", data,
			      sizeof(data));
	cr_assert_gt(n, WIRE_FRAME_MAX, "a direct frame may be longer than the struct frames");
	wire_frame_wrap(buf, WF_REQ, (uint32_t)n);
	uint16_t type;
	uint32_t len;
	cr_assert_eq(wire_frame_header(buf, &type, &len, (uint32_t)lim.msg_size), 0);
	cr_assert_eq(type, WF_REQ);
	cr_assert_eq(len, (uint32_t)n);
	struct wire_req q;
	const char *why;
	cr_assert_eq(wire_req_decode(buf + WIRE_FRAME_HDR, len, &lim, &q, &why), 0);
	cr_assert_eq(q.dlen, sizeof(data));
	cr_assert_eq(memcmp(q.data, data, sizeof(data)), 0);
	/* Longer than the receiver's limit: refused by the header alone. */
	cr_assert_eq(wire_frame_header(buf, &type, &len, (uint32_t)n - 1), -EPROTO);
	cr_assert_eq(wire_frame_header(buf, &type, &len, WIRE_FRAME_MAX), -EPROTO);
	/* A REP, likewise; its frame length is exactly the reply's. */
	struct wire_rep p = {.op = OP_GET, .req_id = 3, .n = 10, .data = data, .dlen = 10};
	n = wire_rep_encode(buf + WIRE_FRAME_HDR, sizeof(buf) - WIRE_FRAME_HDR, &p);
	cr_assert_eq(n, WIRE_REP_FIXED + 10);
	wire_frame_wrap(buf, WF_REP, (uint32_t)n);
	cr_assert_eq(wire_frame_header(buf, &type, &len, (uint32_t)lim.msg_size), 0);
	cr_assert_eq(type, WF_REP);
	struct wire_rep r;
	cr_assert_eq(wire_rep_decode(buf + WIRE_FRAME_HDR, len, &r, &why), 0);
	cr_assert_eq(r.req_id, 3);
	cr_assert_eq(r.dlen, 10);
	/* The struct frame codec knows no REQ or REP bodies. */
	cr_assert_eq(wire_frame_encode(buf, sizeof(buf), WF_REQ, &q), -EINVAL);
	cr_assert_eq(wire_frame_decode(WF_REP, buf + WIRE_FRAME_HDR, len, &r, &why), -EPROTO);
}

Test(wire, ready_carries_the_pool)
{
	uint8_t buf[WIRE_FRAME_MAX + WIRE_FRAME_HDR];
	struct wire_ready r = {.session = 1,
			       .token = 2,
			       .addr_len = 2,
			       .addr = {9, 8},
			       .pool = {4242, 7, 1ull << 30, 0x1234, 0xabcdef}};
	int n = wire_frame_encode(buf, sizeof(buf), WF_READY, &r);
	cr_assert_gt(n, WIRE_FRAME_HDR);
	struct wire_ready d;
	const char *why;
	uint32_t len = (uint32_t)n - WIRE_FRAME_HDR;
	cr_assert_eq(wire_frame_decode(WF_READY, buf + WIRE_FRAME_HDR, len, &d, &why), 0);
	cr_assert_eq(memcmp(&d.pool, &r.pool, sizeof(r.pool)), 0);
	cr_assert_eq(d.addr[1], 8);
	for (uint32_t l = 0; l < len; l++)
		cr_assert_eq(wire_frame_decode(WF_READY, buf + WIRE_FRAME_HDR, l, &d, &why),
			     -EPROTO);
}

Test(wire, pool_segments_checked)
{
	uint8_t buf[WIRE_MAP_SEGS * WIRE_SEG_SIZE + 16];
	struct wire_seg s[WIRE_MAP_SEGS + 1], d[WIRE_MAP_SEGS];
	uint64_t pool = 64 << 20;
	for (int i = 0; i <= WIRE_MAP_SEGS; i++)
		s[i] = (struct wire_seg){(uint64_t)i << 20, 1000};
	int n = wire_segs_encode(buf, sizeof(buf), s, 3);
	cr_assert_eq(n, 3 * WIRE_SEG_SIZE);
	cr_assert_eq(wire_segs_decode(buf, (size_t)n, 3000, pool, d, WIRE_MAP_SEGS), 3);
	cr_assert_eq(d[2].off, 2 << 20);
	cr_assert_eq(d[2].len, 1000);
	cr_assert_eq(wire_segs_decode(buf, 0, 0, pool, d, WIRE_MAP_SEGS), 0);
	cr_assert_eq(wire_segs_encode(buf, 20, s, 2), -EMSGSIZE);
	/* the total must match, lengths must be whole segments, at most max of them */
	cr_assert_eq(wire_segs_decode(buf, (size_t)n, 2999, pool, d, WIRE_MAP_SEGS), -EPROTO);
	cr_assert_eq(wire_segs_decode(buf, (size_t)n, 3001, pool, d, WIRE_MAP_SEGS), -EPROTO);
	cr_assert_eq(wire_segs_decode(buf, (size_t)n - 1, 3000, pool, d, WIRE_MAP_SEGS), -EPROTO);
	cr_assert_eq(wire_segs_decode(buf, (size_t)n, 3000, pool, d, 2), -EPROTO);
	/* every segment inside the pool, none empty */
	struct wire_seg bad[][1] = {
	    {{pool - 999, 1000}}, {{~0ull, 1000}}, {{0, ~0ull}}, {{pool + 1, 0}}, {{5, 0}}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		n = wire_segs_encode(buf, sizeof(buf), bad[i], 1);
		cr_assert_eq(wire_segs_decode(buf, (size_t)n, bad[i][0].len, pool, d, 4), -EPROTO,
			     "segment %zu", i);
	}
	s[0] = (struct wire_seg){pool - 1000, 1000};
	n = wire_segs_encode(buf, sizeof(buf), s, 1);
	cr_assert_eq(wire_segs_decode(buf, (size_t)n, 1000, pool, d, 4), 1,
		     "the pool's last bytes");
}

Test(wire, entries_and_stats)
{
	uint8_t buf[512];
	struct proto_attr a = {.size = 10, .version = 2, .mode = 0100644};
	int n1 = wire_entry_encode(buf, sizeof(buf), "dir/f", 5, &a);
	int n2 = wire_entry_encode(buf + n1, sizeof(buf) - (size_t)n1, "dir/sub/", 8, NULL);
	cr_assert_gt(n1, 0);
	cr_assert_gt(n2, 0);
	const char *name;
	size_t nlen;
	int pfx;
	struct proto_attr d;
	cr_assert_eq(wire_entry_decode(buf, (size_t)(n1 + n2), &name, &nlen, &pfx, &d), n1);
	cr_assert_eq(pfx, 0);
	cr_assert_eq(d.size, 10);
	cr_assert_eq(wire_entry_decode(buf + n1, (size_t)n2, &name, &nlen, &pfx, &d), n2);
	cr_assert_eq(pfx, 1);
	cr_assert_eq(memcmp(name, "dir/sub/", 8), 0);
	cr_assert_eq(wire_entry_decode(buf + n1, (size_t)n2 - 1, &name, &nlen, &pfx, &d), -EPROTO);

	struct proto_stats st = {.gets = 1, .uptime_s = 77, .provider = "shm"}, o;
	int n = wire_stats_encode(buf, sizeof(buf), &st);
	cr_assert_eq(wire_stats_decode(buf, (size_t)n, &o), 0);
	cr_assert_eq(o.uptime_s, 77);
	cr_assert_str_eq(o.provider, "shm");
	cr_assert_eq(wire_stats_decode(buf, (size_t)n - 1, &o), -EPROTO);
}

/*
 * Found by tests/fuzz (fuzz_stats, corpus/stats/crash-trailing-bytes): a
 * stats payload with bytes after the provider's name decoded, where every
 * other message must be exactly as long as what it holds.
 */
Test(wire, stats_trailing_bytes_refused)
{
	uint8_t buf[512];
	struct proto_stats st = {.gets = 1, .provider = "shm"}, o;
	int n = wire_stats_encode(buf, sizeof(buf), &st);
	cr_assert_gt(n, 0);
	memcpy(buf + n, "shm", 3);
	cr_assert_eq(wire_stats_decode(buf, (size_t)n + 3, &o), -EPROTO);
	cr_assert_eq(wire_stats_decode(buf, (size_t)n + 1, &o), -EPROTO);
	cr_assert_eq(wire_stats_decode(buf, (size_t)n, &o), 0);
}

/*
 * Found by tests/fuzz (fuzz_frame, corpus/frame/crash-error-text-nul): a
 * string (u8 length, bytes) with a NUL among its bytes decoded as the C
 * string before it: an error text, a provider name ("shm\0xyz" as "shm")
 * meant less than its frame said. No encoder writes one (w_str stops at
 * the NUL); every decoder of strings refuses it.
 */
Test(wire, strings_with_a_nul_inside_refused)
{
	uint8_t buf[WIRE_FRAME_MAX + WIRE_FRAME_HDR];
	const char *why;
	struct wire_error e = {-EACCES, "authentication failed"}, de;
	int n = wire_frame_encode(buf, sizeof(buf), WF_ERROR, &e);
	cr_assert_gt(n, WIRE_FRAME_HDR);
	uint8_t *body = buf + WIRE_FRAME_HDR;
	size_t len = (size_t)n - WIRE_FRAME_HDR;
	cr_assert_eq(wire_frame_decode(WF_ERROR, body, len, &de, &why), 0);
	body[4 + 1 + 4] = 0; /* "auth\0ntication failed" */
	cr_assert_eq(wire_frame_decode(WF_ERROR, body, len, &de, &why), -EPROTO);
	body[4 + 1 + 4] = 'e';
	body[len - 1] = 0; /* the last byte too */
	cr_assert_eq(wire_frame_decode(WF_ERROR, body, len, &de, &why), -EPROTO);

	struct wire_welcome w = {.n_provs = 2, .provs = {"shm", "tcp"}}, dw;
	n = wire_frame_encode(buf, sizeof(buf), WF_WELCOME, &w);
	cr_assert_gt(n, WIRE_FRAME_HDR);
	len = (size_t)n - WIRE_FRAME_HDR;
	cr_assert_eq(wire_frame_decode(WF_WELCOME, body, len, &dw, &why), 0);
	body[WIRE_MAC + 32 + 1 + 1 + 1] = 0; /* "s\0m" */
	cr_assert_eq(wire_frame_decode(WF_WELCOME, body, len, &dw, &why), -EPROTO);

	struct wire_setup s = {.provider = "tcp", .addr_len = 1}, ds;
	n = wire_frame_encode(buf, sizeof(buf), WF_SETUP, &s);
	len = (size_t)n - WIRE_FRAME_HDR;
	body[1 + 2] = 0; /* "tc\0" */
	cr_assert_eq(wire_frame_decode(WF_SETUP, body, len, &ds, &why), -EPROTO);

	struct proto_stats st = {.provider = "shm"}, o;
	n = wire_stats_encode(buf, sizeof(buf), &st);
	buf[n - 2] = 0;
	cr_assert_eq(wire_stats_decode(buf, (size_t)n, &o), -EPROTO);
}

/* libkvfs's edge (client/convert.h): a listing entry's attributes reach a kvfs_attr. */
Test(wire, client_conversion)
{
	const struct proto_attr a = {.size = 1ull << 40,
				     .version = 0x0102030405060708ull,
				     .mtime_ns = -5,
				     .atime_ns = 11,
				     .ctime_ns = 1700000000000000001ll,
				     .expiry = 1700000000,
				     .mode = 0100600 | PROTO_MODE_UNSET,
				     .uid = PROTO_ID_UNSET,
				     .gid = 77};
	struct proto_attr p;
	struct kvfs_attr b;
	uint8_t buf[512];
	int n = wire_entry_encode(buf, sizeof(buf), "k", 1, &a);
	cr_assert_gt(n, 0);
	const char *name;
	size_t nlen;
	int pfx;
	cr_assert_eq(wire_entry_decode(buf, (size_t)n, &name, &nlen, &pfx, &p), n);
	attr_from_proto(&b, &p);
	cr_assert_eq(b.size, a.size);
	cr_assert_eq(b.version, a.version);
	cr_assert_eq(b.mtime_ns, a.mtime_ns);
	cr_assert_eq(b.atime_ns, a.atime_ns);
	cr_assert_eq(b.ctime_ns, a.ctime_ns);
	cr_assert_eq(b.expiry, a.expiry);
	cr_assert_eq(b.mode, 0100600 | KVFS_MODE_UNSET);
	cr_assert_eq(b.uid, KVFS_ID_UNSET);
	cr_assert_eq(b.gid, a.gid);

	const struct kvfs_setattr sa = {.mask = KVFS_SET_MODE | KVFS_SET_TTL | KVFS_SET_GID |
						KVFS_SET_ATIME,
					.mode = 0100640,
					.uid = 3,
					.gid = 4,
					.mtime_ns = -1,
					.atime_ns = 12,
					.ttl = 60};
	struct proto_setattr ps = {0};
	setattr_to_proto(&ps, NULL);
	cr_assert_eq(ps.mask, 0, "no setattr: nothing set");
	setattr_to_proto(&ps, &sa);
	cr_assert_eq(ps.mask, PROTO_SET_MODE | PROTO_SET_TTL | PROTO_SET_GID | PROTO_SET_ATIME);
	cr_assert_eq(ps.atime_ns, sa.atime_ns);
	cr_assert_eq(ps.mode, sa.mode);
	cr_assert_eq(ps.uid, sa.uid);
	cr_assert_eq(ps.gid, sa.gid);
	cr_assert_eq(ps.mtime_ns, sa.mtime_ns);
	cr_assert_eq(ps.ttl, sa.ttl);

	struct proto_stats st = {
	    .gets = 1, .deletes = 5, .keys = 10, .uptime_s = 14, .provider = "tcp"};
	struct kvfs_stats ks;
	stats_from_proto(&ks, &st);
	cr_assert_eq(ks.gets, 1);
	cr_assert_eq(ks.deletes, 5);
	cr_assert_eq(ks.keys, 10);
	cr_assert_eq(ks.uptime_s, 14);
	cr_assert_str_eq(ks.provider, "tcp");
}

Test(wire, mac_depends_on_secret_and_nonces)
{
	uint8_t a[WIRE_NONCE] = {1}, b[WIRE_NONCE] = {2}, m1[WIRE_MAC], m2[WIRE_MAC];
	wire_mac(m1, (const uint8_t *)"secret", 6, "kvfs-client", a, b);
	wire_mac(m2, (const uint8_t *)"secret", 6, "kvfs-client", a, b);
	cr_assert(wire_mac_equal(m1, m2));
	wire_mac(m2, (const uint8_t *)"secreT", 6, "kvfs-client", a, b);
	cr_assert_not(wire_mac_equal(m1, m2));
	wire_mac(m2, (const uint8_t *)"secret", 6, "kvfs-server", a, b);
	cr_assert_not(wire_mac_equal(m1, m2));
	wire_mac(m2, (const uint8_t *)"secret", 6, "kvfs-client", b, a);
	cr_assert_not(wire_mac_equal(m1, m2));
}

/*
 * Frame MACs: carried through encode/decode, covering every field and the
 * type, independent of the mac field's own content, and keyed.
 */
Test(wire, frame_mac_binds_every_field)
{
	uint8_t a[WIRE_NONCE] = {1}, b[WIRE_NONCE] = {2}, k1[WIRE_MAC], k2[WIRE_MAC];
	uint8_t m1[WIRE_MAC], m2[WIRE_MAC], buf[WIRE_FRAME_MAX + WIRE_FRAME_HDR];
	wire_session_key(k1, (const uint8_t *)"secret", 6, a, b);
	wire_session_key(k2, (const uint8_t *)"secret", 6, b, a);
	cr_assert_not(wire_mac_equal(k1, k2), "the key depends on the nonces' order");
	struct wire_ready r = {.session = 1,
			       .addr_len = 2,
			       .addr = {9, 8},
			       .pool = {4242, 7, 1ull << 30, 0x1234, 0xabcdef}};
	cr_assert_eq(wire_frame_mac(m1, k1, WF_READY, &r), 0);
	memcpy(r.mac, m1, WIRE_MAC);
	cr_assert_eq(wire_frame_mac(m2, k1, WF_READY, &r), 0);
	cr_assert(wire_mac_equal(m1, m2), "the mac field itself is not covered");
	int n = wire_frame_encode(buf, sizeof(buf), WF_READY, &r);
	struct wire_ready d;
	const char *why;
	cr_assert_eq(
	    wire_frame_decode(WF_READY, buf + WIRE_FRAME_HDR, (size_t)n - WIRE_FRAME_HDR, &d, &why),
	    0);
	cr_assert_eq(memcmp(d.mac, m1, WIRE_MAC), 0);
	cr_assert_eq(wire_frame_mac(m2, k1, WF_READY, &d), 0);
	cr_assert(wire_mac_equal(m1, m2), "decoded READY verifies");
	cr_assert_eq(wire_frame_mac(m2, k2, WF_READY, &d), 0);
	cr_assert_not(wire_mac_equal(m1, m2), "another handshake's key");
	d.pool.fd = 8;
	cr_assert_eq(wire_frame_mac(m2, k1, WF_READY, &d), 0);
	cr_assert_not(wire_mac_equal(m1, m2), "a changed pool");
	struct wire_setup s = {.provider = "tcp", .addr_len = 1, .recv = {1, 2, 3}};
	struct wire_welcome w = {.limits = {1, 2, 3, 4}, .n_provs = 1, .provs = {"tcp"}};
	cr_assert_eq(wire_frame_mac(m1, k1, WF_SETUP, &s), 0);
	s.staging.key = 1;
	cr_assert_eq(wire_frame_mac(m2, k1, WF_SETUP, &s), 0);
	cr_assert_not(wire_mac_equal(m1, m2), "a changed setup");
	cr_assert_eq(wire_frame_mac(m1, k1, WF_WELCOME, &w), 0);
	w.limits.max_value = 5;
	cr_assert_eq(wire_frame_mac(m2, k1, WF_WELCOME, &w), 0);
	cr_assert_not(wire_mac_equal(m1, m2), "changed limits");
	struct wire_error e = {0};
	cr_assert_eq(wire_frame_mac(m1, k1, WF_ERROR, &e), -EINVAL);
}

/*
 * wire_random without getrandom(2): a seccomp filter makes the calls in
 * nrs[] fail with err in this (the test's own) process, as an old kernel or
 * a sandbox would.
 */
static void refuse_syscalls(const int *nrs, int n, int err)
{
	struct sock_filter f[16];
	int k = 0;
	f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
					      offsetof(struct seccomp_data, nr));
	for (int i = 0; i < n; i++) {
		f[k++] =
		    (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nrs[i], 0, 1);
		f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
						      SECCOMP_RET_ERRNO | (unsigned)err);
	}
	f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = {.len = (unsigned short)k, .filter = f};
	cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0, "seccomp: %s",
		     strerror(errno));
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

Test(wire, random_without_getrandom_falls_back)
{
	int nrs[] = {SYS_getrandom};
	refuse_syscalls(nrs, 1, ENOSYS);
	uint8_t a[64] = {0}, b[64] = {0};
	wire_random(a, sizeof(a));
	wire_random(b, sizeof(b));
	cr_assert_not(all_zero(a, sizeof(a)));
	cr_assert_neq(memcmp(a, b, sizeof(a)), 0, "two draws are the same bytes");
}

/* No randomness anywhere: a message and abort, not a loop or zeros. */
Test(wire, random_with_no_source_aborts, .signal = SIGABRT)
{
	int nrs[] = {SYS_getrandom, SYS_openat, SYS_open};
	refuse_syscalls(nrs, 3, EPERM);
	uint8_t a[32];
	wire_random(a, sizeof(a));
	cr_assert_fail("wire_random returned without a source of random bytes");
}

/* Encode entries (NULL attr: a prefix) one after another into buf. */
static size_t put_entries(uint8_t *buf, size_t cap, const char *const *names, int n)
{
	size_t pos = 0;
	struct proto_attr a = {.size = 1, .mode = 0100644};
	for (int i = 0; i < n; i++) {
		size_t l = strlen(names[i]);
		int k = wire_entry_encode(buf + pos, cap - pos, names[i], l,
					  names[i][l - 1] == '/' ? NULL : &a);
		cr_assert_gt(k, 0);
		pos += (size_t)k;
	}
	return pos;
}

Test(wire, listing_batches_checked)
{
	uint8_t buf[1024];
	struct wire_entry e[8];
	const char *why = "";
	const char *good[] = {"d/a", "d/a.txt", "d/b/", "d/c"};
	size_t len = put_entries(buf, sizeof(buf), good, 4);
	cr_assert_eq(wire_list_decode(buf, len, 4, "d/", 2, NULL, 0, e, &why), 0, "%s", why);
	cr_assert_eq(e[2].is_prefix, 1);
	cr_assert_eq(e[3].nlen, 3);
	cr_assert_eq(wire_list_decode(buf, len, 4, "d/", 2, "d/", 2, e, &why), 0, "%s", why);
	/* the count: more than the bytes can hold, or not the entries there are */
	cr_assert_not(wire_list_count_ok(UINT64_MAX, len));
	cr_assert_eq(wire_list_decode(buf, len, 1000000, "d/", 2, NULL, 0, e, &why), -EPROTO);
	cr_assert_eq(wire_list_decode(buf, len, 3, "d/", 2, NULL, 0, e, &why), -EPROTO);
	cr_assert_eq(wire_list_decode(buf, len - 1, 4, "d/", 2, NULL, 0, e, &why), -EPROTO);
	/* a batch that repeats the cursor, or starts before it: no progress */
	cr_assert_eq(wire_list_decode(buf, len, 4, "d/", 2, "d/a", 3, e, &why), -EPROTO);
	cr_assert_str_eq(why, "names out of order or repeated");
	cr_assert_eq(wire_list_decode(buf, len, 4, "d/", 2, "d/z", 3, e, &why), -EPROTO);
	const char *dup[] = {"d/a", "d/a"}, *back[] = {"d/b", "d/a"}, *out[] = {"e/a"},
		   *empty[] = {""};
	len = put_entries(buf, sizeof(buf), dup, 2);
	cr_assert_eq(wire_list_decode(buf, len, 2, "d/", 2, NULL, 0, e, &why), -EPROTO);
	len = put_entries(buf, sizeof(buf), back, 2);
	cr_assert_eq(wire_list_decode(buf, len, 2, "d/", 2, NULL, 0, e, &why), -EPROTO);
	len = put_entries(buf, sizeof(buf), out, 1);
	cr_assert_eq(wire_list_decode(buf, len, 1, "d/", 2, NULL, 0, e, &why), -EPROTO);
	cr_assert_str_eq(why, "a name outside the prefix");
	int k = wire_entry_encode(buf, sizeof(buf), empty[0], 0, NULL);
	cr_assert_eq(wire_list_decode(buf, (size_t)k, 1, "", 0, NULL, 0, e, &why), -EPROTO);
	/* an empty batch is fine */
	cr_assert_eq(wire_list_decode(buf, 0, 0, "d/", 2, "d/c", 3, e, &why), 0);
}

/* The stored form of a device number is fixed: major then minor, 32-bit little-endian each. */
Test(devnum, fixed_encoding_round_trips)
{
	unsigned char b[DEVNUM_LEN];
	uint32_t ma, mi;
	devnum_encode(1, 3, b);
	cr_assert_eq(memcmp(b, "\1\0\0\0\3\0\0\0", DEVNUM_LEN), 0);
	devnum_encode(0x01020304, 0xa0b0c0d0, b);
	cr_assert_eq(memcmp(b, "\4\3\2\1\xd0\xc0\xb0\xa0", DEVNUM_LEN), 0);
	cr_assert_eq(devnum_decode(b, sizeof(b), &ma, &mi), 0);
	cr_assert_eq(ma, 0x01020304u);
	cr_assert_eq(mi, 0xa0b0c0d0u);
	devnum_encode(4095, 0xfffff, b);
	cr_assert_eq(devnum_decode(b, sizeof(b), &ma, &mi), 0);
	cr_assert(ma == 4095 && mi == 0xfffff);
}

Test(devnum, other_lengths_refused)
{
	unsigned char b[DEVNUM_LEN + 1] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
	uint32_t ma = 7, mi = 7;
	cr_assert_eq(devnum_decode(b, 0, &ma, &mi), -EINVAL);
	cr_assert(ma == 0 && mi == 0);
	cr_assert_eq(devnum_decode(b, DEVNUM_LEN - 1, &ma, &mi), -EINVAL);
	cr_assert_eq(devnum_decode(b, DEVNUM_LEN + 1, &ma, &mi), -EINVAL);
	cr_assert(ma == 0 && mi == 0);
}
