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
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <regex.h>
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
#include "json.h"

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

/* An RFC 3339 time in UTC with nanoseconds, as dump prints it. */
#define RFC3339_RE "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{9}Z"

/* Some line of text matches the extended regular expression re. */
static void expect_match(const char *text, const char *re, const char *where)
{
	regex_t rx;
	int rc;

	assert_int_equal(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB | REG_NEWLINE), 0);
	rc = regexec(&rx, text, 0, NULL, 0);
	regfree(&rx);
	if (rc != 0)
		fail_msg("%s has no line matching /%s/:\n%s", where, re, text);
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

/*
 * Polls until the shared memory names flusher `pid` as its own (0), or it exits first (-1,
 * *status set). Producers may attach before that: to the shared memory a killed flusher left,
 * before the new one has even installed its SIGTERM handler.
 */
static int wait_own_shm(pid_t pid, const char *wal, int *status)
{
	struct timespec ts = {0, 2000000};
	struct shmwal_stat *st = malloc(sizeof(*st));
	int i, rc = -1;

	assert_non_null(st);
	for (i = 0; i < TH_TIMEOUT_S * 500; i++) {
		int s;

		if (shmwal_stat(wal, st) == 0 && st->flusher_running &&
		    st->flusher_pid == (uint32_t)pid) {
			rc = 0;
			break;
		}
		if (waitpid(pid, &s, WNOHANG) == pid) {
			*status = WIFEXITED(s) ? WEXITSTATUS(s) : 128 + WTERMSIG(s);
			break;
		}
		nanosleep(&ts, NULL);
	}
	free(st);
	if (i == TH_TIMEOUT_S * 500)
		fail_msg("flusher %d did not take over %s in %d s", (int)pid, wal, TH_TIMEOUT_S);
	return rc;
}

