/* SPDX-License-Identifier: MIT */
/* segment.c - listing and creating segment files. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmwal_format.h"
#include "common.h"
#include "io.h"
#include "segment.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int seg_list_load(const char *pdir, struct seg_list *l)
{
	DIR *d = opendir(pdir);
	struct dirent *e;

	memset(l, 0, sizeof(*l));
	if (!d)
		return seterr(-errno, "%s: %s", pdir, strerror(errno));
	while ((e = readdir(d))) {
		uint64_t first;

		if (shmwal_segment_name_parse(e->d_name, &first) < 0)
			continue;
		if (l->n == l->cap) {
			uint32_t cap = l->cap ? l->cap * 2 : 16;
			uint64_t *f = realloc(l->first, cap * sizeof(*f));

			if (!f) {
				closedir(d);
				seg_list_free(l);
				return seterr(-ENOMEM, "out of memory");
			}
			l->first = f;
			l->cap = cap;
		}
		l->first[l->n++] = first;
	}
	closedir(d);
	if (l->n)
		qsort(l->first, l->n, sizeof(*l->first), cmp_u64);
	return 0;
}

void seg_list_free(struct seg_list *l)
{
	free(l->first);
	memset(l, 0, sizeof(*l));
}

int seg_path(char *buf, size_t len, const char *pdir, uint64_t first)
{
	char name[24];

	shmwal_segment_name(name, first);
	return path_fmt(buf, len, "%s/%s", pdir, name);
}

int seg_create(const char *pdir, uint32_t part, uint64_t first, const struct meta *m, int *fd_out,
	       struct io_map *map)
{
	struct shmwal_segment_header h;
	const int pmem = m->cfg.backend == SHMWAL_BACKEND_PMEM;
	char path[4096];
	int fd, rc;

	rc = seg_path(path, sizeof(path), pdir, first);
	if (rc < 0)
		return rc;
	fd = io->open(path, (pmem ? O_RDWR : O_WRONLY) | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		      m->cfg.mode & 0666);
	if (fd < 0)
		return seterr(fd, "create %s: %s", path, strerror(-fd));
	shmwal_segment_header_init(&h, part, first, m->instance, real_ns());
	/* open() applied the umask: readers of a group-shared WAL need the configured mode. */
	rc = fchmod(fd, m->cfg.mode & 0666) < 0 ? -errno : 0;
	/* pmem: the whole file is allocated now (a full disk fails here, not with SIGBUS on a
	 * store later), and its size is made durable by the fdatasync below. */
	if (rc == 0 && pmem)
		rc = io->fallocate(fd, (off_t)cfg_pmem_file_bytes(&m->cfg));
	if (rc == 0)
		rc = io_pwrite_all(fd, &h, sizeof(h), 0);
	if (rc == 0)
		rc = io->fdatasync(fd);
	if (rc == 0)
		rc = io->fsync_dir(pdir);
	if (rc == 0 && pmem)
		rc = io->map(fd, map);
	if (rc < 0) {
		io->close(fd);
		io->unlink(path); /* never leave a half-made segment behind (e.g. a full disk) */
		return seterr(rc, "create %s: %s", path, strerror(-rc));
	}
	*fd_out = fd;
	return 0;
}
