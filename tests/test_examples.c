/* SPDX-License-Identifier: MIT */
/*
 * test_examples.c - the programs in examples/, each run as a real process ($O/examples/NAME)
 * against a WAL whose flusher runs, and checked by what they did:
 *   producer    its records are in the log, in order, with their keys and values;
 *   zero_copy   the committed readings are in the log byte for byte, the aborted ones not;
 *   durable     it acknowledges nothing while the flusher is stopped (it is found asleep in
 *               its wait, with no line printed), and each line it prints names the LSN of
 *               the last record of its batch;
 *   follow      it prints, live, exactly the records a producer appends after it started,
 *               and stops after COUNT records or on SIGTERM;
 *   checkpoint  its state (position, count, digest of every key and value) matches the log,
 *               it removed the segments below its checkpoint (the WAL has small segments),
 *               resumes without applying a record twice, and checkpoints while following.
 */
#include <errno.h>
#include <dirent.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

#define PATHLEN 4096
#define WAIT_NS ((uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC)
#define SEGMENT (64u << 10) /* the smallest segment: several of them in a short test */

struct fx {
	char *tmp;
	char wal[PATHLEN];
	pid_t flusher;
	struct shmwal *w; /* the test's own producer handle */
	int nrun;
};

/* An example started as a process. */
struct run {
	const char *name;
	pid_t pid;
	char out[PATHLEN]; /* its standard output and error */
};

/* One record as read back from the log. */
struct rec {
	uint64_t lsn, next;
	uint16_t type;
	char *key; /* NUL-terminated copies */
	char *value;
	uint32_t value_len;
};

/* ---- running the examples ---------------------------------------------------------------- */

static void example_path(char *buf, const char *name)
{
	const char *o = getenv("O");

	snprintf(buf, PATHLEN, "%s/examples/%s", o && *o ? o : "build", name);
}

static void vstart(struct fx *f, struct run *r, const char *name, va_list ap)
{
	const char *args[16];
	char path[PATHLEN];
	int n = 0;

	while ((args[n] = va_arg(ap, const char *)) != NULL)
		assert_true(++n < 15);
	example_path(path, name);
	assert_int_equal(access(path, X_OK), 0);
	r->name = name;
	snprintf(r->out, sizeof(r->out), "%s/%s.%d.out", f->tmp, name, f->nrun++);
	r->pid = th_spawn(path, args, NULL, r->out);
	assert_true(r->pid > 0);
}

/* Starts `examples/NAME ARGS...` (NULL-terminated), its output into a fresh file. */
static void start(struct fx *f, struct run *r, const char *name, ...)
{
	va_list ap;

	va_start(ap, name);
	vstart(f, r, name, ap);
	va_end(ap);
}

/* Waits for an example; it must exit 0. Returns its output (caller frees). */
static char *finish(struct run *r)
{
	int st = th_wait(r->pid, TH_TIMEOUT_S);
	char *out = th_file_read(r->out, NULL);

	assert_non_null(out);
	if (st != 0)
		fail_msg("examples/%s: exit status %d\n%s", r->name, st, out);
	return out;
}

