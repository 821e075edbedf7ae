/*
 * rc_wheel: a hierarchical timing wheel (Varghese & Lauck, scheme 7), the
 * store behind rc_timer_arm.  It is a plain single-threaded data structure
 * driven by a tick counter; the actor system puts one behind a mutex and
 * drives it from its timer thread, the tests drive it with a simulated
 * clock.
 *
 * Six levels of 64 slots.  A timer is placed in the level whose range holds
 * its distance from the wheel's current tick, in the slot its expiry tick
 * selects at that level's granularity:
 *
 *   level  granularity (ticks)   distance covered (ticks)  at 1 ms per tick
 *     0    1                     [0, 64)                   64 ms
 *     1    64                    [64, 4096)                ~4 s
 *     2    4096                  [4096, 262144)            ~4.4 min
 *     3    262144                [2^18, 2^24)              ~4.7 h
 *     4    16777216              [2^24, 2^30)              ~12.4 days
 *     5    1073741824            [2^30, 2^36)              ~795 days
 *   beyond 2^36 ticks: parked in level 5 at the farthest slot and re-placed
 *   when that slot cascades (still never early).
 *
 * Cascading (documented choice).  Unlike Linux's non-cascading wheel, which
 * lets a timer fire up to 1/8 of its level's granularity late, this wheel
 * cascades: when the tick counter crosses a level-L block boundary, the one
 * level-L slot for the new block is emptied and its timers are re-placed by
 * their exact expiry, so they move down one or more levels.  A timer thus
 * moves at most five times in its life (amortised O(1)) and fires exactly at
 * its expiry tick: never early, never late in the wheel's own model (the
 * real-time lateness is the timer thread's wake-up latency, at most one tick
 * plus scheduling noise).
 *
 * Bounded pauses: rc_wheel_advance_some stops after a budget of timers
 * moved or expired and resumes where it stopped, so a driver that holds a
 * lock around the wheel can release it between chunks even while a big
 * slot cascades.
 *
 * Costs: add and del are O(1) (a shift, a count-leading-zeros and a list
 * splice; del unlinks via pprev).  rc_wheel_next finds the next tick that
 * has work with one 64-bit rotate + count-trailing-zeros per level, so the
 * driver sleeps until then and rc_wheel_advance skips empty ticks instead of
 * walking them.  Memory: 6 x 64 list heads (3 KiB) + 32 bytes per timer
 * embedded in its owner: a million armed timers cost no allocation.
 *
 * Ticks are uint64_t and never wrap in practice (2^64 ms is 584 million
 * years); slot indices wrap around each level's 64 slots, which the tests
 * cover.
 */
#ifndef RC_WHEEL_H
#define RC_WHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_WHEEL_LEVEL_BITS 6
#define RC_WHEEL_SLOTS      (1u << RC_WHEEL_LEVEL_BITS)
#define RC_WHEEL_LEVELS     6
/* Timers farther than this are parked at the top level (see above). */
#define RC_WHEEL_RANGE (UINT64_C(1) << (RC_WHEEL_LEVEL_BITS * RC_WHEEL_LEVELS))
#define RC_WHEEL_NEVER UINT64_MAX

/* Embed in the timer's owner; all fields belong to the wheel. */
struct rc_wheel_timer {
    struct rc_wheel_timer *next;
    struct rc_wheel_timer **pprev; /* NULL: not pending */
    uint64_t expires;              /* tick, as given to rc_wheel_add */
    uint32_t where;                /* level * 64 + slot; RC_WHEEL_DETACHED while expiring */
    uint32_t user;                 /* never touched by the wheel: its owner's (it fills
                                      what would be padding; rc_timer keeps its
                                      generation here) */
};

#define RC_WHEEL_DETACHED UINT32_MAX

struct rc_wheel {
    uint64_t now; /* the next tick to process: every tick < now is done */
    size_t count; /* pending timers */
    uint64_t occupied[RC_WHEEL_LEVELS];
    struct rc_wheel_timer *slot[RC_WHEEL_LEVELS][RC_WHEEL_SLOTS];
    /* A tick in progress (rc_wheel_advance_some stopped part-way): */
    struct rc_wheel_timer *work; /* timers detached from one slot */
    int work_level;              /* -1: none; >= 1: cascading; 0: expiring */
    uint64_t work_tick;          /* the tick being processed */
};

/* Called by rc_wheel_advance for each expired timer, already removed from
 * the wheel (the callback may re-add it or free it); tick is the tick being
 * processed (== max(expires, the tick current when it was added)). */
typedef void (*rc_wheel_expire_cb)(struct rc_wheel_timer *t, uint64_t tick, void *ctx);

/* An empty wheel whose first tick to process is now. */
void rc_wheel_init(struct rc_wheel *w, uint64_t now);
static inline void rc_wheel_timer_init(struct rc_wheel_timer *t)
{
    t->next = NULL;
    t->pprev = NULL;
    t->expires = 0;
    t->where = RC_WHEEL_DETACHED;
    t->user = 0;
}
static inline bool rc_wheel_pending(const struct rc_wheel_timer *t)
{
    return t->pprev != NULL;
}
/* Adds t (not pending) to fire at tick expires; a tick already processed
 * means the next one.  O(1). */
void rc_wheel_add(struct rc_wheel *w, struct rc_wheel_timer *t, uint64_t expires);
/* Removes t if pending; returns whether it was.  O(1). */
bool rc_wheel_del(struct rc_wheel *w, struct rc_wheel_timer *t);
/* A tick >= w->now before which advancing does nothing (the next expiry or
 * cascade of a non-empty slot); RC_WHEEL_NEVER when the wheel is empty. */
uint64_t rc_wheel_next(const struct rc_wheel *w);
/* Processes every tick up to and including now, calling cb for each
 * expired timer.  Returns the number expired.  cb may add and delete
 * timers (including re-adding the expired one). */
size_t rc_wheel_advance(struct rc_wheel *w, uint64_t now, rc_wheel_expire_cb cb, void *ctx);
/* As rc_wheel_advance, but stops after touching about budget timers (moved
 * by a cascade or expired), so a caller holding a lock can drop it between
 * calls: the tick in progress is resumed by the next call, and adds and
 * dels in between are fine.  Returns true when caught up with now; *fired
 * (if not NULL) is increased by the number expired. */
bool rc_wheel_advance_some(struct rc_wheel *w, uint64_t now, size_t budget, rc_wheel_expire_cb cb,
                           void *ctx, size_t *fired);

#endif
