/* SPDX-License-Identifier: MIT */
/*
 * test_pmem.c - the pmem backend (SHMWAL_BACKEND_PMEM), every scenario in both of its modes:
 *   drain  the flusher runs with PMEM_IS_PMEM_FORCE=1: libpmem treats the mapping as
 *          persistent memory (non-draining copies, one pmem_drain() per batch);
 *   msync  PMEM_IS_PMEM_FORCE=0: the pmem_msync() fallback, with a warning at start.
 * libpmem reads that variable once, at its first use in a process, so every flusher here is a
 * `shmwal flusher` process exec'd with the variable in its own environment, and every start
 * proves the mode in effect: shmwal_stat().persistence, and the warning line in the flusher's
 * log (in msync mode only). A test cannot pass in the wrong mode.
 *
 *   end_to_end       producer processes and live readers, segments rotated many times: every
 *                    record checked; verify and dump agree; truncation under a reader.
 *   flusher_killed   the flusher SIGKILLed mid-stream and restarted (adopting the rings):
 *                    every acknowledged record present once, intact, in order.
 *   recovery, from segment files edited while no flusher runs, then a flusher started:
 *     garbage_past_end  non-zero bytes past the last frame: cleared, logged;
 *     resurrection      a torn frame A followed by a valid frame B: the log ends at A, and a
 *                       new record that ends exactly where B starts does not bring B back;
 *     recycled          a segment whose body holds an older lap's frames: never read;
 *     short_last        a last segment shorter than the fixed size: extended, used;
 *     long_last         a last segment longer than it: refused, or taken for good (FAILS:
 *                       taken, then refused once sealed; see the test);
 *     torn_header       all-zero body: quarantined; frames behind it: refused, --repair;
 *     sealed_damage     wrong size, a missing middle segment, data past a sealed range:
 *                       refused (-EBADMSG), and DAMAGE in `shmwal verify` (FAILS for the
 *                       wrong size: sealed_wrong_size_verify).
 *   cli              create --backend, stat's persistence line.
 *   disk_full        no room for the next fixed-size segment (root: a small tmpfs):
 *                    producers back-pressured, the flusher waits, everything resumes.
 *
 * The records the test process appends itself are kept in a book (stream, sequence, LSN,
 * sizes); the log is then compared with the book record by record: exactly its live entries,
 * in order, every byte, and nothing after them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "shmwal.h"
#include "shmwal_format.h"
#include "helpers.h"

#define NS_TIMEOUT ((uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC)
#define NOT_PMEM_WARNING "is not on persistent memory"
#define MAX_SEGS 256

struct mode {
	const char *name;
	const char *env; /* the flusher's environment */
	enum shmwal_persistence want;
	const char *stat_line, *other_stat_line; /* `shmwal stat`: this mode's line, the other's */
};

static const struct mode mode_drain = { "drain", "PMEM_IS_PMEM_FORCE=1",
					SHMWAL_PERSIST_PMEM_DRAIN, "persistence: pmem drain",
					"persistence: pmem msync" };
static const struct mode mode_msync = { "msync", "PMEM_IS_PMEM_FORCE=0",
					SHMWAL_PERSIST_PMEM_MSYNC, "persistence: pmem msync",
					"persistence: pmem drain" };

/* ---- the book of records appended by the test process (partition 0) ------------------- */

#define BOOK_MAX 4096
#define BOOK_PRODUCERS 16

struct entry {
	uint32_t prod;
	uint64_t seq;
	uint64_t lsn;
	uint32_t klen, vlen;
	int live; /* must be in the log */
};

struct book {
	uint32_t n;
	uint64_t next_seq[BOOK_PRODUCERS];
	struct entry e[BOOK_MAX];
};

static uint32_t e_len(const struct entry *e) { return SHMWAL_FRAME_HDR + e->klen + e->vlen; }
static uint64_t e_end(const struct entry *e) { return e->lsn + SHMWAL_ALIGN_UP(e_len(e)); }

/* ---- the fixture ------------------------------------------------------------------------ */

struct fx {
	const struct mode *mode;
	char *tmp;			/* logs, outputs, and the WAL (tmp/wal) */
	char wal[4200], pdir[4300], qdir[4300];
	char log[4300];			/* the log of the last flusher started */
	int nfiles;			/* logs and outputs so far */
	pid_t flusher;			/* running flusher, or -1 */
	pid_t kids[4];			/* producer processes, -1 once reaped */
	char *out;			/* output of the last command */
	uint8_t *buf[3];		/* files read (fx_file): freed by the next read, teardown */
	struct book *b;
	uint64_t seed;
	char mnt[4096];			/* disk_full: the small filesystem */
	int mounted;
};

static void set_wal(struct fx *fx, const char *base)
{
	snprintf(fx->wal, sizeof(fx->wal), "%s/wal", base);
	snprintf(fx->pdir, sizeof(fx->pdir), "%s/p000", fx->wal);
	snprintf(fx->qdir, sizeof(fx->qdir), "%s/quarantine", fx->wal);
}

static int setup_mode(void **state, const struct mode *m)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	*state = fx;
	fx->mode = m;
	fx->flusher = -1;
	for (int i = 0; i < 4; i++)
		fx->kids[i] = -1;
	fx->seed = 0x2545f4914f6cdd1dull;
	fx->b = calloc(1, sizeof(*fx->b));
	fx->tmp = th_tmpdir("pmem");
	if (!fx->b || !fx->tmp)
		return -1;
	set_wal(fx, fx->tmp);
	return 0;
}

static int setup_drain(void **state) { return setup_mode(state, &mode_drain); }
static int setup_msync(void **state) { return setup_mode(state, &mode_msync); }

/* Every path: children killed and reaped, the shm object removed, the mount undone, files
 * removed. */
static int teardown(void **state)
{
	struct fx *fx = *state;

	if (!fx)
		return 0;
	for (int i = 0; i < 4; i++)
		if (fx->kids[i] > 0) {
			kill(fx->kids[i], SIGKILL);
			waitpid(fx->kids[i], NULL, 0);
		}
	if (fx->flusher > 0) {
		kill(fx->flusher, SIGKILL);
		waitpid(fx->flusher, NULL, 0);
	}
	if (fx->tmp)
		th_shm_unlink(fx->wal);
	if (fx->mounted && umount2(fx->mnt, MNT_DETACH) < 0)
		fprintf(stderr, "umount %s: %s\n", fx->mnt, strerror(errno));
	th_destroy(fx->tmp);
	free(fx->tmp);
	free(fx->out);
	for (int i = 0; i < 3; i++)
		free(fx->buf[i]);
	free(fx->b);
	free(fx);
	return 0;
}

/* ---- small helpers ---------------------------------------------------------------------- */

static void expect_text(const char *text, const char *needle, const char *what)
{
	if (!text || !strstr(text, needle))
		fail_msg("%s does not contain \"%s\":\n%s", what, needle, text ? text : "(none)");
}

static void expect_no_text(const char *text, const char *needle, const char *what)
{
	if (text && strstr(text, needle))
		fail_msg("%s contains \"%s\":\n%s", what, needle, text);
}

enum { BUF_A, BUF_B, BUF_LOG };

/* The whole file at path, NUL-terminated, in the fixture's buffer `slot` (so that a failed
 * assertion leaks nothing); NULL if unreadable. */
static uint8_t *fx_file(struct fx *fx, int slot, const char *path, size_t *len)
{
	free(fx->buf[slot]);
	fx->buf[slot] = (uint8_t *)th_file_read(path, len);
	return fx->buf[slot];
}

static const char *fx_log(struct fx *fx)
{
	return (const char *)fx_file(fx, BUF_LOG, fx->log, NULL);
}

static void expect_in_file(struct fx *fx, const char *path, const char *needle)
{
	expect_text((const char *)fx_file(fx, BUF_LOG, path, NULL), needle, path);
}

static int64_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) < 0 ? -1 : (int64_t)st.st_size;
}

static void put_bytes(const char *path, uint64_t off, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static int all_zero(const uint8_t *p, uint64_t from, uint64_t to)
{
	for (uint64_t i = from; i < to; i++)
		if (p[i])
			return 0;
	return 1;
}

static int count_lines_with(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);
	int count = 0;

	for (const char *l = text; l && *l;) {
		const char *nl = strchr(l, '\n');

		count += strncmp(l, prefix, n) == 0;
		l = nl ? nl + 1 : NULL;
	}
	return count;
}

