/*
 * Unit tests of src/common/config.c: the libconfig file format, its error
 * messages (file, line, setting, "valid"), sizes, addresses, the secret file,
 * the public kvfs_config_* API and the example files in conf/.
 *
 * Each test runs in its own process with a fresh temporary directory.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <ftw.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config.h"

#ifndef KVFS_SOURCE_DIR
#define KVFS_SOURCE_DIR "."
#endif

#define SRV "cluster = { servers = ( { name = \"a\"; address = \"127.0.0.1:7400\"; } ); };\n"

static char tmpdir[256];
static char conf_path[512];
static struct kvfs_config cfg;
static char err[1024];

static void setup(void)
{
	strcpy(tmpdir, "/tmp/kvfs-test-config-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(conf_path, sizeof(conf_path), "%s/kvfs.conf", tmpdir);
	unsetenv("KVFS_CONF");
	err[0] = '\0';
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void teardown(void)
{
	nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(config, .init = setup, .fini = teardown);

/* Writes tmpdir/name with mode; returns the full path (static buffer per call slot). */
static const char *write_file(const char *name, const char *text, size_t len, mode_t mode)
{
	static char paths[4][512];
	static int slot;
	char *p = paths[slot++ % 4];
	FILE *f;

	snprintf(p, 512, "%s/%s", tmpdir, name);
	f = fopen(p, "w");
	cr_assert_not_null(f, "fopen %s: %s", p, strerror(errno));
	cr_assert_eq(fwrite(text, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(chmod(p, mode), 0);
	return p;
}

static int load(const char *text)
{
	write_file("kvfs.conf", text, strlen(text), 0644);
	err[0] = '\0';
	return config_load(&cfg, conf_path, err, sizeof(err));
}

/* The load fails with -EINVAL and a message naming file, line, setting and "valid". */
static void expect_error(const char *text, int line, const char *setting)
{
	char where[600];
	int rc = load(text);

	cr_assert_eq(rc, -EINVAL, "rc %d for:\n%s", rc, text);
	snprintf(where, sizeof(where), "%s:%d: ", conf_path, line);
	cr_assert(strncmp(err, where, strlen(where)) == 0, "want prefix \"%s\", got \"%s\"", where,
		  err);
	if (setting)
		cr_assert_not_null(strstr(err, setting), "want setting %s in \"%s\"", setting, err);
	cr_assert_not_null(strstr(err, "; valid: "), "no \"; valid: \" in \"%s\"", err);
	cr_assert_null(strchr(err, '\n'), "message is not one line: \"%s\"", err);
}

static void expect_ok(const char *text)
{
	int rc = load(text);

	cr_assert_eq(rc, 0, "rc %d: %s\nfor:\n%s", rc, err, text);
}

Test(config, full_valid_file)
{
	char text[2048];
	const char *secret = write_file("secret", "s3cr3t\n", 7, 0600);

	snprintf(text, sizeof(text),
		 "# all settings\n"
		 "cluster = {\n"
		 "  servers = (\n"
		 "    { name = \"a\"; address = \"127.0.0.1:7401\"; },\n"
		 "    { name = \"b-2.x_y\"; address = \"[::1]:7402\"; },\n"
		 "    { name = \"c\"; address = \"host.example:65535\"; }\n"
		 "  );\n"
		 "  secret_file = \"%s\";\n"
		 "};\n"
		 "fabric = {\n"
		 "  provider = \"tcp\";\n"
		 "  domains = ( \"mlx5_0\", \"mlx5_1\" );\n"
		 "  inline_threshold = \"2K\";\n"
		 "};\n"
		 "server = { memory = \"256M\"; max_value = \"16M\"; eviction = \"none\"; };\n"
		 "client = { buffer = \"8M\"; timeout_ms = 500; };\n",
		 secret);
	expect_ok(text);
	cr_assert_str_eq(cfg.path, conf_path);
	cr_assert_eq(cfg.n_servers, 3);
	cr_assert_str_eq(cfg.servers[0].name, "a");
	cr_assert_str_eq(cfg.servers[0].host, "127.0.0.1");
	cr_assert_str_eq(cfg.servers[0].port, "7401");
	cr_assert_str_eq(cfg.servers[1].name, "b-2.x_y");
	cr_assert_str_eq(cfg.servers[1].host, "::1");
	cr_assert_str_eq(cfg.servers[1].port, "7402");
	cr_assert_str_eq(cfg.servers[2].host, "host.example");
	cr_assert_str_eq(cfg.servers[2].port, "65535");
	cr_assert_str_eq(cfg.secret_file, secret);
	cr_assert_eq(cfg.secret_len, 6);
	cr_assert(memcmp(cfg.secret, "s3cr3t", 6) == 0);
	cr_assert_str_eq(cfg.provider, "tcp");
	cr_assert_eq(cfg.n_domains, 2);
	cr_assert_str_eq(cfg.domains[0], "mlx5_0");
	cr_assert_str_eq(cfg.domains[1], "mlx5_1");
	cr_assert_eq(cfg.inline_threshold, 2048);
	cr_assert_eq(cfg.server_memory, 256ull << 20);
	cr_assert_eq(cfg.server_max_value, 16ull << 20);
	cr_assert_eq(cfg.eviction, KVFS_EVICT_NONE);
	cr_assert_eq(cfg.client_buffer, 8ull << 20);
	cr_assert_eq(cfg.timeout_ms, 500);
	cr_assert_eq(config_validate(&cfg, err, sizeof(err)), 0, "%s", err);
}

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

Test(config, max_value_defaults_to_memory)
{
	/* A small pool alone is valid: max_value follows it. */
	expect_ok(SRV "server = { memory = \"64M\"; };\n");
	cr_assert_eq(cfg.server_max_value, 64ull << 20);
	expect_ok(SRV "server = { memory = \"8G\"; };\n");
	cr_assert_eq(cfg.server_max_value, 1ull << 30);
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

Test(config, sizes_in_file)
{
	expect_ok(SRV "server = { memory = 268435456; };\n");
	cr_assert_eq(cfg.server_memory, 256ull << 20);
	expect_ok(SRV "server = { memory = 17179869184L; };\n");
	cr_assert_eq(cfg.server_memory, 16ull << 30);
	expect_ok(SRV "server = { memory = 0x10000000; };\n");
	cr_assert_eq(cfg.server_memory, 256ull << 20);
	expect_ok(SRV "server = { memory = \"32G\"; max_value = \"32G\"; };\n");
	cr_assert_eq(cfg.server_max_value, 32ull << 30);
	expect_ok(SRV "server = { memory = \"16M\"; };\n");
	expect_ok(SRV "fabric = { inline_threshold = 0; };\n");
	cr_assert_eq(cfg.inline_threshold, 0);
	expect_ok(SRV "fabric = { inline_threshold = \"64K\"; };\n");
	cr_assert_eq(cfg.inline_threshold, 65536);
	expect_ok(SRV "client = { buffer = \"4M\"; };\n");
	expect_ok(SRV "client = { buffer = \"16G\"; };\n");
	cr_assert_eq(cfg.client_buffer, 16ull << 30);
}

Test(config, bad_sizes_in_file)
{
	expect_error(SRV "server = {\n  memory = \"12Q\";\n};\n", 3, "server.memory");
	cr_assert_not_null(strstr(err, "\"12Q\""), "%s", err);
	expect_error(SRV "server = {\n  memory = -1;\n};\n", 3, "server.memory");
	cr_assert_not_null(strstr(err, "negative"), "%s", err);
	expect_error(SRV "server = {\n  memory = \"-1\";\n};\n", 3, "server.memory");
	expect_error(SRV "server = {\n  memory = \"99999999999G\";\n};\n", 3, "server.memory");
	expect_error(SRV "server = {\n  memory = \"\";\n};\n", 3, "server.memory");
	expect_error(SRV "server = {\n  memory = 1.5;\n};\n", 3, "server.memory");
	expect_error(SRV "server = {\n  memory = true;\n};\n", 3, "server.memory");
	/* libconfig 1.5 would read this as 1215752191 */
	expect_error(SRV "server = {\n  memory = 99999999999;\n};\n", 3, "server.memory");
	expect_error(SRV "server = {\n  memory =\n    99999999999;\n};\n", 3, "server.memory");
	expect_error(SRV "server = {\n  memory = \"8M\";\n};\n", 3, "server.memory");
	cr_assert_not_null(strstr(err, "16M to 32G"), "%s", err);
	expect_error(SRV "server = {\n  memory = \"33G\";\n};\n", 3, "server.memory");
	expect_error(SRV "fabric = {\n\n  inline_threshold = \"65537\";\n};\n", 4,
		     "fabric.inline_threshold");
	expect_error(SRV "client = { buffer = \"2M\"; };\n", 2, "client.buffer");
	expect_error(SRV "client = { buffer = \"17G\"; };\n", 2, "client.buffer");
	expect_error(SRV "server = { max_value = 0; };\n", 2, "server.max_value");
}

Test(config, error_message_exact)
{
	char want[700];

	expect_error(SRV "\n\n\n\n\nserver = { eviction = \"fifo\"; };\n", 7, "server.eviction");
	snprintf(want, sizeof(want),
		 "%s:7: server.eviction: \"fifo\" is not a policy; valid: \"lru\" or \"none\"",
		 conf_path);
	cr_assert_str_eq(err, want);
}

Test(config, provider_domains_eviction_timeout)
{
	static const char *const prov[] = {"auto", "verbs", "efa", "tcp", "shm"};

	for (int i = 0; i < 5; i++) {
		char text[256];
		snprintf(text, sizeof(text), SRV "fabric = { provider = \"%s\"; };\n", prov[i]);
		expect_ok(text);
		cr_assert_str_eq(cfg.provider, prov[i]);
	}
	expect_error(SRV "fabric = {\n  provider = \"rdma\";\n};\n", 3, "fabric.provider");
	cr_assert_not_null(strstr(err, "\"verbs\""), "%s", err);
	expect_error(SRV "fabric = {\n  provider = 3;\n};\n", 3, "fabric.provider");
	expect_error(SRV "fabric = {\n  provider = \"TCP\";\n};\n", 3, "fabric.provider");

	expect_ok(SRV "fabric = { domains = [ \"lo\" ]; };\n");
	cr_assert_eq(cfg.n_domains, 1);
	expect_ok(SRV "fabric = { domains = ( ); };\n");
	cr_assert_eq(cfg.n_domains, 0);
	expect_ok(SRV "fabric = { domains = ( \"d1\", \"d2\", \"d3\", \"d4\", \"d5\", \"d6\", "
		      "\"d7\", \"d8\" ); };\n");
	cr_assert_eq(cfg.n_domains, KVFS_MAX_DOMAINS);
	expect_error(SRV
		     "fabric = {\n  domains = ( \"d1\", \"d2\", \"d3\", \"d4\", \"d5\", \"d6\", "
		     "\"d7\", \"d8\", \"d9\" );\n};\n",
		     3, "fabric.domains");
	expect_error(SRV "fabric = {\n  domains = \"mlx5_0\";\n};\n", 3, "fabric.domains");
	expect_error(SRV "fabric = {\n  domains = ( \"mlx5_0\", 7 );\n};\n", 3, "fabric.domains");
	expect_error(SRV "fabric = {\n  domains = ( \"\" );\n};\n", 3, "fabric.domains");
	expect_error(SRV "fabric = {\n  domains = ( \"a\", \"a\" );\n};\n", 3, "fabric.domains");

	expect_error(SRV "server = {\n  eviction = 1;\n};\n", 3, "server.eviction");

	expect_ok(SRV "client = { timeout_ms = 1; };\n");
	cr_assert_eq(cfg.timeout_ms, 1);
	expect_ok(SRV "client = { timeout_ms = 3600000; };\n");
	cr_assert_eq(cfg.timeout_ms, 3600000);
	expect_error(SRV "client = {\n  timeout_ms = 0;\n};\n", 3, "client.timeout_ms");
	expect_error(SRV "client = {\n  timeout_ms = 3600001;\n};\n", 3, "client.timeout_ms");
	expect_error(SRV "client = {\n  timeout_ms = -5;\n};\n", 3, "client.timeout_ms");
	expect_error(SRV "client = {\n  timeout_ms = \"2s\";\n};\n", 3, "client.timeout_ms");
	expect_error(SRV "client = {\n  timeout_ms = 4294967297;\n};\n", 3, "client.timeout_ms");

	expect_ok(SRV "");
	cr_assert_eq(cfg.local_map, 1, "same-host reads by default");
	expect_ok(SRV "client = { local_map = false; };\n");
	cr_assert_eq(cfg.local_map, 0);
	expect_ok(SRV "client = { local_map = true; };\n");
	cr_assert_eq(cfg.local_map, 1);
	expect_error(SRV "client = {\n  local_map = 1;\n};\n", 3, "client.local_map");
	expect_error(SRV "client = {\n  local_map = \"yes\";\n};\n", 3, "client.local_map");
	expect_error(SRV "client = {\n  buffer = true;\n};\n", 3, "client.buffer");
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

Test(config, syntax_error_line)
{
	expect_error(SRV "server = {\n  memory = = \"1G\";\n};\n", 3, NULL);
	cr_assert_not_null(strstr(err, "syntax error"), "%s", err);
	expect_error("client = {\n  buffer = \"64M\";\n", 3, NULL);
	expect_error(SRV "client = { buffer = \"64M\"; };\nclient = { timeout_ms = 5; };\n", 3,
		     NULL);
	cr_assert_not_null(strstr(err, "duplicate"), "%s", err);
}

Test(config, unknown_settings)
{
	expect_error(SRV "\nclustre = { };\n", 3, "clustre");
	cr_assert_not_null(strstr(err, "cluster, fabric, server or client"), "%s", err);
	expect_error(SRV "server = {\n  memroy = \"1G\";\n};\n", 3, "server.memroy");
	cr_assert_not_null(strstr(err, "memory, max_value or eviction"), "%s", err);
	expect_error(SRV "client = {\n  buffer = \"64M\";\n  timeout = 5;\n};\n", 4,
		     "client.timeout");
	cr_assert_not_null(strstr(err, "timeout_ms"), "%s", err);
	expect_error(
	    "cluster = {\n  servers = (\n    { name = \"a\";\n      adress = \"x:1\"; }\n  "
	    ");\n};\n",
	    4, "cluster.servers[0].adress");
	cr_assert_not_null(strstr(err, "address"), "%s", err);
	expect_error(SRV "fabric = \"tcp\";\n", 2, "fabric");
}

Test(config, servers)
{
	char text[8192];
	size_t n;

	expect_error("cluster = {\n  servers = ( );\n};\n", 2, "cluster.servers");
	expect_error("cluster = {\n  secret_file = \"\";\n};\n", 1, "cluster.servers");
	expect_error("client = { timeout_ms = 5; };\n", 1, "cluster.servers");
	expect_error("cluster = {\n  servers = \"a\";\n};\n", 2, "cluster.servers");
	expect_error("cluster = {\n  servers = (\n    { address = \"x:1\"; }\n  );\n};\n", 3,
		     "cluster.servers[0]");
	cr_assert_not_null(strstr(err, "missing name"), "%s", err);
	expect_error("cluster = {\n  servers = (\n    { name = \"a\"; }\n  );\n};\n", 3,
		     "cluster.servers[0]");
	expect_error("cluster = {\n  servers = (\n    \"a\"\n  );\n};\n", 2, "cluster.servers[0]");
	expect_error("cluster = { servers = (\n { name = \"a b\"; address = \"x:1\"; } ); };\n", 2,
		     "cluster.servers[0].name");
	expect_error("cluster = { servers = (\n { name = \"\"; address = \"x:1\"; } ); };\n", 2,
		     "cluster.servers[0].name");
	expect_error("cluster = { servers = (\n { name = 5; address = \"x:1\"; } ); };\n", 2,
		     "cluster.servers[0].name");
	/* 63 characters is the longest name */
	expect_ok("cluster = { servers = ( { name = "
		  "\"123456789012345678901234567890123456789012345678901234567890123\"; address = "
		  "\"x:1\"; } ); };\n");
	expect_error(
	    "cluster = { servers = (\n { name = "
	    "\"1234567890123456789012345678901234567890123456789012345678901234\"; address "
	    "= \"x:1\"; } ); };\n",
	    2, "cluster.servers[0].name");

	/* 64 servers fit, 65 do not */
	n = (size_t)snprintf(text, sizeof(text), "cluster = { servers = (\n");
	for (int i = 0; i < KVFS_MAX_SERVERS; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
				      "{ name = \"s%d\"; address = \"127.0.0.1:%d\"; },\n", i,
				      7000 + i);
	snprintf(text + n, sizeof(text) - n, "{ name = \"last\"; address = \"x:1\"; } ); };\n");
	expect_error(text, KVFS_MAX_SERVERS + 2, "cluster.servers[64]");
	text[n - 2] = '\0';
	strcat(text, " ); };\n");
	expect_ok(text);
	cr_assert_eq(cfg.n_servers, KVFS_MAX_SERVERS);
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

static void secret_conf(const char *secret_path, char *text, size_t len)
{
	snprintf(text, len,
		 "cluster = {\n  servers = ( { name = \"a\"; address = \"127.0.0.1:7400\"; } );\n"
		 "  secret_file = \"%s\";\n};\n",
		 secret_path);
}

Test(config, secret_file)
{
	char text[1024], big[300];
	const char *p;

	/* one trailing newline is stripped, only one */
	p = write_file("s1", "abc\n\n", 5, 0600);
	secret_conf(p, text, sizeof(text));
	expect_ok(text);
	cr_assert_eq(cfg.secret_len, 4);
	cr_assert(memcmp(cfg.secret, "abc\n", 4) == 0);

	/* 256 bytes (+ newline) is the most */
	memset(big, 'x', sizeof(big));
	big[256] = '\n';
	p = write_file("s2", big, 257, 0400);
	secret_conf(p, text, sizeof(text));
	expect_ok(text);
	cr_assert_eq(cfg.secret_len, 256);
	p = write_file("s3", big, 257 + 1, 0600);
	secret_conf(p, text, sizeof(text));
	expect_error(text, 3, "cluster.secret_file");

	/* readable by group or others */
	p = write_file("s4", "abc", 3, 0644);
	secret_conf(p, text, sizeof(text));
	expect_error(text, 3, "cluster.secret_file");
	cr_assert_not_null(strstr(err, p), "%s", err);
	cr_assert_not_null(strstr(err, "chmod 600"), "%s", err);
	p = write_file("s5", "abc", 3, 0640);
	secret_conf(p, text, sizeof(text));
	expect_error(text, 3, "cluster.secret_file");
	cr_assert_not_null(strstr(err, "chmod 600"), "%s", err);

	/* empty */
	p = write_file("s6", "\n", 1, 0600);
	secret_conf(p, text, sizeof(text));
	expect_error(text, 3, "cluster.secret_file");
	cr_assert_not_null(strstr(err, "empty"), "%s", err);
	p = write_file("s7", "", 0, 0600);
	secret_conf(p, text, sizeof(text));
	expect_error(text, 3, "cluster.secret_file");

	/* missing: -errno and strerror */
	secret_conf("/nonexistent/kvfs-secret", text, sizeof(text));
	write_file("kvfs.conf", text, strlen(text), 0644);
	cr_assert_eq(config_load(&cfg, conf_path, err, sizeof(err)), -ENOENT);
	cr_assert_not_null(strstr(err, conf_path), "%s", err);
	cr_assert_not_null(strstr(err, ":3: cluster.secret_file"), "%s", err);
	cr_assert_not_null(strstr(err, "/nonexistent/kvfs-secret"), "%s", err);
	cr_assert_not_null(strstr(err, strerror(ENOENT)), "%s", err);
	cr_assert_not_null(strstr(err, "valid"), "%s", err);
	cr_assert_eq(cfg.secret_len, 0);

	/* a directory is not a secret */
	secret_conf(tmpdir, text, sizeof(text));
	chmod(tmpdir, 0700);
	expect_error(text, 3, "cluster.secret_file");

	/* "" = no authentication */
	secret_conf("", text, sizeof(text));
	expect_ok(text);
	cr_assert_eq(cfg.secret_len, 0);
	cr_assert_eq(cfg.secret_file[0], '\0');
}

Test(config, missing_config_file)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/nope.conf", tmpdir);
	cr_assert_eq(config_load(&cfg, path, err, sizeof(err)), -ENOENT);
	cr_assert_not_null(strstr(err, path), "%s", err);
	cr_assert_not_null(strstr(err, strerror(ENOENT)), "%s", err);
}

Test(config, default_path)
{
	cr_assert_str_eq(config_default_path("/x.conf"), "/x.conf");
	unsetenv("KVFS_CONF");
	cr_assert_str_eq(config_default_path(NULL), KVFS_DEFAULT_CONF);
	setenv("KVFS_CONF", "", 1);
	cr_assert_str_eq(config_default_path(NULL), KVFS_DEFAULT_CONF);
	setenv("KVFS_CONF", "/tmp/other.conf", 1);
	cr_assert_str_eq(config_default_path(NULL), "/tmp/other.conf");
	cr_assert_str_eq(config_default_path("/x.conf"), "/x.conf");

	/* config_load(NULL) and kvfs_config_load(NULL) follow $KVFS_CONF */
	struct kvfs_config *c = NULL;
	write_file("kvfs.conf", SRV, strlen(SRV), 0644);
	setenv("KVFS_CONF", conf_path, 1);
	cr_assert_eq(config_load(&cfg, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(cfg.path, conf_path);
	cr_assert_eq(kvfs_config_load(NULL, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_not_null(c);
	cr_assert_eq(c->n_servers, 1);
	kvfs_config_free(c);
}

Test(config, kvfs_config_load_error)
{
	struct kvfs_config *c = (struct kvfs_config *)&err; /* must be reset to NULL */

	write_file("kvfs.conf", "x = 1;\n", 7, 0644);
	cr_assert_eq(kvfs_config_load(conf_path, &c, err, sizeof(err)), -EINVAL);
	cr_assert_null(c);
	cr_assert_not_null(strstr(err, ":1: x: unknown setting"), "%s", err);
}

static void set_ok(struct kvfs_config *c, const char *setting, const char *value)
{
	err[0] = '\0';
	cr_assert_eq(kvfs_config_set(c, setting, value, err, sizeof(err)), 0, "%s=%s: %s", setting,
		     value, err);
}

static void set_bad(struct kvfs_config *c, const char *setting, const char *value)
{
	err[0] = '\0';
	cr_assert_lt(kvfs_config_set(c, setting, value, err, sizeof(err)), 0, "%s=%s accepted",
		     setting, value ? value : "(null)");
	cr_assert(strncmp(err, setting, strlen(setting)) == 0, "want \"%s: ...\", got \"%s\"",
		  setting, err);
	cr_assert_not_null(strstr(err, "; valid: "), "%s", err);
}

Test(config, kvfs_config_set)
{
	struct kvfs_config *c = kvfs_config_new();
	const char *secret = write_file("secret", "pw\n", 3, 0600);
	const char *open_secret = write_file("secret2", "pw\n", 3, 0666);

	cr_assert_not_null(c);
	set_ok(c, "fabric.provider", "tcp");
	cr_assert_str_eq(c->provider, "tcp");
	set_ok(c, "fabric.domains", "mlx5_0,mlx5_1");
	cr_assert_eq(c->n_domains, 2);
	cr_assert_str_eq(c->domains[1], "mlx5_1");
	set_ok(c, "fabric.domains", "");
	cr_assert_eq(c->n_domains, 0);
	set_ok(c, "fabric.inline_threshold", "1K");
	cr_assert_eq(c->inline_threshold, 1024);
	set_ok(c, "server.memory", "256M");
	cr_assert_eq(c->server_memory, 256ull << 20);
	cr_assert_eq(c->server_max_value, 256ull << 20, "default max_value follows memory");
	set_ok(c, "server.max_value", "1M");
	set_ok(c, "server.memory", "512M");
	cr_assert_eq(c->server_max_value, 1ull << 20, "explicit max_value stays");
	set_ok(c, "server.eviction", "none");
	cr_assert_eq(c->eviction, KVFS_EVICT_NONE);
	set_ok(c, "client.buffer", "128MiB");
	cr_assert_eq(c->client_buffer, 128ull << 20);
	set_ok(c, "client.timeout_ms", "150");
	cr_assert_eq(c->timeout_ms, 150);
	set_ok(c, "client.local_map", "false");
	cr_assert_eq(c->local_map, 0);
	set_bad(c, "client.local_map", "no");
	cr_assert_eq(c->local_map, 0, "failed set changed the value");
	set_ok(c, "cluster.secret_file", secret);
	cr_assert_eq(c->secret_len, 2);
	cr_assert_str_eq(c->secret_file, secret);

	set_bad(c, "fabric.provider", "ib");
	cr_assert_not_null(strstr(err, "\"efa\""), "%s", err);
	cr_assert_str_eq(c->provider, "tcp", "failed set changed the value");
	set_bad(c, "fabric.provider", NULL);
	set_bad(c, "fabric.domains", "a,,b");
	set_bad(c, "fabric.domains", "1,2,3,4,5,6,7,8,9");
	cr_assert_eq(c->n_domains, 0);
	set_bad(c, "fabric.inline_threshold", "65M");
	set_bad(c, "server.memory", "12Q");
	set_bad(c, "server.memory", "1M");
	set_bad(c, "server.max_value", "0");
	set_bad(c, "server.eviction", "fifo");
	set_bad(c, "client.buffer", "-1");
	set_bad(c, "client.timeout_ms", "0");
	set_bad(c, "client.timeout_ms", "10ms");
	set_bad(c, "client.timeout_ms", "99999999999999999999");
	set_bad(c, "cluster.secret_file", open_secret);
	cr_assert_not_null(strstr(err, "chmod 600"), "%s", err);
	set_bad(c, "cluster.secret_file", "/nonexistent/secret");
	cr_assert_str_eq(c->secret_file, secret);
	set_bad(c, "cluster.servers", "a=127.0.0.1:1");
	set_bad(c, "server.memroy", "1G");
	cr_assert_not_null(strstr(err, "server.memory"), "%s", err);
	set_bad(c, "memory", "1G");
	set_bad(c, "fabric", "tcp");

	/* validate: needs a server, max_value <= memory */
	cr_assert_eq(config_validate(c, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "cluster.servers"), "%s", err);
	cr_assert_eq(kvfs_config_add_server(c, "n1", "127.0.0.1:7400"), 0);
	cr_assert_eq(kvfs_config_add_server(c, "n 2", "127.0.0.1:7400"), -EINVAL);
	cr_assert_eq(kvfs_config_add_server(c, "n2", "127.0.0.1"), -EINVAL);
	cr_assert_eq(kvfs_config_add_server(c, NULL, "127.0.0.1:1"), -EINVAL);
	cr_assert_eq(config_validate(c, err, sizeof(err)), 0, "%s", err);
	set_ok(c, "server.max_value", "1G");
	cr_assert_eq(config_validate(c, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "server.max_value"), "%s", err);
	cr_assert_not_null(strstr(err, "valid"), "%s", err);
	kvfs_config_free(c);
}

Test(config, add_server_limit)
{
	struct kvfs_config *c = kvfs_config_new();
	char name[16];

	for (int i = 0; i < KVFS_MAX_SERVERS; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		cr_assert_eq(kvfs_config_add_server(c, name, "127.0.0.1:1"), 0);
	}
	cr_assert_eq(kvfs_config_add_server(c, "more", "127.0.0.1:1"), -ENOSPC);
	kvfs_config_free(c);
}

Test(config, find_server)
{
	config_defaults(&cfg);
	cr_assert_eq(config_find_server(&cfg, NULL), -1);
	cr_assert_eq(config_find_server(&cfg, "a"), -1);
	cr_assert_eq(kvfs_config_add_server(&cfg, "only", "127.0.0.1:1"), 0);
	cr_assert_eq(config_find_server(&cfg, NULL), 0, "the only entry");
	cr_assert_eq(config_find_server(&cfg, "only"), 0);
	cr_assert_eq(config_find_server(&cfg, "other"), -1);
	cr_assert_eq(kvfs_config_add_server(&cfg, "b", "127.0.0.1:2"), 0);
	cr_assert_eq(kvfs_config_add_server(&cfg, "c", "[::1]:3"), 0);
	cr_assert_eq(config_find_server(&cfg, NULL), -1, "ambiguous without a name");
	cr_assert_eq(config_find_server(&cfg, "b"), 1);
	cr_assert_eq(config_find_server(&cfg, "c"), 2);
	cr_assert_eq(config_find_server(&cfg, "d"), -1);
	cr_assert_eq(config_find_server(&cfg, "onl"), -1);
}

Test(config, include_relative)
{
	write_file("servers.inc", SRV, strlen(SRV), 0644);
	expect_ok("@include \"servers.inc\"\nclient = { timeout_ms = 7; };\n");
	cr_assert_eq(cfg.n_servers, 1);
	cr_assert_eq(cfg.timeout_ms, 7);
}

/*
 * Copies src to tmpdir, pointing an active secret_file setting at a fresh
 * 0600 secret; returns the copy's path.
 */
static const char *copy_example(const char *src, const char *secret)
{
	static char dst[600];
	char line[4096];
	FILE *in = fopen(src, "r"), *out;

	cr_assert_not_null(in, "%s: %s", src, strerror(errno));
	snprintf(dst, sizeof(dst), "%s/example.conf", tmpdir);
	out = fopen(dst, "w");
	cr_assert_not_null(out);
	while (fgets(line, sizeof(line), in)) {
		char *p = line + strspn(line, " \t");
		if (strncmp(p, "secret_file", 11) == 0)
			fprintf(out, "%.*ssecret_file = \"%s\";\n", (int)(p - line), line, secret);
		else
			fputs(line, out);
	}
	fclose(in);
	fclose(out);
	return dst;
}

Test(config, example_files)
{
	const char *secret = write_file("secret", "example-secret\n", 15, 0600);
	glob_t g;
	int names = 0;

	cr_assert_eq(glob(KVFS_SOURCE_DIR "/conf/*.conf", 0, NULL, &g), 0,
		     "no conf/*.conf under " KVFS_SOURCE_DIR " (set -DKVFS_SOURCE_DIR)");
	for (size_t i = 0; i < g.gl_pathc; i++) {
		const char *path = copy_example(g.gl_pathv[i], secret);
		const char *base = strrchr(g.gl_pathv[i], '/') + 1;
		int rc = config_load(&cfg, path, err, sizeof(err));

		cr_assert_eq(rc, 0, "%s: %s", g.gl_pathv[i], err);
		cr_assert_eq(config_validate(&cfg, err, sizeof(err)), 0, "%s: %s", base, err);
		if (strcmp(base, "kvfs.conf") == 0) {
			names++;
			cr_assert_eq(cfg.n_servers, 1);
			cr_assert_str_eq(cfg.servers[0].name, "local");
			cr_assert_str_eq(cfg.servers[0].host, "127.0.0.1");
			cr_assert_str_eq(cfg.servers[0].port, "7400");
			cr_assert_str_eq(cfg.provider, "auto");
			cr_assert_eq(cfg.server_memory, 256ull << 20);
			cr_assert_eq(cfg.server_max_value, 256ull << 20);
			cr_assert_eq(cfg.client_buffer, 64ull << 20);
			cr_assert_eq(config_find_server(&cfg, NULL), 0);
		} else if (strcmp(base, "cluster-tcp.conf") == 0) {
			names++;
			cr_assert_eq(cfg.n_servers, 3);
			cr_assert_str_eq(cfg.provider, "tcp");
			cr_assert_eq(config_find_server(&cfg, "c"), 2);
			cr_assert_str_eq(cfg.servers[2].port, "7403");
		} else if (strcmp(base, "verbs.conf") == 0) {
			names++;
			cr_assert_str_eq(cfg.provider, "verbs");
			cr_assert_eq(cfg.n_domains, 2);
			cr_assert_eq(cfg.server_memory, 32ull << 30);
			cr_assert_eq(cfg.secret_len, 14);
		} else if (strcmp(base, "efa.conf") == 0) {
			names++;
			cr_assert_str_eq(cfg.provider, "efa");
			cr_assert_eq(cfg.n_servers, 3);
			cr_assert_eq(cfg.secret_len, 14);
		}
	}
	globfree(&g);
	cr_assert_eq(names, 4, "expected kvfs.conf, cluster-tcp.conf, verbs.conf and efa.conf");
}
