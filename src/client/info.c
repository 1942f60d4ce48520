/*
 * libkvfs info: the public calls that need no connection, for programs that
 * link only libkvfs (its internals are hidden by libkvfs.map): the default
 * configuration file, the servers of a configuration, sizes as the file
 * writes them, and where the library's log lines go.
 *
 * Each is a thin wrapper of the common module that does the work (config,
 * log), so the programs and the library agree on every rule.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kvfs/kvfs.h"

#include "common/config.h"
#include "common/log.h"

_Static_assert((int)KVFS_LOG_ERROR == (int)LOG_LVL_ERROR &&
		   (int)KVFS_LOG_WARN == (int)LOG_LVL_WARN &&
		   (int)KVFS_LOG_INFO == (int)LOG_LVL_INFO &&
		   (int)KVFS_LOG_DEBUG == (int)LOG_LVL_DEBUG,
	       "kvfs.h log levels are log.h's");
/* "[" host "]:" port, NUL included */
_Static_assert(sizeof(((struct kvfs_server_entry *)0)->host) +
		       sizeof(((struct kvfs_server_entry *)0)->port) + 2 <=
		   KVFS_ADDRESS_MAX,
	       "KVFS_ADDRESS_MAX holds every address");

const char *kvfs_config_path(const char *path)
{
	return config_default_path(path);
}

int kvfs_config_server_count(const struct kvfs_config *cfg)
{
	return cfg ? cfg->n_servers : -EINVAL;
}

const char *kvfs_config_server_name(const struct kvfs_config *cfg, int idx)
{
	return cfg && idx >= 0 && idx < cfg->n_servers ? cfg->servers[idx].name : NULL;
}

int kvfs_config_server_address(const struct kvfs_config *cfg, int idx, char *buf, size_t len)
{
	const struct kvfs_server_entry *e;
	int n;

	if (!cfg || !buf || idx < 0 || idx >= cfg->n_servers)
		return -EINVAL;
	e = &cfg->servers[idx];
	if (strchr(e->host, ':'))
		n = snprintf(buf, len, "[%s]:%s", e->host, e->port);
	else
		n = snprintf(buf, len, "%s:%s", e->host, e->port);
	if (n < 0 || (size_t)n >= len) {
		if (len)
			buf[0] = '\0';
		return -ERANGE;
	}
	return n;
}

int kvfs_parse_size(const char *s, uint64_t *out)
{
	if (!out)
		return -EINVAL;
	return config_parse_size(s, out);
}

void kvfs_set_log(kvfs_log_fn fn, void *arg)
{
	log_set_sink(fn, arg);
}

int kvfs_set_log_level(int level)
{
	if (level < KVFS_LOG_ERROR || level > KVFS_LOG_DEBUG)
		return -EINVAL;
	log_set_level((enum log_level)level);
	return 0;
}
