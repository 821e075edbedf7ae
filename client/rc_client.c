/*
 * rc_client: the publisher library behind runcast.h.
 *
 * PUSH path: a FIFO of encoded events (protected by mtx) and one nng send
 * aio.  `inflight` says whether that aio is busy; whoever flips it from false
 * to true (a publisher, or the aio callback finishing the previous send)
 * detaches the next batch from the FIFO under the lock and sends it after
 * unlocking, so at most one message is ever in flight and nothing is sent
 * with the lock held.  This is the adaptive batching: the FIFO only grows
 * while a send is in flight.
 *
 * REQ path: each acknowledged call opens its own nng context on the shared
 * REQ socket (contexts make concurrent requests from many threads safe) and
 * resends the same bytes, with the same idempotency ids, on timeout.
 */
#include "runcast.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <msgpack.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include "rc_alloc.h"
#include "rc_buf.h"
#include "rc_clock.h"
#include "rc_error.h"
#include "rc_proto.h"
#include "rc_push_idle.h"

/* One encoded event on the PUSH path: queued, in flight, then retained
 * (see "Ordering terminals after pushed events" below). */
struct rc_client_qnode {
    struct rc_client_qnode *next;
    size_t len;       /* bytes of the event map */
    uint32_t run_len; /* the run id follows the event bytes */
    uint64_t sent_ms; /* retained: when its send completed (monotonic) */
    uint8_t bytes[];  /* event map, then run id */
};

static const char *qnode_run(const struct rc_client_qnode *n)
{
    return (const char *)n->bytes + n->len;
}

struct rc_client {
    struct rc_client_opts opts; /* immutable after open; URLs point at our copies */
    struct rc_proto_limits lim; /* immutable after open */
    char *push_url;
    char *req_url;
    bool has_push;      /* immutable after open */
    bool has_req;       /* immutable after open */
    nng_socket push;    /* immutable after open (nng sockets are thread-safe) */
    nng_socket req;     /* immutable after open; one nng context per acked call */
    char id_prefix[17]; /* immutable after open: ids of pushed events */
    nng_aio *send_aio;  /* used by one send at a time: the holder of `inflight` */
    /* Hand-off marker for the thread sanitizer (and the memory model): nng
     * orders "start the send" before "its callback runs" with its own
     * uninstrumented code, so the start does a release increment and the
     * callback an acquire load; what the starter read of the client before
     * the start then happens-before the callback clearing `inflight`, and
     * so before rc_client_close frees the client (a TSan report in CI,
     * `runcast demo`). */
    atomic_uint send_sync;

    pthread_mutex_t mtx;
    pthread_cond_t cond; /* signalled when a send completes (room, flush) */
    /* protected by mtx: */
    struct rc_client_qnode *head, *tail;
    size_t q_bytes;
    uint64_t q_count;
    bool inflight;           /* the send aio is busy */
    bool unwritten;          /* a message went to nng since flush last saw it written */
    int push_fd;             /* PUSH send-poll fd (rc_push_idle), -1 when unknown */
    uint32_t inflight_count; /* events in the in-flight message */
    struct rc_client_qnode *inflight_list;       /* their nodes, retained once sent */
    struct rc_client_qnode *ret_head, *ret_tail; /* sent recently, oldest first */
    size_t ret_bytes;
    uint64_t id_counter; /* last pushed-event id number */
    bool aborting;       /* close gave up flushing: start no new send */
    struct rc_client_stats stats;
};

/* ---- Small helpers ---- */

static void result_clear(struct rc_client_result *r)
{
    memset(r, 0, sizeof(*r));
}

static int result_set(struct rc_client_result *r, int err, const char *code, const char *field,
                      const char *message)
{
    r->err = err;
    snprintf(r->code, sizeof(r->code), "%s", code ? code : "");
    snprintf(r->field, sizeof(r->field), "%s", field ? field : "");
    snprintf(r->message, sizeof(r->message), "%s", message ? message : rc_error_message(err));
    return err;
}

static int map_nng_err(int rv)
{
    switch (rv) {
    case 0:
        return RC_OK;
    case NNG_ENOMEM:
        return RC_ENOMEM;
    case NNG_EINVAL:
    case NNG_EADDRINVAL:
        return RC_EINVAL;
    case NNG_ETIMEDOUT:
        return RC_ETIMEDOUT;
    case NNG_ECLOSED:
    case NNG_ECANCELED:
        return RC_ECLOSED;
    case NNG_ENOTSUP:
        return RC_ENOTSUP;
    default:
        return RC_EIO;
    }
}

/*
 * Idempotency ids must be unique, not secret, and the acknowledged path
 * makes one per event: a getrandom(2) each was 8 % of a publishing thread's
 * time (runcast-bench ack, batches of 64, perf).  So a thread draws 128
 * random bits once (and again in a forked child, whose copy of the state
 * would repeat the parent's ids) and then counts: an id is the first 64
 * bits and a bijective mix of the second 64 plus the count.  Two ids of one
 * thread never collide (the mix is a bijection, the count does not wrap in
 * practice); ids of two threads or processes collide only if their 64-bit
 * draws do.
 */
struct id_state {
    uint64_t hi, lo, n;
    unsigned gen; /* id_fork_gen when drawn; 0: never drawn */
};

static _Thread_local struct id_state tl_id;
/* Bumped in a forked child (pthread_atfork); starts at 1 so that a thread
 * that never drew (gen 0) always draws.  relaxed: only this process's
 * threads compare it, and a fork has no other threads running. */
static _Atomic unsigned id_fork_gen = 1;
static pthread_once_t id_once = PTHREAD_ONCE_INIT;

static void id_after_fork_child(void)
{
    atomic_fetch_add_explicit(&id_fork_gen, 1, memory_order_relaxed);
}

static void id_register_fork(void)
{
    pthread_atfork(NULL, NULL, id_after_fork_child);
}

