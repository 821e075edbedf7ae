/*
 * rc_config: see rc_config.h.
 *
 * The table `opts` below is the single source of truth: rc_config_init parses
 * each option's default text through the same code path as a flag, --help
 * and the sample config print it, and the environment names are checked
 * against the option names by tests/config.
 */
#include "rc_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "rc_alloc.h"
#include "rc_error.h"

extern char **environ;

#define MS_SEC  1000ull
#define MS_MIN  (60ull * MS_SEC)
#define MS_HOUR (60ull * MS_MIN)
#define MS_DAY  (24ull * MS_HOUR)
#define KIB     1024ull
#define MIB     (1024ull * KIB)
#define GIB     (1024ull * MIB)
/* JSON clients read numbers as doubles: keep the epoch exact for them. */
#define EPOCH_MAX 9007199254740991ull

/* Longest config file line and file accepted. */
#define LINE_MAX_BYTES 4096
#define FILE_MAX_BYTES (1024 * 1024)

struct opt {
    struct rc_config_option pub;
    size_t off; /* offset of the field in struct rc_config */
};

#define F(field) offsetof(struct rc_config, field)
#define O(name, env, arg, def, kind, rep, min, max, field, help)                                   \
    {                                                                                              \
        {name, env, arg, def, help, kind, rep, min, max}, F(field)                                 \
    }

