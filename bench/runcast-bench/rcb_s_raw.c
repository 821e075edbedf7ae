/*
 * Scenario `raw`: the raw nng baselines alone, no broker: PUSH/PULL (one
 * event per message and batches), REQ/REP (round trips and batches) and
 * WebSocket streams (1 and S connections).  What the other scenarios compare
 * the broker against, for a quick look at the machine's ceiling.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rcb_nng.h"
#include "rcb_raw.h"

int rcb_s_raw(void)
{
    bool sm = rcb_o.smoke;
    uint32_t P = rcb_o.publishers ? rcb_o.publishers : sm ? 2 : 4;
    uint32_t S = rcb_o.subs ? rcb_o.subs : sm ? 20 : 1000;
    uint32_t size = rcb_o.size ? rcb_o.size : 200;
    uint32_t B = rcb_o.batch ? rcb_o.batch : 64;
    uint64_t n1 = rcb_o.events ? rcb_o.events : sm ? 2000 : 300000;

    rcb_report_begin("raw", "raw nng baselines (no broker)");
    rcb_report_param("transport", "%s", rcb_o.ipc ? "ipc" : "tcp");
    rcb_report_param("P", "%u", P);
    rcb_report_param("S", "%u", S);
    rcb_report_param("size", "%u", size);
    rcb_report_param("batch", "%u", B);
    rcb_raise_nofile(65536);

    struct rcb_phase_out o;
    rcb_ingest_raw(P, 100, n1, 1, size, rcb_o.rate, &o);
    rcb_fig("PUSH/PULL, 1 event/msg", o.rate, "ev/s", NULL, o.note);
    rcb_ingest_raw(P, 100, n1 * 10, B, size, 0, &o);
    rcb_fig("PUSH/PULL, batches", o.rate, "ev/s", NULL, o.note);
    rcb_ingest_raw(1, 100, n1 / 2, 1, size, rcb_o.rate, &o);
    rcb_fig("PUSH/PULL, 1 pusher, 1 event/msg", o.rate, "ev/s", NULL, o.note);

    /* port 0: the echo reports the port it bound */
    struct rcb_echo *e = rcb_echo_new("tcp://127.0.0.1:0", 16);
    const char *url = e != NULL ? rcb_echo_url(e) : "";
    struct rcb_pubs_cfg c = {.mode = RCB_PUB_RAW_REQ,
                             .url = url,
                             .threads = 1,
                             .runs = 10,
                             .run_tag = "x",
                             .events = n1 / 10,
                             .batch = 1,
                             .size = size,
                             .record_rtt = true};
    struct rcb_pubs_result r;
    rcb_pubs_run(&c, &r);
    rcb_fig("REQ/REP round trips", rcb_rate((double)r.messages_sent, r.t_end - r.t_start), "req/s",
            NULL, r.err[0] ? r.err : NULL);
    rcb_fig_latency("REQ/REP", r.rtt, NULL, NULL, NULL);
    rcb_hist_free(r.rtt);
    c.threads = P;
    c.batch = B;
    c.events = n1 * 3;
    rcb_pubs_run(&c, &r);
    rcb_fig("REQ/REP, batches", rcb_rate((double)r.acked, r.t_end - r.t_start), "ev/s", NULL,
            r.err[0] ? r.err : NULL);
    rcb_hist_free(r.rtt);
    rcb_echo_free(e);

    double rate;
    char note[160];
    struct rcb_hist *h = rcb_hist_new();
    rcb_fanout_raw(1, sm ? 2000 : 200000, 1, size, &rate, h, note, sizeof(note));
    rcb_fig("ws stream, 1 connection", rate, "ev/s", NULL, note);
    rcb_hist_free(h);
    h = rcb_hist_new();
    rcb_fanout_raw(1, sm ? 200 : 20000, 32, size, &rate, h, note, sizeof(note));
    rcb_fig("ws stream, 1 connection, 32 ev/frame", rate, "ev/s", NULL, note);
    rcb_hist_free(h);
    h = rcb_hist_new();
    rcb_fanout_raw(S, sm ? 20 : 200, 1, size, &rate, h, note, sizeof(note));
    rcb_fig("ws stream, S connections", rate, "ev/s", NULL, note);
    rcb_hist_free(h);
    h = rcb_hist_new();
    rcb_fanout_raw(S, sm ? 5 : 25, 32, size, &rate, h, note, sizeof(note));
    rcb_fig("ws stream, S connections, 32 ev/frame", rate, "ev/s", NULL, note);
    rcb_hist_free(h);
    rcb_report_end(true, NULL);
    return 0;
}
