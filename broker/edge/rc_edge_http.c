/*
 * rc_edge_http: the HTTP endpoints next to /ws.
 *
 *   GET /healthz                  200 {"status":"ok",...} or 503 {"status":"unavailable","reason"}
 *   GET /metrics                  Prometheus text format 0.0.4
 *   GET /runs?status=&conv=&limit=   JSON list, newest first
 *   GET /runs/{run}               the run's snapshot as JSON
 *   GET /runs/{run}/events?since=N&limit=M   retained history as JSON
 *
 * Every request is validated: unknown paths 404, other methods 405, bad
 * query parameters 400, each with a JSON body {"error": code, "message"}.
 * The run API asks the run registry, which answers on a worker thread; the
 * handler finishes the nng aio from there.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rc_alloc.h"
#include "rc_broker.h"
#include "rc_buf.h"
#include "rc_clock.h"
#include "rc_config.h"
#include "rc_edge_int.h"
#include "rc_error.h"
#include "rc_json.h"
#include "rc_log.h"
#include "rc_runs.h"

/* ---- responses ---- */

static void json_str(struct rc_buf *b, const char *s, size_t n)
{
    rc_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            rc_buf_append(b, esc, 2);
        } else if (ch < 0x20) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            rc_buf_append(b, esc, 6);
        } else {
            rc_buf_append(b, &s[i], 1);
        }
    }
    rc_buf_append(b, "\"", 1);
}

