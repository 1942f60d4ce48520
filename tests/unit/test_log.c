/*
 * Unit tests of the log module (src/common/log.c): the journald priority
 * prefix and when it is chosen (JOURNAL_STREAM naming stderr's device and
 * inode), and the rate limiter for lines a peer can cause. Each test runs in
 * its own process (Criterion), so redirecting stderr stays local to it.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

/* Point stderr at a fresh temp file; returns its stream for reading back. */
static FILE *capture_stderr(void)
{
	FILE *f = tmpfile();
	cr_assert_not_null(f);
	cr_assert_eq(dup2(fileno(f), STDERR_FILENO), STDERR_FILENO);
	return f;
}

static char *captured(FILE *f)
{
	static char buf[8192];
	size_t n;
	rewind(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	return buf;
}

static void set_journal_stream_of(int fd)
{
	struct stat st;
	char v[64];
	cr_assert_eq(fstat(fd, &st), 0);
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	cr_assert_eq(setenv("JOURNAL_STREAM", v, 1), 0);
}

Test(log, journal_stream_parse)
{
	FILE *f = tmpfile(), *g = tmpfile();
	struct stat st;
	char v[64];
	cr_assert(f && g);
	cr_assert_eq(fstat(fileno(f), &st), 0);
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	cr_assert_eq(log_is_journal_stream(v, fileno(f)), 1);
	cr_assert_eq(log_is_journal_stream(v, fileno(g)), 0, "another file: another inode");
	cr_assert_eq(log_is_journal_stream(NULL, fileno(f)), 0);
	cr_assert_eq(log_is_journal_stream("", fileno(f)), 0);
	snprintf(v, sizeof(v), "%llu", (unsigned long long)st.st_dev);
	cr_assert_eq(log_is_journal_stream(v, fileno(f)), 0, "no inode");
	snprintf(v, sizeof(v), "%llu:%llux", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	cr_assert_eq(log_is_journal_stream(v, fileno(f)), 0, "trailing junk");
	snprintf(v, sizeof(v), ":%llu", (unsigned long long)st.st_ino);
	cr_assert_eq(log_is_journal_stream(v, fileno(f)), 0, "no device");
	cr_assert_eq(log_is_journal_stream("a:b", fileno(f)), 0);
	cr_assert_eq(log_is_journal_stream("1:2", -1), 0, "a closed fd");
	fclose(f);
	fclose(g);
}

Test(log, priority_prefixes)
{
	cr_assert_str_eq(log_priority_prefix(LOG_LVL_ERROR), "<3>");
	cr_assert_str_eq(log_priority_prefix(LOG_LVL_WARN), "<4>");
	cr_assert_str_eq(log_priority_prefix(LOG_LVL_INFO), "<6>");
	cr_assert_str_eq(log_priority_prefix(LOG_LVL_DEBUG), "<7>");
}

Test(log, prefix_when_stderr_is_the_journal)
{
	FILE *f = capture_stderr();
	set_journal_stream_of(STDERR_FILENO);
	cr_assert_eq(log_detect_journal(), 1);
	log_set_ident("test");
	log_set_level(LOG_LVL_DEBUG);
	log_error("e %d", 1);
	log_warn("w");
	log_info("i");
	log_debug("d");
	log_set_level(LOG_LVL_ERROR);
	log_notice("n %s", "up"); /* shown at every level, as a notice */
	cr_assert_str_eq(captured(f), "<3>e 1\n<4>w\n<6>i\n<7>d\n<5>n up\n");
	fclose(f);
}

Test(log, plain_when_stderr_is_not_the_journal)
{
	FILE *other = tmpfile();
	FILE *f = capture_stderr();
	cr_assert_not_null(other);
	/* The journal's stream was inherited, but stderr now goes elsewhere. */
	set_journal_stream_of(fileno(other));
	cr_assert_eq(log_detect_journal(), 0);
	log_set_ident("test");
	log_set_level(LOG_LVL_INFO);
	log_error("e");
	log_warn("w");
	log_info("i");
	log_debug("not shown");
	log_set_level(LOG_LVL_ERROR);
	log_notice("listening");
	cr_assert_str_eq(captured(f),
			 "test: error: e\ntest: warning: w\ntest: info: i\ntest: listening\n");
	cr_assert_eq(unsetenv("JOURNAL_STREAM"), 0);
	cr_assert_eq(log_detect_journal(), 0);
	fclose(f);
	fclose(other);
}

Test(log, ratelimit_windows)
{
	struct log_rl rl;
	unsigned report = 99;
	log_rl_init(&rl, 3, 1000);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(log_rl_check(&rl, 5000 + i, &report), 1, "line %d of the burst", i);
		cr_assert_eq(report, 0);
	}
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(log_rl_check(&rl, 5100 + i * 200, &report), 0, "line over the burst");
		cr_assert_eq(report, 0);
	}
	/* The next window opens at 6000: the 4 held back are reported once. */
	cr_assert_eq(log_rl_check(&rl, 6000, &report), 1);
	cr_assert_eq(report, 4);
	cr_assert_eq(log_rl_check(&rl, 6001, &report), 1);
	cr_assert_eq(report, 0);
	/* A quiet window reports nothing. */
	cr_assert_eq(log_rl_check(&rl, 60000, &report), 1);
	cr_assert_eq(report, 0);
	/* A clock that goes backwards (another limiter's caller) opens a window. */
	for (int i = 0; i < 3; i++)
		log_rl_check(&rl, 60001, &report);
	cr_assert_eq(log_rl_check(&rl, 100, &report), 1);
	cr_assert_eq(report, 1);
	log_rl_destroy(&rl);
}

