/* Unit tests of the server's tracked-keys table (src/server/track.c). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/wire.h"
#include "server/track.h"

static struct track *t;

static void setup(void)
{
	cr_assert_eq(track_open(&t, 8, 64), 0);
}
static void teardown(void)
{
	track_close(t);
}

TestSuite(track, .init = setup, .fini = teardown);

/* Take sidx's queue; its entries into a "kind:key,kind:key" string. */
static size_t take(uint32_t sidx, char *out, size_t cap, int *all)
{
	uint8_t buf[8192];
	uint64_t n;
	size_t len = track_take(t, sidx, buf, sizeof(buf), &n, all);
	const char *why = "";
	cr_assert_eq(wire_inval_check(buf, len, n, &why), 0, "%s", why);
	size_t pos = 0, klen;
	unsigned kind;
	const uint8_t *key;
	out[0] = 0;
	while (wire_inval_next(buf, len, &pos, &kind, &key, &klen) == 1) {
		size_t l = strlen(out);
		snprintf(out + l, cap - l, "%s%u:%.*s", l ? "," : "", kind, (int)klen,
			 (const char *)key);
	}
	return (size_t)n;
}

Test(track, a_change_reaches_the_sessions_that_read_the_key_once)
{
	char s[512];
	int all;
	cr_assert_eq(track_on(t, 1), 0);
	cr_assert_eq(track_on(t, 2), 0);
	track_read(t, 1, "a/b", 3);
	track_read(t, 1, "a/b", 3); /* twice: one entry */
	track_read(t, 2, "a/b", 3);
	track_read(t, 2, "x", 1);
	struct track_stats st;
	track_get_stats(t, &st);
	cr_assert_eq(st.entries, 3);
	uint64_t seq = track_seq(t);
	track_changed(t, "a/b", 3, WIRE_INVAL_CHANGED, 0, TRACK_NONE);
	cr_assert_neq(track_seq(t), seq);
	cr_assert_eq(take(1, s, sizeof(s), &all), 1);
	cr_assert_str_eq(s, "1:a/b");
	cr_assert_eq(all, 0);
	cr_assert_eq(take(2, s, sizeof(s), &all), 1);
	cr_assert_str_eq(s, "1:a/b");
	/* reported once, then forgotten until read again */
	track_changed(t, "a/b", 3, WIRE_INVAL_CHANGED, 0, TRACK_NONE);
	cr_assert_eq(take(1, s, sizeof(s), &all), 0);
	track_get_stats(t, &st);
	cr_assert_eq(st.entries, 1); /* session 2's "x" */
	/* a key nobody read: nothing queued, seq unchanged */
	seq = track_seq(t);
	track_changed(t, "zz", 2, WIRE_INVAL_GONE, 0, TRACK_NONE);
	cr_assert_eq(track_seq(t), seq);
}

Test(track, a_key_added_or_removed_changes_every_listed_prefix_above_it)
{
	char s[512];
	int all;
	cr_assert_eq(track_on(t, 3), 0);
	track_read(t, 3, "", 0);
	track_read(t, 3, "a/", 2);
	track_read(t, 3, "a/b/", 4);
	track_read(t, 3, "a/b/c", 5);
	track_changed(t, "a/b/c", 5, WIRE_INVAL_GONE, 1, TRACK_NONE);
	cr_assert_eq(take(3, s, sizeof(s), &all), 4);
	cr_assert_str_eq(s, "2:a/b/c,1:a/b/,1:a/,1:");
	/* a marker key's parents exclude itself */
	track_read(t, 3, "a/b/", 4);
	track_read(t, 3, "a/", 2);
	track_changed(t, "a/b/", 4, WIRE_INVAL_GONE, 1, TRACK_NONE);
	cr_assert_eq(take(3, s, sizeof(s), &all), 2);
	cr_assert_str_eq(s, "2:a/b/,1:a/");
}

Test(track, an_ended_session_gets_nothing_and_its_slot_starts_clean)
{
	char s[512];
	int all;
	cr_assert_eq(track_on(t, 4), 0);
	track_read(t, 4, "k", 1);
	track_off(t, 4);
	cr_assert_eq(track_on(t, 4), 0); /* the slot's next session */
	track_changed(t, "k", 1, WIRE_INVAL_CHANGED, 0, TRACK_NONE);
	cr_assert_eq(take(4, s, sizeof(s), &all), 0);
	cr_assert_eq(all, 0);
	/* not tracking: reads are not recorded */
	track_read(t, 5, "k", 1);
	struct track_stats st;
	track_get_stats(t, &st);
	cr_assert_eq(st.entries, 0);
}

