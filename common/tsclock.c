/* SPDX-License-Identifier: MIT */
/* tsclock.c - calibrating the TSC line (tsclock.h says what and why). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsclock.h"

#if TSCLOCK_HAVE_TSC
#include <cpuid.h>

static uint64_t tsc_ordered(void)
{
	uint64_t t;

	_mm_lfence();
	t = __rdtsc();
	_mm_lfence();
	return t;
}

int tsclock_usable(const char **why)
{
	unsigned a, b, c, d;
	const char *env = getenv("SHMWAL_CLOCK");
	char src[64] = "";
	FILE *f;

	if (env && !strcmp(env, "realtime")) {
		*why = "SHMWAL_CLOCK=realtime";
		return 0;
	}
	if (!__get_cpuid(0x80000007, &a, &b, &c, &d) || !(d & (1u << 8))) {
		*why = "the TSC is not invariant";
		return 0;
	}
	f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "re");
	if (!f || !fgets(src, sizeof(src), f) || strcmp(src, "tsc\n") != 0) {
		if (f)
			fclose(f);
		*why = "the kernel's clocksource is not the TSC";
		return 0;
	}
	fclose(f);
	*why = NULL;
	return 1;
}

/*
 * A (TSC, CLOCK_REALTIME) pair: the clock_gettime is bracketed by two TSC reads and the pair
 * placed at the middle. A try that was preempted or interrupted has a wide bracket and would
 * put the pair off by up to half of it, so tries go on (at most 256, ~15 us) until one is
 * within twice the narrowest bracket seen so far (cal->narrowest); failing that, the narrowest.
 */
static void sample(uint64_t *narrowest, uint64_t *tsc, uint64_t *ns)
{
	uint64_t best = UINT64_MAX;

	for (int i = 0; i < 256; i++) {
		uint64_t a = tsc_ordered(), r = real_ns(), b = tsc_ordered();

		if (b - a < best) {
			best = b - a;
			*tsc = a + (b - a) / 2;
			*ns = r;
		}
		if (best < *narrowest)
			*narrowest = best;
		if (i >= 3 && best <= 2 * *narrowest)
			break;
	}
}
#else
int tsclock_usable(const char **why)
{
	*why = "not an x86-64 machine";
	return 0;
}

static void sample(uint64_t *narrowest, uint64_t *tsc, uint64_t *ns)
{
	(void)narrowest;
	*tsc = 0;
	*ns = real_ns();
}
#endif

void tsclock_fit(const struct tsclock_line *old, uint64_t tsc0, uint64_t ns0, uint64_t tsc1,
		 uint64_t ns1, uint64_t interval_ns, struct tsclock_line *out)
{
	/* the slope measured between the two samples (ns per tick, 32.32) */
	uint64_t dt = tsc1 > tsc0 ? tsc1 - tsc0 : 1, dn = ns1 > ns0 ? ns1 - ns0 : 0;
	uint64_t mult = (uint64_t)(((unsigned __int128)dn << 32) / dt);
	uint64_t at = old ? tsclock_eval(old, tsc1) : 0;
	int64_t err = (int64_t)(ns1 - at); /* how far the old line has drifted */
	uint64_t ticks;

	if (!mult)
		mult = 1;
	/* ticks in one interval at the measured slope */
	ticks = (uint64_t)(((unsigned __int128)(interval_ns ? interval_ns : 1) << 32) / mult);
	if (!ticks)
		ticks = 1;
	out->tsc0 = tsc1;
	if (at && err < (int64_t)TSCLOCK_STEP_NS && err > -(int64_t)TSCLOCK_STEP_NS) {
		/* slew: start where the old line is, meet CLOCK_REALTIME one interval later */
		__int128 m = (__int128)mult + (__int128)err * ((__int128)1 << 32) / (__int128)ticks;

		out->ns0 = at;
		out->mult = m > 0 ? (uint64_t)m : 1;
	} else {
		out->ns0 = ns1; /* no line yet, or it is too far off: step */
		out->mult = mult;
	}
	out->span = (uint64_t)(((unsigned __int128)TSCLOCK_SPAN_NS << 32) / out->mult);
}

void tsclock_publish(struct tsclock *c, const struct tsclock_line *l)
{
	uint32_t q = load_relaxed(&c->seq);

	/* Continue from whatever a previous flusher left, odd or even. */
	store_relaxed(&c->seq, q | 1);
	/* release: a reader that loads (acquire) any new field then sees seq odd or later */
	store_release(&c->tsc0, l->tsc0);
	store_release(&c->ns0, l->ns0);
	store_release(&c->mult, l->mult);
	store_release(&c->span, l->span);
	store_release(&c->seq, (q | 1) + 1); /* pairs: the readers' load-acquire of seq */
}

void tsclock_start(struct tsclock *c, struct tsclock_cal *cal, uint64_t mono_now)
{
	struct tsclock_line old;
	const char *why;
	uint64_t t0, n0;
	uint32_t q;

	memset(cal, 0, sizeof(*cal));
	cal->narrowest = UINT64_MAX;
	if (!tsclock_usable(&why)) {
		/* Withdraw a line an earlier flusher published: its TSC may not be ours. */
		if (load_relaxed(&c->seq))
			tsclock_publish(c, &(struct tsclock_line){ 0, 0, 1, 0 });
		return;
	}
	/* The first slope from a 200 us baseline (every flusher start pays it, and tests start
	 * thousands): about 100 ppm off at worst, slewed away at the first refinement 5 ms on. */
	sample(&cal->narrowest, &t0, &n0);
	while (real_ns() - n0 < 200000)
		;
	sample(&cal->narrowest, &cal->tsc, &cal->ns);
	/* An adopted object's line (a flusher that died): continue from it, so the producers
	 * still attached see no step. Nobody writes it now: we hold the flusher lock. */
	q = load_acquire(&c->seq);
	old.tsc0 = load_relaxed(&c->tsc0);
	old.ns0 = load_relaxed(&c->ns0);
	old.mult = load_relaxed(&c->mult);
	old.span = load_relaxed(&c->span);
	cal->interval_ns = 5000000;
	tsclock_fit(q && !(q & 1) ? &old : NULL, t0, n0, cal->tsc, cal->ns, cal->interval_ns,
		    &cal->line);
	tsclock_publish(c, &cal->line);
	cal->on = 1;
	cal->next_mono_ns = mono_now + cal->interval_ns;
}

void tsclock_tick(struct tsclock *c, struct tsclock_cal *cal, uint64_t mono_now)
{
	uint64_t tsc, ns;

	if (!cal->on || mono_now < cal->next_mono_ns)
		return;
	if (cal->interval_ns < TSCLOCK_MAX_INTERVAL_NS)
		cal->interval_ns *= 2;
	if (cal->interval_ns > TSCLOCK_MAX_INTERVAL_NS)
		cal->interval_ns = TSCLOCK_MAX_INTERVAL_NS;
	sample(&cal->narrowest, &tsc, &ns);
	tsclock_fit(&cal->line, cal->tsc, cal->ns, tsc, ns, cal->interval_ns, &cal->line);
	tsclock_publish(c, &cal->line);
	cal->tsc = tsc;
	cal->ns = ns;
	cal->next_mono_ns = mono_now + cal->interval_ns;
}
