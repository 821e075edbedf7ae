/*
 * rc_proto decoders: publish messages (events) and subscriber frames.
 *
 * An event map is decoded in two steps.  The scan walks the map once,
 * remembering the byte range of the value of every key runcast knows
 * (unknown keys are skipped), so that the second step can check the rules
 * in one fixed order whatever the key order of the publisher: the error
 * reported for an event breaking several rules is always the same one.
 *
 * A value of nil counts as absent for every key but `data` (serializers
 * often write absent optional fields as null); `data: nil` is forwarded.
 */
#include "rc_proto.h"
#include "rc_mpr.h"
#include "rc_proto_test.h"
#include "rc_utf8.h"
#include "rc_words.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define TYPE_MAX_BYTES 64 /* custom "x-..." type names */

static void fail(struct rc_proto_error *err, enum rc_proto_code code, const char *field,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void fail(struct rc_proto_error *err, enum rc_proto_code code, const char *field,
                 const char *fmt, ...)
{
    if (err == NULL)
        return;
    err->code = code;
    err->field = field;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof err->reason, fmt, ap);
    va_end(ap);
}

static void ok(struct rc_proto_error *err)
{
    if (err == NULL)
        return;
    err->code = RC_PROTO_OK;
    err->field = NULL;
    err->reason[0] = '\0';
}

/* A byte range of one value and its header; p == NULL: key absent. */
struct slot {
    const uint8_t *p;
    uint32_t len;
    struct rc_mp_item it;
};

static inline bool slot_present(const struct slot *s)
{
    return s->p != NULL && s->it.type != RC_MP_NIL; /* nil is absent */
}

/* Reads the value at r (a header, then a container's contents skipped
 * whole) into *s.  max_depth limits the nesting of a container value (0:
 * no limit).  Returns RC_MPR_BAD or RC_MPR_DEEP on failure. */
static inline enum rc_mpr_skip_result read_slot(struct rc_mpr *r, struct slot *s,
                                                uint32_t max_depth)
{
    const uint8_t *start = r->p;
    if (!rc_mpr_next(r, &s->it))
        return RC_MPR_BAD;
    if (s->it.type == RC_MP_ARRAY || s->it.type == RC_MP_MAP) {
        if (max_depth > 0) {
            enum rc_mpr_skip_result sr = rc_mpr_skip_children(r, &s->it, max_depth);
            if (sr != RC_MPR_OK)
                return sr;
        } else if (!rc_mpr_skip_rest(r, &s->it)) {
            return RC_MPR_BAD;
        }
    }
    s->p = start;
    s->len = (uint32_t)(r->p - start);
    return RC_MPR_OK;
}

static inline void slot_reader(const struct slot *s, struct rc_mpr *r)
{
    rc_mpr_init(r, s->p, s->len);
}

/* The ASCII fast path inline, the full check out of line. */
static inline bool utf8_ok(const char *p, uint32_t len)
{
    return rc_utf8_is_ascii(p, len) || rc_proto_valid_utf8(p, len);
}

static inline struct rc_str view(const void *p, size_t len)
{
    return (struct rc_str){.ptr = p, .len = (uint32_t)len};
}

/* Whether buf is exactly one msgpack value. */
static bool one_value(const void *buf, size_t len)
{
    struct rc_mpr r;
    rc_mpr_init(&r, buf, len);
    return rc_mpr_skip(&r) && rc_mpr_left(&r) == 0;
}

/* ---- Events ---- */

enum ev_key {
    K_RUN,
    K_CONV,
    K_TYPE,
    K_PHASE,
    K_ID,
    K_TS,
    K_TEXT,
    K_TOOL,
    K_ITEM,
    K_DATA,
    K_ERROR,
    K_TIMEOUTS,
    K_DEADLINE,
    K_COUNT
};

static const char *const ev_key_names[K_COUNT] = {
    "run",  "conv", "type", "phase", "id",       "ts",       "text",
    "tool", "item", "data", "error", "timeouts", "deadline",
};

/* Little-endian loads of 2, 4 and 8 bytes (one load, and a byte swap on a
 * big-endian machine), so that the words below mean the same everywhere. */
static inline uint16_t le16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap16(v);
#endif
    return v;
}

static inline uint32_t le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint64_t le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* The n (1..8, a constant at every call) bytes at p as a little-endian
 * word: at most two loads (overlapping ones for 3, 5, 6 and 7 bytes, ORed
 * at their own positions), all within p[0..n). */
static inline uint64_t word_n(const void *vp, size_t n)
{
    const uint8_t *p = vp;
    if (n == 8)
        return le64(p);
    if (n >= 4)
        return le32(p) | (uint64_t)le32(p + n - 4) << (8 * (n - 4));
    if (n >= 2)
        return le16(p) | (uint64_t)le16(p + n - 2) << (8 * (n - 2));
    return p[0];
}

/* The same word of a string literal of at most 8 bytes, as a constant. */
#define LIT_B(s, i)                                                                                \
    ((uint64_t)((i) < sizeof(s) - 1 ? (uint8_t)(s)[(i) < sizeof(s) - 1 ? (i) : 0] : 0) << (8 * (i)))
#define WORD(s)                                                                                    \
    (LIT_B(s, 0) | LIT_B(s, 1) | LIT_B(s, 2) | LIT_B(s, 3) | LIT_B(s, 4) | LIT_B(s, 5) |           \
     LIT_B(s, 6) | LIT_B(s, 7))

/* Whether s[0..n) is the literal lit of n (<= 16) bytes: one word compare,
 * or two overlapping ones above 8 bytes. */
#define SAME(s, lit)                                                                               \
    (sizeof(lit) - 1 <= 8 ? word_n((s), sizeof(lit) - 1 <= 8 ? sizeof(lit) - 1 : 8) == WORD(lit)   \
                          : same_long((s), (lit), sizeof(lit) - 1))

static inline bool same_long(const char *s, const char *lit, size_t n)
{
    return word_n(s, 8) == word_n(lit, 8) && word_n(s + n - 8, 8) == word_n(lit + n - 8, 8);
}

/* The key named k[0..len), or -1: by length, then one word compare per
 * candidate (the input's word is loaded once). */
static inline __attribute__((always_inline)) int ev_key_lookup(const char *k, uint32_t len)
{
    uint64_t w;
    switch (len) {
    case 2:
        w = word_n(k, 2);
        return w == WORD("ts") ? K_TS : w == WORD("id") ? K_ID : -1;
    case 3:
        return SAME(k, "run") ? K_RUN : -1;
    case 4:
        w = word_n(k, 4);
        return w == WORD("type")   ? K_TYPE
               : w == WORD("text") ? K_TEXT
               : w == WORD("conv") ? K_CONV
               : w == WORD("data") ? K_DATA
               : w == WORD("tool") ? K_TOOL
               : w == WORD("item") ? K_ITEM
                                   : -1;
    case 5:
        w = word_n(k, 5);
        return w == WORD("phase") ? K_PHASE : w == WORD("error") ? K_ERROR : -1;
    case 8:
        w = word_n(k, 8);
        return w == WORD("timeouts") ? K_TIMEOUTS : w == WORD("deadline") ? K_DEADLINE : -1;
    default:
        return -1;
    }
}

/* The type named s[0..len), or false (*t is then unspecified): by length,
 * then word compares. */
static inline __attribute__((always_inline)) bool type_lookup(const char *s, uint32_t len,
                                                              enum rc_event_type *t)
{
    uint64_t w;
    switch (len) {
    case 4:
        *t = RC_EV_TOOL;
        return SAME(s, "tool");
    case 5:
        w = word_n(s, 5);
        *t = w == WORD("delta")   ? RC_EV_DELTA
             : w == WORD("phase") ? RC_EV_PHASE
             : w == WORD("start") ? RC_EV_START
             : w == WORD("error") ? RC_EV_ERROR
                                  : RC_EV_CUSTOM;
        return *t != RC_EV_CUSTOM;
    case 8:
        w = word_n(s, 8);
        *t = w == WORD("thinking") ? RC_EV_THINKING : RC_EV_COMPLETE;
        return w == WORD("thinking") || w == WORD("complete");
    case 9:
        *t = RC_EV_HEARTBEAT;
        return SAME(s, "heartbeat");
    case 12:
        *t = RC_EV_VERIFICATION;
        return SAME(s, "verification");
    default:
        return false;
    }
}

