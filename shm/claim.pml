/* PLACEHOLDER: header comment written below */

/* ---- configuration ---------------------------------------------------------------------- */

#ifndef NPROD
#define NPROD 3			/* producer processes (one thread = one lane each) */
#endif
#ifndef NCLAIM0
#define NCLAIM0 2		/* claims made by producer 0 */
#endif
#ifndef NCLAIMN
#define NCLAIMN 1		/* claims made by each other producer */
#endif
#define NCLAIM (NCLAIM0 > NCLAIMN -> NCLAIM0 : NCLAIMN)
#define NCL(i) ((i) == 0 -> NCLAIM0 : NCLAIMN)
#define NV 6			/* >= NPROD * max(NCLAIM0, NCLAIMN): ghost claim ids */
#ifndef RING
#define RING 4			/* ring size in units */
#endif
#ifndef HDR
#define HDR 1			/* SHMWAL_FRAME_HDR in units (minimum frame) */
#endif
#ifndef SMIN
#define SMIN 1			/* frame sizes a producer may claim: SMIN or SMAX units */
#endif
#ifndef SMAX
#define SMAX 1
#endif
#ifndef MAXF
#define MAXF (RING / 2)		/* cfg_max_frame: at most half the ring (meta.c) */
#endif
#ifndef MAXDEAD
#define MAXDEAD 1		/* producers that may be SIGKILLed in one run */
#endif
#ifndef MAXGIVEUP
#define MAXGIVEUP 1		/* claims that may be given up (-ESHUTDOWN after the fetch-add) */
#endif

/* ---- shared memory ---------------------------------------------------------------------- */

/* A ring unit holds 0 (never written since freed), a frame word W(state, slot, len) at a
 * frame's first unit, or BODY(v): the header fields / key / value bytes claim v wrote. */
#define CLAIMED 1
#define COMMITTED 2
#define ABORTED 3
#define PAD 4
#define BODYST 5
#define SLOT_NONE 3
#define W(st, slot, len) ((st) * 32 + (slot) * 8 + (len))
#define WST(w) ((w) / 32)
#define WSLOT(w) (((w) / 8) % 4)
#define WLEN(w) ((w) % 8)
#define BODY(v) (BODYST * 32 + (v))
#define UNKNOWN 255		/* LANE_UNKNOWN; otherwise lane.claim is 0 or lsn + 1 */
#define IX(x) ((x) % RING)	/* ring_at(): lsn & ring_mask */

byte tail, head;		/* part.tail, part.head (absolute LSNs, in units) */
byte cell[RING];		/* ring bytes: words, body bytes */
byte pay[RING];			/* payload of the frame starting at this unit (step 7) */
byte flsn[RING];		/* the frame header's lsn field (checked by shm_consume) */
byte lclaim[NPROD];		/* lane.claim */
byte lpart[NPROD];		/* lane.part (always partition 0 unless OTHER_PART) */
bool alive[NPROD];		/* the slot's OFD lock is held */

/* ---- flusher-private -------------------------------------------------------------------- */
byte written;			/* f_written (= part.written after shm_release) */

/* ---- model bookkeeping (ghosts: not part of the protocol) ------------------------------- */
bool dirty;			/* a producer changed shared state since the flusher looked */
bool fagain, fbusy;		/* the flusher has more to do / is inside an iteration */
byte ndead, ngiveup, ndone;
/* per claim v = producer * NCLAIM + seq */
byte glsn[NV], gsize[NV], gstep[NV];	/* gstep: 2..7 in progress, 8 committed, 9 aborted */
#define GAVEUP 10
byte infile[NV];		/* times claim v's record was consumed into the file */
bool garbage_in_ring, torn_record, duplicate_record, lost_record, not_drained;
bool pad_over_live_claim, pad_over_commit, write_after_repair;

/* ---- checks ----------------------------------------------------------------------------- */

