/* SPDX-License-Identifier: MIT */
/*
 * test_faults.c - I/O failures injected through the flusher's file-operation seam
 * (persist/io.h): a failing fdatasync and a full disk. The flusher runs in a child process
 * whose seam fails on cue; producers and checks run in the parent.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "helpers.h"
#include "persist/io.h"

/* What the child's seam does; lives in shared memory so the parent can steer it. */
struct faults {
	int fsync_ok;	    /* fdatasync calls that succeed before one fails with EIO (-1: never) */
	int enospc;	    /* while non-zero, pwrite fails with ENOSPC */
	uint64_t enospc_hits; /* how many pwrites failed so */
	uint64_t fsyncs;
};

static struct faults *fx;

static int f_fdatasync(int fd)
{
	if (fx->fsync_ok >= 0 && __atomic_fetch_add(&fx->fsyncs, 1, __ATOMIC_RELAXED) >=
					 (uint64_t)fx->fsync_ok)
		return -EIO;
	return io_default.fdatasync(fd);
}

static ssize_t f_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	if (__atomic_load_n(&fx->enospc, __ATOMIC_ACQUIRE)) {
		__atomic_fetch_add(&fx->enospc_hits, 1, __ATOMIC_RELAXED);
		return -ENOSPC;
	}
	return io_default.pwrite(fd, buf, len, off);
}

static void faulty_setup(void *arg)
{
	static struct io_ops ops;

	(void)arg;
	ops = io_default;
	ops.fdatasync = f_fdatasync;
	ops.pwrite = f_pwrite;
	io_set(&ops);
}

/* A flusher child with the faulty seam. Exit status as th_flusher_spawn says: 0 clean,
 * TH_FLUSHER_EIO (5) for -EIO, else an error (its message on stderr). */
static pid_t faulty_flusher(const char *dir)
{
	const struct th_flusher_spec spec = { .child_setup = faulty_setup, .name = "faulty flusher" };

	return th_flusher_spawn(dir, &spec);
}

static char *make_wal(enum shmwal_sync sync)
{
	char *dir = th_tmpdir("faults");

	assert_int_equal(th_create(dir, 1, 256 << 10, 64 << 10, 1024, sync), 0);
	return dir;
}

static void append_n(struct shmwal *w, uint32_t prod, uint64_t from, uint64_t n, uint64_t *lsns)
{
	uint8_t val[300];
	char key[32];

	for (uint64_t s = from; s < from + n; s++) {
		uint32_t klen = th_key(key, prod, 0, s);

		th_fill(val, sizeof(val), prod, 0, s);
		assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, key, klen, val, sizeof(val),
					       &lsns[s]),
				 0);
	}
}

/*
 * fdatasync fails (EIO) at the n-th call, for n = 2..7 (a batch's sync, a rotation's sync, a
 * new segment's header sync): the flusher stops with -EIO, durable never covers a record
 * whose sync failed, and a restarted flusher writes those records again from the ring rather
 * than trusting the page cache. At the end every record is there, once.
 */
