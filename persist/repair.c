/* SPDX-License-Identifier: MIT */
/*
 * repair.c - shmwal_repair(): cutting a stopped partition's log at its first damage, or at an
 * LSN the operator names; what is cut off goes to DIR/quarantine (shmwal.h has the contract).
 *
 * The cut. Segment K holds the cut LSN C (its first LSN <= C, the next one's > C; with
 * SHMWAL_REPAIR_AUTO, K and C come from the scan shmwal_verify() makes: verify.c). Segments
 * before K stay as they are, K keeps its header and its frames below C, and every segment
 * after K goes to the quarantine. The steps, in this order, each one durable before the next:
 *   1. K's bytes from C on are copied into a new file in the quarantine, behind a segment
 *      header for first LSN C (when C is K's first LSN: all of K, its own header included):
 *      written as *.partial, fdatasync'ed, renamed, the quarantine directory synced
 *      (quarantine_copy). Skipped when K holds nothing past C (file backend: no byte; pmem:
 *      only zeros) and its header is sound.
 *   2. the segments after K are moved to the quarantine, newest first: rename, then both
 *      directories synced (quarantine_move, as the flusher's own --repair does).
 *   3. K's kept part (header, frames below C; the pmem backend's fixed size) is written to a
 *      temporary file in the partition directory, fdatasync'ed and renamed over K, and the
 *      partition directory is synced. Skipped when step 1 was.
 * What a crash (or a power cut) leaves, and what takes it from there:
 *   - in step 1: the log as it was, and at most a *.partial file in the quarantine that
 *     nothing reads: a second repair makes the copy again;
 *   - after step 1, in step 2: a copy of K's cut-off bytes in the quarantine, and the log
 *     without some of its newest segments, which are in the quarantine: still a prefix of the
 *     log whose last segment is whole. A second repair finds the same damage (or takes the
 *     same cut LSN) and goes on, making one more copy; once K is the last segment, verify
 *     calls damage in its frames a torn tail, and SHMWAL_REPAIR_AUTO cuts there all the same
 *     (verify.c). A flusher starts on it as it did before the repair, and once K is the last
 *     segment it cuts that torn tail itself (the bytes past it are in the quarantine already);
 *   - in step 3: K as it was (before the rename; the temporary file is removed by the next
 *     repair, and its name is not a segment's, so nothing else reads it) or the cut K (after).
 * So no byte taken out of the log is ever only in a file or a directory entry that was not
 * synced, and nothing is deleted but the repair's own temporary copies.
 *
 * Why a copy renamed over K rather than ftruncate: a reader in another process may have K
 * mapped, and cutting the file under a mapping makes an access past the new end a SIGBUS. The
 * rename leaves such a reader the old file, whole, until it moves on.
 *
 * Exclusion: the repair holds the flusher lock (byte 0 of DIR/lock, which shmwal_flusher_run
 * takes) from before it reads anything until it returns: no flusher writes meanwhile, and one
 * that starts is refused as when another flusher runs. It refuses to work while the WAL's
 * shared memory exists: a flusher that died, or stopped while producers were attached, left
 * rings that may hold records not in the files yet, and durable positions past the cut that a
 * flusher adopting them would refuse (shm_adopt: "the segment files end at ...").
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmwal_format.h"
#include "common.h"
#include "io.h"
#include "quarantine.h"
#include "segment.h"
#include "verify.h"

#define TMP_PREFIX ".repair-"
#define TMP_SUFFIX ".tmp"

struct repair {
	const struct meta *m;
	uint32_t p;
	const struct shmwal_check_options *o;
	char pdir[4096];
	struct seg_list l;
	struct shmwal_repair_result *res;
};

static void SHMWAL_PRINTF(3, 4) rlog(void *ctx, enum shmwal_log_level lvl, const char *fmt, ...)
{
	const struct shmwal_check_options *o = ctx;
	char buf[1024];
	va_list ap;

	if (!o || !o->log)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	o->log(o->ctx, lvl, buf);
}

/* -EBUSY, saying which flusher runs when the shared memory tells. */
static int flusher_busy(const struct meta *m)
{
	struct shmwal_stat *st = malloc(sizeof(*st));
	char pid[32] = "";

	if (st && shmwal_stat(m->dir, st) == 0 && st->shm_present && st->flusher_pid)
		snprintf(pid, sizeof(pid), " (pid %u)", st->flusher_pid);
	free(st);
	return seterr(-EBUSY,
		      "a flusher%s is running on %s (or another repair is): stop it first; a "
		      "repair works on a stopped log",
		      pid, m->dir);
}

