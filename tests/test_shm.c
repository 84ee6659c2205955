/* SPDX-License-Identifier: MIT */
/*
 * test_shm.c - attaching to a shared-memory object that is not (or not yet) a valid one of
 * this WAL: producers get -EPROTO with a reason; a flusher makes an unfinished or garbage one
 * anew (it holds the flusher lock, so whoever was making it is dead) and refuses to adopt a
 * complete one from another version (it may hold committed records).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "helpers.h"
#include "meta.h"
#include "shm/layout.h"
#include "shm/shm.h"
#include "shm/shm_impl.h"
#include "shmwal_format.h"

static char *new_wal(void)
{
	struct shmwal_config c;
	char *dir = th_tmpdir("shm");

	shmwal_config_default(&c);
	c.ring_bytes = 64 << 10;
	c.max_value = 1024;
	assert_int_equal(shmwal_create(dir, &c), 0);
	return dir;
}

static void shm_path(const char *dir, char *name)
{
	struct meta m;

	assert_int_equal(meta_load(dir, &m), 0);
	shm_name(name, m.instance);
}

/* Maps the WAL's object read-write, for scribbling. */
static struct shm_header *map_header(const char *dir, int *fd)
{
	char name[32];
	void *p;

	shm_path(dir, name);
	*fd = shm_open(name, O_RDWR, 0);
	assert_true(*fd >= 0);
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	assert_true(p != MAP_FAILED);
	return p;
}

static void test_garbage_object(void **state)
{
	char *dir = new_wal(), name[32], junk[4096];
	struct shmwal *w;
	int fd;

	(void)state;
	shm_path(dir, name);
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	memset(junk, 0x5a, sizeof(junk));
	assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	assert_int_equal(shmwal_open(dir, &w), -EPROTO);
	assert_non_null(strstr(shmwal_last_error(), "magic"));
	/* A flusher (holding the flusher lock) makes it anew: an object with our name but no
	 * complete header can only be a dead flusher's unfinished one, or garbage. */
	{
		pid_t fl = th_flusher_start(dir, 0);
		uint64_t lsn;

		assert_int_equal(th_open(dir, &w), 0);
		assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, "z", 1, &lsn), 0);
		assert_int_equal(shmwal_wait_durable(w, 0, lsn, 60 * SHMWAL_NS_PER_SEC), 0);
		shmwal_close(w);
		assert_int_equal(th_flusher_stop(fl), 0);
	}
	th_destroy(dir);
	free(dir);
}

/* A real object, made foreign or half-initialized after the fact. */
static void test_scribbled_header(void **state)
{
	char *dir = new_wal();
	struct shm_header *h;
	struct shmwal *w, *keep;
	uint64_t saved;
	pid_t fl;
	int fd;

	(void)state;
	fl = th_flusher_start(dir, 0);
	assert_int_equal(th_open(dir, &keep), 0); /* keeps the object alive after the stop */
	assert_int_equal(shmwal_append(keep, 0, SHMWAL_TYPE_PUT, NULL, 0, "x", 1, NULL), 0);
	assert_int_equal(th_flusher_stop(fl), 0);
	h = map_header(dir, &fd);

	saved = h->signature;
	h->signature ^= 1;
	assert_int_equal(shmwal_open(dir, &w), -EPROTO);
	assert_non_null(strstr(shmwal_last_error(), "version"));
	assert_int_equal(th_wait(th_flusher_start(dir, 0), TH_TIMEOUT_S), 1); /* not adopted */
	h->signature = saved;

	saved = h->instance;
	h->instance ^= 1;
	assert_int_equal(shmwal_open(dir, &w), -EPROTO);
	assert_non_null(strstr(shmwal_last_error(), "instance"));
	h->instance = saved;

	h->total_bytes += 4096;
	assert_int_equal(shmwal_open(dir, &w), -EPROTO);
	assert_non_null(strstr(shmwal_last_error(), "geometry"));
	h->total_bytes -= 4096;

	/* half-initialized: producers refuse; a flusher (holding the lock) re-creates it */
	__atomic_store_n((uint32_t *)&h->state, SHM_STATE_INIT, __ATOMIC_RELEASE);
	assert_int_equal(shmwal_open(dir, &w), -EPROTO);
	assert_non_null(strstr(shmwal_last_error(), "not initialized"));
	munmap(h, 4096);
	close(fd);
	shmwal_close(keep);

	fl = th_flusher_start(dir, 0);
	assert_int_equal(th_open(dir, &w), 0);
	{
		uint64_t lsn;
		struct shmwal_reader *r;
		struct shmwal_record rec;

		assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, "y", 1, &lsn), 0);
		assert_int_equal(shmwal_wait_durable(w, 0, lsn, 60 * SHMWAL_NS_PER_SEC), 0);
		assert_int_equal(shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r), 0);
		assert_int_equal(shmwal_reader_next(r, &rec, 0), 0);
		assert_memory_equal(rec.value, "x", 1); /* the record from before survived */
		assert_int_equal(shmwal_reader_next(r, &rec, 0), 0);
		assert_memory_equal(rec.value, "y", 1);
		assert_int_equal(rec.lsn, lsn);
		shmwal_reader_close(r);
	}
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	th_destroy(dir);
	free(dir);
}

