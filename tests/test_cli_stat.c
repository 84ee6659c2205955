/* SPDX-License-Identifier: MIT */
/*
 * test_cli_stat.c - `shmwal stat` (text, --json, --prometheus, --watch, --output) and
 * `shmwal retention`, run as the real program (th_shmwal_spawn) against a WAL with a running
 * flusher. The JSON is checked by a small validator here and the exposition format line by
 * line: what a script or a Prometheus server would reject fails the test.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "helpers.h"

struct fx {
	char *tmp;
	char wal[4096];
	char out[4200];
	pid_t flusher;
	struct shmwal *w;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->tmp = th_tmpdir("clistat");
	snprintf(f->wal, sizeof(f->wal), "%s/wal \"quoted\"", f->tmp); /* labels must escape */
	snprintf(f->out, sizeof(f->out), "%s/out", f->tmp);
	EXPECT_OK(th_create(f->wal, 2, 1 << 20, 64 << 10, 256, SHMWAL_SYNC_ALWAYS));
	f->flusher = th_flusher_start(f->wal, 0);
	assert_true(f->flusher > 0);
	EXPECT_OK(th_open(f->wal, &f->w));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[4400];

	if (f->w)
		shmwal_close(f->w);
	assert_int_equal(th_flusher_stop(f->flusher), 0);
	th_destroy(f->wal);
	snprintf(cmd, sizeof(cmd), "%s/out", f->tmp);
	unlink(cmd);
	rmdir(f->tmp);
	free(f->tmp);
	free(f);
	return 0;
}

/* Runs `shmwal args...`; returns its exit status, its output in *out (caller frees). */
static int run(struct fx *f, char **out, const char *const *args)
{
	pid_t pid;
	int st;

	unlink(f->out);
	pid = th_shmwal_spawn(args, NULL, f->out);
	assert_true(pid > 0);
	st = th_wait(pid, TH_TIMEOUT_S);
	*out = th_file_read(f->out, NULL);
	if (!*out)
		*out = strdup("");
	return st;
}

static void append_n(struct fx *f, uint32_t part, int n)
{
	uint64_t lsn = 0;

	for (int i = 0; i < n; i++)
		EXPECT_OK(shmwal_append(f->w, part, SHMWAL_TYPE_PUT, "k", 1, "v", 1, &lsn));
	EXPECT_OK(shmwal_wait_durable(f->w, part, lsn, (uint64_t)TH_TIMEOUT_S * 1000000000ull));
}

/* ---- a small JSON validator (RFC 8259 syntax): returns the end of one value, or NULL ---- */

static const char *ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

static const char *jvalue(const char *p, int depth);

static const char *jstring(const char *p)
{
	if (*p++ != '"')
		return NULL;
	for (; *p != '"'; p++) {
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p == '\\') {
			p++;
			if (*p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!isxdigit((unsigned char)p[i]))
						return NULL;
				p += 4;
			} else if (!strchr("\"\\/bfnrt", *p) || !*p) {
				return NULL;
			}
		}
	}
	return p + 1;
}

static const char *jnumber(const char *p)
{
	const char *s = p;

	if (*p == '-')
		p++;
	if (!isdigit((unsigned char)*p))
		return NULL;
	if (*p == '0' && isdigit((unsigned char)p[1]))
		return NULL;
	while (isdigit((unsigned char)*p))
		p++;
	if (*p == '.') {
		if (!isdigit((unsigned char)*++p))
			return NULL;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!isdigit((unsigned char)*p))
			return NULL;
		while (isdigit((unsigned char)*p))
			p++;
	}
	return p > s ? p : NULL;
}

static const char *jcontainer(const char *p, int depth, char close, int object)
{
	p = ws(p + 1);
	if (*p == close)
		return p + 1;
	for (;;) {
		if (object) {
			if (!(p = jstring(p)))
				return NULL;
			p = ws(p);
			if (*p++ != ':')
				return NULL;
		}
		if (!(p = jvalue(ws(p), depth + 1)))
			return NULL;
		p = ws(p);
		if (*p == close)
			return p + 1;
		if (*p++ != ',')
			return NULL;
		p = ws(p);
	}
}

