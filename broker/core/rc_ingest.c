/*
 * rc_ingest: decode, validate, group by run, hand off (see rc_ingest.h).
 */
#include "rc_ingest.h"

#include <inttypes.h>
#include <msgpack.h>
#include <string.h>

#include "rc_alloc.h"
#include "rc_clock.h"
#include "rc_config.h"
#include "rc_error.h"
#include "rc_log.h"
#include "rc_words.h"
#include "rc_sppull.h"

struct rc_ingest_err {
    uint32_t index;
    struct rc_proto_error err;
};

static void ctx_setup(struct rc_ingest_ctx *c, struct rc_runs *runs, struct rc_metrics *m,
                      enum rc_ingest_kind kind, rc_ingest_peer_fn peer, void *peer_arg)
{
    memset(c, 0, sizeof(*c));
    c->batch = (struct rc_send_batch)RC_SEND_BATCH_INIT;
    c->runs = runs;
    c->metrics = m;
    c->kind = kind;
    c->peer = peer;
    c->peer_arg = peer_arg;
}

static void ctx_release(struct rc_ingest_ctx *c);
static void dispatch_now(struct rc_ingest_ctx *c, struct rc_ingest_buf *buf, uint32_t pipe,
                         rc_ingest_ack_fn ack_for, void *arg);
static void dispatch_frames_now(struct rc_ingest_ctx *c, struct rc_ingest_buf *buf, uint32_t pipe);
static void queue_for_decoder(struct rc_ingest_ctx *c, struct rc_ingest_buf *buf, uint32_t pipe,
                              bool may_inline);

/* ---- The decoder actor (PULL) ---- */

enum { RC_IMSG_DECODE = 0x52430040u, RC_IMSG_FINISH };

static struct rc_ingest_buf *buf_of_decode_msg(struct rc_msg *msg)
{
    return (struct rc_ingest_buf *)(void *)((char *)msg -
                                            offsetof(struct rc_ingest_buf, decode_msg));
}

/* The runtime frees the embedded message: after the decoder's turn (which
 * dispatched the buffer with the caller's reference), or unhandled when the
 * actor system stops (quiesce, which waits for every counted message, ran
 * before if it was asked); either way the message's own reference goes. */
static void decode_msg_free(struct rc_msg *msg)
{
    struct rc_ingest_buf *buf = buf_of_decode_msg(msg);
    if (!buf->decode_taken) {
        rc_metric_add(&buf->decode_metrics->messages_rejected, buf->frame_hdr ? buf->frames : 1);
        rc_ingest_buf_release(buf); /* the reference the dispatch would have consumed */
    }
    rc_ingest_buf_release(buf);
}

/*
 * While the decoder is at most --ingest-inline-backlog messages behind (the
 * messages sent to it and not finished, this one included), its turn also
 * runs idle run actors' turns inline.  Keeping up, it does: a run message
 * handled where it was decoded costs no mailbox, run queue, steal or
 * wake-up, and its events are still in this core's cache (a fifth less
 * worker CPU per batched event at 960,000 events/s; a third with no
 * bound, bench/runcast-bench/notes/ingest.md).  Further behind, it hands
 * them to the workers instead: the run actors' work then spreads over
 * every core while the decoder, serial per socket, goes back to decoding.
 * The default (4096) is as far as the PULL pause lets it fall behind with
 * single events, so it always inlines: on 2 cores, where nng's threads and
 * the publishers need the other core, that measured best; 32 suits a
 * machine with many cores and one busy socket.
 */
static void decoder_behaviour(struct rc_actor *self, void *state, struct rc_msg *msg)
{
    struct rc_ingest_ctx *c = state;
    if (msg->type == RC_IMSG_DECODE) {
        struct rc_ingest_buf *buf = buf_of_decode_msg(msg);
        buf->decode_taken = true;
        uint64_t lim = rc_runs_config(c->runs)->ingest_inline_backlog;
        c->inline_runs = lim > 0 && rc_actor_mailbox_len(self) <= lim;
        if (buf->frame_hdr)
            dispatch_frames_now(c, buf, buf->decode_pipe);
        else
            dispatch_now(c, buf, buf->decode_pipe, NULL, NULL);
    } else if (msg->type == RC_IMSG_FINISH) {
        rc_actor_stop(self, 0); /* everything sent before it is dispatched */
    }
}

static void decoder_fini(void *state, int reason)
{
    (void)reason;
    ctx_release(state);
    rc_free(state);
}

