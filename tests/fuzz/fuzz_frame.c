/* SPDX-License-Identifier: MIT */
/*
 * fuzz_frame.c - libFuzzer target: shmwal_frame_check() on arbitrary bytes. It must never read
 * outside [data, data + size) (AddressSanitizer checks), and a frame it accepts must be
 * self-consistent: its padded length fits, its LSN is the one asked for, its checksum holds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shmwal_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct shmwal_frame f;
	uint64_t lsn = 0, max_frame = 1 << 16;
	uint8_t *copy;

	if (size >= SHMWAL_FRAME_HDR) {
		memcpy(&f, data, sizeof(f));
		lsn = f.lsn; /* also explore frames whose LSN matches */
	}
	/* an exact-size heap copy, so any over-read is caught */
	copy = malloc(size ? size : 1);
	memcpy(copy, data, size);
	if (shmwal_frame_check(copy, size, lsn, max_frame) == SHMWAL_FRAME_OK) {
		memcpy(&f, copy, sizeof(f));
		if (SHMWAL_ALIGN_UP(shmwal_word_len(f.word)) > size || f.lsn != lsn ||
		    shmwal_frame_crc((const struct shmwal_frame *)copy, shmwal_word_len(f.word)) != f.crc)
			abort();
	}
	free(copy);
	return 0;
}
