/*
 * Subscriber frame decoder: valid messages, and one test per rule.
 */
#include "proto_test_util.h"

static struct rc_proto_limits lim;

static void setup(void)
{
    rc_proto_limits_default(&lim);
}

TestSuite(client, .init = setup);

/* Decodes the frame given as JSON into *m (views into *keep, which the
 * caller finis). */
static enum rc_proto_code dec(const char *json, struct rc_client_msg *m, struct rc_buf *keep,
                              struct rc_proto_error *err)
{
    *keep = mp_of(json);
    enum rc_proto_code c = rc_proto_decode_client(keep->data, keep->len, &lim, m, err);
    cr_assert_eq(err->code, c);
    return c;
}

static void expect(const char *json, enum rc_proto_code code, const char *field)
{
    struct rc_client_msg m;
    struct rc_buf b;
    struct rc_proto_error err;
    enum rc_proto_code c = dec(json, &m, &b, &err);
    cr_assert_eq(c, code, "%s: got %s want %s (%s)", json, rc_proto_code_name(c),
                 rc_proto_code_name(code), err.reason);
    cr_assert(field_is(err.field, field), "%s: field %s want %s", json,
              err.field ? err.field : "(null)", field ? field : "(null)");
    rc_buf_fini(&b);
}

Test(client, sub_run_full)
{
    struct rc_client_msg m;
    struct rc_buf b;
    struct rc_proto_error err;
    cr_assert_eq(dec("{\"op\":\"sub\",\"run\":\"r-1\",\"since\":17,\"epoch\":99,"
                     "\"snapshot\":false,\"req\":\"q1\",\"extra\":[1]}",
                     &m, &b, &err),
                 RC_PROTO_OK, "%s", err.reason);
    cr_assert_eq(m.op, RC_OP_SUB);
    cr_assert_eq(m.kind, RC_SUB_RUN);
    cr_assert_eq(m.target.len, 3);
    cr_assert(memcmp(m.target.ptr, "r-1", 3) == 0);
    cr_assert(m.has_since);
    cr_assert_eq(m.since, 17);
    cr_assert(m.has_epoch);
    cr_assert_eq(m.epoch, 99);
    cr_assert_eq(m.snapshot, 0);
    cr_assert_eq(m.req_raw.len, 3);
    cr_assert_eq((uint8_t)m.req_raw.ptr[0], 0xa2);
    rc_buf_fini(&b);
}

Test(client, sub_defaults)
{
    struct rc_client_msg m;
    struct rc_buf b;
    struct rc_proto_error err;
    cr_assert_eq(dec("{\"op\":\"sub\",\"run\":\"r\"}", &m, &b, &err), RC_PROTO_OK);
    cr_assert_not(m.has_since);
    cr_assert_not(m.has_epoch);
    cr_assert_eq(m.snapshot, -1);
    cr_assert_eq(m.req_raw.len, 0);
    rc_buf_fini(&b);
}

Test(client, sub_conv_with_since_map)
{
    struct rc_client_msg m;
    struct rc_buf b;
    struct rc_proto_error err;
    cr_assert_eq(dec("{\"op\":\"sub\",\"conv\":\"c1\",\"since\":{\"a\":3,\"b\":70000},"
                     "\"epoch\":5}",
                     &m, &b, &err),
                 RC_PROTO_OK, "%s", err.reason);
    cr_assert_eq(m.kind, RC_SUB_CONV);
    cr_assert(m.has_since);
    cr_assert_gt(m.since_map.len, 0);
    uint64_t seq = 0;
    cr_assert(rc_proto_since_lookup(m.since_map, (struct rc_str){"b", 1}, &seq));
    cr_assert_eq(seq, 70000);
    cr_assert(rc_proto_since_lookup(m.since_map, (struct rc_str){"a", 1}, &seq));
    cr_assert_eq(seq, 3);
    cr_assert_not(rc_proto_since_lookup(m.since_map, (struct rc_str){"c", 1}, &seq));
    cr_assert_not(rc_proto_since_lookup((struct rc_str){NULL, 0}, (struct rc_str){"a", 1}, &seq));
    rc_buf_fini(&b);
}

