/* SPDX-License-Identifier: MIT */
/*
 * test_api.c - API misuse and edge cases: every documented error, with its exact negative
 * errno and a fresh, non-empty shmwal_last_error(); the limits of keys and values; full rings;
 * a second flusher; readers at odd positions; a stopped WAL; handles across fork().
 *
 * Before each call expected to fail, the error detail is primed with a known sentence, so the
 * check "non-empty last error" really checks the failing call wrote one.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
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
#include "meta.h"
#include "helpers.h"

#define LONG_NS ((uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC)

/* The WAL every test uses unless it says otherwise. */
#define PARTS 2u
#define RING (64u << 10)
#define MAX_KEY 32u
#define MAX_VALUE 1000u

/* ---- error detail checks ----------------------------------------------------------------- */

static const char *primed_error(void)
{
	static char msg[512];

	/* shmwal_config_validate(NULL) is the one call whose detail we know in advance. */
	if (!msg[0]) {
		shmwal_config_validate(NULL);
		snprintf(msg, sizeof(msg), "%s", shmwal_last_error());
	}
	return msg;
}

static void prime_error(void)
{
	assert_int_equal(shmwal_config_validate(NULL), -EINVAL);
	assert_string_equal(shmwal_last_error(), primed_error());
}

static void check_fresh_error(const char *what, int64_t rc, int64_t want, const char *needle)
{
	const char *e = shmwal_last_error();

	if (rc != want)
		fail_msg("%s: returned %" PRId64 " (%s), expected %" PRId64 " (%s); detail: %s", what,
			 rc, rc < 0 ? strerror((int)-rc) : "not an error", want,
			 strerror((int)-want), e);
	if (!e || !*e)
		fail_msg("%s: shmwal_last_error() is empty", what);
	if (!strcmp(e, primed_error()))
		fail_msg("%s: failed with %" PRId64 " but left no error detail", what, rc);
	if (needle && !strcasestr(e, needle))
		fail_msg("%s: detail \"%s\" does not mention \"%s\"", what, e, needle);
}

/* Runs `call`, which must fail with `want` (a negative errno) and leave a fresh detail that
 * mentions `needle` (NULL: anything non-empty). */
