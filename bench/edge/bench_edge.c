/*
 * bench_edge: quick measurements of the edge (the full fan-out scenarios
 * live in runcast-bench).
 *
 *   bench_edge raw [--rate R] [--seconds S] [--size B]
 *       baseline: nng 1.5.2's own WebSocket stream (listener + dialer in
 *       this process), one message of B bytes per frame; latency from send
 *       to receive (R > 0) or the maximum rate (R = 0, one send in flight).
 *   bench_edge w1 [--rate R] [--seconds S] [--batch N]
 *       W1: an in-process broker and edge, one run, one WebSocket subscriber
 *       (the tests' client on a TCP stream); latency from publish to the
 *       subscriber's receive at R events/s, or the maximum delivered rate
 *       (R = 0, publishing batches of N events with a bounded window).
 *
 * Latency percentiles are printed in microseconds.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "rc_broker.h"
#include "rc_buf.h"
#include "rc_clock.h"
#include "rc_config.h"
#include "rc_edge.h"
#include "rc_log.h"
#include "rc_mpr.h"
#include "rc_proto.h"
#include "ws_client.h"

static int rate = 5000;
static double seconds = 3;
static int size = 200;
static int batch = 1;

struct lat {
    uint64_t *v;
    size_t n, cap;
};

static void lat_add(struct lat *l, uint64_t ns)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1 << 16;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void lat_report(const char *what, struct lat *l, double secs)
{
    if (l->n == 0) {
        printf("%s: no samples\n", what);
        return;
    }
    qsort(l->v, l->n, sizeof(*l->v), cmp_u64);
#define P(q) ((double)l->v[(size_t)((double)(l->n - 1) * (q))] / 1000.0)
    printf("%s: %zu msgs in %.2fs = %.0f/s  latency us: p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
           what, l->n, secs, (double)l->n / secs, P(0.5), P(0.99), P(0.999), P(1.0));
#undef P
}

/* Sleeps until the mono time t (ns), spinning the last 100 us. */
static void wait_until(uint64_t t)
{
    for (;;) {
        uint64_t now = rc_clock_mono_ns();
        if (now >= t)
            return;
        if (t - now > 200000) {
            struct timespec ts = {0, (long)(t - now - 100000)};
            nanosleep(&ts, NULL);
        }
    }
}

/* ---- raw nng WebSocket stream ---- */

struct raw_rx {
    nng_stream *s;
    uint64_t expect;
    struct lat lat;
    _Atomic bool stop;
};

