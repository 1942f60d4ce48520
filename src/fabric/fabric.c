/*
 * fabric: the only file that calls fi_*. See fabric.h for the contract.
 *
 * Choices: FI_EP_RDM so one endpoint talks to every peer; FI_CQ_FORMAT_DATA;
 * FI_CONTEXT|FI_CONTEXT2 accepted (our fab_ctx has room); mr_mode asks for
 * every bit verbs and efa need and we honour whatever comes back. tcp is
 * layered as "tcp;ofi_rxm" for RDM.
 */
#include "fabric.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>
#include <pthread.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * libfabric is not linked but loaded at the first fabric use (see
 * "Loading libfabric" below). Its few exported functions are renamed here,
 * before the headers declare them, to this file's wrappers, so that the
 * headers' static inline functions (fi_allocinfo calls fi_dupinfo) call
 * them too; everything else goes through the fid ops tables. Hidden: they
 * are no part of libkvfs or kvfs-server.
 */
#define fi_getinfo  fab_dl_getinfo
#define fi_freeinfo fab_dl_freeinfo
#define fi_dupinfo  fab_dl_dupinfo
#define fi_fabric   fab_dl_fabric
#define fi_strerror fab_dl_strerror
#define fi_version  fab_dl_version
#pragma GCC visibility push(hidden)
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#pragma GCC visibility pop

#include "common/log.h"

_Static_assert(sizeof(struct fab_ctx) >= sizeof(struct fi_context2), "fab_ctx too small");

struct fab_ep {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	char prov[64];
	char shm_name[64];     /* shm: our region's name, "" otherwise */
	uint64_t write_flags;  /* FI_DELIVERY_COMPLETE when sends may overtake writes */
	struct log_rl peer_rl; /* completion errors and bad addresses: peers cause them */
};

struct fab_mr {
	struct fab_ep *ep;
	struct fid_mr *mr;
	void *buf;
};

/* ---- Loading libfabric ---- */

/*
 * Why dlopen: Debian's libfabric1 links the providers' libraries
 * (libpsm_infinipath, libpsm2, libefa, libibverbs, ...), and
 * libinfinipath's constructor alone costs ~200 ms of wall time (some 785
 * sleeps of 125 us around sched_setaffinity) in every process that loads
 * it. Linked, that was paid before main() by every kvfsctl command, every
 * program using libkvfs and the mount, fabric or not. Loaded here, only a
 * process that opens an endpoint or asks what the fabric offers pays it.
 *
 * Each function is resolved at the symbol version that linking against
 * these headers binds, since that version fixes the layout of struct
 * fi_info and its attributes (fabric(7), "ABI CHANGES"); dlsym would give
 * the newest, whose structures may be larger than ours. ABI 1.3 is that
 * of libfabric 1.9 to 1.19 (1.17 is the one built and tested here); 1.20
 * moved fi_getinfo, fi_dupinfo and fi_freeinfo to FABRIC_1.7.
 */
#if FI_MAJOR_VERSION == 1 && FI_MINOR_VERSION >= 9 && FI_MINOR_VERSION <= 19
#define FAB_ABI_INFO "FABRIC_1.3"
#elif FI_MAJOR_VERSION == 1 && FI_MINOR_VERSION >= 20
#define FAB_ABI_INFO "FABRIC_1.7"
#else
#error "libfabric headers of an ABI unknown to fabric.c: add the version fi_getinfo binds to"
#endif
#define FAB_LIBFABRIC "libfabric.so.1"

/* Written once, by load_libfabric() under lib_once; read-only after. */
static struct {
	int err; /* 0 = loaded, else -ELIBACC */
	__typeof__(fi_getinfo) *getinfo;
	__typeof__(fi_freeinfo) *freeinfo;
	__typeof__(fi_dupinfo) *dupinfo;
	__typeof__(fi_fabric) *fabric;
	__typeof__(fi_strerror) *strerror;
	__typeof__(fi_version) *version;
} lib;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

/* *fn = name@ver of h (memcpy: ISO C has no object-to-function pointer cast). */
static int resolve(void *h, const char *name, const char *ver, void *fn, size_t fn_size)
{
	void *p = dlvsym(h, name, ver);
	if (!p) {
		const char *why = dlerror();
		log_error("cannot load " FAB_LIBFABRIC ": %s", why ? why : name);
		return -1;
	}
	memcpy(fn, &p, fn_size);
	return 0;
}
#define RESOLVE(h, field, name, ver) resolve(h, name, ver, &lib.field, sizeof(lib.field))

