/* SPDX-License-Identifier: MIT */
/*
 * producer.c - attaching as a producer, and claim / write / commit (layout.h, "claim
 * protocol", is the contract this file implements step by step).
 *
 * The append path takes no lock and makes no system call: one fetch-add on the partition's
 * tail, plain stores on the calling thread's own lane (a cache line nobody else writes), a
 * load of head, the copy, the CRC and a store-release of the frame word. A system call
 * happens only when the ring is full (futex wait) or the flusher is asleep (futex wake).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry.h"
#include "shm_impl.h"
#include "shmwal_format.h"

struct shmwal {
	uint64_t id;		/* unique in this process, never reused: keys the TLS lane cache */
	int forked;		/* this is a fork()ed child's copy: unusable (handles_mu) */
	struct shm *s;
	uint32_t slot;
	uint64_t gen;
	struct shmwal *next;	/* in the list of open handles (handles_mu) */
	uint64_t lanes[SHM_LANES / 64]; /* lanes this handle's threads hold (handles_mu) */
	/* A head each partition had at some moment (it only grows), so that an append reads
	 * the flusher's head line only when this one is not enough for its claim: that line
	 * changes with every batch, and reading it on every append was a cache miss each time
	 * the flusher had moved. Store-release after a load-acquire of head, load-acquire
	 * before use: whoever uses a value has seen the ring bytes below it zeroed. */
	shmwal_atomic64 head_seen[SHMWAL_MAX_PARTITIONS];
};

/* ---- per-thread lanes -------------------------------------------------------------------- */

#define TLS_LANES 4

struct tls_lane {
	uint64_t hid;
	uint32_t lane;
};

static __thread struct tls_lane tls_lanes[TLS_LANES];
static pthread_mutex_t handles_mu = PTHREAD_MUTEX_INITIALIZER;
static struct shmwal *handles;
static uint64_t next_handle_id = 1;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static struct shmwal *handle_find_locked(uint64_t hid)
{
	struct shmwal *h;

	for (h = handles; h; h = h->next)
		if (h->id == hid)
			return h;
	return NULL;
}

static void lane_give_back_locked(struct shmwal *h, uint32_t lane)
{
	if (!(h->lanes[lane / 64] & (1ull << (lane % 64))))
		return;
	h->lanes[lane / 64] &= ~(1ull << (lane % 64));
	lane_release(h->s, lane);
}

/* Thread exit: give back the lanes this thread holds on handles still open. */
static void tls_destructor(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&handles_mu);
	for (int i = 0; i < TLS_LANES; i++) {
		struct shmwal *h = tls_lanes[i].hid ? handle_find_locked(tls_lanes[i].hid) : NULL;

		if (h)
			lane_give_back_locked(h, tls_lanes[i].lane);
		tls_lanes[i].hid = 0;
	}
	pthread_mutex_unlock(&handles_mu);
}

/*
 * fork(): the child inherits the handles, and with them the descriptor of DIR/lock that holds
 * each handle's slot lock (an OFD lock, shared by every descriptor of the open file
 * description). If the child kept it, a parent killed mid-claim would still look alive while
 * the child lives, and the flusher would wait for it. So the child drops its copies and its
 * handles become unusable (every call fails with -ECHILD); it may open new ones.
 */
static void atfork_prepare(void) { pthread_mutex_lock(&handles_mu); }
static void atfork_parent(void) { pthread_mutex_unlock(&handles_mu); }
static void atfork_child(void)
{
	struct shmwal *h;

	for (h = handles; h; h = h->next) {
		h->forked = 1;
		shm_forget_lock(h->s);
	}
	handles = NULL;
	memset(tls_lanes, 0, sizeof(tls_lanes));
	pthread_mutex_unlock(&handles_mu);
}

static void tls_init(void)
{
	pthread_key_create(&tls_key, tls_destructor);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void atfork_init(void) { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); }

