/* SPDX-License-Identifier: MIT */
/*
 * campaign.h - what the parts of the crash campaign (stress/crash_campaign.c) share: the
 * options, the control block the driver shares with its producer and flusher children
 * (MAP_SHARED), the points a flusher can be parked at, and the side files in which producers
 * note what they were told was durable.
 *
 * Side files: ROOT/acks/<producer id>, one per producer process, written with O_APPEND in
 * whole 64-byte entries (64 divides the page size, so a SIGKILL can tear a write only at an
 * entry boundary: a kill loses at most the entries not yet written, and acks stay a lower
 * bound). An ACK entry is written after shmwal_wait_durable() said the record is durable;
 * an ABORT entry after shmwal_abort() gave a claim up on purpose.
 */
#ifndef SHMWAL_STRESS_CAMPAIGN_H
#define SHMWAL_STRESS_CAMPAIGN_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "shmwal.h"

#define MAX_PARTS 16
#define MAX_THREADS 16
#define MAX_LIVE 64
#define POISON_THREAD 0x10000u /* stamps of claims given up on purpose */

enum campaign { C_PRODUCERS, C_FLUSHER, C_BOTH };

struct campaign_options {
	int campaign; /* -1: all three in turn */
	unsigned seconds, kills, producers, threads, partitions, interval_ms, bound_ms;
	uint64_t ring_bytes, segment_bytes, seed;
	int sync; /* enum shmwal_sync, or -1: interval, always, none for the three campaigns */
	int backend; /* 0 file, 1 pmem (PMEM_IS_PMEM_FORCE=1), 2 pmem with the msync fallback */
	int require_coverage, keep, verbose;
	const char *check_only;
};

extern struct campaign_options opt; /* crash_campaign.c */

/* Where a flusher parks until it is killed (flusher.c). */
enum park {
	PARK_NONE,
	PARK_MID_WRITE,	  /* half of a batch written */
	PARK_ROTATE_SYNC, /* about to sync a full segment before rotating */
	PARK_SEG_CREATED, /* the next segment file exists, empty */
	PARK_HDR_WRITTEN, /* its header written, not synced */
	PARK_HDR_SYNCED,  /* its header synced, the directory not */
	PARK_DIR_SYNCED,  /* the directory synced; the segment not yet published */
	PARK_N
};
extern const char *const park_names[PARK_N];
#define IS_ROTATION(k) ((k) >= PARK_ROTATE_SYNC && (k) <= PARK_DIR_SYNCED)

/* Shared by the driver and its children (MAP_SHARED | MAP_ANONYMOUS, made before any fork). */
struct ctl {
	int stop_producers; /* the driver: 1 = finish, acknowledge everything, exit 0 */
	int park_at;	    /* the driver: the park point armed, or PARK_NONE */
	int parked;	    /* a flusher: the point it is parked at now */
	uint64_t appended, aborted, eagain; /* producers: counts for the figures */
};
extern struct ctl *ctl; /* crash_campaign.c */

#define SIDE_MAGIC 0x4b434153u /* "SACK" */
enum { SIDE_ACK = 1, SIDE_ABORT = 2 };

struct side_entry {
	uint32_t magic;
	uint16_t kind;
	uint16_t pad0;
	uint32_t producer;
	uint32_t thread;
	uint32_t part;
	uint32_t value_len;
	uint64_t seq;
	uint64_t lsn;
	uint8_t reserved[20];
	uint32_t crc; /* CRC32C of the bytes before it */
};
_Static_assert(sizeof(struct side_entry) == 64, "side entries are 64 bytes");

static inline void side_seal(struct side_entry *e)
{
	e->magic = SIDE_MAGIC;
	e->crc = shmwal_crc32c(0, e, offsetof(struct side_entry, crc));
}

static inline int side_ok(const struct side_entry *e)
{
	return e->magic == SIDE_MAGIC && (e->kind == SIDE_ACK || e->kind == SIDE_ABORT) &&
	       e->crc == shmwal_crc32c(0, e, offsetof(struct side_entry, crc));
}

static inline uint64_t mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * SHMWAL_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static inline void sleep_us(uint64_t us)
{
	struct timespec ts = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* producer.c: a producer process (threads in four roles); its exit status. */
int producer_main(const char *dir, const char *acks, uint32_t id);

/* flusher.c: forks a flusher of dir whose file operations may park (ctl->park_at), logging
 * to logpath. */
pid_t flusher_start(const char *dir, const char *logpath);

/* check.c: reads the side files and the whole log of ROOT/wal and checks them (see
 * crash_campaign.c); prints the figures about records. Returns the number of violations.
 * nprod: producer ids 0..nprod-1; clean[id]: that producer stopped cleanly. */
uint64_t check_all(const char *root, uint32_t nprod, const uint8_t *clean);

#endif
