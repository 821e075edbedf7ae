/*
 * bench_broker: the broker core's numbers, each next to its baseline.
 *
 *   ingest   events/s over PUSH into the broker vs raw nng PUSH/PULL
 *            carrying the same messages, in the same run: single-event
 *            messages (several publishers) and batches of 32 / 64 events of
 *            about 200 bytes
 *   ack      acknowledged events/s over REQ with batches, and the
 *            single-event round trip vs raw nng REQ/REP
 *   runs     memory per active run (N runs with armed watchdogs, jemalloc's
 *            allocated bytes and RSS): without history, and with its start
 *            event retained (the default config, what runcast-bench runs
 *            measures end to end); run creation + watchdog arm time
 *   expiry   watchdog lateness at scale, N runs with one `all` subscriber:
 *            (a) the timer thread's send - due, (b) the synthesized terminal
 *            handed to subscribers - due (broker histograms), and (c) the
 *            subscriber's receipt of it - due (exact), for a simultaneous
 *            mass expiry (every run due in the same millisecond) and for
 *            expiries spread over time (runs created over --spread S): both
 *            throughput cases; and (d) steady expiries among N armed runs:
 *            the punctuality goal (N runs armed for 1 h, then a stream of
 *            --steady-rate short-timeout runs/s for --steady-s, each with a
 *            --steady-t ms watchdog; the broker's idle_ms - T per terminal)
 *
 *   inproc   the broker core alone, for instruction counts: M batches of
 *            --batch events (default 64) spread over --runs runs (default
 *            100, as runcast-bench's ingest scenario) published in process
 *            from one thread as the nng ingress hands them over (one
 *            receive context, the bytes held, not copied; --publish-api:
 *            through rc_broker_publish, which copies them; --pull: through
 *            a PULL receive context, as runcastd's --ingest sockets do: the
 *            decoder actor, which runs idle run actors' turns inline and
 *            looks runs up through its cache), timed to the last event
 *            accepted.  Deterministic input: run it under
 *            `valgrind --tool=callgrind` and divide by the events.
 *
 * Usage: bench_broker [ingest|ack|runs|expiry|inproc|all] [--runs N]
 *                     [--seconds S] [--spread S] [--tick MS] [--messages M]
 *                     [--watchdog-threads N]
 *                     [--case mass|spread|steady|all] [--steady-rate R]
 *                     [--steady-s S] [--steady-t MS] [--publish-api] [--pull]
 * Prints one table; timing lives here, never in tests.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rc_alloc.h"
#include "rc_broker.h"
#include "rc_buf.h"
#include "rc_clock.h"
#include "rc_config.h"
#include "rc_error.h"
#include "rc_ingest.h"
#include "rc_log.h"
#include "rc_metrics.h"
#include "rc_proto.h"
#include "rc_run.h"
#include "rc_runs.h"
#include "rcb_stall.h"

static double seconds = 2.0;
static size_t nruns = 1000000;
static int only_batch = 0;              /* --batch N: only that ingest case */
static int npub_single = 4;             /* --pubs N: publishers for single-event messages */
static bool skip_raw = false;           /* --no-raw */
static int ack_clients = 4;             /* --clients N */
static double spread_s = 5.0;           /* --spread S: expiry: creation time of the spread case */
static const char *tick = "10ms";       /* --tick: --watchdog-tick of the expiry runs */
static const char *wd_threads = "0";    /* --watchdog-threads of the expiry runs (0: default) */
static const char *expiry_only = "all"; /* --case mass|spread|steady|all (expiry) */
static size_t inproc_msgs = 20000;      /* --messages M (inproc) */
static bool inproc_api = false;         /* --publish-api: inproc through rc_broker_publish */
static bool inproc_pull = false;        /* --pull: inproc through a PULL context (decoder actor) */

static void row(const char *name, double v, const char *unit, const char *note)
{
    printf("  %-52s %14.1f %-8s %s\n", name, v, unit, note ? note : "");
    fflush(stdout);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

/* One ~200-byte event (encoded) of run. */
static void event(struct rc_buf *b, const char *run, uint64_t i)
{
    char text[160];
    memset(text, 'x', sizeof(text));
    text[137 - strlen(run)] = 0;
    rc_mpw_map(b, 5);
    rc_mpw_cstr(b, "run");
    rc_mpw_cstr(b, run);
    rc_mpw_cstr(b, "type");
    rc_mpw_cstr(b, "delta");
    rc_mpw_cstr(b, "phase");
    rc_mpw_cstr(b, "streaming");
    rc_mpw_cstr(b, "ts");
    rc_mpw_uint(b, 1795000000000ull + i);
    rc_mpw_cstr(b, "text");
    rc_mpw_cstr(b, text);
}

static void message(struct rc_buf *b, const char *run, int batch)
{
    rc_buf_reset(b);
    if (batch == 1) {
        event(b, run, 0);
        return;
    }
    rc_mpw_array(b, (uint32_t)batch);
    for (int i = 0; i < batch; i++)
        event(b, run, (uint64_t)i);
}

static void cfg_init(struct rc_config *c, const char *const *opts)
{
    char err[256];
    rc_config_init(c);
    rc_config_set(c, "ingest", "", "bench", err, sizeof(err));
    rc_config_set(c, "ingest-ack", "", "bench", err, sizeof(err));
    for (size_t i = 0; opts && opts[i]; i += 2)
        if (rc_config_set(c, opts[i], opts[i + 1], "bench", err, sizeof(err)) != 0) {
            fprintf(stderr, "bench: %s\n", err);
            exit(1);
        }
}

/* ---- publishers ---- */

struct pubarg {
    const char *url;
    bool req;
    struct rc_buf msg;
    atomic_bool *stop;
    uint64_t sent;
};

static void *push_main(void *arg)
{
    struct pubarg *p = arg;
    nng_socket s;
    nng_push0_open(&s);
    nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 50);
    nng_dial(s, p->url, NULL, 0);
    while (!atomic_load_explicit(p->stop, memory_order_relaxed)) {
        nng_msg *m;
        nng_msg_alloc(&m, 0);
        nng_msg_append(m, p->msg.data, p->msg.len);
        if (nng_sendmsg(s, m, 0) == 0)
            p->sent++;
        else
            nng_msg_free(m);
    }
    nng_close(s);
    return NULL;
}

static void *req_main(void *arg)
{
    struct pubarg *p = arg;
    nng_socket s;
    nng_req0_open(&s);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 2000);
    nng_dial(s, p->url, NULL, 0);
    while (!atomic_load_explicit(p->stop, memory_order_relaxed)) {
        if (nng_send(s, p->msg.data, p->msg.len, 0) != 0)
            continue;
        void *r;
        size_t rl;
        if (nng_recv(s, &r, &rl, NNG_FLAG_ALLOC) == 0) {
            nng_free(r, rl);
            p->sent++;
        }
    }
    nng_close(s);
    return NULL;
}

