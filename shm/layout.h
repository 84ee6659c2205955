/* SPDX-License-Identifier: MIT */
/*
 * layout.h - the shared-memory object of one WAL (private to shm/).
 *
 * One POSIX shm object per WAL, named "/shmwal.<instance id>", created by the flusher with
 * the mode from the configuration and sized with posix_fallocate (a full /dev/shm fails at
 * start, not with SIGBUS later). Everything in it is an offset from its start; no pointer ever
 * lives in shared memory. Layout, in order, every part page-aligned:
 *
 *   struct shm_header       one page: identity, configuration, flusher liveness
 *   struct shm_slot[256]    the producer registry: one slot per attached process
 *   struct shm_lane[1024]   claim lanes: one per producer thread that appends
 *   struct shm_part[P]      per-partition control blocks
 *   rings[P]                ring_bytes each; mapped twice back to back in every process
 *                           (a mirrored mapping), so a frame that wraps is still contiguous
 *
 * Synchronization table (W = who writes, R = who reads, with which ordering):
 *
 *   field                   W                              R
 *   hdr.state               flusher: CAS 0->INIT, store-   producers: load-acquire, pairs
 *                           release READY after init       with the READY store
 *   hdr.flusher_pid,        flusher: relaxed stores        stat, producers: relaxed loads
 *     heartbeat_ns                                         (informational)
 *   hdr.flusher_sleeping    flusher: seq_cst store 1 then  producers after a commit: relaxed
 *   hdr.flusher_seq         re-checks its work; 0 on wake  load (a miss costs one idle timeout);
 *                                                          waiters: fence then load. Seen 1:
 *                                                          CAS 1->0 (seq_cst); only the winner
 *                                                          bumps flusher_seq and wakes
 *   slot.word               producer: CAS FREE->LIVE(gen+1)flusher: load-acquire, CAS LIVE->
 *                           after locking its byte; close: DEAD after seeing its lock free;
 *                           store-release DEAD             store-release FREE when reclaimed
 *   lane.owner              producer thread: CAS 0->slot+1; flusher: load-acquire; store 0
 *                           store-release 0 at thread exit  when reclaiming a dead slot
 *   lane.seq, .part, .claim owner thread: see "claim        flusher: load-acquire seq, claim,
 *                           protocol" below (releases)      part, seq; a pair read while seq
 *                                                           moved is not trusted
 *   part.tail               producers: fetch_add (seq_cst), flusher: load-acquire (pairs with
 *                           or CAS in the try variants      the fetch_add: lanes are then seen)
 *   part.head               flusher: store-release after    producers: load-acquire before
 *                           zeroing drained ring bytes      writing into the ring
 *   part.head_seq/_waiters  flusher: fetch_add seq after    producers waiting for space:
 *                           head; wakes if waiters != 0;    waiters++ (seq_cst), futex_wait
 *                           also loads _waiters relaxed,
 *                           as a pacing hint (both pairs)
 *   part.written            flusher: store-release after    stat: load-acquire (nobody waits
 *                           the batch is in the file        for it: no wake-up)
 *   part.durable            flusher: store-release after    producers/readers: load-acquire,
 *                           the sync covering it            then read the files
 *   part.durable_seq/_w.    as head_seq, for durable        waiting readers (durable_waiters)
 *     producer_waiters      (wakes if either count != 0);   and producers (producer_waiters);
 *                           also loads producer_waiters     the flusher's hold for a group
 *                           relaxed, as a group-commit hint commit (flusher.c) counts them
 *   part.seg_first          flusher: store-release before   readers: load-acquire to learn a
 *                           the first frame of a new seg.   rotation happened
 *   hdr.clock               flusher: a seqlock writer       producers: seqlock readers
 *                           (common/tsclock.h)              (tsclock_now), stat
 *   hdr.wait_ns             waiters for written/durable/    flusher: relaxed load; recent:
 *                           ring space: relaxed store of    no pacing pause (flusher.c; so do
 *                           now, unless it is recent        waiters asleep, by the _waiters
 *                           already                         counts). A hint: a wrong value
 *                                                           costs pauses (<= 8 us) or skips
 *                                                           them
 *   part counters           flusher only: relaxed           stat: relaxed; sync_ns_last:
 *                                                           producers about to wait, relaxed
 *                                                           (a hint: how long to spin)
 *   part retention_*        the flusher's retention thread  stat: relaxed
 *                           only: relaxed
 *   part rate_*,            flusher only: relaxed, once     stat: relaxed
 *   hdr.rate_appends        per rate window (shm_rates)
 *   lane counters           owner thread only: relaxed      stat: relaxed
 *
 * Claim protocol (the producer's side; frames are defined in include/shmwal_format.h):
 *
 *   1. lane.seq++ (release: a flusher that sees it sees the previous claim's lane.claim = 0);
 *      lane.part = p (release); lane.claim = LANE_UNKNOWN (release)
 *   2. lsn = fetch_add(&part.tail, size)           -- the one atomic RMW; it releases step 1
 *   3. lane.claim = lsn | 1 (release)
 *   4. wait until lsn + size <= head + ring_bytes  (load-acquire head; spin, then futex;
 *      a head this handle saw before is enough when it covers the claim: producer.c)
 *   5. frame word = CLAIMED(len, slot) (relaxed)
 *   6. lane.claim = 0 (release: the flusher that reads 0 sees the word of step 5)
 *   7. write header fields, key, value, CRC
 *   8. frame word = COMMITTED(len, slot) (release: pairs with the flusher's load-acquire of
 *      the word, which then sees everything of step 7)
 *
 * Between steps 2 and 5 the frame's word is still 0 and only the lane says who owns it: a
 * lane shows LANE_UNKNOWN (steps 1-3) or the claimed LSN (steps 3-6). The flusher pads a zero
 * gap only when no live lane can own it (see consume.c); a live producer is never aborted, so
 * no producer ever writes into ring bytes that were recycled under it.
 */