/* clang-format off */
static const struct opt opts[] = {
    /* ---- general ---- */
    O("config", "RUNCAST_CONFIG", "FILE", "", RC_CONFIG_PATH, false, 0, 0, config_path,
      "Config file of `name = value` lines (flags and environment override it); none by default"),
    O("log-level", "RUNCAST_LOG_LEVEL", "LEVEL", "info", RC_CONFIG_LOGLEVEL, false, 0, 0, log_level,
      "debug|info|warn|error|critical; changeable at run time with SIGUSR1/SIGUSR2"),
    O("log-format", "RUNCAST_LOG_FORMAT", "FORMAT", "text", RC_CONFIG_LOGFORMAT, false, 0, 0, log_format,
      "text (for people) or json (one object per line, for log collectors)"),
    O("log-ratelimit", "RUNCAST_LOG_RATELIMIT", "N", "10", RC_CONFIG_COUNT, false, 0, 1000000, log_ratelimit,
      "Lines per second from one noisy call site before summarising (0 = unlimited); a flood of bad input must not flood the log"),
    O("workers", "RUNCAST_WORKERS", "N", "0", RC_CONFIG_COUNT, false, 0, 1024, workers,
      "Actor worker threads (0 = one per online CPU), also the decoders of each --ingest socket; more than the cores only adds switching"),
    O("actor-batch", "RUNCAST_ACTOR_BATCH", "N", "64", RC_CONFIG_COUNT, false, 1, 65536, actor_batch,
      "Messages an actor handles per turn before yielding its thread; bounds one busy run's hold on a worker"),
    O("epoch", "RUNCAST_EPOCH", "N", "0", RC_CONFIG_COUNT, false, 0, EPOCH_MAX, epoch,
      "Broker epoch for resume (0 = derive a fresh one at start); set only in tests; at most 2^53-1 for JSON clients"),
    O("shutdown-timeout", "RUNCAST_SHUTDOWN_TIMEOUT", "DURATION", "5s", RC_CONFIG_DURATION, false, 0, MS_HOUR, shutdown_timeout_ms,
      "On SIGTERM/SIGINT, time to flush subscribers and close before exiting anyway; inside typical orchestrator grace periods"),
    O("restart-intensity", "RUNCAST_RESTART_INTENSITY", "N", "5", RC_CONFIG_COUNT, false, 0, 1000, restart_intensity,
      "Restarts of a long-lived broker actor (ingress, edge) allowed within --restart-period before the process exits non-zero"),
    O("restart-period", "RUNCAST_RESTART_PERIOD", "DURATION", "10s", RC_CONFIG_DURATION, false, 1, MS_HOUR, restart_period_ms,
      "Window of --restart-intensity; a crash loop then becomes a process exit for systemd or Kubernetes"),
    /* ---- ingress ---- */
    O("ingest", "RUNCAST_INGEST", "URL", "tcp://127.0.0.1:7450", RC_CONFIG_URLS, true, 0, 0, ingest,
      "nng URL of a PULL socket for fire-and-forget publishing (repeatable; empty = none); loopback by default"),
    O("ingest-ack", "RUNCAST_INGEST_ACK", "URL", "tcp://127.0.0.1:7451", RC_CONFIG_URLS, true, 0, 0, ingest_ack,
      "nng URL of a REP socket for acknowledged publishing (repeatable; empty = none); loopback by default"),
    O("ingest-inflight", "RUNCAST_INGEST_INFLIGHT", "N", "8", RC_CONFIG_COUNT, false, 1, 1024, ingest_inflight,
      "Receive operations in flight per ingest socket; enough to keep the workers busy without hoarding memory"),
    O("ingest-stream-reader", "RUNCAST_INGEST_STREAM_READER", "N", "1", RC_CONFIG_COUNT, false, 0, 1, ingest_stream_reader,
      "1: read tcp:// and ipc:// --ingest connections as byte streams and split the SP messages here (a quarter of nng PULL's CPU per message); 0: nng's PULL socket"),
    O("ingest-handshake-timeout", "RUNCAST_INGEST_HANDSHAKE_TIMEOUT", "DURATION", "10s", RC_CONFIG_DURATION, false, 1, MS_HOUR, ingest_handshake_timeout_ms,
      "Time a new --ingest connection has to send its SP header (stream reader) before it is dropped; as nng's own"),
    O("ingest-inline-backlog", "RUNCAST_INGEST_INLINE_BACKLOG", "N", "4096", RC_CONFIG_COUNT, false, 0, 1000000, ingest_inline_backlog,
      "Messages a PULL decoder (one per worker per socket) may be behind and still run idle runs' events itself (less CPU per event); further behind they spread over the workers (32 on many cores); 0 = always spread (REP too: otherwise its thread runs idle runs' events and replies at once)"),
    /* ---- input limits ---- */
    O("max-runs", "RUNCAST_MAX_RUNS", "N", "1000000", RC_CONFIG_COUNT, false, 1, 100000000, max_runs,
      "Concurrent runs; beyond it new runs are refused with `limit` (about 512 MiB of run state at the default)"),
    O("max-event-bytes", "RUNCAST_MAX_EVENT_BYTES", "SIZE", "64KiB", RC_CONFIG_SIZE, false, 64, 64 * MIB, max_event_bytes,
      "Largest encoded event; bounds what one event costs in history and every subscriber queue"),
    O("max-batch-events", "RUNCAST_MAX_BATCH_EVENTS", "N", "1024", RC_CONFIG_COUNT, false, 1, 1000000, max_batch_events,
      "Events in one publish message; batches are the fast path, the bound keeps one message's work short"),
    O("max-batch-bytes", "RUNCAST_MAX_BATCH_BYTES", "SIZE", "4MiB", RC_CONFIG_SIZE, false, 64, GIB, max_batch_bytes,
      "Largest publish message (nng refuses bigger ones before reading them); at least --max-event-bytes"),
    O("max-id-bytes", "RUNCAST_MAX_ID_BYTES", "SIZE", "128", RC_CONFIG_SIZE, false, 1, 1024, max_id_bytes,
      "Longest run, conv, idempotency, tool or item id; ids are keys kept in memory and logs"),
    O("max-phase-bytes", "RUNCAST_MAX_PHASE_BYTES", "SIZE", "64", RC_CONFIG_SIZE, false, 1, 1024, max_phase_bytes,
      "Longest phase name; phase names are kept per run and used as metric labels"),
    O("max-data-depth", "RUNCAST_MAX_DATA_DEPTH", "N", "32", RC_CONFIG_COUNT, false, 1, 256, max_data_depth,
      "Nesting depth of data/tool/item/error values; bounds decoder recursion against hostile input"),
    O("max-start-timeouts", "RUNCAST_MAX_START_TIMEOUTS", "N", "32", RC_CONFIG_COUNT, false, 0, 32, max_start_timeouts,
      "Entries in a start event's `timeouts` map (the wire format holds at most 32)"),
    O("run-mailbox-limit", "RUNCAST_RUN_MAILBOX_LIMIT", "N", "4096", RC_CONFIG_COUNT, false, 1, 16777216, run_mailbox_limit,
      "Messages queued for one run actor before publishers get `overloaded`; one hot run cannot eat all memory"),
    /* ---- run state ---- */
    O("history-max-events", "RUNCAST_HISTORY_MAX_EVENTS", "N", "10000", RC_CONFIG_COUNT, false, 1, 100000000, history_max_events,
      "Events kept per run for resume (oldest go first, the terminal stays); older resumes get a snapshot and `gap`"),
    O("history-max-bytes", "RUNCAST_HISTORY_MAX_BYTES", "SIZE", "4MiB", RC_CONFIG_SIZE, false, 1, 16 * GIB, history_max_bytes,
      "Bytes of encoded events kept per run for resume; bounds a chatty run's memory"),
    O("idempotency-window", "RUNCAST_IDEMPOTENCY_WINDOW", "N", "10000", RC_CONFIG_COUNT, false, 1, 100000000, idempotency_window,
      "Ids of the last N accepted events per run remembered to answer repeats with `dup`; bounds a run's id memory"),
    O("snapshot-text-max", "RUNCAST_SNAPSHOT_TEXT_MAX", "SIZE", "256KiB", RC_CONFIG_SIZE, false, 0, GIB, snapshot_text_max,
      "Accumulated thinking/output text kept per run in its snapshot; late subscribers see the tail beyond it"),
    O("retention", "RUNCAST_RETENTION", "DURATION", "5m", RC_CONFIG_DURATION, false, 0, 30 * MS_DAY, retention_ms,
      "How long a finished run keeps its history for late subscribers and resumes, then frees it"),
    O("tombstone-ttl", "RUNCAST_TOMBSTONE_TTL", "DURATION", "1h", RC_CONFIG_DURATION, false, 1, 30 * MS_DAY, tombstone_ttl_ms,
      "How long a finished run's final snapshot and terminal stay to fence late events and inform late subscribers"),
    /* ---- supervisor ---- */
    O("watchdog", "RUNCAST_WATCHDOG", "DURATION", "120s", RC_CONFIG_DURATION, false, 1, 30 * MS_DAY, watchdog_ms,
      "A run with no event for this long fails with watchdog_timeout; covers slow tool calls, catches dead backends"),
    O("phase-timeout", "RUNCAST_PHASE_TIMEOUT", "PHASE=DURATION", "", RC_CONFIG_PHASES, true, 1, 30 * MS_DAY, phase_timeout,
      "Idle timeout of one phase instead of --watchdog (repeatable), e.g. execute=10m for long tool runs"),
    O("max-watchdog", "RUNCAST_MAX_WATCHDOG", "DURATION", "1h", RC_CONFIG_DURATION, false, 1, 30 * MS_DAY, max_watchdog_ms,
      "Cap on per-run timeouts a start event may ask for; a publisher cannot keep a dead run open for days"),
    O("run-deadline", "RUNCAST_RUN_DEADLINE", "DURATION", "1h", RC_CONFIG_DURATION, false, 0, 30 * MS_DAY, run_deadline_ms,
      "Absolute limit on a run's life (0 disables): a run that keeps sending but never ends still ends"),
    O("publisher-grace", "RUNCAST_PUBLISHER_GRACE", "DURATION", "15s", RC_CONFIG_DURATION, false, 0, 30 * MS_DAY, publisher_grace_ms,
      "Watchdog after the publisher's connection closes (0 disables); long enough for a reconnect"),
    O("watchdog-tick", "RUNCAST_WATCHDOG_TICK", "DURATION", "10ms", RC_CONFIG_DURATION, false, 1, MS_SEC, watchdog_tick_ms,
      "Watchdog lateness budget: the timer wheel turns in 1/16 of it, leaving the rest for wake-ups; finer costs timer wake-ups"),
    O("watchdog-threads", "RUNCAST_WATCHDOG_THREADS", "N", "0", RC_CONFIG_COUNT, false, 0, 4, watchdog_threads,
      "Threads turning the timer wheel, each on its own CPU, whichever wakes first (0 = 2 on 2+ CPUs): one stalled CPU cannot delay the watchdog"),
    /* ---- edge ---- */
    O("http", "RUNCAST_HTTP", "HOST:PORT", "127.0.0.1:7480", RC_CONFIG_HOSTPORT, false, 0, 0, http,
      "HTTP and WebSocket listen address (/ws, /healthz, /metrics, /runs); loopback by default, port 0 = any free"),
    O("ws-queue-max", "RUNCAST_WS_QUEUE_MAX", "SIZE", "4MiB", RC_CONFIG_SIZE, false, 64, GIB, ws_queue_max,
      "Bytes queued per WebSocket before it is closed with 4008 (slow consumer); a slow reader never slows others"),
    O("ws-heartbeat", "RUNCAST_WS_HEARTBEAT", "DURATION", "15s", RC_CONFIG_DURATION, false, 0, MS_HOUR, ws_heartbeat_ms,
      "`hb` frame interval on quiet connections (0 disables); below common proxy idle timeouts"),
    O("ws-write-timeout", "RUNCAST_WS_WRITE_TIMEOUT", "DURATION", "10s", RC_CONFIG_DURATION, false, 1, MS_HOUR, ws_write_timeout_ms,
      "A WebSocket send not completed within this is closed; frees memory held by stuck peers"),
    O("ws-max-conns", "RUNCAST_WS_MAX_CONNS", "N", "10000", RC_CONFIG_COUNT, false, 1, 10000000, ws_max_conns,
      "WebSocket connections; beyond it new ones are closed with 4429 (keep below the file descriptor limit)"),
    O("ws-max-subs", "RUNCAST_WS_MAX_SUBS", "N", "256", RC_CONFIG_COUNT, false, 1, 1000000, ws_max_subs,
      "Subscriptions per connection; bounds one client's share of fan-out work"),
    O("ws-max-frame", "RUNCAST_WS_MAX_FRAME", "SIZE", "64KiB", RC_CONFIG_SIZE, false, 64, 16 * MIB, ws_max_frame,
      "Largest frame a client may send; client messages are small (sub, unsub, ping)"),
    O("ws-abuse-limit", "RUNCAST_WS_ABUSE_LIMIT", "N", "10", RC_CONFIG_COUNT, false, 1, 1000000, ws_abuse_limit,
      "Invalid client messages tolerated (each answered with `err`) before closing with 4400"),
    O("http-runs-limit", "RUNCAST_HTTP_RUNS_LIMIT", "N", "1000", RC_CONFIG_COUNT, false, 1, 1000000, http_runs_limit,
      "Most entries GET /runs returns (its `limit` parameter is capped by it); keeps the response bounded"),
    O("allow-origin", "RUNCAST_ALLOW_ORIGIN", "ORIGIN", "", RC_CONFIG_ORIGINS, true, 0, 0, allow_origin,
      "Browser Origin allowed to open /ws (repeatable, or *); none = http(s)://localhost and 127.0.0.1 on any port"),
};
/* clang-format on */

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

