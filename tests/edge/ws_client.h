/*
 * ws_client: the tests' own WebSocket client: a blocking RFC 6455 client on
 * an nng TCP stream, able to send anything (garbage, oversize, fragmented
 * frames) and to see close codes, which nng's WebSocket dialer hides.
 */
#ifndef WS_CLIENT_H
#define WS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "rc_buf.h"

struct ws_client;

/* Connects to 127.0.0.1:port and upgrades at path (e.g. "/ws").  origin:
 * the Origin header or NULL.  Returns the client when the server answered
 * 101; otherwise NULL and *status gets the HTTP status (0: no answer) and
 * body (if not NULL, at most body_len-1 bytes) the response body. */
struct ws_client *ws_connect(uint16_t port, const char *path, const char *origin, int *status,
                             char *body, size_t body_len);
void ws_close(struct ws_client *c); /* abrupt: closes TCP; NULL ok */

/* Sends a masked frame. */
int ws_send_frame(struct ws_client *c, unsigned op, bool fin, const void *p, size_t len);
/* Sends raw bytes. */
int ws_send_raw(struct ws_client *c, const void *p, size_t len);
/* Sends a msgpack message built from JSON text (binary frame). */
int ws_send_json_as_msgpack(struct ws_client *c, const char *json);
/* Sends a close frame with code. */
int ws_send_close(struct ws_client *c, uint16_t code);

/*
 * Receives one message (fragments reassembled; pings answered), waiting at
 * most timeout_ms.  Returns 1 with *op and out set, 0 on timeout, -1 when
 * the connection closed: *close_code gets the peer's code (1006 when TCP
 * closed without a close frame).
 */
int ws_recv(struct ws_client *c, int timeout_ms, unsigned *op, struct rc_buf *out,
            uint16_t *close_code);

/*
 * Receives the next server message as JSON (binary frames converted from
 * msgpack, text frames parsed; an array frame is split and its elements
 * returned one by one).  Returns NULL on timeout or close (then
 * *close_code, if not NULL, is set; 0 on timeout).  json_decref the result.
 */
json_t *ws_next(struct ws_client *c, int timeout_ms, uint16_t *close_code);

/* Receives until a message with op (e.g. "ok") arrives; others are
 * appended to skipped (a JSON array) when not NULL. */
json_t *ws_next_op(struct ws_client *c, const char *op, int timeout_ms, json_t *skipped);

/* Frames received so far, and how many of them were arrays (coalesced). */
uint64_t ws_frames(const struct ws_client *c);
uint64_t ws_array_frames(const struct ws_client *c);

/* Waits for the server to close; returns its close code (1006 when TCP
 * closed without a close frame, 0 on timeout).  Messages are discarded. */
uint16_t ws_wait_close(struct ws_client *c, int timeout_ms);

/* A plain HTTP GET; returns the status and body (malloc'ed, NUL-terminated;
 * free it) or 0 on failure. */
int http_get(uint16_t port, const char *path, char **body);

/* Sends raw bytes on a new TCP connection and returns everything received
 * until the server closes or timeout_ms passes without data (*resp:
 * malloc'ed, NUL-terminated; free it). */
size_t http_raw(uint16_t port, const void *req, size_t len, char **resp, int timeout_ms);

#endif