static void id_draw(struct id_state *st, unsigned gen)
{
    uint64_t raw[2];
    size_t got = 0;
    uint8_t *p = (uint8_t *)raw;
    while (got < sizeof(raw)) {
        ssize_t n = getrandom(p + got, sizeof(raw) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        got += (size_t)n;
    }
    for (; got < sizeof(raw); got += 4) { /* no getrandom: nng's generator */
        uint32_t v = nng_random();
        memcpy(p + got, &v, sizeof(raw) - got < 4 ? sizeof(raw) - got : 4);
    }
    st->hi = raw[0];
    st->lo = raw[1];
    st->n = 0;
    st->gen = gen;
}

/* splitmix64's finaliser: a bijection of 64-bit words */
static uint64_t id_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void id_hex64(char *out, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
}

void rc_client_new_id(char out[33])
{
    pthread_once(&id_once, id_register_fork);
    unsigned gen = atomic_load_explicit(&id_fork_gen, memory_order_relaxed);
    struct id_state *st = &tl_id;
    if (st->gen != gen)
        id_draw(st, gen);
    id_hex64(out, st->hi);
    id_hex64(out + 16, id_mix(st->lo + st->n++));
    out[32] = '\0';
}

/* Reads a msgpack map header at p; returns its size in bytes (0: not a map). */
static size_t map_header(const uint8_t *p, size_t len, uint32_t *n)
{
    if (len >= 1 && (p[0] & 0xf0) == 0x80) {
        *n = p[0] & 0x0f;
        return 1;
    }
    if (len >= 3 && p[0] == 0xde) {
        *n = (uint32_t)p[1] << 8 | p[2];
        return 3;
    }
    if (len >= 5 && p[0] == 0xdf) {
        *n = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
        return 5;
    }
    return 0;
}

/* Validates one encoded event against the protocol; fills r on error. */
static int validate_event(struct rc_client *c, const uint8_t *p, size_t len, struct rc_event *ev,
                          struct rc_client_result *r)
{
    struct rc_proto_error perr;
    memset(&perr, 0, sizeof(perr));
    enum rc_proto_code code = rc_proto_decode_event(p, len, &c->lim, ev, &perr);
    if (code == RC_PROTO_OK)
        return RC_OK;
    return result_set(r, RC_EPROTO, rc_proto_code_name(code), perr.field, perr.reason);
}

/* ---- Encoding an rc_client_event ---- */

#define CK(x)                                                                                      \
    do {                                                                                           \
        int rv_ = (x);                                                                             \
        if (rv_ != 0)                                                                              \
            return rv_;                                                                            \
    } while (0)

static bool has(const char *s)
{
    return s != NULL && s[0] != '\0';
}

static int encode_event(struct rc_buf *b, const struct rc_client_event *ev, const char *gen_id)
{
    if (ev == NULL || !has(ev->run) || !has(ev->type))
        return RC_EINVAL;
    const char *id = has(ev->id) ? ev->id : gen_id;
    uint32_t n = 3; /* run, type, ts */
    n += has(ev->conv) + has(ev->phase) + (ev->text != NULL) + has(id);
    n += (ev->tool_len > 0) + (ev->item_len > 0) + (ev->data_len > 0);
    n += (has(ev->error_code) || has(ev->error_message));
    n += (ev->n_timeouts > 0) + (ev->deadline_ms > 0);
    CK(rc_mpw_map(b, n));
    CK(rc_mpw_cstr(b, "run"));
    CK(rc_mpw_cstr(b, ev->run));
    CK(rc_mpw_cstr(b, "type"));
    CK(rc_mpw_cstr(b, ev->type));
    CK(rc_mpw_cstr(b, "ts"));
    CK(rc_mpw_int(b, ev->ts != 0 ? ev->ts : rc_clock_wall_ms()));
    if (has(ev->conv)) {
        CK(rc_mpw_cstr(b, "conv"));
        CK(rc_mpw_cstr(b, ev->conv));
    }
    if (has(ev->phase)) {
        CK(rc_mpw_cstr(b, "phase"));
        CK(rc_mpw_cstr(b, ev->phase));
    }
    if (ev->text != NULL) {
        CK(rc_mpw_cstr(b, "text"));
        CK(rc_mpw_str(b, ev->text, ev->text_len ? ev->text_len : strlen(ev->text)));
    }
    if (has(id)) {
        CK(rc_mpw_cstr(b, "id"));
        CK(rc_mpw_cstr(b, id));
    }
    if (ev->tool_len > 0) {
        CK(rc_mpw_cstr(b, "tool"));
        CK(rc_mpw_raw(b, ev->tool, ev->tool_len));
    }
    if (ev->item_len > 0) {
        CK(rc_mpw_cstr(b, "item"));
        CK(rc_mpw_raw(b, ev->item, ev->item_len));
    }
    if (ev->data_len > 0) {
        CK(rc_mpw_cstr(b, "data"));
        CK(rc_mpw_raw(b, ev->data, ev->data_len));
    }
    if (has(ev->error_code) || has(ev->error_message)) {
        CK(rc_mpw_cstr(b, "error"));
        CK(rc_mpw_map(b, (uint32_t)has(ev->error_code) + has(ev->error_message)));
        if (has(ev->error_code)) {
            CK(rc_mpw_cstr(b, "code"));
            CK(rc_mpw_cstr(b, ev->error_code));
        }
        if (has(ev->error_message)) {
            CK(rc_mpw_cstr(b, "message"));
            CK(rc_mpw_cstr(b, ev->error_message));
        }
    }
    if (ev->n_timeouts > 0) {
        CK(rc_mpw_cstr(b, "timeouts"));
        CK(rc_mpw_map(b, ev->n_timeouts));
        for (uint32_t i = 0; i < ev->n_timeouts; i++) {
            if (ev->timeouts[i].phase == NULL)
                return RC_EINVAL;
            CK(rc_mpw_cstr(b, ev->timeouts[i].phase));
            CK(rc_mpw_uint(b, ev->timeouts[i].ms));
        }
    }
    if (ev->deadline_ms > 0) {
        CK(rc_mpw_cstr(b, "deadline"));
        CK(rc_mpw_uint(b, ev->deadline_ms));
    }
    return RC_OK;
}

/* Copies map (an event) into out, adding "id": gen_id when it has none.
 * ev must be its decoded form.  *id_out gets the id string used ("" when
 * the id is a uint). */
static int ensure_id(struct rc_buf *out, const uint8_t *map, size_t len, const struct rc_event *ev,
                     char id_out[129], const char *gen)
{
    id_out[0] = '\0';
    if (ev->id_raw.len > 0) {
        const uint8_t *p = (const uint8_t *)ev->id_raw.ptr;
        size_t l = 0, off = 0;
        if ((p[0] & 0xe0) == 0xa0) {
            l = p[0] & 0x1f;
            off = 1;
        } else if (p[0] == 0xd9) {
            l = p[1];
            off = 2;
        }
        if (off > 0 && l < 129) {
            memcpy(id_out, p + off, l);
            id_out[l] = '\0';
        }
        return rc_buf_append(out, map, len);
    }
    uint32_t n;
    size_t hl = map_header(map, len, &n);
    if (hl == 0)
        return RC_EINVAL;
    if (gen != NULL)
        snprintf(id_out, 129, "%s", gen);
    else
        rc_client_new_id(id_out);
    CK(rc_mpw_map(out, n + 1));
    CK(rc_buf_append(out, map + hl, len - hl));
    CK(rc_mpw_cstr(out, "id"));
    return rc_mpw_cstr(out, id_out);
}

/* ---- Open / close ---- */

void rc_client_opts_init(struct rc_client_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->push_url = RC_CLIENT_DEFAULT_PUSH_URL;
    o->req_url = RC_CLIENT_DEFAULT_REQ_URL;
    o->batch_max_events = 256;
    o->batch_max_bytes = 1u << 20;
    o->queue_max_bytes = (size_t)16 << 20;
    o->queue_wait_ms = 2000;
    o->ack_timeout_ms = 2000;
    o->ack_retries = 4;
    o->close_timeout_ms = 2000;
    o->reconnect_min_ms = 100;
    o->reconnect_max_ms = 2000;
    o->validate = true;
    o->retain_ms = 1000;
    o->retain_max_bytes = (size_t)1 << 20;
}

static void send_cb(void *arg);

static int open_socket(nng_socket *s, int *push_fd, const char *url, const struct rc_client_opts *o)
{
    int rv = push_fd != NULL ? nng_push0_open(s) : nng_req0_open(s);
    if (rv != 0)
        return map_nng_err(rv);
    /* Before the dial: see rc_push_idle_fd.  Without it, flush can only
     * know that nng took the messages. */
    if (push_fd != NULL && rc_push_idle_fd(*s, push_fd) != RC_OK)
        *push_fd = -1;
    nng_socket_set_ms(*s, NNG_OPT_RECONNMINT, (nng_duration)o->reconnect_min_ms);
    nng_socket_set_ms(*s, NNG_OPT_RECONNMAXT, (nng_duration)o->reconnect_max_ms);
    /* The broker refuses larger messages anyway; let ours through. */
    nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, (size_t)8 << 20);
    /* NONBLOCK: open succeeds while runcastd is down; nng keeps redialing. */
    rv = nng_dial(*s, url, NULL, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        nng_close(*s);
        return map_nng_err(rv);
    }
    return RC_OK;
}

