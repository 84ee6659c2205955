/* SPDX-License-Identifier: MIT */
/*
 * test_format.c - the byte formats of include/shmwal_format.h: CRC32C, the frame word, the
 * frame validity check (every kind of damage and its verdict), the segment header and the
 * segment file names.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "shmwal.h"
#include "shmwal_format.h"
#include "common.h"
#include "frame_check.h"
#include "helpers.h"

/* ---- helpers ---------------------------------------------------------------------------- */

/* A bit-at-a-time CRC32C (reflected polynomial 0x82f63b78), independent of the library's. */
static uint32_t ref_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~crc;
	size_t i;
	int k;

	for (i = 0; i < len; i++) {
		c ^= p[i];
		for (k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
	}
	return ~c;
}

static uint32_t get32(const uint8_t *b, size_t off)
{
	uint32_t v;

	memcpy(&v, b + off, sizeof(v));
	return v;
}

static uint64_t get64(const uint8_t *b, size_t off)
{
	uint64_t v;

	memcpy(&v, b + off, sizeof(v));
	return v;
}

static void put16(uint8_t *b, size_t off, uint16_t v) { memcpy(b + off, &v, sizeof(v)); }
static void put32(uint8_t *b, size_t off, uint32_t v) { memcpy(b + off, &v, sizeof(v)); }
static void put64(uint8_t *b, size_t off, uint64_t v) { memcpy(b + off, &v, sizeof(v)); }

/* Recomputes and stores the checksum of the frame at b (after deliberately changing it). */
static void refresh_crc(uint8_t *b)
{
	uint32_t len = shmwal_word_len(get64(b, 0));

	put32(b, 8, shmwal_frame_crc((const struct shmwal_frame *)(void *)b, len));
}

/*
 * Builds a COMMITTED frame by hand, byte by byte as the format describes it: header, key,
 * value, zero padding to 8, word, checksum. b must be 8-aligned and hold ALIGN_UP(len) bytes.
 * Returns len (unpadded).
 */
static uint32_t build_frame(uint8_t *b, uint64_t lsn, uint16_t type, const void *key,
			    uint16_t key_len, const void *value, uint32_t value_len, uint64_t ts,
			    uint32_t slot)
{
	uint32_t len = SHMWAL_FRAME_HDR + key_len + value_len;

	memset(b, 0xee, 8); /* scribble: the word is written below */
	memset(b + 8, 0, SHMWAL_ALIGN_UP(len) - 8);
	put16(b, 12, type);
	put16(b, 14, key_len);
	put64(b, 16, lsn);
	put64(b, 24, ts);
	if (key_len)
		memcpy(b + 32, key, key_len);
	if (value_len)
		memcpy(b + 32 + key_len, value, value_len);
	put64(b, 0, shmwal_word_make(len, slot, SHMWAL_FRAME_COMMITTED));
	put32(b, 8, shmwal_frame_crc((const struct shmwal_frame *)(void *)b, len));
	return len;
}

/* A PAD or ABORTED frame of `len` bytes: header only is meaningful, body zero. */
static void build_empty_frame(uint8_t *b, uint32_t len, unsigned state, uint32_t slot,
			      uint16_t type, uint64_t lsn)
{
	memset(b, 0, SHMWAL_ALIGN_UP(len));
	put16(b, 12, type);
	put64(b, 16, lsn);
	put64(b, 0, shmwal_word_make(len, slot, state));
	put32(b, 8, shmwal_frame_crc((const struct shmwal_frame *)(void *)b, len));
}

#define LSN 0x123458ull
#define MAXF 1024u

static const char KEY[] = "abc";			/* 3 bytes */
static const char VALUE[] = "hello, world";		/* 12 bytes: len 47, padded 48 */

static uint32_t build_std(uint8_t *b)
{
	return build_frame(b, LSN, SHMWAL_TYPE_PUT, KEY, 3, VALUE, 12, 0x1122334455667788ull, 7);
}

/* ---- CRC32C ----------------------------------------------------------------------------- */

