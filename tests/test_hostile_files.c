/* SPDX-License-Identifier: MIT */
/*
 * test_hostile_files.c - damaged and hostile files in a WAL directory, seen by all three of
 * their consumers: recovery (recover_partition, and a flusher starting on the directory),
 * readers (shmwal_reader_open/next with no flusher, and with one) and `shmwal verify`.
 *
 * What it proves: every kind of damage yields either a precise error (naming the file and,
 * for frames, the offset) or the documented cut of a torn tail - never a crash, a hang, or a
 * record that was not written. The WALs are written through the library with stamped records
 * (tests/helpers.h: th_fill), and every record a reader returns is compared with what was
 * written at that LSN: position, key and every byte of the value.
 *
 * test_recovery.c covers recover_partition alone on hand-made segments (torn tails at every
 * byte, bit flips in a last-segment frame, torn and bad sealed headers, other instance /
 * partition / name mismatch of sealed segments, junk names). This file adds readers and
 * verify to those cases, a truncation loop over the last two frames of a real log, every bit
 * of a sealed frame's header and of a sealed segment's header, frames with a wrong LSN and a
 * good checksum, segments of another WAL instance (sealed and last), a missing middle
 * segment, zero-length files, and files that are not regular files (FIFOs must not hang).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "shmwal.h"
#include "shmwal_format.h"
#include "common.h" /* SHMWAL_PRINTF, used by segment.h */
#include "meta.h"
#include "persist/segment.h"
#include "helpers.h"

#define NREC 1200u     /* about 5 segments of 64 KiB */
#define MAX_VALUE 1024u
#define PRODUCER_A 1u
#define PRODUCER_B 2u

static char bin[4096];

/* One WAL written by fill_wal(): what was written, record by record. */
struct wal {
	char dir[4096];
	char pdir[4200];
	uint32_t producer;
	uint32_t n;
	uint64_t lsn[NREC];
	uint32_t len[NREC];  /* frame length: header + key + value */
	uint32_t flen[NREC]; /* padded to 8 */
	uint64_t end;	     /* LSN after the last record */
	struct seg_list segs;
};

struct fx {
	char *tmp;
	char outpath[4200];
	struct wal a, b;
	char *out; /* output of the last CLI run */
	char err[2048];
};

/* ---- helpers ---------------------------------------------------------------------------- */

static void fmt(char *buf, size_t cap, const char *f, ...) SHMWAL_PRINTF(3, 4);
static void fmt(char *buf, size_t cap, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(buf, cap, f, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < cap);
}

static uint8_t *slurp_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

static void put_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	if (len)
		assert_int_equal(write(fd, buf, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static int64_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) < 0 ? -1 : (int64_t)st.st_size;
}

static void seg_file(const struct wal *w, uint64_t first, char *buf, size_t cap)
{
	char name[24];

	shmwal_segment_name(name, first);
	fmt(buf, cap, "%s/%s", w->pdir, name);
}

/* Index of the first record at or after lsn. */
static uint32_t rec_at(const struct wal *w, uint64_t lsn)
{
	uint32_t i = 0;

	while (i < w->n && w->lsn[i] < lsn)
		i++;
	return i;
}

/*
 * Creates a WAL in dir (1 partition, 64 KiB segments, sync none) and appends NREC stamped
 * records of `producer` through a forked flusher, then stops it: the files hold the log.
 * Value sizes follow a fixed seed, so two WALs written alike have the same LSNs.
 */
static void fill_wal(struct fx *fx, struct wal *w, const char *name, uint32_t producer,
		     uint32_t nrec)
{
	static uint8_t value[MAX_VALUE];
	struct shmwal *h;
	char key[32];
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	uint32_t i;
	pid_t pid;

	memset(w, 0, sizeof(*w));
	fmt(w->dir, sizeof(w->dir), "%s/%s", fx->tmp, name);
	fmt(w->pdir, sizeof(w->pdir), "%s/p000", w->dir);
	w->producer = producer;
	assert_int_equal(th_create(w->dir, 1, 64u << 10, 64u << 10, MAX_VALUE, SHMWAL_SYNC_NONE), 0);
	pid = th_flusher_start(w->dir, 0);
	assert_true(pid > 0);
	assert_int_equal(th_open(w->dir, &h), 0);
	for (i = 0; i < nrec; i++) {
		uint32_t vlen = TH_STAMP_MIN + (uint32_t)(th_rand(&seed) % 280);
		uint32_t klen = th_key(key, producer, 0, i);

		th_fill(value, vlen, producer, 0, i);
		assert_int_equal(shmwal_append(h, 0, SHMWAL_TYPE_PUT, key, klen, value, vlen,
					       &w->lsn[i]),
				 0);
		w->len[i] = SHMWAL_FRAME_HDR + klen + vlen;
		w->flen[i] = (uint32_t)SHMWAL_ALIGN_UP(w->len[i]);
		if (i)
			assert_int_equal(w->lsn[i], w->lsn[i - 1] + w->flen[i - 1]);
	}
	w->n = nrec;
	w->end = w->lsn[nrec - 1] + w->flen[nrec - 1];
	assert_int_equal(shmwal_wait_durable(h, 0, w->lsn[nrec - 1], SHMWAL_WAIT_FOREVER), 0);
	shmwal_close(h);
	assert_int_equal(th_flusher_stop(pid), 0);
	assert_int_equal(seg_list_load(w->pdir, &w->segs), 0);
}