/*
 * The signal dispositions around loading libfabric and its providers'
 * first initialisation. libinfinipath (psm) installs handlers of its own
 * that call exit(): they replaced the program's (kvfsctl's cleanup, the
 * mount's and the server's shutdown), and a SIGTERM that came during
 * fi_getinfo then deadlocked in libfabric's destructor, which takes the
 * lock fi_getinfo holds. A program's handlers are its own: put them back.
 * The calling thread blocks every signal meanwhile, so none runs a foreign
 * handler: one that comes is delivered, to the program's handler, once
 * they are back (libkvfs's own thread blocks them all; so do the mount's
 * workers, the server's threads and the /metrics thread). A thread of a
 * program that blocks none may still take one in that window (kvfs.h says
 * so). A handler another thread installs meanwhile is put back too.
 */
struct sigsave {
	struct sigaction sa[NSIG];
	sigset_t mask;
};

static void signals_save(struct sigsave *s)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &s->mask);
	for (int i = 1; i < NSIG; i++)
		if (sigaction(i, NULL, &s->sa[i]))
			s->sa[i].sa_handler = SIG_ERR; /* not a signal we may set */
}

static void signals_restore(const struct sigsave *s, const char *when)
{
	for (int i = 1; i < NSIG; i++) {
		struct sigaction now;
		if (s->sa[i].sa_handler == SIG_ERR || sigaction(i, NULL, &now))
			continue;
		if (now.sa_handler != s->sa[i].sa_handler || now.sa_flags != s->sa[i].sa_flags) {
			sigaction(i, &s->sa[i], NULL);
			log_debug("%s changed the handler of signal %d: restored", when, i);
		}
	}
	pthread_sigmask(SIG_SETMASK, &s->mask, NULL);
}

static void load_libfabric(void)
{
	struct sigsave ss;
	lib.err = -ELIBACC;
	signals_save(&ss);
	/* Kept loaded for good: providers register exit handlers and threads. */
	void *h = dlopen(FAB_LIBFABRIC, RTLD_NOW | RTLD_LOCAL);
	signals_restore(&ss, "loading " FAB_LIBFABRIC);
	if (!h) {
		log_error("cannot load " FAB_LIBFABRIC ": %s", dlerror());
		return;
	}
	if (RESOLVE(h, getinfo, "fi_getinfo", FAB_ABI_INFO) ||
	    RESOLVE(h, freeinfo, "fi_freeinfo", FAB_ABI_INFO) ||
	    RESOLVE(h, dupinfo, "fi_dupinfo", FAB_ABI_INFO) ||
	    RESOLVE(h, fabric, "fi_fabric", "FABRIC_1.1") ||
	    RESOLVE(h, strerror, "fi_strerror", "FABRIC_1.0") ||
	    RESOLVE(h, version, "fi_version", "FABRIC_1.0")) {
		dlclose(h);
		return;
	}
	uint32_t v = lib.version();
	log_debug("loaded " FAB_LIBFABRIC " (libfabric %u.%u)", FI_MAJOR(v), FI_MINOR(v));
	lib.err = 0;
}

/* 0 once libfabric is loaded, else -ELIBACC (logged once, when it failed). */
static int lib_load(void)
{
	pthread_once(&lib_once, load_libfabric);
	return lib.err;
}

/*
 * The wrappers the headers' names now mean. The entry points (fab_open,
 * fab_provider_available, fab_probe) load the library first; the checks
 * here only keep a stray call from jumping through a null pointer.
 */
int fi_getinfo(uint32_t version, const char *node, const char *service, uint64_t flags,
	       const struct fi_info *hints, struct fi_info **info)
{
	/* One at a time: the signal dispositions saved and put back are the process's. */
	static pthread_mutex_t getinfo_lock = PTHREAD_MUTEX_INITIALIZER;
	if (lib_load())
		return -FI_ENOSYS;
	struct sigsave ss; /* the first call initialises every provider */
	pthread_mutex_lock(&getinfo_lock);
	signals_save(&ss);
	int ret = lib.getinfo(version, node, service, flags, hints, info);
	signals_restore(&ss, "fi_getinfo");
	pthread_mutex_unlock(&getinfo_lock);
	return ret;
}

void fi_freeinfo(struct fi_info *info)
{
	if (!lib_load())
		lib.freeinfo(info);
}

struct fi_info *fi_dupinfo(const struct fi_info *info)
{
	return lib_load() ? NULL : lib.dupinfo(info);
}

int fi_fabric(struct fi_fabric_attr *attr, struct fid_fabric **fabric, void *context)
{
	return lib_load() ? -FI_ENOSYS : lib.fabric(attr, fabric, context);
}

