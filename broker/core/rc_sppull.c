/*
 * rc_sppull: SP pipeline (PULL side) over nng byte streams (see rc_sppull.h).
 */
#include "rc_sppull.h"

#include <inttypes.h>
#include <nng/nng.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "rc_alloc.h"
#include "rc_clock.h"
#include "rc_error.h"
#include "rc_nngaddr.h"

/* A connection reads into a buffer sized to what its last read brought:
 * under load a read fills it and the next one is twice as large, up to
 * the maximum, so one read returns hundreds of single-event messages (the
 * whole point); a read that brings little makes the next buffer just
 * large enough, so that an idle connection holds a few KiB, not the
 * maximum.  256 KiB measured 17-24 % more batched events/s than 64 KiB,
 * 1 MiB no more than 256 KiB (docs/ARCHITECTURE.md). */
#define RC_SPPULL_BUF_MIN 4096u
#define RC_SPPULL_BUF_MAX 262144u
/* Complete frames shorter than this are copied out of the read buffer,
 * which then takes the next read; longer ones take the read buffer with
 * them (a fresh one is allocated).  A light load thus costs a small copy
 * per read, not a 64 KiB buffer held until the events are handled. */
#define RC_SPPULL_COPY_BELOW 16384u
#define RC_SP_PUSH           0x0050u
#define RC_SP_PULL           0x0051u
/* After a failed accept (out of descriptors, memory), before the next. */
#define RC_SPPULL_ACCEPT_BACKOFF_MS 10

struct sp_conn {
    struct rc_sppull *l;
    nng_stream *st;
    nng_aio *rx; /* the one read in flight */
    nng_aio *tx; /* our SP header */
    /* Hand-off marker for the thread sanitizer (and the memory model): nng
     * orders "start a read" before "its callback runs" with its own
     * uninstrumented locks, so every post does a release increment and
     * every callback starts with an acquire load.  The fields below are
     * the callback's (or, while parked, whoever holds l->mtx). */
    atomic_uint sync;
    uint8_t *buf;
    size_t cap, have;
    size_t size; /* the next buffer's size, from the last read (see RC_SPPULL_BUF_MAX) */
    size_t need; /* bytes the frame being read needs, header included; 0: unknown */
    uint64_t hs_deadline_ns;
    uint32_t id;
    uint32_t lane; /* hooks.opened's answer */
    bool hs_done;
    struct sp_conn *next;      /* live or dead list; protected by l->mtx */
    struct sp_conn *park_next; /* protected by l->mtx */
    bool parked;               /* protected by l->mtx */
    char peer[96];             /* written before the first read, then read only */
};

struct rc_sppull {
    struct rc_sppull_cfg cfg;
    struct rc_sppull_hooks hooks;
    nng_stream_listener *lst;
    nng_aio *acc;
    atomic_uint acc_sync; /* as sp_conn.sync, for the accept aio */
    bool acc_sleeping;    /* accept callback only: the aio is a back-off sleep */
    bool ipc;
    char *url;
    pthread_mutex_t mtx;
    bool closing;          /* protected by mtx */
    struct sp_conn *live;  /* protected by mtx */
    struct sp_conn *dead;  /* protected by mtx: ended by their callback, to free */
    struct sp_conn *parks; /* protected by mtx */
    unsigned n_live;       /* protected by mtx */
    unsigned n_parked;     /* protected by mtx */
};

/* relaxed: ids only need to be distinct */
static atomic_uint sp_next_id;

static void sync_publish(atomic_uint *s)
{
    /* release: pairs with sync_acquire in the callback of what is started */
    atomic_fetch_add_explicit(s, 1, memory_order_release);
}

static void sync_acquire(atomic_uint *s)
{
    /* acquire: pairs with sync_publish before the operation was started */
    (void)atomic_load_explicit(s, memory_order_acquire);
}

