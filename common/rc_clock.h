/*
 * rc_clock: the clocks runcast reads.
 *
 * Monotonic time drives every timeout (watchdogs, retention, heartbeats);
 * wall time (ms since the Unix epoch) is what goes on the wire (`ts`).
 */
#ifndef RC_CLOCK_H
#define RC_CLOCK_H

#include <pthread.h>
#include <stdint.h>

/* Monotonic clock in nanoseconds / milliseconds. */
uint64_t rc_clock_mono_ns(void);
uint64_t rc_clock_mono_ms(void);

/* Wall clock: milliseconds since the Unix epoch. */
int64_t rc_clock_wall_ms(void);

/* Initialises cv so that its timed waits measure their deadline on the
 * monotonic clock (the one rc_clock_mono_* read), not on wall time, which
 * can jump.  Returns pthread_cond_init's result. */
int rc_clock_cond_init(pthread_cond_t *cv);

/* Sleeps for ms milliseconds (restarting after signals). */
void rc_clock_sleep_ms(uint64_t ms);

#endif
