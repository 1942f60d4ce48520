/*
 * kvfsctl admin: ping and stats, the commands on servers rather than keys.
 * Both visit every server (ping: or the one named) and report each one's
 * result on its own line or JSON object; one failed server fails the
 * command, after the others were reported.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvfs/kvfs.h"
#include "tools/kvfsctl/kvfsctl.h"

/* "host:port" of server idx as configured ("[v6]:port" for IPv6). */
static const char *srv_addr(struct ctl *c, int idx, char *buf, size_t len)
{
	const char *name = kvfs_server_name(c->kv, idx);
	int n = kvfs_config_server_count(c->cfg);

	for (int i = 0; name && i < n; i++) {
		if (strcmp(kvfs_config_server_name(c->cfg, i), name) != 0)
			continue;
		if (kvfs_config_server_address(c->cfg, i, buf, len) < 0)
			break;
		return buf;
	}
	snprintf(buf, len, "?");
	return buf;
}

/* Servers to visit: all, or the one named. Returns count or -1 (reported). */
static int pick_servers(struct ctl *c, const char *cmd, const char *name, int *first)
{
	int n = kvfs_server_count(c->kv);

	if (n < 0) {
		fail("%s: %s", cmd, kvfs_strerror(n));
		return -1;
	}
	*first = 0;
	if (!name)
		return n;
	for (int i = 0; i < n; i++) {
		const char *s = kvfs_server_name(c->kv, i);

		if (s && strcmp(s, name) == 0) {
			*first = i;
			return 1;
		}
	}
	fail("%s %s: no such server in %s", cmd, name, kvfs_config_path(c->conf_arg));
	return -1;
}

