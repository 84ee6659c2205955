/* SPDX-License-Identifier: MIT */
/*
 * flusher.c - the one process per WAL that drains the rings into segment files.
 *
 * Start:  take the flusher lock (an OFD lock on byte 0 of DIR/lock: a second flusher gets
 *         -EBUSY), recover every partition's files (recovery.c), then create the shared
 *         memory or adopt the one a dead flusher left (its rings still hold what producers
 *         committed meanwhile) and sync what the files hold before publishing it durable.
 * Loop:   one thread serves every partition in turn:
 *           1. take the batch of committed frames at `written` (shm_consume: repairs dead
 *              producers' claims on the way), at most batch_bytes, never straddling segments;
 *           2. pwrite it at its LSN's offset in the current segment, straight from the ring
 *              (the ring is mapped twice, so a batch that wraps is one contiguous buffer);
 *           3. publish `written` (readers in low-latency mode may read it now);
 *         then, per the sync mode, fdatasync every partition that wrote, publish its
 *         `durable` and only then zero and free the ring bytes (sync=none: right after the
 *         write). With sync=always, everything committed while one fdatasync runs rides the
 *         next: that is the group commit.
 * Why ring bytes wait for the sync: an fdatasync that fails may leave the pages marked clean
 *         (the PostgreSQL "fsyncgate"), so a restarted flusher cannot trust what the files
 *         hold past the last good sync. It cuts them back to the published durable LSN and
 *         writes the rest again from the ring, which still holds it. Freeing at `written`
 *         would free ring space one fsync earlier but make that recovery impossible.
 * Rotate: when a segment reaches segment_bytes (at a frame boundary), it is synced in every
 *         sync mode (so sealed segments are always whole, which recovery relies on), and the
 *         next segment is created, its header synced and the directory synced, before any
 *         frame of it can be published.
 *         A retention policy's rotate_age_ms also seals a segment whose first record is that
 *         old (checked at each registry poll); an empty segment is never sealed that way.
 * Retain: a thread of its own (retention.c) removes the sealed segments the policy in
 *         DIR/retention no longer keeps, off this loop: a removal syncs the directory.
 * pmem:   the backend SHMWAL_BACKEND_PMEM changes only how bytes reach the segment: files have
 *         a fixed size and are mapped (pmem_map_file), a batch is copied into the mapping
 *         with non-draining stores (step 2), and the "sync" is one pmem_drain() per batch, or
 *         pmem_msync() of the batch's range when the mapping is not persistent memory (no
 *         DAX; the start logs a warning). Persisted order is the same as for files: the frames
 *         of a batch, the drain, then durable is published; a segment is drained whole before
 *         the next one is created. The frames mark themselves valid (own LSN and CRC), and
 *         recovery clears whatever lies past the last valid one (recovery.c).
 * Errors: a failed fdatasync is never retried as if it had worked (see the PostgreSQL
 *         "fsyncgate"): nothing past it is published, the flusher stops with -EIO, and a
 *         restart recovers from the files. A full disk (ENOSPC from pwrite) is not fatal:
 *         the batch stays in the ring (producers are back-pressured), the flusher reports it
 *         and retries until space returns. Garbage in the rings stops the flusher (-EIO).
 * Pacing: a flusher that keeps up finds a few records per pass and is back within a
 *         microsecond at the lines producers are writing or have just written: each look
 *         takes them from the producer's cache, and its next fetch-add (a locked instruction
 *         waits for the stores before it) pays. Measured (bench/pmem, one producer, 64 B):
 *         in rounds at 30-40 records per drain the producer appended 13-14 M/s, in rounds
 *         where the flusher lagged far behind (thousands per drain) 35 M/s. So a pass that
 *         moved less than pace_below bytes (a quarter of a batch, at most 64 KiB) is followed
 *         by a pause of up to PACE_NS that touches no ring, and the next pass takes a bigger
 *         batch: ~280 records there, and a median of 35.4 M/s over 9 runs against 17.8 M/s
 *         with pauses of at most 2 us after passes under 16 KiB (the first version). Nobody
 *         who waits pays for it: a wait for written, durable or ring space announces itself
 *         (hdr.wait_ns, shm/wait.c), which skips the pause or ends it at once, and a waiter
 *         asleep is counted (the futex handshake's _waiters), which skips it too. Whoever
 *         polls instead of waiting (a reader with a zero timeout, shmwal_try_append on a
 *         full ring, stat) sees progress up to PACE_NS later.
 * Group commit: with sync=always, a sync takes everything committed while the last one ran.
 *         Producers that wait for each record then fall into two groups that take turns:
 *         when a sync ends, the records of the producers it did not cover are in the ring
 *         already, and the next sync starts with them before the producers it just woke
 *         (tens of microseconds for a futex wake-up here) have appended again; each producer
 *         waits for two syncs (build/bench/suite --only durable: 4.4 records per fdatasync
 *         with 8 producers, 10.3 with 16). So the sync after one that woke producers asleep
 *         in shmwal_wait_durable (counted apart from readers: producer_waiters) is held
 *         until as many records are in, or half the last sync's time has passed
 *         (HOLD_FRACTION, at most HOLD_MAX_NS), writing what arrives meanwhile and yielding
 *         the CPU to the producers when nothing did. A producer that does not append again
 *         costs one such hold; readers and producers that do not wait never cause one.
 *         Measured with 8 producers (64 B, 200-280 us per fdatasync): eight wake-ups and
 *         appends take 30-100 us here; holding a quarter of a sync, most holds ran out
 *         at 4-7 records (6.5 per sync); holding half, 8 of 8 (24-25 k records/s against
 *         16-17 k without the hold). Producers skip their spin before sleeping when syncs
 *         are long (wait.c, SPIN_LONG_SYNC_NS): spinning, they kept the CPUs from the
 *         producers being waited for. Sleeping in the hold (woken by the commits) instead
 *         of yielding was tried: it gathered fewer records per sync.
 * Zeros ahead: an fdatasync that covers blocks the file already had costs about half one that
 *         allocates them and grows the file (build/bench/micro, 4 KiB writes: p50 135 us
 *         against 235 us; fallocate'd blocks do not help: 241 us). So while syncs are small
 *         (under ZERO_SMALL: producers wait for few records), the flusher keeps the file
 *         written with zeros ZERO_LOW..ZERO_CHUNK bytes past the log's end, up to the
 *         segment's size, right after a sync is published; the next sync pays for those
 *         blocks once, the following ones overwrite. Bulk syncs do not zero (that would write
 *         everything twice). Zeros past the end read as the end of the log (a zero word):
 *         readers stop there, and recovery cuts them as it cuts a torn tail. A segment is cut
 *         back to its last frame before it is sealed (sealed segments have their exact size)
 *         and on a clean stop.
 * Stop:   *stop != 0: new appends fail with -ESHUTDOWN, the rings are drained, synced and
 *         published; the shared memory is removed if no producer is attached any more.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmwal_format.h"
#include "common.h"
#include "io.h"
#include "retention.h"
#include "segment.h"
#include "shm/shm.h"
#include "atomics.h"

#define BATCH_MAX (1ull << 20)	      /* bytes per pwrite, at most */
#define SPIN_IDLE_NS 50000ull	      /* spin this long without work before sleeping */
#define IDLE_SLEEP_NS 1000000ull      /* sleep at most this long (stalled frames are re-probed) */
#define POLL_NS 50000000ull	      /* look for dead producers this often */
#define POLL_BUSY_NS 1000000ull	      /* ... this often while a dead one's slot is not free */
#define ENOSPC_RETRY_NS 100000000ull  /* retry a write to a full disk this often */
#define STOP_GRACE_NS 30000000000ull  /* on stop, wait at most this long for the last claims */
#define PACE_BELOW_MAX (64u << 10)     /* a pass that moved less than this (or a 4th of a batch) */
#define PACE_NS 8000ull		      /* ... is followed by a pause of at most this long */
#define HOLD_FRACTION	2		      /* hold a sync at most half the last one's time */
#define HOLD_MAX_NS	2000000ull	      /* ... and never longer than this */
#define ZERO_SMALL	(64u << 10)	      /* syncs under this many bytes keep zeros ahead ... */
#define ZERO_LOW	(128u << 10)	      /* ... at least this far past the end ... */
#define ZERO_CHUNK	(256u << 10)	      /* ... written this much at a time */

