/*
 * rc_supervisor: one-for-one supervision built on monitors.
 *
 * The supervisor is an actor that monitors each child (tag = the child's
 * index).  On a DOWN for the child's current actor with a reason other than
 * 0 (normal) or RC_ESHUTDOWN (system stop), it restarts the child through
 * its start function, unless that would make more than max_restarts
 * restarts within period_ms: then it gives up (Erlang/OTP's intensity):
 * giveup is called once, the other children are stopped with RC_ESHUTDOWN
 * and nothing is restarted any more.  A start that fails counts as a
 * restart that failed at once.
 *
 * Lifetime: the structure is shared by the user's handle and the
 * supervisor actor (refs); whoever lets go last frees it, so
 * rc_supervisor_free is safe before or after the system stops.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "rc_actor.h"
#include "rc_alloc.h"
#include "rc_clock.h"
#include "rc_error.h"

struct sup_child {
    char *name;
    rc_child_start_fn start;
    void *arg;
    struct rc_actor *cur; /* held; NULL while not running */
};

struct rc_supervisor {
    struct rc_actor_system *sys;
    struct rc_supervisor_opts opts;
    struct rc_actor *self; /* the supervisor actor; held */
    _Atomic uint32_t refs; /* the user's handle and the actor */
    _Atomic uint32_t restarts;
    pthread_mutex_t mtx;
    struct sup_child *children; /* mtx */
    size_t nchildren, cap;      /* mtx */
    uint64_t *history;          /* mtx: ring of the last restarts' times (ms) */
    size_t hist_n, hist_pos;    /* mtx */
    bool closing;               /* mtx: rc_supervisor_free was called */
    bool gave_up;               /* mtx */
};

