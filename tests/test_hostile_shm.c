/* SPDX-License-Identifier: MIT */
/*
 * test_hostile_shm.c - a process with write access to a WAL's shared memory scribbles on it.
 *
 * The shared memory is writable by every producer, so nothing in it may be trusted by the
 * flusher or by an attacher. This file proves, with a real flusher process and a "malicious
 * producer" that maps the object itself (this test process):
 *
 *   - attach (shmwal_open) refuses a header with any wrong identity or geometry field, an
 *     invalid state word, and an object of the wrong size, with -EPROTO and a sentence;
 *     readers fall back to the files; a flusher refuses such an object (it may hold records)
 *     with -EPROTO. Nothing in the header is used as an offset: the geometry comes from
 *     DIR/meta, and the size is checked before anything is mapped.
 *   - frames that break the format in the ring (lengths huge, zero, short, unaligned, past the
 *     tail or past the largest frame; unknown states or magic; a wrong own LSN; a committed
 *     frame with a bad checksum, key length or type) stop the flusher with -EIO and a message
 *     naming the LSN; it writes none of them.
 *   - what it can repair (claims by slots that do not exist or are free, gaps, lanes and
 *     registry slots full of garbage, a tail a few laps ahead) is repaired, and it goes on.
 *   - a tail moved backwards or off the alignment stops it; progress words at the extremes
 *     neither crash it nor make it loop, and its next publication overwrites durable.
 *   - a live reader on the scribbled object reads the honest records or nothing, never a
 *     record that is not one, and never crashes.
 *   - a dead flusher's shared memory whose positions were rolled back is not adopted: the new
 *     flusher refuses instead of cutting durable records off the files.
 *   - a live producer whose registry word says DEAD keeps its claim, slot and lanes: liveness
 *     is judged by its lock.
 *
 * After every case: the flusher's exit status is 0 or 1 (never a signal, never a time-out),
 * the WAL directory holds nothing but the files it always holds, every segment file is whole
 * (every frame passes the format check, LSNs continuous), and every record that honest
 * producers made durable before the scribbling is there, intact and in order.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "helpers.h"
#include "meta.h"
#include "shm/shm_impl.h"
#include "shmwal_format.h"

#define PARTS 2
#define RING (64u << 10)
#define SEGMENT (64u << 10)
#define MAX_VALUE 1024u
#define HONEST 300 /* records per partition before the scribbling */
#define LATER 200  /* records per partition after it, when the flusher goes on */
#define ERR_LEN 1024

static char *errbuf; /* shared with the flusher children: their last error... */
static int *child_rc; /* ...and what shmwal_flusher_run returned */

/* ---- a flusher child that reports its error --------------------------------------------- */

static void child_log_stderr(void *ctx, enum shmwal_log_level lvl, const char *msg)
{
	(void)ctx;
	(void)lvl;
	fprintf(stderr, "flusher %d: %s\n", (int)getpid(), msg);
}

static void child_setup(void *arg)
{
	(void)arg;
	seterr(-EINVAL, "(no error message)"); /* not the parent's last one */
}

static void child_done(void *arg, int rc)
{
	(void)arg;
	*child_rc = rc;
	if (rc < 0)
		snprintf(errbuf, ERR_LEN, "%s", shmwal_last_error());
}

/* As th_flusher_start, but the child's last error is left in errbuf and what
 * shmwal_flusher_run returned in *child_rc; it exits TH_FLUSHER_ERROR (1) on any error. */
static pid_t flusher_spawn(const char *dir)
{
	struct th_flusher_spec spec = {
		.child_setup = child_setup,
		.child_done = child_done,
		.alarm_s = TH_TIMEOUT_S * 2,
		.one_error_status = 1,
	};
	pid_t pid;

	errbuf[0] = 0;
	*child_rc = 1;
	if (getenv("SHMWAL_TEST_VERBOSE"))
		spec.opts.log = child_log_stderr;
	pid = th_flusher_spawn(dir, &spec);
	assert_true(pid >= 0);
	return pid;
}

/* ---- the malicious producer's own view of the object ------------------------------------ */

struct hmap {
	int fd;
	uint8_t *base;
	size_t len;
	struct shm_geometry g;
	uint64_t max_frame;
};

