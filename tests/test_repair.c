/* SPDX-License-Identifier: MIT */
/*
 * test_repair.c - shmwal_repair() interrupted by a crash at each file operation it makes, on
 * both backends, then taken from there by a second repair, or by a flusher and then a repair.
 *
 * The log: one partition of several 64 KiB segments, stamped records, one of them damaged in
 * the middle of the second segment (a sealed one). A child process runs the repair with the
 * file-operation seam (persist/io.h) set to exit the process at the n-th call, before that
 * call takes effect: what a kill or a crash leaves (not a power cut: the power-loss model of
 * test_powerloss.c does not replay repairs). For every n until the repair completes:
 *   - right after the crash, no byte of the damaged log is lost: every segment is in the
 *     partition directory as it was or, whole, in the quarantine; the damaged segment is
 *     there as it was, or cut, and then its cut-off bytes are in the quarantine, whole;
 *   - a second repair (or a flusher that starts and stops, then a repair) ends with the log
 *     a repair without a crash makes: verify finds no damage, readers find exactly the
 *     records before the damaged one, intact and in order, the kept segments are the old
 *     bytes, the quarantine holds every byte cut off, and a flusher appends at the cut.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "shmwal_format.h"
#include "helpers.h"
#include "persist/io.h"

#define NREC	3000
#define VALUE	60
#define CRASHED 77 /* the child's exit status when the seam ended it */

struct fx {
	enum shmwal_backend backend;
	char *tmp;		/* holds the directories below */
	char tpl[4096];		/* the damaged log, kept as it is */
	char wal[4096];		/* a copy a repair works on */
	uint64_t lsn[NREC + 1]; /* the records' LSNs; lsn[NREC]: where the log ends */
	uint64_t firsts[16];	/* segments' first LSNs */
	int nseg;
	int k;		     /* the damaged segment */
	uint64_t cut;	     /* the damaged record's LSN */
	uint32_t before;     /* records before it */
	uint64_t damage_off; /* the byte flipped, in segment k */
	char *seg[16];	     /* the damaged log's segment files */
	size_t seg_len[16];
	pid_t flusher;
};

/* ---- files ------------------------------------------------------------------------------- */

static void copy_file(const char *from, const char *to)
{
	size_t len;
	char *b = th_file_read(from, &len);
	int fd;

	assert_non_null(b);
	fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, b, len), (ssize_t)len);
	close(fd);
	free(b);
}

/* Copies a WAL directory (files, and files one directory down). */
static void copy_wal(const char *from, const char *to)
{
	struct dirent *e;
	DIR *d = opendir(from);

	assert_non_null(d);
	assert_int_equal(mkdir(to, 0700), 0);
	while ((e = readdir(d))) {
		char a[4400], b[4400];
		struct stat st;

		if (e->d_name[0] == '.')
			continue;
		snprintf(a, sizeof(a), "%s/%s", from, e->d_name);
		snprintf(b, sizeof(b), "%s/%s", to, e->d_name);
		assert_int_equal(lstat(a, &st), 0);
		if (S_ISDIR(st.st_mode)) {
			struct dirent *e2;
			DIR *d2 = opendir(a);

			assert_non_null(d2);
			assert_int_equal(mkdir(b, 0700), 0);
			while ((e2 = readdir(d2))) {
				char a2[4700], b2[4700];

				if (e2->d_name[0] == '.')
					continue;
				snprintf(a2, sizeof(a2), "%s/%s", a, e2->d_name);
				snprintf(b2, sizeof(b2), "%s/%s", b, e2->d_name);
				copy_file(a2, b2);
			}
			closedir(d2);
		} else {
			copy_file(a, b);
		}
	}
	closedir(d);
}

