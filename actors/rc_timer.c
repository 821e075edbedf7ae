/*
 * rc_timer: actor timers.  One rc_wheel per system behind timer_mtx, turned
 * by one or more timer threads, each of which sleeps until the wheel's next
 * event (at most a second) and sends an rc_msg_timer to the owner of each
 * expired timer.  The expired timers are collected under the lock (owner
 * held, generation copied) and the messages are allocated and sent after it
 * is released, so the lock is held only for wheel operations.
 *
 * Never early: a timer armed at time t for d ms gets expiry tick
 * ceil((t + d) / tick), and tick k is processed only once the monotonic
 * clock has reached k * tick.
 *
 * Why two timer threads by default, each pinned to its own CPU: a sleeping
 * thread's timeout is a timer interrupt on the CPU it slept on, and its
 * wake-up is queued there.  On a kernel without full preemption a kernel
 * thread holding that CPU (measured on the 2-vCPU VM of docs/BENCHMARKS.md:
 * the VM's DAMON thread, kdamond, 3-5 ms at a time, never yielding) keeps
 * the timer thread off it that long, while the other CPU sits idle.  With a
 * second thread sleeping on the other CPU until the same tick, whichever
 * wakes first turns the wheel (the other finds it turned and sleeps again):
 * a stall of one CPU no longer delays the watchdog.  The cost is one more
 * wake-up per due tick.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>

#include "rc_actor_internal.h"
#include "rc_alloc.h"
#include "rc_clock.h"
#include "rc_error.h"

/* Delays above this are clamped (~34 years): keeps the tick arithmetic far
 * from overflow. */
#define RC_TIMER_MAX_DELAY_MS (UINT64_C(1) << 40)

/* The timer thread wakes at least this often (see timer_main). */
#define RC_TIMER_MAX_SLEEP_MS 1000u

/* Timers moved or expired per critical section of the timer thread. */
#define RC_TIMER_CHUNK 128

struct expired {
    struct rc_actor *owner; /* held */
    struct rc_timer *timer;
    uint64_t arg;
    uint32_t gen;
};

struct collect {
    struct expired *v;
    size_t n, cap;
    size_t lost; /* no memory to record an expiry */
};

static uint64_t now_tick(const struct rc_actor_system *sys)
{
    return rc_clock_mono_ns() / sys->tick_ns;
}

/*
 * The timer threads must not be starved of the lock by callers arming in a
 * tight loop (glibc mutexes are not fair: the unlocking thread usually gets
 * the lock straight back).  They announce themselves before locking, and arm
 * and cancel let them go first, waiting a bounded time for them.
 */
static void timer_thread_lock(struct rc_actor_system *sys)
{
    /* relaxed: a hint to the callers below; the mutex orders the data. */
    atomic_fetch_add_explicit(&sys->timer_wants_lock, 1, memory_order_relaxed);
    pthread_mutex_lock(&sys->timer_mtx);
    atomic_fetch_sub_explicit(&sys->timer_wants_lock, 1, memory_order_relaxed);
}

static void caller_lock(struct rc_actor_system *sys)
{
    /* relaxed: a hint (see timer_thread_lock).  Bounded: a few microseconds
     * of pause, then at most two yields, so an arm never waits long even if
     * a timer thread is descheduled right after announcing itself. */
    for (int i = 0;
         i < 258 && atomic_load_explicit(&sys->timer_wants_lock, memory_order_relaxed) > 0; i++) {
        if (i < 256) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        } else {
            sched_yield();
        }
    }
    pthread_mutex_lock(&sys->timer_mtx);
}

/* Under timer_mtx: timer_wake_tick becomes the latest tick a timer thread
 * sleeps until (an awake thread counts 0: it looks at the wheel again before
 * it sleeps).  An arm due before it wakes them all, so that every sleeping
 * thread, not just one, wakes in time for it. */
static void timer_wake_tick_update(struct rc_actor_system *sys)
{
    uint64_t latest = 0;
    for (uint32_t i = 0; i < sys->ntimers; i++)
        if (sys->timers[i].wake_tick > latest)
            latest = sys->timers[i].wake_tick;
    sys->timer_wake_tick = latest;
}

