/*
 * fuzz_seeds: writes the seed corpus of the fuzz targets (README
 * "Fuzzing"), every seed a real message made by wire.c's encoders, so the
 * corpus in tests/fuzz/corpus/TARGET/gen-* says what it holds:
 *   fuzz_seeds DIR          write DIR/TARGET/gen-NAME (the directories exist)
 *   fuzz_seeds --check DIR  exit 1 unless the gen- files are exactly what this writes
 * Inputs found by fuzzing (crashes and all) sit beside them under other names.
 */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire.h"

static const char *dir;
static int checking, bad, count;
#define MAX_SEEDS 256
static char written[MAX_SEEDS][64]; /* TARGET/gen-NAME of every seed */

/* One seed: written, or compared with the file there. */
static void seed(const char *target, const char *name, const void *buf, size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s/gen-%s", dir, target, name);
	if (count < MAX_SEEDS)
		snprintf(written[count], sizeof(written[0]), "%s/gen-%s", target, name);
	count++;
	if (checking) {
		static uint8_t have[1 << 16];
		FILE *f = fopen(path, "rb");
		size_t n = f ? fread(have, 1, sizeof(have), f) : 0;
		if (!f || n != len || memcmp(have, buf, len) != 0) {
			fprintf(stderr,
				"fuzz_seeds: %s is not what the encoders write (run "
				"fuzz_seeds on the corpus)\n",
				path);
			bad = 1;
		}
		if (f)
			fclose(f);
		return;
	}
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f)) {
		fprintf(stderr, "fuzz_seeds: %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

/* A buffer that seeds are appended to (a stream of frames, a listing). */
struct acc {
	uint8_t b[1 << 15];
	size_t n;
};
static void add(struct acc *a, const void *p, int n)
{
	if (n < 0 || (size_t)n > sizeof(a->b) - a->n) {
		fprintf(stderr, "fuzz_seeds: an encoder failed (%d)\n", n);
		exit(1);
	}
	memcpy(a->b + a->n, p, (size_t)n);
	a->n += (size_t)n;
}
static void add_frame(struct acc *a, uint16_t type, const void *body)
{
	uint8_t f[WIRE_FRAME_HDR + WIRE_FRAME_MAX];
	add(a, f, wire_frame_encode(f, sizeof(f), type, body));
}
static void add_body(struct acc *a, uint16_t type, const uint8_t *body, int n)
{
	uint8_t h[WIRE_FRAME_HDR];
	if (n < 0)
		add(a, h, n);
	wire_frame_wrap(h, type, (uint32_t)n);
	add(a, h, sizeof(h));
	add(a, body, n);
}

static const struct wire_hello hello = {.proto = WIRE_PROTO,
					.nonce = "client nonce, 32 bytes long...."};
static const struct wire_challenge ch_auth = {1, "server nonce, 32 bytes long...."};
static const struct wire_challenge ch_open = {0, "another nonce, 32 bytes long..."};
static const uint8_t mac[WIRE_MAC] = "a MAC of the secret and nonces.";
static const struct wire_welcome welcome = {.mac = "the server's MAC of the nonces.",
					    .limits = {PROTO_MAX_KEY, 1ull << 30, 4096, 16384},
					    .n_provs = 2,
					    .provs = {"shm", "tcp"}};
static const struct wire_setup setup = {.provider = "tcp",
					.addr_len = 16,
					.addr = {2, 0, 0x9c, 0x41, 127, 0, 0, 1},
					.recv = {0x7f0000000000ull, 1 << 20, 0x1234},
					.staging = {0x7f0000100000ull, 1 << 20, 0x5678}};
static const struct wire_ready ready = {.session = 7,
					.token = 0x0123456789abcdefull,
					.addr_len = 16,
					.addr = {2, 0, 0x9c, 0x42, 127, 0, 0, 1},
					.pool = {4242, 9, 64 << 20, 0x2d, 123456}};
static const struct wire_error error = {-EACCES, "authentication failed: wrong secret"};

static void frames(void)
{
	static const struct {
		const char *name;
		uint16_t type;
		const void *body;
	} f[] = {
	    {"hello", WF_HELLO, &hello},	   {"challenge-auth", WF_CHALLENGE, &ch_auth},
	    {"challenge", WF_CHALLENGE, &ch_open}, {"auth", WF_AUTH, mac},
	    {"welcome", WF_WELCOME, &welcome},	   {"setup", WF_SETUP, &setup},
	    {"ready", WF_READY, &ready},	   {"error", WF_ERROR, &error},
	};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		struct acc a = {.n = 0};
		add_frame(&a, f[i].type, f[i].body);
		seed("frame", f[i].name, a.b, a.n);
	}
}

#define K(s)  .key = (const uint8_t *)(s), .klen = sizeof(s) - 1
#define K2(s) .key2 = (const uint8_t *)(s), .k2len = sizeof(s) - 1
#define D(s)  .data = (const uint8_t *)(s), .dlen = sizeof(s) - 1

/* One request of every op, as libkvfs sends them. */
static const struct {
	const char *name;
	struct wire_req q;
} reqs[] = {
    {"ping", {.op = OP_PING, .session = 7, .token = 99, .req_id = 1}},
    {"get",
     {.op = OP_GET,
      .session = 7,
      .token = 99,
      .req_id = 2,
      .len = 1 << 20,
      .buf = {REGION_RECV, 0, 1 << 20},
      K("dir/file")}},
    {"get-direct", {.op = OP_GET, .req_id = 3, .len = 4096, K("small")}},
    {"put",
     {.op = OP_PUT,
      .req_id = 4,
      .len = 5,
      .sa = {.mask = PROTO_SET_MODE, .mode = 0100600},
      K("dir/file"),
      D("hello")}},
    {"put-staged",
     {.op = OP_PUT,
      .session = 7,
      .token = 99,
      .req_id = 5,
      .len = 1 << 16,
      .buf = {REGION_STAGING, 4096, 1 << 16},
      .sa = {.mask = PROTO_SET_TTL | PROTO_SET_MTIME | PROTO_SET_ATIME,
	     .mtime_ns = 1700000000000000000ll,
	     .atime_ns = 1690000000000000000ll,
	     .ttl = 60},
      K("big")}},
    {"delete", {.op = OP_DELETE, .req_id = 6, K("dir/file")}},
    {"stat", {.op = OP_STAT, .req_id = 7, K("dir/file")}},
    {"setattr",
     {.op = OP_SETATTR,
      .req_id = 8,
      .sa = {.mask = PROTO_SET_MODE | PROTO_SET_UID | PROTO_SET_GID,
	     .mode = 0100640,
	     .uid = 1000,
	     .gid = 1000},
      K("dir/file")}},
    {"rename", {.op = OP_RENAME, .flags = RQ_NOREPLACE, .req_id = 9, K("dir/a"), K2("dir/b")}},
    {"list",
     {.op = OP_LIST,
      .flags = RQ_DELIM,
      .session = 7,
      .token = 99,
      .req_id = 10,
      .len = 1000,
      .buf = {REGION_RECV, 0, 1 << 20},
      K("dir/"),
      K2("dir/b")}},
    {"up-open",
     {.op = OP_UP_OPEN, .flags = RQ_KEEP, .session = 7, .token = 99, .req_id = 11, K("dir/file")}},
    {"up-write",
     {.op = OP_UP_WRITE,
      .session = 7,
      .token = 99,
      .req_id = 12,
      .off = 4096,
      .len = 3,
      .handle = 1,
      D("abc")}},
    {"up-trunc",
     {.op = OP_UP_TRUNC, .session = 7, .token = 99, .req_id = 13, .len = 10, .handle = 1}},
    {"up-commit",
     {.op = OP_UP_COMMIT,
      .session = 7,
      .token = 99,
      .req_id = 14,
      .handle = 1,
      .sa = {.mask = PROTO_SET_MTIME, .mtime_ns = 1700000000000000000ll}}},
    {"up-abort", {.op = OP_UP_ABORT, .session = 7, .token = 99, .req_id = 15, .handle = 2}},
    {"reg",
     {.op = OP_REG,
      .session = 7,
      .token = 99,
      .req_id = 16,
      .off = 3,
      .handle = 0xabcd,
      .buf = {0, 0x7f0000200000ull, 1 << 20}}},
    {"unreg", {.op = OP_UNREG, .session = 7, .token = 99, .req_id = 17, .handle = REGION_USER0}},
    {"stats", {.op = OP_STATS, .req_id = 18}},
    {"up-read",
     {.op = OP_UP_READ, .session = 7, .token = 99, .req_id = 19, .len = 4096, .handle = 1}},
    {"pin", {.op = OP_PIN, .session = 7, .token = 99, .req_id = 20, K("dir/file")}},
    {"pin-get",
     {.op = OP_PIN_GET, .session = 7, .token = 99, .req_id = 21, .len = 100, .handle = 3}},
    {"pin-map",
     {.op = OP_PIN_GET,
      .flags = RQ_MAP,
      .session = 7,
      .token = 99,
      .req_id = 22,
      .len = 1 << 20,
      .handle = 3}},
    {"unpin", {.op = OP_UNPIN, .session = 7, .token = 99, .req_id = 23, .handle = 3}},
};

static int enc_req(uint8_t *buf, size_t cap, const struct wire_req *q)
{
	return wire_req_encode(buf, cap, q);
}

static const struct proto_attr attr = {.size = 5,
				       .version = 12,
				       .mtime_ns = 1700000000123456789ll,
				       .atime_ns = 1690000000000000001ll,
				       .ctime_ns = 1700000000123456790ll,
				       .mode = 0100644,
				       .uid = 1000,
				       .gid = 1000};
static const struct proto_stats stats = {.gets = 100,
					 .hits = 90,
					 .misses = 10,
					 .puts = 50,
					 .deletes = 3,
					 .evictions = 1,
					 .expirations = 2,
					 .bytes_in = 1 << 20,
					 .bytes_out = 1 << 21,
					 .keys = 46,
					 .pool_size = 64 << 20,
					 .pool_used = 3 << 20,
					 .sessions = 2,
					 .uptime_s = 3600,
					 .dropped_requests = 4,
					 .stalled_sessions = 1,
					 .provider = "shm"};

/* A listing batch of names after cursor (every name under "dir/"). */
static int listing(uint8_t *buf, size_t cap, const char *const *names, int n)
{
	size_t pos = 0;
	for (int i = 0; i < n; i++) {
		size_t len = strlen(names[i]);
		int pfx = names[i][len - 1] == '/';
		int k = wire_entry_encode(buf + pos, cap - pos, names[i], len, pfx ? NULL : &attr);
		if (k < 0)
			return k;
		pos += (size_t)k;
	}
	return (int)pos;
}
static const char *const batch[] = {"dir/b", "dir/c/", "dir/d"};

static void messages(void)
{
	uint8_t b[1 << 15];
	struct acc a;
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		a.n = 0;
		add(&a, b, enc_req(b, sizeof(b), &reqs[i].q));
		seed("req", reqs[i].name, a.b, a.n);
	}

	uint8_t data[1024];
	int n;
	struct wire_rep reps[] = {
	    {.op = OP_GET,
	     .req_id = 2,
	     .n = 5,
	     .attr = attr,
	     .data = (const uint8_t *)"hello",
	     .dlen = 5},
	    {.op = OP_PUT, .req_id = 4, .attr = attr},
	    {.op = OP_STAT, .status = -ENOENT, .req_id = 7},
	    {.op = OP_LIST, .flags = RP_MORE, .req_id = 10, .n = 3},
	    {.op = OP_PIN, .req_id = 20, .handle = 3, .attr = attr},
	    {.op = OP_PIN_GET, .req_id = 22, .n = 10000, .attr = attr},
	    {.op = OP_STATS, .req_id = 18},
	    {.op = OP_INVAL, .n = 2},
	};
	const char *names[] = {"get", "put", "enoent", "list", "pin", "pin-map", "stats", "inval"};
	n = listing(data, sizeof(data), batch, 3);
	reps[3].data = data, reps[3].dlen = (uint32_t)n;
	struct wire_seg segs[] = {{0, 4096}, {8192, 4096}, {65536, 1808}};
	uint8_t sb[sizeof(segs) / sizeof(segs[0]) * WIRE_SEG_SIZE];
	n = wire_segs_encode(sb, sizeof(sb), segs, 3);
	reps[5].data = sb, reps[5].dlen = (uint32_t)n;
	uint8_t st[256];
	n = wire_stats_encode(st, sizeof(st), &stats);
	reps[6].data = st, reps[6].dlen = (uint32_t)n;
	uint8_t inv[64];
	n = wire_inval_encode(inv, sizeof(inv), WIRE_INVAL_CHANGED, "dir/file", 8);
	n += wire_inval_encode(inv + n, sizeof(inv) - (size_t)n, WIRE_INVAL_GONE, "dir/", 4);
	reps[7].data = inv, reps[7].dlen = (uint32_t)n;
	for (size_t i = 0; i < sizeof(reps) / sizeof(reps[0]); i++) {
		a.n = 0;
		add(&a, b, wire_rep_encode(b, sizeof(b), &reps[i]));
		seed("rep", names[i], a.b, a.n);
	}

	/* list: [plen][clen][u16 n][prefix][cursor][entries] */
	static const struct {
		const char *name, *prefix, *cursor;
		int n;
	} lists[] = {{"after-cursor", "dir/", "dir/a", 3},
		     {"first", "dir/", "", 3},
		     {"root", "", "", 3},
		     {"empty", "dir/", "dir/z", 0}};
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		uint8_t h[4] = {(uint8_t)strlen(lists[i].prefix), (uint8_t)strlen(lists[i].cursor),
				(uint8_t)lists[i].n, 0};
		a.n = 0;
		add(&a, h, 4);
		add(&a, lists[i].prefix, h[0]);
		add(&a, lists[i].cursor, h[1]);
		add(&a, data, listing(data, sizeof(data), batch, lists[i].n));
		seed("list", lists[i].name, a.b, a.n);
	}

	/* segs: [u64 total][u64 pool_len][segments] */
	static const struct {
		const char *name;
		uint64_t total, pool;
		int n;
	} sg[] = {{"three", 10000, 64 << 20, 3}, {"one", 4096, 64 << 20, 1}};
	for (size_t i = 0; i < sizeof(sg) / sizeof(sg[0]); i++) {
		uint64_t hdr[2] = {htole64(sg[i].total), htole64(sg[i].pool)};
		a.n = 0;
		add(&a, &hdr, sizeof(hdr));
		add(&a, sb, wire_segs_encode(sb, sizeof(sb), segs, sg[i].n));
		seed("segs", sg[i].name, a.b, a.n);
	}

	struct proto_stats big = stats;
	big.gets = UINT64_MAX;
	big.uptime_s = 1ull << 40;
	snprintf(big.provider, sizeof(big.provider), "verbs;ofi_rxm");
	a.n = 0;
	add(&a, st, wire_stats_encode(st, sizeof(st), &stats));
	seed("stats", "shm", a.b, a.n);
	a.n = 0;
	add(&a, st, wire_stats_encode(st, sizeof(st), &big));
	seed("stats", "verbs", a.b, a.n);
}

