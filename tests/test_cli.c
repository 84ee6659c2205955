/* SPDX-License-Identifier: MIT */
/*
 * test_cli.c - the shmwal command, run as a real program: exit statuses (0 ok, 1 failure or
 * damage, 2 usage) and what it prints, for create, flusher, append, tail, dump and verify,
 * including damaged logs and the flusher's refusal / --repair.
 *
 * The binary: $SHMWAL_BIN, else $O/shmwal, else build/shmwal (tests run from the repo root).
 * Every run is fork + execv with stdin, stdout and stderr redirected to files of the test's
 * temporary directory; no shell is involved.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "shmwal.h"
#include "shmwal_format.h"
#include "helpers.h"

#define MAX_ARGS 32

static char bin[4096];

struct fx {
	char *tmp;	 /* th_tmpdir: I/O files live here */
	char wal[4096];	 /* tmp/wal: the WAL directory (not created by the fixture) */
	pid_t flusher;	 /* a background `shmwal flusher`, 0 if none */
	int nio;	 /* I/O files used so far */
	char *out, *err; /* output of the last run (freed by the next one or teardown) */
};

/* The result of one run. */
struct run {
	int status; /* exit status, 128 + signal, or -1 */
	char *out;
	char *err;
};

/* ---- running the command ----------------------------------------------------------------- */

static void find_binary(void) { th_shmwal_bin(bin, sizeof(bin)); }

static char *slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!fp)
		return strdup("");
	do {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap);
			if (!buf)
				abort();
		}
		n = fread(buf + len, 1, cap - len - 1, fp);
		len += n;
	} while (n > 0);
	fclose(fp);
	buf[len] = '\0';
	return buf;
}

/* The output files of a run, read into the fixture (so a failed assertion leaks nothing). */
static void capture(struct fx *f, struct run *r, const char *out, const char *err)
{
	free(f->out);
	free(f->err);
	f->out = r->out = slurp(out);
	f->err = r->err = slurp(err);
}

/* Done with a run's output (the fixture still owns the buffers). */
static void run_free(struct run *r) { r->out = r->err = NULL; }

static void io_paths(struct fx *f, char *in, char *out, char *err, size_t len)
{
	int i = f->nio++;

	snprintf(in, len, "%s/in.%d", f->tmp, i);
	snprintf(out, len, "%s/out.%d", f->tmp, i);
	snprintf(err, len, "%s/err.%d", f->tmp, i);
}

