/* SPDX-License-Identifier: MIT */
/*
 * verify.c - shmwal_verify(): every byte of a partition's segment files read and checked, each
 * place where the log cannot be read on reported with its file, offset and LSN; and the scan
 * that shmwal_repair() cuts by, so that a repair cuts exactly where verify says the damage is.
 *
 * The checks are recovery's (recovery.c), applied to every segment instead of the last one
 * only: the header (checksum, partition, first LSN against the file name, WAL instance), the
 * place in the LSN sequence (a segment starts where the previous one's frames end), the pmem
 * backend's fixed size and the zeros past a pmem segment's frames, and every frame (length,
 * own LSN, checksum). Sealed segments' frames are where the two differ: recovery does not read
 * them, so that start-up time does not grow with the log; verify does.
 *
 * In the last segment, an invalid frame or non-zero bytes past the frames are the torn tail
 * of writes that were never synced (TORN_TAIL: the flusher cuts or clears them at start), and
 * so is a last segment whose header is torn if it holds no frames (the flusher moves it to the
 * quarantine). Anywhere else they are damage.
 *
 * Where the first damage lets the log be cut (struct vcut): damage inside a segment (a frame,
 * bytes past a pmem segment's range) keeps that segment up to the damaged LSN; damage to a
 * whole segment (unreadable, header, a gap or overlap before it, a pmem size) keeps the
 * segments before it whole, or none of the first segment when it is the first. Without
 * damage, a torn tail is cut the same way: there is nothing durable in it, a flusher would cut
 * it (or move a torn last segment aside) at start, and a repair interrupted after it moved
 * the segments behind a damaged one leaves that damage in the last segment, a torn tail.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmwal_format.h"
#include "common.h"
#include "verify.h"

#define PROGRESS_BYTES (4ull << 20) /* report progress at least this often within a segment */

struct scan {
	const struct meta *m;
	uint32_t p;
	const struct shmwal_check_options *o;
	const struct seg_list *l;
	struct shmwal_verify_stat *st;
	struct vcut *cut;
	uint64_t done, total; /* bytes of segment files scanned, and in all */
	int stop_at_damage;
	int stop;
	int damaged;
};

static void SHMWAL_PRINTF(6, 7)
    finding(struct scan *s, enum shmwal_finding_kind kind, const char *path, uint64_t off,
	    uint64_t lsn, const char *fmt, ...)
{
	struct shmwal_finding f;
	char what[768];
	va_list ap;

	s->st->damage += kind == SHMWAL_FINDING_DAMAGE;
	s->st->torn += kind == SHMWAL_FINDING_TORN_TAIL;
	if (!s->o || !s->o->report)
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	f.kind = kind;
	f.partition = s->p;
	f.path = path;
	f.offset = off;
	f.lsn = lsn;
	f.what = what;
	s->o->report(s->o->ctx, &f);
}

static void progress(struct scan *s, uint64_t done)
{
	if (s->o && s->o->progress)
		s->o->progress(s->o->ctx, s->p, done < s->total ? done : s->total, s->total);
}

/* Damage (or, torn, a torn tail): the log can be kept up to `lsn`, in segment i. The first
 * one says where a repair cuts. */
static void cut_at(struct scan *s, uint32_t i, uint64_t lsn, int torn)
{
	if (!s->cut->found) {
		s->cut->found = 1;
		s->cut->torn = torn;
		s->cut->seg = i;
		s->cut->lsn = lsn;
	}
	if (torn)
		return;
	if (!s->damaged)
		s->st->intact_lsn = lsn;
	s->damaged = 1;
	if (s->stop_at_damage)
		s->stop = 1;
}

/* Damage (or a torn tail) to segment i as a whole: the log can be kept up to where the
 * segments before it end (`expect`), or none of it when it is the first. */
static void cut_before(struct scan *s, uint32_t i, uint64_t expect, int torn)
{
	if (i == 0)
		cut_at(s, 0, s->l->first[0], torn);
	else
		cut_at(s, i - 1, expect, torn);
}

