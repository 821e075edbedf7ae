/*
 * rc_json: msgpack <-> JSON (the mapping is in rc_json.h).  JSON is parsed
 * by jansson and written to msgpack with rc_mpw; msgpack is read with rc_mpr
 * and written as JSON text directly (see below why not through jansson).
 */
#include "rc_json.h"
#include "rc_error.h"
#include "rc_mpr.h"
#include "rc_proto.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* ---- base64 ---- */

int rc_json_base64(const void *p, size_t len, struct rc_buf *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *s = p;
    size_t n = (len + 2) / 3 * 4;
    if (n == 0)
        return RC_OK;
    int rv = rc_buf_reserve(out, n);
    if (rv != RC_OK)
        return rv;
    char *d = (char *)out->data + out->len;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *d++ = tab[v >> 18];
        *d++ = tab[(v >> 12) & 63];
        *d++ = tab[(v >> 6) & 63];
        *d++ = tab[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        *d++ = tab[v >> 18];
        *d++ = tab[(v >> 12) & 63];
        *d++ = '=';
        *d++ = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        *d++ = tab[v >> 18];
        *d++ = tab[(v >> 12) & 63];
        *d++ = tab[(v >> 6) & 63];
        *d++ = '=';
    }
    out->len += n;
    return RC_OK;
}

/* ---- msgpack -> JSON ----
 *
 * Written directly into the output buffer in one pass, in the compact form
 * jansson's json_dumps(JSON_COMPACT) would give (same escapes, same number
 * formatting): building a jansson tree and dumping it cost ~3.4 us for a
 * 250-byte `ev`, this costs a small fraction of that (bench_proto), and
 * the edge converts every frame of every JSON-mode connection.
 */

struct m2j {
    struct rc_mpr r;
    struct rc_buf *out;
};

/* rc_buf_append with the common case (room left) inline. */
static inline int jappend(struct rc_buf *o, const void *p, size_t n)
{
    if (o->cap - o->len >= n) {
        memcpy(o->data + o->len, p, n);
        o->len += n;
        return RC_OK;
    }
    return rc_buf_append(o, p, n);
}

static const char hex_digits[] = "0123456789ABCDEF"; /* as jansson */

/* Appends s[0..len) as a JSON string (quotes included); invalid UTF-8 bytes
 * become U+FFFD. */
static int put_json_string(struct rc_buf *o, const char *s, size_t len)
{
    /* worst case: every byte a control char (6 bytes) or a bad byte (3) */
    if (len > (SIZE_MAX - 2) / 6)
        return RC_ENOMEM;
    int rv = rc_buf_reserve(o, 6 * len + 2);
    if (rv != RC_OK)
        return rv;
    char *d = (char *)o->data + o->len;
    const uint8_t *u = (const uint8_t *)s;
    bool utf8_ok = rc_proto_valid_utf8(s, len);
    *d++ = '"';
    size_t i = 0;
    while (i < len) {
        /* a run of bytes that go out as they are, copied at once */
        size_t j = i;
        while (j < len && u[j] >= 0x20 && u[j] != '"' && u[j] != '\\' && (u[j] < 0x80 || utf8_ok))
            j++;
        if (j > i) {
            memcpy(d, s + i, j - i);
            d += j - i;
            i = j;
            if (i == len)
                break;
        }
        uint8_t c = u[i];
        if (c < 0x80) {
            *d++ = '\\';
            switch (c) {
            case '"':
                *d++ = '"';
                break;
            case '\\':
                *d++ = '\\';
                break;
            case '\b':
                *d++ = 'b';
                break;
            case '\f':
                *d++ = 'f';
                break;
            case '\n':
                *d++ = 'n';
                break;
            case '\r':
                *d++ = 'r';
                break;
            case '\t':
                *d++ = 't';
                break;
            default:
                *d++ = 'u';
                *d++ = '0';
                *d++ = '0';
                *d++ = hex_digits[c >> 4];
                *d++ = hex_digits[c & 15];
            }
            i++;
            continue;
        }
        size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
        if (utf8_ok || (i + n <= len && c >= 0xc2 && c <= 0xf4 && rc_proto_valid_utf8(s + i, n))) {
            memcpy(d, s + i, n);
            d += n;
            i += n;
        } else {
            memcpy(d, "\xef\xbf\xbd", 3);
            d += 3;
            i++;
        }
    }
    *d++ = '"';
    o->len = (size_t)((uint8_t *)d - o->data);
    return RC_OK;
}

static int put_u64(struct rc_buf *o, uint64_t v, bool neg)
{
    char tmp[24];
    char *e = tmp + sizeof tmp;
    char *p = e;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    if (neg)
        *--p = '-';
    return jappend(o, p, (size_t)(e - p));
}