const char *fi_strerror(int errnum)
{
	return lib_load() ? "libfabric is not loaded" : lib.strerror(errnum);
}

uint32_t fi_version(void)
{
	return lib_load() ? 0 : lib.version();
}

/* ---- Endpoints ---- */

#define MR_MODE_WANTED                                                                             \
	(FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT)

static const char *prov_query(const char *p)
{
	return strcmp(p, "tcp") == 0	 ? "tcp;ofi_rxm"
	       : strcmp(p, "verbs") == 0 ? "verbs;ofi_rxm"
					 : p;
}

static struct fi_info *make_hints(const char *provider, const char *domain, int thread_safe,
				  int ordered_writes)
{
	struct fi_info *h = fi_allocinfo();
	if (!h)
		return NULL;
	h->caps = FI_MSG | FI_RMA | FI_SEND | FI_RECV | FI_READ | FI_WRITE | FI_REMOTE_READ |
		  FI_REMOTE_WRITE;
	h->mode = FI_CONTEXT | FI_CONTEXT2;
	h->ep_attr->type = FI_EP_RDM;
	h->domain_attr->mr_mode = MR_MODE_WANTED;
	h->domain_attr->threading = thread_safe ? FI_THREAD_SAFE : FI_THREAD_DOMAIN;
	h->domain_attr->control_progress = FI_PROGRESS_MANUAL;
	h->domain_attr->data_progress = FI_PROGRESS_MANUAL;
	h->tx_attr->msg_order = FI_ORDER_SAS | (ordered_writes ? FI_ORDER_SAW : 0);
	if (provider)
		h->fabric_attr->prov_name = strdup(prov_query(provider));
	if (domain)
		h->domain_attr->name = strdup(domain);
	return h;
}

static int fail(const char *call, int ret)
{
	log_error("%s: %s", call, fi_strerror(-ret));
	return ret < 0 && ret > -4096 ? ret : -EIO;
}

/*
 * Endpoint creation is serialised per process: with libfabric 1.17's shm
 * provider, two threads opening endpoints at the same moment sometimes get
 * fi_enable() = EBUSY (seen when a client connects to several servers from
 * several threads at once). Opening is rare, so a process-wide lock is cheap.
 */
/*
 * The shm provider backs each endpoint with a file in /dev/shm that only a
 * clean close removes, and names it after the pid by default: a killed
 * process leaves it behind, and a later process with the same pid cannot
 * open an endpoint (EBUSY). kvfs names its regions
 * kvfs_<pid>_<random>_<pid namespace>, and before opening one removes those
 * of its pid namespace (or untagged) whose process is gone.
 */
#define SHM_PREFIX "kvfs_"

/*
 * The inode of our pid namespace, which kvfs_<pid>_<random>_<ns> names
 * carry: a pid means something only in its own namespace, and a process of
 * another one (a container sharing /dev/shm) must not take a live region of
 * ours for a dead one's. (Seen in tests/cluster: a server that was pid 1 of
 * its pid namespace removed a same-host server's region, whose shm
 * sessions then failed.) 0 when unknown.
 */
#define PIDNS_INIT_INO                                                                             \
	0xeffffffcUL /* the initial pid namespace's (the kernel's PROC_PID_INIT_INO) */

static unsigned long pidns_ino(void)
{
	struct stat st;
	return stat("/proc/self/ns/pid", &st) == 0 ? (unsigned long)st.st_ino : 0;
}

static void shm_sweep(void)
{
	DIR *d = opendir("/dev/shm");
	struct dirent *de;
	unsigned long ns = pidns_ino(), their_ns;
	if (!d)
		return;
	while ((de = readdir(d))) {
		int pid;
		int n = sscanf(de->d_name, SHM_PREFIX "%d_%*x_%lx", &pid, &their_ns);
		if (n < 1 || pid <= 0)
			continue;
		if (n == 2 && their_ns != ns)
			continue; /* another pid namespace's: its pid is not ours to test */
		if (n == 1 && ns != PIDNS_INIT_INO)
			continue; /* untagged (an older kvfs): only the initial namespace judges */
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		char path[300];
		snprintf(path, sizeof(path), "/dev/shm/%s", de->d_name);
		if (unlink(path) == 0)
			log_info("removed %s left by dead process %d", path, pid);
	}
	closedir(d);
}

