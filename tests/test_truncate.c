/* SPDX-License-Identifier: MIT */
/*
 * test_truncate.c - shmwal_truncate_before() while readers read and the flusher writes.
 */
#include <errno.h>
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "helpers.h"

static int count_segments(const char *dir)
{
	char path[4096];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "%s/p000", dir);
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d)))
		n += strstr(e->d_name, ".seg") != NULL;
	closedir(d);
	return n;
}

static void append_stamped(struct shmwal *w, uint32_t prod, uint64_t from, uint64_t n,
			   uint64_t *last)
{
	uint8_t val[200];
	char key[32];

	for (uint64_t s = from; s < from + n; s++) {
		uint32_t klen = th_key(key, prod, 0, s);

		th_fill(val, sizeof(val), prod, 0, s);
		assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, key, klen, val, sizeof(val),
					       last),
				 0);
	}
}

/* Reads up to n records, checking the stream is 0.0 with consecutive seqs from *next. */
static void read_checked(struct shmwal_reader *r, uint64_t n, uint64_t *next)
{
	struct shmwal_record rec;
	struct th_stamp st;

	for (uint64_t i = 0; i < n; i++) {
		int rc = shmwal_reader_next(r, &rec, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC);

		if (rc < 0)
			fail_msg("reader_next: %s", shmwal_last_error());
		assert_int_equal(th_check(rec.value, rec.value_len, &st), 0);
		assert_int_equal(st.seq, *next);
		(*next)++;
	}
}

/* A reader in the middle of the log keeps reading while everything below it is removed;
 * positions below the new oldest record answer -ERANGE. */
static void test_truncate_under_reader(void **state)
{
	char *dir = th_tmpdir("trunc");
	struct shmwal_reader *r, *r2;
	struct shmwal_record rec;
	struct shmwal *w;
	uint64_t last, next = 0, pos;
	int before, removed;
	pid_t fl;

	(void)state;
	assert_int_equal(th_create(dir, 1, 64 << 10, 64 << 10, 1024, SHMWAL_SYNC_NONE), 0);
	fl = th_flusher_start(dir, 0);
	assert_int_equal(th_open(dir, &w), 0);
	append_stamped(w, 0, 0, 3000, &last);
	assert_int_equal(shmwal_wait_durable(w, 0, last, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC),
			 0);
	before = count_segments(dir);
	assert_true(before >= 8);

	assert_int_equal(shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r), 0);
	read_checked(r, 1500, &next);
	pos = shmwal_reader_position(r);
	removed = shmwal_truncate_before(dir, 0, pos);
	assert_true(removed >= 3);
	assert_int_equal(count_segments(dir), before - removed);

	/* the reader goes on from where it was, through the end */
	read_checked(r, 1500, &next);
	assert_int_equal(shmwal_reader_next(r, &rec, 0), -ETIMEDOUT);

	/* a new reader starts at the new oldest record, at or below pos */
	assert_int_equal(shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r2), 0);
	assert_int_equal(shmwal_reader_next(r2, &rec, 0), 0);
	assert_true(rec.lsn > 0 && rec.lsn <= pos);
	shmwal_reader_close(r2);
	assert_int_equal(shmwal_reader_open(dir, 0, 8, &r2), -ERANGE); /* 0 means "oldest" */
	assert_true(strstr(shmwal_last_error(), "truncated") != NULL);

	/* the last segment is never removed, and appends go on */
	removed = shmwal_truncate_before(dir, 0, UINT64_MAX);
	assert_true(removed >= 0);
	assert_int_equal(count_segments(dir), 1);
	append_stamped(w, 0, 3000, 10, &last);
	assert_int_equal(shmwal_wait_durable(w, 0, last, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC),
			 0);
	read_checked(r, 10, &next);
	shmwal_reader_close(r);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	th_destroy(dir);
	free(dir);
}

/* Live: producers append, a reader thread follows, another thread keeps truncating just below
 * the reader (with two more readers of the same process sharing the catalog). Every record is
 * seen once, in order, intact. */
