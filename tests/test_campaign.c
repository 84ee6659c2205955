/* SPDX-License-Identifier: MIT */
/*
 * test_campaign.c - a short run of each crash campaign (stress/crash_campaign.c, built next to
 * this program in $O/stress): producers SIGKILLed and restarted, the flusher SIGKILLed and
 * restarted at every kind of moment (at random, while producers are blocked on a full ring,
 * mid-write, at each step of a segment rotation), and both interleaved. The driver checks
 * the whole log itself (every acknowledged record present once, intact, in order; claims
 * given up only as ABORTED frames; its own negative controls caught) and exits non-zero on
 * any violation; with --require-coverage also when a kind of kill never landed. `make stress`
 * runs the long version. Also a regression test for a defect the campaign found.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#include <unistd.h>
#include <cmocka.h>

#include "helpers.h"
#include "meta.h"

static char driver[PATH_MAX];

/* /dev/shm/<the WAL's shm object name> */
static int shm_name_of(const char *dir, char *buf, size_t len)
{
	struct meta m;
	char name[32];

	if (meta_load(dir, &m) < 0)
		return -1;
	shm_name(name, m.instance);
	return snprintf(buf, len, "/dev/shm%s", name) < (int)len ? 0 : -1;
}

/* $O/tests/test_campaign -> $O/stress/crash_campaign */
static int find_driver(void)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	if (n <= 0)
		return -1;
	self[n] = 0;
	slash = strrchr(self, '/');
	if (!slash)
		return -1;
	*slash = 0;
	if (snprintf(driver, sizeof(driver), "%s/../stress/crash_campaign", self) >=
	    (int)sizeof(driver))
		return -1;
	return access(driver, X_OK);
}

/* Runs the driver with these arguments; prints its output; returns its exit status. */
static int run_driver(const char *const *args)
{
	const char *tmp = getenv("TMPDIR");
	const char *argv[32];
	char out[PATH_MAX];
	int fd, n = 0, st;
	char buf[4096];
	ssize_t len;
	pid_t pid;

	snprintf(out, sizeof(out), "%s/shmwal-campaign-out.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	fd = mkstemp(out);
	assert_true(fd >= 0);
	argv[n++] = driver;
	for (int i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		execv(driver, (char *const *)argv);
		_exit(127);
	}
	st = th_wait(pid, TH_TIMEOUT_S);
	lseek(fd, 0, SEEK_SET);
	while ((len = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)len, stdout);
	fflush(stdout);
	close(fd);
	unlink(out);
	return st;
}

/* Small rings and segments (the defaults: 64 KiB each), so rings fill and segments rotate
 * all the time; a repair bound far above anything a loaded machine takes. */
#define COMMON "--producers", "3", "--threads", "3", "--partitions", "2", \
		"--repair-bound-ms", "60000", "--require-coverage"

/* 60 kills: at random, of a producer blocked on a full ring, inside a claim. Sync none. */
static void test_producers_killed(void **state)
{
	const char *args[] = { "--campaign", "producers", "--kills", "60", "--seed", "3",
			       "--sync", "none", COMMON, NULL };

	(void)state;
	assert_int_equal(run_driver(args), 0);
}

/* 24 kills: every kind of moment three times. Sync mode always. */
static void test_flusher_killed(void **state)
{
	const char *args[] = { "--campaign", "flusher", "--kills", "24", "--seed", "5",
			       "--sync", "always", COMMON, NULL };

	(void)state;
	assert_int_equal(run_driver(args), 0);
}

/* 48 kills, every third the flusher's: each kind of moment twice. Sync mode interval. */
static void test_both_killed(void **state)
{
	const char *args[] = { "--campaign", "both", "--kills", "48", "--seed", "7",
			       "--sync", "interval", COMMON, NULL };

	(void)state;
	assert_int_equal(run_driver(args), 0);
}

/* The pmem backend, on persistent memory (drains) and on its msync fallback: 32 kills each,
 * every third the flusher's, so each moment lands at least once (mid-write: half a batch
 * copied, a torn tail recovery must clear). */
static void test_pmem_both_killed(void **state)
{
	const char *drain[] = { "--campaign", "both", "--kills", "32", "--seed", "9",
				"--sync", "always", "--backend", "pmem", COMMON, NULL };
	const char *msync[] = { "--campaign", "both", "--kills", "32", "--seed", "10",
				"--sync", "interval", "--backend", "pmem-msync", COMMON, NULL };

	(void)state;
	assert_int_equal(run_driver(drain), 0);
	assert_int_equal(run_driver(msync), 0);
}

/*
 * Found by the campaign: a producer SIGKILLed just before a clean stop still counted as
 * attached (its slot is judged dead only by the next registry poll), so the stopping flusher
 * kept the shared memory for a next flusher that may never come. The stop now probes the
 * slots first.
 */
static void test_clean_stop_after_producer_death_removes_shm(void **state)
{
	char *dir = th_tmpdir("stopdead");
	struct shmwal *w;
	uint64_t lsn;
	pid_t fl, child;
	char name[64];

	(void)state;
	assert_int_equal(th_create(dir, 1, 64 << 10, 64 << 10, 1024, SHMWAL_SYNC_NONE), 0);
	fl = th_flusher_start(dir, 0);
	assert_int_equal(th_open(dir, &w), 0);
	assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, "k", 1, "v", 1, &lsn), 0);
	shmwal_close(w);
	/* Past the flusher's first 200 ms, in which it polls the registry every millisecond
	 * (flusher.c): from then on only the probe at the stop can see the death in time. The
	 * outcome does not depend on this pause; catching a regression does. */
	usleep(250000);
	child = fork();
	if (child == 0) {
		struct shmwal *cw;

		if (th_open(dir, &cw) < 0 ||
		    shmwal_append(cw, 0, SHMWAL_TYPE_PUT, "k", 1, "v", 1, &lsn) < 0 ||
		    shmwal_wait_durable(cw, 0, lsn, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC) < 0)
			_exit(1);
		raise(SIGKILL); /* attached, never detached */
		_exit(2);
	}
	assert_int_equal(th_wait(child, TH_TIMEOUT_S), 128 + SIGKILL);
	assert_int_equal(th_flusher_stop(fl), 0);
	assert_int_equal(shm_name_of(dir, name, sizeof(name)), 0);
	if (access(name, F_OK) == 0) {
		th_destroy(dir);
		fail_msg("the clean stop kept %s although its only producer was dead", name);
	}
	th_destroy(dir);
	free(dir);
}

static int setup(void **state)
{
	(void)state;
	if (find_driver() < 0) {
		fprintf(stderr, "%s: not built (make builds it with the tests)\n", driver);
		return -1;
	}
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_producers_killed),
		cmocka_unit_test(test_flusher_killed),
		cmocka_unit_test(test_both_killed),
		cmocka_unit_test(test_pmem_both_killed),
		cmocka_unit_test(test_clean_stop_after_producer_death_removes_shm),
	};

	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, setup, NULL);
}
