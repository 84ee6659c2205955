/* SPDX-License-Identifier: MIT */
/*
 * check.c - `shmwal verify`, `shmwal repair` and `shmwal truncate`: the commands over
 * shmwal_verify(), shmwal_repair() and shmwal_truncate_before(), and the progress bar that
 * long scans draw on a terminal.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmwal.h"
#include "cli.h"

/* ---- what the scans print ------------------------------------------------------------------ */

#define BAR_AFTER_NS 300000000ull /* a scan shorter than this draws no bar */
#define BAR_EVERY_NS 100000000ull /* redrawn at most this often */
#define BAR_WIDTH    32

struct out {
	const char *cmd; /* "verify", "repair" */
	uint32_t part;	 /* the partition being worked on */
	int tty;	 /* stderr is a terminal: draw a progress bar there */
	int drawn;	 /* a bar is on the terminal's last line */
	uint64_t start_ns, drawn_ns;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * SHMWAL_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static void out_init(struct out *o, const char *cmd)
{
	memset(o, 0, sizeof(*o));
	o->cmd = cmd;
	o->tty = isatty(STDERR_FILENO);
	o->start_ns = mono_ns();
}

/* Takes the bar off the terminal (before a line is printed, and at the end). */
static void bar_clear(struct out *o)
{
	if (!o->drawn)
		return;
	fputs("\r\033[K", stderr);
	fflush(stderr);
	o->drawn = 0;
}

/* On a terminal only, for scans that last: "verify p3 [#######         ]  23% 410/1790 MiB". */
static void on_progress(void *ctx, uint32_t part, uint64_t done, uint64_t total)
{
	struct out *o = ctx;
	uint64_t now;
	char bar[BAR_WIDTH + 1];
	unsigned fill, pct;

	if (!o->tty)
		return;
	now = mono_ns();
	if (now - o->start_ns < BAR_AFTER_NS || (o->drawn && now - o->drawn_ns < BAR_EVERY_NS))
		return;
	fill = total ? (unsigned)(done * BAR_WIDTH / total) : BAR_WIDTH;
	pct = total ? (unsigned)(done * 100 / total) : 100;
	memset(bar, '#', fill);
	memset(bar + fill, ' ', BAR_WIDTH - fill);
	bar[BAR_WIDTH] = '\0';
	fflush(stdout);
	fprintf(stderr, "\r%s p%" PRIu32 " [%s] %3u%% %" PRIu64 "/%" PRIu64 " MiB\033[K", o->cmd,
		part, bar, pct, done >> 20, total >> 20);
	fflush(stderr);
	o->drawn = 1;
	o->drawn_ns = now;
}

static void on_finding(void *ctx, const struct shmwal_finding *f)
{
	struct out *o = ctx;

	bar_clear(o);
	if (f->kind == SHMWAL_FINDING_NOTE)
		printf("p%" PRIu32 ": note: %s: %s\n", f->partition, f->path, f->what);
	else
		printf("%s %s offset %" PRIu64 " (LSN %" PRIu64 "): %s\n",
		       f->kind == SHMWAL_FINDING_DAMAGE ? "DAMAGE" : "TORN-TAIL", f->path,
		       f->offset, f->lsn, f->what);
	fflush(stdout);
}

static void on_log(void *ctx, enum shmwal_log_level lvl, const char *msg)
{
	struct out *o = ctx;

	(void)lvl;
	bar_clear(o);
	printf("p%" PRIu32 ": %s\n", o->part, msg);
	fflush(stdout);
}

static int output_ok(const char *cmd)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return 1;
	die_msg("%s: writing standard output: %s", cmd, strerror(errno));
	return 0;
}

/* ---- verify ------------------------------------------------------------------------------ */

static const char verify_help[] =
    "usage: shmwal verify DIR\n"
    "Reads every segment file of every partition and checks it: its header (checksum,\n"
    "partition, first LSN, WAL instance), its place in the LSN sequence (no gap, no overlap),\n"
    "its size (pmem backend), and every frame's length, own LSN and checksum. Prints each\n"
    "finding as\n"
    "  DAMAGE FILE offset N (LSN L): what is wrong there\n"
    "  TORN-TAIL FILE offset N (LSN L): ...   (the last segment's end: written but never\n"
    "                                          synced; the flusher cuts it at start)\n"
    "then a summary per partition (records, LSN range, where damage leaves it intact) and for\n"
    "the WAL. Safe while the flusher runs (verify a stopped log to be sure: a segment rotated\n"
    "or removed during the scan can show as damage). On a terminal, long scans show their\n"
    "progress on standard error.\n"
    "Exit status 0: intact (a torn tail is not damage); 1: damage (`shmwal repair DIR --auto`\n"
    "cuts the log at the first damage of each partition), or the WAL cannot be read; 2: bad\n"
    "usage.\n";

