/*
 * Integration against a real runcastd process on free ports: PUSH and REQ
 * publishers (nng directly and the third-party nngcat), batches mixing good
 * and bad events, garbage, oversize messages, a flood past --max-runs,
 * publisher-gone over a real connection, SIGTERM during load.  In every
 * case the broker stays up (or exits 0 on SIGTERM) and every valid run's
 * events reach a WebSocket subscriber in order.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rc_buf.h"
#include "rc_clock.h"
#include "rc_error.h"
#include "rc_proto.h"
#include "rc_testsub.h"
#include "rc_tpeer.h"
#include "rc_tproc.h"
#include "rc_tutil.h"

static bool have_edge(void)
{
    return true; /* runcastd is built with the edge in this tree */
}

/* Checks that the subscriber saw, for run, exactly seqs 1..n in order with
 * the given types (NULL: any). */
static void expect_run(struct wsc *c, const char *run, size_t n, const char *const *types)
{
    uint64_t next = 1;
    size_t total = wsc_count(c);
    for (size_t i = 0; i < total; i++) {
        struct wsev e;
        wsc_get(c, i, &e);
        if (strcmp(e.run, run) != 0)
            continue;
        cr_assert_eq(e.seq, next, "run %s: seq %lu where %lu was due", run, (unsigned long)e.seq,
                     (unsigned long)next);
        if (types && types[next - 1])
            cr_assert_str_eq(e.type, types[next - 1], "run %s seq %lu", run, (unsigned long)next);
        next++;
    }
    cr_assert_eq(next - 1, n, "run %s: %lu events seen, %zu expected", run,
                 (unsigned long)(next - 1), n);
}

/* Polls (bounded) until the subscriber has seen n events of run.  A PUSH
 * write that completed is not yet an event the broker handled: a request
 * on another connection could overtake it. */
static bool wait_run_events(struct wsc *c, const char *run, size_t n, uint64_t timeout_ms)
{
    uint64_t end = rc_clock_mono_ms() + timeout_ms;
    for (;;) {
        size_t seen = 0, total = wsc_count(c);
        for (size_t i = 0; i < total; i++) {
            struct wsev e;
            if (wsc_get(c, i, &e) && strcmp(e.run, run) == 0)
                seen++;
        }
        if (seen >= n)
            return true;
        if (rc_clock_mono_ms() >= end)
            return false;
        rc_clock_sleep_ms(5);
    }
}

static void encode_batch(struct rc_buf *b, const struct tev *e, size_t n)
{
    rc_buf_reset(b);
    rc_mpw_array(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        tev_encode(b, &e[i]);
}

static char *write_tmp(const char *tag, const void *p, size_t n)
{
    static char path[160];
    snprintf(path, sizeof(path), "/tmp/rc-test-%d-%s.msgpack", (int)getpid(), tag);
    FILE *f = fopen(path, "wb");
    fwrite(p, 1, n, f);
    fclose(f);
    return path;
}

/*
 * --print-config checks the configuration, prints the effective values and
 * exits without starting: it used to be parsed and then ignored, so
 * runcastd started on its ports instead (timeout's 124 here).
 */
Test(runcastd, print_config_checks_prints_and_exits_without_listening, .timeout = 60)
{
    const char *text = "watchdog = 7s\nmax-runs = 1234\n";
    char *conf = write_tmp("conf", text, strlen(text));
    char cmd[1024], out[16384];
    snprintf(cmd, sizeof(cmd),
             "timeout 10 %s/broker/runcastd --config %s --print-config --run-deadline 2h "
             "--ingest tcp://127.0.0.1:1 2>&1",
             RC_BINARY_DIR, conf);
    int st = tproc_run(cmd, out, sizeof(out));
    cr_assert_eq(st, 0, "status %d: %s", st, out);
    cr_assert_not_null(strstr(out, "watchdog = 7s\n"), "%s", out);     /* from the file */
    cr_assert_not_null(strstr(out, "max-runs = 1234\n"), "%s", out);   /* from the file */
    cr_assert_not_null(strstr(out, "run-deadline = 2h\n"), "%s", out); /* a flag */
    cr_assert_null(strstr(out, "listening"), "%s", out);
    /* an invalid configuration: exit 2 with the reason (systemd's unit does
     * not restart on 2) */
    snprintf(cmd, sizeof(cmd),
             "timeout 10 %s/broker/runcastd --config %s --print-config --watchdog 5parsecs 2>&1",
             RC_BINARY_DIR, conf);
    st = tproc_run(cmd, out, sizeof(out));
    cr_assert_eq(st, 2, "status %d: %s", st, out);
    cr_assert_not_null(strstr(out, "bad duration '5parsecs'"), "%s", out);
    unlink(conf);
}

/* A second runcastd on a port the first one has: exit 1 (the systemd unit
 * restarts on it, a few times) with a line that names the option, the
 * address and why, for the ingest and for the HTTP port alike. */
Test(runcastd, a_port_in_use_exits_1_naming_it, .timeout = 60)
{
    struct rcd d;
    rcd_start(&d, NULL);
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof(cmd),
             "timeout 10 %s/broker/runcastd --ingest %s --ingest-ack tcp://127.0.0.1:0 "
             "--http 127.0.0.1:0 2>&1",
             RC_BINARY_DIR, d.pull);
    int st = tproc_run(cmd, out, sizeof(out));
    cr_assert_eq(st, 1, "status %d: %s", st, out);
    char want[256];
    snprintf(want, sizeof(want), "listen %s (--ingest): Address in use", d.pull);
    cr_assert_not_null(strstr(out, want), "%s", out);
    snprintf(cmd, sizeof(cmd),
             "timeout 10 %s/broker/runcastd --ingest tcp://127.0.0.1:0 --ingest-ack "
             "tcp://127.0.0.1:0 --http 127.0.0.1:%d 2>&1",
             RC_BINARY_DIR, d.http_port);
    st = tproc_run(cmd, out, sizeof(out));
    cr_assert_eq(st, 1, "status %d: %s", st, out);
    snprintf(want, sizeof(want), "cannot listen on --http 127.0.0.1:%d: address in use",
             d.http_port);
    cr_assert_not_null(strstr(out, want), "%s", out);
    cr_assert(rcd_alive(&d), "the first runcastd is still up");
    cr_assert_eq(rcd_stop(&d, 20000), 0);
}