#define EXPECT_ERR(call, want, needle)                                              \
	do {                                                                        \
		int64_t rc_;                                                        \
		prime_error();                                                      \
		rc_ = (int64_t)(call);                                              \
		check_fresh_error(#call, rc_, (int64_t)(want), needle);             \
	} while (0)


/* ---- fixture ----------------------------------------------------------------------------- */

struct fx {
	char *dir;	   /* a fresh empty directory; most tests create the WAL in it */
	pid_t flusher;	   /* running flusher, 0 if none */
	int stopped;	   /* the flusher is SIGSTOPped */
	struct shmwal *w;  /* open producer handle, or NULL */
	struct shmwal *w2; /* a second handle */
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->dir = th_tmpdir("api");
	if (!f->dir) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

/* Also the cleanup after a failed assertion: nothing may stay running or mapped. */
static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->flusher > 0 && f->stopped)
		kill(f->flusher, SIGCONT);
	if (f->w)
		shmwal_close(f->w);
	if (f->w2)
		shmwal_close(f->w2);
	if (f->flusher > 0 && th_flusher_stop(f->flusher) != 0)
		fprintf(stderr, "teardown: flusher %d did not stop cleanly\n", (int)f->flusher);
	th_destroy(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static void create_wal(const char *dir)
{
	struct shmwal_config c;

	shmwal_config_default(&c);
	c.partitions = PARTS;
	c.ring_bytes = RING;
	c.segment_bytes = 1u << 20;
	c.max_key = MAX_KEY;
	c.max_value = MAX_VALUE;
	c.sync = SHMWAL_SYNC_NONE;
	EXPECT_OK(shmwal_create(dir, &c));
}

/* Creates the WAL, starts its flusher and opens f->w. */
static void start_wal(struct fx *f)
{
	create_wal(f->dir);
	f->flusher = th_flusher_start(f->dir, 0);
	assert_true(f->flusher > 0);
	EXPECT_OK(th_open(f->dir, &f->w));
}

static void stop_flusher(struct fx *f)
{
	if (f->stopped) {
		assert_int_equal(kill(f->flusher, SIGCONT), 0);
		f->stopped = 0;
	}
	assert_int_equal(th_flusher_stop(f->flusher), 0);
	f->flusher = 0;
}

/* SIGSTOPs the flusher and waits until it really is stopped. */
static void freeze_flusher(struct fx *f)
{
	int st;

	assert_int_equal(kill(f->flusher, SIGSTOP), 0);
	f->stopped = 1;
	for (;;) {
		pid_t r = waitpid(f->flusher, &st, WUNTRACED);

		if (r < 0 && errno == EINTR)
			continue;
		assert_int_equal(r, f->flusher);
		if (WIFSTOPPED(st))
			return;
		fail_msg("flusher ended while being stopped (status 0x%x)", st);
	}
}

static void thaw_flusher(struct fx *f)
{
	assert_int_equal(kill(f->flusher, SIGCONT), 0);
	f->stopped = 0;
}

/* 1 if the shared-memory object of the WAL in dir exists. */
static int shm_exists(const char *dir)
{
	struct meta m;
	char name[32], path[64];

	if (meta_load(dir, &m) < 0)
		return 0;
	shm_name(name, m.instance);
	snprintf(path, sizeof(path), "/dev/shm%s", name);
	return access(path, F_OK) == 0;
}

static uint64_t clock_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * SHMWAL_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static uint64_t now_real_ns(void) { return clock_ns(CLOCK_REALTIME); }

static uint64_t frame_size(uint32_t key_len, uint32_t value_len)
{
	return SHMWAL_ALIGN_UP(SHMWAL_FRAME_HDR + key_len + value_len);
}

/* Reads the next record of r (waiting up to LONG_NS) and checks it. */
static void expect_record(struct shmwal_reader *r, uint32_t part, uint64_t lsn, uint16_t type,
			  const void *key, uint32_t key_len, const void *value,
			  uint32_t value_len)
{
	struct shmwal_record rec;
	int rc = shmwal_reader_next(r, &rec, LONG_NS);

	if (rc != 0)
		fail_msg("reader_next (expecting LSN %" PRIu64 "): %d: %s", lsn, rc,
			 shmwal_last_error());
	assert_int_equal(rec.lsn, lsn);
	assert_int_equal(rec.next_lsn, lsn + frame_size(key_len, value_len));
	assert_int_equal(rec.partition, part);
	assert_int_equal(rec.type, type);
	assert_int_equal(rec.key_len, key_len);
	assert_int_equal(rec.value_len, value_len);
	if (key_len)
		assert_memory_equal(rec.key, key, key_len);
	if (value_len)
		assert_memory_equal(rec.value, value, value_len);
	assert_int_equal(shmwal_reader_position(r), rec.next_lsn);
}

static void expect_no_record(struct shmwal_reader *r)
{
	struct shmwal_record rec;

	EXPECT_ERR(shmwal_reader_next(r, &rec, 0), -ETIMEDOUT, NULL);
}

/* ---- shmwal_open ------------------------------------------------------------------------- */

static void test_open_errors(void **state)
{
	struct fx *f = *state;
	struct shmwal *w = NULL;

	EXPECT_ERR(shmwal_open(NULL, &w), -EINVAL, NULL);
	EXPECT_ERR(shmwal_open(f->dir, NULL), -EINVAL, NULL);
	/* an empty directory holds no WAL */
	EXPECT_ERR(shmwal_open(f->dir, &w), -ENOENT, NULL);
	assert_null(w);
	/* a WAL whose flusher never ran: no shared memory yet */
	create_wal(f->dir);
	EXPECT_ERR(shmwal_open(f->dir, &w), -ENOENT, "flusher");
	assert_null(w);
	/* ... and the same after a flusher ran and stopped cleanly (it removed the shm) */
	f->flusher = th_flusher_start(f->dir, 0);
	EXPECT_OK(th_open(f->dir, &f->w));
	shmwal_close(f->w);
	f->w = NULL;
	stop_flusher(f);
	assert_false(shm_exists(f->dir));
	EXPECT_ERR(shmwal_open(f->dir, &w), -ENOENT, "flusher");
}

/* ---- appends ----------------------------------------------------------------------------- */

static void test_append_bad_args(void **state)
{
	struct fx *f = *state;
	char key[MAX_KEY + 1], val[MAX_VALUE + 1];
	struct shmwal_claim c;
	struct shmwal_reader *r;
	int64_t d0, d1;
	uint64_t lsn = 12345;

	memset(key, 'k', sizeof(key));
	memset(val, 'v', sizeof(val));
	start_wal(f);
	d0 = shmwal_durable_lsn(f->w, 0);
	d1 = shmwal_durable_lsn(f->w, 1);
	assert_true(d0 >= 0 && d1 >= 0);

	/* partition */
	EXPECT_ERR(shmwal_append(f->w, PARTS, SHMWAL_TYPE_PUT, key, 1, val, 1, &lsn), -EINVAL,
		   "partition");
	EXPECT_ERR(shmwal_append(f->w, UINT32_MAX, SHMWAL_TYPE_PUT, key, 1, val, 1, &lsn), -EINVAL,
		   "partition");
	EXPECT_ERR(shmwal_try_append(f->w, PARTS, SHMWAL_TYPE_PUT, key, 1, val, 1, &lsn), -EINVAL,
		   "partition");
	EXPECT_ERR(shmwal_claim(f->w, PARTS, SHMWAL_TYPE_PUT, 1, 1, &c), -EINVAL, "partition");
	EXPECT_ERR(shmwal_try_claim(f->w, PARTS, SHMWAL_TYPE_PUT, 1, 1, &c), -EINVAL,
		   "partition");
	/* type 0 */
	EXPECT_ERR(shmwal_append(f->w, 0, 0, key, 1, val, 1, &lsn), -EINVAL, "type");
	EXPECT_ERR(shmwal_try_append(f->w, 0, 0, key, 1, val, 1, &lsn), -EINVAL, "type");
	EXPECT_ERR(shmwal_claim(f->w, 0, 0, 1, 1, &c), -EINVAL, "type");
	/* over the limits: nothing is truncated, nothing is appended */
	EXPECT_ERR(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, key, MAX_KEY + 1, val, 1, &lsn),
		   -EMSGSIZE, "too large");
	EXPECT_ERR(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, key, 1, val, MAX_VALUE + 1, &lsn),
		   -EMSGSIZE, "too large");
	EXPECT_ERR(shmwal_append(f->w, 1, SHMWAL_TYPE_PUT, key, MAX_KEY + 1, val, MAX_VALUE + 1,
				 &lsn),
		   -EMSGSIZE, "too large");
	EXPECT_ERR(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, key, 1, val, UINT32_MAX, &lsn),
		   -EMSGSIZE, "too large");
	EXPECT_ERR(shmwal_try_append(f->w, 0, SHMWAL_TYPE_PUT, key, 1, val, MAX_VALUE + 1, &lsn),
		   -EMSGSIZE, "too large");
	EXPECT_ERR(shmwal_claim(f->w, 0, SHMWAL_TYPE_PUT, MAX_KEY + 1, 0, &c), -EMSGSIZE,
		   "too large");
	EXPECT_ERR(shmwal_try_claim(f->w, 0, SHMWAL_TYPE_PUT, 0, MAX_VALUE + 1, &c), -EMSGSIZE,
		   "too large");
	/* NULL with a non-zero length */
	EXPECT_ERR(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, NULL, 1, val, 1, &lsn), -EINVAL, NULL);
	EXPECT_ERR(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, key, 1, NULL, 1, &lsn), -EINVAL, NULL);
	EXPECT_ERR(shmwal_try_append(f->w, 0, SHMWAL_TYPE_PUT, NULL, 5, NULL, 0, &lsn), -EINVAL,
		   NULL);
	/* a NULL handle or claim */
	EXPECT_ERR(shmwal_append(NULL, 0, SHMWAL_TYPE_PUT, key, 1, val, 1, &lsn), -EINVAL, NULL);
	EXPECT_ERR(shmwal_claim(f->w, 0, SHMWAL_TYPE_PUT, 1, 1, NULL), -EINVAL, NULL);
	assert_int_equal(lsn, 12345); /* untouched by failures */

	/* Nothing was claimed: the durable LSNs did not move, and the next record gets the
	 * LSN right where the log ended. */
	assert_int_equal(shmwal_durable_lsn(f->w, 0), d0);
	assert_int_equal(shmwal_durable_lsn(f->w, 1), d1);
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "ok", 2, "fine", 4, &lsn));
	assert_int_equal(lsn, (uint64_t)d0);
	EXPECT_OK(shmwal_wait_durable(f->w, 0, lsn, LONG_NS));
	assert_int_equal(shmwal_durable_lsn(f->w, 0), d0 + (int64_t)frame_size(2, 4));
	assert_int_equal(shmwal_durable_lsn(f->w, 1), d1);

	EXPECT_OK(shmwal_reader_open(f->dir, 0, SHMWAL_LSN_OLDEST, &r));
	expect_record(r, 0, lsn, SHMWAL_TYPE_PUT, "ok", 2, "fine", 4);
	expect_no_record(r);
	shmwal_reader_close(r);
	EXPECT_OK(shmwal_reader_open(f->dir, 1, SHMWAL_LSN_OLDEST, &r));
	expect_no_record(r);
	shmwal_reader_close(r);
}

