/* SPDX-License-Identifier: MIT */
/*
 * stat.c - shmwal_stat(): a lock-free snapshot of a WAL's shared state, for `shmwal stat` and
 * for programs that export metrics themselves. Every word is read with a plain atomic load; a
 * snapshot is not a consistent cut (tail may be read a moment after durable), which is what a
 * monitor wants: reading never slows producers or the flusher down.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "shm_impl.h"

void shm_set_persistence(struct shm *s, unsigned kind)
{
	store_relaxed(&s->hdr->persistence, kind);
}

#define RATE_WINDOW_NS 1000000000ull

/* Appends through every lane since the object was created (each lane's owner counts). */
static uint64_t appends_all(const struct shm *s)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < SHM_LANES; i++)
		n += load_relaxed(&s->lanes[i].appends);
	return n;
}

/* new - old per second (0 if the counter went back: a value scribbled over by someone) */
static uint64_t per_s(uint64_t nu, uint64_t old, uint64_t ns)
{
	return nu < old ? 0 : (uint64_t)((double)(nu - old) * 1e9 / (double)ns);
}

void shm_rates(struct shm *s, uint64_t now)
{
	uint64_t ns = now - s->rate0.t_ns, a;
	int first = s->rate0.t_ns == 0;

	if (!first && ns < RATE_WINDOW_NS)
		return;
	a = appends_all(s);
	if (!first)
		store_relaxed(&s->hdr->rate_appends, per_s(a, s->rate0.appends, ns));
	s->rate0.appends = a;
	for (uint32_t p = 0; p < s->meta.cfg.partitions; p++) {
		struct shm_part *cp = &s->parts[p];
		uint64_t t = load_relaxed(&cp->tail), r = load_relaxed(&cp->records),
			 b = load_relaxed(&cp->bytes);

		if (!first) {
			store_relaxed(&cp->rate_append_bytes, per_s(t, s->rate0.tail[p], ns));
			store_relaxed(&cp->rate_records, per_s(r, s->rate0.records[p], ns));
			store_relaxed(&cp->rate_bytes, per_s(b, s->rate0.bytes[p], ns));
		}
		s->rate0.tail[p] = t;
		s->rate0.records[p] = r;
		s->rate0.bytes[p] = b;
	}
	s->rate0.t_ns = now;
}

/* 1 when some process holds the flusher lock (byte 0 of DIR/lock), 0 if not, -errno. */
static int flusher_lock_held(const char *dir)
{
	char path[4096];
	struct flock fl;
	int fd, rc = path_fmt(path, sizeof(path), "%s/%s", dir, LOCK_NAME);

	if (rc < 0)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = 0;
	fl.l_len = 1;
	rc = fcntl(fd, F_OFD_GETLK, &fl) < 0 ? -errno : fl.l_type != F_UNLCK;
	close(fd);
	return rc;
}

int shm_stat_live(const struct meta *m, struct shmwal_stat *st)
{
	struct shm *s = NULL;
	int rc = flusher_lock_held(m->dir);

	st->flusher_running = rc > 0;
	rc = shm_attach(m, SHM_ATTACH_NO_RINGS, &s);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	st->shm_present = 1;
	if (st->flusher_running) {
		uint64_t hb = load_relaxed(&s->hdr->heartbeat_ns), now = mono_ns();

		st->flusher_pid = load_relaxed(&s->hdr->flusher_pid);
		st->flusher_start_ns = load_relaxed(&s->hdr->flusher_start_ns);
		st->persistence = (enum shmwal_persistence)load_relaxed(&s->hdr->persistence);
		if (st->persistence > SHMWAL_PERSIST_PMEM_MSYNC)
			st->persistence = SHMWAL_PERSIST_NONE; /* garbage: say nothing */
		st->heartbeat_age_ns = now > hb ? now - hb : 0;
		st->appends_per_s = load_relaxed(&s->hdr->rate_appends);
	}
	{
		uint64_t ns;

		st->clock = tsclock_read(&s->hdr->clock, &ns) ? SHMWAL_CLOCK_TSC
							       : SHMWAL_CLOCK_REALTIME;
	}
	st->live_producers = shm_live_producers(s);
	st->appends = appends_all(s);
	for (uint32_t i = 0; i < SHM_LANES; i++)
		st->ring_full_waits += load_relaxed(&s->lanes[i].full_waits);
	for (uint32_t p = 0; p < m->cfg.partitions; p++) {
		const struct shm_part *cp = &s->parts[p];
		struct shmwal_partition_stat *ps = &st->part[p];

		ps->tail = load_relaxed(&cp->tail);
		ps->written = load_relaxed(&cp->written);
		ps->durable = load_relaxed(&cp->durable);
		ps->head = load_relaxed(&cp->head);
		ps->seg_first = load_relaxed(&cp->seg_first);
		ps->records = load_relaxed(&cp->records);
		ps->records_durable = load_relaxed(&cp->records_durable);
		ps->bytes = load_relaxed(&cp->bytes);
		ps->batches = load_relaxed(&cp->batches);
		ps->syncs = load_relaxed(&cp->syncs);
		ps->sync_ns_total = load_relaxed(&cp->sync_ns_total);
		ps->sync_ns_last = load_relaxed(&cp->sync_ns_last);
		for (unsigned b = 0; b < FSYNC_HIST_BUCKETS; b++)
			ps->sync_hist[b] = load_relaxed(&cp->fsync_hist[b]);
		ps->aborted_claims = load_relaxed(&cp->aborted_claims);
		ps->padded_gaps = load_relaxed(&cp->padded_gaps);
		ps->stalls = load_relaxed(&cp->stalls);
		ps->retention_segments = load_relaxed(&cp->retention_segments);
		ps->retention_bytes = load_relaxed(&cp->retention_bytes);
		if (st->flusher_running) {
			ps->append_bytes_per_s = load_relaxed(&cp->rate_append_bytes);
			ps->records_per_s = load_relaxed(&cp->rate_records);
			ps->bytes_per_s = load_relaxed(&cp->rate_bytes);
		}
	}
	shm_detach(s);
	return 0;
}
