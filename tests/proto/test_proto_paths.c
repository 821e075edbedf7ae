/*
 * The event decoder's two paths (rc_proto_decode.c): the fast path for the
 * common shapes, which declines anything else, and the general path, which
 * checks every rule in one fixed order.  A corpus of varied events (every
 * type, every optional field, nil fields, fixstr/str8/str16/str32 strings,
 * non-canonical integers, non-ASCII UTF-8, key orders, unknown keys, and
 * inputs breaking each rule) goes through both and through the dispatcher:
 *   - when the fast path accepts, the general path accepts with the same
 *     rc_event, field by field, and the same end;
 *   - when the general path rejects, the fast path declines;
 *   - the dispatcher gives the general path's code, field and reason;
 *   - the expected values of every field are checked for the good events,
 *     and the expected code and field for the bad ones;
 *   - the fast path accepts the shapes it is for (else it would only cost).
 * A seeded random walk then mutates events (byte flips, truncations) and
 * holds the paths to the same invariants.
 */
#include "proto_test_util.h"
#include "rc_mpr.h"
#include "rc_proto_test.h"

#include <stdio.h>
#include <stdlib.h>

static struct rc_proto_limits lim;

static void setup(void)
{
    rc_proto_limits_default(&lim);
}

TestSuite(paths, .init = setup);

static bool str_same(struct rc_str a, struct rc_str b)
{
    return a.ptr == b.ptr && a.len == b.len; /* views into the same buffer */
}

/* Every field of two decodes of the same bytes, by identity of the views. */
static void assert_ev_equal(const struct rc_event *a, const struct rc_event *b, const char *what)
{
#define SAME_STR(f) cr_assert(str_same(a->f, b->f), "%s: field " #f " differs", what)
#define SAME_VAL(f) cr_assert(a->f == b->f, "%s: field " #f " differs", what)
    SAME_STR(raw);
    SAME_STR(run);
    SAME_STR(conv);
    SAME_VAL(type);
    SAME_STR(type_name);
    SAME_STR(phase);
    SAME_STR(text);
    SAME_VAL(has_text);
    SAME_STR(id_raw);
    SAME_VAL(has_ts);
    SAME_VAL(ts);
    SAME_STR(tool_raw);
    SAME_STR(tool_id_raw);
    SAME_STR(item_raw);
    SAME_STR(item_id_raw);
    SAME_STR(data_raw);
    SAME_STR(error_raw);
    SAME_STR(error_code);
    SAME_STR(error_message);
    SAME_VAL(n_timeouts);
    for (uint32_t i = 0; i < a->n_timeouts && i < 32; i++) {
        SAME_STR(timeouts[i].phase);
        SAME_VAL(timeouts[i].ms);
    }
    SAME_VAL(has_deadline);
    SAME_VAL(deadline_ms);
    SAME_VAL(id_is_uint);
    SAME_VAL(id_uint);
    SAME_STR(id_str);
#undef SAME_STR
#undef SAME_VAL
}

/* Fills ev with garbage so that a field a path forgets to set shows. */
static void poison(struct rc_event *ev)
{
    memset(ev, 0xa5, sizeof *ev);
}

struct verdict {
    enum rc_proto_code code; /* the general path's (= the dispatcher's) */
    const char *field;
    bool fast; /* the fast path accepted */
    struct rc_event ev;
};

/* Runs buf through the three paths and checks they agree; returns what
 * the general path said. */
static struct verdict run_paths(const void *buf, size_t len, const char *what)
{
    struct verdict v;
    struct rc_event fast, autoev;
    struct rc_proto_error eg, ea;
    size_t ug = 0, uf = 0, ua = 0;
    poison(&v.ev);
    poison(&fast);
    poison(&autoev);
    v.code = rc_proto_decode_event_path(buf, len, &lim, RC_PROTO_PATH_GENERAL, &v.ev, &eg, &ug);
    v.field = eg.field;
    enum rc_proto_code cf =
        rc_proto_decode_event_path(buf, len, &lim, RC_PROTO_PATH_FAST, &fast, NULL, &uf);
    enum rc_proto_code ca =
        rc_proto_decode_event_path(buf, len, &lim, RC_PROTO_PATH_AUTO, &autoev, &ea, &ua);
    cr_assert(cf == RC_PROTO_OK || cf == RC_PROTO_FAST_DECLINED, "%s: fast path said %d", what,
              (int)cf);
    v.fast = cf == RC_PROTO_OK;
    cr_assert_eq(ca, v.code, "%s: dispatcher %s, general %s", what, rc_proto_code_name(ca),
                 rc_proto_code_name(v.code));
    cr_assert_eq(ea.code, eg.code, "%s", what);
    cr_assert(field_is(ea.field, eg.field), "%s: field %s vs %s", what, ea.field, eg.field);
    cr_assert_str_eq(ea.reason, eg.reason, "%s", what);
    if (v.fast) {
        cr_assert_eq(v.code, RC_PROTO_OK,
                     "%s: fast path accepted what the general path rejects (%s)", what, eg.reason);
        cr_assert_eq(uf, ug, "%s: the paths end at different bytes", what);
        assert_ev_equal(&fast, &v.ev, what);
    }
    if (v.code == RC_PROTO_OK) {
        cr_assert_eq(ua, ug, "%s", what);
        assert_ev_equal(&autoev, &v.ev, what);
    }
    return v;
}

