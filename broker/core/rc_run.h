/*
 * rc_run: the run actor and the messages between the registry / ingress and
 * run actors.  Private to broker/core (rc_runs.h is the public face).
 *
 * Ownership: a struct rc_run is the state of its actor.  Fields marked
 * "owner" are touched only by the run actor's behaviour (one thread at a
 * time, ordered by the mailbox); "immutable" fields are set before the
 * actor is published in the registry and never change; the registry and
 * the pipe index have their own locks, named at each field.
 */
#ifndef RC_RUN_H
#define RC_RUN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rc_actor.h"
#include "rc_blob.h"
#include "rc_buf.h"
#include "rc_proto.h"
#include "rc_runs.h"

struct rc_runs;
struct rc_metrics;

/* ---- Message types a run actor handles ---- */
enum {
    RC_RMSG_INGEST = 0x52430010u,
    RC_RMSG_SUB,
    RC_RMSG_UNSUB,
    RC_RMSG_PIPE_GONE,
    RC_RMSG_SUMMARY,
    RC_RMSG_SNAP,
    RC_RMSG_EVENTS,
};

/* ---- The received message, shared by every run message built from it ---- */

struct rc_ingest_buf {
    atomic_uint refs; /* atomic: acq_rel on release so the last releaser sees every use */
    void (*free_fn)(struct rc_ingest_buf *b);
    const uint8_t *data;
    size_t len;
    void *owner; /* the nng_msg, or NULL when data is owned by this struct */
    /* rc_clock_mono_ns() when the message was received (the nng callback);
     * 0: not stamped, rc_ingest_dispatch stamps it.  The watchdog counts a
     * run's idleness from here, not from when its actor got to the event,
     * and an event received before a watchdog fired is never refused
     * because the ingress or the actor lagged.  Written before the buffer
     * is shared. */
    uint64_t recv_ns;
    /* The registry whose in-flight gauge holds inflight_n for this buffer
     * until it is freed, or NULL.  rc_ingest_dispatch / rc_ingest_refuse
     * set both (before the buffer is shared, or before the run messages
     * that share it are sent), so creators need not; the last release
     * reads them (ordered by refs). */
    struct rc_runs *inflight;
    uint32_t inflight_n;
    /* PULL: the message that queues this buffer on its decoder
     * actor (rc_ingest.c), embedded so that the hand-off allocates nothing.
     * While queued it holds a reference of its own, released when the
     * runtime frees the message: after the decoder's turn, or unhandled
     * when the actor system stops.  Written before the send, read by the
     * decoder's turn and the free function (ordered by the mailbox). */
    struct rc_msg decode_msg;
    uint32_t decode_pipe;
    bool decode_taken; /* the decoder's turn dispatched it */
    /* 0: the buffer is one publish message.  8 or 9: it is a run of
     * complete SP frames (rc_sppull.h) with headers of that length, `frames`
     * of them; set by rc_ingest_dispatch_frames before the buffer is
     * shared. */
    uint8_t frame_hdr;
    uint32_t frames;
    struct rc_metrics *decode_metrics;
};

struct rc_ingest_buf *rc_ingest_buf_hold(struct rc_ingest_buf *b);
/* n more references at once (one atomic add for a batch's run messages). */
void rc_ingest_buf_hold_n(struct rc_ingest_buf *b, uint32_t n);
void rc_ingest_buf_release(struct rc_ingest_buf *b);
/* Drops n references at once. */
void rc_ingest_buf_release_n(struct rc_ingest_buf *b, uint32_t n);
/* While this thread dispatches b (holding a reference of its own from
 * begin to end), the run messages built from b that are freed on this
 * thread (the run turns it runs inline) do not release their references
 * one locked decrement each: end returns how many they owe, for one
 * rc_ingest_buf_release_n.  Not nested. */
void rc_ingest_buf_defer_begin(struct rc_ingest_buf *b);
uint32_t rc_ingest_buf_defer_end(void);
/* One reference, every other field zero: data[0, len) is freed by free_fn
 * (NULL: rc_free(b), the bytes being part of b's allocation) at the last
 * release; owner is free_fn's. */
void rc_ingest_buf_init(struct rc_ingest_buf *b, const uint8_t *data, size_t len, void *owner,
                        void (*free_fn)(struct rc_ingest_buf *b));
/* A buffer holding a copy of len bytes. */
struct rc_ingest_buf *rc_ingest_buf_copy(const void *p, size_t len);

