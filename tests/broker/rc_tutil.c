#include "rc_tutil.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rc_clock.h"
#include "rc_log.h"
#include "rc_testsub.h"

void tb_start(struct rc_tb *t, const char *const *opts)
{
    char err[256];
    cr_assert_eq(rc_config_init(&t->cfg), 0);
    cr_assert_eq(rc_config_set(&t->cfg, "ingest", "", "test", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(rc_config_set(&t->cfg, "ingest-ack", "", "test", err, sizeof(err)), 0, "%s", err);
    /* the test_*_nngpull variants: nng's PULL socket instead of rc_sppull */
    if (getenv("RC_TEST_NNG_PULL"))
        cr_assert_eq(rc_config_set(&t->cfg, "ingest-stream-reader", "0", "test", err, sizeof(err)),
                     0, "%s", err);
    for (size_t i = 0; opts && opts[i]; i += 2)
        cr_assert_eq(rc_config_set(&t->cfg, opts[i], opts[i + 1], "test", err, sizeof(err)), 0,
                     "%s", err);
    rc_log_init(NULL,
                getenv("RC_TEST_LOG")                   ? RC_LOG_DEBUG
                : RC_LOG_CRITICAL + 1 > RC_LOG_CRITICAL ? RC_LOG_CRITICAL
                                                        : RC_LOG_CRITICAL,
                RC_LOG_TEXT);
    cr_assert_eq(rc_broker_new(&t->cfg, &t->b), 0);
    cr_assert_eq(rc_broker_start(t->b), 0, "%s", rc_broker_error(t->b));
}

void tb_stop(struct rc_tb *t)
{
    rc_broker_free(t->b);
    t->b = NULL;
    rc_config_fini(&t->cfg);
}

struct rc_testsub *tb_subscribe(struct rc_tb *t, struct rc_sub_req r)
{
    struct rc_testsub *ts;
    cr_assert_eq(rc_testsub_new(rc_broker_system(t->b), &ts), 0);
    r.subscriber = rc_testsub_actor(ts);
    cr_assert_eq(rc_runs_subscribe(rc_broker_runs(t->b), &r), 0);
    return ts;
}

struct rc_testsub *tb_sub_run(struct rc_tb *t, const char *run)
{
    struct rc_testsub *ts;
    cr_assert_eq(rc_testsub_new(rc_broker_system(t->b), &ts), 0);
    struct rc_sub_req r = {
        .kind = RC_SUB_RUN,
        .target = run,
        .target_len = strlen(run),
        .subscriber = rc_testsub_actor(ts),
        .sub_id = 1,
    };
    cr_assert_eq(rc_runs_subscribe(rc_broker_runs(t->b), &r), 0);
    return ts;
}

struct waiter {
    pthread_mutex_t mtx;
    pthread_cond_t cond;
    bool done;
    struct tack *a;
};

static void done_cb(void *arg, const struct rc_proto_ack_result *r, uint32_t n)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->mtx);
    w->a->n = n;
    for (uint32_t i = 0; i < n && i < TACK_MAX; i++) {
        w->a->code[i] = r[i].code;
        w->a->seq[i] = r[i].seq;
        w->a->dup[i] = r[i].dup;
    }
    w->done = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mtx);
}

void tb_publish_raw(struct rc_tb *t, const void *buf, size_t len, uint32_t pipe, struct tack *a)
{
    struct waiter w = {.done = false, .a = a};
    pthread_mutex_init(&w.mtx, NULL);
    pthread_cond_init(&w.cond, NULL);
    memset(a, 0, sizeof(*a));
    cr_assert_eq(rc_broker_publish(t->b, buf, len, pipe, done_cb, &w), 0);
    uint64_t end = rc_clock_mono_ms() + 5000;
    pthread_mutex_lock(&w.mtx);
    while (!w.done && rc_clock_mono_ms() < end) {
        pthread_mutex_unlock(&w.mtx);
        rc_clock_sleep_ms(1);
        pthread_mutex_lock(&w.mtx);
    }
    bool done = w.done;
    pthread_mutex_unlock(&w.mtx);
    cr_assert(done, "no ack within 5 s");
    pthread_mutex_destroy(&w.mtx);
    pthread_cond_destroy(&w.cond);
}

