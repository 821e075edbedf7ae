/* edge_fixture: see edge_fixture.h. */
#include "edge_fixture.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rc_buf.h"
#include "rc_json.h"
#include "rc_log.h"
#include "rc_proto.h"

void fx_start(struct fx *f, const char *const *opts)
{
    char err[256];
    memset(f, 0, sizeof(*f));
    rc_log_init(stderr, RC_LOG_ERROR, RC_LOG_TEXT);
    FX_ASSERT(rc_config_init(&f->cfg) == 0);
    static const char *const base[] = {
        "ingest",           "",   "ingest-ack", "",  "http", "127.0.0.1:0",
        "shutdown-timeout", "2s", "workers",    "2", NULL};
    for (size_t i = 0; base[i] != NULL; i += 2)
        FX_ASSERT(rc_config_set(&f->cfg, base[i], base[i + 1], "test", err, sizeof(err)) == 0, "%s",
                  err);
    for (size_t i = 0; opts != NULL && opts[i] != NULL; i += 2)
        FX_ASSERT(rc_config_set(&f->cfg, opts[i], opts[i + 1], "test", err, sizeof(err)) == 0, "%s",
                  err);
    FX_ASSERT(rc_broker_new(&f->cfg, &f->b) == 0);
    FX_ASSERT(rc_broker_start(f->b) == 0, "%s", rc_broker_error(f->b));
    FX_ASSERT(rc_edge_new(&f->cfg, f->b, &f->e) == 0);
    FX_ASSERT(rc_edge_start(f->e) == 0);
    f->port = rc_edge_port(f->e);
    FX_ASSERT(f->port != 0);
    f->epoch = rc_broker_epoch(f->b);
}

void fx_stop(struct fx *f)
{
    if (f->b != NULL)
        rc_broker_quiesce(f->b, 2000);
    rc_edge_stop(f->e);
    rc_broker_stop(f->b);
    rc_edge_free(f->e);
    rc_broker_free(f->b);
    rc_config_fini(&f->cfg);
    memset(f, 0, sizeof(*f));
}

struct ack {
    pthread_mutex_t mtx;
    pthread_cond_t cv;
    bool done;
    bool all_ok;
    uint64_t last_seq;
    char why[160];
};

static void ack_cb(void *arg, const struct rc_proto_ack_result *r, uint32_t n)
{
    struct ack *a = arg;
    pthread_mutex_lock(&a->mtx);
    a->all_ok = true;
    for (uint32_t i = 0; i < n; i++) {
        if (r[i].code != RC_PROTO_OK) {
            a->all_ok = false;
            snprintf(a->why, sizeof(a->why), "event %u: %s %s", i, rc_proto_code_name(r[i].code),
                     r[i].message ? r[i].message : "");
        } else {
            a->last_seq = r[i].seq;
        }
    }
    a->done = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mtx);
}

uint64_t fx_publish(struct fx *f, const char *json)
{
    struct rc_buf b;
    rc_buf_init(&b);
    FX_ASSERT(rc_json_to_msgpack(json, strlen(json), &b) == 0, "bad JSON: %s", json);
    struct ack a = {.mtx = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    FX_ASSERT(rc_broker_publish(f->b, b.data, b.len, 0, ack_cb, &a) == 0);
    rc_buf_fini(&b);
    pthread_mutex_lock(&a.mtx);
    while (!a.done)
        pthread_cond_wait(&a.cv, &a.mtx);
    pthread_mutex_unlock(&a.mtx);
    FX_ASSERT(a.all_ok, "publish refused: %s (%s)", a.why, json);
    return a.last_seq;
}

uint64_t fx_publishf(struct fx *f, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return fx_publish(f, buf);
}
