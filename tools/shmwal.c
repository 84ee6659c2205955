/* SPDX-License-Identifier: MIT */
/*
 * shmwal.c - the shmwal command: main, what the commands share, and create, flusher, append,
 * tail (dump.c: dump; check.c: verify, repair, truncate; stat.c: stat, retention).
 * Built only on include/shmwal.h and include/shmwal_format.h.
 *
 * Exit status: 0 success; 1 failure (the message says why; for verify: damage found);
 * 2 bad usage.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmwal.h"
#include "shmwal_format.h"
#include "cli.h"

static const char *prog = "shmwal";

void die_msg(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int fail(const char *what, int rc)
{
	const char *d = shmwal_last_error();

	die_msg("%s: %s", what, d && *d ? d : strerror(-rc));
	return 1;
}

/* Parses "123", "64K", "4M", "1G" (binary units). */
int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return -1;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end)
		return -1;
	*out = v;
	return 0;
}

int parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;

	if (parse_size(s, &v) < 0 || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int parse_num(const char *s, uint64_t *out)
{
	int hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
	unsigned long long v;
	char *end;

	if (!(hex ? isxdigit((unsigned char)s[2]) : isdigit((unsigned char)s[0])))
		return -1; /* no sign, no space, no empty string */
	errno = 0;
	v = strtoull(hex ? s + 2 : s, &end, hex ? 16 : 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

int parse_lsn(const char *s, uint64_t *out)
{
	if (strcmp(s, "oldest") == 0) {
		*out = SHMWAL_LSN_OLDEST;
		return 0;
	}
	if (strcmp(s, "end") == 0) {
		*out = SHMWAL_LSN_END;
		return 0;
	}
	return parse_num(s, out);
}

const char *optval(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);

	if (strncmp(argv[*i], name, n) != 0)
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n] == '\0' && *i + 1 < argc)
		return argv[++*i];
	return NULL;
}

int usage_error(const char *cmd, const char *arg)
{
	die_msg("%s: unexpected argument '%s' (see `shmwal %s --help`)", cmd, arg, cmd);
	return EXIT_USAGE;
}

int is_help(const char *a)
{
	return !strcmp(a, "-h") || !strcmp(a, "--help");
}

/*
 * For commands whose only argument is DIR: sets *dir and returns -1 to go on, or the exit
 * status to return now (0 after --help, EXIT_USAGE for anything else or no DIR).
 */
int dir_only_args(int argc, char **argv, const char *cmd, const char *help, const char **dir)
{
	*dir = NULL;
	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(help, stdout);
			return 0;
		}
		if (argv[i][0] == '-' || *dir)
			return usage_error(cmd, argv[i]);
		*dir = argv[i];
	}
	if (!*dir) {
		fputs(help, stderr);
		return EXIT_USAGE;
	}
	return -1;
}

/* ---- create ------------------------------------------------------------------------------ */

static const char create_help[] =
	"usage: shmwal create DIR [options]\n"
	"Creates a WAL directory (idempotent for an equal configuration).\n"
	"  --partitions N          partitions (1..256, default 1)\n"
	"  --ring-bytes SIZE       ring per partition, a power of two (64K..1G, default 4M)\n"
	"  --segment-bytes SIZE    rotate segment files past this size (default 64M)\n"
	"  --max-key SIZE          largest key (default 1024, at most 65535)\n"
	"  --max-value SIZE        largest value (default 64K)\n"
	"  --sync MODE             none | interval | always (default always)\n"
	"  --sync-interval-us N    interval mode: sync at least every N us (default 1000)\n"
	"  --sync-interval-bytes S interval mode: or after S bytes\n"
	"  --mode OCTAL            permissions of shared memory and files (default 0600)\n"
	"  --stall-timeout-ms N    log a claim stuck this long (default 10000)\n"
	"  --backend KIND          file (default): pwrite + fdatasync; pmem: fixed-size segments\n"
	"                          mapped with libpmem, one drain per batch (put DIR on a DAX\n"
	"                          filesystem; elsewhere it falls back to msync)\n"
	"SIZE accepts K, M and G suffixes.\n";

