/*
 * rc_actor: the actor runtime.
 *
 * An actor is a behaviour function plus state, run by a pool of worker
 * threads, one message at a time, in order, never on two threads at once.
 * Senders never block.  This library knows nothing of runs, nng or
 * WebSockets.
 *
 * Lifetimes:
 *   rc_actor_system_new -> _start -> ... -> _stop -> _free
 *   rc_actor_spawn returns an actor holding one reference for the caller;
 *   rc_actor_hold/_release count references to the actor's *handle*, so a
 *   sender may keep a pointer to an actor that has stopped: sending to it
 *   then fails with RC_ECLOSED.  The state is finalised (fini) when the actor
 *   stops; the handle is freed when the last reference goes.  Handles may
 *   outlive the system: after rc_actor_system_free, rc_actor_send (which
 *   then fails with RC_ECLOSED) and rc_actor_release remain valid; nothing
 *   else is.
 *
 * Threads: every function may be called from any thread unless it says
 * otherwise.  Behaviours and finis run on the system's worker threads and
 * should not block for long (a blocked behaviour holds its thread).
 *
 * docs/ACTORS.md describes the design (mailbox, scheduling, stealing,
 * sleeping, stop, timers) and the benchmark numbers.
 */
#ifndef RC_ACTOR_H
#define RC_ACTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rc_wheel.h"

struct rc_actor_system;
struct rc_actor;
struct rc_msg;

/* ---- Messages ---- */

typedef void (*rc_msg_free_fn)(struct rc_msg *msg);

/*
 * Every message starts with this header; the payload follows (embed the
 * header as the first member of your message struct).  Allocated with
 * rc_msg_new; the runtime frees it after the behaviour returns unless the
 * behaviour called rc_msg_keep.  free_fn, when set, is called instead of
 * rc_free when the runtime drops the message (also when a mailbox is
 * dropped at stop), so messages holding references can release them.
 */
struct rc_msg {
    struct rc_msg *_Atomic next; /* mailbox link; owned by the runtime */
    uint32_t type;               /* application-defined; < RC_MSG_SYSTEM_BASE */
    uint32_t flags;              /* owned by the runtime */
    rc_msg_free_fn free_fn;      /* NULL: rc_free */
};

/* Types at and above this value are the runtime's own (down, timer). */
#define RC_MSG_SYSTEM_BASE 0xFFFF0000u

/* A message of size bytes (>= sizeof(struct rc_msg)), header initialised;
 * NULL if size is too small or memory is short. */
struct rc_msg *rc_msg_new(size_t size, uint32_t type);
/* Frees msg through its free_fn (or rc_free). */
void rc_msg_free(struct rc_msg *msg);
/* Called from a behaviour on the message it is handling: the runtime will
 * not free msg after it returns (the behaviour may re-send it, even to
 * itself, or free it later).  Elsewhere it does nothing. */
void rc_msg_keep(struct rc_msg *msg);

/* ---- Actors ---- */

/* Handles one message.  self may be used to send to oneself or to stop. */
typedef void (*rc_actor_behaviour)(struct rc_actor *self, void *state, struct rc_msg *msg);
/* Frees the state once the actor has stopped; reason as given to stop. */
typedef void (*rc_actor_fini)(void *state, int reason);

struct rc_actor_opts {
    uint32_t mailbox_limit; /* 0: unlimited; see rc_actor_try_send */
    const char *name;       /* static string for diagnostics; may be NULL */
};

/* Spawns an actor; *out holds one reference for the caller.  RC_ECLOSED
 * when the system is stopping.  May be called before rc_actor_system_start
 * (messages sent then wait for the workers). */
int rc_actor_spawn(struct rc_actor_system *sys, rc_actor_behaviour fn, void *state,
                   rc_actor_fini fini, const struct rc_actor_opts *opts, struct rc_actor **out);

struct rc_actor *rc_actor_hold(struct rc_actor *a);
/* NULL does nothing. */
void rc_actor_release(struct rc_actor *a);

/*
 * Queues msg for actor to; never blocks, from any thread.  On success the
 * runtime owns msg: it is handled, or freed (free_fn) if the actor stops
 * first; never lost.  On failure (RC_ECLOSED: the actor has stopped) the
 * caller still owns msg.  Ignores the mailbox limit.  Messages from one
 * sender thread to one actor are handled in the order sent.
 */
int rc_actor_send(struct rc_actor *to, struct rc_msg *msg);

/* As rc_actor_send, but fails with RC_EOVERLOAD (caller keeps msg) when the
 * mailbox already holds mailbox_limit or more messages (counted in the
 * system's stats).  The check is a snapshot: concurrent try_sends may
 * overshoot the limit by the number of racing senders. */