/* Every string inside the value at r (keys included) is valid UTF-8. */
static bool utf8_walk(struct rc_mpr *r)
{
    uint64_t owed = 1;
    struct rc_mp_item it;
    while (owed > 0) {
        if (!rc_mpr_next(r, &it))
            return false;
        owed--;
        if (it.type == RC_MP_ARRAY)
            owed += it.v.n;
        else if (it.type == RC_MP_MAP)
            owed += (uint64_t)it.v.n * 2;
        else if (it.type == RC_MP_STR && !utf8_ok(it.v.s.ptr, it.v.s.len))
            return false;
    }
    return true;
}

/*
 * An idempotency-style key named field: a str of 1..max bytes of UTF-8, or
 * a non-negative integer.  On success *raw is the value's msgpack and *itp
 * its header; on failure err says why.
 */
static enum rc_proto_code check_key_value(const struct slot *s, uint32_t max, struct rc_str *raw,
                                          const struct rc_mp_item **itp, const char *field,
                                          struct rc_proto_error *err)
{
    const struct rc_mp_item *it = &s->it;
    *itp = it;
    if (it->type == RC_MP_UINT) {
        *raw = view(s->p, s->len);
        return RC_PROTO_OK;
    }
    if (it->type != RC_MP_STR) {
        fail(err, RC_PROTO_BAD_FIELD, field, "%s must be a string or a non-negative integer",
             field);
        return RC_PROTO_BAD_FIELD;
    }
    if (it->v.s.len == 0 || it->v.s.len > max) {
        fail(err, RC_PROTO_BAD_FIELD, field, "%s must be 1 to %u bytes (got %u)", field, max,
             it->v.s.len);
        return RC_PROTO_BAD_FIELD;
    }
    if (!utf8_ok(it->v.s.ptr, it->v.s.len)) {
        fail(err, RC_PROTO_BAD_UTF8, field, "%s is not valid UTF-8", field);
        return RC_PROTO_BAD_UTF8;
    }
    *raw = view(s->p, s->len);
    return RC_PROTO_OK;
}

#define ID_CHARSET "[A-Za-z0-9._:-]"

/* A run or conversation id: a str of 1..id_max_bytes bytes of ID_CHARSET. */
static inline bool check_id(const struct slot *s, const struct rc_proto_limits *lim,
                            struct rc_str *out)
{
    const struct rc_mp_item *it = &s->it;
    if (it->type != RC_MP_STR || !rc_proto_valid_id(it->v.s.ptr, it->v.s.len, lim->id_max_bytes))
        return false;
    *out = view(it->v.s.ptr, it->v.s.len);
    return true;
}

/* The error half of check_str, out of line (never on the hot path). */
static enum rc_proto_code __attribute__((noinline, cold))
check_str_fail(const struct slot *s, uint32_t min, uint32_t max, const char *field,
               struct rc_proto_error *err)
{
    const struct rc_mp_item *it = &s->it;
    if (it->type != RC_MP_STR) {
        fail(err, RC_PROTO_BAD_FIELD, field, "%s must be a string", field);
        return RC_PROTO_BAD_FIELD;
    }
    if (it->v.s.len < min || it->v.s.len > max) {
        fail(err, RC_PROTO_BAD_FIELD, field, "%s must be %u to %u bytes (got %u)", field, min, max,
             it->v.s.len);
        return RC_PROTO_BAD_FIELD;
    }
    fail(err, RC_PROTO_BAD_UTF8, field, "%s is not valid UTF-8", field);
    return RC_PROTO_BAD_UTF8;
}

/* A str value named field of min..max bytes of UTF-8: RC_PROTO_OK and
 * *out, or the code with err filled.  The checks are inline, the error
 * report (check_str_fail, same order of rules) is not. */
static inline enum rc_proto_code check_str(const struct slot *s, uint32_t min, uint32_t max,
                                           struct rc_str *out, const char *field,
                                           struct rc_proto_error *err)
{
    const struct rc_mp_item *it = &s->it;
    if (it->type != RC_MP_STR || it->v.s.len < min || it->v.s.len > max ||
        !utf8_ok(it->v.s.ptr, it->v.s.len))
        return check_str_fail(s, min, max, field, err);
    *out = view(it->v.s.ptr, it->v.s.len);
    return RC_PROTO_OK;
}

/* Fields of an object map (`tool`, `item`, `error`) looked up by name. */
struct obj_spec {
    const char *name;   /* "tool" */
    const char *f_id;   /* "tool.id" or NULL */
    const char *f_str1; /* "tool.name" */
    const char *f_str2; /* "tool.status" */
    const char *k_str1; /* "name" */
    const char *k_str2; /* "status" */
    bool strs_required; /* error: code and message are required */
};

static const struct obj_spec spec_tool = {"tool", "tool.id", "tool.name", "tool.status",
                                          "name", "status",  false};
static const struct obj_spec spec_item = {"item",  "item.id", "item.label", "item.status",
                                          "label", "status",  false};
static const struct obj_spec spec_error = {"error", NULL,      "error.code", "error.message",
                                           "code",  "message", true};

static bool key_is(const struct rc_mp_item *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == RC_MP_STR && k->v.s.len == n && memcmp(k->v.s.ptr, s, n) == 0;
}

static enum rc_proto_code check_obj(const struct slot *s, const struct obj_spec *sp,
                                    const struct rc_proto_limits *lim, struct rc_str *id_raw,
                                    struct rc_str *str1, struct rc_str *str2,
                                    struct rc_proto_error *err)
{
    struct rc_mpr r;
    struct rc_mp_item it, k;
    slot_reader(s, &r);
    if (!rc_mpr_next(&r, &it))
        return RC_PROTO_MALFORMED;
    if (it.type != RC_MP_MAP) {
        fail(err, RC_PROTO_BAD_FIELD, sp->name, "%s must be a map", sp->name);
        return RC_PROTO_BAD_FIELD;
    }
    struct slot sid = {0}, s1 = {0}, s2 = {0};
    for (uint32_t i = 0; i < it.v.n; i++) {
        if (!rc_mpr_next(&r, &k))
            return RC_PROTO_MALFORMED;
        struct slot *dst = NULL;
        const char *fname = NULL;
        if (k.type == RC_MP_STR) {
            if (sp->f_id && key_is(&k, "id")) {
                dst = &sid;
                fname = sp->f_id;
            } else if (key_is(&k, sp->k_str1)) {
                dst = &s1;
                fname = sp->f_str1;
            } else if (key_is(&k, sp->k_str2)) {
                dst = &s2;
                fname = sp->f_str2;
            }
        } else if (!rc_mpr_skip_rest(&r, &k)) {
            return RC_PROTO_MALFORMED;
        }
        struct slot v;
        if (read_slot(&r, &v, 0) != RC_MPR_OK)
            return RC_PROTO_MALFORMED;
        if (dst != NULL) {
            if (dst->p != NULL) {
                fail(err, RC_PROTO_BAD_FIELD, fname, "duplicate key %s", fname);
                return RC_PROTO_BAD_FIELD;
            }
            *dst = v;
        }
    }
    enum rc_proto_code c;
    if (sp->f_id) {
        if (!slot_present(&sid)) {
            fail(err, RC_PROTO_MISSING_FIELD, sp->f_id, "%s is required", sp->f_id);
            return RC_PROTO_MISSING_FIELD;
        }
        const struct rc_mp_item *idit;
        c = check_key_value(&sid, lim->id_max_bytes, id_raw, &idit, sp->f_id, err);
        if (c != RC_PROTO_OK)
            return c;
    }
    struct slot *ss[2] = {&s1, &s2};
    const char *fn[2] = {sp->f_str1, sp->f_str2};
    struct rc_str *outs[2] = {str1, str2};
    for (int j = 0; j < 2; j++) {
        if (!slot_present(ss[j])) {
            if (sp->strs_required) {
                fail(err, RC_PROTO_MISSING_FIELD, fn[j], "%s is required", fn[j]);
                return RC_PROTO_MISSING_FIELD;
            }
            continue;
        }
        struct rc_str tmp;
        c = check_str(ss[j], 0, UINT32_MAX, outs[j] ? outs[j] : &tmp, fn[j], err);
        if (c != RC_PROTO_OK)
            return c;
    }
    /* Every other string in the map (keys included) must be UTF-8 too. */
    slot_reader(s, &r);
    if (!utf8_walk(&r)) {
        fail(err, RC_PROTO_BAD_UTF8, sp->name, "a string in %s is not valid UTF-8", sp->name);
        return RC_PROTO_BAD_UTF8;
    }
    return RC_PROTO_OK;
}