/* The flusher is about to overwrite [from, from + n): no claim of a live producer that may
 * still write (fetch-added, not yet committed, aborted or given up) may intersect it. */
inline check_no_live_claim(from, n)
{
	gv = 0;
	do
	:: gv < NV ->
		if
		:: (gstep[gv] >= 2 && gstep[gv] <= 7 && alive[gv / NCLAIM] &&
		    glsn[gv] < from + n && from < glsn[gv] + gsize[gv]) ->
			pad_over_live_claim = true
		:: (gstep[gv] == 8 && infile[gv] == 0 &&
		    glsn[gv] < from + n && from < glsn[gv] + gsize[gv]) ->
			pad_over_commit = true
		:: else -> skip
		fi;
		gv++
	:: else -> break
	od;
	gv = 0;
	assert(!pad_over_live_claim);
	assert(!pad_over_commit)
}

/* Every producer write into the ring: the flusher has not consumed past the frame (so the
 * bytes were not padded-and-consumed or freed under us) and the word at lsn is what this claim
 * last put there (nobody wrote PAD/ABORTED over it). */
#define OWNS(expect) (written <= lsn && cell[IX(lsn)] == (expect))

/* ---- producer: layout.h "claim protocol", producer.c claim_steps / frame_commit ---------- */

#ifndef KILLABLE
#define KILLABLE 7		/* bit i: producer i may be killed */
#endif
#define CANDIE (ndead < MAXDEAD && ((KILLABLE >> me) & 1))
#define MAYDIE if :: skip :: CANDIE -> goto died fi
#ifdef GIVEUP
#define MAYGIVEUP if :: skip :: (ngiveup < MAXGIVEUP) -> goto gaveup fi
#else
#define MAYGIVEUP skip
#endif

