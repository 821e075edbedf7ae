/*
 * rcb_hist: see rcb_hist.h.  Bucket layout:
 *
 *   index 0..255                  value itself (exact)
 *   index 256 + (e-8)*128 + m     values with highest bit e (8..63) whose
 *                                 next 7 bits are m: width 2^(e-7)
 */
#include "rcb_hist.h"

#include <stdlib.h>
#include <string.h>

void rcb_hist_init(struct rcb_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

struct rcb_hist *rcb_hist_new(void)
{
    struct rcb_hist *h = malloc(sizeof(*h));
    if (h != NULL)
        rcb_hist_init(h);
    return h;
}

void rcb_hist_free(struct rcb_hist *h)
{
    free(h);
}

uint32_t rcb_hist_index(uint64_t v)
{
    if (v < RCB_HIST_LINEAR)
        return (uint32_t)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 8 */
    unsigned shift = e - RCB_HIST_SUB_BITS;
    uint32_t m = (uint32_t)(v >> shift) - RCB_HIST_SUB; /* 0..127 */
    return RCB_HIST_LINEAR + (e - (RCB_HIST_SUB_BITS + 1)) * RCB_HIST_SUB + m;
}

void rcb_hist_bucket_range(uint32_t idx, uint64_t *lo, uint64_t *hi)
{
    if (idx < RCB_HIST_LINEAR) {
        *lo = *hi = idx;
        return;
    }
    uint32_t k = idx - RCB_HIST_LINEAR;
    unsigned e = k / RCB_HIST_SUB + RCB_HIST_SUB_BITS + 1;
    unsigned shift = e - RCB_HIST_SUB_BITS;
    uint64_t m = (uint64_t)(k % RCB_HIST_SUB) + RCB_HIST_SUB;
    *lo = m << shift;
    *hi = *lo + ((1ull << shift) - 1);
}

void rcb_hist_record_n(struct rcb_hist *h, uint64_t v, uint64_t n)
{
    if (n == 0)
        return;
    h->b[rcb_hist_index(v)] += n;
    h->count += n;
    h->sum += (double)v * (double)n;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void rcb_hist_record(struct rcb_hist *h, uint64_t v)
{
    rcb_hist_record_n(h, v, 1);
}

void rcb_hist_merge(struct rcb_hist *dst, const struct rcb_hist *src)
{
    if (src->count == 0)
        return;
    for (uint32_t i = 0; i < RCB_HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t rcb_hist_pct(const struct rcb_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p <= 0)
        return h->min;
    if (p >= 100)
        return h->max;
    /* rank: the smallest count c with c >= p% of the total (at least 1). */
    double want = p / 100.0 * (double)h->count;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t cum = 0;
    for (uint32_t i = 0; i < RCB_HIST_BUCKETS; i++) {
        cum += h->b[i];
        if (cum >= rank) {
            uint64_t lo, hi;
            rcb_hist_bucket_range(i, &lo, &hi);
            uint64_t mid = lo + (hi - lo) / 2;
            if (mid < h->min)
                mid = h->min;
            if (mid > h->max)
                mid = h->max;
            return mid;
        }
    }
    return h->max;
}

double rcb_hist_mean(const struct rcb_hist *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}
