/* SPDX-License-Identifier: MIT */
/*
 * test_recovery.c - recover_partition() on segment files built by hand: clean logs, torn
 * tails cut at every byte, damaged frames, torn headers moved to quarantine, and damaged
 * sealed segments refused (or quarantined with repair).
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

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "shmwal.h"
#include "shmwal_format.h"
#include "common.h" /* SHMWAL_PRINTF, used by segment.h without including it */
#include "meta.h"
#include "persist/io.h"
#include "persist/segment.h"
#include "helpers.h"

/* ---- frames built by hand --------------------------------------------------------------- */

#define MAXN 256
#define MAX_KEY 64
#define MAX_VALUE 1024

/* A run of consecutive frames of one partition's stream, starting at LSN `first`. */
struct frames {
	uint64_t first;
	size_t len; /* bytes used (a multiple of 8) */
	uint32_t n;
	size_t off[MAXN];    /* offset of frame i from `first` */
	uint32_t flen[MAXN]; /* its unpadded len */
	uint64_t mem[16384]; /* 128 KiB, 8-aligned */
};

static uint8_t *fr_bytes(struct frames *f) { return (uint8_t *)f->mem; }

static void fr_init(struct frames *f, uint64_t first)
{
	memset(f, 0, sizeof(*f));
	f->first = first;
}

/*
 * Appends a valid COMMITTED frame with the given key and value at LSN f->first + f->len,
 * byte by byte as include/shmwal_format.h describes it. Returns its len.
 */
static uint32_t fr_add(struct frames *f, uint16_t type, const void *key, uint16_t key_len,
		       const void *value, uint32_t value_len)
{
	uint32_t len = SHMWAL_FRAME_HDR + key_len + value_len, crc;
	uint8_t *b = fr_bytes(f) + f->len;
	uint64_t lsn = f->first + f->len, ts = 1700000000000000000ull + f->n, word;

	assert_true(f->n < MAXN);
	assert_true(f->len + SHMWAL_ALIGN_UP(len) <= sizeof(f->mem));
	memset(b, 0, SHMWAL_ALIGN_UP(len));
	memcpy(b + 12, &type, 2);
	memcpy(b + 14, &key_len, 2);
	memcpy(b + 16, &lsn, 8);
	memcpy(b + 24, &ts, 8);
	if (key_len)
		memcpy(b + 32, key, key_len);
	if (value_len)
		memcpy(b + 32 + key_len, value, value_len);
	word = shmwal_word_make(len, f->n % 7, SHMWAL_FRAME_COMMITTED);
	memcpy(b, &word, 8);
	crc = shmwal_frame_crc((const struct shmwal_frame *)(void *)b, len);
	memcpy(b + 8, &crc, 4);
	/* well-formed (the size limit aside: some tests want frames over it) */
	assert_int_equal(shmwal_frame_check(b, SHMWAL_ALIGN_UP(len), lsn, SHMWAL_ALIGN_UP(len)),
			 SHMWAL_FRAME_OK);
	f->off[f->n] = f->len;
	f->flen[f->n] = len;
	f->n++;
	f->len += SHMWAL_ALIGN_UP(len);
	return len;
}

/* A PAD or ABORTED frame of `len` bytes (a multiple of 8). */
static void fr_add_empty(struct frames *f, unsigned state, uint32_t len)
{
	uint8_t *b = fr_bytes(f) + f->len;
	uint64_t lsn = f->first + f->len, word;
	uint16_t type = state == SHMWAL_FRAME_PAD ? 0 : SHMWAL_TYPE_PUT;
	uint32_t crc;

	memset(b, 0, len);
	memcpy(b + 12, &type, 2);
	memcpy(b + 16, &lsn, 8);
	word = shmwal_word_make(len, state == SHMWAL_FRAME_PAD ? SHMWAL_SLOT_NONE : 3, state);
	memcpy(b, &word, 8);
	crc = shmwal_frame_crc((const struct shmwal_frame *)(void *)b, len);
	memcpy(b + 8, &crc, 4);
	f->off[f->n] = f->len;
	f->flen[f->n] = len;
	f->n++;
	f->len += len;
}

/* `count` records with varied key and value lengths (0..MAX_KEY, 0..~300). */
static void fr_add_records(struct frames *f, uint32_t count, uint64_t seed)
{
	uint8_t key[MAX_KEY], value[MAX_VALUE];
	uint32_t i, j;

	for (i = 0; i < count; i++) {
		uint16_t kl = (uint16_t)(th_rand(&seed) % 20);
		uint32_t vl = (uint32_t)(th_rand(&seed) % 300);

		for (j = 0; j < kl; j++)
			key[j] = (uint8_t)('a' + (i + j) % 26);
		for (j = 0; j < vl; j++)
			value[j] = (uint8_t)th_rand(&seed);
		fr_add(f, (uint16_t)(SHMWAL_TYPE_PUT + i % 2), key, kl, value, vl);
	}
}

