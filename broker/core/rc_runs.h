/*
 * rc_runs: the run registry, the run actors behind it, and the subscriber
 * API (the contract between the broker core and the edge).
 *
 * One actor per run.  The registry maps run id -> run actor in a sharded
 * hash table (RC_RUNS_SHARDS shards, each with its own mutex; the ingress
 * looks a run up once per (run, batch), never per event).  It creates a run
 * on its first event (and logs it), refuses new runs beyond --max-runs
 * (`limit`), keeps the conversation index (conv -> runs) and the waiting,
 * conversation and all-runs subscriptions, and forgets a run when its
 * tombstone expires.
 *
 * A run actor owns everything about its run (seq, status, snapshot,
 * idempotency ids, history of `ev` encodings, subscriber list, watchdog
 * timer); nothing else reads those fields, so they need no lock.
 *
 * ---- Subscribers ----
 *
 * A subscriber is an actor (the edge's connection actor, the tests'
 * in-process subscriber).  It receives `struct rc_sub_frame` messages, each
 * carrying ONE encoded server message (an `ev`, `snap` or `gap` map) as a
 * reference-counted blob shared with every other subscriber of that event.
 * The runtime frees a frame (releasing its references) after the
 * subscriber's behaviour returns unless the behaviour calls rc_msg_keep;
 * a subscriber that keeps the blob longer calls rc_blob_hold on it.
 *
 * Ordering and exactness, per (run, subscriber):
 *  - Frames of one run arrive in seq order (one sender: the run actor).
 *  - rc_runs_subscribe is answered by the run actor in ONE turn: history
 *    replay (or gap + snap, or snap) and the switch to live delivery happen
 *    with no event in between, so a resume has no gap and no duplicate even
 *    when events race the subscription.
 *      same epoch (or no epoch given) and `since` within the retained history
 *          -> every retained `ev` with seq > since, then live;
 *      same epoch and `since` older than the retained history
 *          -> `gap {from: since+1, to: first retained - 1}`, `snap`, live;
 *      another epoch, or no `since`
 *          -> `snap` (when snapshot is requested; the default without
 *             `since`) and live.
 *    A `snap` is never sent for a run that has no event yet (seq 0).  A
 *    conversation or all subscription covers ended (retained or
 *    tombstoned) runs only when its since map names them.
 *    An ended run sends what the rules above say and does not keep the
 *    subscriber (nothing more will come); a tombstoned run (history freed)
 *    answers `gap` (if since was given and is behind) + its final `snap`,
 *    which holds the terminal.
 *  - A subscriber attached to a run through several subscriptions (e.g. a
 *    run subscription and an all subscription) receives each live event
 *    once, tagged with the sub_id of the first of them.  A new subscription
 *    still gets the replay it asked for.
 *  - The run actor never blocks on a subscriber: it sends with
 *    rc_actor_send (no mailbox limit); queueing and slow-consumer policy are
 *    the subscriber's (the edge's --ws-queue-max).  A send that fails with
 *    RC_ECLOSED (the subscriber actor stopped) drops that subscriber from
 *    the run's list.
 *
 * Run subscriptions to a run that does not exist yet wait in the registry
 * and attach when the run is created (before its first event, so they see
 * everything).  Conversation and all subscriptions attach to every existing
 * matching run and to runs created (or joining the conversation) later;
 * the registry holds its lock across "add subscription + attach to existing
 * runs" and "create run + attach matching subscriptions", so no run is
 * missed or attached twice.
 *
 * Functions here may be called from any thread unless stated otherwise.
 */
#ifndef RC_RUNS_H
#define RC_RUNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rc_actor.h"
#include "rc_blob.h"
#include "rc_proto.h"

struct rc_config;
struct rc_metrics;
struct rc_runs;

#define RC_RUNS_SHARDS 64

/* ---- Frames sent to subscribers ---- */

/* Message type of struct rc_sub_frame (below RC_MSG_SYSTEM_BASE; other
 * message types of a subscriber actor must avoid 0x52430000..0x524300FF). */
#define RC_MSG_SUB_FRAME 0x52430001u

enum rc_frame_kind {
    RC_FRAME_EV,   /* an `ev` map */
    RC_FRAME_SNAP, /* a `snap` map */
    RC_FRAME_GAP,  /* a `gap` map (always followed by a snap) */
};

struct rc_sub_frame {
    struct rc_msg hdr;    /* type RC_MSG_SUB_FRAME; free_fn releases blob and run */
    struct rc_blob *blob; /* one encoded server message (msgpack map), held */
    struct rc_blob *run;  /* the run id bytes (not NUL-terminated), held */
    uint64_t sub_id;      /* the subscription this frame answers */
    uint64_t seq;         /* ev: its seq; snap: the seq it reflects; gap: `to` */
    uint64_t recv_ns;     /* ev: rc_clock_mono_ns() when the broker received it
                             (fan-out latency); 0 for replays, snaps and gaps */
    uint8_t kind;         /* enum rc_frame_kind */
    bool terminal;        /* ev: the run's terminal; snap: the run has ended */
    bool replay;          /* ev sent from history (resume), not live */
};

/* ---- Subscribe / unsubscribe ---- */

