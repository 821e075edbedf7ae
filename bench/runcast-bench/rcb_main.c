/*
 * runcast-bench: the load benchmark of runcast (issue 8).
 *
 *   runcast-bench SCENARIO [options]     SCENARIO: ingest ack fanout conns runs soak all
 *   runcast-bench --smoke [--json]       every scenario, tiny (CI; asserts no figures)
 *
 * Exit status: 0 when every scenario ran, 1 when one could not run (broker
 * missing, could not connect, hard cap hit), 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rcb.h"
#include "rcb_nng.h"
#include "rcb_raw.h"

static void *cap_thread(void *arg)
{
    (void)arg;
    for (;;) {
        rcb_sleep_ns(200000000);
        uint64_t k = atomic_load_explicit(&rcb_kill_ns, memory_order_acquire);
        if (k != 0 && rcb_now_ns() >= k) {
            fprintf(stderr,
                    "runcast-bench: scenario %s overran its hard cap; stopping the "
                    "process (spawned brokers die with it: PR_SET_PDEATHSIG)\n",
                    rcb_cur_name);
            fflush(stdout);
            _exit(1);
        }
    }
    return NULL;
}

/* ---- command line ---- */

static void usage(FILE *f)
{
    fprintf(f, "usage: runcast-bench SCENARIO [options]\n"
               "       runcast-bench --smoke [--json]\n"
               "\n"
               "Scenarios (each bounded in count and time, loopback only):\n"
               "  ingest   P publishers (publisher library) over PUSH, R runs, events of S bytes,\n"
               "           unbatched and batched, vs raw nng PUSH/PULL in the same run\n"
               "  ack      acknowledged publishing over REQ: events/s with batches, round-trip\n"
               "           latency, vs raw nng REQ/REP in the same run\n"
               "  fanout   W1 (1 run, 1 subscriber), W2 (1 run, S subscribers), W3 (R runs, 1\n"
               "           subscriber each): deliveries/s and publish-to-receive latency (open\n"
               "           loop, coordinated-omission corrected), vs raw nng WebSocket\n"
               "  conns    N idle WebSocket connections: broker memory per connection\n"
               "  runs     N concurrent runs with armed watchdogs: memory per run, creation\n"
               "           rate, watchdog lateness\n"
               "  soak     mixed load for --duration: broker memory at start, peak and end\n"
               "  raw      the raw nng baselines alone (no broker)\n"
               "  all      every scenario in turn (raw excluded: each scenario runs its own)\n"
               "\n"
               "Target (default: start the runcastd built next to runcast-bench on free ports):\n"
               "  --spawn PATH          runcastd to start\n"
               "  --broker-args STR     extra options for the started runcastd\n"
               "  --ingest URL --ingest-ack URL --http HOST:PORT [--pid PID]\n"
               "                        use a running broker instead (pid: for its RSS)\n"
               "\n"
               "Workload (0 or absent: the scenario's default, shown in its table):\n"
               "  -P, --publishers N    publisher threads          -R, --runs N     runs\n"
               "  -n, --events N        events per measurement     -s, --size B     event bytes\n"
               "  -b, --batch N         events per message         -S, --subs N     subscribers\n"
               "  -N, --conns N         connections (conns)        --addrs N        127.0.0.x "
               "sources\n"
               "  -r, --rate R          offered events/s (open loop; fanout: one step; ingest:\n"
               "                        the one-event-per-message phases, paced)\n"
               "  -w, --workload W      fanout: W1, W2, W3 or all; runs: mass, steady or all\n"
               "  --timeout-ms MS       runs: per-run watchdog\n"
               "  -d, --duration S      soak length; fanout: seconds per rate step\n"
               "  --cap S               hard wall-clock cap per scenario\n"
               "  --ws-client nng|epoll subscribers' WebSocket client: nng's ws dialer with aio\n"
               "                        callbacks (default), or plain sockets + epoll (cheaper\n"
               "                        per frame: shows whether the client is the limit)\n"
               "  --transport tcp|ipc   PUSH/PULL transport of the spawned broker's --ingest and\n"
               "                        of the raw baselines' sinks, alike (default tcp on\n"
               "                        127.0.0.1; ipc: a socket file under /tmp)\n"
               "  --raw-sink process|thread  the raw baselines' PULL sink and REP echo in a\n"
               "                        process of their own like the broker (default), or in\n"
               "                        the publishers' process (sharing nng's threads: slower)\n"
               "\n"
               "Output:\n"
               "  --json                one JSON document instead of tables\n"
               "  --smoke               tiny sizes (CI); asserts no figures\n"
               "  -q, --quiet           no progress on stderr\n");
}

