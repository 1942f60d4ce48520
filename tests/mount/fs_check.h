/*
 * fs_check.h: what the parts of fs_check share. fs_check.c holds the options,
 * the random numbers, the operation history and the driver loop;
 * fs_check_cmp.c compares results and state of the two trees;
 * fs_check_ops.c picks paths and holds the operations. Single-threaded: the
 * globals below need no lock.
 */
#ifndef FS_CHECK_H
#define FS_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define MAX_FILE   (6u << 20) /* no file grows beyond this */
#define BUF_SIZE   (8u << 20) /* read buffers */
#define MAX_WRITE  (2560u << 10)
#define NHANDLES   2
#define HISTORY	   32
#define MAX_PATH_C 256
#define MAX_ENTS   512

enum { SUT = 0, REF = 1 };

struct result {
	long v; /* return value, -1 on error */
	int e;	/* errno when v < 0 */
};

struct handle {
	bool open;
	bool append;
	char path[MAX_PATH_C];	/* as opened */
	char canon[MAX_PATH_C]; /* resolved (symlinks) in the reference */
	int fd[2];
};

#define RES(r, expr)                                                                               \
	do {                                                                                       \
		errno = 0;                                                                         \
		(r).v = (long)(expr);                                                              \
		(r).e = (r).v < 0 ? errno : 0;                                                     \
	} while (0)

struct op {
	const char *name;
	unsigned weight;
	void (*fn)(void);
};

/* fs_check.c */
extern const char *root[2];
extern int rootfd[2];
extern unsigned char *wbuf, *rbuf[2];
uint64_t below(uint64_t n);
bool chance(unsigned pct);
void fill(unsigned char *p, size_t n);
void hist(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void note_result(const char *what, const struct result r[2]);
void diverge(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* fs_check_cmp.c */
extern unsigned long nerr_matched;
void same(const char *what, const struct result r[2]);
void same_fd(const char *what, const struct result r[2]);
void compare_bytes(const char *what, const unsigned char *a, const unsigned char *b, size_t n);
void compare_contents(const char *path);
void compare_path(const char *path);
void compare_mtime(const char *what, const char *path);
int list(int s, const char *path, char ***out);
void compare_dir(const char *path, bool recurse);
void compare_handle(struct handle *h);
void full_compare(void);

/* fs_check_ops.c */
extern struct handle hd[NHANDLES];
extern const struct op ops[];
extern const size_t nops;
void scan(void);
bool busy(const char *path);
struct handle *pick_handle(bool want_open);
void op_hclose(void);

#endif
