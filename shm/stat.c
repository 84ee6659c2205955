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

SHMWAL_EXPORT int shmwal_stat(const char *dir, struct shmwal_stat *st)
{
	struct meta m;
	struct shm *s = NULL;
	int rc;

	if (!dir || !st)
		return seterr(-EINVAL, "NULL argument");
	memset(st, 0, sizeof(*st));
	rc = meta_load(dir, &m);
	if (rc < 0)
		return rc;
	st->cfg = m.cfg;
	rc = flusher_lock_held(dir);
	st->flusher_running = rc > 0;
	rc = shm_attach(&m, SHM_ATTACH_NO_RINGS, &s);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	st->shm_present = 1;
	if (st->flusher_running) {
		uint64_t hb = load_relaxed(&s->hdr->heartbeat_ns), now = mono_ns();

		st->flusher_pid = load_relaxed(&s->hdr->flusher_pid);
		st->persistence = (enum shmwal_persistence)load_relaxed(&s->hdr->persistence);
		if (st->persistence > SHMWAL_PERSIST_PMEM_MSYNC)
			st->persistence = SHMWAL_PERSIST_NONE; /* garbage: say nothing */
		st->heartbeat_age_ns = now > hb ? now - hb : 0;
	}
	{
		uint64_t ns;

		st->clock = tsclock_read(&s->hdr->clock, &ns) ? SHMWAL_CLOCK_TSC
							       : SHMWAL_CLOCK_REALTIME;
	}
	st->live_producers = shm_live_producers(s);
	for (uint32_t p = 0; p < m.cfg.partitions; p++) {
		const struct shm_part *cp = &s->parts[p];
		struct shmwal_partition_stat *ps = &st->part[p];

		ps->tail = load_relaxed(&cp->tail);
		ps->written = load_relaxed(&cp->written);
		ps->durable = load_relaxed(&cp->durable);
		ps->head = load_relaxed(&cp->head);
		ps->seg_first = load_relaxed(&cp->seg_first);
		ps->records = load_relaxed(&cp->records);
		ps->bytes = load_relaxed(&cp->bytes);
		ps->batches = load_relaxed(&cp->batches);
		ps->syncs = load_relaxed(&cp->syncs);
	}
	shm_detach(s);
	return 0;
}