static void test_crc_vectors(void **state)
{
	uint8_t buf[32];
	int i;

	(void)state;
	assert_int_equal(shmwal_crc32c(0, "123456789", 9), 0xe3069283u);
	assert_int_equal(shmwal_crc32c(0, "", 0), 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(shmwal_crc32c(0, buf, 32), 0x8a9136aau);
	/* RFC 3720 (iSCSI) B.4 */
	memset(buf, 0xff, sizeof(buf));
	assert_int_equal(shmwal_crc32c(0, buf, 32), 0x62a8ab43u);
	for (i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(shmwal_crc32c(0, buf, 32), 0x46dd794eu);
	for (i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	assert_int_equal(shmwal_crc32c(0, buf, 32), 0x113fdb5cu);
	/* The reference agrees on the known vector (so it can judge the rest). */
	assert_int_equal(ref_crc32c(0, "123456789", 9), 0xe3069283u);
}

/* The inline short path (x86-64 SSE4.2, up to 256 bytes) and ISA-L agree at every length
 * around it, at every misalignment, from any running value; and with the bitwise reference. */
static void test_crc_short_path(void **state)
{
	uint8_t buf[320 + 8];
	uint64_t seed = 7;
	size_t i, n, a;

	(void)state;
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)th_rand(&seed);
	for (n = 0; n <= 320; n++) {
		for (a = 0; a < 8; a++) {
			uint32_t c = (uint32_t)th_rand(&seed);

			if (crc32c_raw(c, buf + a, n) != crc32c_isal(c, buf + a, n))
				fail_msg("length %zu, offset %zu: short path and ISA-L differ", n, a);
			if (shmwal_crc32c(c, buf + a, n) != ref_crc32c(c, buf + a, n))
				fail_msg("length %zu, offset %zu: differs from the reference", n, a);
		}
	}
}

static void test_crc_chaining(void **state)
{
	const char *s = "123456789";
	uint8_t buf[1031];
	uint64_t seed = 42;
	size_t i, n, cut;

	(void)state;
	for (cut = 0; cut <= 9; cut++)
		assert_int_equal(shmwal_crc32c(shmwal_crc32c(0, s, cut), s + cut, 9 - cut),
				 0xe3069283u);
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)th_rand(&seed);
	/* Every length and misalignment against the bitwise reference; chaining at any cut. */
	for (n = 0; n <= 1024; n += (n < 80 ? 1 : 37)) {
		for (i = 0; i < 8 && i + n <= sizeof(buf); i += 3) {
			uint32_t want = ref_crc32c(0, buf + i, n);

			assert_int_equal(shmwal_crc32c(0, buf + i, n), want);
			cut = n / 3;
			assert_int_equal(shmwal_crc32c(shmwal_crc32c(0, buf + i, cut), buf + i + cut,
						       n - cut),
					 want);
			/* a non-zero starting value */
			assert_int_equal(shmwal_crc32c(0xdeadbeefu, buf + i, n),
					 ref_crc32c(0xdeadbeefu, buf + i, n));
		}
	}
}

/* The producer's copy and checksum (frame_fill_crc: the header's values, then key and value
 * copied behind the header) equals shmwal_frame_crc of the frame they make, and copies the
 * bytes exactly, at every key and value length around the short path's limit, at every
 * misalignment of the buffers. */
static void test_frame_fill_crc(void **state)
{
	static _Alignas(8) uint8_t frame[SHMWAL_FRAME_HDR + 600];
	static uint8_t src[600 + 16];
	uint64_t seed = 99;
	uint32_t k, v, a;

	(void)state;
	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)th_rand(&seed);
	for (k = 0; k <= 40; k += (k < 9 ? 1 : 31)) {
		for (v = 0; v + k <= 600; v += (v < 300 ? 1 : 97)) {
			for (a = 0; a < 8; a += 3) {
				struct shmwal_frame *f = (struct shmwal_frame *)frame;
				uint32_t len = SHMWAL_FRAME_HDR + k + v;

				f->word = shmwal_word_make(len, 3, SHMWAL_FRAME_COMMITTED);
				f->type = (uint16_t)(1 + v % 7);
				f->key_len = (uint16_t)k;
				f->lsn = th_rand(&seed) & ~7ull;
				f->timestamp_ns = th_rand(&seed);
				memset(frame + SHMWAL_FRAME_HDR, 0xee, 600);
				f->crc = frame_fill_crc(frame, len, f->type, f->lsn, f->timestamp_ns,
							src + a, k, src + a + 8, v);
				if (memcmp(frame + SHMWAL_FRAME_HDR, src + a, k) ||
				    memcmp(frame + SHMWAL_FRAME_HDR + k, src + a + 8, v) ||
				    (k + v < 600 && frame[SHMWAL_FRAME_HDR + k + v] != 0xee))
					fail_msg("key %u, value %u, offset %u: copied wrong", k, v, a);
				if (f->crc != shmwal_frame_crc(f, len))
					fail_msg("key %u, value %u, offset %u: the checksums differ", k,
						 v, a);
			}
		}
	}
}

/* The four-at-once check of the flusher and readers (crc32c_frames4) equals shmwal_frame_crc of
 * each frame, whatever their lengths: equal or not, every short tail (1 to 7 bytes after the
 * last whole word), short or past the short path's limit. */
static void test_frames4(void **state)
{
	static _Alignas(8) uint8_t buf[4][SHMWAL_FRAME_HDR + 1104]; /* frames: 8-byte aligned */
	static const uint32_t sizes[] = {32, 33, 34, 35,  36,  38,  39,	 40,   45,
					 47, 96, 97, 255, 256, 257, 300, 1056, 1131};
	const size_t ns = sizeof(sizes) / sizeof(sizes[0]);
	uint64_t seed = 5;

	(void)state;
	for (int i = 0; i < 4; i++)
		for (size_t b = 0; b < sizeof(buf[i]); b++)
			buf[i][b] = (uint8_t)th_rand(&seed);
	for (int round = 0; round < 2000; round++) {
		const void *f[4];
		uint32_t len[4], out[4];

		for (int i = 0; i < 4; i++) {
			/* round 0..ns-1: all four the same size; then random mixes */
			len[i] = round < (int)ns ? sizes[round] : sizes[th_rand(&seed) % ns];
			f[i] = buf[i];
			((struct shmwal_frame *)buf[i])->word =
				shmwal_word_make(len[i], 1, SHMWAL_FRAME_COMMITTED);
		}
		crc32c_frames4(f, len, out);
		for (int i = 0; i < 4; i++)
			if (out[i] != shmwal_frame_crc(f[i], len[i]))
				fail_msg("round %d, frame %d of %u bytes: the checksums differ", round,
					 i, len[i]);
	}
}

