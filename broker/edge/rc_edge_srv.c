/*
 * rc_edge_srv: the edge's HTTP/1.1 server, on an nng TCP stream listener.
 *
 * Small on purpose: GET/HEAD requests without bodies, keep-alive, and a
 * fixed routing table (/ws, /healthz, /metrics, /runs...).  It replaces
 * nng's HTTP server because a connection served by nng's server pins an
 * 8 KiB read buffer for its whole life, upgraded or not (docs/EDGE.md): a
 * WebSocket connection taken from here keeps only its nng TCP stream.
 *
 * One session per TCP connection until it is upgraded or closed.  A
 * session has one operation in flight at a time (read the request head,
 * wait for its handler, write the answer), so its fields need no lock: each
 * step is handed to the next by the aio completion or by the handler's
 * call to rc_edge_respond, which happen one after the other.  The list of
 * sessions (for stop) is under edge->mtx.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "rc_actor.h"
#include "rc_alloc.h"
#include "rc_broker.h"
#include "rc_buf.h"
#include "rc_config.h"
#include "rc_edge_int.h"
#include "rc_error.h"
#include "rc_http_head.h"
#include "rc_log.h"

/* A request head (request line and headers) must fit in this. */
#define HEAD_MAX 8192u
/* An idle keep-alive connection, or a slow request head, is closed after
 * this long. */
#define IDLE_MS 30000

enum sess_state { SS_READ, SS_HANDLER, SS_WRITE };

struct rc_http_sess {
    struct rc_http_sess *prev, *next; /* edge->sessions, under edge->mtx */
    struct rc_edge *e;
    nng_stream *s;
    nng_aio *aio;
    /* Hand-off marker of aio (rc_edge_io_publish before every start,
     * rc_edge_io_acquire at callback entry): the session's fields pass
     * between the thread that starts an operation and nng's callback. */
    _Atomic uint32_t sync;
    enum sess_state st;
    bool keep; /* keep the connection after this answer */
    /* stop closed the stream: set by rc_edge_srv_stop (under edge->mtx),
     * read by the callback; relaxed, a hint only (the closed stream fails
     * the next operation anyway) */
    _Atomic bool killed;
    char *in; /* request bytes: the head being parsed, then what followed */
    size_t in_len, in_cap;
    size_t head_len;                  /* bytes of the current request head (0: not complete) */
    struct rc_http_head request_head; /* the current request's, pointing into in */
    struct rc_buf out;
    size_t out_off;
    struct rc_edge_req req;
};

/* ---- session list ---- */

/* Links a new session; false when --ws-max-conns HTTP sessions are open
 * already (connections that have not upgraded are bounded too, so a flood
 * of idle TCP connections cannot grow memory without bound). */
static bool sess_link(struct rc_edge *e, struct rc_http_sess *h)
{
    pthread_mutex_lock(&e->mtx);
    if (e->n_sessions >= e->cfg->ws_max_conns) {
        pthread_mutex_unlock(&e->mtx);
        return false;
    }
    e->n_sessions++;
    h->prev = NULL;
    h->next = e->sessions;
    if (e->sessions != NULL)
        e->sessions->prev = h;
    e->sessions = h;
    pthread_mutex_unlock(&e->mtx);
    return true;
}

static void sess_unlink(struct rc_edge *e, struct rc_http_sess *h)
{
    pthread_mutex_lock(&e->mtx);
    if (h->prev != NULL)
        h->prev->next = h->next;
    else
        e->sessions = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
    e->n_sessions--;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mtx);
}

/* Ends a session (from its aio callback or a handler).  The stream is
 * detached under the lock, so rc_edge_srv_stop never closes a freed one;
 * the aio is freed by nng's reaper because this may run inside its own
 * callback. */