/* Runs `examples/NAME ARGS...` to its end (it must exit 0); returns its output. */
static char *run(struct fx *f, const char *name, ...)
{
	struct run r;
	va_list ap;

	va_start(ap, name);
	vstart(f, &r, name, ap);
	va_end(ap);
	return finish(&r);
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Waits (TH_TIMEOUT_S) until the running example has printed `lines` lines. */
static void wait_lines(struct run *r, int lines)
{
	struct timespec nap = {0, 2000000};
	time_t deadline = time(NULL) + TH_TIMEOUT_S;

	for (;;) {
		char *s = th_file_read(r->out, NULL);
		int n = s ? count_lines(s) : 0;

		if (n >= lines) {
			free(s);
			return;
		}
		if (waitpid(r->pid, NULL, WNOHANG) == r->pid || time(NULL) > deadline)
			fail_msg("examples/%s ended or stalled after %d of %d lines:\n%s", r->name,
				 n, lines, s ? s : "");
		free(s);
		nanosleep(&nap, NULL);
	}
}

/* The n-th line of s (0-based), in buf. */
static const char *line_of(const char *s, int n, char *buf, size_t len)
{
	const char *e;

	for (; n > 0; n--) {
		s = strchr(s, '\n');
		assert_non_null(s);
		s++;
	}
	e = strchr(s, '\n');
	snprintf(buf, len, "%.*s", (int)(e ? e - s : (long)strlen(s)), s);
	return buf;
}

/* ---- the log ----------------------------------------------------------------------------- */

/* Every durable record of a partition, in order. Returns the count; *out is freed with
 * recs_free(). */
static size_t read_log(const char *wal, uint32_t part, struct rec **out)
{
	struct shmwal_reader *r;
	struct shmwal_record rr;
	struct rec *v = NULL;
	size_t n = 0;
	int rc;

	EXPECT_OK(shmwal_reader_open(wal, part, SHMWAL_LSN_OLDEST, &r));
	while ((rc = shmwal_reader_next(r, &rr, 0)) == 0) {
		v = realloc(v, (n + 1) * sizeof(*v));
		assert_non_null(v);
		v[n].lsn = rr.lsn;
		v[n].next = rr.next_lsn;
		v[n].type = rr.type;
		v[n].key = strndup(rr.key, rr.key_len);
		v[n].value = malloc(rr.value_len + 1);
		assert_non_null(v[n].key);
		assert_non_null(v[n].value);
		memcpy(v[n].value, rr.value, rr.value_len);
		v[n].value[rr.value_len] = '\0';
		v[n].value_len = rr.value_len;
		n++;
	}
	if (rc != -ETIMEDOUT)
		fail_msg("reading partition %u: %s", part, shmwal_last_error());
	shmwal_reader_close(r);
	*out = v;
	return n;
}

static void recs_free(struct rec *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].key);
		free(v[i].value);
	}
	free(v);
}

/* Partition part holds exactly n records "<kpre><i>" -> "<vpre><i>" (PUT), i = 0..n-1. */
static void expect_text_records(const char *wal, uint32_t part, size_t n, const char *kpre,
				const char *vpre, struct rec **out)
{
	struct rec *v;
	size_t got = read_log(wal, part, &v);

	if (got != n)
		fail_msg("partition %u holds %zu records, expected %zu", part, got, n);
	for (size_t i = 0; i < n; i++) {
		char k[64], val[64];

		snprintf(k, sizeof(k), "%s%zu", kpre, i);
		snprintf(val, sizeof(val), "%s%zu", vpre, i);
		if (strcmp(v[i].key, k) || strcmp(v[i].value, val) || v[i].type != SHMWAL_TYPE_PUT)
			fail_msg("record %zu at LSN %" PRIu64 ": %s -> %s, expected %s -> %s", i,
				 v[i].lsn, v[i].key, v[i].value, k, val);
	}
	if (out)
		*out = v;
	else
		recs_free(v, n);
}

static void wait_durable(struct fx *f, uint32_t part, uint64_t lsn)
{
	EXPECT_OK(shmwal_wait_durable(f->w, part, lsn, WAIT_NS));
}

static int count_segments(const char *wal, uint32_t part)
{
	char path[PATHLEN];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "%s/p%03u", wal, part);
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d)))
		n += strstr(e->d_name, ".seg") != NULL;
	closedir(d);
	return n;
}

/* ---- fixture ----------------------------------------------------------------------------- */

