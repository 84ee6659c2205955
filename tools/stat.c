/* SPDX-License-Identifier: MIT */
/*
 * stat.c - `shmwal stat` (the live state and metrics: text, JSON, Prometheus; once or
 * refreshed) and `shmwal retention` (show or set the retention policy).
 * Built only on include/shmwal.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmwal.h"
#include "tools/cli.h"

/* ---- formatting helpers ------------------------------------------------------------------ */

static const char *sync_str(enum shmwal_sync s)
{
	return s == SHMWAL_SYNC_NONE ? "none" : s == SHMWAL_SYNC_INTERVAL ? "interval" : "always";
}

static const char *persistence_str(enum shmwal_persistence p)
{
	switch (p) {
	case SHMWAL_PERSIST_FDATASYNC:
		return "fdatasync";
	case SHMWAL_PERSIST_PMEM_DRAIN:
		return "pmem-drain";
	case SHMWAL_PERSIST_PMEM_MSYNC:
		return "pmem-msync";
	default:
		return "none";
	}
}

static const char *persistence_long(enum shmwal_persistence p)
{
	switch (p) {
	case SHMWAL_PERSIST_FDATASYNC:
		return "fdatasync (pwrite into segment files, then fdatasync)";
	case SHMWAL_PERSIST_PMEM_DRAIN:
		return "pmem drain (persistent memory: non-draining copies, one drain per batch)";
	case SHMWAL_PERSIST_PMEM_MSYNC:
		return "pmem msync (not persistent memory, no DAX: pmem_msync fallback, slower)";
	default:
		return "none (no flusher running)";
	}
}

/* "1.5 MiB" */
static const char *human_bytes(char *buf, size_t len, double v)
{
	static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	unsigned u = 0;

	while (v >= 1024 && u + 1 < sizeof(unit) / sizeof(unit[0])) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
	return buf;
}

