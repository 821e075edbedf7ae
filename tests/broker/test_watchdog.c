/*
 * The supervisor's watchdog, with millisecond timeouts: idle per phase,
 * per-run overrides and their cap, the absolute deadline while events keep
 * coming, publisher-gone after the publisher's connection closes,
 * heartbeats keeping a run alive, and the synthesized terminal's content.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rc_clock.h"
#include "rc_log.h"
#include "rc_metrics.h"
#include "rc_run.h"
#include "rc_testsub.h"
#include "rc_tutil.h"

static struct rc_testsub *watch(struct rc_tb *t, const char *run)
{
    return tb_subscribe(
        t, (struct rc_sub_req){
               .kind = RC_SUB_RUN, .target = run, .target_len = strlen(run), .sub_id = 1});
}

/* Waits (3 s at most) for run's terminal, which must be the last frame: a
 * synthesized error terminal with this code. */
static void expect_synth(struct rc_testsub *ts, const char *run, const char *code,
                         struct rc_tframe *out)
{
    cr_assert(rc_testsub_wait_terminal(ts, run, 3000), "run %s: no terminal (want %s)", run, code);
    size_t n = rc_testsub_count(ts);
    cr_assert(n > 0);
    struct rc_tframe f;
    rc_testsub_get(ts, n - 1, &f);
    cr_assert(f.terminal);
    char s[400];
    cr_assert(rc_mp_str(f.raw, f.len, "type", s, sizeof(s)));
    cr_assert_str_eq(s, "error");
    bool syn = false;
    cr_assert(rc_mp_bool(f.raw, f.len, "synthetic", &syn));
    cr_assert(syn);
    cr_assert(rc_mp_str(f.raw, f.len, "error.code", s, sizeof(s)));
    cr_assert_str_eq(s, code);
    cr_assert(rc_mp_str(f.raw, f.len, "error.message", s, sizeof(s)));
    cr_assert(strstr(s, "Terminal event never received from backend") != NULL, "%s", s);
    if (out)
        *out = f;
}

/* A broker whose watchdog ends a run idle for `idle`, checked every 1 ms. */
static void start_with_watchdog(struct rc_tb *t, const char *idle)
{
    const char *opts[] = {"watchdog-tick", "1ms", "watchdog", idle, NULL};
    tb_start(t, opts);
}

Test(watchdog, idle_timeout_synthesizes_an_actionable_terminal)
{
    struct rc_tb t;
    start_with_watchdog(&t, "60ms");
    struct rc_testsub *ts = watch(&t, "w");
    tb_pub(&t, &(struct tev){.run = "w", .type = "phase", .phase = "execute"}, 0, NULL);
    tb_pub(&t, &(struct tev){.run = "w", .type = "tool", .tool_id = "t1"}, 0, NULL);
    struct rc_tframe f;
    expect_synth(ts, "w", "watchdog_timeout", &f);
    cr_assert_eq(f.seq, 3);
    char s[400];
    rc_mp_str(f.raw, f.len, "error.message", s, sizeof(s));
    cr_assert(strstr(s, "in phase execute") != NULL, "%s", s);
    cr_assert(strstr(s, "last event: tool, seq 2") != NULL, "%s", s);
    cr_assert(rc_mp_str(f.raw, f.len, "data.phase", s, sizeof(s)));
    cr_assert_str_eq(s, "execute");
    uint64_t v = 0;
    cr_assert(rc_mp_uint(f.raw, f.len, "data.last_seq", &v));
    cr_assert_eq(v, 2);
    cr_assert(rc_mp_uint(f.raw, f.len, "data.idle_ms", &v));
    cr_assert_geq(v, 60);
    struct rc_metrics *m = rc_broker_metrics(t.b);
    cr_assert_eq(rc_metric_get(&m->terminals[RC_TERM_WATCHDOG_TIMEOUT]), 1);
    cr_assert_eq(rc_metric_get(&m->runs_failed), 1);
    /* the publisher's late terminal is fenced */
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "w", .type = "complete"}, 0, NULL),
                 RC_PROTO_RUN_TERMINAL);
    rc_testsub_free(ts);
    tb_stop(&t);
}

