/* SPDX-License-Identifier: MIT */
/*
 * atomics.h - the only place shmwal names C11 atomics.
 *
 * Shared memory is mapped by several processes, so every word two parties touch is an
 * atomic (lock-free, checked below) and every access says its ordering. Each call site names
 * the access it pairs with in a comment; there is no volatile and no bare fence elsewhere.
 */
#ifndef SHMWAL_ATOMICS_H
#define SHMWAL_ATOMICS_H

#include <stdatomic.h>
#include <stdint.h>

typedef _Atomic uint64_t shmwal_atomic64;
typedef _Atomic uint32_t shmwal_atomic32;

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");
_Static_assert(sizeof(shmwal_atomic64) == 8 && _Alignof(shmwal_atomic64) == 8, "atomic64 layout");
_Static_assert(sizeof(shmwal_atomic32) == 4, "atomic32 layout");

#define load_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
#define load_acquire(p) atomic_load_explicit((p), memory_order_acquire)
#define load_seq(p) atomic_load_explicit((p), memory_order_seq_cst)
#define store_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define store_release(p, v) atomic_store_explicit((p), (v), memory_order_release)
#define store_seq(p, v) atomic_store_explicit((p), (v), memory_order_seq_cst)
#define fetch_add_relaxed(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define fetch_add_acqrel(p, v) atomic_fetch_add_explicit((p), (v), memory_order_acq_rel)
#define fetch_add_seq(p, v) atomic_fetch_add_explicit((p), (v), memory_order_seq_cst)
#define fetch_sub_seq(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_seq_cst)
/* Strong compare-and-swap; on failure *expected holds the current value. */
#define cas_acqrel(p, expected, desired)                                                        \
	atomic_compare_exchange_strong_explicit((p), (expected), (desired), memory_order_acq_rel, \
						memory_order_acquire)
#define cas_seq(p, expected, desired)                                                            \
	atomic_compare_exchange_strong_explicit((p), (expected), (desired), memory_order_seq_cst, \
						memory_order_seq_cst)
/* A full fence, for the Dekker-style "publish, then check for sleepers" handshakes only. */
#define fence_seq() atomic_thread_fence(memory_order_seq_cst)

/*
 * Happens-before that ThreadSanitizer cannot see for itself, stated explicitly (no code in
 * other builds): edges that run through another process (the flusher in shared memory) or
 * through an uninstrumented library (liburcu's grace periods). Each use says which edge.
 */
#if defined(__SANITIZE_THREAD__)
#define SHMWAL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SHMWAL_TSAN 1
#endif
#endif
#ifdef SHMWAL_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
void AnnotateIgnoreSyncBegin(const char *file, int line);
void AnnotateIgnoreSyncEnd(const char *file, int line);
#define tsan_release(p) __tsan_release((void *)(p))
#define tsan_acquire(p) __tsan_acquire((void *)(p))
/* Atomics in between are neither checked nor synchronizing, for TSan only. */
#define tsan_hide_begin() AnnotateIgnoreSyncBegin(__FILE__, __LINE__)
#define tsan_hide_end() AnnotateIgnoreSyncEnd(__FILE__, __LINE__)
#else
#define tsan_release(p) ((void)(p))
#define tsan_acquire(p) ((void)(p))
#define tsan_hide_begin() ((void)0)
#define tsan_hide_end() ((void)0)
#endif

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif
