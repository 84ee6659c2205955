/* SPDX-License-Identifier: MIT */
/*
 * shmwal.h - the public API of shmwal, a shared-memory write-ahead log for many producer
 * processes on one Linux machine.
 *
 * Roles
 *   producer  any process (any number of threads) that appends records. It attaches with
 *             shmwal_open() and claims space in a per-partition ring in shared memory with one
 *             atomic fetch-add: no lock and no system call on the append path.
 *   flusher   exactly one process per WAL (shmwal_flusher_run(), or `shmwal flusher DIR`). It
 *             drains the rings in LSN order into segment files, syncs them (group commit) and
 *             publishes the durable LSN of each partition.
 *   reader    any process. Reads durable records from the segment files, follows the log live
 *             and looks records up by LSN.
 *
 * LSNs
 *   An LSN is the byte position of a record's frame in its partition's stream: 64-bit, strictly
 *   increasing, never reused, continued across restarts. LSNs of one partition are unrelated to
 *   those of another. A record is durable once shmwal_durable_lsn() is greater than its LSN.
 *
 * Errors
 *   Every function returns 0 (or a count, or an LSN) on success and a negative errno value on
 *   failure. shmwal_last_error() gives a sentence about the last failure in the calling thread
 *   (like dlerror()); the library itself never prints, exits or aborts.
 *
 * Example: a producer that waits until its record is durable
 *
 *	struct shmwal *w;
 *	uint64_t lsn;
 *	int rc = shmwal_open("/var/lib/orders.wal", &w);
 *	if (rc < 0) { fprintf(stderr, "%s\n", shmwal_last_error()); return 1; }
 *	rc = shmwal_append(w, 0, SHMWAL_TYPE_PUT, "id42", 4, "buy 100", 7, &lsn);
 *	if (rc == 0)
 *		rc = shmwal_wait_durable(w, 0, lsn, 5 * SHMWAL_NS_PER_SEC);
 *	shmwal_close(w);
 *
 * Example: a reader following partition 0 from the oldest retained record
 *
 *	struct shmwal_reader *r;
 *	struct shmwal_record rec;
 *	shmwal_reader_open("/var/lib/orders.wal", 0, SHMWAL_LSN_OLDEST, &r);
 *	while ((rc = shmwal_reader_next(r, &rec, SHMWAL_WAIT_FOREVER)) == 0)
 *		handle(rec.lsn, rec.key, rec.key_len, rec.value, rec.value_len);
 *	shmwal_reader_close(r);
 */
#ifndef SHMWAL_H
#define SHMWAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHMWAL_VERSION_MAJOR 0
#define SHMWAL_VERSION_MINOR 1

#define SHMWAL_NS_PER_SEC 1000000000ull
/* Timeouts are in nanoseconds; 0 means "do not wait", this means "wait without limit". */
#define SHMWAL_WAIT_FOREVER UINT64_MAX

/* Record types. 0 is invalid; 16..65535 are free for the application. */
#define SHMWAL_TYPE_PUT 1
#define SHMWAL_TYPE_DELETE 2
#define SHMWAL_TYPE_USER_MIN 16
#define SHMWAL_TYPE_MAX 65535

/* Special start positions for shmwal_reader_open(). */
#define SHMWAL_LSN_OLDEST 0ull		/* the oldest retained record (so LSN 0 means "oldest") */
#define SHMWAL_LSN_END UINT64_MAX	/* only records appended after the open */

/* Hard limits of the format (a configuration may only lower them). */
#define SHMWAL_MAX_PARTITIONS 256u
#define SHMWAL_MAX_KEY 65535u
#define SHMWAL_MAX_RING (1ull << 30)
#define SHMWAL_MIN_RING (64ull << 10)

enum shmwal_sync {
	SHMWAL_SYNC_NONE = 0,	  /* page cache only: survives a process crash, not a power cut */
	SHMWAL_SYNC_INTERVAL = 1, /* fdatasync at least every sync_interval_us and/or
				     sync_interval_bytes, and whenever the flusher is idle */
	SHMWAL_SYNC_ALWAYS = 2,	  /* fdatasync every batch: group commit */
};