/* The largest synthesized terminal: a 128-byte run id, a 64-byte phase and
 * a custom last type of 64 bytes (the error/data maps are built in a
 * bounded stack buffer: its bound must hold them whole). */
Test(watchdog, the_longest_names_reach_the_synthesized_terminal_whole)
{
    struct rc_tb t;
    start_with_watchdog(&t, "40ms");
    char run[129], phase[65], type[65];
    memset(run, 'r', 128);
    run[128] = 0;
    memset(phase, 'p', 64);
    phase[64] = 0;
    memcpy(type, "x-", 2);
    memset(type + 2, 't', 62);
    type[64] = 0;
    struct rc_testsub *ts = watch(&t, run);
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = run, .type = "phase", .phase = phase}, 0, NULL),
                 RC_PROTO_OK);
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = run, .type = type}, 0, NULL), RC_PROTO_OK);
    struct rc_tframe f;
    expect_synth(ts, run, "watchdog_timeout", &f);
    char s[400];
    cr_assert(rc_mp_str(f.raw, f.len, "data.phase", s, sizeof(s)));
    cr_assert_str_eq(s, phase);
    cr_assert(rc_mp_str(f.raw, f.len, "run", s, sizeof(s)));
    cr_assert_str_eq(s, run);
    cr_assert(rc_mp_str(f.raw, f.len, "error.message", s, sizeof(s)));
    char want[100];
    snprintf(want, sizeof(want), "in phase %s", phase);
    cr_assert(strstr(s, want) != NULL, "%s", s);
    cr_assert(strstr(s, ", seq 2)") != NULL, "%s", s);
    uint64_t v = 0;
    cr_assert(rc_mp_uint(f.raw, f.len, "data.last_seq", &v));
    cr_assert_eq(v, 2);
    cr_assert(rc_mp_uint(f.raw, f.len, "data.idle_ms", &v));
    cr_assert_geq(v, 40);
    rc_testsub_free(ts);
    tb_stop(&t);
}

Test(watchdog, phase_timeout_overrides_one_phase)
{
    struct rc_tb t;
    const char *opts[] = {"watchdog-tick", "1ms",         "watchdog", "30s",
                          "phase-timeout", "verify=50ms", NULL};
    tb_start(&t, opts);
    struct rc_testsub *ts = watch(&t, "p");
    tb_pub(&t, &(struct tev){.run = "p", .type = "phase", .phase = "execute"}, 0, NULL);
    rc_clock_sleep_ms(120);
    cr_assert_eq(rc_testsub_count(ts), 1, "execute uses the 30 s default");
    tb_pub(&t, &(struct tev){.run = "p", .type = "phase", .phase = "verify"}, 0, NULL);
    struct rc_tframe f;
    expect_synth(ts, "p", "watchdog_timeout", &f);
    char s[64];
    rc_mp_str(f.raw, f.len, "data.phase", s, sizeof(s));
    cr_assert_str_eq(s, "verify");
    rc_testsub_free(ts);
    tb_stop(&t);
}

Test(watchdog, start_timeouts_override_per_run_and_are_capped)
{
    struct rc_tb t;
    const char *opts[] = {"watchdog-tick", "1ms", "watchdog", "30s", "max-watchdog", "80ms", NULL};
    tb_start(&t, opts);
    struct rc_testsub *a = watch(&t, "a");
    struct rc_testsub *b = watch(&t, "b");
    /* a: "*" = 40 ms */
    tb_pub(&t, &(struct tev){.run = "a", .type = "start", .timeouts = "*=40"}, 0, NULL);
    /* b: asks for an hour in "plan", capped to 80 ms */
    tb_pub(&t, &(struct tev){.run = "b", .type = "start", .timeouts = "plan=3600000"}, 0, NULL);
    tb_pub(&t, &(struct tev){.run = "b", .type = "phase", .phase = "plan"}, 0, NULL);
    expect_synth(a, "a", "watchdog_timeout", NULL);
    expect_synth(b, "b", "watchdog_timeout", NULL);
    rc_testsub_free(a);
    rc_testsub_free(b);
    tb_stop(&t);
}