/* Starts `shmwal flusher WAL [extra]` and waits until it serves producers. */
static void flusher_start(struct fx *f, const char *extra)
{
	char *argv[5] = { bin, "flusher", f->wal, (char *)extra, NULL };
	char out[4200], err[4200];
	int status = -1;

	assert_int_equal(f->flusher, 0);
	f->flusher = spawn(f, NULL, out, err, argv);
	if (wait_ready(f->flusher, f->wal, &status) < 0 ||
	    wait_own_shm(f->flusher, f->wal, &status)) {
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

static const char *const commands[] = {"create", "flusher", "append", "tail",
				       "dump",	 "verify",  "repair", "truncate"};
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
	{
		static const char *const bad[][8] = {
		    {"tail", "--from", "-1"},
		    {"tail", "--from", "12abc"},
		    {"dump", "--to", "abc"},
		    {"dump", "--from", "0x"},
		    {"repair"},
		    {"repair", "--auto", "--partition", "0", "--cut-at", "5"},
		    {"repair", "--cut-at", "5"},
		    {"repair", "--partition", "0", "--cut-at", "abc"},
		    {"repair", "--partition", "0", "--cut-at", "-5"},
		    {"repair", "--partition", "x", "--auto"},
		    {"truncate"},
		    {"truncate", "0"},
		    {"truncate", "x", "5"},
		    {"truncate", "0", "5x"},
		    {"truncate", "0", "-5"},
		    {"truncate", "0", "1", "2"},
		};

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			char *argv[12] = {bin}, what[256] = "";
			char out[4200], err[4200];
			int a = 1;

			argv[a++] = (char *)bad[i][0];
			argv[a++] = f->wal;
			for (int j = 1; j < 8 && bad[i][j]; j++)
				argv[a++] = (char *)bad[i][j];
			for (int j = 0; j < a; j++)
				snprintf(what + strlen(what), sizeof(what) - strlen(what), "%s ",
					 j == 2	  ? "WAL"
					 : j == 0 ? "shmwal"
						  : argv[j]);
			r.status = th_wait(spawn(f, NULL, out, err, argv), TH_TIMEOUT_S);
			capture(f, &r, out, err);
			expect_status(&r, 2, what);
			if (!*r.err)
				fail_msg("%s: nothing on stderr", what);
			run_free(&r);
		}
	}
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
	expect_match(
	    r.out, "^p0 lsn=0 type=PUT klen=2 vlen=2 time=" RFC3339_RE " key=\"k1\" value=\"v1\"$",
	    "dump");
	expect_match(r.out, " type=PUT klen=2 vlen=2 time=" RFC3339_RE " key=\"k2\" value=\"v2\"$",
		     "dump");
	expect_match(r.out, " type=PUT klen=0 vlen=5 time=" RFC3339_RE " key=\"\" value=\"plain\"$",
		     "dump");
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

	/* an LSN of which partition? */
	run(f, &r, NULL, "dump", f->wal, "--from", "96", NULL);
	expect_status(&r, 2, "dump --from 96 (two partitions)");
	expect_text(r.err, "--partition", "dump stderr");
	assert_string_equal(r.out, "");
	run_free(&r);
	run(f, &r, NULL, "dump", f->wal, "--partition", "0", "--from", "40", "--to", "80", NULL);
	expect_status(&r, 0, "dump --partition 0 --from 40 --to 80");
	assert_int_equal(count_lines(r.out), 1);
	expect_text(r.out, "p0 lsn=40 type=PUT klen=2 vlen=2 ", "dump");
	run_free(&r);
	run(f, &r, NULL, "dump", f->wal, "--partition", "4294967295", NULL);
	expect_status(&r, 1, "dump --partition 4294967295");
	expect_text(r.err, "out of range", "dump stderr");
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

/* ---- dump --json --------------------------------------------------------------------------- */

/* What dump --json prints is read back with the strict parser of json.h. */

static const struct jmember *jget(const struct jobj *o, const char *name, int is_str)
{
	for (int i = 0; i < o->n; i++)
		if (!strcmp(o->m[i].name, name)) {
			if (o->m[i].is_str != is_str)
				fail_msg("member %s: wrong kind", name);
			return &o->m[i];
		}
	fail_msg("no member %s", name);
	return NULL;
}

/* The bytes a key or value stands for, by its encoding member; checks hex is lower-case
 * pairs. *enc gets the encoding. */
static uint8_t *jbytes(const struct jobj *o, const char *name, size_t *len, const char **enc)
{
	char ename[48];
	const struct jmember *e, *v;
	uint8_t *b;

	snprintf(ename, sizeof(ename), "%s_encoding", name);
	e = jget(o, ename, 1);
	v = jget(o, name, 1);
	*enc = (const char *)e->str;
	if (!strcmp(*enc, "utf8")) {
		b = malloc(v->len + 1);
		assert_non_null(b);
		memcpy(b, v->str, v->len);
		*len = v->len;
		return b;
	}
	if (strcmp(*enc, "hex") != 0)
		fail_msg("%s: unknown encoding %s", ename, *enc);
	assert_int_equal(v->len % 2, 0);
	b = malloc(v->len / 2 + 1);
	assert_non_null(b);
	for (size_t i = 0; i < v->len / 2; i++) {
		char pair[3] = {(char)v->str[2 * i], (char)v->str[2 * i + 1], 0};

		if (!strchr("0123456789abcdef", pair[0]) || !strchr("0123456789abcdef", pair[1]) ||
		    !pair[0] || !pair[1])
			fail_msg("%s: not lower-case hex: %s", name, (const char *)v->str);
		b[i] = (uint8_t)strtoul(pair, NULL, 16);
	}
	*len = v->len / 2;
	return b;
}

/* The parser itself rejects what it must (else the round trip below proves little). */
static void test_cli_json_parser_is_strict(void **state)
{
	static const char *const bad[] = {
	    "{\"a\":\"x\ny\"}",	    /* raw control character */
	    "{\"a\":\"\\x41\"}",    /* unknown escape */
	    "{\"a\":\"\\ud800\"}",  /* lone high surrogate */
	    "{\"a\":\"\\udc00\"}",  /* lone low surrogate */
	    "{\"a\":\"\xff\"}",	    /* invalid UTF-8 */
	    "{\"a\":\"\xc0\xaf\"}", /* overlong */
	    "{\"a\":\"x\"} x",	    /* trailing text */
	    "{\"a\":01}",	    /* leading zero */
	    "{\"a\":1,\"a\":2}",    /* duplicate */
	    "{\"a\":\"x\",}",	    /* trailing comma */
	    "{\"a\":\"x\"",	    /* unterminated */
	    "{\"a\":\"\\\"}",	    /* unterminated after an escape */
	    "{'a':1}",		    /* not JSON quotes */
	};
	struct jobj o;
	const char *err;
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		if (json_parse(bad[i], strlen(bad[i]), &o, &err) == 0)
			fail_msg("parser accepted %s", bad[i]);
		jobj_free(&o);
	}
	{
		const char *good =
		    "{\"s\":\"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\\u0000\\u00e9\\ud834\\udd1e"
		    "\xe2\x82\xac\",\"n\":18446744073709551615, \"z\" : 0 }";
		const uint8_t want[] = "a\"b\\c/\b\f\n\r\t\0\xc3\xa9\xf0\x9d\x84\x9e\xe2\x82\xac";

		err = NULL;
		if (json_parse(good, strlen(good), &o, &err) < 0)
			fail_msg("parser refused good JSON: %s", err);
		assert_int_equal(jget(&o, "s", 1)->len, sizeof(want) - 1);
		assert_memory_equal(jget(&o, "s", 1)->str, want, sizeof(want) - 1);
		assert_true(jget(&o, "n", 0)->num == UINT64_MAX);
		assert_true(jget(&o, "z", 0)->num == 0);
		jobj_free(&o);
	}
}

