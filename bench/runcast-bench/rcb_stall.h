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

struct rcb_stall_result {
    uint32_t probes;            /* threads that ran (1 when only one CPU is allowed) */
    uint64_t late_max_ns;       /* the latest single wake-up, either probe */
    uint64_t together_max_ns;   /* longest stretch during which both probes were late */
    uint32_t together_over_5ms; /* such stretches longer than 5 ms */
};

/* A stretch during which a probe was late: [from, to) in ns. */
struct rcb_stall_stretch {
    uint64_t from, to;
};

/* The longest overlap between a stretch of a and one of b (both sorted by
 * time, not overlapping within a list); *over counts overlaps longer than
 * over_ns.  Pure: the probe's arithmetic, tested on its own. */
uint64_t rcb_stall_overlap(const struct rcb_stall_stretch *a, uint32_t na,
                           const struct rcb_stall_stretch *b, uint32_t nb, uint64_t over_ns,
                           uint32_t *over);

/* Starts the probe threads; NULL if none could start. */
struct rcb_stall *rcb_stall_start(void);
/* Stops them, fills *r, frees s.  NULL s: *r zeroed. */
void rcb_stall_stop(struct rcb_stall *s, struct rcb_stall_result *r);

#endif
