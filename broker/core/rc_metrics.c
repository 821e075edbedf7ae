/*
 * rc_metrics: names and the batch histogram (counters are in the header).
 */
#include "rc_metrics.h"

#include <string.h>

const char *rc_term_cause_name(enum rc_term_cause c)
{
    static const char *const names[RC_TERM_CAUSE_COUNT] = {
        "complete", "error", "watchdog_timeout", "deadline_exceeded", "publisher_gone",
    };
    return (unsigned)c < RC_TERM_CAUSE_COUNT ? names[c] : "?";
}

const char *rc_ingest_kind_name(enum rc_ingest_kind k)
{
    static const char *const names[RC_INGEST_KIND_COUNT] = {"pull", "rep", "inproc"};
    return (unsigned)k < RC_INGEST_KIND_COUNT ? names[k] : "?";
}

uint32_t rc_metrics_batch_bound(unsigned i)
{
    if (i + 1 >= RC_METRICS_BATCH_BUCKETS)
        return UINT32_MAX;
    return 1u << i;
}

uint64_t rc_metrics_late_bound(unsigned i)
{
    if (i < 4)
        return i + 1;
    if (i >= RC_METRICS_LATE_BUCKETS - 1)
        return UINT64_MAX;
    unsigned e = i / 4 + 1, m = i % 4; /* inverse of rc_metrics_late */
    return (UINT64_C(4) + m + 1) << (e - 2);
}

void rc_metrics_batch(struct rc_metrics *m, uint32_t n)
{
    unsigned i = 0;
    while (i + 1 < RC_METRICS_BATCH_BUCKETS && n > (1u << i))
        i++;
    rc_metric_add(&m->batch_hist[i], 1);
    rc_metric_add(&m->batch_events_sum, n);
}

void rc_metrics_init(struct rc_metrics *m)
{
    /* before any thread shares m: plain zeroing is enough */
    memset(m, 0, sizeof(*m));
}
