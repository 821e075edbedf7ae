/*
 * rc_edge_conn: one actor per WebSocket connection.
 *
 * The actor owns everything about its connection: the nng TCP stream, the
 * frame parser, the subscriptions and the output queue.  nng completion
 * callbacks do nothing but post a small message to the actor, so all
 * state is touched by one thread at a time (the actor's turn) and needs no
 * lock.
 *
 * Output: run actors send rc_sub_frame messages; the actor keeps the
 * message (rc_msg_keep) in its queue, bounded in bytes by --ws-queue-max.
 * The queue goes out at once: one message as one frame (header + the
 * shared blob, no copy), several as one frame holding a msgpack array.
 * A frame is written inside the actor's turn with a callback-less aio
 * (one sendmsg, no thread hand-off: see tx_try); only when the socket is
 * full does a frame wait for nng's poller, and messages queued meanwhile
 * go out together in the next frame (coalescing: an idle connection gets
 * each event at once, a backed-up one batches).  Past the bound the queue
 * is dropped, a final `err` (slow_consumer) is sent and the connection is
 * closed with 4008.
 *
 * Closing: begin_close() sets the code; the queue is flushed (shutdown:
 * 1001) or dropped (errors), then the close frame is written, then the
 * actor waits (a short linger) for the peer's close frame or EOF and stops.
 * The fini closes the TCP connection and releases everything.
 */
#include <stdio.h>
#include <string.h>

#include "rc_alloc.h"
#include "rc_blob.h"
#include "rc_buf.h"
#include "rc_clock.h"
#include "rc_config.h"
#include "rc_edge_int.h"
#include "rc_error.h"
#include "rc_log.h"
#include "rc_runs.h"
#include "rc_ws.h"

#include "rc_json.h"

/* Actor message types of the connection (outside 0x524300xx, see rc_runs.h). */
enum {
    CONN_MSG_START = 0x45440001u,
    CONN_MSG_RX,
    CONN_MSG_TX,
    CONN_MSG_SHUTDOWN,
    CONN_MSG_FLUSH, /* write what the frames of the previous turn queued */
};

enum { TIMER_HB = 1, TIMER_LINGER = 2 };

/* Coalescing caps: one frame carries at most this many messages / bytes. */
#define FRAME_MAX_MSGS  1024u
#define FRAME_MAX_BYTES (1u << 20)
/* Bytes asked for per read: small while idle (an idle connection holds
 * only this), up to a whole frame when one is arriving. */
#define READ_MIN 256u
#define READ_MAX 65536u
/* An idle connection keeps write buffers up to this size between frames. */
#define TRIM_AT 4096u
/* How long to wait for the peer's close frame after sending ours. */
#define LINGER_MAX_MS  2000u
#define LINGER_STOP_MS 200u

struct io_msg {
    struct rc_msg hdr;
    int result;
    size_t count;
};

/* One queued server message: a kept rc_sub_frame, or a blob of our own
 * (replies, hb, err). */
struct out_item {
    struct rc_msg *frame; /* kept rc_sub_frame (owns blob), or NULL */
    struct rc_blob *blob; /* the encoded message */
    uint64_t recv_ns;     /* broker receive time for live events; 0 otherwise */
};

struct sub {
    uint64_t id;
    enum rc_sub_kind kind;
    char *target; /* NUL-terminated; "" for all */
    size_t target_len;
};

/* Runs this connection has seen frames of and that had not ended: for the
 * drop warning ("N runs still running, resume from seq S").  Keyed by the
 * run id blob, which the run actor shares among all its frames. */
struct live_run {
    struct rc_blob *run; /* held */
    uint64_t seq;
};

enum conn_state {
    ST_HANDSHAKE, /* 101 being written */
    ST_OPEN,
    ST_CLOSING,    /* close decided; flushing or dropping the queue */
    ST_CLOSE_SENT, /* close frame written or being written */
};

struct rc_edge_conn {
    struct rc_edge_conn_link link; /* rc_edge registry; protected by edge->mtx */
    struct rc_edge *edge;
    struct rc_actor *self; /* our reference, released last in fini */
    uint64_t id;

    /* Hand-off markers of rxaio and slowaio (rc_edge_io_publish before
     * each nng_stream_recv/send and at the end of its callback,
     * rc_edge_io_acquire at callback entry and after nng_aio_stop in
     * fini): the callbacks read what the actor set up for the operation,
     * and fini frees what they touched.  txaio has no callback. */
    _Atomic uint32_t rx_sync, tx_sync;

    /* Everything below: owner actor only (callbacks touch only their aio).
     * txaio: every frame's first write (no callback, see tx_try);
     * slowaio: the rest of a frame the socket did not take at once
     * (allocated the first time a socket is full). */
    nng_stream *conn;
    nng_aio *rxaio, *txaio, *slowaio;
    bool json;
    bool full; /* over the connection limit: 4429 after the handshake */
    char accept[29];
    enum conn_state state;
    bool rx_busy;
    bool tx_async;      /* a frame is being finished on slowaio */
    int tx_err;         /* why tx_write failed (nng error) */
    bool flush_pending; /* a CONN_MSG_FLUSH is in our mailbox */
    bool peer_closed;   /* we got the peer's close frame */
    bool rx_stopped;    /* no more reads (violation, EOF) */
    bool close_written;
    uint16_t close_code;
    uint16_t peer_code;
    const char *close_reason;
    uint32_t abuse;

    struct rc_ws_parser parser;

    struct out_item *q; /* ring */
    uint32_t q_head, q_len, q_cap;
    uint64_t q_bytes;

    struct out_item *fl; /* in flight */
    uint32_t fl_n, fl_cap;
    size_t fl_bytes;   /* frame bytes of the write in flight (metrics) */
    uint32_t fl_own;   /* messages in it that are not queue items (hello) */
    uint8_t hdr[10];   /* header of a single-message frame (payload: the blob) */
    nng_iov tx_iov[2]; /* what remains of the frame being written */
    unsigned tx_niov;
    uint64_t tx_deadline; /* mono ms; 0: no write timeout */
    struct rc_buf wbuf;   /* coalesced frames, control frames, JSON, the 101 */
    struct rc_buf ctl;    /* control frames (pong) to write before the next data */
    struct rc_buf jtmp;   /* JSON conversion scratch */

    struct sub *subs;
    uint32_t n_subs, cap_subs;
    uint64_t next_sub_id;
    uint32_t n_wide; /* conv/all subscriptions among subs */

    struct live_run *live;
    uint32_t n_live, cap_live;

    struct rc_timer hb_timer, linger_timer;
    uint64_t last_tx_ms;
    uint64_t hb_ms;
};

static _Atomic uint64_t conn_ids = 1;

/* A frame is not all written yet (only the actor changes tx_async). */
static bool tx_busy(const struct rc_edge_conn *c)
{
    return c->tx_async;
}

struct rc_edge_conn_link *rc_edge_conn_link(struct rc_edge_conn *c)
{
    return &c->link;
}

/* ---- helpers ---- */

static const struct rc_config *cfg_of(const struct rc_edge_conn *c)
{
    return c->edge->cfg;
}

static void item_release(struct out_item *it)
{
    if (it->frame != NULL)
        rc_msg_free(it->frame);
    else
        rc_blob_release(it->blob);
    it->frame = NULL;
    it->blob = NULL;
}

