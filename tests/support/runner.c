/*
 * The runner of the Criterion stand-in (see criterion/criterion.h): runs
 * every registered test in its own forked child, in name order, with the
 * test's (or suite's, or --timeout's) time limit, and prints a Criterion-like
 * synthesis line.  Accepts the options rc_add_test passes (--jobs N is
 * accepted and ignored: tests run one at a time, which TSan prefers).
 */
#include "criterion/criterion.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct crs_test *tests;
static struct crs_suite *suites;
static int expect_failed;
/* In the test's child: where a fatal assertion on the test's own thread
 * jumps to, so the fini still runs (as Criterion does: a test's clean-up,
 * e.g. removing its ipc socket files, must not depend on its passing). */
static sigjmp_buf fail_jmp;
static pthread_t test_thread;
static int in_test;

void crs_register_test(struct crs_test *t)
{
    t->next = tests;
    tests = t;
}

void crs_register_suite(struct crs_suite *s)
{
    s->next = suites;
    suites = s;
}

void crs_fail(const char *file, int line, int fatal, const char *what, const char *fmt, ...)
{
    fprintf(stderr, "[----] %s:%d: Assertion failed: %s", file, line, what);
    if (fmt != NULL && fmt[0] != '\0') {
        va_list ap;
        va_start(ap, fmt);
        fputs(": ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stderr);
    fflush(stderr);
    expect_failed = 1;
    if (fatal && in_test && pthread_equal(pthread_self(), test_thread))
        siglongjmp(fail_jmp, 1);
    if (fatal)
        _exit(1); /* another thread: it cannot unwind the test's stack */
}

void crs_log(const char *level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%s] ", level);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void crs_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("[SKIP] ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    _exit(77);
}

static const struct crs_suite *suite_of(const struct crs_test *t)
{
    for (const struct crs_suite *s = suites; s != NULL; s = s->next)
        if (strcmp(s->name, t->suite) == 0)
            return s;
    return NULL;
}

static int cmp_tests(const void *a, const void *b)
{
    const struct crs_test *x = *(const struct crs_test *const *)a;
    const struct crs_test *y = *(const struct crs_test *const *)b;
    int c = strcmp(x->suite, y->suite);
    return c != 0 ? c : strcmp(x->name, y->name);
}

/* The test's body; a fatal assertion on this thread comes back here.  Its
 * own function: nothing of the caller's is live across the jump. */
static void run_body(const struct crs_test *t)
{
    test_thread = pthread_self();
    if (sigsetjmp(fail_jmp, 0) == 0) {
        in_test = 1;
        t->fn();
    }
    in_test = 0; /* an assertion in the fini itself ends the child */
}

/* Returns 0 passed, 1 failed, 2 crashed, 3 skipped. */
static int run_one(const struct crs_test *t, double default_timeout)
{
    const struct crs_suite *s = suite_of(t);
    void (*init)(void) = t->opts.init ? t->opts.init : (s ? s->opts.init : NULL);
    void (*fini)(void) = t->opts.fini ? t->opts.fini : (s ? s->opts.fini : NULL);
    double timeout = t->opts.timeout > 0
                         ? t->opts.timeout
                         : (s && s->opts.timeout > 0 ? s->opts.timeout : default_timeout);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return 2;
    if (pid == 0) {
        if (timeout > 0)
            alarm((unsigned)(timeout + 0.999));
        if (init)
            init();
        run_body(t);
        if (fini)
            fini();
        fflush(NULL);
        _exit(expect_failed ? 1 : 0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
    }
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        if (code == 77)
            return 3;
        return code == t->opts.exit_code ? 0 : 1;
    }
    if (WIFSIGNALED(status) && t->opts.signal != 0 && WTERMSIG(status) == t->opts.signal)
        return 0;
    if (WIFSIGNALED(status))
        fprintf(stderr, "[----] %s::%s: CRASH (signal %d%s)\n", t->suite, t->name, WTERMSIG(status),
                WTERMSIG(status) == SIGALRM ? ", timed out" : "");
    return 2;
}

int main(int argc, char **argv)
{
    double timeout = 0;
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            timeout = atof(argv[++i]);
        else if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc)
            i++;
        else if (strncmp(argv[i], "--filter=", 9) == 0)
            filter = argv[i] + 9;
    }
    size_t n = 0;
    for (struct crs_test *t = tests; t != NULL; t = t->next)
        n++;
    struct crs_test **v = calloc(n ? n : 1, sizeof(*v));
    if (v == NULL)
        return 2;
    n = 0;
    for (struct crs_test *t = tests; t != NULL; t = t->next)
        v[n++] = t;
    qsort(v, n, sizeof(*v), cmp_tests);
    unsigned passed = 0, failed = 0, crashed = 0, skipped = 0;
    for (size_t i = 0; i < n; i++) {
        const struct crs_test *t = v[i];
        const struct crs_suite *s = suite_of(t);
        char full[512];
        snprintf(full, sizeof(full), "%s::%s", t->suite, t->name);
        if (t->opts.disabled || (s && s->opts.disabled) ||
            (filter != NULL && strstr(full, filter) == NULL)) {
            skipped++;
            continue;
        }
        int r = run_one(t, timeout);
        if (r == 0)
            passed++;
        else if (r == 1)
            failed++;
        else if (r == 2)
            crashed++;
        else
            skipped++;
        if (r == 1 || r == 2)
            fprintf(stderr, "[FAIL] %s\n", full);
    }
    free(v);
    printf("[====] Synthesis: Tested: %u | Passing: %u | Failing: %u | Crashing: %u\n",
           passed + failed + crashed, passed, failed, crashed);
    return (failed || crashed) ? 1 : 0;
}
