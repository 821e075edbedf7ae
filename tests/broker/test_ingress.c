/*
 * The nng ingress in process: publish order over one PUSH connection is the
 * run's seq order even with several receives in flight (--ingest-inflight),
 * whose callbacks nng runs concurrently on different threads.
 */
#include <criterion/criterion.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "rc_buf.h"
#include "rc_clock.h"
#include "rc_error.h"
#include "rc_ingest.h"
#include "rc_proto.h"
#include "rc_run.h"
#include "rc_testsub.h"
#include "rc_tutil.h"

#define ORDER_RUNS   4
#define ORDER_EVENTS 1500

static void push(nng_socket s, const struct tev *e)
{
    struct rc_buf b;
    rc_buf_init(&b);
    tev_encode(&b, e);
    cr_assert_eq(nng_send(s, b.data, b.len, 0), 0);
    rc_buf_fini(&b);
}

/* n events as one batch message, encoded in b. */
static void push_batch(nng_socket s, struct rc_buf *b, const struct tev *e, size_t n)
{
    rc_buf_reset(b);
    rc_mpw_array(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        tev_encode(b, &e[i]);
    cr_assert_eq(nng_send(s, b->data, b->len, 0), 0);
}

/* Starts a broker with opts (which include an --ingest URL) and returns a
 * PUSH socket dialed to its first PULL listener. */
static nng_socket start_with_push(struct rc_tb *t, const char *const *opts)
{
    tb_start(t, opts);
    const char *url = rc_broker_listen_url(t->b, RC_INGEST_PULL, 0);
    cr_assert_not_null(url);
    nng_socket s;
    cr_assert_eq(nng_push0_open(&s), 0);
    cr_assert_eq(nng_dial(s, url, NULL, 0), 0);
    return s;
}

/* Names n runs "<prefix>-<i>" and subscribes to each. */
static void sub_runs(struct rc_tb *t, const char *prefix, int n, char runs[][32],
                     struct rc_testsub **ts)
{
    for (int r = 0; r < n; r++) {
        snprintf(runs[r], 32, "%s-%d", prefix, r);
        ts[r] = tb_sub_run(t, runs[r]);
    }
}

/* Checks that run's events arrived as seq 1..n with texts "0".."n-2" in
 * order, then the terminal. */
static void expect_in_order(struct rc_testsub *ts, const char *run, size_t n)
{
    size_t total = rc_testsub_count(ts), k = 0;
    for (size_t i = 0; i < total; i++) {
        struct rc_tframe f;
        cr_assert(rc_testsub_get(ts, i, &f));
        if (strcmp(f.run, run) != 0 || f.kind != RC_FRAME_EV)
            continue;
        cr_assert_eq(f.seq, k + 1, "run %s: seq %lu where %zu was due", run, (unsigned long)f.seq,
                     k + 1);
        if (k + 1 < n) {
            char text[32], want[32];
            cr_assert(rc_mp_str(f.raw, f.len, "text", text, sizeof(text)));
            snprintf(want, sizeof(want), "%zu", k);
            cr_assert_str_eq(text, want, "run %s seq %zu: event %s arrived where %s was published",
                             run, k + 1, text, want);
        } else {
            cr_assert(f.terminal);
        }
        k++;
    }
    cr_assert_eq(k, n, "run %s: %zu events seen, %zu expected", run, k, n);
}

Test(ingress, one_push_connection_keeps_publish_order_with_inflight_receives, .timeout = 60)
{
    struct rc_tb t;
    const char *opts[] = {"ingest", "tcp://127.0.0.1:0", "ingest-inflight", "8", "watchdog", "30s",
                          NULL};
    nng_socket s = start_with_push(&t, opts);
    char runs[ORDER_RUNS][32];
    struct rc_testsub *ts[ORDER_RUNS];
    sub_runs(&t, "order", ORDER_RUNS, runs, ts);
    /* each run: ORDER_EVENTS single-event messages at full speed, then its
     * terminal; the runs one after the other over the same connection */
    for (int r = 0; r < ORDER_RUNS; r++) {
        for (size_t i = 0; i < ORDER_EVENTS; i++) {
            char text[32];
            snprintf(text, sizeof(text), "%zu", i);
            push(s, &(struct tev){.run = runs[r], .type = "delta", .text = text});
        }
        push(s, &(struct tev){.run = runs[r], .type = "complete"});
    }
    for (int r = 0; r < ORDER_RUNS; r++) {
        cr_assert(rc_testsub_wait_terminal(ts[r], runs[r], 20000), "run %s never ended", runs[r]);
        expect_in_order(ts[r], runs[r], ORDER_EVENTS + 1);
    }
    /* the publisher's connection is counted while open (nng's pipe, or the
     * stream reader's connection: both variants of this test) */
    struct rc_metrics *m = rc_broker_metrics(t.b);
    cr_assert_eq(rc_metric_get(&m->pipes_open), 1);
    nng_close(s);
    for (int i = 0; i < 1000 && rc_metric_get(&m->pipes_open) != 0; i++)
        rc_clock_sleep_ms(5);
    cr_assert_eq(rc_metric_get(&m->pipes_open), 0, "the closed connection still counts");
    cr_assert_eq(rc_metric_get(&m->pipes_closed), 1);
    for (int r = 0; r < ORDER_RUNS; r++)
        rc_testsub_free(ts[r]);
    tb_stop(&t);
}

/*
 * Fire-and-forget input is never dropped for overload: with a tiny
 * --run-mailbox-limit and a flood of PUSH batches to a few runs, every event
 * arrives, in publish order, and nothing is counted `overloaded` (the PULL
 * receive pauses instead; only the REP path answers `overloaded`).
 */
#define FLOOD_RUNS    3
#define FLOOD_BATCH   32
#define FLOOD_BATCHES 60 /* per run */

Test(ingress, pull_flood_past_mailbox_limit_loses_nothing, .timeout = 60)
{
    struct rc_tb t;
    const char *opts[] = {"ingest", "tcp://127.0.0.1:0", "ingest-inflight", "16", "watchdog", "30s",
                          "run-mailbox-limit", "1",
                          /* the decoder hands every run message to the
                           * workers, so the runs' mailboxes do fill: run
                           * inline (on the thread that read the bytes, now
                           * that an idle decoder runs there) they may never
                           * fill, nor the pause engage */
                          "ingest-inline-backlog", "0", NULL};
    nng_socket s = start_with_push(&t, opts);
    char runs[FLOOD_RUNS][32];
    struct rc_testsub *ts[FLOOD_RUNS];
    sub_runs(&t, "flood", FLOOD_RUNS, runs, ts);
    /* batches interleaved across the runs, so every run's mailbox fills */
    static char texts[FLOOD_BATCHES * FLOOD_BATCH][16];
    for (size_t i = 0; i < FLOOD_BATCHES * FLOOD_BATCH; i++)
        snprintf(texts[i], sizeof(texts[i]), "%zu", i);
    struct rc_buf b;
    rc_buf_init(&b);
    struct tev evs[FLOOD_BATCH];
    for (int k = 0; k < FLOOD_BATCHES; k++) {
        for (int r = 0; r < FLOOD_RUNS; r++) {
            for (int i = 0; i < FLOOD_BATCH; i++)
                evs[i] = (struct tev){
                    .run = runs[r], .type = "delta", .text = texts[k * FLOOD_BATCH + i]};
            push_batch(s, &b, evs, FLOOD_BATCH);
        }
    }
    for (int r = 0; r < FLOOD_RUNS; r++)
        push(s, &(struct tev){.run = runs[r], .type = "complete"});
    for (int r = 0; r < FLOOD_RUNS; r++) {
        cr_assert(rc_testsub_wait_terminal(ts[r], runs[r], 20000), "run %s never ended", runs[r]);
        expect_in_order(ts[r], runs[r], FLOOD_BATCHES * FLOOD_BATCH + 1);
    }
    struct rc_metrics *m = rc_broker_metrics(t.b);
    cr_assert_eq(rc_metric_get(&m->events_rejected[RC_PROTO_OVERLOADED]), 0,
                 "PULL events refused as overloaded");
    cr_assert_eq(rc_metric_get(&m->mailbox_overloads), 0, "PULL mailbox overloads counted");
    /* the flood went through the pause (parked receives, resumed by the
     * workers' releases: without the resume the runs would never end) */
    cr_assert_gt(rc_metric_get(&m->ingest_pauses), 0, "the PULL path never paused");
    nng_close(s);
    rc_buf_fini(&b);
    for (int r = 0; r < FLOOD_RUNS; r++)
        rc_testsub_free(ts[r]);
    tb_stop(&t);
}

/*
 * Batches spread over many runs (the usual shape of a busy publisher): one
 * message becomes one run message per run, queued together when the message
 * is done; every run still gets its events in publish order.  A batch whose last element is cut
 * short is refused whole (the one-pass decode collected its first elements and must drop them).
 */
#define SPREAD_RUNS    8
#define SPREAD_BATCH   24
#define SPREAD_BATCHES 40

Test(ingress, batches_spread_over_runs_keep_order_and_broken_batch_delivers_nothing, .timeout = 60)
{
    struct rc_tb t;
    const char *opts[] = {"ingest", "tcp://127.0.0.1:0", "watchdog", "30s", NULL};
    nng_socket s = start_with_push(&t, opts);
    char runs[SPREAD_RUNS][32];
    struct rc_testsub *ts[SPREAD_RUNS];
    sub_runs(&t, "spread", SPREAD_RUNS, runs, ts);
    static char texts[SPREAD_RUNS][SPREAD_BATCHES * SPREAD_BATCH][16];
    size_t next[SPREAD_RUNS] = {0};
    struct rc_buf b;
    rc_buf_init(&b);
    uint32_t rng = 12345;
    for (int k = 0; k < SPREAD_BATCHES; k++) {
        struct tev e[SPREAD_BATCH];
        for (int i = 0; i < SPREAD_BATCH; i++) {
            rng = rng * 1103515245u + 12345u;
            int r = (int)((rng >> 16) % SPREAD_RUNS);
            char *text = texts[r][next[r]];
            snprintf(text, sizeof(texts[r][0]), "%zu", next[r]++);
            e[i] = (struct tev){.run = runs[r], .type = "delta", .text = text};
        }
        push_batch(s, &b, e, SPREAD_BATCH);
        if (k == SPREAD_BATCHES / 2) {
            /* three elements announced, two good ones and half of a third */
            rc_buf_reset(&b);
            rc_mpw_array(&b, 3);
            for (int i = 0; i < 3; i++)
                tev_encode(&b, &(struct tev){.run = runs[i], .type = "delta", .text = "bad"});
            size_t cut = b.len - 5;
            cr_assert_eq(nng_send(s, b.data, cut, 0), 0);
        }
    }
    for (int r = 0; r < SPREAD_RUNS; r++)
        push(s, &(struct tev){.run = runs[r], .type = "complete"});
    for (int r = 0; r < SPREAD_RUNS; r++) {
        cr_assert(rc_testsub_wait_terminal(ts[r], runs[r], 20000), "run %s never ended", runs[r]);
        expect_in_order(ts[r], runs[r], next[r] + 1); /* "bad" would break the order */
    }
    struct rc_metrics *m = rc_broker_metrics(t.b);
    cr_assert_eq(rc_metric_get(&m->messages_rejected), 1);
    cr_assert_eq(rc_metric_get(&m->events_rejected[RC_PROTO_MALFORMED]), 1);
    nng_close(s);
    rc_buf_fini(&b);
    for (int r = 0; r < SPREAD_RUNS; r++)
        rc_testsub_free(ts[r]);
    tb_stop(&t);
}

/*
 * A batch in which every element is bad leaves nothing to group: each
 * element is answered with its error, and the broker goes on (the grouping
 * table did not exist yet on a fresh context, and the first version of the
 * one-pass grouping wrote to it anyway).  In process and over PUSH.
 */
Test(ingress, batch_of_only_bad_events_is_answered_and_the_broker_goes_on, .timeout = 60)
{
    struct rc_tb t;
    const char *opts[] = {"ingest", "tcp://127.0.0.1:0", "watchdog", "30s", NULL};
    tb_start(&t, opts);
    struct tev bad[2] = {{.run = "bad-0", .type = "no-such-type"}, {.type = "delta"}};
    struct tack a;
    tb_pub_batch(&t, bad, 2, 0, &a);
    cr_assert_eq(a.n, 2);
    cr_assert_eq(a.code[0], RC_PROTO_UNKNOWN_TYPE);
    cr_assert_eq(a.code[1], RC_PROTO_MISSING_FIELD);

    const char *url = rc_broker_listen_url(t.b, RC_INGEST_PULL, 0);
    nng_socket s;
    cr_assert_eq(nng_push0_open(&s), 0);
    cr_assert_eq(nng_dial(s, url, NULL, 0), 0);
    struct rc_testsub *ts = tb_sub_run(&t, "after-bad");
    struct rc_buf b;
    rc_buf_init(&b);
    push_batch(s, &b, bad, 2);
    push(s, &(struct tev){.run = "after-bad", .type = "delta", .text = "0"});
    push(s, &(struct tev){.run = "after-bad", .type = "complete"});
    cr_assert(rc_testsub_wait_terminal(ts, "after-bad", 20000));
    expect_in_order(ts, "after-bad", 2);
    struct rc_metrics *m = rc_broker_metrics(t.b);
    cr_assert_eq(rc_metric_get(&m->events_rejected[RC_PROTO_UNKNOWN_TYPE]), 2);
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "after-bad-2", .type = "delta"}, 0, NULL),
                 RC_PROTO_OK);
    nng_close(s);
    rc_buf_fini(&b);
    rc_testsub_free(ts);
    tb_stop(&t);
}

