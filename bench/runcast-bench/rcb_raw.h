/*
 * rcb_raw: the raw nng baselines, shared by the scenarios that run them next
 * to the broker and by the `raw` scenario that runs them alone.
 */
#ifndef RCB_RAW_H
#define RCB_RAW_H

#include "rcb.h"

struct rcb_phase_out {
    double rate;     /* events/s */
    double accepted; /* events confirmed */
    double mean_batch;
    /* CPU time per event during the phase (us; NAN when unknown): the
     * receiving process (raw sink or broker) and this one (publishers,
     * /metrics polls; with --raw-sink thread the sink too) */
    double rx_cpu_us, pub_cpu_us;
    /* events/s the publishers sent at (first send to last): below a paced
     * phase's offer when the publishers themselves fell behind */
    double sent_rate;
    bool ok;
    char note[128];
};

/* Raw nng PUSH/PULL: P pushers to our own PULL sink (8 receive aios, in a
 * process of its own unless --raw-sink thread),
 * n events of `size` bytes in messages of `batch`; one event per message
 * is offered at `rate` events/s when rate > 0 (paced, open loop). */
void rcb_ingest_raw(uint32_t P, uint32_t R, uint64_t n, uint32_t batch, uint32_t size, double rate,
                    struct rcb_phase_out *o);

/* Raw nng WebSocket: our own ws listener sends per_conn ev frames to each of
 * `conns` nng ws dialers (per_frame ev maps per frame); *rate = deliveries/s, h = send-to-receive
 * latency. */
void rcb_fanout_raw(uint32_t conns, uint64_t per_conn, uint32_t per_frame, uint32_t size,
                    double *rate, struct rcb_hist *h, char *note, size_t nl);

int rcb_s_raw(void);

#endif
