/* SPDX-License-Identifier: MIT */
/*
 * crash_campaign.c - crash campaigns: producers and the flusher SIGKILLed at random and at
 * chosen moments, many times per run, restarted, and the whole log checked afterwards.
 *
 *   crash_campaign [--campaign producers|flusher|both|all] [--seconds S] [--kills N]
 *                  [--producers N] [--threads N] [--partitions N] [--ring-bytes B]
 *                  [--segment-bytes B] [--sync none|interval|always] [--seed N]
 *                  [--backend file|pmem|pmem-msync]
 *                  [--interval-ms MS] [--repair-bound-ms MS] [--require-coverage]
 *                  [--keep] [--verbose]
 *   crash_campaign --check ROOT   (check a run kept by --keep or a failure again, nothing else)
 *
 * What it proves. N producer processes with several threads each append stamped records
 * (tests/helpers.h) to a WAL whose rings and segments are small, so rings fill and segments
 * rotate all the time. Each producer process writes what it was told was durable into its own
 * side file, ROOT/acks/<producer id>, after shmwal_wait_durable() returned: fixed-size 64-byte
 * entries with O_APPEND, so a kill loses at most the entries not yet written (acks are a lower
 * bound) and can never tear one in the middle of the file (64 divides the page size). It
 * also notes every claim it gave up on purpose (shmwal_abort) there.
 *
 *   producers  the driver SIGKILLs a producer and starts a new one (new stream ids) in its
 *              place. The kills go round three moments: a random producer at a random
 *              moment; one blocked on a full ring right then (its lane in shared memory shows
 *              a claim fetch-added but not fitting yet: the flusher must pad the gap); one
 *              inside a claim (a CLAIMED frame of its slot in the ring: the flusher must
 *              abort it). A chosen producer is SIGSTOPped and the moment confirmed, then it
 *              is killed. After each kill the driver measures how long
 *              the flusher takes to carry the durable LSN past every claim that existed at
 *              the kill: repairing the dead producer's claims plus draining what was ahead
 *              of them. Over the repair bound is a violation, and so is any stall the
 *              flusher reports (stall_timeout_ms is set to the bound).
 *   flusher    the driver SIGKILLs the flusher and starts a new one, which adopts the rings.
 *              The kills go round a list of moments: at random; while producers are blocked
 *              on a full ring (the flusher is SIGSTOPped until a claim waits for space, then
 *              killed); in the middle of a batch write (half of it written: a torn tail);
 *              and at each step of a segment rotation (the rotation's sync, the new file
 *              created empty, its header written, the header synced, the directory synced
 *              but the new segment not yet published). The chosen moments are reached through
 *              the flusher's file-operation seam (persist/io.h): the flusher parks there
 *              until the kill lands, so every such kill lands exactly where it is counted.
 *   both       the two interleaved: every third kill is the flusher's.
 *
 * --backend pmem runs the same campaigns on the pmem backend, with the flusher's libpmem
 * told the segments are persistent memory (PMEM_IS_PMEM_FORCE=1: drains); pmem-msync on its
 * fallback for files that are not (msync).
 *
 * Producer threads play four roles (campaign/producer.c): blocking appends acknowledged one
 * by one; zero-copy claim/commit in small windows that also gives up 10% of its claims;
 * try_append (retried on -EAGAIN) in windows; and a bulk appender that keeps up to a few
 * rings' worth of records unacknowledged, so a stopped flusher always ends with a full ring
 * and producers blocked on it.
 *
 * The check (campaign/check.c), after everything stopped cleanly: every acknowledged record
 * present exactly once, at the LSN it was acknowledged with, intact (stamp, key and every
 * value byte), in per-stream order within its partition; no record that nobody wrote; every
 * claim given up on purpose present as an ABORTED frame and never as a record; the segment
 * files hold as many records as the readers returned; producers that stopped cleanly have
 * every record they wrote acknowledged and present; the flusher's clean stop removed the
 * shared memory. Negative controls then feed the same check a dropped, a duplicated and a
 * reordered record and a false abort note, and each must be caught: a check that cannot fail
 * fails the run. --require-coverage also fails a run in which some kind of kill never landed.
 * Exit status 0 only when nothing was violated.
 *
 * Files: this driver (options, the shared-memory observer, the kill loop, the figures),
 * campaign/campaign.h (what the parts share, the side-file format), campaign/producer.c,
 * campaign/flusher.c (the parking seam), campaign/check.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmwal_format.h"
#include "meta.h"
#include "shm/layout.h"
#include "stress/campaign/campaign.h"
#include "tests/helpers.h"

static const char *const campaign_names[] = { "producers", "flusher", "both" };

struct campaign_options opt = {
	.campaign = -1, .seconds = 20, .producers = 4, .threads = 3, .partitions = 2,
	.interval_ms = 15, .bound_ms = 10000, .ring_bytes = 64 << 10, .segment_bytes = 64 << 10,
	.seed = 1, .sync = -1,
};
struct ctl *ctl;

#define KIND_FULL_RING PARK_N /* flusher kill moments: the park points, plus this one */
#define KINDS (PARK_N + 1)

