/* SPDX-License-Identifier: MIT */
/*
 * pmem.c - shmwal's pmem backend against PMDK's libpmemlog, side by side in one run, on the
 * same tmpfs (default /dev/shm).
 *
 *   pmem [--quick] [--rounds R] [--records N] [--records-1k N] [--durable N] [--dir D]
 *        [--csv PATH] [--size 64|1024] [--only RUN[,RUN...]] [--ring-mib M]
 *        [--shmwal-scale K]
 *
 * Emulated pmem. The benchmark sets PMEM_IS_PMEM_FORCE=1 in its own environment before anything
 * calls libpmem (libpmem reads it at the first pmem_is_pmem()), so the flusher children and
 * libpmemlog in this process both treat their tmpfs mappings as persistent memory: cache-line
 * flushes or non-temporal stores plus an sfence (pmem_drain), never msync. Every shmwal run
 * asserts that its flusher reports SHMWAL_PERSIST_PMEM_DRAIN (shmwal_stat()), and the start
 * asserts pmem_is_pmem() is true for this process, whose libpmem libpmemlog uses.
 *
 * Each round runs, for 64-byte and for 1 KiB records (the value: shmwal adds a 32-byte frame
 * header with a CRC32C; libpmemlog stores the bare bytes, with no boundaries or checksum):
 *   libpmemlog T  a fresh pool (pmemlog_create, removed after) that T threads of this process
 *                 fill with N records each by pmemlog_append, which is durable on return.
 *                 T = 1, 2, 4. libpmemlog is single-process: the opener flock()s the pool.
 *   shmwal P      a fresh WAL (backend pmem, sync always, one partition, 64 MiB ring, one
 *                 segment that holds the whole run), its flusher in a child process; P = 1, 2
 *                 and 4 producer processes append K*N records each (K: --shmwal-scale, 5;
 *                 see kind_records) with shmwal_append, then
 *                 wait until their last record is durable (shmwal_wait_durable on its LSN).
 *   shmwal each   one producer process: shmwal_append + shmwal_wait_durable per record.
 * Start: every appender opens its pool or WAL first, then waits at a gate; the clock starts
 * when the gate opens. Append rate = records / (the last appender's last append - start);
 * durable throughput = records / (the last wait_durable's return - start). For libpmemlog both
 * are the same figure.
 * Latency: clock_gettime around every 16th append (every record in "each") into a log-linear
 * histogram (16 buckets per power of two: values within 1/16), p50/p99/p99.9 read from it.
 * Rounds: the measurements alternate (shmwal, libpmemlog, shmwal, ...; odd rounds in reverse
 * order), each on a fresh pool or WAL. The table quotes medians over the rounds (for the
 * percentiles, the median of each round's percentile) and the spread (max - min) / median.
 * The CSV holds every round's figures and then the medians (round "median").
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpmem.h>
#include <libpmemlog.h>
#include <linux/magic.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmwal_format.h"
#include "bench/common/bench.h"
#include "tests/helpers.h"

#define RING_BYTES ((uint64_t)opt.ring_mib << 20)
#define MAX_APPENDERS 4
#define MAX_ROUNDS 99
#define SAMPLE_MASK 15u /* time every 16th append */

static struct {
	int quick;
	unsigned rounds;
	uint64_t records, records_1k, durable;
	const char *dir, *csv;
	uint32_t size;	  /* 0: both sizes */
	const char *only; /* NULL: every run; else a list of run names (run_name()) */
	unsigned ring_mib;
	unsigned shmwal_scale; /* shmwal appenders append this many times more (see kind_records) */
} opt = { 0, 5, 2000000, 250000, 50000, "/dev/shm", NULL, 0, NULL, 64, 5 };

static int interrupted; /* SIGINT, SIGTERM, SIGHUP: stop after the current run */

static void on_signal(int sig)
{
	(void)sig;
	__atomic_store_n(&interrupted, 1, __ATOMIC_RELAXED);
}

static int was_interrupted(void)
{
	return __atomic_load_n(&interrupted, __ATOMIC_RELAXED);
}

/* ---- one measurement: appenders behind a gate ---- */

struct appender {
	uint64_t end_append, end_durable; /* CLOCK_MONOTONIC ns */
	uint64_t last_lsn;
	int err;	 /* -errno of the first failure, 0 */
	struct cpu cpu;	 /* used between the gate and end_durable */
	struct hist lat;
};

struct shared {
	struct gate gate;
	struct appender a[MAX_APPENDERS];
};

/*
 * What one run yields. CPU figures cover the run (gate to the last durable record): *_cores is
 * time on a CPU / wall time (appenders summed), *_wait time runnable but waiting for a CPU /
 * wall time, *_sys the kernel's share of the CPU time; machine_cores is the whole machine's
 * busy time (/proc/stat, in ticks) and other_cores = machine_cores - appender_cores -
 * flusher_cores what other processes took meanwhile.
 */
enum field {
	F_APPEND, F_DURABLE, F_P50, F_P99, F_P999, F_MAX, F_RECS_PER_DRAIN,
	F_APP_CORES, F_APP_WAIT, F_APP_SYS, F_FL_CORES, F_FL_WAIT, F_FL_SYS, F_MACHINE, F_OTHER,
	NFIELD
};

