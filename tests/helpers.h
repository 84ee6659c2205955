/* SPDX-License-Identifier: MIT */
/*
 * helpers.h - shared by tests/, stress/ and bench/: temporary WALs, flusher child processes,
 * stamped payloads and the whole-log checker.
 *
 * Stamped payloads: every record a test writes carries who wrote it and its sequence number,
 * and bytes derived from them, so a reader can prove each record intact and attribute it:
 *   value = struct th_stamp (24 bytes) + filler bytes that are a function of the stamp.
 * The checker reads a whole WAL and proves: nothing duplicated, per-stream order kept (in LSN
 * order within a partition, a stream's sequence numbers strictly increase), every byte intact,
 * and (given the expected counts) nothing lost.
 */
#ifndef SHMWAL_TEST_HELPERS_H
#define SHMWAL_TEST_HELPERS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shmwal.h"

#define TH_TIMEOUT_S 300 /* generous: tests run on loaded 2-core machines */

/* For cmocka suites: a call that must return 0, else the test fails naming the call, what it
 * returned and shmwal_last_error(). */
#define EXPECT_OK(call)                                                                    \
	do {                                                                               \
		int64_t rc_ = (int64_t)(call);                                             \
		if (rc_ != 0)                                                              \
			fail_msg("%s: returned %" PRId64 ": %s", #call, rc_,               \
				 shmwal_last_error());                                     \
	} while (0)

/* Creates a WAL in dir with the defaults but these (max_key 64, interval 1 ms). -errno. */
int th_create(const char *dir, uint32_t partitions, uint64_t ring_bytes, uint64_t segment_bytes,
	      uint32_t max_value, enum shmwal_sync sync);

/* A fresh, empty directory under $TMPDIR (or /tmp), "<tag>.XXXXXX". Caller frees. */
char *th_tmpdir(const char *tag);
/* Removes a WAL directory and its shared-memory object, if any. */
void th_destroy(const char *dir);
/* Removes the shared-memory object of the WAL in dir (after a SIGKILLed flusher). */
void th_shm_unlink(const char *dir);

/*
 * A flusher child process, as th_flusher_spawn() forks it. The child:
 *   - dies with its parent (PR_SET_PDEATHSIG), so a failed test leaves no flusher behind;
 *   - stops cleanly on SIGTERM: the signal stays blocked across the fork until the child's
 *     handler is in place, so a stop sent right after the spawn still means "drain and exit";
 *   - calls alarm(alarm_s) if alarm_s, then child_setup(arg) if set (io_set(), open a log
 *     file, ...), then shmwal_flusher_run(dir, &opts, ...);
 *   - when that fails, writes "<name>: <shmwal_last_error()>" to stderr if name is set, then
 *     calls child_done(arg, rc) if set (it is called on success too: rc 0);
 *   - exits with
 *       0                 the flusher stopped cleanly (SIGTERM, or idle with exit_when_idle)
 *       TH_FLUSHER_BUSY   -EBUSY: another flusher runs on dir
 *       TH_FLUSHER_EIO    -EIO: a write or sync failed (unless one_error_status)
 *       TH_FLUSHER_ERROR  any other error (every error, with one_error_status)
 * The spec is read in the child only: it may live on the caller's stack.
 */
#define TH_FLUSHER_ERROR 1
#define TH_FLUSHER_BUSY	 3
#define TH_FLUSHER_EIO	 5

struct th_flusher_spec {
	struct shmwal_flusher_options opts; /* log + log_ctx, repair, exit_when_idle */
	/* in the child: before the flusher starts; after it returned rc (0 or -errno) */
	void (*child_setup)(void *arg);
	void (*child_done)(void *arg, int rc);
	void *arg;	      /* for child_setup and child_done */
	const char *name;     /* the error line's prefix on stderr; NULL: no line */
	unsigned alarm_s;     /* SIGALRM ends the child after this long; 0: never */
	int one_error_status; /* exit TH_FLUSHER_ERROR for every error */
};

/* Forks a flusher child for dir as spec says. Returns its pid, or -1 if fork failed. */
pid_t th_flusher_spawn(const char *dir, const struct th_flusher_spec *spec);
/* Forks a flusher for dir (th_flusher_spawn, with alarm 2 * TH_TIMEOUT_S and errors on
 * stderr). Its log goes to stderr when SHMWAL_TEST_VERBOSE is set. `exit_when_idle` as in
 * shmwal_flusher_options. */
pid_t th_flusher_start(const char *dir, int exit_when_idle);
/* SIGTERM, then waits (TH_TIMEOUT_S): returns the exit status (0 clean), or -1. */
int th_flusher_stop(pid_t pid);
/* Waits for a child; kills it after timeout_s. Returns its exit status, 128+signal, or -1. */
int th_wait(pid_t pid, int timeout_s);
/* shmwal_open, retrying while the flusher is starting (up to TH_TIMEOUT_S). */
int th_open(const char *dir, struct shmwal **w);

/* ---- stamped payloads ---- */

struct th_stamp {
	uint32_t producer;
	uint32_t thread;
	uint64_t seq;
	uint32_t len;	/* total value length */
	uint32_t check; /* CRC32C of the three fields above */
};

#define TH_STAMP_MIN ((uint32_t)sizeof(struct th_stamp))

