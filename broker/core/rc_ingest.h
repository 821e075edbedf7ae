/*
 * rc_ingest: from one received publish message to run-actor messages.
 * Private to broker/core; the nng ingress and rc_broker_publish share it.
 *
 * rc_ingest_dispatch decodes and validates the message, answers bad
 * elements, groups the good events by run and sends ONE message per
 * (run, message) to that run's actor (creating the run when needed).
 *
 * The run messages of one received message are queued together when it
 * is done (rc_send_batch: one inject-queue lock and at most one wake-up per
 * sleeping worker for the whole message; it used to be one lock and one
 * wake check per run, and a batch spreads over tens of runs).
 *
 * PULL contexts decode in their decoder actor's turns: rc_ingest_dispatch
 * only counts the message in flight and sends it to the context's decoder
 * actor, whose turns do the rest (in arrival order: one actor, one
 * mailbox).  From nng's PULL socket the message is queued for a worker:
 * the nng thread is back in nng at once, re-posts its receive sooner, and
 * nng then completes more receives inside its pipe callbacks instead of
 * waking a task thread for each (docs/ARCHITECTURE.md, "The decoder
 * actor"; running the turns on that thread was measured and not kept,
 * "Ingest hand-offs").  From the stream reader (rc_ingest_dispatch_frames:
 * every message of one read, rc_sppull.h) an idle decoder instead runs
 * right there, on the nng thread that read the bytes, with the idle runs
 * it feeds nested in its turn: the connection's next read waits for it,
 * but the kernel's socket buffer holds what arrives meanwhile, and no
 * worker is woken (docs/ARCHITECTURE.md, "The stream reader decodes where
 * it reads").  REP and in-process contexts decode on the calling thread
 * (a request has its reply to send; the in-process API is measured in
 * instructions).  The buffer stays alive (refcounted) until every run
 * actor is done with the events, which are views into it.
 */
#ifndef RC_INGEST_H
#define RC_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rc_metrics.h"
#include "rc_run.h"

/* Writes a description of the peer behind pipe into out (for logs). */
typedef void (*rc_ingest_peer_fn)(void *arg, uint32_t pipe, char *out, size_t cap);

/* Scratch state of one receive context; used by one thread at a time. */
struct rc_ingest_ctx {
    struct rc_runs *runs;
    struct rc_metrics *metrics;
    enum rc_ingest_kind kind;
    rc_ingest_peer_fn peer;
    void *peer_arg;
    /* per message */
    struct rc_ev_slot *slots; /* scratch, or the slots of `pre` */
    uint32_t n, cap;
    struct rc_ev_slot *own_slots; /* the scratch array itself */
    uint32_t own_cap;
    bool in_pre; /* decoding straight into a preallocated run message */
    /* A preallocated run message that was not sent (its batch spread over
     * several runs), kept for the next message instead of a large free and
     * malloc per batch; holds nothing, not counted in flight. */
    struct rc_ingest_msg *spare;
    uint32_t spare_cap;
    struct rc_ingest_err *errs;
    uint32_t n_errs, cap_errs;
    /* grouping by run (see group_events): per event, per group, and an
     * open-addressing table of cap_gtab entries */
    uint32_t *group;  /* event -> group */
    uint32_t *gcount; /* group -> events */
    uint32_t *gfirst; /* group -> its first event */
    struct rc_ingest_msg **gmsg;
    uint32_t *gtab;
    uint32_t cap_group, cap_gtab;
    /* The run messages of one received message, queued together at the end
     * of the dispatch. */
    struct rc_send_batch batch;
    /* PULL: the decoder actor (its state is a second context that only its
     * turns use), or NULL: decode on the calling thread.  Set by init. */
    struct rc_actor *decoder;
    /* Hand run messages to idle run actors inline (see send_one): in a
     * PULL decoder turn, set per message by the decoder from its backlog;
     * in a REP context, set once at init (--ingest-inline-backlog > 0). */
    bool inline_runs;
    /* The decoder's run lookups (rc_runs_get_cached), or NULL: the
     * registry's, one lock and one reference per run message. */
    struct rc_runs_cache *cache;
};

/* A PULL context spawns its decoder actor (in the runs' actor system). */
void rc_ingest_ctx_init(struct rc_ingest_ctx *c, struct rc_runs *runs, struct rc_metrics *m,
                        enum rc_ingest_kind kind, rc_ingest_peer_fn peer, void *peer_arg);
/* The decoder, if any, first dispatches what it was sent, then stops and
 * frees its own context; this does not wait for it. */
void rc_ingest_ctx_fini(struct rc_ingest_ctx *c);

/* Returns the ack to fill for a message of n elements, or NULL (no reply).
 * The ack's complete callback sends the reply. */
typedef struct rc_ack *(*rc_ingest_ack_fn)(void *arg, uint32_t n);

/*
 * Handles one message (PULL: hands it to the decoder).  Consumes the
 * caller's reference on buf.  When ack_for returns an ack, its complete
 * callback runs exactly once (maybe before this returns, maybe later on a
 * worker thread).
 */
void rc_ingest_dispatch(struct rc_ingest_ctx *c, struct rc_ingest_buf *buf, uint32_t pipe,
                        rc_ingest_ack_fn ack_for, void *arg);

/*
 * PULL: hands a buffer of complete SP frames (hdr_len bytes of header
 * each, see rc_sppull.h) read from one connection to the decoder, which
 * dispatches each frame's message in order: when the decoder is idle, in
 * its turn run right here (the caller is an I/O thread running no turn),
 * else queued behind what it has.  Counts them in flight at once (the
 * elements their array headers announce), so the caller's pause sees
 * them.  Consumes the caller's reference on buf.  When the
 * broker is not accepting, refuses them all (`shutting_down`, counted).
 */
void rc_ingest_dispatch_frames(struct rc_ingest_ctx *c, struct rc_ingest_buf *buf, uint32_t pipe,
                               unsigned hdr_len, bool accepting);

/* Answers a whole message with one error (shutting_down, ...). */
void rc_ingest_refuse(struct rc_ingest_ctx *c, struct rc_ingest_buf *buf, enum rc_proto_code code,
                      const char *message, rc_ingest_ack_fn ack_for, void *arg);

#endif
