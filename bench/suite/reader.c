/* SPDX-License-Identifier: MIT */
/*
 * reader.c - the suite's reader mode: how fast one reader scans a log with every checksum
 * checked, and how soon a waiting reader returns once the flusher has published its record.
 *
 * 1. Scan rate ("scan 64 B", "scan 1 KiB"). A producer process appends N records (no key, a
 *    64 B or a 1 KiB value, each size in its own partition, sync none, 64 MiB segments) and
 *    waits until the last one is durable. Then, with the flusher still running, one reader in
 *    this process opens at SHMWAL_LSN_OLDEST and calls shmwal_reader_next() with timeout 0
 *    until -ETIMEDOUT, which must come after exactly N records. The reader checks every
 *    frame's CRC32C. Timed: from shmwal_reader_open() to that -ETIMEDOUT, from the page cache
 *    (the log was just written).
 *    Baseline, what one would write by hand: a file of the same values as entries
 *    [u32 length][u32 CRC32C of the value][value], read front to back with read() into a
 *    1 MiB buffer, every CRC checked with shmwal_crc32c() (the library's own CRC code, so both
 *    sides pay the same per byte). Timed from open() to the end of the file.
 *    Reported: records/s and GB/s of value bytes. A 64 B value is a 96-byte frame in the log
 *    and a 72-byte entry in the file; counting values keeps the two comparable (the frame
 *    bytes/s are in the progress line).
 *    Then the flusher is stopped and the 64 B partition is scanned again the same way,
 *    offline: a reader without a flusher reads the files alone ("scan 64 B, offline").
 *
 * 2. Wake latency ("wake, ..."): from the flusher's publication of a record to the return of
 *    a shmwal_reader_next() that was waiting for it.
 *    The publication is stamped by the flusher itself: its child process puts a hook into the
 *    flusher's file-operation seam (persist/io.h, which the fault-injection tests use) that
 *    stores CLOCK_MONOTONIC into shared memory as each pwrite (and fdatasync) returns. With
 *    sync none the flusher then publishes `written` (waking the futex waiters) and `durable`
 *    (waking them again); the samples include that work, so they err long by the little of
 *    it that comes before the wake-up.
 *    (A process spinning on shmwal_durable_lsn() would stamp the store itself, but with a
 *    spinning reader that needs three CPUs at once, the reader, the flusher and the
 *    observer, and on a 2-core machine one of them would wait for a time slice.)
 *    The reader stamps CLOCK_MONOTONIC when shmwal_reader_next() returns: the difference is
 *    one sample. Its voluntary context switches (getrusage) across the call say whether it
 *    slept on the futex.
 *    - spinning reader: the reader process appends the record itself and calls
 *      shmwal_reader_next() at once. The flusher, still in its idle spin after publishing the
 *      previous record, writes it within microseconds: inside the reader's spin phase
 *      (SPIN_NS in shm/wait.c, 20 us). Samples in which the reader slept after all are left
 *      out and counted.
 *    - sleeping reader: a producer process appends the record WAKE_DELAY_NS after the reader
 *      began to wait, so the reader has long gone to sleep on the futex. Samples in which it
 *      did not sleep are left out and counted.
 *    The first WAKE_WARM samples of each run are left out.
 *    Baselines, the machine's limit, measured the same way between two processes (the
 *    publisher stamps right before its store, the waiter when it sees the new value): a word
 *    in shared memory the waiter spins on (64 loads per clock read, as shm/wait.c spins), and
 *    FUTEX_WAIT/FUTEX_WAKE on a shared word, the publisher also waiting WAKE_DELAY_NS before
 *    it publishes and staying busy WAKE_BUSY_NS after the wake, as the flusher spins on after
 *    a pass (SPIN_IDLE_NS in persist/flusher.c): a publisher that went to sleep at once would
 *    leave its CPU to the waiter, which the flusher does not.
 *    The progress line tells per run how many samples were kept, in how many the waiter
 *    slept more than once (woken before its record was durable) or was preempted, how many
 *    returned on the CPU the publication was stamped on, and how long the waiter had waited
 *    for the publication (p50).
 *
 * Medians of sopt.rounds interleaved rounds (shmwal and its baseline alternate which goes
 * first); for the latencies, the median of each round's p50, p99, p99.9 and max. Plots:
 * reader_scan (GB/s of values against the value size), reader_wake (p50, p99, p99.9).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bench/suite/suite.h"
#include "persist/io.h"
#include "shmwal_format.h"
#include "tests/helpers.h"

#define MAX_ROUNDS SUITE_MAX_ROUNDS
#define WAIT_NS (60 * SHMWAL_NS_PER_SEC) /* any wait in a child: give up after this */