/* Starts `shmwal ARGS...` with stdin from the string `input` (NULL: empty). */
static pid_t spawn(struct fx *f, const char *input, char *out, char *err, char **argv)
{
	char in[4200];
	int fd;
	pid_t pid;

	io_paths(f, in, out, err, sizeof(in));
	fd = open(in, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	if (input) {
		size_t len = strlen(input);

		assert_int_equal(write(fd, input, len), (ssize_t)len);
	}
	close(fd);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int i0 = open(in, O_RDONLY), o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600),
		    e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (i0 < 0 || o < 0 || e < 0 || dup2(i0, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(126);
		close(i0);
		close(o);
		close(e);
		alarm(TH_TIMEOUT_S * 2);
		execv(bin, argv);
		_exit(127);
	}
	return pid;
}

static void build_argv(char **argv, va_list ap)
{
	int n = 0;
	char *a;

	argv[n++] = bin;
	while ((a = va_arg(ap, char *)) != NULL) {
		assert_true(n < MAX_ARGS - 1);
		argv[n++] = a;
	}
	argv[n] = NULL;
}

/* Runs `shmwal ARGS... (NULL-terminated)` to completion. */
static void run(struct fx *f, struct run *r, const char *input, ...)
{
	char *argv[MAX_ARGS], out[4200], err[4200];
	va_list ap;
	pid_t pid;

	va_start(ap, input);
	build_argv(argv, ap);
	va_end(ap);
	pid = spawn(f, input, out, err, argv);
	r->status = th_wait(pid, TH_TIMEOUT_S);
	capture(f, r, out, err);
	if (r->status == 127)
		fail_msg("could not run %s (set SHMWAL_BIN or O)", bin);
	if (getenv("SHMWAL_TEST_VERBOSE"))
		fprintf(stderr, "$ %s %s ... -> %d\n--- stdout:\n%s--- stderr:\n%s", bin,
			argv[1] ? argv[1] : "", r->status, r->out, r->err);
}

static void expect_status(const struct run *r, int status, const char *what)
{
	if (r->status != status)
		fail_msg("%s: exit status %d, expected %d\n--- stdout:\n%s--- stderr:\n%s", what,
			 r->status, status, r->out, r->err);
}

static void expect_text(const char *text, const char *needle, const char *where)
{
	if (!strstr(text, needle))
		fail_msg("%s does not contain \"%s\":\n%s", where, needle, text);
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* The n-th line (0-based) of s, copied into buf. */
static const char *line_of(const char *s, int n, char *buf, size_t len)
{
	const char *e;

	while (n-- > 0) {
		s = strchr(s, '\n');
		assert_non_null(s);
		s++;
	}
	e = strchr(s, '\n');
	if (!e)
		e = s + strlen(s);
	snprintf(buf, len, "%.*s", (int)(e - s), s);
	return buf;
}

/* ---- a background flusher ---------------------------------------------------------------- */

/* Polls until the flusher serves producers (0), or it exits first (-1, *status set). */
static int wait_ready(pid_t pid, const char *wal, int *status)
{
	struct timespec ts = { 0, 2000000 };
	int i, st;

	for (i = 0; i < TH_TIMEOUT_S * 500; i++) {
		struct shmwal *w;
		pid_t r;

		if (shmwal_open(wal, &w) == 0) {
			shmwal_close(w);
			return 0;
		}
		r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			return -1;
		}
		nanosleep(&ts, NULL);
	}
	fail_msg("flusher %d neither served producers nor exited in %d s", (int)pid, TH_TIMEOUT_S);
	return -1;
}

/* Starts `shmwal flusher WAL [extra]` and waits until it serves producers. */
static void flusher_start(struct fx *f, const char *extra)
{
	char *argv[5] = { bin, "flusher", f->wal, (char *)extra, NULL };
	char out[4200], err[4200];
	int status = -1;

	assert_int_equal(f->flusher, 0);
	f->flusher = spawn(f, NULL, out, err, argv);
	if (wait_ready(f->flusher, f->wal, &status) < 0) {
		struct run r;

		f->flusher = 0;
		capture(f, &r, out, err);
		fail_msg("shmwal flusher exited with %d before serving:\n%s", status, r.err);
	}
}

/* SIGTERM: the flusher drains, syncs and exits 0. */
static void flusher_stop(struct fx *f)
{
	pid_t pid = f->flusher;

	f->flusher = 0;
	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_int_equal(th_wait(pid, TH_TIMEOUT_S), 0);
}

/* ---- fixture ----------------------------------------------------------------------------- */

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->tmp = th_tmpdir("cli");
	if (!f->tmp) {
		free(f);
		return -1;
	}
	snprintf(f->wal, sizeof(f->wal), "%s/wal", f->tmp);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->flusher > 0) {
		kill(f->flusher, SIGTERM);
		if (th_wait(f->flusher, TH_TIMEOUT_S) != 0)
			fprintf(stderr, "teardown: flusher %d did not stop cleanly\n",
				(int)f->flusher);
	}
	th_shm_unlink(f->wal);
	th_destroy(f->tmp);
	free(f->tmp);
	free(f->out);
	free(f->err);
	free(f);
	return 0;
}

static void create_small(struct fx *f)
{
	struct run r;

	run(f, &r, NULL, "create", f->wal, "--partitions", "2", "--ring-bytes", "64K",
	    "--max-value", "1K", NULL);
	expect_status(&r, 0, "create");
	run_free(&r);
}

/* ---- usage ------------------------------------------------------------------------------- */

static const char *const commands[] = { "create", "flusher", "append", "tail", "dump", "verify" };
#define NCMD (sizeof(commands) / sizeof(commands[0]))

