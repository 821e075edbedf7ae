#include "rc_buf.h"
#include "rc_alloc.h"
#include "rc_error.h"

#include <string.h>

void rc_buf_init(struct rc_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->borrowed = false;
}

void rc_buf_init_on(struct rc_buf *b, void *mem, size_t cap)
{
    b->data = mem;
    b->len = 0;
    b->cap = cap;
    b->borrowed = true;
}

void rc_buf_fini(struct rc_buf *b)
{
    if (!b->borrowed)
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
    uint8_t *p;
    if (b->borrowed) {
        /* the caller's storage cannot be reallocated: move to the heap */
        p = rc_malloc(cap);
        if (p != NULL && b->len > 0)
            memcpy(p, b->data, b->len);
    } else {
        p = rc_realloc(b->data, cap);
    }
    if (p == NULL)
        return RC_ENOMEM;
    b->data = p;
    b->cap = cap;
    b->borrowed = false;
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
