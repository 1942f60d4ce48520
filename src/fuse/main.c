/*
 * kvfs: mount a kvfs cluster as a file system (libfuse3 lowlevel API).
 *
 *   kvfs [-c FILE] MOUNTPOINT [-f] [-d] [-o OPTIONS]
 *   kvfs FILE MOUNTPOINT [-o OPTIONS]        (the form mount.fuse uses)
 *
 * Our own worker loop rather than fuse_session_loop_mt: each worker reads
 * requests into its own buffer, registered with libkvfs once, so the data
 * of a FUSE_WRITE is pulled by the server straight from where the kernel
 * put it. Workers are a fixed pool (-o threads=N). The main thread only
 * waits for a signal or for a worker to see the unmount, then stops them
 * with the exit flag and SIGUSR2 (not pthread_cancel: no unwinding through
 * libkvfs or the sanitizers).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h" /* our own copy (log_lib); libkvfs keeps its own */
#include "fuse/coherence.h"
#include "fuse/fs.h"
#include "fuse/fsmetrics.h"

/* FUSE_MAX_MAX_PAGES (256) pages plus the request header, with room to spare. */
#define WORKER_BUF (2u << 20)
#define MAX_IO	   (1u << 20)

enum { KEY_HELP, KEY_VERSION, KEY_RO, KEY_ALLOW_OTHER, KEY_MAX_READ };

/* fuse_opt_parse's data: the options first, so the OPT offsets apply to it. */
struct parse {
	struct fs_opts o;
	char *pos[2];
	int npos, too_many, max_read_given;
};

#define OPT(t, f)                                                                                  \
	{                                                                                          \
		t, offsetof(struct fs_opts, f), 0                                                  \
	}
static const struct fuse_opt kvfs_opts[] = {
    OPT("-c %s", config),
    OPT("--config=%s", config),
    OPT("uid=%u", uid),
    OPT("gid=%u", gid),
    OPT("umask=%o", umask),
    OPT("attr_timeout=%lf", attr_timeout),
    OPT("entry_timeout=%lf", entry_timeout),
    OPT("negative_timeout=%lf", negative_timeout),
    OPT("max_write=%u", max_write),
    OPT("threads=%u", threads),
    {"inval", offsetof(struct fs_opts, inval), 1},
    {"noinval", offsetof(struct fs_opts, inval), 0},
    FUSE_OPT_KEY("ro", KEY_RO),
    FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
    FUSE_OPT_KEY("max_read=", KEY_MAX_READ),
    FUSE_OPT_END,
};

static int parse_proc(void *data, const char *arg, int key, struct fuse_args *out)
{
	(void)out;
	struct parse *p = data;
	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		if (p->npos == 2) {
			p->too_many = 1;
			return 0;
		}
		p->pos[p->npos] = strdup(arg);
		return p->pos[p->npos++] ? 0 : -1;
	case KEY_RO:
		p->o.ro = 1;
		return 1; /* libfuse mounts read-only too */
	case KEY_ALLOW_OTHER:
		p->o.allow_other = 1;
		return 1;
	case KEY_MAX_READ:
		p->o.max_read = (unsigned)strtoul(arg + strlen("max_read="), NULL, 0);
		p->max_read_given = 1;
		return 1;
	default:
		return 1;
	}
}

