/*
 * The fixture the config unit tests share (test_config*.c): each test runs
 * in its own process with a fresh temporary directory; load() writes a
 * kvfs.conf there and reads it with config_load().
 */
#ifndef KVFS_TEST_CONFIG_FIXTURE_H
#define KVFS_TEST_CONFIG_FIXTURE_H

#include <criterion/criterion.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config.h"
#include "kvfs/kvfs.h" /* the public kvfs_config_* calls */

#ifndef KVFS_SOURCE_DIR
#define KVFS_SOURCE_DIR "."
#endif

#define SRV "cluster = { servers = ( { name = \"a\"; address = \"127.0.0.1:7400\"; } ); };\n"

static char tmpdir[256];
static char conf_path[512];
static struct kvfs_config cfg;
static char err[1024];

static void setup(void)
{
	strcpy(tmpdir, "/tmp/kvfs-test-config-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(conf_path, sizeof(conf_path), "%s/kvfs.conf", tmpdir);
	unsetenv("KVFS_CONF");
	err[0] = '\0';
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void teardown(void)
{
	nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(config, .init = setup, .fini = teardown);

/* Writes tmpdir/name with mode; returns the full path (static buffer per call slot). */
static inline const char *write_file(const char *name, const char *text, size_t len, mode_t mode)
{
	static char paths[4][512];
	static int slot;
	char *p = paths[slot++ % 4];
	FILE *f;

	snprintf(p, 512, "%s/%s", tmpdir, name);
	f = fopen(p, "w");
	cr_assert_not_null(f, "fopen %s: %s", p, strerror(errno));
	cr_assert_eq(fwrite(text, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(chmod(p, mode), 0);
	return p;
}

static inline int load(const char *text)
{
	write_file("kvfs.conf", text, strlen(text), 0644);
	err[0] = '\0';
	return config_load(&cfg, conf_path, err, sizeof(err));
}

/* The load fails with -EINVAL and a message naming file, line, setting and "valid". */
static inline void expect_error(const char *text, int line, const char *setting)
{
	char where[600];
	int rc = load(text);

	cr_assert_eq(rc, -EINVAL, "rc %d for:\n%s", rc, text);
	snprintf(where, sizeof(where), "%s:%d: ", conf_path, line);
	cr_assert(strncmp(err, where, strlen(where)) == 0, "want prefix \"%s\", got \"%s\"", where,
		  err);
	if (setting)
		cr_assert_not_null(strstr(err, setting), "want setting %s in \"%s\"", setting, err);
	cr_assert_not_null(strstr(err, "; valid: "), "no \"; valid: \" in \"%s\"", err);
	cr_assert_null(strchr(err, '\n'), "message is not one line: \"%s\"", err);
}

static inline void expect_ok(const char *text)
{
	int rc = load(text);

	cr_assert_eq(rc, 0, "rc %d: %s\nfor:\n%s", rc, err, text);
}

#endif