static void test_cli_usage(void **state)
{
	struct fx *f = *state;
	struct run r;
	size_t i;

	run(f, &r, NULL, NULL);
	expect_status(&r, 2, "shmwal (no arguments)");
	expect_text(r.err, "usage:", "stderr");
	run_free(&r);

	run(f, &r, NULL, "--help", NULL);
	expect_status(&r, 0, "shmwal --help");
	expect_text(r.out, "usage:", "stdout");
	for (i = 0; i < NCMD; i++)
		expect_text(r.out, commands[i], "shmwal --help");
	run_free(&r);

	run(f, &r, NULL, "-h", NULL);
	expect_status(&r, 0, "shmwal -h");
	run_free(&r);

	run(f, &r, NULL, "frobnicate", f->wal, NULL);
	expect_status(&r, 2, "shmwal frobnicate");
	expect_text(r.err, "frobnicate", "stderr");
	run_free(&r);

	for (i = 0; i < NCMD; i++) {
		char what[128];

		snprintf(what, sizeof(what), "shmwal %s --help", commands[i]);
		run(f, &r, NULL, commands[i], "--help", NULL);
		expect_status(&r, 0, what);
		expect_text(r.out, "usage:", what);
		expect_text(r.out, commands[i], what);
		run_free(&r);

		snprintf(what, sizeof(what), "shmwal %s -h", commands[i]);
		run(f, &r, NULL, commands[i], "-h", NULL);
		expect_status(&r, 0, what);
		expect_text(r.out, "usage:", what);
		run_free(&r);

		snprintf(what, sizeof(what), "shmwal %s --bogus", commands[i]);
		run(f, &r, NULL, commands[i], f->wal, "--bogus", NULL);
		expect_status(&r, 2, what);
		expect_text(r.err, "--bogus", what);
		run_free(&r);

		snprintf(what, sizeof(what), "shmwal %s (no DIR)", commands[i]);
		run(f, &r, NULL, commands[i], NULL);
		expect_status(&r, 2, what);
		expect_text(r.err, "usage:", what);
		run_free(&r);

		snprintf(what, sizeof(what), "shmwal %s DIR DIR2", commands[i]);
		run(f, &r, NULL, commands[i], f->wal, f->tmp, NULL);
		expect_status(&r, 2, what);
		run_free(&r);
	}
	/* bad option values are usage errors too */
	run(f, &r, NULL, "create", f->wal, "--ring-bytes", "lots", NULL);
	expect_status(&r, 2, "create --ring-bytes lots");
	run_free(&r);
	run(f, &r, NULL, "create", f->wal, "--sync", "sometimes", NULL);
	expect_status(&r, 2, "create --sync sometimes");
	run_free(&r);
	run(f, &r, NULL, "append", f->wal, "--type", "3", NULL);
	expect_status(&r, 2, "append --type 3");
	run_free(&r);
	run(f, &r, NULL, "append", f->wal, "--key-sep", "::", NULL);
	expect_status(&r, 2, "append --key-sep ::");
	run_free(&r);
	run(f, &r, NULL, "tail", f->wal, "--from", "nowhere", NULL);
	expect_status(&r, 2, "tail --from nowhere");
	run_free(&r);
	/* none of that created anything */
	assert_int_equal(access(f->wal, F_OK), -1);
}

/* ---- create ------------------------------------------------------------------------------ */

static void test_cli_create(void **state)
{
	struct fx *f = *state;
	struct shmwal_config c;
	struct run r;

	run(f, &r, NULL, "create", f->wal, "--ring-bytes", "1000", NULL);
	expect_status(&r, 1, "create --ring-bytes 1000");
	expect_text(r.err, "ring_bytes", "stderr");
	run_free(&r);

	run(f, &r, NULL, "create", f->wal, "--partitions", "0", NULL);
	expect_status(&r, 1, "create --partitions 0");
	expect_text(r.err, "partitions", "stderr");
	run_free(&r);

	run(f, &r, NULL, "create", f->wal, "--partitions", "2", "--ring-bytes", "64K",
	    "--max-value", "1K", NULL);
	expect_status(&r, 0, "create");
	run_free(&r);
	assert_int_equal(shmwal_config_load(f->wal, &c), 0);
	assert_int_equal(c.partitions, 2);
	assert_int_equal(c.ring_bytes, 64 << 10);
	assert_int_equal(c.max_value, 1 << 10);

	/* idempotent */
	run(f, &r, NULL, "create", f->wal, "--partitions", "2", "--ring-bytes", "64K",
	    "--max-value", "1K", NULL);
	expect_status(&r, 0, "create again");
	run_free(&r);
	run(f, &r, NULL, "create", f->wal, "--partitions=2", "--ring-bytes=65536",
	    "--max-value=1024", NULL);
	expect_status(&r, 0, "create again (--opt=value, no suffixes)");
	run_free(&r);

	/* another configuration */
	run(f, &r, NULL, "create", f->wal, "--partitions", "3", "--ring-bytes", "64K",
	    "--max-value", "1K", NULL);
	expect_status(&r, 1, "create --partitions 3");
	expect_text(r.err, "partitions", "stderr");
	run_free(&r);
	assert_int_equal(shmwal_config_load(f->wal, &c), 0);
	assert_int_equal(c.partitions, 2);
}

