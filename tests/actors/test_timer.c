/*
 * Tests of actor timers (rc_timer_*) on a running system: expiry messages
 * reach the owner never early, cancel and re-arm make older expiries
 * vanish or stale (rc_timer_msg_current), many timers all fire, and
 * owners cancel in fini cleanly.  Only lower bounds on real time are
 * asserted (never early); lateness is measured in bench_actors.
 */
#include <criterion/criterion.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "actor_tutil.h"
#include "rc_actor.h"
#include "rc_alloc.h"
#include "rc_clock.h"
#include "rc_error.h"

#define NT 20

struct tstate {
    struct rc_actor_system *sys;
    struct rc_timer t[NT];
    uint64_t armed_ns[NT];
    _Atomic int current, stale;
    _Atomic int early; /* a current expiry before its delay elapsed */
    _Atomic uint64_t arg_mismatch;
    uint64_t delay_ms[NT];
};

static void timer_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct tstate *s = st;
    if (msg->type == 1) { /* arm all */
        for (int i = 0; i < NT; i++) {
            s->armed_ns[i] = rc_clock_mono_ns();
            cr_assert_eq(rc_timer_arm(s->sys, &s->t[i], s->delay_ms[i]), RC_OK);
        }
        return;
    }
    if (msg->type != RC_MSG_TIMER)
        return;
    struct rc_msg_timer *m = (struct rc_msg_timer *)msg;
    if (!rc_timer_msg_current(m)) {
        atomic_fetch_add(&s->stale, 1);
        return;
    }
    size_t i = (size_t)(m->timer - s->t);
    if (m->arg != 1000 + i)
        atomic_fetch_add(&s->arg_mismatch, 1);
    if (rc_clock_mono_ns() - s->armed_ns[i] < s->delay_ms[i] * 1000000u)
        atomic_store(&s->early, 1);
    atomic_fetch_add(&s->current, 1);
}

static void cancel_all_fini(void *st, int reason)
{
    struct tstate *s = st;
    for (int i = 0; i < NT; i++)
        rc_timer_cancel(s->sys, &s->t[i]);
}

/* An actor running fn on s, its NT timers initialised (arg 1000 + i). */
static struct rc_actor *spawn_timer_actor(struct rc_actor_system *sys, struct tstate *s,
                                          rc_actor_behaviour fn)
{
    struct rc_actor *a;
    s->sys = sys;
    cr_assert_eq(rc_actor_spawn(sys, fn, s, cancel_all_fini, NULL, &a), RC_OK);
    for (int i = 0; i < NT; i++)
        rc_timer_init(&s->t[i], a, 1000 + (uint64_t)i);
    return a;
}

