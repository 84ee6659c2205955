/*
 * claim.pml - SPIN model of shmwal's claim / commit / repair protocol (one partition).
 *
 * Run by scripts/check-model. Sources: shm/layout.h ("claim protocol" 1-8 and the
 * synchronization table), shm/producer.c (claim_steps, wait_space, frame_commit,
 * shmwal_abort), shm/consume.c (shm_consume, stuck_at, repair_claimed, repair_gap, pad_range,
 * shm_release, shm_free), shm/registry.c (slot_is_dead) and persist/flusher.c (the loop).
 *
 * WHAT IS MODELLED
 *   NPROD producer processes with one lane each, making NCLAIM0 (producer 0) / NCLAIMN
 *   appends of SMIN or SMAX units, on one partition whose ring holds RING units, so that
 *   claims wrap and wait for space; and one flusher. Any producer in KILLABLE may be
 *   SIGKILLed (at most MAXDEAD of them) between any two of its steps, including while it
 *   waits for space: it stops for good and `alive` turns false in the same step, i.e. the
 *   flusher's probe (the OFD lock) sees the death only after the last store. A producer that
 *   finishes exits (or calls shmwal_close: slot DEAD), which the probe cannot tell from a
 *   death either. At most MAXABORT appends end in shmwal_abort(); with GIVEUP at most
 *   MAXGIVEUP claims are given up after the fetch-add (-ESHUTDOWN: lane.claim = 0, nothing
 *   written; a stopping flusher or wait_space's timeout path).
 *   Two configurations are checked: "unit" (HDR = 1: every frame and pad is one unit, i.e.
 *   a 32-byte frame) and "two sizes" (a unit is 16 bytes, HDR = 2 is the 32-byte header,
 *   frames of 48 or 64 bytes, max_frame 64 = ring / 2 >= 2 * HDR, ring 128 bytes). In the
 *   unit configuration max_frame is one unit: below meta.c's 2 * HDR, which only matters to
 *   pad_range's splitting, and with every frame exactly HDR long no split can go wrong.
 *
 * C -> MODEL
 *   producer step 1  store part; store claim = LANE_UNKNOWN   one step: lpart = 0,
 *                                                            lclaim = UNKNOWN
 *            step 2  lsn = fetch_add(&tail, size)            atomic { lsn = tail; tail += sz }
 *            (stop seen after the fetch-add)                 GIVEUP: lclaim = 0, give up
 *            step 3  claim = lsn | 1                         lclaim = lsn + 1
 *            step 4  wait lsn + size <= head + ring_bytes    guard (or killed / gives up there)
 *            step 5  word = CLAIMED(len, slot)               cell[lsn] = W(CLAIMED, me, sz)
 *            step 6  claim = 0                               lclaim = 0
 *            step 7  frame_fill, key, value (and crc)        units 1.. of the frame = BODY(v);
 *                                                            unit 0's payload/lsn field with 8
 *            step 8  word = COMMITTED                        pay = v+1, flsn = lsn, COMMITTED
 *            shmwal_abort                                    body zeroed, ABORTED
 *   flusher  shm_consume: tail (clamped to f_head + ring)   round start: t = min(tail, head+RING)
 *            word at pos: COMMITTED/ABORTED/PAD, -EIO checks consume into the batch (+ checks)
 *            batch ends: max_bytes, room, CLAIMED/0 word     nondeterministic / at the word
 *            stuck_at (only at the batch start)              at once, at any later round: the
 *                                                            probe delay is not modelled
 *            repair_claimed: slot_is_dead, frame_make_pad    probe alive[slot]; ABORTED
 *            repair_gap: per lane load claim, part, probe    one step per lane read and probe
 *            ... word at pos again, Z scan, pad_range        one step (see GRANULARITY)
 *            shm_release, sync, shm_free (zero, store head)  free now, or later if the round
 *                                                            moved something (sync=interval)
 *   Every producer step that changes shared state sets `dirty`; the flusher starts a round
 *   only when `dirty` or when its last round moved something (so "nothing can move any
 *   more" is a real SPIN end state, and a producer stuck forever is an invalid end state).
 *
 * ABSTRACTED AWAY
 *   - Memory ordering: the model is sequentially consistent. The acquire/release pairs that
 *     make the C code behave like this are argued in layout.h's table and consume.c's top.
 *   - One partition (lane.part never changes: a thread appending to several partitions is
 *     not modelled), one lane per producer, slots never reused (no generations, no
 *     reclamation in shm_registry_poll), no stop handshake beyond GIVEUP, no readers, no
 *     flusher death or adoption, no durable publication, no CRC (a payload value per frame
 *     instead), lengths are whole units, PROBE_DELAY and stall logging are not modelled.
 *
 * GRANULARITY
 *   Every load or store of shared state that another process can race with is its own step,
 *   except these, where the coarser step cannot hide a violation of the properties below:
 *   - a run of consumable frames in shm_consume is read in one step: their words no longer
 *     change, consuming is flusher-private, and the batch may end after any frame;
 *   - repair_gap's re-load of the word at pos, the scan for Z and pad_range are one step:
 *     after the lane scan no live claim in [pos, limit) can publish (it is either published
 *     already or its lane blocked), and if one could, check_overwrite() flags any PAD that
 *     meets a claim still being written, whatever the timing;
 *   - frame_make_pad, shmwal_abort's stores and shm_free's zeroing are one step each (only
 *     the owner, whose writes are checked, could observe the intermediate states);
 *   - step 7's stores are one step; unit 0's payload is stored with step 8, since nobody
 *     reads it before the word says COMMITTED.
 *
 * PROPERTIES (each assert names its flag, so pan's message says which one broke)
 *   1 lost_record, duplicate_record: at the end every committed record is in the file
 *     exactly once (checked for every producer, killed after its commit or not).
 *   2 torn_record: a COMMITTED frame consumed has its owner's payload and body, was committed
 *     (not left by a producer killed before step 8) and sits at its owner's LSN;
 *     garbage_in_ring: nothing shm_consume would reject (-EIO) is ever at pos.
 *   3 pad_over_live_claim, pad_over_commit: PAD/ABORTED is never written over a claim a live
 *     producer is still writing, nor over a committed record not yet consumed;
 *     write_after_repair: every producer store (steps 5, 7, 8, abort) goes to bytes it still
 *     owns (the flusher has not consumed past them, so not padded+consumed, nor freed; and its
 *     word is still what it last stored).
 *   4 not_drained (+ SPIN's invalid end states): when every producer has finished or died
 *     and the flusher can do nothing more, written == tail == head; no producer waits forever.
 *
 * MACROS
 *   FIX_RECHECK_CLAIMED, FIX_LAP_CUT  the fixes proposed for the two defects below
 *   BUG_NO_GAP_RECHECK, BUG_ABORT_LIVE negative controls: SPIN must find a violation
 *   NO_DRAIN_CHECK                    skip property 4 (to see defect 2 end in corruption)
 *   NPROD NCLAIM0 NCLAIMN RING HDR SMIN SMAX MAXDEAD KILLABLE MAXABORT GIVEUP MAXGIVEUP
 *
 * DEFECTS THE MODEL FOUND IN THE C CODE, both now fixed in shm/consume.c as proposed below;
 * scripts/check-model keeps reproducing the old behaviour, to show the model catches it
 *   1 repair_claimed() acts on a stale word. shm_consume loads the word (CLAIMED by slot s)
 *     and stuck_at -> repair_claimed probes slot_is_dead(s) later; if in between the producer
 *     stores COMMITTED and then exits, closes (slot DEAD) or is killed, the probe says dead
 *     and frame_make_pad writes ABORTED over the committed record: a record whose commit
 *     returned 0 is lost (pad_over_commit). Fix (FIX_RECHECK_CLAIMED): after the probe, load
 *     the word again and abort only if it is still the CLAIMED word that was probed.
 *   2 repair_gap() can pad up to the one-lap clamp (f_head + ring_bytes, not a frame boundary)
 *     through a dead claim that straddles it; the flusher then stands inside that claim, and
 *     its scan for Z starts HDR bytes on, assuming pos is a frame start. If the rest of the
 *     dead claim is shorter than a header the partition stalls ("too short: look again"),
 *     and once a live producer publishes the next frame within HDR of pos, the scan skips
 *     its word and pads over it (pad_over_live_claim). Fix (FIX_LAP_CUT): when Z is the
 *     clamp, pad only up to clamp - HDR; then HDR bytes before the clamp belong to dead or
 *     given-up claims, so the next live frame is at least HDR past the new pos.
 */