static const char *jvalue(const char *p, int depth)
{
	if (depth > 64)
		return NULL;
	switch (*p) {
	case '{':
		return jcontainer(p, depth, '}', 1);
	case '[':
		return jcontainer(p, depth, ']', 0);
	case '"':
		return jstring(p);
	case 't':
		return strncmp(p, "true", 4) ? NULL : p + 4;
	case 'f':
		return strncmp(p, "false", 5) ? NULL : p + 5;
	case 'n':
		return strncmp(p, "null", 4) ? NULL : p + 4;
	default:
		return jnumber(p);
	}
}

/* 1 when `line` (up to its newline) is exactly one JSON object. */
static int json_line_ok(const char *line)
{
	const char *e = *line == '{' ? jvalue(line, 0) : NULL;

	return e && (*e == '\n' || *e == '\0');
}

/* The number after "key": in a JSON text (the first occurrence). */
static uint64_t json_u64(const char *text, const char *key)
{
	char pat[128];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(text, pat);
	if (!p)
		fail_msg("no %s in %s", key, text);
	return strtoull(p + strlen(pat), NULL, 10);
}

/* ---- the tests ---------------------------------------------------------------------------- */

static void test_stat_text_and_json(void **state)
{
	struct fx *f = *state;
	const char *text[] = {"stat", f->wal, NULL}, *json[] = {"stat", f->wal, "--json", NULL};
	char *out;

	append_n(f, 1, 300);
	assert_int_equal(run(f, &out, text), 0);
	assert_non_null(strstr(out, "partition 1"));
	assert_non_null(strstr(out, "durable"));
	assert_non_null(strstr(out, "300 appends"));
	free(out);
	assert_int_equal(run(f, &out, json), 0);
	assert_true(json_line_ok(out));
	assert_int_equal(json_u64(out, "appends"), 300);
	assert_int_equal(json_u64(out, "producers"), 1);
	assert_non_null(strstr(out, "\"running\":true"));
	assert_non_null(strstr(out, "wal \\\"quoted\\\"")); /* the path, escaped */
	assert_int_equal(json_u64(strstr(out, "{\"partition\":1"), "records_durable"), 300);
	assert_int_equal(json_u64(strstr(out, "{\"partition\":1"), "lag_bytes"), 0);
	free(out);
	/* the validator itself rejects what it must */
	assert_false(json_line_ok("{\"a\":1,}\n"));
	assert_false(json_line_ok("{\"a\":\"x\ty\"}\n"));
	assert_false(json_line_ok("{\"a\":01}\n"));
	assert_false(json_line_ok("{\"a\":[1 2]}\n"));
	assert_true(json_line_ok("{\"a\":[1,2.5e3,\"\\u00e9\",true,null,{}]}\n"));
}

