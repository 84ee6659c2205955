/* SPDX-License-Identifier: MIT */
/*
 * crc32c.c - CRC32C (Castagnoli), as in iSCSI, ext4 and most logs.
 *
 * ISA-L's crc32_iscsi() picks the fastest code for the CPU at run time (SSE4.2 crc32 with
 * carry-less folding on x86-64, the CRC instructions on arm64); it takes the running value
 * without the usual inversion, so shmwal_crc32c() inverts on the way in and out.
 *
 * Records are mostly small, and there the call into ISA-L (its dispatch, its alignment and
 * folding set-up) costs more than the checksum: up to SHORT_MAX bytes, an x86-64 CPU with
 * SSE4.2 runs the crc32 instruction 8 bytes at a time inline instead. Both compute the same
 * function (tests/test_format.c checks them against each other at every length).
 */
#include <isa-l/crc.h>
#include <limits.h>
#include <string.h>

#include "shmwal.h"
#include "shmwal_format.h"
#include "common.h"

#define SHORT_MAX 256

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t crc_short(uint32_t c, const unsigned char *p,
							     size_t len)
{
	uint64_t c64 = c;

	for (; len >= 8; p += 8, len -= 8) {
		uint64_t v;

		memcpy(&v, p, sizeof(v));
		c64 = _mm_crc32_u64(c64, v);
	}
	c = (uint32_t)c64;
	if (len >= 4) {
		uint32_t v;

		memcpy(&v, p, sizeof(v));
		c = _mm_crc32_u32(c, v);
		p += 4;
		len -= 4;
	}
	while (len--)
		c = _mm_crc32_u8(c, *p++);
	return c;
}

/* crc32c_copy()'s short path: each word is loaded once, then checksummed and stored */
__attribute__((target("sse4.2"))) static uint32_t copy_short(uint32_t c, unsigned char *d,
							      const unsigned char *p, size_t len)
{
	uint64_t c64 = c;

	for (; len >= 8; p += 8, d += 8, len -= 8) {
		uint64_t v;

		memcpy(&v, p, sizeof(v));
		c64 = _mm_crc32_u64(c64, v);
		memcpy(d, &v, sizeof(v));
	}
	c = (uint32_t)c64;
	for (; len; p++, d++, len--) {
		unsigned char v = *p;

		c = _mm_crc32_u8(c, v);
		*d = v;
	}
	return c;
}

/* crc32c_frame_head()'s 24 bytes, from registers: nothing is read back from memory */
__attribute__((target("sse4.2"))) static uint32_t head_sse42(uint32_t len, uint32_t type_key,
							      uint64_t lsn, uint64_t ts)
{
	uint32_t c = _mm_crc32_u32(~0u, len);

	c = _mm_crc32_u32(c, type_key);
	return (uint32_t)_mm_crc32_u64(_mm_crc32_u64(c, lsn), ts);
}

static int have_sse42(void)
{
	static int have = -1; /* racy but idempotent: every thread computes the same value */
	int h = __atomic_load_n(&have, __ATOMIC_RELAXED);

	if (h < 0) {
		h = __builtin_cpu_supports("sse4.2") ? 1 : 0;
		__atomic_store_n(&have, h, __ATOMIC_RELAXED);
	}
	return h;
}
#endif

uint32_t crc32c_frame_head(uint32_t len, uint16_t type, uint16_t key_len, uint64_t lsn,
			   uint64_t timestamp_ns)
{
#if defined(__x86_64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (have_sse42())
		return head_sse42(len, (uint32_t)type | (uint32_t)key_len << 16, lsn, timestamp_ns);
#endif
	unsigned char b[24];

	memcpy(b, &len, 4);
	memcpy(b + 4, &type, 2);
	memcpy(b + 6, &key_len, 2);
	memcpy(b + 8, &lsn, 8);
	memcpy(b + 16, &timestamp_ns, 8);
	return crc32c_raw(~0u, b, sizeof(b));
}

#if defined(__x86_64__)
static inline uint64_t ld64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* A frame's bytes after the four chains: fewer than 8 when the four frames have one length
 * (inline, no call), else crc32c_raw. */