static int put_i64(struct rc_buf *o, int64_t v)
{
    if (v >= 0)
        return put_u64(o, (uint64_t)v, false);
    return put_u64(o, (uint64_t)0 - (uint64_t)v, true);
}

/* A double as jansson writes it: %.17g, always with a '.' or an exponent,
 * and the exponent without '+' or leading zeros; NaN and infinities (not
 * JSON) as null. */
static int put_double(struct rc_buf *o, double v)
{
    if (!isfinite(v))
        return jappend(o, "null", 4);
    char tmp[40];
    int n = snprintf(tmp, sizeof tmp - 3, "%.17g", v);
    if (n < 0 || (size_t)n >= sizeof tmp - 3)
        return RC_EINVAL;
    char *e = strchr(tmp, 'e');
    if (e == NULL) {
        if (strchr(tmp, '.') == NULL) {
            memcpy(tmp + n, ".0", 3);
            n += 2;
        }
    } else {
        char *q = e + 1;
        char *from = q;
        if (*from == '+')
            from++;
        else if (*from == '-')
            q++, from++;
        while (*from == '0' && from[1] != '\0')
            from++;
        memmove(q, from, strlen(from) + 1);
        n = (int)strlen(tmp);
    }
    return jappend(o, tmp, (size_t)n);
}

static int put_base64_string(struct rc_buf *o, const void *p, size_t len)
{
    int rv = jappend(o, "\"", 1);
    if (rv == RC_OK)
        rv = rc_json_base64(p, len, o);
    if (rv == RC_OK)
        rv = jappend(o, "\"", 1);
    return rv;
}

static int m2j_value(struct m2j *c, int depth);

/* A map key that is not a string, stringified (see rc_json.h). */
static int put_key(struct m2j *c, const struct rc_mp_item *k)
{
    struct rc_buf *o = c->out;
    switch (k->type) {
    case RC_MP_STR:
        return put_json_string(o, k->v.s.ptr, k->v.s.len);
    case RC_MP_NIL:
        return jappend(o, "\"null\"", 6);
    case RC_MP_BOOL:
        return k->v.b ? jappend(o, "\"true\"", 6) : jappend(o, "\"false\"", 7);
    case RC_MP_UINT:
    case RC_MP_INT:
    case RC_MP_FLOAT: {
        char tmp[48];
        int n = k->type == RC_MP_UINT  ? snprintf(tmp, sizeof tmp, "\"%" PRIu64 "\"", k->v.u)
                : k->type == RC_MP_INT ? snprintf(tmp, sizeof tmp, "\"%" PRId64 "\"", k->v.i)
                                       : snprintf(tmp, sizeof tmp, "\"%.17g\"", k->v.f);
        return jappend(o, tmp, (size_t)n);
    }
    case RC_MP_BIN:
        return put_base64_string(o, k->v.s.ptr, k->v.s.len);
    default:
        /* ext and containers: the base64 of their msgpack bytes (their JSON
         * text, quoted once per level of keys nested in keys, would grow
         * exponentially with depth) */
        c->r.p = k->start;
        if (!rc_mpr_skip(&c->r))
            return RC_EPROTO;
        return put_base64_string(o, k->start, (size_t)(c->r.p - k->start));
    }
}

static int m2j_value(struct m2j *c, int depth)
{
    struct rc_buf *o = c->out;
    struct rc_mp_item it;
    int rv;
    if (!rc_mpr_next(&c->r, &it))
        return RC_EPROTO;
    switch (it.type) {
    case RC_MP_NIL:
        return jappend(o, "null", 4);
    case RC_MP_BOOL:
        return it.v.b ? jappend(o, "true", 4) : jappend(o, "false", 5);
    case RC_MP_UINT:
        if (it.v.u <= INT64_MAX)
            return put_u64(o, it.v.u, false);
        /* beyond what JSON libraries hold exactly: a decimal string */
        if ((rv = jappend(o, "\"", 1)) != RC_OK || (rv = put_u64(o, it.v.u, false)))
            return rv;
        return jappend(o, "\"", 1);
    case RC_MP_INT:
        return put_i64(o, it.v.i);
    case RC_MP_FLOAT:
        return put_double(o, it.v.f);
    case RC_MP_STR:
        return put_json_string(o, it.v.s.ptr, it.v.s.len);
    case RC_MP_BIN:
        return put_base64_string(o, it.v.s.ptr, it.v.s.len);
    case RC_MP_EXT:
        if ((rv = jappend(o, "{\"ext\":", 7)) != RC_OK || (rv = put_i64(o, it.ext_type)) != RC_OK ||
            (rv = jappend(o, ",\"data\":", 8)) != RC_OK ||
            (rv = put_base64_string(o, it.v.s.ptr, it.v.s.len)) != RC_OK)
            return rv;
        return jappend(o, "}", 1);
    case RC_MP_ARRAY:
        if (depth >= RC_JSON_DEPTH_MAX)
            return RC_ELIMIT;
        if (it.v.n > rc_mpr_left(&c->r))
            return RC_EPROTO;
        if ((rv = jappend(o, "[", 1)) != RC_OK)
            return rv;
        for (uint32_t i = 0; i < it.v.n; i++) {
            if (i > 0 && (rv = jappend(o, ",", 1)) != RC_OK)
                return rv;
            if ((rv = m2j_value(c, depth + 1)) != RC_OK)
                return rv;
        }
        return jappend(o, "]", 1);
    case RC_MP_MAP:
        if (depth >= RC_JSON_DEPTH_MAX)
            return RC_ELIMIT;
        if ((uint64_t)it.v.n * 2 > rc_mpr_left(&c->r))
            return RC_EPROTO;
        if ((rv = jappend(o, "{", 1)) != RC_OK)
            return rv;
        for (uint32_t i = 0; i < it.v.n; i++) {
            struct rc_mp_item k;
            if (i > 0 && (rv = jappend(o, ",", 1)) != RC_OK)
                return rv;
            if (!rc_mpr_next(&c->r, &k))
                return RC_EPROTO;
            if ((rv = put_key(c, &k)) != RC_OK)
                return rv;
            if ((rv = jappend(o, ":", 1)) != RC_OK)
                return rv;
            if ((rv = m2j_value(c, depth + 1)) != RC_OK)
                return rv;
        }
        return jappend(o, "}", 1);
    }
    return RC_EPROTO;
}