static struct verdict run_json(const char *json)
{
    struct rc_buf b = mp_of(json);
    struct verdict v = run_paths(b.data, b.len, json);
    rc_buf_fini(&b);
    /* the views point into freed memory: only scalars are read by callers */
    return v;
}

/* ---- good events: expected values, and the fast path takes them ---- */

static bool str_is(struct rc_str s, const char *want)
{
    return s.len == strlen(want) && (s.len == 0 || memcmp(s.ptr, want, s.len) == 0);
}

/* Decodes json and checks the fields named in it by the caller. */
#define GOOD(json, fast_expected)                                                                  \
    struct rc_buf b = mp_of(json);                                                                 \
    struct verdict v = run_paths(b.data, b.len, json);                                             \
    cr_assert_eq(v.code, RC_PROTO_OK, "%s", json);                                                 \
    cr_assert_eq(v.fast, fast_expected, "%s: fast path %s", json,                                  \
                 v.fast ? "accepted" : "declined");                                                \
    const struct rc_event *ev = &v.ev;                                                             \
    cr_assert(str_same(ev->raw, (struct rc_str){(const char *)b.data, (uint32_t)b.len}))

Test(paths, bench_event_every_field)
{
    GOOD("{\"run\":\"bench-run-0001\",\"type\":\"delta\",\"phase\":\"streaming\","
         "\"ts\":1795000000007,\"text\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
         true);
    cr_assert(str_is(ev->run, "bench-run-0001"));
    cr_assert_eq(ev->conv.len, 0);
    cr_assert_eq(ev->type, RC_EV_DELTA);
    cr_assert(str_is(ev->type_name, "delta"));
    cr_assert(str_is(ev->phase, "streaming"));
    cr_assert(ev->has_ts);
    cr_assert_eq(ev->ts, 1795000000007);
    cr_assert(ev->has_text);
    cr_assert_eq(ev->text.len, 127);
    cr_assert_eq(ev->id_raw.len, 0);
    cr_assert(!ev->id_is_uint);
    cr_assert_eq(ev->id_uint, 0);
    cr_assert_eq(ev->id_str.len, 0);
    cr_assert_eq(ev->tool_raw.len + ev->tool_id_raw.len + ev->item_raw.len + ev->item_id_raw.len,
                 0);
    cr_assert_eq(ev->data_raw.len + ev->error_raw.len + ev->error_code.len + ev->error_message.len,
                 0);
    cr_assert_eq(ev->n_timeouts, 0);
    cr_assert(!ev->has_deadline);
    cr_assert_eq(ev->deadline_ms, 0);
    rc_buf_fini(&b);
}

Test(paths, every_type)
{
    static const struct {
        const char *json;
        enum rc_event_type type;
    } cases[] = {
        {"{\"run\":\"r\",\"type\":\"start\"}", RC_EV_START},
        {"{\"run\":\"r\",\"type\":\"phase\",\"phase\":\"plan\"}", RC_EV_PHASE},
        {"{\"run\":\"r\",\"type\":\"thinking\",\"text\":\"hm\"}", RC_EV_THINKING},
        {"{\"run\":\"r\",\"type\":\"delta\",\"text\":\"\"}", RC_EV_DELTA},
        {"{\"run\":\"r\",\"type\":\"tool\",\"tool\":{\"id\":\"t1\"}}", RC_EV_TOOL},
        {"{\"run\":\"r\",\"type\":\"verification\",\"item\":{\"id\":7}}", RC_EV_VERIFICATION},
        {"{\"run\":\"r\",\"type\":\"heartbeat\"}", RC_EV_HEARTBEAT},
        {"{\"run\":\"r\",\"type\":\"complete\"}", RC_EV_COMPLETE},
        {"{\"run\":\"r\",\"type\":\"error\",\"error\":{\"code\":\"c\",\"message\":\"m\"}}",
         RC_EV_ERROR},
        {"{\"run\":\"r\",\"type\":\"x-metrics\"}", RC_EV_CUSTOM},
        {"{\"run\":\"r\",\"type\":\"x-\xc3\xa9t\xc3\xa9\"}", RC_EV_CUSTOM},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        GOOD(cases[i].json, true);
        cr_assert_eq(ev->type, cases[i].type, "%s", cases[i].json);
        cr_assert(str_is(ev->run, "r"));
        rc_buf_fini(&b);
    }
}