static void rm_wal(const char *dir)
{
	char *cmd;

	th_shm_unlink(dir);
	assert_true(asprintf(&cmd, "rm -rf '%s'", dir) > 0);
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

static void seg_file(const char *wal, uint64_t first, char *buf, size_t len)
{
	char name[32];

	shmwal_segment_name(name, first);
	assert_true(snprintf(buf, len, "%s/p000/%s", wal, name) < (int)len);
}

/* Partition 0's segments, ascending. */
static int list_segments(const char *wal, uint64_t *firsts, int max)
{
	char pdir[4200];
	struct dirent *e;
	int n = 0;
	DIR *d;

	snprintf(pdir, sizeof(pdir), "%s/p000", wal);
	d = opendir(pdir);
	assert_non_null(d);
	while ((e = readdir(d))) {
		uint64_t first;

		if (shmwal_segment_name_parse(e->d_name, &first) == 0) {
			assert_true(n < max);
			firsts[n++] = first;
		}
	}
	closedir(d);
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && firsts[j - 1] > firsts[j]; j--) {
			uint64_t t = firsts[j];

			firsts[j] = firsts[j - 1];
			firsts[j - 1] = t;
		}
	return n;
}

/* How many complete files in wal's quarantine are named for `first` and equal `want`
 * (len bytes; header, if not NULL, replaces their first 64 bytes in the comparison). */
static int quarantined(const char *wal, uint64_t first, const struct shmwal_segment_header *hdr,
		       const char *want, size_t len)
{
	char q[4200], prefix[64], name[32];
	struct dirent *e;
	int found = 0;
	DIR *d;

	shmwal_segment_name(name, first);
	snprintf(prefix, sizeof(prefix), "p000-%s.", name);
	snprintf(q, sizeof(q), "%s/quarantine", wal);
	if (!(d = opendir(q)))
		return 0;
	while ((e = readdir(d))) {
		char path[4500];
		size_t n;
		char *b;

		if (strncmp(e->d_name, prefix, strlen(prefix)) || strstr(e->d_name, ".partial"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", q, e->d_name);
		b = th_file_read(path, &n);
		if (b && hdr && n == SHMWAL_SEG_HDR + len && !memcmp(b, hdr, SHMWAL_SEG_HDR) &&
		    !memcmp(b + SHMWAL_SEG_HDR, want, len))
			found++;
		if (b && !hdr && n == len && !memcmp(b, want, len))
			found++;
		free(b);
	}
	closedir(d);
	return found;
}

/* ---- the damaged log --------------------------------------------------------------------- */

/* Flips bits of the byte at off in the file at path. */
static void flip(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	uint8_t b;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0x40;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

static int setup(void **state, enum shmwal_backend backend)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct shmwal *w;
	uint8_t val[VALUE];
	char key[32], path[4300];
	uint64_t off;
	pid_t pid;

	if (!f)
		return -1;
	*state = f;
	f->backend = backend;
	f->tmp = th_tmpdir("repair");
	assert_non_null(f->tmp);
	snprintf(f->tpl, sizeof(f->tpl), "%s/tpl", f->tmp);
	snprintf(f->wal, sizeof(f->wal), "%s/wal", f->tmp);
	assert_int_equal(
	    th_create_backend(f->tpl, 1, 64 << 10, 64 << 10, 1024, SHMWAL_SYNC_NONE, backend), 0);
	pid = th_flusher_start(f->tpl, 0);
	assert_true(pid > 0);
	EXPECT_OK(th_open(f->tpl, &w));
	for (uint32_t i = 0; i < NREC; i++) {
		uint32_t klen = th_key(key, 0, 0, i);

		th_fill(val, VALUE, 0, 0, i);
		EXPECT_OK(shmwal_append(w, 0, SHMWAL_TYPE_PUT, key, klen, val, VALUE, &f->lsn[i]));
	}
	f->lsn[NREC] = f->lsn[NREC - 1] +
		       SHMWAL_ALIGN_UP(SHMWAL_FRAME_HDR + th_key(key, 0, 0, NREC - 1) + VALUE);
	EXPECT_OK(shmwal_wait_durable(w, 0, f->lsn[NREC - 1], TH_TIMEOUT_S * SHMWAL_NS_PER_SEC));
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(pid), 0);

	f->nseg = list_segments(f->tpl, f->firsts, 16);
	assert_true(f->nseg >= 4);
	/* a record in the middle of the second segment: its value's bytes */
	f->k = 1;
	while (f->lsn[f->before] < f->firsts[1] + (f->firsts[2] - f->firsts[1]) / 2)
		f->before++;
	f->cut = f->lsn[f->before];
	seg_file(f->tpl, f->firsts[f->k], path, sizeof(path));
	off = SHMWAL_SEG_HDR + f->cut - f->firsts[f->k] + SHMWAL_FRAME_HDR + 20;
	f->damage_off = off;
	flip(path, off);
	for (int i = 0; i < f->nseg; i++) {
		seg_file(f->tpl, f->firsts[i], path, sizeof(path));
		f->seg[i] = th_file_read(path, &f->seg_len[i]);
		assert_non_null(f->seg[i]);
	}
	assert_int_equal(shmwal_verify(f->tpl, 0, NULL, NULL), 1);
	return 0;
}

static int setup_file(void **state)
{
	return setup(state, SHMWAL_BACKEND_FILE);
}
static int setup_pmem(void **state)
{
	return setup(state, SHMWAL_BACKEND_PMEM);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->flusher > 0)
		th_flusher_stop(f->flusher);
	th_shm_unlink(f->wal);
	th_shm_unlink(f->tpl);
	th_destroy(f->tmp);
	free(f->tmp);
	for (int i = 0; i < f->nseg; i++)
		free(f->seg[i]);
	free(f);
	return 0;
}

