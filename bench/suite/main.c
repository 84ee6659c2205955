/* SPDX-License-Identifier: MIT */
/*
 * suite - shmwal's benchmark suite, side by side with what users would pick instead and with
 * the machine's own limits, in one run (`make bench`; `make bench-smoke` in CI).
 *
 *   suite [--quick] [--rounds R] [--only MODE[,MODE...]] [--dir D] [--out DIR]
 *
 * Modes, in order: seeds, append, durable, reader, recovery (bench/suite/<mode>.c says what
 * each measures). Within a mode shmwal and its alternative run in interleaved rounds and the
 * medians are quoted. At the end: the table (shmwal, the alternative, the ratio: how many
 * times better shmwal is), the targets met or missed, and in --out (default
 * bench-results/ next to this program) suite.csv, one .dat file per plot for bench/plots.gp,
 * and machine.txt: the machine the run took place on.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/suite/suite.h"
#include "tests/helpers.h"

struct suite_opt sopt = { .rounds = 3 };

#define MAX_ROWS 1024
#define MAX_POINTS 4096

static struct row {
	char mode[24], kase[64], metric[32], unit[16], theirs_name[48];
	enum better better;
	double ours, theirs;
} rows[MAX_ROWS];
static unsigned nrows;

static struct {
	char line[160];
	int met;
} targets[64];
static unsigned ntargets;

static struct point {
	char plot[32], series[48];
	double x, y;
} points[MAX_POINTS];
static unsigned npoints;

static void copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

void result(const char *mode, const char *kase, const char *metric, const char *unit,
	    enum better b, double ours, const char *theirs_name, double theirs)
{
	struct row *r;

	if (nrows == MAX_ROWS)
		return;
	r = &rows[nrows++];
	copy(r->mode, sizeof(r->mode), mode);
	copy(r->kase, sizeof(r->kase), kase);
	copy(r->metric, sizeof(r->metric), metric);
	copy(r->unit, sizeof(r->unit), unit);
	copy(r->theirs_name, sizeof(r->theirs_name), theirs_name);
	r->better = b;
	r->ours = ours;
	r->theirs = theirs;
}

void target(const char *what, int met, const char *fmt, ...)
{
	char detail[128];
	va_list ap;

	if (ntargets == sizeof(targets) / sizeof(targets[0]))
		return;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	snprintf(targets[ntargets].line, sizeof(targets[ntargets].line), "%s: %s", what, detail);
	targets[ntargets++].met = met;
}

void plot_point(const char *plot, const char *series, double x, double y)
{
	struct point *p;

	if (npoints == MAX_POINTS)
		return;
	p = &points[npoints++];
	copy(p->plot, sizeof(p->plot), plot);
	copy(p->series, sizeof(p->series), series);
	p->x = x;
	p->y = y;
}

void note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

void *shared_new(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

void shared_free(void *p, size_t len)
{
	munmap(p, len);
}

char *scratch_new(const char *tag)
{
	char *dir;

	if (setenv("TMPDIR", sopt.dir, 1) < 0 || !(dir = th_tmpdir(tag))) {
		fprintf(stderr, "suite: cannot make a directory in %s: %s\n", sopt.dir,
			strerror(errno));
		return NULL;
	}
	return dir;
}

char *wal_new(const struct shmwal_config *c)
{
	char *dir = scratch_new("bench");

	if (dir && shmwal_create(dir, c) < 0) {
		fprintf(stderr, "suite: create %s: %s\n", dir, shmwal_last_error());
		wal_done(dir);
		return NULL;
	}
	return dir;
}

void wal_done(char *dir)
{
	th_destroy(dir);
	free(dir);
}

pid_t suite_spawn(int (*fn)(void *), void *arg)
{
	pid_t pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(fn(arg) == 0 ? 0 : 1);
	}
	if (pid < 0)
		perror("suite: fork");
	return pid;
}

int suite_reap(pid_t pid, const char *what)
{
	int st;

	if (pid < 0)
		return -1;
	st = th_wait(pid, TH_TIMEOUT_S);
	if (st != 0) {
		fprintf(stderr, "suite: %s: exit status %d\n", what, st);
		return -1;
	}
	return 0;
}

/* ---- output ---- */

static double ratio(const struct row *r)
{
	if (isnan(r->theirs) || r->ours <= 0 || r->theirs <= 0)
		return NAN;
	return r->better == HIGHER ? r->ours / r->theirs : r->theirs / r->ours;
}

