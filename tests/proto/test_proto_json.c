/*
 * msgpack <-> JSON (rc_json): the mapping of every msgpack type, exact
 * integers, base64, stringified keys, UTF-8 repair, limits and errors.
 */
#include "proto_test_util.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>

/* The JSON of b as a NUL-terminated string in a static buffer. */
static const char *to_json(const struct rc_buf *b)
{
    static char text[4096];
    struct rc_buf j;
    rc_buf_init(&j);
    int rv = rc_json_from_msgpack(b->data, b->len, &j);
    cr_assert_eq(rv, 0, "rc_json_from_msgpack: %d", rv);
    cr_assert_lt(j.len, sizeof text);
    memcpy(text, j.data, j.len);
    text[j.len] = '\0';
    rc_buf_fini(&j);
    return text;
}

Test(json, scalars_and_containers)
{
    struct rc_buf b;
    rc_buf_init(&b);
    rc_mpw_array(&b, 9);
    rc_mpw_nil(&b);
    rc_mpw_bool(&b, true);
    rc_mpw_bool(&b, false);
    rc_mpw_uint(&b, 18446744073709551615ull);
    rc_mpw_int(&b, INT64_MIN);
    rc_mpw_uint(&b, 9223372036854775807ull);
    rc_mpw_double(&b, 0.1);
    rc_mpw_cstr(&b, "a\"b\n\xc3\xa9");
    rc_mpw_map(&b, 0);
    cr_assert_str_eq(to_json(&b), "[null,true,false,\"18446744073709551615\",-9223372036854775808,"
                                  "9223372036854775807,0.10000000000000001,\"a\\\"b\\n\xc3\xa9\","
                                  "{}]");
    rc_buf_fini(&b);
}

Test(json, bin_is_base64_and_ext_is_object)
{
    struct rc_buf b;
    rc_buf_init(&b);
    rc_mpw_array(&b, 5);
    rc_mpw_bin(&b, "", 0);
    rc_mpw_bin(&b, "f", 1);
    rc_mpw_bin(&b, "fo", 2);
    rc_mpw_bin(&b, "foobar", 6);
    uint8_t ext[] = {0xd5, 0x07, 0xff, 0x00};
    rc_mpw_raw(&b, ext, sizeof ext);
    cr_assert_str_eq(to_json(&b),
                     "[\"\",\"Zg==\",\"Zm8=\",\"Zm9vYmFy\",{\"ext\":7,\"data\":\"/wA=\"}]");
    rc_buf_fini(&b);
}

Test(json, non_string_keys_stringified)
{
    struct rc_buf b;
    rc_buf_init(&b);
    rc_mpw_map(&b, 6);
    rc_mpw_uint(&b, 42);
    rc_mpw_cstr(&b, "u");
    rc_mpw_int(&b, -3);
    rc_mpw_cstr(&b, "i");
    rc_mpw_bool(&b, true);
    rc_mpw_cstr(&b, "b");
    rc_mpw_nil(&b);
    rc_mpw_cstr(&b, "n");
    rc_mpw_bin(&b, "hi", 2);
    rc_mpw_cstr(&b, "bin");
    rc_mpw_array(&b, 2);
    rc_mpw_uint(&b, 1);
    rc_mpw_cstr(&b, "x");
    rc_mpw_cstr(&b, "arr");
    cr_assert_str_eq(to_json(&b), "{\"42\":\"u\",\"-3\":\"i\",\"true\":\"b\",\"null\":\"n\","
                                  "\"aGk=\":\"bin\",\"kgGheA==\":\"arr\"}");
    rc_buf_fini(&b);
}

/* Keys that are maps whose keys are maps...: each level's key becomes the
 * base64 of its msgpack, so the text grows linearly with depth (quoting
 * JSON text inside keys would double it per level). */
