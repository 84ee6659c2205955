/* SPDX-License-Identifier: MIT */
/*
 * check.c - the crash campaign's checker. After every process stopped, it reads the side
 * files (campaign.h), the whole log through readers, and every segment file frame by frame,
 * and proves:
 *   - every acknowledged record is present exactly once, at the partition and LSN it was
 *     acknowledged with, with its length;
 *   - every record is intact (stamp, key and every value byte: th_check) and belongs to a
 *     stream that exists; within a partition each stream's sequence numbers increase;
 *   - every claim given up on purpose is an ABORTED frame at its LSN, and none came back as a
 *     record (their stamps are marked);
 *   - the files hold exactly as many records as the readers returned (none skipped);
 *   - a producer that stopped cleanly has every record it wrote acknowledged and present.
 * Then negative controls: the same check fed a dropped, a duplicated and a reordered record
 * and a false abort note must catch each. A check that cannot fail fails the run.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmwal_format.h"
#include "meta.h"
#include "stress/campaign/campaign.h"
#include "tests/helpers.h"

struct rec {
	uint32_t producer, thread, part, value_len;
	uint64_t seq, lsn;
};

struct logdata {
	struct rec *recs; /* in read order: partition by partition, LSN order */
	size_t nrecs;
	struct side_entry *acks, *aborts;
	size_t nacks, naborts;
	uint64_t *aborted_lsns[MAX_PARTS]; /* ABORTED frames in the files, ascending */
	size_t naborted[MAX_PARTS];
	uint64_t committed_frames, aborted_frames, pad_frames, pad_bytes;
	uint32_t nprod;		/* producer ids 0..nprod-1 */
	const uint8_t *clean;	/* [nprod]: stopped cleanly (all it wrote was acknowledged) */
	uint64_t torn_side, bad_records, poison_records, foreign, read_errors, file_errors;
	char first[512];
};

struct verdict {
	uint64_t missing, duplicates, out_of_order, wrong_lsn, abort_not_aborted, unacked_clean;
	char first[512];
};

static void note(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(char *buf, const char *fmt, ...)
{
	va_list ap;

	if (buf[0])
		return;
	va_start(ap, fmt);
	vsnprintf(buf, 512, fmt, ap);
	va_end(ap);
}

static int cmp_stream_seq(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;

	if (x->producer != y->producer)
		return x->producer < y->producer ? -1 : 1;
	if (x->thread != y->thread)
		return x->thread < y->thread ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void push(void **arr, size_t *n, size_t *cap, size_t size, const void *item)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 1024;
		*arr = realloc(*arr, *cap * size);
		if (!*arr)
			abort();
	}
	memcpy((char *)*arr + *n * size, item, size);
	(*n)++;
}

static void load_side(const char *acks, struct logdata *d)
{
	size_t acap = 0, bcap = 0;

	for (uint32_t id = 0; id < d->nprod; id++) {
		char path[4096 + 32];
		struct side_entry e;
		struct stat st;
		int fd;
		off_t off;

		snprintf(path, sizeof(path), "%s/%u", acks, id);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue; /* killed before it opened its side file */
		if (fstat(fd, &st) < 0)
			st.st_size = 0;
		if (st.st_size % (off_t)sizeof(e)) {
			d->torn_side++; /* a kill mid-write: the last entry is incomplete */
			if (d->clean[id]) {
				d->file_errors++;
				note(d->first, "side file %s of a clean producer is torn", path);
			}
		}
		for (off = 0; off + (off_t)sizeof(e) <= st.st_size; off += (off_t)sizeof(e)) {
			if (pread(fd, &e, sizeof(e), off) != (ssize_t)sizeof(e) || !side_ok(&e) ||
			    e.producer != id) {
				d->file_errors++;
				note(d->first, "side file %s: bad entry at %lld", path,
				     (long long)off);
				break;
			}
			if (e.kind == SIDE_ACK)
				push((void **)&d->acks, &d->nacks, &acap, sizeof(e), &e);
			else
				push((void **)&d->aborts, &d->naborts, &bcap, sizeof(e), &e);
		}
		close(fd);
	}
}

static void load_log(const char *wal, struct logdata *d)
{
	size_t cap = 0;

	for (uint32_t p = 0; p < opt.partitions; p++) {
		struct shmwal_reader *r;
		struct shmwal_record rec;
		int rc = shmwal_reader_open(wal, p, SHMWAL_LSN_OLDEST, &r);

		if (rc < 0) {
			d->read_errors++;
			note(d->first, "reader_open p%u: %s", p, shmwal_last_error());
			continue;
		}
		while ((rc = shmwal_reader_next(r, &rec, 0)) == 0) {
			struct th_stamp s;
			struct rec x;
			char key[32];
			uint32_t klen;

			if (th_check(rec.value, rec.value_len, &s) < 0) {
				d->bad_records++;
				note(d->first, "p%u lsn %" PRIu64 ": payload damaged", p, rec.lsn);
				continue;
			}
			if (s.thread & POISON_THREAD) {
				d->poison_records++;
				note(d->first,
				     "p%u lsn %" PRIu64 ": a claim given up (producer %u) "
				     "came back as a record",
				     p, rec.lsn, s.producer);
				continue;
			}
			klen = th_key(key, s.producer, s.thread, s.seq);
			if (rec.key_len != klen || memcmp(rec.key, key, klen) != 0) {
				d->bad_records++;
				note(d->first, "p%u lsn %" PRIu64 ": key damaged", p, rec.lsn);
				continue;
			}
			if (s.producer >= d->nprod || s.thread >= opt.threads) {
				d->foreign++;
				note(d->first, "p%u lsn %" PRIu64 ": unknown stream %u.%u", p,
				     rec.lsn, s.producer, s.thread);
				continue;
			}
			x = (struct rec){ s.producer, s.thread, p, rec.value_len, s.seq, rec.lsn };
			push((void **)&d->recs, &d->nrecs, &cap, sizeof(x), &x);
		}
		if (rc != -ETIMEDOUT) {
			d->read_errors++;
			note(d->first, "reader_next p%u: %s", p, shmwal_last_error());
		}
		shmwal_reader_close(r);
	}
}

/*
 * Walks every segment file frame by frame: counts records, aborted frames and pads. A pmem
 * segment has a fixed size: its frames end at the next segment's first LSN (or, in the last
 * one, at the first zero word), and only zeros may follow.
 */