static const char *const field_name[NFIELD] = {
	"append_rate", "durable_rate", "p50_ns", "p99_ns", "p999_ns", "max_ns",
	"records_per_drain", "appender_cores", "appender_wait", "appender_sys",
	"flusher_cores", "flusher_wait", "flusher_sys", "machine_cores", "other_cores",
};

struct meas {
	double v[NFIELD];
};

static struct shared *shared_alloc(void)
{
	struct shared *s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return s == MAP_FAILED ? NULL : s;
}

/*
 * The append loop of every appender, both systems: n calls of fn, timing every call whose
 * index has all of `mask` set. Stops at the first error (kept in a->err).
 */
static void append_loop(int (*fn)(void *ctx, const void *buf, uint32_t len, uint64_t *lsn),
			void *ctx, struct appender *a, const void *buf, uint32_t len, uint64_t n,
			unsigned mask)
{
	uint64_t lsn = 0;
	int rc = 0;

	for (uint64_t i = 0; i < n && rc == 0; i++) {
		if ((i & mask) == mask) {
			uint64_t t = now();

			rc = fn(ctx, buf, len, &lsn);
			hadd(&a->lat, now() - t);
		} else {
			rc = fn(ctx, buf, len, &lsn);
		}
	}
	a->end_append = now();
	a->last_lsn = lsn;
	a->err = rc;
}

/*
 * The figures of a run of n appenders of `records` records each. `fl` is the flusher's CPU
 * over the run (NULL: none), `busy_ns` the machine's busy time over [t0, t_end].
 */
static void meas_from(const struct shared *s, unsigned n, uint64_t records, const struct cpu *fl,
		      uint64_t busy_ns, uint64_t t_end, struct meas *m)
{
	uint64_t end_a = 0, end_d = 0, total = (uint64_t)n * records, app = 0, app_sys = 0;
	uint64_t app_run = 0, app_wait = 0;
	struct hist *all = calloc(1, sizeof(*all));
	double wall;

	memset(m, 0, sizeof(*m));
	for (unsigned i = 0; i < n; i++) {
		if (s->a[i].end_append > end_a)
			end_a = s->a[i].end_append;
		if (s->a[i].end_durable > end_d)
			end_d = s->a[i].end_durable;
		app += s->a[i].cpu.user_ns + s->a[i].cpu.sys_ns;
		app_sys += s->a[i].cpu.sys_ns;
		app_run += s->a[i].cpu.run_ns;
		app_wait += s->a[i].cpu.wait_ns;
		if (all)
			hmerge(all, &s->a[i].lat);
	}
	m->v[F_APPEND] = (double)total / ((double)(end_a - s->gate.t0) / 1e9);
	m->v[F_DURABLE] = (double)total / ((double)(end_d - s->gate.t0) / 1e9);
	wall = (double)(end_d - s->gate.t0);
	m->v[F_APP_CORES] = (double)app_run / wall;
	m->v[F_APP_WAIT] = (double)app_wait / wall;
	m->v[F_APP_SYS] = app ? (double)app_sys / (double)app : 0;
	if (fl) {
		m->v[F_FL_CORES] = (double)fl->run_ns / wall;
		m->v[F_FL_WAIT] = (double)fl->wait_ns / wall;
		m->v[F_FL_SYS] = fl->user_ns + fl->sys_ns
					 ? (double)fl->sys_ns / (double)(fl->user_ns + fl->sys_ns)
					 : 0;
	}
	m->v[F_MACHINE] = (double)busy_ns / (double)(t_end - s->gate.t0);
	m->v[F_OTHER] = m->v[F_MACHINE] - m->v[F_APP_CORES] - m->v[F_FL_CORES];
	if (m->v[F_OTHER] < 0)
		m->v[F_OTHER] = 0;
	if (all) {
		m->v[F_P50] = (double)hpct(all, 0.50);
		m->v[F_P99] = (double)hpct(all, 0.99);
		m->v[F_P999] = (double)hpct(all, 0.999);
		m->v[F_MAX] = (double)all->max;
	}
	free(all);
}

/* ---- libpmemlog: T threads of this process on one pool ---- */

struct pl_thread {
	PMEMlogpool *plp;
	struct shared *s;
	unsigned idx;
	const void *buf;
	uint32_t len;
	uint64_t n;
};

static int pl_append(void *ctx, const void *buf, uint32_t len, uint64_t *lsn)
{
	(void)lsn;
	return pmemlog_append(ctx, buf, len) < 0 ? -errno : 0;
}

static void *pl_run(void *arg)
{
	struct pl_thread *t = arg;
	struct appender *a = &t->s->a[t->idx];
	struct cpu c0;

	gate_arrive_and_wait(&t->s->gate);
	cpu_thread(&c0);
	append_loop(pl_append, t->plp, a, t->buf, t->len, t->n, SAMPLE_MASK);
	a->end_durable = a->end_append; /* durable on return */
	cpu_thread(&a->cpu);
	cpu_since(&a->cpu, &c0);
	return NULL;
}