enum shmwal_backend {
	SHMWAL_BACKEND_FILE = 0, /* segment files written with pwrite and synced with fdatasync */
	SHMWAL_BACKEND_PMEM = 1, /* fixed-size segment files mapped with libpmem: each batch is
				    copied with non-draining stores and made persistent by one
				    pmem_drain() (on a DAX filesystem), or by pmem_msync() where
				    the mapping is not persistent memory. The sync modes apply
				    as for files, with the drain (or msync) in place of fdatasync. */
};

/*
 * The configuration of a WAL, fixed by shmwal_create() and stored in the WAL directory.
 * Start from shmwal_config_default() and change what you need.
 */
struct shmwal_config {
	uint32_t partitions;	      /* 1..SHMWAL_MAX_PARTITIONS; default 1 */
	uint32_t mode;		      /* permission bits of the shm object and files; 0600 */
	uint64_t ring_bytes;	      /* per partition, power of two, 64 KiB..1 GiB; 4 MiB */
	uint64_t segment_bytes;	      /* rotate segments past this size; 64 MiB */
	uint32_t max_key;	      /* largest key accepted, <= 65535; default 1024 */
	uint32_t max_value;	      /* largest value accepted; default 64 KiB */
	enum shmwal_sync sync;	      /* default SHMWAL_SYNC_ALWAYS */
	uint32_t sync_interval_us;    /* SHMWAL_SYNC_INTERVAL: sync at least this often; 1000 */
	uint64_t sync_interval_bytes; /* SHMWAL_SYNC_INTERVAL: or after this many bytes; 0=off */
	uint32_t stall_timeout_ms;    /* log a claim stuck this long at the flusher; 10000 */
	enum shmwal_backend backend;  /* default SHMWAL_BACKEND_FILE */
};

/* Fills *cfg with the defaults above. Never fails. */
void shmwal_config_default(struct shmwal_config *cfg);

/*
 * Checks a configuration without touching the disk. Returns 0 or -EINVAL; the reason is in
 * shmwal_last_error().
 */
int shmwal_config_validate(const struct shmwal_config *cfg);

/*
 * Creates the WAL directory `dir` (its parent must exist) with the metadata file DIR/meta that
 * holds `cfg` and a new random instance id, the lock file and one subdirectory per partition.
 * Idempotent: creating again with an equal configuration returns 0 and changes nothing.
 * Errors: -EINVAL bad configuration; -EEXIST the directory holds a WAL with another
 * configuration, or other files; -EBADMSG its metadata is damaged; -ENOTDIR `dir` is not a directory; -EACCES, -ENOENT (parent missing), -EIO.
 * Blocks on file I/O. Concurrent creates of one directory with equal configurations, from any
 * processes and threads, all succeed.
 */
int shmwal_create(const char *dir, const struct shmwal_config *cfg);

/* Reads the configuration of an existing WAL. -ENOENT when `dir` holds none, -EBADMSG when its
 * metadata is damaged. */
int shmwal_config_load(const char *dir, struct shmwal_config *cfg);

/* ---- producers ------------------------------------------------------------------------- */

struct shmwal; /* a producer attachment: opaque */

/*
 * Attaches the calling process as a producer of the WAL in `dir`. The flusher must have
 * created the shared memory: -ENOENT means "start the flusher" (`shmwal flusher DIR`).
 * Errors: -ENOENT no WAL or no flusher yet; -EPROTO the shared memory has another layout or
 * instance, or is not initialized; -EUSERS every producer slot is taken; -EACCES.
 * The handle may be used by any number of threads of this process at once. It must not be
 * used in a child after fork(): open a new one there.
 */
int shmwal_open(const char *dir, struct shmwal **out);

/* Detaches. Every claim of this handle must have been committed or aborted. Never fails. */
void shmwal_close(struct shmwal *w);

