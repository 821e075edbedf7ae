/*
 * runcast demo: publishes synthetic agent runs against a running broker, so
 * a newcomer sees runcast work: some runs complete, some fail, and some go
 * silent mid-run so that runcastd's watchdog ends them with a synthesized
 * error.  One thread per run, all on one shared (thread-safe) client.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rc_clock.h"
#include "rc_error.h"
#include "rc_proto.h"
#include "runcast.h"

enum demo_kind { DEMO_COMPLETE, DEMO_FAIL, DEMO_SILENT };
static const char *kind_name[] = {"completes", "fails", "goes silent"};

struct demo_run {
    struct rc_client *c;
    char run[96];
    char conv[96];
    enum demo_kind kind;
    uint64_t delay_ms;
    uint64_t silent_timeout_ms;
    int err; /* first publish error */
    pthread_t th;
};

static void step(struct demo_run *d, int rv)
{
    if (rv != RC_OK && d->err == RC_OK)
        d->err = rv;
    rc_clock_sleep_ms(d->delay_ms);
}

static void stream_text(struct demo_run *d, bool thinking, const char *text)
{
    /* Publish word by word, as a model streams tokens. */
    const char *p = text;
    while (*p) {
        size_t n = strcspn(p, " ");
        if (p[n] == ' ')
            n++;
        char chunk[128];
        snprintf(chunk, sizeof(chunk), "%.*s", (int)n, p);
        int rv = thinking ? rc_client_thinking(d->c, d->run, chunk, NULL)
                          : rc_client_delta(d->c, d->run, chunk, NULL);
        if (rv != RC_OK && d->err == RC_OK)
            d->err = rv;
        rc_clock_sleep_ms(d->delay_ms / 4);
        p += n;
    }
}

/* {"args": {"query": q}} or {"result": r} as a msgpack map (tool extras). */
static void kv(struct rc_buf *b, const char *outer, const char *k, const char *v)
{
    rc_buf_reset(b);
    rc_mpw_map(b, 1);
    rc_mpw_cstr(b, outer);
    if (k != NULL) {
        rc_mpw_map(b, 1);
        rc_mpw_cstr(b, k);
    }
    rc_mpw_cstr(b, v);
}

static void *demo_thread(void *arg)
{
    struct demo_run *d = arg;
    struct rc_client *c = d->c;
    struct rc_client_timeout to = {.phase = "*",
                                   .ms = d->kind == DEMO_SILENT ? d->silent_timeout_ms : 60000};
    struct rc_buf b;
    rc_buf_init(&b);
    step(d, rc_client_start(c, d->run, d->conv, &to, 1, 0, NULL));
    step(d, rc_client_phase(c, d->run, "routing", NULL));
    stream_text(d, true, "The user wants the weather in Lisbon and a packing list. ");
    step(d, rc_client_phase(c, d->run, "planning", NULL));
    stream_text(d, true, "Plan: look up the forecast, then draft the list. ");
    if (d->kind == DEMO_SILENT) {
        /* The backend "crashes" here: no more events, no terminal.  runcastd's
         * watchdog ends the run after the phase timeout. */
        rc_buf_fini(&b);
        return NULL;
    }
    step(d, rc_client_phase(c, d->run, "execute", NULL));
    kv(&b, "args", "city", "Lisbon");
    step(d, rc_client_tool(c, d->run, "t1", "weather.lookup", "running", b.data, b.len, NULL));
    if (d->kind == DEMO_FAIL) {
        kv(&b, "error", NULL, "upstream returned 503");
        step(d, rc_client_tool(c, d->run, "t1", "weather.lookup", "failed", b.data, b.len, NULL));
        struct rc_client_result r;
        int rv = rc_client_error(c, d->run, "tool_failed",
                                 "weather.lookup failed: upstream returned 503", &r);
        if (rv != RC_OK && d->err == RC_OK)
            d->err = rv;
        rc_buf_fini(&b);
        return NULL;
    }
    kv(&b, "result", NULL, "21C, sunny, light wind");
    step(d, rc_client_tool(c, d->run, "t1", "weather.lookup", "done", b.data, b.len, NULL));
    step(d, rc_client_phase(c, d->run, "verify", NULL));
    step(d, rc_client_verification(c, d->run, "v1", "forecast is for Lisbon", "pending", NULL));
    step(d, rc_client_verification(c, d->run, "v1", "forecast is for Lisbon", "passed", NULL));
    step(d, rc_client_phase(c, d->run, "streaming", NULL));
    stream_text(d, false,
                "Lisbon will be sunny and about 21C. Pack: light layers, sunglasses, "
                "comfortable shoes and a thin jacket for the evening.");
    rc_buf_reset(&b);
    rc_mpw_map(&b, 1);
    rc_mpw_cstr(&b, "tokens");
    rc_mpw_uint(&b, 42);
    struct rc_client_result r;
    int rv = rc_client_complete(c, d->run, b.data, b.len, &r);
    if (rv != RC_OK && d->err == RC_OK)
        d->err = rv;
    rc_buf_fini(&b);
    return NULL;
}