void rc_ingest_ctx_init(struct rc_ingest_ctx *c, struct rc_runs *runs, struct rc_metrics *m,
                        enum rc_ingest_kind kind, rc_ingest_peer_fn peer, void *peer_arg)
{
    ctx_setup(c, runs, m, kind, peer, peer_arg);
    /* REP: the receiving nng thread runs idle run actors' turns itself, so
     * an acknowledged message whose runs are idle is handled, and its reply
     * sent, without a hand-off to a worker and back (see send_one). */
    if (kind == RC_INGEST_REP)
        c->inline_runs = rc_runs_config(runs)->ingest_inline_backlog > 0;
    if (kind != RC_INGEST_PULL)
        return;
    struct rc_ingest_ctx *inner = rc_malloc(sizeof(*inner));
    if (!inner)
        return; /* decode on the calling thread */
    ctx_setup(inner, runs, m, kind, peer, peer_arg);
    /* only the decoder's turns use inner: one thread at a time, as the
     * cache requires; without it (ENOMEM) lookups go to the registry */
    inner->cache = rc_calloc(1, sizeof(*inner->cache));
    struct rc_actor_opts o = {.mailbox_limit = 0, .name = "ingest-decoder"};
    if (rc_actor_spawn(rc_runs_system(runs), decoder_behaviour, inner, decoder_fini, &o,
                       &c->decoder) != 0) {
        c->decoder = NULL;
        ctx_release(inner);
        rc_free(inner);
    }
}

void rc_ingest_ctx_fini(struct rc_ingest_ctx *c)
{
    if (c->decoder) {
        /* After what was sent before it (a restarted ingress loses nothing
         * it received); if the system has stopped, the send fails and the
         * stop already freed the queued messages and ran the fini. */
        struct rc_msg *f = rc_msg_new(sizeof(struct rc_msg), RC_IMSG_FINISH);
        if (!f || rc_actor_send(c->decoder, f) != 0) {
            rc_free(f);
            rc_actor_stop(c->decoder, 0);
        }
        rc_actor_release(c->decoder);
        c->decoder = NULL;
    }
    ctx_release(c);
}

static void ctx_release(struct rc_ingest_ctx *c)
{
    if (c->cache) {
        rc_runs_cache_fini(c->cache);
        rc_free(c->cache);
        c->cache = NULL;
    }
    rc_free(c->spare); /* holds nothing: a plain allocation (rc_msg_new) */
    c->spare = NULL;
    rc_free(c->own_slots);
    rc_free(c->errs);
    rc_free(c->group);
    rc_free(c->gcount);
    rc_free(c->gfirst);
    rc_free(c->gmsg);
    rc_free(c->gtab);
    c->gcount = c->gfirst = c->gtab = NULL;
    c->gmsg = NULL;
    c->slots = NULL;
    c->errs = NULL;
    c->group = NULL;
}

static void on_element(void *arg, uint32_t index, const struct rc_event *ev,
                       const struct rc_proto_error *err)
{
    struct rc_ingest_ctx *c = arg;
    if (ev) {
        if (c->n == c->cap) {
            if (c->in_pre)
                goto nomem; /* cannot happen: the array header bounds it */
            uint32_t nc = c->cap ? c->cap * 2 : 8;
            struct rc_ev_slot *ns = rc_realloc(c->slots, nc * sizeof(*ns));
            if (!ns)
                goto nomem;
            c->slots = c->own_slots = ns;
            c->cap = c->own_cap = nc;
        }
        struct rc_ev_slot *s = &c->slots[c->n++];
        s->index = index;
        s->hash = rc_runs_hash(ev->run.ptr, ev->run.len);
        rc_ev_pack(s, ev);
        return;
    }
    if (c->n_errs == c->cap_errs) {
        uint32_t nc = c->cap_errs ? c->cap_errs * 2 : 4;
        struct rc_ingest_err *ne = rc_realloc(c->errs, nc * sizeof(*ne));
        if (!ne)
            return; /* the element gets no specific answer: see dispatch */
        c->errs = ne;
        c->cap_errs = nc;
    }
    c->errs[c->n_errs].index = index;
    c->errs[c->n_errs].err = *err;
    c->n_errs++;
    return;
nomem:
    if (c->n_errs < c->cap_errs) {
        struct rc_ingest_err *e = &c->errs[c->n_errs++];
        memset(e, 0, sizeof(*e));
        e->index = index;
        e->err.code = RC_PROTO_OVERLOADED;
        snprintf(e->err.reason, sizeof(e->err.reason), "out of memory");
    }
}