static void pause_ms(unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* ---- segment files ---------------------------------------------------------------------- */

/* The size of every segment file of the WAL: the header, segment_bytes and one largest frame,
 * rounded up to 4 KiB (include/shmwal.h, the pmem backend; common/meta.h). */
static uint64_t fixed_size(const struct fx *fx)
{
	struct shmwal_config c;

	assert_int_equal(shmwal_config_load(fx->wal, &c), 0);
	return (SHMWAL_SEG_HDR + c.segment_bytes +
		SHMWAL_ALIGN_UP(SHMWAL_FRAME_HDR + (uint64_t)c.max_key + c.max_value) + 4095) &
	       ~4095ull;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The first LSNs of the segments in pdir, sorted. Returns how many. */
static uint32_t seg_list(const char *pdir, uint64_t *firsts)
{
	DIR *d = opendir(pdir);
	struct dirent *e;
	uint32_t n = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		uint64_t f;

		if (shmwal_segment_name_parse(e->d_name, &f) == 0) {
			assert_true(n < MAX_SEGS);
			firsts[n++] = f;
		}
	}
	closedir(d);
	qsort(firsts, n, sizeof(*firsts), cmp_u64);
	return n;
}

static uint32_t seg_count(const struct fx *fx)
{
	uint64_t firsts[MAX_SEGS];

	return seg_list(fx->pdir, firsts);
}

static uint64_t last_seg(const struct fx *fx)
{
	uint64_t firsts[MAX_SEGS];
	uint32_t n = seg_list(fx->pdir, firsts);

	assert_true(n > 0);
	return firsts[n - 1];
}

static void seg_path(const struct fx *fx, uint64_t first, char *buf, size_t len)
{
	char name[24];

	shmwal_segment_name(name, first);
	assert_true(snprintf(buf, len, "%s/%s", fx->pdir, name) < (int)len);
}

/* Every segment of every partition has the fixed size. */
static void expect_fixed_sizes(const struct fx *fx, uint32_t partitions)
{
	uint64_t size = fixed_size(fx), firsts[MAX_SEGS];

	for (uint32_t p = 0; p < partitions; p++) {
		char pdir[4400], path[4500], name[24];
		uint32_t n;

		snprintf(pdir, sizeof(pdir), "%s/p%03u", fx->wal, p);
		n = seg_list(pdir, firsts);
		for (uint32_t i = 0; i < n; i++) {
			shmwal_segment_name(name, firsts[i]);
			snprintf(path, sizeof(path), "%s/%s", pdir, name);
			if ((uint64_t)file_size(path) != size)
				fail_msg("%s: %" PRId64 " bytes, not the fixed size %" PRIu64, path,
					 file_size(path), size);
		}
	}
}

/* Entries of DIR/quarantine whose name starts with "p000-<segment name>." (all if first is
 * UINT64_MAX). */
static int quarantined(const struct fx *fx, uint64_t first)
{
	char prefix[64], name[24];
	DIR *d = opendir(fx->qdir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	shmwal_segment_name(name, first);
	snprintf(prefix, sizeof(prefix), "p000-%s.", name);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' &&
		    (first == UINT64_MAX || strncmp(e->d_name, prefix, strlen(prefix)) == 0))
			n++;
	closedir(d);
	return n;
}

/* ---- the shmwal command ----------------------------------------------------------------- */

/* Runs `shmwal ARGS...` (NULL-terminated) to completion. Returns its exit status; its stdout
 * and stderr are in fx->out. */
static int run_cmd(struct fx *fx, ...)
{
	const char *args[16];
	char out[4400];
	va_list ap;
	int n = 0, status;
	pid_t pid;

	va_start(ap, fx);
	while ((args[n] = va_arg(ap, const char *)) != NULL)
		assert_true(++n < 15);
	va_end(ap);
	snprintf(out, sizeof(out), "%s/cmd.%d.out", fx->tmp, fx->nfiles++);
	pid = th_shmwal_spawn(args, NULL, out);
	assert_true(pid > 0);
	status = th_wait(pid, TH_TIMEOUT_S);
	free(fx->out);
	fx->out = th_file_read(out, NULL);
	assert_non_null(fx->out);
	if (status == 127)
		fail_msg("could not run the shmwal command (set SHMWAL_BIN or O)");
	if (getenv("SHMWAL_TEST_VERBOSE"))
		fprintf(stderr, "$ shmwal %s ... -> %d\n%s", args[0], status, fx->out);
	return status;
}

static void expect_status(const struct fx *fx, int status, int want, const char *what)
{
	if (status != want)
		fail_msg("%s: exit status %d, expected %d:\n%s", what, status, want, fx->out);
}

/* `shmwal verify` exits with `want`; its output in fx->out. */
static void verify_status(struct fx *fx, int want, const char *what)
{
	expect_status(fx, run_cmd(fx, "verify", fx->wal, NULL), want, what);
}

/* `shmwal verify`: exit 0 and "N records in P partitions: ok", no TORN-TAIL nor DAMAGE. */
static void expect_verify_ok(struct fx *fx, uint64_t records, uint32_t partitions)
{
	char want[128];

	verify_status(fx, 0, "verify");
	snprintf(want, sizeof(want), "%" PRIu64 " records in %u partitions: ok", records,
		 partitions);
	expect_text(fx->out, want, "verify");
	expect_no_text(fx->out, "TORN-TAIL", "verify");
	expect_no_text(fx->out, "DAMAGE", "verify");
}

/* ---- flushers --------------------------------------------------------------------------- */

/* Starts `shmwal flusher WAL [extra]` in this test's mode; its log goes to a new fx->log. */
static pid_t spawn_flusher(struct fx *fx, const char *extra)
{
	const char *args[] = { "flusher", fx->wal, extra, NULL };
	const char *env[] = { fx->mode->env, NULL };

	snprintf(fx->log, sizeof(fx->log), "%s/flusher.%d.log", fx->tmp, fx->nfiles++);
	return th_shmwal_spawn(args, env, fx->log);
}

/*
 * Waits until the flusher `pid` serves (returns 1, *st filled: it holds the lock, recorded its
 * pid and published its persistence, which it does once recovery and the shared memory are
 * done) or exits (returns 0, *status).
 */
static int serving_or_exit(struct fx *fx, pid_t pid, struct shmwal_stat *st, int *status)
{
	for (long i = 0; i < TH_TIMEOUT_S * 500L; i++) {
		int ws;

		if (waitpid(pid, &ws, WNOHANG) == pid) {
			*status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
			return 0;
		}
		if (shmwal_stat(fx->wal, st) == 0 && st->flusher_running && st->shm_present &&
		    st->flusher_pid == (uint32_t)pid && st->persistence != SHMWAL_PERSIST_NONE)
			return 1;
		pause_ms(2);
	}
	fail_msg("flusher %d neither served nor exited in %d s", (int)pid, TH_TIMEOUT_S);
	return 0;
}

/* Starts a flusher and waits until it serves, in the mode under test (checked). */
static void flusher_start(struct fx *fx, const char *extra)
{
	struct shmwal_stat st;
	int status = -1, warned;
	pid_t pid;

	assert_int_equal(fx->flusher, -1);
	pid = spawn_flusher(fx, extra);
	assert_true(pid > 0);
	if (!serving_or_exit(fx, pid, &st, &status))
		fail_msg("flusher (%s mode) exited with %d before serving%s:\n%s", fx->mode->name,
			 status, status == 127 ? " (set SHMWAL_BIN or O)" : "", fx_log(fx));
	fx->flusher = pid;
	if (st.persistence != fx->mode->want)
		fail_msg("flusher started with persistence %d, expected %d (%s mode)",
			 (int)st.persistence, (int)fx->mode->want, fx->mode->name);
	/* The warning is logged before the persistence is published (persist/flusher.c). */
	warned = th_file_contains(fx->log, NOT_PMEM_WARNING);
	if (warned != (fx->mode->want == SHMWAL_PERSIST_PMEM_MSYNC))
		fail_msg("%s mode: the \"%s\" warning was %slogged:\n%s", fx->mode->name,
			 NOT_PMEM_WARNING, warned ? "" : "not ", fx_log(fx));
}

/* Waits until the running flusher's log has a line with `needle` (lines written after it
 * published its persistence, such as "adopted the shared memory", may come a moment later). */
static void await_log(struct fx *fx, const char *needle)
{
	for (long i = 0; !th_file_contains(fx->log, needle); i++) {
		if (waitpid(fx->flusher, NULL, WNOHANG) == fx->flusher)
			fx->flusher = -1; /* reaped */
		if (i > TH_TIMEOUT_S * 500L || fx->flusher < 0)
			fail_msg("the flusher did not log \"%s\":\n%s", needle, fx_log(fx));
		pause_ms(2);
	}
}

/* SIGTERM: drains, syncs and exits 0. */
static void flusher_stop(struct fx *fx)
{
	pid_t pid = fx->flusher;

	fx->flusher = -1;
	assert_int_equal(th_flusher_stop(pid), 0);
	expect_in_file(fx, fx->log, "stopped cleanly");
}

static void flusher_kill(struct fx *fx)
{
	pid_t pid = fx->flusher;

	fx->flusher = -1;
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(th_wait(pid, TH_TIMEOUT_S), 128 + SIGKILL);
}

static void note_rc(void *arg, int rc) { __atomic_store_n((int64_t *)arg, rc, __ATOMIC_RELAXED); }

/*
 * shmwal_flusher_run() on the WAL in a forked child (th_flusher_spawn; it exits when idle if
 * it starts): returns what it returned. For refusals only: they come from recovery, before any
 * segment is mapped, so libpmem's mode does not matter.
 */
static int flusher_rc_in_child(struct fx *fx)
{
	int64_t *cell = (int64_t *)th_shared_counters(1);
	struct th_flusher_spec spec = { .opts.exit_when_idle = 1, .child_done = note_rc,
					.arg = cell, .alarm_s = 2 * TH_TIMEOUT_S };
	pid_t pid;
	int rc, status;

	assert_non_null(cell);
	*cell = 1;
	pid = th_flusher_spawn(fx->wal, &spec);
	assert_true(pid > 0);
	status = th_wait(pid, TH_TIMEOUT_S);
	rc = (int)__atomic_load_n(cell, __ATOMIC_RELAXED);
	munmap(cell, sizeof(*cell));
	assert_int_equal(status, rc == 0 ? 0 : rc == -EBUSY ? TH_FLUSHER_BUSY : TH_FLUSHER_ERROR);
	return rc;
}

/*
 * The flusher refuses to start on the WAL: `shmwal flusher` exits 1 with a line that says
 * "refusing to start" and names `name` and `why`; shmwal_flusher_run() returns -EBADMSG; and
 * nothing was moved.
 */
static void expect_refusal(struct fx *fx, const char *name, const char *why)
{
	struct shmwal_stat st;
	uint32_t nseg = seg_count(fx);
	int status = -1, nq = quarantined(fx, UINT64_MAX);
	pid_t pid = spawn_flusher(fx, NULL);

	assert_true(pid > 0);
	if (serving_or_exit(fx, pid, &st, &status)) {
		kill(pid, SIGKILL);
		th_wait(pid, TH_TIMEOUT_S);
		fail_msg("the flusher started on a damaged log (%s: %s)", name, why);
	}
	if (status != 1)
		fail_msg("refusing flusher: exit status %d, expected 1:\n%s", status, fx_log(fx));
	expect_in_file(fx, fx->log, "refusing to start");
	expect_in_file(fx, fx->log, name);
	expect_in_file(fx, fx->log, why);
	assert_int_equal(flusher_rc_in_child(fx), -EBADMSG);
	assert_int_equal(seg_count(fx), nseg);
	assert_int_equal(quarantined(fx, UINT64_MAX), nq);
}

/*
 * The flusher logged that it cleared what lay past the end of the log: a line "... cleared
 * <what> past the end of the log at offset O (LSN L) ..." with exactly this O and L, where
 * <what> ("offsets O..E", or "N bytes" from O) covers every non-zero byte that `before` (the
 * file before the start, `size` bytes) held from O on, and nothing past the file.
 */
static void expect_cleared(struct fx *fx, const uint8_t *before, uint64_t size, uint64_t off,
			   uint64_t lsn)
{
	char want[160], *log = (char *)fx_file(fx, BUF_LOG, fx->log, NULL), *at, *what;
	unsigned long long a = 0, b = 0;
	uint64_t last = off, covered = 0;

	assert_non_null(log);
	for (uint64_t i = off; i < size; i++)
		if (before[i])
			last = i + 1;
	assert_true(last > off); /* the test put something there */
	snprintf(want, sizeof(want), " past the end of the log at offset %" PRIu64 " (LSN %" PRIu64
		 ")", off, lsn);
	at = strstr(log, want);
	if (!at)
		fail_msg("the flusher's log has no \"cleared ...%s\":\n%s", want, log);
	*at = '\0';
	what = strrchr(log, '\n');
	what = strstr(what ? what : log, "cleared ");
	if (!what)
		fail_msg("the flusher's line \"...%s\" does not say \"cleared\"", want);
	what += strlen("cleared ");
	if (sscanf(what, "offsets %llu..%llu", &a, &b) == 2 && a == off)
		covered = b;
	else if (sscanf(what, "%llu bytes", &a) == 1)
		covered = off + a;
	else
		fail_msg("cannot read what the flusher cleared: \"%s\"", what);
	if (covered < last || covered > size)
		fail_msg("the flusher cleared up to offset %" PRIu64 "; non-zero bytes reached "
			 "%" PRIu64 " of %" PRIu64, covered, last, size);
}

/* The running flusher's state of partition p. */
static void stat_part(struct fx *fx, uint32_t p, struct shmwal_partition_stat *ps)
{
	struct shmwal_stat st;

	assert_int_equal(shmwal_stat(fx->wal, &st), 0);
	assert_true(st.flusher_running && st.shm_present);
	assert_int_equal(st.persistence, fx->mode->want);
	*ps = st.part[p];
}

/* ---- writing and checking the book ------------------------------------------------------ */

/*
 * Appends `count` stamped records of producer `prod` to partition 0 through the running
 * flusher (value length vlen, or from the fixture's seed if 0), waits until they are durable
 * and books them. Returns the index of the first.
 */
static uint32_t append_recs(struct fx *fx, uint32_t prod, uint32_t count, uint32_t vlen)
{
	static uint8_t val[1024];
	struct book *b = fx->b;
	uint32_t first = b->n;
	struct shmwal *w;
	uint64_t lsn = 0;
	char key[32];

	assert_true(prod < BOOK_PRODUCERS && b->n + count <= BOOK_MAX);
	assert_int_equal(th_open(fx->wal, &w), 0);
	for (uint32_t i = 0; i < count; i++) {
		struct entry *e = &b->e[b->n];

		e->prod = prod;
		e->seq = b->next_seq[prod]++;
		e->vlen = vlen ? vlen : TH_STAMP_MIN + (uint32_t)(th_rand(&fx->seed) % 280);
		e->klen = th_key(key, prod, 0, e->seq);
		th_fill(val, e->vlen, prod, 0, e->seq);
		assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, key, e->klen, val, e->vlen,
					       &e->lsn),
				 0);
		if (i)
			assert_int_equal(e->lsn, e_end(e - 1));
		e->live = 1;
		lsn = e->lsn;
		b->n++;
	}
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, NS_TIMEOUT), 0);
	shmwal_close(w);
	return first;
}

