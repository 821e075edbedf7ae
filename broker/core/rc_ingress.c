/*
 * rc_ingress: nng PULL and REP sockets feeding rc_ingest_dispatch.
 */
#include "rc_ingress.h"

#include <inttypes.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "rc_alloc.h"
#include "rc_clock.h"
#include "rc_config.h"
#include "rc_error.h"
#include "rc_ingest.h"
#include "rc_log.h"
#include "rc_nngaddr.h"
#include "rc_proto.h"
#include "rc_runs.h"
#include "rc_sppull.h"

/* Consecutive receive errors (not closing) after which the ingress reports
 * itself failed to its supervisor. */
#define RC_INGRESS_MAX_ERRORS 1000

struct rc_ingress;

/* One receive in flight (PULL) or one request context (REP). */
struct rc_rx {
    struct rc_ingress *ing;
    nng_socket sock;
    enum rc_ingest_kind kind;
    nng_aio *aio;      /* receive */
    nng_aio *send_aio; /* REP reply */
    nng_ctx ctx;       /* REP */
    bool has_ctx;
    /* REP: two parties must finish before the next receive is started (the
     * receive callback returning, the reply send completing); acq_rel, the
     * last one re-arms */
    atomic_uint rearm;
    /* Hand-off marker for the thread sanitizer (and the memory model): nng
     * orders "start an operation" before "its callback runs" with its own
     * (uninstrumented) locks, so every start does a release increment and
     * every callback an acquire load of this counter. */
    atomic_uint sync;
    uint32_t errors;           /* REP: consecutive receive errors; receive callback only */
    bool ack_made;             /* REP: this request has an ack (receive callback only) */
    struct rc_ingest_ctx ictx; /* REP (PULL dispatches with its socket's) */
    bool has_ictx;             /* ictx was initialised (REP) */
    struct rc_rx *park_next;   /* PULL: on q->parked (back-pressure); protected by q->mtx */
    /* PULL: the reorder stage (struct rc_pullq).  ticket is written under
     * q->mtx when the receive is posted and read by its callback (ordered
     * by nng, see rc_rx.sync); msg and rv are written by the callback
     * before it deposits under q->mtx and read by the dispatcher after it
     * takes the entry under q->mtx. */
    struct rc_pullq *q;
    uint64_t ticket;
    nng_msg *msg;
    int rv;
    uint64_t recv_ns; /* PULL: when the callback got msg; same rules as msg */
};

/*
 * Per-socket order on the PULL path.
 *
 * With several nng_recv_aio in flight, nng runs their callbacks on
 * different threads at the same time, so "callback order" is not "message
 * order": two consecutive messages of one connection could reach their run
 * actor swapped.  Publish order within a connection must be seq order, so:
 *
 * 1. Every receive is posted with a ticket (0, 1, 2, ...) taken under
 *    q->mtx, and nng_recv_aio is called while holding q->mtx, so tickets
 *    are in post order.  nng 1.5.2's PULL (src/sp/protocol/pipeline0/
 *    pull.c) hands messages to waiting receives in FIFO post order: a
 *    receive either takes the first ready pipe's message at once or is
 *    appended to the socket's aio list, and an arriving message goes to the
 *    first aio of that list, both under the socket's lock (the two lists
 *    are never both non-empty).  A pipe reads its next message only after
 *    the previous one was handed out, so within a connection a later
 *    message always gets a later ticket.
 * 2. A completion deposits its receive in slot[ticket % cap] (message or
 *    error; every ticketed receive completes exactly once, cancelled and
 *    closed ones included).  Whoever finds no dispatcher at work becomes
 *    it and dispatches slot[next] while it is filled, in ticket order,
 *    outside the lock; the others just deposit and return.
 * 3. A receive is posted again only after its message was dispatched (by
 *    the dispatcher), so at most cap = --ingest-inflight tickets are
 *    outstanding and they all lie in [next, next + cap): the slots never
 *    collide, and --ingest-inflight still bounds what is held.
 *
 * Receives stay parallel in nng (reading, framing, waking); only the
 * decode + hand-off of one socket is serialized, which it has to be to keep
 * order.  Several --ingest sockets dispatch in parallel.
 *
 * Lock order: q->mtx, then nng's socket lock (inside nng_recv_aio).  nng
 * calls our callbacks without its locks held (nni_aio_finish_sync in
 * pull0_recv_cb runs after the socket lock is released), so this cannot
 * deadlock; nng_recv_aio never runs the callback in the caller's thread.
 */
struct rc_pullq {
    pthread_mutex_t mtx;
    uint64_t next_ticket; /* protected by mtx */
    uint64_t next;        /* protected by mtx: the next ticket to dispatch */
    bool dispatching;     /* protected by mtx: a thread is in the dispatch loop */
    bool closed;          /* protected by mtx: the socket is being closed; no more posts */
    struct rc_rx **slot;  /* protected by mtx; cap entries */
    size_t cap;
    uint32_t errors;           /* consecutive receive errors; dispatcher only */
    struct rc_ingest_ctx ictx; /* dispatcher only */
    struct rc_rx *parked;      /* protected by mtx: receivers paused for back-pressure */
    uint32_t n_parked;         /* protected by mtx */
    struct rc_runs *runs;      /* whose gauge the pause watches; set at creation */
};

struct rc_sock {
    nng_socket sock;
    enum rc_ingest_kind kind;
    /* Stored (release) before nng_pipe_notify, loaded (acquire) first in
     * pipe_cb: nng's hand-off from the registration to the callback is not
     * visible to TSan, this pair is. */
    struct rc_ingress *_Atomic ing;
    struct rc_pullq *q; /* PULL; set before the first receive */
    bool closed;        /* protected by rc_ingress.mtx */
    bool closing;       /* protected by rc_ingress.mtx: in socks_close */
    char *url;          /* resolved */
    /* PULL read as byte streams (--ingest-stream-reader, tcp and ipc): the
     * listener, and the contexts its connections' frames are dispatched
     * with, one decoder each (n_lanes: one per worker); then sock and q
     * are unused.  Each connection keeps the lane it was given when it
     * opened, so its messages stay in order; different connections' are
     * decoded side by side (see sp_opened). */
    struct rc_sppull *sp;
    struct rc_ingest_ctx *sp_lanes;
    /* connections per lane: relaxed, a balancing hint (see sp_opened) */
    atomic_uint *sp_lane_conns;
    uint32_t n_lanes; /* contexts of sp_lanes initialised */
    /* Connections nng has announced (ADD_PRE) and not yet removed
     * (REM_POST), and how many it has ever announced: relaxed, read only
     * by socks_settle to decide how long to wait. */
    atomic_uint pipes;
    atomic_uint pipes_added;
};