static void hmap_open(const char *dir, struct hmap *m)
{
	struct meta mt;
	struct stat st;
	char name[32];

	assert_int_equal(meta_load(dir, &mt), 0);
	shm_name(name, mt.instance);
	shm_geometry(&mt.cfg, &m->g);
	m->max_frame = cfg_max_frame(&mt.cfg);
	m->fd = shm_open(name, O_RDWR, 0);
	assert_true(m->fd >= 0);
	assert_int_equal(fstat(m->fd, &st), 0);
	assert_int_equal((uint64_t)st.st_size, m->g.total);
	m->len = (size_t)st.st_size;
	m->base = mmap(NULL, m->len, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	assert_true(m->base != MAP_FAILED);
}

static void hmap_close(struct hmap *m)
{
	munmap(m->base, m->len);
	close(m->fd);
}

static struct shm_header *H(struct hmap *m) { return (struct shm_header *)m->base; }
static struct shm_part *P(struct hmap *m, uint32_t p)
{
	return (struct shm_part *)(m->base + m->g.off_parts) + p;
}
static struct shm_lane *L(struct hmap *m, uint32_t l)
{
	return (struct shm_lane *)(m->base + m->g.off_lanes) + l;
}
static struct shm_slot *S(struct hmap *m, uint32_t i)
{
	return (struct shm_slot *)(m->base + m->g.off_slots) + i;
}
/* Ring bytes are mapped once here (no mirror): callers wrap by hand. */
static uint8_t *R(struct hmap *m, uint32_t p, uint64_t lsn)
{
	return m->base + m->g.off_rings + (uint64_t)p * RING + (lsn & (RING - 1));
}

static void ring_put(struct hmap *m, uint32_t p, uint64_t lsn, const void *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		*R(m, p, lsn + i) = ((const uint8_t *)buf)[i];
}

static void ring_rand(struct hmap *m, uint32_t p, uint64_t lsn, size_t n, uint64_t *seed)
{
	for (size_t i = 0; i < n; i++)
		*R(m, p, lsn + i) = (uint8_t)th_rand(seed);
}

static uint64_t tail_of(struct hmap *m, uint32_t p)
{
	return atomic_load_explicit(&P(m, p)->tail, memory_order_seq_cst);
}

static void tail_add(struct hmap *m, uint32_t p, uint64_t n)
{
	atomic_fetch_add_explicit(&P(m, p)->tail, n, memory_order_seq_cst);
}

/*
 * Writes a frame at pos the way a producer that ignores the rules would: header fields, a
 * body of filler (zeros for pads; at most 1 KiB is written, whatever len says), the checksum
 * over len bytes when they fit (xor crc_flip), and the word last, with release, like a commit.
 */
static void put_frame(struct hmap *m, uint32_t p, uint64_t pos, uint32_t len, uint32_t slot,
		      unsigned state, uint16_t type, uint16_t key_len, uint64_t lsn,
		      uint32_t crc_flip)
{
	uint8_t buf[SHMWAL_FRAME_HDR + 1024 + 8];
	struct shmwal_frame *f = (struct shmwal_frame *)buf;
	size_t n = SHMWAL_ALIGN_UP(len) < sizeof(buf) ? SHMWAL_ALIGN_UP(len) : sizeof(buf);

	if (n < SHMWAL_FRAME_HDR)
		n = SHMWAL_FRAME_HDR;
	memset(buf, 0, sizeof(buf));
	for (size_t i = SHMWAL_FRAME_HDR; i < n; i++)
		buf[i] = (uint8_t)(i * 13 + 1);
	if (state != SHMWAL_FRAME_COMMITTED && state != SHMWAL_FRAME_CLAIMED)
		memset(buf + SHMWAL_FRAME_HDR, 0, n - SHMWAL_FRAME_HDR);
	f->word = shmwal_word_make(len, slot, state); /* the CRC reads len and the state */
	f->type = type;
	f->key_len = key_len;
	f->lsn = lsn;
	f->timestamp_ns = 1;
	f->crc = (len >= SHMWAL_FRAME_HDR && len <= n ? shmwal_frame_crc(f, len) : 0) ^ crc_flip;
	ring_put(m, p, pos + 8, buf + 8, n - 8);
	atomic_store_explicit((shmwal_atomic64 *)R(m, p, pos),
			      shmwal_word_make(len, slot, state), memory_order_release);
}

/* ---- honest producers and the checks --------------------------------------------------- */

static void honest(struct shmwal *w, uint32_t p, uint64_t from, uint64_t n)
{
	uint8_t v[TH_STAMP_MIN + 200];
	uint64_t lsn = 0;

	for (uint64_t i = from; i < from + n; i++) {
		uint32_t len = TH_STAMP_MIN + (uint32_t)(i * 37 % 200);

		th_fill(v, len, 0, p, i);
		assert_int_equal(shmwal_append(w, p, SHMWAL_TYPE_PUT, NULL, 0, v, len, &lsn), 0);
	}
	assert_int_equal(shmwal_wait_durable(w, p, lsn, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC),
			 0);
}

/* Every partition's records, read offline from the files: at least want[p] honest ones
 * (seqs 0..want[p]-1 in order, intact) and nothing else. */
static void check_records(const char *dir, const uint64_t *want)
{
	th_shm_unlink(dir); /* offline: the files are the truth, whatever the shm said */
	for (uint32_t p = 0; p < PARTS; p++) {
		struct shmwal_reader *r;
		struct shmwal_record rec;
		struct th_stamp st;
		uint64_t n = 0;
		int rc;

		assert_int_equal(shmwal_reader_open(dir, p, SHMWAL_LSN_OLDEST, &r), 0);
		while ((rc = shmwal_reader_next(r, &rec, 0)) == 0) {
			assert_int_equal(th_check(rec.value, rec.value_len, &st), 0);
			assert_int_equal(st.producer, 0);
			assert_int_equal(st.thread, p);
			assert_int_equal(st.seq, n);
			n++;
		}
		if (rc != -ETIMEDOUT)
			fail_msg("partition %u: %s", p, shmwal_last_error());
		if (n < want[p])
			fail_msg("partition %u: %llu records, %llu were durable", p,
				 (unsigned long long)n, (unsigned long long)want[p]);
		shmwal_reader_close(r);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The WAL directory holds exactly what a WAL holds (meta, lock, one directory per partition
 * holding only segment files), and every segment is whole: a valid header, LSNs continuous
 * from 0, and frames that pass the format check up to its last byte.
 */
static void check_files(const char *dir)
{
	struct meta mt;
	struct dirent *e;
	DIR *d;
	unsigned top = 0;

	assert_int_equal(meta_load(dir, &mt), 0);
	d = opendir(dir);
	assert_non_null(d);
	while ((e = readdir(d))) {
		char pd[32];
		int known = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
			    !strcmp(e->d_name, "meta") || !strcmp(e->d_name, "lock");

		for (uint32_t p = 0; p < PARTS && !known; p++) {
			snprintf(pd, sizeof(pd), "p%03u", p);
			known = !strcmp(e->d_name, pd);
		}
		if (!known)
			fail_msg("unexpected file %s/%s", dir, e->d_name);
		top++;
	}
	closedir(d);
	assert_int_equal(top, 4 + PARTS);

	for (uint32_t p = 0; p < PARTS; p++) {
		char pdir[4096], path[4200];
		uint64_t firsts[4096], expect = 0;
		unsigned n = 0;

		assert_int_equal(part_dir(pdir, sizeof(pdir), dir, p), 0);
		d = opendir(pdir);
		assert_non_null(d);
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			if (shmwal_segment_name_parse(e->d_name, &firsts[n]) < 0)
				fail_msg("unexpected file %s/%s", pdir, e->d_name);
			assert_true(++n < 4096);
		}
		closedir(d);
		qsort(firsts, n, sizeof(firsts[0]), cmp_u64);
		for (unsigned i = 0; i < n; i++) {
			struct shmwal_segment_header sh;
			const char *why = NULL;
			char name[24];
			struct stat st;
			uint8_t *buf;
			uint64_t off;
			int fd;

			shmwal_segment_name(name, firsts[i]);
			snprintf(path, sizeof(path), "%s/%s", pdir, name);
			fd = open(path, O_RDONLY);
			assert_true(fd >= 0);
			assert_int_equal(fstat(fd, &st), 0);
			assert_true(st.st_size >= SHMWAL_SEG_HDR);
			buf = malloc((size_t)st.st_size);
			assert_non_null(buf);
			assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
			close(fd);
			memcpy(&sh, buf, sizeof(sh));
			if (shmwal_segment_header_check(&sh, &why) < 0)
				fail_msg("%s: %s", path, why);
			assert_int_equal(sh.first_lsn, firsts[i]);
			assert_int_equal(sh.partition, p);
			assert_int_equal(sh.instance, mt.instance);
			if (firsts[i] != expect)
				fail_msg(
				    "%s: starts at LSN %llu, the previous segment ends at %llu",
				    path, (unsigned long long)firsts[i],
				    (unsigned long long)expect);
			for (off = SHMWAL_SEG_HDR; off < (uint64_t)st.st_size;) {
				uint64_t lsn = firsts[i] + off - SHMWAL_SEG_HDR;
				enum shmwal_frame_verdict v =
				    shmwal_frame_check(buf + off, (uint64_t)st.st_size - off, lsn,
						       cfg_max_frame(&mt.cfg));

				if (v != SHMWAL_FRAME_OK)
					fail_msg("%s, LSN %llu: %s", path, (unsigned long long)lsn,
						 shmwal_frame_verdict_str(v));
				off += SHMWAL_ALIGN_UP(shmwal_word_len(*(uint64_t *)(buf + off)));
			}
			expect = firsts[i] + (uint64_t)st.st_size - SHMWAL_SEG_HDR;
			free(buf);
		}
	}
}

/* ---- attach: the header is validated, never trusted ------------------------------------ */

static char *new_wal(const char *tag)
{
	char *dir = th_tmpdir(tag);

	assert_int_equal(th_create(dir, PARTS, RING, SEGMENT, MAX_VALUE, SHMWAL_SYNC_ALWAYS), 0);
	return dir;
}

#define H_OFF(field) offsetof(struct shm_header, field)

struct header_case {
	const char *what;
	size_t off, len;   /* bytes of the header to change... */
	uint64_t xor_mask; /* ...by xor with this (little-endian, len <= 8) */
	const char *says;  /* the error message names the problem */
	int remade;	   /* a flusher makes such an object anew instead of refusing it */
};

static void test_attach_refuses_bad_header(void **state)
{
	const struct header_case cases[] = {
	    {"magic", H_OFF(magic), 8, 1, "magic", 1},
	    {"magic zero", H_OFF(magic), 8, SHM_MAGIC, "magic", 1},
	    {"layout version", H_OFF(layout_version), 4, 7, "version", 0},
	    {"signature", H_OFF(signature), 8, 1ull << 40, "version", 0},
	    {"instance", H_OFF(instance), 8, 1, "instance", 0},
	    {"partitions", H_OFF(cfg.partitions), 4, 0x300, "configuration", 0},
	    {"ring size", H_OFF(cfg.ring_bytes), 8, 1ull << 40, "configuration", 0},
	    {"max value", H_OFF(cfg.max_value), 4, 1u << 30, "configuration", 0},
	    {"total size", H_OFF(total_bytes), 8, 1ull << 50, "geometry", 0},
	    {"slots offset", H_OFF(off_slots), 8, 1ull << 60, "geometry", 0},
	    {"lanes offset", H_OFF(off_lanes), 8, 0xfff000, "geometry", 0},
	    {"parts offset", H_OFF(off_parts), 8, 4096, "geometry", 0},
	    {"rings offset", H_OFF(off_rings), 8, 1ull << 63, "geometry", 0},
	    {"state INIT", H_OFF(state), 4, SHM_STATE_READY ^ SHM_STATE_INIT, "not initialized", 1},
	    {"state garbage", H_OFF(state), 4, 0xdead0000, "not initialized", 0},
	};

	char *dir = new_wal("hattach");
	struct shmwal *keep, *w;
	struct hmap m;
	uint8_t *copy;
	uint64_t want[PARTS];
	pid_t fl;

	(void)state;
	fl = flusher_spawn(dir);
	assert_int_equal(th_open(dir, &keep), 0); /* keeps the object after the stop */
	for (uint32_t p = 0; p < PARTS; p++) {
		honest(keep, p, 0, HONEST);
		want[p] = HONEST;
	}
	assert_int_equal(th_flusher_stop(fl), 0);
	hmap_open(dir, &m);
	copy = malloc(m.len);
	assert_non_null(copy);
	memcpy(copy, m.base, m.len);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct header_case *c = &cases[i];
		struct shmwal_reader *r;
		struct shmwal_record rec;
		uint64_t v = 0;

		memcpy(&v, m.base + c->off, c->len);
		v ^= c->xor_mask;
		memcpy(m.base + c->off, &v, c->len);
		assert_int_equal(shmwal_open(dir, &w), -EPROTO);
		if (!strstr(shmwal_last_error(), c->says))
			fail_msg("%s: \"%s\" does not say \"%s\"", c->what, shmwal_last_error(),
				 c->says);
		/* a reader cannot use it either, and reads the files instead */
		assert_int_equal(shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r), 0);
		assert_int_equal(shmwal_reader_next(r, &rec, 0), 0);
		assert_int_equal(rec.lsn, 0);
		shmwal_reader_close(r);
		/* a flusher refuses to adopt a complete object that is not right (it may hold
		 * records); one without our magic, or unfinished, it makes anew (test_shm) */
		if (!c->remade) {
			assert_int_equal(th_wait(flusher_spawn(dir), TH_TIMEOUT_S), 1);
			assert_int_equal(*child_rc, -EPROTO);
			if (getenv("SHMWAL_TEST_VERBOSE"))
				fprintf(stderr, "%s: %s\n", c->what, errbuf);
			if (!strstr(errbuf, "shared memory"))
				fail_msg("%s: the flusher said \"%s\"", c->what, errbuf);
		}
		memcpy(m.base, copy, m.len);
	}

	/* The object's size is checked before anything is mapped: a shorter object would raise
	 * SIGBUS at the first touch of the missing pages, a longer one is not ours. */
	for (int i = 0; i < 5; i++) {
		const off_t sizes[] = { 100, 4096, (off_t)m.len - 4096, (off_t)m.len - 8,
					(off_t)m.len + 4096 };
		off_t sz = sizes[i];

		assert_int_equal(ftruncate(m.fd, sz), 0);
		assert_int_equal(shmwal_open(dir, &w), -EPROTO);
		if (!strstr(shmwal_last_error(), sz < (off_t)sizeof(struct shm_header)
							 ? "too small"
							 : "geometry"))
			fail_msg("size %lld: \"%s\"", (long long)sz, shmwal_last_error());
		if (sz >= (off_t)sizeof(struct shm_header))
			assert_int_equal(th_wait(flusher_spawn(dir), TH_TIMEOUT_S), 1);
		assert_int_equal(ftruncate(m.fd, (off_t)m.len), 0);
		memcpy(m.base, copy, m.len);
	}

	/* Put back as it was, it is adopted, and nothing was lost. */
	hmap_close(&m);
	free(copy);
	shmwal_close(keep);
	fl = flusher_spawn(dir);
	assert_int_equal(th_open(dir, &w), 0);
	honest(w, 0, HONEST, 1);
	want[0]++;
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	check_files(dir);
	check_records(dir, want);
	th_destroy(dir);
	free(dir);
}