static uint64_t book_live(const struct book *b)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < b->n; i++)
		n += (uint64_t)b->e[i].live;
	return n;
}

/* The end of the log the book describes: after its last live entry. */
static uint64_t book_end(const struct book *b)
{
	for (uint32_t i = b->n; i-- > 0;)
		if (b->e[i].live)
			return e_end(&b->e[i]);
	return 0;
}

/* Partition 0 holds exactly the live entries of the book, in order, every byte, and nothing
 * after them (with or without a flusher). */
static void expect_log(struct fx *fx)
{
	const struct book *b = fx->b;
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct th_stamp st;
	uint32_t got = 0;
	char key[32];
	int rc;

	if (shmwal_reader_open(fx->wal, 0, SHMWAL_LSN_OLDEST, &r) < 0)
		fail_msg("reader_open: %s", shmwal_last_error());
	for (uint32_t i = 0; i < b->n; i++) {
		const struct entry *e = &b->e[i];

		if (!e->live)
			continue;
		rc = shmwal_reader_next(r, &rec, 0);
		if (rc < 0)
			fail_msg("record %u.%" PRIu64 " at LSN %" PRIu64 " missing (after %u): %s",
				 e->prod, e->seq, e->lsn, got, shmwal_last_error());
		th_key(key, e->prod, 0, e->seq);
		if (rec.lsn != e->lsn || th_check(rec.value, rec.value_len, &st) < 0 ||
		    st.producer != e->prod || st.thread != 0 || st.seq != e->seq ||
		    rec.value_len != e->vlen || rec.key_len != e->klen ||
		    memcmp(rec.key, key, e->klen) != 0)
			fail_msg("at LSN %" PRIu64 " (value %u bytes): expected record %u.%" PRIu64
				 " at LSN %" PRIu64,
				 rec.lsn, rec.value_len, e->prod, e->seq, e->lsn);
		got++;
	}
	rc = shmwal_reader_next(r, &rec, 0);
	if (rc == 0)
		fail_msg("a record nobody wrote at LSN %" PRIu64 " (value %u bytes), after the %u "
			 "of the book",
			 rec.lsn, rec.value_len, got);
	if (rc != -ETIMEDOUT)
		fail_msg("after the %u records of the book: %s", got, shmwal_last_error());
	shmwal_reader_close(r);
}

/* A WAL of one partition, 64 KiB segments, with `n` records of producer 0; the flusher stays
 * running. */
static void build(struct fx *fx, uint32_t n)
{
	assert_int_equal(th_create_backend(fx->wal, 1, 64 << 10, 64 << 10, 1024,
					   SHMWAL_SYNC_ALWAYS, SHMWAL_BACKEND_PMEM),
			 0);
	flusher_start(fx, NULL);
	append_recs(fx, 0, n, 0);
}

/* ---- 1. end to end ---------------------------------------------------------------------- */

#define E2E_PROD 3u
#define E2E_THR 2u
#define E2E_REC 1000u /* per thread; seq % 2 picks the partition */
#define E2E_LATE 400u /* records of producer 3 while truncation runs */
#define MAX_STREAMS 8u

/* A reader checking stamped records as it goes: a stream's records come in order, `step`
 * apart (the workload's partition count), each whole. */
struct follow {
	struct shmwal_reader *r;
	uint32_t step, nthr;
	uint64_t want, seen, errors;
	uint64_t next[MAX_STREAMS];
	uint64_t pos;	/* the position after the last record (atomic: the truncating thread) */
	int done;	/* atomic */
	char err[256];
};

