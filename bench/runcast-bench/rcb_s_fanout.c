/*
 * Scenario `fanout`: WebSocket delivery through the edge (issue 6).
 *
 *   W1  1 run, 1 subscriber      latency at 5,000 events/s, then max events/s
 *   W2  1 run, S subscribers     deliveries/s and latency as the publish rate
 *                                rises (open loop), then at the maximum
 *   W3  R runs, 1 subscriber each
 *
 * Events go through the publisher library (PUSH, adaptive batching) from one
 * open-loop thread: event i is due at t0 + i/rate and carries its due time
 * (CLOCK_MONOTONIC ns) in data[0]; the subscriber records receive time minus
 * due time, so a stall anywhere (publisher included) counts in full
 * (coordinated omission corrected).  Subscribers are nng ws dialers with aio
 * callbacks.  In the same run, the raw nng WebSocket baseline: our own ws
 * listener sending ev frames of the same size to the same number of
 * connections as fast as nng sends them.
 *
 * Per step, the broker's own share is read from its /metrics histogram
 * runcast_fanout_latency_seconds (ingress receive -> frame written to the
 * socket), so one run shows how much of the end-to-end latency is the
 * broker's.  RCB_FANOUT_PUB=raw publishes with one plain blocking nng
 * PUSH send per event instead of the publisher library (to tell the
 * library's share from the rest).  RCB_FANOUT_LAT_ONLY=1 runs only the
 * rate steps (no max step, no raw baseline): for repeated A/B latency runs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rc_atomic.h"
#include "rcb_nng.h"
#include "rcb_raw.h"

struct track {
    uint64_t nk;
    _Atomic uint64_t *first, *last; /* relaxed CAS min/max; read after the drain */
    struct track *next;
};

struct recv_state {
    _Atomic uint64_t last_ns; /* relaxed: latest receive time seen (monotonic max is close
                                 enough: one store per delivery, read after quiescence) */
    /* per event index k of the current step (NULL: not tracked): the first
     * and the last delivery time over all subscribers.  The pointer is
     * published with release and read with acquire by the callbacks; a
     * step's track is retired (not freed) at its end, since a late callback
     * may still hold it, and freed once the subscribers are gone. */
    _Atomic(struct track *) tr;
    struct track *retired; /* main thread only */
};

static void ev_cb(void *arg, uint32_t conn, const struct rcb_msg *m, uint64_t now)
{
    struct recv_state *rs = arg;
    (void)conn;
    rc_atomic_max_u64(&rs->last_ns, now);
    struct track *t = atomic_load_explicit(&rs->tr, memory_order_acquire);
    if (t != NULL && m->has_k && m->k < t->nk) {
        rc_atomic_min_u64(&t->first[m->k], now);
        rc_atomic_max_u64(&t->last[m->k], now);
    }
}

struct step {
    double offered;   /* events/s published (0: max) */
    double delivered; /* deliveries/s achieved */
    uint64_t expect, got;
    struct rcb_hist h;
    uint64_t closed;
    struct rcb_hist *spread; /* fan-out: last - first delivery of one event */
    struct rcb_hist *first;  /* fan-out: first delivery - due time */
};

static enum rcb_pub_mode pub_mode(void)
{
    const char *e = getenv("RCB_FANOUT_PUB");
    if (e != NULL && strcmp(e, "raw") == 0)
        return RCB_PUB_RAW;
#ifdef RCB_HAVE_CLIENT
    return RCB_PUB_LIB;
#else
    return RCB_PUB_RAW;
#endif
}

/* The broker's fan-out latency histogram (cumulative bucket counts by
 * upper bound in seconds), parsed from /metrics. */
#define BLAT_MAX 32
struct blat {
    int n;
    double le[BLAT_MAX], cum[BLAT_MAX];
};

static void blat_read(const struct rcb_broker *b, struct blat *h)
{
    static const char key[] = "runcast_fanout_latency_seconds_bucket{le=\"";
    h->n = 0;
    char *t = rcb_metrics(b);
    for (const char *p = t ? strstr(t, key) : NULL; p != NULL && h->n < BLAT_MAX;
         p = strstr(p + 1, key)) {
        const char *v = p + sizeof(key) - 1;
        h->le[h->n] = strncmp(v, "+Inf", 4) == 0 ? INFINITY : strtod(v, NULL);
        const char *sp = strchr(v, ' ');
        if (sp == NULL)
            break;
        h->cum[h->n++] = strtod(sp + 1, NULL);
    }
    free(t);
}