Test(json, nested_container_keys_stay_linear, .timeout = 10)
{
    struct rc_buf b;
    rc_buf_init(&b);
    for (int i = 0; i < 200; i++)
        rc_mpw_map(&b, 1);
    rc_mpw_uint(&b, 1);
    for (int i = 0; i < 200; i++)
        rc_mpw_uint(&b, 1);
    struct rc_buf j;
    rc_buf_init(&j);
    cr_assert_eq(rc_json_from_msgpack(b.data, b.len, &j), 0);
    cr_assert_lt(j.len, 4 * b.len + 16, "JSON of %zu bytes from %zu", j.len, b.len);
    rc_buf_fini(&j);
    rc_buf_fini(&b);
}

Test(json, invalid_utf8_replaced_and_nan_is_null)
{
    struct rc_buf b;
    rc_buf_init(&b);
    rc_mpw_array(&b, 3);
    rc_mpw_str(&b,
               "a\xff"
               "b\xe2\x82",
               5);
    rc_mpw_double(&b, NAN);
    rc_mpw_double(&b, -INFINITY);
    cr_assert_str_eq(to_json(&b), "[\"a\xef\xbf\xbd"
                                  "b\xef\xbf\xbd\xef\xbf\xbd\",null,null]");
    rc_buf_fini(&b);
}

Test(json, from_msgpack_errors_leave_output_alone)
{
    struct rc_buf j;
    rc_buf_init(&j);
    rc_buf_append(&j, "keep", 4);
    uint8_t trailing[] = {0x01, 0x02};
    cr_assert_eq(rc_json_from_msgpack(trailing, 2, &j), RC_EPROTO);
    uint8_t truncated[] = {0x92, 0x01};
    cr_assert_eq(rc_json_from_msgpack(truncated, 2, &j), RC_EPROTO);
    uint8_t never[] = {0xc1};
    cr_assert_eq(rc_json_from_msgpack(never, 1, &j), RC_EPROTO);
    cr_assert_eq(rc_json_from_msgpack("", 0, &j), RC_EPROTO);
    struct rc_buf deep;
    rc_buf_init(&deep);
    for (int i = 0; i < RC_JSON_DEPTH_MAX + 1; i++)
        rc_mpw_array(&deep, 1);
    rc_mpw_nil(&deep);
    cr_assert_eq(rc_json_from_msgpack(deep.data, deep.len, &j), RC_ELIMIT);
    cr_assert_eq(j.len, 4);
    rc_buf_fini(&deep);
    rc_buf_fini(&j);
}

Test(json, to_msgpack_types)
{
    struct rc_buf b = mp_of("{\"i\":1,\"n\":-2,\"big\":9007199254740993,\"f\":1.0,\"e\":2e3,"
                            "\"s\":\"x\",\"t\":true,\"z\":null,\"a\":[],\"o\":{}}");
    msgpack_unpacked u;
    msgpack_object o = mpc_unpack(&u, b.data, b.len);
    cr_assert_eq(o.via.map.size, 10);
    /* key order kept */
    cr_assert(memcmp(o.via.map.ptr[0].key.via.str.ptr, "i", 1) == 0);
    cr_assert(memcmp(o.via.map.ptr[9].key.via.str.ptr, "o", 1) == 0);
    mpc_assert_uint(&o, "i", 1);
    mpc_assert_int(&o, "n", -2);
    mpc_assert_uint(&o, "big", 9007199254740993ull); /* exact, above 2^53 */
    cr_assert_eq(mpc_get(&o, "f")->type, MSGPACK_OBJECT_FLOAT64);
    cr_assert_eq(mpc_get(&o, "e")->type, MSGPACK_OBJECT_FLOAT64);
    cr_assert_float_eq(mpc_get(&o, "e")->via.f64, 2000.0, 0);
    mpc_assert_str(&o, "s", "x");
    mpc_assert_bool(&o, "t", true);
    cr_assert_eq(mpc_get(&o, "z")->type, MSGPACK_OBJECT_NIL);
    msgpack_unpacked_destroy(&u);
    /* smallest integer encodings */
    rc_buf_fini(&b);
    b = mp_of("[1,300]");
    cr_assert_eq(b.len, 5);
    rc_buf_fini(&b);
}

