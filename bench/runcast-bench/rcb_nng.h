/*
 * rcb_nng: the raw nng pieces the scenarios share: a PULL sink (baseline
 * receiver with several receive aios), a REP echo (baseline replier), PUSH
 * sender threads carrying pre-built messages, an acknowledged batch helper
 * that reads the seqs out of the broker's ack maps, and the publisher
 * threads that go through the publisher library.
 */
#ifndef RCB_NNG_H
#define RCB_NNG_H

#include <nng/nng.h>
#include <pthread.h>

#include "rcb.h"

/* ---- PULL sink ---- */
struct rcb_sink;
/* Listens on url (tcp port 0: the port it binds; rcb_sink_url says which)
 * with naio receives in flight, in a child process (default) or in this one
 * (--raw-sink thread).  NULL when it cannot listen. */
struct rcb_sink *rcb_sink_new(const char *url, int naio);
/* The address publishers dial (the bound port for tcp://h:0). */
const char *rcb_sink_url(const struct rcb_sink *k);
/* The receiving process (this one for --raw-sink thread). */
pid_t rcb_sink_pid(const struct rcb_sink *k);
uint64_t rcb_sink_msgs(struct rcb_sink *k);
uint64_t rcb_sink_bytes(struct rcb_sink *k);
void rcb_sink_free(struct rcb_sink *k);
/* The child's side: `runcast-bench --sink-child URL NAIO FD` (FD: the
 * shared counters); prints "sink URL" once listening, runs until its stdin
 * closes.  The process exit status. */
int rcb_sink_child_main(const char *url, int naio, int fd);

/* ---- REP echo: answers every request with a fixed small reply (an ack map
 * of n results, as big as the broker's) ---- */
struct rcb_echo;
/* In a child process (default) or in this one (--raw-sink thread), as the
 * sink.  NULL when it cannot listen. */
struct rcb_echo *rcb_echo_new(const char *url, int nctx);
/* The child's side: `runcast-bench --echo-child URL NCTX`; prints "echo URL"
 * once listening, runs until its stdin closes. */
int rcb_echo_child_main(const char *url, int nctx);
/* The address requesters dial (the bound port for tcp://h:0). */
const char *rcb_echo_url(const struct rcb_echo *e);
/* The answering process (this one for --raw-sink thread). */
pid_t rcb_echo_pid(const struct rcb_echo *e);
void rcb_echo_free(struct rcb_echo *e);

/* ---- REQ socket: dialled to url (blocking), 10 s send/receive timeouts,
 * no resend within a minute, replies up to 8 MiB.  0 or an nng error. ---- */
int rcb_req_open(nng_socket *s, const char *url);

/* ---- publisher threads ---- */

enum rcb_pub_mode {
    RCB_PUB_RAW,     /* own PUSH socket; messages of `batch` events */
    RCB_PUB_LIB,     /* publisher library, PUSH path, batch_max_events = batch */
    RCB_PUB_RAW_REQ, /* own REQ socket; one request of `batch` events at a time */
    RCB_PUB_LIB_ACK, /* publisher library, acknowledged batches of `batch` */
};

struct rcb_pubs_result;

struct rcb_pubs_cfg {
    enum rcb_pub_mode mode;
    const char *url;  /* PUSH or REQ target */
    uint32_t threads; /* P */
    uint32_t runs;    /* R: run ids rcb_run_id(run_tag, 0..R-1) */
    const char *run_tag;
    uint64_t events; /* total events (split over threads) */
    uint32_t batch;  /* events per message / request */
    uint32_t size;   /* event size */
    double rate;     /* total offered events/s, 0: as fast as possible */
    /* rate > 0: an event may go out up to this early instead of sleeping
     * for it (0: sleep to the due time).  A sleep costs ~50 us of timer
     * slack, so per-event sleeps cannot pace a thread past ~20,000
     * events/s; the ingest phases, which time throughput and not latency,
     * allow 100 us. */
    uint64_t early_ns;
    bool record_rtt;           /* REQ modes: per-request round trip into the histogram */
    bool starts;               /* RAW: each event is the `start` of a new run (index
                                  0..events-1 of run_tag) instead of a delta */
    uint32_t start_timeout_ms; /* starts: the per-run watchdog override (0: none) */
    /* Called once every publisher is done, before their sockets close
     * (closing drops what nng still queues): waits for the receiving side
     * and returns the time everything had arrived (0: it did not). */
    uint64_t (*settle)(void *arg, const struct rcb_pubs_result *res);
    void *settle_arg;
};

struct rcb_pubs_result {
    uint64_t t_start, t_end; /* ns: go, last publisher finished (flushed) */
    uint64_t t_settled;      /* what cfg->settle returned */
    uint64_t events_sent;
    uint64_t messages_sent;
    uint64_t errors;
    uint64_t acked; /* REQ modes: events accepted per the acks */
    uint32_t max_batch;
    struct rcb_hist *rtt; /* REQ modes with record_rtt: ns per request */
    char err[160];
};

/* Runs the publishers to completion (or the scenario's cap). */
int rcb_pubs_run(const struct rcb_pubs_cfg *cfg, struct rcb_pubs_result *res);

/* Sends `complete` to runs 0..R-1 of tag over REQ (batches) and returns the
 * sum over runs of (complete's seq - 1): the events each run had accepted
 * before it, per the ack path.  -1 on failure. */
int64_t rcb_retire_runs(const char *req_url, const char *run_tag, uint32_t runs);

/* Starts runs 0..R-1 of tag over REQ with batches of start events (watchdog
 * override timeout_ms when non-zero), from `threads` requesters.  Returns the
 * number of runs acknowledged; *t_done gets the time the last ack arrived. */
uint64_t rcb_start_runs(const char *req_url, const char *run_tag, uint32_t runs,
                        uint32_t timeout_ms, uint32_t threads, uint32_t batch, uint64_t *t_done,
                        uint64_t *t_sent, char *err, size_t errlen);

/* Parses an ack map: number of accepted results and the sum of their seqs. */
bool rcb_parse_ack(const void *buf, size_t len, uint32_t *accepted, uint64_t *seq_sum,
                   uint32_t *results, char *err, size_t errlen);

/* Waits until the broker's accepted-events counter reaches target (polling
 * /metrics every poll_ms).  Returns the time it did; 0 when it did not before
 * the deadline, stalled for 3 s, or /metrics is unavailable.  *seen: the last
 * value, *t_last: when it last moved. */
uint64_t rcb_wait_accepted(const struct rcb_broker *b, double target, uint64_t deadline_ns,
                           uint32_t poll_ms, double *seen, uint64_t *t_last);
/* The same for any counter of /metrics. */
uint64_t rcb_wait_metric(const struct rcb_broker *b, const char *name, double target,
                         uint64_t deadline_ns, uint32_t poll_ms, double *seen, uint64_t *t_last);
/* runcast_events_rejected_total for one reason (NULL: all); NAN if absent. */
double rcb_broker_rejected(const struct rcb_broker *b, const char *reason);

#endif