/* Figures for the deliveries between two readings: the bucket bound under
 * which 50% and 99% fall, and the share within 1 ms. */
static void blat_figs(const char *name, const struct blat *a, const struct blat *z)
{
    char fname[128], note[96];
    if (a->n == 0 || a->n != z->n)
        return;
    double total = z->cum[z->n - 1] - a->cum[a->n - 1];
    if (total <= 0)
        return;
    const double pct[] = {50, 99};
    for (int j = 0; j < 2; j++) {
        int i = 0;
        while (i < z->n - 1 && z->cum[i] - a->cum[i] < total * pct[j] / 100)
            i++;
        snprintf(fname, sizeof(fname), "%s broker share p%.0f (bucket)", name, pct[j]);
        snprintf(note, sizeof(note), "<= this bound; ingress receive -> frame written, %.0f deliv",
                 total);
        rcb_fig(fname, z->le[i] * 1e6, "us", NULL, note);
    }
    for (int i = 0; i < z->n; i++)
        if (z->le[i] >= 0.000999 && z->le[i] <= 0.001001) {
            snprintf(fname, sizeof(fname), "%s broker share <= 1 ms", name);
            rcb_fig(fname, 100.0 * (z->cum[i] - a->cum[i]) / total, "%", NULL, NULL);
        }
}

/* One step: publish `events` to runs of tag (round robin) at `rate` (0:
 * max), wait for every delivery (bounded), measure. */
static void do_step(struct rcb_broker *b, struct rcb_subs *subs, struct recv_state *rs,
                    const char *tag, uint32_t runs, uint32_t fan, uint64_t events, double rate,
                    uint32_t size, struct step *st)
{
    memset(st, 0, sizeof(*st));
    st->offered = rate;
    struct rcb_subs_stats s0, s1;
    /* drain: late deliveries of the previous step must not count here */
    uint64_t quiet_since = rcb_now_ns(), drain_end = quiet_since + 10000000000ull;
    rcb_subs_stats(subs, &s0);
    while (rcb_now_ns() < drain_end && !rcb_expired()) {
        rcb_sleep_ns(50000000);
        rcb_subs_stats(subs, &s1);
        if (s1.evs != s0.evs) {
            s0 = s1;
            quiet_since = rcb_now_ns();
        } else if (rcb_now_ns() - quiet_since >= 300000000ull) {
            break;
        }
    }
    rcb_subs_stats(subs, &s0);
    rcb_subs_hist_reset(subs);
    atomic_store(&rs->last_ns, 0);
    /* fan-out of one run to several subscribers: track each event's first
     * and last delivery (the spread shows how serial the fan-out is) */
    struct track *tr = NULL;
    if (fan > 1 && runs == 1) {
        tr = calloc(1, sizeof(*tr));
        tr->first = malloc(events * sizeof(*tr->first));
        tr->last = malloc(events * sizeof(*tr->last));
        for (uint64_t k = 0; k < events; k++) {
            atomic_init(&tr->first[k], UINT64_MAX);
            atomic_init(&tr->last[k], 0);
        }
        tr->nk = events;
        atomic_store_explicit(&rs->tr, tr, memory_order_release); /* pairs with ev_cb */
    }
    struct rcb_pubs_cfg c = {.mode = pub_mode(),
                             .url = b->ingest,
                             .threads = 1,
                             .runs = runs,
                             .run_tag = tag,
                             .events = events,
                             .batch = rate > 0 ? 64 : 256,
                             .size = size,
                             .rate = rate};
    struct rcb_pubs_result r;
    rcb_pubs_run(&c, &r);
    st->expect = r.events_sent * fan;
    uint64_t deadline = rcb_now_ns() + 10000000000ull, last_change = rcb_now_ns(), prev = 0;
    for (;;) {
        rcb_subs_stats(subs, &s1);
        uint64_t got = s1.evs - s0.evs;
        uint64_t now = rcb_now_ns();
        if (got >= st->expect || now > deadline || rcb_expired())
            break;
        if (got != prev) {
            prev = got;
            last_change = now;
        } else if (now - last_change > 2000000000ull) {
            break; /* nothing more is coming */
        }
        rcb_sleep_ns(2000000);
    }
    rcb_subs_stats(subs, &s1);
    st->got = s1.evs - s0.evs;
    st->closed = s1.closed - s0.closed;
    uint64_t last = atomic_load(&rs->last_ns);
    st->delivered = last > r.t_start ? rcb_rate((double)st->got, last - r.t_start) : 0;
    rcb_subs_hist(subs, &st->h);
    if (tr != NULL) {
        atomic_store_explicit(&rs->tr, NULL, memory_order_release);
        st->spread = rcb_hist_new();
        st->first = rcb_hist_new();
        double per = rate > 0 ? 1e9 / rate : 0;
        for (uint64_t k = 0; k < tr->nk; k++) {
            uint64_t f = atomic_load_explicit(&tr->first[k], memory_order_relaxed);
            uint64_t l = atomic_load_explicit(&tr->last[k], memory_order_relaxed);
            if (f == UINT64_MAX)
                continue;
            rcb_hist_record(st->spread, l - f);
            uint64_t due = r.t_start + (uint64_t)(per * (double)k);
            if (rate > 0 && f >= due)
                rcb_hist_record(st->first, f - due);
        }
        tr->next = rs->retired;
        rs->retired = tr;
    }
}