struct rc_ingress {
    struct rc_ingress_env env;
    struct rc_sock *socks;
    size_t n_socks;
    struct rc_rx **rx;
    size_t n_rx;
    pthread_mutex_t mtx;    /* protects closed and the nng_close calls */
    bool closed;            /* protected by mtx */
    atomic_bool stopping;   /* release in close, acquire in callbacks */
    struct rc_actor *owner; /* held; set once before traffic */
    atomic_bool failed;     /* one failure report only; relaxed exchange */
    atomic_uint published;  /* pipe_cb ends with a release; rc_ingress_free acquires */
    /* REP posts are fenced as PULL's are (see pull_fence): every
     * nng_ctx_recv / nng_ctx_send is made under rep_fence after checking
     * rep_fenced, which rc_ingress_close sets under it before nng_close.
     * A reply completes on a worker whenever the runs have answered, so
     * without the fence it could be posted while a failed ingress's socket
     * closes (a supervisor restart), and nng panics ("pthread_mutex_lock:
     * Invalid argument" in nng_ctx_send; seen once in
     * runcastd/ingress_failures_restart_it_then_exit_70_past_the_intensity). */
    pthread_mutex_t rep_fence;
    bool rep_fenced; /* protected by rep_fence */
};

static void rx_publish(struct rc_rx *rx)
{
    /* release: see struct rc_rx.sync; pairs with rx_acquire in the callback */
    atomic_fetch_add_explicit(&rx->sync, 1, memory_order_release);
}

static void rx_acquire(struct rc_rx *rx)
{
    /* acquire: pairs with rx_publish before the operation was started */
    (void)atomic_load_explicit(&rx->sync, memory_order_acquire);
}

static bool ing_stopping(struct rc_ingress *ing)
{
    /* acquire: pairs with the release store in rc_ingress_close */
    return atomic_load_explicit(&ing->stopping, memory_order_acquire);
}

static bool accepting(struct rc_ingress *ing)
{
    /* acquire: pairs with the broker's release store at quiesce */
    return atomic_load_explicit(ing->env.accepting, memory_order_acquire);
}

/* ---- peers and buffers ---- */

/* rc_ingest_peer_fn: arg is the stream listener, or NULL for nng pipes. */
static void peer_of(void *arg, uint32_t pipe_id, char *out, size_t cap)
{
    if (arg != NULL) {
        rc_sppull_peer(arg, pipe_id, out, cap);
        return;
    }
    nng_pipe p = NNG_PIPE_INITIALIZER;
    nng_sockaddr sa;
    char label[32];
    p.id = pipe_id;
    snprintf(label, sizeof(label), "pipe %" PRIu32, pipe_id);
    if (!pipe_id || nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0) {
        snprintf(out, cap, "%s", label);
        return;
    }
    rc_nngaddr_format(&sa, label, out, cap);
}

static void nngbuf_free(struct rc_ingest_buf *b)
{
    nng_msg_free(b->owner);
    rc_free(b);
}

static struct rc_ingest_buf *wrap(nng_msg *msg)
{
    struct rc_ingest_buf *b = rc_malloc(sizeof(*b));
    if (!b)
        return NULL;
    /* recv_ns 0: REP is dispatched from the receive callback, stamped there */
    rc_ingest_buf_init(b, nng_msg_body(msg), nng_msg_len(msg), msg, nngbuf_free);
    return b;
}

static void report_failure(struct rc_ingress *ing, int rv)
{
    /* relaxed: only decides who reports; nothing else is ordered by it */
    if (atomic_exchange_explicit(&ing->failed, true, memory_order_relaxed) || !ing->owner)
        return;
    rc_log(RC_LOG_ERROR, "ingress", NULL, NULL, "receiving keeps failing (%s); restarting",
           nng_strerror(rv));
    struct rc_msg *m = rc_msg_new(sizeof(struct rc_msg), RC_MSG_INGRESS_FAIL);
    if (m && rc_actor_send(ing->owner, m) != 0)
        rc_msg_free(m);
}

/* ---- PULL ---- */

/* Posts rx's receive with the next ticket (see struct rc_pullq); q->mtx
 * held.  Under it so tickets follow nng's post order; nng never runs the
 * callback inside nng_recv_aio (it is dispatched to a task queue).  The
 * caller checked pull_closed under the same hold. */
static void pull_post_locked(struct rc_rx *rx)
{
    rx->ticket = rx->q->next_ticket++;
    rx_publish(rx);
    nng_recv_aio(rx->sock, rx->aio);
}

/* Whether q takes no more receives: a dispatcher may post a receive for
 * another rx, and rc_ingress_free takes every q->mtx after setting
 * stopping and before nng_aio_stop, so a post either happened before that
 * rx's nng_aio_stop (which then cancels and waits for it) or does not
 * happen at all.  q->mtx held. */
static bool pull_closed(struct rc_rx *rx)
{
    return ing_stopping(rx->ing) || rx->q->closed;
}

static void pull_post(struct rc_rx *rx)
{
    struct rc_pullq *q = rx->q;
    pthread_mutex_lock(&q->mtx);
    if (!pull_closed(rx))
        pull_post_locked(rx);
    pthread_mutex_unlock(&q->mtx);
}

/* Re-posts every parked receiver of q; q->mtx held. */
static void pull_unpark_locked(struct rc_pullq *q)
{
    if (q->parked == NULL || pull_closed(q->parked))
        return;
    uint32_t n = 0;
    for (struct rc_rx *rx = q->parked, *next; rx != NULL; rx = next) {
        next = rx->park_next;
        rx->park_next = NULL;
        pull_post_locked(rx);
        n++;
    }
    q->parked = NULL;
    q->n_parked = 0;
    rc_runs_parked_add(q->runs, -(int)n);
}

/* The gauge at which parked receivers resume: half the limit, so a pause
 * lasts until the backlog has halved rather than flapping at the limit. */
