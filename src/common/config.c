/*
 * config: the kvfs.conf(5) parser (libconfig) and the in-code builder of the
 * public API (kvfs_config_new/_set/_add_server).
 *
 * Design choices:
 * - The parsed tree is walked member by member instead of looked up by name,
 *   so that every name we do not know is an error (a typo must not fall back
 *   to a default silently).
 * - Every scalar setting has one handler that takes either a libconfig value
 *   or a string; the file loader and kvfs_config_set() share them, so both
 *   accept and reject the same values with the same messages.
 * - Every message is one line: "FILE:LINE: SETTING: problem; valid: ...".
 *   kvfs_config_set() has no file, so its messages start at "SETTING:".
 * - libconfig 1.5 silently truncates integer literals that do not fit in 32
 *   bits unless they carry an 'L' suffix (99999999999 reads as 1215752191).
 *   For plain integers we re-read the literal from the source line and
 *   reject it when it does not match the parsed value.
 * - server.max_value defaults to min(1G, server.memory), so a small pool
 *   alone is a valid configuration.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libconfig.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)

#define DEF_INLINE    (4 * KIB)
#define MAX_INLINE    (64 * KIB)
#define DEF_MEMORY    GIB
#define MIN_MEMORY    (16 * MIB)
#define MAX_MEMORY    (32 * GIB)
#define DEF_MAX_VALUE GIB
#define DEF_BUFFER    (64 * MIB)
#define MIN_BUFFER    (4 * MIB)
#define MAX_BUFFER    (16 * GIB)
#define DEF_TIMEOUT   2000u
#define MAX_TIMEOUT   3600000u

#define VALID_SIZE_FMT "a size from %s to %s: an integer or a string with a K, M, G or T suffix"

/* Where a value came from: file NULL = kvfs_config_set(), line 0 = unknown. */
struct where {
	const char *file;
	unsigned line;
};

/* A value from the file (int or string; other libconfig types are errors) or from a string. */
enum val_kind { VAL_INT, VAL_STR, VAL_BOOL, VAL_OTHER };
struct val {
	enum val_kind kind;
	long long i;
	const char *s;
	const char *type; /* libconfig type name for VAL_BOOL and VAL_OTHER */
};

static const char *const providers[] = {"auto", "verbs", "efa", "tcp", "shm", NULL};
#define VALID_PROVIDERS "\"auto\", \"verbs\", \"efa\", \"tcp\" or \"shm\""

static void errf(char *err, size_t errlen, const struct where *w, const char *setting,
		 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void errf(char *err, size_t errlen, const struct where *w, const char *setting,
		 const char *fmt, ...)
{
	size_t n = 0;
	int r = 0;
	va_list ap;

	if (!err || errlen == 0)
		return;
	err[0] = '\0';
	if (w && w->file && w->line)
		r = snprintf(err, errlen, "%s:%u: ", w->file, w->line);
	else if (w && w->file)
		r = snprintf(err, errlen, "%s: ", w->file);
	if (r > 0)
		n = (size_t)r < errlen ? (size_t)r : errlen - 1;
	if (setting && n < errlen) {
		r = snprintf(err + n, errlen - n, "%s: ", setting);
		if (r > 0)
			n += (size_t)r < errlen - n ? (size_t)r : errlen - n - 1;
	}
	va_start(ap, fmt);
	if (n < errlen)
		vsnprintf(err + n, errlen - n, fmt, ap);
	va_end(ap);
	/* One line, whatever the value or strerror contained. */
	for (char *p = err; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

/* s as a C string literal for messages: escaped, at most ~80 characters. */
static const char *quote(char *buf, size_t len, const char *s)
{
	size_t n = 0;

	buf[n++] = '"';
	for (; *s && n + 8 < len; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)ch;
		} else if (ch < 0x20 || ch >= 0x7f) {
			n += (size_t)snprintf(buf + n, len - n, "\\x%02x", ch);
		} else {
			buf[n++] = (char)ch;
		}
	}
	if (*s) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n++] = '"';
	buf[n] = '\0';
	return buf;
}

