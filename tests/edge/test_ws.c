/* Unit tests of rc_ws: the RFC 6455 handshake key, frame headers and the
 * client frame parser (fragments, control frames, limits, violations). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "rc_buf.h"
#include "rc_error.h"
#include "rc_ws.h"
#include "ws_trace.h"

/* Builds one client frame into b, masked with mask (NULL: unmasked, which a
 * client must not send). */
static void client_frame_with(struct rc_buf *b, unsigned op, bool fin, const void *payload,
                              size_t len, unsigned rsv, const uint8_t mask[4])
{
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = (uint8_t)((fin ? 0x80 : 0) | (rsv << 4) | op);
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        h[hl++] = (uint8_t)(m | len);
    } else if (len <= 0xffff) {
        h[hl++] = m | 126;
        h[hl++] = (uint8_t)(len >> 8);
        h[hl++] = (uint8_t)len;
    } else {
        h[hl++] = m | 127;
        for (int i = 0; i < 8; i++)
            h[hl++] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    }
    if (mask) {
        memcpy(h + hl, mask, 4);
        hl += 4;
    }
    rc_buf_append(b, h, hl);
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = mask ? p[i] ^ mask[i & 3] : p[i];
        rc_buf_append(b, &c, 1);
    }
}

/* Builds one client frame into b, masked with a fixed key. */
static void client_frame(struct rc_buf *b, unsigned op, bool fin, const void *payload, size_t len,
                         unsigned rsv)
{
    static const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    client_frame_with(b, op, fin, payload, len, rsv, mask);
}

static void feed(struct rc_ws_parser *p, const void *data, size_t len)
{
    uint8_t *dst = rc_ws_parser_space(p, len);
    cr_assert_not_null(dst);
    memcpy(dst, data, len);
    rc_ws_parser_commit(p, len);
}

