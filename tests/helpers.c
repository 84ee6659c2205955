/* SPDX-License-Identifier: MIT */
/* helpers.c - see helpers.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "meta.h"

char *th_tmpdir(const char *tag)
{
	const char *base = getenv("TMPDIR");
	char *p;

	if (!base || !*base)
		base = "/tmp";
	if (asprintf(&p, "%s/shmwal-%s.XXXXXX", base, tag) < 0)
		return NULL;
	if (!mkdtemp(p)) {
		free(p);
		return NULL;
	}
	return p;
}

int th_create(const char *dir, uint32_t partitions, uint64_t ring_bytes, uint64_t segment_bytes,
	      uint32_t max_value, enum shmwal_sync sync)
{
	return th_create_backend(dir, partitions, ring_bytes, segment_bytes, max_value, sync,
				 SHMWAL_BACKEND_FILE);
}

void th_shm_unlink(const char *dir)
{
	struct meta m;
	char name[32];

	if (meta_load(dir, &m) == 0) {
		shm_name(name, m.instance);
		shm_unlink(name);
	}
}

void th_destroy(const char *dir)
{
	char *cmd;

	if (!dir)
		return;
	th_shm_unlink(dir);
	if (getenv("SHMWAL_TEST_KEEP"))
		return;
	if (asprintf(&cmd, "rm -rf '%s'", dir) >= 0) {
		if (system(cmd) != 0)
			fprintf(stderr, "warning: could not remove %s\n", dir);
		free(cmd);
	}
}

static int flusher_stop;

static void flusher_on_term(int sig)
{
	(void)sig;
	__atomic_store_n(&flusher_stop, 1, __ATOMIC_RELAXED);
}

static void flusher_log(void *ctx, enum shmwal_log_level lvl, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "[flusher %d] %d: %s\n", (int)getpid(), (int)lvl, msg);
}

static int flusher_exit_status(const struct th_flusher_spec *spec, int rc)
{
	if (rc >= 0)
		return 0;
	if (spec->one_error_status)
		return TH_FLUSHER_ERROR;
	return rc == -EBUSY ? TH_FLUSHER_BUSY : rc == -EIO ? TH_FLUSHER_EIO : TH_FLUSHER_ERROR;
}

pid_t th_flusher_spawn(const char *dir, const struct th_flusher_spec *spec)
{
	sigset_t term, old;
	pid_t pid;

	/* SIGTERM stays blocked until the child's handler is in place: a stop sent right after
	 * the start must still mean "drain and exit 0". */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, &old);
	pid = fork();
	if (pid == 0) {
		struct sigaction sa;
		int rc;

		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test leaves no flusher behind */
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = flusher_on_term;
		sigaction(SIGTERM, &sa, NULL);
		sigprocmask(SIG_SETMASK, &old, NULL);
		if (spec->alarm_s)
			alarm(spec->alarm_s);
		if (spec->child_setup)
			spec->child_setup(spec->arg);
		rc = shmwal_flusher_run(dir, &spec->opts, &flusher_stop);
		if (rc < 0 && spec->name)
			fprintf(stderr, "%s: %s\n", spec->name, shmwal_last_error());
		if (spec->child_done)
			spec->child_done(spec->arg, rc);
		_exit(flusher_exit_status(spec, rc));
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	return pid;
}

pid_t th_flusher_start(const char *dir, int exit_when_idle)
{
	struct th_flusher_spec spec = {
		.opts.exit_when_idle = exit_when_idle,
		.name = "flusher",
		.alarm_s = TH_TIMEOUT_S * 2,
	};

	if (getenv("SHMWAL_TEST_VERBOSE"))
		spec.opts.log = flusher_log;
	return th_flusher_spawn(dir, &spec);
}

int th_wait(pid_t pid, int timeout_s)
{
	struct timespec ts = { 0, 5000000 };
	int status, i, limit = timeout_s * 200;

	for (i = 0; i < limit; i++) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		if (r < 0)
			return -1;
		nanosleep(&ts, NULL);
	}
	fprintf(stderr, "child %d did not finish in %d s: killing it\n", (int)pid, timeout_s);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

int th_flusher_stop(pid_t pid)
{
	kill(pid, SIGTERM);
	return th_wait(pid, TH_TIMEOUT_S);
}

