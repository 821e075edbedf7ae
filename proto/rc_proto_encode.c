/*
 * rc_proto encoders: every broker -> subscriber message and the publisher
 * ack.  Each encoder appends one msgpack map to the buffer; on failure the
 * buffer is restored to its length before the call.
 */
#include "rc_proto.h"
#include "rc_error.h"
#include "rc_mpw_put.h"

#include <string.h>

/* Keys are string literals: their length is known at compile time. */
#define KEY(b, lit) rc_mpw_str((b), (lit), sizeof(lit) - 1)

/* Runs the statement list, stopping at the first failure. */
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        if ((rv = (expr)) != RC_OK)                                                                \
            goto fail;                                                                             \
    } while (0)

static inline int put_str(struct rc_buf *b, struct rc_str s)
{
    return rc_mpw_str(b, s.ptr, s.len);
}

/* Sizes of the encodings rc_mpw_put.h writes, for exact allocations;
 * branch-free (comparisons summed), as the widths vary per event. */
static inline size_t size_uint(uint64_t v)
{
    /* 1, 2 (cc), 3 (cd), 5 (ce), 9 (cf) */
    return 1 + (size_t)(v > 0x7f) + (size_t)(v > 0xff) + 2 * (size_t)(v > 0xffff) +
           4 * (size_t)(v > 0xffffffffu);
}

static inline size_t size_int(int64_t v)
{
    if (v >= 0)
        return size_uint((uint64_t)v);
    /* 1 (negative fixint), 2 (d0), 3 (d1), 5 (d2), 9 (d3) */
    return 1 + (size_t)(v < -32) + (size_t)(v < INT8_MIN) + 2 * (size_t)(v < INT16_MIN) +
           4 * (size_t)(v < INT32_MIN);
}

static inline size_t size_str(uint32_t n)
{
    /* header 1 (fixstr), 2 (d9), 3 (da), 5 (db) */
    return (size_t)n + 1 + (size_t)(n > 31) + (size_t)(n > 0xff) + 2 * (size_t)(n > 0xffff);
}

static inline uint32_t ev_pairs(const struct rc_event *ev, const struct rc_ev_meta *m,
                                struct rc_str conv)
{
    uint32_t n = 6; /* op run epoch seq type ts, then the optional keys */
    n += conv.len > 0;
    n += ev->phase.len > 0;
    n += ev->has_ts;
    n += ev->id_raw.len > 0;
    n += ev->has_text;
    n += ev->tool_raw.len > 0;
    n += ev->item_raw.len > 0;
    n += ev->data_raw.len > 0;
    n += ev->error_raw.len > 0;
    n += m->synthetic;
    return n;
}

/* Each term below mirrors one write of rc_proto_put_ev, in the same order;
 * test_proto_encode checks the two agree for every optional key. */
size_t rc_proto_ev_size(const struct rc_event *ev, const struct rc_ev_meta *m)
{
    struct rc_str conv = m->conv.len ? m->conv : ev->conv;
    size_t z = ev_pairs(ev, m, conv) < 16 ? 1 : 3; /* fixmap, or map16 for 16 pairs */
    z += 3 + 3 + 4 + size_str(ev->run.len);        /* "op" "ev" "run" run */
    if (conv.len > 0)
        z += 5 + size_str(conv.len);
    z += 6 + size_uint(m->epoch);
    z += 4 + size_uint(m->seq);
    z += 5 + size_str(ev->type_name.len);
    if (ev->phase.len > 0)
        z += 6 + size_str(ev->phase.len);
    z += 3 + size_int(m->ts);
    if (ev->has_ts)
        z += 4 + size_int(ev->ts);
    if (ev->id_raw.len > 0)
        z += 3 + ev->id_raw.len;
    if (ev->has_text)
        z += 5 + size_str(ev->text.len);
    if (ev->tool_raw.len > 0)
        z += 5 + ev->tool_raw.len;
    if (ev->item_raw.len > 0)
        z += 5 + ev->item_raw.len;
    if (ev->data_raw.len > 0)
        z += 5 + ev->data_raw.len;
    if (ev->error_raw.len > 0)
        z += 6 + ev->error_raw.len;
    if (m->synthetic)
        z += 11;
    return z;
}

size_t rc_proto_ev_bound(const struct rc_event *ev, const struct rc_ev_meta *m)
{
    struct rc_str conv = m->conv.len ? m->conv : ev->conv;
    /* 16 keys of at most 10 bytes, 16 headers or integers of at most 9 */
    return 16 * 10 + 16 * RC_MPW_PUT_MAX + (size_t)ev->run.len + conv.len + ev->type_name.len +
           ev->phase.len + ev->id_raw.len + ev->text.len + ev->tool_raw.len + ev->item_raw.len +
           ev->data_raw.len + ev->error_raw.len;
}