/* ---- a running flusher under scribbling ------------------------------------------------- */

enum outcome { STOPS, GOES_ON, EITHER };

struct ctx {
	struct hmap *m;
	uint32_t p;	/* the partition scribbled on */
	uint64_t pos;	/* the flusher's position there (= tail: the honest producer is idle) */
	uint32_t slot;	/* the honest producer's registry slot */
	uint64_t seed;
};

typedef enum outcome (*scribble_fn)(struct ctx *c);

#define HONEST_SLOT UINT32_MAX /* in a bad_frame: the honest producer's registry slot */

/* The simplest scribbling: one frame written at the flusher's position by a producer that
 * ignores the rules (put_frame), then the tail moved on past it. */
struct bad_frame {
	uint32_t len;
	uint32_t slot; /* or HONEST_SLOT */
	unsigned state;
	uint16_t type, key_len;
	uint64_t lsn_back; /* the frame's own LSN is its position less this */
	uint32_t crc_flip;
	uint64_t tail_add;
	enum outcome outcome;
};

static enum outcome put_bad_frame(struct ctx *c, const struct bad_frame *f)
{
	uint32_t slot = f->slot == HONEST_SLOT ? c->slot : f->slot;

	put_frame(c->m, c->p, c->pos, f->len, slot, f->state, f->type, f->key_len,
		  c->pos - f->lsn_back, f->crc_flip);
	tail_add(c->m, c->p, f->tail_add);
	return f->outcome;
}