struct fpart {
	char dir[4096];
	int fd;
	uint64_t seg_first;
	uint64_t end;		/* next LSN to write (= written) */
	uint64_t synced;	/* fdatasync covered up to here */
	uint64_t synced_before; /* ... and up to here before the last sync */
	uint64_t unsynced;	/* bytes written since the last sync */
	uint64_t filled;	/* file backend: the file's size (frames, then zeros ahead) */
	int size_cut;		/* zeros ahead were cut: the size needs a sync */
	int no_zeros;		/* zeros ahead failed in this segment (a full disk): not again */
	uint64_t enospc_until;	/* retry after this (mono ns) */
	uint64_t born_ns;	/* CLOCK_REALTIME of the segment's first record; 0: none yet */
	struct io_map map;	/* pmem backend: the current segment, mapped */
};

struct flusher {
	const struct shmwal_flusher_options *opts;
	struct meta m;
	struct shm *shm;
	int lockfd;
	uint64_t batch_bytes;
	uint64_t pace_below;	/* see "Pacing" */
	uint64_t last_sync_ns;
	uint64_t sync_dur_ns;	/* how long the last sync took (all partitions) */
	uint64_t group_records; /* records written since the last sync (all partitions) */
	uint64_t hold_for;	/* producers asleep in a durable wait when it was published */
	int stopping;		/* draining to stop: no zeros ahead */
	int pmem;		/* backend SHMWAL_BACKEND_PMEM */
	struct fpart *parts;
	struct retainer ret; /* retention (retention.c): a thread of its own */
};

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static void SHMWAL_PRINTF(3, 4) flog(void *ctx, enum shmwal_log_level lvl, const char *fmt, ...)
{
	const struct shmwal_flusher_options *o = ctx;
	char buf[1024];
	va_list ap;

	if (!o || !o->log)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&log_mu); /* the retention thread logs too: one line at a time */
	o->log(o->log_ctx, lvl, buf);
	pthread_mutex_unlock(&log_mu);
}

