/*
 * bench_broker: the broker core's numbers, each next to its baseline.
 *
 *   ingest   events/s over PUSH into the broker vs raw nng PUSH/PULL
 *            carrying the same messages, in the same run: single-event
 *            messages (several publishers) and batches of 32 / 64 events of
 *            about 200 bytes
 *   ack      acknowledged events/s over REQ with batches, and the
 *            single-event round trip vs raw nng REQ/REP
 *   runs     memory per active run without history (N runs with armed
 *            watchdogs, jemalloc's allocated bytes and RSS), run creation +
 *            watchdog arm time, and watchdog lateness at that scale
 *
 *   inproc   the broker core alone, for instruction counts: M batches of
 *            --batch events (default 64) spread over --runs runs (default
 *            100, as runcast-bench's ingest scenario) published in process
 *            (rc_broker_publish) from one thread, timed to the last event
 *            accepted.  Deterministic input: run it under
 *            `valgrind --tool=callgrind` and divide by the events.
 *
 * Usage: bench_broker [ingest|ack|runs|inproc|all] [--runs N] [--seconds S]
 *                     [--messages M]
 * Prints one table; timing lives here, never in tests.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rc_alloc.h"
#include "rc_broker.h"
#include "rc_buf.h"
#include "rc_clock.h"
#include "rc_config.h"
#include "rc_error.h"
#include "rc_log.h"
#include "rc_metrics.h"
#include "rc_proto.h"
#include "rc_run.h"
#include "rc_runs.h"

static double seconds = 2.0;
static size_t nruns = 1000000;
static int only_batch = 0;         /* --batch N: only that ingest case */
static int npub_single = 4;        /* --pubs N: publishers for single-event messages */
static bool skip_raw = false;      /* --no-raw */
static int ack_clients = 4;        /* --clients N */
static size_t inproc_msgs = 20000; /* --messages M (inproc) */

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
    for (size_t i = 0; i < M; i++)
        rc_broker_publish(b, msgs[i % NM].data, msgs[i % NM].len, 1, NULL, NULL);
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

static void list_cb(void *arg, int rc, const struct rc_run_summary *v, size_t n)
{
    for (size_t i = 0; i < n && i < 5; i++)
        fprintf(stderr, "failed run: %s seq %llu phase %s\n", v[i].run,
                (unsigned long long)v[i].seq, v[i].phase);
    *(volatile int *)arg = 1;
}