/* Headings for --help and the sample config, by the first option of each
 * group in the table above. */
static const struct {
    const char *first;
    const char *title;
} sections[] = {
    {"config", "General"},
    {"ingest", "Ingress (nng)"},
    {"max-runs", "Limits on input"},
    {"history-max-events", "Run state and retention"},
    {"watchdog", "Supervisor and watchdog"},
    {"http", "Edge: HTTP and WebSocket"},
};

static const char *section_at(size_t i)
{
    for (size_t k = 0; k < sizeof(sections) / sizeof(sections[0]); k++)
        if (strcmp(sections[k].first, opts[i].pub.name) == 0)
            return sections[k].title;
    return NULL;
}

size_t rc_config_option_count(void)
{
    return NOPTS;
}

const struct rc_config_option *rc_config_option_at(size_t i)
{
    return i < NOPTS ? &opts[i].pub : NULL;
}

static const struct opt *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++) {
        if (strlen(opts[i].pub.name) == len && memcmp(opts[i].pub.name, name, len) == 0)
            return &opts[i];
    }
    return NULL;
}

const struct rc_config_option *rc_config_option_find(const char *name)
{
    const struct opt *o = find_opt(name, strlen(name));
    return o != NULL ? &o->pub : NULL;
}

/* ---- errors ---- */

static int fail(char *errbuf, size_t errlen, const char *source, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *errbuf, size_t errlen, const char *source, const char *fmt, ...)
{
    if (errbuf != NULL && errlen > 0) {
        int n = snprintf(errbuf, errlen, "%s: ", source);
        if (n < 0 || (size_t)n >= errlen)
            n = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return RC_EINVAL;
}

/* Edit distance, for "did you mean" hints (names are short). */
static size_t edit_distance(const char *a, size_t la, const char *b)
{
    size_t lb = strlen(b);
    size_t row[64];
    if (la >= 63 || lb >= 63)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = prev + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

static int fail_unknown(char *errbuf, size_t errlen, const char *source, const char *name,
                        size_t len)
{
    const char *best = NULL;
    size_t bestd = 3; /* suggest only close names */
    for (size_t i = 0; i < NOPTS; i++) {
        size_t d = edit_distance(name, len, opts[i].pub.name);
        if (d < bestd) {
            bestd = d;
            best = opts[i].pub.name;
        }
    }
    if (best != NULL)
        return fail(errbuf, errlen, source, "unknown option '%.*s' (did you mean '%s'?)", (int)len,
                    name, best);
    return fail(errbuf, errlen, source, "unknown option '%.*s' (see --help)", (int)len, name);
}

/* ---- value parsers ---- */

static const char *skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Decimal digits into *v; returns the end or NULL on no digits / overflow. */
static const char *parse_u64(const char *p, uint64_t *v)
{
    uint64_t x = 0;
    const char *start = p;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return NULL;
        x = x * 10 + d;
        p++;
    }
    if (p == start)
        return NULL;
    *v = x;
    return p;
}

static int mul_add(uint64_t *acc, uint64_t v, uint64_t mul)
{
    if (v != 0 && mul > UINT64_MAX / v)
        return RC_EINVAL;
    if (*acc > UINT64_MAX - v * mul)
        return RC_EINVAL;
    *acc += v * mul;
    return 0;
}

int rc_config_parse_duration(const char *s, uint64_t *ms)
{
    if (s == NULL)
        return RC_EINVAL;
    const char *p = skip_space(s);
    uint64_t total = 0;
    int segments = 0;
    bool bare = false;
    if (*p == '\0')
        return RC_EINVAL;
    while (*p != '\0') {
        uint64_t whole, frac = 0, frac_div = 1;
        const char *q = parse_u64(p, &whole);
        if (q == NULL)
            return RC_EINVAL;
        if (*q == '.') {
            const char *f = q + 1;
            q = f;
            while (*q >= '0' && *q <= '9') {
                if (frac_div >= 1000000000000ull)
                    return RC_EINVAL; /* more digits than can matter */
                frac = frac * 10 + (uint64_t)(*q - '0');
                frac_div *= 10;
                q++;
            }
            if (q == f)
                return RC_EINVAL;
        }
        q = skip_space(q);
        uint64_t unit;
        if (strncmp(q, "ms", 2) == 0) {
            unit = 1;
            q += 2;
        } else if (*q == 's') {
            unit = MS_SEC;
            q++;
        } else if (*q == 'm') {
            unit = MS_MIN;
            q++;
        } else if (*q == 'h') {
            unit = MS_HOUR;
            q++;
        } else if (*q == '\0' && segments == 0 && frac_div == 1) {
            unit = 1; /* a bare number is milliseconds */
            bare = true;
        } else {
            return RC_EINVAL;
        }
        /* the fraction must come out in whole milliseconds */
        if ((frac * unit) % frac_div != 0)
            return RC_EINVAL;
        if (mul_add(&total, whole, unit) != 0 || mul_add(&total, (frac * unit) / frac_div, 1) != 0)
            return RC_EINVAL;
        segments++;
        p = skip_space(q);
        if (bare)
            break;
    }
    *ms = total;
    return 0;
}

int rc_config_parse_size(const char *s, uint64_t *bytes)
{
    static const struct {
        const char *unit;
        uint64_t mul;
    } units[] = {
        {"", 1},      {"b", 1},          {"k", KIB},         {"kb", KIB},         {"kib", KIB},
        {"m", MIB},   {"mb", MIB},       {"mib", MIB},       {"g", GIB},          {"gb", GIB},
        {"gib", GIB}, {"t", 1024 * GIB}, {"tb", 1024 * GIB}, {"tib", 1024 * GIB},
    };
    if (s == NULL)
        return RC_EINVAL;
    uint64_t v;
    const char *p = parse_u64(skip_space(s), &v);
    if (p == NULL)
        return RC_EINVAL;
    p = skip_space(p);
    size_t ulen = strlen(p);
    while (ulen > 0 && (p[ulen - 1] == ' ' || p[ulen - 1] == '\t'))
        ulen--;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strlen(units[i].unit) == ulen && strncasecmp(p, units[i].unit, ulen) == 0) {
            uint64_t r = 0;
            if (mul_add(&r, v, units[i].mul) != 0)
                return RC_EINVAL;
            *bytes = r;
            return 0;
        }
    }
    return RC_EINVAL;
}

void rc_config_format_duration(uint64_t ms, char *buf, size_t len)
{
    unsigned long long v = (unsigned long long)ms;
    if (ms == 0)
        snprintf(buf, len, "0");
    else if (ms % MS_HOUR == 0)
        snprintf(buf, len, "%lluh", v / MS_HOUR);
    else if (ms % MS_MIN == 0)
        snprintf(buf, len, "%llum", v / MS_MIN);
    else if (ms % MS_SEC == 0)
        snprintf(buf, len, "%llus", v / MS_SEC);
    else
        snprintf(buf, len, "%llums", v);
}

void rc_config_format_size(uint64_t bytes, char *buf, size_t len)
{
    unsigned long long v = (unsigned long long)bytes;
    if (bytes != 0 && bytes % GIB == 0)
        snprintf(buf, len, "%lluGiB", v / GIB);
    else if (bytes != 0 && bytes % MIB == 0)
        snprintf(buf, len, "%lluMiB", v / MIB);
    else if (bytes != 0 && bytes % KIB == 0)
        snprintf(buf, len, "%lluKiB", v / KIB);
    else
        snprintf(buf, len, "%llu", v);
}

/* ---- validators for structured values ---- */