Test(client, sub_all_and_unsub_and_ping)
{
    struct rc_client_msg m;
    struct rc_buf b;
    struct rc_proto_error err;
    cr_assert_eq(dec("{\"op\":\"sub\",\"all\":true,\"snapshot\":true}", &m, &b, &err), RC_PROTO_OK);
    cr_assert_eq(m.kind, RC_SUB_ALL);
    cr_assert_eq(m.target.len, 0);
    cr_assert_eq(m.snapshot, 1);
    rc_buf_fini(&b);
    cr_assert_eq(dec("{\"op\":\"unsub\",\"conv\":\"c\",\"since\":\"ignored\"}", &m, &b, &err),
                 RC_PROTO_OK);
    cr_assert_eq(m.op, RC_OP_UNSUB);
    cr_assert_eq(m.kind, RC_SUB_CONV);
    rc_buf_fini(&b);
    cr_assert_eq(dec("{\"op\":\"ping\",\"req\":{\"n\":[1,2]}}", &m, &b, &err), RC_PROTO_OK);
    cr_assert_eq(m.op, RC_OP_PING);
    cr_assert_gt(m.req_raw.len, 0);
    rc_buf_fini(&b);
}

Test(client, req_echoed_even_on_error)
{
    struct rc_client_msg m;
    struct rc_buf b;
    struct rc_proto_error err;
    cr_assert_eq(dec("{\"op\":\"sub\",\"req\":42}", &m, &b, &err), RC_PROTO_MISSING_FIELD);
    cr_assert_eq(m.req_raw.len, 1);
    cr_assert_eq((uint8_t)m.req_raw.ptr[0], 42);
    rc_buf_fini(&b);
}

Test(client, frame_too_large)
{
    lim.client_frame_max = 10;
    expect("{\"op\":\"sub\",\"run\":\"abcdefgh\"}", RC_PROTO_TOO_LARGE, NULL);
}

Test(client, malformed)
{
    struct rc_client_msg m;
    struct rc_proto_error err;
    uint8_t bad[] = {0x81, 0xa2, 'o', 'p'}; /* truncated */
    cr_assert_eq(rc_proto_decode_client(bad, sizeof bad, &lim, &m, &err), RC_PROTO_MALFORMED);
    uint8_t trailing[] = {0x80, 0x80};
    cr_assert_eq(rc_proto_decode_client(trailing, sizeof trailing, &lim, &m, &err),
                 RC_PROTO_MALFORMED);
    cr_assert_null(err.field);
    cr_assert_eq(rc_proto_decode_client("", 0, &lim, &m, &err), RC_PROTO_MALFORMED);
}