struct jrec {
	uint32_t part;
	uint16_t type;
	const char *type_name;
	const char *key; /* bytes */
	uint32_t klen;
	const char *value;
	uint32_t vlen;
	const char *kenc, *venc; /* what dump must choose */
	uint64_t lsn;
};

/*
 * Keys and values that are hard to print: quotes, backslashes, every kind of control byte,
 * NUL, 0xff, multi-byte UTF-8 and each kind of invalid UTF-8. `dump --json` must print one
 * valid JSON object per line, choose the encoding right, and give back every byte; LSNs,
 * types and timestamps must be those readers see.
 */
static void test_cli_dump_json(void **state)
{
	static char big[1000];
#define S(x) x, (uint32_t)(sizeof(x) - 1)
	struct jrec recs[] = {
	    {0, SHMWAL_TYPE_PUT, "PUT", S("q\"uo\\te\\"), S("multi\nline\r\ttab\b\f/"), "utf8",
	     "utf8", 0},
	    {0, SHMWAL_TYPE_PUT, "PUT", S("nul\0byte"), S("\x01\x02\x1f\x7f ctrl"), "utf8", "utf8",
	     0},
	    {0, SHMWAL_TYPE_PUT, "PUT", S(""), S("\xff\xfe\x00\x80"), "utf8", "hex", 0},
	    {1, SHMWAL_TYPE_PUT, "PUT", S("h\xc3\xa9llo"),
	     S("\xe2\x82\xac \xf0\x9d\x84\x9e \xe2\x98\x83"), "utf8", "utf8", 0},
	    {1, SHMWAL_TYPE_PUT, "PUT", S("\xed\xa0\x80"), S("\xc0\xaf"), "hex", "hex", 0},
	    {1, SHMWAL_TYPE_DELETE, "DELETE", S("\xf4\x90\x80\x80"), S("\xe2\x82"), "hex", "hex",
	     0},
	    {0, 300, "USER300", S("big"), big, sizeof(big), "utf8", "hex", 0},
	    {0, SHMWAL_TYPE_PUT, "PUT", S(""), S(""), "utf8", "utf8", 0},
	};
#undef S
	const size_t nrec = sizeof(recs) / sizeof(recs[0]);
	static const char *const order[] = {
	    "partition", "lsn",	    "next_lsn",	    "type", "type_name", "timestamp_ns",
	    "timestamp", "key_len", "key_encoding", "key",  "value_len", "value_encoding",
	    "value"};
	struct fx *f = *state;
	struct shmwal *w;
	const char *line;
	size_t seen = 0, i;
	struct run r;

	for (i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7);
	create_small(f);
	flusher_start(f, NULL);
	assert_int_equal(shmwal_open(f->wal, &w), 0);
	for (i = 0; i < nrec; i++)
		EXPECT_OK(shmwal_append(w, recs[i].part, recs[i].type, recs[i].key, recs[i].klen,
					recs[i].value, recs[i].vlen, &recs[i].lsn));
	for (i = 0; i < nrec; i++)
		EXPECT_OK(shmwal_wait_durable(w, recs[i].part, recs[i].lsn,
					      TH_TIMEOUT_S * SHMWAL_NS_PER_SEC));
	shmwal_close(w);

	run(f, &r, NULL, "dump", f->wal, "--json", NULL);
	expect_status(&r, 0, "dump --json");
	assert_string_equal(r.err, "");
	assert_int_equal(count_lines(r.out), (int)nrec);
	for (line = r.out; *line; seen++) {
		const char *end = strchr(line, '\n'), *err = NULL, *kenc, *venc;
		struct shmwal_reader *rd;
		struct shmwal_record rec;
		const struct jrec *want = NULL;
		uint64_t part, lsn, ns;
		uint8_t *key, *val;
		size_t klen, vlen;
		struct jobj o;
		struct tm tm;
		unsigned long frac;
		char tz;

		assert_non_null(end);
		if (json_parse(line, (size_t)(end - line), &o, &err) < 0)
			fail_msg("line %zu is not valid JSON (%s): %.*s", seen + 1, err,
				 (int)(end - line), line);
		assert_int_equal(o.n, (int)(sizeof(order) / sizeof(order[0])));
		for (i = 0; i < sizeof(order) / sizeof(order[0]); i++)
			assert_string_equal(o.m[i].name, order[i]);
		part = jget(&o, "partition", 0)->num;
		lsn = jget(&o, "lsn", 0)->num;
		for (i = 0; i < nrec; i++)
			if (recs[i].part == part && recs[i].lsn == lsn)
				want = &recs[i];
		if (!want)
			fail_msg("line %zu: no record at p%" PRIu64 " LSN %" PRIu64, seen + 1, part,
				 lsn);
		assert_int_equal(jget(&o, "type", 0)->num, want->type);
		assert_string_equal((const char *)jget(&o, "type_name", 1)->str, want->type_name);
		assert_int_equal(jget(&o, "next_lsn", 0)->num,
				 lsn + SHMWAL_ALIGN_UP(SHMWAL_FRAME_HDR + want->klen + want->vlen));
		key = jbytes(&o, "key", &klen, &kenc);
		val = jbytes(&o, "value", &vlen, &venc);
		assert_int_equal(jget(&o, "key_len", 0)->num, want->klen);
		assert_int_equal(jget(&o, "value_len", 0)->num, want->vlen);
		assert_int_equal(klen, want->klen);
		assert_int_equal(vlen, want->vlen);
		assert_memory_equal(key, want->key, klen);
		assert_memory_equal(val, want->value, vlen);
		if (strcmp(kenc, want->kenc) || strcmp(venc, want->venc))
			fail_msg("p%" PRIu64 " LSN %" PRIu64 ": encodings %s/%s, expected %s/%s",
				 part, lsn, kenc, venc, want->kenc, want->venc);
		free(key);
		free(val);
		/* the timestamp readers see, and its RFC 3339 form */
		EXPECT_OK(shmwal_reader_open(f->wal, (uint32_t)part, lsn, &rd));
		EXPECT_OK(shmwal_reader_next(rd, &rec, 0));
		shmwal_reader_close(rd);
		ns = jget(&o, "timestamp_ns", 0)->num;
		assert_true(ns == rec.timestamp_ns);
		memset(&tm, 0, sizeof(tm));
		if (sscanf((const char *)jget(&o, "timestamp", 1)->str,
			   "%4d-%2d-%2dT%2d:%2d:%2d.%9lu%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
			   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &frac, &tz) != 8 ||
		    tz != 'Z' || jget(&o, "timestamp", 1)->len != 30)
			fail_msg("timestamp %s", (const char *)jget(&o, "timestamp", 1)->str);
		tm.tm_year -= 1900;
		tm.tm_mon -= 1;
		assert_true((uint64_t)timegm(&tm) * SHMWAL_NS_PER_SEC + frac == ns);
		jobj_free(&o);
		line = end + 1;
	}
	assert_int_equal(seen, nrec);
	run_free(&r);

	/* one partition; the text dump keeps one line per record whatever the bytes */
	run(f, &r, NULL, "dump", f->wal, "--json", "--partition", "1", NULL);
	expect_status(&r, 0, "dump --json --partition 1");
	assert_int_equal(count_lines(r.out), 3);
	assert_null(strstr(r.out, "\"partition\":0"));
	run_free(&r);
	run(f, &r, NULL, "dump", f->wal, NULL);
	expect_status(&r, 0, "dump");
	assert_int_equal(count_lines(r.out), (int)nrec);
	expect_text(r.out, "value=0xfffe0080", "dump");
	run_free(&r);
	flusher_stop(f);
}