/* ---- observing the shared memory (read-only) ----------------------------------------------- */

struct obs {
	void *base;
	size_t len;
	const struct shm_header *hdr;
	struct shm_part *parts;
	struct shm_slot *slots;
	struct shm_lane *lanes;
};

static int obs_open(const char *dir, struct obs *o)
{
	struct meta m;
	char name[32];
	struct stat st;
	int fd;

	memset(o, 0, sizeof(*o));
	if (meta_load(dir, &m) < 0)
		return -1;
	shm_name(name, m.instance);
	fd = shm_open(name, O_RDONLY, 0);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size < SHM_PAGE) {
		close(fd);
		return -1;
	}
	o->len = (size_t)st.st_size;
	o->base = mmap(NULL, o->len, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (o->base == MAP_FAILED) {
		o->base = NULL;
		return -1;
	}
	o->hdr = o->base;
	if (o->hdr->magic != SHM_MAGIC || o->hdr->instance != m.instance ||
	    load_acquire((shmwal_atomic32 *)&o->hdr->state) != SHM_STATE_READY ||
	    o->hdr->off_parts + opt.partitions * sizeof(struct shm_part) > o->len ||
	    o->hdr->off_slots + SHM_SLOTS * sizeof(struct shm_slot) > o->len ||
	    o->hdr->off_lanes + SHM_LANES * sizeof(struct shm_lane) > o->len) {
		munmap(o->base, o->len);
		o->base = NULL;
		return -1;
	}
	o->parts = (struct shm_part *)((char *)o->base + o->hdr->off_parts);
	o->slots = (struct shm_slot *)((char *)o->base + o->hdr->off_slots);
	o->lanes = (struct shm_lane *)((char *)o->base + o->hdr->off_lanes);
	return 0;
}

static void obs_close(struct obs *o)
{
	if (o->base)
		munmap(o->base, o->len);
	o->base = NULL;
}

#define OBS(o, p, field) load_acquire(&(o)->parts[p].field)

/* A claim waits for ring space in some partition: producers are blocked on a full ring. */
static int obs_blocked(struct obs *o)
{
	for (uint32_t p = 0; p < opt.partitions; p++)
		if (OBS(o, p, tail) > OBS(o, p, head) + opt.ring_bytes)
			return 1;
	return 0;
}

/* The pid of a producer waiting for ring space right now (its lane names a claim that does
 * not fit until the flusher frees more: step 4 of the claim protocol), or 0. */
static pid_t obs_blocked_producer(struct obs *o, uint64_t *rng, pid_t only)
{
	uint32_t start = (uint32_t)(th_rand(rng) % SHM_LANES);

	for (uint32_t i = 0; i < SHM_LANES; i++) {
		struct shm_lane *ln = &o->lanes[(start + i) % SHM_LANES];
		uint32_t owner = load_acquire(&ln->owner), part;
		uint64_t c = load_acquire(&ln->claim);
		pid_t pid;

		part = load_acquire(&ln->part);
		if (!owner || owner > SHM_SLOTS || c == 0 || c == LANE_UNKNOWN ||
		    part >= opt.partitions)
			continue;
		pid = (pid_t)load_relaxed(&o->slots[owner - 1].pid);
		if (only && pid != only)
			continue;
		/* a frame is at least a header long: this claim cannot fit yet */
		if ((c & ~1ull) + SHMWAL_FRAME_HDR > OBS(o, part, head) + opt.ring_bytes)
			return pid;
	}
	return 0;
}

/*
 * The pid of a producer inside a claim right now: a CLAIMED frame (steps 5-8 of the claim
 * protocol) between the flusher's position and the tail, or 0. *part, *lsn and *word say
 * which, so that the caller can confirm it after freezing the process (obs_word_is).
 */
