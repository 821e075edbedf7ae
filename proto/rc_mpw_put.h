/*
 * rc_mpw_put: unchecked msgpack writers into memory already reserved
 * (internal to proto).  Each writes one encoding at p and returns the byte
 * after it.  rc_mpw_* wrap them with a reservation per call; the encoders of
 * hot messages reserve once for the whole message and use them directly.
 * Bounds: a header or an integer takes at most RC_MPW_PUT_MAX bytes.
 */
#ifndef RC_MPW_PUT_H
#define RC_MPW_PUT_H

#include <stdint.h>
#include <string.h>

#define RC_MPW_PUT_MAX 9

static inline uint8_t *rc_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static inline uint8_t *rc_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

static inline uint8_t *rc_put64(uint8_t *p, uint64_t v)
{
    rc_put32(p, (uint32_t)(v >> 32));
    return rc_put32(p + 4, (uint32_t)v);
}

/* The 16 or 32-bit form of a header (c16 or c32), out of line: inlined,
 * the compiler computes its byte swaps before it branches, on every call. */
static __attribute__((noinline, cold, unused)) uint8_t *rc_put_header_wide(uint8_t *p, uint32_t n,
                                                                           uint8_t c16, uint8_t c32)
{
    if (n <= 0xffff) {
        *p = c16;
        return rc_put16(p + 1, (uint16_t)n);
    }
    *p = c32;
    return rc_put32(p + 1, n);
}

/* A header: fix form below fixmax, else the 8 (if c8), 16 or 32-bit form. */
static inline uint8_t *rc_put_header(uint8_t *p, uint32_t n, uint8_t fixbase, uint32_t fixmax,
                                     uint8_t c8, uint8_t c16, uint8_t c32)
{
    if (n < fixmax) {
        *p = (uint8_t)(fixbase | n);
        return p + 1;
    }
    if (c8 && n <= 0xff) {
        p[0] = c8;
        p[1] = (uint8_t)n;
        return p + 2;
    }
    return rc_put_header_wide(p, n, c16, c32);
}

static inline uint8_t *rc_put_map(uint8_t *p, uint32_t n)
{
    return rc_put_header(p, n, 0x80, 16, 0, 0xde, 0xdf);
}

static inline uint8_t *rc_put_array(uint8_t *p, uint32_t n)
{
    return rc_put_header(p, n, 0x90, 16, 0, 0xdc, 0xdd);
}

/*
 * Copies n bytes.  Short runs (ids, type and phase names, small raw ids)
 * are copied inline with two overlapping loads and stores that stay within
 * [s, s+n) and [p, p+n): a call to memcpy costs more than such a copy.
 * Source and destination never overlap here (the source is an input
 * buffer or a literal, the destination the output being built).
 */
static inline uint8_t *rc_put_raw(uint8_t *p, const void *s, size_t n)
{
    const uint8_t *q = s;
    if (n >= 8 && n <= 16) {
        uint64_t a, b;
        memcpy(&a, q, 8);
        memcpy(&b, q + n - 8, 8);
        memcpy(p, &a, 8);
        memcpy(p + n - 8, &b, 8);
    } else if (n >= 4 && n < 8) {
        uint32_t a, b;
        memcpy(&a, q, 4);
        memcpy(&b, q + n - 4, 4);
        memcpy(p, &a, 4);
        memcpy(p + n - 4, &b, 4);
    } else if (n > 0 && n < 4) {
        uint8_t a = q[0], b = q[n / 2], c = q[n - 1];
        p[0] = a;
        p[n / 2] = b;
        p[n - 1] = c;
    } else if (n > 16) {
        memcpy(p, s, n);
    }
    return p + n;
}

static inline uint8_t *rc_put_str(uint8_t *p, const char *s, uint32_t n)
{
    p = rc_put_header(p, n, 0xa0, 32, 0xd9, 0xda, 0xdb);
    return rc_put_raw(p, s, n);
}

static inline uint8_t *rc_put_bin(uint8_t *p, const void *s, uint32_t n)
{
    p = rc_put_header(p, n, 0, 0, 0xc4, 0xc5, 0xc6);
    return rc_put_raw(p, s, n);
}

/* uint32 (0xce), out of line as above. */
static __attribute__((noinline, cold, unused)) uint8_t *rc_put_uint32(uint8_t *p, uint32_t v)
{
    *p = 0xce;
    return rc_put32(p + 1, v);
}

static inline uint8_t *rc_put_uint(uint8_t *p, uint64_t v)
{
    /* the widest first: ms timestamps (every `ev` has one or two) */
    if (v > 0xffffffffu) {
        *p = 0xcf;
        return rc_put64(p + 1, v);
    }
    if (v <= 0x7f) {
        *p = (uint8_t)v;
        return p + 1;
    }
    if (v <= 0xff) {
        p[0] = 0xcc;
        p[1] = (uint8_t)v;
        return p + 2;
    }
    if (v <= 0xffff) {
        *p = 0xcd;
        return rc_put16(p + 1, (uint16_t)v);
    }
    return rc_put_uint32(p, (uint32_t)v);
}

static inline uint8_t *rc_put_int(uint8_t *p, int64_t v)
{
    if (v >= 0)
        return rc_put_uint(p, (uint64_t)v);
    if (v >= -32) {
        *p = (uint8_t)(int8_t)v;
        return p + 1;
    }
    if (v >= INT8_MIN) {
        p[0] = 0xd0;
        p[1] = (uint8_t)(int8_t)v;
        return p + 2;
    }
    if (v >= INT16_MIN) {
        *p = 0xd1;
        return rc_put16(p + 1, (uint16_t)(int16_t)v);
    }
    if (v >= INT32_MIN) {
        *p = 0xd2;
        return rc_put32(p + 1, (uint32_t)(int32_t)v);
    }
    *p = 0xd3;
    return rc_put64(p + 1, (uint64_t)v);
}

/* A key or value that is a string literal already msgpack-encoded:
 * RC_PUT_LIT(p, "\xa3run"). */
#define RC_PUT_LIT(p, lit) rc_put_raw((p), (lit), sizeof(lit) - 1)

#endif