Test(runcastd, publishers_bad_input_and_in_order_delivery, .timeout = 60)
{
    struct rcd d;
    const char *extra[] = {"--max-batch-bytes", "65536", "--max-event-bytes", "16KiB", NULL};
    rcd_start(&d, extra);
    struct wsc *ws = wsc_open_all(d.http_port);
    struct rc_buf b;
    rc_buf_init(&b);

    /* 1. nng PUSH: a batch interleaving two runs, plus a bad element */
    struct tev b1[] = {
        {.run = "p1", .type = "start"},
        {.run = "p2", .type = "start"},
        {.run = "p1", .type = "thinking", .text = "hm"},
        {.run = "p1", .type = "nope"},
        {.run = "p2", .type = "delta", .text = "x"},
    };
    encode_batch(&b, b1, 5);
    push_once(d.pull, b.data, b.len);
    /* the REQ below must come after these (its seqs are asserted) */
    cr_assert(wait_run_events(ws, "p1", 2, 5000) && wait_run_events(ws, "p2", 2, 5000));

    /* 2. nng REQ: mixed batch answered per element */
    struct tev b2[] = {
        {.run = "p1", .type = "tool", .tool_id = "t1"},
        {.run = "bad id!", .type = "delta"},
        {.run = "p2", .type = "delta", .text = "y"},
    };
    encode_batch(&b, b2, 3);
    size_t rl = 0;
    void *r = req_once(d.rep, b.data, b.len, &rl, 5000);
    cr_assert_not_null(r);
    uint64_t seq = 0;
    char code[32];
    cr_assert(rc_mp_uint(r, rl, "results.0.seq", &seq));
    cr_assert_eq(seq, 3);
    cr_assert(rc_mp_str(r, rl, "results.1.error.code", code, sizeof(code)));
    cr_assert_str_eq(code, "bad_field");
    cr_assert(rc_mp_uint(r, rl, "results.2.seq", &seq));
    cr_assert_eq(seq, 3);
    bool ok = true;
    cr_assert(rc_mp_bool(r, rl, "ok", &ok));
    cr_assert_not(ok);
    free(r);

    /* 3. garbage on both sockets */
    push_once(d.pull, "\xc1\xc1garbage", 9);
    r = req_once(d.rep, "\x92\x01", 2, &rl, 5000); /* truncated array */
    cr_assert_not_null(r);
    cr_assert(rc_mp_str(r, rl, "results.0.error.code", code, sizeof(code)));
    cr_assert_str_eq(code, "malformed");
    free(r);

    /* 4. oversize: over --max-batch-bytes (answered too_large), and far over
     * (nng drops that connection); the broker stays up */
    size_t big = 100000;
    char *blob = malloc(big);
    memset(blob, 'a', big);
    blob[big - 1] = 0;
    rc_buf_reset(&b);
    tev_encode(&b, &(struct tev){.run = "p1", .type = "delta", .text = blob});
    r = req_once(d.rep, b.data, b.len, &rl, 5000);
    cr_assert_not_null(r);
    cr_assert(rc_mp_str(r, rl, "results.0.error.code", code, sizeof(code)));
    cr_assert_str_eq(code, "too_large");
    free(r);
    char *huge = calloc(1, 1 << 20);
    push_raw_tcp_once(d.pull, huge, 1 << 20);
    free(huge);
    free(blob);

    /* 5. the third-party nngcat: PUSH a single event, REQ a batch */
    rc_buf_reset(&b);
    tev_encode(&b, &(struct tev){.run = "p2", .type = "phase", .phase = "execute"});
    char cmd[512];
    char *push_path = write_tmp("push", b.data, b.len);
    /* bounded: a hung third-party client fails this test with its command
     * line instead of stalling until Criterion's timeout (seen once in CI,
     * cause unknown: the test timed out with no assertion) */
    snprintf(cmd, sizeof(cmd), "timeout 20 nngcat --push --dial %s --file %s", d.pull, push_path);
    int push_st = system(cmd);
    unlink(push_path); /* before the assertion: a failure leaves no file behind */
    cr_assert_eq(push_st, 0, "%s", cmd);
    cr_assert(wait_run_events(ws, "p2", 4, 5000), "nngcat's phase event not seen");
    struct tev b3[] = {{.run = "p1", .type = "complete"}, {.run = "p2", .type = "complete"}};
    encode_batch(&b, b3, 2);
    char *path = write_tmp("req", b.data, b.len);
    char out[200];
    snprintf(out, sizeof(out), "%s.reply", path);
    snprintf(cmd, sizeof(cmd),
             "timeout 20 nngcat --req --dial %s --file %s --raw --recv-timeout 5 > %s", d.rep, path,
             out);
    int req_st = system(cmd);
    unlink(path);
    FILE *f = fopen(out, "rb");
    char reply[512];
    rl = f != NULL ? fread(reply, 1, sizeof(reply), f) : 0;
    if (f != NULL)
        fclose(f);
    unlink(out);
    cr_assert_eq(req_st, 0, "%s", cmd);
    cr_assert(rc_mp_bool(reply, rl, "ok", &ok));
    cr_assert(ok, "nngcat batch accepted");
    cr_assert(rc_mp_uint(reply, rl, "results.0.seq", &seq));
    cr_assert_eq(seq, 4);
    cr_assert(rc_mp_uint(reply, rl, "results.1.seq", &seq));
    cr_assert_eq(seq, 5);

    cr_assert(wsc_wait_terminals(ws, 2, 5000));
    const char *t1[] = {"start", "thinking", "tool", "complete"};
    const char *t2[] = {"start", "delta", "delta", "phase", "complete"};
    expect_run(ws, "p1", 4, t1);
    expect_run(ws, "p2", 5, t2);
    cr_assert(rcd_alive(&d));
    wsc_close(ws);
    rc_buf_fini(&b);
    cr_assert_eq(rcd_stop(&d, 5000), 0);
}

