/* SPDX-License-Identifier: MIT */
/*
 * append.c - append throughput and latency with sync none: 64-byte and 1 KiB values, 1, 2 and
 * 4 producer processes, all on one partition or each on its own, against the hand-written
 * alternative: the same processes write()ing each record (a 4-byte length, a CRC32C, the
 * value) to one file opened O_APPEND.
 *
 * Every producer appends the same number of records, many rings' worth, so the rate is what
 * the flusher sustains, not what the ring absorbs: records / (the last producer's end - the
 * start gate). Every 16th call is timed (two clock reads around it) into a histogram: p50,
 * p99, p99.9 and the largest. The WAL has the library's defaults (ring 4 MiB per partition,
 * segments 64 MiB), a flusher in a child process, nothing pinned.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/suite/suite.h"
#include "common.h"
#include "tests/helpers.h"

#define MAXP 4
#define SAMPLE_MASK 15u

struct producer {
	uint64_t end_ns;
	int err;
	struct hist lat;
};

struct run {
	struct gate gate;
	struct producer p[MAXP];
	int poll_stop;	/* the stat reader's end (the producers are done) */
	uint64_t polls; /* shmwal_stat() calls it made */
};

/* What one run yields. */
struct figs {
	double rate, p50, p99, p999, max; /* records/s; latencies in ns */
};

static void figs_from(const struct run *s, unsigned procs, uint64_t n, struct figs *f)
{
	struct hist all;
	uint64_t end = 0;

	memset(&all, 0, sizeof(all));
	for (unsigned i = 0; i < procs; i++) {
		hmerge(&all, &s->p[i].lat);
		if (s->p[i].end_ns > end)
			end = s->p[i].end_ns;
	}
	f->rate = (double)n * procs / ((double)(end - s->gate.t0) / 1e9);
	f->p50 = (double)hpct(&all, 0.50);
	f->p99 = (double)hpct(&all, 0.99);
	f->p999 = (double)hpct(&all, 0.999);
	f->max = (double)all.max;
}

/* Forks `procs` children running body(i, arg) behind the gate, then reaps them. */
static int gang(struct run *s, unsigned procs, void (*body)(struct run *, unsigned, void *),
		void *arg)
{
	pid_t pid[MAXP];
	unsigned started = 0;
	int rc = 0;

	for (; started < procs; started++) {
		pid[started] = fork();
		if (pid[started] == 0) {
			body(s, started, arg);
			_exit(s->p[started].err ? 1 : 0);
		}
		if (pid[started] < 0)
			break;
	}
	if (started < procs || gate_open(&s->gate, procs) < 0)
		rc = -1;
	for (unsigned i = 0; i < started; i++)
		if (th_wait(pid[i], 600) != 0)
			rc = -1;
	if (started < procs)
		perror("fork");
	return rc;
}

/* ---- shmwal ---- */

struct sw_arg {
	const char *dir;
	uint32_t size, parts;
	uint64_t n;
};

static void sw_body(struct run *s, unsigned idx, void *arg)
{
	const struct sw_arg *a = arg;
	struct producer *p = &s->p[idx];
	uint32_t part = idx % a->parts;
	void *val = calloc(1, a->size);
	struct shmwal *w;
	uint64_t lsn;

	if (!val || th_open(a->dir, &w) < 0) {
		p->err = -1;
		gate_arrive_and_wait(&s->gate);
		return;
	}
	memset(val, 'a' + (int)idx, a->size);
	gate_arrive_and_wait(&s->gate);
	for (uint64_t i = 0; i < a->n; i++) {
		int rc;

		if ((i & SAMPLE_MASK) == SAMPLE_MASK) {
			uint64_t t = now();

			rc = shmwal_append(w, part, SHMWAL_TYPE_PUT, NULL, 0, val, a->size, &lsn);
			hadd(&p->lat, now() - t);
		} else {
			rc = shmwal_append(w, part, SHMWAL_TYPE_PUT, NULL, 0, val, a->size, &lsn);
		}
		if (rc < 0) {
			fprintf(stderr, "append: %s\n", shmwal_last_error());
			p->err = rc;
			break;
		}
	}
	p->end_ns = now();
	shmwal_close(w);
	free(val);
}

/* What a monitor does: shmwal_stat() `hz` times a second until the producers are done. */
static void stat_reader(struct run *s, const char *dir, unsigned hz)
{
	struct shmwal_stat *st = malloc(sizeof(*st));
	struct timespec ts = {0, (long)(1000000000 / hz)};

	while (st && !__atomic_load_n(&s->poll_stop, __ATOMIC_ACQUIRE)) {
		if (shmwal_stat(dir, st) == 0)
			__atomic_fetch_add(&s->polls, 1, __ATOMIC_RELAXED);
		nanosleep(&ts, NULL);
	}
	free(st);
}