/* ---- the fixture: a WAL with 2 partitions ----------------------------------------------- */

struct logbuf {
	int calls, warns;
	char last[2048];
};

struct fixture {
	char *tmp;
	char wal[4096];
	char pdir[2][4200];
	char qdir[4200];
	struct meta m;
	struct logbuf log;
	struct frames *f[4];
};

static void fmt_path(char *buf, size_t cap, const char *a, const char *b)
{
	int n = snprintf(buf, cap, "%s/%s", a, b);

	assert_true(n > 0 && (size_t)n < cap);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	struct shmwal_config c;
	int i;

	if (!fx)
		return -1;
	*state = fx;
	fx->tmp = th_tmpdir("recovery");
	if (!fx->tmp)
		return -1;
	for (i = 0; i < 4; i++) {
		fx->f[i] = malloc(sizeof(*fx->f[i]));
		if (!fx->f[i])
			return -1;
	}
	fmt_path(fx->wal, sizeof(fx->wal), fx->tmp, "wal");
	fmt_path(fx->pdir[0], sizeof(fx->pdir[0]), fx->wal, "p000");
	fmt_path(fx->pdir[1], sizeof(fx->pdir[1]), fx->wal, "p001");
	fmt_path(fx->qdir, sizeof(fx->qdir), fx->wal, QUARANTINE_NAME);
	shmwal_config_default(&c);
	c.partitions = 2;
	c.ring_bytes = 64u << 10;
	c.segment_bytes = 64u << 10;
	c.max_key = MAX_KEY;
	c.max_value = MAX_VALUE;
	c.mode = 0640; /* a group-readable WAL: its directories are 0750 */
	if (shmwal_create(fx->wal, &c) < 0)
		return -1;
	if (meta_load(fx->wal, &fx->m) < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	int i;

	if (!fx)
		return 0;
	th_destroy(fx->tmp);
	free(fx->tmp);
	for (i = 0; i < 4; i++)
		free(fx->f[i]);
	free(fx);
	return 0;
}

static void rec_log(void *ctx, enum shmwal_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void rec_log(void *ctx, enum shmwal_log_level lvl, const char *fmt, ...)
{
	struct logbuf *l = ctx;
	va_list ap;

	l->calls++;
	if (lvl == SHMWAL_LOG_WARN)
		l->warns++;
	va_start(ap, fmt);
	vsnprintf(l->last, sizeof(l->last), fmt, ap);
	va_end(ap);
	if (getenv("SHMWAL_TEST_VERBOSE"))
		fprintf(stderr, "recovery log %d: %s\n", (int)lvl, l->last);
}

static int recover(struct fixture *fx, uint32_t part, int repair, struct seg_recovery *out)
{
	memset(&fx->log, 0, sizeof(fx->log));
	memset(out, 0xa5, sizeof(*out));
	return recover_partition(&fx->m, part, repair, rec_log, &fx->log, out);
}

static void seg_file(const struct fixture *fx, uint32_t part, uint64_t first, char *buf,
		     size_t cap)
{
	char name[24];

	shmwal_segment_name(name, first);
	fmt_path(buf, cap, fx->pdir[part], name);
}

static int64_t file_size(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -1;
	return (int64_t)st.st_size;
}

static int64_t seg_size(const struct fixture *fx, uint32_t part, uint64_t first)
{
	char path[4300];

	seg_file(fx, part, first, path, sizeof(path));
	return file_size(path);
}

static void write_file(const char *path, const void *a, size_t na, const void *b, size_t nb)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	if (na)
		assert_int_equal(write(fd, a, na), (ssize_t)na);
	if (nb)
		assert_int_equal(write(fd, b, nb), (ssize_t)nb);
	assert_int_equal(close(fd), 0);
}

/* Writes pNNN/<name_first>.seg: the first hdr_bytes of *h, then data[0, n). */
static void write_seg(const struct fixture *fx, uint32_t part, uint64_t name_first,
		      const struct shmwal_segment_header *h, size_t hdr_bytes, const void *data,
		      size_t n)
{
	char path[4300];

	seg_file(fx, part, name_first, path, sizeof(path));
	write_file(path, h, hdr_bytes, data, n);
}

static void good_hdr(const struct fixture *fx, struct shmwal_segment_header *h, uint32_t part,
		     uint64_t first)
{
	shmwal_segment_header_init(h, part, first, fx->m.instance, 1700000000000000000ull);
}

/* A whole, good segment holding the first n bytes of f. */
static void put_seg(const struct fixture *fx, uint32_t part, const struct frames *f, size_t n)
{
	struct shmwal_segment_header h;

	good_hdr(fx, &h, part, f->first);
	write_seg(fx, part, f->first, &h, sizeof(h), f->mem, n);
}

/* Number of files in DIR/quarantine that hold segment `first` of partition `part` (whose
 * size is returned in *size). */
static int quarantined(const struct fixture *fx, uint32_t part, uint64_t first, int64_t *size)
{
	char prefix[64], name[24], path[8300];
	struct dirent *e;
	DIR *d;
	int n = 0;

	shmwal_segment_name(name, first);
	snprintf(prefix, sizeof(prefix), "p%03u-%s.", part, name);
	d = opendir(fx->qdir);
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
			continue;
		n++;
		fmt_path(path, sizeof(path), fx->qdir, e->d_name);
		if (size)
			*size = file_size(path);
	}
	closedir(d);
	return n;
}

