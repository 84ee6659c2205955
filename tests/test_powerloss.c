/* SPDX-License-Identifier: MIT */
/*
 * test_powerloss.c - power cuts, simulated at every point of a real run.
 *
 * A flusher (in a thread) and producer threads run a real workload: records of many sizes in
 * two partitions, zero-copy claims, aborted claims, waits for durability, segment rotations and
 * a truncation. Every file operation of the flusher goes through the I/O seam (persist/io.h),
 * and a recorder logs each one with its data, plus the durable LSN the flusher had published
 * when the operation began.
 *
 * Then a model of the kernel replays the log. After each operation it knows, per file, the
 * contents an fdatasync made durable and the writes and truncations since; per directory, the
 * entries an fsync of the directory made durable and the creations, removals and renames since.
 * A power cut after operation k may leave any of those pending changes in place or not:
 *   drop  all pending changes lost;          keep  all of them made it;
 *   zero  the files grew but the new bytes read as zeros (metadata without data);
 *   torn  the newest write made it for a random number of 512-byte sectors, nothing after it;
 *   dirlast  only the newest change to each directory made it (out of order), all writes did;
 *   random (several seeds) each sector of each pending write kept, lost or zero, each
 *         directory change kept or lost, independently.
 * Renames are atomic (as on every journaling filesystem) but durable only once both
 * directories were fsynced. Each crash state is written out as a real WAL directory, a real
 * flusher starts on it (recovery, exactly as after a reboot) and must succeed without repair,
 * and readers must then find exactly a contiguous run of the records written - nothing torn,
 * nothing that was never written - that contains every record published as durable before the
 * cut and not truncated away.
 *
 * A crash during that recovery is simulated the same way for a sample of states: recovery's own
 * operations (cutting a torn tail, quarantining a torn segment) are recorded and cut at every
 * point, and the recovery after that must again find every durable record.
 *
 * Negative controls prove the simulator can fail: a recorder that hides the directory fsyncs
 * from the model (as if the code never made new segments durable in their directory), or the
 * fdatasyncs, must produce violations.
 *
 * The pmem backend runs the same way in both of its modes, which the recorder fixes itself
 * (io_map.is_pmem after the real mapping; pmem_memcpy_nodrain and pmem_drain work on any
 * memory, so the persistent-memory path runs on tmpfs too). The model adds:
 *   fallocate  the file grows with zeros; the size is pending until the file's fdatasync;
 *   copy, zero into a mapping: a pending write to the mapped file's bytes, which becomes
 *         durable by the file's fdatasync, or
 *     is_pmem 1  by any drain (a fence: every pending copy of every mapping), or by a flush
 *                of its range (cache lines: 64 bytes);
 *     is_pmem 0  by a drain or flush (msync) of its range (pages: 4 KiB).
 *   At a cut, a pending copy with is_pmem 0 is a page-cache write as above (512-byte
 *   sectors). With is_pmem 1 the unit is the aligned 8-byte word (stores are atomic per word
 *   and reach the media in any order): drop none, keep all; zero  each 64-byte line made it
 *   or not; torn  the newest copy made it word by word at random, the older ones whole;
 *   random  runs of 1..256 words kept or lost (single words torn, whole frames persisted past
 *   lost ones). Where a fallocate is pending, one more state: nosize  its size lost, every
 *   write made it (a new segment's header without its size: recovery must give it its size).
 *   A third control hides the drains from the model: it must fail too.
 * Recovery is recorded in every state, so the counts say how often it cleared bytes past the
 * end or gave a short segment its size; the sample crashed during recovery includes states
 * whose recovery did either.
 *
 * Policies often leave the same files (dirlast is keep when no directory change is pending;
 * zero is drop when only stores into is_pmem 0 mappings are): a state is checked once per
 * crash point, unless it was picked for more (a crash during its recovery, appending after it).
 *
 * SHMWAL_POWERLOSS_SEEDS (default 2) random variants per crash point, SHMWAL_POWERLOSS_RECORDS
 * (default 200) records per producer thread: `make stress` raises both.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "shmwal_format.h"
#include "helpers.h"
#include "persist/io.h"

#define NPART 2

/* Sanitized builds run fewer random variants per crash point (they are slower). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif
#define SECTOR 512
#define MAXFD 1024
#define SEG (64u << 10)
#define TRUNC_AT (2ull * SEG + 8192) /* two segments are whole */

static unsigned env_uint(const char *name, unsigned dflt)
{
	const char *v = getenv(name);

	return v && *v ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);

	if (!p)
		abort();
	return p;
}

static void *xrealloc(void *p, size_t sz)
{
	p = realloc(p, sz ? sz : 1);
	if (!p)
		abort();
	return p;
}

#define GROW(arr, n, cap)                                                                     \
	do {                                                                                  \
		if ((n) == (cap)) {                                                           \
			(cap) = (cap) ? 2 * (cap) : 16;                                       \
			(arr) = xrealloc((arr), (size_t)(cap) * sizeof(*(arr)));              \
		}                                                                             \
	} while (0)

/* ---- the recorder ---------------------------------------------------------------------- */

enum op_kind {
	OP_OPEN,     /* fd, path, created */
	OP_WRITE,    /* fd, off, len, data */
	OP_SYNC,     /* fd (fdatasync) */
	OP_TRUNC,    /* fd, off = new length */
	OP_UNLINK,   /* path */
	OP_RENAME,   /* path -> path2 */
	OP_MKDIR,    /* path */
	OP_SYNCDIR,  /* path */
	OP_CLOSE,    /* fd */
	OP_FALLOC,   /* fd, off = length (posix_fallocate from 0) */
	OP_MAP,	     /* fd, maddr, len, pmem */
	OP_UNMAP,    /* maddr */
	OP_COPY,     /* maddr, off, len, data, pmem: a store into the mapping, not yet persistent */
	OP_ZERO,     /* maddr, off, len, pmem: the same, zeros (data NULL) */
	OP_DRAIN,    /* maddr, off, len, pmem */
	OP_FLUSH,    /* maddr, off, len, pmem */
	OP_TRUNCATED /* not a file operation: shmwal_truncate_before(part, off) is called */
};
#define OP_KINDS (OP_TRUNCATED + 1)

struct op {
	enum op_kind kind;
	int fd, created;
	int pmem; /* the mapping's is_pmem */
	uint32_t part;
	char path[96], path2[96]; /* relative to the WAL directory; "" is the directory itself */
	uintptr_t maddr;	  /* the mapping (its address identifies it while mapped) */
	uint64_t off, len;
	uint8_t *data;
	uint64_t floor[NPART]; /* durable LSNs published before this operation began */
};

struct oplog {
	struct op *ops;
	size_t n, cap;
};

static struct {
	pthread_mutex_t mu;
	struct oplog *log;
	char root[4096];
	size_t rootlen;
	struct shmwal *w; /* read durable LSNs through it (NULL: before producers attach) */
	uint64_t floor[NPART];
	int hide_syncdir, hide_fdatasync, hide_drain; /* negative controls */
	int force_pmem; /* -1: mappings keep libpmem's is_pmem; 0 or 1: this one */
	int outside;	/* operations on paths outside the WAL directory */
} rec = { .mu = PTHREAD_MUTEX_INITIALIZER, .force_pmem = -1 };

static void rel_path(char *out, size_t len, const char *path)
{
	size_t n = strlen(path);

	while (n > 1 && path[n - 1] == '/')
		n--;
	if (n == rec.rootlen && !strncmp(path, rec.root, n)) {
		out[0] = '\0';
		return;
	}
	if (n > rec.rootlen && !strncmp(path, rec.root, rec.rootlen) && path[rec.rootlen] == '/') {
		snprintf(out, len, "%.*s", (int)(n - rec.rootlen - 1), path + rec.rootlen + 1);
		return;
	}
	rec.outside++;
	snprintf(out, len, "?%s", path);
}

/* Starts an entry (under rec.mu); the caller fills in the rest. */
static struct op *op_new(enum op_kind kind)
{
	struct oplog *l = rec.log;
	/* pairs: record_run's release once the handle is open */
	struct shmwal *w = __atomic_load_n(&rec.w, __ATOMIC_ACQUIRE);
	struct op *o;

	GROW(l->ops, l->n, l->cap);
	o = &l->ops[l->n++];
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	o->fd = -1;
	for (uint32_t p = 0; p < NPART; p++) {
		if (w) {
			int64_t d = shmwal_durable_lsn(w, p);

			if (d > 0 && (uint64_t)d > rec.floor[p])
				rec.floor[p] = (uint64_t)d;
		}
		o->floor[p] = rec.floor[p];
	}
	return o;
}

static int r_open(const char *path, int flags, mode_t mode)
{
	int fd;

	pthread_mutex_lock(&rec.mu);
	fd = io_default.open(path, flags, mode);
	if (fd >= 0) {
		struct op *o = op_new(OP_OPEN);

		if (fd >= MAXFD)
			abort(); /* the model's descriptor table is too small */
		o->fd = fd;
		o->created = (flags & O_CREAT) && (flags & O_EXCL);
		rel_path(o->path, sizeof(o->path), path);
	}
	pthread_mutex_unlock(&rec.mu);
	return fd;
}

static ssize_t r_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	ssize_t n;

	pthread_mutex_lock(&rec.mu);
	n = io_default.pwrite(fd, buf, len, off);
	if (n > 0) {
		struct op *o = op_new(OP_WRITE);

		o->fd = fd;
		o->off = (uint64_t)off;
		o->len = (uint64_t)n;
		o->data = xcalloc(1, (size_t)n);
		memcpy(o->data, buf, (size_t)n);
	}
	pthread_mutex_unlock(&rec.mu);
	return n;
}

static int r_fdatasync(int fd)
{
	int rc;

	pthread_mutex_lock(&rec.mu);
	rc = io_default.fdatasync(fd);
	if (rc == 0 && !rec.hide_fdatasync)
		op_new(OP_SYNC)->fd = fd;
	pthread_mutex_unlock(&rec.mu);
	return rc;
}

