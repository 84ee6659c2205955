/* SPDX-License-Identifier: MIT */
/*
 * recovery.c - finding where a partition's log ends, at every flusher start.
 *
 * Sealed segments (all but the last) were synced when the flusher moved past them, so they
 * must be whole: a valid header naming this partition, LSN and instance, and a size of exactly
 * 64 + (next first LSN - own first LSN). Checking that is one open and pread per segment; their
 * frames are not read, so recovery time does not grow with the log's length. A sealed
 * segment that fails the check is corruption: an error naming the file (and -EBADMSG), or,
 * with repair, the log is cut there and the later segments are moved to DIR/quarantine.
 *
 * The last segment is scanned frame by frame (own LSN, bounds, CRC: shmwal_frame_check) and
 * cut at the first invalid frame: that is the torn tail of writes that had not been synced
 * when the machine or the flusher stopped. Everything published as durable lies before it:
 * durable is published only after the sync that covered those frames, and a sync covers all
 * earlier writes of the file. A last segment whose header is torn or short cannot hold
 * anything durable (its header is synced before any frame of it is published) and is moved to
 * the quarantine directory, never deleted.
 *
 * The pmem backend's files have a fixed size, which says nothing about how much of them holds
 * frames: the end is found by the same scan (own LSN and CRC), stopping at the first invalid
 * frame or a zero word. What lies past that end is cleared to zeros and drained before the
 * flusher writes again. Without that, a frame written before the crash past a torn one (pmem
 * persists cache lines in any order until the drain) would stay in the file, and once new
 * frames happened to end exactly where it starts, it would read as a valid record the log
 * never held at that point. So past the end of the log, a pmem segment holds only zeros, and
 * a sealed one is checked for that at its end instead of by its size. Frames of an older lap
 * (a recycled file) can never pass: their own LSNs are those of the older lap.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmwal_format.h"
#include "common.h"
#include "io.h"
#include "quarantine.h"
#include "segment.h"

int seg_header_read(int fd, const struct meta *m, uint32_t p, uint64_t first, const char **why,
		    struct shmwal_segment_header *out)
{
	struct shmwal_segment_header h;
	ssize_t n = pread(fd, &h, sizeof(h), 0);

	if (n < 0)
		return -errno;
	if (n != (ssize_t)sizeof(h)) {
		*why = "shorter than a segment header";
		return -EBADMSG;
	}
	if (shmwal_segment_header_check(&h, why) < 0)
		return -EBADMSG;
	if (h.partition != p)
		*why = "segment belongs to another partition";
	else if (h.first_lsn != first)
		*why = "segment header's first LSN does not match its file name";
	else if (h.instance != m->instance)
		*why = "segment belongs to another WAL instance";
	else {
		if (out)
			*out = h;
		return 0;
	}
	return -EBADMSG;
}

/*
 * Scans frames of an open segment from its start. Returns the number of valid frame bytes
 * (after the header); *verdict tells why the scan stopped (SHMWAL_FRAME_SHORT at a clean end).
 */
int64_t seg_scan_frames(int fd, uint64_t first, uint64_t size, uint64_t max_frame,
			enum shmwal_frame_verdict *verdict)
{
	uint64_t off = SHMWAL_SEG_HDR, avail;
	const uint8_t *map;

	*verdict = SHMWAL_FRAME_SHORT;
	if (size <= SHMWAL_SEG_HDR)
		return 0;
	map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return seterr(-errno, "mmap segment: %s", strerror(errno));
	while (off < size) {
		avail = size - off;
		*verdict = shmwal_frame_check(map + off, avail, first + off - SHMWAL_SEG_HDR,
					      max_frame);
		if (*verdict != SHMWAL_FRAME_OK)
			break;
		off += SHMWAL_ALIGN_UP(((const struct shmwal_frame *)(map + off))->word & 0xffffffffu);
	}
	if (off >= size)
		*verdict = SHMWAL_FRAME_SHORT;
	munmap((void *)map, (size_t)size);
	return (int64_t)(off - SHMWAL_SEG_HDR);
}

