/* SPDX-License-Identifier: MIT */
/*
 * test_config.c - configuration checks, shmwal_create() and the DIR/meta file.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "shmwal.h"
#include "meta.h"
#include "helpers.h"

/* ---- helpers ---------------------------------------------------------------------------- */

struct fixture {
	char *tmp;	/* from th_tmpdir, removed by th_destroy */
	char wal[4096]; /* tmp/wal: not created yet */
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	fx->tmp = th_tmpdir("config");
	if (!fx->tmp) {
		free(fx);
		return -1;
	}
	if (snprintf(fx->wal, sizeof(fx->wal), "%s/wal", fx->tmp) >= (int)sizeof(fx->wal))
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	th_destroy(fx->tmp);
	free(fx->tmp);
	free(fx);
	return 0;
}

/* Sets an error detail that names no configuration field, so the next one is fresh. */
static void reset_error(void)
{
	assert_int_equal(shmwal_config_validate(NULL), -EINVAL);
	assert_null(strstr(shmwal_last_error(), "partitions"));
}

static void assert_cfg_equal(const struct shmwal_config *a, const struct shmwal_config *b)
{
	assert_int_equal(a->partitions, b->partitions);
	assert_int_equal(a->mode, b->mode);
	assert_int_equal(a->ring_bytes, b->ring_bytes);
	assert_int_equal(a->segment_bytes, b->segment_bytes);
	assert_int_equal(a->max_key, b->max_key);
	assert_int_equal(a->max_value, b->max_value);
	assert_int_equal(a->sync, b->sync);
	assert_int_equal(a->sync_interval_us, b->sync_interval_us);
	assert_int_equal(a->sync_interval_bytes, b->sync_interval_bytes);
	assert_int_equal(a->stall_timeout_ms, b->stall_timeout_ms);
	assert_int_equal(a->backend, b->backend);
}

/* A configuration with every field away from its default. */
static void odd_config(struct shmwal_config *c)
{
	shmwal_config_default(c);
	c->partitions = 3;
	c->mode = 0640;
	c->ring_bytes = 128u << 10;
	c->segment_bytes = 1u << 20;
	c->max_key = 100;
	c->max_value = 2000;
	c->sync = SHMWAL_SYNC_INTERVAL;
	c->sync_interval_us = 500;
	c->sync_interval_bytes = 4096;
	c->stall_timeout_ms = 1234;
}

/* snprintf that fails the test instead of truncating. */
static void fmt_path(char *buf, size_t cap, const char *a, const char *b)
{
	int n = snprintf(buf, cap, "%s/%s", a, b);

	assert_true(n > 0 && (size_t)n < cap);
}

static int exists(const char *dir, const char *name, mode_t type)
{
	char path[8192];
	struct stat st;

	fmt_path(path, sizeof(path), dir, name);
	if (lstat(path, &st) < 0)
		return 0;
	return (st.st_mode & S_IFMT) == type;
}

static size_t read_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, cap);
	close(fd);
	assert_true(n >= 0 && (size_t)n < cap);
	return (size_t)n;
}

static void write_file(const char *path, const char *buf, size_t len)
{
	int fd;

	unlink(path); /* the meta file may be read-only */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

/* Writes DIR/meta from `body` (every line but the checksum) plus a correct "crc" line. */
static void write_meta_with_crc(const char *dir, const char *body)
{
	char path[8192], buf[8192];
	size_t n = strlen(body);

	fmt_path(path, sizeof(path), dir, "meta");
	assert_true(n + 16 < sizeof(buf));
	memcpy(buf, body, n);
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "crc %08x\n", shmwal_crc32c(0, body, n));
	write_file(path, buf, n);
}

/* A meta body in the documented format for instance `inst` and config odd_config(). */
static void odd_meta_body(char *buf, size_t cap, uint64_t inst, const char *extra,
			  const char *skip)
{
	static const char *const lines[] = {
		"# shmwal metadata, written by shmwal_create(); do not edit\n",
		"format 1\n",
		NULL, /* instance */
		"partitions 3\n",
		"ring_bytes 131072\n",
		"segment_bytes 1048576\n",
		"max_key 100\n",
		"max_value 2000\n",
		"sync interval\n",
		"sync_interval_us 500\n",
		"sync_interval_bytes 4096\n",
		"mode 0640\n",
		"stall_timeout_ms 1234\n",
		"backend file\n",
	};
	size_t i, n = 0;

	buf[0] = '\0';
	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		char inst_line[64];
		const char *l = lines[i];

		if (!l) {
			snprintf(inst_line, sizeof(inst_line), "instance %016" PRIx64 "\n", inst);
			l = inst_line;
		}
		if (skip && strncmp(l, skip, strlen(skip)) == 0)
			continue;
		n += (size_t)snprintf(buf + n, cap - n, "%s", l);
		if (extra && i == 7)
			n += (size_t)snprintf(buf + n, cap - n, "%s", extra);
	}
	assert_true(n < cap);
}

