/*
 * Integration tests of the edge: an in-process broker and edge, the
 * project's own WebSocket client (ws_client.c) and plain HTTP.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "edge_fixture.h"
#include "rc_buf.h"
#include "rc_clock.h"
#include "rc_json.h"
#include "rc_log.h"
#include "ws_client.h"

#define T 5000 /* ms: the longest a test waits for one message */

static struct ws_client *open_ws(struct fx *f, const char *path)
{
    int status;
    char body[256];
    struct ws_client *c = ws_connect(f->port, path, NULL, &status, body, sizeof(body));
    cr_assert_not_null(c, "upgrade failed: %d %s", status, body);
    json_t *h = ws_next(c, T, NULL);
    cr_assert_not_null(h);
    cr_assert_str_eq(json_string_value(json_object_get(h, "op")), "hello");
    json_decref(h);
    return c;
}

static const char *op_of(json_t *v)
{
    const char *o = json_string_value(json_object_get(v, "op"));
    return o ? o : "";
}

static uint64_t u64_of(json_t *v, const char *k)
{
    return (uint64_t)json_integer_value(json_object_get(v, k));
}

static void send_ok(struct ws_client *c, const char *json)
{
    cr_assert_eq(ws_send_json_as_msgpack(c, json), 0);
    json_t *r = ws_next(c, T, NULL);
    cr_assert_not_null(r, "no reply to %s", json);
    cr_assert_str_eq(op_of(r), "ok", "reply to %s: %s", json, json_dumps(r, 0));
    json_decref(r);
}

/* Next message must be the ev (run, seq). */
static json_t *expect_ev(struct ws_client *c, const char *run, uint64_t seq)
{
    json_t *v = ws_next(c, T, NULL);
    cr_assert_not_null(v, "waiting for %s#%llu", run, (unsigned long long)seq);
    cr_assert_str_eq(op_of(v), "ev", "got %s", json_dumps(v, 0));
    cr_assert_str_eq(json_string_value(json_object_get(v, "run")), run);
    cr_assert_eq(u64_of(v, "seq"), seq, "got %s", json_dumps(v, 0));
    return v;
}

static void expect_quiet(struct ws_client *c, int ms)
{
    json_t *v = ws_next(c, ms, NULL);
    cr_assert_null(v, "unexpected %s", v ? json_dumps(v, 0) : "");
}

/* A broker whose history holds a run of ~12 MiB whole (resume never
 * gaps), each connection queueing up to ws_queue_max. */
static void fx_start_big_history(struct fx *f, const char *ws_queue_max)
{
    fx_start(f, (const char *[]){"ws-queue-max", ws_queue_max, "history-max-events", "100000",
                                 "history-max-bytes", "256MiB", NULL});
}

/* GET /metrics answers 200 with this line (name, labels, value, newline). */
static void expect_metric_line(struct fx *f, const char *line)
{
    char *body;
    cr_assert_eq(http_get(f->port, "/metrics", &body), 200);
    cr_assert_not_null(strstr(body, line), "%s", body);
    free(body);
}

/* Polls (10 ms) until the edge has no connection, at most ms. */
static void wait_connections_closed(struct fx *f, int ms)
{
    for (int i = 0; i < ms / 10 && rc_edge_connections(f->e) > 0; i++)
        rc_clock_sleep_ms(10);
}

/* The process log (WARN and up) in memory until log_capture_end. */
struct log_capture {
    char *buf;
    size_t len;
    FILE *f;
};

static void log_capture_start(struct log_capture *l)
{
    l->buf = NULL;
    l->len = 0;
    l->f = open_memstream(&l->buf, &l->len);
    cr_assert_not_null(l->f);
    rc_log_init(l->f, RC_LOG_WARN, RC_LOG_TEXT);
}

/* Back to stderr; returns what was logged (free it). */
static char *log_capture_end(struct log_capture *l)
{
    rc_log_init(stderr, RC_LOG_ERROR, RC_LOG_TEXT);
    fclose(l->f);
    return l->buf;
}

Test(edge, hello_carries_the_epoch_and_heartbeat)
{
    struct fx f;
    fx_start(&f, (const char *[]){"ws-heartbeat", "250ms", NULL});
    int status;
    struct ws_client *c = ws_connect(f.port, "/ws", NULL, &status, NULL, 0);
    cr_assert_not_null(c);
    json_t *h = ws_next(c, T, NULL);
    cr_assert_str_eq(op_of(h), "hello");
    cr_assert_eq(u64_of(h, "epoch"), f.epoch);
    cr_assert_eq(u64_of(h, "hb_ms"), 250);
    cr_assert_not_null(json_string_value(json_object_get(h, "server")));
    json_decref(h);
    /* a quiet connection gets hb frames */
    json_t *hb = ws_next(c, T, NULL);
    cr_assert_str_eq(op_of(hb), "hb");
    cr_assert_gt(json_integer_value(json_object_get(hb, "ts")), 0);
    json_decref(hb);
    ws_close(c);
    fx_stop(&f);
}

