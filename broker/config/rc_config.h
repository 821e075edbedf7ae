/*
 * rc_config: every option of runcastd, its default, and how it is loaded.
 *
 * Sources, highest precedence first:
 *   1. command-line flags   --name VALUE | --name=VALUE
 *   2. environment          RUNCAST_<NAME> (dashes as underscores, upper case);
 *                           repeatable options are comma-separated
 *   3. config file          --config FILE or RUNCAST_CONFIG; `name = value`
 *                           lines, `#` comments, repeatable names may repeat
 *   4. embedded defaults    (rc_config_init; no file is needed)
 * For a repeatable option the highest source that sets it replaces the lower
 * ones (values within one source accumulate).  An empty value for a
 * repeatable option sets it to the empty list.
 *
 * Durations are stored as uint64 milliseconds and parsed from "250ms", "2s",
 * "5m", "1h" (a bare number is milliseconds; "0" is zero).  Sizes are
 * uint64 bytes, parsed from "512", "64KiB", "4MiB", "1GiB" (k/K/KB = KiB,
 * M/MB = MiB, G/GB = GiB: always powers of 1024).
 *
 * The option table inside rc_config.c is the single source of truth: it
 * drives parsing, validation, --help, the environment names and the sample
 * config (deploy/runcast.conf is checked against it by tests/config).
 *
 * Threads: loading happens once, on the main thread, before anything starts;
 * afterwards the struct is read-only and shared by every thread without
 * locking (it must outlive them).  Only the log level changes at run time,
 * and that lives in rc_log, not here.
 */
#ifndef RC_CONFIG_H
#define RC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rc_log.h"

/* A list of strings (repeatable options). */
struct rc_config_strv {
    char **v; /* n entries, each rc_malloc'ed */
    size_t n;
};

/* One --phase-timeout PHASE=DURATION. */
struct rc_config_phase_timeout {
    char *phase; /* rc_malloc'ed */
    uint64_t ms;
};

struct rc_config {
    /* ---- general ---- */
    char *config_path;             /* --config: file read, or NULL */
    enum rc_log_level log_level;   /* --log-level: info */
    enum rc_log_format log_format; /* --log-format: text */
    uint64_t log_ratelimit;        /* --log-ratelimit: 10 lines/s per call site; 0 = off */
    uint64_t workers;              /* --workers: 0 = number of online CPUs */
    uint64_t actor_batch;          /* --actor-batch: 64 messages per actor turn */
    uint64_t epoch;                /* --epoch: 0 = derive a fresh one at start */
    uint64_t shutdown_timeout_ms;  /* --shutdown-timeout: 5s */
    uint64_t restart_intensity;    /* --restart-intensity: 5 restarts ... */
    uint64_t restart_period_ms;    /* --restart-period: ... within 10s, then exit */

    /* ---- ingress ---- */
    struct rc_config_strv ingest;         /* --ingest: [tcp://127.0.0.1:7450] (PULL) */
    struct rc_config_strv ingest_ack;     /* --ingest-ack: [tcp://127.0.0.1:7451] (REP) */
    uint64_t ingest_inflight;             /* --ingest-inflight: 8 receives per socket */
    uint64_t ingest_inline_backlog;       /* --ingest-inline-backlog: 4096 messages */
    uint64_t ingest_stream_reader;        /* --ingest-stream-reader: 1 (rc_sppull) */
    uint64_t ingest_handshake_timeout_ms; /* --ingest-handshake-timeout: 10 s */

    /* ---- limits on input (mirror struct rc_proto_limits) ---- */
    uint64_t max_runs;           /* --max-runs: 1000000 */
    uint64_t max_event_bytes;    /* --max-event-bytes: 64KiB */
    uint64_t max_batch_events;   /* --max-batch-events: 1024 */
    uint64_t max_batch_bytes;    /* --max-batch-bytes: 4MiB */
    uint64_t max_id_bytes;       /* --max-id-bytes: 128 */
    uint64_t max_phase_bytes;    /* --max-phase-bytes: 64 */
    uint64_t max_data_depth;     /* --max-data-depth: 32 */
    uint64_t max_start_timeouts; /* --max-start-timeouts: 32 entries in start.timeouts */
    uint64_t run_mailbox_limit;  /* --run-mailbox-limit: 4096 messages, then `overloaded` */

