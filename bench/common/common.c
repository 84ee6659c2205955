/* SPDX-License-Identifier: MIT */
/* common.c - what the benchmark programs share (bench.h). */
#include <errno.h>
#include <linux/magic.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/common/bench.h"

uint64_t now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void hadd(struct hist *h, uint64_t ns)
{
	unsigned lg, b = (unsigned)ns;

	if (ns >= (1u << HSUB)) {
		lg = 63u - (unsigned)__builtin_clzll(ns);
		b = ((lg - HSUB + 1) << HSUB) +
		    (unsigned)((ns >> (lg - HSUB)) & ((1u << HSUB) - 1));
	}
	h->n[b]++;
	h->count++;
	if (ns > h->max)
		h->max = ns;
}

/* The smallest value of the bucket holding the q-th quantile. */
uint64_t hpct(const struct hist *h, double q)
{
	uint64_t want = (uint64_t)(q * (double)h->count + 0.999999), seen = 0;

	for (unsigned b = 0; b < HBUCKETS && h->count; b++) {
		seen += h->n[b];
		if (seen >= want && seen) {
			if (b < (1u << HSUB))
				return b;
			return (uint64_t)((1u << HSUB) + (b & ((1u << HSUB) - 1)))
			       << ((b >> HSUB) - 1);
		}
	}
	return h->max;
}

void hmerge(struct hist *to, const struct hist *from)
{
	for (unsigned b = 0; b < HBUCKETS; b++)
		to->n[b] += from->n[b];
	to->count += from->count;
	if (from->max > to->max)
		to->max = from->max;
}

void gate_arrive_and_wait(struct gate *g)
{
	__atomic_add_fetch(&g->ready, 1, __ATOMIC_RELEASE); /* pairs with gate_open's wait */
	while (!__atomic_load_n(&g->go, __ATOMIC_ACQUIRE))  /* pairs with gate_open's store */
		sched_yield();
}

/* Waits (up to 5 min) until n appenders arrived, stamps t0 and lets them go. */
int gate_open(struct gate *g, unsigned n)
{
	for (int i = 0; __atomic_load_n(&g->ready, __ATOMIC_ACQUIRE) < n; i++) {
		if (i > 300000)
			return -ETIMEDOUT;
		usleep(1000);
	}
	g->t0 = now();
	__atomic_store_n(&g->go, 1, __ATOMIC_RELEASE);
	return 0;
}

/* /proc/.../schedstat: time on a CPU, time waiting on a run queue (ns), time slices. */
static void schedstat(const char *path, struct cpu *c)
{
	unsigned long long run = 0, wait = 0;
	FILE *f = fopen(path, "r");

	if (f && fscanf(f, "%llu %llu", &run, &wait) == 2) {
		c->run_ns = run;
		c->wait_ns = wait;
	}
	if (f)
		fclose(f);
}

void cpu_thread(struct cpu *c)
{
	struct rusage ru;

	memset(c, 0, sizeof(*c));
	if (getrusage(RUSAGE_THREAD, &ru) == 0) {
		c->user_ns = (uint64_t)ru.ru_utime.tv_sec * 1000000000ull +
			     (uint64_t)ru.ru_utime.tv_usec * 1000ull;
		c->sys_ns = (uint64_t)ru.ru_stime.tv_sec * 1000000000ull +
			    (uint64_t)ru.ru_stime.tv_usec * 1000ull;
	}
	schedstat("/proc/thread-self/schedstat", c);
}

void cpu_since(struct cpu *c, const struct cpu *before)
{
	c->run_ns -= before->run_ns;
	c->wait_ns -= before->wait_ns;
	c->user_ns -= before->user_ns;
	c->sys_ns -= before->sys_ns;
}

/* Another process's: /proc/PID/stat, fields 14 and 15 (utime, stime in ticks), and
 * /proc/PID/schedstat (its main thread). */
void cpu_proc(pid_t pid, struct cpu *c)
{
	unsigned long long v[13] = { 0 };
	uint64_t tick = 1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK);
	char path[64], buf[1024], *p = NULL;
	FILE *f;

	memset(c, 0, sizeof(*c));
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f && fgets(buf, sizeof(buf), f))
		p = strrchr(buf, ')'); /* the command name may hold anything */
	if (f)
		fclose(f);
	if (!p || sscanf(p + 2, "%*c %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
			 &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9],
			 &v[10], &v[11]) != 12)
		return;
	c->user_ns = v[10] * tick;
	c->sys_ns = v[11] * tick;
	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	schedstat(path, c);
}

/* The machine's busy time so far, in ns (/proc/stat: all but idle and iowait). */
uint64_t machine_busy_ns(void)
{
	unsigned long long v[8] = { 0 };
	uint64_t tick = 1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK);
	FILE *f = fopen("/proc/stat", "r");
	int n = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
			   &v[3], &v[4], &v[5], &v[6], &v[7])
		  : 0;

	if (f)
		fclose(f);
	if (n != 8)
		return 0;
	return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * tick;
}

