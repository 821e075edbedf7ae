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
    uint64_t longest = 99;
    rcb_stall_intersect(a, 3, b, 2, 5 * MS, &longest, &over, NULL);
    cr_assert_eq(longest, 10 * MS); /* [30,40) */
    cr_assert_eq(over, 1, "only [30,40) is over 5 ms (the others: 3 and 2 ms)");
    /* symmetric */
    rcb_stall_intersect(b, 2, a, 3, 2 * MS, &longest, &over, NULL);
    cr_assert_eq(longest, 10 * MS);
    cr_assert_eq(over, 2, "[5,8) and [30,40) are over 2 ms; [50,52) is not");
}

Test(stall, stretches_that_only_touch_or_miss_do_not_overlap)
{
    const struct rcb_stall_stretch a[] = {{0, 10 * MS}, {30 * MS, 31 * MS}};
    const struct rcb_stall_stretch b[] = {{10 * MS, 20 * MS}, {40 * MS, 50 * MS}};
    uint32_t over = 99;
    uint64_t longest = 99;
    cr_assert_eq(rcb_stall_intersect(a, 2, b, 2, 0, &longest, &over, NULL), 0);
    cr_assert_eq(longest, 0);
    cr_assert_eq(over, 0);
    cr_assert_eq(rcb_stall_intersect(a, 2, b, 0, 0, &longest, &over, NULL), 0, "an empty list");
    cr_assert_eq(over, 0);
}

Test(stall, intersect_lists_every_common_stretch_in_order)
{
    /* a: [0,10) [20,40) [50,52); b: [5,8) [30,60) */
    const struct rcb_stall_stretch a[] = {{0, 10 * MS}, {20 * MS, 40 * MS}, {50 * MS, 52 * MS}};
    const struct rcb_stall_stretch b[] = {{5 * MS, 8 * MS}, {30 * MS, 60 * MS}};
    struct rcb_stall_stretch out[5];
    uint64_t longest;
    uint32_t over;
    cr_assert_eq(rcb_stall_intersect(a, 3, b, 2, 0, &longest, &over, out), 3);
    cr_assert_eq(longest, 10 * MS, "the list's longest, [30,40)");
    cr_assert_eq(out[0].from, 5 * MS);
    cr_assert_eq(out[0].to, 8 * MS);
    cr_assert_eq(out[1].from, 30 * MS);
    cr_assert_eq(out[1].to, 40 * MS);
    cr_assert_eq(out[2].from, 50 * MS);
    cr_assert_eq(out[2].to, 52 * MS);
    const struct rcb_stall_stretch c[] = {{10 * MS, 20 * MS}};
    cr_assert_eq(rcb_stall_intersect(a, 3, c, 1, 0, &longest, &over, out), 0,
                 "touching is not overlapping");
    cr_assert_eq(rcb_stall_intersect(a, 3, c, 0, 0, &longest, &over, out), 0, "an empty list");
}

Test(stall, covered_sums_the_stalled_part_of_an_interval)
{
    const struct rcb_stall_stretch v[] = {
        {10 * MS, 20 * MS}, {30 * MS, 35 * MS}, {50 * MS, 60 * MS}};
    cr_assert_eq(rcb_stall_covered(v, 3, 0, 5 * MS), 0, "before every stretch");
    cr_assert_eq(rcb_stall_covered(v, 3, 12 * MS, 18 * MS), 6 * MS, "inside one");
    cr_assert_eq(rcb_stall_covered(v, 3, 15 * MS, 32 * MS), 7 * MS,
                 "the end of one, the start of the next");
    cr_assert_eq(rcb_stall_covered(v, 3, 0, 100 * MS), 25 * MS, "all of them");
    cr_assert_eq(rcb_stall_covered(v, 3, 20 * MS, 30 * MS), 0, "between two, touching both");
    cr_assert_eq(rcb_stall_covered(v, 3, 55 * MS, 80 * MS), 5 * MS, "the last, then past the end");
    cr_assert_eq(rcb_stall_covered(v, 0, 0, 100 * MS), 0, "no stretches");
}

Test(stall, outside_takes_the_stall_out_of_a_lateness)
{
    struct rcb_stall_stretch v[] = {{100 * MS, 112 * MS}};
    struct rcb_stall_result r = {.probes = 2, .together = v, .n_together = 1};
    /* due at 98 ms, 16 ms late: 12 of them the machine stopped */
    cr_assert_eq(rcb_stall_outside(&r, 98 * MS, 16 * MS), 4 * MS);
    /* a lateness that ends before the stall keeps all of it */
    cr_assert_eq(rcb_stall_outside(&r, 80 * MS, 15 * MS), 15 * MS);
    struct rcb_stall_result none = {0};
    cr_assert_eq(rcb_stall_outside(&none, 98 * MS, 16 * MS), 16 * MS, "no list: nothing taken out");
}

Test(stall, a_tally_keeps_the_largest_left_and_counts_ticks)
{
    struct rcb_stall_stretch v[] = {{100 * MS, 112 * MS}};
    struct rcb_stall_result r = {.probes = 2, .together = v, .n_together = 1};
    struct rcb_stall_tally t = {0};
    rcb_stall_tally_add(&t, &r, 98 * MS, 16 * MS, 10 * MS); /* over a tick, 4 left: within */
    rcb_stall_tally_add(&t, &r, 10 * MS, 3 * MS, 10 * MS);  /* under a tick */
    rcb_stall_tally_add(&t, &r, 20 * MS, 11 * MS, 10 * MS); /* over, no stall: 11 left */
    cr_assert_eq(t.max_ns, 11 * MS);
    cr_assert_eq(t.over_tick, 2);
    cr_assert_eq(t.within_tick, 1);
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
    uint64_t longest = 0;
    for (uint32_t i = 0; i < r.n_together; i++) {
        cr_assert_lt(r.together[i].from, r.together[i].to);
        if (i > 0)
            cr_assert_leq(r.together[i - 1].to, r.together[i].from, "in order, not overlapping");
        if (r.together[i].to - r.together[i].from > longest)
            longest = r.together[i].to - r.together[i].from;
    }
    cr_assert_eq(longest, r.together_max_ns, "the list's longest is the figure");
    rcb_stall_result_fini(&r);
    rcb_stall_stop(NULL, &r);
    cr_assert_eq(r.probes, 0);
    cr_assert_eq(r.late_max_ns, 0);
}
