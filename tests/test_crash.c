/* SPDX-License-Identifier: MIT */
/*
 * test_crash.c - processes killed with SIGKILL: the flusher (repeatedly, mid-run), producers
 * (at random moments), and a producer dying at each step of the claim protocol (layout.h).
 * Afterwards every record is checked: every acknowledged record present exactly once, intact,
 * in per-stream order; torn claims never show up as records.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "helpers.h"
#include "shmwal_format.h"

/* shm/producer.c: runs the claim protocol up to `step`, for these tests only. */
int64_t shm_test_claim_partial(struct shmwal *w, uint32_t part, uint32_t len, int step);

static unsigned env_uint(const char *name, unsigned dflt)
{
	const char *v = getenv(name);

	return v && *v ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

static void pause_ms(unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* 1 if pid has exited (reaped into *status). */
static int exited(pid_t pid, int *status)
{
	return waitpid(pid, status, WNOHANG) == pid;
}

/*
 * The flusher is SIGKILLed at random moments (here 8 times; SHMWAL_CRASH_KILLS for more) while
 * producers keep appending into a ring much smaller than their data, so they are often blocked
 * on a full ring when it dies, and it often dies mid-rotation. Every committed record must be
 * drained exactly once by the flushers that adopt the rings.
 */
static void test_flusher_killed_repeatedly(void **state)
{
	char *dir = th_tmpdir("fkill");
	unsigned kills = env_uint("SHMWAL_CRASH_KILLS", 8), k, i;
	struct th_producer p = { .threads = 2, .records = 3000, .min_value = TH_STAMP_MIN,
				 .max_value = 1024, .partitions = 2, .seed = 11 };
	uint64_t rng = 12345, expected[6];
	struct th_log_report rep;
	pid_t fl, pids[3];

	(void)state;
	assert_int_equal(th_create(dir, 2, 64 << 10, 128 << 10, 1024, SHMWAL_SYNC_INTERVAL), 0);
	fl = th_flusher_start(dir, 0);
	p.dir = dir;
	th_spawn_producers(&p, 3, pids);
	for (k = 0; k < kills; k++) {
		pause_ms(2 + (unsigned)(th_rand(&rng) % 40));
		kill(fl, SIGKILL);
		assert_int_equal(th_wait(fl, TH_TIMEOUT_S), 128 + SIGKILL);
		pause_ms((unsigned)(th_rand(&rng) % 10)); /* producers fill the ring meanwhile */
		fl = th_flusher_start(dir, 0);
	}
	for (i = 0; i < 3; i++)
		assert_int_equal(th_wait(pids[i], TH_TIMEOUT_S), 0);
	assert_int_equal(th_flusher_stop(fl), 0);
	for (i = 0; i < 6; i++)
		expected[i] = 3000;
	if (th_check_log(dir, 3, 2, expected, NULL, NULL, &rep))
		fail_msg("after %u flusher kills: %s", kills, rep.first_error);
	assert_int_equal(rep.records, 6 * 3000);
	th_destroy(dir);
	free(dir);
}

/* The size of partition 0's only segment. */
static int64_t seg0_size(const char *dir)
{
	char path[4200];
	struct stat st;

	snprintf(path, sizeof(path), "%s/p000/0000000000000000.seg", dir);
	return stat(path, &st) < 0 ? -1 : (int64_t)st.st_size;
}

/*
 * Zeros ahead (persist/flusher.c): with sync=always and small syncs, the flusher writes zeros
 * past the log's end so that the next syncs overwrite blocks the file has. A reader reads the
 * durable records and stops before the zeros; a SIGKILLed flusher leaves them, and the next one
 * cuts them at start (recovery: a torn tail) and goes on from the same LSN; a clean stop leaves
 * the segment ending at its last frame.
 */
static void test_zeros_ahead(void **state)
{
	char *dir = th_tmpdir("zeros");
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal *w;
	uint64_t lsn = 0, end = 0;
	char val[100], key[32];
	uint32_t klen = 0;
	int64_t size = -1;
	int i, n = 0;
	pid_t fl;

	(void)state;
	assert_int_equal(th_create(dir, 1, 64 << 10, 64 << 20, 1024, SHMWAL_SYNC_ALWAYS), 0);
	fl = th_flusher_start(dir, 0);
	assert_int_equal(th_open(dir, &w), 0);
	for (i = 0; i < 20; i++, n++) {
		klen = th_key(key, 0, 0, (uint64_t)n);
		th_fill(val, sizeof(val), 0, 0, (uint64_t)n);
		assert_int_equal(
		    shmwal_append(w, 0, SHMWAL_TYPE_PUT, key, klen, val, sizeof(val), &lsn), 0);
		assert_int_equal(shmwal_wait_durable(w, 0, lsn, TH_TIMEOUT_S * SHMWAL_NS_PER_SEC),
				 0);
	}
	end = lsn + SHMWAL_ALIGN_UP(SHMWAL_FRAME_HDR + klen + sizeof(val));
	/* zeros follow a publication: wait until they are there */
	for (i = 0; i < TH_TIMEOUT_S * 1000 && (size = seg0_size(dir)) <= (int64_t)(64 + end); i++)
		pause_ms(1);
	assert_true(size >= (int64_t)(64 + end + (128 << 10)));
	/* a reader reads exactly the 20 records (values intact), then nothing */
	assert_int_equal(shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r), 0);
	for (i = 0; i < 20; i++) {
		struct th_stamp st;

		assert_int_equal(shmwal_reader_next(r, &rec, 0), 0);
		assert_int_equal(th_check(rec.value, rec.value_len, &st), 0);
		assert_int_equal(st.seq, (uint64_t)i);
	}
	assert_int_equal(shmwal_reader_next(r, &rec, 0), -ETIMEDOUT);
	shmwal_reader_close(r);
	shmwal_close(w);

	/* killed: the zeros stay; the next flusher cuts them and goes on at `end` */
	assert_int_equal(kill(fl, SIGKILL), 0);
	assert_int_equal(th_wait(fl, TH_TIMEOUT_S), 128 + SIGKILL);
	assert_true(seg0_size(dir) > (int64_t)(64 + end));
	fl = th_flusher_start(dir, 0);
	assert_int_equal(th_open(dir, &w), 0);
	klen = th_key(key, 0, 0, (uint64_t)n);
	th_fill(val, sizeof(val), 0, 0, (uint64_t)n++);
	assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, key, klen, val, sizeof(val), &lsn),
			 0);
	assert_int_equal(lsn, end);
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, TH_TIMEOUT_S * SHMWAL_NS_PER_SEC), 0);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	end = lsn + SHMWAL_ALIGN_UP(SHMWAL_FRAME_HDR + klen + sizeof(val));
	assert_int_equal(seg0_size(dir), (int64_t)(64 + end)); /* a clean stop: no zeros */
	{
		uint64_t expected = (uint64_t)n;
		struct th_log_report rep;

		if (th_check_log(dir, 1, 1, &expected, NULL, NULL, &rep))
			fail_msg("%s", rep.first_error);
		assert_int_equal(rep.records, (uint64_t)n);
	}
	th_destroy(dir);
	free(dir);
}

