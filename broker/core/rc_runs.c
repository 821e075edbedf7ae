/*
 * rc_runs: the run registry (see rc_runs.h for the contract).
 *
 * Locks, in the only order they are ever taken:
 *   wide   (struct rc_runs.wide)  the conversation index, waiting run
 *          subscriptions, all-runs subscriptions; held across "create a
 *          run + attach matching subscriptions" and "add a subscription +
 *          attach it to existing runs" so neither can miss the other;
 *   shard  (struct rc_shard.mtx)   one of RC_RUNS_SHARDS hash tables of runs;
 *   pipe   (struct rc_pipe_shard.mtx) the pipe index (never with the others).
 * The ingress' per-batch lookup takes one shard mutex only.  Sends to
 * actors happen under wide/shard: rc_actor_send never blocks and never
 * calls back, and sending under the lock is what orders attach messages
 * before the first event of a new run.
 */
#include "rc_run.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rc_alloc.h"
#include "rc_clock.h"
#include "rc_config.h"
#include "rc_error.h"
#include "rc_hash.h"
#include "rc_log.h"
#include "rc_metrics.h"

struct rc_shard {
    pthread_mutex_t mtx;
    struct rc_run **tab; /* protected by mtx: bucket heads, chained through run->next */
    uint32_t cap, n;     /* protected by mtx */
    /* Runs unlinked from this shard so far: written under mtx (release),
     * read without it by rc_runs_get_cached (acquire), whose entries for
     * this shard stay valid while it does not change. */
    _Atomic uint64_t removals;
} __attribute__((aligned(64)));

/* A waiting, conversation or all-runs subscription kept by the registry. */
struct rc_wsub {
    struct rc_wsub *next;
    struct rc_actor *actor; /* held */
    uint64_t sub_id;
    struct rc_blob *since_map; /* held or NULL */
    bool has_since;
    uint64_t since;
    bool has_epoch;
    uint64_t epoch;
    int snapshot;
    bool wide; /* conv/all (false: a waiting run subscription) */
};

/* An entry of the conversation index or of the waiting run subscriptions. */
struct rc_keyent {
    struct rc_keyent *next;
    uint32_t hash;
    struct rc_blob *key;
    struct rc_wsub *subs;
    struct rc_run **runs; /* conversation members */
    uint32_t n_runs, cap_runs;
};

struct rc_keymap {
    struct rc_keyent **tab;
    uint32_t cap, n;
};

struct rc_pipe_ent {
    struct rc_pipe_ent *next;
    uint32_t pipe;
    struct rc_run *head;
    /* mono ms when the pipe closed, 0 while open.  A closed pipe stays
     * listed (no runs) for RC_PIPE_TOMB_MS: events it delivered may still be
     * queued in the broker when its close arrives, and a run they create or
     * move to it must learn at once that the publisher is gone. */
    uint64_t closed_at;
};

/* Longer than any event waits between its receipt and its run actor; past
 * it, a run is still ended by its idle watchdog. */
#define RC_PIPE_TOMB_MS 60000

struct rc_pipe_shard {
    pthread_mutex_t mtx;
    struct rc_pipe_ent *list; /* protected by mtx */
} __attribute__((aligned(64)));

struct rc_list_collector {
    atomic_uint pending; /* acq_rel countdown: last one sorts and calls back */
    pthread_mutex_t mtx; /* protects v, n, cap */
    struct rc_run_summary *v;
    size_t n, cap;
    int status;
    size_t limit;
    rc_runs_list_cb cb;
    void *arg;
};

struct rc_runs {
    struct rc_actor_system *sys;
    const struct rc_config *cfg;
    struct rc_metrics *metrics;
    uint64_t epoch;
    struct rc_proto_limits limits;
    struct rc_shard shards[RC_RUNS_SHARDS];
    pthread_mutex_t wide;
    struct rc_keymap convs;   /* protected by wide */
    struct rc_keymap pending; /* protected by wide */
    struct rc_wsub *all;      /* protected by wide */
    struct rc_pipe_shard pipes[RC_RUNS_SHARDS];
    /* relaxed counters: approximate by contract, except active, which the
     * --max-runs check updates with fetch_add so no two creators share a slot */
    atomic_size_t active, count;
    _Atomic int64_t inflight;
    atomic_bool closed; /* release in close, acquire in readers */
    /* The PULL pause (rc_runs_set_resume): receivers parked, and who to
     * call when the gauge falls to resume_below while any are. */
    _Atomic int64_t parked;
    pthread_mutex_t resume_mtx; /* protects the two below; held across resume_fn */
    rc_runs_resume_fn resume_fn;
    void *resume_arg;
    /* the mark: written under resume_mtx, read without it (relaxed, see
     * rc_runs_inflight_add) */
    _Atomic int64_t resume_below;
};

/* 32 bits for the registry: its top 6 pick the shard, its low bits the
 * bucket (shard_of); both halves of the 64 go into them. */
uint32_t rc_runs_hash(const char *p, size_t len)
{
    uint64_t h = rc_hash_keyed(p, len);
    return (uint32_t)(h ^ h >> 32);
}

struct rc_actor_system *rc_runs_system(struct rc_runs *runs)
{
    return runs->sys;
}
const struct rc_config *rc_runs_config(struct rc_runs *runs)
{
    return runs->cfg;
}
struct rc_metrics *rc_runs_metrics(struct rc_runs *runs)
{
    return runs->metrics;
}
const struct rc_proto_limits *rc_runs_limits(struct rc_runs *runs)
{
    return &runs->limits;
}
uint64_t rc_runs_epoch(const struct rc_runs *runs)
{
    return runs->epoch;
}
bool rc_runs_closed(const struct rc_runs *runs)
{
    /* acquire: pairs with the release in rc_runs_close */
    return atomic_load_explicit((atomic_bool *)&runs->closed, memory_order_acquire);
}
size_t rc_runs_count(const struct rc_runs *runs)
{
    /* relaxed: approximate by contract */
    return atomic_load_explicit((atomic_size_t *)&runs->count, memory_order_relaxed);
}
size_t rc_runs_active(const struct rc_runs *runs)
{
    /* relaxed: approximate by contract */
    return atomic_load_explicit((atomic_size_t *)&runs->active, memory_order_relaxed);
}
static void resume_parked(struct rc_runs *runs)
{
    pthread_mutex_lock(&runs->resume_mtx);
    if (runs->resume_fn)
        runs->resume_fn(runs->resume_arg);
    pthread_mutex_unlock(&runs->resume_mtx);
}