static enum rc_proto_code check_timeouts(const struct slot *s, const struct rc_proto_limits *lim,
                                         struct rc_event *ev, struct rc_proto_error *err)
{
    struct rc_mpr r;
    struct rc_mp_item it, k, v;
    slot_reader(s, &r);
    if (!rc_mpr_next(&r, &it))
        return RC_PROTO_MALFORMED;
    if (it.type != RC_MP_MAP) {
        fail(err, RC_PROTO_BAD_FIELD, "timeouts", "timeouts must be a map phase -> ms");
        return RC_PROTO_BAD_FIELD;
    }
    uint32_t max = lim->timeouts_max;
    uint32_t cap = sizeof ev->timeouts / sizeof ev->timeouts[0];
    if (max > cap)
        max = cap;
    if (it.v.n > max) {
        fail(err, RC_PROTO_TOO_LARGE, "timeouts", "timeouts has %u entries, limit %u", it.v.n, max);
        return RC_PROTO_TOO_LARGE;
    }
    for (uint32_t i = 0; i < it.v.n; i++) {
        if (!rc_mpr_next(&r, &k))
            return RC_PROTO_MALFORMED;
        if (k.type != RC_MP_STR || k.v.s.len == 0 || k.v.s.len > lim->phase_max_bytes) {
            fail(err, RC_PROTO_BAD_FIELD, "timeouts",
                 "timeouts keys must be phase names of 1 to %u bytes", lim->phase_max_bytes);
            return RC_PROTO_BAD_FIELD;
        }
        if (!utf8_ok(k.v.s.ptr, k.v.s.len)) {
            fail(err, RC_PROTO_BAD_UTF8, "timeouts", "a timeouts key is not valid UTF-8");
            return RC_PROTO_BAD_UTF8;
        }
        if (!rc_mpr_next(&r, &v))
            return RC_PROTO_MALFORMED;
        if (v.type != RC_MP_UINT) {
            fail(err, RC_PROTO_BAD_FIELD, "timeouts",
                 "timeouts values must be non-negative integers (ms)");
            return RC_PROTO_BAD_FIELD;
        }
        for (uint32_t j = 0; j < i; j++) {
            const struct rc_str *p = &ev->timeouts[j].phase;
            if (p->len == k.v.s.len && memcmp(p->ptr, k.v.s.ptr, p->len) == 0) {
                fail(err, RC_PROTO_BAD_FIELD, "timeouts", "timeouts names a phase twice");
                return RC_PROTO_BAD_FIELD;
            }
        }
        ev->timeouts[i].phase = view(k.v.s.ptr, k.v.s.len);
        ev->timeouts[i].ms = v.v.u;
    }
    ev->n_timeouts = it.v.n;
    return RC_PROTO_OK;
}

/* Every field of ev to "absent".  Field by field: a memset of the struct
 * (timeouts included) costs more than the rest of a typical decode's
 * stores. */
/* Every field but the timeouts table zeroed (absent), type custom, with
 * vector stores (rc_words.h says why).  bench_proto: decode + validate +
 * encode of a batch of 64, 117.4-117.9 against 122.7-128.4 ns per event
 * with the chain of struct assignments it replaced (3 alternations). */
_Static_assert(offsetof(struct rc_event, timeouts) % 8 == 0, "rc_words_zero zeroes 8-byte words");

static inline void ev_reset(struct rc_event *ev)
{
    rc_words_zero(ev, offsetof(struct rc_event, timeouts));
    ev->type = RC_EV_CUSTOM;
    ev->has_deadline = false;
    ev->deadline_ms = 0;
    ev->id_is_uint = false;
    ev->id_uint = 0;
    ev->id_str = (struct rc_str){NULL, 0};
}

/* ---- The fast path ----
 *
 * decode_event_fast decodes the shapes publishers send nearly always in
 * one pass, checking each value as it reads it: a fixmap of fixstr keys
 * (each matched with its header as one word); run, conv, type, phase, id
 * and text as fixstr, str8 or str16 (the types delta and thinking matched
 * as the keys are); ts and a uint id as any integer; nil for any key;
 * unknown keys skipped; tool, item, error, data, timeouts and deadline read
 * as the general scan reads them and checked after the scan by the very
 * functions the general path calls.  It never reports an error: on
 * anything else (another key or string encoding, a broken rule, truncated
 * bytes) it declines, and the general path decodes the event from its
 * start, so that every error, its code, field and reason, comes from one
 * place in one fixed order.  When it accepts, the general path would have
 * accepted with the same rc_event and the same end: tests/proto checks the
 * two against each other (rc_proto_decode_event_path) on a corpus and the
 * publish fuzzer on every input. */

/* A str (fixstr, str8 or str16) at *pp, which is below end: its bytes in
 * *s and *pp past it.  False for another type or when truncated. */
static inline bool fast_str(const uint8_t **pp, const uint8_t *end, struct rc_str *s)
{
    const uint8_t *p = *pp;
    size_t left = (size_t)(end - p);
    uint8_t c = *p;
    uint32_t n;
    size_t h;
    if ((c & 0xe0) == 0xa0) {
        n = c & 0x1fu;
        h = 1;
    } else if (c == 0xd9 && left >= 2) {
        n = p[1];
        h = 2;
    } else if (c == 0xda && left >= 3) {
        n = (uint32_t)p[1] << 8 | p[2];
        h = 3;
    } else {
        return false;
    }
    if (left - h < n)
        return false;
    s->ptr = (const char *)p + h;
    s->len = n;
    *pp = p + h + n;
    return true;
}

/* The 8 bytes at p as a little-endian word, the bytes at or past end as 0. */
static inline uint64_t key_word(const uint8_t *p, const uint8_t *end)
{
    if (end - p >= 8)
        return le64(p);
    uint64_t w = 0;
    for (unsigned i = 0; p + i < end; i++)
        w |= (uint64_t)p[i] << (8 * i);
    return w;
}

/* The low n bytes of a word. */
#define MASK(n) (~0ull >> (64 - 8 * (n)))

