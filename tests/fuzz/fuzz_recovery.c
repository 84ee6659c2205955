/* SPDX-License-Identifier: MIT */
/*
 * fuzz_recovery.c - libFuzzer target: recovery of a partition whose last segment holds the
 * input bytes after a valid header (the first input byte chooses whether the header itself is
 * taken from the input too). Recovery must not crash, must cut the file to a whole number of
 * valid frames, and must report an end that matches the file it leaves.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmwal_format.h"
#include "meta.h"
#include "persist/segment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void remove_dir(void);

static char dir[] = "/tmp/shmwal-fuzzrec.XXXXXX";
static struct meta m;
static int ready;

static void setup(void)
{
	struct shmwal_config c;

	if (!mkdtemp(dir))
		abort();
	shmwal_config_default(&c);
	c.ring_bytes = 64 << 10;
	c.segment_bytes = 64 << 10;
	c.max_key = 64;
	c.max_value = 1024;
	if (shmwal_create(dir, &c) < 0 || meta_load(dir, &m) < 0)
		abort();
	atexit(remove_dir);
	ready = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct shmwal_segment_header h;
	struct seg_recovery out;
	char path[4200];
	struct stat st;
	int fd, raw;

	if (!ready)
		setup();
	raw = size && (data[0] & 1);
	snprintf(path, sizeof(path), "%s/p000/%016x.seg", dir, 0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		abort();
	if (!raw) {
		shmwal_segment_header_init(&h, 0, 0, m.instance, 1);
		if (write(fd, &h, sizeof(h)) != (ssize_t)sizeof(h))
			abort();
	}
	if (size > 1 && write(fd, data + 1, size - 1) != (ssize_t)(size - 1))
		abort();
	close(fd);
	if (recover_partition(&m, 0, 0, NULL, NULL, &out) == 0 && out.has_seg) {
		if (stat(path, &st) < 0 || (uint64_t)st.st_size != SHMWAL_SEG_HDR + out.end)
			abort();
	}
	/* start clean for the next input (recovery may have quarantined the file) */
	unlink(path);
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