static int run_pmemlog(const char *tmp, uint32_t size, unsigned threads, uint64_t n,
		       struct meas *m)
{
	uint64_t bytes = (uint64_t)threads * n * size;
	size_t pool = (size_t)((bytes + (16ull << 20)) & ~((2ull << 20) - 1));
	struct pl_thread t[MAX_APPENDERS];
	pthread_t tid[MAX_APPENDERS];
	struct shared *s = shared_alloc();
	char path[4096];
	void *buf = malloc(size);
	uint64_t busy;
	PMEMlogpool *plp;
	int rc = -1;

	snprintf(path, sizeof(path), "%s/libpmemlog.pool", tmp);
	if (!s || !buf)
		goto out;
	memset(buf, 0xa5, size);
	plp = pmemlog_create(path, pool, 0600);
	if (!plp) {
		fprintf(stderr, "pmemlog_create %s: %s\n", path, pmemlog_errormsg());
		goto out;
	}
	if (pmemlog_nbyte(plp) < bytes) {
		fprintf(stderr, "libpmemlog pool holds %zu bytes, %" PRIu64 " needed\n",
			pmemlog_nbyte(plp), bytes);
		goto close;
	}
	for (unsigned i = 0; i < threads; i++) {
		t[i] = (struct pl_thread){ plp, s, i, buf, size, n };
		if (pthread_create(&tid[i], NULL, pl_run, &t[i]) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			s->a[i].err = -EAGAIN;
			threads = i; /* run and join those started */
			break;
		}
	}
	busy = machine_busy_ns();
	if (gate_open(&s->gate, threads) < 0)
		__atomic_store_n(&s->gate.go, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < threads; i++)
		pthread_join(tid[i], NULL);
	busy = machine_busy_ns() - busy;
	rc = 0;
	for (unsigned i = 0; i < MAX_APPENDERS; i++) {
		if (s->a[i].err) {
			fprintf(stderr, "pmemlog_append: %s\n", strerror(-s->a[i].err));
			rc = -1;
		}
	}
	if (rc == 0 && pmemlog_tell(plp) != (long long)bytes) {
		fprintf(stderr, "libpmemlog holds %lld bytes, %" PRIu64 " appended\n",
			pmemlog_tell(plp), bytes);
		rc = -1;
	}
	if (rc == 0)
		meas_from(s, threads, n, NULL, busy, now(), m);
close:
	pmemlog_close(plp);
	unlink(path);
out:
	if (s)
		munmap(s, sizeof(*s));
	free(buf);
	return rc;
}

/* ---- shmwal: P producer processes and a flusher process ---- */

static int sw_append(void *ctx, const void *buf, uint32_t len, uint64_t *lsn)
{
	return shmwal_append(ctx, 0, SHMWAL_TYPE_PUT, NULL, 0, buf, len, lsn);
}

static int sw_append_durable(void *ctx, const void *buf, uint32_t len, uint64_t *lsn)
{
	int rc = shmwal_append(ctx, 0, SHMWAL_TYPE_PUT, NULL, 0, buf, len, lsn);

	return rc < 0 ? rc : shmwal_wait_durable(ctx, 0, *lsn, 60 * SHMWAL_NS_PER_SEC);
}

/* The flusher publishes its persistence once it has created the shared memory. */
static int flusher_persistence(const char *wal, struct shmwal_stat *st)
{
	for (int i = 0; i < 60000; i++) {
		if (shmwal_stat(wal, st) == 0 && st->shm_present && st->flusher_running &&
		    st->persistence != SHMWAL_PERSIST_NONE)
			return st->persistence;
		usleep(1000);
	}
	return SHMWAL_PERSIST_NONE;
}

static uint64_t frame_bytes(uint32_t size)
{
	return SHMWAL_ALIGN_UP(SHMWAL_FRAME_HDR + size);
}

/* segment_bytes for a run: the whole run in one segment, so no rotation is timed. */
static uint64_t segment_bytes(uint32_t size, unsigned procs, uint64_t n)
{
	uint64_t b = (uint64_t)procs * n * frame_bytes(size) + (1ull << 20);

	b = (b + (1ull << 20) - 1) & ~((1ull << 20) - 1);
	return b < (64ull << 20) ? 64ull << 20 : b;
}

static void sw_producer(const char *wal, struct shared *s, unsigned idx, uint32_t size,
			uint64_t n, int each)
{
	struct appender *a = &s->a[idx];
	struct shmwal *w = NULL;
	void *buf = malloc(size);
	struct cpu c0;
	int rc;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGINT, SIG_IGN); /* an interrupt ends the run after it, not inside it */
	signal(SIGTERM, SIG_DFL);
	rc = buf ? th_open(wal, &w) : -ENOMEM;
	if (rc < 0) {
		a->err = rc;
		gate_arrive_and_wait(&s->gate);
		_exit(1);
	}
	memset(buf, 0xa5, size);
	gate_arrive_and_wait(&s->gate);
	cpu_thread(&c0);
	append_loop(each ? sw_append_durable : sw_append, w, a, buf, size, n,
		    each ? 0 : SAMPLE_MASK);
	if (a->err == 0 && !each)
		a->err = shmwal_wait_durable(w, 0, a->last_lsn, 60 * SHMWAL_NS_PER_SEC);
	a->end_durable = each ? a->end_append : now();
	cpu_thread(&a->cpu);
	cpu_since(&a->cpu, &c0);
	shmwal_close(w);
	_exit(a->err ? 1 : 0);
}

