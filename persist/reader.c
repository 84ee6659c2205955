/* SPDX-License-Identifier: MIT */
/*
 * reader.c - reading durable records from the segment files, following the log live, and
 * truncation.
 *
 * Segments are mapped read-only, whole (header + segment_bytes + one largest frame: the most
 * a segment file can hold), and read in place: a record's key and value point into the
 * mapping. Only bytes below the partition's durable LSN are read, so every byte read exists
 * in the file. A segment is mapped (and its file kept open) only while a reader is in it: a
 * log of thousands of segments costs a reader one mapping and one descriptor, not thousands
 * (all mapped at once, 1061 segments ran out of the default 1024 descriptors).
 *
 * The catalog. All readers of one partition in a process share one catalog: the sorted array
 * of mapped segments. Lookups run under an RCU read-side critical section (liburcu, the
 * "bulletproof" flavor, so that application threads need no registration) and take no lock.
 * A refresh (a rotation or truncation was noticed) builds a new array under the catalog's
 * mutex, publishes it with a store-release (what rcu_assign_pointer does, in C11 atomics so that
 * ThreadSanitizer sees the pairing too), waits for a grace period and only then drops
 * the old array's references: a segment is unmapped when its last reference goes, never
 * while a lookup may still see it. A reader pins the segment it reads (a reference), so a
 * truncation never unmaps bytes out from under a record it returned.
 *
 *   field            written by                        read by
 *   cat->cur         refresh, under cat->mu:           lookups: load-acquire under
 *                    store-release, then               rcu_read_lock (pairs with the
 *                    synchronize_rcu before freeing    refresh's store-release)
 *   seg->refs        atomic add/sub                    the last sub frees it
 *   seg->pins, map,  seg->mu: the first pin maps, the   the pinning reader, after
 *     fd, dev, ino   last unpin unmaps                   taking seg->mu (no lock after)
 *   cat->shm         once, under cat->mu (store-       readers: load-acquire
 *                    release)
 */
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urcu-bp.h>

#include "shmwal_format.h"
#include "atomics.h"
#include "common.h"
#include "frame_check.h"
#include "io.h"
#include "segment.h"
#include "shm/shm.h"

#define OFFLINE_POLL_NS 10000000ull /* without a flusher, look for new data this often */

/* ThreadSanitizer does not see liburcu's grace periods: each read-side section releases
 * &c->rcu_hb before rcu_read_unlock(), and a writer acquires it after synchronize_rcu(), which
 * is the RCU guarantee itself (atomics.h, tsan_release). */

struct seg {
	uint64_t first;
	shmwal_atomic64 refs;	/* the catalog's arrays hold one each; each reader in it one */
	pthread_mutex_t mu;	/* pins and the mapping */
	unsigned pins;		/* readers in it (mu); mapped while there is one */
	dev_t dev;		/* identity of the file mapped: a file of the same name made */
	ino_t ino;		/* later (repair, recovery) is another segment */
	const uint8_t *map;	/* NULL while unpinned */
	size_t map_len;
	int fd;			/* kept open to fstat while mapped */
	shmwal_atomic64 size;	/* file size last seen: reads never go past it (no SIGBUS,
				   whatever the shared memory says); relaxed, refreshed by fstat */
	shmwal_atomic32 hdr_ok;	/* the header was checked and is this segment's (it never
				   changes once written); relaxed: any reader may set it */
};

struct seg_array {
	uint32_t n;
	struct seg *s[];
};

struct catalog {
	struct catalog *next;	/* registry list (reg_mu) */
	unsigned users;		/* readers (reg_mu) */
	struct meta m;
	uint32_t part;
	char pdir[4096];
	pthread_mutex_t mu;	/* refreshes and shm attach */
	char rcu_hb;		/* TSan builds: stands for "the end of a read-side section" */
	_Atomic(struct seg_array *) cur; /* RCU-protected; published with release/acquire */
	_Atomic(struct shm *) shm;
	struct shm **retired;	/* objects a restarted flusher replaced (cat->mu); kept mapped
				   until the catalog goes, as readers may still hold them */
	unsigned nretired;
	uint64_t map_len;
};

/* A frame checked ahead of the reader's position (reader_next's fast path): what the check
 * saw, kept here so that a file rewritten under the mapping meanwhile cannot make a record
 * reach past the bytes that were checked. */
struct ahead {
	uint32_t len;
	uint16_t key_len;
	uint16_t committed;
};

#define AHEAD	  33  /* frames checked per visit to the shared memory and the catalog */
#define GROUP_MAX 256 /* frames up to this long have their checksums checked four at once */

