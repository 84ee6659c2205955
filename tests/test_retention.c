/* SPDX-License-Identifier: MIT */
/*
 * test_retention.c - retention policies (shmwal_retention_set/get, DIR/retention) and their
 * enforcement by a running flusher: by segment count, by bytes, by age with time-based
 * rotation, per partition, picked up live, kept through a damaged policy file, and never
 * taking a segment from under a reader or past the durable LSN.
 *
 * The flusher enforces asynchronously (a pass every ~100 ms), so each test waits for the
 * state it expects, up to TH_TIMEOUT_S, and then checks it exactly: no test assumes how soon.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "helpers.h"
#include "shmwal_format.h"

#define SEG (64u << 10) /* the smallest segment a WAL may have: many segments, quickly */
#define VAL 200u

struct usage {
	int n;		/* segment files */
	uint64_t bytes; /* their total size */
};

static struct usage usage_of(const char *dir, uint32_t part)
{
	struct usage u = {0, 0};
	char path[4096], f[4096 + 260];
	struct dirent *e;
	struct stat st;
	DIR *d;

	snprintf(path, sizeof(path), "%s/p%03u", dir, part);
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d))) {
		if (!strstr(e->d_name, ".seg"))
			continue;
		snprintf(f, sizeof(f), "%s/%s", path, e->d_name);
		if (stat(f, &st) == 0) {
			u.n++;
			u.bytes += (uint64_t)st.st_size;
		}
	}
	closedir(d);
	return u;
}

static void pause_ms(unsigned ms)
{
	struct timespec ts = {0, (long)ms * 1000000L};

	nanosleep(&ts, NULL);
}

/* Waits until partition `part` has at most `n` segment files (the flusher removes them). */
static void wait_segments_at_most(const char *dir, uint32_t part, int n)
{
	time_t deadline = time(NULL) + TH_TIMEOUT_S;

	while (usage_of(dir, part).n > n) {
		if (time(NULL) > deadline)
			fail_msg("partition %u still has %d segments, want <= %d", part,
				 usage_of(dir, part).n, n);
		pause_ms(10);
	}
}

/* Appends stamped records seq from..from+n-1 to `part` and waits until the last is durable. */
static void fill(struct shmwal *w, uint32_t part, uint64_t from, uint64_t n)
{
	uint8_t val[VAL];
	char key[32];
	uint64_t lsn = 0;

	for (uint64_t s = from; s < from + n; s++) {
		uint32_t klen = th_key(key, part, 0, s);

		th_fill(val, sizeof(val), part, 0, s);
		EXPECT_OK(
		    shmwal_append(w, part, SHMWAL_TYPE_PUT, key, klen, val, sizeof(val), &lsn));
	}
	EXPECT_OK(shmwal_wait_durable(w, part, lsn, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC));
}

/*
 * Reads the partition from the oldest retained record: the records must be seqs
 * first..last_seq with nothing missing and every byte intact. Returns the first seq.
 */
static uint64_t check_suffix(const char *dir, uint32_t part, uint64_t last_seq)
{
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct th_stamp st;
	uint64_t first = UINT64_MAX, next = 0;
	int rc;

	EXPECT_OK(shmwal_reader_open(dir, part, SHMWAL_LSN_OLDEST, &r));
	while ((rc = shmwal_reader_next(r, &rec, 0)) == 0) {
		assert_int_equal(th_check(rec.value, rec.value_len, &st), 0);
		assert_int_equal(st.producer, part);
		if (first == UINT64_MAX)
			first = next = st.seq;
		assert_int_equal(st.seq, next);
		next++;
	}
	assert_int_equal(rc, -ETIMEDOUT);
	shmwal_reader_close(r);
	assert_true(first != UINT64_MAX);
	assert_int_equal(next, last_seq + 1);
	return first;
}

