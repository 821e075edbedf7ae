#include "rc_mpr.h"

#include <string.h>

static inline uint16_t be16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static inline uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* Reads a length-prefixed payload (str, bin) of len bytes at p. */
static inline bool take_bytes(struct rc_mpr *r, const uint8_t *p, uint32_t len,
                              struct rc_mp_item *it)
{
    if ((size_t)(r->end - p) < len)
        return false;
    it->v.s.ptr = (const char *)p;
    it->v.s.len = len;
    r->p = p + len;
    return true;
}

static inline bool take_ext(struct rc_mpr *r, const uint8_t *p, uint32_t len, struct rc_mp_item *it)
{
    if (r->end - p < 1)
        return false;
    it->type = RC_MP_EXT;
    it->ext_type = (int8_t)p[0];
    return take_bytes(r, p + 1, len, it);
}

bool rc_mpr_next_any(struct rc_mpr *r, struct rc_mp_item *it)
{
    const uint8_t *p = r->p;
    size_t left = (size_t)(r->end - p);
    if (left == 0)
        return false;
    uint8_t c = *p++;
    left--;
    it->start = r->p;
    if (c <= 0x7f) {
        it->type = RC_MP_UINT;
        it->v.u = c;
        r->p = p;
        return true;
    }
    if (c >= 0xe0) {
        it->type = RC_MP_INT;
        it->v.i = (int8_t)c;
        r->p = p;
        return true;
    }
    if (c <= 0x8f) {
        it->type = RC_MP_MAP;
        it->v.n = c & 0x0f;
        r->p = p;
        return true;
    }
    if (c <= 0x9f) {
        it->type = RC_MP_ARRAY;
        it->v.n = c & 0x0f;
        r->p = p;
        return true;
    }
    if (c <= 0xbf) {
        it->type = RC_MP_STR;
        return take_bytes(r, p, c & 0x1f, it);
    }
    /* Fixed-size headers: check the bytes that follow the type byte once. */
    static const uint8_t extra[32] = {
        /* c0 */ 0, 0, 0, 0, 1, 2, 4, 1,
        /* c8 */ 2, 4, 4, 8, 1, 2, 4, 8,
        /* d0 */ 1, 2, 4, 8, 1, 1, 1, 1,
        /* d8 */ 1, 1, 2, 4, 2, 4, 2, 4,
    };
    if (left < extra[c - 0xc0])
        return false;
    switch (c) {
    case 0xc0:
        it->type = RC_MP_NIL;
        r->p = p;
        return true;
    case 0xc2:
    case 0xc3:
        it->type = RC_MP_BOOL;
        it->v.b = c == 0xc3;
        r->p = p;
        return true;
    case 0xc4:
        it->type = RC_MP_BIN;
        return take_bytes(r, p + 1, p[0], it);
    case 0xc5:
        it->type = RC_MP_BIN;
        return take_bytes(r, p + 2, be16(p), it);
    case 0xc6:
        it->type = RC_MP_BIN;
        return take_bytes(r, p + 4, be32(p), it);
    case 0xc7:
        return take_ext(r, p + 1, p[0], it);
    case 0xc8:
        return take_ext(r, p + 2, be16(p), it);
    case 0xc9:
        return take_ext(r, p + 4, be32(p), it);
    case 0xca: {
        uint32_t u = be32(p);
        float f;
        memcpy(&f, &u, 4);
        it->type = RC_MP_FLOAT;
        it->v.f = f;
        r->p = p + 4;
        return true;
    }
    case 0xcb: {
        uint64_t u = be64(p);
        double d;
        memcpy(&d, &u, 8);
        it->type = RC_MP_FLOAT;
        it->v.f = d;
        r->p = p + 8;
        return true;
    }
    case 0xcc:
        it->type = RC_MP_UINT;
        it->v.u = p[0];
        r->p = p + 1;
        return true;
    case 0xcd:
        it->type = RC_MP_UINT;
        it->v.u = be16(p);
        r->p = p + 2;
        return true;
    case 0xce:
        it->type = RC_MP_UINT;
        it->v.u = be32(p);
        r->p = p + 4;
        return true;
    case 0xcf:
        it->type = RC_MP_UINT;
        it->v.u = be64(p);
        r->p = p + 8;
        return true;
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        int64_t i;
        if (c == 0xd0) {
            i = (int8_t)p[0];
            r->p = p + 1;
        } else if (c == 0xd1) {
            i = (int16_t)be16(p);
            r->p = p + 2;
        } else if (c == 0xd2) {
            i = (int32_t)be32(p);
            r->p = p + 4;
        } else {
            i = (int64_t)be64(p);
            r->p = p + 8;
        }
        /* A signed encoding of a non-negative value is the same integer as
         * its unsigned encoding: report the value, not the encoding. */
        if (i >= 0) {
            it->type = RC_MP_UINT;
            it->v.u = (uint64_t)i;
        } else {
            it->type = RC_MP_INT;
            it->v.i = i;
        }
        return true;
    }
    case 0xd4:
        return take_ext(r, p, 1, it);
    case 0xd5:
        return take_ext(r, p, 2, it);
    case 0xd6:
        return take_ext(r, p, 4, it);
    case 0xd7:
        return take_ext(r, p, 8, it);
    case 0xd8:
        return take_ext(r, p, 16, it);
    case 0xd9:
        it->type = RC_MP_STR;
        return take_bytes(r, p + 1, p[0], it);
    case 0xda:
        it->type = RC_MP_STR;
        return take_bytes(r, p + 2, be16(p), it);
    case 0xdb:
        it->type = RC_MP_STR;
        return take_bytes(r, p + 4, be32(p), it);
    case 0xdc:
        it->type = RC_MP_ARRAY;
        it->v.n = be16(p);
        r->p = p + 2;
        return true;
    case 0xdd:
        it->type = RC_MP_ARRAY;
        it->v.n = be32(p);
        r->p = p + 4;
        return true;
    case 0xde:
        it->type = RC_MP_MAP;
        it->v.n = be16(p);
        r->p = p + 2;
        return true;
    case 0xdf:
        it->type = RC_MP_MAP;
        it->v.n = be32(p);
        r->p = p + 4;
        return true;
    default: /* 0xc1: never used */
        return false;
    }
}