/* ---- the crash --------------------------------------------------------------------------- */

static long calls, crash_at; /* in the child only */

static void tick(void)
{
	if (calls++ == crash_at)
		_exit(CRASHED);
}

static int c_open(const char *path, int flags, mode_t mode)
{
	tick();
	return io_default.open(path, flags, mode);
}
static ssize_t c_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	tick();
	return io_default.pwrite(fd, buf, len, off);
}
static int c_fdatasync(int fd)
{
	tick();
	return io_default.fdatasync(fd);
}
static int c_ftruncate(int fd, off_t len)
{
	tick();
	return io_default.ftruncate(fd, len);
}
static int c_unlink(const char *path)
{
	tick();
	return io_default.unlink(path);
}
static int c_rename(const char *a, const char *b)
{
	tick();
	return io_default.rename(a, b);
}
static int c_mkdir(const char *path, mode_t mode)
{
	tick();
	return io_default.mkdir(path, mode);
}
static int c_fsync_dir(const char *path)
{
	tick();
	return io_default.fsync_dir(path);
}
static int c_close(int fd)
{
	tick();
	return io_default.close(fd);
}
static int c_fallocate(int fd, off_t len)
{
	tick();
	return io_default.fallocate(fd, len);
}

/*
 * Runs shmwal_repair(wal, 0, AUTO) in a child whose file operations end it at call number
 * `at` (-1: never). Returns the child's exit status: CRASHED, 0 (the repair completed), 1;
 * *ncalls (if not NULL) gets how many calls the repair made, when it completed.
 */
static int repair_crashing_at(const char *wal, long at, long *ncalls)
{
	uint64_t *shared = th_shared_counters(1);
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		static struct io_ops ops;
		int rc;

		ops = io_default;
		ops.open = c_open;
		ops.pwrite = c_pwrite;
		ops.fdatasync = c_fdatasync;
		ops.ftruncate = c_ftruncate;
		ops.unlink = c_unlink;
		ops.rename = c_rename;
		ops.mkdir = c_mkdir;
		ops.fsync_dir = c_fsync_dir;
		ops.close = c_close;
		ops.fallocate = c_fallocate;
		crash_at = at;
		io_set(&ops);
		rc = shmwal_repair(wal, 0, SHMWAL_REPAIR_AUTO, NULL, NULL);
		if (rc < 0)
			fprintf(stderr, "repair: %s\n", shmwal_last_error());
		shared[0] = (uint64_t)calls;
		_exit(rc < 0 ? 1 : 0);
	}
	status = th_wait(pid, TH_TIMEOUT_S);
	if (ncalls)
		*ncalls = (long)shared[0];
	munmap(shared, sizeof(*shared));
	return status;
}

