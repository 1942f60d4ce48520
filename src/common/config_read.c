/*
 * config_read: a kvfs.conf(5) file (libconfig) into a struct kvfs_config.
 *
 * Design choices:
 * - The parsed tree is walked member by member instead of looked up by name,
 *   so that every name we do not know is an error (a typo must not fall back
 *   to a default silently). Each known scalar goes to its handler in
 *   config_settings.c, as from kvfs_config_set().
 * - Every message names the file and the line of the setting at fault; the
 *   cross-field rules (config_check.c) get the lines of the settings they
 *   are about.
 * - libconfig 1.5 silently truncates integer literals that do not fit in 32
 *   bits unless they carry an 'L' suffix (99999999999 reads as 1215752191).
 *   For plain integers we re-read the literal from the source line and
 *   reject it when it does not match the parsed value.
 */
#include "config_priv.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const groups[] = {"cluster", "fabric", "server", "client"};
#define N_GROUPS (sizeof(groups) / sizeof(groups[0]))

static const char *type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_GROUP:
		return "group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "integer";
	case CONFIG_TYPE_FLOAT:
		return "floating-point number";
	case CONFIG_TYPE_STRING:
		return "string";
	case CONFIG_TYPE_BOOL:
		return "boolean";
	case CONFIG_TYPE_ARRAY:
		return "array";
	case CONFIG_TYPE_LIST:
		return "list";
	}
	return "value";
}

/* Loader state: the file and lines cfg_validate() needs for its messages. */
struct loader {
	struct kvfs_config *c;
	const char *path;
	char *err;
	size_t errlen;
	struct where cluster, servers, memory, max_value;
	int max_value_set;
};

static struct where where_of(const struct loader *ld, const config_setting_t *s)
{
	struct where w;

	w.file = config_setting_source_file(s);
	if (!w.file)
		w.file = ld->path;
	w.line = config_setting_source_line(s);
	return w;
}

static int ident_char(int ch)
{
	return isalnum(ch) || ch == '_' || ch == '-' || ch == '*';
}

/* Skips blanks, newlines and comments of libconfig. */
static const char *skip_space(const char *p)
{
	for (;;) {
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
			p += strcspn(p, "\n");
		} else if (p[0] == '/' && p[1] == '*') {
			const char *e = strstr(p + 2, "*/");
			if (!e)
				return p + strlen(p);
			p = e + 2;
		} else {
			return p;
		}
	}
}

/*
 * Whether the integer literal of setting name on line of file equals v
 * (see the libconfig 1.5 note at the top). 1 also when it cannot be found.
 */
static int int_literal_ok(const char *file, unsigned line, const char *name, long long v)
{
	char *text = NULL, *p, *end;
	size_t cap = 0, len = 0, nlen = strlen(name);
	unsigned long long u;
	int ok = 1, neg = 0;
	FILE *f;

	if (!file || !line || !(f = fopen(file, "r")))
		return 1;
	for (;;) { /* the whole file, NUL-terminated */
		if (len + 4096 + 1 > cap) {
			char *t = realloc(text, cap = cap ? cap * 2 : 8192);
			if (!t)
				goto out;
			text = t;
		}
		size_t r = fread(text + len, 1, cap - len - 1, f);
		len += r;
		if (r == 0)
			break;
	}
	text[len] = '\0';
	p = text;
	for (unsigned l = 1; l < line && p; l++) {
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	for (; p && (p = strstr(p, name)); p += nlen) {
		if ((p > text && ident_char((unsigned char)p[-1])) ||
		    ident_char((unsigned char)p[nlen]))
			continue;
		char *q = (char *)skip_space(p + nlen);
		if (*q != '=' && *q != ':')
			continue;
		q = (char *)skip_space(q + 1);
		if (*q == '-' || *q == '+')
			neg = *q++ == '-';
		errno = 0;
		if (q[0] == '0' && (q[1] == 'x' || q[1] == 'X'))
			u = strtoull(q + 2, &end, 16);
		else
			u = strtoull(q, &end, 10);
		if (end == q)
			break;
		if (errno || u > (unsigned long long)LLONG_MAX)
			ok = 0;
		else
			ok = (neg ? -(long long)u : (long long)u) == v;
		break;
	}
out:
	free(text);
	fclose(f);
	return ok;
}

/* A libconfig scalar as a val; ints are checked against their literal. */
static int val_from(struct loader *ld, const config_setting_t *s, const char *setting,
		    const struct where *w, struct val *v)
{
	memset(v, 0, sizeof(*v));
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
		v->kind = VAL_INT;
		v->i = config_setting_get_int(s);
		if (config_setting_name(s) &&
		    !int_literal_ok(w->file, w->line, config_setting_name(s), v->i)) {
			cfg_errf(
			    ld->err, ld->errlen, w, setting,
			    "integer does not fit in 32 bits; valid: a string such as \"64G\", "
			    "or an integer with an L suffix");
			return -EINVAL;
		}
		return 0;
	case CONFIG_TYPE_INT64:
		v->kind = VAL_INT;
		v->i = config_setting_get_int64(s);
		return 0;
	case CONFIG_TYPE_STRING:
		v->kind = VAL_STR;
		v->s = config_setting_get_string(s);
		return 0;
	case CONFIG_TYPE_BOOL:
		v->kind = VAL_BOOL;
		v->type = type_name(CONFIG_TYPE_BOOL);
		v->i = config_setting_get_bool(s);
		return 0;
	default:
		v->kind = VAL_OTHER;
		v->type = type_name(config_setting_type(s));
		return 0;
	}
}