/* The CPUs this process may run on, and their count (0 if unknown). */
static int allowed_cpus(cpu_set_t *set)
{
    if (sched_getaffinity(0, sizeof(*set), set) != 0)
        return 0;
    return CPU_COUNT(set);
}

static uint32_t default_timer_threads(void)
{
    cpu_set_t set;
    return allowed_cpus(&set) >= 2 ? 2 : 1;
}

int rc__timer_sys_init(struct rc_actor_system *sys, uint32_t nthreads)
{
    if (nthreads > RC_TIMER_THREADS_MAX)
        return RC_EINVAL;
    int e = rc_clock_cond_init(&sys->timer_cv);
    if (e != 0)
        return RC_ENOMEM;
    if (pthread_cond_init(&sys->timer_hold_cv, NULL) != 0) {
        pthread_cond_destroy(&sys->timer_cv);
        return RC_ENOMEM;
    }
    if (pthread_cond_init(&sys->timer_dlv_cv, NULL) != 0) {
        pthread_cond_destroy(&sys->timer_hold_cv);
        pthread_cond_destroy(&sys->timer_cv);
        return RC_ENOMEM;
    }
    pthread_mutex_init(&sys->timer_dlv_mtx, NULL);
    sys->timer_tickets = 0;
    sys->timer_delivered = 0;
    /* Adaptive (glibc: spin briefly, then sleep): the timer thread holds
     * the lock for one chunk of expiries at a time (a few us) and a mass
     * expiry makes every worker re-arm its run's timer right after it
     * fired (retention), so the workers meet a held lock constantly; a
     * short spin keeps them off the futex.  bench_broker expiry --case
     * mass, 1M runs, 3 alternations: subscriber lateness max 0.86-1.0 s vs
     * 1.0-1.46 s with a plain mutex, p50 0.49-0.52 vs 0.54-0.62 s. */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&sys->timer_mtx, &ma);
    pthread_mutexattr_destroy(&ma);
    rc_wheel_init(&sys->wheel, now_tick(sys));
    sys->timer_wake_tick = RC_WHEEL_NEVER;
    atomic_init(&sys->timer_wants_lock, 0);
    sys->ntimers = nthreads ? nthreads : default_timer_threads();
    for (uint32_t i = 0; i < sys->ntimers; i++) {
        sys->timers[i].sys = sys;
        sys->timers[i].index = i;
        sys->timers[i].cpu = -1;
        sys->timers[i].wake_tick = 0; /* as if awake: one never started needs no wake-up */
    }
    sys->max_sleep_ticks = RC_TIMER_MAX_SLEEP_MS * 1000000u / sys->tick_ns + 1;
    return RC_OK;
}

void rc__timer_sys_fini(struct rc_actor_system *sys)
{
    pthread_cond_destroy(&sys->timer_cv);
    pthread_cond_destroy(&sys->timer_hold_cv);
    pthread_cond_destroy(&sys->timer_dlv_cv);
    pthread_mutex_destroy(&sys->timer_dlv_mtx);
    pthread_mutex_destroy(&sys->timer_mtx);
}

static void collect_cb(struct rc_wheel_timer *wt, uint64_t tick, void *ctx)
{
    struct collect *c = ctx;
    struct rc_timer *t = (struct rc_timer *)wt; /* wt is the first member */
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        struct expired *v = rc_realloc(c->v, cap * sizeof(*v));
        if (!v) {
            c->lost++;
            return;
        }
        c->v = v;
        c->cap = cap;
    }
    /* The owner is alive: it must cancel its timers before it stops, and
     * cancel needs the lock we hold.  Hold it for the send after unlock. */
    struct expired *x = &c->v[c->n++];
    x->owner = rc_actor_hold(t->owner);
    x->timer = t;
    x->arg = t->arg;
    x->gen = __atomic_load_n(&t->wt.user, __ATOMIC_RELAXED); /* under timer_mtx */
}

