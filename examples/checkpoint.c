/* SPDX-License-Identifier: MIT */
/*
 * checkpoint.c - a consumer that applies the log to its state, checkpoints, and truncates
 * the log behind its checkpoint with shmwal_truncate_before().
 *
 *	checkpoint [--once] DIR STATE [PARTITION]
 *
 * Reads PARTITION (default 0) from where the state file STATE says it stopped (from the oldest
 * record on the first run) and "applies" each record. A real application would update its
 * tables; this one counts the records and folds their keys and values into a CRC32C digest,
 * which shows that each was applied exactly once and in order. Every EVERY records, and
 * whenever it has caught up with the log, it checkpoints:
 *
 *   1. it writes its state, with the LSN to resume from, to STATE, and makes that durable
 *      (write a temporary file, fsync, rename over STATE, fsync the directory);
 *   2. only then, it removes the segments that end below that LSN: they are no longer needed.
 *
 * In this order a crash at any point loses nothing: a restart resumes from the last durable
 * checkpoint, whose records are still in the log. (Truncating first and crashing before the
 * state is saved would resume from an older checkpoint whose records are gone.)
 *
 * With --once it stops as soon as it has caught up; otherwise it keeps following the log
 * until SIGINT or SIGTERM. Its last line is "applied N records this run (T in all),
 * checkpoint at LSN L, removed S segments". STATE is a small text file:
 * "next_lsn L\nrecords T\ndigest 0xD\n".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shmwal.h>

#define EVERY	1000		    /* checkpoint at least every this many records */
#define POLL_NS (SHMWAL_NS_PER_SEC) /* the longest a signal waits to be noticed */

struct state {
	uint64_t next_lsn; /* resume here: the next_lsn of the last applied record */
	uint64_t records;  /* applied since the first run */
	uint32_t digest;   /* CRC32C of every applied key and value, in order */
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* Loads STATE; a missing file is a first run (all zeros: start at the oldest record). */
static int state_load(const char *path, struct state *st)
{
	unsigned long long lsn, records;
	unsigned digest;
	FILE *f;
	int n;

	memset(st, 0, sizeof(*st));
	f = fopen(path, "r");
	if (!f)
		return errno == ENOENT ? 0 : -1;
	n = fscanf(f, "next_lsn %llu records %llu digest %x", &lsn, &records, &digest);
	fclose(f);
	if (n != 3) {
		errno = EINVAL;
		return -1;
	}
	st->next_lsn = lsn;
	st->records = records;
	st->digest = digest;
	return 0;
}

/* Replaces STATE atomically and durably: after a crash it holds the old or the new state. */
static int state_save(const char *path, const struct state *st)
{
	char tmp[4096], dir[4096];
	FILE *f;
	int fd, ok;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -1;
	fprintf(f, "next_lsn %" PRIu64 "\nrecords %" PRIu64 "\ndigest 0x%08x\n", st->next_lsn,
		st->records, (unsigned)st->digest);
	ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok = (fclose(f) == 0) && ok;
	if (!ok || rename(tmp, path) < 0)
		return -1;
	/* The rename is durable once the directory is synced. */
	snprintf(dir, sizeof(dir), "%s", path);
	fd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return -1;
	ok = fsync(fd) == 0;
	close(fd);
	return ok ? 0 : -1;
}

/* The application's work. Here: count, and fold key and value into the digest. */
static void apply(struct state *st, const struct shmwal_record *rec)
{
	st->digest = shmwal_crc32c(st->digest, rec->key, rec->key_len);
	st->digest = shmwal_crc32c(st->digest, rec->value, rec->value_len);
	st->records++;
	st->next_lsn = rec->next_lsn;
}

/* Steps 1 and 2 above. Returns the number of segments removed, or -1. */
static int checkpoint(const char *dir, uint32_t part, const char *path, const struct state *st)
{
	int rc;

	if (state_save(path, st) < 0) {
		fprintf(stderr, "checkpoint: save %s: %s\n", path, strerror(errno));
		return -1;
	}
	/*
	 * Removes the partition's whole segments that end at or below next_lsn (never the one
	 * being written). Safe while the flusher, producers and other readers run.
	 */
	rc = shmwal_truncate_before(dir, part, st->next_lsn);
	if (rc < 0) {
		fprintf(stderr, "checkpoint: truncate: %s\n", shmwal_last_error());
		return -1;
	}
	return rc;
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
	const char *dir, *path;
	unsigned long part = 0;
	uint64_t applied = 0, pending = 0, removed = 0;
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct sigaction sa;
	struct state st;
	int once = 0, rc;

	if (argc > 1 && strcmp(argv[1], "--once") == 0) {
		once = 1;
		argv++;
		argc--;
	}
	if (argc < 3 || argc > 4 || (argc > 3 && parse_ulong(argv[3], &part) < 0)) {
		fprintf(stderr, "usage: checkpoint [--once] DIR STATE [PARTITION]\n");
		return 2;
	}
	dir = argv[1];
	path = argv[2];
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	if (state_load(path, &st) < 0) {
		fprintf(stderr, "checkpoint: load %s: %s\n", path, strerror(errno));
		return 1;
	}
	/*
	 * Resume right after the last applied record (next_lsn 0 is SHMWAL_LSN_OLDEST: a first
	 * run starts at the oldest retained record). -ERANGE would mean that someone truncated
	 * past our checkpoint: records this state never saw are gone.
	 */
	rc = shmwal_reader_open(dir, (uint32_t)part, st.next_lsn, &r);
	if (rc < 0) {
		fprintf(stderr, "checkpoint: %s\n", shmwal_last_error());
		return 1;
	}

	for (;;) {
		/* --once: take what is durable now (a zero timeout), then stop. */
		rc = shmwal_reader_next(r, &rec, once ? 0 : POLL_NS);
		if (rc == 0) {
			apply(&st, &rec);
			applied++;
			pending++;
		} else if (rc != -ETIMEDOUT) {
			fprintf(stderr, "checkpoint: %s\n", shmwal_last_error());
			shmwal_reader_close(r);
			return 1;
		}
		/* Checkpoint every EVERY records, when caught up, and before leaving. */
		if (pending >= EVERY || (pending && (rc == -ETIMEDOUT || stop))) {
			int n = checkpoint(dir, (uint32_t)part, path, &st);

			if (n < 0) {
				shmwal_reader_close(r);
				return 1;
			}
			removed += (uint64_t)n;
			pending = 0;
		}
		if (stop || (once && rc == -ETIMEDOUT))
			break;
	}
	shmwal_reader_close(r);
	printf("applied %" PRIu64 " records this run (%" PRIu64
	       " in all), checkpoint at LSN %" PRIu64 ", removed %" PRIu64 " segments\n",
	       applied, st.records, st.next_lsn, removed);
	return 0;
}
