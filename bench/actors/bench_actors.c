/*
 * bench_actors: micro-benchmarks of the actor runtime, each scenario also
 * run through a baseline (a mutex + condition-variable queue served by the
 * same number of threads) in the same process, printed as one table.
 *
 *   bench_actors [--quick] [--workers N]
 *
 * Scenarios: ping-pong pairs, fan-in (threads -> one actor), fan-out (one
 * actor -> 1000), a ring of 1000 actors with pooled messages (rc_msg_keep +
 * resend) and with an allocation + free per message; spawn + stop cost;
 * memory per idle actor; timer arm + cancel; lateness of 1,000,000 timers.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rc_actor.h"
#include "rc_actor_internal.h"
#include "rc_alloc.h"
#include "rc_clock.h"
#include "rc_error.h"

static uint32_t g_workers = 2;
static int g_quick;

/* ---- An engine: the runtime under test or the baseline ---- */

struct bmsg {
    struct rc_msg hdr; /* first */
    uint64_t hops;
    uint32_t dest;
};

struct engine;
typedef void (*handler_fn)(struct engine *e, uint32_t self, struct bmsg *m);

struct engine {
    const char *name;
    /* Sends m to actor dest; from a handler when fwd (m is the message being
     * handled, forwarded as is), or a fresh message otherwise. */
    void (*send)(struct engine *e, uint32_t dest, struct bmsg *m, bool fwd);
    handler_fn handler;
    uint32_t n;
    _Atomic uint64_t done; /* scenario-defined completion counter */
    void *impl;
};

/* rc_actor engine */
struct act_state {
    struct engine *e;
    uint32_t id;
};

struct act_impl {
    struct rc_actor_system *sys;
    struct rc_actor **a;
    struct act_state *st;
};

static void act_behaviour(struct rc_actor *self, void *state, struct rc_msg *msg)
{
    struct act_state *s = state;
    s->e->handler(s->e, s->id, (struct bmsg *)msg);
}

static void act_send(struct engine *e, uint32_t dest, struct bmsg *m, bool fwd)
{
    struct act_impl *im = e->impl;
    if (fwd)
        rc_msg_keep(&m->hdr);
    if (rc_actor_send(im->a[dest], &m->hdr) != RC_OK)
        rc_msg_free(&m->hdr);
}

static void act_start(struct engine *e, uint32_t n, handler_fn h)
{
    struct act_impl *im = calloc(1, sizeof(*im));
    struct rc_actor_system_opts o = {.workers = g_workers};
    if (rc_actor_system_new(&im->sys, &o) != RC_OK)
        abort();
    im->a = calloc(n, sizeof(*im->a));
    im->st = calloc(n, sizeof(*im->st));
    for (uint32_t i = 0; i < n; i++) {
        im->st[i] = (struct act_state){.e = e, .id = i};
        if (rc_actor_spawn(im->sys, act_behaviour, &im->st[i], NULL, NULL, &im->a[i]) != RC_OK)
            abort();
    }
    e->impl = im;
    e->n = n;
    e->handler = h;
    e->send = act_send;
    e->name = "rc_actor";
    atomic_store(&e->done, 0);
    rc_actor_system_start(im->sys);
}

static uint64_t g_handled;   /* messages the last rc_actor run handled */
static uint64_t g_steals;    /* steals in the last rc_actor run */
static uint64_t g_min_share; /* the least any worker handled, in per mille */

static void act_stop(struct engine *e)
{
    struct act_impl *im = e->impl;
    rc_actor_system_stop(im->sys);
    struct rc_actor_system_stats st;
    rc_actor_system_stats(im->sys, &st);
    g_handled = st.messages_handled;
    g_steals = st.steals;
    /* How evenly the workers shared the work (both cores used?). */
    struct rc_actor_system *sys = im->sys;
    g_min_share = 1000;
    for (uint32_t i = 0; i < sys->nworkers && st.messages_handled; i++) {
        uint64_t h = atomic_load_explicit(&sys->workers[i].handled, memory_order_relaxed);
        uint64_t share = h * 1000 / st.messages_handled;
        if (share < g_min_share)
            g_min_share = share;
    }
    for (uint32_t i = 0; i < e->n; i++)
        rc_actor_release(im->a[i]);
    rc_actor_system_free(im->sys);
    free(im->a);
    free(im->st);
    free(im);
}

