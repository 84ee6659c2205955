/* SPDX-License-Identifier: MIT */
/*
 * quarantine.c - moving segment files and copying bytes out of the log into DIR/quarantine
 * (see quarantine.h). Names: pNNN-<first LSN, 16 hex>.seg.<CLOCK_REALTIME ns>, so that what
 * was taken out sorts by partition and LSN, and two repairs of the same range never collide.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmwal_format.h"
#include "common.h"
#include "io.h"
#include "quarantine.h"

/* Makes DIR/quarantine if it is missing: with the WAL's mode (mkdir applied the umask), and
 * its own entry durable before anything moved into it is. Its path goes to qdir. */
static int quarantine_dir(const struct meta *m, char *qdir, size_t len)
{
	mode_t dmode = (mode_t)(m->cfg.mode | ((m->cfg.mode & 0444) >> 2)); /* r implies x */
	int rc = path_fmt(qdir, len, "%s/%s", m->dir, QUARANTINE_NAME);

	if (rc < 0)
		return rc;
	rc = io->mkdir(qdir, dmode);
	if (rc == 0) {
		int dfd = open(qdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		rc = dfd < 0 || fchmod(dfd, dmode) < 0 ? -errno : 0;
		if (dfd >= 0)
			close(dfd);
		if (rc == 0)
			rc = io->fsync_dir(m->dir);
	}
	if (rc < 0 && rc != -EEXIST)
		return seterr(rc, "%s: %s", qdir, strerror(-rc));
	return 0;
}

/* A free name in qdir for partition p and first LSN `first`. */
static int quarantine_name(char *buf, size_t len, const char *qdir, uint32_t p, uint64_t first)
{
	char name[24];
	struct stat st;
	int rc;

	shmwal_segment_name(name, first);
	for (uint64_t ns = real_ns();; ns++) {
		if ((rc = path_fmt(buf, len, "%s/p%03u-%s.%" PRIu64, qdir, p, name, ns)) < 0)
			return rc;
		if (lstat(buf, &st) < 0 && errno == ENOENT)
			return 0;
	}
}

int quarantine_move(const struct meta *m, const char *pdir, uint32_t p, uint64_t first,
		    rec_log_fn log, void *ctx, const char *why)
{
	char from[4096], qdir[4096], to[4096];
	int rc;

	if ((rc = seg_path(from, sizeof(from), pdir, first)) < 0 ||
	    (rc = quarantine_dir(m, qdir, sizeof(qdir))) < 0 ||
	    (rc = quarantine_name(to, sizeof(to), qdir, p, first)) < 0)
		return rc;
	rc = io->rename(from, to);
	if (rc == 0)
		rc = io->fsync_dir(pdir);
	if (rc == 0)
		rc = io->fsync_dir(qdir);
	if (rc < 0)
		return seterr(rc, "move %s to %s: %s", from, to, strerror(-rc));
	if (log)
		log(ctx, SHMWAL_LOG_WARN, "moved %s to %s: %s", from, to, why);
	return 0;
}

int quarantine_copy(const struct meta *m, uint32_t p, uint64_t name_lsn,
		    const struct shmwal_segment_header *hdr, int src_fd, const char *src_path,
		    uint64_t from, uint64_t to, char *out, size_t len)
{
	char qdir[4096], tmp[4200];
	uint64_t hlen = hdr ? sizeof(*hdr) : 0;
	int fd, rc;

	if ((rc = quarantine_dir(m, qdir, sizeof(qdir))) < 0 ||
	    (rc = quarantine_name(out, len, qdir, p, name_lsn)) < 0 ||
	    (rc = path_fmt(tmp, sizeof(tmp), "%s.partial", out)) < 0)
		return rc;
	fd = io->open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		      m->cfg.mode & 0666);
	if (fd < 0)
		return seterr(fd, "create %s: %s", tmp, strerror(-fd));
	rc = fchmod(fd, m->cfg.mode & 0666) < 0 ? -errno : 0; /* open() applied the umask */
	if (rc == 0)
		rc = io->ftruncate(fd, (off_t)(hlen + to - from));
	if (rc == 0 && hdr)
		rc = io_pwrite_all(fd, hdr, sizeof(*hdr), 0);
	if (rc < 0)
		seterr(rc, "%s", strerror(-rc));
	else
		rc = io_copy_range(fd, hlen, src_fd, from, to, src_path);
	if (rc == 0 && (rc = io->fdatasync(fd)) < 0)
		seterr(rc, "fdatasync: %s", strerror(-rc));
	io->close(fd);
	if (rc == 0 && (rc = io->rename(tmp, out)) < 0)
		seterr(rc, "rename to %s: %s", out, strerror(-rc));
	if (rc == 0 && (rc = io->fsync_dir(qdir)) < 0)
		seterr(rc, "fsync %s: %s", qdir, strerror(-rc));
	if (rc < 0) {
		char why[512]; /* a copy: seterr() writes where shmwal_last_error() points */

		snprintf(why, sizeof(why), "%s", shmwal_last_error());
		io->unlink(tmp); /* a partial copy of bytes the log still holds, if any is left */
		return seterr(rc, "copy to %s: %s", tmp, why);
	}
	return 0;
}