static int follow_one(struct follow *f, uint64_t timeout_ns)
{
	struct shmwal_record rec;
	struct th_stamp st;
	char key[32];
	uint32_t s;
	int rc = shmwal_reader_next(f->r, &rec, timeout_ns);

	if (rc < 0) {
		snprintf(f->err, sizeof(f->err), "reader_next: %s", shmwal_last_error());
		f->errors++;
		return rc;
	}
	if (th_check(rec.value, rec.value_len, &st) < 0 || st.thread >= f->nthr ||
	    st.producer * f->nthr + st.thread >= MAX_STREAMS ||
	    rec.key_len != th_key(key, st.producer, st.thread, st.seq) ||
	    memcmp(rec.key, key, rec.key_len) != 0) {
		snprintf(f->err, sizeof(f->err), "LSN %" PRIu64 ": damaged or foreign record",
			 rec.lsn);
		f->errors++;
		return -1;
	}
	s = st.producer * f->nthr + st.thread;
	if (st.seq != f->next[s]) {
		snprintf(f->err, sizeof(f->err), "LSN %" PRIu64 ": stream %u.%u seq %" PRIu64
			 ", expected %" PRIu64,
			 rec.lsn, st.producer, st.thread, st.seq, f->next[s]);
		f->errors++;
		return -1;
	}
	f->next[s] = st.seq + f->step;
	f->seen++;
	__atomic_store_n(&f->pos, rec.next_lsn, __ATOMIC_RELEASE);
	return 0;
}