/* Baseline engine: one mutex + condvar FIFO of messages, served by
 * g_workers threads; a message's destination is in the message.  (It does
 * not even keep an actor on one thread at a time, so it is generous.) */
struct base_impl {
    pthread_mutex_t mtx;
    pthread_cond_t cv;
    struct rc_msg *head, *tail;
    bool stop;
    pthread_t *th;
};

static void base_send(struct engine *e, uint32_t dest, struct bmsg *m, bool fwd)
{
    struct base_impl *b = e->impl;
    m->dest = dest;
    atomic_store_explicit(&m->hdr.next, NULL, memory_order_relaxed);
    pthread_mutex_lock(&b->mtx);
    if (b->tail)
        atomic_store_explicit(&b->tail->next, &m->hdr, memory_order_relaxed);
    else
        b->head = &m->hdr;
    b->tail = &m->hdr;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mtx);
}

static __thread struct bmsg *base_cur;
static __thread bool base_fwd_cur;

static void base_send_wrap(struct engine *e, uint32_t dest, struct bmsg *m, bool fwd)
{
    if (fwd && m == base_cur)
        base_fwd_cur = true;
    base_send(e, dest, m, fwd);
}

static void *base_main(void *arg)
{
    struct engine *e = arg;
    struct base_impl *b = e->impl;
    pthread_mutex_lock(&b->mtx);
    for (;;) {
        while (!b->head && !b->stop)
            pthread_cond_wait(&b->cv, &b->mtx);
        if (!b->head)
            break;
        struct rc_msg *m = b->head;
        b->head = atomic_load_explicit(&m->next, memory_order_relaxed);
        if (!b->head)
            b->tail = NULL;
        pthread_mutex_unlock(&b->mtx);
        base_cur = (struct bmsg *)m;
        base_fwd_cur = false;
        e->handler(e, base_cur->dest, base_cur);
        if (!base_fwd_cur)
            rc_msg_free(m);
        pthread_mutex_lock(&b->mtx);
    }
    pthread_mutex_unlock(&b->mtx);
    return NULL;
}

static void base_start(struct engine *e, uint32_t n, handler_fn h)
{
    struct base_impl *b = calloc(1, sizeof(*b));
    pthread_mutex_init(&b->mtx, NULL);
    pthread_cond_init(&b->cv, NULL);
    e->impl = b;
    e->n = n;
    e->handler = h;
    e->send = base_send_wrap;
    e->name = "mutex+condvar";
    atomic_store(&e->done, 0);
    b->th = calloc(g_workers, sizeof(pthread_t));
    for (uint32_t i = 0; i < g_workers; i++)
        pthread_create(&b->th[i], NULL, base_main, e);
}

static void base_stop(struct engine *e)
{
    struct base_impl *b = e->impl;
    pthread_mutex_lock(&b->mtx);
    b->stop = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mtx);
    for (uint32_t i = 0; i < g_workers; i++)
        pthread_join(b->th[i], NULL);
    while (b->head) {
        struct rc_msg *m = b->head;
        b->head = atomic_load_explicit(&m->next, memory_order_relaxed);
        rc_msg_free(m);
    }
    free(b->th);
    free(b);
}

static struct bmsg *new_msg(uint64_t hops)
{
    struct bmsg *m = (struct bmsg *)rc_msg_new(sizeof(*m), 1);
    m->hops = hops;
    return m;
}

static void wait_done(struct engine *e, uint64_t want)
{
    while (atomic_load_explicit(&e->done, memory_order_acquire) < want)
        usleep(200);
}

/* ---- Scenarios ---- */