/* ---- repair and truncate ------------------------------------------------------------------- */

/* Partition 0's segments' first LSNs (ascending) into firsts[]; returns how many. */
static int list_segments(const struct fx *f, uint64_t *firsts, int max)
{
	char pdir[4200];
	struct dirent *e;
	int n = 0;
	DIR *d;

	snprintf(pdir, sizeof(pdir), "%s/p000", f->wal);
	d = opendir(pdir);
	assert_non_null(d);
	while ((e = readdir(d))) {
		uint64_t first;

		if (shmwal_segment_name_parse(e->d_name, &first) == 0) {
			assert_true(n < max);
			firsts[n++] = first;
		}
	}
	closedir(d);
	for (int i = 1; i < n; i++) /* insertion sort: a handful */
		for (int j = i; j > 0 && firsts[j - 1] > firsts[j]; j--) {
			uint64_t t = firsts[j];

			firsts[j] = firsts[j - 1];
			firsts[j - 1] = t;
		}
	return n;
}

static void seg_file(const struct fx *f, uint64_t first, char *buf, size_t len)
{
	char name[32];

	shmwal_segment_name(name, first);
	assert_true(snprintf(buf, len, "%s/p000/%s", f->wal, name) < (int)len);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every file under the WAL directory (two levels) with its size and checksum, sorted: what a
 * command that must change nothing must leave equal. Caller frees. */
static char *snapshot(const char *dir)
{
	char *lines[512], *out;
	size_t n = 0, len = 1;
	const char *subs[] = {"", "p000", "p001", "quarantine"};

	for (size_t s = 0; s < sizeof(subs) / sizeof(subs[0]); s++) {
		char path[4300];
		struct dirent *e;
		DIR *d;

		snprintf(path, sizeof(path), "%s/%s", dir, subs[s]);
		if (!(d = opendir(path)))
			continue;
		while ((e = readdir(d))) {
			char file[4600];
			struct stat st;
			size_t flen = 0;
			char *bytes;

			if (e->d_name[0] == '.')
				continue;
			snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
			if (lstat(file, &st) < 0 || S_ISDIR(st.st_mode))
				continue;
			bytes = th_file_read(file, &flen);
			assert_true(n < sizeof(lines) / sizeof(lines[0]));
			assert_true(asprintf(&lines[n], "%s/%s %zu %08x\n", subs[s], e->d_name,
					     flen, bytes ? shmwal_crc32c(0, bytes, flen) : 0) > 0);
			len += strlen(lines[n++]);
			free(bytes);
		}
		closedir(d);
	}
	qsort(lines, n, sizeof(lines[0]), cmp_str);
	out = malloc(len);
	assert_non_null(out);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		strcat(out, lines[i]);
		free(lines[i]);
	}
	return out;
}

