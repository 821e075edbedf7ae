/*
 * rcb_mp: the msgpack runcast-bench writes (publish events, sub frames) and
 * a minimal, allocation-free reader for the receive path, which must keep up
 * with a million deliveries per second on a core the broker also wants.
 * Only the keys the bench needs are looked at; everything else is skipped.
 */
#include <stdlib.h>
#include <string.h>

#include "rcb.h"

/* ---- writer ---- */

static void put(struct rc_buf *b, const void *p, size_t n)
{
    (void)rc_buf_append(b, p, n);
}

static void put_u8(struct rc_buf *b, uint8_t c)
{
    put(b, &c, 1);
}

static void put_be(struct rc_buf *b, uint64_t v, int bytes)
{
    uint8_t t[8];
    for (int i = 0; i < bytes; i++)
        t[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    put(b, t, (size_t)bytes);
}

static void w_map(struct rc_buf *b, uint32_t n)
{
    if (n < 16) {
        put_u8(b, (uint8_t)(0x80 | n));
    } else {
        put_u8(b, 0xde);
        put_be(b, n, 2);
    }
}

static void w_array(struct rc_buf *b, uint32_t n)
{
    if (n < 16) {
        put_u8(b, (uint8_t)(0x90 | n));
    } else if (n < 65536) {
        put_u8(b, 0xdc);
        put_be(b, n, 2);
    } else {
        put_u8(b, 0xdd);
        put_be(b, n, 4);
    }
}

static void w_str(struct rc_buf *b, const char *s, size_t n)
{
    if (n < 32) {
        put_u8(b, (uint8_t)(0xa0 | n));
    } else if (n < 256) {
        put_u8(b, 0xd9);
        put_u8(b, (uint8_t)n);
    } else if (n < 65536) {
        put_u8(b, 0xda);
        put_be(b, n, 2);
    } else {
        put_u8(b, 0xdb);
        put_be(b, n, 4);
    }
    put(b, s, n);
}

static void w_cstr(struct rc_buf *b, const char *s)
{
    w_str(b, s, strlen(s));
}

static void w_uint(struct rc_buf *b, uint64_t v)
{
    if (v < 128) {
        put_u8(b, (uint8_t)v);
    } else if (v < 256) {
        put_u8(b, 0xcc);
        put_u8(b, (uint8_t)v);
    } else if (v < 65536) {
        put_u8(b, 0xcd);
        put_be(b, v, 2);
    } else if (v <= 0xffffffffu) {
        put_u8(b, 0xce);
        put_be(b, v, 4);
    } else {
        put_u8(b, 0xcf);
        put_be(b, v, 8);
    }
}

void rcb_array_header(struct rc_buf *b, uint32_t n)
{
    w_array(b, n);
}

static const char pad_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ";

/* n bytes of the padding pattern starting at pattern index k: the pattern
 * is periodic, so whole stretches are copied instead of indexing (and
 * dividing) per byte; the publishers encode every event they send, and
 * that per-byte loop was half their encoding cost. */
static void put_pad(uint8_t *out, uint64_t k, size_t n)
{
    const size_t period = sizeof(pad_chars) - 1;
    size_t at = (size_t)(k % period);
    while (n > 0) {
        size_t c = period - at < n ? period - at : n;
        memcpy(out, pad_chars + at, c);
        out += c;
        n -= c;
        at = 0;
    }
}

static uint8_t *put_be_at(uint8_t *o, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        *o++ = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    return o;
}

/* A str header for n bytes at o (as w_str writes it). */
static uint8_t *put_str_header_at(uint8_t *o, size_t n)
{
    if (n < 32) {
        *o++ = (uint8_t)(0xa0 | n);
    } else if (n < 256) {
        *o++ = 0xd9;
        *o++ = (uint8_t)n;
    } else if (n < 65536) {
        *o++ = 0xda;
        o = put_be_at(o, n, 2);
    } else {
        *o++ = 0xdb;
        o = put_be_at(o, n, 4);
    }
    return o;
}

static uint8_t *put_cstr_at(uint8_t *o, const char *s)
{
    size_t n = strlen(s);
    o = put_str_header_at(o, n);
    memcpy(o, s, n);
    return o + n;
}

void rcb_ev_encode(struct rc_buf *b, const char *run, const char *type, uint64_t t_ns, uint64_t k,
                   uint32_t size)
{
    /* Built in one buffer and appended once: on the stack for the usual
     * short run id and type (the padding is at most 4096 bytes). */
    uint8_t stack[4096 + 256];
    size_t rl = strlen(run), tl = strlen(type);
    size_t cap = 4096 + 64 + rl + tl;
    uint8_t *tmp = cap <= sizeof(stack) ? stack : malloc(cap);
    if (tmp == NULL)
        return;
    uint8_t *o = tmp;
    *o++ = 0x84; /* map of 4 */
    o = put_cstr_at(o, "run");
    o = put_str_header_at(o, rl);
    memcpy(o, run, rl);
    o += rl;
    o = put_cstr_at(o, "type");
    o = put_str_header_at(o, tl);
    memcpy(o, type, tl);
    o += tl;
    o = put_cstr_at(o, "data");
    *o++ = 0x92; /* array of 2 */
    /* fixed-width timestamp and counter so every event has the same size */
    *o++ = 0xcf;
    o = put_be_at(o, t_ns, 8);
    *o++ = 0xcf;
    o = put_be_at(o, k, 8);
    o = put_cstr_at(o, "text");
    size_t used = (size_t)(o - tmp);
    /* the text header is 1 (fixstr), 2 (str8) or 3 (str16) bytes */
    size_t want = size > used + 1 ? size - used : 1;
    size_t n = want <= 32 ? want - 1 : want <= 257 ? want - 2 : want - 3;
    if (want > 32 && want <= 33)
        n = 31; /* 32 bytes cannot be hit exactly: one short */
    if (n > 4096)
        n = 4096;
    o = put_str_header_at(o, n);
    put_pad(o, k, n);
    o += n;
    put(b, tmp, (size_t)(o - tmp));
    if (tmp != stack)
        free(tmp);
}

void rcb_ev_encode_start(struct rc_buf *b, const char *run, uint32_t timeout_ms)
{
    w_map(b, timeout_ms ? 3 : 2);
    w_cstr(b, "run");
    w_cstr(b, run);
    w_cstr(b, "type");
    w_cstr(b, "start");
    if (timeout_ms) {
        w_cstr(b, "timeouts");
        w_map(b, 1);
        w_cstr(b, "*");
        w_uint(b, timeout_ms);
    }
}

void rcb_ev_encode_complete(struct rc_buf *b, const char *run)
{
    w_map(b, 2);
    w_cstr(b, "run");
    w_cstr(b, run);
    w_cstr(b, "type");
    w_cstr(b, "complete");
}

void rcb_sub_encode(struct rc_buf *b, const char *run, bool all)
{
    w_map(b, 2);
    w_cstr(b, "op");
    w_cstr(b, "sub");
    if (all) {
        w_cstr(b, "all");
        put_u8(b, 0xc3);
    } else {
        w_cstr(b, "run");
        w_cstr(b, run);
    }
}

/* A server `ev` frame like the edge's, for the raw WebSocket baseline. */
void rcb_ev_encode_server(struct rc_buf *b, const char *run, uint64_t seq, uint64_t t_ns,
                          uint32_t size)
{
    size_t start = b->len;
    w_map(b, 7);
    w_cstr(b, "op");
    w_cstr(b, "ev");
    w_cstr(b, "run");
    w_cstr(b, run);
    w_cstr(b, "epoch");
    w_uint(b, 1);
    w_cstr(b, "seq");
    put_u8(b, 0xcf);
    put_be(b, seq, 8);
    w_cstr(b, "type");
    w_cstr(b, "delta");
    w_cstr(b, "data");
    w_array(b, 2);
    put_u8(b, 0xcf);
    put_be(b, t_ns, 8);
    put_u8(b, 0xcf);
    put_be(b, seq, 8);
    w_cstr(b, "text");
    size_t used = b->len - start;
    size_t want = size > used + 3 ? size - used : 3;
    size_t n = want - 3;
    char pad[4096];
    if (n > sizeof(pad))
        n = sizeof(pad);
    memset(pad, 'x', n);
    put_u8(b, 0xda);
    put_be(b, n, 2);
    put(b, pad, n);
}

/* ---- reader ---- */

static bool need(const struct rcb_mp *r, size_t n)
{
    return (size_t)(r->end - r->p) >= n;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

bool rcb_mp_is_array(const struct rcb_mp *r)
{
    if (!need(r, 1))
        return false;
    uint8_t c = r->p[0];
    return (c & 0xf0) == 0x90 || c == 0xdc || c == 0xdd;
}

/* Header of one value: kind of container (elements owed), or scalar length. */
static bool hdr(struct rcb_mp *r, uint64_t *owe)
{
    if (!need(r, 1))
        return false;
    uint8_t c = *r->p++;
    size_t skip = 0;
    *owe = 0;
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
        return true;
    if ((c & 0xf0) == 0x80) {
        *owe = 2u * (c & 0x0f);
        return true;
    }
    if ((c & 0xf0) == 0x90) {
        *owe = c & 0x0f;
        return true;
    }
    if ((c & 0xe0) == 0xa0) {
        skip = c & 0x1f;
    } else {
        switch (c) {
        case 0xc4:
        case 0xd9:
            if (!need(r, 1))
                return false;
            skip = 1 + r->p[0];
            break;
        case 0xc5:
        case 0xda:
            if (!need(r, 2))
                return false;
            skip = 2 + be(r->p, 2);
            break;
        case 0xc6:
        case 0xdb:
            if (!need(r, 4))
                return false;
            skip = 4 + be(r->p, 4);
            break;
        case 0xcc:
        case 0xd0:
            skip = 1;
            break;
        case 0xcd:
        case 0xd1:
            skip = 2;
            break;
        case 0xca:
        case 0xce:
        case 0xd2:
            skip = 4;
            break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
            skip = 8;
            break;
        case 0xd4:
            skip = 2;
            break;
        case 0xd5:
            skip = 3;
            break;
        case 0xd6:
            skip = 5;
            break;
        case 0xd7:
            skip = 9;
            break;
        case 0xd8:
            skip = 17;
            break;
        case 0xc7:
            if (!need(r, 1))
                return false;
            skip = 2 + r->p[0];
            break;
        case 0xc8:
            if (!need(r, 2))
                return false;
            skip = 3 + be(r->p, 2);
            break;
        case 0xc9:
            if (!need(r, 4))
                return false;
            skip = 5 + be(r->p, 4);
            break;
        case 0xdc:
            if (!need(r, 2))
                return false;
            *owe = be(r->p, 2);
            skip = 2;
            break;
        case 0xdd:
            if (!need(r, 4))
                return false;
            *owe = be(r->p, 4);
            skip = 4;
            break;
        case 0xde:
            if (!need(r, 2))
                return false;
            *owe = 2 * be(r->p, 2);
            skip = 2;
            break;
        case 0xdf:
            if (!need(r, 4))
                return false;
            *owe = 2 * be(r->p, 4);
            skip = 4;
            break;
        default:
            return false; /* 0xc1 */
        }
    }
    if (!need(r, skip))
        return false;
    r->p += skip;
    return true;
}

bool rcb_mp_skip(struct rcb_mp *r)
{
    uint64_t owed = 1;
    while (owed > 0) {
        uint64_t more;
        if (!hdr(r, &more))
            return false;
        owed = owed - 1 + more;
    }
    return true;
}

bool rcb_mp_map(struct rcb_mp *r, uint32_t *n)
{
    if (!need(r, 1))
        return false;
    uint8_t c = r->p[0];
    if ((c & 0xf0) == 0x80) {
        *n = c & 0x0f;
        r->p++;
        return true;
    }
    if (c == 0xde && need(r, 3)) {
        *n = (uint32_t)be(r->p + 1, 2);
        r->p += 3;
        return true;
    }
    if (c == 0xdf && need(r, 5)) {
        *n = (uint32_t)be(r->p + 1, 4);
        r->p += 5;
        return true;
    }
    return false;
}

bool rcb_mp_array(struct rcb_mp *r, uint32_t *n)
{
    if (!need(r, 1))
        return false;
    uint8_t c = r->p[0];
    if ((c & 0xf0) == 0x90) {
        *n = c & 0x0f;
        r->p++;
        return true;
    }
    if (c == 0xdc && need(r, 3)) {
        *n = (uint32_t)be(r->p + 1, 2);
        r->p += 3;
        return true;
    }
    if (c == 0xdd && need(r, 5)) {
        *n = (uint32_t)be(r->p + 1, 4);
        r->p += 5;
        return true;
    }
    return false;
}

bool rcb_mp_str(struct rcb_mp *r, const char **s, uint32_t *len)
{
    if (!need(r, 1))
        return false;
    uint8_t c = r->p[0];
    size_t h, n;
    if ((c & 0xe0) == 0xa0) {
        h = 1;
        n = c & 0x1f;
    } else if (c == 0xd9 && need(r, 2)) {
        h = 2;
        n = r->p[1];
    } else if (c == 0xda && need(r, 3)) {
        h = 3;
        n = be(r->p + 1, 2);
    } else if (c == 0xdb && need(r, 5)) {
        h = 5;
        n = be(r->p + 1, 4);
    } else {
        return false;
    }
    if (!need(r, h + n))
        return false;
    *s = (const char *)r->p + h;
    *len = (uint32_t)n;
    r->p += h + n;
    return true;
}

bool rcb_mp_uint(struct rcb_mp *r, uint64_t *v)
{
    if (!need(r, 1))
        return false;
    uint8_t c = r->p[0];
    int n;
    if (c <= 0x7f) {
        *v = c;
        r->p++;
        return true;
    }
    switch (c) {
    case 0xcc:
    case 0xd0:
        n = 1;
        break;
    case 0xcd:
    case 0xd1:
        n = 2;
        break;
    case 0xce:
    case 0xd2:
        n = 4;
        break;
    case 0xcf:
    case 0xd3:
        n = 8;
        break;
    default:
        return false;
    }
    if (!need(r, 1 + (size_t)n))
        return false;
    *v = be(r->p + 1, n);
    r->p += 1 + n;
    return true;
}

static bool key_is(const char *k, uint32_t kl, const char *lit)
{
    size_t n = strlen(lit);
    return kl == n && memcmp(k, lit, n) == 0;
}

/* Reads the data value of an ev: our [t_ns, k] array, or a synthetic
 * terminal's map with idle_ms. */
static void read_data(struct rcb_mp *r, struct rcb_msg *m)
{
    struct rcb_mp t = *r;
    uint32_t n;
    if (rcb_mp_array(&t, &n) && n >= 1) {
        uint64_t v;
        if (rcb_mp_uint(&t, &v)) {
            m->has_t = true;
            m->t_ns = v;
            if (n >= 2 && rcb_mp_uint(&t, &v)) {
                m->has_k = true;
                m->k = v;
            }
        }
    } else if (rcb_mp_map(&t, &n)) {
        for (uint32_t i = 0; i < n; i++) {
            const char *k;
            uint32_t kl;
            if (!rcb_mp_str(&t, &k, &kl))
                break;
            if (key_is(k, kl, "idle_ms")) {
                uint64_t v;
                if (rcb_mp_uint(&t, &v))
                    m->idle_ms = v;
                continue;
            }
            if (!rcb_mp_skip(&t))
                break;
        }
    }
}

/* One message map; r is positioned at it.  false on garbage. */
static bool parse_map(struct rcb_mp *r, rcb_msg_cb cb, void *arg)
{
    uint32_t n;
    if (!rcb_mp_map(r, &n))
        return rcb_mp_skip(r); /* not a map: ignore */
    struct rcb_msg m;
    memset(&m, 0, sizeof(m));
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (!rcb_mp_str(r, &k, &kl)) {
            if (!rcb_mp_skip(r) || !rcb_mp_skip(r))
                return false;
            continue;
        }
        bool ok = true;
        if (key_is(k, kl, "op")) {
            const char *v;
            uint32_t vl;
            if (rcb_mp_str(r, &v, &vl)) {
                if (key_is(v, vl, "ev"))
                    m.op = 'e';
                else if (key_is(v, vl, "hello"))
                    m.op = 'h';
                else if (key_is(v, vl, "ok"))
                    m.op = 'o';
                else if (key_is(v, vl, "err"))
                    m.op = 'x';
                else if (key_is(v, vl, "snap"))
                    m.op = 's';
                else if (key_is(v, vl, "gap"))
                    m.op = 'g';
                else if (key_is(v, vl, "hb"))
                    m.op = 'b';
                else if (key_is(v, vl, "pong"))
                    m.op = 'p';
                else
                    m.op = '?';
                continue;
            }
        } else if (key_is(k, kl, "run")) {
            if (rcb_mp_str(r, &m.run, &m.run_len))
                continue;
        } else if (key_is(k, kl, "type")) {
            if (rcb_mp_str(r, &m.type, &m.type_len))
                continue;
        } else if (key_is(k, kl, "seq")) {
            if (rcb_mp_uint(r, &m.seq))
                continue;
        } else if (key_is(k, kl, "synthetic")) {
            if (r->p < r->end && *r->p == 0xc3)
                m.synthetic = true;
        } else if (key_is(k, kl, "message")) {
            if (rcb_mp_str(r, &m.msg, &m.msg_len))
                continue;
        } else if (key_is(k, kl, "data")) {
            read_data(r, &m);
        }
        if (ok && !rcb_mp_skip(r))
            return false;
    }
    cb(arg, &m);
    return true;
}

long rcb_parse_msgs(const uint8_t *buf, size_t len, rcb_msg_cb cb, void *arg)
{
    size_t done = 0;
    while (done < len) {
        /* find the extent of one whole top-level value first */
        struct rcb_mp probe = {buf + done, buf + len};
        if (!rcb_mp_skip(&probe)) {
            /* truncated (wait for more) or garbage (0xc1) */
            if (buf[done] == 0xc1)
                return -1;
            break;
        }
        const uint8_t *vend = probe.p;
        struct rcb_mp r = {buf + done, vend};
        uint32_t n;
        if (rcb_mp_is_array(&r) && rcb_mp_array(&r, &n)) {
            for (uint32_t i = 0; i < n; i++)
                if (!parse_map(&r, cb, arg))
                    return -1;
        } else if (!parse_map(&r, cb, arg)) {
            return -1;
        }
        done = (size_t)(vend - buf);
    }
    return (long)done;
}