static void sess_free(struct rc_http_sess *h)
{
    struct rc_edge *e = h->e;
    pthread_mutex_lock(&e->mtx);
    nng_stream *s = h->s;
    h->s = NULL;
    pthread_mutex_unlock(&e->mtx);
    if (s != NULL) {
        nng_stream_close(s);
        nng_stream_free(s);
    }
    nng_aio_reap(h->aio);
    rc_free(h->in);
    rc_buf_fini(&h->out);
    sess_unlink(e, h);
    rc_free(h);
}

/* ---- reading and parsing ---- */

static void sess_read(struct rc_http_sess *h)
{
    if (h->in_cap - h->in_len < 1024 && h->in_cap < HEAD_MAX + 1) {
        size_t ncap = h->in_cap ? h->in_cap * 2 : 1024;
        if (ncap > HEAD_MAX + 1)
            ncap = HEAD_MAX + 1;
        char *n = rc_realloc(h->in, ncap);
        if (n == NULL) {
            sess_free(h);
            return;
        }
        h->in = n;
        h->in_cap = ncap;
    }
    nng_iov iov = {.iov_buf = h->in + h->in_len, .iov_len = h->in_cap - 1 - h->in_len};
    nng_aio_set_iov(h->aio, 1, &iov);
    nng_aio_set_timeout(h->aio, IDLE_MS);
    h->st = SS_READ;
    rc_edge_io_recv(&h->sync, h->s, h->aio);
}

static void respond_raw(struct rc_http_sess *h, uint16_t status, const char *ctype,
                        const void *body, size_t len, const char *extra, bool close, bool head);

static const char *reason(uint16_t st)
{
    switch (st) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 426:
        return "Upgrade Required";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

static void error_raw(struct rc_http_sess *h, uint16_t status, const char *code, const char *msg)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"%s\"}\n", code, msg);
    rc_metric_add(&h->e->m.http_errors, 1);
    respond_raw(h, status, "application/json", body, (size_t)n, NULL, true, false);
}

/* Parses the head in h->in[0..head_len) in place.  Returns 0 or an HTTP
 * status to refuse with (and *why). */
static uint16_t parse_head(struct rc_http_sess *h, const char **why)
{
    uint16_t st = rc_http_head_parse(h->in, h->head_len, &h->request_head, why);
    if (st != 0)
        return st;
    h->keep = h->request_head.keep;
    h->req.method = h->request_head.method;
    h->req.target = h->request_head.target;
    h->req.path_len = h->request_head.path_len;
    h->req.head = strcmp(h->req.method, "HEAD") == 0;
    return 0;
}

const char *rc_edge_req_header(const struct rc_edge_req *r, const char *name)
{
    return rc_http_head_header(&r->sess->request_head, name);
}

static bool path_is(const struct rc_edge_req *r, const char *p)
{
    size_t n = strlen(p);
    return r->path_len == n && memcmp(r->target, p, n) == 0;
}

static void dispatch(struct rc_http_sess *h)
{
    struct rc_edge_req *r = &h->req;
    bool get = strcmp(r->method, "GET") == 0 || r->head;
    h->st = SS_HANDLER;
    rc_metric_add(&h->e->m.http_requests, 1);
    if (path_is(r, "/ws")) {
        if (strcmp(r->method, "GET") != 0) {
            rc_edge_respond(r, 405, "application/json",
                            "{\"error\":\"method_not_allowed\",\"message\":\"GET only\"}\n", 53,
                            "Allow: GET\r\n", false);
            return;
        }
        rc_edge_ws_upgrade(r);
        return;
    }
    void (*fn)(struct rc_edge_req *) = NULL;
    if (path_is(r, "/healthz"))
        fn = rc_edge_http_healthz;
    else if (path_is(r, "/metrics"))
        fn = rc_edge_http_metrics;
    else if (path_is(r, "/runs") || (r->path_len >= 6 && memcmp(r->target, "/runs/", 6) == 0))
        fn = rc_edge_http_runs;
    if (fn == NULL) {
        rc_edge_respond_error(r, 404, "not_found", "no such resource");
        return;
    }
    if (!get) {
        rc_edge_respond(r, 405, "application/json",
                        "{\"error\":\"method_not_allowed\",\"message\":\"GET only\"}\n", 53,
                        "Allow: GET, HEAD\r\n", false);
        return;
    }
    fn(r);
}

