/* SPDX-License-Identifier: MIT */
/*
 * test_clock.c - the records' timestamps (common/tsclock.h): the line fitted from samples,
 * the seqlock a producer reads, and end to end against CLOCK_REALTIME.
 *
 *   fit_*            tsclock_fit() on made-up samples of a 3 GHz TSC: the first line passes
 *                    through the last sample with the measured slope; a drifted line is
 *                    slewed (continuous where it was, on CLOCK_REALTIME one interval later);
 *                    one off by more than 1 ms steps.
 *   eval_span        a line is used only in [tsc0, tsc0 + span).
 *   read_*           tsclock_read() on a line in memory: it uses a published line, and falls
 *                    back (returns 0) while seq is odd, before any line, and past the span.
 *   track_realtime   a flusher and one producer for ~1.3 s (through eight recalibrations):
 *                    every record's timestamp lies between CLOCK_REALTIME read right before
 *                    and after its append (1 ms of slack: the line is microseconds off), and
 *                    the timestamps never go back. shmwal_stat() says which clock was used:
 *                    the TSC wherever tsclock_usable(), else clock_gettime.
 *   realtime_env     SHMWAL_CLOCK=realtime in the flusher's environment: clock_gettime.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "shmwal.h"
#include "helpers.h"
#include "tsclock.h"

#define LONG_NS ((uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC)

#define GHZ3_MULT ((uint64_t)(((unsigned __int128)1 << 32) / 3)) /* 1/3 ns per tick */

static void test_fit_first_line(void **state)
{
	struct tsclock_line l;
	/* two samples 10 ms apart of a TSC running at 3 GHz */
	uint64_t t0 = 1000000000ull, n0 = 1700000000000000000ull;
	uint64_t t1 = t0 + 30000000ull, n1 = n0 + 10000000ull;

	(void)state;
	tsclock_fit(NULL, t0, n0, t1, n1, 20000000ull, &l);
	assert_int_equal(l.tsc0, t1);
	assert_int_equal(l.ns0, n1);
	/* one second later (3e9 ticks) the line says one second later, to a nanosecond */
	assert_true(tsclock_eval(&l, t1 + 3000000000ull) >= n1 + 1000000000ull - 1);
	assert_true(tsclock_eval(&l, t1 + 3000000000ull) <= n1 + 1000000000ull + 1);
	/* the span is ten seconds of ticks */
	assert_true(l.span >= 29999999990ull && l.span <= 30000000010ull);
}

static void test_fit_slews(void **state)
{
	struct tsclock_line old = { 0, 0, GHZ3_MULT, 0 }, l;
	uint64_t t0 = 5000000000ull, n0 = 1700000000000000000ull;
	uint64_t t1 = t0 + 3000000000ull, n1 = n0 + 1000000000ull; /* 1 s later */
	uint64_t at, interval = 1000000000ull;

	(void)state;
	/* the old line, published at t0, runs 50 us fast by t1 */
	old.tsc0 = t0;
	old.ns0 = n0 + 50000;
	old.span = 30000000000ull;
	at = tsclock_eval(&old, t1);
	assert_true(at > n1 + 49000 && at < n1 + 51000);
	tsclock_fit(&old, t0, n0, t1, n1, interval, &l);
	/* continuous: starts where the old line stood ... */
	assert_int_equal(l.tsc0, t1);
	assert_int_equal(l.ns0, at);
	/* ... slower than real time, and on CLOCK_REALTIME again one interval later */
	assert_true(l.mult < GHZ3_MULT);
	assert_true(tsclock_eval(&l, t1 + 3000000000ull) >= n1 + interval - 2);
	assert_true(tsclock_eval(&l, t1 + 3000000000ull) <= n1 + interval + 2);

	/* and the other way: 50 us slow */
	old.ns0 = n0 - 50000;
	at = tsclock_eval(&old, t1);
	tsclock_fit(&old, t0, n0, t1, n1, interval, &l);
	assert_int_equal(l.ns0, at);
	assert_true(l.mult > GHZ3_MULT);
	assert_true(tsclock_eval(&l, t1 + 3000000000ull) >= n1 + interval - 2);
	assert_true(tsclock_eval(&l, t1 + 3000000000ull) <= n1 + interval + 2);
}

