/*
 * Tests of rc_actor: delivery (no loss, no duplicates, per-sender order,
 * one thread at a time), fairness, backpressure, keep/resend, stop and
 * monitors, system stop with work pending, and an idle system's CPU use.
 * Every test builds its own system inside the test body (Criterion forks).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include "actor_tutil.h"
#include "rc_actor.h"
#include "rc_alloc.h"
#include "rc_clock.h"
#include "rc_error.h"

static struct rc_actor_system *new_sys(uint32_t workers, uint32_t batch)
{
    return tact_sys_new(&(struct rc_actor_system_opts){.workers = workers, .batch = batch});
}

static struct rc_actor_system *start_sys(uint32_t workers, uint32_t batch)
{
    return tact_sys_start(&(struct rc_actor_system_opts){.workers = workers, .batch = batch});
}

/* ---- delivery ---- */

#define P 4
#define K 8

struct seq_msg {
    struct rc_msg hdr;
    uint32_t producer;
    uint64_t seq;
};

struct counter_state {
    _Atomic int guard; /* >0 while a thread runs the behaviour */
    uint64_t count;    /* owner only */
    uint64_t last[P];  /* last seq + 1 per producer; owner only */
    bool order_broken; /* owner only */
    bool overlap;      /* set if two threads ever ran at once */
    _Atomic uint64_t *total;
};

static void counter_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct counter_state *s = st;
    if (atomic_fetch_add(&s->guard, 1) != 0)
        s->overlap = true;
    struct seq_msg *m = (struct seq_msg *)msg;
    if (m->seq + 1 <= s->last[m->producer])
        s->order_broken = true;
    s->last[m->producer] = m->seq + 1;
    s->count++;
    atomic_fetch_add(s->total, 1);
    atomic_fetch_sub(&s->guard, 1);
}

struct producer {
    pthread_t th;
    uint32_t id;
    uint64_t m;
    struct rc_actor **actors;
};

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    for (uint64_t i = 0; i < p->m; i++) {
        /* Spread a producer's messages over the actors; per (producer,
         * actor) the seq must arrive increasing. */
        struct seq_msg *m = (struct seq_msg *)rc_msg_new(sizeof(*m), 1);
        cr_assert_not_null(m);
        m->producer = p->id;
        m->seq = i;
        cr_assert_eq(rc_actor_send(p->actors[(i * 7 + p->id) % K], &m->hdr), RC_OK);
    }
    return NULL;
}

/* K counter actors on sys, their states zeroed, each adding to *total. */
static void spawn_counters(struct rc_actor_system *sys, struct counter_state st[K],
                           struct rc_actor *actors[K], _Atomic uint64_t *total)
{
    memset(st, 0, K * sizeof(*st));
    for (int k = 0; k < K; k++) {
        st[k].total = total;
        cr_assert_eq(rc_actor_spawn(sys, counter_fn, &st[k], NULL, NULL, &actors[k]), RC_OK);
    }
}

/* P producer threads running fn, m messages each over the K actors;
 * returns once they have all sent. */
static void run_producers(struct rc_actor **actors, uint64_t m, void *(*fn)(void *))
{
    struct producer prod[P];
    for (uint32_t i = 0; i < P; i++) {
        prod[i] = (struct producer){.id = i, .m = m, .actors = actors};
        pthread_create(&prod[i].th, NULL, fn, &prod[i]);
    }
    for (int i = 0; i < P; i++)
        pthread_join(prod[i].th, NULL);
}

/* After the stop: each counter ran on one thread at a time, saw every
 * producer's messages in order, and they handled `want` in all. */
static void expect_counted(const struct counter_state st[K], uint64_t want)
{
    uint64_t sum = 0;
    for (int k = 0; k < K; k++) {
        cr_assert(!st[k].overlap, "actor %d ran on two threads at once", k);
        cr_assert(!st[k].order_broken, "actor %d saw a producer's messages out of order", k);
        sum += st[k].count;
    }
    cr_assert_eq(sum, want, "no loss, no duplicates");
}

static void run_counts(uint32_t workers, uint32_t batch, uint64_t m)
{
    struct rc_actor_system *sys = start_sys(workers, batch);
    _Atomic uint64_t total = 0;
    static struct counter_state st[K];
    struct rc_actor *actors[K];
    spawn_counters(sys, st, actors, &total);
    run_producers(actors, m, producer_main);
    cr_assert(tact_wait_u64(&total, P * m, 20000), "handled %lu of %lu",
              (unsigned long)atomic_load(&total), (unsigned long)(P * m));
    rc_actor_system_stop(sys);
    expect_counted(st, P * m);
    cr_assert_eq(atomic_load(&total), P * m);
    struct rc_actor_system_stats stats;
    rc_actor_system_stats(sys, &stats);
    cr_assert_eq(stats.messages_handled, P * m);
    cr_assert_eq(stats.actors_live, 0);
    for (int k = 0; k < K; k++)
        rc_actor_release(actors[k]);
    rc_actor_system_free(sys);
}

Test(actor, exact_counts_and_order_two_workers, .timeout = 60)
{
    run_counts(2, 64, 20000);
}

Test(actor, exact_counts_and_order_small_batch_many_workers, .timeout = 60)
{
    run_counts(4, 1, 5000);
}

/* Actors sending to actors: a chain of hops from worker threads, checked
 * for exact counts and single-threadedness. */
struct hop_msg {
    struct rc_msg hdr;
    uint32_t hops;
};

struct ring_state {
    _Atomic int guard;
    bool overlap;
    struct rc_actor *next;
    _Atomic uint64_t *arrived; /* messages that finished their hops */
    _Atomic uint64_t *handled;
};

static void ring_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct ring_state *s = st;
    if (atomic_fetch_add(&s->guard, 1) != 0)
        s->overlap = true;
    atomic_fetch_add(s->handled, 1);
    struct hop_msg *m = (struct hop_msg *)msg;
    if (m->hops == 0) {
        atomic_fetch_add(s->arrived, 1);
    } else {
        m->hops--;
        rc_msg_keep(msg); /* pooled: the same message goes round */
        cr_assert_eq(rc_actor_send(s->next, msg), RC_OK);
    }
    atomic_fetch_sub(&s->guard, 1);
}

static int frees;
static void count_free(struct rc_msg *m)
{
    __atomic_add_fetch(&frees, 1, __ATOMIC_RELAXED);
    rc_free(m);
}

Test(actor, ring_with_kept_messages)
{
    enum { N = 50, MSGS = 20, HOPS = 2000 };
    struct rc_actor_system *sys = start_sys(2, 8);
    _Atomic uint64_t arrived = 0, handled = 0;
    static struct ring_state st[N];
    memset(st, 0, sizeof(st));
    struct rc_actor *a[N];
    for (int i = 0; i < N; i++) {
        st[i].arrived = &arrived;
        st[i].handled = &handled;
        cr_assert_eq(rc_actor_spawn(sys, ring_fn, &st[i], NULL, NULL, &a[i]), RC_OK);
    }
    for (int i = 0; i < N; i++)
        st[i].next = a[(i + 1) % N];
    frees = 0;
    for (int i = 0; i < MSGS; i++) {
        struct hop_msg *m = (struct hop_msg *)rc_msg_new(sizeof(*m), 1);
        m->hdr.free_fn = count_free;
        m->hops = HOPS;
        cr_assert_eq(rc_actor_send(a[(i * 13) % N], &m->hdr), RC_OK);
    }
    cr_assert(tact_wait_u64(&arrived, MSGS, 20000));
    rc_actor_system_stop(sys);
    cr_assert_eq(atomic_load(&handled), (uint64_t)MSGS * (HOPS + 1));
    cr_assert_eq(__atomic_load_n(&frees, __ATOMIC_RELAXED), MSGS, "each message freed once");
    for (int i = 0; i < N; i++) {
        cr_assert(!st[i].overlap);
        rc_actor_release(a[i]);
    }
    rc_actor_system_free(sys);
}

/* The batch API: many actors, one flush; exact counts; closed actors
 * refuse and the caller keeps the message. */