#ifndef SHMWAL_SHM_LAYOUT_H
#define SHMWAL_SHM_LAYOUT_H

#include <stdint.h>

#include "atomics.h"
#include "common.h"
#include "shmwal.h"
#include "tsclock.h"

#define SHM_MAGIC 0x314c41574d485301ull /* "\1SHMWAL1" */
#define SHM_LAYOUT_VERSION 6u
#define SHM_SLOTS 256u
#define SHM_LANES 1024u
#define SHM_PAGE 4096u

enum shm_state { SHM_STATE_EMPTY = 0, SHM_STATE_INIT = 1, SHM_STATE_READY = 2 };

/* slot.word: generation << 8 | state. The generation changes at every attach, so a flusher
 * that saw LIVE(gen) and then found the lock free can only mark *that* attachment dead. */
enum slot_state { SLOT_FREE = 0, SLOT_LIVE = 1, SLOT_DEAD = 2 };
#define SLOT_WORD(gen, st) ((uint64_t)(gen) << 8 | (uint64_t)(st))
#define SLOT_STATE(w) ((unsigned)((w)&0xff))
#define SLOT_GEN(w) ((w) >> 8)

#define LANE_UNKNOWN UINT64_MAX /* fetch-adding: the claim's LSN is not known yet */

struct shm_header {
	uint64_t magic;		/* written before READY, constant after */
	uint32_t layout_version;
	uint32_t page_bytes;
	uint64_t signature;	/* layout_signature(): struct sizes, offsets, cache line */
	uint64_t instance;	/* equals DIR/meta's instance */
	uint64_t total_bytes;	/* size of the object */
	uint64_t off_slots, off_lanes, off_parts, off_rings;
	struct shmwal_config cfg; /* copy of DIR/meta's configuration */
	uint64_t created_ns;
	shmwal_atomic32 state;	/* enum shm_state; see the table above */
	uint32_t pad0;
	char pad1[CACHE_LINE * 4 - 16];
	/* flusher liveness: its own line */
	_Alignas(CACHE_LINE) shmwal_atomic32 flusher_pid;
	shmwal_atomic32 flusher_gen;	  /* flusher starts on this object */
	shmwal_atomic64 heartbeat_ns;	  /* CLOCK_MONOTONIC, each loop */
	shmwal_atomic64 flusher_start_ns; /* CLOCK_REALTIME */
	shmwal_atomic64 rate_appends;	  /* appends/s of all lanes, over the last rate window */
	shmwal_atomic32 persistence;	  /* enum shmwal_persistence: the flusher stores it (relaxed)
					     once its segments are mapped, NONE at start and stop;
					     stat loads it (relaxed). Informational: no ordering */
	/* read by every append: its own line, away from the heartbeat the flusher stores on
	 * every loop (sharing that line cost each append a cache miss while the flusher ran) */
	_Alignas(CACHE_LINE) shmwal_atomic32 stop; /* 1: the flusher is stopping; appends fail
						      -ESHUTDOWN */
	/* the flusher's idle sleep: its own line, read by every producer after a commit */
	_Alignas(CACHE_LINE) shmwal_atomic32 flusher_sleeping;
	shmwal_atomic32 flusher_seq;	  /* futex word the idle flusher sleeps on */
	/* the records' timestamps (common/tsclock.h): its own line, read by every append,
	 * rewritten by the flusher at most once a second */
	_Alignas(CACHE_LINE) struct tsclock clock;
	/* CLOCK_MONOTONIC of the latest "someone waits for written/durable/space" (wait.c): its own
	 * line, polled by the pacing flusher, stored by waiters at most every 50 us */
	_Alignas(CACHE_LINE) shmwal_atomic64 wait_ns;
};

