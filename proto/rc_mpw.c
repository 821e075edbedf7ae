/*
 * rc_mpw: the msgpack writer (big-endian encodings, always the smallest
 * form of each value, as the msgpack spec recommends).
 */
#include "rc_proto.h"
#include "rc_error.h"

#include <string.h>

static inline void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

/* Writes a header: fix form when n < fixmax, else one of the three sized
 * forms c8/c16/c32 (c8 == 0 when the type has no 8-bit form). */
static int put_header(struct rc_buf *b, uint32_t n, uint8_t fixbase, uint32_t fixmax, uint8_t c8,
                      uint8_t c16, uint8_t c32, size_t payload)
{
    int rv = rc_buf_reserve(b, 5 + payload);
    if (rv != RC_OK)
        return rv;
    uint8_t *p = b->data + b->len;
    if (n < fixmax) {
        p[0] = (uint8_t)(fixbase | n);
        b->len += 1;
    } else if (c8 && n <= 0xff) {
        p[0] = c8;
        p[1] = (uint8_t)n;
        b->len += 2;
    } else if (n <= 0xffff) {
        p[0] = c16;
        put16(p + 1, (uint16_t)n);
        b->len += 3;
    } else {
        p[0] = c32;
        put32(p + 1, n);
        b->len += 5;
    }
    return RC_OK;
}

int rc_mpw_map(struct rc_buf *b, uint32_t n)
{
    return put_header(b, n, 0x80, 16, 0, 0xde, 0xdf, 0);
}

int rc_mpw_array(struct rc_buf *b, uint32_t n)
{
    return put_header(b, n, 0x90, 16, 0, 0xdc, 0xdd, 0);
}

int rc_mpw_str(struct rc_buf *b, const char *p, size_t len)
{
    if (len > UINT32_MAX)
        return RC_ETOOBIG;
    int rv = put_header(b, (uint32_t)len, 0xa0, 32, 0xd9, 0xda, 0xdb, len);
    if (rv != RC_OK)
        return rv;
    if (len > 0)
        memcpy(b->data + b->len, p, len);
    b->len += len;
    return RC_OK;
}

int rc_mpw_cstr(struct rc_buf *b, const char *s)
{
    return rc_mpw_str(b, s, strlen(s));
}

int rc_mpw_bin(struct rc_buf *b, const void *p, size_t len)
{
    if (len > UINT32_MAX)
        return RC_ETOOBIG;
    /* bin has no fix form: fixmax 0 */
    int rv = put_header(b, (uint32_t)len, 0, 0, 0xc4, 0xc5, 0xc6, len);
    if (rv != RC_OK)
        return rv;
    if (len > 0)
        memcpy(b->data + b->len, p, len);
    b->len += len;
    return RC_OK;
}

int rc_mpw_uint(struct rc_buf *b, uint64_t v)
{
    int rv = rc_buf_reserve(b, 9);
    if (rv != RC_OK)
        return rv;
    uint8_t *p = b->data + b->len;
    if (v <= 0x7f) {
        p[0] = (uint8_t)v;
        b->len += 1;
    } else if (v <= 0xff) {
        p[0] = 0xcc;
        p[1] = (uint8_t)v;
        b->len += 2;
    } else if (v <= 0xffff) {
        p[0] = 0xcd;
        put16(p + 1, (uint16_t)v);
        b->len += 3;
    } else if (v <= 0xffffffffu) {
        p[0] = 0xce;
        put32(p + 1, (uint32_t)v);
        b->len += 5;
    } else {
        p[0] = 0xcf;
        put64(p + 1, v);
        b->len += 9;
    }
    return RC_OK;
}

int rc_mpw_int(struct rc_buf *b, int64_t v)
{
    if (v >= 0)
        return rc_mpw_uint(b, (uint64_t)v);
    int rv = rc_buf_reserve(b, 9);
    if (rv != RC_OK)
        return rv;
    uint8_t *p = b->data + b->len;
    if (v >= -32) {
        p[0] = (uint8_t)(int8_t)v;
        b->len += 1;
    } else if (v >= INT8_MIN) {
        p[0] = 0xd0;
        p[1] = (uint8_t)(int8_t)v;
        b->len += 2;
    } else if (v >= INT16_MIN) {
        p[0] = 0xd1;
        put16(p + 1, (uint16_t)(int16_t)v);
        b->len += 3;
    } else if (v >= INT32_MIN) {
        p[0] = 0xd2;
        put32(p + 1, (uint32_t)(int32_t)v);
        b->len += 5;
    } else {
        p[0] = 0xd3;
        put64(p + 1, (uint64_t)v);
        b->len += 9;
    }
    return RC_OK;
}

int rc_mpw_bool(struct rc_buf *b, bool v)
{
    uint8_t c = v ? 0xc3 : 0xc2;
    return rc_buf_append(b, &c, 1);
}

int rc_mpw_nil(struct rc_buf *b)
{
    uint8_t c = 0xc0;
    return rc_buf_append(b, &c, 1);
}

int rc_mpw_double(struct rc_buf *b, double v)
{
    uint8_t tmp[9];
    uint64_t u;
    memcpy(&u, &v, 8);
    tmp[0] = 0xcb;
    put64(tmp + 1, u);
    return rc_buf_append(b, tmp, 9);
}

int rc_mpw_raw(struct rc_buf *b, const void *p, size_t len)
{
    return rc_buf_append(b, p, len);
}