static void *raw_reader(void *arg)
{
    struct raw_rx *r = arg;
    nng_aio *aio;
    nng_aio_alloc(&aio, NULL, NULL);
    uint8_t *buf = malloc((size_t)size * 64);
    size_t have = 0;
    uint64_t got = 0;
    while (got < r->expect) {
        nng_iov iov = {.iov_buf = buf + have, .iov_len = (size_t)size * 64 - have};
        nng_aio_set_iov(aio, 1, &iov);
        nng_aio_set_timeout(aio, 5000);
        nng_stream_recv(r->s, aio);
        nng_aio_wait(aio);
        if (nng_aio_result(aio) != 0)
            break;
        have += nng_aio_count(aio);
        uint64_t now = rc_clock_mono_ns();
        size_t off = 0;
        while (have - off >= (size_t)size) {
            uint64_t t;
            memcpy(&t, buf + off, sizeof(t));
            lat_add(&r->lat, now - t);
            got++;
            off += (size_t)size;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
    free(buf);
    nng_aio_free(aio);
    return NULL;
}

static int bench_raw(void)
{
    nng_stream_listener *l;
    nng_stream_dialer *d;
    nng_aio *aio;
    int port;
    if (nng_stream_listener_alloc(&l, "ws://127.0.0.1:0/raw") != 0 ||
        nng_stream_listener_listen(l) != 0 ||
        nng_stream_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) != 0) {
        fprintf(stderr, "raw: cannot listen\n");
        return 1;
    }
    nng_aio_alloc(&aio, NULL, NULL);
    nng_stream_listener_accept(l, aio);
    char url[64];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d/raw", port);
    nng_aio *daio;
    nng_aio_alloc(&daio, NULL, NULL);
    nng_stream_dialer_alloc(&d, url);
    nng_stream_dialer_dial(d, daio);
    nng_aio_wait(daio);
    nng_aio_wait(aio);
    if (nng_aio_result(aio) != 0 || nng_aio_result(daio) != 0) {
        fprintf(stderr, "raw: cannot connect\n");
        return 1;
    }
    nng_stream *srv = nng_aio_get_output(aio, 0);
    struct raw_rx rx = {.s = nng_aio_get_output(daio, 0)};
    uint64_t total = rate > 0 ? (uint64_t)(rate * seconds) : 0;
    rx.expect = total > 0 ? total : UINT64_MAX;
    pthread_t th;
    pthread_create(&th, NULL, raw_reader, &rx);
    uint8_t *msg = calloc(1, (size_t)size);
    uint64_t start = rc_clock_mono_ns(), sent = 0;
    uint64_t end = start + (uint64_t)(seconds * 1e9);
    for (;;) {
        uint64_t now = rc_clock_mono_ns();
        if (total > 0) {
            if (sent == total)
                break;
            wait_until(start + sent * 1000000000ull / (uint64_t)rate);
        } else if (now >= end) {
            break;
        }
        uint64_t t = rc_clock_mono_ns();
        memcpy(msg, &t, sizeof(t));
        nng_iov iov = {.iov_buf = msg, .iov_len = (size_t)size};
        nng_aio_set_iov(aio, 1, &iov);
        nng_stream_send(srv, aio);
        nng_aio_wait(aio);
        if (nng_aio_result(aio) != 0)
            break;
        sent++;
    }
    if (total == 0)
        rx.expect = sent;
    pthread_join(th, NULL);
    double secs = (double)(rc_clock_mono_ns() - start) / 1e9;
    char what[96];
    snprintf(what, sizeof(what), "raw nng ws stream (%d B, %s)", size,
             rate > 0 ? "paced" : "max, 1 send in flight");
    lat_report(what, &rx.lat, rate > 0 ? seconds : secs);
    nng_stream_close(srv);
    nng_stream_free(srv);
    nng_stream_close(rx.s);
    nng_stream_free(rx.s);
    nng_stream_listener_free(l);
    nng_stream_dialer_free(d);
    nng_aio_free(aio);
    nng_aio_free(daio);
    free(msg);
    return 0;
}

/* ---- W1 through the broker and the edge ---- */

struct w1_rx {
    struct ws_client *c;
    _Atomic uint64_t expect; /* relaxed: a stop condition, set once by main */
    struct lat lat;
    uint64_t frames;
};

/* Finds data.t in one ev map. */
static bool ev_t(struct rc_mpr *r, uint64_t *t)
{
    struct rc_mp_item it, k;
    if (!rc_mpr_next(r, &it) || it.type != RC_MP_MAP)
        return false;
    bool found = false;
    for (uint32_t i = 0; i < it.v.n; i++) {
        if (!rc_mpr_next(r, &k))
            return false;
        if (k.type == RC_MP_STR && k.v.s.len == 4 && memcmp(k.v.s.ptr, "data", 4) == 0) {
            struct rc_mp_item dm, dk, dv;
            if (!rc_mpr_next(r, &dm) || dm.type != RC_MP_MAP || dm.v.n != 1 ||
                !rc_mpr_next(r, &dk) || !rc_mpr_next(r, &dv))
                return false;
            *t = dv.v.u;
            found = true;
        } else if (!rc_mpr_skip(r)) {
            return false;
        }
    }
    return found;
}

static void *w1_reader(void *arg)
{
    struct w1_rx *r = arg;
    struct rc_buf m;
    rc_buf_init(&m);
    uint64_t got = 0;
    int idle = 0;
    while (got < atomic_load_explicit(&r->expect, memory_order_relaxed)) {
        unsigned op;
        uint16_t code = 0;
        int rv = ws_recv(r->c, 100, &op, &m, &code);
        if (rv == 0 && ++idle < 50)
            continue;
        idle = 0;
        if (rv != 1) {
            fprintf(stderr, "w1: subscriber %s (close code %u) after %" PRIu64 " events\n",
                    rv == 0 ? "timed out" : "closed", (unsigned)code, got);
            break;
        }
        uint64_t now = rc_clock_mono_ns();
        r->frames++;
        struct rc_mpr rd;
        rc_mpr_init(&rd, m.data, m.len);
        struct rc_mp_item it;
        struct rc_mpr peek = rd;
        uint32_t n = 1;
        if (rc_mpr_next(&peek, &it) && it.type == RC_MP_ARRAY) {
            n = it.v.n;
            rd = peek;
        }
        for (uint32_t i = 0; i < n; i++) {
            uint64_t t;
            struct rc_mpr save = rd;
            if (ev_t(&rd, &t)) {
                lat_add(&r->lat, now - t);
                got++;
            } else {
                rd = save;
                if (!rc_mpr_skip(&rd))
                    break;
            }
        }
    }
    rc_buf_fini(&m);
    return NULL;
}

struct window {
    pthread_mutex_t mtx;
    pthread_cond_t cv;
    int outstanding;
    uint64_t refused;
};

static void ack_cb(void *arg, const struct rc_proto_ack_result *r, uint32_t n)
{
    struct window *w = arg;
    pthread_mutex_lock(&w->mtx);
    for (uint32_t i = 0; i < n; i++)
        if (r[i].code != RC_PROTO_OK)
            w->refused++;
    w->outstanding--;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mtx);
}