/* ---- checks ------------------------------------------------------------------------------ */

/* The header a repair writes before the bytes it cuts off the damaged segment. */
static void cut_header(const struct fx *f, struct shmwal_segment_header *h)
{
	struct shmwal_segment_header orig;

	memcpy(&orig, f->seg[f->k], sizeof(orig));
	shmwal_segment_header_init(h, 0, f->cut, orig.instance, orig.created_ns);
}

/* Right after a crash: every byte of the damaged log is in the partition or the quarantine. */
static void expect_nothing_lost(const struct fx *f, long at)
{
	const uint64_t keep = SHMWAL_SEG_HDR + f->cut - f->firsts[f->k];
	struct shmwal_segment_header h;
	char path[4300];

	cut_header(f, &h);
	for (int i = 0; i < f->nseg; i++) {
		size_t len;
		char *b;

		seg_file(f->wal, f->firsts[i], path, sizeof(path));
		b = th_file_read(path, &len);
		if (b && len == f->seg_len[i] && !memcmp(b, f->seg[i], len)) {
			free(b); /* where it was, as it was */
			continue;
		}
		if (i != f->k) {
			if (b)
				fail_msg("crash at call %ld: %s changed", at, path);
			if (quarantined(f->wal, f->firsts[i], NULL, f->seg[i], f->seg_len[i]) < 1)
				fail_msg("crash at call %ld: %s is gone and not in the quarantine",
					 at, path);
			continue;
		}
		/* the damaged segment, cut: its kept part, and the rest in the quarantine */
		if (!b || len < keep || memcmp(b, f->seg[i], keep))
			fail_msg("crash at call %ld: %s is neither what it was nor cut", at, path);
		if (quarantined(f->wal, f->cut, &h, f->seg[i] + keep, f->seg_len[i] - keep) < 1)
			fail_msg("crash at call %ld: %s was cut, and the quarantine lacks the rest",
				 at, path);
		free(b);
	}
}

/* The log a repair makes: segments 0..k, k cut at the damaged record; everything cut off in
 * the quarantine; verify clean; readers find the records before the damage, intact. */
static void expect_repaired(const struct fx *f, const char *what)
{
	const uint64_t keep = SHMWAL_SEG_HDR + f->cut - f->firsts[f->k];
	struct shmwal_verify_stat vst;
	struct shmwal_segment_header h;
	struct shmwal_reader *r;
	struct shmwal_record rec;
	uint64_t firsts[16];
	char path[4300];
	uint32_t n = 0;
	int rc;

	assert_int_equal(list_segments(f->wal, firsts, 16), f->k + 1);
	for (int i = 0; i <= f->k; i++) {
		size_t len;
		char *b;

		assert_true(firsts[i] == f->firsts[i]);
		seg_file(f->wal, firsts[i], path, sizeof(path));
		b = th_file_read(path, &len);
		assert_non_null(b);
		if (i < f->k) {
			assert_int_equal(len, f->seg_len[i]);
			assert_memory_equal(b, f->seg[i], len);
		} else {
			assert_memory_equal(b, f->seg[i], keep);
			if (f->backend == SHMWAL_BACKEND_PMEM) {
				assert_int_equal(len, f->seg_len[i]);
				for (size_t j = keep; j < len; j++)
					if (b[j])
						fail_msg("%s: byte %zu past the cut is not zero",
							 what, j);
			} else {
				if (len != keep)
					fail_msg("%s: %s has %zu bytes, not %" PRIu64, what, path,
						 len, keep);
			}
		}
		free(b);
	}
	for (int i = f->k + 1; i < f->nseg; i++)
		if (quarantined(f->wal, f->firsts[i], NULL, f->seg[i], f->seg_len[i]) < 1)
			fail_msg("%s: segment %d is not in the quarantine", what, i);
	cut_header(f, &h);
	if (quarantined(f->wal, f->cut, &h, f->seg[f->k] + keep, f->seg_len[f->k] - keep) < 1)
		fail_msg("%s: the bytes cut off segment %d are not in the quarantine", what, f->k);

	if (shmwal_verify(f->wal, 0, NULL, &vst) != 0)
		fail_msg("%s: verify finds damage", what);
	assert_true(vst.end_lsn == f->cut);
	EXPECT_OK(shmwal_reader_open(f->wal, 0, SHMWAL_LSN_OLDEST, &r));
	while ((rc = shmwal_reader_next(r, &rec, 0)) == 0) {
		struct th_stamp st;

		assert_true(n < f->before);
		assert_true(rec.lsn == f->lsn[n]);
		assert_int_equal(th_check(rec.value, rec.value_len, &st), 0);
		assert_true(st.seq == n);
		n++;
	}
	shmwal_reader_close(r);
	assert_int_equal(rc, -ETIMEDOUT);
	assert_int_equal(n, f->before);
}