static void scan_files(const char *wal, struct logdata *d)
{
	struct shmwal_config cfg;
	uint64_t max_frame;
	int pmem;

	if (shmwal_config_load(wal, &cfg) < 0) {
		d->file_errors++;
		note(d->first, "%s: %s", wal, shmwal_last_error());
		return;
	}
	max_frame = cfg_max_frame(&cfg);
	pmem = cfg.backend == SHMWAL_BACKEND_PMEM;
	for (uint32_t p = 0; p < opt.partitions; p++) {
		char pdir[4096 + 32];
		struct dirent **ents;
		size_t acap = 0;
		int n;

		snprintf(pdir, sizeof(pdir), "%s/p%03u", wal, p);
		n = scandir(pdir, &ents, NULL, alphasort);
		if (n < 0) {
			d->file_errors++;
			note(d->first, "%s: %s", pdir, strerror(errno));
			continue;
		}
		for (int i = 0; i < n; i++) {
			char path[4096 + 32 + 256];
			uint64_t first, off, end, next = UINT64_MAX;
			uint8_t *buf = NULL;
			struct stat st;
			int fd;

			if (shmwal_segment_name_parse(ents[i]->d_name, &first) < 0) {
				free(ents[i]);
				continue;
			}
			snprintf(path, sizeof(path), "%s/%s", pdir, ents[i]->d_name);
			for (int j = i + 1; j < n && next == UINT64_MAX; j++)
				if (shmwal_segment_name_parse(ents[j]->d_name, &next) < 0)
					next = UINT64_MAX;
			free(ents[i]);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0 || fstat(fd, &st) < 0 ||
			    !(buf = malloc((size_t)st.st_size + 1)) ||
			    pread(fd, buf, (size_t)st.st_size, 0) != st.st_size) {
				d->file_errors++;
				note(d->first, "%s: cannot read", path);
				if (fd >= 0)
					close(fd);
				free(buf);
				continue;
			}
			close(fd);
			end = (uint64_t)st.st_size;
			if (pmem && next != UINT64_MAX && SHMWAL_SEG_HDR + next - first < end)
				end = SHMWAL_SEG_HDR + next - first;
			for (off = SHMWAL_SEG_HDR; off < end;) {
				const struct shmwal_frame *f = (const void *)(buf + off);
				enum shmwal_frame_verdict v;
				uint64_t size;
				unsigned state;

				v = shmwal_frame_check(f, end - off, first + off - SHMWAL_SEG_HDR,
						       max_frame);
				if (v == SHMWAL_FRAME_ZERO && pmem && next == UINT64_MAX)
					break;
				if (v != SHMWAL_FRAME_OK) {
					d->file_errors++;
					note(d->first, "%s: bad frame at offset %" PRIu64, path,
					     off);
					break;
				}
				state = shmwal_word_state(f->word);
				size = SHMWAL_ALIGN_UP(shmwal_word_len(f->word));
				if (state == SHMWAL_FRAME_COMMITTED) {
					d->committed_frames++;
				} else if (state == SHMWAL_FRAME_ABORTED) {
					uint64_t lsn = first + off - SHMWAL_SEG_HDR;

					d->aborted_frames++;
					push((void **)&d->aborted_lsns[p], &d->naborted[p], &acap,
					     sizeof(lsn), &lsn);
				} else {
					d->pad_frames++;
					d->pad_bytes += size;
				}
				off += size;
			}
			for (uint64_t z = off; pmem && z < (uint64_t)st.st_size; z++) {
				if (buf[z]) {
					d->file_errors++;
					note(d->first, "%s: non-zero byte at offset %" PRIu64
						       " past the last frame (%" PRIu64 ")",
					     path, z, off);
					break;
				}
			}
			free(buf);
		}
		free(ents);
	}
	if (d->committed_frames != d->nrecs + d->bad_records + d->poison_records + d->foreign) {
		d->file_errors++;
		note(d->first, "the files hold %" PRIu64 " records, the readers returned %zu",
		     d->committed_frames, d->nrecs + (size_t)(d->bad_records + d->poison_records +
							       d->foreign));
	}
}