void rc_runs_inflight_add(struct rc_runs *runs, int delta)
{
    /* seq_cst: the decrement after a message is handled releases its
     * effects (frames sent) to the quiesce loop's acquire load (acq_rel
     * would do for that), and it is one side of a Dekker pair with
     * rc_runs_parked_add: either this thread's load of `parked` below sees
     * a receiver that parked, or that receiver's re-check of the gauge
     * sees this decrement (see rc_ingress.c, pull_park). */
    int64_t v = atomic_fetch_add_explicit(&runs->inflight, delta, memory_order_seq_cst) + delta;
    /* relaxed: the threshold only changes with the registration, which
     * the lock in resume_parked orders; a stale value costs one extra or
     * one missed call of many */
    if (delta < 0 && v <= atomic_load_explicit(&runs->resume_below, memory_order_relaxed) &&
        atomic_load_explicit(&runs->parked, memory_order_seq_cst) > 0)
        resume_parked(runs);
}

void rc_runs_parked_add(struct rc_runs *runs, int delta)
{
    /* seq_cst: the other side of the Dekker pair in rc_runs_inflight_add */
    atomic_fetch_add_explicit(&runs->parked, delta, memory_order_seq_cst);
}

void rc_runs_set_resume(struct rc_runs *runs, rc_runs_resume_fn fn, void *arg, uint64_t below)
{
    pthread_mutex_lock(&runs->resume_mtx);
    if (fn != NULL) {
        runs->resume_fn = fn;
        runs->resume_arg = arg;
        atomic_store_explicit(&runs->resume_below, below > INT64_MAX ? INT64_MAX : (int64_t)below,
                              memory_order_relaxed);
    } else if (runs->resume_arg == arg) {
        /* only the registrant clears it: a restarted ingress registers
         * before the one it replaces is freed */
        runs->resume_fn = NULL;
        runs->resume_arg = NULL;
    }
    pthread_mutex_unlock(&runs->resume_mtx);
}
uint64_t rc_runs_inflight(const struct rc_runs *runs)
{
    /* seq_cst: acquire pairs with rc_runs_inflight_add for the quiesce
     * loop; seq_cst for the PULL pause's re-check after parking (the Dekker
     * pair described there).  A plain load on x86. */
    int64_t v = atomic_load_explicit((_Atomic int64_t *)&runs->inflight, memory_order_seq_cst);
    return v > 0 ? (uint64_t)v : 0;
}

/* ---- Key maps (conv index, waiting subscriptions); under wide ---- */

static struct rc_keyent *keymap_find(struct rc_keymap *m, const char *k, size_t len, uint32_t h,
                                     struct rc_keyent ***link)
{
    if (!m->cap)
        return NULL;
    struct rc_keyent **pp = &m->tab[h & (m->cap - 1)];
    for (; *pp; pp = &(*pp)->next) {
        struct rc_keyent *e = *pp;
        if (e->hash == h && e->key->len == len && memcmp(e->key->data, k, len) == 0) {
            if (link)
                *link = pp;
            return e;
        }
    }
    return NULL;
}

static struct rc_keyent *keymap_get(struct rc_keymap *m, const char *k, size_t len, uint32_t h)
{
    struct rc_keyent *e = keymap_find(m, k, len, h, NULL);
    if (e)
        return e;
    if (m->n + 1 > m->cap) {
        uint32_t nc = m->cap ? m->cap * 2 : 16;
        struct rc_keyent **nt = rc_calloc(nc, sizeof(*nt));
        if (!nt)
            return NULL;
        for (uint32_t i = 0; i < m->cap; i++) {
            for (struct rc_keyent *x = m->tab[i], *nx; x; x = nx) {
                nx = x->next;
                x->next = nt[x->hash & (nc - 1)];
                nt[x->hash & (nc - 1)] = x;
            }
        }
        rc_free(m->tab);
        m->tab = nt;
        m->cap = nc;
    }
    e = rc_calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->key = rc_blob_copy(k, len);
    if (!e->key) {
        rc_free(e);
        return NULL;
    }
    e->hash = h;
    e->next = m->tab[h & (m->cap - 1)];
    m->tab[h & (m->cap - 1)] = e;
    m->n++;
    return e;
}

static void wsub_free(struct rc_wsub *w)
{
    rc_actor_release(w->actor);
    rc_blob_release(w->since_map);
    rc_free(w);
}

static void keyent_free(struct rc_keyent *e)
{
    for (struct rc_wsub *w = e->subs, *nw; w; w = nw) {
        nw = w->next;
        wsub_free(w);
    }
    rc_blob_release(e->key);
    rc_free(e->runs);
    rc_free(e);
}

/* Frees e when nothing refers to it any more. */
static void keymap_gc(struct rc_keymap *m, struct rc_keyent *e)
{
    if (e->subs || e->n_runs)
        return;
    struct rc_keyent **link;
    if (keymap_find(m, (const char *)e->key->data, e->key->len, e->hash, &link) == e) {
        *link = e->next;
        m->n--;
        keyent_free(e);
    }
}

static void keymap_free(struct rc_keymap *m)
{
    for (uint32_t i = 0; i < m->cap; i++) {
        for (struct rc_keyent *e = m->tab[i], *ne; e; e = ne) {
            ne = e->next;
            keyent_free(e);
        }
    }
    rc_free(m->tab);
    m->tab = NULL;
    m->cap = m->n = 0;
}

