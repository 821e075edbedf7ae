/*
 * rcb_ws: WebSocket subscribers built on nng's ws stream dialer, and the raw
 * nng WebSocket baseline server.
 *
 * Subscribers: one nng_stream per connection, one receive aio each whose
 * callback (on nng's task threads: many connections, few threads) appends
 * to the connection's buffer, parses every whole msgpack value (nng 1.5.2's
 * ws stream may merge frames; msgpack delimits itself), and records
 * publish-to-receive latency into a histogram private to the calling thread
 * (no lock on the hot path; merged when asked).
 *
 * Baseline: our own nng ws stream listener that sends ev frames shaped like
 * the edge's, as fast as nng sends them, to the same kind of subscribers in
 * the same run: the ceiling nng's WebSocket gives the edge.
 */
#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcb.h"

#define RX_CHUNK    (256 * 1024)
#define RX_MAX_PEND (64u << 20) /* a partial value larger than this is garbage */
#define DIAL_PAR    64

/* One thread's histogram for one subscriber set (generation). */
struct tlh {
    struct rcb_hist h;
    struct tlh *next; /* protected by rcb_subs.mtx */
    uint64_t gen;
};

struct conn {
    struct rcb_subs *s;
    uint32_t idx;
    nng_stream *st; /* set by dial_cb before any other use */
    nng_aio *dial;
    nng_aio *rx;
    nng_aio *tx;
    uint8_t *buf; /* rx callback only (one receive in flight) */
    size_t len, cap;
    _Atomic bool up;
    _Atomic bool dead;
    uint8_t txb[512];
};

struct rcb_subs {
    char url[192];
    nng_stream_dialer *d;
    uint32_t n;
    struct conn *c;
    rcb_ev_cb cb;
    void *arg;
    _Atomic uint32_t next_dial; /* next connection to dial */
    /* counters: relaxed atomics, read for progress and totals only */
    _Atomic uint64_t connected, failed, closed, hellos, oks, errs, evs, bytes, terminals, synthetic,
        snaps, gaps;
    nng_mtx *mtx;         /* protects hists and last_err */
    struct tlh *hists;    /* every thread histogram ever made for this set */
    _Atomic uint64_t gen; /* current generation (acquire in record, release in reset) */
    char last_err[128];
};

static _Atomic uint64_t gen_counter = 1;
static __thread struct tlh *tl_h;

static struct rcb_hist *thread_hist(struct rcb_subs *s)
{
    uint64_t g = atomic_load_explicit(&s->gen, memory_order_acquire);
    if (tl_h != NULL && tl_h->gen == g)
        return &tl_h->h;
    struct tlh *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    rcb_hist_init(&t->h);
    t->gen = g;
    nng_mtx_lock(s->mtx);
    t->next = s->hists;
    s->hists = t;
    nng_mtx_unlock(s->mtx);
    tl_h = t;
    return &t->h;
}

struct pctx {
    struct conn *c;
    uint64_t now;
};

static void on_msg(void *arg, const struct rcb_msg *m)
{
    struct pctx *p = arg;
    struct rcb_subs *s = p->c->s;
    switch (m->op) {
    case 'e':
        atomic_fetch_add_explicit(&s->evs, 1, memory_order_relaxed);
        if (m->type_len == 8 && memcmp(m->type, "complete", 8) == 0)
            atomic_fetch_add_explicit(&s->terminals, 1, memory_order_relaxed);
        else if (m->type_len == 5 && memcmp(m->type, "error", 5) == 0)
            atomic_fetch_add_explicit(&s->terminals, 1, memory_order_relaxed);
        if (m->synthetic)
            atomic_fetch_add_explicit(&s->synthetic, 1, memory_order_relaxed);
        if (m->has_t && m->t_ns > 0 && m->t_ns <= p->now) {
            struct rcb_hist *h = thread_hist(s);
            if (h)
                rcb_hist_record(h, p->now - m->t_ns);
        }
        if (s->cb)
            s->cb(s->arg, p->c->idx, m, p->now);
        break;
    case 'h':
        atomic_fetch_add_explicit(&s->hellos, 1, memory_order_relaxed);
        break;
    case 'o':
        atomic_fetch_add_explicit(&s->oks, 1, memory_order_relaxed);
        break;
    case 'x':
        atomic_fetch_add_explicit(&s->errs, 1, memory_order_relaxed);
        nng_mtx_lock(s->mtx);
        snprintf(s->last_err, sizeof(s->last_err), "%.*s", (int)m->msg_len, m->msg ? m->msg : "");
        nng_mtx_unlock(s->mtx);
        break;
    case 's':
        atomic_fetch_add_explicit(&s->snaps, 1, memory_order_relaxed);
        break;
    case 'g':
        atomic_fetch_add_explicit(&s->gaps, 1, memory_order_relaxed);
        break;
    default:
        break;
    }
}