static int run_shmwal(const char *tmp, uint32_t size, unsigned procs, uint64_t n, int each,
		      struct meas *m)
{
	struct shmwal_stat *st = calloc(1, sizeof(*st));
	struct shared *s = shared_alloc();
	struct shmwal_config c;
	pid_t pids[MAX_APPENDERS], fl = -1;
	struct cpu fl0, fl1;
	uint64_t busy = 0, t_end;
	unsigned started = 0;
	char wal[4096];
	int rc = -1, p;

	snprintf(wal, sizeof(wal), "%s/wal", tmp);
	if (!st || !s)
		goto out;
	shmwal_config_default(&c);
	c.backend = SHMWAL_BACKEND_PMEM;
	c.sync = SHMWAL_SYNC_ALWAYS;
	c.partitions = 1;
	c.ring_bytes = RING_BYTES;
	c.segment_bytes = segment_bytes(size, procs, n);
	c.max_key = 64;
	c.max_value = size;
	if (shmwal_create(wal, &c) < 0) {
		fprintf(stderr, "shmwal_create %s: %s\n", wal, shmwal_last_error());
		goto out;
	}
	fl = th_flusher_start(wal, 0);
	if (fl < 0)
		goto out;
	p = flusher_persistence(wal, st);
	if (p != SHMWAL_PERSIST_PMEM_DRAIN) {
		fprintf(stderr, "the flusher's persistence is %s, not PMEM_DRAIN: is "
				"PMEM_IS_PMEM_FORCE=1 in effect?\n",
			p == SHMWAL_PERSIST_PMEM_MSYNC ? "PMEM_MSYNC" : "not pmem");
		goto out;
	}
	for (; started < procs; started++) {
		pids[started] = fork();
		if (pids[started] == 0)
			sw_producer(wal, s, started, size, n, each);
		if (pids[started] < 0)
			break;
	}
	cpu_proc(fl, &fl0);
	busy = machine_busy_ns();
	if (started < procs || gate_open(&s->gate, procs) < 0) {
		fprintf(stderr, "could not start %u producers\n", procs);
		__atomic_store_n(&s->gate.go, 1, __ATOMIC_RELEASE);
	}
	rc = started == procs ? 0 : -1;
	for (unsigned i = 0; i < started; i++) {
		if (th_wait(pids[i], 600) != 0) {
			fprintf(stderr, "producer %u failed: %s\n", i,
				s->a[i].err ? strerror(-s->a[i].err) : "exit status");
			rc = -1;
		}
	}
	cpu_proc(fl, &fl1);
	cpu_since(&fl1, &fl0);
	busy = machine_busy_ns() - busy;
	t_end = now();
	if (rc == 0 && shmwal_stat(wal, st) == 0) {
		/* Everything reached the segment, once, and is durable. */
		uint64_t last = 0;

		for (unsigned i = 0; i < procs; i++)
			last = s->a[i].last_lsn > last ? s->a[i].last_lsn : last;
		if (st->part[0].records != (uint64_t)procs * n || st->part[0].durable <= last) {
			fprintf(stderr, "flusher wrote %" PRIu64 " records (durable to %" PRIu64
					"), %" PRIu64 " appended (last LSN %" PRIu64 ")\n",
				st->part[0].records, st->part[0].durable, (uint64_t)procs * n,
				last);
			rc = -1;
		}
		meas_from(s, procs, n, &fl1, busy, t_end, m);
		m->v[F_RECS_PER_DRAIN] =
			st->part[0].syncs ? (double)st->part[0].records / (double)st->part[0].syncs
					  : 0;
	}
out:
	if (fl > 0 && th_flusher_stop(fl) != 0) {
		fprintf(stderr, "the flusher did not stop cleanly\n");
		rc = -1;
	}
	th_destroy(wal);
	if (s)
		munmap(s, sizeof(*s));
	free(st);
	return rc;
}

/* ---- what a round runs, and the table ---- */

static const uint32_t sizes[] = { 64, 1024 };
#define NSIZE (sizeof(sizes) / sizeof(sizes[0]))

/* In this order within a round (reversed on odd rounds): shmwal and libpmemlog alternate. */
enum kind { K_SE, K_P1, K_S1, K_P2, K_S2, K_P4, K_S4, NKIND };

static const struct {
	const char *system;
	int shmwal, each;
	unsigned appenders;
} kinds[NKIND] = {
	[K_SE] = { "shmwal-each", 1, 1, 1 }, [K_P1] = { "libpmemlog", 0, 0, 1 },
	[K_S1] = { "shmwal", 1, 0, 1 },	     [K_P2] = { "libpmemlog", 0, 0, 2 },
	[K_S2] = { "shmwal", 1, 0, 2 },	     [K_P4] = { "libpmemlog", 0, 0, 4 },
	[K_S4] = { "shmwal", 1, 0, 4 },
};

