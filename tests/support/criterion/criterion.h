/*
 * A minimal stand-in for Criterion's API, used ONLY by the ThreadSanitizer
 * build of the tests.
 *
 * Criterion's sandbox (BoxFort) maps its shared arena at random fixed
 * addresses; under TSan every such address falls inside TSan's reserved
 * shadow ranges, so Criterion aborts at start-up ("Could not initialize
 * inheritable arena", Criterion issue #274) on this platform.  This header
 * keeps the test sources unchanged: it offers the subset of the API the
 * suite uses (Test, TestSuite with .init/.fini/.timeout/.disabled, the
 * cr_assert and cr_expect families, cr_log_*) and runner.c runs each test in
 * a forked child with a timeout, like Criterion does.
 */
#ifndef RC_CRITERION_SHIM_H
#define RC_CRITERION_SHIM_H

/* Criterion's header brings these in; tests rely on it. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct crs_opts {
    void (*init)(void);
    void (*fini)(void);
    double timeout;
    bool disabled;
    const char *description;
    int exit_code;
    int signal;
};

struct crs_test {
    const char *suite;
    const char *name;
    void (*fn)(void);
    struct crs_opts opts;
    struct crs_test *next;
};

struct crs_suite {
    const char *name;
    struct crs_opts opts;
    struct crs_suite *next;
};

void crs_register_test(struct crs_test *t);
void crs_register_suite(struct crs_suite *s);
void crs_fail(const char *file, int line, int fatal, const char *what, const char *fmt, ...);
void crs_log(const char *level, const char *fmt, ...);
void crs_skip(const char *fmt, ...);

#define Test(suite, name, ...)                                                                     \
    static void crs_fn_##suite##_##name(void);                                                     \
    static struct crs_test crs_t_##suite##_##name = {                                              \
        #suite, #name, crs_fn_##suite##_##name, {__VA_ARGS__}, NULL};                              \
    __attribute__((constructor)) static void crs_reg_##suite##_##name(void)                        \
    {                                                                                              \
        crs_register_test(&crs_t_##suite##_##name);                                                \
    }                                                                                              \
    static void crs_fn_##suite##_##name(void)

#define TestSuite(suite, ...)                                                                      \
    static struct crs_suite crs_s_##suite = {#suite, {__VA_ARGS__}, NULL};                         \
    __attribute__((constructor)) static void crs_sreg_##suite(void)                                \
    {                                                                                              \
        crs_register_suite(&crs_s_##suite);                                                        \
    }                                                                                              \
    struct crs_suite_dummy_##suite

#define CRS_CHECK(fatal, cond, what, ...)                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            crs_fail(__FILE__, __LINE__, fatal, what, "" __VA_ARGS__);                             \
    } while (0)

#define cr_assert(c, ...)          CRS_CHECK(1, (c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...)      CRS_CHECK(1, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...)    CRS_CHECK(1, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...)   CRS_CHECK(1, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...)    CRS_CHECK(1, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...)   CRS_CHECK(1, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...)    CRS_CHECK(1, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...)   CRS_CHECK(1, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_null(p, ...)     CRS_CHECK(1, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) CRS_CHECK(1, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)                                                                \
    CRS_CHECK(1, strcmp((a), (b)) == 0, "strcmp(" #a ", " #b ") == 0", __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...)                                                               \
    CRS_CHECK(1, strcmp((a), (b)) != 0, "strcmp(" #a ", " #b ") != 0", __VA_ARGS__)
#define cr_assert_str_empty(a, ...) CRS_CHECK(1, (a)[0] == '\0', #a " is empty", __VA_ARGS__)
#define cr_assert_float_eq(a, b, eps, ...)                                                         \
    CRS_CHECK(1, ((a) - (b)) <= (eps) && ((b) - (a)) <= (eps), #a " ~= " #b, __VA_ARGS__)
#define cr_assert_fail(...) crs_fail(__FILE__, __LINE__, 1, "cr_assert_fail", "" __VA_ARGS__)

#define cr_expect(c, ...)          CRS_CHECK(0, (c), #c, __VA_ARGS__)
#define cr_expect_not(c, ...)      CRS_CHECK(0, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_expect_eq(a, b, ...)    CRS_CHECK(0, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...)   CRS_CHECK(0, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...)    CRS_CHECK(0, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...)   CRS_CHECK(0, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...)    CRS_CHECK(0, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...)   CRS_CHECK(0, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_expect_null(p, ...)     CRS_CHECK(0, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_expect_not_null(p, ...) CRS_CHECK(0, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...)                                                                \
    CRS_CHECK(0, strcmp((a), (b)) == 0, "strcmp(" #a ", " #b ") == 0", __VA_ARGS__)
#define cr_expect_str_neq(a, b, ...)                                                               \
    CRS_CHECK(0, strcmp((a), (b)) != 0, "strcmp(" #a ", " #b ") != 0", __VA_ARGS__)

#define cr_log_info(...)  crs_log("info", "" __VA_ARGS__)
#define cr_log_warn(...)  crs_log("warn", "" __VA_ARGS__)
#define cr_log_error(...) crs_log("error", "" __VA_ARGS__)
#define cr_skip_test(...) crs_skip("" __VA_ARGS__)

#endif
