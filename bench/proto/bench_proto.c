/*
 * bench_proto: the cost of the wire codec per event, on one core.
 *
 * A typical event is ~200 bytes of msgpack (a `delta` with run, conv,
 * phase, id, ts, an 80-byte text chunk and a small data map).  Rows:
 *
 *   baseline: msgpack-c unpack_next  msgpack-c's own unpacking of the same
 *                                    bytes (a fresh zone per call, as the
 *                                    API does), no validation
 *   baseline: msgpack-c, reused zone msgpack_unpack into one cleared zone
 *   rc_mpr skip (walk only)          our reader walking every value
 *   decode+validate                  rc_proto_decode_event
 *   encode ev                        rc_proto_encode_ev (buffer reused)
 *   decode+validate+encode           the broker's per-event codec work
 *   ... batch 64                     one 64-event publish message,
 *                                    rc_proto_decode_publish + encode each,
 *                                    reported per event
 *   ev -> JSON (rc_json)             the ?format=json conversion, for scale
 *
 * Each row runs ROUNDS rounds of ITERS iterations and prints the best and
 * the median round in ns/event (the machine is shared: the best round is
 * the codec's cost, the median shows the noise).
 *
 *   bench_proto [iters [row-substring]]   (default 200000 iterations, all rows)
 */
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rc_clock.h"
#include "rc_json.h"
#include "rc_mpr.h"
#include "rc_proto.h"

#define ROUNDS 7
#define BATCH  64

static volatile uint64_t sink;

static void build_event(struct rc_buf *b, uint32_t i)
{
    char id[32];
    int idn = snprintf(id, sizeof id, "evt-%06u", i);
    rc_mpw_map(b, 8);
    rc_mpw_cstr(b, "run");
    rc_mpw_cstr(b, "run-7f3a9c2e-4b1d");
    rc_mpw_cstr(b, "conv");
    rc_mpw_cstr(b, "conv-12ab");
    rc_mpw_cstr(b, "type");
    rc_mpw_cstr(b, "delta");
    rc_mpw_cstr(b, "phase");
    rc_mpw_cstr(b, "streaming");
    rc_mpw_cstr(b, "id");
    rc_mpw_str(b, id, (size_t)idn);
    rc_mpw_cstr(b, "ts");
    rc_mpw_uint(b, 1700000000123ull + i);
    rc_mpw_cstr(b, "text");
    rc_mpw_cstr(b, "The retry loop in fetch_page() never resets its backoff, so after the first "
                   "429 every call");
    rc_mpw_cstr(b, "data");
    rc_mpw_map(b, 2);
    rc_mpw_cstr(b, "tokens");
    rc_mpw_uint(b, 17);
    rc_mpw_cstr(b, "model");
    rc_mpw_cstr(b, "m-large");
}

struct row {
    const char *name;
    double best, median;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs fn(arg) iters times per round; returns best and median ns per
 * event (per_call events per call). */
static const char *only; /* run only the rows whose name contains this */

static struct row measure(const char *name, void (*fn)(void *), void *arg, uint32_t iters,
                          uint32_t per_call)
{
    double r[ROUNDS];
    if (only != NULL && strstr(name, only) == NULL)
        return (struct row){name, 0, 0};
    for (uint32_t i = 0; i < iters / 10; i++) /* warm up */
        fn(arg);
    for (int k = 0; k < ROUNDS; k++) {
        uint64_t t0 = rc_clock_mono_ns();
        for (uint32_t i = 0; i < iters; i++)
            fn(arg);
        uint64_t t1 = rc_clock_mono_ns();
        r[k] = (double)(t1 - t0) / ((double)iters * per_call);
    }
    qsort(r, ROUNDS, sizeof r[0], cmp_double);
    return (struct row){name, r[0], r[ROUNDS / 2]};
}

struct ctx {
    struct rc_buf ev1;   /* one event */
    struct rc_buf batch; /* BATCH events in an array */
    struct rc_buf out;
    struct rc_buf evbytes; /* one encoded ev, for the JSON row */
    struct rc_proto_limits lim;
    msgpack_zone zone;
    uint64_t seq;
};

static void run_mpc_next(void *a)
{
    struct ctx *c = a;
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, (const char *)c->ev1.data, c->ev1.len, &off) !=
        MSGPACK_UNPACK_SUCCESS)
        abort();
    sink += u.data.via.map.size;
    msgpack_unpacked_destroy(&u);
}

static void run_mpc_zone(void *a)
{
    struct ctx *c = a;
    msgpack_object o;
    size_t off = 0;
    msgpack_zone_clear(&c->zone);
    if (msgpack_unpack((const char *)c->ev1.data, c->ev1.len, &off, &c->zone, &o) !=
        MSGPACK_UNPACK_SUCCESS)
        abort();
    sink += o.via.map.size;
}

static void run_mpc_zone_batch(void *a)
{
    struct ctx *c = a;
    msgpack_object o;
    size_t off = 0;
    msgpack_zone_clear(&c->zone);
    if (msgpack_unpack((const char *)c->batch.data, c->batch.len, &off, &c->zone, &o) !=
        MSGPACK_UNPACK_SUCCESS)
        abort();
    sink += o.via.array.size;
}

static void run_skip(void *a)
{
    struct ctx *c = a;
    struct rc_mpr r;
    rc_mpr_init(&r, c->ev1.data, c->ev1.len);
    if (!rc_mpr_skip(&r))
        abort();
    sink += rc_mpr_left(&r);
}

