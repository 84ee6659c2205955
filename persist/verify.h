/* SPDX-License-Identifier: MIT */
/* verify.h - the scan behind shmwal_verify(), and where it lets shmwal_repair() cut. */
#ifndef SHMWAL_VERIFY_H
#define SHMWAL_VERIFY_H

#include <stdint.h>

#include "shmwal.h"
#include "meta.h"
#include "segment.h"

/* Where the first damage lets the log be cut: segments before `seg` are kept whole, segment
 * `seg` up to LSN `lsn` (its first LSN: none of it), the later ones not at all. Without
 * damage, where the last segment's torn tail begins (torn), if it has one a flusher would cut
 * or move aside at start (not a pmem segment of the wrong size: the flusher resizes it). */
struct vcut {
	int found;
	int torn;
	uint32_t seg; /* an index into the scan's segment list */
	uint64_t lsn;
};

/*
 * Scans every segment of partition p, in LSN order, listing them into *l (the caller frees it
 * with seg_list_free, also on error): findings go to o->report, progress to o->progress (o or
 * either may be NULL), counts to *st, and *cut says where the first damage lets the log be
 * cut. With stop_at_damage the scan ends at the first damage (*st then covers what came
 * before it). 0 or -errno (the partition directory cannot be listed, out of memory).
 */
int verify_scan(const struct meta *m, uint32_t p, const struct shmwal_check_options *o,
		int stop_at_damage, struct seg_list *l, struct shmwal_verify_stat *st,
		struct vcut *cut);

#endif
