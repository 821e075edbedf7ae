/*
 * rc_actor_internal: the structures shared by the runtime's own files
 * (rc_actor.c: actors, mailboxes, scheduler, monitors, system;
 * rc_timer.c: the timer thread).  Not for users of the library.
 */
#ifndef RC_ACTOR_INTERNAL_H
#define RC_ACTOR_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "rc_actor.h"
#include "rc_wheel.h"

#define RC_CACHELINE 64

/*
 * The actor's count word: the low 48 bits count messages accepted by send
 * and not yet finished by a turn; the high bits carry the stop state.  The
 * word is the scheduling token: whoever moves it from "no work" (count 0 and
 * no STOP_REQ) to "work" queues the actor, and only the worker running the
 * actor moves it back (see rc_actor.c, "The scheduling rule").
 */
#define RC_ACTOR_COUNT_MASK ((UINT64_C(1) << 48) - 1)
#define RC_ACTOR_CLAIM      (UINT64_C(1) << 60) /* a stop reason was chosen */
#define RC_ACTOR_STOP_REQ   (UINT64_C(1) << 61) /* stop requested: run the stop */
#define RC_ACTOR_CLOSED     (UINT64_C(1) << 62) /* sends fail from here on */
#define RC_ACTOR_WORK       (RC_ACTOR_COUNT_MASK | RC_ACTOR_STOP_REQ)

/* What actors spawned with the same behaviour, fini and name share: interned
 * once per process (rc_actor.c, actor_kind_intern) so that each actor holds
 * one pointer instead of three; a million run actors then fit jemalloc's
 * 128-byte size class. */
struct rc_actor_kind {
    struct rc_actor_kind *next; /* the process-wide list; immutable once linked */
    rc_actor_behaviour fn;
    rc_actor_fini fini;
    const char *name;
};

struct rc_actor {
    /* Senders' side. */
    _Atomic uint64_t count;      /* the token word above */
    _Atomic uint32_t refs;       /* handle references; next to count, as the
                                    timer thread touches both */
    uint32_t mailbox_limit;      /* immutable after spawn */
    struct rc_msg *_Atomic head; /* mailbox: last message pushed (Vyukov) */
    /* The side of the worker that holds the token (one at a time). */
    struct rc_msg *tail;              /* mailbox: next to pop; token holder only */
    struct rc_msg stub;               /* mailbox stub node */
    const struct rc_actor_kind *kind; /* immutable after spawn */
    void *state;                      /* token holder only */
    struct rc_actor_system *sys;      /* immutable after spawn */
    struct rc_actor *run_next;        /* inject queue link: the token holder's
                                         until queued, then sys->inject_mtx */
    struct rc_actor *reg_prev;        /* live list; sys->reg_mtx */
    struct rc_actor *reg_next;        /* live list; sys->reg_mtx */
    struct rc_msg *monitors;          /* DOWN records to send; monitor stripe lock */
    int exit_reason;                  /* written by the stop winner before
                                         STOP_REQ (release); read after it (acquire) */
    bool down;                        /* stopped and monitors sent; stripe lock */
    bool draining;                    /* CLOSED set, mailbox being freed; token holder */
    uint64_t drain_left;              /* accepted messages not yet freed; token holder */
};
_Static_assert(sizeof(struct rc_actor) <= 128, "an actor fits jemalloc's 128-byte class");

/* A worker's run queue: a bounded ring with one producer (the owning
 * worker) and many consumers (the owner and thieves), FIFO. */
#define RC_RUNQ_CAP 1024u

struct rc_runq {
    _Atomic uint64_t head; /* next to take; CAS by any consumer */
    char pad0[RC_CACHELINE - sizeof(uint64_t)];
    _Atomic uint64_t tail; /* next free; written by the owner only */
    char pad1[RC_CACHELINE - sizeof(uint64_t)];
    struct rc_actor *_Atomic buf[RC_RUNQ_CAP];
};

struct rc_worker {
    struct rc_runq q;
    struct rc_actor_system *sys;
    uint32_t index;
    pthread_t thread;
    uint64_t rng;                    /* owner only */
    uint64_t turns;                  /* owner only */
    _Atomic uint64_t handled;        /* owner writes (relaxed), stats read */
    _Atomic uint64_t steals;         /* owner writes (relaxed), stats read */
    _Atomic uint64_t inline_handled; /* owner writes (relaxed), stats read */
    _Atomic uint64_t nested_handled; /* of inline_handled: in another turn; as above */
} __attribute__((aligned(RC_CACHELINE)));

