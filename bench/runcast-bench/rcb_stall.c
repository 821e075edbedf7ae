/*
 * rcb_stall: see rcb_stall.h.  Each probe keeps its late stretches
 * [deadline, woke) in an array of its own (no sharing while running); the
 * overlap of the two probes' stretches is computed after both stopped.
 */
#include "rcb_stall.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#define PROBES        2
#define PERIOD_NS     1000000ull
#define MAX_STRETCHES 8192

struct probe {
    pthread_t thread;
    int cpu;
    struct rcb_stall *s;
    struct rcb_stall_stretch *v; /* owned by the probe thread until joined */
    uint32_t n;
    uint64_t late_max;
};

struct rcb_stall {
    _Atomic bool stop; /* relaxed: a flag; pthread_join orders the results */
    struct probe p[PROBES];
    uint32_t running;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *probe_main(void *arg)
{
    struct probe *p = arg;
    uint64_t due = mono_ns() + PERIOD_NS;
    while (!atomic_load_explicit(&p->s->stop, memory_order_relaxed)) {
        struct timespec ts = {.tv_sec = (time_t)(due / 1000000000ull),
                              .tv_nsec = (long)(due % 1000000000ull)};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        uint64_t now = mono_ns();
        uint64_t late = now > due ? now - due : 0;
        if (late > p->late_max)
            p->late_max = late;
        if (late > PERIOD_NS && p->n < MAX_STRETCHES)
            p->v[p->n++] = (struct rcb_stall_stretch){.from = due, .to = now};
        /* no catching up after a stall: the next deadline is a period on */
        due = late > PERIOD_NS ? now + PERIOD_NS : due + PERIOD_NS;
    }
    return NULL;
}

uint32_t rcb_stall_intersect(const struct rcb_stall_stretch *a, uint32_t na,
                             const struct rcb_stall_stretch *b, uint32_t nb, uint64_t over_ns,
                             uint64_t *longest, uint32_t *over, struct rcb_stall_stretch *out)
{
    /* a merge-like sweep: advance whichever stretch ends first */
    uint32_t i = 0, j = 0, n = 0;
    *longest = 0;
    *over = 0;
    while (i < na && j < nb) {
        uint64_t from = a[i].from > b[j].from ? a[i].from : b[j].from;
        uint64_t to = a[i].to < b[j].to ? a[i].to : b[j].to;
        if (to > from) {
            if (to - from > *longest)
                *longest = to - from;
            if (to - from > over_ns)
                (*over)++;
            if (out)
                out[n] = (struct rcb_stall_stretch){.from = from, .to = to};
            n++;
        }
        if (a[i].to < b[j].to)
            i++;
        else
            j++;
    }
    return n;
}

uint64_t rcb_stall_covered(const struct rcb_stall_stretch *v, uint32_t n, uint64_t from,
                           uint64_t to)
{
    /* the first stretch that ends after from (binary search: a run of
     * measurements asks once per terminal, the list can be thousands) */
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v[mid].to <= from)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint64_t sum = 0;
    for (uint32_t i = lo; i < n && v[i].from < to; i++) {
        uint64_t f = v[i].from > from ? v[i].from : from;
        uint64_t t = v[i].to < to ? v[i].to : to;
        if (t > f)
            sum += t - f;
    }
    return sum;
}

uint64_t rcb_stall_outside(const struct rcb_stall_result *r, uint64_t due, uint64_t late)
{
    return late - rcb_stall_covered(r->together, r->n_together, due, due + late);
}

void rcb_stall_tally_add(struct rcb_stall_tally *t, const struct rcb_stall_result *r, uint64_t due,
                         uint64_t late, uint64_t tick_ns)
{
    uint64_t left = rcb_stall_outside(r, due, late);
    if (left > t->max_ns)
        t->max_ns = left;
    if (late > tick_ns) {
        t->over_tick++;
        if (left <= tick_ns)
            t->within_tick++;
    }
}

struct rcb_stall *rcb_stall_start(void)
{
    struct rcb_stall *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    atomic_init(&s->stop, false);
    cpu_set_t allowed;
    int cpus[PROBES] = {-1, -1}, found = 0;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0)
        for (int c = 0; c < CPU_SETSIZE && found < PROBES; c++)
            if (CPU_ISSET(c, &allowed))
                cpus[found++] = c;
    if (found == 0)
        found = 1; /* unknown: one unpinned probe */
    for (int i = 0; i < found; i++) {
        struct probe *p = &s->p[s->running];
        p->s = s;
        p->cpu = cpus[i];
        p->v = malloc(MAX_STRETCHES * sizeof(*p->v));
        if (p->v == NULL)
            break;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        if (p->cpu >= 0) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(p->cpu, &one);
            pthread_attr_setaffinity_np(&attr, sizeof(one), &one);
        }
        int e = pthread_create(&p->thread, &attr, probe_main, p);
        pthread_attr_destroy(&attr);
        if (e != 0) {
            free(p->v);
            p->v = NULL;
            break;
        }
        s->running++;
    }
    if (s->running == 0) {
        free(s);
        return NULL;
    }
    return s;
}

void rcb_stall_stop(struct rcb_stall *s, struct rcb_stall_result *r)
{
    *r = (struct rcb_stall_result){0};
    if (s == NULL)
        return;
    atomic_store_explicit(&s->stop, true, memory_order_relaxed);
    for (uint32_t i = 0; i < s->running; i++) {
        pthread_join(s->p[i].thread, NULL);
        if (s->p[i].late_max > r->late_max_ns)
            r->late_max_ns = s->p[i].late_max;
    }
    r->probes = s->running;
    if (s->running == PROBES) {
        /* one sweep gives the figures and the list; no memory for the
         * list: the figures stand, the list is empty */
        r->together = malloc(((size_t)s->p[0].n + s->p[1].n + 1) * sizeof(*r->together));
        uint32_t n = rcb_stall_intersect(s->p[0].v, s->p[0].n, s->p[1].v, s->p[1].n, 5 * PERIOD_NS,
                                         &r->together_max_ns, &r->together_over_5ms, r->together);
        r->n_together = r->together ? n : 0;
    }
    for (uint32_t i = 0; i < s->running; i++)
        free(s->p[i].v);
    free(s);
}

void rcb_stall_result_fini(struct rcb_stall_result *r)
{
    free(r->together);
    r->together = NULL;
    r->n_together = 0;
}
