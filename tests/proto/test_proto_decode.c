/*
 * Publish decoder: the envelope, and one test per validation rule, each
 * feeding an event that breaks exactly that rule and checking code + field.
 */
#include "proto_test_util.h"
#include "rc_mpr.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- helpers ---- */

static struct rc_proto_limits lim;

static void setup(void)
{
    rc_proto_limits_default(&lim);
}

TestSuite(publish, .init = setup);
TestSuite(event_rules, .init = setup);

/* Decodes one event given as JSON; returns the code, *field the field. */
static enum rc_proto_code decode_json(const char *json, struct rc_event *ev, const char **field)
{
    struct rc_buf b = mp_of(json);
    struct rc_proto_error err;
    enum rc_proto_code c = rc_proto_decode_event(b.data, b.len, &lim, ev, &err);
    cr_assert_eq(err.code, c);
    if (c != RC_PROTO_OK)
        cr_assert_neq(err.reason[0], '\0', "an error has a reason");
    *field = err.field; /* a static string */
    rc_buf_fini(&b);    /* only scalar results of ev are read after this */
    return c;
}

static void expect(const char *json, enum rc_proto_code code, const char *field)
{
    struct rc_event ev;
    const char *f = NULL;
    enum rc_proto_code c = decode_json(json, &ev, &f);
    cr_assert_eq(c, code, "%s: got %s want %s", json, rc_proto_code_name(c),
                 rc_proto_code_name(code));
    cr_assert(field_is(f, field), "%s: field %s, want %s", json, f ? f : "(null)",
              field ? field : "(null)");
}

static void expect_ok(const char *json)
{
    expect(json, RC_PROTO_OK, NULL);
}

/* The same for raw msgpack built with the writer. */
static void expect_mp(const struct rc_buf *b, enum rc_proto_code code, const char *field)
{
    struct rc_event ev;
    struct rc_proto_error err;
    enum rc_proto_code c = rc_proto_decode_event(b->data, b->len, &lim, &ev, &err);
    cr_assert_eq(c, code, "got %s want %s (%s)", rc_proto_code_name(c), rc_proto_code_name(code),
                 err.reason);
    cr_assert(field_is(err.field, field), "field %s, want %s", err.field ? err.field : "(null)",
              field ? field : "(null)");
}

/* Starts a map of n pairs holding run "r1" and type t, n - 2 pairs to go. */
static void begin_event(struct rc_buf *b, uint32_t n, const char *t)
{
    rc_buf_init(b);
    rc_mpw_map(b, n);
    rc_mpw_cstr(b, "run");
    rc_mpw_cstr(b, "r1");
    rc_mpw_cstr(b, "type");
    rc_mpw_cstr(b, t);
}

/* fmt (one %s) holding prefix then fill up to max bytes is accepted; one
 * byte more is refused as bad_field naming field. */
static void expect_length_limit(const char *fmt, const char *prefix, char fill, size_t max,
                                const char *field)
{
    char v[512], json[1024];
    cr_assert_lt(max + 1, sizeof(v));
    size_t pl = strlen(prefix);
    memcpy(v, prefix, pl);
    memset(v + pl, fill, max + 1 - pl);
    v[max] = '\0';
    snprintf(json, sizeof json, fmt, v);
    expect_ok(json);
    v[max] = fill;
    v[max + 1] = '\0';
    snprintf(json, sizeof json, fmt, v);
    expect(json, RC_PROTO_BAD_FIELD, field);
}

/* An event of type t whose string field `field` holds len bytes of invalid
 * UTF-8: refused as bad_utf8 naming that field. */
static void expect_bad_utf8(const char *t, const char *field, const char *bytes, size_t len)
{
    struct rc_buf b;
    begin_event(&b, 3, t);
    rc_mpw_cstr(&b, field);
    rc_mpw_str(&b, bytes, len);
    expect_mp(&b, RC_PROTO_BAD_UTF8, field);
    rc_buf_fini(&b);
}

/* A nest of depth arrays around 1: [[[1]]] is depth 3. */
static void nest(struct rc_buf *b, uint32_t depth)
{
    for (uint32_t i = 0; i < depth; i++)
        rc_mpw_array(b, 1);
    rc_mpw_uint(b, 1);
}

/* ---- collecting publish results ---- */

#define MAXR 64
struct results {
    uint32_t n;
    uint32_t index[MAXR];
    enum rc_proto_code code[MAXR];
    const char *field[MAXR];
    char run[MAXR][16];
};

static void collect_cb(void *arg, uint32_t index, const struct rc_event *ev,
                       const struct rc_proto_error *err)
{
    struct results *r = arg;
    cr_assert((ev == NULL) != (err == NULL), "exactly one of ev and err");
    cr_assert_lt(r->n, MAXR);
    r->index[r->n] = index;
    r->code[r->n] = err ? err->code : RC_PROTO_OK;
    r->field[r->n] = err ? err->field : NULL;
    if (ev)
        snprintf(r->run[r->n], sizeof r->run[0], "%.*s", (int)ev->run.len, ev->run.ptr);
    r->n++;
}

/* Decodes with rc_proto_decode_publish and checks that the one-pass
 * variant (RC_PROTO_DECODE_ONE_PASS) agrees on every input the tests use:
 * same result, count, kind and error; the same elements when it succeeds
 * (when it fails, what its callback got is to be discarded). */
static enum rc_proto_code publish(const void *p, size_t len, struct results *r, uint32_t *count,
                                  bool *is_batch, struct rc_proto_error *err)
{
    memset(r, 0, sizeof *r);
    enum rc_proto_code rc =
        rc_proto_decode_publish(p, len, &lim, collect_cb, r, count, is_batch, err);
    static struct results r1;
    memset(&r1, 0, sizeof r1);
    uint32_t count1 = 7;
    bool batch1 = true;
    struct rc_proto_error err1;
    enum rc_proto_code rc1 = rc_proto_decode_publish_ex(p, len, &lim, collect_cb, &r1, &count1,
                                                        &batch1, &err1, RC_PROTO_DECODE_ONE_PASS);
    cr_assert_eq(rc1, rc, "one pass: %s, two passes: %s", rc_proto_code_name(rc1),
                 rc_proto_code_name(rc));
    cr_assert_eq(err1.code, rc);
    if (count)
        cr_assert_eq(count1, *count);
    if (is_batch)
        cr_assert_eq(batch1, *is_batch);
    if (rc == RC_PROTO_OK)
        cr_assert(memcmp(&r1, r, sizeof r1) == 0, "one pass reported other elements");
    return rc;
}

/* Publishes one event given as JSON; checks the one element's code/field. */
static void expect_envelope_free(const char *json, enum rc_proto_code code, const char *field)
{
    struct rc_buf b = mp_of(json);
    struct results r;
    cr_assert_eq(publish(b.data, b.len, &r, NULL, NULL, NULL), RC_PROTO_OK);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.code[0], code, "%s: %s", json, rc_proto_code_name(r.code[0]));
    cr_assert(field_is(r.field[0], field));
    rc_buf_fini(&b);
}

/* ---- envelope ---- */

