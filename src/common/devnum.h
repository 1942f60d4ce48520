/*
 * devnum: how a device node's number is stored. The mount keeps fifos,
 * sockets and devices as typed keys, the way it keeps symlinks: the key's
 * mode carries S_IFIFO, S_IFSOCK, S_IFCHR or S_IFBLK and the permission
 * bits. A fifo's or a socket's value is empty. A character or block
 * device's value is its device number, DEVNUM_LEN bytes: the major, then
 * the minor, each an unsigned 32-bit little-endian integer (so a key put
 * by any client with these 8 bytes and such a mode is a device node in the
 * mount). The kernel's FUSE interface carries 32-bit device numbers: a
 * major up to 4095 and a minor up to 2^20 - 1 show as stored (mknod(2)
 * cannot make others there).
 *
 * Header-only, no dependencies: the mount uses it, and any tool may.
 */
#ifndef KVFS_COMMON_DEVNUM_H
#define KVFS_COMMON_DEVNUM_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define DEVNUM_LEN 8

static inline void devnum_encode(uint32_t major, uint32_t minor, unsigned char out[DEVNUM_LEN])
{
	for (int i = 0; i < 4; i++) {
		out[i] = (unsigned char)(major >> (8 * i));
		out[4 + i] = (unsigned char)(minor >> (8 * i));
	}
}

/*
 * The device number in a value of len bytes. Returns 0, or -EINVAL when
 * len is not DEVNUM_LEN (*major and *minor are then 0).
 */
static inline int devnum_decode(const void *buf, size_t len, uint32_t *major, uint32_t *minor)
{
	const unsigned char *b = buf;
	*major = *minor = 0;
	if (len != DEVNUM_LEN)
		return -EINVAL;
	for (int i = 0; i < 4; i++) {
		*major |= (uint32_t)b[i] << (8 * i);
		*minor |= (uint32_t)b[4 + i] << (8 * i);
	}
	return 0;
}

#endif
