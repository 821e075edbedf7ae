/*
 * rc_proto: runcast wire protocol v1 (msgpack): decoders that validate while
 * decoding, and encoders for every message.  docs/PROTOCOL.md is the
 * specification; this header is its C face.
 *
 * Decoded structures never own memory: every rc_str and every *_raw field is
 * a view into the buffer that was decoded, valid as long as that buffer is.
 * `*_raw` fields hold the exact msgpack bytes of a value (forwarded byte for
 * byte, never re-encoded).  Encoders append to an rc_buf and return 0, or
 * RC_ENOMEM / RC_ETOOBIG with the buffer left as it was before the call.
 *
 * Validation policy (docs/PROTOCOL.md sections 2 and 3 give every rule):
 * unknown keys are ignored; a known key twice is bad_field; nil counts as
 * absent for every key but `data`; UTF-8 is checked for every string
 * runcast interprets (type, phase, id, text, everything inside tool, item
 * and error) while `data` is opaque and only its structure and depth are
 * checked.  Every decoder is safe on arbitrary bytes (fuzzed) and neither
 * allocates nor recurses.  The library has no shared state: any thread may
 * call any function at any time.
 *
 * This library knows nothing of nng, actors or the broker.
 */
#ifndef RC_PROTO_H
#define RC_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rc_buf.h"

/* ---- Wire error codes (stable strings; PROTOCOL.md tables them) ---- */

#define RC_PROTO_CODE_MAP(X)                                                                       \
    X(MALFORMED, "malformed")                                                                      \
    X(NOT_A_MAP, "not_a_map")                                                                      \
    X(MISSING_FIELD, "missing_field")                                                              \
    X(BAD_FIELD, "bad_field")                                                                      \
    X(UNKNOWN_TYPE, "unknown_type")                                                                \
    X(TOO_LARGE, "too_large")                                                                      \
    X(TOO_DEEP, "too_deep")                                                                        \
    X(BAD_UTF8, "bad_utf8")                                                                        \
    X(RUN_TERMINAL, "run_terminal")                                                                \
    X(LIMIT, "limit")                                                                              \
    X(OVERLOADED, "overloaded")                                                                    \
    X(SHUTTING_DOWN, "shutting_down")                                                              \
    X(UNKNOWN_OP, "unknown_op")                                                                    \
    X(NOT_SUBSCRIBED, "not_subscribed")                                                            \
    X(SLOW_CONSUMER, "slow_consumer")                                                              \
    X(INTERNAL, "internal")

enum rc_proto_code {
    RC_PROTO_OK = 0,
#define RC_PROTO_CODE_ENUM(name, str) RC_PROTO_##name,
    RC_PROTO_CODE_MAP(RC_PROTO_CODE_ENUM)
#undef RC_PROTO_CODE_ENUM
        RC_PROTO_CODE_COUNT
};

/* "malformed", ...; "ok" for RC_PROTO_OK. */
const char *rc_proto_code_name(enum rc_proto_code code);
/* A one-line meaning of the code (the default `message` of an error). */
const char *rc_proto_code_describe(enum rc_proto_code code);
/* The code whose name is name[0..len), or -1. */
int rc_proto_code_from_name(const char *name, size_t len);

/* A precise validation error. field is a static string naming the key
 * ("run", "tool.id", "data", ...) or NULL; reason is a short sentence. */
struct rc_proto_error {
    enum rc_proto_code code;
    const char *field;
    char reason[112];
};

/* ---- Limits (every one configurable by the broker) ---- */

struct rc_proto_limits {
    uint32_t event_max_bytes;  /* 65536: one event map, encoded */
    uint32_t batch_max_events; /* 1024 */
    uint32_t batch_max_bytes;  /* 4 MiB: one publish message */
    uint32_t id_max_bytes;     /* 128: run, conv, idempotency, tool and item ids */
    uint32_t phase_max_bytes;  /* 64 */
    uint32_t data_max_depth;   /* 32: nesting of data/tool/item/error values */
    uint32_t client_frame_max; /* 65536: one WebSocket frame from a subscriber */
    uint32_t timeouts_max;     /* 32: entries in a start event's `timeouts` */
};