Test(edge, run_subscription_replays_then_goes_live)
{
    struct fx f;
    fx_start(&f, NULL);
    fx_publish(&f,
               "[{\"run\":\"r1\",\"type\":\"start\"},{\"run\":\"r1\",\"type\":\"phase\","
               "\"phase\":\"planning\"},{\"run\":\"r1\",\"type\":\"thinking\",\"text\":\"a\"}]");
    struct ws_client *c = open_ws(&f, "/ws");
    char sub[128];
    snprintf(sub, sizeof(sub),
             "{\"op\":\"sub\",\"run\":\"r1\",\"since\":0,\"epoch\":%llu,\"req\":7}",
             (unsigned long long)f.epoch);
    cr_assert_eq(ws_send_json_as_msgpack(c, sub), 0);
    json_t *ok = ws_next(c, T, NULL);
    cr_assert_str_eq(op_of(ok), "ok");
    cr_assert_eq(u64_of(ok, "req"), 7);
    json_decref(ok);
    for (uint64_t s = 1; s <= 3; s++)
        json_decref(expect_ev(c, "r1", s));
    fx_publish(&f, "{\"run\":\"r1\",\"type\":\"delta\",\"text\":\"x\"}");
    json_t *ev = expect_ev(c, "r1", 4);
    cr_assert_str_eq(json_string_value(json_object_get(ev, "type")), "delta");
    cr_assert_str_eq(json_string_value(json_object_get(ev, "text")), "x");
    cr_assert_eq(u64_of(ev, "epoch"), f.epoch);
    json_decref(ev);
    ws_close(c);
    fx_stop(&f);
}

Test(edge, snapshot_holds_the_run_state)
{
    struct fx f;
    fx_start(&f, NULL);
    fx_publish(&f,
               "[{\"run\":\"s1\",\"conv\":\"c9\",\"type\":\"start\"},"
               "{\"run\":\"s1\",\"type\":\"phase\",\"phase\":\"planning\"},"
               "{\"run\":\"s1\",\"type\":\"thinking\",\"text\":\"ab\"},"
               "{\"run\":\"s1\",\"type\":\"thinking\",\"text\":\"cd\"},"
               "{\"run\":\"s1\",\"type\":\"delta\",\"text\":\"out\"},"
               "{\"run\":\"s1\",\"type\":\"tool\",\"tool\":{\"id\":\"t1\",\"status\":\"running\"}},"
               "{\"run\":\"s1\",\"type\":\"tool\",\"tool\":{\"id\":\"t1\",\"status\":\"done\"}}]");
    struct ws_client *c = open_ws(&f, "/ws");
    send_ok(c, "{\"op\":\"sub\",\"run\":\"s1\"}");
    json_t *s = ws_next(c, T, NULL);
    cr_assert_str_eq(op_of(s), "snap", "%s", json_dumps(s, 0));
    cr_assert_eq(u64_of(s, "seq"), 7);
    cr_assert_str_eq(json_string_value(json_object_get(s, "status")), "running");
    cr_assert_str_eq(json_string_value(json_object_get(s, "phase")), "planning");
    cr_assert_str_eq(json_string_value(json_object_get(s, "conv")), "c9");
    cr_assert_str_eq(json_string_value(json_object_get(s, "thinking")), "abcd");
    cr_assert_str_eq(json_string_value(json_object_get(s, "output")), "out");
    json_t *tools = json_object_get(s, "tools");
    cr_assert_eq(json_array_size(tools), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(tools, 0), "status")),
                     "done");
    json_decref(s);
    /* then live */
    fx_publish(&f, "{\"run\":\"s1\",\"type\":\"complete\"}");
    json_t *t = expect_ev(c, "s1", 8);
    cr_assert_str_eq(json_string_value(json_object_get(t, "type")), "complete");
    json_decref(t);
    ws_close(c);
    fx_stop(&f);
}

Test(edge, conv_and_all_subscriptions_cover_later_runs)
{
    struct fx f;
    fx_start(&f, NULL);
    fx_publish(&f, "{\"run\":\"a1\",\"conv\":\"cA\",\"type\":\"start\"}");
    struct ws_client *cc = open_ws(&f, "/ws");
    struct ws_client *ca = open_ws(&f, "/ws");
    send_ok(cc, "{\"op\":\"sub\",\"conv\":\"cA\"}");
    json_t *s0 = ws_next(cc, T, NULL); /* a1's snapshot (no since) */
    cr_assert_str_eq(op_of(s0), "snap");
    json_decref(s0);
    send_ok(ca, "{\"op\":\"sub\",\"all\":true,\"snapshot\":false}");
    fx_publish(&f, "{\"run\":\"b1\",\"conv\":\"cB\",\"type\":\"start\"}");
    fx_publish(&f, "{\"run\":\"a2\",\"conv\":\"cA\",\"type\":\"start\"}");
    fx_publish(&f, "{\"run\":\"a1\",\"type\":\"delta\",\"text\":\"z\"}");
    fx_publish(&f, "{\"run\":\"a2\",\"type\":\"delta\",\"text\":\"y\"}");
    /* conv: a2 (which joined later: its start as ev#1, or as a snap at
     * seq 1) then a2#2, and a1#2; never b1 */
    int seen_a2 = 0, seen_a1 = 0;
    uint64_t a2_seq = 0;
    for (int i = 0; i < 3; i++) {
        json_t *v = ws_next(cc, T, NULL);
        cr_assert_not_null(v, "conv subscriber: message %d missing (a1 %d, a2 %d)", i, seen_a1,
                           seen_a2);
        const char *run = json_string_value(json_object_get(v, "run"));
        cr_assert(strcmp(run, "b1") != 0);
        if (strcmp(run, "a2") == 0) {
            cr_assert_eq(u64_of(v, "seq"), a2_seq + 1, "%s", json_dumps(v, 0));
            a2_seq = u64_of(v, "seq");
            seen_a2++;
        } else {
            cr_assert_str_eq(op_of(v), "ev", "%s", json_dumps(v, 0));
            cr_assert_eq(u64_of(v, "seq"), 2);
            seen_a1++;
        }
        json_decref(v);
    }
    cr_assert_eq(seen_a1, 1);
    cr_assert_eq(seen_a2, 2);
    expect_quiet(cc, 200);
    /* all: the four live events, each run in order */
    int n = 0;
    json_t *v;
    while (n < 4 && (v = ws_next(ca, T, NULL)) != NULL) {
        cr_assert_str_eq(op_of(v), "ev");
        n++;
        json_decref(v);
    }
    cr_assert_eq(n, 4);
    ws_close(cc);
    ws_close(ca);
    fx_stop(&f);
}