/* Every sample line: shmwal_<name>{wal="...",...} <number>, preceded by its HELP and TYPE. */
static void check_exposition(const char *text, const char *wal_escaped, uint64_t *samples)
{
	char declared[64][96];
	unsigned ndecl = 0;
	const char *line = text;

	*samples = 0;
	while (*line) {
		const char *nl = strchr(line, '\n'), *brace, *val;
		char name[96];
		size_t n;

		assert_non_null(nl); /* every line ends with a newline */
		if (!strncmp(line, "# HELP shmwal_", 14) || !strncmp(line, "# TYPE shmwal_", 14)) {
			if (line[2] == 'T') {
				assert_true(ndecl < 64);
				n = strcspn(line + 7, " ");
				assert_true(n < sizeof(declared[0]));
				memcpy(declared[ndecl], line + 7, n);
				declared[ndecl++][n] = '\0';
				assert_true(!strncmp(line + 7 + n, " gauge\n", 7) ||
					    !strncmp(line + 7 + n, " counter\n", 9) ||
					    !strncmp(line + 7 + n, " histogram\n", 11));
			}
			line = nl + 1;
			continue;
		}
		brace = strchr(line, '{');
		assert_true(brace && brace < nl && !strncmp(line, "shmwal_", 7));
		n = (size_t)(brace - line);
		assert_true(n < sizeof(name));
		memcpy(name, line, n);
		name[n] = '\0';
		for (size_t i = 0; i < n; i++)
			assert_true(isalnum((unsigned char)name[i]) || name[i] == '_');
		/* declared: the name, or the histogram's name before _bucket/_sum/_count */
		{
			int ok = 0;

			for (unsigned d = 0; d < ndecl && !ok; d++) {
				size_t dl = strlen(declared[d]);

				ok = !strcmp(name, declared[d]) ||
				     (!strncmp(name, declared[d], dl) &&
				      (!strcmp(name + dl, "_bucket") ||
				       !strcmp(name + dl, "_sum") || !strcmp(name + dl, "_count")));
			}
			if (!ok)
				fail_msg("sample %s before its TYPE line", name);
		}
		assert_int_equal(strncmp(brace + 1, "wal=\"", 5), 0);
		assert_int_equal(strncmp(brace + 6, wal_escaped, strlen(wal_escaped)), 0);
		val = strstr(brace, "} ");
		assert_true(val && val < nl);
		{
			char *end;

			strtod(val + 2, &end);
			assert_true(end == nl && end > val + 2);
		}
		(*samples)++;
		line = nl + 1;
	}
}

static void test_stat_prometheus(void **state)
{
	struct fx *f = *state;
	const char *args[] = {"stat", f->wal, "--prometheus", NULL};
	char *out, esc[4200], *p, *q;
	uint64_t samples, prev = 0, count;

	append_n(f, 0, 200);
	assert_int_equal(run(f, &out, args), 0);
	/* the WAL path as a label value: backslash and quote escaped */
	for (p = f->wal, q = esc; *p; p++) {
		if (*p == '"' || *p == '\\')
			*q++ = '\\';
		*q++ = *p;
	}
	*q = '\0';
	check_exposition(out, esc, &samples);
	assert_true(samples > 50);
	assert_non_null(strstr(out, "shmwal_appends_total{wal="));
	/* the histogram: cumulative buckets, +Inf equal to the count, which is the syncs */
	for (p = out; (p = strstr(p, "shmwal_sync_seconds_bucket{")); p = strchr(p, '\n')) {
		char line[512];
		size_t n = strcspn(p, "\n");

		assert_true(n < sizeof(line));
		memcpy(line, p, n);
		line[n] = '\0';
		if (!strstr(line, "partition=\"0\""))
			continue;
		assert_true(strtoull(strstr(line, "} ") + 2, NULL, 10) >= prev);
		prev = strtoull(strstr(line, "} ") + 2, NULL, 10);
		if (strstr(line, "le=\"+Inf\""))
			break;
	}
	assert_non_null(p); /* reached +Inf */
	count = strtoull(strstr(strstr(out, "shmwal_sync_seconds_count{"), "} ") + 2, NULL, 10);
	assert_true(count > 0);
	assert_int_equal(prev, count);
	free(out);
}

/* --watch with --output: the file is replaced atomically until SIGTERM, which exits 0. */
static void test_stat_watch_output(void **state)
{
	struct fx *f = *state;
	char file[4300], *text;
	const char *args[] = {"stat", f->wal,	  "--prometheus", "--watch",
			      "0.05", "--output", file,		  NULL};
	uint64_t samples;
	time_t deadline = time(NULL) + TH_TIMEOUT_S;
	struct stat st;
	pid_t pid;

	snprintf(file, sizeof(file), "%s/metrics.prom", f->tmp);
	pid = th_shmwal_spawn(args, NULL, NULL);
	assert_true(pid > 0);
	/* written, then replaced: its inode changes */
	while (stat(file, &st) < 0) {
		assert_true(time(NULL) <= deadline);
		usleep(10000);
	}
	{
		ino_t first = st.st_ino;

		while (stat(file, &st) == 0 && st.st_ino == first) {
			assert_true(time(NULL) <= deadline);
			usleep(10000);
		}
	}
	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_int_equal(th_wait(pid, TH_TIMEOUT_S), 0);
	text = th_file_read(file, NULL);
	assert_non_null(text);
	check_exposition(text, "", &samples); /* "" : the label's start only */
	assert_true(samples > 50);
	free(text);
	/* no temporary file left behind */
	{
		char tmp[4400];

		snprintf(tmp, sizeof(tmp), "%s.tmp.%d", file, (int)pid);
		assert_int_equal(access(tmp, F_OK), -1);
	}
	unlink(file);
}