static void test_append_limits(void **state)
{
	struct fx *f = *state;
	char key[MAX_KEY], val[MAX_VALUE];
	uint64_t l1, l2, l3, l4, l5;
	struct shmwal_claim c;
	struct shmwal_reader *r;

	for (uint32_t i = 0; i < MAX_KEY; i++)
		key[i] = (char)(i * 7 + 1);
	for (uint32_t i = 0; i < MAX_VALUE; i++)
		val[i] = (char)(i * 13 + 5);
	start_wal(f);
	/* exactly the limits */
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, key, MAX_KEY, val, MAX_VALUE, &l1));
	/* empty key and empty value, NULL pointers allowed with length 0 */
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, NULL, 0, "v", 1, &l2));
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_DELETE, "k", 1, NULL, 0, &l3));
	EXPECT_OK(shmwal_try_append(f->w, 0, SHMWAL_TYPE_PUT, NULL, 0, NULL, 0, &l4));
	/* the limits through a zero-copy claim */
	EXPECT_OK(shmwal_try_claim(f->w, 0, SHMWAL_TYPE_MAX, MAX_KEY, MAX_VALUE, &c));
	assert_int_equal(c.key_len, MAX_KEY);
	assert_int_equal(c.value_len, MAX_VALUE);
	assert_int_equal(c.part, 0);
	memcpy(c.key, key, MAX_KEY);
	memcpy(c.value, val, MAX_VALUE);
	l5 = c.lsn;
	EXPECT_OK(shmwal_commit(f->w, &c));

	assert_int_equal(l2, l1 + frame_size(MAX_KEY, MAX_VALUE));
	assert_int_equal(l3, l2 + frame_size(0, 1));
	assert_int_equal(l4, l3 + frame_size(1, 0));
	assert_int_equal(l5, l4 + frame_size(0, 0));
	EXPECT_OK(shmwal_wait_durable(f->w, 0, l5, LONG_NS));
	assert_true(shmwal_durable_lsn(f->w, 0) > (int64_t)l5);

	EXPECT_OK(shmwal_reader_open(f->dir, 0, SHMWAL_LSN_OLDEST, &r));
	expect_record(r, 0, l1, SHMWAL_TYPE_PUT, key, MAX_KEY, val, MAX_VALUE);
	expect_record(r, 0, l2, SHMWAL_TYPE_PUT, NULL, 0, "v", 1);
	expect_record(r, 0, l3, SHMWAL_TYPE_DELETE, "k", 1, NULL, 0);
	expect_record(r, 0, l4, SHMWAL_TYPE_PUT, NULL, 0, NULL, 0);
	expect_record(r, 0, l5, SHMWAL_TYPE_MAX, key, MAX_KEY, val, MAX_VALUE);
	expect_no_record(r);
	shmwal_reader_close(r);
}

/* ---- claims ------------------------------------------------------------------------------ */

static void test_claim_misuse(void **state)
{
	struct fx *f = *state;
	struct shmwal_claim zero, c, forged, copy, ab;
	struct shmwal_reader *r;
	uint64_t after;

	start_wal(f);
	EXPECT_OK(shmwal_open(f->dir, &f->w2));
	memset(&zero, 0, sizeof(zero));
	EXPECT_ERR(shmwal_commit(f->w, &zero), -EINVAL, "claim");
	EXPECT_ERR(shmwal_abort(f->w, &zero), -EINVAL, "claim");
	EXPECT_ERR(shmwal_commit(f->w, NULL), -EINVAL, NULL);
	EXPECT_ERR(shmwal_abort(f->w, NULL), -EINVAL, NULL);

	EXPECT_OK(shmwal_claim(f->w, 0, SHMWAL_TYPE_PUT, 3, 5, &c));
	memcpy(c.key, "abc", 3);
	memcpy(c.value, "hello", 5);

	/* forged copies of an open claim */
	forged = c;
	forged.lsn += 8;
	EXPECT_ERR(shmwal_commit(f->w, &forged), -EINVAL, "claim");
	EXPECT_ERR(shmwal_abort(f->w, &forged), -EINVAL, "claim");
	forged = c;
	forged.value_len += 1;
	EXPECT_ERR(shmwal_commit(f->w, &forged), -EINVAL, "claim");
	forged = c;
	forged.priv_len += 8;
	EXPECT_ERR(shmwal_commit(f->w, &forged), -EINVAL, "claim");
	forged = c;
	forged.part = 1;
	EXPECT_ERR(shmwal_commit(f->w, &forged), -EINVAL, "claim");
	EXPECT_ERR(shmwal_abort(f->w, &forged), -EINVAL, "claim");
	forged = c;
	forged.part = 999;
	EXPECT_ERR(shmwal_commit(f->w, &forged), -EINVAL, "claim");
	forged = c;
	forged.priv_frame += 8;
	EXPECT_ERR(shmwal_commit(f->w, &forged), -EINVAL, "claim");
	forged = c;
	forged.priv_frame = 0;
	EXPECT_ERR(shmwal_abort(f->w, &forged), -EINVAL, "claim");
	/* another handle's claim */
	EXPECT_ERR(shmwal_commit(f->w2, &c), -EINVAL, "claim");
	EXPECT_ERR(shmwal_abort(f->w2, &c), -EINVAL, "claim");
	EXPECT_ERR(shmwal_commit(NULL, &c), -EINVAL, NULL);

	/* the real one commits once */
	copy = c;
	EXPECT_OK(shmwal_commit(f->w, &c));
	EXPECT_ERR(shmwal_commit(f->w, &c), -EINVAL, "claim");
	EXPECT_ERR(shmwal_abort(f->w, &c), -EINVAL, "claim");
	EXPECT_ERR(shmwal_commit(f->w, &copy), -EINVAL, "claim");
	EXPECT_ERR(shmwal_abort(f->w, &copy), -EINVAL, "claim");

	/* an aborted claim cannot be committed afterwards, and readers never see it */
	EXPECT_OK(shmwal_claim(f->w, 0, SHMWAL_TYPE_PUT, 2, 2, &ab));
	memcpy(ab.key, "xx", 2);
	memcpy(ab.value, "yy", 2);
	copy = ab;
	EXPECT_OK(shmwal_abort(f->w, &ab));
	EXPECT_ERR(shmwal_commit(f->w, &ab), -EINVAL, "claim");
	EXPECT_ERR(shmwal_abort(f->w, &ab), -EINVAL, "claim");
	EXPECT_ERR(shmwal_commit(f->w, &copy), -EINVAL, "claim");

	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "z", 1, "last", 4, &after));
	assert_int_equal(after, copy.lsn + frame_size(2, 2));
	EXPECT_OK(shmwal_wait_durable(f->w, 0, after, LONG_NS));
	EXPECT_OK(shmwal_reader_open(f->dir, 0, SHMWAL_LSN_OLDEST, &r));
	expect_record(r, 0, c.lsn, SHMWAL_TYPE_PUT, "abc", 3, "hello", 5);
	expect_record(r, 0, after, SHMWAL_TYPE_PUT, "z", 1, "last", 4);
	expect_no_record(r);
	shmwal_reader_close(r);
}