static bool decode_event_fast(struct rc_mpr *r, const struct rc_proto_limits *lim,
                              struct rc_event *ev)
{
    const uint8_t *p = r->p;
    const uint8_t *end = r->end;
    if (p >= end || (*p & 0xf0) != 0x80) /* a fixmap: at most 15 keys */
        return false;
    const uint8_t *start = p;
    uint32_t n = *p++ & 0x0fu;
    ev_reset(ev);
    uint32_t depth = lim->data_max_depth;
    if (depth == 0)
        depth = 1;          /* as the general scan */
    struct slot s[K_COUNT]; /* nested values only; s[k] is read only when present has k */
    uint32_t seen = 0, present = 0;
    struct rc_mpr t;
    struct rc_mp_item it;
/* Takes key k (its fixstr of klen bytes matched at p): past it, a value
 * byte must follow; a repeated key goes to the general path; nil is absent
 * (a nil data is forwarded). */
#define TAKE(k, klen) /* a statement list (its continue is the loop's) */                          \
    p += (klen);                                                                                   \
    if (p >= end || (seen & (1u << (k))) != 0)                                                     \
        return false;                                                                              \
    seen |= 1u << (k);                                                                             \
    if (*p == 0xc0) {                                                                              \
        if ((k) == K_DATA)                                                                         \
            ev->data_raw = view(p, 1);                                                             \
        p++;                                                                                       \
        continue;                                                                                  \
    }                                                                                              \
    present |= 1u << (k)
/* A value read as the general scan reads it, checked after the scan. */
#define NESTED(k, max_depth)                                                                       \
    do {                                                                                           \
        rc_mpr_init(&t, p, (size_t)(end - p));                                                     \
        if (read_slot(&t, &s[k], (max_depth)) != RC_MPR_OK)                                        \
            return false;                                                                          \
        p = t.p;                                                                                   \
    } while (0)
    for (uint32_t i = 0; i < n; i++) {
        /* The key with its fixstr header as one little-endian word: the
         * header byte picks the length, one masked compare per candidate
         * name checks length and name at once.  Near the end of the
         * buffer the missing bytes read as 0, which no name contains. */
        uint64_t w = key_word(p, end);
        const uint8_t *v; /* the value */
        switch ((uint8_t)w) {
        case 0xa2:
            if ((w & MASK(3)) == WORD("\xa2ts")) {
                TAKE(K_TS, 3);
                if (*p <= 0x7f) { /* positive fixint */
                    ev->ts = *p++;
                } else if (*p == 0xcf && (size_t)(end - p) >= 9) { /* uint64: ms timestamps */
                    uint64_t u = rc_mpr_be64(p + 1);
                    if (u > INT64_MAX)
                        return false;
                    ev->ts = (int64_t)u;
                    p += 9;
                } else {
                    rc_mpr_init(&t, p, (size_t)(end - p));
                    if (!rc_mpr_next(&t, &it))
                        return false;
                    if (it.type == RC_MP_INT)
                        ev->ts = it.v.i;
                    else if (it.type == RC_MP_UINT && it.v.u <= INT64_MAX)
                        ev->ts = (int64_t)it.v.u;
                    else
                        return false;
                    p = t.p;
                }
                ev->has_ts = true;
                continue;
            }
            if ((w & MASK(3)) == WORD("\xa2id")) {
                TAKE(K_ID, 3);
                v = p;
                if (fast_str(&p, end, &ev->id_str)) {
                    if (ev->id_str.len == 0 || ev->id_str.len > lim->id_max_bytes ||
                        !utf8_ok(ev->id_str.ptr, ev->id_str.len))
                        return false;
                } else {
                    rc_mpr_init(&t, p, (size_t)(end - p));
                    if (!rc_mpr_next(&t, &it) || it.type != RC_MP_UINT)
                        return false;
                    ev->id_is_uint = true;
                    ev->id_uint = it.v.u;
                    p = t.p;
                }
                ev->id_raw = view(v, (size_t)(p - v));
                continue;
            }
            break;
        case 0xa3:
            if ((w & MASK(4)) == WORD("\xa3run")) {
                TAKE(K_RUN, 4);
                if (!fast_str(&p, end, &ev->run) ||
                    !rc_proto_valid_id(ev->run.ptr, ev->run.len, lim->id_max_bytes))
                    return false;
                continue;
            }
            break;
        case 0xa4:
            if ((w & MASK(5)) == WORD("\xa4type")) {
                TAKE(K_TYPE, 5);
                struct rc_str *tn = &ev->type_name;
                /* the types of nearly every event of a stream, matched
                 * with their fixstr header as the keys are */
                uint64_t tw = key_word(p, end);
                if ((tw & MASK(6)) == WORD("\xa5"
                                           "delta")) {
                    ev->type = RC_EV_DELTA;
                    *tn = view(p + 1, 5);
                    p += 6;
                    continue;
                }
                if (tw == WORD("\xa8thinkin") && end - p > 8 && p[8] == 'g') {
                    ev->type = RC_EV_THINKING;
                    *tn = view(p + 1, 8);
                    p += 9;
                    continue;
                }
                if (!fast_str(&p, end, tn) || tn->len == 0 || tn->len > TYPE_MAX_BYTES)
                    return false;
                if (!type_lookup(tn->ptr, tn->len, &ev->type)) {
                    /* a custom type: "x-" and more, UTF-8 */
                    if (tn->len <= 2 || tn->ptr[0] != 'x' || tn->ptr[1] != '-' ||
                        !utf8_ok(tn->ptr, tn->len))
                        return false;
                    ev->type = RC_EV_CUSTOM;
                }
                continue;
            }
            if ((w & MASK(5)) == WORD("\xa4text")) {
                TAKE(K_TEXT, 5);
                if (!fast_str(&p, end, &ev->text) || !utf8_ok(ev->text.ptr, ev->text.len))
                    return false;
                ev->has_text = true;
                continue;
            }
            if ((w & MASK(5)) == WORD("\xa4"
                                      "conv")) {
                TAKE(K_CONV, 5);
                if (!fast_str(&p, end, &ev->conv) ||
                    !rc_proto_valid_id(ev->conv.ptr, ev->conv.len, lim->id_max_bytes))
                    return false;
                continue;
            }
            if ((w & MASK(5)) == WORD("\xa4"
                                      "data")) {
                TAKE(K_DATA, 5);
                NESTED(K_DATA, depth);
                continue;
            }
            if ((w & MASK(5)) == WORD("\xa4tool")) {
                TAKE(K_TOOL, 5);
                NESTED(K_TOOL, depth);
                continue;
            }
            if ((w & MASK(5)) == WORD("\xa4item")) {
                TAKE(K_ITEM, 5);
                NESTED(K_ITEM, depth);
                continue;
            }
            break;
        case 0xa5:
            if ((w & MASK(6)) == WORD("\xa5phase")) {
                TAKE(K_PHASE, 6);
                if (!fast_str(&p, end, &ev->phase) || ev->phase.len == 0 ||
                    ev->phase.len > lim->phase_max_bytes || !utf8_ok(ev->phase.ptr, ev->phase.len))
                    return false;
                continue;
            }
            if ((w & MASK(6)) == WORD("\xa5"
                                      "error")) {
                TAKE(K_ERROR, 6);
                NESTED(K_ERROR, depth);
                continue;
            }
            break;
        case 0xa8: /* 9 bytes: the word and the last letter */
            if (w == WORD("\xa8timeout") && end - p > 9 && p[8] == 's') {
                TAKE(K_TIMEOUTS, 9);
                NESTED(K_TIMEOUTS, 0);
                continue;
            }
            if (w == WORD("\xa8"
                          "deadlin") &&
                end - p > 9 && p[8] == 'e') {
                TAKE(K_DEADLINE, 9);
                NESTED(K_DEADLINE, 0);
                continue;
            }
            break;
        default:
            break;
        }
        /* not a key runcast knows: a fixstr key is skipped with its value,
         * anything else goes to the general path */
        if (p >= end || (*p & 0xe0) != 0xa0 || (size_t)(end - p) < (*p & 0x1fu) + 2u)
            return false;
        rc_mpr_init(&t, p + 1 + (*p & 0x1fu), (size_t)(end - p) - 1 - (*p & 0x1fu));
        if (!rc_mpr_skip(&t))
            return false;
        p = t.p;
    }
#undef TAKE
#undef NESTED