/*
 * Reads partition 0 of w->dir from the oldest record (no timeout). Every record returned must
 * be record k of what was written, k = 0, 1, ...: same LSN, next LSN, key and stamped value.
 * Returns how many were returned; *end_rc is how reading stopped (the open's error if it
 * failed), and fx->err its detail.
 */
static uint32_t read_back(struct fx *fx, const struct wal *w, int *end_rc)
{
	struct shmwal_reader *r;
	struct shmwal_record rec;
	uint32_t k = 0;
	int rc;

	fx->err[0] = '\0';
	rc = shmwal_reader_open(w->dir, 0, SHMWAL_LSN_OLDEST, &r);
	if (rc < 0) {
		snprintf(fx->err, sizeof(fx->err), "%s", shmwal_last_error());
		*end_rc = rc;
		return 0;
	}
	while ((rc = shmwal_reader_next(r, &rec, 0)) == 0) {
		struct th_stamp st;
		char key[32];
		uint32_t klen;

		if (k >= w->n)
			fail_msg("record %u at LSN %" PRIu64 ": more records than were written", k,
				 rec.lsn);
		if (rec.lsn != w->lsn[k] || rec.next_lsn != w->lsn[k] + w->flen[k])
			fail_msg("record %u: LSN %" PRIu64 "..%" PRIu64 ", written at %" PRIu64, k,
				 rec.lsn, rec.next_lsn, w->lsn[k]);
		if (th_check(rec.value, rec.value_len, &st) < 0 || st.producer != w->producer ||
		    st.thread != 0 || st.seq != k)
			fail_msg("record %u at LSN %" PRIu64 ": a value that was not written here",
				 k, rec.lsn);
		klen = th_key(key, w->producer, 0, k);
		if (rec.key_len != klen || (klen && memcmp(rec.key, key, klen) != 0))
			fail_msg("record %u at LSN %" PRIu64 ": wrong key", k, rec.lsn);
		k++;
	}
	snprintf(fx->err, sizeof(fx->err), "%s", shmwal_last_error());
	shmwal_reader_close(r);
	*end_rc = rc;
	return k;
}

/* Reading must return exactly records [0, n) and then stop with `want_rc`; for an error, its
 * detail must name `needle` (NULL: anything). */
static void expect_read(struct fx *fx, const struct wal *w, uint32_t n, int want_rc,
			const char *needle, const char *what)
{
	int rc;
	uint32_t got = read_back(fx, w, &rc);

	if (got != n || rc != want_rc)
		fail_msg("%s: read %u records, ending with %d (%s); want %u ending with %d", what,
			 got, rc, fx->err, n, want_rc);
	if (want_rc != -ETIMEDOUT && needle && !strstr(fx->err, needle))
		fail_msg("%s: error \"%s\" does not name \"%s\"", what, fx->err, needle);
}

static void find_binary(void) { th_shmwal_bin(bin, sizeof(bin)); }

/* Runs `shmwal CMD DIR` (stdout and stderr into fx->out). Returns its exit status. */
static int run_cli(struct fx *fx, const char *cmd, const char *dir)
{
	char *argv[] = { bin, (char *)cmd, (char *)dir, NULL };
	size_t len;
	pid_t pid;
	int st;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(fx->outpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		alarm(TH_TIMEOUT_S);
		execv(bin, argv);
		_exit(127);
	}
	st = th_wait(pid, TH_TIMEOUT_S + 10);
	free(fx->out);
	fx->out = (char *)slurp_file(fx->outpath, &len);
	fx->out[len] = '\0';
	return st;
}

static void expect_cli(struct fx *fx, const char *cmd, const char *dir, int want,
		       const char *needle, const char *what)
{
	int st = run_cli(fx, cmd, dir);

	if (st != want)
		fail_msg("%s: `shmwal %s` exited %d, want %d; output:\n%s", what, cmd, st, want,
			 fx->out);
	if (needle && !strstr(fx->out, needle))
		fail_msg("%s: `shmwal %s` output does not contain \"%s\":\n%s", what, cmd, needle,
			 fx->out);
}