/*
 * libfabric 1.17's shm provider guards each region (ours, and each peer's
 * that we map) with a process-shared spinlock, which a peer takes while it
 * queues a command in the region. A peer killed while holding one leaves it
 * held for good, and our next progress call spins in pthread_spin_lock
 * forever (1.18's lock-free queues removed the lock). The 1.17 region starts
 * { u8 version = 4; u8; u16 flags; int pid; u8; u8; void *base; spinlock }.
 */
#define SMR117_VERSION	 4
#define SMR117_PID_OFF	 4
#define SMR117_LOCK_OFF	 24
#define WEDGE_CONFIRM_MS 10

/* Is the spinlock at l held now and for WEDGE_CONFIRM_MS more? */
static int lock_stuck(pthread_spinlock_t *l)
{
	for (int i = 0; i <= WEDGE_CONFIRM_MS; i++) {
		if (pthread_spin_trylock(l) == 0) {
			pthread_spin_unlock(l);
			return 0;
		}
		struct timespec ms = {0, 1000000};
		nanosleep(&ms, NULL);
	}
	return 1;
}

int fab_shm_unwedge(struct fab_ep *e)
{
	if (!e->shm_name[0] || fi_version() < FI_VERSION(1, 17) ||
	    fi_version() >= FI_VERSION(1, 18))
		return 0;
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	int released = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long start, end;
		char perms[8];
		int name_at = 0, pid;
		if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &start, &end, perms, &name_at) < 3 ||
		    !name_at || strncmp(line + name_at, "/dev/shm/" SHM_PREFIX, 14) != 0 ||
		    perms[3] != 's' || end - start < SMR117_LOCK_OFF + sizeof(pthread_spinlock_t))
			continue;
		const char *name = line + name_at + strlen("/dev/shm/");
		if (sscanf(name, SHM_PREFIX "%d_", &pid) != 1)
			continue;
		/* Ours, or a dead peer's; and laid out as 1.17 lays it out. */
		int ours = strncmp(name, e->shm_name, strlen(e->shm_name)) == 0;
		if (!ours && !(kill(pid, 0) == -1 && errno == ESRCH))
			continue;
		const uint8_t *r = (const uint8_t *)start;
		int rpid;
		memcpy(&rpid, r + SMR117_PID_OFF, sizeof(rpid));
		if (r[0] != SMR117_VERSION || rpid != pid)
			continue;
		pthread_spinlock_t *l = (pthread_spinlock_t *)(start + SMR117_LOCK_OFF);
		if (lock_stuck(l)) {
			pthread_spin_unlock(l);
			log_warn("shm: released the lock of region %.*s, left held by a dead peer",
				 (int)strcspn(name, "\n"), name);
			released++;
		}
	}
	fclose(f);
	return released;
}

static int do_open(struct fab_ep **out, const struct fab_open_args *a);
/*
 * Serialises endpoint creation (and the shm sweep and naming in it) per
 * process: libfabric 1.17's shm fails fi_enable() with EBUSY now and then
 * when two threads open endpoints at once. Opening is rare; no round trip
 * to a peer happens under it.
 */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;

int fab_open(struct fab_ep **out, const struct fab_open_args *a)
{
	if (lib_load())
		return -ELIBACC;
	pthread_mutex_lock(&open_lock);
	int ret = do_open(out, a);
	pthread_mutex_unlock(&open_lock);
	return ret;
}