static uint64_t pull_resume_below(const struct rc_ingress *ing)
{
    return ing->env.cfg->run_mailbox_limit / 2;
}

/* Whether the in-flight gauge is past the limit where PULL receivers (and
 * stream connections) park, and whether it is low enough to resume them. */
static bool pull_over_limit(const struct rc_ingress *ing)
{
    return rc_runs_inflight(ing->env.runs) > ing->env.cfg->run_mailbox_limit;
}

static bool pull_may_resume(const struct rc_ingress *ing)
{
    return rc_runs_inflight(ing->env.runs) <= pull_resume_below(ing);
}

/* Counts n receivers parked (or, negative, resumed). */
static void pull_count_parked(struct rc_ingress *ing, int n)
{
    rc_runs_parked_add(ing->env.runs, n);
    if (n > 0)
        rc_metric_add(&ing->env.metrics->ingest_pauses, (uint64_t)n);
}

/*
 * Fire-and-forget input has no reply to say `overloaded`, so the PULL path
 * pushes back instead of dropping: run messages are sent without the
 * mailbox limit, and while more than --run-mailbox-limit messages are in
 * flight (rc_runs_inflight) a receiver that finished its message parks
 * instead of receiving again, so nng stops reading and TCP slows the
 * publishers.  No timer: the gauge's decrement that brings it down to half
 * the limit re-posts the parked receivers (rc_runs_set_resume ->
 * pull_resume, on the worker that handled the message).  It was a 1 ms
 * nng_sleep_aio per paused receive, and nng 1.5.2's expire threads spin on
 * the clock while a sleep is pending (4 % of the broker's CPU in the
 * batched bench).
 *
 * The park and the wake-up are a Dekker pair: this side adds to the parked
 * count, then re-reads the gauge; rc_runs_inflight_add decrements the
 * gauge, then reads the parked count (both seq_cst).  So either the
 * re-read here sees the gauge low and unparks at once, or the decrement
 * that brings it low sees the parked count and calls pull_resume.
 */
static void pull_rearm(struct rc_rx *rx)
{
    struct rc_ingress *ing = rx->ing;
    if (!pull_over_limit(ing)) {
        pull_post(rx);
        return;
    }
    struct rc_pullq *q = rx->q;
    pthread_mutex_lock(&q->mtx);
    if (!pull_closed(rx)) {
        rx->park_next = q->parked;
        q->parked = rx;
        q->n_parked++;
        pull_count_parked(ing, 1);
        if (pull_may_resume(ing))
            pull_unpark_locked(q);
    }
    pthread_mutex_unlock(&q->mtx);
}

/* Handles one completed receive, in ticket order; dispatcher only. */
static void pull_handle(struct rc_pullq *q, struct rc_rx *rx)
{
    struct rc_ingress *ing = rx->ing;
    int rv = rx->rv;
    nng_msg *msg = rx->msg;
    rx->msg = NULL;
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || ing_stopping(ing)) {
        if (msg)
            nng_msg_free(msg); /* closing: not re-armed */
        return;
    }
    if (rv != 0) {
        rc_metric_add(&ing->env.metrics->ingest_errors, 1);
        RC_LOG_RATELIMITED(RC_LOG_WARN, "ingress", NULL, NULL, "PULL receive failed: %s",
                           nng_strerror(rv));
        if (++q->errors >= RC_INGRESS_MAX_ERRORS) {
            report_failure(ing, rv);
            return;
        }
        pull_post(rx);
        return;
    }
    q->errors = 0;
    uint32_t pipe = (uint32_t)nng_pipe_id(nng_msg_get_pipe(msg));
    struct rc_ingest_buf *b = wrap(msg);
    if (!b) {
        nng_msg_free(msg);
        rc_metric_add(&ing->env.metrics->events_rejected[RC_PROTO_OVERLOADED], 1);
    } else if (!accepting(ing)) {
        rc_ingest_refuse(&q->ictx, b, RC_PROTO_SHUTTING_DOWN, "the broker is shutting down", NULL,
                         NULL);
    } else {
        b->recv_ns = rx->recv_ns; /* received then, not when its ticket came up */
        rc_ingest_dispatch(&q->ictx, b, pipe, NULL, NULL);
    }
    pull_rearm(rx);
}

/* Deposits a completed receive; dispatches every consecutive ticket from
 * q->next on unless another thread is already doing so (it will find this
 * one).  See struct rc_pullq. */
static void pull_deposit(struct rc_rx *rx)
{
    struct rc_pullq *q = rx->q;
    pthread_mutex_lock(&q->mtx);
    q->slot[rx->ticket % q->cap] = rx;
    if (q->dispatching) {
        pthread_mutex_unlock(&q->mtx);
        return;
    }
    q->dispatching = true;
    struct rc_rx *r;
    while ((r = q->slot[q->next % q->cap]) != NULL) {
        q->slot[q->next % q->cap] = NULL;
        q->next++;
        pthread_mutex_unlock(&q->mtx);
        pull_handle(q, r); /* may post r again: takes q->mtx itself */
        pthread_mutex_lock(&q->mtx);
    }
    q->dispatching = false;
    pthread_mutex_unlock(&q->mtx);
}

static void pull_cb_inner(void *arg)
{
    struct rc_rx *rx = arg;
    rx_acquire(rx);
    int rv = nng_aio_result(rx->aio);
    /* every ticketed receive is deposited, failed ones too, so that the
     * tickets after it are not held up */
    rx->rv = rv;
    rx->msg = NULL;
    if (rv == 0) {
        rx->msg = nng_aio_get_msg(rx->aio);
        rx->recv_ns = rc_clock_mono_ns();
        nng_aio_set_msg(rx->aio, NULL);
    }
    pull_deposit(rx);
}

/* The callbacks' last touch of rx happens-before rc_ingress_free (which
 * acquires after nng_aio_stop); see struct rc_rx.sync. */
static void pull_cb(void *arg)
{
    pull_cb_inner(arg);
    rx_publish(arg);
}

/* ---- REP ---- */

/* Posts the next receive on rx's context unless the socket is closing (see
 * rc_ingress.rep_fence). */
static void rep_post_recv(struct rc_rx *rx)
{
    struct rc_ingress *ing = rx->ing;
    pthread_mutex_lock(&ing->rep_fence);
    if (!ing->rep_fenced) {
        rx_publish(rx);
        nng_ctx_recv(rx->ctx, rx->aio);
    }
    pthread_mutex_unlock(&ing->rep_fence);
}