/*
 * The run actor encodes a typical `ev` in a stack scratch buffer and a
 * large one (over the scratch's bound) in place with its exact size: texts
 * and data on both sides of that bound arrive byte for byte, in order.
 */
Test(ingress, events_small_and_large_are_encoded_whole, .timeout = 60)
{
    struct rc_tb t;
    const char *opts[] = {"watchdog", "30s", NULL};
    tb_start(&t, opts);
    struct rc_testsub *ts = tb_sub_run(&t, "sizes");
    static const size_t lens[] = {0, 1, 31, 32, 500, 600, 700, 800, 900, 1000, 1100, 5000, 30000};
    enum { NL = sizeof(lens) / sizeof(lens[0]) };
    static char texts[NL][40001], datas[NL][40001];
    for (size_t i = 0; i < NL; i++) {
        for (size_t k = 0; k < lens[i]; k++) {
            texts[i][k] = (char)('a' + (k * 7 + i) % 26);
            datas[i][k] = (char)('A' + (k * 3 + i) % 26);
        }
        texts[i][lens[i]] = datas[i][lens[i]] = 0;
        uint64_t seq = 0;
        struct tev e = {.run = "sizes", .type = "delta", .text = texts[i], .data_str = datas[i]};
        cr_assert_eq(tb_pub(&t, &e, 1, &seq), RC_PROTO_OK, "length %zu", lens[i]);
        cr_assert_eq(seq, i + 1);
    }
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "sizes", .type = "complete"}, 1, NULL),
                 RC_PROTO_OK);
    cr_assert(rc_testsub_wait_terminal(ts, "sizes", 20000));
    static char got[40001];
    size_t k = 0;
    for (size_t i = 0; i < rc_testsub_count(ts); i++) {
        struct rc_tframe f;
        cr_assert(rc_testsub_get(ts, i, &f));
        if (f.kind != RC_FRAME_EV || f.terminal)
            continue;
        cr_assert_lt(k, (size_t)NL);
        cr_assert_eq(f.seq, k + 1);
        cr_assert(rc_mp_str(f.raw, f.len, "text", got, sizeof(got)));
        cr_assert_str_eq(got, texts[k], "text of length %zu", lens[k]);
        cr_assert(rc_mp_str(f.raw, f.len, "data", got, sizeof(got)));
        cr_assert_str_eq(got, datas[k], "data of length %zu", lens[k]);
        k++;
    }
    cr_assert_eq(k, (size_t)NL);
    rc_testsub_free(ts);
    tb_stop(&t);
}