static void expect_unchanged(const char *before, const char *dir, const char *what)
{
	char *now = snapshot(dir);

	if (strcmp(before, now) != 0)
		fail_msg("%s changed the WAL directory:\n--- before:\n%s--- after:\n%s", what,
			 before, now);
	free(now);
}

/* The path of the one quarantined file for partition 0 and first LSN `first`. */
static void quarantined(const struct fx *f, uint64_t first, char *buf, size_t len)
{
	char q[4200], prefix[64], name[32];
	struct dirent *e;
	int found = 0;
	DIR *d;

	shmwal_segment_name(name, first);
	snprintf(prefix, sizeof(prefix), "p000-%s.", name);
	snprintf(q, sizeof(q), "%s/quarantine", f->wal);
	d = opendir(q);
	assert_non_null(d);
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, prefix, strlen(prefix))) {
			assert_null(strstr(e->d_name, ".partial"));
			assert_true(snprintf(buf, len, "%s/%s", q, e->d_name) < (int)len);
			found++;
		}
	closedir(d);
	if (found != 1)
		fail_msg("%d files %s* in %s, expected 1", found, prefix, q);
}

struct rec_copy {
	uint64_t lsn;
	uint32_t len;
	char value[64];
};

/* Every record of partition 0 (values are 60 bytes: make_multi_segment_wal). */
static struct rec_copy *read_all(const struct fx *f, size_t *n)
{
	struct rec_copy *v = calloc(4000, sizeof(*v));
	struct shmwal_reader *r;
	struct shmwal_record rec;
	int rc;

	assert_non_null(v);
	*n = 0;
	EXPECT_OK(shmwal_reader_open(f->wal, 0, SHMWAL_LSN_OLDEST, &r));
	while ((rc = shmwal_reader_next(r, &rec, 0)) == 0) {
		assert_true(*n < 4000 && rec.value_len <= sizeof(v->value));
		v[*n].lsn = rec.lsn;
		v[*n].len = rec.value_len;
		memcpy(v[*n].value, rec.value, rec.value_len);
		++*n;
	}
	shmwal_reader_close(r);
	if (rc != -ETIMEDOUT)
		fail_msg("reading the log: %d: %s", rc, shmwal_last_error());
	return v;
}

/* The log holds exactly the records of `all` below `end`, byte for byte. */
static void expect_prefix(const struct fx *f, const struct rec_copy *all, size_t nall, uint64_t end)
{
	size_t n, want = 0;
	struct rec_copy *now = read_all(f, &n);

	while (want < nall && all[want].lsn < end)
		want++;
	assert_int_equal(n, want);
	for (size_t i = 0; i < n; i++) {
		assert_true(now[i].lsn == all[i].lsn);
		assert_int_equal(now[i].len, all[i].len);
		assert_memory_equal(now[i].value, all[i].value, all[i].len);
	}
	free(now);
}

/* A new record appended after a repair gets the LSN the log was cut at. */
static void expect_continues_at(struct fx *f, uint64_t lsn)
{
	char want[128];
	struct run r;

	flusher_start(f, "--quiet");
	run(f, &r, "after the repair\n", "append", f->wal, NULL);
	expect_status(&r, 0, "append after the repair");
	snprintf(want, sizeof(want), "LSN %" PRIu64 "..%" PRIu64 ", durable", lsn, lsn);
	expect_text(r.out, want, "append stdout");
	run_free(&r);
	flusher_stop(f);
	run(f, &r, NULL, "verify", f->wal, NULL);
	expect_status(&r, 0, "verify after appending past the cut");
	run_free(&r);
	snprintf(want, sizeof(want), "%" PRIu64, lsn);
	run(f, &r, NULL, "tail", f->wal, "--from", want, NULL);
	expect_status(&r, 0, "tail from the cut");
	assert_int_equal(count_lines(r.out), 1);
	expect_text(r.out, "\"after the repair\"", "tail stdout");
	run_free(&r);
}

/*
 * A damaged frame in the middle of a sealed segment (the second of five): verify fails naming
 * it; repair --auto cuts exactly at its LSN, keeps everything before it intact and readable,
 * puts the later segments and the cut-off bytes in the quarantine byte for byte; verify
 * passes after, and a flusher goes on from the cut.
 */
