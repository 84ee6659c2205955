/* SPDX-License-Identifier: MIT */
/*
 * test_install.c - `make install` and `make uninstall`, into temporary directories, and a
 * program from outside the tree (tests/install/outside.c) built against the installation with
 * pkg-config and run against a WAL whose flusher is the installed `shmwal`, started with the
 * installed systemd unit's ExecStart= line.
 *
 * What is checked:
 *   - install puts exactly the expected files in place (no more, no fewer): the versioned
 *     libshmwal.so.X.Y.0 with its libshmwal.so.X and libshmwal.so links, libshmwal.a, both
 *     headers (as in the tree), shmwal.pc, the command, both man pages and the unit;
 *   - the installed .so has the SONAME libshmwal.so.X and exports only shmwal_* symbols (and
 *     its version node), among them every function named in include/shmwal.h;
 *   - shmwal(1) covers every command and every long option their --help lists, and shmwal(3)
 *     every exported function;
 *   - shmwal.pc and the unit name this installation's directories (${prefix}-relative where
 *     they lie under it), also with DESTDIR and with LIBDIR and SYSTEMDUNITDIR moved;
 *   - the outside program builds warning-free with `pkg-config --cflags --libs shmwal`,
 *     dynamically (it runs with the installed .so, by rpath) and statically (libshmwal.a
 *     with `pkg-config --static --libs`), and both runs leave their records in the WAL;
 *   - the flusher started from the unit stops cleanly on SIGTERM (exit 0, shared memory
 *     removed);
 *   - uninstall, with the same variables, leaves no file behind.
 *
 * make runs with this build's O, CC and SANITIZE (a sanitized libshmwal.so needs the
 * sanitizer when a program links it), and with the caller's MAKEFLAGS and installation
 * variables removed from its environment. Tests run from the repository's root.
 */
#include <ctype.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "shmwal.h"
#include "helpers.h"

#ifndef TEST_CC
#define TEST_CC "cc"
#endif
#ifndef TEST_SANITIZE
#define TEST_SANITIZE ""
#endif

#define MAX_WORDS 128
#define PATHLEN	  4096
#define RECORDS	  100 /* per run of the outside program */

struct fx {
	char *tmp;	      /* th_tmpdir: everything of the test lives here */
	pid_t flusher;	      /* the installed flusher, 0 if none */
	char out[PATHLEN];    /* the output file of the last run() */
	char wal[PATHLEN];    /* tmp/wal */
	char libdir[PATHLEN]; /* of the PREFIX installation */
	int nrun;
};

/* snprintf into a buffer of PATHLEN bytes; a path that does not fit fails the test. */
static void pathf(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pathf(char *buf, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, PATHLEN, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= PATHLEN)
		fail_msg("path too long: %s...", buf);
}

static const char *build_dir(void)
{
	const char *o = getenv("O");

	return o && *o ? o : "build";
}

/* Runs `prog ARGS...` (NULL-terminated) with env[], output into a fresh file f->out, and
 * returns its exit status. */
static int run_env(struct fx *f, const char *const *env, const char *prog, const char *const *args)
{
	pid_t pid;

	pathf(f->out, "%s/run.%d.out", f->tmp, f->nrun++);
	pid = th_spawn(prog, args, env, f->out);
	assert_true(pid > 0);
	return th_wait(pid, TH_TIMEOUT_S);
}

static char *output(struct fx *f)
{
	char *s = th_file_read(f->out, NULL);

	assert_non_null(s);
	return s;
}

static void fail_run(struct fx *f, int status, const char *what)
{
	char *s = th_file_read(f->out, NULL);

	fail_msg("%s: exit status %d\n%s", what, status, s ? s : "(no output)");
}

