/*
 * Unit tests of rcb_mp, runcast-bench's msgpack writer and receive-path
 * reader: event sizes, the server-message parser over single maps, arrays
 * of coalesced messages, values split across reads, and garbage.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "rcb.h"

struct seen {
    int n, ev, hello, ok, err;
    uint64_t last_t, last_seq, idle_ms, last_k;
    bool synthetic;
    char run[64], type[32], msg[64];
};

static void cb(void *arg, const struct rcb_msg *m)
{
    struct seen *s = arg;
    s->n++;
    if (m->op == 'e') {
        s->ev++;
        s->last_t = m->has_t ? m->t_ns : 0;
        s->last_k = m->has_k ? m->k : UINT64_MAX;
        s->last_seq = m->seq;
        s->synthetic = m->synthetic;
        s->idle_ms = m->idle_ms;
        snprintf(s->run, sizeof(s->run), "%.*s", (int)m->run_len, m->run);
        snprintf(s->type, sizeof(s->type), "%.*s", (int)m->type_len, m->type);
    } else if (m->op == 'h') {
        s->hello++;
    } else if (m->op == 'o') {
        s->ok++;
    } else if (m->op == 'x') {
        s->err++;
        snprintf(s->msg, sizeof(s->msg), "%.*s", (int)m->msg_len, m->msg);
    }
}

Test(mp, event_has_requested_size_and_skips_whole)
{
    for (uint32_t size = 64; size <= 4000; size += 37) {
        struct rc_buf b;
        rc_buf_init(&b);
        rcb_ev_encode(&b, "run-1", "delta", 123456789012345ull, 7, size);
        cr_assert_leq(b.len > size ? b.len - size : size - b.len, 1, "size %u gave %zu", size,
                      b.len);
        struct rcb_mp r = {b.data, b.data + b.len};
        cr_assert(rcb_mp_skip(&r));
        cr_assert_eq(r.p, b.data + b.len);
        rc_buf_fini(&b);
    }
}

Test(mp, server_ev_fields_are_read)
{
    struct rc_buf b;
    rc_buf_init(&b);
    rcb_ev_encode_server(&b, "r-42", 9, 987654321ull, 200);
    struct seen s = {0};
    long used = rcb_parse_msgs(b.data, b.len, cb, &s);
    cr_assert_eq(used, (long)b.len);
    cr_assert_eq(s.ev, 1);
    cr_assert_str_eq(s.run, "r-42");
    cr_assert_str_eq(s.type, "delta");
    cr_assert_eq(s.last_seq, 9);
    cr_assert_eq(s.last_t, 987654321ull);
    cr_assert_eq(s.last_k, 9);
    cr_assert_not(s.synthetic);
    rc_buf_fini(&b);
}

Test(mp, coalesced_array_and_split_reads)
{
    struct rc_buf b;
    rc_buf_init(&b);
    /* frame 1: hello; frame 2: array of 3 evs; frame 3: ok */
    static const uint8_t hello[] = {0x81, 0xa2, 'o', 'p', 0xa5, 'h', 'e', 'l', 'l', 'o'};
    rc_buf_append(&b, hello, sizeof(hello));
    rcb_array_header(&b, 3);
    for (int i = 1; i <= 3; i++)
        rcb_ev_encode_server(&b, "r", (uint64_t)i, 1000u + (uint64_t)i, 120);
    static const uint8_t ok[] = {0x81, 0xa2, 'o', 'p', 0xa2, 'o', 'k'};
    rc_buf_append(&b, ok, sizeof(ok));
    /* feed it in every split: a partial value must wait */
    for (size_t cut = 1; cut < b.len; cut += 7) {
        struct seen s = {0};
        long u1 = rcb_parse_msgs(b.data, cut, cb, &s);
        cr_assert_geq(u1, 0);
        cr_assert_leq((size_t)u1, cut);
        long u2 = rcb_parse_msgs(b.data + u1, b.len - (size_t)u1, cb, &s);
        cr_assert_eq((size_t)(u1 + u2), b.len);
        cr_assert_eq(s.hello, 1);
        cr_assert_eq(s.ev, 3, "cut %zu", cut);
        cr_assert_eq(s.ok, 1);
        cr_assert_eq(s.last_seq, 3);
        cr_assert_eq(s.last_t, 1003);
    }
    rc_buf_fini(&b);
}

Test(mp, synthetic_terminal_and_err)
{
    /* {op: ev, run: "x-7", type: "error", synthetic: true, data: {idle_ms: 10012, last_seq: 1}} */
    static const uint8_t ev[] = {
        0x85, 0xa2, 'o', 'p',  0xa2, 'e',  'v',  0xa3, 'r', 'u', 'n',  0xa3, 'x', '-', '7', 0xa4,
        't',  'y',  'p', 'e',  0xa5, 'e',  'r',  'r',  'o', 'r', 0xa9, 's',  'y', 'n', 't', 'h',
        'e',  't',  'i', 'c',  0xc3, 0xa4, 'd',  'a',  't', 'a', 0x82, 0xa7, 'i', 'd', 'l', 'e',
        '_',  'm',  's', 0xcd, 0x27, 0x1c, 0xa8, 'l',  'a', 's', 't',  '_',  's', 'e', 'q', 0x01};
    struct seen s = {0};
    cr_assert_eq(rcb_parse_msgs(ev, sizeof(ev), cb, &s), (long)sizeof(ev));
    cr_assert_eq(s.ev, 1);
    cr_assert(s.synthetic);
    cr_assert_eq(s.idle_ms, 10012);
    cr_assert_str_eq(s.type, "error");
    static const uint8_t err[] = {0x82, 0xa2, 'o', 'p', 0xa3, 'e', 'r',  'r', 0xa7, 'm',
                                  'e',  's',  's', 'a', 'g',  'e', 0xa3, 'b', 'a',  'd'};
    cr_assert_eq(rcb_parse_msgs(err, sizeof(err), cb, &s), (long)sizeof(err));
    cr_assert_eq(s.err, 1);
    cr_assert_str_eq(s.msg, "bad");
}

Test(mp, garbage_is_reported)
{
    static const uint8_t bad[] = {0xc1, 0x00};
    struct seen s = {0};
    cr_assert_eq(rcb_parse_msgs(bad, sizeof(bad), cb, &s), -1);
    cr_assert_eq(s.n, 0);
}
