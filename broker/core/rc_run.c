/*
 * rc_run: one actor per run.
 *
 * The run actor assigns seq numbers, fences the terminal, answers
 * idempotency repeats, keeps the snapshot state and the bounded history of
 * `ev` encodings, serves subscriptions (history replay and the switch to
 * live in one turn), fans each accepted event out to its subscribers
 * (encoded once, the same blob for all), and runs its own watchdog on one
 * rc_timer: armed once, re-checked lazily when it fires against the time of
 * the last event, re-armed only when a due time moves earlier (phase change,
 * start overrides, publisher gone).  See rc_runs.h and docs/ARCHITECTURE.md.
 */
#include "rc_run.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "rc_alloc.h"
#include "rc_clock.h"
#include "rc_config.h"
#include "rc_error.h"
#include "rc_hash.h"
#include "rc_log.h"
#include "rc_words.h"
#include "rc_metrics.h"

#define RC_SNAP_MAX_PHASES 1024u
#define RC_SNAP_MAX_TABLE  4096u

/* ---------------------------------------------------------------------- */
/* Ingest buffers, acks, packed events                                     */

struct rc_ingest_buf *rc_ingest_buf_hold(struct rc_ingest_buf *b)
{
    /* relaxed: the caller already holds a reference, so the buffer is alive */
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void rc_ingest_buf_hold_n(struct rc_ingest_buf *b, uint32_t n)
{
    /* relaxed: as rc_ingest_buf_hold */
    atomic_fetch_add_explicit(&b->refs, n, memory_order_relaxed);
}

void rc_ingest_buf_release(struct rc_ingest_buf *b)
{
    rc_ingest_buf_release_n(b, 1);
}

void rc_ingest_buf_release_n(struct rc_ingest_buf *b, uint32_t n)
{
    if (!b || n == 0)
        return;
    /* acq_rel: releases this holder's reads of the bytes; the last one
     * acquires every other holder's before freeing */
    if (atomic_fetch_sub_explicit(&b->refs, n, memory_order_acq_rel) == n) {
        /* every run message built from it has been handled (its frames
         * sent) before its release, which the acquire above made visible;
         * the gauge's acq_rel passes that on to the quiesce loop */
        if (b->inflight)
            rc_runs_inflight_add(b->inflight, -(int)b->inflight_n);
        if (b->free_fn)
            b->free_fn(b);
        else
            rc_free(b);
    }
}

void rc_ingest_buf_init(struct rc_ingest_buf *b, const uint8_t *data, size_t len, void *owner,
                        void (*free_fn)(struct rc_ingest_buf *b))
{
    memset(b, 0, sizeof(*b));
    atomic_init(&b->refs, 1);
    b->free_fn = free_fn;
    b->owner = owner;
    b->data = data;
    b->len = len;
}

/* The buffer whose run messages this thread's dispatch frees without
 * releasing their references one by one (see rc_ingest_buf_defer_begin). */
static _Thread_local struct rc_ingest_buf *tl_defer_buf;
static _Thread_local uint32_t tl_defer_owed;

void rc_ingest_buf_defer_begin(struct rc_ingest_buf *b)
{
    tl_defer_buf = b;
    tl_defer_owed = 0;
}

uint32_t rc_ingest_buf_defer_end(void)
{
    uint32_t n = tl_defer_owed;
    tl_defer_buf = NULL;
    tl_defer_owed = 0;
    return n;
}

/* Drops a run message's reference to its buffer: counted for the end of
 * the dispatch when this thread dispatches that buffer, at once otherwise. */
static void ingest_buf_release_deferred(struct rc_ingest_buf *b)
{
    if (b && b == tl_defer_buf)
        tl_defer_owed++;
    else
        rc_ingest_buf_release(b);
}

struct rc_ingest_buf *rc_ingest_buf_copy(const void *p, size_t len)
{
    struct rc_ingest_buf *b = rc_malloc(sizeof(*b) + (len ? len : 1));
    if (!b)
        return NULL;
    memcpy(b + 1, p, len);
    rc_ingest_buf_init(b, (const uint8_t *)(b + 1), len, NULL, NULL);
    return b;
}

struct rc_ack *rc_ack_new(uint32_t n, void (*complete)(struct rc_ack *), void *arg)
{
    struct rc_ack *a = rc_calloc(1, sizeof(*a) + (size_t)(n ? n : 1) * sizeof(a->results[0]));
    if (!a)
        return NULL;
    atomic_init(&a->pending, 1);
    a->n = n;
    a->complete = complete;
    a->arg = arg;
    return a;
}

void rc_ack_done(struct rc_ack *ack)
{
    /* acq_rel: see struct rc_ack */
    if (atomic_fetch_sub_explicit(&ack->pending, 1, memory_order_acq_rel) == 1)
        ack->complete(ack);
}

void rc_ack_free(struct rc_ack *ack)
{
    if (!ack)
        return;
    rc_free(ack->reasons);
    rc_free(ack);
}

void rc_ack_set_code(struct rc_ack *ack, uint32_t i, enum rc_proto_code code, const char *message)
{
    if (i >= ack->n)
        return;
    ack->results[i].code = code;
    ack->results[i].seq = 0;
    ack->results[i].dup = false;
    ack->results[i].field = NULL;
    ack->results[i].message = message;
}

void rc_ack_set_error(struct rc_ack *ack, uint32_t i, const struct rc_proto_error *err)
{
    if (i >= ack->n)
        return;
    const char *msg = rc_proto_code_name(err->code);
    if (!ack->reasons)
        ack->reasons = rc_calloc(ack->n, sizeof(*ack->reasons));
    if (ack->reasons && err->reason[0]) {
        memcpy(ack->reasons[i], err->reason, sizeof(ack->reasons[i]));
        ack->reasons[i][sizeof(ack->reasons[i]) - 1] = 0;
        msg = ack->reasons[i];
    }
    rc_ack_set_code(ack, i, err->code, msg);
    ack->results[i].field = err->field;
}

_Static_assert(RC_EV_HEAD % 8 == 0 && (sizeof(struct rc_event) - RC_EV_TAIL) % 8 == 0,
               "rc_words_copy moves 8-byte words");

void rc_ev_pack(struct rc_ev_slot *s, const struct rc_event *ev)
{
    rc_words_copy(s->ev, ev, RC_EV_HEAD);
    rc_words_copy(s->ev + RC_EV_HEAD, (const char *)ev + RC_EV_TAIL, sizeof(*ev) - RC_EV_TAIL);
}

void rc_ev_unpack(const struct rc_ev_slot *s, struct rc_event *ev,
                  const struct rc_proto_limits *lim)
{
    rc_words_copy(ev, s->ev, RC_EV_HEAD);
    rc_words_copy((char *)ev + RC_EV_TAIL, s->ev + RC_EV_HEAD, sizeof(*ev) - RC_EV_TAIL);
    if (ev->n_timeouts > 0) {
        /* Start events with timeouts (rare): decode again for the table.
         * The bytes are the ones the ingress validated, so this succeeds. */
        struct rc_proto_error err;
        struct rc_event full;
        if (rc_proto_decode_event(ev->raw.ptr, ev->raw.len, lim, &full, &err) == RC_PROTO_OK)
            *ev = full;
        else
            ev->n_timeouts = 0;
    }
}

static void ingest_msg_free(struct rc_msg *msg)
{
    struct rc_ingest_msg *m = (struct rc_ingest_msg *)msg;
    if (!m->handled) {
        /* Dropped unhandled: the run retired between the ingress's lookup
         * and this message's turn, or the system is stopping.  Count the
         * events as refused (a PUSH publisher learns nothing else), with the
         * code an acked publisher gets. */
        bool closing = rc_runs_closed(m->runs);
        rc_metric_add(&rc_runs_metrics(m->runs)->events_rejected[closing ? RC_PROTO_SHUTTING_DOWN
                                                                         : RC_PROTO_RUN_TERMINAL],
                      m->n);
    }
    if (m->ack) {
        if (!m->handled) {
            /* Dropped unhandled: the run retired in between, or the system
             * is stopping. */
            bool closing = rc_runs_closed(m->runs);
            for (uint32_t i = 0; i < m->n; i++) {
                struct rc_proto_ack_result *r = &m->ack->results[m->slots[i].index];
                r->code = closing ? RC_PROTO_SHUTTING_DOWN : RC_PROTO_RUN_TERMINAL;
                r->message = closing ? "the broker is shutting down" : "the run already ended";
            }
        }
        rc_ack_done(m->ack);
    }
    ingest_buf_release_deferred(m->buf); /* the in-flight gauge counts the buffer */
    rc_free(m);
}

struct rc_ingest_msg *rc_ingest_msg_new(struct rc_runs *runs, uint32_t n)
{
    struct rc_ingest_msg *m = (struct rc_ingest_msg *)rc_msg_new(
        sizeof(struct rc_ingest_msg) + (size_t)n * sizeof(struct rc_ev_slot), RC_RMSG_INGEST);
    if (!m)
        return NULL;
    m->hdr.free_fn = ingest_msg_free;
    m->runs = runs;
    m->buf = NULL;
    m->ack = NULL;
    m->pipe = 0;
    m->n = n;
    m->handled = false;
    return m;
}

/* ---------------------------------------------------------------------- */
/* Small helpers                                                           */

/* Fields most runs never need until they end, kept out of struct rc_run so
 * an active run stays within 256 bytes (one jemalloc size class). */
struct rc_run_xtra {
    int64_t ended_at;          /* wall ms of the terminal */
    uint64_t gone_mono;        /* ms: when the publisher's pipe closed (run->gone) */
    struct rc_blob *terminal;  /* the terminal `ev` encoding */
    struct rc_blob *tomb_snap; /* TOMBSTONE: the final snap */
    struct rc_blob *term_id;   /* normalised id of the terminal (dup answers) */
    struct rc_run_limits *lim; /* start overrides */
};

static struct rc_run_xtra *xtra(struct rc_run *run)
{
    if (!run->x)
        run->x = rc_calloc(1, sizeof(*run->x));
    return run->x;
}

#define X_TERMINAL(r) ((r)->x ? (r)->x->terminal : NULL)
#define X_TOMB(r)     ((r)->x ? (r)->x->tomb_snap : NULL)
#define X_TERMID(r)   ((r)->x ? (r)->x->term_id : NULL)
#define X_LIM(r)      ((r)->x ? (r)->x->lim : NULL)
#define X_ENDED(r)    ((r)->x ? (r)->x->ended_at : 0)

_Static_assert(sizeof(struct rc_run) <= 224, "struct rc_run outgrew its 224-byte size class");

/* Event ids are chosen by publishers: the keyed hash, so a publisher
 * cannot fill one probe run of the idempotency index. */
static uint64_t hash64(const void *p, size_t len)
{
    return rc_hash_keyed(p, len);
}

static bool blob_eq(const struct rc_blob *b, const void *p, size_t len)
{
    return b && b->len == len && memcmp(b->data, p, len) == 0;
}

static struct rc_str blob_str(const struct rc_blob *b)
{
    struct rc_str s = {NULL, 0};
    if (b) {
        s.ptr = (const char *)b->data;
        s.len = b->len;
    }
    return s;
}

/* A NUL-terminated copy for logging (ids are short and printable). */
static void cstr(char *out, size_t cap, const struct rc_blob *b)
{
    size_t n = b ? b->len : 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(out, b->data, n);
    out[n] = 0;
}

/* ---------------------------------------------------------------------- */
/* History ring: `ev` encodings, oldest first                              */

/* Gauge deltas gathered during one actor turn, or during every turn nested
 * in one ingest dispatch (rc_run_deltas_begin), and flushed once, so the
 * hot path does not touch shared counters per event (owner thread only).
 * Each flush is a few locked adds, and on x86 a locked add waits for the
 * thread's pending stores (the event just encoded into memory that is
 * rarely in cache): once per dispatch rather than once per run turn. */
static _Thread_local struct rc_run_deltas *hdelta; /* the current collector, or NULL */

/* noinline: inlined into handle_ingest, GCC's -Wdangling-pointer sees a
 * local's address stored in a thread-local; rc_run_deltas_end clears it
 * before the local goes out of scope. */
__attribute__((noinline)) void rc_run_deltas_begin(struct rc_run_deltas *d)
{
    d->events = d->bytes = d->accepted = 0;
    hdelta = d;
}

static void hdelta_flush(struct rc_metrics *m, struct rc_run_deltas *d);

void rc_run_deltas_end(struct rc_run_deltas *d, struct rc_metrics *m)
{
    hdelta = NULL;
    hdelta_flush(m, d);
}

static void hdelta_flush(struct rc_metrics *m, struct rc_run_deltas *d)
{
    if (d->events > 0)
        rc_metric_add(&m->history_events, (uint64_t)d->events);
    else if (d->events < 0)
        rc_metric_sub(&m->history_events, (uint64_t)-d->events);
    if (d->bytes > 0)
        rc_metric_add(&m->history_bytes, (uint64_t)d->bytes);
    else if (d->bytes < 0)
        rc_metric_sub(&m->history_bytes, (uint64_t)-d->bytes);
    if (d->accepted)
        rc_metric_add(&m->events_accepted, (uint64_t)d->accepted);
    d->events = d->bytes = d->accepted = 0;
}

static void hist_account(struct rc_run *run, int64_t events, int64_t bytes)
{
    if (hdelta) {
        hdelta->events += events;
        hdelta->bytes += bytes;
        return;
    }
    struct rc_run_deltas d = {events, bytes, 0};
    hdelta_flush(rc_runs_metrics(run->runs), &d);
}

/*
 * run->hist is one of
 *   NULL                     nothing retained;
 *   a blob, low bit set      exactly one event retained (the usual case for
 *                            a run that got its `start` and nothing since):
 *                            no ring, no header, just the tagged pointer,
 *                            which saves ~80 B per such run;
 *   a struct rc_run_hist     a ring of two or more.
 * Invariant: what is retained is contiguous and ends at run->seq, so the
 * single event is run->seq and a ring's newest is too.  An event that is
 * not retained therefore clears the history (see hist_push).
 */
struct rc_hist_slot {
    struct rc_blob *b;
    uint32_t len; /* b->len, so that evicting b need not read it */
    /* b was handed to someone else (a subscriber's frame, a replay, an
     * events query, the terminal's own reference): its release must read
     * the count.  Otherwise the history holds the only reference and
     * evicting b never touches its bytes, which are rarely in cache. */
    bool shared;
};

struct rc_run_hist {
    struct rc_hist_slot *ring;
    uint32_t cap, head, count;
    uint64_t first_seq; /* seq of ring[head] */
    uint64_t bytes;
};

#define HIST_ONE ((uintptr_t)1)

static bool hist_is_one(const struct rc_run *run)
{
    return ((uintptr_t)run->hist & HIST_ONE) != 0;
}

static struct rc_blob *hist_one(const struct rc_run *run)
{
    return (struct rc_blob *)((uintptr_t)run->hist & ~HIST_ONE);
}

static uint32_t hist_count(const struct rc_run *run)
{
    if (!run->hist)
        return 0;
    return hist_is_one(run) ? 1 : run->hist->count;
}

/* First retained seq, or seq + 1 when nothing is retained. */
static uint64_t hist_first(const struct rc_run *run)
{
    if (hist_is_one(run))
        return run->seq;
    if (run->hist && run->hist->count)
        return run->hist->first_seq;
    return run->seq + 1;
}

/* Position of the i-th oldest entry (i <= cap): head < cap, so the sum is
 * below 2 * cap and one conditional subtraction replaces a division (the
 * ring's cap, --history-max-events + 1, is rarely a power of two). */
static inline uint32_t ring_pos(const struct rc_run_hist *h, uint32_t i)
{
    uint32_t p = h->head + i;
    return p >= h->cap ? p - h->cap : p;
}

/* The retained `ev` of seq (hist_first(run) <= seq <= run->seq), for a
 * caller that may take a reference to it (marked shared). */
static struct rc_blob *hist_get(struct rc_run *run, uint64_t seq)
{
    if (hist_is_one(run))
        return hist_one(run); /* a single event is always released by count */
    struct rc_run_hist *h = run->hist;
    struct rc_hist_slot *sl = &h->ring[ring_pos(h, (uint32_t)(seq - h->first_seq))];
    sl->shared = true;
    return sl->b;
}

/* How many of a turn's evictions handle_ingest prefetches. */
#define HIST_PREFETCH 8u

/* Prefetches, for writing, the first 256 bytes of an evicted event: the
 * allocator hands the freed bytes straight to the next event's encoding
 * (jemalloc's per-thread cache is LIFO), whose stores would otherwise miss
 * and hold up the next locked instruction.  256 bytes covers a typical
 * event; a prefetch past its end is harmless (prefetches never fault). */
static inline void hist_prefetch_blob(const struct rc_blob *b)
{
    const char *p = (const char *)b;
    __builtin_prefetch(p, 1);
    __builtin_prefetch(p + 64, 1);
    __builtin_prefetch(p + 128, 1);
    __builtin_prefetch(p + 192, 1);
}

static void hist_pop(struct rc_run *run)
{
    struct rc_run_hist *h = run->hist;
    struct rc_hist_slot *sl = &h->ring[h->head];
    struct rc_blob *b = sl->b;
    h->bytes -= sl->len;
    hist_account(run, -1, -(int64_t)sl->len);
    if (sl->shared) {
        rc_blob_release(b);
    } else {
        /* The allocator hands these bytes to the next event's encoding
         * (LIFO per-thread cache): have them on their way meanwhile, and
         * the next eviction's too, which comes a turn of this run later
         * (most turns are one or two events of a batch spread over many
         * runs): in process, 4.57-4.70 M events/s against 4.15-4.17 M
         * with this one only, and 2.1-2.5 M with none (4 alternations,
         * bench_broker inproc --pull). */
        hist_prefetch_blob(b);
        if (h->count > 1)
            hist_prefetch_blob(h->ring[ring_pos(h, 1)].b);
        rc_blob_free_sole(b, sl->len);
    }
    h->head = ring_pos(h, 1);
    h->count--;
    h->first_seq++;
}

static void hist_free(struct rc_run *run)
{
    if (!run->hist)
        return;
    if (hist_is_one(run)) {
        struct rc_blob *b = hist_one(run);
        hist_account(run, -1, -(int64_t)b->len);
        rc_blob_release(b);
        run->hist = NULL;
        return;
    }
    while (run->hist->count)
        hist_pop(run);
    rc_free(run->hist->ring);
    rc_free(run->hist);
    run->hist = NULL;
}

/* A ring holding the single retained event (seq - 1) and room for more;
 * false on ENOMEM (the history is then unchanged). */
static bool hist_to_ring(struct rc_run *run, uint64_t max_ev)
{
    struct rc_blob *one = hist_one(run);
    uint64_t cap = max_ev + 1 < 4 ? max_ev + 1 : 4;
    struct rc_run_hist *h = rc_calloc(1, sizeof(*h));
    struct rc_hist_slot *ring = rc_malloc((size_t)cap * sizeof(*ring));
    if (!h || !ring) {
        rc_free(h);
        rc_free(ring);
        return false;
    }
    /* shared: whether the single event was handed out is not recorded */
    ring[0] = (struct rc_hist_slot){.b = one, .len = one->len, .shared = true};
    h->ring = ring;
    h->cap = (uint32_t)cap;
    h->head = 0;
    h->count = 1;
    h->first_seq = run->seq - 1; /* the newest before the event being pushed */
    h->bytes = one->len;
    run->hist = h;
    return true;
}

/* Appends the event seq, taking over the caller's reference to b (the
 * history is its last holder in the common case: no hold and release pair
 * of locked instructions per event); shared: b was handed out too. */
static void hist_push(struct rc_run *run, struct rc_blob *b, uint64_t seq, bool terminal,
                      bool shared)
{
    const struct rc_config *cfg = rc_runs_config(run->runs);
    uint64_t max_ev = cfg->history_max_events, max_bytes = cfg->history_max_bytes;
    if (!terminal && (max_ev == 0 || b->len > max_bytes)) {
        /* Not retained (it would be evicted at once): what is older goes
         * too, or the history would have a hole at seq and replays would
         * map seqs to the wrong events.  A resume from before it gets
         * `gap` + `snap`, which is what it needs anyway. */
        hist_free(run);
        rc_blob_release(b);
        return;
    }
    if (!run->hist) {
        run->hist = (struct rc_run_hist *)((uintptr_t)b | HIST_ONE);
        hist_account(run, 1, (int64_t)b->len);
        return; /* one event within both bounds (or the terminal, which stays) */
    }
    if (hist_is_one(run) && !hist_to_ring(run, max_ev)) {
        hist_free(run); /* ENOMEM: keep the history contiguous, drop it */
        rc_blob_release(b);
        return;
    }
    struct rc_run_hist *h = run->hist;
    if (h->count == h->cap) {
        uint64_t ncap = (uint64_t)h->cap * 2;
        if (ncap > max_ev + 1)
            ncap = max_ev + 1;
        if (ncap <= h->cap) {
            hist_pop(run); /* full at its bound: make room */
        } else {
            struct rc_hist_slot *nr = rc_malloc(ncap * sizeof(*nr));
            if (!nr) {
                hist_free(run);
                rc_blob_release(b);
                return;
            }
            for (uint32_t i = 0; i < h->count; i++)
                nr[i] = h->ring[ring_pos(h, i)];
            rc_free(h->ring);
            h->ring = nr;
            h->cap = (uint32_t)ncap;
            h->head = 0;
        }
    }
    if (h->count == 0)
        h->first_seq = seq;
    h->ring[ring_pos(h, h->count)] =
        (struct rc_hist_slot){.b = b, .len = b->len, .shared = shared || terminal};
    h->count++;
    h->bytes += b->len;
    hist_account(run, 1, (int64_t)b->len);
    while (h->count > 0 && (h->count > max_ev || h->bytes > max_bytes)) {
        /* the terminal always stays (it is always the newest) */
        if (h->count == 1 && X_TERMINAL(run) && h->first_seq == run->seq)
            break;
        hist_pop(run);
    }
    if (h->count == 0)
        hist_free(run);
}

/* ---------------------------------------------------------------------- */
/* Snapshot state                                                          */

struct rc_kv {
    struct rc_blob *key; /* id as msgpack */
    struct rc_blob *val; /* latest raw map */
};

struct rc_phase_at {
    struct rc_blob *phase;
    int64_t at;
};

struct rc_run_snap {
    struct rc_buf thinking, output;
    struct rc_phase_at *phases;
    uint32_t n_phases, cap_phases;
    struct rc_kv *tools, *verif;
    uint32_t n_tools, cap_tools, n_verif, cap_verif;
};

static struct rc_run_snap *snap_get(struct rc_run *run)
{
    if (!run->snap) {
        run->snap = rc_calloc(1, sizeof(*run->snap));
        if (run->snap) {
            rc_buf_init(&run->snap->thinking);
            rc_buf_init(&run->snap->output);
        }
    }
    return run->snap;
}

static void snap_free(struct rc_run *run)
{
    struct rc_run_snap *s = run->snap;
    if (!s)
        return;
    rc_buf_fini(&s->thinking);
    rc_buf_fini(&s->output);
    for (uint32_t i = 0; i < s->n_phases; i++)
        rc_blob_release(s->phases[i].phase);
    rc_free(s->phases);
    for (uint32_t i = 0; i < s->n_tools; i++) {
        rc_blob_release(s->tools[i].key);
        rc_blob_release(s->tools[i].val);
    }
    rc_free(s->tools);
    for (uint32_t i = 0; i < s->n_verif; i++) {
        rc_blob_release(s->verif[i].key);
        rc_blob_release(s->verif[i].val);
    }
    rc_free(s->verif);
    rc_free(s);
    run->snap = NULL;
}

/* Appends t to b within max bytes, cutting at a UTF-8 character boundary. */
static void text_append(struct rc_run *run, struct rc_buf *b, struct rc_str t, uint64_t max)
{
    if (t.len == 0)
        return;
    if (b->len >= max) {
        run->truncated = true;
        return;
    }
    size_t n = t.len, room = (size_t)(max - b->len);
    if (n > room) {
        n = room;
        while (n > 0 && ((uint8_t)t.ptr[n] & 0xC0) == 0x80)
            n--;
        run->truncated = true;
    }
    if (n)
        rc_buf_append(b, t.ptr, n);
}

static void table_put(struct rc_run *run, struct rc_kv **tab, uint32_t *n, uint32_t *cap,
                      struct rc_str key, struct rc_str val)
{
    for (uint32_t i = 0; i < *n; i++) {
        if (blob_eq((*tab)[i].key, key.ptr, key.len)) {
            struct rc_blob *nv = rc_blob_copy(val.ptr, val.len);
            if (nv) {
                rc_blob_release((*tab)[i].val);
                (*tab)[i].val = nv;
            }
            return;
        }
    }
    if (*n >= RC_SNAP_MAX_TABLE) {
        run->truncated = true;
        return;
    }
    if (*n == *cap) {
        uint32_t nc = *cap ? *cap * 2 : 4;
        struct rc_kv *nt = rc_realloc(*tab, nc * sizeof(*nt));
        if (!nt)
            return;
        *tab = nt;
        *cap = nc;
    }
    struct rc_blob *k = rc_blob_copy(key.ptr, key.len);
    struct rc_blob *v = rc_blob_copy(val.ptr, val.len);
    if (!k || !v) {
        rc_blob_release(k);
        rc_blob_release(v);
        return;
    }
    (*tab)[*n].key = k;
    (*tab)[*n].val = v;
    (*n)++;
}

static void snap_apply(struct rc_run *run, const struct rc_event *ev, int64_t at)
{
    const struct rc_config *cfg = rc_runs_config(run->runs);
    struct rc_run_snap *s;
    switch (ev->type) {
    case RC_EV_THINKING:
    case RC_EV_DELTA:
        if (!ev->has_text || ev->text.len == 0 || !(s = snap_get(run)))
            return;
        text_append(run, ev->type == RC_EV_THINKING ? &s->thinking : &s->output, ev->text,
                    cfg->snapshot_text_max);
        return;
    case RC_EV_TOOL:
        if (ev->tool_raw.len && (s = snap_get(run)))
            table_put(run, &s->tools, &s->n_tools, &s->cap_tools, ev->tool_id_raw, ev->tool_raw);
        return;
    case RC_EV_VERIFICATION:
        if (ev->item_raw.len && (s = snap_get(run)))
            table_put(run, &s->verif, &s->n_verif, &s->cap_verif, ev->item_id_raw, ev->item_raw);
        return;
    case RC_EV_PHASE:
        if (!ev->phase.len || !(s = snap_get(run)))
            return;
        if (s->n_phases >= RC_SNAP_MAX_PHASES) {
            run->truncated = true;
            return;
        }
        if (s->n_phases == s->cap_phases) {
            uint32_t nc = s->cap_phases ? s->cap_phases * 2 : 4;
            struct rc_phase_at *np = rc_realloc(s->phases, nc * sizeof(*np));
            if (!np)
                return;
            s->phases = np;
            s->cap_phases = nc;
        }
        s->phases[s->n_phases].phase = rc_blob_hold(run->phase);
        s->phases[s->n_phases].at = at;
        s->n_phases++;
        return;
    default:
        return;
    }
}

/* Encodes the run's `snap` into a new blob (NULL on ENOMEM). */
static struct rc_blob *snap_encode(struct rc_run *run)
{
    if (X_TOMB(run))
        return rc_blob_hold(X_TOMB(run));
    struct rc_run_snap *s = run->snap;
    struct rc_proto_snap p;
    memset(&p, 0, sizeof(p));
    p.run = blob_str(run->name);
    p.conv = blob_str(run->conv);
    p.epoch = rc_runs_epoch(run->runs);
    p.seq = run->seq;
    p.status = (enum rc_run_status)run->status;
    p.phase = blob_str(run->phase);
    p.created_at = run->created_at;
    p.started_at = run->started_at;
    p.last_event_at = run->last_event_at;
    p.ended_at = X_ENDED(run);
    p.terminal_raw = blob_str(X_TERMINAL(run));
    p.truncated = run->truncated;
    struct rc_snap_phase *ph = NULL;
    struct rc_str *tools = NULL, *verif = NULL;
    if (s) {
        p.thinking.ptr = (const char *)s->thinking.data;
        p.thinking.len = (uint32_t)s->thinking.len;
        p.output.ptr = (const char *)s->output.data;
        p.output.len = (uint32_t)s->output.len;
        ph = rc_malloc((s->n_phases + 1) * sizeof(*ph));
        tools = rc_malloc((s->n_tools + 1) * sizeof(*tools));
        verif = rc_malloc((s->n_verif + 1) * sizeof(*verif));
        if (!ph || !tools || !verif) {
            rc_free(ph);
            rc_free(tools);
            rc_free(verif);
            return NULL;
        }
        for (uint32_t i = 0; i < s->n_phases; i++) {
            ph[i].phase = blob_str(s->phases[i].phase);
            ph[i].at = s->phases[i].at;
        }
        for (uint32_t i = 0; i < s->n_tools; i++)
            tools[i] = blob_str(s->tools[i].val);
        for (uint32_t i = 0; i < s->n_verif; i++)
            verif[i] = blob_str(s->verif[i].val);
        p.phases = ph;
        p.n_phases = s->n_phases;
        p.tools = tools;
        p.n_tools = s->n_tools;
        p.verification = verif;
        p.n_verification = s->n_verif;
    }
    struct rc_buf b;
    rc_buf_init(&b);
    struct rc_blob *out = NULL;
    if (rc_proto_encode_snap(&b, &p) == 0)
        out = rc_blob_copy(b.data, b.len);
    rc_buf_fini(&b);
    rc_free(ph);
    rc_free(tools);
    rc_free(verif);
    return out;
}

/* ---------------------------------------------------------------------- */
/* Idempotency ids: the last --idempotency-window accepted ids -> seq       */

/*
 * Keys are normalised: an integer id is the same id whatever msgpack width
 * the publisher used (`05` and `cd 00 05`), so the key is a tag byte ('u':
 * unsigned integer, 8 bytes big-endian follow; 's': the string's bytes
 * follow).  A string "5" and the integer 5 are different ids.
 */
#define IDEM_KEY_MAX (1 + 1024) /* tag + the largest --max-id-bytes */

struct idem_key {
    uint8_t b[IDEM_KEY_MAX];
    size_t len;
};

/* false when the event has no id (or an id too long to be a key, which the
 * decoder's --max-id-bytes check rules out) */
static bool idem_key_of(const struct rc_event *ev, struct idem_key *k)
{
    if (!ev->id_raw.len)
        return false;
    if (ev->id_is_uint) {
        k->b[0] = 'u';
        for (int i = 0; i < 8; i++)
            k->b[1 + i] = (uint8_t)(ev->id_uint >> (56 - 8 * i));
        k->len = 9;
        return true;
    }
    if (ev->id_str.len > IDEM_KEY_MAX - 1)
        return false;
    k->b[0] = 's';
    if (ev->id_str.len)
        memcpy(k->b + 1, ev->id_str.ptr, ev->id_str.len);
    k->len = 1 + ev->id_str.len;
    return true;
}

/*
 * A FIFO ring of entries in acceptance order (at most the window; grown by
 * doubling up to it, so a run with few ids stays small) and an
 * open-addressed index (linear probing, ring positions, deletion by
 * backward shift so no tombstones accumulate).  When the ring is full at
 * the window, the oldest entry is evicted: its index slot is deleted and
 * its ring position reused.  O(1) per event, memory bounded by the window.
 */
struct rc_idem_e {
    uint64_t h;
    uint64_t seq;
    struct rc_blob *key; /* normalised key */
};

#define IDEM_NONE UINT32_MAX

struct rc_idem {
    struct rc_idem_e *ring; /* rcap entries; [head, head + n) mod rcap in use */
    uint32_t rcap, head, n;
    uint32_t *ix; /* icap slots (a power of two >= 2 * rcap): ring positions */
    uint32_t icap;
};

static uint32_t idem_probe(const struct rc_idem *d, uint64_t h, const struct idem_key *k)
{
    for (uint32_t i = (uint32_t)h & (d->icap - 1);; i = (i + 1) & (d->icap - 1)) {
        uint32_t p = d->ix[i];
        if (p == IDEM_NONE)
            return i;
        const struct rc_idem_e *e = &d->ring[p];
        if (e->h == h && blob_eq(e->key, k->b, k->len))
            return i;
    }
}

static bool idem_find(const struct rc_run *run, const struct idem_key *k, uint64_t *seq)
{
    if (X_TERMID(run) && blob_eq(X_TERMID(run), k->b, k->len)) {
        *seq = run->seq; /* the terminal is always the last seq */
        return true;
    }
    const struct rc_idem *d = run->idem;
    if (!d || !d->n)
        return false;
    uint32_t p = d->ix[idem_probe(d, hash64(k->b, k->len), k)];
    if (p == IDEM_NONE)
        return false;
    *seq = d->ring[p].seq;
    return true;
}

static void idem_ix_put(struct rc_idem *d, uint32_t p)
{
    uint32_t i = (uint32_t)d->ring[p].h & (d->icap - 1);
    while (d->ix[i] != IDEM_NONE)
        i = (i + 1) & (d->icap - 1);
    d->ix[i] = p;
}

/* Removes ring position p from the index (backward-shift deletion). */
static void idem_ix_del(struct rc_idem *d, uint32_t p)
{
    uint32_t mask = d->icap - 1;
    uint32_t i = (uint32_t)d->ring[p].h & mask;
    while (d->ix[i] != p)
        i = (i + 1) & mask;
    for (uint32_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        uint32_t q = d->ix[j];
        if (q == IDEM_NONE)
            break;
        uint32_t home = (uint32_t)d->ring[q].h & mask;
        /* q may move into the hole at i unless its home lies in (i, j] */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            d->ix[i] = q;
            i = j;
        }
    }
    d->ix[i] = IDEM_NONE;
}

