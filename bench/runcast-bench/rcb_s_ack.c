/*
 * Scenario `ack`: the acknowledged path (REQ/REP).  Single-event round trip
 * (closed loop, one requester) and events/s with batches (P requesters),
 * each against raw nng REQ/REP to our own REP replier (answering with an
 * ack-sized map) in the same run.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rcb_nng.h"

struct out {
    double rate; /* events/s */
    double reqs; /* requests/s */
    struct rcb_hist *rtt;
    uint64_t acked, errors;
    char note[160];
};

static void run(enum rcb_pub_mode mode, const char *url, const char *tag, uint32_t P, uint32_t R,
                uint64_t n, uint32_t batch, uint32_t size, struct out *o)
{
    memset(o, 0, sizeof(*o));
    struct rcb_pubs_cfg c = {.mode = mode,
                             .url = url,
                             .threads = P,
                             .runs = R,
                             .run_tag = tag,
                             .events = n,
                             .batch = batch,
                             .size = size,
                             .record_rtt = true};
    struct rcb_pubs_result r;
    if (rcb_pubs_run(&c, &r) != 0)
        snprintf(o->note, sizeof(o->note), "%s", r.err[0] ? r.err : "nothing sent");
    o->rate = rcb_rate((double)r.acked, r.t_end - r.t_start);
    o->reqs = rcb_rate((double)r.messages_sent, r.t_end - r.t_start);
    o->rtt = r.rtt;
    o->acked = r.acked;
    o->errors = r.errors;
    if (r.errors && !o->note[0])
        snprintf(o->note, sizeof(o->note), "%llu errors: %s", (unsigned long long)r.errors, r.err);
}

int rcb_s_ack(void)
{
    bool sm = rcb_o.smoke;
    uint32_t P = rcb_o.publishers ? rcb_o.publishers : sm ? 2 : 4;
    uint32_t R = rcb_o.runs ? rcb_o.runs : sm ? 4 : 100;
    uint32_t S = rcb_o.size ? rcb_o.size : 200;
    uint32_t B = rcb_o.batch ? rcb_o.batch : 64;
    uint64_t n1 = rcb_o.events ? rcb_o.events : sm ? 200 : 20000;
    uint64_t nb = rcb_o.events ? rcb_o.events * B : sm ? 2000 : 1000000;

    rcb_report_begin("ack", "acknowledged ingest over REQ vs raw nng REQ/REP");
    rcb_report_param("P", "%u", P);
    rcb_report_param("R", "%u", R);
    rcb_report_param("size", "%u", S);
    rcb_report_param("batch", "%u", B);
    rcb_report_param("round_trips", "%llu", (unsigned long long)n1);
    rcb_report_param("events_batched", "%llu", (unsigned long long)nb);

    struct rcb_broker b;
    const char *extra[] = {
        "--publisher-grace", "0", "--history-max-events", "1000", "--retention", "2s", NULL};
    if (rcb_broker_start(&b, extra) != 0) {
        rcb_report_end(false, "could not start or reach runcastd");
        return -1;
    }
    /* port 0: the echo reports the port it bound */
    struct rcb_echo *e = rcb_echo_new("tcp://127.0.0.1:0", 16);
    const char *url = e != NULL ? rcb_echo_url(e) : "";

    struct out raw1 = {0}, brk1 = {0}, rawb = {0}, brkb = {0}, libb = {0};
    if (e != NULL) {
        rcb_log("ack: raw REQ/REP round trips");
        run(RCB_PUB_RAW_REQ, url, "r1", 1, R, n1, 1, S, &raw1);
    }
    rcb_log("ack: broker, publisher library, 1 event per request");
    run(RCB_PUB_LIB_ACK, b.ack, "l1", 1, R, n1, 1, S, &brk1);
    if (e != NULL) {
        rcb_log("ack: raw REQ/REP, batches of %u, %u requesters", B, P);
        run(RCB_PUB_RAW_REQ, url, "rb", P, R, nb, B, S, &rawb);
    }
    rcb_log("ack: broker, raw REQ, batches of %u", B);
    run(RCB_PUB_RAW_REQ, b.ack, "bb", P, R, nb, B, S, &brkb);
    rcb_log("ack: broker, publisher library, batches of %u", B);
    run(RCB_PUB_LIB_ACK, b.ack, "lb", P, R, nb, B, S, &libb);
    rcb_echo_free(e);

    char note[200];
    rcb_fig("raw REQ/REP round trips", raw1.reqs, "req/s", "baseline", raw1.note);
    if (raw1.rtt)
        rcb_fig_latency("raw REQ/REP 1-event", raw1.rtt, NULL, NULL, NULL);
    snprintf(note, sizeof(note), "ratio %.2f of raw; %s", brk1.reqs / raw1.reqs, brk1.note);
    rcb_fig("broker ack round trips (library)", brk1.reqs, "req/s", "vs raw REQ/REP", note);
    if (brk1.rtt)
        rcb_fig_latency("broker ack 1-event", brk1.rtt, NULL, NULL, NULL);
    if (raw1.rtt && brk1.rtt && raw1.rtt->count && brk1.rtt->count)
        rcb_fig("  p50 round trip / raw",
                (double)rcb_hist_pct(brk1.rtt, 50) / (double)rcb_hist_pct(raw1.rtt, 50), "x", NULL,
                NULL);
    rcb_fig("raw REQ/REP, batches", rawb.rate, "ev/s", "baseline", rawb.note);
    snprintf(note, sizeof(note), "%s", brkb.note);
    rcb_fig("broker ack, raw REQ, batches", brkb.rate, "ev/s", "vs raw REQ/REP", note);
    rcb_fig("  ratio to raw (batches)", brkb.rate / rawb.rate, "x", NULL, NULL);
    rcb_fig("broker ack, library, batches", libb.rate, "ev/s", "vs raw REQ/REP", libb.note);
    rcb_fig("  ratio to raw (batches)", libb.rate / rawb.rate, "x", NULL, NULL);
    if (libb.rtt)
        rcb_fig_latency("broker ack batch", libb.rtt, NULL, NULL, NULL);

    for (uint32_t i = 0; i < 5; i++) {
        static const char *tags[] = {"r1", "l1", "rb", "bb", "lb"};
        if (i == 1 || i == 3 || i == 4)
            rcb_retire_runs(b.ack, tags[i], R);
    }
    rcb_hist_free(raw1.rtt);
    rcb_hist_free(brk1.rtt);
    rcb_hist_free(rawb.rtt);
    rcb_hist_free(brkb.rtt);
    rcb_hist_free(libb.rtt);
    rcb_broker_stop(&b);
    bool ok = brk1.acked > 0 && brkb.acked > 0;
    rcb_report_end(ok, ok ? NULL : "the broker acknowledged nothing");
    return ok ? 0 : -1;
}