/* The value as written, for messages. */
static const char *val_str(char *buf, size_t len, const struct val *v)
{
	if (v->kind == VAL_INT)
		snprintf(buf, len, "%lld", v->i);
	else if (v->kind == VAL_STR)
		quote(buf, len, v->s);
	else
		snprintf(buf, len, "a %s", v->type);
	return buf;
}

/* Bytes as "16M" when an exact multiple of a unit, else plain bytes. */
static const char *size_str(char *buf, size_t len, uint64_t v)
{
	static const char units[] = "KMGT";
	int u = -1;

	while (u < 3 && v && (v & (KIB - 1)) == 0) {
		v >>= 10;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%" PRIu64, v);
	else
		snprintf(buf, len, "%" PRIu64 "%c", v, units[u]);
	return buf;
}

static int name_char_ok(int ch)
{
	return isalnum(ch) || ch == '.' || ch == '_' || ch == '-';
}

static int valid_name(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n >= KVFS_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!name_char_ok((unsigned char)name[i]))
			return 0;
	return 1;
}

void config_defaults(struct kvfs_config *c)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->provider, "auto");
	c->inline_threshold = DEF_INLINE;
	c->server_memory = DEF_MEMORY;
	c->server_max_value = DEF_MAX_VALUE;
	c->eviction = KVFS_EVICT_LRU;
	c->client_buffer = DEF_BUFFER;
	c->timeout_ms = DEF_TIMEOUT;
	c->local_map = 1;
}

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