static int take_lock(struct flusher *f, const char *dir)
{
	char path[4096];
	int rc = path_fmt(path, sizeof(path), "%s/%s", dir, LOCK_NAME);

	if (rc < 0)
		return rc;
	f->lockfd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (f->lockfd < 0)
		return seterr(-errno, "%s: %s", path, strerror(errno));
	rc = ofd_lock_byte(f->lockfd, LOCK_BYTE_FLUSHER, 0);
	if (rc == -EAGAIN || rc == -EACCES)
		return seterr(-EBUSY, "another flusher is running on %s", dir);
	if (rc < 0)
		return seterr(rc, "lock %s: %s", path, strerror(-rc));
	return 0;
}

/* See "Zeros ahead" at the top. Best effort: nothing is published from these bytes. */
static void zero_ahead(struct flusher *f, uint32_t p)
{
	static const uint8_t zeros[64 << 10];
	struct fpart *fp = &f->parts[p];
	uint64_t end = SHMWAL_SEG_HDR + fp->end - fp->seg_first;
	uint64_t cap = SHMWAL_SEG_HDR + f->m.cfg.segment_bytes, to;

	if (f->pmem || f->stopping || fp->no_zeros || fp->filled >= cap ||
	    fp->filled - end >= ZERO_LOW)
		return;
	to = fp->filled + ZERO_CHUNK < cap ? fp->filled + ZERO_CHUNK : cap;
	while (fp->filled < to) {
		size_t n =
		    to - fp->filled < sizeof(zeros) ? (size_t)(to - fp->filled) : sizeof(zeros);

		if (io_pwrite_all(fp->fd, zeros, n, (off_t)fp->filled) < 0) {
			fp->no_zeros = 1; /* a full disk: the log's own writes come first */
			return;
		}
		fp->filled += n;
	}
}

/* The file backend's segment ends at its last frame again: the zeros ahead are cut (the
 * next sync makes the size durable). 0 or -errno. */
static int cut_zeros(struct flusher *f, uint32_t p)
{
	struct fpart *fp = &f->parts[p];
	uint64_t end = SHMWAL_SEG_HDR + fp->end - fp->seg_first;
	int rc;

	if (f->pmem || fp->filled <= end)
		return 0;
	rc = io->ftruncate(fp->fd, (off_t)end);
	if (rc < 0)
		return seterr(-EIO, "partition %u: cut the zeros past LSN %" PRIu64 ": %s", p,
			      fp->end, strerror(-rc));
	fp->filled = end;
	fp->size_cut = 1;
	return 0;
}

/*
 * fdatasync the partition's segment and publish durable up to what it covered. Ring bytes are
 * freed only now (in sync modes interval and always): if the sync fails, the frames are still
 * in the ring, and the next flusher writes them again from there (layout.c, shm_adopt).
 * In mode none, nothing is published (it was, after the write) and nothing freed. Returns 1
 * when it synced, 0 when there was nothing to sync, or -EIO.
 */
