/* SPDX-License-Identifier: MIT */
/*
 * consume.c - the flusher's side of a ring: find the committed frames at `written`, repair
 * what dead producers left, and free drained bytes.
 *
 * At the flusher's position P the frame word says what to do:
 *   COMMITTED, ABORTED, PAD   take the frame into the batch
 *   CLAIMED(slot)             a producer is writing it. Wait; if it stays, probe the slot's
 *                             lock: a dead owner's frame becomes ABORTED (its body zeroed).
 *                             A live owner is never aborted, however long it takes: it may
 *                             still write into the frame (zero-copy claims hand out pointers),
 *                             and a write into ring bytes recycled for someone else would tear
 *                             their record. A stall is counted and logged every
 *                             stall_timeout_ms, naming the pid, so an operator can act.
 *   0, and tail > P           someone fetch-added [P, ...) but has not published its word
 *                             yet (steps 2-5 of the claim protocol in layout.h). Wait; if it
 *                             stays, look at the lanes: only a lane showing LANE_UNKNOWN, or
 *                             the LSN of a claim in [P, Z) of this partition, can own bytes
 *                             there (Z: the first non-zero word after P). If none of them
 *                             belongs to a live process, [P, Z) can never be filled and
 *                             becomes PAD frames. If a live lane claims Y > P, [P, Y) is
 *                             padded and the flusher waits at Y.
 *
 * Why the lane scan is sound: a producer stores its lane (LANE_UNKNOWN) before its fetch-add,
 * and the fetch-add releases it; we load tail with acquire before scanning lanes, so every
 * claim below that tail is visible as LANE_UNKNOWN, as its LSN, or (lane back at 0 with
 * release) as a published frame word, which the scan for Z made after the lane scan sees.
 *
 * Nothing read from shared memory is trusted: a length that is too small, too large, not
 * inside [P, tail) or not a multiple of 8, an unknown state or magic, a frame whose own LSN
 * is not P, a committed frame whose checksum, type or key length is wrong, or a tail behind P
 * or off the 8-byte alignment stops the partition with -EIO and a message naming the LSN. The
 * flusher then stops cleanly; it never writes outside its files or loops on garbage.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "shm_impl.h"
#include "shmwal_format.h"

#define PROBE_DELAY_NS 1000000ull /* wait this long at a stuck frame before probing owners */

static inline shmwal_atomic64 *word_at(const struct shm *s, uint32_t p, uint64_t lsn)
{
	return (shmwal_atomic64 *)ring_at(s, p, lsn);
}

/* Turns [lsn, lsn + size) into one PAD or ABORTED frame: body zeroed, header built aside,
 * the word stored last (so whoever reads the word sees a whole frame). */
static void frame_make_pad(struct shmwal_frame *f, uint64_t lsn, uint32_t size, uint32_t slot,
			   unsigned state)
{
	struct shmwal_frame h;

	memset(&h, 0, sizeof(h));
	h.word = shmwal_word_make(size, slot, state);
	h.lsn = lsn;
	h.crc = shmwal_frame_crc(&h, size); /* covers len and the header only */
	memset((char *)f + sizeof(h), 0, size - sizeof(h));
	memcpy((char *)f + 8, (const char *)&h + 8, sizeof(h) - 8);
	store_release((shmwal_atomic64 *)f, h.word);
}

/* Pads [from, to) with PAD frames of at most max_frame bytes each. */
static void pad_range(struct shm *s, uint32_t p, uint64_t from, uint64_t to)
{
	while (from < to) {
		uint64_t piece = to - from;

		if (piece > s->max_frame)
			piece = s->max_frame;
		if (to - from - piece && to - from - piece < SHMWAL_FRAME_HDR)
			piece -= SHMWAL_FRAME_HDR; /* leave room for a whole last piece */
		frame_make_pad((struct shmwal_frame *)ring_at(s, p, from), from, (uint32_t)piece,
			       SHMWAL_SLOT_NONE, SHMWAL_FRAME_PAD);
		from += piece;
	}
}

/*
 * A zero word at `pos` with tail beyond it. Returns 1 when [pos, ...) was padded, 0 when a
 * live producer may still fill it.
 */
