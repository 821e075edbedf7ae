/*
 * libFuzzer target: the subscriber frame decoder (rc_proto_decode_client).
 * Accepted frames must satisfy the decoder's promises (exactly one target,
 * since/epoch only where allowed, req small enough to echo), and the `err`
 * or `ok` reply that echoes req must be one valid msgpack value.
 */
#include <stdlib.h>
#include <string.h>

#include "rc_mpr.h"
#include "rc_proto.h"

static bool one_value(const struct rc_buf *b)
{
    struct rc_mpr r;
    rc_mpr_init(&r, b->data, b->len);
    return rc_mpr_skip(&r) && rc_mpr_left(&r) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rc_proto_limits lim;
    rc_proto_limits_default(&lim);
    lim.client_frame_max = 2048;
    struct rc_client_msg m;
    struct rc_proto_error err;
    enum rc_proto_code code = rc_proto_decode_client(data, size, &lim, &m, &err);
    if (err.code != code)
        abort();
    if (m.req_raw.len > RC_PROTO_REQ_MAX_BYTES)
        abort();
    struct rc_buf out;
    rc_buf_init(&out);
    if (code != RC_PROTO_OK) {
        if (rc_proto_encode_err_field(&out, code, err.field, err.reason, m.req_raw) != 0)
            abort();
    } else {
        if (m.op != RC_OP_PING) {
            if (m.kind == RC_SUB_ALL ? m.target.len != 0
                                     : !rc_proto_valid_id(m.target.ptr, m.target.len, 128))
                abort();
            if (m.since_map.len > 0) {
                uint64_t seq;
                struct rc_str probe = m.kind == RC_SUB_ALL ? (struct rc_str){"r", 1} : m.target;
                (void)rc_proto_since_lookup(m.since_map, probe, &seq);
            }
            if (m.op == RC_OP_UNSUB && (m.has_since || m.has_epoch || m.snapshot != -1))
                abort();
        }
        if (rc_proto_encode_ok(&out, m.req_raw) != 0)
            abort();
    }
    if (!one_value(&out))
        abort();
    rc_buf_fini(&out);
    return 0;
}
