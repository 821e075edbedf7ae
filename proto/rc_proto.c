/*
 * rc_proto: names, limits and the validation helpers shared by the decoders,
 * the broker and the client.
 */
#include "rc_proto.h"
#include "rc_utf8.h"

#include <string.h>

static const char *const code_names[RC_PROTO_CODE_COUNT] = {[RC_PROTO_OK] = "ok",
#define RC_PROTO_CODE_NAME(name, str) [RC_PROTO_##name] = str,
                                                            RC_PROTO_CODE_MAP(RC_PROTO_CODE_NAME)
#undef RC_PROTO_CODE_NAME
};

static const char *const code_meanings[RC_PROTO_CODE_COUNT] = {
    [RC_PROTO_OK] = "accepted",
    [RC_PROTO_MALFORMED] = "not msgpack, truncated, or trailing bytes after the value",
    [RC_PROTO_NOT_A_MAP] = "a message or event that must be a map is not one",
    [RC_PROTO_MISSING_FIELD] = "a required key is missing",
    [RC_PROTO_BAD_FIELD] = "a key has the wrong type, length, charset or value",
    [RC_PROTO_UNKNOWN_TYPE] = "the event type is not known and does not begin with x-",
    [RC_PROTO_TOO_LARGE] = "over a size or count limit",
    [RC_PROTO_TOO_DEEP] = "a value nests deeper than the limit",
    [RC_PROTO_BAD_UTF8] = "a string is not valid UTF-8",
    [RC_PROTO_RUN_TERMINAL] = "the run already ended",
    [RC_PROTO_LIMIT] = "a broker limit was reached",
    [RC_PROTO_OVERLOADED] = "the broker is overloaded; retry later",
    [RC_PROTO_SHUTTING_DOWN] = "the broker is shutting down",
    [RC_PROTO_UNKNOWN_OP] = "the op is not known",
    [RC_PROTO_NOT_SUBSCRIBED] = "no such subscription",
    [RC_PROTO_SLOW_CONSUMER] = "the connection fell too far behind",
    [RC_PROTO_INTERNAL] = "internal error",
};

const char *rc_proto_code_name(enum rc_proto_code code)
{
    if ((unsigned)code >= RC_PROTO_CODE_COUNT)
        return "internal";
    return code_names[code];
}

const char *rc_proto_code_describe(enum rc_proto_code code)
{
    if ((unsigned)code >= RC_PROTO_CODE_COUNT)
        return code_meanings[RC_PROTO_INTERNAL];
    return code_meanings[code];
}

int rc_proto_code_from_name(const char *name, size_t len)
{
    for (int c = 0; c < RC_PROTO_CODE_COUNT; c++) {
        if (strlen(code_names[c]) == len && memcmp(code_names[c], name, len) == 0)
            return c;
    }
    return -1;
}

void rc_proto_limits_default(struct rc_proto_limits *lim)
{
    lim->event_max_bytes = 64 * 1024;
    lim->batch_max_events = 1024;
    lim->batch_max_bytes = 4 * 1024 * 1024;
    lim->id_max_bytes = 128;
    lim->phase_max_bytes = 64;
    lim->data_max_depth = 32;
    lim->client_frame_max = 64 * 1024;
    lim->timeouts_max = 32;
}

static const char *const type_names[RC_EV_TYPE_COUNT] = {
    [RC_EV_START] = "start",         [RC_EV_PHASE] = "phase",
    [RC_EV_THINKING] = "thinking",   [RC_EV_DELTA] = "delta",
    [RC_EV_TOOL] = "tool",           [RC_EV_VERIFICATION] = "verification",
    [RC_EV_HEARTBEAT] = "heartbeat", [RC_EV_COMPLETE] = "complete",
    [RC_EV_ERROR] = "error",         [RC_EV_CUSTOM] = "x-",
};

const char *rc_event_type_name(enum rc_event_type t)
{
    if ((unsigned)t >= RC_EV_TYPE_COUNT)
        return "?";
    return type_names[t];
}

