/* SPDX-License-Identifier: MIT */
/*
 * tsclock.h - the records' wall-clock timestamps, read from the TSC.
 *
 * A frame's timestamp is CLOCK_REALTIME nanoseconds as its append begins. The vDSO's clock_gettime
 * costs about 23 ns here (it orders its TSC read with lfence/rdtscp, and checks its own
 * seqlock), a third of an append. So the flusher, which runs anyway, calibrates a straight
 * line from TSC ticks to CLOCK_REALTIME and publishes it in the shared memory; a producer
 * reads the TSC (not ordered: a few ns of skew are irrelevant for a timestamp) and evaluates
 * the line. Only where the kernel itself trusts the TSC: x86-64, an invariant TSC and
 * "tsc" as the current clocksource (so it is synchronized across CPUs, as the vDSO assumes).
 * Anywhere else, or with SHMWAL_CLOCK=realtime in the flusher's environment, nothing is
 * published and producers call clock_gettime(CLOCK_REALTIME).
 *
 * Calibration (flusher only): a sample is a TSC read bracketing a clock_gettime, the tightest
 * of a few tries (a preempted try has a wide bracket). The first line comes from two samples
 * 200 us apart and is published before the shared memory is READY, so producers never mix the
 * two clocks. It is refined 5 ms later, then at doubling intervals up to every second: the slope
 * is measured over the last interval, and the new line starts where the old one stood at the
 * sample (continuous, so one producer's timestamps never step back) and is aimed to meet
 * CLOCK_REALTIME one interval later (a slew). When the old line is off by more than 1 ms
 * (CLOCK_REALTIME was stepped, e.g. by NTP), it steps instead. Error against CLOCK_REALTIME:
 * within a few microseconds after the first second on this machine's class (measured by
 * test_clock, bounded there at 1 ms).
 *
 * Shared memory: the line is a seqlock (flusher writes, producers read). A line is good for
 * `span` ticks past tsc0 (10 s): a producer whose flusher died meanwhile, or whose TSC read is
 * before tsc0, takes clock_gettime instead. A reader that keeps seeing an odd or moving seq
 * (a flusher killed in the middle of a write) gives up after a few tries, the same way.
 */
#ifndef SHMWAL_TSCLOCK_H
#define SHMWAL_TSCLOCK_H

#include <stdint.h>

#include "atomics.h"
#include "common.h"

#if defined(__x86_64__)
#include <x86intrin.h>
#define TSCLOCK_HAVE_TSC 1
#else
#define TSCLOCK_HAVE_TSC 0
#endif

/*
 * In shared memory. seq: 0 never published; odd while the flusher rewrites the fields
 * (relaxed store odd, store-release of each field, store-release even); producers load-acquire
 * seq, load-acquire the fields, load seq again and use the fields only when the two seqs are
 * equal and even. No fences: atomics.h keeps them to the sleep handshakes (and gcc's TSan
 * does not support them). On x86 every one of these is a plain mov.
 */
struct tsclock {
	shmwal_atomic32 seq;
	uint32_t pad0;
	shmwal_atomic64 tsc0;	/* the line passes through (tsc0, ns0) */
	shmwal_atomic64 ns0;
	shmwal_atomic64 mult;	/* nanoseconds per tick, 32.32 fixed point */
	shmwal_atomic64 span;	/* usable up to tsc0 + span ticks */
};

struct tsclock_line {
	uint64_t tsc0, ns0, mult, span;
};

/* The calibrating side's own state (the flusher's, never shared). */
struct tsclock_cal {
	int on;			/* the TSC is usable and the line is published */
	uint64_t tsc, ns;	/* the previous sample */
	uint64_t interval_ns;	/* until the next sample */
	uint64_t next_mono_ns;	/* CLOCK_MONOTONIC of the next sample */
	uint64_t narrowest;	/* the narrowest sample bracket seen, in ticks */
	struct tsclock_line line;
};

#define TSCLOCK_SPAN_NS (10ull * 1000000000ull)
#define TSCLOCK_STEP_NS 1000000ull
#define TSCLOCK_MAX_INTERVAL_NS 1000000000ull

/* The line's value at `tsc`; 0 when the line does not cover it (before tsc0 or past span). */
static inline uint64_t tsclock_eval(const struct tsclock_line *l, uint64_t tsc)
{
	uint64_t d = tsc - l->tsc0; /* wraps to a huge value before tsc0 */

	if (d >= l->span)
		return 0;
	return l->ns0 + (uint64_t)(((unsigned __int128)d * l->mult) >> 32);
}

/* The published line's value now: 1 and *ns, or 0 when a producer must use clock_gettime. */
static inline int tsclock_read(const struct tsclock *c, uint64_t *ns)
{
#if TSCLOCK_HAVE_TSC
	for (int tries = 0; tries < 4; tries++) {
		uint32_t q = load_acquire(&c->seq); /* pairs: the flusher's store-release of seq */
		struct tsclock_line l;

		if (q == 0)
			break;
		/* acquire: the second load of seq stays after them; a field the writer stored
		 * (release, after its odd seq) makes that load see the odd seq or later */
		l.tsc0 = load_acquire(&c->tsc0);
		l.ns0 = load_acquire(&c->ns0);
		l.mult = load_acquire(&c->mult);
		l.span = load_acquire(&c->span);
		if ((q & 1) || load_relaxed(&c->seq) != q)
			continue;
		*ns = tsclock_eval(&l, __rdtsc());
		return *ns != 0;
	}
#else
	(void)c;
	(void)ns;
#endif
	return 0;
}

/* Wall-clock nanoseconds for a producer: the published line, or clock_gettime. */
static inline uint64_t tsclock_now(const struct tsclock *c)
{
	uint64_t ns;

	if (likely(tsclock_read(c, &ns)))
		return ns;
	return real_ns();
}

/* Whether this machine's TSC may be used (see above); the reason when not. */
int tsclock_usable(const char **why);
/* The next line from the published one (if `old`) and two samples: the slew or step above. */
void tsclock_fit(const struct tsclock_line *old, uint64_t tsc0, uint64_t ns0, uint64_t tsc1,
		 uint64_t ns1, uint64_t interval_ns, struct tsclock_line *out);
/* Flusher: calibrates and publishes the first line (takes 0.2 ms); continues from the one
 * already published when the shared memory is adopted. No-op when the TSC is not usable. */
void tsclock_start(struct tsclock *c, struct tsclock_cal *cal, uint64_t mono_now);
/* Flusher, every loop: refines the line when due. */
void tsclock_tick(struct tsclock *c, struct tsclock_cal *cal, uint64_t mono_now);
/* Rewrites the shared line (seqlock writer). */
void tsclock_publish(struct tsclock *c, const struct tsclock_line *l);

#endif