static int do_open(struct fab_ep **out, const struct fab_open_args *a)
{
	/*
	 * A reply must not overtake the RMA data it announces. Ask for
	 * send-after-write ordering; without it, writes complete only once
	 * the data is visible (FI_DELIVERY_COMPLETE). shm is exempt: each
	 * peer's commands go through one queue in order, and asking it for
	 * FI_ORDER_SAW selects a path that stalls after a peer goes away.
	 */
	int want_saw = strcmp(a->provider, "shm") != 0;
	struct fab_ep *e = calloc(1, sizeof(*e));
	struct fi_info *hints = make_hints(a->provider, a->domain, a->thread_safe, want_saw);
	int ret;

	if (e)
		log_rl_init(&e->peer_rl, LOG_RL_BURST, LOG_RL_INTERVAL_MS);
	if (!e || !hints) {
		ret = -ENOMEM;
		goto err;
	}
	char shm_name[64];
	const char *node = a->node, *service = a->node ? "0" : NULL;
	if (strcmp(a->provider, "shm") == 0) {
		/* Our own region name: see shm_sweep(). */
		shm_sweep();
		uint32_t r;
		if (getrandom(&r, sizeof(r), 0) != sizeof(r))
			r = (uint32_t)time(NULL);
		snprintf(shm_name, sizeof(shm_name), "%s%d_%08x_%lx", SHM_PREFIX, (int)getpid(), r,
			 pidns_ino());
		snprintf(e->shm_name, sizeof(e->shm_name), "%s", shm_name);
		node = shm_name;
		service = NULL;
	}
	ret = fi_getinfo(FI_VERSION(1, 9), node, service, node ? FI_SOURCE : 0, hints, &e->info);
	if (ret == -FI_ENODATA && want_saw) {
		/* No send-after-write ordering here (efa's SRD, for one). */
		hints->tx_attr->msg_order = FI_ORDER_SAS;
		e->write_flags = FI_DELIVERY_COMPLETE;
		ret = fi_getinfo(FI_VERSION(1, 9), node, service, node ? FI_SOURCE : 0, hints,
				 &e->info);
	}
	if (ret) {
		log_error("fi_getinfo(provider %s%s%s): %s", a->provider, a->node ? ", node " : "",
			  a->node ? a->node : "", fi_strerror(-ret));
		ret = ret == -FI_ENODATA ? -ENODEV : fail("fi_getinfo", ret);
		goto err;
	}
	snprintf(e->prov, sizeof(e->prov), "%s", e->info->fabric_attr->prov_name);
	log_info("%s: mr_mode 0x%x, replies follow RMA data by %s", e->prov,
		 (unsigned)e->info->domain_attr->mr_mode,
		 e->write_flags ? "FI_DELIVERY_COMPLETE"
		 : want_saw	? "FI_ORDER_SAW"
				: "its in-order command queue");
	ret = fi_fabric(e->info->fabric_attr, &e->fabric, NULL);
	if (ret) {
		ret = fail("fi_fabric", ret);
		goto err;
	}
	ret = fi_domain(e->fabric, e->info, &e->domain, NULL);
	if (ret) {
		ret = fail("fi_domain", ret);
		goto err;
	}
	struct fi_av_attr av_attr = {.type = FI_AV_TABLE};
	ret = fi_av_open(e->domain, &av_attr, &e->av, NULL);
	if (ret) {
		ret = fail("fi_av_open", ret);
		goto err;
	}
	/*
	 * No wait object: with manual progress, blocking on one is unreliable
	 * across providers (tcp;ofi_rxm's fd does not fire for data that needs
	 * progress first). Idle callers nap in fab_poll instead.
	 */
	struct fi_cq_attr cq_attr = {
	    .format = FI_CQ_FORMAT_DATA, .size = a->cq_size, .wait_obj = FI_WAIT_NONE};
	ret = fi_cq_open(e->domain, &cq_attr, &e->cq, NULL);
	if (ret) {
		ret = fail("fi_cq_open", ret);
		goto err;
	}
	ret = fi_endpoint(e->domain, e->info, &e->ep, NULL);
	if (ret) {
		ret = fail("fi_endpoint", ret);
		goto err;
	}
	ret = fi_ep_bind(e->ep, &e->av->fid, 0);
	if (ret) {
		ret = fail("fi_ep_bind(av)", ret);
		goto err;
	}
	ret = fi_ep_bind(e->ep, &e->cq->fid, FI_TRANSMIT | FI_RECV);
	if (ret) {
		ret = fail("fi_ep_bind(cq)", ret);
		goto err;
	}
	ret = fi_enable(e->ep);
	if (ret) {
		ret = fail("fi_enable", ret);
		goto err;
	}
	fi_freeinfo(hints);
	*out = e;
	return 0;
err:
	if (hints)
		fi_freeinfo(hints);
	if (e)
		fab_close(e);
	return ret;
}

void fab_close(struct fab_ep *e)
{
	if (!e)
		return;
	if (e->ep)
		fi_close(&e->ep->fid);
	if (e->cq)
		fi_close(&e->cq->fid);
	if (e->av)
		fi_close(&e->av->fid);
	if (e->domain)
		fi_close(&e->domain->fid);
	if (e->fabric)
		fi_close(&e->fabric->fid);
	if (e->info)
		fi_freeinfo(e->info);
	log_rl_flush(&e->peer_rl);
	log_rl_destroy(&e->peer_rl);
	free(e);
}

const char *fab_provider(const struct fab_ep *e)
{
	return e->prov;
}

const char *fab_domain(const struct fab_ep *e)
{
	const char *d = e->info->domain_attr ? e->info->domain_attr->name : NULL;
	return d ? d : "";
}

size_t fab_iov_limit(const struct fab_ep *e)
{
	size_t n = e->info->tx_attr->iov_limit;
	return n ? n : 1;
}