int th_open(const char *dir, struct shmwal **w)
{
	struct timespec ts = { 0, 2000000 };
	int rc = -1, i;

	for (i = 0; i < TH_TIMEOUT_S * 500; i++) {
		rc = shmwal_open(dir, w);
		if (rc != -ENOENT && rc != -EPROTO && rc != -ESHUTDOWN)
			return rc;
		nanosleep(&ts, NULL);
	}
	return rc;
}

/* ---- stamps ---- */

static uint32_t stamp_check(const struct th_stamp *s)
{
	return shmwal_crc32c(0, s, offsetof(struct th_stamp, check));
}

void th_fill(void *value, uint32_t len, uint32_t producer, uint32_t thread, uint64_t seq)
{
	struct th_stamp s = { producer, thread, seq, len, 0 };
	uint64_t x = (uint64_t)producer << 40 ^ (uint64_t)thread << 32 ^ seq ^ 0x9e3779b97f4a7c15ull;
	uint8_t *b = value;
	uint32_t i;

	s.check = stamp_check(&s);
	memcpy(b, &s, sizeof(s));
	for (i = sizeof(s); i < len; i++) {
		if ((i & 7) == 0 || i == sizeof(s))
			th_rand(&x);
		b[i] = (uint8_t)(x >> ((i & 7) * 8));
	}
}

int th_check(const void *value, uint32_t len, struct th_stamp *st)
{
	uint8_t buf[256];
	const uint8_t *b = value;
	uint32_t off;

	if (len < sizeof(*st))
		return -1;
	memcpy(st, value, sizeof(*st));
	if (st->len != len || st->check != stamp_check(st))
		return -1;
	/* Regenerate the filler and compare, a chunk at a time. */
	{
		uint64_t x = (uint64_t)st->producer << 40 ^ (uint64_t)st->thread << 32 ^ st->seq ^
			     0x9e3779b97f4a7c15ull;

		for (off = sizeof(*st); off < len;) {
			uint32_t n = 0;

			while (n < sizeof(buf) && off + n < len) {
				uint32_t i = off + n;

				if ((i & 7) == 0 || i == sizeof(*st))
					th_rand(&x);
				buf[n++] = (uint8_t)(x >> ((i & 7) * 8));
			}
			if (memcmp(buf, b + off, n) != 0)
				return -1;
			off += n;
		}
	}
	return 0;
}

uint32_t th_key(char *buf, uint32_t producer, uint32_t thread, uint64_t seq)
{
	uint32_t len = (uint32_t)(seq % 17);
	uint64_t x = (uint64_t)producer << 48 ^ (uint64_t)thread << 40 ^ seq;

	for (uint32_t i = 0; i < len; i++)
		buf[i] = "0123456789abcdef"[(x >> ((i % 16) * 4)) & 15];
	return len;
}

/* ---- the checker ---- */

struct stream {
	uint8_t *seen;	/* bitmap of seqs */
	uint64_t cap;	/* bits */
	uint64_t *last; /* per partition: last seq + 1 (0 = none) */
};

static int stream_mark(struct stream *s, uint64_t seq)
{
	if (seq >= s->cap) {
		uint64_t cap = s->cap ? s->cap : 1024;
		uint8_t *n;

		while (cap <= seq)
			cap *= 2;
		n = realloc(s->seen, cap / 8);
		if (!n)
			abort();
		memset(n + s->cap / 8, 0, (cap - s->cap) / 8);
		s->seen = n;
		s->cap = cap;
	}
	if (s->seen[seq / 8] & (1u << (seq % 8)))
		return 1;
	s->seen[seq / 8] |= (uint8_t)(1u << (seq % 8));
	return 0;
}