static void test_durable_bad_partition(void **state)
{
	struct fx *f = *state;

	start_wal(f);
	EXPECT_ERR(shmwal_durable_lsn(f->w, PARTS), -EINVAL, "partition");
	EXPECT_ERR(shmwal_durable_lsn(f->w, UINT32_MAX), -EINVAL, "partition");
	EXPECT_ERR(shmwal_durable_lsn(NULL, 0), -EINVAL, NULL);
	EXPECT_ERR(shmwal_wait_durable(f->w, PARTS, 0, 0), -EINVAL, "partition");
	EXPECT_ERR(shmwal_wait_durable(f->w, UINT32_MAX, 0, LONG_NS), -EINVAL, "partition");
	EXPECT_ERR(shmwal_wait_durable(NULL, 0, 0, 0), -EINVAL, NULL);
	/* the good partitions answer */
	{
		uint64_t lsn;

		assert_true(shmwal_durable_lsn(f->w, PARTS - 1) >= 0);
		EXPECT_OK(shmwal_append(f->w, PARTS - 1, SHMWAL_TYPE_PUT, "k", 1, "v", 1, &lsn));
		EXPECT_OK(shmwal_wait_durable(f->w, PARTS - 1, lsn, LONG_NS));
		assert_true(shmwal_durable_lsn(f->w, PARTS - 1) > (int64_t)lsn);
	}
}

/* ---- a full ring ------------------------------------------------------------------------- */

#define FULL_KEY 8u
#define FULL_VALUE 200u
#define FULL_MAX (RING / 240u + 1u) /* frame_size(8, 200) == 240 */

static void test_ring_full(void **state)
{
	struct fx *f = *state;
	uint64_t *lsns = calloc(FULL_MAX + 1, sizeof(uint64_t));
	uint64_t fsize = frame_size(FULL_KEY, FULL_VALUE), other;
	uint8_t val[FULL_VALUE];
	char key[32];
	struct shmwal_claim c;
	struct shmwal_reader *r;
	uint32_t n = 0, i;
	int rc;

	assert_int_equal(fsize, 240);
	assert_non_null(lsns);
	start_wal(f);
	freeze_flusher(f);

	for (;;) {
		snprintf(key, sizeof(key), "k%07u", n);
		th_fill(val, FULL_VALUE, 1, 0, n);
		prime_error();
		rc = shmwal_try_append(f->w, 0, SHMWAL_TYPE_PUT, key, FULL_KEY, val, FULL_VALUE,
				       &lsns[n]);
		if (rc == -EAGAIN)
			break;
		if (rc != 0)
			fail_msg("try_append %u: %d: %s", n, rc, shmwal_last_error());
		if (++n > FULL_MAX)
			fail_msg("the ring took %u frames of %" PRIu64 " bytes: more than %u bytes",
				 n, fsize, RING);
	}
	check_fresh_error("try_append on a full ring", rc, -EAGAIN, "full");
	assert_true(n >= RING / fsize / 2); /* the ring was really used */
	for (i = 1; i < n; i++)
		assert_int_equal(lsns[i], lsns[i - 1] + fsize);
	/* nothing else fits either, not even a small claim; a frame of the full size not at all */
	EXPECT_ERR(shmwal_try_claim(f->w, 0, SHMWAL_TYPE_PUT, FULL_KEY, FULL_VALUE, &c), -EAGAIN,
		   "full");
	EXPECT_ERR(shmwal_try_append(f->w, 0, SHMWAL_TYPE_PUT, key, FULL_KEY, val, FULL_VALUE,
				     NULL),
		   -EAGAIN, "full");
	/* the rings are per partition: partition 1 still takes a record */
	EXPECT_OK(shmwal_try_append(f->w, 1, SHMWAL_TYPE_PUT, "p1", 2, "x", 1, &other));
	/* with the flusher frozen nothing becomes durable */
	EXPECT_ERR(shmwal_wait_durable(f->w, 0, lsns[n - 1], 50000000ull), -ETIMEDOUT, NULL);
	EXPECT_ERR(shmwal_wait_durable(f->w, 0, lsns[0], 0), -ETIMEDOUT, NULL);
	assert_true(shmwal_durable_lsn(f->w, 0) <= (int64_t)lsns[0]);

	thaw_flusher(f);
	EXPECT_OK(shmwal_wait_durable(f->w, 0, lsns[n - 1], LONG_NS));
	EXPECT_OK(shmwal_wait_durable(f->w, 1, other, LONG_NS));
	assert_true(shmwal_durable_lsn(f->w, 0) >= (int64_t)(lsns[n - 1] + fsize));
	/* the ring has room again */
	EXPECT_OK(shmwal_try_claim(f->w, 0, SHMWAL_TYPE_PUT, 1, 1, &c));
	EXPECT_OK(shmwal_abort(f->w, &c));

	EXPECT_OK(shmwal_reader_open(f->dir, 0, SHMWAL_LSN_OLDEST, &r));
	for (i = 0; i < n; i++) {
		struct shmwal_record rec;
		struct th_stamp st;

		snprintf(key, sizeof(key), "k%07u", i);
		rc = shmwal_reader_next(r, &rec, LONG_NS);
		if (rc)
			fail_msg("record %u: %d: %s", i, rc, shmwal_last_error());
		assert_int_equal(rec.lsn, lsns[i]);
		assert_int_equal(rec.key_len, FULL_KEY);
		assert_memory_equal(rec.key, key, FULL_KEY);
		assert_int_equal(th_check(rec.value, rec.value_len, &st), 0);
		assert_int_equal(st.seq, i);
	}
	expect_no_record(r);
	shmwal_reader_close(r);
	free(lsns);
}