static int lib_error(const char *what)
{
	fprintf(stderr, "suite: reader: %s: %s\n", what, shmwal_last_error());
	return -1;
}


/* ---- 1. scan rate ------------------------------------------------------------------- */

#define SCAN_BUF (1u << 20)
#define SCAN_SIZES 2

static const uint32_t scan_value[SCAN_SIZES] = { 64, 1024 }; /* partition i holds size i */

/* A record's bytes in the log: its frame, header and padding included (no key here). */
static uint64_t frame_bytes(uint32_t value)
{
	return SHMWAL_ALIGN_UP(SHMWAL_FRAME_HDR + value);
}

struct scan_fill {
	const char *dir;
	uint64_t n[SCAN_SIZES];
};

/* The producer: n[i] records of scan_value[i] bytes into partition i, then waits until the
 * last of each is durable. */
static int scan_fill_child(void *arg)
{
	const struct scan_fill *f = arg;
	uint8_t val[1024];
	struct shmwal *w;
	uint64_t lsn = 0;

	if (th_open(f->dir, &w) < 0)
		return lib_error("scan producer: open");
	for (uint32_t s = 0; s < SCAN_SIZES; s++) {
		for (uint64_t i = 0; i < f->n[s]; i++) {
			th_fill(val, scan_value[s], 0, s, i);
			if (shmwal_append(w, s, SHMWAL_TYPE_PUT, NULL, 0, val, scan_value[s],
					  &lsn) < 0)
				return lib_error("scan producer: append");
		}
		if (shmwal_wait_durable(w, s, lsn, WAIT_NS) < 0)
			return lib_error("scan producer: wait durable");
	}
	shmwal_close(w);
	return 0;
}

static int write_all(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The baseline's file: the same values as th_fill made them, [len][crc][value] each. */
static int scan_file_write(const char *path, uint32_t s, uint64_t n)
{
	uint32_t value = scan_value[s];
	uint8_t *buf = malloc(SCAN_BUF);
	size_t used = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), rc = 0;

	if (!buf || fd < 0) {
		perror(path);
		free(buf);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	for (uint64_t i = 0; i < n && rc == 0; i++) {
		uint8_t *e;
		uint32_t crc;

		if (used + 8 + value > SCAN_BUF) {
			rc = write_all(fd, buf, used);
			used = 0;
		}
		e = buf + used;
		th_fill(e + 8, value, 0, s, i);
		crc = shmwal_crc32c(0, e + 8, value);
		memcpy(e, &value, 4);
		memcpy(e + 4, &crc, 4);
		used += 8 + value;
	}
	if (rc == 0)
		rc = write_all(fd, buf, used);
	if (rc < 0)
		perror(path);
	close(fd);
	free(buf);
	return rc;
}

/* One reader over partition `part`: seconds from open to the end; exactly n records. */
static int scan_wal(const char *dir, uint32_t part, uint64_t n, double *secs)
{
	struct shmwal_reader *r;
	struct shmwal_record rec;
	uint64_t t0 = now(), count = 0;
	int rc;

	if (shmwal_reader_open(dir, part, SHMWAL_LSN_OLDEST, &r) < 0)
		return lib_error("scan: reader open");
	while ((rc = shmwal_reader_next(r, &rec, 0)) == 0)
		count++;
	*secs = (double)(now() - t0) / 1e9;
	if (rc != -ETIMEDOUT) {
		lib_error("scan: reader next");
		shmwal_reader_close(r);
		return -1;
	}
	shmwal_reader_close(r);
	if (count != n) {
		fprintf(stderr, "suite: reader: scan read %llu records of %llu\n",
			(unsigned long long)count, (unsigned long long)n);
		return -1;
	}
	return 0;
}

/* The baseline: read() in SCAN_BUF pieces, every entry's CRC checked; exactly n entries. */
static int scan_file(const char *path, uint8_t *buf, uint64_t n, double *secs)
{
	uint64_t t0 = now(), count = 0;
	size_t have = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		perror(path);
		return -1;
	}
	for (;;) {
		ssize_t got = read(fd, buf + have, SCAN_BUF - have);
		size_t p = 0;

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			perror(path);
			close(fd);
			return -1;
		}
		if (got == 0)
			break;
		have += (size_t)got;
		while (have - p >= 8) {
			uint32_t len, crc;

			memcpy(&len, buf + p, 4);
			memcpy(&crc, buf + p + 4, 4);
			if (len > SCAN_BUF - 8)
				break; /* caught below: the file does not end on an entry */
			if (have - p - 8 < len)
				break;
			if (shmwal_crc32c(0, buf + p + 8, len) != crc) {
				fprintf(stderr, "suite: reader: %s: entry %llu: bad CRC\n", path,
					(unsigned long long)count);
				close(fd);
				return -1;
			}
			count++;
			p += 8 + (size_t)len;
		}
		memmove(buf, buf + p, have - p);
		have -= p;
	}
	*secs = (double)(now() - t0) / 1e9;
	close(fd);
	if (have || count != n) {
		fprintf(stderr, "suite: reader: %s: %llu entries of %llu, %zu bytes left over\n",
			path, (unsigned long long)count, (unsigned long long)n, have);
		return -1;
	}
	return 0;
}

