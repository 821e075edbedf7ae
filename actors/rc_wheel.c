/*
 * rc_wheel: the hierarchical timing wheel; see rc_wheel.h for the level
 * table and the cascading rule.
 */
#include "rc_wheel.h"

#include <string.h>

#define MASK (RC_WHEEL_SLOTS - 1u)

static inline unsigned level_shift(unsigned level)
{
    return level * RC_WHEEL_LEVEL_BITS;
}

/* Rotates the 64-bit occupancy map right by s, so bit 0 is slot s. */
static inline uint64_t rotr64(uint64_t v, unsigned s)
{
    s &= 63u;
    return s ? (v >> s) | (v << (64u - s)) : v;
}

void rc_wheel_init(struct rc_wheel *w, uint64_t now)
{
    memset(w, 0, sizeof(*w));
    w->now = now;
    w->work_level = -1;
}

static void link_slot(struct rc_wheel *w, struct rc_wheel_timer *t, unsigned level, unsigned idx)
{
    struct rc_wheel_timer **head = &w->slot[level][idx];
    t->next = *head;
    if (t->next)
        t->next->pprev = &t->next;
    *head = t;
    t->pprev = head;
    t->where = level * RC_WHEEL_SLOTS + idx;
    w->occupied[level] |= UINT64_C(1) << idx;
}

/* Places t by its expiry relative to w->now (t->expires already set). */
static void place(struct rc_wheel *w, struct rc_wheel_timer *t)
{
    uint64_t at = t->expires < w->now ? w->now : t->expires;
    uint64_t delta = at - w->now;
    unsigned level = 0;
    if (delta >= RC_WHEEL_SLOTS) {
        /* delta in [2^(6L), 2^(6L+6)): L = floor(log2(delta) / 6). */
        level = (unsigned)(63 - __builtin_clzll(delta)) / RC_WHEEL_LEVEL_BITS;
        if (level >= RC_WHEEL_LEVELS) {
            /* Too far: park at the farthest slot of the top level.  Its
             * cascade comes before the expiry and re-places the timer. */
            level = RC_WHEEL_LEVELS - 1;
            at = w->now + (RC_WHEEL_RANGE - 1);
        }
    }
    /* At level L >= 1, delta >= 2^(6L) puts the expiry in a later block than
     * the current one, so the slot's next cascade comes at or before the
     * expiry's block start and not a lap late (delta < 2^(6L+6)). */
    link_slot(w, t, level, (unsigned)(at >> level_shift(level)) & MASK);
}

void rc_wheel_add(struct rc_wheel *w, struct rc_wheel_timer *t, uint64_t expires)
{
    t->expires = expires;
    place(w, t);
    w->count++;
}

/* Unlinks t from whatever list holds it.  `where` may be stale for a timer
 * on w->work (it names the slot it came from): clearing that slot's bit
 * only when the slot is empty is right either way. */
static void unlink_timer(struct rc_wheel *w, struct rc_wheel_timer *t)
{
    *t->pprev = t->next;
    if (t->next)
        t->next->pprev = t->pprev;
    if (t->where != RC_WHEEL_DETACHED) {
        unsigned level = t->where / RC_WHEEL_SLOTS, idx = t->where % RC_WHEEL_SLOTS;
        if (!w->slot[level][idx])
            w->occupied[level] &= ~(UINT64_C(1) << idx);
    }
    t->next = NULL;
    t->pprev = NULL;
    t->where = RC_WHEEL_DETACHED;
}

bool rc_wheel_del(struct rc_wheel *w, struct rc_wheel_timer *t)
{
    if (!t->pprev)
        return false;
    unlink_timer(w, t);
    w->count--;
    return true;
}