/* Grows the ring to ncap entries (oldest first at 0) and rebuilds the
 * index; false on ENOMEM (the table is unchanged). */
static bool idem_grow(struct rc_idem *d, uint32_t ncap)
{
    uint32_t icap = 8;
    while (icap < 2 * ncap)
        icap *= 2;
    struct rc_idem_e *ring = rc_malloc((size_t)ncap * sizeof(*ring));
    uint32_t *ix = rc_malloc((size_t)icap * sizeof(*ix));
    if (!ring || !ix) {
        rc_free(ring);
        rc_free(ix);
        return false;
    }
    for (uint32_t i = 0; i < d->n; i++)
        ring[i] = d->ring[(d->head + i) % d->rcap];
    rc_free(d->ring);
    rc_free(d->ix);
    d->ring = ring;
    d->rcap = ncap;
    d->head = 0;
    d->ix = ix;
    d->icap = icap;
    for (uint32_t i = 0; i < icap; i++)
        d->ix[i] = IDEM_NONE;
    for (uint32_t i = 0; i < d->n; i++)
        idem_ix_put(d, i);
    return true;
}

static void idem_add(struct rc_run *run, const struct idem_key *k, uint64_t seq)
{
    uint64_t window = rc_runs_config(run->runs)->idempotency_window;
    if (window > UINT32_MAX / 4)
        window = UINT32_MAX / 4;
    if (!run->idem) {
        run->idem = rc_calloc(1, sizeof(*run->idem));
        if (!run->idem)
            return;
    }
    struct rc_idem *d = run->idem;
    if (d->n == d->rcap && d->rcap < window) {
        uint64_t nc = d->rcap ? (uint64_t)d->rcap * 2 : 8;
        if (nc > window)
            nc = window;
        if (!idem_grow(d, (uint32_t)nc) && d->n == 0)
            return;
    }
    struct rc_blob *kb = rc_blob_copy(k->b, k->len);
    if (!kb)
        return;
    uint32_t p;
    if (d->n == d->rcap) {
        /* full at the window (or could not grow): evict the oldest */
        p = d->head;
        idem_ix_del(d, p);
        rc_blob_release(d->ring[p].key);
        d->head = (d->head + 1) % d->rcap;
        d->n--;
    } else {
        p = (d->head + d->n) % d->rcap;
    }
    d->ring[p].h = hash64(k->b, k->len);
    d->ring[p].seq = seq;
    d->ring[p].key = kb;
    d->n++;
    idem_ix_put(d, p);
}

