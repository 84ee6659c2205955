/* SPDX-License-Identifier: MIT */
/* segment.h - segment files of one partition directory (format: include/shmwal_format.h). */
#ifndef SHMWAL_SEGMENT_H
#define SHMWAL_SEGMENT_H

#include <stdint.h>
#include <sys/types.h>

#include "shmwal_format.h"
#include "common.h"
#include "io.h"
#include "meta.h"
#include "shm/shm.h"

struct seg_list {
	uint32_t n, cap;
	uint64_t *first; /* first LSNs, ascending */
};

/* Lists DIR/pNNN's segment files in LSN order; other files are ignored. */
int seg_list_load(const char *pdir, struct seg_list *l);
void seg_list_free(struct seg_list *l);
int seg_path(char *buf, size_t len, const char *pdir, uint64_t first);

/* Creates a segment starting at `first` (header written and synced, directory synced) and
 * returns a descriptor open for writing. The pmem backend: the file has its fixed size
 * (cfg_pmem_file_bytes) and is mapped into *map. */
int seg_create(const char *pdir, uint32_t part, uint64_t first, const struct meta *m, int *fd,
	       struct io_map *map);

/* Recovery of one partition (recovery.c). */
struct seg_recovery {
	uint64_t end;	    /* the log ends here: the next frame's LSN */
	uint64_t seg_first; /* first LSN of the last segment (valid when has_seg) */
	int has_seg;
	uint32_t segments;
	uint64_t cut_bytes; /* torn tail removed (pmem: non-zero bytes cleared past the end) */
};

typedef void (*rec_log_fn)(void *ctx, enum shmwal_log_level lvl, const char *fmt, ...)
	SHMWAL_PRINTF(3, 4);

int recover_partition(const struct meta *m, uint32_t p, int repair, rec_log_fn log, void *ctx,
		      struct seg_recovery *out);

/* Reads the header of the segment open at fd and checks it (checksum, version, partition p,
 * first LSN `first`, the WAL instance): 0 with the header in *out (if not NULL), or -EBADMSG
 * with the reason in *why; -errno when it cannot be read. */
int seg_header_read(int fd, const struct meta *m, uint32_t p, uint64_t first, const char **why,
		    struct shmwal_segment_header *out);

/* Scans the frames of the segment open at fd (first LSN `first`, `size` bytes) from its start.
 * Returns how many bytes of valid frames follow the header; *verdict says why the scan
 * stopped (SHMWAL_FRAME_SHORT at the end of the data). -errno if it cannot be mapped. */
int64_t seg_scan_frames(int fd, uint64_t first, uint64_t size, uint64_t max_frame,
			enum shmwal_frame_verdict *verdict);

#endif