/* The first record of partition 0 is at `lsn` and reads "old". */
static void check_suffix_raw(const char *dir, uint64_t lsn)
{
	struct shmwal_reader *r;
	struct shmwal_record rec;

	EXPECT_OK(shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r));
	EXPECT_OK(shmwal_reader_next(r, &rec, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC));
	assert_int_equal(rec.lsn, lsn);
	assert_int_equal(rec.value_len, 3);
	assert_memory_equal(rec.value, "old", 3);
	shmwal_reader_close(r);
}

static char *new_wal(uint32_t partitions, enum shmwal_sync sync)
{
	char *tmp = th_tmpdir("retain"), *dir = malloc(4096);

	assert_non_null(dir);
	snprintf(dir, 4096, "%s/wal", tmp);
	free(tmp);
	EXPECT_OK(th_create(dir, partitions, 1 << 20, SEG, VAL, sync));
	return dir;
}

static void done_wal(char *dir)
{
	char parent[4096];

	snprintf(parent, sizeof(parent), "%s", dir);
	*strrchr(parent, '/') = '\0';
	th_destroy(dir);
	rmdir(parent);
	free(dir);
}

/* The policy file: set, get, defaults, per-partition policies, removal, bad arguments, damage. */
static void test_policy_file(void **state)
{
	struct shmwal_retention a = {10, 1 << 30, 3600000, 60000}, b = {3, 0, 0, 0}, got;
	char *dir = new_wal(4, SHMWAL_SYNC_NONE), path[4200];
	char *before, *after;
	size_t len, len2;
	int fd;

	(void)state;
	/* nothing set: all zero */
	EXPECT_OK(shmwal_retention_get(dir, 2, &got));
	assert_true(!got.max_segments && !got.max_bytes && !got.max_age_ms && !got.rotate_age_ms);
	EXPECT_OK(shmwal_retention_set(dir, SHMWAL_ALL_PARTITIONS, &a));
	EXPECT_OK(shmwal_retention_set(dir, 1, &b));
	EXPECT_OK(shmwal_retention_get(dir, 1, &got));
	assert_memory_equal(&got, &b, sizeof(b));
	EXPECT_OK(shmwal_retention_get(dir, 0, &got)); /* no policy of its own: the default */
	assert_memory_equal(&got, &a, sizeof(a));
	EXPECT_OK(shmwal_retention_get(dir, SHMWAL_ALL_PARTITIONS, &got));
	assert_memory_equal(&got, &a, sizeof(a));
	/* NULL removes partition 1's own policy: it follows the default again */
	EXPECT_OK(shmwal_retention_set(dir, 1, NULL));
	EXPECT_OK(shmwal_retention_get(dir, 1, &got));
	assert_memory_equal(&got, &a, sizeof(a));
	/* bad arguments change nothing */
	assert_int_equal(shmwal_retention_set(dir, 4, &b), -EINVAL);
	assert_int_equal(shmwal_retention_get(dir, 4, &got), -EINVAL);
	b.max_age_ms = UINT64_MAX;
	assert_int_equal(shmwal_retention_set(dir, 0, &b), -EINVAL);
	assert_int_equal(shmwal_retention_set(NULL, 0, &b), -EINVAL);
	assert_int_equal(shmwal_retention_get(dir, 0, NULL), -EINVAL);
	EXPECT_OK(shmwal_retention_get(dir, 0, &got));
	assert_memory_equal(&got, &a, sizeof(a));
	/* damage (one byte) is reported, and the damaged file is not overwritten */
	snprintf(path, sizeof(path), "%s/retention", dir);
	before = th_file_read(path, &len);
	assert_non_null(before);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "9", 1, (off_t)(strstr(before, "all ") - before) + 4), 1);
	close(fd);
	assert_int_equal(shmwal_retention_get(dir, 0, &got), -EBADMSG);
	assert_non_null(strstr(shmwal_last_error(), "checksum"));
	assert_int_equal(shmwal_retention_set(dir, 0, &a), -EBADMSG);
	after = th_file_read(path, &len2);
	assert_non_null(after);
	assert_int_equal(len, len2);
	assert_int_equal(memcmp(before, after, len) != 0, 1); /* still the damaged bytes */
	assert_int_equal(after[(strstr(before, "all ") - before) + 4], '9');
	free(before);
	free(after);
	/* removed: no policy again */
	assert_int_equal(unlink(path), 0);
	EXPECT_OK(shmwal_retention_get(dir, 0, &got));
	assert_int_equal(got.max_segments, 0);
	/* no WAL */
	assert_int_equal(shmwal_retention_get("/nonexistent-shmwal-dir", 0, &got), -ENOENT);
	done_wal(dir);
}

