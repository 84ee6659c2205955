/* SPDX-License-Identifier: MIT */
/*
 * shmwal.c - the shmwal command: create, flusher, append, tail, dump, verify (stat and
 * retention: stat.c).
 * Built only on include/shmwal.h and include/shmwal_format.h.
 *
 * Exit status: 0 success; 1 failure (the message says why; for verify: damage found);
 * 2 bad usage.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shmwal.h"
#include "shmwal_format.h"
#include "tools/cli.h"

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

static int parse_lsn(const char *s, uint64_t *out)
{
	if (strcmp(s, "oldest") == 0) {
		*out = SHMWAL_LSN_OLDEST;
		return 0;
	}
	if (strcmp(s, "end") == 0) {
		*out = SHMWAL_LSN_END;
		return 0;
	}
	return parse_size(s, out);
}

/* An option with a value: --name=value or --name value. */
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
static int dir_only_args(int argc, char **argv, const char *cmd, const char *help,
			 const char **dir)
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
	"                    deleting them; their LSNs are used again by new records)\n"
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
	"  --key-sep C     split each line at the first C: key before, value after\n"
	"  --no-wait       do not wait for durability\n";

static int cmd_append(int argc, char **argv)
{
	const char *dir = NULL, *v;
	uint32_t part = 0, type = SHMWAL_TYPE_PUT;
	int sep = -1, wait = 1, i, rc;
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
		rc = shmwal_append(w, part, (uint16_t)type, key, (uint32_t)klen, val,
				   (uint32_t)vlen, &lsn);
		if (rc < 0) {
			free(line);
			shmwal_close(w);
			return fail("append", rc);
		}
		if (first == UINT64_MAX)
			first = lsn;
		count++;
	}
	free(line);
	if (count && wait) {
		rc = shmwal_wait_durable(w, part, lsn, 60 * SHMWAL_NS_PER_SEC);
		if (rc < 0) {
			shmwal_close(w);
			return fail("append", rc);
		}
	}
	shmwal_close(w);
	if (count)
		printf("appended %" PRIu64 " records to partition %u, LSN %" PRIu64 "..%" PRIu64
		       "%s\n",
		       count, part, first, lsn, wait ? ", durable" : "");
	else
		printf("appended 0 records\n");
	return 0;
}

/* ---- tail and dump ----------------------------------------------------------------------- */

static void print_bytes(FILE *f, const void *p, uint32_t len, uint32_t max)
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

static const char *type_name(uint16_t t, char *buf)
{
	if (t == SHMWAL_TYPE_PUT)
		return "PUT";
	if (t == SHMWAL_TYPE_DELETE)
		return "DELETE";
	snprintf(buf, 16, "USER%u", t);
	return buf;
}