    /* ---- run state ---- */
    uint64_t history_max_events; /* --history-max-events: 10000 */
    uint64_t history_max_bytes;  /* --history-max-bytes: 4MiB */
    uint64_t idempotency_window; /* --idempotency-window: 10000 ids per run (FIFO) */
    uint64_t snapshot_text_max;  /* --snapshot-text-max: 256KiB (thinking/output) */
    uint64_t retention_ms;       /* --retention: 5m */
    uint64_t tombstone_ttl_ms;   /* --tombstone-ttl: 1h */

    /* ---- supervisor ---- */
    uint64_t watchdog_ms;                          /* --watchdog: 120s */
    struct rc_config_phase_timeout *phase_timeout; /* --phase-timeout: [] */
    size_t phase_timeout_n;
    uint64_t max_watchdog_ms;    /* --max-watchdog: 1h (caps start.timeouts) */
    uint64_t run_deadline_ms;    /* --run-deadline: 1h; 0 disables */
    uint64_t publisher_grace_ms; /* --publisher-grace: 15s; 0 disables */
    uint64_t watchdog_tick_ms;   /* --watchdog-tick: 10ms timer wheel resolution */
    uint64_t watchdog_threads;   /* --watchdog-threads: 0 = 2 when 2+ CPUs are allowed */

    /* ---- edge ---- */
    char *http;                   /* --http: "127.0.0.1:7480" as given */
    char *http_host;              /* parsed host ("::1" without brackets) */
    uint16_t http_port;           /* parsed port (0: any free port) */
    uint64_t ws_queue_max;        /* --ws-queue-max: 4MiB per connection, then 4008 */
    uint64_t ws_heartbeat_ms;     /* --ws-heartbeat: 15s; 0 disables */
    uint64_t ws_write_timeout_ms; /* --ws-write-timeout: 10s */
    uint64_t ws_max_conns;        /* --ws-max-conns: 10000, then 4429 */
    uint64_t ws_max_subs;         /* --ws-max-subs: 256 per connection */
    uint64_t ws_max_frame;        /* --ws-max-frame: 64KiB client frame */
    uint64_t ws_abuse_limit;      /* --ws-abuse-limit: 10 invalid client messages, then 4400 */
    uint64_t http_runs_limit;     /* --http-runs-limit: 1000 entries max in GET /runs */
    struct rc_config_strv allow_origin; /* --allow-origin: [] = default policy */

    /* ---- set by rc_config_load, for main ---- */
    bool show_help;    /* --help / -h was given: print rc_config_usage, exit 0 */
    bool show_version; /* --version / -V was given: print the version, exit 0 */
    bool show_config;  /* --print-config: the load succeeded; print rc_config_dump, exit 0 */
};

/* Fills cfg with the embedded defaults (allocates the default lists; pair
 * with rc_config_fini).  Returns 0 or RC_ENOMEM. */
int rc_config_init(struct rc_config *cfg);
/* Frees what cfg holds; safe on a zeroed or already finalised struct. */
void rc_config_fini(struct rc_config *cfg);

/*
 * Loads the three sources onto cfg (which must hold rc_config_init's
 * defaults) and validates the result.  argv[0] is the program name; envp is a
 * NULL-terminated "NAME=VALUE" array (NULL: the process environment).
 * On error returns RC_EINVAL (or RC_ENOMEM) and writes into errbuf one line
 * naming the source, e.g.
 *   "flag --watchdog: bad duration '12x' (use ms, s, m or h, e.g. 250ms, 2s)"
 *   "environment RUNCAST_WORKER: unknown option 'worker'"
 *   "/etc/runcast.conf:12: unknown option 'histroy-max-events'"
 * --help / --version set cfg->show_help / show_version and return 0 without
 * reading the file or the environment; --print-config sets show_config after
 * a full load (an invalid configuration still returns the error).
 *
 * In main:
 *     if (rc_config_load(&cfg, argc, argv, NULL, err, sizeof(err)) != 0)
 *         { fprintf(stderr, "runcastd: %s\n", err); return 2; }
 *     if (cfg.show_help) { rc_config_usage(stdout, "runcastd"); return 0; }
 *     if (cfg.show_version) { puts("runcastd " RUNCAST_VERSION); return 0; }
 *     if (cfg.show_config) { rc_config_dump(&cfg, stdout); return 0; }
 *     rc_config_apply_logging(&cfg, NULL);
 *     rc_log_install_signals();
 */
