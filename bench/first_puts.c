/*
 * first_puts: what the first writes into a server cost against later ones.
 *
 *   first_puts -c FILE [--count N] [--size BYTES]
 *
 * PUTs N values of SIZE bytes (keys "fp/first/%d") into a server that should
 * be fresh, then enough more to cycle the whole pool (so every pool page has
 * been written once: the LRU reuses them), then N more (keys "fp/warm/%d"),
 * timing each PUT. Prints one JSON line: the first and the warm rounds'
 * throughput in MB/s (total bytes over total time) and their ratio.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kvfs/kvfs.h>

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Seconds to PUT n values named prefix/i, or -1 on failure (reported). */
static double put_round(kvfs_t *kv, const char *prefix, int n, const void *buf, size_t size)
{
	double t = 0;
	char key[64];

	for (int i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "fp/%s/%d", prefix, i);
		double t0 = now_s();
		int ret = kvfs_put(kv, key, buf, size, NULL);
		if (ret) {
			fprintf(stderr, "first_puts: put %s: %s\n", key, strerror(-ret));
			return -1;
		}
		t += now_s() - t0;
	}
	return t;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"count", required_argument, NULL, 'n'},
					     {"size", required_argument, NULL, 's'},
					     {NULL, 0, NULL, 0}};
	const char *config = NULL;
	int count = 20, c;
	uint64_t size = 64ull << 20;

	while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		if (c == 'c')
			config = optarg;
		else if (c == 'n')
			count = atoi(optarg);
		else if (c == 's' && kvfs_parse_size(optarg, &size) == 0)
			;
		else {
			fprintf(stderr, "usage: first_puts -c FILE [--count N] [--size BYTES]\n");
			return 2;
		}
	}
	if (count < 1 || count > 10000 || size == 0) {
		fprintf(stderr, "first_puts: --count 1..10000, --size > 0\n");
		return 2;
	}
	kvfs_t *kv;
	int ret = kvfs_open(config, &kv);
	if (ret) {
		fprintf(stderr, "first_puts: %s\n", strerror(-ret));
		return 1;
	}
	struct kvfs_stats st;
	ret = kvfs_server_stats(kv, 0, &st);
	unsigned char *buf = malloc(size);
	if (ret || !buf) {
		fprintf(stderr, "first_puts: stats: %s\n", ret ? strerror(-ret) : "no memory");
		return 1;
	}
	memset(buf, 0x5a, size);
	double first = put_round(kv, "first", count, buf, size);
	/* every pool page written once: cycle the pool (twice its size, evicting) */
	int cycle = (int)(2 * st.pool_size / size) + 1;
	double warm = first < 0 ? -1 : put_round(kv, "cycle", cycle, buf, size);
	if (warm >= 0)
		warm = put_round(kv, "warm", count, buf, size);
	if (first < 0 || warm < 0)
		return 1;
	double mb = (double)count * (double)size / 1e6;
	printf("{\"count\": %d, \"size\": %llu, \"first_mbps\": %.0f, \"warm_mbps\": %.0f, "
	       "\"first_vs_warm\": %.2f}\n",
	       count, (unsigned long long)size, mb / first, mb / warm, warm / first);
	free(buf);
	kvfs_close(kv);
	return 0;
}