/* ---- shmwal_config_default / shmwal_config_validate ------------------------------------- */

static void test_default_valid(void **state)
{
	struct shmwal_config c;

	(void)state;
	memset(&c, 0xa5, sizeof(c));
	shmwal_config_default(&c);
	assert_int_equal(shmwal_config_validate(&c), 0);
	/* the documented defaults */
	assert_int_equal(c.partitions, 1);
	assert_int_equal(c.mode, 0600);
	assert_int_equal(c.ring_bytes, 4u << 20);
	assert_int_equal(c.segment_bytes, 64u << 20);
	assert_int_equal(c.max_key, 1024);
	assert_int_equal(c.max_value, 64u << 10);
	assert_int_equal(c.sync, SHMWAL_SYNC_ALWAYS);
	assert_int_equal(c.sync_interval_us, 1000);
	assert_int_equal(c.sync_interval_bytes, 0);
	assert_int_equal(c.stall_timeout_ms, 10000);
	assert_int_equal(c.backend, SHMWAL_BACKEND_FILE);
	assert_int_equal(shmwal_config_validate(NULL), -EINVAL);
}

struct bad_case {
	const char *what;  /* the field the message must name */
	int rc;
	void (*mutate)(struct shmwal_config *c);
};

static void m_part0(struct shmwal_config *c) { c->partitions = 0; }
static void m_part257(struct shmwal_config *c) { c->partitions = 257; }
static void m_ring_pow2(struct shmwal_config *c) { c->ring_bytes = 3u << 20; }
static void m_ring_small(struct shmwal_config *c) { c->ring_bytes = 32u << 10; }
static void m_ring_small2(struct shmwal_config *c) { c->ring_bytes = (64u << 10) - 1; }
static void m_ring_big(struct shmwal_config *c) { c->ring_bytes = 2ull << 30; }
static void m_ring_zero(struct shmwal_config *c) { c->ring_bytes = 0; }
static void m_key(struct shmwal_config *c) { c->max_key = 65536; }
static void m_frame_big(struct shmwal_config *c) { c->max_value = 2u << 20; }
static void m_frame_big2(struct shmwal_config *c)
{
	c->ring_bytes = 64u << 10;
	c->max_key = 1024;
	c->max_value = (32u << 10) - 1024 - 32 + 1;
}
static void m_frame_small(struct shmwal_config *c)
{
	c->max_key = 0;
	c->max_value = 0;
}
static void m_seg_small(struct shmwal_config *c) { c->segment_bytes = 32u << 10; }
static void m_seg_small2(struct shmwal_config *c) { c->segment_bytes = (64u << 10) - 1; }
static void m_seg_frame(struct shmwal_config *c)
{
	c->max_value = 1u << 20;	/* fits half the 4 MiB ring */
	c->segment_bytes = 512u << 10; /* but not a segment */
}
static void m_sync7(struct shmwal_config *c) { c->sync = (enum shmwal_sync)7; }
static void m_interval0(struct shmwal_config *c)
{
	c->sync = SHMWAL_SYNC_INTERVAL;
	c->sync_interval_us = 0;
	c->sync_interval_bytes = 0;
}
static void m_interval_long(struct shmwal_config *c)
{
	c->sync = SHMWAL_SYNC_INTERVAL;
	c->sync_interval_us = 60u * 1000 * 1000 + 1;
}
static void m_mode_sticky(struct shmwal_config *c) { c->mode = 0644 | 01000; }
static void m_mode_ro(struct shmwal_config *c) { c->mode = 0400; }
static void m_mode_0(struct shmwal_config *c) { c->mode = 0; }
static void m_stall0(struct shmwal_config *c) { c->stall_timeout_ms = 0; }
static void m_backend2(struct shmwal_config *c) { c->backend = (enum shmwal_backend)2; }

