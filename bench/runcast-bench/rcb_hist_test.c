/*
 * Unit tests of rcb_hist, runcast-bench's HDR-style histogram: bucket
 * layout, the 1 % relative-error bound, percentiles against an exact sort,
 * merge, and the edges of the value range.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "rcb_hist.h"

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double rel_err(uint64_t got, uint64_t want)
{
    if (want == 0)
        return got == 0 ? 0.0 : 1.0;
    double d = (double)got - (double)want;
    return (d < 0 ? -d : d) / (double)want;
}

Test(hist, small_values_are_exact)
{
    struct rcb_hist *h = rcb_hist_new();
    cr_assert_not_null(h);
    for (uint64_t v = 0; v < 256; v++) {
        cr_assert_eq(rcb_hist_index(v), v);
        rcb_hist_record(h, v);
    }
    cr_assert_eq(h->count, 256);
    cr_assert_eq(h->min, 0);
    cr_assert_eq(h->max, 255);
    cr_assert_eq(rcb_hist_pct(h, 50), 127);
    cr_assert_eq(rcb_hist_pct(h, 100), 255);
    cr_assert_eq(rcb_hist_pct(h, 0), 0);
    rcb_hist_free(h);
}

Test(hist, buckets_tile_the_range_without_gaps)
{
    uint64_t prev_hi = 0;
    for (uint32_t i = 0; i < RCB_HIST_BUCKETS; i++) {
        uint64_t lo, hi;
        rcb_hist_bucket_range(i, &lo, &hi);
        if (i > 0)
            cr_assert_eq(lo, prev_hi + 1, "bucket %u starts at %lu after %lu", i, (unsigned long)lo,
                         (unsigned long)prev_hi);
        cr_assert_geq(hi, lo);
        /* width relative to the lower bound: at most 1/128 */
        cr_assert_leq((double)(hi - lo), (double)lo / 128.0 + 0.5, "bucket %u too wide", i);
        cr_assert_eq(rcb_hist_index(lo), i);
        cr_assert_eq(rcb_hist_index(hi), i);
        prev_hi = hi;
    }
    cr_assert_eq(prev_hi, UINT64_MAX);
    cr_assert_eq(rcb_hist_index(UINT64_MAX), RCB_HIST_BUCKETS - 1);
}

Test(hist, percentiles_within_one_percent_of_exact)
{
    enum { N = 200000 };
    uint64_t *v = malloc(N * sizeof(*v));
    cr_assert_not_null(v);
    struct rcb_hist *h = rcb_hist_new();
    uint64_t s = 88172645463325252ull;
    for (int i = 0; i < N; i++) {
        /* log-uniform over 1 ns .. ~1 s, like latencies */
        uint64_t r = xorshift(&s);
        unsigned bits = 1 + (unsigned)(r % 30);
        v[i] = (xorshift(&s) >> (64 - bits)) | 1;
        rcb_hist_record(h, v[i]);
    }
    qsort(v, N, sizeof(*v), cmp_u64);
    const double ps[] = {1, 10, 25, 50, 75, 90, 99, 99.9, 99.99};
    for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++) {
        size_t rank = (size_t)(ps[k] / 100.0 * N + 0.999999);
        uint64_t want = v[rank - 1];
        uint64_t got = rcb_hist_pct(h, ps[k]);
        cr_assert_leq(rel_err(got, want), 0.01, "p%g: got %lu want %lu", ps[k], (unsigned long)got,
                      (unsigned long)want);
    }
    cr_assert_eq(rcb_hist_pct(h, 100), v[N - 1]);
    cr_assert_eq(h->min, v[0]);
    double sum = 0;
    for (int i = 0; i < N; i++)
        sum += (double)v[i];
    cr_assert_float_eq(rcb_hist_mean(h), sum / N, sum / N * 1e-9);
    free(v);
    rcb_hist_free(h);
}

Test(hist, merge_equals_recording_into_one)
{
    struct rcb_hist *a = rcb_hist_new(), *b = rcb_hist_new(), *all = rcb_hist_new();
    uint64_t s = 12345;
    for (int i = 0; i < 50000; i++) {
        uint64_t x = xorshift(&s) % 10000000;
        rcb_hist_record(i % 2 ? a : b, x);
        rcb_hist_record(all, x);
    }
    struct rcb_hist *m = rcb_hist_new();
    rcb_hist_merge(m, a);
    rcb_hist_merge(m, b);
    cr_assert_eq(m->count, all->count);
    cr_assert_eq(m->min, all->min);
    cr_assert_eq(m->max, all->max);
    for (double p = 0; p <= 100; p += 0.5)
        cr_assert_eq(rcb_hist_pct(m, p), rcb_hist_pct(all, p));
    rcb_hist_free(a);
    rcb_hist_free(b);
    rcb_hist_free(all);
    rcb_hist_free(m);
}

Test(hist, empty_and_single_value)
{
    struct rcb_hist *h = rcb_hist_new();
    cr_assert_eq(rcb_hist_pct(h, 50), 0);
    cr_assert_float_eq(rcb_hist_mean(h), 0.0, 1e-12);
    rcb_hist_record_n(h, 1000000, 0); /* n == 0 records nothing */
    cr_assert_eq(h->count, 0);
    rcb_hist_record_n(h, 1234567, 3);
    cr_assert_eq(h->count, 3);
    /* clamped to [min, max]: a single value comes back exactly */
    cr_assert_eq(rcb_hist_pct(h, 50), 1234567);
    cr_assert_eq(rcb_hist_pct(h, 99.9), 1234567);
    rcb_hist_record(h, UINT64_MAX);
    cr_assert_eq(rcb_hist_pct(h, 100), UINT64_MAX);
    cr_assert_leq(rel_err(rcb_hist_pct(h, 90), UINT64_MAX), 0.01);
    rcb_hist_free(h);
}