Test(client, not_a_map)
{
    expect("[\"sub\"]", RC_PROTO_NOT_A_MAP, NULL);
}
Test(client, op_missing)
{
    expect("{\"run\":\"r\"}", RC_PROTO_MISSING_FIELD, "op");
}
Test(client, op_not_string)
{
    expect("{\"op\":1,\"run\":\"r\"}", RC_PROTO_BAD_FIELD, "op");
}
Test(client, op_unknown)
{
    expect("{\"op\":\"subscribe\",\"run\":\"r\"}", RC_PROTO_UNKNOWN_OP, "op");
}
Test(client, target_missing)
{
    expect("{\"op\":\"sub\"}", RC_PROTO_MISSING_FIELD, "run");
    expect("{\"op\":\"unsub\",\"since\":1}", RC_PROTO_MISSING_FIELD, "run");
}
Test(client, two_targets)
{
    expect("{\"op\":\"sub\",\"run\":\"r\",\"conv\":\"c\"}", RC_PROTO_BAD_FIELD, "conv");
    expect("{\"op\":\"sub\",\"conv\":\"c\",\"all\":true}", RC_PROTO_BAD_FIELD, "all");
}
Test(client, run_bad)
{
    expect("{\"op\":\"sub\",\"run\":\"a b\"}", RC_PROTO_BAD_FIELD, "run");
    expect("{\"op\":\"sub\",\"run\":5}", RC_PROTO_BAD_FIELD, "run");
}
Test(client, conv_bad)
{
    expect("{\"op\":\"sub\",\"conv\":\"\"}", RC_PROTO_BAD_FIELD, "conv");
}
Test(client, all_not_true)
{
    expect("{\"op\":\"sub\",\"all\":false}", RC_PROTO_BAD_FIELD, "all");
    expect("{\"op\":\"sub\",\"all\":1}", RC_PROTO_BAD_FIELD, "all");
}
Test(client, since_for_run_not_uint)
{
    expect("{\"op\":\"sub\",\"run\":\"r\",\"since\":-1}", RC_PROTO_BAD_FIELD, "since");
    expect("{\"op\":\"sub\",\"run\":\"r\",\"since\":{\"r\":1}}", RC_PROTO_BAD_FIELD, "since");
}
Test(client, since_for_conv_not_map)
{
    expect("{\"op\":\"sub\",\"conv\":\"c\",\"since\":3}", RC_PROTO_BAD_FIELD, "since");
}
Test(client, since_map_bad_key)
{
    expect("{\"op\":\"sub\",\"all\":true,\"since\":{\"a b\":3}}", RC_PROTO_BAD_FIELD, "since");
}
Test(client, since_map_bad_value)
{
    expect("{\"op\":\"sub\",\"all\":true,\"since\":{\"a\":\"3\"}}", RC_PROTO_BAD_FIELD, "since");
}
Test(client, since_map_non_string_key)
{
    struct rc_buf b;
    rc_buf_init(&b);
    rc_mpw_map(&b, 3);
    rc_mpw_cstr(&b, "op");
    rc_mpw_cstr(&b, "sub");
    rc_mpw_cstr(&b, "all");
    rc_mpw_bool(&b, true);
    rc_mpw_cstr(&b, "since");
    rc_mpw_map(&b, 1);
    rc_mpw_uint(&b, 1);
    rc_mpw_uint(&b, 2);
    struct rc_client_msg m;
    struct rc_proto_error err;
    cr_assert_eq(rc_proto_decode_client(b.data, b.len, &lim, &m, &err), RC_PROTO_BAD_FIELD);
    cr_assert_str_eq(err.field, "since");
    rc_buf_fini(&b);
}
Test(client, epoch_not_uint)
{
    expect("{\"op\":\"sub\",\"run\":\"r\",\"epoch\":\"e1\"}", RC_PROTO_BAD_FIELD, "epoch");
}
Test(client, snapshot_not_bool)
{
    expect("{\"op\":\"sub\",\"run\":\"r\",\"snapshot\":1}", RC_PROTO_BAD_FIELD, "snapshot");
}
Test(client, req_too_large)
{
    char json[600];
    char s[300];
    memset(s, 'x', 260);
    s[260] = '\0';
    snprintf(json, sizeof json, "{\"op\":\"ping\",\"req\":\"%s\"}", s);
    expect(json, RC_PROTO_TOO_LARGE, "req");
}
Test(client, req_too_deep)
{
    expect("{\"op\":\"ping\",\"req\":[[[[[[[[[1]]]]]]]]]}", RC_PROTO_TOO_DEEP, "req");
    expect("{\"op\":\"ping\",\"req\":[[[[[[[[1]]]]]]]]}", RC_PROTO_OK, NULL);
}
Test(client, duplicate_key)
{
    struct rc_buf b;
    rc_buf_init(&b);
    rc_mpw_map(&b, 3);
    rc_mpw_cstr(&b, "op");
    rc_mpw_cstr(&b, "sub");
    rc_mpw_cstr(&b, "run");
    rc_mpw_cstr(&b, "a");
    rc_mpw_cstr(&b, "run");
    rc_mpw_cstr(&b, "b");
    struct rc_client_msg m;
    struct rc_proto_error err;
    cr_assert_eq(rc_proto_decode_client(b.data, b.len, &lim, &m, &err), RC_PROTO_BAD_FIELD);
    cr_assert_str_eq(err.field, "run");
    rc_buf_fini(&b);
}
Test(client, nil_counts_as_absent)
{
    expect("{\"op\":\"sub\",\"run\":\"r\",\"conv\":null,\"since\":null,\"req\":null}", RC_PROTO_OK,
           NULL);
}
