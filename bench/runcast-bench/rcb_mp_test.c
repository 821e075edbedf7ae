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

/* The encoder as it was first written (one padding byte at a time through
 * small appends): the faster one must produce the same bytes. */
static void ref_str(struct rc_buf *b, const char *s, size_t n)
{
    uint8_t h[5];
    size_t hl;
    if (n < 32) {
        h[0] = (uint8_t)(0xa0 | n);
        hl = 1;
    } else if (n < 256) {
        h[0] = 0xd9;
        h[1] = (uint8_t)n;
        hl = 2;
    } else if (n < 65536) {
        h[0] = 0xda;
        h[1] = (uint8_t)(n >> 8);
        h[2] = (uint8_t)n;
        hl = 3;
    } else {
        h[0] = 0xdb;
        h[1] = (uint8_t)(n >> 24);
        h[2] = (uint8_t)(n >> 16);
        h[3] = (uint8_t)(n >> 8);
        h[4] = (uint8_t)n;
        hl = 5;
    }
    rc_buf_append(b, h, hl);
    rc_buf_append(b, s, n);
}

static void ref_u64(struct rc_buf *b, uint64_t v)
{
    uint8_t t[9] = {0xcf};
    for (int i = 0; i < 8; i++)
        t[1 + i] = (uint8_t)(v >> (8 * (7 - i)));
    rc_buf_append(b, t, 9);
}

static void ref_encode(struct rc_buf *b, const char *run, const char *type, uint64_t t_ns,
                       uint64_t k, uint32_t size)
{
    static const char pad_chars[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ";
    size_t start = b->len;
    rc_buf_append(b, "\x84", 1);
    ref_str(b, "run", 3);
    ref_str(b, run, strlen(run));
    ref_str(b, "type", 4);
    ref_str(b, type, strlen(type));
    ref_str(b, "data", 4);
    rc_buf_append(b, "\x92", 1);
    ref_u64(b, t_ns);
    ref_u64(b, k);
    ref_str(b, "text", 4);
    size_t used = b->len - start;
    size_t want = size > used + 1 ? size - used : 1;
    size_t n = want <= 32 ? want - 1 : want <= 257 ? want - 2 : want - 3;
    if (want > 32 && want <= 33)
        n = 31;
    char pad[4096];
    if (n > sizeof(pad))
        n = sizeof(pad);
    for (size_t i = 0; i < n; i++)
        pad[i] = pad_chars[(k + i) % (sizeof(pad_chars) - 1)];
    ref_str(b, pad, n);
}

Test(mp, event_encoding_matches_the_byte_at_a_time_reference)
{
    static const char *runs[] = {
        "r", "run-1", "babcdef-raw1-12345", "a-run-id-of-forty-bytes-0123456789abcdef",
        "0123456789012345678901234567890123456789012345678901234567890123456789"
        "012345678901234567890123456789012345678901234567890123456789"};
    static const uint64_t ks[] = {0, 1, 62, 63, 64, 125, 126, 1000003, (1ull << 40) + 7};
    struct rc_buf a, b;
    rc_buf_init(&a);
    rc_buf_init(&b);
    for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++)
        for (size_t q = 0; q < sizeof(ks) / sizeof(ks[0]); q++)
            for (uint32_t size = 1; size <= 5000; size += size < 300 ? 1 : 97) {
                rc_buf_reset(&a);
                rc_buf_reset(&b);
                rcb_ev_encode(&a, runs[r], "delta", 0x0102030405060708ull + size, ks[q], size);
                ref_encode(&b, runs[r], "delta", 0x0102030405060708ull + size, ks[q], size);
                cr_assert_eq(a.len, b.len, "run %zu k %zu size %u", r, q, size);
                cr_assert(memcmp(a.data, b.data, a.len) == 0, "run %zu k %zu size %u", r, q, size);
            }
    /* appends after what the buffer held */
    rc_buf_reset(&a);
    rc_buf_reset(&b);
    rc_buf_append(&a, "xy", 2);
    rc_buf_append(&b, "xy", 2);
    rcb_ev_encode(&a, "run-1", "complete", 5, 6, 200);
    ref_encode(&b, "run-1", "complete", 5, 6, 200);
    cr_assert_eq(a.len, b.len);
    cr_assert(memcmp(a.data, b.data, a.len) == 0);
    rc_buf_fini(&a);
    rc_buf_fini(&b);
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