static int sync_part(struct flusher *f, uint32_t p)
{
	struct fpart *fp = &f->parts[p];
	uint64_t t0, ns;
	int rc;

	if (fp->synced == fp->end && !fp->size_cut)
		return 0;
	t0 = mono_ns();
	if (f->pmem)
		rc = io->drain(&fp->map, SHMWAL_SEG_HDR + fp->synced - fp->seg_first,
			       (size_t)(fp->end - fp->synced));
	else
		rc = io->fdatasync(fp->fd);
	ns = mono_ns() - t0;
	if (rc < 0)
		return seterr(-EIO, "partition %u: %s failed (%s); nothing past LSN %" PRIu64
				    " was published as durable; stopping (a restarted flusher "
				    "writes the rest again from the ring)",
			      p, f->pmem ? "pmem_msync" : "fdatasync", strerror(-rc), fp->synced);
	fp->synced_before = fp->synced;
	fp->synced = fp->end;
	fp->unsynced = 0;
	fp->size_cut = 0;
	f->sync_dur_ns += ns;
	if (f->m.cfg.sync != SHMWAL_SYNC_NONE) {
		/* these wake up now; their next records are worth holding the next sync for */
		f->hold_for += shm_producers_waiting(f->shm, p);
		shm_publish_durable(f->shm, p, fp->end, ns ? ns : 1);
		shm_free(f->shm, p, fp->end);
		if (fp->end - fp->synced_before < ZERO_SMALL)
			zero_ahead(f, p);
	}
	return 1;
}

static int rotate(struct flusher *f, uint32_t p)
{
	struct fpart *fp = &f->parts[p];
	struct io_map map = { 0 };
	int rc, fd;

	/* sealed segments are whole on disk, in every sync mode, and end at their last frame
	 * (zeros ahead never reach past segment_bytes, where rotation happens: cut_zeros is
	 * for the case they did) */
	rc = cut_zeros(f, p);
	if (rc == 0)
		rc = sync_part(f, p);
	if (rc < 0)
		return rc;
	rc = seg_create(fp->dir, p, fp->end, &f->m, &fd, &map);
	if (rc < 0)
		return rc;
	io->close(fp->fd);
	if (f->pmem)
		io->unmap(&fp->map);
	fp->map = map;
	fp->fd = fd;
	fp->seg_first = fp->end;
	fp->filled = SHMWAL_SEG_HDR;
	fp->no_zeros = 0;
	fp->born_ns = 0;
	shm_set_seg_first(f->shm, p, fp->seg_first);
	return 0;
}

/* Time-based rotation (retention.h, rotate_age_ms): seals a segment whose first record is
 * that old, so that age-based retention can remove it. 0 or -errno. */
static int rotate_aged(struct flusher *f, uint64_t now)
{
	for (uint32_t p = 0; p < f->m.cfg.partitions; p++) {
		struct fpart *fp = &f->parts[p];
		uint64_t age_ms = load_relaxed(&f->ret.rotate_age_ms[p]), t = real_ns();
		int rc;

		if (!age_ms || !fp->born_ns || fp->enospc_until || t < fp->born_ns ||
		    t - fp->born_ns < age_ms * 1000000ull)
			continue;
		rc = rotate(f, p);
		if (rc == -ENOSPC || rc == -EDQUOT) {
			fp->enospc_until = now + ENOSPC_RETRY_NS; /* flush_part logs and retries */
			continue;
		}
		if (rc < 0)
			return rc;
		flog((void *)f->opts, SHMWAL_LOG_INFO,
		     "partition %u: segment sealed at LSN %" PRIu64 ", its first record older "
		     "than %" PRIu64 " ms",
		     p, fp->seg_first, age_ms);
	}
	return 0;
}

