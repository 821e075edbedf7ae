/*
 * rc_edge_int: what the edge's files share (not a public header).
 *
 *   rc_edge.c        lifecycle, the /ws upgrade, the connection registry
 *   rc_edge_srv.c    the HTTP/1.1 server on an nng TCP stream listener
 *   rc_edge_conn.c   the connection actor: WebSocket framing, output queue,
 *                    coalescing, slow consumers, heartbeats, subscriptions
 *   rc_edge_http.c   /healthz, /metrics, /runs...
 *   rc_ws.c          RFC 6455 codec
 */
#ifndef RC_EDGE_INT_H
#define RC_EDGE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <nng/nng.h>

#include "rc_actor.h"
#include "rc_edge.h"
#include "rc_metrics.h"
#include "rc_proto.h"

struct rc_config;
struct rc_broker;
struct rc_edge_conn;

/*
 * nng hand-off markers.  nng orders "a thread starts an aio operation"
 * before "nng's thread runs its callback" (and "the callback returned"
 * before "nng_aio_stop returned") with its own locks, and Debian's libnng
 * is not built with the thread sanitizer, so TSan cannot see those edges.
 * Each aio therefore has an atomic counter (as rc_ingress.c's rc_rx.sync):
 *
 *   rc_edge_io_publish  release increment: right before every
 *                       nng_stream_send/recv, nng_stream_listener_accept
 *                       (everything the starter wrote is published), and
 *                       as the last statement of the callback (what the
 *                       callback wrote is published to nng_aio_stop's
 *                       caller);
 *   rc_edge_io_acquire  acquire load: first statement of the callback
 *                       (pairs with the publish before the start), and
 *                       right after nng_aio_stop (pairs with the
 *                       callback's final publish) before the owner frees.
 *
 * These add no ordering nng does not already provide; they state it where
 * the sanitizer (and a reader) can see it.
 */
static inline void rc_edge_io_publish(_Atomic uint32_t *sync)
{
    /* release: pairs with rc_edge_io_acquire on the other side of nng */
    atomic_fetch_add_explicit(sync, 1, memory_order_release);
}

static inline void rc_edge_io_acquire(_Atomic uint32_t *sync)
{
    /* acquire: pairs with the rc_edge_io_publish before this hand-off */
    (void)atomic_load_explicit(sync, memory_order_acquire);
}

/* Publish, then start the operation.  The stream and aio are passed by
 * value, so the caller's fields holding them are read BEFORE the release:
 * once the operation is started its callback may change those fields (an
 * HTTP session's stream is taken by the upgrade), and a read after the
 * release would not be ordered before that write. */
static inline void rc_edge_io_send(_Atomic uint32_t *sync, nng_stream *s, nng_aio *aio)
{
    rc_edge_io_publish(sync);
    nng_stream_send(s, aio);
}

static inline void rc_edge_io_recv(_Atomic uint32_t *sync, nng_stream *s, nng_aio *aio)
{
    rc_edge_io_publish(sync);
    nng_stream_recv(s, aio);
}

static inline void rc_edge_io_accept(_Atomic uint32_t *sync, nng_stream_listener *l, nng_aio *aio)
{
    rc_edge_io_publish(sync);
    nng_stream_listener_accept(l, aio);
}

/* Fan-out latency histogram (broker receive -> frame written to the
 * socket), upper bounds in microseconds; the last bucket is +Inf. */
#define RC_EDGE_LAT_BUCKETS 17
extern const uint64_t rc_edge_lat_bound_us[RC_EDGE_LAT_BUCKETS - 1];

/* The edge's own counters: relaxed atomics like rc_metrics (independent
 * statistics, read by /metrics). */