static void queue_drop_all(struct rc_edge_conn *c)
{
    while (c->q_len > 0) {
        struct out_item *it = &c->q[c->q_head];
        c->q_head = (c->q_head + 1) % c->q_cap;
        c->q_len--;
        item_release(it);
        rc_metric_add(&c->edge->m.events_dropped, 1);
    }
    c->q_head = 0;
    c->q_bytes = 0;
}

static int queue_push(struct rc_edge_conn *c, struct rc_msg *frame, struct rc_blob *blob,
                      uint64_t recv_ns)
{
    if (c->q_len == c->q_cap) {
        uint32_t ncap = c->q_cap ? c->q_cap * 2 : 16;
        struct out_item *nq = rc_malloc(sizeof(*nq) * ncap);
        if (nq == NULL)
            return RC_ENOMEM;
        for (uint32_t i = 0; i < c->q_len; i++)
            nq[i] = c->q[(c->q_head + i) % c->q_cap];
        rc_free(c->q);
        c->q = nq;
        c->q_cap = ncap;
        c->q_head = 0;
    }
    struct out_item *it = &c->q[(c->q_head + c->q_len) % c->q_cap];
    it->frame = frame;
    it->blob = blob;
    it->recv_ns = recv_ns;
    c->q_len++;
    c->q_bytes += blob->len;
    return RC_OK;
}

static void start_write(struct rc_edge_conn *c);
static void begin_close(struct rc_edge_conn *c, uint16_t code, const char *reason, bool flush);

/* Queues one of our own messages (encoded in b) regardless of the bound:
 * replies are small and answer the client's own requests. */
static void push_own(struct rc_edge_conn *c, struct rc_buf *b)
{
    struct rc_blob *blob = rc_blob_copy(b->data, b->len);
    if (blob == NULL || queue_push(c, NULL, blob, 0) != 0) {
        rc_blob_release(blob);
        begin_close(c, RC_WS_CLOSE_INTERNAL, "out of memory", false);
        return;
    }
    start_write(c);
}

static void send_err(struct rc_edge_conn *c, enum rc_proto_code code, const char *msg,
                     struct rc_str req)
{
    struct rc_buf b;
    rc_buf_init(&b);
    if (rc_proto_encode_err(&b, code, msg, req) == 0)
        push_own(c, &b);
    rc_buf_fini(&b);
    rc_metric_add(&c->edge->m.client_errors, 1);
}

static void send_ok(struct rc_edge_conn *c, struct rc_str req)
{
    struct rc_buf b;
    rc_buf_init(&b);
    if (rc_proto_encode_ok(&b, req) == 0)
        push_own(c, &b);
    rc_buf_fini(&b);
}

/* Gives back the buffers an idle connection does not need: what stays is
 * the struct, the two aios and the small read buffer. */
static void conn_trim(struct rc_edge_conn *c)
{
    rc_buf_fini(&c->wbuf);
    rc_buf_fini(&c->jtmp);
    if (c->q_len == 0 && c->q_cap > 64) {
        rc_free(c->q);
        c->q = NULL;
        c->q_cap = 0;
        c->q_head = 0;
    }
    if (c->fl_cap > 64) {
        rc_free(c->fl);
        c->fl = NULL;
        c->fl_cap = 0;
    }
}

/* ---- I/O ---- */

static void conn_io_cb(struct rc_edge_conn *c, nng_aio *aio, uint32_t type)
{
    struct io_msg *m = (struct io_msg *)rc_msg_new(sizeof(*m), type);
    if (m == NULL) {
        /* Cannot tell the actor: cut the connection (its fini cleans up). */
        rc_actor_stop(c->self, RC_ENOMEM);
        return;
    }
    m->result = nng_aio_result(aio);
    m->count = nng_aio_count(aio);
    if (rc_actor_send(c->self, &m->hdr) != 0)
        rc_msg_free(&m->hdr); /* the actor has stopped */
}

static void conn_rx_cb(void *arg)
{
    struct rc_edge_conn *c = arg;
    rc_edge_io_acquire(&c->rx_sync); /* start_read's writes */
    conn_io_cb(c, c->rxaio, CONN_MSG_RX);
    rc_edge_io_publish(&c->rx_sync); /* to conn_fini after nng_aio_stop */
}

/* Counts a written frame and releases its messages (actor only). */
static void tx_account(struct rc_edge_conn *c)
{
    struct rc_edge_hot *hot = rc_edge_hot(c->edge);
    if (c->fl_bytes > 0) {
        rc_metric_add(&hot->frames_sent, 1);
        rc_metric_add(&hot->bytes_sent, c->fl_bytes);
    }
    if (c->fl_own > 0) {
        rc_metric_add(&hot->msgs_sent, c->fl_own);
        c->fl_own = 0;
    }
    if (c->fl_n > 0) {
        uint64_t now = rc_clock_mono_ns();
        rc_metric_add(&hot->msgs_sent, c->fl_n);
        for (uint32_t i = 0; i < c->fl_n; i++) {
            if (c->fl[i].recv_ns != 0 && now > c->fl[i].recv_ns)
                rc_edge_lat_observe(hot, (now - c->fl[i].recv_ns) / 1000);
            item_release(&c->fl[i]);
        }
        c->fl_n = 0;
    }
}

/* slowaio completed (nng's task thread): on_tx continues. */
static void conn_tx_cb(void *arg)
{
    struct rc_edge_conn *c = arg;
    rc_edge_io_acquire(&c->tx_sync); /* tx_slow's writes */
    conn_io_cb(c, c->slowaio, CONN_MSG_TX);
    rc_edge_io_publish(&c->tx_sync); /* to conn_fini after nng_aio_stop */
}

static void start_read(struct rc_edge_conn *c)
{
    if (c->rx_busy || c->rx_stopped || c->peer_closed)
        return;
    size_t want = rc_ws_parser_need(&c->parser);
    if (c->parser.pos == c->parser.in.len && c->parser.in.cap > 4 * READ_MIN)
        rc_ws_parser_trim(&c->parser); /* a big message is done: give it back */
    want = want < READ_MIN ? READ_MIN : want > READ_MAX ? READ_MAX : want;
    uint8_t *p = rc_ws_parser_space(&c->parser, want);
    if (p == NULL) {
        begin_close(c, RC_WS_CLOSE_INTERNAL, "out of memory", false);
        return;
    }
    nng_iov iov = {.iov_buf = p, .iov_len = c->parser.in.cap - c->parser.in.len};
    nng_aio_set_iov(c->rxaio, 1, &iov);
    nng_aio_set_timeout(c->rxaio, NNG_DURATION_INFINITE);
    c->rx_busy = true;
    /* the buffer and the parser: published to conn_rx_cb */
    rc_edge_io_recv(&c->rx_sync, c->conn, c->rxaio);
}

/*
 * The write path.  nng 1.5.2's TCP stream writes inline in
 * nng_stream_send when nothing of the stream is queued: one sendmsg, then
 * the aio is finished with the bytes it took (a partial count when the
 * socket buffer took only part), or left queued for nng's poller when the
 * socket is full (EAGAIN).  An aio without a callback is finished right
 * there, without a hop to nng's task threads.  So every frame is first
 * written with txaio, which has no callback: the common case costs one
 * sendmsg and no thread hand-off, the frame's messages are released at
 * once and the next frame can follow immediately.
 *
 * Only when the socket is full does a frame need to wait: then the rest
 * goes out on slowaio (with a callback and --ws-write-timeout), and no
 * other frame is started until on_tx has it all written, so frames never
 * interleave.
 */