/* stat_hz: a process reading shmwal_stat() that often meanwhile (0: none). */
static int run_shmwal(uint32_t size, unsigned procs, unsigned parts, uint64_t n, struct figs *f,
		      unsigned stat_hz)
{
	struct shmwal_config c;
	struct sw_arg a = { .size = size, .parts = parts, .n = n };
	struct run *s = shared_new(sizeof(*s));
	pid_t fl, poller = 0;
	char *dir;
	int rc = -1;

	shmwal_config_default(&c);
	c.partitions = parts;
	c.sync = SHMWAL_SYNC_NONE;
	if (!(dir = wal_new(&c)))
		goto out;
	a.dir = dir;
	fl = th_flusher_start(dir, 0);
	if (fl > 0 && stat_hz && (poller = fork()) == 0) {
		stat_reader(s, dir, stat_hz);
		_exit(0);
	}
	if (fl > 0 && poller >= 0 && gang(s, procs, sw_body, &a) == 0) {
		figs_from(s, procs, n, f);
		rc = 0;
	}
	if (poller > 0) {
		__atomic_store_n(&s->poll_stop, 1, __ATOMIC_RELEASE);
		if (th_wait(poller, 600) != 0 || !__atomic_load_n(&s->polls, __ATOMIC_RELAXED))
			rc = -1; /* it must have read the metrics, or this measured nothing */
	}
	if (fl <= 0 || th_flusher_stop(fl) != 0) {
		fprintf(stderr, "suite: the flusher failed\n");
		rc = -1;
	}
	wal_done(dir);
out:
	shared_free(s, sizeof(*s));
	return rc;
}

/* ---- the alternative: write() to one O_APPEND file ---- */

struct fa_arg {
	const char *path;
	uint32_t size;
	uint64_t n;
};

static void fa_body(struct run *s, unsigned idx, void *arg)
{
	const struct fa_arg *a = arg;
	struct producer *p = &s->p[idx];
	size_t len = 8 + a->size;
	unsigned char *rec = calloc(1, len);
	int fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);

	if (!rec || fd < 0) {
		p->err = -1;
		gate_arrive_and_wait(&s->gate);
		return;
	}
	memset(rec + 8, 'a' + (int)idx, a->size);
	gate_arrive_and_wait(&s->gate);
	for (uint64_t i = 0; i < a->n; i++) {
		uint32_t l = a->size, crc;
		uint64_t t = (i & SAMPLE_MASK) == SAMPLE_MASK ? now() : 0;
		ssize_t w;

		/* what a hand-written log does per record: frame it, checksum it, write it */
		memcpy(rec, &l, 4);
		crc = crc32c_isal(~0u, rec + 8, a->size);
		memcpy(rec + 4, &crc, 4);
		w = write(fd, rec, len);
		if (t)
			hadd(&p->lat, now() - t);
		if (w != (ssize_t)len) {
			perror("write");
			p->err = -1;
			break;
		}
	}
	p->end_ns = now();
	close(fd);
	free(rec);
}

static int run_oappend(uint32_t size, unsigned procs, uint64_t n, struct figs *f)
{
	struct run *s = shared_new(sizeof(*s));
	char *dir = scratch_new("oappend"), path[4096];
	struct fa_arg a = { .path = path, .size = size, .n = n };
	int rc = -1;

	if (dir) {
		snprintf(path, sizeof(path), "%s/log", dir);
		if (gang(s, procs, fa_body, &a) == 0) {
			figs_from(s, procs, n, f);
			rc = 0;
		}
		wal_done(dir);
	}
	shared_free(s, sizeof(*s));
	return rc;
}

/* ---- the mode ---- */

#define STAT_HZ 100

/* What reading the metrics costs the producers: 64 B, one producer, with and without a
 * process calling shmwal_stat() STAT_HZ times a second (a `shmwal stat --watch 0.01`, far
 * more often than a Prometheus scrape), interleaved. */
static int stat_cost(void)
{
	uint64_t n = scale(20000000, 200000);
	struct figs f[2][SUITE_MAX_ROUNDS];
	double rate[2][SUITE_MAX_ROUNDS], p999[2][SUITE_MAX_ROUNDS];

	for (unsigned r = 0; r < sopt.rounds; r++)
		for (unsigned k = 0; k < 2; k++) {
			unsigned which = r % 2 ? 1 - k : k;

			if (run_shmwal(64, 1, 1, n, &f[which][r], which ? STAT_HZ : 0) < 0)
				return -1;
			rate[which][r] = f[which][r].rate / 1e6;
			p999[which][r] = f[which][r].p999 / 1e3;
			note("    64 B x1 %-22s round %u: %7.3f M records/s, p99.9 %.2f us\n",
			     which ? "with stat at 100 Hz" : "without stat", r + 1, rate[which][r],
			     p999[which][r]);
		}
	result("append", "64 B, 1 proc, stat read 100/s", "rate", "M rec/s", HIGHER,
	       median(rate[1], sopt.rounds), "no stat reader", median(rate[0], sopt.rounds));
	result("append", "64 B, 1 proc, stat read 100/s", "p99.9", "us", LOWER,
	       median(p999[1], sopt.rounds), "no stat reader", median(p999[0], sopt.rounds));
	return 0;
}

