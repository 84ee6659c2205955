/* SPDX-License-Identifier: MIT */
/*
 * meta.c - configuration checks and the metadata file.
 *
 * DIR/meta is a small text file, one "key value" pair per line, so an operator can read it
 * with cat. Its last line is "crc XXXXXXXX", the CRC32C of every byte before that line; a file
 * whose checksum does not match is refused (-EBADMSG), never half-used. It is written once, by
 * shmwal_create(), through a temporary file, fsync, link() (which never replaces an existing
 * file, so two concurrent creates cannot clobber each other) and a directory fsync.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmwal.h"
#include "shmwal_format.h"
#include "common.h"
#include "meta.h"

SHMWAL_EXPORT void shmwal_config_default(struct shmwal_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->partitions = 1;
	cfg->mode = 0600;
	cfg->ring_bytes = 4ull << 20;
	cfg->segment_bytes = 64ull << 20;
	cfg->max_key = 1024;
	cfg->max_value = 64u << 10;
	cfg->sync = SHMWAL_SYNC_ALWAYS;
	cfg->sync_interval_us = 1000;
	cfg->sync_interval_bytes = 0;
	cfg->stall_timeout_ms = 10000;
	cfg->backend = SHMWAL_BACKEND_FILE;
}

uint64_t cfg_max_frame(const struct shmwal_config *cfg)
{
	return SHMWAL_ALIGN_UP((uint64_t)SHMWAL_FRAME_HDR + cfg->max_key + cfg->max_value);
}

uint64_t cfg_pmem_file_bytes(const struct shmwal_config *cfg)
{
	return shmwal_pmem_segment_size(cfg->segment_bytes, cfg_max_frame(cfg));
}

SHMWAL_EXPORT int shmwal_config_validate(const struct shmwal_config *c)
{
	uint64_t frame;

	if (!c)
		return seterr(-EINVAL, "configuration is NULL");
	if (c->partitions < 1 || c->partitions > SHMWAL_MAX_PARTITIONS)
		return seterr(-EINVAL, "partitions must be 1..%u, not %u", SHMWAL_MAX_PARTITIONS,
			      c->partitions);
	if (c->ring_bytes < SHMWAL_MIN_RING || c->ring_bytes > SHMWAL_MAX_RING ||
	    (c->ring_bytes & (c->ring_bytes - 1)))
		return seterr(-EINVAL,
			      "ring_bytes must be a power of two from 64 KiB to 1 GiB, not %" PRIu64,
			      c->ring_bytes);
	if ((uint64_t)sysconf(_SC_PAGESIZE) > c->ring_bytes)
		return seterr(-EINVAL, "ring_bytes %" PRIu64 " is smaller than a page", c->ring_bytes);
	if (c->max_key > SHMWAL_MAX_KEY)
		return seterr(-EINVAL, "max_key must be at most %u, not %u", SHMWAL_MAX_KEY,
			      c->max_key);
	frame = cfg_max_frame(c);
	if (frame < 2 * SHMWAL_FRAME_HDR)
		return seterr(-EINVAL, "max_key + max_value must be at least %u bytes",
			      SHMWAL_FRAME_HDR);
	if (frame > c->ring_bytes / 2)
		return seterr(-EINVAL,
			      "max_key + max_value (%" PRIu64 " bytes per frame) must fit in half "
			      "the ring (%" PRIu64 " bytes)",
			      frame, c->ring_bytes / 2);
	if (c->segment_bytes < (64u << 10) || c->segment_bytes > (1ull << 40))
		return seterr(-EINVAL, "segment_bytes must be 64 KiB..1 TiB, not %" PRIu64,
			      c->segment_bytes);
	if (c->segment_bytes < frame)
		return seterr(-EINVAL, "segment_bytes %" PRIu64 " is smaller than the largest frame",
			      c->segment_bytes);
	if (c->sync != SHMWAL_SYNC_NONE && c->sync != SHMWAL_SYNC_INTERVAL &&
	    c->sync != SHMWAL_SYNC_ALWAYS)
		return seterr(-EINVAL, "unknown sync mode %d", (int)c->sync);
	if (c->sync == SHMWAL_SYNC_INTERVAL && c->sync_interval_us == 0 &&
	    c->sync_interval_bytes == 0)
		return seterr(-EINVAL, "sync interval needs sync_interval_us or sync_interval_bytes");
	if (c->sync_interval_us > 60u * 1000 * 1000)
		return seterr(-EINVAL, "sync_interval_us must be at most 60 s");
	if ((c->mode & ~0777u) || (c->mode & 0600) != 0600)
		return seterr(-EINVAL, "mode %o must be permission bits including 0600", c->mode);
	if (c->stall_timeout_ms < 1)
		return seterr(-EINVAL, "stall_timeout_ms must be at least 1");
	if (c->backend != SHMWAL_BACKEND_FILE && c->backend != SHMWAL_BACKEND_PMEM)
		return seterr(-EINVAL, "unknown backend %d", (int)c->backend);
	return 0;
}

static const char *sync_name(enum shmwal_sync s)
{
	return s == SHMWAL_SYNC_NONE ? "none" : s == SHMWAL_SYNC_INTERVAL ? "interval" : "always";
}

static int meta_format(char *buf, size_t len, const struct meta *m)
{
	const struct shmwal_config *c = &m->cfg;
	int n = snprintf(buf, len,
			 "# shmwal metadata, written by shmwal_create(); do not edit\n"
			 "format 1\n"
			 "instance %016" PRIx64 "\n"
			 "partitions %u\n"
			 "ring_bytes %" PRIu64 "\n"
			 "segment_bytes %" PRIu64 "\n"
			 "max_key %u\n"
			 "max_value %u\n"
			 "sync %s\n"
			 "sync_interval_us %u\n"
			 "sync_interval_bytes %" PRIu64 "\n"
			 "mode %04o\n"
			 "stall_timeout_ms %u\n"
			 "backend %s\n",
			 m->instance, c->partitions, c->ring_bytes, c->segment_bytes, c->max_key,
			 c->max_value, sync_name(c->sync), c->sync_interval_us,
			 c->sync_interval_bytes, c->mode, c->stall_timeout_ms,
			 c->backend == SHMWAL_BACKEND_PMEM ? "pmem" : "file");
	size_t used;

	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	used = (size_t)n;
	n = snprintf(buf + used, len - used, "crc %08x\n", shmwal_crc32c(0, buf, used));
	if (n < 0 || (size_t)n >= len - used)
		return -ENOSPC;
	return (int)(used + (size_t)n);
}

static int parse_u64(const char *s, int base, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, base);
	if (errno || end == s || *end != '\0' || *s == '-')
		return -EINVAL;
	*out = v;
	return 0;
}

static int meta_parse(char *text, size_t len, struct meta *m, const char *path)
{
	char *crcline = NULL, *line, *save = NULL;
	uint64_t crc, v;
	unsigned seen = 0;

	/* The crc line is the last line; it covers everything before it. */
	if (len < 2 || text[len - 1] != '\n')
		return seterr(-EBADMSG, "%s: truncated (no final newline)", path);
	text[len - 1] = '\0';
	crcline = strrchr(text, '\n');
	if (!crcline || strncmp(crcline + 1, "crc ", 4) != 0 ||
	    parse_u64(crcline + 5, 16, &crc) < 0)
		return seterr(-EBADMSG, "%s: no checksum line", path);
	if (shmwal_crc32c(0, text, (size_t)(crcline + 1 - text)) != (uint32_t)crc)
		return seterr(-EBADMSG, "%s: checksum mismatch (the file was damaged or edited)",
			      path);
	*crcline = '\0';

	memset(m, 0, sizeof(*m));
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *val = strchr(line, ' ');
		struct shmwal_config *c = &m->cfg;
		int rc = 0;

		if (line[0] == '#')
			continue;
		if (!val)
			return seterr(-EBADMSG, "%s: malformed line '%s'", path, line);
		*val++ = '\0';
