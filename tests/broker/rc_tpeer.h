/*
 * The peers of a real runcastd process in integration tests (the process
 * itself: tests/support/tproc/rc_tproc.h): a WebSocket subscriber (nng's
 * WebSocket stream dialer, frames decoded with msgpack-c) and nng
 * publishers.
 */
#ifndef RC_TPEER_H
#define RC_TPEER_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- WebSocket subscriber ---- */

struct wsev {
    char run[64];
    uint64_t seq;
    char type[24];
    char code[32]; /* error.code */
    bool synthetic;
};

struct wsc;
/* Connects to ws://127.0.0.1:port/ws and subscribes to all runs. */
struct wsc *wsc_open_all(int port);
size_t wsc_count(struct wsc *c);
bool wsc_get(struct wsc *c, size_t i, struct wsev *out);
/* Waits until n runs (by name) have a terminal; false on timeout. */
bool wsc_wait_terminals(struct wsc *c, size_t n, uint64_t timeout_ms);
void wsc_close(struct wsc *c);

/* ---- Publishers ---- */

/* nng_close, waited for at most 5 s: nng 1.5.2's close can deadlock when it
 * races the connection's traffic (rc_tpeer.c says what happens then). */
void tpeer_close_bounded(nng_socket s);

/* Sends one message on a new PUSH socket (dial, send, linger, close). */
void push_once(const char *url, const void *buf, size_t len);
/* One message of len bytes over a plain TCP connection speaking the SP
 * protocol as a PUSH peer, then close(2): for input the broker answers by
 * dropping the connection (an nng client's own close can deadlock then,
 * nng 1.5.2). */
void push_raw_tcp_once(const char *url, const void *buf, size_t len);
/* REQ round trip; returns the reply bytes (malloc'ed) or NULL on timeout. */
void *req_once(const char *url, const void *buf, size_t len, size_t *out_len, int timeout_ms);

#endif