/* A port: 1-5 digits, 0..65535. */
static bool parse_port(const char *p, size_t len, uint16_t *port)
{
    if (len == 0 || len > 5)
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (uint32_t)(p[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

static bool host_char(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

/* "host:port", "[v6]:port", ":port" only when allow_empty_host.  Sets the
 * host span (without brackets).  *why explains a failure. */
static bool parse_hostport(const char *s, size_t len, bool allow_empty_host, const char **host,
                           size_t *host_len, uint16_t *port, const char **why)
{
    const char *colon;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL || close == s + 1) {
            *why = "unterminated or empty [IPv6] address";
            return false;
        }
        for (const char *c = s + 1; c < close; c++) {
            if (!isxdigit((unsigned char)*c) && *c != ':' && *c != '.') {
                *why = "bad character in [IPv6] address";
                return false;
            }
        }
        *host = s + 1;
        *host_len = (size_t)(close - s - 1);
        if (close + 1 >= s + len || close[1] != ':') {
            *why = "missing :PORT";
            return false;
        }
        colon = close + 1;
    } else {
        colon = NULL;
        for (size_t i = 0; i < len; i++)
            if (s[i] == ':')
                colon = s + i;
        if (colon == NULL) {
            *why = "missing :PORT";
            return false;
        }
        *host = s;
        *host_len = (size_t)(colon - s);
        for (const char *c = s; c < colon; c++) {
            if (!host_char(*c)) {
                *why = "bad character in host (use a name, IPv4 address or [IPv6])";
                return false;
            }
        }
        if (*host_len == 0 && !allow_empty_host) {
            *why = "empty host (use 0.0.0.0 or [::] for every interface)";
            return false;
        }
    }
    if (!parse_port(colon + 1, (size_t)(s + len - colon - 1), port)) {
        *why = "port must be a number from 0 to 65535";
        return false;
    }
    return true;
}

static bool has_space_or_ctl(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return true;
    return false;
}

/* nng URLs the broker can listen on; *port_out (if not NULL) is the network
 * URL's port, or -1 for a local one (ipc, inproc, abstract). */
static bool valid_url(const char *u, const char **why, int *port_out)
{
    int unused;
    if (!port_out)
        port_out = &unused;
    *port_out = -1;
    static const char *const net[] = {"tcp://",  "tcp4://",    "tcp6://",     "ws://",
                                      "ws4://",  "ws6://",     "wss://",      "wss4://",
                                      "wss6://", "tls+tcp://", "tls+tcp4://", "tls+tcp6://"};
    static const char *const local[] = {"ipc://", "inproc://", "abstract://"};
    if (has_space_or_ctl(u)) {
        *why = "spaces or control characters";
        return false;
    }
    for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
        size_t n = strlen(local[i]);
        if (strncmp(u, local[i], n) == 0) {
            if (u[n] == '\0') {
                *why = "empty path or name";
                return false;
            }
            return true;
        }
    }
    for (size_t i = 0; i < sizeof(net) / sizeof(net[0]); i++) {
        size_t n = strlen(net[i]);
        if (strncmp(u, net[i], n) == 0) {
            const char *hp = u + n;
            const char *slash = strchr(hp, '/');
            bool is_ws = net[i][0] == 'w';
            if (slash != NULL && !is_ws) {
                *why = "a tcp URL has no path";
                return false;
            }
            size_t len = slash != NULL ? (size_t)(slash - hp) : strlen(hp);
            const char *host;
            size_t host_len;
            uint16_t port;
            if (!parse_hostport(hp, len, true, &host, &host_len, &port, why))
                return false;
            *port_out = port;
            return true;
        }
    }
    *why = "unsupported scheme (tcp://, tcp4://, tcp6://, ipc://, inproc://, abstract://, ws://, "
           "wss://, tls+tcp://)";
    return false;
}

static bool scheme_char(char c, bool first)
{
    return isalpha((unsigned char)c) ||
           (!first && (isdigit((unsigned char)c) || c == '+' || c == '.' || c == '-'));
}

/* An allow-origin entry: "*", "null" or scheme://host[:port]. */
static bool valid_origin(const char *o, const char **why)
{
    if (strcmp(o, "*") == 0 || strcmp(o, "null") == 0)
        return true;
    const char *sep = strstr(o, "://");
    if (sep == NULL || sep == o) {
        *why = "expected scheme://host[:port], * or null";
        return false;
    }
    for (const char *c = o; c < sep; c++) {
        if (!scheme_char(*c, c == o)) {
            *why = "bad scheme";
            return false;
        }
    }
    const char *h = sep + 3;
    if (*h == '\0') {
        *why = "empty host";
        return false;
    }
    if (strchr(h, '/') != NULL || strchr(h, '?') != NULL || strchr(h, '#') != NULL) {
        *why = "an origin has no path (e.g. https://app.example.com:8443)";
        return false;
    }
    size_t len = strlen(h);
    if (h[0] == '[' || memchr(h, ':', len) != NULL) {
        const char *host;
        size_t host_len;
        uint16_t port;
        return parse_hostport(h, len, false, &host, &host_len, &port, why);
    }
    for (const char *c = h; *c != '\0'; c++) {
        if (!host_char(*c)) {
            *why = "bad character in host";
            return false;
        }
    }
    return true;
}

static bool valid_phase_name(const char *p, size_t len)
{
    if (len == 0 || (len == 1 && p[0] == '*'))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= ' ' || c == 0x7f || c == '=' || c == ',')
            return false;
    }
    return true;
}

/* ---- list helpers ---- */

static void strv_clear(struct rc_config_strv *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        rc_free(sv->v[i]);
    rc_free(sv->v);
    sv->v = NULL;
    sv->n = 0;
}

static int strv_push(struct rc_config_strv *sv, const char *s)
{
    char *copy = rc_strndup(s, strlen(s));
    if (copy == NULL)
        return RC_ENOMEM;
    char **nv = rc_realloc(sv->v, (sv->n + 1) * sizeof(*nv));
    if (nv == NULL) {
        rc_free(copy);
        return RC_ENOMEM;
    }
    nv[sv->n++] = copy;
    sv->v = nv;
    return 0;
}

static void phases_clear(struct rc_config *cfg)
{
    for (size_t i = 0; i < cfg->phase_timeout_n; i++)
        rc_free(cfg->phase_timeout[i].phase);
    rc_free(cfg->phase_timeout);
    cfg->phase_timeout = NULL;
    cfg->phase_timeout_n = 0;
}

/* Sets PHASE's timeout, replacing an earlier entry for the same phase. */
static int phases_set(struct rc_config *cfg, const char *phase, size_t len, uint64_t ms)
{
    for (size_t i = 0; i < cfg->phase_timeout_n; i++) {
        if (strlen(cfg->phase_timeout[i].phase) == len &&
            memcmp(cfg->phase_timeout[i].phase, phase, len) == 0) {
            cfg->phase_timeout[i].ms = ms;
            return 0;
        }
    }
    char *copy = rc_strndup(phase, len);
    if (copy == NULL)
        return RC_ENOMEM;
    struct rc_config_phase_timeout *nv =
        rc_realloc(cfg->phase_timeout, (cfg->phase_timeout_n + 1) * sizeof(*nv));
    if (nv == NULL) {
        rc_free(copy);
        return RC_ENOMEM;
    }
    nv[cfg->phase_timeout_n].phase = copy;
    nv[cfg->phase_timeout_n].ms = ms;
    cfg->phase_timeout_n++;
    cfg->phase_timeout = nv;
    return 0;
}

static int set_string(char **field, const char *value)
{
    char *copy = rc_strndup(value, strlen(value));
    if (copy == NULL)
        return RC_ENOMEM;
    rc_free(*field);
    *field = copy;
    return 0;
}