/*
 * Producers are SIGKILLed at random moments and replaced by new ones (new stream ids), while
 * the others keep going. Each waits for every record to be durable and only then counts it
 * acknowledged. Afterwards: every acknowledged record present, no duplicate, order kept,
 * nothing torn; the survivors' streams complete.
 */
struct acked_ctx {
	uint64_t *acked;
	uint32_t threads;
};

static int acked_required(void *ctx, uint32_t prod, uint32_t thr, uint64_t seq)
{
	struct acked_ctx *a = ctx;

	return seq < __atomic_load_n(&a->acked[prod * a->threads + thr], __ATOMIC_ACQUIRE);
}

static void test_producers_killed_randomly(void **state)
{
	enum { LIVE = 4, THREADS = 2, RECORDS = 1500 };
	unsigned kills = env_uint("SHMWAL_CRASH_KILLS", 8) * 2, k, i, next_id = LIVE;
	uint32_t max_ids = LIVE + kills;
	char *dir = th_tmpdir("pkill");
	uint64_t *acked = th_shared_counters(max_ids * THREADS), rng = 777, *expected;
	struct th_producer p = { .threads = THREADS, .records = RECORDS,
				 .min_value = TH_STAMP_MIN, .max_value = 700, .partitions = 2,
				 .wait_each = 1, .seed = 5 };
	struct acked_ctx ctx = { acked, THREADS };
	struct th_log_report rep;
	pid_t pids[LIVE], fl;
	uint32_t ids[LIVE];
	int status, killed_mask[LIVE] = { 0 };

	(void)state;
	assert_non_null(acked);
	assert_int_equal(th_create(dir, 2, 64 << 10, 256 << 10, 1024, SHMWAL_SYNC_NONE), 0);
	fl = th_flusher_start(dir, 0);
	p.dir = dir;
	p.acked = acked;
	th_spawn_producers(&p, LIVE, pids);
	for (i = 0; i < LIVE; i++)
		ids[i] = i;
	for (k = 0; k < kills; k++) {
		uint32_t v = (uint32_t)(th_rand(&rng) % LIVE);
		struct th_producer q = p;

		pause_ms(1 + (unsigned)(th_rand(&rng) % 20));
		if (exited(pids[v], &status)) {
			assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		} else {
			int st;

			kill(pids[v], SIGKILL);
			st = th_wait(pids[v], TH_TIMEOUT_S);
			/* killed, or it finished just before the kill landed: both are fine */
			if (st != 128 + SIGKILL && st != 0)
				fail_msg("producer exited with %d", st);
		}
		q.producer = ids[v] = next_id++;
		pids[v] = th_spawn_producer(&q);
		killed_mask[v] = 1;
	}
	for (i = 0; i < LIVE; i++)
		assert_int_equal(th_wait(pids[i], TH_TIMEOUT_S), 0);
	assert_int_equal(th_flusher_stop(fl), 0);

	/* The last generation finished: all of its records are acknowledged. */
	expected = calloc(max_ids * THREADS, sizeof(*expected));
	for (i = 0; i < max_ids * THREADS; i++)
		expected[i] = RECORDS;
	if (th_check_log(dir, max_ids, THREADS, expected, acked_required, &ctx, &rep))
		fail_msg("after %u producer kills: %s", kills, rep.first_error);
	for (i = 0; i < LIVE; i++)
		for (uint32_t t = 0; t < THREADS; t++)
			assert_int_equal(acked[ids[i] * THREADS + t], RECORDS);
	(void)killed_mask;
	free(expected);
	th_destroy(dir);
	free(dir);
}

