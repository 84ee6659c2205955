/* SPDX-License-Identifier: MIT */
/*
 * recovery.c - the suite's recovery mode: how long a new flusher takes to recover after a
 * crash as the log grows, and what shmwal costs in memory.
 *
 * 1. Recovery time ("log 64 MiB", "log 1 GiB", "log 10 GiB"; --quick: 64 MiB and 256 MiB).
 *    One WAL (1 partition, 64 MiB segments: the default, set explicitly; a 16 MiB ring;
 *    sync none) grows through the sizes in turn. At size S a producer process has appended
 *    256 KiB values until the log reaches S + 32 MiB: S bytes in sealed segments, and the last
 *    segment, the one recovery scans frame by frame, half full at every size. Then each round:
 *      - crash: the running flusher is SIGKILLed, leaving its shared memory behind as a crash
 *        does, and reaped. Every segment file is fdatasynced (the sealed ones already are:
 *        rotation syncs them), so the sync recovery makes of the last segment finds nothing
 *        to write, whatever the kernel's writeback did meanwhile: as after sync always.
 *      - recovery, timed in a new process that calls shmwal_flusher_run() with *stop already
 *        set: it takes the flusher lock, recovers the files (each sealed segment's header and
 *        size; the last segment scanned and synced), adopts the shared memory and publishes,
 *        then drains, syncs, removes the shared memory and returns. "recovery" is the time
 *        from the call to the flusher's log line saying it adopted the shared memory: from
 *        then on it publishes and producers append. Its whole run, to the return, is in the
 *        progress line.
 *      - theirs: read() of every segment file front to back in 1 MiB pieces, from the page
 *        cache: what a recovery that reads the log would cost at least, and why flat matters.
 *      - a new flusher is started and waited for (a producer can attach), for the next crash.
 *    Then the crash and recovery again, the same number of rounds, from a cold cache ("cold
 *    cache" rows): after the fdatasync each segment file's pages are dropped
 *    (posix_fadvise DONTNEED; directory entries and inodes stay cached), so recovery reads
 *    the headers and the last segment from the disk.
 *    A size that does not fit the free space in sopt.dir (statvfs, with a GROW_MARGIN
 *    margin) is skipped, and the larger ones with it, with a note.
 *
 * 2. Memory. A WAL with the default configuration (1 partition, 4 MiB ring), sync none: the
 *    shm object's size and how much of it is allocated (fstat of the object: st_size and
 *    st_blocks), and one producer process's VmRSS (/proc/self/status) and Pss
 *    (/proc/self/smaps_rollup) before shmwal_open() and after it appended N 64 B records
 *    and saw the last one durable. No baseline: "theirs" is empty.
 *
 * Medians of sopt.rounds rounds.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "bench/suite/suite.h"
#include "meta.h"
#include "shmwal_format.h"
#include "tests/helpers.h"

#define MAX_ROUNDS SUITE_MAX_ROUNDS
#define MIB (1ull << 20)
#define GIB (1ull << 30)
#define WAIT_NS (300 * SHMWAL_NS_PER_SEC) /* any wait in a child: give up after this */

static int lib_error(const char *what)
{
	fprintf(stderr, "suite: recovery: %s: %s\n", what, shmwal_last_error());
	return -1;
}


/* A flusher, started and waited for: a producer can attach. */
static pid_t flusher_ready(const char *dir)
{
	struct shmwal *w;
	pid_t pid = th_flusher_start(dir, 0);

	if (pid < 0)
		return -1;
	if (th_open(dir, &w) < 0) {
		lib_error("open (waiting for the flusher)");
		th_flusher_stop(pid);
		return -1;
	}
	shmwal_close(w);
	return pid;
}

static const char *size_name(char *buf, size_t len, uint64_t bytes)
{
	if (bytes >= GIB && bytes % GIB == 0)
		snprintf(buf, len, "%llu GiB", (unsigned long long)(bytes / GIB));
	else
		snprintf(buf, len, "%llu MiB", (unsigned long long)(bytes / MIB));
	return buf;
}

/* ---- the log's segment files ---- */

struct segs {
	char **path;
	unsigned n;
	uint64_t bytes;
};

static int is_seg(const struct dirent *d)
{
	size_t len = strlen(d->d_name);

	return len > 4 && !strcmp(d->d_name + len - 4, ".seg");
}

static void segs_free(struct segs *s)
{
	for (unsigned i = 0; i < s->n; i++)
		free(s->path[i]);
	free(s->path);
	memset(s, 0, sizeof(*s));
}

