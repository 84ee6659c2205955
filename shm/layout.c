/* SPDX-License-Identifier: MIT */
/*
 * layout.c - creating, adopting, validating and mapping the shared-memory object.
 *
 * Attachers never trust what they map: the header must carry our magic, layout version and
 * layout signature, the instance id of DIR/meta, the same configuration, the offsets this
 * build computes from that configuration and a size equal to the object's; otherwise -EPROTO.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm_impl.h"
#include "shmwal_format.h"

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

void shm_geometry(const struct shmwal_config *cfg, struct shm_geometry *g)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

	if (page < SHM_PAGE)
		page = SHM_PAGE;
	g->off_slots = page;
	g->off_lanes = align_up(g->off_slots + SHM_SLOTS * sizeof(struct shm_slot), page);
	g->off_parts = align_up(g->off_lanes + SHM_LANES * sizeof(struct shm_lane), page);
	g->off_rings = align_up(g->off_parts + cfg->partitions * sizeof(struct shm_part),
				cfg->ring_bytes > page ? page : cfg->ring_bytes);
	g->off_rings = align_up(g->off_rings, page);
	g->total = g->off_rings + (uint64_t)cfg->partitions * cfg->ring_bytes;
}

uint64_t shm_layout_signature(void)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf),
			 "v%u line%d hdr%zu/%zu/%zu slot%zu lane%zu/%zu part%zu/%zu/%zu/%zu cfg%zu "
			 "frame%u clock%zu stop%zu wait%zu",
			 SHM_LAYOUT_VERSION, CACHE_LINE, sizeof(struct shm_header),
			 offsetof(struct shm_header, state),
			 offsetof(struct shm_header, flusher_sleeping), sizeof(struct shm_slot),
			 sizeof(struct shm_lane), offsetof(struct shm_lane, claim),
			 sizeof(struct shm_part), offsetof(struct shm_part, head),
			 offsetof(struct shm_part, written), offsetof(struct shm_part, records),
			 sizeof(struct shmwal_config), 32u, offsetof(struct shm_header, clock),
			 offsetof(struct shm_header, stop), offsetof(struct shm_header, wait_ns));
	uint32_t a = shmwal_crc32c(0, buf, (size_t)n);
	uint32_t b = shmwal_crc32c(a, buf, (size_t)n);

	return (uint64_t)a << 32 | b;
}

/*
 * Maps [0, off_rings) once and, with `rings`, each ring twice back to back, so that ring
 * bytes at offset ring_bytes + x are the same memory as at x: a frame that wraps is
 * contiguous. Without `rings` (readers, stat: they use the control words only) nothing is
 * populated either: prefaulting a 4 MiB ring twice and unmapping it again took a reader's open
 * and close ~500 us (`build/bench/suite --only seeds`, stream_1000_records_linear open+close:
 * mean ~650 us before, ~100 us after, 1000 reads included).
 */
int shm_map(struct shm *s, int fd, const struct shm_geometry *g, int rings)
{
	const struct shmwal_config *cfg = &s->meta.cfg;
	uint32_t p;
	void *m;

	s->fd = fd;
	s->base_len = (size_t)g->off_rings;
	m = mmap(NULL, s->base_len, PROT_READ | PROT_WRITE, MAP_SHARED | (rings ? MAP_POPULATE : 0),
		 fd, 0);
	if (m == MAP_FAILED)
		return seterr(-errno, "mmap shared memory: %s", strerror(errno));
	s->base = m;
	s->hdr = m;
	s->slots = (struct shm_slot *)(s->base + g->off_slots);
	s->lanes = (struct shm_lane *)(s->base + g->off_lanes);
	s->parts = (struct shm_part *)(s->base + g->off_parts);
	s->ring_mask = cfg->ring_bytes - 1;
	s->max_frame = cfg_max_frame(cfg);

	for (p = 0; rings && p < cfg->partitions; p++) {
		size_t rb = (size_t)cfg->ring_bytes;
		off_t off = (off_t)(g->off_rings + p * cfg->ring_bytes);
		uint8_t *va = mmap(NULL, 2 * rb, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
				   -1, 0);

		if (va == MAP_FAILED)
			return seterr(-errno, "reserve ring address space: %s", strerror(errno));
		s->rings[p] = va;
		if (mmap(va, rb, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd,
			 off) == MAP_FAILED ||
		    mmap(va + rb, rb, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, off) ==
			    MAP_FAILED)
			return seterr(-errno, "map ring %u: %s", p, strerror(errno));
	}
	return 0;
}