int rc_client_open_opts(struct rc_client **cp, const struct rc_client_opts *o)
{
    if (cp == NULL || o == NULL)
        return RC_EINVAL;
    *cp = NULL;
    bool want_push = o->push_url != NULL && o->push_url[0] != '\0';
    bool want_req = o->req_url != NULL && o->req_url[0] != '\0';
    if (!want_push && !want_req)
        return RC_EINVAL;
    if (o->batch_max_events == 0 || o->batch_max_bytes == 0 || o->queue_max_bytes == 0)
        return RC_EINVAL;

    struct rc_client *c = rc_calloc(1, sizeof(*c));
    if (c == NULL)
        return RC_ENOMEM;
    atomic_init(&c->send_sync, 0);
    c->opts = *o;
    c->push_fd = -1;
    char rnd[33];
    rc_client_new_id(rnd);
    memcpy(c->id_prefix, rnd, 16);
    c->id_prefix[16] = '\0';
    rc_proto_limits_default(&c->lim);
    if (c->opts.batch_max_events > c->lim.batch_max_events)
        c->opts.batch_max_events = c->lim.batch_max_events;
    if (c->opts.batch_max_bytes > c->lim.batch_max_bytes)
        c->opts.batch_max_bytes = c->lim.batch_max_bytes;
    pthread_mutex_init(&c->mtx, NULL);
    rc_clock_cond_init(&c->cond);

    int rv = RC_OK;
    if (want_push) {
        c->push_url = rc_strndup(o->push_url, strlen(o->push_url));
        if (c->push_url == NULL)
            rv = RC_ENOMEM;
        if (rv == RC_OK)
            rv = map_nng_err(nng_aio_alloc(&c->send_aio, send_cb, c));
        if (rv == RC_OK)
            rv = open_socket(&c->push, &c->push_fd, c->push_url, o);
        if (rv == RC_OK)
            c->has_push = true;
    }
    if (rv == RC_OK && want_req) {
        c->req_url = rc_strndup(o->req_url, strlen(o->req_url));
        if (c->req_url == NULL)
            rv = RC_ENOMEM;
        if (rv == RC_OK)
            rv = open_socket(&c->req, NULL, c->req_url, o);
        if (rv == RC_OK)
            c->has_req = true;
    }
    c->opts.push_url = c->push_url;
    c->opts.req_url = c->req_url;
    if (rv != RC_OK) {
        rc_client_close(c);
        return rv;
    }
    *cp = c;
    return RC_OK;
}

int rc_client_open(struct rc_client **cp, const char *url, enum rc_client_mode mode)
{
    struct rc_client_opts o;
    rc_client_opts_init(&o);
    switch (mode) {
    case RC_CLIENT_PUSH:
        if (url != NULL) {
            o.push_url = url;
            o.req_url = NULL;
        }
        break;
    case RC_CLIENT_REQ:
        o.push_url = NULL;
        if (url != NULL)
            o.req_url = url;
        break;
    default:
        if (cp != NULL)
            *cp = NULL;
        return RC_EINVAL;
    }
    return rc_client_open_opts(cp, &o);
}

static void deadline_after(struct timespec *ts, uint32_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* A completed nng send only means a pipe took the message; wait, bounded by
 * `dl`, until a pipe is idle again (rc_push_idle.h says why). */
static int wait_push_written(struct rc_client *c, const struct timespec *dl)
{
    pthread_mutex_lock(&c->mtx);
    bool unwritten = c->unwritten;
    pthread_mutex_unlock(&c->mtx);
    if (!unwritten || c->push_fd < 0)
        return RC_OK; /* nothing sent, or cannot tell: the hand-over is all we know */
    uint64_t deadline_ms = (uint64_t)dl->tv_sec * 1000 + (uint64_t)dl->tv_nsec / 1000000;
    int rv = rc_push_idle_wait(c->push_fd, deadline_ms);
    if (rv == RC_ETIMEDOUT)
        return rv;
    if (rv == RC_OK) {
        pthread_mutex_lock(&c->mtx);
        if (!c->inflight && c->head == NULL)
            c->unwritten = false;
        pthread_mutex_unlock(&c->mtx);
    }
    return RC_OK;
}

int rc_client_flush(struct rc_client *c, uint32_t timeout_ms)
{
    if (c == NULL)
        return RC_EINVAL;
    if (!c->has_push)
        return RC_OK;
    struct timespec dl;
    deadline_after(&dl, timeout_ms);
    int rv = RC_OK;
    pthread_mutex_lock(&c->mtx);
    while (c->inflight || c->head != NULL) {
        if (pthread_cond_timedwait(&c->cond, &c->mtx, &dl) == ETIMEDOUT) {
            rv = (c->inflight || c->head != NULL) ? RC_ETIMEDOUT : RC_OK;
            break;
        }
    }
    pthread_mutex_unlock(&c->mtx);
    if (rv == RC_OK)
        rv = wait_push_written(c, &dl);
    return rv;
}

int rc_client_close(struct rc_client *c)
{
    if (c == NULL)
        return RC_OK;
    int rv = RC_OK;
    if (c->has_push) {
        rv = rc_client_flush(c, c->opts.close_timeout_ms);
        pthread_mutex_lock(&c->mtx);
        c->aborting = true; /* the send callback starts nothing new from here on */
        pthread_mutex_unlock(&c->mtx);
        /* Cancel until the send callback has cleared `inflight`: a callback
         * that took a batch just before `aborting` was set may start one more
         * send after our first cancel, so cancel again until it is gone. */
        pthread_mutex_lock(&c->mtx);
        while (c->inflight) {
            pthread_mutex_unlock(&c->mtx);
            nng_aio_cancel(c->send_aio);
            pthread_mutex_lock(&c->mtx);
            struct timespec dl;
            deadline_after(&dl, 10);
            if (c->inflight)
                pthread_cond_timedwait(&c->cond, &c->mtx, &dl);
        }
        struct rc_client_qnode *n = c->head;
        if (c->tail != NULL) /* the retained list goes too */
            c->tail->next = c->ret_head;
        else
            n = c->ret_head;
        c->ret_head = c->ret_tail = NULL;
        c->ret_bytes = 0;
        c->head = c->tail = NULL;
        c->stats.dropped += c->q_count;
        c->q_count = 0;
        c->q_bytes = 0;
        pthread_mutex_unlock(&c->mtx);
        while (n != NULL) {
            struct rc_client_qnode *next = n->next;
            rc_free(n);
            n = next;
        }
        nng_close(c->push);
    }
    if (c->send_aio != NULL)
        nng_aio_free(c->send_aio);
    if (c->has_req)
        nng_close(c->req);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mtx);
    rc_free(c->push_url);
    rc_free(c->req_url);
    rc_free(c);
    return rv;
}

