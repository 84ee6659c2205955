/* SPDX-License-Identifier: MIT */
/*
 * stat.c - shmwal_stat(): the live part from the shared memory (shm/stat.c), and what the
 * partitions' directories hold.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "segment.h"

/* Segment files of partition p: how many, their total size, the oldest one's first LSN. */
static int files_of(const struct meta *m, uint32_t p, struct shmwal_partition_stat *ps)
{
	char pdir[4096], path[4096];
	struct seg_list l;
	int rc;

	if ((rc = part_dir(pdir, sizeof(pdir), m->dir, p)) < 0 ||
	    (rc = seg_list_load(pdir, &l)) < 0)
		return rc;
	ps->segments = l.n;
	ps->oldest = l.n ? l.first[0] : 0;
	for (uint32_t i = 0; i < l.n; i++) {
		struct stat st;

		/* one removed meanwhile (retention, a checkpoint) just does not count */
		if (seg_path(path, sizeof(path), pdir, l.first[i]) == 0 && lstat(path, &st) == 0)
			ps->segment_bytes += (uint64_t)st.st_size;
	}
	seg_list_free(&l);
	return 0;
}

SHMWAL_EXPORT int shmwal_stat(const char *dir, struct shmwal_stat *st)
{
	struct meta m;
	int rc;

	if (!dir || !st)
		return seterr(-EINVAL, "NULL argument");
	memset(st, 0, sizeof(*st));
	if ((rc = meta_load(dir, &m)) < 0)
		return rc;
	st->cfg = m.cfg;
	if ((rc = shm_stat_live(&m, st)) < 0)
		return rc;
	for (uint32_t p = 0; p < m.cfg.partitions; p++)
		if ((rc = files_of(&m, p, &st->part[p])) < 0)
			return rc;
	return 0;
}
