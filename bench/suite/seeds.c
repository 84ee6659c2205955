/* SPDX-License-Identifier: MIT */
/*
 * seeds.c - the benchmarks of the WAL libraries shmwal grew from, under their names, for a
 * direct comparison with their published figures (a Rust WAL's README: "Average Time" on an
 * Apple M4; another machine, so the ratio says little more than the order of magnitude).
 * Their record is a small put: key "my-key", value "my-value"; so is ours.
 *
 *   append_single_record               one shmwal_append, sync none
 *   append_1000_records                1000 appends, sync none
 *   append_single_record_and_io_sync   one append, then shmwal_wait_durable (sync always:
 *                                      written and fdatasync'ed by the flusher)
 *   append_1000_records_and_io_sync    1000 appends, then one wait for the last
 *   stream_1000_records_linear         read 1000 records in LSN order: reported twice, with
 *                                      a reader opened at the first and closed after (their
 *                                      iterator is made per stream), and through a reader
 *                                      already open there (the 1000 reads alone)
 *
 * Each is repeated; the mean (their "Average Time") and the median are reported, per round,
 * medians of the rounds. One producer (this process), a flusher in a child process, the
 * library's default configuration but for the sync mode.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/suite/suite.h"
#include "tests/helpers.h"

static const char key[] = "my-key", val[] = "my-value";

static int put(struct shmwal *w, uint64_t *lsn)
{
	int rc = shmwal_append(w, 0, SHMWAL_TYPE_PUT, key, sizeof(key) - 1, val, sizeof(val) - 1,
			       lsn);

	if (rc < 0)
		fprintf(stderr, "append: %s\n", shmwal_last_error());
	return rc;
}

static int durable(struct shmwal *w, uint64_t lsn)
{
	int rc = shmwal_wait_durable(w, 0, lsn, 60 * SHMWAL_NS_PER_SEC);

	if (rc < 0)
		fprintf(stderr, "wait_durable: %s\n", shmwal_last_error());
	return rc;
}

/* One repetition of benchmark `b` (index into seeds[]); its time in ns, or 0 on error.
 * lsns: for the stream benchmark, record boundaries to start from. */
static uint64_t once(unsigned b, struct shmwal *w, const char *dir, const uint64_t *lsns,
		     uint64_t rep)
{
	uint64_t t = now(), lsn = 0;

	switch (b) {
	case 0:
	case 2:
		if (put(w, &lsn) < 0 || (b == 2 && durable(w, lsn) < 0))
			return 0;
		break;
	case 1:
	case 3:
		for (int i = 0; i < 1000; i++)
			if (put(w, &lsn) < 0)
				return 0;
		if (b == 3 && durable(w, lsn) < 0)
			return 0;
		break;
	default: {
		struct shmwal_reader *r;
		struct shmwal_record rec;
		uint64_t end = 0;
		int rc = shmwal_reader_open(dir, 0, lsns[rep], &r);

		if (rc < 0) {
			fprintf(stderr, "reader: %s\n", shmwal_last_error());
			return 0;
		}
		if (b == 5)
			t = now(); /* the reads alone: the reader is open at the first record */
		for (int i = 0; rc == 0 && i < 1000; i++)
			rc = shmwal_reader_next(r, &rec, 0);
		if (b == 5)
			end = now();
		if (rc < 0)
			fprintf(stderr, "reader: %s\n", shmwal_last_error());
		shmwal_reader_close(r);
		if (b == 4)
			end = now();
		if (rc == 0 && rec.next_lsn != lsns[rep + 1]) {
			fprintf(stderr, "reader: 1000 records did not end where the next 1000 begin\n");
			rc = -1;
		}
		return rc < 0 ? 0 : end - t;
	}
	}
	return now() - t;
}

