/* SPDX-License-Identifier: MIT */
/*
 * alone.c - the producer's and the flusher's cost per record, each measured while the other
 * does not run, for the README's "what bounds it".
 *
 *   alone [--records N] [--laps L] [--pmem] [--size 64|1024]
 *
 * A fresh WAL (one partition, 256 MiB ring, values of --size bytes, 64 or 1024; --pmem: the
 * pmem backend with sync always on $TMPDIR, run it with TMPDIR=/dev/shm PMEM_IS_PMEM_FORCE=1;
 * else files with sync none). Each lap: the flusher child is SIGSTOPped, this process appends
 * N records (default: 96 MiB of frames; they fit the ring: nothing waits), the flusher is
 * SIGCONTed and the time until the last record is durable is the flusher's. Prints ns per
 * record for both, each lap.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmwal_format.h"
#include "tests/helpers.h"

static uint64_t now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	unsigned n = 0, laps = 4, size = 64;
	int pmem = 0, rc = 1;
	struct shmwal_config c;
	struct shmwal *w = NULL;
	char buf[1024], *dir;
	uint64_t frame;
	pid_t fl = -1;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--pmem"))
			pmem = 1;
		else if (!strcmp(argv[i], "--records") && i + 1 < argc)
			n = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--laps") && i + 1 < argc)
			laps = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--size") && i + 1 < argc)
			size = (unsigned)strtoul(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: alone [--records N] [--laps L] [--pmem] "
					"[--size 64|1024]\n");
			return 2;
		}
	}
	if (size != 64 && size != 1024) {
		fprintf(stderr, "--size: 64 or 1024\n");
		return 2;
	}
	frame = SHMWAL_ALIGN_UP(SHMWAL_FRAME_HDR + size);
	if (!n)
		n = (unsigned)((96ull << 20) / frame); /* 1M 64-byte records: most of the ring */
	if ((uint64_t)n * frame > (200ull << 20)) {
		fprintf(stderr, "--records: 1 .. %llu (the ring must hold a lap)\n",
			(unsigned long long)((200ull << 20) / frame));
		return 2;
	}
	memset(buf, 7, sizeof(buf));
	dir = th_tmpdir("alone");
	shmwal_config_default(&c);
	c.partitions = 1;
	c.ring_bytes = 256ull << 20;
	c.segment_bytes = 1ull << 30;
	c.max_key = 64;
	c.max_value = 1024;
	c.sync = pmem ? SHMWAL_SYNC_ALWAYS : SHMWAL_SYNC_NONE;
	c.backend = pmem ? SHMWAL_BACKEND_PMEM : SHMWAL_BACKEND_FILE;
	if (!dir || shmwal_create(dir, &c) < 0) {
		fprintf(stderr, "create: %s\n", shmwal_last_error());
		goto out;
	}
	fl = th_flusher_start(dir, 0);
	if (fl < 0 || th_open(dir, &w) < 0) {
		fprintf(stderr, "start: %s\n", shmwal_last_error());
		goto out;
	}
	printf("%u records of %u B per lap, %s\n", n, size,
	       pmem ? "pmem backend, sync always" : "file backend, sync none");
	for (unsigned lap = 0; lap < laps; lap++) {
		uint64_t lsn = 0, t0, t1, t2;

		kill(fl, SIGSTOP);
		t0 = now();
		for (unsigned i = 0; i < n; i++)
			if (shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, buf, size, &lsn) < 0) {
				fprintf(stderr, "append: %s\n", shmwal_last_error());
				kill(fl, SIGCONT);
				goto out;
			}
		t1 = now();
		kill(fl, SIGCONT);
		if (shmwal_wait_durable(w, 0, lsn, 60 * SHMWAL_NS_PER_SEC) < 0) {
			fprintf(stderr, "wait_durable: %s\n", shmwal_last_error());
			goto out;
		}
		t2 = now();
		printf("lap %u: producer alone %.1f ns/append, flusher alone %.1f ns/record\n", lap,
		       (double)(t1 - t0) / n, (double)(t2 - t1) / n);
	}
	rc = 0;
out:
	if (w)
		shmwal_close(w);
	if (fl > 0 && th_flusher_stop(fl) != 0)
		rc = 1;
	th_destroy(dir);
	free(dir);
	return rc;
}