static void rx_arm(struct conn *c)
{
    if (c->cap - c->len < RX_CHUNK / 2) {
        size_t nc = c->cap ? c->cap * 2 : RX_CHUNK;
        uint8_t *nb = realloc(c->buf, nc);
        if (nb == NULL) {
            atomic_store_explicit(&c->dead, true, memory_order_relaxed);
            return;
        }
        c->buf = nb;
        c->cap = nc;
    }
    nng_iov iov = {.iov_buf = c->buf + c->len, .iov_len = c->cap - c->len};
    nng_aio_set_iov(c->rx, 1, &iov);
    nng_stream_recv(c->st, c->rx);
}

static void rx_cb(void *arg)
{
    struct conn *c = arg;
    struct rcb_subs *s = c->s;
    int rv = nng_aio_result(c->rx);
    if (rv != 0) {
        if (!atomic_exchange_explicit(&c->dead, true, memory_order_relaxed))
            atomic_fetch_add_explicit(&s->closed, 1, memory_order_relaxed);
        return;
    }
    size_t n = nng_aio_count(c->rx);
    atomic_fetch_add_explicit(&s->bytes, n, memory_order_relaxed);
    c->len += n;
    struct pctx p = {c, rcb_now_ns()};
    long used = rcb_parse_msgs(c->buf, c->len, on_msg, &p);
    if (used < 0 || (used == 0 && c->len > RX_MAX_PEND)) {
        nng_mtx_lock(s->mtx);
        snprintf(s->last_err, sizeof(s->last_err), "conn %u: undecodable bytes", c->idx);
        nng_mtx_unlock(s->mtx);
        atomic_store_explicit(&c->dead, true, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->closed, 1, memory_order_relaxed);
        nng_stream_close(c->st);
        return;
    }
    if (used > 0) {
        memmove(c->buf, c->buf + used, c->len - (size_t)used);
        c->len -= (size_t)used;
    }
    /* shrink a buffer that grew for one big frame */
    if (c->len == 0 && c->cap > 4 * RX_CHUNK) {
        free(c->buf);
        c->buf = NULL;
        c->cap = 0;
    }
    rx_arm(c);
}

static void dial_next(struct rcb_subs *s);

static void dial_cb(void *arg)
{
    struct conn *c = arg;
    struct rcb_subs *s = c->s;
    int rv = nng_aio_result(c->dial);
    if (rv != 0) {
        atomic_store_explicit(&c->dead, true, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->failed, 1, memory_order_relaxed);
        nng_mtx_lock(s->mtx);
        snprintf(s->last_err, sizeof(s->last_err), "dial %.80s: %.40s", s->url, nng_strerror(rv));
        nng_mtx_unlock(s->mtx);
    } else {
        c->st = nng_aio_get_output(c->dial, 0);
        atomic_store_explicit(&c->up, true, memory_order_release);
        atomic_fetch_add_explicit(&s->connected, 1, memory_order_relaxed);
        rx_arm(c);
    }
    dial_next(s);
}

