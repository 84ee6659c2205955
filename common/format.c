/* SPDX-License-Identifier: MIT */
/*
 * format.c - frame and segment-header codecs. The formats are defined in
 * include/shmwal_format.h; this file only implements them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "shmwal.h"
#include "shmwal_format.h"
#include "common.h"
#include "frame_check.h"

_Static_assert(sizeof(struct shmwal_frame) == SHMWAL_FRAME_HDR, "frame header is 32 bytes");
_Static_assert(offsetof(struct shmwal_frame, crc) == 8, "crc at 8");
_Static_assert(offsetof(struct shmwal_frame, type) == 12, "type at 12");
_Static_assert(offsetof(struct shmwal_frame, lsn) == 16, "lsn at 16");
_Static_assert(sizeof(struct shmwal_segment_header) == SHMWAL_SEG_HDR, "segment header size");
_Static_assert(offsetof(struct shmwal_segment_header, crc) == 60, "segment crc at 60");

SHMWAL_EXPORT uint32_t shmwal_frame_crc(const struct shmwal_frame *f, uint32_t len)
{
	unsigned state = shmwal_word_state(f->word);
	uint32_t body = len;
	uint32_t crc;

	if (state == SHMWAL_FRAME_ABORTED || state == SHMWAL_FRAME_PAD)
		body = SHMWAL_FRAME_HDR;
	crc = crc32c_raw(~0u, &len, sizeof(len));
	return ~crc32c_raw(crc, (const char *)f + 12, body - 12);
}

uint32_t frame_fill_crc(void *f, uint32_t len, uint16_t type, uint64_t lsn, uint64_t timestamp_ns,
			const void *key, uint32_t key_len, const void *value, uint32_t value_len)
{
	uint32_t crc = crc32c_frame_head(len, type, (uint16_t)key_len, lsn, timestamp_ns);
	char *body = (char *)f + SHMWAL_FRAME_HDR;

	crc = crc32c_copy(crc, body, key, key_len);
	return ~crc32c_copy(crc, body + key_len, value, value_len);
}

SHMWAL_EXPORT enum shmwal_frame_verdict shmwal_frame_check(const void *p, uint64_t avail,
							   uint64_t lsn, uint64_t max_frame)
{
	enum shmwal_frame_verdict v = frame_check_head(p, avail, lsn, max_frame);
	const struct shmwal_frame *f = p;

	if (v == SHMWAL_FRAME_OK && shmwal_frame_crc(f, shmwal_word_len(f->word)) != f->crc)
		return SHMWAL_FRAME_BAD_CRC;
	return v;
}

SHMWAL_EXPORT const char *shmwal_frame_verdict_str(enum shmwal_frame_verdict v)
{
	switch (v) {
	case SHMWAL_FRAME_OK: return "valid frame";
	case SHMWAL_FRAME_SHORT: return "frame runs past the end of the data";
	case SHMWAL_FRAME_ZERO: return "zero bytes where a frame should start";
	case SHMWAL_FRAME_BAD_WORD: return "invalid frame header (magic, state or length)";
	case SHMWAL_FRAME_BAD_LSN: return "frame LSN does not match its position";
	case SHMWAL_FRAME_BAD_CRC: return "frame checksum mismatch";
	}
	return "unknown verdict";
}

SHMWAL_EXPORT void shmwal_segment_header_init(struct shmwal_segment_header *h, uint32_t part,
					      uint64_t first_lsn, uint64_t instance,
					      uint64_t created_ns)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->magic, SHMWAL_SEG_MAGIC, 8);
	h->version = SHMWAL_SEG_VERSION;
	h->partition = part;
	h->first_lsn = first_lsn;
	h->instance = instance;
	h->created_ns = created_ns;
	h->header_bytes = SHMWAL_SEG_HDR;
	h->crc = shmwal_crc32c(0, h, offsetof(struct shmwal_segment_header, crc));
}

SHMWAL_EXPORT int shmwal_segment_header_check(const struct shmwal_segment_header *h,
					      const char **why)
{
	const char *w = NULL;

	if (memcmp(h->magic, SHMWAL_SEG_MAGIC, 8) != 0)
		w = "not a shmwal segment (bad magic)";
	else if (h->crc != shmwal_crc32c(0, h, offsetof(struct shmwal_segment_header, crc)))
		w = "segment header checksum mismatch";
	else if (h->version != SHMWAL_SEG_VERSION)
		w = "unsupported segment version";
	else if (h->header_bytes != SHMWAL_SEG_HDR)
		w = "unsupported segment header size";
	if (why)
		*why = w;
	return w ? -EBADMSG : 0;
}

SHMWAL_EXPORT void shmwal_segment_name(char *buf, uint64_t first_lsn)
{
	snprintf(buf, 21, "%016" PRIx64 ".seg", first_lsn);
}

SHMWAL_EXPORT int shmwal_segment_name_parse(const char *name, uint64_t *first_lsn)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 16; i++) {
		char c = name[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else
			return -EINVAL;
		v = v << 4 | d;
	}
	if (strcmp(name + 16, ".seg") != 0)
		return -EINVAL;
	*first_lsn = v;
	return 0;
}
