/* SPDX-License-Identifier: MIT */
/*
 * bench.c - first numbers: append throughput and latency, durable latency, and the machine's
 * raw write + fdatasync loop measured in the same run for comparison.
 *
 *   bench append  [--procs N] [--size B] [--seconds S] [--partitions P]   sync none
 *   bench durable [--size B] [--count N]                                  sync always
 *   bench fsync   [--size B] [--count N]       raw pwrite + fdatasync loop, same filesystem
 *   bench scan    [--size B] [--count N]       a reader reads N records, with the flusher
 *                                              running, then again with it stopped (offline)
 *
 * Every run creates a fresh WAL under $TMPDIR (default /tmp), starts the flusher in a child
 * process, and removes everything at the end. Latencies are taken on every 16th append
 * (clock_gettime around one call) into a log-linear histogram; percentiles are printed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/helpers.h"

/* log-linear histogram: 8 sub-buckets per power of two of nanoseconds */
#define HB 512

struct hist {
	uint64_t n[HB];
	uint64_t count, max;
};

static unsigned hbucket(uint64_t ns)
{
	unsigned lg = 0;

	if (ns < 8)
		return (unsigned)ns;
	while ((ns >> lg) >= 16)
		lg++;
	return (lg + 1) * 8 + (unsigned)((ns >> lg) & 7);
}

static uint64_t hvalue(unsigned b)
{
	unsigned lg;

	if (b < 16)
		return b;
	lg = b / 8 - 1;
	return (uint64_t)(8 + (b & 7)) << lg;
}

static void hadd(struct hist *h, uint64_t ns)
{
	unsigned b = hbucket(ns);

	h->n[b < HB ? b : HB - 1]++;
	h->count++;
	if (ns > h->max)
		h->max = ns;
}

static uint64_t hpct(const struct hist *h, double q)
{
	uint64_t want = (uint64_t)ceil(q * (double)h->count), seen = 0;

	for (unsigned b = 0; b < HB; b++) {
		seen += h->n[b];
		if (seen >= want && seen)
			return hvalue(b);
	}
	return h->max;
}

static void hprint(const char *what, const struct hist *h)
{
	printf("  %-22s p50 %8.2f us  p99 %8.2f us  p99.9 %8.2f us  max %8.2f us  (n=%" PRIu64 ")\n",
	       what, (double)hpct(h, 0.5) / 1e3, (double)hpct(h, 0.99) / 1e3,
	       (double)hpct(h, 0.999) / 1e3, (double)h->max / 1e3, h->count);
}

static uint64_t now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct {
	unsigned procs, partitions, seconds;
	uint32_t size;
	uint64_t count;
} opt = { 1, 1, 3, 64, 20000 };

static char *make_wal(enum shmwal_sync sync)
{
	struct shmwal_config c;
	char *dir = th_tmpdir("bench");

	shmwal_config_default(&c);
	c.partitions = opt.partitions;
	c.ring_bytes = 16 << 20;
	c.segment_bytes = 256 << 20;
	c.max_key = 64;
	c.max_value = opt.size > 4096 ? opt.size : 4096;
	c.sync = sync;
	if (!dir || shmwal_create(dir, &c) < 0) {
		fprintf(stderr, "create: %s\n", shmwal_last_error());
		exit(1);
	}
	return dir;
}

struct result {
	uint64_t records;
	uint64_t ns;
	struct hist lat;
};

static int cmd_append(void)
{
	char *dir = make_wal(SHMWAL_SYNC_NONE);
	struct result *res = mmap(NULL, sizeof(*res) * opt.procs, PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t fl = th_flusher_start(dir, 0), pids[64];
	int *go = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t total = 0, span = 0;
	struct hist all;

	memset(&all, 0, sizeof(all));
	for (unsigned i = 0; i < opt.procs; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			struct result *r = &res[i];
			uint8_t *val = calloc(1, opt.size);
			struct shmwal *w;
			uint64_t t0, end, lsn, n = 0;
			uint32_t part = i % opt.partitions;

			if (th_open(dir, &w) < 0)
				_exit(1);
			while (!__atomic_load_n(go, __ATOMIC_ACQUIRE))
				;
			t0 = now();
			end = t0 + (uint64_t)opt.seconds * 1000000000ull;
			for (;;) {
				for (int k = 0; k < 15; k++, n++)
					shmwal_append(w, part, SHMWAL_TYPE_PUT, NULL, 0, val, opt.size,
						      &lsn);
				uint64_t a = now();
				shmwal_append(w, part, SHMWAL_TYPE_PUT, NULL, 0, val, opt.size, &lsn);
				uint64_t b = now();
				n++;
				hadd(&r->lat, b - a);
				if (b >= end)
					break;
			}
			r->records = n;
			r->ns = now() - t0;
			shmwal_close(w);
			_exit(0);
		}
	}
	usleep(200000);
	__atomic_store_n(go, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < opt.procs; i++)
		th_wait(pids[i], 600);
	th_flusher_stop(fl);
	for (unsigned i = 0; i < opt.procs; i++) {
		total += res[i].records;
		if (res[i].ns > span)
			span = res[i].ns;
		for (unsigned b = 0; b < HB; b++)
			all.n[b] += res[i].lat.n[b];
		all.count += res[i].lat.count;
		if (res[i].lat.max > all.max)
			all.max = res[i].lat.max;
	}
	printf("append: %u producer process(es), %u partition(s), %u-byte values, sync none, %us\n",
	       opt.procs, opt.partitions, opt.size, opt.seconds);
	printf("  throughput             %.2f M records/s  (%.1f MB/s of values)\n",
	       (double)total / ((double)span / 1e9) / 1e6,
	       (double)total * opt.size / ((double)span / 1e9) / 1e6);
	hprint("append latency", &all);
	th_destroy(dir);
	free(dir);
	return 0;
}