void shm_unmap(struct shm *s)
{
	uint32_t p;

	for (p = 0; p < SHMWAL_MAX_PARTITIONS; p++) {
		if (s->rings[p])
			munmap(s->rings[p], 2 * (size_t)s->meta.cfg.ring_bytes);
		s->rings[p] = NULL;
	}
	if (s->base)
		munmap(s->base, s->base_len);
	s->base = NULL;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	if (s->lockfd >= 0)
		close(s->lockfd);
	s->lockfd = -1;
}

static int open_lockfile(struct shm *s, const char *dir)
{
	char path[4096];
	int rc = path_fmt(path, sizeof(path), "%s/%s", dir, LOCK_NAME);

	if (rc < 0)
		return rc;
	s->lockfd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (s->lockfd < 0)
		return seterr(-errno, "%s: %s", path, strerror(errno));
	return 0;
}

static struct shm *shm_new(const struct meta *m)
{
	struct shm *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->meta = *m;
	s->fd = -1;
	s->lockfd = -1;
	return s;
}

/* Checks a mapped header against what this build and DIR/meta expect. */
static int header_check(const struct shm_header *h, const struct meta *m,
			const struct shm_geometry *g, uint64_t size)
{
	if (h->magic != SHM_MAGIC)
		return seterr(-EPROTO, "shared memory has no shmwal header (bad magic)");
	if (h->layout_version != SHM_LAYOUT_VERSION)
		return seterr(-EPROTO, "shared memory was made by another shmwal version "
				       "(layout %u, this build %u)",
			      h->layout_version, SHM_LAYOUT_VERSION);
	if (h->signature != shm_layout_signature())
		return seterr(-EPROTO, "shared memory was made by another shmwal version or build "
				       "(its struct layout signature %016" PRIx64 " differs from "
				       "this build's %016" PRIx64 ")",
			      h->signature, shm_layout_signature());
	if (h->instance != m->instance)
		return seterr(-EPROTO, "shared memory belongs to another WAL instance "
				       "(%016" PRIx64 ", expected %016" PRIx64 ")",
			      h->instance, m->instance);
	if (memcmp(&h->cfg, &m->cfg, sizeof(h->cfg)) != 0)
		return seterr(-EPROTO, "shared memory holds another configuration than DIR/meta");
	if (h->off_slots != g->off_slots || h->off_lanes != g->off_lanes ||
	    h->off_parts != g->off_parts || h->off_rings != g->off_rings ||
	    h->total_bytes != g->total || size != g->total)
		return seterr(-EPROTO, "shared memory geometry does not match its configuration");
	return 0;
}

static int open_and_check(struct shm *s, int oflags, int rings)
{
	struct shm_geometry g;
	struct shm_header h;
	struct stat st;
	char name[32];
	int fd;

	shm_name(name, s->meta.instance);
	shm_geometry(&s->meta.cfg, &g);
	fd = shm_open(name, oflags | O_CLOEXEC | O_NOFOLLOW, 0);
	if (fd < 0) {
		if (errno == ENOENT)
			return seterr(-ENOENT, "no shared memory %s: start the flusher "
					       "(shmwal flusher DIR)", name);
		return seterr(-errno, "shm_open %s: %s", name, strerror(errno));
	}
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < sizeof(h) ||
	    pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
		close(fd);
		return seterr(-EPROTO, "shared memory %s is too small to hold a header", name);
	}
	if (header_check(&h, &s->meta, &g, (uint64_t)st.st_size) < 0) {
		close(fd);
		return -EPROTO;
	}
	return shm_map(s, fd, &g, rings);
}

