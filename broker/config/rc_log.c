/*
 * rc_log: see rc_log.h.  Each line is formatted into a per-call buffer and
 * written with one fwrite + fflush under out_mtx, so lines from concurrent
 * threads never interleave.
 */
#include "rc_log.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "rc_buf.h"
#include "rc_clock.h"
#include "rc_error.h"

/* Longest message kept; longer ones end in "...". */
#define RC_LOG_MSG_MAX 8192

/* Default threshold before rc_log_init: info. */
_Atomic int rc_log_level_current = RC_LOG_INFO;

/* Format: relaxed, same reasoning as the level (read once per line). */
static _Atomic int log_format = RC_LOG_TEXT;
/* Default burst of limiters declared with 0; relaxed (a tuning knob). */
static _Atomic uint32_t log_rl_default = 10;
/* Counters for metrics; relaxed, nothing is ordered by them. */
static _Atomic uint64_t log_written;
static _Atomic uint64_t log_suppressed;

/* Clocks; set by tests before threads start; acquire/release so a clock set
 * by one thread is fully visible to a logger on another. */
static _Atomic(rc_log_wall_clock_cb) log_wall_cb;
static _Atomic(rc_log_mono_clock_cb) log_mono_cb;

/* Signal-driven level changes: the level a SIGHUP restores, and the signal
 * whose notice is still to be written (0: none).  Written in signal handlers
 * (lock-free atomics only); notice_signo is exchanged with acq_rel so the
 * writer of the notice sees the level store that preceded it. */
static _Atomic int signal_configured = RC_LOG_INFO;
static _Atomic int notice_signo;

static pthread_mutex_t out_mtx = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_out; /* protected by out_mtx; NULL: stderr */

static const char *const level_names[] = {"debug", "info", "warn", "error", "critical"};
static const char *const level_text[] = {"DEBUG", "INFO ", "WARN ", "ERROR", "CRIT "};

void rc_log_init(FILE *out, enum rc_log_level level, enum rc_log_format format)
{
    pthread_mutex_lock(&out_mtx);
    log_out = out;
    pthread_mutex_unlock(&out_mtx);
    rc_log_set_format(format);
    rc_log_set_level(level);
    rc_log_signal_configured(level);
}

void rc_log_set_level(enum rc_log_level level)
{
    if ((int)level < RC_LOG_DEBUG)
        level = RC_LOG_DEBUG;
    if ((int)level > RC_LOG_CRITICAL)
        level = RC_LOG_CRITICAL;
    /* relaxed: pairs with the relaxed load in rc_log_enabled (no data is
     * published through the level) */
    atomic_store_explicit(&rc_log_level_current, (int)level, memory_order_relaxed);
}

enum rc_log_level rc_log_get_level(void)
{
    return (enum rc_log_level)atomic_load_explicit(&rc_log_level_current, memory_order_relaxed);
}

enum rc_log_level rc_log_level_step(int delta)
{
    /* a CAS loop so two concurrent steps both count */
    int cur = atomic_load_explicit(&rc_log_level_current, memory_order_relaxed);
    for (;;) {
        int next = cur + delta;
        if (next < RC_LOG_DEBUG)
            next = RC_LOG_DEBUG;
        if (next > RC_LOG_CRITICAL)
            next = RC_LOG_CRITICAL;
        /* relaxed: only the level's own value matters (see above) */
        if (atomic_compare_exchange_weak_explicit(&rc_log_level_current, &cur, next,
                                                  memory_order_relaxed, memory_order_relaxed))
            return (enum rc_log_level)next;
    }
}

void rc_log_set_format(enum rc_log_format format)
{
    /* relaxed: read once per line, no other data depends on it */
    atomic_store_explicit(&log_format, format == RC_LOG_JSON ? RC_LOG_JSON : RC_LOG_TEXT,
                          memory_order_relaxed);
}

enum rc_log_format rc_log_get_format(void)
{
    return (enum rc_log_format)atomic_load_explicit(&log_format, memory_order_relaxed);
}

int rc_log_level_parse(const char *s, enum rc_log_level *out)
{
    if (s == NULL)
        return RC_EINVAL;
    for (int i = 0; i <= RC_LOG_CRITICAL; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum rc_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = RC_LOG_WARN;
        return 0;
    }
    if (strcasecmp(s, "crit") == 0) {
        *out = RC_LOG_CRITICAL;
        return 0;
    }
    return RC_EINVAL;
}

