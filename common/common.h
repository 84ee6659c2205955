/* SPDX-License-Identifier: MIT */
/*
 * common.h - small helpers shared by shm/ and persist/: error detail, clocks, paths.
 */
#ifndef SHMWAL_COMMON_H
#define SHMWAL_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define SHMWAL_EXPORT __attribute__((visibility("default")))
#define SHMWAL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define CACHE_LINE 64

/*
 * Records a sentence about the failure being returned (for shmwal_last_error()) and returns
 * `err` (a negative errno), so a failure reads: return seterr(-EINVAL, "ring_bytes %llu ...").
 */
int seterr(int err, const char *fmt, ...) SHMWAL_PRINTF(2, 3);
/* Clears the detail (successful calls that want a clean slate). */
void clearerr_detail(void);

static inline uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static inline uint64_t mono_ns(void) { return now_ns(CLOCK_MONOTONIC); }
static inline uint64_t real_ns(void) { return now_ns(CLOCK_REALTIME); }

/* fsyncs a directory; -errno. */
int fsync_dir(const char *path);
/* An OFD write lock on one byte of fd (wait: block until it is free). 0, or -errno (-EAGAIN or
 * -EACCES: another open file description holds it). */
int ofd_lock_byte(int fd, off_t byte, int wait);

/* CRC32C of buf continuing from the running value c, without the inversions shmwal_crc32c()
 * applies (so calls chain). crc32c_isal() always takes ISA-L's path (len <= INT_MAX), for
 * tests that compare the two. */
uint32_t crc32c_raw(uint32_t c, const void *buf, size_t len);
/* shmwal_frame_crc() of four committed frames (len[i] >= SHMWAL_FRAME_HDR), computed
 * together when they are short: out[i] for frames[i]. */
void crc32c_frames4(const void *const *frames, const uint32_t *len, uint32_t *out);
/* The running (raw) CRC32C of a frame's first checksummed bytes: len, then the header from
 * type on (shmwal_frame_crc in format.c), from the values, not from memory. */
uint32_t crc32c_frame_head(uint32_t len, uint16_t type, uint16_t key_len, uint64_t lsn,
			   uint64_t timestamp_ns);
/* Copies len bytes from src to dst and continues the running CRC32C `c` over them: the CRC is
 * of the bytes stored, whatever src does meanwhile (another thread writing into it). Up to
 * 256 bytes each word is loaded once; longer, dst is checksummed after the copy. */
uint32_t crc32c_copy(uint32_t c, void *dst, const void *src, size_t len);
/* Copies key and value behind the frame header at `f` and returns shmwal_frame_crc() of the
 * frame that the header's values (passed, not read back), key and value make. */
uint32_t frame_fill_crc(void *f, uint32_t len, uint16_t type, uint64_t lsn, uint64_t timestamp_ns,
			const void *key, uint32_t key_len, const void *value, uint32_t value_len);
uint32_t crc32c_isal(uint32_t c, const void *buf, size_t len);

/* 64 random bits from getrandom(); -errno. */
int random_u64(uint64_t *out);

/* snprintf that reports truncation as -ENAMETOOLONG. */
int path_fmt(char *buf, size_t len, const char *fmt, ...) SHMWAL_PRINTF(3, 4);

#endif
