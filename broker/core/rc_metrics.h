/*
 * rc_metrics: the broker core's counters.
 *
 * Every field is an atomic updated with relaxed operations: each counter is
 * an independent statistic, nothing is ordered by it, and readers (the
 * edge's /metrics, tests, benchmarks) only need each value to be eventually
 * visible.  Gauges (runs_pending, runs_running, ...) are counters that go
 * both ways.  The edge renders this struct in Prometheus format next to its
 * own counters; read a field with rc_metric_get.
 *
 * The struct lives inside the broker (rc_broker_metrics) and outlives every
 * thread that updates it.
 */
#ifndef RC_METRICS_H
#define RC_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "rc_atomic.h"
#include "rc_proto.h"

/* Why a run ended. */
enum rc_term_cause {
    RC_TERM_COMPLETE,          /* the publisher's `complete` */
    RC_TERM_ERROR,             /* the publisher's `error` */
    RC_TERM_WATCHDOG_TIMEOUT,  /* synthesized: no event within the phase's idle timeout */
    RC_TERM_DEADLINE_EXCEEDED, /* synthesized: the run's absolute deadline passed */
    RC_TERM_PUBLISHER_GONE,    /* synthesized: the publisher's connection closed, grace ran out */
    RC_TERM_CAUSE_COUNT
};

/* "complete", "error", "watchdog_timeout", "deadline_exceeded", "publisher_gone". */
const char *rc_term_cause_name(enum rc_term_cause c);

/* Where a publish message came from. */
enum rc_ingest_kind {
    RC_INGEST_PULL,   /* fire-and-forget PULL socket (--ingest) */
    RC_INGEST_REP,    /* acknowledged REP socket (--ingest-ack) */
    RC_INGEST_INPROC, /* rc_broker_publish (tests, benchmarks) */
    RC_INGEST_KIND_COUNT
};

/* "pull", "rep", "inproc". */
const char *rc_ingest_kind_name(enum rc_ingest_kind k);

/* Ingest batch-size histogram: bucket i counts messages of at most
 * rc_metrics_batch_bound(i) events (1, 2, 4, ..., 1024); the last bucket
 * counts larger ones (only with a raised --max-batch-events). */
#define RC_METRICS_BATCH_BUCKETS 12
uint32_t rc_metrics_batch_bound(unsigned i); /* UINT32_MAX for the last bucket */

typedef _Atomic uint64_t rc_metric;

/* Watchdog lateness histograms, in microseconds: buckets 0-3 count 0, 1,
 * 2 and 3 us; above, four buckets per power of two (a quarter of it wide),
 * so a quantile read from them is within 25%; the last bucket counts
 * everything from about 25 s on.  rc_metrics_late_bound gives a bucket's
 * exclusive upper bound in us. */
#define RC_METRICS_LATE_BUCKETS 96
uint64_t rc_metrics_late_bound(unsigned i);

struct rc_metrics {
    /* ---- runs ---- */
    rc_metric runs_created;    /* counter: runs created (first event or start) */
    rc_metric runs_pending;    /* gauge: started, nothing else yet */
    rc_metric runs_running;    /* gauge */
    rc_metric runs_completed;  /* counter: ended with `complete` */
    rc_metric runs_failed;     /* counter: ended with `error` (publisher's or synthesized) */
    rc_metric runs_retained;   /* gauge: ended, history still kept (--retention) */
    rc_metric runs_tombstoned; /* gauge: history freed, tombstone kept (--tombstone-ttl) */
    rc_metric runs_removed;    /* counter: tombstones expired */
    rc_metric terminals[RC_TERM_CAUSE_COUNT]; /* counter: terminals by cause */
    rc_metric terminal_rejected; /* counter: terminal events that failed validation (CRITICAL) */
    rc_metric watchdog_fired;    /* counter: synthesized terminals */
    /* counter per bucket: the timer thread's send - due (the wheel) ... */
    rc_metric watchdog_fire_late[RC_METRICS_LATE_BUCKETS];
    /* ... and the synthesized terminal handed to its subscribers - due */
    rc_metric watchdog_emit_late[RC_METRICS_LATE_BUCKETS];
    rc_metric watchdog_fire_late_sum_us; /* counter: the sums of the two above */
    rc_metric watchdog_emit_late_sum_us;

