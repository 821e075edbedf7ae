/*
 * rc_utf8: the ASCII fast path of UTF-8 validation (internal to proto).
 *
 * Nearly every string an event carries (type, phase, text of English-ish
 * model output, keys) is pure ASCII, and pure ASCII is valid UTF-8.  This
 * check ORs the string together 16 bytes at a time and looks at the high
 * bits once per 64 bytes: no per-byte branch.  It never reads outside
 * [p, p+len): the last 16 bytes are loaded so that they end exactly at the
 * string's end (overlapping bytes already seen), and shorter strings are
 * read as two overlapping 8- or 4-byte halves, or byte by byte.  A string that is
 * not pure ASCII goes to the full validator, rc_proto_valid_utf8.
 */
#ifndef RC_UTF8_H
#define RC_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define RC_UTF8_HI64 0x8080808080808080ull

/* 16 bytes as two words: GCC and clang vector extensions, SSE2 on x86-64
 * and NEON on arm64 (two scalar words elsewhere); loaded unaligned. */
typedef uint64_t rc_u64x2 __attribute__((vector_size(16)));

static inline rc_u64x2 rc_load16(const uint8_t *p)
{
    rc_u64x2 v;
    memcpy(&v, p, 16);
    return v;
}

static inline bool rc_u64x2_ascii(rc_u64x2 v)
{
    return ((v[0] | v[1]) & RC_UTF8_HI64) == 0;
}

/* Whether p[0..len) holds only bytes below 0x80. */
static inline bool rc_utf8_is_ascii(const char *p, size_t len)
{
    const uint8_t *s = (const uint8_t *)p;
    if (len >= 16) {
        size_t i = 0;
        /* 64 bytes per round, stopping at the first non-ASCII round: a
         * long non-ASCII text goes to the full validator soon. */
        for (; i + 64 <= len; i += 64) {
            rc_u64x2 v = rc_load16(s + i) | rc_load16(s + i + 16) | rc_load16(s + i + 32) |
                         rc_load16(s + i + 48);
            if (!rc_u64x2_ascii(v))
                return false;
        }
        rc_u64x2 acc = rc_load16(s + len - 16); /* the tail, overlapping: ends at s+len */
        for (; i + 16 <= len; i += 16)
            acc |= rc_load16(s + i);
        return rc_u64x2_ascii(acc);
    }
    if (len >= 8) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + len - 8, 8);
        return ((a | b) & RC_UTF8_HI64) == 0;
    }
    if (len >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + len - 4, 4);
        return ((a | b) & 0x80808080u) == 0;
    }
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++)
        acc |= s[i];
    return acc < 0x80;
}

#endif
