# shmwal - build, test, install.  `make help` lists the targets.
#
#   make                 library (build/libshmwal.{a,so}), the shmwal command, tests, benchmarks
#   make check           build and run the test suite (what CI runs)
#   make demo            the main job: flusher + producer processes + live reader + summary
#                        (DEMO_ARGS="--backend pmem" etc.: see stress/demo.c)
#   make check-asan      the suite built with AddressSanitizer + UndefinedBehaviorSanitizer
#   make check-tsan      the suite built with ThreadSanitizer
#   make stress          crash campaigns: producers and flusher SIGKILLed and restarted for
#                        STRESS_SECONDS (180) in all, then the whole log checked (and a third
#                        as long again on the pmem backend, drain and msync); then the
#                        power-loss simulation with POWERLOSS_SEEDS random states per point
#   make bench           the benchmark suite side by side with the alternatives (bench/suite/),
#                        the pmem comparison, plots; all in $(O)/bench-results (BENCH_OUT)
#   make bench-smoke     the same in about a minute, to check that it runs (CI)
#   make bench-pmem      the pmem backend against libpmemlog on /dev/shm (bench/pmem.c):
#                        5 interleaved rounds of 2M 64 B and 250k 1 KiB records per libpmemlog
#                        appender (5x as many per shmwal producer), about 3-4 min;
#                        BENCH_PMEM_ARGS=--quick for a few seconds
#   make install         install the library (.so with its SONAME links, .a), the headers,
#                        shmwal.pc, the shmwal command, the man pages and the systemd unit:
#                        PREFIX (/usr/local), DESTDIR, BINDIR, LIBDIR, INCLUDEDIR, MANDIR,
#                        PKGCONFIGDIR, SYSTEMDUNITDIR; `make uninstall` with the same
#                        variables removes exactly those files
#   make V=1             show the commands

CC ?= cc
O ?= build
V ?= 0
SANITIZE ?=
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system

WARN := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes -Wformat=2 \
	-Wpointer-arith -Wvla -Werror
CFLAGS ?= -O2 -g
override CFLAGS += -std=c11 $(WARN) -fPIC -fvisibility=hidden -pthread
override CPPFLAGS += -D_GNU_SOURCE -Iinclude -Icommon -I.
LDLIBS := -lurcu-bp -lisal -lpmem -lpthread
ifneq ($(SANITIZE),)
override CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
override LDFLAGS += -fsanitize=$(SANITIZE)
endif

ifeq ($(V),0)
Q := @
msg = @printf '  %-6s %s\n' $(1) $(2);
else
Q :=
msg :=
endif