/* ==== configuration (scripts/check-model passes -D...) ==================================== */

#ifndef NPROD
#define NPROD 2			/* producer processes, one appending thread (= lane) each */
#endif
#ifndef NCLAIM0
#define NCLAIM0 2		/* appends made by producer 0 */
#endif
#ifndef NCLAIMN
#define NCLAIMN 2		/* appends made by each other producer */
#endif
#define NCLAIM (NCLAIM0 > NCLAIMN -> NCLAIM0 : NCLAIMN)
#define NCL(i) ((i) == 0 -> NCLAIM0 : NCLAIMN)
#define NV 6			/* ghost claim ids v = producer * NCLAIM + seq; >= NPROD * NCLAIM */
#ifndef RING
#define RING 2			/* ring_bytes, in units */
#endif
#ifndef HDR
#define HDR 1			/* SHMWAL_FRAME_HDR in units: the smallest frame */
#endif
#ifndef SMIN
#define SMIN 1			/* each append claims SMIN or SMAX units */
#endif
#ifndef SMAX
#define SMAX 1
#endif
#ifndef MAXF
#define MAXF (RING / 2)		/* cfg_max_frame(): <= ring / 2, >= 2 * HDR (meta.c) */
#endif
#ifndef MAXDEAD
#define MAXDEAD 1		/* producers SIGKILLed in one run */
#endif
#ifndef KILLABLE
#define KILLABLE 255		/* bit i set: producer i may be killed */
#endif
#ifndef MAXABORT
#define MAXABORT 1		/* appends that end in shmwal_abort() instead of a commit */
#endif
#ifndef MAXGIVEUP
#define MAXGIVEUP 1		/* with GIVEUP: claims given up after the fetch-add */
#endif