static int load_server(struct loader *ld, const config_setting_t *g, int idx)
{
	struct kvfs_config *c = ld->c;
	struct kvfs_server_entry *e = &c->servers[c->n_servers];
	const char *valid_entry = "{ name = \"a\"; address = \"host:port\"; }";
	const config_setting_t *name = NULL, *addr = NULL;
	char setting[96], sub[128], q[128];
	struct where w = where_of(ld, g);
	const char *why;

	snprintf(setting, sizeof(setting), "cluster.servers[%d]", idx);
	if (!config_setting_is_group(g)) {
		/* libconfig 1.5 gives scalars in lists the line where the list ends. */
		w = where_of(ld, config_setting_parent(g));
		cfg_errf(ld->err, ld->errlen, &w, setting, "a %s is not a server entry; valid: %s",
			 type_name(config_setting_type(g)), valid_entry);
		return -EINVAL;
	}
	if (c->n_servers >= KVFS_MAX_SERVERS) {
		cfg_errf(ld->err, ld->errlen, &w, setting, "too many servers; valid: at most %d",
			 KVFS_MAX_SERVERS);
		return -EINVAL;
	}
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
		const char *mn = config_setting_name(m);
		struct where mw = where_of(ld, m);

		snprintf(sub, sizeof(sub), "%s.%s", setting, mn);
		if (strcmp(mn, "name") == 0) {
			name = m;
		} else if (strcmp(mn, "address") == 0) {
			addr = m;
		} else {
			cfg_errf(ld->err, ld->errlen, &mw, sub,
				 "unknown setting; valid: name or address");
			return -EINVAL;
		}
		if (config_setting_type(m) != CONFIG_TYPE_STRING) {
			cfg_errf(ld->err, ld->errlen, &mw, sub,
				 "a %s is not a string; valid: a string in double quotes",
				 type_name(config_setting_type(m)));
			return -EINVAL;
		}
	}
	if (!name || !addr) {
		cfg_errf(ld->err, ld->errlen, &w, setting, "missing %s; valid: %s",
			 !name ? "name" : "address", valid_entry);
		return -EINVAL;
	}

	memset(e, 0, sizeof(*e));
	w = where_of(ld, name);
	snprintf(sub, sizeof(sub), "%s.name", setting);
	const char *ns = config_setting_get_string(name);
	if (!cfg_valid_name(ns)) {
		cfg_errf(ld->err, ld->errlen, &w, sub,
			 "%s is not a server name; valid: 1 to %d characters of A-Z a-z 0-9 . _ -",
			 cfg_quote(q, sizeof(q), ns), KVFS_NAME_MAX - 1);
		return -EINVAL;
	}
	int dup = config_find_server(c, ns);
	if (dup >= 0) {
		cfg_errf(ld->err, ld->errlen, &w, sub,
			 "%s is already the name of cluster.servers[%d]; valid: a unique name",
			 cfg_quote(q, sizeof(q), ns), dup);
		return -EINVAL;
	}
	strcpy(e->name, ns);

	w = where_of(ld, addr);
	snprintf(sub, sizeof(sub), "%s.address", setting);
	if (cfg_parse_address(config_setting_get_string(addr), e, &why) < 0) {
		cfg_errf(ld->err, ld->errlen, &w, sub,
			 "%s is not an address (%s); valid: \"host:port\" or \"[ipv6]:port\" with "
			 "port 1 to 65535",
			 cfg_quote(q, sizeof(q), config_setting_get_string(addr)), why);
		return -EINVAL;
	}
	c->n_servers++;
	return 0;
}