#define FIELD(name, base, dst, bit)                                                    \
	else if (strcmp(line, name) == 0)                                              \
	{                                                                              \
		rc = parse_u64(val, base, &v);                                         \
		dst = v;                                                               \
		if (rc == 0 && (uint64_t)(dst) != v)                                   \
			rc = -ERANGE;                                                  \
		seen |= bit;                                                           \
	}
		if (strcmp(line, "format") == 0) {
			if (strcmp(val, "1") != 0)
				return seterr(-EPROTO, "%s: unsupported format %s", path, val);
			seen |= 1u << 0;
		}
		FIELD("instance", 16, m->instance, 1u << 1)
		FIELD("partitions", 10, c->partitions, 1u << 2)
		FIELD("ring_bytes", 10, c->ring_bytes, 1u << 3)
		FIELD("segment_bytes", 10, c->segment_bytes, 1u << 4)
		FIELD("max_key", 10, c->max_key, 1u << 5)
		FIELD("max_value", 10, c->max_value, 1u << 6)
		FIELD("sync_interval_us", 10, c->sync_interval_us, 1u << 7)
		FIELD("sync_interval_bytes", 10, c->sync_interval_bytes, 1u << 8)
		FIELD("mode", 8, c->mode, 1u << 9)
		FIELD("stall_timeout_ms", 10, c->stall_timeout_ms, 1u << 10)
		else if (strcmp(line, "sync") == 0) {
			if (strcmp(val, "none") == 0)
				c->sync = SHMWAL_SYNC_NONE;
			else if (strcmp(val, "interval") == 0)
				c->sync = SHMWAL_SYNC_INTERVAL;
			else if (strcmp(val, "always") == 0)
				c->sync = SHMWAL_SYNC_ALWAYS;
			else
				rc = -EINVAL;
			seen |= 1u << 11;
		} else if (strcmp(line, "backend") == 0) {
			if (strcmp(val, "file") == 0)
				c->backend = SHMWAL_BACKEND_FILE;
			else if (strcmp(val, "pmem") == 0)
				c->backend = SHMWAL_BACKEND_PMEM;
			else
				rc = -EINVAL;
			seen |= 1u << 12;
		}