/* ---- flushers ---------------------------------------------------------------------------- */

static void test_second_flusher(void **state)
{
	struct fx *f = *state;
	pid_t second;
	uint64_t lsn;

	start_wal(f);
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "a", 1, "1", 1, &lsn));
	EXPECT_OK(shmwal_wait_durable(f->w, 0, lsn, LONG_NS));
	second = th_flusher_start(f->dir, 0);
	assert_true(second > 0);
	assert_int_equal(th_wait(second, TH_TIMEOUT_S), 3); /* -EBUSY */
	/* the first one keeps working */
	EXPECT_OK(shmwal_append(f->w, 1, SHMWAL_TYPE_PUT, "b", 1, "2", 1, &lsn));
	EXPECT_OK(shmwal_wait_durable(f->w, 1, lsn, LONG_NS));
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "c", 1, "3", 1, &lsn));
	EXPECT_OK(shmwal_wait_durable(f->w, 0, lsn, LONG_NS));
	/* and in-process: -EBUSY with a message */
	{
		int stop = 1;

		EXPECT_ERR(shmwal_flusher_run(f->dir, NULL, &stop), -EBUSY, "another flusher");
	}
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "d", 1, "4", 1, &lsn));
	EXPECT_OK(shmwal_wait_durable(f->w, 0, lsn, LONG_NS));
}

static void test_flusher_run_errors(void **state)
{
	struct fx *f = *state;
	char missing[4096];
	int stop = 1;

	snprintf(missing, sizeof(missing), "%s/does-not-exist", f->dir);
	EXPECT_ERR(shmwal_flusher_run(missing, NULL, &stop), -ENOENT, NULL);
	EXPECT_ERR(shmwal_flusher_run(NULL, NULL, &stop), -EINVAL, NULL);
	/* an existing directory that holds no WAL */
	EXPECT_ERR(shmwal_flusher_run(f->dir, NULL, &stop), -ENOENT, NULL);
}

/* ---- readers ----------------------------------------------------------------------------- */

static void test_reader_errors(void **state)
{
	struct fx *f = *state;
	struct shmwal_reader *r = NULL;
	uint64_t l0, l1;
	int64_t end;
	char missing[4096];

	snprintf(missing, sizeof(missing), "%s/does-not-exist", f->dir);
	EXPECT_ERR(shmwal_reader_open(missing, 0, SHMWAL_LSN_OLDEST, &r), -ENOENT, NULL);
	EXPECT_ERR(shmwal_reader_open(f->dir, 0, SHMWAL_LSN_OLDEST, &r), -ENOENT, NULL);
	start_wal(f);
	EXPECT_ERR(shmwal_reader_open(NULL, 0, SHMWAL_LSN_OLDEST, &r), -EINVAL, NULL);
	EXPECT_ERR(shmwal_reader_open(f->dir, 0, SHMWAL_LSN_OLDEST, NULL), -EINVAL, NULL);
	EXPECT_ERR(shmwal_reader_open(f->dir, PARTS, SHMWAL_LSN_OLDEST, &r), -EINVAL,
		   "partition");
	EXPECT_ERR(shmwal_reader_open(f->dir, UINT32_MAX, SHMWAL_LSN_END, &r), -EINVAL,
		   "partition");

	/* two records of 64 bytes each (32 + 16 + 16): lsn + 8 is inside the first one */
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "0123456789abcdef", 16,
				"0123456789abcdef", 16, &l0));
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "k", 1, "v", 1, &l1));
	assert_int_equal(l1, l0 + 64);
	EXPECT_OK(shmwal_wait_durable(f->w, 0, l1, LONG_NS));
	end = shmwal_durable_lsn(f->w, 0);
	assert_int_equal(end, (int64_t)(l1 + frame_size(1, 1)));

	EXPECT_ERR(shmwal_reader_open(f->dir, 0, l0 + 8, &r), -EINVAL, "boundary");
	EXPECT_ERR(shmwal_reader_open(f->dir, 0, l0 + 32, &r), -EINVAL, "boundary");
	EXPECT_ERR(shmwal_reader_open(f->dir, 0, l0 + 3, &r), -EINVAL, "boundary");
	EXPECT_ERR(shmwal_reader_open(f->dir, 0, l1 + 1, &r), -EINVAL, "boundary");
	/* beyond the durable end */
	EXPECT_ERR(shmwal_reader_open(f->dir, 0, (uint64_t)end + 4096, &r), -EINVAL, NULL);
	assert_null(r);

	/* the boundaries themselves are fine, the end included */
	EXPECT_OK(shmwal_reader_open(f->dir, 0, l1, &r));
	expect_record(r, 0, l1, SHMWAL_TYPE_PUT, "k", 1, "v", 1);
	expect_no_record(r);
	shmwal_reader_close(r);
	EXPECT_OK(shmwal_reader_open(f->dir, 0, (uint64_t)end, &r));
	expect_no_record(r);
	shmwal_reader_close(r);
	/* NULL arguments to next */
	EXPECT_OK(shmwal_reader_open(f->dir, 0, l0, &r));
	EXPECT_ERR(shmwal_reader_next(r, NULL, 0), -EINVAL, NULL);
	EXPECT_ERR(shmwal_reader_next(NULL, NULL, 0), -EINVAL, NULL);
	shmwal_reader_close(r);
	shmwal_reader_close(NULL);
}

static void test_reader_end(void **state)
{
	struct fx *f = *state;
	struct shmwal_reader *r, *r1;
	uint64_t lsn, l2;
	int64_t end;
	int i;

	start_wal(f);
	for (i = 0; i < 5; i++)
		EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "old", 3, "record", 6, &lsn));
	EXPECT_OK(shmwal_wait_durable(f->w, 0, lsn, LONG_NS));
	end = shmwal_durable_lsn(f->w, 0);

	EXPECT_OK(shmwal_reader_open(f->dir, 0, SHMWAL_LSN_END, &r));
	assert_int_equal(shmwal_reader_position(r), (uint64_t)end);
	expect_no_record(r);
	/* an empty partition at its end */
	EXPECT_OK(shmwal_reader_open(f->dir, 1, SHMWAL_LSN_END, &r1));
	expect_no_record(r1);

	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "new", 3, "one", 3, &lsn));
	assert_int_equal(lsn, (uint64_t)end);
	EXPECT_OK(shmwal_append(f->w, 1, SHMWAL_TYPE_DELETE, "gone", 4, NULL, 0, &l2));
	/* the reader waits for them (no wait_durable first) */
	expect_record(r, 0, lsn, SHMWAL_TYPE_PUT, "new", 3, "one", 3);
	expect_no_record(r);
	expect_record(r1, 1, l2, SHMWAL_TYPE_DELETE, "gone", 4, NULL, 0);
	expect_no_record(r1);
	shmwal_reader_close(r);
	shmwal_reader_close(r1);
}

