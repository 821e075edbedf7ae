/*
 * The stream reader of --ingest (rc_sppull): the SP wire protocol spoken
 * by hand over plain sockets, so that every byte boundary and every bad
 * header is ours to choose; nng PUSH over ipc:// for the other framing.
 * (Every other ingress and runcastd test also runs through it, since it
 * is the default, and once more with nng's PULL socket: the *_nngpull
 * variants.)
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "rc_buf.h"
#include "rc_clock.h"
#include "rc_metrics.h"
#include "rc_proto.h"
#include <errno.h>
#include "rc_testsub.h"
#include "rc_tutil.h"

/* A TCP socket connected to the broker's first --ingest URL
 * (tcp://127.0.0.1:PORT), with a 5 s receive timeout. */
static int dial_ingest(struct rc_tb *t)
{
    const char *url = rc_broker_listen_url(t->b, RC_INGEST_PULL, 0);
    cr_assert_not_null(url);
    const char *colon = strrchr(url, ':');
    cr_assert_not_null(colon);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void sp_header(uint8_t h[8], unsigned proto)
{
    const uint8_t v[8] = {0, 'S', 'P', 0, (uint8_t)(proto >> 8), (uint8_t)proto, 0, 0};
    memcpy(h, v, 8);
}

/* Appends one SP/TCP frame (8-byte big-endian length, then the message)
 * holding body, and frees body. */
static void sp_frame_append(struct rc_buf *out, struct rc_buf *body)
{
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)body->len >> (56 - 8 * i));
    cr_assert_eq(rc_buf_append(out, len, 8), 0);
    cr_assert_eq(rc_buf_append(out, body->data, body->len), 0);
    rc_buf_fini(body);
}

/* Appends one SP/TCP frame holding e to out. */
static void frame_append(struct rc_buf *out, const struct tev *e)
{
    struct rc_buf b;
    rc_buf_init(&b);
    tev_encode(&b, e);
    sp_frame_append(out, &b);
}

/* Reads the broker's SP header from fd and checks it is PULL's. */
static void expect_pull_header(int fd)
{
    uint8_t h[8], want[8];
    sp_header(want, 0x51);
    size_t got = 0;
    while (got < 8) {
        ssize_t n = recv(fd, h + got, 8 - got, 0);
        cr_assert_gt(n, 0, "no SP header from the broker");
        got += (size_t)n;
    }
    cr_assert_eq(memcmp(h, want, 8), 0, "the broker's SP header is not PULL's");
}

/* Reads until the broker closes the connection; true if it did within the
 * socket's receive timeout. */
static bool closed_by_broker(int fd)
{
    char buf[256];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0)
            return true;
        if (n < 0)
            return errno == ECONNRESET;
    }
}

/* Sends e as one message on PUSH socket s (b: scratch). */
static void push_tev(nng_socket s, struct rc_buf *b, const struct tev *e)
{
    rc_buf_reset(b);
    tev_encode(b, e);
    cr_assert_eq(nng_send(s, b->data, b->len, 0), 0);
}

static bool wait_metric(rc_metric *m, uint64_t want, int ms)
{
    for (int i = 0; i < ms / 5; i++) {
        if (rc_metric_get(m) >= want)
            return true;
        rc_clock_sleep_ms(5);
    }
    return rc_metric_get(m) >= want;
}

/* Waits for run's terminal on ts, then checks its events: seq 1, 2, ...
 * with the first n texts "0", "1", ... and the terminal after them. */
static void check_in_order(struct rc_testsub *ts, const char *run, size_t n)
{
    cr_assert(rc_testsub_wait_terminal(ts, run, 20000), "%s never ended", run);
    size_t k = 0;
    for (size_t i = 0; i < rc_testsub_count(ts); i++) {
        struct rc_tframe f;
        cr_assert(rc_testsub_get(ts, i, &f));
        if (f.kind != RC_FRAME_EV)
            continue;
        cr_assert_eq(f.seq, k + 1);
        if (k < n) {
            char text[24], w[24];
            cr_assert(rc_mp_str(f.raw, f.len, "text", text, sizeof(text)));
            snprintf(w, sizeof(w), "%zu", k);
            cr_assert_str_eq(text, w, "%s: event %zu out of order", run, k);
        }
        k++;
    }
    cr_assert_eq(k, n + 1, "%s: %zu events seen", run, k);
}