/* Runs npub publishers (each on its own run) against url for `seconds`;
 * returns messages sent (PUSH) or round trips (REQ). */
static uint64_t drive(const char *const *urls, int nurls, bool req, int npub, int batch,
                      uint64_t (*counter)(void *), void *carg, uint64_t *counted)
{
    atomic_bool stop;
    atomic_init(&stop, false);
    struct pubarg p[16];
    pthread_t th[16];
    for (int i = 0; i < npub; i++) {
        char run[32];
        snprintf(run, sizeof(run), "bench-run-%d", i);
        p[i].url = urls[i % nurls];
        p[i].req = req;
        rc_buf_init(&p[i].msg);
        message(&p[i].msg, run, batch);
        p[i].stop = &stop;
        p[i].sent = 0;
        pthread_create(&th[i], NULL, req ? req_main : push_main, &p[i]);
    }
    rc_clock_sleep_ms(300); /* warm-up: connections, run creation */
    uint64_t c0 = counter(carg);
    uint64_t t0 = rc_clock_mono_ns();
    rc_clock_sleep_ms((uint64_t)(seconds * 1000));
    uint64_t c1 = counter(carg);
    uint64_t dt = rc_clock_mono_ns() - t0;
    atomic_store(&stop, true);
    uint64_t sent = 0;
    for (int i = 0; i < npub; i++) {
        pthread_join(th[i], NULL);
        sent += p[i].sent;
        rc_buf_fini(&p[i].msg);
    }
    *counted = (uint64_t)((double)(c1 - c0) * 1e9 / (double)dt);
    return sent;
}

/* ---- raw nng baselines ---- */

struct raw {
    nng_socket s;
    nng_aio *aio[8];
    atomic_uint_fast64_t msgs;
    atomic_bool stopping; /* set before the receives are fenced */
    int batch;
};

static void raw_cb(void *arg)
{
    void **a = arg;
    struct raw *r = a[0];
    nng_aio *aio = a[1];
    if (nng_aio_result(aio) != 0)
        return;
    nng_msg_free(nng_aio_get_msg(aio));
    atomic_fetch_add_explicit(&r->msgs, 1, memory_order_relaxed);
    /* acquire: pairs with the release store in raw_pull, so a callback that
     * sees it does not post again and nng_aio_stop fences it */
    if (!atomic_load_explicit(&r->stopping, memory_order_acquire))
        nng_recv_aio(r->s, aio);
}

static uint64_t raw_count(void *arg)
{
    struct raw *r = arg;
    return atomic_load(&r->msgs) * (uint64_t)r->batch;
}

static uint64_t raw_count_all(void *arg)
{
    struct raw *r = arg;
    uint64_t n = 0;
    for (int i = 0; i < 4; i++)
        n += raw_count(&r[i]);
    return n;
}

static double raw_pull(int nsock, int npub, int batch)
{
    char urls[4][64];
    const char *up[4];
    struct raw r[4];
    void *args[4][8][2];
    memset(r, 0, sizeof(r));
    for (int k = 0; k < nsock; k++) {
        snprintf(urls[k], sizeof(urls[k]), "tcp://127.0.0.1:%d", free_port());
        up[k] = urls[k];
        r[k].batch = batch;
        nng_pull0_open(&r[k].s);
        nng_listen(r[k].s, urls[k], NULL, 0);
        for (int i = 0; i < 8; i++) {
            args[k][i][0] = &r[k];
            nng_aio_alloc(&r[k].aio[i], raw_cb, args[k][i]);
            args[k][i][1] = r[k].aio[i];
            nng_recv_aio(r[k].s, r[k].aio[i]);
        }
    }
    uint64_t evs;
    drive(up, nsock, false, npub, batch, raw_count_all, r, &evs);
    /* Fence the receives before closing: nng 1.5.2's nng_close of a PULL
     * socket can block for ever when a receive is posted while it shuts
     * down (the hang runcastd's ingress fences against too). */
    for (int k = 0; k < nsock; k++) {
        atomic_store_explicit(&r[k].stopping, true, memory_order_release);
        for (int i = 0; i < 8; i++)
            nng_aio_stop(r[k].aio[i]);
    }
    for (int k = 0; k < nsock; k++) {
        nng_close(r[k].s);
        for (int i = 0; i < 8; i++)
            nng_aio_free(r[k].aio[i]);
    }
    return (double)evs;
}

static uint64_t accepted(void *arg)
{
    return rc_metric_get(&rc_broker_metrics(arg)->events_accepted);
}

static double broker_pull(int nsock, int npub, int batch, uint64_t *rejected)
{
    struct rc_config cfg;
    char urls[4][64];
    const char *up[4];
    const char *opts[] = {"history-max-events", "1000", "log-level", "error", NULL};
    cfg_init(&cfg, opts);
    char err[128];
    for (int k = 0; k < nsock; k++) {
        snprintf(urls[k], sizeof(urls[k]), "tcp://127.0.0.1:%d", free_port());
        up[k] = urls[k];
        rc_config_set(&cfg, "ingest", urls[k], "bench", err, sizeof(err));
    }
    struct rc_broker *b;
    rc_broker_new(&cfg, &b);
    if (rc_broker_start(b) != 0) {
        fprintf(stderr, "bench: %s\n", rc_broker_error(b));
        exit(1);
    }
    uint64_t evs;
    drive(up, nsock, false, npub, batch, accepted, b, &evs);
    struct rc_metrics *m = rc_broker_metrics(b);
    *rejected = rc_metric_get(&m->events_rejected[RC_PROTO_OVERLOADED]);
    rc_broker_free(b);
    rc_config_fini(&cfg);
    return (double)evs;
}

static void bench_ingest(void)
{
    printf("ingest over PUSH (events/s, 200-byte events, %.0f s each, broker and publishers "
           "share the machine)\n",
           seconds);
    struct {
        int batch, npub, nsock;
    } cases[] = {{1, 4, 1}, {1, 8, 4}, {32, 2, 1}, {64, 2, 1}};
    cases[0].npub = npub_single;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int batch = cases[i].batch, npub = cases[i].npub, nsock = cases[i].nsock;
        if (only_batch && batch != only_batch)
            continue;
        double raw = skip_raw ? 0 : raw_pull(nsock, npub, batch);
        uint64_t rej = 0;
        double brk = broker_pull(nsock, npub, batch, &rej);
        char name[96], note[96];
        snprintf(name, sizeof(name), "raw nng PUSH/PULL, batch %d, %d pubs, %d socket%s", batch,
                 npub, nsock, nsock > 1 ? "s" : "");
        row(name, raw, "ev/s", NULL);
        snprintf(name, sizeof(name), "runcast PUSH ingest, batch %d, %d pubs, %d socket%s", batch,
                 npub, nsock, nsock > 1 ? "s" : "");
        snprintf(note, sizeof(note), "%.2f of raw%s", raw > 0 ? brk / raw : 0,
                 rej ? " (some overloaded)" : "");
        row(name, brk, "ev/s", note);
    }
}

