/*
 * kvfsctl list: ls, one line per key or folded common prefix, in byte
 * order, as kvfs_list delivers them (one pass over every server); -l adds
 * the attributes and the server of each key.
 */

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "kvfs/kvfs.h"
#include "tools/kvfsctl/kvfsctl.h"

struct ls_state {
	struct ctl *c;
	bool lng;
};

static int ls_cb(void *arg, const struct kvfs_entry *e)
{
	struct ls_state *s = arg;

	if (s->lng) {
		if (e->is_prefix) {
			printf("%-10s %5s %5s %12s %-16s %10s %-16s %-8s ", "d---------", "-", "-",
			       "-", "-", "-", "-", "-");
		} else {
			char mode[11], mt[64], ex[64], ub[12], gb[12];
			time_t sec;
			long ns;

			fmt_mode(e->attr.mode & ~KVFS_MODE_UNSET, mode);
			split_ns(e->attr.mtime_ns, &sec, &ns);
			fmt_minutes(sec, ' ', mt, sizeof(mt));
			if (e->attr.expiry)
				fmt_minutes((time_t)e->attr.expiry, 'T', ex, sizeof(ex));
			else
				snprintf(ex, sizeof(ex), "-");
			printf("%-10s %5s %5s %12" PRIu64 " %-16s %10" PRIu64 " %-16s %-8s ", mode,
			       fmt_id(e->attr.uid, ub), fmt_id(e->attr.gid, gb), e->attr.size, mt,
			       e->attr.version, ex, srv_name(s->c, e->server));
		}
	}
	fwrite(e->name, 1, e->name_len, stdout);
	putchar('\n');
	return ferror(stdout) ? 1 : 0; /* stop on a broken stdout */
}

int cmd_ls(struct ctl *c, int argc, char **argv)
{
	static const struct option lo[] = {{"long", no_argument, NULL, 'l'},
					   {"recursive", no_argument, NULL, 'r'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	struct ls_state s = {c, false};
	bool recursive = false;
	const char *prefix;
	ssize_t n;
	int rc;

	rc = parse_args(c, argc, argv, "lr", lo);
	if (rc != PARSE_OK)
		return rc;
	for (int i = 0; i < c->nopt; i++) {
		if (c->opt[i] == 'l')
			s.lng = true;
		else if (c->opt[i] == 'r')
			recursive = true;
	}
	if (c->npos > 1)
		return usage_error("ls: expected [PREFIX]");
	prefix = c->npos ? c->pos[0] : "";
	if (ctl_open(c) < 0)
		return EXIT_FAIL;
	n = kvfs_list(c->kv, prefix, recursive ? 0 : '/', ls_cb, &s);
	if (n < 0) {
		fflush(stdout);
		if (prefix[0])
			fail("ls %s: %s", prefix, kvfs_strerror((int)n));
		else
			fail("ls: %s", kvfs_strerror((int)n));
		return EXIT_FAIL;
	}
	return 0; /* stdout errors are caught in main */
}
