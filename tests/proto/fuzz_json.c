/*
 * libFuzzer target: JSON -> msgpack (rc_json_to_msgpack), and msgpack ->
 * JSON on the same bytes.  Accepted JSON must survive
 * JSON -> msgpack -> JSON -> msgpack unchanged (integers exact, floats
 * printed with 17 digits, key order kept).
 */
#include <stdlib.h>
#include <string.h>

#include "rc_json.h"
#include "rc_mpr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rc_buf mp, js, mp2;
    rc_buf_init(&mp);
    rc_buf_init(&js);
    rc_buf_init(&mp2);
    if (rc_json_to_msgpack((const char *)data, size, &mp) == 0) {
        struct rc_mpr r;
        rc_mpr_init(&r, mp.data, mp.len);
        if (!rc_mpr_skip(&r) || rc_mpr_left(&r) != 0)
            abort();
        if (rc_json_from_msgpack(mp.data, mp.len, &js) != 0)
            abort();
        if (rc_json_to_msgpack((const char *)js.data, js.len, &mp2) != 0)
            abort();
        if (mp.len != mp2.len || memcmp(mp.data, mp2.data, mp.len) != 0)
            abort();
    }
    /* the same bytes as msgpack */
    rc_buf_reset(&js);
    (void)rc_json_from_msgpack(data, size, &js);
    rc_buf_fini(&mp);
    rc_buf_fini(&js);
    rc_buf_fini(&mp2);
    return 0;
}