void rc_proto_limits_default(struct rc_proto_limits *lim);
/* Every decoder takes lim == NULL as the defaults, and err == NULL as "the
 * caller only wants the code". */

/* ---- Views ---- */

struct rc_str {
    const char *ptr;
    uint32_t len;
};

/* ---- Publisher events ---- */

enum rc_event_type {
    RC_EV_START,
    RC_EV_PHASE,
    RC_EV_THINKING,
    RC_EV_DELTA,
    RC_EV_TOOL,
    RC_EV_VERIFICATION,
    RC_EV_HEARTBEAT,
    RC_EV_COMPLETE,
    RC_EV_ERROR,
    RC_EV_CUSTOM, /* "x-..."; the name is in rc_event.type_name */
    RC_EV_TYPE_COUNT
};

/* "start", ..., "error"; "x-" for RC_EV_CUSTOM. */
const char *rc_event_type_name(enum rc_event_type t);

static inline bool rc_event_type_is_terminal(enum rc_event_type t)
{
    return t == RC_EV_COMPLETE || t == RC_EV_ERROR;
}

struct rc_phase_timeout {
    struct rc_str phase; /* "*" is the run's default */
    uint64_t ms;
};

/* One decoded event: about 1 KiB (the timeouts array), so reuse one rather
 * than zeroing a new one per event; the decoders set every field. */
struct rc_event {
    struct rc_str raw;  /* the whole event map */
    struct rc_str run;  /* required */
    struct rc_str conv; /* len 0: absent */
    enum rc_event_type type;
    struct rc_str type_name; /* the type string as sent */
    struct rc_str phase;     /* len 0: absent */
    struct rc_str text;      /* len 0 and has_text false: absent */
    bool has_text;
    struct rc_str id_raw; /* idempotency key (str or uint) as msgpack; len 0: absent */
    bool has_ts;
    int64_t ts;                /* publisher time, ms since the epoch */
    struct rc_str tool_raw;    /* the `tool` map; len 0: absent */
    struct rc_str tool_id_raw; /* msgpack of tool.id (str or uint) */
    struct rc_str item_raw;    /* the `item` map */
    struct rc_str item_id_raw;
    struct rc_str data_raw;  /* any msgpack; len 0: absent */
    struct rc_str error_raw; /* the `error` map */
    struct rc_str error_code;
    struct rc_str error_message;
    /* start only */
    uint32_t n_timeouts;
    struct rc_phase_timeout timeouts[32];
    bool has_deadline;
    uint64_t deadline_ms;
    /* The idempotency key decoded (when id_raw.len > 0), so that the broker
     * can compare keys whatever integer encoding the publisher used. */
    bool id_is_uint;
    uint64_t id_uint;     /* when id_is_uint */
    struct rc_str id_str; /* when !id_is_uint */
};

/*
 * Called once per element of a publish message, in order.  Exactly one of
 * ev and err is non-NULL.  index counts from 0.
 */
typedef void (*rc_proto_event_cb)(void *arg, uint32_t index, const struct rc_event *ev,
                                  const struct rc_proto_error *err);

/*
 * Decodes one publish message (one event map or an array of them).
 *
 * The envelope is checked first and whole: bytes that are not exactly one
 * msgpack value (malformed, truncated, trailing bytes) -> RC_PROTO_MALFORMED,
 * a message over batch_max_bytes or an array over batch_max_events ->
 * RC_PROTO_TOO_LARGE, a top level that is neither a map nor an array ->
 * RC_PROTO_NOT_A_MAP.  In those cases cb is never called and err says why.
 * Otherwise every element is validated on its own and reported through cb
 * (good and bad ones), *count gets the number of elements, and the function
 * returns RC_PROTO_OK.  *is_batch says whether the top level was an array.
 */
enum rc_proto_code rc_proto_decode_publish(const void *buf, size_t len,
                                           const struct rc_proto_limits *lim, rc_proto_event_cb cb,
                                           void *arg, uint32_t *count, bool *is_batch,
                                           struct rc_proto_error *err);