static void usage(const char *prog)
{
	printf("usage: %s [-c FILE] MOUNTPOINT [-f] [-d] [-o OPTIONS]\n"
	       "       %s FILE MOUNTPOINT [-o OPTIONS]\n\n"
	       "Mount the kvfs cluster of FILE (default $KVFS_CONF, else /etc/kvfs/kvfs.conf):\n"
	       "every key is a file. Unmount with fusermount3 -u MOUNTPOINT.\n\n"
	       "kvfs options:\n"
	       "    -c FILE, --config=FILE  cluster configuration (kvfs.conf(5))\n"
	       "    -o ro                   read-only mount\n"
	       "    -o allow_other          let other users in (adds default_permissions)\n"
	       "    -o uid=N,gid=N          owner of keys that stored none (default: you)\n"
	       "    -o umask=OOO            mode of keys that stored none (default 022)\n"
	       "    -o inval, -o noinval    servers tell this mount of changes, so it caches\n"
	       "                            long (default), or not (short timeouts)\n"
	       "    -o attr_timeout=S       cache attributes for S seconds (default 60 with\n"
	       "                            inval, at most 1 while a server is not tracking;\n"
	       "                            1 with noinval)\n"
	       "    -o entry_timeout=S      cache names for S seconds (defaults as attr_timeout)\n"
	       "    -o negative_timeout=S   cache missing names for S seconds (default 0)\n"
	       "    -o max_read=B           largest read request, up to 1M (default 1M)\n"
	       "    -o max_write=B          largest write request, up to 1M (default 1M)\n"
	       "    -o threads=N            request workers, 1 to 64 (default 8)\n"
	       "    -o dev, -o nodev        device nodes open their devices (root), or not "
	       "(default)\n\n",
	       prog, prog);
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

/*
 * The kernel gives a FUSE mount 128 KiB of readahead; sequential reads of
 * large values go faster with requests of max_read. Best effort (root).
 * The kernel lowers it to the INIT reply's max_readahead while handling
 * that reply, so this runs after it (worker_main). The device number comes
 * from /proc/self/mountinfo, not stat(2): a stat of our own mount would be a
 * request to ourselves.
 */
static void set_readahead(const char *mnt, unsigned bytes)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[4096], path[96];
	unsigned maj = 0, min = 0;
	int found = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned a, b;
		char at[4096], *o = at;
		/* "ID PARENT MAJ:MIN ROOT MOUNTPOINT ...", octal escapes in the paths */
		if (sscanf(line, "%*s %*s %u:%u %*s %4095s", &a, &b, at) != 3)
			continue;
		for (const char *i = at; *i; o++) {
			if (i[0] == '\\' && i[1] >= '0' && i[1] <= '3' && i[2] && i[3]) {
				*o = (char)((i[1] - '0') * 64 + (i[2] - '0') * 8 + (i[3] - '0'));
				i += 4;
			} else {
				*o = *i++;
			}
		}
		*o = 0;
		if (strcmp(at, mnt) == 0) {
			maj = a; /* the last one is on top */
			min = b;
			found = 1;
		}
	}
	fclose(f);
	if (!found)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
	f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f, "%u\n", bytes / 1024);
	if (fclose(f))
		log_warn("cannot set %s: %s", path, strerror(errno));
}

/* The opcode of a request in its buffer (struct fuse_in_header: len, opcode, ...). */
#define FUSE_OPCODE(mem) (((const uint32_t *)(mem))[1])
#define FUSE_INIT_OP	 26

struct worker {
	pthread_t thread;
	struct fs *fs;
	struct fs_worker_buf wb;
	pthread_t main;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct fuse_session *se = w->fs->se;
	struct fuse_buf fbuf;
	memset(&fbuf, 0, sizeof(fbuf));
	fbuf.mem = w->wb.mem;
	fbuf.size = w->wb.len;
	fs_tls_buf = &w->wb;
	/* libkvfs naps between completion polls; 50 us of default timer slack would dominate */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
	while (!fuse_session_exited(se)) {
		int res = fuse_session_receive_buf(se, &fbuf);
		if (res == -EINTR || res == -EAGAIN)
			continue;
		if (res <= 0) {
			if (res < 0)
				fuse_session_exit(se);
			break;
		}
		uint32_t op = FUSE_OPCODE(fbuf.mem);
		uint64_t t0 = fsm_clock();
		fuse_session_process_buf(se, &fbuf);
		if (t0)
			fsm_request(op, fsm_clock() - t0);
		if (op == FUSE_INIT_OP) /* its reply is written: the kernel has applied it */
			set_readahead(w->fs->mnt, w->fs->o.max_read);
	}
	pthread_kill(w->main, SIGUSR1); /* unmounted: wake the main thread */
	return NULL;
}

#define TIMEOUT_UNSET (-HUGE_VAL) /* not given: the default depends on inval */