static void demo_usage(FILE *f)
{
    fprintf(f,
            "usage: runcast demo [--runs N] [--fast] [options]\n"
            "\n"
            "Publishes synthetic agent runs (phases, thinking, tool calls, verification,\n"
            "streamed output) to a running runcastd, one thread per run: a third of them\n"
            "complete, a third fail with an error, and a third go silent mid-run so the\n"
            "watchdog ends them.  Watch them with `runcast tail --all --pretty` in another\n"
            "terminal, or list them afterwards with `runcast runs`.\n"
            "\n"
            "  --runs N            how many runs (default 6)\n"
            "  --fast              short delays (under a second; the silent runs end 1 s\n"
            "                      later; for scripts and tests)\n"
            "  --delay DUR         pause between steps (default 300ms; --fast: 20ms)\n"
            "  --silent-timeout DUR  watchdog timeout of the silent runs (default 3s;\n"
            "                      --fast: 1s)\n"
            "  --prefix P          run id prefix (default demo-<time>-<random>)\n"
            "  --conv C            conversation of the runs (default: the prefix)\n"
            "  --ingest URL        [$RUNCAST_INGEST or %s]\n"
            "  --ingest-ack URL    [$RUNCAST_INGEST_ACK or %s]\n"
            "  -h, --help          this text\n",
            CLI_DEFAULT_INGEST, CLI_DEFAULT_INGEST_ACK);
}

enum { O_RUNS = 256, O_FAST, O_DELAY, O_SILENT, O_PREFIX, O_CONV };