/*
 * max_segments, set while the flusher runs: it goes down to exactly that many; a reader in
 * the oldest segment reads it to its end, then hears -ERANGE; the rest of the log is intact
 * and contiguous; stat counts what was removed.
 */
static void test_max_segments_live(void **state)
{
	struct shmwal_retention pol = {.max_segments = 3};
	char *dir = new_wal(1, SHMWAL_SYNC_NONE);
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal_stat *st = malloc(sizeof(*st));
	struct th_stamp stamp;
	struct usage u0;
	struct shmwal *w;
	uint64_t n = 4000, next = 0, first;
	int rc;
	pid_t fl;

	(void)state;
	assert_non_null(st);
	fl = th_flusher_start(dir, 0);
	assert_true(fl > 0);
	EXPECT_OK(th_open(dir, &w));
	fill(w, 0, 0, n); /* ~1 MiB of frames: 16 or so segments */
	u0 = usage_of(dir, 0);
	assert_true(u0.n >= 10);
	/* a reader in the oldest segment, which will be removed */
	EXPECT_OK(shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r));
	EXPECT_OK(shmwal_reader_next(r, &rec, 0));
	assert_int_equal(th_check(rec.value, rec.value_len, &stamp), 0);
	assert_int_equal(stamp.seq, next++);

	EXPECT_OK(shmwal_retention_set(dir, SHMWAL_ALL_PARTITIONS, &pol));
	wait_segments_at_most(dir, 0, 3);
	assert_int_equal(usage_of(dir, 0).n, 3);
	/* the reader reads its whole segment, in order, then learns the rest went */
	while ((rc = shmwal_reader_next(r, &rec, 0)) == 0) {
		assert_int_equal(th_check(rec.value, rec.value_len, &stamp), 0);
		assert_int_equal(stamp.seq, next++);
	}
	assert_int_equal(rc, -ERANGE);
	assert_true(next > 1 && next < n);
	shmwal_reader_close(r);
	/* what is left is a contiguous suffix up to the last record, bytes intact */
	first = check_suffix(dir, 0, n - 1);
	assert_true(first > next);
	/* counted once the removal returns (after its last directory sync) */
	{
		time_t deadline = time(NULL) + TH_TIMEOUT_S;

		for (;;) {
			EXPECT_OK(shmwal_stat(dir, st));
			if (st->part[0].retention_segments + 3 >= (uint64_t)u0.n)
				break;
			if (time(NULL) > deadline)
				fail_msg("retention counted %" PRIu64 " removed segments of %d",
					 st->part[0].retention_segments, u0.n);
			pause_ms(10);
		}
	}
	/* the flusher may have opened one more (empty) segment since u0 was taken */
	if (st->part[0].retention_segments + 3 < (uint64_t)u0.n ||
	    st->part[0].retention_segments + 3 > (uint64_t)u0.n + 1)
		fail_msg("retention removed %" PRIu64 " segments of %d (3 left)",
			 st->part[0].retention_segments, u0.n);
	assert_int_equal(st->part[0].segments, 3);
	assert_true(st->part[0].retention_bytes > 0);
	assert_true(st->part[0].oldest > 0 && st->part[0].oldest <= st->part[0].seg_first);
	/* appends go on, and the count stays bounded */
	fill(w, 0, n, n);
	wait_segments_at_most(dir, 0, 3);
	check_suffix(dir, 0, 2 * n - 1);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	free(st);
	done_wal(dir);
}