/* The configuration the WAL was created with. */
const struct shmwal_config *shmwal_get_config(const struct shmwal *w);

/*
 * Appends one record: claims space in the partition's ring with one atomic fetch-add, copies
 * key and value, checksums, and commits. On success *lsn_out (if not NULL) is the record's
 * LSN. The record is durable once shmwal_wait_durable() says so.
 * Blocks while the ring is full (back-pressure from the flusher); never takes a lock.
 * Thread- and process-safe.
 * Errors: -EINVAL bad partition, type, or NULL with a non-zero length; -EMSGSIZE key or value
 * over the configured limit (nothing is truncated); -EUSERS no free producer lane for this
 * thread; -ESHUTDOWN the WAL was stopped.
 */
int shmwal_append(struct shmwal *w, uint32_t part, uint16_t type, const void *key,
		  uint32_t key_len, const void *value, uint32_t value_len, uint64_t *lsn_out);

/* As shmwal_append(), but returns -EAGAIN without claiming anything when the ring is full. */
int shmwal_try_append(struct shmwal *w, uint32_t part, uint16_t type, const void *key,
		      uint32_t key_len, const void *value, uint32_t value_len, uint64_t *lsn_out);

/*
 * A zero-copy claim. shmwal_claim() fills it; the caller writes key_len bytes at `key` and
 * value_len bytes at `value` (both point into shared memory) and then calls shmwal_commit()
 * or shmwal_abort(). Keep claims short: until it is committed or aborted, a claim holds up
 * the flusher on its partition (records behind it wait). The fields after `value_len` are
 * private.
 */
struct shmwal_claim {
	void *key;
	void *value;
	uint64_t lsn;
	uint32_t part;
	uint32_t key_len;
	uint32_t value_len;
	uint32_t priv_len;
	uint64_t priv_frame;
};

/*
 * Claims space for one record and returns pointers to fill. Blocks while the ring is full.
 * Errors as shmwal_append(). The claim belongs to the calling thread until committed.
 * While a thread holds an open claim, its blocking appends and claims on the same partition
 * may wait for ring space that only the open claim's commit can free: commit first (or use
 * the try variants).
 */
int shmwal_claim(struct shmwal *w, uint32_t part, uint16_t type, uint32_t key_len,
		 uint32_t value_len, struct shmwal_claim *c);

/* As shmwal_claim(), but returns -EAGAIN without claiming when the ring is full. */
int shmwal_try_claim(struct shmwal *w, uint32_t part, uint16_t type, uint32_t key_len,
		     uint32_t value_len, struct shmwal_claim *c);

/*
 * Checksums and commits a claim: the record becomes visible to the flusher. Returns 0.
 * Errors: -EINVAL the claim is not one of this handle's open claims.
 */
int shmwal_commit(struct shmwal *w, struct shmwal_claim *c);

/* Gives a claim up: its space becomes an ABORTED frame that readers never see. Returns 0. */
int shmwal_abort(struct shmwal *w, struct shmwal_claim *c);

/*
 * The partition's durable LSN: every record with a smaller LSN is durable under the WAL's
 * sync mode (in the page cache for SHMWAL_SYNC_NONE). Never blocks. Returns the LSN (>= 0)
 * or -EINVAL for a bad partition.
 */
int64_t shmwal_durable_lsn(const struct shmwal *w, uint32_t part);

/*
 * Waits until the record at `lsn` is durable: spins a short, bounded time, then sleeps on a
 * futex that the flusher wakes. Returns 0, or -ETIMEDOUT after timeout_ns nanoseconds
 * (SHMWAL_WAIT_FOREVER: no limit; 0: just check), -EINVAL bad partition.
 * Thread- and process-safe.
 */
int shmwal_wait_durable(struct shmwal *w, uint32_t part, uint64_t lsn, uint64_t timeout_ns);

/* ---- the flusher ----------------------------------------------------------------------- */

