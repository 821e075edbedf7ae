/*
 * The msgpack writer (rc_mpw_*) and reader (rc_mpr), cross-checked against
 * msgpack-c: every encoding the writer makes is the smallest form and reads
 * back through msgpack-c as the same value; the reader skips exactly the
 * bytes msgpack-c consumes, on random documents packed by msgpack-c.
 */
#include "proto_test_util.h"
#include "rc_mpr.h"

#include <math.h>
#include <stdlib.h>

static void check_uint(uint64_t v, size_t want_len)
{
    struct rc_buf b;
    rc_buf_init(&b);
    cr_assert_eq(rc_mpw_uint(&b, v), 0);
    cr_assert_eq(b.len, want_len, "uint %llu encoded in %zu bytes", (unsigned long long)v, b.len);
    msgpack_unpacked u;
    msgpack_object o = mpc_unpack(&u, b.data, b.len);
    cr_assert_eq(o.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq(o.via.u64, v);
    msgpack_unpacked_destroy(&u);
    struct rc_mpr r;
    struct rc_mp_item it;
    rc_mpr_init(&r, b.data, b.len);
    cr_assert(rc_mpr_next(&r, &it));
    cr_assert_eq(it.type, RC_MP_UINT);
    cr_assert_eq(it.v.u, v);
    cr_assert_eq(rc_mpr_left(&r), 0);
    rc_buf_fini(&b);
}

static void check_int(int64_t v, size_t want_len)
{
    struct rc_buf b;
    rc_buf_init(&b);
    cr_assert_eq(rc_mpw_int(&b, v), 0);
    cr_assert_eq(b.len, want_len, "int %lld encoded in %zu bytes", (long long)v, b.len);
    msgpack_unpacked u;
    msgpack_object o = mpc_unpack(&u, b.data, b.len);
    if (v >= 0) {
        cr_assert_eq(o.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
        cr_assert_eq(o.via.u64, (uint64_t)v);
    } else {
        cr_assert_eq(o.type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
        cr_assert_eq(o.via.i64, v);
    }
    msgpack_unpacked_destroy(&u);
    struct rc_mpr r;
    struct rc_mp_item it;
    rc_mpr_init(&r, b.data, b.len);
    cr_assert(rc_mpr_next(&r, &it));
    if (v >= 0) {
        cr_assert_eq(it.type, RC_MP_UINT);
        cr_assert_eq(it.v.u, (uint64_t)v);
    } else {
        cr_assert_eq(it.type, RC_MP_INT);
        cr_assert_eq(it.v.i, v);
    }
    rc_buf_fini(&b);
}

Test(mpw, integers_smallest_form)
{
    check_uint(0, 1);
    check_uint(127, 1);
    check_uint(128, 2);
    check_uint(255, 2);
    check_uint(256, 3);
    check_uint(65535, 3);
    check_uint(65536, 5);
    check_uint(UINT32_MAX, 5);
    check_uint((uint64_t)UINT32_MAX + 1, 9);
    check_uint(UINT64_MAX, 9);
    check_int(5, 1);
    check_int(-1, 1);
    check_int(-32, 1);
    check_int(-33, 2);
    check_int(-128, 2);
    check_int(-129, 3);
    check_int(INT16_MIN, 3);
    check_int(INT16_MIN - 1, 5);
    check_int(INT32_MIN, 5);
    check_int((int64_t)INT32_MIN - 1, 9);
    check_int(INT64_MIN, 9);
    check_int(INT64_MAX, 9);
}

static void check_str_len(size_t n, size_t hdr, bool bin)
{
    char *s = malloc(n + 1);
    memset(s, 'q', n);
    struct rc_buf b;
    rc_buf_init(&b);
    cr_assert_eq(bin ? rc_mpw_bin(&b, s, n) : rc_mpw_str(&b, s, n), 0);
    cr_assert_eq(b.len, hdr + n, "%s of %zu: %zu bytes", bin ? "bin" : "str", n, b.len);
    msgpack_unpacked u;
    msgpack_object o = mpc_unpack(&u, b.data, b.len);
    cr_assert_eq(o.type, bin ? MSGPACK_OBJECT_BIN : MSGPACK_OBJECT_STR);
    cr_assert_eq(o.via.str.size, n);
    msgpack_unpacked_destroy(&u);
    rc_buf_fini(&b);
    free(s);
}

Test(mpw, strings_and_bins)
{
    check_str_len(0, 1, false);
    check_str_len(31, 1, false);
    check_str_len(32, 2, false);
    check_str_len(255, 2, false);
    check_str_len(256, 3, false);
    check_str_len(65535, 3, false);
    check_str_len(65536, 5, false);
    check_str_len(0, 2, true);
    check_str_len(255, 2, true);
    check_str_len(256, 3, true);
    check_str_len(65536, 5, true);
}

static void check_container(uint32_t n, size_t hdr, bool map)
{
    struct rc_buf b;
    rc_buf_init(&b);
    cr_assert_eq(map ? rc_mpw_map(&b, n) : rc_mpw_array(&b, n), 0);
    cr_assert_eq(b.len, hdr);
    for (uint32_t i = 0; i < n * (map ? 2 : 1); i++)
        rc_mpw_nil(&b);
    msgpack_unpacked u;
    msgpack_object o = mpc_unpack(&u, b.data, b.len);
    cr_assert_eq(o.type, map ? MSGPACK_OBJECT_MAP : MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(map ? o.via.map.size : o.via.array.size, n);
    msgpack_unpacked_destroy(&u);
    rc_buf_fini(&b);
}

Test(mpw, containers)
{
    check_container(0, 1, false);
    check_container(15, 1, false);
    check_container(16, 3, false);
    check_container(65536, 5, false);
    check_container(15, 1, true);
    check_container(16, 3, true);
    check_container(70000, 5, true);
}

Test(mpw, scalars)
{
    struct rc_buf b;
    rc_buf_init(&b);
    rc_mpw_array(&b, 6);
    rc_mpw_nil(&b);
    rc_mpw_bool(&b, true);
    rc_mpw_bool(&b, false);
    rc_mpw_double(&b, 2.5);
    rc_mpw_cstr(&b, "hi");
    uint8_t raw[] = {0x92, 0x01, 0xa1, 'x'};
    rc_mpw_raw(&b, raw, sizeof raw);
    msgpack_unpacked u;
    msgpack_object o = mpc_unpack(&u, b.data, b.len);
    cr_assert_eq(o.via.array.ptr[0].type, MSGPACK_OBJECT_NIL);
    cr_assert_eq(o.via.array.ptr[1].via.boolean, true);
    cr_assert_eq(o.via.array.ptr[2].via.boolean, false);
    cr_assert_eq(o.via.array.ptr[3].type, MSGPACK_OBJECT_FLOAT64);
    cr_assert_float_eq(o.via.array.ptr[3].via.f64, 2.5, 0);
    cr_assert_eq(o.via.array.ptr[4].via.str.size, 2);
    cr_assert_eq(o.via.array.ptr[5].via.array.size, 2);
    msgpack_unpacked_destroy(&u);
    rc_buf_fini(&b);
}

/* ---- reader vs msgpack-c on random documents ---- */

static uint32_t rng = 12345;
static uint32_t rnd(void)
{
    rng = rng * 1103515245u + 12345u;
    return rng >> 8;
}

static void pack_random(msgpack_packer *pk, int depth)
{
    uint32_t k = rnd() % (depth > 5 ? 12 : 14);
    switch (k) {
    case 0:
        msgpack_pack_nil(pk);
        break;
    case 1:
        msgpack_pack_true(pk);
        break;
    case 2:
        msgpack_pack_uint64(pk, (uint64_t)rnd() << (rnd() % 40));
        break;
    case 3:
        msgpack_pack_int64(pk, -(int64_t)(rnd() << (rnd() % 30)) - 1);
        break;
    case 4:
        msgpack_pack_double(pk, rnd() / 7.0);
        break;
    case 5:
        msgpack_pack_float(pk, (float)(rnd() / 3.0));
        break;
    case 6:
    case 7: {
        char s[300];
        size_t n = rnd() % (rnd() % 8 == 0 ? 300 : 40);
        memset(s, 'a' + (char)(rnd() % 26), n);
        msgpack_pack_str_with_body(pk, s, n);
        break;
    }
    case 8: {
        uint8_t s[70];
        size_t n = rnd() % 70;
        memset(s, (int)rnd(), n);
        msgpack_pack_bin_with_body(pk, s, n);
        break;
    }
    case 9: {
        static const size_t sizes[] = {1, 2, 4, 8, 16, 3, 17, 300};
        uint8_t s[300] = {0};
        size_t n = sizes[rnd() % 8];
        msgpack_pack_ext_with_body(pk, s, n, (int8_t)(rnd() % 100));
        break;
    }
    case 10:
        msgpack_pack_int8(pk, (int8_t)rnd());
        break;
    case 11:
        msgpack_pack_uint8(pk, (uint8_t)rnd());
        break;
    case 12: {
        uint32_t n = rnd() % (rnd() % 10 == 0 ? 40 : 5);
        msgpack_pack_array(pk, n);
        for (uint32_t i = 0; i < n; i++)
            pack_random(pk, depth + 1);
        break;
    }
    default: {
        uint32_t n = rnd() % (rnd() % 10 == 0 ? 20 : 4);
        msgpack_pack_map(pk, n);
        for (uint32_t i = 0; i < 2 * n; i++)
            pack_random(pk, depth + 1);
        break;
    }
    }
}

/* Depth as the reader defines it: scalar 0, container 1 + deepest child. */
static uint32_t obj_depth(const msgpack_object *o)
{
    uint32_t d = 0;
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            uint32_t c = obj_depth(&o->via.array.ptr[i]);
            d = c > d ? c : d;
        }
        return d + 1;
    }
    if (o->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            uint32_t c = obj_depth(&o->via.map.ptr[i].key);
            d = c > d ? c : d;
            c = obj_depth(&o->via.map.ptr[i].val);
            d = c > d ? c : d;
        }
        return d + 1;
    }
    return 0;
}

Test(mpr, skip_matches_msgpack_c_on_random_documents)
{
    for (int round = 0; round < 2000; round++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        pack_random(&pk, 0);
        pack_random(&pk, 0); /* a second value after it */
        msgpack_unpacked u;
        size_t off = 0;
        msgpack_unpacked_init(&u);
        cr_assert_eq(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
        uint32_t depth = obj_depth(&u.data);

        struct rc_mpr r;
        rc_mpr_init(&r, sb.data, sb.size);
        cr_assert(rc_mpr_skip(&r), "round %d", round);
        cr_assert_eq((size_t)(r.p - (const uint8_t *)sb.data), off, "round %d", round);

        rc_mpr_init(&r, sb.data, sb.size);
        cr_assert_eq(rc_mpr_skip_depth(&r, depth), RC_MPR_OK, "round %d depth %u", round, depth);
        cr_assert_eq((size_t)(r.p - (const uint8_t *)sb.data), off);
        if (depth > 0) {
            rc_mpr_init(&r, sb.data, sb.size);
            cr_assert_eq(rc_mpr_skip_depth(&r, depth - 1), RC_MPR_DEEP, "round %d", round);
        }
        /* every strict prefix of the first value is a truncation */
        for (size_t cut = 0; cut < off; cut += 1 + off / 16) {
            rc_mpr_init(&r, sb.data, cut);
            cr_assert_not(rc_mpr_skip(&r), "round %d cut %zu", round, cut);
        }
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sb);
    }
}

Test(mpr, reads_every_format)
{
    /* each encoding and the value it must read as */
    struct {
        uint8_t bytes[12];
        size_t len;
        enum rc_mp_type type;
        int64_t ival;
    } cases[] = {
        {{0x7f}, 1, RC_MP_UINT, 127},
        {{0xe0}, 1, RC_MP_INT, -32},
        {{0xcc, 0xff}, 2, RC_MP_UINT, 255},
        {{0xcd, 0x01, 0x00}, 3, RC_MP_UINT, 256},
        {{0xce, 0, 1, 0, 0}, 5, RC_MP_UINT, 65536},
        {{0xcf, 0, 0, 0, 1, 0, 0, 0, 0}, 9, RC_MP_UINT, 1LL << 32},
        {{0xd0, 0x80}, 2, RC_MP_INT, -128},
        {{0xd1, 0xff, 0x00}, 3, RC_MP_INT, -256},
        {{0xd2, 0xff, 0xff, 0xff, 0xff}, 5, RC_MP_INT, -1},
        {{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9, RC_MP_INT, INT64_MIN},
        {{0xd1, 0x00, 0x10}, 3, RC_MP_UINT, 16}, /* signed form of a positive */
        {{0xc0}, 1, RC_MP_NIL, 0},
        {{0xc3}, 1, RC_MP_BOOL, 1},
        {{0xc4, 1, 9}, 3, RC_MP_BIN, 1},
        {{0xc5, 0, 1, 9}, 4, RC_MP_BIN, 1},
        {{0xc6, 0, 0, 0, 1, 9}, 6, RC_MP_BIN, 1},
        {{0xc7, 1, 5, 9}, 4, RC_MP_EXT, 1},
        {{0xc8, 0, 1, 5, 9}, 5, RC_MP_EXT, 1},
        {{0xc9, 0, 0, 0, 1, 5, 9}, 7, RC_MP_EXT, 1},
        {{0xd4, 5, 9}, 3, RC_MP_EXT, 1},
        {{0xd5, 5, 9, 9}, 4, RC_MP_EXT, 2},
        {{0xd9, 1, 'a'}, 3, RC_MP_STR, 1},
        {{0xda, 0, 1, 'a'}, 4, RC_MP_STR, 1},
        {{0xdb, 0, 0, 0, 1, 'a'}, 6, RC_MP_STR, 1},
        {{0xdc, 0, 1}, 3, RC_MP_ARRAY, 1},
        {{0xdd, 0, 0, 0, 1}, 5, RC_MP_ARRAY, 1},
        {{0xde, 0, 1}, 3, RC_MP_MAP, 1},
        {{0xdf, 0, 0, 0, 1}, 5, RC_MP_MAP, 1},
        {{0xca, 0x3f, 0x80, 0, 0}, 5, RC_MP_FLOAT, 1},
        {{0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}, 9, RC_MP_FLOAT, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rc_mpr r;
        struct rc_mp_item it;
        rc_mpr_init(&r, cases[i].bytes, cases[i].len);
        cr_assert(rc_mpr_next(&r, &it), "case %zu", i);
        cr_assert_eq(it.type, cases[i].type, "case %zu", i);
        cr_assert_eq(rc_mpr_left(&r), 0, "case %zu", i);
        switch (it.type) {
        case RC_MP_UINT:
            cr_assert_eq(it.v.u, (uint64_t)cases[i].ival, "case %zu", i);
            break;
        case RC_MP_INT:
            cr_assert_eq(it.v.i, cases[i].ival, "case %zu", i);
            break;
        case RC_MP_STR:
        case RC_MP_BIN:
        case RC_MP_EXT:
            cr_assert_eq(it.v.s.len, (uint32_t)cases[i].ival, "case %zu", i);
            break;
        case RC_MP_ARRAY:
        case RC_MP_MAP:
            cr_assert_eq(it.v.n, (uint32_t)cases[i].ival, "case %zu", i);
            break;
        case RC_MP_FLOAT:
            cr_assert_float_eq(it.v.f, 1.0, 0);
            break;
        default:
            break;
        }
        /* every truncation fails */
        for (size_t cut = 0; cut < cases[i].len; cut++) {
            if (it.type == RC_MP_ARRAY || it.type == RC_MP_MAP)
                break; /* their elements are not part of the header */
            rc_mpr_init(&r, cases[i].bytes, cut);
            cr_assert_not(rc_mpr_next(&r, &it), "case %zu cut %zu", i, cut);
        }
    }
    uint8_t never = 0xc1;
    struct rc_mpr r;
    struct rc_mp_item it;
    rc_mpr_init(&r, &never, 1);
    cr_assert_not(rc_mpr_next(&r, &it));
}

Test(mpr, skip_of_huge_declared_counts_fails_fast)
{
    uint8_t m[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    struct rc_mpr r;
    rc_mpr_init(&r, m, sizeof m);
    cr_assert_not(rc_mpr_skip(&r));
    rc_mpr_init(&r, m, sizeof m);
    cr_assert_eq(rc_mpr_skip_depth(&r, 4), RC_MPR_BAD);
}

Test(mpr, depth_limit_clamped)
{
    struct rc_buf b;
    rc_buf_init(&b);
    for (int i = 0; i < 300; i++)
        rc_mpw_array(&b, 1);
    rc_mpw_nil(&b);
    struct rc_mpr r;
    rc_mpr_init(&r, b.data, b.len);
    cr_assert_eq(rc_mpr_skip_depth(&r, 100000), RC_MPR_DEEP);
    rc_mpr_init(&r, b.data, b.len);
    cr_assert(rc_mpr_skip(&r), "the plain skip has no depth limit");
    cr_assert_eq(rc_mpr_left(&r), 0);
    rc_buf_fini(&b);
}