/* Error path only: finds element index of the message and reads its run and
 * type strings (if any), to recognise a terminal that failed validation. */
static bool peek_element(const uint8_t *buf, size_t len, uint32_t index, char *run, size_t run_cap,
                         char *type, size_t type_cap)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    bool ok = false;
    if (msgpack_unpack_next(&u, (const char *)buf, len, &off) != MSGPACK_UNPACK_SUCCESS)
        goto out;
    msgpack_object o = u.data;
    if (o.type == MSGPACK_OBJECT_ARRAY) {
        if (index >= o.via.array.size)
            goto out;
        o = o.via.array.ptr[index];
    }
    if (o.type != MSGPACK_OBJECT_MAP)
        goto out;
    run[0] = type[0] = 0;
    for (uint32_t i = 0; i < o.via.map.size; i++) {
        msgpack_object_kv *kv = &o.via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR || kv->val.type != MSGPACK_OBJECT_STR)
            continue;
        char *dst = NULL;
        size_t cap = 0;
        if (kv->key.via.str.size == 3 && memcmp(kv->key.via.str.ptr, "run", 3) == 0) {
            dst = run;
            cap = run_cap;
        } else if (kv->key.via.str.size == 4 && memcmp(kv->key.via.str.ptr, "type", 4) == 0) {
            dst = type;
            cap = type_cap;
        }
        if (!dst)
            continue;
        size_t n = kv->val.via.str.size < cap - 1 ? kv->val.via.str.size : cap - 1;
        memcpy(dst, kv->val.via.str.ptr, n);
        dst[n] = 0;
        for (size_t k = 0; k < n; k++) /* keep the log line printable */
            if ((unsigned char)dst[k] < 0x20 || (unsigned char)dst[k] >= 0x7f)
                dst[k] = '?';
    }
    ok = true;
out:
    msgpack_unpacked_destroy(&u);
    return ok;
}

static void report_error(struct rc_ingest_ctx *c, const struct rc_ingest_buf *buf, uint32_t pipe,
                         const struct rc_ingest_err *e, bool whole)
{
    char peer[96] = "inproc";
    if (c->peer && rc_log_enabled(RC_LOG_WARN))
        c->peer(c->peer_arg, pipe, peer, sizeof(peer));
    if (!whole) {
        char run[130], type[40];
        if (peek_element(buf->data, buf->len, e->index, run, sizeof(run), type, sizeof(type)) &&
            (strcmp(type, "complete") == 0 || strcmp(type, "error") == 0)) {
            rc_metric_add(&c->metrics->terminal_rejected, 1);
            rc_log(RC_LOG_CRITICAL, "ingress", run[0] ? run : NULL, NULL,
                   "terminal event (%s) rejected by validation, the run stays open: %s%s%s: %s "
                   "(from %s)",
                   type, rc_proto_code_name(e->err.code), e->err.field ? " field " : "",
                   e->err.field ? e->err.field : "", e->err.reason, peer);
            return;
        }
    }
    RC_LOG_RATELIMITED(RC_LOG_WARN, "ingress", NULL, NULL, "%s rejected from %s (%s): %s%s%s: %s",
                       whole ? "message" : "event in a batch", peer, rc_ingest_kind_name(c->kind),
                       rc_proto_code_name(e->err.code), e->err.field ? " field " : "",
                       e->err.field ? e->err.field : "", e->err.reason);
}

void rc_ingest_refuse(struct rc_ingest_ctx *c, struct rc_ingest_buf *buf, enum rc_proto_code code,
                      const char *message, rc_ingest_ack_fn ack_for, void *arg)
{
    buf->inflight = NULL; /* never handed to a run */
    rc_metric_add(&c->metrics->messages_rejected, 1);
    rc_metric_add(&c->metrics->events_rejected[code], 1);
    struct rc_ack *ack = ack_for ? ack_for(arg, 1) : NULL;
    if (ack) {
        rc_ack_set_code(ack, 0, code, message);
        rc_ack_done(ack);
    }
    rc_ingest_buf_release(buf);
}

static bool same_run(const struct rc_ev_slot *a, const struct rc_ev_slot *b)
{
    if (a->hash != b->hash)
        return false;
    const struct rc_event *x = (const struct rc_event *)(const void *)a->ev;
    const struct rc_event *y = (const struct rc_event *)(const void *)b->ev;
    /* run is in the packed head, at its usual offset */
    return x->run.len == y->run.len && memcmp(x->run.ptr, y->run.ptr, x->run.len) == 0;
}

