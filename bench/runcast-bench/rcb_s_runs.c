/*
 * Scenario `runs`: N concurrent runs (default 1,000,000), each created by
 * one `start` event (batched, acknowledged) with its watchdog armed.
 *
 *   pass 1  creation rate and broker memory per run (RSS and jemalloc
 *           allocated, before/after, no subscriber attached); then every run
 *           is retired with `complete`.  Each run holds its `start` in its
 *           history (runcastd's default --history-max-*): the same thing
 *           bench_broker runs reports as "memory per active run with its
 *           start in history" in process (its "without history" row is the
 *           run alone, --history-max-bytes 1).
 *   pass 2  one subscriber `sub all`; N runs with a short per-run watchdog
 *           (start.timeouts {"*": T}); every run goes silent, and each
 *           synthesized terminal's arrival is compared with the moment its
 *           start was sent + T (end-to-end lateness), and its idle_ms with T
 *           (the broker's own lateness).  A throughput case: the broker
 *           ends N runs due within the creation time (~2 s), so its
 *           lateness is the queue of that work, not the watchdog's
 *           punctuality.
 *   pass 3  steady expiries among N armed runs (the punctuality goal):
 *           one subscriber `sub all`, then N runs with a long watchdog
 *           (600 s: none expires here), and once the subscriber has
 *           received their N starts, a stream of short-timeout runs
 *           (--rate runs/s, default 2,000, one REQ message a ms, for
 *           --duration s, default 5; watchdog --timeout-ms, default
 *           1,000 here) that go silent; for those runs only: the
 *           broker's idle_ms - T and the subscriber's receipt lateness,
 *           p50/p99/p99.9/max.  Why `all` and not a subscription per
 *           run: the goal is the deployment where a dashboard watches
 *           everything, so every run (armed or streaming) fans out to it;
 *           its million starts arrive before the stream begins and are
 *           not in the measured window.
 *
 * -w mass: passes 1-2 only; -w steady: pass 3 only; default both.
 *
 * Issue 5's goals: <= 512 bytes per active run, create + arm <= 2 us, the
 * watchdog never more than one tick late at that scale.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcb_nng.h"
#include "rcb_stall.h"

#include <nng/protocol/reqrep0/req.h>

struct lat {
    pthread_mutex_t mtx; /* protects e2e and idle (nng's thread records, main reads) */
    uint32_t T;
    uint64_t *t_sent; /* per run index */
    /* per run index, under mtx: when its terminal arrived (0: not yet),
     * and its idle_ms - T in ms (UINT32_MAX: none), for the attribution
     * to machine stalls (see lateness_outside_stalls) */
    uint64_t *t_arrived;
    uint32_t *idle_late_ms;
    uint32_t n;
    struct rcb_hist *e2e;     /* arrival - (sent + T); one connection: one callback at a time */
    struct rcb_hist *idle;    /* idle_ms - T, in ns */
    _Atomic uint64_t synth;   /* synthetic terminals seen */
    _Atomic uint64_t early;   /* arrived before sent + T (should be none) */
    _Atomic uint64_t evs;     /* every ev (pass 3: the N starts are drained first) */
    const char *tag;          /* only these runs' terminals are measured ("-w-", "-s-") */
    uint64_t t_first, t_last; /* first / last terminal received (ns), under mtx */
};

static void ev_cb(void *arg, uint32_t conn, const struct rcb_msg *m, uint64_t now)
{
    struct lat *l = arg;
    (void)conn;
    if (m->op == 'e') /* relaxed: a progress count; no data rides on it */
        atomic_fetch_add_explicit(&l->evs, 1, memory_order_relaxed);
    if (!m->synthetic || m->run == NULL)
        return;
    if (l->tag != NULL && memmem(m->run, m->run_len, l->tag, strlen(l->tag)) == NULL)
        return;
    /* run id "b<tag>-w-<index>" */
    uint64_t idx = 0;
    uint32_t i = m->run_len;
    while (i > 0 && m->run[i - 1] >= '0' && m->run[i - 1] <= '9')
        i--;
    for (uint32_t k = i; k < m->run_len; k++)
        idx = idx * 10 + (uint64_t)(m->run[k] - '0');
    atomic_fetch_add_explicit(&l->synth, 1, memory_order_relaxed);
    if (idx >= l->n)
        return;
    uint64_t due = l->t_sent[idx] + (uint64_t)l->T * 1000000ull;
    pthread_mutex_lock(&l->mtx);
    if (l->t_first == 0)
        l->t_first = now;
    l->t_last = now;
    if (now >= due)
        rcb_hist_record(l->e2e, now - due);
    else
        atomic_fetch_add_explicit(&l->early, 1, memory_order_relaxed);
    if (m->idle_ms >= l->T)
        rcb_hist_record(l->idle, (m->idle_ms - l->T) * 1000000ull);
    if (l->t_arrived) {
        l->t_arrived[idx] = now;
        if (m->idle_ms >= l->T && m->idle_ms - l->T < UINT32_MAX)
            l->idle_late_ms[idx] = (uint32_t)(m->idle_ms - l->T);
    }
    pthread_mutex_unlock(&l->mtx);
}