Test(runcastd, flood_past_max_runs, .timeout = 60)
{
    struct rcd d;
    const char *extra[] = {"--max-runs", "50", NULL};
    rcd_start(&d, extra);
    struct rc_buf b;
    rc_buf_init(&b);
    struct tev evs[80];
    char ids[80][16];
    for (int i = 0; i < 80; i++) {
        snprintf(ids[i], sizeof(ids[i]), "f%d", i);
        evs[i] = (struct tev){.run = ids[i], .type = "start"};
    }
    encode_batch(&b, evs, 80);
    size_t rl;
    void *r = req_once(d.rep, b.data, b.len, &rl, 5000);
    cr_assert_not_null(r);
    int okn = 0, lim = 0;
    for (int i = 0; i < 80; i++) {
        char key[48], code[32];
        uint64_t seq;
        snprintf(key, sizeof(key), "results.%d.seq", i);
        if (rc_mp_uint(r, rl, key, &seq)) {
            okn++;
            continue;
        }
        snprintf(key, sizeof(key), "results.%d.error.code", i);
        cr_assert(rc_mp_str(r, rl, key, code, sizeof(code)));
        cr_assert_str_eq(code, "limit");
        lim++;
    }
    free(r);
    cr_assert_eq(okn, 50);
    cr_assert_eq(lim, 30);
    /* a PUSH flood of new runs is refused too, without harm */
    for (int i = 0; i < 20; i++) {
        snprintf(ids[i], sizeof(ids[i]), "g%d", i);
        evs[i] = (struct tev){.run = ids[i], .type = "start"};
    }
    encode_batch(&b, evs, 20);
    push_once(d.pull, b.data, b.len);
    /* existing runs still accept events */
    rc_buf_reset(&b);
    tev_encode(&b, &(struct tev){.run = "f0", .type = "complete"});
    r = req_once(d.rep, b.data, b.len, &rl, 5000);
    cr_assert_not_null(r);
    uint64_t seq;
    cr_assert(rc_mp_uint(r, rl, "results.0.seq", &seq));
    cr_assert_eq(seq, 2);
    free(r);
    cr_assert(rcd_alive(&d));
    rc_buf_fini(&b);
    cr_assert_eq(rcd_stop(&d, 5000), 0);
}

Test(runcastd, publisher_gone_over_a_real_connection, .timeout = 60)
{
    struct rcd d;
    const char *extra[] = {"--watchdog", "30s", "--publisher-grace", "100ms", "--watchdog-tick",
                           "5ms",        NULL};
    rcd_start(&d, extra);
    struct wsc *ws = wsc_open_all(d.http_port);
    struct rc_buf b;
    rc_buf_init(&b);
    tev_encode(&b, &(struct tev){.run = "gone", .type = "phase", .phase = "execute"});
    push_once(d.pull, b.data, b.len); /* dials, sends, closes */
    cr_assert(wsc_wait_terminals(ws, 1, 5000));
    struct wsev e;
    cr_assert(wsc_get(ws, 1, &e));
    cr_assert_str_eq(e.run, "gone");
    cr_assert_str_eq(e.type, "error");
    cr_assert(e.synthetic);
    cr_assert_str_eq(e.code, "publisher_gone");
    cr_assert_eq(e.seq, 2);
    wsc_close(ws);
    rc_buf_fini(&b);
    cr_assert_eq(rcd_stop(&d, 5000), 0);
}

/*
 * A load thread: one batch of `batch` events of run `run`, sent in a loop
 * until stop, over PUSH (fire and forget; `done` counts completed sends)
 * or, with `acked`, over REQ (`done` counts answered requests).  Its socket
 * dials without blocking and redials by itself, so the load goes on across
 * broker and ingress restarts; short timeouts keep the loop checking stop.
 */