/* Removes (actor, sub_id) from a list; true when found. */
static bool wsub_remove(struct rc_wsub **list, struct rc_actor *a, uint64_t sub_id, bool any_id)
{
    bool found = false;
    for (struct rc_wsub **pp = list; *pp;) {
        struct rc_wsub *w = *pp;
        if (w->actor == a && (any_id || w->sub_id == sub_id)) {
            *pp = w->next;
            wsub_free(w);
            found = true;
            if (!any_id)
                break;
        } else {
            pp = &w->next;
        }
    }
    return found;
}

/* ---- Messages to run actors ---- */

static void sub_msg_free(struct rc_msg *msg)
{
    struct rc_sub_msg *m = (struct rc_sub_msg *)msg;
    rc_actor_release(m->subscriber);
    rc_blob_release(m->since_map);
    rc_free(m);
}

static void send_sub(struct rc_actor *run_actor, uint32_t type, const struct rc_wsub *w)
{
    struct rc_sub_msg *m = (struct rc_sub_msg *)rc_msg_new(sizeof(*m), type);
    if (!m)
        return;
    m->hdr.free_fn = sub_msg_free;
    m->subscriber = rc_actor_hold(w->actor);
    m->sub_id = w->sub_id;
    m->since_map = w->since_map ? rc_blob_hold(w->since_map) : NULL;
    m->has_since = w->has_since;
    m->since = w->since;
    m->has_epoch = w->has_epoch;
    m->epoch = w->epoch;
    m->snapshot = w->snapshot;
    m->joined = false;
    m->wide = w->wide;
    if (rc_actor_send(run_actor, &m->hdr) != 0)
        rc_msg_free(&m->hdr);
}

/* A SUB for a subscription that a run joins after it was made (the run's
 * conversation was bound by its first event carrying it). */
static void send_sub_joined(struct rc_actor *run_actor, const struct rc_wsub *w)
{
    struct rc_sub_msg *m = (struct rc_sub_msg *)rc_msg_new(sizeof(*m), RC_RMSG_SUB);
    if (!m)
        return;
    m->hdr.free_fn = sub_msg_free;
    m->subscriber = rc_actor_hold(w->actor);
    m->sub_id = w->sub_id;
    m->since_map = NULL;
    m->has_since = false;
    m->since = 0;
    m->has_epoch = false;
    m->epoch = 0;
    m->snapshot = w->snapshot;
    m->joined = true;
    m->wide = true;
    if (rc_actor_send(run_actor, &m->hdr) != 0)
        rc_msg_free(&m->hdr);
}

/* ---- Shards ---- */

/*
 * The shard takes the hash's top bits and a shard's buckets its low bits, so
 * the two never overlap.  (They did: the shard was bits 8-13, which are then
 * the same for every run of a shard, so once a shard's table passed 256
 * buckets only 256 of them were ever used: at a million runs, chains of ~60
 * runs walked on every lookup, creation and removal.)  Each run keeps its
 * whole hash (struct rc_run.hash): the lookup's quick reject before the
 * name, and what a resize and a removal place it by, without reading the
 * name again (at a million runs, rehashing names on each doubling was a
 * quarter of the registry's time in creation: two cache misses per run).
 */
_Static_assert(RC_RUNS_SHARDS == 64, "shard_of takes the top 6 bits");

static struct rc_shard *shard_of(struct rc_runs *runs, uint32_t hash)
{
    return &runs->shards[hash >> 26];
}

static struct rc_run *shard_find(struct rc_shard *s, const char *name, size_t len, uint32_t hash)
{
    if (!s->cap)
        return NULL;
    for (struct rc_run *r = s->tab[hash & (s->cap - 1)]; r; r = r->next)
        if (r->hash == hash && r->name->len == len && memcmp(r->name->data, name, len) == 0)
            return r;
    return NULL;
}

static int shard_insert(struct rc_shard *s, struct rc_run *run)
{
    if (s->n + 1 > s->cap) {
        uint32_t nc = s->cap ? s->cap * 2 : 64;
        struct rc_run **nt = rc_calloc(nc, sizeof(*nt));
        if (!nt)
            return RC_ENOMEM;
        for (uint32_t i = 0; i < s->cap; i++) {
            for (struct rc_run *r = s->tab[i], *nr; r; r = nr) {
                nr = r->next;
                r->next = nt[r->hash & (nc - 1)];
                nt[r->hash & (nc - 1)] = r;
            }
        }
        rc_free(s->tab);
        s->tab = nt;
        s->cap = nc;
    }
    run->next = s->tab[run->hash & (s->cap - 1)];
    s->tab[run->hash & (s->cap - 1)] = run;
    s->n++;
    return 0;
}

static bool shard_unlink(struct rc_shard *s, struct rc_run *run)
{
    if (!s->cap)
        return false;
    for (struct rc_run **pp = &s->tab[run->hash & (s->cap - 1)]; *pp; pp = &(*pp)->next) {
        if (*pp == run) {
            *pp = run->next;
            s->n--;
            return true;
        }
    }
    return false;
}

/* ---- Lookup and creation ---- */

/* rc_runs_get; with name_out, also the run's name, held. */
static int runs_get(struct rc_runs *runs, const char *name, size_t len, uint32_t hash, bool create,
                    struct rc_actor **out, struct rc_blob **name_out)
{
    struct rc_shard *s = shard_of(runs, hash);
    pthread_mutex_lock(&s->mtx);
    struct rc_run *r = shard_find(s, name, len, hash);
    if (r) {
        *out = rc_actor_hold(r->actor);
        if (name_out)
            *name_out = rc_blob_hold(r->name);
        pthread_mutex_unlock(&s->mtx);
        return 0;
    }
    pthread_mutex_unlock(&s->mtx);
    if (!create)
        return RC_ENOTFOUND;
    if (rc_runs_closed(runs))
        return RC_ECLOSED;
    /* relaxed: the slot count itself is the only thing this orders */
    size_t prev = atomic_fetch_add_explicit(&runs->active, 1, memory_order_relaxed);
    if (prev >= runs->cfg->max_runs) {
        atomic_fetch_sub_explicit(&runs->active, 1, memory_order_relaxed);
        rc_metric_add(&runs->metrics->limit_rejections, 1);
        return RC_ELIMIT;
    }