/* ---- Ack collector (REP replies, in-process publish callbacks) ---- */

struct rc_ack {
    /* atomic countdown: one for the dispatcher and one per run message.
     * acq_rel in rc_ack_done: each decrement releases that party's writes
     * to results[] and the last one acquires them all before encoding. */
    atomic_uint pending;
    uint32_t n;
    void (*complete)(struct rc_ack *ack); /* runs once, on the last done; calls rc_ack_free */
    void *arg;
    char (*reasons)[112];                 /* lazily allocated: error texts, one slot per element */
    struct rc_proto_ack_result results[]; /* one per element; each written by one party */
};

struct rc_ack *rc_ack_new(uint32_t n, void (*complete)(struct rc_ack *), void *arg);
void rc_ack_done(struct rc_ack *ack);
void rc_ack_free(struct rc_ack *ack);
/* Sets element i's result to err (its reason copied into the ack). */
void rc_ack_set_error(struct rc_ack *ack, uint32_t i, const struct rc_proto_error *err);
/* Sets element i's result to code with a static message. */
void rc_ack_set_code(struct rc_ack *ack, uint32_t i, enum rc_proto_code code, const char *message);

/* ---- One decoded event, packed without the 32 start timeouts (they are
 * decoded again from raw in the run actor when n_timeouts > 0) ---- */

#define RC_EV_HEAD   offsetof(struct rc_event, timeouts)
#define RC_EV_TAIL   (offsetof(struct rc_event, timeouts) + sizeof(((struct rc_event *)0)->timeouts))
#define RC_EV_PACKED (RC_EV_HEAD + sizeof(struct rc_event) - RC_EV_TAIL)

struct rc_ev_slot {
    uint32_t index; /* position in the publish message */
    uint32_t hash;  /* of the run id */
    _Alignas(8) unsigned char ev[RC_EV_PACKED];
};

void rc_ev_pack(struct rc_ev_slot *s, const struct rc_event *ev);
/* Unpacks into ev; re-decodes start timeouts from ev->raw when needed. */
void rc_ev_unpack(const struct rc_ev_slot *s, struct rc_event *ev,
                  const struct rc_proto_limits *lim);

/* ---- Messages to run actors ---- */

struct rc_ingest_msg {
    struct rc_msg hdr; /* RC_RMSG_INGEST; free_fn: rc_ingest_msg_free */
    struct rc_runs *runs;
    struct rc_ingest_buf *buf; /* held: the events are views into it */
    struct rc_ack *ack;        /* NULL: fire and forget */
    uint32_t pipe;
    uint32_t n;
    int64_t recv_wall_ms;
    uint64_t recv_ns;
    bool handled; /* set by the run actor; unhandled (dropped) -> error results */
    struct rc_ev_slot slots[];
};

struct rc_ingest_msg *rc_ingest_msg_new(struct rc_runs *runs, uint32_t n);

/* A subscription as carried to a run actor. */
struct rc_sub_msg {
    struct rc_msg hdr;           /* RC_RMSG_SUB / RC_RMSG_UNSUB */
    struct rc_actor *subscriber; /* held */
    uint64_t sub_id;
    struct rc_blob *since_map; /* held or NULL: conv/all since map */
    bool has_since;
    uint64_t since;
    bool has_epoch;
    uint64_t epoch;
    int snapshot;
    bool joined; /* the run joined the subscription's conversation after it
                    was made: replay the run from its first event */
    bool wide;   /* from a conv/all subscription */
};

struct rc_pipe_msg {
    struct rc_msg hdr; /* RC_RMSG_PIPE_GONE */
    uint32_t pipe;
    uint64_t at_ms; /* mono */
};

struct rc_list_collector;
struct rc_query_msg {
    struct rc_msg hdr; /* RC_RMSG_SUMMARY / _SNAP / _EVENTS */
    bool handled;
    struct rc_list_collector *list; /* SUMMARY */
    rc_runs_snap_cb snap_cb;        /* SNAP */
    rc_runs_events_cb events_cb;    /* EVENTS */
    void *arg;
    uint64_t since;
    size_t max;
};

/* ---- The run ---- */

enum rc_run_state {
    RC_RS_ACTIVE,    /* pending or running: watchdog armed */
    RC_RS_RETAINED,  /* ended; history kept for --retention */
    RC_RS_TOMBSTONE, /* history freed; final snap kept for --tombstone-ttl */
    RC_RS_RETIRED,   /* removed from the registry, stopping */
};

