/* SPDX-License-Identifier: MIT */
/*
 * bench.h - what the benchmark programs share: a latency histogram, a start gate for appender
 * processes, CPU accounting from /proc, and a description of the machine a run took place on.
 */
#ifndef SHMWAL_BENCH_H
#define SHMWAL_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* CLOCK_MONOTONIC in ns. */
uint64_t now(void);

/* ---- latency histogram: below 16 ns exact, then 16 buckets per power of two ---- */

#define HSUB 4
#define HBUCKETS (64u << HSUB)

struct hist {
	uint64_t n[HBUCKETS];
	uint64_t count, max;
};

void hadd(struct hist *h, uint64_t ns);
/* The smallest value of the bucket holding the q-th quantile (values within 1/16). */
uint64_t hpct(const struct hist *h, double q);
void hmerge(struct hist *to, const struct hist *from);

/* ---- a start gate: appenders (threads, or processes sharing a MAP_SHARED mapping) ---- */

/* `ready` and `go` are written with release and read with acquire: an appender's ready pairs
 * with the starter's wait, and the starter's go (after it stamped t0) with the appenders'
 * spin. */
struct gate {
	uint32_t ready, go;
	uint64_t t0;
};

void gate_arrive_and_wait(struct gate *g);
/* Waits (up to 5 min) until n appenders arrived, stamps t0 and lets them go; -ETIMEDOUT. */
int gate_open(struct gate *g, unsigned n);

/* ---- CPU accounting ---- */

/* CPU use of a thread, or of a single-threaded process: time on a CPU and time runnable but
 * waiting for one (schedstat, in ns), and the user/kernel split (rusage, or ticks). */
struct cpu {
	uint64_t run_ns, wait_ns, user_ns, sys_ns;
};

void cpu_thread(struct cpu *c);
void cpu_since(struct cpu *c, const struct cpu *before);
/* Another process's: /proc/PID/stat (utime, stime) and /proc/PID/schedstat (main thread). */
void cpu_proc(pid_t pid, struct cpu *c);
/* The machine's busy time so far, in ns (/proc/stat: all but idle and iowait). */
uint64_t machine_busy_ns(void);

/* ---- the machine ---- */

/* "machine: N cores online, CPU ..., Linux ..., load average ..." and the command line. */
void print_machine(int argc, char **argv);
/* The filesystem `dir` is on, by its magic: "tmpfs", "ext4", "xfs", ... */
const char *fs_name(const char *dir);
/* What CPUs 0 and 1 give two processes: parallel speedup and a cache line's round trip. */
void print_pairing(void);

/* The median of v[0..n) (sorts v). */
double median(double *v, unsigned n);

#endif