int rc_config_load(struct rc_config *cfg, int argc, char **argv, char **envp, char *errbuf,
                   size_t errlen);

/* Sets one option by name, as if from a source called `source` (used for
 * messages only).  Repeatable options append.  Does not run the cross-option
 * checks of rc_config_validate. */
int rc_config_set(struct rc_config *cfg, const char *name, const char *value, const char *source,
                  char *errbuf, size_t errlen);

/* Cross-option checks (run by rc_config_load), e.g. max-batch-bytes >=
 * max-event-bytes, watchdog <= max-watchdog. */
int rc_config_validate(const struct rc_config *cfg, char *errbuf, size_t errlen);

/* "250ms" -> 250, "2s" -> 2000, "5m", "1h", "1500" (ms).  Also "1.5s".
 * RC_EINVAL on anything else, overflow included. */
int rc_config_parse_duration(const char *s, uint64_t *ms);
/* "4096", "64KiB", "4MiB", "1GiB", "64k", "4M", "1G", "4MB".  RC_EINVAL on
 * anything else, overflow included. */
int rc_config_parse_size(const char *s, uint64_t *bytes);
/* Formats back the way --help shows values: "120s", "5m", "250ms", "4MiB". */
void rc_config_format_duration(uint64_t ms, char *buf, size_t len);
void rc_config_format_size(uint64_t bytes, char *buf, size_t len);

/* --help text: usage line, the precedence rules, then every option with its
 * argument, default, environment variable and one-line description. */
int rc_config_usage(FILE *out, const char *prog);
/* The sample config (what deploy/runcast.conf holds): every option commented
 * with its reason, set to its default. */
int rc_config_write_sample(FILE *out);
/* The effective configuration, one "name = value" line per option (for the
 * startup log at debug level and for tests). */
int rc_config_dump(const struct rc_config *cfg, FILE *out);

/* ---- The option table, read-only (tests and docs iterate it) ---- */

enum rc_config_kind {
    RC_CONFIG_STRING,
    RC_CONFIG_COUNT,    /* unsigned integer */
    RC_CONFIG_SIZE,     /* bytes */
    RC_CONFIG_DURATION, /* milliseconds */
    RC_CONFIG_LOGLEVEL,
    RC_CONFIG_LOGFORMAT,
    RC_CONFIG_URLS,     /* repeatable nng URLs */
    RC_CONFIG_ORIGINS,  /* repeatable origins */
    RC_CONFIG_PHASES,   /* repeatable PHASE=DURATION */
    RC_CONFIG_HOSTPORT, /* HOST:PORT */
    RC_CONFIG_PATH,     /* --config */
};

struct rc_config_option {
    const char *name; /* "history-max-events" */
    const char *env;  /* "RUNCAST_HISTORY_MAX_EVENTS" */
    const char *arg;  /* "N", "DURATION", "SIZE", "URL", ... */
    const char *def;  /* the default as text ("10000", "5m", "" for none) */
    const char *help; /* one line: what it does and why the limit */
    enum rc_config_kind kind;
    bool repeatable;
    uint64_t min, max; /* numeric range (count/size/duration) */
};

size_t rc_config_option_count(void);
const struct rc_config_option *rc_config_option_at(size_t i);
const struct rc_config_option *rc_config_option_find(const char *name);

/* ---- Helpers for the modules that consume the configuration ---- */

/* Sets up rc_log from cfg: output (NULL: stderr), --log-level (also the level
 * SIGHUP restores), --log-format and --log-ratelimit.  Signal handlers are
 * separate (rc_log_install_signals). */
void rc_config_apply_logging(const struct rc_config *cfg, FILE *out);

/* The idle timeout of a phase: its --phase-timeout, else --watchdog. */
uint64_t rc_config_phase_timeout_ms(const struct rc_config *cfg, const char *phase,
                                    size_t phase_len);
/* Workers to start: --workers, or the number of online CPUs when 0. */
uint32_t rc_config_workers(const struct rc_config *cfg);
/* Whether a browser Origin header may connect.  origin NULL (no header) is
 * allowed.  With no --allow-origin: http(s)://localhost and
 * http(s)://127.0.0.1 on any port (or none).  Otherwise an exact match of
 * one entry (scheme://host[:port], case-insensitive), or the entry "*". */
bool rc_config_origin_allowed(const struct rc_config *cfg, const char *origin, size_t origin_len);

#endif