static const struct bad_case bad_cases[] = {
	{ "partitions", -EINVAL, m_part0 },
	{ "partitions", -EINVAL, m_part257 },
	{ "ring_bytes", -EINVAL, m_ring_pow2 },
	{ "ring_bytes", -EINVAL, m_ring_small },
	{ "ring_bytes", -EINVAL, m_ring_small2 },
	{ "ring_bytes", -EINVAL, m_ring_big },
	{ "ring_bytes", -EINVAL, m_ring_zero },
	{ "max_key", -EINVAL, m_key },
	{ "max_value", -EINVAL, m_frame_big },
	{ "max_value", -EINVAL, m_frame_big2 },
	{ "max_value", -EINVAL, m_frame_small },
	{ "segment_bytes", -EINVAL, m_seg_small },
	{ "segment_bytes", -EINVAL, m_seg_small2 },
	{ "segment_bytes", -EINVAL, m_seg_frame },
	{ "sync", -EINVAL, m_sync7 },
	{ "sync_interval", -EINVAL, m_interval0 },
	{ "sync_interval_us", -EINVAL, m_interval_long },
	{ "mode", -EINVAL, m_mode_sticky },
	{ "mode", -EINVAL, m_mode_ro },
	{ "mode", -EINVAL, m_mode_0 },
	{ "stall_timeout_ms", -EINVAL, m_stall0 },
	{ "backend", -EINVAL, m_backend2 },
};

static void test_validate_refuses(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct shmwal_config c;
		const char *e;
		int rc;

		shmwal_config_default(&c);
		bad_cases[i].mutate(&c);
		reset_error();
		rc = shmwal_config_validate(&c);
		e = shmwal_last_error();
		if (rc != bad_cases[i].rc)
			fail_msg("case %zu (%s): rc %d, want %d (%s)", i, bad_cases[i].what, rc,
				 bad_cases[i].rc, e);
		assert_non_null(e);
		if (!*e || !strstr(e, bad_cases[i].what))
			fail_msg("case %zu: message '%s' does not name '%s'", i, e,
				 bad_cases[i].what);
	}
}

/* The boundaries just inside the limits are accepted. */
static void test_validate_accepts_limits(void **state)
{
	struct shmwal_config c;

	(void)state;
	shmwal_config_default(&c);
	c.partitions = SHMWAL_MAX_PARTITIONS;
	assert_int_equal(shmwal_config_validate(&c), 0);
	c.backend = SHMWAL_BACKEND_PMEM;
	assert_int_equal(shmwal_config_validate(&c), 0);

	shmwal_config_default(&c);
	c.ring_bytes = SHMWAL_MIN_RING;
	c.max_key = 64;
	c.max_value = 1024;
	c.segment_bytes = 64u << 10;
	assert_int_equal(shmwal_config_validate(&c), 0);
	c.ring_bytes = SHMWAL_MAX_RING;
	assert_int_equal(shmwal_config_validate(&c), 0);

	/* a frame of exactly half the ring */
	shmwal_config_default(&c);
	c.ring_bytes = 64u << 10;
	c.max_key = 1024;
	c.max_value = (32u << 10) - 1024 - 32;
	assert_int_equal(shmwal_config_validate(&c), 0);

	shmwal_config_default(&c);
	c.max_key = SHMWAL_MAX_KEY;
	assert_int_equal(shmwal_config_validate(&c), 0);

	/* interval mode with only one of the two intervals */
	shmwal_config_default(&c);
	c.sync = SHMWAL_SYNC_INTERVAL;
	c.sync_interval_us = 0;
	c.sync_interval_bytes = 1 << 20;
	assert_int_equal(shmwal_config_validate(&c), 0);
	c.sync_interval_us = 1;
	c.sync_interval_bytes = 0;
	assert_int_equal(shmwal_config_validate(&c), 0);
	/* the intervals do not matter in the other modes */
	c.sync_interval_us = 0;
	c.sync = SHMWAL_SYNC_NONE;
	assert_int_equal(shmwal_config_validate(&c), 0);
	c.sync = SHMWAL_SYNC_ALWAYS;
	assert_int_equal(shmwal_config_validate(&c), 0);

	shmwal_config_default(&c);
	c.mode = 0777;
	assert_int_equal(shmwal_config_validate(&c), 0);
	c.mode = 0640;
	assert_int_equal(shmwal_config_validate(&c), 0);
	c.stall_timeout_ms = 1;
	assert_int_equal(shmwal_config_validate(&c), 0);

	odd_config(&c);
	assert_int_equal(shmwal_config_validate(&c), 0);
}

