/* SPDX-License-Identifier: MIT */
/*
 * quarantine.h - DIR/quarantine: where recovery (flusher --repair) and shmwal_repair() put the
 * segment files and bytes they take out of the log. Nothing is ever deleted: every move and
 * copy is made durable (file, then both directories) before the log stops referring to it.
 */
#ifndef SHMWAL_QUARANTINE_H
#define SHMWAL_QUARANTINE_H

#include <stddef.h>
#include <stdint.h>

#include "meta.h"
#include "segment.h"

/*
 * Moves segment `first` of partition p (in pdir) to DIR/quarantine as
 * pNNN-<segment name>.<CLOCK_REALTIME ns>: rename, then fsync of pdir and of the quarantine
 * directory (made first if missing, with the WAL's mode, and DIR synced). `why` goes to the
 * log line. 0 or -errno (shmwal_last_error() says which step failed).
 */
int quarantine_move(const struct meta *m, const char *pdir, uint32_t p, uint64_t first,
		    rec_log_fn log, void *ctx, const char *why);

/*
 * Writes a new file DIR/quarantine/pNNN-<segment name of name_lsn>.<ns>: `hdr` (if not NULL),
 * then bytes [from, to) of the file open at src_fd (named src_path). Written as <name>.partial,
 * synced, renamed, and the quarantine directory synced: a crash leaves either nothing under the
 * final name or the whole file. Zero blocks are left as holes. The final path goes to out (len
 * bytes). 0 or -errno.
 */
int quarantine_copy(const struct meta *m, uint32_t p, uint64_t name_lsn,
		    const struct shmwal_segment_header *hdr, int src_fd, const char *src_path,
		    uint64_t from, uint64_t to, char *out, size_t len);

#endif