static void *follower(void *arg)
{
	struct follow *f = arg;

	while (f->seen < f->want && follow_one(f, NS_TIMEOUT) == 0)
		;
	__atomic_store_n(&f->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void follow_init(struct follow *f, uint32_t part, uint32_t step, uint64_t want)
{
	memset(f, 0, sizeof(*f));
	f->step = step;
	f->nthr = E2E_THR;
	f->want = want;
	for (uint32_t s = 0; s < MAX_STREAMS; s++)
		f->next[s] = part;
}

static void end_to_end(struct fx *fx)
{
	struct th_producer p = { .dir = fx->wal, .threads = E2E_THR, .records = E2E_REC,
				 .min_value = TH_STAMP_MIN, .max_value = 1000, .partitions = 2,
				 .seed = 17 };
	const uint64_t per_part = E2E_PROD * E2E_THR * E2E_REC / 2;
	uint64_t expected[E2E_PROD * E2E_THR], pos, last;
	struct follow f[2], g, h;
	struct th_log_report rep;
	struct shmwal_stat st;
	struct shmwal_reader *r2;
	struct shmwal_record rec;
	pthread_t tid[2];
	int removed, removed_live = 0, rc;
	uint32_t nseg, i;

	assert_int_equal(th_create_backend(fx->wal, 2, 64 << 10, 64 << 10, 1024,
					   SHMWAL_SYNC_ALWAYS, SHMWAL_BACKEND_PMEM),
			 0);
	flusher_start(fx, NULL);

	/* Producer processes, and a live reader per partition following them. */
	th_spawn_producers(&p, E2E_PROD, fx->kids);
	for (i = 0; i < 2; i++) {
		follow_init(&f[i], i, 2, per_part);
		if (shmwal_reader_open(fx->wal, i, SHMWAL_LSN_OLDEST, &f[i].r) < 0)
			fail_msg("reader_open p%u: %s", i, shmwal_last_error());
		assert_int_equal(pthread_create(&tid[i], NULL, follower, &f[i]), 0);
	}
	for (i = 0; i < E2E_PROD; i++) {
		assert_int_equal(th_wait(fx->kids[i], TH_TIMEOUT_S), 0);
		fx->kids[i] = -1;
	}
	for (i = 0; i < 2; i++) {
		pthread_join(tid[i], NULL);
		shmwal_reader_close(f[i].r);
		if (f[i].errors)
			fail_msg("live reader of p%u: %s", i, f[i].err);
		assert_int_equal(f[i].seen, per_part);
	}

	/* Every batch was made persistent the mode's way, segments rotated many times, and
	 * every segment file has the fixed size. */
	assert_int_equal(shmwal_stat(fx->wal, &st), 0);
	assert_int_equal(st.persistence, fx->mode->want);
	for (i = 0; i < 2; i++) {
		assert_int_equal(st.part[i].records, per_part);
		assert_int_equal(st.part[i].durable, st.part[i].tail);
		assert_true(st.part[i].syncs > 0);
	}
	assert_true(seg_count(fx) >= 10);
	expect_fixed_sizes(fx, 2);

	for (i = 0; i < E2E_PROD * E2E_THR; i++)
		expected[i] = E2E_REC;
	if (th_check_log(fx->wal, E2E_PROD, E2E_THR, expected, NULL, NULL, &rep))
		fail_msg("log check: %s", rep.first_error);
	assert_int_equal(rep.records, 2 * per_part);
	expect_verify_ok(fx, 2 * per_part, 2);
	expect_status(fx, run_cmd(fx, "dump", fx->wal, NULL), 0, "dump");
	assert_int_equal(count_lines_with(fx->out, "p0 lsn="), per_part);
	assert_int_equal(count_lines_with(fx->out, "p1 lsn="), per_part);
	expect_text(fx->out, "p0 lsn=0 type=", "dump");

	/* Truncation under a reader: half of partition 0 read, everything below removed; the
	 * reader goes on through the end. */
	follow_init(&g, 0, 2, per_part);
	assert_int_equal(shmwal_reader_open(fx->wal, 0, SHMWAL_LSN_OLDEST, &g.r), 0);
	while (g.seen < per_part / 2)
		if (follow_one(&g, 0) < 0)
			fail_msg("%s", g.err);
	pos = shmwal_reader_position(g.r);
	nseg = seg_count(fx);
	removed = shmwal_truncate_before(fx->wal, 0, pos);
	assert_true(removed >= 1);
	assert_int_equal(seg_count(fx), nseg - (uint32_t)removed);
	while (g.seen < per_part)
		if (follow_one(&g, 0) < 0)
			fail_msg("%s", g.err);
	assert_int_equal(shmwal_reader_next(g.r, &rec, 0), -ETIMEDOUT);

	/* ... then follows new records live while its segments are truncated behind it. */
	{
		struct th_producer q = { .dir = fx->wal, .producer = 3, .threads = 1,
					 .records = E2E_LATE, .min_value = TH_STAMP_MIN,
					 .max_value = 1000, .partitions = 1, .seed = 18 };

		follow_init(&h, 0, 1, E2E_LATE);
		h.r = g.r;
		h.next[3 * E2E_THR] = 0;
		fx->kids[0] = th_spawn_producer(&q);
		assert_true(fx->kids[0] > 0);
		assert_int_equal(pthread_create(&tid[0], NULL, follower, &h), 0);
		last = pos;
		while (!__atomic_load_n(&h.done, __ATOMIC_ACQUIRE)) {
			uint64_t at = __atomic_load_n(&h.pos, __ATOMIC_ACQUIRE);

			if (at > last) {
				int n = shmwal_truncate_before(fx->wal, 0, at);

				assert_true(n >= 0);
				removed_live += n;
				last = at;
			}
			pause_ms(1);
		}
		pthread_join(tid[0], NULL);
		assert_int_equal(th_wait(fx->kids[0], TH_TIMEOUT_S), 0);
		fx->kids[0] = -1;
		if (h.errors)
			fail_msg("reader following through truncation: %s", h.err);
		assert_int_equal(h.seen, E2E_LATE);
	}
	shmwal_reader_close(g.r);
	print_message("%s: %u segments removed under a reader, %d more while it followed\n",
		      fx->mode->name, (unsigned)removed, removed_live);

	/* The last segment always stays; older positions are gone. */
	assert_true(shmwal_truncate_before(fx->wal, 0, UINT64_MAX) >= 0);
	assert_int_equal(seg_count(fx), 1);
	assert_int_equal(shmwal_reader_open(fx->wal, 0, SHMWAL_LSN_OLDEST, &r2), 0);
	assert_int_equal(shmwal_reader_position(r2), last_seg(fx));
	assert_true(last_seg(fx) >= pos);
	rc = shmwal_reader_next(r2, &rec, 0); /* the segment may be new, without records yet */
	assert_true(rc == -ETIMEDOUT || (rc == 0 && rec.lsn >= pos));
	shmwal_reader_close(r2);
	assert_int_equal(shmwal_reader_open(fx->wal, 0, 8, &r2), -ERANGE);
	flusher_stop(fx);
	verify_status(fx, 0, "verify after truncation");
	expect_text(fx->out, ": ok", "verify after truncation");
}

/* ---- 2. the flusher killed mid-stream --------------------------------------------------- */

#define KILL_REC 600u
#define KILLS 4u

static int acked_required(void *ctx, uint32_t prod, uint32_t thr, uint64_t seq)
{
	const uint64_t *acked = ctx;

	return seq < __atomic_load_n(&acked[prod * E2E_THR + thr], __ATOMIC_ACQUIRE);
}

static uint64_t acked_sum(const uint64_t *acked, uint32_t n)
{
	uint64_t s = 0;

	for (uint32_t i = 0; i < n; i++)
		s += __atomic_load_n(&acked[i], __ATOMIC_ACQUIRE);
	return s;
}

static void flusher_killed(struct fx *fx)
{
	enum { NPROD = 3, NSTREAMS = NPROD * E2E_THR };
	uint64_t *acked = th_shared_counters(NSTREAMS), expected[NSTREAMS];
	const uint64_t total = (uint64_t)NSTREAMS * KILL_REC;
	struct th_producer p = { .dir = fx->wal, .threads = E2E_THR, .records = KILL_REC,
				 .min_value = TH_STAMP_MIN, .max_value = 1000, .partitions = 2,
				 .wait_each = 1, .seed = 23 };
	struct th_log_report rep;
	uint32_t k, i, rewrites = 0;

	assert_non_null(acked);
	/* sync interval: a kill often finds frames copied but not yet drained, which the next
	 * flusher clears and copies again from the ring */
	assert_int_equal(th_create_backend(fx->wal, 2, 64 << 10, 128 << 10, 1024,
					   SHMWAL_SYNC_INTERVAL, SHMWAL_BACKEND_PMEM),
			 0);
	flusher_start(fx, NULL);
	p.acked = acked;
	th_spawn_producers(&p, NPROD, fx->kids);
	/* Kill k at a k/(KILLS+1) share of the records acknowledged: always mid-stream (no
	 * record is acknowledged while no flusher runs, and there are more to come). */
	for (k = 1; k <= KILLS; k++) {
		uint64_t goal = total * k / (KILLS + 1);

		for (long t = 0; acked_sum(acked, NSTREAMS) < goal; t++) {
			if (t > TH_TIMEOUT_S * 1000L)
				fail_msg("only %" PRIu64 " of %" PRIu64 " records acknowledged",
					 acked_sum(acked, NSTREAMS), goal);
			pause_ms(1);
		}
		/* (records acknowledged since it started: its start-up is logged in full) */
		rewrites += k > 1 && th_file_contains(fx->log, "again from the ring");
		flusher_kill(fx);
		flusher_start(fx, NULL);
		await_log(fx, "adopted the shared memory");
	}
	for (i = 0; i < NPROD; i++) {
		assert_int_equal(th_wait(fx->kids[i], TH_TIMEOUT_S), 0);
		fx->kids[i] = -1;
	}
	rewrites += th_file_contains(fx->log, "again from the ring");
	flusher_stop(fx);
	assert_int_equal(acked_sum(acked, NSTREAMS), total);
	for (i = 0; i < NSTREAMS; i++)
		expected[i] = KILL_REC;
	if (th_check_log(fx->wal, NPROD, E2E_THR, expected, acked_required, acked, &rep))
		fail_msg("after %u flusher kills: %s", KILLS, rep.first_error);
	assert_int_equal(rep.records, total);
	expect_fixed_sizes(fx, 2);
	expect_verify_ok(fx, total, 2);
	print_message("%s: %u kills, %u restarts wrote frames again from the ring\n",
		      fx->mode->name, KILLS, rewrites);
	munmap(acked, NSTREAMS * sizeof(*acked));
}

/* ---- 3. recovery from edited files ------------------------------------------------------ */

/* a. Non-zero bytes past the last frame of the last segment: cleared to zeros, logged. */
static void garbage_past_end(struct fx *fx)
{
	static const uint8_t junk[24] = { 0xa5, 0xa5, 0x02, 0x00, 0x11, 0x22, 0x33, 0x44 };
	const uint8_t ff[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	uint64_t size, end, first, off;
	struct shmwal_partition_stat ps;
	uint8_t *before, *after;
	char path[4400];
	size_t len;

	build(fx, 600);
	flusher_stop(fx);
	end = book_end(fx->b);
	first = last_seg(fx);
	seg_path(fx, first, path, sizeof(path));
	size = fixed_size(fx);
	assert_int_equal(file_size(path), (int64_t)size);
	off = SHMWAL_SEG_HDR + end - first;
	assert_true(off + 200 < size);
	put_bytes(path, off, junk, sizeof(junk));		 /* right at the end */
	put_bytes(path, off + (size - off) / 2, junk, sizeof(junk)); /* half-way */
	put_bytes(path, size - sizeof(ff), ff, sizeof(ff));	 /* the last word */
	before = fx_file(fx, BUF_A, path, &len);
	assert_int_equal(len, size);

	/* Offline: verify calls it a torn tail (no damage), readers stop at the end. */
	verify_status(fx, 0, "verify with garbage");
	expect_text(fx->out, "TORN-TAIL", "verify with garbage");
	expect_log(fx);

	flusher_start(fx, NULL);
	expect_cleared(fx, before, size, off, end);
	stat_part(fx, 0, &ps);
	assert_int_equal(ps.durable, end);
	after = fx_file(fx, BUF_B, path, &len);
	assert_int_equal(len, size);
	assert_memory_equal(after, before, off);
	if (!all_zero(after, off, size))
		fail_msg("bytes past the end of the log (offset %" PRIu64 ") are not zero", off);

	append_recs(fx, 1, 50, 0);
	assert_int_equal(fx->b->e[fx->b->n - 50].lsn, end);
	flusher_stop(fx);
	expect_log(fx);
	expect_verify_ok(fx, book_live(fx->b), 1);
}

/*
 * b. The resurrection case. In the last segment, frame A at LSN X is torn (bad CRC) while the
 * next frame B at X + len(A) is intact. The log ends at X. A new record C of exactly A's length
 * ends where B starts: without the clearing at start, B would read as the record after C.
 */
static void resurrection(struct fx *fx)
{
	struct book *b = fx->b;
	uint64_t size, first, x, bpos, offa, offb, max_frame;
	struct shmwal_partition_stat ps;
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal_config cfg;
	struct th_stamp st;
	uint32_t ia, ib, ic, klen_c, vlen_c;
	uint8_t *before, *now;
	char path[4400], key[32], want[96];
	size_t len;

	build(fx, 400);
	ia = append_recs(fx, 0, 1, 200);
	ib = append_recs(fx, 0, 1, 300);
	flusher_stop(fx);
	x = b->e[ia].lsn;
	bpos = b->e[ib].lsn;
	assert_int_equal(bpos, x + SHMWAL_ALIGN_UP(e_len(&b->e[ia])));
	first = last_seg(fx);
	assert_true(x >= first); /* A and B are in the last segment */
	seg_path(fx, first, path, sizeof(path));
	size = fixed_size(fx);
	assert_int_equal(shmwal_config_load(fx->wal, &cfg), 0);
	max_frame = SHMWAL_ALIGN_UP(SHMWAL_FRAME_HDR + (uint64_t)cfg.max_key + cfg.max_value);
	offa = SHMWAL_SEG_HDR + x - first;
	offb = SHMWAL_SEG_HDR + bpos - first;

	/* Tear A: one byte of its value. */
	before = fx_file(fx, BUF_A, path, &len);
	assert_int_equal(len, size);
	before[offa + SHMWAL_FRAME_HDR + b->e[ia].klen + 50] ^= 0x40;
	put_bytes(path, offa + SHMWAL_FRAME_HDR + b->e[ia].klen + 50,
		  &before[offa + SHMWAL_FRAME_HDR + b->e[ia].klen + 50], 1);
	/* The scenario is real: A fails its checksum, B right after it is a valid record. */
	assert_int_equal(shmwal_frame_check(before + offa, size - offa, x, max_frame),
			 SHMWAL_FRAME_BAD_CRC);
	assert_int_equal(shmwal_frame_check(before + offb, size - offb, bpos, max_frame),
			 SHMWAL_FRAME_OK);
	assert_int_equal(th_check(before + offb + SHMWAL_FRAME_HDR + b->e[ib].klen, b->e[ib].vlen,
				  &st),
			 0);
	assert_true(st.producer == 0 && st.seq == b->e[ib].seq);
	b->e[ia].live = b->e[ib].live = 0;

	snprintf(want, sizeof(want), "offset %" PRIu64 " (LSN %" PRIu64 ")", offa, x);
	verify_status(fx, 0, "verify with a torn frame");
	expect_text(fx->out, "TORN-TAIL", "verify with a torn frame");
	expect_text(fx->out, want, "verify with a torn frame");
	expect_log(fx); /* offline readers stop at A */

	flusher_start(fx, NULL);
	expect_cleared(fx, before, size, offa, x);
	stat_part(fx, 0, &ps);
	assert_int_equal(ps.durable, x);

	/* C: producer 9, as long as A, so that it ends where B started. */
	klen_c = th_key(key, 9, 0, 0);
	vlen_c = e_len(&b->e[ia]) - SHMWAL_FRAME_HDR - klen_c;
	ic = append_recs(fx, 9, 1, vlen_c);
	assert_int_equal(b->e[ic].lsn, x);
	assert_int_equal(e_end(&b->e[ic]), bpos);
	now = fx_file(fx, BUF_B, path, &len);
	assert_int_equal(len, size);
	assert_int_equal(shmwal_frame_check(now + offa, size - offa, x, max_frame),
			 SHMWAL_FRAME_OK);
	assert_int_equal(shmwal_frame_check(now + offb, size - offb, bpos, max_frame),
			 SHMWAL_FRAME_ZERO);
	if (!all_zero(now, offb, size))
		fail_msg("bytes of B (offset %" PRIu64 ") survived the recovery", offb);
	flusher_stop(fx);

	/* Offline: C is the last record, B is not there. */
	expect_log(fx);
	assert_int_equal(shmwal_reader_open(fx->wal, 0, x, &r), 0);
	assert_int_equal(shmwal_reader_next(r, &rec, 0), 0);
	assert_int_equal(rec.lsn, x);
	assert_int_equal(rec.next_lsn, bpos);
	assert_int_equal(th_check(rec.value, rec.value_len, &st), 0);
	assert_int_equal(st.producer, 9);
	assert_int_equal(shmwal_reader_next(r, &rec, 0), -ETIMEDOUT);
	shmwal_reader_close(r);
	expect_status(fx, run_cmd(fx, "dump", fx->wal, NULL), 0, "dump");
	assert_int_equal(count_lines_with(fx->out, "p0 lsn="), book_live(b));
	snprintf(want, sizeof(want), "p0 lsn=%" PRIu64 " ", x);
	expect_text(fx->out, want, "dump");
	snprintf(want, sizeof(want), "p0 lsn=%" PRIu64 " ", bpos);
	expect_no_text(fx->out, want, "dump");
	expect_verify_ok(fx, book_live(b), 1);

	/* A restart finds nothing to clear, and readers with a flusher agree. */
	flusher_start(fx, NULL);
	expect_no_text(fx_log(fx), "cleared", "the restarted flusher's log");
	stat_part(fx, 0, &ps);
	assert_int_equal(ps.durable, bpos);
	expect_log(fx);
	flusher_stop(fx);
}

/*
 * c. A recycled segment: the last segment's body holds an older lap's frames (those of the
 * first segment, under a fresh valid header for a later first LSN). None of them is ever
 * returned; the log ends at the segment's start and goes on from there.
 */
static void recycled(struct fx *fx)
{
	struct shmwal_segment_header h;
	struct shmwal_partition_stat ps;
	struct shmwal_config cfg;
	struct th_log_report rep;
	uint64_t size, end, firsts[MAX_SEGS], max_frame, expected[2];
	uint8_t *old, *now;
	char path0[4400], path[4400];
	uint32_t n, inew;
	size_t len;
	int fd;

	build(fx, 900);
	flusher_stop(fx);
	n = seg_list(fx->pdir, firsts);
	assert_true(n >= 2);
	end = book_end(fx->b);
	size = fixed_size(fx);
	assert_int_equal(shmwal_config_load(fx->wal, &cfg), 0);
	max_frame = SHMWAL_ALIGN_UP(SHMWAL_FRAME_HDR + (uint64_t)cfg.max_key + cfg.max_value);
	seg_path(fx, firsts[0], path0, sizeof(path0));
	old = fx_file(fx, BUF_A, path0, &len);
	assert_int_equal(len, size);
	/* the new segment at `end`: a valid header of this WAL, the first segment's body */
	memcpy(&h, old, sizeof(h));
	shmwal_segment_header_init(&h, 0, end, h.instance, h.created_ns + 1);
	memcpy(old, &h, sizeof(h));
	seg_path(fx, end, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, old, size), (ssize_t)size);
	assert_int_equal(close(fd), 0);
	/* They are real frames, of LSN 0 on: not of this position. */
	assert_int_equal(shmwal_frame_check(old + SHMWAL_SEG_HDR, size - SHMWAL_SEG_HDR, 0,
					    max_frame),
			 SHMWAL_FRAME_OK);
	assert_int_equal(shmwal_frame_check(old + SHMWAL_SEG_HDR, size - SHMWAL_SEG_HDR, end,
					    max_frame),
			 SHMWAL_FRAME_BAD_LSN);

	verify_status(fx, 0, "verify with a recycled segment");
	expect_text(fx->out, "TORN-TAIL", "verify with a recycled segment");
	expect_log(fx);

	flusher_start(fx, NULL);
	expect_cleared(fx, old, size, SHMWAL_SEG_HDR, end);
	stat_part(fx, 0, &ps);
	assert_int_equal(ps.durable, end);
	now = fx_file(fx, BUF_B, path, &len);
	assert_int_equal(len, size);
	assert_memory_equal(now, old, SHMWAL_SEG_HDR);
	assert_true(all_zero(now, SHMWAL_SEG_HDR, size));

	/* the log goes on in the recycled file (seg_first is published by the time a record
	 * is durable) */
	inew = append_recs(fx, 1, 100, 0);
	assert_int_equal(fx->b->e[inew].lsn, end);
	stat_part(fx, 0, &ps);
	assert_int_equal(ps.seg_first, end);
	flusher_stop(fx);
	expect_log(fx);
	expected[0] = 900;
	expected[1] = 100;
	if (th_check_log(fx->wal, 2, 1, expected, NULL, NULL, &rep))
		fail_msg("log check: %s", rep.first_error);
	assert_int_equal(rep.records, 1000);
	expect_fixed_sizes(fx, 1);
	expect_verify_ok(fx, 1000, 1);
}

/* d. A last segment with a valid header but shorter than the fixed size: extended. */
static void short_last(struct fx *fx)
{
	struct book *b = fx->b;
	struct shmwal_partition_stat ps;
	uint64_t size, end, first, lsn;
	uint8_t *before;
	char path[4400];
	uint32_t inew;
	size_t len;

	build(fx, 500);
	flusher_stop(fx);
	size = fixed_size(fx);

	/* Cut right after the last frame. */
	end = book_end(b);
	first = last_seg(fx);
	seg_path(fx, first, path, sizeof(path));
	assert_int_equal(truncate(path, (off_t)(SHMWAL_SEG_HDR + end - first)), 0);
	assert_true((uint64_t)file_size(path) < size);
	verify_status(fx, 0, "verify of a short segment");
	expect_log(fx);
	flusher_start(fx, NULL);
	assert_int_equal(file_size(path), (int64_t)size);
	stat_part(fx, 0, &ps);
	assert_int_equal(ps.durable, end);
	inew = append_recs(fx, 1, 50, 0);
	assert_int_equal(b->e[inew].lsn, end);
	flusher_stop(fx);
	expect_log(fx);
	expect_verify_ok(fx, book_live(b), 1);

	/* Cut inside the last frame: that record goes, its LSN is used again. */
	first = last_seg(fx);
	seg_path(fx, first, path, sizeof(path));
	lsn = b->e[b->n - 1].lsn;
	assert_true(lsn > first);
	assert_int_equal(truncate(path, (off_t)(SHMWAL_SEG_HDR + lsn - first + 20)), 0);
	b->e[b->n - 1].live = 0;
	before = fx_file(fx, BUF_A, path, &len);
	assert_int_equal(len, SHMWAL_SEG_HDR + lsn - first + 20);
	before = fx->buf[BUF_A] = realloc(before, size); /* as extended: zeros past the cut */
	assert_non_null(before);
	memset(before + len, 0, size - len);
	verify_status(fx, 0, "verify of a torn short segment");
	expect_text(fx->out, "TORN-TAIL", "verify of a torn short segment");
	expect_log(fx);
	flusher_start(fx, NULL);
	assert_int_equal(file_size(path), (int64_t)size);
	expect_cleared(fx, before, size, SHMWAL_SEG_HDR + lsn - first, lsn);
	stat_part(fx, 0, &ps);
	assert_int_equal(ps.durable, lsn);
	inew = append_recs(fx, 2, 20, 0);
	assert_int_equal(b->e[inew].lsn, lsn);
	flusher_stop(fx);
	expect_log(fx);
	expect_fixed_sizes(fx, 1);
	expect_verify_ok(fx, book_live(b), 1);
}

/*
 * d'. A last segment longer than the fixed size (zeros past it). The flusher may refuse it, or
 * take it; what it takes and writes to must start again: a log the flusher wrote is one it
 * accepts. FAILS as of 639e33a: recovery takes the long last segment as it is (it only
 * extends short ones), the flusher fills and seals it, and the next start refuses the log
 * ("segment does not have the pmem backend's fixed size"); --repair would then move that
 * segment and every later one aside. `shmwal verify` calls the log ok all along. Reported,
 * not fixed here.
 */
static void long_last(struct fx *fx)
{
	struct shmwal_stat st;
	uint64_t size, first;
	char path[4400];
	int status = -1;
	pid_t pid;

	build(fx, 100);
	flusher_stop(fx);
	size = fixed_size(fx);
	first = last_seg(fx);
	seg_path(fx, first, path, sizeof(path));
	assert_int_equal(truncate(path, (off_t)(size + 4096)), 0);
	expect_log(fx);

	pid = spawn_flusher(fx, NULL);
	assert_true(pid > 0);
	if (!serving_or_exit(fx, pid, &st, &status)) {
		/* Refused: then verify must not call it ok. */
		assert_int_equal(status, 1);
		expect_in_file(fx, fx->log, "refusing to start");
		verify_status(fx, 1, "verify of a long segment");
		return;
	}
	fx->flusher = pid;
	assert_int_equal(st.persistence, fx->mode->want);
	/* Taken: write on until it is sealed, and start again. */
	append_recs(fx, 1, 800, 0);
	assert_true(last_seg(fx) > first);
	flusher_stop(fx);
	flusher_start(fx, NULL);
	expect_log(fx);
	flusher_stop(fx);
	expect_verify_ok(fx, book_live(fx->b), 1);
}

/* e. A last segment with a torn header: an interrupted creation (all-zero body) is moved to
 * DIR/quarantine; over frames it is damage: refused, and moved aside with --repair. */
static void torn_header(struct fx *fx)
{
	struct book *b = fx->b;
	struct shmwal_segment_header h;
	struct shmwal_partition_stat ps;
	uint64_t size, end, first;
	uint8_t *body, flip;
	char path[4400], name[24];
	uint32_t inew;
	size_t len;
	int fd;

	build(fx, 400);
	flusher_stop(fx);
	size = fixed_size(fx);
	end = book_end(b);
	first = last_seg(fx);

	/* All-zero body, a header torn after 16 bytes. */
	seg_path(fx, first, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	close(fd);
	shmwal_segment_header_init(&h, 0, end, h.instance, h.created_ns + 1);
	free(fx->buf[BUF_A]);
	body = fx->buf[BUF_A] = calloc(1, size);
	assert_non_null(body);
	memcpy(body, &h, 16);
	seg_path(fx, end, path, sizeof(path));
	shmwal_segment_name(name, end);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, body, size), (ssize_t)size);
	assert_int_equal(close(fd), 0);
	verify_status(fx, 0, "verify of a torn header");
	expect_text(fx->out, "TORN-TAIL", "verify of a torn header");
	expect_text(fx->out, name, "verify of a torn header");
	expect_log(fx);
	flusher_start(fx, NULL);
	expect_in_file(fx, fx->log, "quarantine");
	expect_in_file(fx, fx->log, name);
	assert_int_equal(file_size(path), -1);
	assert_int_equal(quarantined(fx, end), 1);
	stat_part(fx, 0, &ps);
	assert_int_equal(ps.durable, end);
	inew = append_recs(fx, 1, 30, 0);
	assert_int_equal(b->e[inew].lsn, end);
	stat_part(fx, 0, &ps);
	assert_int_equal(ps.seg_first, first); /* the segment before it is the last again */
	flusher_stop(fx);
	expect_log(fx);
	expect_verify_ok(fx, book_live(b), 1);

	/* The last segment, frames and all, with a damaged header. */
	first = last_seg(fx);
	seg_path(fx, first, path, sizeof(path));
	shmwal_segment_name(name, first);
	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &flip, 1, 33), 1);
	flip ^= 0x10; /* in created_ns: the header checksum fails */
	assert_int_equal(pwrite(fd, &flip, 1, 33), 1);
	close(fd);
	verify_status(fx, 1, "verify of a damaged header");
	expect_text(fx->out, "DAMAGE", "verify of a damaged header");
	expect_text(fx->out, name, "verify of a damaged header");
	expect_refusal(fx, name, "with frames after it");
	assert_int_equal(file_size(path), (int64_t)size);

	flusher_start(fx, "--repair");
	expect_in_file(fx, fx->log, "moved");
	expect_in_file(fx, fx->log, name);
	assert_int_equal(quarantined(fx, first), 1);
	/* The segment before it is full: the flusher may already have made the next one, under
	 * the same name: a new file, whose body holds nothing yet. */
	body = fx_file(fx, BUF_A, path, &len);
	if (body && len > SHMWAL_SEG_HDR && !all_zero(body, SHMWAL_SEG_HDR, len))
		fail_msg("%s holds data after the repair moved it aside", path);
	for (uint32_t i = 0; i < b->n; i++)
		if (b->e[i].lsn >= first)
			b->e[i].live = 0;
	stat_part(fx, 0, &ps);
	assert_int_equal(ps.durable, first);
	assert_int_equal(book_end(b), first);
	inew = append_recs(fx, 2, 30, 0);
	assert_int_equal(b->e[inew].lsn, first);
	flusher_stop(fx);
	expect_log(fx);
	expect_verify_ok(fx, book_live(b), 1);
}