struct rc_run_hist;
struct rc_run_snap;
struct rc_idem;
struct rc_run_subs;
struct rc_run_limits;
struct rc_run_xtra;

/*
 * 224 bytes (a jemalloc size class; checked by a static assert in rc_run.c):
 * every active run pays for each field here, a million times over, so
 * what only ended or orphaned runs need lives in struct rc_run_xtra.
 */
struct rc_run {
    struct rc_run *next;    /* registry shard chain: protected by the shard mutex */
    struct rc_actor *actor; /* immutable; the registry's reference */
    struct rc_runs *runs;   /* immutable */
    struct rc_blob *name;   /* immutable: the run id */

    /* pipe index: protected by the mutex of pipe shard `pipe_linked` */
    uint32_t pipe_linked; /* pipe the run is listed under; 0: none */
    /* owner */
    uint32_t pipe; /* pipe of the last accepted event (0: in-process) */
    /* pipe index, as pipe_linked */
    struct rc_run *pipe_next, *pipe_prev;

    /* owner */
    uint8_t status; /* enum rc_run_status */
    uint8_t state;  /* enum rc_run_state */
    uint8_t last_type;
    /* owner (bit-fields: one byte, so that the whole hash fits in the
     * 224-byte size class; every writer is the owner's turn or its fini) */
    bool gone : 1;       /* the last-delivering pipe closed since the last event */
    bool conv_bound : 1; /* registered in the conv index */
    bool truncated : 1;
    /* immutable: the name's registry hash (rc_runs_hash), kept whole so
     * that the registry's resize and removal never reread the name */
    uint32_t hash;
    uint64_t seq;
    uint64_t created_mono, last_event_mono, timer_due; /* ms */
    int64_t created_at, started_at, last_event_at;     /* wall ms */
    struct rc_blob *conv;                              /* owner writes once; the registry reads it
                                                          under its wide mutex after conv_bound */
    struct rc_blob *phase;                             /* current phase or NULL */
    struct rc_run_hist *hist;
    struct rc_run_snap *snap;
    struct rc_idem *idem;
    struct rc_run_subs *subs;
    struct rc_run_xtra *x; /* rarely needed: terminal, tombstone, per-run limits */
    struct rc_timer timer;
};

/* Creates the run state (not the actor). */
/* Counter deltas (history events and bytes, events accepted) of the run
 * turns that one thread runs between rc_run_deltas_begin and
 * rc_run_deltas_end, added to m once at the end instead of once per turn.
 * An ingest dispatch brackets the run turns it runs inline with them; m
 * must be the counters of those runs' broker (rc_runs_metrics). */
struct rc_run_deltas {
    int64_t events, bytes, accepted;
};
void rc_run_deltas_begin(struct rc_run_deltas *d);
void rc_run_deltas_end(struct rc_run_deltas *d, struct rc_metrics *m);

struct rc_run *rc_run_new(struct rc_runs *runs, const char *name, size_t len, uint32_t hash);
/* Behaviour and fini of run actors. */
void rc_run_behaviour(struct rc_actor *self, void *state, struct rc_msg *msg);
void rc_run_fini(void *state, int reason);
/* Arms the first watchdog (called by the registry after spawn). */
void rc_run_arm_initial(struct rc_run *run);

/* ---- Registry internals used by run actors and the ingress ---- */

struct rc_actor_system *rc_runs_system(struct rc_runs *runs);
const struct rc_config *rc_runs_config(struct rc_runs *runs);
struct rc_metrics *rc_runs_metrics(struct rc_runs *runs);
const struct rc_proto_limits *rc_runs_limits(struct rc_runs *runs);
bool rc_runs_closed(const struct rc_runs *runs);
/* The registry's 32-bit hash of a run or conv id: common/rc_hash.h's keyed
 * hash (SipHash-1-3, one random key per process, so colliding ids cannot be
 * precomputed), folded; its top 6 bits pick the shard. */
uint32_t rc_runs_hash(const char *p, size_t len);

/*
 * Finds (or, when create, creates) the run and returns its actor with one
 * reference held.  0, RC_ENOTFOUND, RC_ELIMIT (--max-runs), RC_ECLOSED
 * (registry closed), RC_ENOMEM.
 */
int rc_runs_get(struct rc_runs *runs, const char *name, size_t len, uint32_t hash, bool create,
                struct rc_actor **out);