Test(publish, single_event)
{
    struct rc_buf b = mp_of("{\"run\":\"r1\",\"type\":\"start\"}");
    struct results r;
    uint32_t count = 99;
    bool batch = true;
    struct rc_proto_error err;
    cr_assert_eq(publish(b.data, b.len, &r, &count, &batch, &err), RC_PROTO_OK);
    cr_assert_eq(count, 1);
    cr_assert_eq(batch, false);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.code[0], RC_PROTO_OK);
    cr_assert_str_eq(r.run[0], "r1");
    rc_buf_fini(&b);
}

Test(publish, batch_in_order_with_bad_elements_reported)
{
    struct rc_buf b = mp_of("[{\"run\":\"a\",\"type\":\"start\"},"
                            " 7,"
                            " {\"run\":\"b\"},"
                            " {\"run\":\"c\",\"type\":\"delta\",\"text\":\"hi\"}]");
    struct results r;
    uint32_t count = 0;
    bool batch = false;
    struct rc_proto_error err;
    cr_assert_eq(publish(b.data, b.len, &r, &count, &batch, &err), RC_PROTO_OK);
    cr_assert_eq(count, 4);
    cr_assert(batch);
    cr_assert_eq(r.n, 4);
    for (uint32_t i = 0; i < 4; i++)
        cr_assert_eq(r.index[i], i);
    cr_assert_eq(r.code[0], RC_PROTO_OK);
    cr_assert_str_eq(r.run[0], "a");
    cr_assert_eq(r.code[1], RC_PROTO_NOT_A_MAP);
    cr_assert_eq(r.code[2], RC_PROTO_MISSING_FIELD);
    cr_assert_str_eq(r.field[2], "type");
    cr_assert_eq(r.code[3], RC_PROTO_OK);
    cr_assert_str_eq(r.run[3], "c");
    rc_buf_fini(&b);
}

Test(publish, empty_batch_is_ok_with_no_elements)
{
    uint8_t m[] = {0x90};
    struct results r;
    uint32_t count = 5;
    bool batch = false;
    cr_assert_eq(publish(m, sizeof m, &r, &count, &batch, NULL), RC_PROTO_OK);
    cr_assert_eq(count, 0);
    cr_assert(batch);
    cr_assert_eq(r.n, 0);
}

static void expect_envelope(const void *p, size_t len, enum rc_proto_code code)
{
    struct results r;
    struct rc_proto_error err;
    uint32_t count = 7;
    cr_assert_eq(publish(p, len, &r, &count, NULL, &err), code);
    cr_assert_eq(err.code, code);
    cr_assert_null(err.field);
    cr_assert_eq(r.n, 0, "no element is reported when the envelope is bad");
    cr_assert_eq(count, 0);
}

Test(publish, malformed_not_msgpack)
{
    uint8_t m[] = {0xc1};
    expect_envelope(m, sizeof m, RC_PROTO_MALFORMED);
}

Test(publish, malformed_empty_message)
{
    expect_envelope("", 0, RC_PROTO_MALFORMED);
}

Test(publish, malformed_trailing_bytes)
{
    struct rc_buf b = mp_of("{\"run\":\"r1\",\"type\":\"start\"}");
    rc_mpw_nil(&b);
    expect_envelope(b.data, b.len, RC_PROTO_MALFORMED);
    rc_buf_fini(&b);
}

Test(publish, malformed_truncated_last_element_reports_nothing)
{
    struct rc_buf b =
        mp_of("[{\"run\":\"a\",\"type\":\"start\"},{\"run\":\"b\",\"type\":\"start\"}]");
    expect_envelope(b.data, b.len - 1, RC_PROTO_MALFORMED);
    rc_buf_fini(&b);
}

Test(publish, malformed_huge_count_declared)
{
    uint8_t m[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'x'};
    expect_envelope(m, sizeof m, RC_PROTO_MALFORMED);
}

Test(publish, too_large_message)
{
    lim.batch_max_bytes = 16;
    struct rc_buf b = mp_of("{\"run\":\"r1\",\"type\":\"start\",\"text\":\"0123456789\"}");
    expect_envelope(b.data, b.len, RC_PROTO_TOO_LARGE);
    rc_buf_fini(&b);
}

Test(publish, too_large_batch_count)
{
    lim.batch_max_events = 2;
    struct rc_buf b =
        mp_of("[{\"run\":\"a\",\"type\":\"start\"},{\"run\":\"a\",\"type\":\"start\"},"
              "{\"run\":\"a\",\"type\":\"start\"}]");
    expect_envelope(b.data, b.len, RC_PROTO_TOO_LARGE);
    rc_buf_fini(&b);
}

Test(publish, not_a_map_top_level)
{
    struct rc_buf b = mp_of("\"hello\"");
    expect_envelope(b.data, b.len, RC_PROTO_NOT_A_MAP);
    rc_buf_fini(&b);
}

Test(publish, element_too_large_wins_over_other_errors)
{
    lim.event_max_bytes = 40;
    struct rc_buf b = mp_of("[{\"run\":\"a\",\"type\":\"start\"},"
                            "{\"run\":\"b\",\"type\":\"nope\",\"text\":\"0123456789012345678901\"},"
                            "{\"run\":\"c\",\"type\":\"start\"}]");
    struct results r;
    cr_assert_eq(publish(b.data, b.len, &r, NULL, NULL, NULL), RC_PROTO_OK);
    cr_assert_eq(r.n, 3);
    cr_assert_eq(r.code[0], RC_PROTO_OK);
    cr_assert_eq(r.code[1], RC_PROTO_TOO_LARGE);
    cr_assert_null(r.field[1]);
    cr_assert_eq(r.code[2], RC_PROTO_OK);
    cr_assert_str_eq(r.run[2], "c");
    rc_buf_fini(&b);
}

Test(publish, single_event_too_large)
{
    lim.event_max_bytes = 20;
    struct rc_buf b = mp_of("{\"run\":\"r1\",\"type\":\"start\",\"text\":\"0123456789\"}");
    struct results r;
    cr_assert_eq(publish(b.data, b.len, &r, NULL, NULL, NULL), RC_PROTO_OK);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.code[0], RC_PROTO_TOO_LARGE);
    rc_buf_fini(&b);
}

Test(publish, envelope_wins_over_element_errors)
{
    /* an invalid event followed by a trailing byte: the envelope is bad,
     * nothing is reported */
    struct rc_buf b = mp_of("{\"run\":\"a b\",\"type\":\"nope\"}");
    rc_mpw_nil(&b);
    expect_envelope(b.data, b.len, RC_PROTO_MALFORMED);
    /* the same event truncated */
    expect_envelope(b.data, b.len - 3, RC_PROTO_MALFORMED);
    /* an oversized event with trailing bytes */
    lim.event_max_bytes = 8;
    expect_envelope(b.data, b.len, RC_PROTO_MALFORMED);
    rc_buf_fini(&b);
    /* a scalar with trailing bytes is malformed, not not_a_map */
    uint8_t m[] = {0x05, 0x06};
    expect_envelope(m, sizeof m, RC_PROTO_MALFORMED);
}

Test(publish, oversized_non_map_element_is_too_large)
{
    lim.event_max_bytes = 16;
    struct rc_buf b = mp_of("[\"0123456789abcdefghijklmnopqrstuvwxyz\", 1]");
    struct results r;
    cr_assert_eq(publish(b.data, b.len, &r, NULL, NULL, NULL), RC_PROTO_OK);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.code[0], RC_PROTO_TOO_LARGE);
    cr_assert_eq(r.code[1], RC_PROTO_NOT_A_MAP);
    rc_buf_fini(&b);
}