int rc_actor_try_send(struct rc_actor *to, struct rc_msg *msg);

/*
 * Sending many messages at once from a thread that is not a worker (an nng
 * callback fanning one network message out to many actors): each add is a
 * send (same result and ownership rules as rc_actor_send), but the actors it
 * makes runnable are queued together at flush, with one lock and at most one
 * wake-up per sleeping worker.  Until the flush they wait, so flush before
 * returning.  One batch serves one system (an add to another system's actor
 * flushes first).
 *
 *   struct rc_send_batch b = RC_SEND_BATCH_INIT;
 *   rc_send_batch_add(&b, actor, msg); ...
 *   rc_send_batch_flush(&b);
 */
struct rc_send_batch {
    /* private */
    struct rc_actor_system *sys;
    struct rc_actor *first, *last;
    uint64_t n;
};
#define RC_SEND_BATCH_INIT                                                                         \
    {                                                                                              \
        NULL, NULL, NULL, 0                                                                        \
    }
int rc_send_batch_add(struct rc_send_batch *b, struct rc_actor *to, struct rc_msg *msg);
/* As rc_send_batch_add with rc_actor_try_send's mailbox limit (RC_EOVERLOAD,
 * caller keeps msg, counted in the stats). */
int rc_send_batch_try_add(struct rc_send_batch *b, struct rc_actor *to, struct rc_msg *msg);
void rc_send_batch_flush(struct rc_send_batch *b);
/*
 * As rc_send_batch_add, but when the caller is a worker of to's system (a
 * behaviour, typically) and `to` is idle (no message queued or being
 * handled, no stop requested), `to`'s behaviour handles msg right here,
 * nested in the caller's turn, before this returns: no mailbox, no run
 * queue, no wake-up, and the message's data still in this core's cache.
 * The actor guarantees hold (one thread at a time per actor, per-sender
 * order, rc_msg_keep, stop): the inline turn takes the actor's token
 * exactly as a worker's turn does.  If messages or a stop reach `to`
 * during the turn it is queued through b afterwards; flush b as with any
 * batch.  One level deep: a behaviour running inline that sends inline
 * queues instead (but see rc_send_batch_try_add_inline: an outside
 * thread's inline turn counts as the worker's turn).  Results and
 * ownership as rc_actor_send.
 */
int rc_send_batch_add_inline(struct rc_send_batch *b, struct rc_actor *to, struct rc_msg *msg);
/*
 * As rc_send_batch_add_inline, with rc_send_batch_try_add's mailbox limit
 * when `to` is busy, and also from a thread that is no worker and runs no
 * turn (an I/O library's callback, say): the inline turn then runs on that
 * thread, under the same token, so the guarantees are the same, and that
 * turn stands for a worker's: its behaviour's rc_send_batch_add_inline to
 * an idle actor of the same system runs nested in it, on that thread too
 * (one level; deeper ones queue).  Actors it makes runnable are queued
 * through b (flush it).  The REP ingress uses it so that an acknowledged
 * event is handled, and its ack completed, on the thread that received
 * it; the stream reader, so that a connection's decoder, and the idle
 * runs it feeds, run on the thread that read the bytes.
 */
int rc_send_batch_try_add_inline(struct rc_send_batch *b, struct rc_actor *to, struct rc_msg *msg);

/* Approximate number of queued messages (including the batch a worker is
 * handling right now); 0 once stopped.  For metrics and backpressure. */
size_t rc_actor_mailbox_len(const struct rc_actor *a);
bool rc_actor_overloaded(const struct rc_actor *a);

/*
 * Stops actor a with reason (0: normal).  From any thread, including a's
 * own behaviour.  The actor finishes the message it is handling, if any;
 * messages still queued are dropped (freed through their free_fn), and so
 * is every message a racing send accepted; then fini runs on a worker
 * thread, then monitors are notified (DOWN with the reason), then the
 * runtime drops its reference.  Sends fail with RC_ECLOSED from the moment
 * the worker begins the stop.  Idempotent: the first reason wins.
 * rc_actor_system_stop uses reason RC_ESHUTDOWN.
 */
void rc_actor_stop(struct rc_actor *a, int reason);

/* The system an actor belongs to. */
struct rc_actor_system *rc_actor_system_of(const struct rc_actor *a);
/* The name given at spawn (may be NULL). */
const char *rc_actor_name(const struct rc_actor *a);
/* True once the actor has begun its stop: sends fail from then on. */
bool rc_actor_stopped(const struct rc_actor *a);

