/*
 * rc_broker: the broker core's lifecycle, used by runcastd.c, the edge and
 * the tests.
 *
 * A broker owns the actor system, the run registry (rc_runs.h), the metrics
 * (rc_metrics.h), the epoch, the supervisor of long-lived actors, and the
 * nng ingress: PULL sockets (--ingest) and REP sockets (--ingest-ack), each
 * with --ingest-inflight receives in flight.
 *
 *   rc_broker_new(cfg)          creates everything, starts nothing
 *   rc_broker_start             starts the actor system and listens on every
 *                               ingest URL (an error names the URL)
 *   ... serving ...
 *   rc_broker_quiesce           stops accepting (PULL listeners close, REP
 *                               requests are answered `shutting_down`) and
 *                               waits until every accepted message has been
 *                               handled by its run actor, so the subscriber
 *                               actors have every frame; the edge then
 *                               flushes and closes its connections
 *   rc_broker_stop              closes the sockets and stops the actor system
 *   rc_broker_free
 */
#ifndef RC_BROKER_H
#define RC_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rc_actor.h"
#include "rc_metrics.h"
#include "rc_proto.h"
#include "rc_runs.h"

struct rc_config;
struct rc_broker;

/* The timer wheel turns this many times per --watchdog-tick: the tick is
 * the watchdog's lateness budget, the wheel's rounding takes a sixteenth of
 * it and the timer thread's and the run's wake-ups have the rest. */
#define RC_BROKER_WHEEL_SLOTS_PER_TICK 16u

/* The actor system's wheel resolution (us, >= 1) for a --watchdog-tick. */
uint32_t rc_broker_wheel_tick_us(uint64_t watchdog_tick_ms);

/* cfg must outlive the broker.  Epoch: cfg->epoch, or when 0 a fresh one
 * (wall-clock milliseconds * 1024 + 10 random bits: below 2^53, so
 * JavaScript clients read it exactly, and different at every start). */
int rc_broker_new(const struct rc_config *cfg, struct rc_broker **out);

/* Starts the actor system and the ingress.  On error returns the rc_error
 * code (RC_EADDRINUSE: another process has an --ingest or --ingest-ack
 * port) and rc_broker_error says what failed ("listen tcp://... (--ingest):
 * Address in use").  The ingress is a supervised child: when it fails it is restarted
 * (rebinding its URLs) within --restart-intensity / --restart-period, after
 * which the fatal callback runs. */
int rc_broker_start(struct rc_broker *b);

/* A description of the last error of rc_broker_start ("" when none). */
const char *rc_broker_error(const struct rc_broker *b);

/* Called once (from some worker thread) when a supervised child failed more
 * often than the restart intensity allows: runcastd exits non-zero. */
typedef void (*rc_broker_fatal_cb)(void *arg, const char *child, int reason);
void rc_broker_set_fatal_cb(struct rc_broker *b, rc_broker_fatal_cb cb, void *arg);

/* Adds a long-lived actor of another part (e.g. the edge's listener) to
 * the broker's supervisor (restarted when it stops with reason != 0). */
int rc_broker_supervise(struct rc_broker *b, const char *name, rc_child_start_fn start, void *arg);

/* Stop accepting, then wait (at most timeout_ms) until every accepted
 * message has been handled.  Returns 0, or RC_ETIMEDOUT (what remains is
 * dropped by rc_broker_stop). */
int rc_broker_quiesce(struct rc_broker *b, uint64_t timeout_ms);

/* Closes the ingress sockets and stops the actor system (every actor's
 * fini runs).  Safe to call twice, and without quiesce. */
void rc_broker_stop(struct rc_broker *b);

/* NULL does nothing; stops first when needed. */
void rc_broker_free(struct rc_broker *b);

/* True after a stop during which an nng close did not return within its
 * bound (nng 1.5.2 can block closing a PULL socket while a peer sends):
 * the stop went on without it, and rc_broker_free then leaves the broker's
 * memory allocated, since a stuck nng thread may still point into it.  A
 * process should exit soon after (runcastd does, with _exit). */
bool rc_broker_abandoned(const struct rc_broker *b);

/* ---- Accessors ---- */

struct rc_runs *rc_broker_runs(struct rc_broker *b);
struct rc_metrics *rc_broker_metrics(struct rc_broker *b);
struct rc_actor_system *rc_broker_system(struct rc_broker *b);
const struct rc_config *rc_broker_config(const struct rc_broker *b);
uint64_t rc_broker_epoch(const struct rc_broker *b);
/* True between a successful start and quiesce (for /healthz). */
bool rc_broker_serving(const struct rc_broker *b);
/* Wall ms at rc_broker_start (uptime). */
int64_t rc_broker_started_at(const struct rc_broker *b);

/* The addresses actually listened on, port 0 resolved
 * ("tcp://127.0.0.1:41234"): i-th URL of kind RC_INGEST_PULL or
 * RC_INGEST_REP, or NULL past the end.  Valid until rc_broker_stop. */
const char *rc_broker_listen_url(const struct rc_broker *b, enum rc_ingest_kind kind, size_t i);
/* The i-th --ingest URL's decoder lanes and their open connections (see
 * rc_ingress_pull_lanes); 0 when it is read by nng's PULL socket. */
uint32_t rc_broker_pull_lanes(const struct rc_broker *b, size_t i, uint32_t *conns, uint32_t cap);

/* ---- In-process publishing (tests, benchmarks; the same path as the nng
 * ingress after the socket) ---- */

/* Called once with one result per element of the message (or one result
 * for a whole-message error), on some thread; r is valid during the call. */
typedef void (*rc_publish_done_cb)(void *arg, const struct rc_proto_ack_result *r, uint32_t n);

/*
 * Publishes one message (one event map or an array of them), as if it had
 * arrived over a connection whose pipe id is pipe (0: none).  The bytes are
 * copied.  done may be NULL (fire and forget).  Returns 0 when the message
 * was taken (done will be called), RC_ENOMEM, or RC_ESHUTDOWN after quiesce.
 */
int rc_broker_publish(struct rc_broker *b, const void *buf, size_t len, uint32_t pipe,
                      rc_publish_done_cb done, void *arg);
/* As rc_broker_publish, with the receive time (rc_clock_mono_ns(); 0: now)
 * as the nng ingress stamps it in its receive callback: the watchdog counts
 * idleness from it.  Tests use it to play a message that waited in a
 * lagging ingress. */
int rc_broker_publish_at(struct rc_broker *b, const void *buf, size_t len, uint32_t pipe,
                         uint64_t recv_ns, rc_publish_done_cb done, void *arg);

/* Test hook, never reachable from the wire: makes the ingress report a
 * failure to its supervisor, exactly as after RC_INGRESS_MAX_ERRORS
 * consecutive receive errors, so the restart path (and, repeated, the
 * restart intensity) can be tested.  runcastd calls it on SIGRTMIN+1 when
 * started with RC_TEST_HOOKS=1 in its environment.  0, RC_ESTATE (not
 * started), RC_ENOTFOUND (no ingress running), RC_ECLOSED, RC_ENOMEM. */
int rc_broker_test_crash_ingress(struct rc_broker *b);

/* Tells the runs whose last event came through pipe that their publisher
 * is gone (the nng ingress calls it from its pipe-removal callback). */
void rc_broker_pipe_closed(struct rc_broker *b, uint32_t pipe);

#endif
