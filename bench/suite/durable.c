/* SPDX-License-Identifier: MIT */
/*
 * durable.c - the "durable" mode: what it costs to make a record durable, against the disk's
 * own limit and against the code a user would write instead, on the same filesystem
 * (sopt.dir) and in the same run.
 *
 * Every shmwal run creates a fresh WAL (file backend, one partition, sync always), starts the
 * flusher in a child process, forks its producer processes, lets them go together through a
 * start gate, reaps them, stops the flusher and removes everything. Every baseline run does the
 * same in a fresh directory, with the same start gate. Producers write their results (a
 * histogram of every record's latency, counts, the time they finished) into shared memory.
 *
 * Cases, each run side by side with its baselines once per round; rounds alternate which
 * side goes first, and every figure quoted is the median of the rounds' figures (max too):
 *
 *   per record     one producer, 64 B values: append, then wait until that record is durable,
 *                  10,000 times (400 with --quick). Rate (records/s) and the latency of
 *                  append + wait: p50, p99, p99.9, max (every record is in the histogram).
 *                  Against: a loop of pwrite(4 KiB, appending) + fdatasync (the disk's own
 *                  limit), and one process write()ing each record (a 16-byte header and the
 *                  64 B value) to a file opened O_APPEND, with an fdatasync after each.
 *   group commit   N = 1, 2, 4, 8, 16 producer processes doing the same for 3 s (0.25 s).
 *                  Total rate and latency percentiles, and how many records one fdatasync
 *                  of the flusher covered (its counters, shmwal_stat). Against: N processes
 *                  write()ing and fdatasync'ing each record to one shared O_APPEND file.
 *   streaming      1 and 2 producer processes append 4 KiB values without waiting for 3 s
 *                  (0.3 s), then each waits until its last record is durable: value bytes
 *                  per second, from the start gate until the last record is durable (frame
 *                  headers, 32 bytes per record, are not counted). Against: a loop of
 *                  pwrite(1 MiB, appending) + fdatasync for as long, the size of the
 *                  flusher's largest batch. (1 KiB values gave about the same figure.)
 *
 * Targets (issue #5): per record, a rate of at least 0.9x the 4 KiB loop's and a p50 within
 * 1.15x of its; 8 producers at least 0.8 * 8 / (the 4 KiB loop's p50) records per second
 * (one fdatasync for the eight, back to back); streaming with one producer at least 0.9x the
 * 1 MiB loop's bandwidth.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/suite/suite.h"
#include "tests/helpers.h"

#define VALUE 64u			/* bytes of value per record (per record, group commit) */
#define RAW_SMALL 4096u			/* the raw loop's write for per-record latency */
#define RAW_BIG (1u << 20)		/* the raw loop's write for bandwidth */
#define STREAM_VALUE 4096u		/* value bytes per record when streaming */
#define RING_BYTES (16ull << 20)	/* the flusher's batches are then 1 MiB, its maximum */
#define SEGMENT_BYTES (64ull << 20)	/* the library's default */
#define WAIT_NS (60 * SHMWAL_NS_PER_SEC) /* a durable wait longer than this is an error */
#define MAX_PROCS 16u
#define MAX_ROUNDS SUITE_MAX_ROUNDS

#define LAT_RECORDS scale(10000, 400)
#define GC_NS (scale(3000, 250) * 1000000ull)
#define STREAM_NS (scale(3000, 300) * 1000000ull)

static const unsigned gc_procs[] = { 1, 2, 4, 8, 16 };
#define NGC (sizeof(gc_procs) / sizeof(gc_procs[0]))
static const unsigned stream_procs[] = { 1, 2 };
#define NSTREAM (sizeof(stream_procs) / sizeof(stream_procs[0]))

/* What one process of a run does. */
enum work {
	WAL_EACH,    /* shmwal: append, wait until durable, per record */
	WAL_STREAM,  /* shmwal: append without waiting; wait for the last one at the end */
	RAW_LOOP,    /* pwrite(size, appending) + fdatasync, per write */
	APPEND_EACH, /* write(header + value) to a shared O_APPEND file + fdatasync */
};