/* ---- shmwal_create ---------------------------------------------------------------------- */

static void test_create_layout(void **state)
{
	struct fixture *fx = *state;
	struct shmwal_config c;
	struct meta m;
	uint32_t p;

	shmwal_config_default(&c);
	c.partitions = 4;
	assert_int_equal(shmwal_create(fx->wal, &c), 0);
	assert_true(exists(fx->tmp, "wal", S_IFDIR));
	assert_true(exists(fx->wal, "meta", S_IFREG));
	assert_true(exists(fx->wal, "lock", S_IFREG));
	for (p = 0; p < 4; p++) {
		char name[16];

		snprintf(name, sizeof(name), "p%03u", p);
		assert_true(exists(fx->wal, name, S_IFDIR));
	}
	assert_false(exists(fx->wal, "p004", S_IFDIR));
	assert_false(exists(fx->wal, "p4", S_IFDIR));

	assert_int_equal(meta_load(fx->wal, &m), 0);
	assert_cfg_equal(&m.cfg, &c);
	assert_string_equal(m.dir, fx->wal);

	/* Many partitions: p000..p255. */
	{
		char dir[8192];

		fmt_path(dir, sizeof(dir), fx->tmp, "wide");
		c.partitions = SHMWAL_MAX_PARTITIONS;
		assert_int_equal(shmwal_create(dir, &c), 0);
		assert_true(exists(dir, "p000", S_IFDIR));
		assert_true(exists(dir, "p255", S_IFDIR));
		assert_false(exists(dir, "p256", S_IFDIR));
	}
}

static void test_create_idempotent(void **state)
{
	struct fixture *fx = *state;
	struct shmwal_config c;
	struct meta m1, m2;
	char path[8192], before[4096], after[4096];
	size_t n1, n2;

	odd_config(&c);
	assert_int_equal(shmwal_create(fx->wal, &c), 0);
	assert_int_equal(meta_load(fx->wal, &m1), 0);
	fmt_path(path, sizeof(path), fx->wal, "meta");
	n1 = read_file(path, before, sizeof(before));

	assert_int_equal(shmwal_create(fx->wal, &c), 0);
	assert_int_equal(meta_load(fx->wal, &m2), 0);
	n2 = read_file(path, after, sizeof(after));
	assert_int_equal(m1.instance, m2.instance);
	assert_int_equal(n1, n2);
	assert_memory_equal(before, after, n1);

	/* A WAL elsewhere gets another instance id. */
	{
		char other[8192];
		struct meta m3;

		fmt_path(other, sizeof(other), fx->tmp, "other");
		assert_int_equal(shmwal_create(other, &c), 0);
		assert_int_equal(meta_load(other, &m3), 0);
		assert_int_not_equal(m3.instance, m1.instance);
	}
}

static void test_create_conflict(void **state)
{
	struct fixture *fx = *state;
	struct shmwal_config c, d, loaded;
	struct meta m1, m2;

	odd_config(&c);
	assert_int_equal(shmwal_create(fx->wal, &c), 0);
	assert_int_equal(meta_load(fx->wal, &m1), 0);

	d = c;
	d.partitions = 2;
	reset_error();
	assert_int_equal(shmwal_create(fx->wal, &d), -EEXIST);
	assert_non_null(strstr(shmwal_last_error(), "partitions"));

	d = c;
	d.max_value = 1000;
	reset_error();
	assert_int_equal(shmwal_create(fx->wal, &d), -EEXIST);
	assert_non_null(strstr(shmwal_last_error(), "max_value"));
	assert_null(strstr(shmwal_last_error(), "partitions"));

	d = c;
	d.sync = SHMWAL_SYNC_ALWAYS;
	reset_error();
	assert_int_equal(shmwal_create(fx->wal, &d), -EEXIST);
	assert_non_null(strstr(shmwal_last_error(), "sync"));

	d = c;
	d.mode = 0600;
	reset_error();
	assert_int_equal(shmwal_create(fx->wal, &d), -EEXIST);
	assert_non_null(strstr(shmwal_last_error(), "mode"));

	/* Nothing was changed by the refused creates. */
	assert_int_equal(shmwal_config_load(fx->wal, &loaded), 0);
	assert_cfg_equal(&loaded, &c);
	assert_int_equal(meta_load(fx->wal, &m2), 0);
	assert_int_equal(m1.instance, m2.instance);
	assert_false(exists(fx->wal, "p003", S_IFDIR));
}