/* `make -s TARGET O=.. CC=.. SANITIZE=.. VARS...` from the repository's root; must exit 0. */
static void make(struct fx *f, const char *target, const char *const *vars)
{
	static const char *const env[] = {"MAKEFLAGS",	"MFLAGS", "MAKELEVEL",	  "MAKEOVERRIDES",
					  "DESTDIR",	"PREFIX", "BINDIR",	  "LIBDIR",
					  "INCLUDEDIR", "MANDIR", "PKGCONFIGDIR", "SYSTEMDUNITDIR",
					  NULL};
	char o[PATHLEN], cc[256], san[256];
	const char *args[32];
	int n = 0, st;

	snprintf(o, sizeof(o), "O=%s", build_dir());
	snprintf(cc, sizeof(cc), "CC=%s", TEST_CC);
	snprintf(san, sizeof(san), "SANITIZE=%s", TEST_SANITIZE);
	args[n++] = "-s";
	args[n++] = "--no-print-directory";
	args[n++] = target;
	args[n++] = o;
	args[n++] = cc;
	args[n++] = san;
	for (; vars && *vars; vars++)
		args[n++] = *vars;
	args[n] = NULL;
	st = run_env(f, env, "make", args);
	if (st != 0)
		fail_run(f, st, target);
}

/* ---- files ------------------------------------------------------------------------------- */

static char **walk_list;
static size_t walk_n;
static size_t walk_root;

static int walk_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_D || type == FTW_DP)
		return 0;
	walk_list = realloc(walk_list, (walk_n + 1) * sizeof(*walk_list));
	assert_non_null(walk_list);
	walk_list[walk_n] = strdup(path + walk_root);
	assert_non_null(walk_list[walk_n]);
	walk_n++;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void walk_free(void)
{
	for (size_t i = 0; i < walk_n; i++)
		free(walk_list[i]);
	free(walk_list);
	walk_list = NULL;
	walk_n = 0;
}

/* Every file (not directory) under root, as "/path/relative/to/root", must be exactly
 * expected[] (NULL-terminated, any order). An empty list: nothing may be left. */
static void expect_files(const char *root, const char *const *expected)
{
	size_t n = 0, i;
	char *want[64];

	while (expected[n]) {
		assert_true(n < 64);
		want[n] = (char *)expected[n];
		n++;
	}
	qsort(want, n, sizeof(*want), cmp_str);
	walk_root = strlen(root);
	if (nftw(root, walk_one, 16, FTW_PHYS) != 0 && errno != ENOENT)
		fail_msg("nftw %s: %s", root, strerror(errno));
	if (walk_n)
		qsort(walk_list, walk_n, sizeof(*walk_list), cmp_str);
	for (i = 0; i < walk_n || i < n; i++) {
		if (i >= walk_n || i >= n || strcmp(walk_list[i], want[i]) != 0) {
			char got[4096] = "", *p = got;

			for (size_t j = 0; j < walk_n; j++)
				p += snprintf(p, (size_t)(got + sizeof(got) - p), "  %s\n",
					      walk_list[j]);
			fail_msg("under %s: expected %s at %zu, found:\n%s", root,
				 i < n ? want[i] : "nothing more", i, got);
		}
	}
	walk_free();
}

static void expect_link(const char *path, const char *target)
{
	char buf[4096];
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);

	if (n < 0) {
		fail_msg("%s is not a symbolic link: %s", path, strerror(errno));
		return;
	}
	buf[n] = '\0';
	if (strcmp(buf, target) != 0)
		fail_msg("%s -> %s, expected -> %s", path, buf, target);
}

static void expect_same_file(const char *a, const char *b)
{
	size_t la, lb;
	char *x = th_file_read(a, &la), *y = th_file_read(b, &lb);

	assert_non_null(x);
	assert_non_null(y);
	if (la != lb || memcmp(x, y, la) != 0)
		fail_msg("%s differs from %s", a, b);
	free(x);
	free(y);
}

static void expect_contains(const char *path, const char *needle)
{
	if (!th_file_contains(path, needle)) {
		char *s = th_file_read(path, NULL);

		fail_msg("%s does not contain \"%s\":\n%s", path, needle, s ? s : "(unreadable)");
	}
}

/* The installed file names of this version, relative to PREFIX as `make install` lays it
 * out by default. */
