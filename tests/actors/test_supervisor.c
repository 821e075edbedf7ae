/*
 * Tests of rc_supervisor: one-for-one restart on abnormal exit, no restart
 * on normal exit or system stop, intensity give-up (giveup called once,
 * other children stopped), the intensity window, and clean teardown.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <string.h>

#include "actor_tutil.h"
#include "rc_actor.h"
#include "rc_alloc.h"
#include "rc_clock.h"
#include "rc_error.h"

#define MSG_CRASH 1
#define MSG_QUIT  2

struct child_arg {
    struct rc_actor_system *sys;
    _Atomic int starts;
    _Atomic int finis;
    _Atomic int fail_next_start; /* start returns NULL this many times */
};

static void child_fn(struct rc_actor *self, void *st, struct rc_msg *msg)
{
    if (msg->type == MSG_CRASH)
        rc_actor_stop(self, -1);
    else if (msg->type == MSG_QUIT)
        rc_actor_stop(self, 0);
}

static void child_fini(void *st, int reason)
{
    struct child_arg *c = st;
    atomic_fetch_add(&c->finis, 1);
}

static struct rc_actor *child_start(void *arg)
{
    struct child_arg *c = arg;
    if (atomic_load(&c->fail_next_start) > 0) {
        atomic_fetch_sub(&c->fail_next_start, 1);
        return NULL;
    }
    struct rc_actor *a;
    if (rc_actor_spawn(c->sys, child_fn, c, child_fini, NULL, &a) != RC_OK)
        return NULL;
    atomic_fetch_add(&c->starts, 1);
    return a;
}

struct giveup_rec {
    _Atomic int calls;
    char name[32];
    int reason;
};

static void on_giveup(void *arg, const char *name, int reason)
{
    struct giveup_rec *g = arg;
    strncpy(g->name, name, sizeof(g->name) - 1);
    g->reason = reason;
    atomic_fetch_add(&g->calls, 1);
}

/* A running system (workers 0: one per CPU) and a supervisor on it with
 * this intensity; g (NULL: none) records its giveup. */
static struct rc_supervisor *sup_start(struct rc_actor_system **sysp, uint32_t workers,
                                       uint32_t max_restarts, uint32_t period_ms,
                                       struct giveup_rec *g)
{
    struct rc_actor_system *sys =
        tact_sys_start(&(struct rc_actor_system_opts){.workers = workers});
    *sysp = sys;
    struct rc_supervisor_opts o = {.max_restarts = max_restarts,
                                   .period_ms = period_ms,
                                   .giveup = g ? on_giveup : NULL,
                                   .giveup_arg = g};
    struct rc_supervisor *sup;
    cr_assert_eq(rc_supervisor_new(sys, &o, &sup), RC_OK);
    return sup;
}

static void sup_end(struct rc_actor_system *sys, struct rc_supervisor *sup)
{
    rc_supervisor_free(sup);
    tact_sys_end(sys, NULL);
}

static void tell(struct rc_supervisor *sup, const char *name, uint32_t type)
{
    struct rc_actor *a = rc_supervisor_child(sup, name);
    cr_assert_not_null(a);
    cr_assert_eq(rc_actor_send(a, rc_msg_new(sizeof(struct rc_msg), type)), RC_OK);
    rc_actor_release(a);
}

/* Waits until the child named has a current actor other than old. */
static struct rc_actor *wait_new_child(struct rc_supervisor *sup, const char *name,
                                       struct rc_actor *old)
{
    uint64_t end = rc_clock_mono_ms() + 5000;
    while (rc_clock_mono_ms() < end) {
        struct rc_actor *a = rc_supervisor_child(sup, name);
        if (a && a != old)
            return a;
        rc_actor_release(a);
        rc_clock_sleep_ms(1);
    }
    return NULL;
}

/* Crashes the child named, whose current actor is cur; returns (and holds)
 * its restarted actor, cur released. */
static struct rc_actor *crash_and_restart(struct rc_supervisor *sup, const char *name,
                                          struct rc_actor *cur)
{
    tell(sup, name, MSG_CRASH);
    struct rc_actor *next = wait_new_child(sup, name, cur);
    cr_assert_not_null(next, "%s restarted", name);
    rc_actor_release(cur);
    return next;
}

Test(supervisor, restarts_on_crash_not_on_normal_exit)
{
    static struct giveup_rec g;
    struct rc_actor_system *sys;
    struct rc_supervisor *sup = sup_start(&sys, 2, 3, 60000, &g);
    static struct child_arg c;
    c.sys = sys;
    cr_assert_eq(rc_supervisor_add_child(sup, "worker", child_start, &c), RC_OK);
    cr_assert_eq(rc_supervisor_add_child(sup, "worker", child_start, &c), RC_EEXIST);
    struct rc_actor *first = rc_supervisor_child(sup, "worker");
    cr_assert_not_null(first);
    tell(sup, "worker", MSG_CRASH);
    struct rc_actor *second = wait_new_child(sup, "worker", first);
    cr_assert_not_null(second, "crashed child restarted");
    cr_assert_eq(rc_supervisor_restarts(sup), 1);
    cr_assert_eq(atomic_load(&c.starts), 2);
    cr_assert(rc_actor_stopped(first));
    /* A normal exit is not restarted. */
    tell(sup, "worker", MSG_QUIT);
    cr_assert(tact_wait_int(&c.finis, 2, 5000));
    rc_clock_sleep_ms(30);
    cr_assert_eq(atomic_load(&c.starts), 2);
    cr_assert_eq(rc_supervisor_restarts(sup), 1);
    cr_assert_null(rc_supervisor_child(sup, "worker"));
    cr_assert_null(rc_supervisor_child(sup, "nobody"));
    cr_assert_eq(atomic_load(&g.calls), 0);
    rc_actor_release(first);
    rc_actor_release(second);
    sup_end(sys, sup);
}