Test(edge, resume_after_abrupt_disconnect_is_exact)
{
    struct fx f;
    fx_start(&f, NULL);
    fx_publish(&f, "[{\"run\":\"r\",\"type\":\"start\"},{\"run\":\"r\",\"type\":\"delta\","
                   "\"text\":\"1\"},{\"run\":\"r\",\"type\":\"delta\",\"text\":\"2\"}]");
    struct ws_client *c = open_ws(&f, "/ws");
    char sub[160];
    snprintf(sub, sizeof(sub), "{\"op\":\"sub\",\"run\":\"r\",\"since\":0,\"epoch\":%llu}",
             (unsigned long long)f.epoch);
    send_ok(c, sub);
    for (uint64_t s = 1; s <= 3; s++)
        json_decref(expect_ev(c, "r", s));
    ws_close(c); /* no close frame */
    for (int i = 0; i < 5; i++)
        fx_publishf(&f, "{\"run\":\"r\",\"type\":\"delta\",\"text\":\"m%d\"}", i);
    c = open_ws(&f, "/ws");
    snprintf(sub, sizeof(sub), "{\"op\":\"sub\",\"run\":\"r\",\"since\":3,\"epoch\":%llu}",
             (unsigned long long)f.epoch);
    send_ok(c, sub);
    for (uint64_t s = 4; s <= 8; s++)
        json_decref(expect_ev(c, "r", s));
    fx_publish(&f, "{\"run\":\"r\",\"type\":\"delta\",\"text\":\"live\"}");
    json_decref(expect_ev(c, "r", 9));
    expect_quiet(c, 100);
    ws_close(c);
    fx_stop(&f);
}

Test(edge, resume_behind_the_history_gets_gap_and_snap)
{
    struct fx f;
    fx_start(&f, (const char *[]){"history-max-events", "5", NULL});
    fx_publish(&f, "{\"run\":\"h\",\"type\":\"start\"}");
    for (int i = 0; i < 19; i++)
        fx_publishf(&f, "{\"run\":\"h\",\"type\":\"delta\",\"text\":\"%d\"}", i);
    struct ws_client *c = open_ws(&f, "/ws");
    char sub[160];
    snprintf(sub, sizeof(sub), "{\"op\":\"sub\",\"run\":\"h\",\"since\":2,\"epoch\":%llu}",
             (unsigned long long)f.epoch);
    send_ok(c, sub);
    json_t *g = ws_next(c, T, NULL);
    cr_assert_str_eq(op_of(g), "gap", "%s", json_dumps(g, 0));
    cr_assert_eq(u64_of(g, "from"), 3);
    cr_assert_eq(u64_of(g, "to"), 15);
    json_decref(g);
    json_t *s = ws_next(c, T, NULL);
    cr_assert_str_eq(op_of(s), "snap");
    cr_assert_eq(u64_of(s, "seq"), 20);
    json_decref(s);
    fx_publish(&f, "{\"run\":\"h\",\"type\":\"delta\",\"text\":\"live\"}");
    json_decref(expect_ev(c, "h", 21));
    ws_close(c);
    fx_stop(&f);
}

Test(edge, resume_across_a_broker_restart_gets_a_snap)
{
    struct fx f;
    fx_start(&f, NULL);
    uint64_t old_epoch = f.epoch;
    fx_stop(&f);
    rc_clock_sleep_ms(2); /* a fresh epoch differs */
    fx_start(&f, NULL);
    cr_assert_neq(f.epoch, old_epoch);
    fx_publish(&f, "[{\"run\":\"q\",\"type\":\"start\"},{\"run\":\"q\",\"type\":\"delta\","
                   "\"text\":\"x\"}]");
    struct ws_client *c = open_ws(&f, "/ws");
    char sub[160];
    snprintf(sub, sizeof(sub), "{\"op\":\"sub\",\"run\":\"q\",\"since\":1,\"epoch\":%llu}",
             (unsigned long long)old_epoch);
    send_ok(c, sub);
    json_t *s = ws_next(c, T, NULL);
    cr_assert_str_eq(op_of(s), "snap", "%s", json_dumps(s, 0));
    cr_assert_eq(u64_of(s, "epoch"), f.epoch);
    cr_assert_eq(u64_of(s, "seq"), 2);
    json_decref(s);
    expect_quiet(c, 100);
    ws_close(c);
    fx_stop(&f);
}