void rcb_fanout_raw(uint32_t conns, uint64_t per_conn, uint32_t per_frame, uint32_t size,
                    double *rate, struct rcb_hist *h, char *note, size_t nl)
{
    *rate = NAN;
    note[0] = 0;
    struct rcb_wsbase *w = rcb_wsbase_new(size, per_frame);
    if (w == NULL) {
        snprintf(note, nl, "cannot listen");
        return;
    }
    int port = rcb_wsbase_port(w);
    char url[96];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d/ws", port);
    struct recv_state rs = {0};
    struct rcb_subs *s = rcb_subs_new(url, conns, ev_cb, &rs);
    if (s == NULL || rcb_subs_wait_connected(s, 20000) != 0) {
        snprintf(note, nl, "connect failed");
        rcb_subs_free(s);
        rcb_wsbase_free(w);
        return;
    }
    /* wait for every hello so all connections were accepted */
    struct rcb_subs_stats st;
    uint64_t dl = rcb_now_ns() + 10000000000ull;
    do {
        rcb_subs_stats(s, &st);
        if (st.hellos >= conns)
            break;
        rcb_sleep_ns(2000000);
    } while (rcb_now_ns() < dl);
    rcb_subs_hist_reset(s);
    uint64_t t0 = rcb_now_ns();
    rcb_wsbase_go(w, per_conn, 0);
    uint64_t expect = per_conn * conns * (per_frame ? per_frame : 1), prev = 0,
             last_change = rcb_now_ns();
    dl = rcb_now_ns() + 60000000000ull;
    for (;;) {
        rcb_subs_stats(s, &st);
        uint64_t now = rcb_now_ns();
        if (st.evs >= expect || now > dl || rcb_expired())
            break;
        if (st.evs != prev) {
            prev = st.evs;
            last_change = now;
        } else if (now - last_change > 2000000000ull) {
            break;
        }
        rcb_sleep_ns(1000000);
    }
    rcb_subs_stats(s, &st);
    uint64_t last = atomic_load(&rs.last_ns);
    *rate = last > t0 ? rcb_rate((double)st.evs, last - t0) : 0;
    rcb_subs_hist(s, h);
    if (st.evs < expect)
        snprintf(note, nl, "got %llu of %llu", (unsigned long long)st.evs,
                 (unsigned long long)expect);
    else
        snprintf(note, nl, "%u conns x %llu frames of %u ev, as fast as nng sends", conns,
                 (unsigned long long)per_conn, per_frame ? per_frame : 1);
    rcb_subs_free(s);
    rcb_wsbase_free(w);
}

