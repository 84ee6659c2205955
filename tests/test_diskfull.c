/* SPDX-License-Identifier: MIT */
/*
 * test_diskfull.c - a disk that is really full: the WAL lives on a 2 MiB tmpfs mounted for
 * the test (root only, in a private mount namespace: tests/run provides one, or the test
 * makes its own), most of it taken by a filler file. A flusher child and producers run until
 * the disk is full. Then:
 *   - producers are back-pressured: once the flusher has hit the full disk, at most a
 *     ring's worth of shmwal_try_append calls succeed and then it returns -EAGAIN, and a
 *     producer process whose records cannot all fit stays blocked in shmwal_append;
 *   - the flusher logged the full disk and is still running.
 * Space returns (the filler is removed, or the filesystem remounted larger), and then
 * everything resumes: the blocked producer
 * finishes (its last record durable), new appends become durable, the flusher logs that
 * space is back and stops cleanly, and every record written before and after is in the log
 * exactly once and intact (th_check_log: nothing written before the full disk was damaged,
 * nothing past it lost or duplicated).
 * Without root, or where tmpfs cannot be mounted, the test is skipped and says so.
 * The mount is undone and every child reaped in every path (the teardown).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "helpers.h"

#define FS_BYTES (2u << 20)	 /* the small filesystem */
#define LEFT_FREE (256u << 10)	 /* room left next to the filler */
#define VALUE 300u		 /* bytes per record value: ~340-byte frames */
#define BEFORE 200u		 /* records made durable before the disk fills */
#define CHILD_RECORDS 1500u	 /* ~500 KiB: more than the free space plus the ring */

struct fx {
	char *scratch;	/* TMPDIR/shmwal-diskfull.XXXXXX: mnt/, flusher.log */
	char mnt[4096], wal[4096 + 8], filler[4096 + 8], log[4096 + 16];
	int mounted;
	pid_t flusher, child;
};

static int log_fd = -1; /* in the flusher child */

static void log_line(void *ctx, enum shmwal_log_level lvl, const char *msg)
{
	(void)ctx;
	dprintf(log_fd, "%d: %s\n", (int)lvl, msg);
	if (getenv("SHMWAL_TEST_VERBOSE"))
		fprintf(stderr, "[flusher] %d: %s\n", (int)lvl, msg);
}

static void log_open(void *arg)
{
	const struct fx *f = arg;

	log_fd = open(f->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

static void log_exit(void *arg, int rc)
{
	(void)arg;
	if (rc < 0)
		dprintf(log_fd, "exit: %s\n", shmwal_last_error());
}

/* A flusher child of f->wal whose log lines go to f->log (outside the small filesystem). */
static pid_t flusher_logged(struct fx *f)
{
	const struct th_flusher_spec spec = {
		.opts.log = log_line, .child_setup = log_open, .child_done = log_exit, .arg = f
	};

	return th_flusher_spawn(f->wal, &spec);
}

/* 1 when the flusher's log has a line containing `what`. */
static int log_has(const struct fx *f, const char *what)
{
	char buf[1 << 16];
	int fd = open(f->log, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	return strstr(buf, what) != NULL;
}

static void print_log(const struct fx *f)
{
	char buf[4096];
	int fd = open(f->log, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stdout);
	close(fd);
}

static uint64_t fs_free(const char *path)
{
	struct statvfs v;

	return statvfs(path, &v) == 0 ? (uint64_t)v.f_bavail * v.f_frsize : 0;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->flusher = f->child = -1;
	*state = f;
	return 0;
}

/* Every path: children killed and reaped, shm removed, the mount undone, files removed. */
static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->child > 0) {
		kill(f->child, SIGKILL);
		waitpid(f->child, NULL, 0);
	}
	if (f->flusher > 0) {
		kill(f->flusher, SIGKILL);
		waitpid(f->flusher, NULL, 0);
	}
	if (f->mounted) {
		th_shm_unlink(f->wal);
		if (umount2(f->mnt, MNT_DETACH) < 0)
			fprintf(stderr, "umount %s: %s\n", f->mnt, strerror(errno));
	}
	if (f->scratch) {
		rmdir(f->mnt);
		th_destroy(f->scratch);
		free(f->scratch);
	}
	free(f);
	return 0;
}

static void append_range(struct shmwal *w, uint32_t prod, uint64_t from, uint64_t to,
			 uint64_t *last_lsn)
{
	uint8_t val[VALUE];
	char key[32];

	for (uint64_t s = from; s < to; s++) {
		uint32_t klen = th_key(key, prod, 0, s);

		th_fill(val, VALUE, prod, 0, s);
		assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, key, klen, val, VALUE,
					       last_lsn),
				 0);
	}
}