/* "3d 4h", "12m 5s", "900 ms" */
static const char *human_ms(char *buf, size_t len, uint64_t ms)
{
	uint64_t s = ms / 1000;

	if (ms < 1000)
		snprintf(buf, len, "%" PRIu64 " ms", ms);
	else if (s < 60)
		snprintf(buf, len, "%.1f s", (double)ms / 1000);
	else if (s < 3600)
		snprintf(buf, len, "%" PRIu64 "m %" PRIu64 "s", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%" PRIu64 "h %" PRIu64 "m", s / 3600, s / 60 % 60);
	else
		snprintf(buf, len, "%" PRIu64 "d %" PRIu64 "h", s / 86400, s / 3600 % 24);
	return buf;
}

static uint64_t real_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Upper bound in microseconds of the sync-latency bucket holding quantile q (0 if none). */
static uint64_t hist_quantile_us(const struct shmwal_partition_stat *ps, double q)
{
	uint64_t n = 0, seen = 0;

	for (unsigned b = 0; b < SHMWAL_SYNC_HIST_BUCKETS; b++)
		n += ps->sync_hist[b];
	if (!n)
		return 0;
	for (unsigned b = 0; b < SHMWAL_SYNC_HIST_BUCKETS; b++) {
		seen += ps->sync_hist[b];
		if ((double)seen >= q * (double)n)
			return 1ull << b;
	}
	return 1ull << (SHMWAL_SYNC_HIST_BUCKETS - 1);
}

static uint64_t lag_bytes(const struct shmwal_partition_stat *ps)
{
	return ps->tail > ps->durable ? ps->tail - ps->durable : 0;
}

static uint64_t ring_used(const struct shmwal_partition_stat *ps)
{
	return ps->tail > ps->head ? ps->tail - ps->head : 0;
}

static uint64_t lag_records(const struct shmwal_partition_stat *ps)
{
	return ps->records > ps->records_durable ? ps->records - ps->records_durable : 0;
}

static uint64_t records_durable_all(const struct shmwal_stat *st)
{
	uint64_t n = 0;

	for (uint32_t p = 0; p < st->cfg.partitions; p++)
		n += st->part[p].records_durable;
	return n;
}

/* ---- text -------------------------------------------------------------------------------- */

static void policy_text(FILE *o, const struct shmwal_retention *r)
{
	const char *sep = "";
	char a[32];

	if (!r->max_segments && !r->max_bytes && !r->max_age_ms && !r->rotate_age_ms) {
		fputs("keep everything", o);
		return;
	}
	if (r->max_segments) {
		fprintf(o, "%sat most %" PRIu64 " segments", sep, r->max_segments);
		sep = ", ";
	}
	if (r->max_bytes) {
		fprintf(o, "%sat most %s", sep, human_bytes(a, sizeof(a), (double)r->max_bytes));
		sep = ", ";
	}
	if (r->max_age_ms) {
		fprintf(o, "%sat most %s old", sep, human_ms(a, sizeof(a), r->max_age_ms));
		sep = ", ";
	}
	if (r->rotate_age_ms)
		fprintf(o, "%sseal segments after %s", sep,
			human_ms(a, sizeof(a), r->rotate_age_ms));
}

static void print_text(FILE *o, const char *dir, const struct shmwal_stat *st,
		       const struct shmwal_retention *pol)
{
	char a[32], b[32], c[32];

	fprintf(o, "wal:         %s, %u partitions, backend %s, sync %s, ring %s, segments %s\n",
		dir, st->cfg.partitions, st->cfg.backend == SHMWAL_BACKEND_PMEM ? "pmem" : "file",
		sync_str(st->cfg.sync), human_bytes(a, sizeof(a), (double)st->cfg.ring_bytes),
		human_bytes(b, sizeof(b), (double)st->cfg.segment_bytes));
	fprintf(o, "persistence: %s\n", persistence_long(st->persistence));
	if (st->flusher_running && st->shm_present) {
		uint64_t now = real_now_ns();

		fprintf(o, "flusher:     running, pid %u, up %s, heartbeat %.1f ms ago\n",
			st->flusher_pid,
			human_ms(a, sizeof(a),
				 now > st->flusher_start_ns ? (now - st->flusher_start_ns) / 1000000
							    : 0),
			(double)st->heartbeat_age_ns / 1e6);
	} else {
		fprintf(o, "flusher:     not running\n");
	}
	if (st->shm_present) {
		fprintf(o, "timestamps:  %s\n",
			st->clock == SHMWAL_CLOCK_TSC
			    ? "tsc (a line calibrated against CLOCK_REALTIME by the flusher)"
			    : "clock_gettime(CLOCK_REALTIME) in each append");
		fprintf(o,
			"producers:   %u attached; %" PRIu64 " appends (%" PRIu64 "/s), %" PRIu64
			" not yet durable, %" PRIu64 " waited for ring space\n",
			st->live_producers, st->appends, st->appends_per_s,
			st->appends > records_durable_all(st)
			    ? st->appends - records_durable_all(st)
			    : 0,
			st->ring_full_waits);
	} else {
		fprintf(o,
			"shared memory: none (no flusher since boot or a clean stop); the log's "
			"end is in the files: shmwal verify %s\n",
			dir);
	}
	for (uint32_t p = 0; p < st->cfg.partitions; p++) {
		const struct shmwal_partition_stat *ps = &st->part[p];

		fprintf(o, "partition %u\n", p);
		if (st->shm_present) {
			fprintf(o,
				"  lsn:       tail %" PRIu64 ", written %" PRIu64
				", durable %" PRIu64 ", head %" PRIu64 ", segment %" PRIu64
				", oldest %" PRIu64 "\n",
				ps->tail, ps->written, ps->durable, ps->head, ps->seg_first,
				ps->oldest);
			fprintf(o,
				"  lag:       %" PRIu64 " bytes not yet durable (%" PRIu64
				" records written, not synced); ring %.1f%% full (%s of %s)\n",
				lag_bytes(ps), lag_records(ps),
				100.0 * (double)ring_used(ps) / (double)st->cfg.ring_bytes,
				human_bytes(a, sizeof(a), (double)ring_used(ps)),
				human_bytes(b, sizeof(b), (double)st->cfg.ring_bytes));
			fprintf(
			    o, "  rates:     appended %s/s; written %" PRIu64 " records/s, %s/s\n",
			    human_bytes(a, sizeof(a), (double)ps->append_bytes_per_s),
			    ps->records_per_s, human_bytes(b, sizeof(b), (double)ps->bytes_per_s));
			fprintf(o, "  written:   %" PRIu64 " records, %s in %" PRIu64 " batches\n",
				ps->records, human_bytes(a, sizeof(a), (double)ps->bytes),
				ps->batches);
			if (ps->syncs)
				fprintf(o,
					"  syncs:     %" PRIu64
					", mean %.0f us, last %.0f us; p50 < %" PRIu64
					" us, p99 < %" PRIu64 " us, p99.9 < %" PRIu64 " us\n",
					ps->syncs,
					(double)ps->sync_ns_total / 1e3 / (double)ps->syncs,
					(double)ps->sync_ns_last / 1e3, hist_quantile_us(ps, 0.5),
					hist_quantile_us(ps, 0.99), hist_quantile_us(ps, 0.999));
			else
				fprintf(o, "  syncs:     none\n");
			fprintf(o,
				"  repairs:   %" PRIu64
				" claims of dead producers aborted, %" PRIu64
				" gaps padded; %" PRIu64 " stalls\n",
				ps->aborted_claims, ps->padded_gaps, ps->stalls);
		}
		fprintf(o, "  files:     %" PRIu64 " segments, %s, from LSN %" PRIu64 "\n",
			ps->segments, human_bytes(a, sizeof(a), (double)ps->segment_bytes),
			ps->oldest);
		fprintf(o, "  retention: ");
		policy_text(o, &pol[p]);
		if (ps->retention_segments)
			fprintf(o, "; removed %" PRIu64 " segments (%s)", ps->retention_segments,
				human_bytes(c, sizeof(c), (double)ps->retention_bytes));
		fputc('\n', o);
	}
}

/* ---- JSON -------------------------------------------------------------------------------- */

static void json_str(FILE *o, const char *s)
{
	fputc('"', o);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(o, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(o, "\\u%04x", *p);
		else
			fputc(*p, o); /* a path's other bytes pass as they are */
	}
	fputc('"', o);
}

static void json_policy(FILE *o, const struct shmwal_retention *r)
{
	fprintf(o,
		"{\"max_segments\":%" PRIu64 ",\"max_bytes\":%" PRIu64 ",\"max_age_ms\":%" PRIu64
		",\"rotate_age_ms\":%" PRIu64 "}",
		r->max_segments, r->max_bytes, r->max_age_ms, r->rotate_age_ms);
}

static void print_json(FILE *o, const char *dir, const struct shmwal_stat *st,
		       const struct shmwal_retention *pol)
{
	fputs("{\"wal\":", o);
	json_str(o, dir);
	fprintf(o,
		",\"time_ns\":%" PRIu64 ",\"partitions\":%u,\"backend\":\"%s\",\"sync\":\"%s\","
		"\"ring_bytes\":%" PRIu64 ",\"segment_bytes\":%" PRIu64 ",\"shm_present\":%s,"
		"\"flusher\":{\"running\":%s,\"pid\":%u,\"start_ns\":%" PRIu64
		",\"heartbeat_age_ns\":%" PRIu64 ",\"persistence\":\"%s\"},"
		"\"producers\":%u,\"appends\":%" PRIu64 ",\"appends_per_s\":%" PRIu64
		",\"ring_full_waits\":%" PRIu64 ",\"partition\":[",
		real_now_ns(), st->cfg.partitions,
		st->cfg.backend == SHMWAL_BACKEND_PMEM ? "pmem" : "file", sync_str(st->cfg.sync),
		st->cfg.ring_bytes, st->cfg.segment_bytes, st->shm_present ? "true" : "false",
		st->flusher_running ? "true" : "false", st->flusher_pid, st->flusher_start_ns,
		st->heartbeat_age_ns, persistence_str(st->persistence), st->live_producers,
		st->appends, st->appends_per_s, st->ring_full_waits);
	for (uint32_t p = 0; p < st->cfg.partitions; p++) {
		const struct shmwal_partition_stat *ps = &st->part[p];

		fprintf(o,
			"%s{\"partition\":%u,\"tail\":%" PRIu64 ",\"written\":%" PRIu64
			",\"durable\":%" PRIu64 ",\"head\":%" PRIu64 ",\"segment_first\":%" PRIu64
			",\"oldest\":%" PRIu64 ",\"lag_bytes\":%" PRIu64 ",\"lag_records\":%" PRIu64
			",\"ring_used_bytes\":%" PRIu64 ",\"records\":%" PRIu64
			",\"records_durable\":%" PRIu64 ",\"bytes\":%" PRIu64
			",\"batches\":%" PRIu64 ",\"syncs\":%" PRIu64 ",\"sync_ns_total\":%" PRIu64
			",\"sync_ns_last\":%" PRIu64 ",\"sync_hist_us_lt_pow2\":[",
			p ? "," : "", p, ps->tail, ps->written, ps->durable, ps->head,
			ps->seg_first, ps->oldest, lag_bytes(ps), lag_records(ps), ring_used(ps),
			ps->records, ps->records_durable, ps->bytes, ps->batches, ps->syncs,
			ps->sync_ns_total, ps->sync_ns_last);
		for (unsigned b = 0; b < SHMWAL_SYNC_HIST_BUCKETS; b++)
			fprintf(o, "%s%" PRIu64, b ? "," : "", ps->sync_hist[b]);
		fprintf(o,
			"],\"aborted_claims\":%" PRIu64 ",\"padded_gaps\":%" PRIu64
			",\"stalls\":%" PRIu64 ",\"append_bytes_per_s\":%" PRIu64
			",\"records_per_s\":%" PRIu64 ",\"bytes_per_s\":%" PRIu64
			",\"segments\":%" PRIu64 ",\"segment_bytes\":%" PRIu64
			",\"retention_removed_segments\":%" PRIu64
			",\"retention_removed_bytes\":%" PRIu64 ",\"retention\":",
			ps->aborted_claims, ps->padded_gaps, ps->stalls, ps->append_bytes_per_s,
			ps->records_per_s, ps->bytes_per_s, ps->segments, ps->segment_bytes,
			ps->retention_segments, ps->retention_bytes);
		json_policy(o, &pol[p]);
		fputc('}', o);
	}
	fputs("]}\n", o);
}

/* ---- Prometheus text exposition format --------------------------------------------------- */

struct prom {
	FILE *o;
	const char *dir;
};

/* A label value: backslash, double quote and newline escaped. */
static void prom_label(FILE *o, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(o, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", o);
		else
			fputc(*s, o);
	}
}

static void prom_head(struct prom *pr, const char *name, const char *type, const char *help)
{
	fprintf(pr->o, "# HELP shmwal_%s %s\n# TYPE shmwal_%s %s\n", name, help, name, type);
}

/* One sample; part < 0: the WAL's own. `extra`: more labels ("le=\"0.001\""), or NULL. */
static void prom_val(struct prom *pr, const char *name, int64_t part, const char *extra, double v)
{
	fprintf(pr->o, "shmwal_%s{wal=\"", name);
	prom_label(pr->o, pr->dir);
	fputc('"', pr->o);
	if (part >= 0)
		fprintf(pr->o, ",partition=\"%" PRId64 "\"", part);
	if (extra)
		fprintf(pr->o, ",%s", extra);
	/* integers exactly (counters, LSNs up to 2^53), the rest with 9 digits */
	if (v == (double)(uint64_t)v && v < 9007199254740992.0)
		fprintf(pr->o, "} %" PRIu64 "\n", (uint64_t)v);
	else
		fprintf(pr->o, "} %.9g\n", v);
}

#define PART_METRIC(name, type, help, expr)                                                        \
	do {                                                                                       \
		prom_head(&pr, name, type, help);                                                  \
		for (uint32_t p = 0; p < st->cfg.partitions; p++) {                                \
			const struct shmwal_partition_stat *ps = &st->part[p];                     \
			prom_val(&pr, name, p, NULL, (double)(expr));                              \
		}                                                                                  \
	} while (0)

static void print_prometheus(FILE *o, const char *dir, const struct shmwal_stat *st)
{
	struct prom pr = {o, dir};

	prom_head(&pr, "flusher_running", "gauge", "1 while a flusher holds the WAL's lock.");
	prom_val(&pr, "flusher_running", -1, NULL, st->flusher_running && st->shm_present);
	prom_head(&pr, "flusher_start_time_seconds", "gauge",
		  "When the running flusher started (Unix time).");
	prom_val(&pr, "flusher_start_time_seconds", -1, NULL, (double)st->flusher_start_ns / 1e9);
	prom_head(&pr, "flusher_heartbeat_age_seconds", "gauge",
		  "Time since the flusher's last loop.");
	prom_val(&pr, "flusher_heartbeat_age_seconds", -1, NULL,
		 (double)st->heartbeat_age_ns / 1e9);
	prom_head(&pr, "producers", "gauge", "Attached producer handles.");
	prom_val(&pr, "producers", -1, NULL, st->live_producers);
	prom_head(&pr, "appends_total", "counter", "Records appended through every handle.");
	prom_val(&pr, "appends_total", -1, NULL, (double)st->appends);
	prom_head(&pr, "ring_full_waits_total", "counter", "Appends that waited for ring space.");
	prom_val(&pr, "ring_full_waits_total", -1, NULL, (double)st->ring_full_waits);
	PART_METRIC("tail_lsn", "gauge", "The next LSN producers claim.", ps->tail);
	PART_METRIC("written_lsn", "gauge", "Written to the segment files up to here.",
		    ps->written);
	PART_METRIC("durable_lsn", "gauge", "Durable up to here.", ps->durable);
	PART_METRIC("oldest_lsn", "gauge", "First LSN of the oldest retained segment.", ps->oldest);
	PART_METRIC("lag_bytes", "gauge", "Claimed but not yet durable (tail - durable).",
		    lag_bytes(ps));
	PART_METRIC("ring_fill_ratio", "gauge", "Share of the ring in use (tail - head).",
		    (double)ring_used(ps) / (double)st->cfg.ring_bytes);
	PART_METRIC("records_written_total", "counter", "Records written by the flusher.",
		    ps->records);
	PART_METRIC("records_durable_total", "counter", "Records made durable.",
		    ps->records_durable);
	PART_METRIC("bytes_written_total", "counter", "Bytes written by the flusher.", ps->bytes);
	PART_METRIC("batches_total", "counter", "Batches written.", ps->batches);
	PART_METRIC("aborted_claims_total", "counter",
		    "Claims of dead producers the flusher aborted.", ps->aborted_claims);
	PART_METRIC("padded_gaps_total", "counter", "Gaps of dead producers padded.",
		    ps->padded_gaps);
	PART_METRIC("stalls_total", "counter", "Claims stuck past stall_timeout_ms.", ps->stalls);
	PART_METRIC("segments", "gauge", "Segment files.", ps->segments);
	PART_METRIC("segment_bytes", "gauge", "Size of the segment files.", ps->segment_bytes);
	PART_METRIC("retention_removed_segments_total", "counter",
		    "Segments removed by the retention policy.", ps->retention_segments);
	PART_METRIC("retention_removed_bytes_total", "counter",
		    "Bytes removed by the retention policy.", ps->retention_bytes);
	prom_head(&pr, "sync_seconds", "histogram", "Time each sync (fdatasync, drain) took.");
	for (uint32_t p = 0; p < st->cfg.partitions; p++) {
		const struct shmwal_partition_stat *ps = &st->part[p];
		uint64_t cum = 0;
		char le[48];

		for (unsigned b = 0; b + 1 < SHMWAL_SYNC_HIST_BUCKETS; b++) {
			cum += ps->sync_hist[b];
			snprintf(le, sizeof(le), "le=\"%.6f\"", (double)(1ull << b) / 1e6);
			prom_val(&pr, "sync_seconds_bucket", p, le, (double)cum);
		}
		prom_val(&pr, "sync_seconds_bucket", p, "le=\"+Inf\"", (double)ps->syncs);
		prom_val(&pr, "sync_seconds_sum", p, NULL, (double)ps->sync_ns_total / 1e9);
		prom_val(&pr, "sync_seconds_count", p, NULL, (double)ps->syncs);
	}
}

/* ---- the command ------------------------------------------------------------------------- */

static const char stat_help[] =
    "usage: shmwal stat DIR [--json | --prometheus] [--watch [SECONDS]] [--output FILE]\n"
    "Prints the WAL's live state and metrics, read from the shared memory without locks:\n"
    "how the running flusher makes records durable (fdatasync; pmem drain on persistent\n"
    "memory; pmem msync without DAX), its pid, uptime and heartbeat, where timestamps come\n"
    "from, attached producers, appends and their rate, appends that waited for ring space;\n"
    "per partition the tail, written, durable and head LSNs, lag in bytes and records, ring\n"
    "fill, append and write rates (over the flusher's last second), records, bytes, syncs and\n"
    "their latency (mean, last, percentiles from a histogram), aborted claims, padded gaps\n"
    "and stalls, and the segment files (count, bytes, oldest LSN) with the retention policy\n"
    "and what it removed.\n"
    "  --json            one JSON object (with --watch: one per line)\n"
    "  --prometheus      the Prometheus text exposition format (node_exporter's textfile\n"
    "                    collector: use --output)\n"
    "  --watch [S]       refresh every S seconds (default 1; fractions allowed) until\n"
    "                    interrupted; on a terminal the text is redrawn in place\n"
    "  --output FILE     write to FILE (replaced atomically each time) instead of stdout\n"
    "Exit status 0; 1 when the WAL cannot be read; 2 bad usage.\n";

enum fmt { FMT_TEXT, FMT_JSON, FMT_PROM };

static volatile sig_atomic_t stat_stop;

static void on_stop(int sig)
{
	(void)sig;
	stat_stop = 1;
}

static int snapshot(const char *dir, struct shmwal_stat *st, struct shmwal_retention *pol)
{
	int rc = shmwal_stat(dir, st);

	for (uint32_t p = 0; rc == 0 && p < st->cfg.partitions; p++)
		if (shmwal_retention_get(dir, p, &pol[p]) < 0)
			memset(&pol[p], 0, sizeof(pol[p])); /* damaged: stat still works */
	return rc;
}

static void emit(FILE *o, enum fmt fmt, const char *dir, const struct shmwal_stat *st,
		 const struct shmwal_retention *pol)
{
	if (fmt == FMT_JSON)
		print_json(o, dir, st, pol);
	else if (fmt == FMT_PROM)
		print_prometheus(o, dir, st);
	else
		print_text(o, dir, st, pol);
}

/* Writes one snapshot to `path` through a temporary file renamed over it. 0 or -errno. */
static int emit_file(const char *path, enum fmt fmt, const char *dir, const struct shmwal_stat *st,
		     const struct shmwal_retention *pol)
{
	char tmp[4200];
	FILE *f;
	int rc = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	emit(f, fmt, dir, st, pol);
	if (fflush(f) != 0 || ferror(f))
		rc = -(errno ? errno : EIO);
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	return rc;
}

int cmd_stat(int argc, char **argv)
{
	const char *dir = NULL, *out = NULL, *v;
	enum fmt fmt = FMT_TEXT;
	double every = 0;
	struct shmwal_stat *st;
	struct shmwal_retention *pol;
	int rc = 0, redraw;

	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(stat_help, stdout);
			return 0;
		} else if (!strcmp(argv[i], "--json") && fmt == FMT_TEXT) {
			fmt = FMT_JSON;
		} else if (!strcmp(argv[i], "--prometheus") && fmt == FMT_TEXT) {
			fmt = FMT_PROM;
		} else if (!strcmp(argv[i], "--watch")) {
			char *end;

			every = 1;
			if (i + 1 < argc && argv[i + 1][0] != '-' && dir) {
				every = strtod(argv[i + 1], &end);
				if (*end || !(every >= 0.01 && every <= 86400))
					return usage_error("stat", argv[i + 1]);
				i++;
			}
		} else if (!strncmp(argv[i], "--watch=", 8)) {
			char *end;

			every = strtod(argv[i] + 8, &end);
			if (*end || !(every >= 0.01 && every <= 86400))
				return usage_error("stat", argv[i]);
		} else if ((v = optval(argc, argv, &i, "--output"))) {
			out = v;
		} else if (argv[i][0] == '-' || dir) {
			return usage_error("stat", argv[i]);
		} else {
			dir = argv[i];
		}
	}
	if (!dir) {
		fputs(stat_help, stderr);
		return EXIT_USAGE;
	}
	st = malloc(sizeof(*st));
	pol = calloc(SHMWAL_MAX_PARTITIONS, sizeof(*pol));
	if (!st || !pol) {
		free(st);
		free(pol);
		return fail("stat", -ENOMEM);
	}
	if (every > 0) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_stop;
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}
	redraw = every > 0 && !out && fmt == FMT_TEXT && isatty(STDOUT_FILENO);
	do {
		rc = snapshot(dir, st, pol);
		if (rc < 0) {
			rc = fail("stat", rc);
			break;
		}
		if (out) {
			rc = emit_file(out, fmt, dir, st, pol);
			if (rc < 0) {
				die_msg("stat: %s: %s", out, strerror(-rc));
				rc = 1;
				break;
			}
		} else {
			if (redraw)
				fputs("\033[H\033[2J", stdout);
			emit(stdout, fmt, dir, st, pol);
			if (every > 0 && fmt == FMT_TEXT && !redraw)
				fputc('\n', stdout);
			fflush(stdout);
		}
		if (every > 0 && !stat_stop) {
			struct timespec ts = {(time_t)every,
					      (long)((every - (double)(time_t)every) * 1e9)};

			nanosleep(&ts, NULL); /* a signal cuts it short, then the loop ends */
		}
	} while (every > 0 && !stat_stop);
	free(st);
	free(pol);
	return rc;
}

