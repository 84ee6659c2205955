/* SPDX-License-Identifier: MIT */
/*
 * fuzz_consume.c - libFuzzer target: the flusher's ring scanner (shm_consume) over a ring whose
 * bytes and tail come from the input, as a buggy or hostile producer could leave them. It must
 * never crash, never loop, never return a batch outside one lap of the ring, and report garbage
 * as -EIO.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "shmwal_format.h"
#include "shm/shm_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void remove_dir(void);

static char dir[] = "/tmp/shmwal-fuzzcons.XXXXXX";
static struct shm *s;

static void setup(void)
{
	struct shmwal_config c;
	struct meta m;
	uint64_t end = 0, resume = 0;
	int adopted;

	if (!mkdtemp(dir))
		abort();
	shmwal_config_default(&c);
	c.ring_bytes = 64 << 10;
	c.max_key = 64;
	c.max_value = 1024;
	if (shmwal_create(dir, &c) < 0 || meta_load(dir, &m) < 0 ||
	    shm_flusher_open(&m, &end, NULL, NULL, &s, &adopted, &resume) < 0)
		abort();

}

static void cleanup(void)
{
	shm_flusher_close(s, 1);
	remove_dir();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint64_t ring = s ? s->meta.cfg.ring_bytes : 0;
	struct shm_part *cp;
	uint64_t tail, base;
	int i;

	if (!s) {
		setup();
		atexit(cleanup);
	}
	if (size < 8)
		return 0;
	cp = &s->parts[0];
	/* a fresh lap at a position taken from the input (8-aligned) */
	memcpy(&base, data, 8);
	base = (base & 0xffffffffff) & ~7ull;
	memset(s->rings[0], 0, s->meta.cfg.ring_bytes);
	memcpy(s->rings[0] + (base & s->ring_mask), data + 8,
	       size - 8 < ring - (base & s->ring_mask) ? size - 8 : ring - (base & s->ring_mask));
	s->f_written[0] = s->f_head[0] = base;
	store_relaxed(&cp->head, base);
	store_relaxed(&cp->written, base);
	tail = base + ((size - 8) & ~7ull) + (size > 16 ? (uint64_t)data[8] * 8 : 0);
	store_relaxed(&cp->tail, tail);
	memset(s->stuck, 0, sizeof(s->stuck));
	for (i = 0; i < 64; i++) {
		const void *batch;
		uint32_t records;
		int64_t n = shm_consume(s, 0, 1 << 20, UINT64_MAX, &batch, &records);
		uint64_t pos = s->f_written[0];

		if (n <= 0)
			break; /* nothing ready, a stuck claim, or -EIO: all fine */
		if ((const uint8_t *)batch != s->rings[0] + (pos & s->ring_mask) ||
		    (uint64_t)n > ring || pos + (uint64_t)n > tail)
			abort();
		/* touch every byte of the batch, as the pwrite would */
		{
			volatile uint8_t x = 0;

			for (int64_t k = 0; k < n; k += 64)
				x ^= ((const uint8_t *)batch)[k];
			x ^= ((const uint8_t *)batch)[n - 1];
			(void)x;
		}
		shm_release(s, 0, pos + (uint64_t)n);
		shm_free(s, 0, pos + (uint64_t)n);
	}
	return 0;
}

/* The scratch WAL goes when the fuzzer exits. */
static void remove_dir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}