/* ---- flusher, append, tail, dump ---------------------------------------------------------- */

static void test_cli_append_tail_dump(void **state)
{
	struct fx *f = *state;
	char line[512];
	struct run r;

	create_small(f);
	/* no flusher yet: append says what to do */
	run(f, &r, "a\n", "append", f->wal, NULL);
	expect_status(&r, 1, "append without a flusher");
	expect_text(r.err, "flusher", "stderr");
	run_free(&r);

	flusher_start(f, NULL);
	run(f, &r, "k1:v1\nk2:v2\nplain\n", "append", f->wal, "--key-sep", ":", NULL);
	expect_status(&r, 0, "append --key-sep :");
	expect_text(r.out, "3 records", "append stdout");
	expect_text(r.out, "durable", "append stdout");
	run_free(&r);

	run(f, &r, NULL, "tail", f->wal, NULL);
	expect_status(&r, 0, "tail");
	assert_int_equal(count_lines(r.out), 3);
	line_of(r.out, 0, line, sizeof(line));
	expect_text(line, "k1", "tail line 1");
	expect_text(line, "v1", "tail line 1");
	expect_text(line, "PUT", "tail line 1");
	assert_int_equal(strncmp(line, "0 ", 2), 0); /* the first LSN of a new WAL */
	line_of(r.out, 1, line, sizeof(line));
	expect_text(line, "k2", "tail line 2");
	expect_text(line, "v2", "tail line 2");
	line_of(r.out, 2, line, sizeof(line));
	expect_text(line, "\"plain\"", "tail line 3");
	assert_null(strstr(r.out, "k3"));
	/* in order: LSNs increase */
	{
		unsigned long long a, b, c;
		char l2[512], l3[512];

		line_of(r.out, 0, line, sizeof(line));
		line_of(r.out, 1, l2, sizeof(l2));
		line_of(r.out, 2, l3, sizeof(l3));
		assert_int_equal(sscanf(line, "%llu", &a), 1);
		assert_int_equal(sscanf(l2, "%llu", &b), 1);
		assert_int_equal(sscanf(l3, "%llu", &c), 1);
		assert_true(a < b && b < c);
	}
	run_free(&r);

	run(f, &r, "gone\n", "append", f->wal, "--partition", "1", "--type", "delete", NULL);
	expect_status(&r, 0, "append --partition 1 --type delete");
	expect_text(r.out, "1 records to partition 1", "append stdout");
	run_free(&r);
	run(f, &r, "custom\n", "append", f->wal, "--partition", "1", "--type", "300", NULL);
	expect_status(&r, 0, "append --type 300");
	run_free(&r);
	run(f, &r, "", "append", f->wal, NULL);
	expect_status(&r, 0, "append of nothing");
	expect_text(r.out, "appended 0 records", "append stdout");
	run_free(&r);

	run(f, &r, NULL, "dump", f->wal, NULL);
	expect_status(&r, 0, "dump");
	assert_int_equal(count_lines(r.out), 5);
	expect_text(r.out, "p0 lsn=0 type=PUT klen=2 vlen=2 key=\"k1\" value=\"v1\"", "dump");
	expect_text(r.out, "type=PUT klen=2 vlen=2 key=\"k2\" value=\"v2\"", "dump");
	expect_text(r.out, "type=PUT klen=0 vlen=5 key=\"\" value=\"plain\"", "dump");
	expect_text(r.out, "p1 lsn=0 type=DELETE klen=0 vlen=4", "dump");
	expect_text(r.out, "type=USER300", "dump");
	line_of(r.out, 0, line, sizeof(line));
	assert_int_equal(strncmp(line, "p0 lsn=", 7), 0);
	run_free(&r);

	run(f, &r, NULL, "dump", f->wal, "--partition", "1", NULL);
	expect_status(&r, 0, "dump --partition 1");
	assert_int_equal(count_lines(r.out), 2);
	assert_null(strstr(r.out, "p0 "));
	run_free(&r);

	run(f, &r, NULL, "tail", f->wal, "--partition", "1", NULL);
	expect_status(&r, 0, "tail --partition 1");
	assert_int_equal(count_lines(r.out), 2);
	line_of(r.out, 0, line, sizeof(line));
	expect_text(line, "DELETE", "tail p1 line 1");
	expect_text(line, "gone", "tail p1 line 1");
	line_of(r.out, 1, line, sizeof(line));
	expect_text(line, "USER300", "tail p1 line 2");
	run_free(&r);

	/* a second flusher while the first runs */
	run(f, &r, NULL, "flusher", f->wal, NULL);
	expect_status(&r, 1, "second flusher");
	expect_text(r.err, "another flusher is running", "stderr");
	run_free(&r);

	/* library errors are failures (1), with the reason */
	run(f, &r, "x\n", "append", f->wal, "--partition", "5", NULL);
	expect_status(&r, 1, "append --partition 5");
	expect_text(r.err, "partition", "stderr");
	run_free(&r);
	run(f, &r, NULL, "tail", f->wal, "--from", "12345", NULL);
	expect_status(&r, 1, "tail --from 12345");
	expect_text(r.err, "not a record boundary", "stderr");
	assert_string_equal(r.out, "");
	run_free(&r);
	run(f, &r, NULL, "tail", f->wal, "--from", "8", NULL);
	expect_status(&r, 1, "tail --from 8");
	expect_text(r.err, "boundary", "stderr");
	run_free(&r);
	run(f, &r, NULL, "tail", f->wal, "--from", "end", NULL);
	expect_status(&r, 0, "tail --from end");
	assert_string_equal(r.out, "");
	run_free(&r);

	run(f, &r, NULL, "verify", f->wal, NULL);
	expect_status(&r, 0, "verify (flusher running)");
	expect_text(r.out, "ok", "verify stdout");
	run_free(&r);

	/* the flusher still works after all that, and stops cleanly on SIGTERM */
	run(f, &r, "k3:v3\n", "append", f->wal, "--key-sep", ":", NULL);
	expect_status(&r, 0, "append after the second flusher");
	run_free(&r);
	flusher_stop(f);

	/* offline: readers and verify work from the files */
	run(f, &r, NULL, "tail", f->wal, NULL);
	expect_status(&r, 0, "tail (no flusher)");
	assert_int_equal(count_lines(r.out), 4);
	line_of(r.out, 3, line, sizeof(line));
	expect_text(line, "k3", "tail line 4");
	run_free(&r);
	run(f, &r, NULL, "verify", f->wal, NULL);
	expect_status(&r, 0, "verify");
	expect_text(r.out, "ok", "verify stdout");
	expect_text(r.out, "6 records in 2 partitions", "verify stdout");
	assert_null(strstr(r.out, "DAMAGE"));
	run_free(&r);
	run(f, &r, "late\n", "append", f->wal, NULL);
	expect_status(&r, 1, "append after the flusher stopped");
	run_free(&r);
}