/* Counts terminal evs of run on c until quiet. */
static int count_terminals(struct ws_client *c, const char *run, bool *synthetic)
{
    int n = 0;
    json_t *v;
    /* wait long for the first terminal (a loaded or sanitized build is
     * slow), then a while more for a duplicate that must not come */
    while ((v = ws_next(c, n == 0 ? T : 300, NULL)) != NULL) {
        if (strcmp(op_of(v), "ev") == 0 &&
            strcmp(json_string_value(json_object_get(v, "run")), run) == 0) {
            const char *t = json_string_value(json_object_get(v, "type"));
            if (strcmp(t, "complete") == 0 || strcmp(t, "error") == 0) {
                n++;
                if (synthetic != NULL)
                    *synthetic = json_is_true(json_object_get(v, "synthetic"));
            }
        }
        if (strcmp(op_of(v), "snap") == 0 && json_object_get(v, "terminal") != NULL &&
            strcmp(json_string_value(json_object_get(v, "run")), run) == 0)
            n++;
        json_decref(v);
    }
    return n;
}

Test(edge, terminal_arrives_exactly_once_at_every_subscriber)
{
    struct fx f;
    fx_start(&f, (const char *[]){"watchdog", "150ms", "watchdog-tick", "5ms", NULL});
    struct ws_client *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = open_ws(&f, "/ws");
    send_ok(c[0], "{\"op\":\"sub\",\"run\":\"t1\"}");
    send_ok(c[1], "{\"op\":\"sub\",\"conv\":\"ct\"}");
    send_ok(c[2], "{\"op\":\"sub\",\"all\":true}");
    /* both subscriptions on one connection: still one terminal */
    send_ok(c[2], "{\"op\":\"sub\",\"run\":\"t1\"}");
    fx_publish(&f, "[{\"run\":\"t1\",\"conv\":\"ct\",\"type\":\"start\"},"
                   "{\"run\":\"t1\",\"type\":\"complete\"}]");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(count_terminals(c[i], "t1", NULL), 1, "subscriber %d", i);
    /* a synthesized terminal: the watchdog fires */
    fx_publish(&f, "{\"run\":\"t2\",\"conv\":\"ct\",\"type\":\"start\"}");
    for (int i = 1; i < 3; i++) {
        bool syn = false;
        cr_assert_eq(count_terminals(c[i], "t2", &syn), 1, "subscriber %d", i);
        cr_assert(syn, "the watchdog's terminal is synthetic");
    }
    for (int i = 0; i < 3; i++)
        ws_close(c[i]);
    fx_stop(&f);
}

Test(edge, slow_consumer_is_closed_4008_and_fast_one_gets_everything)
{
    struct fx f;
    /* 1 MiB: the fast reader may lag a little on a loaded machine; the slow
     * one never reads */
    fx_start_big_history(&f, "1MiB");
    struct ws_client *slow = open_ws(&f, "/ws");
    struct ws_client *fast = open_ws(&f, "/ws");
    send_ok(slow, "{\"op\":\"sub\",\"run\":\"big\",\"snapshot\":false}");
    send_ok(fast, "{\"op\":\"sub\",\"run\":\"big\",\"snapshot\":false}");
    /* ~12 MiB: more than the loopback socket buffers hold */
    static char text[4001];
    memset(text, 'x', sizeof(text) - 1);
    fx_publish(&f, "{\"run\":\"big\",\"type\":\"start\"}");
    const int N = 3000;
    uint64_t next = 1;
    for (int i = 0; i < N; i++) {
        fx_publishf(&f, "{\"run\":\"big\",\"type\":\"delta\",\"text\":\"%s\"}", text);
        /* the fast one keeps up */
        json_t *v;
        while ((v = ws_next(fast, 1, NULL)) != NULL) {
            cr_assert_eq(u64_of(v, "seq"), next, "got %llu want %llu op %s %s",
                         (unsigned long long)u64_of(v, "seq"), (unsigned long long)next, op_of(v),
                         json_string_value(json_object_get(v, "code")));
            next++;
            json_decref(v);
        }
    }
    json_t *v;
    while (next <= (uint64_t)N + 1 && (v = ws_next(fast, T, NULL)) != NULL) {
        cr_assert_eq(u64_of(v, "seq"), next);
        next++;
        json_decref(v);
    }
    cr_assert_eq(next, (uint64_t)N + 2, "the fast subscriber got every event");
    /* the slow one: what it gets is in order, then err slow_consumer, then 4008 */
    uint64_t s = 0;
    bool saw_err = false;
    uint16_t code = 0;
    while ((v = ws_next(slow, T, &code)) != NULL) {
        if (strcmp(op_of(v), "ev") == 0) {
            cr_assert(!saw_err);
            cr_assert_eq(u64_of(v, "seq"), s + 1);
            s++;
        } else if (strcmp(op_of(v), "err") == 0) {
            cr_assert_str_eq(json_string_value(json_object_get(v, "code")), "slow_consumer");
            saw_err = true;
        }
        json_decref(v);
    }
    cr_assert_eq(code, 4008);
    cr_assert(saw_err);
    cr_assert_lt(s, (uint64_t)N + 1);
    ws_close(slow);
    ws_close(fast);
    expect_metric_line(&f, "runcast_ws_slow_consumer_closes_total 1\n");
    fx_stop(&f);
}

