/*
 * Encoders: every server message and the ack, decoded back with msgpack-c
 * (an independent decoder) and checked key by key; raw fields must come out
 * byte for byte.
 */
#include "proto_test_util.h"

#include <stdlib.h>

static struct rc_proto_limits lim;

static void setup(void)
{
    rc_proto_limits_default(&lim);
}

TestSuite(encode, .init = setup);

static bool bytes_eq(const msgpack_object *o, const void *raw, size_t len)
{
    /* re-pack o with msgpack-c and compare with the raw bytes */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *o);
    bool eq = sb.size == len && memcmp(sb.data, raw, len) == 0;
    msgpack_sbuffer_destroy(&sb);
    return eq;
}

Test(encode, ev_round_trip_all_fields)
{
    struct rc_buf in = mp_of("{\"run\":\"run-1\",\"conv\":\"c1\",\"type\":\"tool\","
                             "\"phase\":\"execute\",\"id\":\"k-9\",\"ts\":1700000000001,"
                             "\"text\":\"hello\",\"ignored\":1,"
                             "\"tool\":{\"id\":\"t1\",\"name\":\"grep\",\"args\":[1,\"x\"]},"
                             "\"item\":{\"id\":3,\"label\":\"tests\"},"
                             "\"data\":{\"k\":[1.5,null,true]},"
                             "\"error\":{\"code\":\"E\",\"message\":\"m\"}}");
    struct rc_event ev;
    struct rc_proto_error err;
    cr_assert_eq(rc_proto_decode_event(in.data, in.len, &lim, &ev, &err), RC_PROTO_OK, "%s",
                 err.reason);
    struct rc_ev_meta m = {.epoch = 77, .seq = 1234, .ts = 1700000000999, .synthetic = true};
    struct rc_buf out;
    rc_buf_init(&out);
    cr_assert_eq(rc_proto_encode_ev(&out, &ev, &m), 0);

    msgpack_unpacked u;
    msgpack_object o = mpc_unpack(&u, out.data, out.len);
    cr_assert_eq(o.via.map.size, 16);
    mpc_assert_str(&o, "op", "ev");
    mpc_assert_str(&o, "run", "run-1");
    mpc_assert_str(&o, "conv", "c1");
    mpc_assert_uint(&o, "epoch", 77);
    mpc_assert_uint(&o, "seq", 1234);
    mpc_assert_str(&o, "type", "tool");
    mpc_assert_str(&o, "phase", "execute");
    mpc_assert_int(&o, "ts", 1700000000999);
    mpc_assert_int(&o, "pts", 1700000000001);
    mpc_assert_str(&o, "id", "k-9");
    mpc_assert_str(&o, "text", "hello");
    mpc_assert_bool(&o, "synthetic", true);
    cr_assert_null(mpc_get(&o, "ignored"));
    cr_assert(bytes_eq(mpc_get(&o, "tool"), ev.tool_raw.ptr, ev.tool_raw.len));
    cr_assert(bytes_eq(mpc_get(&o, "item"), ev.item_raw.ptr, ev.item_raw.len));
    cr_assert(bytes_eq(mpc_get(&o, "error"), ev.error_raw.ptr, ev.error_raw.len));
    msgpack_unpacked_destroy(&u);

    /* the raw bytes appear verbatim in the output */
    cr_assert_not_null(memmem(out.data, out.len, ev.data_raw.ptr, ev.data_raw.len));
    cr_assert_not_null(memmem(out.data, out.len, ev.tool_raw.ptr, ev.tool_raw.len));

    /* and our own decoder reads the ev back as an event with the same fields */
    struct rc_event back;
    cr_assert_eq(rc_proto_decode_event(out.data, out.len, &lim, &back, &err), RC_PROTO_OK, "%s",
                 err.reason);
    cr_assert_eq(back.data_raw.len, ev.data_raw.len);
    cr_assert(memcmp(back.data_raw.ptr, ev.data_raw.ptr, ev.data_raw.len) == 0);
    cr_assert_eq(back.ts, 1700000000999); /* ts is now the broker's */
    rc_buf_fini(&out);
    rc_buf_fini(&in);
}