/* The shared memory says more is durable than the file holds (a file truncated behind our
 * back, or a scribbled durable word): readers report it, they never fault on the mapping. */
static void test_reader_file_shorter_than_durable(void **state)
{
	char *dir = new_wal(), path[4096];
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal *w;
	uint64_t lsn = 0;
	int rc, n = 0;
	pid_t fl;

	(void)state;
	fl = th_flusher_start(dir, 0);
	assert_int_equal(th_open(dir, &w), 0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, "0123456789", 10, &lsn),
				 0);
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, 60 * SHMWAL_NS_PER_SEC), 0);
	/* Gone before the file is cut: a live flusher may write zeros ahead of the log's end
	 * right after its last publication, which would give the file its length back. Its
	 * shared memory stays, saying what was durable. */
	kill(fl, SIGKILL);
	assert_int_equal(th_wait(fl, TH_TIMEOUT_S), 128 + SIGKILL);
	snprintf(path, sizeof(path), "%s/p000/0000000000000000.seg", dir);
	assert_int_equal(truncate(path, 64 + 10 * 48 + 20), 0); /* 10 records and a bit */
	assert_int_equal(shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r), 0);
	while ((rc = shmwal_reader_next(r, &rec, 0)) == 0)
		n++;
	assert_int_equal(n, 10);
	assert_int_equal(rc, -EBADMSG);
	assert_non_null(strstr(shmwal_last_error(), "shorter"));
	shmwal_reader_close(r);
	shmwal_close(w);
	th_destroy(dir);
	free(dir);
}

/* A reader following the log keeps following across a clean flusher restart (the first one
 * removed its shared memory; the second makes a new one). */
static void test_reader_follows_across_flusher_restart(void **state)
{
	char *dir = new_wal();
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal *w;
	uint64_t lsn;
	pid_t fl;

	(void)state;
	fl = th_flusher_start(dir, 0);
	assert_int_equal(th_open(dir, &w), 0);
	assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, "one", 3, &lsn), 0);
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, 60 * SHMWAL_NS_PER_SEC), 0);
	shmwal_close(w);
	assert_int_equal(shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r), 0);
	assert_int_equal(shmwal_reader_next(r, &rec, 0), 0);
	assert_memory_equal(rec.value, "one", 3);
	assert_int_equal(th_flusher_stop(fl), 0); /* no producer attached: it removes the shm */

	fl = th_flusher_start(dir, 0);
	assert_int_equal(th_open(dir, &w), 0);
	assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, "two", 3, &lsn), 0);
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, 60 * SHMWAL_NS_PER_SEC), 0);
	assert_int_equal(shmwal_reader_next(r, &rec, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC), 0);
	assert_memory_equal(rec.value, "two", 3);
	assert_int_equal(rec.lsn, lsn);
	/* and live again: a record appended after the reader waits */
	assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, "three", 5, &lsn), 0);
	assert_int_equal(shmwal_reader_next(r, &rec, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC), 0);
	assert_memory_equal(rec.value, "three", 5);
	shmwal_reader_close(r);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	th_destroy(dir);
	free(dir);
}