struct follower {
	const char *dir;
	uint64_t want, seen, errors;
	uint64_t pos; /* published for the truncator */
	int done;
};

static void *follow(void *arg)
{
	struct follower *f = arg;
	struct shmwal_reader *r;
	struct shmwal_record rec;
	uint64_t next[2] = { 0, 0 };

	if (shmwal_reader_open(f->dir, 0, SHMWAL_LSN_OLDEST, &r) < 0) {
		f->errors++;
		__atomic_store_n(&f->done, 1, __ATOMIC_RELEASE);
		return NULL;
	}
	while (f->seen < f->want) {
		struct th_stamp st;

		if (shmwal_reader_next(r, &rec, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC) < 0) {
			fprintf(stderr, "follower: %s\n", shmwal_last_error());
			f->errors++;
			break;
		}
		if (th_check(rec.value, rec.value_len, &st) < 0 || st.producer > 1 ||
		    st.seq != next[st.producer]) {
			f->errors++;
			break;
		}
		next[st.producer]++;
		f->seen++;
		__atomic_store_n(&f->pos, shmwal_reader_position(r), __ATOMIC_RELEASE);
	}
	shmwal_reader_close(r);
	__atomic_store_n(&f->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void test_truncate_while_following(void **state)
{
	char *dir = th_tmpdir("trunclive");
	struct follower f[3];
	pthread_t tid[3];
	struct shmwal *w;
	uint64_t last;
	int64_t end;
	int truncated = 0, i;
	pid_t fl, prod;

	(void)state;
	assert_int_equal(th_create(dir, 1, 64 << 10, 64 << 10, 1024, SHMWAL_SYNC_INTERVAL), 0);
	fl = th_flusher_start(dir, 0);
	prod = fork();
	if (prod == 0) {
		struct shmwal *pw;
		uint8_t val[200];
		char key[32];
		int rc = th_open(dir, &pw);

		for (uint64_t s = 0; rc == 0 && s < 4000; s++) {
			uint32_t klen = th_key(key, 1, 0, s);

			th_fill(val, sizeof(val), 1, 0, s);
			rc = shmwal_append(pw, 0, SHMWAL_TYPE_PUT, key, klen, val, sizeof(val), &last);
		}
		if (rc == 0)
			rc = shmwal_wait_durable(pw, 0, last, 60 * SHMWAL_NS_PER_SEC);
		shmwal_close(pw);
		_exit(rc == 0 ? 0 : 1);
	}
	for (i = 0; i < 3; i++) {
		memset(&f[i], 0, sizeof(f[i]));
		f[i].dir = dir;
		f[i].want = 8000;
		pthread_create(&tid[i], NULL, follow, &f[i]);
	}
	assert_int_equal(th_open(dir, &w), 0);
	for (uint64_t s = 0; s < 4000; s += 100) {
		uint64_t low = UINT64_MAX;
		int n;

		append_stamped(w, 0, s, 100, &last);
		for (i = 0; i < 3; i++) {
			uint64_t p = __atomic_load_n(&f[i].pos, __ATOMIC_ACQUIRE);

			low = p < low ? p : low;
		}
		n = shmwal_truncate_before(dir, 0, low);
		assert_true(n >= 0);
		truncated += n;
	}
	assert_int_equal(shmwal_wait_durable(w, 0, last, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC),
			 0);
	assert_int_equal(th_wait(prod, TH_TIMEOUT_S), 0);
	for (i = 0; i < 3; i++) {
		pthread_join(tid[i], NULL);
		assert_int_equal(f[i].errors, 0);
		assert_int_equal(f[i].seen, 8000);
	}
	/* with everyone done, truncate to the end of the log (the other process's records may lie
	 * beyond our `last`): all but the last segment go */
	end = shmwal_durable_lsn(w, 0);
	assert_true(end > 0 && (uint64_t)end > last);
	assert_true(shmwal_truncate_before(dir, 0, (uint64_t)end) >= 0);
	assert_int_equal(count_segments(dir), 1);
	fprintf(stderr, "truncation removed %d segments while readers followed\n", truncated);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	th_destroy(dir);
	free(dir);
}

static int name_cmp(const void *a, const void *b) { return strcmp(a, b); }

/* The first LSN of the idx-th segment (oldest first) of partition 0: file names are 16 hex
 * digits, so their order is the LSNs' order. */
static uint64_t segment_first(const char *dir, unsigned idx)
{
	char path[4096], names[64][32];
	struct dirent *e;
	unsigned n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/p000", dir);
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d)))
		if (strlen(e->d_name) == 20 && strstr(e->d_name, ".seg") && n < 64)
			snprintf(names[n++], sizeof(names[0]), "%s", e->d_name);
	closedir(d);
	assert_true(idx < n);
	qsort(names, n, sizeof(names[0]), name_cmp);
	return strtoull(names[idx], NULL, 16);
}