static void dial_next(struct rcb_subs *s)
{
    uint32_t i = atomic_fetch_add_explicit(&s->next_dial, 1, memory_order_relaxed);
    if (i >= s->n)
        return;
    nng_stream_dialer_dial(s->d, s->c[i].dial);
}

struct rcb_subs *rcb_subs_new(const char *url, uint32_t n, rcb_ev_cb cb, void *arg)
{
    struct rcb_subs *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    snprintf(s->url, sizeof(s->url), "%s", url);
    s->n = n;
    s->cb = cb;
    s->arg = arg;
    atomic_store(&s->gen, atomic_fetch_add(&gen_counter, 1));
    if (nng_mtx_alloc(&s->mtx) != 0 || nng_stream_dialer_alloc(&s->d, url) != 0) {
        rcb_log("ws dialer for %s failed", url);
        if (s->mtx)
            nng_mtx_free(s->mtx);
        free(s);
        return NULL;
    }
    nng_stream_dialer_set_size(s->d, NNG_OPT_RECVMAXSZ, 64u << 20);
    nng_stream_dialer_set_size(s->d, NNG_OPT_WS_RECVMAXFRAME, 64u << 20);
    s->c = calloc(n ? n : 1, sizeof(*s->c));
    for (uint32_t i = 0; i < n; i++) {
        struct conn *c = &s->c[i];
        c->s = s;
        c->idx = i;
        if (nng_aio_alloc(&c->dial, dial_cb, c) != 0 || nng_aio_alloc(&c->rx, rx_cb, c) != 0 ||
            nng_aio_alloc(&c->tx, NULL, NULL) != 0) {
            s->n = i;
            break;
        }
        nng_aio_set_timeout(c->dial, 10000);
        nng_aio_set_timeout(c->tx, 5000);
    }
    uint32_t par = s->n < DIAL_PAR ? s->n : DIAL_PAR;
    for (uint32_t i = 0; i < par; i++)
        dial_next(s);
    return s;
}

int rcb_subs_wait_connected(struct rcb_subs *s, uint32_t timeout_ms)
{
    uint64_t deadline = rcb_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        uint64_t done = atomic_load(&s->connected) + atomic_load(&s->failed);
        if (done >= s->n)
            break;
        if (rcb_now_ns() > deadline || rcb_expired())
            return -1;
        rcb_sleep_ns(5000000);
    }
    return atomic_load(&s->failed) == 0 ? 0 : -1;
}

int rcb_subs_sub(struct rcb_subs *s, uint32_t i, const char *run, bool all)
{
    if (i >= s->n)
        return -1;
    struct conn *c = &s->c[i];
    if (!atomic_load_explicit(&c->up, memory_order_acquire) ||
        atomic_load_explicit(&c->dead, memory_order_relaxed))
        return -1;
    struct rc_buf b;
    rc_buf_init(&b);
    rcb_sub_encode(&b, run, all);
    if (b.len > sizeof(c->txb)) {
        rc_buf_fini(&b);
        return -1;
    }
    memcpy(c->txb, b.data, b.len);
    nng_iov iov = {.iov_buf = c->txb, .iov_len = b.len};
    rc_buf_fini(&b);
    nng_aio_set_iov(c->tx, 1, &iov);
    nng_stream_send(c->st, c->tx);
    nng_aio_wait(c->tx);
    return nng_aio_result(c->tx) == 0 ? 0 : -1;
}

int rcb_subs_wait_oks(struct rcb_subs *s, uint64_t oks, uint32_t timeout_ms)
{
    uint64_t deadline = rcb_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (atomic_load(&s->oks) < oks) {
        if (rcb_now_ns() > deadline || rcb_expired())
            return -1;
        rcb_sleep_ns(2000000);
    }
    return 0;
}