/* One attempt on txaio: the result and the bytes written.  Never waits
 * for the socket: a send still queued when nng_stream_send returns is
 * cancelled (nng's write either takes an aio whole or partly and finishes
 * it under the stream's lock, or leaves it untouched, so a cancelled send
 * wrote nothing); nng_aio_wait then only waits for a finish already under
 * way on nng's poller. */
static int tx_try(struct rc_edge_conn *c, size_t *n)
{
    nng_aio_set_iov(c->txaio, c->tx_niov, c->tx_iov);
    nng_stream_send(c->conn, c->txaio);
    nng_aio_cancel(c->txaio);
    nng_aio_wait(c->txaio);
    *n = nng_aio_count(c->txaio);
    return nng_aio_result(c->txaio);
}

/* Drops the first count bytes from tx_iov; true when nothing is left. */
static bool iov_advance(struct rc_edge_conn *c, size_t count)
{
    unsigned i = 0;
    while (i < c->tx_niov && count >= c->tx_iov[i].iov_len) {
        count -= c->tx_iov[i].iov_len;
        i++;
    }
    if (i == c->tx_niov)
        return true;
    c->tx_iov[i].iov_buf = (uint8_t *)c->tx_iov[i].iov_buf + count;
    c->tx_iov[i].iov_len -= count;
    unsigned n = c->tx_niov - i;
    for (unsigned j = 0; j < n; j++)
        c->tx_iov[j] = c->tx_iov[i + j];
    c->tx_niov = n;
    return false;
}

/* The socket is full: the rest of the frame goes out on slowaio. */
static bool tx_slow(struct rc_edge_conn *c)
{
    if (c->slowaio == NULL && nng_aio_alloc(&c->slowaio, conn_tx_cb, c) != 0) {
        c->slowaio = NULL;
        c->tx_err = NNG_ENOMEM;
        return false;
    }
    nng_duration to = NNG_DURATION_INFINITE;
    if (c->tx_deadline > 0) {
        uint64_t now = rc_clock_mono_ms();
        if (now >= c->tx_deadline) {
            c->tx_err = NNG_ETIMEDOUT;
            return false;
        }
        to = (nng_duration)(c->tx_deadline - now);
    }
    nng_aio_set_iov(c->slowaio, c->tx_niov, c->tx_iov);
    nng_aio_set_timeout(c->slowaio, to);
    c->tx_async = true;
    rc_metric_add(&rc_edge_hot(c->edge)->writes_blocked, 1);
    /* tx_iov and slowaio: published to conn_tx_cb */
    rc_edge_io_send(&c->tx_sync, c->conn, c->slowaio);
    return true;
}

enum tx { TX_WHOLE, TX_ASYNC, TX_ERROR };

/* Writes what is left of the frame in tx_iov: TX_WHOLE when it is all
 * written, TX_ASYNC when on_tx will finish it, TX_ERROR (tx_err). */
static enum tx tx_write(struct rc_edge_conn *c)
{
    for (;;) {
        size_t n;
        int rv = tx_try(c, &n);
        if (rv == 0) {
            if (iov_advance(c, n))
                return TX_WHOLE;
            continue; /* partial: try the rest (a full socket ends it) */
        }
        if (rv != NNG_ECANCELED) {
            c->tx_err = rv;
            return TX_ERROR;
        }
        if (n > 0 && iov_advance(c, n))
            return TX_WHOLE; /* defensive: a cancelled send writes nothing */
        return tx_slow(c) ? TX_ASYNC : TX_ERROR;
    }
}

/* Starts writing iov[0..n) (copied: the caller's array may be on its
 * stack); --ws-write-timeout runs from here. */
static enum tx write_iov(struct rc_edge_conn *c, nng_iov *iov, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        c->tx_iov[i] = iov[i];
    c->tx_niov = n;
    uint64_t to = cfg_of(c)->ws_write_timeout_ms;
    c->last_tx_ms = rc_clock_mono_ms();
    c->tx_deadline = to > 0 ? c->last_tx_ms + to : 0;
    return tx_write(c);
}

static void conn_done(struct rc_edge_conn *c);

/* A write failed (the peer is gone, or the write timed out): drop the
 * frame and stop. */
static void tx_failed(struct rc_edge_conn *c, int result)
{
    for (uint32_t i = 0; i < c->fl_n; i++)
        item_release(&c->fl[i]);
    c->fl_n = 0;
    if (result == NNG_ETIMEDOUT) {
        rc_metric_add(&c->edge->m.closes_timeout, 1);
        rc_log(RC_LOG_WARN, "edge", NULL, NULL,
               "conn %llu: a send did not complete within --ws-write-timeout; closing",
               (unsigned long long)c->id);
        c->close_code = RC_WS_CLOSE_ABNORMAL;
    } else if (c->state != ST_CLOSE_SENT) {
        c->close_code = RC_WS_CLOSE_ABNORMAL;
    }
    conn_done(c);
}

/* WN_* from a write_iov result. */
static int wn_of(struct rc_edge_conn *c, enum tx t);

static int fl_reserve(struct rc_edge_conn *c, uint32_t n)
{
    if (n <= c->fl_cap)
        return RC_OK;
    struct out_item *nf = rc_realloc(c->fl, sizeof(*nf) * n);
    if (nf == NULL)
        return RC_ENOMEM;
    c->fl = nf;
    c->fl_cap = n;
    return RC_OK;
}

/* Appends one msgpack message as JSON text. */
static int to_json(struct rc_buf *out, const void *mp, size_t len)
{
    return rc_json_from_msgpack(mp, len, out);
}

enum wn { WN_NONE, WN_WHOLE, WN_PENDING };

static int wn_of(struct rc_edge_conn *c, enum tx t)
{
    if (t == TX_WHOLE)
        return WN_WHOLE;
    if (t == TX_ASYNC)
        return WN_PENDING;
    tx_failed(c, c->tx_err);
    return WN_NONE;
}

/*
 * Writes the next frame on aio k: control frames, then up to
 * FRAME_MAX_MSGS queued messages as one frame, or (closing, queue empty)
 * the close frame.  WN_WHOLE: written whole at once; WN_PENDING: on_tx
 * finishes it; WN_NONE: nothing written (nothing due, or an error that
 * closed or stopped the connection).
 */
static enum wn write_next(struct rc_edge_conn *c)
{
    rc_buf_reset(&c->wbuf);
    c->fl_n = 0;
    c->fl_bytes = 0;
    if (c->ctl.len > 0) {
        rc_buf_append(&c->wbuf, c->ctl.data, c->ctl.len);
        rc_buf_reset(&c->ctl);
    }

    if (c->q_len == 0) {
        if (c->state == ST_CLOSING) {
            if (rc_ws_close_frame(&c->wbuf, c->close_code, c->close_reason) != 0) {
                rc_actor_stop(c->self, RC_ENOMEM);
                return WN_NONE;
            }
            c->state = ST_CLOSE_SENT;
            c->close_written = true;
        }
        if (c->wbuf.len == 0)
            return WN_NONE;
        nng_iov iov = {.iov_buf = c->wbuf.data, .iov_len = c->wbuf.len};
        c->fl_bytes = c->wbuf.len;
        return wn_of(c, write_iov(c, &iov, 1));
    }

