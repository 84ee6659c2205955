/* SPDX-License-Identifier: MIT */
/*
 * wait.c - waiting for progress: spin a bounded time, then sleep on a 32-bit futex word.
 *
 * Futex words live in shared memory and are waited on by several processes, so the calls are
 * plain FUTEX_WAIT/FUTEX_WAKE: FUTEX_PRIVATE_FLAG would key the wait by this process's address
 * space and silently never wake anyone in another process.
 *
 * The handshake with the publisher is the classic one. Waiter: waiters++ (seq_cst); read seq;
 * re-check the condition; futex_wait(seq). Publisher: store the position (release); seq++
 * (seq_cst); if waiters != 0, wake. Either the waiter sees the new position, or the publisher
 * sees the waiter and the futex sees the changed seq; a wake is never lost, and the publisher
 * makes no system call when nobody waits.
 */
#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shm_impl.h"

#define MAX_SLEEP_NS 200000000ull /* re-check at least this often, whatever the timeout */
#define WAIT_RENEW_NS 50000ull	  /* a waiter renews hdr.wait_ns when it is this old */

void futex_wake_all(shmwal_atomic32 *w)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

int futex_wait32(shmwal_atomic32 *w, uint32_t val, uint64_t timeout_ns)
{
	struct timespec ts = { .tv_sec = (time_t)(timeout_ns / 1000000000ull),
			       .tv_nsec = (long)(timeout_ns % 1000000000ull) };

	if (syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val, &ts, NULL, 0) < 0)
		return -errno;
	return 0;
}

/*
 * Waits until *word >= target. `seq` and `waiters` are the futex pair the publisher of
 * `word` bumps and checks. Returns 0 or -ETIMEDOUT.
 */
int wait_word_ge(shmwal_atomic64 *word, uint64_t target, shmwal_atomic32 *seq,
		 shmwal_atomic32 *waiters, uint64_t spin_ns, uint64_t timeout_ns)
{
	uint64_t start, deadline, now;

	if (load_acquire(word) >= target) /* pairs: the publisher's store-release */
		return 0;
	if (timeout_ns == 0)
		return -ETIMEDOUT;
	start = mono_ns();
	deadline = timeout_ns > UINT64_MAX - start ? UINT64_MAX : start + timeout_ns;
	do {
		for (int i = 0; i < 64; i++) {
			if (load_acquire(word) >= target)
				return 0;
			cpu_relax();
		}
		now = mono_ns();
	} while (now - start < spin_ns && now < deadline);

	for (;;) {
		uint32_t s;
		uint64_t left;

		fetch_add_seq(waiters, 1);
		s = load_seq(seq);
		if (load_seq(word) >= target) {
			fetch_sub_seq(waiters, 1);
			return 0;
		}
		now = mono_ns();
		if (now >= deadline) {
			fetch_sub_seq(waiters, 1);
			return -ETIMEDOUT;
		}
		left = deadline - now;
		futex_wait32(seq, s, left < MAX_SLEEP_NS ? left : MAX_SLEEP_NS);
		fetch_sub_seq(waiters, 1);
		if (load_acquire(word) >= target)
			return 0;
	}
}

/* Publisher's half: after storing the new position. */
void wake_waiters(shmwal_atomic32 *seq, shmwal_atomic32 *waiters)
{
	fetch_add_seq(seq, 1);
	if (load_seq(waiters))
		futex_wake_all(seq);
}

/* The same for durable, whose waiters are counted in two words (readers, producers). */
static void wake_durable(struct shm_part *cp)
{
	fetch_add_seq(&cp->durable_seq, 1);
	if (load_seq(&cp->durable_waiters) || load_seq(&cp->producer_waiters))
		futex_wake_all(&cp->durable_seq);
}

/* Someone is about to wait for the flusher: it stops pacing (shm_anyone_waiting). Stored only
 * when the word is stale, so a producer that waits for every record does not take the line
 * from the flusher at every append. CLOCK_MONOTONIC: processes in another time namespace than
 * the flusher's store values it reads as stale; they then pay pauses while they spin (never
 * once asleep: the waiter counts cover that). */
void shm_announce_wait(struct shm *s)
{
	uint64_t now = mono_ns();
	int64_t age = (int64_t)(now - load_relaxed(&s->hdr->wait_ns));

	if (age >= (int64_t)WAIT_RENEW_NS || age <= -(int64_t)WAIT_RENEW_NS)
		store_relaxed(&s->hdr->wait_ns, now);
}

int shm_wait_durable(struct shm *s, uint32_t p, uint64_t lsn, int producer, uint64_t timeout_ns)
{
	struct shm_part *cp = &s->parts[p];
	shmwal_atomic64 *word = &cp->durable;
	uint64_t spin_ns = SPIN_NS;

	/* A record at lsn is durable once the position passes lsn (positions sit on frame
	 * boundaries, so "> lsn" means the whole frame is in). */
	if (load_acquire(word) <= lsn && timeout_ns) /* pairs: the flusher's store-release */
		shm_announce_wait(s);
	/* A producer spins only when the sync it waits for is short: spinning through a sync of
	 * hundreds of microseconds ends in a sleep all the same, and takes the CPU from the
	 * producers the flusher holds the next sync for (flusher.c, "Group commit"). */
	if (producer && load_relaxed(&s->parts[p].sync_ns_last) > SPIN_LONG_SYNC_NS)
		spin_ns = 0;
	return wait_word_ge(word, lsn + 1, &cp->durable_seq,
			    producer ? &cp->producer_waiters : &cp->durable_waiters, spin_ns,
			    timeout_ns);
}

