/*
 * rc_actor: actors, their mailboxes, the work-stealing scheduler, monitors
 * and the system's lifecycle.  The design is Pony's (libponyrt actor/ and
 * sched/), adapted; docs/ACTORS.md explains it at length.
 *
 * The mailbox is Vyukov's intrusive many-producers/one-consumer queue: a
 * send is one exchange on head plus one store; the consumer pops at tail.
 *
 * The scheduling rule.  Every actor has a count word (rc_actor_internal.h):
 * the number of messages accepted and not yet finished, plus stop bits.
 * A sender increments it *before* pushing; the sender whose increment moved
 * it from "no work" to "work" holds the token and queues the actor.  The
 * worker running the actor holds the token during its turn; at the end it
 * subtracts the messages it finished: if the result is "no work" the token
 * is released (the actor is idle, in no queue), otherwise the worker queues
 * the actor again.  Only the token holder queues the actor, so it is never
 * queued twice; any message accepted after the final subtraction finds the
 * word at zero and queues the actor itself, so no message is stranded.
 *
 * A turn handles at most min(batch, count at turn start) messages, so it
 * stops at the messages present when it began (messages an actor sends to
 * itself wait for the next turn) and an actor queued again goes to the back
 * of the queue: a flooded actor delays the others by at most one batch.
 *
 * Stop.  rc_actor_stop sets STOP_REQ (taking the token if the actor was
 * idle).  The token holder sees it before its next message, sets CLOSED
 * (after which every send fails), and knows from the count at that moment
 * exactly how many accepted messages remain: it pops and frees exactly that
 * many (if a sender is still between its increment and its push, the actor
 * is queued again and the drain finishes in a later turn), so every message
 * send accepted is handled or freed.  Then fini, the monitors, and the
 * runtime drops its reference.
 *
 * Inline turns (rc_send_batch_add_inline).  A behaviour that finds the
 * target's count word at exactly 0 may take the token itself (CAS 0 -> 1)
 * and run the target's turn nested in its own, on its worker; the final
 * subtraction follows the same rule as a worker's (queue the actor again
 * if work or a stop arrived meanwhile).
 */
#include "rc_actor_internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rc_alloc.h"
#include "rc_clock.h"
#include "rc_error.h"

/*
 * A seq_cst fence for the sleep/wake Dekker pair.  GCC's TSan does not model
 * fences (and rejects them), so sanitized builds use a seq_cst RMW on one
 * shared word instead: both sides RMW it, the later one synchronises with
 * the earlier, which gives the same guarantee (each side sees the other's
 * prior store, or the other sees its own).
 */
#if defined(__SANITIZE_THREAD__)
#define RC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RC_TSAN 1
#endif
#endif
#if defined(RC_TSAN)
#define SEQ_CST_FENCE(sys) atomic_fetch_add_explicit(&(sys)->fence_word, 0, memory_order_seq_cst)
#else
#define SEQ_CST_FENCE(sys) atomic_thread_fence(memory_order_seq_cst)
#endif

/* The worker the calling thread is, or NULL for other threads. */
static _Thread_local struct rc_worker *tl_worker;

/* The turn the calling thread is running: the message being handled and
 * whether the behaviour kept it.  The "kept" mark lives here, not in the message: once
 * kept, the behaviour may re-send msg and another thread may free it before
 * this turn looks at it again. */
static _Thread_local struct rc_msg *tl_cur_msg;
static _Thread_local bool tl_kept;
static _Thread_local bool tl_in_turn;
/* How many inline turns (rc_send_batch_add_inline) the calling thread is
 * running, nested.  Within a worker's turn one at most.  On a thread that
 * is no worker (an I/O library's callback), its first inline turn stands
 * for the worker's turn, and one more may nest in it: tl_outside_sys is
 * that first turn's system while it runs (NULL otherwise), so that a
 * publisher connection's decoder running on nng's thread still handles
 * idle runs' events where it decoded them. */
static _Thread_local unsigned tl_inline_depth;
static _Thread_local struct rc_actor_system *tl_outside_sys;

/* Adds n to a worker's statistic.  Only the owning worker writes these
 * (other threads only read them), so a relaxed load and store suffice: no
 * locked add, which on x86 is a full barrier that waits for the thread's
 * pending stores, on every turn. */
static inline void worker_stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* ---- Messages ---- */

struct rc_msg *rc_msg_new(size_t size, uint32_t type)
{
    if (size < sizeof(struct rc_msg))
        return NULL;
    struct rc_msg *m = rc_malloc(size);
    if (!m)
        return NULL;
    atomic_init(&m->next, NULL); /* not shared yet: plain init */
    m->type = type;
    m->flags = 0;
    m->free_fn = NULL;
    return m;
}

void rc_msg_free(struct rc_msg *msg)
{
    if (!msg)
        return;
    if (msg->free_fn)
        msg->free_fn(msg);
    else
        rc_free(msg);
}

void rc_msg_keep(struct rc_msg *msg)
{
    if (tl_in_turn && tl_cur_msg == msg)
        tl_kept = true;
}

/* ---- The mailbox (Vyukov's intrusive MPSC queue) ---- */

static void mb_init(struct rc_actor *a)
{
    /* not shared yet (published by spawn's registry lock or the caller) */
    atomic_init(&a->stub.next, NULL);
    atomic_init(&a->head, &a->stub);
    a->tail = &a->stub;
}

/* Any thread. */
static void mb_push(struct rc_actor *a, struct rc_msg *m)
{
    /* relaxed: published by the exchange's release below. */
    atomic_store_explicit(&m->next, NULL, memory_order_relaxed);
    /* acq_rel: release publishes m (payload and next == NULL) to the
     * producer that will link after it and to the consumer; acquire orders
     * our store into prev->next after prev's producer initialised it. */
    struct rc_msg *prev = atomic_exchange_explicit(&a->head, m, memory_order_acq_rel);
    /* release: pairs with the consumer's acquire load of prev->next, making
     * m's contents visible to it. */
    atomic_store_explicit(&prev->next, m, memory_order_release);
}

/* Token holder only.  NULL when empty or when a producer is between its
 * exchange and its link (the caller knows from the count which it is). */