Test(track, a_full_table_empties_and_every_session_forgets_all)
{
	char s[512], k[16];
	int all;
	cr_assert_eq(track_on(t, 0), 0);
	cr_assert_eq(track_on(t, 1), 0);
	track_read(t, 1, "kept?", 5);
	for (int i = 0; i < 48; i++) { /* 3/4 of 64 slots */
		int n = snprintf(k, sizeof(k), "k%d", i);
		track_read(t, 0, k, (size_t)n);
	}
	struct track_stats st;
	track_get_stats(t, &st);
	cr_assert_eq(st.overflows, 1);
	cr_assert_leq(st.entries, 48);
	cr_assert_eq(take(1, s, sizeof(s), &all), 0);
	cr_assert_eq(all, 1);
	cr_assert_eq(take(0, s, sizeof(s), &all), 0);
	cr_assert_eq(all, 1);
	/* told once */
	take(1, s, sizeof(s), &all);
	cr_assert_eq(all, 0);
	/* the table still works: entries after the overflow are found */
	track_changed(t, "k47", 3, WIRE_INVAL_CHANGED, 0, TRACK_NONE);
	cr_assert_eq(take(0, s, sizeof(s), &all), 1);
	cr_assert_str_eq(s, "1:k47");
}

Test(track, removals_keep_the_rest_of_each_probe_run_findable)
{
	char s[512], k[16];
	int all;
	cr_assert_eq(track_on(t, 6), 0);
	for (int i = 0; i < 40; i++) {
		int n = snprintf(k, sizeof(k), "r%d", i);
		track_read(t, 6, k, (size_t)n);
	}
	for (int pass = 0; pass < 2; pass++)
		for (int i = pass; i < 40; i += 2) {
			int n = snprintf(k, sizeof(k), "r%d", i);
			track_changed(t, k, (size_t)n, WIRE_INVAL_CHANGED, 0, TRACK_NONE);
			cr_assert_eq(take(6, s, sizeof(s), &all), 1, "%s", k);
			cr_assert_str_eq(s + 2, k);
		}
	struct track_stats st;
	track_get_stats(t, &st);
	cr_assert_eq(st.entries, 0);
}

Test(track, a_session_that_does_not_take_its_queue_loses_tracking_and_is_told)
{
	char s[512], k[64];
	int all;
	struct track *big;
	cr_assert_eq(track_open(&big, 2, 1u << 14), 0);
	struct track *small = t;
	t = big;
	cr_assert_eq(track_on(t, 1), 0);
	for (int i = 0; i < 2000; i++) {
		int n = snprintf(k, sizeof(k), "some/longer/key/name/number/%06d", i);
		track_read(t, 1, k, (size_t)n);
	}
	for (int i = 0; i < 2000; i++) {
		int n = snprintf(k, sizeof(k), "some/longer/key/name/number/%06d", i);
		track_changed(t, k, (size_t)n, WIRE_INVAL_CHANGED, 0, TRACK_NONE);
	}
	struct track_stats st;
	track_get_stats(t, &st);
	cr_assert_eq(st.dropped, 1);
	cr_assert_eq(take(1, s, sizeof(s), &all), 0);
	cr_assert_eq(all, 1);
	/* still tracking afresh afterwards */
	track_read(t, 1, "new", 3);
	track_changed(t, "new", 3, WIRE_INVAL_GONE, 0, TRACK_NONE);
	cr_assert_eq(take(1, s, sizeof(s), &all), 1);
	cr_assert_str_eq(s, "2:new");
	t = small;
	track_close(big);
}

Test(track, the_writer_is_not_told_of_its_own_change_and_keeps_its_entry)
{
	char s[512];
	int all;
	cr_assert_eq(track_on(t, 1), 0);
	cr_assert_eq(track_on(t, 2), 0);
	track_read(t, 1, "k", 1);
	track_read(t, 2, "k", 1);
	track_changed(t, "k", 1, WIRE_INVAL_CHANGED, 0, 1); /* session 1 wrote it */
	cr_assert_eq(track_has(t, 1), 0);
	cr_assert_eq(track_has(t, 2), 1);
	cr_assert_eq(take(1, s, sizeof(s), &all), 0);
	cr_assert_eq(take(2, s, sizeof(s), &all), 1);
	cr_assert_eq(track_has(t, 2), 0);
	track_changed(t, "k", 1, WIRE_INVAL_CHANGED, 0, 2); /* now session 2 writes */
	cr_assert_eq(take(1, s, sizeof(s), &all), 1);
	cr_assert_str_eq(s, "1:k");
}