/* Posts reply on rx's context; false (reply not consumed) when the socket
 * is closing. */
static bool rep_post_send(struct rc_rx *rx, nng_msg *reply)
{
    struct rc_ingress *ing = rx->ing;
    bool posted = false;
    pthread_mutex_lock(&ing->rep_fence);
    if (!ing->rep_fenced) {
        nng_aio_set_msg(rx->send_aio, reply);
        rx_publish(rx);
        nng_ctx_send(rx->ctx, rx->send_aio);
        posted = true;
    }
    pthread_mutex_unlock(&ing->rep_fence);
    return posted;
}

static void rep_rearm(struct rc_rx *rx)
{
    /* acq_rel: see struct rc_rx.rearm */
    if (atomic_fetch_sub_explicit(&rx->rearm, 1, memory_order_acq_rel) != 1)
        return;
    if (ing_stopping(rx->ing))
        return;
    rep_post_recv(rx);
}

static void rep_complete(struct rc_ack *ack)
{
    struct rc_rx *rx = ack->arg;
    struct rc_ingress *ing = rx->ing;
    struct rc_buf b;
    rc_buf_init(&b);
    nng_msg *reply = NULL;
    if (rc_proto_encode_ack(&b, ing->env.epoch, ack->results, ack->n) == 0 &&
        nng_msg_alloc(&reply, 0) == 0 && nng_msg_append(reply, b.data, b.len) != 0) {
        nng_msg_free(reply);
        reply = NULL;
    }
    rc_buf_fini(&b);
    rc_ack_free(ack);
    if (!reply) {
        rc_metric_add(&ing->env.metrics->ack_failures, 1);
        /* no reply: the requester's resend timer retries; re-arm now */
        rep_rearm(rx);
        return;
    }
    if (!rep_post_send(rx, reply))
        nng_msg_free(reply); /* closing: the requester's resend finds the next broker */
}

static void rep_send_cb_inner(void *arg)
{
    struct rc_rx *rx = arg;
    rx_acquire(rx);
    int rv = nng_aio_result(rx->send_aio);
    if (rv != 0) {
        if (nng_aio_get_msg(rx->send_aio))
            nng_msg_free(nng_aio_get_msg(rx->send_aio));
        nng_aio_set_msg(rx->send_aio, NULL);
        if (rv != NNG_ECLOSED)
            rc_metric_add(&rx->ing->env.metrics->ack_failures, 1);
    } else {
        rc_metric_add(&rx->ing->env.metrics->acks_sent, 1);
    }
    rep_rearm(rx);
}

static struct rc_ack *rep_ack_for(void *arg, uint32_t n)
{
    struct rc_rx *rx = arg;
    struct rc_ack *ack = rc_ack_new(n, rep_complete, arg);
    rx->ack_made = ack != NULL;
    return ack;
}

static void rep_recv_cb_inner(void *arg)
{
    struct rc_rx *rx = arg;
    rx_acquire(rx);
    struct rc_ingress *ing = rx->ing;
    int rv = nng_aio_result(rx->aio);
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || ing_stopping(ing))
        return;
    if (rv != 0) {
        rc_metric_add(&ing->env.metrics->ingest_errors, 1);
        RC_LOG_RATELIMITED(RC_LOG_WARN, "ingress", NULL, NULL, "REP receive failed: %s",
                           nng_strerror(rv));
        if (++rx->errors >= RC_INGRESS_MAX_ERRORS) {
            report_failure(ing, rv);
            return;
        }
        rep_post_recv(rx);
        return;
    }
    rx->errors = 0;
    nng_msg *msg = nng_aio_get_msg(rx->aio);
    nng_aio_set_msg(rx->aio, NULL);
    uint32_t pipe = (uint32_t)nng_pipe_id(nng_msg_get_pipe(msg));
    /* relaxed: nothing else is in flight on this context yet */
    atomic_store_explicit(&rx->rearm, 2, memory_order_relaxed);
    rx->ack_made = false;
    struct rc_ingest_buf *b = wrap(msg);
    if (!b) {
        nng_msg_free(msg);
        b = rc_ingest_buf_copy("", 0);
        if (!b) {
            atomic_store_explicit(&rx->rearm, 1, memory_order_relaxed);
            rep_rearm(rx); /* no reply possible; the requester retries */
            return;
        }
        rc_ingest_refuse(&rx->ictx, b, RC_PROTO_OVERLOADED, "the broker is out of memory",
                         rep_ack_for, rx);
    } else if (!accepting(ing)) {
        rc_ingest_refuse(&rx->ictx, b, RC_PROTO_SHUTTING_DOWN, "the broker is shutting down",
                         rep_ack_for, rx);
    } else {
        rc_ingest_dispatch(&rx->ictx, b, pipe, rep_ack_for, rx);
    }
    if (!rx->ack_made)
        rep_rearm(rx); /* no reply will be sent (ENOMEM): stand in for the send */
    rep_rearm(rx);
}

static void rep_send_cb(void *arg)
{
    rep_send_cb_inner(arg);
    rx_publish(arg);
}

static void rep_recv_cb(void *arg)
{
    rep_recv_cb_inner(arg);
    rx_publish(arg);
}

/* ---- pipes ---- */

/* A publisher's connection came (nng pipe or stream connection) ... */
static void publisher_opened(struct rc_ingress *ing)
{
    rc_metric_add(&ing->env.metrics->pipes_open, 1);
}

/* ... and went: its runs learn their publisher may be gone. */
static void publisher_closed(struct rc_ingress *ing, uint32_t id)
{
    rc_metric_sub(&ing->env.metrics->pipes_open, 1);
    rc_metric_add(&ing->env.metrics->pipes_closed, 1);
    rc_runs_pipe_closed(ing->env.runs, id);
}

static void pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    struct rc_sock *s = arg;
    /* acquire: pairs with the release in open_sock before nng_pipe_notify */
    struct rc_ingress *ing = atomic_load_explicit(&s->ing, memory_order_acquire);
    if (ev == NNG_PIPE_EV_ADD_PRE) {
        atomic_fetch_add_explicit(&s->pipes, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->pipes_added, 1, memory_order_relaxed);
        publisher_opened(ing);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        atomic_fetch_sub_explicit(&s->pipes, 1, memory_order_relaxed);
        publisher_closed(ing, (uint32_t)nng_pipe_id(p));
    }
    /* release: pairs with the acquire in rc_ingress_free */
    atomic_fetch_add_explicit(&ing->published, 1, memory_order_release);
}