/* A flusher that cannot even open the shared memory (out of descriptors) fails; it never
 * removes an object that holds committed records. */
static void test_flusher_out_of_fds_keeps_shm(void **state)
{
	char *dir = new_wal();
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal *w;
	uint64_t lsn;
	pid_t fl, child;
	int n = 0;

	(void)state;
	fl = th_flusher_start(dir, 0);
	assert_int_equal(th_open(dir, &w), 0);
	kill(fl, SIGKILL);
	assert_int_equal(th_wait(fl, TH_TIMEOUT_S), 128 + SIGKILL);
	for (int i = 0; i < 20; i++) /* committed to the ring, no flusher */
		assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, "kept", 4, &lsn), 0);
	child = fork();
	if (child == 0) {
		struct rlimit rl = { 6, 6 }; /* enough for the files, not for the shm object */

		setrlimit(RLIMIT_NOFILE, &rl);
		if (shmwal_flusher_run(dir, NULL, NULL) == 0)
			_exit(0);
		/* 1: it failed where this test means it to, opening the shared memory */
		_exit(strstr(shmwal_last_error(), "open shared memory") ? 1 : 2);
	}
	assert_int_equal(th_wait(child, TH_TIMEOUT_S), 1);
	fl = th_flusher_start(dir, 0);
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC),
			 0);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	assert_int_equal(shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r), 0);
	while (shmwal_reader_next(r, &rec, 0) == 0)
		n++;
	assert_int_equal(n, 20);
	shmwal_reader_close(r);
	th_destroy(dir);
	free(dir);
}

/* No flusher running (no shared memory): readers read the files; a consumer can resume at the
 * exact end of the log (the next_lsn it saved), and that reader sees later records. */
static void test_offline_reader_resumes_at_end(void **state)
{
	char *dir = new_wal();
	struct shmwal_reader *r;
	struct shmwal_record rec;
	struct shmwal *w;
	uint64_t lsn, end = 0;
	pid_t fl;

	(void)state;
	fl = th_flusher_start(dir, 0);
	assert_int_equal(th_open(dir, &w), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, "rec", 3, &lsn), 0);
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, 60 * SHMWAL_NS_PER_SEC), 0);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0); /* removes the shared memory */

	assert_int_equal(shmwal_reader_open(dir, 0, SHMWAL_LSN_OLDEST, &r), 0);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(shmwal_reader_next(r, &rec, 0), 0);
		end = rec.next_lsn;
	}
	assert_int_equal(shmwal_reader_next(r, &rec, 0), -ETIMEDOUT);
	shmwal_reader_close(r);
	assert_int_equal(shmwal_reader_open(dir, 0, end, &r), 0);
	{
		struct shmwal_reader *bad;

		assert_int_equal(shmwal_reader_open(dir, 0, end + 8, &bad), -EINVAL);
	}
	fl = th_flusher_start(dir, 0);
	assert_int_equal(th_open(dir, &w), 0);
	assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, "later", 5, &lsn), 0);
	assert_int_equal(lsn, end);
	assert_int_equal(shmwal_reader_next(r, &rec, (uint64_t)TH_TIMEOUT_S * SHMWAL_NS_PER_SEC), 0);
	assert_memory_equal(rec.value, "later", 5);
	shmwal_reader_close(r);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	th_destroy(dir);
	free(dir);
}

static void *append_blocking(void *arg)
{
	static char big[1000];

	return (void *)(intptr_t)shmwal_append(arg, 0, SHMWAL_TYPE_PUT, NULL, 0, big, sizeof(big),
					       NULL);
}

