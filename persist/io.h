/* SPDX-License-Identifier: MIT */
/*
 * io.h - the one seam every file operation of the flusher and of recovery goes through, so
 * tests can inject failures (EIO from fdatasync, ENOSPC from pwrite) and record the sequence
 * of operations to simulate crashes. Production uses the plain system calls.
 */
#ifndef SHMWAL_IO_H
#define SHMWAL_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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
};

extern const struct io_ops io_default;
/* The ops in use; tests swap them with io_set(). Not thread-safe: set before the flusher. */
extern const struct io_ops *io;
void io_set(const struct io_ops *ops);

/* Writes all of buf at off (looping over short writes); -errno. */
int io_pwrite_all(int fd, const void *buf, size_t len, off_t off);

#endif