/*
 * The readers' committed-frame check (frame_committed_len, common/frame_check.h) says yes
 * exactly when frame_check_head says SHMWAL_FRAME_OK for a committed frame: 20,000 headers, a
 * valid one with one to three fields replaced (word, type, key length, own LSN; values near
 * the limits or random) and a random number of readable bytes and largest frame.
 */
static void test_committed_len_agrees(void **state)
{
	static const uint64_t frames[] = {16, 32, 40, 48, 56, 64, 1u << 20};
	uint64_t seed = 7, lsn = 4096;
	unsigned yes = 0, no = 0;

	(void)state;
	for (int round = 0; round < 20000; round++) {
		_Alignas(8) uint8_t buf[96] = {0};
		struct shmwal_frame *f = (struct shmwal_frame *)(void *)buf;
		uint64_t avail = th_rand(&seed) % 97, max_frame = frames[th_rand(&seed) % 7];
		uint32_t len = SHMWAL_FRAME_HDR + (uint32_t)(th_rand(&seed) % 40);
		enum shmwal_frame_verdict v;
		uint32_t got, want;

		f->word = shmwal_word_make(len, 1, SHMWAL_FRAME_COMMITTED);
		f->type = SHMWAL_TYPE_PUT;
		f->key_len = (uint16_t)(th_rand(&seed) % (len - SHMWAL_FRAME_HDR + 1));
		f->lsn = lsn;
		for (int k = (int)(th_rand(&seed) % 4); k > 0; k--) {
			uint64_t r = th_rand(&seed);

			switch (r % 4) {
			case 0: /* the word: another length, state, magic, or anything */
				f->word = r & 8
					      ? th_rand(&seed)
					      : shmwal_word_make((uint32_t)(th_rand(&seed) % 80), 1,
								 (unsigned)(th_rand(&seed) % 6));
				break;
			case 1:
				f->type = (uint16_t)(r & 16 ? 0 : th_rand(&seed));
				break;
			case 2:
				f->key_len = (uint16_t)(th_rand(&seed) % 70);
				break;
			default:
				f->lsn = lsn + (r & 16 ? 8 : th_rand(&seed));
				break;
			}
		}
		v = frame_check_head(buf, avail, lsn, max_frame);
		want = v == SHMWAL_FRAME_OK && shmwal_word_state(f->word) == SHMWAL_FRAME_COMMITTED
			   ? shmwal_word_len(f->word)
			   : 0;
		got = frame_committed_len(buf, avail, lsn, max_frame);
		if (got != want)
			fail_msg("round %d: word %016" PRIx64 " type %u key_len %u lsn %" PRIu64
				 " avail %" PRIu64 " max_frame %" PRIu64 ": %u, frame_check_head "
				 "says %s",
				 round, f->word, f->type, f->key_len, f->lsn, avail, max_frame, got,
				 shmwal_frame_verdict_str(v));
		if (want)
			yes++;
		else
			no++;
	}
	assert_true(yes > 1000 && no > 1000); /* both answers were tried */
}

/* ---- the frame word --------------------------------------------------------------------- */

static void test_word_roundtrip(void **state)
{
	static const uint32_t lens[] = { 0, 32, 47, 4096, 0x7fffffffu, 0xffffffffu };
	static const uint32_t slots[] = { 0, 1, 0x1234, 0xfffe, SHMWAL_SLOT_NONE };
	size_t i, j;
	unsigned st;

	(void)state;
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		for (j = 0; j < sizeof(slots) / sizeof(slots[0]); j++)
			for (st = SHMWAL_FRAME_CLAIMED; st <= SHMWAL_FRAME_PAD; st++) {
				uint64_t w = shmwal_word_make(lens[i], slots[j], st);

				assert_int_equal(shmwal_word_len(w), lens[i]);
				assert_int_equal(shmwal_word_slot(w), slots[j]);
				assert_int_equal(shmwal_word_state(w), st);
				assert_true(shmwal_word_magic_ok(w));
				assert_int_equal(w >> 56, SHMWAL_FRAME_MAGIC);
				assert_int_not_equal(w, 0);
			}
	/* The exact bit layout. */
	assert_int_equal(shmwal_word_make(0x11223344u, 0x5566u, 2),
			 0xa502556611223344ull);
	/* The slot is 16 bits: higher bits never leak into the state. */
	assert_int_equal(shmwal_word_slot(shmwal_word_make(32, 0x12345u, 2)), 0x2345u);
	assert_int_equal(shmwal_word_state(shmwal_word_make(32, 0x12345u, 2)), 2);
	assert_false(shmwal_word_magic_ok(0));
	assert_false(shmwal_word_magic_ok(0xa4ull << 56 | 32));
}

/* ---- shmwal_frame_check ------------------------------------------------------------------ */

