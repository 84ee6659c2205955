/* SPDX-License-Identifier: MIT */
/*
 * retention.c - retention policies: DIR/retention, and the flusher's thread that enforces them.
 *
 * DIR/retention is a small text file an operator can read (`shmwal retention DIR` shows it):
 *
 *     # scope max_segments max_bytes max_age_ms rotate_age_ms
 *     all 0 0 604800000 3600000
 *     p3 10 0 0 0
 *     crc 1c9e0a55
 *
 * "all" is the default, "pN" partition N's own policy; the crc line covers everything before
 * it (damage is reported, never guessed around). It is replaced whole (a temporary file, synced,
 * renamed over, the directory synced) under an OFD lock on a byte of DIR/lock of its own
 * (LOCK_BYTE_RETENTION), so concurrent setters do not lose each other's changes. Unlike DIR/meta it
 * may change at any time: policies are operations, the configuration is the format.
 *
 * Enforcement runs in a thread of the flusher process, not in its loop: removing a segment is
 * an unlink and a directory fsync (about a millisecond on a virtio disk), which would stall
 * every producer waiting for a sync. Each pass removes, oldest first, the sealed segments the
 * policy does not keep, through shmwal_truncate_before() (the same removal a checkpoint makes:
 * in order, the directory synced after each, so a power cut never leaves a hole). A segment is
 * a candidate only if the whole of it lies below both the durable LSN and the segment being
 * written (a rotation the thread has not seen yet only makes that bound stale, never wrong).
 * The age of a sealed segment is its file's modification time: its last write, when its
 * newest record was written out.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "retention.h"

#define RETAIN_PASS_NS 100000000ull /* a pass this often (and at once when stopped) */
#define FILE_MAX       16384	    /* "all" + 256 partitions of five numbers fit easily */

/* ---- the file ---------------------------------------------------------------------------- */

static int rpath(const char *dir, char *buf, size_t len)
{
	return path_fmt(buf, len, "%s/%s", dir, RETENTION_NAME);
}

static int is_zero(const struct shmwal_retention *r)
{
	return !r->max_segments && !r->max_bytes && !r->max_age_ms && !r->rotate_age_ms;
}

static int parse_line(char *line, const struct meta *m, struct retention_file *rf)
{
	char scope[16];
	unsigned long long v[4];
	struct shmwal_retention *dst;
	unsigned p;
	int used = 0;

	if (sscanf(line, "%15s %llu %llu %llu %llu%n", scope, &v[0], &v[1], &v[2], &v[3], &used) !=
		5 ||
	    line[used] != '\0' || strchr(line, '-'))
		return -EBADMSG;
	if (!strcmp(scope, "all")) {
		dst = &rf->def;
	} else if (scope[0] == 'p' && sscanf(scope + 1, "%u%n", &p, &used) == 1 &&
		   scope[1 + used] == '\0' && p < m->cfg.partitions && !rf->has[p]) {
		rf->has[p] = 1;
		dst = &rf->part[p];
	} else {
		return -EBADMSG;
	}
	dst->max_segments = v[0];
	dst->max_bytes = v[1];
	dst->max_age_ms = v[2];
	dst->rotate_age_ms = v[3];
	return 0;
}

static int parse(char *text, size_t len, const struct meta *m, struct retention_file *rf,
		 const char *path)
{
	char *crcline, *line, *save = NULL;
	unsigned crc;
	int used = 0;

	memset(rf, 0, sizeof(*rf));
	if (len < 2 || text[len - 1] != '\n' || strlen(text) != len)
		return seterr(-EBADMSG, "%s: damaged (truncated, or NUL bytes)", path);
	text[len - 1] = '\0';
	crcline = strrchr(text, '\n');
	crcline = crcline ? crcline + 1 : text;
	if (sscanf(crcline, "crc %8x%n", &crc, &used) != 1 || crcline[used] != '\0')
		return seterr(-EBADMSG, "%s: no checksum line", path);
	if (shmwal_crc32c(0, text, (size_t)(crcline - text)) != crc)
		return seterr(-EBADMSG,
			      "%s: checksum mismatch (damaged or edited by hand; remove "
			      "it and set the policy again)",
			      path);
	*crcline = '\0';
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#')
			continue;
		if (parse_line(line, m, rf) < 0)
			return seterr(-EBADMSG, "%s: bad line '%s'", path, line);
	}
	return 0;
}

