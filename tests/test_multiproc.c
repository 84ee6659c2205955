/* SPDX-License-Identifier: MIT */
/*
 * test_multiproc.c - several producer processes x threads x partitions against a real flusher,
 * every record checked afterwards (helpers.h: nothing lost, nothing duplicated, per-stream
 * order kept, every byte intact).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "helpers.h"

static void check_all(const char *dir, uint32_t nprod, uint32_t nthr, uint64_t per_stream)
{
	uint64_t *expected = calloc((size_t)nprod * nthr, sizeof(uint64_t));
	struct th_log_report rep;
	int rc;

	for (uint32_t i = 0; i < nprod * nthr; i++)
		expected[i] = per_stream;
	rc = th_check_log(dir, nprod, nthr, expected, NULL, NULL, &rep);
	if (rc)
		fprintf(stderr, "log check: %s\n", rep.first_error);
	assert_int_equal(rc, 0);
	assert_int_equal(rep.records, (uint64_t)nprod * nthr * per_stream);
	free(expected);
}

static void run_producers(struct th_producer *tmpl, uint32_t nprod)
{
	pid_t *pids = calloc(nprod, sizeof(pid_t));
	uint32_t i;

	th_spawn_producers(tmpl, nprod, pids);
	for (i = 0; i < nprod; i++)
		assert_true(pids[i] > 0);
	for (i = 0; i < nprod; i++)
		assert_int_equal(th_wait(pids[i], TH_TIMEOUT_S), 0);
	free(pids);
}

/* 4 processes x 3 threads x 2 partitions, records up to the limit, a 64 KiB ring for ~18 MB:
 * the rings wrap hundreds of times and producers wait for space all the time. */
static void test_many_producers_small_ring(void **state)
{
	char *dir = th_tmpdir("mp");
	struct th_producer p = { .threads = 3, .records = 1500, .min_value = TH_STAMP_MIN,
				 .max_value = 2048, .partitions = 2, .seed = 42 };
	pid_t fl;

	(void)state;
	assert_int_equal(th_create(dir, 2, 64 << 10, 256 << 10, 2048, SHMWAL_SYNC_NONE), 0);
	fl = th_flusher_start(dir, 0);
	p.dir = dir;
	run_producers(&p, 4);
	assert_int_equal(th_flusher_stop(fl), 0);
	check_all(dir, 4, 3, 1500);
	th_destroy(dir);
	free(dir);
}

/* Every record waited for, under each sync mode: the durable LSN passes it, and it is
 * readable from the files right away. */
static void durable_mode(enum shmwal_sync sync)
{
	char *dir = th_tmpdir("durable");
	struct th_producer p = { .threads = 2, .records = 200, .min_value = TH_STAMP_MIN,
				 .max_value = 512, .partitions = 2, .wait_each = 1, .seed = 7 };
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal *w;
	struct th_stamp st;
	uint8_t val[100];
	char key[32];
	uint32_t klen = th_key(key, 9, 9, 1);
	uint64_t lsn;
	pid_t fl;

	assert_int_equal(th_create(dir, 2, 1 << 20, 1 << 20, 1024, sync), 0);
	fl = th_flusher_start(dir, 0);
	p.dir = dir;
	run_producers(&p, 2);

	assert_int_equal(th_open(dir, &w), 0);
	th_fill(val, sizeof(val), 9, 9, 1);
	assert_int_equal(shmwal_append(w, 1, SHMWAL_TYPE_PUT, key, klen, val, sizeof(val), &lsn),
			 0);
	assert_int_equal(shmwal_wait_durable(w, 1, lsn, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC),
			 0);
	assert_true(shmwal_durable_lsn(w, 1) > (int64_t)lsn);
	assert_int_equal(shmwal_reader_open(dir, 1, lsn, &r), 0);
	assert_int_equal(shmwal_reader_next(r, &rec, 0), 0);
	assert_int_equal(rec.lsn, lsn);
	assert_int_equal(rec.value_len, sizeof(val));
	assert_int_equal(th_check(rec.value, rec.value_len, &st), 0);
	assert_int_equal(st.producer, 9);
	assert_int_equal(rec.key_len, klen);
	assert_memory_equal(rec.key, key, klen);
	assert_int_equal(shmwal_reader_next(r, &rec, 0), -ETIMEDOUT);
	shmwal_reader_close(r);
	shmwal_close(w);

	assert_int_equal(th_flusher_stop(fl), 0);
	/* the extra record is stream 9.9, seq 1 (streams up to 10 x 10 are known) */
	{
		uint64_t expected[10 * 10] = { 0 };
		struct th_log_report rep;

		for (int i = 0; i < 2; i++)
			for (int t = 0; t < 2; t++)
				expected[i * 10 + t] = 200;
		expected[9 * 10 + 9] = 0;
		if (th_check_log(dir, 10, 10, expected, NULL, NULL, &rep))
			fail_msg("log check: %s", rep.first_error);
		assert_int_equal(rep.records, 2 * 2 * 200 + 1);
	}
	th_destroy(dir);
	free(dir);
}