/* Byte streams of a whole bootstrap, as the fuzz_sock target reads them. */
static void streams(void)
{
	uint8_t b[1 << 15];
	struct acc a;
	uint8_t side;

	side = 0; /* server: hello, auth, two direct requests, setup */
	a.n = 0;
	add(&a, &side, 1);
	add_frame(&a, WF_HELLO, &hello);
	add_frame(&a, WF_AUTH, mac);
	add_body(&a, WF_REQ, b, enc_req(b, sizeof(b), &reqs[2].q));
	add_body(&a, WF_REQ, b, enc_req(b, sizeof(b), &reqs[3].q));
	add_frame(&a, WF_SETUP, &setup);
	seed("sock", "server", a.b, a.n);

	side = 1; /* client, fabric session: challenge, welcome, ready */
	a.n = 0;
	add(&a, &side, 1);
	add_frame(&a, WF_CHALLENGE, &ch_auth);
	add_frame(&a, WF_WELCOME, &welcome);
	add_frame(&a, WF_READY, &ready);
	seed("sock", "client", a.b, a.n);

	side = 1; /* client refused at once */
	a.n = 0;
	add(&a, &side, 1);
	add_frame(&a, WF_ERROR, &error);
	seed("sock", "client-refused", a.b, a.n);

	side = 3; /* client, direct: challenge, welcome, a reply, an error */
	a.n = 0;
	add(&a, &side, 1);
	add_frame(&a, WF_CHALLENGE, &ch_open);
	add_frame(&a, WF_WELCOME, &welcome);
	struct wire_rep rep = {.op = OP_GET,
			       .req_id = 3,
			       .n = 5,
			       .attr = attr,
			       .data = (const uint8_t *)"hello",
			       .dlen = 5};
	add_body(&a, WF_REP, b, wire_rep_encode(b, sizeof(b), &rep));
	struct wire_error e = {-ESHUTDOWN, "server is shutting down"};
	add_frame(&a, WF_ERROR, &e);
	seed("sock", "client-direct", a.b, a.n);
}