static int scan_rounds(const char *dir, const char *files, const uint64_t *n,
		       double rate[SCAN_SIZES][2][MAX_ROUNDS])
{
	uint8_t *buf = malloc(SCAN_BUF);
	char path[4096];
	int rc = 0;

	if (!buf)
		return -1;
	for (unsigned r = 0; r < sopt.rounds && rc == 0; r++) {
		note("  scan round %u/%u:", r + 1, sopt.rounds);
		for (uint32_t s = 0; s < SCAN_SIZES && rc == 0; s++) {
			double t[2] = { 0, 0 };

			snprintf(path, sizeof(path), "%s/%u.log", files, scan_value[s]);
			for (int k = 0; k < 2 && rc == 0; k++)
				rc = (k ^ (int)(r & 1)) == 0 ? scan_wal(dir, s, n[s], &t[0])
							     : scan_file(path, buf, n[s], &t[1]);
			if (rc)
				break;
			rate[s][0][r] = (double)n[s] / t[0];
			rate[s][1][r] = (double)n[s] / t[1];
			note(" %u B %.1f M rec/s (%.2f GB/s of frames), read() %.1f M rec/s;",
			     scan_value[s], rate[s][0][r] / 1e6,
			     rate[s][0][r] * (double)frame_bytes(scan_value[s]) / 1e9,
			     rate[s][1][r] / 1e6);
		}
		note("\n");
	}
	free(buf);
	return rc;
}