static const char tail_help[] =
	"usage: shmwal tail DIR [--partition P] [-f] [--from LSN|oldest|end]\n"
	"Prints durable records of one partition, one per line: LSN, type, key, value.\n"
	"  -f, --follow    keep waiting for new records (until interrupted)\n"
	"  --from LSN      start here (default: oldest)\n";

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
	for (;;) {
		char tb[16];

		rc = shmwal_reader_next(r, &rec, follow ? 200000000ull : 0);
		if (rc == -ETIMEDOUT) {
			if (!follow || __atomic_load_n(&stop_flag, __ATOMIC_RELAXED))
				break;
			continue;
		}
		if (rc < 0) {
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
	return 0;
}

static const char dump_help[] =
	"usage: shmwal dump DIR [--partition P] [--from LSN] [--to LSN]\n"
	"Prints every durable record, one line each: partition, LSN, type, key and value lengths,\n"
	"key, and a preview of the value (text when printable, hex otherwise).\n";

static int cmd_dump(int argc, char **argv)
{
	const char *dir = NULL, *v;
	uint32_t part = 0, p0 = 0, p1;
	uint64_t from = SHMWAL_LSN_OLDEST, to = UINT64_MAX;
	int all = 1, i, rc;
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
			if (parse_size(v, &to) < 0)
				return usage_error("dump", v);
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
	if (all) {
		p1 = cfg.partitions;
	} else {
		p0 = part;
		p1 = part + 1;
	}
	for (part = p0; part < p1; part++) {
		struct shmwal_reader *r;
		struct shmwal_record rec;

		rc = shmwal_reader_open(dir, part, from, &r);
		if (rc < 0)
			return fail("dump", rc);
		while ((rc = shmwal_reader_next(r, &rec, 0)) == 0 && rec.lsn < to) {
			char tb[16];

			printf("p%u lsn=%" PRIu64 " type=%s klen=%u vlen=%u key=", part, rec.lsn,
			       type_name(rec.type, tb), rec.key_len, rec.value_len);
			print_bytes(stdout, rec.key, rec.key_len, 64);
			fputs(" value=", stdout);
			print_bytes(stdout, rec.value, rec.value_len, 48);
			putchar('\n');
		}
		shmwal_reader_close(r);
		if (rc < 0 && rc != -ETIMEDOUT)
			return fail("dump", rc);
	}
	return 0;
}

/* ---- verify ------------------------------------------------------------------------------ */

static const char verify_help[] =
	"usage: shmwal verify DIR\n"
	"Checks every segment of every partition: headers, sizes, LSN continuity and every\n"
	"frame's checksum, and that every segment belongs to this WAL. Prints a summary per\n"
	"partition and each damage found with its file and offset. Exit status 0: intact (a torn\n"
	"tail in the last segment is reported but is not damage); 1: damage, or the WAL cannot be\n"
	"read; 2: bad usage.\n";

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/*
 * The WAL's instance id from DIR/meta (a "key value" text file; shmwal_config_load() has
 * checked it), so that a segment copied in from another WAL is reported. 0 if not found.
 */
static uint64_t wal_instance(const char *dir)
{
	char path[4200], line[256];
	uint64_t inst = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/meta", dir);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "instance %" SCNx64, &inst) == 1)
			break;
	fclose(f);
	return inst;
}

/* 1 when [off, end) of a mapping is all zero. */
static int zero_range(const uint8_t *map, uint64_t off, off_t end)
{
	return off >= (uint64_t)end ||
	       (map[off] == 0 && memcmp(map + off, map + off + 1, (size_t)((uint64_t)end - off - 1)) == 0);
}

/* 1 when the file at fd holds only zeros from off on (read with pread: no mapping yet). */
static int file_zero_from(int fd, uint64_t off)
{
	uint8_t buf[65536];
	ssize_t n;

	while ((n = pread(fd, buf, sizeof(buf), (off_t)off)) > 0) {
		for (ssize_t j = 0; j < n; j++)
			if (buf[j])
				return 0;
		off += (uint64_t)n;
	}
	return n == 0;
}

static int verify_partition(const char *dir, uint32_t p, const struct shmwal_config *cfg,
			    uint64_t instance, uint64_t *records_out)
{
	const int pmem = cfg->backend == SHMWAL_BACKEND_PMEM;
	uint64_t max_frame = SHMWAL_ALIGN_UP(32ull + cfg->max_key + cfg->max_value);
	const uint64_t pmem_size = shmwal_pmem_segment_size(cfg->segment_bytes, max_frame);
	uint64_t *firsts = NULL, records = 0, bytes = 0, expect_lsn = 0;
	size_t n = 0, cap = 0, i;
	char pdir[4096];
	struct dirent *e;
	int damage = 0;
	DIR *d;

	snprintf(pdir, sizeof(pdir), "%s/p%03u", dir, p);
	d = opendir(pdir);
	if (!d) {
		printf("p%u: cannot open %s: %s\n", p, pdir, strerror(errno));
		return 1;
	}
	while ((e = readdir(d))) {
		uint64_t f;

		if (shmwal_segment_name_parse(e->d_name, &f) < 0) {
			if (e->d_name[0] != '.')
				printf("p%u: note: %s/%s is not a segment file (ignored)\n", p, pdir,
				       e->d_name);
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			firsts = realloc(firsts, cap * sizeof(*firsts));
			if (!firsts)
				abort();
		}
		firsts[n++] = f;
	}
	closedir(d);
	qsort(firsts, n, sizeof(*firsts), cmp_u64);
	for (i = 0; i < n; i++) {
		struct shmwal_segment_header h;
		char path[4200], name[24];
		const char *why = NULL;
		const uint8_t *map = NULL;
		struct stat st;
		uint64_t off, end;
		int fd;

		shmwal_segment_name(name, firsts[i]);
		snprintf(path, sizeof(path), "%s/%s", pdir, name);
		/* O_NONBLOCK: a FIFO with a segment's name must not hang verify. */
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
		if (fd < 0 || fstat(fd, &st) < 0) {
			printf("DAMAGE %s: cannot read: %s\n", path, strerror(errno));
			damage = 1;
			if (fd >= 0)
				close(fd);
			continue;
		}
		if (!S_ISREG(st.st_mode))
			why = "not a regular file";
		else if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
			why = "shorter than a segment header";
		else if (shmwal_segment_header_check(&h, &why) < 0)
			;
		else if (h.first_lsn != firsts[i])
			why = "segment header's first LSN does not match its file name";
		else if (h.partition != p)
			why = "segment belongs to another partition";
		else if (instance && h.instance != instance)
			why = "segment belongs to another WAL instance";
		if (why) {
			/* As recovery: the last segment with a torn header and no frames is an
			 * interrupted segment creation, moved aside at the next start. */
			int torn = i + 1 == n && S_ISREG(st.st_mode) &&
				   ((uint64_t)st.st_size <= SHMWAL_SEG_HDR ||
				    (pmem && file_zero_from(fd, SHMWAL_SEG_HDR)));

			printf("%s %s offset 0: %s%s\n", torn ? "TORN-TAIL" : "DAMAGE", path, why,
			       torn ? " (the flusher moves it to DIR/quarantine at start)" : "");
			damage |= !torn;
			close(fd);
			continue;
		}
		if (i > 0 && firsts[i] != expect_lsn) {
			printf("DAMAGE %s: starts at LSN %" PRIu64 " but the previous segment ends "
			       "at %" PRIu64 " (%s)\n",
			       path, firsts[i], expect_lsn,
			       firsts[i] > expect_lsn ? "records missing" : "overlap");
			damage = 1;
		}
		off = SHMWAL_SEG_HDR;
		/* A pmem segment has a fixed size: frames end where the next segment's range
		 * starts (sealed), or at the first zero word (the last one), and only zeros may
		 * follow them. */
		end = (uint64_t)st.st_size;
		if (pmem && i + 1 < n && SHMWAL_SEG_HDR + (firsts[i + 1] - firsts[i]) < end)
			end = SHMWAL_SEG_HDR + (firsts[i + 1] - firsts[i]);
		if (pmem && (uint64_t)st.st_size != pmem_size) {
			int last = i + 1 == n;

			printf("%s %s: %" PRIu64 " bytes, not the pmem backend's fixed size %" PRIu64
			       "%s\n",
			       last ? "TORN-TAIL" : "DAMAGE", path, (uint64_t)st.st_size, pmem_size,
			       last ? " (the flusher resizes it at start)" : "");
			damage |= !last;
		}
		if ((uint64_t)st.st_size > SHMWAL_SEG_HDR) {
			enum shmwal_frame_verdict stop = SHMWAL_FRAME_OK;
			int last = i + 1 == n;

			map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
			if (map == MAP_FAILED) {
				printf("DAMAGE %s: cannot map: %s\n", path, strerror(errno));
				damage = 1;
				close(fd);
				continue;
			}
			while (off < end) {
				uint64_t lsn = firsts[i] + off - SHMWAL_SEG_HDR;
				enum shmwal_frame_verdict v =
					shmwal_frame_check(map + off, end - off, lsn, max_frame);
				const struct shmwal_frame *f = (const void *)(map + off);

				stop = v;
				if (v == SHMWAL_FRAME_ZERO && pmem && last)
					break; /* the end of the log; zeros must follow (below) */
				if (v != SHMWAL_FRAME_OK) {
					printf("%s %s offset %" PRIu64 " (LSN %" PRIu64 "): %s%s\n",
					       last ? "TORN-TAIL" : "DAMAGE", path, off, lsn,
					       shmwal_frame_verdict_str(v),
					       last ? " (the flusher cuts it at start)" : "");
					damage |= !last;
					break;
				}
				records += shmwal_word_state(f->word) == SHMWAL_FRAME_COMMITTED;
				off += SHMWAL_ALIGN_UP(shmwal_word_len(f->word));
			}
			if (pmem && (off == end || (last && stop == SHMWAL_FRAME_ZERO)) &&
			    !zero_range(map, off, st.st_size)) {
				printf("%s %s offset %" PRIu64 ": bytes after the last frame are not "
				       "zero%s\n",
				       last ? "TORN-TAIL" : "DAMAGE", path, off,
				       last ? " (the flusher clears them at start)"
					    : " (a segment missing after it?)");
				damage |= !last;
			}
			munmap((void *)map, (size_t)st.st_size);
		}
		bytes += off - SHMWAL_SEG_HDR;
		expect_lsn = firsts[i] + off - SHMWAL_SEG_HDR;
		close(fd);
	}
	printf("p%u: %zu segments, %" PRIu64 " records, %" PRIu64 " bytes of frames, LSN %" PRIu64
	       "..%" PRIu64 "%s\n",
	       p, n, records, bytes, n ? firsts[0] : 0, expect_lsn, damage ? ", DAMAGED" : "");
	free(firsts);
	*records_out += records;
	return damage;
}

static int cmd_verify(int argc, char **argv)
{
	struct shmwal_config cfg;
	const char *dir;
	uint64_t records = 0, instance;
	int rc, damage = 0;

	if ((rc = dir_only_args(argc, argv, "verify", verify_help, &dir)) >= 0)
		return rc;
	rc = shmwal_config_load(dir, &cfg);
	if (rc < 0)
		return fail("verify", rc);
	instance = wal_instance(dir);
	for (uint32_t p = 0; p < cfg.partitions; p++)
		damage |= verify_partition(dir, p, &cfg, instance, &records);
	printf("%s: %" PRIu64 " records in %u partitions: %s\n", dir, records, cfg.partitions,
	       damage ? "DAMAGED" : "ok");
	return damage ? 1 : 0;
}

/* ---- main -------------------------------------------------------------------------------- */

static const char main_help[] =
    "usage: shmwal COMMAND [ARGS]   (shmwal COMMAND --help for details)\n"
    "  create DIR [options]    create a WAL directory\n"
    "  flusher DIR             run the WAL's flusher (one per WAL)\n"
    "  append DIR              append lines of standard input as records\n"
    "  tail DIR [-f]           print (and follow) a partition's records\n"
    "  dump DIR                print every record of every partition\n"
    "  verify DIR              check every segment and frame\n"
    "  stat DIR                the live state and metrics (--json, --prometheus, --watch)\n"
    "  retention DIR           show or set what the flusher keeps (segments, bytes, age)\n"
    "Exit status: 0 success, 1 failure or damage, 2 bad usage.\n";

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
	    {"create", cmd_create}, {"flusher", cmd_flusher},	  {"append", cmd_append},
	    {"tail", cmd_tail},	    {"dump", cmd_dump},		  {"verify", cmd_verify},
	    {"stat", cmd_stat},	    {"retention", cmd_retention},
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