int shm_attach(const struct meta *m, int flags, struct shm **out)
{
	struct shm *s = shm_new(m);
	int rc;

	if (!s)
		return seterr(-ENOMEM, "out of memory");
	rc = open_and_check(s, O_RDWR, !(flags & SHM_ATTACH_NO_RINGS));
	if (rc == 0 && (flags & SHM_ATTACH_REGISTRY))
		rc = open_lockfile(s, m->dir);
	if (rc == 0 && load_acquire(&s->hdr->state) != SHM_STATE_READY) /* pairs: READY store */
		rc = seterr(-EPROTO, "shared memory is not initialized (a flusher is starting, "
				     "or died while creating it)");
	if (rc < 0) {
		shm_unmap(s);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int shm_exists(const struct meta *m)
{
	char name[32];
	int fd;

	shm_name(name, m->instance);
	fd = shm_open(name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
	if (fd >= 0)
		close(fd);
	return fd >= 0 || errno != ENOENT;
}

int shm_orphaned(struct shm *s)
{
	struct stat st;

	return fstat(s->fd, &st) == 0 && st.st_nlink == 0;
}

void shm_forget_lock(struct shm *s)
{
	if (s->lockfd >= 0)
		close(s->lockfd);
	s->lockfd = -1;
}

void shm_detach(struct shm *s)
{
	if (!s)
		return;
	shm_unmap(s);
	free(s->dead);
	free(s);
}

static int shm_create_new(struct shm *s, const uint64_t *end_lsn)
{
	const struct shmwal_config *cfg = &s->meta.cfg;
	struct shm_geometry g;
	struct shm_header *h;
	char name[32];
	uint32_t expect = SHM_STATE_EMPTY, p;
	int fd, rc;

	shm_name(name, s->meta.instance);
	shm_geometry(cfg, &g);
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, cfg->mode);
	if (fd < 0)
		return seterr(-errno, "create shared memory %s: %s", name, strerror(errno));
	/* shm_open applies the umask; the configured mode is what was asked for. */
	if (fchmod(fd, cfg->mode) < 0 || ftruncate(fd, (off_t)g.total) < 0) {
		rc = -errno;
		goto fail;
	}
	rc = posix_fallocate(fd, 0, (off_t)g.total);
	if (rc) {
		rc = seterr(-rc, "cannot reserve %" PRIu64 " bytes of shared memory for %s: %s",
			    g.total, name, strerror(rc));
		goto fail_quiet;
	}
	rc = shm_map(s, fd, &g, 1);
	if (rc < 0)
		goto fail_unlink;
	h = s->hdr;
	if (!cas_seq(&h->state, &expect, SHM_STATE_INIT)) {
		rc = seterr(-EPROTO, "shared memory %s is being initialized by someone else", name);
		goto fail_unlink;
	}
	h->magic = SHM_MAGIC;
	h->layout_version = SHM_LAYOUT_VERSION;
	h->page_bytes = (uint32_t)sysconf(_SC_PAGESIZE);
	h->signature = shm_layout_signature();
	h->instance = s->meta.instance;
	h->total_bytes = g.total;
	h->off_slots = g.off_slots;
	h->off_lanes = g.off_lanes;
	h->off_parts = g.off_parts;
	h->off_rings = g.off_rings;
	h->cfg = *cfg;
	h->created_ns = real_ns();
	for (p = 0; p < cfg->partitions; p++) {
		struct shm_part *cp = &s->parts[p];

		store_relaxed(&cp->tail, end_lsn[p]);
		store_relaxed(&cp->head, end_lsn[p]);
		store_relaxed(&cp->written, end_lsn[p]);
		store_relaxed(&cp->durable, end_lsn[p]);
		s->f_head[p] = s->f_written[p] = end_lsn[p];
	}
	/* before READY: producers never see the clock unpublished (tsclock.h) */
	tsclock_start(&h->clock, &s->clk, mono_ns());
	store_release(&h->state, SHM_STATE_READY); /* pairs: attachers' load-acquire */
	return 0;

fail:
	rc = seterr(rc, "size shared memory %s: %s", name, strerror(-rc));
fail_quiet:
	close(fd);
	shm_unlink(name);
	return rc;
fail_unlink:
	shm_unmap(s);
	shm_unlink(name);
	return rc;
}

/*
 * An adopted object: the flusher that owned it died (or stopped with claims unfinished).
 * Ring bytes are freed only once they are durable (flusher.c), so the ring still holds every
 * frame from `durable` on. The files may hold more than that (written before the old flusher
 * died), but those bytes were never synced by a sync that succeeded as far as we know (an
 * fdatasync that failed leaves pages marked clean: "fsyncgate"), so the flusher cuts the files
 * back to `durable` and writes [durable, tail) again from the ring: *resume = durable.
 */
static int shm_adopt(struct shm *s, const uint64_t *end_lsn, uint64_t *resume)
{
	uint32_t p;

	for (p = 0; p < s->meta.cfg.partitions; p++) {
		struct shm_part *cp = &s->parts[p];
		uint64_t tail = load_acquire(&cp->tail), head = load_acquire(&cp->head);
		uint64_t written = load_acquire(&cp->written), durable = load_acquire(&cp->durable);
		uint64_t e = end_lsn[p];

		/* No bound on tail - head: claims given up while a flusher stopped may leave tail
		 * far ahead (they are padded later); consume never reads past one ring lap. */
		if (!(head <= durable && durable <= written && written <= tail &&
		      (head & 7) == 0 && (durable & 7) == 0 && (tail & 7) == 0))
			return seterr(-EPROTO, "partition %u: shared memory positions are "
					       "inconsistent (head %" PRIu64 " written %" PRIu64
					       " durable %" PRIu64 " tail %" PRIu64 ")",
				      p, head, written, durable, tail);
		if (e < durable)
			return seterr(-EPROTO, "partition %u: the segment files end at %" PRIu64
					       " but LSNs up to %" PRIu64 " were published durable "
					       "(were files removed or restored?)",
				      p, e, durable);
		/* The caller cuts the files back to durable and writes [durable, e) again from
		 * the ring: only if the ring really still holds it. These words and the ring are
		 * writable by every producer; positions rolled back (or frames overwritten) would
		 * otherwise cut records that were durable off the files and write whatever the
		 * ring holds now in their place: zeroed bytes become pads. Whatever the flusher
		 * wrote, it wrote from [head, head + ring_bytes), and only up to the tail. */
		if (e > tail || e - head > s->meta.cfg.ring_bytes)
			return seterr(-EPROTO,
				      "partition %u: the segment files end at %" PRIu64
				      ", outside what the ring can hold (head %" PRIu64
				      " tail %" PRIu64 "); refusing to cut them back to the "
				      "published durable LSN %" PRIu64,
				      p, e, head, tail, durable);
		for (uint64_t pos = durable; pos < e;) {
			const void *f = ring_at(s, p, pos);
			enum shmwal_frame_verdict v =
			    shmwal_frame_check(f, e - pos, pos, s->max_frame);
			/* read again: it can change under us; bounded, so we always move on */
			uint64_t size =
			    SHMWAL_ALIGN_UP(shmwal_word_len(load_relaxed((shmwal_atomic64 *)f)));

			if (v != SHMWAL_FRAME_OK || size < SHMWAL_FRAME_HDR || size > e - pos)
				return seterr(-EPROTO,
					      "partition %u: the ring no longer holds LSN %" PRIu64
					      " (%s), which the segment files hold past the "
					      "published durable LSN %" PRIu64 "; refusing to "
					      "cut them back",
					      p, pos, shmwal_frame_verdict_str(v), durable);
			pos += size;
		}
		s->f_head[p] = head;
		s->f_written[p] = durable;
		store_release(&cp->written, durable);
		shm_free(s, p, durable);
		resume[p] = durable;
	}
	return 0;
}

/* The state word of an existing object if it carries our magic, SHM_STATE_EMPTY if it opens
 * but does not (too small, another magic), -ENOENT if there is none, or another -errno when it
 * cannot be opened (EMFILE, EACCES...): never a reason to remove it. */
static int peek_state(const char *name)
{
	struct shm_header h;
	int fd = shm_open(name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
	uint32_t state;
	ssize_t n;

	if (fd < 0)
		return errno == ENOENT ? -ENOENT
				       : seterr(-errno, "open shared memory %s: %s", name,
						strerror(errno));
	n = pread(fd, &h, sizeof(h), 0);
	close(fd);
	if (n != (ssize_t)sizeof(h) || h.magic != SHM_MAGIC)
		return SHM_STATE_EMPTY;
	/* Any process that maps the object can write this word: a value that is none of ours
	 * would come back as a bogus negative errno. Ours by magic, so it may hold records:
	 * refuse it, as a complete object that fails its checks is refused. */
	state = atomic_load_explicit(&h.state, memory_order_relaxed);
	if (state > SHM_STATE_READY)
		return seterr(-EPROTO,
			      "shared memory %s has an invalid state word (%#x); it may "
			      "hold records, so it is neither adopted nor made anew",
			      name, state);
	return (int)state;
}

/*
 * A flusher adopts only an object its own user made. Anyone who can read DIR/meta knows the
 * name, and while no flusher runs could plant an object there whose "committed" frames the
 * flusher would then write into the log as records (a reader turned producer).
 */
static int check_owner(struct shm *s, const char *name)
{
	struct stat st;

	if (fstat(s->fd, &st) < 0)
		return seterr(-errno, "fstat %s: %s", name, strerror(errno));
	if (st.st_uid != geteuid())
		return seterr(-EPERM,
			      "shared memory %s belongs to uid %u, not to this flusher's uid %u: "
			      "refusing to adopt it (run the flusher as the user who ran the last "
			      "one, or remove the object if you know it holds nothing)",
			      name, (unsigned)st.st_uid, (unsigned)geteuid());
	return 0;
}

int shm_flusher_open(const struct meta *m, const uint64_t *end_lsn, shm_log_fn log,
		     void *log_ctx, struct shm **out, int *adopted, uint64_t *resume)
{
	struct shm *s = shm_new(m);
	char name[32];
	int rc;

	if (!s)
		return seterr(-ENOMEM, "out of memory");
	s->log = log;
	s->log_ctx = log_ctx;
	s->dead = calloc(SHM_SLOTS, sizeof(*s->dead));
	if (!s->dead) {
		free(s);
		return seterr(-ENOMEM, "out of memory");
	}
	*adopted = 0;
	shm_name(name, m->instance);
	rc = peek_state(name);
	if (rc < 0 && rc != -ENOENT) {
		shm_detach(s);
		return rc;
	}
	if (rc == SHM_STATE_READY) {
		/* A complete object: adopt it, or refuse if it is not ours (it may hold data). */
		rc = open_and_check(s, O_RDWR, 1);
		if (rc == 0)
			rc = check_owner(s, name);
		if (rc == 0 && load_acquire(&s->hdr->state) == SHM_STATE_READY)
			rc = shm_adopt(s, end_lsn, resume);
		if (rc == 0)
			tsclock_start(&s->hdr->clock, &s->clk, mono_ns());
		if (rc < 0) {
			shm_detach(s);
			return rc;
		}
		*adopted = 1;
	} else {
		if (rc != -ENOENT) {
			/* Ours by name, but never finished (we hold the flusher lock, so whoever
			 * was making it is dead) or garbage: nothing of value can be in it. */
			if (log)
				log(log_ctx, SHMWAL_LOG_WARN,
				    "shared memory %s was left unfinished or damaged; making it anew",
				    name);
			shm_unlink(name);
		}
		rc = shm_create_new(s, end_lsn);
		for (uint32_t p = 0; rc == 0 && p < m->cfg.partitions; p++)
			resume[p] = end_lsn[p];
		if (rc < 0) {
			shm_detach(s);
			return rc;
		}
	}
	rc = open_lockfile(s, m->dir);
	if (rc < 0) {
		shm_detach(s);
		return rc;
	}
	store_relaxed(&s->hdr->flusher_pid, (uint32_t)getpid());
	fetch_add_relaxed(&s->hdr->flusher_gen, 1);
	store_relaxed(&s->hdr->flusher_start_ns, real_ns());
	store_relaxed(&s->hdr->heartbeat_ns, mono_ns());
	store_relaxed(&s->hdr->stop, 0);
	store_relaxed(&s->hdr->persistence, SHMWAL_PERSIST_NONE);
	*out = s;
	return 0;
}

void shm_flusher_close(struct shm *s, int remove)
{
	char name[32];

	if (!s)
		return;
	store_relaxed(&s->hdr->flusher_pid, 0);
	store_relaxed(&s->hdr->persistence, SHMWAL_PERSIST_NONE);
	shm_name(name, s->meta.instance);
	if (remove)
		shm_unlink(name);
	shm_detach(s);
}