    int rc = 0;
    pthread_mutex_lock(&runs->wide);
    pthread_mutex_lock(&s->mtx);
    r = shard_find(s, name, len, hash);
    if (r) { /* another thread created it meanwhile */
        *out = rc_actor_hold(r->actor);
        if (name_out)
            *name_out = rc_blob_hold(r->name);
        pthread_mutex_unlock(&s->mtx);
        pthread_mutex_unlock(&runs->wide);
        atomic_fetch_sub_explicit(&runs->active, 1, memory_order_relaxed);
        return 0;
    }
    struct rc_run *run = rc_run_new(runs, name, len, hash);
    struct rc_actor *a = NULL;
    if (!run) {
        rc = RC_ENOMEM;
        goto fail;
    }
    struct rc_actor_opts opts = {.mailbox_limit = (uint32_t)runs->cfg->run_mailbox_limit,
                                 .name = "run"};
    rc = rc_actor_spawn(runs->sys, rc_run_behaviour, run, rc_run_fini, &opts, &a);
    if (rc != 0) {
        rc_blob_release(run->name);
        rc_free(run);
        goto fail;
    }
    run->actor = a; /* the registry's reference, released in rc_run_fini */
    rc_run_arm_initial(run);
    if (shard_insert(s, run) != 0) {
        /* the actor exists: let it stop and unlist itself (it is not listed) */
        run->state = RC_RS_RETIRED; /* fini skips the unlisting */
        rc_actor_stop(a, 0);
        rc = RC_ENOMEM;
        goto fail;
    }
    /* relaxed: approximate counter */
    atomic_fetch_add_explicit(&runs->count, 1, memory_order_relaxed);
    rc_metric_add(&runs->metrics->runs_created, 1);
    rc_metric_add(&runs->metrics->runs_pending, 1);

    /* Attach waiting run subscriptions and all-runs subscriptions before the
     * first event reaches the actor. */
    struct rc_keyent **link;
    struct rc_keyent *pe = keymap_find(&runs->pending, name, len, hash, &link);
    if (pe) {
        for (struct rc_wsub *w = pe->subs; w; w = w->next)
            send_sub(a, RC_RMSG_SUB, w);
        *link = pe->next;
        runs->pending.n--;
        keyent_free(pe);
    }
    for (struct rc_wsub *w = runs->all; w; w = w->next)
        send_sub(a, RC_RMSG_SUB, w);
    *out = rc_actor_hold(a);
    if (name_out)
        *name_out = rc_blob_hold(run->name);
    pthread_mutex_unlock(&s->mtx);
    pthread_mutex_unlock(&runs->wide);
    if (rc_log_enabled(RC_LOG_INFO)) {
        char buf[130];
        size_t n = len < 129 ? len : 129;
        memcpy(buf, name, n);
        buf[n] = 0;
        rc_log(RC_LOG_INFO, "runs", buf, NULL, "run created by its first event");
    }
    return 0;
fail:
    pthread_mutex_unlock(&s->mtx);
    pthread_mutex_unlock(&runs->wide);
    atomic_fetch_sub_explicit(&runs->active, 1, memory_order_relaxed);
    return rc;
}

int rc_runs_get(struct rc_runs *runs, const char *name, size_t len, uint32_t hash, bool create,
                struct rc_actor **out)
{
    return runs_get(runs, name, len, hash, create, out, NULL);
}

static void cache_ent_clear(struct rc_runs_cache_ent *e)
{
    if (!e->actor)
        return;
    rc_actor_release(e->actor);
    rc_blob_release(e->name);
    e->actor = NULL;
    e->name = NULL;
}

/* The ways of hash's set. */
static struct rc_runs_cache_ent *cache_set(struct rc_runs_cache *cache, uint32_t hash)
{
    return &cache->ent[(hash & (RC_RUNS_CACHE_SETS - 1)) * RC_RUNS_CACHE_WAYS];
}

int rc_runs_get_cached(struct rc_runs *runs, struct rc_runs_cache *cache, const char *name,
                       size_t len, uint32_t hash, bool create, struct rc_actor **out)
{
    struct rc_shard *s = shard_of(runs, hash);
    struct rc_runs_cache_ent *e = cache_set(cache, hash);
    /* acquire: pairs with the release increment after an unlink, so a
     * removal this thread can see invalidates the entry.  Read before the
     * lookup below: a removal between the two leaves the entry stale-marked
     * (refreshed on its next use), never valid for a removed run. */
    uint64_t gen = atomic_load_explicit(&s->removals, memory_order_acquire);
    for (uint32_t w = 0; w < RC_RUNS_CACHE_WAYS; w++)
        if (e[w].actor && e[w].hash == hash && e[w].gen == gen && e[w].name->len == len &&
            memcmp(e[w].name->data, name, len) == 0) {
            *out = e[w].actor;
            return 0;
        }
    struct rc_actor *a = NULL;
    struct rc_blob *nm = NULL;
    int rc = runs_get(runs, name, len, hash, create, &a, &nm);
    if (rc != 0)
        return rc;
    /* the newest goes first: the ways before the victim move over it (the
     * oldest way, or a stale entry of this id, which never becomes valid
     * again) */
    uint32_t victim = RC_RUNS_CACHE_WAYS - 1;
    for (uint32_t w = 0; w < RC_RUNS_CACHE_WAYS; w++)
        if (e[w].actor && e[w].hash == hash)
            victim = w;
    cache_ent_clear(&e[victim]);
    memmove(&e[1], &e[0], victim * sizeof(*e));
    e->actor = a; /* the lookup's references move into the entry */
    e->name = nm;
    e->hash = hash;
    e->gen = gen;
    *out = a;
    return 0;
}