struct names {
	char real[64];	 /* libshmwal.so.X.Y.0 */
	char soname[64]; /* libshmwal.so.X */
	char version[32];
};

static void names_get(struct names *n)
{
	snprintf(n->version, sizeof(n->version), "%d.%d.0", SHMWAL_VERSION_MAJOR,
		 SHMWAL_VERSION_MINOR);
	snprintf(n->real, sizeof(n->real), "libshmwal.so.%s", n->version);
	snprintf(n->soname, sizeof(n->soname), "libshmwal.so.%d", SHMWAL_VERSION_MAJOR);
}

#define NFILES 11

/* The files `make install` puts into these directories, as expect_files() lists them. */
struct layout {
	char file[NFILES][256];
	const char *list[NFILES + 1];
};

static void layout_get(struct layout *l, const struct names *nm, const char *bin, const char *lib,
		       const char *inc, const char *man, const char *unit)
{
	snprintf(l->file[0], 256, "%s/shmwal", bin);
	snprintf(l->file[1], 256, "%s/%s", lib, nm->real);
	snprintf(l->file[2], 256, "%s/%s", lib, nm->soname);
	snprintf(l->file[3], 256, "%s/libshmwal.so", lib);
	snprintf(l->file[4], 256, "%s/libshmwal.a", lib);
	snprintf(l->file[5], 256, "%s/shmwal.h", inc);
	snprintf(l->file[6], 256, "%s/shmwal_format.h", inc);
	snprintf(l->file[7], 256, "%s/pkgconfig/shmwal.pc", lib);
	snprintf(l->file[8], 256, "%s/man1/shmwal.1", man);
	snprintf(l->file[9], 256, "%s/man3/shmwal.3", man);
	snprintf(l->file[10], 256, "%s/shmwal-flusher@.service", unit);
	for (int i = 0; i < NFILES; i++)
		l->list[i] = l->file[i];
	l->list[NFILES] = NULL;
}

/* ---- the shared object's dynamic section ------------------------------------------------- */

struct dyninfo {
	char soname[256];
	char **syms; /* exported (defined, global or weak) dynamic symbols */
	size_t n;
	int abs_only_version; /* 1 while every SHN_ABS export is a SHMWAL_* version node */
};

static void dyninfo_free(struct dyninfo *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->syms[i]);
	free(d->syms);
}

/* Reads .dynsym and DT_SONAME of a 64-bit ELF shared object (ours: trusted input, but every
 * offset is still checked against the file's size). */
static void dyninfo_read(const char *path, struct dyninfo *d)
{
	const Elf64_Ehdr *eh;
	const Elf64_Shdr *sh;
	const uint8_t *m;
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	memset(d, 0, sizeof(*d));
	d->abs_only_version = 1;
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	assert_true(m != MAP_FAILED);
	eh = (const Elf64_Ehdr *)m;
	assert_true((size_t)st.st_size > sizeof(*eh));
	assert_memory_equal(eh->e_ident, ELFMAG, SELFMAG);
	assert_int_equal(eh->e_ident[EI_CLASS], ELFCLASS64);
	assert_true(eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(*sh) <= (uint64_t)st.st_size);
	sh = (const Elf64_Shdr *)(m + eh->e_shoff);
	for (unsigned i = 0; i < eh->e_shnum; i++) {
		const Elf64_Shdr *s = &sh[i], *str;

		if (s->sh_type != SHT_DYNSYM && s->sh_type != SHT_DYNAMIC)
			continue;
		assert_true(s->sh_link < eh->e_shnum);
		str = &sh[s->sh_link];
		assert_true(s->sh_offset + s->sh_size <= (uint64_t)st.st_size);
		assert_true(str->sh_offset + str->sh_size <= (uint64_t)st.st_size);
		if (s->sh_type == SHT_DYNSYM) {
			const Elf64_Sym *sym = (const Elf64_Sym *)(m + s->sh_offset);

			for (size_t j = 0; j < s->sh_size / sizeof(*sym); j++) {
				const char *name;

				if (sym[j].st_shndx == SHN_UNDEF ||
				    ELF64_ST_BIND(sym[j].st_info) == STB_LOCAL)
					continue;
				assert_true(sym[j].st_name < str->sh_size);
				name = (const char *)m + str->sh_offset + sym[j].st_name;
				if (sym[j].st_shndx == SHN_ABS && strncmp(name, "SHMWAL_", 7) != 0)
					d->abs_only_version = 0;
				if (sym[j].st_shndx == SHN_ABS)
					continue; /* the version node (libshmwal.map) */
				d->syms = realloc(d->syms, (d->n + 1) * sizeof(*d->syms));
				assert_non_null(d->syms);
				d->syms[d->n++] = strdup(name);
			}
		} else {
			const Elf64_Dyn *dyn = (const Elf64_Dyn *)(m + s->sh_offset);

			for (size_t j = 0; j < s->sh_size / sizeof(*dyn); j++)
				if (dyn[j].d_tag == DT_SONAME) {
					assert_true(dyn[j].d_un.d_val < str->sh_size);
					snprintf(d->soname, sizeof(d->soname), "%s",
						 (const char *)m + str->sh_offset +
						     dyn[j].d_un.d_val);
				}
		}
	}
	munmap((void *)m, (size_t)st.st_size);
}