static void deliver(struct collect *c)
{
    struct rc_send_batch b = RC_SEND_BATCH_INIT;
    uint64_t fired = rc_clock_mono_ns(); /* once per chunk: a few us apart at most */
    for (size_t i = 0; i < c->n; i++) {
        struct expired *x = &c->v[i];
        struct rc_msg_timer *m =
            (struct rc_msg_timer *)rc_msg_new(sizeof(struct rc_msg_timer), RC_MSG_TIMER);
        if (m) {
            m->timer = x->timer;
            m->arg = x->arg;
            m->gen = x->gen;
            m->fired_ns = fired;
            if (rc_send_batch_add(&b, x->owner, &m->hdr) != RC_OK)
                rc_msg_free(&m->hdr); /* the owner has stopped */
        }
        /* Safe before the flush: an owner in b is runnable and not yet
         * queued, so it cannot stop, and the runtime's reference holds it. */
        rc_actor_release(x->owner);
        if (b.n >= 256)
            rc_send_batch_flush(&b);
    }
    rc_send_batch_flush(&b);
    c->n = 0;
}

/* Chunks are delivered in the order they were collected, so an owner
 * receives its timers' expiries in due order whichever thread collected
 * them.  The wait is one delivery (microseconds) unless the thread ahead
 * was descheduled in the middle of its own. */
static void deliver_in_turn(struct rc_actor_system *sys, struct collect *c, uint64_t ticket)
{
    pthread_mutex_lock(&sys->timer_dlv_mtx);
    while (sys->timer_delivered != ticket)
        pthread_cond_wait(&sys->timer_dlv_cv, &sys->timer_dlv_mtx);
    pthread_mutex_unlock(&sys->timer_dlv_mtx);
    deliver(c);
    pthread_mutex_lock(&sys->timer_dlv_mtx);
    sys->timer_delivered = ticket + 1;
    pthread_mutex_unlock(&sys->timer_dlv_mtx);
    if (sys->ntimers > 1)
        pthread_cond_broadcast(&sys->timer_dlv_cv);
}

/* Under timer_mtx: another timer thread is awake and not held, so it is
 * turning the wheel or about to. */
static bool other_timer_awake(const struct rc_actor_system *sys, const struct rc_timer_thread *tt)
{
    for (uint32_t i = 0; i < sys->timers_running; i++)
        if (i != tt->index && sys->timers[i].wake_tick == 0 &&
            !(sys->timer_hold_mask & (UINT32_C(1) << i)))
            return true;
    return false;
}

static void *timer_main(void *arg)
{
    struct rc_timer_thread *tt = arg;
    struct rc_actor_system *sys = tt->sys;
    struct collect c = {0};
    char name[16]; /* for top -H, perf and gdb; a name that does not fit is cosmetic */
    snprintf(name, sizeof(name), "rc-timer-%u", tt->index);
    (void)pthread_setname_np(pthread_self(), name);
    timer_thread_lock(sys);
    tt->wake_tick = 0;
    timer_wake_tick_update(sys);
    uint32_t bit = UINT32_C(1) << tt->index;
    while (!sys->timer_exit) {
        if (sys->timer_hold_mask & bit) { /* awake (wake_tick 0), not turning */
            pthread_cond_wait(&sys->timer_hold_cv, &sys->timer_mtx);
            continue;
        }
        /* Stand by while another timer thread is awake and has turned the
         * wheel since we last slept: it is keeping up, and two threads
         * delivering a mass expiry side by side only take CPU from the
         * workers that must handle it (1 M expiries due together: 10 %
         * later with both at work).  If it has not turned it for a whole
         * sleep of ours (it was descheduled in the middle), we do. */
        uint64_t now = now_tick(sys);
        bool stand_by = other_timer_awake(sys, tt) && sys->timer_turns != tt->seen_turns;
        bool caught_up = true;
        if (!stand_by) {
            /* In chunks: the lock is dropped between them even while a big
             * slot cascades, so arm and cancel never wait long.  Another
             * timer thread may take the next chunk meanwhile: each expiry
             * is collected once, under the lock. */
            sys->timer_turns++;
            caught_up =
                rc_wheel_advance_some(&sys->wheel, now, RC_TIMER_CHUNK, collect_cb, &c, NULL);
        }
        if (c.n > 0 || !caught_up) {
            /* Awake (wake_tick 0): arms during delivery need not wake us,
             * we look again after. */
            uint64_t ticket = c.n > 0 ? sys->timer_tickets++ : 0;
            pthread_mutex_unlock(&sys->timer_mtx);
            if (c.n > 0)
                deliver_in_turn(sys, &c, ticket);
            timer_thread_lock(sys);
            continue;
        }
        /* Sleep until the next event, but at most about a second: arms
         * then wake us only when they expire before that wake-up, so arm /
         * cancel cycles on an otherwise empty wheel cost no futex calls,
         * for one wake-up a second while timers are idle. */
        uint64_t next = rc_wheel_next(&sys->wheel);
        uint64_t horizon = now_tick(sys) + sys->max_sleep_ticks;
        if (next > horizon)
            next = horizon;
        if (stand_by && next <= now)
            next = now + 1; /* the other is behind: look again in a tick */
        tt->wake_tick = next;
        tt->seen_turns = sys->timer_turns;
        timer_wake_tick_update(sys);
        uint64_t ns = next * sys->tick_ns;
        struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
                              .tv_nsec = (long)(ns % 1000000000u)};
        pthread_cond_timedwait(&sys->timer_cv, &sys->timer_mtx, &ts);
        tt->wake_tick = 0;
        timer_wake_tick_update(sys);
    }
    pthread_mutex_unlock(&sys->timer_mtx);
    rc_free(c.v);
    return NULL;
}

