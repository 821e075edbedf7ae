/*
 * rc_log: runcastd's logger.
 *
 * One line per call, written whole (under a mutex, one fwrite + fflush) to
 * stderr or to the FILE* given to rc_log_init (tests use open_memstream).
 * Two formats:
 *
 *   text: 2026-11-27T07:09:07.123Z WARN  supervisor run=r1 conv=c1: message
 *   json: {"time":"2026-11-27T07:09:07.123Z","level":"warn","component":
 *          "supervisor","run":"r1","conv":"c1","msg":"message"}
 *
 * `run` and `conv` appear only when given (non-NULL, non-empty).  Control
 * characters in any field are escaped in both formats, so a line is always
 * one line; JSON strings are fully escaped (invalid UTF-8 becomes U+FFFD).
 *
 * The level is a process-wide atomic: rc_log_set_level may be called from any
 * thread (the broker hooks it to SIGUSR1/SIGUSR2 and the admin endpoint) and
 * a disabled call costs one relaxed atomic load (the RC_LOG macros test the
 * level before evaluating their arguments).
 *
 * Noisy error paths use a per-call-site token bucket (RC_LOG_RATELIMITED):
 * at most `burst` lines per second from that site, then one summary line
 * "suppressed K similar messages" when the next line is let through (or at
 * rc_log_ratelimit_flush).
 *
 * Library code elsewhere in runcast never logs; only the broker's edges do.
 */
#ifndef RC_LOG_H
#define RC_LOG_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>

enum rc_log_level {
    RC_LOG_DEBUG = 0,
    RC_LOG_INFO = 1,
    RC_LOG_WARN = 2,
    RC_LOG_ERROR = 3,
    RC_LOG_CRITICAL = 4,
};

enum rc_log_format {
    RC_LOG_TEXT = 0,
    RC_LOG_JSON = 1,
};

/* The current threshold; lines below it are dropped.  Atomic: written by
 * rc_log_set_level (any thread), read relaxed by rc_log_enabled: a level
 * change needs no ordering with other memory, it only has to become visible
 * eventually, and the line itself is written under the output mutex. */
extern _Atomic int rc_log_level_current;

/* Sets the output (NULL: stderr), the threshold (also the level SIGHUP
 * restores) and the format.  May be called
 * again (tests do); the previous FILE* is not closed.  Before any call the
 * logger writes text at info level to stderr. */
void rc_log_init(FILE *out, enum rc_log_level level, enum rc_log_format format);

/* Changes the threshold at run time, from any thread (signal handlers too:
 * it is one atomic store). */
void rc_log_set_level(enum rc_log_level level);
enum rc_log_level rc_log_get_level(void);
void rc_log_set_format(enum rc_log_format format);
enum rc_log_format rc_log_get_format(void);

/* "debug", "info", "warn", "error", "critical" (also accepts "warning" and
 * "crit"; case-insensitive).  Returns 0 or RC_EINVAL. */
int rc_log_level_parse(const char *s, enum rc_log_level *out);
int rc_log_format_parse(const char *s, enum rc_log_format *out);
/* "debug" ... "critical"; "?" for a value out of range. */
const char *rc_log_level_name(enum rc_log_level level);
const char *rc_log_format_name(enum rc_log_format format);

/* One step more / less verbose (saturating); returns the new level.  For
 * SIGUSR1 (more verbose) and SIGUSR2 (less verbose). */
enum rc_log_level rc_log_level_step(int delta);

static inline bool rc_log_enabled(enum rc_log_level level)
{
    /* relaxed: see rc_log_level_current */
    return (int)level >= atomic_load_explicit(&rc_log_level_current, memory_order_relaxed);
}

/* Writes one line if level is enabled.  component: short module name
 * ("ingress", "supervisor", "edge"...); run, conv: may be NULL. */
