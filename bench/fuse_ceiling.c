/*
 * fuse_ceiling: the fastest honest FUSE filesystem, the "ceiling" that
 * bench/fuse_compare holds the kvfs mount against.
 *
 * libfuse3 lowlevel API, multi-threaded. Every file's bytes live in this
 * process's memory: read is fuse_reply_buf straight from it, write a memcpy
 * into it. No network and no copy beyond FUSE's own, so whatever kvfs loses
 * against it is kvfs's own cost.
 *
 * The connection is set up as kvfs sets it up: max_read and max_write 1 MiB
 * (with -o max_read to match), max_readahead 1 MiB or less if the kernel
 * offers less, async reads, readdirplus always, no writeback cache, no
 * splice. Files open with keep_cache and report st_blksize 1 MiB, so cp
 * writes 1 MiB at a time.
 *
 * The root holds the files (mkdir exists for cp -r); -o prefill=SIZE creates
 * "big" with SIZE deterministic bytes, -o files=N,filesize=S creates
 * small/f0 .. f<N-1>.
 * File memory is mmap'd (huge pages where allowed) and doubled with mremap.
 * A truncated file keeps its memory until it is unlinked and forgotten, so a
 * rewrite does not fault pages in again (kvfs-server reuses the pages of
 * its pool, too).
 *
 * One rwlock guards everything: read, getattr and statfs share it.
 * Inode numbers index one table and are never reused.
 */
#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define MIB	 ((size_t)1 << 20)
#define NBUCKETS (1u << 16)

struct node {
	fuse_ino_t ino;
	fuse_ino_t parent; /* 0 once unlinked */
	char *name;
	mode_t mode;
	char *data; /* mmap'd, cap bytes */
	size_t size, cap;
	uint64_t nlookup;
	struct timespec mtime;
	struct node *hnext; /* chain of the (parent, name) hash bucket */
};

static struct {
	pthread_rwlock_t lock;
	struct node **nodes; /* [ino]; [1] is the root, NULL once freed */
	size_t n, max;
	struct node *buckets[NBUCKETS];
	size_t used; /* bytes of file memory */
} fs = {.lock = PTHREAD_RWLOCK_INITIALIZER};

static struct opts {
	char *prefill, *filesize;
	unsigned files, max_read;
	double timeout;
} o = {.max_read = MIB, .timeout = 1.0};

static const struct fuse_opt opt_spec[] = {
    {"prefill=%s", offsetof(struct opts, prefill), 0},
    {"files=%u", offsetof(struct opts, files), 0},
    {"filesize=%s", offsetof(struct opts, filesize), 0},
    {"max_read=%u", offsetof(struct opts, max_read), 0},
    {"timeout=%lf", offsetof(struct opts, timeout), 0},
    FUSE_OPT_END,
};

/* "1G", "4K", "512" (powers of 1024): 0 and *out, or -1. */
static int parse_size(const char *s, size_t *out)
{
	static const char units[] = "KMG";
	char *end;
	size_t v = strtoull(s, &end, 10);
	const char *u = *end ? strchr(units, *end) : NULL;

	if (end == s || (*end && (!u || end[1])))
		return -1;
	*out = u ? v << (10 * (u - units + 1)) : v;
	return 0;
}

static unsigned hash(fuse_ino_t parent, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ parent;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ull;
	return (unsigned)(h ^ h >> 32) & (NBUCKETS - 1);
}

static struct node *find(fuse_ino_t parent, const char *name)
{
	struct node *n = fs.buckets[hash(parent, name)];

	while (n && (n->parent != parent || strcmp(n->name, name) != 0))
		n = n->hnext;
	return n;
}

static struct node *get(fuse_ino_t ino)
{
	return ino < fs.n ? fs.nodes[ino] : NULL;
}

/* Lock held exclusively. Returns the new node, NULL on ENOMEM. */
static struct node *add_node(fuse_ino_t parent, const char *name, mode_t mode)
{
	struct node *n;

	if (fs.n == fs.max) {
		size_t max = fs.max ? 2 * fs.max : 1024;
		struct node **t = realloc(fs.nodes, max * sizeof(*t));
		if (!t)
			return NULL;
		fs.nodes = t;
		fs.max = max;
	}
	n = calloc(1, sizeof(*n));
	if (!n || !(n->name = strdup(name))) {
		free(n);
		return NULL;
	}
	n->ino = fs.n;
	n->parent = parent;
	n->mode = mode;
	clock_gettime(CLOCK_REALTIME, &n->mtime);
	if (parent) {
		n->hnext = fs.buckets[hash(parent, name)];
		fs.buckets[hash(parent, name)] = n;
	}
	fs.nodes[fs.n++] = n;
	return n;
}