/* ---- in process (instruction counts) ---- */

static void bench_inproc(void)
{
    size_t R = nruns == 1000000 ? 100 : nruns; /* --runs, default 100 here */
    int B = only_batch ? only_batch : 64;
    size_t M = inproc_msgs;
    struct rc_config cfg;
    const char *opts[] = {"history-max-events", "1000", "log-level", "error", NULL};
    cfg_init(&cfg, opts);
    struct rc_broker *b;
    rc_broker_new(&cfg, &b);
    if (rc_broker_start(b) != 0) {
        fprintf(stderr, "bench: %s\n", rc_broker_error(b));
        exit(1);
    }
    /* 16 distinct messages, each event to a pseudo-random run (a batch
     * touches ~R*(1-e^(-B/R)) runs: ~47 of 100 at B=64) */
    enum { NM = 16 };
    struct rc_buf msgs[NM];
    uint64_t rng = 0x9E3779B97F4A7C15u;
    for (int k = 0; k < NM; k++) {
        rc_buf_init(&msgs[k]);
        if (B > 1)
            rc_mpw_array(&msgs[k], (uint32_t)B);
        for (int i = 0; i < B; i++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            char run[32];
            snprintf(run, sizeof(run), "inproc-run-%zu", (size_t)(rng % R));
            event(&msgs[k], run, (uint64_t)i);
        }
    }
    uint64_t t0 = rc_clock_mono_ns();
    if (inproc_api) {
        for (size_t i = 0; i < M; i++)
            rc_broker_publish(b, msgs[i % NM].data, msgs[i % NM].len, 1, NULL, NULL);
    } else {
        /* As the nng ingress does (rc_ingress.c): one receive context for
         * every message, and a small refcounted holder per message that
         * points at the received bytes.  rc_broker_publish, the in-process
         * API, copies the bytes and sets up a context per call (~220
         * instructions per event that the nng path never pays). */
        struct rc_ingest_ctx c;
        rc_ingest_ctx_init(&c, rc_broker_runs(b), rc_broker_metrics(b),
                           inproc_pull ? RC_INGEST_PULL : RC_INGEST_INPROC, NULL, NULL);
        for (size_t i = 0; i < M; i++) {
            struct rc_ingest_buf *ib = rc_malloc(sizeof(*ib));
            if (!ib) {
                fprintf(stderr, "bench: out of memory\n");
                exit(1);
            }
            atomic_init(&ib->refs, 1);
            ib->free_fn = NULL; /* rc_free(ib): the bytes are msgs[], freed last */
            ib->data = msgs[i % NM].data;
            ib->len = msgs[i % NM].len;
            ib->owner = NULL;
            ib->recv_ns = 0;
            rc_ingest_dispatch(&c, ib, 1, NULL, NULL);
            /* PULL: at most 64 messages ahead of the decoder, as the
             * ingress's pause keeps a socket (a flooded decoder stops
             * running run turns inline) */
            while (inproc_pull && i + 1 > 64 && (i + 1 - 64) * (uint64_t)B > accepted(b))
                sched_yield();
        }
        rc_ingest_ctx_fini(&c);
    }
    uint64_t want = (uint64_t)M * (uint64_t)B;
    while (accepted(b) < want)
        rc_clock_sleep_ms(1);
    uint64_t dt = rc_clock_mono_ns() - t0;
    printf("in-process publish, %zu messages of %d events over %zu runs\n", M, B, R);
    row("events accepted", (double)want, "events", NULL);
    row("events/s (one publishing thread)", (double)want * 1e9 / (double)dt, "ev/s", NULL);
    rc_broker_free(b);
    rc_config_fini(&cfg);
    for (int k = 0; k < NM; k++)
        rc_buf_fini(&msgs[k]);
}

/* ---- acknowledged ingest ---- */

static uint64_t ack_counter_val;
static uint64_t no_counter(void *arg)
{
    (void)arg;
    return ack_counter_val;
}

static void *rep_echo_main(void *arg)
{
    nng_socket *s = arg;
    for (;;) {
        nng_msg *m;
        if (nng_recvmsg(*s, &m, 0) != 0)
            return NULL;
        nng_msg *r;
        nng_msg_alloc(&r, 0);
        nng_msg_append(r, "\x83\xa2ok\xc3", 5); /* a small reply, like an ack */
        nng_msg_free(m);
        if (nng_sendmsg(*s, r, 0) != 0)
            nng_msg_free(r);
    }
}

/* Single-event round trips on one REQ socket: mean microseconds. */
static double rtt(const char *url, int n, int batch)
{
    nng_socket s;
    nng_req0_open(&s);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 2000);
    nng_dial(s, url, NULL, 0);
    struct rc_buf b;
    rc_buf_init(&b);
    message(&b, batch == 1 ? "rtt-run" : "rtt-batch-run", batch);
    uint64_t total = 0;
    int ok = 0;
    for (int i = -100; i < n; i++) {
        uint64_t t0 = rc_clock_mono_ns();
        if (nng_send(s, b.data, b.len, 0) != 0)
            continue;
        void *r;
        size_t rl;
        if (nng_recv(s, &r, &rl, NNG_FLAG_ALLOC) != 0)
            continue;
        nng_free(r, rl);
        if (i >= 0) {
            total += rc_clock_mono_ns() - t0;
            ok++;
        }
    }
    rc_buf_fini(&b);
    nng_close(s);
    return ok ? (double)total / ok / 1000.0 : 0;
}

