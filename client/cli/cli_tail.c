/*
 * runcast tail: follow runs over WebSocket (nng's ws dialer, JSON mode).
 *
 * Resume: the client remembers the broker epoch and, per run, the last seq
 * it printed.  After a disconnect it redials with jittered exponential
 * backoff and subscribes again with `since` (and `epoch`), so the broker
 * sends exactly the events after those seqs; anything it has printed
 * already is dropped by seq as a second line of defence.  On an epoch
 * change the broker answers with a `snap` (the old seqs mean nothing in the
 * new epoch) and tracking restarts from the snapshot's seq.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "cli.h"
#include "rc_alloc.h"
#include "rc_hash.h"
#include "rc_clock.h"
#include "rc_proto.h"

static void tail_usage(FILE *f)
{
    fprintf(f,
            "usage: runcast tail (--run R | --conv C | --all) [options]\n"
            "\n"
            "Subscribes over WebSocket and prints every message (ev, snap, gap) as one JSON\n"
            "line, or one readable line per event with --pretty.  Reconnects with jittered\n"
            "exponential backoff and resumes from the last seq of each run, with no gap and\n"
            "no duplicate while the broker still retains the events.\n"
            "\n"
            "  --run R             follow one run\n"
            "  --conv C            follow a conversation (runs that start later too)\n"
            "  --all               follow every run\n"
            "  --since N           resume after seq N (--run); RUN=N (repeatable) for\n"
            "                      --conv / --all\n"
            "  --epoch E           the epoch the --since seqs belong to\n"
            "  --no-snapshot       do not ask for a snapshot first\n"
            "  --pretty            one readable line per event\n"
            "  --until-terminal    (--run) exit when the run ends: 0 completed, 1 failed\n"
            "  --count N           exit 0 after N events\n"
            "  --retries N         give up (exit 3) after N failed reconnects in a row\n"
            "                      (default: retry forever)\n"
            "  --backoff-max DUR   longest wait between reconnects (default 5s)\n"
            "  --http HOST:PORT    [$RUNCAST_HTTP or %s]\n"
            "  -v, --verbose       also print hello/ok/hb/pong and reconnect notes\n"
            "  -h, --help          this text\n",
            CLI_DEFAULT_HTTP);
}

enum {
    O_RUN = 256,
    O_CONV,
    O_ALL,
    O_SINCE,
    O_EPOCH,
    O_NOSNAP,
    O_PRETTY,
    O_UNTIL,
    O_COUNT,
    O_RETRIES,
    O_BACKOFF,
    O_HTTP,
};

static const struct option tail_opts[] = {
    {"run", required_argument, NULL, O_RUN},
    {"conv", required_argument, NULL, O_CONV},
    {"all", no_argument, NULL, O_ALL},
    {"since", required_argument, NULL, O_SINCE},
    {"epoch", required_argument, NULL, O_EPOCH},
    {"no-snapshot", no_argument, NULL, O_NOSNAP},
    {"pretty", no_argument, NULL, O_PRETTY},
    {"until-terminal", no_argument, NULL, O_UNTIL},
    {"count", required_argument, NULL, O_COUNT},
    {"retries", required_argument, NULL, O_RETRIES},
    {"backoff-max", required_argument, NULL, O_BACKOFF},
    {"http", required_argument, NULL, O_HTTP},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* What the client has seen of one run. */
struct seen {
    char *run;
    uint64_t seq;
};

struct tail {
    const char *run, *conv;
    bool all, pretty, until_terminal, verbose, snapshot;
    uint64_t count_max, count;
    bool have_epoch;
    uint64_t epoch;
    struct seen *seen; /* in first-seen order */
    size_t n_seen, cap_seen;
    uint32_t *index; /* hash of run -> seen index + 1 (power-of-two slots) */
    size_t index_cap;
    int exit_code; /* -1: keep going */
    bool sub_failed;
};

/* Keyed (common/rc_hash.h): run ids come from publishers through the
 * broker, and an unkeyed hash would let one choose ids that collide here. */
static uint64_t hash_str(const char *s)
{
    return rc_hash_keyed(s, strlen(s));
}

/* Rebuilds the open-addressing index (slots hold array index + 1). */
static bool seen_reindex(struct tail *t, size_t cap)
{
    uint32_t *ix = rc_calloc(cap, sizeof(*ix));
    if (ix == NULL)
        return false;
    for (size_t i = 0; i < t->n_seen; i++) {
        size_t k = hash_str(t->seen[i].run) & (cap - 1);
        while (ix[k] != 0)
            k = (k + 1) & (cap - 1);
        ix[k] = (uint32_t)i + 1;
    }
    rc_free(t->index);
    t->index = ix;
    t->index_cap = cap;
    return true;
}