static void note(struct th_log_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct th_log_report *r, const char *fmt, ...)
{
	va_list ap;

	if (r->first_error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(r->first_error, sizeof(r->first_error), fmt, ap);
	va_end(ap);
}

int th_check_log(const char *dir, uint32_t nprod, uint32_t nthr, const uint64_t *expected,
		 int (*required)(void *ctx, uint32_t p, uint32_t t, uint64_t seq), void *ctx,
		 struct th_log_report *rep)
{
	struct shmwal_config cfg;
	struct stream *st;
	uint32_t nstreams = nprod * nthr, p, i;
	int rc;

	memset(rep, 0, sizeof(*rep));
	rc = shmwal_config_load(dir, &cfg);
	if (rc < 0) {
		note(rep, "config: %s", shmwal_last_error());
		rep->read_errors++;
		return -1;
	}
	st = calloc(nstreams, sizeof(*st));
	for (i = 0; i < nstreams; i++)
		st[i].last = calloc(cfg.partitions, sizeof(uint64_t));
	for (p = 0; p < cfg.partitions; p++) {
		struct shmwal_reader *r;
		struct shmwal_record rec;

		rc = shmwal_reader_open(dir, p, SHMWAL_LSN_OLDEST, &r);
		if (rc < 0) {
			note(rep, "reader_open p%u: %s", p, shmwal_last_error());
			rep->read_errors++;
			continue;
		}
		while ((rc = shmwal_reader_next(r, &rec, 0)) == 0) {
			struct th_stamp s;
			struct stream *sp;
			char key[32];
			uint32_t klen;

			rep->records++;
			if (th_check(rec.value, rec.value_len, &s) < 0) {
				rep->bad_bytes++;
				note(rep, "p%u lsn %" PRIu64 ": payload damaged", p, rec.lsn);
				continue;
			}
			klen = th_key(key, s.producer, s.thread, s.seq);
			if (rec.key_len != klen || memcmp(rec.key, key, klen) != 0) {
				rep->bad_bytes++;
				note(rep, "p%u lsn %" PRIu64 ": key damaged", p, rec.lsn);
				continue;
			}
			if (s.producer >= nprod || s.thread >= nthr) {
				rep->foreign++;
				note(rep, "p%u lsn %" PRIu64 ": unknown stream %u.%u", p, rec.lsn,
				     s.producer, s.thread);
				continue;
			}
			sp = &st[s.producer * nthr + s.thread];
			if (stream_mark(sp, s.seq)) {
				rep->duplicates++;
				note(rep, "p%u lsn %" PRIu64 ": duplicate %u.%u seq %" PRIu64, p,
				     rec.lsn, s.producer, s.thread, s.seq);
			}
			if (sp->last[p] && s.seq < sp->last[p]) {
				rep->out_of_order++;
				note(rep, "p%u lsn %" PRIu64 ": %u.%u seq %" PRIu64 " after %" PRIu64,
				     p, rec.lsn, s.producer, s.thread, s.seq, sp->last[p] - 1);
			}
			sp->last[p] = s.seq + 1;
		}
		if (rc != -ETIMEDOUT) {
			rep->read_errors++;
			note(rep, "reader_next p%u: %s", p, shmwal_last_error());
		}
		shmwal_reader_close(r);
	}
	if (expected) {
		for (i = 0; i < nstreams; i++) {
			for (uint64_t q = 0; q < expected[i]; q++) {
				int seen = q < st[i].cap && (st[i].seen[q / 8] & (1u << (q % 8)));

				if (seen)
					continue;
				if (required && !required(ctx, i / nthr, i % nthr, q))
					continue;
				rep->missing++;
				note(rep, "stream %u.%u: seq %" PRIu64 " missing", i / nthr, i % nthr, q);
			}
		}
	}
	for (i = 0; i < nstreams; i++) {
		free(st[i].seen);
		free(st[i].last);
	}
	free(st);
	return rep->bad_bytes || rep->duplicates || rep->out_of_order || rep->foreign ||
			       rep->missing || rep->read_errors
		       ? -1
		       : 0;
}

/* ---- the producer workload ---- */

#include <pthread.h>
#include <sched.h>

struct th_thread_arg {
	const struct th_producer *p;
	struct shmwal *w;
	uint32_t thread;
	int rc;
};

static int append_one(struct th_thread_arg *a, uint64_t seq, uint64_t *rng, uint64_t *lsn)
{
	const struct th_producer *p = a->p;
	uint32_t span = p->max_value - p->min_value + 1;
	uint32_t vlen = p->min_value + (uint32_t)(th_rand(rng) % span);
	uint32_t part = (uint32_t)(seq % p->partitions);
	char key[32];
	uint32_t klen = th_key(key, p->producer, a->thread, seq);
	uint8_t *val = malloc(vlen);
	struct shmwal_claim c;
	int rc, mode = (int)(seq % 4);

	if (!val)
		return -ENOMEM;
	th_fill(val, vlen, p->producer, a->thread, seq);
	if (seq % 50 == 7) {
		/* a claim given up: it must never show up as a record */
		rc = shmwal_claim(a->w, part, SHMWAL_TYPE_PUT, klen, vlen, &c);
		if (rc == 0) {
			memset(c.value, 0xee, vlen);
			rc = shmwal_abort(a->w, &c);
		}
		if (rc < 0)
			goto out;
	}
	if (mode == 0) {
		rc = shmwal_claim(a->w, part, SHMWAL_TYPE_PUT, klen, vlen, &c);
		if (rc == 0) {
			memcpy(c.key, key, klen);
			memcpy(c.value, val, vlen);
			*lsn = c.lsn;
			rc = shmwal_commit(a->w, &c);
		}
	} else if (mode == 1) {
		while ((rc = shmwal_try_append(a->w, part, SHMWAL_TYPE_PUT, key, klen, val, vlen,
					       lsn)) == -EAGAIN)
			sched_yield();
	} else {
		rc = shmwal_append(a->w, part, SHMWAL_TYPE_USER_MIN + (uint16_t)(seq % 3), key,
				   klen, val, vlen, lsn);
	}
out:
	free(val);
	return rc;
}

static void *producer_thread(void *arg)
{
	struct th_thread_arg *a = arg;
	const struct th_producer *p = a->p;
	uint64_t rng = p->seed ^ ((uint64_t)p->producer << 32 | a->thread) ^ 0x5bd1e995u, seq, lsn = 0;
	uint32_t stream = p->producer * p->threads + a->thread;

	if (!rng)
		rng = 1;
	for (seq = 0; seq < p->records; seq++) {
		int rc = append_one(a, seq, &rng, &lsn);

		if (rc < 0) {
			fprintf(stderr, "producer %u.%u seq %" PRIu64 ": append: %s\n", p->producer,
				a->thread, seq, shmwal_last_error());
			a->rc = -1;
			return NULL;
		}
		if (p->wait_each || seq + 1 == p->records) {
			rc = shmwal_wait_durable(a->w, (uint32_t)(seq % p->partitions), lsn,
						 (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC);
			if (rc < 0) {
				fprintf(stderr, "producer %u.%u seq %" PRIu64 ": wait: %s\n",
					p->producer, a->thread, seq, shmwal_last_error());
				a->rc = -1;
				return NULL;
			}
			if (shmwal_durable_lsn(a->w, (uint32_t)(seq % p->partitions)) <= (int64_t)lsn) {
				fprintf(stderr, "durable LSN not past an acknowledged record\n");
				a->rc = -1;
				return NULL;
			}
			if (p->acked)
				__atomic_store_n(&p->acked[stream], seq + 1, __ATOMIC_RELEASE);
		}
	}
	return NULL;
}

int th_run_producer(const struct th_producer *p)
{
	struct th_thread_arg *a = calloc(p->threads, sizeof(*a));
	pthread_t *tid = calloc(p->threads, sizeof(*tid));
	struct shmwal *w;
	uint32_t t;
	int rc = th_open(p->dir, &w);

	if (rc < 0) {
		fprintf(stderr, "producer %u: open: %s\n", p->producer, shmwal_last_error());
		free(a);
		free(tid);
		return -1;
	}
	for (t = 0; t < p->threads; t++) {
		a[t].p = p;
		a[t].w = w;
		a[t].thread = t;
		pthread_create(&tid[t], NULL, producer_thread, &a[t]);
	}
	rc = 0;
	for (t = 0; t < p->threads; t++) {
		pthread_join(tid[t], NULL);
		rc |= a[t].rc;
	}
	shmwal_close(w);
	free(a);
	free(tid);
	return rc;
}

pid_t th_spawn_producer(const struct th_producer *p)
{
	pid_t pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(TH_TIMEOUT_S * 2);
		_exit(th_run_producer(p) == 0 ? 0 : 1);
	}
	return pid;
}

void th_spawn_producers(const struct th_producer *tmpl, uint32_t n, pid_t *pids)
{
	for (uint32_t i = 0; i < n; i++) {
		struct th_producer q = *tmpl;

		q.producer = i;
		pids[i] = th_spawn_producer(&q);
	}
}

uint64_t *th_shared_counters(uint32_t n)
{
	void *m = mmap(NULL, (size_t)n * sizeof(uint64_t), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return m == MAP_FAILED ? NULL : m;
}

void th_shmwal_bin(char *buf, size_t len)
{
	const char *e = getenv("SHMWAL_BIN"), *o = getenv("O");

	if (e && *e)
		snprintf(buf, len, "%s", e);
	else if (o && *o)
		snprintf(buf, len, "%s/shmwal", o);
	else
		snprintf(buf, len, "build/shmwal");
}

/* ---- more: other backends, the shmwal command as a child ---- */

int th_create_backend(const char *dir, uint32_t partitions, uint64_t ring_bytes,
		      uint64_t segment_bytes, uint32_t max_value, enum shmwal_sync sync,
		      enum shmwal_backend backend)
{
	struct shmwal_config c;

	shmwal_config_default(&c);
	c.partitions = partitions;
	c.ring_bytes = ring_bytes;
	c.segment_bytes = segment_bytes;
	c.max_key = 64;
	c.max_value = max_value;
	c.sync = sync;
	c.sync_interval_us = 1000;
	c.backend = backend;
	return shmwal_create(dir, &c);
}

/* 1 when the environment entry e ("NAME=...") sets a name that one of env[] sets. */
static int env_replaced(const char *e, const char *const *env)
{
	for (; env && *env; env++) {
		const char *eq = strchr(*env, '=');
		size_t n = eq ? (size_t)(eq - *env) : strlen(*env);

		if (strncmp(e, *env, n) == 0 && e[n] == '=')
			return 1;
	}
	return 0;
}

pid_t th_shmwal_spawn(const char *const *args, const char *const *env, const char *out_path)
{
	char bin[4096];

	th_shmwal_bin(bin, sizeof(bin));
	return th_spawn(bin, args, env, out_path);
}

/* The executable that a program name without '/' stands for: its first match in $PATH. */
static void path_lookup(const char *name, char *buf, size_t len)
{
	const char *p = getenv("PATH");

	snprintf(buf, len, "%s", name);
	if (strchr(name, '/') || !p)
		return;
	while (*p) {
		size_t n = strcspn(p, ":");

		snprintf(buf, len, "%.*s/%s", (int)n, n ? p : ".", name);
		if (access(buf, X_OK) == 0)
			return;
		p += n + (p[n] == ':');
	}
	snprintf(buf, len, "%s", name);
}

pid_t th_spawn(const char *path, const char *const *args, const char *const *env,
	       const char *out_path)
{
	char bin[4096], **argv, **envp;
	size_t na = 0, ne = 0, nenv = 0, i, k = 0;
	pid_t pid;

	/* Everything the child needs is built here: after a fork in a process with threads,
	 * only async-signal-safe calls are allowed until the exec. */
	path_lookup(path, bin, sizeof(bin));
	while (args[na])
		na++;
	while (environ[ne])
		ne++;
	while (env && env[nenv])
		nenv++;
	argv = calloc(na + 2, sizeof(*argv));
	envp = calloc(ne + nenv + 1, sizeof(*envp));
	if (!argv || !envp) {
		free(argv);
		free(envp);
		return -1;
	}
	argv[0] = (char *)path;
	for (i = 0; i < na; i++)
		argv[i + 1] = (char *)args[i];
	for (i = 0; i < ne; i++)
		if (!env_replaced(environ[i], env))
			envp[k++] = environ[i];
	for (i = 0; i < nenv; i++)
		if (strchr(env[i], '=')) /* "NAME" alone only removes NAME */
			envp[k++] = (char *)env[i];
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC), out = -1;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(TH_TIMEOUT_S * 2);
		if (out_path)
			out = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (in < 0 || dup2(in, 0) < 0 || (out_path && (out < 0 || dup2(out, 1) < 0 ||
							      dup2(out, 2) < 0)))
			_exit(126);
		execve(bin, argv, envp);
		_exit(127);
	}
	free(argv);
	free(envp);
	return pid;
}

char *th_file_read(const char *path, size_t *len)
{
	size_t n = 0, cap = 65536;
	char *buf = malloc(cap);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t r;

	if (!buf || fd < 0) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	for (;;) {
		if (cap - n < 4096) {
			char *nb = realloc(buf, cap * 2);

			if (!nb) {
				free(buf);
				close(fd);
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			close(fd);
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

int th_file_contains(const char *path, const char *needle)
{
	char *text = th_file_read(path, NULL);
	int found = text && strstr(text, needle) != NULL;

	free(text);
	return found;
}