/* ==== shared memory ======================================================================= */

/* One ring unit holds 0 (never written since shm_free zeroed it), a frame word at a frame's
 * first unit, or BODY(v): header/key/value bytes that claim v wrote after its first unit. */
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
#define UNKNOWN 255		/* LANE_UNKNOWN; else lane.claim is 0 (idle) or lsn + 1 (lsn | 1) */
#define IX(x) ((x) % RING)	/* ring_at(): lsn & ring_mask (the mirrored mapping) */

byte tail;			/* part.tail */
byte head;			/* part.head (= the flusher's f_head) */
byte cell[RING];		/* the ring */
byte pay[RING];			/* payload of the frame that starts at this unit (step 7) */
byte flsn[RING];		/* that frame's header lsn field (shm_consume checks it) */
byte lclaim[NPROD];		/* lane.claim of each producer's one lane */
byte lpart[NPROD];		/* lane.part (one partition: always 0) */
bool alive[NPROD];		/* the slot's OFD lock is held (slot_lock_free() == 0) */

byte written;			/* flusher-private f_written (producers never read part.written) */

/* ==== model bookkeeping: not part of the protocol ======================================== */

bool dirty;			/* a producer changed shared state since the flusher last looked */
bool fagain;			/* the flusher's last round moved something: go round again */
bool fbusy;			/* the flusher is inside a round */
byte ndead, ngiveup, nabort, ndone;
byte glsn[NV], gsize[NV];	/* claim v's LSN and size once fetch-added */
byte gstep[NV];			/* 0 not yet; 2..7 in progress; COMMITTED_V; ABORTED_V; GAVEUP_V */
#define COMMITTED_V 8
#define ABORTED_V 9
#define GAVEUP_V 10
byte infile[NV];		/* times claim v's record went into the file */
byte file[NV];			/* the file: records (v + 1) in the order written */
byte nfile;
/* one flag per property, so that pan names the broken one */
bool garbage_in_ring;		/* shm_consume would return -EIO ("a producer wrote outside") */
bool torn_record;		/* a COMMITTED frame whose payload/body is not its owner's */
bool duplicate_record;		/* a record consumed twice */
bool lost_record;		/* a committed record missing from the file at the end */
bool not_drained;		/* all quiet, but written != tail or head != written */
bool pad_over_live_claim;	/* PAD/ABORTED written over bytes a live producer may still write */
bool pad_over_commit;		/* PAD/ABORTED written over a committed, unconsumed record */
bool write_after_repair;	/* a producer wrote where it no longer owns the ring bytes */