Test(timer, fires_never_early_with_its_arg)
{
    struct rc_actor_system *sys = tact_sys_start(&(struct rc_actor_system_opts){.workers = 2});
    static struct tstate s;
    for (int i = 0; i < NT; i++)
        s.delay_ms[i] = (uint64_t)i * 5; /* 0 .. 95 ms */
    struct rc_actor *a = spawn_timer_actor(sys, &s, timer_fn);
    cr_assert_eq(rc_actor_send(a, rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
    cr_assert(tact_wait_int(&s.current, NT, 5000));
    cr_assert_eq(atomic_load(&s.early), 0, "a timer fired early");
    cr_assert_eq(atomic_load(&s.arg_mismatch), 0);
    cr_assert_eq(atomic_load(&s.stale), 0);
    for (int i = 0; i < NT; i++)
        cr_assert(!rc_timer_armed(sys, &s.t[i]));
    tact_sys_end(sys, a);
}

Test(timer, cancel_before_expiry_sends_nothing)
{
    struct rc_actor_system *sys = tact_sys_start(NULL);
    static struct tstate s;
    struct rc_actor *a = spawn_timer_actor(sys, &s, timer_fn);
    for (int i = 0; i < NT; i++) {
        cr_assert_eq(rc_timer_arm(sys, &s.t[i], 30), RC_OK);
        cr_assert(rc_timer_armed(sys, &s.t[i]));
    }
    for (int i = 0; i < NT; i++)
        rc_timer_cancel(sys, &s.t[i]);
    rc_timer_cancel(sys, &s.t[0]); /* twice is fine */
    rc_clock_sleep_ms(80);
    /* An expiry sent before the cancel (if this thread was descheduled for
     * 30 ms) is stale; none may be current. */
    cr_assert_eq(atomic_load(&s.current), 0);
    tact_sys_end(sys, a);
}

/* Re-arm before expiry (within one turn of the owner, so no expiry of the
 * first arming can be handled before the re-arm): exactly one current
 * expiry, for the latest arming, not early. */
static void rearm_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct tstate *s = st;
    if (msg->type == 2) {
        s->armed_ns[0] = rc_clock_mono_ns();
        cr_assert_eq(rc_timer_arm(s->sys, &s->t[0], 5), RC_OK);
        cr_assert_eq(rc_timer_arm(s->sys, &s->t[0], 40), RC_OK);
        return;
    }
    timer_fn(self, st, msg);
}

Test(timer, rearm_replaces)
{
    struct rc_actor_system *sys = tact_sys_start(NULL);
    static struct tstate s;
    s.delay_ms[0] = 40;
    struct rc_actor *a = spawn_timer_actor(sys, &s, rearm_fn);
    cr_assert_eq(rc_actor_send(a, rc_msg_new(sizeof(struct rc_msg), 2)), RC_OK);
    cr_assert(tact_wait_int(&s.current, 1, 5000));
    rc_clock_sleep_ms(30);
    cr_assert_eq(atomic_load(&s.current), 1);
    cr_assert_eq(atomic_load(&s.early), 0);
    tact_sys_end(sys, a);
}

/* An expiry already in the mailbox when the owner re-arms is stale. */
struct stale_state {
    struct rc_actor_system *sys;
    struct rc_timer t;
    _Atomic int current, stale;
};

static void stale_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct stale_state *s = st;
    if (msg->type == 1) {
        cr_assert_eq(rc_timer_arm(s->sys, &s->t, 1), RC_OK);
        /* Let it expire and queue behind this message, then re-arm. */
        uint64_t end = rc_clock_mono_ms() + 3000;
        while (rc_actor_mailbox_len(self) < 2 && rc_clock_mono_ms() < end)
            rc_clock_sleep_ms(1);
        cr_assert_eq(rc_timer_arm(s->sys, &s->t, 5), RC_OK);
        return;
    }
    struct rc_msg_timer *m = (struct rc_msg_timer *)msg;
    cr_assert_eq(msg->type, RC_MSG_TIMER);
    if (rc_timer_msg_current(m))
        atomic_fetch_add(&s->current, 1);
    else
        atomic_fetch_add(&s->stale, 1);
}

