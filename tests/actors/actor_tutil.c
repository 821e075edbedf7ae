#include "actor_tutil.h"

#include <criterion/criterion.h>

#include "rc_clock.h"
#include "rc_error.h"

struct rc_actor_system *tact_sys_new(const struct rc_actor_system_opts *opts)
{
    struct rc_actor_system *sys = NULL;
    cr_assert_eq(rc_actor_system_new(&sys, opts), RC_OK);
    return sys;
}

struct rc_actor_system *tact_sys_start(const struct rc_actor_system_opts *opts)
{
    struct rc_actor_system *sys = tact_sys_new(opts);
    cr_assert_eq(rc_actor_system_start(sys), RC_OK);
    return sys;
}

void tact_sys_end(struct rc_actor_system *sys, struct rc_actor *a)
{
    tact_sys_end_all(sys, &a, 1);
}

void tact_sys_end_all(struct rc_actor_system *sys, struct rc_actor **a, size_t n)
{
    rc_actor_system_stop(sys);
    for (size_t i = 0; i < n; i++)
        rc_actor_release(a[i]);
    rc_actor_system_free(sys);
}

/* seq_cst, as the tests' writers increment: once the count is seen, what
 * the writer did before its increment is visible to the assertions that
 * follow the wait. */
static bool int_reached(const void *v, uint64_t want)
{
    return atomic_load_explicit((_Atomic int *)v, memory_order_seq_cst) >= (int)want;
}

static bool u64_reached(const void *v, uint64_t want)
{
    return atomic_load_explicit((_Atomic uint64_t *)v, memory_order_seq_cst) >= want;
}

static bool wait_for(bool (*reached)(const void *, uint64_t), const void *v, uint64_t want,
                     uint64_t ms)
{
    uint64_t end = rc_clock_mono_ms() + ms;
    while (!reached(v, want)) {
        if (rc_clock_mono_ms() > end)
            return false;
        rc_clock_sleep_ms(1);
    }
    return true;
}

bool tact_wait_int(_Atomic int *v, int want, uint64_t ms)
{
    return wait_for(int_reached, v, (uint64_t)want, ms);
}

bool tact_wait_u64(_Atomic uint64_t *v, uint64_t want, uint64_t ms)
{
    return wait_for(u64_reached, v, want, ms);
}