bool rc_sppull_supports(const char *url)
{
    return strncmp(url, "tcp://", 6) == 0 || strncmp(url, "tcp4://", 7) == 0 ||
           strncmp(url, "tcp6://", 7) == 0 || strncmp(url, "ipc://", 6) == 0;
}

/* ---- connections ---- */

static void conn_free(struct sp_conn *c)
{
    if (c->rx) {
        nng_aio_stop(c->rx);
        sync_acquire(&c->sync); /* the last callback's writes */
        nng_aio_free(c->rx);
    }
    if (c->tx) {
        nng_aio_stop(c->tx);
        nng_aio_free(c->tx);
    }
    if (c->st)
        nng_stream_free(c->st);
    rc_free(c->buf);
    rc_free(c);
}

/* Frees the connections their callbacks ended; not from a connection's
 * own callback (nng_aio_stop waits for it). */
static void reap_dead(struct rc_sppull *l)
{
    pthread_mutex_lock(&l->mtx);
    struct sp_conn *d = l->dead;
    l->dead = NULL;
    pthread_mutex_unlock(&l->mtx);
    while (d) {
        struct sp_conn *next = d->next;
        conn_free(d);
        d = next;
    }
}

static void list_remove(struct sp_conn **head, struct sp_conn *c)
{
    for (struct sp_conn **p = head; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            c->next = NULL;
            return;
        }
}

/*
 * Ends c from its own callback: why is NULL for an orderly end (the peer
 * closed), else it is reported.  The connection goes to the dead list (the
 * accept callback or the close frees it); during a close, the close does.
 */
static void conn_end(struct sp_conn *c, const char *why)
{
    struct rc_sppull *l = c->l;
    pthread_mutex_lock(&l->mtx);
    bool closing = l->closing;
    if (!closing) {
        list_remove(&l->live, c);
        l->n_live--;
        c->next = l->dead;
        l->dead = c;
    }
    pthread_mutex_unlock(&l->mtx);
    if (closing)
        return; /* rc_sppull_close reports the end and frees it */
    nng_stream_close(c->st);
    rc_free(c->buf); /* the callback's; the rest waits for the reaper */
    c->buf = NULL;
    c->cap = c->have = 0;
    if (why && l->hooks.error)
        l->hooks.error(l->hooks.arg, c->peer, why);
    if (c->hs_done && l->hooks.closed)
        l->hooks.closed(l->hooks.arg, c->id, c->lane);
}

/* Starts the next read into c->buf[have, cap); caller checked cap > have. */
static void conn_read(struct sp_conn *c)
{
    if (!c->hs_done) {
        /* the handshake's deadline holds across short reads */
        uint64_t now = rc_clock_mono_ns();
        uint64_t left = c->hs_deadline_ns > now ? (c->hs_deadline_ns - now) / 1000000u : 0;
        nng_aio_set_timeout(c->rx, left ? (nng_duration)left : 1);
    }
    nng_iov iov = {.iov_buf = c->buf + c->have, .iov_len = c->cap - c->have};
    nng_aio_set_iov(c->rx, 1, &iov);
    /* nothing of c is touched after the publish (the reaper acquires it) */
    nng_stream *st = c->st;
    nng_aio *rx = c->rx;
    sync_publish(&c->sync);
    nng_stream_recv(st, rx);
}

/* Checks the peer's 8-byte SP header; NULL when it is a PUSH. */
static const char *check_header(const uint8_t *h, char *why, size_t cap)
{
    if (h[0] != 0 || h[1] != 'S' || h[2] != 'P' || h[3] != 0 || h[6] != 0 || h[7] != 0) {
        snprintf(why, cap, "not an SP peer: its first bytes are not an SP header");
        return why;
    }
    unsigned proto = (unsigned)h[4] << 8 | h[5];
    if (proto != RC_SP_PUSH) {
        snprintf(why, cap,
                 "SP protocol 0x%04x is not PUSH (0x%04x): only PUSH sockets publish here", proto,
                 RC_SP_PUSH);
        return why;
    }
    return NULL;
}