/* Writes one batch of partition p; returns bytes moved (0: nothing to do), or -errno. */
static int64_t flush_part(struct flusher *f, uint32_t p, uint64_t now)
{
	struct fpart *fp = &f->parts[p];
	uint64_t room = f->m.cfg.segment_bytes - (fp->end - fp->seg_first);
	const void *data;
	uint32_t records;
	int64_t n;
	int rc;

	if (fp->enospc_until && now < fp->enospc_until)
		return 0;
	if (fp->end - fp->seg_first >= f->m.cfg.segment_bytes) {
		rc = rotate(f, p);
		if (rc == -ENOSPC || rc == -EDQUOT) {
			if (!fp->enospc_until)
				flog((void *)f->opts, SHMWAL_LOG_ERROR,
				     "partition %u: disk full creating the next segment (%s); "
				     "producers wait until space returns",
				     p, shmwal_last_error());
			fp->enospc_until = now + ENOSPC_RETRY_NS;
			return 0;
		}
		if (rc < 0)
			return rc;
		room = f->m.cfg.segment_bytes;
	}
	n = shm_consume(f->shm, p, f->batch_bytes, room, &data, &records);
	if (n <= 0)
		return n;
	if (f->pmem) {
		uint64_t off = SHMWAL_SEG_HDR + fp->end - fp->seg_first;

		/* A batch starts below segment_bytes and its frames are at most max_frame: the
		 * file's fixed size holds it. Checked all the same: a store past the mapping
		 * would be a crash, not an error. */
		if (off + (uint64_t)n > fp->map.len)
			return seterr(-EIO, "partition %u: batch at LSN %" PRIu64 " (%" PRId64
					    " bytes) does not fit the segment's mapping (%zu bytes)",
				      p, fp->end, n, fp->map.len);
		io->copy(&fp->map, off, data, (size_t)n);
		rc = 0;
	} else {
		rc = io_pwrite_all(fp->fd, data, (size_t)n,
				   (off_t)(SHMWAL_SEG_HDR + fp->end - fp->seg_first));
	}
	if (rc == -ENOSPC || rc == -EDQUOT) {
		if (!fp->enospc_until)
			flog((void *)f->opts, SHMWAL_LOG_ERROR,
			     "partition %u: disk full writing LSN %" PRIu64 "; producers wait "
			     "until space returns",
			     p, fp->end);
		fp->enospc_until = now + ENOSPC_RETRY_NS;
		return 0;
	}
	if (rc < 0)
		return seterr(-EIO, "partition %u: write failed at LSN %" PRIu64 ": %s", p, fp->end,
			      strerror(-rc));
	if (fp->enospc_until) {
		flog((void *)f->opts, SHMWAL_LOG_INFO, "partition %u: disk has space again", p);
		fp->enospc_until = 0;
	}
	if (fp->end == fp->seg_first)
		fp->born_ns = real_ns();
	if (!f->pmem && SHMWAL_SEG_HDR + fp->end - fp->seg_first + (uint64_t)n > fp->filled)
		fp->filled = SHMWAL_SEG_HDR + fp->end - fp->seg_first + (uint64_t)n;
	fp->end += (uint64_t)n;
	fp->unsynced += (uint64_t)n;
	f->group_records += records;
	shm_count_batch(f->shm, p, records, (uint64_t)n);
	shm_release(f->shm, p, fp->end);
	if (f->m.cfg.sync == SHMWAL_SYNC_NONE) {
		/* page-cache durability: the file has it, the ring bytes can go */
		shm_publish_durable(f->shm, p, fp->end, 0);
		shm_free(f->shm, p, fp->end);
	}
	return n;
}

static int sync_due(struct flusher *f, uint64_t now)
{
	const struct shmwal_config *c = &f->m.cfg;
	uint64_t unsynced = 0;
	uint32_t p;

	if (c->sync == SHMWAL_SYNC_ALWAYS)
		return 1;
	if (c->sync == SHMWAL_SYNC_NONE)
		return 0;
	for (p = 0; p < c->partitions; p++) {
		unsynced += f->parts[p].unsynced;
		/* Ring bytes are freed by the sync: do not let producers wait for it. */
		if (f->parts[p].end - f->parts[p].synced >= c->ring_bytes / 2)
			return 1;
	}
	if (!unsynced)
		return 0;
	if (c->sync_interval_bytes && unsynced >= c->sync_interval_bytes)
		return 1;
	return c->sync_interval_us && now - f->last_sync_ns >= c->sync_interval_us * 1000ull;
}

static int sync_all(struct flusher *f, uint64_t now)
{
	uint64_t dur = f->sync_dur_ns, hold_for = f->hold_for;
	uint32_t p;
	int rc, any = 0;

	f->sync_dur_ns = f->hold_for = 0;
	for (p = 0; p < f->m.cfg.partitions; p++) {
		rc = sync_part(f, p);
		if (rc < 0)
			return rc;
		any |= rc;
	}
	if (any)
		f->group_records = 0;
	else { /* nothing to sync: what the last sync learnt still stands */
		f->sync_dur_ns = dur;
		f->hold_for = hold_for;
	}
	f->last_sync_ns = now;
	return 0;
}

/* See "Group commit" at the top: writes what arrives until hold_for records wait for the
 * sync, or the hold's time is up. 0 or -errno. */