/*
 * Starts a flusher on w->dir in a child (exit when idle, optionally --repair) and returns what
 * shmwal_flusher_run returned (0 or -errno); its error detail goes to fx->err.
 */
static int flusher_once(struct fx *fx, const struct wal *w, int repair)
{
	size_t len;
	uint8_t *msg;
	pid_t pid;
	int st;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct shmwal_flusher_options o = { .exit_when_idle = 1, .repair = repair };
		int stop = 0, rc, fd;

		alarm(TH_TIMEOUT_S);
		rc = shmwal_flusher_run(w->dir, &o, &stop);
		fd = open(fx->outpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd >= 0) {
			if (rc < 0 && write(fd, shmwal_last_error(),
					    strlen(shmwal_last_error())) < 0)
				_exit(125);
			close(fd);
		}
		_exit(-rc);
	}
	st = th_wait(pid, TH_TIMEOUT_S + 10);
	assert_true(st >= 0 && st < 128);
	msg = slurp_file(fx->outpath, &len);
	snprintf(fx->err, sizeof(fx->err), "%.*s", (int)len, (const char *)msg);
	free(msg);
	return -st;
}

static struct meta load_meta(const struct wal *w)
{
	struct meta m;

	assert_int_equal(meta_load(w->dir, &m), 0);
	return m;
}

/* ---- fixture ---------------------------------------------------------------------------- */

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	fx->tmp = th_tmpdir("hostile");
	if (!fx->tmp)
		return -1;
	snprintf(fx->outpath, sizeof(fx->outpath), "%s/out", fx->tmp);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	if (!fx)
		return 0;
	th_shm_unlink(fx->a.dir);
	th_shm_unlink(fx->b.dir);
	seg_list_free(&fx->a.segs);
	seg_list_free(&fx->b.segs);
	th_destroy(fx->tmp);
	free(fx->tmp);
	free(fx->out);
	free(fx);
	return 0;
}

/* ---- a torn tail ------------------------------------------------------------------------ */

/*
 * The last segment cut at every byte offset from the start of its second-to-last frame to its
 * end: readers (no flusher) return exactly the records whose frames are whole, verify says
 * "ok" (a torn tail is not damage) and recovery cuts at exactly the previous frame boundary,
 * after which the same records are read.
 */
static void test_tail_truncated_every_offset(void **state)
{
	struct fx *fx = *state;
	struct wal *w = &fx->a;
	uint64_t first, start, t;
	uint8_t *orig;
	size_t len;
	char path[4300];
	struct meta m;
	uint32_t tried = 0;

	fill_wal(fx, w, "a", PRODUCER_A, 300);
	first = w->segs.first[w->segs.n - 1];
	seg_file(w, first, path, sizeof(path));
	orig = slurp_file(path, &len);
	assert_int_equal(len, SHMWAL_SEG_HDR + w->end - first);
	assert_true(w->lsn[w->n - 2] >= first);
	m = load_meta(w);

	for (start = w->lsn[w->n - 2]; start <= w->end; start++) {
		uint64_t size = SHMWAL_SEG_HDR + start - first, want_end;
		uint32_t whole = 0;
		struct seg_recovery r;
		char what[64];

		/* the records whose frames end at or before `start` */
		while (whole < w->n && w->lsn[whole] + w->flen[whole] <= start)
			whole++;
		want_end = whole ? w->lsn[whole - 1] + w->flen[whole - 1] : first;
		snprintf(what, sizeof(what), "cut at LSN %" PRIu64, start);

		put_file(path, orig, (size_t)size);
		expect_read(fx, w, whole, -ETIMEDOUT, NULL, what);
		/* verify on every 4th offset and at both frame boundaries (one exec each) */
		t = start - w->lsn[w->n - 2];
		if (t % 4 == 0 || start == w->lsn[w->n - 1] || start == w->end)
			expect_cli(fx, "verify", w->dir, 0,
				   start == want_end ? ": ok" : "TORN-TAIL", what);

		assert_int_equal(recover_partition(&m, 0, 0, NULL, NULL, &r), 0);
		if (r.end != want_end || r.cut_bytes != start - want_end)
			fail_msg("%s: recovery ends at %" PRIu64 " cutting %" PRIu64
				 ", want %" PRIu64 " cutting %" PRIu64,
				 what, r.end, r.cut_bytes, want_end, start - want_end);
		assert_int_equal(file_size(path), (int64_t)(SHMWAL_SEG_HDR + want_end - first));
		expect_read(fx, w, whole, -ETIMEDOUT, NULL, what);
		tried++;
	}
	assert_int_equal(tried, w->flen[w->n - 2] + w->flen[w->n - 1] + 1);

	/* A flusher starting on a torn tail cuts it and goes on at the boundary. */
	put_file(path, orig, (size_t)(SHMWAL_SEG_HDR + w->lsn[w->n - 1] - first + 13));
	assert_int_equal(flusher_once(fx, w, 0), 0);
	expect_read(fx, w, w->n - 1, -ETIMEDOUT, NULL, "after a flusher cut the tail");
	expect_cli(fx, "verify", w->dir, 0, ": ok", "after a flusher cut the tail");
	free(orig);
}