struct load {
    const char *url;
    bool acked;
    const char *run;
    int batch;
    /* relaxed: only tells the thread to finish; pthread_join orders the
     * count (read after the join) */
    atomic_bool stop;
    int done;
};

static void *load_thread(void *arg)
{
    struct load *l = arg;
    nng_socket s;
    if ((l->acked ? nng_req0_open(&s) : nng_push0_open(&s)) != 0)
        return NULL;
    nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, l->acked ? 500 : 100);
    if (l->acked) {
        nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 500);
        nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, 200);
    }
    nng_dial(s, l->url, NULL, NNG_FLAG_NONBLOCK);
    struct rc_buf b;
    rc_buf_init(&b);
    struct tev evs[32];
    size_t n = l->batch < 32 ? (size_t)l->batch : 32; /* no assertion off the test's thread */
    for (size_t i = 0; i < n; i++)
        evs[i] = (struct tev){.run = l->run, .type = "delta", .text = "0123456789abcdef"};
    encode_batch(&b, evs, n);
    while (!atomic_load_explicit(&l->stop, memory_order_relaxed)) {
        if (nng_send(s, b.data, b.len, 0) != 0)
            continue;
        void *reply = NULL;
        size_t rl = 0;
        if (!l->acked) {
            l->done++;
        } else if (nng_recv(s, &reply, &rl, NNG_FLAG_ALLOC) == 0) {
            l->done++;
            nng_free(reply, rl);
        }
    }
    rc_buf_fini(&b);
    tpeer_close_bounded(s); /* the broker may have exited 70 under it */
    return NULL;
}

Test(runcastd, sigterm_during_load_exits_zero, .timeout = 60)
{
    struct rcd d;
    const char *extra[] = {"--shutdown-timeout", "3s", NULL};
    rcd_start(&d, extra);
    struct wsc *ws = wsc_open_all(d.http_port);
    struct load la = {.url = d.pull, .run = "load", .batch = 32};
    pthread_t th;
    pthread_create(&th, NULL, load_thread, &la);
    /* acked requests while the load runs */
    struct rc_buf b;
    rc_buf_init(&b);
    tev_encode(&b, &(struct tev){.run = "acked", .type = "start"});
    size_t rl;
    void *r = req_once(d.rep, b.data, b.len, &rl, 5000);
    cr_assert_not_null(r);
    free(r);
    rc_clock_sleep_ms(300);
    /* The broker bounds its own shutdown (--shutdown-timeout 3s); the wait
     * here is only a backstop, generous for sanitizer builds: a broker still
     * running after it is killed and reported as a non-zero status.  How
     * long shutdown takes is measured by the benchmarks, not asserted. */
    int st = rcd_stop(&d, 20000);
    atomic_store_explicit(&la.stop, true, memory_order_relaxed);
    pthread_join(th, NULL);
    cr_assert_eq(st, 0, "exit status %d", st);
    cr_assert_gt(la.done, 0);
    /* what the subscriber got of run "load" is in order with no hole */
    size_t n = wsc_count(ws);
    uint64_t next = 1;
    for (size_t i = 0; i < n; i++) {
        struct wsev e;
        wsc_get(ws, i, &e);
        if (strcmp(e.run, "load") != 0)
            continue;
        cr_assert_eq(e.seq, next);
        next++;
    }
    cr_assert_gt(next, 1, "the subscriber received load events");
    wsc_close(ws);
    rc_buf_fini(&b);
    (void)have_edge;
}

Test(runcastd, pull_pushes_back_instead_of_dropping, .timeout = 60)
{
    struct rcd d;
    const char *extra[] = {"--run-mailbox-limit", "2", NULL};
    rcd_start(&d, extra);
    struct rc_buf b;
    rc_buf_init(&b);
    struct tev evs[32];
    for (int i = 0; i < 32; i++)
        evs[i] = (struct tev){.run = "bp", .type = "delta", .text = "0123456789abcdef"};
    encode_batch(&b, evs, 32);
    enum { BATCHES = 300 };
    nng_socket s;
    cr_assert_eq(nng_push0_open(&s), 0);
    cr_assert_eq(nng_dial(s, d.pull, NULL, 0), 0);
    for (int i = 0; i < BATCHES; i++)
        cr_assert_eq(nng_send(s, b.data, b.len, 0), 0);
    /* acked heartbeats until every pushed event is counted in the seq */
    rc_buf_reset(&b);
    tev_encode(&b, &(struct tev){.run = "bp", .type = "heartbeat"});
    uint64_t want = BATCHES * 32, seq = 0;
    int beats = 0;
    uint64_t end = rc_clock_mono_ms() + 10000;
    while (rc_clock_mono_ms() < end) {
        size_t rl;
        void *r = req_once(d.rep, b.data, b.len, &rl, 5000);
        cr_assert_not_null(r);
        if (!rc_mp_uint(r, rl, "results.0.seq", &seq)) {
            /* the REP path answers `overloaded` while the mailbox is full */
            char code[32];
            cr_assert(rc_mp_str(r, rl, "results.0.error.code", code, sizeof(code)));
            cr_assert_str_eq(code, "overloaded");
            free(r);
            rc_clock_sleep_ms(20);
            continue;
        }
        free(r);
        beats++;
        if (seq - (uint64_t)beats >= want)
            break;
        rc_clock_sleep_ms(50);
    }
    nng_close(s);
    cr_assert_eq(seq - (uint64_t)beats, want, "%llu of %llu pushed events accepted",
                 (unsigned long long)(seq - (uint64_t)beats), (unsigned long long)want);
    rc_buf_fini(&b);
    cr_assert_eq(rcd_stop(&d, 5000), 0);
}