    /* The rules that span keys, then the nested values, as the general
     * path checks them (in another order: only the verdict "all pass"
     * counts here). */
#define PRESENT(k) ((present >> (k)) & 1u)
    if (!PRESENT(K_RUN) || !PRESENT(K_TYPE))
        return false;
    enum rc_event_type type = ev->type;
    if (!PRESENT(K_PHASE) && type == RC_EV_PHASE)
        return false;
    if ((present & (1u << K_TOOL | 1u << K_ITEM | 1u << K_DATA | 1u << K_ERROR | 1u << K_TIMEOUTS |
                    1u << K_DEADLINE)) == 0) {
        if (type == RC_EV_TOOL || type == RC_EV_VERIFICATION || type == RC_EV_ERROR)
            return false;
    } else {
        if (PRESENT(K_TOOL)) {
            if (check_obj(&s[K_TOOL], &spec_tool, lim, &ev->tool_id_raw, NULL, NULL, NULL) !=
                RC_PROTO_OK)
                return false;
            ev->tool_raw = view(s[K_TOOL].p, s[K_TOOL].len);
        } else if (type == RC_EV_TOOL) {
            return false;
        }
        if (PRESENT(K_ITEM)) {
            if (check_obj(&s[K_ITEM], &spec_item, lim, &ev->item_id_raw, NULL, NULL, NULL) !=
                RC_PROTO_OK)
                return false;
            ev->item_raw = view(s[K_ITEM].p, s[K_ITEM].len);
        } else if (type == RC_EV_VERIFICATION) {
            return false;
        }
        if (PRESENT(K_DATA))
            ev->data_raw = view(s[K_DATA].p, s[K_DATA].len);
        if (PRESENT(K_ERROR)) {
            if (check_obj(&s[K_ERROR], &spec_error, lim, NULL, &ev->error_code, &ev->error_message,
                          NULL) != RC_PROTO_OK)
                return false;
            ev->error_raw = view(s[K_ERROR].p, s[K_ERROR].len);
        } else if (type == RC_EV_ERROR) {
            return false;
        }
        if (type == RC_EV_START) {
            if (PRESENT(K_TIMEOUTS) && check_timeouts(&s[K_TIMEOUTS], lim, ev, NULL) != RC_PROTO_OK)
                return false;
            if (PRESENT(K_DEADLINE)) {
                if (s[K_DEADLINE].it.type != RC_MP_UINT)
                    return false;
                ev->has_deadline = true;
                ev->deadline_ms = s[K_DEADLINE].it.v.u;
            }
        }
    }
#undef PRESENT
    ev->raw = view(start, (size_t)(p - start));
    r->p = p;
    return true;
}

/*
 * The general path: scans the event map whose header is at r and checks
 * every rule in one fixed order.  On RC_PROTO_OK, r is just past the map.
 * On an error r is unspecified.
 */
static enum rc_proto_code decode_event_general(struct rc_mpr *r, const struct rc_proto_limits *lim,
                                               struct rc_event *ev, struct rc_proto_error *err)
{
    struct rc_mp_item it, k;
    const uint8_t *start = r->p;
    ev_reset(ev);

    if (!rc_mpr_next(r, &it)) {
        fail(err, RC_PROTO_MALFORMED, NULL, "truncated or invalid msgpack");
        return RC_PROTO_MALFORMED;
    }
    if (it.type != RC_MP_MAP) {
        fail(err, RC_PROTO_NOT_A_MAP, NULL, "an event must be a map");
        return RC_PROTO_NOT_A_MAP;
    }

    /* Slots are written only for keys seen: `seen` says which (no slot is
     * read unless its bit is set). */
#define HAS(k) ((present >> (k)) & 1u)
    struct slot s[K_COUNT];
    uint32_t seen = 0, present = 0; /* present: seen and not nil */
    uint32_t depth = lim->data_max_depth;
    if (depth == 0)
        depth = 1; /* 0 would mean "no limit" to read_slot: allow scalars only */
    for (uint32_t i = 0; i < it.v.n; i++) {
        int key = -1;
        const uint8_t *kp = r->p;
        if (kp < r->end && (*kp & 0xe0) == 0xa0 && (size_t)(r->end - kp) - 1 >= (*kp & 0x1fu)) {
            /* a fixstr key (every key runcast knows is one): no item */
            uint32_t kl = *kp & 0x1fu;
            r->p = kp + 1 + kl;
            key = ev_key_lookup((const char *)kp + 1, kl);
        } else {
            if (!rc_mpr_next(r, &k))
                goto malformed;
            if (k.type == RC_MP_STR)
                key = ev_key_lookup(k.v.s.ptr, k.v.s.len);
            else if (!rc_mpr_skip_rest(r, &k))
                goto malformed;
        }
        if (key < 0) {
            if (!rc_mpr_skip(r))
                goto malformed;
            continue;
        }
        if (seen & (1u << key)) {
            fail(err, RC_PROTO_BAD_FIELD, ev_key_names[key], "duplicate key %s", ev_key_names[key]);
            return RC_PROTO_BAD_FIELD;
        }
        bool nested = key == K_DATA || key == K_TOOL || key == K_ITEM || key == K_ERROR;
        enum rc_mpr_skip_result sr = read_slot(r, &s[key], nested ? depth : 0);
        if (sr == RC_MPR_BAD)
            goto malformed;
        if (sr == RC_MPR_DEEP) {
            fail(err, RC_PROTO_TOO_DEEP, ev_key_names[key], "%s nests deeper than %u levels",
                 ev_key_names[key], depth);
            return RC_PROTO_TOO_DEEP;
        }
        seen |= 1u << key;
        present |= (uint32_t)(*s[key].p != 0xc0) << key; /* nil (c0) is absent */
    }
    ev->raw = view(start, (size_t)(r->p - start));

    enum rc_proto_code c;

    /* run */
    if (!HAS(K_RUN)) {
        fail(err, RC_PROTO_MISSING_FIELD, "run", "run is required");
        return RC_PROTO_MISSING_FIELD;
    }
    /* run and conv: the id charset is ASCII, so no separate UTF-8 check */
    if (!check_id(&s[K_RUN], lim, &ev->run)) {
        fail(err, RC_PROTO_BAD_FIELD, "run", "run must be a string of 1 to %u bytes of %s",
             lim->id_max_bytes, ID_CHARSET);
        return RC_PROTO_BAD_FIELD;
    }

    /* conv */
    if (HAS(K_CONV) && !check_id(&s[K_CONV], lim, &ev->conv)) {
        fail(err, RC_PROTO_BAD_FIELD, "conv", "conv must be a string of 1 to %u bytes of %s",
             lim->id_max_bytes, ID_CHARSET);
        return RC_PROTO_BAD_FIELD;
    }

    /* type */
    if (!HAS(K_TYPE)) {
        fail(err, RC_PROTO_MISSING_FIELD, "type", "type is required");
        return RC_PROTO_MISSING_FIELD;
    }
    c = check_str(&s[K_TYPE], 1, TYPE_MAX_BYTES, &ev->type_name, "type", err);
    if (c != RC_PROTO_OK)
        return c;
    if (!type_lookup(ev->type_name.ptr, ev->type_name.len, &ev->type)) {
        if (ev->type_name.len > 2 && ev->type_name.ptr[0] == 'x' && ev->type_name.ptr[1] == '-') {
            ev->type = RC_EV_CUSTOM;
        } else {
            fail(err, RC_PROTO_UNKNOWN_TYPE, "type", "unknown type \"%.*s\"",
                 (int)(ev->type_name.len > 40 ? 40 : ev->type_name.len), ev->type_name.ptr);
            return RC_PROTO_UNKNOWN_TYPE;
        }
    }

    /* phase */
    if (HAS(K_PHASE)) {
        c = check_str(&s[K_PHASE], 1, lim->phase_max_bytes, &ev->phase, "phase", err);
        if (c != RC_PROTO_OK)
            return c;
    } else if (ev->type == RC_EV_PHASE) {
        fail(err, RC_PROTO_MISSING_FIELD, "phase", "a phase event needs phase");
        return RC_PROTO_MISSING_FIELD;
    }

    /* id */
    if (HAS(K_ID)) {
        const struct rc_mp_item *idit;
        c = check_key_value(&s[K_ID], lim->id_max_bytes, &ev->id_raw, &idit, "id", err);
        if (c != RC_PROTO_OK)
            return c;
        if (idit->type == RC_MP_UINT) {
            ev->id_is_uint = true;
            ev->id_uint = idit->v.u;
        } else {
            ev->id_str = view(idit->v.s.ptr, idit->v.s.len);
        }
    }