void rcb_subs_stats(struct rcb_subs *s, struct rcb_subs_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->connected = atomic_load(&s->connected);
    st->failed = atomic_load(&s->failed);
    st->closed = atomic_load(&s->closed);
    st->hellos = atomic_load(&s->hellos);
    st->oks = atomic_load(&s->oks);
    st->errs = atomic_load(&s->errs);
    st->evs = atomic_load(&s->evs);
    st->frames_bytes = atomic_load(&s->bytes);
    st->terminals = atomic_load(&s->terminals);
    st->synthetic = atomic_load(&s->synthetic);
    st->snaps = atomic_load(&s->snaps);
    st->gaps = atomic_load(&s->gaps);
    nng_mtx_lock(s->mtx);
    memcpy(st->last_err, s->last_err, sizeof(st->last_err));
    nng_mtx_unlock(s->mtx);
}

void rcb_subs_hist(struct rcb_subs *s, struct rcb_hist *out)
{
    rcb_hist_init(out);
    uint64_t g = atomic_load_explicit(&s->gen, memory_order_acquire);
    nng_mtx_lock(s->mtx);
    for (struct tlh *t = s->hists; t; t = t->next)
        if (t->gen == g)
            rcb_hist_merge(out, &t->h);
    nng_mtx_unlock(s->mtx);
}

void rcb_subs_hist_reset(struct rcb_subs *s)
{
    /* new generation: threads start fresh histograms; the old ones stay
     * allocated (a callback may still be finishing a record into one) */
    atomic_store_explicit(&s->gen, atomic_fetch_add(&gen_counter, 1), memory_order_release);
}

void rcb_subs_free(struct rcb_subs *s)
{
    if (s == NULL)
        return;
    for (uint32_t i = 0; i < s->n; i++) {
        struct conn *c = &s->c[i];
        nng_aio_stop(c->dial);
        if (c->st)
            nng_stream_close(c->st);
    }
    for (uint32_t i = 0; i < s->n; i++) {
        struct conn *c = &s->c[i];
        nng_aio_stop(c->rx);
        nng_aio_stop(c->tx);
    }
    nng_stream_dialer_close(s->d);
    for (uint32_t i = 0; i < s->n; i++) {
        struct conn *c = &s->c[i];
        if (c->st)
            nng_stream_free(c->st);
        nng_aio_free(c->dial);
        nng_aio_free(c->rx);
        nng_aio_free(c->tx);
        free(c->buf);
    }
    nng_stream_dialer_free(s->d);
    while (s->hists) {
        struct tlh *t = s->hists;
        s->hists = t->next;
        free(t);
    }
    /* a thread-local pointer may still name a freed histogram of this set;
     * its generation no longer matches any live set, so it is never used */
    nng_mtx_free(s->mtx);
    free(s->c);
    free(s);
}

/* ---- baseline server ---- */

struct bconn {
    struct rcb_wsbase *w;
    nng_stream *st;
    nng_aio *tx;
    uint64_t sent; /* tx callback only */
    uint64_t target;
    struct rc_buf fr; /* the frame being sent; tx callback only */
    struct bconn *next;
};

struct rcb_wsbase {
    nng_stream_listener *l;
    nng_aio *acc;
    nng_mtx *mtx;
    struct bconn *conns; /* protected by mtx */
    uint32_t size;
    uint32_t per_frame; /* ev maps per frame (an array when > 1) */
    _Atomic uint64_t sent;
    _Atomic bool stopping;
};

static void b_send(struct bconn *b)
{
    rc_buf_reset(&b->fr);
    uint64_t now = rcb_now_ns();
    uint32_t k = b->w->per_frame;
    if (k > 1)
        rcb_array_header(&b->fr, k);
    for (uint32_t i = 0; i < k; i++)
        rcb_ev_encode_server(&b->fr, "baseline", b->sent * k + i + 1, now, b->w->size);
    nng_iov iov = {.iov_buf = b->fr.data, .iov_len = b->fr.len};
    nng_aio_set_iov(b->tx, 1, &iov);
    nng_stream_send(b->st, b->tx);
}

