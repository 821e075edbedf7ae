/*
 * Test helpers for the broker core: an in-process broker with options,
 * synchronous publishing with the ack results, and an event builder.
 */
#ifndef RC_TUTIL_H
#define RC_TUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rc_broker.h"
#include "rc_buf.h"
#include "rc_config.h"
#include "rc_proto.h"
#include "rc_runs.h"

struct rc_testsub;

struct rc_tb {
    struct rc_config cfg;
    struct rc_broker *b;
};

/* Starts an in-process broker (no sockets) with name/value option pairs,
 * NULL-terminated. */
void tb_start(struct rc_tb *t, const char *const *opts);
void tb_stop(struct rc_tb *t);
/* A new rc_testsub (rc_testsub.h) on t's actor system, subscribed with r,
 * whose subscriber is filled in. */
struct rc_testsub *tb_subscribe(struct rc_tb *t, struct rc_sub_req r);
/* Subscribes a new test subscriber to run (no snapshot); the caller frees it. */
struct rc_testsub *tb_sub_run(struct rc_tb *t, const char *run);

#define TACK_MAX 1100
struct tack {
    uint32_t n;
    enum rc_proto_code code[TACK_MAX];
    uint64_t seq[TACK_MAX];
    bool dup[TACK_MAX];
};

/* An event; NULL / 0 fields are left out. */
struct tev {
    const char *run, *type, *conv, *phase, *text, *id;
    const char *tool_id, *tool_status; /* tool: {id, status} */
    const char *item_id, *item_status; /* verification: {id, status} */
    const char *err_code, *err_msg;    /* error: {code, message} */
    const char *timeouts;              /* start: "*=50,execute=20" (ms) */
    uint64_t deadline;                 /* start: ms */
    const char *data_str;              /* data: a string */
};

void tev_encode(struct rc_buf *b, const struct tev *e);

/* Publishes bytes and waits for the results (fails the test on timeout). */
void tb_publish_raw(struct rc_tb *t, const void *buf, size_t len, uint32_t pipe, struct tack *a);
/* One event; returns its result code, *seq when accepted. */
enum rc_proto_code tb_pub(struct rc_tb *t, const struct tev *e, uint32_t pipe, uint64_t *seq);
/* A batch of n events. */
void tb_pub_batch(struct rc_tb *t, const struct tev *e, size_t n, uint32_t pipe, struct tack *a);

#endif