Test(publish, deep_element_in_batch_reported_and_next_decoded)
{
    struct rc_buf b;
    rc_buf_init(&b);
    rc_mpw_array(&b, 2);
    rc_mpw_map(&b, 3);
    rc_mpw_cstr(&b, "run");
    rc_mpw_cstr(&b, "a");
    rc_mpw_cstr(&b, "data");
    nest(&b, 40);
    rc_mpw_cstr(&b, "type");
    rc_mpw_cstr(&b, "delta");
    rc_mpw_map(&b, 2);
    rc_mpw_cstr(&b, "run");
    rc_mpw_cstr(&b, "b");
    rc_mpw_cstr(&b, "type");
    rc_mpw_cstr(&b, "delta");
    struct results r;
    cr_assert_eq(publish(b.data, b.len, &r, NULL, NULL, NULL), RC_PROTO_OK);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.code[0], RC_PROTO_TOO_DEEP);
    cr_assert_str_eq(r.field[0], "data");
    cr_assert_eq(r.code[1], RC_PROTO_OK);
    cr_assert_str_eq(r.run[1], "b");
    rc_buf_fini(&b);
}

Test(publish, error_order_is_independent_of_key_order)
{
    /* bad run and unknown type: run is checked first, whatever comes first */
    expect_envelope_free("{\"type\":\"nope\",\"run\":\"a b\"}", RC_PROTO_BAD_FIELD, "run");
    expect_envelope_free("{\"run\":\"a b\",\"type\":\"nope\"}", RC_PROTO_BAD_FIELD, "run");
}

Test(publish, decode_event_rejects_trailing_bytes)
{
    struct rc_buf b = mp_of("{\"run\":\"r1\",\"type\":\"start\"}");
    rc_mpw_uint(&b, 1);
    expect_mp(&b, RC_PROTO_MALFORMED, NULL);
    rc_buf_fini(&b);
}

/* ---- decoded values ---- */

Test(event_rules, every_field_decoded_as_views_into_the_buffer)
{
    const char *json =
        "{\"run\":\"run-1\",\"conv\":\"c.9\",\"type\":\"tool\",\"phase\":\"execute\","
        "\"id\":\"k1\",\"ts\":1700000000123,\"text\":\"t\",\"zzz\":[1,2],"
        "\"tool\":{\"id\":5,\"name\":\"grep\",\"status\":\"running\",\"args\":{}},"
        "\"data\":{\"a\":[1,2,{\"b\":null}]}}";
    struct rc_buf b = mp_of(json);
    struct rc_event ev;
    struct rc_proto_error err;
    cr_assert_eq(rc_proto_decode_event(b.data, b.len, &lim, &ev, &err), RC_PROTO_OK, "%s",
                 err.reason);
    const char *base = (const char *)b.data;
    cr_assert_eq(ev.raw.ptr, base);
    cr_assert_eq(ev.raw.len, b.len);
    cr_assert(ev.run.ptr > base && ev.run.ptr < base + b.len);
    cr_assert_eq(ev.run.len, 5);
    cr_assert(memcmp(ev.run.ptr, "run-1", 5) == 0);
    cr_assert(memcmp(ev.conv.ptr, "c.9", 3) == 0);
    cr_assert_eq(ev.type, RC_EV_TOOL);
    cr_assert(memcmp(ev.phase.ptr, "execute", 7) == 0);
    cr_assert(ev.has_ts);
    cr_assert_eq(ev.ts, 1700000000123LL);
    cr_assert(ev.has_text);
    cr_assert_eq(ev.text.len, 1);
    cr_assert_eq(ev.id_is_uint, false);
    cr_assert_eq(ev.id_str.len, 2);
    /* id_raw is the msgpack of "k1" */
    cr_assert_eq(ev.id_raw.len, 3);
    cr_assert_eq((uint8_t)ev.id_raw.ptr[0], 0xa2);
    /* tool_raw and data_raw are exact ranges that msgpack-c reads whole */
    msgpack_unpacked u;
    msgpack_object o = mpc_unpack(&u, ev.tool_raw.ptr, ev.tool_raw.len);
    mpc_assert_str(&o, "name", "grep");
    mpc_assert_uint(&o, "id", 5);
    msgpack_unpacked_destroy(&u);
    cr_assert_eq(ev.tool_id_raw.len, 1);
    cr_assert_eq((uint8_t)ev.tool_id_raw.ptr[0], 5);
    o = mpc_unpack(&u, ev.data_raw.ptr, ev.data_raw.len);
    cr_assert_eq(o.type, MSGPACK_OBJECT_MAP);
    msgpack_unpacked_destroy(&u);
    cr_assert_eq(ev.item_raw.len, 0);
    cr_assert_eq(ev.error_raw.len, 0);
    rc_buf_fini(&b);
}

Test(event_rules, every_type_name)
{
    static const char *types[] = {"start",        "phase",     "thinking", "delta", "tool",
                                  "verification", "heartbeat", "complete", "error"};
    for (int i = 0; i < 9; i++) {
        char json[300];
        snprintf(json, sizeof json,
                 "{\"run\":\"r\",\"type\":\"%s\",\"phase\":\"p\",\"tool\":{\"id\":1},"
                 "\"item\":{\"id\":\"v\"},\"error\":{\"code\":\"x\",\"message\":\"m\"}}",
                 types[i]);
        struct rc_event ev;
        const char *f;
        cr_assert_eq(decode_json(json, &ev, &f), RC_PROTO_OK, "%s", types[i]);
        cr_assert_eq(ev.type, (enum rc_event_type)i);
        cr_assert_str_eq(rc_event_type_name(ev.type), types[i]);
    }
    cr_assert(rc_event_type_is_terminal(RC_EV_COMPLETE));
    cr_assert(rc_event_type_is_terminal(RC_EV_ERROR));
    cr_assert_not(rc_event_type_is_terminal(RC_EV_DELTA));
}

Test(event_rules, custom_type_forwarded_as_is)
{
    struct rc_event ev;
    const char *f;
    cr_assert_eq(decode_json("{\"run\":\"r\",\"type\":\"x-progress\"}", &ev, &f), RC_PROTO_OK);
    cr_assert_eq(ev.type, RC_EV_CUSTOM);
    cr_assert_eq(ev.type_name.len, 10);
}

Test(event_rules, unknown_and_non_string_keys_ignored)
{
    struct rc_buf b;
    begin_event(&b, 4, "start");
    rc_mpw_uint(&b, 7); /* int key */
    rc_mpw_cstr(&b, "x");
    nest(&b, 2);  /* an array key */
    nest(&b, 40); /* deeper than data's limit: unknown values are not checked */
    expect_mp(&b, RC_PROTO_OK, NULL);
    rc_buf_fini(&b);
    expect_ok("{\"run\":\"r\",\"type\":\"start\",\"whatever\":{\"a\":1},\"Run\":5}");
}