/* "concurrent creates of one directory with equal configurations all succeed" - processes. */
static void test_create_concurrent_processes(void **state)
{
	enum { ROUNDS = 10, PROCS = 6 };
	struct fixture *fx = *state;
	struct shmwal_config c, loaded;
	int round, i;

	odd_config(&c);
	for (round = 0; round < ROUNDS; round++) {
		char dir[8192], name[32];
		pid_t pids[PROCS];
		int gate[2];

		snprintf(name, sizeof(name), "conc%d", round);
		fmt_path(dir, sizeof(dir), fx->tmp, name);
		assert_int_equal(pipe(gate), 0);
		fflush(NULL);
		for (i = 0; i < PROCS; i++) {
			pids[i] = fork();
			assert_true(pids[i] >= 0);
			if (pids[i] == 0) {
				char ch;
				int rc;

				close(gate[1]);
				(void)!read(gate[0], &ch, 1); /* released when the parent closes */
				rc = shmwal_create(dir, &c);
				_exit(rc == 0 ? 0 : rc < 0 && rc > -255 ? -rc : 255);
			}
		}
		close(gate[0]);
		close(gate[1]);
		for (i = 0; i < PROCS; i++) {
			int status;

			assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
			assert_true(WIFEXITED(status));
			if (WEXITSTATUS(status) != 0)
				fail_msg("round %d: a concurrent shmwal_create failed: %s", round,
					 strerror(WEXITSTATUS(status)));
		}
		assert_int_equal(shmwal_config_load(dir, &loaded), 0);
		assert_cfg_equal(&loaded, &c);
		assert_true(exists(dir, "p002", S_IFDIR));
		assert_true(exists(dir, "lock", S_IFREG));
	}
}

struct create_arg {
	const char *dir;
	const struct shmwal_config *cfg;
	pthread_barrier_t *bar;
	int rc;
};

static void *create_thread(void *p)
{
	struct create_arg *a = p;

	pthread_barrier_wait(a->bar);
	a->rc = shmwal_create(a->dir, a->cfg);
	return NULL;
}

/*
 * The same from threads of one process: the guarantee above makes no exception for them, and
 * the rest of the API is thread-safe.
 */
static void test_create_concurrent_threads(void **state)
{
	enum { ROUNDS = 20, THREADS = 6 };
	struct fixture *fx = *state;
	struct shmwal_config c, loaded;
	int round, i, failures = 0, first_rc = 0;

	odd_config(&c);
	for (round = 0; round < ROUNDS; round++) {
		char dir[8192], name[32];
		struct create_arg args[THREADS];
		pthread_t th[THREADS];
		pthread_barrier_t bar;

		snprintf(name, sizeof(name), "thr%d", round);
		fmt_path(dir, sizeof(dir), fx->tmp, name);
		assert_int_equal(pthread_barrier_init(&bar, NULL, THREADS), 0);
		for (i = 0; i < THREADS; i++) {
			args[i] = (struct create_arg){ dir, &c, &bar, 1 };
			assert_int_equal(pthread_create(&th[i], NULL, create_thread, &args[i]), 0);
		}
		for (i = 0; i < THREADS; i++) {
			assert_int_equal(pthread_join(th[i], NULL), 0);
			if (args[i].rc != 0) {
				failures++;
				if (!first_rc)
					first_rc = args[i].rc;
			}
		}
		pthread_barrier_destroy(&bar);
		assert_int_equal(shmwal_config_load(dir, &loaded), 0);
		assert_cfg_equal(&loaded, &c);
	}
	if (failures)
		fail_msg("%d of %d concurrent shmwal_create calls from threads failed (first: %s)",
			 failures, ROUNDS * THREADS, strerror(-first_rc));
}