static void test_fit_steps(void **state)
{
	struct tsclock_line old = { 0, 0, GHZ3_MULT, 30000000000ull }, l;
	uint64_t t0 = 5000000000ull, n0 = 1700000000000000000ull;
	uint64_t t1 = t0 + 3000000000ull, n1 = n0 + 1000000000ull;

	(void)state;
	old.tsc0 = t0;
	old.ns0 = n0 + 2000000; /* 2 ms off: CLOCK_REALTIME was stepped */
	tsclock_fit(&old, t0, n0, t1, n1, 1000000000ull, &l);
	assert_int_equal(l.ns0, n1);
	assert_true(l.mult >= GHZ3_MULT - 1 && l.mult <= GHZ3_MULT + 1);
	/* an old line that no longer covers t1 (past its span) steps too */
	old.ns0 = n0;
	old.span = 1000;
	tsclock_fit(&old, t0, n0, t1, n1, 1000000000ull, &l);
	assert_int_equal(l.ns0, n1);
}

static void test_eval_span(void **state)
{
	struct tsclock_line l = { 1000, 5000, 1ull << 32, 100 };

	(void)state;
	assert_int_equal(tsclock_eval(&l, 1000), 5000);
	assert_int_equal(tsclock_eval(&l, 1099), 5099);
	assert_int_equal(tsclock_eval(&l, 1100), 0);
	assert_int_equal(tsclock_eval(&l, 999), 0); /* before tsc0 */
}

static void test_read_seqlock(void **state)
{
	struct tsclock c;
	struct tsclock_line l;
	uint64_t ns = 0, r0, r1;

	(void)state;
	memset(&c, 0, sizeof(c));
	assert_int_equal(tsclock_read(&c, &ns), 0); /* never published */
	r0 = real_ns();
	assert_true(tsclock_now(&c) >= r0);
	if (!TSCLOCK_HAVE_TSC)
		skip();
#if TSCLOCK_HAVE_TSC
	/* a line far from CLOCK_REALTIME, so its use is unmistakable */
	l.tsc0 = __rdtsc();
	l.ns0 = 4000000000000000000ull;
	l.mult = 1ull << 32;
	l.span = 1ull << 62;
	tsclock_publish(&c, &l);
	assert_int_equal(load_relaxed(&c.seq), 2);
	assert_int_equal(tsclock_read(&c, &ns), 1);
	assert_true(ns >= l.ns0 && ns < l.ns0 + (1ull << 40));
	assert_true(tsclock_now(&c) >= l.ns0);
	/* being rewritten (a writer killed half way): not used */
	store_relaxed(&c.seq, 3);
	assert_int_equal(tsclock_read(&c, &ns), 0);
	r0 = real_ns();
	ns = tsclock_now(&c);
	r1 = real_ns();
	assert_true(ns >= r0 && ns <= r1);
	/* the next publish continues from the odd seq, and a line past its span is not used */
	l.span = 0;
	tsclock_publish(&c, &l);
	assert_int_equal(load_relaxed(&c.seq), 4);
	assert_int_equal(tsclock_read(&c, &ns), 0);
#endif
}

/* ---- end to end ---- */

struct stamp {
	uint64_t lsn, before, after;
};

#define MS 1000000ull