/* Looks for a whole head in the bytes received; dispatches it, asks for
 * more, or refuses. */
static void sess_process(struct rc_http_sess *h)
{
    h->in[h->in_len] = '\0';
    char *e = h->in_len >= 4 ? strstr(h->in, "\r\n\r\n") : NULL;
    if (e == NULL) {
        if (memchr(h->in, '\0', h->in_len) != NULL) {
            error_raw(h, 400, "bad_request", "NUL byte in the request head");
            return;
        }
        if (h->in_len >= HEAD_MAX) {
            error_raw(h, 431, "too_large", "the request head is over 8 KiB");
            return;
        }
        sess_read(h);
        return;
    }
    h->head_len = (size_t)(e - h->in) + 4;
    memset(&h->req, 0, sizeof(h->req));
    h->req.e = h->e;
    h->req.sess = h;
    const char *why = NULL;
    uint16_t st = parse_head(h, &why);
    if (st != 0) {
        error_raw(h, st, "bad_request", why);
        return;
    }
    dispatch(h);
}

/* No final rc_edge_io_publish here: a session is never nng_aio_stop'ped
 * by another thread; it ends in sess_free on the thread that owns it
 * (this callback or the handler answering), and nng's reaper frees the
 * aio. */
static void sess_cb(void *arg)
{
    struct rc_http_sess *h = arg;
    rc_edge_io_acquire(&h->sync);
    int rv = nng_aio_result(h->aio);
    if (rv != 0) {
        sess_free(h);
        return;
    }
    size_t n = nng_aio_count(h->aio);
    if (h->st == SS_READ) {
        if (n == 0) {
            sess_free(h);
            return;
        }
        h->in_len += n;
        sess_process(h);
        return;
    }
    /* SS_WRITE */
    h->out_off += n;
    if (h->out_off < h->out.len) {
        nng_iov iov = {.iov_buf = h->out.data + h->out_off, .iov_len = h->out.len - h->out_off};
        nng_aio_set_iov(h->aio, 1, &iov);
        rc_edge_io_send(&h->sync, h->s, h->aio);
        return;
    }
    /* relaxed: see killed */
    if (!h->keep || atomic_load_explicit(&h->killed, memory_order_relaxed)) {
        sess_free(h);
        return;
    }
    /* keep-alive: what followed the head is the next request */
    size_t rest = h->in_len - h->head_len;
    memmove(h->in, h->in + h->head_len, rest);
    h->in_len = rest;
    h->head_len = 0;
    rc_buf_fini(&h->out);
    h->out_off = 0;
    if (rest > 0)
        sess_process(h);
    else
        sess_read(h);
}

static void respond_raw(struct rc_http_sess *h, uint16_t status, const char *ctype,
                        const void *body, size_t len, const char *extra, bool close, bool head)
{
    if (close)
        h->keep = false;
    rc_buf_reset(&h->out);
    char line[512];
    int n = snprintf(line, sizeof(line),
                     "HTTP/1.1 %u %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: %s\r\n%s\r\n",
                     (unsigned)status, reason(status), ctype, len, h->keep ? "keep-alive" : "close",
                     extra ? extra : "");
    if (rc_buf_append(&h->out, line, (size_t)n) != 0 ||
        (!head && len > 0 && rc_buf_append(&h->out, body, len) != 0)) {
        sess_free(h);
        return;
    }
    h->out_off = 0;
    h->st = SS_WRITE;
    nng_iov iov = {.iov_buf = h->out.data, .iov_len = h->out.len};
    nng_aio_set_iov(h->aio, 1, &iov);
    uint64_t to = h->e->cfg->ws_write_timeout_ms;
    nng_aio_set_timeout(h->aio, to > 0 ? (nng_duration)to : NNG_DURATION_INFINITE);
    /* a handler may answer from a worker thread: publish its writes */
    rc_edge_io_send(&h->sync, h->s, h->aio);
}

