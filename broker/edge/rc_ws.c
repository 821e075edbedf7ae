/*
 * rc_ws: RFC 6455 handshake key, frame headers and the client frame parser.
 */
#include "rc_ws.h"

#include <string.h>

#include "rc_error.h"

/* ---- SHA-1 (RFC 3174), only for the handshake key ---- */

struct sha1 {
    uint32_t h[5];
    uint64_t bytes;
    uint8_t block[64];
    size_t fill;
};

static uint32_t rol32(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(struct sha1 *s, const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999u;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1u;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDCu;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6u;
        }
        uint32_t t = rol32(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = t;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
}

static void sha1_init(struct sha1 *s)
{
    s->h[0] = 0x67452301u;
    s->h[1] = 0xEFCDAB89u;
    s->h[2] = 0x98BADCFEu;
    s->h[3] = 0x10325476u;
    s->h[4] = 0xC3D2E1F0u;
    s->bytes = 0;
    s->fill = 0;
}

static void sha1_update(struct sha1 *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    s->bytes += len;
    while (len > 0) {
        size_t n = 64 - s->fill;
        if (n > len)
            n = len;
        memcpy(s->block + s->fill, p, n);
        s->fill += n;
        p += n;
        len -= n;
        if (s->fill == 64) {
            sha1_block(s, s->block);
            s->fill = 0;
        }
    }
}

static void sha1_final(struct sha1 *s, uint8_t out[20])
{
    uint64_t bits = s->bytes * 8;
    uint8_t pad = 0x80;
    sha1_update(s, &pad, 1);
    pad = 0;
    while (s->fill != 56)
        sha1_update(s, &pad, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha1_update(s, len, 8);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(char c)
{
    const char *p = c != '\0' ? strchr(b64, c) : NULL;
    return p != NULL ? (int)(p - b64) : -1;
}

int rc_ws_accept_key(const char *key, char out[29])
{
    /* A valid key is 16 random bytes in base64: 22 characters and "==". */
    if (key == NULL || strlen(key) != 24 || key[22] != '=' || key[23] != '=')
        return RC_EINVAL;
    for (int i = 0; i < 22; i++)
        if (b64_value(key[i]) < 0)
            return RC_EINVAL;
    if ((b64_value(key[21]) & 0x0f) != 0) /* the 4 padding bits are zero */
        return RC_EINVAL;

    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    struct sha1 s;
    uint8_t d[20];
    sha1_init(&s);
    sha1_update(&s, key, 24);
    sha1_update(&s, guid, sizeof(guid) - 1);
    sha1_final(&s, d);

    /* 20 bytes -> 28 characters (the last group has 2 bytes and one '='). */
    size_t o = 0;
    for (size_t i = 0; i < 20; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16;
        if (i + 1 < 20)
            v |= (uint32_t)d[i + 1] << 8;
        if (i + 2 < 20)
            v |= d[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < 20 ? b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < 20 ? b64[v & 63] : '=';
    }
    out[o] = '\0';
    return RC_OK;
}

size_t rc_ws_frame_header(uint8_t out[10], enum rc_ws_op op, bool fin, uint64_t len)
{
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (op & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

int rc_ws_close_frame(struct rc_buf *out, uint16_t code, const char *reason)
{
    size_t rlen = reason != NULL ? strlen(reason) : 0;
    if (rlen > 123)
        rlen = 123;
    uint8_t h[10];
    size_t hl = rc_ws_frame_header(h, RC_WS_OP_CLOSE, true, 2 + rlen);
    uint8_t c[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    int rv;
    if ((rv = rc_buf_append(out, h, hl)) != 0 || (rv = rc_buf_append(out, c, 2)) != 0)
        return rv;
    return rlen > 0 ? rc_buf_append(out, reason, rlen) : RC_OK;
}

/* ---- Parser ---- */

void rc_ws_parser_init(struct rc_ws_parser *p, uint32_t max_message)
{
    memset(p, 0, sizeof(*p));
    p->max_message = max_message;
    rc_buf_init(&p->in);
    rc_buf_init(&p->msg);
}

void rc_ws_parser_fini(struct rc_ws_parser *p)
{
    rc_buf_fini(&p->in);
    rc_buf_fini(&p->msg);
}

static void compact(struct rc_ws_parser *p)
{
    if (p->pos == 0)
        return;
    size_t left = p->in.len - p->pos;
    if (left > 0)
        memmove(p->in.data, p->in.data + p->pos, left);
    p->in.len = left;
    p->pos = 0;
}

uint8_t *rc_ws_parser_space(struct rc_ws_parser *p, size_t want)
{
    compact(p);
    if (rc_buf_reserve(&p->in, want) != 0)
        return NULL;
    return p->in.data + p->in.len;
}

size_t rc_ws_parser_need(const struct rc_ws_parser *p)
{
    size_t avail = p->in.len - p->pos;
    if (p->skip > 0)
        return (size_t)(p->skip > SIZE_MAX / 2 ? SIZE_MAX / 2 : p->skip);
    if (avail < 2)
        return 2 - avail;
    const uint8_t *f = p->in.data + p->pos;
    unsigned len7 = f[1] & 0x7f;
    size_t hlen = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((f[1] & 0x80) ? 4 : 0);
    if (avail < hlen)
        return hlen - avail;
    uint64_t len = len7;
    if (len7 == 126)
        len = (uint64_t)f[2] << 8 | f[3];
    else if (len7 == 127)
        for (int i = 0, j = 0; i < 8; i++, j++)
            len = (i == 0 ? 0 : len << 8) | f[2 + j];
    if (len > p->max_message) /* will be skipped: read in chunks */
        return 4096;
    return hlen + (size_t)len > avail ? hlen + (size_t)len - avail : 1;
}

void rc_ws_parser_trim(struct rc_ws_parser *p)
{
    if (p->pos == p->in.len && p->in.cap > 0) {
        rc_buf_fini(&p->in);
        rc_buf_init(&p->in);
        p->pos = 0;
    }
    if (!p->in_msg && p->msg.cap > 0) {
        rc_buf_fini(&p->msg);
        rc_buf_init(&p->msg);
    }
}

void rc_ws_parser_commit(struct rc_ws_parser *p, size_t n)
{
    p->in.len += n;
}

static void unmask(uint8_t *d, size_t len, const uint8_t m[4])
{
    for (size_t i = 0; i < len; i++)
        d[i] ^= m[i & 3];
}

static void violation(struct rc_ws_result *r, uint16_t code, const char *why)
{
    r->ev = RC_WS_EV_VIOLATION;
    r->close_code = code;
    r->reason = why;
}

void rc_ws_parser_next(struct rc_ws_parser *p, struct rc_ws_result *r)
{
    memset(r, 0, sizeof(*r));
    /* A message handed out by the previous call is done with now. */
    if (!p->in_msg)
        rc_buf_reset(&p->msg);

    for (;;) {
        size_t avail = p->in.len - p->pos;
        uint8_t *f = p->in.data + p->pos;

        if (p->skip > 0) {
            size_t n = p->skip < avail ? (size_t)p->skip : avail;
            p->pos += n;
            p->skip -= n;
            if (p->skip > 0)
                return; /* RC_WS_EV_NONE */
            continue;
        }
        if (avail < 2)
            return;
        bool fin = (f[0] & 0x80) != 0;
        unsigned op = f[0] & 0x0f;
        bool masked = (f[1] & 0x80) != 0;
        unsigned len7 = f[1] & 0x7f;
        if (f[0] & 0x70)
            return violation(r, RC_WS_CLOSE_PROTOCOL, "reserved bits set (no extension agreed)");
        if (!masked)
            return violation(r, RC_WS_CLOSE_PROTOCOL, "client frames must be masked");
        bool control = (op & 0x08) != 0;
        if (control) {
            if (op != RC_WS_OP_CLOSE && op != RC_WS_OP_PING && op != RC_WS_OP_PONG)
                return violation(r, RC_WS_CLOSE_PROTOCOL, "unknown control opcode");
            if (!fin || len7 > 125)
                return violation(r, RC_WS_CLOSE_PROTOCOL,
                                 "control frames must be whole and at most 125 bytes");
        } else if (op != RC_WS_OP_CONT && op != RC_WS_OP_TEXT && op != RC_WS_OP_BINARY) {
            return violation(r, RC_WS_CLOSE_PROTOCOL, "unknown data opcode");
        }
        size_t hlen = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
        if (avail < hlen)
            return;
        uint64_t len = len7;
        if (len7 == 126) {
            len = (uint64_t)f[2] << 8 | f[3];
            if (len < 126)
                return violation(r, RC_WS_CLOSE_PROTOCOL, "non-minimal frame length");
        } else if (len7 == 127) {
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | f[2 + i];
            if (len >> 63)
                return violation(r, RC_WS_CLOSE_PROTOCOL, "frame length over 2^63");
            if (len <= 0xffff)
                return violation(r, RC_WS_CLOSE_PROTOCOL, "non-minimal frame length");
        }
        const uint8_t *mask = f + hlen - 4;

        if (control) {
            if (avail < hlen + len)
                return;
            memcpy(p->ctl, f + hlen, (size_t)len);
            unmask(p->ctl, (size_t)len, mask);
            p->pos += hlen + (size_t)len;
            r->ev = RC_WS_EV_CONTROL;
            r->op = (enum rc_ws_op)op;
            r->data = p->ctl;
            r->len = (size_t)len;
            if (op == RC_WS_OP_CLOSE) {
                if (len == 1)
                    return violation(r, RC_WS_CLOSE_PROTOCOL, "close frame with a 1-byte body");
                r->close_code =
                    len >= 2 ? (uint16_t)(p->ctl[0] << 8 | p->ctl[1]) : RC_WS_CLOSE_NO_STATUS;
            }
            return;
        }

        if (op == RC_WS_OP_CONT) {
            if (!p->in_msg && !p->skip_in_msg)
                return violation(r, RC_WS_CLOSE_PROTOCOL, "continuation frame outside a message");
        } else if (p->in_msg || p->skip_in_msg) {
            return violation(r, RC_WS_CLOSE_PROTOCOL, "new data frame inside a fragmented message");
        }

        if (p->skip_in_msg) { /* the rest of an oversize message */
            p->pos += hlen;
            p->skip = len;
            if (fin)
                p->skip_in_msg = false;
            continue;
        }

        uint64_t total = (op == RC_WS_OP_CONT ? p->msg.len : 0) + len;
        if (total > p->max_message) {
            p->pos += hlen;
            p->skip = len;
            p->skip_in_msg = !fin;
            p->in_msg = false;
            rc_buf_reset(&p->msg);
            r->ev = RC_WS_EV_TOO_BIG;
            r->op = op == RC_WS_OP_CONT ? p->msg_op : (enum rc_ws_op)op;
            r->len = (size_t)(total > SIZE_MAX ? SIZE_MAX : total);
            return;
        }
        if (avail < hlen + len)
            return;
        uint8_t *payload = f + hlen;
        unmask(payload, (size_t)len, mask);
        p->pos += hlen + (size_t)len;

        if (fin && op != RC_WS_OP_CONT) { /* a whole message in one frame */
            r->ev = RC_WS_EV_MESSAGE;
            r->op = (enum rc_ws_op)op;
            r->data = payload;
            r->len = (size_t)len;
            return;
        }
        if (rc_buf_append(&p->msg, payload, (size_t)len) != 0)
            return violation(r, RC_WS_CLOSE_INTERNAL, "out of memory");
        if (op != RC_WS_OP_CONT) {
            p->in_msg = true;
            p->msg_op = (enum rc_ws_op)op;
        }
        if (fin) {
            p->in_msg = false;
            r->ev = RC_WS_EV_MESSAGE;
            r->op = p->msg_op;
            r->data = p->msg.data;
            r->len = p->msg.len;
            return;
        }
    }
}