/* ---- retention --------------------------------------------------------------------------- */

static const char retention_help[] =
    "usage: shmwal retention DIR [--partition P] [--max-segments N] [--max-bytes SIZE]\n"
    "                            [--max-age DURATION] [--rotate-age DURATION] [--clear]\n"
    "Shows or sets what the flusher keeps of the log (a running flusher applies a change\n"
    "within about 100 ms). Without a setting, prints the default and each partition's policy.\n"
    "With settings, changes those fields of the WAL's default policy, or with --partition of\n"
    "that partition's own policy (created from the default the first time; a partition with\n"
    "a policy of its own no longer follows the default). 0 means no limit.\n"
    "  --max-segments N       keep at most N segment files (the one being written counts)\n"
    "  --max-bytes SIZE       keep at most SIZE bytes of segment files\n"
    "  --max-age DURATION     remove sealed segments last written longer ago than this\n"
    "  --rotate-age DURATION  seal the segment being written once its first record is this\n"
    "                         old, even if it is not full\n"
    "  --clear                remove the policy (the partition's own: it follows the default)\n"
    "Only whole sealed segments below the durable LSN are ever removed, oldest first.\n"
    "SIZE accepts K, M and G; DURATION is a number with ms, s, m, h or d (0 alone is fine).\n"
    "Exit status 0; 1 when the WAL or its policy cannot be read or written; 2 bad usage.\n";