/*
 * A wait for durable or for ring space announces itself in hdr.wait_ns (a pacing flusher then
 * skips its pause: persist/flusher.c, "Pacing"). With the flusher stopped, a wait that times
 * out leaves the word at a clock reading taken during the call; a scribbled value (far future,
 * or just old) is overwritten by the next wait; a wait for a record that is durable already
 * does not touch the word; an append that waits for ring space stores it too. And
 * shm_wait_recent judges "recent" both ways around now.
 */
static void test_wait_announces_itself(void **state)
{
	const uint64_t now = 1000000000000ull, H = SHM_WAIT_HINT_NS;
	char *dir = new_wal();
	struct shm_header *h;
	struct shmwal *w;
	uint64_t lsn, t0, t1;
	pid_t fl;
	int fd;

	(void)state;
	assert_true(shm_wait_recent(now, now));
	assert_true(shm_wait_recent(now - H + 1, now));
	assert_false(shm_wait_recent(now - H, now));
	assert_true(shm_wait_recent(now + H - 1, now)); /* a waiter read the clock after us */
	assert_false(shm_wait_recent(now + H, now));
	assert_false(shm_wait_recent(0, now));
	assert_false(shm_wait_recent(UINT64_MAX, now));

	fl = th_flusher_start(dir, 0);
	assert_int_equal(th_open(dir, &w), 0);
	h = map_header(dir, &fd);
	assert_int_equal(kill(fl, SIGSTOP), 0);
	assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, "rec", 3, &lsn), 0);
	for (int i = 0; i < 3; i++) {
		/* i > 0: after a scribble from the future, far or a second ahead */
		t0 = mono_ns();
		assert_int_equal(shmwal_wait_durable(w, 0, lsn, 1000000), -ETIMEDOUT);
		t1 = mono_ns();
		assert_in_range(atomic_load(&h->wait_ns), t0, t1);
		atomic_store(&h->wait_ns, i == 0 ? UINT64_MAX : t1 + SHMWAL_NS_PER_SEC);
	}
	{ /* a full ring (the flusher is stopped): a blocking append announces its wait */
		static char big[1000];
		pthread_t th;
		void *ret;
		int i;

		while (shmwal_try_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, big, sizeof(big), NULL) == 0)
			;
		atomic_store(&h->wait_ns, 1);
		assert_int_equal(pthread_create(&th, NULL, append_blocking, w), 0);
		for (i = 0; atomic_load(&h->wait_ns) == 1 && i < TH_TIMEOUT_S * 1000; i++)
			usleep(1000);
		assert_int_not_equal(atomic_load(&h->wait_ns), 1);
		assert_int_equal(kill(fl, SIGCONT), 0);
		assert_int_equal(pthread_join(th, &ret), 0);
		assert_int_equal((intptr_t)ret, 0);
		assert_int_equal(kill(fl, SIGSTOP), 0);
	}
	atomic_store(&h->wait_ns, 1); /* long ago */
	assert_int_equal(kill(fl, SIGCONT), 0);
	t0 = mono_ns();
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, 60 * SHMWAL_NS_PER_SEC), 0);
	t1 = mono_ns();
	/* the call found the record not durable yet (the flusher was stopped), or durable */
	assert_true(atomic_load(&h->wait_ns) == 1 || (atomic_load(&h->wait_ns) >= t0 &&
						     atomic_load(&h->wait_ns) <= t1));
	atomic_store(&h->wait_ns, 7);
	assert_int_equal(shmwal_wait_durable(w, 0, lsn, 60 * SHMWAL_NS_PER_SEC), 0);
	assert_int_equal(atomic_load(&h->wait_ns), 7); /* durable already: no announcement */
	munmap(h, 4096);
	close(fd);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	th_destroy(dir);
	free(dir);
}

static void *wait_as_producer(void *arg)
{
	struct shmwal *w = arg;
	uint64_t lsn = (uint64_t)shmwal_durable_lsn(w, 0);

	return (void *)(intptr_t)shmwal_wait_durable(w, 0, lsn, 60 * SHMWAL_NS_PER_SEC);
}

