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
#include <pthread.h>
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
    pthread_mutex_t mtx; /* protects h: taken by its thread per record (uncontended)
                            and by rcb_subs_hist to merge while receivers still run */
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
    struct rcb_ep *ep; /* epoll client (--ws-client epoll), else NULL */
};

static _Atomic uint64_t gen_counter = 1;
/* The calling thread's histogram and its generation.  The generation is
 * kept apart so a stale pointer (its set freed) is never dereferenced:
 * generations are unique across sets, so a match means a live set. */
static __thread struct tlh *tl_h;
static __thread uint64_t tl_gen;

static struct tlh *thread_hist(struct rcb_subs *s)
{
    uint64_t g = atomic_load_explicit(&s->gen, memory_order_acquire);
    if (tl_h != NULL && tl_gen == g)
        return tl_h;
    struct tlh *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    rcb_hist_init(&t->h);
    pthread_mutex_init(&t->mtx, NULL);
    t->gen = g;
    nng_mtx_lock(s->mtx);
    t->next = s->hists;
    s->hists = t;
    nng_mtx_unlock(s->mtx);
    tl_h = t;
    tl_gen = g;
    return t;
}

struct pctx {
    struct rcb_subs *s;
    uint32_t idx;
    uint64_t now;
};

static void on_msg(void *arg, const struct rcb_msg *m)
{
    struct pctx *p = arg;
    struct rcb_subs *s = p->s;
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
            struct tlh *t = thread_hist(s);
            if (t) {
                pthread_mutex_lock(&t->mtx);
                rcb_hist_record(&t->h, p->now - m->t_ns);
                pthread_mutex_unlock(&t->mtx);
            }
        }
        if (s->cb)
            s->cb(s->arg, p->idx, m, p->now);
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
    struct pctx p = {s, c->idx, rcb_now_ns()};
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

static struct rcb_ep *ep_new(struct rcb_subs *s);
static int ep_sub(struct rcb_subs *s, uint32_t i, const uint8_t *p, size_t n);
static void ep_free(struct rcb_ep *e);

