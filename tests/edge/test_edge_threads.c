/*
 * test_edge_threads: a plain program (no Criterion, which cannot start under
 * TSan) that drives the edge from several threads at once, so the TSan and
 * ASan builds check its concurrency: publishers, run/conv/all subscribers
 * reading and checking order, a slow subscriber closed 4008, sub/unsub
 * churn, connects and drops, HTTP requests, then a shutdown with
 * connections still open (1001).  Exits 0 when every check holds.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge_fixture.h"
#include "rc_clock.h"
#include "ws_client.h"

#define RUNS   4
#define EVENTS 150 /* per run, after start; then complete */
#define T      10000

static struct fx f;
static _Atomic bool done;

static void *publisher(void *arg)
{
    int id = (int)(intptr_t)arg; /* runs id, id + 2 */
    for (int r = id; r < RUNS; r += 2)
        fx_publishf(&f, "{\"run\":\"t%d\",\"conv\":\"tc\",\"type\":\"start\"}", r);
    for (int i = 0; i < EVENTS; i++)
        for (int r = id; r < RUNS; r += 2)
            fx_publishf(&f, "{\"run\":\"t%d\",\"type\":\"delta\",\"text\":\"%d\"}", r, i);
    for (int r = id; r < RUNS; r += 2)
        fx_publishf(&f, "{\"run\":\"t%d\",\"type\":\"complete\"}", r);
    return NULL;
}

static void *churn(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&done, memory_order_relaxed)) {
        int st;
        struct ws_client *c = ws_connect(f.port, "/ws", NULL, &st, NULL, 0);
        FX_ASSERT(c != NULL);
        ws_send_json_as_msgpack(c, "{\"op\":\"sub\",\"all\":true}");
        ws_send_json_as_msgpack(c, "{\"op\":\"sub\",\"run\":\"t1\",\"since\":3}");
        ws_send_json_as_msgpack(c, "{\"op\":\"unsub\",\"all\":true}");
        json_decref(ws_next(c, 50, NULL));
        ws_close(c); /* abrupt */
        char *body;
        FX_ASSERT(http_get(f.port, "/metrics", &body) == 200);
        free(body);
        FX_ASSERT(http_get(f.port, "/runs?conv=tc", &body) == 200);
        free(body);
    }
    return NULL;
}

/* Reads until every run's terminal arrived; checks per-run seq order. */
static void read_all(struct ws_client *c, const char *who)
{
    uint64_t last[RUNS] = {0};
    int terminals = 0;
    while (terminals < RUNS) {
        uint16_t code = 0;
        json_t *v = ws_next(c, T, &code);
        FX_ASSERT(v != NULL, "%s: closed (%u) or timed out after %d terminals", who, code,
                  terminals);
        const char *op = json_string_value(json_object_get(v, "op"));
        if (strcmp(op, "ev") == 0) {
            int r = atoi(json_string_value(json_object_get(v, "run")) + 1);
            uint64_t seq = (uint64_t)json_integer_value(json_object_get(v, "seq"));
            FX_ASSERT(seq == last[r] + 1, "%s: run t%d seq %llu after %llu", who, r,
                      (unsigned long long)seq, (unsigned long long)last[r]);
            last[r] = seq;
            if (strcmp(json_string_value(json_object_get(v, "type")), "complete") == 0)
                terminals++;
        }
        json_decref(v);
    }
    for (int r = 0; r < RUNS; r++)
        FX_ASSERT(last[r] == EVENTS + 2, "%s: run t%d ended at %llu", who, r,
                  (unsigned long long)last[r]);
}

int main(void)
{
    fx_start(&f, (const char *[]){"ws-queue-max", "256KiB", "ws-heartbeat", "50ms", NULL});
    int st;
    struct ws_client *conv = ws_connect(f.port, "/ws", NULL, &st, NULL, 0);
    struct ws_client *all = ws_connect(f.port, "/ws", NULL, &st, NULL, 0);
    struct ws_client *slow = ws_connect(f.port, "/ws", NULL, &st, NULL, 0);
    FX_ASSERT(conv && all && slow);
    json_decref(ws_next_op(conv, "hello", T, NULL));
    json_decref(ws_next_op(all, "hello", T, NULL));
    ws_send_json_as_msgpack(conv, "{\"op\":\"sub\",\"conv\":\"tc\",\"snapshot\":false}");
    ws_send_json_as_msgpack(all, "{\"op\":\"sub\",\"all\":true,\"snapshot\":false}");
    ws_send_json_as_msgpack(slow, "{\"op\":\"sub\",\"run\":\"big\",\"snapshot\":false}");
    json_decref(ws_next_op(conv, "ok", T, NULL));
    json_decref(ws_next_op(all, "ok", T, NULL));

    pthread_t pub[2], ch;
    pthread_create(&ch, NULL, churn, NULL);
    for (intptr_t i = 0; i < 2; i++)
        pthread_create(&pub[i], NULL, publisher, (void *)i);
    /* the runs are created by the publishers after the conv subscription:
     * it covers them from their first event */
    read_all(all, "all");
    read_all(conv, "conv");
    for (int i = 0; i < 2; i++)
        pthread_join(pub[i], NULL);
    atomic_store_explicit(&done, true, memory_order_relaxed);
    pthread_join(ch, NULL);

    /* "all" leaves before the big run (it does not read it) */
    ws_send_json_as_msgpack(all, "{\"op\":\"unsub\",\"all\":true}");
    json_decref(ws_next_op(all, "ok", T, NULL));
    /* the slow one never reads: ~15 MiB of "big" fill the socket buffers,
     * then its queue passes the bound: 4008 */
    static char text[60001];
    memset(text, 'b', sizeof(text) - 1);
    fx_publish(&f, "{\"run\":\"big\",\"type\":\"start\"}");
    for (int i = 0; i < 250 && rc_edge_connections(f.e) == 3; i++) {
        char *ev = malloc(sizeof(text) + 64);
        snprintf(ev, sizeof(text) + 64, "{\"run\":\"big\",\"type\":\"delta\",\"text\":\"%s\"}",
                 text);
        fx_publish(&f, ev);
        free(ev);
    }
    uint16_t code = ws_wait_close(slow, T);
    FX_ASSERT(code == 4008, "slow consumer closed with %u", code);

    /* shutdown with open connections: 1001 */
    rc_broker_quiesce(f.b, 2000);
    rc_edge_stop(f.e);
    FX_ASSERT(ws_wait_close(all, T) == 1001);
    FX_ASSERT(ws_wait_close(conv, T) == 1001);
    ws_close(conv);
    ws_close(all);
    ws_close(slow);
    fx_stop(&f);
    printf("test_edge_threads: ok\n");
    return 0;
}
