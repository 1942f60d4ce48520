/*
 * fs_check: a randomized file system checker. It applies the same random
 * sequence of operations to two directory trees, the one under test (a kvfs
 * mount) and a reference (a plain tmp dir), and compares what each operation
 * returns (value, or errno), and then the state it touched (type, size, mode,
 * owner, contents, listings), after every step; the whole trees every
 * --full-every steps and at the end. The first divergence ends the run with the
 * seed, the step and the tail of the operation history.
 *
 *   fs_check [--seed N] [--ops N] [--seconds S] [--skip OP,...] [--inject STEP]
 *            [--trace FILE] [-v] DIR_UNDER_TEST DIR_REFERENCE
 *
 * --inject STEP is the checker's own test: at STEP it creates a file in the
 * tree under test only, which the next full comparison must report.
 * --trace FILE logs each operation before it runs: if one hangs, the file
 * ends with it.
 *
 * This file: the options, the seeded random numbers, the operation history and
 * the divergence report, and the driver loop. The operations (listed there) are
 * in fs_check_ops.c, the comparisons in fs_check_cmp.c, what they share in
 * fs_check.h.
 *
 * Semantics deliberately not compared, because kvfs (any object store behind
 * a file system) differs from POSIX there by design: a path is never touched
 * by anything but its handle while a handle on it is open (kvfs commits the
 * upload at close: last commit wins); directories are never renamed; hard
 * links are not made; atime/ctime/nlink/st_size of directories are ignored;
 * mtime is compared only right after utimens.
 *
 * Exit status: 0 no divergence, 1 divergence, 2 usage or set-up error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs_check.h"

const char *root[2];
int rootfd[2];
static uint64_t seed, rng;
static unsigned long step, max_ops = 3000;
static double max_seconds = 120;
static unsigned full_every = 64;
static long inject_at = -1; /* self-test: make the trees differ at this step */
static bool verbose;
static FILE *trace; /* --trace FILE: each operation, written before it runs (for hangs) */
static char history[HISTORY][320];
static unsigned long nhist;
unsigned char *wbuf, *rbuf[2];
static char skip_list[512];
static unsigned long op_count[64];
static double op_time[64];

/* --- random numbers ---------------------------------------------------- */

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}
bool chance(unsigned pct)
{
	return below(100) < pct;
}

void fill(unsigned char *p, size_t n)
{
	uint64_t x = rnd() | 1;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
	for (; i < n; i++)
		p[i] = (unsigned char)rnd();
}

/* --- reporting ----------------------------------------------------------- */

void hist(const char *fmt, ...)
{
	va_list ap;
	char *h = history[nhist % HISTORY];
	int n = snprintf(h, sizeof(history[0]), "#%lu ", step);
	va_start(ap, fmt);
	vsnprintf(h + n, sizeof(history[0]) - (size_t)n, fmt, ap);
	va_end(ap);
	nhist++;
	if (verbose)
		fprintf(stderr, "%s\n", h);
	if (trace) {
		fprintf(trace, "%s\n", h);
		fflush(trace);
	}
}

void note_result(const char *what, const struct result r[2])
{
	char *h = history[(nhist ? nhist - 1 : 0) % HISTORY];
	size_t l = strlen(h);
	if (!strstr(h, " => "))
		snprintf(h + l, sizeof(history[0]) - l, " => %s%ld%s%s", what, r[SUT].v,
			 r[SUT].v < 0 ? " " : "", r[SUT].v < 0 ? strerror(r[SUT].e) : "");
}

void diverge(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fprintf(stderr, "fs_check: DIVERGENCE at step %lu (seed %" PRIu64 "): ", step, seed);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n  under test: %s\n  reference:  %s\n  last operations (newest last):\n",
		root[SUT], root[REF]);
	unsigned long first = nhist > HISTORY ? nhist - HISTORY : 0;
	for (unsigned long i = first; i < nhist; i++)
		fprintf(stderr, "    %s\n", history[i % HISTORY]);
	fprintf(stderr,
		"  reproduce: fs_check --seed %" PRIu64
		" --ops %lu%s%s DIR_UNDER_TEST DIR_REFERENCE\n",
		seed, step + 1, skip_list[0] ? " --skip " : "", skip_list);
	exit(1);
}

/* --- options and the driver loop -------------------------------------------- */

