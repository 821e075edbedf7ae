/*
 * runcastd: the runcast broker daemon.
 *
 * Loads the configuration (flags > environment > file > defaults; with
 * --print-config it prints the effective values and exits there), sets up
 * logging, starts the broker core (actor system, run registry, nng ingress)
 * and, when built, the edge (WebSocket/HTTP), prints where it listens, and
 * waits for signals in the main thread (every other thread has them
 * blocked):
 *
 *   SIGTERM, SIGINT  graceful stop: stop accepting (acks answer
 *                    `shutting_down`), flush what was accepted to the
 *                    subscribers, close WebSockets with 1001, exit 0, all
 *                    within --shutdown-timeout (past it: an ERROR line,
 *                    then exit 0 all the same)
 *   SIGUSR1          log one level more verbose
 *   SIGUSR2          log one level less verbose
 *   SIGHUP           log level back to --log-level
 *   SIGRTMIN+1       test hook, only with RC_TEST_HOOKS=1 in the
 *                    environment: the ingress reports a failure to its
 *                    supervisor (restart path; past --restart-intensity
 *                    the process exits 70)
 *   SIGRTMIN+2       test hook, the same for the edge's listener
 *
 * Exit codes: 0 normal stop (also when the stop overruns --shutdown-timeout:
 * the process then exits at the deadline after an ERROR line), 1 start-up
 * failure,
 * 2 bad configuration, 70 a supervised part failed beyond
 * --restart-intensity (so systemd / Kubernetes restart the process).
 */
#include <errno.h>
#include <nng/nng.h>
#include <sys/resource.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rc_alloc.h"
#include "rc_broker.h"
#include "rc_clock.h"
#include "rc_config.h"
#include "rc_error.h"
#include "rc_log.h"
#ifdef RC_HAVE_EDGE
#include "rc_edge.h"
#endif

#define EXIT_FATAL 70

static atomic_bool fatal_flag; /* relaxed: read after sigwait returns */

static void fatal_cb(void *arg, const char *child, int reason)
{
    (void)arg;
    (void)child;
    (void)reason;
    atomic_store_explicit(&fatal_flag, true, memory_order_relaxed);
    kill(getpid(), SIGTERM);
}

/* The shutdown deadline's thread.  Its state is static, not on main's
 * stack: a thread scheduled late could otherwise start after main has
 * returned and read a dead frame (under ASan it read a 0 ms budget and
 * exited 0 over main's exit 70). */
struct overrun {
    uint64_t ms;
    int status;         /* the exit status the process was going to have */
    atomic_bool ending; /* main is returning: the normal exit wins; relaxed
                           (exit() orders nothing for a thread racing it) */
};
static struct overrun overrun;

static void *overrun_main(void *arg)
{
    struct overrun *o = arg;
    rc_clock_sleep_ms(o->ms);
    if (atomic_load_explicit(&o->ending, memory_order_relaxed))
        return NULL;
    rc_log(RC_LOG_ERROR, "runcastd", NULL, NULL,
           "shutdown did not finish within --shutdown-timeout (%llu ms); exiting now "
           "(what was accepted has been handed to the subscriber connections)",
           (unsigned long long)o->ms);
    _exit(o->status);
    return NULL;
}

static void print_list(FILE *f, struct rc_broker *b, enum rc_ingest_kind kind, const char *label,
                       bool *first)
{
    for (size_t i = 0;; i++) {
        const char *u = rc_broker_listen_url(b, kind, i);
        if (!u)
            break;
        fprintf(f, "%s%s %s", *first ? "" : ", ", label, u);
        *first = false;
    }
}

/* Descriptors runcastd needs besides one per WebSocket connection: the
 * listeners, publisher pipes, HTTP sessions, the log, nng's own. */
#define RC_NOFILE_MARGIN 1024

/*
 * Raises the soft open-file limit to the hard one.  Processes start with a
 * soft limit of 1024 on most systems (the hard one is 524288 under
 * systemd) for select(2)'s sake; runcastd never calls select, and with the
 * default --ws-max-conns of 10000 a soft 1024 would make accept fail at
 * about a thousand connections.  Warns when even the hard limit is below
 * what --ws-max-conns needs: past it new connections wait in the backlog
 * while accepting pauses (the edge does not fail for it).
 */