/* Clears a repeatable option's list (a higher source replaces it). */
static void clear_list(struct rc_config *cfg, const struct opt *o)
{
    if (o->pub.kind == RC_CONFIG_PHASES)
        phases_clear(cfg);
    else
        strv_clear((struct rc_config_strv *)((char *)cfg + o->off));
}

static int range_fail(const struct opt *o, uint64_t v, const char *value, const char *source,
                      char *errbuf, size_t errlen)
{
    char lo[32], hi[32];
    if (o->pub.kind == RC_CONFIG_DURATION || o->pub.kind == RC_CONFIG_PHASES) {
        rc_config_format_duration(o->pub.min, lo, sizeof(lo));
        rc_config_format_duration(o->pub.max, hi, sizeof(hi));
    } else if (o->pub.kind == RC_CONFIG_SIZE) {
        rc_config_format_size(o->pub.min, lo, sizeof(lo));
        rc_config_format_size(o->pub.max, hi, sizeof(hi));
    } else {
        snprintf(lo, sizeof(lo), "%llu", (unsigned long long)o->pub.min);
        snprintf(hi, sizeof(hi), "%llu", (unsigned long long)o->pub.max);
    }
    (void)v;
    return fail(errbuf, errlen, source, "%s '%s' out of range (%s to %s)", o->pub.name, value, lo,
                hi);
}

/* One value for option o.  For a repeatable option it appends (an empty
 * value clears the list). */
static int set_value(struct rc_config *cfg, const struct opt *o, const char *value,
                     const char *source, char *errbuf, size_t errlen)
{
    void *field = (char *)cfg + o->off;
    const char *name = o->pub.name;
    const char *why = NULL;
    uint64_t v;
    int rv;

    switch (o->pub.kind) {
    case RC_CONFIG_PATH:
    case RC_CONFIG_STRING:
        if (value[0] == '\0') {
            rc_free(*(char **)field);
            *(char **)field = NULL;
            return 0;
        }
        return set_string(field, value);
    case RC_CONFIG_COUNT: {
        const char *end = parse_u64(skip_space(value), &v);
        if (end == NULL || *skip_space(end) != '\0')
            return fail(errbuf, errlen, source, "%s: bad number '%s' (expected digits, e.g. %s)",
                        name, value, o->pub.def);
        if (v < o->pub.min || v > o->pub.max)
            return range_fail(o, v, value, source, errbuf, errlen);
        *(uint64_t *)field = v;
        return 0;
    }
    case RC_CONFIG_SIZE:
        if (rc_config_parse_size(value, &v) != 0)
            return fail(errbuf, errlen, source,
                        "%s: bad size '%s' (bytes or KiB, MiB, GiB, e.g. 64KiB, 4MiB)", name,
                        value);
        if (v < o->pub.min || v > o->pub.max)
            return range_fail(o, v, value, source, errbuf, errlen);
        *(uint64_t *)field = v;
        return 0;
    case RC_CONFIG_DURATION:
        if (rc_config_parse_duration(value, &v) != 0)
            return fail(errbuf, errlen, source,
                        "%s: bad duration '%s' (use ms, s, m or h, e.g. 250ms, 2s, 5m, 1h)", name,
                        value);
        if (v < o->pub.min || v > o->pub.max)
            return range_fail(o, v, value, source, errbuf, errlen);
        *(uint64_t *)field = v;
        return 0;
    case RC_CONFIG_LOGLEVEL:
        if (rc_log_level_parse(value, field) != 0)
            return fail(errbuf, errlen, source,
                        "%s: bad log level '%s' (debug, info, warn, error or critical)", name,
                        value);
        return 0;
    case RC_CONFIG_LOGFORMAT:
        if (rc_log_format_parse(value, field) != 0)
            return fail(errbuf, errlen, source, "%s: bad log format '%s' (text or json)", name,
                        value);
        return 0;
    case RC_CONFIG_URLS:
        if (value[0] == '\0') {
            strv_clear(field);
            return 0;
        }
        if (!valid_url(value, &why, NULL))
            return fail(errbuf, errlen, source, "%s: bad nng URL '%s': %s", name, value, why);
        return strv_push(field, value);
    case RC_CONFIG_ORIGINS:
        if (value[0] == '\0') {
            strv_clear(field);
            return 0;
        }
        if (!valid_origin(value, &why))
            return fail(errbuf, errlen, source, "%s: bad origin '%s': %s", name, value, why);
        return strv_push(field, value);
    case RC_CONFIG_PHASES: {
        if (value[0] == '\0') {
            phases_clear(cfg);
            return 0;
        }
        const char *eq = strchr(value, '=');
        if (eq == NULL)
            return fail(errbuf, errlen, source, "%s: expected PHASE=DURATION, got '%s'", name,
                        value);
        size_t plen = (size_t)(eq - value);
        if (!valid_phase_name(value, plen))
            return fail(errbuf, errlen, source,
                        "%s: bad phase name '%.*s' (non-empty, no spaces, '=' or ','; use "
                        "--watchdog for every phase)",
                        name, (int)plen, value);
        if (rc_config_parse_duration(eq + 1, &v) != 0)
            return fail(errbuf, errlen, source,
                        "%s: bad duration '%s' (use ms, s, m or h, e.g. 250ms, 2s, 5m, 1h)", name,
                        eq + 1);
        if (v < o->pub.min || v > o->pub.max)
            return range_fail(o, v, value, source, errbuf, errlen);
        return phases_set(cfg, value, plen, v);
    }
    case RC_CONFIG_HOSTPORT: {
        const char *host;
        size_t host_len;
        uint16_t port;
        if (!parse_hostport(value, strlen(value), false, &host, &host_len, &port, &why))
            return fail(errbuf, errlen, source, "%s: bad address '%s': %s (expected HOST:PORT)",
                        name, value, why);
        char *h = rc_strndup(host, host_len);
        if (h == NULL)
            return RC_ENOMEM;
        rv = set_string(&cfg->http, value);
        if (rv != 0) {
            rc_free(h);
            return rv;
        }
        rc_free(cfg->http_host);
        cfg->http_host = h;
        cfg->http_port = port;
        return 0;
    }
    }
    return RC_EINVAL;
}

/* ---- init / fini ---- */

int rc_config_init(struct rc_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    char err[256];
    for (size_t i = 0; i < NOPTS; i++) {
        int rv = set_value(cfg, &opts[i], opts[i].pub.def, "default", err, sizeof(err));
        if (rv != 0) {
            rc_config_fini(cfg);
            return rv;
        }
    }
    return 0;
}

void rc_config_fini(struct rc_config *cfg)
{
    if (cfg == NULL)
        return;
    rc_free(cfg->config_path);
    rc_free(cfg->http);
    rc_free(cfg->http_host);
    strv_clear(&cfg->ingest);
    strv_clear(&cfg->ingest_ack);
    strv_clear(&cfg->allow_origin);
    phases_clear(cfg);
    memset(cfg, 0, sizeof(*cfg));
}

int rc_config_set(struct rc_config *cfg, const char *name, const char *value, const char *source,
                  char *errbuf, size_t errlen)
{
    const struct opt *o = find_opt(name, strlen(name));
    if (source == NULL)
        source = "set";
    if (o == NULL)
        return fail_unknown(errbuf, errlen, source, name, strlen(name));
    return set_value(cfg, o, value, source, errbuf, errlen);
}

/* ---- validation across options ---- */

static bool strv_has(const struct rc_config_strv *sv, size_t upto, const char *s)
{
    for (size_t i = 0; i < upto && i < sv->n; i++)
        if (strcmp(sv->v[i], s) == 0)
            return true;
    return false;
}

/* Whether an ingest URL given twice would listen twice on one address: not
 * with port 0, where each listen takes a free port of its own. */