/* 1 when the file holds a non-zero byte past the segment header, 0 if not, -errno. */
static int body_nonzero(int fd, uint64_t size)
{
	static const uint8_t zero[65536];
	uint8_t buf[65536];
	uint64_t off = SHMWAL_SEG_HDR;

	while (off < size) {
		ssize_t n = pread(fd, buf, sizeof(buf), (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		if (memcmp(buf, zero, (size_t)n) != 0)
			return 1;
		off += (uint64_t)n;
	}
	return 0;
}

/* 1 when len bytes at p are all zero. */
static int all_zero(const uint8_t *p, size_t len)
{
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

/*
 * pmem: clears every non-zero 4 KiB block of [from, m->len) and drains. Returns the number of
 * bytes from `from` up to the end of the last non-zero block cleared (0: it was all zero).
 */
static int64_t clear_past_end(struct io_map *map, uint64_t from)
{
	uint64_t off = from, last = from;
	int rc;

	while (off < map->len) {
		uint64_t next = (off + 4096) & ~4095ull;

		if (next > map->len)
			next = map->len;
		if (!all_zero(map->addr + off, (size_t)(next - off))) {
			io->zero(map, off, (size_t)(next - off));
			last = next;
		}
		off = next;
	}
	if (last == from)
		return 0;
	rc = io->drain(map, from, (size_t)(last - from));
	return rc < 0 ? rc : (int64_t)(last - from);
}

/*
 * pmem: the last segment, open read-write at fd with a valid header: gives it its full size (a
 * crash can leave it shorter: nothing in it was published then, its size was synced before
 * any frame) or cuts what lies past that size (no frame reaches there), scans it and clears
 * what lies past its end. Returns the valid frame bytes.
 */
static int64_t recover_pmem_last(const struct meta *m, int fd, const char *path, uint64_t first,
				 uint64_t size, rec_log_fn log, void *ctx, uint64_t *cleared)
{
	const uint64_t full = cfg_pmem_file_bytes(&m->cfg);
	enum shmwal_frame_verdict v;
	struct io_map map = { 0 };
	int64_t valid, n;
	int rc;

	if (size < full) {
		rc = io->fallocate(fd, (off_t)full);
		if (rc == 0)
			rc = io->fdatasync(fd);
		if (rc < 0)
			return seterr(rc, "extend %s to %" PRIu64 " bytes: %s", path, full,
				      strerror(-rc));
		size = full;
	} else if (size > full) {
		/* Frames never reach past the fixed size: whatever does is past the log's end, and
		 * a sealed segment must have exactly that size (pmem_sealed_check). */
		rc = io->ftruncate(fd, (off_t)full);
		if (rc == 0)
			rc = io->fdatasync(fd);
		if (rc < 0)
			return seterr(rc, "cut %s to %" PRIu64 " bytes: %s", path, full,
				      strerror(-rc));
		if (log)
			log(ctx, SHMWAL_LOG_WARN,
			    "%s: %" PRIu64 " bytes longer than the pmem backend's fixed size; cut "
			    "to %" PRIu64 " bytes",
			    path, size - full, full);
		size = full;
	}
	valid = seg_scan_frames(fd, first, size, cfg_max_frame(&m->cfg), &v);
	if (valid < 0)
		return valid;
	rc = io->map(fd, &map);
	if (rc < 0) {
		char why[512]; /* a copy: seterr() writes where shmwal_last_error() points */

		snprintf(why, sizeof(why), "%s", shmwal_last_error());
		return seterr(rc, "map %s: %s", path, why);
	}
	n = clear_past_end(&map, SHMWAL_SEG_HDR + (uint64_t)valid);
	io->unmap(&map);
	if (n < 0)
		return seterr((int)n, "clear the tail of %s: %s", path, strerror((int)-n));
	*cleared = (uint64_t)n;
	if (n && log)
		log(ctx, SHMWAL_LOG_WARN,
		    "%s: cleared offsets %" PRIu64 "..%" PRIu64 " past the end of the log at "
		    "offset %" PRIu64 " (LSN %" PRIu64 "): %s",
		    path, SHMWAL_SEG_HDR + (uint64_t)valid, SHMWAL_SEG_HDR + (uint64_t)valid + (uint64_t)n,
		    SHMWAL_SEG_HDR + (uint64_t)valid, first + (uint64_t)valid,
		    shmwal_frame_verdict_str(v));
	return valid;
}

/*
 * pmem: a sealed segment has its fixed size, room for its LSN range, and zeros right after
 * that range (see the top of this file). 0, or -EBADMSG with *why; -errno.
 */
static int pmem_sealed_check(const struct meta *m, int fd, uint64_t size, uint64_t want,
			     const char **why)
{
	uint64_t word = 0;
	ssize_t n;

	if (size != cfg_pmem_file_bytes(&m->cfg)) {
		*why = "segment does not have the pmem backend's fixed size";
		return -EBADMSG;
	}
	if (want > size) {
		*why = "the LSN range up to the next segment does not fit in this segment "
		       "(a segment missing after it?)";
		return -EBADMSG;
	}
	if (want + sizeof(word) > size)
		return 0;
	n = pread(fd, &word, sizeof(word), (off_t)want);
	if (n < 0)
		return -errno;
	if (n != (ssize_t)sizeof(word) || word != 0) {
		*why = "data right after the LSN range up to the next segment (a segment missing "
		       "after it?)";
		return -EBADMSG;
	}
	return 0;
}

int recover_partition(const struct meta *m, uint32_t p, int repair, rec_log_fn log, void *ctx,
		      struct seg_recovery *out)
{
	char pdir[4096], path[4096];
	struct seg_list l;
	uint64_t max_frame = cfg_max_frame(&m->cfg);
	uint32_t i;
	int rc, fd = -1;

	memset(out, 0, sizeof(*out));
	if ((rc = part_dir(pdir, sizeof(pdir), m->dir, p)) < 0)
		return rc;
	if ((rc = seg_list_load(pdir, &l)) < 0)
		return rc;

	/* Sealed segments: header and exact size. */
	for (i = 0; i + 1 < l.n; i++) {
		const char *why = NULL;
		struct stat st;
		uint64_t want = SHMWAL_SEG_HDR + l.first[i + 1] - l.first[i];

		if ((rc = seg_path(path, sizeof(path), pdir, l.first[i])) < 0)
			goto out;
		/* O_NONBLOCK: a FIFO with a segment's name must not hang the start. */
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
		if (fd < 0) {
			rc = seterr(-errno, "%s: %s", path, strerror(errno));
			goto out;
		}
		rc = fstat(fd, &st) < 0 ? -errno : 0;
		if (rc == 0 && !S_ISREG(st.st_mode)) {
			why = "not a regular file";
			rc = -EBADMSG;
		}
		if (rc == 0)
			rc = seg_header_read(fd, m, p, l.first[i], &why, NULL);
		if (rc == 0 && m->cfg.backend == SHMWAL_BACKEND_PMEM)
			rc = pmem_sealed_check(m, fd, (uint64_t)st.st_size, want, &why);
		else if (rc == 0 && (uint64_t)st.st_size != want) {
			why = (uint64_t)st.st_size < want ? "segment is shorter than the LSN range "
							    "up to the next segment (data missing)"
							  : "segment is longer than the LSN range "
							    "up to the next segment";
			rc = -EBADMSG;
		}
		close(fd);
		fd = -1;
		if (rc == -EBADMSG && !repair) {
			rc = seterr(-EBADMSG, "%s: %s; refusing to start (run `shmwal verify` for "
					      "details, `shmwal flusher --repair` to cut the log "
					      "here)",
				    path, why);
			goto out;
		}
		if (rc == -EBADMSG) {
			/* Repair: this segment and all later ones go to quarantine. */
			uint32_t j;

			for (j = l.n; j-- > i;) {
				rc = quarantine_move(m, pdir, p, l.first[j], log, ctx,
						     j == i ? why : "after a damaged segment");
				if (rc < 0)
					goto out;
			}
			l.n = i;
			out->end = l.first[i]; /* LSNs go on from here if nothing remains */
			break;
		}
		if (rc < 0) {
			rc = seterr(rc, "%s: %s", path, strerror(-rc));
			goto out;
		}
	}

	/* The last segment: find the torn tail. */
	while (l.n) {
		const char *why = NULL;
		enum shmwal_frame_verdict v;
		struct stat st;
		uint64_t first = l.first[l.n - 1];
		int64_t valid;

		if ((rc = seg_path(path, sizeof(path), pdir, first)) < 0)
			goto out;
		fd = io->open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0);
		if (fd < 0) {
			rc = seterr(fd, "%s: %s", path, strerror(-fd));
			goto out;
		}
		if (fstat(fd, &st) < 0) {
			rc = seterr(-errno, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (S_ISREG(st.st_mode)) {
			rc = seg_header_read(fd, m, p, first, &why, NULL);
		} else {
			why = "not a regular file";
			rc = -EBADMSG;
		}
		if (rc == -EBADMSG) {
			/* A torn header over frames can only be damage. (A pmem segment has its
			 * size from the start: it holds frames only if it holds non-zero bytes.) */
			int body = m->cfg.backend == SHMWAL_BACKEND_PMEM && S_ISREG(st.st_mode)
					   ? body_nonzero(fd, (uint64_t)st.st_size)
					   : (uint64_t)st.st_size > SHMWAL_SEG_HDR;

			io->close(fd);
			fd = -1;
			if (body < 0) {
				rc = seterr(body, "%s: %s", path, strerror(-body));
				goto out;
			}
			if (body && !repair) {
				rc = seterr(-EBADMSG, "%s: %s, with frames after it; refusing to "
						      "start",
					    path, why);
				goto out;
			}
			rc = quarantine_move(m, pdir, p, first, log, ctx, why);
			if (rc < 0)
				goto out;
			out->end = first; /* LSNs are never reused: go on from here */
			l.n--;
			continue;
		}
		if (rc < 0) {
			rc = seterr(rc, "%s: %s", path, strerror(-rc));
			goto out;
		}
		if (m->cfg.backend == SHMWAL_BACKEND_PMEM)
			valid = recover_pmem_last(m, fd, path, first, (uint64_t)st.st_size, log,
						  ctx, &out->cut_bytes);
		else
			valid = seg_scan_frames(fd, first, (uint64_t)st.st_size, max_frame, &v);
		if (valid < 0) {
			rc = (int)valid;
			goto out;
		}
		if (m->cfg.backend != SHMWAL_BACKEND_PMEM &&
		    (uint64_t)st.st_size > SHMWAL_SEG_HDR + (uint64_t)valid) {
			uint64_t cut = (uint64_t)st.st_size - SHMWAL_SEG_HDR - (uint64_t)valid;

			rc = io->ftruncate(fd, (off_t)(SHMWAL_SEG_HDR + (uint64_t)valid));
			if (rc == 0)
				rc = io->fdatasync(fd);
			if (rc < 0) {
				rc = seterr(rc, "cut %s: %s", path, strerror(-rc));
				goto out;
			}
			out->cut_bytes = cut;
			if (log)
				log(ctx, SHMWAL_LOG_WARN,
				    "%s: cut %" PRIu64 " bytes of torn tail at offset %" PRIu64
				    " (LSN %" PRIu64 "): %s",
				    path, cut, SHMWAL_SEG_HDR + (uint64_t)valid,
				    first + (uint64_t)valid, shmwal_frame_verdict_str(v));
		}
		io->close(fd);
		fd = -1;
		out->has_seg = 1;
		out->seg_first = first;
		out->end = first + (uint64_t)valid;
		break;
	}
	out->segments = l.n;
	rc = 0;
out:
	if (fd >= 0)
		io->close(fd);
	seg_list_free(&l);
	return rc;
}
