/*
 * fs_readers: concurrent readers of a file that a writer keeps replacing.
 *
 *   fs_readers [--versions N] [--seconds S] [--readers R] [--seed N]
 *              [--method both|trunc|rename] WRITE_PATH [READ_PATH...]
 *
 * The writer rewrites WRITE_PATH N times, each time with a new version whose
 * content identifies itself: every 8-byte word holds the version number and a
 * check value of (version, word index, size), and each version has its own
 * size (8 bytes to 3 MiB, so some reads take several FUSE requests). It
 * alternates between open(O_TRUNC) + writes in pieces + close, and write to a
 * temp file + rename over the path. R reader threads (spread over the
 * READ_PATHs, default WRITE_PATH) meanwhile open, read the whole file in
 * chunks, close and check that they got exactly one complete version: one
 * version number in every word, every check value right, the length of that
 * version. (On a plain local file system, O_TRUNC rewrites are not atomic,
 * so there only --method rename passes; --method trunc must find torn reads.)
 * A reader also must never see an older version than one it saw
 * before (close-to-open), and the file must never be missing or empty.
 *
 * Every loop is bounded by N and by S seconds. Exit 0: every read was one
 * whole version; 1: a mixed, torn, short, missing or stale read (the first
 * few are described); 2: usage or set-up error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZE    (3u << 20)
#define MAX_READERS 16
#define MAX_REPORTS 10

static const char *wpath;
static const char *rpaths[MAX_READERS];
static int nrpaths;
static unsigned long nversions = 200;
static double max_seconds = 30;
static int nreaders = 3;
static uint64_t seed = 1;
static int method; /* 0 both, 1 O_TRUNC rewrites only, 2 renames only */