/* A WAL with at least 4 segments; S1 (the second) is the one damaged. */
struct sealed {
	uint64_t firsts[MAX_SEGS], size, range;
	char p1[4400], p2[4400], name1[24];
	uint32_t n;
};

static void sealed_build(struct fx *fx, struct sealed *s)
{
	build(fx, 1300);
	flusher_stop(fx);
	s->n = seg_list(fx->pdir, s->firsts);
	assert_true(s->n >= 4);
	s->size = fixed_size(fx);
	seg_path(fx, s->firsts[1], s->p1, sizeof(s->p1));
	seg_path(fx, s->firsts[2], s->p2, sizeof(s->p2));
	shmwal_segment_name(s->name1, s->firsts[1]);
	s->range = SHMWAL_SEG_HDR + s->firsts[2] - s->firsts[1]; /* S1's header and frames */
	assert_true(s->range + 8 <= s->size);
	expect_verify_ok(fx, 1300, 1);
}

static void expect_verify_damage(struct fx *fx, const char *name, const char *what)
{
	verify_status(fx, 1, what);
	expect_text(fx->out, "DAMAGE", what);
	expect_text(fx->out, name, what);
}

/*
 * f. Damaged sealed segments: each refused at start (naming the segment) and reported by
 * `shmwal verify` as DAMAGE. Each damage is undone before the next; at the end a flusher
 * starts on the repaired files and every record is there (the refusals were the damage's).
 */