static int repair_gap(struct shm *s, uint32_t p, uint64_t pos, uint64_t tail, int clamped)
{
	/* Nothing at or past pos + ring_bytes is in this lap of the ring (pos == head here). */
	uint64_t limit = tail - pos > s->meta.cfg.ring_bytes ? pos + s->meta.cfg.ring_bytes : tail;
	uint64_t z;
	uint32_t l;

	for (l = 0; l < SHM_LANES; l++) {
		struct shm_lane *ln = &s->lanes[l];
		uint32_t owner = load_acquire(&ln->owner);
		uint64_t c, y;

		uint32_t q, s1, s2;
		int tries = 0;

		if (!owner)
			continue;
		/* claim and part are two words: read them between two reads of seq, so that a
		 * thread moving on to a claim in another partition cannot pair its old LSN with its
		 * new partition (all acquire: pair with the lane's release stores) */
		do {
			s1 = load_acquire(&ln->seq);
			c = load_acquire(&ln->claim);
			q = load_acquire(&ln->part);
			s2 = load_acquire(&ln->seq);
		} while (s1 != s2 && ++tries < 16);
		if (c == 0)
			continue;
		if (s1 != s2) {
			c = LANE_UNKNOWN; /* still moving: it could be anywhere */
			q = p;
		}
		if (q != p)
			continue;
		if (c != LANE_UNKNOWN) {
			y = c & ~1ull;
			if (y < pos || y >= limit)
				continue;
		} else {
			y = pos; /* fetch-adding on this partition: could be anywhere */
		}
		if (slot_is_dead(s, owner - 1))
			continue;
		limit = y; /* a live claim at y: nothing at or past y may be padded */
		if (limit == pos)
			return 0;
	}
	/* Z: the first published word after pos, scanned after the lanes (see the top), so a
	 * producer that published meanwhile is seen here; pos itself first. No frame starts
	 * within 32 bytes of a lost claim's start (a claim is at least 32 bytes), so bytes there
	 * can only be our own pad header half-written by a flusher that died: not a frame. */
	if (load_acquire(word_at(s, p, pos)) != 0)
		return 0;
	for (z = pos + SHMWAL_FRAME_HDR; z < limit; z += SHMWAL_ALIGN)
		if (load_acquire(word_at(s, p, z)) != 0)
			break;
	if (z > limit)
		z = limit;
	/* Reaching the one-lap clamp (not a frame boundary when the real tail is beyond it): a
	 * claim may straddle it. Pad only up to clamp - HDR, so the flusher never stands inside
	 * a claim and the next live frame is at least HDR past its new position. Found by the
	 * SPIN model (shm/claim.pml, defect 2). */
	if (clamped && z == tail)
		z = tail - SHMWAL_FRAME_HDR;
	if (z < pos + SHMWAL_FRAME_HDR)
		return 0; /* too short to be a lost claim: look again */
	pad_range(s, p, pos, z);
	fetch_add_relaxed(&s->parts[p].padded_gaps, 1);
	if (s->log)
		s->log(s->log_ctx, SHMWAL_LOG_WARN,
		       "partition %u: padded %" PRIu64 " bytes at LSN %" PRIu64
		       " claimed by producers that died before publishing",
		       p, z - pos, pos);
	return 1;
}

/*
 * A committed frame goes to the files byte for byte, and readers and recovery judge it by its
 * header and checksum. One that fails them (a producer that wrote past its claim, or any
 * process scribbling on the ring) would be published durable and then read as damage: readers
 * stop there, and recovery cuts the log at it, taking every later durable record with it. So
 * it is checked here, before it can reach a file, like every other frame (len is already
 * known to be within [32, max_frame] and the ring): its header here, its checksum in groups
 * of four (check_crcs) before shm_consume returns the batch. A process that rewrites a frame
 * between this check and the pwrite can still get damage into a file; readers and verify
 * report it.
 */
static int committed_ok(const struct shmwal_frame *f, uint32_t len)
{
	return f->type != 0 && f->key_len <= len - SHMWAL_FRAME_HDR; /* the CRC: check_crcs */
}

static int garbage(const struct shm *s, uint32_t p, uint64_t pos, uint64_t word,
		   const struct shmwal_frame *f, uint64_t tail)
{
	return seterr(-EIO, "partition %u: garbage in the ring at LSN %" PRIu64 " (word %016" PRIx64
			    ", frame lsn %" PRIu64 ", tail %" PRIu64 ", head %" PRIu64 "): a "
			    "producer wrote outside its claim",
		      p, pos, word, f->lsn, tail, s->f_head[p]);
}

/* Committed frames whose checksum is still to be checked, four at a time (crc32c_frames4). */
struct crc_queue {
	const void *frame[4];
	uint32_t len[4];
	uint64_t pos[4], word[4];
	unsigned n;
};

/* Checks the queued frames' checksums (all four together when it can); -EIO at the first
 * bad one, in LSN order. */
