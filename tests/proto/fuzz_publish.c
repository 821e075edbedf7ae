/*
 * libFuzzer target: the publish decoder (rc_proto_decode_publish).
 *
 * Beyond "no crash, leak or hang" it checks invariants: an element is
 * reported exactly once and in order; the envelope agrees with msgpack-c
 * (when we accept the bytes as one value, msgpack-c unpacks the same number
 * of bytes, unless it hits its compile-time nesting cap); every accepted
 * event, encoded as an `ev`, decodes again as a valid event with the same
 * raw payloads; the one-pass variant (RC_PROTO_DECODE_ONE_PASS) agrees on
 * the result, the count and the elements' codes; the event decoder's fast
 * path never accepts what its general path rejects, and when it accepts,
 * the two give the same rc_event field by field (rc_proto_test.h).
 */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "rc_mpr.h"
#include "rc_proto.h"
#include "rc_proto_test.h"

#define MAXCODES 64 /* = lim.batch_max_events below */

struct ctx {
    uint32_t next;
    uint8_t codes[MAXCODES]; /* per element: its code */
    struct rc_buf out;
    struct rc_proto_limits big;
};

static void check_cb(void *arg, uint32_t index, const struct rc_event *ev,
                     const struct rc_proto_error *err)
{
    struct ctx *c = arg;
    if (index != c->next++ || (ev == NULL) == (err == NULL))
        abort();
    if (index < MAXCODES)
        c->codes[index] = ev ? RC_PROTO_OK : (uint8_t)err->code;
    if (ev == NULL) {
        if (err->code == RC_PROTO_OK || err->code >= RC_PROTO_CODE_COUNT)
            abort();
        return;
    }
    rc_buf_reset(&c->out);
    struct rc_ev_meta m = {
        .epoch = 3, .seq = index + 1, .ts = 1700000000000, .synthetic = index & 1};
    if (rc_proto_encode_ev(&c->out, ev, &m) != 0)
        abort();
    struct rc_event back;
    struct rc_proto_error e2;
    if (rc_proto_decode_event(c->out.data, c->out.len, &c->big, &back, &e2) != RC_PROTO_OK)
        abort();
    if (back.data_raw.len != ev->data_raw.len ||
        (ev->data_raw.len > 0 && memcmp(back.data_raw.ptr, ev->data_raw.ptr, ev->data_raw.len)))
        abort();
    if (back.tool_raw.len != ev->tool_raw.len || back.run.len != ev->run.len ||
        back.type != ev->type || back.has_text != ev->has_text)
        abort();
}

static bool str_same(struct rc_str a, struct rc_str b)
{
    return a.ptr == b.ptr && a.len == b.len;
}

static bool ev_same(const struct rc_event *a, const struct rc_event *b)
{
    if (!str_same(a->raw, b->raw) || !str_same(a->run, b->run) || !str_same(a->conv, b->conv) ||
        a->type != b->type || !str_same(a->type_name, b->type_name) ||
        !str_same(a->phase, b->phase) || !str_same(a->text, b->text) ||
        a->has_text != b->has_text || !str_same(a->id_raw, b->id_raw) || a->has_ts != b->has_ts ||
        a->ts != b->ts || !str_same(a->tool_raw, b->tool_raw) ||
        !str_same(a->tool_id_raw, b->tool_id_raw) || !str_same(a->item_raw, b->item_raw) ||
        !str_same(a->item_id_raw, b->item_id_raw) || !str_same(a->data_raw, b->data_raw) ||
        !str_same(a->error_raw, b->error_raw) || !str_same(a->error_code, b->error_code) ||
        !str_same(a->error_message, b->error_message) || a->n_timeouts != b->n_timeouts ||
        a->has_deadline != b->has_deadline || a->deadline_ms != b->deadline_ms ||
        a->id_is_uint != b->id_is_uint || a->id_uint != b->id_uint ||
        !str_same(a->id_str, b->id_str))
        return false;
    for (uint32_t i = 0; i < a->n_timeouts && i < 32; i++)
        if (!str_same(a->timeouts[i].phase, b->timeouts[i].phase) ||
            a->timeouts[i].ms != b->timeouts[i].ms)
            return false;
    return true;
}