void rc_runs_cache_drop(struct rc_runs_cache *cache, uint32_t hash)
{
    struct rc_runs_cache_ent *e = cache_set(cache, hash);
    for (uint32_t w = 0; w < RC_RUNS_CACHE_WAYS; w++)
        if (e[w].actor && e[w].hash == hash)
            cache_ent_clear(&e[w]);
}

void rc_runs_cache_fini(struct rc_runs_cache *cache)
{
    for (uint32_t i = 0; i < RC_RUNS_CACHE_SETS * RC_RUNS_CACHE_WAYS; i++)
        cache_ent_clear(&cache->ent[i]);
}

void rc_runs_run_ended(struct rc_runs *runs, struct rc_run *run)
{
    (void)run;
    /* relaxed: see rc_runs_get */
    atomic_fetch_sub_explicit(&runs->active, 1, memory_order_relaxed);
}

void rc_runs_bind_conv(struct rc_runs *runs, struct rc_run *run)
{
    const char *k = (const char *)run->conv->data;
    size_t len = run->conv->len;
    uint32_t h = rc_runs_hash(k, len);
    pthread_mutex_lock(&runs->wide);
    struct rc_keyent *e = keymap_get(&runs->convs, k, len, h);
    if (e) {
        if (e->n_runs == e->cap_runs) {
            uint32_t nc = e->cap_runs ? e->cap_runs * 2 : 4;
            struct rc_run **nr = rc_realloc(e->runs, nc * sizeof(*nr));
            if (nr) {
                e->runs = nr;
                e->cap_runs = nc;
            }
        }
        if (e->n_runs < e->cap_runs) {
            e->runs[e->n_runs++] = run;
            run->conv_bound = true;
            /* The run is joining in the middle of its turn: these
             * subscriptions predate it, so they get it from its first
             * event (the SUB is handled after the current batch). */
            for (struct rc_wsub *w = e->subs; w; w = w->next)
                send_sub_joined(run->actor, w);
        }
    }
    pthread_mutex_unlock(&runs->wide);
}

void rc_runs_remove(struct rc_runs *runs, struct rc_run *run)
{
    pthread_mutex_lock(&runs->wide);
    if (run->conv_bound) {
        const char *k = (const char *)run->conv->data;
        struct rc_keyent *e =
            keymap_find(&runs->convs, k, run->conv->len, rc_runs_hash(k, run->conv->len), NULL);
        if (e) {
            for (uint32_t i = 0; i < e->n_runs; i++) {
                if (e->runs[i] == run) {
                    e->runs[i] = e->runs[--e->n_runs];
                    break;
                }
            }
            keymap_gc(&runs->convs, e);
        }
        run->conv_bound = false;
    }
    struct rc_shard *s = shard_of(runs, run->hash);
    pthread_mutex_lock(&s->mtx);
    if (shard_unlink(s, run)) {
        atomic_fetch_sub_explicit(&runs->count, 1, memory_order_relaxed); /* relaxed: approx */
        /* release: after the unlink (see rc_runs_get_cached); mtx serialises
         * the writers, so a load and store suffice */
        atomic_store_explicit(&s->removals,
                              atomic_load_explicit(&s->removals, memory_order_relaxed) + 1,
                              memory_order_release);
    }
    pthread_mutex_unlock(&s->mtx);
    pthread_mutex_unlock(&runs->wide);
}

/* ---- Pipe index ---- */

static struct rc_pipe_shard *pipe_shard(struct rc_runs *runs, uint32_t pipe)
{
    return &runs->pipes[pipe % RC_RUNS_SHARDS];
}

static struct rc_pipe_ent *pipe_find(struct rc_pipe_shard *ps, uint32_t pipe,
                                     struct rc_pipe_ent ***link)
{
    for (struct rc_pipe_ent **pp = &ps->list; *pp; pp = &(*pp)->next) {
        if ((*pp)->pipe == pipe) {
            if (link)
                *link = pp;
            return *pp;
        }
    }
    return NULL;
}

/* Under the pipe shard mutex of run->pipe_linked. */
static void pipe_unlink_locked(struct rc_pipe_shard *ps, struct rc_run *run)
{
    struct rc_pipe_ent **link;
    struct rc_pipe_ent *e = pipe_find(ps, run->pipe_linked, &link);
    if (run->pipe_prev)
        run->pipe_prev->pipe_next = run->pipe_next;
    else if (e)
        e->head = run->pipe_next;
    if (run->pipe_next)
        run->pipe_next->pipe_prev = run->pipe_prev;
    run->pipe_next = run->pipe_prev = NULL;
    run->pipe_linked = 0;
    if (e && !e->head) {
        *link = e->next;
        rc_free(e);
    }
}

void rc_runs_pipe_untrack(struct rc_runs *runs, struct rc_run *run)
{
    if (!run->pipe)
        return;
    struct rc_pipe_shard *ps = pipe_shard(runs, run->pipe);
    pthread_mutex_lock(&ps->mtx);
    if (run->pipe_linked == run->pipe)
        pipe_unlink_locked(ps, run);
    pthread_mutex_unlock(&ps->mtx);
    run->pipe = 0;
}

bool rc_runs_pipe_track(struct rc_runs *runs, struct rc_run *run, uint32_t pipe)
{
    rc_runs_pipe_untrack(runs, run);
    run->pipe = pipe;
    if (!pipe)
        return false;
    struct rc_pipe_shard *ps = pipe_shard(runs, pipe);
    pthread_mutex_lock(&ps->mtx);
    struct rc_pipe_ent *e = pipe_find(ps, pipe, NULL);
    if (e && e->closed_at) {
        pthread_mutex_unlock(&ps->mtx);
        return true; /* the close came first: nothing will announce it again */
    }
    if (!e) {
        e = rc_calloc(1, sizeof(*e));
        if (e) {
            e->pipe = pipe;
            e->next = ps->list;
            ps->list = e;
        }
    }
    if (e) {
        run->pipe_prev = NULL;
        run->pipe_next = e->head;
        if (e->head)
            e->head->pipe_prev = run;
        e->head = run;
        run->pipe_linked = pipe;
    }
    pthread_mutex_unlock(&ps->mtx);
    return false;
}