/* ---- open / close / free ---- */

/*
 * Before nng_close of a PULL socket: no receive may be in the middle of
 * being posted, nor posted later.  pull_post posts under q->mtx after
 * checking q->closed, so once this returns none is.  nng 1.5.2 races a
 * receive posted while the socket shuts down: the receive can stay queued
 * on the closing socket with its cancel function pointing at the socket,
 * and the close then waits for ever, or a later nng_aio_stop locks the
 * freed socket's mutex (nng panics "pthread_mutex_lock: Invalid argument").
 */
static void pull_fence(struct rc_sock *s)
{
    if (!s->q)
        return;
    pthread_mutex_lock(&s->q->mtx);
    s->q->closed = true;
    pthread_mutex_unlock(&s->q->mtx);
}

static char *resolve_url(const char *url, nng_listener l)
{
    int port = 0;
    if (nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) != 0)
        port = 0;
    return rc_nngaddr_bound_url(url, port);
}

/* Where to listen: the replaced instance's resolved URL when there is one
 * (rc_ingress_env.previous), else the configured one. */
static const char *listen_url(const struct rc_ingress_env *env, enum rc_ingest_kind kind,
                              const char *configured, size_t i)
{
    const char *u = env->previous != NULL ? rc_ingress_url(env->previous, kind, i) : NULL;
    return u != NULL ? u : configured;
}

/* ---- PULL read as byte streams (rc_sppull) ---- */

static struct rc_ingress *sp_ing(void *arg)
{
    /* acquire: pairs with the release in open_stream before listening */
    return atomic_load_explicit(&((struct rc_sock *)arg)->ing, memory_order_acquire);
}

/* A connection's frames: dispatched in order through its lane's decoder;
 * false (park the connection) past the in-flight limit, as pull_rearm. */
static bool sp_frames(void *arg, struct rc_ingest_buf *buf, uint32_t conn, uint32_t lane,
                      unsigned hdr_len)
{
    struct rc_sock *s = arg;
    struct rc_ingress *ing = sp_ing(arg);
    if (ing_stopping(ing)) {
        rc_ingest_buf_release(buf); /* closing: the nng path drops these too */
        return false;
    }
    struct rc_ingest_ctx *c = &s->sp_lanes[lane < s->n_lanes ? lane : 0];
    rc_ingest_dispatch_frames(c, buf, conn, hdr_len, accepting(ing));
    return !pull_over_limit(ing);
}

static bool sp_may_resume(void *arg)
{
    return pull_may_resume(sp_ing(arg));
}

static void sp_parked(void *arg, int n)
{
    pull_count_parked(sp_ing(arg), n);
}

/*
 * A new connection gets the lane (decoder) with the fewest connections.
 * One decoder per socket made a socket's decoding, and with it the run
 * turns the decoder runs inline, one thread's work however many
 * publishers were connected: two publishers on two sockets instead of one
 * were 5-18 % faster on 2 cores (batches of 64, 3 alternations), and on a
 * machine with more cores one socket was capped at one.  Concurrent opens
 * may pick the same lane (relaxed counts): a balance, not a rule.
 */
static uint32_t sp_opened(void *arg, uint32_t conn)
{
    (void)conn;
    struct rc_sock *s = arg;
    uint32_t best = 0, best_n = UINT32_MAX;
    for (uint32_t i = 0; i < s->n_lanes; i++) {
        uint32_t n = atomic_load_explicit(&s->sp_lane_conns[i], memory_order_relaxed);
        if (n < best_n) {
            best = i;
            best_n = n;
        }
    }
    atomic_fetch_add_explicit(&s->sp_lane_conns[best], 1, memory_order_relaxed);
    publisher_opened(sp_ing(arg));
    return best;
}

static void sp_closed(void *arg, uint32_t conn, uint32_t lane)
{
    struct rc_sock *s = arg;
    if (lane < s->n_lanes)
        atomic_fetch_sub_explicit(&s->sp_lane_conns[lane], 1, memory_order_relaxed);
    publisher_closed(sp_ing(arg), conn);
}

static void sp_error(void *arg, const char *peer, const char *why)
{
    struct rc_sock *s = arg;
    struct rc_ingress *ing = sp_ing(arg);
    rc_metric_add(&ing->env.metrics->ingest_conn_errors, 1);
    RC_LOG_RATELIMITED(RC_LOG_WARN, "ingress", NULL, NULL,
                       "publisher connection %s on %s dropped: %s", peer,
                       s->url ? s->url : "--ingest", why);
}

static int open_stream(struct rc_ingress *ing, struct rc_sock *s, const char *url, char *err,
                       size_t errlen)
{
    struct rc_sppull_cfg cfg = {
        .max_msg = (uint64_t)ing->env.cfg->max_batch_bytes * 2,
        .handshake_ms = ing->env.cfg->ingest_handshake_timeout_ms,
    };
    struct rc_sppull_hooks hooks = {
        .frames = sp_frames,
        .may_resume = sp_may_resume,
        .parked = sp_parked,
        .opened = sp_opened,
        .closed = sp_closed,
        .error = sp_error,
        .arg = s,
    };
    s->kind = RC_INGEST_PULL;
    atomic_init(&s->pipes, 0);
    atomic_init(&s->pipes_added, 0);
    /* release: pairs with the acquire in sp_ing */
    atomic_store_explicit(&s->ing, ing, memory_order_release);
    ing->n_socks++;
    /* the lanes exist before the listener can call a hook */
    uint32_t lanes = rc_config_workers(ing->env.cfg);
    if (lanes == 0)
        lanes = 1;
    s->sp_lanes = rc_calloc(lanes, sizeof(*s->sp_lanes));
    s->sp_lane_conns = rc_calloc(lanes, sizeof(*s->sp_lane_conns));
    if (!s->sp_lanes || !s->sp_lane_conns) {
        snprintf(err, errlen, "listen %s (--ingest): out of memory", url);
        return RC_ENOMEM;
    }
    for (uint32_t i = 0; i < lanes; i++)
        atomic_init(&s->sp_lane_conns[i], 0);
    int rc = rc_sppull_listen(url, &cfg, &hooks, &s->sp, err, errlen);
    if (rc != 0)
        return rc;
    /* rc_sppull_listen accepts nothing before rc_sppull_start: no hook
     * runs yet, and the peer argument (s->sp) is known from here */
    for (; s->n_lanes < lanes; s->n_lanes++)
        rc_ingest_ctx_init(&s->sp_lanes[s->n_lanes], ing->env.runs, ing->env.metrics,
                           RC_INGEST_PULL, peer_of, s->sp);
    s->url = rc_strndup(rc_sppull_url(s->sp), strlen(rc_sppull_url(s->sp)));
    return s->url ? 0 : RC_ENOMEM;
}

