/*
 * fuzz.h: what the libFuzzer targets of tests/fuzz share: the check that
 * turns a broken promise of a decoder into a crash libFuzzer records, and
 * the limits a server decodes requests with (its defaults). README "Fuzzing".
 */
#ifndef KVFS_FUZZ_H
#define KVFS_FUZZ_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A decoder's promise (wire.h) broken: abort, which libFuzzer saves as a crash. */
#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__,      \
				#cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* kvfs-server's limits with the default inline threshold (server.c). */
#define FUZZ_INLINE 4096
static const struct wire_limits fuzz_limits = {.max_key = PROTO_MAX_KEY,
					       .max_value = 1ull << 30,
					       .inline_threshold = FUZZ_INLINE,
					       .msg_size = 16384};

#endif