void rc_edge_respond(struct rc_edge_req *r, uint16_t status, const char *ctype, const void *body,
                     size_t len, const char *extra, bool close)
{
    if (status >= 400)
        rc_metric_add(&r->e->m.http_errors, 1);
    respond_raw(r->sess, status, ctype, body, len, extra, close, r->head);
}

static void json_escape(struct rc_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            rc_buf_append(b, esc, 2);
        } else if (ch >= 0x20) {
            rc_buf_append(b, s, 1);
        }
    }
}

void rc_edge_respond_error(struct rc_edge_req *r, uint16_t status, const char *code,
                           const char *msg)
{
    struct rc_buf b;
    rc_buf_init(&b);
    rc_buf_append(&b, "{\"error\":\"", 10);
    json_escape(&b, code);
    rc_buf_append(&b, "\",\"message\":\"", 13);
    json_escape(&b, msg);
    rc_buf_append(&b, "\"}\n", 3);
    const char *extra = status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL;
    rc_edge_respond(r, status, "application/json", b.data, b.len, extra, false);
    rc_buf_fini(&b);
}

void rc_edge_take_stream(struct rc_edge_req *r, nng_stream **s, const void **early,
                         size_t *early_len)
{
    struct rc_http_sess *h = r->sess;
    pthread_mutex_lock(&h->e->mtx);
    *s = h->s;
    h->s = NULL; /* ours now: stop will not close it */
    pthread_mutex_unlock(&h->e->mtx);
    *early = h->in + h->head_len;
    *early_len = h->in_len - h->head_len;
}

void rc_edge_take_done(struct rc_edge_req *r)
{
    sess_free(r->sess);
}

/* ---- accepting ---- */

/* Consecutive accept errors that make the listener a failed child. */
#define RC_EDGE_ACCEPT_MAX_ERRORS 64
/* Accepting pauses this long when the process is out of descriptors or
 * memory, doubling while that lasts, up to the second. */
#define RC_EDGE_ACCEPT_BACKOFF_MIN_MS 50
#define RC_EDGE_ACCEPT_BACKOFF_MAX_MS 1000
/* The listener child's one message: "you failed" (from the accept callback
 * or the test hook). */
#define RC_MSG_EDGE_LISTENER_FAIL 0x45444701u

static void listener_send_fail(struct rc_actor *a)
{
    struct rc_msg *m = rc_msg_new(sizeof(struct rc_msg), RC_MSG_EDGE_LISTENER_FAIL);
    if (m != NULL && rc_actor_send(a, m) != 0)
        rc_msg_free(m);
    rc_actor_release(a);
}

/* Tells the listener child it failed, once per listener (any thread).  The
 * first accepts can fail before listener_start has spawned the child (an
 * accept fails at once while the process is out of descriptors): the
 * failure is then kept in listener_failed and listener_start passes it on;
 * dropping it left a listener that no longer accepted and was never
 * restarted. */
static void listener_report_failure(struct rc_edge *e, int rv)
{
    pthread_mutex_lock(&e->mtx);
    struct rc_actor *a = NULL;
    bool report = !e->listener_failed && !e->stopping;
    if (report) {
        e->listener_failed = true;
        if (e->listener_actor != NULL)
            a = rc_actor_hold(e->listener_actor);
    }
    pthread_mutex_unlock(&e->mtx);
    if (!report)
        return;
    rc_log(RC_LOG_ERROR, "edge", NULL, NULL, "the HTTP/WebSocket listener failed (%s)",
           rv ? nng_strerror(rv) : "test hook");
    if (a != NULL)
        listener_send_fail(a);
}

/* Out of descriptors (EMFILE/ENFILE) or memory: the connections already
 * open are fine and a restarted listener would fail the same way at once
 * (nng 1.5.2 does not back off; accept4 fails even with no connection
 * waiting), so the listener is not failed: it pauses, and TCP keeps new
 * connections in the backlog meanwhile. */