static void test_create_invalid(void **state)
{
	struct fixture *fx = *state;
	struct shmwal_config c;
	char dir[8192];

	shmwal_config_default(&c);
	c.partitions = 0;
	assert_int_equal(shmwal_create(fx->wal, &c), -EINVAL);
	assert_false(exists(fx->tmp, "wal", S_IFDIR)); /* checked before touching the disk */
	shmwal_config_default(&c);
	assert_int_equal(shmwal_create(NULL, &c), -EINVAL);
	assert_int_equal(shmwal_create("", &c), -EINVAL);
	assert_int_equal(shmwal_create(fx->wal, NULL), -EINVAL);
	assert_false(exists(fx->tmp, "wal", S_IFDIR));

	/* The parent must exist. */
	fmt_path(dir, sizeof(dir), fx->tmp, "missing/wal");
	assert_int_equal(shmwal_create(dir, &c), -ENOENT);
	assert_false(exists(fx->tmp, "missing", S_IFDIR));
}

static void test_config_load(void **state)
{
	struct fixture *fx = *state;
	struct shmwal_config c, loaded;
	char dir[8192];

	odd_config(&c);
	assert_int_equal(shmwal_create(fx->wal, &c), 0);
	memset(&loaded, 0, sizeof(loaded));
	assert_int_equal(shmwal_config_load(fx->wal, &loaded), 0);
	assert_cfg_equal(&loaded, &c);

	/* the defaults too */
	fmt_path(dir, sizeof(dir), fx->tmp, "defaults");
	shmwal_config_default(&c);
	assert_int_equal(shmwal_create(dir, &c), 0);
	assert_int_equal(shmwal_config_load(dir, &loaded), 0);
	assert_cfg_equal(&loaded, &c);

	/* missing directory, directory without a WAL, NULL arguments */
	fmt_path(dir, sizeof(dir), fx->tmp, "nothing");
	assert_int_equal(shmwal_config_load(dir, &loaded), -ENOENT);
	assert_true(strlen(shmwal_last_error()) > 0);
	assert_int_equal(shmwal_config_load(fx->tmp, &loaded), -ENOENT);
	assert_int_equal(shmwal_config_load(NULL, &loaded), -EINVAL);
	assert_int_equal(shmwal_config_load(fx->wal, NULL), -EINVAL);
}

/* Any one changed byte of DIR/meta makes it refused as damaged. */
static void test_meta_damaged(void **state)
{
	struct fixture *fx = *state;
	struct shmwal_config c, loaded;
	char path[8192], orig[4096], buf[4096], *digit;
	size_t n, i;

	odd_config(&c);
	assert_int_equal(shmwal_create(fx->wal, &c), 0);
	fmt_path(path, sizeof(path), fx->wal, "meta");
	n = read_file(path, orig, sizeof(orig));

	/* flip a digit: "partitions 3" -> "partitions 2" (still a valid configuration) */
	memcpy(buf, orig, n);
	buf[n] = '\0';
	digit = strstr(buf, "partitions 3\n");
	assert_non_null(digit);
	digit[11] = '2';
	write_file(path, buf, n);
	reset_error();
	assert_int_equal(shmwal_config_load(fx->wal, &loaded), -EBADMSG);
	assert_true(strlen(shmwal_last_error()) > 0);
	assert_null(strstr(shmwal_last_error(), "configuration is NULL"));

	/* every single-bit change of every byte */
	for (i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			int rc;

			memcpy(buf, orig, n);
			buf[i] ^= (char)(1 << bit);
			write_file(path, buf, n);
			rc = shmwal_config_load(fx->wal, &loaded);
			if (rc != -EBADMSG)
				fail_msg("meta byte %zu bit %d changed: rc %d, want -EBADMSG", i,
					 bit, rc);
		}
	}

	/* truncated: the last byte removed, and every shorter length */
	for (i = 0; i < n; i++) {
		int rc;

		write_file(path, orig, i);
		rc = shmwal_config_load(fx->wal, &loaded);
		if (rc != -EBADMSG)
			fail_msg("meta truncated to %zu of %zu bytes: rc %d, want -EBADMSG", i, n,
				 rc);
	}

	/* a byte appended after the checksum line */
	memcpy(buf, orig, n);
	buf[n] = '\n';
	write_file(path, buf, n + 1);
	assert_int_equal(shmwal_config_load(fx->wal, &loaded), -EBADMSG);

	/* the original is fine again */
	write_file(path, orig, n);
	assert_int_equal(shmwal_config_load(fx->wal, &loaded), 0);
	assert_cfg_equal(&loaded, &c);
}

