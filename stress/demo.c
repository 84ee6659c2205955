/* SPDX-License-Identifier: MIT */
/*
 * demo.c - the main job: the shmwal flusher daemon, several producer processes appending to
 * several partitions, a live reader process following the log and checking every record as it
 * arrives, and a summary of what was written, made durable, read back and verified.
 *
 *   demo [--shmwal PATH] [--producers N] [--threads N] [--records N] [--partitions N]
 *        [--sync none|interval|always] [--backend file|pmem] [--keep]
 *
 * With --backend pmem the flusher maps fixed-size segments with libpmem; run it with
 * PMEM_IS_PMEM_FORCE=1 to have libpmem treat a non-DAX directory as persistent memory (no real
 * durability: for trying it out), or without to see its msync fallback.
 *
 * Producers stamp every record (producer, thread, sequence number, derived bytes) and wait for
 * each one to be durable (so group commit is at work with sync=always); the reader proves
 * nothing was lost, duplicated, reordered within a stream, or damaged.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/helpers.h"

#define MAX_STREAMS 256
#define HIST 64 /* log2 buckets of nanoseconds */

struct shared {
	uint64_t appended[MAX_STREAMS];	 /* per stream, records acknowledged durable */
	uint64_t bytes;			 /* value bytes appended */
	uint64_t lat_hist[HIST];	 /* durable-wait latency histogram (ns, log2 buckets) */
	uint64_t lat_max;
	uint64_t read_ok, lost, dup, disorder, damaged, read_errors;
	uint64_t read_done;
};

static struct {
	const char *shmwal;
	uint32_t producers, threads, partitions;
	uint64_t records;
	enum shmwal_sync sync;
	enum shmwal_backend backend;
	int keep;
} opt = { "build/shmwal", 4, 2, 4, 5000, SHMWAL_SYNC_ALWAYS, SHMWAL_BACKEND_FILE, 0 };

static struct shared *sh;
static const char *dir;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- producers --------------------------------------------------------------------------- */

struct pthread_arg {
	struct shmwal *w;
	uint32_t producer, thread;
	int rc;
};

