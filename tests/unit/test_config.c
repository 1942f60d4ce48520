/*
 * Unit tests of src/common/config.c: the public kvfs_config_* calls
 * (kvfs_config_load, _set, _add_server), the default path and
 * config_find_server.
 */
#include "config_fixture.h"

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
	cr_assert_null(kvfs_config_client_metrics(c), "no endpoint by default");
	set_ok(c, "client.metrics", "127.0.0.1:9401");
	cr_assert_str_eq(kvfs_config_client_metrics(c), "127.0.0.1:9401");
	set_bad(c, "client.metrics", "127.0.0.1:port");
	cr_assert_str_eq(c->client_metrics, "127.0.0.1:9401", "failed set changed the value");
	set_ok(c, "server.metrics", "[::1]:9400");
	cr_assert_str_eq(c->server_metrics, "[::1]:9400");
	cr_assert_null(kvfs_config_client_metrics(NULL));
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