Test(runcastd, acks_answer_shutting_down_after_quiesce, .timeout = 30)
{
    struct rc_tb t;
    char url[64];
    {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        socklen_t l = sizeof(a);
        getsockname(fd, (struct sockaddr *)&a, &l);
        close(fd);
        snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", ntohs(a.sin_port));
    }
    const char *opts[] = {"ingest-ack", url, NULL};
    tb_start(&t, opts);
    cr_assert_str_eq(rc_broker_listen_url(t.b, RC_INGEST_REP, 0), url);
    struct rc_buf b;
    rc_buf_init(&b);
    tev_encode(&b, &(struct tev){.run = "q", .type = "start"});
    size_t rl;
    void *r = req_once(url, b.data, b.len, &rl, 5000);
    cr_assert_not_null(r);
    uint64_t seq;
    cr_assert(rc_mp_uint(r, rl, "results.0.seq", &seq));
    free(r);
    cr_assert(rc_broker_serving(t.b));
    cr_assert_eq(rc_broker_quiesce(t.b, 2000), 0);
    cr_assert_not(rc_broker_serving(t.b));
    r = req_once(url, b.data, b.len, &rl, 5000);
    cr_assert_not_null(r);
    char code[32];
    cr_assert(rc_mp_str(r, rl, "results.0.error.code", code, sizeof(code)));
    cr_assert_str_eq(code, "shutting_down");
    free(r);
    cr_assert_eq(rc_broker_publish(t.b, b.data, b.len, 0, NULL, NULL), RC_ESHUTDOWN);
    rc_buf_fini(&b);
    tb_stop(&t);
}

/*
 * SIGTERM while a publisher floods a PULL socket that is paused for
 * back-pressure (--run-mailbox-limit 2).  nng_close of that socket blocked
 * for ever in about half of the stops here, when a receive was posted
 * while the socket shut down (now fenced), and the broker also bounds each
 * close, so it exits 0 on its own.  --shutdown-timeout is long (60 s) so that the process's
 * last-resort exit at the timeout cannot be what ends it: a broker that
 * hangs is killed at the backstop and reported as -1.  Five rounds, since
 * the hang is a race.
 */
Test(runcastd, sigterm_while_pull_paused_and_flooded_exits_zero, .timeout = 120)
{
    for (int round = 0; round < 5; round++) {
        struct rcd d;
        const char *extra[] = {"--run-mailbox-limit", "2", "--shutdown-timeout", "60s", NULL};
        rcd_start(&d, extra);
        struct load la = {.url = d.pull, .run = "load", .batch = 32};
        pthread_t th;
        pthread_create(&th, NULL, load_thread, &la);
        /* wait until the flood reaches the run: an acked heartbeat for it
         * answers a seq or `overloaded` (its mailbox is full) */
        struct rc_buf b;
        rc_buf_init(&b);
        tev_encode(&b, &(struct tev){.run = "load", .type = "heartbeat"});
        bool reached = false;
        uint64_t end = rc_clock_mono_ms() + 10000;
        while (!reached && rc_clock_mono_ms() < end) {
            size_t rl;
            void *r = req_once(d.rep, b.data, b.len, &rl, 5000);
            cr_assert_not_null(r);
            uint64_t seq = 0;
            char code[32] = "";
            reached = (rc_mp_uint(r, rl, "results.0.seq", &seq) && seq > 1) ||
                      (rc_mp_str(r, rl, "results.0.error.code", code, sizeof(code)) &&
                       strcmp(code, "overloaded") == 0);
            free(r);
            if (!reached)
                rc_clock_sleep_ms(10);
        }
        rc_buf_fini(&b);
        cr_assert(reached, "the flood never reached the run");
        int st = rcd_stop(&d, 20000);
        atomic_store_explicit(&la.stop, true, memory_order_relaxed);
        pthread_join(th, NULL);
        cr_assert_eq(st, 0, "round %d: exit status %d (-1: killed after 20 s)", round, st);
    }
}

/* An acked start for run; true when it was accepted. */
static bool acked_start(const struct rcd *d, const char *run)
{
    struct rc_buf b;
    rc_buf_init(&b);
    tev_encode(&b, &(struct tev){.run = run, .type = "start"});
    size_t rl = 0;
    void *r = req_once(d->rep, b.data, b.len, &rl, 2000);
    uint64_t seq = 0;
    bool ok = r && rc_mp_uint(r, rl, "results.0.seq", &seq) && seq == 1;
    free(r);
    rc_buf_fini(&b);
    return ok;
}

/* Polls (bounded) until the log has n lines containing needle. */
static bool wait_log(const struct rcd *d, const char *needle, size_t n, uint64_t timeout_ms)
{
    uint64_t end = rc_clock_mono_ms() + timeout_ms;
    while (rcd_log_count(d, needle) < n) {
        if (rc_clock_mono_ms() >= end)
            return false;
        rc_clock_sleep_ms(5);
    }
    return true;
}