/* 1 when the file at fd holds only zeros from off on, 0 if not or unreadable. */
static int file_zero_from(int fd, uint64_t off)
{
	uint8_t buf[16384];
	ssize_t n;

	while ((n = pread(fd, buf, sizeof(buf), (off_t)off)) > 0) {
		for (ssize_t j = 0; j < n; j++)
			if (buf[j])
				return 0;
		off += (uint64_t)n;
	}
	return n == 0;
}

/* 1 when [off, end) of a mapping is all zero. */
static int zero_range(const uint8_t *map, uint64_t off, uint64_t end)
{
	return off >= end ||
	       (map[off] == 0 && memcmp(map + off, map + off + 1, (size_t)(end - off - 1)) == 0);
}

/* What is wrong with the frame at f (avail bytes readable), more precisely than the verdict. */
static void describe_frame(char *buf, size_t len, enum shmwal_frame_verdict v, const uint8_t *f,
			   uint64_t avail)
{
	const char *what = shmwal_frame_verdict_str(v);
	struct shmwal_frame h;
	uint32_t flen;

	if (avail < sizeof(h)) {
		snprintf(buf, len, "%s (%" PRIu64 " bytes left, a frame header is %u)", what, avail,
			 SHMWAL_FRAME_HDR);
		return;
	}
	memcpy(&h, f, sizeof(h));
	flen = shmwal_word_len(h.word);
	switch (v) {
	case SHMWAL_FRAME_SHORT:
		snprintf(buf, len, "%s (its header says %u bytes, %" PRIu64 " are left)", what,
			 flen, avail);
		break;
	case SHMWAL_FRAME_BAD_WORD:
		snprintf(buf, len, "%s (header word %#018" PRIx64 ")", what, h.word);
		break;
	case SHMWAL_FRAME_BAD_LSN:
		snprintf(buf, len, "%s (it says LSN %" PRIu64 ")", what, h.lsn);
		break;
	case SHMWAL_FRAME_BAD_CRC:
		if (shmwal_word_state(h.word) == SHMWAL_FRAME_COMMITTED)
			snprintf(buf, len,
				 "%s (a record of %u bytes: type %u, key %u bytes, value %u bytes)",
				 what, flen, h.type, h.key_len,
				 flen - SHMWAL_FRAME_HDR - h.key_len);
		else
			snprintf(buf, len, "%s (a %s of %u bytes)", what,
				 shmwal_word_state(h.word) == SHMWAL_FRAME_PAD ? "pad"
									       : "aborted claim",
				 flen);
		break;
	default:
		snprintf(buf, len, "%s", what);
	}
}

/* Reports files in the partition directory that are not segments (hidden ones aside). */
static void notes(struct scan *s, const char *pdir)
{
	struct dirent *e;
	DIR *d;

	if (!s->o || !s->o->report || !(d = opendir(pdir)))
		return;
	while ((e = readdir(d))) {
		uint64_t first;
		char path[4096];

		if (e->d_name[0] == '.' || shmwal_segment_name_parse(e->d_name, &first) == 0)
			continue;
		if (path_fmt(path, sizeof(path), "%s/%s", pdir, e->d_name) == 0)
			finding(s, SHMWAL_FINDING_NOTE, path, 0, 0, "not a segment file (ignored)");
	}
	closedir(d);
}

/* Scans segment i's frames from the header on, up to `end` (mapped: `map`, `size` bytes).
 * Returns the offset where its valid frames end; *broken: damage stopped the scan (2: it was
 * zeros where a frame should start, 1: something else). */
