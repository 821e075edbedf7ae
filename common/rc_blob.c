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

struct rc_blob *rc_blob_hold(struct rc_blob *b)
{
    /* relaxed: the caller already holds a reference, so the blob cannot be
     * freed concurrently and no data is published by the increment. */
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void rc_blob_release(struct rc_blob *b)
{
    if (b == NULL)
        return;
    /* acq_rel: the release half orders this holder's reads of data before
     * the decrement; the acquire half on the last decrement makes every other
     * holder's reads happen before the free. */
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        rc_free(b);
}
