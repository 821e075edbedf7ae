/*
 * rc_tproc: the programs a test starts as processes - runcastd on port 0
 * (its addresses read from its "listening" line, the one place tests parse
 * it) and the runcast CLI.
 *
 * Compiled into each test that uses it (it asserts with Criterion, so it
 * follows the test's Criterion or TSan stand-in); include it through the
 * folder tests/support/tproc only, never tests/support, whose criterion/
 * stand-in must not shadow the real header in other builds.
 */
#ifndef RC_TPROC_H
#define RC_TPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

struct rcd {
    pid_t pid;
    int pull_port, rep_port, http_port;
    char pull[64], rep[64]; /* "tcp://127.0.0.1:P", as runcastd printed them */
    char http[64];          /* "127.0.0.1:P" */
    char log[128];          /* stderr of the process */
};

/* Starts runcastd (RC_BINARY_DIR/broker/runcastd) on free ports with extra
 * arguments (NULL-terminated) and waits for its "listening" line.  The
 * process dies with the test (PR_SET_PDEATHSIG), also when an assertion
 * ends the test early. */
void rcd_start(struct rcd *d, const char *const *extra);
/* The same on the addresses `prev` listened on: a restart on the same
 * ports. */
void rcd_start_at(struct rcd *d, const struct rcd *prev, const char *const *extra);
/* Whether the process is still running. */
bool rcd_alive(struct rcd *d);
/* SIGTERM and wait (at most timeout_ms); returns the exit status
 * (WEXITSTATUS), or -1 if it did not exit / died by a signal. */
int rcd_stop(struct rcd *d, uint64_t timeout_ms);
/* Waits (at most timeout_ms) for the process to exit on its own; returns
 * the exit status, or -1 if it did not exit (it is then killed) or died by
 * a signal. */
int rcd_wait(struct rcd *d, uint64_t timeout_ms);
/* Removes the process's log (unless RC_KEEP_LOGS is set): for a test whose
 * expected end is a non-zero status, once it has asserted it (rcd_stop
 * removes it on status 0 itself; a failed test keeps it for a look). */
void rcd_log_discard(const struct rcd *d);
/* Lines of the process's stderr log containing needle. */
size_t rcd_log_count(const struct rcd *d, const char *needle);

/* popen(cmd, "r") for a shell command that runs the runcast CLI: under
 * TSan the CLI ignores reports from inside the uninstrumented libnng
 * (tests/tsan.supp); everything else still halts. */
FILE *tproc_popen(const char *cmd);
/* Runs cmd (tproc_popen); its output in out (cap bytes, NUL-terminated);
 * returns its exit status, or -1 if it died by a signal. */
int tproc_run(const char *cmd, char *out, size_t cap);

#endif