/*
 * The ingress supervisor: the ingress made to fail (the test hook, SIGRTMIN+1
 * with RC_TEST_HOOKS=1; nothing on the wire can do it) is restarted,
 * rebinds its URLs and accepts again; one failure more than
 * --restart-intensity within --restart-period makes runcastd exit 70.
 */
Test(runcastd, ingress_failures_restart_it_then_exit_70_past_the_intensity, .timeout = 90)
{
    setenv("RC_TEST_HOOKS", "1", 1);
    struct rcd d;
    const char *extra[] = {"--restart-intensity", "2", "--restart-period", "10m", NULL};
    rcd_start(&d, extra);
    cr_assert(acked_start(&d, "before"));
    for (size_t i = 1; i <= 2; i++) {
        kill(d.pid, SIGRTMIN + 1);
        cr_assert(wait_log(&d, "ingress restarted after a failure", i, 10000),
                  "restart %zu not logged (log %s)", i, d.log);
        /* the new instance listens on the same URLs */
        char run[32];
        snprintf(run, sizeof(run), "after-%zu", i);
        bool ok = false;
        uint64_t end = rc_clock_mono_ms() + 10000;
        while (!ok && rc_clock_mono_ms() < end)
            ok = acked_start(&d, run);
        cr_assert(ok, "no ingest after restart %zu", i);
        cr_assert(rcd_alive(&d));
    }
    kill(d.pid, SIGRTMIN + 1); /* the third failure within the period */
    int st = rcd_wait(&d, 20000);
    cr_assert_eq(st, 70, "exit status %d (log %s)", st, d.log);
    rcd_log_discard(&d);
}

/*
 * Ingress failures under load, LOAD_RESTARTS of them, LOAD_THREADS
 * publishers flat out (acknowledged: REQ batches of 8; else PUSH, one event
 * per message, all to one run).  Either every restart works (each failed
 * instance's sockets close at once, ingest works again after, SIGTERM exits
 * 0), or nng 1.5.2 deadlocked closing a failed instance's socket and
 * runcastd says so and exits 70 for its service manager (ingress_fini).
 * Never a hang, never a crash.  History: the failed instance's replies
 * complete on workers while its sockets close (nng panicked when a reply was
 * posted on a closing socket, before the REP fence in rc_ingress.c); and
 * nng_close deadlocked nng's reaper within 2-40 restarts, the next restart
 * then waiting for ever with the broker up but deaf, until rc_ingress.c
 * stopped its own operations first (sock_quiet: with REQ load the deadlock
 * went from most runs to about 1 in 20; with the PUSH flood on one run it
 * still came in 10 of 10 runs) and let the connections settle (socks_settle:
 * 0 of 38 runs since), and exits 70 on the rest.  Returns whether every
 * restart was clean (false: runcastd exited 70 as it must).
 */
#define LOAD_RESTARTS 60
#define LOAD_THREADS  4
#define LOAD_ATTEMPTS 3

static bool restarts_under_load(bool acked)
{
    setenv("RC_TEST_HOOKS", "1", 1);
    struct rcd d;
    const char *extra[] = {"--restart-intensity", "100", "--restart-period", "10m", NULL};
    rcd_start(&d, extra);
    struct load l[LOAD_THREADS];
    pthread_t th[LOAD_THREADS];
    for (int i = 0; i < LOAD_THREADS; i++) {
        l[i] = (struct load){.url = acked ? d.rep : d.pull,
                             .acked = acked,
                             .run = acked ? "ackload" : "pushload",
                             .batch = acked ? 8 : 1};
        pthread_create(&th[i], NULL, load_thread, &l[i]);
    }
    bool wedged = false;
    for (size_t i = 1; i <= LOAD_RESTARTS && !wedged; i++) {
        rc_clock_sleep_ms(50); /* let traffic pile up on this instance */
        kill(d.pid, SIGRTMIN + 1);
        uint64_t until = rc_clock_mono_ms() + 10000;
        while (rcd_log_count(&d, "ingress restarted after a failure") < i &&
               !(wedged = rcd_log_count(&d, "nng is stuck") > 0) && rc_clock_mono_ms() < until)
            rc_clock_sleep_ms(5);
        if (wedged)
            break;
        cr_assert(rcd_log_count(&d, "ingress restarted after a failure") >= i,
                  "restart %zu not logged (log %s)", i, d.log);
        cr_assert(rcd_alive(&d), "runcastd died at restart %zu (log %s)", i, d.log);
    }
    if (wedged) {
        int st = rcd_wait(&d, 20000);
        for (int i = 0; i < LOAD_THREADS; i++) {
            atomic_store_explicit(&l[i].stop, true, memory_order_relaxed);
            pthread_join(th[i], NULL);
        }
        cr_assert_eq(st, 70, "stuck nng: exit status %d, not 70 (log %s)", st, d.log);
        rcd_log_discard(&d);
        return false;
    }
    char run[32] = "after-load";
    bool ok = false;
    uint64_t end = rc_clock_mono_ms() + 10000;
    while (!ok && rc_clock_mono_ms() < end)
        ok = acked_start(&d, run);
    cr_assert(ok, "no acked ingest after the restarts");
    int sent = 0;
    for (int i = 0; i < LOAD_THREADS; i++) {
        atomic_store_explicit(&l[i].stop, true, memory_order_relaxed);
        pthread_join(th[i], NULL);
        sent += l[i].done;
    }
    cr_assert_gt(sent, 0, "no load got through");
    cr_assert_eq(rcd_log_count(&d, "did not finish"), 0,
                 "a failed ingress's sockets did not close at once (log %s)", d.log);
    int st = rcd_stop(&d, 20000);
    cr_assert_eq(st, 0, "exit status %d (log %s)", st, d.log);
    return true;
}