void rc_client_get_stats(struct rc_client *c, struct rc_client_stats *st)
{
    pthread_mutex_lock(&c->mtx);
    *st = c->stats;
    st->queued = c->q_count;
    pthread_mutex_unlock(&c->mtx);
}

/* ---- PUSH path ---- */

static void free_list(struct rc_client_qnode *n)
{
    while (n != NULL) {
        struct rc_client_qnode *next = n->next;
        rc_free(n);
        n = next;
    }
}

/* Drops retained events older than retain_ms or over retain_max_bytes.
 * Called with mtx held; returns the dropped nodes for freeing after unlock. */
static struct rc_client_qnode *retain_evict(struct rc_client *c, uint64_t now)
{
    struct rc_client_qnode *drop = NULL, **dt = &drop;
    while (c->ret_head != NULL && (now - c->ret_head->sent_ms >= c->opts.retain_ms ||
                                   c->ret_bytes > c->opts.retain_max_bytes)) {
        struct rc_client_qnode *n = c->ret_head;
        c->ret_head = n->next;
        c->ret_bytes -= n->len;
        n->next = NULL;
        *dt = n;
        dt = &n->next;
    }
    if (c->ret_head == NULL)
        c->ret_tail = NULL;
    return drop;
}

/* Detaches the next batch from the FIFO.  Called with mtx held. */
static struct rc_client_qnode *take_batch(struct rc_client *c, uint32_t *count, size_t *bytes)
{
    struct rc_client_qnode *first = c->head, *last = NULL, *n = c->head;
    uint32_t k = 0;
    size_t sz = 0;
    while (n != NULL && k < c->opts.batch_max_events &&
           (k == 0 || sz + n->len + 5 <= c->opts.batch_max_bytes)) {
        sz += n->len;
        k++;
        last = n;
        n = n->next;
    }
    if (k == 0)
        return NULL;
    c->head = n;
    if (n == NULL)
        c->tail = NULL;
    last->next = NULL;
    c->q_count -= k;
    c->q_bytes -= sz;
    *count = k;
    *bytes = sz;
    return first;
}

/* Accounts for a batch nng took (rv == 0) or refused: counters, and the
 * sent nodes go to the retained list when ids are kept for an acked
 * event's replay.  Called under mtx; returns what to free after unlocking
 * (*batch is set to NULL when the nodes were retained). */
static struct rc_client_qnode *note_sent_locked(struct rc_client *c, int rv,
                                                struct rc_client_qnode **batch, uint32_t count)
{
    if (rv != 0) {
        c->stats.dropped += count;
        return NULL;
    }
    c->unwritten = true;
    c->stats.events_pushed += count;
    c->stats.messages_pushed++;
    if (count > c->stats.max_batch)
        c->stats.max_batch = count;
    if (c->opts.retain_ms == 0 || !c->has_req || c->aborting || *batch == NULL)
        return NULL;
    uint64_t now = rc_clock_mono_ms();
    struct rc_client_qnode *last = *batch;
    for (struct rc_client_qnode *n = *batch; n != NULL; n = n->next) {
        n->sent_ms = now;
        c->ret_bytes += n->len;
        last = n;
    }
    if (c->ret_tail != NULL)
        c->ret_tail->next = *batch;
    else
        c->ret_head = *batch;
    c->ret_tail = last;
    *batch = NULL;
    return retain_evict(c, now);
}

static nng_msg *build_msg(struct rc_client_qnode *batch, uint32_t count, size_t bytes)
{
    nng_msg *m = NULL;
    int rv = nng_msg_alloc(&m, 0);
    if (rv == 0)
        rv = nng_msg_reserve(m, bytes + 5);
    if (rv == 0 && count > 1) {
        struct rc_buf h;
        rc_buf_init(&h);
        rv = rc_mpw_array(&h, count) == RC_OK ? nng_msg_append(m, h.data, h.len) : NNG_ENOMEM;
        rc_buf_fini(&h);
    }
    for (struct rc_client_qnode *n = batch; n != NULL && rv == 0; n = n->next)
        rv = nng_msg_append(m, n->bytes, n->len);
    if (rv != 0 && m != NULL) {
        nng_msg_free(m);
        m = NULL;
    }
    return m;
}

/* Sends detached batches until the queue is empty.  The caller holds
 * `inflight` (set under mtx) but not mtx.  A batch goes first as a
 * non-blocking send in this thread: when PUSH has an idle pipe, nng takes it
 * at once and no completion callback (a hop to one of nng's task threads,
 * ~30 us across cores here) stands between this batch and the next.  Only
 * when the pipe is busy does the batch wait in the aio, whose callback
 * continues from there. */
static void send_batch(struct rc_client *c, struct rc_client_qnode *batch, uint32_t count,
                       size_t bytes)
{
    while (batch != NULL) {
        nng_msg *m = build_msg(batch, count, bytes);
        int rv = m != NULL ? nng_sendmsg(c->push, m, NNG_FLAG_NONBLOCK) : NNG_ENOMEM;
        if (rv == NNG_EAGAIN) {
            pthread_mutex_lock(&c->mtx);
            c->inflight_count = count;
            c->inflight_list = batch;
            pthread_mutex_unlock(&c->mtx);
            nng_aio *aio = c->send_aio;
            nng_socket push = c->push;
            nng_aio_set_msg(aio, m);
            nng_aio_set_timeout(aio, NNG_DURATION_INFINITE);
            /* release: pairs with the acquire in send_cb (see send_sync) */
            atomic_fetch_add_explicit(&c->send_sync, 1, memory_order_release);
            nng_send_aio(push, aio);
            return; /* c may be gone once the send completes */
        }
        if (rv != 0 && m != NULL)
            nng_msg_free(m); /* a failed nng_sendmsg leaves the message to us */
        pthread_mutex_lock(&c->mtx);
        struct rc_client_qnode *done = note_sent_locked(c, rv, &batch, count);
        struct rc_client_qnode *next = c->aborting ? NULL : take_batch(c, &count, &bytes);
        if (next == NULL)
            c->inflight = false;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mtx);
        free_list(batch);
        free_list(done);
        batch = next;
    }
}

