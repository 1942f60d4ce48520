/*
 * load_keys: fill a kvfs cluster with many small keys through libkvfs, and
 * measure GET latency over random keys among them.
 *
 *   load_keys -c FILE [--keys N] [--size BYTES] [--threads T] [--no-load]
 *             [--get-bench C] [--deadline S]
 *
 * Keys are "m/%014ld" (exactly 16 bytes); each value is --size bytes with the
 * key number in its first 8 bytes. With --get-bench C, one thread GETs C keys
 * chosen at random among the N and checks every value (outside the timing).
 * Prints one JSON line: load seconds, and get_p50_us/get_p99_us when asked.
 * The run is bounded by --deadline seconds (SIGALRM); libkvfs bounds every
 * call by client.timeout_ms.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kvfs/kvfs.h>

#include "tools/latency.h"

#define MAX_THR 64

static const char *config;
static long nkeys = 1000000;
static size_t vsize = 32;
static int nthreads = 2;
static int no_load;
static long get_count;
static int deadline_s = 600;
static kvfs_t *kv;

static void make_value(unsigned char *v, size_t n, uint64_t key)
{
	for (size_t i = 0; i < n; i++)
		v[i] = (unsigned char)(i * 7u + 3u);
	memcpy(v, &key, n < 8 ? n : 8);
}

struct loader {
	pthread_t th;
	int tid;
	int err;
	long failed_key;
};

static void *load_thread(void *arg)
{
	struct loader *l = arg;
	unsigned char *v = malloc(vsize ? vsize : 1);
	char key[32];
	if (!v) {
		l->err = -ENOMEM;
		return NULL;
	}
	for (long i = l->tid; i < nkeys; i += nthreads) {
		snprintf(key, sizeof(key), "m/%014ld", i);
		make_value(v, vsize, (uint64_t)i);
		int r = kvfs_put(kv, key, v, vsize, NULL);
		if (r) {
			l->err = r;
			l->failed_key = i;
			break;
		}
	}
	free(v);
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: load_keys -c FILE [--keys N] [--size BYTES] [--threads T] "
			"[--no-load] [--get-bench C] [--deadline S]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"config", 1, 0, 'c'},   {"keys", 1, 0, 'k'},    {"size", 1, 0, 's'},
	    {"threads", 1, 0, 't'},  {"no-load", 0, 0, 'N'}, {"get-bench", 1, 0, 'g'},
	    {"deadline", 1, 0, 'D'}, {"help", 0, 0, 'h'},    {0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "c:", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'k':
			nkeys = atol(optarg);
			break;
		case 's':
			vsize = (size_t)atol(optarg);
			break;
		case 't':
			nthreads = atoi(optarg);
			break;
		case 'N':
			no_load = 1;
			break;
		case 'g':
			get_count = atol(optarg);
			break;
		case 'D':
			deadline_s = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || !config || nkeys <= 0 || nkeys > 99999999999999L || nthreads < 1 ||
	    nthreads > MAX_THR || get_count < 0 || vsize > (64u << 20))
		usage();
	if (deadline_s > 0)
		alarm((unsigned)deadline_s);

	int r = kvfs_open(config, &kv);
	if (r) {
		fprintf(stderr, "load_keys: kvfs_open(%s): %s\n", config, kvfs_strerror(r));
		return 1;
	}
	double load_s = 0;
	if (!no_load) {
		struct loader l[MAX_THR];
		uint64_t t0 = lat_now_ns();
		for (int i = 0; i < nthreads; i++) {
			l[i] = (struct loader){.tid = i};
			if (pthread_create(&l[i].th, NULL, load_thread, &l[i])) {
				fprintf(stderr, "load_keys: pthread_create failed\n");
				return 1;
			}
		}
		int fail = 0;
		for (int i = 0; i < nthreads; i++) {
			pthread_join(l[i].th, NULL);
			if (l[i].err) {
				fprintf(stderr, "load_keys: put m/%014ld: %s\n", l[i].failed_key,
					kvfs_strerror(l[i].err));
				fail = 1;
			}
		}
		if (fail) {
			kvfs_close(kv);
			return 1;
		}
		load_s = (double)(lat_now_ns() - t0) / 1e9;
	}
	printf("{\"system\":\"kvfs\",\"load\":%ld,\"key_bytes\":16,\"size\":%zu,\"threads\":%d,"
	       "\"seconds\":%.2f",
	       no_load ? 0 : nkeys, vsize, nthreads, load_s);

	if (get_count > 0) {
		uint64_t *lat = calloc((size_t)get_count, sizeof(*lat));
		unsigned char *buf = malloc(vsize + 1), *want = malloc(vsize + 1);
		uint64_t rnd = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
		if (!lat || !buf || !want) {
			fprintf(stderr, "load_keys: out of memory\n");
			return 1;
		}
		for (long i = 0; i < get_count; i++) {
			char key[32];
			rnd ^= rnd << 13;
			rnd ^= rnd >> 7;
			rnd ^= rnd << 17;
			long k = (long)(rnd % (uint64_t)nkeys);
			snprintf(key, sizeof(key), "m/%014ld", k);
			uint64_t t0 = lat_now_ns();
			ssize_t got = kvfs_get(kv, key, buf, vsize, 0, NULL);
			lat[i] = lat_now_ns() - t0;
			make_value(want, vsize, (uint64_t)k);
			if (got != (ssize_t)vsize || memcmp(buf, want, vsize)) {
				fprintf(stderr, "\nload_keys: get %s: %s\n", key,
					got < 0 ? kvfs_strerror((int)got) : "wrong value");
				return 1;
			}
		}
		struct lat_summary ls;
		lat_summarize(lat, (size_t)get_count, &ls);
		printf(",\"keys\":%ld,\"get_count\":%ld,\"get_p50_us\":%.2f,\"get_p99_us\":%.2f",
		       nkeys, get_count, ls.p50_us, ls.p99_us);
		free(lat);
		free(buf);
		free(want);
	}
	printf("}\n");
	kvfs_close(kv);
	return 0;
}