static bool accept_exhausted(int rv)
{
    return rv == NNG_ENOFILES || rv == NNG_ENOMEM;
}

/* The pause's sleep ended (0 or NNG_ETIMEDOUT) or was cancelled by our own
 * close (srv_unlisten, rc_edge_srv_stop): accept again unless stopping. */
static void accept_wake(struct rc_edge *e, int rv)
{
    e->accept_sleeping = false;
    pthread_mutex_lock(&e->mtx);
    bool again = !e->stopping && !e->unlistening && rv != NNG_ECANCELED && rv != NNG_ECLOSED;
    e->accepting = again;
    pthread_mutex_unlock(&e->mtx);
    if (again)
        rc_edge_io_accept(&e->accept_sync, e->listener, e->accept_aio);
}

static void accept_cb_inner(struct rc_edge *e)
{
    int rv = nng_aio_result(e->accept_aio);
    if (e->accept_sleeping) {
        accept_wake(e, rv);
        return;
    }
    if (accept_exhausted(rv)) {
        uint32_t ms = e->accept_backoff_ms ? e->accept_backoff_ms : RC_EDGE_ACCEPT_BACKOFF_MIN_MS;
        e->accept_backoff_ms =
            ms * 2 > RC_EDGE_ACCEPT_BACKOFF_MAX_MS ? RC_EDGE_ACCEPT_BACKOFF_MAX_MS : ms * 2;
        rc_metric_add(&e->m.accept_pauses, 1);
        RC_LOG_RATELIMITED(RC_LOG_WARN, "edge", NULL, NULL,
                           "accept failed: %s; not accepting for %u ms (open WebSocket "
                           "connections: %llu; raise the open-file limit, e.g. LimitNOFILE, or "
                           "lower --ws-max-conns)",
                           nng_strerror(rv), ms,
                           (unsigned long long)rc_metric_get(&e->m.conns_open));
        pthread_mutex_lock(&e->mtx);
        bool sleep = !e->stopping && !e->unlistening;
        e->accepting = sleep;
        pthread_mutex_unlock(&e->mtx);
        if (sleep) {
            e->accept_sleeping = true;
            rc_edge_io_publish(&e->accept_sync);
            nng_sleep_aio((nng_duration)ms, e->accept_aio);
        }
        return;
    }
    if (rv == 0) {
        nng_stream *s = nng_aio_get_output(e->accept_aio, 0);
        struct rc_http_sess *h = rc_calloc(1, sizeof(*h));
        if (h == NULL || nng_aio_alloc(&h->aio, sess_cb, h) != 0) {
            rc_free(h);
            nng_stream_close(s);
            nng_stream_free(s);
        } else {
            h->e = e;
            h->s = s;
            rc_buf_init(&h->out);
            /* frames go out as soon as they are written (no Nagle delay
             * behind a delayed ACK); keepalive finds dead peers */
            nng_stream_set_bool(s, NNG_OPT_TCP_NODELAY, true);
            nng_stream_set_bool(s, NNG_OPT_TCP_KEEPALIVE, true);
            if (sess_link(e, h)) {
                sess_read(h);
            } else {
                rc_metric_add(&e->m.http_refused, 1);
                nng_aio_free(h->aio);
                rc_free(h);
                nng_stream_close(s);
                nng_stream_free(s);
            }
        }
    } else if (rv != NNG_ECLOSED) {
        /* errors other than exhaustion (accept_exhausted): counted, and
         * 64 in a row fail the listener (docs/ARCHITECTURE.md, Supervised
         * listener) */
        RC_LOG_RATELIMITED(RC_LOG_WARN, "edge", NULL, NULL, "accept failed: %s", nng_strerror(rv));
    }
    if (rv == 0) {
        e->accept_errors = 0;
        e->accept_backoff_ms = 0;
    } else if (rv != NNG_ECLOSED) {
        e->accept_errors++;
    }
    pthread_mutex_lock(&e->mtx);
    /* A listener closed by nobody of ours, or failing again and again, is
     * a failed child: its supervisor restarts it (listener_report_failure). */
    bool failed = !e->stopping && !e->unlistening &&
                  (rv == NNG_ECLOSED || e->accept_errors >= RC_EDGE_ACCEPT_MAX_ERRORS);
    bool again = !e->stopping && rv != NNG_ECLOSED && !failed;
    e->accepting = again;
    pthread_mutex_unlock(&e->mtx);
    if (failed)
        listener_report_failure(e, rv);
    if (again)
        rc_edge_io_accept(&e->accept_sync, e->listener, e->accept_aio);
}