Test(event_rules, nil_is_absent_except_for_data)
{
    expect_ok("{\"run\":\"r\",\"type\":\"start\",\"conv\":null,\"phase\":null,\"id\":null,"
              "\"ts\":null,\"text\":null,\"tool\":null}");
    expect("{\"run\":null,\"type\":\"start\"}", RC_PROTO_MISSING_FIELD, "run");
    struct rc_buf b = mp_of("{\"run\":\"r\",\"type\":\"start\",\"data\":null}");
    struct rc_event ev;
    cr_assert_eq(rc_proto_decode_event(b.data, b.len, &lim, &ev, NULL), RC_PROTO_OK);
    cr_assert_eq(ev.data_raw.len, 1);
    cr_assert_eq((uint8_t)ev.data_raw.ptr[0], 0xc0);
    rc_buf_fini(&b);
}

Test(event_rules, event_not_a_map)
{
    expect("[1,2]", RC_PROTO_NOT_A_MAP, NULL);
}

Test(event_rules, duplicate_key)
{
    struct rc_buf b;
    begin_event(&b, 3, "start");
    rc_mpw_cstr(&b, "run");
    rc_mpw_cstr(&b, "r2");
    expect_mp(&b, RC_PROTO_BAD_FIELD, "run");
    rc_buf_fini(&b);
}

/* run */
Test(event_rules, run_missing)
{
    expect("{\"type\":\"start\"}", RC_PROTO_MISSING_FIELD, "run");
}
Test(event_rules, run_not_string)
{
    expect("{\"run\":12,\"type\":\"start\"}", RC_PROTO_BAD_FIELD, "run");
}
Test(event_rules, run_empty)
{
    expect("{\"run\":\"\",\"type\":\"start\"}", RC_PROTO_BAD_FIELD, "run");
}
Test(event_rules, run_bad_charset)
{
    expect("{\"run\":\"a b\",\"type\":\"start\"}", RC_PROTO_BAD_FIELD, "run");
    expect("{\"run\":\"a/b\",\"type\":\"start\"}", RC_PROTO_BAD_FIELD, "run");
    expect("{\"run\":\"\xc3\xa9\",\"type\":\"start\"}", RC_PROTO_BAD_FIELD, "run");
    expect_ok("{\"run\":\"Az09._:-\",\"type\":\"start\"}");
}
Test(event_rules, run_length_limit)
{
    expect_length_limit("{\"run\":\"%s\",\"type\":\"start\"}", "", 'a', 128, "run");
}

/* conv */
Test(event_rules, conv_bad_charset)
{
    expect("{\"run\":\"r\",\"conv\":\"c d\",\"type\":\"start\"}", RC_PROTO_BAD_FIELD, "conv");
}
Test(event_rules, conv_not_string)
{
    expect("{\"run\":\"r\",\"conv\":true,\"type\":\"start\"}", RC_PROTO_BAD_FIELD, "conv");
}
Test(event_rules, conv_empty)
{
    expect("{\"run\":\"r\",\"conv\":\"\",\"type\":\"start\"}", RC_PROTO_BAD_FIELD, "conv");
}

/* type */
Test(event_rules, type_missing)
{
    expect("{\"run\":\"r\"}", RC_PROTO_MISSING_FIELD, "type");
}
Test(event_rules, type_not_string)
{
    expect("{\"run\":\"r\",\"type\":1}", RC_PROTO_BAD_FIELD, "type");
}
Test(event_rules, type_unknown)
{
    expect("{\"run\":\"r\",\"type\":\"begin\"}", RC_PROTO_UNKNOWN_TYPE, "type");
    expect("{\"run\":\"r\",\"type\":\"x-\"}", RC_PROTO_UNKNOWN_TYPE, "type");
    expect("{\"run\":\"r\",\"type\":\"Start\"}", RC_PROTO_UNKNOWN_TYPE, "type");
}
Test(event_rules, type_too_long)
{
    expect_length_limit("{\"run\":\"r\",\"type\":\"%s\"}", "x-", 'a', 64, "type");
}
Test(event_rules, type_bad_utf8)
{
    struct rc_buf b;
    rc_buf_init(&b);
    rc_mpw_map(&b, 2);
    rc_mpw_cstr(&b, "run");
    rc_mpw_cstr(&b, "r");
    rc_mpw_cstr(&b, "type");
    rc_mpw_str(&b, "x-\xff", 3);
    expect_mp(&b, RC_PROTO_BAD_UTF8, "type");
    rc_buf_fini(&b);
}

/* phase */
Test(event_rules, phase_required_for_phase_events)
{
    expect("{\"run\":\"r\",\"type\":\"phase\"}", RC_PROTO_MISSING_FIELD, "phase");
    expect_ok("{\"run\":\"r\",\"type\":\"phase\",\"phase\":\"routing\"}");
    expect_ok("{\"run\":\"r\",\"type\":\"delta\"}");
}
Test(event_rules, phase_not_string)
{
    expect("{\"run\":\"r\",\"type\":\"phase\",\"phase\":3}", RC_PROTO_BAD_FIELD, "phase");
}
Test(event_rules, phase_empty)
{
    expect("{\"run\":\"r\",\"type\":\"phase\",\"phase\":\"\"}", RC_PROTO_BAD_FIELD, "phase");
}
Test(event_rules, phase_too_long)
{
    expect_length_limit("{\"run\":\"r\",\"type\":\"phase\",\"phase\":\"%s\"}", "", 'p', 64,
                        "phase");
}
Test(event_rules, phase_bad_utf8)
{
    expect_bad_utf8("phase", "phase", "\xed\xa0\x80", 3); /* a surrogate */
}

/* id */
Test(event_rules, id_string_or_uint)
{
    struct rc_event ev;
    const char *f;
    cr_assert_eq(decode_json("{\"run\":\"r\",\"type\":\"start\",\"id\":300}", &ev, &f),
                 RC_PROTO_OK);
    cr_assert(ev.id_is_uint);
    cr_assert_eq(ev.id_uint, 300);
    cr_assert_eq(ev.id_raw.len, 3);
}
Test(event_rules, id_signed_encoding_of_positive_is_uint)
{
    struct rc_buf b;
    begin_event(&b, 3, "start");
    rc_mpw_cstr(&b, "id");
    uint8_t i8[] = {0xd0, 0x05};
    rc_mpw_raw(&b, i8, 2);
    struct rc_event ev;
    cr_assert_eq(rc_proto_decode_event(b.data, b.len, &lim, &ev, NULL), RC_PROTO_OK);
    cr_assert(ev.id_is_uint);
    cr_assert_eq(ev.id_uint, 5);
    rc_buf_fini(&b);
}
Test(event_rules, id_negative)
{
    expect("{\"run\":\"r\",\"type\":\"start\",\"id\":-1}", RC_PROTO_BAD_FIELD, "id");
}
Test(event_rules, id_float)
{
    expect("{\"run\":\"r\",\"type\":\"start\",\"id\":1.5}", RC_PROTO_BAD_FIELD, "id");
}
Test(event_rules, id_empty_string)
{
    expect("{\"run\":\"r\",\"type\":\"start\",\"id\":\"\"}", RC_PROTO_BAD_FIELD, "id");
}
Test(event_rules, id_too_long)
{
    expect_length_limit("{\"run\":\"r\",\"type\":\"start\",\"id\":\"%s\"}", "", 'k', 128, "id");
}
Test(event_rules, id_bad_utf8)
{
    expect_bad_utf8("start", "id", "\xc0\x80", 2); /* overlong NUL */
}

