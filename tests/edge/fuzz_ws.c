/*
 * libFuzzer target: the edge's WebSocket frame parser (rc_ws_parser) on
 * arbitrary client bytes.  The first input byte picks the message limit
 * and the second how the rest is cut into receives; the rest is fed whole,
 * byte by byte and in those pieces (ws_trace), each run must keep the
 * parser's promises (ws_trace_run), and all three must report the same
 * events: where the network cuts a stream must not change what it means.
 * tests/proto/fuzz.sh builds and runs it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ws_trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Limits around the edges of the frame formats (7-bit, 16-bit lengths). */
static const uint32_t limits[8] = {1, 2, 16, 125, 126, 127, 65535, 65536};

static void fail(const char *what, const char *why)
{
    fprintf(stderr, "fuzz_ws: %s: %s\n", what, why);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint32_t max_message = limits[data[0] & 7];
    uint64_t seed = 2 + data[1]; /* random pieces (0 and 1 are whole and bytewise) */
    data += 2;
    size -= 2;
    size_t cap = size + 1; /* every event takes at least one frame header */
    struct ws_trace_ev *a = malloc(cap * sizeof(*a)), *b = malloc(cap * sizeof(*b)),
                       *c = malloc(cap * sizeof(*c));
    if (!a || !b || !c)
        abort();
    size_t na, nb, nc;
    const char *why;
    if ((why = ws_trace_run(data, size, max_message, WS_TRACE_WHOLE, a, cap, &na)))
        fail("fed whole", why);
    if ((why = ws_trace_run(data, size, max_message, WS_TRACE_BYTEWISE, b, cap, &nb)))
        fail("fed byte by byte", why);
    if ((why = ws_trace_run(data, size, max_message, seed, c, cap, &nc)))
        fail("fed in pieces", why);
    if ((why = ws_trace_diff(a, na, b, nb)))
        fail("whole against byte by byte", why);
    if ((why = ws_trace_diff(a, na, c, nc)))
        fail("whole against pieces", why);
    free(a);
    free(b);
    free(c);
    return 0;
}