Test(watchdog, heartbeats_keep_a_run_alive)
{
    struct rc_tb t;
    /* 400 ms of silence would end it; heartbeats every 15 ms for 1 s */
    start_with_watchdog(&t, "400ms");
    struct rc_testsub *ts = watch(&t, "hb");
    uint64_t end = rc_clock_mono_ms() + 1000;
    int n = 0;
    while (rc_clock_mono_ms() < end) {
        cr_assert_eq(tb_pub(&t, &(struct tev){.run = "hb", .type = "heartbeat"}, 0, NULL),
                     RC_PROTO_OK);
        n++;
        rc_clock_sleep_ms(15);
    }
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "hb", .type = "complete"}, 0, NULL), RC_PROTO_OK);
    cr_assert(rc_testsub_wait_terminal(ts, "hb", 3000));
    struct rc_tframe f;
    rc_testsub_get(ts, rc_testsub_count(ts) - 1, &f);
    char s[32];
    rc_mp_str(f.raw, f.len, "type", s, sizeof(s));
    cr_assert_str_eq(s, "complete");
    cr_assert_eq(f.seq, (uint64_t)n + 1);
    cr_assert_eq(rc_metric_get(&rc_broker_metrics(t.b)->terminals[RC_TERM_WATCHDOG_TIMEOUT]), 0);
    rc_testsub_free(ts);
    tb_stop(&t);
}

Test(watchdog, deadline_ends_a_run_that_keeps_sending)
{
    struct rc_tb t;
    const char *opts[] = {"watchdog-tick", "1ms",   "watchdog", "100ms",
                          "run-deadline",  "150ms", NULL};
    tb_start(&t, opts);
    struct rc_testsub *ts = watch(&t, "dl");
    uint64_t end = rc_clock_mono_ms() + 2000;
    while (rc_clock_mono_ms() < end) {
        if (tb_pub(&t, &(struct tev){.run = "dl", .type = "delta", .text = "x"}, 0, NULL) ==
            RC_PROTO_RUN_TERMINAL)
            break;
        rc_clock_sleep_ms(10);
    }
    expect_synth(ts, "dl", "deadline_exceeded", NULL);
    cr_assert_eq(rc_metric_get(&rc_broker_metrics(t.b)->terminals[RC_TERM_DEADLINE_EXCEEDED]), 1);
    rc_testsub_free(ts);
    tb_stop(&t);
}

Test(watchdog, start_deadline_overrides_the_default)
{
    struct rc_tb t;
    const char *opts[] = {"watchdog-tick", "1ms", "watchdog", "10s", "run-deadline", "1h", NULL};
    tb_start(&t, opts);
    struct rc_testsub *ts = watch(&t, "sd");
    tb_pub(&t, &(struct tev){.run = "sd", .type = "start", .deadline = 60}, 0, NULL);
    expect_synth(ts, "sd", "deadline_exceeded", NULL);
    rc_testsub_free(ts);
    tb_stop(&t);
}

/* A broker whose idle watchdog (30 s) stays out of the way of
 * --publisher-grace. */
static void start_with_grace(struct rc_tb *t, const char *grace)
{
    const char *opts[] = {"watchdog-tick",   "1ms", "watchdog", "30s",
                          "publisher-grace", grace, NULL};
    tb_start(t, opts);
}