static void send_cb(void *arg)
{
    struct rc_client *c = arg;
    /* acquire: pairs with the release before nng_send_aio (see send_sync) */
    (void)atomic_load_explicit(&c->send_sync, memory_order_acquire);
    int rv = nng_aio_result(c->send_aio);
    if (rv != 0) {
        nng_msg *m = nng_aio_get_msg(c->send_aio);
        if (m != NULL)
            nng_msg_free(m);
    }
    struct rc_client_qnode *batch = NULL;
    uint32_t count = 0;
    size_t bytes = 0;
    pthread_mutex_lock(&c->mtx);
    struct rc_client_qnode *sent = c->inflight_list;
    c->inflight_list = NULL;
    struct rc_client_qnode *done = note_sent_locked(c, rv, &sent, c->inflight_count);
    c->inflight_count = 0;
    if (!c->aborting)
        batch = take_batch(c, &count, &bytes);
    if (batch == NULL)
        c->inflight = false;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mtx);
    free_list(sent);
    free_list(done);
    if (batch != NULL)
        send_batch(c, batch, count, bytes);
}

static int push_enqueue(struct rc_client *c, const uint8_t *p, size_t len, struct rc_str run,
                        struct rc_client_result *r)
{
    struct rc_client_qnode *node = rc_malloc(sizeof(*node) + len + run.len);
    if (node == NULL)
        return result_set(r, RC_ENOMEM, NULL, NULL, NULL);
    node->next = NULL;
    node->len = len;
    node->run_len = run.len;
    node->sent_ms = 0;
    memcpy(node->bytes, p, len);
    memcpy(node->bytes + len, run.ptr, run.len);

    struct timespec dl;
    bool have_dl = false; /* read the clock only when the queue is full */
    pthread_mutex_lock(&c->mtx);
    while (!c->aborting && c->head != NULL && c->q_bytes + len > c->opts.queue_max_bytes) {
        if (!have_dl) {
            deadline_after(&dl, c->opts.queue_wait_ms);
            have_dl = true;
        }
        if (pthread_cond_timedwait(&c->cond, &c->mtx, &dl) == ETIMEDOUT &&
            c->q_bytes + len > c->opts.queue_max_bytes) {
            c->stats.rejected++;
            pthread_mutex_unlock(&c->mtx);
            rc_free(node);
            return result_set(r, RC_EOVERLOAD, "overloaded", NULL,
                              "the publish queue stayed full (is runcastd reachable?)");
        }
    }
    if (c->aborting) {
        pthread_mutex_unlock(&c->mtx);
        rc_free(node);
        return result_set(r, RC_ECLOSED, NULL, NULL, NULL);
    }
    if (c->tail != NULL)
        c->tail->next = node;
    else
        c->head = node;
    c->tail = node;
    c->q_count++;
    c->q_bytes += len;
    struct rc_client_qnode *batch = NULL;
    uint32_t count = 0;
    size_t bytes = 0;
    if (!c->inflight) {
        batch = take_batch(c, &count, &bytes);
        c->inflight = true;
    }
    pthread_mutex_unlock(&c->mtx);
    if (batch != NULL)
        send_batch(c, batch, count, bytes);
    return RC_OK;
}

/* ---- REQ path ---- */

static bool mp_key_is(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, s, n) == 0;
}

static void mp_copy_str(char *dst, size_t cap, const msgpack_object *o)
{
    if (o->type != MSGPACK_OBJECT_STR) {
        dst[0] = '\0';
        return;
    }
    size_t n = o->via.str.size < cap - 1 ? o->via.str.size : cap - 1;
    memcpy(dst, o->via.str.ptr, n);
    dst[n] = '\0';
}

static void decode_one_result(const msgpack_object *o, struct rc_client_result *r, uint64_t epoch)
{
    r->epoch = epoch;
    if (o->type != MSGPACK_OBJECT_MAP) {
        result_set(r, RC_EPROTO, "malformed", NULL, "ack result is not a map");
        return;
    }
    bool have_seq = false;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        if (mp_key_is(k, "seq") && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            r->seq = v->via.u64;
            have_seq = true;
        } else if (mp_key_is(k, "dup") && v->type == MSGPACK_OBJECT_BOOLEAN) {
            r->dup = v->via.boolean;
        } else if (mp_key_is(k, "error") && v->type == MSGPACK_OBJECT_MAP) {
            r->err = RC_EPROTO;
            for (uint32_t j = 0; j < v->via.map.size; j++) {
                const msgpack_object *ek = &v->via.map.ptr[j].key, *ev = &v->via.map.ptr[j].val;
                if (mp_key_is(ek, "code"))
                    mp_copy_str(r->code, sizeof(r->code), ev);
                else if (mp_key_is(ek, "message"))
                    mp_copy_str(r->message, sizeof(r->message), ev);
                else if (mp_key_is(ek, "field"))
                    mp_copy_str(r->field, sizeof(r->field), ev);
            }
        }
    }
    if (r->err == RC_OK && !have_seq)
        result_set(r, RC_EPROTO, "malformed", "seq", "ack result has neither seq nor error");
}

/* Decodes an ack for n events into results[0..n).  Returns RC_EPROTO when the
 * reply itself is unusable. */