/* A flusher starts on it and a new record takes the LSN `at`. */
static void expect_continues_at(struct fx *f, uint64_t at)
{
	struct shmwal *w;
	uint64_t lsn;

	f->flusher = th_flusher_start(f->wal, 0);
	assert_true(f->flusher > 0);
	EXPECT_OK(th_open(f->wal, &w));
	EXPECT_OK(shmwal_append(w, 0, SHMWAL_TYPE_PUT, "k", 1, "after", 5, &lsn));
	assert_true(lsn == at);
	EXPECT_OK(shmwal_wait_durable(w, 0, lsn, TH_TIMEOUT_S * SHMWAL_NS_PER_SEC));
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(f->flusher), 0);
	f->flusher = 0;
	assert_int_equal(shmwal_verify(f->wal, 0, NULL, NULL), 0);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void crash_everywhere(void **state)
{
	struct fx *f = *state;
	long calls_total = 0, at;
	char what[64];

	/* without a crash: how many calls a repair makes */
	copy_wal(f->tpl, f->wal);
	assert_int_equal(repair_crashing_at(f->wal, -1, &calls_total), 0);
	expect_repaired(f, "repair");
	expect_continues_at(f, f->cut);
	rm_wal(f->wal);
	assert_true(calls_total >= 10);
	print_message("a repair makes %ld file operations; a crash at each\n", calls_total);

	for (at = 0; at < calls_total; at++) {
		/* taken on by a second repair */
		copy_wal(f->tpl, f->wal);
		assert_int_equal(repair_crashing_at(f->wal, at, NULL), CRASHED);
		expect_nothing_lost(f, at);
		snprintf(what, sizeof(what), "crash at call %ld, then repair", at);
		if (shmwal_repair(f->wal, 0, SHMWAL_REPAIR_AUTO, NULL, NULL) < 0)
			fail_msg("%s: %s", what, shmwal_last_error());
		expect_repaired(f, what);
		rm_wal(f->wal);

		/* taken on by a flusher (which must start), then a repair */
		copy_wal(f->tpl, f->wal);
		assert_int_equal(repair_crashing_at(f->wal, at, NULL), CRASHED);
		snprintf(what, sizeof(what), "crash at call %ld, then a flusher, then repair", at);
		f->flusher = th_flusher_start(f->wal, 1);
		assert_true(f->flusher > 0);
		if (th_wait(f->flusher, TH_TIMEOUT_S) != 0)
			fail_msg("%s: the flusher did not start and stop cleanly", what);
		f->flusher = 0;
		if (shmwal_repair(f->wal, 0, SHMWAL_REPAIR_AUTO, NULL, NULL) < 0)
			fail_msg("%s: %s", what, shmwal_last_error());
		expect_repaired(f, what);
		if (at == calls_total / 2)
			expect_continues_at(f, f->cut);
		rm_wal(f->wal);
	}
}

/* The log without the damaged frame: a copy of the template with the byte flipped back. */
static void copy_undamaged(struct fx *f)
{
	char path[4300];

	copy_wal(f->tpl, f->wal);
	seg_file(f->wal, f->firsts[f->k], path, sizeof(path));
	flip(path, f->damage_off);
	assert_int_equal(shmwal_verify(f->wal, 0, NULL, NULL), 0);
}