/* rc_proto_ev_size is exact for every optional key and every width of
 * header and integer: rc_proto_put_ev writes exactly that many bytes into
 * an exact buffer (ASan sees an overrun), the same bytes as
 * rc_proto_encode_ev, and msgpack-c reads them back as one map. */
Test(encode, ev_size_is_exact)
{
    static char big[70000];
    memset(big, 'q', sizeof big);
    const uint32_t lens[] = {0, 1, 31, 32, 255, 256, 65535, 65536};
    const uint64_t uints[] = {0,     127,   128,         255,          256,
                              65535, 65536, 0xffffffffu, 0x100000000u, UINT64_MAX};
    const int64_t ints[] = {0,         -1,           -32,    -33,       -128,
                            -129,      -32768,       -32769, INT32_MIN, (int64_t)INT32_MIN - 1,
                            INT64_MIN, 1795000000000};
    const char tool[] = "\x81\xa2id\x01", data[] = "\x92\x01\xc0",
               error[] = "\x82\xa4"
                         "code\xa1"
                         "E\xa7message\xa0";
    int cases = 0;
    for (unsigned mask = 0; mask < 512; mask++) {
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            if (li > 1 && (mask & 0x1f) != 0x1f) /* long strings: a few masks suffice */
                continue;
            struct rc_event ev;
            memset(&ev, 0, sizeof ev);
            ev.run = (struct rc_str){"run-1", 5};
            ev.type_name = (struct rc_str){"delta", 5};
            ev.type = RC_EV_DELTA;
            struct rc_ev_meta m = {.epoch = uints[(mask + li) % 10],
                                   .seq = uints[(mask * 7 + li) % 10],
                                   .ts = ints[(mask + li * 5) % 12]};
            if (mask & 1)
                m.conv = (struct rc_str){big, lens[li] > 128 ? 128 : lens[li]};
            if (mask & 2)
                ev.phase = (struct rc_str){big, lens[li] ? lens[li] : 1};
            if (mask & 4) {
                ev.has_ts = true;
                ev.ts = ints[(mask / 3 + li) % 12];
            }
            if (mask & 8)
                ev.id_raw = (struct rc_str){"\xcd\x01\x00", 3};
            if (mask & 16) {
                ev.has_text = true;
                ev.text = (struct rc_str){big, lens[li]};
            }
            if (mask & 32)
                ev.tool_raw = (struct rc_str){tool, sizeof tool - 1};
            if (mask & 64)
                ev.item_raw = (struct rc_str){tool, sizeof tool - 1};
            if (mask & 128)
                ev.data_raw = (struct rc_str){data, sizeof data - 1};
            if (mask & 256)
                ev.error_raw = (struct rc_str){error, sizeof error - 1};
            m.synthetic = (mask + li) % 2 == 1;
            if (li == 0 && mask == 511)
                m.synthetic = true; /* every key: 16 pairs, a map16 header */

            size_t z = rc_proto_ev_size(&ev, &m);
            cr_assert_geq(rc_proto_ev_bound(&ev, &m), z);
            uint8_t *p = malloc(z);
            uint8_t *e = rc_proto_put_ev(p, &ev, &m);
            cr_assert_eq((size_t)(e - p), z, "mask %x len %u: wrote %zu, sized %zu", mask, lens[li],
                         (size_t)(e - p), z);
            struct rc_buf out;
            rc_buf_init(&out);
            cr_assert_eq(rc_proto_encode_ev(&out, &ev, &m), 0);
            cr_assert_eq(out.len, z);
            cr_assert(memcmp(out.data, p, z) == 0);
            msgpack_unpacked u;
            msgpack_object o = mpc_unpack(&u, p, z);
            cr_assert_eq(o.type, MSGPACK_OBJECT_MAP);
            /* 6 keys always, one per optional key present (an empty
             * conv is absent) */
            uint32_t pairs =
                6 + (uint32_t)__builtin_popcount(mask & ~1u) + (m.conv.len > 0) + m.synthetic;
            cr_assert_eq(o.via.map.size, pairs, "mask %x", mask);
            mpc_assert_str(&o, "op", "ev");
            mpc_assert_str(&o, "run", "run-1");
            mpc_assert_str(&o, "type", "delta");
            mpc_assert_uint(&o, "epoch", m.epoch);
            mpc_assert_uint(&o, "seq", m.seq);
            mpc_assert_int(&o, "ts", m.ts);
            if (m.synthetic)
                mpc_assert_bool(&o, "synthetic", true);
            msgpack_unpacked_destroy(&u);
            rc_buf_fini(&out);
            free(p);
            cases++;
        }
    }
    cr_assert_gt(cases, 512);
}