static int decode_ack(const void *buf, size_t len, struct rc_client_result *results, uint32_t n)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rv = RC_EPROTO;
    if (msgpack_unpack_next(&u, buf, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_MAP)
        goto out;
    uint64_t epoch = 0;
    const msgpack_object *res = NULL;
    for (uint32_t i = 0; i < u.data.via.map.size; i++) {
        const msgpack_object *k = &u.data.via.map.ptr[i].key, *v = &u.data.via.map.ptr[i].val;
        if (mp_key_is(k, "epoch") && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            epoch = v->via.u64;
        else if (mp_key_is(k, "results") && v->type == MSGPACK_OBJECT_ARRAY)
            res = v;
    }
    if (res == NULL)
        goto out;
    if (res->via.array.size == n) {
        for (uint32_t i = 0; i < n; i++)
            decode_one_result(&res->via.array.ptr[i], &results[i], epoch);
        rv = RC_OK;
    } else if (res->via.array.size == 1) { /* a whole-message error */
        for (uint32_t i = 0; i < n; i++)
            decode_one_result(&res->via.array.ptr[0], &results[i], epoch);
        rv = RC_OK;
    }
out:
    msgpack_unpacked_destroy(&u);
    return rv;
}

static bool retriable(const struct rc_client_result *r)
{
    return r->err == RC_EPROTO &&
           (strcmp(r->code, "overloaded") == 0 || strcmp(r->code, "shutting_down") == 0);
}

/*
 * Sends one request (msg bytes) for n events and waits for its ack,
 * resending the same bytes on timeout.  Returns 0 when a usable ack arrived
 * (results filled in), else an RC_E* code for the whole request.
 */
static int req_roundtrip(struct rc_client *c, const uint8_t *msg, size_t len,
                         struct rc_client_result *results, uint32_t n, uint32_t *attempts)
{
    nng_ctx ctx;
    nng_aio *aio = NULL;
    int rv = nng_ctx_open(&ctx, c->req);
    if (rv != 0)
        return map_nng_err(rv);
    rv = nng_aio_alloc(&aio, NULL, NULL);
    if (rv != 0) {
        nng_ctx_close(ctx);
        return map_nng_err(rv);
    }
    int out = RC_ETIMEDOUT;
    uint32_t backoff = 50;
    for (uint32_t a = 0; a <= c->opts.ack_retries; a++) {
        *attempts = a + 1;
        if (a > 0) {
            pthread_mutex_lock(&c->mtx);
            c->stats.ack_retries++;
            pthread_mutex_unlock(&c->mtx);
        }
        nng_msg *m;
        if ((rv = nng_msg_alloc(&m, 0)) != 0 || (rv = nng_msg_append(m, msg, len)) != 0) {
            out = map_nng_err(rv);
            break;
        }
        /* Sending on a REQ context that has an outstanding request abandons
         * it; a late reply to the abandoned one is discarded by nng. */
        nng_aio_set_msg(aio, m);
        nng_aio_set_timeout(aio, (nng_duration)c->opts.ack_timeout_ms);
        nng_ctx_send(ctx, aio);
        nng_aio_wait(aio);
        if ((rv = nng_aio_result(aio)) != 0) {
            nng_msg_free(nng_aio_get_msg(aio));
            out = map_nng_err(rv);
            if (rv == NNG_ETIMEDOUT)
                continue;
            break;
        }
        nng_aio_set_timeout(aio, (nng_duration)c->opts.ack_timeout_ms);
        nng_ctx_recv(ctx, aio);
        nng_aio_wait(aio);
        if ((rv = nng_aio_result(aio)) != 0) {
            out = map_nng_err(rv);
            if (rv == NNG_ETIMEDOUT)
                continue;
            break;
        }
        nng_msg *reply = nng_aio_get_msg(aio);
        for (uint32_t i = 0; i < n; i++) { /* a resend decodes afresh; the id stays */
            char id[sizeof(results[i].id)];
            memcpy(id, results[i].id, sizeof(id));
            result_clear(&results[i]);
            memcpy(results[i].id, id, sizeof(id));
        }
        out = decode_ack(nng_msg_body(reply), nng_msg_len(reply), results, n);
        nng_msg_free(reply);
        if (out != RC_OK)
            break;
        bool again = false;
        for (uint32_t i = 0; i < n; i++)
            again = again || retriable(&results[i]);
        if (!again || a == c->opts.ack_retries)
            break;
        rc_clock_sleep_ms(backoff); /* overloaded: back off, then resend the same ids */
        backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
    }
    nng_aio_free(aio);
    nng_ctx_close(ctx);
    return out;
}

/* Acknowledged publishing of n prepared (validated, id-carrying) events in
 * one request.  Results before index `counted` (re-sent PUSH events) are not
 * counted in the stats. */
static int publish_ack(struct rc_client *c, const uint8_t *const *evs, const size_t *lens,
                       uint32_t n, struct rc_client_result *results, uint32_t counted)
{
    struct rc_buf msg;
    rc_buf_init(&msg);
    int rv = RC_OK;
    if (n > 1)
        rv = rc_mpw_array(&msg, n);
    for (uint32_t i = 0; rv == RC_OK && i < n; i++)
        rv = rc_buf_append(&msg, evs[i], lens[i]);
    uint32_t attempts = 0;
    if (rv == RC_OK)
        rv = req_roundtrip(c, msg.data, msg.len, results, n, &attempts);
    rc_buf_fini(&msg);
    int first = RC_OK;
    uint64_t acked = 0, rejected = 0;
    for (uint32_t i = 0; i < n; i++) {
        results[i].attempts = attempts;
        if (rv != RC_OK) {
            result_set(&results[i], rv, rv == RC_ETIMEDOUT ? "timeout" : NULL, NULL,
                       rv == RC_ETIMEDOUT ? "no acknowledgement from runcastd (retries exhausted)"
                                          : NULL);
        }
        if (i < counted)
            continue;
        if (results[i].err == RC_OK) {
            acked++;
        } else {
            rejected++;
            if (first == RC_OK)
                first = results[i].err;
        }
    }
    pthread_mutex_lock(&c->mtx);
    c->stats.events_acked += acked;
    c->stats.rejected += rejected;
    pthread_mutex_unlock(&c->mtx);
    return first;
}

/* ---- Publishing ---- */

static bool is_terminal_type(const struct rc_event *ev)
{
    return ev->type == RC_EV_COMPLETE || ev->type == RC_EV_ERROR;
}

static int resolve_delivery(struct rc_client *c, enum rc_client_delivery d, bool terminal,
                            struct rc_client_result *r, bool *ack)
{
    switch (d) {
    case RC_DELIVER_DEFAULT:
        *ack = terminal || !c->has_push;
        break;
    case RC_DELIVER_PUSH:
        *ack = false;
        break;
    case RC_DELIVER_ACK:
        *ack = true;
        break;
    default:
        return result_set(r, RC_EINVAL, NULL, NULL, "unknown delivery");
    }
    if (*ack && !c->has_req)
        return result_set(r, RC_ESTATE, NULL, NULL,
                          terminal && d == RC_DELIVER_DEFAULT
                              ? "complete/error are acknowledged by default but this client "
                                "has no REQ address"
                              : "this client has no REQ address");
    if (!*ack && !c->has_push)
        return result_set(r, RC_ESTATE, NULL, NULL, "this client has no PUSH address");
    return RC_OK;
}

/*
 * Ordering terminals after pushed events.  runcastd reads PULL and REP
 * independently, so an acknowledged event may overtake events of its run
 * that this client pushed moments before.  Pushed events therefore carry
 * ids and stay "retained" for retain_ms after their send completed; an
 * acknowledged event is sent behind the retained (and still queued) events
 * of its run, in one request.  The broker answers those it has with `dup`
 * and accepts the others in order, so nothing is lost or delivered twice.
 */

/* Detaches the retained, then the queued, events of run (in publish order). */
static struct rc_client_qnode *take_run_events(struct rc_client *c, struct rc_str run,
                                               uint32_t *count, struct rc_client_qnode **evicted)
{
    struct rc_client_qnode *out = NULL, **ot = &out;
    uint32_t k = 0;
    pthread_mutex_lock(&c->mtx);
    *evicted = retain_evict(c, rc_clock_mono_ms());
    for (int list = 0; list < 2; list++) {
        struct rc_client_qnode **head = list == 0 ? &c->ret_head : &c->head;
        struct rc_client_qnode **tail = list == 0 ? &c->ret_tail : &c->tail;
        struct rc_client_qnode *prev = NULL, *n = *head;
        while (n != NULL) {
            struct rc_client_qnode *next = n->next;
            if (n->run_len == run.len && memcmp(qnode_run(n), run.ptr, run.len) == 0) {
                if (prev != NULL)
                    prev->next = next;
                else
                    *head = next;
                if (*tail == n)
                    *tail = prev;
                if (list == 0) {
                    c->ret_bytes -= n->len;
                } else {
                    c->q_bytes -= n->len;
                    c->q_count--;
                }
                n->next = NULL;
                *ot = n;
                ot = &n->next;
                k++;
            } else {
                prev = n;
            }
            n = next;
        }
    }
    c->stats.resent += k;
    pthread_mutex_unlock(&c->mtx);
    *count = k;
    return out;
}

/* Acknowledged publishing of one event (with its id) behind the pushed
 * events of its run that may still be on their way. */
static int ack_in_order(struct rc_client *c, const uint8_t *p, size_t len, struct rc_str run,
                        struct rc_client_result *r)
{
    struct rc_client_qnode *prior = NULL, *evicted = NULL;
    uint32_t k = 0;
    if (c->has_push && c->opts.retain_ms > 0) {
        rc_client_flush(c, c->opts.ack_timeout_ms); /* in-flight sends become retained */
        prior = take_run_events(c, run, &k, &evicted);
    } else if (c->has_push) {
        rc_client_flush(c, c->opts.ack_timeout_ms);
    }
    free_list(evicted);
    uint32_t cap = c->opts.batch_max_events;
    const uint8_t **evs = rc_calloc((size_t)k + 1, sizeof(*evs));
    size_t *lens = rc_calloc((size_t)k + 1, sizeof(*lens));
    struct rc_client_result *res = rc_calloc(cap, sizeof(*res));
    int rv = RC_OK;
    if (evs == NULL || lens == NULL || res == NULL) {
        rv = result_set(r, RC_ENOMEM, NULL, NULL, NULL);
        goto out;
    }
    uint32_t i = 0;
    for (struct rc_client_qnode *n = prior; n != NULL; n = n->next, i++) {
        evs[i] = n->bytes;
        lens[i] = n->len;
    }
    evs[k] = p;
    lens[k] = len;
    /* Requests of at most batch_max_events / batch_max_bytes; the last one
     * ends with the acknowledged event, whose result is the caller's. */
    uint32_t at = 0;
    while (at <= k) {
        uint32_t m = 0;
        size_t bytes = 0;
        while (at + m <= k && m < cap &&
               (m == 0 || bytes + lens[at + m] + 5 <= c->opts.batch_max_bytes)) {
            bytes += lens[at + m];
            m++;
        }
        bool last = at + m == k + 1;
        for (uint32_t j = 0; j < m; j++)
            result_clear(&res[j]);
        if (last)
            memcpy(res[m - 1].id, r->id, sizeof(r->id));
        int arv = publish_ack(c, evs + at, lens + at, m, res, last ? m - 1 : m);
        if (last) {
            *r = res[m - 1];
            rv = r->err;
        } else if (arv == RC_ETIMEDOUT || arv == RC_ECLOSED || arv == RC_EIO) {
            /* The broker is unreachable: the acknowledged event cannot go
             * either (it would overtake what is still missing). */
            rv = result_set(r, arv, arv == RC_ETIMEDOUT ? "timeout" : NULL, NULL,
                            "no acknowledgement from runcastd (retries exhausted)");
            break;
        }
        at += m;
    }
out:
    free_list(prior);
    rc_free(evs);
    rc_free(lens);
    rc_free(res);
    return rv;
}

/* Publishes one encoded event map. */
static int publish_encoded(struct rc_client *c, const uint8_t *p, size_t len,
                           enum rc_client_delivery d, struct rc_client_result *r)
{
    struct rc_event ev;
    int rv;
    /* Decoding is also how we learn the type and whether an id is present,
     * so it runs even with validation off; only its verdict is ignored. */
    if ((rv = validate_event(c, p, len, &ev, r)) != RC_OK) {
        if (c->opts.validate) {
            pthread_mutex_lock(&c->mtx);
            c->stats.rejected++;
            pthread_mutex_unlock(&c->mtx);
            return rv;
        }
        result_clear(r);
        memset(&ev, 0, sizeof(ev));
        ev.type = RC_EV_CUSTOM;
    }
    bool ack;
    if ((rv = resolve_delivery(c, d, is_terminal_type(&ev), r, &ack)) != RC_OK)
        return rv;
    struct rc_buf withid;
    rc_buf_init(&withid);
    if (!ack) {
        if (!c->has_req || c->opts.retain_ms == 0)
            return push_enqueue(c, p, len, ev.run, r);
        /* A cheap id (client prefix + counter) lets a later acknowledged event
         * re-send this one safely (see above). */
        char gen[40];
        pthread_mutex_lock(&c->mtx);
        uint64_t k = ++c->id_counter;
        pthread_mutex_unlock(&c->mtx);
        snprintf(gen, sizeof(gen), "%s-%llx", c->id_prefix, (unsigned long long)k);
        char idbuf[129];
        if ((rv = ensure_id(&withid, p, len, &ev, idbuf, gen)) == RC_OK)
            rv = push_enqueue(c, withid.data, withid.len, ev.run, r);
        else
            rv = result_set(r, rv, NULL, NULL, "cannot add an idempotency id to this event");
        rc_buf_fini(&withid);
        return rv;
    }
    if ((rv = ensure_id(&withid, p, len, &ev, r->id, NULL)) != RC_OK) {
        rc_buf_fini(&withid);
        return result_set(r, rv, NULL, NULL, "cannot add an idempotency id to this event");
    }
    rv = ack_in_order(c, withid.data, withid.len, ev.run, r);
    rc_buf_fini(&withid);
    return rv;
}

int rc_client_publish(struct rc_client *c, const struct rc_client_event *e,
                      enum rc_client_delivery d, struct rc_client_result *res)
{
    struct rc_client_result local;
    struct rc_client_result *r = res != NULL ? res : &local;
    result_clear(r);
    if (c == NULL || e == NULL)
        return result_set(r, RC_EINVAL, NULL, NULL, NULL);
    if (!has(e->run))
        return result_set(r, RC_EPROTO, "missing_field", "run", "run is required");
    if (!has(e->type))
        return result_set(r, RC_EPROTO, "missing_field", "type", "type is required");
    struct rc_buf b;
    rc_buf_init(&b);
    int rv = encode_event(&b, e, NULL);
    if (rv != RC_OK)
        rv = result_set(r, rv, NULL, NULL, "cannot encode the event");
    else
        rv = publish_encoded(c, b.data, b.len, d, r);
    rc_buf_fini(&b);
    return rv;
}

int rc_client_publish_raw(struct rc_client *c, const void *map, size_t len,
                          enum rc_client_delivery d, struct rc_client_result *res)
{
    struct rc_client_result local;
    struct rc_client_result *r = res != NULL ? res : &local;
    result_clear(r);
    if (c == NULL || map == NULL || len == 0)
        return result_set(r, RC_EINVAL, NULL, NULL, NULL);
    return publish_encoded(c, map, len, d, r);
}

int rc_client_publish_raw_batch_ack(struct rc_client *c, const void *const *maps,
                                    const size_t *lens, uint32_t n,
                                    struct rc_client_result *results)
{
    if (c == NULL || maps == NULL || lens == NULL || results == NULL || n == 0)
        return RC_EINVAL;
    for (uint32_t i = 0; i < n; i++)
        result_clear(&results[i]);
    if (n > c->opts.batch_max_events) {
        for (uint32_t i = 0; i < n; i++)
            result_set(&results[i], RC_EINVAL, "too_large", NULL, "batch over batch_max_events");
        return RC_EINVAL;
    }
    if (!c->has_req) {
        for (uint32_t i = 0; i < n; i++)
            result_set(&results[i], RC_ESTATE, NULL, NULL, "this client has no REQ address");
        return RC_ESTATE;
    }
    struct rc_buf *bufs = rc_calloc(n, sizeof(*bufs));
    const uint8_t **ptrs = rc_calloc(n, sizeof(*ptrs));
    size_t *plens = rc_calloc(n, sizeof(*plens));
    int rv = (bufs && ptrs && plens) ? RC_OK : RC_ENOMEM;
    int first = RC_OK;
    /* Events that fail local validation are reported and left out. */
    uint32_t k = 0;
    uint32_t *map_to = rc_calloc(n, sizeof(*map_to));
    if (map_to == NULL)
        rv = RC_ENOMEM;
    for (uint32_t i = 0; rv == RC_OK && i < n; i++) {
        struct rc_event ev;
        rc_buf_init(&bufs[i]);
        if (validate_event(c, maps[i], lens[i], &ev, &results[i]) != RC_OK) {
            if (first == RC_OK)
                first = results[i].err;
            continue;
        }
        if ((rv = ensure_id(&bufs[i], maps[i], lens[i], &ev, results[i].id, NULL)) != RC_OK)
            break;
        ptrs[k] = bufs[i].data;
        plens[k] = bufs[i].len;
        map_to[k] = i;
        k++;
    }
    if (rv == RC_OK && k > 0) {
        struct rc_client_result *sub = rc_calloc(k, sizeof(*sub));
        if (sub == NULL) {
            rv = RC_ENOMEM;
        } else {
            for (uint32_t j = 0; j < k; j++)
                memcpy(sub[j].id, results[map_to[j]].id, sizeof(sub[j].id));
            if (c->has_push) /* whatever this client pushed before goes first */
                rc_client_flush(c, c->opts.ack_timeout_ms);
            int arv = publish_ack(c, ptrs, plens, k, sub, 0);
            for (uint32_t j = 0; j < k; j++)
                results[map_to[j]] = sub[j];
            if (first == RC_OK)
                first = arv;
            rc_free(sub);
        }
    }
    if (rv != RC_OK)
        first = rv;
    if (bufs != NULL)
        for (uint32_t i = 0; i < n; i++)
            rc_buf_fini(&bufs[i]);
    rc_free(bufs);
    rc_free(ptrs);
    rc_free(plens);
    rc_free(map_to);
    return first;
}

/* ---- Helpers ---- */

int rc_client_start(struct rc_client *c, const char *run, const char *conv,
                    const struct rc_client_timeout *timeouts, uint32_t n_timeouts,
                    uint64_t deadline_ms, struct rc_client_result *res)
{
    struct rc_client_event e = {.run = run,
                                .conv = conv,
                                .type = "start",
                                .timeouts = timeouts,
                                .n_timeouts = n_timeouts,
                                .deadline_ms = deadline_ms};
    return rc_client_publish(c, &e, RC_DELIVER_DEFAULT, res);
}

int rc_client_phase(struct rc_client *c, const char *run, const char *phase,
                    struct rc_client_result *res)
{
    struct rc_client_event e = {.run = run, .type = "phase", .phase = phase};
    return rc_client_publish(c, &e, RC_DELIVER_DEFAULT, res);
}

int rc_client_thinking(struct rc_client *c, const char *run, const char *text,
                       struct rc_client_result *res)
{
    struct rc_client_event e = {.run = run, .type = "thinking", .text = text ? text : ""};
    return rc_client_publish(c, &e, RC_DELIVER_DEFAULT, res);
}

int rc_client_delta(struct rc_client *c, const char *run, const char *text,
                    struct rc_client_result *res)
{
    struct rc_client_event e = {.run = run, .type = "delta", .text = text ? text : ""};
    return rc_client_publish(c, &e, RC_DELIVER_DEFAULT, res);
}

/* Builds {id, name?, status?/label?, ...extra} into b. */
static int build_item(struct rc_buf *b, const char *id, const char *k2, const char *v2,
                      const char *status, const void *extra, size_t extra_len)
{
    uint32_t n_extra = 0;
    size_t hl = 0;
    if (extra != NULL && extra_len > 0) {
        hl = map_header(extra, extra_len, &n_extra);
        if (hl == 0)
            return RC_EINVAL;
    }
    CK(rc_mpw_map(b, 1 + has(v2) + has(status) + n_extra));
    CK(rc_mpw_cstr(b, "id"));
    CK(rc_mpw_cstr(b, id));
    if (has(v2)) {
        CK(rc_mpw_cstr(b, k2));
        CK(rc_mpw_cstr(b, v2));
    }
    if (has(status)) {
        CK(rc_mpw_cstr(b, "status"));
        CK(rc_mpw_cstr(b, status));
    }
    if (n_extra > 0)
        CK(rc_buf_append(b, (const uint8_t *)extra + hl, extra_len - hl));
    return RC_OK;
}

int rc_client_tool(struct rc_client *c, const char *run, const char *tool_id, const char *name,
                   const char *status, const void *extra, size_t extra_len,
                   struct rc_client_result *res)
{
    struct rc_client_result local;
    struct rc_client_result *r = res != NULL ? res : &local;
    result_clear(r);
    if (!has(tool_id))
        return result_set(r, RC_EPROTO, "missing_field", "tool.id", "a tool call needs an id");
    struct rc_buf t;
    rc_buf_init(&t);
    int rv = build_item(&t, tool_id, "name", name, status, extra, extra_len);
    if (rv == RC_OK) {
        struct rc_client_event e = {.run = run, .type = "tool", .tool = t.data, .tool_len = t.len};
        rv = rc_client_publish(c, &e, RC_DELIVER_DEFAULT, r);
    } else {
        result_set(r, rv, "bad_field", "tool", "extra must be a msgpack map");
    }
    rc_buf_fini(&t);
    return rv;
}

int rc_client_verification(struct rc_client *c, const char *run, const char *item_id,
                           const char *label, const char *status, struct rc_client_result *res)
{
    struct rc_client_result local;
    struct rc_client_result *r = res != NULL ? res : &local;
    result_clear(r);
    if (!has(item_id))
        return result_set(r, RC_EPROTO, "missing_field", "item.id",
                          "a verification item needs an id");
    struct rc_buf t;
    rc_buf_init(&t);
    int rv = build_item(&t, item_id, "label", label, status, NULL, 0);
    if (rv == RC_OK) {
        struct rc_client_event e = {
            .run = run, .type = "verification", .item = t.data, .item_len = t.len};
        rv = rc_client_publish(c, &e, RC_DELIVER_DEFAULT, r);
    }
    rc_buf_fini(&t);
    return rv;
}

int rc_client_heartbeat(struct rc_client *c, const char *run, struct rc_client_result *res)
{
    struct rc_client_event e = {.run = run, .type = "heartbeat"};
    return rc_client_publish(c, &e, RC_DELIVER_DEFAULT, res);
}

int rc_client_complete(struct rc_client *c, const char *run, const void *data, size_t data_len,
                       struct rc_client_result *res)
{
    struct rc_client_event e = {.run = run, .type = "complete", .data = data, .data_len = data_len};
    return rc_client_publish(c, &e, RC_DELIVER_DEFAULT, res);
}

int rc_client_error(struct rc_client *c, const char *run, const char *code, const char *message,
                    struct rc_client_result *res)
{
    struct rc_client_event e = {
        .run = run, .type = "error", .error_code = code, .error_message = message};
    return rc_client_publish(c, &e, RC_DELIVER_DEFAULT, res);
}

const char *rc_client_strerror(int err)
{
    return rc_error_message(err);
}