static void bench_ack(void)
{
    printf("acknowledged ingest over REQ/REP\n");
    /* raw REQ/REP echo */
    char url[64];
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", free_port());
    nng_socket rs;
    nng_rep0_open(&rs);
    nng_listen(rs, url, NULL, 0);
    pthread_t th;
    pthread_create(&th, NULL, rep_echo_main, &rs);
    double raw_rtt = rtt(url, 3000, 1);
    double raw_rtt32 = rtt(url, 1000, 32);
    uint64_t dummy;
    const char *u1[1] = {url};
    uint64_t raw_rt = drive(u1, 1, true, ack_clients, 32, no_counter, NULL, &dummy);
    nng_close(rs);
    pthread_join(th, NULL);

    struct rc_config cfg;
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", free_port());
    const char *opts[] = {"history-max-events", "1000", "log-level", "error", NULL};
    cfg_init(&cfg, opts);
    char err[128];
    rc_config_set(&cfg, "ingest-ack", url, "bench", err, sizeof(err));
    struct rc_broker *b;
    rc_broker_new(&cfg, &b);
    if (rc_broker_start(b) != 0) {
        fprintf(stderr, "bench: %s\n", rc_broker_error(b));
        exit(1);
    }
    double brk_rtt = rtt(url, 3000, 1);
    double brk_rtt32 = rtt(url, 1000, 32);
    uint64_t evs;
    const char *u2[1] = {url};
    uint64_t brk_rt = drive(u2, 1, true, ack_clients, 32, accepted, b, &evs);
    rc_broker_free(b);
    rc_config_fini(&cfg);
    char note[64];
    char name[96];
    snprintf(name, sizeof(name), "raw nng REQ/REP, batch 32, %d clients (events/s)", ack_clients);
    row(name, (double)raw_rt * 32 / seconds, "ev/s", NULL);
    snprintf(note, sizeof(note), "%.2f of raw", raw_rt ? (double)brk_rt / (double)raw_rt : 0);
    snprintf(name, sizeof(name), "runcast acked ingest, batch 32, %d clients (events/s)",
             ack_clients);
    row(name, (double)evs, "ev/s", note);
    row("raw nng REQ/REP single-event round trip", raw_rtt, "us", NULL);
    snprintf(note, sizeof(note), "+%.1f us over raw", brk_rtt - raw_rtt);
    row("runcast acked single-event round trip", brk_rtt, "us", note);
    row("raw nng REQ/REP round trip, batch 32", raw_rtt32, "us", NULL);
    snprintf(note, sizeof(note), "+%.1f us over raw", brk_rtt32 - raw_rtt32);
    row("runcast acked round trip, batch 32", brk_rtt32, "us", note);
}

/* ---- runs: memory, creation, watchdog lateness ---- */

static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

static size_t allocated(void)
{
    struct rc_alloc_stats st;
    if (rc_alloc_stats(&st) != 0)
        return 0;
    return st.allocated;
}

static void wait_idle(struct rc_broker *b)
{
    /* relaxed metrics; quiesce-style wait for every message to be handled */
    while (rc_runs_inflight(rc_broker_runs(b)) > 0)
        rc_clock_sleep_ms(1);
}

/* One `start` per run, ids prefix0..prefix(n-1), through the ingest path in
 * batches of 1024.  timeout_of(i) > 0: the start asks for that idle
 * timeout ("*") in ms; t_sent[i] (if not NULL) gets the mono ns the batch
 * was handed over.  pace_ns > 0: batch k is sent at t0 + k * pace_ns. */
static void create_runs(struct rc_broker *b, const char *prefix, size_t n,
                        uint64_t (*timeout_of)(size_t i, void *arg), void *arg, uint64_t *t_sent,
                        uint64_t pace_ns)
{
    struct rc_buf msg;
    rc_buf_init(&msg);
    char id[48];
    uint64_t t0 = rc_clock_mono_ns();
    for (size_t i = 0, k = 0; i < n; k++) {
        if (pace_ns) {
            uint64_t at = t0 + k * pace_ns, now = rc_clock_mono_ns();
            if (at > now)
                rc_clock_sleep_ms((at - now) / 1000000u);
        }
        size_t m = n - i < 1024 ? n - i : 1024;
        size_t first = i;
        rc_buf_reset(&msg);
        rc_mpw_array(&msg, (uint32_t)m);
        for (size_t j = 0; j < m; j++, i++) {
            int len = snprintf(id, sizeof(id), "%s%zu", prefix, i);
            uint64_t t = timeout_of ? timeout_of(i, arg) : 0;
            rc_mpw_map(&msg, t ? 3 : 2);
            rc_mpw_cstr(&msg, "run");
            rc_mpw_str(&msg, id, (size_t)len);
            rc_mpw_cstr(&msg, "type");
            rc_mpw_cstr(&msg, "start");
            if (t) {
                rc_mpw_cstr(&msg, "timeouts");
                rc_mpw_map(&msg, 1);
                rc_mpw_cstr(&msg, "*");
                rc_mpw_uint(&msg, t);
            }
        }
        uint64_t ts = rc_clock_mono_ns();
        while (rc_broker_publish(b, msg.data, msg.len, 0, NULL, NULL) != 0)
            rc_clock_sleep_ms(1);
        if (t_sent)
            for (size_t j = first; j < i; j++)
                t_sent[j] = ts;
        if (!pace_ns && k % 64 == 63)
            wait_idle(b); /* bound the queued work */
    }
    wait_idle(b);
    rc_buf_fini(&msg);
}

static void bench_runs(void)
{
    printf("runs (%zu runs, each created by one `start`, watchdogs armed)\n", nruns);
    char maxruns[32];
    snprintf(maxruns, sizeof(maxruns), "%zu", nruns * 2 + 10);
    for (int hist = 0; hist < 2; hist++) {
        struct rc_config cfg;
        /* history-max-bytes 1: the start is not retained (no history);
         * otherwise the defaults (10,000 events / 4 MiB): the start is
         * retained, as in runcastd (runcast-bench runs measures that) */
        /* clang-format off */
        const char *opts[] = {
            "history-max-bytes", hist ? "4MiB" : "1", "log-level", "error", "max-runs", maxruns,
            "watchdog", "1h", "watchdog-tick", "10ms", "run-deadline", "0", "retention", "1h",
            NULL};
        /* clang-format on */
        cfg_init(&cfg, opts);
        struct rc_broker *b;
        rc_broker_new(&cfg, &b);
        rc_broker_start(b);
        struct rc_runs *runs = rc_broker_runs(b);
        char note[96];
        if (!hist) {
            /* direct creation: registry insert + actor spawn + watchdog arm */
            size_t n1 = nruns / 10;
            char id[32];
            size_t a0 = allocated();
            uint64_t t0 = rc_clock_mono_ns();
            for (size_t i = 0; i < n1; i++) {
                int len = snprintf(id, sizeof(id), "bare-%zu", i);
                struct rc_actor *a;
                if (rc_runs_get(runs, id, (size_t)len, rc_runs_hash(id, (size_t)len), true, &a) ==
                    0)
                    rc_actor_release(a);
            }
            double per_create = (double)(rc_clock_mono_ns() - t0) / (double)n1 / 1000.0;
            size_t a1 = allocated();
            row("run creation + watchdog arm (registry, spawn, timer)", per_create, "us/run", NULL);
            if (a0 || a1)
                row("memory per bare run (allocated, jemalloc)", (double)(a1 - a0) / (double)n1,
                    "B/run", "no event");
        }
        size_t a1 = allocated(), r1 = rss_bytes();
        uint64_t t0 = rc_clock_mono_ns();
        /* run ids as long as runcast-bench's ("b<pid>-m-<i>") */
        create_runs(b, "b12345-m-", nruns, NULL, NULL, NULL, 0);
        double per_ingest = (double)(rc_clock_mono_ns() - t0) / (double)nruns / 1000.0;
        size_t a2 = allocated(), r2 = rss_bytes();
        const char *what = hist ? "with its start in history" : "without history";
        snprintf(note, sizeof(note), "run creation through the ingest path (%s)", what);
        row(note, per_ingest, "us/run", "batches of 1024");
        if (a1 || a2) {
            char name[96];
            snprintf(name, sizeof(name), "memory per active run %s (allocated)", what);
            snprintf(note, sizeof(note), "%.0f MiB for %zu runs; goal <= 512",
                     (double)(a2 - a1) / 1048576.0, nruns);
            row(name, (double)(a2 - a1) / (double)nruns, "B/run", note);
        } else {
            row("memory: rc_alloc_stats unavailable (not jemalloc)", 0, "", NULL);
        }
        snprintf(note, sizeof(note), "memory per active run %s (RSS)", what);
        row(note, (double)(r2 - r1) / (double)nruns, "B/run", NULL);
        rc_broker_free(b);
        rc_config_fini(&cfg);
    }
}