/*
 * A reader in another process keeps its mapping when the segment it reads is removed: it reads
 * that segment to its end, every record intact. The segments after it were removed too (a
 * segment is mapped only while a reader is in it), so the next read says they were truncated
 * away (-ERANGE), and a reader opened anew starts at the oldest record left.
 */
static void test_truncate_other_process_reader(void **state)
{
	char *dir = th_tmpdir("truncproc");
	int go[2], ready[2];
	struct shmwal *w;
	uint64_t last, seg1;
	char c = 0;
	pid_t fl, child;

	(void)state;
	assert_int_equal(th_create(dir, 1, 64 << 10, 64 << 10, 1024, SHMWAL_SYNC_NONE), 0);
	fl = th_flusher_start(dir, 0);
	assert_int_equal(th_open(dir, &w), 0);
	append_stamped(w, 0, 0, 2000, &last);
	assert_int_equal(shmwal_wait_durable(w, 0, last, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC),
			 0);
	seg1 = segment_first(dir, 1);
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(ready), 0);
	child = fork();
	if (child == 0) {
		struct shmwal_reader *r;
		struct shmwal_record rec;
		struct th_stamp st;
		uint64_t seq = 0;
		int rc;

		if (shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r) < 0)
			_exit(1);
		for (; seq < 10; seq++)
			if (shmwal_reader_next(r, &rec, 0) < 0)
				_exit(2);
		if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(3);
		/* the segments below `last`'s were removed meanwhile: the pinned one still reads */
		while (rec.next_lsn < seg1) {
			if (shmwal_reader_next(r, &rec, 5 * SHMWAL_NS_PER_SEC) < 0)
				_exit(4);
			if (th_check(rec.value, rec.value_len, &st) < 0 || st.seq != seq++)
				_exit(5);
		}
		if (rec.next_lsn != seg1)
			_exit(6);
		rc = shmwal_reader_next(r, &rec, 5 * SHMWAL_NS_PER_SEC);
		if (rc != -ERANGE || !strstr(shmwal_last_error(), "truncated"))
			_exit(7);
		shmwal_reader_close(r);
		/* anew: the oldest record left, intact */
		if (shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r) < 0 ||
		    shmwal_reader_next(r, &rec, 0) < 0 || rec.lsn <= seg1 ||
		    th_check(rec.value, rec.value_len, &st) < 0 || st.seq <= seq)
			_exit(8);
		shmwal_reader_close(r);
		_exit(0);
	}
	assert_int_equal(read(ready[0], &c, 1), 1);
	assert_true(shmwal_truncate_before(dir, 0, last) >= 5);
	assert_int_equal(write(go[1], "g", 1), 1);
	assert_int_equal(th_wait(child, TH_TIMEOUT_S), 0);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	for (int i = 0; i < 2; i++) {
		close(go[i]);
		close(ready[i]);
	}
	th_destroy(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_truncate_under_reader),
		cmocka_unit_test(test_truncate_while_following),
		cmocka_unit_test(test_truncate_other_process_reader),
	};

	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
