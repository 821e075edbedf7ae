/*
 * rc_testsub: an in-process subscriber for tests and benchmarks.
 *
 * An actor that collects every rc_sub_frame it receives (a copy of the
 * encoded message plus the frame's fields), and helpers to wait for frames
 * and read fields of the msgpack maps (decoded with msgpack-c, a third-party
 * decoder, so the tests do not trust the project's own codec).
 */
#ifndef RC_TESTSUB_H
#define RC_TESTSUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rc_actor.h"
#include "rc_runs.h"

struct rc_testsub;

struct rc_tframe {
    uint8_t kind; /* enum rc_frame_kind */
    uint64_t sub_id;
    uint64_t seq;
    bool terminal;
    bool replay;
    char run[130];
    uint8_t *raw; /* the encoded map */
    size_t len;
};

int rc_testsub_new(struct rc_actor_system *sys, struct rc_testsub **out);
struct rc_actor *rc_testsub_actor(struct rc_testsub *ts);
/* Stops the actor and frees everything. */
void rc_testsub_free(struct rc_testsub *ts);

size_t rc_testsub_count(struct rc_testsub *ts);
/* Waits until at least n frames arrived; false on timeout. */
bool rc_testsub_wait(struct rc_testsub *ts, size_t n, uint64_t timeout_ms);
/* Waits until a terminal ev (or a snap of an ended run) of run arrived. */
bool rc_testsub_wait_terminal(struct rc_testsub *ts, const char *run, uint64_t timeout_ms);
/* A copy of frame i (raw stays owned by ts); false past the end. */
bool rc_testsub_get(struct rc_testsub *ts, size_t i, struct rc_tframe *out);

/* Field lookups in a msgpack value by dotted path ("error.code", "data.idle_ms";
 * numbers index arrays: "results.2.seq"). */
bool rc_mp_str(const void *raw, size_t len, const char *path, char *out, size_t cap);
bool rc_mp_uint(const void *raw, size_t len, const char *path, uint64_t *out);
bool rc_mp_bool(const void *raw, size_t len, const char *path, bool *out);
/* Array length (or map size) at path; -1 when absent. */
long rc_mp_len(const void *raw, size_t len, const char *path);
bool rc_mp_has(const void *raw, size_t len, const char *path);

#endif