LIB_SRC := $(wildcard common/*.c shm/*.c persist/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(O)/obj/%.o)
TOOL_SRC := $(wildcard tools/*.c)
TOOL_OBJ := $(TOOL_SRC:%.c=$(O)/obj/%.o)
TEST_SRC := $(filter-out tests/helpers.c,$(wildcard tests/*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(O)/tests/%)
STRESS_SRC := $(wildcard stress/*.c)
STRESS_BIN := $(STRESS_SRC:stress/%.c=$(O)/stress/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(O)/bench/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(O)/fuzz/%)
FUZZ_SECONDS ?= 300
ifneq ($(FUZZ),)
override CFLAGS += -fsanitize=fuzzer-no-link
endif
EXAMPLE_SRC := $(wildcard examples/*.c)
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=$(O)/examples/%)

# The library's version comes from include/shmwal.h; the SONAME changes with its major number.
VERSION_MAJOR := $(shell sed -n 's/^.define SHMWAL_VERSION_MAJOR \([0-9][0-9]*\)$$/\1/p' include/shmwal.h)
VERSION_MINOR := $(shell sed -n 's/^.define SHMWAL_VERSION_MINOR \([0-9][0-9]*\)$$/\1/p' include/shmwal.h)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).0
SONAME := libshmwal.so.$(VERSION_MAJOR)
MAN := $(O)/man/shmwal.1 $(O)/man/shmwal.3
ALL := $(O)/libshmwal.a $(O)/libshmwal.so $(O)/shmwal $(TEST_BIN) $(STRESS_BIN) $(BENCH_BIN) \
	$(O)/bench/suite \
	$(EXAMPLE_BIN) $(MAN)

all: $(ALL)
	@:

$(O)/obj/%.o: %.c $(wildcard include/*.h common/*.h shm/*.h persist/*.h tools/*.h tests/*.h) Makefile
	@mkdir -p $(dir $@)
	$(call msg,CC,$<)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(O)/libshmwal.a: $(LIB_OBJ)
	$(call msg,AR,$@)rm -f $@ && ar rcs $@ $^

$(O)/libshmwal.so: $(LIB_OBJ) libshmwal.map
	$(call msg,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-soname,$(SONAME) \
		-Wl,--version-script=libshmwal.map -o $@ $(LIB_OBJ) $(LDLIBS)
	$(Q)ln -sf libshmwal.so $(O)/$(SONAME)

$(O)/shmwal: $(TOOL_OBJ) $(O)/libshmwal.a
	$(call msg,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(O)/libshmwal.a $(LDLIBS)

$(O)/tests/%: $(O)/obj/tests/%.o $(O)/obj/tests/helpers.o $(O)/libshmwal.a
	@mkdir -p $(dir $@)
	$(call msg,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(O)/obj/tests/helpers.o \
		$(O)/libshmwal.a $(LDLIBS) -lcmocka

$(O)/stress/%: $(O)/obj/stress/%.o $(O)/obj/tests/helpers.o $(O)/libshmwal.a
	@mkdir -p $(dir $@)
	$(call msg,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(O)/obj/tests/helpers.o \
		$(O)/libshmwal.a $(LDLIBS)

# The crash campaign's driver links its parts in stress/campaign/ (not programs themselves).
CAMPAIGN_OBJ := $(patsubst %.c,$(O)/obj/%.o,$(wildcard stress/campaign/*.c))
$(CAMPAIGN_OBJ) $(O)/obj/stress/crash_campaign.o: stress/campaign/campaign.h
$(O)/stress/crash_campaign: $(O)/obj/stress/crash_campaign.o $(CAMPAIGN_OBJ) \
		$(O)/obj/tests/helpers.o $(O)/libshmwal.a
	@mkdir -p $(dir $@)
	$(call msg,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.o,$^) $(O)/libshmwal.a \
		$(LDLIBS)

# Every benchmark links what they share (bench/common/).
BENCH_COMMON_OBJ := $(patsubst %.c,$(O)/obj/%.o,$(wildcard bench/common/*.c))
$(BENCH_COMMON_OBJ) $(BENCH_SRC:%.c=$(O)/obj/%.o): bench/common/bench.h
$(O)/bench/%: $(O)/obj/bench/%.o $(BENCH_COMMON_OBJ) $(O)/obj/tests/helpers.o $(O)/libshmwal.a
	@mkdir -p $(dir $@)
	$(call msg,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BENCH_COMMON_OBJ) \
		$(O)/obj/tests/helpers.o $(O)/libshmwal.a $(LDLIBS) -lm

# The suite (`make bench`) links its modes in bench/suite/.
SUITE_OBJ := $(patsubst %.c,$(O)/obj/%.o,$(wildcard bench/suite/*.c))
$(SUITE_OBJ): bench/suite/suite.h bench/common/bench.h
$(O)/bench/suite: $(SUITE_OBJ) $(BENCH_COMMON_OBJ) $(O)/obj/tests/helpers.o $(O)/libshmwal.a
	@mkdir -p $(dir $@)
	$(call msg,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.o,$^) $(O)/libshmwal.a \
		$(LDLIBS) -lm

# bench/pmem.c measures PMDK's libpmemlog too.
$(O)/bench/pmem: private LDLIBS += -lpmemlog

$(O)/examples/%: $(O)/obj/examples/%.o $(O)/libshmwal.a
	@mkdir -p $(dir $@)
	$(call msg,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(O)/libshmwal.a $(LDLIBS)

# test_install builds a program against the installed library with this build's compiler and
# sanitizers (a sanitized libshmwal.so needs them at link time).
$(O)/obj/tests/test_install.o: private override CPPFLAGS += -DTEST_CC='"$(CC)"' \
	-DTEST_SANITIZE='"$(SANITIZE)"'

# Man pages: scdoc sources in docs/man/.
$(O)/man/%: docs/man/%.scd
	@mkdir -p $(dir $@)
	$(call msg,SCDOC,$@)scdoc < $< > $@.tmp && mv $@.tmp $@

# make install / make uninstall. shmwal.pc and the systemd unit are generated here from their
# templates, since they name the directories of this installation (without DESTDIR).
LIB_REAL := libshmwal.so.$(VERSION)
INSTALLED := $(BINDIR)/shmwal $(LIBDIR)/$(LIB_REAL) $(LIBDIR)/$(SONAME) $(LIBDIR)/libshmwal.so \
	$(LIBDIR)/libshmwal.a $(INCLUDEDIR)/shmwal.h $(INCLUDEDIR)/shmwal_format.h \
	$(PKGCONFIGDIR)/shmwal.pc $(MANDIR)/man1/shmwal.1 $(MANDIR)/man3/shmwal.3 \
	$(SYSTEMDUNITDIR)/shmwal-flusher@.service
# In shmwal.pc, directories under PREFIX are written relative to ${prefix}.
pc_dir = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

install: $(O)/libshmwal.a $(O)/libshmwal.so $(O)/shmwal $(MAN)
	$(call msg,GEN,$(O)/install/shmwal.pc)mkdir -p $(O)/install && \
		sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(call pc_dir,$(LIBDIR))|' \
		-e 's|@INCLUDEDIR@|$(call pc_dir,$(INCLUDEDIR))|' -e 's|@VERSION@|$(VERSION)|' \
		shmwal.pc.in > $(O)/install/shmwal.pc
	$(call msg,GEN,$(O)/install/shmwal-flusher@.service)sed -e 's|@BINDIR@|$(BINDIR)|' \
		tools/shmwal-flusher@.service.in > $(O)/install/shmwal-flusher@.service
	$(call msg,INSTALL,$(DESTDIR)$(PREFIX))install -d '$(DESTDIR)$(BINDIR)' \
		'$(DESTDIR)$(LIBDIR)' '$(DESTDIR)$(INCLUDEDIR)' '$(DESTDIR)$(PKGCONFIGDIR)' \
		'$(DESTDIR)$(MANDIR)/man1' '$(DESTDIR)$(MANDIR)/man3' '$(DESTDIR)$(SYSTEMDUNITDIR)'
	$(Q)install -m 0755 $(O)/shmwal '$(DESTDIR)$(BINDIR)/shmwal'
	$(Q)install -m 0755 $(O)/libshmwal.so '$(DESTDIR)$(LIBDIR)/$(LIB_REAL)'
	$(Q)ln -sfn $(LIB_REAL) '$(DESTDIR)$(LIBDIR)/$(SONAME)'
	$(Q)ln -sfn $(SONAME) '$(DESTDIR)$(LIBDIR)/libshmwal.so'
	$(Q)install -m 0644 $(O)/libshmwal.a '$(DESTDIR)$(LIBDIR)/libshmwal.a'
	$(Q)install -m 0644 include/shmwal.h include/shmwal_format.h '$(DESTDIR)$(INCLUDEDIR)'
	$(Q)install -m 0644 $(O)/install/shmwal.pc '$(DESTDIR)$(PKGCONFIGDIR)/shmwal.pc'
	$(Q)install -m 0644 $(O)/man/shmwal.1 '$(DESTDIR)$(MANDIR)/man1/shmwal.1'
	$(Q)install -m 0644 $(O)/man/shmwal.3 '$(DESTDIR)$(MANDIR)/man3/shmwal.3'
	$(Q)install -m 0644 $(O)/install/shmwal-flusher@.service \
		'$(DESTDIR)$(SYSTEMDUNITDIR)/shmwal-flusher@.service'

uninstall:
	$(call msg,RM,$(DESTDIR)$(PREFIX))rm -f $(foreach f,$(INSTALLED),'$(DESTDIR)$(f)')

# check and demo first install what is missing (scripts/install-deps), then build.
$(O)/fuzz/%: $(O)/obj/tests/fuzz/%.o $(O)/libshmwal.a
	@mkdir -p $(dir $@)
	$(call msg,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(O)/libshmwal.a \
		$(LDLIBS)

fuzz-bins: $(FUZZ_BIN)

# libFuzzer targets (clang, ASan + UBSan): `make fuzz` runs each for FUZZ_SECONDS (300),
# `make fuzz-smoke` for 20 s. Seeds: tests/fuzz/corpus/<target>; crashes: build/fuzz/crashes.
fuzz:
	@scripts/install-deps --ci
	$(Q)$(MAKE) --no-print-directory O=build/fuzz CC=clang SANITIZE=address,undefined FUZZ=1 \
		fuzz-bins
	@O=build/fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz

fuzz-smoke:
	$(Q)$(MAKE) --no-print-directory FUZZ_SECONDS=20 fuzz

# The SPIN model of the claim/commit/repair protocol (shm/claim.pml): exhaustive checks of the
# protocol as the C code implements it, plus negative controls that must fail.
model:
	@scripts/install-deps --ci
	@scripts/check-model

deps:
	@scripts/install-deps

check: deps
	@$(MAKE) --no-print-directory all
	@O=$(O) tests/run

check-asan:
	$(Q)$(MAKE) --no-print-directory O=build/asan SANITIZE=address,undefined check

# ThreadSanitizer sees one process's threads: producer threads sharing a handle, readers
# sharing the RCU catalog. Edges through another process (the flusher) or liburcu's grace
# periods are stated to it explicitly (common/atomics.h, tsan_release/tsan_acquire).
check-tsan:
	$(Q)$(MAKE) --no-print-directory O=build/tsan SANITIZE=thread check

# The crash campaigns (stress/crash_campaign.c): producers, flusher, both, a third of
# STRESS_SECONDS each; STRESS_ARGS adds options (e.g. --seed 7 --sync interval). Then the
# power-loss simulation (tests/test_powerloss.c) at a larger scale than in `make check`.
STRESS_SECONDS ?= 180
POWERLOSS_SEEDS ?= 8
POWERLOSS_RECORDS ?= 400
stress: deps
	@$(MAKE) --no-print-directory $(O)/stress/crash_campaign $(O)/tests/test_powerloss
	$(Q)$(O)/stress/crash_campaign --campaign all \
		--seconds $$(( ($(STRESS_SECONDS) + 2) / 3 )) $(STRESS_ARGS)
	$(Q)for b in pmem pmem-msync; do $(O)/stress/crash_campaign --campaign all --backend $$b \
		--seconds $$(( ($(STRESS_SECONDS) + 17) / 18 )) $(STRESS_ARGS) || exit 1; done
	$(Q)SHMWAL_POWERLOSS_SEEDS=$(POWERLOSS_SEEDS) SHMWAL_POWERLOSS_RECORDS=$(POWERLOSS_RECORDS) \
		$(O)/tests/test_powerloss

# The benchmark suite, side by side with the alternatives (bench/suite/main.c), then the pmem
# comparison and the plots. bench-smoke: a minute, to check that it all runs (CI).
BENCH_OUT ?= $(O)/bench-results
BENCH_ARGS ?=
bench: deps
	@scripts/install-deps --bench
	@$(MAKE) --no-print-directory $(O)/bench/suite $(O)/bench/pmem
	$(Q)$(O)/bench/suite --out $(BENCH_OUT) $(BENCH_ARGS)
	$(Q)$(O)/bench/pmem --csv $(BENCH_OUT)/pmem.csv $(BENCH_PMEM_ARGS)
	$(Q)bench/plots $(BENCH_OUT)

bench-smoke: deps
	@scripts/install-deps --bench
	@$(MAKE) --no-print-directory $(O)/bench/suite $(O)/bench/pmem
	$(Q)$(O)/bench/suite --quick --out $(BENCH_OUT)
	$(Q)$(O)/bench/pmem --quick --csv $(BENCH_OUT)/pmem.csv
	$(Q)bench/plots $(BENCH_OUT)

# shmwal's pmem backend against libpmemlog, side by side (bench/pmem.c prints its options).
BENCH_PMEM_ARGS ?=
bench-pmem: deps
	@$(MAKE) --no-print-directory $(O)/bench/pmem
	$(Q)$(O)/bench/pmem $(BENCH_PMEM_ARGS)

demo: deps
	@$(MAKE) --no-print-directory $(O)/shmwal $(O)/stress/demo
	@O=$(O) scripts/demo $(DEMO_ARGS)

clean:
	rm -rf build

format:
	clang-format -i $(LIB_SRC) $(TOOL_SRC) $(wildcard include/*.h common/*.h shm/*.h persist/*.h tools/*.h)

help:
	@sed -n '1,/^$$/p' Makefile

.PHONY: all check check-asan check-tsan stress bench bench-smoke bench-pmem demo clean format help deps fuzz fuzz-smoke fuzz-bins model install uninstall
.SECONDARY:
