/*
 * config_settings: the table of every setting and the handler of each.
 *
 * Design choices:
 * - Every scalar setting has one handler that takes either a libconfig value
 *   or a string; the file loader and kvfs_config_set() share them, so both
 *   accept and reject the same values with the same messages.
 * - server.max_value defaults to min(1G, server.memory), so a small pool
 *   alone is a valid configuration.
 * - A secret file must be a regular file only its owner can read; the copy
 *   on the stack is wiped after use.
 */
#include "config_priv.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VALID_SIZE_FMT "a size from %s to %s: an integer or a string with a K, M, G or T suffix"

static const char *const providers[] = {"auto", "verbs", "efa", "tcp", "shm", NULL};

int cfg_known_provider(const char *name)
{
	for (int i = 0; providers[i]; i++)
		if (strcmp(name, providers[i]) == 0)
			return 1;
	return 0;
}

/* The value as written, for messages. */
static const char *val_str(char *buf, size_t len, const struct val *v)
{
	if (v->kind == VAL_INT)
		snprintf(buf, len, "%lld", v->i);
	else if (v->kind == VAL_STR)
		cfg_quote(buf, len, v->s);
	else
		snprintf(buf, len, "a %s", v->type);
	return buf;
}

/*
 * Reads the secret into c. Returns 0, -EINVAL (bad mode, empty, too long, not
 * a file) or -errno (cannot open or read).
 */