/* The flusher is about to overwrite [from, from + n) of the stream. */
inline check_overwrite(from, n)
{
	gv = 0;
	do
	:: gv < NV ->
		if
		:: gstep[gv] >= 2 && gstep[gv] < COMMITTED_V && alive[gv / NCLAIM] &&
		   glsn[gv] < from + n && from < glsn[gv] + gsize[gv] ->
			pad_over_live_claim = true
		:: gstep[gv] == COMMITTED_V && infile[gv] == 0 &&
		   glsn[gv] < from + n && from < glsn[gv] + gsize[gv] ->
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

/* frame_make_pad(): body zeroed, header built, word stored last (one step: see the top) */
inline make_pad(from, n, state, slot)
{
	check_overwrite(from, n);
	k = 1;
	do
	:: k < n -> cell[IX(from + k)] = 0; k++
	:: else -> break
	od;
	k = 0;
	pay[IX(from)] = 0;
	flsn[IX(from)] = from;
	cell[IX(from)] = W(state, slot, n)
}

/* ==== producer: layout.h "claim protocol", producer.c claim_steps() and frame_commit() ==== */

/* Each producer write: the flusher has not consumed past the frame (so its bytes were neither
 * padded-and-consumed nor freed under it), and the word at lsn is what this claim last stored
 * there (nobody wrote PAD or ABORTED over it). */
#define OWNS(expect) (written <= lsn && cell[IX(lsn)] == (expect))
#define CANDIE (ndead < MAXDEAD && ((KILLABLE >> me) & 1))
#define MAYDIE if :: skip :: CANDIE -> goto died fi
#ifdef GIVEUP
#define MAYGIVEUP if :: skip :: ngiveup < MAXGIVEUP -> goto gaveup fi
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
		/* 1. lane.part = p (release); lane.claim = LANE_UNKNOWN */
		atomic {
			lpart[me] = 0; lclaim[me] = UNKNOWN; dirty = true;
			printf("P%d 1: lane.claim = UNKNOWN\n", me)
		};
		MAYDIE;
		/* 2. lsn = fetch_add(&part.tail, size) */
		atomic {
			lsn = tail; tail = tail + sz; dirty = true;
			glsn[v] = lsn; gsize[v] = sz; gstep[v] = 2;
			printf("P%d 2: fetch-add: claim [%d,%d), tail = %d\n", me, lsn, lsn + sz, tail)
		};
		MAYDIE;
		MAYGIVEUP;	/* stop seen after the fetch-add: lane.claim = 0, return -ESHUTDOWN */
		/* 3. lane.claim = lsn | 1 (release) */
		atomic {
			lclaim[me] = lsn + 1; dirty = true; gstep[v] = 3;
			printf("P%d 3: lane.claim = %d (lsn %d + 1)\n", me, lsn + 1, lsn)
		};
		MAYDIE;
		/* 4. wait until lsn + size <= head + ring_bytes (wait_space); a producer may be
		 * killed while it waits, or give up (-ESHUTDOWN: lane.claim = 0) */
		if
		:: lsn + sz <= head + RING
		:: CANDIE -> goto died
#ifdef GIVEUP
		:: ngiveup < MAXGIVEUP -> goto gaveup
#endif
		fi;
		MAYDIE;
		/* 5. frame word = CLAIMED(len, slot) */
		atomic {
			write_after_repair = !OWNS(0);
			assert(!write_after_repair);
			cell[IX(lsn)] = W(CLAIMED, me, sz); dirty = true; gstep[v] = 5;
			printf("P%d 5: word at %d = CLAIMED (head %d)\n", me, lsn, head)
		};
		MAYDIE;
		/* 6. lane.claim = 0 (release) */
		atomic {
			lclaim[me] = 0; dirty = true; gstep[v] = 6;
			printf("P%d 6: lane.claim = 0\n", me)
		};
		MAYDIE;
		/* 7. header fields, key, value. The units after the first (visible to the flusher's
		 * scan for Z) are written here; the first unit's payload and lsn field are read only
		 * once the word says COMMITTED, so they are stored with step 8. */
		if
		:: sz > 1 ->
			atomic {
				write_after_repair = !OWNS(W(CLAIMED, me, sz));
				k = 1;
				do
				:: k < sz ->
					write_after_repair = write_after_repair ||
					    cell[IX(lsn + k)] != 0;
					cell[IX(lsn + k)] = BODY(v); k++
				:: else -> break
				od;
				k = 0;
				assert(!write_after_repair);
				dirty = true; gstep[v] = 7;
				printf("P%d 7: header and body of [%d,%d)\n", me, lsn, lsn + sz)
			};
			MAYDIE
		:: else -> skip
		fi;
		/* 8. frame word = COMMITTED (release); or shmwal_abort(): ABORTED */
		if
		:: atomic {
			write_after_repair = !OWNS(W(CLAIMED, me, sz));
			assert(!write_after_repair);
			pay[IX(lsn)] = v + 1; flsn[IX(lsn)] = lsn;	/* step 7, first unit */
			cell[IX(lsn)] = W(COMMITTED, me, sz); dirty = true; gstep[v] = COMMITTED_V;
			printf("P%d 8: word at %d = COMMITTED\n", me, lsn)
		   }
		:: nabort < MAXABORT ->
		   atomic {
			write_after_repair = !OWNS(W(CLAIMED, me, sz));
			assert(!write_after_repair);
			k = 1;
			do
			:: k < sz -> cell[IX(lsn + k)] = 0; k++
			:: else -> break
			od;
			k = 0; pay[IX(lsn)] = 0; flsn[IX(lsn)] = lsn;
			cell[IX(lsn)] = W(ABORTED, me, sz); dirty = true; gstep[v] = ABORTED_V;
			nabort++;
			printf("P%d 8: shmwal_abort: word at %d = ABORTED\n", me, lsn)
		   }
		fi;
		seq++; v = 0; lsn = 0; sz = 0;
		MAYDIE
	:: else -> break
	od;
	/* exit, or shmwal_close(): the slot turns DEAD and its lock is dropped, which the
	 * flusher's probe cannot tell from a death */
	atomic {
		alive[me] = false; ndone++; dirty = true;
		printf("P%d exits (slot lock dropped)\n", me)
	};
	goto out;
died:	/* SIGKILL: stops for good; then its OFD lock is free */
	atomic {
		alive[me] = false; ndead++; ndone++; dirty = true;
		printf("P%d KILLED (lane.claim %d)\n", me, lclaim[me])
	};
	goto out;
#ifdef GIVEUP
gaveup:	/* -ESHUTDOWN after the fetch-add: nothing will be written; later appends fail too */
	atomic {
		lclaim[me] = 0; gstep[v] = GAVEUP_V; ngiveup++; ndone++; dirty = true;
		printf("P%d gives the claim at %d up (-ESHUTDOWN), lane.claim = 0\n", me, lsn)
	};
#endif
out:
	skip
}