static int hold(struct flusher *f)
{
	uint64_t t0 = mono_ns(), budget = f->sync_dur_ns / HOLD_FRACTION, now;

	if (budget > HOLD_MAX_NS)
		budget = HOLD_MAX_NS;
	while (f->group_records < f->hold_for && (now = mono_ns()) - t0 < budget) {
		int64_t moved = 0;

		for (uint32_t p = 0; p < f->m.cfg.partitions; p++) {
			int64_t n = flush_part(f, p, now);

			if (n < 0)
				return (int)n;
			moved += n;
		}
		if (!moved)
			sched_yield(); /* two CPUs here: the producers we wait for need one */
	}
	return 0;
}

static int any_enospc(const struct flusher *f)
{
	for (uint32_t p = 0; p < f->m.cfg.partitions; p++)
		if (f->parts[p].enospc_until)
			return 1;
	return 0;
}

/* Every claimed byte is in the files (the final sync follows). */
static int drained(struct flusher *f)
{
	for (uint32_t p = 0; p < f->m.cfg.partitions; p++)
		if (shm_tail(f->shm, p) != f->parts[p].end)
			return 0;
	return 1;
}

/* Cuts partition p's current segment back to `lsn` (an adopted ring holds the rest). */
static int cut_back(struct flusher *f, uint32_t p, uint64_t lsn)
{
	struct fpart *fp = &f->parts[p];
	int rc;

	if (lsn < fp->seg_first)
		return seterr(-EPROTO, "partition %u: durable LSN %" PRIu64 " lies before the last "
				       "segment (%" PRIu64 "); refusing to guess",
			      p, lsn, fp->seg_first);
	if (f->pmem) {
		/* Bytes past lsn must not outlive the rewrite as valid frames (recovery.c). */
		io->zero(&fp->map, SHMWAL_SEG_HDR + lsn - fp->seg_first, (size_t)(fp->end - lsn));
		rc = io->drain(&fp->map, SHMWAL_SEG_HDR + lsn - fp->seg_first,
			       (size_t)(fp->end - lsn));
	} else {
		rc = io->ftruncate(fp->fd, (off_t)(SHMWAL_SEG_HDR + lsn - fp->seg_first));
		if (rc == 0)
			rc = io->fdatasync(fp->fd);
		fp->filled = SHMWAL_SEG_HDR + lsn - fp->seg_first;
	}
	if (rc < 0)
		return seterr(rc, "partition %u: cut back to LSN %" PRIu64 ": %s", p, lsn,
			      strerror(-rc));
	flog((void *)f->opts, SHMWAL_LOG_INFO,
	     "partition %u: writing LSN %" PRIu64 "..%" PRIu64 " again from the ring", p, lsn,
	     fp->end);
	fp->end = fp->synced = lsn;
	return 0;
}

/* The timestamp of a recovered segment's first record (its age survives a restart); now, if
 * it cannot be read. (The flusher's own descriptor is write-only for the file backend.) */
static uint64_t first_record_ns(const char *path)
{
	struct shmwal_frame h;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t n = fd < 0 ? -1 : pread(fd, &h, sizeof(h), SHMWAL_SEG_HDR);

	if (fd >= 0)
		close(fd);
	return n == (ssize_t)sizeof(h) && h.timestamp_ns ? h.timestamp_ns : real_ns();
}