Test(supervisor, gives_up_over_intensity)
{
    static struct giveup_rec g;
    struct rc_actor_system *sys;
    struct rc_supervisor *sup = sup_start(&sys, 2, 2, 60000, &g);
    static struct child_arg c, other;
    c.sys = other.sys = sys;
    cr_assert_eq(rc_supervisor_add_child(sup, "flaky", child_start, &c), RC_OK);
    cr_assert_eq(rc_supervisor_add_child(sup, "steady", child_start, &other), RC_OK);
    struct rc_actor *cur = rc_supervisor_child(sup, "flaky");
    for (int i = 0; i < 2; i++) {
        cur = crash_and_restart(sup, "flaky", cur);
    }
    cr_assert_eq(rc_supervisor_restarts(sup), 2);
    tell(sup, "flaky", MSG_CRASH); /* the third within the period */
    cr_assert(tact_wait_int(&g.calls, 1, 5000));
    cr_assert_str_eq(g.name, "flaky");
    cr_assert_eq(g.reason, -1);
    cr_assert(rc_supervisor_gave_up(sup));
    /* The other child is stopped too (OTP: the supervisor shuts down). */
    cr_assert(tact_wait_int(&other.finis, 1, 5000));
    rc_clock_sleep_ms(20);
    cr_assert_eq(atomic_load(&g.calls), 1, "giveup called once");
    cr_assert_eq(rc_supervisor_restarts(sup), 2);
    cr_assert_eq(atomic_load(&c.starts), 3);
    cr_assert_null(rc_supervisor_child(sup, "flaky"));
    cr_assert_eq(rc_supervisor_add_child(sup, "late", child_start, &c), RC_ESTATE);
    rc_actor_release(cur);
    sup_end(sys, sup);
}

Test(supervisor, failed_start_counts_against_intensity)
{
    static struct giveup_rec g;
    struct rc_actor_system *sys;
    struct rc_supervisor *sup = sup_start(&sys, 0, 3, 60000, &g);
    static struct child_arg c;
    c.sys = sys;
    cr_assert_eq(rc_supervisor_add_child(sup, "x", child_start, &c), RC_OK);
    atomic_store(&c.fail_next_start, 10);
    tell(sup, "x", MSG_CRASH);
    cr_assert(tact_wait_int(&g.calls, 1, 5000));
    cr_assert_eq(rc_supervisor_restarts(sup), 3);
    cr_assert_eq(atomic_load(&c.fail_next_start), 7);
    sup_end(sys, sup);
}

/* Restarts older than the period no longer count. */
Test(supervisor, intensity_window_slides)
{
    static struct giveup_rec g;
    struct rc_actor_system *sys;
    struct rc_supervisor *sup = sup_start(&sys, 0, 1, 40, &g);
    static struct child_arg c;
    c.sys = sys;
    cr_assert_eq(rc_supervisor_add_child(sup, "x", child_start, &c), RC_OK);
    struct rc_actor *cur = rc_supervisor_child(sup, "x");
    for (int i = 0; i < 3; i++) {
        cur = crash_and_restart(sup, "x", cur);
        rc_clock_sleep_ms(60); /* > period: the restart ages out */
    }
    cr_assert_eq(rc_supervisor_restarts(sup), 3);
    cr_assert_eq(atomic_load(&g.calls), 0);
    rc_actor_release(cur);
    sup_end(sys, sup);
}

/* System stop: children stop with RC_ESHUTDOWN and are not restarted;
 * freeing the supervisor after the stop is fine. */
Test(supervisor, system_stop_does_not_restart)
{
    struct rc_actor_system *sys;
    struct rc_supervisor *sup = sup_start(&sys, 0, 5, 1000, NULL);
    static struct child_arg c;
    c.sys = sys;
    cr_assert_eq(rc_supervisor_add_child(sup, "a", child_start, &c), RC_OK);
    cr_assert_eq(rc_supervisor_add_child(sup, "b", child_start, &c), RC_OK);
    rc_actor_system_stop(sys);
    cr_assert_eq(atomic_load(&c.finis), 2);
    cr_assert_eq(atomic_load(&c.starts), 2);
    cr_assert_eq(rc_supervisor_restarts(sup), 0);
    rc_supervisor_free(sup);
    rc_actor_system_free(sys);
}

/* Freeing the supervisor stops its children with reason 0. */
Test(supervisor, free_stops_children)
{
    struct rc_actor_system *sys;
    struct rc_supervisor *sup = sup_start(&sys, 0, 5, 1000, NULL);
    static struct child_arg c;
    c.sys = sys;
    for (int i = 0; i < 5; i++) {
        char name[8] = {'c', (char)('0' + i), 0};
        cr_assert_eq(rc_supervisor_add_child(sup, name, child_start, &c), RC_OK);
    }
    rc_supervisor_free(sup);
    cr_assert(tact_wait_int(&c.finis, 5, 5000));
    struct rc_actor_system_stats st;
    uint64_t end = rc_clock_mono_ms() + 5000;
    do {
        rc_actor_system_stats(sys, &st);
        rc_clock_sleep_ms(1);
    } while (st.actors_live > 0 && rc_clock_mono_ms() < end);
    cr_assert_eq(st.actors_live, 0, "children and the supervisor actor stopped");
    cr_assert_eq(atomic_load(&c.starts), 5);
    tact_sys_end(sys, NULL);
}
