/*
 * config: the public kvfs_config_* calls (kvfs.h) and the life of a struct
 * kvfs_config: built in code (kvfs_config_new, _set, _add_server) or loaded
 * from a file (config_read.c), then freed with its secret wiped. The pieces
 * behind it share config_priv.h; config.h is the way in.
 */
#include "config_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * The public header declares the kvfs_config_* calls defined here; this is
 * the only file of src/common, src/server and src/fabric to include it.
 */
#include "kvfs/kvfs.h"

_Static_assert(__builtin_strcmp(KVFS_DEFAULT_CONF, KVFS_CONFIG_DEFAULT) == 0,
	       "config.h's default path is the public one");

const char *config_default_path(const char *arg)
{
	const char *env;

	if (arg)
		return arg;
	env = getenv("KVFS_CONF");
	if (env && *env)
		return env;
	return KVFS_DEFAULT_CONF;
}

int config_find_server(const struct kvfs_config *c, const char *name)
{
	if (!name)
		return c->n_servers == 1 ? 0 : -1;
	for (int i = 0; i < c->n_servers; i++)
		if (strcmp(c->servers[i].name, name) == 0)
			return i;
	return -1;
}

struct kvfs_config *kvfs_config_new(void)
{
	struct kvfs_config *c = malloc(sizeof(*c));

	if (c)
		config_defaults(c);
	return c;
}

int kvfs_config_load(const char *path, struct kvfs_config **out, char *err, size_t errlen)
{
	struct kvfs_config *c;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	c = malloc(sizeof(*c));
	if (!c) {
		cfg_errf(err, errlen, NULL, NULL, "out of memory");
		return -ENOMEM;
	}
	rc = config_load(c, path, err, errlen);
	if (rc < 0) {
		kvfs_config_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

int kvfs_config_add_server(struct kvfs_config *cfg, const char *name, const char *address)
{
	struct kvfs_server_entry e;
	int rc;

	if (!cfg || !cfg_valid_name(name))
		return -EINVAL;
	memset(&e, 0, sizeof(e));
	rc = config_parse_address(address, &e);
	if (rc < 0)
		return rc;
	if (config_find_server(cfg, name) >= 0)
		return -EEXIST;
	if (cfg->n_servers >= KVFS_MAX_SERVERS)
		return -ENOSPC;
	strcpy(e.name, name);
	cfg->servers[cfg->n_servers++] = e;
	return 0;
}

int kvfs_config_set(struct kvfs_config *cfg, const char *setting, const char *value, char *err,
		    size_t errlen)
{
	char names[512];
	struct val v;

	if (!cfg || !setting) {
		cfg_errf(err, errlen, NULL, NULL, "no configuration or setting given");
		return -EINVAL;
	}
	for (size_t k = 0; k < cfg_n_settings; k++) {
		const struct setting_desc *d = &cfg_settings[k];
		size_t gl = strlen(d->group);

		if (strncmp(setting, d->group, gl) != 0 || setting[gl] != '.' ||
		    strcmp(setting + gl + 1, d->name) != 0)
			continue;
		if (!d->set) {
			cfg_errf(
			    err, errlen, NULL, setting,
			    "cannot be set from a string; valid: kvfs_config_add_server(cfg, name, "
			    "\"host:port\")");
			return -EINVAL;
		}
		if (!value) {
			cfg_errf(err, errlen, NULL, setting,
				 "no value given; valid: a value as in the file");
			return -EINVAL;
		}
		memset(&v, 0, sizeof(v));
		v.kind = VAL_STR;
		v.s = value;
		return d->set(cfg, &v, setting, NULL, err, errlen);
	}
	cfg_errf(err, errlen, NULL, setting, "unknown setting; valid: %s",
		 cfg_valid_names(names, sizeof(names), NULL));
	return -EINVAL;
}

void kvfs_config_free(struct kvfs_config *cfg)
{
	if (!cfg)
		return;
	explicit_bzero(cfg->secret, sizeof(cfg->secret));
	free(cfg);
}

const char *kvfs_config_client_metrics(const struct kvfs_config *cfg)
{
	return cfg && cfg->client_metrics[0] ? cfg->client_metrics : NULL;
}