static uint32_t max_frame_of(struct ctx *c) { return (uint32_t)c->m->max_frame; }

static enum outcome s_random_bytes(struct ctx *c)
{
	ring_rand(c->m, c->p, c->pos + 8, 504, &c->seed);
	/* a random word, but never zero (that would be a gap, another case) */
	atomic_store_explicit((shmwal_atomic64 *)R(c->m, c->p, c->pos), th_rand(&c->seed) | 1,
			      memory_order_release);
	tail_add(c->m, c->p, 512);
	return STOPS;
}

static enum outcome s_len_over_max_frame(struct ctx *c)
{
	uint32_t len = max_frame_of(c) + 8;

	put_frame(c->m, c->p, c->pos, len, c->slot, SHMWAL_FRAME_COMMITTED, 1, 0, c->pos, 0);
	tail_add(c->m, c->p, SHMWAL_ALIGN_UP(len));
	return STOPS;
}

static enum outcome s_bad_magic(struct ctx *c)
{
	put_frame(c->m, c->p, c->pos, 64, c->slot, SHMWAL_FRAME_COMMITTED, 1, 0, c->pos, 0);
	atomic_store_explicit((shmwal_atomic64 *)R(c->m, c->p, c->pos),
			      shmwal_word_make(64, c->slot, SHMWAL_FRAME_COMMITTED) ^ (1ull << 60),
			      memory_order_release);
	tail_add(c->m, c->p, 64);
	return STOPS;
}

/* A claim naming a free slot: nobody can finish it. */
static enum outcome s_claimed_free_slot(struct ctx *c)
{
	uint32_t slot = (c->slot + 17) % SHM_SLOTS;

	assert_int_equal(SLOT_STATE(atomic_load(&S(c->m, slot)->word)), SLOT_FREE);
	put_frame(c->m, c->p, c->pos, 200, slot, SHMWAL_FRAME_CLAIMED, 1, 0, c->pos, 0);
	tail_add(c->m, c->p, 200);
	return GOES_ON;
}

/* Tail moved on, and nobody's lane owns the bytes: a lost claim, padded. */
static enum outcome s_gap(struct ctx *c)
{
	tail_add(c->m, c->p, 4096);
	return GOES_ON;
}

/* The same gap with every lane not held by the honest producer full of garbage: owners that
 * name no slot or free ones, partitions out of range, any claim. */