    /* ts */
    if (HAS(K_TS)) {
        const struct rc_mp_item *tsit = &s[K_TS].it;
        if (tsit->type == RC_MP_INT) {
            ev->ts = tsit->v.i;
        } else if (tsit->type == RC_MP_UINT && tsit->v.u <= INT64_MAX) {
            ev->ts = (int64_t)tsit->v.u;
        } else {
            fail(err, RC_PROTO_BAD_FIELD, "ts", "ts must be an integer (ms since the epoch)");
            return RC_PROTO_BAD_FIELD;
        }
        ev->has_ts = true;
    }

    /* text */
    if (HAS(K_TEXT)) {
        c = check_str(&s[K_TEXT], 0, UINT32_MAX, &ev->text, "text", err);
        if (c != RC_PROTO_OK)
            return c;
        ev->has_text = true;
    }

    /* tool, item, data, error */
    if (HAS(K_TOOL)) {
        c = check_obj(&s[K_TOOL], &spec_tool, lim, &ev->tool_id_raw, NULL, NULL, err);
        if (c == RC_PROTO_MALFORMED)
            goto malformed;
        if (c != RC_PROTO_OK)
            return c;
        ev->tool_raw = view(s[K_TOOL].p, s[K_TOOL].len);
    } else if (ev->type == RC_EV_TOOL) {
        fail(err, RC_PROTO_MISSING_FIELD, "tool", "a tool event needs tool");
        return RC_PROTO_MISSING_FIELD;
    }
    if (HAS(K_ITEM)) {
        c = check_obj(&s[K_ITEM], &spec_item, lim, &ev->item_id_raw, NULL, NULL, err);
        if (c == RC_PROTO_MALFORMED)
            goto malformed;
        if (c != RC_PROTO_OK)
            return c;
        ev->item_raw = view(s[K_ITEM].p, s[K_ITEM].len);
    } else if (ev->type == RC_EV_VERIFICATION) {
        fail(err, RC_PROTO_MISSING_FIELD, "item", "a verification event needs item");
        return RC_PROTO_MISSING_FIELD;
    }
    if (seen & (1u << K_DATA)) /* nil data is forwarded as nil */
        ev->data_raw = view(s[K_DATA].p, s[K_DATA].len);
    if (HAS(K_ERROR)) {
        c = check_obj(&s[K_ERROR], &spec_error, lim, NULL, &ev->error_code, &ev->error_message,
                      err);
        if (c == RC_PROTO_MALFORMED)
            goto malformed;
        if (c != RC_PROTO_OK)
            return c;
        ev->error_raw = view(s[K_ERROR].p, s[K_ERROR].len);
    } else if (ev->type == RC_EV_ERROR) {
        fail(err, RC_PROTO_MISSING_FIELD, "error", "an error event needs error");
        return RC_PROTO_MISSING_FIELD;
    }

    /* start: per-run watchdog overrides (ignored on other types) */
    if (ev->type == RC_EV_START) {
        if (HAS(K_TIMEOUTS)) {
            c = check_timeouts(&s[K_TIMEOUTS], lim, ev, err);
            if (c == RC_PROTO_MALFORMED)
                goto malformed;
            if (c != RC_PROTO_OK)
                return c;
        }
        if (HAS(K_DEADLINE)) {
            const struct rc_mp_item *dit = &s[K_DEADLINE].it;
            if (dit->type != RC_MP_UINT) {
                fail(err, RC_PROTO_BAD_FIELD, "deadline",
                     "deadline must be a non-negative integer (ms)");
                return RC_PROTO_BAD_FIELD;
            }
            ev->has_deadline = true;
            ev->deadline_ms = dit->v.u;
        }
    }
    return RC_PROTO_OK;

malformed:
    fail(err, RC_PROTO_MALFORMED, NULL, "truncated or invalid msgpack");
    return RC_PROTO_MALFORMED;
#undef HAS
}

/* Decodes the event map at r: the fast path, and the general one when the
 * fast path declines.  As decode_event_general for r and the result. */
static inline enum rc_proto_code decode_event_at(struct rc_mpr *r,
                                                 const struct rc_proto_limits *lim,
                                                 struct rc_event *ev, struct rc_proto_error *err)
{
    if (decode_event_fast(r, lim, ev))
        return RC_PROTO_OK;
    return decode_event_general(r, lim, ev, err);
}

static void fail_envelope(struct rc_proto_error *err)
{
    fail(err, RC_PROTO_MALFORMED, NULL,
         "not exactly one msgpack value (invalid, truncated or trailing bytes)");
}

static void fail_event_size(struct rc_proto_error *err, size_t size,
                            const struct rc_proto_limits *lim)
{
    fail(err, RC_PROTO_TOO_LARGE, NULL, "event is %zu bytes, limit %u", size, lim->event_max_bytes);
}

/*
 * Decodes the one event map that is all of buf[0..len).  *envelope_ok
 * says whether buf is exactly one msgpack value (when it is not, the
 * result is RC_PROTO_MALFORMED).  Precedence: malformed, then the size
 * limit, then the rules of the map.
 *
 * The common case takes one pass: a successful decode that ends exactly at
 * the end of buf has walked every byte, so the envelope is whole.
 */
static enum rc_proto_code decode_whole(const uint8_t *buf, size_t len,
                                       const struct rc_proto_limits *lim, struct rc_event *ev,
                                       struct rc_proto_error *err, bool *envelope_ok)
{
    struct rc_mpr r;
    enum rc_proto_code c = RC_PROTO_OK;
    bool too_large = len > lim->event_max_bytes;
    if (!too_large) {
        rc_mpr_init(&r, buf, len);
        c = decode_event_at(&r, lim, ev, err);
        if (c == RC_PROTO_OK && rc_mpr_left(&r) == 0) {
            *envelope_ok = true;
            ok(err);
            return RC_PROTO_OK;
        }
    }
    *envelope_ok = one_value(buf, len);
    if (!*envelope_ok) {
        fail_envelope(err);
        return RC_PROTO_MALFORMED;
    }
    if (too_large) {
        fail_event_size(err, len, lim);
        return RC_PROTO_TOO_LARGE;
    }
    return c;
}

enum rc_proto_code rc_proto_decode_event(const void *buf, size_t len,
                                         const struct rc_proto_limits *lim, struct rc_event *ev,
                                         struct rc_proto_error *err)
{
    struct rc_proto_limits dflt;
    if (lim == NULL) {
        rc_proto_limits_default(&dflt);
        lim = &dflt;
    }
    bool envelope_ok;
    return decode_whole(buf, len, lim, ev, err, &envelope_ok);
}

enum rc_proto_code rc_proto_decode_event_path(const void *buf, size_t len,
                                              const struct rc_proto_limits *lim,
                                              enum rc_proto_path path, struct rc_event *ev,
                                              struct rc_proto_error *err, size_t *used)
{
    struct rc_proto_limits dflt;
    if (lim == NULL) {
        rc_proto_limits_default(&dflt);
        lim = &dflt;
    }
    struct rc_mpr r;
    rc_mpr_init(&r, buf, len);
    enum rc_proto_code c;
    if (path == RC_PROTO_PATH_FAST)
        c = decode_event_fast(&r, lim, ev) ? RC_PROTO_OK : RC_PROTO_FAST_DECLINED;
    else if (path == RC_PROTO_PATH_GENERAL)
        c = decode_event_general(&r, lim, ev, err);
    else
        c = decode_event_at(&r, lim, ev, err);
    if (c == RC_PROTO_OK) {
        *used = (size_t)(r.p - (const uint8_t *)buf);
        ok(err);
    }
    return c;
}

/* Decodes the n elements of an array from r on, reporting each through cb.
 * False when an element's framing is broken (only possible when the
 * envelope was not checked before). */
