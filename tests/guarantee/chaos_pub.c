/*
 * rc_chaos_pub: a scriptable nng publisher for the terminal-guarantee suite
 * (tests/guarantee/guarantee.py).
 *
 * The harness encodes every message itself (valid events, batches and
 * deliberately broken input) and drives this process line by line on stdin,
 * so it can SIGKILL it at any moment with the nng connection still open.
 * Each command answers with exactly one JSON line on stdout (flushed), which
 * carries the wall-clock time (ms since the Unix epoch, the clock the broker
 * stamps `ts` with) at which the command completed (`t`) and, for sends,
 * when the send started (`t0`):
 *
 *   dial push|req URL     open a PUSH or REQ socket and dial URL; the dialer
 *                         reconnects by itself after the broker restarts
 *                         -> {"op":"dialed","t":T} | {"op":"error","err":".."}
 *   timeout MS            receive timeout of `req` (default 5000)
 *   send B64              PUSH the decoded bytes      -> {"op":"sent","n":N,"t":T,
 *                         "pipe_t":P} (P: when the connection came up)
 *   req B64               REQ, wait for the reply     -> {"op":"reply","t":T,"b64":".."}
 *                                                     | {"op":"noreply","t":T,"err":".."}
 *   sendjunk N BYTE       PUSH N copies of BYTE (decimal), for oversize input
 *   reqjunk N BYTE        the same over REQ
 *   linger MS             before `close` / `exit` / end of input on a PUSH
 *                         socket, wait at most MS (default 100) until the
 *                         last message's write completed: nng 1.5.2 aborts
 *                         a write still under way at nng_close (it has no
 *                         working NNG_OPT_LINGER)
 *   close                 close the socket (the broker sees the pipe close)
 *                                                     -> {"op":"closed","t":T}
 *   sleep MS                                          -> {"op":"slept","t":T}
 *   exit                  exit 0 without a reply
 *
 * Anything else answers {"op":"error","err":"bad command"}.  The process
 * exits when stdin closes.  It prints nothing else.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/reqrep0/req.h>

#include "rc_clock.h"
#include "rc_error.h"
#include "rc_push_idle.h"

static nng_socket sock = NNG_SOCKET_INITIALIZER;
static int push_fd = -1; /* PUSH send-poll fd, taken before the dial */
static bool sock_open;
static bool sock_is_req;
static int req_timeout_ms = 5000;
static long linger_ms = 100;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Wait (at most `ms`) until the last message handed to nng was written
 * (rc_push_idle.h); forever idle when the broker is gone, hence the bound. */
static void linger_push(long ms)
{
    if (push_fd < 0) {
        sleep_ms(ms);
        return;
    }
    uint64_t t0 = rc_clock_mono_ms();
    int rv = rc_push_idle_wait(push_fd, t0 + (uint64_t)ms);
    if (getenv("RCG_DEBUG") != NULL)
        fprintf(stderr, "chaos_pub[%d] linger: %s after %llu ms\n", (int)getpid(),
                rv == RC_OK ? "written" : "timeout", (unsigned long long)(rc_clock_mono_ms() - t0));
}

static void reply_simple(const char *op)
{
    printf("{\"op\":\"%s\",\"t\":%lld}\n", op, (long long)wall_ms());
    fflush(stdout);
}

static void reply_error(const char *what, int rv)
{
    printf("{\"op\":\"error\",\"t\":%lld,\"err\":\"%s: %s\"}\n", (long long)wall_ms(), what,
           rv ? nng_strerror(rv) : "invalid");
    fflush(stdout);
}

/* ---- base64 (standard alphabet, '=' padding) ---- */

static int b64_val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes in place; returns the decoded length or -1. */
static long b64_decode(char *s, size_t len)
{
    unsigned char *out = (unsigned char *)s;
    long n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '=')
            break;
        int v = b64_val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)((acc >> bits) & 0xff);
        }
    }
    return n;
}

static void b64_print(const unsigned char *p, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        putchar(tab[(v >> 18) & 63]);
        putchar(tab[(v >> 12) & 63]);
        putchar(i + 1 < len ? tab[(v >> 6) & 63] : '=');
        putchar(i + 2 < len ? tab[v & 63] : '=');
    }
}

/* ---- commands ---- */

/* Wall ms when the socket's current connection came up: a PUSH send can
 * only be sure to reach a restarted broker once the connection to the old
 * one is gone and a new one is up (relaxed: a timestamp, nothing else is
 * published through it). */
static _Atomic long long pipe_up_ms;

static void pipe_added_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    (void)p;
    (void)ev;
    (void)arg;
    atomic_store_explicit(&pipe_up_ms, (long long)wall_ms(), memory_order_relaxed);
}