static void *wait_as_reader(void *arg)
{
	struct shmwal_reader *r = arg;
	struct shmwal_record rec;

	return (void *)(intptr_t)shmwal_reader_next(r, &rec, 60 * SHMWAL_NS_PER_SEC);
}

/* Polls until `want` waiters in all sleep on partition 0's durable word, counted in either
 * word (TH_TIMEOUT_S at most). */
static void poll_asleep(struct shm_part *cp, uint32_t want)
{
	for (int i = 0;
	     atomic_load(&cp->producer_waiters) + atomic_load(&cp->durable_waiters) < want &&
	     i < TH_TIMEOUT_S * 1000;
	     i++)
		usleep(1000);
}

/*
 * Producers asleep in shmwal_wait_durable are counted apart from readers asleep for the same
 * word (persist/flusher.c, "Group commit": the flusher holds a sync for the producers it woke,
 * never for readers), and one publication wakes both.
 */
static void test_waiters_counted_apart(void **state)
{
	char *dir = new_wal();
	struct shmwal_reader *r;
	struct shm_part *cp;
	struct shmwal *w;
	struct shm *s;
	struct meta m;
	pthread_t tp, tr;
	uint32_t seen[4];
	uint64_t lsn;
	void *ret;
	pid_t fl;

	(void)state;
	fl = th_flusher_start(dir, 0);
	assert_int_equal(th_open(dir, &w), 0);
	assert_int_equal(meta_load(dir, &m), 0);
	assert_int_equal(shm_attach(&m, SHM_ATTACH_NO_RINGS, &s), 0);
	cp = &s->parts[0];
	assert_int_equal(shmwal_reader_open(dir, 0, SHMWAL_LSN_END, &r), 0);
	assert_int_equal(kill(fl, SIGSTOP), 0);
	assert_int_equal(shmwal_append(w, 0, SHMWAL_TYPE_PUT, NULL, 0, "rec", 3, &lsn), 0);
	assert_int_equal(pthread_create(&tp, NULL, wait_as_producer, w), 0);
	poll_asleep(cp, 1);
	seen[0] = atomic_load(&cp->producer_waiters);
	seen[1] = atomic_load(&cp->durable_waiters);
	assert_int_equal(pthread_create(&tr, NULL, wait_as_reader, r), 0);
	poll_asleep(cp, 2);
	seen[2] = atomic_load(&cp->durable_waiters);
	seen[3] = shm_producers_waiting(s, 0);
	/* the flusher goes on before any check: a failed one must not leave it stopped */
	assert_int_equal(kill(fl, SIGCONT), 0);
	assert_int_equal(seen[0], 1); /* the producer, as a producer */
	assert_int_equal(seen[1], 0);
	assert_int_equal(seen[2], 1); /* the reader, as a reader */
	assert_int_equal(seen[3], 1);
	assert_int_equal(pthread_join(tp, &ret), 0);
	assert_int_equal((intptr_t)ret, 0);
	assert_int_equal(pthread_join(tr, &ret), 0);
	assert_int_equal((intptr_t)ret, 0);
	assert_int_equal(shmwal_reader_position(r), lsn + SHMWAL_ALIGN_UP(SHMWAL_FRAME_HDR + 3));
	assert_int_equal(atomic_load(&cp->producer_waiters), 0);
	assert_int_equal(atomic_load(&cp->durable_waiters), 0);
	shmwal_reader_close(r);
	shm_detach(s);
	shmwal_close(w);
	assert_int_equal(th_flusher_stop(fl), 0);
	th_destroy(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_garbage_object),
	    cmocka_unit_test(test_scribbled_header),
	    cmocka_unit_test(test_reader_file_shorter_than_durable),
	    cmocka_unit_test(test_reader_follows_across_flusher_restart),
	    cmocka_unit_test(test_flusher_out_of_fds_keeps_shm),
	    cmocka_unit_test(test_offline_reader_resumes_at_end),
	    cmocka_unit_test(test_wait_announces_itself),
	    cmocka_unit_test(test_waiters_counted_apart),
	};

	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