/* With several timer threads, spread them over the CPUs the process may
 * use, one each, so their sleeps end on different CPUs (see the top of this
 * file).  A failed pin only loses that spread. */
static void timer_pin(struct rc_actor_system *sys, pthread_attr_t *attr, uint32_t i)
{
    cpu_set_t allowed;
    int count = sys->ntimers < 2 ? 0 : allowed_cpus(&allowed);
    if (count < 2)
        return;
    int want = (int)((uint64_t)i * (uint64_t)count / sys->ntimers), seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed))
            continue;
        if (seen++ == want) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            if (pthread_attr_setaffinity_np(attr, sizeof(one), &one) == 0)
                sys->timers[i].cpu = cpu;
            return;
        }
    }
}

int rc__timer_start(struct rc_actor_system *sys)
{
    sys->timer_exit = false;
    uint32_t started = 0;
    for (uint32_t i = 0; i < sys->ntimers; i++) {
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) != 0)
            break;
        timer_pin(sys, &attr, i);
        int e = pthread_create(&sys->timers[i].thread, &attr, timer_main, &sys->timers[i]);
        if (e != 0 && sys->timers[i].cpu >= 0) {
            /* a CPU the pin cannot use (a cpuset changed under us): run
             * unpinned rather than not at all */
            sys->timers[i].cpu = -1;
            pthread_attr_destroy(&attr);
            pthread_attr_init(&attr);
            e = pthread_create(&sys->timers[i].thread, &attr, timer_main, &sys->timers[i]);
        }
        pthread_attr_destroy(&attr);
        if (e != 0)
            break;
        started++;
    }
    /* under the lock: stats and rc_actor_system_timer_cpu read it there */
    pthread_mutex_lock(&sys->timer_mtx);
    sys->timers_running = started;
    pthread_mutex_unlock(&sys->timer_mtx);
    return started > 0 ? RC_OK : RC_ENOMEM;
}

void rc__timer_stop(struct rc_actor_system *sys)
{
    pthread_mutex_lock(&sys->timer_mtx);
    uint32_t running = sys->timers_running;
    sys->timer_exit = true;
    pthread_mutex_unlock(&sys->timer_mtx);
    if (running == 0)
        return;
    pthread_cond_broadcast(&sys->timer_cv);
    pthread_cond_broadcast(&sys->timer_hold_cv);
    for (uint32_t i = 0; i < running; i++)
        pthread_join(sys->timers[i].thread, NULL);
    pthread_mutex_lock(&sys->timer_mtx);
    sys->timers_running = 0;
    pthread_mutex_unlock(&sys->timer_mtx);
}

uint32_t rc__timer_threads(struct rc_actor_system *sys)
{
    pthread_mutex_lock(&sys->timer_mtx);
    uint32_t n = sys->timers_running;
    pthread_mutex_unlock(&sys->timer_mtx);
    return n;
}