Test(timer, expiry_in_flight_becomes_stale)
{
    struct rc_actor_system *sys = tact_sys_start(NULL);
    static struct stale_state s;
    s.sys = sys;
    struct rc_actor *a;
    cr_assert_eq(rc_actor_spawn(sys, stale_fn, &s, NULL, NULL, &a), RC_OK);
    rc_timer_init(&s.t, a, 0);
    cr_assert_eq(rc_actor_send(a, rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
    cr_assert(tact_wait_int(&s.current, 1, 5000));
    cr_assert_eq(atomic_load(&s.stale), 1);
    tact_sys_end(sys, a);
}

/* Many owners, many timers; owners stopped with timers armed cancel them
 * in fini. */
Test(timer, many_timers_all_fire)
{
    enum { A = 50 };
    struct rc_actor_system *sys = tact_sys_start(&(struct rc_actor_system_opts){.workers = 2});
    static struct tstate s[A];
    struct rc_actor *a[A];
    for (int k = 0; k < A; k++) {
        for (int i = 0; i < NT; i++)
            s[k].delay_ms[i] = (uint64_t)((k * 7 + i * 13) % 60);
        a[k] = spawn_timer_actor(sys, &s[k], timer_fn);
        cr_assert_eq(rc_actor_send(a[k], rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
    }
    for (int k = 0; k < A; k++) {
        cr_assert(tact_wait_int(&s[k].current, NT, 5000));
        cr_assert_eq(atomic_load(&s[k].early), 0);
    }
    /* Arm long timers and stop: fini cancels them. */
    for (int k = 0; k < A; k++)
        for (int i = 0; i < NT; i++)
            rc_timer_arm(sys, &s[k].t[i], 60000);
    struct rc_actor_system_stats st;
    rc_actor_system_stats(sys, &st);
    cr_assert_eq(st.timers_armed, A * NT);
    rc_actor_system_stop(sys);
    rc_actor_system_stats(sys, &st);
    cr_assert_eq(st.timers_armed, 0, "the finis cancelled them");
    for (int k = 0; k < A; k++) {
        cr_assert(!rc_timer_armed(sys, &s[k].t[0]));
        rc_actor_release(a[k]);
    }
    rc_actor_system_free(sys);
}

/* A coarser tick (10 ms): still never early. */
Test(timer, coarse_tick_never_early)
{
    struct rc_actor_system *sys;
    struct rc_actor_system_opts o = {.workers = 1, .tick_ms = 10};
    cr_assert_eq(rc_actor_system_new(&sys, &o), RC_OK);
    cr_assert_eq(rc_actor_system_start(sys), RC_OK);
    static struct tstate s;
    for (int i = 0; i < NT; i++)
        s.delay_ms[i] = (uint64_t)i * 3 + 1; /* 1 .. 58 ms, mostly not tick multiples */
    struct rc_actor *a = spawn_timer_actor(sys, &s, timer_fn);
    cr_assert_eq(rc_actor_send(a, rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
    cr_assert(tact_wait_int(&s.current, NT, 5000));
    cr_assert_eq(atomic_load(&s.early), 0, "a timer fired early");
    tact_sys_end(sys, a);
}

/* Absolute due times a fraction of a ms apart, on a 100 us wheel: each
 * fires at or after its time, and they arrive in due order (on a 1 ms
 * wheel three of them would share a slot, whose list fires newest first,
 * which is why the broker's wheel turns finer than its --watchdog-tick). */
#define NAT 12
struct atstate {
    struct rc_actor_system *sys;
    struct rc_timer t[NAT];
    uint64_t at[NAT];
    int order[NAT];
    _Atomic int n;
    _Atomic int early;
};

static void at_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    (void)self;
    struct atstate *s = st;
    if (msg->type != RC_MSG_TIMER || !rc_timer_msg_current((struct rc_msg_timer *)msg))
        return;
    int i = (int)(((struct rc_msg_timer *)msg)->timer - s->t);
    if (rc_clock_mono_ns() < s->at[i])
        atomic_store(&s->early, 1);
    s->order[atomic_load_explicit(&s->n, memory_order_relaxed)] = i;
    atomic_fetch_add(&s->n, 1); /* seq_cst: publishes order[] to the test */
}

static void at_fini(void *st, int reason)
{
    (void)reason;
    struct atstate *s = st;
    for (int i = 0; i < NAT; i++)
        rc_timer_cancel(s->sys, &s->t[i]);
}

Test(timer, microsecond_tick_fires_absolute_times_in_due_order)
{
    struct rc_actor_system *sys;
    struct rc_actor_system_opts o = {.workers = 1, .tick_ms = 10, .tick_us = 100};
    cr_assert_eq(rc_actor_system_new(&sys, &o), RC_OK);
    cr_assert_eq(rc_actor_system_start(sys), RC_OK);
    static struct atstate s;
    s.sys = sys;
    struct rc_actor *a;
    cr_assert_eq(rc_actor_spawn(sys, at_fn, &s, at_fini, NULL, &a), RC_OK);
    for (int i = 0; i < NAT; i++)
        rc_timer_init(&s.t[i], a, 0);
    /* timer 0 is already due; the others 350 us apart from 20 ms on:
     * armed in due order, so timers sharing a slot would come out
     * reversed */
    uint64_t base = rc_clock_mono_ns();
    s.at[0] = base - 1000000u;
    for (int i = 1; i < NAT; i++)
        s.at[i] = base + 20000000u + (uint64_t)i * 350000u;
    for (int i = 0; i < NAT; i++)
        cr_assert_eq(rc_timer_arm_at(sys, &s.t[i], s.at[i]), RC_OK);
    cr_assert(tact_wait_int(&s.n, NAT, 5000));
    cr_assert_eq(atomic_load(&s.early), 0, "a timer fired before its time");
    for (int i = 0; i < NAT; i++)
        cr_assert_eq(s.order[i], i, "arrival %d was timer %d", i, s.order[i]);
    tact_sys_end(sys, a);
}

Test(timer, bad_arguments)
{
    struct rc_actor_system *sys = tact_sys_new(NULL);
    struct rc_timer t;
    rc_timer_init(&t, NULL, 0);
    cr_assert_eq(rc_timer_arm(sys, &t, 5), RC_EINVAL);
    cr_assert_eq(rc_timer_arm(NULL, &t, 5), RC_EINVAL);
    cr_assert_eq(rc_timer_arm_at(sys, &t, 5), RC_EINVAL);
    rc_timer_cancel(sys, &t);
    tact_sys_end(sys, NULL);
}

/* ---- Several timer threads ---- */

static int allowed_cpus(void)
{
    cpu_set_t set;
    cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
    return CPU_COUNT(&set);
}

/* The default: two timer threads, each pinned to its own allowed CPU, when
 * the process may use two CPUs or more; one, unpinned, otherwise. */
Test(timer, default_timer_threads_sleep_on_different_cpus)
{
    struct rc_actor_system *sys = tact_sys_start(NULL);
    struct rc_actor_system_stats st;
    rc_actor_system_stats(sys, &st);
    cpu_set_t set;
    cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
    if (allowed_cpus() >= 2) {
        cr_assert_eq(st.timer_threads, 2);
        int c0 = rc_actor_system_timer_cpu(sys, 0), c1 = rc_actor_system_timer_cpu(sys, 1);
        cr_assert(c0 >= 0 && c1 >= 0 && c0 != c1, "pinned to %d and %d", c0, c1);
        cr_assert(CPU_ISSET(c0, &set) && CPU_ISSET(c1, &set), "pinned outside the allowed set");
    } else {
        cr_assert_eq(st.timer_threads, 1);
        cr_assert_eq(rc_actor_system_timer_cpu(sys, 0), -1);
    }
    cr_assert_eq(rc_actor_system_timer_cpu(sys, 2), -1, "no such thread");
    tact_sys_end(sys, NULL);
}

Test(timer, timer_threads_option_is_checked)
{
    struct rc_actor_system *sys = NULL;
    cr_assert_eq(rc_actor_system_new(&sys, &(struct rc_actor_system_opts){.timer_threads = 5}),
                 RC_EINVAL);
    sys = tact_sys_start(&(struct rc_actor_system_opts){.timer_threads = 1});
    struct rc_actor_system_stats st;
    rc_actor_system_stats(sys, &st);
    cr_assert_eq(st.timer_threads, 1);
    cr_assert_eq(rc_actor_system_timer_cpu(sys, 0), -1, "one thread is not pinned");
    cr_assert_eq(rc_actor_system_hold_timer_thread(sys, 1, true), RC_EINVAL);
    tact_sys_end(sys, NULL);
}

/* Arms NT timers of 0-19 ms on a fresh actor of sys and returns it; they
 * are counted in s. */
static struct rc_actor *arm_short_timers(struct rc_actor_system *sys, struct tstate *s)
{
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < NT; i++)
        s->delay_ms[i] = (uint64_t)i;
    struct rc_actor *a = spawn_timer_actor(sys, s, timer_fn);
    cr_assert_eq(rc_actor_send(a, rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
    return a;
}

/* With one timer thread held (as if its CPU were stalled), the other turns
 * the wheel: every timer fires once, never early, while it is held; then
 * the same with the other one held.  Each timer is counted by its own
 * index, so a timer fired by both threads would show as NT + 1. */
Test(timer, a_held_timer_thread_is_covered_by_the_other)
{
    struct rc_actor_system *sys =
        tact_sys_start(&(struct rc_actor_system_opts){.workers = 2, .timer_threads = 2});
    static struct tstate s[2];
    struct rc_actor *a[2];
    for (uint32_t held = 0; held < 2; held++) {
        cr_assert_eq(rc_actor_system_hold_timer_thread(sys, held, true), RC_OK);
        a[held] = arm_short_timers(sys, &s[held]);
        cr_assert(tact_wait_int(&s[held].current, NT, 5000),
                  "with timer thread %u held, %d of %d timers fired", held,
                  atomic_load(&s[held].current), NT);
        rc_clock_sleep_ms(30); /* room for a duplicate to show */
        cr_assert_eq(atomic_load(&s[held].current), NT);
        cr_assert_eq(atomic_load(&s[held].early), 0);
        cr_assert_eq(atomic_load(&s[held].stale), 0);
        cr_assert_eq(rc_actor_system_hold_timer_thread(sys, held, false), RC_OK);
    }
    tact_sys_end_all(sys, a, 2);
}

/* The hold does stop a thread: with the only timer thread held nothing
 * fires; released, everything does (so the test above shows the second
 * thread at work, not a hold that does nothing). */
Test(timer, the_only_timer_thread_held_fires_nothing_until_released)
{
    struct rc_actor_system *sys =
        tact_sys_start(&(struct rc_actor_system_opts){.workers = 2, .timer_threads = 1});
    static struct tstate s;
    cr_assert_eq(rc_actor_system_hold_timer_thread(sys, 0, true), RC_OK);
    struct rc_actor *a = arm_short_timers(sys, &s);
    rc_clock_sleep_ms(100); /* every timer is due by now */
    cr_assert_eq(atomic_load(&s.current), 0, "a held wheel fired %d timers",
                 atomic_load(&s.current));
    cr_assert_eq(rc_actor_system_hold_timer_thread(sys, 0, false), RC_OK);
    cr_assert(tact_wait_int(&s.current, NT, 5000));
    cr_assert_eq(atomic_load(&s.early), 0);
    tact_sys_end(sys, a);
}

/* Four timer threads racing for one wheel: 40 owners x NT timers, re-armed
 * for three rounds of 0-29 ms; every expiry is delivered exactly once and
 * never early (the chunks they collect never overlap). */
static void rounds_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    struct tstate *s = st;
    timer_fn(self, st, msg);
    if (msg->type == RC_MSG_TIMER && rc_timer_msg_current((struct rc_msg_timer *)msg)) {
        size_t i = (size_t)(((struct rc_msg_timer *)msg)->timer - s->t);
        if (atomic_load(&s->current) <= 2 * NT) { /* two more rounds */
            s->armed_ns[i] = rc_clock_mono_ns();
            cr_assert_eq(rc_timer_arm(s->sys, &s->t[i], s->delay_ms[i]), RC_OK);
        }
    }
}

Test(timer, four_timer_threads_deliver_each_expiry_once)
{
    enum { A = 40 };
    struct rc_actor_system *sys =
        tact_sys_start(&(struct rc_actor_system_opts){.workers = 2, .timer_threads = 4});
    static struct tstate s[A];
    struct rc_actor *a[A];
    for (int k = 0; k < A; k++) {
        for (int i = 0; i < NT; i++)
            s[k].delay_ms[i] = (uint64_t)((k * 11 + i * 7) % 30);
        a[k] = spawn_timer_actor(sys, &s[k], rounds_fn);
        cr_assert_eq(rc_actor_send(a[k], rc_msg_new(sizeof(struct rc_msg), 1)), RC_OK);
    }
    for (int k = 0; k < A; k++) {
        cr_assert(tact_wait_int(&s[k].current, 3 * NT, 10000), "owner %d: %d of %d", k,
                  atomic_load(&s[k].current), 3 * NT);
        cr_assert_eq(atomic_load(&s[k].early), 0);
        cr_assert_eq(atomic_load(&s[k].arg_mismatch), 0);
    }
    rc_clock_sleep_ms(50); /* room for a duplicate to show */
    for (int k = 0; k < A; k++)
        cr_assert_eq(atomic_load(&s[k].current), 3 * NT, "owner %d", k);
    struct rc_actor_system_stats st;
    rc_actor_system_stats(sys, &st);
    cr_assert_eq(st.timer_threads, 4);
    tact_sys_end_all(sys, a, A);
}
