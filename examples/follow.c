/* SPDX-License-Identifier: MIT */
/*
 * follow.c - a live reader: prints a partition's records as they become durable.
 *
 *	follow DIR [PARTITION [COUNT [FROM]]]
 *
 * Reads PARTITION (default 0) from FROM: "oldest" (the default: the oldest retained record),
 * "end" (only records appended from now on) or a record's LSN, such as a position saved
 * earlier. Prints "following partition P from LSN L" once it reads, then one line per record,
 * "LSN TYPE KEY VALUE" (bytes outside printable ASCII as \xHH). It stops after COUNT records
 * (default 0: never) or on SIGINT or SIGTERM, and says which in its last line. It needs no
 * flusher to read what is already durable, and follows a flusher that starts, stops and
 * restarts.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmwal.h>

/* How long one wait for a record may last: the longest a signal waits to be noticed. */
#define POLL_NS (200 * 1000 * 1000ull)

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void print_bytes(const void *p, uint32_t len)
{
	const unsigned char *b = p;

	for (uint32_t i = 0; i < len; i++) {
		if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '\\')
			putchar(b[i]);
		else
			printf("\\x%02x", b[i]);
	}
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || end == s || *end || *s == '-' ? -1 : 0;
}

/* FROM: "oldest", "end" or an LSN. */
static int parse_from(const char *s, uint64_t *out)
{
	if (strcmp(s, "oldest") == 0) {
		*out = SHMWAL_LSN_OLDEST;
		return 0;
	}
	if (strcmp(s, "end") == 0) {
		*out = SHMWAL_LSN_END;
		return 0;
	}
	return parse_u64(s, out);
}

int main(int argc, char **argv)
{
	uint64_t part = 0, count = 0, n = 0, from = SHMWAL_LSN_OLDEST;
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct sigaction sa;
	int rc;

	if (argc < 2 || argc > 5 || (argc > 2 && parse_u64(argv[2], &part) < 0) ||
	    (argc > 3 && parse_u64(argv[3], &count) < 0) ||
	    (argc > 4 && parse_from(argv[4], &from) < 0)) {
		fprintf(stderr, "usage: follow DIR [PARTITION [COUNT [oldest|end|LSN]]]\n");
		return 2;
	}

	/*
	 * No SA_RESTART, and a bounded wait below: a signal ends the loop within POLL_NS even
	 * while no record arrives.
	 */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* One line at a time, so that a pipe or a file sees each record at once. */
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* A reader is used by one thread at a time; a process may have any number of them. */
	rc = shmwal_reader_open(argv[1], (uint32_t)part, from, &r);
	if (rc < 0) {
		/* -ERANGE: FROM was truncated away; -EINVAL: FROM is not a record's LSN. */
		fprintf(stderr, "follow: %s\n", shmwal_last_error());
		return 1;
	}
	printf("following partition %" PRIu64 " from LSN %" PRIu64 "\n", part,
	       shmwal_reader_position(r));

	while (!stop && (count == 0 || n < count)) {
		char type[16];

		/*
		 * The next durable record, waiting up to POLL_NS for one (a short spin, then a
		 * futex sleep that the flusher's publication ends). Only durable records are
		 * returned, in LSN order; damage is an error (-EBADMSG), never a record.
		 */
		rc = shmwal_reader_next(r, &rec, POLL_NS);
		if (rc == -ETIMEDOUT)
			continue; /* nothing new yet: check `stop`, then wait again */
		if (rc < 0) {
			/*
			 * -ERANGE: the segments ahead were truncated while this reader lagged
			 * behind; a reader that may skip records reopens at SHMWAL_LSN_OLDEST.
			 */
			fprintf(stderr, "follow: %s\n", shmwal_last_error());
			shmwal_reader_close(r);
			return 1;
		}
		if (rec.type == SHMWAL_TYPE_PUT)
			snprintf(type, sizeof(type), "PUT");
		else if (rec.type == SHMWAL_TYPE_DELETE)
			snprintf(type, sizeof(type), "DELETE");
		else
			snprintf(type, sizeof(type), "TYPE%u", (unsigned)rec.type);
		/* rec.key and rec.value point into the segment: valid until the next call. */
		printf("%" PRIu64 " %s ", rec.lsn, type);
		print_bytes(rec.key, rec.key_len);
		putchar(' ');
		print_bytes(rec.value, rec.value_len);
		putchar('\n');
		n++;
	}
	if (count && n == count)
		printf("read %" PRIu64 " records\n", n);
	else
		printf("stopped by signal after %" PRIu64 " records, at LSN %" PRIu64 "\n", n,
		       shmwal_reader_position(r));
	shmwal_reader_close(r);
	return 0;
}