static void run_decode(void *a)
{
    struct ctx *c = a;
    struct rc_event ev;
    if (rc_proto_decode_event(c->ev1.data, c->ev1.len, &c->lim, &ev, NULL) != RC_PROTO_OK)
        abort();
    sink += ev.run.len;
}

static struct rc_event decoded; /* for the encode-only row */

static void run_encode(void *a)
{
    struct ctx *c = a;
    struct rc_ev_meta m = {.epoch = 1700000000, .seq = ++c->seq, .ts = 1700000000456};
    rc_buf_reset(&c->out);
    if (rc_proto_encode_ev(&c->out, &decoded, &m) != 0)
        abort();
    sink += c->out.len;
}

static void encode_cb(void *arg, uint32_t index, const struct rc_event *ev,
                      const struct rc_proto_error *err)
{
    struct ctx *c = arg;
    if (ev == NULL)
        abort();
    struct rc_ev_meta m = {.epoch = 1700000000, .seq = ++c->seq, .ts = 1700000000456};
    rc_buf_reset(&c->out);
    if (rc_proto_encode_ev(&c->out, ev, &m) != 0)
        abort();
    sink += c->out.len;
}

static void run_publish_single(void *a)
{
    struct ctx *c = a;
    uint32_t n;
    if (rc_proto_decode_publish(c->ev1.data, c->ev1.len, &c->lim, encode_cb, c, &n, NULL, NULL) !=
        RC_PROTO_OK)
        abort();
}

static void run_publish_batch(void *a)
{
    struct ctx *c = a;
    uint32_t n;
    if (rc_proto_decode_publish(c->batch.data, c->batch.len, &c->lim, encode_cb, c, &n, NULL,
                                NULL) != RC_PROTO_OK ||
        n != BATCH)
        abort();
}

static void run_json(void *a)
{
    struct ctx *c = a;
    rc_buf_reset(&c->out);
    if (rc_json_from_msgpack(c->evbytes.data, c->evbytes.len, &c->out) != 0)
        abort();
    sink += c->out.len;
}

int main(int argc, char **argv)
{
    uint32_t iters = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 200000;
    if (iters < 10)
        iters = 10;
    only = argc > 2 ? argv[2] : NULL;
    struct ctx c;
    memset(&c, 0, sizeof c);
    rc_proto_limits_default(&c.lim);
    rc_buf_init(&c.ev1);
    rc_buf_init(&c.batch);
    rc_buf_init(&c.out);
    rc_buf_init(&c.evbytes);
    msgpack_zone_init(&c.zone, 8192);
    build_event(&c.ev1, 123);
    rc_mpw_array(&c.batch, BATCH);
    for (uint32_t i = 0; i < BATCH; i++)
        build_event(&c.batch, i);
    if (rc_proto_decode_event(c.ev1.data, c.ev1.len, &c.lim, &decoded, NULL) != RC_PROTO_OK)
        abort();
    struct rc_ev_meta m = {.epoch = 1700000000, .seq = 1, .ts = 1700000000456};
    rc_proto_encode_ev(&c.evbytes, &decoded, &m);

    struct row rows[16];
    int n = 0;
    uint32_t bi = iters / BATCH + 1;
    rows[n++] = measure("baseline: msgpack-c unpack_next", run_mpc_next, &c, iters, 1);
    rows[n++] = measure("baseline: msgpack-c, reused zone", run_mpc_zone, &c, iters, 1);
    rows[n++] = measure("baseline: msgpack-c, batch 64", run_mpc_zone_batch, &c, bi, BATCH);
    rows[n++] = measure("rc_mpr skip (walk only)", run_skip, &c, iters, 1);
    rows[n++] = measure("decode+validate", run_decode, &c, iters, 1);
    rows[n++] = measure("encode ev", run_encode, &c, iters, 1);
    rows[n++] = measure("decode+validate+encode", run_publish_single, &c, iters, 1);
    rows[n++] = measure("decode+validate+encode, batch 64", run_publish_batch, &c, bi, BATCH);
    rows[n++] = measure("ev -> JSON (rc_json)", run_json, &c, iters / 10, 1);

    printf("bench_proto: event %zu bytes, ev %zu bytes, batch of %d = %zu bytes, %u iters x %d "
           "rounds\n",
           c.ev1.len, c.evbytes.len, BATCH, c.batch.len, iters, ROUNDS);
    printf("%-36s %12s %12s %14s\n", "", "best ns/ev", "median ns/ev", "M events/s");
    for (int i = 0; i < n; i++)
        if (rows[i].best > 0)
            printf("%-36s %12.1f %12.1f %14.2f\n", rows[i].name, rows[i].best, rows[i].median,
                   1e3 / rows[i].best);
    if (only == NULL)
        printf("goal decode+validate+encode < 300 ns/event: %s (single %.1f, batch %.1f)\n",
               rows[6].best < 300 && rows[7].best < 300 ? "met" : "NOT met", rows[6].best,
               rows[7].best);
    msgpack_zone_destroy(&c.zone);
    rc_buf_fini(&c.ev1);
    rc_buf_fini(&c.batch);
    rc_buf_fini(&c.out);
    rc_buf_fini(&c.evbytes);
    return 0;
}