/* ---- damage ------------------------------------------------------------------------------ */

static int is_segment(const char *name)
{
	uint64_t first;

	return shmwal_segment_name_parse(name, &first) == 0;
}

static int count_entries(const char *dir, int segments_only)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && (!segments_only || is_segment(e->d_name)))
			n++;
	closedir(d);
	return n;
}

/* 1 if a file in the quarantine directory q carries the segment file name `name`. */
static int quarantine_has(const char *q, const char *name)
{
	DIR *d = opendir(q);
	struct dirent *e;
	int found = 0;

	if (!d)
		return 0;
	while (!found && (e = readdir(d)))
		found = strstr(e->d_name, name) != NULL;
	closedir(d);
	return found;
}

/* The path of the oldest segment of partition 0, in buf. */
static void first_segment(const struct fx *f, char *buf, size_t len)
{
	char pdir[4200], name[32];
	uint64_t best = UINT64_MAX, first;
	struct dirent *e;
	DIR *d;

	assert_true(snprintf(pdir, sizeof(pdir), "%s/p000", f->wal) < (int)sizeof(pdir));
	d = opendir(pdir);
	assert_non_null(d);
	while ((e = readdir(d)))
		if (shmwal_segment_name_parse(e->d_name, &first) == 0 && first < best)
			best = first;
	closedir(d);
	assert_true(best != UINT64_MAX);
	shmwal_segment_name(name, best);
	assert_true(snprintf(buf, len, "%s/%s", pdir, name) < (int)len);
}