static void raise_open_file_limit(const struct rc_config *cfg)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0)
        return;
    if (r.rlim_cur != RLIM_INFINITY && r.rlim_cur < r.rlim_max) {
        rlim_t before = r.rlim_cur;
        r.rlim_cur = r.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &r) == 0)
            rc_log(RC_LOG_INFO, "runcastd", NULL, NULL, "open-file limit raised from %llu to %llu",
                   (unsigned long long)before, (unsigned long long)r.rlim_cur);
        else
            r.rlim_cur = before;
    }
    unsigned long long need = (unsigned long long)cfg->ws_max_conns + RC_NOFILE_MARGIN;
    if (r.rlim_cur != RLIM_INFINITY && (unsigned long long)r.rlim_cur < need)
        rc_log(RC_LOG_WARN, "runcastd", NULL, NULL,
               "the open-file limit is %llu, below the %llu that --ws-max-conns %llu needs: raise "
               "it (LimitNOFILE= for systemd, ulimit -Hn) or lower --ws-max-conns; out of "
               "descriptors, new connections wait while accepting pauses",
               (unsigned long long)r.rlim_cur, need, (unsigned long long)cfg->ws_max_conns);
}

int main(int argc, char **argv)
{
    struct rc_config cfg;
    char err[512] = "";
    if (rc_config_init(&cfg) != 0) {
        fprintf(stderr, "runcastd: out of memory\n");
        return 1;
    }
    if (rc_config_load(&cfg, argc, argv, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "runcastd: %s\n(see runcastd --help)\n", err);
        rc_config_fini(&cfg);
        return 2;
    }
    if (cfg.show_help) {
        rc_config_usage(stdout, "runcastd");
        rc_config_fini(&cfg);
        return 0;
    }
    if (cfg.show_version) {
        printf("runcastd %s (nng %s, allocator %s)\n", RUNCAST_VERSION, nng_version(),
               rc_alloc_backend());
        rc_config_fini(&cfg);
        return 0;
    }
    if (cfg.show_config) {
        /* checked and not started: a config can be validated on a host
         * where runcastd already runs on its ports */
        int rc = rc_config_dump(&cfg, stdout) == 0 && fflush(stdout) == 0 ? 0 : 1;
        rc_config_fini(&cfg);
        return rc;
    }
    rc_config_apply_logging(&cfg, NULL);
    raise_open_file_limit(&cfg);

    /* Every thread created from here on inherits the blocked set; the main
     * thread takes the signals with sigwait. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGHUP);
    const char *hooks = getenv("RC_TEST_HOOKS");
    int crash_sig = hooks && strcmp(hooks, "1") == 0 ? SIGRTMIN + 1 : 0;
    int edge_crash_sig = crash_sig ? SIGRTMIN + 2 : 0;
    if (crash_sig) {
        sigaddset(&set, crash_sig);
        sigaddset(&set, edge_crash_sig);
    }
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct rc_broker *b = NULL;
    int rc = rc_broker_new(&cfg, &b);
    if (rc != 0) {
        rc_log(RC_LOG_CRITICAL, "runcastd", NULL, NULL, "cannot create the broker: %s",
               rc_error_message(rc));
        rc_config_fini(&cfg);
        return 1;
    }
    rc_broker_set_fatal_cb(b, fatal_cb, NULL);
    rc = rc_broker_start(b);
    if (rc != 0) {
        rc_log(RC_LOG_CRITICAL, "runcastd", NULL, NULL, "cannot start: %s",
               rc_broker_error(b)[0] ? rc_broker_error(b) : rc_error_message(rc));
        fprintf(stderr, "runcastd: cannot start: %s\n",
                rc_broker_error(b)[0] ? rc_broker_error(b) : rc_error_message(rc));
        rc_broker_free(b);
        rc_config_fini(&cfg);
        return 1;
    }
#ifdef RC_HAVE_EDGE
    struct rc_edge *edge = NULL;
    rc = rc_edge_new(&cfg, b, &edge);
    if (rc == 0)
        rc = rc_edge_start(edge);
    if (rc != 0) {
        const char *why = rc_error_message(rc);
        rc_log(RC_LOG_CRITICAL, "runcastd", NULL, NULL, "cannot start the edge on --http %s: %s",
               cfg.http ? cfg.http : "?", why);
        fprintf(stderr, "runcastd: cannot listen on --http %s: %s\n", cfg.http ? cfg.http : "?",
                why);
        rc_edge_free(edge);
        rc_broker_free(b);
        rc_config_fini(&cfg);
        return 1;
    }
#endif

    bool first = true;
    printf("runcastd listening: ");
    print_list(stdout, b, RC_INGEST_PULL, "ingest", &first);
    print_list(stdout, b, RC_INGEST_REP, "ingest-ack", &first);
#ifdef RC_HAVE_EDGE
    printf("%shttp %s:%u", first ? "" : ", ", cfg.http_host ? cfg.http_host : "127.0.0.1",
           (unsigned)rc_edge_port(edge));
    first = false;
#endif
    if (first)
        printf("nothing (no --ingest or --ingest-ack URL)");
    printf("\n");
    fflush(stdout);
    rc_log(RC_LOG_INFO, "runcastd", NULL, NULL,
           "runcastd %s started (epoch %llu, %u workers, allocator %s)", RUNCAST_VERSION,
           (unsigned long long)rc_broker_epoch(b), rc_actor_system_workers(rc_broker_system(b)),
           rc_alloc_backend());

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGTERM || sig == SIGINT)
            break;
#ifdef RC_HAVE_EDGE
        if (edge_crash_sig && sig == edge_crash_sig) {
            rc_log(RC_LOG_WARN, "runcastd", NULL, NULL, "test hook: edge listener made to fail");
            rc_edge_test_fail_listener(edge);
            continue;
        }
#endif
        if (crash_sig && sig == crash_sig) {
            int hrc = rc_broker_test_crash_ingress(b);
            rc_log(RC_LOG_WARN, "runcastd", NULL, NULL, "test hook: ingress made to fail (%s)",
                   rc_error_name(hrc));
            continue;
        }
        rc_log_signal(sig);
        rc_log_notice_flush();
    }

    bool fatal = atomic_load_explicit(&fatal_flag, memory_order_relaxed);
    uint64_t t0 = rc_clock_mono_ms();
    rc_log(RC_LOG_INFO, "runcastd", NULL, NULL, "%s: stopping (at most %llu ms)",
           fatal ? "a supervised part failed" : "signal received",
           (unsigned long long)cfg.shutdown_timeout_ms);
    overrun.ms = cfg.shutdown_timeout_ms > 50 ? cfg.shutdown_timeout_ms - 50 : 1;
    overrun.status = fatal ? EXIT_FATAL : 0;
    pthread_t ovt;
    if (pthread_create(&ovt, NULL, overrun_main, &overrun) == 0)
        pthread_detach(ovt);

    /* 1. stop accepting and let the run actors hand everything accepted to
     *    the subscribers (half the budget at most) */
    if (rc_broker_quiesce(b, cfg.shutdown_timeout_ms * 2 / 5) != 0)
        rc_log(RC_LOG_WARN, "runcastd", NULL, NULL,
               "some accepted messages were still queued after %llu ms",
               (unsigned long long)(cfg.shutdown_timeout_ms * 2 / 5));
    rc_log(RC_LOG_INFO, "runcastd", NULL, NULL, "ingress quiesced after %llu ms",
           (unsigned long long)(rc_clock_mono_ms() - t0));
#ifdef RC_HAVE_EDGE
    /* 2. flush the WebSockets and close them with 1001 */
    rc_edge_stop(edge);
    rc_log(RC_LOG_INFO, "runcastd", NULL, NULL, "edge stopped after %llu ms",
           (unsigned long long)(rc_clock_mono_ms() - t0));
#endif
    /* 3. close the sockets, stop the actors */
    rc_broker_stop(b);
    rc_log(RC_LOG_INFO, "runcastd", NULL, NULL, "broker stopped after %llu ms",
           (unsigned long long)(rc_clock_mono_ms() - t0));
#ifdef RC_HAVE_EDGE
    rc_edge_free(edge);
#endif
    if (rc_broker_abandoned(b)) {
        /* An nng close never returned (see rc_broker_abandoned): its thread
         * may still point into the broker, so nothing more is freed and no
         * exit handler runs. */
        rc_log(RC_LOG_INFO, "runcastd", NULL, NULL,
               "stopped in %llu ms (an nng socket close was abandoned)",
               (unsigned long long)(rc_clock_mono_ms() - t0));
        fflush(stdout);
        fflush(stderr);
        _exit(fatal ? EXIT_FATAL : 0);
    }
    rc_broker_free(b);
    rc_log(RC_LOG_INFO, "runcastd", NULL, NULL, "stopped in %llu ms",
           (unsigned long long)(rc_clock_mono_ms() - t0));
    rc_config_fini(&cfg);
    atomic_store_explicit(&overrun.ending, true, memory_order_relaxed);
    return fatal ? EXIT_FATAL : 0;
}