static bool ingest_url_dup(const struct rc_config_strv *sv, size_t upto, const char *u)
{
    const char *why;
    int port;
    if (valid_url(u, &why, &port) && port == 0)
        return false;
    return strv_has(sv, upto, u);
}

int rc_config_validate(const struct rc_config *cfg, char *errbuf, size_t errlen)
{
    const char *src = "configuration";
    char a[32], b[32];
    if (cfg->ingest.n == 0 && cfg->ingest_ack.n == 0)
        return fail(errbuf, errlen, src,
                    "no ingest socket: set at least one --ingest or --ingest-ack URL");
    for (size_t i = 0; i < cfg->ingest.n; i++) {
        if (ingest_url_dup(&cfg->ingest, i, cfg->ingest.v[i]) ||
            ingest_url_dup(&cfg->ingest_ack, cfg->ingest_ack.n, cfg->ingest.v[i]))
            return fail(errbuf, errlen, src, "ingest URL '%s' is given twice", cfg->ingest.v[i]);
    }
    for (size_t i = 0; i < cfg->ingest_ack.n; i++) {
        if (ingest_url_dup(&cfg->ingest_ack, i, cfg->ingest_ack.v[i]))
            return fail(errbuf, errlen, src, "ingest-ack URL '%s' is given twice",
                        cfg->ingest_ack.v[i]);
    }
    if (cfg->max_batch_bytes < cfg->max_event_bytes) {
        rc_config_format_size(cfg->max_batch_bytes, a, sizeof(a));
        rc_config_format_size(cfg->max_event_bytes, b, sizeof(b));
        return fail(errbuf, errlen, src,
                    "max-batch-bytes (%s) is below max-event-bytes (%s): a single event could not "
                    "be published",
                    a, b);
    }
    if (cfg->ws_queue_max < cfg->max_event_bytes) {
        rc_config_format_size(cfg->ws_queue_max, a, sizeof(a));
        rc_config_format_size(cfg->max_event_bytes, b, sizeof(b));
        return fail(errbuf, errlen, src,
                    "ws-queue-max (%s) is below max-event-bytes (%s): one event would close every "
                    "subscriber",
                    a, b);
    }
    if (cfg->watchdog_ms > cfg->max_watchdog_ms) {
        rc_config_format_duration(cfg->watchdog_ms, a, sizeof(a));
        rc_config_format_duration(cfg->max_watchdog_ms, b, sizeof(b));
        return fail(errbuf, errlen, src, "watchdog (%s) is above max-watchdog (%s)", a, b);
    }
    for (size_t i = 0; i < cfg->phase_timeout_n; i++) {
        const struct rc_config_phase_timeout *pt = &cfg->phase_timeout[i];
        if (strlen(pt->phase) > cfg->max_phase_bytes)
            return fail(errbuf, errlen, src,
                        "phase-timeout: phase name '%s' is longer than max-phase-bytes (%llu)",
                        pt->phase, (unsigned long long)cfg->max_phase_bytes);
        if (pt->ms > cfg->max_watchdog_ms) {
            rc_config_format_duration(pt->ms, a, sizeof(a));
            rc_config_format_duration(cfg->max_watchdog_ms, b, sizeof(b));
            return fail(errbuf, errlen, src, "phase-timeout %s=%s is above max-watchdog (%s)",
                        pt->phase, a, b);
        }
    }
    for (size_t i = 0; i < cfg->allow_origin.n; i++) {
        if (strv_has(&cfg->allow_origin, i, cfg->allow_origin.v[i]))
            return fail(errbuf, errlen, src, "allow-origin '%s' is given twice",
                        cfg->allow_origin.v[i]);
    }
    return 0;
}

/* ---- loading ---- */

enum source { SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG };

struct loader {
    struct rc_config *cfg;
    uint8_t set_by[sizeof(opts) / sizeof(opts[0])]; /* highest source that set each option */
    char *errbuf;
    size_t errlen;
};

/* Applies one value from source src; the first value of a repeatable option
 * from a higher source than the one that set it replaces the list. */
static int apply(struct loader *ld, const struct opt *o, enum source src, const char *value,
                 const char *label)
{
    size_t idx = (size_t)(o - opts);
    if (o->pub.repeatable && ld->set_by[idx] != src)
        clear_list(ld->cfg, o);
    ld->set_by[idx] = (uint8_t)src;
    return set_value(ld->cfg, o, value, label, ld->errbuf, ld->errlen);
}

/* --name=value / --name value.  Returns the option and value, or an error. */
struct flag_item {
    const struct opt *o;
    const char *value;
    char label[96];
};

static int parse_flags(struct loader *ld, int argc, char **argv, struct flag_item *items,
                       size_t *n_items)
{
    size_t n = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        char label[96];
        if (strcmp(arg, "--print-config") == 0) {
            ld->cfg->show_config = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            snprintf(label, sizeof(label), "argument '%s'", arg);
            return fail(ld->errbuf, ld->errlen, label,
                        "unexpected argument (options are --name VALUE or --name=VALUE; see "
                        "--help)");
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
        snprintf(label, sizeof(label), "flag --%.*s", (int)(nlen > 64 ? 64 : nlen), name);
        const struct opt *o = find_opt(name, nlen);
        if (o == NULL)
            return fail_unknown(ld->errbuf, ld->errlen, label, name, nlen);
        const char *value;
        if (eq != NULL) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            return fail(ld->errbuf, ld->errlen, label, "missing value (%s)", o->pub.arg);
        }
        items[n].o = o;
        items[n].value = value;
        memcpy(items[n].label, label, sizeof(label));
        n++;
    }
    *n_items = n;
    return 0;
}

/* Reads a config file into memory (bounded). */
static int read_file(const char *path, char **out, size_t *len, char *errbuf, size_t errlen)
{
    char label[300];
    snprintf(label, sizeof(label), "config file %s", path);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return fail(errbuf, errlen, label, "cannot open: %s", strerror(errno));
    char *buf = rc_malloc(FILE_MAX_BYTES + 1);
    if (buf == NULL) {
        fclose(f);
        return RC_ENOMEM;
    }
    size_t n = fread(buf, 1, FILE_MAX_BYTES + 1, f);
    bool err = ferror(f) != 0;
    fclose(f);
    if (err) {
        rc_free(buf);
        return fail(errbuf, errlen, label, "read error");
    }
    if (n > FILE_MAX_BYTES) {
        rc_free(buf);
        return fail(errbuf, errlen, label, "larger than %d bytes", FILE_MAX_BYTES);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static int load_file(struct loader *ld, const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    int rv = read_file(path, &buf, &len, ld->errbuf, ld->errlen);
    if (rv != 0)
        return rv;
    char *p = buf;
    unsigned lineno = 0;
    while (rv == 0 && p < buf + len) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        char *line = p;
        if (nl != NULL) {
            *nl = '\0';
            p = nl + 1;
        } else {
            p = buf + len;
        }
        lineno++;
        char label[300];
        snprintf(label, sizeof(label), "%s:%u", path, lineno);
        if (strlen(line) > LINE_MAX_BYTES) {
            rv = fail(ld->errbuf, ld->errlen, label, "line longer than %d bytes", LINE_MAX_BYTES);
            break;
        }
        if (strlen(line) != (size_t)((nl != NULL ? nl : buf + len) - line)) {
            rv = fail(ld->errbuf, ld->errlen, label, "NUL byte in line");
            break;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            rv = fail(ld->errbuf, ld->errlen, label, "expected 'name = value', got '%s'", s);
            break;
        }
        *eq = '\0';
        char *name = trim(s);
        char *value = trim(eq + 1);
        /* value: "quoted" (\" and \\ escapes) or bare up to a ` #` comment */
        if (*value == '"') {
            char *r = value + 1, *w = value;
            while (*r != '\0' && *r != '"') {
                if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
                    r++;
                *w++ = *r++;
            }
            if (*r != '"') {
                rv = fail(ld->errbuf, ld->errlen, label, "unterminated quoted value");
                break;
            }
            char *rest = trim(r + 1);
            if (*rest != '\0' && *rest != '#') {
                rv = fail(ld->errbuf, ld->errlen, label, "text after the quoted value: '%s'", rest);
                break;
            }
            *w = '\0';
        } else {
            for (char *c = value; *c != '\0'; c++) {
                if (*c == '#' && (c == value || c[-1] == ' ' || c[-1] == '\t')) {
                    *c = '\0';
                    break;
                }
            }
            value = trim(value);
        }
        const struct opt *o = find_opt(name, strlen(name));
        if (o == NULL) {
            rv = fail_unknown(ld->errbuf, ld->errlen, label, name, strlen(name));
            break;
        }
        if (o->pub.kind == RC_CONFIG_PATH) {
            rv = fail(ld->errbuf, ld->errlen, label,
                      "'config' cannot be set in a config file (use --config or RUNCAST_CONFIG)");
            break;
        }
        rv = apply(ld, o, SRC_FILE, value, label);
    }
    rc_free(buf);
    return rv;
}

static const struct opt *find_env(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++) {
        if (strlen(opts[i].pub.env) == len && memcmp(opts[i].pub.env, name, len) == 0)
            return &opts[i];
    }
    return NULL;
}