static int r_ftruncate(int fd, off_t len)
{
	int rc;

	pthread_mutex_lock(&rec.mu);
	rc = io_default.ftruncate(fd, len);
	if (rc == 0) {
		struct op *o = op_new(OP_TRUNC);

		o->fd = fd;
		o->off = (uint64_t)len;
	}
	pthread_mutex_unlock(&rec.mu);
	return rc;
}

static int r_path_op(enum op_kind kind, int rc, const char *path, const char *path2)
{
	if (rc == 0) {
		struct op *o = op_new(kind);

		rel_path(o->path, sizeof(o->path), path);
		if (path2)
			rel_path(o->path2, sizeof(o->path2), path2);
	}
	return rc;
}

static int r_unlink(const char *path)
{
	int rc;

	pthread_mutex_lock(&rec.mu);
	rc = r_path_op(OP_UNLINK, io_default.unlink(path), path, NULL);
	pthread_mutex_unlock(&rec.mu);
	return rc;
}

static int r_rename(const char *from, const char *to)
{
	int rc;

	pthread_mutex_lock(&rec.mu);
	rc = r_path_op(OP_RENAME, io_default.rename(from, to), from, to);
	pthread_mutex_unlock(&rec.mu);
	return rc;
}

static int r_mkdir(const char *path, mode_t mode)
{
	int rc;

	pthread_mutex_lock(&rec.mu);
	rc = r_path_op(OP_MKDIR, io_default.mkdir(path, mode), path, NULL);
	pthread_mutex_unlock(&rec.mu);
	return rc;
}

static int r_fsync_dir(const char *path)
{
	int rc;

	pthread_mutex_lock(&rec.mu);
	rc = io_default.fsync_dir(path);
	if (!rec.hide_syncdir)
		r_path_op(OP_SYNCDIR, rc, path, NULL);
	pthread_mutex_unlock(&rec.mu);
	return rc;
}

static int r_close(int fd)
{
	int rc;

	pthread_mutex_lock(&rec.mu);
	rc = io_default.close(fd);
	if (rc == 0)
		op_new(OP_CLOSE)->fd = fd;
	pthread_mutex_unlock(&rec.mu);
	return rc;
}

static int r_fallocate(int fd, off_t len)
{
	int rc;

	pthread_mutex_lock(&rec.mu);
	rc = io_default.fallocate(fd, len);
	if (rc == 0) {
		struct op *o = op_new(OP_FALLOC);

		o->fd = fd;
		o->off = (uint64_t)len;
	}
	pthread_mutex_unlock(&rec.mu);
	return rc;
}

static int r_map(int fd, struct io_map *m)
{
	int rc;

	pthread_mutex_lock(&rec.mu);
	rc = io_default.map(fd, m);
	if (rc == 0) {
		struct op *o = op_new(OP_MAP);

		if (rec.force_pmem >= 0)
			m->is_pmem = rec.force_pmem;
		o->fd = fd;
		o->maddr = (uintptr_t)m->addr;
		o->len = m->len;
		o->pmem = m->is_pmem;
	}
	pthread_mutex_unlock(&rec.mu);
	return rc;
}

static void r_unmap(struct io_map *m)
{
	pthread_mutex_lock(&rec.mu);
	if (m->addr)
		op_new(OP_UNMAP)->maddr = (uintptr_t)m->addr;
	io_default.unmap(m);
	pthread_mutex_unlock(&rec.mu);
}

/* An operation on [off, off + len) of mapping m (under rec.mu). */
static struct op *r_map_op(enum op_kind kind, const struct io_map *m, uint64_t off, size_t len)
{
	struct op *o = op_new(kind);

	o->maddr = (uintptr_t)m->addr;
	o->off = off;
	o->len = len;
	o->pmem = m->is_pmem;
	return o;
}

static void r_copy(struct io_map *m, uint64_t off, const void *src, size_t len)
{
	pthread_mutex_lock(&rec.mu);
	io_default.copy(m, off, src, len);
	if (len) {
		struct op *o = r_map_op(OP_COPY, m, off, len);

		o->data = xcalloc(1, len);
		memcpy(o->data, src, len);
	}
	pthread_mutex_unlock(&rec.mu);
}

static void r_zero(struct io_map *m, uint64_t off, size_t len)
{
	pthread_mutex_lock(&rec.mu);
	io_default.zero(m, off, len);
	if (len)
		r_map_op(OP_ZERO, m, off, len);
	pthread_mutex_unlock(&rec.mu);
}

static int r_drain(struct io_map *m, uint64_t off, size_t len)
{
	int rc;

	pthread_mutex_lock(&rec.mu);
	rc = io_default.drain(m, off, len);
	if (rc == 0 && !rec.hide_drain)
		r_map_op(OP_DRAIN, m, off, len);
	pthread_mutex_unlock(&rec.mu);
	return rc;
}

static int r_flush(struct io_map *m, uint64_t off, size_t len)
{
	int rc;

	pthread_mutex_lock(&rec.mu);
	rc = io_default.flush(m, off, len);
	if (rc == 0)
		r_map_op(OP_FLUSH, m, off, len);
	pthread_mutex_unlock(&rec.mu);
	return rc;
}

static const struct io_ops recorder = {
	.open = r_open,
	.pwrite = r_pwrite,
	.fdatasync = r_fdatasync,
	.ftruncate = r_ftruncate,
	.unlink = r_unlink,
	.rename = r_rename,
	.mkdir = r_mkdir,
	.fsync_dir = r_fsync_dir,
	.close = r_close,
	.fallocate = r_fallocate,
	.map = r_map,
	.unmap = r_unmap,
	.copy = r_copy,
	.zero = r_zero,
	.drain = r_drain,
	.flush = r_flush,
};

static void rec_start(struct oplog *log, const char *root)
{
	pthread_mutex_lock(&rec.mu);
	rec.log = log;
	snprintf(rec.root, sizeof(rec.root), "%s", root);
	rec.rootlen = strlen(rec.root);
	memset(rec.floor, 0, sizeof(rec.floor));
	rec.outside = 0;
	pthread_mutex_unlock(&rec.mu);
	io_set(&recorder);
}

static void rec_stop(void)
{
	io_set(NULL);
	pthread_mutex_lock(&rec.mu);
	rec.log = NULL;
	__atomic_store_n(&rec.w, NULL, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&rec.mu);
}

static void oplog_free(struct oplog *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->ops[i].data);
	free(l->ops);
	memset(l, 0, sizeof(*l));
}

/* ---- the model of what the disk holds ---------------------------------------------------- */

struct bytes {
	uint8_t *b;
	size_t len, cap;
};

static void bytes_set_len(struct bytes *x, size_t len)
{
	if (len > x->cap) {
		size_t cap = x->cap ? x->cap : 4096;

		while (cap < len)
			cap *= 2;
		x->b = xrealloc(x->b, cap);
		x->cap = cap;
	}
	if (len > x->len)
		memset(x->b + x->len, 0, len - x->len);
	x->len = len;
}

static void bytes_write(struct bytes *x, uint64_t off, const uint8_t *data, uint64_t len)
{
	if (off + len > x->len)
		bytes_set_len(x, (size_t)(off + len));
	memcpy(x->b + off, data, (size_t)len);
}

static void bytes_copy(struct bytes *to, const struct bytes *from)
{
	to->len = 0;
	bytes_set_len(to, from->len);
	if (from->len)
		memcpy(to->b, from->b, from->len);
}

enum fp_kind {
	FP_WRITE,  /* pwrite: off, len, data */
	FP_TRUNC,  /* ftruncate to off */
	FP_GROW,   /* fallocate to off (grows only) */
	FP_MAPPED, /* a store into a mapping: off, len, data (NULL: zeros), pmem */
};

struct fpend { /* a change to a file since its last fdatasync */
	enum fp_kind kind;
	int pmem; /* FP_MAPPED: the mapping's is_pmem */
	uint64_t off, len;
	const uint8_t *data;
	size_t op;
};

struct dent {
	char name[64];
	int ino;
};

struct dpend { /* a change to a directory since its last fsync */
	int add; /* 1 add, 0 remove */
	char name[64];
	int ino;
	int ren; /* the rename it belongs to, or -1 */
};

struct rename_st {
	int src, dst; /* directory inodes */
	int synced_src, synced_dst;
	int done; /* durable */
};

struct inode {
	int dir;
	struct bytes cur, dur;
	struct fpend *fp;
	size_t nfp, capfp;
	struct dent *ce, *de; /* current and durable entries */
	size_t nce, cce, nde, cde;
	struct dpend *dp;
	size_t ndp, cdp;
};

struct mapping {
	uintptr_t addr;
	int ino;
};

struct model {
	struct inode *in;
	size_t nin, cin;
	struct rename_st *ren;
	size_t nren, cren;
	struct mapping *maps; /* live mappings */
	size_t nmaps, cmaps;
	int fds[MAXFD];
	uint64_t floor[NPART];	 /* published durable at the crash point */
	uint64_t trunc_lo[NPART]; /* a truncation before this LSN had been asked for */
};

static int ino_new(struct model *m, int dir)
{
	GROW(m->in, m->nin, m->cin);
	memset(&m->in[m->nin], 0, sizeof(m->in[0]));
	m->in[m->nin].dir = dir;
	return (int)m->nin++;
}

static void model_free(struct model *m)
{
	for (size_t i = 0; i < m->nin; i++) {
		struct inode *x = &m->in[i];

		free(x->cur.b);
		free(x->dur.b);
		free(x->fp);
		free(x->ce);
		free(x->de);
		free(x->dp);
	}
	free(m->in);
	free(m->ren);
	free(m->maps);
	memset(m, 0, sizeof(*m));
}