/* ---- expiry: watchdog lateness at scale ---- */

/* The `all` subscriber: records when each synthesized terminal reached it. */
struct xsub {
    uint64_t *t_recv; /* per run index: mono ns of the terminal's receipt; 0: none */
    size_t n;
    size_t prefix_len;
    atomic_size_t terminals; /* release by the subscriber, acquire by the bench */
};

static void xsub_behaviour(struct rc_actor *self, void *state, struct rc_msg *msg)
{
    struct xsub *x = state;
    (void)self;
    if (msg->type != RC_MSG_SUB_FRAME)
        return;
    struct rc_sub_frame *f = (struct rc_sub_frame *)msg;
    if (f->kind != RC_FRAME_EV || !f->terminal)
        return;
    uint64_t now = rc_clock_mono_ns();
    size_t idx = 0;
    for (size_t i = x->prefix_len; i < f->run->len; i++)
        idx = idx * 10 + (size_t)(f->run->data[i] - '0');
    if (idx < x->n && !x->t_recv[idx])
        x->t_recv[idx] = now;
    /* release: publishes t_recv[idx] to the bench's acquire load */
    atomic_fetch_add_explicit(&x->terminals, 1, memory_order_release);
}

static void xsub_fini(void *state, int reason)
{
    (void)state;
    (void)reason;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* p-th percentile of a broker lateness histogram, in ms (upper bound of
 * its bucket: within 25%). */
static double late_pct(const rc_metric *h, double p, uint64_t *total)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < RC_METRICS_LATE_BUCKETS; i++)
        n += rc_metric_get(&h[i]);
    *total = n;
    if (!n)
        return 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)n + 0.5), cum = 0;
    if (want == 0)
        want = 1;
    for (unsigned i = 0; i < RC_METRICS_LATE_BUCKETS; i++) {
        cum += rc_metric_get(&h[i]);
        if (cum >= want) {
            uint64_t b = rc_metrics_late_bound(i);
            return b == UINT64_MAX ? 1e9 : (double)b / 1000.0;
        }
    }
    return 0;
}

struct mass_arg {
    uint64_t due_ms; /* mono ms every run is due at */
};

static uint64_t mass_timeout(size_t i, void *arg)
{
    struct mass_arg *m = arg;
    (void)i;
    uint64_t now = rc_clock_mono_ms();
    return m->due_ms > now + 1 ? m->due_ms - now : 1;
}

static uint64_t spread_timeout(size_t i, void *arg)
{
    (void)i;
    return *(uint64_t *)arg;
}

/* A broker for the expiry cases: watchdog 1 h (the cases set their own
 * timeouts per run), no deadline, retention 1 h, no publisher grace. */
static struct rc_broker *expiry_broker_start(struct rc_config *cfg, size_t max_runs)
{
    char maxruns[32];
    snprintf(maxruns, sizeof(maxruns), "%zu", max_runs);
    /* clang-format off */
    const char *opts[] = {
        "log-level", "error", "max-runs", maxruns, "watchdog", "1h", "watchdog-tick", tick,
        "run-deadline", "0", "retention", "1h", "publisher-grace", "0",
        "watchdog-threads", wd_threads, NULL};
    /* clang-format on */
    cfg_init(cfg, opts);
    struct rc_broker *b;
    rc_broker_new(cfg, &b);
    rc_broker_start(b);
    return b;
}

/* An in-process `all` subscriber actor with behaviour fn and state x (freed
 * by xsub_fini), given 50 ms to be attached before the case starts; the
 * caller releases the returned handle after the broker is freed. */
static struct rc_actor *subscribe_all(struct rc_broker *b, rc_actor_behaviour fn, void *x)
{
    struct rc_actor *sa = NULL;
    struct rc_actor_opts ao = {.mailbox_limit = 0, .name = "bench-sub"};
    rc_actor_spawn(rc_broker_system(b), fn, x, xsub_fini, &ao, &sa);
    struct rc_sub_req req = {.kind = RC_SUB_ALL, .subscriber = sa, .sub_id = 1, .snapshot = 0};
    rc_runs_subscribe(rc_broker_runs(b), &req);
    rc_clock_sleep_ms(50);
    return sa;
}

