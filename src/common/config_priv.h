/*
 * config_priv: what the pieces of the configuration code share: config.c
 * (the public calls), config_read.c (the libconfig file), config_settings.c
 * (the settings table and the handler of each setting) and config_check.c
 * (defaults, parsers, cross-field validation and the message format).
 * Nothing outside src/common/config*.c includes it; config.h is the way in.
 */
#ifndef KVFS_CONFIG_PRIV_H
#define KVFS_CONFIG_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)

#define DEF_INLINE	(4 * KIB)
#define MAX_INLINE	(64 * KIB)
#define DEF_MEMORY	GIB
#define MIN_MEMORY	(16 * MIB)
#define MAX_MEMORY	(32 * GIB)
#define DEF_MAX_VALUE	GIB
#define DEF_BUFFER	(64 * MIB)
#define MIN_BUFFER	(4 * MIB)
#define MAX_BUFFER	(16 * GIB)
#define DEF_TIMEOUT	2000u
#define MAX_TIMEOUT	3600000u
#define DEF_STALL	30000u /* server.stall_timeout_ms */
#define DEF_HS_PER_ADDR 8u     /* server.handshakes_per_address */
#define MAX_HS_PER_ADDR 64u    /* all the server's handshake slots */

#define VALID_PROVIDERS "\"auto\", \"verbs\", \"efa\", \"tcp\" or \"shm\""

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

typedef int (*setter_fn)(struct kvfs_config *c, const struct val *v, const char *setting,
			 const struct where *w, char *err, size_t errlen);

/* What the file loader does with a setting besides calling its set. */
enum setting_role { ROLE_PLAIN, ROLE_SERVERS, ROLE_DOMAINS, ROLE_MEMORY, ROLE_MAX_VALUE };

struct setting_desc {
	const char *group;
	const char *name;
	setter_fn set; /* NULL: not a scalar (loaded specially) */
	enum setting_role role;
};

/* config_settings.c: every setting, in the order messages list them. */
extern const struct setting_desc cfg_settings[];
extern const size_t cfg_n_settings;
const char *cfg_valid_names(char *buf, size_t len, const char *group);
/* 1 if name is one of the providers of VALID_PROVIDERS, else 0. */
int cfg_known_provider(const char *name);
int cfg_add_domain(struct kvfs_config *c, const char *name, size_t len, const char *setting,
		   const struct where *w, char *err, size_t errlen);

/* config_check.c: messages, names, addresses, cross-field rules. */
void cfg_errf(char *err, size_t errlen, const struct where *w, const char *setting, const char *fmt,
	      ...) __attribute__((format(printf, 5, 6)));
const char *cfg_quote(char *buf, size_t len, const char *s);
const char *cfg_size_str(char *buf, size_t len, uint64_t v);
int cfg_valid_name(const char *name);
int cfg_parse_address(const char *addr, struct kvfs_server_entry *e, const char **why);
int cfg_validate(const struct kvfs_config *c, const struct where *w_servers,
		 const struct where *w_mem, const struct where *w_max, char *err, size_t errlen);

#endif