static void test_durable_sync_none(void **state) { (void)state; durable_mode(SHMWAL_SYNC_NONE); }
static void test_durable_sync_interval(void **state)
{
	(void)state;
	durable_mode(SHMWAL_SYNC_INTERVAL);
}
static void test_durable_sync_always(void **state)
{
	(void)state;
	durable_mode(SHMWAL_SYNC_ALWAYS);
}

/* A reader per partition follows the log live while producers write. */
struct follow {
	const char *dir;
	uint32_t part;
	uint32_t nprod, nthr;
	uint64_t want;	    /* records to see */
	uint64_t seen;
	uint64_t errors;
	uint64_t next[16];  /* per stream: next seq expected in this partition */
	uint32_t parts;
};

static void *follower(void *arg)
{
	struct follow *f = arg;
	struct shmwal_reader *r;
	struct shmwal_record rec;

	if (shmwal_reader_open(f->dir, f->part, SHMWAL_LSN_OLDEST, &r) < 0) {
		f->errors++;
		return NULL;
	}
	while (f->seen < f->want) {
		struct th_stamp st;
		int rc = shmwal_reader_next(r, &rec, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC);
		uint32_t s;

		if (rc < 0) {
			fprintf(stderr, "follower p%u: %s\n", f->part, shmwal_last_error());
			f->errors++;
			break;
		}
		if (th_check(rec.value, rec.value_len, &st) < 0 || st.producer >= f->nprod ||
		    st.thread >= f->nthr) {
			f->errors++;
			continue;
		}
		s = st.producer * f->nthr + st.thread;
		/* records of a stream land in partition seq % parts, in order */
		if (st.seq != f->next[s] || st.seq % f->parts != f->part)
			f->errors++;
		f->next[s] = st.seq + f->parts;
		f->seen++;
	}
	shmwal_reader_close(r);
	return NULL;
}

static void test_live_readers(void **state)
{
	char *dir = th_tmpdir("live");
	struct th_producer p = { .threads = 2, .records = 2000, .min_value = TH_STAMP_MIN,
				 .max_value = 300, .partitions = 2, .seed = 3 };
	struct follow f[2];
	pthread_t tid[2];
	pid_t fl, pids[3];
	uint32_t i;

	(void)state;
	assert_int_equal(th_create(dir, 2, 128 << 10, 128 << 10, 512, SHMWAL_SYNC_INTERVAL), 0);
	fl = th_flusher_start(dir, 0);
	p.dir = dir;
	th_spawn_producers(&p, 3, pids);
	for (i = 0; i < 2; i++) {
		memset(&f[i], 0, sizeof(f[i]));
		f[i].dir = dir;
		f[i].part = i;
		f[i].nprod = 3;
		f[i].nthr = 2;
		f[i].parts = 2;
		f[i].want = 3 * 2 * 2000 / 2;
		for (int s = 0; s < 6; s++)
			f[i].next[s] = i;
		pthread_create(&tid[i], NULL, follower, &f[i]);
	}
	for (i = 0; i < 3; i++)
		assert_int_equal(th_wait(pids[i], TH_TIMEOUT_S), 0);
	for (i = 0; i < 2; i++) {
		pthread_join(tid[i], NULL);
		assert_int_equal(f[i].errors, 0);
		assert_int_equal(f[i].seen, f[i].want);
	}
	assert_int_equal(th_flusher_stop(fl), 0);
	check_all(dir, 3, 2, 2000);
	th_destroy(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many_producers_small_ring),
		cmocka_unit_test(test_durable_sync_none),
		cmocka_unit_test(test_durable_sync_interval),
		cmocka_unit_test(test_durable_sync_always),
		cmocka_unit_test(test_live_readers),
	};

	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