static void ents_set(struct dent **e, size_t *n, size_t *cap, const char *name, int ino)
{
	for (size_t i = 0; i < *n; i++) {
		if (!strcmp((*e)[i].name, name)) {
			(*e)[i].ino = ino;
			return;
		}
	}
	GROW(*e, *n, *cap);
	snprintf((*e)[*n].name, sizeof((*e)[0].name), "%s", name);
	(*e)[(*n)++].ino = ino;
}

static void ents_del(struct dent *e, size_t *n, const char *name)
{
	for (size_t i = 0; i < *n; i++) {
		if (!strcmp(e[i].name, name)) {
			e[i] = e[--*n];
			return;
		}
	}
}

static int ents_get(const struct dent *e, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(e[i].name, name))
			return e[i].ino;
	return -1;
}

/* Splits "a/b/c" into the directory inode of "a/b" (current tree) and "c". -1 if missing. */
static int lookup_parent(struct model *m, const char *path, char *leaf, size_t leaflen)
{
	char buf[96], *s, *slash;
	int d = 0;

	snprintf(buf, sizeof(buf), "%s", path);
	s = buf;
	while ((slash = strchr(s, '/'))) {
		*slash = '\0';
		d = ents_get(m->in[d].ce, m->in[d].nce, s);
		if (d < 0 || !m->in[d].dir)
			return -1;
		s = slash + 1;
	}
	if (strlen(s) >= leaflen)
		return -1;
	memcpy(leaf, s, strlen(s) + 1);
	return d;
}

static int lookup(struct model *m, const char *path)
{
	char leaf[64];
	int d;

	if (!*path)
		return 0;
	d = lookup_parent(m, path, leaf, sizeof(leaf));
	return d < 0 ? -1 : ents_get(m->in[d].ce, m->in[d].nce, leaf);
}

static void dir_change(struct model *m, int d, int add, const char *name, int ino, int ren)
{
	struct inode *x = &m->in[d];

	if (add)
		ents_set(&x->ce, &x->nce, &x->cce, name, ino);
	else
		ents_del(x->ce, &x->nce, name);
	GROW(x->dp, x->ndp, x->cdp);
	x->dp[x->ndp].add = add;
	snprintf(x->dp[x->ndp].name, sizeof(x->dp[0].name), "%s", name);
	x->dp[x->ndp].ino = ino;
	x->dp[x->ndp].ren = ren;
	x->ndp++;
}

static void dpend_apply(struct inode *x, const struct dpend *p)
{
	if (p->add)
		ents_set(&x->de, &x->nde, &x->cde, p->name, p->ino);
	else
		ents_del(x->de, &x->nde, p->name);
}

/* fsync of directory d: its own changes become durable; a rename once both sides are synced. */
static void dir_sync(struct model *m, int d)
{
	struct inode *x = &m->in[d];
	size_t keep = 0;

	for (size_t i = 0; i < x->ndp; i++) {
		struct dpend *p = &x->dp[i];

		if (p->ren >= 0) {
			struct rename_st *r = &m->ren[p->ren];

			if (r->src == d)
				r->synced_src = 1;
			if (r->dst == d)
				r->synced_dst = 1;
			if (!r->done && r->synced_src && r->synced_dst) {
				int other = r->src == d ? r->dst : r->src;

				r->done = 1; /* durable on both sides now */
				if (other != d) {
					struct inode *y = &m->in[other];
					size_t k2 = 0;

					for (size_t j = 0; j < y->ndp; j++) {
						if (y->dp[j].ren == p->ren)
							dpend_apply(y, &y->dp[j]);
						else
							y->dp[k2++] = y->dp[j];
					}
					y->ndp = k2;
				}
			}
			if (!r->done) {
				x->dp[keep++] = *p;
				continue;
			}
		}
		dpend_apply(x, p);
	}
	x->ndp = keep;
}

/* Files and directories as they are when the recording starts: all durable. */
static void model_load(struct model *m, const char *path, int d)
{
	DIR *dh = opendir(path);
	struct dirent *e;

	assert_non_null(dh);
	while ((e = readdir(dh))) {
		char sub[4096];
		struct stat st;
		int ino;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
		assert_int_equal(lstat(sub, &st), 0);
		ino = ino_new(m, S_ISDIR(st.st_mode));
		ents_set(&m->in[d].ce, &m->in[d].nce, &m->in[d].cce, e->d_name, ino);
		ents_set(&m->in[d].de, &m->in[d].nde, &m->in[d].cde, e->d_name, ino);
		if (S_ISDIR(st.st_mode)) {
			model_load(m, sub, ino);
		} else {
			int fd = open(sub, O_RDONLY | O_CLOEXEC);

			assert_true(fd >= 0);
			bytes_set_len(&m->in[ino].cur, (size_t)st.st_size);
			assert_int_equal(pread(fd, m->in[ino].cur.b, (size_t)st.st_size, 0),
					 st.st_size);
			close(fd);
			bytes_copy(&m->in[ino].dur, &m->in[ino].cur);
		}
	}
	closedir(dh);
}

static void model_init(struct model *m, const char *root)
{
	memset(m, 0, sizeof(*m));
	for (int i = 0; i < MAXFD; i++)
		m->fds[i] = -1;
	ino_new(m, 1); /* 0: the WAL directory */
	model_load(m, root, 0);
}

static int fd_ino(struct model *m, int fd)
{
	assert_true(fd >= 0 && fd < MAXFD && m->fds[fd] >= 0);
	return m->fds[fd];
}

static void file_pend(struct model *m, int ino, enum fp_kind kind, uint64_t off, uint64_t len,
		      const uint8_t *data, size_t op)
{
	struct inode *x = &m->in[ino];

	GROW(x->fp, x->nfp, x->capfp);
	x->fp[x->nfp++] = (struct fpend){ kind, 0, off, len, data, op };
}

/* Writes [s, e) of pending write p (zeros if it has no data) into b. */
static void fp_write_part(struct bytes *b, const struct fpend *p, uint64_t s, uint64_t e)
{
	if (p->data) {
		bytes_write(b, s, p->data + (s - p->off), e - s);
	} else {
		if (e > b->len)
			bytes_set_len(b, (size_t)e);
		memset(b->b + s, 0, (size_t)(e - s));
	}
}

/* [s, e) of pending write p, as a pending write of its own. */
static struct fpend fp_part(const struct fpend *p, uint64_t s, uint64_t e)
{
	struct fpend q = *p;

	q.off = s;
	q.len = e - s;
	if (p->data)
		q.data = p->data + (s - p->off);
	return q;
}

static void fp_push(struct fpend **v, size_t *n, size_t *cap, const struct fpend *p)
{
	GROW(*v, *n, *cap);
	(*v)[(*n)++] = *p;
}

/* Appends to v what is left of pending write p outside [lo, hi). */
static void fp_push_outside(struct fpend **v, size_t *n, size_t *cap, const struct fpend *p,
			    uint64_t lo, uint64_t hi)
{
	struct fpend q;

	if (p->kind == FP_TRUNC || p->kind == FP_GROW || hi <= p->off || lo >= p->off + p->len) {
		fp_push(v, n, cap, p);
		return;
	}
	if (p->off < lo) {
		q = fp_part(p, p->off, lo);
		fp_push(v, n, cap, &q);
	}
	if (hi < p->off + p->len) {
		q = fp_part(p, hi, p->off + p->len);
		fp_push(v, n, cap, &q);
	}
}

/* Removes [lo, hi) from every pending write in v (older ones: a newer store won). */
static void fp_cut_all(struct fpend **v, size_t *n, size_t *cap, uint64_t lo, uint64_t hi)
{
	struct fpend *w = NULL;
	size_t nw = 0, cw = 0;

	for (size_t j = 0; j < *n; j++)
		fp_push_outside(&w, &nw, &cw, &(*v)[j], lo, hi);
	free(*v);
	*v = w;
	*n = nw;
	*cap = cw;
}

/*
 * [lo, hi) of file x is written back (msync of its pages, or a flush of its cache lines): the
 * part of every pending write there becomes durable, in the order they were made.
 */
static void persist_range(struct inode *x, uint64_t lo, uint64_t hi)
{
	struct fpend *v = NULL;
	size_t n = 0, cap = 0;

	for (size_t i = 0; i < x->nfp; i++) {
		const struct fpend *p = &x->fp[i];

		if (p->kind != FP_TRUNC && p->kind != FP_GROW) {
			uint64_t s = p->off > lo ? p->off : lo;
			uint64_t e = p->off + p->len < hi ? p->off + p->len : hi;

			if (s < e)
				fp_write_part(&x->dur, p, s, e);
		}
		fp_push_outside(&v, &n, &cap, p, lo, hi);
	}
	free(x->fp);
	x->fp = v;
	x->nfp = n;
	x->capfp = cap;
}

/*
 * A pmem drain (a fence): every pending store into a persistent-memory mapping of file x
 * becomes durable, and with it wins over any older pending write to the same bytes.
 */
static void drain_pmem(struct inode *x)
{
	struct fpend *v = NULL;
	size_t n = 0, cap = 0;

	for (size_t i = 0; i < x->nfp; i++) {
		const struct fpend *p = &x->fp[i];

		if (p->kind != FP_MAPPED || !p->pmem) {
			fp_push(&v, &n, &cap, p);
			continue;
		}
		fp_write_part(&x->dur, p, p->off, p->off + p->len);
		fp_cut_all(&v, &n, &cap, p->off, p->off + p->len);
	}
	free(x->fp);
	x->fp = v;
	x->nfp = n;
	x->capfp = cap;
}

static int map_ino(const struct model *m, uintptr_t addr)
{
	for (size_t i = 0; i < m->nmaps; i++)
		if (m->maps[i].addr == addr)
			return m->maps[i].ino;
	fail_msg("a store into a mapping the model does not know (%#" PRIxPTR ")", addr);
	return -1;
}

