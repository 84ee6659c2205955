/* SPDX-License-Identifier: MIT */
/*
 * io.h - the one seam every file operation of the flusher and of recovery goes through, so
 * tests can inject failures (EIO from fdatasync, ENOSPC from pwrite) and record the sequence
 * of operations to simulate crashes. Production uses the plain system calls, and libpmem for
 * the segments of the pmem backend.
 */
#ifndef SHMWAL_IO_H
#define SHMWAL_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * A segment file of the pmem backend, mapped for writing with pmem_map_file(). Stores into it
 * become persistent in one of two ways, fixed at mapping time:
 *   is_pmem 1  the mapping is persistent memory (pmem_is_pmem(), or PMEM_IS_PMEM_FORCE=1):
 *              copies use non-temporal stores or cache-line flushes without a fence, and one
 *              pmem_drain() (a fence) makes every earlier copy of the thread persistent;
 *   is_pmem 0  an ordinary file mapping (no DAX): copies are plain stores into the page cache,
 *              made durable by pmem_msync() (msync(2)) of their range.
 */
struct io_map {
	uint8_t *addr;
	size_t len;
	int is_pmem;
};

struct io_ops {
	int (*open)(const char *path, int flags, mode_t mode);
	ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t off);
	int (*fdatasync)(int fd);
	int (*ftruncate)(int fd, off_t len);
	int (*unlink)(const char *path);
	int (*rename)(const char *from, const char *to);
	int (*mkdir)(const char *path, mode_t mode);
	int (*fsync_dir)(const char *path);
	int (*close)(int fd);
	/* The pmem backend (see struct io_map). */
	int (*fallocate)(int fd, off_t len); /* posix_fallocate(fd, 0, len) */
	int (*map)(int fd, struct io_map *m); /* maps all of the open file fd, read-write */
	void (*unmap)(struct io_map *m);
	/* Copies (or zeroes) without waiting for persistence. */
	void (*copy)(struct io_map *m, uint64_t off, const void *src, size_t len);
	void (*zero)(struct io_map *m, uint64_t off, size_t len);
	/* Makes the copies of this thread persistent: on pmem every earlier one (the fence
	 * covers them all, in any mapping), otherwise those into [off, off + len) of m. */
	int (*drain)(struct io_map *m, uint64_t off, size_t len);
	/* Makes [off, off + len) of m persistent whoever stored into it (a crashed flusher's
	 * copies included): flush every cache line and fence, or msync. */
	int (*flush)(struct io_map *m, uint64_t off, size_t len);
};

extern const struct io_ops io_default;
/* The ops in use; tests swap them with io_set(). Not thread-safe: set before the flusher. */
extern const struct io_ops *io;
void io_set(const struct io_ops *ops);

/* Writes all of buf at off (looping over short writes); -errno. */
int io_pwrite_all(int fd, const void *buf, size_t len, off_t off);

/* Copies bytes [from, to) of the file open at src (named src_name, for errors; read with
 * pread) to dst at dst_off on (written through the seam). Blocks of zeros are not written:
 * dst must read as zeros there already (sized with ftruncate or fallocate). 0 or -errno. */
int io_copy_range(int dst, uint64_t dst_off, int src, uint64_t from, uint64_t to,
		  const char *src_name);

#endif