int cmd_verify(int argc, char **argv)
{
	struct shmwal_check_options opts = {.report = on_finding, .progress = on_progress};
	struct shmwal_config cfg;
	struct out o;
	const char *dir;
	uint64_t records = 0;
	int rc, damage = 0;

	if ((rc = dir_only_args(argc, argv, "verify", verify_help, &dir)) >= 0)
		return rc;
	rc = shmwal_config_load(dir, &cfg);
	if (rc < 0)
		return fail("verify", rc);
	out_init(&o, "verify");
	opts.ctx = &o;
	for (uint32_t p = 0; p < cfg.partitions; p++) {
		struct shmwal_verify_stat st;

		o.part = p;
		rc = shmwal_verify(dir, p, &opts, &st);
		bar_clear(&o);
		if (rc < 0) {
			printf("p%" PRIu32 ": cannot be read: %s\n", p, shmwal_last_error());
			damage = 1;
			continue;
		}
		printf("p%" PRIu32 ": %" PRIu32 " segments, %" PRIu64 " records, %" PRIu64
		       " bytes of frames, LSN %" PRIu64 "..%" PRIu64,
		       p, st.segments, st.records, st.bytes, st.first_lsn, st.end_lsn);
		if (rc > 0)
			printf(", DAMAGED: intact up to LSN %" PRIu64, st.intact_lsn);
		putchar('\n');
		records += st.records;
		damage |= rc > 0;
	}
	printf("%s: %" PRIu64 " records in %u partitions: %s\n", dir, records, cfg.partitions,
	       damage ? "DAMAGED" : "ok");
	if (!output_ok("verify"))
		return 1;
	return damage ? 1 : 0;
}

/* ---- repair ------------------------------------------------------------------------------ */

static const char repair_help[] =
    "usage: shmwal repair DIR --auto [--partition P]\n"
    "       shmwal repair DIR --partition P --cut-at LSN\n"
    "Cuts a partition's log so that it ends at an LSN, for damage that readers stop at and\n"
    "that the flusher does not repair by itself. Nothing is deleted: the segments after the\n"
    "cut, and the bytes cut off the segment that holds it (behind a segment header for their\n"
    "first LSN), go to DIR/quarantine, as pNNN-<first LSN>.seg.<time>. The flusher goes on\n"
    "from the cut, and new records take the LSNs of those moved aside.\n"
    "  --auto          cut each partition (or partition P) at the first damage that\n"
    "                  `shmwal verify` reports there (for damage to a whole segment: where\n"
    "                  the segment before it ends); without damage, at a torn tail of the\n"
    "                  last segment (which a flusher would cut at start); a partition with\n"
    "                  neither is left alone\n"
    "  --cut-at LSN    cut partition P at LSN, a record boundary (decimal, or hexadecimal\n"
    "                  after 0x); the records before it in its segment must be intact\n"
    "  --partition P   the partition (needed with --cut-at)\n"
    "The log must be stopped: a repair refuses while a flusher runs, or while the WAL's shared\n"
    "memory is left (a flusher died, or stopped with producers attached: start the flusher\n"
    "and stop it once no producer is attached). Every step is synced before the next: a\n"
    "repair interrupted by a crash is finished by running it again.\n"
    "Exit status 0: repaired, or nothing to repair; 1: failure (the message says why; nothing\n"
    "was changed unless it says so); 2: bad usage.\n";

