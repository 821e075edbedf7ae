/*
 * Helpers shared by the tests of actors/: a system built inside the test
 * body (Criterion forks a process per test, and the runtime's threads do
 * not survive a fork), its teardown, and bounded polls for a counter that
 * another thread raises.
 */
#ifndef ACTOR_TUTIL_H
#define ACTOR_TUTIL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rc_actor.h"

/* rc_actor_system_new with opts (NULL: defaults), asserting it worked. */
struct rc_actor_system *tact_sys_new(const struct rc_actor_system_opts *opts);
/* tact_sys_new, then rc_actor_system_start asserting it worked. */
struct rc_actor_system *tact_sys_start(const struct rc_actor_system_opts *opts);
/* Stops the system, releases a (NULL: none) once every actor has stopped,
 * and frees the system. */
void tact_sys_end(struct rc_actor_system *sys, struct rc_actor *a);
/* As tact_sys_end for n actors a[0..n). */
void tact_sys_end_all(struct rc_actor_system *sys, struct rc_actor **a, size_t n);

/* Poll (1 ms) until *v >= want; false after ms milliseconds (want >= 0).
 * The loads are seq_cst: what the writer did before its increment is
 * visible after. */
bool tact_wait_int(_Atomic int *v, int want, uint64_t ms);
bool tact_wait_u64(_Atomic uint64_t *v, uint64_t want, uint64_t ms);

#endif