/* The entry of run, created (seq 0) when asked; NULL when absent or out of
 * memory.  Hashed, so `tail --all` on a broker with many runs stays cheap. */
static struct seen *seen_get(struct tail *t, const char *run, bool create)
{
    if (t->index_cap > 0) {
        size_t k = hash_str(run) & (t->index_cap - 1);
        for (; t->index[k] != 0; k = (k + 1) & (t->index_cap - 1))
            if (strcmp(t->seen[t->index[k] - 1].run, run) == 0)
                return &t->seen[t->index[k] - 1];
    }
    if (!create)
        return NULL;
    if (t->n_seen == t->cap_seen) {
        size_t cap = t->cap_seen ? t->cap_seen * 2 : 16;
        struct seen *s = rc_realloc(t->seen, cap * sizeof(*s));
        if (s == NULL)
            return NULL;
        t->seen = s;
        t->cap_seen = cap;
    }
    if ((t->n_seen + 1) * 10 >= t->index_cap * 7 &&
        !seen_reindex(t, t->index_cap ? t->index_cap * 2 : 64))
        return NULL;
    struct seen *s = &t->seen[t->n_seen];
    s->run = rc_strndup(run, strlen(run));
    if (s->run == NULL)
        return NULL;
    s->seq = 0;
    size_t k = hash_str(run) & (t->index_cap - 1);
    while (t->index[k] != 0)
        k = (k + 1) & (t->index_cap - 1);
    t->index[k] = (uint32_t)t->n_seen + 1;
    t->n_seen++;
    return s;
}

static void seen_reset(struct tail *t)
{
    for (size_t i = 0; i < t->n_seen; i++)
        rc_free(t->seen[i].run);
    t->n_seen = 0;
    if (t->index != NULL)
        memset(t->index, 0, t->index_cap * sizeof(*t->index));
}