proctype producer(byte me)
{
	byte seq, v, lsn, sz, k;

	do
	:: seq < NCL(me) ->
		v = me * NCLAIM + seq;
		if
		:: sz = SMIN
		:: SMAX != SMIN -> sz = SMAX
		fi;
#ifdef OTHER_PART
		/* a claim on another partition: only its lane values matter to partition 0 */
		if
		:: skip
		:: ndead == 0 -> goto otherpart
		fi;
#endif
		/* 1. lane.part = p (release); lane.claim = LANE_UNKNOWN */
#ifdef OTHER_PART
		atomic { lpart[me] = 0; dirty = true };
		atomic { lclaim[me] = UNKNOWN; dirty = true };
#else
		atomic { lpart[me] = 0; lclaim[me] = UNKNOWN; dirty = true };
#endif
		MAYDIE;
		/* 2. lsn = fetch_add(&part.tail, size) */
		atomic {
			lsn = tail; tail = tail + sz; dirty = true;
			glsn[v] = lsn; gsize[v] = sz; gstep[v] = 2
		};
		MAYDIE;
		MAYGIVEUP;	/* saw stop after the fetch-add: lane back to 0, claim given up */
		/* 3. lane.claim = lsn | 1 (release) */
		atomic { lclaim[me] = lsn + 1; dirty = true; gstep[v] = 3 };
		MAYDIE;
		/* 4. wait until lsn + size <= head + ring_bytes (wait_space); may die or give up
		 * (-ESHUTDOWN) while waiting */
		if
		:: lsn + sz <= head + RING -> skip
		:: CANDIE -> goto died
#ifdef GIVEUP
		:: ngiveup < MAXGIVEUP -> goto gaveup
#endif
		fi;
		MAYDIE;
		/* 5. frame word = CLAIMED(len, slot) */
		atomic {
			write_after_repair = !OWNS(0); assert(!write_after_repair);
			cell[IX(lsn)] = W(CLAIMED, me, sz); dirty = true; gstep[v] = 5
		};
		MAYDIE;
		/* 6. lane.claim = 0 (release) */
		atomic { lclaim[me] = 0; dirty = true; gstep[v] = 6 };
		MAYDIE;
		/* 7. header fields (frame_fill: lsn, timestamp), key, value. The units after the
		 * first are written one at a time (the flusher's scan for Z can see them); the first
		 * unit's payload and lsn field are read only after the word says COMMITTED, so they
		 * are stored with step 8 (equivalent, fewer states). */
		k = 1;
		do
		:: k < sz ->
			MAYDIE;
			atomic {
				write_after_repair = !(OWNS(W(CLAIMED, me, sz)) && cell[IX(lsn + k)] == 0);
				assert(!write_after_repair);
				cell[IX(lsn + k)] = BODY(v); dirty = true; k++
			}
		:: else -> break
		od;
		k = 0;
		MAYDIE;
		/* 8. frame word = COMMITTED (release), or shmwal_abort(): ABORTED */
		if
		:: atomic {
			write_after_repair = !OWNS(W(CLAIMED, me, sz)); assert(!write_after_repair);
			pay[IX(lsn)] = v + 1; flsn[IX(lsn)] = lsn;		/* step 7 */
			cell[IX(lsn)] = W(COMMITTED, me, sz); dirty = true; gstep[v] = 8
		   }
		:: atomic {
			write_after_repair = !OWNS(W(CLAIMED, me, sz)); assert(!write_after_repair);
			k = 1;
			do	/* body zeroed, header built aside, word stored last */
			:: k < sz -> cell[IX(lsn + k)] = 0; k++
			:: else -> break
			od;
			k = 0; pay[IX(lsn)] = 0; flsn[IX(lsn)] = lsn;
			cell[IX(lsn)] = W(ABORTED, me, sz); dirty = true; gstep[v] = 9
		   }
		fi;
		lsn = 0; sz = 0; v = 0;
		seq++;
		MAYDIE
#ifdef OTHER_PART
		;
		goto nextclaim;
otherpart:
		atomic { lpart[me] = 1; dirty = true };
		atomic { lclaim[me] = UNKNOWN; dirty = true };
		/* an LSN of partition 1: same number space, unrelated positions */
		if
		:: atomic { lclaim[me] = OTHER_Y1 + 1; dirty = true }
		:: atomic { lclaim[me] = OTHER_Y2 + 1; dirty = true }
		fi;
		atomic { lclaim[me] = 0; dirty = true };
		seq++; sz = 0; v = 0;
nextclaim:
		skip
#endif
	:: else -> break
	od;
	/* exit, or shmwal_close(): the slot turns DEAD and the lock is dropped; to the flusher's
	 * probe this looks exactly like a death */
	atomic { alive[me] = false; ndone++; dirty = true };
	goto out;
died:	/* SIGKILL: the process stops for good; then its OFD lock is gone */
	atomic { alive[me] = false; ndead++; ndone++; dirty = true };
	goto out;
#ifdef GIVEUP
gaveup:	/* -ESHUTDOWN after the fetch-add (stop seen, or wait_space gave up) */
	atomic {
		lclaim[me] = 0; gstep[v] = GAVEUP; ngiveup++; ndone++; dirty = true
	};
#endif
out:
	skip
}

/* ---- flusher: persist/flusher.c loop, shm/consume.c ------------------------------------- */