static enum outcome s_gap_lanes_garbage(struct ctx *c)
{
	for (uint32_t l = 0; l < SHM_LANES; l++) {
		struct shm_lane *ln = L(c->m, l);
		uint32_t owner;

		if (atomic_load(&ln->owner) == c->slot + 1)
			continue;
		/* every 7th names a real slot index (a free one), the rest anything */
		owner = l % 7 ? (uint32_t)th_rand(&c->seed) : (c->slot + 1 + l) % SHM_SLOTS + 1;
		if (owner == c->slot + 1)
			owner++;
		atomic_store(&ln->part, l % 3 ? (uint32_t)th_rand(&c->seed) : c->p);
		atomic_store(&ln->claim, l % 5 ? th_rand(&c->seed) : LANE_UNKNOWN);
		atomic_store(&ln->seq, (uint32_t)th_rand(&c->seed));
		atomic_store(&ln->owner, owner);
	}
	tail_add(c->m, c->p, 4096);
	return GOES_ON;
}

/* Every registry slot but the honest producer's is garbage; a claim names one of them. */
static enum outcome s_slots_garbage(struct ctx *c)
{
	uint32_t victim = (c->slot + 5) % SHM_SLOTS;

	for (uint32_t i = 0; i < SHM_SLOTS; i++)
		if (i != c->slot)
			atomic_store(&S(c->m, i)->word, th_rand(&c->seed));
	atomic_store(&S(c->m, victim)->word, SLOT_WORD(12345, SLOT_LIVE)); /* LIVE, no lock */
	put_frame(c->m, c->p, c->pos, 100, victim, SHMWAL_FRAME_CLAIMED, 1, 0, c->pos, 0);
	tail_add(c->m, c->p, 104);
	return GOES_ON;
}

/* Garbage in the free part of the ring, beyond the tail: honest producers write over it; the
 * flusher may see it when it looks at a claim whose word is not published yet. */
static enum outcome s_free_ring_garbage(struct ctx *c)
{
	ring_rand(c->m, c->p, c->pos + 1024, RING / 2, &c->seed);
	return EITHER;
}

/* Tail backwards, or not on a frame boundary: no producer can do that. */
static enum outcome s_tail_backwards(struct ctx *c)
{
	atomic_fetch_sub(&P(c->m, c->p)->tail, 64);
	return STOPS;
}

static enum outcome s_tail_unaligned(struct ctx *c)
{
	tail_add(c->m, c->p, 13);
	return STOPS;
}

static enum outcome s_tail_max(struct ctx *c)
{
	atomic_store(&P(c->m, c->p)->tail, UINT64_MAX);
	return STOPS;
}

/* Tail a few laps ahead with nothing claimed there: what producers that gave their claims up
 * at a stop leave behind. The flusher pads it, lap by lap, and goes on. (A tail scribbled far
 * beyond that is padded the same way, at the disk's speed, until the flusher is stopped: not
 * tested here, it fills the disk.) */
static enum outcome s_tail_laps_ahead(struct ctx *c)
{
	tail_add(c->m, c->p, 4 * RING + 64);
	return GOES_ON;
}

/* The flusher's published words: it never reads them back to decide anything (durable too:
 * its next publication overwrites whatever is there). Readers trust
 * durable (they must: it is the only word that says what is in the files), so with durable 0
 * they see nothing until the flusher publishes again. */
static enum outcome s_progress_max(struct ctx *c)
{
	struct shm_part *cp = P(c->m, c->p);

	atomic_store(&cp->written, UINT64_MAX);
	atomic_store(&cp->durable, UINT64_MAX);
	atomic_store(&cp->records, UINT64_MAX);
	atomic_store(&cp->durable_seq, UINT32_MAX);
	return GOES_ON;
}

/* Readers take a seg_first beyond their segment for a rotation they must look for: with
 * UINT64_MAX they find no segment and see no record (-ETIMEDOUT) until the flusher rotates
 * and stores the word again. The flusher never reads it. */
static enum outcome s_seg_first_max(struct ctx *c)
{
	atomic_store(&P(c->m, c->p)->seg_first, UINT64_MAX);
	return GOES_ON;
}

static enum outcome s_progress_zero(struct ctx *c)
{
	struct shm_part *cp = P(c->m, c->p);

	atomic_store(&cp->written, 0);
	atomic_store(&cp->durable, 0);
	atomic_store(&cp->seg_first, 0);
	atomic_store(&H(c->m)->flusher_seq, 77);
	return GOES_ON;
}

/* The waiters' announcement (the pacing flusher's hint): any value only changes whether the
 * flusher pauses between small batches; the next waiter overwrites it. */
static enum outcome s_wait_word(struct ctx *c)
{
	atomic_store(&H(c->m)->wait_ns, 0x8000000000000000ull); /* "now" is a lap of int64 off */
	return GOES_ON;
}

struct scribble_case {
	const char *name;
	scribble_fn fn;	   /* NULL: put_bad_frame(&frame) */
	const char *says;  /* for STOPS: the flusher's error names this */
	int readers_stall; /* live readers may see nothing (but never a wrong record) */
	struct bad_frame frame;
};