/*
 * An acknowledged batch spread over several runs (one run message per run,
 * each with its share of the batch's events): every element is answered in
 * its own slot: seqs consecutive per run in publish order,
 * a bad element answered with its error, an ended run's events answered
 * run_terminal, and the same batch again answered dup with the original
 * seqs (idempotency keys).
 */
Test(ingress, acked_batch_spread_over_runs_answers_each_element_in_its_slot, .timeout = 60)
{
    struct rc_tb t;
    const char *opts[] = {"watchdog", "30s", NULL};
    tb_start(&t, opts);
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "sp-ended", .type = "complete"}, 0, NULL),
                 RC_PROTO_OK);
    static const char *const runs[] = {"sp-a", "sp-b", "sp-c", "sp-ended"};
    enum { N = 30 };
    struct tev e[N];
    char ids[N][16];
    uint64_t want_seq[4] = {0};
    int run_of[N];
    for (int i = 0; i < N; i++) {
        /* a, b, c, a, ended, b, ... : interleaved, in a different order
         * from the runs' first appearance */
        int r = (i * 7 + i / 5) % 4;
        run_of[i] = r;
        snprintf(ids[i], sizeof(ids[i]), "id-%d", i);
        e[i] = (struct tev){.run = runs[r], .type = "delta", .text = "x", .id = ids[i]};
    }
    e[11] = (struct tev){.run = "sp-b", .type = "no-such-type"}; /* a bad element */
    run_of[11] = -1;
    struct tack a;
    tb_pub_batch(&t, e, N, 0, &a);
    cr_assert_eq(a.n, N);
    uint64_t seq_of[N];
    for (int i = 0; i < N; i++) {
        if (run_of[i] < 0) {
            cr_assert_eq(a.code[i], RC_PROTO_UNKNOWN_TYPE, "element %d", i);
        } else if (run_of[i] == 3) {
            cr_assert_eq(a.code[i], RC_PROTO_RUN_TERMINAL, "element %d", i);
        } else {
            cr_assert_eq(a.code[i], RC_PROTO_OK, "element %d: code %d", i, a.code[i]);
            cr_assert_eq(a.seq[i], ++want_seq[run_of[i]], "element %d (run %s)", i,
                         runs[run_of[i]]);
            cr_assert(!a.dup[i]);
        }
        seq_of[i] = a.seq[i];
    }
    cr_assert(want_seq[0] > 0 && want_seq[1] > 0 && want_seq[2] > 0);
    struct tack again;
    tb_pub_batch(&t, e, N, 0, &again);
    cr_assert_eq(again.n, N);
    for (int i = 0; i < N; i++) {
        if (run_of[i] < 0 || run_of[i] == 3) {
            cr_assert_eq(again.code[i], a.code[i], "element %d", i);
            continue;
        }
        cr_assert_eq(again.code[i], RC_PROTO_OK, "element %d", i);
        cr_assert(again.dup[i], "element %d not answered dup", i);
        cr_assert_eq(again.seq[i], seq_of[i], "element %d", i);
    }
    tb_stop(&t);
}

