/* SPDX-License-Identifier: MIT */
/*
 * outside.c - a program from outside the tree, as a user would write it: it sees only the
 * installed <shmwal.h> and is built with `pkg-config --cflags --libs shmwal` (test_install.c
 * builds and runs it; it is not built by the Makefile).
 *
 *	outside DIR TAG COUNT
 *
 * Appends COUNT records to partition 0 of the WAL in DIR (key "TAG-<i>", value "value <i> of
 * TAG"), waits until the last one is durable, then reads them back from the first one's LSN
 * and checks every byte. Prints "library PATH" (the file shmwal_open() was loaded from) and
 * "ok COUNT FIRST LAST" (the LSNs); exits 0 on success, 1 with a message otherwise.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmwal.h>

static int failed(const char *what)
{
	fprintf(stderr, "outside: %s: %s\n", what, shmwal_last_error());
	return 1;
}

int main(int argc, char **argv)
{
	uint64_t first = 0, lsn = 0;
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal *w;
	Dl_info info;
	long count, i;

	if (argc != 4 || (count = atol(argv[3])) <= 0) {
		fprintf(stderr, "usage: outside DIR TAG COUNT\n");
		return 2;
	}
	if (!dladdr((void *)shmwal_open, &info) || !info.dli_fname) {
		fprintf(stderr, "outside: dladdr failed\n");
		return 1;
	}
	printf("library %s\n", info.dli_fname);
	if (shmwal_open(argv[1], &w) < 0)
		return failed("open");
	for (i = 0; i < count; i++) {
		char key[64], value[128];
		int kl = snprintf(key, sizeof(key), "%s-%ld", argv[2], i);
		int vl = snprintf(value, sizeof(value), "value %ld of %s", i, argv[2]);

		if (shmwal_append(w, 0, SHMWAL_TYPE_PUT, key, (uint32_t)kl, value, (uint32_t)vl,
				  &lsn) < 0)
			return failed("append");
		if (i == 0)
			first = lsn;
	}
	if (shmwal_wait_durable(w, 0, lsn, 60 * SHMWAL_NS_PER_SEC) < 0)
		return failed("wait_durable");
	shmwal_close(w);

	if (shmwal_reader_open(argv[1], 0, first, &r) < 0)
		return failed("reader_open");
	for (i = 0; i < count; i++) {
		char key[64], value[128];
		int kl = snprintf(key, sizeof(key), "%s-%ld", argv[2], i);
		int vl = snprintf(value, sizeof(value), "value %ld of %s", i, argv[2]);

		if (shmwal_reader_next(r, &rec, 0) < 0)
			return failed("reader_next");
		if (rec.key_len != (uint32_t)kl || memcmp(rec.key, key, (size_t)kl) != 0 ||
		    rec.value_len != (uint32_t)vl || memcmp(rec.value, value, (size_t)vl) != 0 ||
		    rec.type != SHMWAL_TYPE_PUT) {
			fprintf(stderr, "outside: record %ld at LSN %" PRIu64 " is not ours\n", i,
				rec.lsn);
			return 1;
		}
	}
	shmwal_reader_close(r);
	printf("ok %ld %" PRIu64 " %" PRIu64 "\n", count, first, lsn);
	return 0;
}
