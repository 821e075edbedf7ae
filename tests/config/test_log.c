/*
 * tests/config: rc_log line formats (text and JSON), level filtering, run-time
 * level changes, the rate limiter (with an injected clock) and whole-line
 * writes from several threads.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rc_error.h"
#include "rc_log.h"

/* 2026-11-27T07:09:07.123Z */
#define FIXED_MS 1795763347123LL

static int64_t fixed_wall(void)
{
    return FIXED_MS;
}

static uint64_t fake_mono;
static uint64_t fake_mono_now(void)
{
    return fake_mono;
}

struct capture {
    char *buf;
    size_t len;
    FILE *f;
};

static void cap_start(struct capture *c, enum rc_log_level level, enum rc_log_format format)
{
    c->buf = NULL;
    c->len = 0;
    c->f = open_memstream(&c->buf, &c->len);
    cr_assert_not_null(c->f);
    rc_log_init(c->f, level, format);
    rc_log_set_clock(fixed_wall, fake_mono_now);
}

/* Flushed text so far (valid until the next log call). */
static const char *cap_text(struct capture *c)
{
    fflush(c->f);
    return c->buf != NULL ? c->buf : "";
}

static void cap_end(struct capture *c)
{
    rc_log_init(NULL, RC_LOG_INFO, RC_LOG_TEXT);
    fclose(c->f);
    free(c->buf);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

Test(log, text_format)
{
    struct capture c;
    cap_start(&c, RC_LOG_DEBUG, RC_LOG_TEXT);
    rc_log(RC_LOG_WARN, "supervisor", "r1", "c1", "no event for %d s", 120);
    rc_log(RC_LOG_INFO, "ingress", NULL, NULL, "listening on %s", "tcp://127.0.0.1:7450");
    rc_log(RC_LOG_CRITICAL, "run", "r2", NULL, "terminal rejected");
    rc_log(RC_LOG_DEBUG, "edge", NULL, "c9", "close 1000");
    rc_log(RC_LOG_ERROR, NULL, "", "", "no component");
    cr_assert_str_eq(
        cap_text(&c),
        "2026-11-27T07:09:07.123Z WARN  supervisor run=r1 conv=c1: no event for 120 s\n"
        "2026-11-27T07:09:07.123Z INFO  ingress: listening on tcp://127.0.0.1:7450\n"
        "2026-11-27T07:09:07.123Z CRIT  run run=r2: terminal rejected\n"
        "2026-11-27T07:09:07.123Z DEBUG edge conv=c9: close 1000\n"
        "2026-11-27T07:09:07.123Z ERROR runcastd: no component\n");
    cap_end(&c);
}

/* Control characters cannot break a text line. */
Test(log, text_escapes_control_chars)
{
    struct capture c;
    cap_start(&c, RC_LOG_INFO, RC_LOG_TEXT);
    rc_log(RC_LOG_INFO, "edge", "r\n1", NULL, "a\nb\tc\x01 \"q\" \xff");
    cr_assert_str_eq(cap_text(&c), "2026-11-27T07:09:07.123Z INFO  edge run=r\\n1: "
                                   "a\\nb\\tc\\u0001 \\\"q\\\" \xef\xbf\xbd\n");
    cap_end(&c);
}

Test(log, json_format)
{
    struct capture c;
    cap_start(&c, RC_LOG_DEBUG, RC_LOG_JSON);
    rc_log(RC_LOG_WARN, "supervisor", "r1", "c1", "no event for %d s", 120);
    rc_log(RC_LOG_INFO, "ingress", NULL, NULL, "plain");
    cr_assert_str_eq(
        cap_text(&c),
        "{\"time\":\"2026-11-27T07:09:07.123Z\",\"level\":\"warn\",\"component\":"
        "\"supervisor\",\"run\":\"r1\",\"conv\":\"c1\",\"msg\":\"no event for 120 s\"}\n"
        "{\"time\":\"2026-11-27T07:09:07.123Z\",\"level\":\"info\",\"component\":"
        "\"ingress\",\"msg\":\"plain\"}\n");
    cap_end(&c);
}

/* Every awkward string comes back intact through a real JSON parser. */
Test(log, json_escaping_round_trips)
{
    static const char *const msgs[] = {
        "quote \" backslash \\ slash /",
        "newline \n cr \r tab \t bs \b ff \f",
        "ctl \x01\x02\x1f del \x7f",
        "utf8 h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80",
        "",
    };
    struct capture c;
    cap_start(&c, RC_LOG_DEBUG, RC_LOG_JSON);
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++)
        rc_log(RC_LOG_ERROR, "edge", "run\"x", "conv\\y", "%s", msgs[i]);
    const char *text = cap_text(&c);
    const char *line = text;
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        const char *nl = strchr(line, '\n');
        cr_assert_not_null(nl);
        json_error_t jerr;
        json_t *j = json_loadb(line, (size_t)(nl - line), 0, &jerr);
        cr_assert_not_null(j, "line %zu not JSON: %s (%.*s)", i, jerr.text, (int)(nl - line), line);
        cr_assert_str_eq(json_string_value(json_object_get(j, "msg")), msgs[i]);
        cr_assert_str_eq(json_string_value(json_object_get(j, "run")), "run\"x");
        cr_assert_str_eq(json_string_value(json_object_get(j, "conv")), "conv\\y");
        cr_assert_str_eq(json_string_value(json_object_get(j, "level")), "error");
        json_decref(j);
        line = nl + 1;
    }
    cap_end(&c);
}

