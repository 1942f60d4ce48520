/*
 * convert: libkvfs's edge between its public structs (include/kvfs/kvfs.h)
 * and the protocol's (src/common/proto.h). The public values are promises to
 * callers, the protocol's to servers; the two sets are kept apart and the
 * compiler checks here that each public value still equals its protocol one,
 * so a set-mask or sentinel passes through unchanged. Every attribute, setattr
 * and stats record crossing between the two goes through these helpers.
 */
#ifndef KVFS_CLIENT_CONVERT_H
#define KVFS_CLIENT_CONVERT_H

#include <string.h>

#include "common/proto.h"
#include "kvfs/kvfs.h"

_Static_assert(KVFS_MAX_KEY == PROTO_MAX_KEY, "KVFS_MAX_KEY is the protocol's");
_Static_assert(KVFS_ID_UNSET == PROTO_ID_UNSET, "KVFS_ID_UNSET is the protocol's");
_Static_assert(KVFS_MODE_UNSET == PROTO_MODE_UNSET, "KVFS_MODE_UNSET is the protocol's");
_Static_assert(KVFS_SET_MODE == PROTO_SET_MODE && KVFS_SET_UID == PROTO_SET_UID &&
		   KVFS_SET_GID == PROTO_SET_GID && KVFS_SET_MTIME == PROTO_SET_MTIME &&
		   KVFS_SET_TTL == PROTO_SET_TTL && KVFS_SET_ATIME == PROTO_SET_ATIME,
	       "the KVFS_SET_* bits are the protocol's");
_Static_assert(sizeof(((struct kvfs_stats *)0)->provider) ==
		   sizeof(((struct proto_stats *)0)->provider),
	       "kvfs_stats.provider holds the protocol's");

/* kvfs_attr has proto_attr's fields: a field added to one must be copied here. */
_Static_assert(sizeof(struct kvfs_attr) == sizeof(struct proto_attr),
	       "kvfs_attr and proto_attr have the same fields");
_Static_assert(sizeof(struct kvfs_setattr) == sizeof(struct proto_setattr),
	       "kvfs_setattr and proto_setattr have the same fields");

static inline void attr_from_proto(struct kvfs_attr *out, const struct proto_attr *a)
{
	*out = (struct kvfs_attr){.size = a->size,
				  .version = a->version,
				  .mtime_ns = a->mtime_ns,
				  .atime_ns = a->atime_ns,
				  .ctime_ns = a->ctime_ns,
				  .expiry = a->expiry,
				  .mode = a->mode,
				  .uid = a->uid,
				  .gid = a->gid};
}

/* sa NULL: out is left as it is (a request starts zeroed: nothing set). */
static inline void setattr_to_proto(struct proto_setattr *out, const struct kvfs_setattr *sa)
{
	if (!sa)
		return;
	*out = (struct proto_setattr){.mask = sa->mask,
				      .mode = sa->mode,
				      .uid = sa->uid,
				      .gid = sa->gid,
				      .mtime_ns = sa->mtime_ns,
				      .atime_ns = sa->atime_ns,
				      .ttl = sa->ttl};
}

static inline void stats_from_proto(struct kvfs_stats *out, const struct proto_stats *st)
{
	*out = (struct kvfs_stats){.gets = st->gets,
				   .hits = st->hits,
				   .misses = st->misses,
				   .puts = st->puts,
				   .deletes = st->deletes,
				   .evictions = st->evictions,
				   .expirations = st->expirations,
				   .bytes_in = st->bytes_in,
				   .bytes_out = st->bytes_out,
				   .keys = st->keys,
				   .pool_size = st->pool_size,
				   .pool_used = st->pool_used,
				   .sessions = st->sessions,
				   .uptime_s = st->uptime_s,
				   .dropped_requests = st->dropped_requests,
				   .stalled_sessions = st->stalled_sessions};
	memcpy(out->provider, st->provider, sizeof(out->provider));
}

#endif