static int dyninfo_has(const struct dyninfo *d, const char *name)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->syms[i], name) == 0)
			return 1;
	return 0;
}

/* ---- checks on the installed files ------------------------------------------------------- */

/* The SONAME, and the exports: only shmwal_*, and every function include/shmwal.h names. */
static void check_exports(const char *so, const char *soname, struct dyninfo *d)
{
	char *h = th_file_read("include/shmwal.h", NULL), *p;
	int named = 0;

	dyninfo_read(so, d);
	if (strcmp(d->soname, soname) != 0)
		fail_msg("%s: SONAME \"%s\", expected \"%s\"", so, d->soname, soname);
	assert_true(d->abs_only_version);
	for (size_t i = 0; i < d->n; i++)
		if (strncmp(d->syms[i], "shmwal_", 7) != 0)
			fail_msg("%s exports %s: only shmwal_* may be exported "
				 "(-fvisibility=hidden, libshmwal.map)",
				 so, d->syms[i]);
	assert_non_null(h);
	for (p = h; (p = strstr(p, "shmwal_")) != NULL; p++) {
		size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_");
		char name[128];

		if (p[n] != '(' || (p > h && (isalnum((unsigned char)p[-1]) || p[-1] == '_')))
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)n, p);
		if (!dyninfo_has(d, name))
			fail_msg("%s does not export %s, which include/shmwal.h declares", so,
				 name);
		named++;
	}
	free(h);
	assert_true(named >= 20);
}

/* shmwal(1) covers every command of `shmwal --help` and every long option of its --help;
 * shmwal(3) every exported function. */