static int cmd_create(int argc, char **argv)
{
	struct shmwal_config c;
	const char *dir = NULL, *v;
	int i, rc;

	shmwal_config_default(&c);
	for (i = 1; i < argc; i++) {
		uint64_t x;

		if (is_help(argv[i])) {
			fputs(create_help, stdout);
			return 0;
		}
		if ((v = optval(argc, argv, &i, "--partitions"))) {
			if (parse_u32(v, &c.partitions) < 0)
				return usage_error("create", v);
		} else if ((v = optval(argc, argv, &i, "--ring-bytes"))) {
			if (parse_size(v, &c.ring_bytes) < 0)
				return usage_error("create", v);
		} else if ((v = optval(argc, argv, &i, "--segment-bytes"))) {
			if (parse_size(v, &c.segment_bytes) < 0)
				return usage_error("create", v);
		} else if ((v = optval(argc, argv, &i, "--max-key"))) {
			if (parse_u32(v, &c.max_key) < 0)
				return usage_error("create", v);
		} else if ((v = optval(argc, argv, &i, "--max-value"))) {
			if (parse_u32(v, &c.max_value) < 0)
				return usage_error("create", v);
		} else if ((v = optval(argc, argv, &i, "--sync-interval-us"))) {
			if (parse_u32(v, &c.sync_interval_us) < 0)
				return usage_error("create", v);
		} else if ((v = optval(argc, argv, &i, "--sync-interval-bytes"))) {
			if (parse_size(v, &c.sync_interval_bytes) < 0)
				return usage_error("create", v);
		} else if ((v = optval(argc, argv, &i, "--sync"))) {
			if (!strcmp(v, "none"))
				c.sync = SHMWAL_SYNC_NONE;
			else if (!strcmp(v, "interval"))
				c.sync = SHMWAL_SYNC_INTERVAL;
			else if (!strcmp(v, "always"))
				c.sync = SHMWAL_SYNC_ALWAYS;
			else
				return usage_error("create", v);
		} else if ((v = optval(argc, argv, &i, "--backend"))) {
			if (!strcmp(v, "file"))
				c.backend = SHMWAL_BACKEND_FILE;
			else if (!strcmp(v, "pmem"))
				c.backend = SHMWAL_BACKEND_PMEM;
			else
				return usage_error("create", v);
		} else if ((v = optval(argc, argv, &i, "--mode"))) {
			char *end;

			x = strtoull(v, &end, 8);
			if (*end || end == v || x > 07777)
				return usage_error("create", v);
			c.mode = (uint32_t)x;
		} else if ((v = optval(argc, argv, &i, "--stall-timeout-ms"))) {
			if (parse_u32(v, &c.stall_timeout_ms) < 0)
				return usage_error("create", v);
		} else if (argv[i][0] == '-' || dir) {
			return usage_error("create", argv[i]);
		} else {
			dir = argv[i];
		}
	}
	if (!dir) {
		fputs(create_help, stderr);
		return EXIT_USAGE;
	}
	rc = shmwal_create(dir, &c);
	if (rc < 0)
		return fail("create", rc);
	return 0;
}

/* ---- flusher ----------------------------------------------------------------------------- */

static const char flusher_help[] =
    "usage: shmwal flusher DIR [--repair] [--exit-when-idle] [--quiet]\n"
    "Runs the WAL's flusher in the foreground until SIGTERM or SIGINT, which drain the rings,\n"
    "sync and exit 0. Exactly one flusher runs per WAL; a second one exits with status 1.\n"
    "  --repair          when start-up finds damage (a sealed segment with a bad header, a\n"
    "                    wrong size or a gap), cut the log there instead of refusing to\n"
    "                    start, moving that segment and later ones to DIR/quarantine (never\n"
    "                    deleting them; their LSNs are used again by new records). Start-up\n"
    "                    does not read sealed segments' frames: for damage in them, see\n"
    "                    `shmwal verify` and `shmwal repair`\n"
    "  --exit-when-idle  exit once everything is durable and no producer is attached\n"
    "  --quiet           log only warnings and errors\n";

static int stop_flag;
static int log_quiet;

static void on_signal(int sig)
{
	(void)sig;
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELAXED);
}

