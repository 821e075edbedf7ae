/*
 * Scenario `soak`: a mixed load for a bounded --duration (default 60 s):
 * publisher threads play agent runs (start, phases, thinking, tool calls,
 * deltas, then complete; some end with error, some go silent so the
 * watchdog ends them), WebSocket subscribers follow everything (`sub all`)
 * and single runs; the broker's memory (RSS and jemalloc allocated) is
 * sampled at start, every 500 ms (peak), and at the end once every run has
 * ended and been retired (short --retention and --tombstone-ttl).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcb_nng.h"

#ifdef RCB_HAVE_CLIENT
#include "runcast.h"
#endif

#define SILENT_MS 1000

struct soak_pub {
    pthread_t th;
    uint32_t idx;
    double runs_per_s;
    uint64_t stop_ns;
    const char *push_url, *req_url;
    uint64_t runs, events, completes, errors_sent, silent, failures;
    char err[160];
};

#ifdef RCB_HAVE_CLIENT
static void *soak_main(void *arg)
{
    struct soak_pub *p = arg;
    struct rc_client_opts o;
    rc_client_opts_init(&o);
    o.push_url = p->push_url;
    o.req_url = p->req_url;
    o.validate = true;
    struct rc_client *c;
    if (rc_client_open_opts(&c, &o) != 0) {
        snprintf(p->err, sizeof(p->err), "rc_client_open failed");
        return NULL;
    }
    char run[96], text[160];
    static const char *phases[] = {"routing", "planning", "execute", "verify"};
    uint64_t t0 = rcb_now_ns();
    double per = 1e9 / p->runs_per_s;
    uint64_t k = 0;
    while (!rcb_expired()) {
        uint64_t due = t0 + (uint64_t)(per * (double)k);
        if (due >= p->stop_ns)
            break;
        rcb_sleep_until(due);
        char tag[16];
        snprintf(tag, sizeof(tag), "s%u", p->idx);
        rcb_run_id(run, sizeof(run), tag, k);
        uint64_t kind = k % 20; /* 0: silent, 1: error, else complete */
        struct rc_client_timeout to = {"*", kind == 0 ? SILENT_MS : 30000};
        int rv = rc_client_start(c, run, NULL, &to, 1, 0, NULL);
        p->events++;
        for (int ph = 0; ph < 4 && rv == 0; ph++) {
            rv |= rc_client_phase(c, run, phases[ph], NULL);
            snprintf(text, sizeof(text), "thinking about step %d of run %llu ...", ph,
                     (unsigned long long)k);
            rv |= rc_client_thinking(c, run, text, NULL);
            char tid[16];
            snprintf(tid, sizeof(tid), "t%d", ph);
            rv |= rc_client_tool(c, run, tid, "search", "running", NULL, 0, NULL);
            rv |= rc_client_tool(c, run, tid, "search", "done", NULL, 0, NULL);
            rv |= rc_client_delta(c, run, "partial output chunk; ", NULL);
            p->events += 5;
        }
        if (rv != 0) {
            p->failures++;
            snprintf(p->err, sizeof(p->err), "publish failed: %d", rv);
        }
        if (kind == 0) {
            p->silent++;
        } else if (kind == 1) {
            if (rc_client_error(c, run, "tool_failed", "the tool gave up", NULL) == 0)
                p->errors_sent++;
            else
                p->failures++;
            p->events++;
        } else {
            if (rc_client_complete(c, run, NULL, 0, NULL) == 0)
                p->completes++;
            else
                p->failures++;
            p->events++;
        }
        p->runs++;
        k++;
    }
    rc_client_close(c);
    return NULL;
}
#endif