Test(watchdog, publisher_gone_after_its_connection_closes)
{
    struct rc_tb t;
    start_with_grace(&t, "50ms");
    struct rc_testsub *g = watch(&t, "gone");
    struct rc_testsub *k = watch(&t, "kept");
    tb_pub(&t, &(struct tev){.run = "gone", .type = "phase", .phase = "execute"}, 7, NULL);
    tb_pub(&t, &(struct tev){.run = "kept", .type = "start"}, 7, NULL);
    /* "kept" moves to another connection before 7 closes */
    tb_pub(&t, &(struct tev){.run = "kept", .type = "delta", .text = "x"}, 8, NULL);
    rc_broker_pipe_closed(t.b, 7);
    struct rc_tframe f;
    expect_synth(g, "gone", "publisher_gone", &f);
    char s[400];
    rc_mp_str(f.raw, f.len, "error.message", s, sizeof(s));
    cr_assert(strstr(s, "connection closed") != NULL, "%s", s);
    rc_clock_sleep_ms(150);
    cr_assert_eq(rc_testsub_count(k), 2, "kept's pipe did not close");
    cr_assert_eq(rc_metric_get(&rc_broker_metrics(t.b)->terminals[RC_TERM_PUBLISHER_GONE]), 1);
    rc_testsub_free(g);
    rc_testsub_free(k);
    tb_stop(&t);
}

/* The pipe's close is handled before events it delivered (they were still
 * queued in the broker): the run they create, and a run they move to that
 * pipe, must still see their publisher gone, and a later event from the
 * same closed pipe must not bring it back. */
Test(watchdog, events_handled_after_their_pipes_close_still_end_publisher_gone)
{
    struct rc_tb t;
    start_with_grace(&t, "50ms");
    struct rc_testsub *n = watch(&t, "new");
    struct rc_testsub *m = watch(&t, "moved");
    tb_pub(&t, &(struct tev){.run = "moved", .type = "start"}, 11, NULL);
    rc_broker_pipe_closed(t.b, 12);
    tb_pub(&t, &(struct tev){.run = "new", .type = "phase", .phase = "execute"}, 12, NULL);
    tb_pub(&t, &(struct tev){.run = "new", .type = "delta", .text = "late"}, 12, NULL);
    tb_pub(&t, &(struct tev){.run = "moved", .type = "delta", .text = "x"}, 12, NULL);
    expect_synth(n, "new", "publisher_gone", NULL);
    expect_synth(m, "moved", "publisher_gone", NULL);
    rc_testsub_free(n);
    rc_testsub_free(m);
    tb_stop(&t);
}

Test(watchdog, an_event_after_the_close_cancels_publisher_gone)
{
    struct rc_tb t;
    start_with_grace(&t, "400ms");
    struct rc_testsub *ts = watch(&t, "back");
    tb_pub(&t, &(struct tev){.run = "back", .type = "start"}, 9, NULL);
    rc_broker_pipe_closed(t.b, 9);
    /* the publisher reconnects (new pipe) within the grace period */
    tb_pub(&t, &(struct tev){.run = "back", .type = "delta", .text = "again"}, 10, NULL);
    rc_clock_sleep_ms(700);
    cr_assert_eq(rc_testsub_count(ts), 2);
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "back", .type = "complete"}, 10, NULL),
                 RC_PROTO_OK);
    rc_testsub_free(ts);
    tb_stop(&t);
}