struct rcb_subs *rcb_subs_new(const char *url, uint32_t n, rcb_ev_cb cb, void *arg)
{
    if (rcb_o.ws_client && strcmp(rcb_o.ws_client, "epoll") == 0) {
        struct rcb_subs *s = calloc(1, sizeof(*s));
        snprintf(s->url, sizeof(s->url), "%s", url);
        s->n = n;
        s->cb = cb;
        s->arg = arg;
        atomic_store(&s->gen, atomic_fetch_add(&gen_counter, 1));
        nng_mtx_alloc(&s->mtx);
        s->ep = ep_new(s);
        if (s->ep == NULL) {
            nng_mtx_free(s->mtx);
            free(s);
            return NULL;
        }
        return s;
    }
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
    if (s->ep != NULL) {
        struct rc_buf eb;
        rc_buf_init(&eb);
        rcb_sub_encode(&eb, run, all);
        int rv = ep_sub(s, i, eb.data, eb.len);
        rc_buf_fini(&eb);
        return rv;
    }
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
        if (t->gen == g) {
            pthread_mutex_lock(&t->mtx);
            rcb_hist_merge(out, &t->h);
            pthread_mutex_unlock(&t->mtx);
        }
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
    if (s->ep != NULL) {
        ep_free(s->ep);
        while (s->hists) {
            struct tlh *t = s->hists;
            s->hists = t->next;
            free(t);
        }
        nng_mtx_free(s->mtx);
        free(s);
        return;
    }
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
        pthread_mutex_destroy(&t->mtx);
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
    int port; /* the bound port */
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

struct rcb_wsbase *rcb_wsbase_new(uint32_t size, uint32_t per_frame)
{
    struct rcb_wsbase *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->per_frame = per_frame ? per_frame : 1;
    /* port 0, the bound port read back: a port found free and closed
     * first could be taken by another connection before the listen */
    const char *url = "ws://127.0.0.1:0/ws";
    w->size = size;
    if (nng_mtx_alloc(&w->mtx) != 0 || nng_stream_listener_alloc(&w->l, url) != 0 ||
        nng_aio_alloc(&w->acc, b_acc_cb, w) != 0) {
        free(w);
        return NULL;
    }
    if (nng_stream_listener_listen(w->l) != 0 ||
        nng_stream_listener_get_int(w->l, NNG_OPT_TCP_BOUND_PORT, &w->port) != 0) {
        nng_stream_listener_free(w->l);
        nng_aio_free(w->acc);
        nng_mtx_free(w->mtx);
        free(w);
        return NULL;
    }
    nng_stream_listener_accept(w->l, w->acc);
    return w;
}

int rcb_wsbase_port(const struct rcb_wsbase *w)
{
    return w->port;
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

/* ---- epoll subscribers (--ws-client epoll) ----
 *
 * The same subscribers without nng: plain sockets, a hand-written HTTP
 * Upgrade, and RFC 6455 server frames parsed by hand, driven by a few epoll
 * threads.  One read() takes every frame that has arrived, so the cost per
 * delivery is a few memcpy's: this measures the edge rather than the
 * client when nng's per-frame receive path becomes the limit.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define EP_THREADS 2

struct epc {
    int fd;
    uint32_t idx;
    int state;    /* 0 connecting, 1 upgrading, 2 open, 3 dead */
    uint8_t *raw; /* bytes read, not yet parsed as frames */
    size_t rlen, rcap;
    uint8_t *app; /* frame payloads, not yet parsed as msgpack */
    size_t alen, acap;
    nng_mtx *wmtx; /* serialises writes (sub frames from main, pongs from the loop) */
};

struct rcb_ep {
    struct rcb_subs *s;
    struct epc *c;
    int epfd[EP_THREADS];
    pthread_t th[EP_THREADS];
    _Atomic bool stop;
    char host[64];
    int port;
    char path[128];
};

static bool grow(uint8_t **b, size_t *cap, size_t need)
{
    if (need <= *cap)
        return true;
    size_t nc = *cap ? *cap : 65536;
    while (nc < need)
        nc *= 2;
    uint8_t *nb = realloc(*b, nc);
    if (nb == NULL)
        return false;
    *b = nb;
    *cap = nc;
    return true;
}

static void ep_dead(struct rcb_ep *e, struct epc *c, const char *why)
{
    if (c->state == 3)
        return;
    bool was_open = c->state == 2;
    c->state = 3;
    epoll_ctl(e->epfd[c->idx % EP_THREADS], EPOLL_CTL_DEL, c->fd, NULL);
    if (was_open)
        atomic_fetch_add_explicit(&e->s->closed, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&e->s->failed, 1, memory_order_relaxed);
    nng_mtx_lock(e->s->mtx);
    snprintf(e->s->last_err, sizeof(e->s->last_err), "conn %u: %s", c->idx, why);
    nng_mtx_unlock(e->s->mtx);
}

static int ep_write(struct epc *c, uint8_t op, const uint8_t *p, size_t n)
{
    uint8_t f[14 + 512];
    if (n > 512)
        return -1;
    size_t h = 0;
    f[h++] = (uint8_t)(0x80 | op);
    if (n < 126) {
        f[h++] = (uint8_t)(0x80 | n);
    } else {
        f[h++] = 0x80 | 126;
        f[h++] = (uint8_t)(n >> 8);
        f[h++] = (uint8_t)n;
    }
    static const uint8_t key[4] = {0x5a, 0x17, 0xc3, 0x2e};
    memcpy(f + h, key, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        f[h + i] = p[i] ^ key[i & 3];
    nng_mtx_lock(c->wmtx);
    ssize_t w = write(c->fd, f, h + n);
    nng_mtx_unlock(c->wmtx);
    return w == (ssize_t)(h + n) ? 0 : -1;
}

/* Parses whole frames out of c->raw; payloads of data frames go to c->app. */
static void ep_frames(struct rcb_ep *e, struct epc *c)
{
    size_t off = 0;
    while (c->rlen - off >= 2) {
        const uint8_t *p = c->raw + off;
        uint8_t op = p[0] & 0x0f;
        bool masked = p[1] & 0x80;
        uint64_t len = p[1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            if (c->rlen - off < 4)
                break;
            len = ((uint64_t)p[2] << 8) | p[3];
            h = 4;
        } else if (len == 127) {
            if (c->rlen - off < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | p[2 + i];
            h = 10;
        }
        if (masked)
            h += 4; /* servers do not mask; tolerate it anyway */
        if (c->rlen - off < h + len)
            break;
        const uint8_t *pl = p + h;
        if (op == 0x8) {
            ep_dead(e, c, "close frame from the server");
            return;
        } else if (op == 0x9) {
            ep_write(c, 0xA, pl, len > 125 ? 125 : (size_t)len);
        } else if (op <= 0x2) {
            if (!grow(&c->app, &c->acap, c->alen + len)) {
                ep_dead(e, c, "out of memory");
                return;
            }
            memcpy(c->app + c->alen, pl, len);
            if (masked)
                for (uint64_t i = 0; i < len; i++)
                    c->app[c->alen + i] ^= p[h - 4 + (i & 3)];
            c->alen += len;
        }
        off += h + len;
    }
    if (off > 0) {
        memmove(c->raw, c->raw + off, c->rlen - off);
        c->rlen -= off;
    }
    if (c->alen > 0) {
        struct pctx px = {e->s, c->idx, rcb_now_ns()};
        long used = rcb_parse_msgs(c->app, c->alen, on_msg, &px);
        if (used < 0) {
            ep_dead(e, c, "undecodable msgpack");
            return;
        }
        if (used > 0) {
            memmove(c->app, c->app + used, c->alen - (size_t)used);
            c->alen -= (size_t)used;
        }
    }
}

static void ep_readable(struct rcb_ep *e, struct epc *c)
{
    for (;;) {
        if (!grow(&c->raw, &c->rcap, c->rlen + 65536)) {
            ep_dead(e, c, "out of memory");
            return;
        }
        ssize_t r = read(c->fd, c->raw + c->rlen, c->rcap - c->rlen);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                ep_dead(e, c, strerror(errno));
            return;
        }
        if (r == 0) {
            ep_dead(e, c, "connection closed by the server");
            return;
        }
        atomic_fetch_add_explicit(&e->s->bytes, (uint64_t)r, memory_order_relaxed);
        c->rlen += (size_t)r;
        if (c->state == 1) {
            uint8_t *hend = memmem(c->raw, c->rlen, "\r\n\r\n", 4);
            if (hend == NULL)
                continue;
            if (c->rlen < 12 || memcmp(c->raw, "HTTP/1.1 101", 12) != 0) {
                ep_dead(e, c, "upgrade refused");
                return;
            }
            size_t hl = (size_t)(hend + 4 - c->raw);
            memmove(c->raw, c->raw + hl, c->rlen - hl);
            c->rlen -= hl;
            c->state = 2;
            atomic_fetch_add_explicit(&e->s->connected, 1, memory_order_relaxed);
        }
        if (c->state == 2)
            ep_frames(e, c);
        if (c->state == 3)
            return;
        if ((size_t)r < 65536)
            return; /* drained for now (level-triggered epoll calls again) */
    }
}

static void *ep_loop(void *arg)
{
    struct rcb_ep *e = ((void **)arg)[0];
    int k = (int)(intptr_t)((void **)arg)[1];
    free(arg);
    struct epoll_event evs[256];
    char req[512];
    int reqlen = snprintf(req, sizeof(req),
                          "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n",
                          e->path, e->host, e->port);
    while (!atomic_load_explicit(&e->stop, memory_order_relaxed)) {
        int n = epoll_wait(e->epfd[k], evs, 256, 100);
        for (int i = 0; i < n; i++) {
            struct epc *c = &e->c[evs[i].data.u32];
            if (c->state == 3)
                continue;
            if (c->state == 0) {
                if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
                    ep_dead(e, c, "connect failed");
                    continue;
                }
                if (write(c->fd, req, (size_t)reqlen) != reqlen) {
                    ep_dead(e, c, "upgrade request not sent");
                    continue;
                }
                c->state = 1;
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = c->idx};
                epoll_ctl(e->epfd[k], EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                ep_readable(e, c);
        }
    }
    return NULL;
}

static struct rcb_ep *ep_new(struct rcb_subs *s)
{
    struct rcb_ep *e = calloc(1, sizeof(*e));
    e->s = s;
    /* ws://HOST:PORT/PATH */
    if (sscanf(s->url, "ws://%63[^:]:%d%127s", e->host, &e->port, e->path) != 3) {
        free(e);
        return NULL;
    }
    e->c = calloc(s->n ? s->n : 1, sizeof(*e->c));
    for (int k = 0; k < EP_THREADS; k++)
        e->epfd[k] = epoll_create1(EPOLL_CLOEXEC);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)e->port)};
    inet_pton(AF_INET, strcmp(e->host, "localhost") == 0 ? "127.0.0.1" : e->host, &dst.sin_addr);
    for (uint32_t i = 0; i < s->n; i++) {
        struct epc *c = &e->c[i];
        c->idx = i;
        nng_mtx_alloc(&c->wmtx);
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (c->fd < 0 ||
            (connect(c->fd, (struct sockaddr *)&dst, sizeof(dst)) != 0 && errno != EINPROGRESS)) {
            c->state = 3;
            atomic_fetch_add_explicit(&s->failed, 1, memory_order_relaxed);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = i};
        epoll_ctl(e->epfd[i % EP_THREADS], EPOLL_CTL_ADD, c->fd, &ev);
        /* pace the handshakes a little: the listen backlog is finite */
        if (i % 128 == 127)
            rcb_sleep_ns(5000000);
    }
    for (int k = 0; k < EP_THREADS; k++) {
        void **a = malloc(2 * sizeof(void *));
        a[0] = e;
        a[1] = (void *)(intptr_t)k;
        pthread_create(&e->th[k], NULL, ep_loop, a);
    }
    return e;
}

static int ep_sub(struct rcb_subs *s, uint32_t i, const uint8_t *p, size_t n)
{
    struct epc *c = &s->ep->c[i];
    if (c->state != 2)
        return -1;
    return ep_write(c, 0x2, p, n);
}

static void ep_free(struct rcb_ep *e)
{
    atomic_store(&e->stop, true);
    for (int k = 0; k < EP_THREADS; k++)
        pthread_join(e->th[k], NULL);
    static const uint8_t bye[2] = {0x03, 0xe8};
    for (uint32_t i = 0; i < e->s->n; i++) {
        struct epc *c = &e->c[i];
        if (c->state == 2)
            ep_write(c, 0x8, bye, 2);
        if (c->fd >= 0)
            close(c->fd);
        free(c->raw);
        free(c->app);
        if (c->wmtx)
            nng_mtx_free(c->wmtx);
    }
    for (int k = 0; k < EP_THREADS; k++)
        close(e->epfd[k]);
    free(e->c);
    free(e);
}
