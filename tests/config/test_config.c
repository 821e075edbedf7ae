/*
 * tests/config: rc_config, the option table, the three sources and their
 * precedence, every parse error path, --help and the sample config.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rc_config.h"
#include "rc_error.h"

/* ---- helpers ---- */

#define ERRLEN 512

/* Writes text to a fresh temporary file and returns its path.  Paths live in
 * a ring of slots: a slot's old file is removed when the slot is reused and
 * the rest at exit (each test runs in its own process). */
#define TMP_SLOTS 16
static char tmp_paths[TMP_SLOTS][64];
static int tmp_next;

static void tmp_cleanup(void)
{
    for (int i = 0; i < TMP_SLOTS; i++)
        if (tmp_paths[i][0] != '\0')
            unlink(tmp_paths[i]);
}

static const char *tmpfile_with(const char *text)
{
    if (tmp_next == 0)
        atexit(tmp_cleanup);
    char *path = tmp_paths[tmp_next++ % TMP_SLOTS];
    if (path[0] != '\0')
        unlink(path);
    snprintf(path, 64, "/tmp/rc_config_test_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    size_t len = strlen(text);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

/* Loads with argv (NULL-terminated list after argv0) and envp. */
static int load(struct rc_config *cfg, char **argv, char **envp, char *err)
{
    int argc = 0;
    while (argv[argc] != NULL)
        argc++;
    cr_assert_eq(rc_config_init(cfg), 0);
    return rc_config_load(cfg, argc, argv, envp, err, ERRLEN);
}

static char *empty_env[] = {NULL};

static char *dump(const struct rc_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(rc_config_dump(cfg, f), 0);
    fclose(f);
    return buf;
}

/* ---- the table and defaults ---- */

Test(config, defaults)
{
    struct rc_config c;
    cr_assert_eq(rc_config_init(&c), 0);
    cr_assert_null(c.config_path);
    cr_assert_eq(c.log_level, RC_LOG_INFO);
    cr_assert_eq(c.log_format, RC_LOG_TEXT);
    cr_assert_eq(c.workers, 0);
    cr_assert_eq(c.ingest.n, 1);
    cr_assert_str_eq(c.ingest.v[0], "tcp://127.0.0.1:7450");
    cr_assert_eq(c.ingest_ack.n, 1);
    cr_assert_str_eq(c.ingest_ack.v[0], "tcp://127.0.0.1:7451");
    cr_assert_eq(c.ingest_inflight, 8);
    cr_assert_eq(c.ingest_inline_backlog, 4096);
    cr_assert_eq(c.max_runs, 1000000);
    cr_assert_eq(c.max_event_bytes, 65536);
    cr_assert_eq(c.max_batch_events, 1024);
    cr_assert_eq(c.max_batch_bytes, 4 * 1024 * 1024);
    cr_assert_eq(c.max_id_bytes, 128);
    cr_assert_eq(c.max_phase_bytes, 64);
    cr_assert_eq(c.max_data_depth, 32);
    cr_assert_eq(c.max_start_timeouts, 32);
    cr_assert_eq(c.run_mailbox_limit, 4096);
    cr_assert_eq(c.history_max_events, 10000);
    cr_assert_eq(c.history_max_bytes, 4 * 1024 * 1024);
    cr_assert_eq(c.snapshot_text_max, 256 * 1024);
    cr_assert_eq(c.retention_ms, 5 * 60 * 1000);
    cr_assert_eq(c.tombstone_ttl_ms, 3600 * 1000);
    cr_assert_eq(c.watchdog_ms, 120 * 1000);
    cr_assert_eq(c.phase_timeout_n, 0);
    cr_assert_eq(c.max_watchdog_ms, 3600 * 1000);
    cr_assert_eq(c.run_deadline_ms, 3600 * 1000);
    cr_assert_eq(c.publisher_grace_ms, 15 * 1000);
    cr_assert_eq(c.watchdog_tick_ms, 10);
    cr_assert_str_eq(c.http, "127.0.0.1:7480");
    cr_assert_str_eq(c.http_host, "127.0.0.1");
    cr_assert_eq(c.http_port, 7480);
    cr_assert_eq(c.ws_queue_max, 4 * 1024 * 1024);
    cr_assert_eq(c.ws_heartbeat_ms, 15000);
    cr_assert_eq(c.ws_write_timeout_ms, 10000);
    cr_assert_eq(c.ws_max_conns, 10000);
    cr_assert_eq(c.ws_max_subs, 256);
    cr_assert_eq(c.ws_max_frame, 65536);
    cr_assert_eq(c.ws_abuse_limit, 10);
    cr_assert_eq(c.http_runs_limit, 1000);
    cr_assert_eq(c.allow_origin.n, 0);
    cr_assert_eq(c.shutdown_timeout_ms, 5000);
    cr_assert_eq(c.epoch, 0);
    cr_assert_eq(c.restart_intensity, 5);
    cr_assert_eq(c.restart_period_ms, 10000);
    cr_assert_eq(c.log_ratelimit, 10);
    cr_assert_eq(c.actor_batch, 64);
    cr_assert_eq(rc_config_validate(&c, NULL, 0), 0);
    rc_config_fini(&c);
    rc_config_fini(&c); /* twice is harmless */
}

Test(config, table_is_consistent)
{
    size_t n = rc_config_option_count();
    cr_assert_gt(n, 40);
    cr_assert_null(rc_config_option_at(n));
    for (size_t i = 0; i < n; i++) {
        const struct rc_config_option *o = rc_config_option_at(i);
        /* the environment name is derived from the option name */
        char env[96] = "RUNCAST_";
        size_t k = 8;
        for (const char *p = o->name; *p != '\0'; p++)
            env[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        env[k] = '\0';
        cr_assert_str_eq(o->env, env, "option %s", o->name);
        cr_assert_not_null(o->help);
        cr_assert_gt(strlen(o->help), 10, "option %s has no description", o->name);
        cr_assert_eq(rc_config_option_find(o->name), o);
        /* no name repeats */
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(rc_config_option_at(j)->name, o->name);
        /* the default text parses, is in range, and formats to the same value */
        char buf[64];
        uint64_t v;
        if (o->kind == RC_CONFIG_DURATION) {
            cr_assert_eq(rc_config_parse_duration(o->def, &v), 0, "%s", o->name);
            rc_config_format_duration(v, buf, sizeof(buf));
            uint64_t back;
            cr_assert_eq(rc_config_parse_duration(buf, &back), 0);
            cr_assert_eq(back, v, "option %s", o->name);
            cr_assert(v >= o->min && v <= o->max, "default of %s out of range", o->name);
        } else if (o->kind == RC_CONFIG_SIZE) {
            cr_assert_eq(rc_config_parse_size(o->def, &v), 0, "%s", o->name);
            rc_config_format_size(v, buf, sizeof(buf));
            cr_assert_str_eq(buf, o->def, "option %s", o->name);
            cr_assert(v >= o->min && v <= o->max, "default of %s out of range", o->name);
        } else if (o->kind == RC_CONFIG_COUNT) {
            v = strtoull(o->def, NULL, 10);
            cr_assert(v >= o->min && v <= o->max, "default of %s out of range", o->name);
        }
    }
    cr_assert_null(rc_config_option_find("nope"));
}

/* ---- durations and sizes ---- */

Test(config, parse_duration)
{
    static const struct {
        const char *s;
        uint64_t ms;
    } ok[] = {
        {"0", 0},           {"250", 250},      {"250ms", 250},         {"2s", 2000},
        {"5m", 300000},     {"1h", 3600000},   {"1.5s", 1500},         {"0.25s", 250},
        {"1h30m", 5400000}, {"1m 30s", 90000}, {" 10 s ", 10000},      {"0ms", 0},
        {"120s", 120000},   {"1.5m", 90000},   {"2h0m1s5ms", 7201005},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 12345;
        cr_assert_eq(rc_config_parse_duration(ok[i].s, &v), 0, "'%s'", ok[i].s);
        cr_assert_eq(v, ok[i].ms, "'%s' -> %llu", ok[i].s, (unsigned long long)v);
    }
    static const char *const bad[] = {
        "",
        " ",
        "s",
        "12x",
        "-1s",
        "1.5",
        "1.0005s",
        "1.s",
        ".5s",
        "1d",
        "1sec",
        "1s2",
        "1 2s",
        "ms",
        "0x10",
        "1e3ms",
        "2 h m",
        "99999999999999999999",
        "9999999999999999999h",
        "1,5s",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 7;
        cr_assert_eq(rc_config_parse_duration(bad[i], &v), RC_EINVAL, "'%s' accepted", bad[i]);
        cr_assert_eq(v, 7, "'%s' wrote the output on failure", bad[i]);
    }
    cr_assert_eq(rc_config_parse_duration(NULL, &(uint64_t){0}), RC_EINVAL);
}

Test(config, parse_size)
{
    static const struct {
        const char *s;
        uint64_t b;
    } ok[] = {
        {"0", 0},           {"512", 512},
        {"64KiB", 65536},   {"64k", 65536},
        {"64K", 65536},     {"64KB", 65536},
        {"4MiB", 4194304},  {"4M", 4194304},
        {"4mb", 4194304},   {"1GiB", 1073741824},
        {"1G", 1073741824}, {"2 KiB", 2048},
        {"100B", 100},      {"1TiB", 1099511627776ull},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 1;
        cr_assert_eq(rc_config_parse_size(ok[i].s, &v), 0, "'%s'", ok[i].s);
        cr_assert_eq(v, ok[i].b, "'%s'", ok[i].s);
    }
    static const char *const bad[] = {"",     "KiB",  "-1",  "1.5MiB",         "12x",  "4 MiB x",
                                      "1PiB", "0x10", "1e3", "20000000000GiB", "4MiBs"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 7;
        cr_assert_eq(rc_config_parse_size(bad[i], &v), RC_EINVAL, "'%s' accepted", bad[i]);
        cr_assert_eq(v, 7);
    }
}

Test(config, format_values)
{
    char b[32];
    rc_config_format_duration(0, b, sizeof(b));
    cr_assert_str_eq(b, "0");
    rc_config_format_duration(1500, b, sizeof(b));
    cr_assert_str_eq(b, "1500ms");
    rc_config_format_duration(90000, b, sizeof(b));
    cr_assert_str_eq(b, "90s");
    rc_config_format_duration(7200000, b, sizeof(b));
    cr_assert_str_eq(b, "2h");
    rc_config_format_size(65536, b, sizeof(b));
    cr_assert_str_eq(b, "64KiB");
    rc_config_format_size(1000, b, sizeof(b));
    cr_assert_str_eq(b, "1000");
    rc_config_format_size(3ull << 30, b, sizeof(b));
    cr_assert_str_eq(b, "3GiB");
}

/* ---- precedence ---- */

/* Every combination of flag / env / file setting history-max-events (to 1,
 * 2, 3 respectively); the highest source present wins, default otherwise. */
Test(config, precedence_all_combinations)
{
    const char *file = tmpfile_with("# a file\nhistory-max-events = 3\n");
    char cfgflag[128];
    snprintf(cfgflag, sizeof(cfgflag), "--config=%s", file);
    for (int mask = 0; mask < 8; mask++) {
        bool flag = mask & 1, env = mask & 2, fil = mask & 4;
        char *argv[6] = {"runcastd"};
        int argc = 1;
        if (fil)
            argv[argc++] = cfgflag;
        if (flag) {
            argv[argc++] = "--history-max-events";
            argv[argc++] = "1";
        }
        argv[argc] = NULL;
        char *envp[3] = {NULL};
        if (env)
            envp[0] = "RUNCAST_HISTORY_MAX_EVENTS=2";
        struct rc_config c;
        char err[ERRLEN];
        cr_assert_eq(load(&c, argv, envp, err), 0, "mask %d: %s", mask, err);
        uint64_t want = flag ? 1 : env ? 2 : fil ? 3 : 10000;
        cr_assert_eq(c.history_max_events, want, "flag=%d env=%d file=%d: got %llu", flag, env, fil,
                     (unsigned long long)c.history_max_events);
        if (fil)
            cr_assert_str_eq(c.config_path, file);
        else
            cr_assert_null(c.config_path);
        rc_config_fini(&c);
    }
}

/* The config file named by RUNCAST_CONFIG; --config beats it. */
Test(config, config_path_sources)
{
    const char *f1 = tmpfile_with("watchdog = 7s\n");
    const char *f2 = tmpfile_with("watchdog = 9s\n");
    char envc[128], flagc[128];
    snprintf(envc, sizeof(envc), "RUNCAST_CONFIG=%s", f1);
    snprintf(flagc, sizeof(flagc), "--config=%s", f2);
    struct rc_config c;
    char err[ERRLEN];
    char *envp[] = {envc, NULL};
    char *a1[] = {"runcastd", NULL};
    cr_assert_eq(load(&c, a1, envp, err), 0, "%s", err);
    cr_assert_eq(c.watchdog_ms, 7000);
    cr_assert_str_eq(c.config_path, f1);
    rc_config_fini(&c);
    char *a2[] = {"runcastd", flagc, NULL};
    cr_assert_eq(load(&c, a2, envp, err), 0, "%s", err);
    cr_assert_eq(c.watchdog_ms, 9000);
    cr_assert_str_eq(c.config_path, f2);
    rc_config_fini(&c);
}

/* Flags given twice: the last wins (non-repeatable); --name=value and
 * --name value both work. */
Test(config, flag_forms)
{
    struct rc_config c;
    char err[ERRLEN];
    char *argv[] = {
        "runcastd",          "--watchdog=1s", "--watchdog", "2s",      "--log-level", "debug",
        "--log-format=json", "--http",        "[::1]:0",    "--epoch", "42",          NULL};
    cr_assert_eq(load(&c, argv, empty_env, err), 0, "%s", err);
    cr_assert_eq(c.watchdog_ms, 2000);
    cr_assert_eq(c.log_level, RC_LOG_DEBUG);
    cr_assert_eq(c.log_format, RC_LOG_JSON);
    cr_assert_str_eq(c.http, "[::1]:0");
    cr_assert_str_eq(c.http_host, "::1");
    cr_assert_eq(c.http_port, 0);
    cr_assert_eq(c.epoch, 42);
    rc_config_fini(&c);
}

static void assert_list(const struct rc_config_strv *sv, const char *const *want, size_t n)
{
    cr_assert_eq(sv->n, n, "list has %zu entries, want %zu", sv->n, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(sv->v[i], want[i]);
}

/* A repeatable option: values accumulate within a source; the highest source
 * that sets it replaces the lower ones. */
Test(config, repeatable_replace_per_source)
{
    const char *file = tmpfile_with("ingest = tcp://127.0.0.1:1001\n"
                                    "ingest = tcp://127.0.0.1:1002\n"
                                    "phase-timeout = plan=1s\n"
                                    "phase-timeout = execute=2s\n");
    char cf[128];
    snprintf(cf, sizeof(cf), "--config=%s", file);
    struct rc_config c;
    char err[ERRLEN];

    /* file only */
    char *a1[] = {"runcastd", cf, NULL};
    cr_assert_eq(load(&c, a1, empty_env, err), 0, "%s", err);
    assert_list(&c.ingest, (const char *const[]){"tcp://127.0.0.1:1001", "tcp://127.0.0.1:1002"},
                2);
    cr_assert_eq(c.phase_timeout_n, 2);
    cr_assert_eq(rc_config_phase_timeout_ms(&c, "plan", 4), 1000);
    cr_assert_eq(rc_config_phase_timeout_ms(&c, "execute", 7), 2000);
    cr_assert_eq(rc_config_phase_timeout_ms(&c, "other", 5), 120000);
    /* ingest-ack untouched: still the default */
    assert_list(&c.ingest_ack, (const char *const[]){"tcp://127.0.0.1:7451"}, 1);
    rc_config_fini(&c);

    /* file + env: env replaces */
    char *envp[] = {"RUNCAST_INGEST=tcp://127.0.0.1:2001, ipc:///tmp/rc.sock",
                    "RUNCAST_PHASE_TIMEOUT=verify=3s", NULL};
    cr_assert_eq(load(&c, a1, envp, err), 0, "%s", err);
    assert_list(&c.ingest, (const char *const[]){"tcp://127.0.0.1:2001", "ipc:///tmp/rc.sock"}, 2);
    cr_assert_eq(c.phase_timeout_n, 1);
    cr_assert_eq(rc_config_phase_timeout_ms(&c, "verify", 6), 3000);
    cr_assert_eq(rc_config_phase_timeout_ms(&c, "plan", 4), 120000);
    rc_config_fini(&c);

    /* file + env + flags: flags replace, and accumulate among themselves */
    char *a2[] = {"runcastd", cf, "--ingest", "tcp://127.0.0.1:3001", "--ingest=tcp://[::1]:3002",
                  NULL};
    cr_assert_eq(load(&c, a2, envp, err), 0, "%s", err);
    assert_list(&c.ingest, (const char *const[]){"tcp://127.0.0.1:3001", "tcp://[::1]:3002"}, 2);
    /* phase-timeout comes from env: flags did not set it */
    cr_assert_eq(c.phase_timeout_n, 1);
    rc_config_fini(&c);

    /* file + flags */
    char *a3[] = {"runcastd", cf, "--phase-timeout", "plan=5s", NULL};
    cr_assert_eq(load(&c, a3, empty_env, err), 0, "%s", err);
    cr_assert_eq(c.phase_timeout_n, 1);
    cr_assert_eq(rc_config_phase_timeout_ms(&c, "plan", 4), 5000);
    assert_list(&c.ingest, (const char *const[]){"tcp://127.0.0.1:1001", "tcp://127.0.0.1:1002"},
                2);
    rc_config_fini(&c);

    /* defaults replaced by a single source, not appended to */
    char *a4[] = {"runcastd", "--ingest-ack", "tcp://127.0.0.1:4001", NULL};
    cr_assert_eq(load(&c, a4, empty_env, err), 0, "%s", err);
    assert_list(&c.ingest_ack, (const char *const[]){"tcp://127.0.0.1:4001"}, 1);
    rc_config_fini(&c);
}

/* An empty value sets a repeatable option to none. */
Test(config, repeatable_empty_clears)
{
    struct rc_config c;
    char err[ERRLEN];
    char *envp[] = {"RUNCAST_INGEST_ACK=", NULL};
    char *a1[] = {"runcastd", NULL};
    cr_assert_eq(load(&c, a1, envp, err), 0, "%s", err);
    cr_assert_eq(c.ingest_ack.n, 0);
    cr_assert_eq(c.ingest.n, 1);
    rc_config_fini(&c);

    /* both empty: refused, the broker would have nothing to listen on */
    char *a2[] = {"runcastd", "--ingest=", NULL};
    cr_assert_eq(load(&c, a2, envp, err), RC_EINVAL);
    cr_assert(strstr(err, "no ingest socket") != NULL, "%s", err);
    rc_config_fini(&c);

    /* phase-timeout repeated for one phase in one source: the last wins */
    char *a3[] = {"runcastd", "--phase-timeout", "plan=1s", "--phase-timeout", "plan=2s", NULL};
    cr_assert_eq(load(&c, a3, empty_env, err), 0, "%s", err);
    cr_assert_eq(c.phase_timeout_n, 1);
    cr_assert_eq(c.phase_timeout[0].ms, 2000);
    rc_config_fini(&c);
}

/* File syntax: comments, blank lines, CRLF, spaces, quotes, inline comments. */
Test(config, file_syntax)
{
    const char *file = tmpfile_with("# comment\n"
                                    "\n"
                                    "   # indented comment\n"
                                    "watchdog=30s\r\n"
                                    "  retention   =   1m   # inline comment\n"
                                    "allow-origin = \"https://app.example.com:8443\" # quoted\n"
                                    "allow-origin = http://x.example#notacomment\n"
                                    "log-level = \"warn\"\n"
                                    "max-event-bytes = 32 KiB");
    char cf[128];
    snprintf(cf, sizeof(cf), "--config=%s", file);
    struct rc_config c;
    char err[ERRLEN];
    char *argv[] = {"runcastd", cf, NULL};
    int rv = load(&c, argv, empty_env, err);
    /* '#' glued to a value is part of it, and an origin has no fragment */
    cr_assert_eq(rv, RC_EINVAL);
    cr_assert(strstr(err, ":7: allow-origin: bad origin 'http://x.example#notacomment'") != NULL,
              "%s", err);
    rc_config_fini(&c);

    file = tmpfile_with("watchdog=30s\r\n"
                        "  retention   =   1m   # inline comment\n"
                        "allow-origin = \"https://app.example.com:8443\" # quoted\n"
                        "log-level = \"warn\"\n"
                        "max-event-bytes = 32 KiB");
    snprintf(cf, sizeof(cf), "--config=%s", file);
    cr_assert_eq(load(&c, argv, empty_env, err), 0, "%s", err);
    cr_assert_eq(c.watchdog_ms, 30000);
    cr_assert_eq(c.retention_ms, 60000);
    assert_list(&c.allow_origin, (const char *const[]){"https://app.example.com:8443"}, 1);
    cr_assert_eq(c.log_level, RC_LOG_WARN);
    cr_assert_eq(c.max_event_bytes, 32768);
    rc_config_fini(&c);
}

/* ---- errors: each names its source ---- */

struct errcase {
    const char *argv[6];
    const char *env[3];
    const char *file; /* contents, loaded with --config */
    const char *want; /* substring of the message ("@" = the file's path) */
};

static void check_error(const struct errcase *e)
{
    char *argv[8] = {"runcastd"};
    int argc = 1;
    char cf[128];
    const char *path = NULL;
    if (e->file != NULL) {
        path = tmpfile_with(e->file);
        snprintf(cf, sizeof(cf), "--config=%s", path);
        argv[argc++] = cf;
    }
    for (int i = 0; e->argv[i] != NULL; i++)
        argv[argc++] = (char *)e->argv[i];
    argv[argc] = NULL;
    char *envp[4] = {NULL};
    for (int i = 0; e->env[i] != NULL; i++)
        envp[i] = (char *)e->env[i];
    struct rc_config c;
    char err[ERRLEN] = "";
    int rv = load(&c, argv, envp, err);
    char want[256];
    if (e->want[0] == '@') {
        snprintf(want, sizeof(want), "%s%s", path, e->want + 1);
    } else {
        snprintf(want, sizeof(want), "%s", e->want);
    }
    cr_assert_eq(rv, RC_EINVAL, "accepted; expected error '%s'", want);
    cr_assert(strstr(err, want) != NULL, "message '%s' lacks '%s'", err, want);
    cr_assert(strchr(err, '\n') == NULL, "message is not one line: %s", err);
    rc_config_fini(&c);
}

Test(config, errors_bad_values_per_source)
{
    static const struct errcase cases[] = {
        /* bad duration in each source */
        {{"--watchdog", "12x"},
         {NULL},
         NULL,
         "flag --watchdog: watchdog: bad duration '12x' (use ms, s, m or h"},
        {{NULL},
         {"RUNCAST_WATCHDOG=1.5"},
         NULL,
         "environment RUNCAST_WATCHDOG: watchdog: bad duration '1.5'"},
        {{NULL}, {NULL}, "\n\nwatchdog = soon\n", "@:3: watchdog: bad duration 'soon'"},
        /* bad size in each source */
        {{"--max-event-bytes=64QiB"},
         {NULL},
         NULL,
         "flag --max-event-bytes: max-event-bytes: bad size '64QiB'"},
        {{NULL},
         {"RUNCAST_HISTORY_MAX_BYTES=lots"},
         NULL,
         "environment RUNCAST_HISTORY_MAX_BYTES: history-max-bytes: bad size 'lots'"},
        {{NULL}, {NULL}, "ws-queue-max = -1\n", "@:1: ws-queue-max: bad size '-1'"},
        /* bad count */
        {{"--workers", "two"}, {NULL}, NULL, "flag --workers: workers: bad number 'two'"},
        {{NULL}, {"RUNCAST_MAX_RUNS=1e6"}, NULL, "RUNCAST_MAX_RUNS: max-runs: bad number '1e6'"},
        /* out of range */
        {{"--workers", "5000"},
         {NULL},
         NULL,
         "flag --workers: workers '5000' out of range (0 to 1024)"},
        {{"--max-runs=0"}, {NULL}, NULL, "max-runs '0' out of range (1 to 100000000)"},
        {{NULL},
         {"RUNCAST_WATCHDOG_TICK=2s"},
         NULL,
         "environment RUNCAST_WATCHDOG_TICK: watchdog-tick '2s' out of range (1ms to 1s)"},
        {{NULL}, {NULL}, "watchdog = 0\n", "@:1: watchdog '0' out of range (1ms to 720h)"},
        {{"--watchdog-threads", "5"},
         {NULL},
         NULL,
         "flag --watchdog-threads: watchdog-threads '5' out of range (0 to 4)"},
        {{"--max-event-bytes", "8"},
         {NULL},
         NULL,
         "max-event-bytes '8' out of range (64 to 64MiB)"},
        {{"--epoch", "9007199254740992"}, {NULL}, NULL, "epoch '9007199254740992' out of range"},
        {{"--phase-timeout", "plan=0"}, {NULL}, NULL, "phase-timeout 'plan=0' out of range"},
        /* other kinds */
        {{"--log-level", "verbose"},
         {NULL},
         NULL,
         "flag --log-level: log-level: bad log level 'verbose' (debug, info, warn, error or "
         "critical)"},
        {{NULL}, {"RUNCAST_LOG_FORMAT=xml"}, NULL, "log-format: bad log format 'xml'"},
        {{"--ingest", "http://127.0.0.1:1"},
         {NULL},
         NULL,
         "flag --ingest: ingest: bad nng URL 'http://127.0.0.1:1': unsupported scheme"},
        {{"--ingest", "tcp://127.0.0.1"},
         {NULL},
         NULL,
         "bad nng URL 'tcp://127.0.0.1': missing :PORT"},
        {{"--ingest", "tcp://127.0.0.1:70000"}, {NULL}, NULL, "port must be a number"},
        {{"--ingest", "ipc://"}, {NULL}, NULL, "empty path"},
        {{NULL},
         {"RUNCAST_INGEST_ACK=tcp://127.0.0.1:1,,tcp://127.0.0.1:2"},
         NULL,
         "environment RUNCAST_INGEST_ACK: empty item"},
        {{"--http", "7480"}, {NULL}, NULL, "flag --http: http: bad address '7480': missing :PORT"},
        {{"--http", ":7480"}, {NULL}, NULL, "empty host"},
        {{"--http", "[::1:7480"}, {NULL}, NULL, "unterminated"},
        {{"--allow-origin", "localhost"},
         {NULL},
         NULL,
         "flag --allow-origin: allow-origin: bad origin 'localhost'"},
        {{"--allow-origin", "https://a.example/path"}, {NULL}, NULL, "an origin has no path"},
        {{"--phase-timeout", "plan"}, {NULL}, NULL, "expected PHASE=DURATION, got 'plan'"},
        {{"--phase-timeout", "=1s"}, {NULL}, NULL, "bad phase name ''"},
        {{"--phase-timeout", "*=1s"}, {NULL}, NULL, "use --watchdog"},
        {{"--phase-timeout", "plan=1y"}, {NULL}, NULL, "phase-timeout: bad duration '1y'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_error(&cases[i]);
}

Test(config, errors_unknown_options)
{
    static const struct errcase cases[] = {
        {{"--histroy-max-events", "5"},
         {NULL},
         NULL,
         "flag --histroy-max-events: unknown option 'histroy-max-events' (did you mean "
         "'history-max-events'?)"},
        {{"--frobnicate=1"},
         {NULL},
         NULL,
         "flag --frobnicate: unknown option 'frobnicate' (see --help)"},
        {{NULL},
         {"RUNCAST_WATCHDGO=1s"},
         NULL,
         "environment RUNCAST_WATCHDGO: unknown option 'watchdgo' (did you mean 'watchdog'?)"},
        {{NULL}, {"RUNCAST_NOPE=1"}, NULL, "environment RUNCAST_NOPE: unknown option 'nope'"},
        {{NULL},
         {NULL},
         "# ok\nwatchdog = 1s\n\nwatchdgo = 1s\n",
         "@:4: unknown option 'watchdgo' (did you mean 'watchdog'?)"},
        {{NULL},
         {NULL},
         "max_runs = 5\n",
         "@:1: unknown option 'max_runs' (did you mean 'max-runs'?)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_error(&cases[i]);
}

Test(config, errors_syntax)
{
    static const struct errcase cases[] = {
        {{"--watchdog"}, {NULL}, NULL, "flag --watchdog: missing value (DURATION)"},
        {{"extra"}, {NULL}, NULL, "argument 'extra': unexpected argument"},
        {{"-w", "1"}, {NULL}, NULL, "argument '-w': unexpected argument"},
        {{"--"}, {NULL}, NULL, "argument '--': unexpected argument"},
        {{NULL}, {NULL}, "watchdog 5s\n", "@:1: expected 'name = value', got 'watchdog 5s'"},
        {{NULL}, {NULL}, "ingest = \"tcp://127.0.0.1:1\n", "@:1: unterminated quoted value"},
        {{NULL}, {NULL}, "ingest = \"tcp://127.0.0.1:1\" x\n", "@:1: text after the quoted value"},
        {{NULL}, {NULL}, "config = /etc/x.conf\n", "@:1: 'config' cannot be set in a config file"},
        {{"--config", "/nonexistent/runcast.conf"},
         {NULL},
         NULL,
         "config file /nonexistent/runcast.conf: cannot open: No such file or directory"},
        {{NULL},
         {"RUNCAST_CONFIG=/nonexistent/r.conf"},
         NULL,
         "config file /nonexistent/r.conf: cannot open"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_error(&cases[i]);
}

Test(config, errors_cross_option)
{
    static const struct errcase cases[] = {
        {{"--max-batch-bytes", "32KiB"},
         {NULL},
         NULL,
         "max-batch-bytes (32KiB) is below max-event-bytes (64KiB)"},
        {{"--ws-queue-max", "1KiB"}, {NULL}, NULL, "ws-queue-max (1KiB) is below max-event-bytes"},
        {{"--watchdog", "2h"}, {NULL}, NULL, "watchdog (2h) is above max-watchdog (1h)"},
        {{"--phase-timeout", "execute=2h"},
         {NULL},
         NULL,
         "phase-timeout execute=2h is above max-watchdog (1h)"},
        {{"--max-phase-bytes", "3", "--phase-timeout", "execute=1s"},
         {NULL},
         NULL,
         "phase name 'execute' is longer than max-phase-bytes (3)"},
        {{"--ingest", "tcp://127.0.0.1:1", "--ingest", "tcp://127.0.0.1:1"},
         {NULL},
         NULL,
         "ingest URL 'tcp://127.0.0.1:1' is given twice"},
        {{"--ingest-ack", "tcp://127.0.0.1:7450"},
         {NULL},
         NULL,
         "ingest URL 'tcp://127.0.0.1:7450' is given twice"},
        {{"--allow-origin", "*", "--allow-origin", "*"},
         {NULL},
         NULL,
         "allow-origin '*' is given twice"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_error(&cases[i]);
}

/* Errors are reported even with no room for the message, and a too-small
 * buffer is truncated, not overrun. */
Test(config, error_buffer_bounds)
{
    struct rc_config c;
    cr_assert_eq(rc_config_init(&c), 0);
    char *argv[] = {"runcastd", "--watchdog", "nope", NULL};
    cr_assert_eq(rc_config_load(&c, 3, argv, empty_env, NULL, 0), RC_EINVAL);
    rc_config_fini(&c);
    cr_assert_eq(rc_config_init(&c), 0);
    char small[8] = "xxxxxxx";
    cr_assert_eq(rc_config_load(&c, 3, argv, empty_env, small, sizeof(small)), RC_EINVAL);
    cr_assert_eq(strlen(small), 7);
    rc_config_fini(&c);
}

/* Values that are accepted in every kind. */
Test(config, valid_structured_values)
{
    struct rc_config c;
    char err[ERRLEN];
    char *argv[] = {"runcastd",
                    "--ingest=ipc:///tmp/runcast-ingest.sock",
                    "--ingest=tcp://:7460",
                    "--ingest=inproc://x",
                    "--ingest-ack=ws://127.0.0.1:7461/ack",
                    "--allow-origin=https://app.example.com",
                    "--allow-origin=http://[::1]:3000",
                    "--allow-origin=null",
                    "--phase-timeout=tool:run=90s",
                    "--log-level=WARNING",
                    "--run-deadline=0",
                    "--publisher-grace=0",
                    "--http=0.0.0.0:8080",
                    NULL};
    cr_assert_eq(load(&c, argv, empty_env, err), 0, "%s", err);
    cr_assert_eq(c.ingest.n, 3);
    cr_assert_eq(c.allow_origin.n, 3);
    cr_assert_eq(rc_config_phase_timeout_ms(&c, "tool:run", 8), 90000);
    cr_assert_eq(c.log_level, RC_LOG_WARN);
    cr_assert_eq(c.run_deadline_ms, 0);
    cr_assert_eq(c.publisher_grace_ms, 0);
    cr_assert_str_eq(c.http_host, "0.0.0.0");
    cr_assert_eq(c.http_port, 8080);
    rc_config_fini(&c);
}

/* Port 0 given twice is two listens on two free ports, not a duplicate
 * (a fixed port given twice still is: errors_cross_option). */
Test(config, port_zero_urls_may_repeat)
{
    struct rc_config c;
    char err[ERRLEN];
    char *argv[] = {"runcastd",
                    "--ingest=tcp://127.0.0.1:0",
                    "--ingest=tcp://127.0.0.1:0",
                    "--ingest-ack=tcp://127.0.0.1:0",
                    "--ingest-ack=ws://127.0.0.1:0/ack",
                    "--ingest-ack=ws://127.0.0.1:0/ack",
                    NULL};
    cr_assert_eq(load(&c, argv, empty_env, err), 0, "%s", err);
    cr_assert_eq(c.ingest.n, 2);
    cr_assert_eq(c.ingest_ack.n, 3);
    rc_config_fini(&c);
    char *dup[] = {"runcastd", "--ingest=ipc:///tmp/rc-x.sock", "--ingest-ack=ipc:///tmp/rc-x.sock",
                   NULL};
    cr_assert_neq(load(&c, dup, empty_env, err), 0);
    cr_assert_not_null(strstr(err, "is given twice"), "%s", err);
    rc_config_fini(&c);
}

/* rc_config_set: the programmatic entry point. */
Test(config, set_by_name)
{
    struct rc_config c;
    char err[ERRLEN];
    cr_assert_eq(rc_config_init(&c), 0);
    cr_assert_eq(rc_config_set(&c, "watchdog", "50ms", "test", err, sizeof(err)), 0);
    cr_assert_eq(c.watchdog_ms, 50);
    /* repeatable: appends */
    cr_assert_eq(rc_config_set(&c, "ingest", "tcp://127.0.0.1:9", NULL, err, sizeof(err)), 0);
    cr_assert_eq(c.ingest.n, 2);
    cr_assert_eq(rc_config_set(&c, "bogus", "1", "test", err, sizeof(err)), RC_EINVAL);
    cr_assert_str_eq(err, "test: unknown option 'bogus' (see --help)");
    rc_config_fini(&c);
}

/* ---- help, version, sample ---- */

/* A copy of s with every occurrence of sep (a line break plus the wrap
 * prefix) replaced by one space, undoing word wrapping. */
static char *flatten(const char *s, const char *sep)
{
    size_t sl = strlen(sep);
    char *out = malloc(strlen(s) + 1), *w = out;
    while (*s != '\0') {
        if (strncmp(s, sep, sl) == 0) {
            *w++ = ' ';
            s += sl;
        } else {
            *w++ = *s++;
        }
    }
    *w = '\0';
    return out;
}

/* Every line of --help and of the sample fits in 80 columns, except a
 * single word too long to break. */
static void assert_width(const char *text, const char *what)
{
    const char *line = text;
    while (*line != '\0') {
        const char *nl = strchr(line, '\n');
        size_t len = nl != NULL ? (size_t)(nl - line) : strlen(line);
        const char *last_space = NULL;
        for (const char *c = line; c < line + len; c++)
            if (*c == ' ')
                last_space = c;
        bool one_word = last_space == NULL || (size_t)(last_space - line) < 8;
        cr_assert(len <= 80 || one_word, "%s line too long (%zu): %.*s", what, len, (int)len, line);
        if (nl == NULL)
            break;
        line = nl + 1;
    }
}

Test(config, help_lists_every_option)
{
    struct rc_config c;
    char err[ERRLEN];
    /* --help wins even over a bad flag before it */
    char *argv[] = {"runcastd", "--watchdog=bad", "--help", NULL};
    cr_assert_eq(load(&c, argv, empty_env, err), 0);
    cr_assert(c.show_help);
    cr_assert(!c.show_version);
    rc_config_fini(&c);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(rc_config_usage(f, "runcastd"), 0);
    fclose(f);
    cr_assert(strstr(buf, "Usage: runcastd") != NULL);
    assert_width(buf, "--help");
    cr_assert(strstr(buf, "--version") != NULL);
    for (size_t i = 0; i < rc_config_option_count(); i++) {
        const struct rc_config_option *o = rc_config_option_at(i);
        char want[256];
        /* "--name ARG" then its default on the same line */
        snprintf(want, sizeof(want), "\n  --%s %s ", o->name, o->arg);
        const char *line = strstr(buf, want);
        cr_assert_not_null(line, "--help lacks %s", want);
        const char *eol = strchr(line + 1, '\n');
        snprintf(want, sizeof(want), "default: %s", o->def[0] != '\0' ? o->def : "(none)");
        const char *d = strstr(line, want);
        cr_assert(d != NULL && d < eol, "--help line of %s lacks '%s'", o->name, want);
        /* the description follows, wrapped at 80 columns */
        char *desc = flatten(eol + 1, "\n      ");
        cr_assert(strncmp(desc, "      ", 6) == 0 &&
                      strncmp(desc + 6, o->help, strlen(o->help)) == 0,
                  "--help lacks the description of %s", o->name);
        free(desc);
        cr_assert(strstr(buf, o->env) != NULL, "--help lacks %s", o->env);
    }
    free(buf);
}

/* --print-config: a full load (errors still reported), then the flag. */
Test(config, print_config_flag)
{
    struct rc_config c;
    char err[ERRLEN];
    char *argv[] = {"runcastd", "--print-config", "--watchdog=3s", NULL};
    cr_assert_eq(load(&c, argv, empty_env, err), 0, "%s", err);
    cr_assert(c.show_config);
    cr_assert(!c.show_help);
    cr_assert_eq(c.watchdog_ms, 3000);
    rc_config_fini(&c);
    char *bad[] = {"runcastd", "--watchdog=3x", "--print-config", NULL};
    cr_assert_eq(load(&c, bad, empty_env, err), RC_EINVAL);
    cr_assert(strstr(err, "bad duration '3x'") != NULL);
    rc_config_fini(&c);
    char *none[] = {"runcastd", NULL};
    cr_assert_eq(load(&c, none, empty_env, err), 0, "%s", err);
    cr_assert(!c.show_config);
    rc_config_fini(&c);
}

Test(config, version_flag)
{
    struct rc_config c;
    char err[ERRLEN];
    char *argv[] = {"runcastd", "-V", NULL};
    cr_assert_eq(load(&c, argv, empty_env, err), 0);
    cr_assert(c.show_version);
    rc_config_fini(&c);
    char *argv2[] = {"runcastd", "--version", NULL};
    cr_assert_eq(load(&c, argv2, empty_env, err), 0);
    cr_assert(c.show_version);
    rc_config_fini(&c);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(f);
    fclose(m);
    return buf;
}

/* deploy/runcast.conf names every option and loads to exactly the defaults;
 * it is what rc_config_write_sample produces from the table. */
Test(config, sample_config_matches_table)
{
    const char *path = RC_SOURCE_DIR "/deploy/runcast.conf";
    char *text = read_all(path);
    assert_width(text, "deploy/runcast.conf");
    for (size_t i = 0; i < rc_config_option_count(); i++) {
        const struct rc_config_option *o = rc_config_option_at(i);
        char want[128];
        if (o->kind == RC_CONFIG_PATH)
            snprintf(want, sizeof(want), "\n# %s:", o->name);
        else
            snprintf(want, sizeof(want), "\n%s = %s\n", o->name, o->def);
        cr_assert(strstr(text, want) != NULL, "deploy/runcast.conf lacks '%s'", want + 1);
        char *flat = flatten(text, "\n# ");
        cr_assert(strstr(flat, o->help) != NULL, "deploy/runcast.conf lacks the reason of %s",
                  o->name);
        free(flat);
    }

    struct rc_config def, c;
    char err[ERRLEN];
    cr_assert_eq(rc_config_init(&def), 0);
    char cf[512];
    snprintf(cf, sizeof(cf), "--config=%s", path);
    char *argv[] = {"runcastd", cf, NULL};
    cr_assert_eq(load(&c, argv, empty_env, err), 0, "%s", err);
    cr_assert_str_eq(c.config_path, path);
    rc_config_set(&c, "config", "", "test", err, sizeof(err));
    char *d1 = dump(&def), *d2 = dump(&c);
    cr_assert_str_eq(d2, d1);
    free(d1);
    free(d2);

    /* generated == committed; on a mismatch, the expected text is left in
     * the build tree to copy over */
    char *gen = NULL;
    size_t glen = 0;
    FILE *f = open_memstream(&gen, &glen);
    cr_assert_eq(rc_config_write_sample(f), 0);
    fclose(f);
    if (strcmp(gen, text) != 0) {
        FILE *o = fopen(RC_BINARY_DIR "/runcast.conf.expected", "w");
        if (o != NULL) {
            fputs(gen, o);
            fclose(o);
        }
        cr_assert_fail("deploy/runcast.conf differs from the option table: cp %s %s",
                       RC_BINARY_DIR "/runcast.conf.expected", path);
    }
    free(gen);
    free(text);
    rc_config_fini(&c);
    rc_config_fini(&def);
}

/* The dump round-trips: loading a dump as a file gives the same config. */
Test(config, dump_round_trips)
{
    struct rc_config c, c2;
    char err[ERRLEN];
    char *argv[] = {"runcastd",
                    "--watchdog=90s",
                    "--phase-timeout=plan=5s",
                    "--ingest=ipc:///tmp/x.sock",
                    "--allow-origin=*",
                    "--log-format=json",
                    "--ingest-ack=",
                    NULL};
    cr_assert_eq(load(&c, argv, empty_env, err), 0, "%s", err);
    char *d = dump(&c);
    const char *file = tmpfile_with(d);
    char cf[128];
    snprintf(cf, sizeof(cf), "--config=%s", file);
    char *argv2[] = {"runcastd", cf, NULL};
    cr_assert_eq(load(&c2, argv2, empty_env, err), 0, "%s", err);
    free(d);
    /* config_path differs by design; compare the rest */
    rc_config_set(&c2, "config", "", "test", err, sizeof(err));
    char *d1 = dump(&c), *d2 = dump(&c2);
    cr_assert_str_eq(d1, d2);
    free(d1);
    free(d2);
    rc_config_fini(&c);
    rc_config_fini(&c2);
}

/* ---- helpers for consumers ---- */

static bool allowed(const struct rc_config *c, const char *o)
{
    return rc_config_origin_allowed(c, o, o != NULL ? strlen(o) : 0);
}

Test(config, origin_policy)
{
    struct rc_config c;
    cr_assert_eq(rc_config_init(&c), 0);
    /* default policy */
    cr_assert(allowed(&c, NULL));
    cr_assert(allowed(&c, "http://localhost"));
    cr_assert(allowed(&c, "http://localhost:3000"));
    cr_assert(allowed(&c, "https://127.0.0.1:8443"));
    cr_assert(allowed(&c, "HTTP://LOCALHOST:1"));
    cr_assert(!allowed(&c, ""));
    cr_assert(!allowed(&c, "null"));
    cr_assert(!allowed(&c, "http://localhost.evil.com"));
    cr_assert(!allowed(&c, "http://localhost:"));
    cr_assert(!allowed(&c, "http://localhost:3000/x"));
    cr_assert(!allowed(&c, "http://127.0.0.1:99999"));
    cr_assert(!allowed(&c, "https://example.com"));
    cr_assert(!allowed(&c, "ftp://localhost"));
    cr_assert(!allowed(&c, "http://127.0.0.2"));
    /* an explicit list replaces the default policy */
    char err[ERRLEN];
    cr_assert_eq(rc_config_set(&c, "allow-origin", "https://app.example.com", "t", err, ERRLEN), 0);
    cr_assert(allowed(&c, NULL));
    cr_assert(allowed(&c, "https://APP.example.com"));
    cr_assert(!allowed(&c, "https://app.example.com:444"));
    cr_assert(!allowed(&c, "http://localhost"));
    cr_assert(!allowed(&c, "https://app.example.co"));
    cr_assert_eq(rc_config_set(&c, "allow-origin", "*", "t", err, ERRLEN), 0);
    cr_assert(allowed(&c, "https://anything.example"));
    rc_config_fini(&c);
}

Test(config, workers_resolved)
{
    struct rc_config c;
    cr_assert_eq(rc_config_init(&c), 0);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cr_assert_eq(rc_config_workers(&c), (uint32_t)(n > 0 ? n : 1));
    c.workers = 3;
    cr_assert_eq(rc_config_workers(&c), 3);
    rc_config_fini(&c);
}

/* docs/CONFIG.md documents every option with its environment name and
 * default (its table is generated from the same option table). */
Test(config, docs_list_every_option)
{
    char *text = read_all(RC_SOURCE_DIR "/docs/CONFIG.md");
    for (size_t i = 0; i < rc_config_option_count(); i++) {
        const struct rc_config_option *o = rc_config_option_at(i);
        char want[160];
        snprintf(want, sizeof(want), "| `--%s %s`", o->name, o->arg);
        const char *row = strstr(text, want);
        cr_assert_not_null(row, "docs/CONFIG.md lacks a row for --%s", o->name);
        const char *eol = strchr(row, '\n');
        snprintf(want, sizeof(want), "| `%s` |", o->env);
        const char *e = strstr(row, want);
        cr_assert(e != NULL && e < eol, "docs/CONFIG.md row of --%s lacks %s", o->name, o->env);
        if (o->def[0] != '\0') {
            snprintf(want, sizeof(want), "| `%s` |", o->def);
            const char *d = strstr(row, want);
            cr_assert(d != NULL && d < eol, "docs/CONFIG.md row of --%s lacks default %s", o->name,
                      o->def);
        }
    }
    free(text);
}

Test(config, apply_logging)
{
    struct rc_config c;
    char err[ERRLEN];
    char *argv[] = {"runcastd", "--log-level=error", "--log-format=json", "--log-ratelimit=1",
                    NULL};
    cr_assert_eq(load(&c, argv, empty_env, err), 0, "%s", err);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    rc_config_apply_logging(&c, f);
    cr_assert_eq(rc_log_get_level(), RC_LOG_ERROR);
    cr_assert_eq(rc_log_get_format(), RC_LOG_JSON);
    rc_log(RC_LOG_WARN, "t", NULL, NULL, "filtered");
    for (int i = 0; i < 3; i++)
        RC_LOG_RATELIMITED(RC_LOG_ERROR, "t", NULL, NULL, "limited %d", i);
    /* SIGHUP restores the configured level */
    rc_log_set_level(RC_LOG_DEBUG);
    rc_log_signal(SIGHUP);
    cr_assert_eq(rc_log_get_level(), RC_LOG_ERROR);
    rc_log_init(NULL, RC_LOG_INFO, RC_LOG_TEXT);
    fclose(f);
    cr_assert(strstr(buf, "filtered") == NULL);
    cr_assert(strstr(buf, "\"msg\":\"limited 0\"") != NULL, "%s", buf);
    cr_assert(strstr(buf, "limited 1") == NULL, "%s", buf);
    free(buf);
    rc_config_fini(&c);
}

/* envp NULL reads the process environment. */
Test(config, process_environment)
{
    setenv("RUNCAST_WS_MAX_SUBS", "7", 1);
    struct rc_config c;
    char err[ERRLEN];
    cr_assert_eq(rc_config_init(&c), 0);
    char *argv[] = {"runcastd", NULL};
    cr_assert_eq(rc_config_load(&c, 1, argv, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(c.ws_max_subs, 7);
    rc_config_fini(&c);
    unsetenv("RUNCAST_WS_MAX_SUBS");
}

/* Random config files (a fixed seed): never a crash or a leak; either they
 * load, or the message names the file and a line within it. */
Test(config, random_files_are_handled, .timeout = 30)
{
    static const char *const pieces[] = {"watchdog",
                                         "=",
                                         " ",
                                         "\n",
                                         "#",
                                         "\"",
                                         "5s",
                                         "ingest",
                                         "tcp://",
                                         "1:2",
                                         "\\",
                                         "\r\n",
                                         "phase-timeout",
                                         "a=1s",
                                         "max-runs",
                                         "99",
                                         "KiB",
                                         "\t",
                                         ",",
                                         "allow-origin",
                                         "http://h",
                                         "\x01",
                                         "\xff",
                                         "config",
                                         "retention",
                                         "-1",
                                         "",
                                         "=="};
    unsigned seed = 12345;
    for (int iter = 0; iter < 1000; iter++) {
        char text[512];
        size_t len = 0;
        int n = 1 + (int)(rand_r(&seed) % 24);
        for (int k = 0; k < n; k++) {
            const char *p = pieces[rand_r(&seed) % (sizeof(pieces) / sizeof(pieces[0]))];
            size_t pl = strlen(p);
            if (len + pl >= sizeof(text))
                break;
            memcpy(text + len, p, pl);
            len += pl;
        }
        text[len] = '\0';
        const char *path = tmpfile_with(text);
        char cf[128];
        snprintf(cf, sizeof(cf), "--config=%s", path);
        char *argv[] = {"runcastd", cf, NULL};
        struct rc_config c;
        char err[ERRLEN] = "";
        int rv = load(&c, argv, empty_env, err);
        if (rv != 0) {
            cr_assert_eq(rv, RC_EINVAL);
            char prefix[96];
            snprintf(prefix, sizeof(prefix), "%s:", path);
            bool names_line = strncmp(err, prefix, strlen(prefix)) == 0;
            bool cross = strncmp(err, "configuration: ", 15) == 0;
            cr_assert(names_line || cross, "file '%s': message '%s'", text, err);
            if (names_line) {
                long line = strtol(err + strlen(prefix), NULL, 10);
                long lines = 1;
                for (const char *q = text; *q != '\0'; q++)
                    lines += *q == '\n';
                cr_assert(line >= 1 && line <= lines, "line %ld of %ld: %s", line, lines, err);
            }
        }
        rc_config_fini(&c);
    }
}
