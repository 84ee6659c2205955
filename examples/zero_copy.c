/* SPDX-License-Identifier: MIT */
/*
 * zero_copy.c - a producer that builds each record in place, in the shared-memory ring, with
 * shmwal_claim() and shmwal_commit(): the value is never copied.
 *
 *	zero_copy DIR [COUNT [PARTITION]]
 *
 * Appends COUNT (default 1000) sensor readings to PARTITION (default 0). Reading i has the
 * key "sensor-<i % 4>" and as its value a struct reading (below, 24 bytes, native byte
 * order), which is written field by field straight into the claimed space, as a decoder
 * reading from a device or a socket would. A reading that turns out invalid once it is
 * written (here every tenth, i % 10 == 9, by design) is given up with shmwal_abort(): its
 * space becomes an aborted frame that readers never see.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmwal.h>

/* The application's record type for readings (types 16..65535 are the application's). */
#define TYPE_READING SHMWAL_TYPE_USER_MIN

/* The value of every record. */
struct reading {
	uint64_t seq;	       /* i */
	int64_t milli_celsius; /* the measurement */
	uint32_t sensor;       /* i % 4, also in the key */
	uint32_t valid;	       /* 0 for a reading the sensor flagged as bad */
};

/* Stands in for a device: writes reading `seq` into dst, one field at a time. */
static void measure(unsigned char *dst, uint64_t seq)
{
	int64_t mc = 20000 + (int64_t)(seq * 37 % 1000) - 500;
	uint32_t sensor = (uint32_t)(seq % 4), valid = seq % 10 != 9;

	/*
	 * The value follows the key in the frame, so it is aligned only as far as the key's
	 * length allows: write it with memcpy (or byte by byte), never through a cast pointer.
	 */
	memcpy(dst + offsetof(struct reading, seq), &seq, sizeof(seq));
	memcpy(dst + offsetof(struct reading, milli_celsius), &mc, sizeof(mc));
	memcpy(dst + offsetof(struct reading, sensor), &sensor, sizeof(sensor));
	memcpy(dst + offsetof(struct reading, valid), &valid, sizeof(valid));
}

static int parse_ulong(const char *s, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno || end == s || *end || *s == '-' ? -1 : 0;
}

int main(int argc, char **argv)
{
	unsigned long count = 1000, part = 0, committed = 0, aborted = 0, i;
	uint64_t last = 0;
	struct shmwal *w;
	int rc;

	if (argc < 2 || argc > 4 || (argc > 2 && parse_ulong(argv[2], &count) < 0) ||
	    (argc > 3 && parse_ulong(argv[3], &part) < 0)) {
		fprintf(stderr, "usage: zero_copy DIR [COUNT [PARTITION]]\n");
		return 2;
	}
	rc = shmwal_open(argv[1], &w);
	if (rc < 0) {
		fprintf(stderr, "zero_copy: %s\n", shmwal_last_error());
		return 1;
	}

	for (i = 0; i < count; i++) {
		struct shmwal_claim c;
		uint32_t valid;
		char key[16];
		int klen = snprintf(key, sizeof(key), "sensor-%lu", i % 4);

		/*
		 * Reserve room for a key of klen bytes and a value of sizeof(struct reading)
		 * bytes. c.key and c.value point into the shared-memory ring. Until it is
		 * committed or aborted, the claim holds up the flusher on this partition: fill
		 * it promptly, and do not wait for anything in between.
		 */
		rc = shmwal_claim(w, (uint32_t)part, TYPE_READING, (uint32_t)klen,
				  sizeof(struct reading), &c);
		if (rc < 0) {
			fprintf(stderr, "zero_copy: claim %lu: %s\n", i, shmwal_last_error());
			shmwal_close(w);
			return 1;
		}
		memcpy(c.key, key, (size_t)klen);
		measure(c.value, i);

		memcpy(&valid, (unsigned char *)c.value + offsetof(struct reading, valid),
		       sizeof(valid));
		if (valid) {
			/* Checksums the record in place and hands it to the flusher. */
			rc = shmwal_commit(w, &c);
			committed++;
			last = c.lsn;
		} else {
			/* Nothing of it will ever be read; its LSN is simply skipped. */
			rc = shmwal_abort(w, &c);
			aborted++;
		}
		if (rc < 0) {
			fprintf(stderr, "zero_copy: commit %lu: %s\n", i, shmwal_last_error());
			shmwal_close(w);
			return 1;
		}
	}
	printf("committed %lu readings, aborted %lu, to partition %lu, last LSN %" PRIu64 "\n",
	       committed, aborted, part, last);
	shmwal_close(w);
	return 0;
}