static void test_cli_repair_auto(void **state)
{
	struct fx *f = *state;
	uint64_t firsts[16], cut, off, keep;
	char seg[4300], path[4400], want[4600];
	struct shmwal_segment_header h, h0;
	char *orig[16], *bytes;
	size_t orig_len[16], len, nall;
	struct rec_copy *all;
	const char *why;
	struct run r;
	int n, k = 1, i;

	make_multi_segment_wal(f);
	n = list_segments(f, firsts, 16);
	assert_true(n >= 4);
	all = read_all(f, &nall);
	assert_int_equal(nall, 3000);
	seg_file(f, firsts[k], seg, sizeof(seg));
	off = damage_middle_frame(seg);
	cut = firsts[k] + off - SHMWAL_SEG_HDR;
	keep = SHMWAL_SEG_HDR + cut - firsts[k];
	for (i = 0; i < n; i++) {
		seg_file(f, firsts[i], path, sizeof(path));
		orig[i] = th_file_read(path, &orig_len[i]);
		assert_non_null(orig[i]);
	}

	run(f, &r, NULL, "verify", f->wal, NULL);
	expect_status(&r, 1, "verify of the damaged log");
	snprintf(want, sizeof(want),
		 "DAMAGE %s offset %" PRIu64 " (LSN %" PRIu64 "): frame checksum", seg, off, cut);
	expect_text(r.out, want, "verify stdout");
	snprintf(want, sizeof(want), "intact up to LSN %" PRIu64, cut);
	expect_text(r.out, want, "verify stdout");
	assert_int_equal(strstr(r.out, "DAMAGE") - r.out, 0); /* the first line, and the only */
	assert_null(strstr(r.out + 1, "DAMAGE "));
	run_free(&r);

	run(f, &r, NULL, "repair", f->wal, "--auto", NULL);
	expect_status(&r, 0, "repair --auto");
	snprintf(want, sizeof(want), "DAMAGE %s offset %" PRIu64 " (LSN %" PRIu64 ")", seg, off,
		 cut);
	expect_text(r.out, want, "repair stdout");
	snprintf(want, sizeof(want),
		 "p0: the log now ends at LSN %" PRIu64 " (it ended at LSN %" PRIu64
		 "): %d segment files moved",
		 cut, all[nall - 1].lsn + 96, n - 1 - k);
	expect_text(r.out, want, "repair stdout");
	run_free(&r);

	/* the partition keeps segments 0..k, k cut at the damage; the rest is quarantined */
	assert_int_equal(list_segments(f, firsts, 16), k + 1);
	for (i = 0; i <= k; i++) {
		seg_file(f, firsts[i], path, sizeof(path));
		bytes = th_file_read(path, &len);
		assert_non_null(bytes);
		assert_int_equal(len, i < k ? orig_len[i] : keep);
		assert_memory_equal(bytes, orig[i], len);
		free(bytes);
	}
	for (i = k + 1; i < n; i++) {
		quarantined(f, firsts[i], path, sizeof(path));
		bytes = th_file_read(path, &len);
		assert_int_equal(len, orig_len[i]);
		assert_memory_equal(bytes, orig[i], len);
		free(bytes);
	}
	quarantined(f, cut, path, sizeof(path));
	bytes = th_file_read(path, &len);
	assert_int_equal(len, SHMWAL_SEG_HDR + orig_len[k] - keep);
	memcpy(&h, bytes, sizeof(h));
	memcpy(&h0, orig[k], sizeof(h0));
	assert_int_equal(shmwal_segment_header_check(&h, &why), 0);
	assert_true(h.first_lsn == cut && h.partition == 0 && h.instance == h0.instance);
	assert_memory_equal(bytes + SHMWAL_SEG_HDR, orig[k] + keep, orig_len[k] - keep);
	free(bytes);
	snprintf(path, sizeof(path), "%s/quarantine", f->wal);
	assert_int_equal(count_entries(path, 0), n - k);

	run(f, &r, NULL, "verify", f->wal, NULL);
	expect_status(&r, 0, "verify after the repair");
	snprintf(want, sizeof(want), "LSN 0..%" PRIu64 "\n", cut);
	expect_text(r.out, want, "verify stdout");
	run_free(&r);
	expect_prefix(f, all, nall, cut);
	/* a second repair finds nothing to do */
	run(f, &r, NULL, "repair", f->wal, "--auto", NULL);
	expect_status(&r, 0, "repair --auto again");
	expect_text(r.out, "no damage, nothing to repair", "repair stdout");
	run_free(&r);
	expect_continues_at(f, cut);
	for (i = 0; i < n; i++)
		free(orig[i]);
	free(all);
}

/*
 * --cut-at: an LSN that is not a record boundary, or past the end of the log, fails and
 * changes nothing; a boundary at a segment's start and one inside a segment cut the log
 * there; cutting at the end again is a no-op.
 */
