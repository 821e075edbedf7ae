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

struct rc_blob {
    atomic_uint refs; /* atomic: see rc_blob_hold/rc_blob_release */
    uint32_t len;
    uint8_t data[];
};

/* A blob of len bytes (uninitialised) holding one reference, or NULL. */
struct rc_blob *rc_blob_new(size_t len);
/* A blob holding a copy of len bytes at p, or NULL. */
struct rc_blob *rc_blob_copy(const void *p, size_t len);
/* Takes one more reference; returns b. */
struct rc_blob *rc_blob_hold(struct rc_blob *b);
/* Drops one reference, freeing b on the last; NULL does nothing. */
void rc_blob_release(struct rc_blob *b);

#endif