static void fmt(char *buf, size_t len, double v)
{
	if (isnan(v))
		snprintf(buf, len, "-");
	else if (v >= 100000)
		snprintf(buf, len, "%.0f", v);
	else if (v >= 100)
		snprintf(buf, len, "%.1f", v);
	else
		snprintf(buf, len, "%.3g", v);
}

static void print_table(void)
{
	const char *mode = "";

	printf("\n%-10s %-30s %-12s %-9s %10s %10s  %-28s %7s\n", "mode", "case", "metric", "unit",
	       "shmwal", "theirs", "theirs: what", "ratio");
	for (unsigned i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		char a[32], b[32], c[32];
		double q = ratio(r);

		fmt(a, sizeof(a), r->ours);
		fmt(b, sizeof(b), r->theirs);
		if (isnan(q))
			snprintf(c, sizeof(c), "-");
		else
			snprintf(c, sizeof(c), "%.2fx", q);
		printf("%-10s %-30s %-12s %-9s %10s %10s  %-28s %7s\n",
		       strcmp(mode, r->mode) ? r->mode : "", r->kase, r->metric, r->unit, a, b,
		       isnan(r->theirs) ? "" : r->theirs_name, c);
		mode = r->mode;
	}
	printf("ratio: how many times better shmwal is (rates: shmwal / theirs; latencies: "
	       "theirs / shmwal)\n");
	if (ntargets) {
		unsigned met = 0;

		printf("\ntargets (issue #5):\n");
		for (unsigned i = 0; i < ntargets; i++) {
			printf("  %-6s %s\n", targets[i].met ? "met" : "MISSED", targets[i].line);
			met += targets[i].met != 0;
		}
		printf("  %u of %u met%s\n", met, ntargets,
		       sopt.quick ? " (a --quick run: figures too small to judge)" : "");
	}
}

static int write_outputs(int argc, char **argv)
{
	char path[4096];
	FILE *f;

	if (mkdir(sopt.out, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "suite: mkdir %s: %s\n", sopt.out, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/suite.csv", sopt.out);
	if (!(f = fopen(path, "w")))
		goto fail;
	fprintf(f, "mode,case,metric,unit,better,shmwal,theirs_what,theirs,ratio\n");
	for (unsigned i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];

		fprintf(f, "%s,\"%s\",%s,%s,%s,%.6g,\"%s\",%.6g,%.4g\n", r->mode, r->kase, r->metric,
			r->unit, r->better == HIGHER ? "higher" : "lower", r->ours,
			isnan(r->theirs) ? "" : r->theirs_name, r->theirs, ratio(r));
	}
	fclose(f);
	/* one file per plot; one block per series, its first line the title (columnheader) */
	for (unsigned i = 0; i < npoints; i++) {
		int seen = 0;

		for (unsigned j = 0; j < i; j++)
			seen |= !strcmp(points[j].plot, points[i].plot);
		if (seen)
			continue;
		snprintf(path, sizeof(path), "%s/%s.dat", sopt.out, points[i].plot);
		if (!(f = fopen(path, "w")))
			goto fail;
		for (unsigned j = i; j < npoints; j++) {
			int first = 1;

			if (strcmp(points[j].plot, points[i].plot))
				continue;
			for (unsigned k = i; k < j; k++)
				if (!strcmp(points[k].plot, points[i].plot) &&
				    !strcmp(points[k].series, points[j].series))
					first = 0;
			if (!first)
				continue;
			fprintf(f, "x \"%s\"\n", points[j].series);
			for (unsigned k = j; k < npoints; k++)
				if (!strcmp(points[k].plot, points[i].plot) &&
				    !strcmp(points[k].series, points[j].series))
					fprintf(f, "%g %g\n", points[k].x, points[k].y);
			fprintf(f, "\n\n");
		}
		fclose(f);
	}
	snprintf(path, sizeof(path), "%s/machine.txt", sopt.out);
	if (!(f = fopen(path, "w")))
		goto fail;
	{
		char model[256] = "unknown", line[512];
		FILE *c = fopen("/proc/cpuinfo", "r");

		while (c && fgets(line, sizeof(line), c))
			if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
				snprintf(model, sizeof(model), "%s", strchr(line, ':') + 2);
				model[strcspn(model, "\n")] = 0;
				break;
			}
		if (c)
			fclose(c);
		fprintf(f, "%ld cores, %s, %s on %s%s\n", sysconf(_SC_NPROCESSORS_ONLN), model,
			sopt.dir, fs_name(sopt.dir), sopt.quick ? ", --quick" : "");
	}
	fprintf(f, "command:");
	for (int i = 0; i < argc; i++)
		fprintf(f, " %s", argv[i]);
	fprintf(f, "\n");
	fclose(f);
	printf("csv and plot data: %s\n", sopt.out);
	return 0;
fail:
	fprintf(stderr, "suite: %s: %s\n", path, strerror(errno));
	return -1;
}