/*
 * The hot encoder: unchecked writes into memory the caller sized with
 * rc_proto_ev_size.  Keys are pre-encoded literals; raw fields are copied.
 */
uint8_t *rc_proto_put_ev(uint8_t *p, const struct rc_event *ev, const struct rc_ev_meta *m)
{
    struct rc_str conv = m->conv.len ? m->conv : ev->conv;
    /* The pairs are counted as they are written and the header goes in
     * front at the end: a fixmap, unless all 16 keys are there. */
    uint8_t *head = p;
    uint32_t n = 6; /* op run epoch seq type ts */
    p = RC_PUT_LIT(p + 1, "\xa2"
                          "op"
                          "\xa2"
                          "ev"
                          "\xa3"
                          "run");
    p = rc_put_str(p, ev->run.ptr, ev->run.len);
    if (conv.len > 0) {
        n++;
        p = RC_PUT_LIT(p, "\xa4"
                          "conv");
        p = rc_put_str(p, conv.ptr, conv.len);
    }
    p = RC_PUT_LIT(p, "\xa5"
                      "epoch");
    p = rc_put_uint(p, m->epoch);
    p = RC_PUT_LIT(p, "\xa3"
                      "seq");
    p = rc_put_uint(p, m->seq);
    p = RC_PUT_LIT(p, "\xa4"
                      "type");
    p = rc_put_str(p, ev->type_name.ptr, ev->type_name.len);
    if (ev->phase.len > 0) {
        n++;
        p = RC_PUT_LIT(p, "\xa5"
                          "phase");
        p = rc_put_str(p, ev->phase.ptr, ev->phase.len);
    }
    p = RC_PUT_LIT(p, "\xa2"
                      "ts");
    p = rc_put_int(p, m->ts);
    if (ev->has_ts) {
        n++;
        p = RC_PUT_LIT(p, "\xa3"
                          "pts");
        p = rc_put_int(p, ev->ts);
    }
    if (ev->id_raw.len > 0) {
        n++;
        p = RC_PUT_LIT(p, "\xa2"
                          "id");
        p = rc_put_raw(p, ev->id_raw.ptr, ev->id_raw.len);
    }
    if (ev->has_text) {
        n++;
        p = RC_PUT_LIT(p, "\xa4"
                          "text");
        p = rc_put_str(p, ev->text.ptr, ev->text.len);
    }
    if (ev->tool_raw.len > 0) {
        n++;
        p = RC_PUT_LIT(p, "\xa4"
                          "tool");
        p = rc_put_raw(p, ev->tool_raw.ptr, ev->tool_raw.len);
    }
    if (ev->item_raw.len > 0) {
        n++;
        p = RC_PUT_LIT(p, "\xa4"
                          "item");
        p = rc_put_raw(p, ev->item_raw.ptr, ev->item_raw.len);
    }
    if (ev->data_raw.len > 0) {
        n++;
        p = RC_PUT_LIT(p, "\xa4"
                          "data");
        p = rc_put_raw(p, ev->data_raw.ptr, ev->data_raw.len);
    }
    if (ev->error_raw.len > 0) {
        n++;
        p = RC_PUT_LIT(p, "\xa5"
                          "error");
        p = rc_put_raw(p, ev->error_raw.ptr, ev->error_raw.len);
    }
    if (m->synthetic) {
        n++;
        p = RC_PUT_LIT(p, "\xa9"
                          "synthetic"
                          "\xc3");
    }
    if (n < 16) {
        *head = (uint8_t)(0x80 | n);
        return p;
    }
    /* every key: a map16 header, two bytes longer (rc_proto_ev_size
     * counted them) */
    memmove(head + 3, head + 1, (size_t)(p - head - 1));
    rc_put_map(head, n);
    return p + 2;
}

int rc_proto_encode_ev(struct rc_buf *out, const struct rc_event *ev, const struct rc_ev_meta *m)
{
    int rv = rc_buf_reserve(out, rc_proto_ev_size(ev, m));
    if (rv != RC_OK)
        return rv;
    uint8_t *p = rc_proto_put_ev(out->data + out->len, ev, m);
    out->len = (size_t)(p - out->data);
    return RC_OK;
}

