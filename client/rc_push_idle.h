/*
 * rc_push_idle: knowing when a PUSH socket's last message left the process.
 *
 * A completed nng send on PUSH only means a pipe took the message; its write
 * to the transport may still be under way, and nng 1.5.2's nng_close aborts
 * it (no working linger).  PUSH raises its send-poll fd when a pipe is idle
 * again, i.e. when its previous write finished.  The client library, the
 * guarantee suite's publisher and the broker tests all wait on that, through
 * these two calls.
 */
#ifndef RC_PUSH_IDLE_H
#define RC_PUSH_IDLE_H

#include <nng/nng.h>
#include <stdint.h>

/* Fetch the send-poll fd of PUSH socket `s` into *fdp.  Call it before the
 * socket's first dial or listen: nng creates the fd lazily and raises it from
 * its own threads, ordered by nng atomics that ThreadSanitizer cannot see
 * (libnng is not instrumented), so a fd created after a pipe exists is
 * reported as a race.  Created first, every raise is ordered after the
 * dial's mutexes.  Returns RC_OK or an RC_* error. */
int rc_push_idle_fd(nng_socket s, int *fdp);

/* Wait until `fd` (from rc_push_idle_fd) is raised, at most until
 * `deadline_ms` on rc_clock_mono_ms.  RC_OK when raised (a pipe is idle: the
 * last message handed to nng was written), RC_ETIMEDOUT at the deadline. */
int rc_push_idle_wait(int fd, uint64_t deadline_ms);

#endif