struct shm_slot {
	shmwal_atomic64 word;	  /* SLOT_WORD(gen, state) */
	shmwal_atomic32 pid;	  /* informational (stat); never used to judge liveness */
	uint32_t pad0;
	shmwal_atomic64 attach_ns;
	char pad[CACHE_LINE - 24];
};

struct shm_lane {
	shmwal_atomic32 owner;	  /* slot + 1, 0 = free */
	shmwal_atomic32 part;	  /* partition of the claim in progress */
	shmwal_atomic64 claim;	  /* 0 idle, LANE_UNKNOWN, or lsn | 1 */
	shmwal_atomic64 appends;  /* owner thread only: records appended through this lane */
	shmwal_atomic64 full_waits; /* owner thread only: appends that waited for ring space */
	shmwal_atomic32 seq;	  /* owner: +1 (release) as each claim starts; the flusher reads
				     seq, claim, part, seq and trusts the pair only if seq held */
	char pad[CACHE_LINE - 36];
};

#define FSYNC_HIST_BUCKETS SHMWAL_SYNC_HIST_BUCKETS /* bucket i: < 2^i us (last: the rest) */

struct shm_part {
	/* producers' line */
	_Alignas(CACHE_LINE) shmwal_atomic64 tail;
	/* space: the flusher writes, producers read before every write into the ring */
	_Alignas(CACHE_LINE) shmwal_atomic64 head;
	shmwal_atomic32 head_seq;
	shmwal_atomic32 head_waiters;
	/* progress: the flusher writes, waiters and readers read */
	_Alignas(CACHE_LINE) shmwal_atomic64 written;
	shmwal_atomic64 durable;
	shmwal_atomic32 durable_seq;
	shmwal_atomic32 durable_waiters; /* readers asleep waiting for durable */
	shmwal_atomic64 seg_first;
	shmwal_atomic32 producer_waiters; /* producers asleep in shmwal_wait_durable */
	/* counters: flusher only */
	_Alignas(CACHE_LINE) shmwal_atomic64 records;
	shmwal_atomic64 records_durable; /* records at the last durable publication */
	shmwal_atomic64 bytes;
	shmwal_atomic64 batches;
	shmwal_atomic64 syncs;
	shmwal_atomic64 aborted_claims;
	shmwal_atomic64 padded_gaps;
	shmwal_atomic64 stalls;
	shmwal_atomic64 sync_ns_total;
	shmwal_atomic64 sync_ns_last; /* how long the last sync took: producers' spin hint */
	shmwal_atomic64 fsync_hist[FSYNC_HIST_BUCKETS];
	/* the flusher's retention thread only (persist/retention.c) */
	shmwal_atomic64 retention_segments; /* segments it removed */
	shmwal_atomic64 retention_bytes;    /* ... and their bytes */
	/* rates over the flusher's last RATE_WINDOW_NS (shm_rates): flusher only */
	shmwal_atomic64 rate_append_bytes; /* tail's advance, bytes/s */
	shmwal_atomic64 rate_records;	   /* records written, /s */
	shmwal_atomic64 rate_bytes;	   /* bytes written, /s */
};

_Static_assert(sizeof(struct shm_header) <= SHM_PAGE, "header fits one page");
_Static_assert(sizeof(struct shm_slot) == CACHE_LINE, "slot is one line");
_Static_assert(sizeof(struct shm_lane) == CACHE_LINE, "lane is one line");
_Static_assert(sizeof(struct shm_part) % CACHE_LINE == 0, "part control block is whole lines");
_Static_assert(offsetof(struct shm_part, head) - offsetof(struct shm_part, tail) >= CACHE_LINE,
	       "tail and head on different lines");
_Static_assert(offsetof(struct shm_header, flusher_sleeping) % CACHE_LINE == 0,
	       "flusher_sleeping on its own line");
_Static_assert(offsetof(struct shm_header, wait_ns) % CACHE_LINE == 0 &&
		       offsetof(struct shm_header, wait_ns) - offsetof(struct shm_header, clock) >=
			       sizeof(struct tsclock),
	       "wait_ns on its own line");
_Static_assert(offsetof(struct shm_header, stop) / CACHE_LINE !=
		       offsetof(struct shm_header, heartbeat_ns) / CACHE_LINE,
	       "stop and the heartbeat on different lines");

#endif