/* The logical check; `recs` in read order. Never modifies its input. */
static void verify(const struct logdata *d, const struct rec *recs, size_t nrecs,
		   const struct side_entry *aborts, size_t naborts, struct verdict *v)
{
	size_t nstreams = (size_t)d->nprod * opt.threads;
	uint64_t *last = calloc(nstreams * opt.partitions, sizeof(uint64_t)); /* seq + 1 */
	uint64_t *nfound = calloc(nstreams, sizeof(uint64_t));
	uint64_t *nacked = calloc(nstreams, sizeof(uint64_t));
	struct rec *sorted = malloc((nrecs + 1) * sizeof(*sorted));
	size_t i;

	memset(v, 0, sizeof(*v));
	if (!last || !nfound || !nacked || !sorted)
		abort();
	for (i = 0; i < nrecs; i++) {
		const struct rec *r = &recs[i];
		size_t s = (size_t)r->producer * opt.threads + r->thread;
		uint64_t *l = &last[s * opt.partitions + r->part];

		if (*l && r->seq < *l) {
			v->out_of_order++;
			note(v->first, "p%u lsn %" PRIu64 ": %u.%u seq %" PRIu64 " after %" PRIu64,
			     r->part, r->lsn, r->producer, r->thread, r->seq, *l - 1);
		}
		*l = r->seq + 1;
		nfound[s]++;
	}
	memcpy(sorted, recs, nrecs * sizeof(*sorted));
	qsort(sorted, nrecs, sizeof(*sorted), cmp_stream_seq);
	for (i = 1; i < nrecs; i++) {
		if (!cmp_stream_seq(&sorted[i - 1], &sorted[i])) {
			v->duplicates++;
			note(v->first,
			     "%u.%u seq %" PRIu64 " twice (p%u lsn %" PRIu64 ", p%u lsn %" PRIu64
			     ")",
			     sorted[i].producer, sorted[i].thread, sorted[i].seq,
			     sorted[i - 1].part, sorted[i - 1].lsn, sorted[i].part, sorted[i].lsn);
		}
	}
	for (i = 0; i < d->nacks; i++) {
		const struct side_entry *a = &d->acks[i];
		struct rec key = { a->producer, a->thread, 0, 0, a->seq, 0 };
		const struct rec *r = bsearch(&key, sorted, nrecs, sizeof(*sorted), cmp_stream_seq);

		if (a->thread < opt.threads)
			nacked[(size_t)a->producer * opt.threads + a->thread]++;
		if (!r) {
			v->missing++;
			note(v->first,
			     "acknowledged %u.%u seq %" PRIu64 " (p%u lsn %" PRIu64 ") missing",
			     a->producer, a->thread, a->seq, a->part, a->lsn);
		} else if (r->part != a->part || r->lsn != a->lsn || r->value_len != a->value_len) {
			v->wrong_lsn++;
			note(v->first, "acknowledged %u.%u seq %" PRIu64 " at p%u lsn %" PRIu64
				       ", found at p%u lsn %" PRIu64,
			     a->producer, a->thread, a->seq, a->part, a->lsn, r->part, r->lsn);
		}
	}
	for (i = 0; i < naborts; i++) {
		const struct side_entry *a = &aborts[i];

		if (a->part >= opt.partitions ||
		    !bsearch(&a->lsn, d->aborted_lsns[a->part], d->naborted[a->part],
			     sizeof(uint64_t), cmp_u64)) {
			v->abort_not_aborted++;
			note(v->first, "claim given up by %u.%u at p%u lsn %" PRIu64
				       " is not an ABORTED frame",
			     a->producer, a->thread, a->part, a->lsn);
		}
	}
	/* Producers that stopped cleanly acknowledged everything they wrote. */
	for (i = 0; i < nstreams; i++) {
		if (d->clean[i / opt.threads] && nfound[i] != nacked[i]) {
			v->unacked_clean++;
			note(v->first,
			     "stream %zu.%zu stopped cleanly: %" PRIu64 " records, %" PRIu64
			     " acknowledged",
			     i / opt.threads, i % opt.threads, nfound[i], nacked[i]);
		}
	}
	free(last);
	free(nfound);
	free(nacked);
	free(sorted);
}

static uint64_t verdict_total(const struct verdict *v)
{
	return v->missing + v->duplicates + v->out_of_order + v->wrong_lsn +
	       v->abort_not_aborted + v->unacked_clean;
}