    /* Take messages up to the caps. */
    uint32_t n = 0;
    size_t payload = 0;
    while (n < c->q_len && n < FRAME_MAX_MSGS) {
        const struct out_item *it = &c->q[(c->q_head + n) % c->q_cap];
        if (n > 0 && payload + it->blob->len > FRAME_MAX_BYTES)
            break;
        payload += it->blob->len;
        n++;
    }
    if (fl_reserve(c, n) != 0) {
        rc_actor_stop(c->self, RC_ENOMEM);
        return WN_NONE;
    }
    for (uint32_t i = 0; i < n; i++) {
        c->fl[i] = c->q[c->q_head];
        c->q_head = (c->q_head + 1) % c->q_cap;
        c->q_len--;
        c->q_bytes -= c->fl[i].blob->len;
    }
    c->fl_n = n;

    uint8_t h[10];
    size_t hl;
    nng_iov iov[2];
    unsigned niov = 1;
    int rv = 0;
    if (c->json) {
        struct rc_buf *j = &c->jtmp;
        rc_buf_reset(j);
        if (n > 1)
            rv = rc_buf_append(j, "[", 1);
        for (uint32_t i = 0; i < n && rv == 0; i++) {
            if (i > 0)
                rv = rc_buf_append(j, ",", 1);
            if (rv == 0)
                rv = to_json(j, c->fl[i].blob->data, c->fl[i].blob->len);
        }
        if (rv == 0 && n > 1)
            rv = rc_buf_append(j, "]", 1);
        hl = rc_ws_frame_header(h, RC_WS_OP_TEXT, true, j->len);
        if (rv == 0)
            rv = rc_buf_append(&c->wbuf, h, hl);
        if (rv == 0)
            rv = rc_buf_append(&c->wbuf, j->data, j->len);
    } else if (n == 1 && c->wbuf.len == 0) {
        /* The common idle case: header, then the shared bytes themselves
         * (no copy, no buffer). */
        hl = rc_ws_frame_header(c->hdr, RC_WS_OP_BINARY, true, payload);
        iov[0].iov_buf = c->hdr;
        iov[0].iov_len = hl;
        iov[1].iov_buf = c->fl[0].blob->data;
        iov[1].iov_len = c->fl[0].blob->len;
        c->fl_bytes = hl + payload;
        return wn_of(c, write_iov(c, iov, 2));
    } else if (n == 1) {
        hl = rc_ws_frame_header(h, RC_WS_OP_BINARY, true, payload);
        rv = rc_buf_append(&c->wbuf, h, hl);
        iov[1].iov_buf = c->fl[0].blob->data;
        iov[1].iov_len = c->fl[0].blob->len;
        niov = 2;
    } else {
        uint8_t ah[5];
        struct rc_buf abuf;
        rc_buf_init_on(&abuf, ah, sizeof(ah)); /* an array header is at most 5 bytes */
        rv = rc_proto_encode_array_header(&abuf, n);
        hl = rc_ws_frame_header(h, RC_WS_OP_BINARY, true, payload + abuf.len);
        if (rv == 0)
            rv = rc_buf_reserve(&c->wbuf, hl + abuf.len + payload);
        if (rv == 0) {
            rc_buf_append(&c->wbuf, h, hl);
            rc_buf_append(&c->wbuf, ah, abuf.len);
            for (uint32_t i = 0; i < n; i++)
                rc_buf_append(&c->wbuf, c->fl[i].blob->data, c->fl[i].blob->len);
        }
    }
    if (rv != 0) {
        for (uint32_t i = 0; i < c->fl_n; i++)
            item_release(&c->fl[i]);
        c->fl_n = 0;
        begin_close(c, RC_WS_CLOSE_INTERNAL,
                    rv == RC_EPROTO ? "cannot convert to JSON" : "out of memory", false);
        return WN_NONE;
    }
    if (n > 1)
        rc_metric_add(&rc_edge_hot(c->edge)->coalesced_frames, 1);
    iov[0].iov_buf = c->wbuf.data;
    iov[0].iov_len = c->wbuf.len;
    c->fl_bytes = c->wbuf.len + (niov == 2 ? iov[1].iov_len : 0);
    return wn_of(c, write_iov(c, iov, niov));
}

static void after_close_written(struct rc_edge_conn *c);

/*
 * Writes what is pending, frame after frame while the socket takes them
 * whole (each frame's messages released as soon as it is written).  Stops
 * at a frame the socket did not take at once (on_tx continues) or when
 * nothing is due.
 */
static void start_write(struct rc_edge_conn *c)
{
    for (;;) {
        if (c->state == ST_HANDSHAKE || c->close_written || c->tx_async)
            return;
        if (c->q_len == 0 && c->ctl.len == 0 && c->state != ST_CLOSING) {
            /* idle: give back buffers a big coalesced frame grew (small
             * ones stay for the next frames; the heartbeat trims them) */
            if (c->wbuf.cap > TRIM_AT || c->jtmp.cap > TRIM_AT)
                conn_trim(c);
            return;
        }
        if (write_next(c) != WN_WHOLE)
            return;
        tx_account(c);
        if (c->close_written) {
            after_close_written(c);
            return;
        }
    }
}

/* ---- live runs (for the drop warning) ----
 *
 * An open-addressing set keyed by the run id blob (one blob per run, shared
 * by all its frames), linear probing with backward-shift deletion, so the
 * per-frame cost stays O(1) for an all-subscriber seeing thousands of runs.
 * Capped at LIVE_MAX entries (then only the count is approximate). */

#define LIVE_MAX 65536u