/* Segments before `keep` are there as they were (segment 1 undamaged), the others are in the
 * quarantine, and the log reads up to `end`. */
static void expect_cut_before(struct fx *f, int keep, uint64_t end, const char *what)
{
	uint64_t firsts[16];
	uint32_t n = 0;
	struct shmwal_reader *r;
	struct shmwal_record rec;
	int rc, i;

	assert_int_equal(list_segments(f->wal, firsts, 16), keep);
	for (i = 0; i < keep; i++) {
		char path[4300], *b;
		size_t len;

		assert_true(firsts[i] == f->firsts[i]);
		seg_file(f->wal, firsts[i], path, sizeof(path));
		b = th_file_read(path, &len);
		assert_int_equal(len, f->seg_len[i]);
		if (i == f->k)
			b[f->damage_off] ^= 0x40; /* compare with the damaged bytes kept */
		assert_memory_equal(b, f->seg[i], len);
		free(b);
	}
	for (i = keep + 1; i < f->nseg; i++)
		if (quarantined(f->wal, f->firsts[i], NULL, f->seg[i], f->seg_len[i]) < 1)
			fail_msg("%s: segment %d is not in the quarantine", what, i);
	if (shmwal_verify(f->wal, 0, NULL, NULL) != 0)
		fail_msg("%s: verify finds damage", what);
	EXPECT_OK(shmwal_reader_open(f->wal, 0, SHMWAL_LSN_OLDEST, &r));
	while ((rc = shmwal_reader_next(r, &rec, 0)) == 0)
		assert_true(rec.lsn == f->lsn[n++]);
	shmwal_reader_close(r);
	assert_int_equal(rc, -ETIMEDOUT);
	assert_true(f->lsn[n] == end);
	expect_continues_at(f, end);
}

/*
 * Damage to whole segments: a header in the middle (the log ends where the segment before it
 * does), the first segment's header (nothing is kept: a new empty segment at its first LSN
 * keeps the LSNs going on from there), a segment missing from the middle (a gap).
 */
static void test_repair_whole_segments(void **state)
{
	struct fx *f = *state;
	struct shmwal_repair_result res;
	char path[4300], aside[4300];
	size_t len;
	char *b;
	int rc;

	copy_undamaged(f);
	seg_file(f->wal, f->firsts[2], path, sizeof(path));
	flip(path, 20); /* first_lsn: the header's checksum fails */
	b = th_file_read(path, &len);
	rc = shmwal_repair(f->wal, 0, SHMWAL_REPAIR_AUTO, NULL, &res);
	assert_int_equal(rc, f->nseg - 2);
	assert_true(res.end_lsn == f->firsts[2] && res.files_moved == (uint32_t)f->nseg - 2);
	assert_true(res.old_end_lsn == f->lsn[NREC] && res.bytes_copied == 0);
	assert_int_equal(quarantined(f->wal, f->firsts[2], NULL, b, len), 1);
	free(b);
	expect_cut_before(f, 2, f->firsts[2], "a damaged header in the middle");
	rm_wal(f->wal);

	copy_undamaged(f);
	seg_file(f->wal, f->firsts[0], path, sizeof(path));
	flip(path, 8); /* the version */
	b = th_file_read(path, &len);
	rc = shmwal_repair(f->wal, 0, SHMWAL_REPAIR_AUTO, NULL, &res);
	assert_int_equal(rc, f->nseg);
	assert_true(res.end_lsn == f->firsts[0] && res.bytes_copied == len);
	assert_int_equal(quarantined(f->wal, f->firsts[0], NULL, b, len), 1);
	free(b);
	b = th_file_read(path, &len);
	assert_int_equal(len, f->backend == SHMWAL_BACKEND_PMEM ? f->seg_len[0] : SHMWAL_SEG_HDR);
	{
		struct shmwal_segment_header h;
		const char *why;

		memcpy(&h, b, sizeof(h));
		assert_int_equal(shmwal_segment_header_check(&h, &why), 0);
		assert_true(h.first_lsn == f->firsts[0]);
	}
	free(b);
	assert_int_equal(list_segments(f->wal, (uint64_t[16]){0}, 16), 1);
	assert_int_equal(shmwal_verify(f->wal, 0, NULL, NULL), 0);
	expect_continues_at(f, f->firsts[0]);
	rm_wal(f->wal);

	copy_undamaged(f);
	seg_file(f->wal, f->firsts[2], path, sizeof(path));
	snprintf(aside, sizeof(aside), "%s/aside.seg", f->tmp);
	assert_int_equal(rename(path, aside), 0);
	assert_true(shmwal_verify(f->wal, 0, NULL, NULL) > 0);
	rc = shmwal_repair(f->wal, 0, SHMWAL_REPAIR_AUTO, NULL, &res);
	assert_int_equal(rc, f->nseg - 3);
	assert_true(res.end_lsn == f->firsts[2]);
	assert_int_equal(unlink(aside), 0);
	expect_cut_before(f, 2, f->firsts[2], "a missing segment");
	rm_wal(f->wal);
}