static bool decode_elements(struct rc_mpr *r, const uint8_t *end, uint32_t n,
                            const struct rc_proto_limits *lim, rc_proto_event_cb cb, void *arg)
{
    struct rc_event ev;
    struct rc_proto_error eerr;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *es = r->p;
        struct rc_mpr er;
        rc_mpr_init(&er, es, (size_t)(end - es));
        /* Decode in place: the scan finds the element's end. */
        enum rc_proto_code c = decode_event_at(&er, lim, &ev, &eerr);
        if (c != RC_PROTO_OK) {
            /* find the element's end; the size limit wins over the rules */
            rc_mpr_init(&er, es, (size_t)(end - es));
            if (!rc_mpr_skip(&er))
                return false;
        }
        size_t size = (size_t)(er.p - es);
        if (size > lim->event_max_bytes) {
            c = RC_PROTO_TOO_LARGE;
            fail_event_size(&eerr, size, lim);
        } /* on RC_PROTO_OK cb gets no error: eerr is left as it is */
        r->p = er.p;
        if (cb)
            cb(arg, i, c == RC_PROTO_OK ? &ev : NULL, c == RC_PROTO_OK ? NULL : &eerr);
    }
    return true;
}

enum rc_proto_code rc_proto_decode_publish(const void *buf, size_t len,
                                           const struct rc_proto_limits *lim, rc_proto_event_cb cb,
                                           void *arg, uint32_t *count, bool *is_batch,
                                           struct rc_proto_error *err)
{
    return rc_proto_decode_publish_ex(buf, len, lim, cb, arg, count, is_batch, err, 0);
}

enum rc_proto_code rc_proto_decode_publish_ex(const void *buf, size_t len,
                                              const struct rc_proto_limits *lim,
                                              rc_proto_event_cb cb, void *arg, uint32_t *count,
                                              bool *is_batch, struct rc_proto_error *err,
                                              unsigned flags)
{
    struct rc_proto_limits dflt;
    if (lim == NULL) {
        rc_proto_limits_default(&dflt);
        lim = &dflt;
    }
    if (count)
        *count = 0;
    if (is_batch)
        *is_batch = false;
    if (len > lim->batch_max_bytes) {
        fail(err, RC_PROTO_TOO_LARGE, NULL, "message is %zu bytes, limit %u", len,
             lim->batch_max_bytes);
        return RC_PROTO_TOO_LARGE;
    }
    const uint8_t *p = buf;
    const uint8_t *end = p + len;
    struct rc_mpr r;
    struct rc_mp_item top;
    struct rc_event ev;
    struct rc_proto_error eerr;
    rc_mpr_init(&r, p, len);
    if (!rc_mpr_next(&r, &top)) {
        fail_envelope(err);
        return RC_PROTO_MALFORMED;
    }

    if (top.type == RC_MP_MAP) {
        bool envelope_ok;
        enum rc_proto_code c = decode_whole(p, len, lim, &ev, &eerr, &envelope_ok);
        if (!envelope_ok) {
            fail_envelope(err);
            return RC_PROTO_MALFORMED;
        }
        if (count)
            *count = 1;
        ok(err);
        if (cb)
            cb(arg, 0, c == RC_PROTO_OK ? &ev : NULL, c == RC_PROTO_OK ? NULL : &eerr);
        return RC_PROTO_OK;
    }
    if (top.type == RC_MP_ARRAY && top.v.n > lim->batch_max_events) {
        fail(err, RC_PROTO_TOO_LARGE, NULL, "batch has %u events, limit %u", top.v.n,
             lim->batch_max_events);
        return RC_PROTO_TOO_LARGE;
    }
    if (top.type == RC_MP_ARRAY && (flags & RC_PROTO_DECODE_ONE_PASS)) {
        /* One walk: a successful element decode has checked its framing,
         * a failed one is skipped with a framing check, and the end must
         * be the buffer's end.  cb may have run when the envelope turns out
         * broken: the caller discards what it got (see rc_proto.h). */
        if (decode_elements(&r, end, top.v.n, lim, cb, arg) && r.p == end) {
            if (is_batch)
                *is_batch = true;
            if (count)
                *count = top.v.n;
            ok(err);
            return RC_PROTO_OK;
        }
        fail_envelope(err);
        return RC_PROTO_MALFORMED;
    }
    /* The whole envelope is checked before any element is reported. */
    if (!rc_mpr_skip_rest(&r, &top) || rc_mpr_left(&r) != 0) {
        fail_envelope(err);
        return RC_PROTO_MALFORMED;
    }
    if (top.type != RC_MP_ARRAY) {
        fail(err, RC_PROTO_NOT_A_MAP, NULL, "a publish message is an event map or an array");
        return RC_PROTO_NOT_A_MAP;
    }
    if (is_batch)
        *is_batch = true;
    if (count)
        *count = top.v.n;
    ok(err);
    rc_mpr_init(&r, p, len);
    (void)rc_mpr_next(&r, &top);
    (void)decode_elements(&r, end, top.v.n, lim, cb, arg); /* framing checked above */
    return RC_PROTO_OK;
}

/* ---- Subscriber frames ---- */

enum cl_key { C_OP, C_RUN, C_CONV, C_ALL, C_SINCE, C_EPOCH, C_SNAPSHOT, C_REQ, C_COUNT };

static const char *const cl_key_names[C_COUNT] = {"op",    "run",   "conv",     "all",
                                                  "since", "epoch", "snapshot", "req"};

static int cl_key_lookup(const char *k, uint32_t len)
{
    for (int i = 0; i < C_COUNT; i++) {
        size_t n = strlen(cl_key_names[i]);
        if (n == len && memcmp(cl_key_names[i], k, n) == 0)
            return i;
    }
    return -1;
}

static enum rc_proto_code check_since_map(const struct slot *s, const struct rc_proto_limits *lim)
{
    struct rc_mpr r;
    struct rc_mp_item it, k, v;
    slot_reader(s, &r);
    if (!rc_mpr_next(&r, &it) || it.type != RC_MP_MAP)
        return RC_PROTO_BAD_FIELD;
    for (uint32_t i = 0; i < it.v.n; i++) {
        if (!rc_mpr_next(&r, &k) || k.type != RC_MP_STR ||
            !rc_proto_valid_id(k.v.s.ptr, k.v.s.len, lim->id_max_bytes))
            return RC_PROTO_BAD_FIELD;
        if (!rc_mpr_next(&r, &v) || v.type != RC_MP_UINT)
            return RC_PROTO_BAD_FIELD;
    }
    return RC_PROTO_OK;
}

enum rc_proto_code rc_proto_decode_client(const void *buf, size_t len,
                                          const struct rc_proto_limits *lim,
                                          struct rc_client_msg *msg, struct rc_proto_error *err)
{
    struct rc_proto_limits dflt;
    if (lim == NULL) {
        rc_proto_limits_default(&dflt);
        lim = &dflt;
    }
    memset(msg, 0, sizeof *msg);
    msg->snapshot = -1;
    if (len > lim->client_frame_max) {
        fail(err, RC_PROTO_TOO_LARGE, NULL, "frame is %zu bytes, limit %u", len,
             lim->client_frame_max);
        return RC_PROTO_TOO_LARGE;
    }
    if (!one_value(buf, len)) {
        fail(err, RC_PROTO_MALFORMED, NULL,
             "not exactly one msgpack value (invalid, truncated or trailing bytes)");
        return RC_PROTO_MALFORMED;
    }
    struct rc_mpr r;
    struct rc_mp_item it, k;
    rc_mpr_init(&r, buf, len);
    (void)rc_mpr_next(&r, &it);
    if (it.type != RC_MP_MAP) {
        fail(err, RC_PROTO_NOT_A_MAP, NULL, "a client message is a map");
        return RC_PROTO_NOT_A_MAP;
    }
    /* The frame is one whole value: the walk below cannot run out. */
    struct slot s[C_COUNT];
    memset(s, 0, sizeof s);
    int dup = -1;
    for (uint32_t i = 0; i < it.v.n; i++) {
        (void)rc_mpr_next(&r, &k);
        int key = -1;
        if (k.type == RC_MP_STR)
            key = cl_key_lookup(k.v.s.ptr, k.v.s.len);
        else
            (void)rc_mpr_skip_rest(&r, &k);
        struct slot v;
        (void)read_slot(&r, &v, 0);
        if (key < 0)
            continue;
        if (s[key].p != NULL) {
            if (dup < 0)
                dup = key;
            continue;
        }
        s[key] = v;
    }

