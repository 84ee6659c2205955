/* SPDX-License-Identifier: MIT */
/*
 * crc32c.c - CRC32C (Castagnoli), as in iSCSI, ext4 and most logs.
 *
 * ISA-L's crc32_iscsi() picks the fastest code for the CPU at run time (SSE4.2 crc32 with
 * carry-less folding on x86-64, the CRC instructions on arm64); it takes the running value
 * without the usual inversion, so this wrapper inverts on the way in and out.
 */
#include <isa-l/crc.h>
#include <limits.h>

#include "shmwal.h"
#include "common.h"

SHMWAL_EXPORT uint32_t shmwal_crc32c(uint32_t crc, const void *buf, size_t len)
{
	uint32_t c = ~crc;
	const unsigned char *p = buf;

	while (len > (size_t)INT_MAX) {
		c = crc32_iscsi((unsigned char *)p, INT_MAX, c);
		p += INT_MAX;
		len -= (size_t)INT_MAX;
	}
	c = crc32_iscsi((unsigned char *)p, (int)len, c);
	return ~c;
}
