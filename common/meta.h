/* SPDX-License-Identifier: MIT */
/*
 * meta.h - the WAL directory's metadata file (DIR/meta): configuration + instance id.
 */
#ifndef SHMWAL_META_H
#define SHMWAL_META_H

#include <stdint.h>

#include "shmwal.h"

#define META_NAME "meta"
#define LOCK_NAME "lock"
/* DIR/lock's bytes, each an OFD write lock: the flusher holds byte 0; producer slot i holds
 * byte 1 + i (shm/registry.c, up to 256 slots); setters of DIR/retention take this one. */
#define LOCK_BYTE_FLUSHER   0
#define LOCK_BYTE_RETENTION 4096
#define QUARANTINE_NAME "quarantine"

struct meta {
	struct shmwal_config cfg;
	uint64_t instance;
	char dir[4096]; /* the WAL directory, as given to meta_load() */
};

/* Largest frame a configuration allows (header + max key + max value, aligned). */
uint64_t cfg_max_frame(const struct shmwal_config *cfg);

/*
 * Size of a segment file of the pmem backend, fixed at creation: the header, segment_bytes and
 * one largest frame (a segment is rotated at the first frame boundary past segment_bytes),
 * rounded up to 4 KiB.
 */
uint64_t cfg_pmem_file_bytes(const struct shmwal_config *cfg);

/* Reads and checks DIR/meta. -ENOENT, -EBADMSG (damaged), -errno. */
int meta_load(const char *dir, struct meta *m);
/* meta_load(), and `part` must be one of its partitions: -EINVAL (a NULL dir too). */
int meta_load_part(const char *dir, uint32_t part, struct meta *m);

/* "DIR/pNNN" */
int part_dir(char *buf, size_t len, const char *dir, uint32_t part);

/* The shm object name of an instance: "/shmwal.<16 hex>". buf holds 32 bytes. */
void shm_name(char *buf, uint64_t instance);

#endif