#undef FIELD
		/* Unknown keys are refused: a newer format must bump "format". */
		else
			return seterr(-EBADMSG, "%s: unknown key '%s'", path, line);
		if (rc < 0)
			return seterr(-EBADMSG, "%s: bad value '%s' for %s", path, val, line);
	}
	if (seen != (1u << 13) - 1)
		return seterr(-EBADMSG, "%s: missing keys", path);
	return 0;
}

int meta_load(const char *dir, struct meta *m)
{
	char path[4096], buf[4096];
	struct stat st;
	ssize_t n;
	int fd, rc;

	rc = path_fmt(path, sizeof(path), "%s/%s", dir, META_NAME);
	if (rc < 0)
		return rc;
	/* O_NONBLOCK: a FIFO planted as DIR/meta must not hang the open; it is refused below. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		if (rc == -ENOENT)
			return seterr(rc, "%s: no WAL here (create it with `shmwal create`)", dir);
		return seterr(rc, "%s: %s", path, strerror(-rc));
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		close(fd);
		return seterr(rc, "%s: %s", path, strerror(-rc));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return seterr(-EBADMSG, "%s: not a regular file", path);
	}
	n = read(fd, buf, sizeof(buf) - 1);
	rc = n < 0 ? -errno : 0;
	close(fd);
	if (rc < 0)
		return seterr(rc, "%s: %s", path, strerror(-rc));
	if ((size_t)n >= sizeof(buf) - 1)
		return seterr(-EBADMSG, "%s: too large to be shmwal metadata", path);
	buf[n] = '\0';
	if (strlen(buf) != (size_t)n)
		return seterr(-EBADMSG, "%s: contains NUL bytes", path);
	rc = meta_parse(buf, (size_t)n, m, path);
	if (rc < 0)
		return rc;
	if (path_fmt(m->dir, sizeof(m->dir), "%s", dir) < 0)
		return -ENAMETOOLONG;
	rc = shmwal_config_validate(&m->cfg);
	if (rc < 0) {
		char why[512]; /* a copy: seterr() writes where shmwal_last_error() points */

		snprintf(why, sizeof(why), "%s", shmwal_last_error());
		return seterr(-EBADMSG, "%s: invalid configuration: %s", path, why);
	}
	return 0;
}

int meta_load_part(const char *dir, uint32_t part, struct meta *m)
{
	int rc;

	if (!dir)
		return seterr(-EINVAL, "NULL directory");
	if ((rc = meta_load(dir, m)) < 0)
		return rc;
	if (part >= m->cfg.partitions)
		return seterr(-EINVAL, "partition %u out of range (the WAL has %u)", part,
			      m->cfg.partitions);
	return 0;
}

