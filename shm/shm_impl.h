/* SPDX-License-Identifier: MIT */
/* shm_impl.h - the process-local view of a mapped WAL (private to shm/). */
#ifndef SHMWAL_SHM_IMPL_H
#define SHMWAL_SHM_IMPL_H

#include "layout.h"
#include "meta.h"
#include "shm.h"

struct shm_dead {		/* flusher-private: a dead slot being drained */
	int pending;
	uint64_t fence[SHMWAL_MAX_PARTITIONS]; /* tail of each partition when seen dead */
};

struct shm_stuck {		/* flusher-private: what holds a partition up */
	uint64_t lsn;		/* position it was seen at */
	uint64_t since_ns;
	uint64_t next_probe_ns;
	uint64_t next_log_ns;
};

struct shm {
	struct meta meta;
	int fd;
	int lockfd;		/* DIR/lock (registry probes) */
	uint8_t *base;		/* header .. control blocks */
	size_t base_len;
	uint8_t *rings[SHMWAL_MAX_PARTITIONS]; /* each mapped twice: 2 * ring_bytes of VA; NULL
						  when attached with SHM_ATTACH_NO_RINGS
						  (readers, stat: no ring_at on those) */
	struct shm_header *hdr;
	struct shm_slot *slots;
	struct shm_lane *lanes;
	struct shm_part *parts;
	uint64_t ring_mask;
	uint64_t max_frame;
	/* flusher only */
	shm_log_fn log;
	void *log_ctx;
	struct shm_dead *dead;	 /* [SHM_SLOTS] */
	uint64_t f_written[SHMWAL_MAX_PARTITIONS]; /* the flusher's own copies of written and */
	uint64_t f_head[SHMWAL_MAX_PARTITIONS];	   /* head: only stored to shm, never loaded */
	struct shm_stuck stuck[SHMWAL_MAX_PARTITIONS];
	struct tsclock_cal clk;	 /* calibrating hdr->clock */
	struct {		 /* shm_rates: the counters at the start of the window */
		uint64_t t_ns, appends;
		uint64_t tail[SHMWAL_MAX_PARTITIONS], records[SHMWAL_MAX_PARTITIONS],
		    bytes[SHMWAL_MAX_PARTITIONS];
	} rate0;
};

struct shm_geometry {
	uint64_t off_slots, off_lanes, off_parts, off_rings, total;
};

void shm_geometry(const struct shmwal_config *cfg, struct shm_geometry *g);
uint64_t shm_layout_signature(void);
/* rings: also map (and prefault) the rings; readers and stat do without */
int shm_map(struct shm *s, int fd, const struct shm_geometry *g, int rings);
void shm_unmap(struct shm *s);
/* fork() child: drop the inherited descriptor of DIR/lock (the parent keeps its locks). */
void shm_forget_lock(struct shm *s);
void futex_wake_all(shmwal_atomic32 *w);
int futex_wait32(shmwal_atomic32 *w, uint32_t val, uint64_t timeout_ns);
/* 1 when the slot's OFD lock is free (its process is gone). */
int slot_lock_free(struct shm *s, uint32_t slot);
/* Judges the slot behind a lane or frame: 1 dead (or free), 0 live. Marks it DEAD. */
int slot_is_dead(struct shm *s, uint32_t slot);

static inline uint8_t *ring_at(const struct shm *s, uint32_t p, uint64_t lsn)
{
	return s->rings[p] + (lsn & s->ring_mask);
}

#define SPIN_NS		  20000ull /* spin this long before sleeping (a futex wake-up costs more) */
#define SPIN_LONG_SYNC_NS 100000ull /* durable waits: no spin when the last sync took longer */

/* Waits until *word >= target: spins up to spin_ns, then sleeps on the futex pair `seq` /
 * `waiters` (wait.c). 0 or -ETIMEDOUT. */
int wait_word_ge(shmwal_atomic64 *word, uint64_t target, shmwal_atomic32 *seq,
		 shmwal_atomic32 *waiters, uint64_t spin_ns, uint64_t timeout_ns);
void wake_waiters(shmwal_atomic32 *seq, shmwal_atomic32 *waiters);
void flusher_kick(struct shm *s, int fenced);
#endif