static const struct option demo_opts[] = {
    {"runs", required_argument, NULL, O_RUNS},
    {"fast", no_argument, NULL, O_FAST},
    {"delay", required_argument, NULL, O_DELAY},
    {"silent-timeout", required_argument, NULL, O_SILENT},
    {"prefix", required_argument, NULL, O_PREFIX},
    {"conv", required_argument, NULL, O_CONV},
    {"ingest", required_argument, NULL, CLI_O_INGEST},
    {"ingest-ack", required_argument, NULL, CLI_O_INGEST_ACK},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int cli_demo(int argc, char **argv)
{
    uint64_t runs = 6, delay = 300, silent = 3000;
    bool fast = false, have_delay = false, have_silent = false;
    const char *prefix = NULL, *conv = NULL;
    struct cli_ingest addrs = {0};
    optind = 1;
    int o, rc_flag;
    while ((o = getopt_long(argc, argv, "h", demo_opts, NULL)) != -1) {
        switch (o) {
        case O_RUNS:
            if (!cli_parse_u64(optarg, &runs) || runs == 0 || runs > 1000) {
                cli_err("demo", "--runs wants 1..1000, not '%s'", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case O_FAST:
            fast = true;
            break;
        case O_DELAY:
            if (!cli_parse_ms(optarg, &delay) || delay > 60000) {
                cli_err("demo", "--delay wants a duration up to 60s, not '%s'", optarg);
                return CLI_EXIT_USAGE;
            }
            have_delay = true;
            break;
        case O_SILENT:
            if (!cli_parse_ms(optarg, &silent) || silent == 0) {
                cli_err("demo", "--silent-timeout wants a duration, not '%s'", optarg);
                return CLI_EXIT_USAGE;
            }
            have_silent = true;
            break;
        case O_PREFIX:
            prefix = optarg;
            break;
        case O_CONV:
            conv = optarg;
            break;
        default:
            if ((rc_flag = cli_ingest_flag("demo", o, &addrs, demo_usage)) >= 0)
                return rc_flag;
        }
    }
    if (optind < argc) {
        cli_err("demo", "unexpected argument '%s'", argv[optind]);
        return CLI_EXIT_USAGE;
    }
    if (fast && !have_delay)
        delay = 20;
    if (fast && !have_silent)
        silent = 1000;
    char pbuf[64];
    if (prefix == NULL) {
        char rnd[33];
        rc_client_new_id(rnd); /* two demos in the same second get different runs */
        snprintf(pbuf, sizeof(pbuf), "demo-%lld-%.4s", (long long)(rc_clock_wall_ms() / 1000), rnd);
        prefix = pbuf;
    }
    if (!rc_proto_valid_id(prefix, strlen(prefix), 80)) {
        cli_err("demo", "--prefix '%s' is not a valid id (1-80 of [A-Za-z0-9._:-])", prefix);
        return CLI_EXIT_USAGE;
    }
    if (conv == NULL)
        conv = prefix;
    if (!rc_proto_valid_id(conv, strlen(conv), 80)) {
        cli_err("demo", "--conv '%s' is not a valid id", conv);
        return CLI_EXIT_USAGE;
    }

    struct rc_client_opts co;
    cli_client_opts(&co, &addrs);
    co.ack_retries = 2;
    struct rc_client *c;
    int rv = rc_client_open_opts(&c, &co);
    if (rv != RC_OK) {
        cli_err("demo", "cannot open the client: %s", rc_error_message(rv));
        return CLI_EXIT_USAGE;
    }
    struct demo_run *d = calloc(runs, sizeof(*d));
    if (d == NULL) {
        rc_client_close(c);
        return CLI_EXIT_FAIL;
    }
    printf("runcast demo: %llu runs (prefix %s, conversation %s) to %s / %s\n",
           (unsigned long long)runs, prefix, conv, co.push_url, co.req_url);
    for (uint64_t i = 0; i < runs; i++) {
        d[i].c = c;
        snprintf(d[i].run, sizeof(d[i].run), "%s-%llu", prefix, (unsigned long long)(i + 1));
        snprintf(d[i].conv, sizeof(d[i].conv), "%s", conv);
        d[i].kind = (enum demo_kind)(i % 3);
        d[i].delay_ms = delay;
        d[i].silent_timeout_ms = silent;
        printf("  %-28s %s\n", d[i].run, kind_name[d[i].kind]);
    }
    fflush(stdout);
    for (uint64_t i = 0; i < runs; i++)
        pthread_create(&d[i].th, NULL, demo_thread, &d[i]);
    int rc = CLI_EXIT_OK;
    for (uint64_t i = 0; i < runs; i++) {
        pthread_join(d[i].th, NULL);
        if (d[i].err != RC_OK) {
            cli_err("demo", "%s: %s", d[i].run, rc_error_message(d[i].err));
            rc = d[i].err == RC_ETIMEDOUT ? CLI_EXIT_NETWORK : CLI_EXIT_FAIL;
        }
    }
    struct rc_client_stats st;
    rc_client_flush(c, co.close_timeout_ms);
    rc_client_get_stats(c, &st);
    if (rc_client_close(c) != RC_OK) {
        cli_err("demo", "some events could not be handed to runcastd (is it running?)");
        rc = CLI_EXIT_NETWORK;
    }
    printf("runcast demo: done: %llu events pushed in %llu messages, %llu acknowledged; the "
           "silent runs end by watchdog after %llu ms.\n"
           "  see them: runcast runs --conv %s    one run: runcast show %s-1\n",
           (unsigned long long)st.events_pushed, (unsigned long long)st.messages_pushed,
           (unsigned long long)st.events_acked, (unsigned long long)silent, conv, prefix);
    free(d);
    return rc;
}