Test(watchdog, many_runs_each_get_exactly_one_terminal)
{
    struct rc_tb t;
    start_with_watchdog(&t, "300ms");
    struct rc_testsub *ts = tb_subscribe(&t, (struct rc_sub_req){.kind = RC_SUB_ALL, .sub_id = 1});
    enum { N = 200 };
    char id[16];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "r%d", i);
        /* half end by themselves, half by the watchdog; some race it */
        tb_pub(&t, &(struct tev){.run = id, .type = "start"}, 0, NULL);
        if (i % 2 == 0)
            tb_pub(&t, &(struct tev){.run = id, .type = "complete"}, 0, NULL);
    }
    struct rc_metrics *m = rc_broker_metrics(t.b);
    for (int i = 0; i < 3000; i++) {
        uint64_t n = 0;
        for (int c = 0; c < RC_TERM_CAUSE_COUNT; c++)
            n += rc_metric_get(&m->terminals[c]);
        if (n >= N)
            break;
        rc_clock_sleep_ms(1);
    }
    rc_clock_sleep_ms(30);
    int terminals[N];
    memset(terminals, 0, sizeof(terminals));
    size_t n = rc_testsub_count(ts);
    for (size_t i = 0; i < n; i++) {
        struct rc_tframe f;
        rc_testsub_get(ts, i, &f);
        if (f.terminal)
            terminals[atoi(f.run + 1)]++;
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(terminals[i], 1, "run r%d had %d terminals", i, terminals[i]);
    cr_assert_eq(rc_metric_get(&m->terminals[RC_TERM_COMPLETE]), N / 2);
    cr_assert_eq(rc_metric_get(&m->terminals[RC_TERM_WATCHDOG_TIMEOUT]), N / 2);
    rc_testsub_free(ts);
    tb_stop(&t);
}

Test(watchdog, long_timeouts_do_not_fire_early)
{
    struct rc_tb t;
    const char *opts[] = {"watchdog-tick", "10ms", "watchdog", "1h", "run-deadline", "0", NULL};
    tb_start(&t, opts);
    struct rc_buf b;
    rc_buf_init(&b);
    char id[32];
    for (int j = 0; j < 5000; j += 500) {
        rc_buf_reset(&b);
        rc_mpw_array(&b, 500);
        for (int k = 0; k < 500; k++) {
            snprintf(id, sizeof(id), "long-%d", j + k);
            tev_encode(&b, &(struct tev){.run = id, .type = "start"});
        }
        struct tack *a = malloc(sizeof(*a));
        tb_publish_raw(&t, b.data, b.len, 0, a);
        free(a);
    }
    rc_buf_fini(&b);
    rc_clock_sleep_ms(2500);
    struct rc_metrics *m = rc_broker_metrics(t.b);
    cr_assert_eq(rc_metric_get(&m->watchdog_fired), 0, "%llu runs fired early",
                 (unsigned long long)rc_metric_get(&m->watchdog_fired));
    tb_stop(&t);
}

/* The rate limiter's clock, frozen by the test: every expiry below falls in
 * the same one-second window until the test moves it. */
static _Atomic uint64_t fake_mono = 1000;
static uint64_t fake_mono_now(void)
{
    /* relaxed: a value the test sets before the events that read it */
    return atomic_load_explicit(&fake_mono, memory_order_relaxed);
}

static void wait_fired(struct rc_tb *t, uint64_t n)
{
    struct rc_metrics *m = rc_broker_metrics(t->b);
    uint64_t end = rc_clock_mono_ms() + 5000;
    while (rc_metric_get(&m->terminals[RC_TERM_WATCHDOG_TIMEOUT]) < n && rc_clock_mono_ms() < end)
        rc_clock_sleep_ms(5);
    cr_assert_eq(rc_metric_get(&m->terminals[RC_TERM_WATCHDOG_TIMEOUT]), n);
    cr_assert_eq(rc_metric_get(&m->watchdog_fired), n);
}