int rc_log_format_parse(const char *s, enum rc_log_format *out)
{
    if (s != NULL && strcasecmp(s, "text") == 0) {
        *out = RC_LOG_TEXT;
        return 0;
    }
    if (s != NULL && strcasecmp(s, "json") == 0) {
        *out = RC_LOG_JSON;
        return 0;
    }
    return RC_EINVAL;
}

const char *rc_log_level_name(enum rc_log_level level)
{
    if ((int)level < RC_LOG_DEBUG || (int)level > RC_LOG_CRITICAL)
        return "?";
    return level_names[level];
}

const char *rc_log_format_name(enum rc_log_format format)
{
    switch (format) {
    case RC_LOG_TEXT:
        return "text";
    case RC_LOG_JSON:
        return "json";
    }
    return "?";
}

void rc_log_set_clock(rc_log_wall_clock_cb wall_ms, rc_log_mono_clock_cb mono_ms)
{
    /* release: pairs with the acquire loads in wall_now/mono_now */
    atomic_store_explicit(&log_wall_cb, wall_ms, memory_order_release);
    atomic_store_explicit(&log_mono_cb, mono_ms, memory_order_release);
}

static int64_t wall_now(void)
{
    rc_log_wall_clock_cb cb = atomic_load_explicit(&log_wall_cb, memory_order_acquire);
    return cb != NULL ? cb() : rc_clock_wall_ms();
}

static uint64_t mono_now(void)
{
    rc_log_mono_clock_cb cb = atomic_load_explicit(&log_mono_cb, memory_order_acquire);
    return cb != NULL ? cb() : rc_clock_mono_ms();
}

uint64_t rc_log_lines_written(void)
{
    return atomic_load_explicit(&log_written, memory_order_relaxed);
}

uint64_t rc_log_lines_suppressed(void)
{
    return atomic_load_explicit(&log_suppressed, memory_order_relaxed);
}

/* ---- line formatting ---- */

/* A small fixed buffer that never fails: overlong lines are cut (and marked
 * by the caller); the line is still written. */
struct line {
    char *p;
    size_t len, cap;
    bool cut;
};

/* Appends all n bytes or none (so an escape or a UTF-8 sequence is never
 * split); once a put fails the line is cut and later puts are dropped. */