/*
 * Records per appender. shmwal's appenders take opt.shmwal_scale times as many as
 * libpmemlog's: at the default counts a shmwal run of 2M 64-byte records lasted ~80 ms, and on
 * a shared machine one hiccup of the host moved such a run's rate by a third (rounds of the
 * same build ranged 19-35 M/s); five times as long, they agree within ~10%. libpmemlog's runs
 * last ~0.8 s already. Rates are per second, so the two still compare.
 */
static uint64_t kind_records(enum kind k, uint32_t size)
{
	uint64_t n = size <= 64 ? opt.records : opt.records_1k;

	if (kinds[k].each)
		return opt.durable;
	return kinds[k].shmwal ? n * opt.shmwal_scale : n;
}

/* A run's name for --only: "shmwal-each", "shmwal-x2", "libpmemlog-x1", ... */
static void run_name(enum kind k, char *buf, size_t len)
{
	if (kinds[k].each)
		snprintf(buf, len, "%s", kinds[k].system);
	else
		snprintf(buf, len, "%s-x%u", kinds[k].system, kinds[k].appenders);
}

/* Whether this round runs (size si, kind k): --size and --only select a subset, for profiling
 * one configuration; the table then shows only the rows whose two sides both ran. */
static int selected(unsigned si, enum kind k)
{
	char name[64];
	const char *p;
	size_t n;

	if (opt.size && sizes[si] != opt.size)
		return 0;
	if (!opt.only)
		return 1;
	run_name(k, name, sizeof(name));
	n = strlen(name);
	for (p = opt.only; (p = strstr(p, name)); p += n)
		if ((p == opt.only || p[-1] == ',') && (p[n] == ',' || p[n] == 0))
			return 1;
	return 0;
}

static const struct row {
	const char *what, *shmwal, *pmemlog;
	enum kind s, p;
	enum field f;
} rows[] = {
	{ "append rate", "1 producer proc", "1 thread", K_S1, K_P1, F_APPEND },
	{ "durable throughput", "1 producer proc", "1 thread", K_S1, K_P1, F_DURABLE },
	{ "append latency p50", "1 producer proc", "1 thread", K_S1, K_P1, F_P50 },
	{ "append latency p99", "1 producer proc", "1 thread", K_S1, K_P1, F_P99 },
	{ "append latency p99.9", "1 producer proc", "1 thread", K_S1, K_P1, F_P999 },
	{ "append rate", "2 producer procs", "2 threads", K_S2, K_P2, F_APPEND },
	{ "durable throughput", "2 producer procs", "2 threads", K_S2, K_P2, F_DURABLE },
	{ "append rate", "4 producer procs", "4 threads", K_S4, K_P4, F_APPEND },
	{ "durable throughput", "4 producer procs", "4 threads", K_S4, K_P4, F_DURABLE },
	{ "durable per record: rate", "append+wait each", "1 thread", K_SE, K_P1, F_DURABLE },
	{ "durable per record: p50", "append+wait each", "1 thread", K_SE, K_P1, F_P50 },
	{ "durable per record: p99", "append+wait each", "1 thread", K_SE, K_P1, F_P99 },
	{ "durable per record: p99.9", "append+wait each", "1 thread", K_SE, K_P1, F_P999 },
};

static struct meas results[MAX_ROUNDS][NSIZE][NKIND];

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The median over the rounds of one figure; *spread = (max - min) / median. */
static double field_median(unsigned si, enum kind k, enum field f, double *spread)
{
	double v[MAX_ROUNDS], med;
	unsigned n = opt.rounds;

	for (unsigned r = 0; r < n; r++)
		v[r] = results[r][si][k].v[f];
	qsort(v, n, sizeof(v[0]), cmp_double);
	med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	if (spread)
		*spread = med > 0 ? (v[n - 1] - v[0]) / med : 0;
	return med;
}

static void fmt_value(char *buf, size_t len, enum field f, double v)
{
	if (f == F_APPEND || f == F_DURABLE)
		snprintf(buf, len, "%8.3f M/s", v / 1e6);
	else
		snprintf(buf, len, "%8.2f us ", v / 1e3);
}

/* What other processes took during the runs: this benchmark wants the whole machine. */
static void print_other_load(void)
{
	double v[MAX_ROUNDS * NSIZE * NKIND], med;
	unsigned n = 0;

	for (unsigned r = 0; r < opt.rounds; r++)
		for (unsigned si = 0; si < NSIZE; si++)
			for (unsigned k = 0; k < NKIND; k++)
				if (selected(si, (enum kind)k))
					v[n++] = results[r][si][k].v[F_OTHER];
	qsort(v, n, sizeof(v[0]), cmp_double);
	med = v[n / 2];
	printf("\nother processes took %.2f cores during the median run (max %.2f, of %ld)%s\n",
	       med, v[n - 1], sysconf(_SC_NPROCESSORS_ONLN),
	       med > 0.25 ? ": the machine was shared, and shmwal, which needs a core for the "
			    "flusher besides the producers', suffers most"
			  : "");
}