int rc_actor_system_timer_cpu(const struct rc_actor_system *sys, uint32_t i)
{
    if (!sys)
        return -1;
    /* the lock is logically mutable, as in rc_actor_system_stats */
    struct rc_actor_system *m = (struct rc_actor_system *)sys;
    pthread_mutex_lock(&m->timer_mtx);
    int cpu = i < m->timers_running ? m->timers[i].cpu : -1;
    pthread_mutex_unlock(&m->timer_mtx);
    return cpu;
}

int rc_actor_system_hold_timer_thread(struct rc_actor_system *sys, uint32_t i, bool hold)
{
    if (!sys || i >= sys->ntimers)
        return RC_EINVAL;
    pthread_mutex_lock(&sys->timer_mtx);
    if (hold)
        sys->timer_hold_mask |= UINT32_C(1) << i;
    else
        sys->timer_hold_mask &= ~(UINT32_C(1) << i);
    pthread_mutex_unlock(&sys->timer_mtx);
    /* a sleeping thread to be held must wake to see it; a released one
     * must leave its wait */
    pthread_cond_broadcast(&sys->timer_cv);
    pthread_cond_broadcast(&sys->timer_hold_cv);
    return RC_OK;
}

void rc_timer_init(struct rc_timer *t, struct rc_actor *owner, uint64_t arg)
{
    rc_wheel_timer_init(&t->wt);
    t->owner = owner;
    t->arg = arg;
    t->wt.user = 0; /* the generation */
}

int rc_timer_arm(struct rc_actor_system *sys, struct rc_timer *t, uint64_t delay_ms)
{
    if (delay_ms > RC_TIMER_MAX_DELAY_MS)
        delay_ms = RC_TIMER_MAX_DELAY_MS;
    return rc_timer_arm_at(sys, t, rc_clock_mono_ns() + delay_ms * 1000000u);
}

int rc_timer_arm_at(struct rc_actor_system *sys, struct rc_timer *t, uint64_t at_ns)
{
    if (!sys || !t || !t->owner)
        return RC_EINVAL;
    uint64_t cap = rc_clock_mono_ns() + RC_TIMER_MAX_DELAY_MS * 1000000u;
    if (at_ns > cap)
        at_ns = cap;
    /* The first tick whose start is at or after at_ns. */
    uint64_t expires = (at_ns + sys->tick_ns - 1) / sys->tick_ns;
    caller_lock(sys);
    rc_wheel_del(&sys->wheel, &t->wt);
    /* relaxed: written under timer_mtx; rc_timer_msg_current reads it
     * without the lock and only compares. */
    __atomic_store_n(&t->wt.user, t->wt.user + 1, __ATOMIC_RELAXED);
    rc_wheel_add(&sys->wheel, &t->wt, expires);
    bool wake = expires < sys->timer_wake_tick;
    if (wake)
        sys->timer_wake_tick = expires;
    pthread_mutex_unlock(&sys->timer_mtx);
    if (wake) /* every sleeping timer thread: each must be due by then */
        pthread_cond_broadcast(&sys->timer_cv);
    return RC_OK;
}

void rc_timer_cancel(struct rc_actor_system *sys, struct rc_timer *t)
{
    if (!sys || !t)
        return;
    caller_lock(sys);
    rc_wheel_del(&sys->wheel, &t->wt);
    /* relaxed: as in rc_timer_arm; makes a message in flight stale. */
    __atomic_store_n(&t->wt.user, t->wt.user + 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&sys->timer_mtx);
}

uint64_t rc__timer_armed_count(struct rc_actor_system *sys)
{
    pthread_mutex_lock(&sys->timer_mtx);
    uint64_t n = sys->wheel.count;
    pthread_mutex_unlock(&sys->timer_mtx);
    return n;
}

bool rc_timer_armed(struct rc_actor_system *sys, const struct rc_timer *t)
{
    pthread_mutex_lock(&sys->timer_mtx);
    bool armed = rc_wheel_pending(&t->wt);
    pthread_mutex_unlock(&sys->timer_mtx);
    return armed;
}

bool rc_timer_msg_current(const struct rc_msg_timer *m)
{
    /* relaxed: see rc_timer_arm. */
    return __atomic_load_n(&m->timer->wt.user, __ATOMIC_RELAXED) == m->gen;
}