/* .frame: len, slot, state, type, key_len, lsn_back, crc_flip, tail_add, outcome */
static const struct scribble_case scribbles[] = {
	{ "random bytes", .fn = s_random_bytes, .says = "garbage" },
	{ "length UINT32_MAX", .says = "garbage",
	  .frame = { UINT32_MAX, HONEST_SLOT, SHMWAL_FRAME_COMMITTED, 1, 0, 0, 0, 1024, STOPS } },
	{ "length 0", .says = "garbage",
	  .frame = { 0, HONEST_SLOT, SHMWAL_FRAME_COMMITTED, 1, 0, 0, 0, 64, STOPS } },
	{ "length 16", .says = "garbage",
	  .frame = { 16, HONEST_SLOT, SHMWAL_FRAME_COMMITTED, 1, 0, 0, 0, 64, STOPS } },
	{ "length over max_frame", .fn = s_len_over_max_frame, .says = "garbage" },
	{ "frame past the tail", .says = "garbage",
	  .frame = { 96, HONEST_SLOT, SHMWAL_FRAME_COMMITTED, 1, 0, 0, 0, 64, STOPS } },
	{ "pad not aligned", .says = "garbage",
	  .frame = { 44, SHMWAL_SLOT_NONE, SHMWAL_FRAME_PAD, 0, 0, 0, 0, 48, STOPS } },
	{ "state 0", .says = "garbage", .frame = { 64, HONEST_SLOT, 0, 1, 0, 0, 0, 64, STOPS } },
	{ "state 5", .says = "garbage", .frame = { 64, HONEST_SLOT, 5, 1, 0, 0, 0, 64, STOPS } },
	{ "bad magic", .fn = s_bad_magic, .says = "garbage" },
	/* a frame of the previous lap, as stale bytes would be */
	{ "own LSN of the last lap", .says = "garbage",
	  .frame = { 64, HONEST_SLOT, SHMWAL_FRAME_COMMITTED, 1, 0, RING, 0, 64, STOPS } },
	{ "committed, bad checksum", .says = "garbage",
	  .frame = { 64, HONEST_SLOT, SHMWAL_FRAME_COMMITTED, 1, 0, 0, 0x10, 64, STOPS } },
	{ "committed, key_len past len", .says = "garbage",
	  .frame = { 64, HONEST_SLOT, SHMWAL_FRAME_COMMITTED, 1, 33, 0, 0, 64, STOPS } },
	{ "committed, type 0", .says = "garbage",
	  .frame = { 64, HONEST_SLOT, SHMWAL_FRAME_COMMITTED, 0, 0, 0, 0, 64, STOPS } },
	{ "aborted, bad checksum", .says = "garbage",
	  .frame = { 64, HONEST_SLOT, SHMWAL_FRAME_ABORTED, 0, 0, 0, 1, 64, STOPS } },
	/* a claim naming a slot that does not exist: nobody can finish it */
	{ "claimed by no slot",
	  .frame = { 200, 0xfffe, SHMWAL_FRAME_CLAIMED, 1, 0, 0, 0, 200, GOES_ON } },
	{ "claimed by a free slot", .fn = s_claimed_free_slot },
	/* a well-formed pad is just a pad */
	{ "a well-formed pad",
	  .frame = { 512, SHMWAL_SLOT_NONE, SHMWAL_FRAME_PAD, 0, 0, 0, 0, 512, GOES_ON } },
	{ "a gap", .fn = s_gap },
	{ "a gap, lanes garbage", .fn = s_gap_lanes_garbage },
	{ "registry slots garbage", .fn = s_slots_garbage },
	{ "garbage in free ring bytes", .fn = s_free_ring_garbage, .says = "garbage" },
	{ "tail backwards", .fn = s_tail_backwards, .says = "tail" },
	{ "tail not aligned", .fn = s_tail_unaligned, .says = "tail" },
	{ "tail UINT64_MAX", .fn = s_tail_max, .says = "tail" },
	{ "tail four laps ahead", .fn = s_tail_laps_ahead },
	{ "progress words at the maximum", .fn = s_progress_max },
	{ "progress words zero", .fn = s_progress_zero, .readers_stall = 1 },
	{ "seg_first at the maximum", .fn = s_seg_first_max, .readers_stall = 1 },
	{ "wait word garbage", .fn = s_wait_word },
};

static uint32_t honest_slot(struct hmap *m)
{
	uint32_t slot = SHM_SLOTS;

	for (uint32_t i = 0; i < SHM_SLOTS; i++)
		if (SLOT_STATE(atomic_load(&S(m, i)->word)) == SLOT_LIVE) {
			assert_int_equal(slot, SHM_SLOTS); /* exactly one */
			slot = i;
		}
	assert_true(slot < SHM_SLOTS);
	return slot;
}

/* A reader following partition 0 live (attached to the scribbled object) reads the honest
 * records, intact, and then reports the end (-ETIMEDOUT) or damage (-EBADMSG): never a
 * crash, never a record that is not one. */
static void live_read(const char *dir, const char *name, uint64_t want)
{
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct th_stamp st;
	uint64_t n = 0;
	int rc;

	assert_int_equal(shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r), 0);
	while ((rc = shmwal_reader_next(r, &rec, SHMWAL_NS_PER_SEC / 100)) == 0) {
		assert_int_equal(th_check(rec.value, rec.value_len, &st), 0);
		assert_int_equal(st.seq, n);
		n++;
	}
	if (rc != -ETIMEDOUT && rc != -EBADMSG)
		fail_msg("%s: live reader: %d %s", name, rc, shmwal_last_error());
	if (n < want)
		fail_msg("%s: live reader read %llu records: %s", name, (unsigned long long)n,
			 shmwal_last_error());
	shmwal_reader_close(r);
}

/* Waits until lsn is durable; fails at once if the flusher exits meanwhile. */
static void wait_durable_or_fail(struct shmwal *w, uint32_t p, uint64_t lsn, pid_t fl,
				 const char *name)
{
	for (int i = 0; i < TH_TIMEOUT_S; i++) {
		int st;

		if (shmwal_wait_durable(w, p, lsn, SHMWAL_NS_PER_SEC) == 0)
			return;
		if (waitpid(fl, &st, WNOHANG) == fl)
			fail_msg("%s: the flusher exited (status %#x): %s", name, st, errbuf);
	}
	fail_msg("%s: LSN %llu of partition %u not durable in %d s", name,
		 (unsigned long long)lsn, p, TH_TIMEOUT_S);
}

/*
 * One case: honest records on every partition, made durable; the scribbling on partition 0
 * (partition 1 is left alone); then either the flusher stops by itself with an error, or it
 * goes on: more honest records become durable and it stops cleanly when asked.
 */