static void slot_copy(struct rc_ev_slot *dst, const struct rc_ev_slot *src)
{
    rc_words_copy(dst, src, sizeof(*src));
}

static const struct rc_str *slot_run(const struct rc_ev_slot *s)
{
    return &((const struct rc_event *)(const void *)s->ev)->run;
}

/* Hands msg (the events of one run) to that run's actor, creating the run
 * when needed; on failure answers its events.  Consumes msg and one
 * reference on buf that the caller took for it (rc_ingest_buf_hold_n: one
 * atomic add for all of a message's run messages). */
static void send_one(struct rc_ingest_ctx *c, struct rc_ingest_msg *msg, struct rc_ingest_buf *buf,
                     uint32_t pipe, struct rc_ack *ack, int64_t recv_wall, uint64_t recv_ns)
{
    struct rc_metrics *m = c->metrics;
    msg->buf = buf;
    msg->pipe = pipe;
    msg->recv_wall_ms = recv_wall;
    msg->recv_ns = recv_ns;
    msg->handled = false;
    if (ack) {
        /* relaxed: the dispatcher's own share is still held, so the count
         * cannot reach zero before this add */
        atomic_fetch_add_explicit(&ack->pending, 1, memory_order_relaxed);
        msg->ack = ack;
    }
    const struct rc_str *run = slot_run(&msg->slots[0]);
    int grc = RC_ECLOSED;
    uint32_t hash = msg->slots[0].hash;
    /* RC_ECLOSED: the run retired between lookup and send: look up again */
    for (int attempt = 0; attempt < 3 && grc == RC_ECLOSED; attempt++) {
        struct rc_actor *a = NULL;
        if (c->cache)
            grc = rc_runs_get_cached(c->runs, c->cache, run->ptr, run->len, hash, true, &a);
        else
            grc = rc_runs_get(c->runs, run->ptr, run->len, hash, true, &a);
        if (grc != 0)
            break;
        /* with a reply, a full mailbox answers `overloaded`; without one
         * (PULL) the ingress pushes back instead (see rc_ingress.c).  With
         * inline_runs (a PULL decoder turn that keeps up, or a REP
         * context's nng thread) an idle run actor handles its events right
         * here; a busy one gets them queued as usual. */
        if (ack)
            grc = c->inline_runs ? rc_send_batch_try_add_inline(&c->batch, a, &msg->hdr)
                                 : rc_send_batch_try_add(&c->batch, a, &msg->hdr);
        else
            grc = c->inline_runs ? rc_send_batch_add_inline(&c->batch, a, &msg->hdr)
                                 : rc_send_batch_add(&c->batch, a, &msg->hdr);
        if (!c->cache)
            rc_actor_release(a);
        else if (grc == RC_ECLOSED)
            rc_runs_cache_drop(c->cache, hash); /* borrowed: the cache lets go */
        if (grc == 0)
            return;
    }
    enum rc_proto_code code;
    const char *text;
    switch (grc) {
    case RC_ELIMIT:
        code = RC_PROTO_LIMIT;
        text = "the broker is at --max-runs; no new run is accepted";
        break;
    case RC_EOVERLOAD:
        code = RC_PROTO_OVERLOADED;
        text = "the run's mailbox is full; retry later";
        rc_metric_add(&m->mailbox_overloads, 1);
        break;
    case RC_ECLOSED:
        code = RC_PROTO_SHUTTING_DOWN;
        text = "the broker is shutting down";
        break;
    default:
        code = RC_PROTO_OVERLOADED;
        text = "the broker is out of memory";
        break;
    }
    if (ack)
        for (uint32_t i = 0; i < msg->n; i++)
            rc_ack_set_code(ack, msg->slots[i].index, code, text);
    rc_metric_add(&m->events_rejected[code], msg->n);
    if (code == RC_PROTO_LIMIT || code == RC_PROTO_OVERLOADED) {
        char runbuf[130];
        size_t rl = run->len < 129 ? run->len : 129;
        memcpy(runbuf, run->ptr, rl);
        runbuf[rl] = 0;
        if (code == RC_PROTO_LIMIT)
            RC_LOG_RATELIMITED(RC_LOG_WARN, "ingress", runbuf, NULL,
                               "new run refused: --max-runs (%" PRIu64 ") reached",
                               rc_runs_config(c->runs)->max_runs);
        else
            RC_LOG_RATELIMITED(RC_LOG_WARN, "ingress", runbuf, NULL,
                               "%" PRIu32 " events refused: %s", msg->n, text);
    }
    msg->ack = NULL;
    msg->handled = true;
    rc_msg_free(&msg->hdr);
    if (ack)
        rc_ack_done(ack);
}