struct job {
	enum work work;
	unsigned procs;
	uint32_t size;	   /* value bytes per record, or bytes per raw write */
	uint64_t count;	   /* records (writes) per process; 0: until run_ns after the gate */
	uint64_t run_ns;
};

/* A run's figures (one round, one side). Rates per second, latencies in µs; records and MiB
 * per fdatasync from the flusher's counters (shmwal runs only). */
enum { F_RATE, F_MIBS, F_P50, F_P99, F_P999, F_MAX, F_PER_SYNC, F_MIB_PER_SYNC, NF };
struct fig {
	double v[NF];
};

/* One producer's results. Written by that process only; read by the parent after reaping it
 * (waitpid orders them). */
struct slot {
	struct hist lat;   /* every record: its first system or library call until durable */
	uint64_t records;
	uint64_t bytes;	   /* value bytes (raw loop: bytes written) */
	uint64_t end_ns;   /* now() when its last record was durable */
	int failed;
};

/* Shared by the parent and the producers of one run (MAP_SHARED, zeroed). */
struct shared {
	struct gate gate;
	int abort; /* set by the parent before it opens the gate: skip the work, just exit */
	struct slot slot[MAX_PROCS];
};

/* A baseline record: the header a hand-written log would put before each value. */
struct rec_hdr {
	uint32_t len;
	uint32_t crc; /* CRC32C of the value */
	uint64_t seq;
};

static void config(struct shmwal_config *c, uint32_t max_value)
{
	shmwal_config_default(c);
	c->partitions = 1;
	c->ring_bytes = RING_BYTES;
	c->segment_bytes = SEGMENT_BYTES;
	c->max_value = max_value;
	c->sync = SHMWAL_SYNC_ALWAYS;
}

static int is_wal(enum work w)
{
	return w == WAL_EACH || w == WAL_STREAM;
}

/* Whether the process is done after n records, the last one finished at t. */
static int done(const struct job *j, const struct shared *sh, uint64_t n, uint64_t t)
{
	return j->count ? n >= j->count : t - sh->gate.t0 >= j->run_ns;
}

static int wal_work(const struct job *j, const char *dir, struct shared *sh, struct slot *s)
{
	struct shmwal *w;
	uint64_t n = 0, lsn = 0, t = 0;
	uint8_t *val = calloc(1, j->size);
	int rc = 0;

	if (!val || (rc = th_open(dir, &w)) < 0) {
		fprintf(stderr, "durable: open %s: %s\n", dir,
			val ? shmwal_last_error() : "no memory");
		free(val);
		s->failed = 1;
		gate_arrive_and_wait(&sh->gate);
		return -1;
	}
	gate_arrive_and_wait(&sh->gate); /* abort is read after it: the parent set it before */
	while (!sh->abort) {
		uint64_t a = now();

		memcpy(val, &n, sizeof(n));
		rc = shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, val, j->size, &lsn);
		if (rc == 0 && j->work == WAL_EACH)
			rc = shmwal_wait_durable(w, 0, lsn, WAIT_NS);
		if (rc < 0)
			break;
		t = now();
		if (j->work == WAL_EACH)
			hadd(&s->lat, t - a);
		if (done(j, sh, ++n, t))
			break;
	}
	if (rc == 0 && n && j->work == WAL_STREAM)
		rc = shmwal_wait_durable(w, 0, lsn, WAIT_NS);
	s->end_ns = now();
	s->records = n;
	s->bytes = n * j->size;
	if (rc < 0)
		fprintf(stderr, "durable: record %llu: %s\n", (unsigned long long)n,
			shmwal_last_error());
	shmwal_close(w);
	free(val);
	return rc < 0 ? -1 : 0;
}