int rc_proto_encode_snap(struct rc_buf *out, const struct rc_proto_snap *s)
{
    size_t mark = out->len;
    int rv;
    /* op run epoch seq status phases created_at last_event_at thinking output
     * tools verification, then the optional keys */
    uint32_t n = 12;
    n += s->conv.len > 0;
    n += s->phase.len > 0;
    n += s->started_at != 0;
    n += s->ended_at != 0;
    n += s->terminal_raw.len > 0;
    n += s->truncated;
    TRY(rc_mpw_map(out, n));
    TRY(KEY(out, "op"));
    TRY(KEY(out, "snap"));
    TRY(KEY(out, "run"));
    TRY(put_str(out, s->run));
    if (s->conv.len > 0) {
        TRY(KEY(out, "conv"));
        TRY(put_str(out, s->conv));
    }
    TRY(KEY(out, "epoch"));
    TRY(rc_mpw_uint(out, s->epoch));
    TRY(KEY(out, "seq"));
    TRY(rc_mpw_uint(out, s->seq));
    TRY(KEY(out, "status"));
    TRY(rc_mpw_cstr(out, rc_run_status_name(s->status)));
    if (s->phase.len > 0) {
        TRY(KEY(out, "phase"));
        TRY(put_str(out, s->phase));
    }
    TRY(KEY(out, "phases"));
    TRY(rc_mpw_array(out, s->n_phases));
    for (uint32_t i = 0; i < s->n_phases; i++) {
        TRY(rc_mpw_map(out, 2));
        TRY(KEY(out, "phase"));
        TRY(put_str(out, s->phases[i].phase));
        TRY(KEY(out, "at"));
        TRY(rc_mpw_int(out, s->phases[i].at));
    }
    TRY(KEY(out, "created_at"));
    TRY(rc_mpw_int(out, s->created_at));
    if (s->started_at != 0) {
        TRY(KEY(out, "started_at"));
        TRY(rc_mpw_int(out, s->started_at));
    }
    TRY(KEY(out, "last_event_at"));
    TRY(rc_mpw_int(out, s->last_event_at));
    if (s->ended_at != 0) {
        TRY(KEY(out, "ended_at"));
        TRY(rc_mpw_int(out, s->ended_at));
    }
    TRY(KEY(out, "thinking"));
    TRY(put_str(out, s->thinking));
    TRY(KEY(out, "output"));
    TRY(put_str(out, s->output));
    TRY(KEY(out, "tools"));
    TRY(rc_mpw_array(out, s->n_tools));
    for (uint32_t i = 0; i < s->n_tools; i++)
        TRY(rc_mpw_raw(out, s->tools[i].ptr, s->tools[i].len));
    TRY(KEY(out, "verification"));
    TRY(rc_mpw_array(out, s->n_verification));
    for (uint32_t i = 0; i < s->n_verification; i++)
        TRY(rc_mpw_raw(out, s->verification[i].ptr, s->verification[i].len));
    if (s->terminal_raw.len > 0) {
        TRY(KEY(out, "terminal"));
        TRY(rc_mpw_raw(out, s->terminal_raw.ptr, s->terminal_raw.len));
    }
    if (s->truncated) {
        TRY(KEY(out, "truncated"));
        TRY(rc_mpw_bool(out, true));
    }
    return RC_OK;
fail:
    out->len = mark;
    return rv;
}

int rc_proto_encode_gap(struct rc_buf *out, struct rc_str run, uint64_t from, uint64_t to)
{
    size_t mark = out->len;
    int rv;
    TRY(rc_mpw_map(out, 4));
    TRY(KEY(out, "op"));
    TRY(KEY(out, "gap"));
    TRY(KEY(out, "run"));
    TRY(put_str(out, run));
    TRY(KEY(out, "from"));
    TRY(rc_mpw_uint(out, from));
    TRY(KEY(out, "to"));
    TRY(rc_mpw_uint(out, to));
    return RC_OK;
fail:
    out->len = mark;
    return rv;
}

int rc_proto_encode_hello(struct rc_buf *out, uint64_t epoch, const char *server, uint32_t hb_ms)
{
    size_t mark = out->len;
    int rv;
    TRY(rc_mpw_map(out, 5));
    TRY(KEY(out, "op"));
    TRY(KEY(out, "hello"));
    TRY(KEY(out, "epoch"));
    TRY(rc_mpw_uint(out, epoch));
    TRY(KEY(out, "server"));
    TRY(rc_mpw_cstr(out, server ? server : ""));
    TRY(KEY(out, "hb_ms"));
    TRY(rc_mpw_uint(out, hb_ms));
    TRY(KEY(out, "proto"));
    TRY(rc_mpw_uint(out, 1));
    return RC_OK;
fail:
    out->len = mark;
    return rv;
}