/* Number of *.seg files in a partition directory. */
static int seg_count(const struct fixture *fx, uint32_t part)
{
	struct dirent *e;
	DIR *d = opendir(fx->pdir[part]);
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		uint64_t first;

		if (shmwal_segment_name_parse(e->d_name, &first) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static void assert_clean_end(const struct seg_recovery *r, uint64_t seg_first, uint64_t end,
			     uint32_t segments)
{
	assert_int_equal(r->has_seg, 1);
	assert_int_equal(r->seg_first, seg_first);
	assert_int_equal(r->end, end);
	assert_int_equal(r->segments, segments);
	assert_int_equal(r->cut_bytes, 0);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_empty_partition(void **state)
{
	struct fixture *fx = *state;
	struct seg_recovery r;

	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_int_equal(r.end, 0);
	assert_int_equal(r.has_seg, 0);
	assert_int_equal(r.segments, 0);
	assert_int_equal(r.cut_bytes, 0);
	assert_int_equal(recover(fx, 1, 1, &r), 0);
	assert_int_equal(r.end, 0);
	assert_int_equal(r.has_seg, 0);
	assert_int_equal(fx->log.calls, 0);
}

static void test_one_segment_clean(void **state)
{
	struct fixture *fx = *state;
	struct frames *f = fx->f[0];
	struct seg_recovery r;
	static const uint64_t firsts[] = { 0, 8, 0x10000, 0x123456789a0ull };
	size_t i;

	for (i = 0; i < sizeof(firsts) / sizeof(firsts[0]); i++) {
		char path[4300];

		fr_init(f, firsts[i]);
		fr_add_records(f, 20, 1 + i);
		put_seg(fx, 0, f, f->len);
		assert_int_equal(recover(fx, 0, 0, &r), 0);
		assert_clean_end(&r, f->first, f->first + f->len, 1);
		assert_int_equal(seg_size(fx, 0, f->first), SHMWAL_SEG_HDR + f->len);
		assert_int_equal(fx->log.calls, 0);
		/* again: nothing changes */
		assert_int_equal(recover(fx, 0, 1, &r), 0);
		assert_clean_end(&r, f->first, f->first + f->len, 1);
		seg_file(fx, 0, f->first, path, sizeof(path));
		assert_int_equal(unlink(path), 0);
	}

	/* a segment holding only its header */
	fr_init(f, 0x4000);
	put_seg(fx, 0, f, 0);
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_clean_end(&r, 0x4000, 0x4000, 1);
	assert_int_equal(seg_size(fx, 0, 0x4000), SHMWAL_SEG_HDR);
}

/* The last frame torn at every byte inside it: cut back to where it starts. */
static void test_torn_last_frame_every_offset(void **state)
{
	struct fixture *fx = *state;
	struct frames *f = fx->f[0];
	struct seg_recovery r;
	uint8_t value[200];
	size_t start, full, t;
	char path[4300];

	fr_init(f, 0x8000);
	fr_add_records(f, 6, 11);
	memset(value, 0x3c, sizeof(value));
	fr_add(f, SHMWAL_TYPE_PUT, "last", 4, value, 163); /* len 199: padded 200 */
	start = f->off[f->n - 1];
	full = f->len;
	assert_int_equal(full - start, 200);
	seg_file(fx, 0, f->first, path, sizeof(path));

	for (t = 0; t <= full - start; t++) {
		put_seg(fx, 0, f, start + t);
		assert_int_equal(recover(fx, 0, 0, &r), 0);
		assert_int_equal(r.has_seg, 1);
		assert_int_equal(r.seg_first, f->first);
		assert_int_equal(r.segments, 1);
		if (t == full - start) {
			assert_int_equal(r.end, f->first + full);
			assert_int_equal(r.cut_bytes, 0);
			assert_int_equal(file_size(path), SHMWAL_SEG_HDR + full);
			continue;
		}
		if (r.end != f->first + start || r.cut_bytes != t)
			fail_msg("torn at +%zu: end %" PRIu64 " cut %" PRIu64 ", want end %" PRIu64
				 " cut %zu",
				 t, r.end, r.cut_bytes, f->first + start, t);
		assert_int_equal(file_size(path), SHMWAL_SEG_HDR + start);
		/* the cut is reported (warning naming the file) */
		if (t) {
			assert_true(fx->log.warns >= 1);
			assert_non_null(strstr(fx->log.last, path));
		}
	}
}

/* Zeros after the last frame (a preallocated or extended file) are cut. */
static void test_zero_tail(void **state)
{
	struct fixture *fx = *state;
	struct frames *f = fx->f[0];
	struct seg_recovery r;
	size_t len;

	fr_init(f, 0);
	fr_add_records(f, 5, 3);
	len = f->len;
	put_seg(fx, 0, f, len + 4096); /* the buffer is zero past len */
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_int_equal(r.end, len);
	assert_int_equal(r.cut_bytes, 4096);
	assert_int_equal(seg_size(fx, 0, 0), SHMWAL_SEG_HDR + len);
}

/* A bit flip anywhere in a middle frame of the last segment cuts the log at that frame. */
static void test_bitflip_middle_frame(void **state)
{
	struct fixture *fx = *state;
	struct frames *f = fx->f[0];
	struct seg_recovery r;
	size_t mid, off, total;
	int bit, tried = 0;

	fr_init(f, 0x20000);
	fr_add_records(f, 2, 5);
	fr_add(f, SHMWAL_TYPE_PUT, "mk", 2, "value", 5); /* len 39 */
	mid = f->off[f->n - 1];
	fr_add_records(f, 2, 6);
	total = f->len;

	for (off = 0; off < f->flen[2]; off++) {
		for (bit = 0; bit < 8; bit++) {
			uint8_t *b = fr_bytes(f) + mid + off;

			if (off >= 4 && off < 6)
				continue; /* the slot: not covered, informational */
			*b ^= (uint8_t)(1u << bit);
			put_seg(fx, 0, f, total);
			*b ^= (uint8_t)(1u << bit);
			assert_int_equal(recover(fx, 0, 0, &r), 0);
			if (r.end != f->first + mid || r.cut_bytes != total - mid)
				fail_msg("flip at frame byte %zu bit %d: end %" PRIu64
					 " cut %" PRIu64 ", want end %" PRIu64 " cut %zu",
					 off, bit, r.end, r.cut_bytes, f->first + mid,
					 total - mid);
			assert_int_equal(seg_size(fx, 0, f->first), SHMWAL_SEG_HDR + mid);
			tried++;
		}
	}
	assert_int_equal(tried, (39 - 2) * 8);

	/* Control: the slot bits do not matter. */
	fr_bytes(f)[mid + 4] ^= 0x5a;
	put_seg(fx, 0, f, total);
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_clean_end(&r, f->first, f->first + total, 1);
}

/* Frames whose lsn field is not their position (stale bytes) are not part of the log. */
static void test_stale_frames(void **state)
{
	struct fixture *fx = *state;
	struct frames *f = fx->f[0];
	struct shmwal_segment_header h;
	struct seg_recovery r;

	fr_init(f, 0);
	fr_add_records(f, 4, 8);
	good_hdr(fx, &h, 0, 0x1000); /* named and headed 0x1000, frames built for LSN 0 */
	write_seg(fx, 0, 0x1000, &h, sizeof(h), f->mem, f->len);
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_int_equal(r.end, 0x1000);
	assert_int_equal(r.cut_bytes, f->len);
	assert_int_equal(seg_size(fx, 0, 0x1000), SHMWAL_SEG_HDR);
}

/* PAD and ABORTED frames are part of the log; a frame over the configured limit is not. */
static void test_pad_aborted_and_oversize(void **state)
{
	struct fixture *fx = *state;
	struct frames *f = fx->f[0];
	struct seg_recovery r;
	static uint8_t big[2000];
	size_t good;

	fr_init(f, 0x100);
	fr_add_records(f, 2, 9);
	fr_add_empty(f, SHMWAL_FRAME_PAD, 96);
	fr_add_records(f, 1, 10);
	fr_add_empty(f, SHMWAL_FRAME_ABORTED, 64);
	fr_add_records(f, 1, 11);
	good = f->len;
	put_seg(fx, 0, f, good);
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_clean_end(&r, 0x100, 0x100 + good, 1);

	/* A well-formed frame bigger than max_key + max_value allows. */
	memset(big, 7, sizeof(big));
	fr_add(f, SHMWAL_TYPE_PUT, "k", 1, big, sizeof(big));
	fr_add_records(f, 1, 12);
	put_seg(fx, 0, f, f->len);
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_int_equal(r.end, 0x100 + good);
	assert_int_equal(r.cut_bytes, f->len - good);
}

/* A last segment with a torn (short) header holds nothing: moved to DIR/quarantine. */
static void test_torn_header_quarantined(void **state)
{
	struct fixture *fx = *state;
	struct frames *f = fx->f[0];
	struct shmwal_segment_header h;
	struct seg_recovery r;
	int64_t qsize = -1;

	struct stat st;
	mode_t old_mask;

	good_hdr(fx, &h, 0, 0x2000);
	write_seg(fx, 0, 0x2000, &h, 10, NULL, 0);
	old_mask = umask(077);
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	umask(old_mask);
	/* the quarantine directory has the WAL's directory mode, whatever the umask */
	assert_int_equal(stat(fx->qdir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal(seg_size(fx, 0, 0x2000), -1);
	assert_int_equal(quarantined(fx, 0, 0x2000, &qsize), 1);
	assert_int_equal(qsize, 10); /* moved, not changed */
	assert_int_equal(r.end, 0x2000); /* LSNs go on from its first LSN */
	assert_int_equal(r.has_seg, 0);
	assert_int_equal(r.segments, 0);
	assert_true(fx->log.warns >= 1);
	/* a second recovery finds nothing and keeps quiet */
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_int_equal(r.has_seg, 0);
	assert_int_equal(r.end, 0);

	/* An empty file, and a 64-byte header of garbage: the same. */
	write_seg(fx, 0, 0x3000, &h, 0, NULL, 0);
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_int_equal(r.end, 0x3000);
	assert_int_equal(r.has_seg, 0);
	assert_int_equal(quarantined(fx, 0, 0x3000, NULL), 1);
	good_hdr(fx, &h, 0, 0x4000);
	h.crc ^= 1;
	write_seg(fx, 0, 0x4000, &h, sizeof(h), NULL, 0);
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_int_equal(r.end, 0x4000);
	assert_int_equal(quarantined(fx, 0, 0x4000, NULL), 1);
	assert_int_equal(seg_count(fx, 0), 0);

	/* After a whole sealed segment: the end falls back to where the torn one started,
	 * and the sealed one becomes the last. */
	fr_init(f, 0x10000);
	fr_add_records(f, 8, 21);
	put_seg(fx, 0, f, f->len);
	good_hdr(fx, &h, 0, f->first + f->len);
	write_seg(fx, 0, f->first + f->len, &h, 10, NULL, 0);
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_int_equal(quarantined(fx, 0, f->first + f->len, NULL), 1);
	assert_int_equal(seg_size(fx, 0, f->first + f->len), -1);
	assert_clean_end(&r, f->first, f->first + f->len, 1);
}

/* A last segment with a bad header but frames after it is damage, not a torn tail. */
static void test_bad_header_over_frames(void **state)
{
	struct fixture *fx = *state;
	struct frames *f = fx->f[0];
	struct shmwal_segment_header h;
	struct seg_recovery r;
	char path[4300];

	fr_init(f, 0x800);
	fr_add_records(f, 3, 4);
	good_hdr(fx, &h, 0, f->first);
	h.created_ns ^= 1; /* checksum mismatch */
	write_seg(fx, 0, f->first, &h, sizeof(h), f->mem, f->len);
	seg_file(fx, 0, f->first, path, sizeof(path));
	assert_int_equal(recover(fx, 0, 0, &r), -EBADMSG);
	assert_non_null(strstr(shmwal_last_error(), path));
	assert_int_equal(file_size(path), SHMWAL_SEG_HDR + f->len); /* untouched */
	assert_int_equal(quarantined(fx, 0, f->first, NULL), 0);

	assert_int_equal(recover(fx, 0, 1, &r), 0);
	assert_int_equal(file_size(path), -1);
	assert_int_equal(quarantined(fx, 0, f->first, NULL), 1);
	assert_true(r.end >= f->first);
	assert_int_equal(r.has_seg, 0);
}

/* Three whole segments: sealed ones are checked by header and size only. */
static void test_multiple_segments(void **state)
{
	struct fixture *fx = *state;
	struct frames *a = fx->f[0], *b = fx->f[1], *c = fx->f[2];
	struct seg_recovery r;

	fr_init(a, 0);
	fr_add_records(a, 10, 31);
	fr_init(b, a->first + a->len);
	fr_add_records(b, 10, 32);
	fr_init(c, b->first + b->len);
	fr_add_records(c, 10, 33);
	put_seg(fx, 0, a, a->len);
	put_seg(fx, 0, b, b->len);
	put_seg(fx, 0, c, c->len);
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_clean_end(&r, c->first, c->first + c->len, 3);

	/* The last one torn: only it is cut. */
	put_seg(fx, 0, c, c->len - 5);
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_int_equal(r.segments, 3);
	assert_int_equal(r.seg_first, c->first);
	assert_int_equal(r.end, c->first + c->off[c->n - 1]);
	assert_int_equal(r.cut_bytes, c->len - 5 - c->off[c->n - 1]);
	assert_int_equal(seg_size(fx, 0, a->first), SHMWAL_SEG_HDR + a->len);
	assert_int_equal(seg_size(fx, 0, b->first), SHMWAL_SEG_HDR + b->len);

	/* The other partition is independent. */
	assert_int_equal(recover(fx, 1, 0, &r), 0);
	assert_int_equal(r.has_seg, 0);
	assert_int_equal(r.end, 0);
}

struct two_segs {
	struct frames *a, *b;
	char path_a[4300], path_b[4300];
};

/* Sealed segment A [0x400, ...) and last segment B right after it. */
static void make_two(struct fixture *fx, struct two_segs *t)
{
	t->a = fx->f[0];
	t->b = fx->f[1];
	fr_init(t->a, 0x400);
	fr_add_records(t->a, 12, 41);
	fr_init(t->b, t->a->first + t->a->len);
	fr_add_records(t->b, 4, 42);
	put_seg(fx, 0, t->a, t->a->len);
	put_seg(fx, 0, t->b, t->b->len);
	seg_file(fx, 0, t->a->first, t->path_a, sizeof(t->path_a));
	seg_file(fx, 0, t->b->first, t->path_b, sizeof(t->path_b));
}

/* Refused without repair: the message names the file, and nothing is changed. */
static void expect_refused(struct fixture *fx, struct two_segs *t, int64_t size_a)
{
	struct seg_recovery r;
	char name[24];

	shmwal_segment_name(name, t->a->first);
	assert_int_equal(recover(fx, 0, 0, &r), -EBADMSG);
	assert_non_null(strstr(shmwal_last_error(), name));
	assert_int_equal(file_size(t->path_a), size_a);
	assert_int_equal(file_size(t->path_b), SHMWAL_SEG_HDR + t->b->len);
	assert_int_equal(quarantined(fx, 0, t->a->first, NULL), 0);
}

static void test_sealed_short(void **state)
{
	struct fixture *fx = *state;
	struct two_segs t;
	struct seg_recovery r;

	make_two(fx, &t);
	assert_int_equal(recover(fx, 0, 0, &r), 0); /* control: whole, it is fine */
	assert_clean_end(&r, t.b->first, t.b->first + t.b->len, 2);

	/* one byte short of 64 + (B.first - A.first) */
	put_seg(fx, 0, t.a, t.a->len - 1);
	expect_refused(fx, &t, SHMWAL_SEG_HDR + t.a->len - 1);
	assert_non_null(strstr(shmwal_last_error(), t.path_a));

	/* repair: the damaged sealed segment and everything after it go to quarantine */
	assert_int_equal(recover(fx, 0, 1, &r), 0);
	assert_int_equal(file_size(t.path_a), -1);
	assert_int_equal(file_size(t.path_b), -1);
	assert_int_equal(quarantined(fx, 0, t.a->first, NULL), 1);
	assert_int_equal(quarantined(fx, 0, t.b->first, NULL), 1);
	assert_int_equal(seg_count(fx, 0), 0);
	assert_int_equal(r.has_seg, 0);
	assert_int_equal(r.segments, 0);
	assert_true(r.end >= t.a->first); /* the log goes on at or after the cut */
	assert_true(fx->log.warns >= 2);
}

static void test_sealed_long(void **state)
{
	struct fixture *fx = *state;
	struct two_segs t;

	make_two(fx, &t);
	put_seg(fx, 0, t.a, t.a->len + 8); /* zeros after its last frame */
	expect_refused(fx, &t, SHMWAL_SEG_HDR + t.a->len + 8);
}

/* S0 whole, S1 damaged, S2: repair keeps S0 (the new last segment), moves S1 and S2. */
static void test_repair_keeps_earlier(void **state)
{
	struct fixture *fx = *state;
	struct frames *a = fx->f[0], *b = fx->f[1], *c = fx->f[2];
	struct seg_recovery r;

	fr_init(a, 0);
	fr_add_records(a, 5, 51);
	fr_init(b, a->first + a->len);
	fr_add_records(b, 5, 52);
	fr_init(c, b->first + b->len);
	fr_add_records(c, 5, 53);
	put_seg(fx, 0, a, a->len);
	put_seg(fx, 0, b, b->len - 8);
	put_seg(fx, 0, c, c->len);
	assert_int_equal(recover(fx, 0, 0, &r), -EBADMSG);
	assert_int_equal(seg_count(fx, 0), 3);
	assert_int_equal(recover(fx, 0, 1, &r), 0);
	assert_int_equal(seg_count(fx, 0), 1);
	assert_int_equal(seg_size(fx, 0, a->first), SHMWAL_SEG_HDR + a->len);
	assert_int_equal(quarantined(fx, 0, b->first, NULL), 1);
	assert_int_equal(quarantined(fx, 0, c->first, NULL), 1);
	assert_clean_end(&r, a->first, a->first + a->len, 1);
}

static void test_sealed_other_instance(void **state)
{
	struct fixture *fx = *state;
	struct shmwal_segment_header h;
	struct two_segs t;

	make_two(fx, &t);
	shmwal_segment_header_init(&h, 0, t.a->first, fx->m.instance ^ 0x100, 1);
	write_seg(fx, 0, t.a->first, &h, sizeof(h), t.a->mem, t.a->len);
	expect_refused(fx, &t, SHMWAL_SEG_HDR + t.a->len);
}

static void test_sealed_name_mismatch(void **state)
{
	struct fixture *fx = *state;
	struct shmwal_segment_header h;
	struct two_segs t;

	make_two(fx, &t);
	good_hdr(fx, &h, 0, t.a->first + 8);
	write_seg(fx, 0, t.a->first, &h, sizeof(h), t.a->mem, t.a->len);
	expect_refused(fx, &t, SHMWAL_SEG_HDR + t.a->len);
}

static void test_sealed_other_partition(void **state)
{
	struct fixture *fx = *state;
	struct shmwal_segment_header h;
	struct two_segs t;

	make_two(fx, &t);
	good_hdr(fx, &h, 1, t.a->first);
	write_seg(fx, 0, t.a->first, &h, sizeof(h), t.a->mem, t.a->len);
	expect_refused(fx, &t, SHMWAL_SEG_HDR + t.a->len);
}

static void test_sealed_bad_header(void **state)
{
	struct fixture *fx = *state;
	struct shmwal_segment_header h;
	struct two_segs t;
	int off;

	make_two(fx, &t);
	for (off = 0; off < 64; off += 5) {
		good_hdr(fx, &h, 0, t.a->first);
		((uint8_t *)&h)[off] ^= 0x10;
		write_seg(fx, 0, t.a->first, &h, sizeof(h), t.a->mem, t.a->len);
		expect_refused(fx, &t, SHMWAL_SEG_HDR + t.a->len);
	}
	/* a torn header on a sealed segment is damage too */
	good_hdr(fx, &h, 0, t.a->first);
	write_seg(fx, 0, t.a->first, &h, 10, NULL, 0);
	expect_refused(fx, &t, 10);
}

/* Sealed segments' frames are not read (recovery time does not grow with the log). */
static void test_sealed_frames_not_scanned(void **state)
{
	struct fixture *fx = *state;
	struct seg_recovery r;
	struct two_segs t;

	make_two(fx, &t);
	fr_bytes(t.a)[t.a->off[3] + 24] ^= 1; /* a damaged record inside the sealed segment */
	put_seg(fx, 0, t.a, t.a->len);
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_clean_end(&r, t.b->first, t.b->first + t.b->len, 2);
}

/* Files that are not segments are ignored, and left alone. */
static void test_other_files_ignored(void **state)
{
	struct fixture *fx = *state;
	static const char *const junk[] = { "notes.txt", "0000000000000000.seg.tmp",
					    "000000000000000G.seg", "0000000000001000.SEG",
					    ".0000000000000000.seg" };
	struct frames *f = fx->f[0];
	struct seg_recovery r;
	char path[4300];
	size_t i;

	for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		fmt_path(path, sizeof(path), fx->pdir[0], junk[i]);
		write_file(path, "garbage\n", 8, NULL, 0);
	}
	fmt_path(path, sizeof(path), fx->pdir[0], "subdir");
	assert_int_equal(mkdir(path, 0700), 0);

	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_int_equal(r.has_seg, 0);
	assert_int_equal(r.end, 0);

	fr_init(f, 0x1000);
	fr_add_records(f, 7, 61);
	put_seg(fx, 0, f, f->len);
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_clean_end(&r, 0x1000, 0x1000 + f->len, 1);
	for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		fmt_path(path, sizeof(path), fx->pdir[0], junk[i]);
		assert_int_equal(file_size(path), 8);
	}
	assert_int_equal(quarantined(fx, 0, 0, NULL), 0);
}

/* After a cut the file ends exactly at the log's end: appending there continues the log. */
static void test_append_after_recovery(void **state)
{
	struct fixture *fx = *state;
	struct frames *f = fx->f[0], *g = fx->f[1];
	struct seg_recovery r;
	char path[4300];
	size_t keep;
	uint32_t len;
	int fd;

	fr_init(f, 0x40000);
	fr_add_records(f, 9, 71);
	keep = f->off[7];
	fr_bytes(f)[f->off[7] + 24] ^= 0x80; /* frame 7 damaged: the cut is before it */
	put_seg(fx, 0, f, f->off[8] + 13);    /* and frame 8 torn */
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_int_equal(r.end, f->first + keep);
	assert_int_equal(seg_size(fx, 0, r.seg_first), SHMWAL_SEG_HDR + (r.end - r.seg_first));

	/* Append a frame with the next LSN where the file ends. */
	fr_init(g, r.end);
	len = fr_add(g, SHMWAL_TYPE_PUT, "next", 4, "appended", 8);
	seg_file(fx, 0, r.seg_first, path, sizeof(path));
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, g->mem, g->len), (ssize_t)g->len);
	close(fd);
	assert_int_equal(recover(fx, 0, 0, &r), 0);
	assert_clean_end(&r, f->first, f->first + keep + SHMWAL_ALIGN_UP(len), 1);
	assert_int_equal(seg_size(fx, 0, r.seg_first), SHMWAL_SEG_HDR + (r.end - r.seg_first));
}

/*
 * A damaged word whose len is within 7 of UINT32_MAX (magic, state, lsn intact) is the end of
 * the log like any other bad frame: recovery must cut there, not crash. Run in a child, as
 * the scan may fault.
 */
static void test_corrupt_len_near_u32_max(void **state)
{
	struct fixture *fx = *state;
	struct frames *f = fx->f[0];
	struct seg_recovery r;
	uint32_t len;

	fr_init(f, 0x6000);
	fr_add_records(f, 4, 81);
	for (len = 0xfffffff8u; len != 0; len++) {
		uint64_t word = shmwal_word_make(len, 1, SHMWAL_FRAME_COMMITTED), saved;
		uint8_t *b = fr_bytes(f) + f->off[3];
		int status;
		pid_t pid;

		memcpy(&saved, b, 8);
		memcpy(b, &word, 8);
		put_seg(fx, 0, f, f->len);
		memcpy(b, &saved, 8);
		fflush(NULL);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			signal(SIGSEGV, SIG_DFL);
			signal(SIGBUS, SIG_DFL);
			_exit(recover(fx, 0, 0, &r) == 0 ? 0 : 1);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (WIFSIGNALED(status))
			fail_msg("len 0x%08x: recover_partition crashed (signal %d)", len,
				 WTERMSIG(status));
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		assert_int_equal(seg_size(fx, 0, f->first), SHMWAL_SEG_HDR + f->off[3]);
		assert_int_equal(recover(fx, 0, 0, &r), 0);
		assert_clean_end(&r, f->first, f->first + f->off[3], 1);
	}
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_empty_partition),
		T(test_one_segment_clean),
		T(test_torn_last_frame_every_offset),
		T(test_zero_tail),
		T(test_bitflip_middle_frame),
		T(test_stale_frames),
		T(test_pad_aborted_and_oversize),
		T(test_torn_header_quarantined),
		T(test_bad_header_over_frames),
		T(test_multiple_segments),
		T(test_sealed_short),
		T(test_sealed_long),
		T(test_repair_keeps_earlier),
		T(test_sealed_other_instance),
		T(test_sealed_name_mismatch),
		T(test_sealed_other_partition),
		T(test_sealed_bad_header),
		T(test_sealed_frames_not_scanned),
		T(test_other_files_ignored),
		T(test_append_after_recovery),
		T(test_corrupt_len_near_u32_max),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