/* The number of elements the message announces (array header, or 1 for a
 * map); 0 when unknown or implausible. */
static uint32_t peek_count(const uint8_t *p, size_t len, uint32_t max)
{
    uint64_t n = 0;
    if (len == 0)
        return 0;
    if ((p[0] & 0xf0) == 0x80 || p[0] == 0xde || p[0] == 0xdf)
        return 1;
    if ((p[0] & 0xf0) == 0x90)
        n = p[0] & 0x0f;
    else if (p[0] == 0xdc && len >= 3)
        n = ((uint32_t)p[1] << 8) | p[2];
    else if (p[0] == 0xdd && len >= 5)
        n = ((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 8) | p[4];
    if (n > max || n > len)
        return 0;
    return (uint32_t)n;
}

/* Grows the grouping scratch for n events; false when memory is short. */
static bool group_reserve(struct rc_ingest_ctx *c, uint32_t n)
{
    if (n <= c->cap_group)
        return true;
    uint32_t tcap = 16;
    while (tcap < 2 * n)
        tcap *= 2;
    uint32_t *g = rc_realloc(c->group, n * sizeof(*g));
    if (g)
        c->group = g;
    uint32_t *cnt = g ? rc_realloc(c->gcount, n * sizeof(*cnt)) : NULL;
    if (cnt)
        c->gcount = cnt;
    uint32_t *first = cnt ? rc_realloc(c->gfirst, n * sizeof(*first)) : NULL;
    if (first)
        c->gfirst = first;
    struct rc_ingest_msg **gm = first ? rc_realloc(c->gmsg, n * sizeof(*gm)) : NULL;
    if (gm)
        c->gmsg = gm;
    uint32_t *t = gm ? rc_realloc(c->gtab, tcap * sizeof(*t)) : NULL;
    if (!t)
        return false;
    c->gtab = t;
    c->cap_gtab = tcap;
    c->cap_group = n;
    return true;
}

/*
 * Assigns each good event its run's group (c->group[i]), numbering groups
 * in order of first appearance, and counts them (c->gcount).  One pass with
 * an open-addressing table keyed by the run hash (linear probing, at most
 * half full): O(events), where comparing every pair was O(events x runs),
 * which with a batch spread over many runs cost more than decoding it.
 * Returns the number of groups; 0 (and c->n = 0: every event was answered
 * `overloaded` already) when the scratch cannot grow.
 */
static uint32_t group_events(struct rc_ingest_ctx *c)
{
    if (c->n == 0)
        return 0; /* every element bad: nothing to group (and no table yet) */
    if (!group_reserve(c, c->n)) {
        c->n = 0;
        return 0;
    }
    uint32_t tcap = 16;
    while (tcap < 2 * c->n)
        tcap *= 2;
    uint32_t mask = tcap - 1;
    memset(c->gtab, 0xff, tcap * sizeof(*c->gtab)); /* UINT32_MAX: empty */
    uint32_t ngroups = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        uint32_t h = c->slots[i].hash * 0x9E3779B1u; /* mix the bits upwards ... */
        uint32_t p = (h ^ h >> 16) & mask;           /* ... and back down */
        for (;;) {
            uint32_t g = c->gtab[p];
            if (g == UINT32_MAX) {
                c->gtab[p] = ngroups;
                c->gfirst[ngroups] = i;
                c->gcount[ngroups] = 1;
                c->group[i] = ngroups++;
                break;
            }
            if (same_run(&c->slots[c->gfirst[g]], &c->slots[i])) {
                c->gcount[g]++;
                c->group[i] = g;
                break;
            }
            p = (p + 1) & mask;
        }
    }
    return ngroups;
}

/* Keeps an unsent preallocated run message (cap slots, holding nothing:
 * handled, no buf, no ack) for the next message, or frees it. */
static void park_pre(struct rc_ingest_ctx *c, struct rc_ingest_msg *pre, uint32_t cap)
{
    if (c->spare && c->spare_cap >= cap) {
        rc_free(pre);
        return;
    }
    rc_free(c->spare);
    c->spare = pre;
    c->spare_cap = cap;
}

/* Sets buf's share of the in-flight count to max(1, run messages) before
 * they are sent (a worker may handle and free the first before the last
 * is sent; the buffer's last release, the dispatcher's at the earliest,
 * takes the share back).  The buffer is not shared yet. */