/* A WAL of 2 partitions with 64 KiB segments and sync always, its flusher, and a handle. */
static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f || !(f->tmp = th_tmpdir("examples")))
		return -1;
	snprintf(f->wal, sizeof(f->wal), "%s/wal", f->tmp);
	if (th_create(f->wal, 2, 1 << 20, SEGMENT, 4096, SHMWAL_SYNC_ALWAYS) < 0)
		return -1;
	f->flusher = th_flusher_start(f->wal, 0);
	if (f->flusher < 0 || th_open(f->wal, &f->w) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	int rc = 0;

	if (f->w)
		shmwal_close(f->w);
	if (f->flusher > 0) {
		kill(f->flusher, SIGCONT);
		rc = th_flusher_stop(f->flusher) == 0 ? 0 : -1;
	}
	th_destroy(f->wal);
	th_destroy(f->tmp);
	free(f->tmp);
	free(f);
	return rc;
}

/* ---- the tests --------------------------------------------------------------------------- */

static void test_producer(void **state)
{
	struct fx *f = *state;
	unsigned long n, part, first, last;
	struct rec *v;
	char *out;

	out = run(f, "producer", f->wal, "500", "1", NULL);
	if (sscanf(out, "appended %lu records to partition %lu, LSN %lu..%lu", &n, &part, &first,
		   &last) != 4 ||
	    n != 500 || part != 1)
		fail_msg("producer printed:\n%s", out);
	free(out);
	wait_durable(f, 1, last);
	expect_text_records(f->wal, 1, 500, "key-", "value ", &v);
	assert_int_equal(v[0].lsn, first);
	assert_int_equal(v[499].lsn, last);
	recs_free(v, 500);
	assert_int_equal(read_log(f->wal, 0, &v), 0); /* nothing went elsewhere */
	free(v);
}

/* The value of examples/zero_copy.c's records. */
struct reading {
	uint64_t seq;
	int64_t milli_celsius;
	uint32_t sensor;
	uint32_t valid;
};

static void test_zero_copy(void **state)
{
	struct fx *f = *state;
	unsigned long committed, aborted, part, last;
	uint64_t seq = 0;
	struct rec *v;
	size_t n;
	char *out;

	out = run(f, "zero_copy", f->wal, "200", "0", NULL);
	if (sscanf(out, "committed %lu readings, aborted %lu, to partition %lu, last LSN %lu",
		   &committed, &aborted, &part, &last) != 4 ||
	    committed != 180 || aborted != 20 || part != 0)
		fail_msg("zero_copy printed:\n%s", out);
	free(out);
	wait_durable(f, 0, last);
	n = read_log(f->wal, 0, &v);
	assert_int_equal(n, 180);
	for (size_t i = 0; i < n; i++, seq++) {
		struct reading want = {0}, got;
		char key[16];

		if (seq % 10 == 9)
			seq++; /* aborted: never read */
		want.seq = seq;
		want.milli_celsius = 20000 + (int64_t)(seq * 37 % 1000) - 500;
		want.sensor = (uint32_t)(seq % 4);
		want.valid = 1;
		snprintf(key, sizeof(key), "sensor-%" PRIu64, seq % 4);
		assert_int_equal(v[i].value_len, sizeof(got));
		memcpy(&got, v[i].value, sizeof(got));
		if (strcmp(v[i].key, key) || v[i].type != SHMWAL_TYPE_USER_MIN ||
		    memcmp(&got, &want, sizeof(got)))
			fail_msg("reading %zu (seq %" PRIu64 ") is wrong: seq %" PRIu64 " key %s",
				 i, seq, got.seq, v[i].key);
	}
	assert_int_equal(v[n - 1].lsn, last);
	recs_free(v, n);
}

/* 'R', 'S', 'Z', ... from /proc/PID/stat; 0 if unreadable. */
static char proc_state(pid_t pid)
{
	char path[64], *s, *p;
	char st = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	s = th_file_read(path, NULL);
	if (s && (p = strrchr(s, ')')) && p[1] == ' ')
		st = p[2];
	free(s);
	return st;
}