/* Ring: actor i forwards to i+1 until the message's hops run out. */
static void ring_pooled_h(struct engine *e, uint32_t self, struct bmsg *m)
{
    if (m->hops-- == 0) {
        atomic_fetch_add_explicit(&e->done, 1, memory_order_release);
        return;
    }
    e->send(e, (self + 1) % e->n, m, true);
}

static void ring_alloc_h(struct engine *e, uint32_t self, struct bmsg *m)
{
    if (m->hops == 0) {
        atomic_fetch_add_explicit(&e->done, 1, memory_order_release);
        return;
    }
    e->send(e, (self + 1) % e->n, new_msg(m->hops - 1), false);
}

/* Ping-pong: pairs (2k, 2k+1). */
static void pingpong_h(struct engine *e, uint32_t self, struct bmsg *m)
{
    if (m->hops-- == 0) {
        atomic_fetch_add_explicit(&e->done, 1, memory_order_release);
        return;
    }
    e->send(e, self ^ 1u, m, true);
}

/* Fan-in sink: counts. */
static void count_h(struct engine *e, uint32_t self, struct bmsg *m)
{
    atomic_fetch_add_explicit(&e->done, 1, memory_order_relaxed);
}

/* Fan-out: actor 0 gets "go" messages carrying how many rounds remain;
 * each round sends one message to each of actors 1..n-1 (which count). */
static void fanout_h(struct engine *e, uint32_t self, struct bmsg *m)
{
    if (self != 0) {
        atomic_fetch_add_explicit(&e->done, 1, memory_order_relaxed);
        return;
    }
    for (uint32_t i = 1; i < e->n; i++)
        e->send(e, i, new_msg(0), false);
    if (m->hops-- > 1)
        e->send(e, 0, m, true);
}

static double run_ring(bool actor, bool pooled, uint32_t n, uint32_t inflight, uint64_t hops)
{
    struct engine e = {0};
    (actor ? act_start : base_start)(&e, n, pooled ? ring_pooled_h : ring_alloc_h);
    uint64_t t0 = rc_clock_mono_ns();
    for (uint32_t i = 0; i < inflight; i++)
        e.send(&e, (uint32_t)((uint64_t)i * n / inflight), new_msg(hops), false);
    wait_done(&e, inflight);
    double s = (double)(rc_clock_mono_ns() - t0) / 1e9;
    (actor ? act_stop : base_stop)(&e);
    if (actor && g_handled != (uint64_t)inflight * (hops + 1)) {
        fprintf(stderr, "ring: handled %lu, expected %lu\n", (unsigned long)g_handled,
                (unsigned long)((uint64_t)inflight * (hops + 1)));
        abort();
    }
    return (double)inflight * (double)(hops + 1) / s;
}

static double run_pingpong(bool actor, uint32_t pairs, uint64_t hops)
{
    struct engine e = {0};
    (actor ? act_start : base_start)(&e, pairs * 2, pingpong_h);
    uint64_t t0 = rc_clock_mono_ns();
    for (uint32_t i = 0; i < pairs; i++)
        e.send(&e, 2 * i, new_msg(hops), false);
    wait_done(&e, pairs);
    double s = (double)(rc_clock_mono_ns() - t0) / 1e9;
    (actor ? act_stop : base_stop)(&e);
    return (double)pairs * (double)(hops + 1) / s;
}

struct fanin_arg {
    struct engine *e;
    uint64_t m;
};

static void *fanin_sender(void *arg)
{
    struct fanin_arg *f = arg;
    for (uint64_t i = 0; i < f->m; i++)
        f->e->send(f->e, 0, new_msg(0), false);
    return NULL;
}

static double run_fanin(bool actor, uint32_t senders, uint64_t per)
{
    struct engine e = {0};
    (actor ? act_start : base_start)(&e, 1, count_h);
    pthread_t th[64];
    struct fanin_arg fa = {.e = &e, .m = per};
    uint64_t t0 = rc_clock_mono_ns();
    for (uint32_t i = 0; i < senders; i++)
        pthread_create(&th[i], NULL, fanin_sender, &fa);
    for (uint32_t i = 0; i < senders; i++)
        pthread_join(th[i], NULL);
    wait_done(&e, senders * per);
    double s = (double)(rc_clock_mono_ns() - t0) / 1e9;
    (actor ? act_stop : base_stop)(&e);
    return (double)(senders * per) / s;
}