static pid_t obs_claiming_producer(struct obs *o, uint32_t *part, uint64_t *lsn, uint64_t *word)
{
	for (uint32_t p = 0; p < opt.partitions; p++) {
		const uint8_t *ring =
		    (const uint8_t *)o->base + o->hdr->off_rings + p * opt.ring_bytes;
		uint64_t pos = OBS(o, p, written), tail = OBS(o, p, tail);

		if (o->hdr->off_rings + (p + 1) * opt.ring_bytes > o->len)
			return 0;
		if (tail > pos + opt.ring_bytes)
			tail = pos + opt.ring_bytes;
		while (pos < tail) {
			uint64_t w = load_acquire(
				(shmwal_atomic64 *)(ring + (pos & (opt.ring_bytes - 1))));
			uint32_t len = shmwal_word_len(w), slot = shmwal_word_slot(w);

			if (!shmwal_word_magic_ok(w) || len < SHMWAL_FRAME_HDR)
				break; /* 0 (not published yet) or being recycled: stop here */
			if (shmwal_word_state(w) == SHMWAL_FRAME_CLAIMED && slot < SHM_SLOTS) {
				*part = p;
				*lsn = pos;
				*word = w;
				return (pid_t)load_relaxed(&o->slots[slot].pid);
			}
			pos += SHMWAL_ALIGN_UP(len);
		}
	}
	return 0;
}

static int obs_word_is(struct obs *o, uint32_t p, uint64_t lsn, uint64_t word)
{
	const uint8_t *ring = (const uint8_t *)o->base + o->hdr->off_rings + p * opt.ring_bytes;

	return load_acquire((shmwal_atomic64 *)(ring + (lsn & (opt.ring_bytes - 1)))) == word;
}

/* A segment is full and the next one is not published yet: a rotation is under way. */
static int obs_rotation_due(struct obs *o)
{
	for (uint32_t p = 0; p < opt.partitions; p++)
		if (OBS(o, p, written) - OBS(o, p, seg_first) >= opt.segment_bytes)
			return 1;
	return 0;
}

static uint64_t obs_sum(struct obs *o, int which)
{
	uint64_t n = 0;

	for (uint32_t p = 0; p < opt.partitions; p++)
		n += which == 0	  ? OBS(o, p, aborted_claims)
		     : which == 1 ? OBS(o, p, padded_gaps)
				  : OBS(o, p, stalls);
	return n;
}

/* ---- the driver ----------------------------------------------------------------------------- */

struct repair {
	uint64_t t0, tails[MAX_PARTS], flusher_gen;
	int active;
};

struct run {
	enum campaign kind;
	char root[4096], wal[4096], acks[4096], flog[4096];
	pid_t flusher;
	uint64_t flusher_gen;
	pid_t pids[MAX_LIVE];
	uint32_t ids[MAX_LIVE];
	uint32_t next_id;
	uint8_t *clean;
	size_t clean_cap;
	struct obs obs;
	uint64_t rng;
	struct repair rep[64];
	/* figures */
	uint64_t pkills, pkills_blocked, pkills_victim_blocked, pkills_in_claim;
	uint64_t fkills, fkills_blocked, fkills_rotation, fkills_rotation_seen;
	uint64_t kinds[KINDS], kinds_landed[KINDS]; /* flusher kills by moment */
	uint64_t frestarts, prestarts, repairs_measured, repair_max_ns, violations;
};