/* The exit-70 path must stay the exception: one attempt in LOAD_ATTEMPTS
 * must restart cleanly every time (before socks_settle, the PUSH flood
 * deadlocked nng in every attempt). */
static void restarts_under_load_mostly_clean(bool acked)
{
    for (int i = 0; i < LOAD_ATTEMPTS; i++)
        if (restarts_under_load(acked))
            return;
    cr_assert_fail("nng deadlocked closing a failed ingress in %d of %d attempts", LOAD_ATTEMPTS,
                   LOAD_ATTEMPTS);
}

Test(runcastd, ingress_restarts_under_acknowledged_load_restart_or_exit_70, .timeout = 150)
{
    restarts_under_load_mostly_clean(true);
}

Test(runcastd, ingress_restarts_under_push_load_restart_or_exit_70, .timeout = 150)
{
    restarts_under_load_mostly_clean(false);
}

/*
 * The edge's listener is a supervised child too (the test hook SIGRTMIN+2
 * makes it report a failure, as 64 accept errors in a row or a listener
 * closed under it would): it is restarted on the same port while the open
 * WebSocket connections keep receiving, and one failure past
 * --restart-intensity makes runcastd exit 70.
 */
Test(runcastd, edge_listener_failures_restart_it_then_exit_70_past_the_intensity, .timeout = 90)
{
    setenv("RC_TEST_HOOKS", "1", 1);
    struct rcd d;
    const char *extra[] = {"--restart-intensity", "2", "--restart-period", "10m", NULL};
    rcd_start(&d, extra);
    struct wsc *old = wsc_open_all(d.http_port);
    for (size_t i = 1; i <= 2; i++) {
        kill(d.pid, SIGRTMIN + 2);
        cr_assert(wait_log(&d, "edge listener restarted after a failure", i, 10000),
                  "restart %zu not logged (log %s)", i, d.log);
        cr_assert(rcd_alive(&d));
        /* new connections are accepted on the same port ... */
        struct wsc *fresh = wsc_open_all(d.http_port);
        char run[32];
        snprintf(run, sizeof(run), "edge-after-%zu", i);
        cr_assert(acked_start(&d, run));
        /* ... and the connection from before every restart still receives */
        cr_assert(wait_run_events(old, run, 1, 5000), "the old connection missed %s", run);
        cr_assert(wait_run_events(fresh, run, 1, 5000), "the new connection missed %s", run);
        wsc_close(fresh);
    }
    kill(d.pid, SIGRTMIN + 2); /* the third failure within the period */
    int st = rcd_wait(&d, 20000);
    cr_assert_eq(st, 70, "exit status %d (log %s)", st, d.log);
    rcd_log_discard(&d);
    wsc_close(old);
}

/* The lowest file descriptor number free in process pid: the one its next
 * socket or accept would get. */
static int lowest_free_fd(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *dir = opendir(path);
    cr_assert(dir != NULL, "%s: %s", path, strerror(errno));
    static bool used[65536];
    memset(used, 0, sizeof(used));
    for (struct dirent *de; (de = readdir(dir)) != NULL;) {
        int fd = atoi(de->d_name);
        if (de->d_name[0] != '.' && fd >= 0 && fd < 65536)
            used[fd] = true;
    }
    closedir(dir);
    int fd = 0;
    while (fd < 65535 && used[fd])
        fd++;
    return fd;
}

/* A TCP connection to 127.0.0.1:port (-1 when refused), reads bounded. */
static int tcp_connect(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(s, 0, "%s", strerror(errno));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(s);
        return -1;
    }
    return s;
}

/* Whether GET /healthz on port is answered 200 (one try). */
static bool healthz_ok(int port)
{
    int s = tcp_connect(port);
    if (s < 0)
        return false;
    const char req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    char resp[64] = {0};
    bool ok = send(s, req, sizeof(req) - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof(req) - 1) &&
              recv(s, resp, sizeof(resp) - 1, MSG_WAITALL) > 12 &&
              strncmp(resp, "HTTP/1.1 200", 12) == 0;
    close(s);
    return ok;
}

/*
 * Out of descriptors, the edge pauses accepting instead of failing.
 * runcastd's RLIMIT_NOFILE is lowered (prlimit) to its lowest free
 * descriptor, so accept fails with EMFILE (accept4 reserves the descriptor
 * before it takes a connection: it fails even with none waiting).  A
 * restarted listener would fail the same way at once, and past
 * --restart-intensity (default 5) the process would exit 70 and drop every
 * subscriber; so the listener pauses (logged, counted) and tries again.
 * Asserted: the pause is logged, the listener is never failed nor
 * restarted, the process stays up with the default intensity through many
 * pauses, and once the limit is back the same port serves again, the
 * connection opened before kept receiving and a new one receives too.
 */