static void bprintf(struct rc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(struct rc_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        rc_buf_append(b, tmp, (size_t)n);
        return;
    }
    if (rc_buf_reserve(b, (size_t)n + 1) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void reply(struct rc_edge_req *r, uint16_t status, const char *ctype, const void *body,
                  size_t len)
{
    rc_edge_respond(r, status, ctype, body, len, NULL, false);
}

static void error_reply(struct rc_edge_req *r, uint16_t status, const char *code, const char *msg)
{
    rc_edge_respond_error(r, status, code, msg);
}

/* ---- request parsing ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

struct qparam {
    const char *key;
    size_t key_len;
    const char *val;
    size_t val_len;
};

/* Percent-decodes src[0..n) into dst (cap bytes; '+' is a space, as in
 * form encoding).  Returns the decoded length, or -1 when it is malformed
 * or does not fit. */
static long url_decode(const char *src, size_t n, char *dst, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = src[i];
        if (ch == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = (char)(hi << 4 | lo);
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (o == cap)
            return -1;
        dst[o++] = ch;
    }
    return (long)o;
}

/* Splits the query of uri into at most max parameters, values decoded into
 * scratch.  Returns the count, -1 when there are more, -2 when a value is
 * badly encoded or too long.  *path_len gets the length of the path. */
static int split_query(const char *uri, size_t *path_len, struct qparam *v, int max, char *scratch,
                       size_t scratch_len)
{
    const char *q = strchr(uri, '?');
    *path_len = q != NULL ? (size_t)(q - uri) : strlen(uri);
    int n = 0;
    size_t used = 0;
    if (q == NULL)
        return 0;
    q++;
    while (*q != '\0') {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > 0) {
            if (n == max)
                return -1;
            const char *eq = memchr(q, '=', len);
            v[n].key = q;
            v[n].key_len = eq ? (size_t)(eq - q) : len;
            const char *raw = eq ? eq + 1 : q + len;
            size_t raw_len = eq ? len - v[n].key_len - 1 : 0;
            long d = url_decode(raw, raw_len, scratch + used, scratch_len - used);
            if (d < 0)
                return -2;
            v[n].val = scratch + used;
            v[n].val_len = (size_t)d;
            used += (size_t)d;
            n++;
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return n;
}

static bool key_is(const struct qparam *p, const char *k)
{
    return p->key_len == strlen(k) && memcmp(p->key, k, p->key_len) == 0;
}

static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* Tracks an asynchronous request so rc_edge_stop waits for it. */
static void pending_add(struct rc_edge *e)
{
    /* relaxed: the decrement (acq_rel) and stop's acquire load order the
     * end of the request; the increment happens before the registry call
     * that may finish it, on this thread. */
    atomic_fetch_add_explicit(&e->http_pending, 1, memory_order_relaxed);
}

static void pending_done(struct rc_edge *e)
{
    /* acq_rel: pairs with the acquire load in rc_edge_http_wait */
    atomic_fetch_sub_explicit(&e->http_pending, 1, memory_order_acq_rel);
}

/* ---- /healthz ---- */

void rc_edge_http_healthz(struct rc_edge_req *aio)
{
    struct rc_edge *e = aio->e;
    size_t plen;
    struct qparam q[1];
    if (split_query(aio->target, &plen, q, 0, NULL, 0) != 0) {
        error_reply(aio, 400, "bad_query", "/healthz takes no query parameters");
        return;
    }
    bool ingress = e->broker != NULL && rc_broker_serving(e->broker);
    bool edge = rc_edge_serving(e);
    struct rc_buf b;
    rc_buf_init(&b);
    int64_t up = e->started_ms > 0 ? (rc_clock_wall_ms() - e->started_ms) / 1000 : 0;
    if (ingress && edge) {
        bprintf(&b,
                "{\"status\":\"ok\",\"epoch\":%" PRIu64 ",\"uptime_s\":%" PRId64
                ",\"connections\":%" PRIu64 "}\n",
                e->epoch, up, rc_edge_connections(e));
        reply(aio, 200, "application/json", b.data, b.len);
    } else {
        const char *why = !edge      ? "the edge is not serving (shutting down)"
                          : !ingress ? "the ingress is not serving (starting or shutting down)"
                                     : "";
        bprintf(&b, "{\"status\":\"unavailable\",\"ingress\":%s,\"edge\":%s,\"reason\":",
                ingress ? "true" : "false", edge ? "true" : "false");
        json_str(&b, why, strlen(why));
        rc_buf_append(&b, "}\n", 2);
        reply(aio, 503, "application/json", b.data, b.len);
    }
    rc_buf_fini(&b);
}

/* ---- /metrics ---- */

static void metric(struct rc_buf *b, const char *name, const char *type, const char *help,
                   uint64_t v)
{
    bprintf(b, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name, v);
}

static void metric_head(struct rc_buf *b, const char *name, const char *type, const char *help)
{
    bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A lateness histogram (rc_metrics.h: four buckets per power of two, in
 * us) with one Prometheus bucket per power of two: enough to read p50/p99
 * within a factor of two, at a quarter of the lines. */
static void late_histogram(struct rc_buf *b, const char *name, const char *help,
                           const rc_metric *hist, uint64_t sum_us)
{
    metric_head(b, name, "histogram", help);
    uint64_t cum = 0;
    for (unsigned i = 0; i < RC_METRICS_LATE_BUCKETS; i++) {
        cum += rc_metric_get(&hist[i]);
        if (i == RC_METRICS_LATE_BUCKETS - 1)
            bprintf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
        else if (i % 4 == 3)
            bprintf(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
                    (double)rc_metrics_late_bound(i) / 1e6, cum);
    }
    bprintf(b, "%s_sum %.6f\n%s_count %" PRIu64 "\n", name, (double)sum_us / 1e6, name, cum);
}

void rc_edge_http_metrics(struct rc_edge_req *aio)
{
    struct rc_edge *e = aio->e;
    size_t plen;
    struct qparam q[1];
    if (split_query(aio->target, &plen, q, 0, NULL, 0) != 0) {
        error_reply(aio, 400, "bad_query", "/metrics takes no query parameters");
        return;
    }
    struct rc_buf b;
    rc_buf_init(&b);
    rc_buf_reserve(&b, 16384);

    /* ---- core ---- */
    struct rc_metrics *m = e->broker != NULL ? rc_broker_metrics(e->broker) : NULL;
    if (m != NULL) {
        metric_head(&b, "runcast_runs", "gauge",
                    "Runs by status (pending and running are live; "
                    "completed and failed count ended runs)");
        bprintf(&b, "runcast_runs{status=\"pending\"} %" PRIu64 "\n",
                rc_metric_get(&m->runs_pending));
        bprintf(&b, "runcast_runs{status=\"running\"} %" PRIu64 "\n",
                rc_metric_get(&m->runs_running));
        bprintf(&b, "runcast_runs{status=\"completed\"} %" PRIu64 "\n",
                rc_metric_get(&m->runs_completed));
        bprintf(&b, "runcast_runs{status=\"failed\"} %" PRIu64 "\n",
                rc_metric_get(&m->runs_failed));
        metric(&b, "runcast_runs_active", "gauge", "Runs not ended yet (pending + running)",
               rc_metric_get(&m->runs_pending) + rc_metric_get(&m->runs_running));
        metric(&b, "runcast_runs_created_total", "counter", "Runs created",
               rc_metric_get(&m->runs_created));
        metric(&b, "runcast_runs_retained", "gauge", "Ended runs whose history is still kept",
               rc_metric_get(&m->runs_retained));
        metric(&b, "runcast_runs_tombstoned", "gauge", "Ended runs reduced to a tombstone",
               rc_metric_get(&m->runs_tombstoned));
        metric(&b, "runcast_runs_removed_total", "counter", "Tombstones expired",
               rc_metric_get(&m->runs_removed));
        metric_head(&b, "runcast_terminals_total", "counter", "Run terminals by cause");
        for (int i = 0; i < RC_TERM_CAUSE_COUNT; i++)
            bprintf(&b, "runcast_terminals_total{cause=\"%s\"} %" PRIu64 "\n",
                    rc_term_cause_name((enum rc_term_cause)i), rc_metric_get(&m->terminals[i]));
        metric(&b, "runcast_terminal_rejected_total", "counter",
               "Terminal events that failed validation", rc_metric_get(&m->terminal_rejected));
        metric(&b, "runcast_events_accepted_total", "counter", "Events assigned a seq",
               rc_metric_get(&m->events_accepted));
        metric(&b, "runcast_events_dup_total", "counter",
               "Idempotency repeats (acknowledged, not delivered)", rc_metric_get(&m->events_dup));
        metric_head(&b, "runcast_events_rejected_total", "counter", "Events rejected by reason");
        for (int i = 1; i < RC_PROTO_CODE_COUNT; i++)
            bprintf(&b, "runcast_events_rejected_total{reason=\"%s\"} %" PRIu64 "\n",
                    rc_proto_code_name((enum rc_proto_code)i),
                    rc_metric_get(&m->events_rejected[i]));
        metric(&b, "runcast_messages_rejected_total", "counter",
               "Publish messages refused whole (bad envelope)",
               rc_metric_get(&m->messages_rejected));
        metric(&b, "runcast_limit_rejections_total", "counter", "New runs refused by --max-runs",
               rc_metric_get(&m->limit_rejections));
        metric(&b, "runcast_mailbox_overloads_total", "counter",
               "Run mailbox full: events answered overloaded",
               rc_metric_get(&m->mailbox_overloads));
        metric_head(&b, "runcast_ingest_messages_total", "counter",
                    "Publish messages received by socket kind");
        for (int i = 0; i < RC_INGEST_KIND_COUNT; i++)
            bprintf(&b, "runcast_ingest_messages_total{socket=\"%s\"} %" PRIu64 "\n",
                    rc_ingest_kind_name((enum rc_ingest_kind)i),
                    rc_metric_get(&m->messages_received[i]));
        metric_head(&b, "runcast_ingest_bytes_total", "counter", "Publish bytes received");
        for (int i = 0; i < RC_INGEST_KIND_COUNT; i++)
            bprintf(&b, "runcast_ingest_bytes_total{socket=\"%s\"} %" PRIu64 "\n",
                    rc_ingest_kind_name((enum rc_ingest_kind)i),
                    rc_metric_get(&m->bytes_received[i]));
        metric_head(&b, "runcast_ingest_batch_events", "histogram", "Events per publish message");
        uint64_t cum = 0, cnt = 0;
        for (unsigned i = 0; i < RC_METRICS_BATCH_BUCKETS; i++) {
            cum += rc_metric_get(&m->batch_hist[i]);
            uint32_t bound = rc_metrics_batch_bound(i);
            if (bound == UINT32_MAX)
                bprintf(&b, "runcast_ingest_batch_events_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
            else
                bprintf(&b, "runcast_ingest_batch_events_bucket{le=\"%u\"} %" PRIu64 "\n", bound,
                        cum);
        }
        cnt = cum;
        bprintf(&b, "runcast_ingest_batch_events_sum %" PRIu64 "\n",
                rc_metric_get(&m->batch_events_sum));
        bprintf(&b, "runcast_ingest_batch_events_count %" PRIu64 "\n", cnt);
        metric(&b, "runcast_acks_sent_total", "counter", "Acknowledgements sent (REP)",
               rc_metric_get(&m->acks_sent));
        metric(&b, "runcast_ack_failures_total", "counter", "Acknowledgements that failed",
               rc_metric_get(&m->ack_failures));
        metric(&b, "runcast_ingest_errors_total", "counter", "Receive errors from nng",
               rc_metric_get(&m->ingest_errors));
        metric(&b, "runcast_ingest_connection_errors_total", "counter",
               "Publisher connections dropped for what they sent (not an SP PUSH, no SP header "
               "in time, a message over the limit)",
               rc_metric_get(&m->ingest_conn_errors));
        metric(&b, "runcast_ingest_pauses_total", "counter",
               "PULL receives parked because more than --run-mailbox-limit run messages were in "
               "flight (back-pressure to the publishers)",
               rc_metric_get(&m->ingest_pauses));
        metric(&b, "runcast_publisher_connections", "gauge",
               "Publisher connections open (PULL and REP, after their SP handshake)",
               rc_metric_get(&m->pipes_open));
        metric(&b, "runcast_publisher_pipes_closed_total", "counter",
               "Publisher connections closed", rc_metric_get(&m->pipes_closed));
        metric(&b, "runcast_run_subscriptions", "gauge",
               "Subscriber attachments to runs (run, conv and all)",
               rc_metric_get(&m->subscriptions));
        metric(&b, "runcast_fanout_frames_total", "counter",
               "Frames handed to subscriber actors by run actors", rc_metric_get(&m->frames_out));
        metric(&b, "runcast_fanout_frames_dropped_total", "counter",
               "Frames for subscribers that had stopped", rc_metric_get(&m->frames_dropped));
        metric_head(&b, "runcast_resumes_total", "counter",
                    "Resumes by outcome (exact: from history; gap: gap + snap; reset: other "
                    "epoch, snap)");
        bprintf(&b, "runcast_resumes_total{outcome=\"exact\"} %" PRIu64 "\n",
                rc_metric_get(&m->resumes_exact));
        bprintf(&b, "runcast_resumes_total{outcome=\"gap\"} %" PRIu64 "\n",
                rc_metric_get(&m->resumes_gap));
        bprintf(&b, "runcast_resumes_total{outcome=\"reset\"} %" PRIu64 "\n",
                rc_metric_get(&m->resumes_reset));
        metric(&b, "runcast_history_events", "gauge", "Event encodings held in histories",
               rc_metric_get(&m->history_events));
        metric(&b, "runcast_history_bytes", "gauge", "Bytes held in histories",
               rc_metric_get(&m->history_bytes));
        struct rc_actor_system_stats as;
        rc_actor_system_stats(e->sys, &as);
        metric(&b, "runcast_actors", "gauge", "Live actors", as.actors_live);
        metric(&b, "runcast_actor_messages_total", "counter", "Actor messages handled",
               as.messages_handled);
        metric(&b, "runcast_actor_inline_messages_total", "counter",
               "Of those, handled on the sending thread instead of queued to a worker "
               "(decoders on the nng thread that read their bytes, runs fed by an idle "
               "decoder or REP reader)",
               as.inline_handled);
        metric(&b, "runcast_actor_inline_nested_messages_total", "counter",
               "Of the inline ones, nested in another actor's turn (a run's in its "
               "decoder's)",
               as.inline_nested);
        metric(&b, "runcast_actor_inline_outside_messages_total", "counter",
               "Of the inline ones, on threads that are no worker (nng's I/O threads)",
               as.inline_outside);
        metric(&b, "runcast_actor_mailbox_overloads_total", "counter",
               "Sends refused by a full mailbox", as.overloads);
    }

    /* ---- edge ---- */
    struct rc_edge_metrics *x = &e->m;
    struct rc_edge_hot hot;
    rc_edge_hot_sum(e, &hot);
    metric(&b, "runcast_ws_connections", "gauge", "Open WebSocket connections",
           rc_metric_get(&x->conns_open));
    metric(&b, "runcast_ws_connections_accepted_total", "counter", "WebSocket upgrades done",
           rc_metric_get(&x->conns_accepted));
    metric_head(&b, "runcast_ws_refused_total", "counter",
                "WebSocket connections refused by reason");
    bprintf(&b, "runcast_ws_refused_total{reason=\"origin\"} %" PRIu64 "\n",
            rc_metric_get(&x->conns_forbidden));
    bprintf(&b, "runcast_ws_refused_total{reason=\"bad_request\"} %" PRIu64 "\n",
            rc_metric_get(&x->conns_bad));
    bprintf(&b, "runcast_ws_refused_total{reason=\"max_conns\"} %" PRIu64 "\n",
            rc_metric_get(&x->conns_full));
    metric_head(&b, "runcast_ws_closes_total", "counter", "WebSocket connections closed by cause");
    static const char *causes[] = {"slow_consumer", "abuse",    "protocol", "dropped",
                                   "write_timeout", "shutdown", "client"};
    const rc_metric *cv[] = {&x->closes_slow,    &x->closes_abuse,   &x->closes_protocol,
                             &x->closes_dropped, &x->closes_timeout, &x->closes_shutdown,
                             &x->closes_normal};
    for (size_t i = 0; i < sizeof(causes) / sizeof(causes[0]); i++)
        bprintf(&b, "runcast_ws_closes_total{cause=\"%s\"} %" PRIu64 "\n", causes[i],
                rc_metric_get(cv[i]));
    metric(&b, "runcast_ws_slow_consumer_closes_total", "counter",
           "Connections closed with 4008 (queue over --ws-queue-max)",
           rc_metric_get(&x->closes_slow));
    metric(&b, "runcast_ws_subscriptions", "gauge", "Subscriptions held by WebSocket connections",
           rc_metric_get(&x->subs));
    metric(&b, "runcast_ws_sub_requests_total", "counter", "sub requests answered ok",
           rc_metric_get(&x->sub_requests));
    metric(&b, "runcast_ws_unsub_requests_total", "counter", "unsub requests answered ok",
           rc_metric_get(&x->unsub_requests));
    metric(&b, "runcast_ws_client_messages_total", "counter", "Client messages received",
           rc_metric_get(&x->client_msgs));
    metric(&b, "runcast_ws_client_errors_total", "counter", "Client messages answered with err",
           rc_metric_get(&x->client_errors));
    metric(&b, "runcast_ws_frames_sent_total", "counter", "WebSocket frames written",
           rc_metric_get(&hot.frames_sent));
    metric(&b, "runcast_ws_bytes_sent_total", "counter", "Bytes written to WebSocket connections",
           rc_metric_get(&hot.bytes_sent));
    metric(&b, "runcast_ws_messages_sent_total", "counter",
           "Server messages written (a frame may coalesce several)", rc_metric_get(&hot.msgs_sent));
    metric(&b, "runcast_ws_coalesced_frames_total", "counter",
           "Frames carrying an array of several messages", rc_metric_get(&hot.coalesced_frames));
    metric(&b, "runcast_ws_writes_blocked_total", "counter",
           "Frames the socket did not take at once (finished by nng's poller)",
           rc_metric_get(&hot.writes_blocked));
    metric(&b, "runcast_ws_heartbeats_total", "counter", "hb frames sent",
           rc_metric_get(&x->hb_sent));
    metric(&b, "runcast_ws_frames_dropped_total", "counter",
           "Messages dropped because their connection was closing",
           rc_metric_get(&x->events_dropped));
    if (m != NULL) {
        late_histogram(&b, "runcast_watchdog_fire_lateness_seconds",
                       "Timer wheel firing a run's watchdog minus its due time",
                       m->watchdog_fire_late, rc_metric_get(&m->watchdog_fire_late_sum_us));
        late_histogram(&b, "runcast_watchdog_terminal_lateness_seconds",
                       "Synthesized terminal handed to subscribers minus the watchdog's due time",
                       m->watchdog_emit_late, rc_metric_get(&m->watchdog_emit_late_sum_us));
    }
    metric_head(&b, "runcast_fanout_latency_seconds", "histogram",
                "Broker receive to WebSocket frame written, per live event delivery");
    uint64_t cum = 0;
    for (unsigned i = 0; i < RC_EDGE_LAT_BUCKETS; i++) {
        cum += rc_metric_get(&hot.lat[i]);
        if (i < RC_EDGE_LAT_BUCKETS - 1)
            bprintf(&b, "runcast_fanout_latency_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                    (double)rc_edge_lat_bound_us[i] / 1e6, cum);
        else
            bprintf(&b, "runcast_fanout_latency_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    bprintf(&b, "runcast_fanout_latency_seconds_sum %.6f\n",
            (double)rc_metric_get(&hot.lat_sum_us) / 1e6);
    bprintf(&b, "runcast_fanout_latency_seconds_count %" PRIu64 "\n", cum);
    metric(&b, "runcast_http_requests_total", "counter", "HTTP requests answered (not /ws)",
           rc_metric_get(&x->http_requests));
    metric(&b, "runcast_http_errors_total", "counter", "HTTP answers with status >= 400",
           rc_metric_get(&x->http_errors));
    metric(&b, "runcast_http_refused_total", "counter",
           "TCP connections closed at once: --ws-max-conns HTTP sessions already open",
           rc_metric_get(&x->http_refused));
    metric(&b, "runcast_http_accept_pauses_total", "counter",
           "Times accepting paused because the process was out of file descriptors or memory",
           rc_metric_get(&x->accept_pauses));

    /* ---- process ---- */
    struct rc_alloc_stats st;
    if (rc_alloc_stats(&st) == 0) {
        metric(&b, "runcast_memory_allocated_bytes", "gauge", "Bytes allocated (jemalloc)",
               st.allocated);
        metric(&b, "runcast_memory_resident_bytes", "gauge", "Resident bytes (jemalloc)",
               st.resident);
    }
    int64_t started = e->broker != NULL ? rc_broker_started_at(e->broker) : e->started_ms;
    metric(&b, "runcast_uptime_seconds", "gauge", "Seconds since the broker started",
           started > 0 ? (uint64_t)((rc_clock_wall_ms() - started) / 1000) : 0);
    metric(&b, "runcast_epoch", "gauge", "The broker's epoch", e->epoch);
    metric_head(&b, "runcast_build_info", "gauge", "Build information (always 1)");
    bprintf(&b, "runcast_build_info{version=\"%s\",allocator=\"%s\",nng=\"%s\"} 1\n",
            RUNCAST_VERSION, rc_alloc_backend(), nng_version());
    metric(&b, "runcast_log_lines_suppressed_total", "counter", "Log lines dropped by rate limits",
           rc_log_lines_suppressed());

    reply(aio, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    rc_buf_fini(&b);
}

/* ---- /runs ---- */

struct runs_req {
    struct rc_edge *e;
    struct rc_edge_req *aio;
    uint64_t since;
    char run[130];
};

static void list_done_cb(void *arg, int rc, const struct rc_run_summary *v, size_t n)
{
    struct runs_req *r = arg;
    struct rc_edge *e = r->e;
    if (rc != 0) {
        error_reply(r->aio, 503, "unavailable", rc_error_message(rc));
    } else {
        struct rc_buf b;
        rc_buf_init(&b);
        rc_buf_append(&b, "{\"runs\":[", 9);
        for (size_t i = 0; i < n; i++) {
            const struct rc_run_summary *s = &v[i];
            if (i > 0)
                rc_buf_append(&b, ",", 1);
            rc_buf_append(&b, "{\"run\":", 7);
            json_str(&b, s->run, strlen(s->run));
            rc_buf_append(&b, ",\"conv\":", 8);
            if (s->conv[0] != '\0')
                json_str(&b, s->conv, strlen(s->conv));
            else
                rc_buf_append(&b, "null", 4);
            bprintf(&b, ",\"status\":\"%s\",\"phase\":", rc_run_status_name(s->status));
            if (s->phase[0] != '\0')
                json_str(&b, s->phase, strlen(s->phase));
            else
                rc_buf_append(&b, "null", 4);
            bprintf(&b,
                    ",\"created_at\":%" PRId64 ",\"last_event_at\":%" PRId64 ",\"seq\":%" PRIu64
                    "}",
                    s->created_at, s->last_event_at, s->seq);
        }
        bprintf(&b, "],\"count\":%zu}\n", n);
        reply(r->aio, 200, "application/json", b.data, b.len);
        rc_buf_fini(&b);
    }
    rc_free(r);
    pending_done(e);
}

static void snap_done_cb(void *arg, int rc, struct rc_blob *snap)
{
    struct runs_req *r = arg;
    struct rc_edge *e = r->e;
    if (rc == RC_ENOTFOUND) {
        error_reply(r->aio, 404, "not_found", "no such run");
    } else if (rc != 0 || snap == NULL) {
        error_reply(r->aio, 503, "unavailable", rc_error_message(rc));
    } else {
        struct rc_buf b;
        rc_buf_init(&b);
        if (rc_json_from_msgpack(snap->data, snap->len, &b) == 0) {
            rc_buf_append(&b, "\n", 1);
            reply(r->aio, 200, "application/json", b.data, b.len);
        } else {
            error_reply(r->aio, 500, "internal", "cannot convert the snapshot to JSON");
        }
        rc_buf_fini(&b);
    }
    rc_free(r);
    pending_done(e);
}

static void events_done_cb(void *arg, int rc, struct rc_blob *const *evs, size_t n, uint64_t first,
                           uint64_t last)
{
    struct runs_req *r = arg;
    struct rc_edge *e = r->e;
    if (rc == RC_ENOTFOUND) {
        error_reply(r->aio, 404, "not_found", "no such run");
    } else if (rc != 0) {
        error_reply(r->aio, 503, "unavailable", rc_error_message(rc));
    } else {
        struct rc_buf b;
        rc_buf_init(&b);
        rc_buf_append(&b, "{\"run\":", 7);
        json_str(&b, r->run, strlen(r->run));
        /* gap: the client asked for events that are no longer retained */
        bool gap = first > 0 && r->since + 1 < first;
        bprintf(&b,
                ",\"since\":%" PRIu64 ",\"first\":%" PRIu64 ",\"last\":%" PRIu64
                ",\"gap\":%s,\"events\":[",
                r->since, first, last, gap ? "true" : "false");
        int rv = 0;
        for (size_t i = 0; i < n && rv == 0; i++) {
            if (i > 0)
                rc_buf_append(&b, ",", 1);
            rv = rc_json_from_msgpack(evs[i]->data, evs[i]->len, &b);
        }
        rc_buf_append(&b, "]}\n", 3);
        if (rv == 0)
            reply(r->aio, 200, "application/json", b.data, b.len);
        else
            error_reply(r->aio, 500, "internal", "cannot convert an event to JSON");
        rc_buf_fini(&b);
    }
    rc_free(r);
    pending_done(e);
}

void rc_edge_http_runs(struct rc_edge_req *aio)
{
    struct rc_edge *e = aio->e;
    const char *uri = aio->target;
    size_t plen;
    struct qparam q[8];
    char scratch[1024];
    int nq = split_query(uri, &plen, q, 8, scratch, sizeof(scratch));
    if (nq < 0) {
        error_reply(aio, 400, "bad_query",
                    nq == -1 ? "too many query parameters" : "badly encoded query value");
        return;
    }
    if (e->runs == NULL) {
        error_reply(aio, 503, "unavailable", "no run registry");
        return;
    }
    /* Path: /runs, /runs/, /runs/{run}, /runs/{run}/events */
    const char *p = uri + 5; /* after "/runs" */
    size_t rest = plen - 5;
    if (rest > 0 && *p == '/') {
        p++;
        rest--;
    }
    struct runs_req *r = rc_calloc(1, sizeof(*r));
    if (r == NULL) {
        error_reply(aio, 500, "internal", "out of memory");
        return;
    }
    r->e = e;
    r->aio = aio;
    int rv;

    if (rest == 0) { /* the list */
        struct rc_runs_filter f = {.status = -1, .conv = NULL, .conv_len = 0, .limit = 0};
        uint64_t lim = e->cfg->http_runs_limit;
        f.limit = (size_t)lim;
        for (int i = 0; i < nq; i++) {
            if (key_is(&q[i], "status")) {
                static const char *names[] = {"pending", "running", "completed", "failed"};
                f.status = -2;
                for (int s = 0; s < 4; s++)
                    if (q[i].val_len == strlen(names[s]) &&
                        memcmp(q[i].val, names[s], q[i].val_len) == 0)
                        f.status = s;
                if (f.status == -2) {
                    rc_free(r);
                    error_reply(aio, 400, "bad_query",
                                "status must be pending, running, completed or failed");
                    return;
                }
            } else if (key_is(&q[i], "conv")) {
                if (!rc_proto_valid_id(q[i].val, q[i].val_len, e->lim.id_max_bytes)) {
                    rc_free(r);
                    error_reply(aio, 400, "bad_query",
                                "conv must be 1-128 characters of [A-Za-z0-9._:-]");
                    return;
                }
                f.conv = q[i].val;
                f.conv_len = q[i].val_len;
            } else if (key_is(&q[i], "limit")) {
                uint64_t l;
                if (!parse_u64(q[i].val, q[i].val_len, &l) || l == 0 || (lim > 0 && l > lim)) {
                    char msg[96];
                    snprintf(msg, sizeof(msg), "limit must be an integer from 1 to %" PRIu64, lim);
                    rc_free(r);
                    error_reply(aio, 400, "bad_query", msg);
                    return;
                }
                f.limit = (size_t)l;
            } else {
                rc_free(r);
                error_reply(aio, 400, "bad_query",
                            "unknown query parameter (use status, conv, limit)");
                return;
            }
        }
        pending_add(e);
        rv = rc_runs_list(e->runs, &f, list_done_cb, r);
    } else {
        const char *slash = memchr(p, '/', rest);
        size_t rlen = slash != NULL ? (size_t)(slash - p) : rest;
        const char *tail = slash != NULL ? slash + 1 : NULL;
        size_t tlen = slash != NULL ? rest - rlen - 1 : 0;
        long dl = url_decode(p, rlen, r->run, sizeof(r->run) - 1);
        if (dl <= 0 || !rc_proto_valid_id(r->run, (size_t)dl, e->lim.id_max_bytes)) {
            rc_free(r);
            error_reply(aio, 404, "not_found", "not a valid run id");
            return;
        }
        rlen = (size_t)dl;
        r->run[rlen] = '\0';
        if (tail == NULL || tlen == 0) {
            if (nq > 0) {
                rc_free(r);
                error_reply(aio, 400, "bad_query", "/runs/{run} takes no query parameters");
                return;
            }
            pending_add(e);
            rv = rc_runs_snapshot(e->runs, r->run, rlen, snap_done_cb, r);
        } else if (tlen == 6 && memcmp(tail, "events", 6) == 0) {
            uint64_t max = 0;
            for (int i = 0; i < nq; i++) {
                if (key_is(&q[i], "since")) {
                    if (!parse_u64(q[i].val, q[i].val_len, &r->since)) {
                        rc_free(r);
                        error_reply(aio, 400, "bad_query", "since must be a non-negative integer");
                        return;
                    }
                } else if (key_is(&q[i], "limit")) {
                    if (!parse_u64(q[i].val, q[i].val_len, &max) || max == 0) {
                        rc_free(r);
                        error_reply(aio, 400, "bad_query", "limit must be a positive integer");
                        return;
                    }
                } else {
                    rc_free(r);
                    error_reply(aio, 400, "bad_query",
                                "unknown query parameter (use since, limit)");
                    return;
                }
            }
            pending_add(e);
            rv = rc_runs_events(e->runs, r->run, rlen, r->since, (size_t)max, events_done_cb, r);
        } else {
            rc_free(r);
            error_reply(aio, 404, "not_found", "no such resource");
            return;
        }
    }
    if (rv != 0) {
        /* The callback will not run. */
        rc_free(r);
        pending_done(e);
        if (rv == RC_ENOTFOUND)
            error_reply(aio, 404, "not_found", "no such run");
        else
            error_reply(aio, 503, "unavailable", rc_error_message(rv));
    }
}

/* Waits until no asynchronous HTTP request is pending (rc_edge_stop). */
void rc_edge_http_wait(struct rc_edge *e)
{
    /* acquire: pairs with pending_done's acq_rel decrement */
    while (atomic_load_explicit(&e->http_pending, memory_order_acquire) != 0)
        rc_clock_sleep_ms(1);
}
