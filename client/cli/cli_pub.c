/*
 * runcast pub: publish one event from flags, or JSON lines from stdin or a
 * file.  Ordinary events go fire-and-forget over PUSH; complete and error
 * (and everything with --ack) are acknowledged over REQ.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rc_error.h"
#include "rc_proto.h"
#include "runcast.h"

#define MAX_TIMEOUTS 32

static void pub_usage(FILE *f)
{
    fprintf(f,
            "usage: runcast pub --run R --type T [event flags] [--ack]\n"
            "       runcast pub --file F|- [--run R] [--conv C] [--ack]   (JSON lines)\n"
            "\n"
            "Publishes events to runcastd.  Ordinary events are fire-and-forget (PUSH);\n"
            "complete and error events are always acknowledged.  With --ack every event\n"
            "is acknowledged and its sequence number printed.\n"
            "\n"
            "event flags:\n"
            "  --run R               run id (1-128 of [A-Za-z0-9._:-]); required\n"
            "  --conv C              conversation id\n"
            "  --type T              start, phase, thinking, delta, tool, verification,\n"
            "                        heartbeat, complete, error, or x-<custom>; required\n"
            "  --phase P             phase entered (required for --type phase)\n"
            "  --text S              text chunk (thinking, delta)\n"
            "  --data JSON           payload (any JSON; sent as msgpack)\n"
            "  --tool JSON           tool call, an object with \"id\" (type tool)\n"
            "  --item JSON           verification item, an object with \"id\"\n"
            "  --error-code C        error code (type error)\n"
            "  --error-message M     error message (type error)\n"
            "  --id ID               idempotency key (generated for acknowledged events)\n"
            "  --ts MS               publisher time, ms since the epoch (default: now)\n"
            "  --timeout PHASE=DUR   watchdog timeout for a phase ('*' = default); start only,\n"
            "                        repeatable; DUR like 500ms, 30s, 2m\n"
            "  --deadline DUR        overall run deadline (start only)\n"
            "\n"
            "input and delivery:\n"
            "  --file F              read one JSON object per line from F ('-': stdin);\n"
            "                        --run/--conv fill in lines that lack them\n"
            "  --ack                 acknowledge every event; print its seq (single event)\n"
            "                        or one JSON result per line (--file)\n"
            "  --wait DUR            wait for runcastd per attempt / to flush (default 2s)\n"
            "  --retries N           resends on timeout, same id (default 4)\n"
            "  --ingest URL          PUSH address   [$RUNCAST_INGEST or %s]\n"
            "  --ingest-ack URL      REQ address    [$RUNCAST_INGEST_ACK or %s]\n"
            "  -h, --help            this text\n"
            "\n"
            "exit status: 0 all accepted, 1 an event was rejected, 2 usage, 3 runcastd\n"
            "unreachable (not acknowledged or not flushed in time)\n",
            CLI_DEFAULT_INGEST, CLI_DEFAULT_INGEST_ACK);
}

enum {
    O_RUN = 256,
    O_CONV,
    O_TYPE,
    O_PHASE,
    O_TEXT,
    O_DATA,
    O_TOOL,
    O_ITEM,
    O_ECODE,
    O_EMSG,
    O_ID,
    O_TS,
    O_TIMEOUT,
    O_DEADLINE,
    O_FILE,
    O_ACK,
    O_WAIT,
    O_RETRIES,
};

static const struct option pub_opts[] = {
    {"run", required_argument, NULL, O_RUN},
    {"conv", required_argument, NULL, O_CONV},
    {"type", required_argument, NULL, O_TYPE},
    {"phase", required_argument, NULL, O_PHASE},
    {"text", required_argument, NULL, O_TEXT},
    {"data", required_argument, NULL, O_DATA},
    {"tool", required_argument, NULL, O_TOOL},
    {"item", required_argument, NULL, O_ITEM},
    {"error-code", required_argument, NULL, O_ECODE},
    {"error-message", required_argument, NULL, O_EMSG},
    {"id", required_argument, NULL, O_ID},
    {"ts", required_argument, NULL, O_TS},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"deadline", required_argument, NULL, O_DEADLINE},
    {"file", required_argument, NULL, O_FILE},
    {"ack", no_argument, NULL, O_ACK},
    {"wait", required_argument, NULL, O_WAIT},
    {"retries", required_argument, NULL, O_RETRIES},
    {"ingest", required_argument, NULL, CLI_O_INGEST},
    {"ingest-ack", required_argument, NULL, CLI_O_INGEST_ACK},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const char *known_types[] = {"start",        "phase",     "thinking", "delta", "tool",
                                    "verification", "heartbeat", "complete", "error"};

static bool valid_type(const char *t)
{
    if (strncmp(t, "x-", 2) == 0 && t[2] != '\0')
        return true;
    for (size_t i = 0; i < sizeof(known_types) / sizeof(known_types[0]); i++)
        if (strcmp(t, known_types[i]) == 0)
            return true;
    return false;
}

static void print_reject(const char *where, const struct rc_client_result *r)
{
    if (r->err == RC_EPROTO)
        fprintf(stderr, "runcast pub: %s%srejected: %s%s%s%s: %s\n", where ? where : "",
                where ? ": " : "", r->code, r->field[0] ? " (field " : "", r->field,
                r->field[0] ? ")" : "", r->message);
    else
        fprintf(stderr, "runcast pub: %s%s%s (%s)\n", where ? where : "", where ? ": " : "",
                r->message[0] ? r->message : rc_error_message(r->err), rc_error_name(r->err));
}

static int exit_for(int err)
{
    if (err == RC_OK)
        return CLI_EXIT_OK;
    if (err == RC_ETIMEDOUT || err == RC_EOVERLOAD || err == RC_EIO || err == RC_ECLOSED)
        return CLI_EXIT_NETWORK;
    return CLI_EXIT_FAIL;
}

/* Converts a JSON flag value to msgpack into b; object: require an object with "id". */
static bool flag_json(const char *flag, const char *text, bool object, struct rc_buf *b)
{
    char err[160];
    json_t *j = cli_json_parse(text, err, sizeof(err));
    if (j == NULL) {
        cli_err("pub", "--%s: %s", flag, err);
        return false;
    }
    bool ok = true;
    if (object && (!json_is_object(j) || json_object_get(j, "id") == NULL)) {
        cli_err("pub", "--%s must be a JSON object with an \"id\", e.g. '{\"id\":\"t1\"}'", flag);
        ok = false;
    }
    if (ok && cli_json_to_mp(b, j) != 0) {
        cli_err("pub", "--%s: cannot encode", flag);
        ok = false;
    }
    json_decref(j);
    return ok;
}