static inline uint64_t child_count(const struct rc_mp_item *it)
{
    if (it->type == RC_MP_ARRAY)
        return it->v.n;
    if (it->type == RC_MP_MAP)
        return (uint64_t)it->v.n * 2;
    return 0;
}

/*
 * Steps over the value at *pp without decoding it: returns the number of
 * values it contains (elements, or 2 per map pair; 0 for a scalar), or -1
 * when it is truncated or invalid.  The skips below are built on it.
 */
static inline int64_t step(const uint8_t **pp, const uint8_t *end)
{
    const uint8_t *p = *pp;
    size_t left = (size_t)(end - p);
    uint8_t c = *p;
    size_t n;
    if (c <= 0x7f || c >= 0xe0) {
        *pp = p + 1;
        return 0;
    }
    if (c >= 0xa0 && c <= 0xbf) {
        n = 1 + (size_t)(c & 0x1f);
        goto take;
    }
    if (c <= 0x8f) {
        *pp = p + 1;
        return 2 * (int64_t)(c & 0x0f);
    }
    if (c <= 0x9f) {
        *pp = p + 1;
        return c & 0x0f;
    }
    switch (c) {
    case 0xc0:
    case 0xc2:
    case 0xc3:
        n = 1;
        goto take;
    case 0xcc:
    case 0xd0:
        n = 2;
        goto take;
    case 0xcd:
    case 0xd1:
    case 0xd4:
        n = 3;
        goto take;
    case 0xd5:
        n = 4;
        goto take;
    case 0xca:
    case 0xce:
    case 0xd2:
        n = 5;
        goto take;
    case 0xd6:
        n = 6;
        goto take;
    case 0xcb:
    case 0xcf:
    case 0xd3:
        n = 9;
        goto take;
    case 0xd7:
        n = 10;
        goto take;
    case 0xd8:
        n = 18;
        goto take;
    case 0xc4: /* bin8 */
    case 0xd9: /* str8 */
        if (left < 2)
            return -1;
        n = 2 + (size_t)p[1];
        goto take;
    case 0xc5:
    case 0xda:
        if (left < 3)
            return -1;
        n = 3 + (size_t)be16(p + 1);
        goto take;
    case 0xc6:
    case 0xdb:
        if (left < 5)
            return -1;
        n = 5 + (size_t)be32(p + 1);
        goto take;
    case 0xc7: /* ext8: type byte after the length */
        if (left < 2)
            return -1;
        n = 3 + (size_t)p[1];
        goto take;
    case 0xc8:
        if (left < 3)
            return -1;
        n = 4 + (size_t)be16(p + 1);
        goto take;
    case 0xc9:
        if (left < 5)
            return -1;
        n = 6 + (size_t)be32(p + 1);
        goto take;
    case 0xdc:
        if (left < 3)
            return -1;
        *pp = p + 3;
        return be16(p + 1);
    case 0xdd:
        if (left < 5)
            return -1;
        *pp = p + 5;
        return be32(p + 1);
    case 0xde:
        if (left < 3)
            return -1;
        *pp = p + 3;
        return 2 * (int64_t)be16(p + 1);
    case 0xdf:
        if (left < 5)
            return -1;
        *pp = p + 5;
        return 2 * (int64_t)be32(p + 1);
    default: /* 0xc1 */
        return -1;
    }
take:
    if (left < n)
        return -1;
    *pp = p + n;
    return 0;
}