static void run_scribble(const struct scribble_case *sc, uint64_t seed)
{
	char *dir = new_wal("hostile");
	uint64_t want[PARTS];
	struct shmwal *w;
	struct ctx c;
	struct hmap m;
	enum outcome o;
	pid_t fl;
	int st;

	fl = flusher_spawn(dir);
	assert_int_equal(th_open(dir, &w), 0);
	for (uint32_t p = 0; p < PARTS; p++) {
		honest(w, p, 0, HONEST);
		want[p] = HONEST;
	}
	hmap_open(dir, &m);
	c.m = &m;
	c.p = 0;
	c.pos = tail_of(&m, 0);
	c.slot = honest_slot(&m);
	c.seed = seed;
	/* the flusher is at the tail: everything honest is durable, nothing else claimed */
	assert_int_equal(atomic_load(&P(&m, 0)->durable), c.pos);

	o = sc->fn ? sc->fn(&c) : put_bad_frame(&c, &sc->frame);
	live_read(dir, sc->name, sc->readers_stall ? 0 : HONEST);
	if (o == STOPS) {
		st = th_wait(fl, TH_TIMEOUT_S);
		if (st != 1)
			fail_msg("%s: flusher exit status %d, expected 1 (an error)", sc->name, st);
	} else {
		/* The flusher goes on (or, for EITHER, may stop at the garbage): honest appends
		 * on both partitions become durable. */
		for (uint32_t p = 0; p < PARTS; p++) {
			uint8_t v[TH_STAMP_MIN + 200];
			uint64_t lsn = 0;
			int rc = 0;

			for (uint64_t i = HONEST; i < HONEST + LATER && rc == 0; i++) {
				uint32_t len = TH_STAMP_MIN + (uint32_t)(i * 37 % 200);

				th_fill(v, len, 0, p, i);
				rc = (o == GOES_ON ? shmwal_append : shmwal_try_append)(
					w, p, SHMWAL_TYPE_PUT, NULL, 0, v, len, &lsn);
			}
			if (o == GOES_ON) {
				assert_int_equal(rc, 0);
				wait_durable_or_fail(w, p, lsn, fl, sc->name);
				want[p] = HONEST + LATER;
			}
		}
		/* The durable word in shared memory tells the truth again: whatever was scribbled
		 * there, the flusher's next publication overwrote it. */
		for (int i = 0; o == GOES_ON; i++) {
			struct timespec ts = { 0, 10000000 };

			if (atomic_load(&P(&m, 0)->durable) == tail_of(&m, 0))
				break;
			if (i > TH_TIMEOUT_S * 100)
				fail_msg("%s: durable %llu, tail %llu", sc->name,
					 (unsigned long long)atomic_load(&P(&m, 0)->durable),
					 (unsigned long long)tail_of(&m, 0));
			nanosleep(&ts, NULL);
		}
		shmwal_close(w);
		w = NULL;
		if (o == GOES_ON || waitpid(fl, &st, WNOHANG) == 0) {
			st = th_flusher_stop(fl);
			if (st != 0 && !(o == EITHER && st == 1))
				fail_msg("%s: flusher exit status %d (%s)", sc->name, st, errbuf);
		} else {
			assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
		}
	}
	if (sc->says && errbuf[0] && !strstr(errbuf, sc->says))
		fail_msg("%s: the flusher said \"%s\", not \"%s\"", sc->name, errbuf, sc->says);
	if (o == STOPS)
		assert_int_equal(*child_rc, -EIO); /* and errbuf named the problem (above) */
	if (w)
		shmwal_close(w);
	hmap_close(&m);
	check_files(dir);
	check_records(dir, want);
	th_destroy(dir);
	free(dir);
}

static void test_flusher_under_scribbling(void **state)
{
	const char *only = getenv("HOSTILE_CASE");

	(void)state;
	for (size_t i = 0; i < sizeof(scribbles) / sizeof(scribbles[0]); i++) {
		if (only && strcmp(scribbles[i].name, only) != 0)
			continue;
		if (getenv("SHMWAL_TEST_VERBOSE"))
			fprintf(stderr, "case: %s\n", scribbles[i].name);
		run_scribble(&scribbles[i], 0x9e3779b97f4a7c15ull + i);
	}
}

/* ---- adopting a dead flusher's shared memory ------------------------------------------- */

/*
 * The flusher is SIGKILLed and its positions are rolled back before the next one starts. The
 * next flusher would cut the files back to the "durable" LSN and write the rest again from the
 * ring; but the ring no longer holds those frames (they were freed and zeroed, or reused). It
 * must refuse, not cut records that were durable; put back, the object is adopted.
 */
static void test_adopt_rolled_back_positions(void **state)
{
	char *dir = new_wal("hadopt");
	uint64_t want[PARTS], saved[4], rollback[4];
	struct shmwal *w;
	struct hmap m;
	pid_t fl;

	(void)state;
	fl = flusher_spawn(dir);
	assert_int_equal(th_open(dir, &w), 0);
	want[0] = 2 * HONEST; /* more than a ring: two segments */
	want[1] = HONEST;
	for (uint32_t p = 0; p < PARTS; p++)
		honest(w, p, 0, want[p]);
	kill(fl, SIGKILL);
	assert_int_equal(th_wait(fl, TH_TIMEOUT_S), 128 + SIGKILL);
	hmap_open(dir, &m);
	saved[0] = atomic_load(&P(&m, 0)->head);
	saved[1] = atomic_load(&P(&m, 0)->written);
	saved[2] = atomic_load(&P(&m, 0)->durable);
	saved[3] = atomic_load(&P(&m, 0)->tail);
	assert_true(saved[2] > RING + 4096 && saved[2] == saved[3]);
	{ /* the start of the last record: one frame back */
		struct shmwal_reader *r;
		struct shmwal_record rec;

		assert_int_equal(shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r), 0);
		while (shmwal_reader_next(r, &rec, 0) == 0)
			rollback[0] = rec.lsn;
		shmwal_reader_close(r);
	}
	rollback[1] = (saved[2] - RING / 2) & ~7ull; /* within one ring, mid-frame or not */
	rollback[2] = 4096; /* more than a ring back */
	rollback[3] = 0;    /* all of it */

	for (size_t i = 0; i < sizeof(rollback) / sizeof(rollback[0]); i++) {
		atomic_store(&P(&m, 0)->head, rollback[i]);
		atomic_store(&P(&m, 0)->written, rollback[i]);
		atomic_store(&P(&m, 0)->durable, rollback[i]);
		assert_int_equal(th_wait(flusher_spawn(dir), TH_TIMEOUT_S), 1);
		assert_int_equal(*child_rc, -EPROTO);
		if (getenv("SHMWAL_TEST_VERBOSE"))
			fprintf(stderr, "rolled back to %llu: %s\n",
				(unsigned long long)rollback[i], errbuf);
		if (!strstr(errbuf, "refusing"))
			fail_msg("rolled back to %llu: \"%s\"", (unsigned long long)rollback[i],
				 errbuf);
		check_files(dir);
		atomic_store(&P(&m, 0)->head, saved[0]);
		atomic_store(&P(&m, 0)->written, saved[1]);
		atomic_store(&P(&m, 0)->durable, saved[2]);
	}
	/* positions out of order, or a tail behind them: refused as inconsistent */
	atomic_store(&P(&m, 0)->head, saved[2] + 8);
	assert_int_equal(th_wait(flusher_spawn(dir), TH_TIMEOUT_S), 1);
	assert_non_null(strstr(errbuf, "inconsistent"));
	atomic_store(&P(&m, 0)->head, saved[0]);
	atomic_store(&P(&m, 0)->tail, saved[2] - 8);
	assert_int_equal(th_wait(flusher_spawn(dir), TH_TIMEOUT_S), 1);
	assert_non_null(strstr(errbuf, "inconsistent"));
	atomic_store(&P(&m, 0)->tail, saved[3]);
	hmap_close(&m);

	/* put back, it is adopted, and nothing was lost */
	fl = flusher_spawn(dir);
	honest(w, 0, want[0], LATER);
	want[0] += LATER;
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	check_files(dir);
	check_records(dir, want);
	th_destroy(dir);
	free(dir);
}

