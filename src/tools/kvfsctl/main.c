/*
 * kvfsctl: the command-line tool of a kvfs cluster (see kvfsctl(1)).
 *
 * A thin user of libkvfs. This file holds the global options, the
 * dispatch to the commands, their usage text and the helpers every command
 * uses (messages, argument parsing, opening the cluster); the commands live
 * in kv.c, list.c, admin.c, bench.c, batch.c and top.c, the interactive mode (no
 * command on a terminal) in interactive.c (see kvfsctl.h).
 */

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvfs/kvfs.h"
#include "common/log.h" /* our own copy (log_lib); libkvfs keeps its own */
#include "tools/kvfsctl/kvfsctl.h"

/* ------------------------------------------------------------------ */
/* Messages                                                           */
/* ------------------------------------------------------------------ */

/* One line "kvfsctl: MESSAGE" on stderr; line breaks in it become spaces. */
static void vfail(const char *fmt, va_list ap)
{
	char line[16384];

	vsnprintf(line, sizeof(line), fmt, ap);
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "kvfsctl: %s\n", line);
}

void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(fmt, ap);
	va_end(ap);
}

static void usage(FILE *f)
{
	fputs("usage: kvfsctl [-c FILE] [-v] COMMAND [ARGS...]\n"
	      "       kvfsctl [-c FILE] [-v]   (no command: interactive on a terminal,\n"
	      "                                else batch commands from stdin)\n"
	      "\n"
	      "commands:\n"
	      "  put KEY [FILE|-] [--ttl SECONDS] [--mode OCTAL]\n"
	      "                         store FILE (default: stdin) as the value of KEY\n"
	      "  get KEY [FILE|-]       write the value of KEY to FILE (default: stdout)\n"
	      "  rm KEY...              delete keys\n"
	      "  ls [PREFIX] [-l] [-r]  list keys (-l: long format, -r: recursive)\n"
	      "  stat KEY               show the attributes of KEY\n"
	      "  mv SRC DST [--no-replace]\n"
	      "                         rename SRC to DST (same server only)\n"
	      "  ping [SERVER] [--fabric]\n"
	      "                         round trip to every server (or SERVER): over TCP,\n"
	      "                         or over the fabric\n"
	      "  stats [--json]         server statistics\n"
	      "  top [--interval SECONDS] [--count N]\n"
	      "                         per-server rates, refreshed (default every 1 s)\n"
	      "  bench --op get|put --size BYTES --count N [--threads T] [--keys K]\n"
	      "        [--prefix P] [--copy] [--json]\n"
	      "                         measure latency and throughput\n"
	      "  batch [FILE|-]         run commands from FILE (default: stdin) in one session,\n"
	      "                         one result line each (see kvfsctl(1), BATCH)\n"
	      "\n"
	      "options:\n"
	      "  -c FILE  configuration (default: $KVFS_CONF, else " KVFS_CONFIG_DEFAULT ")\n"
	      "  -v       more log output (repeat for debug)\n"
	      "  -h       this help\n",
	      f);
}

int usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(fmt, ap);
	va_end(ap);
	usage(stderr);
	return EXIT_USAGE;
}

