/*
 * rc_edge: how people see runs.  One TCP port (--http) serves
 *
 *   GET /ws[?format=json]      WebSocket subscribers (PROTOCOL.md)
 *   GET /healthz               200 / 503 with a small JSON body
 *   GET /metrics               Prometheus text
 *   GET /runs, /runs/{run}, /runs/{run}/events?since=N   JSON run API
 *
 * with the edge's own HTTP/1.1 server and WebSocket framing on nng TCP
 * streams (rc_edge_srv.c, rc_ws.h; docs/EDGE.md says why not nng's HTTP
 * and WebSocket layers).  Each WebSocket connection is one actor on the broker's actor
 * system: it holds the connection's subscriptions, its byte-bounded output
 * queue and its one in-flight send.  Run actors send it encoded messages
 * (shared rc_blobs) directly; no thread sees every delivery.
 *
 * Lifetime: rc_edge_new -> rc_edge_start -> ... -> rc_edge_stop ->
 * rc_edge_free.  Stop the edge before the broker's actor system stops.
 */
#ifndef RC_EDGE_H
#define RC_EDGE_H

#include <stdbool.h>
#include <stdint.h>

struct rc_config;
struct rc_broker;
struct rc_edge;

/* Creates the edge for broker, reading the edge options of cfg (both must
 * outlive the edge).  Nothing listens yet. */
int rc_edge_new(const struct rc_config *cfg, struct rc_broker *broker, struct rc_edge **out);

/* Binds --http and starts serving.  RC_EIO when the address cannot be
 * bound (the port is taken), RC_EINVAL for an unusable address. */
int rc_edge_start(struct rc_edge *e);

/* The bound TCP port (useful with port 0); 0 before start. */
uint16_t rc_edge_port(const struct rc_edge *e);

/* Whether the edge serves (for /healthz and tests). */
bool rc_edge_serving(const struct rc_edge *e);

/* Number of open WebSocket connections. */
uint64_t rc_edge_connections(const struct rc_edge *e);

/*
 * Graceful stop: refuses new connections, flushes every connection's queue
 * and closes it with 1001 (going away), waiting at most --shutdown-timeout
 * (then the rest are cut), and stops the HTTP server.  Idempotent.
 */
void rc_edge_stop(struct rc_edge *e);

/* Test hook (runcastd, only with RC_TEST_HOOKS=1): makes the listener
 * report a failure, as 64 accept errors in a row or a listener closed
 * under it would; the broker's supervisor restarts it on the same port. */
void rc_edge_test_fail_listener(struct rc_edge *e);

/* Frees the edge; call after rc_edge_stop.  NULL does nothing. */
void rc_edge_free(struct rc_edge *e);

#endif