static int open_parts(struct flusher *f)
{
	const struct shmwal_config *c = &f->m.cfg;
	uint64_t end[SHMWAL_MAX_PARTITIONS], resume[SHMWAL_MAX_PARTITIONS];
	struct seg_recovery rec;
	uint32_t p;
	int rc, adopted = 0;

	f->parts = calloc(c->partitions, sizeof(*f->parts));
	if (!f->parts)
		return seterr(-ENOMEM, "out of memory");
	for (p = 0; p < c->partitions; p++)
		f->parts[p].fd = -1;
	for (p = 0; p < c->partitions; p++) {
		struct fpart *fp = &f->parts[p];
		char path[4096];

		if ((rc = part_dir(fp->dir, sizeof(fp->dir), f->m.dir, p)) < 0)
			return rc;
		rc = recover_partition(&f->m, p, f->opts ? f->opts->repair : 0, flog,
				       (void *)f->opts, &rec);
		if (rc < 0)
			return rc;
		end[p] = rec.end;
		fp->end = rec.end;
		if (rec.has_seg) {
			fp->seg_first = rec.seg_first;
			if ((rc = seg_path(path, sizeof(path), fp->dir, rec.seg_first)) < 0)
				return rc;
			fp->fd = io->open(path, (f->pmem ? O_RDWR : O_WRONLY) | O_CLOEXEC |
							O_NOFOLLOW, 0);
			if (fp->fd < 0)
				return seterr(fp->fd, "%s: %s", path, strerror(-fp->fd));
			/* What the file holds may be in the page cache only (the shared memory of
			 * a crashed flusher can be gone): sync it before anyone calls it durable.
			 * pmem: a crashed flusher's copies may sit in CPU caches: flush them. */
			rc = io->fdatasync(fp->fd);
			if (rc == 0 && f->pmem && (rc = io->map(fp->fd, &fp->map)) == 0)
				rc = io->flush(&fp->map, 0, SHMWAL_SEG_HDR + rec.end - rec.seg_first);
			if (rc < 0)
				return seterr(rc, "%s: sync: %s", path, strerror(-rc));
		} else {
			rc = seg_create(fp->dir, p, rec.end, &f->m, &fp->fd, &fp->map);
			if (rc < 0)
				return rc;
			fp->seg_first = rec.end;
		}
		fp->synced = fp->end;
		fp->filled = SHMWAL_SEG_HDR + fp->end - fp->seg_first; /* recovery cut the rest */
		if (fp->end > fp->seg_first &&
		    seg_path(path, sizeof(path), fp->dir, fp->seg_first) == 0)
			fp->born_ns = first_record_ns(path);
	}
	if (f->pmem && !f->parts[0].map.is_pmem)
		flog((void *)f->opts, SHMWAL_LOG_WARN,
		     "%s is not on persistent memory (pmem_is_pmem() is false: no DAX mapping); "
		     "the pmem backend falls back to pmem_msync(), which is correct but much "
		     "slower. Put the WAL on a filesystem mounted with -o dax for the pmem path.",
		     f->m.dir);
	rc = shm_flusher_open(&f->m, end, flog, (void *)f->opts, &f->shm, &adopted, resume);
	if (rc < 0)
		return rc;
	shm_set_persistence(f->shm, !f->pmem		     ? SHMWAL_PERSIST_FDATASYNC
				    : f->parts[0].map.is_pmem ? SHMWAL_PERSIST_PMEM_DRAIN
							      : SHMWAL_PERSIST_PMEM_MSYNC);
	flog((void *)f->opts, SHMWAL_LOG_INFO, "%s shared memory of %s (%u partitions)",
	     adopted ? "adopted the" : "created the", f->m.dir, c->partitions);
	for (p = 0; p < c->partitions; p++) {
		struct fpart *fp = &f->parts[p];

		if (resume[p] < fp->end && (rc = cut_back(f, p, resume[p])) < 0)
			return rc;
		shm_set_seg_first(f->shm, p, fp->seg_first);
		shm_publish_durable(f->shm, p, fp->end, 0);
	}
	return 0;
}

static void close_all(struct flusher *f, int remove_shm)
{
	if (f->parts) {
		for (uint32_t p = 0; p < f->m.cfg.partitions; p++) {
			if (f->parts[p].map.addr)
				io->unmap(&f->parts[p].map);
			if (f->parts[p].fd >= 0)
				io->close(f->parts[p].fd);
		}
		free(f->parts);
	}
	if (f->shm)
		shm_flusher_close(f->shm, remove_shm);
	if (f->lockfd >= 0)
		close(f->lockfd);
}

/* See "Pacing" at the top. `pass_ns`: when the pass began (its time counts). */
static void pace(struct flusher *f, uint64_t pass_ns)
{
	uint64_t w = shm_wait_word(f->shm);

	if (shm_anyone_waiting(f->shm, pass_ns))
		return;
	while (mono_ns() - pass_ns < PACE_NS && shm_wait_word(f->shm) == w)
		for (int i = 0; i < 16; i++)
			cpu_relax();
}

static int stop_requested(const int *stop)
{
	return stop && __atomic_load_n(stop, __ATOMIC_RELAXED);
}