static void accept_cb(void *arg)
{
    struct rc_edge *e = arg;
    rc_edge_io_acquire(&e->accept_sync); /* what srv_start or the last callback wrote */
    accept_cb_inner(e);
    rc_edge_io_publish(&e->accept_sync); /* for rc_edge_srv_stop after nng_aio_stop */
}

/* The --http address with port (IPv6 hosts in brackets). */
static void listen_url(const struct rc_edge *e, unsigned port, char *url, size_t len)
{
    const char *host = e->cfg->http_host != NULL ? e->cfg->http_host : "127.0.0.1";
    if (strchr(host, ':') != NULL)
        snprintf(url, len, "tcp://[%s]:%u", host, port);
    else
        snprintf(url, len, "tcp://%s:%u", host, port);
}

/* Listens on url and posts the first accept; under listen_mtx. */
static int srv_listen(struct rc_edge *e, const char *url)
{
    int rv = nng_stream_listener_alloc(&e->listener, url);
    if (rv != 0)
        return RC_EINVAL;
    if ((rv = nng_stream_listener_listen(e->listener)) != 0) {
        nng_stream_listener_free(e->listener);
        e->listener = NULL;
        return rv == NNG_EADDRINVAL ? RC_EINVAL : rv == NNG_EADDRINUSE ? RC_EADDRINUSE : RC_EIO;
    }
    int port = 0;
    nng_stream_listener_get_int(e->listener, NNG_OPT_TCP_BOUND_PORT, &port);
    e->port = (uint16_t)port;
    if (nng_aio_alloc(&e->accept_aio, accept_cb, e) != 0) {
        nng_stream_listener_free(e->listener);
        e->listener = NULL;
        return RC_ENOMEM;
    }
    e->accept_errors = 0;
    e->accept_sleeping = false;
    e->accept_backoff_ms = 0;
    pthread_mutex_lock(&e->mtx);
    e->accepting = true;
    e->listener_failed = false;
    pthread_mutex_unlock(&e->mtx);
    /* listener, port, aio: published to accept_cb */
    rc_edge_io_accept(&e->accept_sync, e->listener, e->accept_aio);
    return RC_OK;
}

/* Closes the listener and waits for its accept callback; sessions and
 * connections stay.  Under listen_mtx. */
static void srv_unlisten(struct rc_edge *e)
{
    if (e->listener == NULL)
        return;
    pthread_mutex_lock(&e->mtx);
    e->unlistening = true; /* the callback's ECLOSED is ours, not a failure */
    pthread_mutex_unlock(&e->mtx);
    nng_stream_listener_close(e->listener);
    nng_aio_stop(e->accept_aio);
    rc_edge_io_acquire(&e->accept_sync); /* the last accept_cb's writes */
    nng_aio_free(e->accept_aio);
    e->accept_aio = NULL;
    nng_stream_listener_free(e->listener);
    e->listener = NULL;
    pthread_mutex_lock(&e->mtx);
    e->unlistening = false;
    pthread_mutex_unlock(&e->mtx);
}

/* ---- the listener as a supervised child of the broker ---- */

static void listener_behaviour(struct rc_actor *self, void *state, struct rc_msg *msg)
{
    (void)state;
    if (msg->type == RC_MSG_EDGE_LISTENER_FAIL)
        rc_actor_stop(self, RC_EIO);
}

