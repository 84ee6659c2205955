/* SPDX-License-Identifier: MIT */
/*
 * micro.c - what single steps of an append cost, side by side in one run: the frame checksum
 * as shmwal computes it (inline SSE4.2 crc32 up to 256 bytes, common/crc32c.c) against the
 * same checksum as two calls into ISA-L (how it was computed before), and the record's
 * timestamp both ways: clock_gettime(CLOCK_REALTIME), and the TSC line (common/tsclock.h)
 * calibrated here as the flusher does it; and the flusher's check of committed frames, one at
 * a time or four at once (crc32c_frames4). Best of 7 runs of 2 million calls each: the figure least
 * disturbed by a shared machine.
 *
 * Last, the flusher's byte work on 1 KiB records with nothing else running: batches of 1 MiB
 * of frames taken from a ring of 4 or 64 MiB, each frame's checksum checked, the batch copied
 * into a pmem mapping with pmem_memcpy_nodrain, one pmem_drain, the batch zeroed in the ring,
 * as persist/flusher.c and shm/consume.c do it, minus the protocol and minus a producer whose
 * stores the ring's lines must come back from. It bounds what one flusher can move of 1 KiB
 * records on this machine (README, "What bounds it"). Run it with PMEM_IS_PMEM_FORCE=1; the
 * mapping is a temporary file in $TMPDIR (default /dev/shm), removed at the end.
 *
 * And what an fdatasync after one 4 KiB pwrite costs on a disk ($MICRO_SYNC_DIR, default
 * /tmp): appending (the file grows, blocks are allocated), into blocks written and synced
 * before, and into blocks fallocate'd before. Medians of 3 interleaved rounds of 1000 each;
 * why the flusher writes zeros ahead of the log's end (persist/flusher.c, "Zeros ahead").
 *
 *   micro
 */
#include <fcntl.h>
#include <libpmem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmwal_format.h"
#include "common.h"
#include "tsclock.h"

#define CALLS 2000000
#define RUNS 7

/* The frame checksum (include/shmwal_format.h) through ISA-L alone. */
static uint32_t frame_crc_isal(const struct shmwal_frame *f, uint32_t len)
{
	uint32_t c = crc32c_isal(~0u, &len, sizeof(len));

	return ~crc32c_isal(c, (const char *)f + 12, len - 12);
}

static volatile uint32_t sink;
static struct tsclock clk;

/* `arg`: the frame (which 0, 1) or an array of four frames (which 4, 5) */
static double best_ns(int which, const void *arg, uint32_t len)
{
	const struct shmwal_frame *f = arg;
	double best = 1e18;

	for (int r = 0; r < RUNS; r++) {
		uint64_t t0 = mono_ns();
		uint32_t x = 0;

		for (int i = 0; i < CALLS; i++) {
			if (which == 0) {
				x += shmwal_frame_crc(f, len);
			} else if (which == 1) {
				x += frame_crc_isal(f, len);
			} else if (which == 4 || which == 5) {
				const void *const *fr = arg;
				static const uint32_t len4[4] = { 96, 96, 96, 96 };
				uint32_t out[4];

				if (which == 4)
					for (int j = 0; j < 4; j++)
						out[j] = shmwal_frame_crc(fr[j], len);
				else
					crc32c_frames4(fr, len4, out);
				x += out[0] + out[1] + out[2] + out[3];
			} else if (which == 2) {
				x += (uint32_t)real_ns(); /* the timestamp before the TSC line */
			} else {
				x += (uint32_t)tsclock_now(&clk); /* the producer's (producer.c) */
			}
		}
		sink = x;
		double per = (double)(mono_ns() - t0) / CALLS;
		if (per < best)
			best = per;
	}
	return best;
}

/* The flusher's byte work per 1 KiB record (see the top), best of RUNS passes over 256 MiB;
 * < 0 when the mapping cannot be made. */