struct rc_edge_metrics {
    rc_metric conns_open;      /* gauge: WebSocket connections */
    rc_metric conns_accepted;  /* counter: upgrades done */
    rc_metric conns_full;      /* counter: closed 4429 (over --ws-max-conns) */
    rc_metric conns_forbidden; /* counter: 403, Origin not allowed */
    rc_metric conns_bad;       /* counter: bad upgrade requests (400/426) */
    rc_metric closes_slow;     /* counter: closed 4008 */
    rc_metric closes_abuse;    /* counter: closed 4400 */
    rc_metric closes_protocol; /* counter: closed 1002/1007/1009 (broken framing) */
    rc_metric closes_dropped;  /* counter: peer vanished without a close frame (1006) */
    rc_metric closes_timeout;  /* counter: a send exceeded --ws-write-timeout */
    rc_metric closes_shutdown; /* counter: closed 1001 */
    rc_metric closes_normal;   /* counter: the peer closed with a close frame */
    rc_metric subs;            /* gauge: subscriptions held by connections */
    rc_metric sub_requests;    /* counter: sub ok */
    rc_metric unsub_requests;  /* counter: unsub ok */
    rc_metric client_msgs;     /* counter: client messages received */
    rc_metric client_errors;   /* counter: client messages answered with err */
    rc_metric hb_sent;         /* counter */
    rc_metric events_dropped;  /* counter: frames dropped for closing connections */
    rc_metric http_requests;   /* counter: HTTP requests served (not /ws) */
    rc_metric http_errors;     /* counter: HTTP 4xx/5xx answers (not /ws) */
    rc_metric http_refused;    /* counter: TCP connections closed at once (too many sessions) */
    rc_metric accept_pauses;   /* counter: accepting paused (out of descriptors or memory) */
};

/* The counters touched per frame and per delivery, sharded per thread so
 * that worker threads never bounce a shared cache line for them: each
 * thread adds to its own shard (rc_edge_hot), /metrics sums the shards
 * (rc_edge_hot_sum).  Relaxed atomics as in rc_metrics. */
struct rc_edge_hot {
    char pad0[64];
    rc_metric frames_sent;      /* counter: WebSocket frames written */
    rc_metric bytes_sent;       /* counter: bytes written (frame headers included) */
    rc_metric msgs_sent;        /* counter: server messages written (frames coalesce them) */
    rc_metric coalesced_frames; /* counter: frames that carried an array of >1 messages */
    rc_metric writes_blocked;   /* counter: frames the socket did not take at once */
    rc_metric lat[RC_EDGE_LAT_BUCKETS];
    rc_metric lat_sum_us;
    rc_metric lat_count;
    struct rc_edge_hot *next; /* rc_edge.hots; written once under rc_edge.mtx */
    char pad1[64];
};

struct rc_edge {
    const struct rc_config *cfg; /* read-only */
    struct rc_broker *broker;    /* may be NULL in transport-only tests */
    struct rc_actor_system *sys; /* where connection actors live */
    struct rc_runs *runs;        /* NULL without a broker */
    struct rc_proto_limits lim;  /* client frame limits; read-only after new */
    uint64_t epoch;              /* read-only after new */

    nng_stream_listener *listener; /* set by srv_listen, freed by srv_unlisten */
    nng_aio *accept_aio;
    _Atomic uint32_t accept_sync; /* hand-off marker of accept_aio (rc_edge_io_publish) */
    uint16_t port;
    /* The listener is a supervised child of the broker (rc_edge_srv.c):
     * listen_mtx serialises (re)listening and closing it (the supervisor's
     * restart, the child's fini and rc_edge_stop); never held by the
     * accept callback, which srv_unlisten waits for. */
    pthread_mutex_t listen_mtx;
    struct rc_actor *listener_actor; /* the child; not held; protected by mtx */
    bool listener_failed;            /* reported once per listener; protected by mtx */
    bool unlistening;                /* our own close is under way; protected by mtx */
    uint32_t accept_errors;          /* consecutive; accept callback only */
    /* Out of descriptors or memory, accepting pauses (a sleep on the
     * accept aio) instead of failing: accept callback only, after srv_listen. */
    bool accept_sleeping;
    uint32_t accept_backoff_ms;
    uint64_t listener_starts; /* supervisor's start thread only */
    int listen_rc;            /* the last listener_start's result (same thread) */
    int64_t started_ms;       /* wall ms at start */

    /* atomic: release store in start/stop, acquire load in the handlers, so
     * a handler that sees true also sees everything start set up. */
    _Atomic bool serving;

    pthread_mutex_t mtx;           /* protects conns, sessions, accepting, stopping */
    pthread_cond_t cv;             /* signalled when a connection or session leaves */
    struct rc_edge_conn *conns;    /* every live connection actor (intrusive list) */
    struct rc_http_sess *sessions; /* HTTP connections not upgraded (rc_edge_srv.c) */
    uint64_t n_sessions;           /* their number (at most --ws-max-conns) */
    bool accepting;                /* an accept is in flight */
    bool stopping;

    /* atomic: HTTP requests answered asynchronously (rc_runs callbacks)
     * that have not finished; stop waits for 0.  acq_rel on the decrement
     * pairs with stop's acquire load, so the callback's last use of the
     * edge happens before the edge is freed. */
    _Atomic uint64_t http_pending;

