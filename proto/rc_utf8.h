/*
 * rc_utf8: the ASCII fast path of UTF-8 validation (internal to proto).
 *
 * Nearly every string an event carries (type, phase, text of English-ish
 * model output, keys) is pure ASCII, and pure ASCII is valid UTF-8.  This
 * check ORs the string together a machine word at a time and looks at the
 * high bits once: no per-byte branch.  It never reads outside [p, p+len):
 * the last word is loaded so that it ends exactly at the string's end
 * (overlapping bytes already seen), and strings shorter than a word are
 * read as two overlapping 4-byte halves or byte by byte.  A string that is
 * not pure ASCII goes to the full validator, rc_proto_valid_utf8.
 */
#ifndef RC_UTF8_H
#define RC_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define RC_UTF8_HI64 0x8080808080808080ull

/* Whether p[0..len) holds only bytes below 0x80. */
static inline bool rc_utf8_is_ascii(const char *p, size_t len)
{
    const uint8_t *s = (const uint8_t *)p;
    if (len >= 8) {
        uint64_t acc = 0, w;
        size_t i = 0;
        /* 32 bytes per round, then stop early on the first non-ASCII
         * round: a long non-ASCII text goes to the full validator soon. */
        for (; i + 32 <= len; i += 32) {
            uint64_t a, b, c, d;
            memcpy(&a, s + i, 8);
            memcpy(&b, s + i + 8, 8);
            memcpy(&c, s + i + 16, 8);
            memcpy(&d, s + i + 24, 8);
            if (((a | b | c | d) & RC_UTF8_HI64) != 0)
                return false;
        }
        for (; i + 8 <= len; i += 8) {
            memcpy(&w, s + i, 8);
            acc |= w;
        }
        memcpy(&w, s + len - 8, 8); /* the tail, overlapping: ends at s+len */
        acc |= w;
        return (acc & RC_UTF8_HI64) == 0;
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
