/* SPDX-License-Identifier: MIT */
/*
 * suite.h - the benchmark suite (`make bench`, build/bench/suite): its modes, and what they
 * share. Each mode measures shmwal and, in the same run and interleaved round by round, the
 * alternative a user would pick or the machine's own limit, and reports both with the ratio
 * (result()), checks the targets (target()) and leaves points for the plots
 * (plot_point()). main.c prints the table, writes the CSV and the plot data.
 */
#ifndef SHMWAL_SUITE_H
#define SHMWAL_SUITE_H

#include <math.h>
#include <stdint.h>
#include <sys/types.h>

#include "shmwal.h"
#include "bench/common/bench.h"

#define SUITE_MAX_ROUNDS 99 /* --rounds at most: modes keep per-round figures in arrays */

struct suite_opt {
	int quick;	 /* --quick: a smoke run (CI): tiny counts, one round */
	unsigned rounds; /* interleaved rounds; medians are quoted */
	const char *dir; /* where WALs and baseline files go ($TMPDIR, default /tmp) */
	const char *out; /* the CSV and plot data go here */
};
extern struct suite_opt sopt;

/* Whether a figure is better higher (a rate) or lower (a latency). */
enum better { HIGHER, LOWER };

/*
 * One row of the table and the CSV: mode ("append"), case ("64 B, 2 procs, 1 part"), metric
 * ("rate"), unit ("M rec/s"), shmwal's figure and, if there is one (else NAN), the
 * alternative's name and figure. The ratio printed is how many times better shmwal is.
 */
void result(const char *mode, const char *kase, const char *metric, const char *unit,
	    enum better b, double ours, const char *theirs_name, double theirs);
/* A target of the issue: what, whether met, and the figures that decide it. */
void target(const char *what, int met, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A point (x, y) of one series of one plot (plot names: see bench/plots.gp). */
void plot_point(const char *plot, const char *series, double x, double y);
/* Prints progress ("  append 64 B x2: round 1/3 ...") to stderr-free stdout, flushed. */
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A fresh WAL under sopt.dir, created with c; NULL on error (printed). Free with wal_done(). */
char *wal_new(const struct shmwal_config *c);
void wal_done(char *dir);
/* A fresh empty directory under sopt.dir for a baseline's files. Free with wal_done(). */
char *scratch_new(const char *tag);

/* How many times `full` in a full run, `quick` in a smoke run. */
static inline uint64_t scale(uint64_t full, uint64_t quick)
{
	return sopt.quick ? quick : full;
}

/* Shared memory for results from child processes (MAP_SHARED | MAP_ANONYMOUS), zeroed. */
void *shared_new(size_t len);
void shared_free(void *p, size_t len);

/* Forks a child that runs fn(arg) and exits 0 if it returned 0; it dies with this process.
 * -1 if fork failed (printed). */
pid_t suite_spawn(int (*fn)(void *), void *arg);
/* Waits for a child of suite_spawn() (TH_TIMEOUT_S, then kills it); -1 unless it exited 0. */
int suite_reap(pid_t pid, const char *what);

/* The modes (each file in bench/suite/). 0, or -1 after printing why. */
int mode_seeds(void);	 /* the seeds' benchmarks under their names */
int mode_append(void);	 /* append throughput and latency, sync none; O_APPEND baseline */
int mode_durable(void);	 /* durable latency, group commit, durable streaming; raw fdatasync */
int mode_reader(void);	 /* scan rate with CRC checks; wake latency after durable */
int mode_recovery(void); /* recovery time against log size; memory per producer */

#endif