int rc_json_from_msgpack(const void *mp, size_t len, struct rc_buf *out_json)
{
    struct m2j c;
    size_t mark = out_json->len;
    rc_mpr_init(&c.r, mp, len);
    c.out = out_json;
    int rv = m2j_value(&c, 0);
    if (rv == RC_OK && rc_mpr_left(&c.r) != 0)
        rv = RC_EPROTO;
    if (rv != RC_OK)
        out_json->len = mark;
    return rv;
}

/* ---- JSON -> msgpack ---- */

static int j2m_value(const json_t *v, struct rc_buf *out, int depth)
{
    int rv;
    switch (json_typeof(v)) {
    case JSON_NULL:
        return rc_mpw_nil(out);
    case JSON_TRUE:
        return rc_mpw_bool(out, true);
    case JSON_FALSE:
        return rc_mpw_bool(out, false);
    case JSON_INTEGER:
        return rc_mpw_int(out, (int64_t)json_integer_value(v));
    case JSON_REAL:
        return rc_mpw_double(out, json_real_value(v));
    case JSON_STRING:
        return rc_mpw_str(out, json_string_value(v), json_string_length(v));
    case JSON_ARRAY: {
        if (depth >= RC_JSON_DEPTH_MAX)
            return RC_ELIMIT;
        size_t n = json_array_size(v);
        if ((rv = rc_mpw_array(out, (uint32_t)n)) != RC_OK)
            return rv;
        for (size_t i = 0; i < n; i++) {
            if ((rv = j2m_value(json_array_get(v, i), out, depth + 1)) != RC_OK)
                return rv;
        }
        return RC_OK;
    }
    case JSON_OBJECT: {
        if (depth >= RC_JSON_DEPTH_MAX)
            return RC_ELIMIT;
        if ((rv = rc_mpw_map(out, (uint32_t)json_object_size(v))) != RC_OK)
            return rv;
        for (void *it = json_object_iter((json_t *)v); it != NULL;
             it = json_object_iter_next((json_t *)v, it)) {
            if ((rv = rc_mpw_str(out, json_object_iter_key(it), json_object_iter_key_len(it))) !=
                RC_OK)
                return rv;
            if ((rv = j2m_value(json_object_iter_value(it), out, depth + 1)) != RC_OK)
                return rv;
        }
        return RC_OK;
    }
    }
    return RC_EPROTO;
}

int rc_json_to_msgpack_ex(const char *json, size_t len, struct rc_buf *out_mp, char *why,
                          size_t why_len)
{
    json_error_t jerr;
    json_t *v =
        json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (v == NULL) {
        if (why != NULL && why_len > 0)
            snprintf(why, why_len, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        return RC_EPROTO;
    }
    size_t mark = out_mp->len;
    int rv = j2m_value(v, out_mp, 0);
    json_decref(v);
    if (rv != RC_OK) {
        out_mp->len = mark;
        if (why != NULL && why_len > 0)
            snprintf(why, why_len, "%s", rv == RC_ELIMIT ? "nests too deep" : "out of memory");
    }
    return rv;
}

int rc_json_to_msgpack(const char *json, size_t len, struct rc_buf *out_mp)
{
    return rc_json_to_msgpack_ex(json, len, out_mp, NULL, 0);
}
