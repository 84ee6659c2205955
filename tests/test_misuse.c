/* SPDX-License-Identifier: MIT */
/*
 * test_misuse.c - API misuse and permissions not covered by test_api.c: LSNs that are not
 * record boundaries with no flusher running, truncation at such an LSN, NULL and over-long
 * arguments, the modes of everything shmwal creates (whatever the umask), another user
 * refused by a 0600 WAL (-EACCES and a sentence) and admitted by a 0660 WAL through a shared
 * group, read-only and unreadable directories, and a WAL directory that is a symlink (followed)
 * or holds a symlinked partition directory (refused by create).
 *
 * Root bypasses permission bits, so every permission check runs in a forked child that drops
 * to uid 65534 (nobody) and gid 65534 (nogroup, or a group the WAL does not use). Children
 * report the step that failed as their exit status.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "shmwal.h"
#include "shmwal_format.h"
#include "meta.h"
#include "helpers.h"

#define NOBODY 65534u
#define OTHER_GROUP 54321u /* a group nobody shares with the WAL */
#define LONG_NS ((uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC)

struct fx {
	char *tmp;
	char wal[4096];
	pid_t flusher;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->tmp = th_tmpdir("misuse");
	if (!f->tmp)
		return -1;
	/* another user may pass through to the WAL (permissions are the WAL's own) */
	if (chmod(f->tmp, 0711) < 0)
		return -1;
	snprintf(f->wal, sizeof(f->wal), "%s/wal", f->tmp);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->flusher > 0)
		th_flusher_stop(f->flusher);
	th_shm_unlink(f->wal);
	th_destroy(f->tmp);
	free(f->tmp);
	free(f);
	return 0;
}

static void create(const char *dir, uint32_t mode, uint64_t segment_bytes)
{
	struct shmwal_config c;

	shmwal_config_default(&c);
	c.ring_bytes = 64u << 10;
	c.segment_bytes = segment_bytes;
	c.max_key = 32;
	c.max_value = 1024;
	c.sync = SHMWAL_SYNC_NONE;
	c.mode = mode;
	assert_int_equal(shmwal_create(dir, &c), 0);
}

static unsigned mode_of(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		fail_msg("%s: %s", path, strerror(errno));
	return st.st_mode & 07777;
}

static void shm_path(const char *dir, char *buf, size_t len)
{
	struct meta m;
	char name[32];

	assert_int_equal(meta_load(dir, &m), 0);
	shm_name(name, m.instance);
	snprintf(buf, len, "/dev/shm%s", name);
}

static void chown_tree(const char *dir, uid_t uid, gid_t gid)
{
	static const char *const parts[] = { "", "/meta", "/lock", "/p000" };
	char path[4200];
	size_t i;

	for (i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		snprintf(path, sizeof(path), "%s%s", dir, parts[i]);
		assert_int_equal(chown(path, uid, gid), 0);
	}
}

/* Drops to uid `uid`, gid `gid` (and only that group). 0 or -1. */
static int drop_to(uid_t uid, gid_t gid)
{
	if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
		return -1;
	return getuid() == uid && geteuid() == uid ? 0 : -1;
}

/* Runs fn(f) in a child as uid/gid; returns its exit status (fn's return value). */
static int as_user(struct fx *f, uid_t uid, gid_t gid, int (*fn)(struct fx *))
{
	pid_t pid;

	if (geteuid() != 0)
		skip(); /* switching users needs root */
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(TH_TIMEOUT_S);
		if (drop_to(uid, gid) < 0)
			_exit(99);
		_exit(fn(f));
	}
	return th_wait(pid, TH_TIMEOUT_S + 10);
}

/* In a child: rc must be -EACCES and the detail must say so. */
static int refused(int rc, int step)
{
	const char *e = shmwal_last_error();

	if (rc != -EACCES) {
		fprintf(stderr, "step %d: got %d (%s), want -EACCES\n", step, rc, e);
		return step;
	}
	if (!strstr(e, "Permission denied")) {
		fprintf(stderr, "step %d: detail \"%s\" does not say why\n", step, e);
		return step + 1;
	}
	return 0;
}