/* ---- bit flips -------------------------------------------------------------------------- */

/* Flips one bit of the file at `off`. */
static void flip_bit(const char *path, uint64_t off, int bit)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	uint8_t b;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	b ^= (uint8_t)(1u << bit);
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

/*
 * A frame in the middle of a sealed segment: every bit of its 32-byte header (the slot bits,
 * which the checksum does not cover, are a control: nothing changes) and one bit of every
 * byte of its key and value. Readers return exactly the records before it, then -EBADMSG
 * naming the file and the offset; verify exits 1 naming both. A flusher starts (sealed frames
 * are not read at start) and readers with it live stop at the same place.
 */
static void test_sealed_frame_bitflips(void **state)
{
	struct fx *fx = *state;
	struct wal *w = &fx->a;
	uint64_t first, off;
	uint32_t idx, byte, flips = 0;
	char path[4300], at[64], name[24];
	int bit;

	fill_wal(fx, w, "a", PRODUCER_A, NREC);
	assert_true(w->segs.n >= 3);
	first = w->segs.first[1];
	idx = rec_at(w, first + (w->segs.first[2] - first) / 2);
	off = SHMWAL_SEG_HDR + w->lsn[idx] - first;
	seg_file(w, first, path, sizeof(path));
	shmwal_segment_name(name, first);
	snprintf(at, sizeof(at), "offset %" PRIu64, off);

	for (byte = 0; byte < w->len[idx]; byte++) { /* padding is not covered: not flipped */
		for (bit = 0; bit < 8; bit++) {
			int slot = byte == 4 || byte == 5;
			char what[64];

			if (byte >= SHMWAL_FRAME_HDR && bit != (int)(byte % 8))
				continue; /* payload: one bit per byte */
			snprintf(what, sizeof(what), "frame byte %u bit %d", byte, bit);
			flip_bit(path, off + byte, bit);
			if (slot) {
				expect_read(fx, w, w->n, -ETIMEDOUT, NULL, what);
			} else {
				expect_read(fx, w, idx, -EBADMSG, name, what);
				if (!strstr(fx->err, at))
					fail_msg("%s: \"%s\" does not name %s", what, fx->err, at);
				if (bit == 0 || byte >= SHMWAL_FRAME_HDR)
					expect_cli(fx, "verify", w->dir, 1, at, what);
			}
			flip_bit(path, off + byte, bit);
			flips++;
		}
	}
	assert_true(flips >= SHMWAL_FRAME_HDR * 8);
	/* control: undamaged again */
	expect_read(fx, w, w->n, -ETIMEDOUT, NULL, "restored");
	expect_cli(fx, "verify", w->dir, 0, ": ok", "restored");

	/* With a flusher: it starts, and readers stop at the damage all the same. */
	flip_bit(path, off + SHMWAL_FRAME_HDR + 3, 2);
	{
		pid_t pid = th_flusher_start(w->dir, 0);
		struct shmwal *h;

		assert_true(pid > 0);
		assert_int_equal(th_open(w->dir, &h), 0); /* it serves: start-up accepted it */
		expect_read(fx, w, idx, -EBADMSG, name, "live reader");
		assert_non_null(strstr(fx->err, at));
		shmwal_close(h);
		assert_int_equal(th_flusher_stop(pid), 0);
	}
}

/*
 * The same frame damage in the last segment is a torn tail: readers without a flusher stop
 * before it (no error, no later record), verify reports TORN-TAIL and exits 0, and recovery
 * cuts exactly there.
 */
static void test_last_segment_frame_damage_is_cut(void **state)
{
	struct fx *fx = *state;
	struct wal *w = &fx->a;
	uint64_t first, off;
	uint32_t idx, byte;
	char path[4300];
	uint8_t *orig;
	size_t len;
	struct meta m;

	fill_wal(fx, w, "a", PRODUCER_A, 300);
	first = w->segs.first[w->segs.n - 1];
	idx = rec_at(w, first + (w->end - first) / 2);
	assert_true(idx > 0 && idx + 1 < w->n && w->lsn[idx] > first);
	off = SHMWAL_SEG_HDR + w->lsn[idx] - first;
	seg_file(w, first, path, sizeof(path));
	orig = slurp_file(path, &len);
	m = load_meta(w);

	for (byte = 0; byte < SHMWAL_FRAME_HDR + 8; byte++) {
		struct seg_recovery r;
		char what[64];

		if (byte == 4 || byte == 5)
			continue;
		snprintf(what, sizeof(what), "last segment, frame byte %u", byte);
		put_file(path, orig, len);
		flip_bit(path, off + byte, (int)(byte % 8));
		expect_read(fx, w, idx, -ETIMEDOUT, NULL, what);
		if (byte % 4 == 0)
			expect_cli(fx, "verify", w->dir, 0, "TORN-TAIL", what);
		assert_int_equal(recover_partition(&m, 0, 0, NULL, NULL, &r), 0);
		assert_int_equal(r.end, w->lsn[idx]);
		assert_int_equal(file_size(path), (int64_t)off);
		expect_read(fx, w, idx, -ETIMEDOUT, NULL, what);
	}
	free(orig);
}

