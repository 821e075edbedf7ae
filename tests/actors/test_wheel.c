/*
 * Tests of rc_wheel against a reference model, on the wheel's own simulated
 * tick clock: random arm / cancel / re-arm / advance across every level
 * boundary and slot wrap-around; each timer must fire exactly once, never
 * before its expiry and at most one tick after it (this wheel cascades, so
 * the test also checks it is exact), and cancelled timers never fire.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "rc_wheel.h"

struct mtimer {
    struct rc_wheel_timer wt; /* first */
    bool armed;               /* model */
    uint64_t due;             /* model: the tick it must fire at */
    uint64_t fired;           /* times fired */
};

struct model {
    struct rc_wheel w;
    struct mtimer *t;
    size_t n;
    uint64_t target; /* the advance in progress */
    uint64_t rng;
    size_t armed;
    bool chunked;         /* advance with rc_wheel_advance_some in small chunks */
    uint64_t interrupted; /* chunks that stopped part-way */
};

static uint64_t rnd(struct model *m)
{
    uint64_t x = m->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return m->rng = x;
}

static void fire_cb(struct rc_wheel_timer *wt, uint64_t tick, void *ctx)
{
    struct model *m = ctx;
    struct mtimer *t = (struct mtimer *)wt;
    cr_assert(t->armed, "a timer fired that was not armed");
    cr_assert_geq(tick, t->due, "fired early: tick %lu, due %lu", (unsigned long)tick,
                  (unsigned long)t->due);
    cr_assert_leq(tick, t->due + 1, "fired late: tick %lu, due %lu", (unsigned long)tick,
                  (unsigned long)t->due);
    cr_assert_eq(tick, t->due, "this wheel cascades, so it fires exactly");
    cr_assert_leq(tick, m->target);
    cr_assert(!rc_wheel_pending(wt));
    t->armed = false;
    t->fired++;
    m->armed--;
}

/* A delay that lands on every level, on and around its boundaries, in the
 * past, and beyond the wheel's range. */
static uint64_t pick_delay(struct model *m)
{
    switch (rnd(m) % 8) {
    case 0: /* around a level boundary */ {
        unsigned level = (unsigned)(rnd(m) % (RC_WHEEL_LEVELS + 1));
        uint64_t b = UINT64_C(1) << (RC_WHEEL_LEVEL_BITS * level);
        return b + (rnd(m) % 5) - 2;
    }
    case 1:
        return rnd(m) % 4; /* now, next, or soon */
    case 2:
        return rnd(m) % 64;
    case 3:
        return rnd(m) % 4096;
    case 4:
        return rnd(m) % 262144;
    case 5:
        return rnd(m) % (UINT64_C(1) << 24);
    case 6:
        return rnd(m) % (UINT64_C(1) << 38); /* up to beyond the range */
    default:
        return rnd(m) % 300;
    }
}

static void arm(struct model *m, struct mtimer *t)
{
    if (t->armed) {
        cr_assert(rc_wheel_del(&m->w, &t->wt));
        m->armed--;
    }
    uint64_t d = pick_delay(m);
    uint64_t expires;
    if (rnd(m) % 16 == 0 && m->w.now > 10)
        expires = m->w.now - 1 - rnd(m) % 10; /* in the past: fires next tick */
    else
        expires = m->w.now + d;
    rc_wheel_add(&m->w, &t->wt, expires);
    t->armed = true;
    t->due = expires < m->w.now ? m->w.now : expires;
    m->armed++;
}

static uint64_t model_next_due(struct model *m)
{
    uint64_t best = UINT64_MAX;
    for (size_t i = 0; i < m->n; i++)
        if (m->t[i].armed && m->t[i].due < best)
            best = m->t[i].due;
    return best;
}

static void arm(struct model *m, struct mtimer *t);

static void advance_to(struct model *m, uint64_t target)
{
    m->target = target;
    if (m->chunked) {
        /* Small budgets, with arms and cancels between the chunks, as the
         * timer thread does when it drops its lock. */
        while (!rc_wheel_advance_some(&m->w, target, 1 + rnd(m) % 40, fire_cb, m, NULL)) {
            struct mtimer *t = &m->t[rnd(m) % m->n];
            m->interrupted++;
            if (rnd(m) % 2) {
                arm(m, t);
            } else if (t->armed) {
                cr_assert(rc_wheel_del(&m->w, &t->wt));
                t->armed = false;
                m->armed--;
            }
        }
    } else {
        rc_wheel_advance(&m->w, target, fire_cb, m);
    }
    cr_assert_eq(m->w.now, target + 1);
    cr_assert_eq(m->w.count, m->armed);
    for (size_t i = 0; i < m->n; i++)
        if (m->t[i].armed)
            cr_assert_gt(m->t[i].due, target, "timer %zu (due %lu) did not fire by %lu", i,
                         (unsigned long)m->t[i].due, (unsigned long)target);
}

