/*
 * rc_sppull: the receiving end of the SP pipeline protocol (what nng's
 * PULL socket does for a PUSH peer), read straight from nng's byte streams
 * for tcp:// and ipc:// URLs.  Private to broker/core.
 *
 * Why: nng 1.5.2's PULL socket costs 3-5 us of CPU per message here,
 * whatever its size (two stream reads per message, each completed through
 * nng's task queue, then the socket's hand-off to a receive).  Reading a
 * connection's bytes 64 KiB at a time and finding the frames ourselves
 * costs about 1 us per message when publishers send one event per message
 * (measured with nng PUSH publishers, docs/ARCHITECTURE.md, "Reading PULL
 * connections as byte streams").  The wire is the documented SP mapping
 * that every nng and nanomsg PUSH speaks:
 *
 *   - each side first sends 8 bytes: 0x00 'S' 'P' 0x00, its protocol
 *     number (16 bits, big-endian: PUSH 0x0050, PULL 0x0051), 0x00 0x00;
 *   - then every message is its length (64 bits, big-endian) and its
 *     bytes; over ipc:// the length is preceded by one byte, 0x01.
 *
 * A peer that is not an SP PUSH, that sends no header within
 * handshake_ms, or whose message is longer than max_msg, is disconnected
 * and reported (nng's PULL drops such a connection too).
 *
 * Threads: every callback runs on nng's threads, one at a time per
 * connection and in stream order.  Lifetime: listen -> close (stops
 * accepting, closes every connection, waits for every callback; any
 * thread but a callback's) -> free.
 */
#ifndef RC_SPPULL_H
#define RC_SPPULL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rc_run.h"

struct rc_sppull;

/* Connection ids have this bit set, so that they never equal an nng pipe
 * id (nng's are below 2^31) where both meet (publisher liveness, logs). */
#define RC_SPPULL_ID_BIT 0x80000000u

/* The body length in the SP frame header at p (hdr_len 8 over tcp; 9 over
 * ipc, where a type byte comes first). */
static inline uint64_t rc_sppull_frame_len(const uint8_t *p, unsigned hdr_len)
{
    uint64_t v = 0;
    for (unsigned i = hdr_len - 8; i < hdr_len; i++)
        v = v << 8 | p[i];
    return v;
}

/* Steps over the frame at *off in data[0, len): its body in *body and
 * *body_len.  False at the end, or where the frame is incomplete. */
static inline bool rc_sppull_frame_next(const uint8_t *data, size_t len, unsigned hdr_len,
                                        size_t *off, const uint8_t **body, size_t *body_len)
{
    if (len - *off < hdr_len)
        return false;
    uint64_t n = rc_sppull_frame_len(data + *off, hdr_len);
    if (n > len - *off - hdr_len)
        return false;
    *body = data + *off + hdr_len;
    *body_len = (size_t)n;
    *off += hdr_len + (size_t)n;
    return true;
}

struct rc_sppull_hooks {
    /*
     * A buffer of complete frames of connection conn (lane: what opened
     * returned for it), headers included
     * (hdr_len bytes each: 8 over tcp, 9 over ipc), in stream order; its
     * recv_ns is stamped.  Takes the reference.  Returns true to read on;
     * false parks the connection (back-pressure) until rc_sppull_resume.
     */
    bool (*frames)(void *arg, struct rc_ingest_buf *buf, uint32_t conn, uint32_t lane,
                   unsigned hdr_len);
    /* After a parked connection was queued: true when it may read on at
     * once (the pause's re-check, see rc_ingress.c pull_rearm). */
    bool (*may_resume)(void *arg);
    /* Connections parked (+n) or unparked / closed while parked (-n). */
    void (*parked)(void *arg, int n);
    /* A connection completed its SP handshake (a publisher is there).
     * Returns the connection's lane: a number of the caller's, handed back
     * with each of its frames and with its close (the ingress: which of a
     * socket's decoders reads it).  Without this hook every lane is 0. */
    uint32_t (*opened)(void *arg, uint32_t conn);
    /* A connection that had completed its SP handshake ended. */
    void (*closed)(void *arg, uint32_t conn, uint32_t lane);
    /* A connection was refused or dropped for what its peer sent (or a
     * receive failed); peer as for rc_sppull_peer, why one line. */
    void (*error)(void *arg, const char *peer, const char *why);
    void *arg;
};

struct rc_sppull_cfg {
    uint64_t max_msg;      /* longest message body accepted */
    uint64_t handshake_ms; /* a peer must send its SP header within this */
};

/* Whether url is one this module reads (tcp://, tcp4://, tcp6://, ipc://). */
bool rc_sppull_supports(const char *url);

/* Listens on url (connections wait in the kernel's backlog until
 * rc_sppull_start); on error writes one line into err and returns
 * RC_EADDRINUSE (the address is taken) or RC_EIO / RC_ENOMEM. */
int rc_sppull_listen(const char *url, const struct rc_sppull_cfg *cfg,
                     const struct rc_sppull_hooks *hooks, struct rc_sppull **out, char *err,
                     size_t errlen);
/* Accepts connections from now on: the hooks may run. */
void rc_sppull_start(struct rc_sppull *p);
/* The URL listened on, with the bound port when url asked for port 0. */
const char *rc_sppull_url(const struct rc_sppull *p);
/* Writes the peer address of connection conn ("127.0.0.1:5555",
 * "ipc:/path (conn N)") into out; "conn N" when it is gone. */
void rc_sppull_peer(struct rc_sppull *p, uint32_t conn, char *out, size_t cap);
/* Reads on every parked connection (any thread; not from hooks.frames). */
void rc_sppull_resume(struct rc_sppull *p);
/* Connections open now (handshake done or not). */
unsigned rc_sppull_connections(struct rc_sppull *p);
void rc_sppull_close(struct rc_sppull *p);
void rc_sppull_free(struct rc_sppull *p);

#endif
