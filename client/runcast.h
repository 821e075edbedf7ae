/*
 * runcast.h: the runcast publisher library (C, thread-safe).
 *
 * An agent backend publishes the events of its runs to runcastd through one
 * `struct rc_client`.  A client holds up to two nng sockets:
 *
 *   - a PUSH socket dialed to runcastd's PULL address (default
 *     tcp://127.0.0.1:7450): fire-and-forget, with adaptive batching;
 *   - a REQ socket dialed to runcastd's REP address (default
 *     tcp://127.0.0.1:7451): acknowledged publishing, each call returns the
 *     sequence number the broker assigned or the broker's precise error.
 *
 * Every function may be called from any thread at any time between open and
 * close; events published from one thread on the PUSH path reach the broker
 * in publish order.  (Events from different threads are ordered by whoever
 * takes the client's lock first.)
 *
 * Delivery per event:
 *   RC_DELIVER_DEFAULT  `complete` and `error` are acknowledged (they end a
 *                       run; losing one makes the watchdog fail the run),
 *                       every other type goes over PUSH.  A client opened
 *                       with only a REQ address acknowledges everything.
 *   RC_DELIVER_PUSH     fire-and-forget, batched.
 *   RC_DELIVER_ACK      acknowledged: blocks until the broker answers.
 *
 * Adaptive batching (PUSH path): the client keeps at most one nng send in
 * flight.  An event published while nothing is in flight is sent at once as
 * its own message; events published while a send is in flight queue up and
 * leave together, as one msgpack array, when it completes (up to
 * batch_max_events / batch_max_bytes per message).  There is no linger
 * timer: an idle publisher adds no latency, a busy one sends few large
 * messages.
 *
 * Acknowledged publishing: each event carries an idempotency `id` (the
 * caller's, or a 128-bit random hex id the library generates).  When no
 * reply comes within ack_timeout_ms the same bytes, with the same id, are
 * sent again (up to ack_retries times); the broker answers a repeated id with
 * the original seq (`dup`), so a retry never delivers an event twice.
 *
 * Ordering across the two paths: runcastd reads its PULL and REP sockets
 * independently, so an acknowledged event (say `complete`) could overtake
 * events of the same run pushed just before it, which the broker would then
 * refuse as `run_terminal`.  A client with both paths therefore gives every
 * pushed event an idempotency id and keeps it for retain_ms after its send
 * completed; an acknowledged event goes out in one request behind the
 * kept events of its run.  The broker answers events it already has with
 * `dup` (never delivered twice) and accepts the ones still on their way,
 * in order, before the acknowledged event.
 *
 * Lifetime: rc_client_open* -> publish ... -> rc_client_close.  Close
 * flushes events still queued on the PUSH path, waiting at most
 * close_timeout_ms, then drops what is left (counted in stats.dropped).
 *
 * Errors are the negative RC_E* codes of rc_error.h.  Errors the broker (or
 * local validation) reports about an event come back as RC_EPROTO with the
 * wire error code, field and message in struct rc_client_result.
 *
 * See docs/CLIENT.md for an example and for what the PUSH path can lose when
 * the broker restarts.
 */
#ifndef RUNCAST_H
#define RUNCAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RC_CLIENT_DEFAULT_PUSH_URL "tcp://127.0.0.1:7450"
#define RC_CLIENT_DEFAULT_REQ_URL  "tcp://127.0.0.1:7451"

struct rc_client;

enum rc_client_mode {
    RC_CLIENT_PUSH = 1, /* fire-and-forget, plus the REQ path for terminals (see rc_client_open) */
    RC_CLIENT_REQ = 2,  /* every event acknowledged */
};

enum rc_client_delivery {
    RC_DELIVER_DEFAULT = 0,
    RC_DELIVER_PUSH = 1,
    RC_DELIVER_ACK = 2,
};

