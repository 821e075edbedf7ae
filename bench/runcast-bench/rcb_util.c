/*
 * rcb_util: clocks, progress logging, the scenario deadline and run ids,
 * shared by runcast-bench and its tests.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rcb.h"

struct rcb_opts rcb_o;

uint64_t rcb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void rcb_sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void rcb_sleep_until(uint64_t due_ns)
{
    struct timespec ts = {(time_t)(due_ns / 1000000000ull), (long)(due_ns % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

void rcb_log(const char *fmt, ...)
{
    /* errors and warnings print even with --quiet */
    if (rcb_o.quiet && strncmp(fmt, "error", 5) != 0 && strncmp(fmt, "warning", 7) != 0)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    fprintf(stderr, "[%02d:%02d:%02d] %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec, buf);
}

/* ---- hard wall-clock cap ---- */

/* atomic: written by the main thread when a scenario starts (release),
 * read by scenario threads and the cap thread (acquire). */
static _Atomic uint64_t deadline_ns;
_Atomic uint64_t rcb_kill_ns; /* deadline + grace: the cap thread ends the process */
char rcb_cur_name[32];

void rcb_set_deadline(uint64_t ns)
{
    atomic_store_explicit(&deadline_ns, ns, memory_order_release);
}

bool rcb_expired(void)
{
    uint64_t d = atomic_load_explicit(&deadline_ns, memory_order_acquire);
    return d != 0 && rcb_now_ns() >= d;
}

double rcb_left_s(void)
{
    uint64_t d = atomic_load_explicit(&deadline_ns, memory_order_acquire);
    uint64_t now = rcb_now_ns();
    if (d == 0)
        return 1e9;
    return d > now ? (double)(d - now) / 1e9 : 0.0;
}

/* ---- helpers ---- */

static char tag_buf[16];

const char *rcb_tag(void)
{
    if (tag_buf[0] == 0)
        snprintf(tag_buf, sizeof(tag_buf), "%x%x", (unsigned)getpid() & 0xffff,
                 (unsigned)(rcb_now_ns() / 1000) & 0xffff);
    return tag_buf;
}

void rcb_run_id(char *buf, size_t len, const char *tag, uint64_t i)
{
    snprintf(buf, len, "b%s-%s-%llu", rcb_tag(), tag, (unsigned long long)i);
}