void rc_runs_pipe_closed(struct rc_runs *runs, uint32_t pipe)
{
    if (!pipe)
        return;
    struct rc_pipe_shard *ps = pipe_shard(runs, pipe);
    struct rc_actor **v = NULL;
    size_t n = 0, cap = 0;
    uint64_t now = rc_clock_mono_ms();
    pthread_mutex_lock(&ps->mtx);
    /* forget the closed pipes whose events have long been handled */
    for (struct rc_pipe_ent **pp = &ps->list; *pp;) {
        struct rc_pipe_ent *t = *pp;
        if (t->closed_at && now - t->closed_at > RC_PIPE_TOMB_MS) {
            *pp = t->next;
            rc_free(t);
        } else {
            pp = &t->next;
        }
    }
    struct rc_pipe_ent *e = pipe_find(ps, pipe, NULL);
    if (!e) {
        e = rc_calloc(1, sizeof(*e)); /* ENOMEM: idle watchdogs still end the runs */
        if (e) {
            e->pipe = pipe;
            e->next = ps->list;
            ps->list = e;
        }
    }
    if (e) {
        e->closed_at = now ? now : 1;
        for (struct rc_run *r = e->head, *nr; r; r = nr) {
            nr = r->pipe_next;
            r->pipe_next = r->pipe_prev = NULL;
            r->pipe_linked = 0;
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 16;
                struct rc_actor **nv = rc_realloc(v, nc * sizeof(*nv));
                if (!nv)
                    continue; /* that run keeps its normal watchdog */
                v = nv;
                cap = nc;
            }
            v[n++] = rc_actor_hold(r->actor);
        }
        e->head = NULL;
    }
    pthread_mutex_unlock(&ps->mtx);
    for (size_t i = 0; i < n; i++) {
        struct rc_pipe_msg *m = (struct rc_pipe_msg *)rc_msg_new(sizeof(*m), RC_RMSG_PIPE_GONE);
        if (m) {
            m->pipe = pipe;
            m->at_ms = now;
            if (rc_actor_send(v[i], &m->hdr) != 0)
                rc_msg_free(&m->hdr);
        }
        rc_actor_release(v[i]);
    }
    rc_free(v);
}

/* ---- Subscriptions ---- */

static struct rc_wsub *wsub_new(const struct rc_sub_req *req)
{
    struct rc_wsub *w = rc_calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    if (req->since_map && req->since_map_len) {
        w->since_map = rc_blob_copy(req->since_map, req->since_map_len);
        if (!w->since_map) {
            rc_free(w);
            return NULL;
        }
    }
    w->actor = rc_actor_hold(req->subscriber);
    w->sub_id = req->sub_id;
    w->has_since = req->kind == RC_SUB_RUN && req->has_since;
    w->since = req->since;
    w->has_epoch = req->has_epoch;
    w->epoch = req->epoch;
    w->snapshot = req->snapshot;
    w->wide = req->kind != RC_SUB_RUN;
    return w;
}

typedef void (*run_visit_fn)(struct rc_run *run, void *arg);

/* Under wide: visits every run (each shard locked in turn). */
static void visit_all(struct rc_runs *runs, run_visit_fn fn, void *arg)
{
    for (unsigned i = 0; i < RC_RUNS_SHARDS; i++) {
        struct rc_shard *s = &runs->shards[i];
        pthread_mutex_lock(&s->mtx);
        for (uint32_t b = 0; b < s->cap; b++)
            for (struct rc_run *r = s->tab[b]; r; r = r->next)
                fn(r, arg);
        pthread_mutex_unlock(&s->mtx);
    }
}

struct sub_visit {
    uint32_t type;
    const struct rc_wsub *w;
};

static void visit_send_sub(struct rc_run *run, void *arg)
{
    struct sub_visit *v = arg;
    send_sub(run->actor, v->type, v->w);
}

int rc_runs_subscribe(struct rc_runs *runs, const struct rc_sub_req *req)
{
    if (!req || !req->subscriber)
        return RC_EINVAL;
    if (req->kind != RC_SUB_ALL && (!req->target || !req->target_len))
        return RC_EINVAL;
    if (req->kind != RC_SUB_RUN && req->kind != RC_SUB_CONV && req->kind != RC_SUB_ALL)
        return RC_EINVAL;
    if (rc_runs_closed(runs))
        return RC_ECLOSED;
    struct rc_wsub *w = wsub_new(req);
    if (!w)
        return RC_ENOMEM;
    int rc = 0;
    uint32_t h = req->kind == RC_SUB_ALL ? 0 : rc_runs_hash(req->target, req->target_len);
    pthread_mutex_lock(&runs->wide);
    if (req->kind == RC_SUB_RUN) {
        struct rc_shard *s = shard_of(runs, h);
        pthread_mutex_lock(&s->mtx);
        struct rc_run *r = shard_find(s, req->target, req->target_len, h);
        if (r)
            send_sub(r->actor, RC_RMSG_SUB, w);
        pthread_mutex_unlock(&s->mtx);
        if (r) {
            wsub_free(w);
        } else {
            struct rc_keyent *e = keymap_get(&runs->pending, req->target, req->target_len, h);
            if (e) {
                w->next = e->subs;
                e->subs = w;
            } else {
                wsub_free(w);
                rc = RC_ENOMEM;
            }
        }
    } else if (req->kind == RC_SUB_CONV) {
        struct rc_keyent *e = keymap_get(&runs->convs, req->target, req->target_len, h);
        if (e) {
            w->next = e->subs;
            e->subs = w;
            for (uint32_t i = 0; i < e->n_runs; i++)
                send_sub(e->runs[i]->actor, RC_RMSG_SUB, w);
        } else {
            wsub_free(w);
            rc = RC_ENOMEM;
        }
    } else {
        w->next = runs->all;
        runs->all = w;
        struct sub_visit v = {RC_RMSG_SUB, w};
        visit_all(runs, visit_send_sub, &v);
    }
    pthread_mutex_unlock(&runs->wide);
    return rc;
}

