/*
 * Scenario `conns`: N idle WebSocket connections (default 100,000) spread
 * over several 127.0.0.x source addresses (one address pair allows ~28,000
 * connections), and the broker's memory per connection: RSS from /proc and
 * jemalloc's allocated bytes from /metrics, before and after.  Issue 6's
 * goal: at most 4 KiB per connection.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "rcb.h"

static void settle(void)
{
    rcb_sleep_ns(rcb_o.smoke ? 200000000ull : 2000000000ull);
}

int rcb_s_conns(void)
{
    bool sm = rcb_o.smoke;
    uint32_t N = rcb_o.conns ? rcb_o.conns : sm ? 200 : 100000;
    uint32_t A = rcb_o.addrs ? rcb_o.addrs : N / 20000 + 1;
    if (A < 2)
        A = 2;

    rcb_report_begin("conns", "idle WebSocket connections: broker memory per connection");
    rcb_report_param("N", "%u", N);
    rcb_report_param("source_addrs", "%u", A);
    char limnote[160] = "";
    if (rcb_raise_nofile((uint64_t)N + 2000) != 0) {
        /* without CAP_SYS_RESOURCE the hard limit stays; both this process
         * and the broker it starts hold one descriptor per connection */
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        uint32_t fit = rl.rlim_cur > 1500 ? (uint32_t)(rl.rlim_cur - 1500) : 0;
        if (fit < N) {
            snprintf(limnote, sizeof(limnote),
                     "RLIMIT_NOFILE hard limit %llu here (no CAP_SYS_RESOURCE): %u of %u",
                     (unsigned long long)rl.rlim_cur, fit, N);
            rcb_log("conns: %s", limnote);
            N = fit;
        }
    }
    rcb_report_param("N_run", "%u", N);

    struct rcb_broker b;
    char maxc[32];
    snprintf(maxc, sizeof(maxc), "%u", N + 1000);
    const char *extra[] = {"--publisher-grace", "0", "--ws-max-conns", maxc, NULL};
    if (rcb_broker_start(&b, extra) != 0) {
        rcb_report_end(false, "could not start or reach runcastd");
        return -1;
    }
    settle();
    struct rcb_mem m0, m1, m2;
    rcb_broker_mem(&b, &m0);
    uint32_t ok = 0;
    char err[200];
    uint64_t t0 = rcb_now_ns();
    rcb_log("conns: opening %u connections from %u source addresses", N, A);
    struct rcb_idle *c =
        rcb_idle_open(b.http_host, b.http_port, "/ws", N, A, &ok, err, sizeof(err));
    uint64_t t1 = rcb_now_ns();
    rcb_log("conns: %u upgraded in %.1f s%s%s", ok, (double)(t1 - t0) / 1e9, err[0] ? ": " : "",
            err);
    settle();
    rcb_broker_mem(&b, &m1);
    char *mt = rcb_metrics(&b);
    static const char *const subs_names[] = {"runcast_ws_connections", "runcast_subscribers",
                                             "runcast_subscribers_connected",
                                             "runcast_ws_connected", NULL};
    double connected = rcb_metric_any(mt, subs_names, NULL);
    free(mt);
    rcb_idle_close(c);
    settle();
    rcb_broker_mem(&b, &m2);

    char note[256];
    snprintf(note, sizeof(note), "%s%s%s", limnote, limnote[0] && err[0] ? "; " : "", err);
    rcb_fig("connections upgraded", ok, "conns", ">= 100,000", note[0] ? note : NULL);
    rcb_fig("connect + upgrade rate", rcb_rate(ok, t1 - t0), "conns/s", NULL, NULL);
    rcb_fig("broker-reported connections", connected, "conns", NULL, "/metrics");
    double n = ok ? ok : NAN;
    rcb_fig("RSS per connection", (m1.rss - m0.rss) / n, "B", "<= 4,096", "VmRSS delta / N");
    rcb_fig("allocated per connection", (m1.allocated - m0.allocated) / n, "B", "<= 4,096",
            "jemalloc allocated delta / N");
    rcb_fig("broker RSS before", m0.rss / 1048576.0, "MiB", NULL, NULL);
    rcb_fig("broker RSS with connections", m1.rss / 1048576.0, "MiB", NULL, NULL);
    rcb_fig("broker RSS after close", m2.rss / 1048576.0, "MiB", NULL, NULL);
    rcb_fig("allocated before", m0.allocated / 1048576.0, "MiB", NULL, NULL);
    rcb_fig("allocated with connections", m1.allocated / 1048576.0, "MiB", NULL, NULL);
    rcb_fig("allocated after close", m2.allocated / 1048576.0, "MiB", NULL, NULL);
    rcb_broker_stop(&b);
    bool done = ok > 0;
    rcb_report_end(done, done ? NULL : err);
    return done ? 0 : -1;
}