static void test_frame_valid(void **state)
{
	uint64_t mem[16];
	uint8_t *b = (uint8_t *)mem;
	uint32_t len = build_std(b), crc;

	(void)state;
	assert_int_equal(len, 47);
	/* The checksum is CRC32C over the 4 bytes of len, then bytes [12, len). */
	crc = ref_crc32c(0, &len, 4);
	crc = ref_crc32c(crc, b + 12, len - 12);
	assert_int_equal(get32(b, 8), crc);
	assert_int_equal(b[47], 0); /* zero padding */

	assert_int_equal(shmwal_frame_check(b, 48, LSN, MAXF), SHMWAL_FRAME_OK);
	assert_int_equal(shmwal_frame_check(b, sizeof(mem), LSN, MAXF), SHMWAL_FRAME_OK);
	/* max_frame exactly the padded size still passes */
	assert_int_equal(shmwal_frame_check(b, 48, LSN, 48), SHMWAL_FRAME_OK);

	/* A record whose key takes all of the body (value_len 0) and one with no key. */
	len = build_frame(b, LSN, 16, "k", 1, NULL, 0, 1, 0);
	assert_int_equal(len, 33);
	assert_int_equal(shmwal_frame_check(b, 40, LSN, MAXF), SHMWAL_FRAME_OK);
	len = build_frame(b, LSN, SHMWAL_TYPE_MAX, NULL, 0, NULL, 0, 1, 0);
	assert_int_equal(len, 32);
	assert_int_equal(shmwal_frame_check(b, 32, LSN, MAXF), SHMWAL_FRAME_OK);
	len = build_frame(b, 0, SHMWAL_TYPE_DELETE, NULL, 0, "v", 1, 0, 0);
	assert_int_equal(shmwal_frame_check(b, 40, 0, MAXF), SHMWAL_FRAME_OK);

	/* The slot is not covered by the checksum (it is informational once committed). */
	build_std(b);
	put64(b, 0, shmwal_word_make(47, 0xbeef, SHMWAL_FRAME_COMMITTED));
	assert_int_equal(shmwal_frame_check(b, 48, LSN, MAXF), SHMWAL_FRAME_OK);

	for (int v = SHMWAL_FRAME_OK; v <= SHMWAL_FRAME_BAD_CRC; v++) {
		const char *s = shmwal_frame_verdict_str((enum shmwal_frame_verdict)v);

		assert_non_null(s);
		assert_true(strlen(s) > 0);
	}
}

static void test_frame_short(void **state)
{
	uint64_t mem[16];
	uint8_t *b = (uint8_t *)mem;
	uint64_t avail;

	(void)state;
	build_std(b);
	for (avail = 0; avail < 32; avail++)
		assert_int_equal(shmwal_frame_check(b, avail, LSN, MAXF), SHMWAL_FRAME_SHORT);
	/* 32..47: the header is there but the padded frame (48 bytes) is not */
	for (avail = 32; avail < 48; avail++)
		assert_int_equal(shmwal_frame_check(b, avail, LSN, MAXF), SHMWAL_FRAME_SHORT);
	assert_int_equal(shmwal_frame_check(b, 48, LSN, MAXF), SHMWAL_FRAME_OK);
	/* Even a zero word is SHORT when less than a header is readable. */
	memset(b, 0, 64);
	assert_int_equal(shmwal_frame_check(b, 31, LSN, MAXF), SHMWAL_FRAME_SHORT);
}

/* shmwal_frame_check never reads outside [f, f + avail): put the data against a guard page. */
static void test_frame_bounds(void **state)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *map, *end, *b;
	uint64_t mem[16];
	uint8_t *f = (uint8_t *)mem;

	(void)state;
	map = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		   0);
	assert_true(map != MAP_FAILED);
	assert_int_equal(mprotect(map + pg, (size_t)pg, PROT_NONE), 0);
	end = map + pg;

	build_std(f);
	b = end - 48;
	memcpy(b, f, 48);
	assert_int_equal(shmwal_frame_check(b, 48, LSN, MAXF), SHMWAL_FRAME_OK);
	/* Header claims more than is readable. */
	b = end - 32;
	memcpy(b, f, 32);
	assert_int_equal(shmwal_frame_check(b, 32, LSN, MAXF), SHMWAL_FRAME_SHORT);
	b = end - 40;
	memcpy(b, f, 40);
	assert_int_equal(shmwal_frame_check(b, 40, LSN, MAXF), SHMWAL_FRAME_SHORT);
	/* Less than a header readable. */
	b = end - 16;
	memcpy(b, f, 16);
	assert_int_equal(shmwal_frame_check(b, 16, LSN, MAXF), SHMWAL_FRAME_SHORT);
	assert_int_equal(shmwal_frame_check(end, 0, LSN, MAXF), SHMWAL_FRAME_SHORT);
	munmap(map, (size_t)pg * 2);
}

/*
 * shmwal_frame_check in a child process (it may crash): the verdict, or -signal. The frame's
 * `avail` bytes are copied against a guard page, so any read past them faults.
 */
static int check_in_child(const uint8_t *f, uint64_t avail, uint64_t lsn, uint64_t max_frame)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *map;
	pid_t pid;
	int status;

	assert_true(avail <= (uint64_t)pg);
	map = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		   0);
	assert_true(map != MAP_FAILED);
	assert_int_equal(mprotect(map + pg, (size_t)pg, PROT_NONE), 0);
	memcpy(map + pg - avail, f, avail);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* cmocka's handlers would turn a crash into a second test run in the child */
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		_exit((int)shmwal_frame_check(map + pg - avail, avail, lsn, max_frame));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	munmap(map, (size_t)pg * 2);
	if (WIFSIGNALED(status))
		return -WTERMSIG(status);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/*
 * A record whose len is within 7 of UINT32_MAX is a length out of bounds like any other.
 * (SHMWAL_ALIGN_UP on a 32-bit len must not wrap to 0 and let the checksum read 4 GiB.)
 */