static int scan_mode(void)
{
	struct shmwal_config c;
	struct scan_fill fill;
	double rate[SCAN_SIZES][2][MAX_ROUNDS], med[SCAN_SIZES][2], offline[MAX_ROUNDS];
	char *dir, *files = NULL, path[4096];
	pid_t fl = -1;
	int rc = -1;

	shmwal_config_default(&c);
	c.partitions = SCAN_SIZES;
	c.ring_bytes = 16 << 20;
	c.segment_bytes = 64 << 20;
	c.sync = SHMWAL_SYNC_NONE;
	if (!(dir = wal_new(&c)))
		return -1;
	fill.dir = dir;
	fill.n[0] = scale(4000000, 200000);
	fill.n[1] = scale(524288, 50000);
	note("  scan: writing %llu x 64 B and %llu x 1 KiB records (sync none), and the "
	     "baseline's files\n",
	     (unsigned long long)fill.n[0], (unsigned long long)fill.n[1]);
	if ((fl = th_flusher_start(dir, 0)) < 0 ||
	    suite_reap(suite_spawn(scan_fill_child, &fill), "scan producer") < 0 ||
	    !(files = scratch_new("scan")))
		goto out;
	for (uint32_t s = 0; s < SCAN_SIZES; s++) {
		snprintf(path, sizeof(path), "%s/%u.log", files, scan_value[s]);
		if (scan_file_write(path, s, fill.n[s]) < 0)
			goto out;
	}
	if (scan_rounds(dir, files, fill.n, rate) < 0)
		goto out;
	for (uint32_t s = 0; s < SCAN_SIZES; s++) {
		char kase[64];
		double v = scan_value[s];

		for (int k = 0; k < 2; k++)
			med[s][k] = median(rate[s][k], sopt.rounds);
		snprintf(kase, sizeof(kase), "scan %s, page cache, CRC", s ? "1 KiB" : "64 B");
		result("reader", kase, "rate", "M rec/s", HIGHER, med[s][0] / 1e6,
		       "read() + CRC32C, 1 MiB bufs", med[s][1] / 1e6);
		result("reader", kase, "values", "GB/s", HIGHER, med[s][0] * v / 1e9,
		       "read() + CRC32C, 1 MiB bufs", med[s][1] * v / 1e9);
		plot_point("reader_scan", "shmwal reader", v, med[s][0] * v / 1e9);
		plot_point("reader_scan", "read() + CRC32C", v, med[s][1] * v / 1e9);
	}
	/* Offline: with the flusher stopped cleanly, the reader reads the files alone (it looks
	 * for a flusher once per batch of frames checked ahead). */
	rc = th_flusher_stop(fl);
	fl = -1;
	if (rc != 0) {
		fprintf(stderr, "suite: reader: the scan's flusher did not stop cleanly\n");
		rc = -1;
		goto out;
	}
	rc = -1;
	for (unsigned r = 0; r < sopt.rounds; r++) {
		double t;

		if (scan_wal(dir, 0, fill.n[0], &t) < 0)
			goto out;
		offline[r] = (double)fill.n[0] / t;
		note("  scan offline round %u/%u: 64 B %.1f M rec/s\n", r + 1, sopt.rounds,
		     offline[r] / 1e6);
	}
	result("reader", "scan 64 B, offline (no flusher)", "rate", "M rec/s", HIGHER,
	       median(offline, sopt.rounds) / 1e6, "read() + CRC32C, 1 MiB bufs", med[0][1] / 1e6);
	target("reader scan with CRC >= 3 GB/s from page cache", med[1][0] * 1024 / 1e9 >= 3,
	       "1 KiB values: %.2f GB/s of values, %.2f GB/s of frames (64 B: %.2f of values)",
	       med[1][0] * 1024 / 1e9,
	       med[1][0] * (double)frame_bytes(1024) / 1e9,
	       med[0][0] * 64 / 1e9);
	rc = 0;
out:
	if (fl > 0 && th_flusher_stop(fl) != 0) {
		fprintf(stderr, "suite: reader: the scan's flusher did not stop cleanly\n");
		rc = -1;
	}
	if (files)
		wal_done(files);
	wal_done(dir);
	return rc;
}

/* ---- 2. wake latency ---------------------------------------------------------------- */

#define WAKE_DELAY_NS 100000ull /* the sleeping case: 5 times the reader's spin phase */
#define WAKE_BUSY_NS 50000ull	/* the baseline's publisher: busy this long after a wake */
#define WAKE_WARM 100		/* samples left out at the start of each run */
#define WAKE_VALUE 64

enum wake_kind { WAKE_SPIN, WAKE_SLEEP, WAKE_KINDS };

/*
 * Shared by the processes of one run (MAP_SHARED), zeroed before each.
 *   pub_ns   the hooked flusher (or the baseline's publisher) stores when it published;
 *            the waiter loads it after its wait returned (the library's durable LSN, or
 *            `word`, store-release / load-acquire orders it)
 *   armed    the waiter stores i + 1 (release) when it begins to wait for sample i: the
 *            appender (publisher) waits for it (acquire); a futex word
 *   word     the baselines' published value: i + 1 for sample i (release / acquire); a
 *            futex word
 *   failed   a child gave up: the others stop waiting
 *   the rest is written by the waiter only, read by the parent after reaping it.
 */