/* Check the options, and fill in the defaults that depend on others (timeouts). */
static int check_opts(struct fs_opts *o)
{
	if (o->max_read < 4096 || o->max_read > MAX_IO) {
		fprintf(stderr, "kvfs: max_read=%u: must be 4096 to %u\n", o->max_read, MAX_IO);
		return -1;
	}
	if (o->max_write < 4096 || o->max_write > MAX_IO) {
		fprintf(stderr, "kvfs: max_write=%u: must be 4096 to %u\n", o->max_write, MAX_IO);
		return -1;
	}
	if (o->threads < 1 || o->threads > 64) {
		fprintf(stderr, "kvfs: threads=%u: must be 1 to 64\n", o->threads);
		return -1;
	}
	if (o->umask > 0777) {
		fprintf(stderr, "kvfs: umask=%o: must be 000 to 777\n", (unsigned)o->umask);
		return -1;
	}
	/* unset: long with invalidations, else the old second */
	if (o->attr_timeout == TIMEOUT_UNSET)
		o->attr_timeout = o->inval ? 60.0 : 1.0;
	if (o->entry_timeout == TIMEOUT_UNSET)
		o->entry_timeout = o->inval ? 60.0 : 1.0;
	o->short_timeout = 1.0;
	if (o->attr_timeout < 0 || o->entry_timeout < 0 || o->negative_timeout < 0) {
		fprintf(stderr, "kvfs: timeouts must not be negative\n");
		return -1;
	}
	return 0;
}

static void wake_handler(int sig)
{
	(void)sig;
}