size_t fab_max_msg_size(const struct fab_ep *e)
{
	size_t n = e->info->ep_attr->max_msg_size;
	return n ? n : (1u << 20);
}

size_t fab_inject_size(const struct fab_ep *e)
{
	return e->info->tx_attr->inject_size;
}

uint64_t fab_mr_mode(const struct fab_ep *e)
{
	return (uint64_t)e->info->domain_attr->mr_mode;
}

int fab_getname(struct fab_ep *e, void *buf, size_t *len)
{
	int ret = fi_getname(&e->ep->fid, buf, len);
	return ret ? fail("fi_getname", ret) : 0;
}

/*
 * Whether len bytes at addr (zero-padded to FAB_NAME_MAX + 1) can be an
 * address of e's format. The providers trust the bytes they are given: a
 * socket address of an unknown family inserted into tcp's AV made every
 * later insert on that endpoint fail, locking every new client out.
 */
static const char *addr_refused(struct fab_ep *e, const uint8_t *addr, size_t len)
{
	uint32_t fmt = e->info->addr_format;
	if (fmt == FI_SOCKADDR || fmt == FI_SOCKADDR_IN || fmt == FI_SOCKADDR_IN6) {
		sa_family_t fam;
		if (len < sizeof(fam))
			return "shorter than a socket address";
		memcpy(&fam, addr, sizeof(fam));
		if (fam == AF_INET && fmt != FI_SOCKADDR_IN6)
			return len < sizeof(struct sockaddr_in) ? "a short IPv4 address" : NULL;
		if (fam == AF_INET6 && fmt != FI_SOCKADDR_IN)
			return len < sizeof(struct sockaddr_in6) ? "a short IPv6 address" : NULL;
		return "not a socket address of this endpoint's family";
	}
	if (fmt == FI_ADDR_STR)
		return addr[0] && memchr(addr, 0, len + 1) ? NULL : "not an address string";
	/* fixed-size formats (verbs' IB, efa, ...): the size of our own name */
	uint8_t own[FAB_NAME_MAX];
	size_t own_len = sizeof(own);
	if (fi_getname(&e->ep->fid, own, &own_len) || own_len != len)
		return "not of this provider's address size";
	return NULL;
}

int fab_av_insert(struct fab_ep *e, const void *name, size_t len, fab_addr_t *out)
{
	/* one byte more than the longest address: a string format stays terminated */
	uint8_t addr[FAB_NAME_MAX + 1] = {0};
	fi_addr_t a = FI_ADDR_UNSPEC;
	if (len == 0 || len > FAB_NAME_MAX) {
		log_ratelimited(&e->peer_rl, LOG_LVL_ERROR, "a peer address of %zu bytes", len);
		return -EINVAL;
	}
	memcpy(addr, name, len);
	const char *why = addr_refused(e, addr, len);
	if (why) {
		log_ratelimited(&e->peer_rl, LOG_LVL_ERROR,
				"a peer address of %zu bytes refused: %s", len, why);
		return -EINVAL;
	}
	int ret = fi_av_insert(e->av, addr, 1, &a, 0, NULL);
	if (ret != 1) {
		log_ratelimited(&e->peer_rl, LOG_LVL_ERROR, "fi_av_insert: %s",
				ret < 0 ? fi_strerror(-ret) : "address not inserted");
		return -EINVAL;
	}
	*out = a;
	return 0;
}

int fab_av_remove(struct fab_ep *e, fab_addr_t addr)
{
	fi_addr_t a = addr;
	int ret = fi_av_remove(e->av, &a, 1, 0);
	return ret ? fail("fi_av_remove", ret) : 0;
}

static uint64_t access_bits(unsigned acc)
{
	uint64_t r = 0;
	if (acc & FAB_ACC_SEND)
		r |= FI_SEND;
	if (acc & FAB_ACC_RECV)
		r |= FI_RECV;
	if (acc & FAB_ACC_WRITE)
		r |= FI_WRITE;
	if (acc & FAB_ACC_READ)
		r |= FI_READ;
	if (acc & FAB_ACC_REMOTE_WRITE)
		r |= FI_REMOTE_WRITE;
	if (acc & FAB_ACC_REMOTE_READ)
		r |= FI_REMOTE_READ;
	return r;
}