/* A subscriber that stops reading fills the socket buffers: the edge's
 * writes become partial and wait for the socket (nng's poller), while new
 * events, pongs and replies keep coming.  Frames must never interleave
 * (a frame is started only when the previous one is whole) and nothing may
 * be lost or duplicated once the subscriber reads again. */
Test(edge, a_backed_up_subscriber_gets_every_event_in_order_when_it_reads_again)
{
    struct fx f;
    fx_start_big_history(&f, "64MiB");
    struct ws_client *c = open_ws(&f, "/ws");
    send_ok(c, "{\"op\":\"sub\",\"run\":\"bk\",\"snapshot\":false}");
    static char text[4001];
    memset(text, 'y', sizeof(text) - 1);
    fx_publish(&f, "{\"run\":\"bk\",\"type\":\"start\"}");
    /* ~12 MiB: more than the loopback socket buffers hold */
    const int N = 3000;
    int pings = 0;
    for (int i = 0; i < N; i++) {
        fx_publishf(&f, "{\"run\":\"bk\",\"type\":\"delta\",\"text\":\"%s\"}", text);
        if (i % 250 == 0) {
            /* a WebSocket ping (pong: a control frame queued between data
             * frames) and a protocol ping (a reply queued behind events) */
            cr_assert_eq(ws_send_frame(c, 0x9, true, "p", 1), 0);
            cr_assert_eq(ws_send_json_as_msgpack(c, "{\"op\":\"ping\",\"req\":7}"), 0);
            pings++;
        }
    }
    uint64_t next = 1;
    int pongs = 0;
    json_t *v;
    while ((next <= (uint64_t)N + 1 || pongs < pings) && (v = ws_next(c, T, NULL)) != NULL) {
        if (strcmp(op_of(v), "pong") == 0) {
            pongs++;
        } else {
            cr_assert_str_eq(op_of(v), "ev", "got %s", json_dumps(v, 0));
            cr_assert_eq(u64_of(v, "seq"), next, "got %llu want %llu",
                         (unsigned long long)u64_of(v, "seq"), (unsigned long long)next);
            next++;
        }
        json_decref(v);
    }
    cr_assert_eq(next, (uint64_t)N + 2, "every event, in order, once");
    cr_assert_eq(pongs, pings);
    expect_quiet(c, 200);
    char *body;
    cr_assert_eq(http_get(f.port, "/metrics", &body), 200);
    cr_assert_not_null(strstr(body, "runcast_ws_slow_consumer_closes_total 0\n"), "%s", body);
    /* the premise: some frames did find the socket full */
    const char *wb = strstr(body, "\nruncast_ws_writes_blocked_total ");
    cr_assert_not_null(wb, "%s", body);
    cr_assert_gt(strtoull(wb + strlen("\nruncast_ws_writes_blocked_total "), NULL, 10), 0);
    free(body);
    ws_close(c);
    fx_stop(&f);
}

Test(edge, json_mode_uses_text_frames)
{
    struct fx f;
    fx_start(&f, NULL);
    int status;
    struct ws_client *c = ws_connect(f.port, "/ws?format=json", NULL, &status, NULL, 0);
    cr_assert_not_null(c);
    unsigned op;
    struct rc_buf m;
    rc_buf_init(&m);
    cr_assert_eq(ws_recv(c, T, &op, &m, NULL), 1);
    cr_assert_eq(op, 0x1, "text frame");
    rc_buf_append(&m, "", 1);
    cr_assert_not_null(strstr((char *)m.data, "\"op\":\"hello\""), "%s", m.data);
    const char *sub = "{\"op\":\"sub\",\"run\":\"j1\",\"req\":\"abc\"}";
    cr_assert_eq(ws_send_frame(c, 0x1, true, sub, strlen(sub)), 0);
    json_t *ok = ws_next(c, T, NULL);
    cr_assert_str_eq(op_of(ok), "ok");
    cr_assert_str_eq(json_string_value(json_object_get(ok, "req")), "abc");
    json_decref(ok);
    fx_publish(&f, "{\"run\":\"j1\",\"type\":\"start\",\"data\":{\"k\":[1,2]}}");
    json_t *ev = expect_ev(c, "j1", 1);
    cr_assert_eq(
        json_integer_value(json_array_get(json_object_get(json_object_get(ev, "data"), "k"), 1)),
        2);
    json_decref(ev);
    /* bad JSON: err, connection stays */
    cr_assert_eq(ws_send_frame(c, 0x1, true, "{nope", 5), 0);
    json_t *err = ws_next(c, T, NULL);
    cr_assert_str_eq(op_of(err), "err");
    cr_assert_str_eq(json_string_value(json_object_get(err, "code")), "malformed");
    json_decref(err);
    rc_buf_fini(&m);
    ws_close(c);
    fx_stop(&f);
}