static uint64_t scan_frames(struct scan *s, uint32_t i, const char *path, const uint8_t *map,
			    uint64_t size, uint64_t end, int *broken)
{
	const int pmem = s->m->cfg.backend == SHMWAL_BACKEND_PMEM, last = i + 1 == s->l->n;
	const uint64_t first = s->l->first[i], max_frame = cfg_max_frame(&s->m->cfg);
	enum shmwal_frame_verdict stop = SHMWAL_FRAME_OK;
	uint64_t off = SHMWAL_SEG_HDR, told = 0;
	char what[512];

	while (off < end) {
		uint64_t lsn = first + off - SHMWAL_SEG_HDR;
		enum shmwal_frame_verdict v =
		    shmwal_frame_check(map + off, end - off, lsn, max_frame);
		const struct shmwal_frame *f = (const void *)(map + off);

		stop = v;
		if (v == SHMWAL_FRAME_ZERO && pmem && last)
			break; /* the end of the log; zeros must follow (below) */
		if (v != SHMWAL_FRAME_OK) {
			describe_frame(what, sizeof(what), v, map + off, end - off);
			finding(s, last ? SHMWAL_FINDING_TORN_TAIL : SHMWAL_FINDING_DAMAGE, path,
				off, lsn, "%s%s", what,
				last ? " (the flusher cuts it at start)" : "");
			cut_at(s, i, lsn, last);
			*broken = v == SHMWAL_FRAME_ZERO ? 2 : 1;
			break;
		}
		s->st->records += shmwal_word_state(f->word) == SHMWAL_FRAME_COMMITTED;
		off += SHMWAL_ALIGN_UP(shmwal_word_len(f->word));
		if (off - told >= PROGRESS_BYTES) {
			told = off;
			progress(s, s->done + off);
		}
	}
	/* A pmem segment holds frames, then only zeros: up to its range (sealed), or from the
	 * first zero word on (the last one). */
	if (pmem && (off == end || (last && stop == SHMWAL_FRAME_ZERO)) &&
	    !zero_range(map, off, size)) {
		uint64_t lsn = first + off - SHMWAL_SEG_HDR;

		finding(s, last ? SHMWAL_FINDING_TORN_TAIL : SHMWAL_FINDING_DAMAGE, path, off, lsn,
			"bytes after the last frame are not zero%s",
			last ? " (the flusher clears them at start)"
			     : " (a segment missing after it?)");
		cut_at(s, i, lsn, last);
	}
	return off;
}

int verify_scan(const struct meta *m, uint32_t p, const struct shmwal_check_options *o,
		int stop_at_damage, struct seg_list *l, struct shmwal_verify_stat *st,
		struct vcut *cut)
{
	const int pmem = m->cfg.backend == SHMWAL_BACKEND_PMEM;
	const uint64_t pmem_size = cfg_pmem_file_bytes(&m->cfg);
	struct scan s = {
	    .m = m, .p = p, .o = o, .l = l, .st = st, .cut = cut, .stop_at_damage = stop_at_damage};
	uint64_t expect = 0;
	int expect_known = 0; /* expect is where the previous segment's frames end */
	int any = 0;	      /* ... and some segment's frames were scanned */
	char pdir[4096];
	uint32_t i;
	int rc;