static void sealed_damage(struct fx *fx)
{
	const uint8_t word[8] = { 1 }, zero[8] = { 0 };
	struct sealed s;
	char aside[4400];

	sealed_build(fx, &s);

	/* Wrong sizes: longer, and shorter though still holding every frame of its range.
	 * (What verify says of them: sealed_wrong_size_verify.) */
	assert_int_equal(truncate(s.p1, (off_t)(s.size + 4096)), 0);
	expect_refusal(fx, s.name1, "fixed size");
	assert_int_equal(truncate(s.p1, (off_t)s.range), 0);
	expect_refusal(fx, s.name1, "fixed size");
	assert_int_equal(truncate(s.p1, (off_t)s.size), 0); /* past its range were zeros */
	expect_verify_ok(fx, 1300, 1);

	/* A missing middle segment: S1's range then runs to S3. */
	snprintf(aside, sizeof(aside), "%s/aside.seg", fx->tmp);
	assert_int_equal(rename(s.p2, aside), 0);
	expect_refusal(fx, s.name1, "a segment missing after it?");
	expect_verify_damage(fx, s.name1, "verify: a segment missing");
	expect_text(fx->out, "records missing", "verify: a segment missing");
	assert_int_equal(rename(aside, s.p2), 0);

	/* Non-zero data right after S1's range. */
	put_bytes(s.p1, s.range, word, sizeof(word));
	expect_refusal(fx, s.name1, "data right after the LSN range");
	expect_verify_damage(fx, s.name1, "verify: data past the range");
	put_bytes(s.p1, s.range, zero, sizeof(zero));

	/* Control: undamaged again, the log is whole. */
	expect_verify_ok(fx, 1300, 1);
	flusher_start(fx, NULL);
	expect_log(fx);
	append_recs(fx, 1, 10, 0);
	flusher_stop(fx);
	expect_log(fx);
	expect_fixed_sizes(fx, 1);
}

/*
 * f'. `shmwal verify` on a sealed segment of the wrong size, which the flusher refuses
 * (sealed_damage): it must report DAMAGE too, as the refusal tells the operator to run it.
 * FAILS as of 639e33a: verify reads a sealed pmem segment's frames up to its range and checks
 * zeros after them, but never its size, and prints "ok" (exit 0). Reported, not fixed here.
 */
static void sealed_wrong_size_verify(struct fx *fx)
{
	struct sealed s;

	sealed_build(fx, &s);
	assert_int_equal(truncate(s.p1, (off_t)(s.size + 4096)), 0);
	expect_verify_damage(fx, s.name1, "verify: a sealed segment longer than the fixed size");
	assert_int_equal(truncate(s.p1, (off_t)s.range), 0);
	expect_verify_damage(fx, s.name1, "verify: a sealed segment shorter than the fixed size");
}

/* ---- 4. the command line ---------------------------------------------------------------- */

static void cli(struct fx *fx)
{
	struct shmwal_config c;
	uint64_t firsts[MAX_SEGS];
	char meta[4400], wal2[4400], line[96];
	char path[4400];

	expect_status(fx, run_cmd(fx, "create", fx->wal, "--backend", "pmem", "--segment-bytes",
				  "64K", "--max-value", "1K", NULL),
		      0, "create --backend pmem");
	snprintf(meta, sizeof(meta), "%s/meta", fx->wal);
	expect_in_file(fx, meta, "\nbackend pmem\n");
	assert_int_equal(shmwal_config_load(fx->wal, &c), 0);
	assert_int_equal(c.backend, SHMWAL_BACKEND_PMEM);
	assert_int_equal(c.segment_bytes, 64 << 10);
	/* idempotent; another backend is another configuration */
	expect_status(fx, run_cmd(fx, "create", fx->wal, "--backend", "pmem", "--segment-bytes",
				  "64K", "--max-value", "1K", NULL),
		      0, "create --backend pmem again");
	expect_status(fx, run_cmd(fx, "create", fx->wal, "--backend", "file", "--segment-bytes",
				  "64K", "--max-value", "1K", NULL),
		      1, "create --backend file over a pmem WAL");
	expect_status(fx, run_cmd(fx, "create", fx->wal, "--segment-bytes", "64K", "--max-value",
				  "1K", NULL),
		      1, "create (default backend) over a pmem WAL");
	expect_in_file(fx, meta, "\nbackend pmem\n");
	/* a bad backend is a usage error, and creates nothing */
	snprintf(wal2, sizeof(wal2), "%s/wal2", fx->tmp);
	expect_status(fx, run_cmd(fx, "create", wal2, "--backend", "bogus", NULL), 2,
		      "create --backend bogus");
	expect_text(fx->out, "bogus", "create --backend bogus");
	expect_status(fx, run_cmd(fx, "create", wal2, "--backend", NULL), 2,
		      "create --backend (no value)");
	assert_int_equal(access(wal2, F_OK), -1);

	expect_status(fx, run_cmd(fx, "stat", fx->wal, NULL), 0, "stat (no flusher)");
	expect_text(fx->out, "backend pmem", "stat (no flusher)");
	expect_text(fx->out, "persistence: none", "stat (no flusher)");

	flusher_start(fx, NULL);
	expect_status(fx, run_cmd(fx, "stat", fx->wal, NULL), 0, "stat");
	expect_text(fx->out, "backend pmem", "stat");
	expect_text(fx->out, fx->mode->stat_line, "stat");
	expect_no_text(fx->out, fx->mode->other_stat_line, "stat");
	snprintf(line, sizeof(line), "flusher:     running, pid %d,", (int)fx->flusher);
	expect_text(fx->out, line, "stat");
	append_recs(fx, 0, 3, 0);
	expect_status(fx, run_cmd(fx, "stat", fx->wal, NULL), 0, "stat");
	snprintf(line, sizeof(line), "durable %" PRIu64 ",", book_end(fx->b));
	expect_text(fx->out, line, "stat");
	flusher_stop(fx);

	expect_status(fx, run_cmd(fx, "stat", fx->wal, NULL), 0, "stat (stopped)");
	expect_text(fx->out, "persistence: none", "stat (stopped)");
	expect_status(fx, run_cmd(fx, "dump", fx->wal, NULL), 0, "dump");
	assert_int_equal(count_lines_with(fx->out, "p0 lsn="), 3);
	assert_int_equal(seg_list(fx->pdir, firsts), 1);
	seg_path(fx, firsts[0], path, sizeof(path));
	assert_int_equal(file_size(path), (int64_t)fixed_size(fx));
	expect_verify_ok(fx, 3, 1);
}