/* Takes the flusher lock (see "Exclusion" at the top); its descriptor goes to *fd. */
static int lock_log(const struct meta *m, int *fd)
{
	char path[4096];
	int rc = path_fmt(path, sizeof(path), "%s/%s", m->dir, LOCK_NAME);

	if (rc < 0)
		return rc;
	*fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (*fd < 0)
		return seterr(-errno, "%s: %s", path, strerror(errno));
	rc = ofd_lock_byte(*fd, LOCK_BYTE_FLUSHER, 0);
	if (rc < 0) {
		close(*fd);
		*fd = -1;
		if (rc == -EAGAIN || rc == -EACCES)
			return flusher_busy(m);
		return seterr(rc, "lock %s: %s", path, strerror(-rc));
	}
	return 0;
}

/* Opens segment `first` read-only (a FIFO with its name does not hang the open) into *st.
 * The descriptor, or -errno with the error detail set. */
static int open_seg(const struct repair *r, uint64_t first, char *path, size_t len, struct stat *st)
{
	int fd, rc = seg_path(path, len, r->pdir, first);

	if (rc < 0)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return seterr(-errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, st) < 0) {
		rc = seterr(-errno, "%s: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	return fd;
}

/* Removes temporary files an interrupted repair left in the partition directory (copies of
 * bytes the log still holds: see step 3 at the top). */
static void remove_temps(struct repair *r)
{
	const size_t np = strlen(TMP_PREFIX), ns = strlen(TMP_SUFFIX);
	struct dirent *e;
	DIR *d = opendir(r->pdir);

	if (!d)
		return;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		char path[4096];

		if (n <= np + ns || strncmp(e->d_name, TMP_PREFIX, np) != 0 ||
		    strcmp(e->d_name + n - ns, TMP_SUFFIX) != 0 ||
		    path_fmt(path, sizeof(path), "%s/%s", r->pdir, e->d_name) < 0)
			continue;
		if (io->unlink(path) == 0)
			rlog((void *)r->o, SHMWAL_LOG_INFO,
			     "removed %s, a copy an interrupted repair left", path);
	}
	closedir(d);
}

/* Where the last segment's valid frames end (its first LSN if its header is damaged). */
static uint64_t log_end(const struct repair *r)
{
	uint64_t first = r->l.first[r->l.n - 1], end = first;
	enum shmwal_frame_verdict v;
	const char *why;
	char path[4096];
	struct stat st;
	int fd;

	if (seg_path(path, sizeof(path), r->pdir, first) < 0 ||
	    (fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0)
		return end;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    seg_header_read(fd, r->m, r->p, first, &why, NULL) == 0) {
		int64_t valid =
		    seg_scan_frames(fd, first, (uint64_t)st.st_size, cfg_max_frame(&r->m->cfg), &v);

		if (valid > 0)
			end = first + (uint64_t)valid;
	}
	close(fd);
	return end;
}

/*
 * An explicit cut LSN c: finds the segment that holds it (*k) and checks that c is a frame
 * boundary with valid frames before it in that segment. *k = UINT32_MAX: the partition has no
 * segment and c is 0 (nothing to cut).
 */
