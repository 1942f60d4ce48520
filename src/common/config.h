/*
 * Configuration: one libconfig file serves kvfs-server, kvfs and kvfsctl.
 *
 *   cluster = { servers = ( { name = "a"; address = "127.0.0.1:7400"; } ... );
 *               secret_file = "/etc/kvfs/secret"; };
 *   fabric  = { provider = "auto"; domains = ( "mlx5_0" ); inline_threshold = "4K"; };
 *   server  = { memory = "1G"; max_value = "1G"; eviction = "lru"; metrics = "127.0.0.1:9400"; };
 *   client  = { buffer = "64M"; timeout_ms = 2000; metrics = "127.0.0.1:9401"; };
 *
 * Every setting is optional except cluster.servers. Sizes are integers or
 * strings with a K/M/G/T suffix (powers of 1024). Unknown settings are errors
 * (a typo must not silently fall back to a default). Each error message names
 * the file, the line, the setting and what would be valid.
 */
#ifndef KVFS_CONFIG_H
#define KVFS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/*
 * Without include/kvfs/kvfs.h, so that the server sees none of the public
 * API through it: config.c, which implements the public kvfs_config_* calls,
 * includes kvfs.h and checks that this equals KVFS_CONFIG_DEFAULT.
 */
#define KVFS_DEFAULT_CONF "/etc/kvfs/kvfs.conf"
#define KVFS_MAX_SERVERS  64
#define KVFS_MAX_DOMAINS  8
#define KVFS_NAME_MAX	  64
#define KVFS_SECRET_MAX	  256

enum kvfs_eviction { KVFS_EVICT_LRU = 0, KVFS_EVICT_NONE = 1 };

struct kvfs_server_entry {
	char name[KVFS_NAME_MAX];
	char host[256]; /* IPv4/IPv6 literal or host name, without brackets */
	char port[8];
};

struct kvfs_config {
	char path[4096]; /* file it came from, "" when built in code */

	struct kvfs_server_entry servers[KVFS_MAX_SERVERS];
	int n_servers;
	char secret_file[4096]; /* "" = no authentication */
	unsigned char secret[KVFS_SECRET_MAX];
	size_t secret_len; /* bytes read from secret_file (trailing newline stripped) */

	char provider[32]; /* auto | verbs | efa | tcp | shm */
	char domains[KVFS_MAX_DOMAINS][64];
	int n_domains;
	uint64_t inline_threshold; /* default 4096, at most 65536 */

	uint64_t server_memory;	   /* default 1G, at least 16M */
	uint64_t server_max_value; /* default 1G, at most server_memory */
	enum kvfs_eviction eviction;
	int server_prefault;	     /* populate the pool at start (default 1) */
	char server_metrics[300];    /* "host:port" of kvfs-server's /metrics; "" = off (default) */
	unsigned server_hs_per_addr; /* handshakes at once from one address (default 8, 1..64) */
	unsigned server_stall_ms;    /* drop a session whose request made no progress this long */

	uint64_t client_buffer;	  /* default 64M, at least 4M */
	unsigned timeout_ms;	  /* default 2000, 1..3600000 */
	int local_map;		  /* map the pool of a server on this host (default 1) */
	char client_metrics[300]; /* "host:port" of the kvfs mount's /metrics; "" = off */
};

/* Defaults for every setting and no servers. */
void config_defaults(struct kvfs_config *c);

/*
 * Parse path into *c (defaults first). Returns 0, or -EINVAL (bad content) /
 * -errno (cannot read) with a one-line message in err: "FILE:LINE: SETTING: ...".
 * Reads secret_file too, when set.
 */
int config_load(struct kvfs_config *c, const char *path, char *err, size_t errlen);

/* The path kvfs_open & the tools use: arg if non-NULL, else $KVFS_CONF, else default. */
const char *config_default_path(const char *arg);

/* Parse "64M", "4K", "1G", "123" into bytes. Returns 0 or -EINVAL. */
int config_parse_size(const char *s, uint64_t *out);

/* Split "host:port" / "[v6]:port" into entry fields. Returns 0 or -EINVAL. */
int config_parse_address(const char *addr, struct kvfs_server_entry *e);

/* Index of the server with that name, the only server when name is NULL, or -1. */
int config_find_server(const struct kvfs_config *c, const char *name);

/* Check cross-field rules (servers present, unique names, max_value <= memory...). */
int config_validate(const struct kvfs_config *c, char *err, size_t errlen);

#endif