static void cmd_dial(const char *kind, const char *url)
{
    int rv;
    if (sock_open) {
        reply_error("dial: already open", 0);
        return;
    }
    sock_is_req = strcmp(kind, "req") == 0;
    if (!sock_is_req && strcmp(kind, "push") != 0) {
        reply_error("dial: kind must be push or req", 0);
        return;
    }
    rv = sock_is_req ? nng_req0_open(&sock) : nng_push0_open(&sock);
    if (rv != 0) {
        reply_error("open", rv);
        return;
    }
    sock_open = true;
    push_fd = -1;
    if (!sock_is_req && rc_push_idle_fd(sock, &push_fd) != RC_OK)
        push_fd = -1;
    nng_pipe_notify(sock, NNG_PIPE_EV_ADD_POST, pipe_added_cb, NULL);
    /* Replies and the broker's limits are the harness's business, not ours. */
    nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, 0);
    nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, 10000);
    nng_socket_set_ms(sock, NNG_OPT_RECONNMINT, 20);
    nng_socket_set_ms(sock, NNG_OPT_RECONNMAXT, 200);
    /* Blocking dial first, so `dialed` means connected; fall back to a
     * background dialer when the broker is not there (yet). */
    rv = nng_dial(sock, url, NULL, 0);
    if (rv != 0)
        rv = nng_dial(sock, url, NULL, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        reply_error("dial", rv);
        return;
    }
    reply_simple("dialed");
}

static void do_send(void *buf, size_t len)
{
    int rv;
    long long t0 = (long long)wall_ms();
    if (!sock_open) {
        reply_error("send: not dialed", 0);
        return;
    }
    if (!sock_is_req) {
        rv = nng_send(sock, buf, len, 0);
        if (rv != 0) {
            reply_error("send", rv);
            return;
        }
        printf("{\"op\":\"sent\",\"n\":%zu,\"t0\":%lld,\"t\":%lld,\"pipe_t\":%lld}\n", len, t0,
               (long long)wall_ms(), atomic_load_explicit(&pipe_up_ms, memory_order_relaxed));
        fflush(stdout);
        return;
    }
    nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, req_timeout_ms);
    rv = nng_send(sock, buf, len, 0);
    if (rv != 0) {
        reply_error("send", rv);
        return;
    }
    void *rep = NULL;
    size_t rlen = 0;
    rv = nng_recv(sock, &rep, &rlen, NNG_FLAG_ALLOC);
    if (rv != 0) {
        printf("{\"op\":\"noreply\",\"t0\":%lld,\"t\":%lld,\"err\":\"%s\"}\n", t0,
               (long long)wall_ms(), nng_strerror(rv));
        fflush(stdout);
        return;
    }
    printf("{\"op\":\"reply\",\"t0\":%lld,\"t\":%lld,\"b64\":\"", t0, (long long)wall_ms());
    b64_print(rep, rlen);
    printf("\"}\n");
    fflush(stdout);
    nng_free(rep, rlen);
}

static void cmd_junk(const char *n_s, const char *byte_s)
{
    long n = n_s ? strtol(n_s, NULL, 10) : -1;
    long byte = byte_s ? strtol(byte_s, NULL, 10) : 0xc1;
    if (n <= 0 || n > (64L << 20)) {
        reply_error("junk: bad size", 0);
        return;
    }
    char *buf = malloc((size_t)n);
    if (buf == NULL) {
        reply_error("junk: out of memory", 0);
        return;
    }
    memset(buf, (int)(byte & 0xff), (size_t)n);
    do_send(buf, (size_t)n);
    free(buf);
}

int main(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;

    while ((len = getline(&line, &cap, stdin)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        char *save = NULL;
        char *cmd = strtok_r(line, " ", &save);
        char *a1 = strtok_r(NULL, " ", &save);
        char *a2 = strtok_r(NULL, " ", &save);
        if (cmd == NULL)
            continue;
        if (strcmp(cmd, "dial") == 0 && a1 && a2) {
            cmd_dial(a1, a2);
        } else if (strcmp(cmd, "timeout") == 0 && a1) {
            req_timeout_ms = atoi(a1);
            reply_simple("ok");
        } else if ((strcmp(cmd, "send") == 0 || strcmp(cmd, "req") == 0) && a1) {
            long n = b64_decode(a1, strlen(a1));
            if (n < 0)
                reply_error("base64", 0);
            else
                do_send(a1, (size_t)n);
        } else if (strcmp(cmd, "sendjunk") == 0 || strcmp(cmd, "reqjunk") == 0) {
            cmd_junk(a1, a2);
        } else if (strcmp(cmd, "linger") == 0 && a1) {
            linger_ms = atol(a1);
            reply_simple("ok");
        } else if (strcmp(cmd, "close") == 0) {
            if (sock_open && !sock_is_req)
                linger_push(linger_ms);
            if (sock_open)
                nng_close(sock);
            sock_open = false;
            reply_simple("closed");
        } else if (strcmp(cmd, "sleep") == 0 && a1) {
            sleep_ms(atol(a1));
            reply_simple("slept");
        } else if (strcmp(cmd, "exit") == 0) {
            break;
        } else {
            reply_error("bad command", 0);
        }
    }
    free(line);
    if (sock_open && !sock_is_req)
        linger_push(linger_ms);
    if (sock_open)
        nng_close(sock);
    return 0;
}