static void test_repair_whole_segments_pmem(void **state)
{
	test_repair_whole_segments(state);
}
static void test_repair_crash_file(void **state)
{
	crash_everywhere(state);
}
static void test_repair_crash_pmem(void **state)
{
	crash_everywhere(state);
}

/* Arguments: errors, and nothing changed. */
static void test_repair_arguments(void **state)
{
	struct fx *f = *state;
	struct shmwal_repair_result res;

	assert_int_equal(shmwal_repair(NULL, 0, 0, NULL, NULL), -EINVAL);
	assert_int_equal(shmwal_repair(f->tpl, 1, 0, NULL, NULL), -EINVAL);
	assert_non_null(strstr(shmwal_last_error(), "partition"));
	assert_int_equal(shmwal_verify(f->tpl, 1, NULL, NULL), -EINVAL);
	assert_int_equal(shmwal_repair(f->tmp, 0, 0, NULL, NULL), -ENOENT);
	/* not a boundary; past the end; damage before the cut in its segment */
	assert_int_equal(shmwal_repair(f->tpl, 0, f->lsn[10] + 8, NULL, &res), -EINVAL);
	assert_non_null(strstr(shmwal_last_error(), "not a frame boundary"));
	assert_int_equal(shmwal_repair(f->tpl, 0, f->lsn[NREC] + 8, NULL, NULL), -EINVAL);
	assert_int_equal(shmwal_repair(f->tpl, 0, f->lsn[f->before + 1], NULL, NULL), -EBADMSG);
	assert_non_null(strstr(shmwal_last_error(), "frame checksum"));
	assert_int_equal(shmwal_verify(f->tpl, 0, NULL, NULL), 1);
	for (int i = 0; i < f->nseg; i++) {
		char path[4300];
		size_t len;
		char *b;

		seg_file(f->tpl, f->firsts[i], path, sizeof(path));
		b = th_file_read(path, &len);
		assert_int_equal(len, f->seg_len[i]);
		assert_memory_equal(b, f->seg[i], len);
		free(b);
	}
	{
		char q[4200];
		struct stat st;

		snprintf(q, sizeof(q), "%s/quarantine", f->tpl);
		assert_int_equal(lstat(q, &st), -1);
	}
	/* the end of the log: nothing to do */
	assert_int_equal(shmwal_repair(f->tpl, 0, f->lsn[NREC], NULL, &res), 0);
	assert_true(res.end_lsn == f->lsn[NREC] && res.old_end_lsn == f->lsn[NREC]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_repair_arguments, setup_file, teardown),
	    cmocka_unit_test_setup_teardown(test_repair_whole_segments, setup_file, teardown),
	    cmocka_unit_test_setup_teardown(test_repair_whole_segments_pmem, setup_pmem, teardown),
	    cmocka_unit_test_setup_teardown(test_repair_crash_file, setup_file, teardown),
	    cmocka_unit_test_setup_teardown(test_repair_crash_pmem, setup_pmem, teardown),
	};

	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