SHMWAL_EXPORT int shmwal_flusher_run(const char *dir, const struct shmwal_flusher_options *opts,
				     const int *stop)
{
	struct flusher f;
	uint64_t idle_since = 0, next_poll = 0, stop_deadline = 0;
	int rc, stopping = 0, remove_shm = 0;

	memset(&f, 0, sizeof(f));
	f.lockfd = -1;
	f.opts = opts;
	if (!dir)
		return seterr(-EINVAL, "directory is NULL");
	rc = meta_load(dir, &f.m);
	if (rc < 0)
		return rc;
	rc = take_lock(&f, dir);
	if (rc < 0)
		goto out;
	f.pmem = f.m.cfg.backend == SHMWAL_BACKEND_PMEM;
	f.batch_bytes = f.m.cfg.ring_bytes / 4 < BATCH_MAX ? f.m.cfg.ring_bytes / 4 : BATCH_MAX;
	f.pace_below = f.batch_bytes / 4 < PACE_BELOW_MAX ? f.batch_bytes / 4 : PACE_BELOW_MAX;
	rc = open_parts(&f);
	if (rc < 0)
		goto out;
	rc = retainer_start(&f.ret, &f.m, f.shm, flog, (void *)opts);
	if (rc < 0)
		goto out;
	f.last_sync_ns = mono_ns();

	for (;;) {
		uint64_t now = mono_ns(), moved = 0;
		uint32_t p;

		for (p = 0; p < f.m.cfg.partitions; p++) {
			int64_t n = flush_part(&f, p, now);

			if (n < 0) {
				rc = (int)n;
				goto fail;
			}
			moved += (uint64_t)n;
		}
		if (moved && f.m.cfg.sync == SHMWAL_SYNC_ALWAYS && !stopping &&
		    f.group_records < f.hold_for && (rc = hold(&f)) < 0)
			goto fail;
		/* Sync when the mode says so, and whenever nothing moved (a quiet tail is never
		 * left unsynced, whatever the interval settings). */
		if ((sync_due(&f, now) || (!moved && f.m.cfg.sync != SHMWAL_SYNC_NONE)) &&
		    (rc = sync_all(&f, now)) < 0)
			goto fail;
		shm_heartbeat(f.shm);
		if (now >= next_poll) {
			/* Reclaiming a dead producer's slot takes two polls (registry.c), and what
			 * the first one found is this process's: were they 50 ms apart, flushers
			 * killed sooner (a crash loop) would never give slots back, and producers
			 * would find none left (found by the crash campaign). */
			next_poll = now + (shm_registry_poll(f.shm) ? POLL_BUSY_NS : POLL_NS);
			if (!stopping && (rc = rotate_aged(&f, now)) < 0)
				goto fail;
			shm_rates(f.shm, now);
		}
		if (!stopping && stop_requested(stop)) {
			stopping = f.stopping = 1;
			stop_deadline = now + STOP_GRACE_NS;
			shm_set_stopping(f.shm, 1);
			flog((void *)opts, SHMWAL_LOG_INFO, "stopping: draining the rings");
		}
		if (stopping || (opts && opts->exit_when_idle)) {
			if (drained(&f) && (stopping || shm_live_producers(f.shm) == 0)) {
				if (!stopping)
					shm_set_stopping(f.shm, 1);
				/* Probe the slots now: a producer that died since the last poll
				 * is not attached, and must not keep the shm object alive. */
				shm_registry_poll(f.shm);
				remove_shm = shm_live_producers(f.shm) == 0;
				break;
			}
			if (stopping && now > stop_deadline) {
				flog((void *)opts, SHMWAL_LOG_WARN,
				     "stopping with unfinished claims left in the rings; the next "
				     "flusher will adopt them");
				break;
			}
		}
		if (moved)
			idle_since = 0;
		else if (!idle_since)
			idle_since = now;
		if (idle_since && now - idle_since >= SPIN_IDLE_NS)
			shm_flusher_idle(f.shm, IDLE_SLEEP_NS, any_enospc(&f));
		else if (moved < f.pace_below && !stopping)
			pace(&f, now);
	}
	f.stopping = 1;
	rc = 0;
	for (uint32_t p = 0; p < f.m.cfg.partitions && rc == 0; p++)
		rc = cut_zeros(&f, p); /* a clean stop leaves no tail to cut */
	if (rc == 0)
		rc = sync_all(&f, mono_ns());
	if (rc < 0)
		goto fail;
	flog((void *)opts, SHMWAL_LOG_INFO, "stopped cleanly%s",
	     remove_shm ? "" : " (producers still attached: shared memory kept for the next "
			       "flusher)");
	retainer_stop(&f.ret);
	close_all(&f, remove_shm);
	return 0;
fail:
	flog((void *)opts, SHMWAL_LOG_ERROR, "%s", shmwal_last_error());
	/* best effort, for whoever reads the files next: no zeros past the end (a crash leaves
	 * them, and recovery cuts them as a torn tail) */
	for (uint32_t p = 0; !f.pmem && f.parts && p < f.m.cfg.partitions; p++) {
		struct fpart *fp = &f.parts[p];

		if (fp->fd >= 0 && fp->filled > SHMWAL_SEG_HDR + fp->end - fp->seg_first)
			io->ftruncate(fp->fd, (off_t)(SHMWAL_SEG_HDR + fp->end - fp->seg_first));
	}
out:
	retainer_stop(&f.ret);
	close_all(&f, 0);
	return rc;
}