int parse_args(struct ctl *c, int argc, char **argv, const char *shortopts,
	       const struct option *longopts)
{
	char optstring[64];
	int o;

	snprintf(optstring, sizeof(optstring), "-:h%s", shortopts);
	c->npos = 0;
	c->nopt = 0;
	optind = 0; /* glibc: full re-initialisation */
	opterr = 0;
	while ((o = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
		switch (o) {
		case 1:
			c->pos[c->npos++] = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			return usage_error("%s: option requires an argument: %s", argv[0],
					   argv[optind - 1]);
		case '?':
			if (optopt > 0 && optopt < 128 && optopt != '?')
				return usage_error("%s: unknown option: -%c", argv[0], optopt);
			return usage_error("%s: unknown option: %s", argv[0], argv[optind - 1]);
		default:
			c->opt[c->nopt] = o;
			c->optval[c->nopt++] = optarg;
			break;
		}
	}
	while (optind < argc)
		c->pos[c->npos++] = argv[optind++];
	return PARSE_OK;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                            */
/* ------------------------------------------------------------------ */

int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

int ctl_open(struct ctl *c)
{
	return ctl_open_flags(c, 0);
}

int ctl_open_flags(struct ctl *c, unsigned flags)
{
	char err[1024] = "";
	const char *path = kvfs_config_path(c->conf_arg);
	int rc;

	rc = kvfs_config_load(path, &c->cfg, err, sizeof(err));
	if (rc < 0) {
		c->cfg = NULL;
		if (err[0])
			fail("%s", err);
		else
			fail("%s: %s", path, kvfs_strerror(rc));
		return -1;
	}
	rc = kvfs_open_config_flags(c->cfg, flags, &c->kv);
	if (rc < 0) {
		c->kv = NULL;
		fail("%s: %s", path, kvfs_strerror(rc));
		return -1;
	}
	return 0;
}

const char *srv_name(struct ctl *c, int idx)
{
	const char *n = kvfs_server_name(c->kv, idx);

	return n ? n : "?";
}

/* ------------------------------------------------------------------ */
/* main                                                               */
/* ------------------------------------------------------------------ */

static int cmd_help(struct ctl *c, int argc, char **argv)
{
	(void)c;
	(void)argc;
	(void)argv;
	usage(stdout);
	return 0;
}

static const struct command {
	const char *name;
	int (*fn)(struct ctl *c, int argc, char **argv);
} commands[] = {
    {"put", cmd_put},	  {"get", cmd_get},	{"rm", cmd_rm},	    {"ls", cmd_ls},
    {"stat", cmd_stat},	  {"mv", cmd_mv},	{"ping", cmd_ping}, {"stats", cmd_stats},
    {"bench", cmd_bench}, {"batch", cmd_batch}, {"top", cmd_top},   {"help", cmd_help},
};

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"config", required_argument, NULL, 'c'},
					   {"verbose", no_argument, NULL, 'v'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	struct ctl c;
	const struct command *cmd = NULL;
	char batch_name[] = "batch", *batch_argv[] = {batch_name, NULL};
	bool interactive;
	int o, verbose = 0, ret;

	memset(&c, 0, sizeof(c));
	/* libkvfs's lines as ours: "kvfsctl: warning: ..." */
	log_set_ident("kvfsctl");
	kvfs_set_log(log_forward, NULL);
	install_signals();

	opterr = 0;
	while ((o = getopt_long(argc, argv, "+:c:vh", lo, NULL)) != -1) {
		switch (o) {
		case 'c':
			c.conf_arg = optarg;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			return usage_error("option requires an argument: %s", argv[optind - 1]);
		default:
			if (optopt > 0 && optopt < 128 && optopt != '?')
				return usage_error("unknown option: -%c", optopt);
			return usage_error("unknown option: %s", argv[optind - 1]);
		}
	}
	/* No command: a prompt on a terminal, else the lines of stdin as batch does. */
	interactive = optind >= argc && isatty(STDIN_FILENO);
	for (size_t i = 0; optind < argc && i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[optind], commands[i].name) == 0)
			cmd = &commands[i];
	if (optind < argc && !cmd)
		return usage_error("unknown command: %s", argv[optind]);
	if (verbose) {
		int lvl = verbose == 1 ? KVFS_LOG_INFO : KVFS_LOG_DEBUG;

		log_set_level((enum log_level)lvl);
		kvfs_set_log_level(lvl);
	}

	c.pos = calloc((size_t)argc + 1, sizeof(*c.pos));
	c.opt = calloc((size_t)argc + 1, sizeof(*c.opt));
	c.optval = calloc((size_t)argc + 1, sizeof(*c.optval));
	if (!c.pos || !c.opt || !c.optval) {
		fail("%s", strerror(ENOMEM));
		ret = EXIT_FAIL;
	} else if (interactive) {
		ret = cmd_interactive(&c);
	} else if (!cmd) {
		ret = cmd_batch(&c, 1, batch_argv);
	} else {
		ret = cmd->fn(&c, argc - optind, argv + optind);
	}
	if (c.kv)
		kvfs_close(c.kv);
	if (c.cfg)
		kvfs_config_free(c.cfg);
	free(c.pos);
	free(c.opt);
	free(c.optval);

	/* Output that never reached stdout is a failure. */
	errno = 0;
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (ret == 0)
			fail("stdout: %s", errno ? strerror(errno) : "write error");
		ret = ret ? ret : EXIT_FAIL;
	}
	return ret;
}