/* Mappings of shared-memory objects of shmwal in this process (lines of /proc/self/maps). */
/* Mappings in this process of files whose path contains `needle`. */
static int mappings_of(const char *needle)
{
	char line[4608];
	FILE *m = fopen("/proc/self/maps", "r");
	int n = 0;

	assert_non_null(m);
	while (fgets(line, sizeof(line), m))
		n += strstr(line, needle) != NULL;
	fclose(m);
	return n;
}

static int shm_mappings(void) { return mappings_of("/dev/shm/shmwal."); }

/* A reader waits on the control words and reads the files: it maps no ring (prefaulting and
 * unmapping two 4 MiB rings cost its open and close ~550 us), while a producer maps the base
 * and each ring twice. */
static void test_reader_maps_no_ring(void **state)
{
	struct fx *f = *state;
	struct shmwal_reader *r;
	uint64_t lsn;
	int before;

	before = shm_mappings();
	start_wal(f);
	assert_int_equal(shm_mappings(), before + 1 + 2 * (int)PARTS);
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "k", 1, "v", 1, &lsn));
	EXPECT_OK(shmwal_reader_open(f->dir, 0, SHMWAL_LSN_OLDEST, &r));
	expect_record(r, 0, lsn, SHMWAL_TYPE_PUT, "k", 1, "v", 1); /* waited: attached */
	assert_int_equal(shm_mappings(), before + 1 + 2 * (int)PARTS + 1);
	shmwal_reader_close(r);
	assert_int_equal(shm_mappings(), before + 1 + 2 * (int)PARTS);
}

/*
 * A log of more segments than the process may open descriptors: readers map a segment only
 * while they are in it, so three readers at different places read all of it with a limit of
 * 32 descriptors, every record in order and intact, holding at most three segment mappings
 * at any time. (All segments mapped at once, a reader ran out of descriptors.)
 */
static void test_reader_many_segments(void **state)
{
	struct fx *f = *state;
	struct shmwal_config c;
	uint64_t lsn, n = 0;
	char val[200];
	pid_t child;

	shmwal_config_default(&c);
	c.ring_bytes = RING;
	c.segment_bytes = 64u << 10;
	c.max_key = MAX_KEY;
	c.max_value = MAX_VALUE;
	c.sync = SHMWAL_SYNC_NONE;
	EXPECT_OK(shmwal_create(f->dir, &c));
	f->flusher = th_flusher_start(f->dir, 0);
	assert_true(f->flusher > 0);
	EXPECT_OK(th_open(f->dir, &f->w));
	/* 200-byte values: about 280 records a segment; 120 segments */
	for (lsn = 0; lsn < 120ull * (64u << 10); n++) {
		th_fill(val, sizeof(val), 1, 0, n);
		EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, NULL, 0, val, sizeof(val), &lsn));
	}
	EXPECT_OK(shmwal_wait_durable(f->w, 0, lsn, LONG_NS));
	fflush(NULL);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct rlimit rl = { 32, 32 };
		struct shmwal_reader *r[3];
		struct shmwal_record rec;
		uint64_t seq[3] = { 0, 0, 0 };
		int most = 0;

		alarm(TH_TIMEOUT_S);
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			_exit(1);
		for (int i = 0; i < 3; i++)
			if (shmwal_reader_open(f->dir, 0, SHMWAL_LSN_OLDEST, &r[i]) < 0)
				_exit(2);
		/* reader i reads i * n / 3 records ahead first, then all three in turn */
		for (int i = 1; i < 3; i++)
			for (; seq[i] < (uint64_t)i * n / 3; seq[i]++)
				if (shmwal_reader_next(r[i], &rec, 0) < 0)
					_exit(3);
		for (uint64_t k = 0; k < n; k++) {
			for (int i = 0; i < 3; i++) {
				struct th_stamp st;

				if (seq[i] == n)
					continue;
				if (shmwal_reader_next(r[i], &rec, 0) < 0) {
					fprintf(stderr, "reader %d at record %" PRIu64 ": %s\n", i,
						seq[i], shmwal_last_error());
					_exit(4);
				}
				if (th_check(rec.value, rec.value_len, &st) < 0 ||
				    st.seq != seq[i]++)
					_exit(5);
			}
			if (k % 97 == 0) {
				int now = mappings_of(".seg");

				most = now > most ? now : most;
			}
		}
		for (int i = 0; i < 3; i++)
			if (seq[i] != n || shmwal_reader_next(r[i], &rec, 0) != -ETIMEDOUT)
				_exit(6);
		for (int i = 0; i < 3; i++)
			shmwal_reader_close(r[i]);
		if (most < 1 || most > 3 || mappings_of(".seg") != 0) {
			fprintf(stderr, "segment mappings: %d at most, %d after\n", most,
				mappings_of(".seg"));
			_exit(7);
		}
		_exit(0);
	}
	assert_int_equal(th_wait(child, TH_TIMEOUT_S + 10), 0);
}

static void test_reader_empty(void **state)
{
	struct fx *f = *state;
	struct shmwal_reader *r;
	uint64_t lsn;

	/* no flusher has ever run: no segment at all */
	create_wal(f->dir);
	EXPECT_OK(shmwal_reader_open(f->dir, 0, SHMWAL_LSN_OLDEST, &r));
	expect_no_record(r);
	shmwal_reader_close(r);
	EXPECT_OK(shmwal_reader_open(f->dir, 1, SHMWAL_LSN_END, &r));
	expect_no_record(r);
	shmwal_reader_close(r);
	/* with a flusher: an empty segment */
	f->flusher = th_flusher_start(f->dir, 0);
	EXPECT_OK(th_open(f->dir, &f->w));
	EXPECT_OK(shmwal_reader_open(f->dir, 0, SHMWAL_LSN_OLDEST, &r));
	expect_no_record(r);
	{
		struct shmwal_record rec;
		uint64_t t0 = clock_ns(CLOCK_MONOTONIC);

		/* a bounded wait on an empty log times out, not earlier than asked */
		EXPECT_ERR(shmwal_reader_next(r, &rec, 20000000ull), -ETIMEDOUT, NULL);
		assert_true(clock_ns(CLOCK_MONOTONIC) - t0 >= 20000000ull);
	}
	/* and a record that arrives later is seen */
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "a", 1, "b", 1, &lsn));
	expect_record(r, 0, lsn, SHMWAL_TYPE_PUT, "a", 1, "b", 1);
	shmwal_reader_close(r);
}