/*
 * The gauges the hot path no longer updates per event stay exact: the
 * in-flight count (taken once per received message for all its run
 * messages, given back at the buffer's last release) returns to 0 once
 * every run message is handled, and the history gauges (one difference of
 * the ring's size per ingest turn) equal what the runs retain, with
 * evictions.  Spread batches over PUSH (no reply) and acknowledged in
 * process, plus a message whose every element is bad.
 */
#define GAUGE_RUNS    6
#define GAUGE_BATCH   20
#define GAUGE_BATCHES 24
#define GAUGE_HIST    4

static uint64_t gauge_wait_idle(struct rc_tb *t, uint64_t want_accepted)
{
    struct rc_metrics *m = rc_broker_metrics(t->b);
    struct rc_runs *runs = rc_broker_runs(t->b);
    for (int i = 0; i < 5000; i++) {
        if (rc_metric_get(&m->events_accepted) >= want_accepted && rc_runs_inflight(runs) == 0)
            break;
        rc_clock_sleep_ms(1);
    }
    return rc_runs_inflight(runs);
}

Test(ingress, spread_batches_leave_the_inflight_and_history_gauges_exact, .timeout = 60)
{
    struct rc_tb t;
    const char *opts[] = {"ingest", "tcp://127.0.0.1:0", "watchdog", "30s", "history-max-events",
                          "4",      "ingest-inflight",   "8",        NULL};
    nng_socket s = start_with_push(&t, opts);
    char runs[GAUGE_RUNS][32];
    for (int r = 0; r < GAUGE_RUNS; r++)
        snprintf(runs[r], sizeof(runs[r]), "gauge-%d", r);
    uint64_t per_run[GAUGE_RUNS] = {0}, total = 0;
    struct rc_buf b;
    rc_buf_init(&b);
    uint32_t rng = 777;
    for (int k = 0; k < GAUGE_BATCHES; k++) {
        struct tev e[GAUGE_BATCH];
        for (int i = 0; i < GAUGE_BATCH; i++) {
            rng = rng * 1103515245u + 12345u;
            int r = (int)((rng >> 16) % GAUGE_RUNS);
            per_run[r]++;
            e[i] = (struct tev){.run = runs[r], .type = "delta", .text = "abc"};
        }
        total += GAUGE_BATCH;
        if (k % 2) {
            struct tack a;
            tb_pub_batch(&t, e, GAUGE_BATCH, 0, &a);
            for (int i = 0; i < GAUGE_BATCH; i++)
                cr_assert_eq(a.code[i], RC_PROTO_OK, "batch %d element %d", k, i);
        } else {
            push_batch(s, &b, e, GAUGE_BATCH);
        }
    }
    /* a message with no good element: counted on entry, given back at once */
    struct tev bad = {.run = runs[0], .type = "no-such-type"};
    push_batch(s, &b, (struct tev[]){bad, bad}, 2);

    cr_assert_eq(gauge_wait_idle(&t, total), 0, "run messages still counted in flight");
    struct rc_metrics *m = rc_broker_metrics(t.b);
    cr_assert_eq(rc_metric_get(&m->events_accepted), total);
    uint64_t want_hist = 0;
    for (int r = 0; r < GAUGE_RUNS; r++)
        want_hist += per_run[r] < GAUGE_HIST ? per_run[r] : GAUGE_HIST;
    cr_assert_eq(rc_metric_get(&m->history_events), want_hist);
    /* every retained `ev` of these runs has the same shape and a seq below
     * 128 (~80 events per run), so the bytes are a multiple of one's size */
    uint64_t bytes = rc_metric_get(&m->history_bytes);
    cr_assert(bytes > 0 && bytes % want_hist == 0, "history bytes %lu for %lu events",
              (unsigned long)bytes, (unsigned long)want_hist);

    /* the runs end: their terminals join the history, the count stays exact */
    for (int r = 0; r < GAUGE_RUNS; r++)
        push(s, &(struct tev){.run = runs[r], .type = "complete"});
    cr_assert_eq(gauge_wait_idle(&t, total + GAUGE_RUNS), 0);
    want_hist = 0;
    for (int r = 0; r < GAUGE_RUNS; r++)
        want_hist += per_run[r] + 1 < GAUGE_HIST ? per_run[r] + 1 : GAUGE_HIST;
    cr_assert_eq(rc_metric_get(&m->history_events), want_hist);
    nng_close(s);
    rc_buf_fini(&b);
    tb_stop(&t);
}