static void expiry_case(bool mass)
{
    struct rc_config cfg;
    struct rc_broker *b = expiry_broker_start(&cfg, nruns * 2 + 10);
    struct rc_metrics *m = rc_broker_metrics(b);

    struct xsub *x = calloc(1, sizeof(*x));
    x->n = nruns;
    x->t_recv = calloc(nruns, sizeof(uint64_t));
    x->prefix_len = strlen("x-");
    atomic_init(&x->terminals, 0);
    struct rc_actor *sa = subscribe_all(b, xsub_behaviour, x);

    uint64_t *t_sent = calloc(nruns, sizeof(uint64_t));
    uint64_t *due_ns = calloc(nruns, sizeof(uint64_t));
    uint64_t t0 = rc_clock_mono_ns();
    uint64_t T;
    struct mass_arg ma;
    if (mass) {
        /* Every run due at the same millisecond.  First every run is
         * created (1 h watchdog); then each gets a second `start` whose
         * timeouts make it due at D, D far enough that the second round
         * ends before it on a loaded machine too: the first round's time
         * x 2 + 2 s (the rounds cost the same). */
        create_runs(b, "x-", nruns, NULL, NULL, NULL, 0);
        uint64_t round = (rc_clock_mono_ns() - t0) / 1000000u;
        uint64_t budget = round * 2 + 2000;
        ma.due_ms = rc_clock_mono_ms() + budget;
        T = budget;
        t0 = rc_clock_mono_ns();
        create_runs(b, "x-", nruns, mass_timeout, &ma, t_sent, 0);
    } else {
        /* the same T for every run, runs created evenly over spread_s */
        T = 3000;
        size_t batches = (nruns + 1023) / 1024;
        uint64_t pace = (uint64_t)(spread_s * 1e9) / (batches ? batches : 1);
        create_runs(b, "x-", nruns, spread_timeout, &T, t_sent, pace);
    }
    uint64_t t1 = rc_clock_mono_ns();
    size_t late_created = 0;
    for (size_t i = 0; i < nruns; i++) {
        /* the broker's due: receipt (whole ms) + timeout */
        if (mass) {
            due_ns[i] = ma.due_ms * 1000000u;
            if (t_sent[i] / 1000000u + 1 >= ma.due_ms)
                late_created++;
        } else {
            due_ns[i] = (t_sent[i] / 1000000u + T) * 1000000u;
        }
    }
    /* wait for every terminal (bounded) */
    uint64_t last = t1 + (mass ? (ma.due_ms * 1000000u - t1) : T * 1000000u) + 60000000000ull;
    while (atomic_load_explicit(&x->terminals, memory_order_acquire) < nruns &&
           rc_clock_mono_ns() < last)
        rc_clock_sleep_ms(20);
    size_t got = atomic_load_explicit(&x->terminals, memory_order_acquire);
    uint64_t *late = malloc(nruns * sizeof(uint64_t));
    size_t nl = 0, early = 0;
    for (size_t i = 0; i < nruns; i++) {
        if (!x->t_recv[i])
            continue;
        if (x->t_recv[i] < due_ns[i]) {
            early++;
            late[nl++] = 0;
        } else {
            late[nl++] = x->t_recv[i] - due_ns[i];
        }
    }
    qsort(late, nl, sizeof(uint64_t), cmp_u64);
    char note[160];
    printf("%s: %zu runs, %s; created in %.2f s; watchdog %s; --watchdog-tick %s\n",
           mass ? "simultaneous mass expiry" : "expiries spread over time", nruns,
           mass ? "all due in the same ms" : "created evenly", (double)(t1 - t0) / 1e9,
           mass ? "per run, to the common due time" : "3 s each", tick);
    snprintf(note, sizeof(note), "of %zu; %zu created after their due time", nruns, late_created);
    row("synthesized terminals received", (double)got, "runs", note);
    uint64_t tot;
    double fp50 = late_pct(m->watchdog_fire_late, 50, &tot);
    double fp99 = late_pct(m->watchdog_fire_late, 99, &tot);
    double fmax = late_pct(m->watchdog_fire_late, 100, &tot);
    double ep50 = late_pct(m->watchdog_emit_late, 50, &tot);
    double ep99 = late_pct(m->watchdog_emit_late, 99, &tot);
    double emax = late_pct(m->watchdog_emit_late, 100, &tot);
    row("(a) wheel fire - due, p50", fp50, "ms", "broker histogram, bucket bound (<= +25%)");
    row("(a) wheel fire - due, p99", fp99, "ms", NULL);
    row("(a) wheel fire - due, max", fmax, "ms", NULL);
    row("(b) terminal emitted - due, p50", ep50, "ms", "handed to the subscribers");
    row("(b) terminal emitted - due, p99", ep99, "ms", NULL);
    row("(b) terminal emitted - due, max", emax, "ms", NULL);
    if (nl) {
        snprintf(note, sizeof(note), "exact; %zu before due", early);
        row("(c) subscriber received - due, p50", (double)late[nl / 2] / 1e6, "ms", note);
        row("(c) subscriber received - due, p99", (double)late[(nl * 99) / 100] / 1e6, "ms", NULL);
        row("(c) subscriber received - due, max", (double)late[nl - 1] / 1e6, "ms", NULL);
    }
    free(late);
    rc_broker_free(b);
    rc_actor_release(sa);
    free(x->t_recv);
    free(x);
    free(t_sent);
    free(due_ns);
    rc_config_fini(&cfg);
}

/* ---- expiry, case 3: steady expiries among N armed runs ----
 *
 * Issue 5's goal "the watchdog never more than one tick late at that
 * scale" is about punctuality with a million watchdogs armed, not about
 * how fast a million simultaneous expiries can be ended (that is the mass
 * case above, a throughput case).  Here N runs are armed with the 1 h
 * default (none of them expires during the measurement) and a steady
 * stream of short-timeout runs (--steady-rate runs/s for --steady-s,
 * each `timeouts {"*": --steady-t}`) goes silent; for those we report the
 * broker's own lateness (data.idle_ms - T of the synthesized terminal),
 * the broker histograms and the subscriber's exact receipt lateness.
 *
 * The `all` subscriber is attached before the N runs are created (as a
 * dashboard would be) and receives their N starts; the stream begins only
 * once it has received them all, so the backlog of a million starts is not
 * in the measurement window. */
static double steady_rate = 2000; /* --steady-rate: short-timeout runs/s */
static double steady_s = 5.0;     /* --steady-s: length of the stream */
static uint64_t steady_t = 1000;  /* --steady-t: their watchdog (ms) */

struct ssub {
    uint64_t *t_recv; /* per steady run: mono ns of its terminal's receipt */
    int64_t *idle;    /* per steady run: data.idle_ms of its terminal; -1: none */
    size_t n;
    atomic_size_t evs;       /* every ev frame (the N starts first); release/acquire as xsub */
    atomic_size_t terminals; /* steady runs' terminals; release by the subscriber */
};

/* data.idle_ms of a synthesized terminal: the uint after the key (the bench
 * reads the encoded frame as a subscriber would, without a full decode). */
static int64_t find_idle_ms(const struct rc_blob *b)
{
    static const char key[] = "\xa7idle_ms";
    const size_t kl = sizeof(key) - 1;
    for (size_t i = 0; i + kl < b->len; i++) {
        if (memcmp(b->data + i, key, kl) != 0)
            continue;
        const uint8_t *p = b->data + i + kl;
        size_t left = b->len - i - kl;
        if (p[0] < 0x80)
            return p[0];
        size_t w = p[0] == 0xcc ? 1 : p[0] == 0xcd ? 2 : p[0] == 0xce ? 4 : p[0] == 0xcf ? 8 : 0;
        if (!w || left < w + 1)
            return -1;
        uint64_t v = 0;
        for (size_t k = 1; k <= w; k++)
            v = v << 8 | p[k];
        return (int64_t)v;
    }
    return -1;
}

static void ssub_behaviour(struct rc_actor *self, void *state, struct rc_msg *msg)
{
    struct ssub *x = state;
    (void)self;
    if (msg->type != RC_MSG_SUB_FRAME)
        return;
    struct rc_sub_frame *f = (struct rc_sub_frame *)msg;
    if (f->kind != RC_FRAME_EV)
        return;
    if (f->terminal && f->run->len > 2 && f->run->data[0] == 's' && f->run->data[1] == '-') {
        uint64_t now = rc_clock_mono_ns();
        size_t idx = 0;
        for (size_t i = 2; i < f->run->len; i++)
            idx = idx * 10 + (size_t)(f->run->data[i] - '0');
        if (idx < x->n && !x->t_recv[idx]) {
            x->t_recv[idx] = now;
            x->idle[idx] = find_idle_ms(f->blob);
        }
        /* release: publishes t_recv/idle[idx] to the bench's acquire load */
        atomic_fetch_add_explicit(&x->terminals, 1, memory_order_release);
    }
    /* relaxed: a progress count the bench polls; no data rides on it */
    atomic_fetch_add_explicit(&x->evs, 1, memory_order_relaxed);
}

