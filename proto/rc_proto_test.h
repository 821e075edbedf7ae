/*
 * rc_proto_test: hooks for the proto tests and fuzzers (not for production
 * callers).  The event decoder has two paths (rc_proto_decode.c): a fast
 * one for the common shapes, which declines anything else, and the general
 * one, which checks every rule in a fixed order.  These hooks run one path
 * alone so that tests can hold the two to the same results.
 */
#ifndef RC_PROTO_TEST_H
#define RC_PROTO_TEST_H

#include "rc_proto.h"

enum rc_proto_path {
    RC_PROTO_PATH_AUTO,    /* as rc_proto_decode_event: fast, else general */
    RC_PROTO_PATH_GENERAL, /* the general path alone */
    RC_PROTO_PATH_FAST,    /* the fast path alone */
};

/* Returned by RC_PROTO_PATH_FAST when the fast path declines the input. */
#define RC_PROTO_FAST_DECLINED RC_PROTO_CODE_COUNT

/*
 * Decodes the event map at the start of buf[0..len) through path (no
 * envelope or size check: trailing bytes are allowed, *used says where the
 * map ended on RC_PROTO_OK).  lim NULL: the defaults.  err may be NULL.
 */
enum rc_proto_code rc_proto_decode_event_path(const void *buf, size_t len,
                                              const struct rc_proto_limits *lim,
                                              enum rc_proto_path path, struct rc_event *ev,
                                              struct rc_proto_error *err, size_t *used);

#endif