static double run_fanout(bool actor, uint32_t n, uint64_t rounds)
{
    struct engine e = {0};
    (actor ? act_start : base_start)(&e, n + 1, fanout_h);
    uint64_t t0 = rc_clock_mono_ns();
    e.send(&e, 0, new_msg(rounds), false);
    wait_done(&e, n * rounds);
    double s = (double)(rc_clock_mono_ns() - t0) / 1e9;
    (actor ? act_stop : base_stop)(&e);
    return (double)(n * rounds) / s;
}

/* ---- Idle, spawn/stop and memory ---- */

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void bench_idle(void)
{
    struct rc_actor_system *sys;
    struct rc_actor_system_opts o = {.workers = 8};
    rc_actor_system_new(&sys, &o);
    rc_actor_system_start(sys);
    usleep(100000);
    double c0 = cpu_s();
    usleep(1000000);
    double used = cpu_s() - c0;
    rc_actor_system_stop(sys);
    rc_actor_system_free(sys);
    printf("%-38s %12.2f ms CPU in 1 s\n", "idle system, 8 workers", used * 1e3);
}

static void nop_behaviour(struct rc_actor *self, void *state, struct rc_msg *msg) {}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void bench_spawn_memory(uint32_t n)
{
    struct rc_actor_system *sys;
    struct rc_actor_system_opts o = {.workers = g_workers};
    rc_actor_system_new(&sys, &o);
    rc_actor_system_start(sys);
    struct rc_actor **a = malloc(sizeof(*a) * n);
    struct rc_alloc_stats s0 = {0}, s1 = {0};
    int have_stats = rc_alloc_stats(&s0) == RC_OK;
    long rss0 = rss_kib();
    uint64_t t0 = rc_clock_mono_ns();
    for (uint32_t i = 0; i < n; i++)
        if (rc_actor_spawn(sys, nop_behaviour, NULL, NULL, NULL, &a[i]) != RC_OK)
            abort();
    uint64_t t1 = rc_clock_mono_ns();
    long rss1 = rss_kib();
    if (have_stats)
        rc_alloc_stats(&s1);
    for (uint32_t i = 0; i < n; i++)
        rc_actor_stop(a[i], 0);
    struct rc_actor_system_stats st;
    do {
        rc_actor_system_stats(sys, &st);
    } while (st.actors_live > 0 && (usleep(100), 1));
    uint64_t t2 = rc_clock_mono_ns();
    for (uint32_t i = 0; i < n; i++)
        rc_actor_release(a[i]);
    free(a);
    rc_actor_system_stop(sys);
    rc_actor_system_free(sys);
    printf("%-38s %12.0f ns\n", "spawn per actor", (double)(t1 - t0) / n);
    printf("%-38s %12.0f ns\n", "stop per actor (until fini done)", (double)(t2 - t1) / n);
    printf("%-38s %12zu B\n", "sizeof(rc_actor), incl. 24 B mailbox stub", sizeof(struct rc_actor));
    printf("%-38s %12.0f B  (%u actors)\n", "RSS delta per idle actor",
           (double)(rss1 - rss0) * 1024.0 / n, n);
    if (have_stats)
        printf("%-38s %12.0f B\n", "jemalloc allocated per idle actor",
               (double)(s1.allocated - s0.allocated) / n);
}

/* ---- Timers ---- */

struct tl_state {
    struct rc_timer *t;
    uint64_t *due_ns; /* per timer */
    _Atomic uint64_t *fired;
    uint32_t *hist; /* lateness histogram in 0.1 ms buckets, owner-local */
    uint64_t max_late_ns;
    uint64_t early;
};