static void test_frame_len_near_u32_max(void **state)
{
	uint64_t mem[16];
	uint8_t *b = (uint8_t *)mem;
	uint32_t len;

	(void)state;
	for (len = 0xfffffff0u; len != 0; len++) {
		int v;

		build_std(b);
		put64(b, 0, shmwal_word_make(len, 7, SHMWAL_FRAME_COMMITTED));
		v = check_in_child(b, 48, LSN, MAXF);
		if (v < 0)
			fail_msg("len 0x%08x: shmwal_frame_check crashed (signal %d)", len, -v);
		if (v != SHMWAL_FRAME_BAD_WORD)
			fail_msg("len 0x%08x: verdict %d, want BAD_WORD", len, v);
	}
}

static void test_frame_zero(void **state)
{
	uint64_t mem[16];
	uint8_t *b = (uint8_t *)mem;

	(void)state;
	memset(b, 0, sizeof(mem));
	assert_int_equal(shmwal_frame_check(b, sizeof(mem), LSN, MAXF), SHMWAL_FRAME_ZERO);
	assert_int_equal(shmwal_frame_check(b, sizeof(mem), 0, MAXF), SHMWAL_FRAME_ZERO);
	/* A zero word over a valid-looking rest of a frame is still ZERO. */
	build_std(b);
	put64(b, 0, 0);
	assert_int_equal(shmwal_frame_check(b, sizeof(mem), LSN, MAXF), SHMWAL_FRAME_ZERO);
}

static void test_frame_bad_word(void **state)
{
	uint64_t mem[1024];
	uint8_t *b = (uint8_t *)mem;
	unsigned st;

	(void)state;
	/* wrong magic (checksum refreshed so only the magic is wrong) */
	build_std(b);
	put64(b, 0, (get64(b, 0) & ~(0xffull << 56)) | (0xa4ull << 56));
	refresh_crc(b);
	assert_int_equal(shmwal_frame_check(b, 64, LSN, MAXF), SHMWAL_FRAME_BAD_WORD);
	put64(b, 0, get64(b, 0) & ~(0xffull << 56));
	assert_int_equal(shmwal_frame_check(b, 64, LSN, MAXF), SHMWAL_FRAME_BAD_WORD);

	/* states: 0, 1 (CLAIMED is never valid on disk), 5..255 */
	for (st = 0; st < 256; st++) {
		if (st == SHMWAL_FRAME_COMMITTED || st == SHMWAL_FRAME_ABORTED ||
		    st == SHMWAL_FRAME_PAD)
			continue;
		build_std(b);
		put64(b, 0, shmwal_word_make(47, 7, st));
		refresh_crc(b);
		assert_int_equal(shmwal_frame_check(b, 64, LSN, MAXF), SHMWAL_FRAME_BAD_WORD);
	}

	/* len < 32 */
	for (uint32_t len = 0; len < 32; len++) {
		build_std(b);
		put64(b, 0, shmwal_word_make(len, 7, SHMWAL_FRAME_COMMITTED));
		assert_int_equal(shmwal_frame_check(b, 64, LSN, MAXF), SHMWAL_FRAME_BAD_WORD);
	}

	/* len > max_frame, even with everything readable and the checksum right */
	memset(b, 0, sizeof(mem));
	build_frame(b, LSN, SHMWAL_TYPE_PUT, KEY, 3, b + 4000, 1000, 1, 7); /* len 1035 */
	assert_int_equal(shmwal_frame_check(b, sizeof(mem), LSN, 2048), SHMWAL_FRAME_OK);
	assert_int_equal(shmwal_frame_check(b, sizeof(mem), LSN, 1040), SHMWAL_FRAME_OK);
	assert_int_equal(shmwal_frame_check(b, sizeof(mem), LSN, 1032), SHMWAL_FRAME_BAD_WORD);
	assert_int_equal(shmwal_frame_check(b, sizeof(mem), LSN, MAXF), SHMWAL_FRAME_BAD_WORD);
	/* a huge len: refused as a bad word before anything is read past the header */
	build_std(b);
	put64(b, 0, shmwal_word_make(0xfffffff0u, 7, SHMWAL_FRAME_COMMITTED));
	assert_int_equal(shmwal_frame_check(b, 64, LSN, MAXF), SHMWAL_FRAME_BAD_WORD);

	/* key_len > len - 32 */
	build_std(b);
	put16(b, 14, 47 - 32 + 1);
	refresh_crc(b);
	assert_int_equal(shmwal_frame_check(b, 64, LSN, MAXF), SHMWAL_FRAME_BAD_WORD);
	put16(b, 14, 0xffff);
	refresh_crc(b);
	assert_int_equal(shmwal_frame_check(b, 64, LSN, MAXF), SHMWAL_FRAME_BAD_WORD);
	/* key_len == len - 32 is fine */
	put16(b, 14, 47 - 32);
	refresh_crc(b);
	assert_int_equal(shmwal_frame_check(b, 64, LSN, MAXF), SHMWAL_FRAME_OK);

	/* type 0 in a record */
	build_std(b);
	put16(b, 12, 0);
	refresh_crc(b);
	assert_int_equal(shmwal_frame_check(b, 64, LSN, MAXF), SHMWAL_FRAME_BAD_WORD);
}