static void sup_unref(struct rc_supervisor *sup)
{
    /* acq_rel: the last one out sees all the other's writes. */
    if (atomic_fetch_sub_explicit(&sup->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < sup->nchildren; i++) {
        rc_free(sup->children[i].name);
        rc_actor_release(sup->children[i].cur);
    }
    rc_free(sup->children);
    rc_free(sup->history);
    rc_actor_release(sup->self);
    pthread_mutex_destroy(&sup->mtx);
    rc_free(sup);
}

/* Under mtx: may one more restart happen now?  Records it if so. */
static bool intensity_allows(struct rc_supervisor *sup)
{
    uint32_t max = sup->opts.max_restarts;
    if (max == 0)
        return false;
    uint64_t now = rc_clock_mono_ms();
    if (sup->hist_n == max) {
        uint64_t oldest = sup->history[sup->hist_pos]; /* ring is full */
        if (now - oldest < sup->opts.period_ms)
            return false;
    } else {
        sup->hist_n++;
    }
    sup->history[sup->hist_pos] = now;
    sup->hist_pos = (sup->hist_pos + 1) % max;
    return true;
}

static void sup_give_up(struct rc_supervisor *sup, size_t idx, int reason)
{
    /* Under mtx on entry; returns unlocked. */
    sup->gave_up = true;
    size_t n = sup->nchildren;
    struct rc_actor **stop = rc_calloc(n ? n : 1, sizeof(*stop));
    for (size_t i = 0; i < n && stop; i++) {
        stop[i] = sup->children[i].cur;
        sup->children[i].cur = NULL;
    }
    char *name = sup->children[idx].name;
    pthread_mutex_unlock(&sup->mtx);
    if (sup->opts.giveup)
        sup->opts.giveup(sup->opts.giveup_arg, name, reason);
    for (size_t i = 0; i < n && stop; i++) {
        rc_actor_stop(stop[i], RC_ESHUTDOWN);
        rc_actor_release(stop[i]);
    }
    rc_free(stop);
}

static void sup_on_down(struct rc_supervisor *sup, const struct rc_msg_down *d)
{
    pthread_mutex_lock(&sup->mtx);
    size_t idx = (size_t)d->tag;
    if (idx >= sup->nchildren || sup->children[idx].cur != d->actor) {
        pthread_mutex_unlock(&sup->mtx); /* an earlier incarnation */
        return;
    }
    struct sup_child *ch = &sup->children[idx];
    rc_actor_release(ch->cur);
    ch->cur = NULL;
    if (sup->closing || sup->gave_up || d->reason == 0 || d->reason == RC_ESHUTDOWN) {
        pthread_mutex_unlock(&sup->mtx);
        return;
    }
    for (;;) {
        if (!intensity_allows(sup)) {
            sup_give_up(sup, idx, d->reason);
            return;
        }
        rc_child_start_fn start = sup->children[idx].start;
        void *arg = sup->children[idx].arg;
        pthread_mutex_unlock(&sup->mtx);
        /* relaxed: a counter read by rc_supervisor_restarts. */
        atomic_fetch_add_explicit(&sup->restarts, 1, memory_order_relaxed);
        struct rc_actor *a = start(arg); /* user code: no lock held */
        pthread_mutex_lock(&sup->mtx);
        if (a) {
            if (sup->closing || sup->gave_up) {
                pthread_mutex_unlock(&sup->mtx);
                rc_actor_stop(a, RC_ESHUTDOWN);
                rc_actor_release(a);
                return;
            }
            sup->children[idx].cur = a;
            int rc = rc_actor_monitor(sup->self, a, idx);
            pthread_mutex_unlock(&sup->mtx);
            if (rc != RC_OK)
                rc_actor_stop(a, RC_ESHUTDOWN); /* unsupervised otherwise */
            return;
        }
        /* start failed: counts as a restart that failed at once, unless
         * the system is going down (spawn refuses): then just stop. */
        if (rc_actor_system_stopping(sup->sys)) {
            pthread_mutex_unlock(&sup->mtx);
            return;
        }
    }
}

static void sup_behaviour(struct rc_actor *self, void *state, struct rc_msg *msg)
{
    if (msg->type == RC_MSG_DOWN)
        sup_on_down(state, (const struct rc_msg_down *)msg);
}

static void sup_fini(void *state, int reason)
{
    sup_unref(state);
}

int rc_supervisor_new(struct rc_actor_system *sys, const struct rc_supervisor_opts *opts,
                      struct rc_supervisor **out)
{
    if (!sys || !opts || !out)
        return RC_EINVAL;
    struct rc_supervisor *sup = rc_calloc(1, sizeof(*sup));
    if (!sup)
        return RC_ENOMEM;
    sup->sys = sys;
    sup->opts = *opts;
    sup->history = rc_calloc(opts->max_restarts ? opts->max_restarts : 1, sizeof(uint64_t));
    if (!sup->history) {
        rc_free(sup);
        return RC_ENOMEM;
    }
    pthread_mutex_init(&sup->mtx, NULL);
    /* not shared yet: published by the spawn below */
    atomic_init(&sup->refs, 2);
    atomic_init(&sup->restarts, 0);
    struct rc_actor_opts aopts = {.mailbox_limit = 0, .name = "supervisor"};
    int rc = rc_actor_spawn(sys, sup_behaviour, sup, sup_fini, &aopts, &sup->self);
    if (rc != RC_OK) {
        pthread_mutex_destroy(&sup->mtx);
        rc_free(sup->history);
        rc_free(sup);
        return rc;
    }
    *out = sup;
    return RC_OK;
}

int rc_supervisor_add_child(struct rc_supervisor *sup, const char *name, rc_child_start_fn start,
                            void *arg)
{
    if (!sup || !name || !start)
        return RC_EINVAL;
    char *copy = rc_strndup(name, strlen(name));
    if (!copy)
        return RC_ENOMEM;
    pthread_mutex_lock(&sup->mtx);
    bool bad = sup->closing || sup->gave_up;
    bool dup = false;
    for (size_t i = 0; i < sup->nchildren; i++)
        dup = dup || strcmp(sup->children[i].name, name) == 0;
    pthread_mutex_unlock(&sup->mtx);
    if (bad || dup) {
        rc_free(copy);
        return dup ? RC_EEXIST : RC_ESTATE;
    }
    struct rc_actor *a = start(arg); /* user code: no lock held */
    if (!a) {
        rc_free(copy);
        return RC_ESTATE;
    }
    pthread_mutex_lock(&sup->mtx);
    int err = sup->closing || sup->gave_up ? RC_ESTATE : RC_OK;
    if (err == RC_OK && sup->nchildren == sup->cap) {
        size_t cap = sup->cap ? sup->cap * 2 : 4;
        struct sup_child *v = rc_realloc(sup->children, cap * sizeof(*v));
        if (v) {
            sup->children = v;
            sup->cap = cap;
        } else {
            err = RC_ENOMEM;
        }
    }
    if (err != RC_OK) {
        pthread_mutex_unlock(&sup->mtx);
        rc_free(copy);
        rc_actor_stop(a, RC_ESHUTDOWN);
        rc_actor_release(a);
        return err;
    }
    size_t idx = sup->nchildren++;
    sup->children[idx] = (struct sup_child){.name = copy, .start = start, .arg = arg, .cur = a};
    int rc = rc_actor_monitor(sup->self, a, idx);
    pthread_mutex_unlock(&sup->mtx);
    if (rc != RC_OK) {
        rc_actor_stop(a, RC_ESHUTDOWN);
        return rc;
    }
    return RC_OK;
}

struct rc_actor *rc_supervisor_child(struct rc_supervisor *sup, const char *name)
{
    struct rc_actor *a = NULL;
    pthread_mutex_lock(&sup->mtx);
    for (size_t i = 0; i < sup->nchildren; i++)
        if (strcmp(sup->children[i].name, name) == 0) {
            a = rc_actor_hold(sup->children[i].cur);
            break;
        }
    pthread_mutex_unlock(&sup->mtx);
    return a;
}

uint32_t rc_supervisor_restarts(const struct rc_supervisor *sup)
{
    /* relaxed: a counter. */
    return atomic_load_explicit(&sup->restarts, memory_order_relaxed);
}

bool rc_supervisor_gave_up(struct rc_supervisor *sup)
{
    pthread_mutex_lock(&sup->mtx);
    bool g = sup->gave_up;
    pthread_mutex_unlock(&sup->mtx);
    return g;
}

void rc_supervisor_free(struct rc_supervisor *sup)
{
    if (!sup)
        return;
    pthread_mutex_lock(&sup->mtx);
    sup->closing = true;
    size_t n = sup->nchildren;
    pthread_mutex_unlock(&sup->mtx);
    /* closing is set: DOWNs no longer restart, and only this function and
     * sup_on_down (which now just releases) touch cur. */
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&sup->mtx);
        struct rc_actor *a = sup->children[i].cur;
        sup->children[i].cur = NULL;
        pthread_mutex_unlock(&sup->mtx);
        rc_actor_stop(a, 0);
        rc_actor_release(a);
    }
    rc_actor_stop(sup->self, 0);
    sup_unref(sup);
}