/* ---- LSNs that are not record boundaries, with no flusher -------------------------------- */

static void test_mid_frame_lsn_offline(void **state)
{
	struct fx *f = *state;
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal *w;
	uint64_t lsn[600], end;
	char value[200];
	int i, n, segs;

	create(f->wal, 0600, 64u << 10);
	f->flusher = th_flusher_start(f->wal, 0);
	assert_int_equal(th_open(f->wal, &w), 0);
	memset(value, 'v', sizeof(value));
	for (i = 0; i < 600; i++)
		assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, "key", 3, value, 157,
					       &lsn[i]),
				 0); /* 32 + 3 + 157 = 192 bytes */
	assert_int_equal(shmwal_wait_durable(w, 0, lsn[599], LONG_NS), 0);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(f->flusher), 0);
	f->flusher = 0;
	end = lsn[599] + 192;

	/* no flusher: the boundary is still checked against the files */
	for (i = 1; i < 192; i++) {
		int rc = shmwal_reader_open(f->wal, 0, lsn[5] + (uint64_t)i, &r);

		if (rc != -EINVAL)
			fail_msg("reader_open at LSN %" PRIu64 " (inside a frame): %d", lsn[5] + i,
				 rc);
		if (!strstr(shmwal_last_error(), "boundary"))
			fail_msg("detail: %s", shmwal_last_error());
	}
	assert_int_equal(shmwal_reader_open(f->wal, 0, end + 8, &r), -EINVAL);
	assert_int_equal(shmwal_reader_open(f->wal, 0, UINT64_MAX - 7, &r), -EINVAL);
	assert_int_equal(shmwal_reader_open(f->wal, 0, lsn[5], &r), 0);
	assert_int_equal(shmwal_reader_next(r, &rec, 0), 0);
	assert_int_equal(rec.lsn, lsn[5]);
	shmwal_reader_close(r);
	assert_int_equal(shmwal_reader_open(f->wal, 0, end, &r), 0); /* the end is a boundary */
	assert_int_equal(shmwal_reader_next(r, &rec, 0), -ETIMEDOUT);
	shmwal_reader_close(r);

	/* truncation at an LSN inside a frame removes only the segments wholly below it */
	assert_int_equal(shmwal_reader_open(f->wal, 0, SHMWAL_LSN_OLDEST, &r), 0);
	shmwal_reader_close(r);
	segs = 0;
	for (i = 1; i < 600; i++)
		segs += lsn[i] / (64u << 10) != lsn[i - 1] / (64u << 10);
	assert_true(segs >= 1);
	n = shmwal_truncate_before(f->wal, 0, lsn[400] + 8);
	assert_true(n >= 1);
	assert_int_equal(shmwal_reader_open(f->wal, 0, SHMWAL_LSN_OLDEST, &r), 0);
	assert_int_equal(shmwal_reader_next(r, &rec, 0), 0);
	assert_true(rec.lsn <= lsn[400]); /* the record holding the LSN is kept */
	for (i = 0; i < 600 && lsn[i] != rec.lsn; i++)
		;
	assert_true(i < 600); /* and the oldest retained is a real record */
	shmwal_reader_close(r);
	assert_int_equal(shmwal_reader_open(f->wal, 0, lsn[1], &r), -ERANGE); /* (LSN 0 means "oldest") */
}

/* ---- NULL and over-long arguments --------------------------------------------------------- */