#define HIST_BUCKETS 2000 /* 0 .. 200 ms in 0.1 ms */

static void tl_behaviour(struct rc_actor *self, void *state, struct rc_msg *msg)
{
    struct tl_state *s = state;
    if (msg->type != RC_MSG_TIMER)
        return;
    struct rc_msg_timer *m = (struct rc_msg_timer *)msg;
    uint64_t now = rc_clock_mono_ns();
    uint64_t due = s->due_ns[m->arg];
    if (now < due) {
        s->early++;
    } else {
        uint64_t late = now - due;
        if (late > s->max_late_ns)
            s->max_late_ns = late;
        uint64_t b = late / 100000u;
        s->hist[b < HIST_BUCKETS ? b : HIST_BUCKETS - 1]++;
    }
    atomic_fetch_add_explicit(s->fired, 1, memory_order_relaxed);
}

static void bench_timers(uint32_t ntimers)
{
    struct rc_actor_system *sys;
    struct rc_actor_system_opts o = {.workers = g_workers};
    rc_actor_system_new(&sys, &o);
    rc_actor_system_start(sys);
    enum { OWNERS = 1000 };
    struct rc_actor *owners[OWNERS];
    static struct tl_state st[OWNERS];
    _Atomic uint64_t fired = 0;
    struct rc_timer *timers = calloc(ntimers, sizeof(*timers));
    uint64_t *due = calloc(ntimers, sizeof(*due));
    uint32_t *hist = calloc((size_t)OWNERS * HIST_BUCKETS, sizeof(uint32_t));
    for (int i = 0; i < OWNERS; i++) {
        st[i] = (struct tl_state){
            .t = timers, .due_ns = due, .fired = &fired, .hist = hist + (size_t)i * HIST_BUCKETS};
        rc_actor_spawn(sys, tl_behaviour, &st[i], NULL, NULL, &owners[i]);
    }
    for (uint32_t i = 0; i < ntimers; i++)
        rc_timer_init(&timers[i], owners[i % OWNERS], i);

    /* arm + cancel, single thread, with the timers of the next phase not
     * yet armed (an empty wheel) and again with them armed (a full one). */
    enum { REPS = 1000000 };
    uint64_t t0 = rc_clock_mono_ns();
    for (int r = 0; r < REPS; r++) {
        rc_timer_arm(sys, &timers[0], 5000 + (uint64_t)(r & 1023));
        rc_timer_cancel(sys, &timers[0]);
    }
    double empty_ns = (double)(rc_clock_mono_ns() - t0) / REPS;

    /* Arm all, due over 500..5500 ms (arming takes well under 500 ms, so
     * the firing is measured, not the arming; 200,000 expiries a second). */
    uint64_t seed = 88172645463325252ull;
    uint64_t a0 = rc_clock_mono_ns();
    for (uint32_t i = 1; i < ntimers; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        uint64_t d = 500 + seed % (g_quick ? 1000 : 5000);
        due[i] = rc_clock_mono_ns() + d * 1000000u;
        rc_timer_arm(sys, &timers[i], d);
    }
    double arm_ns = (double)(rc_clock_mono_ns() - a0) / (ntimers - 1);
    t0 = rc_clock_mono_ns();
    for (int r = 0; r < REPS / 10; r++) {
        rc_timer_arm(sys, &timers[0], 5000 + (uint64_t)(r & 1023));
        rc_timer_cancel(sys, &timers[0]);
    }
    double full_ns = (double)(rc_clock_mono_ns() - t0) / (REPS / 10);
    double cpu0 = cpu_s();
    uint64_t w0 = rc_clock_mono_ns();
    while (atomic_load_explicit(&fired, memory_order_relaxed) < ntimers - 1)
        usleep(1000);
    double fire_cpu = cpu_s() - cpu0;
    double fire_wall = (double)(rc_clock_mono_ns() - w0) / 1e9;
    rc_actor_system_stop(sys);
    uint64_t total = 0, early = 0, maxl = 0;
    uint64_t agg[HIST_BUCKETS] = {0};
    for (int i = 0; i < OWNERS; i++) {
        early += st[i].early;
        if (st[i].max_late_ns > maxl)
            maxl = st[i].max_late_ns;
        for (int b = 0; b < HIST_BUCKETS; b++) {
            agg[b] += st[i].hist[b];
            total += st[i].hist[b];
        }
    }
    double pct[] = {50, 90, 99, 99.9};
    double at[4] = {0};
    uint64_t acc = 0;
    int p = 0;
    for (int b = 0; b < HIST_BUCKETS && p < 4; b++) {
        acc += agg[b];
        while (p < 4 && acc >= (uint64_t)(pct[p] / 100.0 * (double)total)) {
            at[p] = (b + 1) * 0.1;
            p++;
        }
    }
    printf("%-38s %12.1f ns\n", "timer arm+cancel (empty wheel)", empty_ns);
    printf("%-38s %12.1f ns  (%u armed)\n", "timer arm+cancel (full wheel)", full_ns, ntimers);
    printf("%-38s %12.1f ns\n", "timer arm (filling the wheel)", arm_ns);
    printf("%-38s %12.0f ns  (%.2f s CPU over %.2f s)\n", "CPU per timer fired (thread+workers)",
           fire_cpu * 1e9 / (ntimers - 1), fire_cpu, fire_wall);
    printf("%-38s %12lu     (of %lu; must be 0)\n", "timers fired early", (unsigned long)early,
           (unsigned long)total);
    printf("%-38s p50 <= %.1f ms, p90 <= %.1f, p99 <= %.1f, p99.9 <= %.1f, max %.2f ms\n",
           "timer lateness (real time)", at[0], at[1], at[2], at[3], (double)maxl / 1e6);
    for (int i = 0; i < OWNERS; i++)
        rc_actor_release(owners[i]);
    rc_actor_system_free(sys);
    free(timers);
    free(due);
    free(hist);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            g_quick = 1;
        else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
            g_workers = (uint32_t)atoi(argv[++i]);
    }
    uint64_t k = g_quick ? 1 : 5;
    printf("bench_actors: %u workers, allocator %s%s\n\n", g_workers, rc_alloc_backend(),
           g_quick ? " (quick)" : "");