static void sleep_until_ns(uint64_t at)
{
    struct timespec ts = {.tv_sec = (time_t)(at / 1000000000u),
                          .tv_nsec = (long)(at % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static double pct_u64(const uint64_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)n);
    return (double)v[i < n ? i : n - 1];
}

static void steady_case(void)
{
    struct rc_config cfg;
    struct rc_broker *b = expiry_broker_start(&cfg, nruns * 2 + 100000);
    struct rc_metrics *m = rc_broker_metrics(b);

    /* one message every ms (not every tick: the stream's phase against the
     * wheel's ticks must sweep the whole tick, or every run would be due at
     * the same point of one and the lateness would be that constant) */
    size_t per_tick = (size_t)(steady_rate / 1000.0 + 0.5);
    if (per_tick == 0)
        per_tick = 1;
    size_t ticks = (size_t)(steady_s * 1000.0 + 0.5);
    size_t ns = per_tick * ticks;
    struct ssub *x = calloc(1, sizeof(*x));
    x->n = ns;
    x->t_recv = calloc(ns, sizeof(uint64_t));
    x->idle = malloc(ns * sizeof(int64_t));
    for (size_t i = 0; i < ns; i++)
        x->idle[i] = -1;
    atomic_init(&x->evs, 0);
    atomic_init(&x->terminals, 0);
    struct rc_actor *sa = subscribe_all(b, ssub_behaviour, x);

    /* N armed runs (1 h: none expires here); the subscriber drains their starts */
    uint64_t t0 = rc_clock_mono_ns();
    create_runs(b, "a-", nruns, NULL, NULL, NULL, 0);
    uint64_t drain_end = rc_clock_mono_ns() + 120000000000ull;
    while (atomic_load_explicit(&x->evs, memory_order_relaxed) < nruns &&
           rc_clock_mono_ns() < drain_end)
        rc_clock_sleep_ms(10);
    uint64_t t1 = rc_clock_mono_ns();
    size_t drained = atomic_load_explicit(&x->evs, memory_order_relaxed);
    /* the broker histograms count only the stream's expiries from here */
    uint64_t fire0[RC_METRICS_LATE_BUCKETS], emit0[RC_METRICS_LATE_BUCKETS];
    for (unsigned i = 0; i < RC_METRICS_LATE_BUCKETS; i++) {
        fire0[i] = rc_metric_get(&m->watchdog_fire_late[i]);
        emit0[i] = rc_metric_get(&m->watchdog_emit_late[i]);
    }

    /* the stream: per_tick starts in one message every ms */
    uint64_t *t_sent = calloc(ns, sizeof(uint64_t));
    struct rc_buf msg;
    rc_buf_init(&msg);
    char id[32];
    struct rcb_stall *probe = rcb_stall_start(); /* the machine's own stalls, same window */
    uint64_t s0 = rc_clock_mono_ns();
    for (size_t k = 0, i = 0; k < ticks; k++) {
        sleep_until_ns(s0 + k * 1000000ull);
        rc_buf_reset(&msg);
        rc_mpw_array(&msg, (uint32_t)per_tick);
        size_t first = i;
        for (size_t j = 0; j < per_tick; j++, i++) {
            int len = snprintf(id, sizeof(id), "s-%zu", i);
            rc_mpw_map(&msg, 3);
            rc_mpw_cstr(&msg, "run");
            rc_mpw_str(&msg, id, (size_t)len);
            rc_mpw_cstr(&msg, "type");
            rc_mpw_cstr(&msg, "start");
            rc_mpw_cstr(&msg, "timeouts");
            rc_mpw_map(&msg, 1);
            rc_mpw_cstr(&msg, "*");
            rc_mpw_uint(&msg, steady_t);
        }
        uint64_t ts = rc_clock_mono_ns();
        while (rc_broker_publish(b, msg.data, msg.len, 0, NULL, NULL) != 0)
            rc_clock_sleep_ms(1);
        for (size_t j = first; j < i; j++)
            t_sent[j] = ts;
    }
    rc_buf_fini(&msg);
    uint64_t s1 = rc_clock_mono_ns();
    uint64_t last = s1 + steady_t * 1000000ull + 30000000000ull;
    while (atomic_load_explicit(&x->terminals, memory_order_acquire) < ns &&
           rc_clock_mono_ns() < last)
        rc_clock_sleep_ms(20);
    size_t got = atomic_load_explicit(&x->terminals, memory_order_acquire);
    size_t active = rc_runs_active(rc_broker_runs(b));
    struct rcb_stall_result stall;
    rcb_stall_stop(probe, &stall);

    uint64_t *late = malloc(ns * sizeof(uint64_t)), *idle = malloc(ns * sizeof(uint64_t));
    size_t nl = 0, ni = 0, early = 0;
    for (size_t i = 0; i < ns; i++) {
        if (!x->t_recv[i])
            continue;
        /* the broker's due: the start's receipt (whole ms, >= t_sent) + T */
        uint64_t due = (t_sent[i] / 1000000u + steady_t) * 1000000u;
        if (x->t_recv[i] < due)
            early++;
        late[nl++] = x->t_recv[i] > due ? x->t_recv[i] - due : 0;
        if (x->idle[i] >= 0)
            idle[ni++] = x->idle[i] >= (int64_t)steady_t ? (uint64_t)x->idle[i] - steady_t : 0;
    }
    qsort(late, nl, sizeof(uint64_t), cmp_u64);
    qsort(idle, ni, sizeof(uint64_t), cmp_u64);
    /* subtract the baseline so the histograms hold only the stream */
    rc_metric fire[RC_METRICS_LATE_BUCKETS], emit[RC_METRICS_LATE_BUCKETS];
    for (unsigned i = 0; i < RC_METRICS_LATE_BUCKETS; i++) {
        atomic_init(&fire[i], rc_metric_get(&m->watchdog_fire_late[i]) - fire0[i]);
        atomic_init(&emit[i], rc_metric_get(&m->watchdog_emit_late[i]) - emit0[i]);
    }
    printf("steady expiries among %zu armed runs: %zu runs armed (1 h) in %.2f s, the `all` "
           "subscriber drained their starts (%zu); then %.0f runs/s (one message a ms) for %.1f s, "
           "watchdog %llu "
           "ms each; --watchdog-tick %s\n",
           nruns, nruns, (double)(t1 - t0) / 1e9, drained, steady_rate, (double)(s1 - s0) / 1e9,
           (unsigned long long)steady_t, tick);
    char note[160];
    snprintf(note, sizeof(note), "of %zu; %zu runs active at the end (armed + unexpired)", ns,
             active);
    row("steady: synthesized terminals received", (double)got, "runs", note);
    if (ni) {
        row("steady: broker idle_ms - T, p50", pct_u64(idle, ni, 50), "ms",
            "exact, from data.idle_ms (whole ms)");
        row("steady: broker idle_ms - T, p99", pct_u64(idle, ni, 99), "ms", NULL);
        row("steady: broker idle_ms - T, p99.9", pct_u64(idle, ni, 99.9), "ms", NULL);
        row("steady: broker idle_ms - T, max", (double)idle[ni - 1], "ms", NULL);
    }
    uint64_t tot;
    row("steady: (a) wheel fire - due, p99", late_pct(fire, 99, &tot), "ms",
        "broker histogram, bucket bound (<= +25%)");
    row("steady: (a) wheel fire - due, max", late_pct(fire, 100, &tot), "ms", NULL);
    row("steady: (b) terminal emitted - due, p99", late_pct(emit, 99, &tot), "ms", NULL);
    row("steady: (b) terminal emitted - due, max", late_pct(emit, 100, &tot), "ms", NULL);
    if (nl) {
        snprintf(note, sizeof(note), "exact; due = start's ms + T; %zu before due", early);
        row("steady: (c) subscriber received - due, p50", pct_u64(late, nl, 50) / 1e6, "ms", note);
        row("steady: (c) subscriber received - due, p99", pct_u64(late, nl, 99) / 1e6, "ms", NULL);
        row("steady: (c) subscriber received - due, p99.9", pct_u64(late, nl, 99.9) / 1e6, "ms",
            NULL);
        row("steady: (c) subscriber received - due, max", (double)late[nl - 1] / 1e6, "ms", NULL);
    }
    if (stall.probes == 2) {
        snprintf(note, sizeof(note),
                 "the machine alone: two 1 ms sleepers on 2 CPUs late at once; %u over 5 ms",
                 stall.together_over_5ms);
        row("steady: machine stall, both CPUs, longest", (double)stall.together_max_ns / 1e6, "ms",
            note);
    }
    if (stall.probes > 0)
        row("steady: machine stall, one CPU, longest", (double)stall.late_max_ns / 1e6, "ms",
            "the latest wake-up of either 1 ms sleeper");
    if (stall.probes == 2 && stall.together) {
        /* each terminal's lateness less its part in a stall of both CPUs:
         * what the broker is answerable for (rcb_stall_outside) */
        struct rcb_stall_tally idle_out = {0}, recv_out = {0};
        for (size_t i = 0; i < ns; i++) {
            if (!x->t_recv[i])
                continue;
            uint64_t due = (t_sent[i] / 1000000u + steady_t) * 1000000u;
            if (x->t_recv[i] > due)
                rcb_stall_tally_add(&recv_out, &stall, due, x->t_recv[i] - due,
                                    RCB_STALL_GOAL_TICK_NS);
            if (x->idle[i] > (int64_t)steady_t)
                rcb_stall_tally_add(&idle_out, &stall, due,
                                    ((uint64_t)x->idle[i] - steady_t) * 1000000u,
                                    RCB_STALL_GOAL_TICK_NS);
        }
        snprintf(note, sizeof(note),
                 "less each one's part in a stall of both CPUs; %u over 10 ms, %u of them "
                 "within 10 ms so",
                 idle_out.over_tick, idle_out.within_tick);
        row("steady: broker idle_ms - T, max outside machine stalls", (double)idle_out.max_ns / 1e6,
            "ms", note);
        row("steady: (c) subscriber received - due, max outside machine stalls",
            (double)recv_out.max_ns / 1e6, "ms", NULL);
    }
    rcb_stall_result_fini(&stall);
    free(late);
    free(idle);
    rc_broker_free(b);
    rc_actor_release(sa);
    free(x->t_recv);
    free(x->idle);
    free(x);
    free(t_sent);
    rc_config_fini(&cfg);
}

static void bench_expiry(void)
{
    if (!strcmp(expiry_only, "all") || !strcmp(expiry_only, "mass"))
        expiry_case(true);
    if (!strcmp(expiry_only, "all") || !strcmp(expiry_only, "spread"))
        expiry_case(false);
    if (!strcmp(expiry_only, "all") || !strcmp(expiry_only, "steady"))
        steady_case();
}

int main(int argc, char **argv)
{
    const char *what = "all";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            nruns = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            only_batch = atoi(argv[++i]);
        else if (strcmp(argv[i], "--pubs") == 0 && i + 1 < argc)
            npub_single = atoi(argv[++i]);
        else if (strcmp(argv[i], "--clients") == 0 && i + 1 < argc)
            ack_clients = atoi(argv[++i]);
        else if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc)
            inproc_msgs = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--publish-api") == 0)
            inproc_api = true;
        else if (strcmp(argv[i], "--pull") == 0)
            inproc_pull = true;
        else if (strcmp(argv[i], "--no-raw") == 0)
            skip_raw = true;
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--spread") == 0 && i + 1 < argc)
            spread_s = atof(argv[++i]);
        else if (strcmp(argv[i], "--watchdog-threads") == 0 && i + 1 < argc)
            wd_threads = argv[++i];
        else if (strcmp(argv[i], "--tick") == 0 && i + 1 < argc)
            tick = argv[++i];
        else if (strcmp(argv[i], "--case") == 0 && i + 1 < argc)
            expiry_only = argv[++i];
        else if (strcmp(argv[i], "--steady-rate") == 0 && i + 1 < argc)
            steady_rate = atof(argv[++i]);
        else if (strcmp(argv[i], "--steady-s") == 0 && i + 1 < argc)
            steady_s = atof(argv[++i]);
        else if (strcmp(argv[i], "--steady-t") == 0 && i + 1 < argc)
            steady_t = strtoull(argv[++i], NULL, 10);
        else
            what = argv[i];
    }
    rc_log_init(NULL, RC_LOG_ERROR, RC_LOG_TEXT);
    printf("bench_broker (allocator %s, nng %s)\n", rc_alloc_backend(), nng_version());
    if (!strcmp(what, "all") || !strcmp(what, "ingest"))
        bench_ingest();
    if (!strcmp(what, "all") || !strcmp(what, "ack"))
        bench_ack();
    if (!strcmp(what, "all") || !strcmp(what, "runs"))
        bench_runs();
    if (!strcmp(what, "all") || !strcmp(what, "expiry"))
        bench_expiry();
    if (!strcmp(what, "all") || !strcmp(what, "inproc"))
        bench_inproc();
    return 0;
}