/* The RUNCAST_* variables, except RUNCAST_CONFIG (already used). */
static int load_env(struct loader *ld, char **envp)
{
    for (char **e = envp; *e != NULL; e++) {
        const char *kv = *e;
        if (strncmp(kv, "RUNCAST_", 8) != 0)
            continue;
        const char *eq = strchr(kv, '=');
        if (eq == NULL)
            continue;
        size_t nlen = (size_t)(eq - kv);
        char label[96];
        snprintf(label, sizeof(label), "environment %.*s", (int)(nlen > 64 ? 64 : nlen), kv);
        const struct opt *o = find_env(kv, nlen);
        if (o == NULL) {
            /* the option name it would be, for the message and the hint */
            char guess[80];
            size_t g = 0;
            for (size_t i = 8; i < nlen && g + 1 < sizeof(guess); i++)
                guess[g++] = kv[i] == '_' ? '-' : (char)tolower((unsigned char)kv[i]);
            guess[g] = '\0';
            return fail_unknown(ld->errbuf, ld->errlen, label, guess, g);
        }
        if (o->pub.kind == RC_CONFIG_PATH)
            continue;
        const char *value = eq + 1;
        if (!o->pub.repeatable || *value == '\0') {
            int rv = apply(ld, o, SRC_ENV, value, label);
            if (rv != 0)
                return rv;
            continue;
        }
        /* repeatable: comma-separated, blanks around items ignored */
        const char *p = value;
        for (;;) {
            const char *comma = strchr(p, ',');
            size_t ilen = comma != NULL ? (size_t)(comma - p) : strlen(p);
            char *item = rc_strndup(p, ilen);
            if (item == NULL)
                return RC_ENOMEM;
            char *t = trim(item);
            int rv = 0;
            if (*t == '\0')
                rv = fail(ld->errbuf, ld->errlen, label, "empty item in comma-separated list '%s'",
                          value);
            else
                rv = apply(ld, o, SRC_ENV, t, label);
            rc_free(item);
            if (rv != 0)
                return rv;
            if (comma == NULL)
                break;
            p = comma + 1;
        }
    }
    return 0;
}

int rc_config_load(struct rc_config *cfg, int argc, char **argv, char **envp, char *errbuf,
                   size_t errlen)
{
    struct loader ld = {.cfg = cfg, .errbuf = errbuf, .errlen = errlen};
    struct flag_item *items = NULL;
    size_t n_items = 0;
    int rv;

    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    if (envp == NULL)
        envp = environ;
    cfg->show_help = false;
    cfg->show_version = false;
    cfg->show_config = false;

    /* --help and --version win over everything else on the line */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cfg->show_help = true;
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            cfg->show_version = true;
            return 0;
        }
    }

    if (argc > 1) {
        items = rc_calloc((size_t)argc, sizeof(*items));
        if (items == NULL)
            return RC_ENOMEM;
    }
    rv = parse_flags(&ld, argc, argv, items, &n_items);

    /* the file: --config (last wins), else RUNCAST_CONFIG */
    const char *path = NULL;
    const char *path_label = NULL;
    for (size_t i = 0; rv == 0 && i < n_items; i++) {
        if (items[i].o->pub.kind == RC_CONFIG_PATH) {
            path = items[i].value;
            path_label = "flag --config";
        }
    }
    for (char **e = envp; rv == 0 && path == NULL && *e != NULL; e++) {
        if (strncmp(*e, "RUNCAST_CONFIG=", 15) == 0) {
            path = *e + 15;
            path_label = "environment RUNCAST_CONFIG";
        }
    }
    if (rv == 0 && path != NULL) {
        const struct opt *co = find_opt("config", 6);
        rv = set_value(cfg, co, path, path_label, errbuf, errlen);
        if (rv == 0 && cfg->config_path != NULL)
            rv = load_file(&ld, cfg->config_path);
    }
    if (rv == 0)
        rv = load_env(&ld, envp);
    for (size_t i = 0; rv == 0 && i < n_items; i++) {
        if (items[i].o->pub.kind == RC_CONFIG_PATH)
            continue;
        rv = apply(&ld, items[i].o, SRC_FLAG, items[i].value, items[i].label);
    }
    rc_free(items);
    if (rv == 0)
        rv = rc_config_validate(cfg, errbuf, errlen);
    if (rv == RC_ENOMEM && errbuf != NULL && errlen > 0)
        snprintf(errbuf, errlen, "out of memory while loading the configuration");
    return rv;
}

/* ---- output ---- */

/* The current value of option o in cfg as text; lists are joined by sep. */
static void format_value(const struct rc_config *cfg, const struct opt *o, char *buf, size_t len,
                         size_t item)
{
    const void *field = (const char *)cfg + o->off;
    buf[0] = '\0';
    switch (o->pub.kind) {
    case RC_CONFIG_PATH:
    case RC_CONFIG_STRING:
    case RC_CONFIG_HOSTPORT: {
        const char *s = *(char *const *)field;
        snprintf(buf, len, "%s", s != NULL ? s : "");
        break;
    }
    case RC_CONFIG_COUNT:
        snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)field);
        break;
    case RC_CONFIG_SIZE:
        rc_config_format_size(*(const uint64_t *)field, buf, len);
        break;
    case RC_CONFIG_DURATION:
        rc_config_format_duration(*(const uint64_t *)field, buf, len);
        break;
    case RC_CONFIG_LOGLEVEL:
        snprintf(buf, len, "%s", rc_log_level_name(*(const enum rc_log_level *)field));
        break;
    case RC_CONFIG_LOGFORMAT:
        snprintf(buf, len, "%s", rc_log_format_name(*(const enum rc_log_format *)field));
        break;
    case RC_CONFIG_URLS:
    case RC_CONFIG_ORIGINS: {
        const struct rc_config_strv *sv = field;
        if (item < sv->n)
            snprintf(buf, len, "%s", sv->v[item]);
        break;
    }
    case RC_CONFIG_PHASES:
        if (item < cfg->phase_timeout_n) {
            char d[32];
            rc_config_format_duration(cfg->phase_timeout[item].ms, d, sizeof(d));
            snprintf(buf, len, "%s=%s", cfg->phase_timeout[item].phase, d);
        }
        break;
    }
}

