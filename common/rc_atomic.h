/*
 * rc_atomic: lock-free running minimum and maximum of a 64-bit word.
 *
 * Used for statistics (metrics gauges, benchmark first/last stamps) read
 * only as numbers: no other data is published through them, so every
 * operation is relaxed.  A loser of the compare-exchange retries only while
 * its value would still move the bound.
 */
#ifndef RC_ATOMIC_H
#define RC_ATOMIC_H

#include <stdatomic.h>
#include <stdint.h>

/* Lowers *a to v if v is smaller. */
static inline void rc_atomic_min_u64(_Atomic uint64_t *a, uint64_t v)
{
    /* relaxed: a statistic, nothing is published through it */
    uint64_t cur = atomic_load_explicit(a, memory_order_relaxed);
    while (v < cur && !atomic_compare_exchange_weak_explicit(a, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed))
        ;
}

/* Raises *a to v if v is larger. */
static inline void rc_atomic_max_u64(_Atomic uint64_t *a, uint64_t v)
{
    /* relaxed: a statistic, nothing is published through it */
    uint64_t cur = atomic_load_explicit(a, memory_order_relaxed);
    while (v > cur && !atomic_compare_exchange_weak_explicit(a, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed))
        ;
}

#endif