/* Applies operation i to the model. */
static void model_apply(struct model *m, const struct op *o, size_t i)
{
	char leaf[64], leaf2[64];
	int d, d2, ino;

	memcpy(m->floor, o->floor, sizeof(m->floor));
	switch (o->kind) {
	case OP_OPEN:
		ino = lookup(m, o->path);
		if (o->created || ino < 0) {
			assert_true(o->created);
			d = lookup_parent(m, o->path, leaf, sizeof(leaf));
			assert_true(d >= 0);
			ino = ino_new(m, 0);
			dir_change(m, d, 1, leaf, ino, -1);
		}
		m->fds[o->fd] = ino;
		break;
	case OP_WRITE:
		ino = fd_ino(m, o->fd);
		bytes_write(&m->in[ino].cur, o->off, o->data, o->len);
		file_pend(m, ino, FP_WRITE, o->off, o->len, o->data, i);
		break;
	case OP_TRUNC:
		ino = fd_ino(m, o->fd);
		bytes_set_len(&m->in[ino].cur, (size_t)o->off);
		file_pend(m, ino, FP_TRUNC, o->off, 0, NULL, i);
		break;
	case OP_FALLOC:
		ino = fd_ino(m, o->fd);
		if (o->off > m->in[ino].cur.len) {
			bytes_set_len(&m->in[ino].cur, (size_t)o->off);
			file_pend(m, ino, FP_GROW, o->off, 0, NULL, i);
		}
		break;
	case OP_MAP:
		ino = fd_ino(m, o->fd);
		assert_int_equal(o->len, m->in[ino].cur.len);
		GROW(m->maps, m->nmaps, m->cmaps);
		m->maps[m->nmaps++] = (struct mapping){ o->maddr, ino };
		break;
	case OP_UNMAP:
		map_ino(m, o->maddr);
		for (size_t j = 0; j < m->nmaps; j++)
			if (m->maps[j].addr == o->maddr)
				m->maps[j] = m->maps[--m->nmaps];
		break;
	case OP_COPY:
	case OP_ZERO:
		ino = map_ino(m, o->maddr);
		{
			struct inode *x = &m->in[ino];
			struct fpend p = { FP_MAPPED, o->pmem, o->off, o->len, o->data, i };

			/* a store past the end of the file would be SIGBUS, not a write */
			assert_true(o->off + o->len <= x->cur.len);
			fp_write_part(&x->cur, &p, o->off, o->off + o->len);
			fp_push(&x->fp, &x->nfp, &x->capfp, &p);
		}
		break;
	case OP_DRAIN:
	case OP_FLUSH:
		ino = map_ino(m, o->maddr);
		if (o->kind == OP_DRAIN && o->pmem) {
			/* the fence covers every earlier store of the thread, in any mapping (the
			 * flusher and recovery each store from one thread) */
			for (size_t j = 0; j < m->nin; j++)
				drain_pmem(&m->in[j]);
		} else if (o->len) {
			uint64_t unit = o->pmem ? 64 : 4096; /* cache lines, or pages (msync) */

			persist_range(&m->in[ino], o->off / unit * unit,
				      (o->off + o->len + unit - 1) / unit * unit);
		}
		break;
	case OP_SYNC:
		ino = fd_ino(m, o->fd);
		bytes_copy(&m->in[ino].dur, &m->in[ino].cur);
		m->in[ino].nfp = 0;
		break;
	case OP_CLOSE:
		fd_ino(m, o->fd);
		m->fds[o->fd] = -1;
		break;
	case OP_UNLINK:
		d = lookup_parent(m, o->path, leaf, sizeof(leaf));
		assert_true(d >= 0);
		ino = ents_get(m->in[d].ce, m->in[d].nce, leaf);
		assert_true(ino >= 0);
		dir_change(m, d, 0, leaf, ino, -1);
		break;
	case OP_MKDIR:
		d = lookup_parent(m, o->path, leaf, sizeof(leaf));
		assert_true(d >= 0);
		dir_change(m, d, 1, leaf, ino_new(m, 1), -1);
		break;
	case OP_RENAME:
		d = lookup_parent(m, o->path, leaf, sizeof(leaf));
		d2 = lookup_parent(m, o->path2, leaf2, sizeof(leaf2));
		assert_true(d >= 0 && d2 >= 0);
		ino = ents_get(m->in[d].ce, m->in[d].nce, leaf);
		assert_true(ino >= 0);
		GROW(m->ren, m->nren, m->cren);
		m->ren[m->nren] = (struct rename_st){ d, d2, 0, 0, 0 };
		dir_change(m, d, 0, leaf, ino, (int)m->nren);
		dir_change(m, d2, 1, leaf2, ino, (int)m->nren);
		m->nren++;
		break;
	case OP_SYNCDIR:
		d = lookup(m, o->path);
		assert_true(d >= 0 && m->in[d].dir);
		dir_sync(m, d);
		break;
	case OP_TRUNCATED:
		if (o->off > m->trunc_lo[o->part])
			m->trunc_lo[o->part] = o->off;
		break;
	}
}

/* Is anything not yet durable? */
static int model_pending(const struct model *m)
{
	for (size_t i = 0; i < m->nin; i++)
		if (m->in[i].nfp || m->in[i].ndp)
			return 1;
	return 0;
}

/* Is a fallocate's size not yet durable? */
static int model_pending_grow(const struct model *m)
{
	for (size_t i = 0; i < m->nin; i++)
		for (size_t j = 0; j < m->in[i].nfp; j++)
			if (m->in[i].fp[j].kind == FP_GROW)
				return 1;
	return 0;
}

/* ---- crash states ------------------------------------------------------------------------ */

/* P_NOSIZE (only where a fallocate is pending): its size lost, every write made it. */
enum policy { P_DROP, P_KEEP, P_ZERO, P_TORN, P_DIRLAST, P_RANDOM, P_NOSIZE };
#define N_FIXED 5 /* the policies before P_RANDOM */
static const char *const policy_name[] = { "drop", "keep", "zero", "torn", "dirlast",
					     "random", "nosize" };

struct crash {
	enum policy pol;
	uint64_t rng;
	size_t newest_write; /* P_TORN: the op index of the newest write or store */
	uint64_t torn_end;   /* P_TORN: sectors of it before this offset made it (not pmem) */
	uint8_t *ren_coin;
	uint64_t run_left;   /* P_RANDOM, pmem: words left in the current run */
	int run_keep;	     /* ... and whether they are kept */
	int copies_lost;     /* a pending copy lost bytes (it was not drained) */
	int copies_torn;     /* a pending copy made it in part */
	size_t root_len;     /* of the crash state's path */
	uint64_t digest;     /* of the tree written: names, kinds, contents (any order) */
};

/* A 64-bit hash of len bytes, seeded (not cryptographic: tells crash states apart). */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t len)
{
	const uint8_t *b = p;
	size_t i = 0;

	h ^= len * 0x9e3779b97f4a7c15ull;
	for (; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, b + i, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdull;
		h ^= h >> 32;
	}
	for (; i < len; i++)
		h = (h ^ b[i]) * 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 29;
	return h * 0x94d049bb133111ebull;
}

static int coin(struct crash *c) { return (int)(th_rand(&c->rng) >> 63); }

/*
 * One aligned 8-byte word of a pending store into persistent memory, [s, e) of p: made it (1)
 * or not (0). Words are atomic and reach the media in any order.
 */
static int pmem_word(struct crash *c, const struct fpend *p, uint64_t s, uint64_t *line,
		     int *line_keep)
{
	switch (c->pol) {
	case P_DROP:
		return 0;
	case P_KEEP:
	case P_DIRLAST:
	case P_NOSIZE:
		return 1;
	case P_ZERO: /* here: each 64-byte line made it whole or not at all */
		if (s / 64 != *line) {
			*line = s / 64;
			*line_keep = coin(c);
		}
		return *line_keep;
	case P_TORN:
		return p->op < c->newest_write ? 1 : p->op > c->newest_write ? 0 : coin(c);
	default:
		if (!c->run_left) {
			c->run_left = 1 + th_rand(&c->rng) % (1u << (th_rand(&c->rng) % 9));
			c->run_keep = coin(c);
		}
		c->run_left--;
		return c->run_keep;
	}
}

/* The durable contents of a file after the crash. */
static void file_state(struct model *m, struct crash *c, int ino, struct bytes *out)
{
	struct inode *x = &m->in[ino];

	bytes_copy(out, &x->dur);
	for (size_t i = 0; i < x->nfp; i++) {
		const struct fpend *p = &x->fp[i];
		const int pmem = p->kind == FP_MAPPED && p->pmem;
		const uint64_t unit = pmem ? 8 : SECTOR;
		uint64_t s, e, line = UINT64_MAX;
		int line_keep = 0, kept = 0, lost = 0;

		if (p->kind == FP_TRUNC) {
			if (c->pol == P_KEEP || c->pol == P_TORN || c->pol == P_DIRLAST ||
			    c->pol == P_NOSIZE || (c->pol == P_RANDOM && coin(c)))
				bytes_set_len(out, (size_t)p->off);
			continue;
		}
		if (p->kind == FP_GROW) {
			int grew = c->pol == P_RANDOM ? coin(c)
						      : c->pol != P_DROP && c->pol != P_NOSIZE;

			if (grew && p->off > out->len)
				bytes_set_len(out, (size_t)p->off);
			continue;
		}
		for (s = p->off; s < p->off + p->len; s = e) {
			/* one aligned piece: a sector, or a word of persistent memory */
			int what; /* 0 lost, 1 kept, 2 zeros */

			e = (s / unit + 1) * unit;
			if (e > p->off + p->len)
				e = p->off + p->len;
			if (pmem) {
				what = pmem_word(c, p, s, &line, &line_keep);
			} else {
				switch (c->pol) {
				case P_DROP:
					what = 0;
					break;
				case P_KEEP:
				case P_DIRLAST:
				case P_NOSIZE:
					what = 1;
					break;
				case P_ZERO:
					what = 2;
					break;
				case P_TORN:
					if (p->op < c->newest_write)
						what = 1;
					else if (p->op > c->newest_write)
						what = 0;
					else
						what = s < c->torn_end;
					break;
				default:
					what = (int)(th_rand(&c->rng) % 3);
					break;
				}
			}
			if (what == 1)
				fp_write_part(out, p, s, e);
			else if (what == 2 && e > out->len)
				bytes_set_len(out, (size_t)e); /* grew, data lost: zeros */
			kept |= what == 1;
			lost |= what != 1;
		}
		if (p->kind == FP_MAPPED && p->data) {
			c->copies_lost |= lost;
			c->copies_torn |= lost && kept;
		}
	}
}