static void encode_event(struct rc_buf *b, const char *text, uint64_t t)
{
    rc_mpw_map(b, 4);
    rc_mpw_cstr(b, "run");
    rc_mpw_cstr(b, "w1");
    rc_mpw_cstr(b, "type");
    rc_mpw_cstr(b, "delta");
    rc_mpw_cstr(b, "text");
    rc_mpw_cstr(b, text);
    rc_mpw_cstr(b, "data");
    rc_mpw_map(b, 1);
    rc_mpw_cstr(b, "t");
    rc_mpw_uint(b, t);
}

static int bench_w1(void)
{
    struct rc_config cfg;
    char err[256];
    rc_log_init(stderr, RC_LOG_ERROR, RC_LOG_TEXT);
    rc_config_init(&cfg);
    const char *opts[] = {"ingest",
                          "",
                          "ingest-ack",
                          "",
                          "http",
                          "127.0.0.1:0",
                          "history-max-events",
                          "1000",
                          "run-mailbox-limit",
                          "65536",
                          NULL};
    for (size_t i = 0; opts[i] != NULL; i += 2)
        if (rc_config_set(&cfg, opts[i], opts[i + 1], "bench", err, sizeof(err)) != 0) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
    struct rc_broker *b;
    struct rc_edge *e;
    if (rc_broker_new(&cfg, &b) != 0 || rc_broker_start(b) != 0 || rc_edge_new(&cfg, b, &e) != 0 ||
        rc_edge_start(e) != 0) {
        fprintf(stderr, "w1: cannot start the broker\n");
        return 1;
    }
    int status;
    struct w1_rx rx = {0};
    rx.c = ws_connect(rc_edge_port(e), "/ws", NULL, &status, NULL, 0);
    if (rx.c == NULL) {
        fprintf(stderr, "w1: cannot connect (%d)\n", status);
        return 1;
    }
    json_decref(ws_next(rx.c, 3000, NULL)); /* hello */
    ws_send_json_as_msgpack(rx.c, "{\"op\":\"sub\",\"run\":\"w1\",\"snapshot\":false}");
    json_decref(ws_next(rx.c, 3000, NULL)); /* ok */

    char text[160];
    memset(text, 'x', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    struct rc_buf ev;
    rc_buf_init(&ev);
    struct window w = {.mtx = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

    uint64_t total = rate > 0 ? (uint64_t)(rate * seconds) : 0;
    atomic_store_explicit(&rx.expect, total > 0 ? total : UINT64_MAX, memory_order_relaxed);
    pthread_t th;
    pthread_create(&th, NULL, w1_reader, &rx);
    uint64_t start = rc_clock_mono_ns(), sent = 0;
    uint64_t end = start + (uint64_t)(seconds * 1e9);
    for (;;) {
        if (total > 0) {
            if (sent >= total)
                break;
            wait_until(start + sent * 1000000000ull / (uint64_t)rate);
        } else if (rc_clock_mono_ns() >= end) {
            break;
        }
        int n = rate > 0 ? 1 : batch;
        pthread_mutex_lock(&w.mtx);
        while (w.outstanding >= 32)
            pthread_cond_wait(&w.cv, &w.mtx);
        w.outstanding++;
        pthread_mutex_unlock(&w.mtx);
        rc_buf_reset(&ev);
        uint64_t t = rc_clock_mono_ns();
        if (n > 1)
            rc_mpw_array(&ev, (uint32_t)n);
        for (int i = 0; i < n; i++)
            encode_event(&ev, text, t);
        if (rc_broker_publish(b, ev.data, ev.len, 0, ack_cb, &w) != 0)
            break;
        sent += (uint64_t)n;
    }
    pthread_mutex_lock(&w.mtx);
    while (w.outstanding > 0)
        pthread_cond_wait(&w.cv, &w.mtx);
    pthread_mutex_unlock(&w.mtx);
    if (total == 0)
        atomic_store_explicit(&rx.expect, sent - w.refused, memory_order_relaxed);
    pthread_join(th, NULL);
    double secs = (double)(rc_clock_mono_ns() - start) / 1e9;
    char what[128];
    snprintf(what, sizeof(what),
             "W1 edge (%s, batch %d; %" PRIu64 " sent, %" PRIu64 " frames, %" PRIu64 " refused)",
             rate > 0 ? "paced" : "max", rate > 0 ? 1 : batch, sent, rx.frames, w.refused);
    lat_report(what, &rx.lat, rate > 0 ? seconds : secs);
    ws_close(rx.c);
    rc_broker_quiesce(b, 2000);
    rc_edge_stop(e);
    rc_broker_stop(b);
    rc_edge_free(e);
    rc_broker_free(b);
    rc_config_fini(&cfg);
    rc_buf_fini(&ev);
    free(rx.lat.v);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_edge raw|w1 [--rate R] [--seconds S] [--size B] "
                        "[--batch N]\n");
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--rate") == 0)
            rate = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0)
            size = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--batch") == 0)
            batch = atoi(argv[i + 1]);
    }
    if (size < 16)
        size = 16;
    if (strcmp(argv[1], "raw") == 0)
        return bench_raw();
    if (strcmp(argv[1], "w1") == 0)
        return bench_w1();
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