/* Fills value[0..len) (len >= TH_STAMP_MIN) with a stamp and derived filler. */
void th_fill(void *value, uint32_t len, uint32_t producer, uint32_t thread, uint64_t seq);
/* Checks a value filled by th_fill; 0 and *st on success, -1 if any byte is wrong. */
int th_check(const void *value, uint32_t len, struct th_stamp *st);
/* The key used for a stamped record (deterministic, 0..16 bytes). Returns its length. */
uint32_t th_key(char *buf, uint32_t producer, uint32_t thread, uint64_t seq);

/* A small deterministic PRNG (xorshift64*). */
static inline uint64_t th_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* ---- the whole-log checker ---- */

struct th_log_report {
	uint64_t records;
	uint64_t bad_bytes;	/* records whose payload or key failed the stamp check */
	uint64_t duplicates;	/* (stream, seq) seen twice */
	uint64_t out_of_order;	/* a stream's seq not increasing within a partition */
	uint64_t foreign;	/* records whose stamp names an unknown stream */
	uint64_t missing;	/* expected (stream, seq) never seen */
	uint64_t read_errors;
	char first_error[256];
};

/*
 * Reads every partition of dir from the oldest record. Streams are (producer, thread) with
 * producer < nprod and thread < nthr. expected[producer * nthr + thread] (if not NULL) is how
 * many records (seqs 0..n-1) each stream must have; with `required`, only the seqs for which
 * required(ctx, producer, thread, seq) returns 1 must be present (killed producers: only the
 * acknowledged ones). Returns 0 when the log is perfect.
 */
int th_check_log(const char *dir, uint32_t nprod, uint32_t nthr, const uint64_t *expected,
		 int (*required)(void *ctx, uint32_t p, uint32_t t, uint64_t seq), void *ctx,
		 struct th_log_report *rep);

/* ---- a producer workload ---- */

struct th_producer {
	const char *dir;
	uint32_t producer;	/* stream ids: (producer, thread) */
	uint32_t threads;
	uint64_t records;	/* per thread */
	uint32_t min_value, max_value; /* value sizes, uniform in [min, max]; min >= TH_STAMP_MIN */
	uint32_t partitions;	/* records go to partition seq % partitions */
	int wait_each;		/* wait until each record is durable */
	uint64_t *acked;	/* shared: acked[producer * threads + t] = seqs acknowledged
				   durable so far (written after the wait returns) */
	uint64_t seed;
};

/*
 * Appends `records` stamped records from each of `threads` threads, mixing shmwal_append,
 * zero-copy claim/commit, shmwal_try_append (retried on -EAGAIN) and claims that are aborted
 * before the real record is appended. Returns 0, or -1 with a message on stderr.
 */
int th_run_producer(const struct th_producer *p);
/* Forks a process that runs th_run_producer and exits 0 on success. */
pid_t th_spawn_producer(const struct th_producer *p);
/* Forks n producers from a template, with producer ids 0..n-1, into pids[]. */
void th_spawn_producers(const struct th_producer *tmpl, uint32_t n, pid_t *pids);
/* A zeroed shared array of n counters (MAP_SHARED | MAP_ANONYMOUS), visible across fork. */
uint64_t *th_shared_counters(uint32_t n);

/* The path of the shmwal command under test: $SHMWAL_BIN, else $O/shmwal, else build/shmwal. */
void th_shmwal_bin(char *buf, size_t len);

/* ---- more: other backends, the shmwal command as a child ---- */

/* As th_create(), with the segment backend `backend` (SHMWAL_BACKEND_FILE or _PMEM). */
int th_create_backend(const char *dir, uint32_t partitions, uint64_t ring_bytes,
		      uint64_t segment_bytes, uint32_t max_value, enum shmwal_sync sync,
		      enum shmwal_backend backend);

/*
 * Forks and execs the shmwal command under test (th_shmwal_bin) with the arguments args[]
 * (NULL-terminated, without the program name: { "flusher", dir, NULL }). The child:
 *   - has the caller's environment plus env[] ("NAME=VALUE" strings, NULL-terminated; NULL for
 *     none), each replacing a variable of the same name: a setting for this child only, in
 *     place from its first instruction on (what libraries that read the environment once, at
 *     their first use, need);
 *   - reads /dev/null, and appends its stdout and stderr to out_path (created 0600 if missing;
 *     NULL: the caller's);
 *   - dies with its parent (PR_SET_PDEATHSIG is kept across the exec) and gets SIGALRM after
 *     2 * TH_TIMEOUT_S (a pending alarm is kept across the exec too).
 * Returns the pid (the shmwal process itself: no shell), or -1. Wait for it with th_wait().
 * Safe to call from a process with threads: only async-signal-safe calls (prctl, alarm, open,
 * dup2) run between the fork and the exec.
 */
pid_t th_shmwal_spawn(const char *const *args, const char *const *env, const char *out_path);

/*
 * As th_shmwal_spawn(), for any program: `path` (looked up in PATH when it holds no '/'),
 * run with args[] after the program name. An env[] entry "NAME" without '=' removes NAME
 * from the child's environment.
 */
pid_t th_spawn(const char *path, const char *const *args, const char *const *env,
	       const char *out_path);

/* 1 when the file at path contains the string needle, 0 if not (or unreadable). */
int th_file_contains(const char *path, const char *needle);

/* The whole file at path, NUL-terminated (*len without the NUL, if len); NULL if unreadable.
 * Caller frees. */
char *th_file_read(const char *path, size_t *len);

#endif