/* Invalid UTF-8 becomes U+FFFD, so the JSON stays valid. */
Test(log, json_invalid_utf8)
{
    struct capture c;
    cap_start(&c, RC_LOG_DEBUG, RC_LOG_JSON);
    rc_log(RC_LOG_INFO, "ingress", NULL, NULL, "bad \xc3 \xed\xa0\x80 \xf8 end");
    const char *text = cap_text(&c);
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    cr_assert_not_null(j, "%s: %s", jerr.text, text);
    cr_assert_str_eq(json_string_value(json_object_get(j, "msg")),
                     "bad \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd end");
    json_decref(j);
    cap_end(&c);
}

/* A huge message is cut with "...", still one valid line. */
Test(log, long_message_truncated)
{
    size_t n = 100000;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = (i % 7 == 0) ? '\n' : 'x'; /* escapes expand it further */
    big[n] = '\0';
    struct capture c;
    cap_start(&c, RC_LOG_DEBUG, RC_LOG_JSON);
    rc_log(RC_LOG_INFO, "ingress", "r", NULL, "%s", big);
    const char *text = cap_text(&c);
    cr_assert_eq(count_lines(text), 1);
    cr_assert_lt(strlen(text), 20000);
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    cr_assert_not_null(j, "%s", jerr.text);
    const char *msg = json_string_value(json_object_get(j, "msg"));
    cr_assert(strlen(msg) > 1000);
    cr_assert_str_eq(msg + strlen(msg) - 3, "...");
    json_decref(j);
    cap_end(&c);

    cap_start(&c, RC_LOG_DEBUG, RC_LOG_TEXT);
    rc_log(RC_LOG_INFO, "ingress", "r", NULL, "%s", big);
    text = cap_text(&c);
    cr_assert_eq(count_lines(text), 1);
    cr_assert(strstr(text, "...\n") != NULL);
    cap_end(&c);
    free(big);
}

static int evaluated;
static int side_effect(void)
{
    return ++evaluated;
}

Test(log, level_filtering)
{
    struct capture c;
    cap_start(&c, RC_LOG_WARN, RC_LOG_TEXT);
    evaluated = 0;
    rc_log(RC_LOG_DEBUG, "x", NULL, NULL, "debug %d", side_effect());
    rc_log(RC_LOG_INFO, "x", NULL, NULL, "info %d", side_effect());
    /* disabled levels do not evaluate their arguments */
    cr_assert_eq(evaluated, 0);
    rc_log(RC_LOG_WARN, "x", NULL, NULL, "warn");
    rc_log(RC_LOG_ERROR, "x", NULL, NULL, "error");
    rc_log(RC_LOG_CRITICAL, "x", NULL, NULL, "critical");
    rc_log_write(RC_LOG_INFO, "x", NULL, NULL, "direct info is filtered too");
    const char *t = cap_text(&c);
    cr_assert_eq(count_lines(t), 3);
    cr_assert(strstr(t, "debug") == NULL && strstr(t, "info") == NULL);
    cr_assert(strstr(t, ": warn\n") && strstr(t, ": error\n") && strstr(t, ": critical\n"));
    cr_assert(rc_log_enabled(RC_LOG_WARN));
    cr_assert(!rc_log_enabled(RC_LOG_INFO));
    cap_end(&c);
}