static void print_table(void)
{
	for (unsigned si = 0; si < NSIZE; si++) {
		if (opt.size && sizes[si] != opt.size)
			continue;
		printf("\n%u-byte records (shmwal frame %" PRIu64 " B: 32 B header with CRC32C; "
		       "libpmemlog %u B, no framing)\n",
		       sizes[si], frame_bytes(sizes[si]), sizes[si]);
		printf("  %-26s %-17s %-10s %12s %12s %8s %s\n", "", "shmwal", "libpmemlog",
		       "shmwal", "libpmemlog", "ratio", "spread S/P");
		for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
			const struct row *rw = &rows[i];
			double ss, ps, s, p;
			int rate = rw->f == F_APPEND || rw->f == F_DURABLE;
			double ratio;
			char a[32], b[32];

			if (!selected(si, rw->s) || !selected(si, rw->p))
				continue;
			s = field_median(si, rw->s, rw->f, &ss);
			p = field_median(si, rw->p, rw->f, &ps);
			ratio = rate ? (p > 0 ? s / p : 0) : (s > 0 ? p / s : 0);

			fmt_value(a, sizeof(a), rw->f, s);
			fmt_value(b, sizeof(b), rw->f, p);
			printf("  %-26s %-17s %-10s %12s %12s ", rw->what, rw->shmwal, rw->pmemlog,
			       a, b);
			printf(ratio >= 0.095 ? "%7.2fx" : "%7.3fx", ratio);
			printf(" %3.0f%%/%.0f%%\n", ss * 100, ps * 100);
		}
		printf("  where the time went, medians: cores on a CPU (kernel share) + cores' "
		       "worth of waiting for a CPU\n");
		for (unsigned k = 0; k < NKIND; k++) {
			if (!selected(si, (enum kind)k))
				continue;
			printf("    %-11s x%u  appenders %4.2f (%3.0f%%) +%4.2f", kinds[k].system,
			       kinds[k].appenders, field_median(si, (enum kind)k, F_APP_CORES, NULL),
			       100 * field_median(si, (enum kind)k, F_APP_SYS, NULL),
			       field_median(si, (enum kind)k, F_APP_WAIT, NULL));
			if (kinds[k].shmwal)
				printf("  flusher %4.2f (%3.0f%%) +%4.2f  records/drain %6.0f",
				       field_median(si, (enum kind)k, F_FL_CORES, NULL),
				       100 * field_median(si, (enum kind)k, F_FL_SYS, NULL),
				       field_median(si, (enum kind)k, F_FL_WAIT, NULL),
				       field_median(si, (enum kind)k, F_RECS_PER_DRAIN, NULL));
			else
				printf("  %-48s", "");
			printf("  others %4.2f\n", field_median(si, (enum kind)k, F_OTHER, NULL));
		}
	}
	print_other_load();
	printf("\nratio: how many times better shmwal is (rates: shmwal / libpmemlog; latencies: "
	       "libpmemlog / shmwal).\nlibpmemlog is single-process (the pool is flock()ed by its "
	       "opener): its N appenders are N threads of one process; shmwal's are N processes "
	       "plus the flusher process.\n");
}

static void csv_line(FILE *f, const char *round, unsigned si, enum kind k, const double *v)
{
	fprintf(f, "%s,%u,%s,%u,%" PRIu64, round, sizes[si], kinds[k].system, kinds[k].appenders,
		kind_records(k, sizes[si]));
	for (unsigned i = 0; i < NFIELD; i++)
		fprintf(f, ",%.6g", v[i]);
	fputc('\n', f);
}

static int write_csv(const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fprintf(f, "round,record_bytes,system,appenders,records_per_appender");
	for (unsigned i = 0; i < NFIELD; i++)
		fprintf(f, ",%s", field_name[i]);
	fputc('\n', f);
	for (unsigned r = 0; r < opt.rounds; r++) {
		char name[16];

		snprintf(name, sizeof(name), "%u", r + 1);
		for (unsigned si = 0; si < NSIZE; si++)
			for (unsigned k = 0; k < NKIND; k++)
				if (selected(si, (enum kind)k))
					csv_line(f, name, si, (enum kind)k, results[r][si][k].v);
	}
	for (unsigned si = 0; si < NSIZE; si++) {
		for (unsigned k = 0; k < NKIND; k++) {
			double v[NFIELD];

			if (!selected(si, (enum kind)k))
				continue;
			for (unsigned i = 0; i < NFIELD; i++)
				v[i] = field_median(si, (enum kind)k, (enum field)i, NULL);
			csv_line(f, "median", si, (enum kind)k, v);
		}
	}
	return fclose(f) < 0 ? -errno : 0;
}

/*
 * Context for both systems' write rates: a fresh file in dir written through a libpmem mapping,
 * twice. The first pass pays a page fault per 4 KiB page (on tmpfs the page is cleared then);
 * every run writes into a fresh pool or segment, so this bounds both. The second pass is the
 * copy alone.
 */