int fab_mr_reg(struct fab_ep *e, void *buf, size_t len, unsigned access, struct fab_mr **out)
{
	static uint64_t next_key = 1;
	struct fab_mr *m = calloc(1, sizeof(*m));
	uint64_t mode = fab_mr_mode(e);
	int ret;

	if (!m)
		return -ENOMEM;
	m->ep = e;
	m->buf = buf;
	/* Without FI_MR_PROV_KEY we choose keys; they must be unique per domain. */
	uint64_t key =
	    (mode & FI_MR_PROV_KEY) ? 0 : __atomic_fetch_add(&next_key, 1, __ATOMIC_RELAXED);
	ret = fi_mr_reg(e->domain, buf, len, access_bits(access), 0, key, 0, &m->mr, NULL);
	if (ret) {
		free(m);
		return fail("fi_mr_reg", ret);
	}
	if (mode & FI_MR_ENDPOINT) {
		ret = fi_mr_bind(m->mr, &e->ep->fid, 0);
		if (!ret)
			ret = fi_mr_enable(m->mr);
		if (ret) {
			fi_close(&m->mr->fid);
			free(m);
			return fail("fi_mr_bind/enable", ret);
		}
	}
	*out = m;
	return 0;
}

void fab_mr_close(struct fab_mr *m)
{
	if (!m)
		return;
	int ret = fi_close(&m->mr->fid);
	if (ret)
		log_error("fi_close(mr): %s", fi_strerror(-ret));
	free(m);
}

void *fab_mr_desc(const struct fab_mr *m)
{
	return fi_mr_desc(m->mr);
}

uint64_t fab_mr_key(const struct fab_mr *m)
{
	return fi_mr_key(m->mr);
}

uint64_t fab_mr_remote_base(const struct fab_mr *m)
{
	return (fab_mr_mode(m->ep) & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)m->buf : 0;
}

static int post_ret(const char *call, ssize_t ret)
{
	if (ret == 0)
		return 0;
	if (ret == -FI_EAGAIN)
		return -EAGAIN;
	return fail(call, (int)ret);
}

int fab_post_recv(struct fab_ep *e, void *buf, size_t len, void *desc, struct fab_ctx *ctx)
{
	return post_ret("fi_recv", fi_recv(e->ep, buf, len, desc, FI_ADDR_UNSPEC, ctx));
}

int fab_post_send(struct fab_ep *e, const void *buf, size_t len, void *desc, fab_addr_t dest,
		  struct fab_ctx *ctx)
{
	return post_ret("fi_send", fi_send(e->ep, buf, len, desc, dest, ctx));
}

static int post_rma(struct fab_ep *e, int write, const struct iovec *iov, void **desc, size_t n,
		    fab_addr_t peer, uint64_t raddr, uint64_t rkey, struct fab_ctx *ctx)
{
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += iov[i].iov_len;
	struct fi_rma_iov riov = {.addr = raddr, .len = total, .key = rkey};
	struct fi_msg_rma msg = {.msg_iov = iov,
				 .desc = desc,
				 .iov_count = n,
				 .addr = peer,
				 .rma_iov = &riov,
				 .rma_iov_count = 1,
				 .context = ctx};
	if (write)
		return post_ret("fi_writemsg",
				fi_writemsg(e->ep, &msg, FI_COMPLETION | e->write_flags));
	return post_ret("fi_readmsg", fi_readmsg(e->ep, &msg, FI_COMPLETION));
}

int fab_post_write(struct fab_ep *e, const struct iovec *iov, void **desc, size_t n,
		   fab_addr_t dest, uint64_t raddr, uint64_t rkey, struct fab_ctx *ctx)
{
	return post_rma(e, 1, iov, desc, n, dest, raddr, rkey, ctx);
}

int fab_post_read(struct fab_ep *e, const struct iovec *iov, void **desc, size_t n, fab_addr_t src,
		  uint64_t raddr, uint64_t rkey, struct fab_ctx *ctx)
{
	return post_rma(e, 0, iov, desc, n, src, raddr, rkey, ctx);
}

static int read_error(struct fab_ep *e, struct fab_cqe *out)
{
	struct fi_cq_err_entry err = {0};
	ssize_t r = fi_cq_readerr(e->cq, &err, 0);
	if (r < 0)
		return r == -FI_EAGAIN ? 0 : fail("fi_cq_readerr", (int)r);
	char buf[256] = "";
	const char *detail = fi_cq_strerror(e->cq, err.prov_errno, err.err_data, buf, sizeof(buf));
	if (!err.op_context) {
		/*
		 * Nothing of ours to complete: libfabric 1.17's shm reports some
		 * failures of a peer that vanished mid-RMA with no context.
		 */
		log_ratelimited(&e->peer_rl, LOG_LVL_WARN,
				"completion error of no posted operation, dropped: %s (%s)",
				fi_strerror(err.err), detail ? detail : "");
		return 0;
	}
	log_ratelimited(&e->peer_rl, LOG_LVL_WARN, "completion error: %s (%s)",
			fi_strerror(err.err), detail ? detail : "");
	out->ctx = err.op_context;
	out->flags = err.flags;
	out->len = 0;
	out->err = err.err ? -err.err : -EIO;
	if (out->err == -FI_ECANCELED)
		out->err = -ECANCELED;
	return 1;
}