/* Partition 0's segment files, in LSN order (their names sort so). */
static int segs_list(const char *dir, struct segs *s)
{
	struct dirent **ents;
	char pdir[4096];
	int n;

	memset(s, 0, sizeof(*s));
	snprintf(pdir, sizeof(pdir), "%s/p000", dir);
	n = scandir(pdir, &ents, is_seg, alphasort);
	if (n < 0) {
		perror(pdir);
		return -1;
	}
	s->path = calloc((size_t)n + 1, sizeof(*s->path));
	for (int i = 0; i < n; i++) {
		struct stat st;

		if (s->path && asprintf(&s->path[s->n], "%s/%s", pdir, ents[i]->d_name) >= 0) {
			if (stat(s->path[s->n], &st) == 0)
				s->bytes += (uint64_t)st.st_size;
			s->n++;
		}
		free(ents[i]);
	}
	free(ents);
	if (!s->path || s->n != (unsigned)n) {
		fprintf(stderr, "suite: recovery: out of memory\n");
		segs_free(s);
		return -1;
	}
	return 0;
}

/* fdatasync each segment file and, with `drop`, drop its pages from the page cache. */
static int segs_settle(const struct segs *s, int drop)
{
	for (unsigned i = 0; i < s->n; i++) {
		int fd = open(s->path[i], O_RDONLY | O_CLOEXEC);

		if (fd < 0 || fdatasync(fd) < 0 ||
		    (drop && posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0)) {
			perror(s->path[i]);
			if (fd >= 0)
				close(fd);
			return -1;
		}
		close(fd);
	}
	return 0;
}

/* The baseline: read() every segment file front to back; seconds. */
static int segs_read(const struct segs *s, uint8_t *buf, double *secs)
{
	uint64_t t0 = now(), total = 0;

	for (unsigned i = 0; i < s->n; i++) {
		int fd = open(s->path[i], O_RDONLY | O_CLOEXEC);
		ssize_t got;

		if (fd < 0) {
			perror(s->path[i]);
			return -1;
		}
		while ((got = read(fd, buf, MIB)) > 0)
			total += (uint64_t)got;
		close(fd);
		if (got < 0) {
			perror(s->path[i]);
			return -1;
		}
	}
	*secs = (double)(now() - t0) / 1e9;
	if (total != s->bytes) {
		fprintf(stderr, "suite: recovery: read %llu bytes of segments, expected %llu\n",
			(unsigned long long)total, (unsigned long long)s->bytes);
		return -1;
	}
	return 0;
}

/* ---- 1. recovery time ---------------------------------------------------------------- */

#define SEGMENT_BYTES (64 * MIB)
#define GROW_VALUE (256u << 10)
#define GROW_MARGIN GIB /* free space left over after a size, at least */
#define GROW_FRAME SHMWAL_ALIGN_UP(SHMWAL_FRAME_HDR + GROW_VALUE)

/* Shared with the children (MAP_SHARED); each field written by one child, read by the
 * parent after reaping it. */
struct rec_shared {
	uint64_t end;		/* the producer: LSN after its last record */
	uint64_t start_ns;	/* the recovering flusher: shmwal_flusher_run() called */
	uint64_t ready_ns;	/* ... it logged that it adopted (or created) the shm */
	uint64_t end_ns;	/* ... it returned */
	int adopted;		/* ... it adopted the shm (0: created a new one) */
};

struct rec_run {
	const char *dir;
	uint64_t target; /* the producer appends until the log reaches this LSN */
	struct rec_shared *sh;
};

static int grow_child(void *arg)
{
	const struct rec_run *run = arg;
	uint8_t *val = malloc(GROW_VALUE);
	struct shmwal *w;
	uint64_t lsn, end;

	if (!val)
		return -1;
	th_fill(val, GROW_VALUE, 0, 0, 0);
	if (th_open(run->dir, &w) < 0) {
		free(val);
		return lib_error("producer: open");
	}
	do {
		if (shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, val, GROW_VALUE, &lsn) < 0) {
			lib_error("producer: append");
			goto fail;
		}
		end = lsn + GROW_FRAME;
	} while (end < run->target);
	if (shmwal_wait_durable(w, 0, lsn, WAIT_NS) < 0) {
		lib_error("producer: wait durable");
		goto fail;
	}
	run->sh->end = end;
	shmwal_close(w);
	free(val);
	return 0;
fail:
	shmwal_close(w);
	free(val);
	return -1;
}

