/*
 * rc_edge: lifecycle, the HTTP server, the WebSocket upgrade, and the
 * registry of connection actors.
 */
#include "rc_edge.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "rc_alloc.h"
#include "rc_broker.h"
#include "rc_clock.h"
#include "rc_config.h"
#include "rc_edge_int.h"
#include "rc_error.h"
#include "rc_log.h"
#include "rc_ws.h"

const uint64_t rc_edge_lat_bound_us[RC_EDGE_LAT_BUCKETS - 1] = {
    25,   50,    100,   200,   300,    500,    1000,    2000,
    5000, 10000, 25000, 50000, 100000, 250000, 1000000, 5000000};

void rc_edge_lat_observe(struct rc_edge_hot *h, uint64_t us)
{
    unsigned i = 0;
    while (i < RC_EDGE_LAT_BUCKETS - 1 && us > rc_edge_lat_bound_us[i])
        i++;
    rc_metric_add(&h->lat[i], 1);
    rc_metric_add(&h->lat_sum_us, us);
    rc_metric_add(&h->lat_count, 1);
}

/* relaxed: a unique number, nothing is ordered by it */
static _Atomic uint64_t edge_ids;
/* This thread's shard and the edge it belongs to (owner thread only). */
static _Thread_local uint64_t tl_edge_id;
static _Thread_local struct rc_edge_hot *tl_hot;

struct rc_edge_hot *rc_edge_hot(struct rc_edge *e)
{
    if (tl_hot != NULL && tl_edge_id == e->id)
        return tl_hot;
    struct rc_edge_hot *h = rc_calloc(1, sizeof(*h));
    if (h == NULL)
        return &e->hot_shared; /* shared, still correct (atomic adds) */
    pthread_mutex_lock(&e->mtx);
    h->next = e->hots;
    e->hots = h;
    pthread_mutex_unlock(&e->mtx);
    tl_edge_id = e->id;
    tl_hot = h;
    return h;
}

static void hot_add(struct rc_edge_hot *out, const struct rc_edge_hot *h)
{
    rc_metric_add(&out->frames_sent, rc_metric_get(&h->frames_sent));
    rc_metric_add(&out->bytes_sent, rc_metric_get(&h->bytes_sent));
    rc_metric_add(&out->msgs_sent, rc_metric_get(&h->msgs_sent));
    rc_metric_add(&out->coalesced_frames, rc_metric_get(&h->coalesced_frames));
    rc_metric_add(&out->writes_blocked, rc_metric_get(&h->writes_blocked));
    for (unsigned i = 0; i < RC_EDGE_LAT_BUCKETS; i++)
        rc_metric_add(&out->lat[i], rc_metric_get(&h->lat[i]));
    rc_metric_add(&out->lat_sum_us, rc_metric_get(&h->lat_sum_us));
    rc_metric_add(&out->lat_count, rc_metric_get(&h->lat_count));
}

void rc_edge_hot_sum(struct rc_edge *e, struct rc_edge_hot *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&e->mtx);
    for (const struct rc_edge_hot *h = e->hots; h != NULL; h = h->next)
        hot_add(out, h);
    hot_add(out, &e->hot_shared);
    pthread_mutex_unlock(&e->mtx);
    out->next = NULL;
}

/* ---- registry ---- */

void rc_edge_conn_register(struct rc_edge *e, struct rc_edge_conn *c)
{
    struct rc_edge_conn_link *l = rc_edge_conn_link(c);
    pthread_mutex_lock(&e->mtx);
    l->prev = NULL;
    l->next = e->conns;
    if (e->conns != NULL)
        rc_edge_conn_link(e->conns)->prev = c;
    e->conns = c;
    pthread_mutex_unlock(&e->mtx);
    rc_metric_add(&e->m.conns_open, 1);
}

void rc_edge_conn_unregister(struct rc_edge *e, struct rc_edge_conn *c)
{
    struct rc_edge_conn_link *l = rc_edge_conn_link(c);
    pthread_mutex_lock(&e->mtx);
    if (l->prev != NULL)
        rc_edge_conn_link(l->prev)->next = l->next;
    else
        e->conns = l->next;
    if (l->next != NULL)
        rc_edge_conn_link(l->next)->prev = l->prev;
    rc_metric_sub(&e->m.conns_open, 1);
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mtx);
}

uint64_t rc_edge_connections(const struct rc_edge *e)
{
    return rc_metric_get(&e->m.conns_open);
}

/* ---- the upgrade (runs on an nng thread) ---- */