static void pairing_loop(unsigned cpu)
{
	uint64_t x[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
	for (unsigned i = 0; i < 20000000; i++)
		for (int j = 0; j < 8; j++) /* eight independent chains: the multiplier is busy */
			x[j] = x[j] * 6364136223846793005ull + 1442695040888963407ull;
	_exit((int)(x[0] ^ x[7]) & 1);
}

/* Wall time of `n` (1 or 2) children running pairing_loop on CPUs 0 .. n-1 at once. */
static double pairing_run(unsigned n)
{
	struct timespec a, b;
	pid_t pid[2];

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (unsigned i = 0; i < n; i++)
		if ((pid[i] = fork()) == 0)
			pairing_loop(i);
	for (unsigned i = 0; i < n; i++)
		if (pid[i] > 0)
			waitpid(pid[i], NULL, 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

/* Round trips of one cache line between processes pinned to CPUs 0 and 1: ns per trip. */
static double pingpong_ns(void)
{
	const uint64_t trips = 200000;
	_Atomic uint64_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
				   -1, 0);
	struct timespec a, b;
	cpu_set_t set;
	pid_t pid;

	if (w == MAP_FAILED)
		return 0;
	atomic_store(w, 0);
	if ((pid = fork()) == 0) {
		CPU_ZERO(&set);
		CPU_SET(1, &set);
		sched_setaffinity(0, sizeof(set), &set);
		for (uint64_t i = 0; i < trips; i++) {
			while (atomic_load_explicit(w, memory_order_acquire) != 2 * i + 1)
				;
			atomic_store_explicit(w, 2 * i + 2, memory_order_release);
		}
		_exit(0);
	}
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	sched_setaffinity(0, sizeof(set), &set);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (uint64_t i = 0; pid > 0 && i < trips; i++) {
		atomic_store_explicit(w, 2 * i + 1, memory_order_release);
		while (atomic_load_explicit(w, memory_order_acquire) != 2 * i + 2)
			;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	CPU_ZERO(&set);
	for (long c = 0; c < sysconf(_SC_NPROCESSORS_ONLN) && c < CPU_SETSIZE; c++)
		CPU_SET(c, &set);
	sched_setaffinity(0, sizeof(set), &set);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	munmap((void *)w, 4096);
	return pid > 0 ? ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) /
				 (double)trips
		       : 0;
}

/*
 * What the two CPUs give two processes that work together, which is what shmwal's producer and
 * flusher are and libpmemlog's single thread is not: how much of a second core two CPU-bound
 * processes get (pinned to CPUs 0 and 1 at once against one alone, best of 3: near 2 for two
 * cores, near 1 when they share one), and the round trip of a cache line between them. On
 * the project's VM shmwal's one-producer rate changes over tens of minutes (medians of 18 and
 * of 35 M/s from the same build, with libpmemlog steady): printed so that results can be read.
 */
void print_pairing(void)
{
	double one = 1e9, two = 1e9;

	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return;
	for (int r = 0; r < 3; r++) {
		double t1 = pairing_run(1), t2 = pairing_run(2);

		one = t1 < one ? t1 : one;
		two = t2 < two ? t2 : two;
	}
	printf("CPUs 0 and 1: two CPU-bound processes run at %.2fx one alone's rate (2: two cores, "
	       "1: one shared); a cache line's round trip between them %.0f ns\n",
	       2 * one / two, pingpong_ns());
}


void print_machine(int argc, char **argv)
{
	char line[512], model[256] = "unknown", load[64] = "?";
	struct utsname u;
	FILE *f = fopen("/proc/cpuinfo", "r");

	while (f && fgets(line, sizeof(line), f)) {
		char *c = strchr(line, ':');

		if (!strncmp(line, "model name", 10) && c) {
			snprintf(model, sizeof(model), "%s", c + 2);
			model[strcspn(model, "\n")] = 0;
			break;
		}
	}
	if (f)
		fclose(f);
	f = fopen("/proc/loadavg", "r");
	if (f && fgets(load, sizeof(load), f))
		load[strcspn(load, "\n")] = 0;
	if (f)
		fclose(f);
	uname(&u);
	printf("machine: %ld cores online, CPU %s, %s %s %s, load average %s\n",
	       sysconf(_SC_NPROCESSORS_ONLN), model, u.sysname, u.release, u.machine, load);
	printf("command:");
	for (int i = 0; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\n");
}

const char *fs_name(const char *dir)
{
	static const struct {
		long magic;
		const char *name;
	} fs[] = {
		{ TMPFS_MAGIC, "tmpfs" },     { EXT4_SUPER_MAGIC, "ext4" }, { XFS_SUPER_MAGIC, "xfs" },
		{ BTRFS_SUPER_MAGIC, "btrfs" }, { OVERLAYFS_SUPER_MAGIC, "overlayfs" },
	};
	struct statfs sf;

	if (statfs(dir, &sf) < 0)
		return "unknown";
	for (unsigned i = 0; i < sizeof(fs) / sizeof(fs[0]); i++)
		if ((long)sf.f_type == fs[i].magic)
			return fs[i].name;
	return "other";
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double median(double *v, unsigned n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