int cmd_repair(int argc, char **argv)
{
	struct shmwal_check_options opts = {
	    .report = on_finding, .progress = on_progress, .log = on_log};
	const char *dir = NULL, *v;
	uint32_t part = 0, p0, p1;
	uint64_t cut = 0;
	int auto_ = 0, have_part = 0, have_cut = 0, i, rc;
	struct shmwal_config cfg;
	struct out o;

	for (i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(repair_help, stdout);
			return 0;
		} else if (!strcmp(argv[i], "--auto")) {
			auto_ = 1;
		} else if ((v = optval(argc, argv, &i, "--partition"))) {
			if (parse_u32(v, &part) < 0)
				return usage_error("repair", v);
			have_part = 1;
		} else if ((v = optval(argc, argv, &i, "--cut-at"))) {
			if (parse_num(v, &cut) < 0 || cut == SHMWAL_REPAIR_AUTO)
				return usage_error("repair", v);
			have_cut = 1;
		} else if (argv[i][0] == '-' || dir) {
			return usage_error("repair", argv[i]);
		} else {
			dir = argv[i];
		}
	}
	if (!dir || auto_ == have_cut || (have_cut && !have_part)) {
		if (dir)
			die_msg("repair: give either --auto, or --partition P and --cut-at LSN");
		fputs(repair_help, stderr);
		return EXIT_USAGE;
	}
	rc = shmwal_config_load(dir, &cfg);
	if (rc < 0)
		return fail("repair", rc);
	if (have_part && part >= cfg.partitions) {
		die_msg("repair: partition %" PRIu32 " out of range (%s has %u)", part, dir,
			cfg.partitions);
		return 1;
	}
	p0 = have_part ? part : 0;
	p1 = have_part ? part + 1 : cfg.partitions;
	out_init(&o, "repair");
	opts.ctx = &o;
	for (uint32_t p = p0; p < p1; p++) {
		struct shmwal_repair_result res;
		char what[64];

		o.part = p;
		rc = shmwal_repair(dir, p, auto_ ? SHMWAL_REPAIR_AUTO : cut, &opts, &res);
		bar_clear(&o);
		if (rc < 0) {
			output_ok("repair");
			snprintf(what, sizeof(what), "repair: partition %" PRIu32, p);
			return fail(what, rc);
		}
		if (rc == 0)
			printf("p%" PRIu32 ": %s; the log ends at LSN %" PRIu64 "\n", p,
			       auto_ ? "no damage, nothing to repair" : "nothing to cut",
			       res.end_lsn);
		else
			printf("p%" PRIu32 ": the log now ends at LSN %" PRIu64 " (it ended at LSN "
			       "%" PRIu64 "): %" PRIu32
			       " segment files moved to %s/quarantine, %" PRIu64
			       " bytes copied there; the flusher goes on from LSN %" PRIu64 "\n",
			       p, res.end_lsn, res.old_end_lsn, res.files_moved, dir,
			       res.bytes_copied, res.end_lsn);
	}
	return output_ok("repair") ? 0 : 1;
}

/* ---- truncate ---------------------------------------------------------------------------- */

static const char truncate_help[] =
    "usage: shmwal truncate DIR PART LSN\n"
    "Removes the segment files of partition PART whose records all lie below LSN (decimal,\n"
    "or hexadecimal after 0x): retention, once everything below LSN is no longer needed. The\n"
    "segment being written is never removed, so the log may keep records below LSN. Safe\n"
    "while the flusher, producers and readers run (a reader in a removed segment reads it to\n"
    "its end). Prints how many segments were removed and where the partition's log starts\n"
    "now; readers asking for a removed LSN get an error (truncated away).\n"
    "Exit status 0; 1 failure (no such WAL or partition, I/O error); 2 bad usage.\n";

int cmd_truncate(int argc, char **argv)
{
	const char *pos[3];
	struct shmwal_reader *r;
	uint64_t lsn;
	uint32_t part;
	int n = 0, i, rc;

	for (i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(truncate_help, stdout);
			return 0;
		}
		if (argv[i][0] == '-' || n == 3)
			return usage_error("truncate", argv[i]);
		pos[n++] = argv[i];
	}
	if (n < 3) {
		fputs(truncate_help, stderr);
		return EXIT_USAGE;
	}
	if (parse_num(pos[1], &lsn) < 0 || lsn > UINT32_MAX)
		return usage_error("truncate", pos[1]);
	part = (uint32_t)lsn;
	if (parse_num(pos[2], &lsn) < 0)
		return usage_error("truncate", pos[2]);
	rc = shmwal_truncate_before(pos[0], part, lsn);
	if (rc < 0)
		return fail("truncate", rc);
	printf("partition %" PRIu32 ": removed %d segment%s", part, rc, rc == 1 ? "" : "s");
	if (shmwal_reader_open(pos[0], part, SHMWAL_LSN_OLDEST, &r) == 0) {
		printf("; the log starts at LSN %" PRIu64, shmwal_reader_position(r));
		shmwal_reader_close(r);
	}
	putchar('\n');
	return output_ok("truncate") ? 0 : 1;
}