/*
 * A PULL context decodes on its decoder actor; its fini must not lose what
 * was handed over and not yet decoded (an ingress restarted by the
 * supervisor finishes its context while messages wait in the decoder's
 * mailbox): every message dispatched before rc_ingest_ctx_fini is decoded
 * and delivered, in order.
 */
#define FINI_EVENTS 400

Test(ingress, pull_context_fini_delivers_what_its_decoder_was_sent, .timeout = 60)
{
    struct rc_tb t;
    const char *opts[] = {"ingest", "", "ingest-ack", "", "watchdog", "30s", NULL};
    tb_start(&t, opts);
    const char *run = "fini-run";
    struct rc_testsub *ts = tb_sub_run(&t, run);
    struct rc_ingest_ctx c;
    rc_ingest_ctx_init(&c, rc_broker_runs(t.b), rc_broker_metrics(t.b), RC_INGEST_PULL, NULL, NULL);
    cr_assert_not_null(c.decoder, "a PULL context decodes on its decoder actor");
    struct rc_buf b;
    rc_buf_init(&b);
    for (int i = 0; i <= FINI_EVENTS; i++) {
        char text[16];
        snprintf(text, sizeof(text), "%d", i);
        rc_buf_reset(&b);
        tev_encode(&b, &(struct tev){.run = run,
                                     .type = i < FINI_EVENTS ? "delta" : "complete",
                                     .text = i < FINI_EVENTS ? text : NULL});
        struct rc_ingest_buf *ib = rc_ingest_buf_copy(b.data, b.len);
        cr_assert_not_null(ib);
        rc_ingest_dispatch(&c, ib, 1, NULL, NULL);
    }
    rc_ingest_ctx_fini(&c); /* at once: most are still queued */
    cr_assert(rc_testsub_wait_terminal(ts, run, 20000), "the run never ended");
    expect_in_order(ts, run, FINI_EVENTS + 1);
    rc_buf_fini(&b);
    rc_testsub_free(ts);
    tb_stop(&t);
}

/*
 * The PULL pause's wake-up (rc_runs_set_resume): the gauge's decrement that
 * leaves it at or below the mark calls the registrant while a receiver is
 * parked, and only then; clearing takes a registrant's own registration
 * only.
 */
static atomic_int resumed;

static void count_resume(void *arg)
{
    (void)arg;
    atomic_fetch_add(&resumed, 1);
}

Test(ingress, pause_resumes_when_the_gauge_falls_to_the_mark_with_a_receiver_parked)
{
    struct rc_tb t;
    const char *opts[] = {"ingest", "", "ingest-ack", "", NULL};
    tb_start(&t, opts);
    struct rc_runs *runs = rc_broker_runs(t.b);
    int me, other;
    rc_runs_set_resume(runs, count_resume, &me, 4);
    rc_runs_inflight_add(runs, 10);
    rc_runs_inflight_add(runs, -8); /* 2 <= 4, nobody parked */
    cr_assert_eq(atomic_load(&resumed), 0, "resumed with nobody parked");
    rc_runs_inflight_add(runs, 8);
    rc_runs_parked_add(runs, 1);
    rc_runs_inflight_add(runs, -5); /* 5 > 4 */
    cr_assert_eq(atomic_load(&resumed), 0, "resumed above the mark");
    rc_runs_inflight_add(runs, 3); /* an increase never resumes */
    cr_assert_eq(atomic_load(&resumed), 0);
    rc_runs_inflight_add(runs, -4); /* 4 <= 4 */
    cr_assert_eq(atomic_load(&resumed), 1, "not resumed at the mark");
    rc_runs_set_resume(runs, NULL, &other, 0); /* not the registrant: no effect */
    rc_runs_inflight_add(runs, -1);
    cr_assert_eq(atomic_load(&resumed), 2, "another's clear removed the registration");
    rc_runs_set_resume(runs, NULL, &me, 0);
    rc_runs_inflight_add(runs, -1);
    cr_assert_eq(atomic_load(&resumed), 2, "resumed after the registrant cleared it");
    cr_assert_eq(rc_runs_inflight(runs), 2);
    rc_runs_inflight_add(runs, -2); /* back to 0 for the broker's stop */
    rc_runs_parked_add(runs, -1);
    cr_assert_eq(rc_runs_inflight(runs), 0);
    tb_stop(&t);
}

