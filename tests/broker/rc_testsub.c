#include "rc_testsub.h"

#include <msgpack.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rc_alloc.h"
#include "rc_blob.h"
#include "rc_clock.h"

struct rc_testsub {
    struct rc_actor *actor;
    pthread_mutex_t mtx; /* protects v, n, cap */
    pthread_cond_t cond;
    struct rc_tframe *v;
    size_t n, cap;
    bool finished; /* protected by mtx: the actor's fini ran */
};

static void fini(void *state, int reason)
{
    struct rc_testsub *ts = state;
    pthread_mutex_lock(&ts->mtx);
    ts->finished = true;
    pthread_cond_broadcast(&ts->cond);
    pthread_mutex_unlock(&ts->mtx);
}

static void behaviour(struct rc_actor *self, void *state, struct rc_msg *msg)
{
    struct rc_testsub *ts = state;
    if (msg->type != RC_MSG_SUB_FRAME)
        return;
    struct rc_sub_frame *f = (struct rc_sub_frame *)msg;
    struct rc_tframe t;
    memset(&t, 0, sizeof(t));
    t.kind = f->kind;
    t.sub_id = f->sub_id;
    t.seq = f->seq;
    t.terminal = f->terminal;
    t.replay = f->replay;
    size_t rl = f->run->len < 129 ? f->run->len : 129;
    memcpy(t.run, f->run->data, rl);
    t.raw = rc_malloc(f->blob->len);
    memcpy(t.raw, f->blob->data, f->blob->len);
    t.len = f->blob->len;
    pthread_mutex_lock(&ts->mtx);
    if (ts->n == ts->cap) {
        ts->cap = ts->cap ? ts->cap * 2 : 64;
        ts->v = rc_realloc(ts->v, ts->cap * sizeof(*ts->v));
    }
    ts->v[ts->n++] = t;
    pthread_cond_broadcast(&ts->cond);
    pthread_mutex_unlock(&ts->mtx);
}

int rc_testsub_new(struct rc_actor_system *sys, struct rc_testsub **out)
{
    struct rc_testsub *ts = rc_calloc(1, sizeof(*ts));
    pthread_mutex_init(&ts->mtx, NULL);
    rc_clock_cond_init(&ts->cond);
    struct rc_actor_opts o = {.mailbox_limit = 0, .name = "testsub"};
    int rc = rc_actor_spawn(sys, behaviour, ts, fini, &o, &ts->actor);
    if (rc != 0) {
        rc_free(ts);
        return rc;
    }
    *out = ts;
    return 0;
}

struct rc_actor *rc_testsub_actor(struct rc_testsub *ts)
{
    return ts->actor;
}

void rc_testsub_free(struct rc_testsub *ts)
{
    if (!ts)
        return;
    rc_actor_stop(ts->actor, 0);
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += 5;
    pthread_mutex_lock(&ts->mtx);
    while (!ts->finished)
        if (pthread_cond_timedwait(&ts->cond, &ts->mtx, &dl) != 0)
            break;
    bool finished = ts->finished;
    pthread_mutex_unlock(&ts->mtx);
    rc_actor_release(ts->actor);
    if (!finished)
        return; /* leak rather than free under a running behaviour */
    for (size_t i = 0; i < ts->n; i++)
        rc_free(ts->v[i].raw);
    rc_free(ts->v);
    pthread_mutex_destroy(&ts->mtx);
    pthread_cond_destroy(&ts->cond);
    rc_free(ts);
}

size_t rc_testsub_count(struct rc_testsub *ts)
{
    pthread_mutex_lock(&ts->mtx);
    size_t n = ts->n;
    pthread_mutex_unlock(&ts->mtx);
    return n;
}