static void test_durable(void **state)
{
	struct fx *f = *state;
	struct shmwal_stat *st = malloc(sizeof(*st));
	struct timespec nap = {0, 1000000};
	time_t deadline = time(NULL) + TH_TIMEOUT_S;
	unsigned long a, b, lsn;
	char line[256], *out;
	struct run ex;
	struct rec *v;
	char ps;

	assert_non_null(st);
	/* Per record, with the flusher stopped: the first record is appended, and then the
	 * example must sleep in its wait with nothing acknowledged. */
	assert_int_equal(kill(f->flusher, SIGSTOP), 0);
	start(f, &ex, "durable", f->wal, "20", "1", "0", NULL);
	for (;;) {
		EXPECT_OK(shmwal_stat(f->wal, st));
		ps = proc_state(ex.pid);
		if (st->part[0].tail > 0 && (ps == 'S' || ps == 'Z'))
			break;
		if (time(NULL) > deadline)
			fail_msg("durable neither appended nor waited (state %c)", ps);
		nanosleep(&nap, NULL);
	}
	out = th_file_read(ex.out, NULL);
	if (ps != 'S' || (out && strstr(out, "durable")))
		fail_msg("durable acknowledged a record the stopped flusher never synced (state "
			 "%c):\n%s",
			 ps, out ? out : "");
	free(out);
	assert_int_equal(kill(f->flusher, SIGCONT), 0);
	out = finish(&ex);
	expect_text_records(f->wal, 0, 20, "txn-", "payment ", &v);
	assert_int_equal(count_lines(out), 21);
	for (int i = 0; i < 20; i++) {
		if (sscanf(line_of(out, i, line, sizeof(line)),
			   "durable: records %lu..%lu, LSN %lu", &a, &b, &lsn) != 3 ||
		    a != (unsigned long)i || b != a || lsn != v[i].lsn)
			fail_msg("line %d of durable: %s (record %d has LSN %" PRIu64 ")", i, line,
				 i, v[i].lsn);
	}
	assert_string_equal(line_of(out, 20, line, sizeof(line)), "20 records durable in 20 waits");
	recs_free(v, 20);
	free(out);

	/* Per batch of 25 (the last one short): one wait each, for the batch's last record. */
	out = run(f, "durable", f->wal, "110", "25", "1", NULL);
	expect_text_records(f->wal, 1, 110, "txn-", "payment ", &v);
	assert_int_equal(count_lines(out), 6);
	for (int i = 0; i < 5; i++) {
		unsigned long last = i < 4 ? (unsigned long)i * 25 + 24 : 109;

		if (sscanf(line_of(out, i, line, sizeof(line)),
			   "durable: records %lu..%lu, LSN %lu", &a, &b, &lsn) != 3 ||
		    a != (unsigned long)i * 25 || b != last || lsn != v[last].lsn)
			fail_msg("line %d of durable: %s", i, line);
	}
	assert_string_equal(line_of(out, 5, line, sizeof(line)), "110 records durable in 5 waits");
	EXPECT_OK(shmwal_stat(f->wal, st));
	assert_true(st->part[1].durable > v[109].lsn);
	recs_free(v, 110);
	free(out);
	free(st);
}

/* The follower's record lines, from line `from` on, are exactly records v[0..n). */
static void expect_follow_lines(const char *out, int from, const struct rec *v, size_t n)
{
	char line[256], want[256];

	for (size_t i = 0; i < n; i++) {
		snprintf(want, sizeof(want), "%" PRIu64 " PUT %s %s", v[i].lsn, v[i].key,
			 v[i].value);
		if (strcmp(line_of(out, from + (int)i, line, sizeof(line)), want) != 0)
			fail_msg("follow line %zu: \"%s\", expected \"%s\"", i, line, want);
	}
}