Test(log, runtime_level_change)
{
    struct capture c;
    cap_start(&c, RC_LOG_INFO, RC_LOG_TEXT);
    rc_log(RC_LOG_DEBUG, "x", NULL, NULL, "one");
    rc_log_set_level(RC_LOG_DEBUG);
    cr_assert_eq(rc_log_get_level(), RC_LOG_DEBUG);
    rc_log(RC_LOG_DEBUG, "x", NULL, NULL, "two");
    rc_log_set_level(RC_LOG_ERROR);
    rc_log(RC_LOG_WARN, "x", NULL, NULL, "three");
    rc_log(RC_LOG_ERROR, "x", NULL, NULL, "four");
    /* SIGUSR1/SIGUSR2-style steps saturate at both ends */
    cr_assert_eq(rc_log_level_step(-1), RC_LOG_WARN);
    rc_log(RC_LOG_WARN, "x", NULL, NULL, "five");
    cr_assert_eq(rc_log_level_step(-10), RC_LOG_DEBUG);
    cr_assert_eq(rc_log_level_step(+10), RC_LOG_CRITICAL);
    cr_assert_eq(rc_log_level_step(+1), RC_LOG_CRITICAL);
    /* out-of-range values are clamped */
    rc_log_set_level((enum rc_log_level)99);
    cr_assert_eq(rc_log_get_level(), RC_LOG_CRITICAL);
    /* format switch at run time */
    rc_log_set_level(RC_LOG_INFO);
    rc_log_set_format(RC_LOG_JSON);
    rc_log(RC_LOG_INFO, "x", NULL, NULL, "six");
    const char *t = cap_text(&c);
    cr_assert(strstr(t, ": one\n") == NULL);
    cr_assert(strstr(t, ": two\n") != NULL);
    cr_assert(strstr(t, ": three\n") == NULL);
    cr_assert(strstr(t, ": four\n") != NULL);
    cr_assert(strstr(t, ": five\n") != NULL);
    cr_assert(strstr(t, "\"msg\":\"six\"}\n") != NULL);
    cap_end(&c);
}

Test(log, parse_and_names)
{
    enum rc_log_level l;
    static const char *const names[] = {"debug", "info", "warn", "error", "critical"};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(rc_log_level_parse(names[i], &l), 0);
        cr_assert_eq((int)l, i);
        cr_assert_str_eq(rc_log_level_name(l), names[i]);
    }
    cr_assert_eq(rc_log_level_parse("WARNING", &l), 0);
    cr_assert_eq(l, RC_LOG_WARN);
    cr_assert_eq(rc_log_level_parse("Crit", &l), 0);
    cr_assert_eq(l, RC_LOG_CRITICAL);
    cr_assert_eq(rc_log_level_parse("verbose", &l), RC_EINVAL);
    cr_assert_eq(rc_log_level_parse("", &l), RC_EINVAL);
    cr_assert_eq(rc_log_level_parse(NULL, &l), RC_EINVAL);
    cr_assert_str_eq(rc_log_level_name((enum rc_log_level)7), "?");
    enum rc_log_format f;
    cr_assert_eq(rc_log_format_parse("json", &f), 0);
    cr_assert_eq(f, RC_LOG_JSON);
    cr_assert_eq(rc_log_format_parse("TEXT", &f), 0);
    cr_assert_eq(f, RC_LOG_TEXT);
    cr_assert_eq(rc_log_format_parse("xml", &f), RC_EINVAL);
    cr_assert_str_eq(rc_log_format_name(RC_LOG_JSON), "json");
}