/* Reads the file into buf (NUL-terminated); 0 with *len 0 when there is none. */
static int read_file(const char *path, char *buf, size_t cap, size_t *len, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK), rc = 0;
	ssize_t n;

	*len = 0;
	if (fd < 0)
		return errno == ENOENT ? 0 : seterr(-errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, st) < 0)
		rc = -errno;
	else if (!S_ISREG(st->st_mode))
		rc = -EBADMSG;
	if (rc == 0) {
		n = read(fd, buf, cap - 1);
		if (n < 0)
			rc = -errno;
		else if ((size_t)n >= cap - 1)
			rc = -EBADMSG;
		else
			*len = (size_t)n;
	}
	close(fd);
	if (rc == -EBADMSG)
		return seterr(rc, "%s: not a retention policy (not a regular file, or too large)",
			      path);
	if (rc < 0)
		return seterr(rc, "%s: %s", path, strerror(-rc));
	buf[*len] = '\0';
	return 0;
}

static int load_stat(const struct meta *m, struct retention_file *rf, struct stat *st)
{
	char path[4096], *buf = malloc(FILE_MAX);
	size_t len;
	int rc;

	memset(rf, 0, sizeof(*rf));
	memset(st, 0, sizeof(*st));
	if (!buf)
		return seterr(-ENOMEM, "out of memory");
	rc = rpath(m->dir, path, sizeof(path));
	if (rc == 0)
		rc = read_file(path, buf, FILE_MAX, &len, st);
	if (rc == 0 && len)
		rc = parse(buf, len, m, rf, path);
	free(buf);
	return rc;
}

int retention_load(const struct meta *m, struct retention_file *rf)
{
	struct stat st;

	return load_stat(m, rf, &st);
}

void retention_of(const struct retention_file *rf, uint32_t p, struct shmwal_retention *out)
{
	*out = p < SHMWAL_MAX_PARTITIONS && rf->has[p] ? rf->part[p] : rf->def;
}

static int format_line(char *buf, size_t cap, const char *scope, const struct shmwal_retention *r)
{
	int n = snprintf(buf, cap, "%s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", scope,
			 r->max_segments, r->max_bytes, r->max_age_ms, r->rotate_age_ms);

	return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

static int store(const struct meta *m, const struct retention_file *rf)
{
	char path[4096], tmp[4096], scope[16], *buf = malloc(FILE_MAX);
	size_t len = 0;
	int n, fd, rc;

	if (!buf)
		return seterr(-ENOMEM, "out of memory");
	n = snprintf(buf, FILE_MAX,
		     "# shmwal retention policy, written by shmwal_retention_set(); see `shmwal "
		     "retention --help`\n"
		     "# scope max_segments max_bytes max_age_ms rotate_age_ms (0: no limit)\n");
	len = (size_t)n;
	if (!is_zero(&rf->def) && (n = format_line(buf + len, FILE_MAX - len, "all", &rf->def)) > 0)
		len += (size_t)n;
	for (uint32_t p = 0; p < m->cfg.partitions && n > 0; p++) {
		if (!rf->has[p])
			continue;
		snprintf(scope, sizeof(scope), "p%u", p);
		if ((n = format_line(buf + len, FILE_MAX - len, scope, &rf->part[p])) > 0)
			len += (size_t)n;
	}
	if (n > 0 &&
	    (n = snprintf(buf + len, FILE_MAX - len, "crc %08x\n", shmwal_crc32c(0, buf, len))) >
		0 &&
	    (size_t)n < FILE_MAX - len)
		len += (size_t)n;
	else
		n = -1;
	rc = n < 0 ? seterr(-ENOSPC, "retention policy too large") : 0;
	if (rc == 0 && ((rc = rpath(m->dir, path, sizeof(path))) < 0 ||
			(rc = path_fmt(tmp, sizeof(tmp), "%s/.%s.%d.%d", m->dir, RETENTION_NAME,
				       (int)getpid(), (int)gettid())) < 0)) {
		free(buf);
		return rc;
	}
	if (rc == 0) {
		/* O_EXCL: never write through a file or link someone left at the temporary name */
		unlink(tmp);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
			  m->cfg.mode & 0666);
		if (fd < 0) {
			rc = seterr(-errno, "%s: %s", tmp, strerror(errno));
		} else {
			errno = 0;
			if (fchmod(fd, m->cfg.mode & 0666) < 0 ||
			    write(fd, buf, len) != (ssize_t)len || fsync(fd) < 0)
				rc = -(errno ? errno : EIO);
			close(fd);
			if (rc == 0 && rename(tmp, path) < 0)
				rc = -errno;
			if (rc < 0) {
				unlink(tmp);
				seterr(rc, "%s: %s", path, strerror(-rc));
			} else if ((rc = fsync_dir(m->dir)) < 0) {
				seterr(rc, "fsync %s: %s", m->dir, strerror(-rc));
			}
		}
	}
	free(buf);
	return rc;
}

