/* SPDX-License-Identifier: MIT */
/*
 * flusher.c - the campaign's flusher child: shmwal_flusher_run() with the file-operation seam
 * (persist/io.h) wrapped so that the flusher parks, forever, at the point the driver armed in
 * ctl->park_at, and says so in ctl->parked. The driver then SIGKILLs it, so each such kill
 * lands exactly where it is counted:
 *   mid-write      half of a batch written (a torn tail for recovery to cut)
 *   rotate-sync    the fdatasync of a full segment, before rotating
 *   seg-created    the next segment file created, empty
 *   header-written its header written, not synced
 *   header-synced  its header synced, the directory not
 *   dir-synced     the directory synced; the new segment not yet published to shared memory
 * The last four follow seg_create() (persist/segment.c) step by step. With the pmem backend
 * the batch is a copy into the mapped segment (mid-write: half of it copied) and the sync a
 * drain or msync (rotate-sync: the one that reaches the end of a full segment). Its log lines
 * go to a file (and to stderr with --verbose).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmwal_format.h"
#include "persist/io.h"
#include "stress/campaign/campaign.h"
#include "tests/helpers.h"

const char *const park_names[PARK_N] = { "random",	"mid-write",	  "rotate-sync",
					 "seg-created", "header-written", "header-synced",
					 "dir-synced" };

static int fl_new_seg_fd = -1; /* the segment seg_create() is making, until its dir is synced */
static uint64_t fl_segment_bytes;

/* Parks here, forever, if the driver armed this point: the kill lands exactly here. */
static void park_check(int point)
{
	if (__atomic_load_n(&ctl->park_at, __ATOMIC_ACQUIRE) != point)
		return;
	__atomic_store_n(&ctl->parked, point, __ATOMIC_RELEASE);
	for (;;)
		pause();
}

static int is_seg(const char *path)
{
	size_t n = strlen(path);

	return n > 4 && !strcmp(path + n - 4, ".seg");
}

static int c_open(const char *path, int flags, mode_t mode)
{
	int fd = io_default.open(path, flags, mode);

	if (fd >= 0 && (flags & O_CREAT) && is_seg(path)) {
		fl_new_seg_fd = fd; /* until c_fsync_dir: the last step of seg_create() */
		park_check(PARK_SEG_CREATED);
	}
	return fd;
}

static ssize_t c_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	ssize_t n;

	if (fd == fl_new_seg_fd && off == 0) {
		n = io_default.pwrite(fd, buf, len, off);
		park_check(PARK_HDR_WRITTEN);
		return n;
	}
	if (len >= 2 * SHMWAL_FRAME_HDR &&
	    __atomic_load_n(&ctl->park_at, __ATOMIC_ACQUIRE) == PARK_MID_WRITE) {
		n = io_default.pwrite(fd, buf, len / 2 + 3, off); /* a torn batch */
		park_check(PARK_MID_WRITE);
		return n;
	}
	return io_default.pwrite(fd, buf, len, off);
}

static int c_fdatasync(int fd)
{
	struct stat st;
	int rc;

	if (fd == fl_new_seg_fd) {
		rc = io_default.fdatasync(fd);
		park_check(PARK_HDR_SYNCED);
		return rc;
	}
	/* (pmem segments have their full size from the start: their rotation sync is c_drain) */
	if (!opt.backend && fstat(fd, &st) == 0 &&
	    (uint64_t)st.st_size >= SHMWAL_SEG_HDR + fl_segment_bytes)
		park_check(PARK_ROTATE_SYNC); /* a full segment: the rotation's sync */
	return io_default.fdatasync(fd);
}

static int c_fsync_dir(const char *path)
{
	int rc = io_default.fsync_dir(path);

	if (fl_new_seg_fd >= 0) {
		fl_new_seg_fd = -1; /* seg_create() is done; rotate() publishes it next */
		park_check(PARK_DIR_SYNCED);
	}
	return rc;
}

static void c_copy(struct io_map *m, uint64_t off, const void *src, size_t len)
{
	if (len >= 2 * SHMWAL_FRAME_HDR &&
	    __atomic_load_n(&ctl->park_at, __ATOMIC_ACQUIRE) == PARK_MID_WRITE) {
		io_default.copy(m, off, src, len / 2 + 3); /* a torn batch */
		park_check(PARK_MID_WRITE);
	}
	io_default.copy(m, off, src, len);
}

static int c_drain(struct io_map *m, uint64_t off, size_t len)
{
	if (off + len >= SHMWAL_SEG_HDR + fl_segment_bytes)
		park_check(PARK_ROTATE_SYNC); /* a full segment: the rotation's sync */
	return io_default.drain(m, off, len);
}

static const char *fl_logpath; /* the next child's log file (set before the fork) */
static int fl_log_fd = -1;

static void fl_log(void *c, enum shmwal_log_level lvl, const char *msg)
{
	(void)c;
	dprintf(fl_log_fd, "[%d] %d: %s\n", (int)getpid(), (int)lvl, msg);
	if (opt.verbose)
		fprintf(stderr, "[flusher %d] %d: %s\n", (int)getpid(), (int)lvl, msg);
}

/* In the child: the parking seam in place, the log file open. */
static void fl_setup(void *arg)
{
	static struct io_ops ops;

	(void)arg;
	ops = io_default;
	ops.open = c_open;
	ops.pwrite = c_pwrite;
	ops.fdatasync = c_fdatasync;
	ops.fsync_dir = c_fsync_dir;
	ops.copy = c_copy;
	ops.drain = c_drain;
	fl_segment_bytes = opt.segment_bytes;
	io_set(&ops);
	fl_log_fd = open(fl_logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

static void fl_done(void *arg, int rc)
{
	(void)arg;
	if (rc < 0)
		dprintf(fl_log_fd, "[%d] exit: %s\n", (int)getpid(), shmwal_last_error());
}

pid_t flusher_start(const char *dir, const char *logpath)
{
	const struct th_flusher_spec spec = {
		.opts.log = fl_log,
		.child_setup = fl_setup,
		.child_done = fl_done,
		.name = "flusher",
	};

	fl_logpath = logpath;
	return th_flusher_spawn(dir, &spec);
}