__attribute__((target("sse4.2"))) static inline uint32_t
tail_sse42(uint32_t c, const unsigned char *p, uint32_t n)
{
	if (n >= 8)
		return crc32c_raw(c, p, n);
	if (n & 4) {
		uint32_t v;

		memcpy(&v, p, sizeof(v));
		c = _mm_crc32_u32(c, v);
		p += 4;
	}
	if (n & 2) {
		uint16_t v;

		memcpy(&v, p, sizeof(v));
		c = _mm_crc32_u16(c, v);
		p += 2;
	}
	if (n & 1)
		c = _mm_crc32_u8(c, *p);
	return c;
}

/*
 * Four frames' checksums at once. One crc32 instruction takes 3 cycles before the next of the
 * same chain can start, but a new one can start every cycle: four independent chains run in
 * about the time of one (the flusher checks every committed frame: 5.5-6.3 instead of 9.1-9.5
 * ns per 96-byte frame in bench/micro's runs).
 */
__attribute__((target("sse4.2"))) static void frames4_sse42(const unsigned char *const *p,
							     const uint32_t *len, uint32_t *out)
{
	uint64_t c0 = _mm_crc32_u32(~0u, len[0]), c1 = _mm_crc32_u32(~0u, len[1]);
	uint64_t c2 = _mm_crc32_u32(~0u, len[2]), c3 = _mm_crc32_u32(~0u, len[3]);
	uint32_t words = UINT32_MAX, i, off;

	for (i = 0; i < 4; i++)
		if ((len[i] - 16) / 8 < words)
			words = (len[i] - 16) / 8;
	c0 = _mm_crc32_u32((uint32_t)c0, (uint32_t)ld64(p[0] + 12));
	c1 = _mm_crc32_u32((uint32_t)c1, (uint32_t)ld64(p[1] + 12));
	c2 = _mm_crc32_u32((uint32_t)c2, (uint32_t)ld64(p[2] + 12));
	c3 = _mm_crc32_u32((uint32_t)c3, (uint32_t)ld64(p[3] + 12));
	for (off = 16; off < 16 + words * 8; off += 8) {
		c0 = _mm_crc32_u64(c0, ld64(p[0] + off));
		c1 = _mm_crc32_u64(c1, ld64(p[1] + off));
		c2 = _mm_crc32_u64(c2, ld64(p[2] + off));
		c3 = _mm_crc32_u64(c3, ld64(p[3] + off));
	}
	out[0] = (uint32_t)c0;
	out[1] = (uint32_t)c1;
	out[2] = (uint32_t)c2;
	out[3] = (uint32_t)c3;
	for (i = 0; i < 4; i++)
		out[i] = ~tail_sse42(out[i], p[i] + off, len[i] > off ? len[i] - off : 0);
}
#endif

void crc32c_frames4(const void *const *frames, const uint32_t *len, uint32_t *out)
{
#if defined(__x86_64__)
	/* Past SHORT_MAX, ISA-L's folding (carry-less multiplies over wide registers) is faster
	 * than four crc32 chains: 1 KiB frames took four times as long this way. */
	if (have_sse42() && len[0] <= SHORT_MAX && len[1] <= SHORT_MAX && len[2] <= SHORT_MAX &&
	    len[3] <= SHORT_MAX) {
		frames4_sse42((const unsigned char *const *)frames, len, out);
		return;
	}
#endif
	for (int i = 0; i < 4; i++)
		out[i] = shmwal_frame_crc(frames[i], len[i]);
}

uint32_t crc32c_copy(uint32_t c, void *dst, const void *src, size_t len)
{
#if defined(__x86_64__)
	if (len <= SHORT_MAX && have_sse42())
		return copy_short(c, dst, src, len);
#endif
	memcpy(dst, src, len);
	return crc32c_raw(c, dst, len);
}

uint32_t crc32c_raw(uint32_t c, const void *buf, size_t len)
{
	const unsigned char *p = buf;

#if defined(__x86_64__)
	if (len <= SHORT_MAX && have_sse42())
		return crc_short(c, p, len);
#endif
	while (len > (size_t)INT_MAX) {
		c = crc32_iscsi((unsigned char *)p, INT_MAX, c);
		p += INT_MAX;
		len -= (size_t)INT_MAX;
	}
	return crc32_iscsi((unsigned char *)p, (int)len, c);
}

uint32_t crc32c_isal(uint32_t c, const void *buf, size_t len)
{
	return crc32_iscsi((unsigned char *)buf, (int)len, c);
}

SHMWAL_EXPORT uint32_t shmwal_crc32c(uint32_t crc, const void *buf, size_t len)
{
	return ~crc32c_raw(~crc, buf, len);
}