static struct rc_msg *mb_pop(struct rc_actor *a)
{
    struct rc_msg *tail = a->tail;
    /* acquire: pairs with the release store of tail->next in mb_push. */
    struct rc_msg *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (tail == &a->stub) {
        if (!next)
            return NULL;
        a->tail = next;
        tail = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire); /* as above */
    }
    if (next) {
        a->tail = next;
        return tail;
    }
    /* tail is the last linked node.  If head moved on, a producer is
     * mid-push: report empty for now.  acquire: pairs with mb_push's
     * exchange (we only compare, but keep the pairing uniform). */
    if (tail != atomic_load_explicit(&a->head, memory_order_acquire))
        return NULL;
    /* Put the stub back behind tail so tail can be detached. */
    mb_push(a, &a->stub);
    next = atomic_load_explicit(&tail->next, memory_order_acquire); /* as above */
    if (next) {
        a->tail = next;
        return tail;
    }
    return NULL;
}

/* ---- Run queues ---- */

/* Owner only.  Returns false when full; *len gets the length after. */
static bool runq_push(struct rc_runq *q, struct rc_actor *a, uint64_t *len)
{
    /* relaxed: only the owner writes tail. */
    uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    /* acquire: pairs with the consumers' CAS on head (acq_rel), so their
     * read of a slot happens before we overwrite it. */
    uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    if (t - h >= RC_RUNQ_CAP)
        return false;
    /* relaxed: published by the release store of tail. */
    atomic_store_explicit(&q->buf[t % RC_RUNQ_CAP], a, memory_order_relaxed);
    /* release: pairs with the acquire load of tail in runq_pop; makes the
     * slot and everything the scheduler did before visible to the taker. */
    atomic_store_explicit(&q->tail, t + 1, memory_order_release);
    *len = t + 1 - h;
    return true;
}

/* Owner or thief. */
static struct rc_actor *runq_pop(struct rc_runq *q)
{
    /* acquire: pairs with the CAS of other consumers (slot reads ordered). */
    uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    for (;;) {
        /* acquire: pairs with runq_push's release store of tail. */
        uint64_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
        if (h >= t)
            return NULL;
        /* relaxed: if the owner recycled this slot, head moved and the CAS
         * below fails, discarding the value. */
        struct rc_actor *a = atomic_load_explicit(&q->buf[h % RC_RUNQ_CAP], memory_order_relaxed);
        /* acq_rel on success: release orders our slot read before the
         * owner's next overwrite (it acquires head); acquire on failure
         * refreshes h. */
        if (atomic_compare_exchange_weak_explicit(&q->head, &h, h + 1, memory_order_acq_rel,
                                                  memory_order_acquire))
            return a;
    }
}

static uint64_t runq_len(struct rc_runq *q)
{
    /* relaxed: a hint (the sleep path adds a seq_cst fence before). */
    uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    return t > h ? t - h : 0;
}

/* ---- The inject queue ---- */