static size_t value_count(const struct rc_config *cfg, const struct opt *o)
{
    if (o->pub.kind == RC_CONFIG_PHASES)
        return cfg->phase_timeout_n;
    if (o->pub.kind == RC_CONFIG_URLS || o->pub.kind == RC_CONFIG_ORIGINS)
        return ((const struct rc_config_strv *)((const char *)cfg + o->off))->n;
    return 1;
}

/* Writes text word-wrapped to lines of at most width columns (a longer word
 * stays whole), each line starting with prefix. */
static void write_wrapped(FILE *out, const char *prefix, const char *text, size_t width)
{
    size_t plen = strlen(prefix);
    const char *p = text;
    while (*p != '\0') {
        size_t room = width > plen + 20 ? width - plen : 20;
        size_t len = strlen(p);
        size_t cut = len;
        if (len > room) {
            cut = room;
            while (cut > 0 && p[cut] != ' ')
                cut--;
            if (cut == 0) { /* one long word: up to the next blank */
                cut = room;
                while (p[cut] != '\0' && p[cut] != ' ')
                    cut++;
            }
        }
        fprintf(out, "%s%.*s\n", prefix, (int)cut, p);
        p += cut;
        while (*p == ' ')
            p++;
    }
}

int rc_config_usage(FILE *out, const char *prog)
{
    if (prog == NULL)
        prog = "runcastd";
    fprintf(out,
            "Usage: %s [--name VALUE | --name=VALUE]...\n"
            "runcast broker: receives run events over nng, keeps one actor per run,\n"
            "guarantees one terminal event per run and fans events out to WebSocket\n"
            "subscribers.\n\n"
            "Sources, highest first: flags, environment (RUNCAST_<NAME>, dashes as\n"
            "underscores; repeatable options comma-separated), config file (--config\n"
            "FILE or RUNCAST_CONFIG), embedded defaults.  For a repeatable option the\n"
            "highest source that sets it replaces the lower ones; an empty value means\n"
            "none.  Durations: 250ms, 2s, 5m, 1h (a bare number is milliseconds).\n"
            "Sizes: 512, 64KiB, 4MiB, 1GiB (k, M, G are also 1024-based).\n\n"
            "  -h, --help      print this help and exit\n"
            "  -V, --version   print the version and exit\n"
            "  --print-config  load and check the configuration, print the effective\n"
            "                  values as a config file, and exit (2 if invalid)\n\n",
            prog);
    for (size_t i = 0; i < NOPTS; i++) {
        const struct rc_config_option *o = &opts[i].pub;
        const char *title = section_at(i);
        char left[64];
        if (title != NULL)
            fprintf(out, "%s%s:\n", i > 0 ? "\n" : "", title);
        snprintf(left, sizeof(left), "--%s %s", o->name, o->arg);
        fprintf(out, "  %-32s default: %s%s\n", left, o->def[0] != '\0' ? o->def : "(none)",
                o->repeatable ? " (repeatable)" : "");
        write_wrapped(out, "      ", o->help, 80);
        fprintf(out, "      env %s\n", o->env);
    }
    return ferror(out) ? RC_EIO : 0;
}

int rc_config_write_sample(FILE *out)
{
    fprintf(out, "# runcastd sample configuration: every option at its default.\n"
                 "# Syntax: `name = value`; `#` starts a comment; repeatable options may be\n"
                 "# given on several lines (an empty value means none).  Flags and RUNCAST_*\n"
                 "# environment variables override this file (see docs/CONFIG.md).\n"
                 "# Durations: 250ms, 2s, 5m, 1h.  Sizes: 512, 64KiB, 4MiB, 1GiB.\n");
    for (size_t i = 0; i < NOPTS; i++) {
        const struct rc_config_option *o = &opts[i].pub;
        const char *title = section_at(i);
        if (title != NULL)
            fprintf(out, "\n# ---- %s ----\n", title);
        fputc('\n', out);
        write_wrapped(out, "# ", o->help, 80);
        if (o->kind == RC_CONFIG_PATH)
            fprintf(out, "# config: --config FILE or RUNCAST_CONFIG only (not in a file)\n");
        else
            fprintf(out, "%s = %s\n", o->name, o->def);
    }
    return ferror(out) ? RC_EIO : 0;
}

int rc_config_dump(const struct rc_config *cfg, FILE *out)
{
    char buf[1024];
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *o = &opts[i];
        size_t n = value_count(cfg, o);
        if (o->pub.kind == RC_CONFIG_PATH) {
            /* not settable in a file: a comment, so a dump loads as a file */
            format_value(cfg, o, buf, sizeof(buf), 0);
            fprintf(out, "# %s = %s\n", o->pub.name, buf);
            continue;
        }
        if (o->pub.repeatable && n == 0) {
            fprintf(out, "%s =\n", o->pub.name);
            continue;
        }
        for (size_t k = 0; k < n; k++) {
            format_value(cfg, o, buf, sizeof(buf), k);
            fprintf(out, "%s = %s\n", o->pub.name, buf);
        }
    }
    return ferror(out) ? RC_EIO : 0;
}

/* ---- helpers for consumers ---- */

void rc_config_apply_logging(const struct rc_config *cfg, FILE *out)
{
    rc_log_init(out, cfg->log_level, cfg->log_format);
    rc_log_set_ratelimit_default(cfg->log_ratelimit > UINT32_MAX ? UINT32_MAX
                                                                 : (uint32_t)cfg->log_ratelimit);
}

uint64_t rc_config_phase_timeout_ms(const struct rc_config *cfg, const char *phase,
                                    size_t phase_len)
{
    for (size_t i = 0; phase != NULL && i < cfg->phase_timeout_n; i++) {
        const char *p = cfg->phase_timeout[i].phase;
        if (strlen(p) == phase_len && memcmp(p, phase, phase_len) == 0)
            return cfg->phase_timeout[i].ms;
    }
    return cfg->watchdog_ms;
}

uint32_t rc_config_workers(const struct rc_config *cfg)
{
    if (cfg->workers != 0)
        return (uint32_t)cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (uint32_t)n : 1;
}

/* The default policy: http(s)://localhost or http(s)://127.0.0.1, with an
 * optional :port. */
static bool origin_default_ok(const char *o, size_t len)
{
    size_t skip;
    if (len >= 7 && strncasecmp(o, "http://", 7) == 0)
        skip = 7;
    else if (len >= 8 && strncasecmp(o, "https://", 8) == 0)
        skip = 8;
    else
        return false;
    o += skip;
    len -= skip;
    static const char *const hosts[] = {"localhost", "127.0.0.1"};
    for (size_t i = 0; i < 2; i++) {
        size_t hl = strlen(hosts[i]);
        if (len < hl || strncasecmp(o, hosts[i], hl) != 0)
            continue;
        if (len == hl)
            return true;
        uint16_t port;
        if (o[hl] == ':' && parse_port(o + hl + 1, len - hl - 1, &port))
            return true;
    }
    return false;
}

bool rc_config_origin_allowed(const struct rc_config *cfg, const char *origin, size_t origin_len)
{
    if (origin == NULL)
        return true;
    if (cfg->allow_origin.n == 0)
        return origin_default_ok(origin, origin_len);
    for (size_t i = 0; i < cfg->allow_origin.n; i++) {
        const char *a = cfg->allow_origin.v[i];
        if (strcmp(a, "*") == 0)
            return true;
        if (strlen(a) == origin_len && strncasecmp(a, origin, origin_len) == 0)
            return true;
    }
    return false;
}