    /* req first, so that every later error can echo it */
    if (slot_present(&s[C_REQ]) && dup != C_REQ) {
        if (s[C_REQ].len > RC_PROTO_REQ_MAX_BYTES) {
            fail(err, RC_PROTO_TOO_LARGE, "req", "req is %u bytes, limit %d", s[C_REQ].len,
                 RC_PROTO_REQ_MAX_BYTES);
            return RC_PROTO_TOO_LARGE;
        }
        struct rc_mpr rr;
        slot_reader(&s[C_REQ], &rr);
        if (rc_mpr_skip_depth(&rr, RC_PROTO_REQ_MAX_DEPTH) != RC_MPR_OK) {
            fail(err, RC_PROTO_TOO_DEEP, "req", "req nests deeper than %d levels",
                 RC_PROTO_REQ_MAX_DEPTH);
            return RC_PROTO_TOO_DEEP;
        }
        msg->req_raw = view(s[C_REQ].p, s[C_REQ].len);
    }
    if (dup >= 0) {
        fail(err, RC_PROTO_BAD_FIELD, cl_key_names[dup], "duplicate key %s", cl_key_names[dup]);
        return RC_PROTO_BAD_FIELD;
    }

    /* op */
    if (!slot_present(&s[C_OP])) {
        fail(err, RC_PROTO_MISSING_FIELD, "op", "op is required");
        return RC_PROTO_MISSING_FIELD;
    }
    struct rc_mpr sr;
    slot_reader(&s[C_OP], &sr);
    (void)rc_mpr_next(&sr, &it);
    if (it.type != RC_MP_STR) {
        fail(err, RC_PROTO_BAD_FIELD, "op", "op must be a string");
        return RC_PROTO_BAD_FIELD;
    }
    if (it.v.s.len == 3 && memcmp(it.v.s.ptr, "sub", 3) == 0) {
        msg->op = RC_OP_SUB;
    } else if (it.v.s.len == 5 && memcmp(it.v.s.ptr, "unsub", 5) == 0) {
        msg->op = RC_OP_UNSUB;
    } else if (it.v.s.len == 4 && memcmp(it.v.s.ptr, "ping", 4) == 0) {
        msg->op = RC_OP_PING;
        ok(err);
        return RC_PROTO_OK;
    } else {
        bool printable = rc_proto_valid_utf8(it.v.s.ptr, it.v.s.len);
        fail(err, RC_PROTO_UNKNOWN_OP, "op", "unknown op \"%.*s\"",
             printable ? (int)(it.v.s.len > 40 ? 40 : it.v.s.len) : 0, it.v.s.ptr);
        return RC_PROTO_UNKNOWN_OP;
    }

    /* target: exactly one of run, conv, all */
    int target = -1;
    for (int key = C_RUN; key <= C_ALL; key++) {
        if (!slot_present(&s[key]))
            continue;
        if (target >= 0) {
            fail(err, RC_PROTO_BAD_FIELD, cl_key_names[key],
                 "give exactly one of run, conv and all (got %s and %s)", cl_key_names[target],
                 cl_key_names[key]);
            return RC_PROTO_BAD_FIELD;
        }
        target = key;
    }
    if (target < 0) {
        fail(err, RC_PROTO_MISSING_FIELD, "run", "one of run, conv or all is required");
        return RC_PROTO_MISSING_FIELD;
    }
    slot_reader(&s[target], &sr);
    (void)rc_mpr_next(&sr, &it);
    if (target == C_ALL) {
        if (it.type != RC_MP_BOOL || !it.v.b) {
            fail(err, RC_PROTO_BAD_FIELD, "all", "all must be true");
            return RC_PROTO_BAD_FIELD;
        }
        msg->kind = RC_SUB_ALL;
    } else {
        if (it.type != RC_MP_STR || !rc_proto_valid_id(it.v.s.ptr, it.v.s.len, lim->id_max_bytes)) {
            fail(err, RC_PROTO_BAD_FIELD, cl_key_names[target],
                 "%s must be 1 to %u bytes of [A-Za-z0-9._:-]", cl_key_names[target],
                 lim->id_max_bytes);
            return RC_PROTO_BAD_FIELD;
        }
        msg->kind = target == C_RUN ? RC_SUB_RUN : RC_SUB_CONV;
        msg->target = view(it.v.s.ptr, it.v.s.len);
    }
    if (msg->op == RC_OP_UNSUB) {
        ok(err);
        return RC_PROTO_OK;
    }

    /* since, epoch, snapshot (sub only) */
    if (slot_present(&s[C_SINCE])) {
        if (msg->kind == RC_SUB_RUN) {
            slot_reader(&s[C_SINCE], &sr);
            (void)rc_mpr_next(&sr, &it);
            if (it.type != RC_MP_UINT) {
                fail(err, RC_PROTO_BAD_FIELD, "since",
                     "since must be the last seq seen (a non-negative integer)");
                return RC_PROTO_BAD_FIELD;
            }
            msg->has_since = true;
            msg->since = it.v.u;
        } else {
            if (check_since_map(&s[C_SINCE], lim) != RC_PROTO_OK) {
                fail(err, RC_PROTO_BAD_FIELD, "since",
                     "since must be a map of run id -> last seq seen");
                return RC_PROTO_BAD_FIELD;
            }
            msg->has_since = true;
            msg->since_map = view(s[C_SINCE].p, s[C_SINCE].len);
        }
    }
    if (slot_present(&s[C_EPOCH])) {
        slot_reader(&s[C_EPOCH], &sr);
        (void)rc_mpr_next(&sr, &it);
        if (it.type != RC_MP_UINT) {
            fail(err, RC_PROTO_BAD_FIELD, "epoch", "epoch must be a non-negative integer");
            return RC_PROTO_BAD_FIELD;
        }
        msg->has_epoch = true;
        msg->epoch = it.v.u;
    }
    if (slot_present(&s[C_SNAPSHOT])) {
        slot_reader(&s[C_SNAPSHOT], &sr);
        (void)rc_mpr_next(&sr, &it);
        if (it.type != RC_MP_BOOL) {
            fail(err, RC_PROTO_BAD_FIELD, "snapshot", "snapshot must be a bool");
            return RC_PROTO_BAD_FIELD;
        }
        msg->snapshot = it.v.b ? 1 : 0;
    }
    ok(err);
    return RC_PROTO_OK;
}

bool rc_proto_since_lookup(struct rc_str since_map, struct rc_str run, uint64_t *seq)
{
    struct rc_mpr r;
    struct rc_mp_item it, k, v;
    if (since_map.len == 0)
        return false;
    rc_mpr_init(&r, since_map.ptr, since_map.len);
    if (!rc_mpr_next(&r, &it) || it.type != RC_MP_MAP)
        return false;
    for (uint32_t i = 0; i < it.v.n; i++) {
        if (!rc_mpr_next(&r, &k))
            return false;
        if (k.type != RC_MP_STR) {
            if (!rc_mpr_skip_rest(&r, &k) || !rc_mpr_skip(&r))
                return false;
            continue;
        }
        if (!rc_mpr_next(&r, &v))
            return false;
        if (k.v.s.len == run.len && memcmp(k.v.s.ptr, run.ptr, run.len) == 0 &&
            v.type == RC_MP_UINT) {
            *seq = v.v.u;
            return true;
        }
        if (!rc_mpr_skip_rest(&r, &v))
            return false;
    }
    return false;
}