struct rc_client_opts {
    const char *push_url;      /* NULL: no PUSH path */
    const char *req_url;       /* NULL: no REQ path */
    uint32_t batch_max_events; /* 256: events per PUSH message (protocol limit 1024) */
    uint32_t batch_max_bytes;  /* 1 MiB: bytes per PUSH message (protocol limit 4 MiB) */
    size_t queue_max_bytes;    /* 16 MiB: bytes queued on the PUSH path while a send is in flight */
    uint32_t queue_wait_ms;    /* 2000: how long a publish waits for room in a full queue
                                  before failing with RC_EOVERLOAD (0: fail at once) */
    uint32_t ack_timeout_ms;   /* 2000: wait for one reply before resending */
    uint32_t ack_retries;      /* 4: resends after the first attempt (timeouts, overloaded) */
    uint32_t close_timeout_ms; /* 2000: how long close waits to flush the PUSH queue */
    uint32_t reconnect_min_ms; /* 100: nng's redial backoff */
    uint32_t reconnect_max_ms; /* 2000 */
    bool validate;             /* true: check events locally before sending */
    uint32_t retain_ms;        /* 1000: how long pushed events are kept for re-sending ahead
                                  of an acknowledged event of the same run (0: never) */
    size_t retain_max_bytes;   /* 1 MiB: bound on those kept events */
};

/* Defaults above, with both default URLs. */
void rc_client_opts_init(struct rc_client_opts *o);

/*
 * Opens a client with explicit options.  At least one URL must be set.
 * Dialing is non-blocking: the client opens even while runcastd is down and
 * nng keeps redialing; PUSH events queue meanwhile (bounded by
 * queue_max_bytes) and acknowledged calls retry until ack_retries run out.
 */
int rc_client_open_opts(struct rc_client **cp, const struct rc_client_opts *o);

/*
 * Convenience:
 *   mode RC_CLIENT_PUSH, url NULL: both default URLs (PUSH for ordinary
 *       events, REQ for complete/error).
 *   mode RC_CLIENT_PUSH, url set: PUSH to url only.  Terminal events with
 *       RC_DELIVER_DEFAULT then fail with RC_ESTATE (no REQ address); open
 *       with rc_client_open_opts to give both, or pass RC_DELIVER_PUSH.
 *   mode RC_CLIENT_REQ: REQ to url (NULL: the default) only.
 */
int rc_client_open(struct rc_client **cp, const char *url, enum rc_client_mode mode);

/*
 * Flushes (bounded by close_timeout_ms), closes the sockets and frees the
 * client.  Returns 0 when everything queued was handed to the transport,
 * RC_ETIMEDOUT when some events had to be dropped.  NULL does nothing.
 * No other call may be running or start on c once close begins.
 */
int rc_client_close(struct rc_client *c);

/*
 * Waits until the PUSH queue is empty, no send is in flight and the last
 * message was written to the connection (every event published before the
 * call reached the kernel's socket buffer, so closing cannot abort it), at
 * most timeout_ms.  0 or RC_ETIMEDOUT.
 */
int rc_client_flush(struct rc_client *c, uint32_t timeout_ms);

/* ---- Events ---- */

struct rc_client_timeout {
    const char *phase; /* "*" is the run's default */
    uint64_t ms;
};

/*
 * One event.  Strings are NUL-terminated UTF-8 unless a _len is given
 * (text_len: 0 means strlen(text)).  NULL / 0 means absent.  Raw fields are
 * msgpack bytes sent as is: tool and item must be maps (with an `id`), data
 * any one msgpack value.
 */
struct rc_client_event {
    const char *run; /* required */
    const char *conv;
    const char *type; /* "start", "phase", ..., "error" or "x-..." */
    const char *phase;
    const char *text;
    size_t text_len;
    const char *id; /* idempotency key; generated on the acknowledged path when NULL */
    int64_t ts;     /* publisher time, ms since the epoch; 0: now */
    const void *tool;
    size_t tool_len;
    const void *item;
    size_t item_len;
    const void *data;
    size_t data_len;
    const char *error_code;                   /* error events */
    const char *error_message;                /* error events */
    const struct rc_client_timeout *timeouts; /* start events */
    uint32_t n_timeouts;
    uint64_t deadline_ms; /* start events; 0: none */
};

/* What happened to one event. */
struct rc_client_result {
    int err;           /* 0, or an RC_E* code (RC_EPROTO: the wire error below) */
    uint64_t seq;      /* acknowledged: the seq the broker assigned (0 on PUSH) */
    uint64_t epoch;    /* acknowledged: the broker's epoch */
    bool dup;          /* acknowledged: the id had been accepted before */
    uint32_t attempts; /* acknowledged: requests sent (1 + retries) */
    char code[32];     /* wire error code ("missing_field", ...) when err == RC_EPROTO */
    char field[64];    /* the offending field, or "" */
    char message[160]; /* a readable reason */
    char id[129];      /* the idempotency id used (acknowledged path) */
};