Test(ws, accept_key_matches_rfc6455_example)
{
    char out[29];
    cr_assert_eq(rc_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

Test(ws, accept_key_refuses_bad_keys)
{
    char out[29];
    cr_assert_eq(rc_ws_accept_key(NULL, out), RC_EINVAL);
    cr_assert_eq(rc_ws_accept_key("", out), RC_EINVAL);
    cr_assert_eq(rc_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=", out), RC_EINVAL);
    cr_assert_eq(rc_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ!=", out), RC_EINVAL);
    cr_assert_eq(rc_ws_accept_key("dGhlIHNhbXBsZSBub25j*Q==", out), RC_EINVAL);
    /* 22nd character with non-zero padding bits */
    cr_assert_eq(rc_ws_accept_key("dGhlIHNhbXBsZSBub25jZR==", out), RC_EINVAL);
}

Test(ws, frame_header_lengths)
{
    uint8_t h[10];
    cr_assert_eq(rc_ws_frame_header(h, RC_WS_OP_BINARY, true, 125), 2);
    cr_assert_eq(h[0], 0x82);
    cr_assert_eq(h[1], 125);
    cr_assert_eq(rc_ws_frame_header(h, RC_WS_OP_TEXT, true, 126), 4);
    cr_assert_eq(h[0], 0x81);
    cr_assert_eq(h[1], 126);
    cr_assert_eq(h[2], 0);
    cr_assert_eq(h[3], 126);
    cr_assert_eq(rc_ws_frame_header(h, RC_WS_OP_BINARY, false, 65536), 10);
    cr_assert_eq(h[0], 0x02);
    cr_assert_eq(h[1], 127);
    cr_assert_eq(h[7], 1);
    cr_assert_eq(h[8], 0);
}

Test(ws, close_frame_has_code_and_reason)
{
    struct rc_buf b;
    rc_buf_init(&b);
    cr_assert_eq(rc_ws_close_frame(&b, 4008, "slow"), 0);
    cr_assert_eq(b.len, 2 + 2 + 4);
    cr_assert_eq(b.data[0], 0x88);
    cr_assert_eq(b.data[1], 6);
    cr_assert_eq(b.data[2] << 8 | b.data[3], 4008);
    cr_assert_eq(memcmp(b.data + 4, "slow", 4), 0);
    rc_buf_fini(&b);
}

Test(ws, whole_message_fed_byte_by_byte)
{
    struct rc_ws_parser p;
    rc_ws_parser_init(&p, 1024);
    struct rc_buf b;
    rc_buf_init(&b);
    client_frame(&b, RC_WS_OP_BINARY, true, "hello", 5, 0);
    struct rc_ws_result r;
    for (size_t i = 0; i + 1 < b.len; i++) {
        feed(&p, b.data + i, 1);
        rc_ws_parser_next(&p, &r);
        cr_assert_eq(r.ev, RC_WS_EV_NONE, "byte %zu", i);
    }
    feed(&p, b.data + b.len - 1, 1);
    rc_ws_parser_next(&p, &r);
    cr_assert_eq(r.ev, RC_WS_EV_MESSAGE);
    cr_assert_eq(r.op, RC_WS_OP_BINARY);
    cr_assert_eq(r.len, 5);
    cr_assert_eq(memcmp(r.data, "hello", 5), 0);
    rc_ws_parser_next(&p, &r);
    cr_assert_eq(r.ev, RC_WS_EV_NONE);
    rc_buf_fini(&b);
    rc_ws_parser_fini(&p);
}

Test(ws, fragments_are_reassembled_around_a_ping)
{
    struct rc_ws_parser p;
    rc_ws_parser_init(&p, 1024);
    struct rc_buf b;
    rc_buf_init(&b);
    client_frame(&b, RC_WS_OP_TEXT, false, "ab", 2, 0);
    client_frame(&b, RC_WS_OP_PING, true, "p", 1, 0);
    client_frame(&b, RC_WS_OP_CONT, false, "cd", 2, 0);
    client_frame(&b, RC_WS_OP_CONT, true, "e", 1, 0);
    client_frame(&b, RC_WS_OP_BINARY, true, "z", 1, 0);
    feed(&p, b.data, b.len);
    struct rc_ws_result r;
    rc_ws_parser_next(&p, &r);
    cr_assert_eq(r.ev, RC_WS_EV_CONTROL);
    cr_assert_eq(r.op, RC_WS_OP_PING);
    cr_assert_eq(r.len, 1);
    cr_assert_eq(r.data[0], 'p');
    rc_ws_parser_next(&p, &r);
    cr_assert_eq(r.ev, RC_WS_EV_MESSAGE);
    cr_assert_eq(r.op, RC_WS_OP_TEXT);
    cr_assert_eq(r.len, 5);
    cr_assert_eq(memcmp(r.data, "abcde", 5), 0);
    rc_ws_parser_next(&p, &r);
    cr_assert_eq(r.ev, RC_WS_EV_MESSAGE);
    cr_assert_eq(r.len, 1);
    cr_assert_eq(r.data[0], 'z');
    rc_buf_fini(&b);
    rc_ws_parser_fini(&p);
}

Test(ws, oversize_message_is_skipped_and_parsing_goes_on)
{
    struct rc_ws_parser p;
    rc_ws_parser_init(&p, 100);
    struct rc_buf b;
    rc_buf_init(&b);
    char big[300];
    memset(big, 'x', sizeof(big));
    client_frame(&b, RC_WS_OP_BINARY, true, big, sizeof(big), 0);
    /* a fragmented message that grows over the limit in its 2nd fragment */
    client_frame(&b, RC_WS_OP_BINARY, false, big, 60, 0);
    client_frame(&b, RC_WS_OP_CONT, false, big, 60, 0);
    client_frame(&b, RC_WS_OP_CONT, true, big, 60, 0);
    client_frame(&b, RC_WS_OP_BINARY, true, "ok", 2, 0);
    /* feed in chunks of 7 bytes */
    struct rc_ws_result r;
    int too_big = 0, msgs = 0;
    for (size_t off = 0; off < b.len; off += 7) {
        size_t n = b.len - off < 7 ? b.len - off : 7;
        feed(&p, b.data + off, n);
        for (;;) {
            rc_ws_parser_next(&p, &r);
            if (r.ev == RC_WS_EV_NONE)
                break;
            cr_assert_neq(r.ev, RC_WS_EV_VIOLATION, "%s", r.reason);
            if (r.ev == RC_WS_EV_TOO_BIG)
                too_big++;
            if (r.ev == RC_WS_EV_MESSAGE) {
                msgs++;
                cr_assert_eq(r.len, 2);
                cr_assert_eq(memcmp(r.data, "ok", 2), 0);
            }
        }
    }
    cr_assert_eq(too_big, 2);
    cr_assert_eq(msgs, 1);
    rc_buf_fini(&b);
    rc_ws_parser_fini(&p);
}

static uint16_t violation_of(const struct rc_buf *b)
{
    struct rc_ws_parser p;
    rc_ws_parser_init(&p, 1024);
    feed(&p, b->data, b->len);
    struct rc_ws_result r;
    uint16_t code = 0;
    for (int i = 0; i < 10; i++) {
        rc_ws_parser_next(&p, &r);
        if (r.ev == RC_WS_EV_VIOLATION) {
            code = r.close_code;
            cr_assert_not_null(r.reason);
            break;
        }
        if (r.ev == RC_WS_EV_NONE)
            break;
    }
    rc_ws_parser_fini(&p);
    return code;
}

Test(ws, protocol_violations_close_with_1002)
{
    struct rc_buf b;
    rc_buf_init(&b);

    /* unmasked frame */
    uint8_t unmasked[] = {0x82, 0x01, 'x'};
    rc_buf_append(&b, unmasked, sizeof(unmasked));
    cr_assert_eq(violation_of(&b), RC_WS_CLOSE_PROTOCOL);

    rc_buf_reset(&b); /* reserved bits */
    client_frame(&b, RC_WS_OP_BINARY, true, "x", 1, 4);
    cr_assert_eq(violation_of(&b), RC_WS_CLOSE_PROTOCOL);

    rc_buf_reset(&b); /* continuation without a message */
    client_frame(&b, RC_WS_OP_CONT, true, "x", 1, 0);
    cr_assert_eq(violation_of(&b), RC_WS_CLOSE_PROTOCOL);

    rc_buf_reset(&b); /* new message inside a fragmented one */
    client_frame(&b, RC_WS_OP_BINARY, false, "x", 1, 0);
    client_frame(&b, RC_WS_OP_BINARY, true, "y", 1, 0);
    cr_assert_eq(violation_of(&b), RC_WS_CLOSE_PROTOCOL);

    rc_buf_reset(&b); /* fragmented control frame */
    client_frame(&b, RC_WS_OP_PING, false, "x", 1, 0);
    cr_assert_eq(violation_of(&b), RC_WS_CLOSE_PROTOCOL);

    rc_buf_reset(&b); /* unknown opcode */
    client_frame(&b, 0x3, true, "x", 1, 0);
    cr_assert_eq(violation_of(&b), RC_WS_CLOSE_PROTOCOL);

    rc_buf_reset(&b); /* non-minimal 16-bit length */
    uint8_t nm[] = {0x82, 0x80 | 126, 0, 5, 1, 2, 3, 4, 'a', 'b', 'c', 'd', 'e'};
    rc_buf_append(&b, nm, sizeof(nm));
    cr_assert_eq(violation_of(&b), RC_WS_CLOSE_PROTOCOL);

    rc_buf_reset(&b); /* close frame with a 1-byte body */
    client_frame(&b, RC_WS_OP_CLOSE, true, "x", 1, 0);
    cr_assert_eq(violation_of(&b), RC_WS_CLOSE_PROTOCOL);
    rc_buf_fini(&b);
}

Test(ws, close_frame_reports_the_peer_code)
{
    struct rc_ws_parser p;
    rc_ws_parser_init(&p, 1024);
    struct rc_buf b;
    rc_buf_init(&b);
    uint8_t body[] = {0x0f, 0xa0, 'b', 'y', 'e'}; /* 4000 */
    client_frame(&b, RC_WS_OP_CLOSE, true, body, sizeof(body), 0);
    client_frame(&b, RC_WS_OP_CLOSE, true, NULL, 0, 0);
    feed(&p, b.data, b.len);
    struct rc_ws_result r;
    rc_ws_parser_next(&p, &r);
    cr_assert_eq(r.ev, RC_WS_EV_CONTROL);
    cr_assert_eq(r.op, RC_WS_OP_CLOSE);
    cr_assert_eq(r.close_code, 4000);
    rc_ws_parser_next(&p, &r);
    cr_assert_eq(r.ev, RC_WS_EV_CONTROL);
    cr_assert_eq(r.close_code, RC_WS_CLOSE_NO_STATUS);
    rc_buf_fini(&b);
    rc_ws_parser_fini(&p);
}

Test(ws, large_16bit_and_64bit_lengths)
{
    struct rc_ws_parser p;
    rc_ws_parser_init(&p, 1 << 20);
    struct rc_buf b;
    rc_buf_init(&b);
    enum { BIG = 70000 };
    char *big = malloc(BIG);
    cr_assert_not_null(big);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (char)(i * 7);
    client_frame(&b, RC_WS_OP_BINARY, true, big, 300, 0);
    client_frame(&b, RC_WS_OP_BINARY, true, big, BIG, 0);
    feed(&p, b.data, b.len);
    struct rc_ws_result r;
    rc_ws_parser_next(&p, &r);
    cr_assert_eq(r.ev, RC_WS_EV_MESSAGE);
    cr_assert_eq(r.len, 300);
    cr_assert_eq(memcmp(r.data, big, 300), 0);
    rc_ws_parser_next(&p, &r);
    cr_assert_eq(r.ev, RC_WS_EV_MESSAGE);
    cr_assert_eq(r.len, BIG);
    cr_assert_eq(memcmp(r.data, big, BIG), 0);
    free(big);
    rc_buf_fini(&b);
    rc_ws_parser_fini(&p);
}

/* ---- where the stream is cut must not change what it means ---- */

/* A payload length around the edges of the 7-, 16- and 64-bit forms. */
static size_t random_len(uint64_t *s)
{
    static const size_t lens[] = {0, 1, 2, 5, 100, 124, 125, 126, 127, 128, 300, 1000};
    if (ws_trace_rand(s) % 64 == 0)
        return ws_trace_rand(s) % 2 ? 65535 : 65536 + ws_trace_rand(s) % 100;
    return lens[ws_trace_rand(s) % (sizeof(lens) / sizeof(lens[0]))];
}

/* One client frame of len letters (a close's first two bytes are code
 * 1000), masked with a random key, or (broken) unmasked. */
static void random_frame(struct rc_buf *b, uint64_t *s, unsigned op, bool fin, size_t len,
                         unsigned rsv, bool masked)
{
    uint8_t *payload = malloc(len + 1);
    cr_assert_not_null(payload);
    for (size_t i = 0; i < len; i++)
        payload[i] = (uint8_t)('a' + i % 26); /* valid UTF-8 for text frames */
    if (op == RC_WS_OP_CLOSE && len >= 2) {
        payload[0] = 0x03;
        payload[1] = 0xe8;
    }
    uint8_t mask[4];
    for (int i = 0; i < 4; i++)
        mask[i] = (uint8_t)ws_trace_rand(s);
    client_frame_with(b, op, fin, payload, len, rsv, masked ? mask : NULL);
    free(payload);
}

/* A random client stream: mostly well-formed frames (messages whole or in
 * fragments with pings between, pongs, a close now and then), sometimes a
 * broken one (reserved bits, a bad or misplaced opcode, a long or
 * fragmented control frame, no mask) or a few raw random bytes. */
static void random_stream(struct rc_buf *b, uint64_t *s)
{
    int frames = 1 + (int)(ws_trace_rand(s) % 10);
    bool open = false; /* a fragmented message is open */
    for (int i = 0; i < frames; i++) {
        uint64_t k = ws_trace_rand(s) % 100;
        if (k < 45) { /* data: whole, first fragment, or next fragment */
            unsigned op = open                   ? RC_WS_OP_CONT
                          : ws_trace_rand(s) % 2 ? RC_WS_OP_TEXT
                                                 : RC_WS_OP_BINARY;
            bool fin = ws_trace_rand(s) % 3 != 0;
            random_frame(b, s, op, fin, random_len(s), 0, true);
            open = !fin;
        } else if (k < 70) { /* ping or pong, also between fragments */
            random_frame(b, s, ws_trace_rand(s) % 2 ? RC_WS_OP_PING : RC_WS_OP_PONG, true,
                         ws_trace_rand(s) % 126, 0, true);
        } else if (k < 75) {
            random_frame(b, s, RC_WS_OP_CLOSE, true, 2 + ws_trace_rand(s) % 10, 0, true);
        } else if (k < 80) {
            random_frame(b, s, RC_WS_OP_BINARY, true, random_len(s), 1 + ws_trace_rand(s) % 7,
                         true);
        } else if (k < 84) {
            random_frame(b, s, 3 + ws_trace_rand(s) % 5, true, ws_trace_rand(s) % 10, 0,
                         true); /* reserved op */
        } else if (k < 88) {
            random_frame(b, s, RC_WS_OP_CONT, ws_trace_rand(s) % 2, ws_trace_rand(s) % 10, 0, true);
        } else if (k < 91) {
            random_frame(b, s, RC_WS_OP_PING, ws_trace_rand(s) % 2, 126 + ws_trace_rand(s) % 10, 0,
                         true);
        } else if (k < 94) {
            random_frame(b, s, RC_WS_OP_BINARY, true, ws_trace_rand(s) % 10, 0, false);
        } else {
            for (int j = (int)(ws_trace_rand(s) % 8); j >= 0; j--) {
                uint8_t c = (uint8_t)ws_trace_rand(s);
                rc_buf_append(b, &c, 1);
            }
        }
    }
}

Test(ws, any_cut_of_a_stream_gives_the_same_events)
{
    static const uint32_t limits[] = {16, 125, 1000, 65536};
    uint64_t s = 0x5eedf00dull;
    size_t seen[RC_WS_EV_VIOLATION + 1] = {0};
    struct rc_buf b;
    rc_buf_init(&b);
    for (int i = 0; i < 1500; i++) {
        rc_buf_reset(&b);
        random_stream(&b, &s);
        size_t cap = b.len + 1;
        struct ws_trace_ev *ref = malloc(cap * sizeof(*ref)), *got = malloc(cap * sizeof(*got));
        cr_assert(ref && got);
        for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
            size_t nref, ngot;
            const char *why =
                ws_trace_run(b.data, b.len, limits[l], WS_TRACE_WHOLE, ref, cap, &nref);
            cr_assert_null(why, "stream %d, limit %u, whole: %s", i, limits[l], why);
            for (size_t e = 0; e < nref; e++)
                seen[ref[e].ev]++;
            const uint64_t seeds[] = {WS_TRACE_BYTEWISE, 2 + ws_trace_rand(&s) % 1000,
                                      2 + ws_trace_rand(&s) % 1000};
            for (int c = 0; c < 3; c++) {
                why = ws_trace_run(b.data, b.len, limits[l], seeds[c], got, cap, &ngot);
                cr_assert_null(why, "stream %d, limit %u, cut %llu: %s", i, limits[l],
                               (unsigned long long)seeds[c], why);
                why = ws_trace_diff(ref, nref, got, ngot);
                cr_assert_null(why, "stream %d, limit %u, cut %llu against whole: %s", i, limits[l],
                               (unsigned long long)seeds[c], why);
            }
        }
        free(ref);
        free(got);
    }
    rc_buf_fini(&b);
    /* the streams reached every kind of event, so the comparison covered them */
    cr_assert_gt(seen[RC_WS_EV_MESSAGE], 0);
    cr_assert_gt(seen[RC_WS_EV_CONTROL], 0);
    cr_assert_gt(seen[RC_WS_EV_TOO_BIG], 0);
    cr_assert_gt(seen[RC_WS_EV_VIOLATION], 0);
}