static uint32_t live_hash(const struct rc_blob *run, uint32_t mask)
{
    uintptr_t p = (uintptr_t)run >> 4;
    return (uint32_t)((p * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

static bool live_grow(struct rc_edge_conn *c)
{
    uint32_t ncap = c->cap_live ? c->cap_live * 2 : 16;
    if (ncap > 2 * LIVE_MAX)
        return false;
    struct live_run *nl = rc_calloc(ncap, sizeof(*nl));
    if (nl == NULL)
        return false;
    for (uint32_t i = 0; i < c->cap_live; i++) {
        if (c->live[i].run == NULL)
            continue;
        uint32_t j = live_hash(c->live[i].run, ncap - 1);
        while (nl[j].run != NULL)
            j = (j + 1) & (ncap - 1);
        nl[j] = c->live[i];
    }
    rc_free(c->live);
    c->live = nl;
    c->cap_live = ncap;
    return true;
}

static void live_note(struct rc_edge_conn *c, const struct rc_sub_frame *f)
{
    if (f->run == NULL)
        return;
    uint32_t mask = c->cap_live - 1;
    uint32_t i = c->cap_live ? live_hash(f->run, mask) : 0;
    while (c->cap_live && c->live[i].run != NULL) {
        if (c->live[i].run == f->run) {
            if (!f->terminal) {
                if (f->seq > c->live[i].seq)
                    c->live[i].seq = f->seq;
                return;
            }
            /* ended: remove, shifting back the entries of the cluster */
            rc_blob_release(c->live[i].run);
            c->live[i].run = NULL;
            c->n_live--;
            uint32_t j = i;
            for (;;) {
                j = (j + 1) & mask;
                if (c->live[j].run == NULL)
                    break;
                uint32_t h = live_hash(c->live[j].run, mask);
                /* move j to i when its home slot h is not in (i, j] */
                if ((j > i && (h <= i || h > j)) || (j < i && (h <= i && h > j))) {
                    c->live[i] = c->live[j];
                    c->live[j].run = NULL;
                    i = j;
                }
            }
            return;
        }
        i = (i + 1) & mask;
    }
    if (f->terminal || c->n_live >= LIVE_MAX)
        return;
    if ((c->n_live + 1) * 2 > c->cap_live) {
        if (!live_grow(c))
            return;
        mask = c->cap_live - 1;
        i = live_hash(f->run, mask);
        while (c->live[i].run != NULL)
            i = (i + 1) & mask;
    }
    c->live[i].run = rc_blob_hold(f->run);
    c->live[i].seq = f->seq;
    c->n_live++;
}

/* ---- closing ---- */

static void begin_close(struct rc_edge_conn *c, uint16_t code, const char *reason, bool flush)
{
    if (c->state == ST_CLOSING || c->state == ST_CLOSE_SENT)
        return;
    c->state = ST_CLOSING;
    c->close_code = code;
    c->close_reason = reason;
    if (!flush)
        queue_drop_all(c);
    start_write(c);
}

static void conn_done(struct rc_edge_conn *c)
{
    rc_actor_stop(c->self, 0);
}

/* After our close frame: how long to wait for the peer's before closing
 * TCP.  Short while the edge stops (every connection waits at once, within
 * --shutdown-timeout; the close frame is already out). */
static void arm_linger(struct rc_edge_conn *c)
{
    uint64_t ms = cfg_of(c)->ws_write_timeout_ms;
    if (ms == 0 || ms > LINGER_MAX_MS)
        ms = LINGER_MAX_MS;
    if (!rc_edge_serving(c->edge) && ms > LINGER_STOP_MS)
        ms = LINGER_STOP_MS;
    rc_timer_arm(c->edge->sys, &c->linger_timer, ms);
}

/* ---- subscriptions ---- */

static struct sub *sub_find(struct rc_edge_conn *c, enum rc_sub_kind kind, struct rc_str target)
{
    for (uint32_t i = 0; i < c->n_subs; i++) {
        struct sub *s = &c->subs[i];
        if (s->kind == kind && s->target_len == target.len &&
            (target.len == 0 || memcmp(s->target, target.ptr, target.len) == 0))
            return s;
    }
    return NULL;
}

static bool sub_active(const struct rc_edge_conn *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->n_subs; i++)
        if (c->subs[i].id == id)
            return true;
    return false;
}

static void handle_sub(struct rc_edge_conn *c, const struct rc_client_msg *m)
{
    struct rc_edge *e = c->edge;
    if (sub_find(c, m->kind, m->target) != NULL) {
        send_err(c, RC_PROTO_BAD_FIELD, "already subscribed to this target (unsub first)",
                 m->req_raw);
        return;
    }
    if (c->n_subs >= cfg_of(c)->ws_max_subs) {
        send_err(c, RC_PROTO_LIMIT, "too many subscriptions on this connection (--ws-max-subs)",
                 m->req_raw);
        return;
    }
    if (e->runs == NULL) {
        send_err(c, RC_PROTO_INTERNAL, "no run registry", m->req_raw);
        return;
    }
    if (c->n_subs == c->cap_subs) {
        uint32_t ncap = c->cap_subs ? c->cap_subs * 2 : 4;
        struct sub *ns = rc_realloc(c->subs, sizeof(*ns) * ncap);
        if (ns == NULL) {
            send_err(c, RC_PROTO_INTERNAL, "out of memory", m->req_raw);
            return;
        }
        c->subs = ns;
        c->cap_subs = ncap;
    }
    struct sub *s = &c->subs[c->n_subs];
    s->id = c->next_sub_id++;
    s->kind = m->kind;
    s->target_len = m->target.len;
    s->target = rc_strndup(m->target.len > 0 ? m->target.ptr : "", m->target.len);
    if (s->target == NULL) {
        send_err(c, RC_PROTO_INTERNAL, "out of memory", m->req_raw);
        return;
    }
    struct rc_sub_req req = {
        .kind = m->kind,
        .target = s->target,
        .target_len = s->target_len,
        .subscriber = c->self,
        .sub_id = s->id,
        .has_since = m->has_since && m->kind == RC_SUB_RUN,
        .since = m->since,
        .since_map = m->since_map.len > 0 ? m->since_map.ptr : NULL,
        .since_map_len = m->since_map.len,
        .has_epoch = m->has_epoch,
        .epoch = m->epoch,
        .snapshot = m->snapshot,
    };
    /* The ok goes into the queue first, so it precedes every frame of the
     * subscription (they come through the mailbox after this turn). */
    int rv = rc_runs_subscribe(e->runs, &req);
    if (rv != 0) {
        rc_free(s->target);
        send_err(c, rv == RC_ECLOSED ? RC_PROTO_SHUTTING_DOWN : RC_PROTO_INTERNAL,
                 rv == RC_ECLOSED ? "the broker is shutting down" : rc_error_message(rv),
                 m->req_raw);
        return;
    }
    c->n_subs++;
    if (m->kind != RC_SUB_RUN)
        c->n_wide++;
    rc_metric_add(&e->m.subs, 1);
    rc_metric_add(&e->m.sub_requests, 1);
    send_ok(c, m->req_raw);
}

static void handle_unsub(struct rc_edge_conn *c, const struct rc_client_msg *m)
{
    struct sub *s = sub_find(c, m->kind, m->target);
    if (s == NULL) {
        send_err(c, RC_PROTO_NOT_SUBSCRIBED, "no such subscription on this connection", m->req_raw);
        return;
    }
    if (c->edge->runs != NULL)
        (void)rc_runs_unsubscribe(c->edge->runs, s->kind, s->target, s->target_len, c->self, s->id);
    if (s->kind != RC_SUB_RUN)
        c->n_wide--;
    rc_free(s->target);
    *s = c->subs[--c->n_subs];
    rc_metric_sub(&c->edge->m.subs, 1);
    rc_metric_add(&c->edge->m.unsub_requests, 1);
    send_ok(c, m->req_raw);
}

static void abuse(struct rc_edge_conn *c)
{
    c->abuse++;
    uint64_t lim = cfg_of(c)->ws_abuse_limit;
    if (lim > 0 && c->abuse >= lim) {
        rc_metric_add(&c->edge->m.closes_abuse, 1);
        begin_close(c, RC_WS_CLOSE_ABUSE, "too many invalid messages", false);
    }
}

static void handle_client(struct rc_edge_conn *c, enum rc_ws_op op, const uint8_t *data, size_t len)
{
    struct rc_edge *e = c->edge;
    struct rc_str none = {NULL, 0};
    rc_metric_add(&e->m.client_msgs, 1);
    if (c->state != ST_OPEN)
        return;

    const uint8_t *mp = data;
    size_t mplen = len;
    struct rc_buf conv;
    rc_buf_init(&conv);
    if (op == RC_WS_OP_TEXT) {
        if (!rc_proto_valid_utf8((const char *)data, len)) {
            rc_metric_add(&e->m.closes_protocol, 1);
            begin_close(c, RC_WS_CLOSE_BAD_DATA, "text frame is not UTF-8", false);
            return;
        }
        if (!c->json) {
            send_err(c, RC_PROTO_MALFORMED,
                     "text frames need /ws?format=json; send msgpack in binary frames", none);
            abuse(c);
            return;
        }
        char why[128];
        if (rc_json_to_msgpack_ex((const char *)data, len, &conv, why, sizeof(why)) != 0) {
            char msg[160];
            snprintf(msg, sizeof(msg), "not a JSON document: %s", why);
            rc_buf_fini(&conv);
            send_err(c, RC_PROTO_MALFORMED, msg, none);
            abuse(c);
            return;
        }
        mp = conv.data;
        mplen = conv.len;
    }

    struct rc_client_msg m;
    struct rc_proto_error perr;
    enum rc_proto_code code = rc_proto_decode_client(mp, mplen, &e->lim, &m, &perr);
    if (code != RC_PROTO_OK) {
        char msg[160];
        if (perr.field != NULL)
            snprintf(msg, sizeof(msg), "%s: %s", perr.field, perr.reason);
        else
            snprintf(msg, sizeof(msg), "%s", perr.reason);
        send_err(c, code, msg, none);
        abuse(c);
    } else {
        switch (m.op) {
        case RC_OP_SUB:
            handle_sub(c, &m);
            break;
        case RC_OP_UNSUB:
            handle_unsub(c, &m);
            break;
        case RC_OP_PING: {
            struct rc_buf b;
            rc_buf_init(&b);
            if (rc_proto_encode_pong(&b, m.req_raw) == 0)
                push_own(c, &b);
            rc_buf_fini(&b);
            break;
        }
        }
    }
    rc_buf_fini(&conv);
}

/* ---- message handlers ---- */

static void parse_input(struct rc_edge_conn *c);

static void on_start(struct rc_edge_conn *c)
{
    struct rc_edge *e = c->edge;
    const struct rc_config *cfg = cfg_of(c);
    char hdr[256];
    int n = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     c->accept);
    rc_buf_reset(&c->wbuf);
    int rv = rc_buf_append(&c->wbuf, hdr, (size_t)n);
    if (c->full) {
        if (rv == 0)
            rv = rc_ws_close_frame(&c->wbuf, RC_WS_CLOSE_FULL, "too many connections");
        c->state = ST_CLOSE_SENT;
        c->close_written = true;
        c->close_code = RC_WS_CLOSE_FULL;
    } else {
        struct rc_buf hello;
        rc_buf_init(&hello);
        uint8_t h[10];
        if (rv == 0)
            rv = rc_proto_encode_hello(&hello, e->epoch, "runcast/" RUNCAST_VERSION,
                                       (uint32_t)cfg->ws_heartbeat_ms);
        if (rv == 0 && c->json) {
            rc_buf_reset(&c->jtmp);
            rv = to_json(&c->jtmp, hello.data, hello.len);
            if (rv == 0) {
                size_t hl = rc_ws_frame_header(h, RC_WS_OP_TEXT, true, c->jtmp.len);
                rv = rc_buf_append(&c->wbuf, h, hl);
                if (rv == 0)
                    rv = rc_buf_append(&c->wbuf, c->jtmp.data, c->jtmp.len);
            }
        } else if (rv == 0) {
            size_t hl = rc_ws_frame_header(h, RC_WS_OP_BINARY, true, hello.len);
            rv = rc_buf_append(&c->wbuf, h, hl);
            if (rv == 0)
                rv = rc_buf_append(&c->wbuf, hello.data, hello.len);
        }
        rc_buf_fini(&hello);
        c->state = ST_OPEN;
    }
    if (rv != 0) {
        rc_actor_stop(c->self, RC_ENOMEM);
        return;
    }
    nng_iov iov = {.iov_buf = c->wbuf.data, .iov_len = c->wbuf.len};
    c->fl_n = 0;
    c->fl_bytes = c->wbuf.len - (size_t)n; /* the 101 is not a frame */
    c->fl_own = c->full ? 0 : 1;
    enum tx t = write_iov(c, &iov, 1);
    if (t == TX_ERROR) {
        tx_failed(c, c->tx_err);
        return;
    }
    if (t == TX_WHOLE) {
        tx_account(c); /* a full connection's linger is armed below */
        conn_trim(c);  /* the 101 + hello buffer: an idle connection keeps none */
    }
    if (!c->full && !rc_edge_serving(e)) {
        /* upgraded while the edge was stopping: hello, then 1001 */
        rc_metric_add(&e->m.closes_shutdown, 1);
        begin_close(c, RC_WS_CLOSE_GOING_AWAY, "broker shutting down", true);
    }
    if (c->full)
        arm_linger(c);
    else if (c->hb_ms > 0)
        rc_timer_arm(e->sys, &c->hb_timer, c->hb_ms);
    parse_input(c); /* frames the client sent with its request, then read */
}

static void after_close_written(struct rc_edge_conn *c)
{
    if (c->peer_closed || c->rx_stopped)
        conn_done(c);
    else
        arm_linger(c);
}

/* slowaio completed (CONN_MSG_TX): the socket took (part of) the rest. */
static void on_tx(struct rc_edge_conn *c, const struct io_msg *m)
{
    c->tx_async = false;
    int result = m->result;
    if (result == 0 && !iov_advance(c, m->count)) {
        enum tx t = tx_write(c);
        if (t == TX_ASYNC)
            return; /* the rest of the frame is on its way */
        if (t == TX_ERROR)
            result = c->tx_err;
    }
    if (result != 0) {
        tx_failed(c, result);
        return;
    }
    tx_account(c);
    if (c->close_written) {
        after_close_written(c);
        return;
    }
    start_write(c);
    if (!tx_busy(c))
        conn_trim(c);
}

static void on_rx(struct rc_edge_conn *c, const struct io_msg *m)
{
    c->rx_busy = false;
    if (m->result != 0) {
        c->rx_stopped = true;
        if (!c->close_written && !c->peer_closed) {
            /* Dropped without a close frame. */
            c->close_code = RC_WS_CLOSE_ABNORMAL;
            conn_done(c);
        } else if (c->close_written && !tx_busy(c)) {
            conn_done(c);
        }
        return;
    }
    rc_ws_parser_commit(&c->parser, m->count);
    parse_input(c);
}

/* Handles every whole client frame received so far, then reads on. */
static void parse_input(struct rc_edge_conn *c)
{
    struct rc_edge *e = c->edge;
    for (;;) {
        struct rc_ws_result r;
        rc_ws_parser_next(&c->parser, &r);
        if (r.ev == RC_WS_EV_NONE)
            break;
        if (r.ev == RC_WS_EV_VIOLATION) {
            c->rx_stopped = true;
            rc_metric_add(&e->m.closes_protocol, 1);
            begin_close(c, r.close_code, r.reason, false);
            break;
        }
        if (r.ev == RC_WS_EV_TOO_BIG) {
            send_err(c, RC_PROTO_TOO_LARGE, "client message over --ws-max-frame",
                     (struct rc_str){NULL, 0});
            abuse(c);
            continue;
        }
        if (r.ev == RC_WS_EV_MESSAGE) {
            handle_client(c, r.op, r.data, r.len);
            continue;
        }
        /* control */
        if (r.op == RC_WS_OP_PING) {
            uint8_t h[10];
            size_t hl = rc_ws_frame_header(h, RC_WS_OP_PONG, true, r.len);
            if (c->state == ST_OPEN && rc_buf_append(&c->ctl, h, hl) == 0 &&
                rc_buf_append(&c->ctl, r.data, r.len) == 0)
                start_write(c);
        } else if (r.op == RC_WS_OP_CLOSE) {
            c->peer_closed = true;
            c->peer_code = r.close_code;
            if (c->state == ST_OPEN || c->state == ST_HANDSHAKE) {
                rc_metric_add(&e->m.closes_normal, 1);
                /* Echo the peer's code (RFC 6455 5.5.1); 1005 is not sendable. */
                uint16_t code = r.close_code;
                if (code == RC_WS_CLOSE_NO_STATUS || code == RC_WS_CLOSE_ABNORMAL || code < 1000)
                    code = RC_WS_CLOSE_NORMAL;
                begin_close(c, code, "", false);
            } else if (c->close_written && !tx_busy(c)) {
                conn_done(c);
            }
            break;
        }
        /* pong: nothing */
    }
    start_read(c);
}

static void on_frame(struct rc_edge_conn *c, struct rc_sub_frame *f)
{
    struct rc_edge *e = c->edge;
    if (c->state != ST_OPEN) {
        rc_metric_add(&e->m.events_dropped, 1);
        return; /* the runtime frees f */
    }
    if (!sub_active(c, f->sub_id) && c->n_wide == 0) {
        return; /* unsubscribed meanwhile */
    }
    live_note(c, f);
    /* The bound is on the backlog: a message always fits an empty queue. */
    uint64_t max = cfg_of(c)->ws_queue_max;
    if (max > 0 && c->q_len > 0 && c->q_bytes + f->blob->len > max) {
        RC_LOG_RATELIMITED(RC_LOG_WARN, "edge", NULL, NULL,
                           "conn %llu: slow consumer: %u messages, %llu bytes queued "
                           "(--ws-queue-max %llu); closing with 4008",
                           (unsigned long long)c->id, c->q_len, (unsigned long long)c->q_bytes,
                           (unsigned long long)max);
        rc_metric_add(&e->m.closes_slow, 1);
        /* Drop the backlog, queue a final err, then close: the err goes out
         * before the close frame when the socket takes it. */
        queue_drop_all(c);
        struct rc_buf b;
        rc_buf_init(&b);
        if (rc_proto_encode_err(&b, RC_PROTO_SLOW_CONSUMER,
                                "output queue over --ws-queue-max; resume with since",
                                (struct rc_str){NULL, 0}) == 0) {
            struct rc_blob *blob = rc_blob_copy(b.data, b.len);
            if (blob != NULL && queue_push(c, NULL, blob, 0) != 0)
                rc_blob_release(blob);
        }
        rc_buf_fini(&b);
        begin_close(c, RC_WS_CLOSE_SLOW, "slow consumer", true);
        return;
    }
    rc_msg_keep(&f->hdr);
    if (queue_push(c, &f->hdr, f->blob, f->recv_ns) != 0) {
        rc_msg_free(&f->hdr);
        begin_close(c, RC_WS_CLOSE_INTERNAL, "out of memory", false);
        return;
    }
    /*
     * Alone in the mailbox: write at once (an idle connection gets each
     * event immediately).  Other messages waiting (under load, frames of
     * this turn): leave the write to a FLUSH at the end of the mailbox, so
     * everything this turn queues goes out as one frame and one syscall.
     * (The mailbox count includes the message being handled and the
     * others of this turn.)
     */
    if (rc_actor_mailbox_len(c->self) <= 1) {
        start_write(c);
    } else if (!c->flush_pending) {
        struct rc_msg *fm = rc_msg_new(sizeof(*fm), CONN_MSG_FLUSH);
        if (fm != NULL && rc_actor_send(c->self, fm) == 0) {
            c->flush_pending = true;
        } else {
            rc_msg_free(fm);
            start_write(c);
        }
    }
}

static void on_timer(struct rc_edge_conn *c, struct rc_msg_timer *t)
{
    if (!rc_timer_msg_current(t))
        return;
    if (t->arg == TIMER_LINGER) {
        conn_done(c);
        return;
    }
    if (t->arg == TIMER_HB && c->state == ST_OPEN) {
        uint64_t now = rc_clock_mono_ms();
        if (!tx_busy(c) && c->q_len == 0)
            conn_trim(c);
        if (!tx_busy(c) && c->q_len == 0 && now - c->last_tx_ms + 5 >= c->hb_ms) {
            struct rc_buf b;
            rc_buf_init(&b);
            if (rc_proto_encode_hb(&b, rc_clock_wall_ms()) == 0) {
                push_own(c, &b);
                rc_metric_add(&c->edge->m.hb_sent, 1);
            }
            rc_buf_fini(&b);
        }
        rc_timer_arm(c->edge->sys, &c->hb_timer, c->hb_ms);
    }
}

static void conn_behaviour(struct rc_actor *self, void *state, struct rc_msg *msg)
{
    struct rc_edge_conn *c = state;
    (void)self;
    switch (msg->type) {
    case RC_MSG_SUB_FRAME:
        on_frame(c, (struct rc_sub_frame *)msg);
        break;
    case CONN_MSG_TX:
        on_tx(c, (struct io_msg *)msg);
        break;
    case CONN_MSG_RX:
        on_rx(c, (struct io_msg *)msg);
        break;
    case CONN_MSG_START:
        on_start(c);
        break;
    case CONN_MSG_FLUSH:
        c->flush_pending = false;
        start_write(c);
        break;
    case CONN_MSG_SHUTDOWN:
        if (c->state == ST_OPEN) {
            rc_metric_add(&c->edge->m.closes_shutdown, 1);
            begin_close(c, RC_WS_CLOSE_GOING_AWAY, "broker shutting down", true);
        }
        break;
    case RC_MSG_TIMER:
        on_timer(c, (struct rc_msg_timer *)msg);
        break;
    default:
        break;
    }
}

static void log_close(struct rc_edge_conn *c, int reason)
{
    uint16_t code = c->close_code;
    bool error = code == RC_WS_CLOSE_ABNORMAL ||
                 (code != RC_WS_CLOSE_NORMAL && code != RC_WS_CLOSE_GOING_AWAY && code != 0);
    if (c->peer_closed && c->peer_code != 0)
        error = c->peer_code != RC_WS_CLOSE_NORMAL && c->peer_code != RC_WS_CLOSE_GOING_AWAY &&
                c->peer_code != RC_WS_CLOSE_NO_STATUS;
    if (reason != 0)
        error = true;
    if (!error) {
        rc_log(RC_LOG_DEBUG, "edge", NULL, NULL, "conn %llu closed (%u), %u subscriptions",
               (unsigned long long)c->id, (unsigned)(c->peer_closed ? c->peer_code : code),
               c->n_subs);
        return;
    }
    if (!rc_log_enabled(RC_LOG_WARN))
        return;
    char runs[256];
    size_t o = 0;
    runs[0] = '\0';
    uint32_t shown = 0;
    for (uint32_t i = 0; i < c->cap_live && shown < 4 && o < sizeof(runs) - 64; i++) {
        const struct rc_blob *r = c->live[i].run;
        if (r == NULL)
            continue;
        int n = snprintf(runs + o, sizeof(runs) - o, "%s%.*s@%llu", shown ? ", " : " (",
                         (int)(r->len > 40 ? 40 : r->len), (const char *)r->data,
                         (unsigned long long)c->live[i].seq);
        if (n > 0)
            o += (size_t)n;
        shown++;
    }
    if (c->n_live > 0)
        snprintf(runs + o, sizeof(runs) - o, "%s)", c->n_live > 4 ? ", ..." : "");
    char what[96];
    if (code == RC_WS_CLOSE_ABNORMAL)
        snprintf(what, sizeof(what), "dropped without a close frame (1006)");
    else if (c->peer_closed)
        snprintf(what, sizeof(what), "closed by the client with code %u", (unsigned)c->peer_code);
    else if (code != 0)
        snprintf(what, sizeof(what), "closed with code %u (%s)", (unsigned)code,
                 c->close_reason ? c->close_reason : "");
    else
        snprintf(what, sizeof(what), "cut (%s)", rc_error_message(reason));
    RC_LOG_RATELIMITED(RC_LOG_WARN, "edge", NULL, NULL,
                       "conn %llu %s: %u subscribed runs still running%s; they can resume "
                       "from their last seq with since",
                       (unsigned long long)c->id, what, c->n_live, runs);
}

static void conn_fini(void *state, int reason)
{
    struct rc_edge_conn *c = state;
    struct rc_edge *e = c->edge;
    rc_timer_cancel(e->sys, &c->hb_timer);
    rc_timer_cancel(e->sys, &c->linger_timer);
    if (e->runs != NULL && c->n_subs > 0)
        rc_runs_unsubscribe_all(e->runs, c->self);
    if (c->state != ST_HANDSHAKE || c->close_written)
        log_close(c, reason);
    if (c->close_code == RC_WS_CLOSE_ABNORMAL)
        rc_metric_add(&e->m.closes_dropped, 1);

    /* Closing the connection aborts our pending reads and writes; their
     * callbacks then fail to send to this (stopped) actor.  aio_stop waits
     * for callbacks still running. */
    if (c->conn != NULL)
        nng_stream_close(c->conn);
    nng_aio_stop(c->rxaio);
    nng_aio_stop(c->txaio);
    if (c->slowaio != NULL)
        nng_aio_stop(c->slowaio);
    rc_edge_io_acquire(&c->rx_sync); /* the callbacks' last writes */
    rc_edge_io_acquire(&c->tx_sync);
    nng_aio_free(c->rxaio);
    nng_aio_free(c->txaio);
    if (c->slowaio != NULL)
        nng_aio_free(c->slowaio);
    nng_stream_free(c->conn);

    for (uint32_t i = 0; i < c->fl_n; i++)
        item_release(&c->fl[i]);
    queue_drop_all(c);
    rc_free(c->q);
    rc_free(c->fl);
    for (uint32_t i = 0; i < c->n_subs; i++)
        rc_free(c->subs[i].target);
    rc_metric_sub(&e->m.subs, c->n_subs);
    rc_free(c->subs);
    for (uint32_t i = 0; i < c->cap_live; i++)
        rc_blob_release(c->live[i].run);
    rc_free(c->live);
    rc_buf_fini(&c->wbuf);
    rc_buf_fini(&c->ctl);
    rc_buf_fini(&c->jtmp);
    rc_ws_parser_fini(&c->parser);

    struct rc_actor *self = c->self;
    rc_edge_conn_unregister(e, c);
    rc_free(c);
    rc_actor_release(self);
}

int rc_edge_conn_spawn(struct rc_edge *e, nng_stream *conn, const char *accept_key, bool json,
                       bool full, const void *early, size_t early_len)
{
    struct rc_edge_conn *c = rc_calloc(1, sizeof(*c));
    if (c == NULL) {
        nng_stream_close(conn);
        nng_stream_free(conn);
        return RC_ENOMEM;
    }
    c->edge = e;
    c->conn = conn;
    c->json = json;
    c->full = full;
    c->state = ST_HANDSHAKE;
    c->next_sub_id = 1;
    c->hb_ms = e->cfg->ws_heartbeat_ms;
    /* relaxed: a unique id for log lines, nothing is ordered by it */
    c->id = atomic_fetch_add_explicit(&conn_ids, 1, memory_order_relaxed);
    snprintf(c->accept, sizeof(c->accept), "%s", accept_key);
    rc_buf_init(&c->wbuf);
    rc_buf_init(&c->ctl);
    rc_buf_init(&c->jtmp);
    uint64_t maxf = e->cfg->ws_max_frame;
    rc_ws_parser_init(&c->parser, maxf > UINT32_MAX ? UINT32_MAX : (uint32_t)maxf);
    if (early_len > 0) {
        uint8_t *dst = rc_ws_parser_space(&c->parser, early_len);
        if (dst != NULL) {
            memcpy(dst, early, early_len);
            rc_ws_parser_commit(&c->parser, early_len);
        }
    }
    if (nng_aio_alloc(&c->rxaio, conn_rx_cb, c) != 0 || nng_aio_alloc(&c->txaio, NULL, NULL) != 0) {
        nng_aio_free(c->rxaio);
        nng_aio_free(c->txaio);
        rc_ws_parser_fini(&c->parser);
        rc_free(c);
        nng_stream_close(conn);
        nng_stream_free(conn);
        return RC_ENOMEM;
    }
    struct rc_msg *start = rc_msg_new(sizeof(struct rc_msg), CONN_MSG_START);
    struct rc_actor_opts opts = {.mailbox_limit = 0, .name = "ws-conn"};
    int rv = start == NULL ? RC_ENOMEM : 0;
    if (rv == 0)
        rv = rc_actor_spawn(e->sys, conn_behaviour, c, conn_fini, &opts, &c->self);
    if (rv != 0) {
        if (start != NULL)
            rc_msg_free(start);
        nng_aio_free(c->rxaio);
        nng_aio_free(c->txaio);
        rc_ws_parser_fini(&c->parser);
        rc_buf_fini(&c->wbuf);
        rc_buf_fini(&c->ctl);
        rc_buf_fini(&c->jtmp);
        rc_free(c);
        nng_stream_close(conn);
        nng_stream_free(conn);
        return rv;
    }
    rc_timer_init(&c->hb_timer, c->self, TIMER_HB);
    rc_timer_init(&c->linger_timer, c->self, TIMER_LINGER);
    rc_edge_conn_register(e, c);
    if (rc_actor_send(c->self, start) != 0) {
        rc_msg_free(start);
        rc_actor_stop(c->self, RC_ECLOSED);
    }
    return RC_OK;
}

struct rc_actor *rc_edge_conn_actor(struct rc_edge_conn *c)
{
    return c->self;
}

void rc_edge_conn_shutdown(struct rc_actor *a)
{
    struct rc_msg *m = rc_msg_new(sizeof(*m), CONN_MSG_SHUTDOWN);
    if (m == NULL) {
        rc_actor_stop(a, RC_ESHUTDOWN);
        return;
    }
    if (rc_actor_send(a, m) != 0)
        rc_msg_free(m);
}
