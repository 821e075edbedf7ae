/*
 * rc_buf: a growable byte buffer (encoders write into it).
 */
#ifndef RC_BUF_H
#define RC_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rc_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool borrowed; /* data is the caller's storage (rc_buf_init_on) */
};

void rc_buf_init(struct rc_buf *b);
/* A buffer that starts in the caller's storage (cap bytes at mem, which
 * must outlive it): a hot path that usually fits writes without a malloc.
 * An append that outgrows it moves the contents to the heap; rc_buf_fini
 * frees only heap memory, so call it either way. */
void rc_buf_init_on(struct rc_buf *b, void *mem, size_t cap);
void rc_buf_fini(struct rc_buf *b);
/* Makes room for extra more bytes; RC_ENOMEM on failure. */
int rc_buf_reserve(struct rc_buf *b, size_t extra);
int rc_buf_append(struct rc_buf *b, const void *p, size_t n);
/* Empties the buffer, keeping its memory. */
static inline void rc_buf_reset(struct rc_buf *b)
{
    b->len = 0;
}

#endif