static void recover_log(void *ctx, enum shmwal_log_level lvl, const char *msg)
{
	struct rec_shared *sh = ctx;
	int adopted = !strncmp(msg, "adopted the shared memory", 25);

	if (!sh->ready_ns && (adopted || !strncmp(msg, "created the shared memory", 25))) {
		sh->ready_ns = now();
		sh->adopted = adopted;
	}
	if (lvl <= SHMWAL_LOG_WARN)
		fprintf(stderr, "suite: recovery: the recovering flusher said: %s\n", msg);
}

static int recover_child(void *arg)
{
	const struct rec_run *run = arg;
	struct shmwal_flusher_options opts = { .log = recover_log, .log_ctx = run->sh };
	static const int stop = 1;
	int rc;

	alarm(TH_TIMEOUT_S);
	run->sh->start_ns = now();
	rc = shmwal_flusher_run(run->dir, &opts, &stop);
	run->sh->end_ns = now();
	return rc < 0 ? lib_error("recovering flusher") : 0;
}

/* SIGKILLs the flusher *fl, settles the files (drop: and their cache), times a recovery. */
static int crash_recover(const struct rec_run *run, pid_t *fl, int drop, double *ready_ms,
			 double *whole_ms)
{
	struct rec_shared *sh = run->sh;
	struct segs s;
	int st;

	if (kill(*fl, SIGKILL) < 0) {
		perror("suite: recovery: kill");
		return -1;
	}
	st = th_wait(*fl, TH_TIMEOUT_S);
	*fl = -1;
	if (st != 128 + SIGKILL) {
		fprintf(stderr, "suite: recovery: the killed flusher's status: %d\n", st);
		return -1;
	}
	if (segs_list(run->dir, &s) < 0)
		return -1;
	st = segs_settle(&s, drop);
	segs_free(&s);
	if (st < 0)
		return -1;
	sh->start_ns = sh->ready_ns = sh->end_ns = 0;
	if (suite_reap(suite_spawn(recover_child, (void *)run), "recovering flusher") < 0)
		return -1;
	if (!sh->ready_ns) {
		fprintf(stderr, "suite: recovery: the flusher's log did not say when it had the "
				"shared memory (has its wording changed?)\n");
		return -1;
	}
	if (!sh->adopted)
		note("  (the crash left no shared memory to adopt: the flusher made a new one)\n");
	*ready_ms = (double)(sh->ready_ns - sh->start_ns) / 1e6;
	*whole_ms = (double)(sh->end_ns - sh->start_ns) / 1e6;
	return 0;
}

/* A producer process appends until the log reaches target (a flusher runs). */
static int grow(struct rec_run *run, uint64_t target)
{
	uint64_t t0 = now(), from = run->sh->end;
	double secs;

	run->target = target;
	if (suite_reap(suite_spawn(grow_child, run), "producer") < 0)
		return -1;
	secs = (double)(now() - t0) / 1e9;
	note("  grew the log to %.2f GiB in %.1f s (%.0f MB/s)\n",
	     (double)run->sh->end / (double)GIB, secs, (double)(run->sh->end - from) / secs / 1e6);
	return 0;
}

/* 1 if `more` bytes fit in sopt.dir with GROW_MARGIN to spare; notes why not. */
static int space_for(uint64_t more, const char *what)
{
	struct statvfs vfs;
	uint64_t avail;

	if (statvfs(sopt.dir, &vfs) < 0) {
		perror(sopt.dir);
		return 0;
	}
	avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	if (avail >= more + GROW_MARGIN)
		return 1;
	note("  skipping %s and larger: %.1f GiB more is needed in %s, %.1f GiB is free\n", what,
	     (double)(more + GROW_MARGIN) / (double)GIB, sopt.dir, (double)avail / (double)GIB);
	return 0;
}

/* The rounds at one size: [0] recovery from the page cache, [1] theirs, [2] cold cache. */
static int size_rounds(struct rec_run *run, pid_t *fl, double med[3])
{
	double v[3][MAX_ROUNDS], whole[2][MAX_ROUNDS], warm;
	uint8_t *buf = malloc(MIB);
	struct segs s;
	int rc = -1;

	if (!buf || segs_list(run->dir, &s) < 0) {
		free(buf);
		return -1;
	}
	/* warm the cache: a cold round of the size before dropped part of the log */
	if (segs_read(&s, buf, &warm) < 0)
		goto out;
	for (unsigned r = 0; r < sopt.rounds; r++) {
		for (int k = 0; k < 2; k++) {
			if ((k ^ (int)(r & 1)) == 1) {
				if (segs_read(&s, buf, &v[1][r]) < 0)
					goto out;
				v[1][r] *= 1e3;
				continue;
			}
			if (crash_recover(run, fl, 0, &v[0][r], &whole[0][r]) < 0 ||
			    (*fl = flusher_ready(run->dir)) < 0)
				goto out;
		}
	}
	for (unsigned r = 0; r < sopt.rounds; r++)
		if (crash_recover(run, fl, 1, &v[2][r], &whole[1][r]) < 0 ||
		    (*fl = flusher_ready(run->dir)) < 0)
			goto out;
	note("  %u segments, %.2f GiB: recovery", s.n, (double)s.bytes / (double)GIB);
	for (unsigned r = 0; r < sopt.rounds; r++)
		note(" %.1f", v[0][r]);
	note(" ms (whole run %.1f), cold cache", median(whole[0], sopt.rounds));
	for (unsigned r = 0; r < sopt.rounds; r++)
		note(" %.1f", v[2][r]);
	note(" ms (whole run %.1f); read() of the log", median(whole[1], sopt.rounds));
	for (unsigned r = 0; r < sopt.rounds; r++)
		note(" %.0f", v[1][r]);
	note(" ms\n");
	for (int k = 0; k < 3; k++)
		med[k] = median(v[k], sopt.rounds);
	rc = 0;
out:
	segs_free(&s);
	free(buf);
	return rc;
}

