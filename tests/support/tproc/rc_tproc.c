#include "rc_tproc.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rc_clock.h"
#include "rc_error.h"
#include "rc_listen_line.h"

static void launch(struct rcd *d, const char *ingest, const char *ack, const char *http,
                   const char *const *extra)
{
    static _Atomic unsigned started;
    memset(d, 0, sizeof(*d));
    snprintf(d->log, sizeof(d->log), "/tmp/runcastd-test-%d-%u.log", (int)getpid(),
             atomic_fetch_add_explicit(&started, 1, memory_order_relaxed)); /* a name only */
    const char *argv[64];
    int n = 0;
    static char bin[512];
    snprintf(bin, sizeof(bin), "%s/broker/runcastd", RC_BINARY_DIR);
    argv[n++] = bin;
    argv[n++] = "--ingest";
    argv[n++] = ingest;
    argv[n++] = "--ingest-ack";
    argv[n++] = ack;
    argv[n++] = "--http";
    argv[n++] = http;
    argv[n++] = "--log-level";
    argv[n++] = "warn";
    for (size_t i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    char lsan[600]; /* formatted before the fork: the child only sets it and execs */
    snprintf(lsan, sizeof(lsan), "suppressions=%s/tests/runcastd-lsan.supp", RC_SOURCE_DIR);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        /* A test that ends early (a failed assertion) never stops it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127); /* the test was gone before prctl */
        dup2(fds[1], 1);
        int lf = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (lf >= 0)
            dup2(lf, 2);
        close(fds[0]);
        setenv("LSAN_OPTIONS", lsan, 1); /* the test's suppressions are not the broker's */
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    d->pid = pid;
    char line[512];
    size_t got = 0;
    uint64_t end = rc_clock_mono_ms() + 10000;
    while (rc_clock_mono_ms() < end && !memchr(line, '\n', got)) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = read(fds[0], line + got, sizeof(line) - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    line[got] = 0;
    close(fds[0]);
    cr_assert(strstr(line, "runcastd listening:") != NULL, "runcastd did not start: '%s' (log %s)",
              line, d->log);
    cr_assert(rc_listen_line_find(line, "ingest", d->pull, sizeof(d->pull)) == RC_OK &&
                  rc_listen_line_find(line, "ingest-ack", d->rep, sizeof(d->rep)) == RC_OK,
              "no ingest URLs in '%s'", line);
    cr_assert(rc_listen_line_find(line, "http", d->http, sizeof(d->http)) == RC_OK,
              "no http address in '%s'", line);
    d->pull_port = rc_listen_line_port(d->pull);
    d->rep_port = rc_listen_line_port(d->rep);
    d->http_port = rc_listen_line_port(d->http);
    cr_assert(d->pull_port > 0 && d->rep_port > 0 && d->http_port > 0, "ports in '%s'", line);
}

void rcd_start(struct rcd *d, const char *const *extra)
{
    /* Port 0 everywhere, the ports read back from the "listening" line:
     * a port found free and closed here could be taken (by any outgoing
     * connection on this machine) before runcastd binds it.  The same
     * port-0 URL for both: each listen takes a free port of its own. */
    launch(d, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", "127.0.0.1:0", extra);
}

void rcd_start_at(struct rcd *d, const struct rcd *prev, const char *const *extra)
{
    struct rcd at = *prev; /* launch() clears *d, which may be prev */
    launch(d, at.pull, at.rep, at.http, extra);
}

bool rcd_alive(struct rcd *d)
{
    int st;
    return d->pid > 0 && waitpid(d->pid, &st, WNOHANG) == 0;
}

int rcd_stop(struct rcd *d, uint64_t timeout_ms)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    uint64_t end = rc_clock_mono_ms() + timeout_ms;
    int st = 0;
    while (rc_clock_mono_ms() < end) {
        pid_t r = waitpid(d->pid, &st, WNOHANG);
        if (r == d->pid) {
            d->pid = 0;
            int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            if (code == 0)
                rcd_log_discard(d); /* kept for a look when something went wrong */
            return code;
        }
        rc_clock_sleep_ms(5);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &st, 0);
    d->pid = 0;
    return -1;
}

int rcd_wait(struct rcd *d, uint64_t timeout_ms)
{
    if (d->pid <= 0)
        return -1;
    uint64_t end = rc_clock_mono_ms() + timeout_ms;
    int st = 0;
    while (rc_clock_mono_ms() < end) {
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            d->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        rc_clock_sleep_ms(5);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &st, 0);
    d->pid = 0;
    return -1;
}

void rcd_log_discard(const struct rcd *d)
{
    if (!getenv("RC_KEEP_LOGS"))
        unlink(d->log);
}

size_t rcd_log_count(const struct rcd *d, const char *needle)
{
    FILE *f = fopen(d->log, "r");
    if (!f)
        return 0;
    char line[4096];
    size_t n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

FILE *tproc_popen(const char *cmd)
{
    const char *t = getenv("TSAN_OPTIONS");
    char saved[1024] = ""; /* copied: setenv may free the string t points at */
    if (t != NULL)
        snprintf(saved, sizeof(saved), "%s", t);
    char opts[1200];
    snprintf(opts, sizeof(opts), "%s%ssuppressions=%s/tests/tsan.supp", saved, saved[0] ? ":" : "",
             RC_SOURCE_DIR);
    setenv("TSAN_OPTIONS", opts, 1);
    FILE *f = popen(cmd, "r");
    if (t != NULL)
        setenv("TSAN_OPTIONS", saved, 1);
    else
        unsetenv("TSAN_OPTIONS");
    return f;
}

int tproc_run(const char *cmd, char *out, size_t cap)
{
    FILE *f = tproc_popen(cmd);
    cr_assert_not_null(f, "popen %s", cmd);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