/* A WAL with >= 3 segments in p000: 3000 records of 60 bytes in 64 KiB segments. */
static void make_multi_segment_wal(struct fx *f)
{
	char *input = malloc(3000 * 61 + 1), pdir[4200];
	size_t off = 0;
	struct run r;
	int i;

	assert_non_null(input);
	for (i = 0; i < 3000; i++) {
		char line[64];

		snprintf(line, sizeof(line), "record-%04d-", i);
		memset(line + 12, 'a' + i % 26, 48);
		memcpy(input + off, line, 60);
		off += 60;
		input[off++] = '\n';
	}
	input[off] = '\0';
	run(f, &r, NULL, "create", f->wal, "--segment-bytes", "64K", "--max-value", "1K",
	    "--sync", "none", NULL);
	expect_status(&r, 0, "create --segment-bytes 64K");
	run_free(&r);
	flusher_start(f, "--quiet");
	run(f, &r, input, "append", f->wal, NULL);
	expect_status(&r, 0, "append 3000 lines");
	expect_text(r.out, "appended 3000 records", "append stdout");
	run_free(&r);
	free(input);
	flusher_stop(f);
	snprintf(pdir, sizeof(pdir), "%s/p000", f->wal);
	assert_true(count_entries(pdir, 1) >= 3);

	run(f, &r, NULL, "verify", f->wal, NULL);
	expect_status(&r, 0, "verify before the damage");
	expect_text(r.out, "3000 records", "verify stdout");
	expect_text(r.out, "ok", "verify stdout");
	run_free(&r);
}

static void flip_byte(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0x5a;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	assert_int_equal(fsync(fd), 0);
	close(fd);
}

/* Flips a byte inside the value of the frame at (or after) the middle of the file; returns
 * the frame's file offset. */