static void test_fsync_eio_stops_and_restart_recovers(void **state)
{
	(void)state;
	for (int fail_at = 1; fail_at <= 6; fail_at++) {
		char *dir = make_wal(SHMWAL_SYNC_ALWAYS), key[32];
		uint64_t n = 0, lsn = 0, expected[1];
		struct th_log_report rep;
		struct shmwal *w;
		uint8_t val[300];
		int64_t durable_at_fail;
		int status = -1;
		pid_t fl;

		fx->fsync_ok = fail_at;
		fx->fsyncs = 0;
		fl = faulty_flusher(dir);
		assert_int_equal(th_open(dir, &w), 0);
		/* append until the flusher has failed (the ring absorbs what it cannot take) */
		for (;;) {
			uint32_t klen = th_key(key, 0, 0, n);
			int rc;

			th_fill(val, sizeof(val), 0, 0, n);
			rc = shmwal_try_append(w, 0, SHMWAL_TYPE_PUT, key, klen, val, sizeof(val),
					       &lsn);
			if (rc == 0) {
				n++;
				continue;
			}
			assert_int_equal(rc, -EAGAIN);
			if (waitpid(fl, &status, WNOHANG) == fl)
				break;
			sched_yield();
		}
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), TH_FLUSHER_EIO); /* it stopped by itself */
		durable_at_fail = shmwal_durable_lsn(w, 0);
		assert_true(durable_at_fail <= (int64_t)lsn);
		/* nothing past the failure becomes durable while no flusher runs */
		assert_int_equal(shmwal_wait_durable(w, 0, lsn, 50000000ull), -ETIMEDOUT);
		assert_int_equal(shmwal_durable_lsn(w, 0), durable_at_fail);

		fl = th_flusher_start(dir, 0); /* the disk is fine again */
		assert_int_equal(shmwal_wait_durable(w, 0, lsn,
						     (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC),
				 0);
		shmwal_close(w);
		assert_int_equal(th_flusher_stop(fl), 0);
		expected[0] = n;
		if (th_check_log(dir, 1, 1, expected, NULL, NULL, &rep))
			fail_msg("EIO at fdatasync #%d: %s", fail_at + 1, rep.first_error);
		assert_int_equal(rep.records, n);
		th_destroy(dir);
		free(dir);
	}
}

/*
 * The disk is full for a while: the flusher keeps the batch in the ring, producers are held
 * back, nothing is lost or damaged, and everything goes through once space returns.
 */
static void test_disk_full_backpressure(void **state)
{
	char *dir = make_wal(SHMWAL_SYNC_INTERVAL);
	uint64_t lsns[2000], expected[1] = { 2000 };
	struct th_log_report rep;
	struct shmwal *w;
	pid_t fl, prod;

	(void)state;
	fx->fsync_ok = -1;
	fx->enospc_hits = 0;
	fl = faulty_flusher(dir);
	assert_int_equal(th_open(dir, &w), 0);
	append_n(w, 0, 0, 100, lsns);
	assert_int_equal(shmwal_wait_durable(w, 0, lsns[99], (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC),
			 0);
	__atomic_store_n(&fx->enospc, 1, __ATOMIC_RELEASE);
	/* A producer fills the ring (256 KiB, ~330 B records) and blocks on it. */
	prod = fork();
	if (prod == 0) {
		struct shmwal *pw;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (th_open(dir, &pw) < 0)
			_exit(1);
		append_n(pw, 0, 100, 1900, lsns);
		_exit(shmwal_wait_durable(pw, 0, lsns[1999], 120 * SHMWAL_NS_PER_SEC) == 0 ? 0 : 2);
	}
	/* wait until the flusher has hit the full disk repeatedly and the ring is full */
	for (int i = 0; i < TH_TIMEOUT_S * 100 && __atomic_load_n(&fx->enospc_hits, __ATOMIC_RELAXED) < 5;
	     i++)
		usleep(10000);
	assert_true(__atomic_load_n(&fx->enospc_hits, __ATOMIC_RELAXED) >= 5);
	assert_true(shmwal_durable_lsn(w, 0) <= (int64_t)lsns[99] + 400);
	__atomic_store_n(&fx->enospc, 0, __ATOMIC_RELEASE); /* space returns */
	assert_int_equal(th_wait(prod, TH_TIMEOUT_S), 0);
	shmwal_close(w);
	kill(fl, SIGTERM);
	assert_int_equal(th_wait(fl, TH_TIMEOUT_S), 0);
	if (th_check_log(dir, 1, 1, expected, NULL, NULL, &rep))
		fail_msg("%s", rep.first_error);
	assert_int_equal(rep.records, 2000);
	th_destroy(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fsync_eio_stops_and_restart_recovers),
		cmocka_unit_test(test_disk_full_backpressure),
	};

	fx = mmap(NULL, sizeof(*fx), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (fx == MAP_FAILED)
		return 1;
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