static __attribute__((noinline)) int lane_slow(struct shmwal *w, uint32_t *lane_out)
{
	struct tls_lane victim;
	uint32_t lane;
	int i, rc;

	for (i = 1; i < TLS_LANES; i++) {
		if (tls_lanes[i].hid == w->id) {
			struct tls_lane t = tls_lanes[i];

			tls_lanes[i] = tls_lanes[0];
			tls_lanes[0] = t;
			*lane_out = t.lane;
			return 0;
		}
	}
	pthread_once(&tls_once, tls_init);
	pthread_mutex_lock(&handles_mu);
	rc = lane_acquire(w->s, w->slot, (uint32_t)gettid() * 7u, &lane);
	if (rc == 0) {
		w->lanes[lane / 64] |= 1ull << (lane % 64);
		victim = tls_lanes[TLS_LANES - 1];
		if (victim.hid) {
			struct shmwal *h = handle_find_locked(victim.hid);

			if (h)
				lane_give_back_locked(h, victim.lane);
		}
		memmove(&tls_lanes[1], &tls_lanes[0], sizeof(tls_lanes[0]) * (TLS_LANES - 1));
		tls_lanes[0].hid = w->id;
		tls_lanes[0].lane = lane;
		*lane_out = lane;
	}
	pthread_mutex_unlock(&handles_mu);
	if (rc == 0)
		pthread_setspecific(tls_key, tls_lanes);
	return rc;
}

static inline int lane_get(struct shmwal *w, uint32_t *lane)
{
	if (likely(tls_lanes[0].hid == w->id)) {
		*lane = tls_lanes[0].lane;
		return 0;
	}
	return lane_slow(w, lane);
}

/* ---- attach ------------------------------------------------------------------------------ */

SHMWAL_EXPORT int shmwal_open(const char *dir, struct shmwal **out)
{
	struct shmwal *w;
	struct meta m;
	int rc;

	if (!dir || !out)
		return seterr(-EINVAL, "NULL argument");
	rc = meta_load(dir, &m);
	if (rc < 0)
		return rc;
	w = calloc(1, sizeof(*w));
	if (!w)
		return seterr(-ENOMEM, "out of memory");
	rc = shm_attach(&m, SHM_ATTACH_REGISTRY, &w->s);
	if (rc < 0) {
		free(w);
		return rc;
	}
	if (load_acquire(&w->s->hdr->stop)) {
		shm_detach(w->s);
		free(w);
		return seterr(-ESHUTDOWN, "%s: the flusher is stopping or stopped; retry when it runs",
			      dir);
	}
	pthread_once(&atfork_once, atfork_init);
	/* Under handles_mu from the slot lock until the handle is listed: a fork() meanwhile
	 * (atfork_prepare takes handles_mu) would otherwise leave the child holding our lock. */
	pthread_mutex_lock(&handles_mu);
	rc = slot_acquire(w->s, &w->slot, &w->gen);
	if (rc < 0) {
		pthread_mutex_unlock(&handles_mu);
		shm_detach(w->s);
		free(w);
		return rc;
	}
	/* A flusher that is stopping counts live slots after setting stop (with a fence): either
	 * it sees our slot and leaves the shared memory in place, or we see stop here. */
	fence_seq();
	if (load_relaxed(&w->s->hdr->stop)) {
		slot_release(w->s, w->slot, w->gen);
		pthread_mutex_unlock(&handles_mu);
		shm_detach(w->s);
		free(w);
		return seterr(-ESHUTDOWN, "%s: the flusher is stopping or stopped; retry when it runs",
			      dir);
	}
	w->id = next_handle_id++;
	w->next = handles;
	handles = w;
	pthread_mutex_unlock(&handles_mu);
	*out = w;
	return 0;
}