static const struct {
	const char *name;
	enum shmwal_sync sync;
	uint64_t reps, reps_quick;
	double published_us; /* the seed's "Average Time" */
	const char *what;    /* the metric's name: what is timed */
} seeds[] = {
	{ "append_single_record", SHMWAL_SYNC_NONE, 1000000, 10000, 6.8, "" },
	{ "append_1000_records", SHMWAL_SYNC_NONE, 2000, 20, 6790, "" },
	{ "append_single_record_and_io_sync", SHMWAL_SYNC_ALWAYS, 2000, 50, 3900, "" },
	{ "append_1000_records_and_io_sync", SHMWAL_SYNC_ALWAYS, 500, 20, 9500, "" },
	{ "stream_1000_records_linear", SHMWAL_SYNC_NONE, 2000, 50, 75.75, " open+close" },
	{ "stream_1000_records_linear", SHMWAL_SYNC_NONE, 2000, 50, 75.75, " reads" },
};
#define NSEEDS (sizeof(seeds) / sizeof(seeds[0]))

/* One round of benchmark b in a fresh WAL: the mean and the median of its repetitions, in
 * ns. */
static int round_of(unsigned b, double *mean, double *med)
{
	uint64_t reps = scale(seeds[b].reps, seeds[b].reps_quick), *lsns = NULL, lsn;
	struct shmwal_config c;
	struct shmwal *w = NULL;
	struct hist *h = calloc(1, sizeof(*h));
	double sum = 0;
	char *dir;
	pid_t fl;
	int rc = -1;

	shmwal_config_default(&c);
	c.sync = seeds[b].sync;
	if (!h || !(dir = wal_new(&c))) {
		free(h);
		return -1;
	}
	fl = th_flusher_start(dir, 0);
	if (fl <= 0 || th_open(dir, &w) < 0)
		goto out;
	if (b >= 4) {
		/* a log of reps * 1000 + 1 records, each repetition reading its own 1000 */
		if (!(lsns = malloc((reps + 1) * sizeof(*lsns))))
			goto out;
		for (uint64_t i = 0; i <= reps * 1000; i++) {
			if (put(w, &lsn) < 0)
				goto out;
			if (i % 1000 == 0)
				lsns[i / 1000] = lsn;
		}
		if (durable(w, lsn) < 0)
			goto out;
	}
	for (uint64_t i = 0; i < reps; i++) {
		uint64_t ns = once(b, w, dir, lsns, i);

		if (!ns)
			goto out;
		hadd(h, ns);
		sum += (double)ns;
	}
	*mean = sum / (double)reps;
	*med = (double)hpct(h, 0.5);
	rc = 0;
out:
	if (w)
		shmwal_close(w);
	if (fl <= 0 || th_flusher_stop(fl) != 0) {
		fprintf(stderr, "suite: the flusher failed\n");
		rc = -1;
	}
	wal_done(dir);
	free(lsns);
	free(h);
	return rc;
}

int mode_seeds(void)
{
	double stream_us = 0;

	for (unsigned b = 0; b < NSEEDS; b++) {
		double mean[SUITE_MAX_ROUNDS], med[SUITE_MAX_ROUNDS];

		for (unsigned r = 0; r < sopt.rounds; r++) {
			if (round_of(b, &mean[r], &med[r]) < 0)
				return -1;
			note("  %-34s%-11s round %u: mean %10.2f us, median %10.2f us\n",
			     seeds[b].name, seeds[b].what, r + 1, mean[r] / 1e3, med[r] / 1e3);
		}
		double m = median(mean, sopt.rounds) / 1e3, p = median(med, sopt.rounds) / 1e3;

		char metric[32];

		snprintf(metric, sizeof(metric), "mean%s", seeds[b].what);
		result("seeds", seeds[b].name, metric, "us", LOWER, m, "pwal, published (M4)",
		       seeds[b].published_us);
		snprintf(metric, sizeof(metric), "median%s", seeds[b].what);
		result("seeds", seeds[b].name, metric, "us", LOWER, p, "", NAN);
		if (b == 5)
			stream_us = p;
	}
	/* the targets are medians; the mean (their "Average Time") carries this
	 * machine's preemptions, tens of microseconds each */
	target("stream_1000_records_linear <= 10 us", stream_us <= 10,
	       "%.2f us (median of the 1000 reads through an open reader)", stream_us);
	return 0;
}
