/* SPDX-License-Identifier: MIT */
/*
 * producer.c - the plainest producer: appends records with shmwal_append().
 *
 *	producer DIR [COUNT [PARTITION]]
 *
 * Appends COUNT records (default 1000) to PARTITION (default 0) of the WAL in DIR: record i
 * has the key "key-<i>" and the value "value <i>". The WAL's flusher must be running
 * (`shmwal flusher DIR`). It does not wait for durability: the records become durable as the
 * flusher syncs them (durable.c shows how to wait for that).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <shmwal.h>

static int parse_ulong(const char *s, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno || end == s || *end || *s == '-' ? -1 : 0;
}

int main(int argc, char **argv)
{
	unsigned long count = 1000, part = 0, i;
	uint64_t first = 0, lsn = 0;
	struct shmwal *w;
	int rc;

	if (argc < 2 || argc > 4 || (argc > 2 && parse_ulong(argv[2], &count) < 0) ||
	    (argc > 3 && parse_ulong(argv[3], &part) < 0)) {
		fprintf(stderr, "usage: producer DIR [COUNT [PARTITION]]\n");
		return 2;
	}

	/*
	 * Attach as a producer. -ENOENT means there is no WAL in DIR or its flusher has not
	 * created the shared memory yet: a service started alongside the flusher would retry.
	 */
	rc = shmwal_open(argv[1], &w);
	if (rc < 0) {
		fprintf(stderr, "producer: %s\n", shmwal_last_error());
		return 1;
	}

	for (i = 0; i < count; i++) {
		char key[32], value[64];
		int klen = snprintf(key, sizeof(key), "key-%lu", i);
		int vlen = snprintf(value, sizeof(value), "value %lu", i);

		/*
		 * Claims space in the partition's ring (one atomic fetch-add), copies key and
		 * value there, checksums and commits. It waits only while the ring is full, that
		 * is while the flusher is behind. Any number of threads may share the handle.
		 */
		rc = shmwal_append(w, (uint32_t)part, SHMWAL_TYPE_PUT, key, (uint32_t)klen, value,
				   (uint32_t)vlen, &lsn);
		if (rc < 0) {
			/*
			 * -EMSGSIZE: over the WAL's key or value limit. -ESHUTDOWN: the flusher
			 * stopped; a long-running producer would close the handle and open a new
			 * one once a flusher runs again.
			 */
			fprintf(stderr, "producer: record %lu: %s\n", i, shmwal_last_error());
			shmwal_close(w);
			return 1;
		}
		if (i == 0)
			first = lsn;
	}
	if (count)
		printf("appended %lu records to partition %lu, LSN %" PRIu64 "..%" PRIu64 "\n",
		       count, part, first, lsn);
	else
		printf("appended 0 records\n");

	/* Detach. Records already appended stay in the ring until the flusher writes them. */
	shmwal_close(w);
	return 0;
}