/* ts */
Test(event_rules, ts_not_integer)
{
    expect("{\"run\":\"r\",\"type\":\"start\",\"ts\":\"now\"}", RC_PROTO_BAD_FIELD, "ts");
    expect("{\"run\":\"r\",\"type\":\"start\",\"ts\":1.5}", RC_PROTO_BAD_FIELD, "ts");
}
Test(event_rules, ts_over_int64)
{
    struct rc_buf b;
    begin_event(&b, 3, "start");
    rc_mpw_cstr(&b, "ts");
    rc_mpw_uint(&b, UINT64_MAX);
    expect_mp(&b, RC_PROTO_BAD_FIELD, "ts");
    rc_buf_fini(&b);
}
Test(event_rules, ts_negative_accepted)
{
    struct rc_event ev;
    const char *f;
    cr_assert_eq(decode_json("{\"run\":\"r\",\"type\":\"start\",\"ts\":-5}", &ev, &f), RC_PROTO_OK);
    cr_assert_eq(ev.ts, -5);
}

/* text */
Test(event_rules, text_not_string)
{
    expect("{\"run\":\"r\",\"type\":\"delta\",\"text\":[\"a\"]}", RC_PROTO_BAD_FIELD, "text");
}
Test(event_rules, text_bad_utf8)
{
    expect_bad_utf8("delta", "text", "hello \xe2\x82", 8); /* truncated sequence */
}
Test(event_rules, text_empty_is_present)
{
    struct rc_event ev;
    const char *f;
    cr_assert_eq(decode_json("{\"run\":\"r\",\"type\":\"delta\",\"text\":\"\"}", &ev, &f),
                 RC_PROTO_OK);
    cr_assert(ev.has_text);
    cr_assert_eq(ev.text.len, 0);
}

/* tool */
Test(event_rules, tool_required_for_tool_events)
{
    expect("{\"run\":\"r\",\"type\":\"tool\"}", RC_PROTO_MISSING_FIELD, "tool");
}
Test(event_rules, tool_not_map)
{
    expect("{\"run\":\"r\",\"type\":\"tool\",\"tool\":\"grep\"}", RC_PROTO_BAD_FIELD, "tool");
}
Test(event_rules, tool_id_missing)
{
    expect("{\"run\":\"r\",\"type\":\"tool\",\"tool\":{\"name\":\"grep\"}}", RC_PROTO_MISSING_FIELD,
           "tool.id");
}
Test(event_rules, tool_id_bad)
{
    expect("{\"run\":\"r\",\"type\":\"tool\",\"tool\":{\"id\":[1]}}", RC_PROTO_BAD_FIELD,
           "tool.id");
    expect("{\"run\":\"r\",\"type\":\"tool\",\"tool\":{\"id\":\"\"}}", RC_PROTO_BAD_FIELD,
           "tool.id");
}
Test(event_rules, tool_name_not_string)
{
    expect("{\"run\":\"r\",\"type\":\"tool\",\"tool\":{\"id\":1,\"name\":2}}", RC_PROTO_BAD_FIELD,
           "tool.name");
}
Test(event_rules, tool_status_not_string)
{
    expect("{\"run\":\"r\",\"type\":\"tool\",\"tool\":{\"id\":1,\"status\":{}}}",
           RC_PROTO_BAD_FIELD, "tool.status");
}
Test(event_rules, tool_duplicate_id)
{
    struct rc_buf b;
    begin_event(&b, 3, "tool");
    rc_mpw_cstr(&b, "tool");
    rc_mpw_map(&b, 2);
    rc_mpw_cstr(&b, "id");
    rc_mpw_uint(&b, 1);
    rc_mpw_cstr(&b, "id");
    rc_mpw_uint(&b, 2);
    expect_mp(&b, RC_PROTO_BAD_FIELD, "tool.id");
    rc_buf_fini(&b);
}
Test(event_rules, tool_nested_string_bad_utf8)
{
    struct rc_buf b;
    begin_event(&b, 3, "tool");
    rc_mpw_cstr(&b, "tool");
    rc_mpw_map(&b, 2);
    rc_mpw_cstr(&b, "id");
    rc_mpw_uint(&b, 1);
    rc_mpw_cstr(&b, "args");
    rc_mpw_array(&b, 1);
    rc_mpw_str(&b, "\xff", 1);
    expect_mp(&b, RC_PROTO_BAD_UTF8, "tool");
    rc_buf_fini(&b);
}
Test(event_rules, tool_too_deep)
{
    struct rc_buf b;
    begin_event(&b, 3, "tool");
    rc_mpw_cstr(&b, "tool");
    rc_mpw_map(&b, 2);
    rc_mpw_cstr(&b, "id");
    rc_mpw_uint(&b, 1);
    rc_mpw_cstr(&b, "args");
    nest(&b, 32); /* 33 with the tool map */
    expect_mp(&b, RC_PROTO_TOO_DEEP, "tool");
    rc_buf_fini(&b);
}

Test(event_rules, tool_id_and_name_bad_utf8)
{
    struct rc_buf b;
    begin_event(&b, 3, "tool");
    rc_mpw_cstr(&b, "tool");
    rc_mpw_map(&b, 1);
    rc_mpw_cstr(&b, "id");
    rc_mpw_str(&b, "\xc3", 1);
    expect_mp(&b, RC_PROTO_BAD_UTF8, "tool.id");
    rc_buf_fini(&b);
    begin_event(&b, 3, "tool");
    rc_mpw_cstr(&b, "tool");
    rc_mpw_map(&b, 2);
    rc_mpw_cstr(&b, "id");
    rc_mpw_uint(&b, 1);
    rc_mpw_cstr(&b, "name");
    rc_mpw_str(&b, "\xe0\x80\x80", 3);
    expect_mp(&b, RC_PROTO_BAD_UTF8, "tool.name");
    rc_buf_fini(&b);
}
Test(event_rules, tool_bad_utf8_in_a_key)
{
    struct rc_buf b;
    begin_event(&b, 3, "tool");
    rc_mpw_cstr(&b, "tool");
    rc_mpw_map(&b, 2);
    rc_mpw_cstr(&b, "id");
    rc_mpw_uint(&b, 1);
    rc_mpw_str(&b, "k\xff", 2);
    rc_mpw_uint(&b, 2);
    expect_mp(&b, RC_PROTO_BAD_UTF8, "tool");
    rc_buf_fini(&b);
}