struct wake {
	uint64_t pub_ns;
	int pub_cpu;	    /* the CPU the publisher stamped pub_ns on */
	uint32_t armed;
	uint32_t word;
	int failed;
	uint64_t n;
	uint64_t kept, other, preempted, twice, same_cpu;
	struct hist lat;    /* kept samples: publication to return */
	struct hist waited; /* kept samples: wait begun to publication */
};

struct wake_run {
	struct wake *wk;
	const char *dir;
};

/* The median of the rounds that kept a sample (NAN if none did). */
static double median_kept(const double *v, unsigned n)
{
	double kept[MAX_ROUNDS];
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++)
		if (!isnan(v[i]))
			kept[k++] = v[i];
	return k ? median(kept, k) : NAN;
}

static inline void relax(void)
{
#if defined(__x86_64__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield" ::: "memory");
#endif
}

static void futex_wake(uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

static void wake_fail(struct wake *wk)
{
	__atomic_store_n(&wk->failed, 1, __ATOMIC_RELAXED);
	futex_wake(&wk->armed);
	futex_wake(&wk->word);
}

/* Waits until *w == want, spinning (64 loads per clock read) or on the futex. -1 if a child
 * failed or after WAIT_NS. */
static int wait_u32(struct wake *wk, uint32_t *w, uint32_t want, int spin)
{
	uint64_t deadline = now() + WAIT_NS;
	struct timespec ts = { 0, 100000000 };

	for (;;) {
		uint32_t v;

		for (int i = 0; i < 64; i++) {
			v = __atomic_load_n(w, __ATOMIC_ACQUIRE); /* pairs: the storer's release */
			if (v == want)
				return 0;
			if (!spin)
				break;
			relax();
		}
		if (__atomic_load_n(&wk->failed, __ATOMIC_RELAXED) || now() > deadline)
			return -1;
		if (!spin)
			syscall(SYS_futex, w, FUTEX_WAIT, v, &ts, NULL, 0);
	}
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* One sample: kept if the waiter slept exactly when it should have and the publication fell
 * inside its wait. */
static void wake_sample(struct wake *wk, enum wake_kind kind, uint64_t t_wait, uint64_t t_back,
			const struct rusage *a, const struct rusage *b)
{
	uint64_t pub = __atomic_load_n(&wk->pub_ns, __ATOMIC_ACQUIRE);
	int slept = b->ru_nvcsw != a->ru_nvcsw;

	if (slept != (kind == WAKE_SLEEP) || pub < t_wait || t_back < pub) {
		wk->other++;
		return;
	}
	wk->kept++;
	wk->preempted += b->ru_nivcsw != a->ru_nivcsw;
	wk->twice += b->ru_nvcsw - a->ru_nvcsw > 1;
	wk->same_cpu += sched_getcpu() == __atomic_load_n(&wk->pub_cpu, __ATOMIC_RELAXED);
	hadd(&wk->lat, t_back - pub);
	hadd(&wk->waited, pub - t_wait);
}

/* ---- the flusher's hook: stamps each pwrite and fdatasync as it returns ---- */

static struct wake *hook_wake;
static struct io_ops hook_ops;

static void hook_stamp(void)
{
	/* relaxed: the flusher's store-release of the position it then publishes orders it */
	__atomic_store_n(&hook_wake->pub_cpu, sched_getcpu(), __ATOMIC_RELAXED);
	__atomic_store_n(&hook_wake->pub_ns, now(), __ATOMIC_RELAXED);
}

static ssize_t hook_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	ssize_t n = io_default.pwrite(fd, buf, len, off);

	hook_stamp();
	return n;
}

static int hook_fdatasync(int fd)
{
	int rc = io_default.fdatasync(fd);

	hook_stamp();
	return rc;
}

/* child_setup of the flusher child: before shmwal_flusher_run(). */
static void hook_install(void *arg)
{
	hook_wake = arg;
	hook_ops = io_default;
	hook_ops.pwrite = hook_pwrite;
	hook_ops.fdatasync = hook_fdatasync;
	io_set(&hook_ops);
}

/* ---- the processes of one run ---- */

/* shmwal, spinning: append, then wait for it at once. */
static int wake_spin_reader(void *arg)
{
	const struct wake_run *run = arg;
	struct wake *wk = run->wk;
	uint8_t val[WAKE_VALUE] = { 0 };
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal *w;
	int rc = -1;

	if (th_open(run->dir, &w) < 0) {
		wake_fail(wk);
		return lib_error("spinning reader: open");
	}
	if (shmwal_reader_open(run->dir, 0, SHMWAL_LSN_END, &r) < 0) {
		lib_error("spinning reader: reader open");
		goto close_w;
	}
	for (uint64_t i = 0; i < WAKE_WARM + wk->n; i++) {
		struct rusage a, b;
		uint64_t lsn, t_wait, t_back;
		int err;

		getrusage(RUSAGE_THREAD, &a);
		if (shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, val, WAKE_VALUE, &lsn) < 0) {
			lib_error("spinning reader: append");
			goto out;
		}
		t_wait = now();
		err = shmwal_reader_next(r, &rec, WAIT_NS);
		t_back = now();
		getrusage(RUSAGE_THREAD, &b);
		if (err < 0) {
			lib_error("spinning reader: next");
			goto out;
		}
		if (rec.lsn != lsn) {
			fprintf(stderr, "suite: reader: read LSN %llu, appended %llu\n",
				(unsigned long long)rec.lsn, (unsigned long long)lsn);
			goto out;
		}
		if (i >= WAKE_WARM)
			wake_sample(wk, WAKE_SPIN, t_wait, t_back, &a, &b);
	}
	rc = 0;
out:
	shmwal_reader_close(r);
close_w:
	shmwal_close(w);
	if (rc)
		wake_fail(wk);
	return rc;
}