static void idem_free(struct rc_run *run)
{
    struct rc_idem *d = run->idem;
    if (!d)
        return;
    for (uint32_t i = 0; i < d->n; i++)
        rc_blob_release(d->ring[(d->head + i) % d->rcap].key);
    rc_free(d->ring);
    rc_free(d->ix);
    rc_free(d);
    run->idem = NULL;
}

/* ---------------------------------------------------------------------- */
/* Subscribers                                                             */

struct rc_sub_e {
    struct rc_actor *actor; /* held */
    uint64_t sub_id;
    bool shadow; /* the same actor is already listed: no live delivery */
    bool dead;
};

struct rc_run_subs {
    struct rc_sub_e *v;
    uint32_t n, cap;
};

static void frame_free(struct rc_msg *msg)
{
    struct rc_sub_frame *f = (struct rc_sub_frame *)msg;
    rc_blob_release(f->blob);
    rc_blob_release(f->run);
    rc_free(f);
}

/* Sends one frame; RC_ECLOSED when the subscriber has stopped. */
static int send_frame(struct rc_run *run, struct rc_actor *to, uint64_t sub_id, struct rc_blob *b,
                      enum rc_frame_kind kind, uint64_t seq, bool terminal, uint64_t recv_ns,
                      bool replay)
{
    struct rc_metrics *m = rc_runs_metrics(run->runs);
    struct rc_sub_frame *f =
        (struct rc_sub_frame *)rc_msg_new(sizeof(struct rc_sub_frame), RC_MSG_SUB_FRAME);
    if (!f)
        return RC_ENOMEM;
    f->hdr.free_fn = frame_free;
    f->blob = rc_blob_hold(b);
    f->run = rc_blob_hold(run->name);
    f->sub_id = sub_id;
    f->seq = seq;
    f->recv_ns = recv_ns;
    f->kind = (uint8_t)kind;
    f->terminal = terminal;
    f->replay = replay;
    int rc = rc_actor_send(to, &f->hdr);
    if (rc != 0) {
        rc_msg_free(&f->hdr);
        rc_metric_add(&m->frames_dropped, 1);
        return rc;
    }
    rc_metric_add(&m->frames_out, 1);
    return 0;
}