static int file_work(const struct job *j, const char *path, struct shared *sh, struct slot *s)
{
	size_t len = j->work == APPEND_EACH ? sizeof(struct rec_hdr) + j->size : j->size;
	int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (j->work == APPEND_EACH ? O_APPEND : O_TRUNC);
	uint8_t *buf = calloc(1, len);
	int fd = buf ? open(path, flags, 0600) : -1;
	uint64_t n = 0, t;
	int rc = 0;

	if (fd < 0) {
		fprintf(stderr, "durable: open %s: %s\n", path,
			buf ? strerror(errno) : "no memory");
		free(buf);
		s->failed = 1;
		gate_arrive_and_wait(&sh->gate);
		return -1;
	}
	gate_arrive_and_wait(&sh->gate);
	while (!sh->abort) {
		uint64_t a = now();
		ssize_t wr;

		if (j->work == APPEND_EACH) {
			struct rec_hdr h = { .len = j->size, .seq = n };

			memcpy(buf + sizeof(h), &n, sizeof(n));
			h.crc = shmwal_crc32c(0, buf + sizeof(h), j->size);
			memcpy(buf, &h, sizeof(h));
			wr = write(fd, buf, len);
		} else {
			memcpy(buf, &n, sizeof(n));
			wr = pwrite(fd, buf, len, (off_t)(n * len));
		}
		if (wr != (ssize_t)len || fdatasync(fd) < 0) {
			fprintf(stderr, "durable: %s of %s: %s\n",
				wr != (ssize_t)len ? "write" : "fdatasync", path,
				wr < 0 || wr == (ssize_t)len ? strerror(errno) : "short write");
			rc = -1;
			break;
		}
		t = now();
		hadd(&s->lat, t - a);
		if (done(j, sh, ++n, t))
			break;
	}
	s->end_ns = now();
	s->records = n;
	s->bytes = n * j->size;
	if (close(fd) < 0 && rc == 0) {
		fprintf(stderr, "durable: close %s: %s\n", path, strerror(errno));
		rc = -1;
	}
	free(buf);
	return rc;
}

/* The figures of a run from its producers' slots. */
static void figures(const struct job *j, const struct shared *sh, struct fig *f)
{
	static struct hist all; /* 8 KiB: kept off the stack */
	uint64_t records = 0, bytes = 0, end = sh->gate.t0;
	double s;

	memset(f, 0, sizeof(*f));
	memset(&all, 0, sizeof(all));
	for (unsigned i = 0; i < j->procs; i++) {
		const struct slot *sl = &sh->slot[i];

		hmerge(&all, &sl->lat);
		records += sl->records;
		bytes += sl->bytes;
		if (sl->end_ns > end)
			end = sl->end_ns;
	}
	s = (double)(end - sh->gate.t0) / 1e9;
	f->v[F_RATE] = s > 0 ? (double)records / s : 0;
	f->v[F_MIBS] = s > 0 ? (double)bytes / s / (1 << 20) : 0;
	f->v[F_P50] = (double)hpct(&all, 0.5) / 1e3;
	f->v[F_P99] = (double)hpct(&all, 0.99) / 1e3;
	f->v[F_P999] = (double)hpct(&all, 0.999) / 1e3;
	f->v[F_MAX] = (double)all.max / 1e3;
}

/*
 * One run: a fresh WAL and its flusher (or a fresh directory), j->procs producer processes
 * started together, every child reaped and everything removed. 0 and *f, or -1 (printed).
 */