static bool workload(struct rcb_broker *b, const char *name, uint32_t runs, uint32_t nsubs,
                     const double *rates, int nrates, double step_s, uint64_t max_events,
                     uint32_t size, const char *goal_rate, const char *goals[3],
                     double goal_rate_at)
{
    char tag[16], fname[96], note[160];
    snprintf(tag, sizeof(tag), "%s", name);
    char err[160];
    uint64_t t_done;
    rcb_log("fanout %s: starting %u runs, %u subscribers", name, runs, nsubs);
    uint64_t started = rcb_start_runs(b->ack, tag, runs, 0, runs > 100 ? 2 : 1, 256, &t_done, NULL,
                                      err, sizeof(err));
    if (started < runs) {
        snprintf(fname, sizeof(fname), "%s", name);
        rcb_fig_na(fname, "", err[0] ? err : "runs not started");
        return false;
    }
    struct recv_state rs = {0};
    struct rcb_subs *subs = rcb_subs_new(b->ws_url, nsubs, ev_cb, &rs);
    if (subs == NULL || rcb_subs_wait_connected(subs, 30000) != 0) {
        struct rcb_subs_stats st = {0};
        if (subs)
            rcb_subs_stats(subs, &st);
        snprintf(note, sizeof(note), "subscribers: %llu up, %llu failed: %s",
                 (unsigned long long)st.connected, (unsigned long long)st.failed, st.last_err);
        rcb_fig_na(name, "", note);
        rcb_subs_free(subs);
        return false;
    }
    char id[96];
    for (uint32_t i = 0; i < nsubs; i++) {
        rcb_run_id(id, sizeof(id), tag, runs == 1 ? 0 : i % runs);
        rcb_subs_sub(subs, i, id, false);
    }
    if (rcb_subs_wait_oks(subs, nsubs, 20000) != 0) {
        struct rcb_subs_stats st;
        rcb_subs_stats(subs, &st);
        snprintf(note, sizeof(note), "%llu of %u subscriptions confirmed; %s",
                 (unsigned long long)st.oks, nsubs, st.last_err);
        rcb_fig_na(name, "", note);
        rcb_subs_free(subs);
        return false;
    }
    uint32_t fan = runs == 1 ? nsubs : 1;
    double best = 0;
    /* per step: offered deliveries/s and the latency histogram, for the
     * "at up to half the maximum load" summary (goal_rate_at < 0) */
    struct rcb_hist **sh = calloc((size_t)nrates + 1, sizeof(*sh));
    double *soff = calloc((size_t)nrates + 1, sizeof(*soff));
    int nsteps = 0;
    for (int i = 0; i < nrates && !rcb_expired(); i++) {
        struct step st;
        uint64_t n = (uint64_t)(rates[i] * step_s);
        if (n < 10)
            n = 10;
        rcb_log("fanout %s: %.0f events/s for %.1f s (%llu deliveries expected)", name, rates[i],
                step_s, (unsigned long long)(n * fan));
        struct blat la, lz;
        blat_read(b, &la);
        do_step(b, subs, &rs, tag, runs, fan, n, rates[i], size, &st);
        blat_read(b, &lz);
        snprintf(fname, sizeof(fname), "%s @ %.0f ev/s:", name, rates[i]);
        blat_figs(fname, &la, &lz);
        snprintf(fname, sizeof(fname), "%s @ %.0f ev/s: deliveries", name, rates[i]);
        snprintf(note, sizeof(note), "offered %.0f/s; got %llu/%llu%s", rates[i] * fan,
                 (unsigned long long)st.got, (unsigned long long)st.expect,
                 st.closed ? "; connections closed!" : "");
        rcb_fig(fname, st.delivered, "deliv/s", rates[i] == goal_rate_at ? goal_rate : NULL, note);
        snprintf(fname, sizeof(fname), "%s @ %.0f ev/s:", name, rates[i]);
        bool goal_here = goal_rate_at > 0 && rates[i] == goal_rate_at;
        if (st.spread != NULL && st.spread->count > 0) {
            char sname[96];
            snprintf(sname, sizeof(sname), "%s @ %.0f ev/s: first delivery p50", name, rates[i]);
            rcb_fig(sname, (double)rcb_hist_pct(st.first, 50) / 1e3, "us", NULL,
                    "fastest subscriber of each event");
            snprintf(sname, sizeof(sname), "%s @ %.0f ev/s: fan-out spread p50", name, rates[i]);
            rcb_fig(sname, (double)rcb_hist_pct(st.spread, 50) / 1e3, "us", NULL,
                    "last - first delivery of one event");
            snprintf(sname, sizeof(sname), "%s @ %.0f ev/s: fan-out spread p99", name, rates[i]);
            rcb_fig(sname, (double)rcb_hist_pct(st.spread, 99) / 1e3, "us", NULL, NULL);
        }
        rcb_hist_free(st.spread);
        rcb_hist_free(st.first);
        sh[nsteps] = rcb_hist_new();
        if (sh[nsteps])
            *sh[nsteps] = st.h;
        soff[nsteps++] = rates[i] * fan;
        rcb_fig_latency(fname, &st.h, goal_here ? goals[0] : NULL, goal_here ? goals[1] : NULL,
                        goal_here ? goals[2] : NULL);
        if (st.delivered > best)
            best = st.delivered;
        if (st.got < st.expect * 9 / 10) {
            rcb_log("fanout %s: saturated (%.0f%% delivered); no higher steps", name,
                    100.0 * (double)st.got / (double)(st.expect ? st.expect : 1));
            break;
        }
    }
    const char *lo = getenv("RCB_FANOUT_LAT_ONLY");
    bool lat_only = lo != NULL && strcmp(lo, "1") == 0;
    if (max_events > 0 && !lat_only && !rcb_expired()) {
        struct step st;
        rcb_log("fanout %s: %llu events as fast as possible", name, (unsigned long long)max_events);
        do_step(b, subs, &rs, tag, runs, fan, max_events, 0, size, &st);
        snprintf(fname, sizeof(fname), "%s max: deliveries", name);
        snprintf(note, sizeof(note), "got %llu/%llu%s", (unsigned long long)st.got,
                 (unsigned long long)st.expect, st.closed ? "; connections closed!" : "");
        rcb_fig(fname, st.delivered, "deliv/s", goal_rate, note);
        if (st.delivered > best)
            best = st.delivered;
        rcb_hist_free(st.spread);
        rcb_hist_free(st.first);
    }
    if (goal_rate_at < 0) {
        int pick = -1;
        for (int i = 0; i < nsteps; i++)
            if (soff[i] <= best / 2 && sh[i])
                pick = i;
        if (pick >= 0) {
            snprintf(fname, sizeof(fname), "%s <= half max (%.0f deliv/s):", name, soff[pick]);
            rcb_fig_latency(fname, sh[pick], goals[0], goals[1], goals[2]);
        } else {
            snprintf(fname, sizeof(fname), "%s latency at <= half max", name);
            rcb_fig_na(fname, "us", "no step at or under half the maximum");
        }
    }
    for (int i = 0; i < nsteps; i++)
        rcb_hist_free(sh[i]);
    free(sh);
    free(soff);
    /* the edge's ceiling: raw nng WebSocket, same connection count, one ev
     * per frame and 32 coalesced per frame (the edge coalesces under load) */
    struct rcb_hist *bh = rcb_hist_new();
    uint64_t total = rcb_o.smoke ? 2000 : nsubs >= 100 ? 200000 : 200000;
    double base1 = NAN, base32 = NAN;
    for (int k = 0; k < 2 && !lat_only && !rcb_expired(); k++) {
        uint32_t pf = k == 0 ? 1 : 32;
        uint64_t per = total / nsubs / pf * (k == 0 ? 1 : 4);
        if (per < 1)
            per = 1;
        rcb_log("fanout %s: raw nng WebSocket baseline, %u connections, %u ev/frame", name, nsubs,
                pf);
        double *base = k == 0 ? &base1 : &base32;
        rcb_fanout_raw(nsubs, per, pf, size, base, bh, note, sizeof(note));
        snprintf(fname, sizeof(fname), "%s raw nng ws, %u ev/frame", name, pf);
        rcb_fig(fname, *base, "deliv/s", "baseline", note);
    }
    snprintf(fname, sizeof(fname), "%s best / raw nng ws (1 ev/frame)", name);
    rcb_fig(fname, best / base1, "x", NULL, NULL);
    snprintf(fname, sizeof(fname), "%s best / raw nng ws (32 ev/frame)", name);
    rcb_fig(fname, best / base32, "x", NULL, NULL);
    rcb_hist_free(bh);

    struct rcb_subs_stats st;
    rcb_subs_stats(subs, &st);
    if (st.errs)
        rcb_log("fanout %s: %llu err frames, last: %s", name, (unsigned long long)st.errs,
                st.last_err);
    rcb_subs_free(subs);
    while (rs.retired) {
        struct track *t = rs.retired;
        rs.retired = t->next;
        free(t->first);
        free(t->last);
        free(t);
    }
    rcb_retire_runs(b->ack, tag, runs);
    return true;
}