/* shmwal, sleeping: arm, wait; wake_appender appends WAKE_DELAY_NS later. */
static int wake_sleep_reader(void *arg)
{
	const struct wake_run *run = arg;
	struct wake *wk = run->wk;
	struct shmwal_reader *r;
	struct shmwal_record rec;
	int rc = -1;

	if (shmwal_reader_open(run->dir, 0, SHMWAL_LSN_END, &r) < 0) {
		wake_fail(wk);
		return lib_error("sleeping reader: reader open");
	}
	for (uint64_t i = 0; i < WAKE_WARM + wk->n; i++) {
		struct rusage a, b;
		uint64_t t_wait, t_back, seq;
		int err;

		getrusage(RUSAGE_THREAD, &a);
		t_wait = now();
		__atomic_store_n(&wk->armed, (uint32_t)i + 1, __ATOMIC_RELEASE);
		futex_wake(&wk->armed);
		err = shmwal_reader_next(r, &rec, WAIT_NS);
		t_back = now();
		getrusage(RUSAGE_THREAD, &b);
		if (err < 0) {
			lib_error("sleeping reader: next");
			goto out;
		}
		if (rec.value_len != WAKE_VALUE || (memcpy(&seq, rec.value, 8), seq != i)) {
			fprintf(stderr, "suite: reader: sample %llu: read another record\n",
				(unsigned long long)i);
			goto out;
		}
		if (i >= WAKE_WARM)
			wake_sample(wk, WAKE_SLEEP, t_wait, t_back, &a, &b);
	}
	rc = 0;
out:
	shmwal_reader_close(r);
	if (rc)
		wake_fail(wk);
	return rc;
}

static int wake_appender(void *arg)
{
	const struct wake_run *run = arg;
	struct wake *wk = run->wk;
	uint8_t val[WAKE_VALUE] = { 0 };
	struct shmwal *w;
	int rc = -1;

	if (th_open(run->dir, &w) < 0) {
		wake_fail(wk);
		return lib_error("appender: open");
	}
	for (uint64_t i = 0; i < WAKE_WARM + wk->n; i++) {
		uint64_t lsn;

		if (wait_u32(wk, &wk->armed, (uint32_t)i + 1, 0) < 0) {
			if (!__atomic_load_n(&wk->failed, __ATOMIC_RELAXED))
				fprintf(stderr, "suite: reader: appender: the reader never waited\n");
			goto out; /* else the reader failed, and said why */
		}
		sleep_ns(WAKE_DELAY_NS);
		memcpy(val, &i, 8);
		if (shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, val, WAKE_VALUE, &lsn) < 0) {
			lib_error("appender: append");
			wake_fail(wk);
			goto out;
		}
	}
	rc = 0;
out:
	shmwal_close(w);
	return rc;
}