static int check_crcs(const struct shm *s, uint32_t p, struct crc_queue *q, uint64_t tail)
{
	uint32_t crc[4];
	unsigned i;

	if (q->n == 4)
		crc32c_frames4(q->frame, q->len, crc);
	else
		for (i = 0; i < q->n; i++)
			crc[i] = shmwal_frame_crc(q->frame[i], q->len[i]);
	for (i = 0; i < q->n; i++)
		if (crc[i] != ((const struct shmwal_frame *)q->frame[i])->crc)
			return garbage(s, p, q->pos[i], q->word[i], q->frame[i], tail);
	q->n = 0;
	return 0;
}

/* A CLAIMED frame at pos. Returns 1 when its owner is dead and it is now ABORTED. */
static int repair_claimed(struct shm *s, uint32_t p, uint64_t pos, uint64_t word)
{
	uint32_t slot = shmwal_word_slot(word), size = (uint32_t)SHMWAL_ALIGN_UP(shmwal_word_len(word));
	struct shmwal_frame *f = (struct shmwal_frame *)ring_at(s, p, pos);

	if (!slot_is_dead(s, slot))
		return 0;
	/* The owner may have committed after we loaded the word and only then died or closed:
	 * abort only a word that is still the CLAIMED one we probed (its owner is gone now, so
	 * it cannot change any more). Otherwise the caller looks at the frame again. Found by
	 * the SPIN model (shm/claim.pml, defect 1). */
	if (load_acquire(word_at(s, p, pos)) != word)
		return 1;
	frame_make_pad(f, pos, size, slot, SHMWAL_FRAME_ABORTED);
	fetch_add_relaxed(&s->parts[p].aborted_claims, 1);
	if (s->log)
		s->log(s->log_ctx, SHMWAL_LOG_WARN,
		       "partition %u: aborted the claim at LSN %" PRIu64 " (%u bytes) of dead "
		       "producer slot %u",
		       p, pos, size, slot);
	return 1;
}

/* Called when the partition cannot move at pos: repairs when due, logs long stalls. */
static int stuck_at(struct shm *s, uint32_t p, uint64_t pos, uint64_t word, uint64_t tail,
		    int clamped)
{
	struct shm_stuck *st = &s->stuck[p];
	uint64_t now = mono_ns();
	int fixed = 0;

	if (st->since_ns == 0 || st->lsn != pos) {
		st->lsn = pos;
		st->since_ns = now;
		st->next_probe_ns = now + PROBE_DELAY_NS;
		st->next_log_ns = now + (uint64_t)s->meta.cfg.stall_timeout_ms * 1000000ull;
		return 0;
	}
	if (now >= st->next_probe_ns) {
		fixed = word ? repair_claimed(s, p, pos, word)
			     : repair_gap(s, p, pos, tail, clamped);
		st->next_probe_ns = now + PROBE_DELAY_NS;
	}
	if (!fixed && now >= st->next_log_ns) {
		uint32_t slot = word ? shmwal_word_slot(word) : SHMWAL_SLOT_NONE;

		fetch_add_relaxed(&s->parts[p].stalls, 1);
		if (s->log)
			s->log(s->log_ctx, SHMWAL_LOG_WARN,
			       "partition %u: stalled %" PRIu64 " ms at LSN %" PRIu64 " by %s %u "
			       "(pid %u): a live producer holds an unfinished claim",
			       p, (now - st->since_ns) / 1000000, pos,
			       word ? "producer slot" : "an unpublished claim, slot", slot,
			       slot < SHM_SLOTS ? load_relaxed(&s->slots[slot].pid) : 0);
		st->next_log_ns = now + (uint64_t)s->meta.cfg.stall_timeout_ms * 1000000ull;
	}
	if (fixed)
		st->since_ns = 0;
	return fixed;
}