static int recovery_time(void)
{
	const uint64_t full[] = { 64 * MIB, GIB, 10 * GIB }, quick[] = { 64 * MIB, 256 * MIB };
	const uint64_t *sizes = sopt.quick ? quick : full;
	const unsigned nsizes = sopt.quick ? 2 : 3;
	double med[3][3], worst = 0;
	char warm[64] = "", cold[64] = "", name[32];
	struct shmwal_config c;
	struct rec_run run;
	unsigned done = 0;
	size_t wlen = 0, clen = 0;
	char *dir;
	pid_t fl;
	int rc = -1;

	shmwal_config_default(&c);
	c.ring_bytes = 16 * MIB;
	c.segment_bytes = SEGMENT_BYTES;
	c.max_value = GROW_VALUE;
	c.sync = SHMWAL_SYNC_NONE;
	if (!(dir = wal_new(&c)))
		return -1;
	run.dir = dir;
	run.sh = shared_new(sizeof(*run.sh));
	note("  recovery: 1 partition, 64 MiB segments, %u KiB values, sync none; each size plus "
	     "a last segment half full\n",
	     GROW_VALUE >> 10);
	if ((fl = flusher_ready(dir)) < 0)
		goto out;
	for (unsigned i = 0; i < nsizes; i++) {
		uint64_t target = sizes[i] + SEGMENT_BYTES / 2;
		char kase[64];

		size_name(name, sizeof(name), sizes[i]);
		if (!space_for(target - run.sh->end, name))
			break;
		if (grow(&run, target) < 0 || size_rounds(&run, &fl, med[i]) < 0)
			goto stop;
		snprintf(kase, sizeof(kase), "log %s, page cache", name);
		result("recovery", kase, "recovery", "ms", LOWER, med[i][0],
		       "read() of the whole log", med[i][1]);
		snprintf(kase, sizeof(kase), "log %s, cold cache", name);
		result("recovery", kase, "recovery", "ms", LOWER, med[i][2], NULL, NAN);
		plot_point("recovery", "shmwal", (double)run.sh->end / (double)GIB, med[i][0]);
		plot_point("recovery", "shmwal, cold cache", (double)run.sh->end / (double)GIB,
			   med[i][2]);
		plot_point("recovery", "read() of the whole log", (double)run.sh->end / (double)GIB,
			   med[i][1]);
		worst = med[i][0] > worst ? med[i][0] : worst;
		if (wlen < sizeof(warm))
			wlen += (size_t)snprintf(warm + wlen, sizeof(warm) - wlen, "%s%s %.0f",
						 done ? ", " : "", name, med[i][0]);
		if (clen < sizeof(cold))
			clen += (size_t)snprintf(cold + clen, sizeof(cold) - clen, "%s%s %.0f",
						 done ? ", " : "", name, med[i][2]);
		done++;
	}
	if (done)
		target("recovery <= 200 ms whatever the log's length", worst <= 200,
		       "page cache %s ms; cold cache %s ms", warm, cold);
	rc = 0;
stop:
	if (fl > 0 && th_flusher_stop(fl) != 0) {
		fprintf(stderr, "suite: recovery: the flusher did not stop cleanly\n");
		rc = -1;
	}
out:
	shared_free(run.sh, sizeof(*run.sh));
	wal_done(dir);
	return rc;
}

/* ---- 2. memory ---------------------------------------------------------------------------- */

struct mem_shared {
	const char *dir;
	uint64_t n;
	double rss[2], pss[2], shmem; /* KiB: [0] before shmwal_open, [1] after the appends */
};

