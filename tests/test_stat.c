/* SPDX-License-Identifier: MIT */
/*
 * test_stat.c - shmwal_stat() as a metrics source: the files' figures without a flusher, the
 * counters and rates with one, the sync-latency histogram, ring-full waits.
 *
 * Rates are published by the flusher once a second; tests wait for the state they expect
 * (up to TH_TIMEOUT_S) rather than for a time.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "helpers.h"

static void pause_ms(unsigned ms)
{
	struct timespec ts = {0, (long)ms * 1000000L};

	nanosleep(&ts, NULL);
}

static uint64_t real_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct shmwal_stat *snap(const char *dir)
{
	struct shmwal_stat *st = malloc(sizeof(*st));

	assert_non_null(st);
	EXPECT_OK(shmwal_stat(dir, st));
	return st;
}

/* Counters, files and rates of a WAL with a flusher, then without one. */
static void test_counters_and_rates(void **state)
{
	char *dir = th_tmpdir("stat");
	struct shmwal_stat *st;
	struct shmwal *w;
	uint64_t lsn = 0, t0 = real_now(), n = 0, sum = 0;
	time_t deadline;
	pid_t fl;

	(void)state;
	EXPECT_OK(th_create(dir, 2, 1 << 20, 64 << 10, 256, SHMWAL_SYNC_ALWAYS));
	fl = th_flusher_start(dir, 0);
	assert_true(fl > 0);
	EXPECT_OK(th_open(dir, &w));
	/* append to partition 1 until the flusher has published non-zero rates */
	deadline = time(NULL) + TH_TIMEOUT_S;
	for (;;) {
		for (int i = 0; i < 100; i++, n++)
			EXPECT_OK(shmwal_append(w, 1, SHMWAL_TYPE_PUT, "k", 1, "value", 5, &lsn));
		EXPECT_OK(shmwal_wait_durable(w, 1, lsn, (uint64_t)TH_TIMEOUT_S * 1000000000ull));
		st = snap(dir);
		if (st->appends_per_s && st->part[1].records_per_s && st->part[1].bytes_per_s &&
		    st->part[1].append_bytes_per_s)
			break;
		free(st);
		if (time(NULL) > deadline)
			fail_msg("no rates published");
	}
	assert_true(st->shm_present && st->flusher_running);
	assert_int_equal(st->flusher_pid, (uint32_t)fl);
	assert_true(st->flusher_start_ns >= t0 - 1000000000ull &&
		    st->flusher_start_ns <= real_now());
	assert_int_equal(st->live_producers, 1);
	assert_int_equal(st->appends, n);
	assert_int_equal(st->ring_full_waits, 0);
	assert_int_equal(st->part[1].records, n);
	assert_int_equal(st->part[1].records_durable, n); /* every one waited for */
	assert_true(st->part[1].durable > lsn && st->part[1].durable == st->part[1].tail);
	assert_int_equal(st->part[1].bytes, st->part[1].durable);
	/* every sync is in the histogram once, and took some time */
	for (unsigned b = 0; b < SHMWAL_SYNC_HIST_BUCKETS; b++)
		sum += st->part[1].sync_hist[b];
	assert_true(st->part[1].syncs > 0);
	assert_int_equal(sum, st->part[1].syncs);
	assert_true(st->part[1].sync_ns_total >= st->part[1].sync_ns_last &&
		    st->part[1].sync_ns_last > 0);
	/* the files: partition 0 has its one (empty) segment, partition 1 several */
	assert_int_equal(st->part[0].segments, 1);
	assert_int_equal(st->part[0].oldest, 0);
	assert_true(st->part[1].segments >= 1);
	assert_true(st->part[1].segment_bytes >= st->part[1].durable);
	assert_int_equal(st->part[0].records, 0);
	assert_int_equal(st->part[0].records_per_s, 0);
	free(st);
	/* once appends stop, the rates fall back to zero */
	deadline = time(NULL) + TH_TIMEOUT_S;
	for (;;) {
		st = snap(dir);
		if (!st->appends_per_s && !st->part[1].records_per_s)
			break;
		free(st);
		assert_true(time(NULL) <= deadline);
		pause_ms(50);
	}
	free(st);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	/* no flusher, no shared memory: the files still count */
	st = snap(dir);
	assert_false(st->shm_present);
	assert_false(st->flusher_running);
	assert_int_equal(st->part[1].records, 0);
	assert_true(st->part[1].segments >= 1 && st->part[1].segment_bytes > 0);
	free(st);
	th_destroy(dir);
	free(dir);
}

/* An append that waits for ring space is counted. */
static void test_ring_full_waits(void **state)
{
	char *dir = th_tmpdir("stat");
	struct shmwal_stat *st;
	struct shmwal *w;
	uint8_t val[1024];
	time_t deadline;
	pid_t fl, child;

	(void)state;
	memset(val, 'x', sizeof(val));
	EXPECT_OK(th_create(dir, 1, 64 << 10, 64 << 10, sizeof(val), SHMWAL_SYNC_NONE));
	fl = th_flusher_start(dir, 0);
	assert_true(fl > 0);
	EXPECT_OK(th_open(dir, &w)); /* the flusher is up */
	assert_int_equal(kill(fl, SIGSTOP), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct shmwal *cw;
		int rc = th_open(dir, &cw);

		/* twice the ring: the second half waits for the stopped flusher */
		for (int i = 0; rc == 0 && i < 128; i++)
			rc = shmwal_append(cw, 0, SHMWAL_TYPE_PUT, NULL, 0, val, sizeof(val), NULL);
		if (rc == 0)
			shmwal_close(cw);
		_exit(rc == 0 ? 0 : 1);
	}
	/* wait until the child's claims run a ring past the free space: it waits */
	deadline = time(NULL) + TH_TIMEOUT_S;
	for (;;) {
		st = snap(dir);
		if (st->part[0].tail > st->part[0].head + (64 << 10))
			break;
		free(st);
		if (time(NULL) > deadline) {
			kill(fl, SIGCONT);
			fail_msg("the ring never filled");
		}
		pause_ms(5);
	}
	free(st);
	assert_int_equal(kill(fl, SIGCONT), 0);
	assert_int_equal(th_wait(child, TH_TIMEOUT_S), 0);
	st = snap(dir);
	assert_true(st->ring_full_waits >= 1);
	assert_int_equal(st->appends, 128);
	free(st);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	th_destroy(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counters_and_rates),
	    cmocka_unit_test(test_ring_full_waits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