static void test_null_and_long_arguments(void **state)
{
	struct fx *f = *state;
	struct shmwal_config c;
	struct shmwal_reader *r = NULL;
	struct shmwal *w = NULL;
	char *longp;

	shmwal_config_default(&c);
	assert_int_equal(shmwal_create(f->wal, NULL), -EINVAL);
	assert_int_equal(shmwal_durable_lsn(NULL, 0), -EINVAL);
	assert_int_equal(shmwal_wait_durable(NULL, 0, 0, 0), -EINVAL);
	assert_int_equal(shmwal_append(NULL, 0, SHMWAL_TYPE_PUT, "k", 1, "v", 1, NULL), -EINVAL);
	assert_int_equal(shmwal_commit(NULL, NULL), -EINVAL);
	assert_int_equal(shmwal_reader_position(NULL), 0);

	/* a path longer than PATH_MAX: refused with -ENAMETOOLONG, never truncated */
	longp = malloc(PATH_MAX + 64);
	assert_non_null(longp);
	memset(longp, 'x', PATH_MAX + 63);
	longp[0] = '/';
	longp[PATH_MAX + 63] = '\0';
	assert_int_equal(shmwal_create(longp, &c), -ENAMETOOLONG);
	assert_int_equal(shmwal_open(longp, &w), -ENAMETOOLONG);
	assert_int_equal(shmwal_reader_open(longp, 0, 0, &r), -ENAMETOOLONG);
	assert_int_equal(shmwal_truncate_before(longp, 0, 0), -ENAMETOOLONG);
	assert_null(w);
	assert_null(r);
	free(longp);
}

/* ---- modes ------------------------------------------------------------------------------- */

static void check_modes(struct fx *f, unsigned fmode)
{
	unsigned dmode = fmode | ((fmode & 0444) >> 2);
	char path[4200], seg[4300], shm[64];
	struct shmwal *w;
	uint64_t lsn;

	assert_int_equal(mode_of(f->wal), dmode);
	snprintf(path, sizeof(path), "%s/p000", f->wal);
	assert_int_equal(mode_of(path), dmode);
	snprintf(path, sizeof(path), "%s/meta", f->wal);
	assert_int_equal(mode_of(path), fmode);
	snprintf(path, sizeof(path), "%s/lock", f->wal);
	assert_int_equal(mode_of(path), fmode);
	f->flusher = th_flusher_start(f->wal, 0);
	assert_int_equal(th_open(f->wal, &w), 0);
	assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, "k", 1, "v", 1, &lsn), 0);
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, LONG_NS), 0);
	shm_path(f->wal, shm, sizeof(shm));
	assert_int_equal(mode_of(shm), fmode);
	snprintf(seg, sizeof(seg), "%s/p000/0000000000000000.seg", f->wal);
	assert_int_equal(mode_of(seg), fmode);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(f->flusher), 0);
	f->flusher = 0;
}

/* Every file, directory and the shm object get exactly the configured mode, whatever the
 * umask (a 0660 WAL made under umask 022 must still let its group write the lock file). */
static void test_created_modes(void **state)
{
	struct fx *f = *state;
	mode_t old = umask(022);

	create(f->wal, 0660, 1u << 20);
	check_modes(f, 0660);
	th_destroy(f->wal);
	umask(077);
	create(f->wal, 0640, 1u << 20);
	check_modes(f, 0640);
	th_destroy(f->wal);
	umask(0);
	create(f->wal, 0600, 1u << 20);
	check_modes(f, 0600);
	umask(old);
}

/* ---- another user ------------------------------------------------------------------------ */

static int nobody_refused(struct fx *f)
{
	struct shmwal *w = NULL;
	struct shmwal_reader *r = NULL;
	struct shmwal_config c;
	int stop = 1, rc;

	if ((rc = refused(shmwal_open(f->wal, &w), 10)) != 0 ||
	    (rc = refused(shmwal_reader_open(f->wal, 0, SHMWAL_LSN_OLDEST, &r), 20)) != 0 ||
	    (rc = refused(shmwal_flusher_run(f->wal, NULL, &stop), 30)) != 0 ||
	    (rc = refused(shmwal_truncate_before(f->wal, 0, UINT64_MAX), 40)) != 0 ||
	    (rc = refused(shmwal_config_load(f->wal, &c), 50)) != 0)
		return rc;
	shmwal_config_default(&c);
	c.ring_bytes = 64u << 10;
	c.segment_bytes = 1u << 20;
	c.max_key = 32;
	c.max_value = 1024;
	c.sync = SHMWAL_SYNC_NONE;
	if ((rc = refused(shmwal_create(f->wal, &c), 60)) != 0)
		return rc;
	return w || r ? 70 : 0;
}