static void inject_push(struct rc_actor_system *sys, struct rc_actor *a)
{
    pthread_mutex_lock(&sys->inject_mtx);
    a->run_next = NULL;
    if (sys->inject_tail)
        sys->inject_tail->run_next = a;
    else
        sys->inject_head = a;
    sys->inject_tail = a;
    /* relaxed: a hint for lock-free emptiness checks; the mutex orders the
     * queue itself and the wake path has its own seq_cst fence. */
    atomic_store_explicit(&sys->inject_len,
                          atomic_load_explicit(&sys->inject_len, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    pthread_mutex_unlock(&sys->inject_mtx);
}

/* Appends a list of actors linked by run_next (n of them) in one go. */
static void inject_push_list(struct rc_actor_system *sys, struct rc_actor *first,
                             struct rc_actor *last, uint64_t n)
{
    pthread_mutex_lock(&sys->inject_mtx);
    last->run_next = NULL;
    if (sys->inject_tail)
        sys->inject_tail->run_next = first;
    else
        sys->inject_head = first;
    sys->inject_tail = last;
    /* relaxed: as in inject_push. */
    atomic_store_explicit(&sys->inject_len,
                          atomic_load_explicit(&sys->inject_len, memory_order_relaxed) + n,
                          memory_order_relaxed);
    pthread_mutex_unlock(&sys->inject_mtx);
}

static bool runq_push(struct rc_runq *q, struct rc_actor *a, uint64_t *len);

/* Takes the first actor of the inject queue and, when w is given, moves a
 * fair share of the rest (len / workers, at most 32) to w's own queue in
 * the same critical section (Go's globrunqget): one lock per batch. */
static struct rc_actor *inject_pop(struct rc_actor_system *sys, struct rc_worker *w)
{
    /* relaxed: a hint; a stale zero is corrected by the wake protocol. */
    if (atomic_load_explicit(&sys->inject_len, memory_order_relaxed) == 0)
        return NULL;
    pthread_mutex_lock(&sys->inject_mtx);
    uint64_t len = atomic_load_explicit(&sys->inject_len, memory_order_relaxed); /* mutex */
    uint64_t take = w ? len / sys->nworkers : 1;
    if (take > 33)
        take = 33;
    if (take < 1)
        take = 1;
    struct rc_actor *first = NULL;
    uint64_t got = 0;
    while (got < take && sys->inject_head) {
        struct rc_actor *a = sys->inject_head;
        sys->inject_head = a->run_next;
        a->run_next = NULL;
        uint64_t qlen;
        if (!first)
            first = a;
        else if (!runq_push(&w->q, a, &qlen)) {
            /* local queue full: put it back at the head */
            a->run_next = sys->inject_head;
            sys->inject_head = a;
            break;
        }
        got++;
    }
    if (!sys->inject_head)
        sys->inject_tail = NULL;
    /* relaxed: as in inject_push. */
    atomic_store_explicit(&sys->inject_len, len - got, memory_order_relaxed);
    pthread_mutex_unlock(&sys->inject_mtx);
    return first;
}

/* ---- Sleeping and waking ---- */

/* wake_tokens: wake-ups signalled and not yet taken by a sleeper.  Changed
 * only under sleep_mtx (relaxed atomics there, so that the hint in
 * worker_main may read it without the lock). */
static uint32_t tokens(struct rc_actor_system *sys)
{
    return atomic_load_explicit(&sys->wake_tokens, memory_order_relaxed);
}

static void set_tokens(struct rc_actor_system *sys, uint32_t v)
{
    atomic_store_explicit(&sys->wake_tokens, v, memory_order_relaxed); /* under sleep_mtx */
}

/* Wakes up to n sleepers that have no wake-up pending. */
static void wake_many(struct rc_actor_system *sys, uint64_t n)
{
    pthread_mutex_lock(&sys->sleep_mtx);
    /* relaxed: nsleeping only changes under sleep_mtx, which we hold. */
    uint32_t sleeping = atomic_load_explicit(&sys->nsleeping, memory_order_relaxed);
    while (n-- > 0 && tokens(sys) < sleeping) {
        set_tokens(sys, tokens(sys) + 1);
        pthread_cond_signal(&sys->sleep_cv);
    }
    pthread_mutex_unlock(&sys->sleep_mtx);
}

static void wake_one(struct rc_actor_system *sys)
{
    wake_many(sys, 1);
}

/* After making work visible: wake a sleeper if there is one.  The fence
 * pairs with the fence in worker_sleep (Dekker): either we see its
 * nsleeping increment, or it sees our work when it re-checks. */
static void wake_if_sleeping(struct rc_actor_system *sys)
{
    SEQ_CST_FENCE(sys);
    /* relaxed: ordered by the fence above. */
    if (atomic_load_explicit(&sys->nsleeping, memory_order_relaxed) > 0)
        wake_one(sys);
}

static bool work_visible(struct rc_actor_system *sys)
{
    /* relaxed loads, ordered after the caller's seq_cst fence. */
    if (atomic_load_explicit(&sys->inject_len, memory_order_relaxed) > 0)
        return true;
    for (uint32_t i = 0; i < sys->nworkers; i++)
        if (runq_len(&sys->workers[i].q) > 0)
            return true;
    return false;
}

/* Queues a runnable actor; called only by the token holder. */
static void schedule(struct rc_actor *a)
{
    struct rc_actor_system *sys = a->sys;
    struct rc_worker *w = tl_worker;
    if (w && w->sys == sys) {
        uint64_t len;
        if (runq_push(&w->q, a, &len)) {
            /* This worker is awake and will take a from its own queue; wake
             * a helper only when work piles up behind it. */
            if (len >= 2)
                wake_if_sleeping(sys);
            return;
        }
    }
    inject_push(sys, a);
    wake_if_sleeping(sys);
}

/* Returns false when the worker should exit. */
static bool worker_sleep(struct rc_worker *w)
{
    struct rc_actor_system *sys = w->sys;
    pthread_mutex_lock(&sys->sleep_mtx);
    if (sys->exiting) {
        pthread_mutex_unlock(&sys->sleep_mtx);
        return false;
    }
    /* seq_cst + fence: the Dekker pair of wake_if_sleeping. */
    atomic_fetch_add_explicit(&sys->nsleeping, 1, memory_order_seq_cst);
    SEQ_CST_FENCE(sys);
    if (!work_visible(sys)) {
        while (tokens(sys) == 0 && !sys->exiting)
            pthread_cond_wait(&sys->sleep_cv, &sys->sleep_mtx);
        if (tokens(sys) > 0)
            set_tokens(sys, tokens(sys) - 1);
    }
    /* relaxed: under sleep_mtx, which orders it for wake_one. */
    atomic_fetch_sub_explicit(&sys->nsleeping, 1, memory_order_relaxed);
    pthread_mutex_unlock(&sys->sleep_mtx);
    return true;
}

/* ---- Finding work ---- */

/* Rounds of 32 pause instructions an idle worker spins before sleeping. */
#define RC_SPIN_ROUNDS 8

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64 */
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void push_local_or_inject(struct rc_worker *w, struct rc_actor *a)
{
    uint64_t len;
    if (!runq_push(&w->q, a, &len))
        inject_push(w->sys, a);
}

static struct rc_actor *steal(struct rc_worker *w)
{
    struct rc_actor_system *sys = w->sys;
    uint32_t n = sys->nworkers;
    if (n < 2)
        return NULL;
    uint32_t start = (uint32_t)(rng_next(&w->rng) % n);
    for (uint32_t i = 0; i < n; i++) {
        struct rc_worker *v = &sys->workers[(start + i) % n];
        if (v == w)
            continue;
        uint64_t avail = runq_len(&v->q);
        if (avail == 0)
            continue;
        struct rc_actor *first = runq_pop(&v->q);
        if (!first)
            continue;
        /* Take up to half of the victim's queue. */
        uint64_t more = avail / 2;
        if (more > 32)
            more = 32;
        while (more-- > 1) {
            struct rc_actor *x = runq_pop(&v->q);
            if (!x)
                break;
            push_local_or_inject(w, x);
        }
        /* relaxed: a statistic. */
        atomic_fetch_add_explicit(&w->steals, 1, memory_order_relaxed);
        return first;
    }
    return NULL;
}

static struct rc_actor *find_work(struct rc_worker *w)
{
    struct rc_actor_system *sys = w->sys;
    struct rc_actor *a;
    /* Now and then look at the inject queue first so that a worker kept
     * busy by its own queue does not starve actors woken from outside. */
    if (++w->turns % 61 == 0 && (a = inject_pop(sys, w)))
        return a;
    if ((a = runq_pop(&w->q)))
        return a;
    if ((a = inject_pop(sys, w)))
        return a;
    return steal(w);
}

/* ---- Turns ---- */

static void actor_finish_stop(struct rc_actor *a, uint64_t unfinished);

/* Runs one turn of a, whose token this worker holds. */
static void run_turn(struct rc_worker *w, struct rc_actor *a)
{
    struct rc_actor_system *sys = w->sys;
    /* acquire: pairs with the release of STOP_REQ in rc_actor_stop (the
     * exit reason) and with the sends' increments. */
    uint64_t c = atomic_load_explicit(&a->count, memory_order_acquire);
    uint64_t done = 0;
    if (!(c & RC_ACTOR_STOP_REQ)) {
        uint64_t n = c & RC_ACTOR_COUNT_MASK;
        if (n > sys->batch)
            n = sys->batch;
        while (done < n) {
            struct rc_msg *m = mb_pop(a);
            if (!m)
                break; /* a sender is mid-push: finish the turn, come back */
            done++;
            tl_cur_msg = m;
            tl_kept = false;
            tl_in_turn = true;
            a->kind->fn(a, a->state, m);
            tl_in_turn = false;
            tl_cur_msg = NULL;
            if (!tl_kept)
                rc_msg_free(m);
            /* relaxed: only to notice a stop early; the acquire that reads
             * the reason is in actor_finish_stop. */
            if (atomic_load_explicit(&a->count, memory_order_relaxed) & RC_ACTOR_STOP_REQ) {
                worker_stat_add(&w->handled, done);
                actor_finish_stop(a, done);
                return;
            }
        }
        worker_stat_add(&w->handled, done);
        if (done == 0 && (c & RC_ACTOR_COUNT_MASK) > 0)
            sched_yield(); /* a sender was preempted mid-push */
        /* acq_rel: release publishes this turn's effects on the state to the
         * next token holder (who acquires via a send's increment or via the
         * run queue); acquire sees the increments that keep the token. */
        uint64_t prev = atomic_fetch_sub_explicit(&a->count, done, memory_order_acq_rel);
        c = prev - done;
        if (!(c & RC_ACTOR_WORK))
            return; /* idle: the token is released */
        if (!(c & RC_ACTOR_STOP_REQ)) {
            /* More work: back of the queue, behind anything woken from
             * outside meanwhile (fairness). */
            struct rc_actor *x = inject_pop(sys, NULL);
            if (x)
                push_local_or_inject(w, x);
            schedule(a);
            return;
        }
        done = 0;
    }
    actor_finish_stop(a, done);
}

/* ---- Monitors ---- */

struct mon_rec {
    struct rc_msg_down down; /* first: the record is the DOWN message */
    struct rc_actor *watcher;
};

static void mon_rec_free(struct rc_msg *m)
{
    struct mon_rec *r = (struct mon_rec *)m;
    rc_actor_release(r->down.actor);
    rc_actor_release(r->watcher);
    rc_free(r);
}

static pthread_mutex_t *mon_lock(const struct rc_actor *a)
{
    uintptr_t h = (uintptr_t)a;
    h ^= h >> 17;
    h *= UINT64_C(0x9E3779B97F4A7C15);
    return &a->sys->mon_mtx[(h >> 32) % RC_MON_STRIPES];
}

static void mon_deliver(struct mon_rec *r, int reason)
{
    struct rc_actor *watcher = r->watcher;
    r->watcher = NULL; /* the message must not be touched once sent */
    r->down.reason = reason;
    if (rc_actor_send(watcher, &r->down.hdr) != RC_OK)
        mon_rec_free(&r->down.hdr);
    rc_actor_release(watcher);
}

int rc_actor_monitor(struct rc_actor *watcher, struct rc_actor *target, uint64_t tag)
{
    if (!watcher || !target)
        return RC_EINVAL;
    struct mon_rec *r = (struct mon_rec *)rc_msg_new(sizeof(*r), RC_MSG_DOWN);
    if (!r)
        return RC_ENOMEM;
    r->down.hdr.free_fn = mon_rec_free;
    r->down.actor = rc_actor_hold(target);
    r->down.reason = 0;
    r->down.tag = tag;
    r->watcher = rc_actor_hold(watcher);
    pthread_mutex_t *mtx = mon_lock(target);
    pthread_mutex_lock(mtx);
    bool down = target->down;
    int reason = down ? target->exit_reason : 0; /* stable once down */
    if (!down) {
        /* relaxed: the list is protected by the stripe lock. */
        atomic_store_explicit(&r->down.hdr.next, target->monitors, memory_order_relaxed);
        target->monitors = &r->down.hdr;
    }
    pthread_mutex_unlock(mtx);
    if (down)
        mon_deliver(r, reason);
    return RC_OK;
}

/* ---- Stopping ---- */

/* On the worker holding a's token, after STOP_REQ: unfinished messages were
 * popped in this turn but not yet subtracted from the count.  The first call
 * closes the actor; the drain may take several turns (see below), each of
 * which calls here again with unfinished == 0. */
static void actor_finish_stop(struct rc_actor *a, uint64_t unfinished)
{
    struct rc_actor_system *sys = a->sys;
    if (!a->draining) {
        /* acq_rel: acquire pairs with rc_actor_stop's release of STOP_REQ
         * (the reason) and fixes the set of accepted sends: every increment
         * ordered before this one was accepted, every later one sees CLOSED. */
        uint64_t c = atomic_fetch_or_explicit(&a->count, RC_ACTOR_CLOSED, memory_order_acq_rel);
        a->drain_left = (c & RC_ACTOR_COUNT_MASK) - unfinished;
        a->draining = true;
    }
    /* Free every accepted message.  One whose sender is still between its
     * increment and its push is not linked yet: rather than wait for it
     * (a preempted sender could hold this worker for a whole time slice),
     * queue the actor again and finish the drain in a later turn.  It stays
     * live (and unqueued by anyone else: we keep the token) until then. */
    /* A big mailbox is freed over several turns too (16 batches per turn),
     * so a stop does not hold up the other actors of this worker. */
    uint64_t budget = (uint64_t)sys->batch * 16;
    bool gap = false;
    while (a->drain_left > 0 && budget > 0) {
        struct rc_msg *m = mb_pop(a);
        if (!m) {
            gap = true;
            break;
        }
        rc_msg_free(m);
        a->drain_left--;
        budget--;
    }
    if (a->drain_left > 0) {
        if (gap)
            sched_yield(); /* give the sender a chance to finish its push */
        schedule(a);
        return;
    }
    int reason = a->exit_reason;
    if (a->kind->fini) {
        tl_cur_msg = NULL;
        a->kind->fini(a->state, reason);
    }
    a->state = NULL;
    /* Monitors: take the list and mark down under the lock, send after. */
    pthread_mutex_t *mtx = mon_lock(a);
    pthread_mutex_lock(mtx);
    a->down = true;
    struct rc_msg *list = a->monitors;
    a->monitors = NULL;
    pthread_mutex_unlock(mtx);
    while (list) {
        /* relaxed: the record left the list under the lock. */
        struct rc_msg *next = atomic_load_explicit(&list->next, memory_order_relaxed);
        mon_deliver((struct mon_rec *)list, reason);
        list = next;
    }
    pthread_mutex_lock(&sys->reg_mtx);
    if (a->reg_prev)
        a->reg_prev->reg_next = a->reg_next;
    else
        sys->reg_head = a->reg_next;
    if (a->reg_next)
        a->reg_next->reg_prev = a->reg_prev;
    a->reg_prev = a->reg_next = NULL;
    sys->reg_live--;
    /* relaxed: a statistic. */
    atomic_fetch_sub_explicit(&sys->actors_live, 1, memory_order_relaxed);
    if (sys->reg_live == 0)
        pthread_cond_broadcast(&sys->reg_cv);
    pthread_mutex_unlock(&sys->reg_mtx);
    rc_actor_release(a); /* the runtime's reference */
}

void rc_actor_stop(struct rc_actor *a, int reason)
{
    if (!a)
        return;
    /* relaxed: the claim only elects one writer of exit_reason; it is
     * published by the release of STOP_REQ below. */
    uint64_t prev = atomic_fetch_or_explicit(&a->count, RC_ACTOR_CLAIM, memory_order_relaxed);
    if (prev & RC_ACTOR_CLAIM)
        return; /* the first reason wins */
    a->exit_reason = reason;
    /* acq_rel: release publishes exit_reason (pairs with the worker's
     * acquire); acquire, when we take the token, sees the last turn. */
    prev = atomic_fetch_or_explicit(&a->count, RC_ACTOR_STOP_REQ, memory_order_acq_rel);
    if (!(prev & RC_ACTOR_WORK))
        schedule(a); /* it was idle: we hold the token */
}

/* ---- Actors ---- */

/* The kinds seen so far.  Readers walk it without the lock: a kind is
 * fully written before the release store that links it, and never changes
 * or leaves afterwards (a handful per process; never freed, still
 * reachable). */
static struct rc_actor_kind *_Atomic actor_kinds;
static pthread_mutex_t actor_kinds_mtx = PTHREAD_MUTEX_INITIALIZER;

static const struct rc_actor_kind *actor_kind_find(struct rc_actor_kind *k, rc_actor_behaviour fn,
                                                   rc_actor_fini fini, const char *name)
{
    for (; k; k = k->next)
        if (k->fn == fn && k->fini == fini && k->name == name)
            return k;
    return NULL;
}

static const struct rc_actor_kind *actor_kind_intern(rc_actor_behaviour fn, rc_actor_fini fini,
                                                     const char *name)
{
    /* acquire: pairs with the release below, so a linked kind is complete */
    const struct rc_actor_kind *k =
        actor_kind_find(atomic_load_explicit(&actor_kinds, memory_order_acquire), fn, fini, name);
    if (k)
        return k;
    pthread_mutex_lock(&actor_kinds_mtx);
    /* relaxed: under the mutex, which orders it against other inserters */
    struct rc_actor_kind *head = atomic_load_explicit(&actor_kinds, memory_order_relaxed);
    k = actor_kind_find(head, fn, fini, name);
    if (!k) {
        struct rc_actor_kind *n = rc_malloc(sizeof(*n));
        if (n) {
            *n = (struct rc_actor_kind){.next = head, .fn = fn, .fini = fini, .name = name};
            /* release: publishes *n to the lock-free readers above */
            atomic_store_explicit(&actor_kinds, n, memory_order_release);
        }
        k = n;
    }
    pthread_mutex_unlock(&actor_kinds_mtx);
    return k;
}

int rc_actor_spawn(struct rc_actor_system *sys, rc_actor_behaviour fn, void *state,
                   rc_actor_fini fini, const struct rc_actor_opts *opts, struct rc_actor **out)
{
    if (!sys || !fn || !out)
        return RC_EINVAL;
    struct rc_actor *a = rc_calloc(1, sizeof(*a));
    if (!a)
        return RC_ENOMEM;
    atomic_init(&a->count, 0); /* not shared yet */
    mb_init(a);
    a->kind = actor_kind_intern(fn, fini, opts ? opts->name : NULL);
    if (!a->kind) {
        rc_free(a);
        return RC_ENOMEM;
    }
    a->state = state;
    a->sys = sys;
    a->mailbox_limit = opts ? opts->mailbox_limit : 0;
    atomic_init(&a->refs, 2); /* the caller's and the runtime's */
    pthread_mutex_lock(&sys->reg_mtx);
    if (sys->stopping) {
        pthread_mutex_unlock(&sys->reg_mtx);
        rc_free(a);
        return RC_ECLOSED;
    }
    a->reg_next = sys->reg_head;
    if (a->reg_next)
        a->reg_next->reg_prev = a;
    sys->reg_head = a;
    sys->reg_live++;
    /* relaxed: a statistic. */
    atomic_fetch_add_explicit(&sys->actors_live, 1, memory_order_relaxed);
    pthread_mutex_unlock(&sys->reg_mtx);
    *out = a;
    return RC_OK;
}

struct rc_actor *rc_actor_hold(struct rc_actor *a)
{
    if (a) /* relaxed: the caller already holds a reference. */
        atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    return a;
}

void rc_actor_release(struct rc_actor *a)
{
    if (!a)
        return;
    /* acq_rel: release orders our uses before the free; acquire makes the
     * last releaser see everyone's uses. */
    if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1)
        rc_free(a);
}

int rc_actor_send(struct rc_actor *to, struct rc_msg *msg)
{
    if (!to || !msg)
        return RC_EINVAL;
    msg->flags = 0;
    /* acq_rel: acquire, when we take the token, pairs with the release of
     * the last turn's subtraction so the next turn sees the state; release
     * orders our earlier writes (e.g. a message allocated from the same
     * state) before the consumer. */
    uint64_t prev = atomic_fetch_add_explicit(&to->count, 1, memory_order_acq_rel);
    if (prev & RC_ACTOR_CLOSED) {
        /* relaxed: after CLOSED the count is only a statistic. */
        atomic_fetch_sub_explicit(&to->count, 1, memory_order_relaxed);
        return RC_ECLOSED;
    }
    mb_push(to, msg);
    if (!(prev & RC_ACTOR_WORK))
        schedule(to);
    return RC_OK;
}

void rc_send_batch_flush(struct rc_send_batch *b)
{
    if (b->n == 0)
        return;
    struct rc_actor_system *sys = b->sys;
    uint64_t n = b->n;
    inject_push_list(sys, b->first, b->last, n);
    b->first = b->last = NULL;
    b->n = 0;
    SEQ_CST_FENCE(sys); /* the Dekker pair of worker_sleep, as in wake_if_sleeping */
    /* relaxed: ordered by the fence above. */
    if (atomic_load_explicit(&sys->nsleeping, memory_order_relaxed) > 0)
        wake_many(sys, n);
}

/* Appends a (whose token the caller holds) to b's list; b->sys is a's. */
static void batch_link(struct rc_send_batch *b, struct rc_actor *a)
{
    /* We hold the token: run_next is ours until the actor is queued. */
    a->run_next = NULL;
    if (b->last)
        b->last->run_next = a;
    else
        b->first = a;
    b->last = a;
    b->n++;
}

/* Queues a (token held) through b, flushing first if b serves another
 * system. */
static void batch_queue(struct rc_send_batch *b, struct rc_actor *a)
{
    if (b->sys != a->sys) {
        rc_send_batch_flush(b);
        b->sys = a->sys;
    }
    batch_link(b, a);
}

int rc_send_batch_add(struct rc_send_batch *b, struct rc_actor *to, struct rc_msg *msg)
{
    if (!b || !to || !msg)
        return RC_EINVAL;
    msg->flags = 0;
    /* acq_rel: as in rc_actor_send. */
    uint64_t prev = atomic_fetch_add_explicit(&to->count, 1, memory_order_acq_rel);
    if (prev & RC_ACTOR_CLOSED) {
        /* relaxed: as in rc_actor_send. */
        atomic_fetch_sub_explicit(&to->count, 1, memory_order_relaxed);
        return RC_ECLOSED;
    }
    mb_push(to, msg);
    if (!(prev & RC_ACTOR_WORK))
        batch_queue(b, to);
    return RC_OK;
}

int rc_send_batch_try_add(struct rc_send_batch *b, struct rc_actor *to, struct rc_msg *msg)
{
    if (!b || !to || !msg)
        return RC_EINVAL;
    if (to->mailbox_limit && rc_actor_mailbox_len(to) >= to->mailbox_limit) {
        /* relaxed: a statistic. */
        atomic_fetch_add_explicit(&to->sys->overloads, 1, memory_order_relaxed);
        return RC_EOVERLOAD;
    }
    return rc_send_batch_add(b, to, msg);
}

/*
 * The inline turn.  Taking the token by a CAS from exactly 0 (no message
 * accepted and unfinished, no stop bit) proves that nobody runs the actor
 * and its mailbox is empty, so handling msg here, now, is what a worker
 * would have done next: per-sender order and "one thread at a time" hold.
 * The count's 1 stands for msg, which never enters the mailbox.  Sends that
 * race with the turn see a non-zero count and only push; the final
 * subtraction finds them (or a stop request) and queues the actor through
 * b, as a worker's turn end would.  On a worker, actors it makes runnable
 * go to the worker's run queue, as in any turn; on an outside thread
 * (rc_send_batch_try_add_inline), to the system's injection queue, as any
 * send from outside does.  Nested in the caller's turn at most one level
 * deep (the caller's turn state is saved and restored around it).
 *
 * inline_turn is the turn itself, once the caller holds the token (the
 * count's 1 for msg).
 */
static void inline_turn(struct rc_send_batch *b, struct rc_actor *to, struct rc_msg *msg)
{
    struct rc_worker *w = tl_worker;
    struct rc_msg *outer_msg = tl_cur_msg;
    bool outer_kept = tl_kept, outer_in_turn = tl_in_turn;
    bool outside_base = tl_inline_depth == 0 && !w;
    msg->flags = 0;
    tl_inline_depth++;
    if (outside_base)
        tl_outside_sys = to->sys;
    tl_cur_msg = msg;
    tl_kept = false;
    tl_in_turn = true;
    to->kind->fn(to, to->state, msg);
    bool kept = tl_kept;
    tl_cur_msg = outer_msg;
    tl_kept = outer_kept;
    tl_in_turn = outer_in_turn;
    tl_inline_depth--;
    if (outside_base)
        tl_outside_sys = NULL;
    if (!kept)
        rc_msg_free(msg);
    if (w && w->sys == to->sys) {
        worker_stat_add(&w->handled, 1);
        worker_stat_add(&w->inline_handled, 1);
        if (outer_in_turn)
            worker_stat_add(&w->nested_handled, 1);
    } else {
        /* relaxed: statistics; several outside threads may add at once */
        atomic_fetch_add_explicit(&to->sys->outside_handled, 1, memory_order_relaxed);
        if (outer_in_turn)
            atomic_fetch_add_explicit(&to->sys->outside_nested, 1, memory_order_relaxed);
    }
    /* acq_rel: release publishes this turn's effects on the state to the
     * next token holder; acquire sees the increments that keep the token
     * (as run_turn's subtraction). */
    uint64_t c = atomic_fetch_sub_explicit(&to->count, 1, memory_order_acq_rel) - 1;
    if (c & RC_ACTOR_WORK)
        batch_queue(b, to); /* messages or a stop arrived meanwhile: a worker takes over */
}

/* Takes to's token when it is idle: a CAS from exactly 0.  acquire on
 * success: pairs with the release of the last turn's subtraction (run_turn
 * or inline_turn), so this thread sees the state that turn left.  relaxed
 * on failure: the caller only falls back to a send, whose own RMW orders
 * what it needs. */
static bool inline_take(struct rc_actor *to)
{
    uint64_t expect = 0;
    return atomic_compare_exchange_strong_explicit(&to->count, &expect, 1, memory_order_acquire,
                                                   memory_order_relaxed);
}

/* Whether the calling behaviour's turn may nest to's turn in itself: a
 * worker's turn of to's system, not yet nesting one, or an outside
 * thread's base inline turn of to's system, not yet nesting one (see
 * tl_inline_depth). */
static bool may_nest_in_turn(const struct rc_worker *w, const struct rc_actor *to)
{
    if (w && w->sys == to->sys)
        return tl_inline_depth == 0;
    return tl_inline_depth == 1 && tl_outside_sys == to->sys;
}

int rc_send_batch_add_inline(struct rc_send_batch *b, struct rc_actor *to, struct rc_msg *msg)
{
    if (!b || !to || !msg)
        return RC_EINVAL;
    struct rc_worker *w = tl_worker;
    if (!may_nest_in_turn(w, to) || !inline_take(to))
        return rc_send_batch_add(b, to, msg);
    inline_turn(b, to, msg);
    return RC_OK;
}

int rc_send_batch_try_add_inline(struct rc_send_batch *b, struct rc_actor *to, struct rc_msg *msg)
{
    if (!b || !to || !msg)
        return RC_EINVAL;
    struct rc_worker *w = tl_worker;
    /* Outside any turn, any thread may run one (its base turn); in a turn,
     * as rc_send_batch_add_inline (a behaviour of another system would run
     * to's turn inside its own). */
    bool may = tl_in_turn ? may_nest_in_turn(w, to) : tl_inline_depth == 0;
    if (!may || !inline_take(to))
        return rc_send_batch_try_add(b, to, msg);
    /* no limit to check: an idle actor's mailbox is empty */
    inline_turn(b, to, msg);
    return RC_OK;
}

int rc_actor_try_send(struct rc_actor *to, struct rc_msg *msg)
{
    if (!to || !msg)
        return RC_EINVAL;
    if (to->mailbox_limit && rc_actor_mailbox_len(to) >= to->mailbox_limit) {
        /* relaxed: a statistic. */
        atomic_fetch_add_explicit(&to->sys->overloads, 1, memory_order_relaxed);
        return RC_EOVERLOAD;
    }
    return rc_actor_send(to, msg);
}

size_t rc_actor_mailbox_len(const struct rc_actor *a)
{
    /* relaxed: an estimate. */
    uint64_t c = atomic_load_explicit(&a->count, memory_order_relaxed);
    if (c & RC_ACTOR_CLOSED)
        return 0;
    return (size_t)(c & RC_ACTOR_COUNT_MASK);
}

bool rc_actor_overloaded(const struct rc_actor *a)
{
    return a->mailbox_limit && rc_actor_mailbox_len(a) >= a->mailbox_limit;
}

struct rc_actor_system *rc_actor_system_of(const struct rc_actor *a)
{
    return a->sys;
}

const char *rc_actor_name(const struct rc_actor *a)
{
    return a->kind->name;
}

bool rc_actor_stopped(const struct rc_actor *a)
{
    /* acquire: a caller that sees CLOSED may rely on the stop having begun. */
    return atomic_load_explicit(&a->count, memory_order_acquire) & RC_ACTOR_CLOSED;
}

/* ---- Workers ---- */

static void *worker_main(void *arg)
{
    struct rc_worker *w = arg;
    tl_worker = w;
    /* Named for top -H, perf and gdb; a name that does not fit is only
     * cosmetic, so the result is ignored. */
    char name[16];
    snprintf(name, sizeof(name), "rc-worker-%u", w->index);
    (void)pthread_setname_np(pthread_self(), name);
    for (;;) {
        struct rc_actor *a = find_work(w);
        if (!a) {
            /* Spin briefly before sleeping (about 5-10 us of pause, then
             * two yields): work often comes back at once, and a futex
             * sleep + wake costs more; spinning longer burns a shared core
             * that the thread producing the work may need. */
            for (int i = 0; i < RC_SPIN_ROUNDS + 2 && !a; i++) {
                if (i < RC_SPIN_ROUNDS)
                    for (int j = 0; j < 32; j++)
                        cpu_relax();
                else
                    sched_yield();
                a = find_work(w);
            }
            if (!a) {
                if (!worker_sleep(w))
                    break;
                continue;
            }
        }
        /* Work is waiting behind this turn and a worker sleeps: wake it to
         * steal (relaxed: a hint; missing it only delays, the work is ours). */
        if (runq_len(&w->q) > 0 &&
            atomic_load_explicit(&w->sys->nsleeping, memory_order_relaxed) > tokens(w->sys))
            wake_one(w->sys);
        run_turn(w, a);
    }
    tl_worker = NULL;
    return NULL;
}

/* ---- The system ---- */

int rc_actor_system_new(struct rc_actor_system **out, const struct rc_actor_system_opts *opts)
{
    if (!out)
        return RC_EINVAL;
    struct rc_actor_system *sys = rc_calloc(1, sizeof(*sys));
    if (!sys)
        return RC_ENOMEM;
    uint32_t n = opts ? opts->workers : 0;
    if (n == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (uint32_t)cpus : 1;
    }
    if (n > 1024) {
        rc_free(sys);
        return RC_EINVAL;
    }
    sys->nworkers = n;
    sys->batch = opts && opts->batch ? opts->batch : 64;
    if (opts && opts->tick_us)
        sys->tick_ns = (uint64_t)opts->tick_us * 1000u;
    else
        sys->tick_ns = (uint64_t)(opts && opts->tick_ms ? opts->tick_ms : 1) * 1000000u;
    void *mem = NULL;
    if (posix_memalign(&mem, RC_CACHELINE, sizeof(struct rc_worker) * n) != 0) {
        rc_free(sys);
        return RC_ENOMEM;
    }
    sys->workers = mem;
    memset(sys->workers, 0, sizeof(struct rc_worker) * n);
    for (uint32_t i = 0; i < n; i++) {
        struct rc_worker *w = &sys->workers[i];
        /* not shared yet: the threads start later (pthread_create orders) */
        atomic_init(&w->q.head, 0);
        atomic_init(&w->q.tail, 0);
        w->sys = sys;
        w->index = i;
        w->rng = 0x9E3779B97F4A7C15u * (i + 1);
    }
    pthread_mutex_init(&sys->inject_mtx, NULL);
    pthread_mutex_init(&sys->sleep_mtx, NULL);
    pthread_cond_init(&sys->sleep_cv, NULL);
    pthread_mutex_init(&sys->reg_mtx, NULL);
    pthread_cond_init(&sys->reg_cv, NULL);
    for (uint32_t i = 0; i < RC_MON_STRIPES; i++)
        pthread_mutex_init(&sys->mon_mtx[i], NULL);
    int rc = rc__timer_sys_init(sys, opts ? opts->timer_threads : 0);
    if (rc != RC_OK) {
        free(sys->workers);
        rc_free(sys);
        return rc;
    }
    *out = sys;
    return RC_OK;
}

int rc_actor_system_start(struct rc_actor_system *sys)
{
    if (!sys)
        return RC_EINVAL;
    pthread_mutex_lock(&sys->reg_mtx);
    if (sys->started || sys->joining) {
        pthread_mutex_unlock(&sys->reg_mtx);
        return RC_ESTATE;
    }
    sys->started = true;
    pthread_mutex_unlock(&sys->reg_mtx);
    uint32_t i;
    for (i = 0; i < sys->nworkers; i++)
        if (pthread_create(&sys->workers[i].thread, NULL, worker_main, &sys->workers[i]) != 0)
            break;
    int rc = i == sys->nworkers ? rc__timer_start(sys) : RC_ENOMEM;
    if (rc != RC_OK) {
        pthread_mutex_lock(&sys->sleep_mtx);
        sys->exiting = true;
        pthread_cond_broadcast(&sys->sleep_cv);
        pthread_mutex_unlock(&sys->sleep_mtx);
        for (uint32_t j = 0; j < i; j++)
            pthread_join(sys->workers[j].thread, NULL);
        pthread_mutex_lock(&sys->sleep_mtx);
        sys->exiting = false;
        pthread_mutex_unlock(&sys->sleep_mtx);
        pthread_mutex_lock(&sys->reg_mtx);
        sys->started = false;
        pthread_mutex_unlock(&sys->reg_mtx);
        return rc;
    }
    return RC_OK;
}

void rc_actor_system_stop(struct rc_actor_system *sys)
{
    if (!sys)
        return;
    pthread_mutex_lock(&sys->reg_mtx);
    sys->stopping = true;
    if (sys->joined) {
        pthread_mutex_unlock(&sys->reg_mtx);
        return;
    }
    /* Stop every live actor; none can be added any more. */
    for (struct rc_actor *a = sys->reg_head; a; a = a->reg_next)
        rc_actor_stop(a, RC_ESHUTDOWN);
    bool started = sys->started;
    pthread_mutex_unlock(&sys->reg_mtx);
    struct rc_worker *self = tl_worker;
    if ((self && self->sys == sys) || tl_in_turn)
        return; /* from a behaviour: the stops are requested; the owner
                   must call stop again from outside to join */
    if (!started && rc_actor_system_start(sys) == RC_ENOMEM) {
        /* No threads: nothing queued can run, and nothing ran.  Leave the
         * actors as they are rather than run fini off a worker. */
        return;
    }
    pthread_mutex_lock(&sys->reg_mtx);
    while (sys->reg_live > 0)
        pthread_cond_wait(&sys->reg_cv, &sys->reg_mtx);
    if (sys->joining) {
        /* Another thread is joining: wait for it to finish. */
        while (!sys->joined)
            pthread_cond_wait(&sys->reg_cv, &sys->reg_mtx);
        pthread_mutex_unlock(&sys->reg_mtx);
        return;
    }
    sys->joining = true;
    pthread_mutex_unlock(&sys->reg_mtx);
    pthread_mutex_lock(&sys->sleep_mtx);
    sys->exiting = true;
    pthread_cond_broadcast(&sys->sleep_cv);
    pthread_mutex_unlock(&sys->sleep_mtx);
    for (uint32_t i = 0; i < sys->nworkers; i++)
        pthread_join(sys->workers[i].thread, NULL);
    rc__timer_stop(sys);
    pthread_mutex_lock(&sys->reg_mtx);
    sys->joined = true;
    pthread_cond_broadcast(&sys->reg_cv);
    pthread_mutex_unlock(&sys->reg_mtx);
}

void rc_actor_system_free(struct rc_actor_system *sys)
{
    if (!sys)
        return;
    rc_actor_system_stop(sys); /* in case the caller did not: a no-op if it did */
    rc__timer_sys_fini(sys);
    for (uint32_t i = 0; i < RC_MON_STRIPES; i++)
        pthread_mutex_destroy(&sys->mon_mtx[i]);
    pthread_cond_destroy(&sys->reg_cv);
    pthread_mutex_destroy(&sys->reg_mtx);
    pthread_cond_destroy(&sys->sleep_cv);
    pthread_mutex_destroy(&sys->sleep_mtx);
    pthread_mutex_destroy(&sys->inject_mtx);
    free(sys->workers);
    rc_free(sys);
}

uint32_t rc_actor_system_workers(const struct rc_actor_system *sys)
{
    return sys->nworkers;
}

bool rc_actor_system_stopping(struct rc_actor_system *sys)
{
    pthread_mutex_lock(&sys->reg_mtx);
    bool stopping = sys->stopping;
    pthread_mutex_unlock(&sys->reg_mtx);
    return stopping;
}

void rc_actor_system_stats(const struct rc_actor_system *sys, struct rc_actor_system_stats *st)
{
    memset(st, 0, sizeof(*st));
    /* relaxed loads: statistics. */
    st->actors_live = atomic_load_explicit(&sys->actors_live, memory_order_relaxed);
    st->overloads = atomic_load_explicit(&sys->overloads, memory_order_relaxed);
    st->workers_sleeping = atomic_load_explicit(&sys->nsleeping, memory_order_relaxed);
    /* the lock is logically mutable: stats stay const for callers */
    st->timers_armed = rc__timer_armed_count((struct rc_actor_system *)sys);
    st->timer_threads = rc__timer_threads((struct rc_actor_system *)sys);
    for (uint32_t i = 0; i < sys->nworkers; i++) {
        /* relaxed: statistics */
        st->messages_handled +=
            atomic_load_explicit(&sys->workers[i].handled, memory_order_relaxed);
        st->steals += atomic_load_explicit(&sys->workers[i].steals, memory_order_relaxed);
        st->inline_handled +=
            atomic_load_explicit(&sys->workers[i].inline_handled, memory_order_relaxed);
        st->inline_nested +=
            atomic_load_explicit(&sys->workers[i].nested_handled, memory_order_relaxed);
    }
    /* relaxed: statistics */
    uint64_t outside = atomic_load_explicit(&sys->outside_handled, memory_order_relaxed);
    st->messages_handled += outside;
    st->inline_handled += outside;
    st->inline_outside = outside;
    st->inline_nested += atomic_load_explicit(&sys->outside_nested, memory_order_relaxed);
}