static int locate(struct repair *r, uint64_t c, uint32_t *k)
{
	const struct seg_list *l = &r->l;
	const uint64_t max_frame = cfg_max_frame(&r->m->cfg);
	uint64_t first, end, pos, off;
	const uint8_t *map = NULL;
	char path[4096];
	const char *why;
	struct stat st;
	int fd, rc, last;

	*k = UINT32_MAX;
	if (l->n == 0) {
		if (c == 0)
			return 0;
		return seterr(-EINVAL,
			      "LSN %" PRIu64 " lies past the end of partition %u's log: "
			      "it has no segment files",
			      c, r->p);
	}
	if (c < l->first[0])
		return seterr(-ERANGE,
			      "LSN %" PRIu64
			      " lies below partition %u's oldest segment, which starts "
			      "at LSN %" PRIu64 " (truncated away)",
			      c, r->p, l->first[0]);
	for (*k = l->n - 1; l->first[*k] > c; --*k)
		;
	first = l->first[*k];
	if (c == first)
		return 0; /* a boundary whatever the segment holds */
	last = *k + 1 == l->n;
	if ((fd = open_seg(r, first, path, sizeof(path), &st)) < 0)
		return fd;
	if (!S_ISREG(st.st_mode)) {
		why = "not a regular file";
		rc = -EBADMSG;
	} else {
		rc = seg_header_read(fd, r->m, r->p, first, &why, NULL);
	}
	if (rc == -EBADMSG) {
		rc = seterr(rc,
			    "%s: %s; LSN %" PRIu64 " lies in it: cut at its first LSN %" PRIu64
			    " instead",
			    path, why, c, first);
		goto out;
	}
	if (rc < 0) {
		rc = seterr(rc, "%s: %s", path, strerror(-rc));
		goto out;
	}
	end = (uint64_t)st.st_size;
	if (!last && SHMWAL_SEG_HDR + l->first[*k + 1] - first < end)
		end = SHMWAL_SEG_HDR + l->first[*k + 1] - first;
	if (end > SHMWAL_SEG_HDR) {
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED) {
			map = NULL;
			rc = seterr(-errno, "mmap %s: %s", path, strerror(errno));
			goto out;
		}
	}
	for (pos = first, off = SHMWAL_SEG_HDR; pos < c;) {
		enum shmwal_frame_verdict v =
		    off < end ? shmwal_frame_check(map + off, end - off, pos, max_frame)
			      : SHMWAL_FRAME_SHORT;
		uint64_t next;

		if (v != SHMWAL_FRAME_OK && last) {
			rc = seterr(-EINVAL,
				    "LSN %" PRIu64 " lies past the end of partition %u's log, LSN "
				    "%" PRIu64 " (%s offset %" PRIu64 ": %s)",
				    c, r->p, pos, path, off,
				    off < end ? shmwal_frame_verdict_str(v) : "end of file");
			goto out;
		}
		if (v != SHMWAL_FRAME_OK) {
			rc =
			    seterr(-EBADMSG,
				   "%s offset %" PRIu64 " (LSN %" PRIu64 "): %s; the log cannot be "
				   "kept up to LSN %" PRIu64 ": cut at LSN %" PRIu64 " instead",
				   path, off, pos,
				   off < end ? shmwal_frame_verdict_str(v)
					     : "the frames end before the segment's LSN range does",
				   c, pos);
			goto out;
		}
		next = pos + SHMWAL_ALIGN_UP(shmwal_word_len(
				 ((const struct shmwal_frame *)(const void *)(map + off))->word));
		if (next > c) {
			rc = seterr(-EINVAL,
				    "LSN %" PRIu64
				    " is not a frame boundary: the frame at LSN %" PRIu64
				    " (%s offset %" PRIu64 ") runs up to LSN %" PRIu64,
				    c, pos, path, off, next);
			goto out;
		}
		off += next - pos;
		pos = next;
	}
	rc = 0;
out:
	if (map)
		munmap((void *)map, (size_t)st.st_size);
	close(fd);
	return rc;
}