    /* ---- events ---- */
    rc_metric events_accepted; /* counter: assigned a seq */
    rc_metric events_dup;      /* counter: idempotency repeats (acked, not delivered) */
    rc_metric events_rejected[RC_PROTO_CODE_COUNT]; /* counter: by wire error code */
    rc_metric messages_rejected;       /* counter: whole messages refused (bad envelope) */
    rc_metric run_terminal_rejections; /* counter: = events_rejected[RUN_TERMINAL] */
    rc_metric limit_rejections;        /* counter: new runs refused by --max-runs */
    rc_metric mailbox_overloads;       /* counter: run mailbox full -> `overloaded` */

    /* ---- ingress ---- */
    rc_metric
        messages_received[RC_INGEST_KIND_COUNT];    /* counter: publish messages by socket kind */
    rc_metric bytes_received[RC_INGEST_KIND_COUNT]; /* counter */
    rc_metric batch_hist[RC_METRICS_BATCH_BUCKETS]; /* counter per bucket (events per message) */
    rc_metric batch_events_sum;                     /* counter: sum of events over messages */
    rc_metric acks_sent;                            /* counter: REP replies sent */
    rc_metric ack_failures;  /* counter: REP replies that could not be sent */
    rc_metric ingest_errors; /* counter: receive errors from nng (not bad input) */
    rc_metric ingest_pauses; /* counter: PULL receivers parked for back-pressure */
    /* counter: publisher connections dropped for what they sent (not an SP
     * PUSH, no SP header in time, a message over the limit; rc_sppull) */
    rc_metric ingest_conn_errors;
    rc_metric pipes_closed; /* counter: publisher connections closed */
    /* gauge: publisher connections open (PULL and REP; a stream reader's
     * once its SP handshake is done, as nng counts a pipe) */
    rc_metric pipes_open;

    /* ---- fan-out ---- */
    rc_metric subscriptions;  /* gauge: subscriber attachments to runs (run + conv + all) */
    rc_metric frames_out;     /* counter: frames handed to subscriber actors */
    rc_metric frames_dropped; /* counter: sends to a subscriber that had stopped */
    rc_metric resumes_exact;  /* counter: resumes served from history */
    rc_metric resumes_gap;    /* counter: resumes answered with gap + snap */
    rc_metric resumes_reset;  /* counter: other-epoch resumes answered with snap */

    /* ---- history ---- */
    rc_metric history_events; /* gauge: ev encodings held in histories */
    rc_metric history_bytes;  /* gauge: their bytes */
};

static inline void rc_metric_add(rc_metric *m, uint64_t n)
{
    /* relaxed: an independent statistic, see the header comment */
    atomic_fetch_add_explicit(m, n, memory_order_relaxed);
}

static inline void rc_metric_sub(rc_metric *m, uint64_t n)
{
    /* relaxed: as rc_metric_add */
    atomic_fetch_sub_explicit(m, n, memory_order_relaxed);
}

static inline uint64_t rc_metric_get(const rc_metric *m)
{
    /* relaxed: as rc_metric_add */
    return atomic_load_explicit((rc_metric *)m, memory_order_relaxed);
}

/* Raises m to at least v (relaxed, as rc_metric_add). */
static inline void rc_metric_max(rc_metric *m, uint64_t v)
{
    rc_atomic_max_u64(m, v);
}

/* Counts a lateness of ns nanoseconds into a RC_METRICS_LATE_BUCKETS
 * histogram. */
static inline void rc_metrics_late(rc_metric *hist, uint64_t ns)
{
    uint64_t us = ns / 1000u;
    unsigned i;
    if (us < 4) {
        i = (unsigned)us;
    } else {
        unsigned e = 63u - (unsigned)__builtin_clzll(us); /* >= 2 */
        i = 4u * (e - 1u) + (unsigned)((us >> (e - 2u)) & 3u);
    }
    if (i >= RC_METRICS_LATE_BUCKETS)
        i = RC_METRICS_LATE_BUCKETS - 1;
    rc_metric_add(&hist[i], 1);
}

/* Counts one ingest message of n events into the histogram. */
void rc_metrics_batch(struct rc_metrics *m, uint32_t n);

/* Zeroes every counter (rc_broker_new does it). */
void rc_metrics_init(struct rc_metrics *m);

#endif