static void inflight_set(struct rc_ingest_ctx *c, struct rc_ingest_buf *buf, uint32_t nmsgs)
{
    uint32_t want = nmsgs ? nmsgs : 1;
    if (want != buf->inflight_n) {
        rc_runs_inflight_add(c->runs, (int)want - (int)buf->inflight_n);
        buf->inflight_n = want;
    }
}

void rc_ingest_dispatch(struct rc_ingest_ctx *c, struct rc_ingest_buf *buf, uint32_t pipe,
                        rc_ingest_ack_fn ack_for, void *arg)
{
    /* In flight from here until the buffer's last release (after the last
     * run message built from it was handled): quiesce waits for it, the
     * PULL path pauses on it.  Decoded here, 1 (it also stands for the
     * first run message); queued for the decoder, the elements the array
     * header announces, at least as many as the run messages it will make,
     * so the PULL pause engages no later than with the decode done here.
     * The buffer is not shared yet. */
    bool queue = c->decoder && !ack_for;
    uint32_t n0 = 1;
    if (queue) {
        uint32_t hint = peek_count(buf->data, buf->len, rc_runs_limits(c->runs)->batch_max_events);
        n0 = hint ? hint : 1;
    }
    buf->inflight = c->runs;
    buf->inflight_n = n0;
    rc_runs_inflight_add(c->runs, (int)n0);
    if (!queue) {
        dispatch_now(c, buf, pipe, ack_for, arg);
        return;
    }
    buf->frame_hdr = 0;
    queue_for_decoder(c, buf, pipe, false);
}

/* Sends buf (counted in flight) to c's decoder, which consumes the
 * caller's reference.  may_inline: the caller is an I/O thread that runs
 * no turn, and an idle decoder decodes buf right here (see
 * rc_ingest_dispatch_frames). */
static void queue_for_decoder(struct rc_ingest_ctx *c, struct rc_ingest_buf *buf, uint32_t pipe,
                              bool may_inline)
{
    if (!buf->recv_ns)
        buf->recv_ns = rc_clock_mono_ns(); /* received now, decoded later */
    /* The message is embedded in the buffer and holds a reference of its
     * own (see decode_msg_free).  One sender at a time per context (the
     * PULL reorder stage, or one connection's callbacks), so the mailbox
     * keeps arrival order. */
    struct rc_msg *d = &buf->decode_msg;
    atomic_init(&d->next, NULL); /* not shared yet */
    d->flags = 0;
    d->type = RC_IMSG_DECODE;
    d->free_fn = decode_msg_free;
    buf->decode_pipe = pipe;
    buf->decode_taken = false;
    buf->decode_metrics = c->metrics;
    rc_ingest_buf_hold(buf);
    int rc;
    if (may_inline) {
        struct rc_send_batch b = RC_SEND_BATCH_INIT;
        rc = rc_send_batch_try_add_inline(&b, c->decoder, d); /* no mailbox limit */
        rc_send_batch_flush(&b);
    } else {
        rc = rc_actor_send(c->decoder, d);
    }
    if (rc == 0)
        return;
    rc_ingest_buf_release(buf); /* the message's */
    /* the system is stopping */
    rc_metric_add(&c->metrics->messages_rejected, buf->frame_hdr ? buf->frames : 1);
    rc_ingest_buf_release(buf);
}

void rc_ingest_dispatch_frames(struct rc_ingest_ctx *c, struct rc_ingest_buf *buf, uint32_t pipe,
                               unsigned hdr_len, bool accepting)
{
    uint32_t max = rc_runs_limits(c->runs)->batch_max_events;
    uint32_t frames = 0;
    uint64_t hint = 0;
    const uint8_t *body;
    size_t len, off = 0;
    while (rc_sppull_frame_next(buf->data, buf->len, hdr_len, &off, &body, &len)) {
        uint32_t h = peek_count(body, len, max);
        hint += h ? h : 1;
        frames++;
    }
    buf->frame_hdr = (uint8_t)hdr_len;
    buf->frames = frames;
    if (!accepting) {
        buf->inflight = NULL;
        rc_metric_add(&c->metrics->messages_rejected, frames);
        rc_metric_add(&c->metrics->events_rejected[RC_PROTO_SHUTTING_DOWN], frames);
        rc_ingest_buf_release(buf);
        return;
    }
    /* in flight until the decoder has dispatched every frame (each then
     * counts on its own, see dispatch_frames_now) */
    uint32_t n0 = hint > INT32_MAX ? INT32_MAX : (uint32_t)hint;
    buf->inflight = c->runs;
    buf->inflight_n = n0 ? n0 : 1;
    rc_runs_inflight_add(c->runs, (int)buf->inflight_n);
    if (!c->decoder) {
        dispatch_frames_now(c, buf, pipe);
        return;
    }
    queue_for_decoder(c, buf, pipe, true);
}