struct created_settle {
    const struct rcb_broker *b;
    double target;
    double seen;
};

/* Waits for the broker's runs_created_total to count every start. */
static uint64_t created_wait(void *arg, const struct rcb_pubs_result *r)
{
    struct created_settle *c = arg;
    (void)r;
    uint64_t t_last = 0;
    uint64_t t = rcb_wait_metric(c->b, "runcast_runs_created_total", c->target,
                                 rcb_now_ns() + 120000000000ull, 20, &c->seen, &t_last);
    return t ? t : t_last;
}

/* Sets up l for n runs tagged `tag` with watchdog T and subscribes one
 * connection to all runs; NULL (the figure `na_fig` reported n/a) when the
 * subscription fails.  lat_fini undoes both. */
static struct rcb_subs *lat_start(struct lat *l, const char *ws_url, uint32_t T, uint32_t n,
                                  const char *tag, const char *na_fig, bool per_run)
{
    *l = (struct lat){.T = T, .n = n, .tag = tag};
    pthread_mutex_init(&l->mtx, NULL);
    l->t_sent = calloc(n, sizeof(uint64_t));
    if (per_run) { /* no memory: the attribution is left out, not the pass */
        l->t_arrived = calloc(n, sizeof(uint64_t));
        l->idle_late_ms = malloc((size_t)n * sizeof(uint32_t));
        if (l->t_arrived == NULL || l->idle_late_ms == NULL) {
            free(l->t_arrived);
            free(l->idle_late_ms);
            l->t_arrived = NULL;
            l->idle_late_ms = NULL;
        } else {
            memset(l->idle_late_ms, 0xff, (size_t)n * sizeof(uint32_t));
        }
    }
    l->e2e = rcb_hist_new();
    l->idle = rcb_hist_new();
    struct rcb_subs *s = rcb_subs_new(ws_url, 1, ev_cb, l);
    if (s == NULL || rcb_subs_wait_connected(s, 10000) != 0 ||
        rcb_subs_sub(s, 0, NULL, true) != 0 || rcb_subs_wait_oks(s, 1, 10000) != 0) {
        struct rcb_subs_stats st = {0};
        if (s)
            rcb_subs_stats(s, &st);
        rcb_fig_na(na_fig, "ms", st.last_err[0] ? st.last_err : "subscriber failed");
        rcb_subs_free(s);
        return NULL;
    }
    return s;
}

static void lat_fini(struct lat *l, struct rcb_subs *s)
{
    rcb_subs_free(s);
    rcb_hist_free(l->e2e);
    rcb_hist_free(l->idle);
    pthread_mutex_destroy(&l->mtx);
    free(l->t_sent);
    free(l->t_arrived);
    free(l->idle_late_ms);
}

/* Lateness with the machine's own stalls taken out (rcb_stall_tally_add):
 * for each terminal, its lateness less the part of [due, due + lateness]
 * during which both CPUs were stalled (no broker design could have acted
 * then).  What is left is the lateness the broker is answerable for. */
static void lateness_outside_stalls(const struct lat *l, const struct rcb_stall_result *st,
                                    bool e2e, struct rcb_stall_tally *o)
{
    *o = (struct rcb_stall_tally){0};
    for (uint32_t i = 0; i < l->n; i++) {
        if (l->t_arrived[i] == 0)
            continue;
        uint64_t due = l->t_sent[i] + (uint64_t)l->T * 1000000ull, late;
        if (e2e) {
            if (l->t_arrived[i] <= due)
                continue;
            late = l->t_arrived[i] - due;
        } else {
            if (l->idle_late_ms[i] == UINT32_MAX)
                continue;
            late = (uint64_t)l->idle_late_ms[i] * 1000000ull;
        }
        rcb_stall_tally_add(o, st, due, late, RCB_STALL_GOAL_TICK_NS);
    }
}