static void test_record_fields(void **state)
{
	struct fx *f = *state;
	const uint8_t bin[] = { 0, 1, 2, 0xff, 0xfe, 0, 7 };
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal_claim c;
	uint64_t l[5], p1, t0, t1, prev = 0;
	int i;

	start_wal(f);
	t0 = now_real_ns();
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "user:1", 6, "alice", 5, &l[0]));
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_DELETE, "user:2", 6, NULL, 0, &l[1]));
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_USER_MIN, "bin", 3, bin, sizeof(bin), &l[2]));
	EXPECT_OK(shmwal_claim(f->w, 0, 4242, 2, 3, &c));
	memcpy(c.key, "zc", 2);
	memcpy(c.value, "xyz", 3);
	l[3] = c.lsn;
	EXPECT_OK(shmwal_commit(f->w, &c));
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_MAX, NULL, 0, "max type", 8, &l[4]));
	EXPECT_OK(shmwal_append(f->w, 1, SHMWAL_TYPE_PUT, "p", 1, "one", 3, &p1));
	t1 = now_real_ns();
	EXPECT_OK(shmwal_wait_durable(f->w, 0, l[4], LONG_NS));
	EXPECT_OK(shmwal_wait_durable(f->w, 1, p1, LONG_NS));

	EXPECT_OK(shmwal_reader_open(f->dir, 0, SHMWAL_LSN_OLDEST, &r));
	expect_record(r, 0, l[0], SHMWAL_TYPE_PUT, "user:1", 6, "alice", 5);
	expect_record(r, 0, l[1], SHMWAL_TYPE_DELETE, "user:2", 6, NULL, 0);
	expect_record(r, 0, l[2], SHMWAL_TYPE_USER_MIN, "bin", 3, bin, sizeof(bin));
	expect_record(r, 0, l[3], 4242, "zc", 2, "xyz", 3);
	expect_record(r, 0, l[4], SHMWAL_TYPE_MAX, NULL, 0, "max type", 8);
	expect_no_record(r);
	shmwal_reader_close(r);

	/* next_lsn chains, timestamps are CLOCK_REALTIME at the claim, in order */
	EXPECT_OK(shmwal_reader_open(f->dir, 0, l[0], &r));
	for (i = 0; i < 5; i++) {
		EXPECT_OK(shmwal_reader_next(r, &rec, 0));
		assert_int_equal(rec.lsn, l[i]);
		if (i < 4)
			assert_int_equal(rec.next_lsn, l[i + 1]);
		assert_true(rec.timestamp_ns + 5 * SHMWAL_NS_PER_SEC >= t0);
		assert_true(rec.timestamp_ns <= t1 + 5 * SHMWAL_NS_PER_SEC);
		assert_true(rec.timestamp_ns >= prev);
		prev = rec.timestamp_ns;
	}
	shmwal_reader_close(r);

	/* from the middle, and partition 1 */
	EXPECT_OK(shmwal_reader_open(f->dir, 0, l[2], &r));
	expect_record(r, 0, l[2], SHMWAL_TYPE_USER_MIN, "bin", 3, bin, sizeof(bin));
	shmwal_reader_close(r);
	EXPECT_OK(shmwal_reader_open(f->dir, 1, SHMWAL_LSN_OLDEST, &r));
	expect_record(r, 1, p1, SHMWAL_TYPE_PUT, "p", 1, "one", 3);
	expect_no_record(r);
	shmwal_reader_close(r);
}

/* ---- truncation -------------------------------------------------------------------------- */

static void test_truncate(void **state)
{
	struct fx *f = *state;
	struct shmwal_reader *r;
	uint64_t lsn;
	char missing[4096];

	snprintf(missing, sizeof(missing), "%s/does-not-exist", f->dir);
	EXPECT_ERR(shmwal_truncate_before(missing, 0, 0), -ENOENT, NULL);
	EXPECT_ERR(shmwal_truncate_before(NULL, 0, 0), -EINVAL, NULL);
	start_wal(f);
	EXPECT_ERR(shmwal_truncate_before(f->dir, PARTS, 0), -EINVAL, "partition");
	EXPECT_ERR(shmwal_truncate_before(f->dir, UINT32_MAX, UINT64_MAX), -EINVAL, "partition");
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "k", 1, "v", 1, &lsn));
	EXPECT_OK(shmwal_wait_durable(f->w, 0, lsn, LONG_NS));
	/* one segment: it is the one being written, never removed */
	assert_int_equal(shmwal_truncate_before(f->dir, 0, 0), 0);
	assert_int_equal(shmwal_truncate_before(f->dir, 0, lsn + 64), 0);
	assert_int_equal(shmwal_truncate_before(f->dir, 0, UINT64_MAX), 0);
	assert_int_equal(shmwal_truncate_before(f->dir, 1, UINT64_MAX), 0);
	EXPECT_OK(shmwal_reader_open(f->dir, 0, SHMWAL_LSN_OLDEST, &r));
	expect_record(r, 0, lsn, SHMWAL_TYPE_PUT, "k", 1, "v", 1);
	shmwal_reader_close(r);
}

/* ---- a stopped WAL ----------------------------------------------------------------------- */