static void test_frame_bad_lsn(void **state)
{
	uint64_t mem[16];
	uint8_t *b = (uint8_t *)mem;
	int bit;

	(void)state;
	build_std(b);
	assert_int_equal(shmwal_frame_check(b, 48, LSN + 48, MAXF), SHMWAL_FRAME_BAD_LSN);
	assert_int_equal(shmwal_frame_check(b, 48, LSN - 8, MAXF), SHMWAL_FRAME_BAD_LSN);
	assert_int_equal(shmwal_frame_check(b, 48, 0, MAXF), SHMWAL_FRAME_BAD_LSN);
	/* The frame's own lsn field changed, checksum refreshed: still caught by position. */
	for (bit = 0; bit < 64; bit++) {
		build_std(b);
		put64(b, 16, LSN ^ (1ull << bit));
		refresh_crc(b);
		assert_int_equal(shmwal_frame_check(b, 48, LSN, MAXF), SHMWAL_FRAME_BAD_LSN);
		/* ... and it is valid at the position it names */
		assert_int_equal(shmwal_frame_check(b, 48, LSN ^ (1ull << bit), MAXF),
				 SHMWAL_FRAME_OK);
	}
}

/* Every single-bit flip in bytes [8, len) is detected, with the right verdict. */
static void test_frame_bitflips(void **state)
{
	uint64_t mem[16];
	uint8_t *b = (uint8_t *)mem;
	uint32_t len, off;
	int bit, detected = 0;

	(void)state;
	len = build_std(b);
	for (off = 8; off < len; off++) {
		for (bit = 0; bit < 8; bit++) {
			enum shmwal_frame_verdict want, got;

			build_std(b);
			b[off] ^= (uint8_t)(1u << bit);
			if (off >= 16 && off < 24) {
				want = SHMWAL_FRAME_BAD_LSN;
			} else if (off == 12 || off == 13) {
				uint16_t t;

				memcpy(&t, b + 12, 2);
				want = t == 0 ? SHMWAL_FRAME_BAD_WORD : SHMWAL_FRAME_BAD_CRC;
			} else if (off == 14 || off == 15) {
				uint16_t k;

				memcpy(&k, b + 14, 2);
				want = k > len - 32 ? SHMWAL_FRAME_BAD_WORD : SHMWAL_FRAME_BAD_CRC;
			} else {
				want = SHMWAL_FRAME_BAD_CRC; /* crc, timestamp, key, value */
			}
			got = shmwal_frame_check(b, 48, LSN, MAXF);
			assert_int_not_equal(got, SHMWAL_FRAME_OK);
			if (got != want)
				fail_msg("flip of byte %u bit %d: verdict %d, want %d", off, bit,
					 (int)got, (int)want);
			detected++;
		}
	}
	assert_int_equal(detected, (47 - 8) * 8);
}

/* Flips in the word: len, state and magic bits are all caught; slot bits are not covered. */
static void test_frame_word_bitflips(void **state)
{
	uint64_t mem[16];
	uint8_t *b = (uint8_t *)mem;
	int bit;

	(void)state;
	for (bit = 0; bit < 64; bit++) {
		enum shmwal_frame_verdict got;

		build_std(b);
		put64(b, 0, get64(b, 0) ^ (1ull << bit));
		got = shmwal_frame_check(b, sizeof(mem), LSN, MAXF);
		if (bit >= 32 && bit < 48)
			assert_int_equal(got, SHMWAL_FRAME_OK);
		else if (got == SHMWAL_FRAME_OK)
			fail_msg("flip of word bit %d passed as a valid frame", bit);
		if (bit >= 56)
			assert_int_equal(got, SHMWAL_FRAME_BAD_WORD);
	}
}