/* max_bytes, set before the flusher starts, per partition: partition 1 is cut down to its
 * budget, partition 0 (no policy) keeps everything. */
static void test_max_bytes_per_partition(void **state)
{
	struct shmwal_retention pol = {.max_bytes = 5 * SEG};
	char *dir = new_wal(2, SHMWAL_SYNC_ALWAYS);
	struct usage u;
	struct shmwal *w;
	uint64_t n = 2500;
	pid_t fl;

	(void)state;
	EXPECT_OK(shmwal_retention_set(dir, 1, &pol));
	fl = th_flusher_start(dir, 0);
	assert_true(fl > 0);
	EXPECT_OK(th_open(dir, &w));
	fill(w, 0, 0, n);
	fill(w, 1, 0, n);
	/* at most the budget, and at least the segment being written */
	{
		time_t deadline = time(NULL) + TH_TIMEOUT_S;

		while ((u = usage_of(dir, 1)).bytes > pol.max_bytes) {
			if (time(NULL) > deadline)
				fail_msg("partition 1 holds %" PRIu64 " bytes", u.bytes);
			pause_ms(10);
		}
	}
	assert_true(u.n >= 2);
	/* one more sealed segment (SEG and a header and part of a frame) would not fit: the
	 * policy removed no more than it had to */
	assert_true(u.bytes + SEG + 4096 > pol.max_bytes);
	assert_int_equal(check_suffix(dir, 0, n - 1), 0); /* untouched */
	assert_true(usage_of(dir, 0).n > usage_of(dir, 1).n);
	assert_true(check_suffix(dir, 1, n - 1) > 0);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	done_wal(dir);
}

/*
 * Age: the segment being written is sealed once its first record is rotate_age_ms old, even
 * though it is far from full, and a sealed segment older than max_age_ms goes. The new
 * segment is empty and stays (it is never removed, and an empty one is never rotated).
 */
static void test_age_and_rotation(void **state)
{
	struct shmwal_retention pol = {.max_age_ms = 300, .rotate_age_ms = 200};
	char *dir = new_wal(1, SHMWAL_SYNC_ALWAYS);
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal *w;
	uint64_t lsn;
	pid_t fl;

	(void)state;
	EXPECT_OK(shmwal_retention_set(dir, 0, &pol));
	fl = th_flusher_start(dir, 0);
	assert_true(fl > 0);
	EXPECT_OK(th_open(dir, &w));
	fill(w, 0, 0, 5);
	assert_int_equal(usage_of(dir, 0).n, 1);
	/* sealed by age, then removed by age: one (new, empty) segment is left */
	{
		time_t deadline = time(NULL) + TH_TIMEOUT_S;
		struct shmwal_stat st;

		for (;;) {
			EXPECT_OK(shmwal_stat(dir, &st));
			if (st.part[0].retention_segments == 1 && usage_of(dir, 0).n == 1)
				break;
			if (time(NULL) > deadline)
				fail_msg("not sealed and removed by age: %d segments",
					 usage_of(dir, 0).n);
			pause_ms(10);
		}
		assert_true(st.part[0].seg_first > 0); /* a new segment, after the 5 records */
		assert_int_equal(st.part[0].oldest, st.part[0].seg_first);
	}
	/* nothing old is readable, and new records are */
	EXPECT_OK(shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r));
	assert_int_equal(shmwal_reader_next(r, &rec, 0), -ETIMEDOUT);
	EXPECT_OK(shmwal_append(w, 0, SHMWAL_TYPE_PUT, "k", 1, "v", 1, &lsn));
	EXPECT_OK(shmwal_reader_next(r, &rec, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC));
	assert_int_equal(rec.lsn, lsn);
	shmwal_reader_close(r);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	done_wal(dir);
}