/* ---- Monitors ---- */

#define RC_MSG_DOWN (RC_MSG_SYSTEM_BASE + 1)

/* Sent to a watcher when a monitored actor stops. */
struct rc_msg_down {
    struct rc_msg hdr;      /* type RC_MSG_DOWN */
    struct rc_actor *actor; /* holds a reference, released with the message */
    int reason;
    uint64_t tag; /* as given to rc_actor_monitor */
};

/* watcher receives one RC_MSG_DOWN when target stops (at once if it already
 * has), after target's fini has run.  Each call adds one monitor (no
 * de-duplication); the monitor holds both actors' handles until it fires,
 * and is dropped with the watcher's mailbox if the watcher stops first.
 * RC_ENOMEM, or RC_EINVAL for NULL arguments.  The system must not have
 * been freed. */
int rc_actor_monitor(struct rc_actor *watcher, struct rc_actor *target, uint64_t tag);

/* ---- The system ---- */

struct rc_actor_system_opts {
    uint32_t workers;       /* 0: the number of online CPUs */
    uint32_t batch;         /* messages per actor turn; 0: 64 */
    uint32_t tick_ms;       /* timer wheel resolution; 0: 1 ms */
    uint32_t tick_us;       /* finer resolution in microseconds; overrides tick_ms
                               when not 0 (runcastd keeps --watchdog-tick as its
                               lateness budget and turns the wheel 16 times finer) */
    uint32_t timer_threads; /* threads turning the wheel, each pinned to its own
                               CPU; 0: 2 when the process may run on 2 CPUs or
                               more, else 1; at most 4 */
};

int rc_actor_system_new(struct rc_actor_system **out, const struct rc_actor_system_opts *opts);
/* Starts the worker threads and the timer threads.  RC_ESTATE if already
 * started or stopped. */
int rc_actor_system_start(struct rc_actor_system *sys);
/* Stops accepting new work (spawn fails with RC_ECLOSED), stops every live
 * actor with reason RC_ESHUTDOWN (their fini runs on a worker, queued
 * messages are dropped, monitors fire), waits for all of them, joins the
 * threads.  Safe to call twice, and on a system never started (it starts
 * the workers to run the stops).  Called from a behaviour it only requests
 * the stops and returns; call it again from outside to join.  Concurrent
 * calls all return once the threads are joined. */
void rc_actor_system_stop(struct rc_actor_system *sys);
/* Frees the system, stopping it first if that was not done.  Not from a
 * behaviour.  NULL does nothing. */
void rc_actor_system_free(struct rc_actor_system *sys);

uint32_t rc_actor_system_workers(const struct rc_actor_system *sys);
/* True once rc_actor_system_stop has begun (spawn fails from then on). */
bool rc_actor_system_stopping(struct rc_actor_system *sys);

/* Counters for metrics (each read with relaxed loads, except timers_armed). */
struct rc_actor_system_stats {
    uint64_t actors_live;
    uint64_t messages_handled;
    uint64_t steals;
    uint64_t overloads; /* try_send refusals */
    uint64_t workers_sleeping;
    uint64_t timers_armed;   /* read under the timer lock */
    uint64_t inline_handled; /* of messages_handled: in inline turns */
    uint64_t inline_nested;  /* of inline_handled: nested in another turn (a
                                decoder's running a run's) */
    uint64_t inline_outside; /* of inline_handled: on threads that are no
                                worker (nng's callbacks) */
    uint32_t timer_threads;  /* running timer threads */
};
void rc_actor_system_stats(const struct rc_actor_system *sys, struct rc_actor_system_stats *st);

/* The CPU timer thread i is pinned to, or -1 (not pinned, or no such
 * thread).  Threads are pinned only when there are two or more. */
int rc_actor_system_timer_cpu(const struct rc_actor_system *sys, uint32_t i);
/* For tests: while held, timer thread i does not turn the wheel, as if the
 * CPU it sleeps on were stalled; the others must cover for it.  Release
 * with hold false.  RC_EINVAL if there is no such thread. */
int rc_actor_system_hold_timer_thread(struct rc_actor_system *sys, uint32_t i, bool hold);

/* ---- Timers ---- */

#define RC_MSG_TIMER (RC_MSG_SYSTEM_BASE + 2)

/*
 * A timer lives inside its owner's state (no allocation to arm).  When it
 * expires the runtime sends the owner an rc_msg_timer.  Arm, re-arm and
 * cancel are O(1) and may be called from the owner's behaviour (or any
 * thread).  A cancel or re-arm that races with an expiry already in flight
 * is resolved by the generation: rc_timer_msg_current says whether a
 * received timer message belongs to the timer's latest arming; stale ones
 * must be ignored.
 */