/* ---- 5. a full disk --------------------------------------------------------------------- */

#define DF_VALUE 300u	       /* ~350-byte frames */
#define DF_BEFORE 200u	       /* durable before the disk fills */
#define DF_CHILD 1500u	       /* more than the ring holds */
#define DF_LEFT (128u << 10)   /* free space left: less than one segment file */

static uint64_t fs_free(const char *path)
{
	struct statvfs v;

	return statvfs(path, &v) == 0 ? (uint64_t)v.f_bavail * v.f_frsize : 0;
}

static void df_append(struct shmwal *w, uint32_t prod, uint64_t from, uint64_t to, uint64_t *lsn)
{
	uint8_t val[DF_VALUE];
	char key[32];

	for (uint64_t s = from; s < to; s++) {
		uint32_t klen = th_key(key, prod, 0, s);

		th_fill(val, DF_VALUE, prod, 0, s);
		assert_int_equal(
			shmwal_append(w, 0, SHMWAL_TYPE_PUT, key, klen, val, DF_VALUE, lsn), 0);
	}
}

/*
 * The WAL on a 2 MiB tmpfs, mostly taken by a filler file, so that the next segment file
 * cannot be allocated: the flusher logs the full disk and keeps running, producers are
 * back-pressured (try_append says -EAGAIN after at most a ring's worth, a producer process
 * stays blocked), and once the filler is gone everything resumes and nothing is lost.
 */
static void disk_full(struct fx *fx)
{
	uint64_t lsn = 0, n = DF_BEFORE, full_ok, expected[2], size;
	uint8_t val[DF_VALUE];
	struct th_log_report rep;
	struct shmwal *w;
	char key[32], filler[4400];
	int rc, st, fd;

	if (geteuid() != 0) {
		print_message("skipped: mounting a small filesystem needs root\n");
		skip();
	}
	if (!getenv("SHMWAL_TEST_NS") &&
	    (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)) {
		print_message("skipped: no private mount namespace (%s)\n", strerror(errno));
		skip();
	}
	snprintf(fx->mnt, sizeof(fx->mnt), "%s/mnt", fx->tmp);
	assert_int_equal(mkdir(fx->mnt, 0700), 0);
	if (mount("shmwal-pmem", fx->mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=2m,mode=0700") < 0) {
		print_message("skipped: cannot mount a tmpfs (%s)\n", strerror(errno));
		skip();
	}
	fx->mounted = 1;
	set_wal(fx, fx->mnt);
	snprintf(filler, sizeof(filler), "%s/filler", fx->mnt);
	assert_int_equal(th_create_backend(fx->wal, 1, 64 << 10, 256 << 10, 1024,
					   SHMWAL_SYNC_ALWAYS, SHMWAL_BACKEND_PMEM),
			 0);
	flusher_start(fx, NULL); /* its first segment is allocated now */
	size = fixed_size(fx);
	expect_fixed_sizes(fx, 1);
	fd = open(filler, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	{
		static const char zeros[4096];

		while (fs_free(fx->mnt) > DF_LEFT)
			assert_int_equal(write(fd, zeros, sizeof(zeros)), (ssize_t)sizeof(zeros));
	}
	close(fd);
	assert_true(fs_free(fx->mnt) < size);

	assert_int_equal(th_open(fx->wal, &w), 0);
	df_append(w, 0, 0, DF_BEFORE, &lsn);
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, NS_TIMEOUT), 0);

	/* A producer process with more to write than the ring can take. */
	fflush(NULL);
	fx->kids[0] = fork();
	assert_true(fx->kids[0] >= 0);
	if (fx->kids[0] == 0) {
		struct shmwal *cw;
		uint64_t clsn = 0;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(2 * TH_TIMEOUT_S);
		if (th_open(fx->wal, &cw) < 0)
			_exit(1);
		for (uint64_t s = 0; s < DF_CHILD; s++) { /* no cmocka asserts in a child */
			uint32_t klen = th_key(key, 1, 0, s);

			th_fill(val, DF_VALUE, 1, 0, s);
			rc = shmwal_append(cw, 0, SHMWAL_TYPE_PUT, key, klen, val, DF_VALUE, &clsn);
			if (rc < 0)
				_exit(2);
		}
		rc = shmwal_wait_durable(cw, 0, clsn, NS_TIMEOUT);
		shmwal_close(cw);
		_exit(rc == 0 ? 0 : 3);
	}

	/* Until the flusher has found no room for the next segment. */
	for (long i = 0; !th_file_contains(fx->log, "disk full creating the next segment"); i++) {
		uint32_t klen = th_key(key, 0, 0, n);

		assert_true(i < TH_TIMEOUT_S * 1000L);
		th_fill(val, DF_VALUE, 0, 0, n);
		rc = shmwal_try_append(w, 0, SHMWAL_TYPE_PUT, key, klen, val, DF_VALUE, &lsn);
		if (rc == 0) {
			n++;
			continue;
		}
		assert_int_equal(rc, -EAGAIN);
		pause_ms(1);
	}
	/* Back-pressure: at most a ring's worth more, then -EAGAIN. */
	for (full_ok = 0;; full_ok++) {
		uint32_t klen = th_key(key, 0, 0, n);

		th_fill(val, DF_VALUE, 0, 0, n);
		rc = shmwal_try_append(w, 0, SHMWAL_TYPE_PUT, key, klen, val, DF_VALUE, &lsn);
		if (rc == -EAGAIN)
			break;
		assert_int_equal(rc, 0);
		n++;
		assert_true(full_ok < 2 * (64 << 10) / DF_VALUE);
	}
	print_message("%s: no room for a segment after %" PRIu64 " records of ours; %" PRIu64
		      " KiB free\n",
		      fx->mode->name, n, fs_free(fx->mnt) >> 10);
	assert_int_equal(waitpid(fx->kids[0], &st, WNOHANG), 0);  /* still blocked */
	assert_int_equal(waitpid(fx->flusher, &st, WNOHANG), 0); /* still running */
	assert_int_equal(seg_count(fx), 1); /* no half-made segment left behind */

	assert_int_equal(unlink(filler), 0);
	assert_int_equal(th_wait(fx->kids[0], TH_TIMEOUT_S), 0);
	fx->kids[0] = -1;
	df_append(w, 0, n, n + 100, &lsn);
	n += 100;
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, NS_TIMEOUT), 0);
	shmwal_close(w);
	flusher_stop(fx);
	expect_in_file(fx, fx->log, "disk has space again");

	expected[0] = n;
	expected[1] = DF_CHILD;
	if (th_check_log(fx->wal, 2, 1, expected, NULL, NULL, &rep))
		fail_msg("after the full disk: %s", rep.first_error);
	assert_int_equal(rep.records, n + DF_CHILD);
	assert_true(seg_count(fx) >= 2);
	expect_fixed_sizes(fx, 1);
	expect_verify_ok(fx, n + DF_CHILD, 1);
}

/* ---- main ------------------------------------------------------------------------------- */

#define BOTH(fn)                                                                                   \
	static void test_##fn##_drain(void **state) { fn(*state); }                                \
	static void test_##fn##_msync(void **state) { fn(*state); }

BOTH(end_to_end)
BOTH(flusher_killed)
BOTH(garbage_past_end)
BOTH(resurrection)
BOTH(recycled)
BOTH(short_last)
BOTH(long_last)
BOTH(torn_header)
BOTH(sealed_damage)
BOTH(sealed_wrong_size_verify)
BOTH(cli)
BOTH(disk_full)

int main(void)
{
#define T(fn)                                                                                      \
	cmocka_unit_test_setup_teardown(test_##fn##_drain, setup_drain, teardown),                 \
		cmocka_unit_test_setup_teardown(test_##fn##_msync, setup_msync, teardown)
	const struct CMUnitTest tests[] = {
		T(end_to_end),	 T(flusher_killed), T(garbage_past_end), T(resurrection),
		T(recycled),	 T(short_last),	    T(long_last),	 T(torn_header),
		T(sealed_damage), T(sealed_wrong_size_verify), T(cli), T(disk_full),
	};
#undef T

	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