/*
 * Readers check frames in groups (persist/reader.c, check_ahead: the frame at the position,
 * then four checksums at a time, up to 33 frames). Damage at each of the first 70 frames of a
 * sealed segment, so at every place in a group and in a batch, the last byte the checksum
 * covers (the chains' short tail) or one in the middle: readers return exactly the records
 * before it, then -EBADMSG naming its offset.
 */
static void test_damage_at_every_batch_position(void **state)
{
	struct fx *fx = *state;
	struct wal *w = &fx->a;
	uint64_t first;
	uint32_t base, j;
	char path[4300], name[24];

	fill_wal(fx, w, "a", PRODUCER_A, NREC);
	assert_true(w->segs.n >= 3);
	first = w->segs.first[1];
	base = rec_at(w, first);
	assert_true(w->lsn[base + 70] < w->segs.first[2]);
	seg_file(w, first, path, sizeof(path));
	shmwal_segment_name(name, first);
	for (j = 0; j < 70; j++) {
		uint32_t idx = base + j;
		uint64_t off = SHMWAL_SEG_HDR + w->lsn[idx] - first;
		uint64_t byte = j % 2 ? w->len[idx] - 1 : SHMWAL_FRAME_HDR + (w->len[idx] - 32) / 2;
		char at[64], what[64];

		snprintf(at, sizeof(at), "offset %" PRIu64, off);
		snprintf(what, sizeof(what), "frame %u of the segment, byte %" PRIu64, j, byte);
		flip_bit(path, off + byte, (int)(j % 8));
		expect_read(fx, w, idx, -EBADMSG, name, what);
		if (!strstr(fx->err, at))
			fail_msg("%s: \"%s\" does not name %s", what, fx->err, at);
		flip_bit(path, off + byte, (int)(j % 8));
	}
	expect_read(fx, w, w->n, -ETIMEDOUT, NULL, "restored");
}

/* A frame whose own LSN is wrong but whose checksum matches (stale bytes) is damage. */
static void test_wrong_lsn_good_crc(void **state)
{
	struct fx *fx = *state;
	struct wal *w = &fx->a;
	struct shmwal_frame hdr;
	uint64_t first, off, deltas[] = { 8, (uint64_t)-8, 1ull << 40, 0 };
	uint32_t idx, crc, i;
	char path[4300], name[24], at[64];
	uint8_t *frame;
	int fd;

	fill_wal(fx, w, "a", PRODUCER_A, NREC);
	first = w->segs.first[1];
	idx = rec_at(w, first) + 3;
	off = SHMWAL_SEG_HDR + w->lsn[idx] - first;
	seg_file(w, first, path, sizeof(path));
	shmwal_segment_name(name, first);
	snprintf(at, sizeof(at), "offset %" PRIu64, off);
	frame = malloc(w->flen[idx]);
	assert_non_null(frame);
	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, frame, w->flen[idx], (off_t)off), (ssize_t)w->flen[idx]);

	for (i = 0; i < sizeof(deltas) / sizeof(deltas[0]); i++) {
		uint64_t lsn = w->lsn[idx] + deltas[i];

		memcpy(&hdr, frame, sizeof(hdr));
		memcpy(frame + 16, &lsn, 8);
		crc = shmwal_frame_crc((const struct shmwal_frame *)(void *)frame,
				       shmwal_word_len(hdr.word));
		memcpy(frame + 8, &crc, 4);
		assert_int_equal(pwrite(fd, frame, w->flen[idx], (off_t)off), (ssize_t)w->flen[idx]);
		if (deltas[i] == 0) {
			expect_read(fx, w, w->n, -ETIMEDOUT, NULL, "control: the right LSN");
			continue;
		}
		expect_read(fx, w, idx, -EBADMSG, name, "wrong own LSN");
		assert_non_null(strstr(fx->err, at));
		assert_non_null(strstr(fx->err, "LSN"));
		expect_cli(fx, "verify", w->dir, 1, at, "wrong own LSN");
	}
	close(fd);
	free(frame);
}