static uint64_t num(const char *s, const char *opt)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < 0) {
        fprintf(stderr, "runcast-bench: %s wants a non-negative number, not '%s'\n", opt, s);
        exit(2);
    }
    return (uint64_t)v;
}

/* Under TSan only: nng's reaper destroys the mutexes of objects we freed
 * through nng's own (uninstrumented) atomics, which TSan reports as a race
 * on pthread_mutex_destroy inside libnng; nothing else is silenced. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
    return "race:pthread_mutex_destroy\n";
}

struct scenario {
    const char *name;
    int (*fn)(void);
    double cap_s;       /* default hard cap */
    double smoke_cap_s; /* in --smoke */
};

static const struct scenario scenarios[] = {
    {"ingest", rcb_s_ingest, 180, 15}, {"ack", rcb_s_ack, 120, 15},
    {"fanout", rcb_s_fanout, 300, 25}, {"conns", rcb_s_conns, 300, 15},
    {"runs", rcb_s_runs, 300, 15},     {"soak", rcb_s_soak, 0, 20},
    {"raw", rcb_s_raw, 120, 15},
};

static int run_one(const struct scenario *s)
{
    double cap = rcb_o.cap_s > 0 ? rcb_o.cap_s : rcb_o.smoke ? s->smoke_cap_s : s->cap_s;
    if (s->fn == rcb_s_soak && rcb_o.cap_s <= 0 && !rcb_o.smoke)
        cap = (rcb_o.duration_s > 0 ? rcb_o.duration_s : 60) + 120;
    snprintf(rcb_cur_name, sizeof(rcb_cur_name), "%s", s->name);
    uint64_t now = rcb_now_ns();
    rcb_set_deadline(now + (uint64_t)(cap * 1e9));
    /* grace after the cap: scenarios stop by themselves at the cap and still
     * stop the broker and report; only a hang gets the process killed */
    atomic_store_explicit(&rcb_kill_ns, now + (uint64_t)((cap + 30) * 1e9), memory_order_release);
    rcb_log("== %s (hard cap %.0f s)", s->name, cap);
    int rv = s->fn();
    atomic_store_explicit(&rcb_kill_ns, 0, memory_order_release);
    rcb_set_deadline(0);
    return rv;
}