/* Starts a broker reading tcp:// --ingest connections, subscribes ts to
 * run, and connects a hand-made PUSH peer: returns its socket, after the
 * broker's PULL header, with out holding the peer's own header to send. */
static int push_peer_start(struct rc_tb *t, const char *run, struct rc_testsub **ts,
                           struct rc_buf *out)
{
    const char *opts[] = {"ingest", "tcp://127.0.0.1:0", "watchdog", "60s", NULL};
    tb_start(t, opts);
    *ts = tb_sub_run(t, run);
    int fd = dial_ingest(t);
    expect_pull_header(fd);
    uint8_t h[8];
    sp_header(h, 0x50);
    rc_buf_init(out);
    cr_assert_eq(rc_buf_append(out, h, 8), 0);
    return fd;
}

Test(sppull, a_push_peer_writing_byte_by_byte_gets_every_event_in_order, .timeout = 60)
{
    struct rc_tb t;
    struct rc_testsub *ts;
    struct rc_buf out;
    int fd = push_peer_start(&t, "bytes", &ts, &out);
    enum { N = 12 };
    for (int i = 0; i < N; i++) {
        char text[16];
        snprintf(text, sizeof(text), "%d", i);
        frame_append(&out, &(struct tev){.run = "bytes", .type = "delta", .text = text});
    }
    frame_append(&out, &(struct tev){.run = "bytes", .type = "complete"});
    /* one byte per write, with a pause now and then so that the reads end
     * inside headers and inside bodies */
    for (size_t i = 0; i < out.len; i++) {
        cr_assert_eq(send(fd, out.data + i, 1, MSG_NOSIGNAL), 1);
        if (i % 7 == 0)
            rc_clock_sleep_ms(1);
    }
    check_in_order(ts, "bytes", N);
    cr_assert_eq(rc_metric_get(&rc_broker_metrics(t.b)->ingest_conn_errors), 0);
    close(fd);
    rc_buf_fini(&out);
    rc_testsub_free(ts);
    tb_stop(&t);
}