/* The checksum is not the only guard: the content must also be exactly the known keys. */
static void test_meta_content(void **state)
{
	struct fixture *fx = *state;
	struct shmwal_config c;
	struct meta m, m2;
	char body[4096];
	int rc;

	odd_config(&c);
	assert_int_equal(shmwal_create(fx->wal, &c), 0);
	assert_int_equal(meta_load(fx->wal, &m), 0);

	/* Control: the hand-written file (correct crc, known keys) loads. */
	odd_meta_body(body, sizeof(body), m.instance, NULL, NULL);
	write_meta_with_crc(fx->wal, body);
	assert_int_equal(meta_load(fx->wal, &m2), 0);
	assert_cfg_equal(&m2.cfg, &c);
	assert_int_equal(m2.instance, m.instance);

	/* an unknown key with a correct checksum */
	odd_meta_body(body, sizeof(body), m.instance, "colour blue\n", NULL);
	write_meta_with_crc(fx->wal, body);
	reset_error();
	assert_int_equal(meta_load(fx->wal, &m2), -EBADMSG);
	assert_non_null(strstr(shmwal_last_error(), "colour"));
	assert_int_equal(shmwal_config_load(fx->wal, &c), -EBADMSG);

	/* a missing key */
	odd_meta_body(body, sizeof(body), m.instance, NULL, "stall_timeout_ms");
	write_meta_with_crc(fx->wal, body);
	assert_int_equal(meta_load(fx->wal, &m2), -EBADMSG);
	odd_meta_body(body, sizeof(body), m.instance, NULL, "instance");
	write_meta_with_crc(fx->wal, body);
	assert_int_equal(meta_load(fx->wal, &m2), -EBADMSG);

	/* bad values */
	odd_meta_body(body, sizeof(body), m.instance, "partitions abc\n", "partitions");
	write_meta_with_crc(fx->wal, body);
	assert_int_equal(meta_load(fx->wal, &m2), -EBADMSG);
	odd_meta_body(body, sizeof(body), m.instance, "partitions 4294967299\n", "partitions");
	write_meta_with_crc(fx->wal, body);
	assert_int_equal(meta_load(fx->wal, &m2), -EBADMSG);
	odd_meta_body(body, sizeof(body), m.instance, "partitions -1\n", "partitions");
	write_meta_with_crc(fx->wal, body);
	assert_int_equal(meta_load(fx->wal, &m2), -EBADMSG);
	odd_meta_body(body, sizeof(body), m.instance, "sync sometimes\n", "sync ");
	write_meta_with_crc(fx->wal, body);
	assert_int_equal(meta_load(fx->wal, &m2), -EBADMSG);
	odd_meta_body(body, sizeof(body), m.instance, "malformed\n", NULL);
	write_meta_with_crc(fx->wal, body);
	assert_int_equal(meta_load(fx->wal, &m2), -EBADMSG);

	/* well-formed values that make an invalid configuration */
	odd_meta_body(body, sizeof(body), m.instance, "partitions 0\n", "partitions");
	write_meta_with_crc(fx->wal, body);
	assert_int_equal(meta_load(fx->wal, &m2), -EBADMSG);
	odd_meta_body(body, sizeof(body), m.instance, "ring_bytes 100000\n", "ring_bytes");
	write_meta_with_crc(fx->wal, body);
	assert_int_equal(meta_load(fx->wal, &m2), -EBADMSG);

	/* another format version is refused */
	odd_meta_body(body, sizeof(body), m.instance, "format 2\n", "format");
	write_meta_with_crc(fx->wal, body);
	rc = meta_load(fx->wal, &m2);
	assert_true(rc < 0);

	/* a wrong checksum line */
	{
		char path[8192], buf[4096];
		size_t n;

		odd_meta_body(body, sizeof(body), m.instance, NULL, NULL);
		n = strlen(body);
		memcpy(buf, body, n);
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "crc %08x\n",
				      shmwal_crc32c(0, body, n) ^ 1u);
		fmt_path(path, sizeof(path), fx->wal, "meta");
		write_file(path, buf, n);
		assert_int_equal(meta_load(fx->wal, &m2), -EBADMSG);
		/* no checksum line at all */
		write_file(path, body, strlen(body));
		assert_int_equal(meta_load(fx->wal, &m2), -EBADMSG);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_valid),
		cmocka_unit_test(test_validate_refuses),
		cmocka_unit_test(test_validate_accepts_limits),
		cmocka_unit_test_setup_teardown(test_create_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_conflict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_concurrent_processes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_concurrent_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_invalid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_damaged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_content, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