static void subs_compact(struct rc_run *run)
{
    struct rc_run_subs *s = run->subs;
    struct rc_metrics *m = rc_runs_metrics(run->runs);
    uint32_t j = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->v[i].dead) {
            rc_actor_release(s->v[i].actor);
            rc_metric_sub(&m->subscriptions, 1);
        } else {
            s->v[j++] = s->v[i];
        }
    }
    s->n = j;
}

/* Marks entry i (and its shadows when the actor is gone) dead, promoting a
 * shadow of the same actor when only this subscription ends. */
static void subs_kill(struct rc_run_subs *s, uint32_t i, bool actor_gone)
{
    struct rc_actor *a = s->v[i].actor;
    bool was_primary = !s->v[i].shadow;
    s->v[i].dead = true;
    for (uint32_t j = 0; j < s->n; j++) {
        if (j == i || s->v[j].actor != a || s->v[j].dead)
            continue;
        if (actor_gone) {
            s->v[j].dead = true;
        } else if (was_primary) {
            s->v[j].shadow = false;
            break;
        }
    }
}

static void subs_add(struct rc_run *run, struct rc_actor *a, uint64_t sub_id)
{
    if (!run->subs) {
        run->subs = rc_calloc(1, sizeof(*run->subs));
        if (!run->subs)
            return;
    }
    struct rc_run_subs *s = run->subs;
    bool shadow = false;
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->v[i].actor == a) {
            if (s->v[i].sub_id == sub_id)
                return; /* already attached under this id */
            shadow = true;
        }
    }
    if (s->n == s->cap) {
        uint32_t nc = s->cap ? s->cap * 2 : 2;
        struct rc_sub_e *nv = rc_realloc(s->v, nc * sizeof(*nv));
        if (!nv)
            return;
        s->v = nv;
        s->cap = nc;
    }
    s->v[s->n].actor = rc_actor_hold(a);
    s->v[s->n].sub_id = sub_id;
    s->v[s->n].shadow = shadow;
    s->v[s->n].dead = false;
    s->n++;
    rc_metric_add(&rc_runs_metrics(run->runs)->subscriptions, 1);
}