static int load_servers(struct loader *ld, const config_setting_t *s)
{
	struct where w = where_of(ld, s);
	int rc;

	ld->servers = w;
	if (config_setting_type(s) != CONFIG_TYPE_LIST &&
	    !(config_setting_type(s) == CONFIG_TYPE_ARRAY && config_setting_length(s) == 0)) {
		cfg_errf(ld->err, ld->errlen, &w, "cluster.servers",
			 "a %s is not a server list; valid: a list ( { name = \"a\"; address = "
			 "\"host:port\"; }, ... )",
			 type_name(config_setting_type(s)));
		return -EINVAL;
	}
	for (int i = 0; i < config_setting_length(s); i++) {
		rc = load_server(ld, config_setting_get_elem(s, (unsigned)i), i);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int load_domains(struct loader *ld, const config_setting_t *s)
{
	struct where w = where_of(ld, s);
	char setting[64];
	int rc;

	if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
		cfg_errf(ld->err, ld->errlen, &w, "fabric.domains",
			 "a %s is not a list of names; valid: ( \"mlx5_0\", \"mlx5_1\" ) or ( ) "
			 "for the provider's default",
			 type_name(config_setting_type(s)));
		return -EINVAL;
	}
	ld->c->n_domains = 0;
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		struct where ew = w; /* see load_server() on lines of list scalars */

		snprintf(setting, sizeof(setting), "fabric.domains[%d]", i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			cfg_errf(ld->err, ld->errlen, &ew, setting,
				 "a %s is not a domain name; valid: a string such as \"mlx5_0\"",
				 type_name(config_setting_type(e)));
			return -EINVAL;
		}
		const char *d = config_setting_get_string(e);
		rc = cfg_add_domain(ld->c, d, strlen(d), setting, &ew, ld->err, ld->errlen);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int load_group(struct loader *ld, const config_setting_t *g)
{
	const char *gname = config_setting_name(g);
	struct where w = where_of(ld, g);
	char setting[128], names[256];
	struct val v;
	int rc;

	if (!config_setting_is_group(g)) {
		cfg_errf(ld->err, ld->errlen, &w, gname,
			 "a %s is not a group; valid: %s = { %s = ...; }",
			 type_name(config_setting_type(g)), gname,
			 cfg_valid_names(names, sizeof(names), gname));
		return -EINVAL;
	}
	if (strcmp(gname, "cluster") == 0)
		ld->cluster = w;
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
		const char *mname = config_setting_name(m);
		const struct setting_desc *d = NULL;
		struct where mw = where_of(ld, m);

		snprintf(setting, sizeof(setting), "%s.%s", gname, mname);
		for (size_t k = 0; k < cfg_n_settings; k++)
			if (strcmp(cfg_settings[k].group, gname) == 0 &&
			    strcmp(cfg_settings[k].name, mname) == 0)
				d = &cfg_settings[k];
		if (!d) {
			cfg_errf(ld->err, ld->errlen, &mw, setting, "unknown setting; valid: %s",
				 cfg_valid_names(names, sizeof(names), gname));
			return -EINVAL;
		}
		if (d->role == ROLE_DOMAINS) {
			rc = load_domains(ld, m);
		} else if (!d->set) {
			rc = load_servers(ld, m);
		} else {
			rc = val_from(ld, m, setting, &mw, &v);
			if (rc == 0)
				rc = d->set(ld->c, &v, setting, &mw, ld->err, ld->errlen);
		}
		if (rc < 0)
			return rc;
		if (d->role == ROLE_MEMORY)
			ld->memory = mw;
		if (d->role == ROLE_MAX_VALUE) {
			ld->max_value = mw;
			ld->max_value_set = 1;
		}
	}
	return 0;
}

int config_load(struct kvfs_config *c, const char *path, char *err, size_t errlen)
{
	struct loader ld;
	config_setting_t *root;
	struct where w = {NULL, 0};
	char dir[sizeof(c->path)], *slash;
	config_t cfg;
	FILE *f;
	int rc = 0;

	config_defaults(c);
	path = config_default_path(path);
	w.file = path;
	if (strlen(path) >= sizeof(c->path)) {
		cfg_errf(err, errlen, &w, NULL, "path is too long; valid: at most %zu bytes",
			 sizeof(c->path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(c->path, path);
	f = fopen(path, "r");
	if (!f) {
		rc = -errno;
		cfg_errf(
		    err, errlen, &w, NULL,
		    "cannot read config file: %s; valid: a readable libconfig file, given with "
		    "-c FILE or $KVFS_CONF (default " KVFS_DEFAULT_CONF ")",
		    strerror(-rc));
		return rc;
	}

	memset(&ld, 0, sizeof(ld));
	ld.c = c;
	ld.path = c->path;
	ld.err = err;
	ld.errlen = errlen;

	config_init(&cfg);
	/* @include "x.conf" is relative to the including file's directory. */
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (slash) {
		*(slash == dir ? slash + 1 : slash) = '\0';
		config_set_include_dir(&cfg, dir);
	}
	if (!config_read(&cfg, f)) {
		const char *text = config_error_text(&cfg);
		w.file = config_error_file(&cfg) ? config_error_file(&cfg) : c->path;
		w.line = (unsigned)config_error_line(&cfg);
		if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
			cfg_errf(
			    err, errlen, &w, NULL,
			    "%s (an @include file?); valid: @include of an existing readable file",
			    text ? text : "I/O error");
		else if (text && strstr(text, "duplicate"))
			cfg_errf(err, errlen, &w, NULL, "%s; valid: each setting once per group",
				 text);
		else
			cfg_errf(err, errlen, &w, NULL,
				 "%s; valid: libconfig syntax: name = value; groups { ... }, lists "
				 "( ... ), strings in double quotes, each setting ended by ';'",
				 text ? text : "syntax error");
		rc = -EINVAL;
		goto out;
	}

	root = config_root_setting(&cfg);
	for (int i = 0; i < config_setting_length(root); i++) {
		const config_setting_t *g = config_setting_get_elem(root, (unsigned)i);
		const char *gname = config_setting_name(g);
		size_t k;

		for (k = 0; k < N_GROUPS; k++)
			if (strcmp(gname, groups[k]) == 0)
				break;
		if (k == N_GROUPS) {
			w = where_of(&ld, g);
			cfg_errf(err, errlen, &w, gname,
				 "unknown setting; valid: cluster, fabric, server or client");
			rc = -EINVAL;
			goto out;
		}
		rc = load_group(&ld, g);
		if (rc < 0)
			goto out;
	}
	if (!ld.max_value_set && c->server_max_value > c->server_memory)
		c->server_max_value = c->server_memory;

	/* Lines for cfg_validate(): the most specific setting present, else line 1. */
	struct where one = {c->path, 1};
	struct where *ws = ld.servers.line ? &ld.servers : ld.cluster.line ? &ld.cluster : &one;
	struct where *wmem = ld.memory.line ? &ld.memory : &one;
	struct where *wmax = ld.max_value.line ? &ld.max_value : wmem;
	rc = cfg_validate(c, ws, wmem, wmax, err, errlen);
out:
	if (rc < 0) {
		explicit_bzero(c->secret, sizeof(c->secret));
		c->secret_len = 0;
	}
	config_destroy(&cfg);
	fclose(f);
	return rc;
}