/* item */
Test(event_rules, item_required_for_verification_events)
{
    expect("{\"run\":\"r\",\"type\":\"verification\"}", RC_PROTO_MISSING_FIELD, "item");
}
Test(event_rules, item_not_map)
{
    expect("{\"run\":\"r\",\"type\":\"verification\",\"item\":[]}", RC_PROTO_BAD_FIELD, "item");
}
Test(event_rules, item_id_missing)
{
    expect("{\"run\":\"r\",\"type\":\"verification\",\"item\":{\"label\":\"tests\"}}",
           RC_PROTO_MISSING_FIELD, "item.id");
}
Test(event_rules, item_id_bad)
{
    expect("{\"run\":\"r\",\"type\":\"verification\",\"item\":{\"id\":true}}", RC_PROTO_BAD_FIELD,
           "item.id");
}
Test(event_rules, item_label_not_string)
{
    expect("{\"run\":\"r\",\"type\":\"verification\",\"item\":{\"id\":\"a\",\"label\":1}}",
           RC_PROTO_BAD_FIELD, "item.label");
}
Test(event_rules, item_status_not_string)
{
    expect("{\"run\":\"r\",\"type\":\"verification\",\"item\":{\"id\":\"a\",\"status\":false}}",
           RC_PROTO_BAD_FIELD, "item.status");
}
Test(event_rules, item_nested_string_bad_utf8)
{
    struct rc_buf b;
    begin_event(&b, 3, "verification");
    rc_mpw_cstr(&b, "item");
    rc_mpw_map(&b, 2);
    rc_mpw_cstr(&b, "id");
    rc_mpw_cstr(&b, "v1");
    rc_mpw_cstr(&b, "detail");
    rc_mpw_map(&b, 1);
    rc_mpw_cstr(&b, "log");
    rc_mpw_str(&b, "\xed\xbf\xbf", 3);
    expect_mp(&b, RC_PROTO_BAD_UTF8, "item");
    rc_buf_fini(&b);
}
Test(event_rules, item_label_bad_utf8)
{
    struct rc_buf b;
    begin_event(&b, 3, "verification");
    rc_mpw_cstr(&b, "item");
    rc_mpw_map(&b, 2);
    rc_mpw_cstr(&b, "id");
    rc_mpw_cstr(&b, "v1");
    rc_mpw_cstr(&b, "label");
    rc_mpw_str(&b, "\x80", 1);
    expect_mp(&b, RC_PROTO_BAD_UTF8, "item.label");
    rc_buf_fini(&b);
}
Test(event_rules, item_too_deep)
{
    struct rc_buf b;
    begin_event(&b, 3, "verification");
    rc_mpw_cstr(&b, "item");
    rc_mpw_map(&b, 2);
    rc_mpw_cstr(&b, "id");
    rc_mpw_uint(&b, 1);
    rc_mpw_cstr(&b, "x");
    nest(&b, 40);
    expect_mp(&b, RC_PROTO_TOO_DEEP, "item");
    rc_buf_fini(&b);
}

/* data */
Test(event_rules, data_depth_limit)
{
    struct rc_buf b;
    begin_event(&b, 3, "delta");
    rc_mpw_cstr(&b, "data");
    nest(&b, 32);
    expect_mp(&b, RC_PROTO_OK, NULL);
    rc_buf_fini(&b);
    begin_event(&b, 3, "delta");
    rc_mpw_cstr(&b, "data");
    nest(&b, 33);
    expect_mp(&b, RC_PROTO_TOO_DEEP, "data");
    rc_buf_fini(&b);
}
Test(event_rules, data_is_opaque_bytes)
{
    /* any msgpack, strings in it unchecked, bin and ext kept byte for byte */
    struct rc_buf b;
    begin_event(&b, 3, "delta");
    rc_mpw_cstr(&b, "data");
    size_t at = b.len;
    rc_mpw_array(&b, 3);
    rc_mpw_str(&b, "\xff\xfe", 2);
    rc_mpw_bin(&b, "\x00\x01", 2);
    uint8_t ext[] = {0xd6, 0xff, 1, 2, 3, 4};
    rc_mpw_raw(&b, ext, sizeof ext);
    struct rc_event ev;
    cr_assert_eq(rc_proto_decode_event(b.data, b.len, &lim, &ev, NULL), RC_PROTO_OK);
    cr_assert_eq((const uint8_t *)ev.data_raw.ptr, b.data + at);
    cr_assert_eq(ev.data_raw.len, b.len - at);
    rc_buf_fini(&b);
}

/* error */
Test(event_rules, error_required_for_error_events)
{
    expect("{\"run\":\"r\",\"type\":\"error\"}", RC_PROTO_MISSING_FIELD, "error");
}
Test(event_rules, error_not_map)
{
    expect("{\"run\":\"r\",\"type\":\"error\",\"error\":\"boom\"}", RC_PROTO_BAD_FIELD, "error");
}
Test(event_rules, error_code_missing)
{
    expect("{\"run\":\"r\",\"type\":\"error\",\"error\":{\"message\":\"boom\"}}",
           RC_PROTO_MISSING_FIELD, "error.code");
}
Test(event_rules, error_code_not_string)
{
    expect("{\"run\":\"r\",\"type\":\"error\",\"error\":{\"code\":5,\"message\":\"boom\"}}",
           RC_PROTO_BAD_FIELD, "error.code");
}
Test(event_rules, error_message_missing)
{
    expect("{\"run\":\"r\",\"type\":\"error\",\"error\":{\"code\":\"E\"}}", RC_PROTO_MISSING_FIELD,
           "error.message");
}
Test(event_rules, error_message_not_string)
{
    expect("{\"run\":\"r\",\"type\":\"error\",\"error\":{\"code\":\"E\",\"message\":[]}}",
           RC_PROTO_BAD_FIELD, "error.message");
}
Test(event_rules, error_message_bad_utf8)
{
    struct rc_buf b;
    begin_event(&b, 3, "error");
    rc_mpw_cstr(&b, "error");
    rc_mpw_map(&b, 2);
    rc_mpw_cstr(&b, "code");
    rc_mpw_cstr(&b, "E");
    rc_mpw_cstr(&b, "message");
    rc_mpw_str(&b, "\xf5\x80\x80\x80", 4);
    expect_mp(&b, RC_PROTO_BAD_UTF8, "error.message");
    rc_buf_fini(&b);
}
Test(event_rules, error_code_bad_utf8)
{
    struct rc_buf b;
    begin_event(&b, 3, "error");
    rc_mpw_cstr(&b, "error");
    rc_mpw_map(&b, 2);
    rc_mpw_cstr(&b, "code");
    rc_mpw_str(&b, "E\xc0", 2);
    rc_mpw_cstr(&b, "message");
    rc_mpw_cstr(&b, "m");
    expect_mp(&b, RC_PROTO_BAD_UTF8, "error.code");
    rc_buf_fini(&b);
}
Test(event_rules, error_other_string_bad_utf8)
{
    struct rc_buf b;
    begin_event(&b, 3, "error");
    rc_mpw_cstr(&b, "error");
    rc_mpw_map(&b, 3);
    rc_mpw_cstr(&b, "code");
    rc_mpw_cstr(&b, "E");
    rc_mpw_cstr(&b, "message");
    rc_mpw_cstr(&b, "m");
    rc_mpw_cstr(&b, "hint");
    rc_mpw_str(&b, "\xfe", 1);
    expect_mp(&b, RC_PROTO_BAD_UTF8, "error");
    rc_buf_fini(&b);
}
Test(event_rules, error_too_deep)
{
    struct rc_buf b;
    begin_event(&b, 3, "error");
    rc_mpw_cstr(&b, "error");
    rc_mpw_map(&b, 3);
    rc_mpw_cstr(&b, "code");
    rc_mpw_cstr(&b, "E");
    rc_mpw_cstr(&b, "message");
    rc_mpw_cstr(&b, "m");
    rc_mpw_cstr(&b, "ctx");
    nest(&b, 32);
    expect_mp(&b, RC_PROTO_TOO_DEEP, "error");
    rc_buf_fini(&b);
}
Test(event_rules, error_fields_decoded)
{
    struct rc_event ev;
    const char *f;
    cr_assert_eq(decode_json("{\"run\":\"r\",\"type\":\"error\",\"error\":{\"code\":\"E1\","
                             "\"message\":\"boom\",\"extra\":1}}",
                             &ev, &f),
                 RC_PROTO_OK);
    cr_assert_eq(ev.error_code.len, 2);
    cr_assert_eq(ev.error_message.len, 4);
}