int rcb_s_soak(void)
{
    bool sm = rcb_o.smoke;
    double D = rcb_o.duration_s > 0 ? rcb_o.duration_s : sm ? 3 : 60;
    uint32_t P = rcb_o.publishers ? rcb_o.publishers : 2;
    double rps = rcb_o.rate > 0 ? rcb_o.rate : sm ? 50 : 500; /* runs/s in total */
    uint32_t S = rcb_o.subs ? rcb_o.subs : sm ? 4 : 50;

    rcb_report_begin("soak", "mixed load: broker memory at start, peak and end");
    rcb_report_param("duration_s", "%.0f", D);
    rcb_report_param("publishers", "%u", P);
    rcb_report_param("runs_per_s", "%.0f", rps);
    rcb_report_param("subscribers", "%u", S);
#ifndef RCB_HAVE_CLIENT
    rcb_report_end(false, "built without the publisher library");
    return -1;
#else
    struct rcb_broker b;
    const char *extra[] = {"--retention", "1s", "--tombstone-ttl", "2s", NULL};
    if (rcb_broker_start(&b, extra) != 0) {
        rcb_report_end(false, "could not start or reach runcastd");
        return -1;
    }
    rcb_sleep_ns(300000000);
    struct rcb_mem m0, mp = {0, 0}, m;
    rcb_broker_mem(&b, &m0);
    mp = m0;
    /* subscribers: 2 follow everything, the rest follow the first run of
     * each publisher (a run that may not exist yet: the subscription waits) */
    struct rcb_subs *subs = rcb_subs_new(b.ws_url, S, NULL, NULL);
    if (subs && rcb_subs_wait_connected(subs, 10000) == 0) {
        for (uint32_t i = 0; i < S; i++) {
            if (i < 2) {
                rcb_subs_sub(subs, i, NULL, true);
            } else {
                char run[96], tag[16];
                snprintf(tag, sizeof(tag), "s%u", i % P);
                rcb_run_id(run, sizeof(run), tag, i);
                rcb_subs_sub(subs, i, run, false);
            }
        }
    }
    struct soak_pub *p = calloc(P, sizeof(*p));
    uint64_t t0 = rcb_now_ns(), stop = t0 + (uint64_t)(D * 1e9);
    for (uint32_t i = 0; i < P; i++) {
        p[i] = (struct soak_pub){.idx = i,
                                 .runs_per_s = rps / P,
                                 .stop_ns = stop,
                                 .push_url = b.ingest,
                                 .req_url = b.ack};
        pthread_create(&p[i].th, NULL, soak_main, &p[i]);
    }
    rcb_log("soak: %.0f s at %.0f runs/s", D, rps);
    while (rcb_now_ns() < stop && !rcb_expired()) {
        rcb_sleep_ns(500000000);
        rcb_broker_mem(&b, &m);
        if (m.rss > mp.rss || isnan(mp.rss))
            mp.rss = m.rss;
        if (m.allocated > mp.allocated || isnan(mp.allocated))
            mp.allocated = m.allocated;
    }
    uint64_t runs = 0, events = 0, completes = 0, errs = 0, silent = 0, failures = 0;
    for (uint32_t i = 0; i < P; i++) {
        pthread_join(p[i].th, NULL);
        runs += p[i].runs;
        events += p[i].events;
        completes += p[i].completes;
        errs += p[i].errors_sent;
        silent += p[i].silent;
        failures += p[i].failures;
        if (p[i].err[0])
            rcb_log("soak: publisher %u: %s", i, p[i].err);
    }
    free(p);
    /* wait for the silent runs to be ended by the watchdog and everything to
     * be retired: watchdog + retention + tombstone ttl + slack */
    rcb_log("soak: waiting for every run to end and be retired");
    uint64_t wait_until = rcb_now_ns() + (uint64_t)(SILENT_MS + 1000 + 2000 + 1500) * 1000000ull;
    while (rcb_now_ns() < wait_until && !rcb_expired()) {
        rcb_sleep_ns(250000000);
        rcb_broker_mem(&b, &m);
        if (m.rss > mp.rss)
            mp.rss = m.rss;
        if (m.allocated > mp.allocated)
            mp.allocated = m.allocated;
    }
    double active = rcb_broker_runs_active(&b);
    struct rcb_mem me;
    rcb_broker_mem(&b, &me);
    struct rcb_subs_stats st = {0};
    if (subs)
        rcb_subs_stats(subs, &st);
    rcb_subs_free(subs);

    rcb_fig("runs published", (double)runs, "runs", NULL, NULL);
    rcb_fig("events published", (double)events, "events", NULL, NULL);
    rcb_fig("  rate", rcb_rate((double)events, (uint64_t)(D * 1e9)), "ev/s", NULL, NULL);
    rcb_fig("runs completed by publisher", (double)completes, "runs", NULL, NULL);
    rcb_fig("  ended with error by publisher", (double)errs, "runs", NULL, NULL);
    rcb_fig("  left silent (watchdog must end)", (double)silent, "runs", NULL, NULL);
    rcb_fig("publish failures", (double)failures, "calls", "0", NULL);
    rcb_fig("deliveries to subscribers", (double)st.evs, "events", NULL, NULL);
    rcb_fig("synthesized terminals seen", (double)st.synthetic, "events", NULL,
            "2 subscribers follow all runs: 2 x silent");
    rcb_fig("subscriber connections closed", (double)st.closed, "conns", "0", st.last_err);
    rcb_fig("runs active at end", active, "runs", "0", "/metrics");
    rcb_fig("broker RSS start", m0.rss / 1048576.0, "MiB", NULL, NULL);
    rcb_fig("broker RSS peak", mp.rss / 1048576.0, "MiB", NULL, NULL);
    rcb_fig("broker RSS end (all retired)", me.rss / 1048576.0, "MiB", NULL, NULL);
    rcb_fig("allocated start", m0.allocated / 1048576.0, "MiB", NULL, "jemalloc");
    rcb_fig("allocated peak", mp.allocated / 1048576.0, "MiB", NULL, NULL);
    rcb_fig("allocated end (all retired)", me.allocated / 1048576.0, "MiB", "~ start", NULL);
    rcb_broker_stop(&b);
    bool ok = runs > 0;
    rcb_report_end(ok, ok ? NULL : "no run could be published");
    return ok ? 0 : -1;
#endif
}