/* "500ms", "30s", "15m", "12h", "7d", "0". 0 or -1. */
static int parse_duration_ms(const char *s, uint64_t *out)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-' || *s == '+')
		return -1;
	if (!*end && v == 0) {
		*out = 0;
		return 0;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(end, units[i].unit)) {
			if (v > UINT64_MAX / units[i].ms)
				return -1;
			*out = v * units[i].ms;
			return 0;
		}
	return -1;
}

static void print_policy_line(const char *scope, const struct shmwal_retention *r, const char *note)
{
	char a[32], b[32], c[32];

	printf("%-8s max_segments %" PRIu64 ", max_bytes %s, max_age %s, rotate_age %s%s\n", scope,
	       r->max_segments,
	       r->max_bytes ? human_bytes(a, sizeof(a), (double)r->max_bytes) : "0",
	       r->max_age_ms ? human_ms(b, sizeof(b), r->max_age_ms) : "0",
	       r->rotate_age_ms ? human_ms(c, sizeof(c), r->rotate_age_ms) : "0", note);
}

static int show_policy(const char *dir)
{
	struct shmwal_retention def, r;
	struct shmwal_config cfg;
	int rc;

	if ((rc = shmwal_config_load(dir, &cfg)) < 0 ||
	    (rc = shmwal_retention_get(dir, SHMWAL_ALL_PARTITIONS, &def)) < 0)
		return fail("retention", rc);
	print_policy_line("default", &def, "");
	for (uint32_t p = 0; p < cfg.partitions; p++) {
		char scope[16];

		if ((rc = shmwal_retention_get(dir, p, &r)) < 0)
			return fail("retention", rc);
		snprintf(scope, sizeof(scope), "p%u", p);
		print_policy_line(scope, &r, memcmp(&r, &def, sizeof(r)) ? " (its own)" : "");
	}
	return 0;
}