/* An OFD lock on DIR/lock's LOCK_BYTE_RETENTION (meta.h): setters one at a time. */
static int setter_lock(const struct meta *m)
{
	char path[4096];
	int fd, rc = path_fmt(path, sizeof(path), "%s/%s", m->dir, LOCK_NAME);

	if (rc < 0)
		return rc;
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return seterr(-errno, "%s: %s", path, strerror(errno));
	if ((rc = ofd_lock_byte(fd, LOCK_BYTE_RETENTION, 1)) < 0) {
		seterr(rc, "lock %s: %s", path, strerror(-rc));
		close(fd);
		return rc;
	}
	return fd;
}

static int check_policy(const struct shmwal_retention *r)
{
	/* Milliseconds as uint64_t nanoseconds must not wrap. */
	if (r->max_age_ms > UINT64_MAX / 1000000 || r->rotate_age_ms > UINT64_MAX / 1000000)
		return seterr(-EINVAL, "retention ages must be below %" PRIu64 " ms",
			      UINT64_MAX / 1000000);
	return 0;
}

SHMWAL_EXPORT int shmwal_retention_set(const char *dir, uint32_t part,
				       const struct shmwal_retention *r)
{
	struct retention_file rf;
	struct meta m;
	int rc, lk;

	if (!dir)
		return seterr(-EINVAL, "NULL directory");
	if ((rc = meta_load(dir, &m)) < 0)
		return rc;
	if (part != SHMWAL_ALL_PARTITIONS && part >= m.cfg.partitions)
		return seterr(-EINVAL, "partition %u out of range (the WAL has %u)", part,
			      m.cfg.partitions);
	if (r && (rc = check_policy(r)) < 0)
		return rc;
	if ((lk = setter_lock(&m)) < 0)
		return lk;
	rc = retention_load(&m, &rf);
	if (rc == 0) {
		static const struct shmwal_retention none;

		if (part == SHMWAL_ALL_PARTITIONS) {
			rf.def = r ? *r : none;
		} else {
			rf.has[part] = r != NULL;
			rf.part[part] = r ? *r : none;
		}
		rc = store(&m, &rf);
	}
	close(lk);
	return rc;
}

SHMWAL_EXPORT int shmwal_retention_get(const char *dir, uint32_t part, struct shmwal_retention *out)
{
	struct retention_file rf;
	struct meta m;
	int rc;

	if (!dir || !out)
		return seterr(-EINVAL, "NULL argument");
	memset(out, 0, sizeof(*out));
	if ((rc = meta_load(dir, &m)) < 0)
		return rc;
	if (part != SHMWAL_ALL_PARTITIONS && part >= m.cfg.partitions)
		return seterr(-EINVAL, "partition %u out of range (the WAL has %u)", part,
			      m.cfg.partitions);
	if ((rc = retention_load(&m, &rf)) < 0)
		return rc;
	if (part == SHMWAL_ALL_PARTITIONS)
		*out = rf.def;
	else
		retention_of(&rf, part, out);
	return 0;
}

/* ---- enforcement ------------------------------------------------------------------------- */

static void publish_rotate_ages(struct retainer *r)
{
	for (uint32_t p = 0; p < r->m->cfg.partitions; p++) {
		struct shmwal_retention pol;

		retention_of(&r->rf, p, &pol);
		store_relaxed(&r->rotate_age_ms[p], pol.rotate_age_ms);
	}
}

/* Reloads DIR/retention if it changed since the last look. */
static void reload(struct retainer *r)
{
	struct retention_file rf;
	struct stat st;
	int rc = load_stat(r->m, &rf, &st);

	if (rc == 0 && st.st_ino == r->seen.st_ino && st.st_dev == r->seen.st_dev &&
	    st.st_mtim.tv_sec == r->seen.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == r->seen.st_mtim.tv_nsec && st.st_size == r->seen.st_size &&
	    !r->bad)
		return;
	if (rc < 0) {
		/* Keep enforcing what was loaded last: a damaged file is no reason to keep more
		 * or less than the operator asked for before. */
		if (!r->bad && r->log)
			r->log(r->log_ctx, SHMWAL_LOG_ERROR,
			       "retention: %s; keeping the policy "
			       "loaded before",
			       shmwal_last_error());
		r->bad = 1;
		return;
	}
	if (r->bad && r->log)
		r->log(r->log_ctx, SHMWAL_LOG_INFO, "retention: the policy file reads again");
	r->bad = 0;
	r->seen = st;
	r->rf = rf;
	publish_rotate_ages(r);
}