Test(edge, origins_are_checked_before_the_upgrade)
{
    struct fx f;
    fx_start(&f, NULL);
    int status;
    char body[256];
    struct ws_client *c =
        ws_connect(f.port, "/ws", "http://evil.example", &status, body, sizeof(body));
    cr_assert_null(c);
    cr_assert_eq(status, 403);
    cr_assert_not_null(strstr(body, "forbidden_origin"), "%s", body);
    c = ws_connect(f.port, "/ws", "http://localhost:5173", &status, NULL, 0);
    cr_assert_not_null(c);
    ws_close(c);
    c = ws_connect(f.port, "/ws", "https://127.0.0.1", &status, NULL, 0);
    cr_assert_not_null(c);
    ws_close(c);
    fx_stop(&f);

    fx_start(&f, (const char *[]){"allow-origin", "https://app.example.com", NULL});
    c = ws_connect(f.port, "/ws", "https://app.example.com", &status, NULL, 0);
    cr_assert_not_null(c);
    ws_close(c);
    c = ws_connect(f.port, "/ws", "http://localhost:5173", &status, NULL, 0);
    cr_assert_null(c);
    cr_assert_eq(status, 403);
    fx_stop(&f);
}

Test(edge, bad_upgrades_get_http_errors)
{
    struct fx f;
    fx_start(&f, NULL);
    int status;
    char body[256];
    cr_assert_null(ws_connect(f.port, "/ws?format=xml", NULL, &status, body, sizeof(body)));
    cr_assert_eq(status, 400);
    cr_assert_null(ws_connect(f.port, "/ws?foo=1", NULL, &status, body, sizeof(body)));
    cr_assert_eq(status, 400);
    char *b;
    cr_assert_eq(http_get(f.port, "/ws", &b), 400); /* not an upgrade */
    free(b);
    fx_stop(&f);
}

Test(edge, garbage_oversize_and_fragmented_client_frames)
{
    struct fx f;
    fx_start(&f, (const char *[]){"ws-abuse-limit", "4", NULL});
    struct ws_client *c = open_ws(&f, "/ws");
    /* not msgpack */
    cr_assert_eq(ws_send_frame(c, 0x2, true, "\xc1\xc1", 2), 0);
    json_t *e = ws_next(c, T, NULL);
    cr_assert_str_eq(op_of(e), "err");
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "malformed");
    json_decref(e);
    /* oversize: skipped with err too_large, the connection goes on */
    size_t big = 70 * 1024;
    char *p = calloc(1, big);
    cr_assert_eq(ws_send_frame(c, 0x2, true, p, big), 0);
    free(p);
    e = ws_next(c, T, NULL);
    cr_assert_str_eq(op_of(e), "err");
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "too_large");
    json_decref(e);
    /* a sub split over three fragments with a ping between */
    struct rc_buf mp;
    rc_buf_init(&mp);
    const char *sub = "{\"op\":\"sub\",\"run\":\"frag\",\"req\":1}";
    cr_assert_eq(rc_json_to_msgpack(sub, strlen(sub), &mp), 0);
    cr_assert_eq(ws_send_frame(c, 0x2, false, mp.data, 3), 0);
    cr_assert_eq(ws_send_frame(c, 0x9, true, "hi", 2), 0);
    cr_assert_eq(ws_send_frame(c, 0x0, false, mp.data + 3, 4), 0);
    cr_assert_eq(ws_send_frame(c, 0x0, true, mp.data + 7, mp.len - 7), 0);
    rc_buf_fini(&mp);
    e = ws_next(c, T, NULL);
    cr_assert_str_eq(op_of(e), "ok", "%s", json_dumps(e, 0));
    json_decref(e);
    /* unknown op and a missing target: err */
    cr_assert_eq(ws_send_json_as_msgpack(c, "{\"op\":\"dance\"}"), 0);
    e = ws_next(c, T, NULL);
    cr_assert_str_eq(op_of(e), "err");
    json_decref(e);
    /* ping */
    cr_assert_eq(ws_send_json_as_msgpack(c, "{\"op\":\"ping\",\"req\":\"p\"}"), 0);
    e = ws_next(c, T, NULL);
    cr_assert_str_eq(op_of(e), "pong");
    cr_assert_str_eq(json_string_value(json_object_get(e, "req")), "p");
    json_decref(e);
    /* the 4th invalid message closes with 4400 */
    cr_assert_eq(ws_send_frame(c, 0x2, true, "\x01", 1), 0);
    uint16_t code = ws_wait_close(c, T);
    cr_assert_eq(code, 4400);
    ws_close(c);
    fx_stop(&f);
}

Test(edge, broken_framing_closes_with_1002)
{
    struct fx f;
    fx_start(&f, NULL);
    struct ws_client *c = open_ws(&f, "/ws");
    uint8_t unmasked[] = {0x82, 0x01, 'x'};
    cr_assert_eq(ws_send_raw(c, unmasked, sizeof(unmasked)), 0);
    cr_assert_eq(ws_wait_close(c, T), 1002);
    ws_close(c);
    fx_stop(&f);
}