/* The fast path against the general one on the bytes as one event. */
static void check_paths(const uint8_t *data, size_t size, const struct rc_proto_limits *lim)
{
    static struct rc_event fast, general; /* ~1 KiB each */
    size_t uf = 0, ug = 0;
    enum rc_proto_code cf =
        rc_proto_decode_event_path(data, size, lim, RC_PROTO_PATH_FAST, &fast, NULL, &uf);
    enum rc_proto_code cg =
        rc_proto_decode_event_path(data, size, lim, RC_PROTO_PATH_GENERAL, &general, NULL, &ug);
    if (cf != RC_PROTO_OK && cf != RC_PROTO_FAST_DECLINED)
        abort();
    if (cf == RC_PROTO_OK && (cg != RC_PROTO_OK || uf != ug || !ev_same(&fast, &general)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ctx c = {0};
    struct rc_proto_limits lim;
    rc_proto_limits_default(&lim);
    rc_proto_limits_default(&c.big);
    c.big.event_max_bytes = UINT32_MAX;
    /* small limits so that the fuzzer reaches them */
    lim.event_max_bytes = 4096;
    lim.batch_max_events = 64;
    lim.data_max_depth = 8;
    rc_buf_init(&c.out);
    uint32_t count = 0;
    bool batch = false;
    struct rc_proto_error err;
    enum rc_proto_code code =
        rc_proto_decode_publish(data, size, &lim, check_cb, &c, &count, &batch, &err);
    if (code == RC_PROTO_OK && c.next != count)
        abort();
    if (code != RC_PROTO_OK && c.next != 0)
        abort();

    /* the one-pass variant: same result and count; same elements when OK
     * (when not, what its callback saw is discarded by contract) */
    struct ctx c1 = {0};
    c1.big = c.big;
    rc_buf_init(&c1.out);
    uint32_t count1 = 0;
    bool batch1 = false;
    struct rc_proto_error err1;
    enum rc_proto_code code1 = rc_proto_decode_publish_ex(data, size, &lim, check_cb, &c1, &count1,
                                                          &batch1, &err1, RC_PROTO_DECODE_ONE_PASS);
    if (code1 != code || count1 != count || batch1 != batch || err1.code != err.code)
        abort();
    if (code == RC_PROTO_OK && (c1.next != c.next || memcmp(c1.codes, c.codes, sizeof(c.codes))))
        abort();
    rc_buf_fini(&c1.out);
    rc_buf_fini(&c.out);

    check_paths(data, size, &lim);
    {
        /* and on each element of a batch, with what follows it */
        struct rc_mpr ar;
        struct rc_mp_item top;
        rc_mpr_init(&ar, data, size);
        if (rc_mpr_next(&ar, &top) && top.type == RC_MP_ARRAY) {
            for (uint32_t i = 0; i < top.v.n && i < MAXCODES; i++) {
                check_paths(ar.p, rc_mpr_left(&ar), &lim);
                if (!rc_mpr_skip(&ar))
                    break;
            }
        }
    }

    /* differential check of the envelope against msgpack-c */
    struct rc_mpr r;
    rc_mpr_init(&r, data, size);
    bool ours = rc_mpr_skip(&r);
    if (ours) {
        size_t used = (size_t)(r.p - data);
        msgpack_unpacked u;
        size_t off = 0;
        msgpack_unpacked_init(&u);
        msgpack_unpack_return mr = msgpack_unpack_next(&u, (const char *)data, size, &off);
        if (mr == MSGPACK_UNPACK_SUCCESS && off != used)
            abort();
        if (mr != MSGPACK_UNPACK_SUCCESS && mr != MSGPACK_UNPACK_NOMEM_ERROR)
            abort(); /* NOMEM: msgpack-c's nesting cap of 32 */
        msgpack_unpacked_destroy(&u);
        if (code == RC_PROTO_MALFORMED && used == size)
            abort();
    }
    return 0;
}
