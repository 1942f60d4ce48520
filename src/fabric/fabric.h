/*
 * fabric: every fi_* call of kvfs lives here.
 *
 * A fab_ep is one reliable-datagram endpoint (FI_EP_RDM, FI_MSG | FI_RMA)
 * with its own fabric, domain, address vector and completion queue. We ask
 * for the mr_mode bits real RDMA NICs need (FI_MR_LOCAL | FI_MR_VIRT_ADDR |
 * FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT), read back what the
 * provider granted, and always pass descriptors for local buffers, so the
 * verbs/efa code path is the one that runs on tcp and shm too.
 *
 * Threading: FI_THREAD_DOMAIN (the caller serialises all calls on one fab_ep,
 * as kvfs-server's one service thread per endpoint does), or FI_THREAD_SAFE
 * when asked (libkvfs: any application thread posts and polls).
 * Progress is manual: completions are read by fab_poll, which also drives
 * the provider. Posting calls return -EAGAIN when the provider's queues are
 * full; the caller polls and retries.
 *
 * libfabric.so.1 is loaded (dlopen) by the first fab_open, fab_probe or
 * fab_provider_available, not at program start: a process that never uses
 * the fabric never loads it. When it cannot be loaded, those fail with
 * -ELIBACC (fab_provider_available: 0) and log "cannot load libfabric.so.1:"
 * and why, once.
 */
#ifndef KVFS_FABRIC_H
#define KVFS_FABRIC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/uio.h>

typedef uint64_t fab_addr_t;
#define FAB_ADDR_UNSPEC ((fab_addr_t)-1)
#define FAB_NAME_MAX	256

struct fab_ep;
struct fab_mr;

struct fab_open_args {
	const char *provider; /* "verbs", "efa", "tcp", "shm" (resolved, not "auto") */
	const char *domain;   /* domain (NIC) name or NULL = first offered */
	const char *node;     /* local address to bind (tcp, verbs), NULL = provider default */
	size_t cq_size;	      /* 0 = provider default */
	int thread_safe;      /* 1 = FI_THREAD_SAFE: calls may come from any thread at once */
};

/* Completion as fab_poll reports it. */
struct fab_cqe {
	void *ctx;	/* the ctx given when posting */
	uint64_t flags; /* FI_SEND, FI_RECV, FI_WRITE, FI_READ ... */
	size_t len;	/* received bytes (FI_RECV) */
	int err;	/* 0 or negative errno */
};

/* The context every posted operation carries; embed it first in your struct. */
struct fab_ctx {
	uint64_t opaque[8]; /* room for struct fi_context2 (FI_CONTEXT/FI_CONTEXT2 modes) */
};

int fab_open(struct fab_ep **out, const struct fab_open_args *a);
void fab_close(struct fab_ep *ep);

/* The provider actually opened ("tcp;ofi_rxm", "shm", ...) and limits. */
const char *fab_provider(const struct fab_ep *ep);
size_t fab_iov_limit(const struct fab_ep *ep);	  /* local iov entries per RMA */
size_t fab_max_msg_size(const struct fab_ep *ep); /* largest single message/RMA */
size_t fab_inject_size(const struct fab_ep *ep);
uint64_t fab_mr_mode(const struct fab_ep *ep);

/* Our endpoint's address (fi_getname). *len in: buffer size; out: used. */
int fab_getname(struct fab_ep *ep, void *buf, size_t *len);
/*
 * Add a peer's address, len bytes as the peer's fab_getname gave them (at
 * most FAB_NAME_MAX). The provider reads an address of its own format's
 * size: the bytes are copied into a zeroed buffer of FAB_NAME_MAX first, so
 * a short address from the wire is never completed with whatever memory
 * follows it. -EINVAL: len 0 or too long, or the provider refused it.
 */
int fab_av_insert(struct fab_ep *ep, const void *name, size_t len, fab_addr_t *out);
int fab_av_remove(struct fab_ep *ep, fab_addr_t addr);

/*
 * Register [buf, buf+len). access: FAB_ACC_* bits. Binds to the endpoint when
 * the provider wants FI_MR_ENDPOINT.
 */
#define FAB_ACC_SEND	     (1u << 0) /* source of our sends */
#define FAB_ACC_RECV	     (1u << 1) /* target of our receives */
#define FAB_ACC_WRITE	     (1u << 2) /* source of our RMA writes */
#define FAB_ACC_READ	     (1u << 3) /* target of our RMA reads */
#define FAB_ACC_REMOTE_WRITE (1u << 4) /* peers may RMA-write into it */
#define FAB_ACC_REMOTE_READ  (1u << 5) /* peers may RMA-read from it */
int fab_mr_reg(struct fab_ep *ep, void *buf, size_t len, unsigned access, struct fab_mr **out);
void fab_mr_close(struct fab_mr *mr);
void *fab_mr_desc(const struct fab_mr *mr);
uint64_t fab_mr_key(const struct fab_mr *mr);
/* The address a peer must use for byte 0 of the region (virtual address or 0). */
uint64_t fab_mr_remote_base(const struct fab_mr *mr);

int fab_post_recv(struct fab_ep *ep, void *buf, size_t len, void *desc, struct fab_ctx *ctx);
int fab_post_send(struct fab_ep *ep, const void *buf, size_t len, void *desc, fab_addr_t dest,
		  struct fab_ctx *ctx);
/*
 * RMA write local iov -> peer [raddr, raddr + total), or read peer -> local iov.
 * n <= fab_iov_limit(), total <= fab_max_msg_size(). A message sent after a
 * write's completion reaches the peer after the written data: the endpoint
 * has send-after-write ordering, or else writes use FI_DELIVERY_COMPLETE.
 */
int fab_post_write(struct fab_ep *ep, const struct iovec *iov, void **desc, size_t n,
		   fab_addr_t dest, uint64_t raddr, uint64_t rkey, struct fab_ctx *ctx);
int fab_post_read(struct fab_ep *ep, const struct iovec *iov, void **desc, size_t n, fab_addr_t src,
		  uint64_t raddr, uint64_t rkey, struct fab_ctx *ctx);

/*
 * Read up to max completions, driving progress. When nothing is ready and
 * nap_us > 0, sleep that long and look once more (idle callers back off
 * instead of spinning a core). Returns the count (0 = none), or a negative
 * errno for a failure of the CQ itself. Failed operations come back as
 * entries with err set (logged with fi_cq_strerror); every entry carries the
 * ctx it was posted with (an error of no posted operation is logged and
 * dropped).
 */
int fab_poll(struct fab_ep *ep, struct fab_cqe *out, int max, int nap_us);

/*
 * shm with libfabric 1.17 only: a peer killed while it held the lock of a
 * shared-memory region leaves fab_poll spinning forever. For a caller that
 * knows ep's peer is dead and a poll has not returned for long: release
 * such a lock (ep's own region, or a dead process's) if it stays held.
 * Returns how many were released; 0 on other providers and versions.
 */
int fab_shm_unwedge(struct fab_ep *ep);

/* Providers usable for kvfs here (FI_EP_RDM with FI_MSG|FI_RMA). */
int fab_provider_available(const char *prov);
/*
 * Print what libfabric offers and what "auto" picks and why. Returns 0, or
 * -ELIBACC when libfabric cannot be loaded.
 */
int fab_probe(FILE *out, const char *configured);
/*
 * Resolve "auto" for a server: verbs or efa when present, plus shm for
 * same-host clients, else tcp + shm. Fills names (at most max), returns count.
 */
int fab_auto_providers(const char **names, int max);

#endif