/* Whether header value v holds token t (comma separated, case-insensitive). */
static bool has_token(const char *v, const char *t)
{
    size_t tl = strlen(t);
    while (v != NULL && *v != '\0') {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *end = v;
        while (*end != '\0' && *end != ',')
            end++;
        const char *e2 = end;
        while (e2 > v && (e2[-1] == ' ' || e2[-1] == '\t'))
            e2--;
        if ((size_t)(e2 - v) == tl && strncasecmp(v, t, tl) == 0)
            return true;
        v = end;
    }
    return false;
}

/* Parses the query of /ws: only `format=msgpack|json`.  Returns false on
 * anything else (message in *why). */
static bool ws_query(const char *uri, bool *json, const char **why)
{
    *json = false;
    const char *q = strchr(uri, '?');
    if (q == NULL)
        return true;
    q++;
    while (*q != '\0') {
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t)(amp - q) : strlen(q);
        if (n == 0) {
            /* empty parameter: ignore */
        } else if (n == 11 && strncmp(q, "format=json", 11) == 0) {
            *json = true;
        } else if (n == 14 && strncmp(q, "format=msgpack", 14) == 0) {
            *json = false;
        } else if (n >= 7 && strncmp(q, "format=", 7) == 0) {
            *why = "format must be json or msgpack";
            return false;
        } else {
            *why = "unknown query parameter (only format is accepted)";
            return false;
        }
        q += n;
        if (*q == '&')
            q++;
    }
    return true;
}

void rc_edge_ws_upgrade(struct rc_edge_req *r)
{
    struct rc_edge *e = r->e;
    const char *why = NULL;
    bool json = false;

    /* acquire: pairs with the release store in rc_edge_start/stop */
    if (!atomic_load_explicit(&e->serving, memory_order_acquire)) {
        rc_edge_respond_error(r, 503, "unavailable", "the broker is shutting down");
        return;
    }
    if (!ws_query(r->target, &json, &why)) {
        rc_metric_add(&e->m.conns_bad, 1);
        rc_edge_respond_error(r, 400, "bad_query", why);
        return;
    }
    const char *up = rc_edge_req_header(r, "Upgrade");
    const char *cn = rc_edge_req_header(r, "Connection");
    if (up == NULL || !has_token(up, "websocket") || cn == NULL || !has_token(cn, "upgrade")) {
        rc_metric_add(&e->m.conns_bad, 1);
        rc_edge_respond_error(r, 400, "not_websocket",
                              "/ws takes WebSocket upgrades (Upgrade: websocket)");
        return;
    }
    const char *ver = rc_edge_req_header(r, "Sec-WebSocket-Version");
    if (ver == NULL || strcmp(ver, "13") != 0) {
        rc_metric_add(&e->m.conns_bad, 1);
        rc_edge_respond_error(r, 426, "bad_version", "Sec-WebSocket-Version must be 13");
        return;
    }
    char accept[29];
    if (rc_ws_accept_key(rc_edge_req_header(r, "Sec-WebSocket-Key"), accept) != 0) {
        rc_metric_add(&e->m.conns_bad, 1);
        rc_edge_respond_error(r, 400, "bad_key", "Sec-WebSocket-Key is not 16 bytes in base64");
        return;
    }
    const char *origin = rc_edge_req_header(r, "Origin");
    if (origin != NULL && !rc_config_origin_allowed(e->cfg, origin, strlen(origin))) {
        rc_metric_add(&e->m.conns_forbidden, 1);
        RC_LOG_RATELIMITED(RC_LOG_INFO, "edge", NULL, NULL,
                           "refused a WebSocket upgrade from Origin '%.100s' (--allow-origin)",
                           origin);
        rc_edge_respond_error(r, 403, "forbidden_origin",
                              "this Origin is not allowed (--allow-origin)");
        return;
    }
    bool full = rc_metric_get(&e->m.conns_open) >= e->cfg->ws_max_conns;
    if (full)
        rc_metric_add(&e->m.conns_full, 1);
    else
        rc_metric_add(&e->m.conns_accepted, 1);

    /* The connection leaves the HTTP server for its actor, with whatever
     * the client sent after the request (frames may follow at once). */
    nng_stream *s;
    const void *early;
    size_t early_len;
    rc_edge_take_stream(r, &s, &early, &early_len);
    (void)rc_edge_conn_spawn(e, s, accept, json, full, early, early_len);
    rc_edge_take_done(r);
}

/* ---- lifecycle ---- */