/*
 * Finds the complete frames in c->buf[from, have): returns where the last
 * complete one ends (from: none) and sets c->need for the frame after it.
 * A frame the broker refuses sets *why and ends the scan before it.
 */
static size_t scan_frames(struct sp_conn *c, size_t from, char *why, size_t cap, bool *bad)
{
    struct rc_sppull *l = c->l;
    size_t hl = l->ipc ? 9 : 8;
    size_t off = from;
    c->need = 0;
    while (c->have - off >= hl) {
        const uint8_t *p = c->buf + off;
        if (l->ipc && p[0] != 1) {
            snprintf(why, cap, "ipc message type 0x%02x is not 1", p[0]);
            *bad = true;
            break;
        }
        uint64_t len = rc_sppull_frame_len(p, (unsigned)hl);
        if (len > l->cfg.max_msg) {
            snprintf(why, cap,
                     "a message of %" PRIu64 " bytes is longer than the %" PRIu64 " accepted", len,
                     l->cfg.max_msg);
            *bad = true;
            break;
        }
        if (c->have - off - hl < len) {
            c->need = hl + (size_t)len;
            break;
        }
        off += hl + (size_t)len;
    }
    return off;
}

static void chunk_free(struct rc_ingest_buf *b)
{
    rc_free(b->owner);
    rc_free(b);
}

/*
 * Moves c->buf[keep, have) to the front of a buffer that holds at least
 * c->need bytes, and returns the frames c->buf[start, keep) as an ingest
 * buffer (NULL when there are none, or memory is short: *nomem).  Small
 * runs of frames are copied out; large ones keep the read buffer, and the
 * tail is copied to a fresh one first (the consumer may free the old one
 * at any time once it has it).
 */
static struct rc_ingest_buf *take_frames(struct sp_conn *c, size_t start, size_t keep, bool *nomem)
{
    size_t tail = c->have - keep;
    /* A frame larger than the buffer grows it as its bytes arrive (at most
     * twice what is already here), not to the size its header announces:
     * a peer that announces 8 MiB and sends nothing holds little.  Always
     * more than the tail, so the next read has room. */
    size_t want = c->size;
    if (c->need > want) {
        size_t grown = 2 * tail > want ? 2 * tail : want;
        want = c->need < grown ? c->need : grown;
    }
    size_t len = keep - start;
    struct rc_ingest_buf *b = NULL;
    *nomem = false;
    if (len > 0 && len < RC_SPPULL_COPY_BELOW) {
        b = rc_ingest_buf_copy(c->buf + start, len);
        if (!b) {
            *nomem = true;
            return NULL;
        }
    } else if (len > 0) {
        b = rc_malloc(sizeof(*b));
        uint8_t *nb = b ? rc_malloc(want) : NULL;
        if (!nb) {
            rc_free(b);
            *nomem = true;
            return NULL;
        }
        memcpy(nb, c->buf + keep, tail);
        rc_ingest_buf_init(b, c->buf + start, len, c->buf, chunk_free);
        c->buf = nb;
        c->cap = want;
        c->have = tail;
        return b;
    }
    /* grown, or shrunk to half or less (not back and forth by a little) */
    if (want > c->cap || c->cap >= 2 * want) {
        uint8_t *nb = rc_malloc(want);
        if (!nb) {
            if (b)
                rc_ingest_buf_release(b);
            *nomem = true;
            return NULL;
        }
        memcpy(nb, c->buf + keep, tail);
        rc_free(c->buf);
        c->buf = nb;
        c->cap = want;
    } else if (keep > 0) {
        memmove(c->buf, c->buf + keep, tail);
    }
    c->have = tail;
    return b;
}

/* Parks c (no read in flight) unless the pause's re-check lets it read at
 * once or the listener is closing. */
