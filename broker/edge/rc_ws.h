/*
 * rc_ws: the RFC 6455 (WebSocket) pieces the edge needs, with no I/O.
 *
 * The edge runs its own WebSocket framing on nng TCP streams; docs/EDGE.md
 * says why (nng 1.5.2's WebSocket stream cannot send a close code other
 * than 1000, cannot refuse an upgrade by Origin, merges frames into a byte
 * stream, and its HTTP layer pins 8 KiB per connection).  This
 * file holds the handshake key, the frame header writer and an incremental
 * parser for client frames; rc_edge_conn.c does the I/O.
 */
#ifndef RC_WS_H
#define RC_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rc_buf.h"

enum rc_ws_op {
    RC_WS_OP_CONT = 0x0,
    RC_WS_OP_TEXT = 0x1,
    RC_WS_OP_BINARY = 0x2,
    RC_WS_OP_CLOSE = 0x8,
    RC_WS_OP_PING = 0x9,
    RC_WS_OP_PONG = 0xA,
};

/* Close codes the edge sends or reports (PROTOCOL.md tables them). */
enum rc_ws_close {
    RC_WS_CLOSE_NORMAL = 1000,
    RC_WS_CLOSE_GOING_AWAY = 1001, /* broker shutdown: retry */
    RC_WS_CLOSE_PROTOCOL = 1002,   /* broken WebSocket framing */
    RC_WS_CLOSE_NO_STATUS = 1005,  /* close frame without a code (never sent) */
    RC_WS_CLOSE_ABNORMAL = 1006,   /* dropped without a close frame (never sent) */
    RC_WS_CLOSE_BAD_DATA = 1007,   /* invalid UTF-8 in a text frame */
    RC_WS_CLOSE_TOO_BIG = 1009,
    RC_WS_CLOSE_INTERNAL = 1011,
    RC_WS_CLOSE_SLOW = 4008,  /* slow consumer: retry with since */
    RC_WS_CLOSE_ABUSE = 4400, /* repeated invalid messages: do not retry as is */
    RC_WS_CLOSE_FULL = 4429,  /* over --ws-max-conns: retry with backoff */
};

/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key: out gets 28
 * characters and a NUL.  RC_EINVAL when key is not 24 base64 characters
 * encoding 16 bytes. */
int rc_ws_accept_key(const char *key, char out[29]);

/* Writes a server (unmasked) frame header for a payload of len bytes into
 * out (at most 10 bytes); returns its length. */
size_t rc_ws_frame_header(uint8_t out[10], enum rc_ws_op op, bool fin, uint64_t len);

/* Appends a whole close frame (code and a reason of at most 123 bytes). */
int rc_ws_close_frame(struct rc_buf *out, uint16_t code, const char *reason);

/*
 * Incremental parser of client (masked) frames.  Feed it bytes as they
 * arrive; it reports each whole message (fragments reassembled), control
 * frame, oversize message (its payload discarded, the connection may go
 * on), or a protocol violation after which the connection must be closed
 * with the code given.
 */
enum rc_ws_event {
    RC_WS_EV_NONE,      /* need more bytes */
    RC_WS_EV_MESSAGE,   /* op TEXT or BINARY, payload whole */
    RC_WS_EV_CONTROL,   /* op PING, PONG or CLOSE */
    RC_WS_EV_TOO_BIG,   /* a message over max_message; its bytes are skipped */
    RC_WS_EV_VIOLATION, /* close with close_code; stop feeding */
};

struct rc_ws_parser {
    uint32_t max_message; /* payload limit of one (reassembled) message */
    struct rc_buf in;     /* bytes received, not consumed yet */
    size_t pos;           /* consumed prefix of in */
    struct rc_buf msg;    /* fragments of the message being assembled */
    bool in_msg;          /* a fragmented message is open */
    enum rc_ws_op msg_op; /* its opcode */
    uint64_t skip;        /* payload bytes still to discard (oversize) */
    bool skip_in_msg;     /* discarding the rest of a fragmented message */
    uint8_t ctl[125];     /* payload of the last control frame */
};

void rc_ws_parser_init(struct rc_ws_parser *p, uint32_t max_message);
void rc_ws_parser_fini(struct rc_ws_parser *p);

/* How many more bytes would complete the frame being received (at least
 * the 2 bytes of a header when none is pending; a skipped payload counts
 * as needed too).  Lets the caller read small when idle. */
size_t rc_ws_parser_need(const struct rc_ws_parser *p);

/* Frees the receive buffers when nothing is pending in them (an idle
 * connection then holds no buffer). */
void rc_ws_parser_trim(struct rc_ws_parser *p);

/* Room to receive into: makes at least want bytes free at the end of p->in
 * and returns where they start (NULL on ENOMEM). */
uint8_t *rc_ws_parser_space(struct rc_ws_parser *p, size_t want);
/* Records that n bytes were written at rc_ws_parser_space's pointer. */
void rc_ws_parser_commit(struct rc_ws_parser *p, size_t n);

struct rc_ws_result {
    enum rc_ws_event ev;
    enum rc_ws_op op;
    const uint8_t *data; /* MESSAGE / CONTROL payload; valid until the next call */
    size_t len;
    uint16_t close_code; /* VIOLATION: the code to close with; CONTROL CLOSE: the peer's */
    const char *reason;  /* VIOLATION: why (static) */
};

/* Parses the next event out of the bytes received so far. */
void rc_ws_parser_next(struct rc_ws_parser *p, struct rc_ws_result *r);

#endif