int rc_runs_unsubscribe(struct rc_runs *runs, enum rc_sub_kind kind, const char *target,
                        size_t target_len, struct rc_actor *subscriber, uint64_t sub_id)
{
    if (kind != RC_SUB_ALL && (!target || !target_len))
        return RC_EINVAL;
    struct rc_wsub key = {.actor = subscriber, .sub_id = sub_id};
    bool found = false;
    uint32_t h = kind == RC_SUB_ALL ? 0 : rc_runs_hash(target, target_len);
    pthread_mutex_lock(&runs->wide);
    if (kind == RC_SUB_RUN) {
        struct rc_keyent *e = keymap_find(&runs->pending, target, target_len, h, NULL);
        if (e) {
            found = wsub_remove(&e->subs, subscriber, sub_id, false);
            keymap_gc(&runs->pending, e);
        }
        struct rc_shard *s = shard_of(runs, h);
        pthread_mutex_lock(&s->mtx);
        struct rc_run *r = shard_find(s, target, target_len, h);
        if (r) {
            send_sub(r->actor, RC_RMSG_UNSUB, &key);
            found = true;
        }
        pthread_mutex_unlock(&s->mtx);
    } else if (kind == RC_SUB_CONV) {
        struct rc_keyent *e = keymap_find(&runs->convs, target, target_len, h, NULL);
        if (e) {
            found = wsub_remove(&e->subs, subscriber, sub_id, false);
            if (found)
                for (uint32_t i = 0; i < e->n_runs; i++)
                    send_sub(e->runs[i]->actor, RC_RMSG_UNSUB, &key);
            keymap_gc(&runs->convs, e);
        }
    } else {
        found = wsub_remove(&runs->all, subscriber, sub_id, false);
        if (found) {
            struct sub_visit v = {RC_RMSG_UNSUB, &key};
            visit_all(runs, visit_send_sub, &v);
        }
    }
    pthread_mutex_unlock(&runs->wide);
    return found ? 0 : RC_ENOTFOUND;
}

static void keymap_drop_actor(struct rc_keymap *m, struct rc_actor *a)
{
    for (uint32_t i = 0; i < m->cap; i++) {
        for (struct rc_keyent *e = m->tab[i], *ne; e; e = ne) {
            ne = e->next;
            if (wsub_remove(&e->subs, a, 0, true))
                keymap_gc(m, e);
        }
    }
}

void rc_runs_unsubscribe_all(struct rc_runs *runs, struct rc_actor *subscriber)
{
    pthread_mutex_lock(&runs->wide);
    wsub_remove(&runs->all, subscriber, 0, true);
    keymap_drop_actor(&runs->convs, subscriber);
    keymap_drop_actor(&runs->pending, subscriber);
    pthread_mutex_unlock(&runs->wide);
}

/* ---- Queries ---- */

static void query_free(struct rc_msg *msg)
{
    struct rc_query_msg *q = (struct rc_query_msg *)msg;
    if (q->hdr.type == RC_RMSG_SUMMARY)
        rc_runs_list_done(q->list);
    else if (!q->handled && q->hdr.type == RC_RMSG_SNAP)
        q->snap_cb(q->arg, RC_ENOTFOUND, NULL);
    else if (!q->handled && q->hdr.type == RC_RMSG_EVENTS)
        q->events_cb(q->arg, RC_ENOTFOUND, NULL, 0, 0, 0);
    rc_free(q);
}

static struct rc_query_msg *query_new(uint32_t type)
{
    struct rc_query_msg *q = (struct rc_query_msg *)rc_msg_new(sizeof(*q), type);
    if (!q)
        return NULL;
    q->hdr.free_fn = query_free;
    q->handled = false;
    q->list = NULL;
    q->snap_cb = NULL;
    q->events_cb = NULL;
    q->arg = NULL;
    q->since = 0;
    q->max = 0;
    return q;
}

void rc_runs_list_add(struct rc_list_collector *c, const struct rc_run_summary *s)
{
    if (c->status >= 0 && (int)s->status != c->status)
        return;
    pthread_mutex_lock(&c->mtx);
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 64;
        struct rc_run_summary *nv = rc_realloc(c->v, nc * sizeof(*nv));
        if (!nv) {
            pthread_mutex_unlock(&c->mtx);
            return;
        }
        c->v = nv;
        c->cap = nc;
    }
    c->v[c->n++] = *s;
    pthread_mutex_unlock(&c->mtx);
}

static int summary_cmp(const void *a, const void *b)
{
    const struct rc_run_summary *x = a, *y = b;
    if (x->created_at != y->created_at)
        return x->created_at > y->created_at ? -1 : 1;
    return strcmp(x->run, y->run);
}

void rc_runs_list_done(struct rc_list_collector *c)
{
    /* acq_rel: each party releases its additions; the last acquires all */
    if (atomic_fetch_sub_explicit(&c->pending, 1, memory_order_acq_rel) != 1)
        return;
    if (c->n > 1)
        qsort(c->v, c->n, sizeof(*c->v), summary_cmp);
    size_t n = c->n;
    if (c->limit && n > c->limit)
        n = c->limit;
    c->cb(c->arg, 0, c->v, n);
    pthread_mutex_destroy(&c->mtx);
    rc_free(c->v);
    rc_free(c);
}

