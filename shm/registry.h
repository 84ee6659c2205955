/* SPDX-License-Identifier: MIT */
/* registry.h - producer slots and claim lanes (private to shm/). */
#ifndef SHMWAL_REGISTRY_H
#define SHMWAL_REGISTRY_H

#include <stdint.h>

struct shm;

/* Takes a free slot for this process: locks its byte, CAS FREE -> LIVE. -EUSERS if none. */
int slot_acquire(struct shm *s, uint32_t *slot, uint64_t *gen);
/* Detaches: marks the slot DEAD for the flusher to reclaim, then drops the lock. */
void slot_release(struct shm *s, uint32_t slot, uint64_t gen);
/* Takes a free lane for a thread of `slot`, searching from `hint`. -EUSERS if none. */
int lane_acquire(struct shm *s, uint32_t slot, uint32_t hint, uint32_t *lane);
void lane_release(struct shm *s, uint32_t lane);

#endif