/*
 * A producer dies at step `step` of the claim protocol with its claim unfinished, then
 * another producer appends: its records must become durable (the flusher repairs the dead
 * claim), and the dead claim must never appear as a record.
 */
static void die_at_step(int step)
{
	char *dir = th_tmpdir("step");
	uint64_t expected[2 * 2] = { 10, 0, 100, 0 }; /* streams 0.0 (dies) and 1.0 */
	struct th_log_report rep;
	struct shmwal *w;
	uint64_t lsn = 0;
	uint8_t val[200];
	char key[32];
	pid_t fl, child;

	assert_int_equal(th_create(dir, 1, 64 << 10, 256 << 10, 1024, SHMWAL_SYNC_ALWAYS), 0);
	fl = th_flusher_start(dir, 0);
	child = fork();
	if (child == 0) {
		struct shmwal *cw;
		int rc = th_open(dir, &cw);

		for (uint64_t s = 0; rc == 0 && s < 10; s++) {
			uint32_t klen = th_key(key, 0, 0, s);

			th_fill(val, sizeof(val), 0, 0, s);
			rc = shmwal_append(cw, 0, SHMWAL_TYPE_PUT, key, klen, val, sizeof(val), &lsn);
			if (rc == 0)
				rc = shmwal_wait_durable(cw, 0, lsn, 60 * SHMWAL_NS_PER_SEC);
		}
		if (rc < 0 || shm_test_claim_partial(cw, 0, 32 + 300, step) < 0)
			_exit(1);
		raise(SIGKILL);
		_exit(2);
	}
	assert_int_equal(th_wait(child, TH_TIMEOUT_S), 128 + SIGKILL);

	assert_int_equal(th_open(dir, &w), 0);
	for (uint64_t s = 0; s < 100; s++) {
		uint32_t klen = th_key(key, 1, 0, s);

		th_fill(val, sizeof(val), 1, 0, s);
		assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, key, klen, val, sizeof(val),
					       &lsn),
				 0);
	}
	if (shmwal_wait_durable(w, 0, lsn, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC) < 0)
		fail_msg("step %d: records behind the dead claim never became durable: %s", step,
			 shmwal_last_error());
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	if (th_check_log(dir, 2, 2, expected, NULL, NULL, &rep))
		fail_msg("step %d: %s", step, rep.first_error);
	assert_int_equal(rep.records, 110);
	th_destroy(dir);
	free(dir);
}

