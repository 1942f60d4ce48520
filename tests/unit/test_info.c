/*
 * Unit tests of libkvfs's calls that need no server (src/client/info.c):
 * the configuration's path and servers, sizes, and where the library's log
 * lines go. The log tests make the library log by opening a config it
 * rejects and by pinging a port nothing listens on.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvfs/kvfs.h"

Test(info, config_path)
{
	const char *p = "/some/where.conf";

	cr_assert_eq(kvfs_config_path(p), p);
	cr_assert_eq(unsetenv("KVFS_CONF"), 0);
	cr_assert_str_eq(kvfs_config_path(NULL), KVFS_CONFIG_DEFAULT);
	cr_assert_eq(setenv("KVFS_CONF", "", 1), 0);
	cr_assert_str_eq(kvfs_config_path(NULL), KVFS_CONFIG_DEFAULT);
	cr_assert_eq(setenv("KVFS_CONF", "/env/kvfs.conf", 1), 0);
	cr_assert_str_eq(kvfs_config_path(NULL), "/env/kvfs.conf");
	cr_assert_eq(kvfs_config_path(p), p);
	unsetenv("KVFS_CONF");
}

Test(info, config_servers)
{
	struct kvfs_config *cfg = kvfs_config_new();
	char buf[KVFS_ADDRESS_MAX];
	kvfs_t *kv;

	cr_assert_not_null(cfg);
	cr_assert_eq(kvfs_config_server_count(cfg), 0);
	cr_assert_eq(kvfs_config_add_server(cfg, "a", "127.0.0.1:7400"), 0);
	cr_assert_eq(kvfs_config_add_server(cfg, "b", "[::1]:7401"), 0);
	cr_assert_eq(kvfs_config_add_server(cfg, "c", "cache.example:7402"), 0);
	cr_assert_eq(kvfs_config_server_count(cfg), 3);
	cr_assert_str_eq(kvfs_config_server_name(cfg, 0), "a");
	cr_assert_str_eq(kvfs_config_server_name(cfg, 2), "c");

	cr_assert_eq(kvfs_config_server_address(cfg, 0, buf, sizeof(buf)), 14);
	cr_assert_str_eq(buf, "127.0.0.1:7400");
	cr_assert_eq(kvfs_config_server_address(cfg, 1, buf, sizeof(buf)), 10);
	cr_assert_str_eq(buf, "[::1]:7401");
	cr_assert_eq(kvfs_config_server_address(cfg, 2, buf, sizeof(buf)), 18);
	cr_assert_str_eq(buf, "cache.example:7402");
	/* exactly the room it needs, then one byte less */
	cr_assert_eq(kvfs_config_server_address(cfg, 1, buf, 11), 10);
	cr_assert_str_eq(buf, "[::1]:7401");
	cr_assert_eq(kvfs_config_server_address(cfg, 1, buf, 10), -ERANGE);
	cr_assert_str_eq(buf, "");
	cr_assert_eq(kvfs_config_server_address(cfg, 1, buf, 0), -ERANGE);

	/* the indexes of a kvfs_t opened from it (opening connects to nothing) */
	cr_assert_eq(kvfs_open_config(cfg, &kv), 0);
	cr_assert_eq(kvfs_server_count(kv), kvfs_config_server_count(cfg));
	for (int i = 0; i < 3; i++)
		cr_assert_str_eq(kvfs_server_name(kv, i), kvfs_config_server_name(cfg, i));
	kvfs_close(kv);

	cr_assert_null(kvfs_config_server_name(cfg, -1));
	cr_assert_null(kvfs_config_server_name(cfg, 3));
	cr_assert_null(kvfs_config_server_name(NULL, 0));
	cr_assert_eq(kvfs_config_server_address(cfg, -1, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(kvfs_config_server_address(cfg, 3, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(kvfs_config_server_address(cfg, 0, NULL, 10), -EINVAL);
	cr_assert_eq(kvfs_config_server_address(NULL, 0, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(kvfs_config_server_count(NULL), -EINVAL);
	kvfs_config_free(cfg);
}

Test(info, parse_size)
{
	static const struct {
		const char *s;
		uint64_t v;
	} good[] = {
	    {"0", 0},
	    {"123", 123},
	    {"4K", 4096},
	    {"4k", 4096},
	    {"64M", 64ull << 20},
	    {"64MiB", 64ull << 20},
	    {"64MB", 64ull << 20},
	    {"64 M", 64ull << 20},
	    {"1G", 1ull << 30},
	    {"2T", 2ull << 40},
	    {"8B", 8},
	    {"18446744073709551615", UINT64_MAX},
	    {"16777215T", 16777215ull << 40},
	};
	static const char *const bad[] = {
	    "", "-1", "+1", " 1", "1X", "1Mi", "1KBB", "16777216T", "18446744073709551616", "M",
	};
	uint64_t v;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 1;
		cr_assert_eq(kvfs_parse_size(good[i].s, &v), 0, "\"%s\"", good[i].s);
		cr_assert_eq(v, good[i].v, "\"%s\" gave %llu", good[i].s, (unsigned long long)v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(kvfs_parse_size(bad[i], &v), -EINVAL, "\"%s\"", bad[i]);
	cr_assert_eq(kvfs_parse_size(NULL, &v), -EINVAL);
	cr_assert_eq(kvfs_parse_size("1K", NULL), -EINVAL);
}

/* Lines the library logged through kvfs_set_log. */
static struct {
	int n, level[16];
	char line[16][1024];
	void *arg;
} got;

static void sink(void *arg, int level, const char *line)
{
	got.arg = arg;
	if (got.n < 16) {
		got.level[got.n] = level;
		snprintf(got.line[got.n], sizeof(got.line[0]), "%s", line);
	}
	got.n++;
}

/* A kvfs_t on a port where nothing listens; the caller kvfs_close()s it. */
static kvfs_t *dead_cluster(void)
{
	struct kvfs_config *cfg = kvfs_config_new();
	char err[256];
	kvfs_t *kv;

	cr_assert_not_null(cfg);
	cr_assert_eq(kvfs_config_add_server(cfg, "dead", "127.0.0.1:1"), 0);
	cr_assert_eq(kvfs_config_set(cfg, "fabric.provider", "tcp", err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_eq(kvfs_open_config(cfg, &kv), 0);
	kvfs_config_free(cfg);
	return kv;
}

Test(info, log_to_a_function)
{
	struct kvfs_config *empty = kvfs_config_new();
	uint64_t rtt;
	kvfs_t *kv;
	int marker;

	memset(&got, 0, sizeof(got));
	kvfs_set_log(sink, &marker);

	/* An error: a config without servers is refused, with its reason. */
	cr_assert_eq(kvfs_open_config(empty, &kv), -EINVAL);
	kvfs_config_free(empty);
	cr_assert_eq(got.n, 1);
	cr_assert_eq(got.arg, &marker);
	cr_assert_eq(got.level[0], KVFS_LOG_ERROR);
	cr_assert(strncmp(got.line[0], "cluster.servers: no servers", 27) == 0, "%s", got.line[0]);
	cr_assert_null(strchr(got.line[0], '\n'));

	/* A warning, filtered at level error, passed at the default (warn). */
	kv = dead_cluster();
	cr_assert_eq(kvfs_set_log_level(KVFS_LOG_ERROR), 0);
	got.n = 0;
	cr_assert_lt(kvfs_ping(kv, 0, &rtt), 0);
	cr_assert_eq(got.n, 0, "%s", got.line[0]);
	cr_assert_eq(kvfs_set_log_level(KVFS_LOG_WARN), 0);
	cr_assert_lt(kvfs_ping(kv, 0, &rtt), 0);
	cr_assert_geq(got.n, 1);
	cr_assert_eq(got.level[0], KVFS_LOG_WARN);
	cr_assert(strstr(got.line[0], "server dead (127.0.0.1:1): cannot connect") == got.line[0],
		  "%s", got.line[0]);
	kvfs_close(kv);
	kvfs_set_log(NULL, NULL);
}

Test(info, log_level_bounds)
{
	cr_assert_eq(kvfs_set_log_level(KVFS_LOG_ERROR - 1), -EINVAL);
	cr_assert_eq(kvfs_set_log_level(KVFS_LOG_DEBUG + 1), -EINVAL);
	cr_assert_eq(kvfs_set_log_level(KVFS_LOG_DEBUG), 0);
	cr_assert_eq(kvfs_set_log_level(KVFS_LOG_WARN), 0);
}

/* Without a function (or after kvfs_set_log(NULL, ...)): stderr, as ever. */
Test(info, log_to_stderr_by_default, .init = cr_redirect_stderr)
{
	struct kvfs_config *empty = kvfs_config_new();
	char text[1024] = "";
	kvfs_t *kv;

	kvfs_set_log(sink, NULL);
	kvfs_set_log(NULL, NULL);
	memset(&got, 0, sizeof(got));
	cr_assert_eq(kvfs_open_config(empty, &kv), -EINVAL);
	kvfs_config_free(empty);
	cr_assert_eq(got.n, 0);
	fflush(stderr);
	FILE *f = cr_get_redirected_stderr();
	cr_assert_not_null(fgets(text, sizeof(text), f));
	cr_assert(strncmp(text, "kvfs: error: cluster.servers: no servers", 40) == 0, "%s", text);
}