int cmd_retention(int argc, char **argv)
{
	const char *dir = NULL, *v;
	uint32_t part = SHMWAL_ALL_PARTITIONS;
	struct shmwal_retention r;
	uint64_t val[4];
	int set[4] = {0, 0, 0, 0}, clear = 0, any = 0, rc;

	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(retention_help, stdout);
			return 0;
		} else if ((v = optval(argc, argv, &i, "--partition"))) {
			if (parse_u32(v, &part) < 0 || part == SHMWAL_ALL_PARTITIONS)
				return usage_error("retention", v);
		} else if ((v = optval(argc, argv, &i, "--max-segments"))) {
			if (parse_size(v, &val[0]) < 0)
				return usage_error("retention", v);
			set[0] = any = 1;
		} else if ((v = optval(argc, argv, &i, "--max-bytes"))) {
			if (parse_size(v, &val[1]) < 0)
				return usage_error("retention", v);
			set[1] = any = 1;
		} else if ((v = optval(argc, argv, &i, "--max-age"))) {
			if (parse_duration_ms(v, &val[2]) < 0)
				return usage_error("retention", v);
			set[2] = any = 1;
		} else if ((v = optval(argc, argv, &i, "--rotate-age"))) {
			if (parse_duration_ms(v, &val[3]) < 0)
				return usage_error("retention", v);
			set[3] = any = 1;
		} else if (!strcmp(argv[i], "--clear")) {
			clear = 1;
		} else if (argv[i][0] == '-' || dir) {
			return usage_error("retention", argv[i]);
		} else {
			dir = argv[i];
		}
	}
	if (!dir || (clear && any)) {
		if (clear && any)
			die_msg("retention: --clear takes no other setting");
		fputs(retention_help, stderr);
		return EXIT_USAGE;
	}
	if (clear) {
		rc = shmwal_retention_set(dir, part, NULL);
		return rc < 0 ? fail("retention", rc) : show_policy(dir);
	}
	if (!any)
		return show_policy(dir);
	/* the scope's policy as it stands (a partition without its own starts from the default) */
	rc = shmwal_retention_get(dir, part, &r);
	if (rc < 0)
		return fail("retention", rc);
	if (set[0])
		r.max_segments = val[0];
	if (set[1])
		r.max_bytes = val[1];
	if (set[2])
		r.max_age_ms = val[2];
	if (set[3])
		r.rotate_age_ms = val[3];
	rc = shmwal_retention_set(dir, part, &r);
	return rc < 0 ? fail("retention", rc) : show_policy(dir);
}