SHMWAL_EXPORT int shmwal_config_load(const char *dir, struct shmwal_config *cfg)
{
	struct meta m;
	int rc;

	if (!dir || !cfg)
		return seterr(-EINVAL, "NULL argument");
	rc = meta_load(dir, &m);
	if (rc == 0)
		*cfg = m.cfg;
	return rc;
}

int part_dir(char *buf, size_t len, const char *dir, uint32_t part)
{
	return path_fmt(buf, len, "%s/p%03u", dir, part);
}

void shm_name(char *buf, uint64_t instance)
{
	snprintf(buf, 32, "/shmwal.%016" PRIx64, instance);
}

static int config_diff(const struct shmwal_config *a, const struct shmwal_config *b,
		       char *out, size_t len)
{
	int n = 0;

	out[0] = '\0';
#define CMP(f)                                                                        \
	if (a->f != b->f && (size_t)n < len)                                          \
		n += snprintf(out + n, len - (size_t)n, "%s%s", n ? ", " : "", #f);
	CMP(partitions) CMP(mode) CMP(ring_bytes) CMP(segment_bytes) CMP(max_key)
	CMP(max_value) CMP(sync) CMP(sync_interval_us) CMP(sync_interval_bytes)
	CMP(stall_timeout_ms) CMP(backend)
#undef CMP
	return n;
}

static int write_meta(const char *dir, const struct meta *m)
{
	char path[4096], tmp[4096], buf[4096];
	int len, fd, rc = 0;

	len = meta_format(buf, sizeof(buf), m);
	if (len < 0)
		return seterr(len, "metadata too large");
	if ((rc = path_fmt(path, sizeof(path), "%s/%s", dir, META_NAME)) < 0 ||
	    (rc = path_fmt(tmp, sizeof(tmp), "%s/.meta.%d.%d", dir, (int)getpid(), (int)gettid())) <
		    0)
		return rc;
	/* O_EXCL: a file (or a hard link to one) left at the temporary name by anyone who can
	 * write DIR is never opened and written through; a stale one of ours is removed first. */
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, m->cfg.mode & 0666);
	if (fd < 0) {
		rc = errno == EEXIST ? -EBUSY : -errno; /* -EEXIST means "a concurrent create won" */
		return seterr(rc, "%s: %s", tmp, strerror(errno));
	}
	/* open() applied the umask; the file gets the configured mode. */
	errno = 0;
	if (fchmod(fd, m->cfg.mode & 0666) < 0 || write(fd, buf, (size_t)len) != len ||
	    fsync(fd) < 0)
		rc = -(errno ? errno : EIO);
	close(fd);
	if (rc == 0 && link(tmp, path) < 0)
		rc = -errno;
	unlink(tmp);
	if (rc == -EEXIST)
		return rc; /* a concurrent create won; the caller compares */
	if (rc < 0)
		return seterr(rc, "%s: %s", path, strerror(-rc));
	return 0;
}

/* fsyncs the directory holding `path`, so that a new entry in it survives a power cut. */
static int fsync_parent(const char *path)
{
	char parent[4096];
	size_t n = strlen(path);
	int rc;

	if (n >= sizeof(parent))
		return seterr(-ENAMETOOLONG, "%s: path too long", path);
	memcpy(parent, path, n + 1);
	while (n > 1 && parent[n - 1] == '/')
		parent[--n] = '\0';
	while (n > 0 && parent[n - 1] != '/')
		n--;
	while (n > 1 && parent[n - 1] == '/')
		n--;
	if (n == 0)
		strcpy(parent, ".");
	else
		parent[n] = '\0';
	rc = fsync_dir(parent);
	if (rc < 0)
		return seterr(rc, "fsync %s: %s", parent, strerror(-rc));
	return 0;
}

/*
 * Makes a directory (an existing one is fine); a new one gets exactly `mode` (mkdir applied
 * the umask) and is made durable in its parent. `follow`: an existing symlink to a directory
 * is accepted (the WAL directory itself, a path the caller chose; see docs/security.md);
 * otherwise it is refused (the partition directories inside it).
 */