static void deadline(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

bool rc_testsub_wait(struct rc_testsub *ts, size_t n, uint64_t timeout_ms)
{
    struct timespec dl;
    deadline(&dl, timeout_ms);
    pthread_mutex_lock(&ts->mtx);
    while (ts->n < n) {
        if (pthread_cond_timedwait(&ts->cond, &ts->mtx, &dl) != 0)
            break;
    }
    bool ok = ts->n >= n;
    pthread_mutex_unlock(&ts->mtx);
    return ok;
}

bool rc_testsub_wait_terminal(struct rc_testsub *ts, const char *run, uint64_t timeout_ms)
{
    struct timespec dl;
    deadline(&dl, timeout_ms);
    pthread_mutex_lock(&ts->mtx);
    size_t i = 0;
    bool found = false;
    for (;;) {
        for (; i < ts->n && !found; i++)
            found = ts->v[i].terminal && strcmp(ts->v[i].run, run) == 0;
        if (found)
            break;
        if (pthread_cond_timedwait(&ts->cond, &ts->mtx, &dl) != 0)
            break;
    }
    for (; i < ts->n && !found; i++)
        found = ts->v[i].terminal && strcmp(ts->v[i].run, run) == 0;
    pthread_mutex_unlock(&ts->mtx);
    return found;
}

bool rc_testsub_get(struct rc_testsub *ts, size_t i, struct rc_tframe *out)
{
    pthread_mutex_lock(&ts->mtx);
    bool ok = i < ts->n;
    if (ok)
        *out = ts->v[i];
    pthread_mutex_unlock(&ts->mtx);
    return ok;
}

/* ---- msgpack-c lookups ---- */

static bool lookup(const void *raw, size_t len, const char *path, msgpack_unpacked *u,
                   msgpack_object *out)
{
    size_t off = 0;
    if (msgpack_unpack_next(u, raw, len, &off) != MSGPACK_UNPACK_SUCCESS)
        return false;
    msgpack_object o = u->data;
    const char *p = path;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t kl = dot ? (size_t)(dot - p) : strlen(p);
        if (o.type == MSGPACK_OBJECT_ARRAY && kl > 0 && p[0] >= '0' && p[0] <= '9') {
            size_t idx = strtoul(p, NULL, 10);
            if (idx >= o.via.array.size)
                return false;
            o = o.via.array.ptr[idx];
            p = dot ? dot + 1 : p + kl;
            continue;
        }
        if (o.type != MSGPACK_OBJECT_MAP)
            return false;
        bool found = false;
        for (uint32_t i = 0; i < o.via.map.size; i++) {
            msgpack_object *k = &o.via.map.ptr[i].key;
            if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl &&
                memcmp(k->via.str.ptr, p, kl) == 0) {
                o = o.via.map.ptr[i].val;
                found = true;
                break;
            }
        }
        if (!found)
            return false;
        p = dot ? dot + 1 : p + kl;
    }
    *out = o;
    return true;
}

bool rc_mp_str(const void *raw, size_t len, const char *path, char *out, size_t cap)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    msgpack_object o;
    bool ok = lookup(raw, len, path, &u, &o) && o.type == MSGPACK_OBJECT_STR;
    if (ok) {
        size_t n = o.via.str.size < cap - 1 ? o.via.str.size : cap - 1;
        memcpy(out, o.via.str.ptr, n);
        out[n] = 0;
    }
    msgpack_unpacked_destroy(&u);
    return ok;
}

/* The value at path, unpacked and released again: only what the object
 * holds itself stays valid (a number, a boolean, a size), never what it
 * points at.  False when absent. */
static bool lookup_scalar(const void *raw, size_t len, const char *path, msgpack_object *out)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    bool ok = lookup(raw, len, path, &u, out);
    msgpack_unpacked_destroy(&u);
    return ok;
}

bool rc_mp_uint(const void *raw, size_t len, const char *path, uint64_t *out)
{
    msgpack_object o;
    bool ok = lookup_scalar(raw, len, path, &o) && o.type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    if (ok)
        *out = o.via.u64;
    return ok;
}

bool rc_mp_bool(const void *raw, size_t len, const char *path, bool *out)
{
    msgpack_object o;
    bool ok = lookup_scalar(raw, len, path, &o) && o.type == MSGPACK_OBJECT_BOOLEAN;
    if (ok)
        *out = o.via.boolean;
    return ok;
}

long rc_mp_len(const void *raw, size_t len, const char *path)
{
    msgpack_object o;
    if (!lookup_scalar(raw, len, path, &o))
        return -1;
    if (o.type == MSGPACK_OBJECT_ARRAY)
        return o.via.array.size;
    if (o.type == MSGPACK_OBJECT_MAP)
        return o.via.map.size;
    if (o.type == MSGPACK_OBJECT_STR)
        return o.via.str.size;
    return -1;
}

bool rc_mp_has(const void *raw, size_t len, const char *path)
{
    msgpack_object o;
    return lookup_scalar(raw, len, path, &o) && o.type != MSGPACK_OBJECT_NIL;
}