static int pub_lines(struct rc_client *c, FILE *in, const char *name, const char *def_run,
                     const char *def_conv, bool ack)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned long lineno = 0;
    int worst = CLI_EXIT_OK;
    struct rc_buf b;
    rc_buf_init(&b);
    while ((n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        size_t sp = strspn(line, " \t");
        if (line[sp] == '\0')
            continue;
        char where[300];
        snprintf(where, sizeof(where), "%s:%lu", name, lineno);
        char err[160];
        json_t *j = cli_json_parse(line, err, sizeof(err));
        if (j == NULL || !json_is_object(j)) {
            cli_err("pub", "%s: %s", where, j == NULL ? err : "not a JSON object");
            json_decref(j);
            if (ack)
                printf("{\"line\":%lu,\"error\":{\"code\":\"malformed\",\"message\":\"not a JSON "
                       "object\"}}\n",
                       lineno);
            if (worst == CLI_EXIT_OK)
                worst = CLI_EXIT_USAGE;
            continue;
        }
        if (def_run != NULL && json_object_get(j, "run") == NULL)
            json_object_set_new(j, "run", json_string(def_run));
        if (def_conv != NULL && json_object_get(j, "conv") == NULL)
            json_object_set_new(j, "conv", json_string(def_conv));
        rc_buf_reset(&b);
        int rv = cli_json_to_mp(&b, j);
        json_decref(j);
        struct rc_client_result r;
        if (rv == 0)
            rv = rc_client_publish_raw(c, b.data, b.len, ack ? RC_DELIVER_ACK : RC_DELIVER_DEFAULT,
                                       &r);
        else
            r.err = rv, snprintf(r.message, sizeof(r.message), "cannot encode");
        if (ack) {
            json_t *o = json_object();
            json_object_set_new(o, "line", json_integer((json_int_t)lineno));
            if (rv == RC_OK) {
                json_object_set_new(o, "seq", json_integer((json_int_t)r.seq));
                json_object_set_new(o, "epoch", json_integer((json_int_t)r.epoch));
                json_object_set_new(o, "id", json_string(r.id));
                if (r.dup)
                    json_object_set_new(o, "dup", json_true());
            } else {
                json_t *e = json_object();
                json_object_set_new(e, "code", json_string(r.code[0] ? r.code : rc_error_name(rv)));
                json_object_set_new(e, "message", json_string(r.message));
                if (r.field[0])
                    json_object_set_new(e, "field", json_string(r.field));
                json_object_set_new(o, "error", e);
            }
            char *s = json_dumps(o, JSON_COMPACT);
            if (s != NULL)
                puts(s);
            free(s);
            json_decref(o);
            fflush(stdout);
        }
        if (rv != RC_OK) {
            print_reject(where, &r);
            int e = exit_for(rv);
            if (e > worst)
                worst = e;
        }
    }
    free(line);
    rc_buf_fini(&b);
    if (ferror(in)) {
        cli_err("pub", "%s: read error", name);
        return CLI_EXIT_USAGE;
    }
    return worst;
}