/*
 * As rc_proto_decode_publish; flags RC_PROTO_DECODE_ONE_PASS walks a batch
 * once instead of checking the whole envelope first and then decoding
 * (the check was a quarter of the decode's instructions).  The results are
 * the same, except that when the envelope turns out broken (RC_PROTO_
 * MALFORMED) cb may already have been called for the elements before the
 * break: the caller must then discard everything cb received.  For callers
 * that act on the elements only after this returns (the broker's ingest).
 */
#define RC_PROTO_DECODE_ONE_PASS 1u
enum rc_proto_code rc_proto_decode_publish_ex(const void *buf, size_t len,
                                              const struct rc_proto_limits *lim,
                                              rc_proto_event_cb cb, void *arg, uint32_t *count,
                                              bool *is_batch, struct rc_proto_error *err,
                                              unsigned flags);

/* Decodes and validates exactly one event map (used by the above). */
enum rc_proto_code rc_proto_decode_event(const void *buf, size_t len,
                                         const struct rc_proto_limits *lim, struct rc_event *ev,
                                         struct rc_proto_error *err);

/* ---- Broker -> subscriber messages ---- */

/* Fields of an `ev` that the broker adds. */
struct rc_ev_meta {
    uint64_t epoch;
    uint64_t seq;
    int64_t ts;         /* broker receive time, ms since the epoch */
    struct rc_str conv; /* the run's conversation (may come from an earlier event) */
    bool synthetic;
};

/* Appends the `ev` map of event ev.  Raw fields are copied byte for byte. */
int rc_proto_encode_ev(struct rc_buf *out, const struct rc_event *ev, const struct rc_ev_meta *m);
/* The exact size in bytes of the `ev` map of event ev (what
 * rc_proto_encode_ev appends), so that it can be written into an exact
 * allocation (e.g. a blob) by rc_proto_put_ev. */
size_t rc_proto_ev_size(const struct rc_event *ev, const struct rc_ev_meta *m);
/* A cheap upper bound of rc_proto_ev_size (a few additions), for writing
 * into a scratch buffer when it fits. */
size_t rc_proto_ev_bound(const struct rc_event *ev, const struct rc_ev_meta *m);
/* Writes the `ev` map at p, which has room for rc_proto_ev_size(ev, m)
 * bytes (or rc_proto_ev_bound); returns the byte just after it (p + the
 * exact size). */
uint8_t *rc_proto_put_ev(uint8_t *p, const struct rc_event *ev, const struct rc_ev_meta *m);

enum rc_run_status { RC_RUN_PENDING, RC_RUN_RUNNING, RC_RUN_COMPLETED, RC_RUN_FAILED };
const char *rc_run_status_name(enum rc_run_status s);

struct rc_snap_phase {
    struct rc_str phase;
    int64_t at;
};

/* Everything a `snap` holds; arrays and views belong to the caller. */
struct rc_proto_snap {
    struct rc_str run;
    struct rc_str conv;
    uint64_t epoch;
    uint64_t seq;
    enum rc_run_status status;
    struct rc_str phase; /* current phase; len 0: none */
    const struct rc_snap_phase *phases;
    uint32_t n_phases;
    int64_t created_at;
    int64_t started_at; /* 0: absent */
    int64_t last_event_at;
    int64_t ended_at; /* 0: absent */
    struct rc_str thinking;
    struct rc_str output;
    const struct rc_str *tools; /* each the raw msgpack map of one tool call's latest state */
    uint32_t n_tools;
    const struct rc_str *verification;
    uint32_t n_verification;
    struct rc_str terminal_raw; /* the terminal `ev` map; len 0: none */
    bool truncated;
};

int rc_proto_encode_snap(struct rc_buf *out, const struct rc_proto_snap *s);
int rc_proto_encode_gap(struct rc_buf *out, struct rc_str run, uint64_t from, uint64_t to);
int rc_proto_encode_hello(struct rc_buf *out, uint64_t epoch, const char *server, uint32_t hb_ms);
/* req_raw: the client's `req` value as msgpack (echoed as is); len 0: none. */
int rc_proto_encode_ok(struct rc_buf *out, struct rc_str req_raw);
int rc_proto_encode_err(struct rc_buf *out, enum rc_proto_code code, const char *message,
                        struct rc_str req_raw);