static uint64_t cut_rnd(uint64_t *s)
{
    *s ^= *s << 13; /* xorshift64 */
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Appends one SP/TCP frame holding the events idx[0, n) of run "cuts", as
 * one event (n 1) or a batch, each with a text of lens[i] bytes that says
 * which it is: "<i>:" then a letter of i's repeated. */
static void frame_append_texts(struct rc_buf *out, size_t first, size_t n, const size_t *lens)
{
    struct rc_buf b;
    rc_buf_init(&b);
    if (n > 1)
        cr_assert_eq(rc_mpw_array(&b, (uint32_t)n), 0);
    for (size_t i = first; i < first + n; i++) {
        char *text = malloc(lens[i] + 1);
        cr_assert_not_null(text);
        int k = snprintf(text, lens[i] + 1, "%zu:", i);
        memset(text + k, 'a' + (int)(i % 26), lens[i] - (size_t)k);
        text[lens[i]] = 0;
        tev_encode(&b, &(struct tev){.run = "cuts", .type = "delta", .text = text});
        free(text);
    }
    sp_frame_append(out, &b);
}

/* Messages of random sizes (single events of a few bytes to 60 KB, batches
 * up to ~320 KB: both sides of the reader's copy threshold, 16 KiB, and
 * past its largest buffer, 256 KiB) written in random cuts (1 byte to 64
 * KiB, a pause now and then), so that reads end anywhere in headers and
 * bodies while the read buffer grows and shrinks: every event arrives,
 * whole and in order. */
Test(sppull, random_message_sizes_in_random_cuts_arrive_whole_and_in_order, .timeout = 120)
{
    struct rc_tb t;
    struct rc_testsub *ts;
    struct rc_buf out;
    int fd = push_peer_start(&t, "cuts", &ts, &out);
    enum { EVENTS = 240 };
    uint64_t s = 0xc0ffee15ull;
    size_t lens[EVENTS];
    for (size_t i = 0; i < EVENTS;) {
        uint64_t k = cut_rnd(&s) % 10;
        size_t n = k < 8 ? 1 : 2 + cut_rnd(&s) % 7;
        if (n > EVENTS - i)
            n = EVENTS - i;
        for (size_t j = i; j < i + n; j++) {
            size_t len =
                k < 5 ? 1 + cut_rnd(&s) % 200 : 2000 + cut_rnd(&s) % (n > 1 ? 38000 : 58000);
            lens[j] = len < 8 ? 8 : len; /* room for "<i>:" */
        }
        frame_append_texts(&out, i, n, lens);
        i += n;
    }
    frame_append(&out, &(struct tev){.run = "cuts", .type = "complete"});
    for (size_t off = 0, writes = 0; off < out.len; writes++) {
        uint64_t k = cut_rnd(&s) % 10;
        size_t n = k < 3   ? 1 + cut_rnd(&s) % 16
                   : k < 7 ? 17 + cut_rnd(&s) % 4080
                           : 4097 + cut_rnd(&s) % 61440;
        if (n > out.len - off)
            n = out.len - off;
        while (n > 0) {
            ssize_t w = send(fd, out.data + off, n, MSG_NOSIGNAL);
            cr_assert_gt(w, 0, "send: %s", strerror(errno));
            off += (size_t)w;
            n -= (size_t)w;
        }
        if (writes % 16 == 0)
            rc_clock_sleep_ms(1);
    }
    cr_assert(rc_testsub_wait_terminal(ts, "cuts", 30000), "the run never ended");
    char *text = malloc(60000);
    cr_assert_not_null(text);
    size_t k = 0;
    for (size_t i = 0; i < rc_testsub_count(ts); i++) {
        struct rc_tframe f;
        cr_assert(rc_testsub_get(ts, i, &f));
        if (f.kind != RC_FRAME_EV || f.terminal)
            continue;
        cr_assert_lt(k, (size_t)EVENTS);
        cr_assert_eq(f.seq, k + 1);
        cr_assert(rc_mp_str(f.raw, f.len, "text", text, 60000));
        cr_assert_eq(strlen(text), lens[k], "event %zu: %zu bytes of text, sent %zu", k,
                     strlen(text), lens[k]);
        char want[24];
        int w = snprintf(want, sizeof(want), "%zu:", k);
        cr_assert_eq(memcmp(text, want, (size_t)w), 0, "event %zu out of order", k);
        cr_assert_eq(text[lens[k] - 1], 'a' + (int)(k % 26));
        k++;
    }
    cr_assert_eq(k, (size_t)EVENTS);
    cr_assert_eq(rc_metric_get(&rc_broker_metrics(t.b)->ingest_conn_errors), 0);
    free(text);
    close(fd);
    rc_buf_fini(&out);
    rc_testsub_free(ts);
    tb_stop(&t);
}

Test(sppull, a_peer_that_is_not_an_sp_push_is_dropped_and_counted, .timeout = 60)
{
    struct rc_tb t;
    const char *opts[] = {"ingest", "tcp://127.0.0.1:0", NULL};
    tb_start(&t, opts);
    rc_metric *errs = &rc_broker_metrics(t.b)->ingest_conn_errors;
    /* an SP REQ (0x0030) */
    int fd = dial_ingest(&t);
    uint8_t h[8];
    sp_header(h, 0x30);
    cr_assert_eq(send(fd, h, 8, MSG_NOSIGNAL), 8);
    cr_assert(closed_by_broker(fd), "a REQ peer was not disconnected");
    close(fd);
    cr_assert(wait_metric(errs, 1, 5000));
    /* not SP at all */
    fd = dial_ingest(&t);
    const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(send(fd, http, strlen(http), MSG_NOSIGNAL), (ssize_t)strlen(http));
    cr_assert(closed_by_broker(fd), "an HTTP client was not disconnected");
    close(fd);
    cr_assert(wait_metric(errs, 2, 5000));
    /* the listener still serves a real PUSH */
    struct rc_testsub *ts = tb_sub_run(&t, "after");
    nng_socket s;
    cr_assert_eq(nng_push0_open(&s), 0);
    cr_assert_eq(nng_dial(s, rc_broker_listen_url(t.b, RC_INGEST_PULL, 0), NULL, 0), 0);
    struct rc_buf b;
    rc_buf_init(&b);
    push_tev(s, &b, &(struct tev){.run = "after", .type = "complete"});
    cr_assert(rc_testsub_wait_terminal(ts, "after", 20000));
    cr_assert_eq(rc_metric_get(errs), 2);
    /* only the PUSH counted as a publisher connection, and only while open */
    struct rc_metrics *m = rc_broker_metrics(t.b);
    cr_assert_eq(rc_metric_get(&m->pipes_open), 1);
    cr_assert_eq(rc_metric_get(&m->pipes_closed), 0);
    nng_close(s);
    cr_assert(wait_metric(&m->pipes_closed, 1, 5000), "the PUSH's close was not seen");
    cr_assert_eq(rc_metric_get(&m->pipes_open), 0);
    rc_buf_fini(&b);
    rc_testsub_free(ts);
    tb_stop(&t);
}

Test(sppull, a_peer_silent_past_the_handshake_timeout_is_dropped, .timeout = 60)
{
    struct rc_tb t;
    const char *opts[] = {"ingest", "tcp://127.0.0.1:0", "ingest-handshake-timeout", "50ms", NULL};
    tb_start(&t, opts);
    int fd = dial_ingest(&t);
    /* half a header, then nothing: the deadline holds across reads */
    uint8_t h[8];
    sp_header(h, 0x50);
    cr_assert_eq(send(fd, h, 4, MSG_NOSIGNAL), 4);
    cr_assert(closed_by_broker(fd), "a silent peer was kept");
    close(fd);
    cr_assert(wait_metric(&rc_broker_metrics(t.b)->ingest_conn_errors, 1, 5000));
    tb_stop(&t);
}

Test(sppull, a_message_over_the_limit_drops_the_connection_after_the_ones_before, .timeout = 60)
{
    struct rc_tb t;
    /* messages up to twice --max-batch-bytes are read (and answered
     * too_large); beyond, the connection goes, as with nng's PULL */
    const char *opts[] = {
        "ingest", "tcp://127.0.0.1:0", "max-batch-bytes", "1KiB", "max-event-bytes", "1KiB", NULL};
    tb_start(&t, opts);
    struct rc_testsub *ts = tb_sub_run(&t, "big");
    int fd = dial_ingest(&t);
    struct rc_buf out;
    rc_buf_init(&out);
    uint8_t h[8];
    sp_header(h, 0x50);
    cr_assert_eq(rc_buf_append(&out, h, 8), 0);
    frame_append(&out, &(struct tev){.run = "big", .type = "delta", .text = "first"});
    const uint8_t huge[8] = {0, 0, 0, 0, 0, 0x10, 0, 0}; /* 1 MiB announced */
    cr_assert_eq(rc_buf_append(&out, huge, 8), 0);
    cr_assert_eq(send(fd, out.data, out.len, MSG_NOSIGNAL), (ssize_t)out.len);
    cr_assert(closed_by_broker(fd), "the connection survived a 1 MiB message");
    close(fd);
    cr_assert(wait_metric(&rc_broker_metrics(t.b)->ingest_conn_errors, 1, 5000));
    /* the event before it was accepted */
    bool seen = false;
    for (int i = 0; i < 1000 && !seen; i++) {
        for (size_t k = 0; k < rc_testsub_count(ts); k++) {
            struct rc_tframe f;
            if (rc_testsub_get(ts, k, &f) && f.kind == RC_FRAME_EV && f.seq == 1)
                seen = true;
        }
        if (!seen)
            rc_clock_sleep_ms(5);
    }
    cr_assert(seen, "the event before the oversize message was lost");
    rc_buf_fini(&out);
    rc_testsub_free(ts);
    tb_stop(&t);
}

Test(sppull, ipc_connections_are_read_with_the_ipc_framing, .timeout = 60)
{
    char url[96];
    snprintf(url, sizeof(url), "ipc:///tmp/runcast-test-sppull-%d.sock", (int)getpid());
    struct rc_tb t;
    const char *opts[] = {"ingest", url, "watchdog", "30s", NULL};
    tb_start(&t, opts);
    struct rc_testsub *ts = tb_sub_run(&t, "ipc");
    nng_socket s;
    cr_assert_eq(nng_push0_open(&s), 0);
    cr_assert_eq(nng_dial(s, url, NULL, 0), 0);
    struct rc_buf b;
    rc_buf_init(&b);
    enum { N = 500 };
    for (int i = 0; i <= N; i++) {
        char text[16];
        snprintf(text, sizeof(text), "%d", i);
        push_tev(s, &b,
                 &(struct tev){.run = "ipc",
                               .type = i < N ? "delta" : "complete",
                               .text = i < N ? text : NULL});
    }
    cr_assert(rc_testsub_wait_terminal(ts, "ipc", 20000), "the run never ended");
    size_t k = 0;
    for (size_t i = 0; i < rc_testsub_count(ts); i++) {
        struct rc_tframe f;
        cr_assert(rc_testsub_get(ts, i, &f));
        if (f.kind == RC_FRAME_EV)
            cr_assert_eq(f.seq, ++k);
    }
    cr_assert_eq(k, N + 1);
    cr_assert_eq(rc_metric_get(&rc_broker_metrics(t.b)->ingest_conn_errors), 0);
    nng_close(s);
    rc_buf_fini(&b);
    rc_testsub_free(ts);
    tb_stop(&t);
}

/* The counts of the first --ingest URL's lanes once they add up to want
 * (5 s at most); returns the number of lanes. */
static uint32_t lanes_when(struct rc_tb *t, uint32_t want, uint32_t conns[4])
{
    uint32_t n = 0;
    for (int i = 0; i < 500; i++) {
        n = rc_broker_pull_lanes(t->b, 0, conns, 4);
        uint32_t sum = 0;
        for (uint32_t l = 0; l < n && l < 4; l++)
            sum += conns[l];
        if (sum == want)
            return n;
        rc_clock_sleep_ms(10);
    }
    cr_assert_fail("the lanes' connections never added up to %u", want);
    return n;
}

/* Each connection of a socket is given the decoder (lane) with the fewest
 * connections, one lane per worker, and keeps it: two publishers are
 * decoded side by side, each in its own order, and a new connection takes
 * the lane a closed one left. */
Test(sppull, connections_spread_over_one_decoder_per_worker_in_order, .timeout = 60)
{
    struct rc_tb t;
    const char *opts[] = {"ingest", "tcp://127.0.0.1:0", "workers", "2", "watchdog", "30s", NULL};
    tb_start(&t, opts);
    const char *url = rc_broker_listen_url(t.b, RC_INGEST_PULL, 0);
    cr_assert_not_null(url);
    uint32_t conns[4] = {9, 9, 9, 9};
    cr_assert_eq(lanes_when(&t, 0, conns), 2, "one lane per worker");
    struct rc_testsub *ta = tb_sub_run(&t, "lane-a"), *tb = tb_sub_run(&t, "lane-b");
    nng_socket a, b, c;
    cr_assert_eq(nng_push0_open(&a), 0);
    cr_assert_eq(nng_push0_open(&b), 0);
    cr_assert_eq(nng_dial(a, url, NULL, 0), 0);
    cr_assert_eq(nng_dial(b, url, NULL, 0), 0);
    lanes_when(&t, 2, conns);
    cr_assert(conns[0] == 1 && conns[1] == 1, "two connections on lanes %u / %u", conns[0],
              conns[1]);
    struct rc_buf buf;
    rc_buf_init(&buf);
    enum { N = 300 };
    for (int i = 0; i <= N; i++) { /* interleaved: both lanes busy at once */
        char text[16];
        snprintf(text, sizeof(text), "%d", i);
        const char *type = i < N ? "delta" : "complete";
        push_tev(a, &buf,
                 &(struct tev){.run = "lane-a", .type = type, .text = i < N ? text : NULL});
        push_tev(b, &buf,
                 &(struct tev){.run = "lane-b", .type = type, .text = i < N ? text : NULL});
    }
    check_in_order(ta, "lane-a", N);
    check_in_order(tb, "lane-b", N);
    /* a closed connection frees its lane for the next */
    nng_close(a);
    lanes_when(&t, 1, conns);
    uint32_t freed = conns[0] == 0 ? 0 : 1;
    cr_assert_eq(conns[1 - freed], 1);
    cr_assert_eq(nng_push0_open(&c), 0);
    cr_assert_eq(nng_dial(c, url, NULL, 0), 0);
    lanes_when(&t, 2, conns);
    cr_assert(conns[0] == 1 && conns[1] == 1, "the new connection took lane %u? %u / %u", freed,
              conns[0], conns[1]);
    cr_assert_eq(rc_metric_get(&rc_broker_metrics(t.b)->ingest_conn_errors), 0);
    nng_close(b);
    nng_close(c);
    rc_buf_fini(&buf);
    rc_testsub_free(ta);
    rc_testsub_free(tb);
    tb_stop(&t);
}

/* A message several times the largest read buffer (256 KiB) is read into
 * one buffer of its size, between small ones, and arrives whole. */
Test(sppull, a_batch_larger_than_the_read_buffer_arrives_whole, .timeout = 60)
{
    struct rc_tb t;
    const char *opts[] = {"ingest", "tcp://127.0.0.1:0", "watchdog", "30s", NULL};
    tb_start(&t, opts);
    struct rc_testsub *ts = tb_sub_run(&t, "large");
    nng_socket s;
    cr_assert_eq(nng_push0_open(&s), 0);
    cr_assert_eq(nng_dial(s, rc_broker_listen_url(t.b, RC_INGEST_PULL, 0), NULL, 0), 0);
    enum { BIG = 24, TEXT = 40000, ROUNDS = 2 };
    static char text[TEXT + 1];
    struct rc_buf b;
    rc_buf_init(&b);
    size_t sent = 0;
    for (int r = 0; r < ROUNDS; r++) {
        rc_buf_reset(&b);
        cr_assert_eq(rc_mpw_array(&b, BIG), 0);
        for (int i = 0; i < BIG; i++) {
            memset(text, 'a' + (int)(sent % 26), TEXT);
            text[TEXT] = 0;
            tev_encode(&b, &(struct tev){.run = "large", .type = "delta", .text = text});
            sent++;
        }
        cr_assert_gt(b.len, (size_t)3 * 262144);
        cr_assert_eq(nng_send(s, b.data, b.len, 0), 0);
        push_tev(s, &b, &(struct tev){.run = "large", .type = "delta", .text = "small"});
        sent++;
    }
    push_tev(s, &b, &(struct tev){.run = "large", .type = "complete"});
    cr_assert(rc_testsub_wait_terminal(ts, "large", 20000), "the run never ended");
    static char got[TEXT + 1];
    size_t k = 0;
    for (size_t i = 0; i < rc_testsub_count(ts); i++) {
        struct rc_tframe f;
        cr_assert(rc_testsub_get(ts, i, &f));
        if (f.kind != RC_FRAME_EV || f.terminal)
            continue;
        cr_assert(rc_mp_str(f.raw, f.len, "text", got, sizeof(got)));
        if (k % (BIG + 1) == BIG) {
            cr_assert_str_eq(got, "small");
        } else {
            cr_assert_eq(strlen(got), (size_t)TEXT, "event %zu: %zu bytes of text", k, strlen(got));
            cr_assert_eq(got[0], 'a' + (int)(k % 26));
            cr_assert_eq(got[TEXT - 1], 'a' + (int)(k % 26));
        }
        k++;
    }
    cr_assert_eq(k, sent);
    nng_close(s);
    rc_buf_fini(&b);
    rc_testsub_free(ts);
    tb_stop(&t);
}

/* URL schemes the stream reader does not read (here inproc://) keep nng's
 * PULL socket, with the stream reader on (the default). */
Test(sppull, other_schemes_keep_nngs_pull_socket, .timeout = 60)
{
    char url[64];
    snprintf(url, sizeof(url), "inproc://runcast-test-sppull-%d", (int)getpid());
    struct rc_tb t;
    const char *opts[] = {"ingest", url, "ingest-stream-reader", "1", NULL};
    tb_start(&t, opts);
    struct rc_testsub *ts = tb_sub_run(&t, "inproc");
    nng_socket s;
    cr_assert_eq(nng_push0_open(&s), 0);
    cr_assert_eq(nng_dial(s, url, NULL, 0), 0);
    struct rc_buf b;
    rc_buf_init(&b);
    push_tev(s, &b, &(struct tev){.run = "inproc", .type = "delta", .text = "x"});
    push_tev(s, &b, &(struct tev){.run = "inproc", .type = "complete"});
    cr_assert(rc_testsub_wait_terminal(ts, "inproc", 20000), "the run never ended");
    /* an nng pipe, counted as one */
    cr_assert_eq(rc_metric_get(&rc_broker_metrics(t.b)->pipes_open), 1);
    nng_close(s);
    rc_buf_fini(&b);
    rc_testsub_free(ts);
    tb_stop(&t);
}