int retain_partition(struct retainer *r, uint32_t p, uint64_t now_real_ns)
{
	struct shmwal_retention pol;
	char pdir[4096], path[4096];
	struct seg_list l;
	uint64_t *size = NULL, *mtime = NULL, total = 0, bound, removed_bytes = 0;
	uint32_t i, k = 0;
	int rc;

	retention_of(&r->rf, p, &pol);
	if (!pol.max_segments && !pol.max_bytes && !pol.max_age_ms)
		return 0;
	if ((rc = part_dir(pdir, sizeof(pdir), r->m->dir, p)) < 0 ||
	    (rc = seg_list_load(pdir, &l)) < 0)
		return rc;
	if (l.n < 2)
		goto out;
	size = calloc(l.n, sizeof(*size));
	mtime = calloc(l.n, sizeof(*mtime));
	if (!size || !mtime) {
		rc = seterr(-ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < l.n; i++) {
		struct stat st;

		if ((rc = seg_path(path, sizeof(path), pdir, l.first[i])) < 0)
			goto out;
		if (lstat(path, &st) < 0) {
			rc = errno == ENOENT ? 0 : seterr(-errno, "%s: %s", path, strerror(errno));
			goto out; /* removed meanwhile (a checkpoint): look again next pass */
		}
		size[i] = (uint64_t)st.st_size;
		mtime[i] =
		    (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
		total += size[i];
	}
	/* Whole segments below both the durable LSN and the segment being written. */
	bound = shm_durable(r->shm, p);
	if (shm_seg_first(r->shm, p) < bound)
		bound = shm_seg_first(r->shm, p);
	while (k + 1 < l.n && l.first[k + 1] <= bound) {
		int go = (pol.max_segments && l.n - k > pol.max_segments) ||
			 (pol.max_bytes && total > pol.max_bytes) ||
			 (pol.max_age_ms && now_real_ns > mtime[k] &&
			  now_real_ns - mtime[k] > pol.max_age_ms * 1000000ull);

		if (!go)
			break;
		total -= size[k];
		removed_bytes += size[k];
		k++;
	}
	if (k) {
		rc = shmwal_truncate_before(r->m->dir, p, l.first[k]);
		if (rc < 0)
			goto out;
		shm_count_retention(r->shm, p, (uint64_t)rc, removed_bytes);
		if (r->log)
			r->log(r->log_ctx, SHMWAL_LOG_INFO,
			       "partition %u: retention removed %d segment(s), %" PRIu64
			       " bytes, below LSN %" PRIu64,
			       p, rc, removed_bytes, l.first[k]);
	}
out:
	free(size);
	free(mtime);
	seg_list_free(&l);
	return rc;
}

static void *retainer_main(void *arg)
{
	struct retainer *r = arg;
	char last_err[256] = "";

	pthread_mutex_lock(&r->mu);
	while (!r->stop) {
		struct timespec ts;

		pthread_mutex_unlock(&r->mu);
		reload(r);
		for (uint32_t p = 0; p < r->m->cfg.partitions; p++) {
			int rc = retain_partition(r, p, real_ns());

			/* Log a failure once until it changes (a full disk or a permission
			 * problem would otherwise log ten lines a second). */
			if (rc < 0 && strcmp(last_err, shmwal_last_error()) && r->log) {
				snprintf(last_err, sizeof(last_err), "%s", shmwal_last_error());
				r->log(r->log_ctx, SHMWAL_LOG_ERROR,
				       "partition %u: retention: %s (retried)", p, last_err);
			}
		}
		pthread_mutex_lock(&r->mu);
		if (r->stop)
			break;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += (long)(RETAIN_PASS_NS % 1000000000ull);
		ts.tv_sec += (time_t)(RETAIN_PASS_NS / 1000000000ull) + ts.tv_nsec / 1000000000;
		ts.tv_nsec %= 1000000000;
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

int retainer_start(struct retainer *r, const struct meta *m, struct shm *shm, rec_log_fn log,
		   void *log_ctx)
{
	pthread_condattr_t ca;
	int rc;

	memset(r, 0, sizeof(*r));
	r->m = m;
	r->shm = shm;
	r->log = log;
	r->log_ctx = log_ctx;
	for (uint32_t p = 0; p < SHMWAL_MAX_PARTITIONS; p++)
		atomic_init(&r->rotate_age_ms[p], 0);
	reload(r); /* the policy is in force from the start (rotation too) */
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	rc = pthread_create(&r->thread, NULL, retainer_main, r);
	if (rc) {
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mu);
		return seterr(-rc, "cannot start the retention thread: %s", strerror(rc));
	}
	r->running = 1;
	return 0;
}

void retainer_stop(struct retainer *r)
{
	if (!r->running)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = 1;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	r->running = 0;
}