static void log_stderr(void *ctx, enum shmwal_log_level lvl, const char *msg)
{
	static const char *names[] = { "error", "warning", "info", "debug" };
	struct timespec ts;
	struct tm tm;
	char when[32];

	(void)ctx;
	if (log_quiet && lvl > SHMWAL_LOG_WARN)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ld shmwal flusher[%d] %s: %s\n", when, ts.tv_nsec / 1000000,
		(int)getpid(), names[lvl], msg);
}

static int cmd_flusher(int argc, char **argv)
{
	struct shmwal_flusher_options o = { .log = log_stderr };
	struct sigaction sa;
	const char *dir = NULL;
	int i, rc;

	for (i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(flusher_help, stdout);
			return 0;
		} else if (!strcmp(argv[i], "--repair")) {
			o.repair = 1;
		} else if (!strcmp(argv[i], "--exit-when-idle")) {
			o.exit_when_idle = 1;
		} else if (!strcmp(argv[i], "--quiet")) {
			log_quiet = 1;
		} else if (argv[i][0] == '-' || dir) {
			return usage_error("flusher", argv[i]);
		} else {
			dir = argv[i];
		}
	}
	if (!dir) {
		fputs(flusher_help, stderr);
		return EXIT_USAGE;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	rc = shmwal_flusher_run(dir, &o, &stop_flag);
	if (rc < 0)
		return fail("flusher", rc);
	return 0;
}

/* ---- append ------------------------------------------------------------------------------ */

static const char append_help[] =
    "usage: shmwal append DIR [--partition P] [--type T] [--key-sep C] [--no-wait]\n"
    "Appends one record per line of standard input (without the newline), then waits until\n"
    "the last one is durable and prints how many were appended and the LSN range.\n"
    "  --partition P   partition (default 0)\n"
    "  --type T        record type: put, delete or a number 16..65535 (default put)\n"
    "  --key-sep C     split each line at the first C: key before, value after (a line\n"
    "                  without C is a value without a key)\n"
    "  --no-wait       do not wait for durability\n"
    "Exit status 0; 1 when the WAL cannot be opened (is the flusher running?) or a line\n"
    "cannot be appended (longer than the WAL's max-key or max-value, ...): the message names\n"
    "the line, and the lines before it were appended (and waited for); 2 bad usage.\n";

/* Waits (unless !wait) for what was appended and says what it was. 0, or 1 if the wait
 * failed. */
static int append_done(struct shmwal *w, uint32_t part, int wait, uint64_t count, uint64_t first,
		       uint64_t last)
{
	int rc = 0;

	if (count && wait)
		rc = shmwal_wait_durable(w, part, last, 60 * SHMWAL_NS_PER_SEC);
	if (!count)
		printf("appended 0 records\n");
	else
		printf("appended %" PRIu64 " records to partition %u, LSN %" PRIu64 "..%" PRIu64
		       "%s\n",
		       count, part, first, last, wait && rc == 0 ? ", durable" : "");
	fflush(stdout);
	return rc < 0 ? fail("append: waiting until they are durable", rc) : 0;
}