static void test_frame_pad_aborted(void **state)
{
	uint64_t mem[64];
	uint8_t *b = (uint8_t *)mem;
	uint32_t crc, len = 64;

	(void)state;
	/* PAD: len a multiple of 8, slot NONE, type 0, body zero */
	build_empty_frame(b, len, SHMWAL_FRAME_PAD, SHMWAL_SLOT_NONE, 0, LSN);
	assert_int_equal(shmwal_frame_check(b, len, LSN, MAXF), SHMWAL_FRAME_OK);
	/* its checksum covers only len and bytes [12, 32) */
	crc = ref_crc32c(0, &len, 4);
	crc = ref_crc32c(crc, b + 12, 20);
	assert_int_equal(get32(b, 8), crc);
	/* ... so the body is not read */
	memset(b + 32, 0x5a, len - 32);
	assert_int_equal(shmwal_frame_check(b, len, LSN, MAXF), SHMWAL_FRAME_OK);
	/* but the header is */
	b[20] ^= 1;
	assert_int_equal(shmwal_frame_check(b, len, LSN, MAXF), SHMWAL_FRAME_BAD_LSN);
	b[20] ^= 1;
	b[24] ^= 1;
	assert_int_equal(shmwal_frame_check(b, len, LSN, MAXF), SHMWAL_FRAME_BAD_CRC);
	b[24] ^= 1;
	b[9] ^= 0x10;
	assert_int_equal(shmwal_frame_check(b, len, LSN, MAXF), SHMWAL_FRAME_BAD_CRC);
	b[9] ^= 0x10;
	assert_int_equal(shmwal_frame_check(b, len, LSN, MAXF), SHMWAL_FRAME_OK);
	/* the whole pad must be readable */
	assert_int_equal(shmwal_frame_check(b, len - 8, LSN, MAXF), SHMWAL_FRAME_SHORT);
	/* the smallest pad */
	build_empty_frame(b, 32, SHMWAL_FRAME_PAD, SHMWAL_SLOT_NONE, 0, LSN);
	assert_int_equal(shmwal_frame_check(b, 32, LSN, MAXF), SHMWAL_FRAME_OK);
	/* a pad whose len is not a multiple of 8 */
	for (len = 33; len < 40; len++) {
		build_empty_frame(b, len, SHMWAL_FRAME_PAD, SHMWAL_SLOT_NONE, 0, LSN);
		assert_int_equal(shmwal_frame_check(b, 64, LSN, MAXF), SHMWAL_FRAME_BAD_WORD);
	}
	build_empty_frame(b, 60, SHMWAL_FRAME_PAD, SHMWAL_SLOT_NONE, 0, LSN);
	assert_int_equal(shmwal_frame_check(b, 64, LSN, MAXF), SHMWAL_FRAME_BAD_WORD);
	/* a pad larger than max_frame */
	build_empty_frame(b, 256, SHMWAL_FRAME_PAD, SHMWAL_SLOT_NONE, 0, LSN);
	assert_int_equal(shmwal_frame_check(b, 256, LSN, 128), SHMWAL_FRAME_BAD_WORD);

	/* ABORTED: a claim given up; keeps its type and slot, body not read */
	len = 72;
	build_empty_frame(b, len, SHMWAL_FRAME_ABORTED, 5, SHMWAL_TYPE_PUT, LSN);
	memset(b + 32, 0x77, len - 32);
	assert_int_equal(shmwal_frame_check(b, len, LSN, MAXF), SHMWAL_FRAME_OK);
	crc = ref_crc32c(0, &len, 4);
	crc = ref_crc32c(crc, b + 12, 20);
	assert_int_equal(get32(b, 8), crc);
	assert_int_equal(shmwal_frame_check(b, len, LSN + 8, MAXF), SHMWAL_FRAME_BAD_LSN);
	build_empty_frame(b, 44, SHMWAL_FRAME_ABORTED, 5, SHMWAL_TYPE_PUT, LSN);
	assert_int_equal(shmwal_frame_check(b, 64, LSN, MAXF), SHMWAL_FRAME_BAD_WORD);

	/* A committed frame turned into ABORTED without a new checksum is refused. */
	len = build_frame(b, LSN, SHMWAL_TYPE_PUT, "12345678", 8, "abcdefgh", 8, 9, 1); /* 48 */
	assert_int_equal(len, 48);
	put64(b, 0, shmwal_word_make(len, 1, SHMWAL_FRAME_ABORTED));
	assert_int_equal(shmwal_frame_check(b, 48, LSN, MAXF), SHMWAL_FRAME_BAD_CRC);
}

/* ---- segment header --------------------------------------------------------------------- */

static void test_segment_header(void **state)
{
	struct shmwal_segment_header h;
	uint8_t b[64];
	const char *why = "unset";

	(void)state;
	assert_int_equal(sizeof(h), SHMWAL_SEG_HDR);
	shmwal_segment_header_init(&h, 7, 0x1000, 0x0123456789abcdefull, 0x55aa55aa55aa55aaull);
	assert_int_equal(shmwal_segment_header_check(&h, &why), 0);
	assert_null(why);
	assert_int_equal(shmwal_segment_header_check(&h, NULL), 0);

	/* The bytes, as the format describes them. */
	memcpy(b, &h, 64);
	assert_memory_equal(b, "SHMWSEG1", 8);
	assert_int_equal(get32(b, 8), 1);
	assert_int_equal(get32(b, 12), 7);
	assert_int_equal(get64(b, 16), 0x1000);
	assert_int_equal(get64(b, 24), 0x0123456789abcdefull);
	assert_int_equal(get64(b, 32), 0x55aa55aa55aa55aaull);
	assert_int_equal(get32(b, 40), 64);
	for (int i = 44; i < 60; i++)
		assert_int_equal(b[i], 0);
	assert_int_equal(get32(b, 60), ref_crc32c(0, b, 60));
}

static void test_segment_header_bitflips(void **state)
{
	struct shmwal_segment_header h, d;
	int off, bit;

	(void)state;
	shmwal_segment_header_init(&h, 3, 0xdeadbeef000ull, 42, 1);
	for (off = 0; off < 64; off++) {
		for (bit = 0; bit < 8; bit++) {
			const char *why = NULL;
			int rc;

			d = h;
			((uint8_t *)&d)[off] ^= (uint8_t)(1u << bit);
			rc = shmwal_segment_header_check(&d, &why);
			if (rc != -EBADMSG)
				fail_msg("flip of header byte %d bit %d: rc %d", off, bit, rc);
			assert_non_null(why);
			assert_true(strlen(why) > 0);
			assert_int_equal(shmwal_segment_header_check(&d, NULL), -EBADMSG);
		}
	}
}