static void test_cli_repair_cut_at(void **state)
{
	struct fx *f = *state;
	uint64_t firsts[16], c1, c2;
	char num[32], num2[32], *snap;
	struct rec_copy *all;
	size_t nall;
	struct run r;
	int n;

	make_multi_segment_wal(f);
	n = list_segments(f, firsts, 16);
	assert_true(n >= 4);
	all = read_all(f, &nall);
	snap = snapshot(f->wal);

	snprintf(num, sizeof(num), "%" PRIu64, firsts[2] + 96 * 5 + 8);
	run(f, &r, NULL, "repair", f->wal, "--partition", "0", "--cut-at", num, NULL);
	expect_status(&r, 1, "repair --cut-at (not a boundary)");
	expect_text(r.err, "not a frame boundary", "repair stderr");
	run_free(&r);
	snprintf(num, sizeof(num), "%" PRIu64, all[nall - 1].lsn + 96 * 2);
	run(f, &r, NULL, "repair", f->wal, "--partition", "0", "--cut-at", num, NULL);
	expect_status(&r, 1, "repair --cut-at (past the end)");
	expect_text(r.err, "past the end", "repair stderr");
	run_free(&r);
	run(f, &r, NULL, "repair", f->wal, "--partition", "1", "--cut-at", "0", NULL);
	expect_status(&r, 1, "repair --partition 1 (the WAL has one)");
	expect_text(r.err, "out of range", "repair stderr");
	run_free(&r);
	expect_unchanged(snap, f->wal, "a refused repair");
	free(snap);

	/* at a segment's first LSN: that segment keeps its header only */
	c1 = firsts[3];
	snprintf(num, sizeof(num), "%" PRIu64, c1);
	run(f, &r, NULL, "repair", f->wal, "--partition=0", "--cut-at", num, NULL);
	expect_status(&r, 0, "repair --cut-at (a segment's start)");
	run_free(&r);
	assert_int_equal(list_segments(f, firsts, 16), 4);
	expect_prefix(f, all, nall, c1);
	run(f, &r, NULL, "verify", f->wal, NULL);
	expect_status(&r, 0, "verify");
	run_free(&r);

	/* inside a segment, written in hex */
	c2 = firsts[2] + 96 * 5;
	snprintf(num2, sizeof(num2), "0x%" PRIx64, c2);
	run(f, &r, NULL, "repair", f->wal, "--partition", "0", "--cut-at", num2, NULL);
	expect_status(&r, 0, "repair --cut-at (inside a segment)");
	snprintf(num, sizeof(num), "ends at LSN %" PRIu64, c2);
	expect_text(r.out, num, "repair stdout");
	run_free(&r);
	assert_int_equal(list_segments(f, firsts, 16), 3);
	expect_prefix(f, all, nall, c2);

	/* again: nothing to cut */
	snap = snapshot(f->wal);
	run(f, &r, NULL, "repair", f->wal, "--partition", "0", "--cut-at", num2, NULL);
	expect_status(&r, 0, "repair --cut-at (the end)");
	expect_text(r.out, "nothing to cut", "repair stdout");
	run_free(&r);
	expect_unchanged(snap, f->wal, "a repair at the end of the log");
	free(snap);
	expect_continues_at(f, c2);
	free(all);
}

/*
 * A repair refuses while a flusher runs (it holds the flusher lock), and while the shared
 * memory of a flusher that died is left (its rings may hold records the files do not): exit
 * 1, a message saying why, and nothing changed.
 */
static void test_cli_repair_refuses_live_log(void **state)
{
	struct fx *f = *state;
	uint64_t firsts[16];
	char seg[4300], pid[32], *snap;
	struct run r;

	make_multi_segment_wal(f);
	list_segments(f, firsts, 16);
	seg_file(f, firsts[1], seg, sizeof(seg));
	damage_middle_frame(seg); /* something to repair */

	flusher_start(f, "--quiet");
	snap = snapshot(f->wal);
	run(f, &r, NULL, "repair", f->wal, "--auto", NULL);
	expect_status(&r, 1, "repair --auto while a flusher runs");
	expect_text(r.err, "a flusher", "repair stderr");
	expect_text(r.err, "is running", "repair stderr");
	snprintf(pid, sizeof(pid), "(pid %d)", (int)f->flusher);
	expect_text(r.err, pid, "repair stderr");
	run_free(&r);
	run(f, &r, NULL, "repair", f->wal, "--partition", "0", "--cut-at", "0", NULL);
	expect_status(&r, 1, "repair --cut-at while a flusher runs");
	expect_text(r.err, "is running", "repair stderr");
	run_free(&r);
	expect_unchanged(snap, f->wal, "a repair refused while a flusher runs");
	free(snap);

	/* a flusher that died leaves its shared memory */
	assert_int_equal(kill(f->flusher, SIGKILL), 0);
	assert_int_equal(th_wait(f->flusher, TH_TIMEOUT_S), 128 + SIGKILL);
	f->flusher = 0;
	snap = snapshot(f->wal);
	run(f, &r, NULL, "repair", f->wal, "--auto", NULL);
	expect_status(&r, 1, "repair --auto after a flusher died");
	expect_text(r.err, "shared memory", "repair stderr");
	run_free(&r);
	expect_unchanged(snap, f->wal, "a repair refused after a flusher died");
	free(snap);

	/* the flusher adopts the rings and, stopped with no producer attached, removes them */
	flusher_start(f, "--quiet");
	flusher_stop(f);
	run(f, &r, NULL, "repair", f->wal, "--auto", NULL);
	expect_status(&r, 0, "repair --auto once the flusher stopped");
	run_free(&r);
	run(f, &r, NULL, "verify", f->wal, NULL);
	expect_status(&r, 0, "verify after the repair");
	run_free(&r);
}