enum shmwal_log_level { SHMWAL_LOG_ERROR, SHMWAL_LOG_WARN, SHMWAL_LOG_INFO, SHMWAL_LOG_DEBUG };

struct shmwal_flusher_options {
	/* Called with one line of text (no newline) for each event worth telling an operator.
	 * NULL: silent. Called from the flusher's threads (its loop, and the thread that
	 * enforces retention), never two calls at once. */
	void (*log)(void *ctx, enum shmwal_log_level level, const char *msg);
	void *log_ctx;
	/* Instead of refusing to start on damage found at start (a sealed segment with a bad
	 * header, a wrong size or a gap), cut the log there, moving that segment and every later
	 * one to DIR/quarantine (never deleting them). The LSNs of the records moved aside are
	 * used again by new records: a repair is an operator's decision to discard them. */
	int repair;
	/* Stop once the log is drained and synced and no producer is attached (at once if none
	 * ever attaches). For tests and batch jobs. Default 0. */
	int exit_when_idle;
};

/*
 * Runs the flusher of the WAL in `dir` until *stop becomes non-zero (set it from a signal
 * handler or another thread; it is read with atomic loads), then drains the rings, syncs,
 * publishes and returns 0. Creates the shared memory, or adopts one left by a flusher that
 * died and drains what producers committed meanwhile. Recovers the segment files first, in
 * time that does not grow with the log: the last segment is scanned and its torn tail cut;
 * every other segment's header, size and place in the LSN sequence are checked (not its
 * frames: readers and `shmwal verify` catch damage inside them). Damage found at start makes
 * it refuse with -EBADMSG, unless opts->repair.
 * Exactly one flusher runs per WAL: an OFD lock on DIR/lock, held by the descriptor this call
 * opens (close-on-exec). A process that embeds the flusher and fork()s without exec passes the
 * lock on to the child, and a new flusher is refused while that child lives.
 * Errors: -EBUSY another flusher runs on this WAL; -EBADMSG damaged log; -EPROTO the shared
 * memory does not belong to this WAL; -EIO an fsync or write failed: nothing past it was
 * published, restart to recover from the files; -ENOSPC the disk stayed full.
 * `opts` may be NULL.
 */
int shmwal_flusher_run(const char *dir, const struct shmwal_flusher_options *opts,
		       const int *stop);

/* ---- status ---------------------------------------------------------------------------- */

/* How the running flusher makes records durable. */
enum shmwal_persistence {
	SHMWAL_PERSIST_NONE = 0,	/* no flusher is running */
	SHMWAL_PERSIST_FDATASYNC = 1,	/* file backend: pwrite, then fdatasync */
	SHMWAL_PERSIST_PMEM_DRAIN = 2,	/* pmem backend on persistent memory (DAX, or
					   PMEM_IS_PMEM_FORCE=1): non-draining copies, one
					   pmem_drain() per batch */
	SHMWAL_PERSIST_PMEM_MSYNC = 3,	/* pmem backend where the mapping is not persistent
					   memory: copies into the page cache, pmem_msync() */
};

/* Where the records' timestamps come from. */
enum shmwal_clock {
	SHMWAL_CLOCK_REALTIME = 0,	/* clock_gettime(CLOCK_REALTIME) in every append */
	SHMWAL_CLOCK_TSC = 1,		/* the CPU's time-stamp counter, on a line the flusher
					   calibrates against CLOCK_REALTIME (x86-64 with an
					   invariant TSC that the kernel uses as its clocksource;
					   SHMWAL_CLOCK=realtime in the flusher's environment
					   turns it off) */
};

/* Buckets of shmwal_partition_stat.sync_hist: bucket b counts syncs that took less than 2^b
 * microseconds (and at least 2^(b-1)); the last one counts the rest. */
#define SHMWAL_SYNC_HIST_BUCKETS 24

/* One partition in a shmwal_stat snapshot. Counters run since the shared memory was created
 * (a clean stop removes it; a restarted flusher adopting it keeps them). */