/* Skips `owed` values.  Every value takes at least one byte, so more owed
 * values than bytes left is a truncation, found without reading on. */
static bool skip_owed(struct rc_mpr *r, uint64_t owed)
{
    const uint8_t *p = r->p;
    const uint8_t *end = r->end;
    while (owed > 0) {
        if (owed > (size_t)(end - p))
            return false;
        int64_t k = step(&p, end);
        if (k < 0)
            return false;
        owed = owed - 1 + (uint64_t)k;
    }
    r->p = p;
    return true;
}

bool rc_mpr_skip(struct rc_mpr *r)
{
    return skip_owed(r, 1);
}

bool rc_mpr_skip_rest(struct rc_mpr *r, const struct rc_mp_item *it)
{
    return skip_owed(r, child_count(it));
}

/* Skips count values inside a container at depth 1. */
static enum rc_mpr_skip_result skip_nested(struct rc_mpr *r, uint64_t count, uint32_t max_depth)
{
    uint64_t owed[RC_MPR_DEPTH_MAX + 1];
    uint32_t d = 1;
    const uint8_t *p = r->p;
    const uint8_t *end = r->end;
    owed[1] = count;
    for (;;) {
        while (owed[d] == 0) {
            if (d == 1) {
                r->p = p;
                return RC_MPR_OK;
            }
            d--;
        }
        if (owed[d] > (size_t)(end - p))
            return RC_MPR_BAD;
        owed[d]--;
        uint8_t c = *p;
        bool container = (c >= 0x80 && c <= 0x9f) || (c >= 0xdc && c <= 0xdf);
        int64_t k = step(&p, end);
        if (k < 0)
            return RC_MPR_BAD;
        if (container) {
            if (d + 1 > max_depth)
                return RC_MPR_DEEP;
            if (k > 0)
                owed[++d] = (uint64_t)k;
        }
    }
}

enum rc_mpr_skip_result rc_mpr_skip_children(struct rc_mpr *r, const struct rc_mp_item *it,
                                             uint32_t max_depth)
{
    if (max_depth > RC_MPR_DEPTH_MAX)
        max_depth = RC_MPR_DEPTH_MAX;
    if (max_depth < 1)
        return RC_MPR_DEEP;
    uint64_t n = child_count(it);
    if (n == 0)
        return RC_MPR_OK;
    return skip_nested(r, n, max_depth);
}

enum rc_mpr_skip_result rc_mpr_skip_depth(struct rc_mpr *r, uint32_t max_depth)
{
    struct rc_mp_item it;
    if (!rc_mpr_next(r, &it))
        return RC_MPR_BAD;
    if (it.type != RC_MP_ARRAY && it.type != RC_MP_MAP)
        return RC_MPR_OK;
    return rc_mpr_skip_children(r, &it, max_depth);
}