Test(actor, send_batch_delivers_everything)
{
    struct rc_actor_system *sys = start_sys(2, 16);
    _Atomic uint64_t total = 0;
    static struct counter_state st[K];
    struct rc_actor *actors[K];
    spawn_counters(sys, st, actors, &total);
    uint64_t sent = 0;
    for (int round = 0; round < 200; round++) {
        struct rc_send_batch b = RC_SEND_BATCH_INIT;
        for (int i = 0; i < 50; i++) {
            struct seq_msg *m = (struct seq_msg *)rc_msg_new(sizeof(*m), 1);
            m->producer = 0;
            m->seq = sent++;
            cr_assert_eq(rc_send_batch_add(&b, actors[(round + i) % K], &m->hdr), RC_OK);
        }
        rc_send_batch_flush(&b);
        rc_send_batch_flush(&b); /* empty: nothing */
    }
    cr_assert(tact_wait_u64(&total, sent, 10000));
    rc_actor_stop(actors[0], 0);
    uint64_t end = rc_clock_mono_ms() + 5000;
    while (!rc_actor_stopped(actors[0]) && rc_clock_mono_ms() < end)
        rc_clock_sleep_ms(1);
    struct rc_send_batch b = RC_SEND_BATCH_INIT;
    struct rc_msg *m = rc_msg_new(sizeof(struct seq_msg), 1);
    cr_assert_eq(rc_send_batch_add(&b, actors[0], m), RC_ECLOSED);
    rc_msg_free(m);
    rc_send_batch_flush(&b);
    rc_actor_system_stop(sys);
    for (int k = 0; k < K; k++) {
        cr_assert(!st[k].order_broken);
        cr_assert(!st[k].overlap);
        rc_actor_release(actors[k]);
    }
    cr_assert_eq(atomic_load(&total), sent);
    rc_actor_system_free(sys);
}

/* One behaviour wakes more actors than a local run queue holds (1024):
 * the overflow goes through the inject queue; all are handled once. */
struct fan_state {
    struct rc_actor **targets;
    int n;
};

static void fan_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct fan_state *s = st;
    for (int i = 0; i < s->n; i++)
        cr_assert_eq(rc_actor_send(s->targets[i], rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
}

static void counter_only_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    atomic_fetch_add((_Atomic uint64_t *)st, 1);
}