struct shmwal_reader {
	struct catalog *cat;
	uint64_t pos;
	const char *at; /* the frame at pos while ahead[] is not used up */
	uint32_t part;
	struct seg *seg;	/* pinned */
	uint64_t seg_next;	/* first LSN of the segment after seg, UINT64_MAX if seg was last */
	uint64_t max_frame;
	/* frames from pos on in seg, all below the durable LSN and checked (CRC too):
	 * ahead[ahead_i..ahead_n) */
	unsigned ahead_i, ahead_n;
	struct ahead ahead[AHEAD];
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct catalog *catalogs;

/* ---- segments ---------------------------------------------------------------------------- */

/* A catalog entry for the segment starting at `first`, not mapped yet; NULL when out of
 * memory. */
static struct seg *seg_new(uint64_t first)
{
	struct seg *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->first = first;
	s->fd = -1;
	pthread_mutex_init(&s->mu, NULL);
	atomic_init(&s->refs, 1);
	atomic_init(&s->size, 0);
	atomic_init(&s->hdr_ok, 0);
	return s;
}

static void seg_unref(struct seg *s)
{
	if (s && fetch_sub_seq(&s->refs, 1) == 1) {
		pthread_mutex_destroy(&s->mu);
		free(s);
	}
}

/* Maps the segment's file (s->mu held). 0, or -errno: -ENOENT removed meanwhile, -EBADMSG not
 * a regular file. */
static int seg_map(struct catalog *c, struct seg *s)
{
	char path[4096];
	struct stat st;
	void *m;
	int fd, e;

	if (seg_path(path, sizeof(path), c->pdir, s->first) < 0)
		return -ENAMETOOLONG;
	/* O_NONBLOCK: a FIFO with a segment's name must not hang the reader; only regular files
	 * are mapped. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	e = fstat(fd, &st) < 0 ? errno : S_ISREG(st.st_mode) ? 0 : EBADMSG;
	if (!e) {
		m = mmap(NULL, c->map_len, PROT_READ, MAP_SHARED, fd, 0);
		e = m == MAP_FAILED ? errno : 0;
	}
	if (e) {
		close(fd);
		return -e;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->map = m;
	s->map_len = c->map_len;
	s->fd = fd;
	store_relaxed(&s->size, 0);
	store_relaxed(&s->hdr_ok, 0);
	return 0;
}

/* A reader enters the segment (it holds a reference): mapped from here on. 0 or -errno, with
 * the error detail set. */
static int seg_pin(struct catalog *c, struct seg *s)
{
	int rc = 0;

	pthread_mutex_lock(&s->mu);
	if (!s->pins)
		rc = seg_map(c, s);
	if (rc == 0)
		s->pins++;
	pthread_mutex_unlock(&s->mu);
	if (rc < 0 && rc != -ENOENT) {
		char name[24];

		shmwal_segment_name(name, s->first);
		return seterr(rc, "%s/%s: cannot map segment: %s", c->pdir, name,
			      rc == -EBADMSG ? "not a regular file" : strerror(-rc));
	}
	return rc;
}

/* A reader leaves the segment: pin and reference go; the last pin unmaps it. */
static void seg_release(struct seg *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	if (--s->pins == 0) {
		munmap((void *)s->map, s->map_len);
		close(s->fd);
		s->map = NULL;
		s->fd = -1;
	}
	pthread_mutex_unlock(&s->mu);
	seg_unref(s);
}

/* 1 when `s` may stand for the file that is DIR/pNNN/<first>.seg now: it is not mapped (it
 * maps whatever has the name when a reader enters), or it maps that very file. */
static int seg_same_file(struct catalog *c, struct seg *s)
{
	char path[4096];
	struct stat st;
	int same;

	pthread_mutex_lock(&s->mu);
	same = !s->map || (seg_path(path, sizeof(path), c->pdir, s->first) == 0 &&
			   stat(path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino);
	pthread_mutex_unlock(&s->mu);
	return same;
}

/*
 * Rebuilds the catalog from the directory (entries only: segments are mapped when a reader
 * enters them). Caller holds c->mu. An entry whose file was replaced (repair, recovery) by
 * another of the same name is a new entry.
 */
static int catalog_refresh(struct catalog *c)
{
	struct seg_array *old = atomic_load_explicit(&c->cur, memory_order_relaxed), *nu;
	struct seg_list l;
	uint32_t i, j = 0, k;
	int rc = seg_list_load(c->pdir, &l);

	if (rc < 0)
		return rc;
	nu = calloc(1, sizeof(*nu) + l.n * sizeof(nu->s[0]));
	if (!nu) {
		seg_list_free(&l);
		return seterr(-ENOMEM, "out of memory");
	}
	for (i = 0; i < l.n; i++) {
		struct seg *s;

		while (old && j < old->n && old->s[j]->first < l.first[i])
			j++;
		if (old && j < old->n && old->s[j]->first == l.first[i] &&
		    seg_same_file(c, old->s[j])) {
			s = old->s[j];
			fetch_add_seq(&s->refs, 1); /* the new array's reference */
		} else if (!(s = seg_new(l.first[i]))) {
			for (k = 0; k < nu->n; k++)
				seg_unref(nu->s[k]);
			free(nu);
			seg_list_free(&l);
			return seterr(-ENOMEM, "out of memory");
		}
		nu->s[nu->n++] = s;
	}
	seg_list_free(&l);
	atomic_store_explicit(&c->cur, nu, memory_order_release); /* pairs: lookups' acquire */
	if (old) {
		synchronize_rcu(); /* no lookup still sees `old` */
		tsan_acquire(&c->rcu_hb);
		for (k = 0; k < old->n; k++)
			seg_unref(old->s[k]);
		free(old);
	}
	return 0;
}

/* ---- the registry of catalogs ------------------------------------------------------------ */

/*
 * The WAL's shared memory, attached on first use; NULL while there is none (no flusher: the
 * reader reads the files offline). Without one, the reader looks again each time it checks a
 * batch of frames ahead, since a flusher that starts meanwhile publishes what is durable, and
 * nothing past that may be read. Looking is one shm_open that fails (shm_exists), not a whole
 * failed attach; it still costs ~3 us here (tmpfs makes and drops a negative dentry each
 * time), so an offline scan of 64 B records reads ~6 M records/s against ~45 M/s online
 * (build/bench/suite --only reader). Looking less often would need a bound on what may be
 * read meanwhile: the end of the files seen before the look.
 */
static struct shm *catalog_shm(struct catalog *c)
{
	struct shm *s = atomic_load_explicit(&c->shm, memory_order_acquire);

	if (s || !shm_exists(&c->m))
		return s;
	pthread_mutex_lock(&c->mu);
	s = atomic_load_explicit(&c->shm, memory_order_relaxed);
	if (!s && shm_attach(&c->m, SHM_ATTACH_NO_RINGS, &s) == 0)
		atomic_store_explicit(&c->shm, s, memory_order_release); /* pairs: load above */
	pthread_mutex_unlock(&c->mu);
	return s;
}

/*
 * The flusher stopped and removed its shared memory (or it was removed): `old` no longer
 * moves. Attach the current one, if any; readers read the files offline meanwhile.
 */
static void catalog_reattach(struct catalog *c, struct shm *old)
{
	struct shm *nu = NULL, **r;

	pthread_mutex_lock(&c->mu);
	if (atomic_load_explicit(&c->shm, memory_order_relaxed) == old) {
		r = realloc(c->retired, (c->nretired + 1) * sizeof(*r));
		if (r) {
			c->retired = r;
			c->retired[c->nretired++] = old;
			if (shm_attach(&c->m, SHM_ATTACH_NO_RINGS, &nu) < 0)
				nu = NULL;
			atomic_store_explicit(&c->shm, nu, memory_order_release);
		}
	}
	pthread_mutex_unlock(&c->mu);
}

static int catalog_get(const char *dir, uint32_t part, struct catalog **out)
{
	struct catalog *c;
	struct meta m;
	int rc = meta_load(dir, &m);

	if (rc < 0)
		return rc;
	if (part >= m.cfg.partitions)
		return seterr(-EINVAL, "partition %u out of range (the WAL has %u)", part,
			      m.cfg.partitions);
	pthread_mutex_lock(&reg_mu);
	for (c = catalogs; c; c = c->next)
		if (c->m.instance == m.instance && c->part == part)
			break;
	if (!c) {
		c = calloc(1, sizeof(*c));
		if (!c) {
			pthread_mutex_unlock(&reg_mu);
			return seterr(-ENOMEM, "out of memory");
		}
		c->m = m;
		c->part = part;
		c->map_len = (SHMWAL_SEG_HDR + m.cfg.segment_bytes + cfg_max_frame(&m.cfg) + 4095) &
			     ~4095ull;
		pthread_mutex_init(&c->mu, NULL);
		rc = part_dir(c->pdir, sizeof(c->pdir), dir, part);
		if (rc == 0) {
			pthread_mutex_lock(&c->mu);
			rc = catalog_refresh(c);
			pthread_mutex_unlock(&c->mu);
		}
		if (rc < 0) {
			pthread_mutex_unlock(&reg_mu);
			free(c);
			return rc;
		}
		c->next = catalogs;
		catalogs = c;
	}
	c->users++;
	pthread_mutex_unlock(&reg_mu);
	*out = c;
	return 0;
}

static void catalog_put(struct catalog *c)
{
	struct catalog **pp;
	struct seg_array *a;

	pthread_mutex_lock(&reg_mu);
	if (--c->users) {
		pthread_mutex_unlock(&reg_mu);
		return;
	}
	for (pp = &catalogs; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	pthread_mutex_unlock(&reg_mu);
	a = atomic_load_explicit(&c->cur, memory_order_relaxed);
	atomic_store_explicit(&c->cur, NULL, memory_order_release);
	synchronize_rcu();
	tsan_acquire(&c->rcu_hb);
	if (a) {
		for (uint32_t i = 0; i < a->n; i++)
			seg_unref(a->s[i]);
		free(a);
	}
	shm_detach(atomic_load_explicit(&c->shm, memory_order_relaxed));
	for (unsigned i = 0; i < c->nretired; i++)
		shm_detach(c->retired[i]);
	free(c->retired);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

/* ---- positioning ------------------------------------------------------------------------- */

/* A reference to the segment holding `lsn`; *next = the first LSN after it (UINT64_MAX: it is
 * last). -ERANGE below the oldest segment, -ENOENT no segment at all. */
static int catalog_find(struct catalog *c, uint64_t lsn, struct seg **out, uint64_t *next)
{
	struct seg_array *a;
	uint32_t lo, hi;
	int rc = 0;

	rcu_read_lock();
	a = atomic_load_explicit(&c->cur, memory_order_acquire); /* pairs: refresh's release */
	if (!a || a->n == 0) {
		rc = -ENOENT;
	} else if (lsn < a->s[0]->first) {
		rc = -ERANGE;
	} else {
		lo = 0;
		hi = a->n; /* greatest i with first <= lsn: binary search, O(log segments) */
		while (hi - lo > 1) {
			uint32_t mid = lo + (hi - lo) / 2;

			if (a->s[mid]->first <= lsn)
				lo = mid;
			else
				hi = mid;
		}
		*out = a->s[lo];
		fetch_add_seq(&a->s[lo]->refs, 1); /* the array's ref keeps it alive now */
		*next = lo + 1 < a->n ? a->s[lo + 1]->first : UINT64_MAX;
	}
	tsan_release(&c->rcu_hb);
	rcu_read_unlock();
	return rc;
}

static uint64_t catalog_oldest(struct catalog *c)
{
	struct seg_array *a;
	uint64_t v = UINT64_MAX;

	rcu_read_lock();
	a = atomic_load_explicit(&c->cur, memory_order_acquire); /* pairs: refresh's release */
	if (a && a->n)
		v = a->s[0]->first;
	tsan_release(&c->rcu_hb);
	rcu_read_unlock();
	return v;
}

/* Makes r->seg the segment holding r->pos, refreshing the catalog when it is stale. */
static int reader_locate(struct shmwal_reader *r)
{
	struct catalog *c = r->cat;
	struct shm *shm = catalog_shm(c);
	struct seg *s;
	uint64_t next;
	int rc, tries;

	for (tries = 0;; tries++) {
		rc = catalog_find(c, r->pos, &s, &next);
		if (rc == 0 && next == UINT64_MAX && shm &&
		    shm_seg_first(shm, c->part) > s->first) {
			seg_unref(s); /* a newer segment exists: the catalog is stale */
			rc = -EAGAIN;
		}
		if (rc == 0 && (rc = seg_pin(c, s)) < 0) {
			seg_unref(s);
			if (rc != -ENOENT)
				return rc;
			rc = -EAGAIN; /* removed or replaced meanwhile: the catalog is stale */
		}
		if (rc == 0) {
			seg_release(r->seg);
			r->seg = s;
			r->seg_next = next;
			return 0;
		}
		if (rc == -ERANGE)
			return seterr(-ERANGE, "LSN %" PRIu64 " of partition %u was truncated away "
					       "(oldest retained: %" PRIu64 ")",
				      r->pos, c->part, catalog_oldest(c));
		if (tries == 1)
			break; /* looked again after a refresh */
		pthread_mutex_lock(&c->mu);
		rc = catalog_refresh(c);
		pthread_mutex_unlock(&c->mu);
		if (rc < 0)
			return rc;
	}
	if (rc == -ENOENT || rc == -EAGAIN)
		return -EAGAIN; /* no segment for it yet */
	return seterr(rc, "partition %u: cannot find the segment of LSN %" PRIu64, c->part,
		      r->pos);
}

/* How far the log may be read: the durable LSN, or (no flusher) the end of valid frames. */
static uint64_t read_bound(struct shmwal_reader *r)
{
	struct shm *shm = catalog_shm(r->cat);

	return shm ? shm_durable(shm, r->cat->part) : UINT64_MAX;
}

/*
 * Checks a segment's header once per mapping: it must name this partition, the segment's first
 * LSN and this WAL's instance. A segment copied in from another WAL has frames whose own LSNs
 * pass (every WAL starts at LSN 0), and its records were never written to this one.
 * 0; -EAGAIN the file is shorter than a header; -EBADMSG with *why.
 */
static int seg_header_check(struct catalog *c, struct seg *s, const char **why)
{
	struct shmwal_segment_header h;
	struct stat st;

	if (load_relaxed(&s->hdr_ok))
		return 0;
	/* fstat, not the cached size: never read the mapping past the end of the file. */
	if (fstat(s->fd, &st) < 0 || (uint64_t)st.st_size < SHMWAL_SEG_HDR) {
		*why = "shorter than a segment header";
		return -EAGAIN;
	}
	store_relaxed(&s->size, (uint64_t)st.st_size);
	memcpy(&h, s->map, sizeof(h));
	if (shmwal_segment_header_check(&h, why) < 0)
		return -EBADMSG;
	if (h.partition != c->part)
		*why = "segment belongs to another partition";
	else if (h.first_lsn != s->first)
		*why = "segment header's first LSN does not match its file name";
	else if (h.instance != c->m.instance)
		*why = "segment belongs to another WAL instance";
	else {
		store_relaxed(&s->hdr_ok, 1);
		return 0;
	}
	return -EBADMSG;
}

/* pmem: 1 when a segment holds only zeros past its header (its creation was interrupted). */
static int pmem_body_zero(const struct catalog *c, const struct seg *s)
{
	uint64_t size = load_relaxed(&s->size), n;

	if (size > c->map_len)
		size = c->map_len;
	if (size <= SHMWAL_SEG_HDR)
		return 1;
	n = size - SHMWAL_SEG_HDR;
	return s->map[SHMWAL_SEG_HDR] == 0 &&
	       memcmp(s->map + SHMWAL_SEG_HDR, s->map + SHMWAL_SEG_HDR + 1, (size_t)n - 1) == 0;
}

/*
 * The frame at r->pos, checked. 0 and *f; -EAGAIN nothing there yet; -EBADMSG damage.
 * *span (if not NULL): the bytes from *f on that may be read as frames of this segment (below
 * the bound, the next segment and the end of the file).
 */
static int frame_at_span(struct shmwal_reader *r, uint64_t bound, const struct shmwal_frame **f,
			 uint64_t *span)
{
	const char *why = NULL;
	struct shm *shm;
	struct seg *s;
	uint64_t limit, off, avail;
	enum shmwal_frame_verdict v;
	int rc;

	if (r->pos >= bound)
		return -EAGAIN;
	/* Re-locate when pos left the pinned segment, or when the pinned segment was the last
	 * one and the flusher has rotated since: its end is known only from the next one.
	 * (bound is UINT64_MAX when read_bound found no flusher: this read is offline, and
	 * looking for one again would cost a system call per record.) */
	if (!r->seg || r->pos >= r->seg_next || r->pos < r->seg->first ||
	    (r->seg_next == UINT64_MAX && bound != UINT64_MAX && (shm = catalog_shm(r->cat)) &&
	     shm_seg_first(shm, r->cat->part) > r->seg->first)) {
		rc = reader_locate(r);
		if (rc < 0)
			return rc;
	}
	s = r->seg;
	rc = seg_header_check(r->cat, s, &why);
	if (rc < 0) {
		char name[24];

		/* No flusher: a last segment with a torn header holds nothing (recovery moves it
		 * aside); with a flusher, r->pos below the durable LSN means it holds durable
		 * frames, so its header was synced: damage. */
		if (bound == UINT64_MAX && r->seg_next == UINT64_MAX &&
		    (rc == -EAGAIN || load_relaxed(&s->size) <= SHMWAL_SEG_HDR ||
		     (r->cat->m.cfg.backend == SHMWAL_BACKEND_PMEM && pmem_body_zero(r->cat, s))))
			return -EAGAIN;
		shmwal_segment_name(name, s->first);
		return seterr(-EBADMSG, "%s/%s, offset 0: %s", r->cat->pdir, name, why);
	}
	off = SHMWAL_SEG_HDR + r->pos - s->first;
	limit = r->seg_next < bound ? r->seg_next : bound;
	avail = bound == UINT64_MAX ? UINT64_MAX : limit - r->pos;
	if (r->seg_next != UINT64_MAX && avail > r->seg_next - r->pos)
		avail = r->seg_next - r->pos;
	/* Never past the end of the file: bytes of a mapping beyond EOF raise SIGBUS. */
	if (off + (avail < r->max_frame ? avail : r->max_frame) > load_relaxed(&s->size)) {
		struct stat st;

		if (fstat(s->fd, &st) == 0)
			store_relaxed(&s->size, (uint64_t)st.st_size);
	}
	if (load_relaxed(&s->size) <= off)
		avail = 0;
	else if (avail > load_relaxed(&s->size) - off)
		avail = load_relaxed(&s->size) - off;
	v = shmwal_frame_check(s->map + off, avail, r->pos, r->max_frame);
	if (v != SHMWAL_FRAME_OK) {
		char name[24];

		if (bound == UINT64_MAX && r->seg_next == UINT64_MAX)
			return -EAGAIN; /* no flusher: a torn or unwritten tail is just the end */
		shmwal_segment_name(name, s->first);
		if (v == SHMWAL_FRAME_SHORT && avail < limit - r->pos && bound == UINT64_MAX)
			return seterr(-EBADMSG, "%s/%s ends at LSN %" PRIu64 " (offset %" PRIu64
						"), inside the LSN range up to the next segment "
						"(%" PRIu64 "): records missing",
				      r->cat->pdir, name, r->pos + avail, off + avail, limit);
		if (v == SHMWAL_FRAME_SHORT && avail < limit - r->pos)
			return seterr(-EBADMSG, "%s/%s is shorter (%" PRIu64 " bytes) than the log "
						"published as durable (LSN %" PRIu64 "): truncated "
						"behind shmwal's back?",
				      r->cat->pdir, name, load_relaxed(&s->size), bound);
		return seterr(-EBADMSG, "%s/%s, offset %" PRIu64 " (LSN %" PRIu64 "): %s",
			      r->cat->pdir, name, off, r->pos, shmwal_frame_verdict_str(v));
	}
	*f = (const struct shmwal_frame *)(s->map + off);
	if (span)
		*span = avail;
	return 0;
}

static int frame_at(struct shmwal_reader *r, uint64_t bound, const struct shmwal_frame **f)
{
	return frame_at_span(r, bound, f, NULL);
}

static void ahead_add(struct shmwal_reader *r, const struct shmwal_frame *f, uint32_t len,
		      unsigned committed)
{
	struct ahead *a = &r->ahead[r->ahead_n++];

	a->len = len;
	a->key_len = f->key_len;
	a->committed = (uint16_t)committed;
}

/*
 * Fills r->ahead from the frame at r->pos, `f` (checked by frame_at_span, `span` bytes readable
 * from it): it and the committed frames after it in the span, up to AHEAD, checked as
 * frame_at checks them (header, own LSN, CRC), four checksums at once. It stops before the
 * first frame that fails, is not committed or is not there yet: frame_at takes that one next.
 *
 * Why: frame_at's bounds (the durable LSN, the rotation word, the file's size) cost loads of
 * lines the flusher writes, and its checksum runs one frame at a time. Reading 1000 small
 * records (stream_1000_records_linear, build/bench/suite --only seeds) took ~25 ns each that
 * way.
 */
/* Adds the queued frames whose checksums match, one by one: 0 at the first that does not. */
static int check_singly(struct shmwal_reader *r, const void *const *q, const uint32_t *qlen,
			unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (shmwal_frame_crc(q[i], qlen[i]) != ((const struct shmwal_frame *)q[i])->crc)
			return 0;
		ahead_add(r, q[i], qlen[i], 1);
	}
	return 1;
}

static void check_ahead(struct shmwal_reader *r, const struct shmwal_frame *f, uint64_t span)
{
	uint32_t len = shmwal_word_len(f->word), qlen[4], crc[4];
	uint64_t off = SHMWAL_ALIGN_UP(len);
	const void *q[4];
	unsigned qn = 0, i;

	r->ahead_i = r->ahead_n = 0;
	r->at = (const char *)f;
	ahead_add(r, f, len, shmwal_word_state(f->word) == SHMWAL_FRAME_COMMITTED);
	while (r->ahead_n + qn < AHEAD && off < span) {
		const struct shmwal_frame *g = (const void *)((const char *)f + off);

		if (!(len = frame_committed_len(g, span - off, r->pos + off, r->max_frame)))
			break;
		off += SHMWAL_ALIGN_UP(len);
		if (len > GROUP_MAX) {
			/* One by one, in order: its bytes stream in while the checksum runs. Four
			 * headers first would be four cache misses one after the other (each
			 * address comes from the length before it): 1 KiB records were read ~30%
			 * slower that way. */
			if (!check_singly(r, q, qlen, qn) || shmwal_frame_crc(g, len) != g->crc)
				return;
			ahead_add(r, g, len, 1);
			qn = 0;
			continue;
		}
		q[qn] = g;
		qlen[qn++] = len;
		if (qn == 4) {
			crc32c_frames4(q, qlen, crc);
			for (i = 0; i < 4; i++) {
				if (crc[i] != ((const struct shmwal_frame *)q[i])->crc)
					return;
				ahead_add(r, q[i], qlen[i], 1);
			}
			qn = 0;
		}
	}
	check_singly(r, q, qlen, qn);
}

/* No flusher: the end of the valid frames of r->seg, walked from its start. */
static uint64_t offline_end(struct shmwal_reader *r)
{
	uint64_t keep = r->pos, end;
	const struct shmwal_frame *f;

	r->pos = r->seg->first;
	while (frame_at(r, UINT64_MAX, &f) == 0)
		r->pos += SHMWAL_ALIGN_UP(shmwal_word_len(f->word));
	end = r->pos;
	r->pos = keep;
	return end;
}

/* ---- the API ----------------------------------------------------------------------------- */

SHMWAL_EXPORT int shmwal_reader_open(const char *dir, uint32_t part, uint64_t from_lsn,
				     struct shmwal_reader **out)
{
	struct shmwal_reader *r;
	const struct shmwal_frame *f;
	uint64_t bound;
	int rc;

	if (!dir || !out)
		return seterr(-EINVAL, "NULL argument");
	r = calloc(1, sizeof(*r));
	if (!r)
		return seterr(-ENOMEM, "out of memory");
	rc = catalog_get(dir, part, &r->cat);
	if (rc < 0) {
		free(r);
		return rc;
	}
	r->max_frame = cfg_max_frame(&r->cat->m.cfg);
	r->part = part;
	bound = read_bound(r);
	if (from_lsn == SHMWAL_LSN_OLDEST) {
		r->pos = catalog_oldest(r->cat);
		if (r->pos == UINT64_MAX)
			r->pos = 0;
	} else if (from_lsn == SHMWAL_LSN_END) {
		if (bound != UINT64_MAX) {
			r->pos = bound;
		} else {
			/* No flusher: walk to the end of what the files hold. */
			r->pos = catalog_oldest(r->cat);
			if (r->pos == UINT64_MAX)
				r->pos = 0;
			while ((rc = frame_at(r, bound, &f)) == 0)
				r->pos += SHMWAL_ALIGN_UP(shmwal_word_len(f->word));
			if (rc != -EAGAIN)
				goto fail;
		}
	} else {
		r->pos = from_lsn;
		if (from_lsn < catalog_oldest(r->cat) && catalog_oldest(r->cat) != UINT64_MAX) {
			rc = seterr(-ERANGE, "LSN %" PRIu64 " of partition %u was truncated away "
					     "(oldest retained: %" PRIu64 ")",
				    from_lsn, part, catalog_oldest(r->cat));
			goto fail;
		}
		if (from_lsn % SHMWAL_ALIGN) {
			rc = seterr(-EINVAL, "LSN %" PRIu64 " is not a record boundary", from_lsn);
			goto fail;
		}
		if (from_lsn != bound) {
			rc = frame_at(r, bound, &f);
			if (rc == -EAGAIN && bound == UINT64_MAX && r->seg &&
			    offline_end(r) == from_lsn)
				rc = 0; /* no flusher: the end of what the files hold is a boundary */
			if (rc == -EAGAIN && bound != UINT64_MAX && from_lsn > bound)
				rc = seterr(-EINVAL, "LSN %" PRIu64 " lies beyond the durable end "
						     "of partition %u (%" PRIu64 ")",
					    from_lsn, part, bound);
			else if (rc == -EBADMSG || rc == -EAGAIN)
				rc = seterr(-EINVAL, "LSN %" PRIu64 " is not a record boundary "
						     "of partition %u",
					    from_lsn, part);
			if (rc < 0)
				goto fail;
		}
	}
	*out = r;
	return 0;
fail:
	seg_release(r->seg);
	catalog_put(r->cat);
	free(r);
	return rc;
}

/* The next record from r->ahead: 1, or 0 when nothing is left there. The caller's fast path
 * inlines it; the aborted claims (not committed) it steps over are rare, so they leave it. */
static inline int take_ahead(struct shmwal_reader *r, struct shmwal_record *rec)
{
	const struct ahead *a;
	const struct shmwal_frame *f;
	uint64_t size;

	if (r->ahead_i >= r->ahead_n || !r->ahead[r->ahead_i].committed)
		return 0;
	a = &r->ahead[r->ahead_i++];
	f = (const void *)r->at;
	size = SHMWAL_ALIGN_UP(a->len);
	rec->lsn = r->pos;
	r->pos += size;
	r->at += size;
	rec->next_lsn = r->pos;
	rec->timestamp_ns = f->timestamp_ns;
	rec->partition = r->part;
	rec->type = f->type;
	rec->key = (const char *)f + SHMWAL_FRAME_HDR;
	rec->key_len = a->key_len;
	rec->value = (const char *)f + SHMWAL_FRAME_HDR + a->key_len;
	rec->value_len = a->len - SHMWAL_FRAME_HDR - a->key_len;
	return 1;
}

/* Steps over the frames in r->ahead that are not committed (aborted claims). */
static void skip_ahead(struct shmwal_reader *r)
{
	while (r->ahead_i < r->ahead_n && !r->ahead[r->ahead_i].committed) {
		uint64_t size = SHMWAL_ALIGN_UP(r->ahead[r->ahead_i++].len);

		r->pos += size;
		r->at += size;
	}
}

/* shmwal_reader_next() once r->ahead is used up: check more, or wait. */
__attribute__((noinline)) static int
reader_next_slow(struct shmwal_reader *r, struct shmwal_record *rec, uint64_t timeout_ns)
{
	uint64_t deadline = 0;
	int rc;

	for (;;) {
		const struct shmwal_frame *f;
		uint64_t bound, span, now;
		struct shm *shm;

		skip_ahead(r);
		if (take_ahead(r, rec))
			return 0;
		bound = read_bound(r);
		rc = frame_at_span(r, bound, &f, &span);
		if (rc == 0) {
			check_ahead(r, f, span);
			continue;
		}
		if (rc != -EAGAIN)
			return rc;
		/* Nothing durable at pos yet: wait. */
		now = mono_ns();
		if (!deadline)
			deadline = timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns;
		if (now >= deadline)
			return seterr(-ETIMEDOUT, "no record at LSN %" PRIu64 " yet", r->pos);
		shm = catalog_shm(r->cat);
		if (shm && shm_orphaned(shm)) {
			/* its flusher stopped and removed it: follow the next one */
			catalog_reattach(r->cat, shm);
			continue;
		}
		if (shm && bound != UINT64_MAX && r->pos >= bound) {
			uint64_t left = deadline - now;

			shm_wait_durable(shm, r->cat->part, r->pos, 0,
					 left < 100000000ull ? left : 100000000ull);
		} else {
			uint64_t left = deadline - now;
			struct timespec ts = { 0, (long)(left < OFFLINE_POLL_NS ? left
										  : OFFLINE_POLL_NS) };

			nanosleep(&ts, NULL);
		}
	}
}

SHMWAL_EXPORT int shmwal_reader_next(struct shmwal_reader *r, struct shmwal_record *rec,
				     uint64_t timeout_ns)
{
	if (!r || !rec)
		return seterr(-EINVAL, "NULL argument");
	if (take_ahead(r, rec))
		return 0;
	return reader_next_slow(r, rec, timeout_ns);
}

SHMWAL_EXPORT uint64_t shmwal_reader_position(const struct shmwal_reader *r)
{
	return r ? r->pos : 0;
}

SHMWAL_EXPORT void shmwal_reader_close(struct shmwal_reader *r)
{
	if (!r)
		return;
	seg_release(r->seg);
	catalog_put(r->cat);
	free(r);
}

SHMWAL_EXPORT int shmwal_truncate_before(const char *dir, uint32_t part, uint64_t lsn)
{
	char pdir[4096], path[4096];
	struct seg_list l;
	struct catalog *c;
	struct meta m;
	uint32_t i;
	int rc, removed = 0;

	if ((rc = meta_load_part(dir, part, &m)) < 0)
		return rc;
	if ((rc = part_dir(pdir, sizeof(pdir), dir, part)) < 0 ||
	    (rc = seg_list_load(pdir, &l)) < 0)
		return rc;
	/*
	 * Segment i ends where i + 1 starts; the last one is never removed. Oldest first, and
	 * the directory is synced after each removal: a power cut may otherwise keep some of the
	 * removals and lose others, leaving a hole in the log that recovery rightly refuses
	 * (found by the power-loss simulation, tests/test_powerloss.c).
	 */
	for (i = 0; i + 1 < l.n && l.first[i + 1] <= lsn; i++) {
		if ((rc = seg_path(path, sizeof(path), pdir, l.first[i])) < 0)
			break;
		rc = io->unlink(path);
		if (rc < 0 && rc != -ENOENT) {
			seterr(rc, "remove %s: %s", path, strerror(-rc));
			break;
		}
		removed += rc == 0;
		rc = io->fsync_dir(pdir);
		if (rc < 0) {
			seterr(rc, "fsync %s: %s", pdir, strerror(-rc));
			break;
		}
	}
	seg_list_free(&l);
	/* Readers of this process drop the removed segments after a grace period. */
	pthread_mutex_lock(&reg_mu);
	for (c = catalogs; c; c = c->next) {
		if (c->m.instance == m.instance && c->part == part) {
			pthread_mutex_lock(&c->mu);
			catalog_refresh(c);
			pthread_mutex_unlock(&c->mu);
		}
	}
	pthread_mutex_unlock(&reg_mu);
	return rc < 0 ? rc : removed;
}
