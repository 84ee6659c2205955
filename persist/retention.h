/* SPDX-License-Identifier: MIT */
/* retention.h - the retention policy file (DIR/retention) and its enforcement in the flusher. */
#ifndef SHMWAL_RETENTION_H
#define SHMWAL_RETENTION_H

#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>

#include "atomics.h"
#include "meta.h"
#include "segment.h"

#define RETENTION_NAME "retention"

/* What DIR/retention says: the default and the partitions' own policies. */
struct retention_file {
	struct shmwal_retention def;
	uint8_t has[SHMWAL_MAX_PARTITIONS];
	struct shmwal_retention part[SHMWAL_MAX_PARTITIONS];
};

/* Reads DIR/retention (none: all zero). 0, -EBADMSG (damaged, with the error detail), -errno. */
int retention_load(const struct meta *m, struct retention_file *rf);

/* The policy in force for partition p. */
void retention_of(const struct retention_file *rf, uint32_t p, struct shmwal_retention *out);

/*
 * The flusher's retention thread: reloads DIR/retention when it changes and removes what the
 * policy no longer keeps, RETAIN_PASS_NS apart. rotate_age_ms[p] is what the flusher's own
 * loop reads for time-based rotation (relaxed: a policy takes effect a pass later or sooner).
 */
struct retainer {
	const struct meta *m;
	struct shm *shm;
	rec_log_fn log;
	void *log_ctx;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;	  /* mu */
	int running;	  /* the thread was started */
	struct stat seen; /* DIR/retention as last loaded (st_ino 0: none) */
	int bad;	  /* the file was damaged at the last look (logged once) */
	struct retention_file rf;
	shmwal_atomic64 rotate_age_ms[SHMWAL_MAX_PARTITIONS];
};

/* Loads the policy and starts the thread. 0 or -errno (the policy file is damaged: logged,
 * and the thread runs with no policy until it is fixed; that is not an error). */
int retainer_start(struct retainer *r, const struct meta *m, struct shm *shm, rec_log_fn log,
		   void *log_ctx);

/* Stops and joins the thread (a pass in progress finishes first). */
void retainer_stop(struct retainer *r);

/* One pass of partition p, for the thread and the tests: removes what the policy does not
 * keep. Returns segments removed, or -errno. */
int retain_partition(struct retainer *r, uint32_t p, uint64_t now_real_ns);

#endif
