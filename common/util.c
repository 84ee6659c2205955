/* SPDX-License-Identifier: MIT */
/* util.c - error detail, paths, randomness. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "shmwal.h"
#include "common.h"

static __thread char last_error[512];

int seterr(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	return err;
}

void clearerr_detail(void) { last_error[0] = '\0'; }

SHMWAL_EXPORT const char *shmwal_last_error(void) { return last_error; }

int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int ofd_lock_byte(int fd, off_t byte, int wait)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = byte;
	fl.l_len = 1;
	while (fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

int random_u64(uint64_t *out)
{
	ssize_t n = getrandom(out, sizeof(*out), 0);

	if (n != (ssize_t)sizeof(*out))
		return n < 0 ? -errno : -EIO;
	return 0;
}

int path_fmt(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len)
		return seterr(-ENAMETOOLONG, "path too long: %s...", buf);
	return 0;
}