/* timeouts and deadline (start only) */
Test(event_rules, timeouts_decoded)
{
    struct rc_buf b = mp_of("{\"run\":\"r\",\"type\":\"start\",\"timeouts\":{\"*\":1000,"
                            "\"execute\":60000},\"deadline\":3600000}");
    struct rc_event ev;
    cr_assert_eq(rc_proto_decode_event(b.data, b.len, &lim, &ev, NULL), RC_PROTO_OK);
    cr_assert_eq(ev.n_timeouts, 2);
    cr_assert_eq(ev.timeouts[0].phase.len, 1);
    cr_assert_eq(ev.timeouts[0].ms, 1000);
    cr_assert(memcmp(ev.timeouts[1].phase.ptr, "execute", 7) == 0);
    cr_assert_eq(ev.timeouts[1].ms, 60000);
    cr_assert(ev.has_deadline);
    cr_assert_eq(ev.deadline_ms, 3600000);
    rc_buf_fini(&b);
}
Test(event_rules, timeouts_not_map)
{
    expect("{\"run\":\"r\",\"type\":\"start\",\"timeouts\":[1]}", RC_PROTO_BAD_FIELD, "timeouts");
}
Test(event_rules, timeouts_value_not_uint)
{
    expect("{\"run\":\"r\",\"type\":\"start\",\"timeouts\":{\"a\":\"1s\"}}", RC_PROTO_BAD_FIELD,
           "timeouts");
    expect("{\"run\":\"r\",\"type\":\"start\",\"timeouts\":{\"a\":-1}}", RC_PROTO_BAD_FIELD,
           "timeouts");
}
Test(event_rules, timeouts_key_bad)
{
    expect("{\"run\":\"r\",\"type\":\"start\",\"timeouts\":{\"\":1}}", RC_PROTO_BAD_FIELD,
           "timeouts");
}
Test(event_rules, timeouts_duplicate_phase)
{
    struct rc_buf b;
    begin_event(&b, 3, "start");
    rc_mpw_cstr(&b, "timeouts");
    rc_mpw_map(&b, 2);
    rc_mpw_cstr(&b, "plan");
    rc_mpw_uint(&b, 1);
    rc_mpw_cstr(&b, "plan");
    rc_mpw_uint(&b, 2);
    expect_mp(&b, RC_PROTO_BAD_FIELD, "timeouts");
    rc_buf_fini(&b);
}
Test(event_rules, timeouts_key_bad_utf8)
{
    struct rc_buf b;
    begin_event(&b, 3, "start");
    rc_mpw_cstr(&b, "timeouts");
    rc_mpw_map(&b, 1);
    rc_mpw_str(&b, "\xff", 1);
    rc_mpw_uint(&b, 5);
    expect_mp(&b, RC_PROTO_BAD_UTF8, "timeouts");
    rc_buf_fini(&b);
}
Test(event_rules, timeouts_key_too_long)
{
    char json[300];
    char p[70];
    memset(p, 'p', 65);
    p[65] = '\0';
    snprintf(json, sizeof json, "{\"run\":\"r\",\"type\":\"start\",\"timeouts\":{\"%s\":1}}", p);
    expect(json, RC_PROTO_BAD_FIELD, "timeouts");
}
Test(event_rules, timeouts_too_many)
{
    lim.timeouts_max = 2;
    expect("{\"run\":\"r\",\"type\":\"start\",\"timeouts\":{\"a\":1,\"b\":2,\"c\":3}}",
           RC_PROTO_TOO_LARGE, "timeouts");
}
Test(event_rules, deadline_not_uint)
{
    expect("{\"run\":\"r\",\"type\":\"start\",\"deadline\":\"1h\"}", RC_PROTO_BAD_FIELD,
           "deadline");
    expect("{\"run\":\"r\",\"type\":\"start\",\"deadline\":-5}", RC_PROTO_BAD_FIELD, "deadline");
}
Test(event_rules, timeouts_and_deadline_ignored_after_start)
{
    struct rc_event ev;
    const char *f;
    cr_assert_eq(decode_json("{\"run\":\"r\",\"type\":\"delta\",\"timeouts\":5,\"deadline\":\"x\"}",
                             &ev, &f),
                 RC_PROTO_OK);
    cr_assert_eq(ev.n_timeouts, 0);
    cr_assert_not(ev.has_deadline);
}

/* ---- helpers of the header ---- */

Test(event_rules, valid_id_and_utf8_helpers)
{
    cr_assert(rc_proto_valid_id("a", 1, 128));
    cr_assert_not(rc_proto_valid_id("", 0, 128));
    cr_assert_not(rc_proto_valid_id("abc", 3, 2));
    cr_assert_not(rc_proto_valid_id("a\0", 2, 128));
    cr_assert(rc_proto_valid_utf8("", 0));
    cr_assert(rc_proto_valid_utf8("plain ascii text, long enough", 29));
    cr_assert(rc_proto_valid_utf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
    cr_assert(rc_proto_valid_utf8("\xf4\x8f\xbf\xbf", 4));     /* U+10FFFF */
    cr_assert_not(rc_proto_valid_utf8("\xf4\x90\x80\x80", 4)); /* above */
    cr_assert_not(rc_proto_valid_utf8("\xe0\x80\x80", 3));     /* overlong */
    cr_assert_not(rc_proto_valid_utf8("\xed\xbf\xbf", 3));     /* surrogate */
    cr_assert_not(rc_proto_valid_utf8("\x80", 1));             /* lone continuation */
    cr_assert_not(rc_proto_valid_utf8("abcdefgh\xc3", 9));     /* truncated after fast path */
}

Test(event_rules, utf8_exact_size_buffers)
{
    /* every length around the 8- and 16-byte fast paths, in buffers of
     * exactly that size (ASan catches a read past the end), with a bad byte
     * at every position */
    for (size_t n = 0; n <= 40; n++) {
        char *p = malloc(n ? n : 1);
        memset(p, 'a', n);
        cr_assert(rc_proto_valid_utf8(p, n), "ascii length %zu", n);
        for (size_t i = 0; i < n; i++) {
            p[i] = (char)0xff;
            cr_assert_not(rc_proto_valid_utf8(p, n), "bad byte at %zu of %zu", i, n);
            p[i] = 'a';
        }
        if (n >= 2) {
            p[n - 2] = (char)0xc3; /* a 2-byte sequence ending the buffer */
            p[n - 1] = (char)0xa9;
            cr_assert(rc_proto_valid_utf8(p, n), "length %zu", n);
            cr_assert_not(rc_proto_valid_utf8(p, n - 1), "cut sequence, length %zu", n - 1);
        }
        free(p);
    }
}

/* A byte-at-a-time RFC 3629 validator, written from the definition (code
 * point ranges), to check the word-at-a-time fast path against. */
static bool ref_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        uint32_t cp;
        size_t k;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < k)
            return false;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        uint32_t min = k == 2 ? 0x80 : k == 3 ? 0x800 : 0x10000;
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k;
    }
    return true;
}

/* Sequences placed at every offset of ASCII strings: valid ones of each
 * length, each invalid form, and valid ones cut short. */