static void violation(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(struct run *r, const char *fmt, ...)
{
	va_list ap;

	r->violations++;
	fprintf(stderr, "VIOLATION: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void spawn_producer(struct run *r, unsigned i)
{
	uint32_t id = r->next_id++;
	pid_t pid;

	if (id >= r->clean_cap) {
		size_t old = r->clean_cap;

		r->clean_cap = old ? old * 2 : 1024;
		r->clean = realloc(r->clean, r->clean_cap);
		if (!r->clean)
			abort();
		memset(r->clean + old, 0, r->clean_cap - old);
	}
	r->clean[id] = 0;
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(producer_main(r->wal, r->acks, id));
	}
	r->pids[i] = pid;
	r->ids[i] = id;
}

/* The pmem campaigns must run in the mode they name: the flusher says which in shm. */
static int persistence_ok(struct run *r)
{
	enum shmwal_persistence want = opt.backend == 1 ? SHMWAL_PERSIST_PMEM_DRAIN
							: SHMWAL_PERSIST_PMEM_MSYNC;
	struct shmwal_stat *st = malloc(sizeof(*st));
	int ok;

	if (!st)
		abort();
	for (int i = 0; i < 60000; i++) {
		if (shmwal_stat(r->wal, st) == 0 && st->persistence != SHMWAL_PERSIST_NONE)
			break;
		sleep_us(1000);
	}
	ok = st->persistence == want;
	if (!ok)
		violation(r, "the flusher's persistence is %d, not %d as --backend asks",
			  (int)st->persistence, (int)want);
	free(st);
	return ok;
}

static void start_flusher(struct run *r)
{
	r->flusher = flusher_start(r->wal, r->flog);
	r->flusher_gen++;
}

/* Unexpected exits are violations: nobody stops on its own during a campaign. */
static void reap_check(struct run *r)
{
	int st;

	for (unsigned i = 0; i < opt.producers; i++) {
		if (r->pids[i] > 0 && waitpid(r->pids[i], &st, WNOHANG) == r->pids[i]) {
			violation(r, "producer %u exited on its own (status %d)", r->ids[i], st);
			r->pids[i] = -1;
		}
	}
	if (r->flusher > 0 && waitpid(r->flusher, &st, WNOHANG) == r->flusher) {
		violation(r, "the flusher exited on its own (status %d); see %s", st, r->flog);
		r->flusher = -1;
	}
}

static void poll_repairs(struct run *r, int final)
{
	uint64_t now = mono(), bound = (uint64_t)opt.bound_ms * 1000000ull;

	for (unsigned i = 0; i < sizeof(r->rep) / sizeof(r->rep[0]); i++) {
		struct repair *q = &r->rep[i];
		uint32_t p;

		if (!q->active)
			continue;
		if (q->flusher_gen != r->flusher_gen) {
			q->active = 0; /* the flusher was killed meanwhile: not a repair time */
			continue;
		}
		for (p = 0; p < opt.partitions; p++)
			if (OBS(&r->obs, p, durable) < q->tails[p])
				break;
		if (p == opt.partitions) {
			uint64_t dt = now - q->t0;

			if (dt > r->repair_max_ns)
				r->repair_max_ns = dt;
			r->repairs_measured++;
			q->active = 0;
		} else if (now - q->t0 > bound || final) {
			violation(r,
				  "the log did not pass a dead producer's claims within %u ms "
				  "(partition %u: durable %" PRIu64 ", claims up to %" PRIu64 ")",
				  opt.bound_ms, p, OBS(&r->obs, p, durable), q->tails[p]);
			q->active = 0;
		}
	}
}

/*
 * The kills go round three moments: a random producer at a random moment; one blocked on a
 * full ring right now (its claim fetch-added, its frame word still 0: the flusher must pad
 * the gap); one inside a claim (its frame CLAIMED: the flusher must abort it). A chosen
 * producer is frozen (SIGSTOP) and the moment confirmed before the kill; when none shows up
 * within 100 ms, a random one is killed. For the full-ring moment the flusher is frozen too
 * until a producer is found blocked (as kill_flusher's full-ring moment does): a flusher that
 * keeps up (pmem, with sync always) left the rings full too rarely for the moment to land in
 * a campaign of 32 kills (seen under ThreadSanitizer in CI).
 */
static void kill_producer(struct run *r)
{
	unsigned v = (unsigned)(th_rand(&r->rng) % opt.producers);
	int blocked, st, chosen = 0;
	struct repair *q = NULL;

	int moment = (int)(r->pkills % 3); /* 0 random, 1 blocked on a full ring, 2 in a claim */
	int frozen = moment == 1 && r->flusher > 0 && kill(r->flusher, SIGSTOP) == 0;
	uint64_t wait_ns = frozen ? 20 * SHMWAL_NS_PER_SEC : 100000000ull;

	for (uint64_t end = mono() + wait_ns; moment && !chosen && mono() < end;) {
		uint32_t part = 0;
		uint64_t lsn = 0, word = 0;
		pid_t pid = moment == 1 ? obs_blocked_producer(&r->obs, &r->rng, 0)
					: obs_claiming_producer(&r->obs, &part, &lsn, &word);

		for (unsigned i = 0; pid && i < opt.producers; i++) {
			if (r->pids[i] != pid)
				continue;
			/* frozen, then confirmed still there: the kill lands there */
			kill(pid, SIGSTOP);
			if (moment == 1 ? obs_blocked_producer(&r->obs, &r->rng, pid) == pid
					: obs_word_is(&r->obs, part, lsn, word)) {
				v = i;
				chosen = moment;
			} else {
				kill(pid, SIGCONT);
			}
		}
		if (!chosen)
			sleep_us(50);
	}
	blocked = obs_blocked(&r->obs);
	if (frozen)
		kill(r->flusher, SIGCONT); /* the chosen one stays frozen: its claim still unwritten */
	if (r->pids[v] <= 0)
		return;
	kill(r->pids[v], SIGKILL);
	st = th_wait(r->pids[v], TH_TIMEOUT_S);
	r->pids[v] = -1;
	if (st != 128 + SIGKILL) {
		violation(r, "producer %u: exit status %d, expected to be killed", r->ids[v], st);
		return;
	}
	r->pkills++;
	r->pkills_blocked += blocked; /* the flusher runs on: what held just before the kill */
	r->pkills_victim_blocked += chosen == 1;
	r->pkills_in_claim += chosen == 2;
	for (unsigned i = 0; i < sizeof(r->rep) / sizeof(r->rep[0]) && !q; i++)
		if (!r->rep[i].active)
			q = &r->rep[i];
	if (q) {
		q->t0 = mono();
		q->flusher_gen = r->flusher_gen;
		for (uint32_t p = 0; p < opt.partitions; p++)
			q->tails[p] = OBS(&r->obs, p, tail); /* every claim of the dead is below */
		q->active = 1;
	}
	spawn_producer(r, v);
	r->prestarts++;
}

static int wait_flag(int *flag, int want, unsigned timeout_ms)
{
	uint64_t end = mono() + (uint64_t)timeout_ms * 1000000ull;

	while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) != want) {
		if (mono() > end)
			return -1;
		sleep_us(200);
	}
	return 0;
}