static void test_retention_command(void **state)
{
	struct fx *f = *state;
	const char *set[] = {"retention", f->wal, "--max-segments", "3",
			     "--max-age", "7d",	  "--rotate-age",   "90m",
			     NULL};
	const char *own[] = {"retention", f->wal, "--partition", "1", "--max-bytes", "1M", NULL};
	const char *clear[] = {"retention", f->wal, "--partition", "1", "--clear", NULL};
	const char *show[] = {"retention", f->wal, NULL};
	const char *bad[][8] = {
	    {"retention", f->wal, "--max-age", "5", NULL},	 /* no unit */
	    {"retention", f->wal, "--max-age", "5x", NULL},	 /* bad unit */
	    {"retention", f->wal, "--max-segments", "-1", NULL}, /* negative */
	    {"retention", f->wal, "--partition", "1", "--clear", "--max-segments", "2", NULL},
	    {"retention", f->wal, "--bogus", NULL},
	    {"retention", NULL},
	};
	struct shmwal_retention r, before;
	char *out;

	assert_int_equal(run(f, &out, set), 0);
	free(out);
	EXPECT_OK(shmwal_retention_get(f->wal, 0, &r));
	assert_int_equal(r.max_segments, 3);
	assert_int_equal(r.max_bytes, 0);
	assert_int_equal(r.max_age_ms, 7ull * 86400000);
	assert_int_equal(r.rotate_age_ms, 90ull * 60000);
	/* a partition's own policy starts from the default */
	assert_int_equal(run(f, &out, own), 0);
	assert_non_null(strstr(out, "(its own)"));
	free(out);
	EXPECT_OK(shmwal_retention_get(f->wal, 1, &r));
	assert_int_equal(r.max_segments, 3);
	assert_int_equal(r.max_bytes, 1 << 20);
	assert_int_equal(r.max_age_ms, 7ull * 86400000);
	EXPECT_OK(shmwal_retention_get(f->wal, 0, &r));
	assert_int_equal(r.max_bytes, 0);
	assert_int_equal(run(f, &out, clear), 0);
	free(out);
	EXPECT_OK(shmwal_retention_get(f->wal, 1, &r));
	assert_int_equal(r.max_bytes, 0);
	assert_int_equal(run(f, &out, show), 0);
	assert_non_null(strstr(out, "default  max_segments 3"));
	assert_null(strstr(out, "(its own)"));
	free(out);
	/* bad usage: exit 2, nothing changed */
	EXPECT_OK(shmwal_retention_get(f->wal, SHMWAL_ALL_PARTITIONS, &before));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int st = run(f, &out, bad[i]);

		if (st != 2)
			fail_msg("case %zu: exit %d, output: %s", i, st, out);
		free(out);
	}
	EXPECT_OK(shmwal_retention_get(f->wal, SHMWAL_ALL_PARTITIONS, &r));
	assert_memory_equal(&r, &before, sizeof(r));
	/* no WAL: exit 1 with a sentence */
	{
		const char *none[] = {"retention", "/nonexistent-shmwal-dir", NULL};

		assert_int_equal(run(f, &out, none), 1);
		assert_non_null(strstr(out, "no WAL"));
		free(out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_stat_text_and_json, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stat_prometheus, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stat_watch_output, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retention_command, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