static void check_stamps(const char *dir, const struct stamp *st, unsigned n)
{
	struct shmwal_reader *r;
	struct shmwal_record rec;
	uint64_t prev = 0, off = 0;

	EXPECT_OK(shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r));
	for (unsigned i = 0; i < n; i++) {
		EXPECT_OK(shmwal_reader_next(r, &rec, LONG_NS));
		assert_int_equal(rec.lsn, st[i].lsn);
		if (rec.timestamp_ns + MS < st[i].before || rec.timestamp_ns > st[i].after + MS)
			fail_msg("record %u: timestamp %" PRIu64 " not within 1 ms of [%" PRIu64
				 ", %" PRIu64 "] (CLOCK_REALTIME around the append)",
				 i, rec.timestamp_ns, st[i].before, st[i].after);
		if (rec.timestamp_ns < prev)
			fail_msg("record %u: timestamp %" PRIu64 " before the previous one %" PRIu64,
				 i, rec.timestamp_ns, prev);
		prev = rec.timestamp_ns;
		if (rec.timestamp_ns < st[i].before && st[i].before - rec.timestamp_ns > off)
			off = st[i].before - rec.timestamp_ns;
		if (rec.timestamp_ns > st[i].after && rec.timestamp_ns - st[i].after > off)
			off = rec.timestamp_ns - st[i].after;
	}
	shmwal_reader_close(r);
	print_message("%u timestamps; the farthest outside its CLOCK_REALTIME bracket: %.3f us\n",
		      n, (double)off / 1e3);
}

/* Appends in bursts for ~1.3 s and checks every timestamp; returns the clock stat saw. */
static enum shmwal_clock run_stamps(const char *flusher_env)
{
	const unsigned bursts = 650, per = 16;
	struct stamp *st = calloc(bursts * per, sizeof(*st));
	struct timespec pause = { 0, 2 * MS };
	struct shmwal_stat *ss = calloc(1, sizeof(*ss));
	char *dir = th_tmpdir("clock");
	enum shmwal_clock clk;
	struct shmwal *w;
	pid_t fl;

	assert_non_null(st);
	assert_non_null(ss);
	assert_non_null(dir);
	EXPECT_OK(th_create(dir, 1, 1 << 20, 64 << 20, 64, SHMWAL_SYNC_NONE));
	if (flusher_env)
		setenv("SHMWAL_CLOCK", flusher_env, 1);
	fl = th_flusher_start(dir, 0);
	unsetenv("SHMWAL_CLOCK");
	assert_true(fl > 0);
	EXPECT_OK(th_open(dir, &w));
	EXPECT_OK(shmwal_stat(dir, ss));
	clk = ss->clock;
	for (unsigned b = 0, i = 0; b < bursts; b++) {
		for (unsigned k = 0; k < per; k++, i++) {
			st[i].before = real_ns();
			EXPECT_OK(shmwal_append(w, 0, SHMWAL_TYPE_PUT, "k", 1, "v", 1, &st[i].lsn));
			st[i].after = real_ns();
		}
		nanosleep(&pause, NULL); /* spread over the recalibrations */
	}
	EXPECT_OK(shmwal_wait_durable(w, 0, st[bursts * per - 1].lsn, LONG_NS));
	check_stamps(dir, st, bursts * per);
	/* the clock in use did not change under the producer */
	EXPECT_OK(shmwal_stat(dir, ss));
	assert_int_equal(ss->clock, clk);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	th_destroy(dir);
	free(dir);
	free(ss);
	free(st);
	return clk;
}

static void test_track_realtime(void **state)
{
	const char *why = NULL;
	int usable = tsclock_usable(&why);

	(void)state;
	assert_int_equal(run_stamps(NULL), usable ? SHMWAL_CLOCK_TSC : SHMWAL_CLOCK_REALTIME);
	if (!usable)
		print_message("note: the TSC is not used on this machine (%s): timestamps came "
			      "from clock_gettime\n", why);
}

static void test_realtime_env(void **state)
{
	(void)state;
	assert_int_equal(run_stamps("realtime"), SHMWAL_CLOCK_REALTIME);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fit_first_line), cmocka_unit_test(test_fit_slews),
		cmocka_unit_test(test_fit_steps),      cmocka_unit_test(test_eval_span),
		cmocka_unit_test(test_read_seqlock),   cmocka_unit_test(test_track_realtime),
		cmocka_unit_test(test_realtime_env),
	};

	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