static void kill_flusher(struct run *r)
{
	int kind = (int)(r->fkills % KINDS), st, blocked_before = 0, landed = 0;

	r->kinds[kind]++;
	if (kind == PARK_NONE) {
		sleep_us(th_rand(&r->rng) % 30000);
		landed = 1;
	} else if (kind == KIND_FULL_RING) {
		/* Freeze the flusher until some producer's claim waits for ring space. */
		uint64_t end = mono() + 20 * SHMWAL_NS_PER_SEC;

		kill(r->flusher, SIGSTOP);
		while (!obs_blocked(&r->obs) && mono() < end)
			sleep_us(200);
		landed = obs_blocked(&r->obs);
	} else {
		__atomic_store_n(&ctl->park_at, kind, __ATOMIC_RELEASE);
		if (wait_flag(&ctl->parked, kind, 20000) == 0) {
			landed = 1;
		} else {
			/* not reached in time (never on a loaded machine so far): kill anyway */
			__atomic_store_n(&ctl->park_at, PARK_NONE, __ATOMIC_RELEASE);
			landed = __atomic_load_n(&ctl->parked, __ATOMIC_ACQUIRE) == kind;
		}
	}
	blocked_before = obs_blocked(&r->obs);
	kill(r->flusher, SIGKILL);
	st = th_wait(r->flusher, TH_TIMEOUT_S);
	r->flusher = -1;
	__atomic_store_n(&ctl->park_at, PARK_NONE, __ATOMIC_RELEASE);
	__atomic_store_n(&ctl->parked, PARK_NONE, __ATOMIC_RELEASE);
	if (st != 128 + SIGKILL) {
		violation(r, "flusher: exit status %d, expected to be killed; see %s", st, r->flog);
		return;
	}
	r->fkills++;
	r->kinds_landed[kind] += landed;
	/* head cannot move now: a claim beyond head + ring waited for space at the kill */
	r->fkills_blocked += blocked_before && obs_blocked(&r->obs);
	if (IS_ROTATION(kind) && landed)
		r->fkills_rotation++;
	else if (obs_rotation_due(&r->obs))
		r->fkills_rotation_seen++;
	/* producers go on into the ring meanwhile, and block when it is full */
	sleep_us(th_rand(&r->rng) % 15000);
	start_flusher(r);
	r->frestarts++;
}

static void print_figures(struct run *r, double secs)
{
	printf("  producer kills            %10" PRIu64 "  (%" PRIu64
	       " while producers were blocked on a full ring; %" PRIu64
	       " of a producer blocked on it; %" PRIu64 " inside a claim)\n",
	       r->pkills, r->pkills_blocked, r->pkills_victim_blocked, r->pkills_in_claim);
	printf("  flusher kills             %10" PRIu64 "  (%" PRIu64
	       " while producers were blocked on a full ring, %" PRIu64 " mid-rotation",
	       r->fkills, r->fkills_blocked, r->fkills_rotation);
	if (r->fkills_rotation_seen)
		printf(" + %" PRIu64 " at other points with a rotation due",
		       r->fkills_rotation_seen);
	printf(")\n");
	if (r->fkills) {
		printf("    by moment:");
		for (int k = 0; k < KINDS; k++)
			printf(" %s %" PRIu64 "/%" PRIu64,
			       k == KIND_FULL_RING ? "full-ring" : park_names[k],
			       r->kinds_landed[k], r->kinds[k]);
		printf("  (landed/tried)\n");
	}
	printf("  restarts                  %10" PRIu64 "  (producers %" PRIu64 ", flusher %" PRIu64
	       ")\n",
	       r->prestarts + r->frestarts, r->prestarts, r->frestarts);
	printf("  appends %" PRIu64 ", ring-full retries of try_append %" PRIu64 "\n",
	       __atomic_load_n(&ctl->appended, __ATOMIC_RELAXED),
	       __atomic_load_n(&ctl->eagain, __ATOMIC_RELAXED));
	if (r->kind != C_FLUSHER)
		printf("  repair: dead claims aborted %" PRIu64 ", gaps padded %" PRIu64
		       "; log past a dead producer's claims in at most %.1f ms over %" PRIu64
		       " kills (bound %u ms)\n",
		       r->obs.base ? obs_sum(&r->obs, 0) : 0, r->obs.base ? obs_sum(&r->obs, 1) : 0,
		       (double)r->repair_max_ns / 1e6, r->repairs_measured, opt.bound_ms);
	printf("  elapsed %.1f s\n", secs);
}

