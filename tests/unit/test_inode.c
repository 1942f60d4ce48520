/* Unit tests of the mount's inode table (src/fuse/inode.c). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fuse/inode.h"

static struct itab t;

static void setup(void)
{
	cr_assert_eq(itab_init(&t), 0);
}

static void teardown(void)
{
	itab_destroy(&t);
}

TestSuite(inode, .init = setup, .fini = teardown);

static const char *key_of(uint64_t ino, const char *suffix)
{
	static char buf[KVFS_MAX_KEY + 2];
	int n = itab_key(&t, ino, suffix, buf, sizeof(buf));
	cr_assert_geq(n, 0, "itab_key(%llu): %d", (unsigned long long)ino, n);
	cr_assert_eq((size_t)n, strlen(buf));
	return buf;
}

Test(inode, keys_are_paths_from_the_root)
{
	struct inode *a = itab_lookup(&t, ITAB_ROOT, "a", S_IFDIR);
	struct inode *b = itab_lookup(&t, a->ino, "b", S_IFDIR);
	struct inode *c = itab_lookup(&t, b->ino, "c.txt", S_IFREG);
	cr_assert_str_eq(key_of(ITAB_ROOT, ""), "");
	cr_assert_str_eq(key_of(a->ino, "/"), "a/");
	cr_assert_str_eq(key_of(c->ino, ""), "a/b/c.txt");
	char buf[64];
	cr_assert_eq(itab_child_key(&t, b->ino, "d", "/", buf, sizeof(buf)), 6);
	cr_assert_str_eq(buf, "a/b/d/");
	cr_assert_eq(itab_child_key(&t, ITAB_ROOT, "top", "", buf, sizeof(buf)), 3);
	cr_assert_str_eq(buf, "top");
}

Test(inode, lookup_counts_and_forget_frees)
{
	struct inode *a = itab_lookup(&t, ITAB_ROOT, "a", S_IFREG);
	cr_assert_eq(itab_lookup(&t, ITAB_ROOT, "a", S_IFREG), a, "same name, same node");
	cr_assert_eq(a->nlookup, 2);
	uint64_t ino = a->ino;
	itab_forget(&t, ino, 1);
	cr_assert_eq(itab_get(&t, ino), a);
	itab_forget(&t, ino, 1);
	cr_assert_null(itab_get(&t, ino), "freed after the last forget");
	cr_assert_eq(t.count, 1, "only the root is left");
}

Test(inode, parents_outlive_their_children)
{
	struct inode *d = itab_lookup(&t, ITAB_ROOT, "d", S_IFDIR);
	struct inode *f = itab_lookup(&t, d->ino, "f", S_IFREG);
	uint64_t dino = d->ino, fino = f->ino;
	itab_forget(&t, dino, 1);
	cr_assert_not_null(itab_get(&t, dino), "a looked-up child keeps its parent");
	cr_assert_str_eq(key_of(fino, ""), "d/f");
	itab_forget(&t, fino, 1);
	cr_assert_null(itab_get(&t, fino));
	cr_assert_null(itab_get(&t, dino), "the parent goes with its last child");
}

Test(inode, a_type_change_gets_a_new_number)
{
	struct inode *f = itab_lookup(&t, ITAB_ROOT, "x", S_IFREG);
	struct inode *d = itab_lookup(&t, ITAB_ROOT, "x", S_IFDIR);
	cr_assert_neq(f->ino, d->ino);
	cr_assert(f->detached);
	cr_assert_eq(itab_lookup(&t, ITAB_ROOT, "x", S_IFDIR), d);
}

Test(inode, rename_moves_a_subtree)
{
	struct inode *d = itab_lookup(&t, ITAB_ROOT, "d", S_IFDIR);
	struct inode *f = itab_lookup(&t, d->ino, "f", S_IFREG);
	struct inode *e = itab_lookup(&t, ITAB_ROOT, "e", S_IFDIR);
	struct inode *old = itab_lookup(&t, e->ino, "g", S_IFDIR);
	cr_assert_eq(itab_rename(&t, ITAB_ROOT, "d", e->ino, "g"), 0);
	cr_assert(old->detached, "what was at the target is detached");
	cr_assert_str_eq(key_of(f->ino, ""), "e/g/f");
	cr_assert_eq(itab_lookup(&t, e->ino, "g", S_IFDIR), d);
	/* the old name is free */
	struct inode *n = itab_lookup(&t, ITAB_ROOT, "d", S_IFDIR);
	cr_assert_neq(n, d);
}