/* Baselines: the waiter spins on `word` (WAKE_SPIN) or sleeps on it (WAKE_SLEEP). */
static int raw_waiter(struct wake *wk, enum wake_kind kind)
{
	for (uint64_t i = 0; i < WAKE_WARM + wk->n; i++) {
		struct rusage a, b;
		uint64_t t_wait, t_back;

		getrusage(RUSAGE_THREAD, &a);
		t_wait = now();
		__atomic_store_n(&wk->armed, (uint32_t)i + 1, __ATOMIC_RELEASE);
		if (kind == WAKE_SLEEP)
			futex_wake(&wk->armed);
		if (wait_u32(wk, &wk->word, (uint32_t)i + 1, kind == WAKE_SPIN) < 0) {
			fprintf(stderr, "suite: reader: baseline waiter: gave up\n");
			wake_fail(wk);
			return -1;
		}
		t_back = now();
		getrusage(RUSAGE_THREAD, &b);
		if (i >= WAKE_WARM)
			wake_sample(wk, kind, t_wait, t_back, &a, &b);
	}
	return 0;
}

static int raw_publisher(struct wake *wk, enum wake_kind kind)
{
	for (uint64_t i = 0; i < WAKE_WARM + wk->n; i++) {
		if (wait_u32(wk, &wk->armed, (uint32_t)i + 1, kind == WAKE_SPIN) < 0)
			return -1;
		if (kind == WAKE_SLEEP)
			sleep_ns(WAKE_DELAY_NS);
		__atomic_store_n(&wk->pub_cpu, sched_getcpu(), __ATOMIC_RELAXED);
		__atomic_store_n(&wk->pub_ns, now(), __ATOMIC_RELAXED);
		__atomic_store_n(&wk->word, (uint32_t)i + 1, __ATOMIC_RELEASE);
		if (kind == WAKE_SLEEP) {
			uint64_t t = now();

			futex_wake(&wk->word);
			while (now() - t < WAKE_BUSY_NS) /* as the flusher goes on after a pass */
				relax();
		}
	}
	return 0;
}

static int raw_spin_waiter(void *arg)
{
	return raw_waiter(((struct wake_run *)arg)->wk, WAKE_SPIN);
}

static int raw_sleep_waiter(void *arg)
{
	return raw_waiter(((struct wake_run *)arg)->wk, WAKE_SLEEP);
}

static int raw_spin_publisher(void *arg)
{
	return raw_publisher(((struct wake_run *)arg)->wk, WAKE_SPIN);
}

static int raw_sleep_publisher(void *arg)
{
	return raw_publisher(((struct wake_run *)arg)->wk, WAKE_SLEEP);
}

#define WAKE_STATS 4 /* p50, p99, p99.9, max */

/* One run: shmwal's (raw 0) or the baseline's processes for `kind`, n samples. out: p50,
 * p99, p99.9, max in us (NAN when no sample was kept). */
static int wake_run(struct wake_run *run, enum wake_kind kind, int raw, uint64_t n,
		    double out[WAKE_STATS])
{
	static int (*const procs[2][WAKE_KINDS][2])(void *) = {
		{ { wake_spin_reader, NULL }, { wake_sleep_reader, wake_appender } },
		{ { raw_spin_waiter, raw_spin_publisher },
		  { raw_sleep_waiter, raw_sleep_publisher } },
	};
	struct wake *wk = run->wk;
	pid_t pid[2] = { -1, -1 };
	int rc = 0;

	memset(wk, 0, sizeof(*wk));
	wk->n = n;
	for (int k = 0; k < 2; k++)
		if (procs[raw][kind][k] && (pid[k] = suite_spawn(procs[raw][kind][k], run)) < 0)
			rc = -1;
	for (int k = 0; k < 2; k++)
		if (procs[raw][kind][k] && suite_reap(pid[k], k ? "wake publisher" : "wake waiter") < 0)
			rc = -1;
	if (rc)
		return -1;
	out[0] = wk->kept ? (double)hpct(&wk->lat, 0.5) / 1e3 : NAN;
	out[1] = wk->kept ? (double)hpct(&wk->lat, 0.99) / 1e3 : NAN;
	out[2] = wk->kept ? (double)hpct(&wk->lat, 0.999) / 1e3 : NAN;
	out[3] = wk->kept ? (double)wk->lat.max / 1e3 : NAN;
	note(" %s %s p50 %.2f p99 %.2f max %.1f us (kept %llu/%llu, slept twice %llu, preempted "
	     "%llu, on the publisher's CPU %llu, waited p50 %.1f us);",
	     raw ? "raw" : "shmwal", kind == WAKE_SPIN ? "spin" : "sleep", out[0], out[1], out[3],
	     (unsigned long long)wk->kept, (unsigned long long)(wk->kept + wk->other),
	     (unsigned long long)wk->twice, (unsigned long long)wk->preempted,
	     (unsigned long long)wk->same_cpu,
	     wk->kept ? (double)hpct(&wk->waited, 0.5) / 1e3 : NAN);
	return 0;
}