/* Run the workers until a signal or the unmount. Returns 0 or -errno. */
static int serve(struct fs *fs)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = wake_handler; /* no SA_RESTART: interrupts read() */
	sigaction(SIGUSR2, &sa, NULL);

	unsigned n = fs->o.threads, started = 0;
	struct worker *w = calloc(n, sizeof(*w));
	int ret = w ? 0 : -ENOMEM;
	for (; !ret && started < n; started++) {
		struct worker *x = &w[started];
		x->fs = fs;
		x->main = pthread_self();
		x->wb.len = WORKER_BUF;
		x->wb.mem = mmap(NULL, x->wb.len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (x->wb.mem == MAP_FAILED) {
			x->wb.mem = NULL;
			ret = -ENOMEM;
			break;
		}
		ret = kvfs_mr_reg(fs->kv, x->wb.mem, x->wb.len, &x->wb.mr);
		if (ret)
			break;
		ret = -pthread_create(&x->thread, NULL, worker_main, x);
		if (ret) {
			kvfs_mr_close(x->wb.mr);
			break;
		}
	}
	if (ret)
		log_error("cannot start workers: %s", kvfs_strerror(ret));
	else {
		int sig;
		sigwait(&set, &sig);
	}
	/*
	 * Stop the workers: each either finishes its request and sees the
	 * exit flag, or sits in read() on /dev/fuse, which SIGUSR2 (a handler
	 * without SA_RESTART) interrupts. Repeat for one that was between the
	 * two when the signal came.
	 */
	fuse_session_exit(fs->se);
	for (unsigned i = 0; i < started; i++) {
		while (pthread_tryjoin_np(w[i].thread, NULL) == EBUSY) {
			pthread_kill(w[i].thread, SIGUSR2);
			struct timespec ts = {0, 5000000};
			nanosleep(&ts, NULL);
		}
		kvfs_mr_close(w[i].wb.mr);
	}
	for (unsigned i = 0; w && i < n; i++) {
		if (w[i].wb.mem)
			munmap(w[i].wb.mem, w[i].wb.len);
		free(w[i].wb.scratch);
	}
	free(w);
	return ret;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts copts;
	struct kvfs_config *cfg = NULL;
	struct fs fs;
	struct parse p;
	char err[512], opt[64];
	int ret = 1;

	memset(&fs, 0, sizeof(fs));
	memset(&p, 0, sizeof(p));
	memset(&copts, 0, sizeof(copts));
	p.o = (struct fs_opts){.uid = getuid(),
			       .gid = getgid(),
			       .umask = 022,
			       .attr_timeout = TIMEOUT_UNSET,
			       .entry_timeout = TIMEOUT_UNSET,
			       .inval = 1,
			       .max_read = MAX_IO,
			       .max_write = MAX_IO,
			       .threads = 8};
	log_set_ident("kvfs");
	kvfs_set_log(log_forward, NULL); /* libkvfs's lines as the mount's own */
	if (fuse_opt_parse(&args, &p, kvfs_opts, parse_proc) == -1)
		goto out;
	fs.o = p.o;
	if (p.too_many) {
		fprintf(stderr, "kvfs: too many arguments (see kvfs --help)\n");
		goto out;
	}
	if (p.npos == 2) {
		free(fs.o.config);
		fs.o.config = p.pos[0];
		p.pos[0] = p.pos[1];
		p.pos[1] = NULL;
		p.npos = 1;
	}
	if (p.npos == 1 && fuse_opt_add_arg(&args, p.pos[0]))
		goto out;
	if (!p.max_read_given) {
		snprintf(opt, sizeof(opt), "-omax_read=%u", fs.o.max_read);
		if (fuse_opt_add_arg(&args, opt))
			goto out;
	}
	if (fs.o.allow_other && fuse_opt_add_arg(&args, "-odefault_permissions"))
		goto out;
	/* noatime: reads never change a key's atime, so the kernel should not try */
	if (fuse_opt_add_arg(&args, "-ofsname=kvfs,subtype=kvfs,noatime"))
		goto out;
	if (fuse_parse_cmdline(&args, &copts) != 0)
		goto out;
	if (copts.show_help) {
		usage(argv[0]);
		ret = 0;
		goto out;
	}
	if (copts.show_version) {
		printf("kvfs %d.%d, libfuse %s\n", KVFS_VERSION_MAJOR, KVFS_VERSION_MINOR,
		       fuse_pkgversion());
		ret = 0;
		goto out;
	}
	if (!copts.mountpoint) {
		fprintf(stderr, "kvfs: no mount point (see kvfs --help)\n");
		goto out;
	}
	if (check_opts(&fs.o))
		goto out;
	if (copts.debug) {
		log_set_level(LOG_LVL_DEBUG);
		kvfs_set_log_level(KVFS_LOG_DEBUG);
	}
	if (kvfs_config_load(fs.o.config, &cfg, err, sizeof(err))) {
		fprintf(stderr, "kvfs: %s\n", err);
		goto out;
	}
	if (itab_init(&fs.it)) {
		fprintf(stderr, "kvfs: out of memory\n");
		goto out;
	}
	clock_gettime(CLOCK_REALTIME, &fs.mounted);
	fs.mnt = copts.mountpoint;
	fs.se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), &fs);
	if (!fs.se)
		goto out_itab;
	/* Bound before the fork, so a bad address is an error on the terminal. */
	const char *maddr = kvfs_config_client_metrics(cfg);
	if (maddr && fsm_listen(maddr, err, sizeof(err))) {
		fprintf(stderr, "kvfs: %s: client.metrics: %s\n", kvfs_config_path(fs.o.config),
			err);
		goto out_session;
	}
	if (fuse_session_mount(fs.se, copts.mountpoint))
		goto out_session;
	/* Fork before libkvfs starts anything: its threads and fabric state don't survive fork. */
	if (fuse_daemonize(copts.foreground))
		goto out_unmount;
	ret = kvfs_open_config(cfg, &fs.kv);
	if (ret) {
		log_error("%s", kvfs_strerror(ret));
		ret = 1;
		goto out_unmount;
	}
	/* The HTTP thread after the fork (threads don't survive it), before the workers. */
	if (fsm_start(fs.kv, err, sizeof(err))) {
		log_error("client.metrics: %s", err);
		kvfs_close(fs.kv);
		ret = 1;
		goto out_unmount;
	}
	if ((ret = coh_start(&fs, fs.o.inval)) != 0 && !fs.coh) {
		log_error("cannot start the notifier thread: %s", kvfs_strerror(ret));
		fsm_stop();
		kvfs_close(fs.kv);
		ret = 1;
		goto out_unmount;
	}
	if (ret) {
		log_warn("cannot track keys (%s): caching briefly", kvfs_strerror(ret));
		if (fs.o.attr_timeout > fs.o.short_timeout)
			fs.o.attr_timeout = fs.o.short_timeout;
		if (fs.o.entry_timeout > fs.o.short_timeout)
			fs.o.entry_timeout = fs.o.short_timeout;
	}
	ret = serve(&fs) ? 1 : 0;
	fsm_stop();
	kvfs_close(fs.kv);
	coh_stop(&fs);
out_unmount:
	fuse_session_unmount(fs.se);
out_session:
	fsm_stop(); /* a socket bound but never served */
	fuse_session_destroy(fs.se);
out_itab:
	itab_destroy(&fs.it);
out:
	kvfs_config_free(cfg);
	free(copts.mountpoint);
	free(fs.o.config);
	free(p.pos[0]);
	free(p.pos[1]);
	fuse_opt_free_args(&args);
	return ret;
}
