/*
 * libFuzzer target: JSON -> msgpack (rc_json_to_msgpack), and msgpack ->
 * JSON on the same bytes.  Accepted JSON must survive
 * JSON -> msgpack -> JSON -> msgpack unchanged (integers exact, floats
 * printed with 17 digits, key order kept); any msgpack we convert to JSON
 * must be JSON that jansson parses.
 */
#include <jansson.h>
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
    /* the same bytes as msgpack: whatever we write must be valid JSON that
     * jansson reads back (duplicate keys are possible: stringified keys) */
    rc_buf_reset(&js);
    if (rc_json_from_msgpack(data, size, &js) == 0) {
        json_error_t jerr;
        json_t *v =
            json_loadb((const char *)js.data, js.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        /* jansson refuses \u0000 in object keys (valid JSON, its own limit) */
        if (v == NULL && strstr(jerr.text, "NUL byte in object key") == NULL)
            abort();
        json_decref(v);
    }
    rc_buf_fini(&mp);
    rc_buf_fini(&js);
    rc_buf_fini(&mp2);
    return 0;
}