int cmd_ping(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {{"fabric", no_argument, NULL, 'f'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	int rc, first, n, failed = 0, last_err = 0, last_idx = 0;
	bool fabric = false;

	rc = parse_args(c, argc, argv, "", lo);
	if (rc != PARSE_OK)
		return rc;
	for (int i = 0; i < c->nopt; i++)
		if (c->opt[i] == 'f')
			fabric = true;
	if (c->npos > 1)
		return usage_error("ping: expected [SERVER] [--fabric]");
	/* Without --fabric: the round trip of the TCP bootstrap channel, no fabric set-up. */
	if (ctl_open_flags(c, fabric ? 0 : KVFS_OPEN_LAZY_FABRIC) < 0)
		return EXIT_FAIL;
	n = pick_servers(c, "ping", c->npos ? c->pos[0] : NULL, &first);
	if (n < 0)
		return EXIT_FAIL;
	for (int i = first; i < first + n; i++) {
		char addr[KVFS_ADDRESS_MAX];
		uint64_t rtt = 0;

		srv_addr(c, i, addr, sizeof(addr));
		rc = kvfs_ping(c->kv, i, &rtt);
		if (rc < 0) {
			printf("%s %s failed: %s\n", srv_name(c, i), addr, kvfs_strerror(rc));
			failed++;
			last_err = rc;
			last_idx = i;
		} else {
			printf("%s %s ok %.1f us%s\n", srv_name(c, i), addr, (double)rtt / 1e3,
			       fabric ? "" : " (tcp)");
		}
		fflush(stdout);
	}
	if (failed == 1)
		fail("ping %s: %s", srv_name(c, last_idx), kvfs_strerror(last_err));
	else if (failed > 1)
		fail("ping: %d of %d servers failed", failed, n);
	return failed ? EXIT_FAIL : 0;
}

#define N_STAT_COLS 18

static const char *const stat_cols[N_STAT_COLS] = {
    "name",	 "provider",  "gets",	     "hits",	 "misses",    "puts",
    "deletes",	 "evictions", "expirations", "bytes_in", "bytes_out", "keys",
    "pool_size", "pool_used", "sessions",    "uptime_s", "dropped",   "stalled"};

static void stat_values(const struct kvfs_stats *s, uint64_t v[N_STAT_COLS - 2])
{
	v[0] = s->gets;
	v[1] = s->hits;
	v[2] = s->misses;
	v[3] = s->puts;
	v[4] = s->deletes;
	v[5] = s->evictions;
	v[6] = s->expirations;
	v[7] = s->bytes_in;
	v[8] = s->bytes_out;
	v[9] = s->keys;
	v[10] = s->pool_size;
	v[11] = s->pool_used;
	v[12] = s->sessions;
	v[13] = s->uptime_s;
	v[14] = s->dropped_requests;
	v[15] = s->stalled_sessions;
}

int cmd_stats(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {
	    {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct kvfs_stats *st = NULL;
	int *err = NULL;
	bool json = false;
	int rc, n, first, failed = 0, last_idx = 0, last_err = 0;
	int width[N_STAT_COLS];

	rc = parse_args(c, argc, argv, "", lo);
	if (rc != PARSE_OK)
		return rc;
	for (int i = 0; i < c->nopt; i++)
		if (c->opt[i] == 'j')
			json = true;
	if (c->npos > 0)
		return usage_error("stats: unexpected argument: %s", c->pos[0]);
	if (ctl_open(c) < 0)
		return EXIT_FAIL;
	n = pick_servers(c, "stats", NULL, &first);
	if (n < 0)
		return EXIT_FAIL;
	st = calloc((size_t)n + 1, sizeof(*st));
	err = calloc((size_t)n + 1, sizeof(*err));
	if (!st || !err) {
		free(st);
		free(err);
		fail("stats: %s", strerror(ENOMEM));
		return EXIT_FAIL;
	}
	for (int i = 0; i < n; i++) {
		err[i] = kvfs_server_stats(c->kv, i, &st[i]);
		st[i].provider[sizeof(st[i].provider) - 1] = '\0';
		if (err[i] < 0) {
			failed++;
			last_idx = i;
			last_err = err[i];
		}
	}

	if (json) {
		printf("[");
		for (int i = 0; i < n; i++) {
			printf("%s\n  {\"name\": ", i ? "," : "");
			json_str(stdout, srv_name(c, i));
			if (err[i] < 0) {
				printf(", \"error\": ");
				json_str(stdout, kvfs_strerror(err[i]));
			} else {
				uint64_t v[N_STAT_COLS - 2];

				printf(", \"provider\": ");
				json_str(stdout, st[i].provider);
				stat_values(&st[i], v);
				for (int k = 0; k < N_STAT_COLS - 2; k++)
					printf(", \"%s\": %" PRIu64, stat_cols[k + 2], v[k]);
			}
			printf("}");
		}
		printf("%s]\n", n ? "\n" : "");
	} else {
		char num[32];

		for (int k = 0; k < N_STAT_COLS; k++)
			width[k] = (int)strlen(stat_cols[k]);
		for (int i = 0; i < n; i++) {
			uint64_t v[N_STAT_COLS - 2];
			int w = (int)strlen(srv_name(c, i));

			if (w > width[0])
				width[0] = w;
			if (err[i] < 0)
				continue;
			w = (int)strlen(st[i].provider);
			if (w > width[1])
				width[1] = w;
			stat_values(&st[i], v);
			for (int k = 0; k < N_STAT_COLS - 2; k++) {
				w = snprintf(num, sizeof(num), "%" PRIu64, v[k]);
				if (w > width[k + 2])
					width[k + 2] = w;
			}
		}
		for (int k = 0; k < N_STAT_COLS; k++)
			printf(k < 2 ? "%-*s%s" : "%*s%s", width[k], stat_cols[k],
			       k + 1 < N_STAT_COLS ? "  " : "\n");
		for (int i = 0; i < n; i++) {
			uint64_t v[N_STAT_COLS - 2];

			printf("%-*s  ", width[0], srv_name(c, i));
			if (err[i] < 0) {
				printf("error: %s\n", kvfs_strerror(err[i]));
				continue;
			}
			printf("%-*s  ", width[1], st[i].provider);
			stat_values(&st[i], v);
			for (int k = 0; k < N_STAT_COLS - 2; k++)
				printf("%*" PRIu64 "%s", width[k + 2], v[k],
				       k + 3 < N_STAT_COLS ? "  " : "\n");
		}
	}
	fflush(stdout);
	free(st);
	free(err);
	if (failed == 1)
		fail("stats %s: %s", srv_name(c, last_idx), kvfs_strerror(last_err));
	else if (failed > 1)
		fail("stats: %d of %d servers failed", failed, n);
	return failed ? EXIT_FAIL : 0;
}