int cli_pub(int argc, char **argv)
{
    struct rc_client_event ev;
    memset(&ev, 0, sizeof(ev));
    struct rc_client_timeout timeouts[MAX_TIMEOUTS];
    char *timeout_phase[MAX_TIMEOUTS];
    uint32_t n_timeouts = 0;
    const char *data = NULL, *tool = NULL, *item = NULL, *file = NULL;
    struct cli_ingest addrs = {0};
    bool ack = false;
    uint64_t wait_ms = 2000, retries = 4, v;
    int rc = CLI_EXIT_USAGE;

    optind = 1;
    int o, rc_flag;
    while ((o = getopt_long(argc, argv, "h", pub_opts, NULL)) != -1) {
        switch (o) {
        case O_RUN:
            ev.run = optarg;
            break;
        case O_CONV:
            ev.conv = optarg;
            break;
        case O_TYPE:
            ev.type = optarg;
            break;
        case O_PHASE:
            ev.phase = optarg;
            break;
        case O_TEXT:
            ev.text = optarg;
            ev.text_len = strlen(optarg);
            break;
        case O_DATA:
            data = optarg;
            break;
        case O_TOOL:
            tool = optarg;
            break;
        case O_ITEM:
            item = optarg;
            break;
        case O_ECODE:
            ev.error_code = optarg;
            break;
        case O_EMSG:
            ev.error_message = optarg;
            break;
        case O_ID:
            ev.id = optarg;
            break;
        case O_TS:
            if (!cli_parse_u64(optarg, &v) || v > INT64_MAX) {
                cli_err("pub", "--ts wants milliseconds since the epoch, not '%s'", optarg);
                goto out;
            }
            ev.ts = (int64_t)v;
            break;
        case O_TIMEOUT: {
            char *eq = strrchr(optarg, '=');
            if (eq == NULL || eq == optarg || !cli_parse_ms(eq + 1, &v) || v == 0) {
                cli_err("pub", "--timeout wants PHASE=DURATION (e.g. '*=30s'), not '%s'", optarg);
                goto out;
            }
            if (n_timeouts == MAX_TIMEOUTS) {
                cli_err("pub", "at most %d --timeout flags", MAX_TIMEOUTS);
                goto out;
            }
            timeout_phase[n_timeouts] = optarg;
            *eq = '\0';
            timeouts[n_timeouts].phase = optarg;
            timeouts[n_timeouts].ms = v;
            n_timeouts++;
            break;
        }
        case O_DEADLINE:
            if (!cli_parse_ms(optarg, &v) || v == 0) {
                cli_err("pub", "--deadline wants a duration (e.g. 5m), not '%s'", optarg);
                goto out;
            }
            ev.deadline_ms = v;
            break;
        case O_FILE:
            file = optarg;
            break;
        case O_ACK:
            ack = true;
            break;
        case O_WAIT:
            if (!cli_parse_ms(optarg, &wait_ms) || wait_ms == 0 || wait_ms > 3600000) {
                cli_err("pub", "--wait wants a duration (e.g. 2s), not '%s'", optarg);
                goto out;
            }
            break;
        case O_RETRIES:
            if (!cli_parse_u64(optarg, &retries) || retries > 100) {
                cli_err("pub", "--retries wants 0..100, not '%s'", optarg);
                goto out;
            }
            break;
        default:
            if ((rc_flag = cli_ingest_flag("pub", o, &addrs, pub_usage)) >= 0)
                return rc_flag;
        }
    }
    (void)timeout_phase;
    if (optind < argc) {
        cli_err("pub", "unexpected argument '%s' (runcast pub --help)", argv[optind]);
        goto out;
    }
    if (ev.run != NULL && !rc_proto_valid_id(ev.run, strlen(ev.run), 128)) {
        cli_err("pub", "--run '%s' is not a valid id (1-128 of [A-Za-z0-9._:-])", ev.run);
        goto out;
    }
    if (ev.conv != NULL && !rc_proto_valid_id(ev.conv, strlen(ev.conv), 128)) {
        cli_err("pub", "--conv '%s' is not a valid id (1-128 of [A-Za-z0-9._:-])", ev.conv);
        goto out;
    }
    if (file == NULL) {
        if (ev.run == NULL || ev.type == NULL) {
            cli_err("pub", "give --run and --type (or --file for JSON lines); see --help");
            goto out;
        }
        if (!valid_type(ev.type)) {
            cli_err("pub",
                    "unknown --type '%s' (start, phase, thinking, delta, tool, verification, "
                    "heartbeat, complete, error, x-...)",
                    ev.type);
            goto out;
        }
        if (strcmp(ev.type, "phase") == 0 && ev.phase == NULL) {
            cli_err("pub", "--type phase needs --phase");
            goto out;
        }
        if (strcmp(ev.type, "tool") == 0 && tool == NULL) {
            cli_err("pub", "--type tool needs --tool '{\"id\":...}'");
            goto out;
        }
        if (strcmp(ev.type, "verification") == 0 && item == NULL) {
            cli_err("pub", "--type verification needs --item '{\"id\":...}'");
            goto out;
        }
        if (strcmp(ev.type, "error") == 0 && (ev.error_code == NULL || ev.error_message == NULL)) {
            cli_err("pub", "--type error needs --error-code and --error-message");
            goto out;
        }
        if ((n_timeouts > 0 || ev.deadline_ms > 0) && strcmp(ev.type, "start") != 0) {
            cli_err("pub", "--timeout and --deadline only go with --type start");
            goto out;
        }
    } else if (ev.type != NULL || ev.phase != NULL || ev.text != NULL || data || tool || item ||
               ev.error_code || ev.error_message || ev.id || n_timeouts || ev.deadline_ms) {
        cli_err("pub", "--file takes the events from JSON lines; only --run and --conv may "
                       "be given as defaults");
        goto out;
    }

    struct rc_buf bdata, btool, bitem;
    rc_buf_init(&bdata);
    rc_buf_init(&btool);
    rc_buf_init(&bitem);
    FILE *in = NULL;
    struct rc_client *c = NULL;
    if ((data && !flag_json("data", data, false, &bdata)) ||
        (tool && !flag_json("tool", tool, true, &btool)) ||
        (item && !flag_json("item", item, true, &bitem)))
        goto done;
    ev.data = bdata.data;
    ev.data_len = bdata.len;
    ev.tool = btool.data;
    ev.tool_len = btool.len;
    ev.item = bitem.data;
    ev.item_len = bitem.len;
    ev.timeouts = timeouts;
    ev.n_timeouts = n_timeouts;

    if (file != NULL) {
        in = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
        if (in == NULL) {
            cli_err("pub", "cannot open %s: %m", file);
            goto done;
        }
    }

    struct rc_client_opts co;
    cli_client_opts(&co, &addrs);
    co.ack_timeout_ms = (uint32_t)wait_ms;
    co.close_timeout_ms = (uint32_t)wait_ms;
    co.queue_wait_ms = (uint32_t)wait_ms;
    co.ack_retries = (uint32_t)retries;
    int rv = rc_client_open_opts(&c, &co);
    if (rv != RC_OK) {
        cli_err("pub", "cannot open the client (%s / %s): %s", co.push_url, co.req_url,
                rc_error_message(rv));
        goto done;
    }
    if (file != NULL) {
        rc = pub_lines(c, in, strcmp(file, "-") == 0 ? "stdin" : file, ev.run, ev.conv, ack);
    } else {
        struct rc_client_result r;
        rv = rc_client_publish(c, &ev, ack ? RC_DELIVER_ACK : RC_DELIVER_DEFAULT, &r);
        if (rv == RC_OK && ack) {
            printf("%llu\n", (unsigned long long)r.seq);
        } else if (rv != RC_OK) {
            print_reject(NULL, &r);
        }
        rc = exit_for(rv);
    }
    rv = rc_client_close(c);
    c = NULL;
    if (rv != RC_OK) {
        cli_err("pub",
                "events could not be handed to runcastd at %s within %llu ms (is it running?)",
                co.push_url, (unsigned long long)wait_ms);
        if (rc == CLI_EXIT_OK)
            rc = CLI_EXIT_NETWORK;
    }
done:
    if (in != NULL && in != stdin)
        fclose(in);
    rc_client_close(c);
    rc_buf_fini(&bdata);
    rc_buf_fini(&btool);
    rc_buf_fini(&bitem);
out:
    return rc;
}