struct shmwal_partition_stat {
	/* positions */
	uint64_t tail;	    /* the next LSN producers will claim */
	uint64_t written;   /* the flusher has written (copied) the log up to here */
	uint64_t durable;   /* ... and made it durable up to here */
	uint64_t head;	    /* ring bytes below this LSN are free again */
	uint64_t seg_first; /* first LSN of the segment being written */
	/* the flusher's counters */
	uint64_t records, bytes, batches, syncs;
	uint64_t records_durable; /* of `records`, those made durable (lag: the difference) */
	uint64_t sync_ns_total; /* time spent in syncs */
	uint64_t sync_ns_last;	/* the last sync's */
	uint64_t sync_hist[SHMWAL_SYNC_HIST_BUCKETS];
	uint64_t aborted_claims; /* claims of dead producers it aborted (repaired) */
	uint64_t padded_gaps;	 /* space claimed by producers that died before saying where */
	uint64_t stalls;	 /* claims of live producers stuck past stall_timeout_ms */
	uint64_t retention_segments, retention_bytes; /* removed by the retention policy */
	/* rates over the flusher's last second */
	uint64_t append_bytes_per_s; /* tail's advance */
	uint64_t records_per_s;	     /* written by the flusher */
	uint64_t bytes_per_s;
	/* the files (from the partition's directory, whether or not a flusher runs) */
	uint64_t segments;	/* segment files */
	uint64_t segment_bytes; /* their total size */
	uint64_t oldest; /* first LSN of the oldest segment (where SHMWAL_LSN_OLDEST reads) */
};

/* A snapshot of a WAL's state, read without locks (positions may be a moment apart). Lag is
 * tail - durable (bytes claimed but not yet durable); ring fill is tail - head against
 * cfg.ring_bytes. */
struct shmwal_stat {
	struct shmwal_config cfg;
	int shm_present;	/* the shared memory exists: the positions below are live */
	int flusher_running;	/* a process holds the flusher lock */
	uint32_t flusher_pid;	/* as the flusher recorded it (0: none since the last stop) */
	enum shmwal_persistence persistence;
	enum shmwal_clock clock; /* what appends read their timestamps from now */
	uint32_t live_producers;
	uint64_t heartbeat_age_ns; /* since the flusher's last loop */
	uint64_t flusher_start_ns; /* CLOCK_REALTIME when the running flusher started */
	uint64_t appends;	   /* records appended through every producer handle */
	uint64_t appends_per_s;	   /* ... over the flusher's last second */
	uint64_t ring_full_waits;  /* appends that had to wait for ring space */
	struct shmwal_partition_stat part[SHMWAL_MAX_PARTITIONS]; /* cfg.partitions of them */
};

/*
 * Fills *st for the WAL in `dir`. Needs read access to DIR and, for the live part, to the
 * shared memory. Errors as shmwal_config_load(); a missing shared memory is not an error
 * (shm_present = 0: only cfg, flusher_running and the files' figures are filled).
 * For programs that export metrics themselves: it takes no lock and writes nothing, so it
 * may be called as often as wanted without slowing producers or the flusher down.
 */
int shmwal_stat(const char *dir, struct shmwal_stat *st);

/* ---- readers --------------------------------------------------------------------------- */

struct shmwal_reader; /* opaque */

/* One record as returned by shmwal_reader_next(). The pointers stay valid until the next
 * call on the same reader or its close. */
struct shmwal_record {
	uint64_t lsn;
	uint64_t next_lsn; /* the LSN right after this record's frame */
	uint64_t timestamp_ns; /* CLOCK_REALTIME when its append began (enum shmwal_clock) */
	uint32_t partition;
	uint16_t type;
	const void *key;
	uint32_t key_len;
	const void *value;
	uint32_t value_len;
};