static int shm_exists(const char *dir)
{
	struct meta m;
	char name[32];
	int fd;

	if (meta_load(dir, &m) < 0)
		return 0;
	shm_name(name, m.instance);
	fd = shm_open(name, O_RDONLY, 0);
	if (fd >= 0)
		close(fd);
	return fd >= 0;
}

static int run_campaign(enum campaign kind, uint64_t seed)
{
	struct shmwal_config cfg;
	struct run *r = calloc(1, sizeof(*r));
	uint64_t t0 = mono(), deadline, kills = 0, next = 0, stalls = 0;
	char *root = th_tmpdir("campaign");
	int st;

	if (!r || !root) {
		perror("campaign");
		return 1;
	}
	r->kind = kind;
	r->rng = seed ? seed : 1;
	memset(ctl, 0, sizeof(*ctl));
	snprintf(r->root, sizeof(r->root), "%s", root);
	snprintf(r->wal, sizeof(r->wal), "%s/wal", root);
	snprintf(r->acks, sizeof(r->acks), "%s/acks", root);
	snprintf(r->flog, sizeof(r->flog), "%s/flusher.log", root);
	free(root);
	if (mkdir(r->acks, 0700) < 0) {
		perror(r->acks);
		return 1;
	}
	shmwal_config_default(&cfg);
	cfg.partitions = opt.partitions;
	cfg.ring_bytes = opt.ring_bytes;
	cfg.segment_bytes = opt.segment_bytes;
	cfg.max_key = 64;
	cfg.max_value = 2048;
	/* unless told: each campaign its own sync mode, so that a run of all three covers each */
	cfg.sync = opt.sync >= 0 ? opt.sync : kind == C_PRODUCERS ? SHMWAL_SYNC_INTERVAL
					 : kind == C_FLUSHER   ? SHMWAL_SYNC_ALWAYS
							       : SHMWAL_SYNC_NONE;
	cfg.sync_interval_us = 1000;
	cfg.stall_timeout_ms = opt.bound_ms;
	cfg.backend = opt.backend ? SHMWAL_BACKEND_PMEM : SHMWAL_BACKEND_FILE;
	if (shmwal_create(r->wal, &cfg) < 0) {
		fprintf(stderr, "create: %s\n", shmwal_last_error());
		return 1;
	}
	printf("crash campaign '%s': seed %" PRIu64 ", %u producers x %u threads, %u partitions, "
	       "ring %" PRIu64 " KiB, segments %" PRIu64 " KiB, sync %s, backend %s\n"
	       "  directory %s\n",
	       campaign_names[kind], seed, opt.producers, opt.threads, opt.partitions,
	       opt.ring_bytes >> 10, opt.segment_bytes >> 10,
	       cfg.sync == SHMWAL_SYNC_NONE ? "none" : cfg.sync == SHMWAL_SYNC_INTERVAL ? "interval"
											: "always",
	       opt.backend == 0 ? "file" : opt.backend == 1 ? "pmem (drain)" : "pmem (msync)",
	       r->root);
	fflush(stdout);
	start_flusher(r);
	for (int i = 0; obs_open(r->wal, &r->obs) < 0; i++) {
		if (i > 60000) {
			violation(r, "the flusher never made the shared memory");
			goto stop;
		}
		sleep_us(1000);
	}
	if (opt.backend && !persistence_ok(r))
		goto stop;
	for (unsigned i = 0; i < opt.producers; i++)
		spawn_producer(r, i);

	deadline = t0 + (uint64_t)opt.seconds * SHMWAL_NS_PER_SEC;
	while (!r->violations && (opt.kills ? kills < opt.kills : mono() < deadline)) {
		uint64_t now = mono();

		reap_check(r);
		poll_repairs(r, 0);
		if (now >= next) {
			/* both: every third kill is the flusher's, so its moments go round too */
			int fl = kind == C_FLUSHER || (kind == C_BOTH && kills % 3 == 2);

			if (fl)
				kill_flusher(r);
			else
				kill_producer(r);
			kills++;
			next = mono() + 1000000ull * (th_rand(&r->rng) % (2 * opt.interval_ms + 1));
		}
		sleep_us(300);
	}
stop:
	/* Stop: the flusher runs; producers finish, acknowledge everything and exit 0. */
	if (r->flusher <= 0)
		start_flusher(r); /* it failed (a violation already): still drain, then check */
	__atomic_store_n(&ctl->stop_producers, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < opt.producers; i++) {
		if (r->pids[i] <= 0)
			continue;
		st = th_wait(r->pids[i], TH_TIMEOUT_S);
		if (st != 0)
			violation(r, "producer %u did not stop cleanly (status %d)", r->ids[i], st);
		else
			r->clean[r->ids[i]] = 1;
		r->pids[i] = -1;
	}
	if (r->flusher > 0) {
		for (uint64_t end = mono() + (uint64_t)opt.bound_ms * 1000000ull * 2;
		     mono() < end;) {
			int active = 0;

			poll_repairs(r, 0);
			for (unsigned i = 0; i < sizeof(r->rep) / sizeof(r->rep[0]); i++)
				active |= r->rep[i].active;
			if (!active)
				break;
			sleep_us(500);
		}
		poll_repairs(r, 1);
		if (r->obs.base)
			stalls = obs_sum(&r->obs, 2);
		print_figures(r, (double)(mono() - t0) / 1e9);
		obs_close(&r->obs);
		st = th_flusher_stop(r->flusher);
		if (st != 0)
			violation(r, "the flusher did not stop cleanly (status %d); see %s", st,
				  r->flog);
		else if (shm_exists(r->wal))
			violation(r,
				  "the flusher stopped with no producer attached (the killed ones "
				  "are dead) but kept the shared memory; see %s",
				  r->flog);
	} else {
		print_figures(r, (double)(mono() - t0) / 1e9);
		obs_close(&r->obs);
	}
	if (stalls)
		violation(r, "the flusher reported %" PRIu64 " stalls of %u ms or more", stalls,
			  opt.bound_ms);
	printf("  flusher stall reports     %10" PRIu64 "\n", stalls);
	r->violations += check_all(r->root, r->next_id, r->clean);
	if (opt.require_coverage) {
		if (kind != C_PRODUCERS)
			for (int k = 0; k < KINDS; k++)
				if (!r->kinds_landed[k]) {
					violation(r, "no flusher kill landed at '%s'",
						  k == KIND_FULL_RING ? "full-ring"
								      : park_names[k]);
				}
		if (kind != C_PRODUCERS && !r->fkills_blocked)
			violation(r, "no flusher kill while producers were blocked on a full ring");
		if (kind != C_FLUSHER && (!r->pkills || !r->repairs_measured))
			violation(r, "no producer kill with a measured repair");
		if (kind != C_FLUSHER && !r->pkills_victim_blocked)
			violation(r, "no producer killed while blocked on a full ring");
		if (kind != C_FLUSHER && !r->pkills_in_claim)
			violation(r, "no producer killed inside a claim");
	}
	printf("  result: %s\n\n", r->violations ? "FAILED" : "OK");
	fflush(stdout);
	th_shm_unlink(r->wal); /* whatever happened, no shared memory is left behind */
	if (r->violations || opt.keep) {
		char meta_path[4096 + 16];

		snprintf(meta_path, sizeof(meta_path), "%s/producers", r->root);
		FILE *f = fopen(meta_path, "w");
		if (f) {
			fprintf(f, "%u %u\n", r->next_id, opt.threads);
			for (uint32_t i = 0; i < r->next_id; i++)
				fprintf(f, "%u\n", r->clean[i]);
			fclose(f);
		}
		printf("  kept %s\n", r->root);
	} else {
		th_destroy(r->root);
	}
	st = r->violations ? 1 : 0;
	free(r->clean);
	free(r);
	return st;
}

