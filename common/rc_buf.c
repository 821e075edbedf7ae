#include "rc_buf.h"
#include "rc_alloc.h"
#include "rc_error.h"

#include <string.h>

void rc_buf_init(struct rc_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void rc_buf_fini(struct rc_buf *b)
{
    rc_free(b->data);
    rc_buf_init(b);
}

int rc_buf_reserve(struct rc_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return RC_OK;
    size_t need = b->len + extra;
    if (need < b->len)
        return RC_ENOMEM;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *p = rc_realloc(b->data, cap);
    if (p == NULL)
        return RC_ENOMEM;
    b->data = p;
    b->cap = cap;
    return RC_OK;
}

int rc_buf_append(struct rc_buf *b, const void *p, size_t n)
{
    int rv = rc_buf_reserve(b, n);
    if (rv != RC_OK)
        return rv;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return RC_OK;
}