static int read_secret(struct kvfs_config *c, const char *file, const char *setting,
		       const struct where *w, char *err, size_t errlen)
{
	unsigned char buf[KVFS_SECRET_MAX + 2];
	size_t n = 0;
	struct stat st;
	char q[128];
	int fd, rc = -EINVAL;

	if (strlen(file) >= sizeof(c->secret_file)) {
		cfg_errf(err, errlen, w, setting,
			 "path is too long; valid: a path of at most %zu bytes",
			 sizeof(c->secret_file) - 1);
		return -ENAMETOOLONG;
	}
	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		cfg_errf(
		    err, errlen, w, setting,
		    "cannot open %s: %s; valid: an existing file readable by this user (uid %u)",
		    cfg_quote(q, sizeof(q), file), strerror(-rc), (unsigned)geteuid());
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		cfg_errf(err, errlen, w, setting, "cannot stat %s: %s; valid: a readable file",
			 cfg_quote(q, sizeof(q), file), strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		cfg_errf(err, errlen, w, setting, "%s is not a regular file; valid: a regular file",
			 cfg_quote(q, sizeof(q), file));
		goto out;
	}
	/*
	 * Only its owner may read it, or root's file its group too: the
	 * packages install root:kvfs 0640 for the kvfs-server user. Never
	 * others, never group write.
	 */
	mode_t group_ok = st.st_uid == 0 ? S_IRGRP : 0;
	if (st.st_mode & (S_IRWXG | S_IRWXO) & ~group_ok) {
		cfg_errf(err, errlen, w, setting,
			 "%s is accessible by group or others (mode %04o); valid: a file only its "
			 "owner can read: chmod 600 %s (or root's, readable by its group: chown "
			 "root:kvfs, chmod 640)",
			 cfg_quote(q, sizeof(q), file), (unsigned)(st.st_mode & 07777), file);
		goto out;
	}
	while (n < sizeof(buf)) {
		ssize_t r = read(fd, buf + n, sizeof(buf) - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			cfg_errf(err, errlen, w, setting,
				 "cannot read %s: %s; valid: a readable file",
				 cfg_quote(q, sizeof(q), file), strerror(-rc));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n == 0) {
		cfg_errf(err, errlen, w, setting,
			 "%s is empty; valid: a file holding 1 to %d bytes, e.g. made with "
			 "\"head -c 32 /dev/urandom | base64 > %s\"",
			 cfg_quote(q, sizeof(q), file), KVFS_SECRET_MAX, file);
		goto out;
	}
	if (n > KVFS_SECRET_MAX) {
		cfg_errf(err, errlen, w, setting,
			 "%s holds more than %d bytes; valid: a secret of 1 to %d bytes",
			 cfg_quote(q, sizeof(q), file), KVFS_SECRET_MAX, KVFS_SECRET_MAX);
		goto out;
	}
	memcpy(c->secret, buf, n);
	c->secret_len = n;
	strcpy(c->secret_file, file);
	rc = 0;
out:
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return rc;
}

/* Size in [lo, hi] from an integer or a suffixed string. */
static int get_size(const struct val *v, const char *setting, const struct where *w, uint64_t lo,
		    uint64_t hi, char *err, size_t errlen, uint64_t *out)
{
	char vs[128], los[32], his[32];
	uint64_t x;

	cfg_size_str(los, sizeof(los), lo);
	cfg_size_str(his, sizeof(his), hi);
	if (v->kind == VAL_INT && v->i < 0) {
		cfg_errf(err, errlen, w, setting, "%lld is negative; valid: " VALID_SIZE_FMT, v->i,
			 los, his);
		return -EINVAL;
	}
	if (v->kind == VAL_INT) {
		x = (uint64_t)v->i;
	} else if (v->kind != VAL_STR || config_parse_size(v->s, &x) < 0) {
		cfg_errf(err, errlen, w, setting,
			 "%s is not a size; valid: " VALID_SIZE_FMT
			 " (powers of 1024), e.g. \"%s\"",
			 val_str(vs, sizeof(vs), v), los, his, his);
		return -EINVAL;
	}
	if (x < lo || x > hi) {
		cfg_errf(err, errlen, w, setting, "%s is too %s; valid: " VALID_SIZE_FMT,
			 val_str(vs, sizeof(vs), v), x < lo ? "small" : "large", los, his);
		return -EINVAL;
	}
	*out = x;
	return 0;
}

static int get_string(const struct val *v, const char *setting, const struct where *w,
		      const char *valid, char *err, size_t errlen)
{
	char vs[128];

	if (v->kind == VAL_STR)
		return 0;
	cfg_errf(err, errlen, w, setting, "%s is not a string; valid: %s",
		 val_str(vs, sizeof(vs), v), valid);
	return -EINVAL;
}

static int set_secret_file(struct kvfs_config *c, const struct val *v, const char *setting,
			   const struct where *w, char *err, size_t errlen)
{
	const char *valid = "a path in double quotes, or \"\" for no authentication";
	int rc = get_string(v, setting, w, valid, err, errlen);

	if (rc < 0)
		return rc;
	if (!*v->s) {
		c->secret_file[0] = '\0';
		explicit_bzero(c->secret, sizeof(c->secret));
		c->secret_len = 0;
		return 0;
	}
	return read_secret(c, v->s, setting, w, err, errlen);
}

static int set_provider(struct kvfs_config *c, const struct val *v, const char *setting,
			const struct where *w, char *err, size_t errlen)
{
	char vs[128];
	int rc = get_string(v, setting, w, VALID_PROVIDERS, err, errlen);

	if (rc < 0)
		return rc;
	if (cfg_known_provider(v->s)) {
		strcpy(c->provider, v->s);
		return 0;
	}
	cfg_errf(err, errlen, w, setting, "%s is not a provider; valid: " VALID_PROVIDERS,
		 val_str(vs, sizeof(vs), v));
	return -EINVAL;
}

/* One domain name into the next slot; -EINVAL if bad, listed already or one too many. */
int cfg_add_domain(struct kvfs_config *c, const char *name, size_t len, const char *setting,
		   const struct where *w, char *err, size_t errlen)
{
	const char *valid = "NIC or domain names of 1 to 63 characters, as \"fi_info -l\" shows";
	char q[128], tmp[256];
	int ok = len > 0 && len < sizeof(c->domains[0]);

	for (size_t i = 0; ok && i < len; i++)
		ok = isgraph((unsigned char)name[i]) && name[i] != ',';
	if (!ok) {
		snprintf(tmp, sizeof(tmp), "%.*s", (int)(len < 200 ? len : 200), name);
		cfg_errf(err, errlen, w, setting, "%s is not a domain name; valid: %s",
			 cfg_quote(q, sizeof(q), tmp), valid);
		return -EINVAL;
	}
	for (int i = 0; i < c->n_domains; i++) {
		if (strlen(c->domains[i]) == len && memcmp(c->domains[i], name, len) == 0) {
			cfg_errf(err, errlen, w, setting, "\"%s\" is listed twice; valid: %s",
				 c->domains[i], "each domain once");
			return -EINVAL;
		}
	}
	if (c->n_domains >= KVFS_MAX_DOMAINS) {
		cfg_errf(err, errlen, w, setting, "more than %d domains; valid: at most %d",
			 KVFS_MAX_DOMAINS, KVFS_MAX_DOMAINS);
		return -EINVAL;
	}
	memcpy(c->domains[c->n_domains], name, len);
	c->domains[c->n_domains][len] = '\0';
	c->n_domains++;
	return 0;
}

/* kvfs_config_set() form: "mlx5_0,mlx5_1"; "" = default domain. */
static int set_domains(struct kvfs_config *c, const struct val *v, const char *setting,
		       const struct where *w, char *err, size_t errlen)
{
	struct kvfs_config tmp;
	const char *p;
	int rc = get_string(v, setting, w, "comma-separated domain names", err, errlen);

	if (rc < 0)
		return rc;
	tmp.n_domains = 0;
	for (p = v->s; *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		rc = cfg_add_domain(&tmp, p, len, setting, w, err, errlen);
		if (rc < 0)
			return rc;
		p += len;
		if (*p == ',')
			p++;
	}
	memcpy(c->domains, tmp.domains, sizeof(tmp.domains));
	c->n_domains = tmp.n_domains;
	return 0;
}

static int set_inline(struct kvfs_config *c, const struct val *v, const char *setting,
		      const struct where *w, char *err, size_t errlen)
{
	return get_size(v, setting, w, 0, MAX_INLINE, err, errlen, &c->inline_threshold);
}

static int set_memory(struct kvfs_config *c, const struct val *v, const char *setting,
		      const struct where *w, char *err, size_t errlen)
{
	uint64_t old_default = c->server_memory < DEF_MAX_VALUE ? c->server_memory : DEF_MAX_VALUE;
	int rc = get_size(v, setting, w, MIN_MEMORY, MAX_MEMORY, err, errlen, &c->server_memory);

	/*
	 * kvfs_config_set(): a max_value still at its default follows memory (see
	 * top). The loader applies that rule once the whole file is read.
	 */
	if (rc == 0 && !w && c->server_max_value == old_default)
		c->server_max_value =
		    c->server_memory < DEF_MAX_VALUE ? c->server_memory : DEF_MAX_VALUE;
	return rc;
}

static int set_max_value(struct kvfs_config *c, const struct val *v, const char *setting,
			 const struct where *w, char *err, size_t errlen)
{
	return get_size(v, setting, w, 1, MAX_MEMORY, err, errlen, &c->server_max_value);
}

static int set_eviction(struct kvfs_config *c, const struct val *v, const char *setting,
			const struct where *w, char *err, size_t errlen)
{
	const char *valid = "\"lru\" or \"none\"";
	char vs[128];
	int rc = get_string(v, setting, w, valid, err, errlen);

	if (rc < 0)
		return rc;
	if (strcmp(v->s, "lru") == 0) {
		c->eviction = KVFS_EVICT_LRU;
	} else if (strcmp(v->s, "none") == 0) {
		c->eviction = KVFS_EVICT_NONE;
	} else {
		cfg_errf(err, errlen, w, setting, "%s is not a policy; valid: %s",
			 val_str(vs, sizeof(vs), v), valid);
		return -EINVAL;
	}
	return 0;
}

static int set_buffer(struct kvfs_config *c, const struct val *v, const char *setting,
		      const struct where *w, char *err, size_t errlen)
{
	return get_size(v, setting, w, MIN_BUFFER, MAX_BUFFER, err, errlen, &c->client_buffer);
}

/* true / false, or the strings "true" / "false" (kvfs_config_set). */
static int get_bool(const struct val *v, const char *setting, const struct where *w, char *err,
		    size_t errlen, int *out)
{
	char vs[128];
	if (v->kind == VAL_BOOL)
		*out = (int)v->i;
	else if (v->kind == VAL_STR && strcmp(v->s, "true") == 0)
		*out = 1;
	else if (v->kind == VAL_STR && strcmp(v->s, "false") == 0)
		*out = 0;
	else {
		cfg_errf(err, errlen, w, setting, "%s is not a boolean; valid: true or false",
			 val_str(vs, sizeof(vs), v));
		return -EINVAL;
	}
	return 0;
}

static int set_local_map(struct kvfs_config *c, const struct val *v, const char *setting,
			 const struct where *w, char *err, size_t errlen)
{
	return get_bool(v, setting, w, err, errlen, &c->local_map);
}

static int set_prefault(struct kvfs_config *c, const struct val *v, const char *setting,
			const struct where *w, char *err, size_t errlen)
{
	return get_bool(v, setting, w, err, errlen, &c->server_prefault);
}

/*
 * A /metrics address: "host:port" or "[v6]:port" as cluster.servers
 * addresses are written, or "" for none. Where it can be bound is known only
 * when the program starts serving (a clear error then).
 */
static int get_metrics(const struct val *v, const char *setting, const struct where *w, char *err,
		       size_t errlen, char *out, size_t outlen)
{
	const char *valid = "\"host:port\" (e.g. \"127.0.0.1:9400\", \"[::1]:9400\"), or \"\" "
			    "for no metrics endpoint";
	struct kvfs_server_entry e;
	const char *why;
	char vs[128];
	int rc = get_string(v, setting, w, valid, err, errlen);

	if (rc < 0)
		return rc;
	if (*v->s && cfg_parse_address(v->s, &e, &why) < 0) {
		cfg_errf(err, errlen, w, setting, "%s is not an address (%s); valid: %s",
			 val_str(vs, sizeof(vs), v), why, valid);
		return -EINVAL;
	}
	if (strlen(v->s) >= outlen) {
		cfg_errf(err, errlen, w, setting, "address is too long; valid: at most %zu bytes",
			 outlen - 1);
		return -EINVAL;
	}
	strcpy(out, v->s);
	return 0;
}

static int set_server_metrics(struct kvfs_config *c, const struct val *v, const char *setting,
			      const struct where *w, char *err, size_t errlen)
{
	return get_metrics(v, setting, w, err, errlen, c->server_metrics,
			   sizeof(c->server_metrics));
}

static int set_client_metrics(struct kvfs_config *c, const struct val *v, const char *setting,
			      const struct where *w, char *err, size_t errlen)
{
	return get_metrics(v, setting, w, err, errlen, c->client_metrics,
			   sizeof(c->client_metrics));
}

/* An integer (or a string of digits) in [1, max]; what names it in the message. */
static int get_count(const struct val *v, const char *setting, const struct where *w, unsigned max,
		     const char *what, char *err, size_t errlen, unsigned *out)
{
	long long x = -1;
	char vs[128];

	if (v->kind == VAL_INT) {
		x = v->i;
	} else if (v->kind == VAL_STR && isdigit((unsigned char)v->s[0])) {
		char *end;
		errno = 0;
		x = strtoll(v->s, &end, 10);
		if (errno || *end)
			x = -1;
	}
	if (x < 1 || x > (long long)max) {
		cfg_errf(err, errlen, w, setting, "%s is not %s from 1 to %u",
			 val_str(vs, sizeof(vs), v), what, max);
		return -EINVAL;
	}
	*out = (unsigned)x;
	return 0;
}

static int set_timeout(struct kvfs_config *c, const struct val *v, const char *setting,
		       const struct where *w, char *err, size_t errlen)
{
	return get_count(v, setting, w, MAX_TIMEOUT,
			 "a timeout; valid: an integer number of milliseconds", err, errlen,
			 &c->timeout_ms);
}

static int set_hs_per_addr(struct kvfs_config *c, const struct val *v, const char *setting,
			   const struct where *w, char *err, size_t errlen)
{
	return get_count(v, setting, w, MAX_HS_PER_ADDR, "a count; valid: an integer", err, errlen,
			 &c->server_hs_per_addr);
}

static int set_stall_timeout(struct kvfs_config *c, const struct val *v, const char *setting,
			     const struct where *w, char *err, size_t errlen)
{
	return get_count(v, setting, w, MAX_TIMEOUT,
			 "a timeout; valid: an integer number of milliseconds", err, errlen,
			 &c->server_stall_ms);
}

const struct setting_desc cfg_settings[] = {
    {"cluster", "servers", NULL, ROLE_SERVERS},
    {"cluster", "secret_file", set_secret_file, ROLE_PLAIN},
    {"fabric", "provider", set_provider, ROLE_PLAIN},
    {"fabric", "domains", set_domains, ROLE_DOMAINS},
    {"fabric", "inline_threshold", set_inline, ROLE_PLAIN},
    {"server", "memory", set_memory, ROLE_MEMORY},
    {"server", "max_value", set_max_value, ROLE_MAX_VALUE},
    {"server", "eviction", set_eviction, ROLE_PLAIN},
    {"server", "prefault", set_prefault, ROLE_PLAIN},
    {"server", "stall_timeout_ms", set_stall_timeout, ROLE_PLAIN},
    {"server", "metrics", set_server_metrics, ROLE_PLAIN},
    {"server", "handshakes_per_address", set_hs_per_addr, ROLE_PLAIN},
    {"client", "buffer", set_buffer, ROLE_PLAIN},
    {"client", "timeout_ms", set_timeout, ROLE_PLAIN},
    {"client", "local_map", set_local_map, ROLE_PLAIN},
    {"client", "metrics", set_client_metrics, ROLE_PLAIN},
};
const size_t cfg_n_settings = sizeof(cfg_settings) / sizeof(cfg_settings[0]);

/* "a, b or c" of the members of group (every setting when group is NULL, dotted). */
const char *cfg_valid_names(char *buf, size_t len, const char *group)
{
	size_t n = 0, k = 0, total = 0;

	for (size_t i = 0; i < cfg_n_settings; i++)
		if (!group || strcmp(cfg_settings[i].group, group) == 0)
			total++;
	buf[0] = '\0';
	for (size_t i = 0; i < cfg_n_settings && n < len; i++) {
		if (group && strcmp(cfg_settings[i].group, group) != 0)
			continue;
		k++;
		int r = snprintf(
		    buf + n, len - n, "%s%s%s%s", k == 1 ? "" : (k == total ? " or " : ", "),
		    group ? "" : cfg_settings[i].group, group ? "" : ".", cfg_settings[i].name);
		if (r < 0)
			break;
		n += (size_t)r;
	}
	return buf;
}