/* --check: a gen- file this does not write (a seed renamed or dropped) is stale. */
static void stale(const char *target)
{
	char path[4096], name[64];
	snprintf(path, sizeof(path), "%s/%s", dir, target);
	DIR *d = opendir(path);
	if (!d) {
		fprintf(stderr, "fuzz_seeds: %s: %s\n", path, strerror(errno));
		bad = 1;
		return;
	}
	for (struct dirent *e; (e = readdir(d));) {
		if (strncmp(e->d_name, "gen-", 4) != 0)
			continue;
		snprintf(name, sizeof(name), "%s/%s", target, e->d_name);
		int known = 0;
		for (int i = 0; i < count && i < MAX_SEEDS && !known; i++)
			known = strcmp(written[i], name) == 0;
		if (!known) {
			fprintf(stderr, "fuzz_seeds: %s/%s is no seed of fuzz_seeds (stale)\n", dir,
				name);
			bad = 1;
		}
	}
	closedir(d);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--check") == 0) {
		checking = 1;
		dir = argv[2];
	} else if (argc == 2 && argv[1][0] != '-') {
		dir = argv[1];
	} else {
		fprintf(stderr, "usage: fuzz_seeds [--check] CORPUS_DIR\n");
		return 2;
	}
	frames();
	messages();
	streams();
	if (count > MAX_SEEDS) {
		fprintf(stderr, "fuzz_seeds: more than %d seeds\n", MAX_SEEDS);
		return 1;
	}
	static const char *const targets[] = {"frame", "req",	"rep", "list",
					      "segs",  "stats", "sock"};
	for (size_t i = 0; checking && i < sizeof(targets) / sizeof(targets[0]); i++)
		stale(targets[i]);
	if (!bad)
		printf("fuzz_seeds: %d seeds %s\n", count,
		       checking ? "as the encoders write them" : "written");
	return bad;
}