int64_t shm_consume(struct shm *s, uint32_t p, uint64_t max_bytes, uint64_t room,
		    const void **data, uint32_t *records)
{
	struct shm_part *cp = &s->parts[p];
	const uint64_t start = s->f_written[p]; /* ours: never read back from shm */
	const uint64_t lap_end = s->f_head[p] + s->meta.cfg.ring_bytes;
	uint64_t tail = load_acquire(&cp->tail); /* pairs: producers' fetch-add */
	uint64_t pos = start;
	int clamped = 0;

	/* Producers only ever add frame sizes (multiples of 8) to tail, and we never pass it: a
	 * tail below our position or off the alignment was written by something else. Going on
	 * would leave the flusher idle while new claims land below what is published durable. */
	if (tail < start || (tail & (SHMWAL_ALIGN - 1)))
		return seterr(-EIO,
			      "partition %u: garbage in the shared tail (%" PRIu64 ", the "
			      "flusher is at LSN %" PRIu64 "): something other than a producer "
			      "wrote it",
			      p, tail, start);

	/* Bytes from head + ring_bytes on are the same memory as head, not freed yet: claims
	 * there wait for space (the caller frees by syncing). */
	if (tail > lap_end) {
		tail = lap_end;
		clamped = 1;
	}
	struct crc_queue q = { .n = 0 };
	uint32_t n = 0;
	int rc;

	if (max_bytes > s->meta.cfg.ring_bytes)
		max_bytes = s->meta.cfg.ring_bytes;
	while (pos < tail && pos - start < max_bytes && pos - start < room) {
		struct shmwal_frame *f = (struct shmwal_frame *)ring_at(s, p, pos);
		uint64_t word = load_acquire(word_at(s, p, pos)); /* pairs: commit's release */
		uint32_t len = shmwal_word_len(word);
		uint64_t size = SHMWAL_ALIGN_UP(len);
		unsigned state = shmwal_word_state(word);

		if (word != 0 &&
		    (!shmwal_word_magic_ok(word) || len < SHMWAL_FRAME_HDR || size > s->max_frame ||
		     size > tail - pos || state < SHMWAL_FRAME_CLAIMED || state > SHMWAL_FRAME_PAD ||
		     ((state == SHMWAL_FRAME_ABORTED || state == SHMWAL_FRAME_PAD) &&
		      (size != len || f->crc != shmwal_frame_crc(f, len))) ||
		     (state != SHMWAL_FRAME_CLAIMED && f->lsn != pos) ||
		     (state == SHMWAL_FRAME_COMMITTED && !committed_ok(f, len)))) {
			/* a queued frame before it may be bad too: name the first in LSN order */
			if (q.n && (rc = check_crcs(s, p, &q, tail)) < 0)
				return rc;
			return garbage(s, p, pos, word, f, tail);
		}
		if (word == 0 || state == SHMWAL_FRAME_CLAIMED) {
			if (pos > start || !stuck_at(s, p, pos, word, tail, clamped))
				break;
			continue; /* repaired: the word now says ABORTED or PAD */
		}
		if (pos + size - start > max_bytes && pos > start)
			break; /* keep batches within max_bytes once they hold something */
		if (state == SHMWAL_FRAME_COMMITTED) {
			q.frame[q.n] = f;
			q.len[q.n] = len;
			q.pos[q.n] = pos;
			q.word[q.n++] = word;
			if (q.n == 4 && (rc = check_crcs(s, p, &q, tail)) < 0)
				return rc;
			n++;
		}
		pos += size;
	}
	if (q.n && (rc = check_crcs(s, p, &q, tail)) < 0)
		return rc;
	if (pos > start)
		s->stuck[p].since_ns = 0;
	*data = ring_at(s, p, start);
	*records = n;
	return (int64_t)(pos - start);
}

void shm_release(struct shm *s, uint32_t p, uint64_t upto)
{
	struct shm_part *cp = &s->parts[p];

	if (upto <= s->f_written[p])
		return;
	s->f_written[p] = upto;
	/* No wake-up here: every waiter waits for `durable`, published after this. Waking them
	 * at `written` too made a sleeping reader on the flusher's CPU preempt it, find nothing
	 * durable yet, and sleep again (build/bench/suite --only reader: sleeping reader woken
	 * twice in 48-97% of samples, p50 16-32 us vs a raw futex's 5 us). */
	store_release(&cp->written, upto); /* pairs: stat's load-acquire */
}

void shm_free(struct shm *s, uint32_t p, uint64_t upto)
{
	struct shm_part *cp = &s->parts[p];
	uint64_t head = s->f_head[p]; /* ours: a stray write to shm cannot steer the memset */

	if (upto <= head || upto > s->f_written[p] || upto - head > s->meta.cfg.ring_bytes)
		return;
	/* "0 = never claimed": producers rely on zeroed bytes (layout.h, step 5) */
	memset(ring_at(s, p, head), 0, upto - head);
	s->f_head[p] = upto;
	store_release(&cp->head, upto); /* pairs: producers' load-acquire before writing */
	wake_waiters(&cp->head_seq, &cp->head_waiters);
}

void shm_count_batch(struct shm *s, uint32_t p, uint32_t records, uint64_t bytes)
{
	struct shm_part *cp = &s->parts[p];

	store_relaxed(&cp->records, load_relaxed(&cp->records) + records);
	store_relaxed(&cp->bytes, load_relaxed(&cp->bytes) + bytes);
	store_relaxed(&cp->batches, load_relaxed(&cp->batches) + 1);
}

void shm_count_retention(struct shm *s, uint32_t p, uint64_t segments, uint64_t bytes)
{
	struct shm_part *cp = &s->parts[p];

	store_relaxed(&cp->retention_segments, load_relaxed(&cp->retention_segments) + segments);
	store_relaxed(&cp->retention_bytes, load_relaxed(&cp->retention_bytes) + bytes);
}