Test(actor, local_queue_overflow)
{
    enum { N = 5000 };
    for (uint32_t workers = 1; workers <= 2; workers++) {
        struct rc_actor_system *sys = start_sys(workers, 0);
        _Atomic uint64_t handled = 0;
        struct rc_actor **t = rc_calloc(N, sizeof(*t));
        for (int i = 0; i < N; i++)
            cr_assert_eq(rc_actor_spawn(sys, counter_only_fn, &handled, NULL, NULL, &t[i]), RC_OK);
        struct fan_state fs = {.targets = t, .n = N};
        struct rc_actor *fan;
        cr_assert_eq(rc_actor_spawn(sys, fan_fn, &fs, NULL, NULL, &fan), RC_OK);
        for (int r = 0; r < 3; r++)
            cr_assert_eq(rc_actor_send(fan, rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
        cr_assert(tact_wait_u64(&handled, 3 * N, 10000));
        rc_clock_sleep_ms(10);
        cr_assert_eq(atomic_load(&handled), 3 * N);
        rc_actor_system_stop(sys);
        for (int i = 0; i < N; i++)
            rc_actor_release(t[i]);
        rc_actor_release(fan);
        rc_free(t);
        rc_actor_system_free(sys);
    }
}

/* ---- fairness ---- */

struct fair_state {
    _Atomic uint64_t *a_count; /* messages A has handled */
    _Atomic uint64_t *b_seen;  /* A's count when B ran, + 1 */
    struct rc_actor *b;
    uint64_t flood_until; /* A re-sends to itself until it handled this many */
    uint64_t poke_at;     /* A pokes B after handling this many */
};

static void fair_a(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct fair_state *s = st;
    uint64_t n = atomic_fetch_add(s->a_count, 1) + 1;
    if (s->poke_at && n == s->poke_at)
        cr_assert_eq(rc_actor_send(s->b, rc_msg_new(sizeof(struct rc_msg), 2)), RC_OK);
    if (n < s->flood_until) {
        rc_msg_keep(msg);
        cr_assert_eq(rc_actor_send(self, msg), RC_OK);
    }
}

static void fair_b(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct fair_state *s = st;
    atomic_store(s->b_seen, atomic_load(s->a_count) + 1);
}

/* Messages queued for A before B's one: B runs after at most one batch of A. */
Test(actor, fairness_preloaded_flood)
{
    enum { BATCH = 16 };
    for (uint32_t workers = 1; workers <= 2; workers++) {
        struct rc_actor_system *sys = new_sys(workers, BATCH);
        _Atomic uint64_t a_count = 0, b_seen = 0;
        struct fair_state s = {.a_count = &a_count, .b_seen = &b_seen};
        struct rc_actor *a, *b;
        cr_assert_eq(rc_actor_spawn(sys, fair_a, &s, NULL, NULL, &a), RC_OK);
        cr_assert_eq(rc_actor_spawn(sys, fair_b, &s, NULL, NULL, &b), RC_OK);
        for (int i = 0; i < 1000; i++)
            cr_assert_eq(rc_actor_send(a, rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
        cr_assert_eq(rc_actor_send(b, rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
        cr_assert_eq(rc_actor_system_start(sys), RC_OK);
        cr_assert(tact_wait_u64(&b_seen, 1, 5000));
        cr_assert(tact_wait_u64(&a_count, 1000, 5000));
        uint64_t at = atomic_load(&b_seen) - 1;
        /* B is queued ahead of A's second turn.  With one worker that is
         * exact; with two, B may run on the other worker while A's second
         * turn runs, so B can see up to two batches. */
        uint64_t bound = workers == 1 ? BATCH : 2 * BATCH;
        cr_assert_leq(at, bound, "B ran after A handled %lu (workers %u)", (unsigned long)at,
                      workers);
        rc_actor_system_stop(sys);
        rc_actor_release(a);
        rc_actor_release(b);
        rc_actor_system_free(sys);
    }
}

/* A floods itself from a worker and wakes B mid-flood: B runs within one
 * batch of A after being woken. */
Test(actor, fairness_self_flood)
{
    enum { BATCH = 32, POKE = 500 };
    for (uint32_t workers = 1; workers <= 2; workers++) {
        struct rc_actor_system *sys = start_sys(workers, BATCH);
        _Atomic uint64_t a_count = 0, b_seen = 0;
        struct fair_state s = {
            .a_count = &a_count, .b_seen = &b_seen, .flood_until = 20000, .poke_at = POKE};
        struct rc_actor *a, *b;
        cr_assert_eq(rc_actor_spawn(sys, fair_b, &s, NULL, NULL, &b), RC_OK);
        s.b = b;
        cr_assert_eq(rc_actor_spawn(sys, fair_a, &s, NULL, NULL, &a), RC_OK);
        /* Several messages in A's mailbox so each turn is a full batch. */
        for (int i = 0; i < 4 * BATCH; i++)
            cr_assert_eq(rc_actor_send(a, rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
        cr_assert(tact_wait_u64(&b_seen, 1, 5000));
        uint64_t at = atomic_load(&b_seen) - 1;
        cr_assert_geq(at, POKE);
        /* B is queued ahead of A's next turn (as above: one more concurrent
         * batch is possible with two workers). */
        uint64_t bound = POKE + (workers == 1 ? BATCH : 2 * BATCH);
        cr_assert_leq(at, bound, "B ran after A handled %lu (workers %u)", (unsigned long)at,
                      workers);
        rc_actor_system_stop(sys);
        rc_actor_release(a);
        rc_actor_release(b);
        rc_actor_system_free(sys);
    }
}

/* ---- backpressure ---- */

static void nop_fn(struct rc_actor *self, void *st, struct rc_msg *msg) {}

static void fini_counting(void *st, int reason)
{
    (void)reason;
    atomic_fetch_add_explicit((_Atomic int *)st, 1, memory_order_relaxed);
}

/* Actors share their behaviour, fini and name through one interned record:
 * every combination must keep its own name and fini. */
Test(actor, same_behaviour_keeps_each_actors_name_and_fini)
{
    struct rc_actor_system *sys = new_sys(1, 0);
    static _Atomic int finis;
    struct rc_actor *a[4];
    struct rc_actor_opts oa = {.name = "alpha"}, ob = {.name = "beta"};
    cr_assert_eq(rc_actor_spawn(sys, nop_fn, &finis, fini_counting, &oa, &a[0]), RC_OK);
    cr_assert_eq(rc_actor_spawn(sys, nop_fn, &finis, fini_counting, &ob, &a[1]), RC_OK);
    cr_assert_eq(rc_actor_spawn(sys, nop_fn, &finis, NULL, &oa, &a[2]), RC_OK);
    cr_assert_eq(rc_actor_spawn(sys, nop_fn, &finis, fini_counting, &oa, &a[3]), RC_OK);
    cr_assert_str_eq(rc_actor_name(a[0]), "alpha");
    cr_assert_str_eq(rc_actor_name(a[1]), "beta");
    cr_assert_str_eq(rc_actor_name(a[2]), "alpha");
    cr_assert_str_eq(rc_actor_name(a[3]), "alpha");
    cr_assert_eq(rc_actor_system_start(sys), RC_OK);
    for (int i = 0; i < 4; i++)
        rc_actor_stop(a[i], 0);
    uint64_t end = rc_clock_mono_ms() + 5000;
    while (atomic_load(&finis) < 3 && rc_clock_mono_ms() < end)
        rc_clock_sleep_ms(1);
    rc_actor_system_stop(sys);
    cr_assert_eq(atomic_load(&finis), 3, "the actor spawned without fini ran one");
    for (int i = 0; i < 4; i++)
        rc_actor_release(a[i]);
    rc_actor_system_free(sys);
}

Test(actor, try_send_refuses_over_limit)
{
    struct rc_actor_system *sys = new_sys(1, 0);
    struct rc_actor *a;
    struct rc_actor_opts o = {.mailbox_limit = 10, .name = "limited"};
    cr_assert_eq(rc_actor_spawn(sys, nop_fn, NULL, NULL, &o, &a), RC_OK);
    cr_assert_str_eq(rc_actor_name(a), "limited");
    for (int i = 0; i < 10; i++)
        cr_assert_eq(rc_actor_try_send(a, rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
    cr_assert(rc_actor_overloaded(a));
    cr_assert_eq(rc_actor_mailbox_len(a), 10);
    struct rc_msg *m = rc_msg_new(sizeof(struct rc_msg), 1);
    cr_assert_eq(rc_actor_try_send(a, m), RC_EOVERLOAD);
    cr_assert_eq(rc_actor_send(a, m), RC_OK, "send ignores the limit");
    cr_assert_eq(rc_actor_mailbox_len(a), 11);
    struct rc_actor_system_stats st;
    rc_actor_system_stats(sys, &st);
    cr_assert_eq(st.overloads, 1);
    cr_assert_eq(rc_actor_system_start(sys), RC_OK);
    uint64_t end = rc_clock_mono_ms() + 5000;
    while (rc_actor_mailbox_len(a) > 0 && rc_clock_mono_ms() < end)
        rc_clock_sleep_ms(1);
    cr_assert_eq(rc_actor_mailbox_len(a), 0);
    cr_assert(!rc_actor_overloaded(a));
    tact_sys_end(sys, a);
}

/* ---- stop and monitors ---- */

struct stop_state {
    _Atomic uint64_t handled;
    _Atomic int fini_reason;
    _Atomic int fini_calls;
    _Atomic int fini_on_worker; /* fini ran on a thread other than the test's */
    pthread_t test_thread;
};

static void stop_fini(void *st, int reason)
{
    struct stop_state *s = st;
    atomic_store(&s->fini_reason, reason);
    atomic_store(&s->fini_on_worker, !pthread_equal(pthread_self(), s->test_thread));
    atomic_fetch_add(&s->fini_calls, 1);
}

static void stop_count_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct stop_state *s = st;
    atomic_fetch_add(&s->handled, 1);
    rc_clock_sleep_ms(1);
}

static struct rc_actor *spawn_stop_counter(struct rc_actor_system *sys, struct stop_state *s)
{
    struct rc_actor *a;
    cr_assert_eq(rc_actor_spawn(sys, stop_count_fn, s, stop_fini, NULL, &a), RC_OK);
    return a;
}

/* Queues n messages on a whose frees count in `frees`. */
static void send_counted(struct rc_actor *a, int n)
{
    for (int i = 0; i < n; i++) {
        struct rc_msg *m = rc_msg_new(sizeof(struct rc_msg), 1);
        m->free_fn = count_free;
        cr_assert_eq(rc_actor_send(a, m), RC_OK);
    }
}

/* A stop counter with n messages queued whose frees count from 0. */
static struct rc_actor *spawn_stop_counter_with_queued(struct rc_actor_system *sys,
                                                       struct stop_state *s, int n)
{
    struct rc_actor *a = spawn_stop_counter(sys, s);
    frees = 0;
    send_counted(a, n);
    return a;
}

Test(actor, stop_drops_queued_messages_and_runs_fini)
{
    /* batch 4: the drain of 1,000 messages spans several turns (16 batches
     * per turn). */
    struct rc_actor_system *sys = new_sys(2, 4);
    struct stop_state s = {.test_thread = pthread_self()};
    struct rc_actor *a = spawn_stop_counter_with_queued(sys, &s, 1000);
    rc_actor_stop(a, -77);
    rc_actor_stop(a, -78); /* the first reason wins */
    cr_assert_eq(rc_actor_system_start(sys), RC_OK);
    uint64_t end = rc_clock_mono_ms() + 5000;
    while (atomic_load(&s.fini_calls) == 0 && rc_clock_mono_ms() < end)
        rc_clock_sleep_ms(1);
    cr_assert_eq(atomic_load(&s.fini_calls), 1);
    cr_assert_eq(atomic_load(&s.fini_reason), -77);
    cr_assert(atomic_load(&s.fini_on_worker));
    cr_assert_eq(atomic_load(&s.handled), 0, "stop comes before queued messages");
    cr_assert_eq(__atomic_load_n(&frees, __ATOMIC_RELAXED), 1000, "every queued message freed");
    cr_assert(rc_actor_stopped(a));
    struct rc_msg *m = rc_msg_new(sizeof(struct rc_msg), 1);
    cr_assert_eq(rc_actor_send(a, m), RC_ECLOSED);
    rc_msg_free(m); /* the caller kept it */
    rc_actor_system_stop(sys);
    cr_assert_eq(atomic_load(&s.fini_calls), 1);
    rc_actor_release(a);
    rc_actor_system_free(sys);
}

/* Senders race a stop: every message send accepted is handled or freed
 * exactly once, every refused one stays with its sender. */
struct race_sender {
    pthread_t th;
    struct rc_actor *to;
    _Atomic uint64_t accepted;
};

static _Atomic uint64_t race_freed, race_handled;

static void race_free(struct rc_msg *m)
{
    atomic_fetch_add(&race_freed, 1);
    rc_free(m);
}

static void race_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    atomic_fetch_add(&race_handled, 1);
}

static void *race_main(void *arg)
{
    struct race_sender *r = arg;
    for (int i = 0; i < 200000; i++) {
        struct rc_msg *m = rc_msg_new(sizeof(struct rc_msg), 1);
        m->free_fn = race_free;
        if (rc_actor_send(r->to, m) != RC_OK) {
            rc_free(m); /* ours: not counted */
            break;
        }
        atomic_fetch_add(&r->accepted, 1);
    }
    return NULL;
}

Test(actor, send_racing_stop_never_leaks, .timeout = 60)
{
    for (int round = 0; round < 5; round++) {
        atomic_store(&race_freed, 0);
        atomic_store(&race_handled, 0);
        struct rc_actor_system *sys = start_sys(2, 0);
        struct rc_actor *a;
        cr_assert_eq(rc_actor_spawn(sys, race_fn, NULL, NULL, NULL, &a), RC_OK);
        struct race_sender r[3];
        for (int i = 0; i < 3; i++) {
            r[i] = (struct race_sender){.to = a};
            pthread_create(&r[i].th, NULL, race_main, &r[i]);
        }
        rc_clock_sleep_ms(2 + round * 3);
        rc_actor_stop(a, 1);
        uint64_t accepted = 0;
        for (int i = 0; i < 3; i++) {
            pthread_join(r[i].th, NULL);
            accepted += atomic_load(&r[i].accepted);
        }
        rc_actor_system_stop(sys);
        /* Handled messages are freed by the runtime too (through free_fn). */
        cr_assert_eq(atomic_load(&race_freed), accepted, "freed %lu, accepted %lu",
                     (unsigned long)atomic_load(&race_freed), (unsigned long)accepted);
        cr_assert_leq(atomic_load(&race_handled), accepted);
        rc_actor_release(a);
        rc_actor_system_free(sys);
    }
}

struct watch_state {
    _Atomic int downs;
    _Atomic int reason;
    _Atomic uint64_t tag;
    struct rc_actor *_Atomic who;
};

static void watch_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct watch_state *s = st;
    if (msg->type != RC_MSG_DOWN)
        return;
    struct rc_msg_down *d = (struct rc_msg_down *)msg;
    atomic_store(&s->reason, d->reason);
    atomic_store(&s->tag, d->tag);
    atomic_store(&s->who, d->actor);
    atomic_fetch_add(&s->downs, 1);
}

Test(actor, monitor_gets_down_with_reason)
{
    struct rc_actor_system *sys = start_sys(2, 0);
    struct watch_state ws = {0};
    struct stop_state ts = {.test_thread = pthread_self()};
    struct rc_actor *w, *t;
    cr_assert_eq(rc_actor_spawn(sys, watch_fn, &ws, NULL, NULL, &w), RC_OK);
    cr_assert_eq(rc_actor_spawn(sys, stop_count_fn, &ts, stop_fini, NULL, &t), RC_OK);
    cr_assert_eq(rc_actor_monitor(w, t, 99), RC_OK);
    rc_actor_stop(t, -42);
    cr_assert(tact_wait_int(&ws.downs, 1, 5000));
    cr_assert_eq(atomic_load(&ws.reason), -42);
    cr_assert_eq(atomic_load(&ws.tag), 99);
    cr_assert_eq(atomic_load(&ws.who), t);
    cr_assert_eq(atomic_load(&ts.fini_calls), 1, "fini runs before monitors hear");
    /* Monitoring a stopped actor: DOWN at once. */
    cr_assert_eq(rc_actor_monitor(w, t, 7), RC_OK);
    cr_assert(tact_wait_int(&ws.downs, 2, 5000));
    cr_assert_eq(atomic_load(&ws.tag), 7);
    cr_assert_eq(atomic_load(&ws.reason), -42);
    rc_clock_sleep_ms(20);
    cr_assert_eq(atomic_load(&ws.downs), 2, "exactly one DOWN per monitor");
    rc_actor_system_stop(sys);
    rc_actor_release(w);
    rc_actor_release(t);
    rc_actor_system_free(sys);
}

/* A self-stop from inside the behaviour. */
static void self_stop_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct stop_state *s = st;
    atomic_fetch_add(&s->handled, 1);
    if (msg->type == 9)
        rc_actor_stop(self, 5);
}

Test(actor, self_stop_finishes_current_message_only)
{
    struct rc_actor_system *sys = new_sys(1, 0);
    struct stop_state s = {.test_thread = pthread_self()};
    struct rc_actor *a;
    cr_assert_eq(rc_actor_spawn(sys, self_stop_fn, &s, stop_fini, NULL, &a), RC_OK);
    for (int i = 0; i < 10; i++)
        rc_actor_send(a, rc_msg_new(sizeof(struct rc_msg), i == 3 ? 9 : 1));
    cr_assert_eq(rc_actor_system_start(sys), RC_OK);
    cr_assert(tact_wait_int(&s.fini_calls, 1, 5000));
    cr_assert_eq(atomic_load(&s.handled), 4);
    cr_assert_eq(atomic_load(&s.fini_reason), 5);
    tact_sys_end(sys, a);
}

/* ---- system stop with work pending ---- */

struct busy_state {
    struct rc_actor *peer;
    _Atomic int *finis;
};

static void busy_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct busy_state *s = st;
    /* Bounce forever between peers; when the peer is gone, drop it. */
    rc_msg_keep(msg);
    if (rc_actor_send(s->peer, msg) != RC_OK)
        rc_msg_free(msg);
}

static void busy_fini(void *st, int reason)
{
    struct busy_state *s = st;
    cr_assert_eq(reason, RC_ESHUTDOWN);
    atomic_fetch_add(s->finis, 1);
}

Test(actor, system_stop_with_work_pending_frees_everything)
{
    enum { N = 64, MSGS = 200 };
    struct rc_actor_system *sys = start_sys(2, 0);
    _Atomic int finis = 0;
    static struct busy_state st[N];
    struct rc_actor *a[N];
    for (int i = 0; i < N; i++) {
        st[i].finis = &finis;
        cr_assert_eq(rc_actor_spawn(sys, busy_fn, &st[i], busy_fini, NULL, &a[i]), RC_OK);
    }
    for (int i = 0; i < N; i++)
        st[i].peer = a[(i + 1) % N];
    frees = 0;
    for (int i = 0; i < N; i++)
        send_counted(a[i], MSGS);
    /* And some that will never run before the stop. */
    rc_clock_sleep_ms(20);
    rc_actor_system_stop(sys);
    cr_assert_eq(atomic_load(&finis), N);
    cr_assert_eq(__atomic_load_n(&frees, __ATOMIC_RELAXED), N * MSGS);
    struct rc_actor *late;
    cr_assert_eq(rc_actor_spawn(sys, nop_fn, NULL, NULL, NULL, &late), RC_ECLOSED);
    struct rc_msg *m = rc_msg_new(sizeof(struct rc_msg), 1);
    cr_assert_eq(rc_actor_send(a[0], m), RC_ECLOSED);
    rc_msg_free(m);
    rc_actor_system_stop(sys); /* twice is fine */
    rc_actor_system_free(sys);
    /* Handles outlive the system; releasing them frees them. */
    for (int i = 0; i < N; i++)
        rc_actor_release(a[i]);
}

Test(actor, stop_never_started_system)
{
    struct rc_actor_system *sys = new_sys(2, 0);
    struct stop_state s = {.test_thread = pthread_self()};
    struct rc_actor *a = spawn_stop_counter_with_queued(sys, &s, 10);
    rc_actor_system_stop(sys);
    cr_assert_eq(atomic_load(&s.fini_calls), 1);
    cr_assert_eq(atomic_load(&s.fini_reason), RC_ESHUTDOWN);
    cr_assert_eq(__atomic_load_n(&frees, __ATOMIC_RELAXED), 10);
    rc_actor_release(a);
    rc_actor_system_free(sys);
    rc_actor_system_free(NULL);
    rc_actor_release(NULL);
}

static void *stop_main(void *arg)
{
    rc_actor_system_stop(arg);
    return NULL;
}

/* Several threads stopping at once: each returns once everything stopped. */
Test(actor, concurrent_system_stops)
{
    struct rc_actor_system *sys = start_sys(2, 0);
    struct stop_state s = {.test_thread = pthread_self()};
    struct rc_actor *a = spawn_stop_counter(sys, &s);
    for (int i = 0; i < 20; i++)
        rc_actor_send(a, rc_msg_new(sizeof(struct rc_msg), 1));
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, stop_main, sys);
    rc_actor_system_stop(sys);
    cr_assert_eq(atomic_load(&s.fini_calls), 1);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(rc_actor_system_start(sys), RC_ESTATE, "a stopped system does not restart");
    rc_actor_release(a);
    rc_actor_system_free(sys);
}

/* ---- chaos: random sends, stops, monitors and spawns from many threads ---- */

enum { CH_N = 48, CH_FORWARD = 1, CH_STOP = 2, CH_MONITOR = 3, CH_SPAWN = 4 };

struct chaos_msg {
    struct rc_msg hdr;
    uint32_t hops;
    uint32_t target;
};

static _Atomic uint64_t ch_created, ch_freed, ch_finis, ch_spawned, ch_handled;
/* The table is read lock-free; a replaced actor goes to the graveyard
 * (released at the end), so a pointer read from a slot stays valid. */
static struct rc_actor *_Atomic ch_actors[CH_N];
static struct rc_actor *ch_grave[4096]; /* ch_mtx */
static size_t ch_ngrave;                /* ch_mtx */
static pthread_mutex_t ch_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct rc_actor_system *ch_sys;
static _Atomic int ch_overlap;

struct chaos_state {
    _Atomic int guard;
    uint64_t rng;
};

static void ch_free(struct rc_msg *m)
{
    atomic_fetch_add(&ch_freed, 1);
    rc_free(m);
}

static struct chaos_msg *ch_new(uint32_t type)
{
    struct chaos_msg *m = (struct chaos_msg *)rc_msg_new(sizeof(*m), type);
    m->hdr.free_fn = ch_free;
    atomic_fetch_add(&ch_created, 1);
    return m;
}

static uint32_t ch_rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return (uint32_t)(x >> 11);
}

static void ch_fini(void *st, int reason)
{
    atomic_fetch_add(&ch_finis, 1);
    rc_free(st);
}

static void ch_behaviour(struct rc_actor *self, void *st, struct rc_msg *msg);

static struct rc_actor *ch_spawn(struct rc_actor_system *sys, uint64_t seed)
{
    struct chaos_state *s = rc_calloc(1, sizeof(*s));
    s->rng = seed | 1;
    struct rc_actor *a;
    struct rc_actor_opts o = {.mailbox_limit = 256, .name = "chaos"};
    if (rc_actor_spawn(sys, ch_behaviour, s, ch_fini, &o, &a) != RC_OK) {
        rc_free(s);
        return NULL;
    }
    atomic_fetch_add(&ch_spawned, 1);
    return a;
}

/* A held actor from the table; a stopped one is replaced by a new one, so
 * the system stays busy while actors keep dying. */
static struct rc_actor *ch_pick(uint32_t r)
{
    struct rc_actor *_Atomic *slot = &ch_actors[r % CH_N];
    struct rc_actor *a = atomic_load(slot);
    if (rc_actor_stopped(a) && (r & 7) == 0) {
        pthread_mutex_lock(&ch_mtx);
        struct rc_actor *fresh = ch_ngrave < 4096 ? ch_spawn(ch_sys, r) : NULL;
        if (fresh) {
            if (atomic_compare_exchange_strong(slot, &a, fresh))
                ch_grave[ch_ngrave++] = a;
            else
                ch_grave[ch_ngrave++] = fresh; /* lost the race: bury ours */
            a = atomic_load(slot);
        }
        pthread_mutex_unlock(&ch_mtx);
    }
    return rc_actor_hold(a);
}

static void ch_behaviour(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct chaos_state *s = st;
    atomic_fetch_add(&ch_handled, 1);
    if (atomic_fetch_add(&s->guard, 1) != 0)
        atomic_store(&ch_overlap, 1);
    struct chaos_msg *m = (struct chaos_msg *)msg;
    switch (msg->type) {
    case CH_FORWARD:
        if (m->hops > 0) {
            m->hops--;
            rc_msg_keep(msg);
            struct rc_actor *to = ch_pick(ch_rnd(&s->rng));
            if (rc_actor_send(to, msg) != RC_OK)
                rc_msg_free(msg);
            rc_actor_release(to);
        }
        break;
    case CH_STOP:
        rc_actor_stop(self, (int)m->target);
        break;
    case CH_MONITOR: {
        struct rc_actor *t = ch_pick(m->target);
        rc_actor_monitor(self, t, m->target);
        rc_actor_release(t);
        break;
    }
    case CH_SPAWN: {
        struct rc_actor *a = ch_spawn(rc_actor_system_of(self), s->rng);
        if (a) {
            struct chaos_msg *f = ch_new(CH_FORWARD);
            f->hops = 5;
            if (rc_actor_send(a, &f->hdr) != RC_OK)
                rc_msg_free(&f->hdr);
            rc_actor_release(a);
        }
        break;
    }
    default: /* DOWN and others: nothing */
        break;
    }
    atomic_fetch_sub(&s->guard, 1);
}

static void *ch_thread(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15u + 7;
    uint64_t end = rc_clock_mono_ms() + 300;
    while (rc_clock_mono_ms() < end) {
        uint32_t r = ch_rnd(&rng);
        struct rc_actor *to = ch_pick(r);
        uint32_t op = (r >> 8) % 1000;
        if (op < 1 && (r >> 20) % 10 == 0) { /* 1 in 10,000: keeps most actors alive */
            rc_actor_stop(to, (int)(r % 3) - 1);
        } else if (op < 20) {
            struct rc_actor *t = ch_pick(r >> 16);
            rc_actor_monitor(to, t, r);
            rc_actor_release(t);
        } else {
            uint32_t type = op < 21   ? CH_STOP
                            : op < 60 ? CH_MONITOR
                            : op < 70 ? CH_SPAWN
                                      : CH_FORWARD;
            struct chaos_msg *m = ch_new(type);
            m->hops = r % 50;
            m->target = (r >> 12) % CH_N;
            /* Mostly try_send: the mailbox limit keeps producers from
             * outrunning the workers (as the broker does). */
            int rc = (r & 15) == 0 ? rc_actor_send(to, &m->hdr) : rc_actor_try_send(to, &m->hdr);
            if (rc != RC_OK)
                rc_msg_free(&m->hdr);
        }
        rc_actor_release(to);
    }
    return NULL;
}

Test(actor, chaos_everything_freed_exactly_once, .timeout = 60)
{
    struct rc_actor_system *sys = new_sys(2, 8);
    ch_sys = sys;
    cr_assert_eq(rc_actor_system_start(sys), RC_OK);
    for (int i = 0; i < CH_N; i++)
        atomic_store(&ch_actors[i], ch_spawn(sys, (uint64_t)i + 1));
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, ch_thread, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    rc_actor_system_stop(sys);
    cr_assert_eq(atomic_load(&ch_overlap), 0);
    cr_log_info("chaos: created %lu handled %lu spawned %lu\n",
                (unsigned long)atomic_load(&ch_created), (unsigned long)atomic_load(&ch_handled),
                (unsigned long)atomic_load(&ch_spawned));
    /* The run did something: many messages handled, actors replaced. */
    cr_assert_gt(atomic_load(&ch_handled), 1000, "handled %lu created %lu spawned %lu",
                 (unsigned long)atomic_load(&ch_handled), (unsigned long)atomic_load(&ch_created),
                 (unsigned long)atomic_load(&ch_spawned));
    cr_assert_gt(atomic_load(&ch_spawned), CH_N);
    cr_assert_eq(atomic_load(&ch_freed), atomic_load(&ch_created),
                 "created %lu messages, freed %lu", (unsigned long)atomic_load(&ch_created),
                 (unsigned long)atomic_load(&ch_freed));
    cr_assert_eq(atomic_load(&ch_finis), atomic_load(&ch_spawned), "every actor finalised");
    struct rc_actor_system_stats st;
    rc_actor_system_stats(sys, &st);
    cr_assert_eq(st.actors_live, 0);
    for (int i = 0; i < CH_N; i++)
        rc_actor_release(atomic_load(&ch_actors[i]));
    for (size_t i = 0; i < ch_ngrave; i++)
        rc_actor_release(ch_grave[i]);
    rc_actor_system_free(sys);
}

/* ---- wake-ups ---- */

struct relay_state {
    struct rc_actor *next; /* NULL: last */
    _Atomic uint64_t *done;
};

static void relay_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct relay_state *s = st;
    if (!s->next) {
        atomic_fetch_add(s->done, 1);
        return;
    }
    rc_msg_keep(msg);
    cr_assert_eq(rc_actor_send(s->next, msg), RC_OK);
}

/* One message at a time, from outside and relayed between actors, with
 * pauses long enough for the workers to fall asleep: each must be handled
 * (a lost wake-up would leave it waiting until the 2 s deadline). */
Test(actor, no_lost_wakeups, .timeout = 60)
{
    for (uint32_t workers = 1; workers <= 3; workers++) {
        struct rc_actor_system *sys = start_sys(workers, 0);
        _Atomic uint64_t done = 0;
        struct relay_state rs[3];
        struct rc_actor *a[3];
        for (int i = 2; i >= 0; i--) {
            rs[i] = (struct relay_state){.next = i < 2 ? a[i + 1] : NULL, .done = &done};
            cr_assert_eq(rc_actor_spawn(sys, relay_fn, &rs[i], NULL, NULL, &a[i]), RC_OK);
        }
        uint64_t rng = 12345;
        for (uint64_t i = 0; i < 1500; i++) {
            cr_assert_eq(rc_actor_send(a[i % 3], rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
            uint64_t end = rc_clock_mono_ms() + 2000;
            while (atomic_load(&done) < i + 1) {
                cr_assert_lt(rc_clock_mono_ms(), end, "message %lu stuck (workers %u)",
                             (unsigned long)i, workers);
                sched_yield();
            }
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if (rng % 4 == 0)
                usleep((useconds_t)(rng % 300)); /* let the workers sleep */
        }
        rc_actor_system_stop(sys);
        for (int i = 0; i < 3; i++)
            rc_actor_release(a[i]);
        rc_actor_system_free(sys);
    }
}

/* ---- idle ---- */

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

Test(actor, idle_system_uses_no_cpu)
{
    struct rc_actor_system *sys = start_sys(8, 0);
    struct rc_actor *a[16];
    for (int i = 0; i < 16; i++)
        cr_assert_eq(rc_actor_spawn(sys, nop_fn, NULL, NULL, NULL, &a[i]), RC_OK);
    for (int i = 0; i < 16; i++)
        rc_actor_send(a[i], rc_msg_new(sizeof(struct rc_msg), 1));
    rc_clock_sleep_ms(100); /* let the workers go to sleep */
    double before = cpu_seconds();
    rc_clock_sleep_ms(1000);
    double used = cpu_seconds() - before;
    /* Generous: a spinning worker would burn ~1 s per core. */
    cr_assert_lt(used, 0.05, "idle system used %.3f s of CPU in 1 s", used);
    rc_actor_system_stop(sys);
    for (int i = 0; i < 16; i++)
        rc_actor_release(a[i]);
    rc_actor_system_free(sys);
}

/* ---- inline turns (rc_send_batch_add_inline) ---- */

struct inl_target {
    _Atomic uint64_t handled;
    pthread_t thread;            /* written by the behaviour, read after handled */
    _Atomic int in_driver_turn;  /* 1 if it ran while the driver's turn was running */
    _Atomic int entered;         /* the behaviour is running */
    _Atomic int release;         /* lets a blocked behaviour return */
    bool block;                  /* immutable during a test */
    struct rc_actor *next;       /* if set: send inline to it (nesting test) */
    struct inl_target *next_st;  /* next's state */
    _Atomic uint64_t next_later; /* how often next had not run when the add returned */
};

static _Atomic int driver_running;

static void inl_target_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct inl_target *s = st;
    s->thread = pthread_self();
    atomic_store(&s->in_driver_turn, atomic_load(&driver_running));
    atomic_store(&s->entered, 1);
    if (s->block) {
        uint64_t end = rc_clock_mono_ms() + 5000;
        while (!atomic_load(&s->release) && rc_clock_mono_ms() < end)
            rc_clock_sleep_ms(1);
    }
    if (s->next) {
        struct inl_target *n = s->next_st;
        uint64_t before = atomic_load(&n->handled);
        struct rc_send_batch b = RC_SEND_BATCH_INIT;
        cr_assert_eq(rc_send_batch_add_inline(&b, s->next, rc_msg_new(sizeof(*msg), 1)), RC_OK);
        if (atomic_load(&n->handled) == before)
            atomic_fetch_add(&s->next_later, 1);
        rc_send_batch_flush(&b);
    }
    atomic_fetch_add(&s->handled, 1);
}

/* The driver: in its turn, sends one message inline to `target` and
 * records whether it was handled before the add returned, on this thread;
 * then keeps its own message (the nested turn must not have clobbered the
 * driver's turn state). */
struct inl_driver {
    struct rc_actor *target;
    struct inl_target *ts;
    _Atomic int done;
    int rc;
    bool handled_before_return;
    bool same_thread;
    _Atomic uint64_t own_freed;
    struct rc_msg *kept;
};

static void driver_own_free(struct rc_msg *m)
{
    struct inl_driver **d = (struct inl_driver **)(m + 1);
    atomic_fetch_add(&(*d)->own_freed, 1);
    rc_free(m);
}

static void inl_driver_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct inl_driver *d = st;
    atomic_store(&driver_running, 1);
    uint64_t before = atomic_load(&d->ts->handled);
    struct rc_send_batch b = RC_SEND_BATCH_INIT;
    d->rc = rc_send_batch_add_inline(&b, d->target, rc_msg_new(sizeof(*msg), 1));
    d->handled_before_return = atomic_load(&d->ts->handled) == before + 1;
    d->same_thread = pthread_equal(d->ts->thread, pthread_self());
    rc_send_batch_flush(&b);
    rc_msg_keep(msg); /* must apply to the driver's message */
    d->kept = msg;
    atomic_store(&driver_running, 0);
    atomic_store(&d->done, 1);
}

static struct rc_msg *driver_msg(struct inl_driver *d)
{
    struct rc_msg *m = rc_msg_new(sizeof(struct rc_msg) + sizeof(d), 1);
    cr_assert_not_null(m);
    *(struct inl_driver **)(m + 1) = d;
    m->free_fn = driver_own_free;
    return m;
}

static void wait_int(_Atomic int *v)
{
    uint64_t end = rc_clock_mono_ms() + 5000;
    while (!atomic_load(v) && rc_clock_mono_ms() < end)
        rc_clock_sleep_ms(1);
    cr_assert(atomic_load(v));
}

static struct rc_actor *spawn_target(struct rc_actor_system *sys, struct inl_target *ts)
{
    struct rc_actor *t;
    cr_assert_eq(rc_actor_spawn(sys, inl_target_fn, ts, NULL, NULL, &t), RC_OK);
    return t;
}

/* Spawns a driver aimed at t (state ts), sends it its message and waits
 * for its turn to end; returns the driver. */
static struct rc_actor *run_driver(struct rc_actor_system *sys, struct inl_driver *d,
                                   struct inl_target *ts, struct rc_actor *t)
{
    struct rc_actor *drv;
    d->target = t;
    d->ts = ts;
    cr_assert_eq(rc_actor_spawn(sys, inl_driver_fn, d, NULL, NULL, &drv), RC_OK);
    cr_assert_eq(rc_actor_send(drv, driver_msg(d)), RC_OK);
    wait_int(&d->done);
    cr_assert_eq(d->rc, RC_OK);
    return drv;
}

/* Ends a driver test: frees the driver's kept message, checks how many
 * messages ran inline, stops the system and releases the actors. */
static void driver_test_end(struct rc_actor_system *sys, struct inl_driver *d, uint64_t want_inline,
                            struct rc_actor *const *actors, size_t n)
{
    rc_msg_free(d->kept);
    struct rc_actor_system_stats st;
    rc_actor_system_stats(sys, &st);
    cr_assert_eq(st.inline_handled, want_inline);
    /* a behaviour's inline sends nest in its worker's turn */
    cr_assert_eq(st.inline_nested, want_inline);
    cr_assert_eq(st.inline_outside, 0);
    rc_actor_system_stop(sys);
    for (size_t i = 0; i < n; i++)
        rc_actor_release(actors[i]);
    rc_actor_system_free(sys);
}

Test(actor, inline_from_a_behaviour_runs_an_idle_actor_nested_in_its_turn)
{
    struct rc_actor_system *sys = start_sys(2, 0);
    static struct inl_target ts;
    static struct inl_driver d;
    memset(&ts, 0, sizeof(ts));
    memset(&d, 0, sizeof(d));
    struct rc_actor *t = spawn_target(sys, &ts);
    struct rc_actor *drv = run_driver(sys, &d, &ts, t);
    cr_assert(d.handled_before_return, "handled before the add returned");
    cr_assert(d.same_thread, "on the driver's thread");
    cr_assert_eq(atomic_load(&ts.in_driver_turn), 1, "nested in the driver's turn");
    /* the driver's rc_msg_keep after the nested turn applied: its message
     * was not freed by the runtime */
    rc_clock_sleep_ms(20);
    cr_assert_eq(atomic_load(&d.own_freed), 0);
    rc_msg_free(d.kept);
    cr_assert_eq(atomic_load(&d.own_freed), 1);
    struct rc_actor_system_stats st;
    rc_actor_system_stats(sys, &st);
    cr_assert_eq(st.inline_handled, 1);
    cr_assert_eq(st.inline_nested, 1, "counted as nested");
    cr_assert_eq(st.inline_outside, 0, "on a worker");
    cr_assert_eq(st.messages_handled, 2, "the driver's message and the inline one");
    cr_assert_eq(rc_actor_mailbox_len(t), 0);
    rc_actor_system_stop(sys);
    rc_actor_release(t);
    rc_actor_release(drv);
    rc_actor_system_free(sys);
}

Test(actor, inline_from_outside_the_workers_is_queued)
{
    struct rc_actor_system *sys = start_sys(2, 0);
    static struct inl_target ts;
    memset(&ts, 0, sizeof(ts));
    struct rc_actor *t = spawn_target(sys, &ts);
    struct rc_send_batch b = RC_SEND_BATCH_INIT;
    cr_assert_eq(rc_send_batch_add_inline(&b, t, rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
    rc_send_batch_flush(&b);
    cr_assert(tact_wait_u64(&ts.handled, 1, 5000));
    cr_assert(!pthread_equal(ts.thread, pthread_self()), "ran on a worker, not here");
    struct rc_actor_system_stats st;
    rc_actor_system_stats(sys, &st);
    cr_assert_eq(st.inline_handled, 0);
    tact_sys_end(sys, t);
}

Test(actor, inline_to_a_busy_actor_is_queued)
{
    struct rc_actor_system *sys = start_sys(2, 0);
    static struct inl_target ts;
    static struct inl_driver d;
    memset(&ts, 0, sizeof(ts));
    memset(&d, 0, sizeof(d));
    ts.block = true;
    struct rc_actor *t = spawn_target(sys, &ts);
    /* one worker runs the target's first message and blocks in it */
    cr_assert_eq(rc_actor_send(t, rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
    wait_int(&ts.entered);
    struct rc_actor *drv = run_driver(sys, &d, &ts, t); /* on the other worker */
    cr_assert(!d.handled_before_return, "busy: queued, not run in the driver's turn");
    cr_assert_eq(rc_actor_mailbox_len(t), 2, "the blocked message and the queued one");
    atomic_store(&ts.release, 1);
    cr_assert(tact_wait_u64(&ts.handled, 2, 5000));
    driver_test_end(sys, &d, 0, (struct rc_actor *[]){t, drv}, 2);
}

/* rc_send_batch_try_add_inline from a thread that is no worker (as an I/O
 * callback): an idle actor's turn runs right here, and stands for a
 * worker's turn: what it sends inline to an idle actor runs nested in it,
 * on this thread too (a publisher connection's decoder and its runs), and
 * a third level is queued to the workers through the batch.  Twice, so the
 * thread is seen back at its base once its turn is over. */
Test(actor, try_inline_from_outside_nests_one_more_turn_on_the_calling_thread)
{
    struct rc_actor_system *sys = start_sys(2, 0);
    static struct inl_target ts, mid, last;
    memset(&ts, 0, sizeof(ts));
    memset(&mid, 0, sizeof(mid));
    memset(&last, 0, sizeof(last));
    struct rc_actor *l = spawn_target(sys, &last);
    mid.next = l; /* the nested turn sends inline again: queued */
    mid.next_st = &last;
    struct rc_actor *m = spawn_target(sys, &mid);
    ts.next = m; /* the outside thread's turn sends inline: nested here */
    ts.next_st = &mid;
    struct rc_actor *t = spawn_target(sys, &ts);
    for (uint64_t round = 1; round <= 2; round++) {
        struct rc_send_batch b = RC_SEND_BATCH_INIT;
        cr_assert_eq(rc_send_batch_try_add_inline(&b, t, rc_msg_new(sizeof(struct rc_msg), 1)),
                     RC_OK);
        cr_assert_eq(atomic_load(&ts.handled), round, "handled before the add returned");
        cr_assert(pthread_equal(ts.thread, pthread_self()), "on the calling thread");
        cr_assert_eq(atomic_load(&ts.next_later), 0, "the second level ran nested");
        cr_assert(pthread_equal(mid.thread, pthread_self()), "the second level on this thread");
        cr_assert_eq(atomic_load(&mid.next_later), round, "the third level was queued");
        rc_send_batch_flush(&b);
        cr_assert(tact_wait_u64(&last.handled, round, 5000));
        cr_assert(!pthread_equal(last.thread, pthread_self()), "the queued one ran on a worker");
    }
    struct rc_actor_system_stats st;
    rc_actor_system_stats(sys, &st);
    cr_assert_eq(st.inline_handled, 4);
    cr_assert_eq(st.inline_outside, 4, "both levels on the calling thread");
    cr_assert_eq(st.inline_nested, 2, "the second level of each round");
    cr_assert_eq(st.messages_handled, 6);
    rc_actor_system_stop(sys);
    rc_actor_release(t);
    rc_actor_release(m);
    rc_actor_release(l);
    rc_actor_system_free(sys);
}

/* Busy, it is rc_send_batch_try_add: queued behind the running turn, and
 * refused with RC_EOVERLOAD once the mailbox holds its limit. */
Test(actor, try_inline_to_a_busy_actor_queues_up_to_its_mailbox_limit)
{
    struct rc_actor_system *sys = start_sys(2, 0);
    static struct inl_target ts;
    memset(&ts, 0, sizeof(ts));
    ts.block = true;
    struct rc_actor_opts o = {.mailbox_limit = 2, .name = "limited"};
    struct rc_actor *t;
    cr_assert_eq(rc_actor_spawn(sys, inl_target_fn, &ts, NULL, &o, &t), RC_OK);
    cr_assert_eq(rc_actor_send(t, rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
    wait_int(&ts.entered); /* a worker is in its turn, blocked */
    struct rc_send_batch b = RC_SEND_BATCH_INIT;
    cr_assert_eq(rc_send_batch_try_add_inline(&b, t, rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
    cr_assert_eq(atomic_load(&ts.handled), 0, "queued, not run here");
    struct rc_msg *third = rc_msg_new(sizeof(struct rc_msg), 1);
    cr_assert_eq(rc_send_batch_try_add_inline(&b, t, third), RC_EOVERLOAD);
    rc_msg_free(third); /* refused: still the caller's */
    rc_send_batch_flush(&b);
    atomic_store(&ts.release, 1);
    cr_assert(tact_wait_u64(&ts.handled, 2, 5000));
    rc_clock_sleep_ms(20);
    cr_assert_eq(atomic_load(&ts.handled), 2);
    struct rc_actor_system_stats st;
    rc_actor_system_stats(sys, &st);
    cr_assert_eq(st.inline_handled, 0);
    cr_assert_eq(st.overloads, 1);
    tact_sys_end(sys, t);
}

/* In a turn of another system's worker it never nests: queued. */
struct inl_foreign {
    struct rc_actor *target; /* in the other system */
    struct inl_target *ts;
    _Atomic int done;
    int rc;
    bool handled_before_return;
};

static void inl_foreign_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    (void)self;
    (void)msg;
    struct inl_foreign *f = st;
    uint64_t before = atomic_load(&f->ts->handled);
    struct rc_send_batch b = RC_SEND_BATCH_INIT;
    f->rc = rc_send_batch_try_add_inline(&b, f->target, rc_msg_new(sizeof(struct rc_msg), 1));
    f->handled_before_return = atomic_load(&f->ts->handled) != before;
    rc_send_batch_flush(&b);
    atomic_store(&f->done, 1);
}

Test(actor, try_inline_from_a_turn_of_another_system_is_queued)
{
    struct rc_actor_system *a_sys = start_sys(1, 0), *b_sys = start_sys(1, 0);
    static struct inl_target ts;
    static struct inl_foreign f;
    memset(&ts, 0, sizeof(ts));
    memset(&f, 0, sizeof(f));
    struct rc_actor *t = spawn_target(b_sys, &ts);
    f.target = t;
    f.ts = &ts;
    struct rc_actor *drv;
    cr_assert_eq(rc_actor_spawn(a_sys, inl_foreign_fn, &f, NULL, NULL, &drv), RC_OK);
    cr_assert_eq(rc_actor_send(drv, rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
    wait_int(&f.done);
    cr_assert_eq(f.rc, RC_OK);
    cr_assert(!f.handled_before_return, "not nested in the other system's turn");
    cr_assert(tact_wait_u64(&ts.handled, 1, 5000));
    struct rc_actor_system_stats st;
    rc_actor_system_stats(b_sys, &st);
    cr_assert_eq(st.inline_handled, 0);
    rc_actor_system_stop(a_sys);
    rc_actor_release(drv);
    rc_actor_system_free(a_sys);
    tact_sys_end(b_sys, t);
}

/* A behaviour running inline that sends inline again queues: one level. */
Test(actor, inline_is_one_level_deep)
{
    struct rc_actor_system *sys = start_sys(2, 0);
    static struct inl_target ts, last;
    static struct inl_driver d;
    memset(&ts, 0, sizeof(ts));
    memset(&last, 0, sizeof(last));
    memset(&d, 0, sizeof(d));
    struct rc_actor *l = spawn_target(sys, &last);
    ts.next = l;
    ts.next_st = &last;
    struct rc_actor *t = spawn_target(sys, &ts);
    struct rc_actor *drv = run_driver(sys, &d, &ts, t);
    cr_assert(d.handled_before_return, "the first level ran inline");
    cr_assert_eq(atomic_load(&ts.next_later), 1, "the second level was queued");
    cr_assert(tact_wait_u64(&last.handled, 1, 5000));
    driver_test_end(sys, &d, 1, (struct rc_actor *[]){t, l, drv}, 3);
}

/* Producer actors (so their sends come from workers) mixing inline adds,
 * flushed every few messages, with plain sends to the counters the
 * workers run: no loss, no duplicates, per-producer order, never two
 * threads in one actor. */
struct inl_producer {
    uint32_t id;
    uint64_t m;
    struct rc_actor **actors;
    _Atomic int done;
};

static void inl_producer_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct inl_producer *p = st;
    struct rc_send_batch b = RC_SEND_BATCH_INIT;
    for (uint64_t i = 0; i < p->m; i++) {
        struct seq_msg *m = (struct seq_msg *)rc_msg_new(sizeof(*m), 1);
        cr_assert_not_null(m);
        m->producer = p->id;
        m->seq = i;
        struct rc_actor *to = p->actors[(i * 7 + p->id) % K];
        if ((i + p->id) % 3 != 0)
            cr_assert_eq(rc_send_batch_add_inline(&b, to, &m->hdr), RC_OK);
        else
            cr_assert_eq(rc_actor_send(to, &m->hdr), RC_OK);
        if (i % 5 == 4)
            rc_send_batch_flush(&b);
    }
    rc_send_batch_flush(&b);
    atomic_store(&p->done, 1);
}

Test(actor, inline_and_queued_sends_keep_order_and_exclusion, .timeout = 60)
{
    struct rc_actor_system *sys = start_sys(2, 4);
    _Atomic uint64_t total = 0;
    static struct counter_state st[K];
    struct rc_actor *actors[K];
    spawn_counters(sys, st, actors, &total);
    const uint64_t m = 20000;
    static struct inl_producer prod[P];
    struct rc_actor *pa[P];
    for (uint32_t i = 0; i < P; i++) {
        prod[i] = (struct inl_producer){.id = i, .m = m, .actors = actors};
        cr_assert_eq(rc_actor_spawn(sys, inl_producer_fn, &prod[i], NULL, NULL, &pa[i]), RC_OK);
    }
    for (uint32_t i = 0; i < P; i++)
        cr_assert_eq(rc_actor_send(pa[i], rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
    cr_assert(tact_wait_u64(&total, P * m, 20000), "handled %lu of %lu",
              (unsigned long)atomic_load(&total), (unsigned long)(P * m));
    rc_actor_system_stop(sys);
    expect_counted(st, P * m);
    struct rc_actor_system_stats stats;
    rc_actor_system_stats(sys, &stats);
    cr_assert_eq(stats.messages_handled, P * m + P);
    cr_assert_gt(stats.inline_handled, 0, "some ran inline");
    for (int k = 0; k < K; k++)
        rc_actor_release(actors[k]);
    for (uint32_t i = 0; i < P; i++)
        rc_actor_release(pa[i]);
    rc_actor_system_free(sys);
}

/* An inline turn that sends to itself and stops itself: the self-sent
 * message is dropped by the stop (freed once, not handled), fini runs
 * once with the reason, and the monitor gets its DOWN. */
struct inl_stop_msg {
    struct rc_msg hdr;
    _Atomic uint64_t *freed;
};

static void inl_stop_msg_free(struct rc_msg *m)
{
    atomic_fetch_add(((struct inl_stop_msg *)m)->freed, 1);
    rc_free(m);
}

struct inl_stopper {
    _Atomic uint64_t handled, freed;
    _Atomic int fini_reason, fini_done;
};

static void inl_stopper_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct inl_stopper *s = st;
    atomic_fetch_add(&s->handled, 1);
    struct inl_stop_msg *again = (struct inl_stop_msg *)rc_msg_new(sizeof(*again), 1);
    again->hdr.free_fn = inl_stop_msg_free;
    again->freed = &s->freed;
    cr_assert_eq(rc_actor_send(self, &again->hdr), RC_OK);
    rc_actor_stop(self, 42);
}

static void inl_stopper_fini(void *st, int reason)
{
    struct inl_stopper *s = st;
    atomic_store(&s->fini_reason, reason);
    atomic_fetch_add(&s->fini_done, 1);
}

static _Atomic uint64_t inl_down;
static void inl_watch_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    if (msg->type == RC_MSG_DOWN && ((struct rc_msg_down *)msg)->reason == 42)
        atomic_fetch_add(&inl_down, 1);
}

struct inl_kick {
    struct rc_actor *target;
    _Atomic int done;
    int rc;
};

static void inl_kick_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct inl_kick *k = st;
    struct rc_send_batch b = RC_SEND_BATCH_INIT;
    k->rc = rc_send_batch_add_inline(&b, k->target, rc_msg_new(sizeof(*msg), 1));
    rc_send_batch_flush(&b);
    atomic_store(&k->done, 1);
}

Test(actor, inline_turn_that_stops_itself)
{
    struct rc_actor_system *sys = start_sys(2, 0);
    static struct inl_stopper s;
    static struct inl_kick k;
    memset(&s, 0, sizeof(s));
    memset(&k, 0, sizeof(k));
    struct rc_actor *a, *w, *kick;
    cr_assert_eq(rc_actor_spawn(sys, inl_stopper_fn, &s, inl_stopper_fini, NULL, &a), RC_OK);
    cr_assert_eq(rc_actor_spawn(sys, inl_watch_fn, NULL, NULL, NULL, &w), RC_OK);
    cr_assert_eq(rc_actor_monitor(w, a, 7), RC_OK);
    k.target = a;
    cr_assert_eq(rc_actor_spawn(sys, inl_kick_fn, &k, NULL, NULL, &kick), RC_OK);
    cr_assert_eq(rc_actor_send(kick, rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
    wait_int(&k.done);
    cr_assert_eq(k.rc, RC_OK);
    wait_int(&s.fini_done);
    cr_assert_eq(atomic_load(&s.fini_reason), 42);
    cr_assert(tact_wait_u64(&inl_down, 1, 5000));
    cr_assert_eq(atomic_load(&s.handled), 1, "the self-sent message was dropped, not handled");
    cr_assert_eq(atomic_load(&s.freed), 1, "and freed exactly once");
    cr_assert(rc_actor_stopped(a));
    struct rc_actor_system_stats st;
    rc_actor_system_stats(sys, &st);
    cr_assert_eq(st.inline_handled, 1);
    rc_actor_system_stop(sys);
    cr_assert_eq(atomic_load(&s.fini_done), 1, "fini once");
    rc_actor_release(a);
    rc_actor_release(w);
    rc_actor_release(kick);
    rc_actor_system_free(sys);
}
