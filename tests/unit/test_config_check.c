/*
 * Unit tests of src/common/config_check.c: the defaults, the size and
 * address parsers and the cross-field rules (config_validate, unique server
 * names, max_value <= memory).
 */
#include "config_fixture.h"

static void check_defaults(const struct kvfs_config *c)
{
	cr_assert_str_eq(c->provider, "auto");
	cr_assert_eq(c->n_domains, 0);
	cr_assert_eq(c->inline_threshold, 4096);
	cr_assert_eq(c->server_memory, 1ull << 30);
	cr_assert_eq(c->server_max_value, 1ull << 30);
	cr_assert_eq(c->eviction, KVFS_EVICT_LRU);
	cr_assert_eq(c->client_buffer, 64ull << 20);
	cr_assert_eq(c->timeout_ms, 2000);
	cr_assert_eq(c->secret_file[0], '\0');
	cr_assert_eq(c->secret_len, 0);
}

Test(config, defaults)
{
	struct kvfs_config *c;

	config_defaults(&cfg);
	check_defaults(&cfg);
	cr_assert_eq(cfg.n_servers, 0);
	cr_assert_eq(cfg.path[0], '\0');

	expect_ok(SRV);
	check_defaults(&cfg);
	cr_assert_eq(cfg.n_servers, 1);

	c = kvfs_config_new();
	cr_assert_not_null(c);
	check_defaults(c);
	cr_assert_eq(c->n_servers, 0);
	kvfs_config_free(c);
	kvfs_config_free(NULL);
}

Test(config, parse_size_good)
{
	static const struct {
		const char *s;
		uint64_t v;
	} good[] = {
	    {"0", 0},
	    {"512", 512},
	    {"512B", 512},
	    {"4K", 4096},
	    {"4k", 4096},
	    {"4KB", 4096},
	    {"4KiB", 4096},
	    {"4kib", 4096},
	    {"64M", 64ull << 20},
	    {"64MiB", 64ull << 20},
	    {"64mb", 64ull << 20},
	    {"1G", 1ull << 30},
	    {"1GiB", 1ull << 30},
	    {"2T", 2ull << 40},
	    {"2TB", 2ull << 40},
	    {"1 G", 1ull << 30},
	    {"16777215T", 16777215ull << 40},
	    {"18446744073709551615", UINT64_MAX},
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		uint64_t v = 1;
		cr_assert_eq(config_parse_size(good[i].s, &v), 0, "\"%s\"", good[i].s);
		cr_assert_eq(v, good[i].v, "\"%s\" -> %llu", good[i].s, (unsigned long long)v);
	}
}

Test(config, parse_size_bad)
{
	static const char *const bad[] = {
	    "12Q",    "-1",    "99999999999G", "",
	    "K",      "G1",    "1.5G",	       "64Mi",
	    "64iB",   " 64M",  "64M ",	       "+64M",
	    "0x10",   "64MBB", "16777216T",    "18446744073709551616",
	    "64 M B",
	};
	uint64_t v = 42;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(config_parse_size(bad[i], &v), -EINVAL, "\"%s\" accepted", bad[i]);
	cr_assert_eq(config_parse_size(NULL, &v), -EINVAL);
	cr_assert_eq(v, 42, "output written on failure");
}

Test(config, addresses)
{
	static const char *const bad[] = {
	    "127.0.0.1",    "127.0.0.1:0",    "127.0.0.1:70000", "127.0.0.1:",	     ":7400",
	    "::1:7400",	    "[::1]7400",      "[::1]",		 "[]:7400",	     "[::1:7400",
	    "127.0.0.1:-1", "h:+80",	      "a b:80",		 "127.0.0.1:123456", "",
	    "[zz::1]:7400", "[1.2.3.4]:7400",
	};
	struct kvfs_server_entry e;

	memset(&e, 0, sizeof(e));
	cr_assert_eq(config_parse_address("[::1]:7400", &e), 0);
	cr_assert_str_eq(e.host, "::1");
	cr_assert_str_eq(e.port, "7400");
	cr_assert_eq(config_parse_address("[fe80::1%eth0]:1", &e), 0);
	cr_assert_str_eq(e.host, "fe80::1%eth0");
	cr_assert_eq(config_parse_address("127.0.0.1:65535", &e), 0);
	cr_assert_str_eq(e.host, "127.0.0.1");
	cr_assert_str_eq(e.port, "65535");
	cr_assert_eq(config_parse_address("node-1.example.com:1", &e), 0);
	cr_assert_str_eq(e.host, "node-1.example.com");
	cr_assert_str_eq(e.port, "1");
	cr_assert_eq(config_parse_address("h:007400", &e), -EINVAL); /* over 5 digits */
	cr_assert_eq(config_parse_address("h:07400", &e), 0);
	cr_assert_str_eq(e.port, "7400");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(config_parse_address(bad[i], &e), -EINVAL, "\"%s\" accepted", bad[i]);
	cr_assert_eq(config_parse_address(NULL, &e), -EINVAL);

	static const char *const in_file[] = {"127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000"};
	for (size_t i = 0; i < 3; i++) {
		char text[256];
		snprintf(
		    text, sizeof(text),
		    "cluster = { servers = (\n  { name = \"a\";\n    address = \"%s\"; } ); };\n",
		    in_file[i]);
		expect_error(text, 3, "cluster.servers[0].address");
		cr_assert_not_null(strstr(err, in_file[i]), "%s", err);
		cr_assert_not_null(strstr(err, "host:port"), "%s", err);
	}
	expect_ok("cluster = { servers = ( { name = \"a\"; address = \"[::1]:7400\"; } ); };\n");
	cr_assert_str_eq(cfg.servers[0].host, "::1");
}

Test(config, duplicate_server_names)
{
	expect_error(
	    "cluster = {\n  servers = (\n    { name = \"a\"; address = \"127.0.0.1:1\"; },\n"
	    "    { name = \"b\"; address = \"127.0.0.1:2\"; },\n"
	    "    { name = \"a\"; address = \"127.0.0.1:3\"; }\n  );\n};\n",
	    5, "cluster.servers[2].name");
	cr_assert_not_null(strstr(err, "cluster.servers[0]"), "%s", err);

	/* built in code: config_validate() catches it too */
	config_defaults(&cfg);
	cr_assert_eq(kvfs_config_add_server(&cfg, "a", "127.0.0.1:1"), 0);
	cr_assert_eq(kvfs_config_add_server(&cfg, "a", "127.0.0.1:2"), -EEXIST);
	cr_assert_eq(cfg.n_servers, 1);
	cfg.servers[1] = cfg.servers[0];
	cfg.n_servers = 2;
	cr_assert_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "cluster.servers"), "%s", err);
	cr_assert_not_null(strstr(err, "valid"), "%s", err);
}

Test(config, max_value_larger_than_memory)
{
	expect_error(SRV "server = {\n  memory = \"64M\";\n  max_value = \"128M\";\n};\n", 4,
		     "server.max_value");
	cr_assert_not_null(strstr(err, "server.memory"), "%s", err);
	/* also when max_value comes first in the file */
	expect_error(SRV "server = {\n  max_value = \"1G\";\n  memory = \"64M\";\n};\n", 3,
		     "server.max_value");
}
