/*
 * rc_blob: an immutable, reference-counted byte buffer.
 *
 * The fan-out encodes each event once into a blob and every subscriber's
 * queue holds a reference to the same bytes; the last release frees them.
 */
#ifndef RC_BLOB_H
#define RC_BLOB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "rc_alloc.h"

struct rc_blob {
    atomic_uint refs; /* atomic: see rc_blob_hold/rc_blob_release */
    uint32_t len;
    uint8_t data[];
};

/* A blob of len bytes (uninitialised) holding one reference, or NULL. */
struct rc_blob *rc_blob_new(size_t len);
/* A blob holding a copy of len bytes at p, or NULL. */
struct rc_blob *rc_blob_copy(const void *p, size_t len);
/* Takes one more reference; returns b.  Inline, like rc_blob_release: both
 * are on the event hot path (history, fan-out) several times per event. */
static inline struct rc_blob *rc_blob_hold(struct rc_blob *b)
{
    /* relaxed: the caller already holds a reference, so the blob cannot be
     * freed concurrently and no data is published by the increment. */
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

/* Drops one reference, freeing b on the last; NULL does nothing. */
static inline void rc_blob_release(struct rc_blob *b)
{
    if (b == NULL)
        return;
    /* A count of 1 seen by this holder means it holds the only reference,
     * and no other thread can take one (a hold needs a reference): free
     * without the locked decrement, which on x86 is a full barrier that
     * waits for this thread's pending stores (history eviction of an event
     * no subscriber holds is the common case).  acquire: pairs with the
     * release half of every other holder's decrement, so their reads of
     * data happen before the free.  Otherwise acq_rel: the release half
     * orders this holder's reads of data before the decrement; the acquire
     * half on the last decrement makes every other holder's reads happen
     * before the free. */
    if (atomic_load_explicit(&b->refs, memory_order_acquire) == 1 ||
        atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        rc_free(b);
}

/* Frees b, of len data bytes, which the caller knows holds its only
 * reference (nobody else was ever given one), without reading it: a blob
 * evicted long after it was written is rarely in cache, and the allocator
 * needs only its size. */
static inline void rc_blob_free_sole(struct rc_blob *b, uint32_t len)
{
#ifndef NDEBUG
    /* relaxed: a check of the caller's claim, in debug builds */
    if (atomic_load_explicit(&b->refs, memory_order_relaxed) != 1)
        __builtin_trap();
    if (b->len != len)
        __builtin_trap();
#endif
    rc_free_sized(b, sizeof(*b) + len);
}

#endif