static int wake_mode(void)
{
	static const char *const kase[WAKE_KINDS] = { "wake, spinning reader",
						      "wake, sleeping reader (futex)" };
	static const char *const theirs[WAKE_KINDS] = { "raw spin on a shared word",
							"raw FUTEX_WAIT/FUTEX_WAKE" };
	static const char *const stat[WAKE_STATS] = { "p50", "p99", "p99.9", "max" };
	static const char *const series[WAKE_KINDS][2] = {
		{ "shmwal, spinning reader", "raw spin" },
		{ "shmwal, sleeping reader", "raw futex" },
	};
	struct th_flusher_spec spec = {
		.name = "flusher",
		.alarm_s = 2 * TH_TIMEOUT_S,
		.child_setup = hook_install,
	};
	const uint64_t n[WAKE_KINDS] = { scale(50000, 2000), scale(10000, 500) };
	double v[WAKE_KINDS][2][WAKE_STATS][MAX_ROUNDS];
	struct shmwal_config c;
	struct wake_run run;
	char *dir;
	pid_t fl;
	int rc = -1;

	shmwal_config_default(&c);
	c.sync = SHMWAL_SYNC_NONE;
	if (!(dir = wal_new(&c)))
		return -1;
	run.dir = dir;
	run.wk = shared_new(sizeof(*run.wk));
	spec.arg = run.wk;
	note("  wake: %llu samples spinning, %llu sleeping (appended %.0f us after the wait "
	     "began) per round, 64 B records, sync none\n",
	     (unsigned long long)n[WAKE_SPIN], (unsigned long long)n[WAKE_SLEEP],
	     (double)WAKE_DELAY_NS / 1e3);
	if ((fl = th_flusher_spawn(run.dir, &spec)) < 0)
		goto out;
	for (unsigned r = 0; r < sopt.rounds; r++) {
		note("  wake round %u/%u:", r + 1, sopt.rounds);
		for (int kind = 0; kind < WAKE_KINDS; kind++)
			for (int k = 0; k < 2; k++) {
				int raw = k ^ (int)(r & 1);
				double out[WAKE_STATS];

				if (wake_run(&run, kind, raw, n[kind], out) < 0)
					goto stop;
				for (int s = 0; s < WAKE_STATS; s++)
					v[kind][raw][s][r] = out[s];
			}
		note("\n");
	}
	for (int kind = 0; kind < WAKE_KINDS; kind++)
		for (int s = 0; s < WAKE_STATS; s++) {
			double m[2];

			for (int raw = 0; raw < 2; raw++) {
				m[raw] = median_kept(v[kind][raw][s], sopt.rounds);
				if (s < 3) /* the plot's x: 1 p50, 2 p99, 3 p99.9 */
					plot_point("reader_wake", series[kind][raw], s + 1, m[raw]);
			}
			result("reader", kase[kind], stat[s], "us", LOWER, m[0], theirs[kind], m[1]);
		}
	rc = 0;
stop:
	if (th_flusher_stop(fl) != 0) {
		fprintf(stderr, "suite: reader: the wake test's flusher did not stop cleanly\n");
		rc = -1;
	}
out:
	shared_free(run.wk, sizeof(*run.wk));
	wal_done(dir);
	return rc;
}

int mode_reader(void)
{
	int rc = scan_mode();

	if (wake_mode() < 0)
		rc = -1;
	return rc;
}