/* Short strings and raw values are copied inline (overlapping words);
 * every length around 4, 8 and 16 comes out byte for byte, in an exact
 * buffer. */
Test(encode, ev_short_copies_every_length)
{
    char src[48];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (char)('A' + i % 26 + (i / 26) * 6);
    for (uint32_t n = 1; n <= 40; n++) {
        struct rc_event ev;
        memset(&ev, 0, sizeof ev);
        ev.run = (struct rc_str){src + 1, n};
        ev.type_name = (struct rc_str){"x-t", 3};
        ev.phase = (struct rc_str){src + 2, n};
        ev.has_text = true;
        ev.text = (struct rc_str){src, n};
        char id[48];
        id[0] = (char)(0xa0 | (n > 31 ? 31 : n)); /* a fixstr id as raw msgpack */
        memcpy(id + 1, src + 3, n > 31 ? 31 : n);
        ev.id_raw = (struct rc_str){id, (n > 31 ? 31 : n) + 1};
        struct rc_ev_meta m = {.epoch = 1, .seq = n, .ts = 2};
        size_t z = rc_proto_ev_size(&ev, &m);
        uint8_t *p = malloc(z);
        cr_assert_eq((size_t)(rc_proto_put_ev(p, &ev, &m) - p), z);
        msgpack_unpacked u;
        msgpack_object o = mpc_unpack(&u, p, z);
        char want[48];
        memcpy(want, src + 1, n);
        want[n] = 0;
        mpc_assert_str(&o, "run", want);
        memcpy(want, src + 2, n);
        mpc_assert_str(&o, "phase", want);
        memcpy(want, src, n);
        mpc_assert_str(&o, "text", want);
        cr_assert(bytes_eq(mpc_get(&o, "id"), id, ev.id_raw.len));
        mpc_assert_str(&o, "type", "x-t");
        msgpack_unpacked_destroy(&u);
        free(p);
    }
}

Test(encode, ev_minimal_and_conv_from_meta)
{
    struct rc_buf in = mp_of("{\"run\":\"r\",\"type\":\"heartbeat\"}");
    struct rc_event ev;
    cr_assert_eq(rc_proto_decode_event(in.data, in.len, &lim, &ev, NULL), RC_PROTO_OK);
    struct rc_ev_meta m = {.epoch = 1, .seq = 2, .ts = 3, .conv = {"conv-A", 6}};
    struct rc_buf out;
    rc_buf_init(&out);
    cr_assert_eq(rc_proto_encode_ev(&out, &ev, &m), 0);
    msgpack_unpacked u;
    msgpack_object o = mpc_unpack(&u, out.data, out.len);
    cr_assert_eq(o.via.map.size, 7);
    mpc_assert_str(&o, "conv", "conv-A");
    mpc_assert_str(&o, "type", "heartbeat");
    cr_assert_null(mpc_get(&o, "pts"));
    cr_assert_null(mpc_get(&o, "synthetic"));
    cr_assert_null(mpc_get(&o, "data"));
    msgpack_unpacked_destroy(&u);
    rc_buf_fini(&out);
    rc_buf_fini(&in);
}