static void frame_buf_free(struct rc_ingest_buf *b)
{
    rc_ingest_buf_release(b->owner); /* the run of frames it is part of */
    rc_free(b);
}

/*
 * Dispatches each frame of buf as a message of its own: a small buffer
 * that views the frame and holds a reference on buf, counted in flight
 * like any received message.  Then buf's own share of the gauge goes (the
 * frames' shares cover what is left).  Consumes the caller's reference.
 */
static void dispatch_frames_now(struct rc_ingest_ctx *c, struct rc_ingest_buf *buf, uint32_t pipe)
{
    const uint8_t *body;
    size_t len, off = 0;
    while (rc_sppull_frame_next(buf->data, buf->len, buf->frame_hdr, &off, &body, &len)) {
        struct rc_ingest_buf *f = rc_malloc(sizeof(*f));
        if (f) {
            rc_ingest_buf_init(f, body, len, rc_ingest_buf_hold(buf), frame_buf_free);
            f->recv_ns = buf->recv_ns;
            f->inflight = c->runs;
            f->inflight_n = 1;
            rc_runs_inflight_add(c->runs, 1);
            dispatch_now(c, f, pipe, NULL, NULL);
        } else {
            rc_metric_add(&c->metrics->messages_rejected, 1);
            rc_metric_add(&c->metrics->events_rejected[RC_PROTO_OVERLOADED], 1);
        }
    }
    if (buf->inflight) {
        rc_runs_inflight_add(buf->inflight, -(int)buf->inflight_n);
        buf->inflight = NULL;
        buf->inflight_n = 0;
    }
    rc_ingest_buf_release(buf);
}

static void dispatch_decoded(struct rc_ingest_ctx *c, struct rc_ingest_buf *buf, uint32_t pipe,
                             rc_ingest_ack_fn ack_for, void *arg);

/* Decodes buf and hands its events to their runs (consuming the caller's
 * reference to buf); the run turns it runs inline add their counter deltas
 * and their buffer references up, settled once here. */
static void dispatch_now(struct rc_ingest_ctx *c, struct rc_ingest_buf *buf, uint32_t pipe,
                         rc_ingest_ack_fn ack_for, void *arg)
{
    struct rc_run_deltas d;
    rc_run_deltas_begin(&d);
    /* the references the inline turns' messages owe keep buf alive after
     * dispatch_decoded released the caller's; none owed: buf may be gone */
    rc_ingest_buf_defer_begin(buf);
    dispatch_decoded(c, buf, pipe, ack_for, arg);
    rc_ingest_buf_release_n(buf, rc_ingest_buf_defer_end());
    rc_run_deltas_end(&d, rc_runs_metrics(c->runs));
}

