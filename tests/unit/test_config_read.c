/*
 * Unit tests of src/common/config_read.c: the libconfig file format, its
 * error messages (file, line, setting, "valid"), the server list, @include
 * and the example files in conf/.
 */
#include "config_fixture.h"

#include <glob.h>

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

Test(config, max_value_defaults_to_memory)
{
	/* A small pool alone is valid: max_value follows it. */
	expect_ok(SRV "server = { memory = \"64M\"; };\n");
	cr_assert_eq(cfg.server_max_value, 64ull << 20);
	expect_ok(SRV "server = { memory = \"8G\"; };\n");
	cr_assert_eq(cfg.server_max_value, 1ull << 30);
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
	cr_assert_not_null(strstr(err, "memory, max_value, eviction, prefault, stall_timeout_ms, "
				       "metrics or handshakes_per_address"),
			   "%s", err);
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

Test(config, missing_config_file)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/nope.conf", tmpdir);
	cr_assert_eq(config_load(&cfg, path, err, sizeof(err)), -ENOENT);
	cr_assert_not_null(strstr(err, path), "%s", err);
	cr_assert_not_null(strstr(err, strerror(ENOENT)), "%s", err);
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