static double flusher_bytes_ns(uint64_t ring_bytes)
{
	const uint32_t len = 1056, batch = 1u << 20, per = batch / len;
	const size_t seg = 256u << 20;
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/dev/shm";
	char path[4096];
	size_t mapped;
	int is_pmem;
	double best = 1e18;
	unsigned char *ring = aligned_alloc(4096, ring_bytes), *dst;

	if (!ring)
		return -1;
	memset(ring, 0x5a, ring_bytes);
	snprintf(path, sizeof(path), "%s/shmwal-micro-%d", tmp, (int)getpid());
	dst = pmem_map_file(path, seg, PMEM_FILE_CREATE | PMEM_FILE_EXCL, 0600, &mapped, &is_pmem);
	unlink(path);
	if (!dst) {
		free(ring);
		return -1;
	}
	memset(dst, 0, seg); /* first-touch faults are not the flusher's steady state */
	for (int r = 0; r < RUNS; r++) {
		uint64_t pos = 0, t0 = mono_ns(), frames = 0;
		uint32_t bad = 0;

		for (size_t off = 0; off + batch <= seg; off += batch) {
			unsigned char *b = ring + pos % ring_bytes;

			/* the producer's part, timed too (two stores per frame): frames to check */
			for (uint32_t i = 0; i < per; i++) {
				struct shmwal_frame *f = (struct shmwal_frame *)(b + (size_t)i * len);

				f->word = shmwal_word_make(len, 0, SHMWAL_FRAME_COMMITTED);
				f->crc = (uint32_t)i;
			}
			for (uint32_t i = 0; i < per; i++) {
				const struct shmwal_frame *f =
					(const struct shmwal_frame *)(b + (size_t)i * len);

				bad += shmwal_frame_crc(f, len) != f->crc;
			}
			pmem_memcpy_nodrain(dst + off, b, (size_t)per * len);
			pmem_drain();
			memset(b, 0, (size_t)per * len);
			pos += batch;
			frames += per;
		}
		sink = bad;
		double ns = (double)(mono_ns() - t0) / (double)frames;
		if (ns < best)
			best = ns;
	}
	pmem_unmap(dst, mapped);
	free(ring);
	return best;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The median ns of `n` 4 KiB pwrite+fdatasync steps into a fresh file in dir, prepared as
 * `how` says (0 append, 1 written and synced before, 2 fallocate'd before); -1 on error. */
static double sync_p50_ns(const char *dir, int how, unsigned n)
{
	static _Alignas(4096) unsigned char page[4096];
	char path[4096];
	uint64_t *t = calloc(n, sizeof(*t));
	double p50 = -1;
	int fd;

	snprintf(path, sizeof(path), "%s/shmwal-micro-sync.XXXXXX", dir);
	fd = t ? mkstemp(path) : -1;
	if (fd < 0) {
		free(t);
		return -1;
	}
	unlink(path);
	memset(page, 0x5a, sizeof(page));
	for (unsigned i = 0; how == 1 && i < n; i++)
		if (pwrite(fd, page, sizeof(page), (off_t)i * 4096) != (ssize_t)sizeof(page))
			goto out;
	if ((how == 2 && fallocate(fd, 0, 0, (off_t)n * 4096) < 0) || fdatasync(fd) < 0)
		goto out;
	for (unsigned i = 0; i < n; i++) {
		uint64_t t0 = mono_ns();

		if (pwrite(fd, page, sizeof(page), (off_t)i * 4096) != (ssize_t)sizeof(page) ||
		    fdatasync(fd) < 0)
			goto out;
		t[i] = mono_ns() - t0;
	}
	qsort(t, n, sizeof(*t), cmp_u64);
	p50 = (double)t[n / 2];
out:
	close(fd);
	free(t);
	return p50;
}

static double median3(double *v)
{
	double a = v[0] < v[1] ? v[0] : v[1], b = v[0] < v[1] ? v[1] : v[0];

	return v[2] < a ? a : v[2] > b ? b : v[2];
}

int main(void)
{
	static _Alignas(64) unsigned char buf[2048];
	struct shmwal_frame *f = (struct shmwal_frame *)buf;
	const uint32_t lens[] = { 96, 1056 }; /* 64 B and 1 KiB values with a 32-byte header */

	memset(buf, 0x5a, sizeof(buf));
	printf("%-40s %10s %10s\n", "step", "shmwal", "ISA-L only");
	for (unsigned i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		f->word = shmwal_word_make(lens[i], 0, SHMWAL_FRAME_COMMITTED);
		if (shmwal_frame_crc(f, lens[i]) != frame_crc_isal(f, lens[i])) {
			fprintf(stderr, "micro: the two checksums differ at %u bytes\n", lens[i]);
			return 1;
		}
		printf("frame checksum, %4u-byte frame          %7.1f ns %7.1f ns\n", lens[i],
		       best_ns(0, f, lens[i]), best_ns(1, f, lens[i]));
	}
	{
		/* the flusher's check of committed frames: one at a time, or four at once */
		static _Alignas(64) unsigned char four[4][128];
		const void *fr[4] = { four[0], four[1], four[2], four[3] };

		memset(four, 0x5a, sizeof(four));
		for (int i = 0; i < 4; i++)
			((struct shmwal_frame *)four[i])->word =
				shmwal_word_make(96, 0, SHMWAL_FRAME_COMMITTED);
		printf("frame checksum, 96-byte frames, per frame:\n");
		printf("  one at a time (shmwal_frame_crc)       %7.1f ns\n",
		       best_ns(4, fr, 96) / 4);
		printf("  four at once (crc32c_frames4, flusher) %7.1f ns\n",
		       best_ns(5, fr, 96) / 4);
	}
	printf("timestamp, real_ns() (CLOCK_REALTIME)    %7.1f ns\n", best_ns(2, f, 0));
	{
		struct tsclock_cal cal;
		uint64_t ns;

		tsclock_start(&clk, &cal, mono_ns());
		if (tsclock_read(&clk, &ns))
			printf("timestamp, tsclock_now() (the TSC line)  %7.1f ns\n",
			       best_ns(3, f, 0));
		else
			printf("timestamp, tsclock_now(): the TSC is not used on this machine\n");
	}
	printf("(best of %d runs of %d calls each)\n", RUNS, CALLS);
	for (int i = 0; i < 2; i++) {
		uint64_t ring = (i ? 64ull : 4ull) << 20;
		double ns = flusher_bytes_ns(ring);

		if (ns < 0)
			printf("flusher's byte work: no pmem mapping in $TMPDIR or /dev/shm\n");
		else
			printf("flusher's byte work per 1 KiB record, %2u MiB ring: %6.1f ns "
			       "(%.1f M records/s)\n",
			       (unsigned)(ring >> 20), ns, 1000.0 / ns);
	}
	printf("(check, pmem_memcpy_nodrain, pmem_drain, zeroing; 1 MiB batches; best of %d "
	       "passes over 256 MiB)\n", RUNS);
	{
		const char *dir = getenv("MICRO_SYNC_DIR") ? getenv("MICRO_SYNC_DIR") : "/tmp";
		static const char *const how[] = {"appended", "written before", "fallocate'd"};
		double p[3][3];

		for (int r = 0; r < 3; r++)
			for (int h = 0; h < 3; h++)
				if ((p[h][r] = sync_p50_ns(dir, h, 1000)) < 0) {
					printf("fdatasync in %s: cannot write there\n", dir);
					return 0;
				}
		for (int h = 0; h < 3; h++)
			printf("pwrite 4 KiB + fdatasync, %-15s  p50 %7.1f us\n", how[h],
			       median3(p[h]) / 1e3);
		printf("(%s; medians of 3 interleaved rounds of 1000)\n", dir);
	}
	return 0;
}