Test(inode, unlink_detaches_but_keeps_the_number)
{
	struct inode *f = itab_lookup(&t, ITAB_ROOT, "f", S_IFREG);
	uint64_t ino = f->ino;
	itab_unlink(&t, ITAB_ROOT, "f");
	cr_assert_eq(itab_get(&t, ino), f, "the kernel may still use it");
	cr_assert_neq(itab_lookup(&t, ITAB_ROOT, "f", S_IFREG), f, "a new file is a new node");
	itab_forget(&t, ino, 1);
	cr_assert_null(itab_get(&t, ino));
}

Test(inode, an_open_handle_outlives_forget)
{
	struct inode *f = itab_lookup(&t, ITAB_ROOT, "f", S_IFREG);
	uint64_t ino = f->ino;
	itab_hold(&t, f);
	itab_forget(&t, ino, 1); /* FORGET before the file's RELEASE */
	cr_assert_eq(itab_get(&t, ino), f);
	itab_unhold(&t, f);
	cr_assert_null(itab_get(&t, ino));
}

Test(inode, many_nodes_grow_the_table)
{
	char name[32];
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		cr_assert_not_null(itab_lookup(&t, ITAB_ROOT, name, S_IFREG));
	}
	for (int i = 0; i < 5000; i += 7) {
		snprintf(name, sizeof(name), "n%d", i);
		struct inode *n = itab_lookup(&t, ITAB_ROOT, name, S_IFREG);
		cr_assert_eq(n->nlookup, 2);
		cr_assert_str_eq(key_of(n->ino, ""), name);
	}
	cr_assert_eq(t.count, 5001);
}

Test(inode, bad_names_and_long_keys)
{
	char buf[KVFS_MAX_KEY + 2], name[300];
	cr_assert_not(name_ok("", 0));
	cr_assert_not(name_ok(".", 1));
	cr_assert_not(name_ok("..", 2));
	cr_assert_not(name_ok("a/b", 3));
	cr_assert(name_ok("...", 3));
	cr_assert(name_ok(".hidden", 7));
	memset(name, 'x', 256);
	name[256] = 0;
	cr_assert_not(name_ok(name, 256));
	cr_assert_eq(itab_child_key(&t, ITAB_ROOT, name, "", buf, sizeof(buf)), -ENAMETOOLONG);
	name[255] = 0;
	cr_assert_eq(itab_child_key(&t, ITAB_ROOT, name, "", buf, sizeof(buf)), 255);
	cr_assert_eq(itab_child_key(&t, ITAB_ROOT, "..", "", buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(itab_child_key(&t, 999, "a", "", buf, sizeof(buf)), -ENOENT);
	/* 17 levels of 250 bytes pass KVFS_MAX_KEY */
	uint64_t parent = ITAB_ROOT;
	int ret = 0;
	name[250] = 0;
	for (int i = 0; i < 17 && ret >= 0; i++) {
		ret = itab_child_key(&t, parent, name, "", buf, sizeof(buf));
		parent = itab_lookup(&t, parent, name, S_IFDIR)->ino;
	}
	cr_assert_eq(ret, -ENAMETOOLONG);
	cr_assert_eq(itab_key(&t, parent, "", buf, sizeof(buf)), -ENAMETOOLONG);
}