static void conn_park(struct sp_conn *c)
{
    struct rc_sppull *l = c->l;
    pthread_mutex_lock(&l->mtx);
    if (l->closing) {
        pthread_mutex_unlock(&l->mtx);
        return;
    }
    c->parked = true;
    c->park_next = l->parks;
    l->parks = c;
    l->n_parked++;
    pthread_mutex_unlock(&l->mtx);
    if (l->hooks.parked)
        l->hooks.parked(l->hooks.arg, 1);
    if (l->hooks.may_resume && l->hooks.may_resume(l->hooks.arg))
        rc_sppull_resume(l);
}

static void conn_read_cb(void *arg)
{
    struct sp_conn *c = arg;
    sync_acquire(&c->sync);
    struct rc_sppull *l = c->l;
    int rv = nng_aio_result(c->rx);
    char why[160];
    if (rv != 0) {
        const char *w = NULL;
        if (rv == NNG_ETIMEDOUT && !c->hs_done) {
            snprintf(why, sizeof(why), "sent no SP header within %" PRIu64 " ms",
                     l->cfg.handshake_ms);
            w = why;
        } else if (rv != NNG_ECLOSED && rv != NNG_ECANCELED && rv != NNG_ECONNSHUT &&
                   rv != NNG_ECONNRESET) {
            snprintf(why, sizeof(why), "receive failed: %s", nng_strerror(rv));
            w = why;
        }
        conn_end(c, w);
        sync_publish(&c->sync);
        return;
    }
    size_t n = nng_aio_count(c->rx);
    if (n == c->cap - c->have) { /* filled: more is waiting */
        c->size = c->cap * 2 < RC_SPPULL_BUF_MAX ? c->cap * 2 : RC_SPPULL_BUF_MAX;
    } else if (n < c->cap / 8) { /* little: shrink to what it brought */
        size_t sz = RC_SPPULL_BUF_MIN;
        while (sz < 4 * n && sz < RC_SPPULL_BUF_MAX)
            sz *= 2;
        c->size = sz;
    } else {
        c->size = c->cap;
    }
    c->have += n;
    size_t start = 0;
    if (!c->hs_done) {
        if (c->have < 8) {
            conn_read(c);
            return;
        }
        if (check_header(c->buf, why, sizeof(why))) {
            conn_end(c, why);
            sync_publish(&c->sync);
            return;
        }
        c->hs_done = true;
        nng_aio_set_timeout(c->rx, NNG_DURATION_INFINITE);
        if (l->hooks.opened)
            c->lane = l->hooks.opened(l->hooks.arg, c->id);
        start = 8;
    }
    bool bad = false, nomem = false;
    size_t keep = scan_frames(c, start, why, sizeof(why), &bad);
    struct rc_ingest_buf *b = take_frames(c, start, keep, &nomem);
    bool go = true;
    if (b) {
        b->recv_ns = rc_clock_mono_ns();
        go = l->hooks.frames(l->hooks.arg, b, c->id, c->lane, l->ipc ? 9 : 8);
    }
    if (bad || nomem) {
        conn_end(c, nomem ? "out of memory" : why);
        sync_publish(&c->sync);
        return;
    }
    if (go)
        conn_read(c);
    else
        conn_park(c);
    sync_publish(&c->sync);
}

static void conn_sent_cb(void *arg)
{
    (void)arg; /* a failed header send shows as a failed read */
}

static void describe_peer(struct sp_conn *c)
{
    nng_sockaddr sa;
    char label[32];
    snprintf(label, sizeof(label), "conn %" PRIu32, c->id & ~RC_SPPULL_ID_BIT);
    if (nng_stream_get_addr(c->st, NNG_OPT_REMADDR, &sa) != 0)
        snprintf(c->peer, sizeof(c->peer), "%s", label);
    else
        rc_nngaddr_format(&sa, label, c->peer, sizeof(c->peer));
}

