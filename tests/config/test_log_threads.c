/*
 * tests/config: rc_log under concurrency, as a plain program (no Criterion),
 * so that it also runs in TSan builds (Criterion's arena set-up fails under
 * TSan on this platform: Snaipe/Criterion#274).
 *
 * Several threads log through plain, rate-limited and macro-limited call
 * sites while another flips the level, the format and raises the level
 * signals; afterwards every line must be whole and well-formed, each
 * thread's lines in its order, and the counters must add up.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rc_log.h"

#define THREADS    4
#define PER_THREAD 2000

static struct rc_log_ratelimit shared_rl = RC_LOG_RATELIMIT_INIT(5);
static _Atomic int stop_flipper;

static int failures;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        /* CRITICAL always passes the filter, whatever the flipper does */
        rc_log(RC_LOG_CRITICAL, "w", "run-x", "conv-y", "<T%d N%d> payload-payload-payload", id, i);
        rc_log(RC_LOG_DEBUG, "w", NULL, NULL, "debug T%d N%d", id, i);
        rc_log_write_limited(&shared_rl, RC_LOG_CRITICAL, "rl", NULL, NULL, "limited T%d", id);
        RC_LOG_RATELIMITED(RC_LOG_CRITICAL, "macro", NULL, NULL, "macro T%d", id);
    }
    return NULL;
}

static void *flipper(void *arg)
{
    (void)arg;
    int i = 0;
    /* relaxed: a plain stop flag, the join orders everything after it */
    while (!atomic_load_explicit(&stop_flipper, memory_order_relaxed)) {
        rc_log_set_level(i % 3 == 0 ? RC_LOG_DEBUG : RC_LOG_INFO);
        rc_log_set_format(i % 5 == 0 ? RC_LOG_JSON : RC_LOG_TEXT);
        rc_log_signal(i % 2 ? SIGUSR1 : SIGUSR2);
        i++;
    }
    return NULL;
}

int main(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    rc_log_init(f, RC_LOG_INFO, RC_LOG_TEXT);

    pthread_t th[THREADS], fl;
    pthread_create(&fl, NULL, flipper, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, writer, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    atomic_store_explicit(&stop_flipper, 1, memory_order_relaxed);
    pthread_join(fl, NULL);
    rc_log_notice_flush();
    rc_log_init(NULL, RC_LOG_INFO, RC_LOG_TEXT);
    fclose(f);

    int next[THREADS] = {0};
    uint64_t lines = 0, limited = 0, macro = 0, summaries = 0, notices = 0, debug = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        lines++;
        int json = line[0] == '{';
        CHECK(json || (strlen(line) > 25 && line[4] == '-' && line[23] == 'Z'), "bad line: %s",
              line);
        CHECK(!json || line[strlen(line) - 1] == '}', "bad json line: %s", line);
        const char *t = strstr(line, "<T");
        int id, n;
        if (strstr(line, "payload") != NULL) {
            CHECK(t != NULL && sscanf(t, "<T%d N%d>", &id, &n) == 2, "bad line: %s", line);
            CHECK(strstr(line, "run") && strstr(line, "run-x") && strstr(line, "conv-y"),
                  "no run/conv: %s", line);
            if (id >= 0 && id < THREADS) {
                CHECK(n == next[id], "thread %d: line %d after %d", id, n, next[id] - 1);
                next[id] = n + 1;
            }
        } else if (strstr(line, "suppressed") != NULL) {
            summaries++;
        } else if (strstr(line, "limited T") != NULL) {
            limited++;
        } else if (strstr(line, "macro T") != NULL) {
            macro++;
        } else if (strstr(line, "log level set to") != NULL) {
            notices++;
        } else if (strstr(line, "debug T") != NULL) {
            debug++;
        } else {
            CHECK(0, "unexpected line: %s", line);
        }
    }
    for (int i = 0; i < THREADS; i++)
        CHECK(next[i] == PER_THREAD, "thread %d wrote %d lines", i, next[i]);
    CHECK(lines == rc_log_lines_written(), "%llu lines, counter %llu", (unsigned long long)lines,
          (unsigned long long)rc_log_lines_written());
    /* every limited call is either written or suppressed */
    CHECK(limited + macro + rc_log_lines_suppressed() == 2ull * THREADS * PER_THREAD,
          "limited %llu + macro %llu + suppressed %llu", (unsigned long long)limited,
          (unsigned long long)macro, (unsigned long long)rc_log_lines_suppressed());
    free(buf);
    printf("%llu lines (%llu limited, %llu macro, %llu summaries, %llu notices, %llu debug), "
           "%d failures\n",
           (unsigned long long)lines, (unsigned long long)limited, (unsigned long long)macro,
           (unsigned long long)summaries, (unsigned long long)notices, (unsigned long long)debug,
           failures);
    return failures == 0 ? 0 : 1;
}