struct rc_sub_req {
    enum rc_sub_kind kind; /* RC_SUB_RUN, RC_SUB_CONV or RC_SUB_ALL */
    const char *target;    /* run or conv id (validated by the caller); ignored for all */
    size_t target_len;
    struct rc_actor *subscriber; /* receives rc_sub_frame; the registry and run
                                    actors take their own references */
    uint64_t sub_id; /* chosen by the subscriber, echoed in frames; unique per subscriber */
    bool has_since;
    uint64_t since;        /* RC_SUB_RUN: last seq seen */
    const void *since_map; /* RC_SUB_CONV/ALL: raw msgpack map run -> seq (copied); NULL: none */
    size_t since_map_len;
    bool has_epoch;
    uint64_t epoch;
    int snapshot; /* -1: default (true without since), 0: no, 1: yes */
};

/*
 * Subscribes.  RC_SUB_RUN: attaches to the run now, or waits until it is
 * created.  RC_SUB_CONV / RC_SUB_ALL: attaches to every matching run now
 * and later.  Returns 0, RC_EINVAL (bad kind or target), RC_ENOMEM or
 * RC_ECLOSED (registry stopping).  Frames follow asynchronously.
 */
int rc_runs_subscribe(struct rc_runs *runs, const struct rc_sub_req *req);

/* Ends the subscription (kind, target, subscriber, sub_id) as given to
 * rc_runs_subscribe.  Frames already sent may still arrive.  RC_ENOTFOUND
 * when the registry holds no such waiting/conv/all subscription and no such
 * run (a run subscription to an existing run always returns 0). */
int rc_runs_unsubscribe(struct rc_runs *runs, enum rc_sub_kind kind, const char *target,
                        size_t target_len, struct rc_actor *subscriber, uint64_t sub_id);

/* Forgets every waiting, conversation and all subscription of subscriber
 * (call when a connection closes).  Run actors drop it lazily: their next
 * send to the stopped actor fails with RC_ECLOSED. */
void rc_runs_unsubscribe_all(struct rc_runs *runs, struct rc_actor *subscriber);

/* ---- Queries for the HTTP API (asynchronous; callbacks run on a worker
 * thread, once, and must not block) ---- */

struct rc_run_summary {
    char run[129];
    char conv[129]; /* "" when none */
    enum rc_run_status status;
    char phase[65];        /* "" when none */
    int64_t created_at;    /* wall ms */
    int64_t last_event_at; /* wall ms; 0 when no event yet */
    uint64_t seq;
    bool tombstone; /* history freed */
};

struct rc_runs_filter {
    int status;       /* -1: any, else enum rc_run_status */
    const char *conv; /* NULL: any */
    size_t conv_len;
    size_t limit; /* 0: no limit; the most recently created first */
};

/* v: n summaries, the most recently created first (valid during the call). */
typedef void (*rc_runs_list_cb)(void *arg, int rc, const struct rc_run_summary *v, size_t n);
/* Visits every matching run (one message per run actor; O(runs)); cb is
 * called exactly once when 0 is returned (RC_ENOMEM: never). */
int rc_runs_list(struct rc_runs *runs, const struct rc_runs_filter *f, rc_runs_list_cb cb,
                 void *arg);

/* rc 0 and snap: the run's current `snap` map (msgpack; valid during the
 * call, hold it to keep it); rc RC_ENOTFOUND: the run left the registry
 * between the lookup and the answer.
 * rc_runs_snapshot / rc_runs_events return 0 when cb will be called exactly
 * once, or RC_ENOTFOUND (no such run) / RC_ENOMEM, and then cb is never
 * called. */
typedef void (*rc_runs_snap_cb)(void *arg, int rc, struct rc_blob *snap);
int rc_runs_snapshot(struct rc_runs *runs, const char *run, size_t run_len, rc_runs_snap_cb cb,
                     void *arg);

/* rc 0: evs[0..n) are the retained `ev` maps with seq > since, oldest first
 * (at most max when max > 0); first is the oldest retained seq (0: none
 * retained), last the run's current seq.  RC_ENOTFOUND: no such run. */
typedef void (*rc_runs_events_cb)(void *arg, int rc, struct rc_blob *const *evs, size_t n,
                                  uint64_t first, uint64_t last);
int rc_runs_events(struct rc_runs *runs, const char *run, size_t run_len, uint64_t since,
                   size_t max, rc_runs_events_cb cb, void *arg);

/* ---- Counts (approximate, relaxed reads) ---- */

/* Runs in the registry (active, retained and tombstoned). */
size_t rc_runs_count(const struct rc_runs *runs);
/* Runs not ended yet (what --max-runs limits). */
size_t rc_runs_active(const struct rc_runs *runs);

/* ---- Lifecycle (rc_broker does this; tests of the core may too) ---- */

/*
 * A registry whose run actors live in sys.  cfg, metrics and sys must
 * outlive it.  epoch goes into every `ev` and `snap`.
 */
int rc_runs_new(struct rc_actor_system *sys, const struct rc_config *cfg,
                struct rc_metrics *metrics, uint64_t epoch, struct rc_runs **out);
/* Refuses new runs and subscriptions from now on (RC_ECLOSED); events for
 * existing runs are still handled. */
void rc_runs_close(struct rc_runs *runs);
/* Frees the registry; call after rc_actor_system_stop (every run actor has
 * stopped).  NULL does nothing. */
void rc_runs_free(struct rc_runs *runs);

uint64_t rc_runs_epoch(const struct rc_runs *runs);

#endif