/* Files readable, but the shared memory 0600: a producer still cannot attach. */
static int nobody_shm_refused(struct fx *f)
{
	struct shmwal *w = NULL;
	int rc = shmwal_open(f->wal, &w);

	if (rc != -EACCES || !strstr(shmwal_last_error(), "shm_open")) {
		fprintf(stderr, "shmwal_open: %d: %s\n", rc, shmwal_last_error());
		return 10;
	}
	return w ? 11 : 0;
}

static void test_other_user_refused(void **state)
{
	struct fx *f = *state;
	char path[4200];
	struct shmwal *w;
	uint64_t lsn;

	create(f->wal, 0600, 1u << 20);
	f->flusher = th_flusher_start(f->wal, 0);
	assert_int_equal(th_open(f->wal, &w), 0);
	assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, "k", 1, "v", 1, &lsn), 0);
	assert_int_equal(as_user(f, NOBODY, NOBODY, nobody_refused), 0);

	/* the directory and files opened up by hand, the shm object left 0600 */
	assert_int_equal(chmod(f->wal, 0755), 0);
	snprintf(path, sizeof(path), "%s/meta", f->wal);
	assert_int_equal(chmod(path, 0644), 0);
	snprintf(path, sizeof(path), "%s/lock", f->wal);
	assert_int_equal(chmod(path, 0666), 0);
	assert_int_equal(as_user(f, NOBODY, NOBODY, nobody_shm_refused), 0);
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, LONG_NS), 0); /* nothing disturbed */
	shmwal_close(w);
}

/* A group member: attaches, appends, waits, reads. */
static int member_works(struct fx *f)
{
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal *w;
	uint64_t lsn;
	int rc;

	rc = shmwal_open(f->wal, &w);
	if (rc < 0) {
		fprintf(stderr, "member: shmwal_open: %s\n", shmwal_last_error());
		return 10;
	}
	if (shmwal_append(w, 0, SHMWAL_TYPE_PUT, "member", 6, "wrote this", 10, &lsn) < 0 ||
	    shmwal_wait_durable(w, 0, lsn, LONG_NS) < 0) {
		fprintf(stderr, "member: append: %s\n", shmwal_last_error());
		return 11;
	}
	shmwal_close(w);
	if (shmwal_reader_open(f->wal, 0, lsn, &r) < 0 || shmwal_reader_next(r, &rec, 0) < 0) {
		fprintf(stderr, "member: read: %s\n", shmwal_last_error());
		return 12;
	}
	rc = rec.lsn == lsn && rec.value_len == 10 && !memcmp(rec.value, "wrote this", 10) ? 0 : 13;
	shmwal_reader_close(r);
	return rc;
}

static int stranger_refused(struct fx *f)
{
	struct shmwal *w = NULL;

	return refused(shmwal_open(f->wal, &w), 10);
}

static volatile sig_atomic_t group_flusher_stop;

static void on_term(int sig)
{
	(void)sig;
	group_flusher_stop = 1;
}

/* A flusher running as root with primary group `gid`: the shm object gets that group. */
static pid_t group_flusher(const char *dir, gid_t gid)
{
	sigset_t term, old;
	pid_t pid;

	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, &old);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		struct sigaction sa;
		int rc;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_term;
		sigaction(SIGTERM, &sa, NULL);
		sigprocmask(SIG_SETMASK, &old, NULL);
		alarm(TH_TIMEOUT_S * 2);
		if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0)
			_exit(98);
		rc = shmwal_flusher_run(dir, NULL, (const int *)&group_flusher_stop);
		if (rc < 0)
			fprintf(stderr, "group flusher: %s\n", shmwal_last_error());
		_exit(rc < 0 ? 1 : 0);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	return pid;
}

