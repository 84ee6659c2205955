/* SPDX-License-Identifier: MIT */
/*
 * durable.c - a producer that acknowledges records only once they are durable, with
 * shmwal_wait_durable().
 *
 *	durable DIR [COUNT [BATCH [PARTITION]]]
 *
 * Appends COUNT records (default 100) to PARTITION (default 0): record i has the key "txn-<i>"
 * and the value "payment <i>". After every BATCH records (default 1) it waits until they are
 * durable and prints one line for them: "durable: records A..B, LSN L".
 *
 * BATCH 1 waits for each record, as a service that acknowledges each request must. It is
 * cheaper than it looks: the flusher syncs whatever is in the ring at once (group commit), so
 * the waits of concurrent producers share one sync. A larger BATCH waits once, for the last
 * record: a partition's records become durable in LSN order, so that one wait covers them all.
 * What "durable" means is the WAL's sync mode: with `--sync always` or `interval`, a record
 * acknowledged here survives a power cut.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <shmwal.h>

#define WAIT_NS (30 * SHMWAL_NS_PER_SEC) /* give up waiting after this long */

static int parse_ulong(const char *s, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno || end == s || *end || *s == '-' ? -1 : 0;
}

int main(int argc, char **argv)
{
	unsigned long count = 100, batch = 1, part = 0, i, first = 0, batches = 0;
	uint64_t lsn = 0;
	struct shmwal *w;
	int rc;

	if (argc < 2 || argc > 5 || (argc > 2 && parse_ulong(argv[2], &count) < 0) ||
	    (argc > 3 && (parse_ulong(argv[3], &batch) < 0 || batch == 0)) ||
	    (argc > 4 && parse_ulong(argv[4], &part) < 0)) {
		fprintf(stderr, "usage: durable DIR [COUNT [BATCH [PARTITION]]]\n");
		return 2;
	}
	rc = shmwal_open(argv[1], &w);
	if (rc < 0) {
		fprintf(stderr, "durable: %s\n", shmwal_last_error());
		return 1;
	}

	for (i = 0; i < count; i++) {
		char key[32], value[64];
		int klen = snprintf(key, sizeof(key), "txn-%lu", i);
		int vlen = snprintf(value, sizeof(value), "payment %lu", i);

		rc = shmwal_append(w, (uint32_t)part, SHMWAL_TYPE_PUT, key, (uint32_t)klen, value,
				   (uint32_t)vlen, &lsn);
		if (rc < 0) {
			fprintf(stderr, "durable: record %lu: %s\n", i, shmwal_last_error());
			shmwal_close(w);
			return 1;
		}
		if (i + 1 < count && (i + 1 - first) < batch)
			continue;

		/*
		 * The batch is complete (or this is the last record): wait until the record at
		 * `lsn`, and with it every earlier one of this partition, is durable. The wait
		 * spins briefly, then sleeps on a futex that the flusher wakes after its sync.
		 */
		rc = shmwal_wait_durable(w, (uint32_t)part, lsn, WAIT_NS);
		if (rc < 0) {
			/*
			 * -ETIMEDOUT: the flusher is slow or stopped. The records are committed
			 * and stay in the ring; they are not acknowledged yet. A service would
			 * report the failure to its clients, or wait again.
			 */
			fprintf(stderr, "durable: wait for LSN %" PRIu64 ": %s\n", lsn,
				shmwal_last_error());
			shmwal_close(w);
			return 1;
		}
		/* Only now may the records be acknowledged to whoever sent them. */
		printf("durable: records %lu..%lu, LSN %" PRIu64 "\n", first, i, lsn);
		first = i + 1;
		batches++;
	}
	printf("%lu records durable in %lu waits\n", count, batches);
	shmwal_close(w);
	return 0;
}
