/*
 * ws_trace: runs client bytes through a fresh rc_ws_parser the way an edge
 * connection does (receive into rc_ws_parser_space, commit, take every
 * event, trim when nothing is pending, stop at a violation or a close) and
 * records what it reported.  The cuts between receives come from a seed, so
 * that the same bytes can be fed whole, byte by byte or in random pieces:
 * a parser whose events depend on where the network cut the stream is
 * broken, and the unit test (test_ws.c) and the fuzz target (fuzz_ws.c)
 * compare cuts.  Test code: aborts nothing, returns what it found.
 */
#ifndef WS_TRACE_H
#define WS_TRACE_H

#include <stddef.h>
#include <stdint.h>

/* One event, with its payload reduced to a length and an FNV-1a hash. */
struct ws_trace_ev {
    uint8_t ev, op;
    uint16_t close_code;
    uint64_t len;
    uint64_t hash;
};

/* Cut seeds with a fixed meaning; any other seed draws random pieces. */
#define WS_TRACE_WHOLE    0u /* one receive of everything */
#define WS_TRACE_BYTEWISE 1u /* one byte per receive */

/* Feeds data[0, len) cut by seed into a parser limited to max_message and
 * records its events in out (*n of them).  Returns NULL, or what broke one
 * of the parser's promises (a message over the limit, a control payload
 * over 125 bytes, an opcode that does not fit the event, a violation
 * without a code or reason, more events than cap: each takes at least a
 * frame header, so len + 1 is always room enough), or no memory. */
const char *ws_trace_run(const uint8_t *data, size_t len, uint32_t max_message, uint64_t seed,
                         struct ws_trace_ev *out, size_t cap, size_t *n);

/* xorshift64: the next of the pseudo-random sequence in *s (not 0), for
 * the cuts here and the tests' random streams. */
uint64_t ws_trace_rand(uint64_t *s);

/* NULL when a and b (na and nb events) are the same; else the difference. */
const char *ws_trace_diff(const struct ws_trace_ev *a, size_t na, const struct ws_trace_ev *b,
                          size_t nb);

#endif