static void subs_free(struct rc_run *run)
{
    struct rc_run_subs *s = run->subs;
    if (!s)
        return;
    for (uint32_t i = 0; i < s->n; i++)
        s->v[i].dead = true;
    subs_compact(run);
    rc_free(s->v);
    rc_free(s);
    run->subs = NULL;
}

/* Sends the event to the live subscribers; true when the run has any
 * (then b may be held by their frames). */
static bool fanout(struct rc_run *run, struct rc_blob *b, uint64_t seq, bool terminal,
                   uint64_t recv_ns)
{
    struct rc_run_subs *s = run->subs;
    if (!s || !s->n)
        return false;
    bool any_dead = false;
    for (uint32_t i = 0; i < s->n; i++) {
        struct rc_sub_e *e = &s->v[i];
        if (e->shadow || e->dead)
            continue;
        if (send_frame(run, e->actor, e->sub_id, b, RC_FRAME_EV, seq, terminal, recv_ns, false) ==
            RC_ECLOSED) {
            subs_kill(s, i, true);
            any_dead = true;
        }
    }
    if (any_dead)
        subs_compact(run);
    return true;
}

/* ---------------------------------------------------------------------- */
/* Watchdog                                                                */

struct rc_run_timeout {
    struct rc_blob *phase;
    uint64_t ms;
};

struct rc_run_limits {
    bool has_default, has_deadline;
    uint64_t default_ms, deadline_ms;
    uint32_t n;
    struct rc_run_timeout *v;
};

static void limits_free(struct rc_run *run)
{
    struct rc_run_limits *l = X_LIM(run);
    if (!l)
        return;
    for (uint32_t i = 0; i < l->n; i++)
        rc_blob_release(l->v[i].phase);
    rc_free(l->v);
    rc_free(l);
    run->x->lim = NULL;
}

/* The idle timeout of the current phase: per-run phase entry, per-run "*",
 * --phase-timeout of the phase, --watchdog.  Per-run values are capped by
 * --max-watchdog.  0: no idle watchdog. */
static uint64_t idle_timeout(const struct rc_run *run)
{
    const struct rc_config *cfg = rc_runs_config(run->runs);
    const struct rc_run_limits *l = X_LIM(run);
    if (l) {
        for (uint32_t i = 0; i < l->n; i++)
            if (run->phase && blob_eq(l->v[i].phase, run->phase->data, run->phase->len))
                return l->v[i].ms;
        if (l->has_default)
            return l->default_ms;
    }
    if (run->phase)
        return rc_config_phase_timeout_ms(cfg, (const char *)run->phase->data, run->phase->len);
    return cfg->watchdog_ms;
}

static uint64_t deadline_ms(const struct rc_run *run)
{
    const struct rc_run_limits *l = X_LIM(run);
    if (l && l->has_deadline)
        return l->deadline_ms;
    return rc_runs_config(run->runs)->run_deadline_ms;
}

/* The earliest due time (mono ms) and its cause; UINT64_MAX: none. */
static uint64_t watchdog_due(const struct rc_run *run, enum rc_term_cause *cause)
{
    const struct rc_config *cfg = rc_runs_config(run->runs);
    uint64_t due = UINT64_MAX, t;
    *cause = RC_TERM_WATCHDOG_TIMEOUT;
    if ((t = deadline_ms(run)) != 0 && run->created_mono + t < due) {
        due = run->created_mono + t;
        *cause = RC_TERM_DEADLINE_EXCEEDED;
    }
    if (run->gone && cfg->publisher_grace_ms && run->x->gone_mono + cfg->publisher_grace_ms < due) {
        due = run->x->gone_mono + cfg->publisher_grace_ms;
        *cause = RC_TERM_PUBLISHER_GONE;
    }
    if ((t = idle_timeout(run)) != 0 && run->last_event_mono + t < due) {
        due = run->last_event_mono + t;
        *cause = RC_TERM_WATCHDOG_TIMEOUT;
    }
    return due;
}

static void arm_at(struct rc_run *run, uint64_t due)
{
    run->timer_due = due;
    if (due == UINT64_MAX) {
        rc_timer_cancel(rc_runs_system(run->runs), &run->timer);
        return;
    }
    /* Absolute, in ns: due is a whole ms on the same monotonic clock, so
     * the wheel fires at it, not up to a ms later (a delay from a ms
     * floor of now would round).  rc_timer_arm_at clamps far times. */
    uint64_t due_ns = due < UINT64_MAX / 1000000u ? due * 1000000u : UINT64_MAX;
    rc_timer_arm_at(rc_runs_system(run->runs), &run->timer, due_ns);
}

/* A due time may have moved earlier: re-arm only then (lazy otherwise). */
static void watchdog_tighten(struct rc_run *run, uint64_t now)
{
    enum rc_term_cause c;
    uint64_t due = watchdog_due(run, &c);
    if (due < run->timer_due)
        arm_at(run, due);
}

void rc_run_arm_initial(struct rc_run *run)
{
    enum rc_term_cause c;
    rc_timer_init(&run->timer, run->actor, 0);
    uint64_t now = rc_clock_mono_ms();
    run->created_mono = run->last_event_mono = now;
    arm_at(run, watchdog_due(run, &c));
}

static void apply_start(struct rc_run *run, const struct rc_event *ev, uint64_t now)
{
    const struct rc_config *cfg = rc_runs_config(run->runs);
    if (!ev->n_timeouts && !ev->has_deadline)
        return;
    struct rc_run_xtra *x = xtra(run);
    if (!x)
        return;
    if (!x->lim) {
        x->lim = rc_calloc(1, sizeof(*x->lim));
        if (!x->lim)
            return;
    }
    struct rc_run_limits *l = x->lim;
    if (ev->has_deadline) {
        l->has_deadline = true;
        l->deadline_ms = ev->deadline_ms;
    }
    for (uint32_t i = 0; i < ev->n_timeouts; i++) {
        const struct rc_phase_timeout *t = &ev->timeouts[i];
        uint64_t ms = t->ms;
        if (ms > cfg->max_watchdog_ms)
            ms = cfg->max_watchdog_ms;
        if (ms == 0)
            ms = 1; /* a per-run 0 cannot switch the watchdog off */
        if (t->phase.len == 1 && t->phase.ptr[0] == '*') {
            l->has_default = true;
            l->default_ms = ms;
            continue;
        }
        uint32_t j;
        for (j = 0; j < l->n; j++)
            if (blob_eq(l->v[j].phase, t->phase.ptr, t->phase.len))
                break;
        if (j == l->n) {
            struct rc_run_timeout *nv = rc_realloc(l->v, (l->n + 1) * sizeof(*nv));
            struct rc_blob *p = rc_blob_copy(t->phase.ptr, t->phase.len);
            if (!nv || !p) {
                if (nv)
                    l->v = nv;
                rc_blob_release(p);
                continue;
            }
            l->v = nv;
            l->v[j].phase = p;
            l->n++;
        }
        l->v[j].ms = ms;
    }
    watchdog_tighten(run, now);
}

/* ---------------------------------------------------------------------- */
/* Accepting an event                                                      */

struct accept_ctx {
    uint32_t pipe;
    int64_t recv_wall_ms;
    uint64_t recv_ns;
    uint64_t now_ms; /* mono; RC_NOW_UNREAD: read the clock when needed */
    bool synthetic;
};

/* The ingest path reads the monotonic clock only for the events that arm
 * or end a watchdog (start, phase, terminals), not once per run message. */
#define RC_NOW_UNREAD UINT64_MAX

static inline uint64_t accept_now(const struct accept_ctx *c)
{
    return c->now_ms != RC_NOW_UNREAD ? c->now_ms : rc_clock_mono_ms();
}

static void set_status(struct rc_run *run, enum rc_run_status st)
{
    struct rc_metrics *m = rc_runs_metrics(run->runs);
    if (run->status == st)
        return;
    if (run->status == RC_RUN_PENDING)
        rc_metric_sub(&m->runs_pending, 1);
    else if (run->status == RC_RUN_RUNNING)
        rc_metric_sub(&m->runs_running, 1);
    if (st == RC_RUN_RUNNING)
        rc_metric_add(&m->runs_running, 1);
    else if (st == RC_RUN_COMPLETED)
        rc_metric_add(&m->runs_completed, 1);
    else if (st == RC_RUN_FAILED)
        rc_metric_add(&m->runs_failed, 1);
    run->status = (uint8_t)st;
}

static void end_run(struct rc_run *run, enum rc_term_cause cause, uint64_t now)
{
    const struct rc_config *cfg = rc_runs_config(run->runs);
    struct rc_metrics *m = rc_runs_metrics(run->runs);
    rc_metric_add(&m->terminals[cause], 1);
    rc_metric_add(&m->runs_retained, 1);
    run->state = RC_RS_RETAINED;
    rc_runs_run_ended(run->runs, run);
    rc_runs_pipe_untrack(run->runs, run);
    subs_free(run); /* every subscriber has the terminal; nothing more will come */
    limits_free(run);
    arm_at(run, now + cfg->retention_ms);
}