/* ---- rate limiting ---- */

Test(log, ratelimit_take)
{
    struct rc_log_ratelimit rl;
    rc_log_ratelimit_init(&rl, 3);
    uint64_t sup = 99;
    uint64_t t = 5000;
    for (int i = 0; i < 3; i++) {
        cr_assert(rc_log_ratelimit_take(&rl, t, &sup));
        cr_assert_eq(sup, 0);
    }
    for (int i = 0; i < 5; i++)
        cr_assert(!rc_log_ratelimit_take(&rl, t + 999, &sup));
    /* a new second: the count of dropped lines comes with the next one */
    cr_assert(rc_log_ratelimit_take(&rl, t + 1000, &sup));
    cr_assert_eq(sup, 5);
    cr_assert(rc_log_ratelimit_take(&rl, t + 1001, &sup));
    cr_assert_eq(sup, 0);
    cr_assert_eq(rl.suppressed_total, 5);
    rc_log_ratelimit_fini(&rl);

    /* burst 0 follows the process default; default 0 turns limiting off */
    rc_log_ratelimit_init(&rl, 0);
    rc_log_set_ratelimit_default(1);
    cr_assert(rc_log_ratelimit_take(&rl, 10, NULL));
    cr_assert(!rc_log_ratelimit_take(&rl, 11, NULL));
    rc_log_set_ratelimit_default(0);
    for (int i = 0; i < 100; i++)
        cr_assert(rc_log_ratelimit_take(&rl, 12, NULL));
    rc_log_ratelimit_fini(&rl);
    rc_log_set_ratelimit_default(10);
}

static void noisy(int i)
{
    RC_LOG_RATELIMITED(RC_LOG_ERROR, "ingress", NULL, NULL, "bad message %d from peer", i);
}

Test(log, ratelimited_macro_summarises)
{
    struct capture c;
    cap_start(&c, RC_LOG_INFO, RC_LOG_TEXT);
    rc_log_set_ratelimit_default(2);
    fake_mono = 100000;
    for (int i = 0; i < 10; i++)
        noisy(i);
    const char *t = cap_text(&c);
    cr_assert_eq(count_lines(t), 2, "%s", t);
    cr_assert(strstr(t, "bad message 0 ") && strstr(t, "bad message 1 "));
    cr_assert_eq(rc_log_lines_suppressed(), 8);
    fake_mono += 1000;
    noisy(10);
    t = cap_text(&c);
    cr_assert_eq(count_lines(t), 4, "%s", t);
    cr_assert(strstr(t,
                     "ERROR ingress: suppressed 8 similar messages\n"
                     "2026-11-27T07:09:07.123Z ERROR ingress: bad message 10 from peer\n") != NULL,
              "%s", t);
    cr_assert_eq(rc_log_lines_written(), 4);
    cap_end(&c);
}

Test(log, ratelimit_flush_and_run_fields)
{
    static struct rc_log_ratelimit rl = RC_LOG_RATELIMIT_INIT(1);
    struct capture c;
    cap_start(&c, RC_LOG_INFO, RC_LOG_JSON);
    fake_mono = 7;
    for (int i = 0; i < 4; i++)
        rc_log_write_limited(&rl, RC_LOG_WARN, "edge", "r1", "c1", "slow consumer %d", i);
    /* a disabled level is not counted against the limiter */
    rc_log_write_limited(&rl, RC_LOG_DEBUG, "edge", NULL, NULL, "dbg");
    cr_assert_eq(rl.suppressed, 3);
    cr_assert_eq(rc_log_ratelimit_flush(&rl, RC_LOG_WARN, "edge"), 3);
    cr_assert_eq(rc_log_ratelimit_flush(&rl, RC_LOG_WARN, "edge"), 0);
    const char *t = cap_text(&c);
    cr_assert_eq(count_lines(t), 2, "%s", t);
    cr_assert(strstr(t, "\"run\":\"r1\",\"conv\":\"c1\",\"msg\":\"slow consumer 0\"") != NULL);
    cr_assert(strstr(t, "\"component\":\"edge\",\"msg\":\"suppressed 3 similar messages\"") !=
              NULL);
    cap_end(&c);
}