/*
 * Every bit of a sealed segment's 64-byte header: recovery refuses (-EBADMSG naming the file),
 * readers return exactly the records before that segment and then -EBADMSG naming it, and
 * verify exits 1.
 */
static void test_sealed_header_bitflips(void **state)
{
	struct fx *fx = *state;
	struct wal *w = &fx->a;
	uint64_t first;
	uint32_t before, byte;
	char path[4300], name[24];
	struct meta m;
	int bit;

	fill_wal(fx, w, "a", PRODUCER_A, NREC);
	first = w->segs.first[2];
	before = rec_at(w, first);
	seg_file(w, first, path, sizeof(path));
	shmwal_segment_name(name, first);
	m = load_meta(w);

	for (byte = 0; byte < SHMWAL_SEG_HDR; byte++) {
		for (bit = 0; bit < 8; bit++) {
			struct seg_recovery r;
			char what[64];

			snprintf(what, sizeof(what), "segment header byte %u bit %d", byte, bit);
			flip_bit(path, byte, bit);
			if (recover_partition(&m, 0, 0, NULL, NULL, &r) != -EBADMSG ||
			    !strstr(shmwal_last_error(), name))
				fail_msg("%s: recovery did not refuse: %s", what,
					 shmwal_last_error());
			expect_read(fx, w, before, -EBADMSG, name, what);
			if ((uint32_t)bit == byte % 8)
				expect_cli(fx, "verify", w->dir, 1, name, what);
			flip_bit(path, byte, bit);
		}
	}
	expect_read(fx, w, w->n, -ETIMEDOUT, NULL, "restored");
}

/* ---- foreign, missing, empty and odd files ---------------------------------------------- */

/* Copies from's first segment over to's (its path in `path`); returns its length. */
static size_t copy_first_segment(const struct wal *from, const struct wal *to, char *path,
				 size_t cap)
{
	char pfrom[4300];
	uint8_t *bytes;
	size_t len;

	seg_file(to, 0, path, cap);
	seg_file(from, 0, pfrom, sizeof(pfrom));
	bytes = slurp_file(pfrom, &len);
	put_file(path, bytes, len);
	free(bytes);
	return len;
}

/*
 * Segments of another WAL instance: a WAL "b" written exactly like "a" (same LSNs, same
 * segment names), but by another producer id. Its segment copied over a's (sealed, or the
 * last one) has frames whose own LSNs are right; none of b's records may ever be returned as
 * a's: readers fail with -EBADMSG naming the instance, verify exits 1, recovery refuses.
 */
static void test_foreign_segments(void **state)
{
	struct fx *fx = *state;
	struct wal *a = &fx->a, *b = &fx->b;
	char pa[4300];
	size_t len;
	struct meta m;
	struct seg_recovery r;

	fill_wal(fx, a, "a", PRODUCER_A, 40); /* one segment each */
	fill_wal(fx, b, "b", PRODUCER_B, 40);
	assert_int_equal(a->segs.n, 1);
	assert_int_equal(b->segs.n, 1);
	assert_memory_equal(a->lsn, b->lsn, sizeof(a->lsn[0]) * 40);
	m = load_meta(a);

	/* the last (only) segment */
	len = copy_first_segment(b, a, pa, sizeof(pa));
	expect_read(fx, a, 0, -EBADMSG, "another WAL instance", "foreign last segment");
	expect_cli(fx, "verify", a->dir, 1, "another WAL instance", "foreign last segment");
	expect_cli(fx, "dump", a->dir, 1, "another WAL instance", "foreign last segment");
	assert_int_equal(recover_partition(&m, 0, 0, NULL, NULL, &r), -EBADMSG);
	assert_non_null(strstr(shmwal_last_error(), "another WAL instance"));
	assert_int_equal(file_size(pa), (int64_t)len); /* untouched */
	assert_int_equal(flusher_once(fx, a, 0), -EBADMSG);
	assert_non_null(strstr(fx->err, "another WAL instance"));

	/* sealed segments: two WALs of several segments each */
	seg_list_free(&a->segs);
	seg_list_free(&b->segs);
	th_destroy(a->dir);
	th_destroy(b->dir);
	fill_wal(fx, a, "a", PRODUCER_A, NREC);
	fill_wal(fx, b, "b", PRODUCER_B, NREC);
	assert_true(a->segs.n >= 3 && b->segs.n >= 2);
	assert_int_equal(a->segs.first[0], 0);
	assert_int_equal(b->segs.first[0], 0);
	m = load_meta(a);
	copy_first_segment(b, a, pa, sizeof(pa));
	expect_read(fx, a, 0, -EBADMSG, "another WAL instance", "foreign sealed segment");
	expect_cli(fx, "verify", a->dir, 1, "another WAL instance", "foreign sealed segment");
	assert_int_equal(recover_partition(&m, 0, 0, NULL, NULL, &r), -EBADMSG);
	assert_int_equal(flusher_once(fx, a, 0), -EBADMSG);
	assert_non_null(strstr(fx->err, "another WAL instance"));
}