static void test_shutdown_with_producer_attached(void **state)
{
	struct fx *f = *state;
	struct shmwal_claim c;
	struct shmwal_reader *r;
	struct shmwal *other = NULL;
	uint64_t l0, l1, l2 = 0;

	start_wal(f);
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "before", 6, "stop", 4, &l0));
	/* a clean stop drains (the record becomes durable) but keeps the shm: w is attached */
	stop_flusher(f);
	assert_true(shmwal_durable_lsn(f->w, 0) > (int64_t)l0);
	assert_true(shm_exists(f->dir));
	EXPECT_ERR(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "after", 5, "stop", 4, &l2),
		   -ESHUTDOWN, "stop");
	EXPECT_ERR(shmwal_try_append(f->w, 1, SHMWAL_TYPE_PUT, "after", 5, "stop", 4, &l2),
		   -ESHUTDOWN, "stop");
	EXPECT_ERR(shmwal_claim(f->w, 0, SHMWAL_TYPE_PUT, 1, 1, &c), -ESHUTDOWN, "stop");
	EXPECT_ERR(shmwal_try_claim(f->w, 0, SHMWAL_TYPE_PUT, 1, 1, &c), -ESHUTDOWN, "stop");
	assert_int_equal(l2, 0);
	/* durability questions still work */
	EXPECT_OK(shmwal_wait_durable(f->w, 0, l0, 0));
	/* a new producer is turned away while no flusher runs */
	EXPECT_ERR(shmwal_open(f->dir, &other), -ESHUTDOWN, "flusher");
	assert_null(other);
	shmwal_close(f->w);
	f->w = NULL;

	/* a new flusher adopts the shm; producers work again */
	f->flusher = th_flusher_start(f->dir, 0);
	EXPECT_OK(th_open(f->dir, &f->w));
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "again", 5, "works", 5, &l1));
	assert_int_equal(l1, l0 + frame_size(6, 4));
	EXPECT_OK(shmwal_wait_durable(f->w, 0, l1, LONG_NS));
	shmwal_close(f->w);
	f->w = NULL;
	/* with no producer attached, a clean stop removes the shm */
	stop_flusher(f);
	assert_false(shm_exists(f->dir));

	EXPECT_OK(shmwal_reader_open(f->dir, 0, SHMWAL_LSN_OLDEST, &r));
	expect_record(r, 0, l0, SHMWAL_TYPE_PUT, "before", 6, "stop", 4);
	expect_record(r, 0, l1, SHMWAL_TYPE_PUT, "again", 5, "works", 5);
	expect_no_record(r);
	shmwal_reader_close(r);
}

/* ---- fork -------------------------------------------------------------------------------- */

/* In the child: exit codes name the step that went wrong. */
static int child_uses_parent_handle(const char *dir, struct shmwal *parent, uint64_t *lsn_out)
{
	struct shmwal_claim c;
	struct shmwal *w;
	uint64_t lsn = 0;
	int rc;

	rc = shmwal_append(parent, 0, SHMWAL_TYPE_PUT, "child", 5, "old handle", 10, &lsn);
	if (rc != -ECHILD)
		return 10;
	if (!*shmwal_last_error())
		return 11;
	if (shmwal_try_append(parent, 0, SHMWAL_TYPE_PUT, "c", 1, "v", 1, &lsn) != -ECHILD)
		return 12;
	if (shmwal_claim(parent, 0, SHMWAL_TYPE_PUT, 1, 1, &c) != -ECHILD)
		return 13;
	if (lsn != 0)
		return 14;
	shmwal_close(parent); /* the child's copy; the parent's attachment is untouched */
	rc = shmwal_open(dir, &w);
	if (rc < 0)
		return 20;
	rc = shmwal_append(w, 0, SHMWAL_TYPE_PUT, "child", 5, "new handle", 10, &lsn);
	if (rc < 0)
		return 21;
	rc = shmwal_wait_durable(w, 0, lsn, LONG_NS);
	if (rc < 0)
		return 22;
	shmwal_close(w);
	*lsn_out = lsn;
	return 0;
}

static void test_fork_child(void **state)
{
	struct fx *f = *state;
	uint64_t *shared = th_shared_counters(1);
	struct shmwal_reader *r;
	uint64_t l0, l2;
	pid_t pid;

	assert_non_null(shared);
	start_wal(f);
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "parent", 6, "first", 5, &l0));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		uint64_t lsn = 0;
		int rc = child_uses_parent_handle(f->dir, f->w, &lsn);

		if (rc)
			fprintf(stderr, "child: step %d: %s\n", rc, shmwal_last_error());
		__atomic_store_n(shared, lsn, __ATOMIC_RELEASE);
		_exit(rc);
	}
	assert_int_equal(th_wait(pid, TH_TIMEOUT_S), 0);
	/* the parent's handle keeps working */
	EXPECT_OK(shmwal_append(f->w, 0, SHMWAL_TYPE_PUT, "parent", 6, "second", 6, &l2));
	EXPECT_OK(shmwal_wait_durable(f->w, 0, l2, LONG_NS));
	assert_int_equal(__atomic_load_n(shared, __ATOMIC_ACQUIRE), l0 + frame_size(6, 5));

	EXPECT_OK(shmwal_reader_open(f->dir, 0, SHMWAL_LSN_OLDEST, &r));
	expect_record(r, 0, l0, SHMWAL_TYPE_PUT, "parent", 6, "first", 5);
	expect_record(r, 0, l0 + frame_size(6, 5), SHMWAL_TYPE_PUT, "child", 5, "new handle", 10);
	expect_record(r, 0, l2, SHMWAL_TYPE_PUT, "parent", 6, "second", 6);
	expect_no_record(r);
	shmwal_reader_close(r);
	munmap(shared, sizeof(uint64_t));
}

/* ---- configuration ----------------------------------------------------------------------- */

static void test_config_errors(void **state)
{
	struct fx *f = *state;
	struct shmwal_config c, got;
	char path[4096], missing[4096];
	int fd;

	shmwal_config_default(&c);
	snprintf(missing, sizeof(missing), "%s/does-not-exist", f->dir);
	EXPECT_ERR(shmwal_config_load(f->dir, &got), -ENOENT, NULL);
	EXPECT_ERR(shmwal_config_load(missing, &got), -ENOENT, NULL);
	EXPECT_ERR(shmwal_config_load(NULL, &got), -EINVAL, NULL);
	EXPECT_ERR(shmwal_config_load(f->dir, NULL), -EINVAL, NULL);

	snprintf(path, sizeof(path), "%s/x", f->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x\n", 2), 2);
	close(fd);
	EXPECT_ERR(shmwal_create(f->dir, &c), -EEXIST, NULL);
	EXPECT_ERR(shmwal_config_load(f->dir, &got), -ENOENT, NULL);
	/* nothing was created there */
	snprintf(path, sizeof(path), "%s/meta", f->dir);
	assert_int_equal(access(path, F_OK), -1);
	EXPECT_ERR(shmwal_create(NULL, &c), -EINVAL, NULL);
	EXPECT_ERR(shmwal_create("", &c), -EINVAL, NULL);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_open_errors),
		T(test_append_bad_args),
		T(test_append_limits),
		T(test_claim_misuse),
		T(test_durable_bad_partition),
		T(test_ring_full),
		T(test_second_flusher),
		T(test_flusher_run_errors),
		T(test_reader_errors),
		T(test_reader_end),
		T(test_reader_maps_no_ring),
		T(test_reader_many_segments),
		T(test_reader_empty),
		T(test_record_fields),
		T(test_truncate),
		T(test_shutdown_with_producer_attached),
		T(test_fork_child),
		T(test_config_errors),
	};
#undef T

	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