/* Step 3 at the top: segment k, open at fd (header h when hdr_ok), keeps `keep` bytes. */
static int replace_kept(struct repair *r, uint32_t k, int fd, const char *path,
			const struct shmwal_segment_header *h, int hdr_ok, uint64_t keep)
{
	const struct meta *m = r->m;
	struct shmwal_segment_header nh;
	char name[24], tmp[4200];
	int tfd, rc;

	shmwal_segment_name(name, r->l.first[k]);
	if ((rc = path_fmt(tmp, sizeof(tmp), "%s/" TMP_PREFIX "%s" TMP_SUFFIX, r->pdir, name)) < 0)
		return rc;
	tfd = io->open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		       m->cfg.mode & 0666);
	if (tfd < 0)
		return seterr(tfd, "create %s: %s", tmp, strerror(-tfd));
	shmwal_segment_header_init(&nh, r->p, r->l.first[k], m->instance,
				   hdr_ok ? h->created_ns : real_ns());
	rc = fchmod(tfd, m->cfg.mode & 0666) < 0 ? -errno : 0; /* open() applied the umask */
	if (rc == 0)
		rc = m->cfg.backend == SHMWAL_BACKEND_PMEM
			 ? io->fallocate(tfd, (off_t)cfg_pmem_file_bytes(&m->cfg))
			 : io->ftruncate(tfd, (off_t)keep);
	if (rc == 0)
		rc = io_pwrite_all(tfd, &nh, sizeof(nh), 0);
	if (rc < 0)
		seterr(rc, "%s", strerror(-rc));
	else
		rc = io_copy_range(tfd, SHMWAL_SEG_HDR, fd, SHMWAL_SEG_HDR, keep, path);
	if (rc == 0 && (rc = io->fdatasync(tfd)) < 0)
		seterr(rc, "fdatasync: %s", strerror(-rc));
	io->close(tfd);
	if (rc == 0 && (rc = io->rename(tmp, path)) < 0)
		seterr(rc, "rename over %s: %s", path, strerror(-rc));
	if (rc == 0 && (rc = io->fsync_dir(r->pdir)) < 0)
		seterr(rc, "fsync %s: %s", r->pdir, strerror(-rc));
	if (rc < 0) {
		char why[512]; /* a copy: seterr() writes where shmwal_last_error() points */

		snprintf(why, sizeof(why), "%s", shmwal_last_error());
		if (access(tmp, F_OK) == 0)
			io->unlink(tmp); /* the log still holds all of it */
		return seterr(rc, "cut %s (through %s): %s", path, tmp, why);
	}
	return 0;
}