	memset(st, 0, sizeof(*st));
	memset(cut, 0, sizeof(*cut));
	if ((rc = part_dir(pdir, sizeof(pdir), m->dir, p)) < 0 || (rc = seg_list_load(pdir, l)) < 0)
		return rc;
	notes(&s, pdir);
	for (i = 0; i < l->n; i++) {
		char path[4096];
		struct stat sb;

		if ((rc = seg_path(path, sizeof(path), pdir, l->first[i])) < 0)
			return rc;
		if (lstat(path, &sb) == 0 && S_ISREG(sb.st_mode))
			s.total += (uint64_t)sb.st_size;
	}
	st->segments = l->n;
	st->first_lsn = l->n ? l->first[0] : 0;
	progress(&s, 0);
	for (i = 0; i < l->n && !s.stop; i++) {
		const uint64_t first = l->first[i];
		const int last = i + 1 == l->n;
		const char *why = NULL;
		char path[4096], err[256];
		const uint8_t *map;
		struct stat sb;
		uint64_t size, end, off;
		int fd, broken;

		if ((rc = seg_path(path, sizeof(path), pdir, first)) < 0)
			return rc;
		/* O_NONBLOCK: a FIFO with a segment's name must not hang verify. */
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
		if (fd < 0 || fstat(fd, &sb) < 0) {
			finding(&s, SHMWAL_FINDING_DAMAGE, path, 0, first, "cannot read: %s",
				strerror(errno));
			cut_before(&s, i, expect, 0);
			if (fd >= 0)
				close(fd);
			expect_known = 0;
			continue;
		}
		size = S_ISREG(sb.st_mode) ? (uint64_t)sb.st_size : 0;
		if (!S_ISREG(sb.st_mode)) {
			why = "not a regular file";
		} else if ((rc = seg_header_read(fd, m, p, first, &why, NULL)) < 0 &&
			   rc != -EBADMSG) {
			snprintf(err, sizeof(err), "cannot read the header: %s", strerror(-rc));
			why = err;
		}
		if (why) {
			/* As recovery: the last segment with a torn header and no frames is an
			 * interrupted segment creation, moved aside at the next start. */
			int torn = last && S_ISREG(sb.st_mode) &&
				   (size <= SHMWAL_SEG_HDR ||
				    (pmem && file_zero_from(fd, SHMWAL_SEG_HDR)));

			finding(&s, torn ? SHMWAL_FINDING_TORN_TAIL : SHMWAL_FINDING_DAMAGE, path,
				0, first, "%s%s", why,
				torn ? " (the flusher moves it to DIR/quarantine at start)" : "");
			cut_before(&s, i, expect, torn);
			close(fd);
			s.done += size;
			progress(&s, s.done);
			expect_known =
			    0; /* where it ends is unknown: no gap is reported after it */
			continue;
		}
		if (expect_known && first != expect) {
			finding(&s, SHMWAL_FINDING_DAMAGE, path, 0, first,
				"starts at LSN %" PRIu64
				" but the previous segment ends at LSN %" PRIu64 " (%s)",
				first, expect, first > expect ? "records missing" : "overlap");
			cut_before(&s, i, expect, 0);
			if (s.stop) {
				close(fd);
				break;
			}
		}
		/* A pmem segment has a fixed size: frames end where the next segment's range
		 * starts (sealed), or at the first zero word (the last one). */
		end = size;
		if (pmem && !last && SHMWAL_SEG_HDR + (l->first[i + 1] - first) < end)
			end = SHMWAL_SEG_HDR + (l->first[i + 1] - first);
		if (pmem && size != pmem_size) {
			finding(&s, last ? SHMWAL_FINDING_TORN_TAIL : SHMWAL_FINDING_DAMAGE, path,
				0, first,
				"%" PRIu64 " bytes, not the pmem backend's fixed size %" PRIu64
				"%s",
				size, pmem_size, last ? " (the flusher resizes it at start)" : "");
			if (!last) /* the flusher resizes the last one: nothing to cut */
				cut_before(&s, i, expect, 0);
			if (s.stop) {
				close(fd);
				break;
			}
		}
		off = SHMWAL_SEG_HDR;
		broken = 0;
		if (size > SHMWAL_SEG_HDR) {
			map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
			if (map == MAP_FAILED) {
				finding(&s, SHMWAL_FINDING_DAMAGE, path, 0, first, "cannot map: %s",
					strerror(errno));
				cut_before(&s, i, expect, 0);
				close(fd);
				expect_known = 0;
				continue;
			}
			off = scan_frames(&s, i, path, map, size, end, &broken);
			munmap((void *)map, (size_t)size);
		}
		close(fd);
		st->bytes += off - SHMWAL_SEG_HDR;
		expect = first + off - SHMWAL_SEG_HDR;
		expect_known = any = 1;
		if (broken && !last) {
			/* Its frames past the damage are unknown: where it ends is what its size
			 * says (a sealed file segment is exactly its range). A pmem segment's size
			 * says nothing: its frames end at zeros (then a gap after it is real), or
			 * where they end is unknown. */
			if (!pmem)
				expect = first + size - SHMWAL_SEG_HDR;
			expect_known = !pmem || broken == 2;
		}
		s.done += size;
		progress(&s, s.done);
	}
	st->end_lsn = any ? expect : st->first_lsn;
	if (!s.damaged)
		st->intact_lsn = st->end_lsn;
	return 0;
}

SHMWAL_EXPORT int shmwal_verify(const char *dir, uint32_t part,
				const struct shmwal_check_options *o,
				struct shmwal_verify_stat *out)
{
	struct shmwal_verify_stat st;
	struct seg_list l;
	struct vcut cut;
	struct meta m;
	int rc;

	if ((rc = meta_load_part(dir, part, &m)) < 0)
		return rc;
	rc = verify_scan(&m, part, o, 0, &l, &st, &cut);
	seg_list_free(&l);
	if (rc < 0)
		return rc;
	if (out)
		*out = st;
	clearerr_detail();
	return (int)(st.damage < INT32_MAX ? st.damage : INT32_MAX);
}