static int open_sock(struct rc_ingress *ing, enum rc_ingest_kind kind, const char *url, char *err,
                     size_t errlen)
{
    struct rc_sock *s = &ing->socks[ing->n_socks];
    if (kind == RC_INGEST_PULL && ing->env.cfg->ingest_stream_reader && rc_sppull_supports(url))
        return open_stream(ing, s, url, err, errlen);
    int rv = kind == RC_INGEST_PULL ? nng_pull0_open(&s->sock) : nng_rep0_open(&s->sock);
    if (rv != 0) {
        snprintf(err, errlen, "open %s socket: %s", kind == RC_INGEST_PULL ? "PULL" : "REP",
                 nng_strerror(rv));
        return RC_EIO;
    }
    s->kind = kind;
    atomic_init(&s->pipes, 0);
    atomic_init(&s->pipes_added, 0);
    ing->n_socks++;
    /* Messages up to twice --max-batch-bytes are received and answered
     * `too_large`; larger ones make nng drop the connection (documented). */
    nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, (size_t)ing->env.cfg->max_batch_bytes * 2);
    /* release: pairs with the acquire in pipe_cb */
    atomic_store_explicit(&s->ing, ing, memory_order_release);
    nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_PRE, pipe_cb, s);
    nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, pipe_cb, s);
    nng_listener l;
    rv = nng_listen(s->sock, url, &l, 0);
    if (rv != 0) {
        snprintf(err, errlen, "listen %s (%s): %s", url,
                 kind == RC_INGEST_PULL ? "--ingest" : "--ingest-ack", nng_strerror(rv));
        return rv == NNG_EADDRINUSE ? RC_EADDRINUSE : RC_EIO;
    }
    s->url = resolve_url(url, l);
    return 0;
}

static int start_rx(struct rc_ingress *ing, struct rc_sock *s, char *err, size_t errlen)
{
    struct rc_rx *rx = rc_calloc(1, sizeof(*rx));
    if (!rx)
        return RC_ENOMEM;
    ing->rx[ing->n_rx++] = rx;
    rx->ing = ing;
    rx->sock = s->sock;
    rx->kind = s->kind;
    int rv;
    if (s->kind == RC_INGEST_PULL) {
        rx->q = s->q;
        rv = nng_aio_alloc(&rx->aio, pull_cb, rx);
        if (rv == 0)
            pull_post(rx);
    } else {
        rc_ingest_ctx_init(&rx->ictx, ing->env.runs, ing->env.metrics, s->kind, peer_of, NULL);
        rx->has_ictx = true;
        rv = nng_aio_alloc(&rx->aio, rep_recv_cb, rx);
        if (rv == 0)
            rv = nng_aio_alloc(&rx->send_aio, rep_send_cb, rx);
        if (rv == 0)
            rv = nng_ctx_open(&rx->ctx, rx->sock);
        if (rv == 0) {
            rx->has_ctx = true;
            atomic_init(&rx->rearm, 1);
            rep_post_recv(rx);
        }
    }
    if (rv != 0) {
        snprintf(err, errlen, "start receiving: %s", nng_strerror(rv));
        return RC_EIO;
    }
    return 0;
}

static int pullq_new(struct rc_ingress *ing, size_t cap, struct rc_pullq **out)
{
    struct rc_pullq *q = rc_calloc(1, sizeof(*q));
    if (!q)
        return RC_ENOMEM;
    q->slot = rc_calloc(cap, sizeof(*q->slot));
    if (!q->slot) {
        rc_free(q);
        return RC_ENOMEM;
    }
    q->cap = cap;
    q->runs = ing->env.runs;
    pthread_mutex_init(&q->mtx, NULL);
    rc_ingest_ctx_init(&q->ictx, ing->env.runs, ing->env.metrics, RC_INGEST_PULL, peer_of, NULL);
    *out = q;
    return 0;
}

/* After every aio has stopped and every callback has returned: each
 * ticketed receive completed and was dispatched by whoever filled the gap
 * before it, so the slots are empty; any message left (a receive that
 * never completed) is freed rather than leaked. */
static void pullq_free(struct rc_pullq *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mtx); /* the last dispatcher's writes */
    for (size_t i = 0; i < q->cap; i++)
        if (q->slot[i] && q->slot[i]->msg) {
            nng_msg_free(q->slot[i]->msg);
            q->slot[i]->msg = NULL;
        }
    pthread_mutex_unlock(&q->mtx);
    rc_ingest_ctx_fini(&q->ictx);
    pthread_mutex_destroy(&q->mtx);
    rc_free(q->slot);
    rc_free(q);
}

/* rc_runs_resume_fn: the gauge fell to pull_resume_below with receivers
 * parked; on the thread whose decrement did it (a worker, usually). */
static void pull_resume(void *arg)
{
    struct rc_ingress *ing = arg;
    for (size_t i = 0; i < ing->n_socks; i++) {
        struct rc_pullq *q = ing->socks[i].q;
        if (ing->socks[i].sp)
            rc_sppull_resume(ing->socks[i].sp);
        if (q == NULL)
            continue;
        pthread_mutex_lock(&q->mtx);
        pull_unpark_locked(q);
        pthread_mutex_unlock(&q->mtx);
    }
}