/* Like rc_proto_encode_err, with `field` (NULL: none) naming the key at fault. */
int rc_proto_encode_err_field(struct rc_buf *out, enum rc_proto_code code, const char *field,
                              const char *message, struct rc_str req_raw);
int rc_proto_encode_pong(struct rc_buf *out, struct rc_str req_raw);
int rc_proto_encode_hb(struct rc_buf *out, int64_t ts);

/* Appends a msgpack array header for n elements (frames that coalesce several
 * server messages are an array of their encodings). */
int rc_proto_encode_array_header(struct rc_buf *out, uint32_t n);

/* ---- Broker -> publisher ack ---- */

struct rc_proto_ack_result {
    enum rc_proto_code code; /* RC_PROTO_OK: accepted */
    uint64_t seq;            /* when accepted */
    bool dup;                /* accepted earlier under the same idempotency id */
    const char *field;       /* on error; may be NULL */
    const char *message;     /* on error */
};

/* {ok, epoch, results: [...]}; ok is true when every result is accepted.
 * A whole-message error (malformed envelope, shutting_down) is encoded as
 * n == 1 with that error. */
int rc_proto_encode_ack(struct rc_buf *out, uint64_t epoch, const struct rc_proto_ack_result *r,
                        uint32_t n);

/* ---- Subscriber -> broker messages ---- */

enum rc_client_op { RC_OP_SUB, RC_OP_UNSUB, RC_OP_PING };
enum rc_sub_kind { RC_SUB_RUN, RC_SUB_CONV, RC_SUB_ALL };

struct rc_client_msg {
    enum rc_client_op op;
    enum rc_sub_kind kind; /* sub/unsub */
    struct rc_str target;  /* run or conv id; empty for all */
    bool has_since;
    uint64_t since;          /* run subscriptions */
    struct rc_str since_map; /* conv/all: raw msgpack map run -> seq; len 0: absent */
    bool has_epoch;
    uint64_t epoch;
    int snapshot;          /* -1: not given, 0: false, 1: true */
    struct rc_str req_raw; /* correlation id as msgpack; len 0: absent */
};

/* Largest `req` a client may send (encoded bytes) and its deepest nesting. */
#define RC_PROTO_REQ_MAX_BYTES 256
#define RC_PROTO_REQ_MAX_DEPTH 8

/* Decodes one client frame (a single map).  On an error after the frame was
 * found to be a map, msg->req_raw is still set when the frame carried a
 * valid `req`, so that the `err` reply can echo it; msg->req_raw.len is 0
 * otherwise. */
enum rc_proto_code rc_proto_decode_client(const void *buf, size_t len,
                                          const struct rc_proto_limits *lim,
                                          struct rc_client_msg *msg, struct rc_proto_error *err);

/* Looks run up in a since map; returns true and sets *seq when present. */
bool rc_proto_since_lookup(struct rc_str since_map, struct rc_str run, uint64_t *seq);

/* ---- Validation helpers shared with the broker and the client ---- */

/* 1..max bytes of [A-Za-z0-9._:-] */
bool rc_proto_valid_id(const char *p, size_t len, size_t max);
bool rc_proto_valid_utf8(const char *p, size_t len);

/* ---- A small msgpack writer (the encoders above use it; the broker and
 * the client build synthetic events and requests with it) ---- */

int rc_mpw_map(struct rc_buf *b, uint32_t n);
int rc_mpw_array(struct rc_buf *b, uint32_t n);
int rc_mpw_str(struct rc_buf *b, const char *p, size_t len);
int rc_mpw_cstr(struct rc_buf *b, const char *s);
int rc_mpw_bin(struct rc_buf *b, const void *p, size_t len);
int rc_mpw_uint(struct rc_buf *b, uint64_t v);
int rc_mpw_int(struct rc_buf *b, int64_t v);
int rc_mpw_bool(struct rc_buf *b, bool v);
int rc_mpw_nil(struct rc_buf *b);
int rc_mpw_double(struct rc_buf *b, double v);
/* Appends bytes that already are one msgpack value. */
int rc_mpw_raw(struct rc_buf *b, const void *p, size_t len);

#endif