/*
 * A segment missing in the middle: recovery refuses (the one before the gap is shorter than
 * its LSN range); readers return exactly the records before the gap, then -EBADMSG saying
 * records are missing; verify exits 1. A --repair start moves the segment before the gap and
 * every later one aside; then exactly the records of the earlier segments remain.
 */
static void test_missing_middle_segment(void **state)
{
	struct fx *fx = *state;
	struct wal *w = &fx->a;
	char path[4300], name[24];
	uint32_t upto, keep;

	fill_wal(fx, w, "a", PRODUCER_A, NREC);
	assert_true(w->segs.n >= 4);
	seg_file(w, w->segs.first[2], path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	upto = rec_at(w, w->segs.first[2]);
	keep = rec_at(w, w->segs.first[1]);
	shmwal_segment_name(name, w->segs.first[1]);

	expect_read(fx, w, upto, -EBADMSG, "records missing", "missing middle segment");
	assert_non_null(strstr(fx->err, name));
	expect_cli(fx, "verify", w->dir, 1, "records missing", "missing middle segment");
	expect_cli(fx, "dump", w->dir, 1, "records missing", "missing middle segment");
	assert_int_equal(flusher_once(fx, w, 0), -EBADMSG);
	assert_non_null(strstr(fx->err, name));
	assert_non_null(strstr(fx->err, "data missing"));

	assert_int_equal(flusher_once(fx, w, 1), 0);
	expect_read(fx, w, keep, -ETIMEDOUT, NULL, "after --repair");
	expect_cli(fx, "verify", w->dir, 0, ": ok", "after --repair");
}

/*
 * Zero-length files. After the last segment: an interrupted segment creation - readers return
 * every record, verify says TORN-TAIL and exits 0, and a flusher moves it aside. In place of a
 * sealed segment: damage everywhere. As DIR/meta: every consumer refuses with -EBADMSG.
 */
static void test_zero_length_files(void **state)
{
	struct fx *fx = *state;
	struct wal *w = &fx->a;
	char path[4300], meta[4200];
	uint8_t *bytes;
	size_t len;
	struct shmwal *h;
	struct shmwal_reader *r;
	uint32_t before;

	fill_wal(fx, w, "a", PRODUCER_A, NREC);
	seg_file(w, w->end, path, sizeof(path));
	put_file(path, NULL, 0);
	expect_read(fx, w, w->n, -ETIMEDOUT, NULL, "empty newest segment");
	expect_cli(fx, "verify", w->dir, 0, "TORN-TAIL", "empty newest segment");
	assert_int_equal(flusher_once(fx, w, 0), 0);
	assert_true(file_size(path) != 0); /* moved aside (and perhaps made anew) */
	expect_read(fx, w, w->n, -ETIMEDOUT, NULL, "after the flusher");
	expect_cli(fx, "verify", w->dir, 0, ": ok", "after the flusher");

	/* a sealed segment emptied */
	seg_file(w, w->segs.first[1], path, sizeof(path));
	bytes = slurp_file(path, &len);
	put_file(path, NULL, 0);
	before = rec_at(w, w->segs.first[1]);
	expect_read(fx, w, before, -EBADMSG, "shorter than a segment header", "empty sealed");
	expect_cli(fx, "verify", w->dir, 1, "shorter than a segment header", "empty sealed");
	assert_int_equal(flusher_once(fx, w, 0), -EBADMSG);
	put_file(path, bytes, len);
	free(bytes);
	expect_read(fx, w, w->n, -ETIMEDOUT, NULL, "restored");

	/* DIR/meta emptied */
	fmt(meta, sizeof(meta), "%s/meta", w->dir);
	bytes = slurp_file(meta, &len);
	put_file(meta, NULL, 0);
	assert_int_equal(shmwal_reader_open(w->dir, 0, SHMWAL_LSN_OLDEST, &r), -EBADMSG);
	assert_int_equal(shmwal_open(w->dir, &h), -EBADMSG);
	assert_int_equal(flusher_once(fx, w, 0), -EBADMSG);
	expect_cli(fx, "verify", w->dir, 1, "meta", "empty meta");
	expect_cli(fx, "dump", w->dir, 1, "meta", "empty meta");
	put_file(meta, bytes, len);
	free(bytes);
	expect_read(fx, w, w->n, -ETIMEDOUT, NULL, "meta restored");
}

/*
 * Files that are not regular files where segments and DIR/meta belong: a FIFO (opening it for
 * reading would block until a writer comes: a hang), a directory and a symlink. Each consumer
 * fails with an error naming the file, in bounded time (every check runs under an alarm: a
 * hang kills the test program instead of passing).
 */
static void test_non_regular_files(void **state)
{
	struct fx *fx = *state;
	struct wal *w = &fx->a;
	char path[4300], meta[4200], aside[4300], name[24];
	struct shmwal_reader *r;
	struct meta m;
	struct seg_recovery rec;
	int kind;

	fill_wal(fx, w, "a", PRODUCER_A, NREC);
	m = load_meta(w);
	seg_file(w, w->segs.first[1], path, sizeof(path));
	fmt(aside, sizeof(aside), "%s/aside", fx->tmp);
	shmwal_segment_name(name, w->segs.first[1]);
	assert_int_equal(rename(path, aside), 0);
	alarm(TH_TIMEOUT_S);
	for (kind = 0; kind < 3; kind++) {
		const char *what = kind == 0 ? "FIFO segment" : kind == 1 ? "directory segment"
									   : "symlink segment";

		if (kind == 0)
			assert_int_equal(mkfifo(path, 0600), 0);
		else if (kind == 1)
			assert_int_equal(mkdir(path, 0700), 0);
		else
			assert_int_equal(symlink(aside, path), 0);
		/* readers map a segment when they reach it: the records before it, then an
		 * error naming it */
		{
			int rc;
			uint32_t got = read_back(fx, w, &rc);

			if (got != rec_at(w, w->segs.first[1]) || rc >= 0 || rc == -ETIMEDOUT ||
			    !strstr(fx->err, name))
				fail_msg("%s: read %u records, ending with %d (%s)", what, got, rc,
					 fx->err);
		}
		assert_true(recover_partition(&m, 0, 0, NULL, NULL, &rec) < 0);
		assert_non_null(strstr(shmwal_last_error(), name));
		expect_cli(fx, "verify", w->dir, 1, name, what);
		assert_true(flusher_once(fx, w, 0) < 0);
		if (kind == 1)
			assert_int_equal(rmdir(path), 0);
		else
			assert_int_equal(unlink(path), 0);
	}
	assert_int_equal(rename(aside, path), 0);
	expect_read(fx, w, w->n, -ETIMEDOUT, NULL, "restored");

	/* DIR/meta as a FIFO */
	fmt(meta, sizeof(meta), "%s/meta", w->dir);
	assert_int_equal(rename(meta, aside), 0);
	assert_int_equal(mkfifo(meta, 0600), 0);
	assert_int_equal(shmwal_reader_open(w->dir, 0, SHMWAL_LSN_OLDEST, &r), -EBADMSG);
	assert_non_null(strstr(shmwal_last_error(), "not a regular file"));
	expect_cli(fx, "verify", w->dir, 1, "not a regular file", "FIFO meta");
	assert_int_equal(flusher_once(fx, w, 0), -EBADMSG);
	assert_int_equal(unlink(meta), 0);
	assert_int_equal(rename(aside, meta), 0);
	alarm(0);
	expect_read(fx, w, w->n, -ETIMEDOUT, NULL, "meta restored");
}

/* Garbage files anywhere in the directory are ignored by every consumer and left alone. */
static void test_garbage_files(void **state)
{
	struct fx *fx = *state;
	struct wal *w = &fx->a;
	static const char *const junk[] = { "p000/notes.txt", "p000/0000000000000000.seg.tmp",
					    "p000/000000000000000g.seg", "p000/.hidden.seg",
					    "0000000000000000.seg", "p999", "junk", "meta.bak" };
	char path[4300];
	size_t i;

	fill_wal(fx, w, "a", PRODUCER_A, NREC);
	for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		fmt(path, sizeof(path), "%s/%s", w->dir, junk[i]);
		put_file(path, "garbage\n", 8);
	}
	expect_read(fx, w, w->n, -ETIMEDOUT, NULL, "garbage files");
	expect_cli(fx, "verify", w->dir, 0, "not a segment file", "garbage files");
	assert_int_equal(flusher_once(fx, w, 0), 0);
	expect_read(fx, w, w->n, -ETIMEDOUT, NULL, "after a flusher");
	for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		fmt(path, sizeof(path), "%s/%s", w->dir, junk[i]);
		assert_int_equal(file_size(path), 8);
	}
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_tail_truncated_every_offset),
		T(test_sealed_frame_bitflips),
		T(test_last_segment_frame_damage_is_cut),
		T(test_damage_at_every_batch_position),
		T(test_wrong_lsn_good_crc),
		T(test_sealed_header_bitflips),
		T(test_foreign_segments),
		T(test_missing_middle_segment),
		T(test_zero_length_files),
		T(test_non_regular_files),
		T(test_garbage_files),
	};
#undef T

	find_binary();
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