static void publisher_gone(struct rc_run *run, uint32_t pipe, uint64_t at_ms);

static enum rc_proto_code accept_event(struct rc_run *run, const struct rc_event *ev,
                                       const struct accept_ctx *c, uint64_t *seq_out, bool *dup_out)
{
    struct rc_metrics *m = rc_runs_metrics(run->runs);
    uint64_t seq;
    struct idem_key key;
    bool has_key = idem_key_of(ev, &key);
    if (has_key && idem_find(run, &key, &seq)) {
        *seq_out = seq;
        *dup_out = true;
        rc_metric_add(&m->events_dup, 1);
        return RC_PROTO_OK;
    }
    if (run->state != RC_RS_ACTIVE) {
        rc_metric_add(&m->events_rejected[RC_PROTO_RUN_TERMINAL], 1);
        rc_metric_add(&m->run_terminal_rejections, 1);
        return RC_PROTO_RUN_TERMINAL;
    }
    if (ev->conv.len && !run->conv) {
        run->conv = rc_blob_copy(ev->conv.ptr, ev->conv.len);
        if (run->conv)
            rc_runs_bind_conv(run->runs, run);
    }
    bool terminal = rc_event_type_is_terminal(ev->type);
    seq = run->seq + 1;
    struct rc_ev_meta meta = {
        .epoch = rc_runs_epoch(run->runs),
        .seq = seq,
        .ts = c->recv_wall_ms,
        .conv = blob_str(run->conv),
        .synthetic = c->synthetic,
    };
    /* One exact allocation.  A typical event is written into a scratch
     * buffer on the stack and copied (a short memcpy costs less than
     * computing the exact size first); a large one is sized exactly and
     * written in place. */
    uint8_t scratch[1024];
    struct rc_blob *b;
    if (rc_proto_ev_bound(ev, &meta) <= sizeof(scratch)) {
        uint8_t *eend = rc_proto_put_ev(scratch, ev, &meta);
        b = rc_blob_copy(scratch, (size_t)(eend - scratch));
    } else {
        size_t esize = rc_proto_ev_size(ev, &meta);
        b = rc_blob_new(esize);
        if (b) {
            uint8_t *eend = rc_proto_put_ev(b->data, ev, &meta);
            assert((size_t)(eend - b->data) == esize);
            (void)eend;
        }
    }
    if (!b)
        return RC_PROTO_INTERNAL;
    run->seq = seq;
    if (has_key && !terminal)
        idem_add(run, &key, seq);
    if (hdelta)
        hdelta->accepted++;
    else
        rc_metric_add(&m->events_accepted, 1);

    /* state machine: pending -> running -> completed | failed */
    if (terminal) {
        set_status(run, ev->type == RC_EV_COMPLETE ? RC_RUN_COMPLETED : RC_RUN_FAILED);
        struct rc_run_xtra *x = xtra(run);
        if (x) {
            x->ended_at = c->recv_wall_ms;
            if (has_key)
                x->term_id = rc_blob_copy(key.b, key.len);
            x->terminal = rc_blob_hold(b);
        }
    } else if (ev->type != RC_EV_START && run->status == RC_RUN_PENDING) {
        set_status(run, RC_RUN_RUNNING);
        run->started_at = c->recv_wall_ms;
    }
    run->last_event_at = c->recv_wall_ms;
    run->last_type = (uint8_t)ev->type;
    if (!c->synthetic) {
        /* idleness counts from the receipt (stamped at the ingress), not
         * from when this actor got to the event; never backwards */
        uint64_t at = c->recv_ns / 1000000u;
        if (at > run->last_event_mono)
            run->last_event_mono = at;
        /* an event from the pipe already known closed was sent before the
         * close: the publisher is not back */
        if (!(run->gone && c->pipe == run->pipe))
            run->gone = false;
        if (c->pipe != run->pipe && !terminal && rc_runs_pipe_track(run->runs, run, c->pipe))
            publisher_gone(run, c->pipe, rc_clock_mono_ms());
    }
    if (ev->type == RC_EV_PHASE && ev->phase.len &&
        !blob_eq(run->phase, ev->phase.ptr, ev->phase.len)) {
        struct rc_blob *p = rc_blob_copy(ev->phase.ptr, ev->phase.len);
        if (p) {
            rc_blob_release(run->phase);
            run->phase = p;
        }
    }
    snap_apply(run, ev, c->recv_wall_ms);
    bool shared = fanout(run, b, seq, terminal, c->recv_ns);
    hist_push(run, b, seq, terminal, shared); /* takes over this reference */

    if (terminal) {
        enum rc_term_cause cause = ev->type == RC_EV_COMPLETE ? RC_TERM_COMPLETE : RC_TERM_ERROR;
        if (!c->synthetic) {
            char name[130];
            cstr(name, sizeof(name), run->name);
            char conv[130];
            cstr(conv, sizeof(conv), run->conv);
            rc_log(RC_LOG_DEBUG, "run", name, conv[0] ? conv : NULL, "run %s at seq %" PRIu64,
                   cause == RC_TERM_COMPLETE ? "completed" : "failed", seq);
            end_run(run, cause, accept_now(c));
        }
        /* synthesized terminals: the caller ends the run with its cause */
    } else if (ev->type == RC_EV_START) {
        apply_start(run, ev, accept_now(c));
    } else if (ev->type == RC_EV_PHASE) {
        watchdog_tighten(run, accept_now(c));
    }
    *seq_out = seq;
    *dup_out = false;
    return RC_PROTO_OK;
}

static const char *code_message(enum rc_proto_code code)
{
    switch (code) {
    case RC_PROTO_RUN_TERMINAL:
        return "the run already ended; no event is accepted after its terminal";
    case RC_PROTO_INTERNAL:
        return "the broker could not encode the event (out of memory)";
    default:
        return rc_proto_code_name(code);
    }
}

static void handle_ingest(struct rc_run *run, struct rc_ingest_msg *m)
{
    const struct rc_proto_limits *lim = rc_runs_limits(run->runs);
    struct accept_ctx c = {
        .pipe = m->pipe,
        .recv_wall_ms = m->recv_wall_ms,
        .recv_ns = m->recv_ns,
        .now_ms = RC_NOW_UNREAD,
        .synthetic = false,
    };
    m->handled = true;
    /* A full history evicts its oldest event per event: one that was
     * handed out is released by its count (a load), and the bytes of any
     * go to the next encoding (stores), both to memory rarely in cache:
     * start them now, so they overlap with the decode and encode of the
     * first events instead of stalling. */
    const struct rc_run_hist *h = run->hist && !hist_is_one(run) ? run->hist : NULL;
    if (h && h->count > 0 &&
        (uint64_t)h->count + m->n > rc_runs_config(run->runs)->history_max_events) {
        uint32_t k = m->n < HIST_PREFETCH ? m->n : HIST_PREFETCH;
        for (uint32_t i = 0; i < k && i < h->count; i++)
            hist_prefetch_blob(h->ring[ring_pos(h, i)].b);
    }
    /* a dispatch that runs this turn inline may collect for it (it flushes
     * into the same counters: every run of a broker shares them) */
    struct rc_run_deltas d;
    bool own = hdelta == NULL;
    if (own)
        rc_run_deltas_begin(&d);
    for (uint32_t i = 0; i < m->n; i++) {
        struct rc_event ev;
        rc_ev_unpack(&m->slots[i], &ev, lim);
        uint64_t seq = 0;
        bool dup = false;
        enum rc_proto_code code = accept_event(run, &ev, &c, &seq, &dup);
        if (m->ack) {
            struct rc_proto_ack_result *r = &m->ack->results[m->slots[i].index];
            r->code = code;
            r->seq = seq;
            r->dup = dup;
            r->field = NULL;
            r->message = code == RC_PROTO_OK ? NULL : code_message(code);
        }
    }
    if (own)
        rc_run_deltas_end(&d, rc_runs_metrics(run->runs));
}

/* ---------------------------------------------------------------------- */
/* Synthesized terminals                                                   */

/* A bounded text builder for the synthesized message: snprintf cost more
 * than everything else in an expiry (a million of them in a mass expiry). */
struct sb {
    char *p;
    size_t n, cap; /* cap excludes the NUL */
};

