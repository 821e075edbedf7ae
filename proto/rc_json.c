/*
 * rc_json: msgpack <-> JSON through jansson trees (the mapping is in
 * rc_json.h).  The msgpack side is read with rc_mpr and written with
 * rc_mpw, so both directions share the codec's validation.
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

/* ---- msgpack -> JSON ---- */

struct m2j {
    struct rc_mpr r;
    struct rc_buf tmp; /* scratch for base64 and UTF-8 repair */
    int err;
};

/* A JSON string of s[0..len), each byte of an invalid UTF-8 sequence
 * replaced by U+FFFD. */
static json_t *make_string(struct m2j *c, const char *s, size_t len)
{
    if (rc_proto_valid_utf8(s, len))
        return json_stringn_nocheck(s, len);
    rc_buf_reset(&c->tmp);
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = 1;
        if (u[i] >= 0xc2 && u[i] <= 0xdf)
            n = 2;
        else if (u[i] >= 0xe0 && u[i] <= 0xef)
            n = 3;
        else if (u[i] >= 0xf0 && u[i] <= 0xf4)
            n = 4;
        if (i + n <= len && rc_proto_valid_utf8(s + i, n)) {
            if (rc_buf_append(&c->tmp, s + i, n) != RC_OK)
                return NULL;
            i += n;
        } else {
            if (rc_buf_append(&c->tmp, "\xef\xbf\xbd", 3) != RC_OK)
                return NULL;
            i++;
        }
    }
    return json_stringn_nocheck((const char *)c->tmp.data, c->tmp.len);
}

static json_t *make_base64(struct m2j *c, const void *p, size_t len)
{
    rc_buf_reset(&c->tmp);
    if (len == 0)
        return json_string_nocheck("");
    if (rc_json_base64(p, len, &c->tmp) != RC_OK)
        return NULL;
    return json_stringn_nocheck((const char *)c->tmp.data, c->tmp.len);
}

/* The key of a map pair as a string: appended to keybuf (a fresh buffer). */
static int stringify_key(struct m2j *c, const struct rc_mp_item *k, struct rc_buf *keybuf)
{
    char num[40];
    int n;
    switch (k->type) {
    case RC_MP_STR: {
        json_t *s = make_string(c, k->v.s.ptr, k->v.s.len);
        if (s == NULL)
            return RC_ENOMEM;
        int rv = rc_buf_append(keybuf, json_string_value(s), json_string_length(s));
        json_decref(s);
        return rv;
    }
    case RC_MP_NIL:
        return rc_buf_append(keybuf, "null", 4);
    case RC_MP_BOOL:
        return k->v.b ? rc_buf_append(keybuf, "true", 4) : rc_buf_append(keybuf, "false", 5);
    case RC_MP_UINT:
        n = snprintf(num, sizeof num, "%" PRIu64, k->v.u);
        return rc_buf_append(keybuf, num, (size_t)n);
    case RC_MP_INT:
        n = snprintf(num, sizeof num, "%" PRId64, k->v.i);
        return rc_buf_append(keybuf, num, (size_t)n);
    case RC_MP_FLOAT:
        n = snprintf(num, sizeof num, "%.17g", k->v.f);
        return rc_buf_append(keybuf, num, (size_t)n);
    case RC_MP_BIN:
        return rc_json_base64(k->v.s.ptr, k->v.s.len, keybuf);
    default: {
        /* ext and containers: the base64 of their msgpack bytes (their JSON
         * text would escape the quotes of nested keys once per level, which
         * grows exponentially with depth) */
        c->r.p = k->start;
        if (!rc_mpr_skip(&c->r))
            return RC_EPROTO;
        return rc_json_base64(k->start, (size_t)(c->r.p - k->start), keybuf);
    }
    }
}