int config_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	while (*end == ' ')
		end++;
	switch (tolower((unsigned char)*end)) {
	case 'k':
		shift = 10;
		break;
	case 'm':
		shift = 20;
		break;
	case 'g':
		shift = 30;
		break;
	case 't':
		shift = 40;
		break;
	}
	if (shift) {
		end++;
		if (tolower((unsigned char)*end) == 'i') {
			end++;
			if (tolower((unsigned char)*end) != 'b')
				return -EINVAL;
		}
	}
	if (tolower((unsigned char)*end) == 'b')
		end++;
	if (*end)
		return -EINVAL;
	if (v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

/* config_parse_address() with the reason for a failure. */
static int parse_address(const char *addr, struct kvfs_server_entry *e, const char **why)
{
	const char *hs, *he, *p;
	unsigned long port = 0;
	size_t hlen, plen;

	*why = "empty";
	if (!addr || !*addr)
		return -EINVAL;
	if (addr[0] == '[') {
		hs = addr + 1;
		he = strchr(hs, ']');
		*why = "missing \"]\" after the IPv6 address";
		if (!he)
			return -EINVAL;
		*why = "missing \":port\" after \"]\"";
		if (he[1] != ':')
			return -EINVAL;
		p = he + 2;
		*why = "bad character in the IPv6 address";
		for (const char *q = hs; q < he; q++) {
			if (*q == '%') { /* zone: fe80::1%eth0 */
				for (q++; q < he; q++)
					if (!name_char_ok((unsigned char)*q))
						return -EINVAL;
				break;
			}
			if (!isxdigit((unsigned char)*q) && *q != ':' && *q != '.')
				return -EINVAL;
		}
		*why = "not an IPv6 address";
		if (!memchr(hs, ':', (size_t)(he - hs)))
			return -EINVAL;
	} else {
		hs = addr;
		he = strrchr(addr, ':');
		*why = "missing \":port\"";
		if (!he)
			return -EINVAL;
		*why = "an IPv6 address must be in brackets";
		if (memchr(hs, ':', (size_t)(he - hs)))
			return -EINVAL;
		*why = "bad character in the host name";
		for (const char *q = hs; q < he; q++)
			if (!name_char_ok((unsigned char)*q))
				return -EINVAL;
		p = he + 1;
	}
	hlen = (size_t)(he - hs);
	*why = "empty host";
	if (hlen == 0)
		return -EINVAL;
	*why = "host longer than 255 characters";
	if (hlen >= sizeof(e->host))
		return -EINVAL;
	plen = strlen(p);
	*why = "port is not a number from 1 to 65535";
	if (plen == 0 || plen > 5)
		return -EINVAL;
	for (size_t i = 0; i < plen; i++) {
		if (!isdigit((unsigned char)p[i]))
			return -EINVAL;
		port = port * 10 + (unsigned long)(p[i] - '0');
	}
	if (port < 1 || port > 65535)
		return -EINVAL;
	memcpy(e->host, hs, hlen);
	e->host[hlen] = '\0';
	snprintf(e->port, sizeof(e->port), "%lu", port);
	*why = NULL;
	return 0;
}

int config_parse_address(const char *addr, struct kvfs_server_entry *e)
{
	const char *why;

	return parse_address(addr, e, &why);
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
		errf(err, errlen, w, setting,
		     "path is too long; valid: a path of at most %zu bytes",
		     sizeof(c->secret_file) - 1);
		return -ENAMETOOLONG;
	}
	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		errf(err, errlen, w, setting,
		     "cannot open %s: %s; valid: an existing file readable by this user (uid %u)",
		     quote(q, sizeof(q), file), strerror(-rc), (unsigned)geteuid());
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		errf(err, errlen, w, setting, "cannot stat %s: %s; valid: a readable file",
		     quote(q, sizeof(q), file), strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		errf(err, errlen, w, setting, "%s is not a regular file; valid: a regular file",
		     quote(q, sizeof(q), file));
		goto out;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		errf(err, errlen, w, setting,
		     "%s is accessible by group or others (mode %04o); valid: a file only its "
		     "owner can read: chmod 600 %s",
		     quote(q, sizeof(q), file), (unsigned)(st.st_mode & 07777), file);
		goto out;
	}
	while (n < sizeof(buf)) {
		ssize_t r = read(fd, buf + n, sizeof(buf) - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			errf(err, errlen, w, setting, "cannot read %s: %s; valid: a readable file",
			     quote(q, sizeof(q), file), strerror(-rc));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n == 0) {
		errf(err, errlen, w, setting,
		     "%s is empty; valid: a file holding 1 to %d bytes, e.g. made with "
		     "\"head -c 32 /dev/urandom | base64 > %s\"",
		     quote(q, sizeof(q), file), KVFS_SECRET_MAX, file);
		goto out;
	}
	if (n > KVFS_SECRET_MAX) {
		errf(err, errlen, w, setting,
		     "%s holds more than %d bytes; valid: a secret of 1 to %d bytes",
		     quote(q, sizeof(q), file), KVFS_SECRET_MAX, KVFS_SECRET_MAX);
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

	size_str(los, sizeof(los), lo);
	size_str(his, sizeof(his), hi);
	if (v->kind == VAL_INT && v->i < 0) {
		errf(err, errlen, w, setting, "%lld is negative; valid: " VALID_SIZE_FMT, v->i, los,
		     his);
		return -EINVAL;
	}
	if (v->kind == VAL_INT) {
		x = (uint64_t)v->i;
	} else if (v->kind != VAL_STR || config_parse_size(v->s, &x) < 0) {
		errf(err, errlen, w, setting,
		     "%s is not a size; valid: " VALID_SIZE_FMT " (powers of 1024), e.g. \"%s\"",
		     val_str(vs, sizeof(vs), v), los, his, his);
		return -EINVAL;
	}
	if (x < lo || x > hi) {
		errf(err, errlen, w, setting, "%s is too %s; valid: " VALID_SIZE_FMT,
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
	errf(err, errlen, w, setting, "%s is not a string; valid: %s", val_str(vs, sizeof(vs), v),
	     valid);
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
	for (int i = 0; providers[i]; i++) {
		if (strcmp(v->s, providers[i]) == 0) {
			strcpy(c->provider, providers[i]);
			return 0;
		}
	}
	errf(err, errlen, w, setting, "%s is not a provider; valid: " VALID_PROVIDERS,
	     val_str(vs, sizeof(vs), v));
	return -EINVAL;
}

/* One domain name into slot i; the caller checks the count. */
static int add_domain(struct kvfs_config *c, const char *name, size_t len, const char *setting,
		      const struct where *w, char *err, size_t errlen)
{
	const char *valid = "NIC or domain names of 1 to 63 characters, as \"fi_info -l\" shows";
	char q[128], tmp[256];
	int ok = len > 0 && len < sizeof(c->domains[0]);

	for (size_t i = 0; ok && i < len; i++)
		ok = isgraph((unsigned char)name[i]) && name[i] != ',';
	if (!ok) {
		snprintf(tmp, sizeof(tmp), "%.*s", (int)(len < 200 ? len : 200), name);
		errf(err, errlen, w, setting, "%s is not a domain name; valid: %s",
		     quote(q, sizeof(q), tmp), valid);
		return -EINVAL;
	}
	for (int i = 0; i < c->n_domains; i++) {
		if (strlen(c->domains[i]) == len && memcmp(c->domains[i], name, len) == 0) {
			errf(err, errlen, w, setting, "\"%s\" is listed twice; valid: %s",
			     c->domains[i], "each domain once");
			return -EINVAL;
		}
	}
	if (c->n_domains >= KVFS_MAX_DOMAINS) {
		errf(err, errlen, w, setting, "more than %d domains; valid: at most %d",
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
		rc = add_domain(&tmp, p, len, setting, w, err, errlen);
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
		errf(err, errlen, w, setting, "%s is not a policy; valid: %s",
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
static int set_local_map(struct kvfs_config *c, const struct val *v, const char *setting,
			 const struct where *w, char *err, size_t errlen)
{
	char vs[128];
	if (v->kind == VAL_BOOL)
		c->local_map = (int)v->i;
	else if (v->kind == VAL_STR && strcmp(v->s, "true") == 0)
		c->local_map = 1;
	else if (v->kind == VAL_STR && strcmp(v->s, "false") == 0)
		c->local_map = 0;
	else {
		errf(err, errlen, w, setting, "%s is not a boolean; valid: true or false",
		     val_str(vs, sizeof(vs), v));
		return -EINVAL;
	}
	return 0;
}

static int set_timeout(struct kvfs_config *c, const struct val *v, const char *setting,
		       const struct where *w, char *err, size_t errlen)
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
	if (x < 1 || x > (long long)MAX_TIMEOUT) {
		errf(err, errlen, w, setting,
		     "%s is not a timeout; valid: an integer number of milliseconds from 1 to %u",
		     val_str(vs, sizeof(vs), v), MAX_TIMEOUT);
		return -EINVAL;
	}
	c->timeout_ms = (unsigned)x;
	return 0;
}

typedef int (*setter_fn)(struct kvfs_config *c, const struct val *v, const char *setting,
			 const struct where *w, char *err, size_t errlen);

struct setting_desc {
	const char *group;
	const char *name;
	setter_fn set; /* NULL: not a scalar (loaded specially) */
};

static const struct setting_desc settings[] = {
    {"cluster", "servers", NULL},
    {"cluster", "secret_file", set_secret_file},
    {"fabric", "provider", set_provider},
    {"fabric", "domains", set_domains},
    {"fabric", "inline_threshold", set_inline},
    {"server", "memory", set_memory},
    {"server", "max_value", set_max_value},
    {"server", "eviction", set_eviction},
    {"client", "buffer", set_buffer},
    {"client", "timeout_ms", set_timeout},
    {"client", "local_map", set_local_map},
};
#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

static const char *const groups[] = {"cluster", "fabric", "server", "client"};
#define N_GROUPS (sizeof(groups) / sizeof(groups[0]))

/* "a, b or c" of the members of group (every setting when group is NULL, dotted). */
static const char *valid_names(char *buf, size_t len, const char *group)
{
	size_t n = 0, k = 0, total = 0;

	for (size_t i = 0; i < N_SETTINGS; i++)
		if (!group || strcmp(settings[i].group, group) == 0)
			total++;
	buf[0] = '\0';
	for (size_t i = 0; i < N_SETTINGS && n < len; i++) {
		if (group && strcmp(settings[i].group, group) != 0)
			continue;
		k++;
		int r = snprintf(
		    buf + n, len - n, "%s%s%s%s", k == 1 ? "" : (k == total ? " or " : ", "),
		    group ? "" : settings[i].group, group ? "" : ".", settings[i].name);
		if (r < 0)
			break;
		n += (size_t)r;
	}
	return buf;
}

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

/* Loader state: the file and lines validate() needs for its messages. */
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
			errf(ld->err, ld->errlen, w, setting,
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
		errf(ld->err, ld->errlen, &w, setting, "a %s is not a server entry; valid: %s",
		     type_name(config_setting_type(g)), valid_entry);
		return -EINVAL;
	}
	if (c->n_servers >= KVFS_MAX_SERVERS) {
		errf(ld->err, ld->errlen, &w, setting, "too many servers; valid: at most %d",
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
			errf(ld->err, ld->errlen, &mw, sub,
			     "unknown setting; valid: name or address");
			return -EINVAL;
		}
		if (config_setting_type(m) != CONFIG_TYPE_STRING) {
			errf(ld->err, ld->errlen, &mw, sub,
			     "a %s is not a string; valid: a string in double quotes",
			     type_name(config_setting_type(m)));
			return -EINVAL;
		}
	}
	if (!name || !addr) {
		errf(ld->err, ld->errlen, &w, setting, "missing %s; valid: %s",
		     !name ? "name" : "address", valid_entry);
		return -EINVAL;
	}

	memset(e, 0, sizeof(*e));
	w = where_of(ld, name);
	snprintf(sub, sizeof(sub), "%s.name", setting);
	const char *ns = config_setting_get_string(name);
	if (!valid_name(ns)) {
		errf(ld->err, ld->errlen, &w, sub,
		     "%s is not a server name; valid: 1 to %d characters of A-Z a-z 0-9 . _ -",
		     quote(q, sizeof(q), ns), KVFS_NAME_MAX - 1);
		return -EINVAL;
	}
	int dup = config_find_server(c, ns);
	if (dup >= 0) {
		errf(ld->err, ld->errlen, &w, sub,
		     "%s is already the name of cluster.servers[%d]; valid: a unique name",
		     quote(q, sizeof(q), ns), dup);
		return -EINVAL;
	}
	strcpy(e->name, ns);

	w = where_of(ld, addr);
	snprintf(sub, sizeof(sub), "%s.address", setting);
	if (parse_address(config_setting_get_string(addr), e, &why) < 0) {
		errf(ld->err, ld->errlen, &w, sub,
		     "%s is not an address (%s); valid: \"host:port\" or \"[ipv6]:port\" with "
		     "port 1 to 65535",
		     quote(q, sizeof(q), config_setting_get_string(addr)), why);
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
		errf(ld->err, ld->errlen, &w, "cluster.servers",
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
		errf(ld->err, ld->errlen, &w, "fabric.domains",
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
			errf(ld->err, ld->errlen, &ew, setting,
			     "a %s is not a domain name; valid: a string such as \"mlx5_0\"",
			     type_name(config_setting_type(e)));
			return -EINVAL;
		}
		const char *d = config_setting_get_string(e);
		rc = add_domain(ld->c, d, strlen(d), setting, &ew, ld->err, ld->errlen);
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
		errf(ld->err, ld->errlen, &w, gname,
		     "a %s is not a group; valid: %s = { %s = ...; }",
		     type_name(config_setting_type(g)), gname,
		     valid_names(names, sizeof(names), gname));
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
		for (size_t k = 0; k < N_SETTINGS; k++)
			if (strcmp(settings[k].group, gname) == 0 &&
			    strcmp(settings[k].name, mname) == 0)
				d = &settings[k];
		if (!d) {
			errf(ld->err, ld->errlen, &mw, setting, "unknown setting; valid: %s",
			     valid_names(names, sizeof(names), gname));
			return -EINVAL;
		}
		if (d->set == set_domains) {
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
		if (d->set == set_memory)
			ld->memory = mw;
		if (d->set == set_max_value) {
			ld->max_value = mw;
			ld->max_value_set = 1;
		}
	}
	return 0;
}

/* Cross-field rules; w_* give the lines for messages (file NULL: none). */
static int validate(const struct kvfs_config *c, const struct where *w_servers,
		    const struct where *w_mem, const struct where *w_max, char *err, size_t errlen)
{
	const struct where any = {w_servers->file, 0};
	char a[32], b[32], q[128];
	const char *why;

	if (c->n_servers < 1) {
		errf(err, errlen, w_servers, "cluster.servers",
		     "no servers; valid: a list of at least one { name = \"a\"; address = "
		     "\"host:port\"; }");
		return -EINVAL;
	}
	if (c->n_servers > KVFS_MAX_SERVERS) {
		errf(err, errlen, w_servers, "cluster.servers", "%d servers; valid: at most %d",
		     c->n_servers, KVFS_MAX_SERVERS);
		return -EINVAL;
	}
	for (int i = 0; i < c->n_servers; i++) {
		const struct kvfs_server_entry *e = &c->servers[i];
		struct kvfs_server_entry tmp;
		char addr[300];

		if (!memchr(e->name, '\0', sizeof(e->name)) || !valid_name(e->name)) {
			errf(err, errlen, w_servers, "cluster.servers",
			     "server %d has a bad name; valid: 1 to %d characters of A-Z a-z 0-9 . "
			     "_ -",
			     i, KVFS_NAME_MAX - 1);
			return -EINVAL;
		}
		int first = config_find_server(c, e->name);
		if (first != i) {
			errf(err, errlen, w_servers, "cluster.servers",
			     "name %s is used by servers %d and %d; valid: unique names",
			     quote(q, sizeof(q), e->name), first, i);
			return -EINVAL;
		}
		snprintf(addr, sizeof(addr), strchr(e->host, ':') ? "[%.*s]:%.*s" : "%.*s:%.*s",
			 (int)sizeof(e->host) - 1, e->host, (int)sizeof(e->port) - 1, e->port);
		if (parse_address(addr, &tmp, &why) < 0) {
			errf(err, errlen, w_servers, "cluster.servers",
			     "server %s has a bad address (%s); valid: host and port 1 to 65535",
			     quote(q, sizeof(q), e->name), why);
			return -EINVAL;
		}
	}
	if (!memchr(c->provider, '\0', sizeof(c->provider)) ||
	    (strcmp(c->provider, "auto") && strcmp(c->provider, "verbs") &&
	     strcmp(c->provider, "efa") && strcmp(c->provider, "tcp") &&
	     strcmp(c->provider, "shm"))) {
		errf(err, errlen, &any, "fabric.provider",
		     "unknown provider; valid: " VALID_PROVIDERS);
		return -EINVAL;
	}
	if (c->n_domains < 0 || c->n_domains > KVFS_MAX_DOMAINS) {
		errf(err, errlen, &any, "fabric.domains", "%d domains; valid: 0 to %d",
		     c->n_domains, KVFS_MAX_DOMAINS);
		return -EINVAL;
	}
	if (c->inline_threshold > MAX_INLINE) {
		errf(err, errlen, &any, "fabric.inline_threshold",
		     "%" PRIu64 " is too large; valid: 0 to 64K", c->inline_threshold);
		return -EINVAL;
	}
	if (c->server_memory < MIN_MEMORY || c->server_memory > MAX_MEMORY) {
		errf(err, errlen, w_mem, "server.memory",
		     "%" PRIu64 " bytes is out of range; valid: 16M to 32G", c->server_memory);
		return -EINVAL;
	}
	if (c->server_max_value < 1 || c->server_max_value > c->server_memory) {
		errf(err, errlen, w_max, "server.max_value",
		     "%s is larger than server.memory (%s); valid: 1 byte to server.memory",
		     size_str(a, sizeof(a), c->server_max_value),
		     size_str(b, sizeof(b), c->server_memory));
		return -EINVAL;
	}
	if (c->eviction != KVFS_EVICT_LRU && c->eviction != KVFS_EVICT_NONE) {
		errf(err, errlen, &any, "server.eviction",
		     "bad policy; valid: \"lru\" or \"none\"");
		return -EINVAL;
	}
	if (c->client_buffer < MIN_BUFFER || c->client_buffer > MAX_BUFFER) {
		errf(err, errlen, &any, "client.buffer",
		     "%" PRIu64 " bytes is out of range; valid: 4M to 16G", c->client_buffer);
		return -EINVAL;
	}
	if (c->timeout_ms < 1 || c->timeout_ms > MAX_TIMEOUT) {
		errf(err, errlen, &any, "client.timeout_ms", "%u is out of range; valid: 1 to %u",
		     c->timeout_ms, MAX_TIMEOUT);
		return -EINVAL;
	}
	return 0;
}

int config_validate(const struct kvfs_config *c, char *err, size_t errlen)
{
	struct where w = {c->path[0] && memchr(c->path, '\0', sizeof(c->path)) ? c->path : NULL, 0};

	return validate(c, &w, &w, &w, err, errlen);
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
		errf(err, errlen, &w, NULL, "path is too long; valid: at most %zu bytes",
		     sizeof(c->path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(c->path, path);
	f = fopen(path, "r");
	if (!f) {
		rc = -errno;
		errf(err, errlen, &w, NULL,
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
			errf(err, errlen, &w, NULL,
			     "%s (an @include file?); valid: @include of an existing readable file",
			     text ? text : "I/O error");
		else if (text && strstr(text, "duplicate"))
			errf(err, errlen, &w, NULL, "%s; valid: each setting once per group", text);
		else
			errf(err, errlen, &w, NULL,
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
			errf(err, errlen, &w, gname,
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

	/* Lines for validate(): the most specific setting present, else line 1. */
	struct where one = {c->path, 1};
	struct where *ws = ld.servers.line ? &ld.servers : ld.cluster.line ? &ld.cluster : &one;
	struct where *wmem = ld.memory.line ? &ld.memory : &one;
	struct where *wmax = ld.max_value.line ? &ld.max_value : wmem;
	rc = validate(c, ws, wmem, wmax, err, errlen);
out:
	if (rc < 0) {
		explicit_bzero(c->secret, sizeof(c->secret));
		c->secret_len = 0;
	}
	config_destroy(&cfg);
	fclose(f);
	return rc;
}

/* Public API (kvfs.h). */

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
		errf(err, errlen, NULL, NULL, "out of memory");
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

	if (!cfg || !valid_name(name))
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
		errf(err, errlen, NULL, NULL, "no configuration or setting given");
		return -EINVAL;
	}
	for (size_t k = 0; k < N_SETTINGS; k++) {
		const struct setting_desc *d = &settings[k];
		size_t gl = strlen(d->group);

		if (strncmp(setting, d->group, gl) != 0 || setting[gl] != '.' ||
		    strcmp(setting + gl + 1, d->name) != 0)
			continue;
		if (!d->set) {
			errf(
			    err, errlen, NULL, setting,
			    "cannot be set from a string; valid: kvfs_config_add_server(cfg, name, "
			    "\"host:port\")");
			return -EINVAL;
		}
		if (!value) {
			errf(err, errlen, NULL, setting,
			     "no value given; valid: a value as in the file");
			return -EINVAL;
		}
		memset(&v, 0, sizeof(v));
		v.kind = VAL_STR;
		v.s = value;
		return d->set(cfg, &v, setting, NULL, err, errlen);
	}
	errf(err, errlen, NULL, setting, "unknown setting; valid: %s",
	     valid_names(names, sizeof(names), NULL));
	return -EINVAL;
}

void kvfs_config_free(struct kvfs_config *cfg)
{
	if (!cfg)
		return;
	explicit_bzero(cfg->secret, sizeof(cfg->secret));
	free(cfg);
}