/*
 * The decoder's messages dropped unhandled (decode_msg_free): when the actor
 * system stops while buffers wait in the decoder's mailbox, each is counted
 * as a rejected message, its buffer is freed, and the in-flight gauge it
 * held falls back to zero.  The only worker is held by a blocker actor
 * while the buffers queue; the blocker then requests the system's stop from
 * its own turn, so the decoder's next turn sees the stop before any message.
 */
#define DROP_BUFS 64

struct blocker {
    struct rc_actor_system *sys;
    atomic_int entered, go, done;
};

static void blocker_behaviour(struct rc_actor *self, void *state, struct rc_msg *msg)
{
    (void)self;
    (void)msg;
    struct blocker *bl = state;
    /* seq_cst throughout: a test's hand-shake, not a hot path */
    atomic_store(&bl->entered, 1);
    while (!atomic_load(&bl->go))
        rc_clock_sleep_ms(1);
    rc_actor_system_stop(bl->sys); /* from a turn: requests the stops only */
    atomic_store(&bl->done, 1);
}

Test(ingress, system_stop_drops_the_decoders_queue_counted_and_freed, .timeout = 60)
{
    struct rc_tb t;
    const char *opts[] = {"ingest", "", "ingest-ack", "", "workers", "1", NULL};
    tb_start(&t, opts);
    struct rc_runs *runs = rc_broker_runs(t.b);
    struct rc_metrics *m = rc_broker_metrics(t.b);
    struct rc_actor_system *sys = rc_runs_system(runs);
    cr_assert_eq(rc_actor_system_workers(sys), 1);
    uint64_t rejected0 = rc_metric_get(&m->messages_rejected);
    uint64_t accepted0 = rc_metric_get(&m->events_accepted);

    static struct blocker bl;
    bl.sys = sys;
    struct rc_actor *blk;
    struct rc_actor_opts bo = {.name = "test-blocker"};
    cr_assert_eq(rc_actor_spawn(sys, blocker_behaviour, &bl, NULL, &bo, &blk), 0);
    cr_assert_eq(rc_actor_send(blk, rc_msg_new(sizeof(struct rc_msg), 1)), 0);
    while (!atomic_load(&bl.entered))
        rc_clock_sleep_ms(1);

    struct rc_ingest_ctx c;
    rc_ingest_ctx_init(&c, runs, m, RC_INGEST_PULL, NULL, NULL);
    cr_assert_not_null(c.decoder);
    struct rc_buf b;
    rc_buf_init(&b);
    for (int i = 0; i < DROP_BUFS; i++) {
        rc_buf_reset(&b);
        tev_encode(&b, &(struct tev){.run = "dropped-run", .type = "delta", .text = "x"});
        struct rc_ingest_buf *ib = rc_ingest_buf_copy(b.data, b.len);
        cr_assert_not_null(ib);
        rc_ingest_dispatch(&c, ib, 1, NULL, NULL);
    }
    cr_assert_geq(rc_runs_inflight(runs), DROP_BUFS, "the queued buffers hold the gauge");
    atomic_store(&bl.go, 1);
    rc_actor_system_stop(sys); /* joins once every actor has stopped */
    cr_assert(atomic_load(&bl.done));

    cr_assert_eq(rc_metric_get(&m->messages_rejected) - rejected0, DROP_BUFS,
                 "every dropped buffer is counted as a rejected message");
    cr_assert_eq(rc_metric_get(&m->events_accepted), accepted0, "nothing was decoded");
    cr_assert_eq(rc_runs_inflight(runs), 0, "the dropped buffers released the gauge");
    rc_ingest_ctx_fini(&c); /* the decoder is gone: the send fails, nothing leaks */
    rc_actor_release(blk);
    rc_buf_fini(&b);
    tb_stop(&t);
}

/* A port another broker holds: the start fails with RC_EADDRINUSE (not a
 * generic I/O error), and the error names the option and the URL, for
 * runcastd's "cannot start" line and exit 1. */