struct rc_timer {
    /* owned by the system's timer wheel; opaque to users */
    struct rc_wheel_timer wt; /* protected by the system's timer lock, except
                                 wt.user: the generation, written under the
                                 timer lock with __atomic stores and read
                                 lock-free by rc_timer_msg_current (kept in
                                 the wheel timer's padding: 48 bytes, not 56,
                                 in every run of the broker) */
    struct rc_actor *owner;   /* set by rc_timer_init; not held */
    uint64_t arg;             /* set by rc_timer_init */
};

struct rc_msg_timer {
    struct rc_msg hdr; /* type RC_MSG_TIMER */
    struct rc_timer *timer;
    uint64_t arg;
    uint32_t gen;
    uint64_t fired_ns; /* rc_clock_mono_ns() when the timer thread sent it
                          (how late the wheel itself was) */
};

/* Binds timer to its owner (not held: the owner must cancel its timers in
 * its fini or before it stops) and an argument echoed in the message.  The
 * timer's memory must stay valid until it is cancelled, and while a
 * behaviour may still call rc_timer_msg_current on a message naming it.
 * Not while the timer is armed. */
void rc_timer_init(struct rc_timer *t, struct rc_actor *owner, uint64_t arg);
/* Arms (or re-arms) t to fire after delay_ms: never earlier, and normally
 * within one tick after (plus scheduling delay).  Re-arming makes a
 * previous expiry in flight stale.  RC_EINVAL without an owner.  Delays
 * above 2^40 ms are clamped. */
int rc_timer_arm(struct rc_actor_system *sys, struct rc_timer *t, uint64_t delay_ms);
/* As rc_timer_arm, to fire at an absolute time: at_ns on rc_clock_mono_ns's
 * clock (never earlier; a time already past fires on the next tick).  For
 * owners that keep their due times on that clock: no rounding to whole ms
 * on the way. */
int rc_timer_arm_at(struct rc_actor_system *sys, struct rc_timer *t, uint64_t at_ns);
/* Cancels t if armed; a message already sent becomes stale. */
void rc_timer_cancel(struct rc_actor_system *sys, struct rc_timer *t);
bool rc_timer_msg_current(const struct rc_msg_timer *m);
/* Whether t is armed (not yet expired or cancelled); takes the timer lock. */
bool rc_timer_armed(struct rc_actor_system *sys, const struct rc_timer *t);

/* ---- Supervision (one-for-one, Erlang/OTP style) ---- */

struct rc_supervisor;

/* Starts (or restarts) one child; returns its actor with one reference held
 * for the supervisor, or NULL on failure. */
typedef struct rc_actor *(*rc_child_start_fn)(void *arg);
/* Called once, from a worker thread, when restarts exceed the intensity;
 * the supervisor then stops its other children (RC_ESHUTDOWN) and restarts
 * nothing more. */
typedef void (*rc_supervisor_giveup_fn)(void *arg, const char *child_name, int reason);

struct rc_supervisor_opts {
    uint32_t max_restarts; /* intensity: at most this many restarts (0: give
                              up on the first abnormal exit) ... */
    uint32_t period_ms;    /* ... within this period; more gives up */
    rc_supervisor_giveup_fn giveup;
    void *giveup_arg;
};

int rc_supervisor_new(struct rc_actor_system *sys, const struct rc_supervisor_opts *opts,
                      struct rc_supervisor **out);
/* Starts a child now (start runs on the calling thread) and restarts it
 * (start runs on a worker) whenever it stops with a reason other than 0 or
 * RC_ESHUTDOWN.  A restart whose start returns NULL counts against the
 * intensity and is retried at once.  RC_EEXIST for a name in use,
 * RC_ESTATE if start fails or the supervisor gave up or is being freed. */
int rc_supervisor_add_child(struct rc_supervisor *sup, const char *name, rc_child_start_fn start,
                            void *arg);
/* The child's current actor (held; release it), or NULL. */
struct rc_actor *rc_supervisor_child(struct rc_supervisor *sup, const char *name);
uint32_t rc_supervisor_restarts(const struct rc_supervisor *sup);
/* True once the intensity was exceeded (giveup called). */
bool rc_supervisor_gave_up(struct rc_supervisor *sup);
/* Stops the children (reason 0, not restarted) and frees the supervisor
 * (the last of its memory goes when its own actor has stopped).  May be
 * called before or after rc_actor_system_stop.  NULL does nothing. */
void rc_supervisor_free(struct rc_supervisor *sup);

#endif
