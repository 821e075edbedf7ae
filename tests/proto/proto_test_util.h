/*
 * Helpers shared by the proto tests: msgpack from JSON text (through
 * rc_json, itself tested in test_json.c) and lookups in msgpack-c objects,
 * so that encodings are checked by an independent decoder.
 */
#ifndef PROTO_TEST_UTIL_H
#define PROTO_TEST_UTIL_H

#include <criterion/criterion.h>
#include <msgpack.h>
#include <string.h>

#include "rc_error.h"
#include "rc_json.h"
#include "rc_proto.h"

/* msgpack of a JSON text, in a buffer the caller finis. */
static inline struct rc_buf mp_of(const char *json)
{
    struct rc_buf b;
    rc_buf_init(&b);
    char why[200] = "";
    int rv = rc_json_to_msgpack_ex(json, strlen(json), &b, why, sizeof why);
    cr_assert_eq(rv, 0, "bad test JSON %s: %s", json, why);
    return b;
}

/* Unpacks buf[0..len) with msgpack-c; the whole buffer must be one value. */
static inline msgpack_object mpc_unpack(msgpack_unpacked *u, const void *buf, size_t len)
{
    size_t off = 0;
    msgpack_unpacked_init(u);
    msgpack_unpack_return r = msgpack_unpack_next(u, buf, len, &off);
    cr_assert_eq(r, MSGPACK_UNPACK_SUCCESS, "msgpack-c cannot unpack (%d)", (int)r);
    cr_assert_eq(off, len, "trailing bytes after the value");
    return u->data;
}

/* The value of key k in map o, or NULL. */
static inline const msgpack_object *mpc_get(const msgpack_object *o, const char *k)
{
    cr_assert_eq(o->type, MSGPACK_OBJECT_MAP);
    size_t n = strlen(k);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *key = &o->via.map.ptr[i].key;
        if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == n &&
            memcmp(key->via.str.ptr, k, n) == 0)
            return &o->via.map.ptr[i].val;
    }
    return NULL;
}

static inline void mpc_assert_str(const msgpack_object *o, const char *k, const char *want)
{
    const msgpack_object *v = mpc_get(o, k);
    cr_assert_not_null(v, "key %s missing", k);
    cr_assert_eq(v->type, MSGPACK_OBJECT_STR, "key %s is not a str", k);
    cr_assert_eq(v->via.str.size, strlen(want), "key %s length", k);
    cr_assert(memcmp(v->via.str.ptr, want, strlen(want)) == 0, "key %s value", k);
}

static inline void mpc_assert_uint(const msgpack_object *o, const char *k, uint64_t want)
{
    const msgpack_object *v = mpc_get(o, k);
    cr_assert_not_null(v, "key %s missing", k);
    cr_assert_eq(v->type, MSGPACK_OBJECT_POSITIVE_INTEGER, "key %s is not a uint", k);
    cr_assert_eq(v->via.u64, want, "key %s: %llu != %llu", k, (unsigned long long)v->via.u64,
                 (unsigned long long)want);
}

static inline void mpc_assert_int(const msgpack_object *o, const char *k, int64_t want)
{
    const msgpack_object *v = mpc_get(o, k);
    cr_assert_not_null(v, "key %s missing", k);
    if (want >= 0) {
        cr_assert_eq(v->type, MSGPACK_OBJECT_POSITIVE_INTEGER, "key %s type", k);
        cr_assert_eq(v->via.u64, (uint64_t)want, "key %s", k);
    } else {
        cr_assert_eq(v->type, MSGPACK_OBJECT_NEGATIVE_INTEGER, "key %s type", k);
        cr_assert_eq(v->via.i64, want, "key %s", k);
    }
}

static inline void mpc_assert_bool(const msgpack_object *o, const char *k, bool want)
{
    const msgpack_object *v = mpc_get(o, k);
    cr_assert_not_null(v, "key %s missing", k);
    cr_assert_eq(v->type, MSGPACK_OBJECT_BOOLEAN, "key %s is not a bool", k);
    cr_assert_eq(v->via.boolean, want, "key %s", k);
}

/* Compares a NULL-able field name. */
static inline bool field_is(const char *got, const char *want)
{
    if (got == NULL || want == NULL)
        return got == want;
    return strcmp(got, want) == 0;
}

#endif