int rcb_s_fanout(void)
{
    bool sm = rcb_o.smoke;
    const char *w = rcb_o.workload ? rcb_o.workload : "all";
    uint32_t S = rcb_o.subs ? rcb_o.subs : sm ? 20 : 1000;
    uint32_t R = rcb_o.runs ? rcb_o.runs : sm ? 20 : 1000;
    uint32_t size = rcb_o.size ? rcb_o.size : 200;
    double step = rcb_o.duration_s > 0 ? rcb_o.duration_s : sm ? 0.3 : 3;
    bool all = strcasecmp(w, "all") == 0;

    rcb_report_begin("fanout", "WebSocket fan-out through the edge vs raw nng WebSocket");
    rcb_report_param("workload", "%s", w);
    rcb_report_param("S", "%u", S);
    rcb_report_param("R", "%u", R);
    rcb_report_param("size", "%u", size);
    rcb_report_param("step_s", "%.1f", step);
    rcb_raise_nofile(65536);

    struct rcb_broker b;
    char conns[32];
    snprintf(conns, sizeof(conns), "%u", (S > R ? S : R) + 1000);
    const char *extra[] = {"--publisher-grace", "0", "--ws-max-conns", conns, "--retention", "2s",
                           /* max-rate steps queue a burst per subscriber: measure the edge, not
                            * its slow-consumer limit (4 MiB by default) */
                           "--ws-queue-max", "64MiB", NULL};
    if (rcb_broker_start(&b, extra) != 0) {
        rcb_report_end(false, "could not start or reach runcastd");
        return -1;
    }
    bool ok = true;
    if (all || strcasecmp(w, "W1") == 0) {
        double r1[] = {rcb_o.rate > 0 ? rcb_o.rate : 5000};
        const char *g[3] = {NULL, "< 1,000 (at 5,000 ev/s)", NULL};
        ok &=
            workload(&b, "W1", 1, 1, r1, 1, sm ? step : 5, sm ? 2000 : 300000, size, NULL, g, 5000);
    }
    if ((all || strcasecmp(w, "W2") == 0) && !rcb_expired()) {
        double r2[] = {20, 50, 100, 250, 500, 1000, 2000, 4000};
        double one[] = {rcb_o.rate};
        const char *g[3] = {"<= 300", "<= 2,000", "<= 10,000"};
        ok &= workload(&b, "W2", 1, S, rcb_o.rate > 0 ? one : r2, rcb_o.rate > 0 ? 1 : (sm ? 2 : 8),
                       step, sm ? 100 : 3000, size, ">= 1,000,000", g, -1);
    }
    if ((all || strcasecmp(w, "W3") == 0) && !rcb_expired()) {
        double r3[] = {1000, 5000, 20000, 50000};
        double one[] = {rcb_o.rate};
        const char *g[3] = {NULL, NULL, NULL};
        ok &= workload(&b, "W3", R, R, rcb_o.rate > 0 ? one : r3, rcb_o.rate > 0 ? 1 : (sm ? 1 : 4),
                       step, sm ? 2000 : 300000, size, NULL, g, 0);
    }
    struct rcb_mem m;
    rcb_broker_mem(&b, &m);
    rcb_fig("broker RSS at end", m.rss / 1048576.0, "MiB", NULL, NULL);
    rcb_fig("broker jemalloc allocated at end", m.allocated / 1048576.0, "MiB", NULL, NULL);
    rcb_broker_stop(&b);
    rcb_report_end(ok, ok ? NULL : "a workload could not run");
    return ok ? 0 : -1;
}
