/*
 * Integration tests of the edge's HTTP endpoints: /healthz, /metrics (parsed,
 * its counters matching what the test did), /runs and friends, and request
 * validation.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <nng/nng.h>

#include "edge_fixture.h"
#include "rc_clock.h"
#include "rc_edge_int.h"
#include "rc_error.h"
#include "ws_client.h"

#define T 3000

/* The value of the sample `name` (with labels, exactly as written) in a
 * Prometheus text body; -1 when absent. */
static double metric_value(const char *body, const char *name)
{
    size_t nl = strlen(name);
    const char *p = body;
    while (p != NULL && *p != '\0') {
        if (*p != '#' && strncmp(p, name, nl) == 0 && p[nl] == ' ')
            return strtod(p + nl + 1, NULL);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return -1;
}

/* Checks histogram `name` as Prometheus defines it: at least two buckets,
 * `le` strictly increasing and ending at +Inf, counts non-decreasing (they
 * are cumulative), the +Inf bucket equal to _count, and a _sum of at least
 * 0 that is 0 when the count is. */
static void assert_histogram_well_formed(const char *body, const char *name)
{
    char prefix[160];
    snprintf(prefix, sizeof(prefix), "%s_bucket{le=\"", name);
    size_t pl = strlen(prefix);
    double prev_le = -1, prev_n = 0;
    int buckets = 0;
    bool inf_seen = false;
    for (const char *p = body; p != NULL && *p != '\0';) {
        if (strncmp(p, prefix, pl) == 0) {
            cr_assert(!inf_seen, "%s: a bucket after +Inf", name);
            const char *le = p + pl;
            double lev;
            if (strncmp(le, "+Inf\"}", 6) == 0) {
                inf_seen = true;
                lev = INFINITY;
            } else {
                char *end;
                lev = strtod(le, &end);
                cr_assert(end != le && strncmp(end, "\"}", 2) == 0, "%s: bad le at %.40s", name,
                          le);
            }
            cr_assert_gt(lev, prev_le, "%s: le not increasing at %.40s", name, le);
            const char *sp = strchr(le, ' ');
            cr_assert_not_null(sp);
            double n = strtod(sp + 1, NULL);
            cr_assert_geq(n, prev_n, "%s: bucket counts not cumulative at %.40s", name, le);
            prev_le = lev;
            prev_n = n;
            buckets++;
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    cr_assert_geq(buckets, 2, "%s: %d buckets", name, buckets);
    cr_assert(inf_seen, "%s: no +Inf bucket", name);
    char key[160];
    snprintf(key, sizeof(key), "%s_count", name);
    double count = metric_value(body, key);
    cr_assert_eq(prev_n, count, "%s: +Inf bucket %g, count %g", name, prev_n, count);
    snprintf(key, sizeof(key), "%s_sum", name);
    double sum = metric_value(body, key);
    cr_assert_geq(sum, 0, "%s: sum %g", name, sum);
    if (count == 0)
        cr_assert_eq(sum, 0, "%s: sum %g with no observation", name, sum);
}

/* Counters are updated when a write completes, which may be just after the
 * client read the bytes: poll until name reaches at least want. */
/* A /metrics page taken after `name` reached want.  One scrape reads the
 * counters one after another, so what it printed before `name` may predate
 * what made `name` true (a watchdog firing mid-scrape: lateness counted,
 * its terminal not yet, seen once under TSan): the page returned is the
 * next scrape, which sees everything done before `name` moved. */
static char *metrics_when(struct fx *f, const char *name, double want)
{
    for (int i = 0; i < 200; i++) {
        char *m;
        cr_assert_eq(http_get(f->port, "/metrics", &m), 200);
        bool met = metric_value(m, name) >= want;
        if (met || i == 199) {
            if (met) {
                free(m);
                cr_assert_eq(http_get(f->port, "/metrics", &m), 200);
            }
            return m;
        }
        free(m);
        rc_clock_sleep_ms(10);
    }
    return NULL;
}

static json_t *get_json(struct fx *f, const char *path, int want_status)
{
    char *body;
    int st = http_get(f->port, path, &body);
    cr_assert_eq(st, want_status, "GET %s: %d %s", path, st, body ? body : "");
    json_t *v = json_loads(body, 0, NULL);
    cr_assert_not_null(v, "GET %s: not JSON: %s", path, body);
    free(body);
    return v;
}

Test(http, healthz_is_ok_while_serving)
{
    struct fx f;
    fx_start(&f, NULL);
    json_t *v = get_json(&f, "/healthz", 200);
    cr_assert_str_eq(json_string_value(json_object_get(v, "status")), "ok");
    cr_assert_eq((uint64_t)json_integer_value(json_object_get(v, "epoch")), f.epoch);
    json_decref(v);
    /* after quiesce the ingress no longer serves: 503 with a reason */
    rc_broker_quiesce(f.b, 2000);
    v = get_json(&f, "/healthz", 503);
    cr_assert_str_eq(json_string_value(json_object_get(v, "status")), "unavailable");
    cr_assert_not_null(json_string_value(json_object_get(v, "reason")));
    json_decref(v);
    fx_stop(&f);
}

/* A second broker's edge on a port the first one holds: RC_EADDRINUSE,
 * which runcastd reports as "address in use" and exits 1 on. */
Test(http, a_port_in_use_fails_the_start_with_eaddrinuse)
{
    struct fx f;
    fx_start(&f, NULL);
    struct rc_config cfg;
    char err[256], hp[64];
    snprintf(hp, sizeof(hp), "127.0.0.1:%d", f.port);
    cr_assert_eq(rc_config_init(&cfg), 0);
    static const char *const opts[] = {"ingest", "", "ingest-ack", "", "http", NULL, NULL};
    for (size_t i = 0; opts[i] != NULL; i += 2)
        cr_assert_eq(
            rc_config_set(&cfg, opts[i], opts[i + 1] ? opts[i + 1] : hp, "test", err, sizeof(err)),
            0, "%s", err);
    struct rc_broker *b = NULL;
    cr_assert_eq(rc_broker_new(&cfg, &b), 0);
    cr_assert_eq(rc_broker_start(b), 0, "%s", rc_broker_error(b));
    struct rc_edge *e = NULL;
    cr_assert_eq(rc_edge_new(&cfg, b, &e), 0);
    cr_assert_eq(rc_edge_start(e), RC_EADDRINUSE);
    rc_edge_stop(e);
    rc_broker_stop(b);
    rc_edge_free(e);
    rc_broker_free(b);
    rc_config_fini(&cfg);
    /* the first edge still serves */
    json_t *v = get_json(&f, "/healthz", 200);
    json_decref(v);
    fx_stop(&f);
}

Test(http, metrics_count_what_happened)
{
    struct fx f;
    fx_start(&f, NULL);
    struct ws_client *c[3];
    for (int i = 0; i < 3; i++) {
        int st;
        c[i] = ws_connect(f.port, "/ws", NULL, &st, NULL, 0);
        cr_assert_not_null(c[i]);
        json_decref(ws_next(c[i], T, NULL)); /* hello */
        cr_assert_eq(ws_send_json_as_msgpack(c[i], "{\"op\":\"sub\",\"run\":\"m1\"}"), 0);
        json_decref(ws_next_op(c[i], "ok", T, NULL));
    }
    fx_publish(&f, "[{\"run\":\"m1\",\"type\":\"start\"},{\"run\":\"m1\",\"type\":\"complete\"}]");
    for (int i = 0; i < 3; i++) {
        json_t *v;
        int evs = 0;
        while (evs < 2 && (v = ws_next(c[i], T, NULL)) != NULL) {
            evs++;
            json_decref(v);
        }
        cr_assert_eq(evs, 2);
    }
    int st;
    char body[256];
    cr_assert_null(ws_connect(f.port, "/ws", "http://evil.example", &st, body, sizeof(body)));
    cr_assert_eq(st, 403);

    char *m = metrics_when(&f, "runcast_fanout_latency_seconds_count", 6);
    cr_assert_eq(metric_value(m, "runcast_ws_connections"), 3, "%s", m);
    cr_assert_eq(metric_value(m, "runcast_ws_connections_accepted_total"), 3);
    cr_assert_eq(metric_value(m, "runcast_ws_sub_requests_total"), 3);
    cr_assert_eq(metric_value(m, "runcast_ws_subscriptions"), 3);
    cr_assert_eq(metric_value(m, "runcast_ws_refused_total{reason=\"origin\"}"), 1);
    /* per connection: hello + ok + 2 ev (some may share a frame) */
    cr_assert_geq(metric_value(m, "runcast_ws_messages_sent_total"), 12);
    cr_assert_geq(metric_value(m, "runcast_ws_frames_sent_total"), 9);
    cr_assert_gt(metric_value(m, "runcast_ws_bytes_sent_total"), 0);
    cr_assert_eq(metric_value(m, "runcast_events_accepted_total"), 2);
    cr_assert_eq(metric_value(m, "runcast_terminals_total{cause=\"complete\"}"), 1);
    cr_assert_eq(metric_value(m, "runcast_runs{status=\"completed\"}"), 1);
    /* the 6 live deliveries were timed */
    cr_assert_eq(metric_value(m, "runcast_fanout_latency_seconds_count"), 6);
    cr_assert_eq(metric_value(m, "runcast_fanout_latency_seconds_bucket{le=\"+Inf\"}"), 6);
    assert_histogram_well_formed(m, "runcast_fanout_latency_seconds");
    cr_assert_geq(metric_value(m, "runcast_uptime_seconds"), 0);
    /* the actor runtime's counters: inline turns are a part of all turns */
    cr_assert_gt(metric_value(m, "runcast_actor_messages_total"), 0);
    cr_assert_not_null(strstr(m, "# TYPE runcast_actor_inline_messages_total counter\n"));
    cr_assert_geq(metric_value(m, "runcast_actor_inline_messages_total"), 0);
    cr_assert_leq(metric_value(m, "runcast_actor_inline_messages_total"),
                  metric_value(m, "runcast_actor_messages_total"));
    /* nested and outside turns are parts of the inline ones */
    cr_assert_not_null(strstr(m, "# TYPE runcast_actor_inline_nested_messages_total counter\n"));
    cr_assert_not_null(strstr(m, "# TYPE runcast_actor_inline_outside_messages_total counter\n"));
    cr_assert_leq(metric_value(m, "runcast_actor_inline_nested_messages_total"),
                  metric_value(m, "runcast_actor_inline_messages_total"));
    cr_assert_leq(metric_value(m, "runcast_actor_inline_outside_messages_total"),
                  metric_value(m, "runcast_actor_inline_messages_total"));
    cr_assert_not_null(strstr(m, "runcast_build_info{version=\"" RUNCAST_VERSION "\""));
    cr_assert_not_null(strstr(m, "# TYPE runcast_fanout_latency_seconds histogram\n"));
    free(m);
    for (int i = 0; i < 3; i++)
        ws_close(c[i]);
    fx_stop(&f);
}

Test(http, metrics_histograms_of_watchdog_lateness)
{
    struct fx f;
    fx_start(&f, (const char *[]){"watchdog", "30ms", "watchdog-tick", "1ms", NULL});
    char *m;
    cr_assert_eq(http_get(f.port, "/metrics", &m), 200);
    cr_assert_eq(metric_value(m, "runcast_watchdog_fire_lateness_seconds_count"), 0, "%s", m);
    cr_assert_eq(metric_value(m, "runcast_watchdog_terminal_lateness_seconds_count"), 0);
    assert_histogram_well_formed(m, "runcast_watchdog_fire_lateness_seconds");
    assert_histogram_well_formed(m, "runcast_watchdog_terminal_lateness_seconds");
    free(m);
    fx_publish(&f, "[{\"run\":\"w1\",\"type\":\"start\"},{\"run\":\"w2\",\"type\":\"start\"}]");
    m = metrics_when(&f, "runcast_watchdog_terminal_lateness_seconds_count", 2);
    cr_assert_eq(metric_value(m, "runcast_terminals_total{cause=\"watchdog_timeout\"}"), 2, "%s",
                 m);
    cr_assert_eq(metric_value(m, "runcast_watchdog_fire_lateness_seconds_count"), 2, "%s", m);
    cr_assert_eq(metric_value(m, "runcast_watchdog_fire_lateness_seconds_bucket{le=\"+Inf\"}"), 2);
    cr_assert_eq(metric_value(m, "runcast_watchdog_terminal_lateness_seconds_count"), 2);
    cr_assert_eq(metric_value(m, "runcast_watchdog_terminal_lateness_seconds_bucket{le=\"+Inf\"}"),
                 2);
    assert_histogram_well_formed(m, "runcast_watchdog_fire_lateness_seconds");
    assert_histogram_well_formed(m, "runcast_watchdog_terminal_lateness_seconds");
    cr_assert_geq(metric_value(m, "runcast_watchdog_terminal_lateness_seconds_sum"), 0);
    free(m);
    fx_stop(&f);
}

Test(http, runs_list_snapshot_and_events)
{
    struct fx f;
    fx_start(&f, NULL);
    fx_publish(&f, "[{\"run\":\"ra\",\"conv\":\"cx\",\"type\":\"start\"},"
                   "{\"run\":\"ra\",\"type\":\"phase\",\"phase\":\"execute\"},"
                   "{\"run\":\"ra\",\"type\":\"delta\",\"text\":\"hi\"}]");
    fx_publish(&f, "[{\"run\":\"rb\",\"type\":\"start\"},{\"run\":\"rb\",\"type\":\"complete\"}]");

    json_t *v = get_json(&f, "/runs", 200);
    json_t *runs = json_object_get(v, "runs");
    cr_assert_eq(json_array_size(runs), 2);
    json_decref(v);

    v = get_json(&f, "/runs?status=completed", 200);
    runs = json_object_get(v, "runs");
    cr_assert_eq(json_array_size(runs), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(runs, 0), "run")), "rb");
    json_decref(v);

    v = get_json(&f, "/runs?conv=cx&limit=5", 200);
    runs = json_object_get(v, "runs");
    cr_assert_eq(json_array_size(runs), 1);
    json_t *r = json_array_get(runs, 0);
    cr_assert_str_eq(json_string_value(json_object_get(r, "run")), "ra");
    cr_assert_str_eq(json_string_value(json_object_get(r, "status")), "running");
    cr_assert_str_eq(json_string_value(json_object_get(r, "phase")), "execute");
    cr_assert_eq(json_integer_value(json_object_get(r, "seq")), 3);
    json_decref(v);

    v = get_json(&f, "/runs/ra", 200);
    cr_assert_str_eq(json_string_value(json_object_get(v, "op")), "snap");
    cr_assert_str_eq(json_string_value(json_object_get(v, "output")), "hi");
    json_decref(v);

    v = get_json(&f, "/runs/ra/events?since=1", 200);
    json_t *evs = json_object_get(v, "events");
    cr_assert_eq(json_array_size(evs), 2);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(evs, 0), "seq")), 2);
    cr_assert_eq(json_integer_value(json_object_get(v, "last")), 3);
    json_decref(v);

    /* percent-encoded ids (URLSearchParams encodes ':') */
    fx_publish(&f, "{\"run\":\"r:1\",\"conv\":\"c:x\",\"type\":\"start\"}");
    v = get_json(&f, "/runs?conv=c%3Ax", 200);
    cr_assert_eq(json_array_size(json_object_get(v, "runs")), 1);
    json_decref(v);
    v = get_json(&f, "/runs/r%3A1", 200);
    cr_assert_str_eq(json_string_value(json_object_get(v, "run")), "r:1");
    json_decref(v);
    json_decref(get_json(&f, "/runs?conv=%zz", 400));

    json_decref(get_json(&f, "/runs/nope", 404));
    json_decref(get_json(&f, "/runs/nope/events", 404));
    fx_stop(&f);
}