static void outside_fig(const char *name, const struct rcb_stall_tally *o)
{
    char note[200];
    snprintf(note, sizeof(note),
             "each terminal's lateness less its part in a stall of both CPUs; %u terminals "
             "over 1 tick, %u of them within 1 tick with the stall taken out",
             o->over_tick, o->within_tick);
    rcb_fig(name, (double)o->max_ns / 1e6, "ms", "<= 1 tick (10 ms)", note);
}

/* Pass 3: steady expiries among N armed runs; returns false on failure. */
static bool pass_steady(struct rcb_broker *b, uint32_t N, uint32_t P, uint32_t B)
{
    bool sm = rcb_o.smoke;
    double rate = rcb_o.rate > 0 ? rcb_o.rate : sm ? 200 : 2000;
    double dur = rcb_o.duration_s > 0 ? rcb_o.duration_s : sm ? 1 : 5;
    uint32_t T = rcb_o.timeout_ms ? rcb_o.timeout_ms : sm ? 300 : 1000;
    uint32_t per_ms = (uint32_t)(rate / 1000.0 + 0.5);
    if (per_ms == 0)
        per_ms = 1;
    uint32_t msgs = (uint32_t)(dur * 1000.0 + 0.5);
    uint32_t ns = per_ms * msgs;
    bool ok = true;
    char err[200], note[256];

    struct lat l;
    struct rcb_subs *s = lat_start(&l, b->ws_url, T, ns, "-s-", "steady: watchdog lateness", true);
    nng_socket rq = NNG_SOCKET_INITIALIZER;
    if (s == NULL) {
        ok = false;
        goto out;
    }
    /* N armed runs, none due during the pass */
    rcb_log("runs: pass 3: %u armed runs (600 s watchdog), subscribed to all", N);
    uint64_t a0 = rcb_now_ns(), a1;
    err[0] = 0;
    uint64_t armed = rcb_start_runs(b->ack, "a", N, 600000, P, B, &a1, NULL, err, sizeof(err));
    uint64_t drain_end = rcb_now_ns() + 120000000000ull;
    while (atomic_load_explicit(&l.evs, memory_order_relaxed) < armed && rcb_now_ns() < drain_end &&
           !rcb_expired())
        rcb_sleep_ns(10000000);
    uint64_t a2 = rcb_now_ns();
    double active = rcb_broker_runs_active(b);
    snprintf(note, sizeof(note),
             "600 s watchdog; created in %.1f s, their starts drained by the subscriber in %.1f s",
             (double)(a1 - a0) / 1e9, (double)(a2 - a1) / 1e9);
    rcb_fig("steady: armed runs (not expiring)", (double)armed, "runs", NULL, err[0] ? err : note);
    rcb_fig("steady: broker-reported active runs", active, "runs", NULL,
            "/metrics, before the stream");
    if (armed == 0 || rcb_expired()) {
        ok = false;
        goto out;
    }

    /* the stream: per_ms starts in one acknowledged message every ms (the
     * phase against the broker's 10 ms ticks sweeps the whole tick) */
    int rv = rcb_req_open(&rq, b->ack);
    if (rv != 0) {
        rcb_fig_na("steady: watchdog lateness", "ms", nng_strerror(rv));
        ok = false;
        goto out;
    }
    rcb_log("runs: pass 3: %.0f runs/s for %.1f s, %u ms watchdog each", rate, dur, T);
    struct rc_buf mb;
    rc_buf_init(&mb);
    char id[96];
    uint64_t started = 0, behind = 0;
    /* the machine's own stalls over the same window (rcb_stall.h) */
    struct rcb_stall *probe = rcb_stall_start();
    uint64_t s0 = rcb_now_ns();
    for (uint32_t k = 0, i = 0; k < msgs && !rcb_expired(); k++) {
        uint64_t at = s0 + (uint64_t)k * 1000000ull;
        if (rcb_now_ns() > at + 1000000ull)
            behind++;
        rcb_sleep_until(at);
        rc_buf_reset(&mb);
        rcb_array_header(&mb, per_ms);
        for (uint32_t j = 0; j < per_ms; j++) {
            rcb_run_id(id, sizeof(id), "s", i + j);
            rcb_ev_encode_start(&mb, id, T);
        }
        uint64_t now = rcb_now_ns();
        for (uint32_t j = 0; j < per_ms; j++)
            l.t_sent[i + j] = now;
        nng_msg *m;
        if ((rv = nng_msg_alloc(&m, 0)) != 0 || (rv = nng_msg_append(m, mb.data, mb.len)) != 0 ||
            (rv = nng_sendmsg(rq, m, 0)) != 0 || (rv = nng_recvmsg(rq, &m, 0)) != 0) {
            snprintf(err, sizeof(err), "stream request: %s", nng_strerror(rv));
            break;
        }
        uint32_t acc, res;
        uint64_t sum;
        rcb_parse_ack(nng_msg_body(m), nng_msg_len(m), &acc, &sum, &res, err, sizeof(err));
        nng_msg_free(m);
        started += acc;
        i += per_ms;
    }
    uint64_t s1 = rcb_now_ns();
    rc_buf_fini(&mb);
    uint64_t deadline = s1 + (uint64_t)T * 1000000ull + 15000000000ull;
    while (atomic_load(&l.synth) < started && rcb_now_ns() < deadline && !rcb_expired())
        rcb_sleep_ns(10000000);
    rcb_sleep_ns(100000000);
    struct rcb_stall_result stall;
    rcb_stall_stop(probe, &stall);
    double active_end = rcb_broker_runs_active(b);

    pthread_mutex_lock(&l.mtx); /* held while reading the histograms */
    snprintf(
        note, sizeof(note),
        "%.0f runs/s for %.1f s (%llu messages more than 1 ms behind), T %u ms; of %llu started",
        (double)started / ((double)(s1 - s0) / 1e9), (double)(s1 - s0) / 1e9,
        (unsigned long long)behind, T, (unsigned long long)started);
    rcb_fig("steady: synthesized terminals received", (double)atomic_load(&l.synth), "runs", NULL,
            note);
    snprintf(note, sizeof(note), "/metrics after the stream (armed ones: %u)", N);
    rcb_fig("steady: broker-reported active runs at the end", active_end, "runs", NULL, note);
    if (l.idle->count) {
        rcb_fig("steady: broker idle_ms - T p50", (double)rcb_hist_pct(l.idle, 50) / 1e6, "ms",
                "<= 1 tick (10 ms)", "from the terminal's data.idle_ms (whole ms)");
        rcb_fig("steady: broker idle_ms - T p99", (double)rcb_hist_pct(l.idle, 99) / 1e6, "ms",
                "<= 1 tick (10 ms)", NULL);
        rcb_fig("steady: broker idle_ms - T p99.9", (double)rcb_hist_pct(l.idle, 99.9) / 1e6, "ms",
                "<= 1 tick (10 ms)", NULL);
        rcb_fig("steady: broker idle_ms - T max", (double)l.idle->max / 1e6, "ms",
                "<= 1 tick (10 ms)", NULL);
    } else {
        rcb_fig_na("steady: broker idle_ms - T", "ms", "no idle_ms in the terminals");
        ok = false;
    }
    snprintf(note, sizeof(note),
             "arrival - (start sent + T); %llu early; subscriber in this process",
             (unsigned long long)atomic_load(&l.early));
    if (l.e2e->count) {
        rcb_fig("steady: subscriber lateness p50", (double)rcb_hist_pct(l.e2e, 50) / 1e6, "ms",
                NULL, note);
        rcb_fig("steady: subscriber lateness p99", (double)rcb_hist_pct(l.e2e, 99) / 1e6, "ms",
                NULL, NULL);
        rcb_fig("steady: subscriber lateness p99.9", (double)rcb_hist_pct(l.e2e, 99.9) / 1e6, "ms",
                NULL, NULL);
        rcb_fig("steady: subscriber lateness max", (double)l.e2e->max / 1e6, "ms", NULL, NULL);
    }
    if (stall.probes == 2) {
        snprintf(note, sizeof(note),
                 "the machine alone, same window: two 1 ms sleepers pinned to 2 CPUs, late "
                 "at once; %u such stretches over 5 ms",
                 stall.together_over_5ms);
        rcb_fig("steady: machine stall, both CPUs, longest", (double)stall.together_max_ns / 1e6,
                "ms", NULL, note);
    }
    if (stall.probes > 0)
        rcb_fig("steady: machine stall, one CPU, longest", (double)stall.late_max_ns / 1e6, "ms",
                NULL, "the latest wake-up of either 1 ms sleeper");
    if (stall.probes == 2 && stall.together && l.t_arrived) {
        struct rcb_stall_tally o;
        lateness_outside_stalls(&l, &stall, false, &o);
        outside_fig("steady: broker idle_ms - T max outside machine stalls", &o);
        lateness_outside_stalls(&l, &stall, true, &o);
        outside_fig("steady: subscriber lateness max outside machine stalls", &o);
    }
    pthread_mutex_unlock(&l.mtx);
    rcb_stall_result_fini(&stall);
    if (atomic_load(&l.synth) == 0)
        ok = false;
out:
    if (nng_socket_id(rq) > 0)
        nng_close(rq);
    lat_fini(&l, s);
    return ok;
}