static void conn_start(struct rc_sppull *l, nng_stream *st)
{
    static const uint8_t hdr[8] = {0, 'S', 'P', 0, RC_SP_PULL >> 8, RC_SP_PULL & 0xff, 0, 0};
    struct sp_conn *c = rc_calloc(1, sizeof(*c));
    if (!c) {
        nng_stream_free(st);
        if (l->hooks.error)
            l->hooks.error(l->hooks.arg, "a new connection", "refused: out of memory");
        return;
    }
    c->l = l;
    c->st = st;
    atomic_init(&c->sync, 0);
    uint32_t n;
    do /* relaxed: see sp_next_id */
        n = atomic_fetch_add_explicit(&sp_next_id, 1, memory_order_relaxed) & ~RC_SPPULL_ID_BIT;
    while (n == 0);
    c->id = n | RC_SPPULL_ID_BIT;
    c->cap = c->size = RC_SPPULL_BUF_MIN;
    c->buf = rc_malloc(c->cap);
    if (!c->buf || nng_aio_alloc(&c->rx, conn_read_cb, c) != 0 ||
        nng_aio_alloc(&c->tx, conn_sent_cb, c) != 0) {
        conn_free(c);
        if (l->hooks.error)
            l->hooks.error(l->hooks.arg, "a new connection", "refused: out of memory");
        return;
    }
    describe_peer(c);
    c->hs_deadline_ns = rc_clock_mono_ns() + l->cfg.handshake_ms * 1000000u;
    pthread_mutex_lock(&l->mtx);
    bool closing = l->closing;
    if (!closing) {
        c->next = l->live;
        l->live = c;
        l->n_live++;
    }
    pthread_mutex_unlock(&l->mtx);
    if (closing) {
        conn_free(c);
        return;
    }
    nng_iov iov = {.iov_buf = (void *)hdr, .iov_len = sizeof(hdr)};
    nng_aio_set_iov(c->tx, 1, &iov);
    nng_stream_send(c->st, c->tx);
    conn_read(c);
}

/* ---- the listener ---- */

static void accept_post(struct rc_sppull *l, bool backoff)
{
    pthread_mutex_lock(&l->mtx);
    if (!l->closing) {
        l->acc_sleeping = backoff;
        sync_publish(&l->acc_sync);
        if (backoff)
            nng_sleep_aio(RC_SPPULL_ACCEPT_BACKOFF_MS, l->acc);
        else
            nng_stream_listener_accept(l->lst, l->acc);
    }
    pthread_mutex_unlock(&l->mtx);
}

static void accept_cb(void *arg)
{
    struct rc_sppull *l = arg;
    sync_acquire(&l->acc_sync);
    int rv = nng_aio_result(l->acc);
    reap_dead(l);
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
        goto out;
    if (l->acc_sleeping) {
        accept_post(l, false);
        goto out;
    }
    if (rv != 0) {
        char why[96];
        snprintf(why, sizeof(why), "accept failed: %s", nng_strerror(rv));
        if (l->hooks.error)
            l->hooks.error(l->hooks.arg, l->url, why);
        accept_post(l, true);
        goto out;
    }
    conn_start(l, nng_aio_get_output(l->acc, 0));
    accept_post(l, false);
out:
    sync_publish(&l->acc_sync);
}

int rc_sppull_listen(const char *url, const struct rc_sppull_cfg *cfg,
                     const struct rc_sppull_hooks *hooks, struct rc_sppull **out, char *err,
                     size_t errlen)
{
    struct rc_sppull *l = rc_calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return RC_ENOMEM;
    }
    l->cfg = *cfg;
    l->hooks = *hooks;
    l->ipc = strncmp(url, "ipc://", 6) == 0;
    atomic_init(&l->acc_sync, 0);
    pthread_mutex_init(&l->mtx, NULL);
    int rv = nng_stream_listener_alloc(&l->lst, url);
    if (rv == 0)
        rv = nng_stream_listener_listen(l->lst);
    if (rv != 0) {
        snprintf(err, errlen, "listen %s (--ingest): %s", url, nng_strerror(rv));
        rc_sppull_free(l);
        return rv == NNG_EADDRINUSE ? RC_EADDRINUSE : RC_EIO;
    }
    int port = 0;
    if (nng_stream_listener_get_int(l->lst, NNG_OPT_TCP_BOUND_PORT, &port) != 0)
        port = 0;
    l->url = rc_nngaddr_bound_url(url, port);
    if (!l->url || nng_aio_alloc(&l->acc, accept_cb, l) != 0) {
        snprintf(err, errlen, "listen %s (--ingest): out of memory", url);
        rc_sppull_free(l);
        return RC_ENOMEM;
    }
    *out = l;
    return 0;
}

