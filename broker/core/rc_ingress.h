/*
 * rc_ingress: the nng sockets of the broker (private to broker/core).
 *
 * One instance listens on every --ingest URL (PULL) and --ingest-ack URL
 * (REP) with --ingest-inflight receives in flight per socket (REP: one
 * nng_ctx per in-flight request).  Received messages go through
 * rc_ingest_dispatch; REP replies are sent by the ack collector's last
 * party.  A pipe-removal callback tells the registry when a publisher's
 * connection closes.
 *
 * Lifetime: open -> close (sockets closed; may run on any thread, more
 * than once) -> free (only after the actor system has stopped, so no ack
 * can still try to reply).
 */
#ifndef RC_INGRESS_H
#define RC_INGRESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rc_actor.h"
#include "rc_metrics.h"

struct rc_runs;
struct rc_config;
struct rc_ingress;

struct rc_ingress_env {
    struct rc_runs *runs;
    struct rc_metrics *metrics;
    const struct rc_config *cfg;
    uint64_t epoch;
    atomic_bool *accepting; /* acquire-loaded per message; false -> shutting_down */
    /* The instance this one replaces after a failure, or NULL: its resolved
     * URLs are listened on instead of the configured ones, so a URL
     * configured with port 0 keeps the port publishers already dial. */
    const struct rc_ingress *previous;
};

/* Opens and listens; on error writes one line into err naming the URL. */
int rc_ingress_open(const struct rc_ingress_env *env, struct rc_ingress **out, char *err,
                    size_t errlen);
/* Where fatal receive errors are reported (an RC_MSG_INGRESS_FAIL message). */
void rc_ingress_set_owner(struct rc_ingress *ing, struct rc_actor *owner);
/* Closes every socket; with connections, after letting them settle for
 * up to RC_INGRESS_SETTLE_MAX_MS (rc_ingress.c, socks_settle, says why). */
void rc_ingress_close(struct rc_ingress *ing);
#define RC_INGRESS_SETTLE_MAX_MS 100
/* Closes the PULL sockets only (quiesce: fire-and-forget input stops; REP
 * keeps answering `shutting_down`). */
void rc_ingress_close_pull(struct rc_ingress *ing);
void rc_ingress_free(struct rc_ingress *ing);
/* The i-th resolved URL of kind (RC_INGEST_PULL / RC_INGEST_REP) or NULL. */
const char *rc_ingress_url(const struct rc_ingress *ing, enum rc_ingest_kind kind, size_t i);
/* The i-th PULL URL's decoder lanes (stream reader only): writes up to cap
 * lanes' open connection counts into conns and returns how many lanes it
 * has (0: no such URL, or read by nng's PULL socket).  For tests and
 * diagnostics: the counts change as connections come and go. */
uint32_t rc_ingress_pull_lanes(const struct rc_ingress *ing, size_t i, uint32_t *conns,
                               uint32_t cap);

#define RC_MSG_INGRESS_FAIL 0x52430020u

#endif
