/*
 * rcb_stall: a probe for stalls of the machine itself, run beside a
 * measurement so that its table can say how much of a latency tail the
 * machine alone would have caused.
 *
 * Two threads, each pinned to its own CPU (the first two the process may
 * use), sleep 1 ms at a time to absolute deadlines and record every wake-up
 * more than 1 ms late.  A late wake-up on one CPU is that CPU busy or held;
 * both probes late over the same stretch means neither CPU ran a waiting
 * thread for that long: on a 2-vCPU VM, the VM not running (or both CPUs
 * held by kernel work that does not yield).  Cost: 2,000 short wake-ups a
 * second.
 */
#ifndef RCB_STALL_H
#define RCB_STALL_H

#include <stdint.h>

struct rcb_stall;

/* A stretch during which a probe was late: [from, to) in ns of
 * CLOCK_MONOTONIC (the clock of rcb_now_ns, so that a measurement can
 * compare its own times with them). */
struct rcb_stall_stretch {
    uint64_t from, to;
};

struct rcb_stall_result {
    uint32_t probes;            /* threads that ran (1 when only one CPU is allowed) */
    uint64_t late_max_ns;       /* the latest single wake-up, either probe */
    uint64_t together_max_ns;   /* longest stretch during which both probes were late */
    uint32_t together_over_5ms; /* such stretches longer than 5 ms */
    /* Every stretch during which both probes were late, in time order and
     * not overlapping (none with one probe); rcb_stall_result_fini frees. */
    struct rcb_stall_stretch *together;
    uint32_t n_together;
};

/* The overlaps of a's and b's stretches (each list sorted by time, not
 * overlapping within itself): the longest in *longest, how many are longer
 * than over_ns in *over, and (out not NULL, with room for na + nb) each of
 * them in time order; returns how many.  Pure: the probe's arithmetic,
 * tested on its own. */
uint32_t rcb_stall_intersect(const struct rcb_stall_stretch *a, uint32_t na,
                             const struct rcb_stall_stretch *b, uint32_t nb, uint64_t over_ns,
                             uint64_t *longest, uint32_t *over, struct rcb_stall_stretch *out);

/* How much of [from, to) the stretches v (sorted, not overlapping) cover:
 * the part of an interval the machine was stalled.  Pure. */
uint64_t rcb_stall_covered(const struct rcb_stall_stretch *v, uint32_t n, uint64_t from,
                           uint64_t to);

/* A lateness with the machine's stalls taken out: late less the part of
 * [due, due + late) during which both probes of r were late (no thread of
 * the machine could have acted then, whatever its design). */
uint64_t rcb_stall_outside(const struct rcb_stall_result *r, uint64_t due, uint64_t late);

/* The watchdog goal's tick (runcastd's default --watchdog-tick), the unit
 * both benches' tallies count in. */
#define RCB_STALL_GOAL_TICK_NS 10000000ull

/* Over many terminals: the largest lateness rcb_stall_outside leaves, the
 * terminals more than a tick late, and how many of those fall within a
 * tick once the stall is taken out.  Zero-initialise, then add each. */
struct rcb_stall_tally {
    uint64_t max_ns;
    uint32_t over_tick;
    uint32_t within_tick;
};
void rcb_stall_tally_add(struct rcb_stall_tally *t, const struct rcb_stall_result *r, uint64_t due,
                         uint64_t late, uint64_t tick_ns);

/* Starts the probe threads; NULL if none could start. */
struct rcb_stall *rcb_stall_start(void);
/* Stops them, fills *r, frees s.  NULL s: *r zeroed. */
void rcb_stall_stop(struct rcb_stall *s, struct rcb_stall_result *r);
/* Frees what rcb_stall_stop allocated in r (r->together). */
void rcb_stall_result_fini(struct rcb_stall_result *r);

#endif