static void dispatch_decoded(struct rc_ingest_ctx *c, struct rc_ingest_buf *buf, uint32_t pipe,
                             rc_ingest_ack_fn ack_for, void *arg)
{
    struct rc_metrics *m = c->metrics;
    uint64_t now_ns = rc_clock_mono_ns();
    uint64_t recv_ns = buf->recv_ns && buf->recv_ns <= now_ns ? buf->recv_ns : now_ns;
    /* the wall time of the receipt, not of this dispatch */
    int64_t recv_wall = rc_clock_wall_ms() - (int64_t)((now_ns - recv_ns) / 1000000u);
    rc_metric_add(&m->messages_received[c->kind], 1);
    rc_metric_add(&m->bytes_received[c->kind], buf->len);
    c->n = 0;
    c->n_errs = 0;
    uint32_t count = 0;
    bool is_batch = false;
    struct rc_proto_error err;
    memset(&err, 0, sizeof(err));
    /* Fast path: decode straight into a run message sized by the array
     * header; when every good event is for one run (the usual batch) it is
     * sent as is, without copying the events again. */
    uint32_t hint = peek_count(buf->data, buf->len, rc_runs_limits(c->runs)->batch_max_events);
    struct rc_ingest_msg *pre = NULL;
    if (hint && c->spare && c->spare_cap >= hint) {
        pre = c->spare;
        c->spare = NULL;
    } else if (hint) {
        pre = rc_ingest_msg_new(c->runs, hint);
    }
    if (pre) {
        pre->handled = true; /* until it carries events for a run */
        c->slots = pre->slots;
        c->cap = hint;
        c->in_pre = true;
    }
    /* One pass: the elements are only acted on after the decode returns,
     * so a broken envelope just discards what on_element collected. */
    enum rc_proto_code rc =
        rc_proto_decode_publish_ex(buf->data, buf->len, rc_runs_limits(c->runs), on_element, c,
                                   &count, &is_batch, &err, RC_PROTO_DECODE_ONE_PASS);
    if (rc != RC_PROTO_OK) {
        c->n = 0;
        c->n_errs = 0;
        if (pre) {
            c->slots = c->own_slots;
            c->cap = c->own_cap;
            c->in_pre = false;
            park_pre(c, pre, hint);
        }
        struct rc_ingest_err e = {.index = 0, .err = err};
        e.err.code = rc;
        report_error(c, buf, pipe, &e, true);
        rc_metric_add(&m->messages_rejected, 1);
        rc_metric_add(&m->events_rejected[rc], 1);
        struct rc_ack *ack = ack_for ? ack_for(arg, 1) : NULL;
        if (ack) {
            rc_ack_set_error(ack, 0, &e.err);
            rc_ack_done(ack);
        }
        rc_ingest_buf_release(buf);
        return;
    }
    rc_metrics_batch(m, count);
    struct rc_ack *ack = ack_for ? ack_for(arg, count) : NULL;
    if (ack) {
        /* elements that got neither an event nor an error (ENOMEM in the
         * scratch arrays) answer `overloaded` unless filled below */
        for (uint32_t i = 0; i < count; i++)
            rc_ack_set_code(ack, i, RC_PROTO_OVERLOADED, "the broker is out of memory");
    }
    for (uint32_t i = 0; i < c->n_errs; i++) {
        rc_metric_add(&m->events_rejected[c->errs[i].err.code], 1);
        if (ack)
            rc_ack_set_error(ack, c->errs[i].index, &c->errs[i].err);
        report_error(c, buf, pipe, &c->errs[i], false);
    }

    if (pre) {
        bool one_run = c->n > 0;
        for (uint32_t i = 1; i < c->n && one_run; i++)
            one_run = same_run(&c->slots[0], &c->slots[i]);
        if (one_run) {
            c->slots = c->own_slots;
            c->cap = c->own_cap;
            c->in_pre = false;
            pre->n = c->n;
            inflight_set(c, buf, 1);
            rc_ingest_buf_hold_n(buf, 1);
            send_one(c, pre, buf, pipe, ack, recv_wall, recv_ns);
            rc_send_batch_flush(&c->batch);
            if (ack)
                rc_ack_done(ack);
            rc_ingest_buf_release(buf);
            return;
        }
    }

    /* group the good events by run, in publish order within each group */
    uint32_t ngroups = group_events(c);
    uint32_t nmsgs = 0;
    for (uint32_t g = 0; g < ngroups; g++) {
        c->gmsg[g] = rc_ingest_msg_new(c->runs, c->gcount[g]);
        if (c->gmsg[g]) {
            c->gmsg[g]->n = 0; /* filled below */
            nmsgs++;
        }
    }
    for (uint32_t i = 0; i < c->n; i++) {
        struct rc_ingest_msg *msg = c->gmsg[c->group[i]];
        if (msg)
            slot_copy(&msg->slots[msg->n++], &c->slots[i]);
        else {
            if (ack)
                rc_ack_set_code(ack, c->slots[i].index, RC_PROTO_OVERLOADED,
                                "the broker is out of memory");
            rc_metric_add(&m->events_rejected[RC_PROTO_OVERLOADED], 1);
        }
    }
    /* groups in order of their first event: a run's events keep publish
     * order inside their message, and runs are handed off in the order
     * they first appear */
    inflight_set(c, buf, nmsgs);
    if (nmsgs)
        rc_ingest_buf_hold_n(buf, nmsgs); /* one per run message, taken by send_one */
    for (uint32_t g = 0; g < ngroups; g++)
        if (c->gmsg[g])
            send_one(c, c->gmsg[g], buf, pipe, ack, recv_wall, recv_ns);
    rc_send_batch_flush(&c->batch);
    if (pre) {
        c->slots = c->own_slots;
        c->cap = c->own_cap;
        c->in_pre = false;
        park_pre(c, pre, hint);
    }
    if (ack)
        rc_ack_done(ack);
    rc_ingest_buf_release(buf);
}