/* ---- liveness is the lock's word, not the registry's ------------------------------------ */

static void wait_slot_free(struct hmap *m, uint32_t slot)
{
	for (int i = 0; SLOT_STATE(atomic_load(&S(m, slot)->word)) != SLOT_FREE; i++) {
		struct timespec ts = { 0, 10000000 };

		if (i > TH_TIMEOUT_S * 100)
			fail_msg("slot %u never reclaimed", slot);
		nanosleep(&ts, NULL);
	}
}

/*
 * The registry word of a live producer is overwritten with DEAD, as if it had died, while it
 * holds a claim. The flusher judges liveness by the producer's lock (the kernel's), not by
 * the word: it neither aborts the claim (it logs a stall) nor takes the producer's slot and
 * lanes, while a really dead slot with the same word is reclaimed. The record is committed
 * and durable.
 */
static void test_overwritten_slot_word_of_live_producer(void **state)
{
	char *dir = th_tmpdir("hslot");
	uint64_t want[PARTS] = { 0, 0 }, lsn, word;
	struct shmwal_config cfg;
	struct shmwal_claim cl;
	struct shmwal *w;
	struct hmap m;
	uint32_t slot, witness, lanes = 0;
	pid_t fl;

	(void)state;
	shmwal_config_default(&cfg);
	cfg.partitions = PARTS;
	cfg.ring_bytes = RING;
	cfg.segment_bytes = SEGMENT;
	cfg.max_value = MAX_VALUE;
	cfg.stall_timeout_ms = 10; /* a stall is counted soon, after the first probes */
	assert_int_equal(shmwal_create(dir, &cfg), 0);
	fl = flusher_spawn(dir);
	assert_int_equal(th_open(dir, &w), 0);
	honest(w, 0, 0, 10);
	hmap_open(dir, &m);
	slot = honest_slot(&m);
	word = atomic_load(&S(&m, slot)->word);

	/* a claim held open, then the word says its producer is dead */
	assert_int_equal(shmwal_claim(w, 0, SHMWAL_TYPE_PUT, 0, 100, &cl), 0);
	th_fill(cl.value, 100, 0, 0, 10);
	atomic_store(&S(&m, slot)->word, SLOT_WORD(SLOT_GEN(word), SLOT_DEAD));
	/* A stall is counted only after the frame was probed and found live (consume.c). */
	for (int i = 0; atomic_load(&P(&m, 0)->stalls) == 0; i++) {
		struct timespec ts = { 0, 10000000 };
		uint64_t fw = atomic_load((shmwal_atomic64 *)R(&m, 0, cl.lsn));

		if (shmwal_word_state(fw) != SHMWAL_FRAME_CLAIMED)
			fail_msg("the live producer's claim was taken: word %llx",
				 (unsigned long long)fw);
		if (i > TH_TIMEOUT_S * 100)
			fail_msg("no stall counted");
		nanosleep(&ts, NULL);
	}
	assert_int_equal(shmwal_commit(w, &cl), 0);
	lsn = cl.lsn;
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC),
			 0);

	/* A free slot made DEAD (no lock) is reclaimed, twice: the second time, the flusher's
	 * registry pass has judged our slot after the claim drained, at least once. */
	witness = (slot + 1) % SHM_SLOTS;
	for (int k = 0; k < 2; k++) {
		atomic_store(&S(&m, witness)->word, SLOT_WORD(7 + k, SLOT_DEAD));
		wait_slot_free(&m, witness);
	}
	assert_int_equal(SLOT_STATE(atomic_load(&S(&m, slot)->word)), SLOT_DEAD);
	for (uint32_t l = 0; l < SHM_LANES; l++)
		lanes += atomic_load(&L(&m, l)->owner) == slot + 1;
	assert_int_equal(lanes, 1); /* its lane is still its own */

	honest(w, 0, 11, 10);
	want[0] = 21;
	shmwal_close(w);
	wait_slot_free(&m, slot); /* gone for real now: reclaimed */
	hmap_close(&m);
	assert_int_equal(th_flusher_stop(fl), 0);
	check_files(dir);
	check_records(dir, want);
	th_destroy(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attach_refuses_bad_header),
		cmocka_unit_test(test_flusher_under_scribbling),
		cmocka_unit_test(test_adopt_rolled_back_positions),
		cmocka_unit_test(test_overwritten_slot_word_of_live_producer),
	};

	errbuf = mmap(NULL, ERR_LEN + 64, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
		      0);
	if (errbuf == MAP_FAILED)
		return 1;
	child_rc = (int *)(errbuf + ERR_LEN);
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
