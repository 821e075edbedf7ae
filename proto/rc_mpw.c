/*
 * rc_mpw: the msgpack writer (big-endian encodings, always the smallest
 * form of each value, as the msgpack spec recommends): one reservation,
 * then the unchecked writer of rc_mpw_put.h.
 */
#include "rc_error.h"
#include "rc_mpw_put.h"
#include "rc_proto.h"

#include <string.h>

#define WRITE(b, extra, expr)                                                                      \
    do {                                                                                           \
        int rv_ = rc_buf_reserve((b), (extra));                                                    \
        if (rv_ != RC_OK)                                                                          \
            return rv_;                                                                            \
        uint8_t *p = (b)->data + (b)->len;                                                         \
        (b)->len = (size_t)((expr) - (b)->data);                                                   \
    } while (0)

int rc_mpw_map(struct rc_buf *b, uint32_t n)
{
    WRITE(b, 5, rc_put_map(p, n));
    return RC_OK;
}

int rc_mpw_array(struct rc_buf *b, uint32_t n)
{
    WRITE(b, 5, rc_put_array(p, n));
    return RC_OK;
}

int rc_mpw_str(struct rc_buf *b, const char *s, size_t len)
{
    if (len > UINT32_MAX)
        return RC_ETOOBIG;
    if (len > SIZE_MAX - 5)
        return RC_ENOMEM;
    WRITE(b, 5 + len, rc_put_str(p, s, (uint32_t)len));
    return RC_OK;
}

int rc_mpw_cstr(struct rc_buf *b, const char *s)
{
    return rc_mpw_str(b, s, strlen(s));
}

int rc_mpw_bin(struct rc_buf *b, const void *s, size_t len)
{
    if (len > UINT32_MAX)
        return RC_ETOOBIG;
    if (len > SIZE_MAX - 5)
        return RC_ENOMEM;
    WRITE(b, 5 + len, rc_put_bin(p, s, (uint32_t)len));
    return RC_OK;
}

int rc_mpw_uint(struct rc_buf *b, uint64_t v)
{
    WRITE(b, 9, rc_put_uint(p, v));
    return RC_OK;
}

int rc_mpw_int(struct rc_buf *b, int64_t v)
{
    WRITE(b, 9, rc_put_int(p, v));
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
    uint64_t u;
    memcpy(&u, &v, 8);
    WRITE(b, 9, (*p = 0xcb, rc_put64(p + 1, u)));
    return RC_OK;
}

int rc_mpw_raw(struct rc_buf *b, const void *s, size_t len)
{
    return rc_buf_append(b, s, len);
}