/* ---- main ---- */

static const struct {
	const char *name;
	int (*run)(void);
} modes[] = {
	{ "seeds", mode_seeds },     { "append", mode_append },	    { "durable", mode_durable },
	{ "reader", mode_reader },   { "recovery", mode_recovery },
};
#define NMODES (sizeof(modes) / sizeof(modes[0]))

static void usage(void)
{
	fprintf(stderr,
		"usage: suite [--quick] [--rounds R] [--only MODE[,MODE...]] [--dir D] [--out DIR]\n"
		"  --quick     a smoke run (about a minute): small counts, one round\n"
		"  --rounds R  interleaved rounds per figure, medians quoted (default 3)\n"
		"  --only L    these modes only: seeds, append, durable, reader, recovery\n"
		"  --dir D     where WALs and baseline files go (default $TMPDIR, else /tmp)\n"
		"  --out DIR   suite.csv, the plot data and machine.txt (default: bench-results\n"
		"              next to this program)\n");
}

static int selected(const char *only, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = only; p && *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);

		if (len == n && !strncmp(p, name, n))
			return 1;
		p = e ? e + 1 : NULL;
	}
	return !only;
}

int main(int argc, char **argv)
{
	const char *only = NULL;
	static char out[4096];
	int failed = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--quick")) {
			sopt.quick = 1;
			continue;
		}
		if (!v || (strcmp(a, "--rounds") && strcmp(a, "--only") && strcmp(a, "--dir") &&
			   strcmp(a, "--out"))) {
			usage();
			return 2;
		}
		i++;
		if (!strcmp(a, "--rounds")) {
			char *end;
			unsigned long r = strtoul(v, &end, 10);

			if (*end || r < 1 || r > SUITE_MAX_ROUNDS) {
				fprintf(stderr, "suite: --rounds: 1 to %d\n", SUITE_MAX_ROUNDS);
				return 2;
			}
			sopt.rounds = (unsigned)r;
		} else if (!strcmp(a, "--only")) {
			only = v;
		} else if (!strcmp(a, "--dir")) {
			sopt.dir = v;
		} else {
			sopt.out = v;
		}
	}
	for (const char *p = only; p && *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		int known = 0;

		for (unsigned m = 0; m < NMODES; m++)
			known |= strlen(modes[m].name) == len && !strncmp(p, modes[m].name, len);
		if (!known) {
			fprintf(stderr, "suite: --only: unknown mode '%.*s'\n", (int)len, p);
			return 2;
		}
		p = e ? e + 1 : NULL;
	}
	if (sopt.quick)
		sopt.rounds = 1;
	if (!sopt.dir)
		sopt.dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	if (!sopt.out) {
		ssize_t n = readlink("/proc/self/exe", out, sizeof(out) - 32);
		char *slash;

		if (n <= 0 || !(slash = memrchr(out, '/', (size_t)n)))
			snprintf(out, sizeof(out), "bench-results");
		else
			snprintf(slash, sizeof(out) - (size_t)(slash - out), "/bench-results");
		sopt.out = out;
	}
	signal(SIGPIPE, SIG_IGN); /* output piped into `head`: finish and clean up */
	setvbuf(stdout, NULL, _IOLBF, 0);
	print_machine(argc, argv);
	printf("directory: %s (%s); %u interleaved round%s per figure, medians quoted%s\n",
	       sopt.dir, fs_name(sopt.dir), sopt.rounds, sopt.rounds > 1 ? "s" : "",
	       sopt.quick ? "; --quick: a smoke run, its figures mean little" : "");
	print_pairing();
	for (unsigned m = 0; m < NMODES; m++) {
		if (!selected(only, modes[m].name))
			continue;
		printf("\n== %s\n", modes[m].name);
		if (modes[m].run() < 0) {
			fprintf(stderr, "suite: mode %s failed\n", modes[m].name);
			failed = 1;
		}
	}
	print_table();
	if (write_outputs(argc, argv) < 0)
		failed = 1;
	return failed;
}