    struct rc_edge_metrics m;
    uint64_t id;                   /* unique per edge in the process (thread-local shard key) */
    struct rc_edge_hot *hots;      /* every thread's shard; protected by mtx */
    struct rc_edge_hot hot_shared; /* used when a shard cannot be allocated */
};

/* ---- rc_edge.c ---- */
void rc_edge_conn_register(struct rc_edge *e, struct rc_edge_conn *c);
void rc_edge_conn_unregister(struct rc_edge *e, struct rc_edge_conn *c);
/* This thread's shard of the hot counters (created on first use). */
struct rc_edge_hot *rc_edge_hot(struct rc_edge *e);
/* Sums every shard into out (its next is NULL). */
void rc_edge_hot_sum(struct rc_edge *e, struct rc_edge_hot *out);
void rc_edge_lat_observe(struct rc_edge_hot *h, uint64_t us);

/* ---- rc_edge_conn.c ---- */

/* Starts a connection actor on an upgraded TCP stream (the 101 is not
 * written yet; the actor writes it with the hello).  accept_key: the
 * Sec-WebSocket-Accept value.  full: over --ws-max-conns (the actor closes
 * with 4429).  early: bytes the client sent after its request (frames).
 * Takes ownership of s (closes it on failure too). */
int rc_edge_conn_spawn(struct rc_edge *e, nng_stream *s, const char *accept_key, bool json,
                       bool full, const void *early, size_t early_len);

/* The connection's actor (valid while the connection is registered). */
struct rc_actor *rc_edge_conn_actor(struct rc_edge_conn *c);
/* Asks a connection actor to flush and close with 1001 (edge stop). */
void rc_edge_conn_shutdown(struct rc_actor *a);

/* List links (protected by rc_edge.mtx); defined here for rc_edge.c. */
struct rc_edge_conn_link {
    struct rc_edge_conn *prev, *next;
};
struct rc_edge_conn_link *rc_edge_conn_link(struct rc_edge_conn *c);

/* ---- rc_edge_srv.c: the HTTP/1.1 server ---- */

struct rc_http_sess;

/* One request, valid until it is answered (rc_edge_respond) or taken over
 * (rc_edge_take_stream).  Handlers may answer later, from any thread. */
struct rc_edge_req {
    struct rc_edge *e;
    struct rc_http_sess *sess;
    const char *method; /* "GET", ... */
    const char *target; /* path and query, NUL-terminated */
    size_t path_len;    /* bytes of target before '?' */
    bool head;          /* HEAD: answer without a body */
};

/* A request header (case-insensitive name) or NULL. */
const char *rc_edge_req_header(const struct rc_edge_req *r, const char *name);

/* Answers the request.  extra: more header lines ("Allow: GET\r\n") or NULL.
 * close: close the connection after the answer. */
void rc_edge_respond(struct rc_edge_req *r, uint16_t status, const char *ctype, const void *body,
                     size_t len, const char *extra, bool close);

/* Answers {"error": code, "message": msg} as JSON. */
void rc_edge_respond_error(struct rc_edge_req *r, uint16_t status, const char *code,
                           const char *msg);

/* Takes the connection out of the HTTP server (WebSocket upgrade): *s gets
 * the stream, early/early_len the bytes received after the request (valid
 * until rc_edge_take_done).  The request is gone after rc_edge_take_done. */
void rc_edge_take_stream(struct rc_edge_req *r, nng_stream **s, const void **early,
                         size_t *early_len);
void rc_edge_take_done(struct rc_edge_req *r);

/* Starts accepting: as a child of the broker's supervisor when there is a
 * broker (a failed listener is restarted on the same port, within
 * --restart-intensity), directly otherwise. */
int rc_edge_srv_start(struct rc_edge *e);
/* Stops accepting, closes every session and waits for them. */
void rc_edge_srv_stop(struct rc_edge *e);

/* ---- rc_edge.c ---- */
/* GET /ws */
void rc_edge_ws_upgrade(struct rc_edge_req *r);

/* ---- rc_edge_http.c ---- */
void rc_edge_http_healthz(struct rc_edge_req *r);
void rc_edge_http_metrics(struct rc_edge_req *r);
void rc_edge_http_runs(struct rc_edge_req *r);
/* Waits until no asynchronous HTTP request is pending. */
void rc_edge_http_wait(struct rc_edge *e);

#endif
