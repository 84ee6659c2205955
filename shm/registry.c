/* SPDX-License-Identifier: MIT */
/*
 * registry.c - producer slots, claim lanes, and telling dead producers from live ones.
 *
 * A producer process holds one slot for as long as it is attached. Liveness is an OFD lock
 * (F_OFD_SETLK) on byte 1 + slot of DIR/lock: the kernel drops it when the last descriptor of
 * the open file description closes, i.e. when the process dies, however it dies. Unlike a pid
 * this survives pid reuse and pid namespaces, and unlike a robust mutex it needs no cleanup
 * in shared memory.
 *
 * A slot's word is generation << 8 | state (FREE, LIVE, DEAD):
 *   attach:   lock byte 1 + slot, then CAS FREE(g) -> LIVE(g + 1)
 *   close:    store-release DEAD(g) (the flusher reclaims it like a crashed one), then unlock
 *   flusher:  saw LIVE(g), then found the lock free: CAS LIVE(g) -> DEAD(g). The CAS fails if
 *             the slot was closed and taken again meanwhile, so it never condemns a newcomer.
 *   flusher:  a DEAD slot is reclaimed (lanes freed, store-release FREE(g)) only once every
 *             partition's written position has passed the tail it had when the death was
 *             seen: by then no frame or lane of the dead owner remains, so a slot number in a
 *             frame header always means its current owner. And only while its lock is free:
 *             the word is writable by every process that maps the object, the lock is not,
 *             so a held lock means a live owner whatever the word says (nor is a claim of a
 *             slot whose lock is held ever aborted).
 *
 * Lanes are per thread: a thread takes one (CAS owner 0 -> slot + 1) at its first append on a
 * handle and gives it back when it exits or the handle closes. See layout.h for the claim
 * protocol that runs on a lane.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "registry.h"
#include "shm_impl.h"

/* Slot i's lock is DIR/lock's byte 1 + i: clear of the flusher's byte and the others (meta.h). */
_Static_assert(LOCK_BYTE_FLUSHER < 1 && 1 + SHM_SLOTS <= LOCK_BYTE_RETENTION,
	       "DIR/lock's bytes do not overlap");

static int lock_byte(int fd, uint32_t slot, short type, int cmd)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = 1 + (off_t)slot;
	fl.l_len = 1;
	return fcntl(fd, cmd, &fl);
}

int slot_lock_free(struct shm *s, uint32_t slot)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = 1 + (off_t)slot;
	fl.l_len = 1;
	if (fcntl(s->lockfd, F_OFD_GETLK, &fl) < 0)
		return 0; /* cannot tell: assume alive (safe: we only wait) */
	return fl.l_type == F_UNLCK;
}

int slot_acquire(struct shm *s, uint32_t *slot_out, uint64_t *gen_out)
{
	uint32_t start = (uint32_t)getpid() % SHM_SLOTS, i;

	for (i = 0; i < SHM_SLOTS; i++) {
		uint32_t slot = (start + i) % SHM_SLOTS;
		struct shm_slot *sl = &s->slots[slot];
		uint64_t w = load_acquire(&sl->word); /* pairs: flusher's FREE store */

		if (SLOT_STATE(w) != SLOT_FREE)
			continue;
		if (lock_byte(s->lockfd, slot, F_WRLCK, F_OFD_SETLK) < 0)
			continue; /* another process is attaching here right now */
		if (!cas_acqrel(&sl->word, &w, SLOT_WORD(SLOT_GEN(w) + 1, SLOT_LIVE))) {
			lock_byte(s->lockfd, slot, F_UNLCK, F_OFD_SETLK);
			continue;
		}
		store_relaxed(&sl->pid, (uint32_t)getpid());
		store_relaxed(&sl->attach_ns, real_ns());
		*slot_out = slot;
		*gen_out = SLOT_GEN(w) + 1;
		return 0;
	}
	return seterr(-EUSERS, "all %u producer slots are taken (a flusher reclaims the slots "
			       "of dead producers; is one running?)",
		      SHM_SLOTS);
}

void slot_release(struct shm *s, uint32_t slot, uint64_t gen)
{
	uint64_t w = SLOT_WORD(gen, SLOT_LIVE);

	/* CAS, not a store: if the flusher already judged us dead (someone closed our lock
	 * descriptor), the slot may belong to a newcomer by now. Release: the flusher that
	 * reads DEAD with acquire sees every claim of ours. */
	cas_acqrel(&s->slots[slot].word, &w, SLOT_WORD(gen, SLOT_DEAD));
	lock_byte(s->lockfd, slot, F_UNLCK, F_OFD_SETLK);
}