void rc_sppull_start(struct rc_sppull *p)
{
    accept_post(p, false);
}

const char *rc_sppull_url(const struct rc_sppull *p)
{
    return p->url;
}

void rc_sppull_peer(struct rc_sppull *p, uint32_t conn, char *out, size_t cap)
{
    snprintf(out, cap, "conn %" PRIu32, conn & ~RC_SPPULL_ID_BIT);
    pthread_mutex_lock(&p->mtx);
    for (struct sp_conn *c = p->live; c; c = c->next)
        if (c->id == conn) {
            snprintf(out, cap, "%s", c->peer);
            break;
        }
    pthread_mutex_unlock(&p->mtx);
}

void rc_sppull_resume(struct rc_sppull *p)
{
    pthread_mutex_lock(&p->mtx);
    unsigned n = 0;
    if (!p->closing) {
        for (struct sp_conn *c = p->parks, *next; c; c = next) {
            next = c->park_next;
            c->park_next = NULL;
            c->parked = false;
            conn_read(c); /* under mtx, so a close cannot free it meanwhile */
            n++;
        }
        p->parks = NULL;
        p->n_parked = 0;
    }
    pthread_mutex_unlock(&p->mtx);
    if (n && p->hooks.parked)
        p->hooks.parked(p->hooks.arg, -(int)n);
}

unsigned rc_sppull_connections(struct rc_sppull *p)
{
    pthread_mutex_lock(&p->mtx);
    unsigned n = p->n_live;
    pthread_mutex_unlock(&p->mtx);
    return n;
}

void rc_sppull_close(struct rc_sppull *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mtx);
    bool was = p->closing;
    p->closing = true;
    pthread_mutex_unlock(&p->mtx);
    if (was)
        return;
    if (p->lst)
        nng_stream_listener_close(p->lst);
    if (p->acc)
        nng_aio_stop(p->acc); /* no conn_start after this */
    sync_acquire(&p->acc_sync);
    /* closing: callbacks no longer move connections between lists */
    pthread_mutex_lock(&p->mtx);
    struct sp_conn *live = p->live, *dead = p->dead;
    unsigned parked = p->n_parked;
    p->live = p->dead = p->parks = NULL;
    p->n_live = p->n_parked = 0;
    pthread_mutex_unlock(&p->mtx);
    for (struct sp_conn *c = live; c; c = c->next)
        nng_stream_close(c->st);
    while (live) {
        struct sp_conn *next = live->next;
        if (live->rx) {
            nng_aio_stop(live->rx); /* its callback has returned */
            sync_acquire(&live->sync);
        }
        if (live->hs_done && p->hooks.closed)
            p->hooks.closed(p->hooks.arg, live->id, live->lane);
        conn_free(live);
        live = next;
    }
    while (dead) {
        struct sp_conn *next = dead->next;
        conn_free(dead);
        dead = next;
    }
    if (parked && p->hooks.parked)
        p->hooks.parked(p->hooks.arg, -(int)parked);
}

void rc_sppull_free(struct rc_sppull *p)
{
    if (!p)
        return;
    rc_sppull_close(p);
    if (p->acc)
        nng_aio_free(p->acc);
    if (p->lst)
        nng_stream_listener_free(p->lst);
    rc_free(p->url);
    pthread_mutex_destroy(&p->mtx);
    rc_free(p);
}
