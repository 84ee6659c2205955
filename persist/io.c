/* SPDX-License-Identifier: MIT */
/* io.c - the file-operation seam (see io.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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