Test(runcastd, edge_out_of_descriptors_pauses_accepting_and_serves_again, .timeout = 90)
{
    struct rcd d;
    rcd_start(&d, NULL);
    struct wsc *old = wsc_open_all(d.http_port);

    struct rlimit lim;
    cr_assert_eq(prlimit(d.pid, RLIMIT_NOFILE, NULL, &lim), 0, "%s", strerror(errno));
    char paused[128];
    snprintf(paused, sizeof(paused), "accept failed: %s; not accepting for",
             nng_strerror(NNG_ENOFILES));
    /* A connection wakes the idle listener, whose accept then fails.  If
     * runcastd freed a descriptor between the count and the limit (a
     * connection of its own closing), the accept succeeds instead: then
     * count and connect again (bounded). */
    int s[8], tries = 0;
    bool hit = false;
    while (!hit && tries < 8) {
        struct rlimit low = {.rlim_cur = (rlim_t)lowest_free_fd(d.pid), .rlim_max = lim.rlim_max};
        cr_assert_eq(prlimit(d.pid, RLIMIT_NOFILE, &low, NULL), 0, "%s", strerror(errno));
        s[tries++] = tcp_connect(d.http_port);
        hit = wait_log(&d, paused, 1, 3000);
    }
    /* More pauses while the limit stays low (the back-off doubles from
     * 50 ms): more than --restart-intensity failures would have ended the
     * process. */
    if (hit)
        wait_log(&d, paused, 3, 5000);
    cr_assert(rcd_alive(&d), "runcastd exited while out of descriptors (log %s)", d.log);
    cr_assert_eq(prlimit(d.pid, RLIMIT_NOFILE, &lim, NULL), 0, "%s", strerror(errno));
    for (int i = 0; i < tries; i++)
        if (s[i] >= 0)
            close(s[i]);
    cr_assert(hit, "accept never failed with EMFILE (log %s)", d.log);

    /* the same port serves again once a pause ends (polled) */
    uint64_t end = rc_clock_mono_ms() + 10000;
    while (!healthz_ok(d.http_port)) {
        cr_assert(rcd_alive(&d), "runcastd exited (log %s)", d.log);
        cr_assert_lt(rc_clock_mono_ms(), end, "port %d not served again (log %s)", d.http_port,
                     d.log);
        rc_clock_sleep_ms(20);
    }
    cr_assert_eq(rcd_log_count(&d, "HTTP/WebSocket listener failed"), 0,
                 "exhaustion failed the listener (log %s)", d.log);
    cr_assert_eq(rcd_log_count(&d, "edge listener restarted"), 0,
                 "exhaustion restarted the listener (log %s)", d.log);
    struct wsc *fresh = wsc_open_all(d.http_port);
    cr_assert(acked_start(&d, "edge-after"));
    cr_assert(wait_run_events(old, "edge-after", 1, 5000), "the old connection missed edge-after");
    cr_assert(wait_run_events(fresh, "edge-after", 1, 5000),
              "the new connection missed edge-after");
    wsc_close(fresh);
    wsc_close(old);
    cr_assert_eq(rcd_stop(&d, 20000), 0);
}

/* The soft "Max open files" limit of pid (from /proc), or 0. */
static unsigned long long soft_nofile(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
    FILE *f = fopen(path, "r");
    unsigned long long v = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "Max open files", 14) == 0)
            v = strtoull(line + 14, NULL, 10);
    if (f != NULL)
        fclose(f);
    return v;
}

/*
 * runcastd starts at whatever soft open-file limit it inherits (1024 on
 * most systems), which the default --ws-max-conns of 10000 would outgrow
 * at about a thousand connections.  Started here with hard 2048 (or the
 * machine's lower one) and soft an eighth of it (this test's own limits,
 * in the process Criterion forked for it), it raises its soft limit to the
 * hard one, logs it, and warns that the hard one is below what
 * --ws-max-conns 10000 needs.
 */
Test(runcastd, raises_its_open_file_limit_and_warns_below_ws_max_conns, .timeout = 60)
{
    struct rlimit cur;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &cur), 0, "%s", strerror(errno));
    /* 2048, or a lower hard limit this machine already has */
    rlim_t hard = cur.rlim_max != RLIM_INFINITY && cur.rlim_max < 2048 ? cur.rlim_max : 2048;
    struct rlimit lim = {.rlim_cur = hard / 8, .rlim_max = hard};
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &lim), 0, "%s", strerror(errno));
    struct rcd d;
    const char *extra[] = {"--log-level", "info", NULL}; /* the raise is an info line */
    rcd_start(&d, extra);
    cr_assert_eq(soft_nofile(d.pid), hard, "soft limit %llu (log %s)", soft_nofile(d.pid), d.log);
    char raised[96], warned[128];
    snprintf(raised, sizeof(raised), "open-file limit raised from %llu to %llu",
             (unsigned long long)(hard / 8), (unsigned long long)hard);
    snprintf(warned, sizeof(warned),
             "the open-file limit is %llu, below the 11024 that --ws-max-conns 10000",
             (unsigned long long)hard);
    cr_assert(wait_log(&d, raised, 1, 5000), "no \"%s\" (log %s)", raised, d.log);
    cr_assert(wait_log(&d, warned, 1, 5000), "no \"%s\" (log %s)", warned, d.log);
    cr_assert_eq(rcd_stop(&d, 20000), 0);
}