/*
 * Opens a reader of partition `part` positioned at `from_lsn` (an LSN returned by an append
 * or a record's next_lsn, SHMWAL_LSN_OLDEST or SHMWAL_LSN_END).
 * Errors: -ENOENT no WAL; -EINVAL bad partition, or from_lsn is not a record boundary;
 * -ERANGE from_lsn lies below the retained log (truncated away).
 * A reader is used by one thread at a time; any number of readers may run in a process.
 */
int shmwal_reader_open(const char *dir, uint32_t part, uint64_t from_lsn,
		       struct shmwal_reader **out);

/*
 * Returns the next durable record in LSN order, skipping internal padding. Waits up to
 * timeout_ns for one to become durable (spins briefly, then sleeps on a futex).
 * Returns 0 with *rec filled; -ETIMEDOUT none arrived in time (0: none available now);
 * -EBADMSG a record failed its checksum or LSN check (corruption: the message names the file
 * and offset); -ERANGE the reader's position was truncated away. A truncation never takes the
 * segment a reader is in from under it: the reader reads it to its end, and answers -ERANGE
 * there if the segments after it were removed too (open a new reader at SHMWAL_LSN_OLDEST).
 */
int shmwal_reader_next(struct shmwal_reader *r, struct shmwal_record *rec, uint64_t timeout_ns);

/* The LSN the next call to shmwal_reader_next() will start from. */
uint64_t shmwal_reader_position(const struct shmwal_reader *r);

void shmwal_reader_close(struct shmwal_reader *r);

/*
 * Removes the partition's whole segments that end at or below `lsn` (never the segment being
 * written). Safe while the flusher and readers run: readers that still read a removed segment
 * keep their mapping until they move on. Returns the number of segments removed.
 */
int shmwal_truncate_before(const char *dir, uint32_t part, uint64_t lsn);

/* ---- retention -------------------------------------------------------------------------- */

/*
 * What the flusher keeps of a partition's log, besides what checkpoints remove
 * (shmwal_truncate_before). 0 in a field means "no limit". The flusher enforces the policy in
 * a thread of its own, about ten times a second, oldest segment first, and picks up a changed
 * policy within that time. It only ever removes whole sealed segments that lie entirely below
 * the durable LSN, never the segment being written; a reader that is in a removed segment
 * reads it to its end (shmwal_reader_next). Limits are met at segment granularity: a segment
 * goes once the log without it still satisfies max_segments and max_bytes, or once its last
 * write (the file's modification time) is older than max_age_ms.
 */
struct shmwal_retention {
	uint64_t max_segments;	/* keep at most this many segment files, the current one too */
	uint64_t max_bytes;	/* keep at most this many bytes of segment files, ditto */
	uint64_t max_age_ms;	/* remove sealed segments last written longer ago than this */
	uint64_t rotate_age_ms; /* seal the current segment once its first record is this old,
				   even if it is not full (so that max_age_ms can act on it) */
};

/* The `part` of shmwal_retention_set()/get() that means "the WAL's default". */
#define SHMWAL_ALL_PARTITIONS UINT32_MAX

/*
 * Sets the retention policy of partition `part`, or the default of every partition without a
 * policy of its own (SHMWAL_ALL_PARTITIONS). r == NULL removes the partition's own policy
 * (it follows the default again), or the default. Stored in DIR/retention (a small text file,
 * replaced atomically and synced); takes effect in the running flusher within a second.
 * Errors: -EINVAL bad partition; -ENOENT no WAL; -EBADMSG DIR/retention is damaged (it is
 * not overwritten: remove it to start over); -EACCES, -EIO.
 */
int shmwal_retention_set(const char *dir, uint32_t part, const struct shmwal_retention *r);

/*
 * The policy in force for partition `part` (its own, else the default), or the default
 * (SHMWAL_ALL_PARTITIONS). All zero when none is set. Errors as shmwal_retention_set().
 */
int shmwal_retention_get(const char *dir, uint32_t part, struct shmwal_retention *out);

/* ---- checking and repairing the files ------------------------------------------------ */

