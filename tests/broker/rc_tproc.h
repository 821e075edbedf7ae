/*
 * Test helpers for integration tests against a real runcastd process:
 * spawn it on free ports, a WebSocket subscriber (nng's WebSocket stream
 * dialer, frames decoded with msgpack-c), and nng publishers.
 */
#ifndef RC_TPROC_H
#define RC_TPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct rcd {
    pid_t pid;
    int pull_port, rep_port, http_port;
    char pull[64], rep[64];
    char log[128]; /* stderr of the process */
};

/* Starts runcastd (RC_BINARY_DIR/broker/runcastd) on free ports with extra
 * arguments (NULL-terminated) and waits for its "listening" line. */
void rcd_start(struct rcd *d, const char *const *extra);
/* Whether the process is still running. */
bool rcd_alive(struct rcd *d);
/* SIGTERM and wait (at most timeout_ms); returns the exit status
 * (WEXITSTATUS), or -1 if it did not exit / died by a signal. */
int rcd_stop(struct rcd *d, uint64_t timeout_ms);
/* Waits (at most timeout_ms) for the process to exit on its own; returns
 * the exit status, or -1 if it did not exit (it is then killed) or died by
 * a signal. */
int rcd_wait(struct rcd *d, uint64_t timeout_ms);
/* Lines of the process's stderr log containing needle. */
size_t rcd_log_count(const struct rcd *d, const char *needle);

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

/* Sends one message on a new PUSH socket (dial, send, linger, close). */
void push_once(const char *url, const void *buf, size_t len);
/* REQ round trip; returns the reply bytes (malloc'ed) or NULL on timeout. */
void *req_once(const char *url, const void *buf, size_t len, size_t *out_len, int timeout_ms);

#endif