static void sb_put(struct sb *b, const char *s, size_t n)
{
    if (n > b->cap - b->n)
        n = b->cap - b->n;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

#define SB_LIT(b, lit) sb_put((b), (lit), sizeof(lit) - 1)

static void sb_u64(struct sb *b, uint64_t v)
{
    char t[20];
    size_t i = sizeof(t);
    do {
        t[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sb_put(b, t + i, sizeof(t) - i);
}

static void sb_blob(struct sb *b, const struct rc_blob *x, const char *none)
{
    if (x && x->len)
        sb_put(b, (const char *)x->data, x->len);
    else
        sb_put(b, none, strlen(none));
}

/* "120 s", "1.5 s", "250 ms" */
static void sb_dur(struct sb *b, uint64_t ms)
{
    if (ms < 1000) {
        sb_u64(b, ms);
        SB_LIT(b, " ms");
        return;
    }
    sb_u64(b, ms / 1000);
    if (ms % 1000) {
        SB_LIT(b, ".");
        sb_u64(b, (ms % 1000) / 100);
    }
    SB_LIT(b, " s");
}

/* Pre-encoded msgpack bytes (room already reserved by the caller). */
#define MP_RAW(b, lit) rc_buf_append((b), (lit), sizeof(lit) - 1)

/*
 * Ends the run with a synthesized error terminal.  The event is built as a
 * struct rc_event straight away (its `error` and `data` maps encoded once
 * into one buffer) and accepted like a publisher's: no msgpack round trip
 * through the decoder, no snprintf, one reservation per buffer.
 */
static void synthesize(struct rc_run *run, enum rc_term_cause cause, uint64_t now)
{
    const struct rc_config *cfg = rc_runs_config(run->runs);
    uint64_t idle = now - run->last_event_mono;
    char msgbuf[400];
    struct sb m = {msgbuf, 0, sizeof(msgbuf) - 1};
    msgbuf[0] = 0;
    const char *code;
    size_t code_len;
    SB_LIT(&m, "Terminal event never received from backend: ");
    switch (cause) {
    case RC_TERM_DEADLINE_EXCEEDED:
        code = "deadline_exceeded";
        code_len = sizeof("deadline_exceeded") - 1;
        SB_LIT(&m, "the run did not end within its deadline of ");
        sb_dur(&m, deadline_ms(run));
        SB_LIT(&m, " (phase ");
        break;
    case RC_TERM_PUBLISHER_GONE:
        code = "publisher_gone";
        code_len = sizeof("publisher_gone") - 1;
        SB_LIT(&m, "the publisher's connection closed and no event came within the ");
        sb_dur(&m, cfg->publisher_grace_ms);
        SB_LIT(&m, " grace period (phase ");
        break;
    default:
        code = "watchdog_timeout";
        code_len = sizeof("watchdog_timeout") - 1;
        SB_LIT(&m, "no event for ");
        sb_dur(&m, idle);
        SB_LIT(&m, " in phase ");
        break;
    }
    sb_blob(&m, run->phase, "none");
    sb_put(&m, cause == RC_TERM_WATCHDOG_TIMEOUT ? " (" : ", ", 2);
    if (run->seq) {
        const char *last = rc_event_type_name((enum rc_event_type)run->last_type);
        SB_LIT(&m, "last event: ");
        sb_put(&m, last, strlen(last));
        if (run->last_type == RC_EV_CUSTOM)
            SB_LIT(&m, "...");
        SB_LIT(&m, ", seq ");
        sb_u64(&m, run->seq);
    } else {
        SB_LIT(&m, "no event yet");
    }
    SB_LIT(&m, ")");

    /* `error` {code, message} then `data` {phase, idle_ms, last_seq}, one
     * buffer reserved once.  96 + the strings bounds the two maps (their
     * keys and headers take at most 67 bytes); with phase names of at most
     * 64 bytes and msgbuf's 400 that is at most 576, so the buffer lives on
     * the stack: one malloc + free fewer per expiry, which counts when a
     * million runs expire together (rc_buf moves to the heap should those
     * limits ever grow). */
    uint8_t stackbuf[1024];
    size_t phase_len = run->phase ? run->phase->len : 0;
    size_t maps_max = 96 + code_len + m.n + phase_len;
    struct rc_buf b;
    rc_buf_init_on(&b, stackbuf, sizeof(stackbuf));
    int rc = rc_buf_reserve(&b, maps_max);
    /* The map headers and keys are constant: appended pre-encoded (fixmap
     * 0x8N, fixstr 0xa0 | length), the same bytes rc_mpw_map / rc_mpw_str
     * would write, five appends instead of seven writer calls. */
    if (rc == 0) {
        MP_RAW(&b, "\x82\xa4"
                   "code");
        rc_mpw_str(&b, code, code_len);
        MP_RAW(&b, "\xa7"
                   "message");
        rc_mpw_str(&b, m.p, m.n);
    }
    size_t error_len = b.len;
    if (rc == 0) {
        MP_RAW(&b, "\x83\xa5"
                   "phase");
        if (run->phase)
            rc_mpw_str(&b, (const char *)run->phase->data, run->phase->len);
        else
            rc_mpw_nil(&b);
        MP_RAW(&b, "\xa7"
                   "idle_ms");
        rc_mpw_uint(&b, idle);
        MP_RAW(&b, "\xa8"
                   "last_seq");
        rc_mpw_uint(&b, run->seq);
    }

    /* One warning per synthesized terminal, with the run's context, but
     * rate-limited (--log-ratelimit lines per second, then "suppressed N
     * similar messages"): when a million runs expire together, a million
     * lines would slow the synthesis itself.  The metrics count every one. */
    char name[130] = "", conv[130] = "";
    bool warn = rc_log_enabled(RC_LOG_WARN);
    if (warn) {
        cstr(name, sizeof(name), run->name);
        cstr(conv, sizeof(conv), run->conv);
        RC_LOG_RATELIMITED(RC_LOG_WARN, "supervisor", name, conv[0] ? conv : NULL, "%s: %s", code,
                           msgbuf);
    }

    struct rc_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.run = blob_str(run->name);
    ev.type = RC_EV_ERROR;
    ev.type_name.ptr = "error";
    ev.type_name.len = sizeof("error") - 1;
    ev.error_raw.ptr = (const char *)b.data;
    ev.error_raw.len = error_len;
    ev.error_code.ptr = code;
    ev.error_code.len = code_len;
    ev.error_message.ptr = m.p;
    ev.error_message.len = m.n;
    ev.data_raw.ptr = (const char *)b.data + error_len;
    ev.data_raw.len = b.len - error_len;
    struct accept_ctx c = {
        .pipe = 0,
        .recv_wall_ms = rc_clock_wall_ms(),
        .recv_ns = rc_clock_mono_ns(),
        .now_ms = now,
        .synthetic = true,
    };
    uint64_t seq;
    bool dup;
    enum rc_proto_code prc = rc == 0 ? accept_event(run, &ev, &c, &seq, &dup) : RC_PROTO_INTERNAL;
    if (prc != RC_PROTO_OK) {
        /* Cannot happen short of ENOMEM; end the run anyway (no event). */
        if (!warn) {
            cstr(name, sizeof(name), run->name);
            cstr(conv, sizeof(conv), run->conv);
        }
        rc_log(RC_LOG_CRITICAL, "supervisor", name, conv[0] ? conv : NULL,
               "could not synthesize the terminal (%s); ending the run without it",
               rc_proto_code_name(prc));
        set_status(run, RC_RUN_FAILED);
        if (xtra(run))
            run->x->ended_at = c.recv_wall_ms;
    }
    end_run(run, cause, now);
    rc_buf_fini(&b);
}

/* ---------------------------------------------------------------------- */
/* Subscriptions and queries                                               */

static void replay_from(struct rc_run *run, struct rc_actor *to, uint64_t sub_id, uint64_t since)
{
    if (!run->hist)
        return;
    for (uint64_t s = since + 1; s <= run->seq; s++) {
        struct rc_blob *b = hist_get(run, s);
        bool term = X_TERMINAL(run) && s == run->seq;
        if (send_frame(run, to, sub_id, b, RC_FRAME_EV, s, term, 0, true) == RC_ECLOSED)
            return;
    }
}

static void send_snap(struct rc_run *run, struct rc_actor *to, uint64_t sub_id)
{
    struct rc_blob *s = snap_encode(run);
    if (!s)
        return;
    send_frame(run, to, sub_id, s, RC_FRAME_SNAP, run->seq, run->state != RC_RS_ACTIVE, 0, false);
    rc_blob_release(s);
}

static void send_gap(struct rc_run *run, struct rc_actor *to, uint64_t sub_id, uint64_t from,
                     uint64_t to_seq)
{
    struct rc_buf b;
    rc_buf_init(&b);
    if (rc_proto_encode_gap(&b, blob_str(run->name), from, to_seq) == 0) {
        struct rc_blob *g = rc_blob_copy(b.data, b.len);
        if (g) {
            send_frame(run, to, sub_id, g, RC_FRAME_GAP, to_seq, false, 0, false);
            rc_blob_release(g);
        }
    }
    rc_buf_fini(&b);
}

static void handle_sub(struct rc_run *run, struct rc_sub_msg *m)
{
    struct rc_metrics *met = rc_runs_metrics(run->runs);
    bool has_since = m->has_since;
    uint64_t since = m->since;
    if (m->since_map) {
        struct rc_str map = blob_str(m->since_map);
        has_since = rc_proto_since_lookup(map, blob_str(run->name), &since);
    }
    bool epoch_ok = !m->has_epoch || m->epoch == rc_runs_epoch(run->runs);
    bool want_snap = m->snapshot == 1 || (m->snapshot == -1 && !has_since);
    struct rc_actor *to = m->subscriber;

    /* A conv/all subscription reports ended runs only when its since map
     * names them: a new all-runs subscriber is not flooded with the
     * snapshots of every retained and tombstoned run. */
    if (m->wide && !m->joined && run->state != RC_RS_ACTIVE && !has_since)
        return;

    if (m->joined) {
        /* The run joined the conversation after the subscription: send
         * everything from its first event (no resume: not counted). */
        if (hist_first(run) <= 1 && run->state != RC_RS_TOMBSTONE && run->state != RC_RS_RETIRED) {
            replay_from(run, to, m->sub_id, 0);
        } else if (run->seq > 0) {
            send_gap(run, to, m->sub_id, 1, hist_first(run) > 1 ? hist_first(run) - 1 : run->seq);
            send_snap(run, to, m->sub_id);
        }
        if (run->state == RC_RS_ACTIVE)
            subs_add(run, to, m->sub_id);
        return;
    }
    if (has_since && epoch_ok && since <= run->seq) {
        uint64_t first = hist_first(run);
        if (since >= run->seq) {
            rc_metric_add(&met->resumes_exact, 1); /* nothing missed */
        } else if (run->state != RC_RS_TOMBSTONE && run->state != RC_RS_RETIRED &&
                   first <= since + 1) {
            rc_metric_add(&met->resumes_exact, 1);
            replay_from(run, to, m->sub_id, since);
        } else {
            rc_metric_add(&met->resumes_gap, 1);
            uint64_t to_seq = first - 1;
            if (run->state == RC_RS_TOMBSTONE || run->state == RC_RS_RETIRED || to_seq > run->seq)
                to_seq = run->seq;
            send_gap(run, to, m->sub_id, since + 1, to_seq);
            send_snap(run, to, m->sub_id);
        }
    } else if (has_since) {
        /* another epoch (or a seq this run never reached): start over */
        rc_metric_add(&met->resumes_reset, 1);
        if (run->seq > 0)
            send_snap(run, to, m->sub_id);
    } else if (want_snap && run->seq > 0) {
        send_snap(run, to, m->sub_id);
    }
    if (run->state == RC_RS_ACTIVE)
        subs_add(run, to, m->sub_id);
}

static void handle_unsub(struct rc_run *run, struct rc_sub_msg *m)
{
    struct rc_run_subs *s = run->subs;
    if (!s)
        return;
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->v[i].actor == m->subscriber && s->v[i].sub_id == m->sub_id && !s->v[i].dead) {
            subs_kill(s, i, false);
            subs_compact(run);
            return;
        }
    }
}

/* The connection that delivered the run's last event closed at at_ms. */
static void publisher_gone(struct rc_run *run, uint32_t pipe, uint64_t at_ms)
{
    const struct rc_config *cfg = rc_runs_config(run->runs);
    if (run->state != RC_RS_ACTIVE || run->pipe != pipe || run->gone || !cfg->publisher_grace_ms)
        return;
    if (!xtra(run))
        return;       /* ENOMEM: the idle watchdog still ends the run */
    run->gone = true; /* run->x stays: `gone` implies it */
    run->x->gone_mono = at_ms;
    if (rc_log_enabled(RC_LOG_DEBUG)) {
        char name[130];
        cstr(name, sizeof(name), run->name);
        rc_log(RC_LOG_DEBUG, "supervisor", name, NULL,
               "publisher connection closed; waiting %" PRIu64 " ms for an event",
               cfg->publisher_grace_ms);
    }
    watchdog_tighten(run, rc_clock_mono_ms());
}

static void fill_summary(struct rc_run *run, struct rc_run_summary *s)
{
    memset(s, 0, sizeof(*s));
    cstr(s->run, sizeof(s->run), run->name);
    cstr(s->conv, sizeof(s->conv), run->conv);
    cstr(s->phase, sizeof(s->phase), run->phase);
    s->status = (enum rc_run_status)run->status;
    s->created_at = run->created_at;
    s->last_event_at = run->last_event_at;
    s->seq = run->seq;
    s->tombstone = run->state >= RC_RS_TOMBSTONE;
}

static void handle_query(struct rc_run *run, struct rc_query_msg *q)
{
    q->handled = true;
    if (q->hdr.type == RC_RMSG_SUMMARY) {
        struct rc_run_summary s;
        fill_summary(run, &s);
        rc_runs_list_add(q->list, &s);
    } else if (q->hdr.type == RC_RMSG_SNAP) {
        struct rc_blob *b = snap_encode(run);
        q->snap_cb(q->arg, b ? 0 : RC_ENOMEM, b);
        rc_blob_release(b);
    } else {
        uint64_t first = hist_count(run) ? hist_first(run) : 0;
        size_t n = 0;
        struct rc_blob **v = NULL;
        if (first) {
            uint64_t from = q->since + 1 > first ? q->since + 1 : first;
            if (from <= run->seq) {
                n = (size_t)(run->seq - from + 1);
                if (q->max && n > q->max)
                    n = q->max;
                v = rc_malloc(n * sizeof(*v));
                if (!v)
                    n = 0;
                for (size_t i = 0; i < n; i++)
                    v[i] = hist_get(run, from + i);
            }
        }
        q->events_cb(q->arg, 0, v, n, first, run->seq);
        rc_free(v);
    }
}

/* ---------------------------------------------------------------------- */
/* Life cycle                                                              */

struct rc_run *rc_run_new(struct rc_runs *runs, const char *name, size_t len, uint32_t hash)
{
    struct rc_run *run = rc_calloc(1, sizeof(*run));
    if (!run)
        return NULL;
    run->name = rc_blob_copy(name, len);
    if (!run->name) {
        rc_free(run);
        return NULL;
    }
    run->runs = runs;
    run->hash = hash;
    run->status = RC_RUN_PENDING;
    run->state = RC_RS_ACTIVE;
    run->created_at = rc_clock_wall_ms();
    run->timer_due = UINT64_MAX;
    return run;
}

static void to_tombstone(struct rc_run *run, uint64_t now)
{
    const struct rc_config *cfg = rc_runs_config(run->runs);
    struct rc_metrics *m = rc_runs_metrics(run->runs);
    struct rc_blob *s = snap_encode(run);
    hist_free(run);
    snap_free(run);
    idem_free(run);
    rc_blob_release(run->phase);
    run->phase = NULL;
    /* NULL on ENOMEM: snaps are then re-encoded from what is left */
    if (xtra(run))
        run->x->tomb_snap = s;
    else
        rc_blob_release(s);
    run->state = RC_RS_TOMBSTONE;
    rc_metric_sub(&m->runs_retained, 1);
    rc_metric_add(&m->runs_tombstoned, 1);
    arm_at(run, now + cfg->tombstone_ttl_ms);
}

static void handle_timer(struct rc_actor *self, struct rc_run *run, struct rc_msg_timer *t)
{
    if (!rc_timer_msg_current(t))
        return;
    uint64_t now = rc_clock_mono_ms();
    switch (run->state) {
    case RC_RS_ACTIVE: {
        enum rc_term_cause cause;
        uint64_t due = watchdog_due(run, &cause);
        uint64_t fired_ns = t->fired_ns; /* t may be freed below */
        if (now >= due && t->arg == 0 && rc_actor_mailbox_len(self) > 1) {
            /* Messages wait behind this one: events among them may have
             * been received before the due time but reached the mailbox
             * after the timer fired (a lagging ingress, a busy worker).
             * Look again after them, once: their receive stamps decide.
             * (The count includes messages of the current turn, so this
             * may defer needlessly; never wrongly.) */
            t->arg = 1;
            rc_msg_keep(&t->hdr);
            if (rc_actor_send(self, &t->hdr) == 0)
                return;
            rc_msg_free(&t->hdr); /* stopping: decide now */
        }
        if (now >= due) {
            struct rc_metrics *m = rc_runs_metrics(run->runs);
            uint64_t due_ns = due * 1000000u;
            uint64_t fire_late = fired_ns > due_ns ? fired_ns - due_ns : 0;
            rc_metrics_late(m->watchdog_fire_late, fire_late);
            rc_metric_add(&m->watchdog_fire_late_sum_us, fire_late / 1000u);
            rc_metric_add(&m->watchdog_fired, 1);
            synthesize(run, cause, now);
            uint64_t done = rc_clock_mono_ns();
            uint64_t emit_late = done > due_ns ? done - due_ns : 0;
            rc_metrics_late(m->watchdog_emit_late, emit_late);
            rc_metric_add(&m->watchdog_emit_late_sum_us, emit_late / 1000u);
        } else
            arm_at(run, due);
        return;
    }
    case RC_RS_RETAINED:
        if (now + 1 < run->timer_due) {
            arm_at(run, run->timer_due); /* early tick: wait for the rest */
            return;
        }
        to_tombstone(run, now);
        return;
    case RC_RS_TOMBSTONE: {
        if (now + 1 < run->timer_due) {
            arm_at(run, run->timer_due);
            return;
        }
        struct rc_metrics *m = rc_runs_metrics(run->runs);
        /* remove before counting: whoever sees runs_removed (a test, a
         * scrape) must find the id already free in the registry */
        rc_runs_remove(run->runs, run);
        rc_metric_sub(&m->runs_tombstoned, 1);
        rc_metric_add(&m->runs_removed, 1);
        run->state = RC_RS_RETIRED;
        rc_actor_stop(self, 0);
        return;
    }
    default:
        return;
    }
}

void rc_run_behaviour(struct rc_actor *self, void *state, struct rc_msg *msg)
{
    struct rc_run *run = state;
    switch (msg->type) {
    case RC_RMSG_INGEST:
        handle_ingest(run, (struct rc_ingest_msg *)msg);
        break;
    case RC_RMSG_SUB:
        handle_sub(run, (struct rc_sub_msg *)msg);
        break;
    case RC_RMSG_UNSUB:
        handle_unsub(run, (struct rc_sub_msg *)msg);
        break;
    case RC_RMSG_PIPE_GONE:
        publisher_gone(run, ((struct rc_pipe_msg *)msg)->pipe, ((struct rc_pipe_msg *)msg)->at_ms);
        break;
    case RC_RMSG_SUMMARY:
    case RC_RMSG_SNAP:
    case RC_RMSG_EVENTS:
        handle_query(run, (struct rc_query_msg *)msg);
        break;
    case RC_MSG_TIMER:
        handle_timer(self, run, (struct rc_msg_timer *)msg);
        break;
    default:
        break;
    }
}

void rc_run_fini(void *state, int reason)
{
    struct rc_run *run = state;
    struct rc_metrics *m = rc_runs_metrics(run->runs);
    rc_timer_cancel(rc_runs_system(run->runs), &run->timer);
    if (run->state != RC_RS_RETIRED) {
        /* stopped by the system (shutdown): unlist it now */
        if (run->state == RC_RS_ACTIVE) {
            if (run->status == RC_RUN_PENDING)
                rc_metric_sub(&m->runs_pending, 1);
            else if (run->status == RC_RUN_RUNNING)
                rc_metric_sub(&m->runs_running, 1);
            rc_runs_run_ended(run->runs, run);
        } else if (run->state == RC_RS_RETAINED) {
            rc_metric_sub(&m->runs_retained, 1);
        } else if (run->state == RC_RS_TOMBSTONE) {
            rc_metric_sub(&m->runs_tombstoned, 1);
        }
        rc_runs_remove(run->runs, run);
    }
    rc_runs_pipe_untrack(run->runs, run);
    hist_free(run);
    snap_free(run);
    idem_free(run);
    subs_free(run);
    limits_free(run);
    rc_blob_release(run->phase);
    if (run->x) {
        rc_blob_release(run->x->terminal);
        rc_blob_release(run->x->tomb_snap);
        rc_blob_release(run->x->term_id);
        rc_free(run->x);
    }
    rc_blob_release(run->conv);
    rc_blob_release(run->name);
    rc_actor_release(run->actor); /* the registry's reference */
    rc_free(run);
}