uint64_t rc_wheel_next(const struct rc_wheel *w)
{
    if (w->work_level >= 0)
        return w->work_tick; /* a tick is being processed: resume it */
    if (w->count == 0)
        return RC_WHEEL_NEVER;
    uint64_t best = RC_WHEEL_NEVER;
    /* Level 0: slot i holds the timers of the one tick in [now, now + 63]
     * congruent to i. */
    uint64_t r = rotr64(w->occupied[0], (unsigned)(w->now & MASK));
    if (r)
        best = w->now + (uint64_t)__builtin_ctzll(r);
    /* Level L: slot j cascades at the start of every block b (of 2^(6L)
     * ticks) with b % 64 == j; the first such start at or after now. */
    for (unsigned level = 1; level < RC_WHEEL_LEVELS; level++) {
        if (!w->occupied[level])
            continue;
        unsigned sh = level_shift(level);
        uint64_t block = (w->now + ((UINT64_C(1) << sh) - 1)) >> sh;
        r = rotr64(w->occupied[level], (unsigned)(block & MASK));
        uint64_t at = (block + (uint64_t)__builtin_ctzll(r)) << sh;
        if (at < best)
            best = at;
    }
    return best;
}

/* Moves the list of one slot to w->work (timers there stay pending: a del
 * unlinks them through pprev; their stale `where` is harmless, see
 * unlink_timer). */
static void detach_slot(struct rc_wheel *w, unsigned level, unsigned idx)
{
    w->work = w->slot[level][idx];
    if (w->work)
        w->work->pprev = &w->work;
    w->slot[level][idx] = NULL;
    w->occupied[level] &= ~(UINT64_C(1) << idx);
    w->work_level = (int)level;
}

/* The next slot to work on for tick w->work_tick at a level below `below`:
 * cascades from the highest level whose block starts at the tick down to 1,
 * then level 0's expiries.  A timer moved down lands in a later slot than
 * the current one of its new level (its distance is at least that level's
 * granularity) or in level 0, so one pass per level suffices. */
static void next_phase(struct rc_wheel *w, unsigned below)
{
    uint64_t tick = w->work_tick;
    for (unsigned level = below - 1; level >= 1; level--) {
        if (tick & ((UINT64_C(1) << level_shift(level)) - 1))
            continue; /* no block of this level starts here */
        unsigned idx = (unsigned)(tick >> level_shift(level)) & MASK;
        if (w->occupied[level] & (UINT64_C(1) << idx)) {
            detach_slot(w, level, idx);
            return;
        }
    }
    /* Expire level 0's slot.  w->now moves past the tick first, so a timer
     * added now for this tick (or earlier) goes to the next one. */
    detach_slot(w, 0, (unsigned)(tick & MASK));
    w->now = tick + 1;
}

static struct rc_wheel_timer *pop_work(struct rc_wheel *w)
{
    struct rc_wheel_timer *t = w->work;
    w->work = t->next;
    if (w->work)
        w->work->pprev = &w->work;
    t->next = NULL;
    t->pprev = NULL;
    t->where = RC_WHEEL_DETACHED;
    return t;
}

bool rc_wheel_advance_some(struct rc_wheel *w, uint64_t now, size_t budget, rc_wheel_expire_cb cb,
                           void *ctx, size_t *fired)
{
    size_t done = 0;
    for (;;) {
        if (w->work_level > 0) {
            /* Cascading: re-place against w->now (== work_tick). */
            while (w->work && done < budget) {
                place(w, pop_work(w));
                done++;
            }
            if (w->work)
                return false;
            next_phase(w, (unsigned)w->work_level);
            continue;
        }
        if (w->work_level == 0) {
            while (w->work && done < budget) {
                struct rc_wheel_timer *t = pop_work(w);
                w->count--;
                done++;
                if (fired)
                    (*fired)++;
                cb(t, w->work_tick, ctx);
            }
            if (w->work)
                return false;
            w->work_level = -1;
        }
        if (w->now > now)
            return true;
        /* Skip ticks that have nothing to do (no expiry, no cascade of a
         * non-empty slot): doing nothing for them is what walking would do. */
        uint64_t next = rc_wheel_next(w);
        if (next > now) {
            w->now = now + 1;
            return true;
        }
        w->now = next;
        w->work_tick = next;
        next_phase(w, RC_WHEEL_LEVELS);
        if (done >= budget)
            return false;
    }
}

size_t rc_wheel_advance(struct rc_wheel *w, uint64_t now, rc_wheel_expire_cb cb, void *ctx)
{
    size_t fired = 0;
    rc_wheel_advance_some(w, now, SIZE_MAX, cb, ctx, &fired);
    return fired;
}