#define RC_MON_STRIPES 64u

/* Timer threads (rc_timer.c): each sleeps until the wheel's next tick and
 * whichever wakes first turns it, so one stalled CPU does not delay the
 * watchdog (see rc_timer.c). */
#define RC_TIMER_THREADS_MAX 4u

struct rc_timer_thread {
    struct rc_actor_system *sys;
    pthread_t thread;
    uint32_t index;
    int cpu;             /* pinned to this CPU; -1: not pinned */
    uint64_t wake_tick;  /* timer_mtx: the tick it sleeps until; 0: awake */
    uint64_t seen_turns; /* timer_mtx: timer_turns when it last went to sleep */
};

struct rc_actor_system {
    uint32_t nworkers; /* immutable after new */
    uint32_t batch;    /* immutable after new */
    uint64_t tick_ns;  /* immutable after new */
    struct rc_worker *workers;

    /* The inject queue: actors made runnable by threads that are not this
     * system's workers (and local overflow). */
    pthread_mutex_t inject_mtx;
    struct rc_actor *inject_head; /* inject_mtx */
    struct rc_actor *inject_tail; /* inject_mtx */
    _Atomic uint64_t inject_len;  /* written under inject_mtx; read as a hint */

    /* Sleeping workers. */
    pthread_mutex_t sleep_mtx;
    pthread_cond_t sleep_cv;
    _Atomic uint32_t nsleeping;   /* changed under sleep_mtx; read lock-free by wakers */
    _Atomic uint32_t wake_tokens; /* changed under sleep_mtx; read lock-free as a hint */
    bool exiting;                 /* sleep_mtx: workers leave when idle */
    _Atomic uint64_t fence_word;  /* TSan builds: stands in for seq_cst fences */

    /* Live actors, for system stop. */
    pthread_mutex_t reg_mtx;
    pthread_cond_t reg_cv;
    struct rc_actor *reg_head; /* reg_mtx */
    uint64_t reg_live;         /* reg_mtx */
    bool stopping;             /* reg_mtx: spawn fails */
    bool started;              /* reg_mtx */
    bool joining;              /* reg_mtx: a stop is joining the threads */
    bool joined;               /* reg_mtx: threads joined */
    _Atomic uint64_t actors_live;
    _Atomic uint64_t overloads;
    _Atomic uint64_t outside_handled; /* inline turns run outside the workers */
    _Atomic uint64_t outside_nested;  /* of those, nested in another inline turn */

    /* Monitor lists, striped by target address. */
    pthread_mutex_t mon_mtx[RC_MON_STRIPES];

    /* Timers (rc_timer.c). */
    pthread_mutex_t timer_mtx;
    pthread_cond_t timer_cv;      /* CLOCK_MONOTONIC */
    struct rc_wheel wheel;        /* timer_mtx */
    uint64_t timer_wake_tick;     /* timer_mtx: the latest tick a timer thread sleeps until */
    uint64_t max_sleep_ticks;     /* immutable after new */
    _Atomic int timer_wants_lock; /* timer threads waiting for timer_mtx */
    bool timer_exit;              /* timer_mtx */
    uint32_t timer_hold_mask;     /* timer_mtx: threads held (rc_actor_system_hold_timer_thread) */
    uint64_t timer_tickets;       /* timer_mtx: chunks of expiries collected */
    uint64_t timer_turns;         /* timer_mtx: calls advancing the wheel */
    pthread_mutex_t timer_dlv_mtx;
    pthread_cond_t timer_dlv_cv;  /* timer_dlv_mtx */
    uint64_t timer_delivered;     /* timer_dlv_mtx: chunks delivered, in ticket order */
    pthread_cond_t timer_hold_cv; /* timer_mtx: a held thread waits here */
    uint32_t ntimers;             /* immutable after new */
    uint32_t timers_running;      /* timer_mtx; written by start/stop */
    struct rc_timer_thread timers[RC_TIMER_THREADS_MAX];
};

/* rc_timer.c */
int rc__timer_sys_init(struct rc_actor_system *sys, uint32_t nthreads);
void rc__timer_sys_fini(struct rc_actor_system *sys);
int rc__timer_start(struct rc_actor_system *sys);
void rc__timer_stop(struct rc_actor_system *sys);
/* The running timer threads. */
uint32_t rc__timer_threads(struct rc_actor_system *sys);
uint64_t rc__timer_armed_count(struct rc_actor_system *sys);

#endif