static void b_tx_cb(void *arg)
{
    struct bconn *b = arg;
    if (nng_aio_result(b->tx) != 0)
        return;
    if (b->target == 0) /* the hello went out */
        return;
    b->sent++;
    atomic_fetch_add_explicit(&b->w->sent, 1, memory_order_relaxed);
    if (b->sent < b->target && !atomic_load_explicit(&b->w->stopping, memory_order_relaxed))
        b_send(b);
}

static void b_acc_cb(void *arg)
{
    struct rcb_wsbase *w = arg;
    if (nng_aio_result(w->acc) != 0)
        return;
    struct bconn *b = calloc(1, sizeof(*b));
    b->w = w;
    b->st = nng_aio_get_output(w->acc, 0);
    rc_buf_init(&b->fr);
    nng_aio_alloc(&b->tx, b_tx_cb, b);
    /* hello, like the edge */
    static const uint8_t hello[] = {0x81, 0xa2, 'o', 'p', 0xa5, 'h', 'e', 'l', 'l', 'o'};
    rc_buf_append(&b->fr, hello, sizeof(hello));
    nng_iov iov = {.iov_buf = b->fr.data, .iov_len = b->fr.len};
    nng_aio_set_iov(b->tx, 1, &iov);
    nng_stream_send(b->st, b->tx);
    nng_mtx_lock(w->mtx);
    b->next = w->conns;
    w->conns = b;
    nng_mtx_unlock(w->mtx);
    if (!atomic_load_explicit(&w->stopping, memory_order_relaxed))
        nng_stream_listener_accept(w->l, w->acc);
}

struct rcb_wsbase *rcb_wsbase_new(int port, uint32_t size, uint32_t per_frame)
{
    struct rcb_wsbase *w = calloc(1, sizeof(*w));
    w->per_frame = per_frame ? per_frame : 1;
    char url[96];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d/ws", port);
    w->size = size;
    if (nng_mtx_alloc(&w->mtx) != 0 || nng_stream_listener_alloc(&w->l, url) != 0 ||
        nng_aio_alloc(&w->acc, b_acc_cb, w) != 0) {
        free(w);
        return NULL;
    }
    if (nng_stream_listener_listen(w->l) != 0) {
        nng_stream_listener_free(w->l);
        nng_aio_free(w->acc);
        nng_mtx_free(w->mtx);
        free(w);
        return NULL;
    }
    nng_stream_listener_accept(w->l, w->acc);
    return w;
}

int rcb_wsbase_go(struct rcb_wsbase *w, uint64_t per_conn, double rate_per_conn)
{
    (void)rate_per_conn;
    nng_mtx_lock(w->mtx);
    struct bconn *list = w->conns;
    nng_mtx_unlock(w->mtx);
    int n = 0;
    for (struct bconn *b = list; b; b = b->next) {
        nng_aio_wait(b->tx); /* the hello */
        b->target = per_conn;
        b_send(b);
        n++;
    }
    return n;
}

uint64_t rcb_wsbase_sent(struct rcb_wsbase *w)
{
    return atomic_load(&w->sent);
}

void rcb_wsbase_free(struct rcb_wsbase *w)
{
    if (w == NULL)
        return;
    atomic_store(&w->stopping, true);
    nng_stream_listener_close(w->l);
    nng_aio_stop(w->acc);
    nng_mtx_lock(w->mtx);
    struct bconn *list = w->conns;
    w->conns = NULL;
    nng_mtx_unlock(w->mtx);
    for (struct bconn *b = list; b; b = b->next)
        nng_stream_close(b->st);
    while (list) {
        struct bconn *b = list;
        list = b->next;
        nng_aio_stop(b->tx);
        nng_stream_free(b->st);
        nng_aio_free(b->tx);
        rc_buf_fini(&b->fr);
        free(b);
    }
    nng_stream_listener_free(w->l);
    nng_aio_free(w->acc);
    nng_mtx_free(w->mtx);
    free(w);
}