static const struct {
    const char *b;
    size_t n;
    bool valid;
} utf8_cases[] = {
    {"\xc3\xa9", 2, true},
    {"\xc2\x80", 2, true},
    {"\xdf\xbf", 2, true},
    {"\xe2\x82\xac", 3, true},
    {"\xe0\xa0\x80", 3, true},
    {"\xed\x9f\xbf", 3, true},
    {"\xee\x80\x80", 3, true},
    {"\xef\xbf\xbf", 3, true},
    {"\xf0\x9f\x98\x80", 4, true},
    {"\xf0\x90\x80\x80", 4, true},
    {"\xf4\x8f\xbf\xbf", 4, true},
    {"\xc0\x80", 2, false},
    {"\xc1\xbf", 2, false},
    {"\xe0\x9f\xbf", 3, false},
    {"\xed\xa0\x80", 3, false},
    {"\xed\xbf\xbf", 3, false},
    {"\xf0\x8f\xbf\xbf", 4, false},
    {"\xf4\x90\x80\x80", 4, false},
    {"\xf5\x80\x80\x80", 4, false},
    {"\xe2\x82", 2, false},
    {"\xf0\x9f\x98", 3, false},
    {"\xc3", 1, false},
    {"\xc3\x28", 2, false},
    {"\xe2\x28\xac", 3, false},
    {"\x80", 1, false},
    {"\xbf", 1, false},
    {"\xfe", 1, false},
    {"\xff", 1, false},
};

Test(event_rules, utf8_fast_path_matches_reference_at_every_offset)
{
    /* every length around the 4-, 8-, 16- and 64-byte steps (two rounds
     * of 64 and every tail), each case at every offset (straddling word
     * boundaries, ending the buffer), in buffers of exactly that size so
     * that ASan sees any read past them */
    for (size_t n = 0; n <= 150; n++) {
        char *p = malloc(n ? n : 1);
        for (size_t c = 0; c < sizeof utf8_cases / sizeof utf8_cases[0]; c++) {
            size_t k = utf8_cases[c].n;
            for (size_t at = 0; at + k <= n; at++) {
                memset(p, 'a', n);
                memcpy(p + at, utf8_cases[c].b, k);
                bool want = ref_utf8((const uint8_t *)p, n);
                cr_assert_eq(want, utf8_cases[c].valid, "reference, case %zu at %zu of %zu", c, at,
                             n);
                cr_assert_eq(rc_proto_valid_utf8(p, n), want, "case %zu at %zu of %zu", c, at, n);
            }
        }
        /* every byte value at every position of the last and first words */
        for (size_t at = 0; at < n; at++) {
            if (n > 80 && at >= 16 && at + 16 < n)
                continue;
            for (int v = 0; v < 256; v++) {
                memset(p, 'a', n);
                p[at] = (char)v;
                bool want = ref_utf8((const uint8_t *)p, n);
                cr_assert_eq(want, v < 0x80);
                cr_assert_eq(rc_proto_valid_utf8(p, n), want, "byte %02x at %zu of %zu", v, at, n);
            }
        }
        free(p);
    }
}

Test(event_rules, valid_id_every_byte_at_every_position)
{
    /* lengths around the 8- and 16-byte steps (two chunks and a tail) */
    for (size_t n = 1; n <= 40; n++) {
        char *p = malloc(n);
        for (size_t at = 0; at < n; at++) {
            for (int v = 0; v < 256; v++) {
                memset(p, 'x', n);
                p[at] = (char)v;
                bool want = (v >= 'a' && v <= 'z') || (v >= 'A' && v <= 'Z') ||
                            (v >= '0' && v <= '9') || v == '.' || v == '_' || v == ':' || v == '-';
                cr_assert_eq(rc_proto_valid_id(p, n, 128), want, "byte %02x at %zu of %zu", v, at,
                             n);
            }
        }
        free(p);
    }
    char big[130];
    memset(big, 'a', sizeof big);
    cr_assert(rc_proto_valid_id(big, 128, 128));
    cr_assert_not(rc_proto_valid_id(big, 129, 128));
}

/* One event whose text (and phase) carry a case at some offset, in a batch
 * with a good event after it: both decoders agree and name the field. */
Test(event_rules, utf8_in_text_and_phase_through_both_decoders)
{
    for (size_t c = 0; c < sizeof utf8_cases / sizeof utf8_cases[0]; c++) {
        for (size_t at = 0; at < 20; at++) {
            for (int fld = 0; fld < 2; fld++) {
                char s[40];
                size_t n = at + utf8_cases[c].n + (at % 3);
                memset(s, 'b', n);
                memcpy(s + at, utf8_cases[c].b, utf8_cases[c].n);
                struct rc_buf b;
                rc_buf_init(&b);
                rc_mpw_array(&b, 2);
                rc_mpw_map(&b, 3);
                rc_mpw_cstr(&b, "run");
                rc_mpw_cstr(&b, "r1");
                rc_mpw_cstr(&b, "type");
                rc_mpw_cstr(&b, "delta");
                rc_mpw_cstr(&b, fld ? "phase" : "text");
                rc_mpw_str(&b, s, n);
                rc_mpw_map(&b, 2);
                rc_mpw_cstr(&b, "run");
                rc_mpw_cstr(&b, "r2");
                rc_mpw_cstr(&b, "type");
                rc_mpw_cstr(&b, "heartbeat");
                struct results r;
                cr_assert_eq(publish(b.data, b.len, &r, NULL, NULL, NULL), RC_PROTO_OK);
                cr_assert_eq(r.n, 2);
                if (utf8_cases[c].valid) {
                    cr_assert_eq(r.code[0], RC_PROTO_OK, "case %zu at %zu", c, at);
                } else {
                    cr_assert_eq(r.code[0], RC_PROTO_BAD_UTF8, "case %zu at %zu", c, at);
                    cr_assert(field_is(r.field[0], fld ? "phase" : "text"));
                }
                cr_assert_eq(r.code[1], RC_PROTO_OK);
                rc_buf_fini(&b);
            }
        }
    }
}

Test(event_rules, code_names_round_trip)
{
    for (int c = 0; c < RC_PROTO_CODE_COUNT; c++) {
        const char *n = rc_proto_code_name((enum rc_proto_code)c);
        cr_assert_eq(rc_proto_code_from_name(n, strlen(n)), c);
        cr_assert_not_null(rc_proto_code_describe((enum rc_proto_code)c));
    }
    cr_assert_str_eq(rc_proto_code_name(RC_PROTO_BAD_UTF8), "bad_utf8");
    cr_assert_eq(rc_proto_code_from_name("nope", 4), -1);
}

Test(event_rules, null_limits_mean_defaults)
{
    struct rc_buf b = mp_of("{\"run\":\"r\",\"type\":\"start\"}");
    struct rc_event ev;
    cr_assert_eq(rc_proto_decode_event(b.data, b.len, NULL, &ev, NULL), RC_PROTO_OK);
    uint32_t count = 0;
    cr_assert_eq(rc_proto_decode_publish(b.data, b.len, NULL, NULL, NULL, &count, NULL, NULL),
                 RC_PROTO_OK);
    cr_assert_eq(count, 1);
    rc_buf_fini(&b);
    b = mp_of("{\"op\":\"ping\"}");
    struct rc_client_msg m;
    cr_assert_eq(rc_proto_decode_client(b.data, b.len, NULL, &m, NULL), RC_PROTO_OK);
    rc_buf_fini(&b);
}