Test(paths, optional_fields_and_objects)
{
    GOOD("{\"type\":\"tool\",\"id\":\"evt-1\",\"conv\":\"c:1\",\"run\":\"r.1\",\"ts\":-5,"
         "\"tool\":{\"name\":\"grep\",\"id\":42,\"status\":\"ok\",\"x\":[1,{\"y\":null}]},"
         "\"data\":{\"a\":[1,2,{\"b\":true}]},\"item\":{\"id\":\"i\",\"label\":\"L\"},"
         "\"phase\":\"execute\",\"text\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}",
         true);
    cr_assert(str_is(ev->run, "r.1"));
    cr_assert(str_is(ev->conv, "c:1"));
    cr_assert_eq(ev->type, RC_EV_TOOL);
    cr_assert(str_is(ev->phase, "execute"));
    cr_assert_eq(ev->ts, -5);
    cr_assert(ev->has_ts);
    cr_assert(str_is(ev->text, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    cr_assert(!ev->id_is_uint);
    cr_assert(str_is(ev->id_str, "evt-1"));
    cr_assert_eq(ev->id_raw.len, 6);
    cr_assert_eq(ev->id_raw.ptr + 1, ev->id_str.ptr);
    cr_assert_eq((uint8_t)ev->tool_raw.ptr[0], 0x84);
    cr_assert_eq(ev->tool_id_raw.len, 1);
    cr_assert_eq((uint8_t)ev->tool_id_raw.ptr[0], 42);
    cr_assert_eq((uint8_t)ev->item_raw.ptr[0], 0x82);
    cr_assert_eq(ev->item_id_raw.len, 2);
    cr_assert_eq((uint8_t)ev->data_raw.ptr[0], 0x81);
    cr_assert_eq(ev->error_raw.len, 0);
    rc_buf_fini(&b);
}

Test(paths, error_event_fields)
{
    GOOD("{\"run\":\"r\",\"type\":\"error\",\"error\":{\"message\":\"boom\",\"code\":\"E1\","
         "\"detail\":{\"k\":\"v\"}}}",
         true);
    cr_assert(str_is(ev->error_code, "E1"));
    cr_assert(str_is(ev->error_message, "boom"));
    cr_assert_eq((uint8_t)ev->error_raw.ptr[0], 0x83);
    rc_buf_fini(&b);
}

Test(paths, nil_fields_are_absent_but_data_nil_is_forwarded)
{
    GOOD("{\"run\":\"r\",\"type\":\"delta\",\"conv\":null,\"phase\":null,\"id\":null,"
         "\"ts\":null,\"text\":null,\"tool\":null,\"item\":null,\"error\":null,"
         "\"timeouts\":null,\"deadline\":null,\"data\":null}",
         true);
    cr_assert_eq(ev->conv.len + ev->phase.len + ev->id_raw.len + ev->tool_raw.len, 0);
    cr_assert_eq(ev->item_raw.len + ev->error_raw.len, 0);
    cr_assert(!ev->has_ts);
    cr_assert(!ev->has_text);
    cr_assert_eq(ev->data_raw.len, 1);
    cr_assert_eq((uint8_t)ev->data_raw.ptr[0], 0xc0);
    rc_buf_fini(&b);
}

Test(paths, start_overrides)
{
    {
        GOOD("{\"run\":\"r\",\"type\":\"start\",\"timeouts\":{\"*\":1000,\"plan\":250},"
             "\"deadline\":60000,\"unknown\":[1,2,3]}",
             true);
        cr_assert_eq(ev->n_timeouts, 2);
        cr_assert(str_is(ev->timeouts[0].phase, "*"));
        cr_assert_eq(ev->timeouts[0].ms, 1000);
        cr_assert(str_is(ev->timeouts[1].phase, "plan"));
        cr_assert_eq(ev->timeouts[1].ms, 250);
        cr_assert(ev->has_deadline);
        cr_assert_eq(ev->deadline_ms, 60000);
        rc_buf_fini(&b);
    }
    {
        /* ignored (not even type-checked) on other types */
        GOOD("{\"run\":\"r\",\"type\":\"delta\",\"timeouts\":\"x\",\"deadline\":-1}", true);
        cr_assert_eq(ev->n_timeouts, 0);
        cr_assert(!ev->has_deadline);
        rc_buf_fini(&b);
    }
}

Test(paths, uint_ids_and_ts_of_every_width)
{
    static const uint64_t ids[] = {0,     127,   128,         255,         256,
                                   65535, 65536, 4294967295u, 4294967296u, UINT64_MAX};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        int64_t ts = ids[i] > INT64_MAX ? -(int64_t)(ids[i] >> 2) : (int64_t)ids[i];
        struct rc_buf b;
        rc_buf_init(&b);
        rc_mpw_map(&b, 4);
        rc_mpw_cstr(&b, "id");
        rc_mpw_uint(&b, ids[i]);
        rc_mpw_cstr(&b, "run");
        rc_mpw_cstr(&b, "r");
        rc_mpw_cstr(&b, "ts");
        rc_mpw_int(&b, ts);
        rc_mpw_cstr(&b, "type");
        rc_mpw_cstr(&b, "delta");
        struct verdict v = run_paths(b.data, b.len, "uint id");
        cr_assert_eq(v.code, RC_PROTO_OK);
        cr_assert(v.fast);
        cr_assert(v.ev.id_is_uint);
        cr_assert_eq(v.ev.id_uint, ids[i]);
        cr_assert_eq(v.ev.id_str.len, 0);
        cr_assert_eq(v.ev.id_raw.ptr, (const char *)b.data + 4);
        cr_assert(v.ev.has_ts);
        cr_assert_eq(v.ev.ts, ts);
        rc_buf_fini(&b);
    }
}

/* Builds {run, type, <key>: <value bytes>} by hand, for encodings the JSON
 * converter never writes. */
static struct rc_buf hand(const char *key, const void *val, size_t n)
{
    struct rc_buf b;
    rc_buf_init(&b);
    rc_mpw_map(&b, 3);
    rc_mpw_cstr(&b, "type");
    rc_mpw_cstr(&b, "delta");
    rc_mpw_cstr(&b, key);
    rc_mpw_raw(&b, val, n);
    rc_mpw_cstr(&b, "run");
    rc_mpw_cstr(&b, "hand");
    return b;
}

Test(paths, string_and_integer_encodings)
{
    static const struct {
        const char *key;
        const char *bytes;
        size_t n;
        bool fast;
    } cases[] = {
        {"text",
         "\xd9\x03"
         "abc",
         5, true}, /* str8, short */
        {"text",
         "\xda\x00\x03"
         "abc",
         6, true}, /* str16, short */
        {"text",
         "\xdb\x00\x00\x00\x03"
         "abc",
         8, false}, /* str32 */
        {"phase",
         "\xd9\x04"
         "plan",
         6, true},
        {"phase",
         "\xda\x00\x04"
         "plan",
         7, true},
        {"ts", "\xcc\xff", 2, true},
        {"ts", "\xcd\x01\x00", 3, true},
        {"ts", "\xce\x01\x00\x00\x00", 5, true},
        {"ts", "\xd0\x80", 2, true},
        {"ts", "\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9, true}, /* INT64_MIN */
        {"ts", "\xcf\x7f\xff\xff\xff\xff\xff\xff\xff", 9, true}, /* INT64_MAX */
        {"ts", "\xe0", 1, true},                                 /* -32 */
        {"id",
         "\xd9\x02"
         "ab",
         4, true},
        {"id", "\xcf\x00\x00\x00\x00\x00\x00\x00\x05", 9, true},
        {"conv",
         "\xd9\x02"
         "c1",
         4, true},
        {"data",
         "\xc7\x01\x05"
         "z",
         4, true},                     /* ext */
        {"data", "\xc4\x00", 2, true}, /* empty bin */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rc_buf b = hand(cases[i].key, cases[i].bytes, cases[i].n);
        char what[64];
        snprintf(what, sizeof what, "case %zu (%s)", i, cases[i].key);
        struct verdict v = run_paths(b.data, b.len, what);
        cr_assert_eq(v.code, RC_PROTO_OK, "%s", what);
        cr_assert_eq(v.fast, cases[i].fast, "%s", what);
        rc_buf_fini(&b);
    }
}

Test(paths, long_strings_str8_str16)
{
    /* text of 31, 32, 255, 256, 70000 bytes, ASCII and not */
    static const uint32_t lens[] = {31, 32, 255, 256, 65535, 65536};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (int ascii = 0; ascii < 2; ascii++) {
            char *t = malloc(lens[i]);
            memset(t, 'a', lens[i]);
            if (!ascii) { /* a 2-byte sequence at the very end */
                t[lens[i] - 2] = (char)0xc3;
                t[lens[i] - 1] = (char)0xa9;
            }
            struct rc_buf b;
            rc_buf_init(&b);
            rc_mpw_map(&b, 3);
            rc_mpw_cstr(&b, "run");
            rc_mpw_cstr(&b, "r");
            rc_mpw_cstr(&b, "type");
            rc_mpw_cstr(&b, "thinking");
            rc_mpw_cstr(&b, "text"); /* last: the bad byte below is in it */
            rc_mpw_str(&b, t, lens[i]);
            struct verdict v = run_paths(b.data, b.len, "long text");
            cr_assert_eq(v.code, RC_PROTO_OK);
            cr_assert_eq(v.fast, lens[i] <= 65535, "len %u", lens[i]); /* str32: general */
            cr_assert_eq(v.ev.text.len, lens[i]);
            /* one byte of bad UTF-8 at the end: both reject or decline */
            b.data[b.len - 10] = (uint8_t)0xff;
            v = run_paths(b.data, b.len, "long text, bad utf8");
            cr_assert_eq(v.code, RC_PROTO_BAD_UTF8);
            cr_assert(field_is(v.field, "text"));
            rc_buf_fini(&b);
            free(t);
        }
    }
}

Test(paths, key_orders)
{
    /* every rotation of the bench event's keys, with unknown keys between */
    const char *pairs[] = {
        "\"run\":\"r-1\"",    "\"type\":\"delta\"", "\"phase\":\"p\"", "\"ts\":12",
        "\"text\":\"hello\"", "\"zz\":{\"a\":[1]}", "\"conv\":\"c\"",  "\"id\":9"};
    size_t n = sizeof pairs / sizeof pairs[0];
    for (size_t rot = 0; rot < n; rot++) {
        char json[512] = "{";
        for (size_t i = 0; i < n; i++) {
            strcat(json, pairs[(rot + i) % n]);
            strcat(json, i + 1 < n ? "," : "}");
        }
        GOOD(json, true);
        cr_assert(str_is(ev->run, "r-1"));
        cr_assert(str_is(ev->text, "hello"));
        cr_assert_eq(ev->id_uint, 9);
        rc_buf_fini(&b);
    }
}

Test(paths, non_fixstr_keys_go_to_the_general_path)
{
    /* {str8 "run": "r", "type": "delta", 5: 1} */
    static const uint8_t m[] = {0x83, 0xd9, 0x03, 'r', 'u', 'n', 0xa1, 'r', 0xa4, 't', 'y',
                                'p',  'e',  0xa5, 'd', 'e', 'l', 't',  'a', 0x05, 0x01};
    struct verdict v = run_paths(m, sizeof m, "str8 key");
    cr_assert_eq(v.code, RC_PROTO_OK);
    cr_assert(!v.fast);
    cr_assert_eq(v.ev.run.len, 1);
    /* map16 header */
    static const uint8_t m16[] = {0xde, 0x00, 0x02, 0xa3, 'r',  'u', 'n', 0xa1, 'r', 0xa4,
                                  't',  'y',  'p',  'e',  0xa5, 'd', 'e', 'l',  't', 'a'};
    v = run_paths(m16, sizeof m16, "map16");
    cr_assert_eq(v.code, RC_PROTO_OK);
    cr_assert(!v.fast);
}

/* ---- bad events: every error code the decoder gives, and its field ---- */

Test(paths, bad_events_every_code)
{
    static const struct {
        const char *json;
        enum rc_proto_code code;
        const char *field;
    } cases[] = {
        {"[1]", RC_PROTO_NOT_A_MAP, NULL},
        {"{\"type\":\"delta\"}", RC_PROTO_MISSING_FIELD, "run"},
        {"{\"run\":null,\"type\":\"delta\"}", RC_PROTO_MISSING_FIELD, "run"},
        {"{\"run\":\"r\"}", RC_PROTO_MISSING_FIELD, "type"},
        {"{\"run\":\"r\",\"type\":\"phase\"}", RC_PROTO_MISSING_FIELD, "phase"},
        {"{\"run\":\"r\",\"type\":\"tool\"}", RC_PROTO_MISSING_FIELD, "tool"},
        {"{\"run\":\"r\",\"type\":\"verification\",\"item\":null}", RC_PROTO_MISSING_FIELD, "item"},
        {"{\"run\":\"r\",\"type\":\"error\"}", RC_PROTO_MISSING_FIELD, "error"},
        {"{\"run\":\"r\",\"type\":\"error\",\"error\":{\"code\":\"c\"}}", RC_PROTO_MISSING_FIELD,
         "error.message"},
        {"{\"run\":\"r\",\"type\":\"tool\",\"tool\":{\"name\":\"n\"}}", RC_PROTO_MISSING_FIELD,
         "tool.id"},
        {"{\"run\":\"a b\",\"type\":\"delta\"}", RC_PROTO_BAD_FIELD, "run"},
        {"{\"run\":\"\",\"type\":\"delta\"}", RC_PROTO_BAD_FIELD, "run"},
        {"{\"run\":7,\"type\":\"delta\"}", RC_PROTO_BAD_FIELD, "run"},
        {"{\"run\":\"r\",\"conv\":\"c/d\",\"type\":\"delta\"}", RC_PROTO_BAD_FIELD, "conv"},
        {"{\"run\":\"r\",\"type\":\"\"}", RC_PROTO_BAD_FIELD, "type"},
        {"{\"run\":\"r\",\"type\":3}", RC_PROTO_BAD_FIELD, "type"},
        {"{\"run\":\"r\",\"type\":\"delta\",\"phase\":\"\"}", RC_PROTO_BAD_FIELD, "phase"},
        {"{\"run\":\"r\",\"type\":\"delta\",\"id\":\"\"}", RC_PROTO_BAD_FIELD, "id"},
        {"{\"run\":\"r\",\"type\":\"delta\",\"id\":-1}", RC_PROTO_BAD_FIELD, "id"},
        {"{\"run\":\"r\",\"type\":\"delta\",\"ts\":1.5}", RC_PROTO_BAD_FIELD, "ts"},
        {"{\"run\":\"r\",\"type\":\"delta\",\"text\":5}", RC_PROTO_BAD_FIELD, "text"},
        {"{\"run\":\"r\",\"type\":\"delta\",\"tool\":[1]}", RC_PROTO_BAD_FIELD, "tool"},
        {"{\"run\":\"r\",\"type\":\"start\",\"deadline\":\"x\"}", RC_PROTO_BAD_FIELD, "deadline"},
        {"{\"run\":\"r\",\"type\":\"start\",\"timeouts\":{\"a\":-1}}", RC_PROTO_BAD_FIELD,
         "timeouts"},
        {"{\"run\":\"r\",\"type\":\"deltas\"}", RC_PROTO_UNKNOWN_TYPE, "type"},
        {"{\"run\":\"r\",\"type\":\"x-\"}", RC_PROTO_UNKNOWN_TYPE, "type"},
        {"{\"run\":\"r\",\"type\":\"Delta\"}", RC_PROTO_UNKNOWN_TYPE, "type"},
        {"{\"run\":\"r\",\"type\":\"delt\"}", RC_PROTO_UNKNOWN_TYPE, "type"},
        {"{\"run\":\"r\",\"type\":\"verificatioN\"}", RC_PROTO_UNKNOWN_TYPE, "type"},
        {"{\"run\":\"r\",\"type\":\"heartbeaT\"}", RC_PROTO_UNKNOWN_TYPE, "type"},
        {"{\"run\":\"r\",\"type\":\"Thinking\"}", RC_PROTO_UNKNOWN_TYPE, "type"},
        {"{\"run\":\"r\",\"type\":\"start\",\"timeouts\":{\"a\":1,\"b\":2,\"c\":3,\"d\":4,"
         "\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9,\"j\":10,\"k\":11,\"l\":12,\"m\":13,\"n\":14,"
         "\"o\":15,\"p\":16,\"q\":17,\"r\":18,\"s\":19,\"t\":20,\"u\":21,\"v\":22,\"w\":23,"
         "\"x\":24,\"y\":25,\"z\":26,\"A\":27,\"B\":28,\"C\":29,\"D\":30,\"E\":31,\"F\":32,"
         "\"G\":33}}",
         RC_PROTO_TOO_LARGE, "timeouts"},
        {"{\"run\":\"r\",\"type\":\"delta\",\"data\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]"
         "]]]]]]]]]]]]]]]]]]]]]]]]}",
         RC_PROTO_TOO_DEEP, "data"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct verdict v = run_json(cases[i].json);
        cr_assert_eq(v.code, cases[i].code, "%s: %s, want %s", cases[i].json,
                     rc_proto_code_name(v.code), rc_proto_code_name(cases[i].code));
        cr_assert(field_is(v.field, cases[i].field), "%s: field %s", cases[i].json,
                  v.field ? v.field : "(null)");
        cr_assert(!v.fast);
    }
}

#define B(lit) lit, sizeof(lit) - 1

Test(paths, bad_and_odd_bytes)
{
    static const struct {
        const char *bytes;
        size_t n;
        enum rc_proto_code code;
        const char *field;
    } cases[] = {
        {B(""), RC_PROTO_MALFORMED, NULL},
        {B("\x82\xa3run\xa1r\xa4type"), RC_PROTO_MALFORMED, NULL}, /* no value */
        {B("\x82\xa3run\xa1r\xa4type\xa5"
           "del"),
         RC_PROTO_MALFORMED, NULL},                                    /* short str */
        {B("\x82\xa3run\xa1r\xa4type\xc1"), RC_PROTO_MALFORMED, NULL}, /* never used */
        {B("\x82\xa3run\xa1r\xa4ty"), RC_PROTO_MALFORMED, NULL},       /* short key */
        {B("\x83\xa3run\xa1r\xa4type\xa5"
           "delta\xa4text\xd9\x05"
           "abc"),
         RC_PROTO_MALFORMED, NULL},
        {B("\x83\xa3run\xa1r\xa4type\xa5"
           "delta\xa2ts\xcf\x00\x00"),
         RC_PROTO_MALFORMED, NULL},
        {B("\x83\xa3run\xa1r\xa4type\xa5"
           "delta\xa4text\xa2\xc3\x28"),
         RC_PROTO_BAD_UTF8, "text"},
        {B("\x83\xa3run\xa1r\xa4type\xa5"
           "delta\xa5phase\xa2\xed\xa0"),
         RC_PROTO_BAD_UTF8, "phase"},
        {B("\x83\xa3run\xa1r\xa4type\xa5"
           "delta\xa2id\xa1\x80"),
         RC_PROTO_BAD_UTF8, "id"},
        {B("\x82\xa3run\xa1r\xa4type\xa4x-\xc0\xaf"), RC_PROTO_BAD_UTF8, "type"},
        {B("\x83\xa3run\xa1r\xa4type\xa5"
           "delta\xa2ts\xcf\x80\x00\x00\x00\x00\x00\x00\x00"),
         RC_PROTO_BAD_FIELD, "ts"},
        /* type names cut short at the end of the buffer, or one letter off */
        {B("\x82\xa3run\xa1r\xa4type\xa8thinkin"), RC_PROTO_MALFORMED, NULL},
        {B("\x82\xa3run\xa1r\xa4type\xa5"
           "delt"),
         RC_PROTO_MALFORMED, NULL},
        {B("\x82\xa3run\xa1r\xa4type\xa8thinkinG"), RC_PROTO_UNKNOWN_TYPE, "type"},
        {B("\x82\xa3run\xa1r\xa4type\xa8thinkin\x00"), RC_PROTO_UNKNOWN_TYPE, "type"},
        {B("\x82\xa3run\xa1r\xa4type\xa6"
           "deltas"),
         RC_PROTO_UNKNOWN_TYPE, "type"},
        {B("\x82\xa3run\xa1r\xa4type\xd9\x05"
           "delta"),
         RC_PROTO_OK, NULL},
        /* duplicate keys (the JSON converter refuses them) */
        {B("\x83\xa3run\xa1r\xa3run\xa1r\xa4type\xa5"
           "delta"),
         RC_PROTO_BAD_FIELD, "run"},
        {B("\x84\xa3run\xa1r\xa4type\xa5"
           "delta\xa4text\xa1x\xa4text\xa1y"),
         RC_PROTO_BAD_FIELD, "text"},
        {B("\x83\xa3run\xa1r\xa4type\xa5start\xa8timeouts\x82\xa1"
           "a\x01\xa1"
           "a\x02"),
         RC_PROTO_BAD_FIELD, "timeouts"},
        {B("\x82\xa3run\xa2r\xe9\xa4type\xa5"
           "delta"),
         RC_PROTO_BAD_FIELD, "run"},
        {B("\x83\xa3run\xa1r\xa4type\xa5"
           "error\xa5"
           "error\x82\xa4"
           "code\xa1\xff\xa7message\xa0"),
         RC_PROTO_BAD_UTF8, "error.code"},
        {B("\x83\xa3run\xa1r\xa4type\xa4tool\xa4tool\x81\xa2id\xa2\xf5\x80"), RC_PROTO_BAD_UTF8,
         "tool.id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[32];
        snprintf(what, sizeof what, "bad bytes %zu", i);
        /* an exact-size copy, so that ASan sees any read past the end */
        uint8_t *m = malloc(cases[i].n + 1);
        memcpy(m, cases[i].bytes, cases[i].n);
        struct verdict v = run_paths(m, cases[i].n, what);
        cr_assert_eq(v.code, cases[i].code, "%s: %s, want %s", what, rc_proto_code_name(v.code),
                     rc_proto_code_name(cases[i].code));
        cr_assert(field_is(v.field, cases[i].field), "%s: field %s", what,
                  v.field ? v.field : "(null)");
        cr_assert(!v.fast || v.code == RC_PROTO_OK);
        free(m);
    }
}

Test(paths, limits_are_the_callers)
{
    struct rc_proto_limits saved = lim;
    lim.id_max_bytes = 3;
    lim.phase_max_bytes = 2;
    lim.data_max_depth = 0; /* scalars only */
    struct verdict v = run_json("{\"run\":\"abc\",\"type\":\"delta\",\"phase\":\"ab\",\"id\":\"i\","
                                "\"data\":5}");
    cr_assert_eq(v.code, RC_PROTO_OK);
    cr_assert(v.fast);
    v = run_json("{\"run\":\"abcd\",\"type\":\"delta\"}");
    cr_assert_eq(v.code, RC_PROTO_BAD_FIELD);
    v = run_json("{\"run\":\"a\",\"type\":\"delta\",\"phase\":\"abc\"}");
    cr_assert_eq(v.code, RC_PROTO_BAD_FIELD);
    v = run_json("{\"run\":\"a\",\"type\":\"delta\",\"id\":\"abcd\"}");
    cr_assert_eq(v.code, RC_PROTO_BAD_FIELD);
    v = run_json("{\"run\":\"a\",\"type\":\"delta\",\"data\":[]}"); /* depth 1 */
    cr_assert_eq(v.code, RC_PROTO_OK);
    v = run_json("{\"run\":\"a\",\"type\":\"delta\",\"data\":[[]]}");
    cr_assert_eq(v.code, RC_PROTO_TOO_DEEP);
    lim = saved;
}

/* ---- a seeded random walk over mutated events ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

Test(paths, random_events_and_mutations)
{
    static const char *const vals[][6] = {
        /* run */ {"\"r-1\"", "\"a.b:c_d-e\"", "\"\"", "\"a b\"", "null", "1"},
        /* conv */ {"\"c\"", "\"c-2\"", "null", "\"c/d\"", "[]", "\"c\""},
        /* type */ {"\"delta\"", "\"thinking\"", "\"x-y\"", "\"tool\"", "\"phase\"", "\"bogus\""},
        /* phase */ {"\"streaming\"", "\"p\"", "null", "\"\"", "7", "\"verify\""},
        /* id */ {"\"e1\"", "12", "300", "null", "-3", "\"\""},
        /* ts */ {"1795000000000", "0", "-12", "null", "1.5", "\"t\""},
        /* text */
        {"\"hi\"", "\"\"", "\"\xc3\xa9\xc3\xa9\"", "null", "{}",
         "\"long long long "
         "long long long\""},
        /* tool */
        {"{\"id\":\"t\"}", "{\"id\":1,\"name\":\"n\"}", "null", "{}", "[1]",
         "{\"id\":\"t\",\"status\":3}"},
        /* data */ {"{\"k\":[1,2]}", "null", "\"s\"", "[[[]]]", "true", "1.25"},
        /* zz */ {"1", "null", "{\"a\":{\"b\":1}}", "\"z\"", "[]", "false"},
    };
    static const char *const keys[] = {"run", "conv", "type", "phase", "id",
                                       "ts",  "text", "tool", "data",  "zz"};
    size_t nk = sizeof keys / sizeof keys[0];
    uint32_t fast_ok = 0, total = 0;
    for (int iter = 0; iter < 3000; iter++) {
        char json[1024] = "{";
        uint32_t order[10];
        for (uint32_t i = 0; i < nk; i++)
            order[i] = i;
        for (uint32_t i = nk - 1; i > 0; i--) {
            uint32_t j = rnd(i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        bool first = true;
        for (uint32_t i = 0; i < nk; i++) {
            uint32_t k = order[i];
            if (rnd(3) == 0 && k != 0 && k != 2)
                continue; /* leave optional keys out often */
            /* mostly good values (the first two), sometimes any */
            uint32_t vi = rnd(4) ? rnd(2) : rnd(6);
            char pair[160];
            snprintf(pair, sizeof pair, "%s\"%s\":%s", first ? "" : ",", keys[k], vals[k][vi]);
            strcat(json, pair);
            first = false;
        }
        strcat(json, "}");
        struct rc_buf b = mp_of(json);
        struct verdict v = run_paths(b.data, b.len, json);
        total++;
        fast_ok += v.fast;
        /* mutations: flip a byte, truncate */
        for (int m = 0; m < 4; m++) {
            size_t n = b.len;
            uint8_t *copy = malloc(n);
            memcpy(copy, b.data, n);
            if (m < 3)
                copy[rnd((uint32_t)n)] = (uint8_t)rnd(256);
            else
                n = rnd((uint32_t)n);
            (void)run_paths(copy, n, "mutation");
            free(copy);
        }
        rc_buf_fini(&b);
    }
    /* the walk reaches both paths */
    cr_assert_gt(fast_ok, total / 10, "fast path took %u of %u", fast_ok, total);
    cr_assert_lt(fast_ok, total, "fast path took %u of %u", fast_ok, total);
}