static void put(struct line *l, const char *s, size_t n)
{
    if (l->cut || l->len + n > l->cap) {
        l->cut = true;
        return;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void puts_(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Escapes s so the line stays one line: JSON string escaping in both formats
 * (without the quotes); text keeps valid UTF-8 and escapes control chars the
 * same way.  Invalid UTF-8 becomes U+FFFD. */
static void put_escaped(struct line *l, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = u[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(l, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            const char *e = NULL;
            switch (c) {
            case '\n':
                e = "\\n";
                break;
            case '\r':
                e = "\\r";
                break;
            case '\t':
                e = "\\t";
                break;
            case '\b':
                e = "\\b";
                break;
            case '\f':
                e = "\\f";
                break;
            default:
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                e = esc;
            }
            puts_(l, e);
            i++;
        } else if (c < 0x80) {
            put(l, (const char *)&u[i], 1);
            i++;
        } else {
            size_t k = utf8_len(u + i, n - i);
            if (k == 0) {
                puts_(l, "\xef\xbf\xbd"); /* U+FFFD */
                i++;
            } else {
                put(l, (const char *)&u[i], k);
                i += k;
            }
        }
    }
}

static void put_time(struct line *l, int64_t ms)
{
    time_t sec = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int msec = (int)(ms - (int64_t)sec * 1000);
    struct tm tm;
    char tbuf[40];
    gmtime_r(&sec, &tm);
    size_t n = strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(tbuf + n, sizeof(tbuf) - n, ".%03dZ", msec);
    puts_(l, tbuf);
}

/* Ends the line from the reserve: "..." if it was cut, then tail. */
static void end_line(struct line *l, const char *tail)
{
    bool cut = l->cut;
    l->cap += 16;
    l->cut = false;
    if (cut)
        puts_(l, "...");
    puts_(l, tail);
}

static void emit(enum rc_log_level level, const char *component, const char *run, const char *conv,
                 const char *msg, size_t msg_len)
{
    /* the message bound plus room for the fields and their escaping */
    char stackbuf[2 * RC_LOG_MSG_MAX];
    /* 16 bytes stay in reserve for the end of the line, cut or not */
    struct line l = {.p = stackbuf, .len = 0, .cap = sizeof(stackbuf) - 16, .cut = false};
    bool json = rc_log_get_format() == RC_LOG_JSON;
    bool has_run = run != NULL && run[0] != '\0';
    bool has_conv = conv != NULL && conv[0] != '\0';
    if (component == NULL || component[0] == '\0')
        component = "runcastd";
    if ((int)level < RC_LOG_DEBUG || (int)level > RC_LOG_CRITICAL)
        level = RC_LOG_CRITICAL;

    if (json) {
        puts_(&l, "{\"time\":\"");
        put_time(&l, wall_now());
        puts_(&l, "\",\"level\":\"");
        puts_(&l, level_names[level]);
        puts_(&l, "\",\"component\":\"");
        put_escaped(&l, component, strlen(component));
        if (has_run) {
            puts_(&l, "\",\"run\":\"");
            put_escaped(&l, run, strnlen(run, 1024));
        }
        if (has_conv) {
            puts_(&l, "\",\"conv\":\"");
            put_escaped(&l, conv, strnlen(conv, 1024));
        }
        puts_(&l, "\",\"msg\":\"");
        put_escaped(&l, msg, msg_len);
        end_line(&l, "\"}\n");
    } else {
        put_time(&l, wall_now());
        puts_(&l, " ");
        puts_(&l, level_text[level]);
        puts_(&l, " ");
        put_escaped(&l, component, strlen(component));
        if (has_run) {
            puts_(&l, " run=");
            put_escaped(&l, run, strnlen(run, 1024));
        }
        if (has_conv) {
            puts_(&l, " conv=");
            put_escaped(&l, conv, strnlen(conv, 1024));
        }
        puts_(&l, ": ");
        put_escaped(&l, msg, msg_len);
        end_line(&l, "\n");
    }

    pthread_mutex_lock(&out_mtx);
    FILE *out = log_out != NULL ? log_out : stderr;
    fwrite(l.p, 1, l.len, out);
    fflush(out);
    pthread_mutex_unlock(&out_mtx);
    /* relaxed: a statistic */
    atomic_fetch_add_explicit(&log_written, 1, memory_order_relaxed);
}

void rc_log_vwrite(enum rc_log_level level, const char *component, const char *run,
                   const char *conv, const char *fmt, va_list ap)
{
    if (!rc_log_enabled(level))
        return;
    /* relaxed peek: the exchange in rc_log_notice_flush orders the rest */
    if (atomic_load_explicit(&notice_signo, memory_order_relaxed) != 0)
        rc_log_notice_flush();
    char msg[RC_LOG_MSG_MAX + 4];
    int n = vsnprintf(msg, RC_LOG_MSG_MAX + 1, fmt, ap);
    size_t len;
    if (n < 0) {
        len = (size_t)snprintf(msg, sizeof(msg), "(bad log format '%s')", fmt);
    } else if ((size_t)n > RC_LOG_MSG_MAX) {
        memcpy(msg + RC_LOG_MSG_MAX - 3, "...", 4);
        len = RC_LOG_MSG_MAX;
    } else {
        len = (size_t)n;
    }
    emit(level, component, run, conv, msg, len);
}

void rc_log_write(enum rc_log_level level, const char *component, const char *run, const char *conv,
                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rc_log_vwrite(level, component, run, conv, fmt, ap);
    va_end(ap);
}

/* ---- rate limiting ---- */

void rc_log_set_ratelimit_default(uint32_t burst)
{
    /* relaxed: a tuning value read by each take */
    atomic_store_explicit(&log_rl_default, burst, memory_order_relaxed);
}

void rc_log_ratelimit_init(struct rc_log_ratelimit *rl, uint32_t burst)
{
    pthread_mutex_init(&rl->mtx, NULL);
    rl->burst = burst;
    rl->tokens = 0;
    rl->refill_ms = 0;
    rl->suppressed = 0;
    rl->suppressed_total = 0;
}

void rc_log_ratelimit_fini(struct rc_log_ratelimit *rl)
{
    pthread_mutex_destroy(&rl->mtx);
}

/* The bucket: `burst` tokens per one-second window that starts at the first
 * line after the previous window ended.  Simple and enough for logs: at most
 * burst lines in any window, and a quiet site gets its full burst back. */
bool rc_log_ratelimit_take(struct rc_log_ratelimit *rl, uint64_t now_ms, uint64_t *suppressed)
{
    bool ok;
    pthread_mutex_lock(&rl->mtx);
    uint32_t burst =
        rl->burst != 0 ? rl->burst : atomic_load_explicit(&log_rl_default, memory_order_relaxed);
    if (burst == 0) {
        ok = true; /* limiting off */
    } else {
        if (rl->refill_ms == 0 || now_ms < rl->refill_ms || now_ms - rl->refill_ms >= 1000) {
            rl->refill_ms = now_ms == 0 ? 1 : now_ms;
            rl->tokens = burst;
        }
        ok = rl->tokens > 0;
        if (ok)
            rl->tokens--;
    }
    if (ok) {
        if (suppressed != NULL)
            *suppressed = rl->suppressed;
        rl->suppressed = 0;
    } else {
        rl->suppressed++;
        rl->suppressed_total++;
    }
    pthread_mutex_unlock(&rl->mtx);
    if (!ok) /* relaxed: a statistic */
        atomic_fetch_add_explicit(&log_suppressed, 1, memory_order_relaxed);
    return ok;
}

void rc_log_write_limited(struct rc_log_ratelimit *rl, enum rc_log_level level,
                          const char *component, const char *run, const char *conv, const char *fmt,
                          ...)
{
    if (!rc_log_enabled(level))
        return;
    uint64_t suppressed = 0;
    if (!rc_log_ratelimit_take(rl, mono_now(), &suppressed))
        return;
    if (suppressed > 0)
        rc_log_write(level, component, run, conv, "suppressed %llu similar messages",
                     (unsigned long long)suppressed);
    va_list ap;
    va_start(ap, fmt);
    rc_log_vwrite(level, component, run, conv, fmt, ap);
    va_end(ap);
}

uint64_t rc_log_ratelimit_flush(struct rc_log_ratelimit *rl, enum rc_log_level level,
                                const char *component)
{
    pthread_mutex_lock(&rl->mtx);
    uint64_t n = rl->suppressed;
    rl->suppressed = 0;
    pthread_mutex_unlock(&rl->mtx);
    if (n > 0)
        rc_log(level, component, NULL, NULL, "suppressed %llu similar messages",
               (unsigned long long)n);
    return n;
}

/* ---- signals ---- */

void rc_log_signal_configured(enum rc_log_level level)
{
    /* relaxed: read by the SIGHUP handler, only the value matters */
    atomic_store_explicit(&signal_configured, (int)level, memory_order_relaxed);
}

void rc_log_signal(int signo)
{
    if (signo == SIGUSR1)
        rc_log_level_step(-1);
    else if (signo == SIGUSR2)
        rc_log_level_step(+1);
    else if (signo == SIGHUP)
        rc_log_set_level(
            (enum rc_log_level)atomic_load_explicit(&signal_configured, memory_order_relaxed));
    else
        return;
    /* release: pairs with the acq_rel exchange in rc_log_notice_flush */
    atomic_store_explicit(&notice_signo, signo, memory_order_release);
}

static void signal_cb(int signo)
{
    rc_log_signal(signo);
}

int rc_log_install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = signal_cb;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0 || sigaction(SIGUSR2, &sa, NULL) != 0 ||
        sigaction(SIGHUP, &sa, NULL) != 0)
        return RC_EIO;
    return 0;
}

bool rc_log_notice_flush(void)
{
    /* acq_rel: acquire pairs with the release in rc_log_signal; only one
     * thread wins the exchange and writes the notice */
    int signo = atomic_exchange_explicit(&notice_signo, 0, memory_order_acq_rel);
    if (signo == 0)
        return false;
    const char *name = signo == SIGUSR1 ? "SIGUSR1" : signo == SIGUSR2 ? "SIGUSR2" : "SIGHUP";
    enum rc_log_level now = rc_log_get_level();
    /* written at the new threshold so it is never filtered out */
    char msg[96];
    int n = snprintf(msg, sizeof(msg), "log level set to %s by %s", rc_log_level_name(now), name);
    emit(now, "log", NULL, NULL, msg, (size_t)n);
    return true;
}