static void probe_first_touch(const char *tmp, size_t len)
{
	const size_t chunk = 1 << 20;
	char path[4096];
	size_t mapped = 0;
	int fd, is_pmem = 0;
	char *map, *src = malloc(chunk);
	double t[2];

	snprintf(path, sizeof(path), "%s/first-touch", tmp);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || !src || posix_fallocate(fd, 0, (off_t)len) != 0) {
		if (fd >= 0)
			close(fd);
		unlink(path);
		free(src);
		return;
	}
	close(fd);
	memset(src, 0xa5, chunk);
	map = pmem_map_file(path, 0, 0, 0, &mapped, &is_pmem);
	for (int pass = 0; map && pass < 2; pass++) {
		uint64_t t0 = now();

		for (size_t off = 0; off + chunk <= mapped; off += chunk)
			pmem_memcpy_nodrain(map + off, src, chunk);
		pmem_drain();
		t[pass] = (double)(now() - t0) / 1e9;
	}
	if (map) {
		printf("fresh file in %s, written through pmem_memcpy_nodrain: first touch "
		       "%.2f GB/s (%.2f us per 4 KiB page), again %.2f GB/s\n",
		       opt.dir, (double)mapped / t[0] / 1e9, t[0] / ((double)mapped / 4096) * 1e6,
		       (double)mapped / t[1] / 1e9);
		pmem_unmap(map, mapped);
	}
	unlink(path);
	free(src);
}

/* ---- the machine, the room, the options ---- */

static void print_run(void)
{
	struct statfs sf;

	printf("directory: %s (%s); PMEM_IS_PMEM_FORCE=1 set by the benchmark for both sides\n",
	       opt.dir,
	       statfs(opt.dir, &sf) == 0 && sf.f_type == TMPFS_MAGIC ? "tmpfs" : "not tmpfs");
	printf("scale: %u rounds; %" PRIu64 " records (64 B) / %" PRIu64 " records (1 KiB) per "
	       "libpmemlog appender, %u times as many per shmwal appender; %" PRIu64
	       " durable-per-record appends; shmwal ring %u MiB, one segment per run\n",
	       opt.rounds, opt.records, opt.records_1k, opt.shmwal_scale, opt.durable,
	       opt.ring_mib);
}

/* The largest run must fit in dir's free space (the shm object lives on /dev/shm too). */
static int check_room(void)
{
	uint64_t need = 0, avail;
	struct statvfs sv;

	for (unsigned si = 0; si < NSIZE; si++) {
		uint64_t n = kind_records(K_S4, sizes[si]), d = opt.durable;
		uint64_t pool = (uint64_t)MAX_APPENDERS * n * sizes[si] + (16ull << 20);
		uint64_t seg = segment_bytes(sizes[si], MAX_APPENDERS, n) + 2 * RING_BYTES;
		uint64_t seg_each = segment_bytes(sizes[si], 1, d) + 2 * RING_BYTES;

		need = pool > need ? pool : need;
		need = seg > need ? seg : need;
		need = seg_each > need ? seg_each : need;
	}
	if (statvfs(opt.dir, &sv) < 0) {
		fprintf(stderr, "%s: %s\n", opt.dir, strerror(errno));
		return -1;
	}
	avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	printf("room: the largest run needs %" PRIu64 " MiB, %s has %" PRIu64 " MiB free\n",
	       need >> 20, opt.dir, avail >> 20);
	if (need + need / 8 > avail) {
		fprintf(stderr, "not enough room in %s: lower --records / --records-1k\n", opt.dir);
		return -1;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: pmem [--quick] [--rounds R] [--records N] [--records-1k N] [--durable N]\n"
		"            [--dir D] [--csv PATH] [--size B] [--only LIST] [--ring-mib M]\n"
		"            [--shmwal-scale K]\n"
		"  --quick        a few seconds: 2 rounds of 100000 / 20000 records, 5000 durable\n"
		"  --rounds R     interleaved rounds, medians quoted (default 5, at most %d)\n"
		"  --records N    64-byte records per libpmemlog appender (default 2000000)\n"
		"  --records-1k N 1 KiB records per libpmemlog appender (default 250000)\n"
		"  --shmwal-scale K  shmwal appenders append K times as many (default 5: their\n"
		"                 runs would be too short to measure on a shared machine)\n"
		"  --durable N    appends in the durable-per-record runs (default 50000)\n"
		"  --dir D        where pools, WALs go (default /dev/shm)\n"
		"  --csv PATH     every round's figures and the medians (default: pmem.csv next to "
		"this program)\n"
		"  --size B       only 64- or only 1024-byte records\n"
		"  --only LIST    only these runs, comma-separated, e.g. shmwal-x1,libpmemlog-x1\n"
		"                 (names: shmwal-each, shmwal-x1/x2/x4, libpmemlog-x1/x2/x4)\n"
		"  --ring-mib M   shmwal's ring size (default 64, a power of two)\n",
		MAX_ROUNDS);
}

