/* SPDX-License-Identifier: MIT */
/*
 * shmwal_format.h - the byte formats shared by the rings, the segment files and the tools.
 *
 * All integers are little-endian (the only byte order shmwal runs on: x86-64 and arm64).
 *
 * 1. Frames
 *
 * A partition is a stream of bytes; a record's LSN is the position of its frame in that stream.
 * The same frame bytes live first in the partition's ring in shared memory and then, copied
 * verbatim, in a segment file, so one parser serves the flusher, recovery, readers and tools.
 *
 *   offset size  field
 *   0      8     word       state and length, see below; in the ring it is the atomic word
 *                           that producers and the flusher hand the frame over with
 *   8      4     crc        CRC32C, see "checksum" below
 *   12     2     type       record type: 1 PUT, 2 DELETE, 16..65535 user; 0 in pads
 *   14     2     key_len    bytes of key that follow the header (0..65535)
 *   16     8     lsn        the frame's own LSN: equal to its position in the stream
 *   24     8     timestamp  CLOCK_REALTIME nanoseconds when the append (or zero-copy claim)
 *                             began, right before its LSN was claimed (read from a calibrated
 *                             TSC where possible: within microseconds); 0 in pads
 *   32     ...   key, then value, then zero padding up to the next multiple of 8
 *
 * The word:
 *   bits  0..31  len     header + key + value in bytes (not padded); the frame occupies
 *                        SHMWAL_ALIGN_UP(len) bytes. For pads, len is the whole pad (a
 *                        multiple of 8).
 *   bits 32..47  slot    the producer registry slot that claimed the frame; informational
 *                        once committed; 0xffff in pads the flusher made
 *   bits 48..55  state   1 CLAIMED (being written; ring only), 2 COMMITTED (a record),
 *                        3 ABORTED (a claim given up or left by a dead producer),
 *                        4 PAD (space nobody will ever fill)
 *   bits 56..63  magic   0xa5, so a header word is never zero and garbage rarely parses
 *   value_len = len - 32 - key_len.
 *
 * The checksum: crc = CRC32C over the 4 bytes of len, then over bytes [12, len) of the frame,
 * i.e. type, key_len, lsn, timestamp, key and value. It does not cover the state and slot
 * (they change after the checksum is written). In ABORTED and PAD frames it covers only len
 * and bytes [12, 32); their body is zeros and is not read.
 *
 * Validity: a frame at position P is valid when its magic is 0xa5, its state is COMMITTED,
 * ABORTED or PAD, 32 <= len, key_len <= len - 32 (records), SHMWAL_ALIGN_UP(len) does not run
 * past the end of the data, its lsn field equals P, and its checksum matches. Stale bytes (an
 * older lap of a ring, a recycled segment) can never pass as a record: their lsn is wrong.
 *
 * 2. Segment files
 *
 * DIR/pNNN/LLLLLLLLLLLLLLLL.seg holds the frames of partition NNN (3 decimal digits) from
 * LSN L (16 lower-case hex digits, so names sort by LSN). A 64-byte header, then frames: the
 * frame with LSN x is at file offset 64 + (x - L). Frames never straddle segments.
 *
 *   offset size  field
 *   0      8     magic        "SHMWSEG1"
 *   8      4     version      1
 *   12     4     partition
 *   16     8     first_lsn    equal to L in the name
 *   24     8     instance     the WAL's instance id (from DIR/meta)
 *   32     8     created_ns   CLOCK_REALTIME at creation
 *   40     4     header_bytes 64
 *   44     16    reserved     zero
 *   60     4     crc          CRC32C of bytes [0, 60)
 *
 * Segments of the pmem backend have the same layout and a fixed size from their creation: 64
 * + segment_bytes + the largest frame, rounded up to 4 KiB. Their frames end at the next
 * segment's first LSN (sealed) or at the first zero word (the last segment), and only zeros
 * follow: recovery clears anything else past the end before the flusher writes again.
 *
 * What recovery does with each kind of damage (see persist/recovery.c):
 *   - the last segment: frames are scanned from the start; the first invalid frame (or a
 *     short read) is the end of the log and the file is cut there (a torn tail). A last
 *     segment whose header is torn or short holds nothing durable (the header is synced
 *     before any frame of it is published) and is removed.
 *   - any other segment: a bad header, a first_lsn that does not match its name, another
 *     instance id, or a size that leaves a gap or overlap before the next segment is
 *     corruption: reported with the file, and the flusher refuses to start unless asked to
 *     repair. Their frames are not read at start (start-up time must not grow with the log):
 *     a damaged frame inside them is reported by readers (-EBADMSG, file and offset) and by
 *     `shmwal verify`, never returned as a record; `shmwal repair` (shmwal_repair()) cuts the
 *     log there on request.
 *
 * 3. The quarantine
 *
 * DIR/quarantine holds what repairs took out of the log (nothing is deleted), one file per
 * piece, named pNNN-LLLLLLLLLLLLLLLL.seg.T: the partition, the first LSN of what it holds and
 * CLOCK_REALTIME nanoseconds when it was put there. Each is in the segment file format: a
 * whole segment moved there, or, for a segment cut at LSN L, a new header for first LSN L
 * followed by the bytes cut off, as they were (the frame with LSN x at offset 64 + x - L).
 * When none of a segment was kept its file is copied whole, its own header included, damaged
 * or not. A name ending in .partial is a copy that a crash interrupted; it was never relied on.
 */