static void check_man(struct fx *f, const char *bin, const char *man1, const char *man3,
		      const struct dyninfo *d)
{
	char *help, *line, *save = NULL, *m1 = th_file_read(man1, NULL),
			   *m3 = th_file_read(man3, NULL);
	const char *const top[] = {"--help", NULL};
	int commands = 0;

	assert_non_null(m1);
	assert_non_null(m3);
	if (!strstr(m1, ".TH \"shmwal\" \"1\"") || !strstr(m3, ".TH \"shmwal\" \"3\"") ||
	    !strstr(m1, ".SH EXIT STATUS"))
		fail_msg("%s or %s is not the roff shmwal(1) / shmwal(3) with its sections", man1,
			 man3);
	assert_int_equal(run_env(f, NULL, bin, top), 0);
	help = output(f);
	for (line = strtok_r(help, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *cmd_help[] = {NULL, "--help", NULL};
		char cmd[32], want[64], *opts, *o;

		/* the command list: "  NAME ARGS   what it does" */
		if (strncmp(line, "  ", 2) != 0 || sscanf(line + 2, "%31[a-z] ", cmd) != 1)
			continue;
		commands++;
		snprintf(want, sizeof(want), "\\fBshmwal %s\\fR", cmd);
		if (!strstr(m1, want))
			fail_msg("shmwal(1) has no section for `shmwal %s`", cmd);
		cmd_help[0] = cmd;
		assert_int_equal(run_env(f, NULL, bin, cmd_help), 0);
		opts = output(f);
		for (o = opts; (o = strstr(o, "--")) != NULL; o += 2) {
			size_t n = strspn(o + 2, "abcdefghijklmnopqrstuvwxyz-");
			char opt[64];

			if (n == 0)
				continue;
			snprintf(opt, sizeof(opt), "%.*s", (int)(n + 2), o);
			if (!strstr(m1, opt))
				fail_msg("shmwal(1) does not mention `shmwal %s %s`", cmd, opt);
		}
		free(opts);
	}
	free(help);
	assert_true(commands >= 7);
	for (size_t i = 0; i < d->n; i++)
		if (!strstr(m3, d->syms[i]))
			fail_msg("shmwal(3) does not document %s", d->syms[i]);
	free(m1);
	free(m3);
}

/* ---- the outside program ----------------------------------------------------------------- */

/* Splits s (modified) at whitespace into w[n...]; returns the new n. */
static int split_words(char *s, const char **w, int n)
{
	char *save = NULL, *t;

	for (t = strtok_r(s, " \t\n", &save); t; t = strtok_r(NULL, " \t\n", &save)) {
		assert_true(n < MAX_WORDS - 1);
		w[n++] = t;
	}
	w[n] = NULL;
	return n;
}

/* Runs pkg-config with PKG_CONFIG_PATH=pcdir and `flags` (e.g. "--cflags --libs"); returns
 * its output (caller frees). */
static char *pkg_config(struct fx *f, const char *pcdir, const char *flags)
{
	char env0[PATHLEN], fl[128];
	const char *env[] = {env0, NULL}, *args[MAX_WORDS];
	int n, st;

	pathf(env0, "PKG_CONFIG_PATH=%s", pcdir);
	snprintf(fl, sizeof(fl), "%s", flags);
	n = split_words(fl, args, 0);
	args[n++] = "shmwal";
	args[n] = NULL;
	st = run_env(f, env, "pkg-config", args);
	if (st != 0)
		fail_run(f, st, "pkg-config");
	return output(f);
}

/*
 * Builds tests/install/outside.c into `exe`, warning-free, with `flags` (pkg-config's
 * output, which it modifies) after `pre` (NULL-terminated, may be NULL).
 */
static void build_outside(struct fx *f, const char *exe, char *flags, const char *const *pre)
{
	char cc[256], san[300];
	const char *args[MAX_WORDS];
	int n, st;

	snprintf(cc, sizeof(cc), "%s", TEST_CC);
	n = split_words(cc, args, 0);
	args[n++] = "-std=c11";
	args[n++] = "-Wall";
	args[n++] = "-Wextra";
	args[n++] = "-Werror";
	if (*TEST_SANITIZE) {
		snprintf(san, sizeof(san), "-fsanitize=%s", TEST_SANITIZE);
		args[n++] = san;
	}
	args[n++] = "-o";
	args[n++] = exe;
	args[n++] = "tests/install/outside.c";
	for (; pre && *pre; pre++)
		args[n++] = *pre;
	n = split_words(flags, args, n);
	st = run_env(f, NULL, args[0], args + 1);
	if (st != 0)
		fail_run(f, st, "building tests/install/outside.c");
}

/* Runs the outside program; returns the library path it printed (caller frees). */
static char *run_outside(struct fx *f, const char *exe, const char *tag)
{
	char count[16], lib[4096], *out;
	const char *args[] = {f->wal, tag, count, NULL};
	unsigned long n, first, last;
	int st;

	snprintf(count, sizeof(count), "%d", RECORDS);
	st = run_env(f, NULL, exe, args);
	if (st != 0)
		fail_run(f, st, exe);
	out = output(f);
	if (sscanf(out, "library %4095s\nok %lu %lu %lu", lib, &n, &first, &last) != 4 ||
	    n != RECORDS || last <= first)
		fail_msg("%s printed:\n%s", exe, out);
	free(out);
	return strdup(lib);
}

/* The installed unit's ExecStart= line, split into words with "%f" (quoted or not) replaced
 * by the WAL's path. Returns the number of words; `line` holds them. */
static int unit_exec_start(struct fx *f, const char *unit, char *line, size_t len,
			   const char **argv)
{
	char *u = th_file_read(unit, NULL), *p, *e, *save = NULL, *t;
	int n = 0;

	assert_non_null(u);
	p = strstr(u, "\nExecStart=");
	if (!p)
		fail_msg("%s has no ExecStart=:\n%s", unit, u);
	p += strlen("\nExecStart=");
	e = strchr(p, '\n');
	snprintf(line, len, "%.*s", (int)(e ? e - p : (long)strlen(p)), p);
	free(u);
	for (t = strtok_r(line, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		assert_true(n < 15);
		argv[n++] = strcmp(t, "%f") == 0 || strcmp(t, "\"%f\"") == 0 ? f->wal : t;
	}
	argv[n] = NULL;
	return n;
}

/* Starts the flusher as the unit does and waits (TH_TIMEOUT_S) until producers can attach. */
static void start_unit_flusher(struct fx *f, const char *unit, const char *bindir)
{
	char line[4096], log[PATHLEN], exe[PATHLEN];
	const char *argv[16];
	struct timespec nap = {0, 2000000};
	time_t deadline;
	int n = unit_exec_start(f, unit, line, sizeof(line), argv), status;

	pathf(exe, "%s/shmwal", bindir);
	if (n != 3 || strcmp(argv[0], exe) != 0 || strcmp(argv[1], "flusher") != 0 ||
	    argv[2] != f->wal)
		fail_msg("%s: ExecStart= is not `%s flusher %%f`", unit, exe);
	pathf(log, "%s/flusher.log", f->tmp);
	f->flusher = th_spawn(argv[0], argv + 1, NULL, log);
	assert_true(f->flusher > 0);
	deadline = time(NULL) + TH_TIMEOUT_S;
	for (;;) {
		struct shmwal *w;
		int rc = shmwal_open(f->wal, &w);

		if (rc == 0) {
			shmwal_close(w);
			return;
		}
		if (waitpid(f->flusher, &status, WNOHANG) == f->flusher) {
			char *s = th_file_read(log, NULL);

			f->flusher = 0;
			fail_msg("the installed flusher exited (status 0x%x):\n%s", status,
				 s ? s : "");
		}
		if ((rc != -ENOENT && rc != -EPROTO && rc != -ESHUTDOWN) || time(NULL) > deadline)
			fail_msg("shmwal_open: %s", shmwal_last_error());
		nanosleep(&nap, NULL);
	}
}

/* The log holds RECORDS records of each tag, in this order, and nothing else. */
static void check_log(struct fx *f, const char *const *tags)
{
	struct shmwal_reader *r;
	struct shmwal_record rec;
	int rc;

	EXPECT_OK(shmwal_reader_open(f->wal, 0, SHMWAL_LSN_OLDEST, &r));
	for (; *tags; tags++) {
		for (int i = 0; i < RECORDS; i++) {
			char key[64], value[128];
			int kl = snprintf(key, sizeof(key), "%s-%d", *tags, i),
			    vl = snprintf(value, sizeof(value), "value %d of %s", i, *tags);

			rc = shmwal_reader_next(r, &rec, 0);
			if (rc < 0)
				fail_msg("record %d of %s: %s", i, *tags, shmwal_last_error());
			if (rec.key_len != (uint32_t)kl || memcmp(rec.key, key, (size_t)kl) ||
			    rec.value_len != (uint32_t)vl || memcmp(rec.value, value, (size_t)vl))
				fail_msg("record %d of %s is wrong", i, *tags);
		}
	}
	assert_int_equal(shmwal_reader_next(r, &rec, 0), -ETIMEDOUT);
	shmwal_reader_close(r);
}

/* ---- the tests --------------------------------------------------------------------------- */

/* Install into tmp/prefix, check everything, build and run the outside program, uninstall. */
static void test_install_prefix(void **state)
{
	struct fx *f = *state;
	struct names nm;
	struct layout l;
	struct dyninfo d;
	struct shmwal_stat *st;
	char prefix[PATHLEN], var[PATHLEN], p[PATHLEN], q[PATHLEN], pcdir[PATHLEN], bindir[PATHLEN],
	    exe[PATHLEN];
	char lopt[PATHLEN], *flags, *lib;
	const char *vars[] = {var, NULL}, *const tags[] = {"dynamic", "static", NULL};
	const char *dynamic_pre[] = {lopt, NULL},
		   *static_pre[] = {"-Wl,--as-needed", "-l:libshmwal.a", NULL};

	names_get(&nm);
	pathf(prefix, "%s/prefix", f->tmp);
	pathf(var, "PREFIX=%s", prefix);
	make(f, "install", vars);
	layout_get(&l, &nm, "/bin", "/lib", "/include", "/share/man", "/lib/systemd/system");
	expect_files(prefix, l.list);

	/* the library: a real file, its links, its SONAME and exports */
	pathf(f->libdir, "%s/lib", prefix);
	pathf(p, "%s/libshmwal.so", f->libdir);
	expect_link(p, nm.soname);
	pathf(p, "%s/%s", f->libdir, nm.soname);
	expect_link(p, nm.real);
	pathf(p, "%s/%s", f->libdir, nm.real);
	check_exports(p, nm.soname, &d);
	pathf(q, "%s/libshmwal.a", build_dir());
	pathf(p, "%s/libshmwal.a", f->libdir);
	expect_same_file(p, q);
	pathf(p, "%s/include/shmwal.h", prefix);
	expect_same_file(p, "include/shmwal.h");
	pathf(p, "%s/include/shmwal_format.h", prefix);
	expect_same_file(p, "include/shmwal_format.h");

	/* the man pages, against the installed command's --help */
	pathf(bindir, "%s/bin", prefix);
	pathf(exe, "%s/shmwal", bindir);
	assert_int_equal(access(exe, X_OK), 0);
	pathf(p, "%s/share/man/man1/shmwal.1", prefix);
	pathf(q, "%s/share/man/man3/shmwal.3", prefix);
	check_man(f, exe, p, q, &d);
	dyninfo_free(&d);

	/* pkg-config */
	pathf(pcdir, "%s/lib/pkgconfig", prefix);
	pathf(p, "%s/shmwal.pc", pcdir);
	pathf(q, "prefix=%s\n", prefix);
	expect_contains(p, q);
	expect_contains(p, "libdir=${prefix}/lib\n");
	expect_contains(p, "includedir=${prefix}/include\n");
	flags = pkg_config(f, pcdir, "--modversion");
	if (strncmp(flags, nm.version, strlen(nm.version)) != 0)
		fail_msg("pkg-config --modversion shmwal: %s, expected %s", flags, nm.version);
	free(flags);
	flags = pkg_config(f, pcdir, "--static --libs");
	if (!strstr(flags, "-lurcu-bp") || !strstr(flags, "-lisal") || !strstr(flags, "-lpmem") ||
	    !strstr(flags, "-lpthread"))
		fail_msg("pkg-config --static --libs shmwal lacks a dependency: %s", flags);
	free(flags);

	/* a WAL whose flusher is the installed command, started as the unit starts it */
	EXPECT_OK(th_create(f->wal, 1, 1 << 20, 1 << 20, 4096, SHMWAL_SYNC_ALWAYS));
	pathf(p, "%s/lib/systemd/system/shmwal-flusher@.service", prefix);
	start_unit_flusher(f, p, bindir);

	/* the outside program, linked with the installed libshmwal.so (found by rpath) */
	flags = pkg_config(f, pcdir, "--cflags --libs");
	pathf(exe, "%s/outside-dynamic", f->tmp);
	pathf(lopt, "-Wl,-rpath,%s", f->libdir);
	build_outside(f, exe, flags, dynamic_pre);
	free(flags);
	lib = run_outside(f, exe, "dynamic");
	pathf(p, "%s/%s", f->libdir, nm.soname);
	if (strcmp(lib, p) != 0)
		fail_msg("the outside program ran with %s, not with %s", lib, p);
	free(lib);

	/* ... and with libshmwal.a, as README and shmwal(3) say: the library is then part of
	 * the program */
	flags = pkg_config(f, pcdir, "--cflags --static --libs");
	pathf(exe, "%s/outside-static", f->tmp);
	build_outside(f, exe, flags, static_pre);
	free(flags);
	lib = run_outside(f, exe, "static");
	if (strstr(lib, "libshmwal.so"))
		fail_msg("the statically linked program ran with %s", lib);
	free(lib);

	/* a clean stop: exit 0, the shared memory removed */
	assert_int_equal(th_flusher_stop(f->flusher), 0);
	f->flusher = 0;
	check_log(f, tags);
	st = malloc(sizeof(*st));
	assert_non_null(st);
	EXPECT_OK(shmwal_stat(f->wal, st));
	assert_int_equal(st->shm_present, 0);
	free(st);

	/* uninstall leaves nothing */
	make(f, "uninstall", vars);
	{
		const char *none[] = {NULL};

		expect_files(prefix, none);
	}
}

/* DESTDIR staging with directories moved: the files land under DESTDIR, the generated ones
 * name the final locations, and uninstall with the same variables removes them all. */
static void test_install_destdir(void **state)
{
	struct fx *f = *state;
	struct names nm;
	char stage[PATHLEN], dest[PATHLEN], p[PATHLEN];
	const char *vars[] = {dest, "PREFIX=/opt/shmwal", "LIBDIR=/opt/shmwal/lib64",
			      "SYSTEMDUNITDIR=/etc/systemd/system", NULL};
	const char *none[] = {NULL};
	struct layout l;

	names_get(&nm);
	pathf(stage, "%s/stage", f->tmp);
	pathf(dest, "DESTDIR=%s", stage);
	make(f, "install", vars);
	layout_get(&l, &nm, "/opt/shmwal/bin", "/opt/shmwal/lib64", "/opt/shmwal/include",
		   "/opt/shmwal/share/man", "/etc/systemd/system");
	expect_files(stage, l.list);

	pathf(p, "%s/opt/shmwal/lib64/pkgconfig/shmwal.pc", stage);
	expect_contains(p, "prefix=/opt/shmwal\n");
	expect_contains(p, "libdir=${prefix}/lib64\n");
	expect_contains(p, "includedir=${prefix}/include\n");
	expect_contains(p, "Libs: -L${libdir} -lshmwal\n");
	pathf(p, "%s/etc/systemd/system/shmwal-flusher@.service", stage);
	expect_contains(p, "\nExecStart=/opt/shmwal/bin/shmwal flusher \"%f\"\n");
	expect_contains(p, "\nKillSignal=SIGTERM\n");
	expect_contains(p, "\nRestart=on-failure\n");
	if (th_file_contains(p, "@BINDIR@"))
		fail_msg("%s still holds @BINDIR@", p);
	pathf(p, "%s/opt/shmwal/lib64/libshmwal.so", stage);
	expect_link(p, nm.soname);

	make(f, "uninstall", vars);
	expect_files(stage, none);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->tmp = th_tmpdir("install");
	if (!f->tmp) {
		free(f);
		return -1;
	}
	pathf(f->wal, "%s/wal", f->tmp);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->flusher > 0) {
		kill(f->flusher, SIGKILL);
		waitpid(f->flusher, NULL, 0);
	}
	walk_free();
	th_destroy(f->wal); /* and its shared memory, if a failed test left it */
	th_destroy(f->tmp);
	free(f->tmp);
	free(f);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_install_prefix, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_install_destdir, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