Test(json, to_msgpack_errors)
{
    struct rc_buf b;
    rc_buf_init(&b);
    char why[200];
    cr_assert_eq(rc_json_to_msgpack_ex("{\"a\":1,\"a\":2}", 13, &b, why, sizeof why), RC_EPROTO);
    cr_assert_eq(rc_json_to_msgpack_ex("{\"a\":", 5, &b, why, sizeof why), RC_EPROTO);
    cr_assert_not_null(strstr(why, "line 1"), "%s", why);
    cr_assert_eq(rc_json_to_msgpack("1 2", 3, &b), RC_EPROTO);
    cr_assert_eq(rc_json_to_msgpack("99999999999999999999", 20, &b), RC_EPROTO);
    char deep[2 * RC_JSON_DEPTH_MAX + 10];
    size_t n = 0;
    for (int i = 0; i < RC_JSON_DEPTH_MAX + 1; i++)
        deep[n++] = '[';
    for (int i = 0; i < RC_JSON_DEPTH_MAX + 1; i++)
        deep[n++] = ']';
    cr_assert_eq(rc_json_to_msgpack(deep, n, &b), RC_ELIMIT);
    cr_assert_eq(b.len, 0);
    rc_buf_fini(&b);
}

Test(json, round_trip_text)
{
    const char *texts[] = {
        "{\"op\":\"sub\",\"run\":\"r1\",\"since\":17,\"req\":[1,\"a\",null]}",
        "[{\"a\":{\"b\":[true,false,-1,1.5]}},\"\\u00e9\\u0000x\"]",
        "\"just a string\"",
        "-12",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        struct rc_buf b = mp_of(texts[i]);
        const char *back = to_json(&b);
        /* compare as JSON values with jansson-independent normalization:
         * the converter's output re-converted gives the same msgpack */
        struct rc_buf b2 = mp_of(back);
        cr_assert_eq(b.len, b2.len, "%s -> %s", texts[i], back);
        cr_assert(memcmp(b.data, b2.data, b.len) == 0, "%s -> %s", texts[i], back);
        rc_buf_fini(&b);
        rc_buf_fini(&b2);
    }
}

/* Our writer must print what jansson's json_dumps(JSON_COMPACT) prints. */
static void same_as_jansson(json_t *v, const struct rc_buf *mp)
{
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    cr_assert_not_null(want);
    cr_assert_str_eq(to_json(mp), want);
    free(want);
    json_decref(v);
}

Test(json, numbers_and_escapes_match_jansson)
{
    static const double ds[] = {0.0,
                                -0.0,
                                1.0,
                                -1.5,
                                0.1,
                                1e300,
                                -1e-300,
                                1e-7,
                                123456789012345678.0,
                                3.141592653589793,
                                1e21,
                                5e-324,
                                1.7976931348623157e308,
                                100.0,
                                1e16,
                                2.5e-5};
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
        struct rc_buf b;
        rc_buf_init(&b);
        rc_mpw_double(&b, ds[i]);
        same_as_jansson(json_real(ds[i]), &b);
        rc_buf_fini(&b);
    }
    static const int64_t is[] = {0, 1, -1, 127, -32, INT64_MAX, INT64_MIN, 1000000007};
    for (size_t i = 0; i < sizeof is / sizeof is[0]; i++) {
        struct rc_buf b;
        rc_buf_init(&b);
        rc_mpw_int(&b, is[i]);
        same_as_jansson(json_integer(is[i]), &b);
        rc_buf_fini(&b);
    }
    char s[160];
    size_t n = 0;
    for (int c = 1; c < 128; c++)
        s[n++] = (char)c;
    memcpy(s + n, "\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80/", 10);
    n += 10;
    struct rc_buf b;
    rc_buf_init(&b);
    rc_mpw_str(&b, s, n);
    same_as_jansson(json_stringn(s, n), &b);
    rc_buf_fini(&b);
}

Test(json, base64_helper)
{
    struct rc_buf b;
    rc_buf_init(&b);
    rc_json_base64("fooba", 5, &b);
    cr_assert_eq(b.len, 8);
    cr_assert(memcmp(b.data, "Zm9vYmE=", 8) == 0);
    rc_buf_fini(&b);
}