void rc_log_write(enum rc_log_level level, const char *component, const char *run, const char *conv,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void rc_log_vwrite(enum rc_log_level level, const char *component, const char *run,
                   const char *conv, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

/* The usual entry point: arguments are not evaluated when the level is off. */
#define rc_log(level, component, run, conv, ...)                                                   \
    do {                                                                                           \
        if (rc_log_enabled(level))                                                                 \
            rc_log_write((level), (component), (run), (conv), __VA_ARGS__);                        \
    } while (0)

/* ---- Changing the level with signals ----
 * runcastd's convention: SIGUSR1 = one level more verbose, SIGUSR2 = one
 * level less verbose, SIGHUP = back to the configured level (the one given
 * to rc_log_signal_configured).  rc_log_signal is async-signal-safe (atomic
 * operations only): call it from the program's own handler, or let
 * rc_log_install_signals install handlers for the three signals.  The line
 * "log level set to X by SIGNAME" is written by the next rc_log call (any
 * level) or by rc_log_notice_flush (e.g. from the main loop). */
void rc_log_signal_configured(enum rc_log_level level);
void rc_log_signal(int signo);
/* Installs SA_RESTART handlers for SIGUSR1, SIGUSR2 and SIGHUP that call
 * rc_log_signal.  Returns 0 or RC_EIO. */
int rc_log_install_signals(void);
/* Writes a pending level-change notice now; returns true if there was one. */
bool rc_log_notice_flush(void);

/* Injectable clock for tests: wall_ms gives the time printed on each line and
 * mono_ms drives the rate limiters.  NULL restores the real clocks. */
typedef int64_t (*rc_log_wall_clock_cb)(void);
typedef uint64_t (*rc_log_mono_clock_cb)(void);
void rc_log_set_clock(rc_log_wall_clock_cb wall_ms, rc_log_mono_clock_cb mono_ms);

/* ---- Rate limiting (token bucket per call site) ---- */

struct rc_log_ratelimit {
    pthread_mutex_t mtx;       /* protects the fields below */
    uint32_t burst;            /* lines per second; 0: the process default */
    uint32_t tokens;           /* lines left in the current bucket */
    uint64_t refill_ms;        /* mono time the bucket last refilled; 0: never */
    uint64_t suppressed;       /* lines dropped since the last one let through */
    uint64_t suppressed_total; /* lines dropped over the limiter's life */
};

/* burst 0 uses the process default (rc_log_set_ratelimit_default; the broker
 * sets it from --log-ratelimit). */
#define RC_LOG_RATELIMIT_INIT(burst_)                                                              \
    {                                                                                              \
        .mtx = PTHREAD_MUTEX_INITIALIZER, .burst = (burst_), .tokens = 0, .refill_ms = 0,          \
        .suppressed = 0, .suppressed_total = 0                                                     \
    }

void rc_log_ratelimit_init(struct rc_log_ratelimit *rl, uint32_t burst);
void rc_log_ratelimit_fini(struct rc_log_ratelimit *rl);

/* Lines per second for limiters with burst 0; 0 turns limiting off. */
void rc_log_set_ratelimit_default(uint32_t burst);

/* Takes a token at mono time now_ms.  Returns true when the caller may log;
 * then *suppressed (if not NULL) is the number of lines dropped since the last
 * allowed one (the caller reports it).  Returns false when over the limit
 * (the line is counted as suppressed). */
bool rc_log_ratelimit_take(struct rc_log_ratelimit *rl, uint64_t now_ms, uint64_t *suppressed);

/* Like rc_log_write, through the limiter rl (clock: rc_log_set_clock's).
 * Before a line that follows suppressed ones it writes, at the same level,
 * component, run and conv, "suppressed K similar messages". */
void rc_log_write_limited(struct rc_log_ratelimit *rl, enum rc_log_level level,
                          const char *component, const char *run, const char *conv, const char *fmt,
                          ...) __attribute__((format(printf, 6, 7)));

/* Writes the pending "suppressed K similar messages" summary now, if any
 * (e.g. at shutdown).  Returns the number reported. */
uint64_t rc_log_ratelimit_flush(struct rc_log_ratelimit *rl, enum rc_log_level level,
                                const char *component);

/* A rate-limited log statement with its own static limiter. */
#define RC_LOG_RATELIMITED(level, component, run, conv, ...)                                       \
    do {                                                                                           \
        static struct rc_log_ratelimit rc_log_rl_ = RC_LOG_RATELIMIT_INIT(0);                      \
        if (rc_log_enabled(level))                                                                 \
            rc_log_write_limited(&rc_log_rl_, (level), (component), (run), (conv), __VA_ARGS__);   \
    } while (0)

/* Total lines written / dropped by limiters since start (for /metrics).
 * Relaxed counters. */
uint64_t rc_log_lines_written(void);
uint64_t rc_log_lines_suppressed(void);

#endif