static void rm_tree(const char *path)
{
	DIR *dh = opendir(path);
	struct dirent *e;

	if (!dh)
		return;
	while ((e = readdir(dh))) {
		char sub[4096];
		struct stat st;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
		if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
			rm_tree(sub);
		else
			unlink(sub);
	}
	closedir(dh);
	rmdir(path);
}

/* Writes directory d of the crash state to path. */
static void materialize_dir(struct model *m, struct crash *c, int d, const char *path,
			    struct bytes *tmp)
{
	struct inode *x = &m->in[d];
	struct dent *e = NULL;
	size_t n = 0, cap = 0;

	assert_int_equal(mkdir(path, 0700), 0);
	for (size_t i = 0; i < x->nde; i++)
		ents_set(&e, &n, &cap, x->de[i].name, x->de[i].ino);
	for (size_t i = 0; i < x->ndp; i++) {
		const struct dpend *p = &x->dp[i];
		int apply;

		if (p->ren >= 0)
			apply = c->ren_coin[p->ren];
		else if (c->pol == P_DIRLAST)
			apply = i + 1 == x->ndp;
		else
			apply = c->pol == P_DROP ? 0 : c->pol == P_RANDOM ? coin(c) : 1;
		if (!apply)
			continue;
		if (p->add)
			ents_set(&e, &n, &cap, p->name, p->ino);
		else
			ents_del(e, &n, p->name);
	}
	for (size_t i = 0; i < n; i++) {
		char sub[4096];

		snprintf(sub, sizeof(sub), "%s/%s", path, e[i].name);
		if (m->in[e[i].ino].dir) {
			c->digest += hash_bytes(1, sub + c->root_len, strlen(sub + c->root_len));
			materialize_dir(m, c, e[i].ino, sub, tmp);
		} else {
			int fd = open(sub, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

			assert_true(fd >= 0);
			file_state(m, c, e[i].ino, tmp);
			assert_int_equal(write(fd, tmp->b, tmp->len), (ssize_t)tmp->len);
			close(fd);
			c->digest += hash_bytes(hash_bytes(2, sub + c->root_len,
							   strlen(sub + c->root_len)),
						tmp->b, tmp->len);
		}
	}
	free(e);
}

/* What a crash state holds of the copies not yet drained (materialize's result). */
#define UNDRAINED_LOST 1 /* some lost bytes */
#define UNDRAINED_TORN 2 /* some made it in part */

static int materialize(struct model *m, const struct oplog *log, size_t k, enum policy pol,
		       uint64_t seed, const char *path, uint64_t *digest)
{
	struct crash c = { .pol = pol, .rng = seed | 1, .root_len = strlen(path) };
	struct bytes tmp = { 0 };

	c.ren_coin = xcalloc(m->nren, 1);
	for (size_t r = 0; r < m->nren; r++)
		c.ren_coin[r] = pol == P_DROP ? 0 : pol == P_RANDOM ? (uint8_t)coin(&c) : 1;
	if (pol == P_TORN) {
		for (size_t i = k; i-- > 0;) {
			const struct op *o = &log->ops[i];

			if (o->kind == OP_WRITE || o->kind == OP_COPY || o->kind == OP_ZERO) {
				uint64_t sectors = th_rand(&c.rng) % (o->len / SECTOR + 1);

				c.newest_write = i;
				c.torn_end = o->off + sectors * SECTOR;
				break;
			}
		}
	}
	rm_tree(path);
	materialize_dir(m, &c, 0, path, &tmp);
	free(tmp.b);
	free(c.ren_coin);
	if (digest)
		*digest = c.digest;
	return (c.copies_lost ? UNDRAINED_LOST : 0) | (c.copies_torn ? UNDRAINED_TORN : 0);
}

/* ---- the workload and its reference ------------------------------------------------------ */

struct ref {
	uint64_t lsn;
	uint32_t thread;
	uint64_t seq;
};

struct refs {
	pthread_mutex_t mu;
	struct ref *r[NPART];
	size_t n[NPART], cap[NPART];
};

struct work {
	struct shmwal *w;
	struct refs *refs;
	uint32_t thread;
	uint64_t records;
	int rc;
	int finished; /* set by the producer thread when it stops (rc is final then) */
};

static void *producer(void *arg)
{
	struct work *wk = arg;
	uint64_t rng = 0x9e3779b97f4a7c15ull * (wk->thread + 1);
	uint8_t val[2048];
	char key[32];

	for (uint64_t s = 0; s < wk->records && wk->rc == 0; s++) {
		uint32_t part = (uint32_t)((s + wk->thread) % NPART);
		uint32_t len = TH_STAMP_MIN + (uint32_t)(th_rand(&rng) % (sizeof(val) - TH_STAMP_MIN));
		uint32_t klen = th_key(key, 0, wk->thread, s);
		uint64_t lsn = 0;
		int rc;

		if (s % 7 == 3) { /* an aborted claim: must never show up as a record */
			struct shmwal_claim c;

			rc = shmwal_claim(wk->w, part, SHMWAL_TYPE_PUT, 0, 100 + (uint32_t)(s % 300),
					  &c);
			if (rc == 0)
				rc = shmwal_abort(wk->w, &c);
			if (rc < 0) {
				wk->rc = rc;
				break;
			}
		}
		th_fill(val, len, 0, wk->thread, s);
		if (s % 5 == 1) { /* zero-copy */
			struct shmwal_claim c;

			rc = shmwal_claim(wk->w, part, SHMWAL_TYPE_PUT, klen, len, &c);
			if (rc == 0) {
				memcpy(c.key, key, klen);
				memcpy(c.value, val, len);
				lsn = c.lsn;
				rc = shmwal_commit(wk->w, &c);
			}
		} else {
			rc = shmwal_append(wk->w, part, SHMWAL_TYPE_PUT, key, klen, val, len, &lsn);
		}
		if (rc == 0) {
			struct refs *R = wk->refs;

			pthread_mutex_lock(&R->mu);
			GROW(R->r[part], R->n[part], R->cap[part]);
			R->r[part][R->n[part]++] = (struct ref){ lsn, wk->thread, s };
			pthread_mutex_unlock(&R->mu);
		}
		if (rc == 0 && s % 4 == 0)
			rc = shmwal_wait_durable(wk->w, part, lsn, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC);
		if (rc < 0)
			wk->rc = rc;
	}
	__atomic_store_n(&wk->finished, 1, __ATOMIC_RELEASE); /* pairs: record_run's wait */
	return NULL;
}

struct fl_thread {
	char dir[4096];
	int stop;
	int rc;
	char err[512];
};

static void *flusher_thread(void *arg)
{
	struct fl_thread *f = arg;

	f->rc = shmwal_flusher_run(f->dir, NULL, &f->stop);
	if (f->rc < 0)
		snprintf(f->err, sizeof(f->err), "%s", shmwal_last_error());
	return NULL;
}

/* The recording's flusher thread; a failed test's teardown stops it. */
static struct fl_thread g_fl;
static pthread_t g_ft;
static int g_ft_running;

static int teardown(void **state)
{
	(void)state;
	__atomic_store_n(&rec.w, NULL, __ATOMIC_RELEASE);
	if (g_ft_running) {
		__atomic_store_n(&g_fl.stop, 1, __ATOMIC_RELAXED);
		pthread_join(g_ft, NULL);
		g_ft_running = 0;
	}
	rec_stop();
	rec.hide_syncdir = rec.hide_fdatasync = rec.hide_drain = 0;
	rec.force_pmem = -1;
	return 0;
}

static int ref_cmp(const void *a, const void *b)
{
	const struct ref *x = a, *y = b;

	return x->lsn < y->lsn ? -1 : x->lsn > y->lsn;
}

/*
 * Runs the workload on a fresh WAL in dir with every file operation recorded. The records
 * written land in refs (sorted by LSN per partition).
 */
static void record_run(const char *dir, enum shmwal_sync sync, uint64_t per_thread,
		       struct oplog *log, struct refs *refs)
{
	struct fl_thread *fl = &g_fl;
	struct work wk[2];
	pthread_t pt[2];
	struct shmwal *w;
	uint64_t last[NPART] = { 0 };