/*
 * truncate removes exactly the segments that end at or below the LSN, says how many and where
 * the log starts now; readers asking for a removed LSN get -ERANGE (tail: exit 1), the rest
 * reads on; the segment being written is never removed.
 */
static void test_cli_truncate(void **state)
{
	struct fx *f = *state;
	uint64_t firsts[16], now[16];
	struct shmwal_reader *rd;
	struct shmwal_record rec;
	char num[32], want[128];
	struct run r;
	int n, i;

	make_multi_segment_wal(f);
	n = list_segments(f, firsts, 16);
	assert_true(n >= 4);

	snprintf(num, sizeof(num), "%" PRIu64, firsts[2]);
	run(f, &r, NULL, "truncate", f->wal, "0", num, NULL);
	expect_status(&r, 0, "truncate at the third segment");
	snprintf(want, sizeof(want),
		 "partition 0: removed 2 segments; the log starts at LSN %" PRIu64 "\n", firsts[2]);
	expect_text(r.out, want, "truncate stdout");
	run_free(&r);
	assert_int_equal(list_segments(f, now, 16), n - 2);
	for (i = 0; i < n - 2; i++)
		assert_true(now[i] == firsts[i + 2]);

	/* removed LSNs: -ERANGE; the first kept one reads */
	assert_int_equal(shmwal_reader_open(f->wal, 0, 96 * 10, &rd), -ERANGE);
	assert_int_equal(shmwal_reader_open(f->wal, 0, firsts[1], &rd), -ERANGE);
	assert_int_equal(shmwal_reader_open(f->wal, 0, firsts[2] - 96, &rd), -ERANGE);
	EXPECT_OK(shmwal_reader_open(f->wal, 0, firsts[2], &rd));
	EXPECT_OK(shmwal_reader_next(rd, &rec, 0));
	assert_true(rec.lsn == firsts[2]);
	shmwal_reader_close(rd);
	run(f, &r, NULL, "tail", f->wal, "--from", "960", NULL);
	expect_status(&r, 1, "tail --from a truncated LSN");
	expect_text(r.err, "truncated away", "tail stderr");
	run_free(&r);
	snprintf(num, sizeof(num), "%" PRIu64, firsts[1]);
	run(f, &r, NULL, "repair", f->wal, "--partition", "0", "--cut-at", num, NULL);
	expect_status(&r, 1, "repair --cut-at a truncated LSN");
	expect_text(r.err, "truncated away", "repair stderr");
	run_free(&r);

	/* inside a segment: only whole segments below it go */
	snprintf(num, sizeof(num), "%" PRIu64, firsts[3] + 96);
	run(f, &r, NULL, "truncate", f->wal, "0", num, NULL);
	expect_status(&r, 0, "truncate inside a segment");
	expect_text(r.out, "removed 1 segment;", "truncate stdout");
	run_free(&r);
	run(f, &r, NULL, "truncate", f->wal, "0", num, NULL);
	expect_status(&r, 0, "truncate again");
	expect_text(r.out, "removed 0 segments", "truncate stdout");
	run_free(&r);
	/* never the last segment */
	run(f, &r, NULL, "truncate", f->wal, "0", "0xffffffffffffff", NULL);
	expect_status(&r, 0, "truncate everything");
	run_free(&r);
	assert_int_equal(list_segments(f, now, 16), 1);
	assert_true(now[0] == firsts[n - 1]);
	run(f, &r, NULL, "verify", f->wal, NULL);
	expect_status(&r, 0, "verify after truncation");
	run_free(&r);

	run(f, &r, NULL, "truncate", f->wal, "7", "0", NULL);
	expect_status(&r, 1, "truncate of partition 7");
	expect_text(r.err, "partition 7", "truncate stderr");
	run_free(&r);
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
	    T(test_cli_json_parser_is_strict),
	    T(test_cli_dump_json),
	    T(test_cli_repair_auto),
	    T(test_cli_repair_cut_at),
	    T(test_cli_repair_refuses_live_log),
	    T(test_cli_truncate),
	};
#undef T

	find_binary();
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