/* Passes 1 and 2 (memory and creation; the mass expiry); false on failure. */
static bool pass_mass(struct rcb_broker *bp, uint32_t N, uint32_t T, uint32_t B, uint32_t P)
{
    struct rcb_broker b = *bp; /* read only: the URLs and the pid */
    bool sm = rcb_o.smoke;
    bool ok = true;
    char err[200], note[256];

    /* ---- pass 1: creation rate and memory per run ---- */
    rcb_sleep_ns(500000000);
    struct rcb_mem m0, m1, m2;
    rcb_broker_mem(&b, &m0);
    rcb_log("runs: pass 1: creating %u runs (start events over PUSH in batches of %u)", N, B);
    char *mt = rcb_metrics(&b);
    double created0 = rcb_metric(mt, "runcast_runs_created_total", NULL);
    free(mt);
    struct rcb_pubs_cfg pc = {.mode = RCB_PUB_RAW,
                              .url = b.ingest,
                              .threads = P,
                              .runs = N,
                              .run_tag = "m",
                              .events = N,
                              .batch = B,
                              .size = 64,
                              .starts = true,
                              .start_timeout_ms = 0};
    double rej0 = rcb_broker_rejected(&b, NULL);
    struct rcb_pubs_result pr;
    struct created_settle cs = {.b = &b, .target = (isnan(created0) ? 0 : created0) + (double)N};
    pc.settle = created_wait;
    pc.settle_arg = &cs;
    rcb_pubs_run(&pc, &pr);
    double seen = cs.seen;
    uint64_t t1 = pr.t_settled ? pr.t_settled : pr.t_end;
    uint64_t t0 = pr.t_start;
    uint64_t made =
        isnan(seen) ? pr.events_sent : (uint64_t)(seen - (isnan(created0) ? 0 : created0));
    double rej = rcb_broker_rejected(&b, NULL) - rej0;
    if (pr.err[0])
        snprintf(err, sizeof(err), "%s", pr.err);
    else if (made < N)
        snprintf(err, sizeof(err), "%llu starts sent; broker rejected %.0f",
                 (unsigned long long)pr.events_sent, rej);
    else
        err[0] = 0;
    double active = rcb_broker_runs_active(&b);
    rcb_broker_mem(&b, &m1);
    double rate = rcb_rate((double)made, t1 - t0);
    rcb_log("runs: %llu created in %.2f s", (unsigned long long)made, (double)(t1 - t0) / 1e9);
    rcb_fig("runs created (pass 1)", (double)made, "runs", NULL, err[0] ? err : NULL);
    rcb_fig("creation rate (PUSH batches)", rate, "runs/s", NULL,
            "start + watchdog armed; until runs_created_total counts them");
    rcb_fig("  time per run", rate > 0 ? 1e6 / rate : NAN, "us", "<= 2",
            "wall time / runs, bench and broker on 2 cores");
    rcb_fig("broker-reported active runs", active, "runs", NULL, "/metrics");
    double n = made ? (double)made : NAN;
    rcb_fig("RSS per run", (m1.rss - m0.rss) / n, "B", "<= 512", "VmRSS delta / N");
    rcb_fig("allocated per run", (m1.allocated - m0.allocated) / n, "B", "<= 512",
            "jemalloc allocated delta / N; the start retained in history");
    rcb_fig("broker RSS with N runs", m1.rss / 1048576.0, "MiB", "<= 512 (1M runs)", NULL);
    rcb_log("runs: retiring pass 1");
    uint64_t r0 = rcb_now_ns();
    rcb_retire_runs(b.ack, "m", N); /* every index: some may have been created late */
    uint64_t r1 = rcb_now_ns();
    rcb_fig("retire rate (acked complete)", rcb_rate((double)N, r1 - r0), "runs/s", NULL, NULL);
    rcb_sleep_ns(sm ? 500000000ull : 3500000000ull); /* retention 1s + tombstone 2s */
    rcb_broker_mem(&b, &m2);
    rcb_fig("broker RSS after retiring", m2.rss / 1048576.0, "MiB", NULL, NULL);
    rcb_fig("allocated after retiring", m2.allocated / 1048576.0, "MiB", NULL, NULL);
    if (made == 0)
        ok = false;

    /* ---- pass 2: watchdog lateness ---- */
    if (!rcb_expired() && made > 0) {
        /* by default, T is long enough for every run to be armed before the
         * first one fires (pass 2 creates more slowly than pass 1: it
         * subscribes every run too): 3 x pass 1's creation time, 10-60 s */
        if (rcb_o.timeout_ms == 0 && !sm) {
            double c1 = (double)(t1 - t0) / 1e9 * 3;
            T = (uint32_t)(c1 < 10 ? 10000 : c1 > 60 ? 60000 : c1 * 1000);
            rcb_log("runs: watchdog for pass 2: %u ms", T);
        }
        struct lat l;
        struct rcb_subs *s = lat_start(&l, b.ws_url, T, N, "-w-", "mass expiry: lateness", false);
        if (s == NULL) {
            ok = false;
        } else {
            rcb_log("runs: pass 2: %u runs with a %u ms watchdog, subscribed to all", N, T);
            uint64_t a0 = rcb_now_ns(), a1;
            err[0] = 0;
            uint64_t made2 =
                rcb_start_runs(b.ack, "w", N, T, P, B, &a1, l.t_sent, err, sizeof(err));
            uint64_t deadline = a1 + (uint64_t)T * 1000000ull + 30000000000ull;
            uint64_t prev = 0, last_change = rcb_now_ns();
            while (atomic_load(&l.synth) < made2 && rcb_now_ns() < deadline && !rcb_expired()) {
                uint64_t v = atomic_load(&l.synth);
                if (v != prev) {
                    prev = v;
                    last_change = rcb_now_ns();
                } else if (rcb_now_ns() - last_change > (uint64_t)T * 1000000ull + 5000000000ull) {
                    break;
                }
                rcb_sleep_ns(10000000);
            }
            rcb_sleep_ns(100000000);
            pthread_mutex_lock(&l.mtx); /* held while reading the histograms */
            double creation_s = (double)(a1 - a0) / 1e9;
            rcb_fig("mass expiry: creation rate (acked REQ batches, subscribed)",
                    rcb_rate((double)made2, a1 - a0), "runs/s", NULL,
                    "pass 2: every run also attached to the `all` subscriber");
            snprintf(note, sizeof(note), "of %llu runs; creation took %.1f s vs T %.1f s",
                     (unsigned long long)made2, creation_s, T / 1000.0);
            rcb_fig("mass expiry: synthesized terminals received", (double)atomic_load(&l.synth),
                    "runs", NULL, note);
            if (l.t_last > l.t_first)
                rcb_fig("mass expiry: terminals/s received (throughput)",
                        rcb_rate((double)atomic_load(&l.synth), l.t_last - l.t_first), "runs/s",
                        NULL, "first to last synthesized terminal at the subscriber");
            snprintf(note, sizeof(note), "arrival - (start sent + T); %llu early",
                     (unsigned long long)atomic_load(&l.early));
            if (l.e2e->count) {
                rcb_fig("mass expiry: lateness p50 (end to end)",
                        (double)rcb_hist_pct(l.e2e, 50) / 1e6, "ms", NULL, note);
                rcb_fig("mass expiry: lateness p99 (end to end)",
                        (double)rcb_hist_pct(l.e2e, 99) / 1e6, "ms", NULL, NULL);
                rcb_fig("mass expiry: lateness max (end to end)", (double)l.e2e->max / 1e6, "ms",
                        NULL, NULL);
            } else {
                rcb_fig_na("mass expiry: lateness (end to end)", "ms", "no synthetic terminals");
            }
            if (l.idle->count) {
                rcb_fig("mass expiry: broker idle_ms - T p50",
                        (double)rcb_hist_pct(l.idle, 50) / 1e6, "ms", NULL,
                        "throughput case: N runs due within the creation time");
                rcb_fig("mass expiry: broker idle_ms - T p99",
                        (double)rcb_hist_pct(l.idle, 99) / 1e6, "ms", NULL, NULL);
                rcb_fig("mass expiry: broker idle_ms - T max", (double)l.idle->max / 1e6, "ms",
                        NULL, NULL);
            } else {
                rcb_fig_na("mass expiry: broker idle_ms - T", "ms", "no idle_ms in the terminals");
            }
            pthread_mutex_unlock(&l.mtx);
            struct rcb_subs_stats st;
            rcb_subs_stats(s, &st);
            if (st.closed)
                rcb_log("runs: the subscriber was closed (%s)", st.last_err);
            if (atomic_load(&l.synth) == 0)
                ok = false;
        }
        lat_fini(&l, s);
    }
    return ok;
}