static int count_timeouts(const char *s)
{
    int n = 1;
    for (; *s; s++)
        n += *s == ',';
    return n;
}

void tev_encode(struct rc_buf *b, const struct tev *e)
{
    uint32_t n = 0;
    n += !!e->run + !!e->type + !!e->conv + !!e->phase + !!e->text + !!e->id;
    n +=
        !!e->tool_id + !!e->item_id + !!e->err_code + !!e->timeouts + !!e->deadline + !!e->data_str;
    rc_mpw_map(b, n);
    if (e->run) {
        rc_mpw_cstr(b, "run");
        rc_mpw_cstr(b, e->run);
    }
    if (e->type) {
        rc_mpw_cstr(b, "type");
        rc_mpw_cstr(b, e->type);
    }
    if (e->conv) {
        rc_mpw_cstr(b, "conv");
        rc_mpw_cstr(b, e->conv);
    }
    if (e->phase) {
        rc_mpw_cstr(b, "phase");
        rc_mpw_cstr(b, e->phase);
    }
    if (e->text) {
        rc_mpw_cstr(b, "text");
        rc_mpw_cstr(b, e->text);
    }
    if (e->id) {
        rc_mpw_cstr(b, "id");
        rc_mpw_cstr(b, e->id);
    }
    if (e->tool_id) {
        rc_mpw_cstr(b, "tool");
        rc_mpw_map(b, e->tool_status ? 2 : 1);
        rc_mpw_cstr(b, "id");
        rc_mpw_cstr(b, e->tool_id);
        if (e->tool_status) {
            rc_mpw_cstr(b, "status");
            rc_mpw_cstr(b, e->tool_status);
        }
    }
    if (e->item_id) {
        rc_mpw_cstr(b, "item");
        rc_mpw_map(b, e->item_status ? 2 : 1);
        rc_mpw_cstr(b, "id");
        rc_mpw_cstr(b, e->item_id);
        if (e->item_status) {
            rc_mpw_cstr(b, "status");
            rc_mpw_cstr(b, e->item_status);
        }
    }
    if (e->err_code) {
        rc_mpw_cstr(b, "error");
        rc_mpw_map(b, 2);
        rc_mpw_cstr(b, "code");
        rc_mpw_cstr(b, e->err_code);
        rc_mpw_cstr(b, "message");
        rc_mpw_cstr(b, e->err_msg ? e->err_msg : "failed");
    }
    if (e->timeouts) {
        rc_mpw_cstr(b, "timeouts");
        rc_mpw_map(b, (uint32_t)count_timeouts(e->timeouts));
        char tmp[256];
        strncpy(tmp, e->timeouts, sizeof(tmp) - 1);
        tmp[sizeof(tmp) - 1] = 0;
        for (char *save = NULL, *tok = strtok_r(tmp, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(tok, '=');
            *eq = 0;
            rc_mpw_cstr(b, tok);
            rc_mpw_uint(b, strtoull(eq + 1, NULL, 10));
        }
    }
    if (e->deadline) {
        rc_mpw_cstr(b, "deadline");
        rc_mpw_uint(b, e->deadline);
    }
    if (e->data_str) {
        rc_mpw_cstr(b, "data");
        rc_mpw_cstr(b, e->data_str);
    }
}

enum rc_proto_code tb_pub(struct rc_tb *t, const struct tev *e, uint32_t pipe, uint64_t *seq)
{
    struct rc_buf b;
    rc_buf_init(&b);
    tev_encode(&b, e);
    static struct tack a; /* one test thread per process */
    tb_publish_raw(t, b.data, b.len, pipe, &a);
    rc_buf_fini(&b);
    cr_assert_eq(a.n, 1);
    if (seq)
        *seq = a.seq[0];
    return a.code[0];
}

void tb_pub_batch(struct rc_tb *t, const struct tev *e, size_t n, uint32_t pipe, struct tack *a)
{
    struct rc_buf b;
    rc_buf_init(&b);
    rc_mpw_array(&b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        tev_encode(&b, &e[i]);
    tb_publish_raw(t, b.data, b.len, pipe, a);
    rc_buf_fini(&b);
}