static int parse(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--quick")) {
			opt.quick = 1;
			opt.rounds = 2;
			opt.records = 100000;
			opt.records_1k = 20000;
			opt.durable = 5000;
			continue;
		}
		if (!v) {
			usage();
			return -1;
		}
		i++;
		if (!strcmp(a, "--rounds"))
			opt.rounds = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--records"))
			opt.records = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--records-1k"))
			opt.records_1k = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--durable"))
			opt.durable = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--dir"))
			opt.dir = v;
		else if (!strcmp(a, "--csv"))
			opt.csv = v;
		else if (!strcmp(a, "--size"))
			opt.size = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--only"))
			opt.only = v;
		else if (!strcmp(a, "--ring-mib"))
			opt.ring_mib = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--shmwal-scale"))
			opt.shmwal_scale = (unsigned)strtoul(v, NULL, 10);
		else {
			usage();
			return -1;
		}
	}
	if (opt.rounds < 1 || opt.rounds > MAX_ROUNDS || !opt.records || !opt.records_1k ||
	    opt.shmwal_scale < 1 || opt.shmwal_scale > 100 ||
	    !opt.durable || (opt.size && opt.size != 64 && opt.size != 1024)) {
		usage();
		return -1;
	}
	return 0;
}

/* Default CSV: pmem.csv in the directory of this program (the build output). */
static void default_csv(char *buf, size_t len)
{
	char exe[4096] = "";
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash = n > 0 ? memrchr(exe, '/', (size_t)n) : NULL;

	if (slash)
		*slash = 0;
	if (!slash || snprintf(buf, len, "%s/pmem.csv", exe) >= (int)len)
		snprintf(buf, len, "pmem.csv");
}

static void progress(unsigned r, unsigned si, enum kind k, const struct meas *m, uint64_t ns)
{
	fprintf(stderr, "  round %u/%u %4u B %-11s x%u: append %6.3f M/s, durable %6.3f M/s, "
			"p50 %.2f us, p99.9 %.2f us; cores: appenders %.2f (+%.2f waiting), "
			"flusher %.2f (+%.2f), machine %.2f; %.1f s with setup\n",
		r + 1, opt.rounds, sizes[si], kinds[k].system, kinds[k].appenders,
		m->v[F_APPEND] / 1e6, m->v[F_DURABLE] / 1e6, m->v[F_P50] / 1e3,
		m->v[F_P999] / 1e3, m->v[F_APP_CORES], m->v[F_APP_WAIT], m->v[F_FL_CORES],
		m->v[F_FL_WAIT], m->v[F_MACHINE], (double)ns / 1e9);
}

int main(int argc, char **argv)
{
	char csv[4096], *tmp = NULL;
	uint64_t t0 = now();
	struct sigaction sa;
	int rc = 1, probe = 0, err;

	/* Before anything calls libpmem: it reads the variable at the first pmem_is_pmem(). */
	setenv("PMEM_IS_PMEM_FORCE", "1", 1);
	if (parse(argc, argv) < 0)
		return 2;
	if (!opt.csv) {
		default_csv(csv, sizeof(csv));
		opt.csv = csv;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	print_machine(argc, argv);
	print_run();
	print_pairing();
	if (!pmem_is_pmem(&probe, sizeof(probe))) {
		fprintf(stderr, "pmem_is_pmem() is false despite PMEM_IS_PMEM_FORCE=1\n");
		return 1;
	}
	printf("libpmemlog: pmem_is_pmem() is true in this process: appends are flushed and "
	       "drained, never msync()ed\n");
	if (check_room() < 0)
		return 1;
	if (asprintf(&tmp, "%s/shmwal-bench-pmem.XXXXXX", opt.dir) < 0 || !mkdtemp(tmp)) {
		fprintf(stderr, "mkdtemp in %s: %s\n", opt.dir, strerror(errno));
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL); /* output piped into `head`: stop and clean up too */
	probe_first_touch(tmp, opt.quick ? 64u << 20 : 256u << 20);
	printf("shmwal flusher persistence: PMEM_DRAIN (asserted in every run)\n");

	for (unsigned r = 0; r < opt.rounds; r++) {
		for (unsigned si = 0; si < NSIZE; si++) {
			for (unsigned i = 0; i < NKIND; i++) {
				enum kind k = (enum kind)(r % 2 ? NKIND - 1 - i : i);
				uint64_t n = kind_records(k, sizes[si]), t_run;
				struct meas *m = &results[r][si][k];

				if (was_interrupted())
					goto out;
				if (!selected(si, k))
					continue;
				t_run = now();
				if (kinds[k].shmwal)
					err = run_shmwal(tmp, sizes[si], kinds[k].appenders, n,
							 kinds[k].each, m);
				else
					err = run_pmemlog(tmp, sizes[si], kinds[k].appenders, n, m);
				if (err < 0)
					goto out;
				progress(r, si, k, m, now() - t_run);
			}
		}
	}
	print_table();
	if ((err = write_csv(opt.csv)) < 0)
		fprintf(stderr, "cannot write %s: %s\n", opt.csv, strerror(-err));
	else
		printf("csv: %s\n", opt.csv);
	printf("run time: %.1f s\n", (double)(now() - t0) / 1e9);
	rc = 0;
out:
	if (was_interrupted())
		fprintf(stderr, "interrupted: cleaning up\n");
	th_destroy(tmp);
	free(tmp);
	return was_interrupted() ? 130 : rc;
}
