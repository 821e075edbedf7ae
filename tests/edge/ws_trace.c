#include "ws_trace.h"

#include <stdbool.h>
#include <string.h>

#include "rc_ws.h"

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

uint64_t ws_trace_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The next piece's size: mostly small (headers split anywhere), sometimes
 * large (several frames in one receive). */
static size_t next_cut(uint64_t *s, uint64_t seed)
{
    if (seed == WS_TRACE_BYTEWISE)
        return 1;
    uint64_t r = ws_trace_rand(s);
    return (r & 7) == 0 ? 1 + (size_t)(r >> 8) % 4096 : 1 + (size_t)(r >> 8) % 16;
}

static const char *check_event(const struct rc_ws_result *r, uint32_t max_message)
{
    switch (r->ev) {
    case RC_WS_EV_MESSAGE:
        if (r->op != RC_WS_OP_TEXT && r->op != RC_WS_OP_BINARY)
            return "a message with an opcode that is not text or binary";
        if (r->len > max_message)
            return "a message over max_message";
        if (r->len > 0 && r->data == NULL)
            return "a message with a length and no data";
        return NULL;
    case RC_WS_EV_CONTROL:
        if (r->op != RC_WS_OP_PING && r->op != RC_WS_OP_PONG && r->op != RC_WS_OP_CLOSE)
            return "a control event with an opcode that is not ping, pong or close";
        if (r->len > 125)
            return "a control payload over 125 bytes";
        return NULL;
    case RC_WS_EV_TOO_BIG:
        return NULL;
    case RC_WS_EV_VIOLATION:
        if (r->close_code < 1000 || r->reason == NULL)
            return "a violation without a close code or a reason";
        return NULL;
    default:
        return "an event the API does not define";
    }
}

const char *ws_trace_run(const uint8_t *data, size_t len, uint32_t max_message, uint64_t seed,
                         struct ws_trace_ev *out, size_t cap, size_t *n)
{
    struct rc_ws_parser p;
    rc_ws_parser_init(&p, max_message);
    const char *why = NULL;
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    size_t off = 0, k = 0;
    bool done = false;
    while (!done && why == NULL && off < len) {
        size_t piece = seed == WS_TRACE_WHOLE ? len - off : next_cut(&s, seed);
        if (piece > len - off)
            piece = len - off;
        if (rc_ws_parser_need(&p) == 0) {
            why = "the parser needs no bytes while it is waiting for some";
            break;
        }
        uint8_t *dst = rc_ws_parser_space(&p, piece);
        if (dst == NULL) {
            why = "no memory";
            break;
        }
        memcpy(dst, data + off, piece);
        rc_ws_parser_commit(&p, piece);
        off += piece;
        for (;;) {
            struct rc_ws_result r;
            rc_ws_parser_next(&p, &r);
            if (r.ev == RC_WS_EV_NONE)
                break;
            why = check_event(&r, max_message);
            if (why == NULL && k == cap)
                why = "more events than frame headers could make";
            if (why != NULL)
                break;
            struct ws_trace_ev *e = &out[k++];
            memset(e, 0, sizeof(*e));
            e->ev = (uint8_t)r.ev;
            e->op = (uint8_t)r.op;
            e->close_code = r.ev == RC_WS_EV_VIOLATION || r.op == RC_WS_OP_CLOSE ? r.close_code : 0;
            e->len = r.ev == RC_WS_EV_TOO_BIG ? 0 : r.len;
            e->hash = r.ev == RC_WS_EV_TOO_BIG ? 0 : fnv1a(r.data, r.len);
            /* as the edge connection: a violation or a close ends the input */
            if (r.ev == RC_WS_EV_VIOLATION ||
                (r.ev == RC_WS_EV_CONTROL && r.op == RC_WS_OP_CLOSE)) {
                done = true;
                break;
            }
        }
        if (p.pos == p.in.len)
            rc_ws_parser_trim(&p);
    }
    rc_ws_parser_fini(&p);
    *n = k;
    return why;
}

const char *ws_trace_diff(const struct ws_trace_ev *a, size_t na, const struct ws_trace_ev *b,
                          size_t nb)
{
    if (na != nb)
        return "a different number of events";
    for (size_t i = 0; i < na; i++) {
        if (a[i].ev != b[i].ev)
            return "a different event";
        if (a[i].op != b[i].op)
            return "a different opcode";
        if (a[i].close_code != b[i].close_code)
            return "a different close code";
        if (a[i].len != b[i].len || a[i].hash != b[i].hash)
            return "a different payload";
    }
    return NULL;
}