/*
 * A lookup cache for one thread (or one actor's turns): run id -> actor,
 * 2-way set-associative by hash (1,024 entries, 32 KiB: a hundred busy
 * runs direct-mapped into 256 slots had ~17 of them evicting each other).
 * An entry holds the actor and the run's name and stays valid while no run
 * was removed from the registry shard it came from, so a hit costs no lock
 * and no reference count: what makes a dispatch of a batch spread over many
 * runs cheap.  A hit is exactly what rc_runs_get would return: a registered
 * run is only ever unlinked by rc_runs_remove, which invalidates its
 * shard's entries.
 */
#define RC_RUNS_CACHE_SETS 512u
#define RC_RUNS_CACHE_WAYS 2u
struct rc_runs_cache_ent {
    uint32_t hash;
    uint64_t gen;           /* the shard's removal count when filled */
    struct rc_actor *actor; /* held, or NULL: empty */
    struct rc_blob *name;   /* held */
};
struct rc_runs_cache {
    struct rc_runs_cache_ent ent[RC_RUNS_CACHE_SETS * RC_RUNS_CACHE_WAYS];
};
/* As rc_runs_get, but *out is borrowed from the cache (no reference for the
 * caller): valid until the next call on this cache or rc_runs_cache_fini. */
int rc_runs_get_cached(struct rc_runs *runs, struct rc_runs_cache *cache, const char *name,
                       size_t len, uint32_t hash, bool create, struct rc_actor **out);
/* Forgets the entry of hash (a send to its actor failed: the run retired). */
void rc_runs_cache_drop(struct rc_runs_cache *cache, uint32_t hash);
/* Releases every entry (the cache's memory is the caller's). */
void rc_runs_cache_fini(struct rc_runs_cache *cache);

/* The run's conv was set (owner thread): index it and attach conv subs. */
void rc_runs_bind_conv(struct rc_runs *runs, struct rc_run *run);
/* The run ended (owner thread): releases its --max-runs slot. */
void rc_runs_run_ended(struct rc_runs *runs, struct rc_run *run);
/* The tombstone expired (owner thread): unlists the run. */
void rc_runs_remove(struct rc_runs *runs, struct rc_run *run);
/* Pipe index (owner thread): list the run under its current pipe.  true:
 * that pipe closed already (its close was handled before this event), so
 * the run is not listed and its publisher is gone now. */
bool rc_runs_pipe_track(struct rc_runs *runs, struct rc_run *run, uint32_t pipe);
void rc_runs_pipe_untrack(struct rc_runs *runs, struct rc_run *run);
/* A publisher connection closed. */
void rc_runs_pipe_closed(struct rc_runs *runs, uint32_t pipe);

/* In-flight run messages (quiesce waits for 0; the PULL path pauses its
 * receives above --run-mailbox-limit): max(1, its run messages) per
 * received message, 1 added on entry to rc_ingest_dispatch (it covers the
 * decode too), the rest before the run messages are sent, all taken back
 * when the last of them is freed (rc_ingest_buf inflight_n): two or three
 * atomics per received message on a line the ingress and every worker
 * write, where it was two per run message (~47 for a batch of 64 over 100
 * runs).  A message's run messages thus count until the last of them is
 * handled, which errs on the side of pausing earlier. */
void rc_runs_inflight_add(struct rc_runs *runs, int delta);
uint64_t rc_runs_inflight(const struct rc_runs *runs);

/*
 * The PULL pause without a timer: a receiver that finds the gauge above
 * --run-mailbox-limit parks (rc_runs_parked_add(+1)) instead of receiving;
 * the decrement of rc_runs_inflight_add that leaves the gauge at or below
 * `below` while any receiver is parked calls fn(arg), on that thread (a
 * worker, usually), under a lock that rc_runs_set_resume also takes, so
 * once a registrant has cleared its registration fn is not running and will
 * not run for it.  fn re-posts the parked receivers and takes them back
 * off the count.  One registration at a time (the last wins); fn == NULL
 * clears it if arg is the registrant's.  fn must not call
 * rc_runs_set_resume.
 */
typedef void (*rc_runs_resume_fn)(void *arg);
void rc_runs_set_resume(struct rc_runs *runs, rc_runs_resume_fn fn, void *arg, uint64_t below);
void rc_runs_parked_add(struct rc_runs *runs, int delta);

/* List collector entry point for run actors. */
void rc_runs_list_add(struct rc_list_collector *c, const struct rc_run_summary *s);
void rc_runs_list_done(struct rc_list_collector *c);

#endif