static const char *const status_names[] = {
    [RC_RUN_PENDING] = "pending",
    [RC_RUN_RUNNING] = "running",
    [RC_RUN_COMPLETED] = "completed",
    [RC_RUN_FAILED] = "failed",
};

const char *rc_run_status_name(enum rc_run_status s)
{
    if ((unsigned)s > RC_RUN_FAILED)
        return "?";
    return status_names[s];
}

/* [A-Za-z0-9._:-] */
static const uint8_t id_char[256] = {
    ['-'] = 1, ['.'] = 1, [':'] = 1, ['_'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1,
    ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1,
    ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,
    ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

typedef uint8_t rc_u8x16 __attribute__((vector_size(16)));

/* Whether all 16 bytes of v are in [A-Za-z0-9._:-], as vector compares:
 * letters are the bytes that OR 0x20 maps into a..z; '-' to ':' is one
 * range but for '/'; and '_'. */
static inline bool id_chars16(rc_u8x16 v)
{
    rc_u8x16 letter = (rc_u8x16)((rc_u8x16)((v | 0x20) - 'a') < 26);
    rc_u8x16 punct = (rc_u8x16)((rc_u8x16)(v - '-') < 14) & (rc_u8x16)(v != '/');
    rc_u8x16 ok = letter | punct | (rc_u8x16)(v == '_');
    rc_u64x2 w = (rc_u64x2)ok; /* every byte 0xff when all are good */
    return (w[0] & w[1]) == ~0ull;
}

bool rc_proto_valid_id(const char *p, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return false;
    /* Ids are short (at most 128 bytes) and nearly always valid: 16 bytes
     * per check, the tail (or an id of 8 to 15 bytes, as two overlapping
     * words) loaded so that it ends at the id's end; never outside it. */
    const uint8_t *u = (const uint8_t *)p;
    if (len >= 16) {
        for (size_t i = 0; i + 16 < len; i += 16)
            if (!id_chars16((rc_u8x16)rc_load16(u + i)))
                return false;
        return id_chars16((rc_u8x16)rc_load16(u + len - 16));
    }
    if (len >= 8) {
        uint64_t a, b;
        memcpy(&a, u, 8);
        memcpy(&b, u + len - 8, 8);
        return id_chars16((rc_u8x16)(rc_u64x2){a, b});
    }
    unsigned ok = 1;
    for (size_t i = 0; i < len; i++)
        ok &= id_char[u[i]];
    return ok != 0;
}

/*
 * UTF-8 per RFC 3629: no overlong forms, no surrogates (U+D800..U+DFFF),
 * nothing above U+10FFFF.  ASCII, the common case, goes 8 bytes at a time.
 */
bool rc_proto_valid_utf8(const char *p, size_t len)
{
    if (rc_utf8_is_ascii(p, len))
        return true;
    const uint8_t *s = (const uint8_t *)p;
    const uint8_t *end = s + len;
    while (s < end) {
        while ((size_t)(end - s) >= 16) {
            uint64_t w1, w2;
            memcpy(&w1, s, 8);
            memcpy(&w2, s + 8, 8);
            if (((w1 | w2) & 0x8080808080808080ull) != 0)
                break;
            s += 16;
        }
        if (s == end)
            break;
        if ((size_t)(end - s) >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            if ((w & 0x8080808080808080ull) == 0) {
                s += 8;
                continue;
            }
        }
        uint8_t c = *s;
        if (c < 0x80) {
            s++;
            continue;
        }
        size_t left = (size_t)(end - s);
        if (c >= 0xc2 && c <= 0xdf) {
            if (left < 2 || (s[1] & 0xc0) != 0x80)
                return false;
            s += 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            if (left < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
                return false;
            if (c == 0xe0 && s[1] < 0xa0) /* overlong */
                return false;
            if (c == 0xed && s[1] >= 0xa0) /* surrogate */
                return false;
            s += 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            if (left < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
                return false;
            if (c == 0xf0 && s[1] < 0x90) /* overlong */
                return false;
            if (c == 0xf4 && s[1] >= 0x90) /* above U+10FFFF */
                return false;
            s += 4;
        } else {
            return false; /* continuation byte, c0/c1, f5..ff */
        }
    }
    return true;
}