int fab_poll(struct fab_ep *e, struct fab_cqe *out, int max, int nap_us)
{
	struct fi_cq_data_entry ent[16];
	if (max > 16)
		max = 16;
	ssize_t r = fi_cq_read(e->cq, ent, (size_t)max);
	if (r == -FI_EAGAIN && nap_us > 0) {
		struct timespec ts = {nap_us / 1000000, (long)(nap_us % 1000000) * 1000};
		nanosleep(&ts, NULL);
		r = fi_cq_read(e->cq, ent, (size_t)max);
	}
	if (r == -FI_EAGAIN || r == -FI_ETIMEDOUT || r == -FI_EINTR || r == -FI_ECANCELED)
		return 0;
	if (r == -FI_EAVAIL)
		return read_error(e, out);
	if (r < 0)
		return fail("fi_cq_read", (int)r);
	for (ssize_t i = 0; i < r; i++) {
		out[i].ctx = ent[i].op_context;
		out[i].flags = ent[i].flags;
		out[i].len = ent[i].len;
		out[i].err = 0;
	}
	return (int)r;
}

int fab_provider_available(const char *prov)
{
	if (lib_load())
		return 0;
	struct fi_info *hints = make_hints(prov, NULL, 0, 0), *info = NULL;
	if (!hints)
		return 0;
	int ret = fi_getinfo(FI_VERSION(1, 9), NULL, NULL, 0, hints, &info);
	fi_freeinfo(hints);
	if (info)
		fi_freeinfo(info);
	return ret == 0;
}

int fab_auto_providers(const char **names, int max)
{
	static const char *order[] = {"verbs", "efa", "tcp"};
	int n = 0;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]) && n < max; i++) {
		if (fab_provider_available(order[i])) {
			names[n++] = order[i];
			break;
		}
	}
	if (n < max && fab_provider_available("shm"))
		names[n++] = "shm";
	return n;
}

int fab_probe(FILE *out, const char *configured)
{
	if (lib_load()) {
		fprintf(out, "libfabric: cannot load " FAB_LIBFABRIC " (see the error above)\n");
		return -ELIBACC;
	}
	struct fi_info *hints = make_hints(NULL, NULL, 0, 0), *info = NULL;
	fprintf(out, "libfabric %u.%u, providers offering FI_EP_RDM with FI_MSG|FI_RMA:\n",
		FI_MAJOR(fi_version()), FI_MINOR(fi_version()));
	int ret = hints ? fi_getinfo(FI_VERSION(1, 9), NULL, NULL, 0, hints, &info) : -FI_ENOMEM;
	if (ret)
		fprintf(out, "  (none: %s)\n", fi_strerror(-ret));
	for (struct fi_info *i = info; i; i = i->next)
		fprintf(out, "  %-16s domain %-12s fabric %-18s mr_mode 0x%x max_msg %zu iov %zu\n",
			i->fabric_attr->prov_name, i->domain_attr->name, i->fabric_attr->name,
			(unsigned)i->domain_attr->mr_mode, i->ep_attr->max_msg_size,
			i->tx_attr->iov_limit);
	if (info)
		fi_freeinfo(info);
	if (hints)
		fi_freeinfo(hints);

	const char *names[4];
	int n = fab_auto_providers(names, 4);
	fprintf(out, "configured provider: %s\n", configured);
	fprintf(out, "auto would serve on:");
	for (int i = 0; i < n; i++)
		fprintf(out, " %s", names[i]);
	fprintf(out, "\nreason: ");
	if (n == 0)
		fprintf(out, "no usable provider found\n");
	else if (strcmp(names[0], "verbs") == 0 || strcmp(names[0], "efa") == 0)
		fprintf(out,
			"%s is an RDMA NIC (kernel bypass, zero-copy RMA) and is preferred for "
			"remote clients; shm serves clients on this host\n",
			names[0]);
	else
		fprintf(out, "no RDMA NIC (verbs/efa) found; tcp serves remote clients and shm "
			     "(shared memory, cross-memory attach) serves clients on this host\n");
	return 0;
}