/* 1 when the file at fd holds a non-zero byte from off on, 0 if not, -errno. */
static int nonzero_from(int fd, uint64_t off)
{
	uint8_t buf[16384];
	ssize_t n;

	while ((n = pread(fd, buf, sizeof(buf), (off_t)off)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		for (ssize_t j = 0; j < n; j++)
			if (buf[j])
				return 1;
		off += (uint64_t)n;
	}
	return 0;
}

/* The cut itself (the steps at the top): segment k keeps its frames below c. Returns the
 * number of files written to the quarantine. */
static int cut(struct repair *r, uint32_t k, uint64_t c)
{
	const struct meta *m = r->m;
	const uint64_t first = r->l.first[k], keep = SHMWAL_SEG_HDR + (c - first);
	struct shmwal_segment_header h, qh;
	char path[4096], q[4096];
	const char *why = NULL;
	int fd, rc, hdr_ok, copy = 0, files = 0;
	struct stat st;
	uint64_t size;
	uint32_t j;

	if ((fd = open_seg(r, first, path, sizeof(path), &st)) < 0)
		return fd;
	if (!S_ISREG(st.st_mode)) {
		rc = seterr(-EBADMSG,
			    "%s is not a regular file: move it out of %s, then repair "
			    "again",
			    path, r->pdir);
		goto out;
	}
	size = (uint64_t)st.st_size;
	rc = seg_header_read(fd, m, r->p, first, &why, &h);
	if (rc < 0 && rc != -EBADMSG) {
		rc = seterr(rc, "%s: %s", path, strerror(-rc));
		goto out;
	}
	hdr_ok = rc == 0;
	if (!hdr_ok && c > first) { /* verify and locate() never cut inside a bad header */
		rc = seterr(-EBADMSG, "%s: %s", path, why);
		goto out;
	}
	/* Is anything cut off segment k? */
	if (!hdr_ok)
		copy = 1;
	else if (size > keep)
		copy = m->cfg.backend == SHMWAL_BACKEND_PMEM ? nonzero_from(fd, keep) : 1;
	if (copy < 0) {
		rc = seterr(copy, "%s: %s", path, strerror(-copy));
		goto out;
	}

	/* Step 1: the bytes cut off segment k, copied to the quarantine. */
	if (copy) {
		if (c == first)
			rc = quarantine_copy(m, r->p, first, NULL, fd, path, 0, size, q, sizeof(q));
		else {
			shmwal_segment_header_init(&qh, r->p, c, m->instance, h.created_ns);
			rc = quarantine_copy(m, r->p, c, &qh, fd, path, keep, size, q, sizeof(q));
		}
		if (rc < 0)
			goto out;
		r->res->bytes_copied = size - (c == first ? 0 : keep);
		files++;
		rlog((void *)r->o, SHMWAL_LOG_WARN,
		     "copied %s from offset %" PRIu64 " (LSN %" PRIu64 ") to its end to %s%s", path,
		     c == first ? 0 : keep, c, q,
		     c == first ? " (all of it)" : ", behind a segment header for that LSN");
	}
	/* Step 2: the later segments, newest first. */
	for (j = r->l.n; j-- > k + 1;) {
		char reason[96];

		snprintf(reason, sizeof(reason), "after the cut at LSN %" PRIu64, c);
		rc = quarantine_move(m, r->pdir, r->p, r->l.first[j], rlog, (void *)r->o, reason);
		if (rc < 0)
			goto out;
		r->res->files_moved++;
		files++;
	}
	/* Step 3: segment k replaced by what it keeps. */
	if (copy) {
		rc = replace_kept(r, k, fd, path, &h, hdr_ok, keep);
		if (rc < 0)
			goto out;
		rlog((void *)r->o, SHMWAL_LOG_WARN,
		     "cut %s at offset %" PRIu64 " (LSN %" PRIu64 "): it keeps LSN %" PRIu64
		     "..%" PRIu64,
		     path, keep, c, first, c);
	}
	rc = files;
out:
	close(fd);
	return rc;
}

/* Passes on what verify reports as damage and torn tails (not its notes). */
static void report_damage(void *ctx, const struct shmwal_finding *f)
{
	const struct shmwal_check_options *o = ctx;

	if (f->kind != SHMWAL_FINDING_NOTE && o->report)
		o->report(o->ctx, f);
}

static void progress_fwd(void *ctx, uint32_t part, uint64_t done, uint64_t total)
{
	const struct shmwal_check_options *o = ctx;

	o->progress(o->ctx, part, done, total);
}

SHMWAL_EXPORT int shmwal_repair(const char *dir, uint32_t part, uint64_t cut_lsn,
				const struct shmwal_check_options *o,
				struct shmwal_repair_result *res)
{
	struct shmwal_repair_result none;
	struct repair r;
	struct meta m;
	uint32_t k;
	uint64_t c = cut_lsn;
	int rc, lockfd = -1;

	memset(&r, 0, sizeof(r));
	r.res = res ? res : &none;
	memset(r.res, 0, sizeof(*r.res));
	if ((rc = meta_load_part(dir, part, &m)) < 0)
		return rc;
	r.m = &m;
	r.p = part;
	r.o = o;
	if ((rc = part_dir(r.pdir, sizeof(r.pdir), m.dir, part)) < 0)
		return rc;
	if ((rc = lock_log(&m, &lockfd)) < 0)
		return rc;
	if (shm_exists(&m)) {
		char name[32];

		shm_name(name, m.instance);
		rc = seterr(-EBUSY,
			    "the shared memory of %s exists (%s): a flusher died, or stopped while "
			    "producers were attached, and its rings may hold records that are not "
			    "in the files yet. Start the flusher and stop it once no producer is "
			    "attached (that drains the rings and removes the shared memory), then "
			    "repair",
			    m.dir, name);
		goto out;
	}
	remove_temps(&r);
	if (cut_lsn == SHMWAL_REPAIR_AUTO) {
		struct shmwal_check_options so = {
		    .report = o && o->report ? report_damage : NULL,
		    .progress = o && o->progress ? progress_fwd : NULL,
		    .ctx = (void *)o,
		};
		struct shmwal_verify_stat st;
		struct vcut vc;

		if ((rc = verify_scan(&m, part, &so, 1, &r.l, &st, &vc)) < 0)
			goto out;
		if (!vc.found) {
			r.res->end_lsn = r.res->old_end_lsn = st.end_lsn;
			goto out; /* rc is 0: nothing to repair */
		}
		k = vc.seg;
		c = vc.lsn;
	} else {
		if ((rc = seg_list_load(r.pdir, &r.l)) < 0 || (rc = locate(&r, c, &k)) < 0)
			goto out;
		if (k == UINT32_MAX)
			goto out; /* no segment, cut at 0: nothing to do */
	}
	r.res->old_end_lsn = log_end(&r);
	r.res->end_lsn = c;
	rc = cut(&r, k, c);
out:
	seg_list_free(&r.l);
	if (lockfd >= 0)
		close(lockfd);
	if (rc >= 0)
		clearerr_detail();
	return rc;
}