Test(edge, subscription_limit_and_unsub)
{
    struct fx f;
    fx_start(&f, (const char *[]){"ws-max-subs", "2", NULL});
    struct ws_client *c = open_ws(&f, "/ws");
    send_ok(c, "{\"op\":\"sub\",\"run\":\"u1\"}");
    send_ok(c, "{\"op\":\"sub\",\"run\":\"u2\"}");
    cr_assert_eq(ws_send_json_as_msgpack(c, "{\"op\":\"sub\",\"run\":\"u3\",\"req\":3}"), 0);
    json_t *e = ws_next(c, T, NULL);
    cr_assert_str_eq(op_of(e), "err");
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "limit");
    cr_assert_eq(u64_of(e, "req"), 3);
    json_decref(e);
    send_ok(c, "{\"op\":\"unsub\",\"run\":\"u1\"}");
    cr_assert_eq(ws_send_json_as_msgpack(c, "{\"op\":\"unsub\",\"run\":\"u1\"}"), 0);
    e = ws_next(c, T, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "not_subscribed");
    json_decref(e);
    /* unsubscribed: no more events of u1; u2 still */
    fx_publish(&f, "{\"run\":\"u1\",\"type\":\"start\"}");
    fx_publish(&f, "{\"run\":\"u2\",\"type\":\"start\"}");
    json_decref(expect_ev(c, "u2", 1));
    expect_quiet(c, 100);
    ws_close(c);
    fx_stop(&f);
}

Test(edge, over_the_connection_limit_closes_4429)
{
    struct fx f;
    fx_start(&f, (const char *[]){"ws-max-conns", "2", NULL});
    struct ws_client *a = open_ws(&f, "/ws");
    struct ws_client *b = open_ws(&f, "/ws");
    int status;
    struct ws_client *c = ws_connect(f.port, "/ws", NULL, &status, NULL, 0);
    cr_assert_not_null(c);
    cr_assert_eq(ws_wait_close(c, T), 4429);
    ws_close(c);
    ws_close(a);
    ws_close(b);
    fx_stop(&f);
}

Test(edge, shutdown_flushes_and_closes_1001)
{
    struct fx f;
    fx_start(&f, NULL);
    struct ws_client *c = open_ws(&f, "/ws");
    send_ok(c, "{\"op\":\"sub\",\"run\":\"z\",\"snapshot\":false}");
    fx_publish(&f, "[{\"run\":\"z\",\"type\":\"start\"},{\"run\":\"z\",\"type\":\"delta\","
                   "\"text\":\"a\"}]");
    rc_broker_quiesce(f.b, 2000);
    rc_edge_stop(f.e);
    uint64_t seq = 0;
    json_t *v;
    uint16_t code = 0;
    while ((v = ws_next(c, T, &code)) != NULL) {
        if (strcmp(op_of(v), "ev") == 0)
            seq = u64_of(v, "seq");
        json_decref(v);
    }
    cr_assert_eq(seq, 2, "flushed before the close");
    cr_assert_eq(code, 1001);
    ws_close(c);
    fx_stop(&f);
}

Test(edge, thousand_concurrent_connections, .timeout = 60)
{
    struct fx f;
    fx_start(&f, NULL);
    enum { N = 1000 };
    static struct ws_client *c[N];
    for (int i = 0; i < N; i++) {
        int status;
        c[i] = ws_connect(f.port, "/ws", NULL, &status, NULL, 0);
        cr_assert_not_null(c[i], "connection %d: %d", i, status);
        cr_assert_eq(
            ws_send_json_as_msgpack(c[i], "{\"op\":\"sub\",\"run\":\"k\",\"snapshot\":false}"), 0);
    }
    for (int i = 0; i < N; i++) {
        json_t *h = ws_next(c[i], T, NULL);
        cr_assert_str_eq(op_of(h), "hello");
        json_decref(h);
        json_t *ok = ws_next(c[i], T, NULL);
        cr_assert_str_eq(op_of(ok), "ok");
        json_decref(ok);
    }
    cr_assert_eq(rc_edge_connections(f.e), N);
    fx_publish(&f, "{\"run\":\"k\",\"type\":\"start\"}");
    for (int i = 0; i < N; i++)
        json_decref(expect_ev(c[i], "k", 1));
    for (int i = 0; i < N; i++)
        ws_close(c[i]);
    fx_stop(&f);
}