static void test_group_shared(void **state)
{
	struct fx *f = *state;
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal *w;
	mode_t old = umask(022);
	char shm[64];
	struct stat st;

	create(f->wal, 0660, 1u << 20);
	umask(old);
	chown_tree(f->wal, 0, NOBODY);
	f->flusher = group_flusher(f->wal, NOBODY);
	assert_true(f->flusher > 0);
	assert_int_equal(th_open(f->wal, &w), 0); /* serving */
	shmwal_close(w);
	shm_path(f->wal, shm, sizeof(shm));
	assert_int_equal(stat(shm, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0660);
	assert_int_equal(st.st_gid, NOBODY);

	assert_int_equal(as_user(f, NOBODY, NOBODY, member_works), 0);
	assert_int_equal(as_user(f, NOBODY, OTHER_GROUP, stranger_refused), 0);
	assert_int_equal(th_flusher_stop(f->flusher), 0);
	f->flusher = 0;
	assert_int_equal(shmwal_reader_open(f->wal, 0, SHMWAL_LSN_OLDEST, &r), 0);
	assert_int_equal(shmwal_reader_next(r, &rec, 0), 0);
	assert_int_equal(rec.key_len, 6);
	assert_memory_equal(rec.key, "member", 6);
	assert_int_equal(shmwal_reader_next(r, &rec, 0), -ETIMEDOUT);
	shmwal_reader_close(r);
}

/* ---- read-only and unreadable directories (as their owner, who is not root) ------------- */

static int owner_flusher_fails(struct fx *f)
{
	struct shmwal_flusher_options o = { .exit_when_idle = 1 };
	int stop = 0;

	return refused(shmwal_flusher_run(f->wal, &o, &stop), 10);
}

static int owner_reader_fails(struct fx *f)
{
	struct shmwal_reader *r = NULL;
	int rc = refused(shmwal_reader_open(f->wal, 0, SHMWAL_LSN_OLDEST, &r), 10);

	if (rc == 0 && r)
		rc = 20;
	return rc;
}

static void test_readonly_and_unreadable_dirs(void **state)
{
	struct fx *f = *state;
	char pdir[4200];

	create(f->wal, 0600, 1u << 20);
	chown_tree(f->wal, NOBODY, NOBODY);
	snprintf(pdir, sizeof(pdir), "%s/p000", f->wal);
	/* no segment can be made: the flusher fails at start, with the reason */
	assert_int_equal(chmod(pdir, 0500), 0);
	assert_int_equal(as_user(f, NOBODY, NOBODY, owner_flusher_fails), 0);
	/* a partition directory that cannot be listed */
	assert_int_equal(chmod(pdir, 0000), 0);
	assert_int_equal(as_user(f, NOBODY, NOBODY, owner_reader_fails), 0);
	assert_int_equal(chmod(pdir, 0700), 0);
}

/* ---- symlinks ---------------------------------------------------------------------------- */

/*
 * A WAL directory reached through a symlink is followed, by every call alike (it is a path
 * the caller chose, like any other path argument). A partition directory inside it that is a
 * symlink is refused by create (inside DIR nothing is followed: see docs/security.md).
 */
static void test_symlinked_wal_dir(void **state)
{
	struct fx *f = *state;
	char link[4200], moved[4200], pdir[4200];
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal_config c;
	struct shmwal *w;
	uint64_t lsn;

	create(f->wal, 0600, 1u << 20);
	snprintf(link, sizeof(link), "%s/link", f->tmp);
	assert_int_equal(symlink(f->wal, link), 0);
	create(link, 0600, 1u << 20); /* idempotent through the link */
	assert_int_equal(shmwal_config_load(link, &c), 0);
	f->flusher = th_flusher_start(link, 0);
	assert_int_equal(th_open(link, &w), 0);
	assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, "via", 3, "link", 4, &lsn), 0);
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, LONG_NS), 0);
	shmwal_close(w);
	/* the same WAL by its real path */
	assert_int_equal(shmwal_reader_open(f->wal, 0, SHMWAL_LSN_OLDEST, &r), 0);
	assert_int_equal(shmwal_reader_next(r, &rec, LONG_NS), 0);
	assert_int_equal(rec.lsn, lsn);
	shmwal_reader_close(r);
	assert_int_equal(th_flusher_stop(f->flusher), 0);
	f->flusher = 0;

	/* a symlinked partition directory */
	snprintf(pdir, sizeof(pdir), "%s/p000", f->wal);
	snprintf(moved, sizeof(moved), "%s/elsewhere", f->tmp);
	assert_int_equal(rename(pdir, moved), 0);
	assert_int_equal(symlink(moved, pdir), 0);
	shmwal_config_default(&c);
	c.ring_bytes = 64u << 10;
	c.segment_bytes = 1u << 20;
	c.max_key = 32;
	c.max_value = 1024;
	c.sync = SHMWAL_SYNC_NONE;
	assert_int_equal(shmwal_create(f->wal, &c), -ENOTDIR);
	assert_non_null(strstr(shmwal_last_error(), "p000"));
}