/* Feeds the check damaged input; returns how many of the damages it caught (of *tried). */
static unsigned negative_controls(const struct logdata *d, unsigned *tried)
{
	struct rec *c = malloc((d->nrecs + 1) * sizeof(*c));
	struct side_entry bogus;
	struct verdict v;
	unsigned caught = 0;
	size_t i, j;

	*tried = 0;
	if (!c || !d->nacks || d->nrecs < 2) {
		free(c);
		return 0;
	}
	/* 1. an acknowledged record dropped */
	for (i = 0; i < d->nrecs; i++)
		if (d->recs[i].producer == d->acks[0].producer &&
		    d->recs[i].thread == d->acks[0].thread && d->recs[i].seq == d->acks[0].seq)
			break;
	if (i < d->nrecs) {
		memcpy(c, d->recs, i * sizeof(*c));
		memcpy(c + i, d->recs + i + 1, (d->nrecs - i - 1) * sizeof(*c));
		verify(d, c, d->nrecs - 1, d->aborts, d->naborts, &v);
		(*tried)++;
		caught += v.missing > 0;
	}
	/* 2. a record duplicated (appended again at the end of the read order) */
	memcpy(c, d->recs, d->nrecs * sizeof(*c));
	c[d->nrecs] = d->recs[d->nrecs / 2];
	verify(d, c, d->nrecs + 1, d->aborts, d->naborts, &v);
	(*tried)++;
	caught += v.duplicates > 0;
	/* 3. two records of one stream in one partition swapped */
	for (i = 0; i + 1 < d->nrecs; i++) {
		for (j = i + 1; j < d->nrecs && j < i + 4096; j++)
			if (d->recs[j].producer == d->recs[i].producer &&
			    d->recs[j].thread == d->recs[i].thread &&
			    d->recs[j].part == d->recs[i].part)
				break;
		if (j < d->nrecs && j < i + 4096)
			break;
	}
	if (i + 1 < d->nrecs) {
		memcpy(c, d->recs, d->nrecs * sizeof(*c));
		c[i] = d->recs[j];
		c[j] = d->recs[i];
		verify(d, c, d->nrecs, d->aborts, d->naborts, &v);
		(*tried)++;
		caught += v.out_of_order > 0;
	}
	/* 4. a claim "given up" at the LSN of a record */
	memset(&bogus, 0, sizeof(bogus));
	bogus.part = d->recs[0].part;
	bogus.lsn = d->recs[0].lsn;
	verify(d, d->recs, d->nrecs, &bogus, 1, &v);
	(*tried)++;
	caught += v.abort_not_aborted > 0;
	free(c);
	return caught;
}

static void logdata_free(struct logdata *d)
{
	free(d->recs);
	free(d->acks);
	free(d->aborts);
	for (uint32_t p = 0; p < MAX_PARTS; p++)
		free(d->aborted_lsns[p]);
}

/* Loads and checks everything; prints the record figures. Returns the number of violations. */
uint64_t check_all(const char *root, uint32_t nprod, const uint8_t *clean)
{
	char wal[4096], acks[4096];
	struct logdata d;
	struct verdict v;
	uint64_t bad;
	unsigned tried, caught;

	memset(&d, 0, sizeof(d));
	snprintf(wal, sizeof(wal), "%s/wal", root);
	snprintf(acks, sizeof(acks), "%s/acks", root);
	d.nprod = nprod;
	d.clean = clean;
	load_side(acks, &d);
	load_log(wal, &d);
	scan_files(wal, &d);
	verify(&d, d.recs, d.nrecs, d.aborts, d.naborts, &v);
	caught = negative_controls(&d, &tried);
	bad = d.bad_records + d.poison_records + d.foreign + d.read_errors + d.file_errors +
	      verdict_total(&v) + (caught != tried || tried < 3);
	printf("  records acknowledged      %10zu  (%" PRIu64 " side files torn by a kill)\n",
	       d.nacks, d.torn_side);
	printf("  records found             %10zu  (files: %" PRIu64 " records, %" PRIu64
	       " aborted frames, %" PRIu64 " pads of %" PRIu64 " bytes)\n",
	       d.nrecs, d.committed_frames, d.aborted_frames, d.pad_frames, d.pad_bytes);
	printf("  claims given up on purpose%10zu  (all ABORTED frames, none a record: %s)\n",
	       d.naborts, v.abort_not_aborted || d.poison_records ? "NO" : "yes");
	printf("  missing %" PRIu64 ", duplicated %" PRIu64 ", out of order %" PRIu64
	       ", wrong LSN %" PRIu64 ", damaged %" PRIu64 ", unknown %" PRIu64
	       ", unacknowledged in clean streams %" PRIu64 ", read/file errors %" PRIu64 "\n",
	       v.missing, v.duplicates, v.out_of_order, v.wrong_lsn, d.bad_records, d.foreign,
	       v.unacked_clean, d.read_errors + d.file_errors);
	printf("  checker negative controls %u/%u caught\n", caught, tried);
	if (d.first[0])
		printf("  first problem: %s\n", d.first);
	if (v.first[0])
		printf("  first problem: %s\n", v.first);
	logdata_free(&d);
	return bad;
}