int rcb_s_runs(void)
{
    bool sm = rcb_o.smoke;
    uint32_t N = rcb_o.runs ? rcb_o.runs : sm ? 2000 : 1000000;
    uint32_t T = rcb_o.timeout_ms ? rcb_o.timeout_ms : sm ? 500 : 10000;
    uint32_t B = rcb_o.batch ? rcb_o.batch : 1024;
    uint32_t P = rcb_o.publishers ? rcb_o.publishers : 2;

    const char *w = rcb_o.workload ? rcb_o.workload : "all";
    bool mass = strcmp(w, "steady") != 0, steady = strcmp(w, "mass") != 0;

    rcb_report_begin("runs", "concurrent runs with armed watchdogs");
    rcb_report_param("N", "%u", N);
    if (mass && rcb_o.timeout_ms == 0 && !sm)
        rcb_report_param("watchdog_ms", "auto");
    else if (mass)
        rcb_report_param("watchdog_ms", "%u", T);
    rcb_report_param("batch", "%u", B);
    rcb_report_param("requesters", "%u", P);
    if (steady) {
        rcb_report_param("steady_rate", "%.0f", rcb_o.rate > 0 ? rcb_o.rate : sm ? 200 : 2000);
        rcb_report_param("steady_s", "%.1f",
                         rcb_o.duration_s > 0 ? rcb_o.duration_s
                         : sm                 ? 1.0
                                              : 5.0);
        rcb_report_param("steady_watchdog_ms", "%u",
                         rcb_o.timeout_ms ? rcb_o.timeout_ms
                         : sm             ? 300
                                          : 1000);
    }

    struct rcb_broker b;
    char maxr[32], qmax[32];
    snprintf(maxr, sizeof(maxr), "%u", N * 2 + 1000);
    snprintf(qmax, sizeof(qmax), "%s", "1GiB");
    const char *extra[] = {"--publisher-grace",
                           "0",
                           "--max-runs",
                           maxr,
                           "--retention",
                           "1s",
                           "--tombstone-ttl",
                           "2s",
                           "--ws-queue-max",
                           qmax,
                           "--watchdog-tick",
                           "10ms",
                           NULL};
    if (rcb_broker_start(&b, extra) != 0) {
        rcb_report_end(false, "could not start or reach runcastd");
        return -1;
    }
    bool ok = true;

    if (mass)
        ok = pass_mass(&b, N, T, B, P);
    if (steady && !rcb_expired()) {
        if (mass)
            rcb_sleep_ns(sm ? 500000000ull : 3500000000ull); /* pass 2's runs retire */
        if (!pass_steady(&b, N, P, B))
            ok = false;
    }
    rcb_broker_stop(&b);
    rcb_report_end(ok, ok ? NULL : "runs could not be created or no watchdog fired");
    return ok ? 0 : -1;
}