/* ---- whole lines from many threads ---- */

#define THREADS    4
#define PER_THREAD 500

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < PER_THREAD; i++)
        rc_log(RC_LOG_INFO, "t", "run", NULL, "thread %d line %d %s", id, i,
               "padding-padding-padding-padding-padding-padding-padding-padding");
    return NULL;
}

static void *level_flipper(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        rc_log_set_level(i % 2 ? RC_LOG_INFO : RC_LOG_DEBUG);
    rc_log_set_level(RC_LOG_INFO);
    return NULL;
}

Test(log, concurrent_lines_are_whole)
{
    struct capture c;
    cap_start(&c, RC_LOG_INFO, RC_LOG_TEXT);
    pthread_t th[THREADS + 1];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, writer, (void *)(intptr_t)i);
    pthread_create(&th[THREADS], NULL, level_flipper, NULL);
    for (int i = 0; i <= THREADS; i++)
        pthread_join(th[i], NULL);
    const char *t = cap_text(&c);
    cr_assert_eq(count_lines(t), THREADS * PER_THREAD);
    int seen[THREADS] = {0};
    const char *line = t;
    while (*line != '\0') {
        const char *nl = strchr(line, '\n');
        int id, n;
        cr_assert_eq(sscanf(line,
                            "2026-11-27T07:09:07.123Z INFO  t run=run: thread %d line %d "
                            "padding-padding-padding-padding-padding-padding-padding-padding",
                            &id, &n),
                     2, "mangled line: %.*s", (int)(nl - line), line);
        cr_assert(id >= 0 && id < THREADS);
        /* each thread's lines appear in its order */
        cr_assert_eq(n, seen[id], "thread %d: line %d after %d", id, n, seen[id] - 1);
        seen[id]++;
        line = nl + 1;
    }
    cap_end(&c);
}

/* ---- level changes by signal ---- */

Test(log, signal_level_changes)
{
    struct capture c;
    cap_start(&c, RC_LOG_WARN, RC_LOG_TEXT);
    cr_assert_eq(rc_log_install_signals(), 0);
    raise(SIGUSR1); /* warn -> info */
    cr_assert_eq(rc_log_get_level(), RC_LOG_INFO);
    raise(SIGUSR1); /* info -> debug */
    cr_assert_eq(rc_log_get_level(), RC_LOG_DEBUG);
    raise(SIGUSR1); /* stays debug */
    cr_assert_eq(rc_log_get_level(), RC_LOG_DEBUG);
    /* the notice comes with the next line */
    rc_log(RC_LOG_DEBUG, "x", NULL, NULL, "after");
    const char *t = cap_text(&c);
    cr_assert_str_eq(t, "2026-11-27T07:09:07.123Z DEBUG log: log level set to debug by SIGUSR1\n"
                        "2026-11-27T07:09:07.123Z DEBUG x: after\n");
    raise(SIGUSR2);
    raise(SIGUSR2);
    cr_assert_eq(rc_log_get_level(), RC_LOG_WARN);
    raise(SIGHUP); /* back to the level given to rc_log_init */
    cr_assert_eq(rc_log_get_level(), RC_LOG_WARN);
    rc_log_signal_configured(RC_LOG_ERROR);
    raise(SIGHUP);
    cr_assert_eq(rc_log_get_level(), RC_LOG_ERROR);
    /* a notice is written even when nothing else is logged */
    cr_assert(rc_log_notice_flush());
    cr_assert(!rc_log_notice_flush());
    t = cap_text(&c);
    cr_assert(strstr(t, "ERROR log: log level set to error by SIGHUP\n") != NULL, "%s", t);
    cr_assert_eq(count_lines(t), 3);
    /* other signals are ignored */
    rc_log_signal(SIGTERM);
    cr_assert_eq(rc_log_get_level(), RC_LOG_ERROR);
    cr_assert(!rc_log_notice_flush());
    cap_end(&c);
}
