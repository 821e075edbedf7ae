/*
 * edge_fixture: an in-process broker + edge on free ports for the edge's
 * integration tests (created inside each test body: nng is not fork-safe).
 */
#ifndef EDGE_FIXTURE_H
#define EDGE_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Assertions: Criterion's in the Criterion tests; a message and abort()
 * in the plain programs (EDGE_PLAIN_TEST: TSan builds, where Criterion
 * cannot start). */
#ifdef EDGE_PLAIN_TEST
#define FX_ASSERT(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, "%s", "");                                                             \
            fprintf(stderr, " " __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
#else
#include <criterion/criterion.h>
#define FX_ASSERT(cond, ...) cr_assert((cond), " " __VA_ARGS__)
#endif

#include "rc_broker.h"
#include "rc_config.h"
#include "rc_edge.h"

struct fx {
    struct rc_config cfg;
    struct rc_broker *b;
    struct rc_edge *e;
    uint16_t port;
    uint64_t epoch;
};

/* Starts a broker (no nng ingress: tests publish in process) and an edge on
 * 127.0.0.1:0.  opts: NULL-terminated "name", "value" pairs of config
 * options applied after the defaults. */
void fx_start(struct fx *f, const char *const *opts);
void fx_stop(struct fx *f);

/* Publishes one message given as JSON (an event or an array of events) and
 * waits for its ack; asserts every event was accepted.  Returns the seq of
 * the last event. */
uint64_t fx_publish(struct fx *f, const char *json);
/* printf-style */
uint64_t fx_publishf(struct fx *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