proctype flusher()
{
	byte start, pos, t, w, v, limit, y, c, z, piece, from, k, gv;
	bool fixed, moved, ok, tclamp, lclamp, stop;

end_idle:
	do
	:: atomic {
		(fagain || dirty) ->
		fbusy = true; fagain = false; dirty = false; moved = false;
		/* shm_consume: start = f_written; tail = load-acquire, clamped to one lap */
		start = written; pos = written; t = tail;
		if
		:: t > head + RING -> t = head + RING; tclamp = true
		:: else -> skip
		fi
	   };
		do
		:: atomic {
			/* shm_consume's loop: word = load-acquire(word at pos) with its validity
			 * checks; COMMITTED, ABORTED and PAD frames go into the batch (a COMMITTED
			 * record is checked against what its owner wrote). A run of such frames is
			 * read in one step: see "granularity" at the top. */
			stop = false;
			do
			:: pos >= t -> stop = true; break
			:: pos < t ->
				w = cell[IX(pos)];
				if
				:: w != 0 ->
					garbage_in_ring = !(WST(w) >= CLAIMED && WST(w) <= PAD &&
					    WLEN(w) >= HDR && WLEN(w) <= MAXF && WLEN(w) <= t - pos &&
					    (WST(w) == CLAIMED || flsn[IX(pos)] == pos));
					assert(!garbage_in_ring)
				:: else -> skip
				fi;
				if
				:: WST(w) >= COMMITTED ->
					if
					:: WST(w) == COMMITTED ->
						v = pay[IX(pos)] - 1;
						torn_record = (pay[IX(pos)] == 0 || v >= NV ||
						    v / NCLAIM != WSLOT(w) || glsn[v] != pos ||
						    gsize[v] != WLEN(w) || gstep[v] != 8);
						k = 1;
						do
						:: k < WLEN(w) ->
							torn_record = torn_record ||
							    cell[IX(pos + k)] != BODY(v);
							k++
						:: else -> break
						od;
						k = 0;
						assert(!torn_record);
						duplicate_record = infile[v] != 0;
						assert(!duplicate_record);
						infile[v]++;
						v = 0
					:: else -> skip
					fi;
					pos = pos + WLEN(w); w = 0;
#ifndef ONEBATCH
					if	/* the batch may end here (max_bytes, room) */
					:: skip
					:: stop = true; break
					fi
#else
					skip
#endif
				:: else -> break	/* 0 or CLAIMED at pos */
				fi
			od
		   };
			if
			:: stop -> break
			:: else -> skip
			fi;
			if
			:: false -> skip
			:: else ->			/* 0 or CLAIMED: stuck_at, batch start only */
				if
				:: pos > start -> break
				:: else -> skip
				fi;
				fixed = false;
				if
				:: w != 0 ->
					/* repair_claimed: slot_is_dead(slot of the word) */
					if
					:: !alive[WSLOT(w)] -> fixed = true
					:: else -> skip
#ifdef BUG_ABORT_LIVE
					:: true -> fixed = true	/* negative control */
#endif
					fi;
					if
					:: fixed ->
						atomic {	/* frame_make_pad(ABORTED) */
#ifdef FIX_CLAIMED_RECHECK
							/* proposed fix: the word again, after the probe */
							if
							:: cell[IX(pos)] != w -> goto abortdone
							:: else -> skip
							fi;
#endif
							check_no_live_claim(pos, WLEN(w));
							k = 1;
							do
							:: k < WLEN(w) -> cell[IX(pos + k)] = 0; k++
							:: else -> break
							od;
							k = 0; pay[IX(pos)] = 0; flsn[IX(pos)] = pos;
							cell[IX(pos)] = W(ABORTED, WSLOT(w), WLEN(w));
abortdone:
							skip
						}
					:: else -> skip
					fi
				:: else ->
					/* repair_gap(pos, tail) */
					limit = (t - pos > RING -> pos + RING : t);
					lclamp = tclamp;
					k = 0;
					do
					:: k < NPROD ->
						c = lclaim[k];		/* load-acquire claim */
						ok = (c != 0);
#ifdef OTHER_PART
						if			/* then load-acquire part */
						:: ok -> ok = (lpart[k] == 0)
						:: else -> skip
						fi;
#endif
						if
						:: ok && c != UNKNOWN ->
							y = c - 1;
							ok = !(y < pos || y >= limit)
						:: ok && c == UNKNOWN -> y = pos
						:: else -> skip
						fi;
						if
						:: ok -> ok = alive[k]	/* slot_is_dead() probe */
						:: else -> skip
						fi;
						if
						:: ok -> limit = y; lclamp = false
						:: else -> skip
						fi;
						c = 0; y = 0; ok = false;
						if
						:: limit == pos -> break	/* a live claim at pos */
						:: else -> k++
						fi
					:: else -> break
					od;
					k = 0;
					if
					:: limit == pos -> skip
					:: else ->
#ifndef BUG_NO_GAP_RECHECK
						if	/* the word at pos, after the lanes */
						:: cell[IX(pos)] != 0 -> goto gapdone
						:: else -> skip
						fi;
#endif
						/* Z: first published word after pos, from pos + HDR */
						z = pos + HDR;
						do
						:: z < limit && cell[IX(z)] != 0 -> break
						:: z < limit && cell[IX(z)] == 0 -> z++
						:: z >= limit -> break
						od;
						if
						:: z > limit -> z = limit
						:: else -> skip
						fi;
#ifdef FIX_CUT
						/* proposed fix: a gap that runs into the lap clamp is padded only up
						 * to HDR before the clamp (see the top of this file) */
						if
						:: z == limit && lclamp -> z = limit - HDR
						:: else -> skip
						fi;
#endif
						if
						:: z - pos < HDR -> goto gapdone	/* too short: look again */
						:: else -> skip
						fi;

						/* pad_range(pos, z) */
						from = pos;
						do
						:: from < z ->
							piece = z - from;
							if
							:: piece > MAXF -> piece = MAXF
							:: else -> skip
							fi;
							if
							:: z - from - piece > 0 && z - from - piece < HDR ->
								piece = piece - HDR
							:: else -> skip
							fi;
							atomic {	/* frame_make_pad(PAD) */
								check_no_live_claim(from, piece);
								k = 1;
								do
								:: k < piece -> cell[IX(from + k)] = 0; k++
								:: else -> break
								od;
								k = 0; pay[IX(from)] = 0; flsn[IX(from)] = from;
								cell[IX(from)] = W(PAD, SLOT_NONE, piece)
							};
							from = from + piece
						:: else -> break
						od;
						fixed = true;
gapdone:
						z = 0; from = 0; piece = 0
					fi;
					limit = 0; lclamp = false
				fi;
				w = 0;
				if
				:: fixed -> skip	/* repaired: read the word at pos again */
				:: else -> break
				fi
			fi
		od;
		/* shm_release (written is flusher-private in C: producers never read it), then
		 * shm_free after the sync: sync=always/none free now, sync=interval maybe later, a
		 * quiet loop always syncs. Zero [head, written), then store head. */
		atomic {
			if
			:: pos > start -> written = pos; moved = true
			:: else -> skip
			fi;
			if
			:: head < written ->
				if
				:: true ->
					k = head;
					do
					:: k < written ->
						cell[IX(k)] = 0; pay[IX(k)] = 0; flsn[IX(k)] = 0; k++
					:: else -> break
					od;
					k = 0;
					head = written;
					moved = true
#ifndef NOLAG
				:: moved -> skip	/* free later */
#endif
				fi
			:: else -> skip
			fi;
			fagain = moved; fbusy = false;
			start = 0; pos = 0; t = 0; moved = false; fixed = false; tclamp = false;
			stop = false
		}
	od
}

/* ---- the end: everything quiet ---------------------------------------------------------- */

active proctype quiescence()
{
	byte v;

end_wait:
	atomic {
		(ndone == NPROD && !dirty && !fagain && !fbusy) ->
		/* all producers finished or dead and the flusher has nothing left to try */
		not_drained = !(written == tail && head == written);
		assert(!not_drained);
		v = 0;
		do
		:: v < NV ->
			lost_record = lost_record || (gstep[v] == 8 && infile[v] != 1);
			v++
		:: else -> break
		od;
		assert(!lost_record)
	}
}

init
{
	byte i;

	atomic {
		i = 0;
		do
		:: i < NPROD -> alive[i] = true; i++
		:: else -> break
		od;
		i = 0;
		do
		:: i < NPROD -> run producer(i); i++
		:: else -> break
		od;
		run flusher()
	}
}