/*
 * A restarted flusher takes a segment's age from its first record, not from its own start:
 * the record's timestamp is moved two hours back in the file (checksum redone) and the policy
 * seals segments after one hour, so the new flusher must seal it at once. Were the age counted
 * from the restart, this would wait an hour (and fail at TH_TIMEOUT_S).
 */
static void test_rotation_age_survives_restart(void **state)
{
	struct shmwal_retention pol = {.rotate_age_ms = 3600000};
	char *dir = new_wal(1, SHMWAL_SYNC_ALWAYS), path[4200];
	struct shmwal_frame h;
	struct shmwal *w;
	uint8_t frame[256];
	uint64_t lsn;
	time_t deadline;
	pid_t fl;
	int fd;

	(void)state;
	fl = th_flusher_start(dir, 0);
	assert_true(fl > 0);
	EXPECT_OK(th_open(dir, &w));
	EXPECT_OK(shmwal_append(w, 0, SHMWAL_TYPE_PUT, "k", 1, "old", 3, &lsn));
	EXPECT_OK(shmwal_wait_durable(w, 0, lsn, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC));
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	snprintf(path, sizeof(path), "%s/p000/0000000000000000.seg", dir);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, frame, sizeof(frame), SHMWAL_SEG_HDR),
			 SHMWAL_ALIGN_UP(32 + 1 + 3));
	memcpy(&h, frame, sizeof(h));
	h.timestamp_ns -= 7200ull * SHMWAL_NS_PER_SEC;
	memcpy(frame, &h, sizeof(h));
	h.crc = shmwal_frame_crc((const struct shmwal_frame *)frame, 32 + 1 + 3);
	memcpy(frame, &h, sizeof(h));
	assert_int_equal(pwrite(fd, frame, 32 + 1 + 3, SHMWAL_SEG_HDR), 32 + 1 + 3);
	close(fd);
	EXPECT_OK(shmwal_retention_set(dir, 0, &pol));
	fl = th_flusher_start(dir, 0);
	assert_true(fl > 0);
	deadline = time(NULL) + TH_TIMEOUT_S;
	while (usage_of(dir, 0).n < 2) {
		if (time(NULL) > deadline)
			fail_msg("the two-hour-old segment was not sealed");
		pause_ms(10);
	}
	check_suffix_raw(dir, lsn);
	assert_int_equal(th_flusher_stop(fl), 0);
	done_wal(dir);
}

/* A policy file damaged while the flusher runs: it keeps enforcing the policy it had. */
static void test_damaged_policy_keeps_last(void **state)
{
	struct shmwal_retention pol = {.max_segments = 2};
	char *dir = new_wal(1, SHMWAL_SYNC_NONE), path[4200];
	struct shmwal *w;
	pid_t fl;
	int fd;

	(void)state;
	EXPECT_OK(shmwal_retention_set(dir, SHMWAL_ALL_PARTITIONS, &pol));
	fl = th_flusher_start(dir, 0);
	assert_true(fl > 0);
	EXPECT_OK(th_open(dir, &w));
	fill(w, 0, 0, 1500);
	wait_segments_at_most(dir, 0, 2);
	snprintf(path, sizeof(path), "%s/retention", dir);
	fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "garbage\n", 8), 8);
	close(fd);
	assert_int_equal(shmwal_retention_get(dir, 0, &pol), -EBADMSG);
	fill(w, 0, 1500, 1500);
	wait_segments_at_most(dir, 0, 2);
	check_suffix(dir, 0, 2999);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	done_wal(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_policy_file),
	    cmocka_unit_test(test_max_segments_live),
	    cmocka_unit_test(test_max_bytes_per_partition),
	    cmocka_unit_test(test_age_and_rotation),
	    cmocka_unit_test(test_damaged_policy_keeps_last),
	    cmocka_unit_test(test_rotation_age_survives_restart),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
