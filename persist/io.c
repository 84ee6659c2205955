/* SPDX-License-Identifier: MIT */
/* io.c - the file-operation seam (see io.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpmem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "io.h"

static int sys_open(const char *path, int flags, mode_t mode)
{
	int fd = open(path, flags, mode);
	return fd < 0 ? -errno : fd;
}
static ssize_t sys_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	ssize_t n = pwrite(fd, buf, len, off);
	return n < 0 ? -errno : n;
}
static int sys_fdatasync(int fd) { return fdatasync(fd) < 0 ? -errno : 0; }
static int sys_ftruncate(int fd, off_t len) { return ftruncate(fd, len) < 0 ? -errno : 0; }
static int sys_unlink(const char *path) { return unlink(path) < 0 ? -errno : 0; }
static int sys_rename(const char *a, const char *b) { return rename(a, b) < 0 ? -errno : 0; }
static int sys_mkdir(const char *path, mode_t mode)
{
	return mkdir(path, mode) < 0 ? -errno : 0;
}
static int sys_close(int fd) { return close(fd) < 0 ? -errno : 0; }

static int sys_fallocate(int fd, off_t len)
{
	int rc;

	do
		rc = posix_fallocate(fd, 0, len);
	while (rc == EINTR);
	return -rc;
}

/*
 * pmem_map_file() takes a path: /proc/self/fd/N names the very file open at fd, so a file
 * swapped in under the segment's name meanwhile can never be the one mapped.
 * The mapping is then populated (page tables made, and on tmpfs the fallocated pages cleared)
 * in one call, here, rather than by a page fault per 4 KiB in the middle of the flusher's
 * copies: on this class of machine a fault on a fresh tmpfs page costs ~1.8 us, the populate
 * ~1 us a page, off the durable path's per-batch latency. Kernels before 5.14 lack
 * MADV_POPULATE_WRITE (EINVAL): the faults then happen as before.
 */
static int pm_map(int fd, struct io_map *m)
{
	char path[64];
	size_t len = 0;
	int is_pmem = 0;
	void *addr;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	addr = pmem_map_file(path, 0, 0, 0, &len, &is_pmem);
	if (!addr)
		return seterr(errno ? -errno : -EIO, "pmem_map_file: %s", pmem_errormsg());
	m->addr = addr;
	m->len = len;
	m->is_pmem = is_pmem;
	(void)madvise(addr, len, MADV_POPULATE_WRITE);
	return 0;
}

static void pm_unmap(struct io_map *m)
{
	if (m->addr)
		pmem_unmap(m->addr, m->len);
	memset(m, 0, sizeof(*m));
}

static void pm_copy(struct io_map *m, uint64_t off, const void *src, size_t len)
{
	if (m->is_pmem)
		pmem_memcpy_nodrain(m->addr + off, src, len);
	else
		memcpy(m->addr + off, src, len);
}

static void pm_zero(struct io_map *m, uint64_t off, size_t len)
{
	if (m->is_pmem)
		pmem_memset_nodrain(m->addr + off, 0, len);
	else
		memset(m->addr + off, 0, len);
}

static int pm_msync(struct io_map *m, uint64_t off, size_t len)
{
	if (!len)
		return 0;
	return pmem_msync(m->addr + off, len) < 0 ? -errno : 0;
}

static int pm_drain(struct io_map *m, uint64_t off, size_t len)
{
	if (!m->is_pmem)
		return pm_msync(m, off, len);
	pmem_drain();
	return 0;
}

static int pm_flush(struct io_map *m, uint64_t off, size_t len)
{
	if (!m->is_pmem)
		return pm_msync(m, off, len);
	pmem_persist(m->addr + off, len);
	return 0;
}

const struct io_ops io_default = {
	.open = sys_open,
	.pwrite = sys_pwrite,
	.fdatasync = sys_fdatasync,
	.ftruncate = sys_ftruncate,
	.unlink = sys_unlink,
	.rename = sys_rename,
	.mkdir = sys_mkdir,
	.fsync_dir = fsync_dir,
	.close = sys_close,
	.fallocate = sys_fallocate,
	.map = pm_map,
	.unmap = pm_unmap,
	.copy = pm_copy,
	.zero = pm_zero,
	.drain = pm_drain,
	.flush = pm_flush,
};

const struct io_ops *io = &io_default;

void io_set(const struct io_ops *ops) { io = ops ? ops : &io_default; }

int io_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t n = io->pwrite(fd, p, len, off);

		if (n == -EINTR)
			continue;
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* 1 when len bytes at p are all zero. */
static int all_zero(const uint8_t *p, size_t len)
{
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

int io_copy_range(int dst, uint64_t dst_off, int src, uint64_t from, uint64_t to,
		  const char *src_name)
{
	enum { CHUNK = 64 << 10 };
	uint8_t *buf = malloc(CHUNK);
	int rc = 0;

	if (!buf)
		return seterr(-ENOMEM, "out of memory");
	while (rc == 0 && from < to) {
		size_t want = to - from < CHUNK ? (size_t)(to - from) : CHUNK;
		ssize_t n = pread(src, buf, want, (off_t)from);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = seterr(n < 0 ? -errno : -EIO, "read %s at offset %" PRIu64 ": %s",
				    src_name, from, n < 0 ? strerror(errno) : "end of file");
			break;
		}
		if (!all_zero(buf, (size_t)n) &&
		    (rc = io_pwrite_all(dst, buf, (size_t)n, (off_t)dst_off)) < 0)
			seterr(rc, "write: %s", strerror(-rc));
		from += (uint64_t)n;
		dst_off += (uint64_t)n;
	}
	free(buf);
	return rc;
}