int rc_ingress_open(const struct rc_ingress_env *env, struct rc_ingress **out, char *err,
                    size_t errlen)
{
    const struct rc_config *cfg = env->cfg;
    struct rc_ingress *ing = rc_calloc(1, sizeof(*ing));
    if (!ing)
        return RC_ENOMEM;
    ing->env = *env;
    pthread_mutex_init(&ing->mtx, NULL);
    pthread_mutex_init(&ing->rep_fence, NULL);
    atomic_init(&ing->stopping, false);
    atomic_init(&ing->failed, false);
    size_t n = cfg->ingest.n + cfg->ingest_ack.n;
    size_t per = cfg->ingest_inflight ? (size_t)cfg->ingest_inflight : 1;
    ing->socks = rc_calloc(n ? n : 1, sizeof(*ing->socks));
    ing->rx = rc_calloc(n ? n * per : 1, sizeof(*ing->rx));
    int rc = (!ing->socks || !ing->rx) ? RC_ENOMEM : 0;
    for (size_t i = 0; rc == 0 && i < cfg->ingest.n; i++)
        rc = open_sock(ing, RC_INGEST_PULL, listen_url(env, RC_INGEST_PULL, cfg->ingest.v[i], i),
                       err, errlen);
    for (size_t i = 0; rc == 0 && i < cfg->ingest_ack.n; i++)
        rc = open_sock(ing, RC_INGEST_REP, listen_url(env, RC_INGEST_REP, cfg->ingest_ack.v[i], i),
                       err, errlen);
    for (size_t i = 0; rc == 0 && i < ing->n_socks; i++)
        if (ing->socks[i].kind == RC_INGEST_PULL && !ing->socks[i].sp)
            rc = pullq_new(ing, per, &ing->socks[i].q);
    if (rc == 0) /* before any receive: n_socks and the queues are final */
        rc_runs_set_resume(env->runs, pull_resume, ing, pull_resume_below(ing));
    for (size_t i = 0; rc == 0 && i < ing->n_socks; i++)
        for (size_t k = 0; rc == 0 && k < per && !ing->socks[i].sp; k++)
            rc = start_rx(ing, &ing->socks[i], err, errlen);
    for (size_t i = 0; rc == 0 && i < ing->n_socks; i++)
        if (ing->socks[i].sp) /* its context, URL and the resume hook are set */
            rc_sppull_start(ing->socks[i].sp);
    if (rc != 0) {
        if (rc == RC_ENOMEM && err[0] == 0)
            snprintf(err, errlen, "out of memory");
        rc_ingress_close(ing);
        rc_ingress_free(ing);
        return rc;
    }
    *out = ing;
    return 0;
}

void rc_ingress_set_owner(struct rc_ingress *ing, struct rc_actor *owner)
{
    ing->owner = owner ? rc_actor_hold(owner) : NULL;
}

/* Before a socket's nng_close (its fence is up: nothing of ours posts on it
 * any more): every receive and reply of ours still in nng is stopped
 * (nng_aio_stop, which waits for the callback) and, on REP, the request
 * contexts are closed, so that nng_close finds no operation of ours in
 * flight.  nng 1.5.2's close deadlocked its reaper (a task prepared but
 * never started) when it had to abort them itself under load: REP with
 * requests from 2+ REQ peers, PULL with 4 flat-out PUSH peers.  The failed
 * instance then kept its port and every later socket open or close in the
 * process waited (docs/ARCHITECTURE.md, "Closing under traffic"). */
static void sock_quiet(struct rc_ingress *ing, const struct rc_sock *s)
{
    for (size_t i = 0; i < ing->n_rx; i++) {
        struct rc_rx *rx = ing->rx[i];
        if (rx->sock.id != s->sock.id)
            continue;
        if (rx->aio)
            nng_aio_stop(rx->aio);
        if (rx->send_aio)
            nng_aio_stop(rx->send_aio);
    }
    for (size_t i = 0; i < ing->n_rx; i++) {
        struct rc_rx *rx = ing->rx[i];
        if (rx->sock.id == s->sock.id && rx->has_ctx)
            nng_ctx_close(rx->ctx);
    }
}

/*
 * After sock_quiet, before nng_close: lets every connection finish the
 * message it is reading.  nng 1.5.2's tcp and ipc transports re-arm a
 * partly read message from the read's own callback without checking
 * whether the connection was closed meanwhile; when nng_close closes the
 * connection while that callback runs, the re-armed read is dropped (its
 * aio is stopped: nni_aio_begin returns without completing it), the
 * protocol's receive on that connection never completes, and the reaper
 * waits for it for ever in pipe_stop (the nanomsg/nng#1543 family): the
 * close never returns and the failed instance keeps its port.  With our
 * receives stopped, a connection reads one more message, hands it to the
 * socket, which holds it for want of a receiver, and stops reading: its
 * read callback no longer runs, so the close cannot race it.  A
 * connection that arrives during the settle (a publisher reconnecting)
 * reads its first message the same way, so the settle goes on while
 * connections keep arriving, up to RC_INGRESS_SETTLE_ROUNDS.  A peer still
 * trickling a message past it keeps a small window open; ingress_fini
 * bounds that case (exit 70).  Measured with 4 PUSH peers flooding one
 * run (runcastd/ingress_restarts_under_push_load...): 10 of 10 runs
 * deadlocked within 1-43 restarts before, 0 of 38 after (1 of 10 with a
 * single round).
 */
#define RC_INGRESS_SETTLE_MS     20
#define RC_INGRESS_SETTLE_ROUNDS (RC_INGRESS_SETTLE_MAX_MS / RC_INGRESS_SETTLE_MS)

/* Whether s is among the sockets a close takes (all, or PULL only). */
static bool sock_taken(const struct rc_sock *s, bool pull_only)
{
    return !pull_only || s->kind == RC_INGEST_PULL;
}

/* The connections those sockets have now (ever: have ever had announced). */
static unsigned socks_pipes(const struct rc_ingress *ing, bool pull_only, bool ever)
{
    unsigned n = 0;
    for (size_t i = 0; i < ing->n_socks; i++) {
        const struct rc_sock *s = &ing->socks[i];
        if (sock_taken(s, pull_only))
            n += atomic_load_explicit(ever ? &s->pipes_added : &s->pipes, memory_order_relaxed);
    }
    return n;
}

/* One settle for all the sockets being closed, so that an ingress with
 * many sockets does not wait RC_INGRESS_SETTLE_MS * ROUNDS for each (the
 * restart path gives the whole close 1 s before it calls nng stuck). */