/* {op: <op>, req?} */
static int encode_op_req(struct rc_buf *out, const char *op, size_t oplen, struct rc_str req_raw)
{
    size_t mark = out->len;
    int rv;
    TRY(rc_mpw_map(out, req_raw.len > 0 ? 2 : 1));
    TRY(KEY(out, "op"));
    TRY(rc_mpw_str(out, op, oplen));
    if (req_raw.len > 0) {
        TRY(KEY(out, "req"));
        TRY(rc_mpw_raw(out, req_raw.ptr, req_raw.len));
    }
    return RC_OK;
fail:
    out->len = mark;
    return rv;
}

int rc_proto_encode_ok(struct rc_buf *out, struct rc_str req_raw)
{
    return encode_op_req(out, "ok", 2, req_raw);
}

int rc_proto_encode_pong(struct rc_buf *out, struct rc_str req_raw)
{
    return encode_op_req(out, "pong", 4, req_raw);
}

int rc_proto_encode_err_field(struct rc_buf *out, enum rc_proto_code code, const char *field,
                              const char *message, struct rc_str req_raw)
{
    size_t mark = out->len;
    int rv;
    if (message == NULL)
        message = rc_proto_code_describe(code);
    TRY(rc_mpw_map(out, 3 + (field != NULL) + (req_raw.len > 0)));
    TRY(KEY(out, "op"));
    TRY(KEY(out, "err"));
    TRY(KEY(out, "code"));
    TRY(rc_mpw_cstr(out, rc_proto_code_name(code)));
    TRY(KEY(out, "message"));
    TRY(rc_mpw_cstr(out, message));
    if (field != NULL) {
        TRY(KEY(out, "field"));
        TRY(rc_mpw_cstr(out, field));
    }
    if (req_raw.len > 0) {
        TRY(KEY(out, "req"));
        TRY(rc_mpw_raw(out, req_raw.ptr, req_raw.len));
    }
    return RC_OK;
fail:
    out->len = mark;
    return rv;
}

int rc_proto_encode_err(struct rc_buf *out, enum rc_proto_code code, const char *message,
                        struct rc_str req_raw)
{
    return rc_proto_encode_err_field(out, code, NULL, message, req_raw);
}

int rc_proto_encode_hb(struct rc_buf *out, int64_t ts)
{
    size_t mark = out->len;
    int rv;
    TRY(rc_mpw_map(out, 2));
    TRY(KEY(out, "op"));
    TRY(KEY(out, "hb"));
    TRY(KEY(out, "ts"));
    TRY(rc_mpw_int(out, ts));
    return RC_OK;
fail:
    out->len = mark;
    return rv;
}

int rc_proto_encode_array_header(struct rc_buf *out, uint32_t n)
{
    return rc_mpw_array(out, n);
}

int rc_proto_encode_ack(struct rc_buf *out, uint64_t epoch, const struct rc_proto_ack_result *r,
                        uint32_t n)
{
    size_t mark = out->len;
    int rv;
    bool all_ok = true;
    for (uint32_t i = 0; i < n; i++)
        all_ok = all_ok && r[i].code == RC_PROTO_OK;
    TRY(rc_mpw_map(out, 3));
    TRY(KEY(out, "ok"));
    TRY(rc_mpw_bool(out, all_ok));
    TRY(KEY(out, "epoch"));
    TRY(rc_mpw_uint(out, epoch));
    TRY(KEY(out, "results"));
    TRY(rc_mpw_array(out, n));
    for (uint32_t i = 0; i < n; i++) {
        if (r[i].code == RC_PROTO_OK) {
            TRY(rc_mpw_map(out, r[i].dup ? 2 : 1));
            TRY(KEY(out, "seq"));
            TRY(rc_mpw_uint(out, r[i].seq));
            if (r[i].dup) {
                TRY(KEY(out, "dup"));
                TRY(rc_mpw_bool(out, true));
            }
            continue;
        }
        const char *msg = r[i].message ? r[i].message : rc_proto_code_describe(r[i].code);
        TRY(rc_mpw_map(out, 1));
        TRY(KEY(out, "error"));
        TRY(rc_mpw_map(out, r[i].field ? 3 : 2));
        TRY(KEY(out, "code"));
        TRY(rc_mpw_cstr(out, rc_proto_code_name(r[i].code)));
        TRY(KEY(out, "message"));
        TRY(rc_mpw_cstr(out, msg));
        if (r[i].field) {
            TRY(KEY(out, "field"));
            TRY(rc_mpw_cstr(out, r[i].field));
        }
    }
    return RC_OK;
fail:
    out->len = mark;
    return rv;
}