static int cmd_durable(void)
{
	char *dir = make_wal(SHMWAL_SYNC_ALWAYS);
	pid_t fl = th_flusher_start(dir, 0);
	uint8_t *val = calloc(1, opt.size);
	struct shmwal *w;
	struct hist h;
	uint64_t lsn, t0;

	memset(&h, 0, sizeof(h));
	if (th_open(dir, &w) < 0)
		return 1;
	t0 = now();
	for (uint64_t i = 0; i < opt.count; i++) {
		uint64_t a = now();

		if (shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, val, opt.size, &lsn) < 0 ||
		    shmwal_wait_durable(w, 0, lsn, 10 * SHMWAL_NS_PER_SEC) < 0) {
			fprintf(stderr, "%s\n", shmwal_last_error());
			return 1;
		}
		hadd(&h, now() - a);
	}
	printf("durable: 1 producer, append + wait_durable per record, %u-byte values, sync always\n",
	       opt.size);
	printf("  rate                   %.0f records/s\n",
	       (double)opt.count / ((double)(now() - t0) / 1e9));
	hprint("append to durable", &h);
	shmwal_close(w);
	th_flusher_stop(fl);
	th_destroy(dir);
	free(dir);
	free(val);
	return 0;
}

static int cmd_fsync(void)
{
	char *dir = th_tmpdir("fsync"), path[4096];
	uint8_t *buf = calloc(1, opt.size);
	struct hist h;
	uint64_t t0;
	int fd;

	memset(&h, 0, sizeof(h));
	snprintf(path, sizeof(path), "%s/raw", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return 1;
	t0 = now();
	for (uint64_t i = 0; i < opt.count; i++) {
		uint64_t a = now();

		if (pwrite(fd, buf, opt.size, (off_t)(i * opt.size)) != (ssize_t)opt.size ||
		    fdatasync(fd) < 0)
			return 1;
		hadd(&h, now() - a);
	}
	printf("fsync: raw pwrite(%u bytes, appending) + fdatasync loop, same filesystem\n",
	       opt.size);
	printf("  rate                   %.0f writes/s\n",
	       (double)opt.count / ((double)(now() - t0) / 1e9));
	hprint("pwrite + fdatasync", &h);
	close(fd);
	th_destroy(dir);
	free(dir);
	free(buf);
	return 0;
}

/* One reader from the oldest record to the end: records per second, after a check of each. */
static int scan_once(const char *dir, const char *what)
{
	struct shmwal_reader *r;
	struct shmwal_record rec;
	uint64_t n = 0, t0;
	int rc;

	if (shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r) < 0) {
		fprintf(stderr, "reader: %s\n", shmwal_last_error());
		return 1;
	}
	t0 = now();
	while ((rc = shmwal_reader_next(r, &rec, 0)) == 0)
		n++;
	t0 = now() - t0;
	shmwal_reader_close(r);
	if (rc != -ETIMEDOUT || n != opt.count) {
		fprintf(stderr, "%s: read %" PRIu64 " of %" PRIu64 " records (%s)\n", what, n,
			opt.count, shmwal_last_error());
		return 1;
	}
	printf("  %-22s %.2f M records/s  (%.1f ns per record)\n", what,
	       (double)n / ((double)t0 / 1e3), (double)t0 / (double)n);
	return 0;
}

static int cmd_scan(void)
{
	char *dir = make_wal(SHMWAL_SYNC_NONE);
	pid_t fl = th_flusher_start(dir, 0);
	uint8_t *val = calloc(1, opt.size);
	struct shmwal *w;
	uint64_t lsn = 0;
	int rc = 1;

	if (th_open(dir, &w) < 0)
		return 1;
	for (uint64_t i = 0; i < opt.count; i++)
		if (shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, val, opt.size, &lsn) < 0) {
			fprintf(stderr, "%s\n", shmwal_last_error());
			return 1;
		}
	if (shmwal_wait_durable(w, 0, lsn, 60 * SHMWAL_NS_PER_SEC) < 0)
		return 1;
	shmwal_close(w);
	printf("scan: one reader, %" PRIu64 " records of %u bytes, page cache\n", opt.count,
	       opt.size);
	if (scan_once(dir, "with the flusher") == 0 && th_flusher_stop(fl) == 0)
		rc = scan_once(dir, "offline (no flusher)");
	th_destroy(dir);
	free(dir);
	free(val);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bench append|durable|fsync|scan [--procs N] [--size B] "
				"[--seconds S] [--count N] [--partitions P]\n");
		return 2;
	}
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--procs"))
			opt.procs = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--size"))
			opt.size = (uint32_t)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--seconds"))
			opt.seconds = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--count"))
			opt.count = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--partitions"))
			opt.partitions = (unsigned)atoi(argv[i + 1]);
	}
	if (opt.procs < 1 || opt.procs > 64 || opt.partitions < 1 || opt.size > (1u << 20))
		return 2;
	if (!strcmp(argv[1], "append"))
		return cmd_append();
	if (!strcmp(argv[1], "durable"))
		return cmd_durable();
	if (!strcmp(argv[1], "fsync"))
		return cmd_fsync();
	if (!strcmp(argv[1], "scan"))
		return cmd_scan();
	return 2;
}
