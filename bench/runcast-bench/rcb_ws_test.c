/*
 * Tests of runcast-bench's WebSocket machinery against its own raw nng ws
 * baseline server (no broker): both subscriber clients (nng's dialer and the
 * hand-written epoll one) receive every frame, single and coalesced, with
 * latency samples; the hand-written idle connections complete the upgrade
 * from several 127.0.0.x source addresses.  Loopback, free ports, < 1 s.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "rcb.h"

/* Under TSan: Debian's libnng is not instrumented; when its reaper thread
 * destroys the mutex of a dialer or stream already freed by the caller, the
 * hand-off (nng's own atomics) is invisible and TSan reports a race on
 * pthread_mutex_destroy inside libnng.  Only that report is ignored: nng's
 * mutexes and condition variables are still modelled, so the hand-offs
 * between our aio callbacks stay checked.  TSan calls this hook when it
 * exists; other builds ignore it. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
    return "race:pthread_mutex_destroy\n";
}

static void deliver(const char *client, uint32_t conns, uint64_t per_conn, uint32_t per_frame)
{
    rcb_o.ws_client = client;
    rcb_o.quiet = true;
    struct rcb_wsbase *w = rcb_wsbase_new(200, per_frame);
    cr_assert_not_null(w);
    int port = rcb_wsbase_port(w);
    cr_assert_gt(port, 0);
    char url[64];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d/ws", port);
    struct rcb_subs *s = rcb_subs_new(url, conns, NULL, NULL);
    cr_assert_not_null(s);
    cr_assert_eq(rcb_subs_wait_connected(s, 5000), 0);
    struct rcb_subs_stats st;
    uint64_t dl = rcb_now_ns() + 5000000000ull;
    do {
        rcb_subs_stats(s, &st);
        rcb_sleep_ns(1000000);
    } while (st.hellos < conns && rcb_now_ns() < dl);
    cr_assert_eq(st.hellos, conns, "%s: %lu hellos", client, (unsigned long)st.hellos);
    cr_assert_eq(rcb_wsbase_go(w, per_conn, 0), (int)conns);
    uint64_t want = conns * per_conn * per_frame;
    dl = rcb_now_ns() + 10000000000ull;
    do {
        rcb_subs_stats(s, &st);
        rcb_sleep_ns(1000000);
    } while (st.evs < want && rcb_now_ns() < dl);
    cr_assert_eq(st.evs, want, "%s: got %lu of %lu", client, (unsigned long)st.evs,
                 (unsigned long)want);
    cr_assert_eq(st.closed, 0);
    struct rcb_hist *h = rcb_hist_new();
    rcb_subs_hist(s, h);
    cr_assert_eq(h->count, want, "every ev carries a timestamp");
    cr_assert_gt(rcb_hist_pct(h, 50), 0);
    rcb_hist_free(h);
    /* a new generation starts empty */
    rcb_subs_hist_reset(s);
    h = rcb_hist_new();
    rcb_subs_hist(s, h);
    cr_assert_eq(h->count, 0);
    rcb_hist_free(h);
    rcb_subs_free(s);
    rcb_wsbase_free(w);
}

Test(ws, nng_client_single_frames)
{
    deliver("nng", 4, 200, 1);
}

Test(ws, nng_client_coalesced_frames)
{
    deliver("nng", 3, 50, 32);
}

Test(ws, epoll_client_single_frames)
{
    deliver("epoll", 4, 200, 1);
}

Test(ws, epoll_client_coalesced_frames)
{
    deliver("epoll", 3, 50, 32);
}

Test(ws, idle_connections_upgrade_from_several_sources)
{
    rcb_o.quiet = true;
    struct rcb_wsbase *w = rcb_wsbase_new(200, 1);
    cr_assert_not_null(w);
    int port = rcb_wsbase_port(w);
    cr_assert_gt(port, 0);
    uint32_t ok = 0;
    char err[200];
    struct rcb_idle *c = rcb_idle_open("127.0.0.1", port, "/ws", 60, 3, &ok, err, sizeof(err));
    cr_assert_not_null(c);
    cr_assert_eq(ok, 60, "upgraded %u: %s", ok, err);
    rcb_idle_close(c);
    rcb_wsbase_free(w);
}

Test(ws, idle_connections_report_a_refused_upgrade)
{
    rcb_o.quiet = true;
    struct rcb_wsbase *w = rcb_wsbase_new(200, 1);
    cr_assert_not_null(w);
    int port = rcb_wsbase_port(w);
    cr_assert_gt(port, 0);
    uint32_t ok = 0;
    char err[200];
    /* the baseline listens on /ws only: another path is refused */
    struct rcb_idle *c = rcb_idle_open("127.0.0.1", port, "/nope", 5, 2, &ok, err, sizeof(err));
    cr_assert_eq(ok, 0);
    cr_assert_neq(err[0], 0);
    rcb_idle_close(c);
    rcb_wsbase_free(w);
}