static atomic_ulong committed; /* highest version whose commit (close/rename) returned */
static atomic_int writer_done;
static atomic_int failures;
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t mix(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Size of version v: a multiple of 8 in [8, MAX_SIZE], small, medium or large. */
static size_t vsize(uint64_t v)
{
	uint64_t h = mix(v ^ (seed << 32));
	unsigned kind = (unsigned)(h % 10);
	uint64_t words;
	if (kind < 3)
		words = 1 + (h >> 8) % 512; /* up to 4 KiB */
	else if (kind < 6)
		words = 1 + (h >> 8) % (32768); /* up to 256 KiB */
	else
		words = 32768 + (h >> 8) % (MAX_SIZE / 8 - 32768); /* 256 KiB .. 3 MiB */
	return (size_t)words * 8;
}

static uint32_t check_value(uint32_t v, uint64_t i, size_t size)
{
	return (uint32_t)(mix(((uint64_t)v << 32) ^ i ^ ((uint64_t)size << 40)) >> 17);
}

static void make_version(unsigned char *buf, uint32_t v, size_t size)
{
	for (uint64_t i = 0; i < size / 8; i++) {
		uint64_t w = (uint64_t)v | (uint64_t)check_value(v, i, size) << 32;
		memcpy(buf + i * 8, &w, 8);
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(int reader, const char *path, const char *fmt, const char *detail)
{
	int n = atomic_fetch_add(&failures, 1);
	if (n >= MAX_REPORTS)
		return;
	pthread_mutex_lock(&report_lock);
	fprintf(stderr, "fs_readers: reader %d, %s: %s%s%s\n", reader, path, fmt,
		detail ? ": " : "", detail ? detail : "");
	pthread_mutex_unlock(&report_lock);
}

static int write_all(int fd, const unsigned char *buf, size_t size, uint64_t *rs)
{
	size_t done = 0;
	while (done < size) {
		*rs = mix(*rs);
		size_t chunk = 4096u << (*rs % 9); /* 4 KiB .. 1 MiB pieces */
		if (chunk > size - done)
			chunk = size - done;
		ssize_t w = write(fd, buf + done, chunk);
		if (w <= 0)
			return -1;
		done += (size_t)w;
	}
	return 0;
}

/* Write version v by method (v % 2): O_TRUNC rewrite, or temp file + rename. */
static int write_version(unsigned char *buf, uint32_t v, uint64_t *rs)
{
	size_t size = vsize(v);
	char tmp[4200];
	const char *target = wpath;
	make_version(buf, v, size);
	if (method == 2 || (method == 0 && v % 2 == 0)) {
		snprintf(tmp, sizeof(tmp), "%s.tmp", wpath);
		target = tmp;
	}
	int fd = open(target, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		fprintf(stderr, "fs_readers: writer: open %s: %s\n", target, strerror(errno));
		return -1;
	}
	if (write_all(fd, buf, size, rs) < 0) {
		fprintf(stderr, "fs_readers: writer: write %s (version %u, %zu bytes): %s\n",
			target, v, size, strerror(errno));
		close(fd);
		return -1;
	}
	if (close(fd) < 0) {
		fprintf(stderr, "fs_readers: writer: close (commit) %s: %s\n", target,
			strerror(errno));
		return -1;
	}
	if (target != wpath && rename(target, wpath) < 0) {
		fprintf(stderr, "fs_readers: writer: rename %s over %s: %s\n", target, wpath,
			strerror(errno));
		return -1;
	}
	atomic_store(&committed, v);
	return 0;
}

struct reader {
	int id;
	const char *path;
	unsigned long reads, distinct, stale;
	uint32_t last;
	pthread_t th;
};

/* One whole-file read; checks it is exactly one version. */
static void read_once(struct reader *r, unsigned char *buf, uint64_t *rs)
{
	char d[512];
	unsigned long floor_v = atomic_load(&committed); /* committed before we open */
	int fd = open(r->path, O_RDONLY);
	size_t got = 0;
	if (fd < 0) {
		snprintf(d, sizeof(d),
			 "%s (the file must always exist once version 1 is committed)",
			 strerror(errno));
		report(r->id, r->path, "open failed", d);
		return;
	}
	for (;;) {
		*rs = mix(*rs);
		size_t chunk = 4096u << (*rs % 9);
		if (chunk > MAX_SIZE + 8 - got)
			chunk = MAX_SIZE + 8 - got;
		ssize_t n = read(fd, buf + got, chunk);
		if (n < 0) {
			snprintf(d, sizeof(d), "after %zu bytes: %s", got, strerror(errno));
			report(r->id, r->path, "read failed", d);
			close(fd);
			return;
		}
		if (n == 0 || chunk == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	r->reads++;
	if (got < 8) {
		snprintf(d, sizeof(d), "%zu bytes (no version is shorter than 8)", got);
		report(r->id, r->path, "empty or short file: a truncated state was visible", d);
		return;
	}
	uint64_t w0;
	memcpy(&w0, buf, 8);
	uint32_t v = (uint32_t)w0;
	unsigned long top =
	    atomic_load(&committed) + 1; /* the one being written may be committed already */
	if (v < 1 || v > top) {
		snprintf(d, sizeof(d), "first word says version %u; versions 1..%lu exist", v, top);
		report(r->id, r->path, "garbage", d);
		return;
	}
	size_t size = vsize(v);
	for (uint64_t i = 0; i < got / 8; i++) {
		uint64_t w;
		memcpy(&w, buf + i * 8, 8);
		uint32_t wv = (uint32_t)w;
		if (wv != v || (uint32_t)(w >> 32) != check_value(v, i, size)) {
			snprintf(d, sizeof(d),
				 "version %u (%zu bytes) but word %" PRIu64 " (byte %" PRIu64
				 ") is %s version %u; read %zu bytes in all",
				 v, size, i, i * 8,
				 wv >= 1 && wv <= top &&
					 (uint32_t)(w >> 32) == check_value(wv, i, vsize(wv))
				     ? "from"
				     : "not even",
				 wv, got);
			report(r->id, r->path, "MIXED versions in one read", d);
			return;
		}
	}
	if (got != size) {
		snprintf(d, sizeof(d), "version %u has %zu bytes, read %zu", v, size, got);
		report(r->id, r->path, "torn read (wrong length)", d);
		return;
	}
	if (v < r->last || v < floor_v) {
		snprintf(d, sizeof(d), "read version %u after %s %lu", v,
			 v < r->last ? "having read version" : "the commit of version",
			 v < r->last ? (unsigned long)r->last : floor_v);
		report(r->id, r->path, "stale read (went back in time)", d);
		r->stale++;
	}
	if (v != r->last)
		r->distinct++;
	if (v > r->last)
		r->last = v;
}

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	unsigned char *buf = malloc(MAX_SIZE + 8);
	uint64_t rs = seed * 1000 + (uint64_t)r->id;
	double t0 = now_s();
	if (!buf)
		abort();
	/* Until the writer is done, and one more read after it. */
	while (!atomic_load(&writer_done) && now_s() - t0 < max_seconds + 5)
		read_once(r, buf, &rs);
	read_once(r, buf, &rs);
	free(buf);
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: fs_readers [--versions N] [--seconds S] [--readers R] [--seed N] "
			"WRITE_PATH [READ_PATH...]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"versions", required_argument, NULL, 'n'},
					   {"seconds", required_argument, NULL, 't'},
					   {"readers", required_argument, NULL, 'r'},
					   {"seed", required_argument, NULL, 's'},
					   {"method", required_argument, NULL, 'm'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	struct reader rd[MAX_READERS];
	int c;
	while ((c = getopt_long(argc, argv, "n:t:r:s:m:h", lo, NULL)) != -1) {
		switch (c) {
		case 'n':
			nversions = strtoul(optarg, NULL, 0);
			break;
		case 't':
			max_seconds = strtod(optarg, NULL);
			break;
		case 'r':
			nreaders = atoi(optarg);
			break;
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'm':
			if (!strcmp(optarg, "both"))
				method = 0;
			else if (!strcmp(optarg, "trunc"))
				method = 1;
			else if (!strcmp(optarg, "rename"))
				method = 2;
			else
				usage();
			break;
		default:
			usage();
		}
	}
	if (optind >= argc || nreaders < 1 || nreaders > MAX_READERS || nversions < 1 ||
	    nversions > 0xfffffff0ul)
		usage();
	wpath = argv[optind++];
	while (optind < argc && nrpaths < MAX_READERS)
		rpaths[nrpaths++] = argv[optind++];
	if (!nrpaths)
		rpaths[nrpaths++] = wpath;

	unsigned char *buf = malloc(MAX_SIZE);
	uint64_t rs = seed;
	if (!buf)
		return 2;
	if (write_version(buf, 1, &rs) < 0)
		return 2;
	for (int i = 0; i < nreaders; i++) {
		rd[i] = (struct reader){.id = i, .path = rpaths[i % nrpaths]};
		if (pthread_create(&rd[i].th, NULL, reader_main, &rd[i])) {
			fprintf(stderr, "fs_readers: pthread_create failed\n");
			return 2;
		}
	}
	double t0 = now_s();
	unsigned long v;
	int werr = 0;
	for (v = 2;
	     v <= nversions && now_s() - t0 < max_seconds && atomic_load(&failures) < MAX_REPORTS;
	     v++)
		if (write_version(buf, (uint32_t)v, &rs) < 0) {
			werr = 1;
			break;
		}
	atomic_store(&writer_done, 1);
	unsigned long reads = 0, stale = 0;
	for (int i = 0; i < nreaders; i++) {
		pthread_join(rd[i].th, NULL);
		reads += rd[i].reads;
		stale += rd[i].stale;
		printf("fs_readers: reader %d (%s): %lu whole-file reads, %lu version changes "
		       "seen, last version %u\n",
		       i, rd[i].path, rd[i].reads, rd[i].distinct, rd[i].last);
	}
	free(buf);
	int f = atomic_load(&failures);
	printf(
	    "fs_readers: %lu versions written in %.1f s, %lu reads, %d bad reads (%lu stale)%s\n",
	    atomic_load(&committed), now_s() - t0, reads, f, stale,
	    werr ? ", the writer failed" : "");
	return f || werr ? 1 : 0;
}