static int cmd_append(int argc, char **argv)
{
	const char *dir = NULL, *v;
	uint32_t part = 0, type = SHMWAL_TYPE_PUT;
	int sep = -1, wait = 1, i, rc, status;
	struct shmwal *w;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	uint64_t lsn = 0, first = UINT64_MAX, count = 0;

	for (i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(append_help, stdout);
			return 0;
		} else if ((v = optval(argc, argv, &i, "--partition"))) {
			if (parse_u32(v, &part) < 0)
				return usage_error("append", v);
		} else if ((v = optval(argc, argv, &i, "--type"))) {
			if (!strcmp(v, "put"))
				type = SHMWAL_TYPE_PUT;
			else if (!strcmp(v, "delete"))
				type = SHMWAL_TYPE_DELETE;
			else if (parse_u32(v, &type) < 0 || type < SHMWAL_TYPE_USER_MIN ||
				 type > SHMWAL_TYPE_MAX)
				return usage_error("append", v);
		} else if ((v = optval(argc, argv, &i, "--key-sep"))) {
			if (strlen(v) != 1)
				return usage_error("append", v);
			sep = (unsigned char)v[0];
		} else if (!strcmp(argv[i], "--no-wait")) {
			wait = 0;
		} else if (argv[i][0] == '-' || dir) {
			return usage_error("append", argv[i]);
		} else {
			dir = argv[i];
		}
	}
	if (!dir) {
		fputs(append_help, stderr);
		return EXIT_USAGE;
	}
	rc = shmwal_open(dir, &w);
	if (rc < 0)
		return fail("append", rc);
	while ((n = getline(&line, &cap, stdin)) >= 0) {
		char *key = NULL, *val = line;
		size_t klen = 0, vlen;
		uint64_t at;

		if (n && line[n - 1] == '\n')
			line[--n] = '\0';
		vlen = (size_t)n;
		if (sep >= 0) {
			char *s = memchr(line, sep, (size_t)n);

			if (s) {
				key = line;
				klen = (size_t)(s - line);
				val = s + 1;
				vlen = (size_t)n - klen - 1;
			}
		}
		if (klen > UINT32_MAX || vlen > UINT32_MAX)
			rc = -EMSGSIZE; /* not even a length the library takes */
		else
			rc = shmwal_append(w, part, (uint16_t)type, key, (uint32_t)klen, val,
					   (uint32_t)vlen, &at);
		if (rc < 0) {
			char what[96];

			snprintf(what, sizeof(what), "append: line %" PRIu64, count + 1);
			if (rc == -EMSGSIZE && (klen > UINT32_MAX || vlen > UINT32_MAX)) {
				die_msg("%s: longer than 4 GiB", what);
				status = 1;
			} else {
				status = fail(what, rc);
			}
			append_done(w, part, wait, count, first, lsn);
			free(line);
			shmwal_close(w);
			return status;
		}
		lsn = at;
		if (first == UINT64_MAX)
			first = lsn;
		count++;
	}
	free(line);
	status = 0;
	if (ferror(stdin)) {
		die_msg("append: reading standard input: %s", strerror(errno));
		status = 1;
	}
	if (append_done(w, part, wait, count, first, lsn))
		status = 1;
	shmwal_close(w);
	return status;
}

/* ---- tail, and what dump shares with it -------------------------------------------------- */

void print_bytes(FILE *f, const void *p, uint32_t len, uint32_t max)
{
	const unsigned char *b = p;
	uint32_t i, printable = 1, n = len < max ? len : max;

	for (i = 0; i < n; i++)
		if (b[i] < 0x20 || b[i] > 0x7e || b[i] == '"' || b[i] == '\\')
			printable = 0;
	if (printable) {
		fprintf(f, "\"%.*s\"", (int)n, (const char *)b);
	} else {
		fputs("0x", f);
		for (i = 0; i < n; i++)
			fprintf(f, "%02x", b[i]);
	}
	if (n < len)
		fputs("...", f);
}

const char *type_name(uint16_t t, char *buf)
{
	if (t == SHMWAL_TYPE_PUT)
		return "PUT";
	if (t == SHMWAL_TYPE_DELETE)
		return "DELETE";
	snprintf(buf, 16, "USER%u", t);
	return buf;
}

const char *time_rfc3339(uint64_t ns, char *buf, size_t len)
{
	time_t sec = (time_t)(ns / SHMWAL_NS_PER_SEC);
	struct tm tm;
	char day[32];

	if (!gmtime_r(&sec, &tm) || !strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm))
		snprintf(day, sizeof(day), "@%lld", (long long)sec);
	snprintf(buf, len, "%s.%09" PRIu64 "Z", day, (uint64_t)(ns % SHMWAL_NS_PER_SEC));
	return buf;
}

static const char tail_help[] =
    "usage: shmwal tail DIR [--partition P] [-f] [--from LSN|oldest|end]\n"
    "Prints the durable records of one partition in LSN order, one line each: LSN, type\n"
    "(PUT, DELETE or USER<n>), key and value, each in quotes when it is printable ASCII\n"
    "without quotes or backslashes and as 0x<hex> otherwise; keys are cut after 64 bytes and\n"
    "values after 256, marked \"...\" (`shmwal dump --json` prints them whole).\n"
    "  --partition P   partition (default 0)\n"
    "  -f, --follow    keep waiting for new records, until SIGINT or SIGTERM\n"
    "  --from LSN      start at this record's LSN, oldest (default) or end (only records\n"
    "                  appended from now on); decimal, or hexadecimal after 0x\n"
    "Exit status 0; 1 when the log cannot be read (a damaged record: the message names the\n"
    "file and offset; LSN not a record boundary; truncated away); 2 bad usage.\n";