/* ==== flusher: persist/flusher.c's loop around shm/consume.c ============================== */

proctype flusher()
{
	byte start, pos, t, w, v, limit, y, c, z, piece, from, k, gv;
	bool fixed, moved, ok, tclamp, lclamp, stop;

end_idle:
	do
	:: atomic {
		(fagain || dirty) ->
		fbusy = true; fagain = false; dirty = false;
		/* shm_consume(): start = f_written; tail = load-acquire, clamped to one lap */
		start = written; pos = written; t = tail;
		if
		:: t > head + RING -> t = head + RING; tclamp = true
		:: else -> skip
		fi;
		printf("F  round: written %d head %d tail %d (clamped %d)\n", written, head, tail, t)
	   };
		do
		:: atomic {
			/* shm_consume()'s loop: word = load-acquire(word at pos), its validity
			 * checks; COMMITTED, ABORTED and PAD frames go into the batch. A run of
			 * such frames is one step (see the top). */
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
				:: WST(w) == COMMITTED ->
					/* the record, as pwrite() will copy it into the file */
					v = pay[IX(pos)] - 1;
					torn_record = pay[IX(pos)] == 0 || v >= NV ||
					    v / NCLAIM != WSLOT(w) || glsn[v] != pos ||
					    gsize[v] != WLEN(w) || gstep[v] != COMMITTED_V;
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
					file[nfile] = v + 1; nfile++;	/* appended to the file */
					v = 0
				:: else -> skip
				fi;
				if
				:: WST(w) >= COMMITTED ->
					printf("F  consume [%d,%d) state %d\n", pos, pos + WLEN(w), WST(w));
					pos = pos + WLEN(w); w = 0;
#ifndef ONEBATCH
					if	/* the batch may end here (max_bytes, room) */
					:: skip
					:: stop = true; break
					fi
#endif
				:: else -> break	/* 0 or CLAIMED */
				fi
			od
		   };
			if
			:: stop -> break
			:: pos > start -> break		/* stuck_at() only at the batch start */
			:: else -> skip
			fi;
			fixed = false;
			if
			:: w != 0 ->
				/* repair_claimed(): slot_is_dead(slot named by the word) */
				if
				:: !alive[WSLOT(w)] -> fixed = true
				:: else -> skip
#ifdef BUG_ABORT_LIVE
				:: true -> fixed = true	/* NEGATIVE CONTROL: abort a live claim */
#endif
				fi;
				if
				:: fixed ->
					atomic {
#ifdef FIX_RECHECK_CLAIMED
						/* proposed fix: load the word again after the probe */
						if
						:: cell[IX(pos)] != w -> goto claimed_done
						:: else -> skip
						fi;
#endif
						printf("F  probe said P%d is gone: ABORTED over [%d,%d)\n",
						    WSLOT(w), pos, pos + WLEN(w));
						make_pad(pos, WLEN(w), ABORTED, WSLOT(w));
claimed_done:
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
					c = lclaim[k];		/* load-acquire lane.claim */
					printf("F  gap at %d: lane.claim of P%d = %d\n", pos, k, c);
					ok = c != 0 && lpart[k] == 0;	/* then lane.part */
					if
					:: ok && c != UNKNOWN ->
						y = c - 1;
						ok = !(y < pos || y >= limit)
					:: ok && c == UNKNOWN -> y = pos
					:: else -> skip
					fi;
					if
					:: ok -> ok = alive[k];	/* slot_is_dead(): probe the lock */
						printf("F  probe P%d: alive %d\n", k, ok)
					:: else -> skip
					fi;
					if
					:: ok -> limit = y; lclamp = false
					:: else -> skip
					fi;
					c = 0; y = 0; ok = false;
					if
					:: limit == pos -> break	/* a live claim may own pos */
					:: else -> k++
					fi
				:: else -> break
				od;
				k = 0;
				if
				:: limit == pos -> skip
				:: else ->
					atomic {	/* one step: see the top */
#ifndef BUG_NO_GAP_RECHECK
						/* the word at pos again, after the lanes */
						if
						:: cell[IX(pos)] != 0 -> goto gap_done
						:: else -> skip
						fi;
#endif
						/* Z: the first non-zero word from pos + HDR on */
						z = pos + HDR;
						do
						:: z < limit && cell[IX(z)] == 0 -> z++
						:: else -> break
						od;
						if
						:: z > limit -> z = limit
						:: else -> skip
						fi;
#ifdef FIX_LAP_CUT
						/* proposed fix: a gap that runs into the one-lap clamp stops
						 * HDR short of it (see the top) */
						if
						:: z == limit && lclamp -> z = limit - HDR
						:: else -> skip
						fi;
#endif
						if
						:: z - pos < HDR -> goto gap_done	/* "look again" */
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
							printf("F  PAD [%d,%d)\n", from, from + piece);
							make_pad(from, piece, PAD, SLOT_NONE);
							from = from + piece
						:: else -> break
						od;
						fixed = true;
gap_done:
						z = 0; from = 0; piece = 0
					}
				fi;
				limit = 0; lclamp = false
			fi;
			w = 0;
			if
			:: fixed -> skip	/* repaired: read the word at pos again */
			:: else -> break
			fi
		od;
		/* shm_release(), then shm_free() once the sync is done: right away (sync=always,
		 * none) or later (sync=interval); a round that moved nothing always syncs. The
		 * free zeroes [head, written), then stores head. */
		atomic {
			moved = pos > start;
			written = pos;
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
					printf("F  free [%d,%d): head = %d\n", head, written, written);
					head = written;
					moved = true
#ifndef NOLAG
				:: moved -> skip	/* sync later */
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

/* ==== the end: all producers finished or dead, and the flusher has nothing left to try === */

active proctype quiescence()
{
	byte v;

end_wait:
	atomic {
		(ndone == NPROD && !dirty && !fagain && !fbusy) ->
#ifndef NO_DRAIN_CHECK
		not_drained = !(written == tail && head == written);
		assert(!not_drained);
#endif
		v = 0;
		do
		:: v < NV ->
			lost_record = lost_record || (gstep[v] == COMMITTED_V && infile[v] != 1);
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
		assert(NPROD <= 3 && NPROD * NCLAIM <= NV && MAXF <= 7 && SMAX <= MAXF);
		i = 0;
		do
		:: i < NPROD -> alive[i] = true; run producer(i); i++
		:: else -> break
		od;
		run flusher()
	}
}