Test(encode, ev_appends_and_frames_as_array)
{
    struct rc_buf in = mp_of("{\"run\":\"r\",\"type\":\"delta\",\"text\":\"a\"}");
    struct rc_event ev;
    cr_assert_eq(rc_proto_decode_event(in.data, in.len, &lim, &ev, NULL), RC_PROTO_OK);
    struct rc_buf out;
    rc_buf_init(&out);
    cr_assert_eq(rc_proto_encode_array_header(&out, 3), 0);
    for (uint64_t s = 1; s <= 2; s++) {
        struct rc_ev_meta m = {.epoch = 9, .seq = s, .ts = 100};
        cr_assert_eq(rc_proto_encode_ev(&out, &ev, &m), 0);
    }
    cr_assert_eq(rc_proto_encode_hb(&out, -7), 0);
    msgpack_unpacked u;
    msgpack_object o = mpc_unpack(&u, out.data, out.len);
    cr_assert_eq(o.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(o.via.array.size, 3);
    mpc_assert_uint(&o.via.array.ptr[1], "seq", 2);
    mpc_assert_str(&o.via.array.ptr[2], "op", "hb");
    mpc_assert_int(&o.via.array.ptr[2], "ts", -7);
    msgpack_unpacked_destroy(&u);
    rc_buf_fini(&out);
    rc_buf_fini(&in);
}

Test(encode, snap_full)
{
    struct rc_buf tool = mp_of("{\"id\":\"t1\",\"status\":\"done\"}");
    struct rc_buf item = mp_of("{\"id\":\"v1\",\"status\":\"pass\"}");
    struct rc_buf term = mp_of("{\"op\":\"ev\",\"type\":\"complete\",\"seq\":9}");
    struct rc_snap_phase phases[2] = {{{"routing", 7}, 100}, {{"execute", 7}, 200}};
    struct rc_str tools[1] = {{(const char *)tool.data, (uint32_t)tool.len}};
    struct rc_str items[1] = {{(const char *)item.data, (uint32_t)item.len}};
    struct rc_proto_snap s = {
        .run = {"r1", 2},
        .conv = {"c1", 2},
        .epoch = 5,
        .seq = 9,
        .status = RC_RUN_COMPLETED,
        .phase = {"execute", 7},
        .phases = phases,
        .n_phases = 2,
        .created_at = 90,
        .started_at = 95,
        .last_event_at = 300,
        .ended_at = 301,
        .thinking = {"hmm", 3},
        .output = {"answer", 6},
        .tools = tools,
        .n_tools = 1,
        .verification = items,
        .n_verification = 1,
        .terminal_raw = {(const char *)term.data, (uint32_t)term.len},
        .truncated = true,
    };
    struct rc_buf out;
    rc_buf_init(&out);
    cr_assert_eq(rc_proto_encode_snap(&out, &s), 0);
    msgpack_unpacked u;
    msgpack_object o = mpc_unpack(&u, out.data, out.len);
    cr_assert_eq(o.via.map.size, 18);
    mpc_assert_str(&o, "op", "snap");
    mpc_assert_str(&o, "run", "r1");
    mpc_assert_str(&o, "conv", "c1");
    mpc_assert_uint(&o, "epoch", 5);
    mpc_assert_uint(&o, "seq", 9);
    mpc_assert_str(&o, "status", "completed");
    mpc_assert_str(&o, "phase", "execute");
    const msgpack_object *ph = mpc_get(&o, "phases");
    cr_assert_eq(ph->via.array.size, 2);
    mpc_assert_str(&ph->via.array.ptr[1], "phase", "execute");
    mpc_assert_int(&ph->via.array.ptr[1], "at", 200);
    mpc_assert_int(&o, "created_at", 90);
    mpc_assert_int(&o, "started_at", 95);
    mpc_assert_int(&o, "last_event_at", 300);
    mpc_assert_int(&o, "ended_at", 301);
    mpc_assert_str(&o, "thinking", "hmm");
    mpc_assert_str(&o, "output", "answer");
    const msgpack_object *t = mpc_get(&o, "tools");
    cr_assert_eq(t->via.array.size, 1);
    cr_assert(bytes_eq(&t->via.array.ptr[0], tool.data, tool.len));
    const msgpack_object *v = mpc_get(&o, "verification");
    cr_assert(bytes_eq(&v->via.array.ptr[0], item.data, item.len));
    cr_assert(bytes_eq(mpc_get(&o, "terminal"), term.data, term.len));
    mpc_assert_bool(&o, "truncated", true);
    msgpack_unpacked_destroy(&u);
    rc_buf_fini(&out);
    rc_buf_fini(&tool);
    rc_buf_fini(&item);
    rc_buf_fini(&term);
}

Test(encode, snap_minimal)
{
    struct rc_proto_snap s = {.run = {"r", 1},
                              .epoch = 1,
                              .seq = 1,
                              .status = RC_RUN_PENDING,
                              .created_at = 5,
                              .last_event_at = 5};
    struct rc_buf out;
    rc_buf_init(&out);
    cr_assert_eq(rc_proto_encode_snap(&out, &s), 0);
    msgpack_unpacked u;
    msgpack_object o = mpc_unpack(&u, out.data, out.len);
    cr_assert_eq(o.via.map.size, 12);
    mpc_assert_str(&o, "status", "pending");
    mpc_assert_str(&o, "thinking", "");
    cr_assert_null(mpc_get(&o, "terminal"));
    cr_assert_null(mpc_get(&o, "truncated"));
    cr_assert_null(mpc_get(&o, "conv"));
    cr_assert_eq(mpc_get(&o, "tools")->via.array.size, 0);
    msgpack_unpacked_destroy(&u);
    rc_buf_fini(&out);
    cr_assert_str_eq(rc_run_status_name(RC_RUN_RUNNING), "running");
    cr_assert_str_eq(rc_run_status_name(RC_RUN_FAILED), "failed");
}

Test(encode, gap_hello_hb)
{
    struct rc_buf out;
    rc_buf_init(&out);
    cr_assert_eq(rc_proto_encode_gap(&out, (struct rc_str){"r9", 2}, 3, 40), 0);
    msgpack_unpacked u;
    msgpack_object o = mpc_unpack(&u, out.data, out.len);
    cr_assert_eq(o.via.map.size, 4);
    mpc_assert_str(&o, "op", "gap");
    mpc_assert_str(&o, "run", "r9");
    mpc_assert_uint(&o, "from", 3);
    mpc_assert_uint(&o, "to", 40);
    msgpack_unpacked_destroy(&u);

    rc_buf_reset(&out);
    cr_assert_eq(rc_proto_encode_hello(&out, UINT64_MAX, "runcast/0.1.0", 15000), 0);
    o = mpc_unpack(&u, out.data, out.len);
    mpc_assert_str(&o, "op", "hello");
    mpc_assert_uint(&o, "epoch", UINT64_MAX);
    mpc_assert_str(&o, "server", "runcast/0.1.0");
    mpc_assert_uint(&o, "hb_ms", 15000);
    mpc_assert_uint(&o, "proto", 1);
    msgpack_unpacked_destroy(&u);

    rc_buf_reset(&out);
    cr_assert_eq(rc_proto_encode_hb(&out, 1700000000000), 0);
    o = mpc_unpack(&u, out.data, out.len);
    cr_assert_eq(o.via.map.size, 2);
    mpc_assert_str(&o, "op", "hb");
    mpc_assert_int(&o, "ts", 1700000000000);
    msgpack_unpacked_destroy(&u);
    rc_buf_fini(&out);
}

Test(encode, ok_pong_err_echo_req)
{
    struct rc_buf req = mp_of("{\"n\":1}");
    struct rc_str r = {(const char *)req.data, (uint32_t)req.len};
    struct rc_str none = {NULL, 0};
    struct rc_buf out;
    rc_buf_init(&out);
    msgpack_unpacked u;
    msgpack_object o;

    cr_assert_eq(rc_proto_encode_ok(&out, r), 0);
    o = mpc_unpack(&u, out.data, out.len);
    mpc_assert_str(&o, "op", "ok");
    cr_assert(bytes_eq(mpc_get(&o, "req"), req.data, req.len));
    msgpack_unpacked_destroy(&u);

    rc_buf_reset(&out);
    cr_assert_eq(rc_proto_encode_ok(&out, none), 0);
    o = mpc_unpack(&u, out.data, out.len);
    cr_assert_eq(o.via.map.size, 1);
    msgpack_unpacked_destroy(&u);

    rc_buf_reset(&out);
    cr_assert_eq(rc_proto_encode_pong(&out, r), 0);
    o = mpc_unpack(&u, out.data, out.len);
    mpc_assert_str(&o, "op", "pong");
    cr_assert_not_null(mpc_get(&o, "req"));
    msgpack_unpacked_destroy(&u);

    rc_buf_reset(&out);
    cr_assert_eq(rc_proto_encode_err(&out, RC_PROTO_UNKNOWN_OP, "unknown op \"x\"", r), 0);
    o = mpc_unpack(&u, out.data, out.len);
    cr_assert_eq(o.via.map.size, 4);
    mpc_assert_str(&o, "op", "err");
    mpc_assert_str(&o, "code", "unknown_op");
    mpc_assert_str(&o, "message", "unknown op \"x\"");
    cr_assert_not_null(mpc_get(&o, "req"));
    msgpack_unpacked_destroy(&u);

    rc_buf_reset(&out);
    cr_assert_eq(rc_proto_encode_err_field(&out, RC_PROTO_BAD_FIELD, "since", NULL, none), 0);
    o = mpc_unpack(&u, out.data, out.len);
    cr_assert_eq(o.via.map.size, 4);
    mpc_assert_str(&o, "field", "since");
    mpc_assert_str(&o, "message", rc_proto_code_describe(RC_PROTO_BAD_FIELD));
    msgpack_unpacked_destroy(&u);
    rc_buf_fini(&out);
    rc_buf_fini(&req);
}

Test(encode, ack)
{
    struct rc_proto_ack_result r[3] = {
        {.code = RC_PROTO_OK, .seq = 1},
        {.code = RC_PROTO_OK, .seq = 1, .dup = true},
        {.code = RC_PROTO_BAD_FIELD, .field = "run", .message = "run must be ..."},
    };
    struct rc_buf out;
    rc_buf_init(&out);
    cr_assert_eq(rc_proto_encode_ack(&out, 42, r, 3), 0);
    msgpack_unpacked u;
    msgpack_object o = mpc_unpack(&u, out.data, out.len);
    mpc_assert_bool(&o, "ok", false);
    mpc_assert_uint(&o, "epoch", 42);
    const msgpack_object *res = mpc_get(&o, "results");
    cr_assert_eq(res->via.array.size, 3);
    cr_assert_eq(res->via.array.ptr[0].via.map.size, 1);
    mpc_assert_uint(&res->via.array.ptr[0], "seq", 1);
    mpc_assert_bool(&res->via.array.ptr[1], "dup", true);
    const msgpack_object *e = mpc_get(&res->via.array.ptr[2], "error");
    cr_assert_not_null(e);
    mpc_assert_str(e, "code", "bad_field");
    mpc_assert_str(e, "field", "run");
    mpc_assert_str(e, "message", "run must be ...");
    msgpack_unpacked_destroy(&u);

    rc_buf_reset(&out);
    cr_assert_eq(rc_proto_encode_ack(&out, 42, r, 2), 0);
    o = mpc_unpack(&u, out.data, out.len);
    mpc_assert_bool(&o, "ok", true);
    msgpack_unpacked_destroy(&u);

    /* a whole-message error: one result, default message */
    struct rc_proto_ack_result sd = {.code = RC_PROTO_SHUTTING_DOWN};
    rc_buf_reset(&out);
    cr_assert_eq(rc_proto_encode_ack(&out, 42, &sd, 1), 0);
    o = mpc_unpack(&u, out.data, out.len);
    e = mpc_get(&mpc_get(&o, "results")->via.array.ptr[0], "error");
    mpc_assert_str(e, "code", "shutting_down");
    cr_assert_null(mpc_get(e, "field"));
    msgpack_unpacked_destroy(&u);
    rc_buf_fini(&out);
}
