/* SPDX-License-Identifier: MIT */
/*
 * producer.c - a producer process of the crash campaign: several threads append stamped
 * records (tests/helpers.h) until the driver says stop or kills the process, and note in the
 * process's side file (campaign.h) what they were told was durable and which claims they gave
 * up on purpose. Thread 0 is a bulk appender; the others rotate through the other roles:
 *   bulk       blocking appends; keeps up to four rings' worth of records unacknowledged and
 *              acknowledges whatever the durable LSN has passed, so a stopped flusher always
 *              ends with this thread blocked on a full ring; calm spells and bursts alternate;
 *              gives up 2% of its claims
 *   each       blocking appends, each waited for until durable
 *   zero-copy  shmwal_claim, the record written in place (one in eight held open 50 us,
 *              for kills to land inside claims), shmwal_commit, in windows; gives up 10% of
 *              its claims
 *   try        shmwal_try_append retried on -EAGAIN, in windows
 * A claim given up carries a stamp of stream thread | POISON_THREAD, so one that came back as
 * a record would be recognised. At stop every thread waits for all it wrote and acknowledges
 * it: a producer that stopped cleanly has every record it wrote acknowledged.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stress/campaign/campaign.h"
#include "tests/helpers.h"

#define LONG_WAIT_NS (300 * SHMWAL_NS_PER_SEC)

/* One write(2) of whole entries: a kill tears at most at an entry boundary. */
static int side_write(int fd, const struct side_entry *e, size_t n)
{
	const char *p = (const char *)e;
	size_t len = n * sizeof(*e);

	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

enum role { ROLE_BULK, ROLE_EACH, ROLE_ZEROCOPY, ROLE_TRY, ROLES };

struct pending {
	uint64_t seq, lsn;
	uint32_t part, value_len;
};

struct pthr {
	struct shmwal *w;
	const char *dir;
	int side_fd;
	uint32_t producer, thread;
	enum role role;
	uint64_t rng, seq, aborts;
	struct pending *pend;
	size_t npend, cap;
	uint8_t val[2048];
	int rc;
};

static void fail_thread(struct pthr *t, const char *what)
{
	fprintf(stderr, "producer %u.%u: %s: %s\n", t->producer, t->thread, what,
		shmwal_last_error());
	t->rc = 1;
}

/* Gives up a claim on purpose: it must end up an ABORTED frame, never a record. */
static int abort_one(struct pthr *t, uint32_t part)
{
	uint32_t vlen = TH_STAMP_MIN + (uint32_t)(th_rand(&t->rng) % 512);
	struct shmwal_claim c;
	struct side_entry e;

	if (shmwal_claim(t->w, part, SHMWAL_TYPE_PUT, 0, vlen, &c) < 0)
		return -1;
	th_fill(c.value, vlen, t->producer, t->thread | POISON_THREAD, t->aborts++);
	if (shmwal_abort(t->w, &c) < 0)
		return -1;
	memset(&e, 0, sizeof(e));
	e.kind = SIDE_ABORT;
	e.producer = t->producer;
	e.thread = t->thread;
	e.part = part;
	e.value_len = vlen;
	e.lsn = c.lsn;
	side_seal(&e);
	__atomic_fetch_add(&ctl->aborted, 1, __ATOMIC_RELAXED);
	if (side_write(t->side_fd, &e, 1) < 0) {
		fail_thread(t, "side file");
		return -1;
	}
	return 0;
}

/* Appends record t->seq in the thread's own way; remembers it as pending. */
static int append_one(struct pthr *t)
{
	uint32_t part = (uint32_t)(th_rand(&t->rng) % opt.partitions);
	uint32_t vlen = TH_STAMP_MIN + (uint32_t)(th_rand(&t->rng) % (1024 - TH_STAMP_MIN));
	char key[32];
	uint32_t klen = th_key(key, t->producer, t->thread, t->seq);
	uint64_t lsn = 0;
	int rc;

	if (t->role == ROLE_ZEROCOPY || t->role == ROLE_BULK) {
		int odds = t->role == ROLE_ZEROCOPY ? 10 : 50;

		if (th_rand(&t->rng) % odds == 0 && abort_one(t, part) < 0) {
			fail_thread(t, "claim given up");
			return -1;
		}
	}
	if (t->role == ROLE_ZEROCOPY) {
		struct shmwal_claim c;

		rc = shmwal_claim(t->w, part, SHMWAL_TYPE_PUT, klen, vlen, &c);
		if (rc == 0) {
			/* written in place; now and then slowly, so that kills land inside claims
			 * (the driver looks for CLAIMED frames) */
			memcpy(c.key, key, klen);
			th_fill(c.value, vlen, t->producer, t->thread, t->seq);
			if (th_rand(&t->rng) % 8 == 0)
				sleep_us(50);
			lsn = c.lsn;
			rc = shmwal_commit(t->w, &c);
		}
	} else if (t->role == ROLE_TRY) {
		th_fill(t->val, vlen, t->producer, t->thread, t->seq);
		while ((rc = shmwal_try_append(t->w, part, SHMWAL_TYPE_USER_MIN, key, klen, t->val,
					       vlen, &lsn)) == -EAGAIN) {
			/* back-pressured: yield, and now and then sleep (the flusher needs a CPU)
			 */
			if (__atomic_fetch_add(&ctl->eagain, 1, __ATOMIC_RELAXED) % 32 == 31)
				sleep_us(100);
			else
				sched_yield();
		}
	} else {
		th_fill(t->val, vlen, t->producer, t->thread, t->seq);
		rc = shmwal_append(t->w, part, SHMWAL_TYPE_PUT, key, klen, t->val, vlen, &lsn);
	}
	if (rc < 0) {
		fail_thread(t, "append");
		return -1;
	}
	if (t->npend == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 256;
		t->pend = realloc(t->pend, t->cap * sizeof(*t->pend));
		if (!t->pend)
			abort();
	}
	t->pend[t->npend++] = (struct pending){ t->seq, lsn, part, vlen };
	t->seq++;
	__atomic_fetch_add(&ctl->appended, 1, __ATOMIC_RELAXED);
	return 0;
}

/*
 * Acknowledges the pending records. `wait`: first waits (shmwal_wait_durable) until all of
 * them are durable; otherwise only those the durable LSN has passed (wait_durable with a zero
 * timeout: "just check"). Acks go to the side file after the wait said so.
 */
static int ack_pending(struct pthr *t, int wait)
{
	struct side_entry e[32];
	size_t i, n = 0, keep = 0;

	if (wait) {
		uint64_t max[MAX_PARTS] = { 0 };
		int any[MAX_PARTS] = { 0 };

		for (i = 0; i < t->npend; i++) {
			any[t->pend[i].part] = 1;
			if (t->pend[i].lsn > max[t->pend[i].part])
				max[t->pend[i].part] = t->pend[i].lsn;
		}
		for (uint32_t p = 0; p < opt.partitions; p++) {
			if (any[p] && shmwal_wait_durable(t->w, p, max[p], LONG_WAIT_NS) < 0) {
				fail_thread(t, "wait_durable");
				return -1;
			}
		}
	}
	for (i = 0; i < t->npend; i++) {
		struct pending *q = &t->pend[i];

		if (shmwal_wait_durable(t->w, q->part, q->lsn, 0) < 0) {
			if (wait) {
				fail_thread(t, "durable LSN went back");
				return -1;
			}
			t->pend[keep++] = *q;
			continue;
		}
		memset(&e[n], 0, sizeof(e[n]));
		e[n].kind = SIDE_ACK;
		e[n].producer = t->producer;
		e[n].thread = t->thread;
		e[n].part = q->part;
		e[n].value_len = q->value_len;
		e[n].seq = q->seq;
		e[n].lsn = q->lsn;
		side_seal(&e[n]);
		if (++n == sizeof(e) / sizeof(e[0])) {
			if (side_write(t->side_fd, e, n) < 0) {
				fail_thread(t, "side file");
				return -1;
			}
			n = 0;
		}
	}
	t->npend = keep;
	if (n && side_write(t->side_fd, e, n) < 0) {
		fail_thread(t, "side file");
		return -1;
	}
	return 0;
}

static void *producer_thread(void *arg)
{
	struct pthr *t = arg;
	/* the bulk role keeps up to four rings' worth of records unacknowledged */
	size_t bulk_cap = (size_t)(4 * opt.ring_bytes * opt.partitions / 512);

	while (!__atomic_load_n(&ctl->stop_producers, __ATOMIC_ACQUIRE)) {
		unsigned window = t->role == ROLE_EACH ? 1 : 1 + (unsigned)(th_rand(&t->rng) % 24);

		for (unsigned i = 0; i < window; i++)
			if (append_one(t) < 0)
				return NULL;
		if (t->role == ROLE_BULK) {
			/* Calm spells (the ring drains) and bursts (it fills up): wait a little for
			 * durability on some windows, never long, so a stopped flusher always ends
			 * with this thread blocked on a full ring. */
			if (th_rand(&t->rng) % 2 && t->npend)
				shmwal_wait_durable(t->w, t->pend[t->npend - 1].part,
						    t->pend[t->npend - 1].lsn, 20000000ull);
			if (ack_pending(t, t->npend >= bulk_cap) < 0)
				return NULL;
		} else if (ack_pending(t, 1) < 0) {
			return NULL;
		}
	}
	if (ack_pending(t, 1) < 0) /* stopping: everything written is acknowledged */
		return NULL;
	return NULL;
}

int producer_main(const char *dir, const char *acks, uint32_t id)
{
	struct pthr *t = calloc(opt.threads, sizeof(*t));
	pthread_t tid[MAX_THREADS];
	char path[4096 + 32];
	struct shmwal *w;
	int fd, rc;

	snprintf(path, sizeof(path), "%s/%u", acks, id);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0 || !t) {
		perror(path);
		return 1;
	}
	rc = th_open(dir, &w);
	if (rc < 0) {
		fprintf(stderr, "producer %u: open: %s\n", id, shmwal_last_error());
		return 1;
	}
	for (uint32_t i = 0; i < opt.threads; i++) {
		t[i].w = w;
		t[i].dir = dir;
		t[i].side_fd = fd;
		t[i].producer = id;
		t[i].thread = i;
		/* every process has a bulk thread; the others rotate through the roles */
		t[i].role = i == 0 ? ROLE_BULK : (enum role)(1 + (i + id) % (ROLES - 1));
		t[i].rng =
		    opt.seed * 0x9e3779b97f4a7c15ull ^ ((uint64_t)id << 20 | i) ^ 0xabcdefull;
		if (!t[i].rng)
			t[i].rng = 1;
		pthread_create(&tid[i], NULL, producer_thread, &t[i]);
	}
	rc = 0;
	for (uint32_t i = 0; i < opt.threads; i++) {
		pthread_join(tid[i], NULL);
		rc |= t[i].rc;
		free(t[i].pend);
	}
	shmwal_close(w);
	close(fd);
	free(t);
	return rc;
}
