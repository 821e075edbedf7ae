/*
 * rc_broker: wires the actor system, the run registry, the metrics, the
 * supervisor and the nng ingress together (see rc_broker.h).
 */
#include "rc_broker.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "rc_alloc.h"
#include "rc_clock.h"
#include "rc_config.h"
#include "rc_error.h"
#include "rc_ingest.h"
#include "rc_ingress.h"
#include "rc_log.h"
#include "rc_run.h"

struct rc_broker {
    const struct rc_config *cfg;
    struct rc_actor_system *sys;
    struct rc_runs *runs;
    struct rc_metrics metrics;
    uint64_t epoch;
    struct rc_supervisor *sup;
    pthread_mutex_t mtx;      /* protects ings, n_ings, cur */
    struct rc_ingress **ings; /* every instance opened (freed at stop) */
    size_t n_ings, cap_ings;
    struct rc_ingress *cur; /* the live one */
    atomic_bool accepting;  /* release at start/quiesce, acquire per message */
    atomic_bool serving;    /* relaxed: a health flag */
    bool started, stopped;  /* caller's thread only */
    int64_t started_at;
    char err[256];
    int start_rc; /* the last ingress_start's own error (RC_OK if none) */
    rc_broker_fatal_cb fatal;
    void *fatal_arg;
    /* caller's thread only: a bounded nng close did not return in time; the
     * ingress instances (and what they point to) are then leaked, not freed,
     * since a stuck nng thread may still touch them */
    bool hung;
    /* A failed ingress's sockets did not close in time on a restart: nng's
     * reaper is then stuck (nng 1.5.2, see ingress_fini), the old instance
     * keeps its ports, and any nng call that opens or closes a socket may
     * wait for ever.  Set once by ingress_fini (release), read by
     * ingress_start and the stop path (acquire). */
    atomic_bool wedged;
    atomic_bool stopping; /* release in rc_broker_stop, acquire in ingress_fini */
    /* ingress_start only (the supervisor runs it on one thread at a time:
     * first in rc_broker_start, then on the worker handling the DOWN) */
    uint64_t ingress_starts;
};

/* ---- bounded nng closes ----
 *
 * nng_close of a PULL socket blocked for ever (about one stop in three
 * under a flood with the receive parked for back-pressure: every nng
 * thread idle, the closer waiting on a condition nobody signals).  The
 * cause was a receive posted while the socket shut down (fixed in
 * rc_ingress.c, pull_fence), but a shutdown must be bounded in every state
 * whatever nng does, so each close of an ingress runs on a helper thread
 * and the caller waits at most a bounded time for it; past that it logs
 * and goes on without the socket (the process is exiting).  The helper's context is shared by two
 * parties (the caller and the helper) and freed by the last one. */

struct bounded {
    pthread_mutex_t mtx; /* protects done, parties */
    pthread_cond_t cv;
    bool done;
    int parties;
    void (*fn)(struct rc_ingress *);
    struct rc_ingress *ing;
};

static void bounded_release(struct bounded *c)
{
    pthread_mutex_lock(&c->mtx);
    bool last = --c->parties == 0;
    pthread_mutex_unlock(&c->mtx);
    if (last) {
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mtx);
        rc_free(c);
    }
}

static void *bounded_main(void *arg)
{
    struct bounded *c = arg;
    c->fn(c->ing);
    pthread_mutex_lock(&c->mtx);
    c->done = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mtx);
    bounded_release(c);
    return NULL;
}

/* The wait for one bounded close: a fifth of --shutdown-timeout, at most
 * 1 s, at least the connections' settle plus 50 ms (nng_close itself
 * normally takes well under a millisecond). */
static uint64_t close_wait_ms(const struct rc_config *cfg)
{
    uint64_t ms = cfg->shutdown_timeout_ms / 5, min = RC_INGRESS_SETTLE_MAX_MS + 50;
    return ms > 1000 ? 1000 : ms < min ? min : ms;
}

/* Runs fn(ing) and waits at most ms for it; false when it did not return
 * in time (it may still return later, on its own thread).  Without a
 * thread (ENOMEM / EAGAIN) it runs fn inline. */