int shm_wait_recent(uint64_t wait_ns, uint64_t now)
{
	/* Signed: a waiter may have read the clock after the flusher's `now`. A value far from
	 * now either way (written by something else) reads as "nobody", and the next waiter
	 * overwrites it. */
	int64_t age = (int64_t)(now - wait_ns);

	return age < (int64_t)SHM_WAIT_HINT_NS && age > -(int64_t)SHM_WAIT_HINT_NS;
}

/* A wait announced lately (it spins first), or anyone asleep in a wait (the counters of the
 * futex handshake): a wait longer than SHM_WAIT_HINT_NS is asleep by then (SPIN_NS). */
int shm_anyone_waiting(const struct shm *s, uint64_t now)
{
	if (shm_wait_recent(load_relaxed(&s->hdr->wait_ns), now))
		return 1;
	for (uint32_t p = 0; p < s->meta.cfg.partitions; p++)
		if (load_relaxed(&s->parts[p].durable_waiters) ||
		    load_relaxed(&s->parts[p].producer_waiters) ||
		    load_relaxed(&s->parts[p].head_waiters))
			return 1;
	return 0;
}

uint64_t shm_wait_word(const struct shm *s) { return load_relaxed(&s->hdr->wait_ns); }

void shm_publish_durable(struct shm *s, uint32_t p, uint64_t lsn, uint64_t sync_ns)
{
	struct shm_part *cp = &s->parts[p];
	unsigned b = 0;
	uint64_t us = sync_ns / 1000;

	if (sync_ns) {
		while (b + 1 < FSYNC_HIST_BUCKETS && us >= (1ull << b))
			b++;
		fetch_add_relaxed(&cp->fsync_hist[b], 1);
		fetch_add_relaxed(&cp->syncs, 1);
		fetch_add_relaxed(&cp->sync_ns_total, sync_ns);
		store_relaxed(&cp->sync_ns_last, sync_ns);
	}
	/* No "already as far" check against the word: the flusher is its only writer and
	 * publishes in order, and a value scribbled past the truth (telling waiters their
	 * records are durable) must be overwritten at the next publication, not stand forever. */
	/* every record written so far is in what is published now (a sync covers all writes) */
	store_relaxed(&cp->records_durable, load_relaxed(&cp->records));
	store_release(&cp->durable, lsn); /* pairs: waiters' and readers' load-acquire */
	wake_durable(cp);
}

uint32_t shm_producers_waiting(const struct shm *s, uint32_t p)
{
	return load_relaxed(&s->parts[p].producer_waiters);
}

/*
 * Wakes the idle flusher. `fenced`: make sure (a full fence first); else best effort.
 * Whoever turns flusher_sleeping from 1 to 0 makes the one wake-up; everyone else sees 0 and
 * goes on. Without that, every commit in the tens of microseconds a wake-up takes here made a
 * futex syscall of its own (~400 ns each, measured: a burst after an idle moment crawled).
 * The winner bumps flusher_seq after the flusher loaded it (the flusher loads it before it
 * stores 1), so its futex_wait returns at once or is woken.
 */
void flusher_kick(struct shm *s, int fenced)
{
	struct shm_header *h = s->hdr;
	uint32_t one = 1;

	if (fenced)
		fence_seq(); /* pairs: the flusher's seq_cst store of flusher_sleeping */
	if (load_relaxed(&h->flusher_sleeping) && cas_seq(&h->flusher_sleeping, &one, 0)) {
		fetch_add_seq(&h->flusher_seq, 1);
		futex_wake_all(&h->flusher_seq);
	}
}

/* 1 when a frame at some partition's position is finished (committed, aborted, padded):
 * an open or stalled claim is not work, the timeout drives its probes. */
static int any_work(struct shm *s)
{
	for (uint32_t p = 0; p < s->meta.cfg.partitions; p++) {
		uint64_t pos = s->f_written[p];

		if (load_seq(&s->parts[p].tail) != pos) {
			uint64_t w = load_seq((shmwal_atomic64 *)ring_at(s, p, pos));

			if (w && (w >> 48 & 0xff) != 1 /* CLAIMED */)
				return 1;
		}
	}
	return 0;
}

void shm_flusher_idle(struct shm *s, uint64_t timeout_ns, int ignore_work)
{
	struct shm_header *h = s->hdr;
	uint32_t seq = load_seq(&h->flusher_seq);

	store_seq(&h->flusher_sleeping, 1); /* pairs: flusher_kick's fence and load */
	if (ignore_work || !any_work(s))
		futex_wait32(&h->flusher_seq, seq, timeout_ns); /* a signal (stop) ends it too */
	store_relaxed(&h->flusher_sleeping, 0);
}

void shm_heartbeat(struct shm *s)
{
	uint64_t now = mono_ns();

	store_relaxed(&s->hdr->heartbeat_ns, now);
	tsclock_tick(&s->hdr->clock, &s->clk, now);
}

void shm_set_stopping(struct shm *s, int on)
{
	store_seq(&s->hdr->stop, on ? 1u : 0u);
}

/* seq_cst: the stopping flusher's "drained up to tail" check pairs with the producers' stop
 * check after their fetch-add (producer.c). */
uint64_t shm_tail(const struct shm *s, uint32_t p) { return load_seq(&s->parts[p].tail); }
uint64_t shm_written(const struct shm *s, uint32_t p)
{
	return load_acquire(&s->parts[p].written);
}
uint64_t shm_durable(const struct shm *s, uint32_t p)
{
	return load_acquire(&s->parts[p].durable);
}
uint64_t shm_seg_first(const struct shm *s, uint32_t p)
{
	return load_acquire(&s->parts[p].seg_first);
}
void shm_set_seg_first(struct shm *s, uint32_t p, uint64_t lsn)
{
	store_release(&s->parts[p].seg_first, lsn); /* pairs: readers' load-acquire */
}