#ifndef SHMWAL_FORMAT_H
#define SHMWAL_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shmwal formats are little-endian; this target is not"
#endif

#define SHMWAL_ALIGN 8u
/* 64-bit arithmetic: a 32-bit length near UINT32_MAX must not wrap to 0. */
#define SHMWAL_ALIGN_UP(x) (((uint64_t)(x) + (SHMWAL_ALIGN - 1)) & ~(uint64_t)(SHMWAL_ALIGN - 1))

#define SHMWAL_FRAME_HDR 32u
#define SHMWAL_FRAME_MAGIC 0xa5u

enum shmwal_frame_state {
	SHMWAL_FRAME_CLAIMED = 1,
	SHMWAL_FRAME_COMMITTED = 2,
	SHMWAL_FRAME_ABORTED = 3,
	SHMWAL_FRAME_PAD = 4,
};

#define SHMWAL_SLOT_NONE 0xffffu

struct shmwal_frame {
	uint64_t word;
	uint32_t crc;
	uint16_t type;
	uint16_t key_len;
	uint64_t lsn;
	uint64_t timestamp_ns;
};

static inline uint64_t shmwal_word_make(uint32_t len, uint32_t slot, unsigned state)
{
	return (uint64_t)len | ((uint64_t)(slot & 0xffffu) << 32) | ((uint64_t)state << 48) |
	       ((uint64_t)SHMWAL_FRAME_MAGIC << 56);
}
static inline uint32_t shmwal_word_len(uint64_t w) { return (uint32_t)w; }
static inline uint32_t shmwal_word_slot(uint64_t w) { return (uint32_t)(w >> 32) & 0xffffu; }
static inline unsigned shmwal_word_state(uint64_t w) { return (unsigned)(w >> 48) & 0xffu; }
static inline int shmwal_word_magic_ok(uint64_t w) { return (w >> 56) == SHMWAL_FRAME_MAGIC; }

/* The checksum of a frame whose header fields and body are filled in (word holds len). */
uint32_t shmwal_frame_crc(const struct shmwal_frame *f, uint32_t len);

/* Result of shmwal_frame_check(). */
enum shmwal_frame_verdict {
	SHMWAL_FRAME_OK = 0,	 /* a valid record or pad */
	SHMWAL_FRAME_SHORT,	 /* fewer than 32 bytes, or the frame runs past `avail` */
	SHMWAL_FRAME_ZERO,	 /* the word is zero: nothing was ever written here */
	SHMWAL_FRAME_BAD_WORD,	 /* wrong magic or state, or a length out of bounds */
	SHMWAL_FRAME_BAD_LSN,	 /* the frame's own LSN is not its position */
	SHMWAL_FRAME_BAD_CRC,	 /* checksum mismatch */
};

/*
 * Checks the frame at `f` that should have LSN `lsn`, with `avail` readable bytes from f, and
 * frames at most `max_frame` bytes long. Never reads outside [f, f + avail).
 */
enum shmwal_frame_verdict shmwal_frame_check(const void *f, uint64_t avail, uint64_t lsn,
					     uint64_t max_frame);

/* A sentence for a verdict. */
const char *shmwal_frame_verdict_str(enum shmwal_frame_verdict v);

/* ---- segment files ---------------------------------------------------------------------- */

#define SHMWAL_SEG_MAGIC "SHMWSEG1"
#define SHMWAL_SEG_VERSION 1u
#define SHMWAL_SEG_HDR 64u

struct shmwal_segment_header {
	char magic[8];
	uint32_t version;
	uint32_t partition;
	uint64_t first_lsn;
	uint64_t instance;
	uint64_t created_ns;
	uint32_t header_bytes;
	uint8_t reserved[16];
	uint32_t crc;
};

/* The fixed size of a pmem-backend segment file: the header, segment_bytes and one largest
 * frame (max_frame = SHMWAL_ALIGN_UP(32 + max_key + max_value)), rounded up to 4 KiB. */
static inline uint64_t shmwal_pmem_segment_size(uint64_t segment_bytes, uint64_t max_frame)
{
	return (SHMWAL_SEG_HDR + segment_bytes + max_frame + 4095) & ~(uint64_t)4095;
}

/* Fills a segment header, checksum included. */
void shmwal_segment_header_init(struct shmwal_segment_header *h, uint32_t part,
				uint64_t first_lsn, uint64_t instance, uint64_t created_ns);

/* Checks a segment header read from disk: 0, or -EBADMSG with the reason in *why. */
int shmwal_segment_header_check(const struct shmwal_segment_header *h, const char **why);

/* "LLLLLLLLLLLLLLLL.seg" for a first LSN; buf must hold 21 bytes. */
void shmwal_segment_name(char *buf, uint64_t first_lsn);

/* Parses a segment file name: 0 and *first_lsn, or -EINVAL if it is not one. */
int shmwal_segment_name_parse(const char *name, uint64_t *first_lsn);

#ifdef __cplusplus
}
#endif
#endif /* SHMWAL_FORMAT_H */