Test(http, requests_are_validated)
{
    struct fx f;
    fx_start(&f, NULL);
    static const struct {
        const char *path;
        int status;
    } cases[] = {
        {"/nope", 404},
        {"/runs?status=weird", 400},
        {"/runs?limit=0", 400},
        {"/runs?limit=abc", 400},
        {"/runs?conv=bad%20id", 400},
        {"/runs?color=red", 400},
        {"/runs/ra/events?since=-1", 400},
        {"/runs/ra/events?since=x", 400},
        {"/runs/ra/other", 404},
        {"/runs/bad$id", 404},
        {"/metrics?x=1", 400},
        {"/healthz?x=1", 400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *v = get_json(&f, cases[i].path, cases[i].status);
        cr_assert_not_null(json_string_value(json_object_get(v, "error")), "%s", cases[i].path);
        cr_assert_not_null(json_string_value(json_object_get(v, "message")));
        json_decref(v);
    }
    fx_stop(&f);
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static char *raw(struct fx *f, const char *req, int timeout_ms)
{
    char *resp;
    http_raw(f->port, req, strlen(req), &resp, timeout_ms);
    cr_assert_not_null(resp);
    return resp;
}

Test(http, keep_alive_and_pipelining)
{
    struct fx f;
    fx_start(&f, NULL);
    /* two pipelined requests on one connection, then close */
    char *r = raw(&f,
                  "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                  "GET /runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                  2000);
    cr_assert_eq(count_of(r, "HTTP/1.1 200 OK\r\n"), 2, "%s", r);
    cr_assert_not_null(strstr(r, "Connection: keep-alive\r\n"), "%s", r);
    cr_assert_not_null(strstr(r, "Connection: close\r\n"), "%s", r);
    cr_assert_not_null(strstr(r, "\"runs\":[]"), "%s", r);
    free(r);
    /* HTTP/1.0 closes after one answer */
    r = raw(&f, "GET /healthz HTTP/1.0\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n", 2000);
    cr_assert_eq(count_of(r, "HTTP/1.1 200 OK\r\n"), 1, "%s", r);
    free(r);
    /* HEAD: headers with the length, no body */
    r = raw(&f, "HEAD /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 2000);
    cr_assert_not_null(strstr(r, "HTTP/1.1 200 OK\r\n"), "%s", r);
    cr_assert_null(strstr(r, "\"status\""), "%s", r);
    free(r);
    fx_stop(&f);
}

Test(http, malformed_requests_are_refused)
{
    struct fx f;
    fx_start(&f, NULL);
    static const struct {
        const char *req;
        const char *status;
    } cases[] = {
        {"POST /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", "HTTP/1.1 405 "},
        {"DELETE /runs/x HTTP/1.1\r\nConnection: close\r\n\r\n", "HTTP/1.1 405 "},
        {"GET /nowhere HTTP/1.1\r\nConnection: close\r\n\r\n", "HTTP/1.1 404 "},
        {"GET /healthz HTTP/2.0\r\n\r\n", "HTTP/1.1 505 "},
        {"GET\r\n\r\n", "HTTP/1.1 400 "},
        {"GET healthz HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
        {"GET /healthz HTTP/1.1\r\nbroken header\r\n\r\n", "HTTP/1.1 400 "},
        {"GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", "HTTP/1.1 413 "},
        {"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 413 "},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *r = raw(&f, cases[i].req, 2000);
        cr_assert(strncmp(r, cases[i].status, strlen(cases[i].status)) == 0, "%s -> %s",
                  cases[i].req, r);
        cr_assert_not_null(strstr(r, "\"error\""), "%s", r);
        free(r);
    }
    /* a head over 8 KiB: 431 */
    size_t n = 10000;
    char *big = malloc(n + 64);
    int o = snprintf(big, n + 64, "GET /healthz HTTP/1.1\r\nX-Pad: ");
    memset(big + o, 'a', n);
    strcpy(big + o + n, "\r\n\r\n");
    char *r = raw(&f, big, 2000);
    cr_assert(strncmp(r, "HTTP/1.1 431 ", 13) == 0, "%.100s", r);
    free(r);
    free(big);
    fx_stop(&f);
}

Test(http, websocket_frames_sent_with_the_upgrade_are_read)
{
    struct fx f;
    fx_start(&f, NULL);
    /* the upgrade request and a masked ping frame in one write */
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                     "\r\n");
    /* {"op":"ping","req":9} as msgpack, masked with 0 */
    static const uint8_t frame[] = {0x82, 0x80 | 14, 0,   0,   0,   0,    0x82, 0xa2, 'o', 'p',
                                    0xa4, 'p',       'i', 'n', 'g', 0xa3, 'r',  'e',  'q', 0x09};
    memcpy(req + n, frame, sizeof(frame));
    char *r;
    size_t len = http_raw(f.port, req, (size_t)n + sizeof(frame), &r, 500);
    cr_assert(strncmp(r, "HTTP/1.1 101 ", 13) == 0, "%s", r);
    cr_assert_not_null(strstr(r, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    /* somewhere after the head: hello, then the pong with req 9 */
    const char *body = strstr(r, "\r\n\r\n") + 4;
    size_t blen = len - (size_t)(body - r);
    bool pong = false;
    for (size_t i = 0; i + 4 < blen; i++)
        if (memcmp(body + i, "pong", 4) == 0)
            pong = true;
    cr_assert(pong, "no pong in %zu bytes", blen);
    free(r);
    fx_stop(&f);
}

/* Polls the edge's count of HTTP sessions (connections not upgraded) until
 * it is n: a fixed sleep races a loaded machine. */
static void wait_sessions(struct fx *f, uint64_t n)
{
    uint64_t end = rc_clock_mono_ms() + 10000, have;
    for (;;) {
        pthread_mutex_lock(&f->e->mtx);
        have = f->e->n_sessions;
        pthread_mutex_unlock(&f->e->mtx);
        if (have == n)
            return;
        cr_assert_lt(rc_clock_mono_ms(), end, "%llu HTTP sessions, waiting for %llu",
                     (unsigned long long)have, (unsigned long long)n);
        rc_clock_sleep_ms(2);
    }
}

Test(http, idle_tcp_connections_are_bounded)
{
    struct fx f;
    fx_start(&f, (const char *[]){"ws-max-conns", "2", NULL});
    /* two idle TCP connections hold the two HTTP sessions */
    char *r1, *r2, *r3;
    int st;
    struct ws_client *a =
        ws_connect(f.port, "/ws", NULL, &st, NULL, 0); /* upgraded: not a session */
    cr_assert_not_null(a);
    /* The 101 reaches the client before the edge releases the connection's
     * HTTP session: until it has, that session would still count against
     * the limit and refuse one of the idle connections below (a second
     * refusal, counted in runcast_http_refused_total). */
    wait_sessions(&f, 0);
    /* a third connection that sends nothing and one that sends a request:
     * with both sessions taken by idle sockets the request is refused */
    nng_aio *aio;
    nng_stream_dialer *d;
    char url[64];
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", (unsigned)f.port);
    cr_assert_eq(nng_aio_alloc(&aio, NULL, NULL), 0);
    cr_assert_eq(nng_stream_dialer_alloc(&d, url), 0);
    nng_stream *idle[2];
    for (int i = 0; i < 2; i++) {
        nng_stream_dialer_dial(d, aio);
        nng_aio_wait(aio);
        cr_assert_eq(nng_aio_result(aio), 0);
        idle[i] = nng_aio_get_output(aio, 0);
    }
    wait_sessions(&f, 2); /* the server holds both before the next request */
    size_t n = http_raw(f.port, "GET /healthz HTTP/1.1\r\n\r\n", 25, &r3, 1000);
    cr_assert_eq(n, 0, "refused at once, got: %s", r3);
    free(r3);
    for (int i = 0; i < 2; i++) {
        nng_stream_close(idle[i]);
        nng_stream_free(idle[i]);
    }
    wait_sessions(&f, 0); /* the server saw both close */
    n = http_raw(f.port, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 44, &r1, 1000);
    cr_assert(strncmp(r1, "HTTP/1.1 200 ", 13) == 0, "%s", r1);
    free(r1);
    cr_assert_eq(http_get(f.port, "/metrics", &r2), 200);
    cr_assert_not_null(strstr(r2, "runcast_http_refused_total 1\n"), "%s", r2);
    free(r2);
    nng_stream_dialer_free(d);
    nng_aio_free(aio);
    ws_close(a);
    fx_stop(&f);
}