Test(log, ratelimit_zero_burst_holds_everything)
{
	struct log_rl rl = LOG_RL_INIT(0, 1000);
	unsigned report;
	cr_assert_eq(log_rl_check(&rl, 1, &report), 0);
	cr_assert_eq(log_rl_check(&rl, 2, &report), 0);
	cr_assert_eq(log_rl_check(&rl, 1001, &report), 0);
	cr_assert_eq(report, 2);
}

Test(log, ratelimited_lines_and_summary)
{
	static struct log_rl rl = LOG_RL_INIT(2, 3600 * 1000);
	FILE *f = capture_stderr();
	unsetenv("JOURNAL_STREAM");
	log_detect_journal();
	log_set_ident("test");
	log_set_level(LOG_LVL_WARN);
	for (int i = 0; i < 5; i++)
		log_ratelimited(&rl, LOG_LVL_WARN, "junk frame %d", i);
	/* Below the level filter: neither printed nor counted. */
	for (int i = 0; i < 5; i++)
		log_ratelimited(&rl, LOG_LVL_DEBUG, "debug %d", i);
	log_rl_flush(&rl);
	log_rl_flush(&rl); /* nothing more to report */
	cr_assert_str_eq(captured(f), "test: warning: junk frame 0\n"
				      "test: warning: junk frame 1\n"
				      "test: warning: suppressed 3 similar messages\n");
	fclose(f);
}

static struct log_rl shared_rl = LOG_RL_INIT(100, 3600 * 1000);
static int printed[8];

static void *hammer(void *arg)
{
	int *mine = arg;
	unsigned report;
	for (int i = 0; i < 10000; i++)
		*mine += log_rl_check(&shared_rl, 42, &report);
	return NULL;
}

Test(log, ratelimit_threads_share_one_burst)
{
	pthread_t t[8];
	int total = 0;
	for (int i = 0; i < 8; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, hammer, &printed[i]), 0);
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		total += printed[i];
	}
	cr_assert_eq(total, 100, "exactly one burst let through, got %d", total);
	cr_assert_eq(shared_rl.suppressed, 8 * 10000 - 100);
}