/* Frees n if it is unlinked and the kernel has forgotten it. */
static void maybe_free(struct node *n)
{
	if (n->parent || n->nlookup || n->ino == FUSE_ROOT_ID)
		return;
	if (n->data)
		munmap(n->data, n->cap);
	fs.used -= n->cap;
	fs.nodes[n->ino] = NULL;
	free(n->name);
	free(n);
}

/* Makes n->data hold at least need bytes; bytes past n->size are undefined. */
static int reserve(struct node *n, size_t need)
{
	size_t cap = n->cap ? n->cap : 4096;
	void *p;

	if (need <= n->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	if (n->data)
		p = mremap(n->data, n->cap, cap, MREMAP_MAYMOVE);
	else
		p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return ENOMEM;
	madvise(p, cap, MADV_HUGEPAGE);
	fs.used += cap - n->cap;
	n->data = p;
	n->cap = cap;
	return 0;
}

/* Writes len bytes at off, or zeros if buf is NULL; bytes in a hole read as zeros. */
static int put(struct node *n, const char *buf, size_t len, size_t off)
{
	int r = reserve(n, off + len);

	if (r)
		return r;
	if (off > n->size)
		memset(n->data + n->size, 0, off - n->size);
	if (buf)
		memcpy(n->data + off, buf, len);
	else
		memset(n->data + off, 0, len);
	if (off + len > n->size)
		n->size = off + len;
	clock_gettime(CLOCK_REALTIME, &n->mtime);
	return 0;
}

static void fill(char *p, size_t len, uint64_t seed) /* splitmix64 */
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t z = seed + (i / 8 + 1) * 0x9e3779b97f4a7c15ull;
		z = (z ^ z >> 30) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ z >> 27) * 0x94d049bb133111ebull;
		z ^= z >> 31;
		memcpy(p + i, &z, len - i < 8 ? len - i : 8);
	}
}

static void stat_of(const struct node *n, struct stat *st)
{
	*st = (struct stat){.st_ino = n->ino,
			    .st_mode = n->mode,
			    .st_nlink = S_ISDIR(n->mode) ? 2 : n->parent != 0,
			    .st_uid = getuid(),
			    .st_gid = getgid(),
			    .st_size = (off_t)n->size,
			    .st_blksize = MIB,
			    .st_blocks = (blkcnt_t)((n->size + 511) / 512),
			    .st_atim = n->mtime,
			    .st_mtim = n->mtime,
			    .st_ctim = n->mtime};
}

/* Lock held exclusively (nlookup). fi: reply to create, else to lookup. */
static void reply_entry(fuse_req_t req, struct node *n, struct fuse_file_info *fi)
{
	struct fuse_entry_param e = {
	    .ino = n->ino, .generation = 1, .attr_timeout = o.timeout, .entry_timeout = o.timeout};

	stat_of(n, &e.attr);
	n->nlookup++;
	if (fi)
		fuse_reply_create(req, &e, fi);
	else
		fuse_reply_entry(req, &e);
}