enum space_returns { REMOVE_FILLER, GROW_FS };

static void disk_full(struct fx *f, enum space_returns how)
{
	uint64_t lsn = 0, n = BEFORE, free_before, durable_full, full_ok, expected[2];
	uint8_t val[VALUE];
	struct th_log_report rep;
	struct shmwal *w;
	char key[32];
	int rc, st, fd;

	if (geteuid() != 0) {
		print_message("skipped: mounting a small filesystem needs root\n");
		skip();
	}
	if (!getenv("SHMWAL_TEST_NS")) {
		/* not under tests/run: a mount namespace of our own, so nothing leaks */
		if (unshare(CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
			print_message("skipped: no private mount namespace (%s)\n",
				      strerror(errno));
			skip();
		}
	}
	f->scratch = th_tmpdir("diskfull");
	assert_non_null(f->scratch);
	snprintf(f->mnt, sizeof(f->mnt), "%s/mnt", f->scratch);
	snprintf(f->wal, sizeof(f->wal), "%s/wal", f->mnt);
	snprintf(f->filler, sizeof(f->filler), "%s/filler", f->mnt);
	snprintf(f->log, sizeof(f->log), "%s/flusher.log", f->scratch);
	assert_int_equal(mkdir(f->mnt, 0700), 0);
	if (mount("shmwal-diskfull", f->mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=2m,mode=0700") <
	    0) {
		print_message("skipped: cannot mount a tmpfs (%s)\n", strerror(errno));
		skip();
	}
	f->mounted = 1;

	assert_int_equal(th_create(f->wal, 1, 64 << 10, 128 << 10, 1024, SHMWAL_SYNC_ALWAYS), 0);
	/* The filler leaves LEFT_FREE bytes: the log fills the disk after ~LEFT_FREE bytes. */
	fd = open(f->filler, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	{
		static const char zeros[4096];

		while (fs_free(f->mnt) > LEFT_FREE)
			assert_int_equal(write(fd, zeros, sizeof(zeros)), (ssize_t)sizeof(zeros));
	}
	close(fd);
	free_before = fs_free(f->mnt);
	print_message("tmpfs of %u KiB; %" PRIu64 " KiB free next to the filler\n", FS_BYTES >> 10,
		      free_before >> 10);

	f->flusher = flusher_logged(f);
	assert_int_equal(th_open(f->wal, &w), 0);
	/* Records made durable before the disk fills: they must come out intact. */
	append_range(w, 0, 0, BEFORE, &lsn);
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC),
			 0);

	/* A producer process with more to write than the disk and the ring can take. */
	f->child = fork();
	if (f->child == 0) {
		struct shmwal *cw;
		uint64_t clsn = 0;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (th_open(f->wal, &cw) < 0)
			_exit(1);
		for (uint64_t s = 0; s < CHILD_RECORDS; s++) { /* no cmocka asserts in a child */
			uint32_t klen = th_key(key, 1, 0, s);

			th_fill(val, VALUE, 1, 0, s);
			if (shmwal_append(cw, 0, SHMWAL_TYPE_PUT, key, klen, val, VALUE, &clsn) < 0)
				_exit(2);
		}
		rc = shmwal_wait_durable(cw, 0, clsn, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC);
		shmwal_close(cw);
		_exit(rc == 0 ? 0 : 3);
	}

	/* Until the flusher has said the disk is full (the ring fills behind it meanwhile). */
	for (int i = 0; !log_has(f, "disk full"); i++) {
		uint32_t klen = th_key(key, 0, 0, n);

		assert_true(i < TH_TIMEOUT_S * 1000);
		th_fill(val, VALUE, 0, 0, n);
		rc = shmwal_try_append(w, 0, SHMWAL_TYPE_PUT, key, klen, val, VALUE, &lsn);
		if (rc == 0) {
			n++;
			continue;
		}
		assert_int_equal(rc, -EAGAIN); /* the documented "ring full" answer */
		usleep(1000);
	}
	/* Back-pressure: from now on at most a ring's worth of appends go through (plus what
	 * the flusher's last sync before the full disk freed), then -EAGAIN. */
	for (full_ok = 0;; full_ok++) {
		uint32_t klen = th_key(key, 0, 0, n);

		th_fill(val, VALUE, 0, 0, n);
		rc = shmwal_try_append(w, 0, SHMWAL_TYPE_PUT, key, klen, val, VALUE, &lsn);
		if (rc == -EAGAIN)
			break;
		assert_int_equal(rc, 0);
		n++;
		assert_true(full_ok < 2 * (64 << 10) / VALUE);
	}
	durable_full = (uint64_t)shmwal_durable_lsn(w, 0);
	print_message("disk full after %" PRIu64 " records of ours (%" PRIu64 " more into the "
		      "ring, then -EAGAIN); %" PRIu64 " KiB free; durable LSN %" PRIu64 "\n",
		      n, full_ok, fs_free(f->mnt) >> 10, durable_full);
	/* The producer whose records cannot fit is still blocked in shmwal_append, and the
	 * flusher did not give up. */
	assert_int_equal(waitpid(f->child, &st, WNOHANG), 0);
	assert_int_equal(waitpid(f->flusher, &st, WNOHANG), 0);

	/* Space returns. */
	if (how == REMOVE_FILLER) {
		assert_int_equal(unlink(f->filler), 0);
		print_message("filler removed: %" PRIu64 " KiB free\n", fs_free(f->mnt) >> 10);
	} else {
		assert_int_equal(mount("shmwal-diskfull", f->mnt, "tmpfs",
				       MS_REMOUNT | MS_NOSUID | MS_NODEV, "size=8m"),
				 0);
		print_message("remounted with size=8m: %" PRIu64 " KiB free\n",
			      fs_free(f->mnt) >> 10);
	}
	assert_int_equal(th_wait(f->child, TH_TIMEOUT_S), 0);
	f->child = -1;
	/* and appends go through again */
	{
		uint64_t from = n;

		n += 100;
		append_range(w, 0, from, n, &lsn);
	}
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC),
			 0);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(f->flusher), 0);
	f->flusher = -1;
	print_log(f);
	assert_true(log_has(f, "disk full"));
	assert_true(log_has(f, "disk has space again"));

	expected[0] = n;
	expected[1] = CHILD_RECORDS;
	if (th_check_log(f->wal, 2, 1, expected, NULL, NULL, &rep))
		fail_msg("after the full disk: %s", rep.first_error);
	assert_int_equal(rep.records, n + CHILD_RECORDS);
	print_message("all %" PRIu64 " records present once and intact (%u before the disk "
		      "filled)\n",
		      rep.records, BEFORE);
}

/* Space returns when the filler file is removed. */
static void test_disk_full_filler_removed(void **state) { disk_full(*state, REMOVE_FILLER); }

/* Space returns when the filesystem is remounted larger. */
static void test_disk_full_fs_grown(void **state) { disk_full(*state, GROW_FS); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_disk_full_filler_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_full_fs_grown, setup, teardown),
	};

	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