static json_t *m2j_value(struct m2j *c, int depth)
{
    struct rc_mp_item it;
    if (!rc_mpr_next(&c->r, &it)) {
        c->err = RC_EPROTO;
        return NULL;
    }
    switch (it.type) {
    case RC_MP_NIL:
        return json_null();
    case RC_MP_BOOL:
        return json_boolean(it.v.b);
    case RC_MP_UINT:
        if (it.v.u <= INT64_MAX)
            return json_integer((json_int_t)it.v.u);
        char num[24];
        int n = snprintf(num, sizeof num, "%" PRIu64, it.v.u);
        return json_stringn_nocheck(num, (size_t)n);
    case RC_MP_INT:
        return json_integer((json_int_t)it.v.i);
    case RC_MP_FLOAT:
        if (!isfinite(it.v.f))
            return json_null();
        return json_real(it.v.f);
    case RC_MP_STR:
        return make_string(c, it.v.s.ptr, it.v.s.len);
    case RC_MP_BIN:
        return make_base64(c, it.v.s.ptr, it.v.s.len);
    case RC_MP_EXT: {
        json_t *o = json_object();
        json_t *d = make_base64(c, it.v.s.ptr, it.v.s.len);
        if (o == NULL || d == NULL || json_object_set_new(o, "ext", json_integer(it.ext_type)) ||
            json_object_set_new(o, "data", d)) {
            json_decref(o);
            return NULL;
        }
        return o;
    }
    case RC_MP_ARRAY: {
        if (depth >= RC_JSON_DEPTH_MAX) {
            c->err = RC_ELIMIT;
            return NULL;
        }
        if (it.v.n > rc_mpr_left(&c->r)) {
            c->err = RC_EPROTO;
            return NULL;
        }
        json_t *a = json_array();
        if (a == NULL)
            return NULL;
        for (uint32_t i = 0; i < it.v.n; i++) {
            json_t *v = m2j_value(c, depth + 1);
            if (v == NULL || json_array_append_new(a, v) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case RC_MP_MAP: {
        if (depth >= RC_JSON_DEPTH_MAX) {
            c->err = RC_ELIMIT;
            return NULL;
        }
        if ((uint64_t)it.v.n * 2 > rc_mpr_left(&c->r)) {
            c->err = RC_EPROTO;
            return NULL;
        }
        json_t *o = json_object();
        if (o == NULL)
            return NULL;
        struct rc_buf key;
        rc_buf_init(&key);
        for (uint32_t i = 0; i < it.v.n; i++) {
            struct rc_mp_item k;
            rc_buf_reset(&key);
            if (!rc_mpr_next(&c->r, &k)) {
                c->err = RC_EPROTO;
                goto map_fail;
            }
            int rv = stringify_key(c, &k, &key);
            if (rv != RC_OK) {
                c->err = rv;
                goto map_fail;
            }
            json_t *v = m2j_value(c, depth + 1);
            if (v == NULL)
                goto map_fail;
            if (json_object_setn_new_nocheck(o, key.len ? (const char *)key.data : "", key.len,
                                             v) != 0)
                goto map_fail;
        }
        rc_buf_fini(&key);
        return o;
    map_fail:
        rc_buf_fini(&key);
        json_decref(o);
        return NULL;
    }
    }
    c->err = RC_EPROTO;
    return NULL;
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
    return rc_buf_append(data, buffer, size) == RC_OK ? 0 : -1;
}

int rc_json_from_msgpack(const void *mp, size_t len, struct rc_buf *out_json)
{
    struct m2j c;
    rc_mpr_init(&c.r, mp, len);
    rc_buf_init(&c.tmp);
    c.err = 0;
    json_t *v = m2j_value(&c, 0);
    rc_buf_fini(&c.tmp);
    if (v == NULL)
        return c.err ? c.err : RC_ENOMEM;
    if (rc_mpr_left(&c.r) != 0) {
        json_decref(v);
        return RC_EPROTO;
    }
    size_t mark = out_json->len;
    int rv = json_dump_callback(v, dump_cb, out_json,
                                JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    json_decref(v);
    if (rv != 0) {
        out_json->len = mark;
        return RC_ENOMEM;
    }
    return RC_OK;
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
            snprintf(why, why_len, "%s",
                     rv == RC_ELIMIT ? "nests deeper than 64 levels" : "out of memory");
    }
    return rv;
}

int rc_json_to_msgpack(const char *json, size_t len, struct rc_buf *out_mp)
{
    return rc_json_to_msgpack_ex(json, len, out_mp, NULL, 0);
}
