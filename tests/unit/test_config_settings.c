/*
 * Unit tests of src/common/config_settings.c: the values each setting
 * accepts and rejects in a file (sizes, provider, domains, eviction,
 * timeout, local_map, prefault, the metrics addresses) and the secret file.
 */
#include "config_fixture.h"

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
	cr_assert_eq(cfg.server_stall_ms, 30000, "stall timeout by default");
	expect_ok(SRV "server = { stall_timeout_ms = 1500; };\n");
	cr_assert_eq(cfg.server_stall_ms, 1500);
	expect_error(SRV "server = {\n  stall_timeout_ms = 0;\n};\n", 3, "server.stall_timeout_ms");
	expect_error(SRV "server = {\n  stall_timeout_ms = \"30s\";\n};\n", 3,
		     "server.stall_timeout_ms");

	expect_ok(SRV "");
	cr_assert_eq(cfg.local_map, 1, "same-host reads by default");
	expect_ok(SRV "client = { local_map = false; };\n");
	cr_assert_eq(cfg.local_map, 0);
	expect_ok(SRV "client = { local_map = true; };\n");
	cr_assert_eq(cfg.local_map, 1);
	expect_error(SRV "client = {\n  local_map = 1;\n};\n", 3, "client.local_map");
	expect_error(SRV "client = {\n  local_map = \"yes\";\n};\n", 3, "client.local_map");
	expect_error(SRV "client = {\n  buffer = true;\n};\n", 3, "client.buffer");

	expect_ok(SRV "");
	cr_assert_eq(cfg.server_prefault, 1, "the pool is prefaulted by default");
	expect_ok(SRV "server = { prefault = false; };\n");
	cr_assert_eq(cfg.server_prefault, 0);
	expect_error(SRV "server = {\n  prefault = \"no\";\n};\n", 3, "server.prefault");

	expect_ok(SRV "");
	cr_assert_eq(cfg.server_hs_per_addr, 8, "8 handshakes per address by default");
	expect_ok(SRV "server = { handshakes_per_address = 64; };\n");
	cr_assert_eq(cfg.server_hs_per_addr, 64);
	expect_error(SRV "server = {\n  handshakes_per_address = 0;\n};\n", 3,
		     "server.handshakes_per_address");
	expect_error(SRV "server = {\n  handshakes_per_address = 65;\n};\n", 3,
		     "server.handshakes_per_address");
	cr_assert_not_null(strstr(err, "from 1 to 64"), "%s", err);
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
	if (geteuid() == 0) {
		/* root's file may be readable by its group (root:kvfs 0640) ... */
		expect_ok(text);
		/* ... another owner's may not */
		cr_assert_eq(chown(p, 1, 0), 0);
		expect_error(text, 3, "cluster.secret_file");
		cr_assert_not_null(strstr(err, "chmod 600"), "%s", err);
		cr_assert_eq(chown(p, 0, 0), 0);
	} else {
		expect_error(text, 3, "cluster.secret_file");
		cr_assert_not_null(strstr(err, "chmod 600"), "%s", err);
	}
	/* group write or others' read: never, even for root's */
	p = write_file("s5w", "abc", 3, 0660);
	secret_conf(p, text, sizeof(text));
	expect_error(text, 3, "cluster.secret_file");
	p = write_file("s5o", "abc", 3, 0604);
	secret_conf(p, text, sizeof(text));
	expect_error(text, 3, "cluster.secret_file");

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

Test(config, metrics_addresses)
{
	expect_ok(SRV "");
	cr_assert_str_eq(cfg.server_metrics, "", "no endpoint by default");
	cr_assert_str_eq(cfg.client_metrics, "");
	expect_ok(SRV "server = { metrics = \"127.0.0.1:9400\"; };\n"
		      "client = { metrics = \"[::1]:9401\"; };\n");
	cr_assert_str_eq(cfg.server_metrics, "127.0.0.1:9400");
	cr_assert_str_eq(cfg.client_metrics, "[::1]:9401");
	expect_ok(SRV
		  "server = { metrics = \"localhost:9400\"; };\nclient = { metrics = \"\"; };\n");
	cr_assert_str_eq(cfg.client_metrics, "");

	expect_error(SRV "server = {\n  metrics = \"127.0.0.1\";\n};\n", 3, "server.metrics");
	cr_assert_not_null(strstr(err, "missing \":port\""), "%s", err);
	cr_assert_not_null(strstr(err, "valid: \"host:port\""), "%s", err);
	expect_error(SRV "server = {\n  metrics = \"127.0.0.1:0\";\n};\n", 3, "server.metrics");
	cr_assert_not_null(strstr(err, "port is not a number from 1 to 65535"), "%s", err);
	expect_error(SRV "server = {\n  metrics = \"127.0.0.1:99999\";\n};\n", 3, "server.metrics");
	expect_error(SRV "client = {\n  metrics = \"::1:9401\";\n};\n", 3, "client.metrics");
	cr_assert_not_null(strstr(err, "brackets"), "%s", err);
	expect_error(SRV "client = {\n  metrics = 9401;\n};\n", 3, "client.metrics");
	cr_assert_not_null(strstr(err, "not a string"), "%s", err);
	expect_error(SRV "client = {\n  metrics = \"bad host:9401\";\n};\n", 3, "client.metrics");
}