static int run(const struct job *j, struct fig *f)
{
	static struct shmwal_stat stat; /* 20 KiB: kept off the stack */
	struct shared *sh = shared_new(sizeof(*sh));
	struct shmwal_config c;
	char *dir, path[4096];
	pid_t flusher = -1, pids[MAX_PROCS];
	unsigned forked = 0;
	int rc = 0;

	if (j->procs > MAX_PROCS)
		return -1;
	if (is_wal(j->work)) {
		config(&c, j->size);
		dir = wal_new(&c);
	} else {
		dir = scratch_new("durable");
	}
	if (!dir) {
		shared_free(sh, sizeof(*sh));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/log", dir);
	if (is_wal(j->work) && (flusher = th_flusher_start(dir, 0)) < 0) {
		fprintf(stderr, "durable: cannot fork the flusher: %s\n", strerror(errno));
		rc = -1;
		goto out;
	}
	for (; forked < j->procs; forked++) {
		pid_t pid = fork();

		if (pid == 0) {
			struct slot *s = &sh->slot[forked];

			rc = is_wal(j->work) ? wal_work(j, dir, sh, s) : file_work(j, path, sh, s);
			_exit(rc < 0 ? 1 : 0);
		}
		if (pid < 0) {
			fprintf(stderr, "durable: fork: %s\n", strerror(errno));
			rc = -1;
			break;
		}
		pids[forked] = pid;
	}
	if (rc < 0 || gate_open(&sh->gate, forked) < 0) {
		if (rc == 0)
			fprintf(stderr, "durable: producers did not reach the start gate\n");
		rc = -1;
		sh->abort = 1;
		__atomic_store_n(&sh->gate.go, 1, __ATOMIC_RELEASE); /* pairs: the gate's spin */
	}
	for (unsigned i = 0; i < forked; i++) {
		int st = th_wait(pids[i], TH_TIMEOUT_S);

		if (st != 0 || sh->slot[i].failed) {
			if (rc == 0)
				fprintf(stderr, "durable: producer %u failed (status %d)\n", i, st);
			rc = -1;
		}
	}
	if (flusher > 0) {
		int st;

		if (rc == 0 && shmwal_stat(dir, &stat) < 0) {
			fprintf(stderr, "durable: stat %s: %s\n", dir, shmwal_last_error());
			rc = -1;
		}
		st = th_flusher_stop(flusher);
		if (st != 0) {
			fprintf(stderr, "durable: the flusher exited with status %d\n", st);
			rc = -1;
		}
	}
	if (rc == 0) {
		const struct shmwal_partition_stat *ps = &stat.part[0];

		figures(j, sh, f);
		if (flusher > 0 && ps->syncs) {
			f->v[F_PER_SYNC] = (double)ps->records / (double)ps->syncs;
			f->v[F_MIB_PER_SYNC] = (double)ps->bytes / (double)ps->syncs / (1 << 20);
		}
	}
out:
	wal_done(dir);
	shared_free(sh, sizeof(*sh));
	return rc;
}

/* The median, over n rounds, of each figure. */
static struct fig med(const struct fig *r, unsigned n)
{
	struct fig m;
	double v[MAX_ROUNDS];

	for (unsigned k = 0; k < NF; k++) {
		for (unsigned i = 0; i < n; i++)
			v[i] = r[i].v[k];
		m.v[k] = median(v, n);
	}
	return m;
}

/* Runs a and b in this round's order (a first in even rounds). */
static int pair(unsigned round, const struct job *a, struct fig *fa, const struct job *b,
		struct fig *fb)
{
	if (round % 2)
		return run(b, fb) < 0 || run(a, fa) < 0 ? -1 : 0;
	return run(a, fa) < 0 || run(b, fb) < 0 ? -1 : 0;
}

/* Rows for rate and latency percentiles (with max if `max`), shmwal against one baseline. */
static void rows(const char *kase, const struct fig *o, const char *tname, const struct fig *t,
		 int max)
{
	static const struct {
		int k;
		const char *metric;
	} lat[] = { { F_P50, "p50" }, { F_P99, "p99" }, { F_P999, "p99.9" }, { F_MAX, "max" } };

	result("durable", kase, "rate", "rec/s", HIGHER, o->v[F_RATE], tname, t->v[F_RATE]);
	for (unsigned i = 0; i < sizeof(lat) / sizeof(lat[0]); i++)
		if (lat[i].k != F_MAX || max)
			result("durable", kase, lat[i].metric, "us", LOWER, o->v[lat[i].k], tname,
			       t->v[lat[i].k]);
}

static struct {
	struct fig rec_wal[MAX_ROUNDS], rec_raw[MAX_ROUNDS], rec_app[MAX_ROUNDS];
	struct fig gc_wal[NGC][MAX_ROUNDS], gc_app[NGC][MAX_ROUNDS];
	struct fig st_wal[NSTREAM][MAX_ROUNDS], st_raw[MAX_ROUNDS];
} m;

static int one_round(unsigned r)
{
	const unsigned n = sopt.rounds;
	struct job wal = { WAL_EACH, 1, VALUE, LAT_RECORDS, 0 };
	struct job raw = { RAW_LOOP, 1, RAW_SMALL, LAT_RECORDS, 0 };
	struct job app = { APPEND_EACH, 1, VALUE, LAT_RECORDS, 0 };
	struct fig *fw = &m.rec_wal[r], *fr = &m.rec_raw[r], *fa = &m.rec_app[r];

	/* per record: shmwal, raw, O_APPEND; the reverse order in odd rounds */
	if (r % 2 ? run(&app, fa) < 0 || pair(r, &wal, fw, &raw, fr) < 0
		  : pair(r, &wal, fw, &raw, fr) < 0 || run(&app, fa) < 0)
		return -1;
	note("  round %u/%u per record: shmwal %.0f/s p50 %.1f us | raw 4 KiB %.0f/s p50 %.1f us "
	     "| O_APPEND %.0f/s p50 %.1f us\n",
	     r + 1, n, fw->v[F_RATE], fw->v[F_P50], fr->v[F_RATE], fr->v[F_P50], fa->v[F_RATE],
	     fa->v[F_P50]);

	for (unsigned i = 0; i < NGC; i++) {
		struct job gw = { WAL_EACH, gc_procs[i], VALUE, 0, GC_NS };
		struct job ga = { APPEND_EACH, gc_procs[i], VALUE, 0, GC_NS };

		fw = &m.gc_wal[i][r];
		fa = &m.gc_app[i][r];
		if (pair(r, &gw, fw, &ga, fa) < 0)
			return -1;
		note("  round %u/%u group commit x%-2u: shmwal %.0f/s p50 %.1f us (%.1f per sync)"
		     " | O_APPEND %.0f/s p50 %.1f us\n",
		     r + 1, n, gc_procs[i], fw->v[F_RATE], fw->v[F_P50], fw->v[F_PER_SYNC],
		     fa->v[F_RATE], fa->v[F_P50]);
	}

	for (unsigned i = 0; i < NSTREAM; i++) {
		struct job sw = { WAL_STREAM, stream_procs[i], STREAM_VALUE, 0, STREAM_NS };
		struct job sr = { RAW_LOOP, 1, RAW_BIG, 0, STREAM_NS };

		fw = &m.st_wal[i][r];
		/* the 1 MiB loop runs once per round, paired with the first streaming case */
		if (i == 0 ? pair(r, &sw, fw, &sr, &m.st_raw[r]) < 0 : run(&sw, fw) < 0)
			return -1;
		note("  round %u/%u streaming x%u: shmwal %.1f MiB/s (%.2f MiB per sync)%s", r + 1,
		     n, stream_procs[i], fw->v[F_MIBS], fw->v[F_MIB_PER_SYNC], i == 0 ? "" : "\n");
		if (i == 0)
			note(" | raw 1 MiB loop %.1f MiB/s\n", m.st_raw[r].v[F_MIBS]);
	}
	return 0;
}

int mode_durable(void)
{
	const unsigned n = sopt.rounds;
	struct fig w, raw, app, st_raw;
	double gc8 = 0, raw_p50_s;
	char kase[64];

	if (n > MAX_ROUNDS)
		return -1;
	note("  per record: %llu x 64 B; group commit: %.2f s per run; streaming: %u B values, "
	     "%.2f s per run; sync always\n",
	     (unsigned long long)LAT_RECORDS, (double)GC_NS / 1e9, STREAM_VALUE,
	     (double)STREAM_NS / 1e9);
	for (unsigned r = 0; r < n; r++)
		if (one_round(r) < 0)
			return -1;

	w = med(m.rec_wal, n);
	raw = med(m.rec_raw, n);
	app = med(m.rec_app, n);
	rows("per record, 64 B, 1 proc", &w, "raw pwrite 4K+fdatasync", &raw, 1);
	rows("per record, 64 B, 1 proc", &w, "O_APPEND write+fdatasync", &app, 1);
	target("durable per record: rate >= 0.9x the raw 4 KiB write+fdatasync loop",
	       w.v[F_RATE] >= 0.9 * raw.v[F_RATE], "%.0f vs %.0f rec/s (%.2fx)", w.v[F_RATE],
	       raw.v[F_RATE], w.v[F_RATE] / raw.v[F_RATE]);
	target("durable per record: p50 <= 1.15x the raw loop's p50",
	       w.v[F_P50] <= 1.15 * raw.v[F_P50], "%.1f vs %.1f us (%.2fx)", w.v[F_P50],
	       raw.v[F_P50], w.v[F_P50] / raw.v[F_P50]);

	for (unsigned i = 0; i < NGC; i++) {
		w = med(m.gc_wal[i], n);
		app = med(m.gc_app[i], n);
		snprintf(kase, sizeof(kase), "group commit, 64 B, %u proc%s", gc_procs[i],
			 gc_procs[i] > 1 ? "s" : "");
		rows(kase, &w, "shared O_APPEND+fdatasync", &app, 0);
		result("durable", kase, "per fdatasync", "records", HIGHER, w.v[F_PER_SYNC], NULL,
		       NAN);
		plot_point("group_commit", "shmwal", gc_procs[i], w.v[F_RATE]);
		plot_point("group_commit", "O_APPEND + fdatasync", gc_procs[i], app.v[F_RATE]);
		plot_point("group_commit_latency", "shmwal p50", gc_procs[i], w.v[F_P50]);
		plot_point("group_commit_latency", "shmwal p99", gc_procs[i], w.v[F_P99]);
		plot_point("group_commit_latency", "O_APPEND p50", gc_procs[i], app.v[F_P50]);
		plot_point("group_commit_latency", "O_APPEND p99", gc_procs[i], app.v[F_P99]);
		if (gc_procs[i] == 8)
			gc8 = w.v[F_RATE];
	}
	raw_p50_s = raw.v[F_P50] / 1e6;
	target("group commit: 8 producers >= 0.8 * 8 / raw fdatasync p50",
	       gc8 >= 0.8 * 8 / raw_p50_s, "%.0f vs %.0f rec/s (p50 %.1f us; %.2fx)", gc8,
	       0.8 * 8 / raw_p50_s, raw.v[F_P50], gc8 / (0.8 * 8 / raw_p50_s));

	st_raw = med(m.st_raw, n);
	for (unsigned i = 0; i < NSTREAM; i++) {
		w = med(m.st_wal[i], n);
		snprintf(kase, sizeof(kase), "streaming, %u KiB, %u proc%s", STREAM_VALUE >> 10,
			 stream_procs[i], stream_procs[i] > 1 ? "s" : "");
		result("durable", kase, "durable bw", "MiB/s", HIGHER, w.v[F_MIBS],
		       "raw pwrite 1M+fdatasync", st_raw.v[F_MIBS]);
		if (i == 0)
			target("durable streaming, 1 producer: >= 0.9x the raw 1 MiB "
			       "write+fdatasync bandwidth",
			       w.v[F_MIBS] >= 0.9 * st_raw.v[F_MIBS], "%.1f vs %.1f MiB/s (%.2fx)",
			       w.v[F_MIBS], st_raw.v[F_MIBS], w.v[F_MIBS] / st_raw.v[F_MIBS]);
	}
	return 0;
}