static bool skipped(const char *name)
{
	char b[sizeof(skip_list) + 2], n[64];
	snprintf(b, sizeof(b), ",%s,", skip_list);
	snprintf(n, sizeof(n), ",%s,", name);
	return strstr(b, n) != NULL;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: fs_check [--seed N] [--ops N] [--seconds S] [--full-every N] [--skip OP,...]\n"
	    "                [--inject STEP] [--trace FILE] [-v]\n"
	    "                DIR_UNDER_TEST DIR_REFERENCE\n"
	    "  Applies the same random operations to both trees and compares every result.\n"
	    "  Both directories must be empty. Exit 0: no divergence, 1: divergence, 2: usage.\n"
	    "  operations:");
	for (size_t i = 0; i < nops; i++)
		fprintf(stderr, " %s", ops[i].name);
	fprintf(stderr, "\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"seed", required_argument, NULL, 's'},    {"ops", required_argument, NULL, 'n'},
	    {"seconds", required_argument, NULL, 't'}, {"full-every", required_argument, NULL, 'f'},
	    {"skip", required_argument, NULL, 'k'},    {"inject", required_argument, NULL, 'i'},
	    {"trace", required_argument, NULL, 'T'},   {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},	       {NULL, 0, NULL, 0}};
	int c;
	seed = (uint64_t)time(NULL);
	while ((c = getopt_long(argc, argv, "s:n:t:f:k:i:T:vh", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			max_ops = strtoul(optarg, NULL, 0);
			break;
		case 't':
			max_seconds = strtod(optarg, NULL);
			break;
		case 'f':
			full_every = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'k':
			snprintf(skip_list, sizeof(skip_list), "%s", optarg);
			break;
		case 'i':
			inject_at = strtol(optarg, NULL, 0);
			break;
		case 'T':
			trace = fopen(optarg, "w");
			if (!trace) {
				fprintf(stderr, "fs_check: %s: %s\n", optarg, strerror(errno));
				return 2;
			}
			break;
		case 'v':
			verbose = true;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2)
		usage();
	root[SUT] = argv[optind];
	root[REF] = argv[optind + 1];
	umask(022);
	for (int s = 0; s < 2; s++) {
		char **v;
		int n;
		rootfd[s] = open(root[s], O_RDONLY | O_DIRECTORY);
		if (rootfd[s] < 0) {
			fprintf(stderr, "fs_check: %s: %s\n", root[s], strerror(errno));
			return 2;
		}
		n = list(s, "", &v);
		if (n != 0) {
			fprintf(stderr, "fs_check: %s: %s\n", root[s],
				n < 0 ? strerror(errno) : "not empty");
			return 2;
		}
		free(v);
	}
	wbuf = malloc(MAX_WRITE);
	rbuf[0] = malloc(BUF_SIZE + 1);
	rbuf[1] = malloc(BUF_SIZE + 1);
	if (!wbuf || !rbuf[0] || !rbuf[1]) {
		fprintf(stderr, "fs_check: out of memory\n");
		return 2;
	}
	unsigned total = 0;
	for (size_t i = 0; i < nops; i++)
		if (!skipped(ops[i].name))
			total += ops[i].weight;
	if (!total)
		usage();
	printf("fs_check: seed %" PRIu64 ", up to %lu operations or %.0f s\n", seed, max_ops,
	       max_seconds);
	fflush(stdout);
	rng = seed;
	double t0 = now_s();
	for (step = 0; step < max_ops; step++) {
		if (now_s() - t0 > max_seconds) {
			printf("fs_check: time bound reached after %lu operations\n", step);
			break;
		}
		scan();
		unsigned pick = (unsigned)below(total);
		size_t i = 0;
		for (;; i++) {
			if (skipped(ops[i].name))
				continue;
			if (pick < ops[i].weight)
				break;
			pick -= ops[i].weight;
		}
		op_count[i]++;
		double t1 = now_s();
		ops[i].fn();
		if ((long)step == inject_at) {
			/* The checker's own test: a file only the tree under test has. */
			int fd =
			    openat(rootfd[SUT], "injected-difference", O_WRONLY | O_CREAT, 0644);
			hist("(self-test: created injected-difference under test only: fd %d)", fd);
			if (fd >= 0)
				close(fd);
		}
		if (full_every && step % full_every == full_every - 1) {
			hist("(full compare)");
			full_compare();
		}
		op_time[i] += now_s() - t1;
	}
	unsigned long done = step;
	while (pick_handle(true))
		op_hclose();
	hist("(final full compare)");
	full_compare();
	printf("fs_check: seed %" PRIu64
	       ": %lu operations in %.1f s, %lu expected errors matched, 0 divergences\n",
	       seed, done, now_s() - t0, nerr_matched);
	printf("fs_check: operations/time (with the comparisons after them):");
	for (size_t i = 0; i < nops; i++)
		printf(" %s=%lu/%.1fs", ops[i].name, op_count[i], op_time[i]);
	printf("\n");
	return 0;
}