static void test_segment_header_fields(void **state)
{
	struct shmwal_segment_header h;
	const char *why = NULL;

	(void)state;
	/* A well-checksummed header of another version is refused, with a message. */
	shmwal_segment_header_init(&h, 0, 0, 1, 1);
	h.version = 2;
	h.crc = shmwal_crc32c(0, &h, offsetof(struct shmwal_segment_header, crc));
	assert_int_equal(shmwal_segment_header_check(&h, &why), -EBADMSG);
	assert_non_null(why);
	assert_non_null(strstr(why, "version"));
	h.version = 0;
	h.crc = shmwal_crc32c(0, &h, offsetof(struct shmwal_segment_header, crc));
	assert_int_equal(shmwal_segment_header_check(&h, &why), -EBADMSG);

	/* another header size */
	shmwal_segment_header_init(&h, 0, 0, 1, 1);
	h.header_bytes = 128;
	h.crc = shmwal_crc32c(0, &h, offsetof(struct shmwal_segment_header, crc));
	why = NULL;
	assert_int_equal(shmwal_segment_header_check(&h, &why), -EBADMSG);
	assert_non_null(why);

	/* wrong magic, right checksum */
	shmwal_segment_header_init(&h, 0, 0, 1, 1);
	memcpy(h.magic, "SHMWSEG2", 8);
	h.crc = shmwal_crc32c(0, &h, offsetof(struct shmwal_segment_header, crc));
	why = NULL;
	assert_int_equal(shmwal_segment_header_check(&h, &why), -EBADMSG);
	assert_non_null(why);

	/* all zeros (a preallocated or torn file) */
	memset(&h, 0, sizeof(h));
	why = NULL;
	assert_int_equal(shmwal_segment_header_check(&h, &why), -EBADMSG);
	assert_non_null(why);
}

/* ---- segment names ---------------------------------------------------------------------- */

static void test_segment_name_roundtrip(void **state)
{
	static const struct {
		uint64_t lsn;
		const char *name;
	} v[] = {
		{ 0, "0000000000000000.seg" },
		{ 1, "0000000000000001.seg" },
		{ 0xdeadbeefull, "00000000deadbeef.seg" },
		{ UINT64_MAX - 7, "fffffffffffffff8.seg" },
		{ UINT64_MAX, "ffffffffffffffff.seg" },
		{ 0x0123456789abcdefull, "0123456789abcdef.seg" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char buf[32];
		uint64_t lsn = 12345;

		memset(buf, 'X', sizeof(buf));
		shmwal_segment_name(buf, v[i].lsn);
		assert_string_equal(buf, v[i].name);
		assert_int_equal(strlen(buf), 20);
		assert_int_equal(buf[21], 'X'); /* wrote no more than 21 bytes */
		assert_int_equal(shmwal_segment_name_parse(buf, &lsn), 0);
		assert_int_equal(lsn, v[i].lsn);
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

static void test_segment_name_sorts(void **state)
{
	enum { N = 64 };
	char names[N][24];
	uint64_t seed = 7, prev = 0;
	int i;

	(void)state;
	for (i = 0; i < N; i++) {
		uint64_t lsn;

		switch (i % 4) {
		case 0: lsn = th_rand(&seed); break;
		case 1: lsn = th_rand(&seed) >> (th_rand(&seed) % 64); break;
		case 2: lsn = (uint64_t)i * 4096; break;
		default: lsn = (uint64_t)1 << (i % 64); break;
		}
		shmwal_segment_name(names[i], lsn);
	}
	qsort(names, N, sizeof(names[0]), cmp_str);
	for (i = 0; i < N; i++) {
		uint64_t lsn;

		assert_int_equal(shmwal_segment_name_parse(names[i], &lsn), 0);
		if (i > 0)
			assert_true(lsn >= prev);
		prev = lsn;
	}
}

static void test_segment_name_parse_rejects(void **state)
{
	static const char *const bad[] = {
		"000000000000000g.seg",
		"000000000000000.seg",	    /* 15 digits */
		"00000000000000000.seg",    /* 17 digits */
		"0000000000000000.seg.tmp",
		"0000000000000000.seg~",
		"000000000000000A.seg",	    /* upper case */
		"00000000DEADBEEF.seg",
		"x.seg",
		"0.seg",
		".seg",
		"",
		"0000000000000000",
		"0000000000000000.se",
		"0000000000000000.SEG",
		"0000000000000000-seg",
		" 000000000000000.seg",
		"+000000000000000.seg",
		"-000000000000001.seg",
		"0x00000000000000.seg",
		"notes.txt",
		".",
		"..",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t lsn = 0x5555;
		int rc = shmwal_segment_name_parse(bad[i], &lsn);

		if (rc != -EINVAL)
			fail_msg("'%s' parsed as a segment name (rc %d)", bad[i], rc);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crc_vectors),
	    cmocka_unit_test(test_crc_chaining),
	    cmocka_unit_test(test_frame_fill_crc),
	    cmocka_unit_test(test_frames4),
	    cmocka_unit_test(test_committed_len_agrees),
	    cmocka_unit_test(test_crc_short_path),
	    cmocka_unit_test(test_word_roundtrip),
	    cmocka_unit_test(test_frame_valid),
	    cmocka_unit_test(test_frame_short),
	    cmocka_unit_test(test_frame_bounds),
	    cmocka_unit_test(test_frame_len_near_u32_max),
	    cmocka_unit_test(test_frame_zero),
	    cmocka_unit_test(test_frame_bad_word),
	    cmocka_unit_test(test_frame_bad_lsn),
	    cmocka_unit_test(test_frame_bitflips),
	    cmocka_unit_test(test_frame_word_bitflips),
	    cmocka_unit_test(test_frame_pad_aborted),
	    cmocka_unit_test(test_segment_header),
	    cmocka_unit_test(test_segment_header_bitflips),
	    cmocka_unit_test(test_segment_header_fields),
	    cmocka_unit_test(test_segment_name_roundtrip),
	    cmocka_unit_test(test_segment_name_sorts),
	    cmocka_unit_test(test_segment_name_parse_rejects),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