/*
 * Damage is a place where the log cannot be read on: a segment file that cannot be read, a
 * bad or foreign header, a gap or an overlap between segments, a sealed segment of the wrong
 * size (pmem), an invalid frame (length, own LSN, checksum) or non-zero bytes past a pmem
 * segment's frames. In the last segment, an invalid frame is a torn tail instead: what a
 * crash leaves of writes that were never synced (nothing durable lies there), and a flusher
 * cuts it at start; likewise a last segment whose header is torn and that holds no frames,
 * and (pmem) a last segment of the wrong size or with non-zero bytes past its frames.
 */
enum shmwal_finding_kind {
	SHMWAL_FINDING_DAMAGE = 1,    /* readers stop here with -EBADMSG; the flusher may refuse */
	SHMWAL_FINDING_TORN_TAIL = 2, /* the last segment's torn end: not damage */
	SHMWAL_FINDING_NOTE = 3,      /* a file in a partition directory that is not a segment */
};

struct shmwal_finding {
	enum shmwal_finding_kind kind;
	uint32_t partition;
	const char *path; /* the file: DIR/pNNN/<first LSN>.seg */
	uint64_t offset;  /* byte offset in that file (0: the header or the whole file) */
	uint64_t lsn;	  /* the LSN at that offset (a segment's first LSN for offset 0) */
	const char *what; /* a sentence saying what is wrong there */
};

/* Callbacks of shmwal_verify() and shmwal_repair(); every member may be NULL. They are called
 * from the calling thread, before the call returns; the pointers they get are valid during the
 * callback only. */
struct shmwal_check_options {
	/* verify: every finding, in LSN order. repair with SHMWAL_REPAIR_AUTO: the damage it cuts
	 * at, or without damage the last segment's torn-tail findings. */
	void (*report)(void *ctx, const struct shmwal_finding *f);
	/* Now and then during a scan (at least every 4 MiB and after each segment): bytes of
	 * segment files scanned so far in this partition, and their total. */
	void (*progress)(void *ctx, uint32_t part, uint64_t done, uint64_t total);
	/* repair: one line per change to the files (a copy written, a file moved, a cut). */
	void (*log)(void *ctx, enum shmwal_log_level level, const char *msg);
	void *ctx;
};

/* What shmwal_verify() found in one partition. */
struct shmwal_verify_stat {
	uint32_t segments;
	uint64_t records;   /* records (committed frames) checked */
	uint64_t bytes;	    /* bytes of valid frames (records, pads, aborted claims) */
	uint64_t first_lsn; /* the oldest segment's first LSN */
	uint64_t end_lsn;   /* where the last segment's valid frames end */
	uint32_t damage;    /* findings of kind SHMWAL_FINDING_DAMAGE */
	uint32_t torn;	    /* findings of kind SHMWAL_FINDING_TORN_TAIL */
	/* With damage: the log can be read up to here, and shmwal_repair(SHMWAL_REPAIR_AUTO)
	 * cuts it here. Otherwise equal to end_lsn. */
	uint64_t intact_lsn;
};

/*
 * Checks every segment file of partition `part`: headers (magic, version, checksum, partition,
 * first LSN, WAL instance), sizes, the LSN sequence across segments, and every frame's length,
 * own LSN and checksum. Reads the files only (read-only mappings), so it may run while a
 * flusher writes; a segment rotated or removed during the scan can then show as damage, so
 * verify a stopped log to be sure. Reads every byte: time grows with the log's length.
 * Returns the number of damage findings (0: the partition is intact; a torn tail is not
 * damage) with *st filled (st may be NULL). Errors: -EINVAL bad partition or NULL dir;
 * -ENOENT no WAL; -EBADMSG damaged metadata; -ENOMEM; -errno when the partition's directory
 * cannot be read. A file that cannot be read is a finding, not an error. Thread-safe.
 */
int shmwal_verify(const char *dir, uint32_t part, const struct shmwal_check_options *o,
		  struct shmwal_verify_stat *st);