/* The value of "key:   N kB" in a /proc file, in KiB; NAN if absent. */
static double proc_kib(const char *path, const char *key)
{
	char line[256];
	size_t len = strlen(key);
	double v = NAN;
	FILE *f = fopen(path, "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, len) && line[len] == ':') {
			v = strtod(line + len + 1, NULL);
			break;
		}
	if (f)
		fclose(f);
	return v;
}

static void mem_read(struct mem_shared *m, int k)
{
	m->rss[k] = proc_kib("/proc/self/status", "VmRSS");
	m->pss[k] = proc_kib("/proc/self/smaps_rollup", "Pss");
	m->shmem = proc_kib("/proc/self/status", "RssShmem");
}

static int mem_child(void *arg)
{
	struct mem_shared *m = arg;
	uint8_t val[64] = { 0 };
	struct shmwal *w;
	uint64_t lsn = 0;

	mem_read(m, 0);
	if (th_open(m->dir, &w) < 0)
		return lib_error("memory: open");
	for (uint64_t i = 0; i < m->n; i++)
		if (shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, val, sizeof(val), &lsn) < 0) {
			shmwal_close(w);
			return lib_error("memory: append");
		}
	if (shmwal_wait_durable(w, 0, lsn, WAIT_NS) < 0) {
		shmwal_close(w);
		return lib_error("memory: wait durable");
	}
	mem_read(m, 1);
	shmwal_close(w);
	return 0;
}

/* The shm object's size and allocated bytes. */
static int shm_size(const char *dir, double *size, double *allocated)
{
	struct meta *m = malloc(sizeof(*m));
	char name[32];
	struct stat st;
	int fd;

	if (!m)
		return -1;
	if (meta_load(dir, m) < 0) {
		free(m);
		return lib_error("memory: read the WAL's metadata");
	}
	shm_name(name, m->instance);
	free(m);
	fd = shm_open(name, O_RDONLY, 0);
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(name);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	*size = (double)st.st_size;
	*allocated = (double)st.st_blocks * 512;
	return 0;
}

static int memory(void)
{
	struct mem_shared *m = shared_new(sizeof(*m));
	struct shmwal_config c;
	double size = 0, allocated = 0;
	char kase[64];
	char *dir;
	pid_t fl = -1;
	int rc = -1;

	shmwal_config_default(&c);
	c.sync = SHMWAL_SYNC_NONE;
	if (!(dir = wal_new(&c))) {
		shared_free(m, sizeof(*m));
		return -1;
	}
	m->dir = dir;
	m->n = scale(1000000, 200000);
	note("  memory: default configuration (1 partition, %llu MiB ring), sync none; one "
	     "producer appends %llu x 64 B\n",
	     (unsigned long long)(c.ring_bytes / MIB), (unsigned long long)m->n);
	if ((fl = flusher_ready(dir)) < 0 || suite_reap(suite_spawn(mem_child, m), "memory producer") < 0 ||
	    shm_size(dir, &size, &allocated) < 0)
		goto out;
	note("  shm object %.2f MiB (%.2f MiB allocated); producer VmRSS %.0f -> %.0f KiB "
	     "(RssShmem %.0f KiB after), Pss %.0f -> %.0f KiB\n",
	     size / MIB, allocated / MIB, m->rss[0], m->rss[1], m->shmem, m->pss[0], m->pss[1]);
	result("recovery", "shm object, default config", "size", "MiB", LOWER, size / MIB, NULL,
	       NAN);
	result("recovery", "shm object, default config", "allocated", "MiB", LOWER,
	       allocated / MIB, NULL, NAN);
	result("recovery", "producer, before open", "VmRSS", "KiB", LOWER, m->rss[0], NULL, NAN);
	result("recovery", "producer, before open", "Pss", "KiB", LOWER, m->pss[0], NULL, NAN);
	snprintf(kase, sizeof(kase), "producer, after %lluk appends",
		 (unsigned long long)(m->n / 1000));
	result("recovery", kase, "VmRSS", "KiB", LOWER, m->rss[1], NULL, NAN);
	result("recovery", kase, "Pss", "KiB", LOWER, m->pss[1], NULL, NAN);
	rc = 0;
out:
	if (fl > 0 && th_flusher_stop(fl) != 0) {
		fprintf(stderr, "suite: recovery: the memory flusher did not stop cleanly\n");
		rc = -1;
	}
	wal_done(dir);
	shared_free(m, sizeof(*m));
	return rc;
}

int mode_recovery(void)
{
	int rc = recovery_time();

	if (memory() < 0)
		rc = -1;
	return rc;
}