static void test_follow_count(void **state)
{
	struct fx *f = *state;
	char line[256], *out;
	struct run fol;
	struct rec *v;

	/* It starts first and waits; the records arrive while it follows. */
	start(f, &fol, "follow", f->wal, "0", "300", "oldest", NULL);
	wait_lines(&fol, 1);
	free(run(f, "producer", f->wal, "300", "0", NULL));
	out = finish(&fol);
	assert_int_equal(count_lines(out), 302);
	assert_string_equal(line_of(out, 0, line, sizeof(line)),
			    "following partition 0 from LSN 0");
	expect_text_records(f->wal, 0, 300, "key-", "value ", &v);
	expect_follow_lines(out, 1, v, 300);
	assert_string_equal(line_of(out, 301, line, sizeof(line)), "read 300 records");
	recs_free(v, 300);
	free(out);
}

static void test_follow_signal(void **state)
{
	struct fx *f = *state;
	char line[256], want[256], *out;
	unsigned long n, first, last;
	struct run fol;
	struct rec *v;

	/* 20 records before it starts at "end": it must not print them. */
	free(run(f, "producer", f->wal, "20", "1", NULL));
	start(f, &fol, "follow", f->wal, "1", "0", "end", NULL);
	wait_lines(&fol, 1);
	out = run(f, "producer", f->wal, "50", "1", NULL);
	assert_int_equal(
	    sscanf(out, "appended %lu records to partition 1, LSN %lu..%lu", &n, &first, &last), 3);
	free(out);
	wait_lines(&fol, 51);
	assert_int_equal(kill(fol.pid, SIGTERM), 0);
	out = finish(&fol);

	assert_int_equal(read_log(f->wal, 1, &v), 70);
	assert_int_equal(v[20].lsn, first);
	snprintf(want, sizeof(want), "following partition 1 from LSN %" PRIu64, first);
	assert_string_equal(line_of(out, 0, line, sizeof(line)), want);
	expect_follow_lines(out, 1, v + 20, 50);
	snprintf(want, sizeof(want), "stopped by signal after 50 records, at LSN %" PRIu64,
		 v[69].next);
	assert_string_equal(line_of(out, 51, line, sizeof(line)), want);
	assert_int_equal(count_lines(out), 52);
	recs_free(v, 70);
	free(out);
}

/* Appends records seq [from, to) of 1000 bytes (stamped) to partition 1 and waits until
 * they are durable. Folds them into *digest as examples/checkpoint.c does (CRC32C over
 * every key and value, in order). Returns the LSN after the last one. */
static uint64_t append_stamped(struct fx *f, uint64_t from, uint64_t to, uint32_t *digest)
{
	uint8_t val[1000];
	char key[32];
	uint64_t lsn = 0;
	uint32_t klen = 0;

	for (uint64_t s = from; s < to; s++) {
		klen = th_key(key, 0, 0, s);
		th_fill(val, sizeof(val), 0, 0, s);
		EXPECT_OK(
		    shmwal_append(f->w, 1, SHMWAL_TYPE_PUT, key, klen, val, sizeof(val), &lsn));
		*digest = shmwal_crc32c(*digest, key, klen);
		*digest = shmwal_crc32c(*digest, val, sizeof(val));
	}
	wait_durable(f, 1, lsn);
	return lsn + SHMWAL_ALIGN_UP(SHMWAL_FRAME_HDR + klen + sizeof(val));
}

/* The digest examples/checkpoint.c keeps, over records v[0..n), continuing from d. */
static uint32_t digest_of(const struct rec *v, size_t n, uint32_t d)
{
	for (size_t i = 0; i < n; i++) {
		d = shmwal_crc32c(d, v[i].key, (uint32_t)strlen(v[i].key));
		d = shmwal_crc32c(d, v[i].value, v[i].value_len);
	}
	return d;
}