static uint64_t damage_middle_frame(const char *path)
{
	struct stat st;
	uint8_t *data;
	uint64_t off = SHMWAL_SEG_HDR;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	data = malloc((size_t)st.st_size);
	assert_non_null(data);
	assert_int_equal(pread(fd, data, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	for (;;) {
		struct shmwal_frame fr;

		assert_true(off + sizeof(fr) <= (uint64_t)st.st_size);
		memcpy(&fr, data + off, sizeof(fr));
		if (off >= (uint64_t)st.st_size / 2 &&
		    shmwal_word_state(fr.word) == SHMWAL_FRAME_COMMITTED &&
		    shmwal_word_len(fr.word) > SHMWAL_FRAME_HDR + fr.key_len + 8)
			break;
		assert_true(shmwal_word_len(fr.word) >= SHMWAL_FRAME_HDR);
		off += SHMWAL_ALIGN_UP(shmwal_word_len(fr.word));
	}
	free(data);
	flip_byte(path, off + SHMWAL_FRAME_HDR + 8); /* in the key/value bytes */
	return off;
}

/* Starts `shmwal flusher WAL [extra]` on a damaged log. Returns its exit status if it exits by
 * itself; if it starts serving instead, stops it and returns -100. */
static int flusher_outcome(struct fx *f, const char *extra, struct run *r)
{
	char *argv[5] = { bin, "flusher", f->wal, (char *)extra, NULL };
	char out[4200], err[4200];
	int status = -1;
	pid_t pid = spawn(f, NULL, out, err, argv);

	if (wait_ready(pid, f->wal, &status) == 0) {
		kill(pid, SIGTERM);
		th_wait(pid, TH_TIMEOUT_S);
		status = -100; /* it started */
	}
	r->status = status;
	capture(f, r, out, err);
	return status;
}

static void test_cli_verify_frame_damage(void **state)
{
	struct fx *f = *state;
	char seg[4200], want[4300];
	const char *name;
	uint64_t off;
	struct run r;

	make_multi_segment_wal(f);
	first_segment(f, seg, sizeof(seg));
	off = damage_middle_frame(seg);
	name = strrchr(seg, '/') + 1;

	run(f, &r, NULL, "verify", f->wal, NULL);
	expect_status(&r, 1, "verify after the damage");
	expect_text(r.out, "DAMAGE", "verify stdout");
	expect_text(r.out, name, "verify stdout");
	snprintf(want, sizeof(want), "offset %" PRIu64, off);
	expect_text(r.out, want, "verify stdout");
	expect_text(r.out, "DAMAGED", "verify stdout");
	assert_null(strstr(r.out, ": ok"));
	run_free(&r);

	/* readers stop at the damage with an error naming the file */
	run(f, &r, NULL, "dump", f->wal, NULL);
	expect_status(&r, 1, "dump of a damaged log");
	expect_text(r.err, name, "dump stderr");
	run_free(&r);
}

/*
 * shmwal.h: the flusher "recovers the segment files first: a torn tail is cut; damage
 * elsewhere makes it refuse with -EBADMSG unless opts->repair"; `shmwal flusher --help`:
 * --repair cuts "the log at damage found outside the last segment, moving later segments to
 * DIR/quarantine".
 */
/*
 * Damage inside a sealed segment's frames. By design the flusher's start-up does not read
 * sealed segments' frames (start-up time must not grow with the log), so it starts; the damage
 * is caught where the frames are read: `verify` reports it with file and offset, and readers
 * (`dump`) stop at it with an error naming the file instead of returning a bad record.
 */
static void test_cli_sealed_frame_damage_is_reported(void **state)
{
	struct fx *f = *state;
	char seg[4200];
	const char *name;
	struct run r;

	make_multi_segment_wal(f);
	first_segment(f, seg, sizeof(seg));
	name = strrchr(seg, '/') + 1;
	damage_middle_frame(seg);

	run(f, &r, NULL, "verify", f->wal, NULL);
	expect_status(&r, 1, "verify after frame damage");
	expect_text(r.out, "DAMAGE", "verify stdout");
	expect_text(r.out, name, "verify stdout");
	expect_text(r.out, "checksum", "verify stdout");
	run_free(&r);

	flusher_start(f, NULL);
	run(f, &r, NULL, "dump", f->wal, NULL);
	expect_status(&r, 1, "dump across the damaged record");
	expect_text(r.err, name, "dump stderr");
	run_free(&r);
	flusher_stop(f);
}

/* The same with damage that recovery sees without reading frames: a sealed segment's header. */
static void test_cli_flusher_refuses_header_damage(void **state)
{
	struct fx *f = *state;
	char seg[4200], q[4200], pdir[4200];
	const char *name;
	struct run r;
	int nseg;

	make_multi_segment_wal(f);
	first_segment(f, seg, sizeof(seg));
	name = strrchr(seg, '/') + 1;
	snprintf(pdir, sizeof(pdir), "%s/p000", f->wal);
	nseg = count_entries(pdir, 1);
	flip_byte(seg, 20); /* inside first_lsn: the header checksum fails */

	run(f, &r, NULL, "verify", f->wal, NULL);
	expect_status(&r, 1, "verify after header damage");
	expect_text(r.out, "DAMAGE", "verify stdout");
	expect_text(r.out, name, "verify stdout");
	expect_text(r.out, "offset 0", "verify stdout");
	run_free(&r);

	flusher_outcome(f, NULL, &r);
	if (r.status == -100)
		fail_msg("the flusher started on a log with a damaged sealed segment header");
	expect_status(&r, 1, "flusher on a damaged log");
	expect_text(r.err, "refusing to start", "flusher stderr");
	expect_text(r.err, name, "flusher stderr");
	run_free(&r);
	/* refusing changed nothing */
	assert_int_equal(count_entries(pdir, 1), nseg);
	snprintf(q, sizeof(q), "%s/quarantine", f->wal);
	assert_int_equal(count_entries(q, 0), 0);

	/* --repair starts, moving the damaged segment and every later one aside (the damaged
	 * one is the first: all of them) */
	flusher_start(f, "--repair");
	flusher_stop(f);
	assert_int_equal(count_entries(q, 0), nseg);
	assert_true(quarantine_has(q, name));
	assert_int_equal(count_entries(pdir, 1), 1); /* a fresh segment */
	/* what remains verifies clean, and a plain flusher starts again */
	run(f, &r, NULL, "verify", f->wal, NULL);
	expect_status(&r, 0, "verify after repair");
	run_free(&r);
	flusher_start(f, NULL);
	run(f, &r, "after repair\n", "append", f->wal, NULL);
	expect_status(&r, 0, "append after repair");
	run_free(&r);
	flusher_stop(f);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_cli_usage),
		T(test_cli_create),
		T(test_cli_append_tail_dump),
		T(test_cli_verify_frame_damage),
		T(test_cli_sealed_frame_damage_is_reported),
		T(test_cli_flusher_refuses_header_damage),
	};
#undef T

	find_binary();
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
