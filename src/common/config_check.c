/*
 * config_check: the values of a configuration apart from where they come
 * from: the defaults, the size and address parsers, the cross-field rules
 * (config_validate) and the one message format every error uses:
 * "FILE:LINE: SETTING: problem; valid: ...", one line. Messages of values
 * from kvfs_config_set() have no file and start at "SETTING:".
 */
#include "config_priv.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cfg_errf(char *err, size_t errlen, const struct where *w, const char *setting, const char *fmt,
	      ...)
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
const char *cfg_quote(char *buf, size_t len, const char *s)
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

/* Bytes as "16M" when an exact multiple of a unit, else plain bytes. */
const char *cfg_size_str(char *buf, size_t len, uint64_t v)
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

int cfg_valid_name(const char *name)
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
	c->server_prefault = 1;
	c->server_hs_per_addr = DEF_HS_PER_ADDR;
	c->server_stall_ms = DEF_STALL;
	c->client_buffer = DEF_BUFFER;
	c->timeout_ms = DEF_TIMEOUT;
	c->local_map = 1;
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
int cfg_parse_address(const char *addr, struct kvfs_server_entry *e, const char **why)
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

	return cfg_parse_address(addr, e, &why);
}

/* Cross-field rules; w_* give the lines for messages (file NULL: none). */
int cfg_validate(const struct kvfs_config *c, const struct where *w_servers,
		 const struct where *w_mem, const struct where *w_max, char *err, size_t errlen)
{
	const struct where any = {w_servers->file, 0};
	char a[32], b[32], q[128];
	const char *why;

	if (c->n_servers < 1) {
		cfg_errf(err, errlen, w_servers, "cluster.servers",
			 "no servers; valid: a list of at least one { name = \"a\"; address = "
			 "\"host:port\"; }");
		return -EINVAL;
	}
	if (c->n_servers > KVFS_MAX_SERVERS) {
		cfg_errf(err, errlen, w_servers, "cluster.servers", "%d servers; valid: at most %d",
			 c->n_servers, KVFS_MAX_SERVERS);
		return -EINVAL;
	}
	for (int i = 0; i < c->n_servers; i++) {
		const struct kvfs_server_entry *e = &c->servers[i];
		struct kvfs_server_entry tmp;
		char addr[300];

		if (!memchr(e->name, '\0', sizeof(e->name)) || !cfg_valid_name(e->name)) {
			cfg_errf(
			    err, errlen, w_servers, "cluster.servers",
			    "server %d has a bad name; valid: 1 to %d characters of A-Z a-z 0-9 . "
			    "_ -",
			    i, KVFS_NAME_MAX - 1);
			return -EINVAL;
		}
		int first = config_find_server(c, e->name);
		if (first != i) {
			cfg_errf(err, errlen, w_servers, "cluster.servers",
				 "name %s is used by servers %d and %d; valid: unique names",
				 cfg_quote(q, sizeof(q), e->name), first, i);
			return -EINVAL;
		}
		snprintf(addr, sizeof(addr), strchr(e->host, ':') ? "[%.*s]:%.*s" : "%.*s:%.*s",
			 (int)sizeof(e->host) - 1, e->host, (int)sizeof(e->port) - 1, e->port);
		if (cfg_parse_address(addr, &tmp, &why) < 0) {
			cfg_errf(
			    err, errlen, w_servers, "cluster.servers",
			    "server %s has a bad address (%s); valid: host and port 1 to 65535",
			    cfg_quote(q, sizeof(q), e->name), why);
			return -EINVAL;
		}
	}
	if (!memchr(c->provider, '\0', sizeof(c->provider)) || !cfg_known_provider(c->provider)) {
		cfg_errf(err, errlen, &any, "fabric.provider",
			 "unknown provider; valid: " VALID_PROVIDERS);
		return -EINVAL;
	}
	if (c->n_domains < 0 || c->n_domains > KVFS_MAX_DOMAINS) {
		cfg_errf(err, errlen, &any, "fabric.domains", "%d domains; valid: 0 to %d",
			 c->n_domains, KVFS_MAX_DOMAINS);
		return -EINVAL;
	}
	if (c->inline_threshold > MAX_INLINE) {
		cfg_errf(err, errlen, &any, "fabric.inline_threshold",
			 "%" PRIu64 " is too large; valid: 0 to 64K", c->inline_threshold);
		return -EINVAL;
	}
	if (c->server_memory < MIN_MEMORY || c->server_memory > MAX_MEMORY) {
		cfg_errf(err, errlen, w_mem, "server.memory",
			 "%" PRIu64 " bytes is out of range; valid: 16M to 32G", c->server_memory);
		return -EINVAL;
	}
	if (c->server_max_value < 1 || c->server_max_value > c->server_memory) {
		cfg_errf(err, errlen, w_max, "server.max_value",
			 "%s is larger than server.memory (%s); valid: 1 byte to server.memory",
			 cfg_size_str(a, sizeof(a), c->server_max_value),
			 cfg_size_str(b, sizeof(b), c->server_memory));
		return -EINVAL;
	}
	if (c->eviction != KVFS_EVICT_LRU && c->eviction != KVFS_EVICT_NONE) {
		cfg_errf(err, errlen, &any, "server.eviction",
			 "bad policy; valid: \"lru\" or \"none\"");
		return -EINVAL;
	}
	if (c->client_buffer < MIN_BUFFER || c->client_buffer > MAX_BUFFER) {
		cfg_errf(err, errlen, &any, "client.buffer",
			 "%" PRIu64 " bytes is out of range; valid: 4M to 16G", c->client_buffer);
		return -EINVAL;
	}
	const char *ma[2] = {c->server_metrics, c->client_metrics};
	for (int i = 0; i < 2; i++) {
		struct kvfs_server_entry tmp;
		if (!memchr(ma[i], '\0', sizeof(c->server_metrics)) ||
		    (*ma[i] && cfg_parse_address(ma[i], &tmp, &why) < 0)) {
			cfg_errf(err, errlen, &any, i ? "client.metrics" : "server.metrics",
				 "not an address; valid: \"host:port\" or \"\" for none");
			return -EINVAL;
		}
	}
	if (c->timeout_ms < 1 || c->timeout_ms > MAX_TIMEOUT) {
		cfg_errf(err, errlen, &any, "client.timeout_ms",
			 "%u is out of range; valid: 1 to %u", c->timeout_ms, MAX_TIMEOUT);
		return -EINVAL;
	}
	if (c->server_hs_per_addr < 1 || c->server_hs_per_addr > MAX_HS_PER_ADDR) {
		cfg_errf(err, errlen, &any, "server.handshakes_per_address",
			 "%u is out of range; valid: 1 to %u", c->server_hs_per_addr,
			 MAX_HS_PER_ADDR);
		return -EINVAL;
	}
	return 0;
}

int config_validate(const struct kvfs_config *c, char *err, size_t errlen)
{
	struct where w = {c->path[0] && memchr(c->path, '\0', sizeof(c->path)) ? c->path : NULL, 0};

	return cfg_validate(c, &w, &w, &w, err, errlen);
}