/* Runs `checkpoint --once` and checks its line, its state file and the segments left. */
static void checkpoint_once(struct fx *f, const char *state_path, unsigned long expect_applied,
			    unsigned long expect_total, uint64_t end, uint32_t digest)
{
	int before = count_segments(f->wal, 1), after;
	char want[256], *out, *st;

	out = run(f, "checkpoint", "--once", f->wal, state_path, "1", NULL);
	after = count_segments(f->wal, 1);
	snprintf(want, sizeof(want),
		 "applied %lu records this run (%lu in all), checkpoint at LSN %" PRIu64
		 ", removed %d segments\n",
		 expect_applied, expect_total, end, expect_applied ? before - 1 : 0);
	assert_string_equal(out, want);
	assert_int_equal(after, expect_applied ? 1 : before);
	st = th_file_read(state_path, NULL);
	assert_non_null(st);
	snprintf(want, sizeof(want), "next_lsn %" PRIu64 "\nrecords %lu\ndigest 0x%08x\n", end,
		 expect_total, digest);
	assert_string_equal(st, want);
	free(st);
	free(out);
}

static void test_checkpoint(void **state)
{
	struct fx *f = *state;
	char state_path[PATHLEN], want[256], *out, *st;
	struct shmwal_reader *r;
	struct rec *v;
	uint32_t digest = 0;
	uint64_t end, removed_lsn;
	time_t deadline;
	struct run cp;
	size_t n;

	snprintf(state_path, sizeof(state_path), "%s/state", f->tmp);

	/* 400 records of ~1 KiB: several 64 KiB segments, all below the checkpoint */
	end = append_stamped(f, 0, 400, &digest);
	n = read_log(f->wal, 1, &v);
	assert_int_equal(n, 400);
	assert_int_equal(v[n - 1].next, end);
	assert_int_equal(digest_of(v, n, 0), digest); /* the log holds what was appended */
	removed_lsn = v[1].lsn;
	recs_free(v, n);
	assert_true(count_segments(f->wal, 1) >= 4);
	checkpoint_once(f, state_path, 400, 400, end, digest);
	/* the log now starts in the segment of the checkpoint */
	assert_int_equal(shmwal_reader_open(f->wal, 1, removed_lsn, &r), -ERANGE);

	/* 100 more: only they are applied, the digest goes on, the older segments go */
	end = append_stamped(f, 400, 500, &digest);
	assert_true(count_segments(f->wal, 1) >= 2);
	checkpoint_once(f, state_path, 100, 500, end, digest);

	/* nothing new: nothing applied twice */
	checkpoint_once(f, state_path, 0, 500, end, digest);

	/* following: 50 more are applied and checkpointed once it has caught up; SIGTERM
	 * ends it */
	start(f, &cp, "checkpoint", f->wal, state_path, "1", NULL);
	end = append_stamped(f, 500, 550, &digest);
	snprintf(want, sizeof(want), "next_lsn %" PRIu64 "\nrecords 550\ndigest 0x%08x\n", end,
		 digest);
	deadline = time(NULL) + TH_TIMEOUT_S;
	for (;;) {
		struct timespec nap = {0, 2000000};

		st = th_file_read(state_path, NULL);
		if (st && strcmp(st, want) == 0)
			break;
		if (waitpid(cp.pid, NULL, WNOHANG) == cp.pid || time(NULL) > deadline)
			fail_msg("checkpoint did not reach\n%sits state:\n%s", want, st ? st : "");
		free(st);
		nanosleep(&nap, NULL);
	}
	free(st);
	assert_int_equal(kill(cp.pid, SIGTERM), 0);
	out = finish(&cp);
	snprintf(want, sizeof(want),
		 "applied 50 records this run (550 in all), checkpoint at LSN %" PRIu64 ", ", end);
	if (strncmp(out, want, strlen(want)) != 0)
		fail_msg("checkpoint printed: %s", out);
	free(out);
	/* what is left of the log starts at or below the checkpoint, and ends there */
	n = read_log(f->wal, 1, &v);
	if (n)
		assert_int_equal(v[n - 1].next, end);
	recs_free(v, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_producer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_zero_copy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_durable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_follow_count, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_follow_signal, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_checkpoint, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