#define ROW(name, expr)                                                                            \
    do {                                                                                           \
        bool actor = true;                                                                         \
        double a_ = (expr);                                                                        \
        uint64_t steals_ = g_steals, share_ = g_min_share;                                         \
        actor = false;                                                                             \
        double b_ = (expr);                                                                        \
        printf("%-38s %10.2f M/s   baseline %8.2f M/s   x%-5.1f steals %-7lu min share %lu%%\n",   \
               name, a_ / 1e6, b_ / 1e6, a_ / b_, (unsigned long)steals_,                          \
               (unsigned long)(share_ / 10));                                                      \
        fflush(stdout);                                                                            \
    } while (0)
    printf("%-38s %14s   %17s\n", "messages/s", "rc_actor", "mutex+condvar");
    ROW("ring 1000 actors, pooled (keep+resend)", run_ring(actor, true, 1000, 10000, 400 * k));
    ROW("ring 1000 actors, alloc+free per msg", run_ring(actor, false, 1000, 10000, 200 * k));
    ROW("ring 1000 actors, 1 msg each, pooled", run_ring(actor, true, 1000, 1000, 2000 * k));
    ROW("ping-pong, 1 pair", run_pingpong(actor, 1, 200000 * k));
    ROW("ping-pong, 100 pairs", run_pingpong(actor, 100, 10000 * k));
    ROW("fan-in, 4 threads -> 1 actor", run_fanin(actor, 4, 250000 * k));
    ROW("fan-out, 1 actor -> 1000 actors", run_fanout(actor, 1000, 200 * k));
    printf("\n");
    bench_idle();
    bench_spawn_memory(100000);
    printf("\n");
    bench_timers(g_quick ? 100000 : 1000000);
    return 0;
}