int rc_edge_new(const struct rc_config *cfg, struct rc_broker *broker, struct rc_edge **out)
{
    struct rc_edge *e = rc_calloc(1, sizeof(*e));
    if (e == NULL)
        return RC_ENOMEM;
    e->cfg = cfg;
    e->broker = broker;
    if (broker != NULL) {
        e->sys = rc_broker_system(broker);
        e->runs = rc_broker_runs(broker);
        e->epoch = rc_broker_epoch(broker);
    }
    rc_proto_limits_default(&e->lim);
    e->lim.client_frame_max = (uint32_t)cfg->ws_max_frame;
    e->lim.id_max_bytes = (uint32_t)cfg->max_id_bytes;
    pthread_mutex_init(&e->mtx, NULL);
    pthread_mutex_init(&e->listen_mtx, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->id = atomic_fetch_add_explicit(&edge_ids, 1, memory_order_relaxed) + 1;
    *out = e;
    return RC_OK;
}

int rc_edge_start(struct rc_edge *e)
{
    const struct rc_config *cfg = e->cfg;
    if (e->sys == NULL)
        return RC_EINVAL;
    const char *host = cfg->http_host != NULL ? cfg->http_host : "127.0.0.1";
    e->started_ms = rc_clock_wall_ms();
    /* release: pairs with the handlers' acquire loads (set before the
     * first connection can arrive) */
    atomic_store_explicit(&e->serving, true, memory_order_release);
    int rv = rc_edge_srv_start(e);
    if (rv != 0) {
        atomic_store_explicit(&e->serving, false, memory_order_release);
        return rv;
    }
    rc_log(RC_LOG_INFO, "edge", NULL, NULL, "serving HTTP and WebSocket on %s:%u", host,
           (unsigned)e->port);
    return RC_OK;
}

uint16_t rc_edge_port(const struct rc_edge *e)
{
    return e->port;
}

bool rc_edge_serving(const struct rc_edge *e)
{
    /* acquire: as in the handlers */
    return atomic_load_explicit(&((struct rc_edge *)e)->serving, memory_order_acquire);
}

/* Sends fn to every live connection: the actors are held under the lock,
 * the messages sent after it. */
static void for_each_conn(struct rc_edge *e, void (*fn)(struct rc_actor *))
{
    size_t n = 0, cap = 0;
    struct rc_actor **v = NULL;
    pthread_mutex_lock(&e->mtx);
    for (struct rc_edge_conn *c = e->conns; c != NULL; c = rc_edge_conn_link(c)->next)
        cap++;
    if (cap > 0)
        v = rc_malloc(sizeof(*v) * cap);
    for (struct rc_edge_conn *c = e->conns; c != NULL && v != NULL; c = rc_edge_conn_link(c)->next)
        v[n++] = rc_actor_hold(rc_edge_conn_actor(c));
    pthread_mutex_unlock(&e->mtx);
    for (size_t i = 0; i < n; i++) {
        fn(v[i]);
        rc_actor_release(v[i]);
    }
    rc_free(v);
}

static void kill_conn(struct rc_actor *a)
{
    rc_actor_stop(a, RC_ESHUTDOWN);
}

void rc_edge_stop(struct rc_edge *e)
{
    if (e == NULL)
        return;
    pthread_mutex_lock(&e->mtx);
    bool was = e->stopping;
    e->stopping = true;
    pthread_mutex_unlock(&e->mtx);
    if (was)
        return;
    /* release: handlers that see false refuse new work */
    atomic_store_explicit(&e->serving, false, memory_order_release);

    /* No new connections, no HTTP sessions (pending /runs requests finish
     * first); then every WebSocket flushes and closes with 1001. */
    rc_edge_srv_stop(e);
    rc_edge_http_wait(e);
    for_each_conn(e, rc_edge_conn_shutdown);

    uint64_t deadline = rc_clock_mono_ms() + e->cfg->shutdown_timeout_ms;
    pthread_mutex_lock(&e->mtx);
    while (e->conns != NULL) {
        uint64_t now = rc_clock_mono_ms();
        if (now >= deadline)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t wait = deadline - now > 50 ? 50 : deadline - now;
        ts.tv_nsec += (long)(wait * 1000000);
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&e->cv, &e->mtx, &ts);
    }
    bool left = e->conns != NULL;
    pthread_mutex_unlock(&e->mtx);
    if (left) {
        rc_log(RC_LOG_WARN, "edge", NULL, NULL,
               "%llu connections did not close within --shutdown-timeout; cutting them",
               (unsigned long long)rc_edge_connections(e));
        for_each_conn(e, kill_conn);
        pthread_mutex_lock(&e->mtx);
        while (e->conns != NULL)
            pthread_cond_wait(&e->cv, &e->mtx);
        pthread_mutex_unlock(&e->mtx);
    }
}

void rc_edge_free(struct rc_edge *e)
{
    if (e == NULL)
        return;
    rc_edge_stop(e);
    while (e->hots != NULL) {
        struct rc_edge_hot *h = e->hots;
        e->hots = h->next;
        rc_free(h);
    }
    pthread_mutex_destroy(&e->mtx);
    pthread_mutex_destroy(&e->listen_mtx);
    pthread_cond_destroy(&e->cv);
    rc_free(e);
}