/* A directory owned by another user: creating a WAL there as that other, unprivileged user
 * fails with -EACCES and the reason. */
static int nobody_create_fails(struct fx *f)
{
	struct shmwal_config c;
	char dir[4200];

	shmwal_config_default(&c);
	snprintf(dir, sizeof(dir), "%s/rootowned/wal", f->tmp);
	if (refused(shmwal_create(dir, &c), 10))
		return 10;
	snprintf(dir, sizeof(dir), "%s/rootowned", f->tmp);
	return refused(shmwal_create(dir, &c), 20);
}

static void test_dir_owned_by_other_user(void **state)
{
	struct fx *f = *state;
	char dir[4200];

	snprintf(dir, sizeof(dir), "%s/rootowned", f->tmp);
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(as_user(f, NOBODY, NOBODY, nobody_create_fails), 0);
}

/*
 * A flusher adopts only a shared-memory object of its own user: anyone who can read DIR/meta
 * could otherwise plant one while no flusher runs and have its frames written as records.
 */
static void test_foreign_shm_not_adopted(void **state)
{
	struct fx *f = *state;
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal *w;
	char path[4200];
	uint8_t val[64];
	uint64_t lsn = 0;
	int stop = 1, n = 0, rc;

	if (geteuid() != 0)
		skip();
	create(f->wal, 0600, 64u << 10);
	f->flusher = th_flusher_start(f->wal, 0);
	assert_int_equal(th_open(f->wal, &w), 0);
	for (uint64_t s = 0; s < 50; s++) {
		th_fill(val, sizeof(val), 0, 0, s);
		assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, val, sizeof(val), &lsn),
				 0);
	}
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, LONG_NS), 0);
	shmwal_close(w);
	kill(f->flusher, SIGKILL); /* the object stays, as after a crash */
	assert_int_equal(th_wait(f->flusher, TH_TIMEOUT_S), 128 + SIGKILL);
	f->flusher = 0;
	shm_path(f->wal, path, sizeof(path));
	assert_int_equal(chown(path, NOBODY, NOBODY), 0);
	rc = shmwal_flusher_run(f->wal, NULL, &stop);
	assert_int_equal(rc, -EPERM);
	assert_non_null(strstr(shmwal_last_error(), "belongs to uid 65534"));
	assert_int_equal(access(path, F_OK), 0); /* refused, not removed: it may hold records */
	/* its own again: adopted, drained and removed at the stop; nothing lost */
	assert_int_equal(chown(path, 0, 0), 0);
	assert_int_equal(shmwal_flusher_run(f->wal, NULL, &stop), 0);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(shmwal_reader_open(f->wal, 0, SHMWAL_LSN_OLDEST, &r), 0);
	while ((rc = shmwal_reader_next(r, &rec, 0)) == 0) {
		struct th_stamp st;

		assert_int_equal(th_check(rec.value, rec.value_len, &st), 0);
		assert_int_equal(st.seq, (uint64_t)n);
		n++;
	}
	assert_int_equal(rc, -ETIMEDOUT);
	assert_int_equal(n, 50);
	shmwal_reader_close(r);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_mid_frame_lsn_offline),
		T(test_null_and_long_arguments),
		T(test_created_modes),
		T(test_other_user_refused),
		T(test_group_shared),
		T(test_readonly_and_unreadable_dirs),
		T(test_symlinked_wal_dir),
		T(test_dir_owned_by_other_user),
		T(test_foreign_shm_not_adopted),
	};
#undef T

	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	if (geteuid() != 0)
		fprintf(stderr, "skipped: not root, so the tests that switch users are skipped\n");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
