/*
 * rc_words: copying and zeroing a few hundred bytes of 8-byte words with
 * 16-byte vector moves, for the event hot path's fixed-size structs.
 *
 * Why not memcpy / memset or a struct assignment: GCC compiles those, at a
 * constant size of a few hundred bytes, to `rep movsq` / `rep stosq`, whose
 * start-up cost made the copy of each event's slot 60 % of the ingest's
 * grouping samples; and a chain of small struct assignments became a small
 * store and a 16-byte reload per field, a failed store-to-load forward
 * each (docs/ARCHITECTURE.md, "Reading PULL connections as byte streams").
 *
 * n must be a multiple of 8 and both sides 8-byte aligned.  Where a copy
 * is inlined with a constant size, -O3 may still turn rc_words_copy's loop
 * back into `rep movsq` (it does for the run actor's unpack); an empty asm
 * in the loop to stop it measured worse there, so only rc_words_zero has
 * one (measured better: bench_proto).
 */
#ifndef RC_WORDS_H
#define RC_WORDS_H

#include <stddef.h>
#include <stdint.h>

typedef unsigned char rc_words_v16 __attribute__((vector_size(16), aligned(8), may_alias));
typedef uint64_t rc_words_u64 __attribute__((aligned(8), may_alias));

static inline void rc_words_copy(void *dst, const void *src, size_t n)
{
    rc_words_v16 *d = dst;
    const rc_words_v16 *s = src;
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        *d++ = *s++;
    if (i < n)
        *(rc_words_u64 *)(void *)d = *(const rc_words_u64 *)(const void *)s;
}

static inline void rc_words_zero(void *p, size_t n)
{
    rc_words_v16 *v = p;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        *v++ = (rc_words_v16){0};
        __asm__("" : "+r"(v)); /* keeps GCC from turning the loop into memset */
    }
    if (i < n)
        *(rc_words_u64 *)(void *)v = 0;
}

#endif