static void socks_settle(const struct rc_ingress *ing, bool pull_only)
{
    if (socks_pipes(ing, pull_only, false) == 0)
        return;
    for (int i = 0; i < RC_INGRESS_SETTLE_ROUNDS; i++) {
        unsigned before = socks_pipes(ing, pull_only, true);
        rc_clock_sleep_ms(RC_INGRESS_SETTLE_MS);
        if (socks_pipes(ing, pull_only, true) == before)
            return;
    }
}

/*
 * Under ing->mtx: closes the sockets still open (all, or PULL only) in
 * three steps over all of them: each one's fence up and our operations
 * stopped (sock_quiet), then the connections settled (socks_settle), then
 * nng_close.
 */
static void socks_close(struct rc_ingress *ing, bool pull_only)
{
    for (size_t i = 0; i < ing->n_socks; i++) {
        struct rc_sock *s = &ing->socks[i];
        s->closing = !s->closed && sock_taken(s, pull_only);
        if (!s->closing)
            continue;
        s->closed = true;
        if (s->sp) {
            /* no nng socket: our own reads, stopped and waited for */
            rc_sppull_close(s->sp);
            s->closing = false;
            continue;
        }
        pull_fence(s);
        sock_quiet(ing, s);
    }
    socks_settle(ing, pull_only);
    for (size_t i = 0; i < ing->n_socks; i++) {
        struct rc_sock *s = &ing->socks[i];
        if (s->closing)
            nng_close(s->sock);
        s->closing = false;
    }
}

void rc_ingress_close(struct rc_ingress *ing)
{
    if (!ing)
        return;
    pthread_mutex_lock(&ing->mtx);
    if (!ing->closed) {
        ing->closed = true;
        /* release: pairs with the acquire in ing_stopping */
        atomic_store_explicit(&ing->stopping, true, memory_order_release);
        pthread_mutex_lock(&ing->rep_fence);
        ing->rep_fenced = true;
        pthread_mutex_unlock(&ing->rep_fence);
        socks_close(ing, false);
    }
    pthread_mutex_unlock(&ing->mtx);
}

void rc_ingress_close_pull(struct rc_ingress *ing)
{
    if (!ing)
        return;
    pthread_mutex_lock(&ing->mtx);
    socks_close(ing, true);
    pthread_mutex_unlock(&ing->mtx);
}

void rc_ingress_free(struct rc_ingress *ing)
{
    if (!ing)
        return;
    rc_ingress_close(ing);
    /* a barrier with every REP poster (rep_post_*) and PULL poster
     * (pull_post): none is inside an nng call from here on */
    pthread_mutex_lock(&ing->rep_fence);
    pthread_mutex_unlock(&ing->rep_fence);
    for (size_t i = 0; i < ing->n_socks; i++) {
        if (ing->socks[i].q) {
            pthread_mutex_lock(&ing->socks[i].q->mtx);
            pthread_mutex_unlock(&ing->socks[i].q->mtx);
        }
    }
    for (size_t i = 0; i < ing->n_rx; i++) {
        struct rc_rx *rx = ing->rx[i];
        if (rx->aio)
            nng_aio_stop(rx->aio);
        if (rx->send_aio)
            nng_aio_stop(rx->send_aio);
        rx_acquire(rx); /* the callbacks' last writes */
    }
    /* acquire: pairs with the release at the end of pipe_cb */
    (void)atomic_load_explicit(&ing->published, memory_order_acquire);
    /* after this, pull_resume is not running for us and will not run */
    rc_runs_set_resume(ing->env.runs, NULL, ing, 0);
    for (size_t i = 0; i < ing->n_socks; i++) {
        struct rc_pullq *q = ing->socks[i].q;
        if (q && q->n_parked) /* closed while paused: they stay parked */
            rc_runs_parked_add(q->runs, -(int)q->n_parked);
        pullq_free(q); /* before the rx its slots point to */
    }
    for (size_t i = 0; i < ing->n_rx; i++) {
        struct rc_rx *rx = ing->rx[i];
        if (rx->aio) {
            if (nng_aio_get_msg(rx->aio))
                nng_msg_free(nng_aio_get_msg(rx->aio));
            nng_aio_free(rx->aio);
        }
        if (rx->send_aio) {
            if (nng_aio_get_msg(rx->send_aio))
                nng_msg_free(nng_aio_get_msg(rx->send_aio));
            nng_aio_free(rx->send_aio);
        }
        if (rx->has_ictx)
            rc_ingest_ctx_fini(&rx->ictx);
        rc_free(rx);
    }
    for (size_t i = 0; i < ing->n_socks; i++) {
        rc_sppull_free(ing->socks[i].sp); /* closed above: no callback runs */
        for (uint32_t k = 0; k < ing->socks[i].n_lanes; k++)
            rc_ingest_ctx_fini(&ing->socks[i].sp_lanes[k]);
        rc_free(ing->socks[i].sp_lanes);
        rc_free(ing->socks[i].sp_lane_conns);
        rc_free(ing->socks[i].url);
    }
    rc_free(ing->socks);
    rc_free(ing->rx);
    rc_actor_release(ing->owner);
    pthread_mutex_destroy(&ing->rep_fence);
    pthread_mutex_destroy(&ing->mtx);
    rc_free(ing);
}

const char *rc_ingress_url(const struct rc_ingress *ing, enum rc_ingest_kind kind, size_t i)
{
    if (!ing)
        return NULL;
    for (size_t k = 0; k < ing->n_socks; k++) {
        if (ing->socks[k].kind != kind)
            continue;
        if (i == 0)
            return ing->socks[k].url;
        i--;
    }
    return NULL;
}

uint32_t rc_ingress_pull_lanes(const struct rc_ingress *ing, size_t i, uint32_t *conns,
                               uint32_t cap)
{
    if (!ing)
        return 0;
    for (size_t k = 0; k < ing->n_socks; k++) {
        const struct rc_sock *s = &ing->socks[k];
        if (s->kind != RC_INGEST_PULL)
            continue;
        if (i-- > 0)
            continue;
        for (uint32_t l = 0; l < s->n_lanes && l < cap; l++) /* relaxed: a reading */
            conns[l] = atomic_load_explicit(&s->sp_lane_conns[l], memory_order_relaxed);
        return s->n_lanes;
    }
    return 0;
}
