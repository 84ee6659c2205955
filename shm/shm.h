/* SPDX-License-Identifier: MIT */
/*
 * shm.h - what the shm module offers the rest of shmwal: attaching to a WAL's shared memory,
 * the consumer side of the rings (used by the flusher in persist/), and waiting for progress.
 * The layout itself stays private to shm/ (layout.h).
 */
#ifndef SHMWAL_SHM_H
#define SHMWAL_SHM_H

#include <stdint.h>

#include "common.h"
#include "meta.h"
#include "shmwal.h"

struct shm;

typedef void (*shm_log_fn)(void *ctx, enum shmwal_log_level lvl, const char *fmt, ...)
	SHMWAL_PRINTF(3, 4);

/* shm_attach() flags. */
#define SHM_ATTACH_REGISTRY 1 /* also open DIR/lock, for producers (their slot locks live there) */
#define SHM_ATTACH_NO_RINGS 2 /* readers, stat: the control words only; no ring is mapped */

/* Maps an existing, READY shared-memory object of the WAL described by `m`.
 * -ENOENT no object (no flusher has run since boot), -EPROTO not ours or not initialized. */
int shm_attach(const struct meta *m, int flags, struct shm **out);
void shm_detach(struct shm *s);
/* 1 when this object was unlinked: its flusher stopped and removed it (a newer may exist). */
int shm_orphaned(struct shm *s);
/* 0 when the WAL has no shared memory object (one failing shm_open, no attach); else 1. */
int shm_exists(const struct meta *m);

/* ---- flusher side (one process holds the WAL's flusher lock) ---- */

/*
 * Creates the object (tail = head = written = durable = end_lsn[p]) or adopts one left by an
 * earlier flusher (*adopted = 1). Either way resume[p] is where the flusher goes on writing:
 * on adoption the published durable LSN, and the caller must cut its files back to it (the
 * ring still holds everything from there). -EPROTO when the object and the files disagree
 * (the files end before what was published durable).
 */
int shm_flusher_open(const struct meta *m, const uint64_t *end_lsn, shm_log_fn log,
		     void *log_ctx, struct shm **out, int *adopted, uint64_t *resume);
/* Unmaps; with `remove` also unlinks the object (clean stop with nothing left in the rings). */
void shm_flusher_close(struct shm *s, int remove);

/*
 * The batch of frames ready at the partition's `written` position: up to max_bytes (at least
 * one frame if one is ready), stopping after the first frame that reaches `room` bytes. Dead
 * producers' claims and gaps are repaired on the way (consume.c). Returns the batch length in
 * bytes (0: nothing ready) and points *data at it (contiguous: the ring is mirrored), or -EIO
 * when the ring holds garbage (the message says where; the flusher stops).
 */
int64_t shm_consume(struct shm *s, uint32_t p, uint64_t max_bytes, uint64_t room,
		    const void **data, uint32_t *records);
/* The batch up to `upto` is in the file: publish written. */
void shm_release(struct shm *s, uint32_t p, uint64_t upto);
/* The ring bytes below `upto` (<= written) are no longer needed: zero them and give them back
 * to producers (store head, wake space waiters). */
void shm_free(struct shm *s, uint32_t p, uint64_t upto);
/* Counts a batch in the partition's counters (for stat). */
void shm_count_batch(struct shm *s, uint32_t p, uint32_t records, uint64_t bytes);
/* The flusher's retention thread (its only writer) removed segments of partition p. */
void shm_count_retention(struct shm *s, uint32_t p, uint64_t segments, uint64_t bytes);
/* Everything below `lsn` is durable: publish and wake waiters. */
void shm_publish_durable(struct shm *s, uint32_t p, uint64_t lsn, uint64_t sync_ns);
void shm_set_seg_first(struct shm *s, uint32_t p, uint64_t lsn);
/* How this flusher makes bytes durable (enum shmwal_persistence), for stat. */
void shm_set_persistence(struct shm *s, unsigned kind);
/* Detects dead producers and reclaims their slots once their claims are past. Returns the
 * number of dead slots still waiting for that (poll again soon: the wait is this process's
 * state, lost if it dies). */
unsigned shm_registry_poll(struct shm *s);
/* Number of attached (live) producers. */
unsigned shm_live_producers(struct shm *s);
/* Updates the heartbeat, and refines the timestamp clock when due (tsclock.h). */
void shm_heartbeat(struct shm *s);
/* Flusher: publishes the append and write rates once a window (RATE_WINDOW_NS) has passed
 * since the last publication; cheap to call every loop. */
void shm_rates(struct shm *s, uint64_t now);
/* shmwal_stat's live part: the flusher lock and what the shared memory says (none: 0 with
 * shm_present 0). The caller zeroed *st. */
int shm_stat_live(const struct meta *m, struct shmwal_stat *st);
/* 1 when a producer or reader waits for written, durable or ring space (announced lately, or
 * asleep; a hint; `now` is mono_ns()), and the announcement word itself, which changes when a
 * new wait begins. shm_wait_recent: the judgement, "within SHM_WAIT_HINT_NS of now, either
 * way". */
#define SHM_WAIT_HINT_NS 200000ull
int shm_anyone_waiting(const struct shm *s, uint64_t now);
/* Says so before a wait for written, durable or ring space (wait.c, producer.c). */
void shm_announce_wait(struct shm *s);
int shm_wait_recent(uint64_t wait_ns, uint64_t now);
uint64_t shm_wait_word(const struct shm *s);
/* Sleeps until a producer commits, or timeout_ns passes. With ignore_work, sleeps even if a
 * committed frame waits (the flusher cannot write now: a full disk). */
void shm_flusher_idle(struct shm *s, uint64_t timeout_ns, int ignore_work);
/* Marks the WAL stopping: appends fail with -ESHUTDOWN from now on. */
void shm_set_stopping(struct shm *s, int on);

uint64_t shm_tail(const struct shm *s, uint32_t p);
uint64_t shm_written(const struct shm *s, uint32_t p);
uint64_t shm_durable(const struct shm *s, uint32_t p);
uint64_t shm_seg_first(const struct shm *s, uint32_t p);

/* Waits until durable passes lsn; `producer`: the caller appends (counted apart from readers,
 * for the flusher's group commit). 0 or -ETIMEDOUT. */
int shm_wait_durable(struct shm *s, uint32_t p, uint64_t lsn, int producer, uint64_t timeout_ns);
/* Producers asleep in a durable wait on partition p now (a hint: relaxed). */
uint32_t shm_producers_waiting(const struct shm *s, uint32_t p);

#endif