static void visit_list(struct rc_run *run, void *arg)
{
    struct rc_list_collector *c = arg;
    struct rc_query_msg *q = query_new(RC_RMSG_SUMMARY);
    if (!q)
        return;
    q->list = c;
    /* relaxed: the countdown only needs the final acq_rel decrement */
    atomic_fetch_add_explicit(&c->pending, 1, memory_order_relaxed);
    if (rc_actor_send(run->actor, &q->hdr) != 0)
        rc_msg_free(&q->hdr); /* counts down */
}

int rc_runs_list(struct rc_runs *runs, const struct rc_runs_filter *f, rc_runs_list_cb cb,
                 void *arg)
{
    struct rc_list_collector *c = rc_calloc(1, sizeof(*c));
    if (!c)
        return RC_ENOMEM;
    atomic_init(&c->pending, 1);
    pthread_mutex_init(&c->mtx, NULL);
    c->status = f ? f->status : -1;
    c->limit = f ? f->limit : 0;
    c->cb = cb;
    c->arg = arg;
    pthread_mutex_lock(&runs->wide);
    if (f && f->conv && f->conv_len) {
        struct rc_keyent *e = keymap_find(&runs->convs, f->conv, f->conv_len,
                                          rc_runs_hash(f->conv, f->conv_len), NULL);
        if (e)
            for (uint32_t i = 0; i < e->n_runs; i++)
                visit_list(e->runs[i], c);
    } else {
        visit_all(runs, visit_list, c);
    }
    pthread_mutex_unlock(&runs->wide);
    rc_runs_list_done(c);
    return 0;
}

static int query_one(struct rc_runs *runs, const char *run, size_t len, struct rc_query_msg *q)
{
    struct rc_actor *a = NULL;
    int rc = rc_runs_get(runs, run, len, rc_runs_hash(run, len), false, &a);
    if (rc != 0) {
        q->handled = true; /* no callback: the caller gets rc */
        rc_msg_free(&q->hdr);
        return rc;
    }
    if (rc_actor_send(a, &q->hdr) != 0)
        rc_msg_free(&q->hdr); /* answers RC_ENOTFOUND */
    rc_actor_release(a);
    return 0;
}

int rc_runs_snapshot(struct rc_runs *runs, const char *run, size_t run_len, rc_runs_snap_cb cb,
                     void *arg)
{
    struct rc_query_msg *q = query_new(RC_RMSG_SNAP);
    if (!q)
        return RC_ENOMEM;
    q->snap_cb = cb;
    q->arg = arg;
    return query_one(runs, run, run_len, q);
}

int rc_runs_events(struct rc_runs *runs, const char *run, size_t run_len, uint64_t since,
                   size_t max, rc_runs_events_cb cb, void *arg)
{
    struct rc_query_msg *q = query_new(RC_RMSG_EVENTS);
    if (!q)
        return RC_ENOMEM;
    q->events_cb = cb;
    q->arg = arg;
    q->since = since;
    q->max = max;
    return query_one(runs, run, run_len, q);
}

/* ---- Lifecycle ---- */

int rc_runs_new(struct rc_actor_system *sys, const struct rc_config *cfg,
                struct rc_metrics *metrics, uint64_t epoch, struct rc_runs **out)
{
    struct rc_runs *r = rc_calloc(1, sizeof(*r));
    if (!r)
        return RC_ENOMEM;
    r->sys = sys;
    r->cfg = cfg;
    r->metrics = metrics;
    r->epoch = epoch;
    rc_proto_limits_default(&r->limits);
    r->limits.event_max_bytes = (uint32_t)cfg->max_event_bytes;
    r->limits.batch_max_events = (uint32_t)cfg->max_batch_events;
    r->limits.batch_max_bytes = (uint32_t)cfg->max_batch_bytes;
    r->limits.id_max_bytes = (uint32_t)cfg->max_id_bytes;
    r->limits.phase_max_bytes = (uint32_t)cfg->max_phase_bytes;
    r->limits.data_max_depth = (uint32_t)cfg->max_data_depth;
    r->limits.timeouts_max = (uint32_t)cfg->max_start_timeouts;
    r->limits.client_frame_max = (uint32_t)cfg->ws_max_frame;
    for (unsigned i = 0; i < RC_RUNS_SHARDS; i++) {
        pthread_mutex_init(&r->shards[i].mtx, NULL);
        pthread_mutex_init(&r->pipes[i].mtx, NULL);
    }
    pthread_mutex_init(&r->wide, NULL);
    atomic_init(&r->active, 0);
    atomic_init(&r->count, 0);
    atomic_init(&r->inflight, 0);
    atomic_init(&r->parked, 0);
    atomic_init(&r->resume_below, -1);
    pthread_mutex_init(&r->resume_mtx, NULL);
    atomic_init(&r->closed, false);
    *out = r;
    return 0;
}

void rc_runs_close(struct rc_runs *runs)
{
    /* release: pairs with the acquire in rc_runs_closed */
    atomic_store_explicit(&runs->closed, true, memory_order_release);
}

void rc_runs_free(struct rc_runs *runs)
{
    if (!runs)
        return;
    pthread_mutex_lock(&runs->wide);
    keymap_free(&runs->convs);
    keymap_free(&runs->pending);
    for (struct rc_wsub *w = runs->all, *nw; w; w = nw) {
        nw = w->next;
        wsub_free(w);
    }
    runs->all = NULL;
    pthread_mutex_unlock(&runs->wide);
    for (unsigned i = 0; i < RC_RUNS_SHARDS; i++) {
        /* every run actor has stopped and unlisted itself */
        rc_free(runs->shards[i].tab);
        pthread_mutex_destroy(&runs->shards[i].mtx);
        for (struct rc_pipe_ent *e = runs->pipes[i].list, *ne; e; e = ne) {
            ne = e->next;
            rc_free(e);
        }
        pthread_mutex_destroy(&runs->pipes[i].mtx);
    }
    pthread_mutex_destroy(&runs->wide);
    pthread_mutex_destroy(&runs->resume_mtx);
    rc_free(runs);
}
