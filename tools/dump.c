/* SPDX-License-Identifier: MIT */
/*
 * dump.c - `shmwal dump`: every durable record, one line each, as text for people or as JSON
 * lines for programs.
 *
 * JSON: one object per line, always the same members in the same order:
 *   {"partition":0,"lsn":96,"next_lsn":160,"type":1,"type_name":"PUT",
 *    "timestamp_ns":1795335400123456789,"timestamp":"2026-11-22T08:16:40.123456789Z",
 *    "key_len":2,"key_encoding":"utf8","key":"k1",
 *    "value_len":5,"value_encoding":"hex","value":"00ff0a2241"}
 * A key or value that is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing past U+10FFFF) is a JSON string, with ", \ and every control character escaped
 * (RFC 8259), so that decoding it gives back its bytes exactly, NUL included; anything else
 * is lower-case hex, two digits per byte. key_encoding and value_encoding say which ("utf8"
 * or "hex"); key_len and value_len are in bytes. Numbers are unsigned decimal integers
 * (LSNs and timestamps can exceed 2^53: parse them as 64-bit integers, not doubles).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "shmwal.h"
#include "cli.h"

static const char dump_help[] =
    "usage: shmwal dump DIR [--partition P] [--from LSN] [--to LSN] [--json]\n"
    "Prints every durable record of every partition (or of one), in LSN order per partition,\n"
    "one line each:\n"
    "  p0 lsn=96 type=PUT klen=2 vlen=5 time=2026-11-22T08:16:40.123456789Z key=\"k1\" "
    "value=\"hello\"\n"
    "with the key and value in quotes when they are printable ASCII without quotes or\n"
    "backslashes and as 0x<hex> otherwise, keys cut after 64 bytes and values after 48\n"
    "(marked \"...\"), and the time the append began (UTC).\n"
    "  --partition P   only this partition\n"
    "  --from LSN      start at this record (a record boundary; needs --partition when the\n"
    "                  WAL has several: LSNs are per partition); default: the oldest\n"
    "  --to LSN        stop before this LSN\n"
    "  --json          one JSON object per line instead, for programs, with keys and values\n"
    "                  whole: partition, lsn, next_lsn, type, type_name, timestamp_ns,\n"
    "                  timestamp (RFC 3339, UTC), key_len, key_encoding, key, value_len,\n"
    "                  value_encoding, value. A key or value is a JSON string when it is\n"
    "                  valid UTF-8 (control characters escaped) and hex otherwise; its\n"
    "                  *_encoding says which: \"utf8\" or \"hex\".\n"
    "LSNs are decimal, or hexadecimal after 0x. Exit status 0; 1 when a partition cannot be\n"
    "read to its end (a damaged record: the message names the file and offset; the other\n"
    "partitions are still dumped); 2 bad usage.\n";

/* 1 when b[0..n) is well-formed UTF-8. */
static int utf8_valid(const unsigned char *b, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = b[i], cp, min, len, k;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return 0; /* a continuation byte, 0xc0, 0xc1, 0xf5..0xff */
		}
		if (n - i < len)
			return 0;
		for (k = 1; k < len; k++) {
			if ((b[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (b[i + k] & 0x3fu);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

/* "NAME_len":n,"NAME_encoding":"...","NAME":... */
static void json_bytes(FILE *f, const char *name, const void *p, uint32_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *b = p;
	int utf8 = utf8_valid(b, len);

	fprintf(f, "\"%s_len\":%" PRIu32 ",\"%s_encoding\":\"%s\",\"%s\":\"", name, len, name,
		utf8 ? "utf8" : "hex", name);
	for (uint32_t i = 0; i < len; i++) {
		unsigned char c = b[i];

		if (!utf8) {
			putc(hex[c >> 4], f);
			putc(hex[c & 15], f);
			continue;
		}
		switch (c) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\b':
			fputs("\\b", f);
			break;
		case '\f':
			fputs("\\f", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (c < 0x20)
				fprintf(f, "\\u%04x", c);
			else
				putc(c, f);
		}
	}
	putc('"', f);
}

static void print_json(const struct shmwal_record *rec)
{
	char tb[16], ts[48];

	printf("{\"partition\":%" PRIu32 ",\"lsn\":%" PRIu64 ",\"next_lsn\":%" PRIu64
	       ",\"type\":%u,\"type_name\":\"%s\",\"timestamp_ns\":%" PRIu64
	       ",\"timestamp\":\"%s\",",
	       rec->partition, rec->lsn, rec->next_lsn, rec->type, type_name(rec->type, tb),
	       rec->timestamp_ns, time_rfc3339(rec->timestamp_ns, ts, sizeof(ts)));
	json_bytes(stdout, "key", rec->key, rec->key_len);
	putchar(',');
	json_bytes(stdout, "value", rec->value, rec->value_len);
	fputs("}\n", stdout);
}

static void print_text(const struct shmwal_record *rec)
{
	char tb[16], ts[48];

	printf("p%" PRIu32 " lsn=%" PRIu64 " type=%s klen=%" PRIu32 " vlen=%" PRIu32
	       " time=%s key=",
	       rec->partition, rec->lsn, type_name(rec->type, tb), rec->key_len, rec->value_len,
	       time_rfc3339(rec->timestamp_ns, ts, sizeof(ts)));
	print_bytes(stdout, rec->key, rec->key_len, 64);
	fputs(" value=", stdout);
	print_bytes(stdout, rec->value, rec->value_len, 48);
	putchar('\n');
}

/* Dumps partition `part` from `from` up to `to`. 0, or 1 after saying why it stopped. */
static int dump_partition(const char *dir, uint32_t part, uint64_t from, uint64_t to, int json)
{
	struct shmwal_reader *r;
	struct shmwal_record rec;
	char what[64];
	int rc;

	snprintf(what, sizeof(what), "dump: partition %" PRIu32, part);
	rc = shmwal_reader_open(dir, part, from, &r);
	if (rc < 0)
		return fail(what, rc);
	while ((rc = shmwal_reader_next(r, &rec, 0)) == 0 && rec.lsn < to) {
		if (json)
			print_json(&rec);
		else
			print_text(&rec);
	}
	shmwal_reader_close(r);
	if (rc < 0 && rc != -ETIMEDOUT) {
		fflush(stdout); /* what came before the damage, before the message */
		return fail(what, rc);
	}
	return 0;
}

int cmd_dump(int argc, char **argv)
{
	const char *dir = NULL, *v;
	uint32_t part = 0, p0 = 0, p1;
	uint64_t from = SHMWAL_LSN_OLDEST, to = UINT64_MAX;
	int all = 1, json = 0, status = 0, i, rc;
	struct shmwal_config cfg;

	for (i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(dump_help, stdout);
			return 0;
		} else if ((v = optval(argc, argv, &i, "--partition"))) {
			if (parse_u32(v, &part) < 0)
				return usage_error("dump", v);
			all = 0;
		} else if ((v = optval(argc, argv, &i, "--from"))) {
			if (parse_lsn(v, &from) < 0)
				return usage_error("dump", v);
		} else if ((v = optval(argc, argv, &i, "--to"))) {
			if (parse_num(v, &to) < 0)
				return usage_error("dump", v);
		} else if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else if (argv[i][0] == '-' || dir) {
			return usage_error("dump", argv[i]);
		} else {
			dir = argv[i];
		}
	}
	if (!dir) {
		fputs(dump_help, stderr);
		return EXIT_USAGE;
	}
	rc = shmwal_config_load(dir, &cfg);
	if (rc < 0)
		return fail("dump", rc);
	if (all && cfg.partitions > 1 && from != SHMWAL_LSN_OLDEST && from != SHMWAL_LSN_END) {
		die_msg("dump: --from LSN needs --partition: LSNs are per partition, and %s has %u "
			"(see `shmwal dump --help`)",
			dir, cfg.partitions);
		return EXIT_USAGE;
	}
	if (all) {
		p1 = cfg.partitions;
	} else if (part >= cfg.partitions) {
		die_msg("dump: partition %" PRIu32 " out of range (%s has %u)", part, dir,
			cfg.partitions);
		return 1;
	} else {
		p0 = part;
		p1 = part + 1;
	}
	for (part = p0; part < p1; part++)
		status |= dump_partition(dir, part, from, to, json);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		die_msg("dump: writing standard output: %s", strerror(errno));
		return 1;
	}
	return status;
}