static void run_model_ex(uint64_t start, uint64_t seed, size_t ntimers, int steps, bool chunked)
{
    struct model *m = calloc(1, sizeof(*m));
    m->chunked = chunked;
    m->n = ntimers;
    m->t = calloc(ntimers, sizeof(*m->t));
    m->rng = seed;
    rc_wheel_init(&m->w, start);
    for (size_t i = 0; i < ntimers; i++)
        rc_wheel_timer_init(&m->t[i].wt);
    cr_assert_eq(rc_wheel_next(&m->w), RC_WHEEL_NEVER);
    for (int s = 0; s < steps; s++) {
        struct mtimer *t = &m->t[rnd(m) % ntimers];
        switch (rnd(m) % 10) {
        case 0:
        case 1:
        case 2:
        case 3: /* arm or re-arm */
            arm(m, t);
            break;
        case 4: /* cancel */
            cr_assert_eq(rc_wheel_del(&m->w, &t->wt), t->armed);
            if (t->armed)
                m->armed--;
            t->armed = false;
            cr_assert(!rc_wheel_del(&m->w, &t->wt), "a second cancel finds nothing");
            break;
        case 5: { /* the wheel's next event is a lower bound of the next due */
            uint64_t next = rc_wheel_next(&m->w);
            uint64_t due = model_next_due(m);
            cr_assert_leq(next, due);
            cr_assert_geq(next, m->w.now);
            if (next != RC_WHEEL_NEVER && next > m->w.now) {
                uint64_t before = m->w.count;
                advance_to(m, next - 1); /* nothing can fire before next */
                cr_assert_eq(m->w.count, before);
            }
            break;
        }
        case 6: /* a large jump, skipping levels */
            if (rnd(m) % 8 == 0) {
                advance_to(m, m->w.now + rnd(m) % (UINT64_C(1) << 26));
                break;
            }
            /* fall through */
        case 7: /* up to the next due exactly */ {
            uint64_t due = model_next_due(m);
            if (due != UINT64_MAX && due - m->w.now < (UINT64_C(1) << 32)) {
                advance_to(m, due);
                break;
            }
        }
            /* fall through */
        default: /* a few ticks */
            advance_to(m, m->w.now + rnd(m) % 70);
            break;
        }
    }
    /* Drain: everything armed fires, at its tick. */
    while (m->armed) {
        uint64_t due = model_next_due(m);
        advance_to(m, due);
    }
    cr_assert_eq(rc_wheel_next(&m->w), RC_WHEEL_NEVER);
    uint64_t fired = 0;
    for (size_t i = 0; i < ntimers; i++)
        fired += m->t[i].fired;
    cr_assert_gt(fired, 0);
    if (chunked)
        cr_assert_gt(m->interrupted, 100, "the chunked path was exercised");
    free(m->t);
    free(m);
}

static void run_model(uint64_t start, uint64_t seed, size_t ntimers, int steps)
{
    run_model_ex(start, seed, ntimers, steps, false);
}

Test(wheel, random_chunked_with_ops_between_chunks)
{
    run_model_ex(0, 0x5151, 300, 20000, true);
    run_model_ex((UINT64_C(1) << 24) - 7, 0x6262, 300, 20000, true);
    run_model_ex((UINT64_C(1) << 36) - 100, 0x7373, 300, 10000, true);
}

Test(wheel, random_from_zero)
{
    run_model(0, 0x1234567, 200, 20000);
}

Test(wheel, random_across_level_boundaries)
{
    /* Start just before block boundaries of each level, so slot indices of
     * every level wrap during the run. */
    for (unsigned level = 1; level <= RC_WHEEL_LEVELS; level++) {
        uint64_t b = UINT64_C(1) << (RC_WHEEL_LEVEL_BITS * level);
        run_model(b - 3, 0xabcdef + level, 100, 6000);
        run_model(5 * b - 1, 0x777 + level, 100, 6000);
    }
}

Test(wheel, random_far_start)
{
    run_model((UINT64_C(1) << 50) + 12345, 42, 300, 20000);
}

/* Every delay from 0 to 5000 ticks and every level boundary, from an odd
 * start: exact firing. */