int slot_is_dead(struct shm *s, uint32_t slot)
{
	struct shm_slot *sl;
	uint64_t w;

	if (slot >= SHM_SLOTS)
		return 1; /* a frame naming no slot (garbage or a pad) has no live owner */
	sl = &s->slots[slot];
	w = load_acquire(&sl->word);
	/* Not attached, says the word; but any process that maps the object can write it, and
	 * the lock is the kernel's: while it is held the owner lives (attaching, closing, or
	 * under an overwritten word), and a live owner's claim is never taken from it. */
	if (SLOT_STATE(w) != SLOT_LIVE)
		return slot_lock_free(s, slot);
	if (!slot_lock_free(s, slot))
		return 0;
	/* The owner of generation SLOT_GEN(w) is gone. */
	if (cas_acqrel(&sl->word, &w, SLOT_WORD(SLOT_GEN(w), SLOT_DEAD))) {
		if (s->log)
			s->log(s->log_ctx, SHMWAL_LOG_WARN,
			       "producer slot %u (pid %u) died without detaching", slot,
			       load_relaxed(&sl->pid));
		return 1;
	}
	return SLOT_STATE(w) != SLOT_LIVE;
}

int lane_acquire(struct shm *s, uint32_t slot, uint32_t hint, uint32_t *lane_out)
{
	uint32_t i;

	for (i = 0; i < SHM_LANES; i++) {
		uint32_t l = (hint + i) % SHM_LANES;
		struct shm_lane *ln = &s->lanes[l];
		uint32_t expect = 0;

		if (load_relaxed(&ln->owner) != 0)
			continue;
		if (cas_acqrel(&ln->owner, &expect, slot + 1)) {
			store_release(&ln->claim, 0);
			*lane_out = l;
			return 0;
		}
	}
	return seterr(-EUSERS, "all %u producer lanes are taken (one per appending thread)",
		      SHM_LANES);
}

void lane_release(struct shm *s, uint32_t lane)
{
	store_release(&s->lanes[lane].owner, 0); /* pairs: lane_acquire's CAS */
}

unsigned shm_live_producers(struct shm *s)
{
	unsigned n = 0, i;

	fence_seq(); /* pairs: shmwal_open's fence between its slot CAS and its stop check */
	for (i = 0; i < SHM_SLOTS; i++)
		n += SLOT_STATE(load_relaxed(&s->slots[i].word)) == SLOT_LIVE;
	return n;
}

unsigned shm_registry_poll(struct shm *s)
{
	uint32_t i, p, nparts = s->meta.cfg.partitions;
	unsigned waiting = 0;

	for (i = 0; i < SHM_SLOTS; i++) {
		struct shm_slot *sl = &s->slots[i];
		struct shm_dead *d = &s->dead[i];
		uint64_t w = load_acquire(&sl->word); /* pairs: close's release / attach's CAS */
		int passed = 1;

		if (SLOT_STATE(w) == SLOT_LIVE) {
			if (!slot_is_dead(s, i))
				continue;
			w = load_acquire(&sl->word);
		}
		if (SLOT_STATE(w) != SLOT_DEAD)
			continue;
		if (!d->pending) {
			/* Every claim of the dead owner is below the tails we read now. */
			for (p = 0; p < nparts; p++)
				d->fence[p] = load_acquire(&s->parts[p].tail); /* pairs: fetch-adds */
			d->pending = 1;
			waiting++;
			continue;
		}
		for (p = 0; p < nparts && passed; p++)
			passed = s->f_written[p] >= d->fence[p];
		/* A held lock means a live owner whatever the word says (see slot_is_dead): a
		 * closing one unlocks right after its DEAD store; one whose word was overwritten
		 * keeps its lanes until it is really gone. */
		if (!passed || !slot_lock_free(s, i)) {
			waiting++;
			continue;
		}
		for (p = 0; p < SHM_LANES; p++) {
			struct shm_lane *ln = &s->lanes[p];

			if (load_acquire(&ln->owner) == i + 1) {
				store_relaxed(&ln->claim, 0);
				store_release(&ln->owner, 0);
			}
		}
		d->pending = 0;
		store_release(&sl->word, SLOT_WORD(SLOT_GEN(w), SLOT_FREE)); /* pairs: attach */
	}
	return waiting;
}