static void listener_fini(void *state, int reason)
{
    (void)reason;
    struct rc_edge *e = state;
    pthread_mutex_lock(&e->mtx);
    e->listener_actor = NULL;
    bool stopping = e->stopping;
    pthread_mutex_unlock(&e->mtx);
    if (stopping)
        return; /* rc_edge_stop closes it */
    /* failed: close it so the restart can listen on the same port */
    pthread_mutex_lock(&e->listen_mtx);
    srv_unlisten(e);
    pthread_mutex_unlock(&e->listen_mtx);
}

/* The supervisor's start function: listens (the first time on the
 * configured address, after a failure on the port it had) and spawns the
 * child that stands for the listener. */
static struct rc_actor *listener_start(void *arg)
{
    struct rc_edge *e = arg;
    unsigned port = e->listener_starts > 0 ? e->port : (unsigned)e->cfg->http_port;
    char url[300];
    listen_url(e, port, url, sizeof(url));
    pthread_mutex_lock(&e->listen_mtx);
    pthread_mutex_lock(&e->mtx);
    bool stopping = e->stopping;
    pthread_mutex_unlock(&e->mtx);
    int rc = stopping ? RC_ECLOSED : srv_listen(e, url);
    struct rc_actor *a = NULL;
    if (rc == RC_OK &&
        rc_actor_spawn(e->sys, listener_behaviour, e, listener_fini,
                       &(struct rc_actor_opts){.name = "edge-listener"}, &a) != RC_OK) {
        srv_unlisten(e);
        rc = RC_ENOMEM;
    }
    bool failed_early = false;
    if (rc == RC_OK) {
        pthread_mutex_lock(&e->mtx);
        e->listener_actor = a;
        failed_early = e->listener_failed; /* reported before a existed */
        pthread_mutex_unlock(&e->mtx);
    }
    pthread_mutex_unlock(&e->listen_mtx);
    /* a stops at once; the supervisor's monitor, set after we return, then
     * gets its DOWN at once too */
    if (failed_early)
        listener_send_fail(rc_actor_hold(a));
    e->listen_rc = rc;
    if (rc != RC_OK) {
        rc_log(RC_LOG_ERROR, "edge", NULL, NULL, "listen on %s: %s", url, rc_error_message(rc));
        return NULL;
    }
    if (e->listener_starts++ > 0)
        rc_log(RC_LOG_WARN, "supervisor", NULL, NULL,
               "edge listener restarted after a failure on port %u (restart %llu)", port,
               (unsigned long long)(e->listener_starts - 1));
    return a;
}

int rc_edge_srv_start(struct rc_edge *e)
{
    if (e->broker == NULL) {
        char url[300];
        listen_url(e, (unsigned)e->cfg->http_port, url, sizeof(url));
        pthread_mutex_lock(&e->listen_mtx);
        int rc = srv_listen(e, url);
        pthread_mutex_unlock(&e->listen_mtx);
        return rc;
    }
    e->listen_rc = RC_OK;
    int rc = rc_broker_supervise(e->broker, "edge", listener_start, e);
    if (rc == RC_OK)
        return RC_OK;
    return e->listen_rc != RC_OK ? e->listen_rc : rc; /* the listen's own error first */
}

void rc_edge_test_fail_listener(struct rc_edge *e)
{
    listener_report_failure(e, 0);
}

void rc_edge_srv_stop(struct rc_edge *e)
{
    pthread_mutex_lock(&e->listen_mtx);
    srv_unlisten(e);
    pthread_mutex_unlock(&e->listen_mtx);
    /* Close every session's stream: its pending operation fails and its
     * callback frees it; a session waiting for a handler is freed when the
     * handler answers (the write fails). */
    pthread_mutex_lock(&e->mtx);
    for (struct rc_http_sess *h = e->sessions; h != NULL; h = h->next) {
        atomic_store_explicit(&h->killed, true, memory_order_relaxed); /* see killed */
        if (h->s != NULL)
            nng_stream_close(h->s);
    }
    while (e->sessions != NULL)
        pthread_cond_wait(&e->cv, &e->mtx);
    pthread_mutex_unlock(&e->mtx);
}