static size_t count_lines(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

Test(watchdog, mass_expiry_warnings_are_rate_limited, .timeout = 30)
{
    enum { RUNS = 40, BURST = 5 };
    struct rc_tb t;
    start_with_watchdog(&t, "50ms");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    rc_log_init(f, RC_LOG_WARN, RC_LOG_TEXT);
    rc_log_set_ratelimit_default(BURST);
    rc_log_set_clock(NULL, fake_mono_now);

    for (int i = 0; i < RUNS; i++) {
        char run[32];
        snprintf(run, sizeof(run), "mass-%d", i);
        cr_assert_eq(tb_pub(&t, &(struct tev){.run = run, .type = "heartbeat"}, 0, NULL),
                     RC_PROTO_OK);
    }
    wait_fired(&t, RUNS);
    /* a later window: the next warning first reports what was dropped */
    atomic_store_explicit(&fake_mono, 5000, memory_order_relaxed);
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "late", .type = "heartbeat"}, 0, NULL),
                 RC_PROTO_OK);
    wait_fired(&t, RUNS + 1);
    tb_stop(&t);

    rc_log_init(NULL, RC_LOG_CRITICAL, RC_LOG_TEXT);
    rc_log_set_clock(NULL, NULL);
    fclose(f);
    cr_assert_not_null(buf);
    cr_assert_eq(count_lines(buf, "watchdog_timeout: Terminal event never received"), BURST + 1,
                 "%s", buf);
    char want[64];
    snprintf(want, sizeof(want), "suppressed %d similar messages", RUNS - BURST);
    cr_assert_eq(count_lines(buf, want), 1, "%s", buf);
    /* the warning keeps the run's context */
    cr_assert(strstr(buf, "run=late: watchdog_timeout: ") != NULL, "%s", buf);
    cr_assert(strstr(buf, "run=mass-") != NULL, "%s", buf);
    free(buf);
}

/* ---- receive stamps: idleness counts from the ingress ---- */

struct busy {
    atomic_bool entered; /* release by the callback, acquire by the test */
    atomic_bool release; /* release by the test, acquire by the callback */
};

/* A snapshot callback that holds the run actor's worker until released
 * (bounded, so a failing test cannot hang the worker for ever). */
static void busy_cb(void *arg, int rc, struct rc_blob *snap)
{
    struct busy *b = arg;
    (void)rc;
    (void)snap;
    atomic_store_explicit(&b->entered, true, memory_order_release);
    uint64_t end = rc_clock_mono_ms() + 10000;
    while (!atomic_load_explicit(&b->release, memory_order_acquire) && rc_clock_mono_ms() < end)
        rc_clock_sleep_ms(1);
}

struct ack1 {
    atomic_int code; /* -1 until answered; release by the callback */
    atomic_ullong seq;
};

static void ack1_cb(void *arg, const struct rc_proto_ack_result *r, uint32_t n)
{
    struct ack1 *a = arg;
    atomic_store_explicit(&a->seq, n ? r[0].seq : 0, memory_order_relaxed);
    /* release: publishes seq to the test's acquire load of code */
    atomic_store_explicit(&a->code, n ? (int)r[0].code : -2, memory_order_release);
}

/*
 * A heartbeat received before the watchdog fired but reaching the run
 * actor only after the timer message (a lagging ingress, a busy worker) is
 * accepted, not refused as `run_terminal`: its receive stamp, not the time
 * the actor got to it, decides.  The run actor is held busy; once the
 * timer's message waits in its mailbox, the heartbeat is handed over with
 * a receive time from before the due time, as the nng callback would have
 * stamped it.  Before receive stamps the timer message, queued first, fired
 * the watchdog and the heartbeat got `run_terminal`.
 */
