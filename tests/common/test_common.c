#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "rc_alloc.h"
#include "rc_blob.h"
#include "rc_buf.h"
#include "rc_clock.h"
#include "rc_error.h"
#include "rc_listen_line.h"

Test(error, every_code_has_a_name_and_message)
{
    int codes[] = {RC_ENOMEM,    RC_EINVAL,  RC_EOVERLOAD, RC_ECLOSED,   RC_ENOTFOUND,
                   RC_ETIMEDOUT, RC_EPROTO,  RC_ELIMIT,    RC_EEXIST,    RC_ENOTSUP,
                   RC_EIO,       RC_ETOOBIG, RC_ESTATE,    RC_ESHUTDOWN, RC_EADDRINUSE};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        cr_assert(codes[i] < 0);
        cr_assert_str_neq(rc_error_name(codes[i]), "RC_UNKNOWN");
        cr_assert_str_neq(rc_error_message(codes[i]), "unknown error");
    }
    cr_assert_str_eq(rc_error_name(RC_OK), "RC_OK");
    cr_assert_str_eq(rc_error_name(12345), "RC_UNKNOWN");
    cr_assert_str_eq(rc_error_name(RC_ENOMEM), "RC_ENOMEM");
}

Test(buf, grows_and_keeps_bytes)
{
    struct rc_buf b;
    rc_buf_init(&b);
    for (int i = 0; i < 10000; i++) {
        uint8_t c = (uint8_t)i;
        cr_assert_eq(rc_buf_append(&b, &c, 1), RC_OK);
    }
    cr_assert_eq(b.len, 10000);
    for (int i = 0; i < 10000; i++)
        cr_assert_eq(b.data[i], (uint8_t)i);
    rc_buf_reset(&b);
    cr_assert_eq(b.len, 0);
    rc_buf_fini(&b);
    cr_assert_null(b.data);
}

/* A buffer on the caller's storage writes there until it is outgrown, then
 * moves to the heap with its bytes; fini never frees the caller's storage
 * (ASan would report freeing a stack address). */
Test(buf, on_caller_storage_moves_to_the_heap_when_outgrown)
{
    uint8_t mem[8];
    struct rc_buf b;
    rc_buf_init_on(&b, mem, sizeof(mem));
    cr_assert_eq(rc_buf_append(&b, "abcdefgh", 8), RC_OK);
    cr_assert_eq(b.data, mem, "fitting bytes stay in the caller's storage");
    cr_assert_eq(rc_buf_append(&b, "ij", 2), RC_OK);
    cr_assert_neq(b.data, mem, "outgrown: moved to the heap");
    cr_assert_eq(b.len, 10);
    cr_assert_eq(memcmp(b.data, "abcdefghij", 10), 0);
    cr_assert_eq(memcmp(mem, "abcdefgh", 8), 0);
    rc_buf_fini(&b); /* frees the heap copy */

    rc_buf_init_on(&b, mem, sizeof(mem));
    cr_assert_eq(rc_buf_append(&b, "xy", 2), RC_OK);
    rc_buf_fini(&b); /* must not free mem */
    cr_assert_null(b.data);
}

Test(blob, refcount_frees_on_last_release)
{
    struct rc_blob *b = rc_blob_copy("hello", 5);
    cr_assert_not_null(b);
    cr_assert_eq(b->len, 5);
    cr_assert(memcmp(b->data, "hello", 5) == 0);
    rc_blob_hold(b);
    cr_assert_eq(atomic_load(&b->refs), 2);
    rc_blob_release(b);
    cr_assert_eq(atomic_load(&b->refs), 1);
    rc_blob_release(b); /* freed: ASan would flag a double free or a leak */
    rc_blob_release(NULL);
}

/* Holders on several threads release one blob each in whatever order; the
 * last release frees it exactly once (the sole-holder release skips the
 * locked decrement: a race there is a double free or a leak under ASan, a
 * data race under TSan). */
#define BLOB_RACE_THREADS 3
#define BLOB_RACE_ROUNDS  2000

struct blob_race {
    struct rc_blob *_Atomic slot[BLOB_RACE_THREADS];
    _Atomic unsigned sum;
};

static void *blob_race_thread(void *arg)
{
    struct blob_race *r = arg;
    static _Atomic int next;
    int me = atomic_fetch_add(&next, 1) % BLOB_RACE_THREADS;
    for (int i = 0; i < BLOB_RACE_ROUNDS; i++) {
        struct rc_blob *b;
        while ((b = atomic_exchange(&r->slot[me], NULL)) == NULL)
            sched_yield();
        atomic_fetch_add(&r->sum, b->data[0]); /* a read before the release */
        rc_blob_release(b);
    }
    return NULL;
}