static bool run_bounded(void (*fn)(struct rc_ingress *), struct rc_ingress *ing, uint64_t ms)
{
    struct bounded *c = rc_calloc(1, sizeof(*c));
    if (!c) {
        fn(ing);
        return true;
    }
    pthread_mutex_init(&c->mtx, NULL);
    rc_clock_cond_init(&c->cv);
    c->fn = fn;
    c->ing = ing;
    c->parties = 2;
    pthread_t th;
    if (pthread_create(&th, NULL, bounded_main, c) != 0) {
        c->parties = 1;
        bounded_release(c);
        fn(ing);
        return true;
    }
    pthread_detach(th);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + ms * 1000000u;
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    pthread_mutex_lock(&c->mtx);
    while (!c->done && pthread_cond_timedwait(&c->cv, &c->mtx, &ts) == 0)
        ;
    bool done = c->done;
    pthread_mutex_unlock(&c->mtx);
    bounded_release(c);
    return done;
}

static uint64_t derive_epoch(void)
{
    uint16_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (uint16_t)rc_clock_mono_ns();
    return (uint64_t)rc_clock_wall_ms() * 1024u + (r & 1023u);
}

uint32_t rc_broker_wheel_tick_us(uint64_t watchdog_tick_ms)
{
    uint64_t us = watchdog_tick_ms * 1000u / RC_BROKER_WHEEL_SLOTS_PER_TICK;
    return us == 0 ? 1 : us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

int rc_broker_new(const struct rc_config *cfg, struct rc_broker **out)
{
    struct rc_broker *b = rc_calloc(1, sizeof(*b));
    if (!b)
        return RC_ENOMEM;
    b->cfg = cfg;
    rc_metrics_init(&b->metrics);
    b->epoch = cfg->epoch ? cfg->epoch : derive_epoch();
    pthread_mutex_init(&b->mtx, NULL);
    atomic_init(&b->accepting, false);
    atomic_init(&b->serving, false);
    atomic_init(&b->stopping, false);
    atomic_init(&b->wedged, false);
    struct rc_actor_system_opts o = {
        .workers = rc_config_workers(cfg),
        .batch = (uint32_t)cfg->actor_batch,
        /* --watchdog-tick is the lateness budget; the wheel turns in
         * sixteenths of it, so its rounding takes at most 1/16 and the
         * rest is left for the timer thread's and the run's wake-ups. */
        .tick_us = rc_broker_wheel_tick_us(cfg->watchdog_tick_ms),
        .timer_threads = (uint32_t)cfg->watchdog_threads,
    };
    int rc = rc_actor_system_new(&b->sys, &o);
    if (rc == 0)
        rc = rc_runs_new(b->sys, cfg, &b->metrics, b->epoch, &b->runs);
    if (rc != 0) {
        rc_broker_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

const char *rc_broker_error(const struct rc_broker *b)
{
    return b->err;
}

void rc_broker_set_fatal_cb(struct rc_broker *b, rc_broker_fatal_cb cb, void *arg)
{
    b->fatal = cb;
    b->fatal_arg = arg;
}

static void giveup_cb(void *arg, const char *child, int reason)
{
    struct rc_broker *b = arg;
    rc_log(RC_LOG_CRITICAL, "supervisor", NULL, NULL,
           "%s failed more than %llu times within %llu ms (last: %s); giving up", child,
           (unsigned long long)b->cfg->restart_intensity,
           (unsigned long long)b->cfg->restart_period_ms, rc_error_name(reason));
    if (b->fatal)
        b->fatal(b->fatal_arg, child, reason);
}

/* ---- the ingress as a supervised child ---- */

/* The ingress actor's state. */
struct ingress_child {
    struct rc_broker *b;
    struct rc_ingress *ing;
};

static void ingress_behaviour(struct rc_actor *self, void *state, struct rc_msg *msg)
{
    (void)state;
    if (msg->type == RC_MSG_INGRESS_FAIL)
        rc_actor_stop(self, RC_EIO);
}

static void ingress_fini(void *state, int reason)
{
    /* On a worker thread: a stuck nng close must not hold the worker (the
     * actor system's stop would wait for it).  The broker's own stop closes
     * and frees every instance; this close is for a restart (the new
     * instance rebinds the URLs). */
    struct ingress_child *c = state;
    struct rc_broker *b = c->b;
    struct rc_ingress *ing = c->ing;
    rc_free(c);
    (void)reason;
    /* acquire: pairs with the release in rc_broker_stop, which has already
     * closed (or given up on) every instance */
    if (atomic_load_explicit(&b->stopping, memory_order_acquire))
        return;
    if (run_bounded(rc_ingress_close, ing, 1000))
        return;
    /* rc_ingress_close stops our own operations before nng_close, which
     * cured the REP case; nng 1.5.2 can still deadlock closing a PULL socket
     * that peers flood while it closes (nanomsg/nng#1543 family, fixed
     * after 1.5.2).  No restart can work in this process then (the old
     * instance keeps its ports, and opening the new one would wait on nng
     * for ever on a worker): exit 70 like a supervisor past its intensity,
     * so that systemd or Kubernetes restarts runcastd. */
    atomic_store_explicit(&b->wedged, true, memory_order_release);
    rc_log(RC_LOG_CRITICAL, "ingress", NULL, NULL,
           "closing the failed ingress's sockets did not finish within 1000 ms: nng is stuck "
           "(nng 1.5.2 can deadlock closing a socket under load); the ingress cannot be "
           "restarted in this process, exiting for the service manager to restart runcastd");
    if (b->fatal)
        b->fatal(b->fatal_arg, "ingress", RC_ETIMEDOUT);
}

static struct rc_actor *ingress_start(void *arg)
{
    struct rc_broker *b = arg;
    struct rc_ingress_env env = {
        .runs = b->runs,
        .metrics = &b->metrics,
        .cfg = b->cfg,
        .epoch = b->epoch,
        .accepting = &b->accepting,
    };
    /* The supervisor runs ingress_start on one thread at a time; cur is
     * written only here, and read elsewhere under mtx. */
    pthread_mutex_lock(&b->mtx);
    env.previous = b->cur;
    pthread_mutex_unlock(&b->mtx);
    struct rc_ingress *ing = NULL;
    char err[sizeof(b->err)] = "";
    /* acquire: pairs with the release in ingress_fini */
    if (atomic_load_explicit(&b->wedged, memory_order_acquire)) {
        /* no nng call: it could wait for ever (see ingress_fini) */
        pthread_mutex_lock(&b->mtx);
        snprintf(b->err, sizeof(b->err), "nng is stuck closing a failed ingress");
        pthread_mutex_unlock(&b->mtx);
        return NULL;
    }
    int rc = rc_ingress_open(&env, &ing, err, sizeof(err));
    if (rc != 0) {
        pthread_mutex_lock(&b->mtx);
        snprintf(b->err, sizeof(b->err), "%s", err);
        b->start_rc = rc;
        pthread_mutex_unlock(&b->mtx);
        rc_log(RC_LOG_ERROR, "ingress", NULL, NULL, "%s", err);
        return NULL;
    }
    pthread_mutex_lock(&b->mtx);
    if (b->n_ings == b->cap_ings) {
        size_t nc = b->cap_ings ? b->cap_ings * 2 : 4;
        struct rc_ingress **nv = rc_realloc(b->ings, nc * sizeof(*nv));
        if (!nv) {
            pthread_mutex_unlock(&b->mtx);
            rc_ingress_free(ing);
            return NULL;
        }
        b->ings = nv;
        b->cap_ings = nc;
    }
    b->ings[b->n_ings++] = ing;
    b->cur = ing;
    pthread_mutex_unlock(&b->mtx);
    struct rc_actor *a = NULL;
    struct rc_actor_opts o = {.mailbox_limit = 0, .name = "ingress"};
    struct ingress_child *c = rc_malloc(sizeof(*c));
    if (c) {
        c->b = b;
        c->ing = ing;
    }
    if (!c || rc_actor_spawn(b->sys, ingress_behaviour, c, ingress_fini, &o, &a) != 0) {
        rc_free(c);
        rc_ingress_close(ing);
        return NULL;
    }
    rc_ingress_set_owner(ing, a);
    if (b->ingress_starts++ > 0)
        rc_log(RC_LOG_WARN, "supervisor", NULL, NULL,
               "ingress restarted after a failure (restart %llu; at most %llu within %llu ms)",
               (unsigned long long)(b->ingress_starts - 1),
               (unsigned long long)b->cfg->restart_intensity,
               (unsigned long long)b->cfg->restart_period_ms);
    return a;
}

int rc_broker_start(struct rc_broker *b)
{
    if (b->started)
        return RC_ESTATE;
    b->err[0] = 0;
    int rc = rc_actor_system_start(b->sys);
    if (rc != 0) {
        snprintf(b->err, sizeof(b->err), "start the actor system: %s", rc_error_message(rc));
        return rc;
    }
    b->started = true;
    b->started_at = rc_clock_wall_ms();
    struct rc_supervisor_opts so = {
        .max_restarts = (uint32_t)b->cfg->restart_intensity,
        .period_ms = (uint32_t)b->cfg->restart_period_ms,
        .giveup = giveup_cb,
        .giveup_arg = b,
    };
    rc = rc_supervisor_new(b->sys, &so, &b->sup);
    if (rc != 0) {
        snprintf(b->err, sizeof(b->err), "start the supervisor: %s", rc_error_message(rc));
        return rc;
    }
    /* release: the first messages' acquire loads see everything above */
    atomic_store_explicit(&b->accepting, true, memory_order_release);
    rc = rc_supervisor_add_child(b->sup, "ingress", ingress_start, b);
    if (rc != 0) {
        atomic_store_explicit(&b->accepting, false, memory_order_release);
        if (!b->err[0])
            snprintf(b->err, sizeof(b->err), "start the ingress: %s", rc_error_message(rc));
        /* the listen's own error (RC_EADDRINUSE, ...) before the
         * supervisor's generic one; ingress_start ran on this thread */
        pthread_mutex_lock(&b->mtx);
        if (b->start_rc != RC_OK)
            rc = b->start_rc;
        pthread_mutex_unlock(&b->mtx);
        return rc;
    }
    atomic_store_explicit(&b->serving, true, memory_order_relaxed);
    return 0;
}

int rc_broker_supervise(struct rc_broker *b, const char *name, rc_child_start_fn start, void *arg)
{
    if (!b->sup)
        return RC_ESTATE;
    return rc_supervisor_add_child(b->sup, name, start, arg);
}

int rc_broker_quiesce(struct rc_broker *b, uint64_t timeout_ms)
{
    /* release: pairs with the acquire per received message */
    atomic_store_explicit(&b->accepting, false, memory_order_release);
    atomic_store_explicit(&b->serving, false, memory_order_relaxed);
    uint64_t end = rc_clock_mono_ms() + timeout_ms;
    uint64_t t0 = rc_clock_mono_ms();
    uint64_t wait = close_wait_ms(b->cfg);
    /* acquire: pairs with the release in ingress_fini; a stuck nng would
     * make every close below wait its full bound */
    if (atomic_load_explicit(&b->wedged, memory_order_acquire))
        b->hung = true;
    pthread_mutex_lock(&b->mtx);
    for (size_t i = 0; !b->hung && i < b->n_ings; i++) {
        if (!run_bounded(rc_ingress_close_pull, b->ings[i], wait)) {
            b->hung = true;
            rc_log(RC_LOG_WARN, "broker", NULL, NULL,
                   "closing a PULL socket did not finish within %llu ms (nng 1.5.2 can block "
                   "there while a peer sends); going on without it",
                   (unsigned long long)wait);
        }
    }
    pthread_mutex_unlock(&b->mtx);
    rc_log(RC_LOG_DEBUG, "broker", NULL, NULL, "PULL sockets closed in %llu ms",
           (unsigned long long)(rc_clock_mono_ms() - t0));
    while (rc_runs_inflight(b->runs) > 0) {
        if (rc_clock_mono_ms() >= end)
            return RC_ETIMEDOUT;
        rc_clock_sleep_ms(1);
    }
    return 0;
}

void rc_broker_stop(struct rc_broker *b)
{
    if (!b || b->stopped)
        return;
    b->stopped = true;
    /* release: pairs with the acquire in ingress_fini */
    atomic_store_explicit(&b->stopping, true, memory_order_release);
    uint64_t t0 = rc_clock_mono_ms();
    atomic_store_explicit(&b->accepting, false, memory_order_release);
    atomic_store_explicit(&b->serving, false, memory_order_relaxed);
    uint64_t wait = close_wait_ms(b->cfg);
    /* acquire: pairs with the release in ingress_fini */
    if (atomic_load_explicit(&b->wedged, memory_order_acquire))
        b->hung = true;
    pthread_mutex_lock(&b->mtx);
    for (size_t i = 0; i < b->n_ings; i++) {
        /* no new messages; pending acks fail to send.  After a close that
         * hung, the next one would wait for the same lock: skip it. */
        if (b->hung || !run_bounded(rc_ingress_close, b->ings[i], wait)) {
            if (!b->hung)
                rc_log(RC_LOG_WARN, "broker", NULL, NULL,
                       "closing the ingress sockets did not finish within %llu ms (nng); "
                       "going on without them",
                       (unsigned long long)wait);
            b->hung = true;
        }
    }
    pthread_mutex_unlock(&b->mtx);
    uint64_t t1 = rc_clock_mono_ms();
    if (b->sup) {
        rc_supervisor_free(b->sup);
        b->sup = NULL;
    }
    if (b->runs)
        rc_runs_close(b->runs);
    uint64_t t2 = rc_clock_mono_ms();
    if (b->sys)
        rc_actor_system_stop(b->sys);
    uint64_t t3 = rc_clock_mono_ms();
    /* The sockets are closed by now, so freeing only waits for nng's
     * callbacks to return: a longer bound (the whole --shutdown-timeout, at
     * least 1 s), so that a slow machine does not turn a free into a leak;
     * runcastd's own deadline still ends the process in time. */
    uint64_t free_wait = b->cfg->shutdown_timeout_ms > 1000 ? b->cfg->shutdown_timeout_ms : 1000;
    pthread_mutex_lock(&b->mtx);
    for (size_t i = 0; !b->hung && i < b->n_ings; i++)
        if (!run_bounded(rc_ingress_free, b->ings[i], free_wait))
            b->hung = true; /* the rest stay allocated: see struct rc_broker.hung */
    b->n_ings = 0;
    b->cur = NULL;
    pthread_mutex_unlock(&b->mtx);
    rc_log(RC_LOG_DEBUG, "broker", NULL, NULL,
           "stopped: sockets %llu ms, supervisor %llu ms, actors %llu ms, ingress %llu ms",
           (unsigned long long)(t1 - t0), (unsigned long long)(t2 - t1),
           (unsigned long long)(t3 - t2), (unsigned long long)(rc_clock_mono_ms() - t3));
}

void rc_broker_free(struct rc_broker *b)
{
    if (!b)
        return;
    rc_broker_stop(b);
    if (b->hung) {
        /* A stuck nng thread may still hold an ingress that points into the
         * registry, the actor system and this broker (its accepting flag):
         * leave them all allocated (the process is on its way out). */
        return;
    }
    rc_runs_free(b->runs);
    rc_actor_system_free(b->sys);
    rc_free(b->ings);
    pthread_mutex_destroy(&b->mtx);
    rc_free(b);
}

int rc_broker_test_crash_ingress(struct rc_broker *b)
{
    if (!b->sup)
        return RC_ESTATE;
    struct rc_actor *a = rc_supervisor_child(b->sup, "ingress");
    if (!a)
        return RC_ENOTFOUND;
    struct rc_msg *m = rc_msg_new(sizeof(struct rc_msg), RC_MSG_INGRESS_FAIL);
    int rc = m ? rc_actor_send(a, m) : RC_ENOMEM;
    if (rc != 0 && m)
        rc_msg_free(m);
    rc_actor_release(a);
    return rc;
}

bool rc_broker_abandoned(const struct rc_broker *b)
{
    return b->hung;
}

struct rc_runs *rc_broker_runs(struct rc_broker *b)
{
    return b->runs;
}
struct rc_metrics *rc_broker_metrics(struct rc_broker *b)
{
    return &b->metrics;
}
struct rc_actor_system *rc_broker_system(struct rc_broker *b)
{
    return b->sys;
}
const struct rc_config *rc_broker_config(const struct rc_broker *b)
{
    return b->cfg;
}
uint64_t rc_broker_epoch(const struct rc_broker *b)
{
    return b->epoch;
}
bool rc_broker_serving(const struct rc_broker *b)
{
    /* relaxed: a health flag */
    return atomic_load_explicit((atomic_bool *)&b->serving, memory_order_relaxed);
}
int64_t rc_broker_started_at(const struct rc_broker *b)
{
    return b->started_at;
}

const char *rc_broker_listen_url(const struct rc_broker *b, enum rc_ingest_kind kind, size_t i)
{
    struct rc_broker *mb = (struct rc_broker *)b;
    pthread_mutex_lock(&mb->mtx);
    const char *u = rc_ingress_url(mb->cur, kind, i);
    pthread_mutex_unlock(&mb->mtx);
    return u;
}

uint32_t rc_broker_pull_lanes(const struct rc_broker *b, size_t i, uint32_t *conns, uint32_t cap)
{
    struct rc_broker *mb = (struct rc_broker *)b;
    pthread_mutex_lock(&mb->mtx);
    uint32_t n = rc_ingress_pull_lanes(mb->cur, i, conns, cap);
    pthread_mutex_unlock(&mb->mtx);
    return n;
}

/* ---- in-process publishing ---- */

struct pub_ctx {
    rc_publish_done_cb done;
    void *arg;
};

static void pub_complete(struct rc_ack *ack)
{
    struct pub_ctx *p = ack->arg;
    p->done(p->arg, ack->results, ack->n);
    rc_free(p);
    rc_ack_free(ack);
}

static struct rc_ack *pub_ack_for(void *arg, uint32_t n)
{
    return rc_ack_new(n, pub_complete, arg);
}

int rc_broker_publish(struct rc_broker *b, const void *buf, size_t len, uint32_t pipe,
                      rc_publish_done_cb done, void *arg)
{
    return rc_broker_publish_at(b, buf, len, pipe, 0, done, arg);
}

int rc_broker_publish_at(struct rc_broker *b, const void *buf, size_t len, uint32_t pipe,
                         uint64_t recv_ns, rc_publish_done_cb done, void *arg)
{
    /* acquire: pairs with the release stores at start/quiesce */
    if (!atomic_load_explicit(&b->accepting, memory_order_acquire))
        return RC_ESHUTDOWN;
    struct rc_ingest_buf *ib = rc_ingest_buf_copy(buf, len);
    if (!ib)
        return RC_ENOMEM;
    ib->recv_ns = recv_ns;
    struct pub_ctx *p = NULL;
    if (done) {
        p = rc_malloc(sizeof(*p));
        if (!p) {
            rc_ingest_buf_release(ib);
            return RC_ENOMEM;
        }
        p->done = done;
        p->arg = arg;
    }
    struct rc_ingest_ctx c;
    rc_ingest_ctx_init(&c, b->runs, &b->metrics, RC_INGEST_INPROC, NULL, NULL);
    rc_ingest_dispatch(&c, ib, pipe, p ? pub_ack_for : NULL, p);
    rc_ingest_ctx_fini(&c);
    return 0;
}

void rc_broker_pipe_closed(struct rc_broker *b, uint32_t pipe)
{
    rc_metric_add(&b->metrics.pipes_closed, 1);
    rc_runs_pipe_closed(b->runs, pipe);
}