static int cmd_tail(int argc, char **argv)
{
	const char *dir = NULL, *v;
	uint32_t part = 0;
	uint64_t from = SHMWAL_LSN_OLDEST;
	int follow = 0, i, rc;
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct sigaction sa;

	for (i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(tail_help, stdout);
			return 0;
		} else if ((v = optval(argc, argv, &i, "--partition"))) {
			if (parse_u32(v, &part) < 0)
				return usage_error("tail", v);
		} else if ((v = optval(argc, argv, &i, "--from"))) {
			if (parse_lsn(v, &from) < 0)
				return usage_error("tail", v);
		} else if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--follow")) {
			follow = 1;
		} else if (argv[i][0] == '-' || dir) {
			return usage_error("tail", argv[i]);
		} else {
			dir = argv[i];
		}
	}
	if (!dir) {
		fputs(tail_help, stderr);
		return EXIT_USAGE;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	rc = shmwal_reader_open(dir, part, from, &r);
	if (rc < 0)
		return fail("tail", rc);
	/* Following, the stop flag is looked at after every record, and at least every 0.2 s. */
	while (!follow || !__atomic_load_n(&stop_flag, __ATOMIC_RELAXED)) {
		char tb[16];

		rc = shmwal_reader_next(r, &rec, follow ? 200000000ull : 0);
		if (rc == -ETIMEDOUT) {
			if (!follow)
				break;
			continue;
		}
		if (rc < 0) {
			fflush(stdout);
			shmwal_reader_close(r);
			return fail("tail", rc);
		}
		printf("%" PRIu64 " %s ", rec.lsn, type_name(rec.type, tb));
		print_bytes(stdout, rec.key, rec.key_len, 64);
		putchar(' ');
		print_bytes(stdout, rec.value, rec.value_len, 256);
		putchar('\n');
		if (follow)
			fflush(stdout);
	}
	shmwal_reader_close(r);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		die_msg("tail: writing standard output: %s", strerror(errno));
		return 1;
	}
	return 0;
}

/* ---- main -------------------------------------------------------------------------------- */

static const char main_help[] =
    "usage: shmwal COMMAND [ARGS]   (shmwal COMMAND --help for details)\n"
    "  create DIR [options]    create a WAL directory\n"
    "  flusher DIR             run the WAL's flusher (one per WAL)\n"
    "  append DIR              append lines of standard input as records\n"
    "  tail DIR [-f]           print (and follow) a partition's records\n"
    "  dump DIR [--json]       print every record of every partition (or JSON lines)\n"
    "  verify DIR              check every segment and frame; exit 1 on damage\n"
    "  repair DIR --auto       cut the log at its first damage, moving what follows to\n"
    "                          DIR/quarantine (or --partition P --cut-at LSN)\n"
    "  truncate DIR PART LSN   remove partition PART's segments that end at or below LSN\n"
    "  stat DIR                the live state and metrics (--json, --prometheus, --watch)\n"
    "  retention DIR           show or set what the flusher keeps (segments, bytes, age)\n"
    "Exit status: 0 success, 1 failure or damage, 2 bad usage.\n";

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
	    {"create", cmd_create},	  {"flusher", cmd_flusher},   {"append", cmd_append},
	    {"tail", cmd_tail},		  {"dump", cmd_dump},	      {"verify", cmd_verify},
	    {"repair", cmd_repair},	  {"truncate", cmd_truncate}, {"stat", cmd_stat},
	    {"retention", cmd_retention},
	};

	if (argc < 2 || is_help(argv[1])) {
		fputs(main_help, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	die_msg("unknown command '%s'", argv[1]);
	fputs(main_help, stderr);
	return EXIT_USAGE;
}