Test(blob, concurrent_releases_free_once)
{
    struct blob_race r = {0};
    pthread_t th[BLOB_RACE_THREADS];
    for (int i = 0; i < BLOB_RACE_THREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, blob_race_thread, &r), 0);
    for (int i = 0; i < BLOB_RACE_ROUNDS; i++) {
        struct rc_blob *b = rc_blob_copy("\x01", 1);
        cr_assert_not_null(b);
        for (int k = 0; k < BLOB_RACE_THREADS; k++)
            rc_blob_hold(b);
        for (int k = 0; k < BLOB_RACE_THREADS; k++)
            while (atomic_load(&r.slot[k]) != NULL)
                sched_yield();
        for (int k = 0; k < BLOB_RACE_THREADS; k++)
            atomic_store(&r.slot[k], b);
        rc_blob_release(b); /* maybe first, maybe last */
    }
    for (int i = 0; i < BLOB_RACE_THREADS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&r.sum), (unsigned)(BLOB_RACE_THREADS * BLOB_RACE_ROUNDS));
}

Test(alloc, stats_report_backend)
{
    struct rc_alloc_stats st;
    int rv = rc_alloc_stats(&st);
    if (strcmp(rc_alloc_backend(), "jemalloc") == 0)
        cr_assert_eq(rv, RC_OK);
    else
        cr_assert_eq(rv, RC_ENOTSUP);
    char *s = rc_strndup("abcdef", 3);
    cr_assert_str_eq(s, "abc");
    rc_free(s);
}

Test(clock, monotonic_moves_forward)
{
    uint64_t a = rc_clock_mono_ns();
    rc_clock_sleep_ms(2);
    uint64_t b = rc_clock_mono_ns();
    cr_assert_geq(b - a, 2000000u);
    cr_assert_gt(rc_clock_wall_ms(), 1600000000000LL);
}

Test(listen_line, finds_each_entry_by_its_whole_label)
{
    const char *out = "some log line\n"
                      "runcastd listening: ingest tcp://127.0.0.1:40001, ingest-ack "
                      "tcp://127.0.0.2:40002, http 127.0.0.1:40003\n";
    char a[64];
    cr_assert_eq(rc_listen_line_find(out, "ingest", a, sizeof(a)), RC_OK);
    cr_assert_str_eq(a, "tcp://127.0.0.1:40001");
    cr_assert_eq(rc_listen_line_port(a), 40001);
    cr_assert_eq(rc_listen_line_find(out, "ingest-ack", a, sizeof(a)), RC_OK);
    cr_assert_str_eq(a, "tcp://127.0.0.2:40002");
    cr_assert_eq(rc_listen_line_find(out, "http", a, sizeof(a)), RC_OK);
    cr_assert_str_eq(a, "127.0.0.1:40003");
    cr_assert_eq(rc_listen_line_port(a), 40003);
}

Test(listen_line, first_of_several_urls_and_missing_entries)
{
    const char *two = "runcastd listening: ingest ipc:///tmp/a.sock, ingest tcp://[::1]:7450, "
                      "ingest-ack tcp://127.0.0.1:7451";
    char a[64];
    cr_assert_eq(rc_listen_line_find(two, "ingest", a, sizeof(a)), RC_OK);
    cr_assert_str_eq(a, "ipc:///tmp/a.sock");
    cr_assert_eq(rc_listen_line_find(two, "http", a, sizeof(a)), RC_ENOTFOUND);
    cr_assert_eq(rc_listen_line_find(two, "ingest-a", a, sizeof(a)), RC_ENOTFOUND);
    cr_assert_eq(rc_listen_line_find("runcastd starting", "ingest", a, sizeof(a)), RC_ENOTFOUND);
    cr_assert_eq(rc_listen_line_find(two, "ingest-ack", a, 8), RC_ETOOBIG);
    cr_assert_eq(rc_listen_line_port("ipc:///tmp/a.sock"), -1);
    cr_assert_eq(rc_listen_line_port("tcp://[::1]:7450"), 7450);
    cr_assert_eq(rc_listen_line_port("h:"), -1);
    cr_assert_eq(rc_listen_line_port("h:70000"), -1);
}

Test(clock, cond_waits_measure_their_deadline_on_the_monotonic_clock)
{
    /* A monotonic deadline 30 ms ahead: a wall-clock condition variable
     * would read it as decades past and return at once. */
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    cr_assert_eq(rc_clock_cond_init(&cv), 0);
    uint64_t t0 = rc_clock_mono_ns();
    uint64_t due = t0 + 30000000u;
    struct timespec ts = {.tv_sec = (time_t)(due / 1000000000u),
                          .tv_nsec = (long)(due % 1000000000u)};
    pthread_mutex_lock(&m);
    int e = 0;
    while (e != ETIMEDOUT)
        e = pthread_cond_timedwait(&cv, &m, &ts);
    pthread_mutex_unlock(&m);
    cr_assert_geq(rc_clock_mono_ns(), due);
    pthread_cond_destroy(&cv);
}