/* shmwal_repair()'s cut_lsn: cut at the partition's first damage (or torn tail), as found by
 * the scan shmwal_verify() makes. */
#define SHMWAL_REPAIR_AUTO UINT64_MAX

struct shmwal_repair_result {
	uint64_t end_lsn;      /* the partition's log ends here now; new records go on from it */
	uint64_t old_end_lsn;  /* ... and ended here before (where its last valid frame ended) */
	uint32_t files_moved;  /* whole segment files moved to DIR/quarantine */
	uint64_t bytes_copied; /* bytes of the cut segment copied there before it was cut */
};

/*
 * Cuts partition `part`'s log at cut_lsn, which becomes its end: records from cut_lsn on are
 * moved aside to DIR/quarantine, never deleted, and the flusher goes on from cut_lsn (their
 * LSNs are used again by new records: a repair is an operator's decision to discard them).
 *   - cut_lsn = SHMWAL_REPAIR_AUTO: at the first damage shmwal_verify() reports (its
 *     intact_lsn; for damage to a whole segment, such as its header, a gap before it or a
 *     pmem size, that is where the segment before it ends), or where a torn tail of the last
 *     segment begins when there is no damage (what a flusher would cut, or move aside, at
 *     start: its bytes are kept in the quarantine instead). That finding is passed to
 *     o->report. Nothing is done when there is neither.
 *   - any other cut_lsn: a frame boundary of the partition's log, at or after the oldest
 *     retained segment's first LSN and at most where the last segment's valid frames end.
 *     The frames of its segment before it must be valid; those of earlier segments are not
 *     checked (verify first).
 * The segment that holds cut_lsn is cut: the bytes from cut_lsn on are first copied to a file
 * of their own in DIR/quarantine (a segment header for first LSN cut_lsn, then those bytes as
 * they were; when nothing of the segment is kept, a copy of the whole file), then every later
 * segment is moved there, newest first, and then the segment is replaced, by rename, with a
 * copy of what is kept (its header and the frames before cut_lsn). Quarantined files are named
 * pNNN-<first LSN>.seg.<CLOCK_REALTIME ns>. Each copy is synced before anything refers to
 * it, each rename is followed by syncs of both directories: a crash or a power cut at any
 * point leaves the bytes in the partition's directory, in the quarantine or both, and a log
 * that a second repair, or a flusher, takes from there (a flusher that starts on a partition
 * whose damaged segment became the last one cuts the damage as a torn tail, the bytes past it
 * being in the quarantine already). Readers that have the cut segment open keep reading the
 * old file; records they read past cut_lsn are no longer in the log.
 * Needs a stopped log: it holds the flusher lock (DIR/lock) while it works, so a flusher
 * that starts meanwhile is refused as when another flusher runs, and it refuses while the
 * WAL's shared memory exists (a flusher that died or stopped with producers attached: its
 * rings may hold records that are not in the files yet). Blocks on file I/O.
 * Returns the number of files written to DIR/quarantine (0: nothing was cut) with *res filled
 * (res may be NULL). Errors: -EINVAL bad partition, NULL dir, or cut_lsn is not a frame
 * boundary or lies past the end of the log; -ERANGE cut_lsn lies below the oldest retained
 * segment; -EBADMSG damage before cut_lsn in its segment, or damaged metadata; -EBUSY a
 * flusher runs or the shared memory exists; -ENOENT no WAL; -ENOSPC, -EIO, -EACCES.
 */
int shmwal_repair(const char *dir, uint32_t part, uint64_t cut_lsn,
		  const struct shmwal_check_options *o, struct shmwal_repair_result *res);

/* ---- misc ------------------------------------------------------------------------------ */

/* A sentence about the last failed call in this thread (never NULL; "" if none). */
const char *shmwal_last_error(void);

/* CRC32C (Castagnoli) of buf, continuing from crc (start with 0). */
uint32_t shmwal_crc32c(uint32_t crc, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* SHMWAL_H */