/*
 * Publishes one event.  res may be NULL.  Returns res->err.
 * PUSH: returns once the event is queued (RC_EOVERLOAD when the queue stays
 * full for queue_wait_ms; RC_EPROTO when local validation rejects it).
 * ACK: returns once the broker answered or retries ran out (RC_ETIMEDOUT).
 */
int rc_client_publish(struct rc_client *c, const struct rc_client_event *ev,
                      enum rc_client_delivery d, struct rc_client_result *res);

/*
 * Publishes one event given as a complete msgpack map (e.g. converted from
 * JSON by the CLI).  On the acknowledged path an `id` is added when the map
 * has none.  Unknown keys are kept.
 */
int rc_client_publish_raw(struct rc_client *c, const void *map, size_t len,
                          enum rc_client_delivery d, struct rc_client_result *res);

/*
 * Acknowledged publishing of n raw event maps in one request (one batch,
 * order kept).  results[i] gets each event's outcome; returns 0 when all
 * were accepted, else the first error.  n <= batch_max_events.  The PUSH
 * queue is flushed first, but recently pushed events are not re-sent ahead
 * of the batch (as single acknowledged publishes do): use it for runs this
 * client does not also push to.
 */
int rc_client_publish_raw_batch_ack(struct rc_client *c, const void *const *maps,
                                    const size_t *lens, uint32_t n,
                                    struct rc_client_result *results);

/* ---- Helpers, one per event type (RC_DELIVER_DEFAULT; res may be NULL) ---- */

/* start: conv may be NULL; timeouts/deadline are the run's watchdog overrides. */
int rc_client_start(struct rc_client *c, const char *run, const char *conv,
                    const struct rc_client_timeout *timeouts, uint32_t n_timeouts,
                    uint64_t deadline_ms, struct rc_client_result *res);
int rc_client_phase(struct rc_client *c, const char *run, const char *phase,
                    struct rc_client_result *res);
int rc_client_thinking(struct rc_client *c, const char *run, const char *text,
                       struct rc_client_result *res);
int rc_client_delta(struct rc_client *c, const char *run, const char *text,
                    struct rc_client_result *res);
/* tool: tool_id required; name/status may be NULL; extra (may be NULL) is a
 * msgpack map whose entries are added to the tool map (args, result, ...). */
int rc_client_tool(struct rc_client *c, const char *run, const char *tool_id, const char *name,
                   const char *status, const void *extra, size_t extra_len,
                   struct rc_client_result *res);
int rc_client_verification(struct rc_client *c, const char *run, const char *item_id,
                           const char *label, const char *status, struct rc_client_result *res);
int rc_client_heartbeat(struct rc_client *c, const char *run, struct rc_client_result *res);
/* complete: data (may be NULL) is any msgpack value (the run's result). */
int rc_client_complete(struct rc_client *c, const char *run, const void *data, size_t data_len,
                       struct rc_client_result *res);
int rc_client_error(struct rc_client *c, const char *run, const char *code, const char *message,
                    struct rc_client_result *res);

/* ---- Introspection ---- */

struct rc_client_stats {
    uint64_t events_pushed;   /* events handed to the transport on the PUSH path */
    uint64_t messages_pushed; /* PUSH messages sent (events_pushed / this = mean batch) */
    uint64_t events_acked;    /* events accepted on the REQ path */
    uint64_t ack_retries;     /* requests re-sent after a timeout or overloaded */
    uint64_t rejected;        /* events rejected (locally or by the broker) */
    uint64_t dropped;         /* PUSH events dropped at close (not flushed in time) */
    uint64_t queued;          /* PUSH events waiting right now */
    uint32_t max_batch;       /* largest PUSH message, in events */
    uint64_t resent;          /* pushed events re-sent ahead of an acknowledged one */
};

void rc_client_get_stats(struct rc_client *c, struct rc_client_stats *st);

/* A readable message for an RC_E* code (rc_error_message). */
const char *rc_client_strerror(int err);

/* Writes a new 128-bit idempotency id (32 hex chars + NUL) to out: unique
 * (64 random bits drawn once per thread, and again after fork, then a
 * mixed count), cheap (no system call after the first), not secret. */
void rc_client_new_id(char out[33]);

#ifdef __cplusplus
}
#endif

#endif