Test(edge, nng_websocket_dialer_interoperates)
{
    struct fx f;
    fx_start(&f, NULL);
    char url[64];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%u/ws", (unsigned)f.port);
    nng_stream_dialer *d;
    nng_aio *aio;
    cr_assert_eq(nng_stream_dialer_alloc(&d, url), 0);
    cr_assert_eq(nng_aio_alloc(&aio, NULL, NULL), 0);
    nng_aio_set_timeout(aio, T);
    nng_stream_dialer_dial(d, aio);
    nng_aio_wait(aio);
    cr_assert_eq(nng_aio_result(aio), 0);
    nng_stream *s = nng_aio_get_output(aio, 0);
    uint8_t buf[256];
    nng_iov iov = {.iov_buf = buf, .iov_len = sizeof(buf)};
    nng_aio_set_iov(aio, 1, &iov);
    nng_stream_recv(s, aio);
    nng_aio_wait(aio);
    cr_assert_eq(nng_aio_result(aio), 0);
    size_t n = nng_aio_count(aio);
    struct rc_buf j;
    rc_buf_init(&j);
    cr_assert_eq(rc_json_from_msgpack(buf, n, &j), 0);
    rc_buf_append(&j, "", 1);
    cr_assert_not_null(strstr((char *)j.data, "\"hello\""), "%s", j.data);
    rc_buf_fini(&j);
    nng_stream_close(s);
    nng_stream_free(s);
    nng_stream_dialer_free(d);
    nng_aio_free(aio);
    fx_stop(&f);
}

Test(edge, a_stuck_send_is_cut_after_the_write_timeout, .timeout = 60)
{
    struct fx f;
    fx_start(&f, (const char *[]){"ws-write-timeout", "300ms", "ws-queue-max", "1GiB", NULL});
    struct ws_client *c = open_ws(&f, "/ws");
    send_ok(c, "{\"op\":\"sub\",\"run\":\"wt\",\"snapshot\":false}");
    /* the client reads nothing more: ~20 MiB fill both socket buffers */
    static char text[4001];
    memset(text, 'w', sizeof(text) - 1);
    fx_publish(&f, "{\"run\":\"wt\",\"type\":\"start\"}");
    for (int i = 0; i < 5000 && rc_edge_connections(f.e) > 0; i++)
        fx_publishf(&f, "{\"run\":\"wt\",\"type\":\"delta\",\"text\":\"%s\"}", text);
    wait_connections_closed(&f, 5000);
    cr_assert_eq(rc_edge_connections(f.e), 0, "the stuck connection was closed");
    expect_metric_line(&f, "runcast_ws_closes_total{cause=\"write_timeout\"} 1\n");
    ws_close(c);
    fx_stop(&f);
}

Test(edge, a_dropped_connection_logs_its_running_runs)
{
    struct fx f;
    fx_start(&f, NULL);
    struct log_capture log;
    log_capture_start(&log);
    fx_publish(&f, "[{\"run\":\"dr1\",\"type\":\"start\"},{\"run\":\"dr1\",\"type\":\"delta\","
                   "\"text\":\"a\"},{\"run\":\"dr2\",\"type\":\"start\"},{\"run\":\"dr2\","
                   "\"type\":\"complete\"}]");
    struct ws_client *c = open_ws(&f, "/ws");
    char sub[128];
    snprintf(sub, sizeof(sub), "{\"op\":\"sub\",\"run\":\"dr1\",\"since\":0,\"epoch\":%llu}",
             (unsigned long long)f.epoch);
    send_ok(c, sub);
    snprintf(sub, sizeof(sub), "{\"op\":\"sub\",\"run\":\"dr2\",\"since\":0,\"epoch\":%llu}",
             (unsigned long long)f.epoch);
    cr_assert_eq(ws_send_json_as_msgpack(c, sub), 0);
    json_t *skipped = json_array();
    json_decref(ws_next_op(c, "ok", T, skipped));
    for (size_t i = json_array_size(skipped); i < 4; i++)
        json_decref(ws_next(c, T, NULL));
    json_decref(skipped);
    ws_close(c); /* no close frame: 1006 */
    wait_connections_closed(&f, 3000);
    cr_assert_eq(rc_edge_connections(f.e), 0);
    char *logbuf = log_capture_end(&log);
    cr_assert_not_null(strstr(logbuf, "WARN"), "%s", logbuf);
    cr_assert_not_null(strstr(logbuf, "1006"), "%s", logbuf);
    cr_assert_not_null(strstr(logbuf, "1 subscribed runs still running"), "%s", logbuf);
    cr_assert_not_null(strstr(logbuf, "dr1@2"), "%s", logbuf);
    cr_assert_not_null(strstr(logbuf, "resume"), "%s", logbuf);
    free(logbuf);
    fx_stop(&f);
}

Test(edge, the_drop_warning_counts_running_runs_of_an_all_subscription)
{
    struct fx f;
    fx_start(&f, NULL);
    struct ws_client *c = open_ws(&f, "/ws");
    send_ok(c, "{\"op\":\"sub\",\"all\":true,\"snapshot\":false}");
    /* 60 runs; every third one ends: 40 still running */
    for (int i = 0; i < 60; i++)
        fx_publishf(&f, "{\"run\":\"lv%d\",\"type\":\"start\"}", i);
    for (int i = 0; i < 60; i += 3)
        fx_publishf(&f, "{\"run\":\"lv%d\",\"type\":\"complete\"}", i);
    for (int i = 0; i < 80; i++)
        json_decref(ws_next(c, T, NULL));
    struct log_capture log;
    log_capture_start(&log);
    ws_close(c);
    wait_connections_closed(&f, 3000);
    char *logbuf = log_capture_end(&log);
    cr_assert_not_null(strstr(logbuf, "40 subscribed runs still running"), "%s", logbuf);
    free(logbuf);
    fx_stop(&f);
}