static int mkdir_checked(const char *path, mode_t mode, int follow)
{
	struct stat st;
	int fd, rc;

	if (mkdir(path, mode) == 0) {
		fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return seterr(-errno, "%s: %s", path, strerror(errno));
		rc = fchmod(fd, mode) < 0 ? -errno : 0;
		close(fd);
		if (rc < 0)
			return seterr(rc, "chmod %s: %s", path, strerror(-rc));
		return fsync_parent(path);
	}
	if (errno != EEXIST)
		return seterr(-errno, "%s: %s", path, strerror(errno));
	if ((follow ? stat(path, &st) : lstat(path, &st)) < 0)
		return seterr(-errno, "%s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return seterr(-ENOTDIR, "%s: exists and is not a directory", path);
	return 0;
}

/* Empty, or holding only what a concurrent or interrupted shmwal_create leaves (meta, pNNN,
 * lock, .meta.*). */
static int dir_is_fresh(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int fresh = 1;

	if (!d)
		return 0;
	while (fresh && (e = readdir(d))) {
		const char *n = e->d_name;

		if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, LOCK_NAME) || !strcmp(n, META_NAME) ||
		    !strncmp(n, ".meta.", 6))
			continue;
		if (n[0] == 'p' && strlen(n) == 4 && n[1] >= '0' && n[1] <= '9' && n[2] >= '0' &&
		    n[2] <= '9' && n[3] >= '0' && n[3] <= '9')
			continue;
		fresh = 0;
	}
	closedir(d);
	return fresh;
}

SHMWAL_EXPORT int shmwal_create(const char *dir, const struct shmwal_config *cfg)
{
	struct stat st;
	mode_t dmode;
	struct meta m, old;
	char path[4096], diff[512];
	uint32_t p;
	int rc, fd;

	if (!dir || !*dir)
		return seterr(-EINVAL, "directory is NULL or empty");
	rc = shmwal_config_validate(cfg);
	if (rc < 0)
		return rc;
	dmode = (mode_t)(cfg->mode | ((cfg->mode & 0444) >> 2)); /* r implies x for dirs */
	rc = mkdir_checked(dir, dmode, 1);
	if (rc < 0)
		return rc;

	m.cfg = *cfg;
	rc = meta_load(dir, &old);
	if (rc == -ENOENT && !dir_is_fresh(dir))
		return seterr(-EEXIST, "%s is not empty and holds no WAL: refusing to create one "
				       "there",
			      dir);
	if (rc == -ENOENT) {
		rc = random_u64(&m.instance);
		if (rc < 0)
			return seterr(rc, "getrandom: %s", strerror(-rc));
		rc = write_meta(dir, &m);
		if (rc == -EEXIST)
			rc = meta_load(dir, &old);
		else if (rc == 0)
			old = m;
	}
	if (rc < 0)
		return rc;
	if (config_diff(&old.cfg, cfg, diff, sizeof(diff)))
		return seterr(-EEXIST, "%s already holds a WAL with another configuration (%s)",
			      dir, diff);

	for (p = 0; p < cfg->partitions; p++) {
		if ((rc = part_dir(path, sizeof(path), dir, p)) < 0 ||
		    (rc = mkdir_checked(path, dmode, 0)) < 0)
			return rc;
	}
	if ((rc = path_fmt(path, sizeof(path), "%s/%s", dir, LOCK_NAME)) < 0)
		return rc;
	/* The lock file, once: a new one gets the configured mode (open applied the umask), so
	 * that producers of a group-shared WAL (mode 0660) can lock their slots in it. */
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, cfg->mode & 0666);
	if (fd >= 0) {
		rc = fchmod(fd, cfg->mode & 0666) < 0 ? -errno : 0;
		close(fd);
		if (rc < 0)
			return seterr(rc, "chmod %s: %s", path, strerror(-rc));
	} else if (errno != EEXIST || lstat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
		return seterr(errno == EEXIST ? -EEXIST : -errno, "%s: %s", path,
			      errno == EEXIST ? "exists and is not a regular file" : strerror(errno));
	}
	rc = fsync_dir(dir);
	if (rc < 0)
		return seterr(rc, "fsync %s: %s", dir, strerror(-rc));
	return 0;
}