static void test_die_before_fetch_add(void **s) { (void)s; die_at_step(1); }
static void test_die_after_fetch_add(void **s) { (void)s; die_at_step(2); }
static void test_die_after_lane_lsn(void **s) { (void)s; die_at_step(3); }
static void test_die_after_space_wait(void **s) { (void)s; die_at_step(4); }
static void test_die_after_claimed_word(void **s) { (void)s; die_at_step(5); }
static void test_die_after_lane_cleared(void **s) { (void)s; die_at_step(6); }
static void test_die_mid_payload(void **s) { (void)s; die_at_step(7); }

/*
 * A live producer holding a zero-copy claim is never aborted: records behind it wait. Once it
 * dies, they go through, and its claim never shows up.
 */
static void test_live_claim_waits_dead_claim_repaired(void **state)
{
	char *dir = th_tmpdir("live");
	int ready[2];
	struct shmwal *w;
	uint64_t lsn;
	char c;
	pid_t fl, child;

	(void)state;
	assert_int_equal(th_create(dir, 1, 64 << 10, 256 << 10, 1024, SHMWAL_SYNC_NONE), 0);
	fl = th_flusher_start(dir, 0);
	assert_int_equal(pipe(ready), 0);
	child = fork();
	if (child == 0) {
		struct shmwal *cw;
		struct shmwal_claim cl;

		if (th_open(dir, &cw) < 0 || shmwal_claim(cw, 0, SHMWAL_TYPE_PUT, 0, 100, &cl) < 0)
			_exit(1);
		memset(cl.value, 'x', 100);
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		pause(); /* holds the claim until killed */
		_exit(2);
	}
	assert_int_equal(read(ready[0], &c, 1), 1);
	assert_int_equal(th_open(dir, &w), 0);
	assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, "after", 5, &lsn), 0);
	/* Behind a live claim: not durable, however long we wait here. */
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, 200000000ull), -ETIMEDOUT);
	kill(child, SIGKILL);
	assert_int_equal(th_wait(child, TH_TIMEOUT_S), 128 + SIGKILL);
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC),
			 0);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	{
		struct shmwal_reader *r;
		struct shmwal_record rec;

		assert_int_equal(shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r), 0);
		assert_int_equal(shmwal_reader_next(r, &rec, 0), 0);
		assert_int_equal(rec.value_len, 5);
		assert_memory_equal(rec.value, "after", 5);
		assert_int_equal(shmwal_reader_next(r, &rec, 0), -ETIMEDOUT);
		shmwal_reader_close(r);
	}
	close(ready[0]);
	close(ready[1]);
	th_destroy(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_die_before_fetch_add),
	    cmocka_unit_test(test_die_after_fetch_add),
	    cmocka_unit_test(test_die_after_lane_lsn),
	    cmocka_unit_test(test_die_after_space_wait),
	    cmocka_unit_test(test_die_after_claimed_word),
	    cmocka_unit_test(test_die_after_lane_cleared),
	    cmocka_unit_test(test_die_mid_payload),
	    cmocka_unit_test(test_live_claim_waits_dead_claim_repaired),
	    cmocka_unit_test(test_zeros_ahead),
	    cmocka_unit_test(test_flusher_killed_repeatedly),
	    cmocka_unit_test(test_producers_killed_randomly),
	};

	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