Test(wheel, exhaustive_small_delays)
{
    struct model *m = calloc(1, sizeof(*m));
    m->n = 5000 + 3 * RC_WHEEL_LEVELS;
    m->t = calloc(m->n, sizeof(*m->t));
    rc_wheel_init(&m->w, 4093);
    size_t k = 0;
    for (uint64_t d = 0; d < 5000; d++, k++) {
        rc_wheel_add(&m->w, &m->t[k].wt, m->w.now + d);
        m->t[k].armed = true;
        m->t[k].due = m->w.now + d;
        m->armed++;
    }
    for (unsigned level = 1; level <= RC_WHEEL_LEVELS; level++)
        for (int off = -1; off <= 1; off++, k++) {
            uint64_t d = (UINT64_C(1) << (RC_WHEEL_LEVEL_BITS * level)) + (uint64_t)off;
            rc_wheel_add(&m->w, &m->t[k].wt, m->w.now + d);
            m->t[k].armed = true;
            m->t[k].due = m->w.now + d;
            m->armed++;
        }
    /* Advance one tick at a time for a while, then by dues. */
    for (int i = 0; i < 6000; i++)
        advance_to(m, m->w.now);
    while (m->armed)
        advance_to(m, model_next_due(m));
    for (size_t i = 0; i < m->n; i++)
        cr_assert_eq(m->t[i].fired, 1);
    free(m->t);
    free(m);
}

/* Callbacks may re-add the expired timer (periodic) and delete others. */
struct periodic {
    struct rc_wheel_timer wt;
    struct rc_wheel *w;
    struct rc_wheel_timer *victim;
    uint64_t period, fires, last;
};

static void periodic_cb(struct rc_wheel_timer *wt, uint64_t tick, void *ctx)
{
    struct periodic *p = (struct periodic *)wt;
    if (p->fires)
        cr_assert_eq(tick, p->last + p->period);
    p->last = tick;
    p->fires++;
    if (p->victim) {
        rc_wheel_del(p->w, p->victim); /* due the same tick: must not fire */
        p->victim = NULL;
    }
    if (p->fires < 100)
        rc_wheel_add(p->w, wt, tick + p->period);
}

static void victim_cb(struct rc_wheel_timer *wt, uint64_t tick, void *ctx)
{
    cr_assert_fail("a timer deleted by an earlier callback fired");
}

static void dispatch_cb(struct rc_wheel_timer *wt, uint64_t tick, void *ctx)
{
    if (wt == ctx)
        victim_cb(wt, tick, NULL);
    else
        periodic_cb(wt, tick, NULL);
}

Test(wheel, callbacks_rearm_and_delete)
{
    struct rc_wheel w;
    rc_wheel_init(&w, 100);
    struct periodic p = {.w = &w, .period = 77};
    struct rc_wheel_timer victim;
    rc_wheel_timer_init(&p.wt);
    rc_wheel_timer_init(&victim);
    /* Both due at 150 (level 0, no cascade): p, added last, is first in the
     * slot and deletes victim before it fires. */
    rc_wheel_add(&w, &victim, 150);
    rc_wheel_add(&w, &p.wt, 150);
    p.victim = &victim;
    rc_wheel_advance(&w, 100 + 77 * 200, dispatch_cb, &victim);
    cr_assert_eq(p.fires, 100);
    cr_assert_eq(w.count, 0);
    /* A re-add for a tick already processed gets the next tick. */
    struct rc_wheel_timer late;
    rc_wheel_timer_init(&late);
    rc_wheel_add(&w, &late, 5);
    cr_assert_eq(rc_wheel_next(&w), w.now);
}

Test(wheel, many_timers)
{
    enum { N = 200000 };
    struct model *m = calloc(1, sizeof(*m));
    m->n = N;
    m->t = calloc(N, sizeof(*m->t));
    m->rng = 99;
    rc_wheel_init(&m->w, 1000);
    for (size_t i = 0; i < N; i++) {
        uint64_t d = rnd(m) % 600000; /* up to 10 min at 1 ms */
        rc_wheel_add(&m->w, &m->t[i].wt, m->w.now + d);
        m->t[i].armed = true;
        m->t[i].due = m->w.now + d;
        m->armed++;
    }
    m->target = 1000 + 600000;
    size_t fired = rc_wheel_advance(&m->w, m->target, fire_cb, m);
    cr_assert_eq(fired, N);
    cr_assert_eq(m->armed, 0);
    free(m->t);
    free(m);
}