Test(watchdog, an_event_received_before_expiry_is_accepted_though_handled_after_it)
{
    struct rc_tb t;
    start_with_watchdog(&t, "150ms");
    struct rc_testsub *ts = watch(&t, "lag");
    uint64_t seq = 0;
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "lag", .type = "start"}, 0, &seq), RC_PROTO_OK);
    cr_assert_eq(seq, 1);
    struct rc_actor *a = NULL;
    cr_assert_eq(rc_runs_get(rc_broker_runs(t.b), "lag", 3, rc_runs_hash("lag", 3), false, &a), 0);

    struct busy bz;
    atomic_init(&bz.entered, false);
    atomic_init(&bz.release, false);
    cr_assert_eq(rc_runs_snapshot(rc_broker_runs(t.b), "lag", 3, busy_cb, &bz), 0);
    uint64_t end = rc_clock_mono_ms() + 5000;
    while (!atomic_load_explicit(&bz.entered, memory_order_acquire) && rc_clock_mono_ms() < end)
        rc_clock_sleep_ms(1);
    cr_assert(atomic_load_explicit(&bz.entered, memory_order_acquire));
    /* received now, while the run is still within its 150 ms */
    uint64_t received = rc_clock_mono_ns();
    /* the timer's message joins the snapshot request in the mailbox */
    end = rc_clock_mono_ms() + 5000;
    while (rc_actor_mailbox_len(a) < 2 && rc_clock_mono_ms() < end)
        rc_clock_sleep_ms(1);
    cr_assert_geq(rc_actor_mailbox_len(a), 2, "the watchdog's timer never fired");

    struct rc_buf b;
    rc_buf_init(&b);
    tev_encode(&b, &(struct tev){.run = "lag", .type = "heartbeat"});
    struct ack1 ack;
    atomic_init(&ack.code, -1);
    atomic_init(&ack.seq, 0);
    cr_assert_eq(rc_broker_publish_at(t.b, b.data, b.len, 0, received, ack1_cb, &ack), 0);
    atomic_store_explicit(&bz.release, true, memory_order_release);
    end = rc_clock_mono_ms() + 5000;
    while (atomic_load_explicit(&ack.code, memory_order_acquire) == -1 && rc_clock_mono_ms() < end)
        rc_clock_sleep_ms(1);
    cr_assert_eq(atomic_load_explicit(&ack.code, memory_order_acquire), RC_PROTO_OK,
                 "the heartbeat was refused (code %d)", atomic_load(&ack.code));
    cr_assert_eq(atomic_load_explicit(&ack.seq, memory_order_relaxed), 2);
    /* and the run still ends: idle since the heartbeat's receipt */
    struct rc_tframe f;
    expect_synth(ts, "lag", "watchdog_timeout", &f);
    cr_assert_eq(f.seq, 3);
    uint64_t last = 0;
    cr_assert(rc_mp_uint(f.raw, f.len, "data.last_seq", &last));
    cr_assert_eq(last, 2);
    rc_buf_fini(&b);
    rc_actor_release(a);
    rc_testsub_free(ts);
    tb_stop(&t);
}

/* --watchdog-tick is the lateness budget; the actor system's wheel turns
 * sixteen times per tick (never slower than 1 us, and no overflow). */
Test(watchdog, the_wheel_turns_sixteen_times_per_watchdog_tick)
{
    cr_assert_eq(rc_broker_wheel_tick_us(10), 625);
    cr_assert_eq(rc_broker_wheel_tick_us(1), 62);
    cr_assert_eq(rc_broker_wheel_tick_us(1000), 62500);
    cr_assert_eq(rc_broker_wheel_tick_us(0), 1);
    cr_assert_eq(rc_broker_wheel_tick_us(UINT64_MAX / 1000u), UINT32_MAX);
}

/* --watchdog-threads reaches the broker's actor system: 1 runs one timer
 * thread, and a run still ends by the watchdog with it. */
Test(watchdog, watchdog_threads_option_sets_the_timer_threads)
{
    struct rc_tb t;
    const char *opts[] = {"watchdog-tick",    "1ms", "watchdog", "50ms",
                          "watchdog-threads", "1",   NULL};
    tb_start(&t, opts);
    struct rc_actor_system_stats st;
    rc_actor_system_stats(rc_broker_system(t.b), &st);
    cr_assert_eq(st.timer_threads, 1);
    struct rc_testsub *ts = watch(&t, "wt-1");
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "wt-1", .type = "start"}, 1, NULL), RC_PROTO_OK);
    expect_synth(ts, "wt-1", "watchdog_timeout", NULL);
    rc_testsub_free(ts);
    tb_stop(&t);
}