SHMWAL_EXPORT void shmwal_close(struct shmwal *w)
{
	struct shmwal **pp;

	if (!w)
		return;
	if (w->forked) { /* a child's copy: the parent still owns the slot and lanes */
		shm_detach(w->s);
		free(w);
		return;
	}
	pthread_mutex_lock(&handles_mu);
	for (pp = &handles; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	for (uint32_t l = 0; l < SHM_LANES; l++)
		lane_give_back_locked(w, l);
	pthread_mutex_unlock(&handles_mu);
	slot_release(w->s, w->slot, w->gen);
	flusher_kick(w->s, 1);
	shm_detach(w->s);
	free(w);
}

SHMWAL_EXPORT const struct shmwal_config *shmwal_get_config(const struct shmwal *w)
{
	return &w->s->meta.cfg;
}

/* ---- claim, write, commit ---------------------------------------------------------------- */

static inline shmwal_atomic64 *frame_word(void *frame) { return (shmwal_atomic64 *)frame; }

static int check_args(const struct shmwal *w, uint32_t part, uint16_t type, uint32_t key_len,
		      uint32_t value_len)
{
	const struct shmwal_config *c = &w->s->meta.cfg;

	if (unlikely(part >= c->partitions))
		return seterr(-EINVAL, "partition %u out of range (the WAL has %u)", part,
			      c->partitions);
	if (unlikely(type == 0))
		return seterr(-EINVAL, "record type 0 is invalid");
	if (unlikely(key_len > c->max_key || value_len > c->max_value))
		return seterr(-EMSGSIZE, "record too large: key %u (max %u), value %u (max %u)",
			      key_len, c->max_key, value_len, c->max_value);
	return 0;
}

/* Loads the partition's head and keeps it in head_seen (see there). */
static inline uint64_t head_refresh(struct shmwal *w, uint32_t part)
{
	uint64_t head = load_acquire(&w->s->parts[part].head); /* pairs: the flusher's release */

	store_release(&w->head_seen[part], head); /* pairs: the load-acquire in claim_steps */
	return head;
}

/*
 * Step 4, slow path: the ring is full. Waits for the flusher to free space; every 100 ms it
 * checks that the WAL was not stopped and that this shared memory was not removed (a producer
 * of an orphaned object would otherwise wait forever).
 */
static __attribute__((noinline)) int wait_space(struct shmwal *w, uint32_t part, uint64_t need)
{
	struct shm_part *cp = &w->s->parts[part];
	struct shm_lane *ln;
	uint32_t lane;

	if (lane_get(w, &lane) == 0) {
		ln = &w->s->lanes[lane];
		store_relaxed(&ln->full_waits, load_relaxed(&ln->full_waits) + 1);
	}
	flusher_kick(w->s, 1);
	shm_announce_wait(w->s); /* a pacing flusher hurries (persist/flusher.c) */
	while (wait_word_ge(&cp->head, need, &cp->head_seq, &cp->head_waiters, SPIN_NS,
			    100000000ull) < 0) {
		if (load_relaxed(&w->s->hdr->stop) || shm_orphaned(w->s))
			return seterr(-ESHUTDOWN, "the flusher stopped while this append waited for "
						  "ring space; nothing was written");
	}
	head_refresh(w, part);
	return 0;
}

/*
 * Steps 1-6 of the claim protocol: returns the LSN of a frame of `len` bytes whose word is
 * CLAIMED by us and whose ring bytes are ours to write. -EAGAIN (nonblock) or -ESHUTDOWN.
 * `upto` is 6 everywhere but in the crash tests (shm_test_claim_partial), which stop after an
 * earlier step and then kill themselves; it is a constant, so the checks fold away.
 */
static inline __attribute__((always_inline)) int64_t claim_steps(struct shmwal *w, uint32_t part,
								  uint32_t len, int nonblock,
								  int upto)
{
	struct shm *s = w->s;
	struct shm_part *cp = &s->parts[part];
	const uint64_t ring = s->meta.cfg.ring_bytes;
	const uint64_t size = SHMWAL_ALIGN_UP(len);
	struct shm_lane *ln;
	uint32_t lane;
	uint64_t lsn;
	int rc;

	if (unlikely(load_relaxed(&s->hdr->stop) | w->forked))
		return w->forked ? seterr(-ECHILD, "this handle was opened before fork(); open a "
						   "new one in the child")
				 : seterr(-ESHUTDOWN, "the flusher is stopping or stopped");
	rc = lane_get(w, &lane);
	if (unlikely(rc < 0))
		return rc;
	ln = &s->lanes[lane];

	/* 1. announce: this lane may own an unpublished frame of `part` (a new claim: seq) */
	store_release(&ln->seq, load_relaxed(&ln->seq) + 1);
	store_release(&ln->part, part);
	store_release(&ln->claim, LANE_UNKNOWN); /* a flusher reading it sees this part */
	if (upto < 2)
		return 0;
	if (likely(!nonblock)) {
		/* 2. the claim; it releases step 1 to the flusher's load-acquire of tail (and is
		 * seq_cst for the stop handshake below; on x86 every locked RMW is) */
		lsn = fetch_add_seq(&cp->tail, size);
	} else {
		lsn = load_relaxed(&cp->tail);
		do {
			if (lsn + size > load_acquire(&cp->head) + ring) { /* pairs: head release */
				store_release(&ln->claim, 0);
				return seterr(-EAGAIN, "ring of partition %u is full", part);
			}
		} while (!cas_seq(&cp->tail, &lsn, lsn + size));
	}
	/* A stopping flusher sets stop (seq_cst) and then checks that it has drained up to tail
	 * (seq_cst): either it sees this claim, or we see stop here and give the claim up (the
	 * lane back at 0 lets a flusher pad it). */
	if (unlikely(load_seq(&s->hdr->stop))) {
		store_release(&ln->claim, 0);
		return seterr(-ESHUTDOWN, "the flusher is stopping or stopped");
	}
	if (upto < 3)
		return (int64_t)lsn;
	/* 3. the lane names the claim (release: the flusher reading it sees step 1's part) */
	store_release(&ln->claim, lsn | 1);
	/* 4. wait for the ring bytes [lsn, lsn + size) to be free */
	if (unlikely(lsn + size > load_acquire(&w->head_seen[part]) + ring) &&
	    lsn + size > head_refresh(w, part) + ring) {
		rc = wait_space(w, part, lsn + size - ring);
		if (rc < 0) {
			/* Not ours to fill: with the lane back at 0, a flusher pads [lsn, ...). */
			store_release(&ln->claim, 0);
			return rc;
		}
	}
	if (upto < 5)
		return (int64_t)lsn;
	/* TSan: the ring bytes were last written by whoever committed there a lap ago; the
	 * flusher (another process) consumed that before moving head: see publish_word. */
	tsan_acquire(cp);
	/* 5. publish the claim in the frame itself */
	store_relaxed(frame_word(ring_at(s, part, lsn)), shmwal_word_make(len, w->slot,
									   SHMWAL_FRAME_CLAIMED));
	if (upto < 6)
		return (int64_t)lsn;
	/* 6. the lane is free again; release: whoever reads 0 sees the word of step 5 */
	store_release(&ln->claim, 0);
	store_relaxed(&ln->appends, load_relaxed(&ln->appends) + 1);
	return (int64_t)lsn;
}

static inline __attribute__((always_inline)) int64_t claim_frame(struct shmwal *w, uint32_t part,
								  uint32_t len, int nonblock)
{
	return claim_steps(w, part, len, nonblock, 6);
}

static inline void frame_fill(struct shmwal_frame *f, uint64_t lsn, uint16_t type,
			      uint32_t key_len, uint64_t timestamp_ns)
{
	f->type = type;
	f->key_len = (uint16_t)key_len;
	f->lsn = lsn;
	f->timestamp_ns = timestamp_ns;
}

/*
 * Publishes a frame's word to the flusher (release: it then sees header, key and value).
 * TSan: the flusher, another process, consumes the frame and frees its bytes, and a thread of
 * this process may then claim them for the next lap (claim_steps acquires the partition
 * before step 5). That edge is stated: the partition is released before the store, and so is
 * the word's address, which a flusher running in this process acquires when it loads the
 * word. The store itself is hidden from TSan: no release placed after it could cover it,
 * since this thread may be preempted between the two while the next lap begins there.
 */
static inline void publish_word(struct shmwal *w, uint32_t part, struct shmwal_frame *f,
				uint64_t word)
{
	tsan_release(&w->s->parts[part]);
	tsan_release(frame_word(f));
	tsan_hide_begin();
	store_release(frame_word(f), word); /* pairs: the flusher's load-acquire of the word */
	tsan_hide_end();
}

/* Step 8: checksum and hand the frame to the flusher. */
static inline void frame_commit(struct shmwal *w, uint32_t part, struct shmwal_frame *f,
				uint32_t len)
{
	/* The padding up to the next 8 bytes is zero already: freed ring bytes are zeroed. */
	f->crc = shmwal_frame_crc(f, len);
	publish_word(w, part, f, shmwal_word_make(len, w->slot, SHMWAL_FRAME_COMMITTED));
	flusher_kick(w->s, 0);
}

static int append(struct shmwal *w, uint32_t part, uint16_t type, const void *key,
		  uint32_t key_len, const void *value, uint32_t value_len, uint64_t *lsn_out,
		  int nonblock)
{
	struct shmwal_frame *f;
	uint64_t ts;
	uint32_t len;
	int64_t lsn;
	int rc;

	if (unlikely(!w))
		return seterr(-EINVAL, "NULL handle");
	rc = check_args(w, part, type, key_len, value_len);
	if (unlikely(rc < 0))
		return rc;
	if (unlikely((key_len && !key) || (value_len && !value)))
		return seterr(-EINVAL, "NULL key or value with a non-zero length");
	len = SHMWAL_FRAME_HDR + key_len + value_len;
	/* The timestamp before the claim: reading the TSC takes ~35 cycles, which the claim's
	 * work can overlap; nothing needs it until the header is built. */
	ts = tsclock_now(&w->s->hdr->clock);
	lsn = claim_frame(w, part, len, nonblock);
	if (unlikely(lsn < 0))
		return (int)lsn;
	f = (struct shmwal_frame *)ring_at(w->s, part, (uint64_t)lsn);
	/* The checksum of the header from its values, and of key and value as they are copied
	 * (each word loaded once from the caller's buffer, checksummed, stored): nothing is read
	 * back from the ring. Such a load waits until the stores before it are done (x86 keeps
	 * stores in order, and a load it cannot forward waits for them), and the first of them,
	 * the word, often waits for its line to come from the flusher's cache: reading the frame
	 * back cost a third of an append (perf, bench/alone). And the checksum is of the bytes
	 * stored, even if another thread changes the caller's buffer meanwhile (a torn record,
	 * not one the flusher must refuse). */
	f->crc = frame_fill_crc(f, len, type, (uint64_t)lsn, ts, key, key_len, value, value_len);
	frame_fill(f, (uint64_t)lsn, type, key_len, ts);
	/* step 8; the padding up to the next 8 bytes is zero already: freed ring bytes are */
	publish_word(w, part, f, shmwal_word_make(len, w->slot, SHMWAL_FRAME_COMMITTED));
	flusher_kick(w->s, 0);
	if (lsn_out)
		*lsn_out = (uint64_t)lsn;
	return 0;
}

SHMWAL_EXPORT int shmwal_append(struct shmwal *w, uint32_t part, uint16_t type, const void *key,
				uint32_t key_len, const void *value, uint32_t value_len,
				uint64_t *lsn_out)
{
	return append(w, part, type, key, key_len, value, value_len, lsn_out, 0);
}

SHMWAL_EXPORT int shmwal_try_append(struct shmwal *w, uint32_t part, uint16_t type,
				    const void *key, uint32_t key_len, const void *value,
				    uint32_t value_len, uint64_t *lsn_out)
{
	return append(w, part, type, key, key_len, value, value_len, lsn_out, 1);
}

static int claim(struct shmwal *w, uint32_t part, uint16_t type, uint32_t key_len,
		 uint32_t value_len, struct shmwal_claim *c, int nonblock)
{
	struct shmwal_frame *f;
	uint64_t ts;
	uint32_t len;
	int64_t lsn;
	int rc;

	if (unlikely(!w || !c))
		return seterr(-EINVAL, "NULL argument");
	rc = check_args(w, part, type, key_len, value_len);
	if (unlikely(rc < 0))
		return rc;
	len = SHMWAL_FRAME_HDR + key_len + value_len;
	ts = tsclock_now(&w->s->hdr->clock); /* as in append */
	lsn = claim_frame(w, part, len, nonblock);
	if (unlikely(lsn < 0))
		return (int)lsn;
	f = (struct shmwal_frame *)ring_at(w->s, part, (uint64_t)lsn);
	frame_fill(f, (uint64_t)lsn, type, key_len, ts);
	c->key = (char *)f + SHMWAL_FRAME_HDR;
	c->value = (char *)f + SHMWAL_FRAME_HDR + key_len;
	c->lsn = (uint64_t)lsn;
	c->part = part;
	c->key_len = key_len;
	c->value_len = value_len;
	c->priv_len = len;
	c->priv_frame = (uint64_t)(uintptr_t)f;
	return 0;
}

SHMWAL_EXPORT int shmwal_claim(struct shmwal *w, uint32_t part, uint16_t type, uint32_t key_len,
			       uint32_t value_len, struct shmwal_claim *c)
{
	return claim(w, part, type, key_len, value_len, c, 0);
}

SHMWAL_EXPORT int shmwal_try_claim(struct shmwal *w, uint32_t part, uint16_t type,
				   uint32_t key_len, uint32_t value_len, struct shmwal_claim *c)
{
	return claim(w, part, type, key_len, value_len, c, 1);
}

/* The frame of an open claim of this handle, or NULL. */
static struct shmwal_frame *claim_frame_of(struct shmwal *w, const struct shmwal_claim *c)
{
	struct shmwal_frame *f;
	uint64_t word;

	if (!w || !c || c->part >= w->s->meta.cfg.partitions)
		return NULL;
	f = (struct shmwal_frame *)(uintptr_t)c->priv_frame;
	if (f != (struct shmwal_frame *)ring_at(w->s, c->part, c->lsn) ||
	    c->priv_len != SHMWAL_FRAME_HDR + c->key_len + c->value_len)
		return NULL;
	word = load_relaxed(frame_word(f));
	if (word != shmwal_word_make(c->priv_len, w->slot, SHMWAL_FRAME_CLAIMED) || f->lsn != c->lsn)
		return NULL;
	return f;
}

SHMWAL_EXPORT int shmwal_commit(struct shmwal *w, struct shmwal_claim *c)
{
	struct shmwal_frame *f = claim_frame_of(w, c);

	if (!f)
		return seterr(-EINVAL, "not an open claim of this handle");
	frame_commit(w, c->part, f, c->priv_len);
	c->priv_frame = 0;
	return 0;
}

SHMWAL_EXPORT int shmwal_abort(struct shmwal *w, struct shmwal_claim *c)
{
	struct shmwal_frame *f = claim_frame_of(w, c);
	struct shmwal_frame h;
	uint32_t size;

	if (!f)
		return seterr(-EINVAL, "not an open claim of this handle");
	size = (uint32_t)SHMWAL_ALIGN_UP(c->priv_len);
	/* Build the header aside and publish the word last: the flusher may read the frame the
	 * moment the word says ABORTED, so everything else must already be in place. */
	memset(&h, 0, sizeof(h));
	h.word = shmwal_word_make(size, w->slot, SHMWAL_FRAME_ABORTED);
	h.lsn = c->lsn;
	h.crc = shmwal_frame_crc(&h, size);
	memset((char *)f + sizeof(h), 0, size - sizeof(h));
	memcpy((char *)f + 8, (const char *)&h + 8, sizeof(h) - 8);
	publish_word(w, c->part, f, h.word);
	flusher_kick(w->s, 0);
	c->priv_frame = 0;
	return 0;
}

/*
 * For the crash tests only (not exported): runs the claim protocol of layout.h up to `step`
 * (1..7; 7 also writes the header fields and half the value) and returns the LSN, so that the
 * calling process can SIGKILL itself at exactly that point.
 */
int64_t shm_test_claim_partial(struct shmwal *w, uint32_t part, uint32_t len, int step);
int64_t shm_test_claim_partial(struct shmwal *w, uint32_t part, uint32_t len, int step)
{
	int64_t lsn;

	switch (step) {
	case 1: return claim_steps(w, part, len, 0, 1);
	case 2: return claim_steps(w, part, len, 0, 2);
	case 3: return claim_steps(w, part, len, 0, 3);
	case 4: return claim_steps(w, part, len, 0, 4);
	case 5: return claim_steps(w, part, len, 0, 5);
	case 6: return claim_steps(w, part, len, 0, 6);
	default: break;
	}
	lsn = claim_steps(w, part, len, 0, 6);
	if (lsn >= 0) {
		struct shmwal_frame *f = (struct shmwal_frame *)ring_at(w->s, part, (uint64_t)lsn);

		frame_fill(f, (uint64_t)lsn, SHMWAL_TYPE_PUT, 0, tsclock_now(&w->s->hdr->clock));
		memset((char *)f + SHMWAL_FRAME_HDR, 0x5a, (len - SHMWAL_FRAME_HDR) / 2);
	}
	return lsn;
}

/* ---- durability -------------------------------------------------------------------------- */

SHMWAL_EXPORT int64_t shmwal_durable_lsn(const struct shmwal *w, uint32_t part)
{
	if (!w || part >= w->s->meta.cfg.partitions)
		return seterr(-EINVAL, "bad handle or partition");
	return (int64_t)shm_durable(w->s, part);
}

SHMWAL_EXPORT int shmwal_wait_durable(struct shmwal *w, uint32_t part, uint64_t lsn,
				      uint64_t timeout_ns)
{
	int rc;

	if (!w || part >= w->s->meta.cfg.partitions)
		return seterr(-EINVAL, "bad handle or partition");
	if (shm_durable(w->s, part) > lsn)
		return 0;
	flusher_kick(w->s, 1); /* make sure an idle flusher is awake for us */
	rc = shm_wait_durable(w->s, part, lsn, 1, timeout_ns);
	if (rc < 0)
		return seterr(rc, "LSN %" PRIu64 " of partition %u not durable in time (durable "
				  "%" PRIu64 "; is the flusher running?)",
			      lsn, part, shm_durable(w->s, part));
	return 0;
}