static void *produce(void *arg)
{
	struct pthread_arg *a = arg;
	uint32_t stream = a->producer * opt.threads + a->thread;
	uint64_t rng = 0x1234567 + stream, seq, lsn;
	uint8_t val[512];
	char key[32];

	for (seq = 0; seq < opt.records; seq++) {
		uint32_t vlen = TH_STAMP_MIN + (uint32_t)(th_rand(&rng) % (sizeof(val) - TH_STAMP_MIN));
		uint32_t klen = th_key(key, a->producer, a->thread, seq);
		uint32_t part = (uint32_t)(seq % opt.partitions);
		uint64_t t0, dt;
		unsigned b = 0;
		int rc;

		th_fill(val, vlen, a->producer, a->thread, seq);
		t0 = now_ns();
		rc = shmwal_append(a->w, part, SHMWAL_TYPE_PUT, key, klen, val, vlen, &lsn);
		if (rc == 0)
			rc = shmwal_wait_durable(a->w, part, lsn, 60 * SHMWAL_NS_PER_SEC);
		if (rc < 0) {
			fprintf(stderr, "producer %u.%u: %s\n", a->producer, a->thread,
				shmwal_last_error());
			a->rc = 1;
			return NULL;
		}
		dt = now_ns() - t0;
		while (b + 1 < HIST && (dt >> (b + 1)))
			b++;
		__atomic_fetch_add(&sh->lat_hist[b], 1, __ATOMIC_RELAXED);
		if (dt > __atomic_load_n(&sh->lat_max, __ATOMIC_RELAXED))
			__atomic_store_n(&sh->lat_max, dt, __ATOMIC_RELAXED);
		__atomic_fetch_add(&sh->bytes, vlen, __ATOMIC_RELAXED);
		__atomic_store_n(&sh->appended[stream], seq + 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static int producer_main(uint32_t id)
{
	struct pthread_arg a[16];
	pthread_t tid[16];
	struct shmwal *w;
	int rc = th_open(dir, &w);

	if (rc < 0) {
		fprintf(stderr, "producer %u: %s\n", id, shmwal_last_error());
		return 1;
	}
	for (uint32_t t = 0; t < opt.threads; t++) {
		a[t] = (struct pthread_arg){ w, id, t, 0 };
		pthread_create(&tid[t], NULL, produce, &a[t]);
	}
	rc = 0;
	for (uint32_t t = 0; t < opt.threads; t++) {
		pthread_join(tid[t], NULL);
		rc |= a[t].rc;
	}
	shmwal_close(w);
	return rc;
}

/* ---- the live reader --------------------------------------------------------------------- */

struct rthread {
	uint32_t part;
	uint64_t want;
	uint64_t next[MAX_STREAMS];
};

static void *follow(void *arg)
{
	struct rthread *rt = arg;
	struct shmwal_reader *r;
	struct shmwal_record rec;
	uint64_t seen = 0;

	if (shmwal_reader_open(dir, rt->part, SHMWAL_LSN_OLDEST, &r) < 0) {
		fprintf(stderr, "reader: %s\n", shmwal_last_error());
		__atomic_fetch_add(&sh->read_errors, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	for (uint32_t s = 0; s < MAX_STREAMS; s++)
		rt->next[s] = rt->part;
	while (seen < rt->want) {
		struct th_stamp st;
		uint32_t s;
		int rc = shmwal_reader_next(r, &rec, 120 * SHMWAL_NS_PER_SEC);

		if (rc < 0) {
			fprintf(stderr, "reader p%u: %s\n", rt->part, shmwal_last_error());
			__atomic_fetch_add(&sh->read_errors, 1, __ATOMIC_RELAXED);
			break;
		}
		seen++;
		if (th_check(rec.value, rec.value_len, &st) < 0 ||
		    st.producer >= opt.producers || st.thread >= opt.threads) {
			__atomic_fetch_add(&sh->damaged, 1, __ATOMIC_RELAXED);
			continue;
		}
		s = st.producer * opt.threads + st.thread;
		if (st.seq < rt->next[s])
			__atomic_fetch_add(&sh->dup, 1, __ATOMIC_RELAXED);
		else if (st.seq > rt->next[s])
			__atomic_fetch_add(&sh->disorder, 1, __ATOMIC_RELAXED);
		else
			__atomic_fetch_add(&sh->read_ok, 1, __ATOMIC_RELAXED);
		rt->next[s] = st.seq + opt.partitions;
	}
	shmwal_reader_close(r);
	return NULL;
}

static int reader_main(void)
{
	struct rthread rt[SHMWAL_MAX_PARTITIONS];
	pthread_t tid[SHMWAL_MAX_PARTITIONS];
	uint64_t total = (uint64_t)opt.producers * opt.threads * opt.records;

	for (uint32_t p = 0; p < opt.partitions; p++) {
		rt[p].part = p;
		/* records of a stream go to partition seq % partitions */
		rt[p].want = (uint64_t)opt.producers * opt.threads *
			     (opt.records / opt.partitions + (p < opt.records % opt.partitions));
		pthread_create(&tid[p], NULL, follow, &rt[p]);
	}
	for (uint32_t p = 0; p < opt.partitions; p++)
		pthread_join(tid[p], NULL);
	(void)total;
	__atomic_store_n(&sh->read_done, 1, __ATOMIC_RELEASE);
	return 0;
}

/* ---- orchestration ----------------------------------------------------------------------- */

static pid_t spawn_flusher(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		execl(opt.shmwal, opt.shmwal, "flusher", dir, "--quiet", (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", opt.shmwal, strerror(errno));
		_exit(127);
	}
	return pid;
}

/* What `shmwal stat` says the flusher uses to make records durable (once it has said). */
static void print_persistence(void)
{
	static const char *const names[] = { "none", "fdatasync", "pmem drain (persistent memory)",
					     "pmem msync (not persistent memory: no DAX)" };
	struct shmwal_stat *st = malloc(sizeof(*st));

	for (int i = 0; st && i < 3000; i++) {
		struct timespec ts = { 0, 1000000 };

		if (shmwal_stat(dir, st) == 0 && st->persistence != SHMWAL_PERSIST_NONE &&
		    st->persistence <= SHMWAL_PERSIST_PMEM_MSYNC) {
			printf("  durability: %s\n", names[st->persistence]);
			break;
		}
		nanosleep(&ts, NULL);
	}
	free(st);
}

static double pct(uint64_t q_num, uint64_t q_den)
{
	uint64_t n = 0, want, seen = 0;

	for (int b = 0; b < HIST; b++)
		n += sh->lat_hist[b];
	if (!n)
		return 0;
	want = (n * q_num + q_den - 1) / q_den;
	for (int b = 0; b < HIST; b++) {
		seen += sh->lat_hist[b];
		if (seen >= want)
			return (double)(1ull << b) * 1.5 / 1000.0; /* bucket midpoint, us */
	}
	return 0;
}

static int run_cmd(const char *what, char *const argv[])
{
	pid_t pid = fork();

	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	return th_wait(pid, 600) == 0 ? 0 : (fprintf(stderr, "%s failed\n", what), 1);
}

static void usage(void)
{
	fprintf(stderr, "usage: demo [--shmwal PATH] [--producers N] [--threads N] [--records N]\n"
			"            [--partitions N] [--sync none|interval|always]\n"
			"            [--backend file|pmem] [--keep]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct shmwal_config cfg;
	uint64_t total, t0, secs_x100, last_print = 0;
	pid_t fl, rd, pids[64];
	int rc, fail = 0;
	char *tmp;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--keep")) {
			opt.keep = 1;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--shmwal"))
			opt.shmwal = v;
		else if (!strcmp(a, "--producers"))
			opt.producers = (uint32_t)atoi(v);
		else if (!strcmp(a, "--threads"))
			opt.threads = (uint32_t)atoi(v);
		else if (!strcmp(a, "--records"))
			opt.records = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--partitions"))
			opt.partitions = (uint32_t)atoi(v);
		else if (!strcmp(a, "--backend") && (!strcmp(v, "file") || !strcmp(v, "pmem")))
			opt.backend = !strcmp(v, "pmem") ? SHMWAL_BACKEND_PMEM : SHMWAL_BACKEND_FILE;
		else if (!strcmp(a, "--sync"))
			opt.sync = !strcmp(v, "none")	     ? SHMWAL_SYNC_NONE
				   : !strcmp(v, "interval") ? SHMWAL_SYNC_INTERVAL
							    : SHMWAL_SYNC_ALWAYS;
		else
			usage();
	}
	if (opt.producers < 1 || opt.producers > 64 || opt.threads < 1 || opt.threads > 16 ||
	    opt.producers * opt.threads > MAX_STREAMS || opt.partitions < 1 ||
	    opt.partitions > 64 || opt.records < 1)
		usage();
	if (access(opt.shmwal, X_OK) != 0) {
		fprintf(stderr, "demo: %s is not executable (build it with make)\n", opt.shmwal);
		return 1;
	}
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	tmp = th_tmpdir("demo");
	if (sh == MAP_FAILED || !tmp) {
		perror("demo");
		return 1;
	}
	dir = tmp;
	shmwal_config_default(&cfg);
	cfg.partitions = opt.partitions;
	cfg.ring_bytes = 1 << 20;
	cfg.segment_bytes = 4 << 20;
	cfg.max_value = 4096;
	cfg.sync = opt.sync;
	cfg.backend = opt.backend;
	rc = shmwal_create(dir, &cfg);
	if (rc < 0) {
		fprintf(stderr, "create: %s\n", shmwal_last_error());
		return 1;
	}
	total = (uint64_t)opt.producers * opt.threads * opt.records;
	printf("shmwal demo: %u producer processes x %u threads, %u partitions, sync=%s\n"
	       "  WAL directory %s; %" PRIu64 " records, each waited for until durable\n",
	       opt.producers, opt.threads, opt.partitions,
	       opt.sync == SHMWAL_SYNC_NONE ? "none" : opt.sync == SHMWAL_SYNC_INTERVAL ? "interval" : "always",
	       dir, total);
	fl = spawn_flusher();
	printf("  flusher   pid %d  (%s flusher)\n", (int)fl, opt.shmwal);
	rd = fork();
	if (rd == 0)
		_exit(reader_main());
	printf("  reader    pid %d  following %u partitions live\n", (int)rd, opt.partitions);
	t0 = now_ns();
	for (uint32_t i = 0; i < opt.producers; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(producer_main(i));
	}
	printf("  producers pids %d..%d\n", (int)pids[0], (int)pids[opt.producers - 1]);
	print_persistence();
	fflush(stdout);

	/* progress, once a second, until the producers are done */
	for (uint32_t done = 0; done < opt.producers;) {
		struct timespec ts = { 0, 20000000 };
		uint64_t n = 0;

		done = 0;
		for (uint32_t i = 0; i < opt.producers; i++) {
			int st;

			if (pids[i] > 0 && waitpid(pids[i], &st, WNOHANG) == pids[i]) {
				fail |= !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
				pids[i] = -1;
			}
			done += pids[i] < 0;
		}
		for (uint32_t s = 0; s < opt.producers * opt.threads; s++)
			n += __atomic_load_n(&sh->appended[s], __ATOMIC_ACQUIRE);
		if (now_ns() - last_print > 1000000000ull) {
			printf("  ... %" PRIu64 " durable, %" PRIu64 " read back and verified\n", n,
			       __atomic_load_n(&sh->read_ok, __ATOMIC_RELAXED));
			fflush(stdout);
			last_print = now_ns();
		}
		nanosleep(&ts, NULL);
	}
	secs_x100 = (now_ns() - t0) / 10000000ull;
	if (th_wait(rd, 300) != 0)
		fail = 1;
	kill(fl, SIGTERM);
	if (th_wait(fl, 300) != 0) {
		fprintf(stderr, "flusher did not stop cleanly\n");
		fail = 1;
	}

	{
		uint64_t acked = 0;

		for (uint32_t s = 0; s < opt.producers * opt.threads; s++)
			acked += sh->appended[s];
		sh->lost = total - sh->read_ok - sh->dup - sh->disorder - sh->damaged;
		printf("\nSummary\n");
		printf("  records written           %10" PRIu64 "  (%u streams x %" PRIu64 ")\n",
		       acked, opt.producers * opt.threads, opt.records);
		printf("  bytes of values           %10" PRIu64 "\n", sh->bytes);
		printf("  acknowledged durable      %10" PRIu64 "\n", acked);
		printf("  read back live, verified  %10" PRIu64 "\n", sh->read_ok);
		printf("  lost / duplicated / out of order / damaged: %" PRIu64 " / %" PRIu64
		       " / %" PRIu64 " / %" PRIu64 "\n",
		       sh->lost, sh->dup, sh->disorder, sh->damaged);
		printf("  elapsed                   %7.2f s, %.0f durable records/s\n",
		       (double)secs_x100 / 100.0,
		       secs_x100 ? (double)acked * 100.0 / (double)secs_x100 : 0.0);
		printf("  append + durable wait     p50 ~%.0f us, p99 ~%.0f us, max %.0f us\n",
		       pct(50, 100), pct(99, 100), (double)sh->lat_max / 1000.0);
		fail |= acked != total || sh->read_ok != total || sh->read_errors != 0;
	}
	{
		char *const argv_verify[] = { (char *)opt.shmwal, "verify", (char *)dir, NULL };

		printf("\n$ shmwal verify %s\n", dir);
		fflush(stdout);
		fail |= run_cmd("verify", argv_verify);
	}
	printf("\n%s\n", fail ? "demo FAILED" : "demo OK: everything written was made durable, "
					      "read back live and verified");
	if (!opt.keep)
		th_destroy(dir);
	else
		printf("kept %s\n", dir);
	return fail ? 1 : 0;
}
