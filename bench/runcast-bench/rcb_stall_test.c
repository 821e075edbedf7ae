/*
 * Unit tests of rcb_stall, the machine-stall probe: the overlap arithmetic
 * on hand-made stretches, and a short real run's invariants (no timing is
 * asserted: how late the probes wake is what the probe measures).
 */
#include <criterion/criterion.h>
#include <sched.h>
#include <time.h>

#include "rcb_stall.h"

#define MS 1000000ull

Test(stall, overlap_is_the_longest_common_stretch)
{
    /* a: [0,10) [20,40) [50,52); b: [5,8) [30,60) */
    const struct rcb_stall_stretch a[] = {{0, 10 * MS}, {20 * MS, 40 * MS}, {50 * MS, 52 * MS}};
    const struct rcb_stall_stretch b[] = {{5 * MS, 8 * MS}, {30 * MS, 60 * MS}};
    uint32_t over = 99;
    cr_assert_eq(rcb_stall_overlap(a, 3, b, 2, 5 * MS, &over), 10 * MS); /* [30,40) */
    cr_assert_eq(over, 1, "only [30,40) is over 5 ms (the others: 3 and 2 ms)");
    /* symmetric */
    cr_assert_eq(rcb_stall_overlap(b, 2, a, 3, 2 * MS, &over), 10 * MS);
    cr_assert_eq(over, 2, "[5,8) and [30,40) are over 2 ms; [50,52) is not");
}

Test(stall, stretches_that_only_touch_or_miss_do_not_overlap)
{
    const struct rcb_stall_stretch a[] = {{0, 10 * MS}, {30 * MS, 31 * MS}};
    const struct rcb_stall_stretch b[] = {{10 * MS, 20 * MS}, {40 * MS, 50 * MS}};
    uint32_t over = 99;
    cr_assert_eq(rcb_stall_overlap(a, 2, b, 2, 0, &over), 0);
    cr_assert_eq(over, 0);
    cr_assert_eq(rcb_stall_overlap(a, 2, b, 0, 0, &over), 0, "an empty list");
    cr_assert_eq(over, 0);
}

Test(stall, a_short_run_reports_one_probe_per_cpu_up_to_two)
{
    cpu_set_t set;
    cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
    uint32_t want = CPU_COUNT(&set) >= 2 ? 2 : 1;
    struct rcb_stall *s = rcb_stall_start();
    cr_assert_not_null(s);
    nanosleep(&(struct timespec){.tv_nsec = 50000000}, NULL);
    struct rcb_stall_result r;
    rcb_stall_stop(s, &r);
    cr_assert_eq(r.probes, want);
    cr_assert_leq(r.together_max_ns, r.late_max_ns,
                  "both late together cannot outlast the latest single wake-up");
    rcb_stall_stop(NULL, &r);
    cr_assert_eq(r.probes, 0);
    cr_assert_eq(r.late_max_ns, 0);
}