/* --check ROOT: the checker alone, on a run kept with --keep (or after a failure). */
static int check_only(const char *root)
{
	char path[4096 + 16];
	uint32_t n = 0, c;
	uint8_t *clean;
	struct shmwal_config cfg;
	FILE *f;
	uint64_t bad;

	snprintf(path, sizeof(path), "%s/wal", root);
	if (shmwal_config_load(path, &cfg) < 0) {
		fprintf(stderr, "%s: %s\n", path, shmwal_last_error());
		return 2;
	}
	opt.partitions = cfg.partitions;
	snprintf(path, sizeof(path), "%s/producers", root);
	f = fopen(path, "r");
	if (!f || fscanf(f, "%u %u", &n, &opt.threads) != 2) {
		fprintf(stderr, "%s: cannot read\n", path);
		return 2;
	}
	clean = calloc(n + 1, 1);
	for (uint32_t i = 0; i < n && fscanf(f, "%u", &c) == 1; i++)
		clean[i] = (uint8_t)c;
	fclose(f);
	bad = check_all(root, n, clean);
	printf("  result: %s\n", bad ? "FAILED" : "OK");
	free(clean);
	return bad ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: crash_campaign [--campaign producers|flusher|both|all] [--seconds S]\n"
		"         [--kills N] [--producers N] [--threads N] [--partitions N]\n"
		"         [--ring-bytes B] [--segment-bytes B] [--sync none|interval|always]\n"
		"         [--seed N] [--interval-ms MS] [--repair-bound-ms MS]\n"
		"         [--backend file|pmem|pmem-msync]\n"
		"         [--require-coverage] [--keep] [--verbose]\n"
		"       crash_campaign --check ROOT\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--keep")) {
			opt.keep = 1;
			continue;
		}
		if (!strcmp(a, "--verbose")) {
			opt.verbose = 1;
			continue;
		}
		if (!strcmp(a, "--require-coverage")) {
			opt.require_coverage = 1;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--campaign")) {
			opt.campaign = !strcmp(v, "producers") ? C_PRODUCERS
				       : !strcmp(v, "flusher") ? C_FLUSHER
				       : !strcmp(v, "both")    ? C_BOTH
				       : !strcmp(v, "all")     ? -1
							       : -2;
			if (opt.campaign == -2)
				usage();
		} else if (!strcmp(a, "--seconds")) {
			opt.seconds = (unsigned)strtoul(v, NULL, 10);
		} else if (!strcmp(a, "--kills")) {
			opt.kills = (unsigned)strtoul(v, NULL, 10);
		} else if (!strcmp(a, "--producers")) {
			opt.producers = (unsigned)strtoul(v, NULL, 10);
		} else if (!strcmp(a, "--threads")) {
			opt.threads = (unsigned)strtoul(v, NULL, 10);
		} else if (!strcmp(a, "--partitions")) {
			opt.partitions = (unsigned)strtoul(v, NULL, 10);
		} else if (!strcmp(a, "--ring-bytes")) {
			opt.ring_bytes = strtoull(v, NULL, 0);
		} else if (!strcmp(a, "--segment-bytes")) {
			opt.segment_bytes = strtoull(v, NULL, 0);
		} else if (!strcmp(a, "--seed")) {
			opt.seed = strtoull(v, NULL, 0);
		} else if (!strcmp(a, "--interval-ms")) {
			opt.interval_ms = (unsigned)strtoul(v, NULL, 10);
		} else if (!strcmp(a, "--repair-bound-ms")) {
			opt.bound_ms = (unsigned)strtoul(v, NULL, 10);
		} else if (!strcmp(a, "--sync")) {
			opt.sync = !strcmp(v, "none")	     ? SHMWAL_SYNC_NONE
				   : !strcmp(v, "interval") ? SHMWAL_SYNC_INTERVAL
				   : !strcmp(v, "always")   ? SHMWAL_SYNC_ALWAYS
							    : -2;
			if (opt.sync == -2)
				usage();
		} else if (!strcmp(a, "--backend")) {
			opt.backend = !strcmp(v, "file")	  ? 0
				      : !strcmp(v, "pmem")	  ? 1
				      : !strcmp(v, "pmem-msync") ? 2
								 : -1;
			if (opt.backend < 0)
				usage();
		} else if (!strcmp(a, "--check")) {
			opt.check_only = v;
		} else {
			usage();
		}
	}
	if (opt.producers < 1 || opt.producers > MAX_LIVE || opt.threads < 1 ||
	    opt.threads > MAX_THREADS || opt.partitions < 1 || opt.partitions > MAX_PARTS ||
	    opt.bound_ms < 1)
		usage();
	/* Before anything uses libpmem (it reads this once): flusher children inherit it. */
	if (opt.backend)
		setenv("PMEM_IS_PMEM_FORCE", opt.backend == 1 ? "1" : "0", 1);
	ctl = mmap(NULL, sizeof(*ctl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ctl == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (opt.check_only)
		return check_only(opt.check_only);
	for (int c = C_PRODUCERS; c <= C_BOTH; c++)
		if (opt.campaign < 0 || opt.campaign == c)
			rc |= run_campaign((enum campaign)c, opt.seed + (uint64_t)c * 1000003u);
	printf("crash campaign: %s\n", rc ? "FAILED" : "OK");
	return rc;
}
