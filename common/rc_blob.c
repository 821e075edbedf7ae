#include "rc_blob.h"
#include "rc_alloc.h"

#include <string.h>

struct rc_blob *rc_blob_new(size_t len)
{
    if (len > UINT32_MAX)
        return NULL;
    struct rc_blob *b = rc_malloc(sizeof(*b) + len);
    if (b == NULL)
        return NULL;
    atomic_init(&b->refs, 1);
    b->len = (uint32_t)len;
    return b;
}

struct rc_blob *rc_blob_copy(const void *p, size_t len)
{
    struct rc_blob *b = rc_blob_new(len);
    if (b != NULL && len > 0)
        memcpy(b->data, p, len);
    return b;
}