static void op_init(void *data, struct fuse_conn_info *conn)
{
	(void)data;
	conn->max_write = MIB;
	conn->max_read = o.max_read;
	if (conn->max_readahead > MIB) /* libfuse already cut it to the kernel's offer */
		conn->max_readahead = MIB;
	conn->want |= conn->capable & (FUSE_CAP_ASYNC_READ | FUSE_CAP_READDIRPLUS);
	conn->want &=
	    ~(unsigned)(FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_WRITEBACK_CACHE |
			FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	fuse_log(FUSE_LOG_INFO, "fuse_ceiling: max_write %u max_read %u max_readahead %u\n",
		 conn->max_write, conn->max_read, conn->max_readahead);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct node *n;

	pthread_rwlock_wrlock(&fs.lock);
	n = find(parent, name);
	if (n)
		reply_entry(req, n, NULL);
	else
		fuse_reply_err(req, ENOENT);
	pthread_rwlock_unlock(&fs.lock);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	pthread_rwlock_wrlock(&fs.lock);
	for (size_t i = 0; i < count; i++) {
		struct node *n = get(f[i].ino);
		if (n) {
			n->nlookup -= f[i].nlookup < n->nlookup ? f[i].nlookup : n->nlookup;
			maybe_free(n);
		}
	}
	pthread_rwlock_unlock(&fs.lock);
	fuse_reply_none(req);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fuse_forget_data f = {.ino = ino, .nlookup = nlookup};

	op_forget_multi(req, 1, &f);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node *n;
	struct stat st;

	(void)fi;
	pthread_rwlock_rdlock(&fs.lock);
	n = get(ino);
	if (n)
		stat_of(n, &st);
	pthread_rwlock_unlock(&fs.lock);
	if (n)
		fuse_reply_attr(req, &st, o.timeout);
	else
		fuse_reply_err(req, ENOENT);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct node *n;
	struct stat st;
	int r = 0;

	(void)fi;
	pthread_rwlock_wrlock(&fs.lock);
	n = get(ino);
	if (!n)
		r = ENOENT;
	else if ((to_set & FUSE_SET_ATTR_SIZE) && S_ISDIR(n->mode))
		r = EISDIR;
	else if ((to_set & FUSE_SET_ATTR_SIZE) && (size_t)attr->st_size <= n->size)
		n->size = (size_t)attr->st_size;
	else if (to_set & FUSE_SET_ATTR_SIZE)
		r = put(n, NULL, (size_t)attr->st_size - n->size, n->size);
	if (!r && (to_set & FUSE_SET_ATTR_MODE))
		n->mode = (n->mode & S_IFMT) | (attr->st_mode & 07777);
	if (!r && (to_set & FUSE_SET_ATTR_MTIME))
		n->mtime = attr->st_mtim;
	if (!r && (to_set & (FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_SIZE)))
		clock_gettime(CLOCK_REALTIME, &n->mtime);
	if (!r)
		stat_of(n, &st);
	pthread_rwlock_unlock(&fs.lock);
	if (r)
		fuse_reply_err(req, r);
	else
		fuse_reply_attr(req, &st, o.timeout);
}

/*
 * readdir and, with plus, readdirplus (always on, as in kvfs: each entry
 * comes with its attributes and counts as a lookup). The offset after the
 * entry of inode i is i + 1; the root, 1, is no entry.
 */
static void list(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus)
{
	char *buf = malloc(size);
	size_t pos = 0, len, i;
	struct fuse_entry_param e = {.attr_timeout = o.timeout, .entry_timeout = o.timeout};

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_rwlock_wrlock(&fs.lock);
	for (i = off > 2 ? (size_t)off : 2; i < fs.n; i++) {
		struct node *n = fs.nodes[i];
		if (!n || n->parent != ino)
			continue;
		stat_of(n, &e.attr);
		e.ino = i;
		if (plus)
			len = fuse_add_direntry_plus(req, buf + pos, size - pos, n->name, &e,
						     (off_t)i + 1);
		else
			len = fuse_add_direntry(req, buf + pos, size - pos, n->name, &e.attr,
						(off_t)i + 1);
		if (len > size - pos)
			break;
		pos += len;
		n->nlookup += plus != 0;
	}
	pthread_rwlock_unlock(&fs.lock);
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	list(req, ino, size, off, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	list(req, ino, size, off, 1);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node *n;
	int r = 0;

	pthread_rwlock_wrlock(&fs.lock);
	n = get(ino);
	if (!n)
		r = ENOENT;
	else if (S_ISDIR(n->mode))
		r = EISDIR;
	else if (fi->flags & O_TRUNC) { /* FUSE_CAP_ATOMIC_O_TRUNC is on */
		n->size = 0;
		clock_gettime(CLOCK_REALTIME, &n->mtime);
	}
	pthread_rwlock_unlock(&fs.lock);
	fi->keep_cache = 1; /* nothing changes behind the kernel's back */
	if (r)
		fuse_reply_err(req, r);
	else
		fuse_reply_open(req, fi);
}

/* create, and mkdir when fi is NULL. */
static void make(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		 struct fuse_file_info *fi)
{
	struct node *p, *n = NULL;
	int r = 0;

	pthread_rwlock_wrlock(&fs.lock);
	p = get(parent);
	if (!p || !S_ISDIR(p->mode))
		r = p ? ENOTDIR : ENOENT;
	else if (find(parent, name))
		r = EEXIST;
	else if (!(n = add_node(parent, name, (fi ? S_IFREG : S_IFDIR) | (mode & 07777))))
		r = ENOMEM;
	if (fi)
		fi->keep_cache = 1;
	if (n)
		reply_entry(req, n, fi);
	pthread_rwlock_unlock(&fs.lock);
	if (r)
		fuse_reply_err(req, r);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	make(req, parent, name, mode, fi);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	make(req, parent, name, mode, NULL);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct node *n;

	(void)fi;
	pthread_rwlock_rdlock(&fs.lock);
	n = get(ino);
	if (!n)
		fuse_reply_err(req, ENOENT);
	else if ((size_t)off >= n->size)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, n->data + off,
			       size < n->size - (size_t)off ? size : n->size - (size_t)off);
	pthread_rwlock_unlock(&fs.lock);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct node *n;
	int r;

	(void)fi;
	pthread_rwlock_wrlock(&fs.lock);
	n = get(ino);
	r = n ? put(n, buf, size, (size_t)off) : ENOENT;
	pthread_rwlock_unlock(&fs.lock);
	if (r)
		fuse_reply_err(req, r);
	else
		fuse_reply_write(req, size);
}

/* flush and release: nothing is buffered, nothing is held per open file. */
static void op_done(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct node *n, **p;
	int r = 0;

	pthread_rwlock_wrlock(&fs.lock);
	n = find(parent, name);
	if (!n || S_ISDIR(n->mode)) {
		r = n ? EISDIR : ENOENT;
	} else {
		for (p = &fs.buckets[hash(parent, name)]; *p != n; p = &(*p)->hnext)
			;
		*p = n->hnext;
		n->parent = 0;
		maybe_free(n);
	}
	pthread_rwlock_unlock(&fs.lock);
	fuse_reply_err(req, r);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	long pages = sysconf(_SC_PHYS_PAGES);
	struct statvfs sv = {.f_bsize = 4096, .f_frsize = 4096, .f_namemax = 255};

	(void)ino;
	pthread_rwlock_rdlock(&fs.lock);
	sv.f_blocks = (fsblkcnt_t)(pages > 0 ? pages : 0);
	sv.f_bfree = sv.f_bavail = sv.f_blocks > fs.used / 4096 ? sv.f_blocks - fs.used / 4096 : 0;
	sv.f_files = 1u << 24;
	sv.f_ffree = sv.f_favail = sv.f_files - fs.n;
	pthread_rwlock_unlock(&fs.lock);
	fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .open = op_open,
    .create = op_create,
    .mkdir = op_mkdir,
    .read = op_read,
    .write = op_write,
    .flush = op_done,
    .release = op_done,
    .unlink = op_unlink,
    .statfs = op_statfs,
};

/* Inode 0 (unused), the root, "big" and small/f0 ..; before the mount, no locking. */
static int populate(void)
{
	size_t big = 0, small = 4096;
	struct node *n, *dir = NULL;
	char name[32];

	if ((o.prefill && parse_size(o.prefill, &big)) ||
	    (o.filesize && parse_size(o.filesize, &small))) {
		fprintf(stderr, "fuse_ceiling: bad size in -o prefill or -o filesize\n");
		return -1;
	}
	if (!add_node(0, "", 0) || !add_node(0, "", S_IFDIR | 0755))
		return -1;
	if (big) {
		if (!(n = add_node(FUSE_ROOT_ID, "big", S_IFREG | 0644)) || reserve(n, big))
			return -1;
		fill(n->data, big, 0);
		n->size = big;
	}
	if (o.files && !(dir = add_node(FUSE_ROOT_ID, "small", S_IFDIR | 0755)))
		return -1;
	for (unsigned i = 0; i < o.files; i++) {
		snprintf(name, sizeof(name), "f%u", i);
		if (!(n = add_node(dir->ino, name, S_IFREG | 0644)) || reserve(n, small))
			return -1;
		fill(n->data, small, i + 1);
		n->size = small;
	}
	return 0;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts co = {0};
	struct fuse_loop_config *lc;
	struct fuse_session *se = NULL;
	char mo[64];
	int ret = 1;

	if (fuse_opt_parse(&args, &o, opt_spec, NULL) == -1 || fuse_parse_cmdline(&args, &co) != 0)
		return 1;
	if (co.show_help || !co.mountpoint) {
		printf("usage: %s MOUNTPOINT [-f] [-o prefill=SIZE] [-o files=N,filesize=SIZE]\n"
		       "       [-o max_read=N] [-o timeout=SECONDS] [FUSE options]\n",
		       argv[0]);
		fuse_cmdline_help();
		fuse_lowlevel_help();
		ret = !co.show_help;
		goto out;
	}
	/* max_read is also a mount option; libfuse wants both to agree. */
	snprintf(mo, sizeof(mo), "-omax_read=%u,fsname=fuse_ceiling", o.max_read);
	if (fuse_opt_add_arg(&args, mo) || populate())
		goto out;
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se || fuse_set_signal_handlers(se) != 0)
		goto out;
	if (fuse_session_mount(se, co.mountpoint) != 0)
		goto out_signals;
	fuse_daemonize(co.foreground);
	if (co.singlethread) {
		ret = fuse_session_loop(se);
	} else {
		lc = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(lc, (unsigned)co.clone_fd);
		if (co.max_idle_threads != (unsigned)-1) /* -1: not given */
			fuse_loop_cfg_set_idle_threads(lc, co.max_idle_threads);
		fuse_loop_cfg_set_max_threads(lc, co.max_threads);
		ret = fuse_session_loop_mt(se, lc);
		fuse_loop_cfg_destroy(lc);
	}
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out:
	if (se)
		fuse_session_destroy(se);
	free(co.mountpoint);
	fuse_opt_free_args(&args);
	return ret ? 1 : 0;
}
