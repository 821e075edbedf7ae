/*
 * rc_mpr: a small validating msgpack reader over a byte range.
 *
 * The decoders of rc_proto are built on it, and the broker and the client
 * may use it to read acks or since maps.  It never allocates and never
 * recurses: skipping a value keeps a count of the values still owed (no
 * stack), and depth-limited skipping keeps one counter per open container in
 * a fixed array of RC_MPR_DEPTH_MAX entries.
 *
 * Why not msgpack-c here: runcast must forward `data`, `tool`, `item` and
 * `error` byte for byte, so it needs the exact byte range of every value,
 * which msgpack_object does not keep; msgpack-c also builds an object tree
 * per message and caps nesting at a compile-time 32 levels (which is less
 * than an event's own data limit plus its envelope).  docs/PROTOCOL.md gives
 * the measured numbers; tests and the fuzzers cross-check this reader
 * against msgpack-c.
 */
#ifndef RC_MPR_H
#define RC_MPR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Deepest nesting a depth-limited skip can track (limits are clamped). */
#define RC_MPR_DEPTH_MAX 256

enum rc_mp_type {
    RC_MP_NIL,
    RC_MP_BOOL,
    RC_MP_UINT,  /* any non-negative integer, whatever its encoding */
    RC_MP_INT,   /* a negative integer */
    RC_MP_FLOAT, /* float32 or float64 */
    RC_MP_STR,
    RC_MP_BIN,
    RC_MP_ARRAY,
    RC_MP_MAP,
    RC_MP_EXT,
};

/* One value header.  For containers only the header is consumed. */
struct rc_mp_item {
    enum rc_mp_type type;
    const uint8_t *start; /* first byte of the value's encoding */
    union {
        bool b;
        uint64_t u;
        int64_t i;
        double f;
        uint32_t n; /* ARRAY: elements, MAP: pairs */
        struct {
            const char *ptr;
            uint32_t len;
        } s; /* STR, BIN, EXT (payload) */
    } v;
    int8_t ext_type;
};

struct rc_mpr {
    const uint8_t *p;
    const uint8_t *end;
};

static inline void rc_mpr_init(struct rc_mpr *r, const void *buf, size_t len)
{
    r->p = buf;
    r->end = r->p + len;
}

static inline size_t rc_mpr_left(const struct rc_mpr *r)
{
    return (size_t)(r->end - r->p);
}

/* The big-endian 64-bit integer at p: one load and a byte swap (the
 * compiler does not always see a shift-or loop as one). */
static inline uint64_t rc_mpr_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#elif !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_BIG_ENDIAN__
    v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
#endif
    return v;
}

/* The out-of-line part of rc_mpr_next (every format). */
bool rc_mpr_next_any(struct rc_mpr *r, struct rc_mp_item *it);

/* Reads one value header (a whole scalar, or a container's header).
 * Returns false on truncation or the never-used byte 0xc1; r is then
 * unspecified.  The fix formats (small ints, short strings, small maps and
 * arrays: most of an event) are read inline. */
static inline bool rc_mpr_next(struct rc_mpr *r, struct rc_mp_item *it)
{
    if (r->p < r->end) {
        const uint8_t *p = r->p;
        uint8_t c = *p;
        if (c <= 0x7f) {
            it->type = RC_MP_UINT;
            it->start = p;
            it->v.u = c;
            r->p = p + 1;
            return true;
        }
        if ((c & 0xe0) == 0xa0) {
            uint32_t n = c & 0x1f;
            if ((size_t)(r->end - p) - 1 < n)
                return false;
            it->type = RC_MP_STR;
            it->start = p;
            it->v.s.ptr = (const char *)p + 1;
            it->v.s.len = n;
            r->p = p + 1 + n;
            return true;
        }
        if ((c & 0xe0) == 0x80) {
            it->type = c < 0x90 ? RC_MP_MAP : RC_MP_ARRAY;
            it->start = p;
            it->v.n = c & 0x0f;
            r->p = p + 1;
            return true;
        }
        /* str8 (text chunks of 32-255 bytes) and uint64 (ms timestamps)
         * are in nearly every event: inline too */
        size_t left = (size_t)(r->end - p);
        if (c == 0xd9 && left >= 2) {
            uint32_t n = p[1];
            if (left - 2 < n)
                return false;
            it->type = RC_MP_STR;
            it->start = p;
            it->v.s.ptr = (const char *)p + 2;
            it->v.s.len = n;
            r->p = p + 2 + n;
            return true;
        }
        if (c == 0xcf && left >= 9) {
            it->type = RC_MP_UINT;
            it->start = p;
            it->v.u = rc_mpr_be64(p + 1);
            r->p = p + 9;
            return true;
        }
    }
    return rc_mpr_next_any(r, it);
}

/* Skips one whole value, however deep.  Returns false when it is truncated
 * or invalid. */
bool rc_mpr_skip(struct rc_mpr *r);

/* Skips the elements (or pairs) of a container whose header it was just
 * read; does nothing for a scalar.  Returns false as rc_mpr_skip. */
bool rc_mpr_skip_rest(struct rc_mpr *r, const struct rc_mp_item *it);

enum rc_mpr_skip_result { RC_MPR_OK, RC_MPR_BAD, RC_MPR_DEEP };

/* Skips one whole value whose containers nest at most max_depth deep (a
 * scalar is depth 0, [] and {} are 1, [[1]] is 2).  max_depth is clamped to
 * RC_MPR_DEPTH_MAX.  Returns RC_MPR_DEEP when deeper, RC_MPR_BAD when
 * truncated or invalid. */
enum rc_mpr_skip_result rc_mpr_skip_depth(struct rc_mpr *r, uint32_t max_depth);

/* Skips what remains after a container header of it (its n elements or n
 * pairs), depth-limited as above with the container itself at depth 1. */
enum rc_mpr_skip_result rc_mpr_skip_children(struct rc_mpr *r, const struct rc_mp_item *it,
                                             uint32_t max_depth);

#endif