static void bench_runs(void)
{
    printf("runs (%zu runs, each created by one event, watchdogs armed)\n", nruns);
    struct rc_config cfg;
    char maxruns[32];
    snprintf(maxruns, sizeof(maxruns), "%zu", nruns * 2 + 10);
    /* history-max-bytes 1: the one event is not retained (no history) */
    /* clang-format off */
    const char *opts[] = {
        "history-max-bytes", "1",   "log-level", "error", "max-runs", maxruns,
        "watchdog", "1h", "watchdog-tick", "10ms", "run-deadline", "0", "retention", "1h", NULL};
    /* clang-format on */
    cfg_init(&cfg, opts);
    struct rc_broker *b;
    rc_broker_new(&cfg, &b);
    rc_broker_start(b);
    struct rc_runs *runs = rc_broker_runs(b);

    /* 1. direct creation: registry insert + actor spawn + watchdog arm */
    size_t n1 = nruns / 10;
    char id[32];
    size_t a0 = allocated(), r0 = rss_bytes();
    uint64_t t0 = rc_clock_mono_ns();
    for (size_t i = 0; i < n1; i++) {
        int len = snprintf(id, sizeof(id), "bare-%zu", i);
        struct rc_actor *a;
        if (rc_runs_get(runs, id, (size_t)len, rc_runs_hash(id, (size_t)len), true, &a) == 0)
            rc_actor_release(a);
    }
    double per_create = (double)(rc_clock_mono_ns() - t0) / (double)n1 / 1000.0;
    size_t a1 = allocated(), r1 = rss_bytes();

    /* 2. runs created through the ingest path, one event each */
    struct rc_buf msg;
    rc_buf_init(&msg);
    t0 = rc_clock_mono_ns();
    for (size_t i = 0; i < nruns;) {
        size_t n = nruns - i < 1024 ? nruns - i : 1024;
        rc_buf_reset(&msg);
        rc_mpw_array(&msg, (uint32_t)n);
        for (size_t k = 0; k < n; k++, i++) {
            int len = snprintf(id, sizeof(id), "run-%zu", i);
            rc_mpw_map(&msg, 2);
            rc_mpw_cstr(&msg, "run");
            rc_mpw_str(&msg, id, (size_t)len);
            rc_mpw_cstr(&msg, "type");
            rc_mpw_cstr(&msg, "start");
        }
        while (rc_broker_publish(b, msg.data, msg.len, 0, NULL, NULL) != 0)
            rc_clock_sleep_ms(1);
        if ((i / 1024) % 64 == 0)
            wait_idle(b); /* bound the queued work */
    }
    wait_idle(b);
    double per_ingest = (double)(rc_clock_mono_ns() - t0) / (double)nruns / 1000.0;
    size_t a2 = allocated(), r2 = rss_bytes();
    rc_buf_fini(&msg);

    char note[96];
    row("run creation + watchdog arm (registry, spawn, timer)", per_create, "us/run", NULL);
    row("run creation through the ingest path (batch 1024)", per_ingest, "us/run", NULL);
    if (a0 || a1) {
        row("memory per bare run (allocated, jemalloc)", (double)(a1 - a0) / (double)n1, "B/run",
            NULL);
        snprintf(note, sizeof(note), "%.0f MiB for %zu runs", (double)(a2 - a1) / 1048576.0, nruns);
        row("memory per active run without history (allocated)", (double)(a2 - a1) / nruns, "B/run",
            note);
    } else {
        row("memory: rc_alloc_stats unavailable (not jemalloc)", 0, "", NULL);
    }
    row("memory per active run without history (RSS)", (double)(r2 - r1) / nruns, "B/run", NULL);
    (void)r0;

    /* 3. watchdog lateness at that scale: the runs above stay armed (1 h);
     * probe runs ask for 2 s in their start event, created a few per ms so
     * their expiries spread like real ones */
    struct rc_metrics *m = rc_broker_metrics(b);
    int PROBES = getenv("BENCH_PROBES") ? atoi(getenv("BENCH_PROBES")) : 5000;
    struct rc_buf pm;
    rc_buf_init(&pm);
    for (int j = 0; j < PROBES; j += 5) {
        rc_buf_reset(&pm);
        rc_mpw_array(&pm, 5);
        for (int k = 0; k < 5; k++) {
            int len = snprintf(id, sizeof(id), "probe-%d", j + k);
            rc_mpw_map(&pm, 3);
            rc_mpw_cstr(&pm, "run");
            rc_mpw_str(&pm, id, (size_t)len);
            rc_mpw_cstr(&pm, "type");
            rc_mpw_cstr(&pm, "start");
            rc_mpw_cstr(&pm, "timeouts");
            rc_mpw_map(&pm, 1);
            rc_mpw_cstr(&pm, "*");
            rc_mpw_uint(&pm, 2000);
        }
        rc_broker_publish(b, pm.data, pm.len, 0, NULL, NULL);
        rc_clock_sleep_ms(1);
    }
    rc_buf_fini(&pm);
    uint64_t end = rc_clock_mono_ms() + 30000;
    while (rc_metric_get(&m->watchdog_fired) < (uint64_t)PROBES && rc_clock_mono_ms() < end)
        rc_clock_sleep_ms(20);
    uint64_t fired = rc_metric_get(&m->watchdog_fired);
    if (getenv("BENCH_DEBUG")) {
        volatile int done = 0;
        struct rc_runs_filter f = {.status = RC_RUN_FAILED, .conv = NULL, .limit = 10};
        rc_runs_list(runs, &f, list_cb, (void *)&done);
        while (!done)
            rc_clock_sleep_ms(1);
        fprintf(stderr, "terminals: watchdog %llu deadline %llu gone %llu\n",
                (unsigned long long)rc_metric_get(&m->terminals[RC_TERM_WATCHDOG_TIMEOUT]),
                (unsigned long long)rc_metric_get(&m->terminals[RC_TERM_DEADLINE_EXCEEDED]),
                (unsigned long long)rc_metric_get(&m->terminals[RC_TERM_PUBLISHER_GONE]));
    }
    snprintf(note, sizeof(note), "%llu probes fired among %zu armed runs; tick 10 ms",
             (unsigned long long)fired, n1 + nruns);
    row("watchdog lateness at scale, mean",
        fired ? (double)rc_metric_get(&m->watchdog_late_sum_ms) / fired : 0, "ms", note);
    row("watchdog lateness at scale, max", (double)rc_metric_get(&m->watchdog_late_max_ms), "ms",
        NULL);
    rc_broker_free(b);
    rc_config_fini(&cfg);
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
        else if (strcmp(argv[i], "--no-raw") == 0)
            skip_raw = true;
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
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
    if (!strcmp(what, "all") || !strcmp(what, "inproc"))
        bench_inproc();
    return 0;
}