static void fmt_time(int64_t ms, char *out, size_t cap)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&s, &tm);
    snprintf(out, cap, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* Prints s quoted, on one line, cut at max bytes. */
static void put_text(const char *s, size_t max)
{
    putchar('"');
    size_t n = 0;
    for (; *s && n < max; s++, n++) {
        if (*s == '\n')
            fputs("\\n", stdout);
        else if (*s == '"')
            fputs("\\\"", stdout);
        else if ((unsigned char)*s < 0x20)
            putchar(' ');
        else
            putchar(*s);
    }
    putchar('"');
    if (*s)
        fputs("...", stdout);
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void print_pretty(json_t *m, const char *op)
{
    if (strcmp(op, "ev") != 0 && strcmp(op, "snap") != 0 && strcmp(op, "gap") != 0) {
        char *s = json_dumps(m, JSON_COMPACT); /* hello, ok, hb, pong (with -v) */
        printf("-- %s\n", s ? s : op);
        free(s);
        return;
    }
    char tbuf[32] = "";
    json_t *ts = json_object_get(m, strcmp(op, "ev") == 0 ? "ts" : "last_event_at");
    if (json_is_integer(ts))
        fmt_time((int64_t)json_integer_value(ts), tbuf, sizeof(tbuf));
    const char *run = jstr(m, "run");
    if (strcmp(op, "gap") == 0) {
        printf("%-12s %s gap: events %lld..%lld no longer retained\n", tbuf, run,
               (long long)json_integer_value(json_object_get(m, "from")),
               (long long)json_integer_value(json_object_get(m, "to")));
        return;
    }
    long long seq = (long long)json_integer_value(json_object_get(m, "seq"));
    if (strcmp(op, "snap") == 0) {
        printf("%-12s %s #%lld snapshot: %s", tbuf, run, seq, jstr(m, "status"));
        if (json_object_get(m, "phase"))
            printf(" phase=%s", jstr(m, "phase"));
        printf(" tools=%zu output=%zuB\n", json_array_size(json_object_get(m, "tools")),
               strlen(jstr(m, "output")));
        return;
    }
    const char *type = jstr(m, "type");
    printf("%-12s %s #%lld %-12s", tbuf, run, seq, type);
    json_t *x;
    if (strcmp(type, "phase") == 0) {
        printf(" %s", jstr(m, "phase"));
    } else if (strcmp(type, "thinking") == 0 || strcmp(type, "delta") == 0) {
        putchar(' ');
        put_text(jstr(m, "text"), 100);
    } else if (strcmp(type, "tool") == 0 && (x = json_object_get(m, "tool")) != NULL) {
        json_t *id = json_object_get(x, "id");
        char *ids = json_is_string(id) ? NULL : json_dumps(id, JSON_ENCODE_ANY);
        printf(" %s %s %s",
               json_is_string(id) ? json_string_value(id)
               : ids              ? ids
                                  : "?",
               jstr(x, "name"), jstr(x, "status"));
        free(ids);
    } else if (strcmp(type, "verification") == 0 && (x = json_object_get(m, "item")) != NULL) {
        printf(" %s: %s", jstr(x, "label"), jstr(x, "status"));
    } else if (strcmp(type, "error") == 0 && (x = json_object_get(m, "error")) != NULL) {
        printf(" %s: %s", jstr(x, "code"), jstr(x, "message"));
    } else if (strcmp(type, "start") == 0 && json_object_get(m, "conv")) {
        printf(" conv=%s", jstr(m, "conv"));
    }
    if (json_is_true(json_object_get(m, "synthetic")))
        fputs(" (synthesized by runcastd)", stdout);
    putchar('\n');
}

static void emit(struct tail *t, json_t *m, const char *op)
{
    if (t->pretty) {
        print_pretty(m, op);
    } else {
        char *s = json_dumps(m, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s != NULL)
            puts(s);
        free(s);
    }
    fflush(stdout);
}

static bool run_wanted(struct tail *t, const char *run)
{
    return t->run == NULL || strcmp(t->run, run) == 0;
}

static void adopt_epoch(struct tail *t, uint64_t epoch)
{
    if (t->have_epoch && t->epoch != epoch)
        seen_reset(t); /* seqs of another epoch mean nothing here */
    t->have_epoch = true;
    t->epoch = epoch;
}

/* Handles one server message; sets t->exit_code to stop. */
static void handle(struct tail *t, json_t *m)
{
    const char *op = jstr(m, "op");
    if (strcmp(op, "hello") == 0) {
        if (t->verbose)
            emit(t, m, op);
        return;
    }
    if (strcmp(op, "ev") == 0) {
        const char *run = jstr(m, "run");
        uint64_t seq = (uint64_t)json_integer_value(json_object_get(m, "seq"));
        json_t *ep = json_object_get(m, "epoch");
        if (json_is_integer(ep))
            adopt_epoch(t, (uint64_t)json_integer_value(ep));
        struct seen *s = seen_get(t, run, true);
        if (s != NULL && seq <= s->seq)
            return; /* already printed (overlap after a resume) */
        if (s != NULL)
            s->seq = seq;
        emit(t, m, op);
        t->count++;
        if (t->count_max > 0 && t->count >= t->count_max)
            t->exit_code = CLI_EXIT_OK;
        const char *type = jstr(m, "type");
        if (t->until_terminal && run_wanted(t, run)) {
            if (strcmp(type, "complete") == 0)
                t->exit_code = CLI_EXIT_OK;
            else if (strcmp(type, "error") == 0)
                t->exit_code = CLI_EXIT_FAIL;
        }
        return;
    }
    if (strcmp(op, "snap") == 0) {
        const char *run = jstr(m, "run");
        json_t *ep = json_object_get(m, "epoch");
        if (json_is_integer(ep))
            adopt_epoch(t, (uint64_t)json_integer_value(ep));
        uint64_t seq = (uint64_t)json_integer_value(json_object_get(m, "seq"));
        struct seen *s = seen_get(t, run, true);
        if (s != NULL && seq > s->seq)
            s->seq = seq;
        emit(t, m, op);
        const char *status = jstr(m, "status");
        if (t->until_terminal && run_wanted(t, run)) {
            if (strcmp(status, "completed") == 0)
                t->exit_code = CLI_EXIT_OK;
            else if (strcmp(status, "failed") == 0)
                t->exit_code = CLI_EXIT_FAIL;
        }
        return;
    }
    if (strcmp(op, "gap") == 0) {
        emit(t, m, op);
        return;
    }
    if (strcmp(op, "err") == 0) {
        char *s = json_dumps(m, JSON_COMPACT);
        fprintf(stderr, "runcast tail: server error: %s\n", s ? s : "?");
        free(s);
        /* An error answering our sub (req 1) will not fix itself by retrying. */
        if (json_integer_value(json_object_get(m, "req")) == 1) {
            t->sub_failed = true;
            t->exit_code = CLI_EXIT_USAGE;
        }
        return;
    }
    if (t->verbose)
        emit(t, m, op);
}

static json_t *build_sub(struct tail *t)
{
    json_t *s = json_object();
    json_object_set_new(s, "op", json_string("sub"));
    json_object_set_new(s, "req", json_integer(1));
    if (t->run != NULL) {
        json_object_set_new(s, "run", json_string(t->run));
        /* An entry exists once the run was seen or --since was given
         * (--since 0: the whole retained history). */
        struct seen *x = seen_get(t, t->run, false);
        if (x != NULL)
            json_object_set_new(s, "since", json_integer((json_int_t)x->seq));
    } else {
        if (t->conv != NULL)
            json_object_set_new(s, "conv", json_string(t->conv));
        else
            json_object_set_new(s, "all", json_true());
        if (t->n_seen > 0) {
            /* The broker takes client frames of at most 64 KiB: with more
             * runs than fit, the most recently seen ones go in; the others
             * come back from their start and are dropped here by seq. */
            json_t *mp = json_object();
            size_t bytes = 200;
            for (size_t i = t->n_seen; i-- > 0;) {
                bytes += strlen(t->seen[i].run) + 26;
                if (bytes > 60000)
                    break;
                json_object_set_new(mp, t->seen[i].run, json_integer((json_int_t)t->seen[i].seq));
            }
            json_object_set_new(s, "since", mp);
        }
    }
    if (t->have_epoch && json_object_get(s, "since") != NULL)
        json_object_set_new(s, "epoch", json_integer((json_int_t)t->epoch));
    if (!t->snapshot)
        json_object_set_new(s, "snapshot", json_false());
    return s;
}

static int ws_send_text(nng_stream *st, const char *text)
{
    nng_aio *aio;
    int rv = nng_aio_alloc(&aio, NULL, NULL);
    if (rv != 0)
        return rv;
    /* Message mode (nng 1.5.2) sends the aio's message as one frame; the
     * iov covers the same bytes for builds that read the iov instead. */
    nng_msg *m;
    if ((rv = nng_msg_alloc(&m, 0)) != 0 || (rv = nng_msg_append(m, text, strlen(text))) != 0) {
        nng_aio_free(aio);
        return rv;
    }
    nng_iov iov = {.iov_buf = nng_msg_body(m), .iov_len = nng_msg_len(m)};
    nng_aio_set_iov(aio, 1, &iov);
    nng_aio_set_msg(aio, m);
    nng_aio_set_timeout(aio, 5000);
    nng_stream_send(st, aio);
    nng_aio_wait(aio);
    rv = nng_aio_result(aio);
    nng_msg *left = nng_aio_get_msg(aio); /* still ours unless the send consumed it */
    if (left != NULL)
        nng_msg_free(left);
    nng_aio_free(aio);
    return rv;
}

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* One connection: dial, subscribe, read until it drops.  Returns 0 when a
 * subscription was established (resets the backoff), else the nng error. */
static int one_session(struct tail *t, nng_stream_dialer *d, bool *established)
{
    nng_aio *aio;
    *established = false;
    int rv = nng_aio_alloc(&aio, NULL, NULL);
    if (rv != 0)
        return rv;
    nng_aio_set_timeout(aio, 5000);
    nng_stream_dialer_dial(d, aio);
    nng_aio_wait(aio);
    if ((rv = nng_aio_result(aio)) != 0) {
        nng_aio_free(aio);
        return rv;
    }
    nng_stream *st = nng_aio_get_output(aio, 0);
    json_t *sub = build_sub(t);
    char *text = json_dumps(sub, JSON_COMPACT);
    json_decref(sub);
    rv = text ? ws_send_text(st, text) : NNG_ENOMEM;
    free(text);
    nng_duration idle = 0, idle_max = 45000; /* idle_max: 3 x hb_ms once hello arrives */
    while (rv == 0 && t->exit_code < 0 && !g_stop) {
        nng_aio_set_timeout(aio, 500);
        nng_stream_recv(st, aio);
        nng_aio_wait(aio);
        rv = nng_aio_result(aio);
        if (rv == NNG_ETIMEDOUT) {
            rv = 0;
            idle += 500;
            if (idle >= idle_max)
                rv = NNG_ETIMEDOUT; /* no heartbeat: assume the connection is dead */
            continue;
        }
        if (rv != 0)
            break;
        idle = 0; /* any frame proves the connection alive */
        nng_msg *m = nng_aio_get_msg(aio);
        nng_aio_set_msg(aio, NULL);
        json_error_t je;
        json_t *j = json_loadb(nng_msg_body(m), nng_msg_len(m), JSON_DECODE_ANY, &je);
        nng_msg_free(m);
        if (j == NULL) {
            fprintf(stderr, "runcast tail: bad frame from server: %s\n", je.text);
            continue;
        }
        size_t n = json_is_array(j) ? json_array_size(j) : 1;
        for (size_t i = 0; i < n && t->exit_code < 0; i++) {
            json_t *msg = json_is_array(j) ? json_array_get(j, i) : j;
            if (!json_is_object(msg))
                continue;
            const char *op = jstr(msg, "op");
            if (strcmp(op, "hello") == 0) {
                json_t *hb = json_object_get(msg, "hb_ms");
                if (json_is_integer(hb) && json_integer_value(hb) > 0)
                    idle_max = (nng_duration)(3 * json_integer_value(hb) + 1000);
            } else if ((strcmp(op, "ok") == 0 &&
                        json_integer_value(json_object_get(msg, "req")) == 1) ||
                       strcmp(op, "ev") == 0 || strcmp(op, "snap") == 0) {
                *established = true;
            }
            handle(t, msg);
        }
        json_decref(j);
    }
    nng_stream_close(st);
    nng_stream_free(st);
    nng_aio_free(aio);
    return rv;
}

int cli_tail(int argc, char **argv)
{
    struct tail t;
    memset(&t, 0, sizeof(t));
    t.exit_code = -1;
    t.snapshot = true;
    const char *http = NULL;
    uint64_t retries = UINT64_MAX, backoff_max = 5000, v;
    int rc = CLI_EXIT_USAGE;
    bool have_since = false;
    uint64_t since_run = 0;
    char *since_pairs[64];
    size_t n_pairs = 0;
    bool have_epoch = false;
    uint64_t epoch = 0;

    optind = 1;
    int o;
    while ((o = getopt_long(argc, argv, "hv", tail_opts, NULL)) != -1) {
        switch (o) {
        case O_RUN:
            t.run = optarg;
            break;
        case O_CONV:
            t.conv = optarg;
            break;
        case O_ALL:
            t.all = true;
            break;
        case O_SINCE:
            if (strchr(optarg, '=') != NULL) {
                if (n_pairs == 64) {
                    cli_err("tail", "at most 64 --since RUN=N");
                    goto out;
                }
                since_pairs[n_pairs++] = optarg;
            } else if (cli_parse_u64(optarg, &since_run)) {
                have_since = true;
            } else {
                cli_err("tail", "--since wants a seq N or RUN=N, not '%s'", optarg);
                goto out;
            }
            break;
        case O_EPOCH:
            if (!cli_parse_u64(optarg, &epoch)) {
                cli_err("tail", "--epoch wants a number, not '%s'", optarg);
                goto out;
            }
            have_epoch = true;
            break;
        case O_NOSNAP:
            t.snapshot = false;
            break;
        case O_PRETTY:
            t.pretty = true;
            break;
        case O_UNTIL:
            t.until_terminal = true;
            break;
        case O_COUNT:
            if (!cli_parse_u64(optarg, &t.count_max) || t.count_max == 0) {
                cli_err("tail", "--count wants a positive number, not '%s'", optarg);
                goto out;
            }
            break;
        case O_RETRIES:
            if (!cli_parse_u64(optarg, &retries)) {
                cli_err("tail", "--retries wants a number, not '%s'", optarg);
                goto out;
            }
            break;
        case O_BACKOFF:
            if (!cli_parse_ms(optarg, &backoff_max) || backoff_max < 10) {
                cli_err("tail", "--backoff-max wants a duration >= 10ms, not '%s'", optarg);
                goto out;
            }
            break;
        case O_HTTP:
            http = optarg;
            break;
        case 'v':
            t.verbose = true;
            break;
        default:
            return cli_flag_end("tail", o, tail_usage);
        }
    }
    if (optind < argc) {
        cli_err("tail", "unexpected argument '%s' (runcast tail --help)", argv[optind]);
        goto out;
    }
    if ((t.run != NULL) + (t.conv != NULL) + t.all != 1) {
        cli_err("tail", "give exactly one of --run R, --conv C, --all");
        goto out;
    }
    const char *idn = t.run ? t.run : t.conv;
    if (idn != NULL && !rc_proto_valid_id(idn, strlen(idn), 128)) {
        cli_err("tail", "'%s' is not a valid id (1-128 of [A-Za-z0-9._:-])", idn);
        goto out;
    }
    if (t.until_terminal && t.run == NULL) {
        cli_err("tail", "--until-terminal needs --run");
        goto out;
    }
    if (have_since && t.run == NULL) {
        cli_err("tail", "--since N needs --run (use --since RUN=N with --conv/--all)");
        goto out;
    }
    if (n_pairs > 0 && t.run != NULL) {
        cli_err("tail", "with --run, give --since N");
        goto out;
    }
    if (have_epoch && !have_since && n_pairs == 0) {
        cli_err("tail", "--epoch only makes sense with --since");
        goto out;
    }
    if (have_since) {
        struct seen *s = seen_get(&t, t.run, true);
        if (s != NULL)
            s->seq = since_run;
    }
    for (size_t i = 0; i < n_pairs; i++) {
        char *eq = strrchr(since_pairs[i], '=');
        *eq = '\0';
        if (!rc_proto_valid_id(since_pairs[i], strlen(since_pairs[i]), 128) ||
            !cli_parse_u64(eq + 1, &v)) {
            cli_err("tail", "--since wants RUN=N with a valid run id and seq");
            goto out;
        }
        struct seen *s = seen_get(&t, since_pairs[i], true);
        if (s != NULL)
            s->seq = v;
    }
    if (have_epoch) {
        t.have_epoch = true;
        t.epoch = epoch;
    }

    char hp[256];
    if (!cli_http_hostport("tail", http, hp, sizeof(hp)))
        goto out;
    char url[300];
    snprintf(url, sizeof(url), "ws://%s/ws?format=json", hp);
    nng_stream_dialer *d;
    int rv = nng_stream_dialer_alloc(&d, url);
    if (rv != 0) {
        cli_err("tail", "cannot use %s: %s", url, nng_strerror(rv));
        goto out;
    }
    nng_stream_dialer_set_bool(d, "ws:msgmode", true);
    nng_stream_dialer_set_bool(d, NNG_OPT_WS_RECV_TEXT, true);
    nng_stream_dialer_set_bool(d, NNG_OPT_WS_SEND_TEXT, true);
    nng_stream_dialer_set_size(d, NNG_OPT_WS_RECVMAXFRAME, (size_t)64 << 20);
    nng_stream_dialer_set_size(d, NNG_OPT_RECVMAXSZ, (size_t)64 << 20);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    uint64_t failures = 0, backoff = 100;
    while (t.exit_code < 0 && !g_stop) {
        bool established = false;
        rv = one_session(&t, d, &established);
        if (t.exit_code >= 0 || g_stop)
            break;
        if (established) {
            failures = 0;
            backoff = 100;
        } else if (++failures > retries) {
            cli_err("tail", "giving up after %llu failed attempts to reach %s (%s)",
                    (unsigned long long)retries, url, nng_strerror(rv));
            t.exit_code = CLI_EXIT_NETWORK;
            break;
        }
        /* Full jitter: sleep uniformly in [backoff/2, backoff]. */
        uint64_t sleep_ms = backoff / 2 + nng_random() % (backoff / 2 + 1);
        if (t.verbose || failures == 1)
            fprintf(stderr, "runcast tail: connection %s (%s); retrying in %llu ms\n",
                    established ? "lost" : "failed", rv ? nng_strerror(rv) : "closed",
                    (unsigned long long)sleep_ms);
        for (uint64_t slept = 0; slept < sleep_ms && !g_stop; slept += 50)
            rc_clock_sleep_ms(sleep_ms - slept < 50 ? sleep_ms - slept : 50);
        backoff = backoff * 2 > backoff_max ? backoff_max : backoff * 2;
    }
    nng_stream_dialer_close(d);
    nng_stream_dialer_free(d);
    rc = t.exit_code >= 0 ? t.exit_code : CLI_EXIT_OK;
    if (g_stop && t.until_terminal && t.exit_code < 0)
        rc = 130;
out:
    seen_reset(&t);
    rc_free(t.seen);
    rc_free(t.index);
    return rc;
}