	(void)sync;
	rec_start(log, dir);
	memset(fl, 0, sizeof(*fl));
	snprintf(fl->dir, sizeof(fl->dir), "%s", dir);
	assert_int_equal(pthread_create(&g_ft, NULL, flusher_thread, fl), 0);
	g_ft_running = 1;
	assert_int_equal(th_open(dir, &w), 0);
	__atomic_store_n(&rec.w, w, __ATOMIC_RELEASE);
	for (uint32_t t = 0; t < 2; t++) {
		wk[t] = (struct work){ .w = w, .refs = refs, .thread = t, .records = per_thread };
		assert_int_equal(pthread_create(&pt[t], NULL, producer, &wk[t]), 0);
	}
	/*
	 * Once two segments of each partition are durable (or the producers are done), truncate
	 * each partition before what is durable: every whole segment goes, while the flusher
	 * goes on writing.
	 */
	for (;;) {
		int64_t d0 = shmwal_durable_lsn(w, 0), d1 = shmwal_durable_lsn(w, 1);

		if ((d0 >= (int64_t)TRUNC_AT && d1 >= (int64_t)TRUNC_AT) ||
		    __atomic_load_n(&wk[0].finished, __ATOMIC_ACQUIRE) ||
		    __atomic_load_n(&wk[1].finished, __ATOMIC_ACQUIRE))
			break;
		sched_yield();
	}
	for (uint32_t p = 0; p < NPART; p++) {
		int64_t d = shmwal_durable_lsn(w, p);
		int rc;

		assert_true(d >= 0);
		/* From the moment it is asked for, records before d may go. */
		pthread_mutex_lock(&rec.mu);
		{
			struct op *o = op_new(OP_TRUNCATED);

			o->part = p;
			o->off = (uint64_t)d;
		}
		pthread_mutex_unlock(&rec.mu);
		rc = shmwal_truncate_before(dir, p, (uint64_t)d);
		assert_true(rc >= 0);
		if ((uint64_t)d >= TRUNC_AT)
			assert_true(rc >= 2); /* several unlinks: their order is part of the test */
	}
	for (uint32_t t = 0; t < 2; t++) {
		pthread_join(pt[t], NULL);
		assert_int_equal(wk[t].rc, 0);
	}
	for (uint32_t p = 0; p < NPART; p++) {
		for (size_t i = 0; i < refs->n[p]; i++)
			if (refs->r[p][i].lsn > last[p])
				last[p] = refs->r[p][i].lsn;
		assert_int_equal(shmwal_wait_durable(w, p, last[p],
						     (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC),
				 0);
	}
	/* What is durable now is the floor after the last operation. */
	pthread_mutex_lock(&rec.mu);
	op_new(OP_TRUNCATED)->off = 0;
	pthread_mutex_unlock(&rec.mu);
	__atomic_store_n(&rec.w, NULL, __ATOMIC_RELEASE);
	shmwal_close(w);
	__atomic_store_n(&fl->stop, 1, __ATOMIC_RELAXED);
	pthread_join(g_ft, NULL);
	g_ft_running = 0;
	assert_int_equal(rec.outside, 0); /* the flusher touched nothing outside its directory */
	rec_stop();
	if (fl->rc != 0)
		fail_msg("flusher: %s", fl->err);
	for (uint32_t p = 0; p < NPART; p++)
		qsort(refs->r[p], refs->n[p], sizeof(struct ref), ref_cmp);
}

static void refs_free(struct refs *r)
{
	for (uint32_t p = 0; p < NPART; p++)
		free(r->r[p]);
}

/* ---- the check of one crash state -------------------------------------------------------- */

struct stats {
	uint64_t states, nested_states, extended, violations, records_checked;
	uint64_t rec_cuts, rec_moves; /* torn tails cut, segments quarantined by recoveries */
	/* pmem: crash states (not during recovery) in which copies not yet drained lost bytes,
	 * or made it in part; whose recovery cleared bytes past the end (zeroed), or gave a short
	 * last segment its size (fallocate) */
	uint64_t undrained_lost, undrained_torn, rec_cleared, rec_grown;
	uint64_t nested_after[OP_KINDS]; /* crashes during recovery, by the operation before */
	uint64_t nested_after_extend;	 /* ... after a fallocate that extended a segment */
	uint64_t nested_picks;		 /* states whose recovery cleared bytes past the end */
	uint64_t duplicates;		 /* states not checked again: the same files as another
					    policy's at the same point */
	char first[512];
};

static void violation(struct stats *st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void violation(struct stats *st, const char *fmt, ...)
{
	va_list ap;

	if (!st->violations++) {
		va_start(ap, fmt);
		vsnprintf(st->first, sizeof(st->first), fmt, ap);
		va_end(ap);
	}
}

static ssize_t ref_find(const struct refs *R, uint32_t p, uint64_t lsn)
{
	size_t lo = 0, hi = R->n[p];

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (R->r[p][mid].lsn < lsn)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < R->n[p] && R->r[p][lo].lsn == lsn ? (ssize_t)lo : -1;
}

/* First index with lsn >= x. */
static size_t ref_lower(const struct refs *R, uint32_t p, uint64_t x)
{
	size_t i = 0;

	while (i < R->n[p] && R->r[p][i].lsn < x)
		i++;
	return i;
}

/*
 * The log goes on after a crash: a flusher starts on the recovered directory, one new record
 * per partition lands exactly at the recovered end pos[p], and reads back intact from there.
 */
static void check_extend(const char *dir, const uint64_t *pos, struct stats *st, const char *what)
{
	struct fl_thread *f = xcalloc(1, sizeof(*f));
	struct oplog ops = { 0 };
	struct shmwal *w = NULL;
	pthread_t t;
	uint8_t val[100];
	uint64_t lsn[NPART] = { 0 };
	int rc;

	snprintf(f->dir, sizeof(f->dir), "%s", dir);
	rec_start(&ops, dir); /* the mappings get the run's is_pmem */
	assert_int_equal(pthread_create(&t, NULL, flusher_thread, f), 0);
	rc = th_open(dir, &w);
	for (uint32_t p = 0; rc == 0 && p < NPART; p++) {
		th_fill(val, sizeof(val), 1, 0, p);
		rc = shmwal_append(w, p, SHMWAL_TYPE_PUT, NULL, 0, val, sizeof(val), &lsn[p]);
		if (rc == 0)
			rc = shmwal_wait_durable(w, p, lsn[p], (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC);
	}
	if (rc < 0)
		violation(st, "%s: appending after recovery: %s", what, shmwal_last_error());
	if (w)
		shmwal_close(w);
	__atomic_store_n(&f->stop, 1, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	if (rec.outside)
		violation(st, "%s: the flusher touched files outside the WAL", what);
	rec_stop();
	oplog_free(&ops);
	th_shm_unlink(dir);
	if (f->rc != 0)
		violation(st, "%s: flusher after recovery: %s", what, f->err);
	free(f);
	for (uint32_t p = 0; rc == 0 && p < NPART; p++) {
		struct shmwal_reader *r;
		struct shmwal_record x;
		struct th_stamp stamp;

		if (lsn[p] != pos[p]) {
			violation(st, "%s: p%u: a new record went to LSN %" PRIu64
				      ", not to the recovered end %" PRIu64,
				  what, p, lsn[p], pos[p]);
			return;
		}
		if (shmwal_reader_open(dir, p, pos[p], &r) < 0) {
			violation(st, "%s: p%u: reader at the new record: %s", what, p,
				  shmwal_last_error());
			return;
		}
		rc = shmwal_reader_next(r, &x, 0);
		if (rc < 0 || x.lsn != pos[p] || th_check(x.value, x.value_len, &stamp) < 0 ||
		    stamp.producer != 1 || stamp.seq != p)
			violation(st, "%s: p%u: the record appended after recovery is not there", what,
				  p);
		shmwal_reader_close(r);
		rc = 0;
	}
}

/*
 * Starts a flusher on the crash state in dir (recovery, as after a reboot) and reads it back.
 * Recovery's operations are recorded into `recovery`.
 */
/*
 * pmem: past the end of the log (end, where the reader stopped), the last segment of partition
 * p holds only zeros: recovery cleared it (persist/recovery.c). Frames of an undrained batch
 * left there would pass as records once new ones reached them.
 */
static void check_zero_tail(const char *dir, uint32_t p, uint64_t end, struct stats *st,
			    const char *what)
{
	char pdir[4200], name[24], path[4300];
	uint8_t buf[65536];
	uint64_t first = 0, f, off;
	struct dirent *e;
	int fd, found = 0;
	DIR *dh;

	snprintf(pdir, sizeof(pdir), "%s/p%03u", dir, p);
	dh = opendir(pdir);
	assert_non_null(dh);
	while ((e = readdir(dh)))
		if (shmwal_segment_name_parse(e->d_name, &f) == 0 && (!found || f > first)) {
			first = f;
			found = 1;
		}
	closedir(dh);
	if (!found || end < first) {
		violation(st, "%s: p%u: the log ends at LSN %" PRIu64 ", not in its last segment",
			  what, p, end);
		return;
	}
	shmwal_segment_name(name, first);
	snprintf(path, sizeof(path), "%s/%s", pdir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	for (off = SHMWAL_SEG_HDR + end - first;;) {
		ssize_t n = pread(fd, buf, sizeof(buf), (off_t)off);

		assert_true(n >= 0);
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i]) {
				violation(st,
					  "%s: p%u/%s: byte %" PRIu64 " past the end of the log "
					  "(LSN %" PRIu64 ") is not zero",
					  what, p, name, off + (uint64_t)i, end);
				close(fd);
				return;
			}
		}
		off += (uint64_t)n;
	}
	close(fd);
}

static void check_state(const char *dir, const struct model *m, const struct refs *R,
			struct stats *st, const char *what, struct oplog *recovery, int extend)
{
	struct shmwal_flusher_options o = { .exit_when_idle = 1 };
	uint64_t pos[NPART] = { 0 };
	int stop = 0, rc;
	uint64_t bad = st->violations;

	rec_start(recovery, dir);
	rc = shmwal_flusher_run(dir, &o, &stop);
	if (rec.outside)
		violation(st, "%s: recovery touched files outside the WAL", what);
	rec_stop();
	th_shm_unlink(dir);
	if (rc != 0) {
		violation(st, "%s: recovery failed: %s", what, shmwal_last_error());
		return;
	}
	for (uint32_t p = 0; p < NPART; p++) {
		struct shmwal_reader *r;
		struct shmwal_record x;
		ssize_t prev = -1, first = -1;
		size_t need_lo = ref_lower(R, p, m->trunc_lo[p]), need_hi = ref_lower(R, p, m->floor[p]);

		rc = shmwal_reader_open(dir, p, SHMWAL_LSN_OLDEST, &r);
		if (rc < 0) {
			violation(st, "%s: p%u: reader_open: %s", what, p, shmwal_last_error());
			continue;
		}
		while ((rc = shmwal_reader_next(r, &x, 0)) == 0) {
			ssize_t i = ref_find(R, p, x.lsn);
			struct th_stamp s;
			char key[32];
			uint32_t klen;

			st->records_checked++;
			if (i < 0) {
				violation(st, "%s: p%u: LSN %" PRIu64 " was never written", what, p,
					  x.lsn);
				break;
			}
			klen = th_key(key, 0, R->r[p][i].thread, R->r[p][i].seq);
			if (th_check(x.value, x.value_len, &s) < 0 || s.thread != R->r[p][i].thread ||
			    s.seq != R->r[p][i].seq || x.key_len != klen ||
			    memcmp(x.key, key, klen)) {
				violation(st, "%s: p%u: LSN %" PRIu64 " torn or wrong", what, p,
					  x.lsn);
				break;
			}
			if (prev >= 0 && i != prev + 1) {
				violation(st, "%s: p%u: records missing before LSN %" PRIu64, what, p,
					  x.lsn);
				break;
			}
			if (first < 0)
				first = i;
			prev = i;
		}
		if (rc != -ETIMEDOUT && rc != 0)
			violation(st, "%s: p%u: read error: %s", what, p, shmwal_last_error());
		pos[p] = shmwal_reader_position(r);
		shmwal_reader_close(r);
		if (rec.force_pmem >= 0) /* the pmem backend */
			check_zero_tail(dir, p, pos[p], st, what);
		if (need_hi > need_lo &&
		    (first < 0 || (size_t)first > need_lo || (size_t)(prev + 1) < need_hi))
			violation(st,
				  "%s: p%u: durable records lost: need #%zu..#%zu (LSN %" PRIu64
				  "..%" PRIu64 "), found #%zd..#%zd",
				  what, p, need_lo, need_hi, m->trunc_lo[p], m->floor[p], first, prev);
	}
	if (extend && st->violations == bad) {
		check_extend(dir, pos, st, what);
		st->extended++;
	}
}

/* ---- the simulation ---------------------------------------------------------------------- */

static int has_file(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/*
 * Recovery never deletes: every segment file of `before` (a crash state) is still in `after`
 * (a crash during its recovery), in its partition directory or in quarantine/ as
 * pNNN-<name>.<time>.
 */
static void check_kept(const char *before, const char *after, struct stats *st, const char *what)
{
	for (uint32_t p = 0; p < NPART; p++) {
		char pdir[4200], path[4400], prefix[300];
		struct dirent *e;
		DIR *dh;

		snprintf(pdir, sizeof(pdir), "%s/p%03u", before, p);
		dh = opendir(pdir);
		if (!dh)
			continue;
		while ((e = readdir(dh))) {
			struct dirent *q;
			DIR *qh;
			int found;

			if (!strstr(e->d_name, ".seg"))
				continue;
			snprintf(path, sizeof(path), "%s/p%03u/%s", after, p, e->d_name);
			found = has_file(path);
			snprintf(prefix, sizeof(prefix), "p%03u-%s.", p, e->d_name);
			snprintf(path, sizeof(path), "%s/quarantine", after);
			qh = found ? NULL : opendir(path);
			while (qh && !found && (q = readdir(qh)))
				found = !strncmp(q->d_name, prefix, strlen(prefix));
			if (qh)
				closedir(qh);
			if (!found)
				violation(st, "%s: p%u/%s vanished during recovery", what, p,
					  e->d_name);
		}
		closedir(dh);
	}
}

static void crash_points(const char *base, const struct oplog *log, const struct refs *R,
			 const char *root_at_start_copy, unsigned seeds, unsigned nested_every,
			 int pmem, struct stats *st, int level, struct model *init_from);

/*
 * The states crashed during their recovery: one in NESTED_EVERY (PMEM_NESTED_EVERY: pmem
 * recovery has more steps to cut), every state right after a segment was created (zero and
 * torn; pmem: torn), and with pmem, every state whose recovery gave a short segment its size
 * and one in PMEM_CLEARED_EVERY of those whose recovery cleared bytes past the end.
 */
#define NESTED_EVERY 20
#define PMEM_NESTED_EVERY (200 * (SANITIZED + 1)) /* sanitized builds: half as many */
#define PMEM_CLEARED_EVERY (48 * (SANITIZED + 1))

/* Is operation j of l a fallocate of a file that existed before (not one l created)? */
static int extends_file(const struct oplog *l, size_t j)
{
	if (l->ops[j].kind != OP_FALLOC)
		return 0;
	for (size_t i = j; i-- > 0;)
		if (l->ops[i].kind == OP_OPEN && l->ops[i].fd == l->ops[j].fd)
			return !l->ops[i].created;
	return 1;
}

/* Did a recovery (its recorded operations) clear bytes past the end, or give a segment that
 * existed before it its size? (A segment it creates is given its size too: not counted.) */
static void recovery_steps(const struct oplog *l, int *cleared, int *grown)
{
	*cleared = *grown = 0;
	for (size_t j = 0; j < l->n; j++) {
		*cleared |= l->ops[j].kind == OP_ZERO;
		*grown |= extends_file(l, j);
	}
}

/*
 * Replays log over the model of root_at_start_copy (the WAL as it was when recording began)
 * and checks every crash state. level 0 also simulates crashes during the recovery of a sample
 * of states (level 1).
 */
static void crash_points(const char *base, const struct oplog *log, const struct refs *R,
			 const char *root_at_start_copy, unsigned seeds, unsigned nested_every,
			 int pmem, struct stats *st, int level, struct model *init_from)
{
	struct model m;
	char dir[4096], what[160];
	uint64_t n_pending_states = 0;

	snprintf(dir, sizeof(dir), "%s/state%d", base, level);
	model_init(&m, root_at_start_copy);
	if (init_from) {
		memcpy(m.floor, init_from->floor, sizeof(m.floor));
		memcpy(m.trunc_lo, init_from->trunc_lo, sizeof(m.trunc_lo));
	}
	for (size_t k = 0; k <= log->n; k++) {
		if (k > 0) {
			uint64_t fl[NPART];

			memcpy(fl, m.floor, sizeof(fl));
			model_apply(&m, &log->ops[k - 1], k - 1);
			if (init_from) /* recovery publishes nothing new: keep the outer floor */
				memcpy(m.floor, fl, sizeof(fl));
		}
		/* the floor for a crash after op k-1 is what was published before op k */
		if (k < log->n && !init_from)
			memcpy(m.floor, log->ops[k].floor, sizeof(m.floor));
		if (k < log->n && log->ops[k].kind == OP_TRUNCATED && k + 1 < log->n)
			continue; /* not a file operation: the state equals the next one's */
		int pending = model_pending(&m);
		unsigned variants =
			pending ? N_FIXED + seeds + (unsigned)model_pending_grow(&m) : 1;
		uint64_t *seen = xcalloc(variants, sizeof(*seen)); /* digests of states checked */
		unsigned nseen = 0;

		for (unsigned v = 0; v < variants; v++) {
			enum policy pol = !pending	       ? P_KEEP
					  : v < N_FIXED	       ? (enum policy)v
					  : v < N_FIXED + seeds ? P_RANDOM
								: P_NOSIZE;
			uint64_t seed = (uint64_t)k * 7919 + v * 104729 + (uint64_t)level * 15485863;
			struct oplog nested = { 0 };
			int64_t idx = pending ? (int64_t)n_pending_states++ : -1;
			/* a sample, and every state right after a segment was created (its
			 * header may be torn: recovery then quarantines it) */
			int fresh_seg = k > 0 && ((log->ops[k - 1].kind == OP_OPEN &&
						   log->ops[k - 1].created) ||
						  (log->ops[k - 1].kind == OP_WRITE &&
						   log->ops[k - 1].off == 0));
			int fresh_pick = pol == P_TORN || (pol == P_ZERO && !pmem);
			int do_nested = level == 0 && nested_every && idx >= 0 &&
					(idx % nested_every == 0 || (fresh_seg && fresh_pick));
			int extend = idx >= 0 && idx % 20 == 1;
			int undrained, cleared = 0, grown = 0, dup = 0;
			uint64_t digest;

			snprintf(what, sizeof(what), "%scrash after op %zu/%zu (%s%s)",
				 level ? "nested: " : "", k, log->n, policy_name[pol],
				 pol == P_RANDOM ? " seed" : "");
			undrained = materialize(&m, log, k, pol, seed, dir, &digest);
			/* Another policy may leave the very same files (dirlast with no directory
			 * change pending is keep): checked once, unless this one is picked for
			 * more (a crash during its recovery, or appending after it). */
			for (unsigned j = 0; j < nseen; j++)
				dup |= seen[j] == digest;
			if (dup && !do_nested && !extend) {
				st->duplicates++;
				continue;
			}
			seen[nseen++] = digest;
			if (level) {
				st->nested_states++;
				if (k > 0) {
					st->nested_after[log->ops[k - 1].kind]++;
					st->nested_after_extend += extends_file(log, k - 1);
				}
				check_kept(root_at_start_copy, dir, st, what);
			} else {
				st->states++;
				st->undrained_lost += !!(undrained & UNDRAINED_LOST);
				st->undrained_torn += !!(undrained & UNDRAINED_TORN);
			}
			check_state(dir, &m, R, st, what, &nested, extend && !do_nested);
			recovery_steps(&nested, &cleared, &grown);
			if (!level) {
				st->rec_cleared += cleared;
				st->rec_grown += grown;
			}
			/* pmem: recovery's own steps (extend, map, clear, drain) are crashed too */
			if (!do_nested && level == 0 && nested_every &&
			    (grown || (cleared && st->nested_picks++ % PMEM_CLEARED_EVERY == 0)))
				do_nested = 1;
			if (do_nested) {
				/* the crash state again (recovery changed dir): the start of the
				 * recovery's own crash points */
				char copy[4096];

				snprintf(copy, sizeof(copy), "%s/before%d", base, level);
				materialize(&m, log, k, pol, seed, copy, NULL);
				for (size_t j = 0; j < nested.n; j++) {
					st->rec_cuts += nested.ops[j].kind == OP_TRUNC;
					st->rec_moves += nested.ops[j].kind == OP_RENAME;
				}
				crash_points(base, &nested, R, copy, seeds, 0, pmem, st, 1, &m);
				rm_tree(copy);
			}
			oplog_free(&nested);
			if (st->violations && !getenv("SHMWAL_POWERLOSS_ALL")) {
				free(seen);
				goto out;
			}
		}
		free(seen);
	}
out:
	rm_tree(dir);
	model_free(&m);
}

static void copy_tree(const char *from, const char *to)
{
	char *cmd;

	assert_true(asprintf(&cmd, "cp -a '%s' '%s'", from, to) > 0);
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

/*
 * The thousands of crash states are written to tmpfs (/dev/shm) when it is there: the model,
 * not the disk, decides what survives, so real fsyncs would only cost time.
 */
static char *tmpfs_dir(void)
{
	char *p, *old = getenv("TMPDIR") ? strdup(getenv("TMPDIR")) : NULL;

	if (access("/dev/shm", W_OK) == 0)
		setenv("TMPDIR", "/dev/shm", 1);
	p = th_tmpdir("powerloss");
	if (old)
		setenv("TMPDIR", old, 1);
	else
		unsetenv("TMPDIR");
	free(old);
	return p;
}

/* One recorded run: sync mode, backend, and what the recorder hides from the model. */
enum hide { HIDE_NONE, HIDE_SYNCDIR, HIDE_FDATASYNC, HIDE_DRAIN };

struct run {
	enum shmwal_sync sync;
	int pmem; /* -1: the file backend; 0 or 1: the pmem backend with this is_pmem */
	enum hide hide;
};

static const char *run_name(const struct run *r, char *buf, size_t len)
{
	static const char *const hidden[] = { "", ", directory fsyncs hidden",
					      ", fdatasyncs hidden", ", drains hidden" };

	snprintf(buf, len, "%ssync %s%s",
		 r->pmem < 0 ? "" : r->pmem ? "pmem (drain), " : "pmem (msync), ",
		 r->sync == SHMWAL_SYNC_ALWAYS ? "always" : "interval", hidden[r->hide]);
	return buf;
}

/* th_create's WAL, with a backend. */
static int create_wal(const char *dir, const struct run *r)
{
	struct shmwal_config c;

	shmwal_config_default(&c);
	c.partitions = NPART;
	c.ring_bytes = 64 << 10;
	c.segment_bytes = SEG;
	c.max_key = 64;
	c.max_value = 2048;
	c.sync = r->sync;
	c.sync_interval_us = 1000;
	c.backend = r->pmem < 0 ? SHMWAL_BACKEND_FILE : SHMWAL_BACKEND_PMEM;
	return shmwal_create(dir, &c);
}

static void simulate(const struct run *r, struct stats *st)
{
	char *base = tmpfs_dir();
	char wal[4096], start[4096], name[96];
	struct oplog log = { 0 };
	struct refs R = { .mu = PTHREAD_MUTEX_INITIALIZER };
	unsigned seeds = env_uint("SHMWAL_POWERLOSS_SEEDS", SANITIZED ? 1 : 2);
	uint64_t per_thread = env_uint("SHMWAL_POWERLOSS_RECORDS", 200);

	assert_non_null(base);
	snprintf(wal, sizeof(wal), "%s/wal", base);
	snprintf(start, sizeof(start), "%s/at-start", base);
	/* the WAL as created, before the recording: the model's durable starting point */
	assert_int_equal(create_wal(wal, r), 0);
	copy_tree(wal, start);
	rec.force_pmem = r->pmem; /* for the recovery runs on the crash states too */
	rec.hide_syncdir = r->hide == HIDE_SYNCDIR;
	rec.hide_fdatasync = r->hide == HIDE_FDATASYNC;
	rec.hide_drain = r->hide == HIDE_DRAIN;
	record_run(wal, r->sync, per_thread, &log, &R);
	rec.hide_syncdir = rec.hide_fdatasync = rec.hide_drain = 0;
	crash_points(base, &log, &R, start, seeds,
		     r->hide != HIDE_NONE ? 0 : r->pmem < 0 ? NESTED_EVERY : PMEM_NESTED_EVERY,
		     r->pmem >= 0, st, 0, NULL);
	rec.force_pmem = -1;
	if (getenv("SHMWAL_TEST_VERBOSE") || st->violations)
		fprintf(stderr,
			"power-loss simulation (%s): %zu operations, %" PRIu64
			" records written, %" PRIu64 " crash states + %" PRIu64
			" during recovery, %" PRIu64 " continued after recovery, %" PRIu64
			" records read back, %" PRIu64 " violations%s%s\n",
			run_name(r, name, sizeof(name)), log.n, (uint64_t)(R.n[0] + R.n[1]),
			st->states, st->nested_states, st->extended, st->records_checked,
			st->violations, st->violations ? ": first: " : "", st->first);
	oplog_free(&log);
	refs_free(&R);
	th_destroy(wal);
	th_destroy(base);
	free(base);
}

static void report(const struct run *r, const struct stats *st)
{
	char name[96];

	printf("%s: %" PRIu64 " crash states, %" PRIu64 " during recovery (which cut %" PRIu64
	       " torn tails and quarantined %" PRIu64 " torn segments), %" PRIu64
	       " continued after recovery, %" PRIu64 " records read back (%" PRIu64
	       " states skipped: the same files as another policy's)\n",
	       run_name(r, name, sizeof(name)), st->states, st->nested_states, st->rec_cuts,
	       st->rec_moves, st->extended, st->records_checked, st->duplicates);
	if (r->pmem >= 0)
		printf("  %" PRIu64 " states lost bytes of copies not yet drained, %" PRIu64
		       " held such copies in part; recovery cleared bytes past the end in %" PRIu64
		       " states and gave a short segment its size in %" PRIu64 "; crashed during "
		       "recovery after a fallocate %" PRIu64 " (%" PRIu64 " extending a segment), "
		       "map %" PRIu64 ", zero %" PRIu64 ", drain %" PRIu64 ", flush %" PRIu64
		       " times\n",
		       st->undrained_lost, st->undrained_torn, st->rec_cleared, st->rec_grown,
		       st->nested_after[OP_FALLOC], st->nested_after_extend,
		       st->nested_after[OP_MAP], st->nested_after[OP_ZERO],
		       st->nested_after[OP_DRAIN], st->nested_after[OP_FLUSH]);
}

/* Every crash state of this run recovers every durable record. */
static void expect_clean(const struct run *r)
{
	struct stats st = { 0 };

	simulate(r, &st);
	report(r, &st);
	if (st.violations)
		fail_msg("%" PRIu64 " violations; first: %s", st.violations, st.first);
	assert_true(st.states > 100 && st.nested_states > 0 && st.extended > 0);
	if (r->pmem >= 0) {
		/* the run tore batches, and recovery's pmem steps were crashed */
		assert_true(st.undrained_lost > 0 && st.undrained_torn > 0);
		assert_true(st.rec_cleared > 0 && st.rec_grown > 0);
		assert_true(st.nested_after_extend > 0 && st.nested_after[OP_MAP] > 0 &&
			    st.nested_after[OP_ZERO] > 0 && st.nested_after[OP_DRAIN] > 0);
	}
}

static void test_powerloss_sync_always(void **state)
{
	(void)state;
	expect_clean(&(struct run){ SHMWAL_SYNC_ALWAYS, -1, HIDE_NONE });
}

static void test_powerloss_sync_interval(void **state)
{
	(void)state;
	expect_clean(&(struct run){ SHMWAL_SYNC_INTERVAL, -1, HIDE_NONE });
}

static void test_powerloss_pmem_drain_always(void **state)
{
	(void)state;
	expect_clean(&(struct run){ SHMWAL_SYNC_ALWAYS, 1, HIDE_NONE });
}

static void test_powerloss_pmem_drain_interval(void **state)
{
	(void)state;
	expect_clean(&(struct run){ SHMWAL_SYNC_INTERVAL, 1, HIDE_NONE });
}

static void test_powerloss_pmem_msync_always(void **state)
{
	(void)state;
	expect_clean(&(struct run){ SHMWAL_SYNC_ALWAYS, 0, HIDE_NONE });
}

static void test_powerloss_pmem_msync_interval(void **state)
{
	(void)state;
	expect_clean(&(struct run){ SHMWAL_SYNC_INTERVAL, 0, HIDE_NONE });
}

/* Negative controls: the simulator must catch a missing directory fsync, fdatasync or drain. */
static void expect_caught(const struct run *r)
{
	struct stats st = { 0 };
	char name[96];

	simulate(r, &st);
	printf("%s: %s\n", run_name(r, name, sizeof(name)), st.first);
	assert_true(st.violations > 0);
}

static void test_powerloss_catches_missing_dir_fsync(void **state)
{
	(void)state;
	expect_caught(&(struct run){ SHMWAL_SYNC_ALWAYS, -1, HIDE_SYNCDIR });
}

static void test_powerloss_catches_missing_fdatasync(void **state)
{
	(void)state;
	expect_caught(&(struct run){ SHMWAL_SYNC_ALWAYS, -1, HIDE_FDATASYNC });
}

static void test_powerloss_catches_missing_drain(void **state)
{
	(void)state;
	expect_caught(&(struct run){ SHMWAL_SYNC_ALWAYS, 1, HIDE_DRAIN });
	expect_caught(&(struct run){ SHMWAL_SYNC_ALWAYS, 0, HIDE_DRAIN });
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_powerloss_sync_always, teardown),
		cmocka_unit_test_teardown(test_powerloss_sync_interval, teardown),
		cmocka_unit_test_teardown(test_powerloss_catches_missing_dir_fsync, teardown),
		cmocka_unit_test_teardown(test_powerloss_catches_missing_fdatasync, teardown),
		cmocka_unit_test_teardown(test_powerloss_pmem_drain_always, teardown),
		cmocka_unit_test_teardown(test_powerloss_pmem_drain_interval, teardown),
		cmocka_unit_test_teardown(test_powerloss_pmem_msync_always, teardown),
		cmocka_unit_test_teardown(test_powerloss_pmem_msync_interval, teardown),
		cmocka_unit_test_teardown(test_powerloss_catches_missing_drain, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