Test(ingress, a_port_in_use_fails_the_start_with_eaddrinuse_naming_the_url, .timeout = 60)
{
    struct rc_tb a = {0};
    tb_start(&a, (const char *const[]){"ingest", "tcp://127.0.0.1:0", NULL});
    char url[128];
    snprintf(url, sizeof(url), "%s", rc_broker_listen_url(a.b, RC_INGEST_PULL, 0));

    struct rc_config cfg;
    char err[256];
    cr_assert_eq(rc_config_init(&cfg), 0);
    /* only the taken URL: the default one (tcp://127.0.0.1:7450) may be in
     * use on the machine, or free, and the test must not depend on which */
    cr_assert_eq(rc_config_set(&cfg, "ingest", "", "test", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(rc_config_set(&cfg, "ingest", url, "test", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(rc_config_set(&cfg, "ingest-ack", "", "test", err, sizeof(err)), 0, "%s", err);
    struct rc_broker *b = NULL;
    cr_assert_eq(rc_broker_new(&cfg, &b), 0);
    cr_assert_eq(rc_broker_start(b), RC_EADDRINUSE, "%s", rc_broker_error(b));
    cr_assert_not_null(strstr(rc_broker_error(b), url), "%s", rc_broker_error(b));
    cr_assert_not_null(strstr(rc_broker_error(b), "--ingest"), "%s", rc_broker_error(b));
    rc_broker_free(b);
    rc_config_fini(&cfg);
    tb_stop(&a);
}

/* Publishes n deltas and a complete to run one at a time (the decoder has
 * no backlog), checks they arrived once each, in order, and returns how
 * many run messages were handled inline in the decoder's turn (nested in
 * it: the decoder's own turn may be inline too, on nng's thread). */
static uint64_t publish_one_at_a_time(const char *backlog, const char *run, size_t n)
{
    struct rc_tb t;
    const char *opts[] = {
        "ingest", "tcp://127.0.0.1:0", "watchdog", "30s", "ingest-inline-backlog", backlog, NULL};
    nng_socket s = start_with_push(&t, opts);
    struct rc_actor_system_stats st0, st1;
    rc_actor_system_stats(rc_broker_system(t.b), &st0);
    struct rc_testsub *ts = tb_sub_run(&t, run);
    size_t base = rc_testsub_count(ts);
    for (size_t i = 0; i < n; i++) {
        char text[32];
        snprintf(text, sizeof(text), "%zu", i);
        push(s, &(struct tev){.run = run, .type = "delta", .text = text});
        cr_assert(rc_testsub_wait(ts, base + i + 1, 10000), "event %zu never arrived", i);
    }
    push(s, &(struct tev){.run = run, .type = "complete"});
    cr_assert(rc_testsub_wait_terminal(ts, run, 10000));
    expect_in_order(ts, run, n + 1);
    rc_actor_system_stats(rc_broker_system(t.b), &st1);
    nng_close(s);
    rc_testsub_free(ts);
    tb_stop(&t);
    return st1.inline_nested - st0.inline_nested;
}

/* A decoder that keeps up runs idle run actors' turns inline (the actor
 * system counts them); the events still arrive once each, in order. */
Test(ingress, a_decoder_that_keeps_up_runs_idle_run_actors_inline, .timeout = 60)
{
    uint64_t inl = publish_one_at_a_time("32", "inline-run", 20);
    cr_assert_gt(inl, 0, "no run message was handled inline");
    cr_assert_leq(inl, 21);
}

/* --ingest-inline-backlog 0: every run message goes to the workers. */
Test(ingress, inline_backlog_0_hands_every_run_message_to_the_workers, .timeout = 60)
{
    cr_assert_eq(publish_one_at_a_time("0", "spread-run", 20), 0);
}

/* The stream reader's first message on an idle broker: the connection's
 * decoder runs on the nng thread that read it, and the new run's turn
 * nested in it, on that thread too (no worker, no wake-up).  Counted by
 * the actor system: two turns outside the workers, one of them nested. */
Test(ingress, an_idle_decoder_and_its_runs_run_on_the_reading_thread, .timeout = 60)
{
    struct rc_tb t;
    /* the stream reader also in the test_*_nngpull variant */
    const char *opts[] = {
        "ingest", "tcp://127.0.0.1:0", "watchdog", "30s", "ingest-stream-reader", "1", NULL};
    nng_socket s = start_with_push(&t, opts);
    struct rc_actor_system_stats st0, st;
    rc_actor_system_stats(rc_broker_system(t.b), &st0);
    push(s, &(struct tev){.run = "on-the-reader", .type = "delta", .text = "x"});
    uint64_t end = rc_clock_mono_ms() + 10000;
    do {
        rc_clock_sleep_ms(1);
        rc_actor_system_stats(rc_broker_system(t.b), &st);
    } while (st.inline_outside - st0.inline_outside < 2 && rc_clock_mono_ms() < end);
    cr_assert_eq(st.inline_outside - st0.inline_outside, 2,
                 "the decoder and the run, on nng's thread");
    cr_assert_eq(st.inline_nested - st0.inline_nested, 1, "the run nested in the decoder's turn");
    nng_close(s);
    tb_stop(&t);
}

/* Publishes n deltas and a complete to run over REQ, one round trip each:
 * every reply is ok with the next seq, the subscriber sees them in order;
 * returns how many run messages the actor system handled inline. */
static uint64_t request_one_at_a_time(const char *backlog, const char *run, size_t n)
{
    struct rc_tb t;
    /* clang-format off */
    const char *opts[] = {"ingest", "", "ingest-ack", "tcp://127.0.0.1:0", "watchdog", "30s",
                          "ingest-inline-backlog", backlog, NULL};
    /* clang-format on */
    tb_start(&t, opts);
    const char *url = rc_broker_listen_url(t.b, RC_INGEST_REP, 0);
    cr_assert_not_null(url);
    nng_socket s;
    cr_assert_eq(nng_req0_open(&s), 0);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 10000);
    cr_assert_eq(nng_dial(s, url, NULL, 0), 0);
    struct rc_actor_system_stats st0, st1;
    rc_actor_system_stats(rc_broker_system(t.b), &st0);
    struct rc_testsub *ts = tb_sub_run(&t, run);
    struct rc_buf b;
    rc_buf_init(&b);
    for (size_t i = 0; i <= n; i++) {
        char text[32];
        snprintf(text, sizeof(text), "%zu", i);
        rc_buf_reset(&b);
        tev_encode(&b, &(struct tev){.run = run,
                                     .type = i < n ? "delta" : "complete",
                                     .text = i < n ? text : NULL});
        cr_assert_eq(nng_send(s, b.data, b.len, 0), 0);
        void *reply = NULL;
        size_t rl = 0;
        cr_assert_eq(nng_recv(s, &reply, &rl, NNG_FLAG_ALLOC), 0, "no reply to event %zu", i);
        bool ok = false;
        uint64_t seq = 0;
        cr_assert(rc_mp_bool(reply, rl, "ok", &ok) && ok, "event %zu refused", i);
        cr_assert(rc_mp_uint(reply, rl, "results.0.seq", &seq));
        cr_assert_eq(seq, i + 1, "event %zu got seq %lu", i, (unsigned long)seq);
        nng_free(reply, rl);
    }
    cr_assert(rc_testsub_wait_terminal(ts, run, 10000));
    expect_in_order(ts, run, n + 1);
    rc_actor_system_stats(rc_broker_system(t.b), &st1);
    rc_buf_fini(&b);
    nng_close(s);
    rc_testsub_free(ts);
    tb_stop(&t);
    return st1.inline_handled - st0.inline_handled;
}

/* REP: nng's callback thread runs an idle run actor's turn itself (the
 * reply then needs no worker); acks and order as ever. */
Test(ingress, rep_runs_idle_run_actors_on_the_receiving_thread, .timeout = 60)
{
    uint64_t inl = request_one_at_a_time("4096", "rep-inline-run", 20);
    cr_assert_gt(inl, 0, "no acknowledged run message was handled inline");
    cr_assert_leq(inl, 21);
}

/* --ingest-inline-backlog 0 turns it off for REP too. */
Test(ingress, rep_with_inline_backlog_0_hands_run_messages_to_the_workers, .timeout = 60)
{
    cr_assert_eq(request_one_at_a_time("0", "rep-spread-run", 20), 0);
}

/* Several requesters on one run at once: their REP contexts complete on
 * different nng threads, which race for the run's inline turn (one wins,
 * the others queue).  Every event is acknowledged once with its own seq,
 * each requester's seqs rise in its publish order, and the subscriber sees
 * 1..n with each requester's texts in order. */
#define RACE_THREADS 4
#define RACE_EVENTS  150

struct race_req {
    const char *url, *run;
    int id;
    uint64_t seq[RACE_EVENTS];
    int failed_at; /* -1: none */
};

static void *race_requester(void *arg)
{
    struct race_req *q = arg;
    q->failed_at = 0;
    nng_socket s;
    if (nng_req0_open(&s) != 0)
        return NULL;
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 10000);
    if (nng_dial(s, q->url, NULL, 0) != 0) {
        nng_close(s);
        return NULL;
    }
    struct rc_buf b;
    rc_buf_init(&b);
    int i;
    for (i = 0; i < RACE_EVENTS; i++) {
        char text[32];
        snprintf(text, sizeof(text), "%d-%d", q->id, i);
        rc_buf_reset(&b);
        tev_encode(&b, &(struct tev){.run = q->run, .type = "delta", .text = text});
        void *reply = NULL;
        size_t rl = 0;
        bool ok = false;
        if (nng_send(s, b.data, b.len, 0) != 0 || nng_recv(s, &reply, &rl, NNG_FLAG_ALLOC) != 0)
            break;
        bool good = rc_mp_bool(reply, rl, "ok", &ok) && ok &&
                    rc_mp_uint(reply, rl, "results.0.seq", &q->seq[i]);
        nng_free(reply, rl);
        if (!good)
            break;
    }
    q->failed_at = i == RACE_EVENTS ? -1 : i;
    rc_buf_fini(&b);
    nng_close(s);
    return NULL;
}

Test(ingress, rep_requesters_racing_on_one_run_get_each_seq_once_in_their_order, .timeout = 60)
{
    struct rc_tb t;
    /* clang-format off */
    const char *opts[] = {"ingest", "", "ingest-ack", "tcp://127.0.0.1:0", "watchdog", "30s",
                          "ingest-inflight", "8", NULL};
    /* clang-format on */
    tb_start(&t, opts);
    const char *url = rc_broker_listen_url(t.b, RC_INGEST_REP, 0);
    cr_assert_not_null(url);
    const char *run = "rep-race-run";
    struct rc_testsub *ts = tb_sub_run(&t, run);
    static struct race_req q[RACE_THREADS];
    pthread_t th[RACE_THREADS];
    for (int k = 0; k < RACE_THREADS; k++) {
        q[k] = (struct race_req){.url = url, .run = run, .id = k};
        cr_assert_eq(pthread_create(&th[k], NULL, race_requester, &q[k]), 0);
    }
    for (int k = 0; k < RACE_THREADS; k++)
        pthread_join(th[k], NULL);
    const size_t n = RACE_THREADS * RACE_EVENTS;
    static bool seen[RACE_THREADS * RACE_EVENTS + 1];
    memset(seen, 0, sizeof(seen));
    for (int k = 0; k < RACE_THREADS; k++) {
        cr_assert_eq(q[k].failed_at, -1, "requester %d failed at event %d", k, q[k].failed_at);
        for (int i = 0; i < RACE_EVENTS; i++) {
            uint64_t sq = q[k].seq[i];
            cr_assert(sq >= 1 && sq <= n, "seq %lu out of 1..%zu", (unsigned long)sq, n);
            cr_assert(!seen[sq], "seq %lu acknowledged twice", (unsigned long)sq);
            seen[sq] = true;
            if (i > 0)
                cr_assert_gt(sq, q[k].seq[i - 1], "requester %d: event %d overtook %d", k, i,
                             i - 1);
        }
    }
    cr_assert(rc_testsub_wait(ts, n, 10000), "%zu of %zu events reached the subscriber",
              rc_testsub_count(ts), n);
    int next[RACE_THREADS] = {0};
    for (size_t i = 0; i < n; i++) {
        struct rc_tframe f;
        cr_assert(rc_testsub_get(ts, i, &f));
        cr_assert_eq(f.seq, i + 1);
        char text[32];
        int k = -1, e = -1;
        cr_assert(rc_mp_str(f.raw, f.len, "text", text, sizeof(text)));
        cr_assert_eq(sscanf(text, "%d-%d", &k, &e), 2);
        cr_assert(k >= 0 && k < RACE_THREADS);
        cr_assert_eq(e, next[k], "requester %d: event %d arrived where %d was due", k, e, next[k]);
        next[k]++;
    }
    rc_testsub_free(ts);
    tb_stop(&t);
}