int main(int argc, char **argv)
{
    /* the raw baseline's sink process (rcb_sink_new), before anything else
     * touches nng */
    if (argc == 5 && strcmp(argv[1], "--sink-child") == 0)
        return rcb_sink_child_main(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (argc == 4 && strcmp(argv[1], "--echo-child") == 0)
        return rcb_echo_child_main(argv[2], atoi(argv[3]));
    static const struct option lo[] = {
        {"ingest", required_argument, 0, 1000},
        {"ingest-ack", required_argument, 0, 1001},
        {"http", required_argument, 0, 1002},
        {"spawn", required_argument, 0, 1003},
        {"pid", required_argument, 0, 1004},
        {"broker-args", required_argument, 0, 1005},
        {"json", no_argument, 0, 1006},
        {"smoke", no_argument, 0, 1007},
        {"addrs", required_argument, 0, 1008},
        {"timeout-ms", required_argument, 0, 1009},
        {"cap", required_argument, 0, 1010},
        {"ws-client", required_argument, 0, 1011},
        {"transport", required_argument, 0, 1012},
        {"raw-sink", required_argument, 0, 1013},
        {"publishers", required_argument, 0, 'P'},
        {"runs", required_argument, 0, 'R'},
        {"events", required_argument, 0, 'n'},
        {"size", required_argument, 0, 's'},
        {"batch", required_argument, 0, 'b'},
        {"subs", required_argument, 0, 'S'},
        {"conns", required_argument, 0, 'N'},
        {"rate", required_argument, 0, 'r'},
        {"workload", required_argument, 0, 'w'},
        {"duration", required_argument, 0, 'd'},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "P:R:n:s:b:S:N:r:w:d:qh", lo, NULL)) != -1) {
        switch (c) {
        case 1000:
            rcb_o.ingest = optarg;
            break;
        case 1001:
            rcb_o.ack = optarg;
            break;
        case 1002:
            rcb_o.http = optarg;
            break;
        case 1003:
            rcb_o.spawn = optarg;
            break;
        case 1004:
            rcb_o.pid = (pid_t)num(optarg, "--pid");
            break;
        case 1005:
            rcb_o.broker_args = optarg;
            break;
        case 1006:
            rcb_o.json = true;
            break;
        case 1007:
            rcb_o.smoke = true;
            break;
        case 1008:
            rcb_o.addrs = (uint32_t)num(optarg, "--addrs");
            break;
        case 1009:
            rcb_o.timeout_ms = (uint32_t)num(optarg, "--timeout-ms");
            break;
        case 1010:
            rcb_o.cap_s = (double)num(optarg, "--cap");
            break;
        case 1011:
            if (strcmp(optarg, "nng") != 0 && strcmp(optarg, "epoll") != 0) {
                fprintf(stderr, "runcast-bench: --ws-client is nng or epoll\n");
                return 2;
            }
            rcb_o.ws_client = optarg;
            break;
        case 1012:
            if (strcmp(optarg, "tcp") != 0 && strcmp(optarg, "ipc") != 0) {
                fprintf(stderr, "runcast-bench: --transport is tcp or ipc\n");
                return 2;
            }
            rcb_o.ipc = strcmp(optarg, "ipc") == 0;
            break;
        case 1013:
            if (strcmp(optarg, "process") != 0 && strcmp(optarg, "thread") != 0) {
                fprintf(stderr, "runcast-bench: --raw-sink is process or thread\n");
                return 2;
            }
            rcb_o.sink_thread = strcmp(optarg, "thread") == 0;
            break;
        case 'P':
            rcb_o.publishers = (uint32_t)num(optarg, "-P");
            break;
        case 'R':
            rcb_o.runs = (uint32_t)num(optarg, "-R");
            break;
        case 'n':
            rcb_o.events = num(optarg, "-n");
            break;
        case 's':
            rcb_o.size = (uint32_t)num(optarg, "-s");
            break;
        case 'b':
            rcb_o.batch = (uint32_t)num(optarg, "-b");
            break;
        case 'S':
            rcb_o.subs = (uint32_t)num(optarg, "-S");
            break;
        case 'N':
            rcb_o.conns = (uint32_t)num(optarg, "-N");
            break;
        case 'r':
            rcb_o.rate = strtod(optarg, NULL);
            break;
        case 'w':
            rcb_o.workload = optarg;
            break;
        case 'd':
            rcb_o.duration_s = strtod(optarg, NULL);
            break;
        case 'q':
            rcb_o.quiet = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    const char *what = optind < argc ? argv[optind] : (rcb_o.smoke ? "all" : NULL);
    if (what == NULL || optind + 1 < argc) {
        usage(stderr);
        return 2;
    }
    if (rcb_o.size != 0 && (rcb_o.size < 64 || rcb_o.size > 60000)) {
        fprintf(stderr, "runcast-bench: --size must be 64..60000 bytes\n");
        return 2;
    }
    if (rcb_o.batch > 1024) {
        fprintf(stderr, "runcast-bench: --batch must be at most 1024 (the protocol's limit)\n");
        return 2;
    }
    bool known = strcmp(what, "all") == 0;
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
        known |= strcmp(what, scenarios[i].name) == 0;
    if (!known) {
        fprintf(stderr, "runcast-bench: unknown scenario '%s'\n", what);
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    (void)rcb_tag(); /* set once here, read by every thread later */
    setvbuf(stdout, NULL, _IOLBF, 0);

    pthread_t cap;
    pthread_create(&cap, NULL, cap_thread, NULL);
    pthread_detach(cap);

    if (!rcb_o.json) {
        long np = sysconf(_SC_NPROCESSORS_ONLN);
        double mem = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
        double la[3] = {0, 0, 0};
        getloadavg(la, 3);
        printf("runcast-bench %s: %ld cores, %.1f GiB, load %.2f%s\n", RUNCAST_VERSION, np,
               mem / (1 << 30), la[0],
               rcb_o.smoke ? " (smoke: tiny sizes, figures meaningless)" : "");
    }

    int failed = 0, ran = 0;
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
        bool sel = strcmp(what, scenarios[i].name) == 0 ||
                   (strcmp(what, "all") == 0 && scenarios[i].fn != rcb_s_raw);
        if (!sel)
            continue;
        ran++;
        if (run_one(&scenarios[i]) != 0)
            failed++;
    }
    if (ran == 0) {
        fprintf(stderr, "runcast-bench: unknown scenario '%s'\n", what);
        usage(stderr);
        return 2;
    }
    rcb_report_finish();
    if (failed)
        fprintf(stderr, "runcast-bench: %d scenario(s) could not run\n", failed);
    return failed ? 1 : 0;
}