static const uint32_t sizes[] = { 64, 1024 };
static const unsigned procs_list[] = { 1, 2, 4 };

int mode_append(void)
{
	double one_64 = 0, p999_64 = 0, two_64 = 0, base_64 = 0;

	for (unsigned si = 0; si < 2; si++) {
		uint32_t size = sizes[si];
		uint64_t n = size == 64 ? scale(20000000, 200000) : scale(4000000, 50000);
		uint64_t nb = scale(1000000, 20000);

		for (unsigned pi = 0; pi < 3; pi++) {
			unsigned procs = procs_list[pi];
			struct figs f[3][SUITE_MAX_ROUNDS];
			char kase[64], series[48];
			double med[3][5];

			for (unsigned r = 0; r < sopt.rounds; r++) {
				/* shmwal on one partition, shmwal on one partition each, O_APPEND;
				 * the order turns around every round */
				for (unsigned k = 0; k < 3; k++) {
					unsigned which = r % 2 ? 2 - k : k;
					int rc;

					if (which == 1 && procs == 1)
						continue;
					rc = which == 2 ? run_oappend(size, procs, nb, &f[2][r])
							: run_shmwal(size, procs, which ? procs : 1,
								     n, &f[which][r], 0);
					if (rc < 0)
						return -1;
					note("  %4u B x%u %-22s round %u: %7.3f M records/s, p50 %.2f "
					     "us, p99.9 %.2f us\n",
					     size, procs,
					     which == 2 ? "O_APPEND write()"
					     : which    ? "shmwal, own partitions"
							: "shmwal, one partition",
					     r + 1, f[which][r].rate / 1e6, f[which][r].p50 / 1e3,
					     f[which][r].p999 / 1e3);
				}
			}
			for (unsigned k = 0; k < 3; k++) {
				if (k == 1 && procs == 1)
					continue;
				for (unsigned m = 0; m < 5; m++) {
					double v[SUITE_MAX_ROUNDS];

					for (unsigned r = 0; r < sopt.rounds; r++) {
						const struct figs *x = &f[k][r];

						v[r] = m == 0 ? x->rate / 1e6
							      : m == 1 ? x->p50 / 1e3
							      : m == 2 ? x->p99 / 1e3
							      : m == 3 ? x->p999 / 1e3
								       : x->max / 1e3;
					}
					med[k][m] = median(v, sopt.rounds);
				}
			}
			for (unsigned k = 0; k < 2; k++) {
				static const char *const metric[5] = { "rate", "p50", "p99", "p99.9",
								       "max" };

				if (k == 1 && procs == 1)
					continue;
				snprintf(kase, sizeof(kase), "%u B, %u proc%s, %s", size, procs,
					 procs > 1 ? "s" : "",
					 k ? "a partition each" : "1 partition");
				for (unsigned m = 0; m < 5; m++)
					result("append", kase, metric[m], m ? "us" : "M rec/s",
					       m ? LOWER : HIGHER, med[k][m], "O_APPEND write()",
					       med[2][m]);
				snprintf(series, sizeof(series), "shmwal %u B, %s", size,
					 k ? "a partition each" : "1 partition");
				plot_point("append_scaling", series, procs, med[k][0]);
				if (procs == 1) {
					snprintf(series, sizeof(series), "shmwal %u B", size);
					for (unsigned m = 1; m < 4; m++)
						plot_point("append_latency", series, m, med[k][m]);
				}
			}
			snprintf(series, sizeof(series), "O_APPEND write() %u B", size);
			plot_point("append_scaling", series, procs, med[2][0]);
			if (procs == 1)
				for (unsigned m = 1; m < 4; m++)
					plot_point("append_latency", series, m, med[2][m]);
			if (size == 64 && procs == 1) {
				one_64 = med[0][0];
				p999_64 = med[0][3];
				base_64 = med[2][0];
			}
			if (size == 64 && procs == 2)
				two_64 = med[0][0] > med[1][0] ? med[0][0] : med[1][0];
		}
	}
	if (stat_cost() < 0)
		return -1;
	target("append 64 B, 1 producer, sync none >= 25 M records/s", one_64 >= 25, "%.2f M/s",
	       one_64);
	target("append 64 B, 1 producer: p99.9 <= 1 us", p999_64 <= 1.0, "%.2f us", p999_64);
	target("append 64 B, 2 producer processes >= 15 M records/s together", two_64 >= 15,
	       "%.2f M/s (the better of one partition and one each)", two_64);
	target("append 64 B, 1 producer >= 7x the O_APPEND write() baseline",
	       base_64 > 0 && one_64 >= 7 * base_64, "%.2f against %.2f M/s: %.1fx", one_64, base_64,
	       base_64 > 0 ? one_64 / base_64 : 0);
	return 0;
}
