/*
 * rc_buf: a growable byte buffer (encoders write into it).
 */
#ifndef RC_BUF_H
#define RC_BUF_H

#include <stddef.h>
#include <stdint.h>

struct rc_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

void rc_buf_init(struct rc_buf *b);
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
