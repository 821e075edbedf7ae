/*
 * rc_tipc: ipc:// URLs for tests whose socket files never outlive the test.
 *
 * nng removes an ipc listener's socket file when the listener closes; a
 * test that fails an assertion (or forgets a close) leaves it in /tmp.  The
 * URLs made here name sockets inside one directory private to the test's
 * process (mkdtemp), and rc_tipc_cleanup removes that directory with
 * everything in it.  Use rc_tipc_cleanup as the suite's .fini: Criterion
 * runs the fini after the test also when an assertion failed (and so does
 * the TSan build's stand-in).  A test killed by a signal or its timeout
 * runs no fini: its directory stays (/tmp/rc-ipc-PID-XXXXXX: PID says whose).
 *
 * Call rc_tipc_url in the test body, never before the fork (the directory
 * belongs to the process that made it).  Compiled into each test that uses
 * it; include it through RC_TIPC_DIR only (see tests/CMakeLists.txt).
 */
#ifndef RC_TIPC_H
#define RC_TIPC_H

#include <stddef.h>

/* "ipc://<dir>/<tag>-<n>.sock": unique in the process (n counts calls). */
void rc_tipc_url(char *out, size_t cap, const char *tag);
/* Removes the directory and every file in it; nothing when none was made;
 * safe to call twice. */
void rc_tipc_cleanup(void);

#endif
