/*
 * runcast runs / runcast show RUN: the broker's HTTP run API, through nng's
 * HTTP client.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "cli.h"
#include "rc_clock.h"
#include "rc_proto.h"

/* GET http://hp/path; *body gets a NUL-terminated copy (free()).  Returns the
 * HTTP status, or -1 with a message printed. */
static int http_get(const char *cmd, const char *hp, const char *path, uint64_t timeout_ms,
                    char **body)
{
    char url[1024];
    snprintf(url, sizeof(url), "http://%s%s", hp, path);
    nng_url *u = NULL;
    nng_http_client *cl = NULL;
    nng_http_req *req = NULL;
    nng_http_res *res = NULL;
    nng_aio *aio = NULL;
    int status = -1, rv;
    *body = NULL;
    if ((rv = nng_url_parse(&u, url)) != 0 || (rv = nng_http_client_alloc(&cl, u)) != 0 ||
        (rv = nng_http_req_alloc(&req, u)) != 0 || (rv = nng_http_res_alloc(&res)) != 0 ||
        (rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
        cli_err(cmd, "%s: %s", url, nng_strerror(rv));
        goto out;
    }
    nng_http_req_set_header(req, "Accept", "application/json");
    nng_aio_set_timeout(aio, (nng_duration)timeout_ms);
    nng_http_client_transact(cl, req, res, aio);
    nng_aio_wait(aio);
    if ((rv = nng_aio_result(aio)) != 0) {
        cli_err(cmd, "GET %s: %s (is runcastd running? see --http / RUNCAST_HTTP)", url,
                nng_strerror(rv));
        goto out;
    }
    status = nng_http_res_get_status(res);
    void *data;
    size_t len;
    nng_http_res_get_data(res, &data, &len);
    *body = malloc(len + 1);
    if (*body != NULL) {
        memcpy(*body, data, len);
        (*body)[len] = '\0';
    }
out:
    nng_aio_free(aio);
    if (res)
        nng_http_res_free(res);
    if (req)
        nng_http_req_free(req);
    if (cl)
        nng_http_client_free(cl);
    if (u)
        nng_url_free(u);
    return status;
}

static void age(json_t *v, char *out, size_t cap)
{
    if (!json_is_integer(v)) {
        snprintf(out, cap, "-");
        return;
    }
    int64_t d = rc_clock_wall_ms() - (int64_t)json_integer_value(v);
    if (d < 0)
        d = 0;
    if (d < 10000)
        snprintf(out, cap, "%.1fs ago", (double)d / 1000.0);
    else if (d < 3600000)
        snprintf(out, cap, "%llds ago", (long long)(d / 1000));
    else
        snprintf(out, cap, "%lldh ago", (long long)(d / 3600000));
}

static const char *js(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

static void runs_usage(FILE *f)
{
    fprintf(f,
            "usage: runcast runs [--status S] [--conv C] [--limit N] [--json]\n"
            "\n"
            "Lists runs from GET /runs: run, conversation, status, phase, last seq and\n"
            "when the last event arrived.\n"
            "\n"
            "  --status S        pending, running, completed or failed\n"
            "  --conv C          runs of one conversation\n"
            "  --limit N         at most N runs\n"
            "  --json            print the API's JSON as is\n"
            "  --timeout DUR     HTTP timeout (default 5s)\n"
            "  --http HOST:PORT  [$RUNCAST_HTTP or %s]\n"
            "  -h, --help        this text\n",
            CLI_DEFAULT_HTTP);
}

static void show_usage(FILE *f)
{
    fprintf(f,
            "usage: runcast show RUN [--json]\n"
            "\n"
            "Prints one run's snapshot from GET /runs/RUN (status, phases, thinking,\n"
            "output, tools, verification, terminal), indented; --json prints it compact.\n"
            "\n"
            "  --json            compact JSON\n"
            "  --timeout DUR     HTTP timeout (default 5s)\n"
            "  --http HOST:PORT  [$RUNCAST_HTTP or %s]\n"
            "  -h, --help        this text\n"
            "\n"
            "exit status: 0 found, 1 no such run, 3 runcastd unreachable\n",
            CLI_DEFAULT_HTTP);
}

enum { O_STATUS = 256, O_CONV, O_LIMIT, O_JSON, O_HTTP, O_TIMEOUT };

static const struct option http_opts[] = {
    {"status", required_argument, NULL, O_STATUS},
    {"conv", required_argument, NULL, O_CONV},
    {"limit", required_argument, NULL, O_LIMIT},
    {"json", no_argument, NULL, O_JSON},
    {"http", required_argument, NULL, O_HTTP},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int report_status(const char *cmd, int status, const char *body)
{
    if (status < 0)
        return CLI_EXIT_NETWORK;
    if (status == 404) {
        cli_err(cmd, "not found%s%s", body && body[0] ? ": " : "", body ? body : "");
        return CLI_EXIT_FAIL;
    }
    cli_err(cmd, "HTTP %d%s%s", status, body && body[0] ? ": " : "", body ? body : "");
    return status >= 500 ? CLI_EXIT_NETWORK : CLI_EXIT_FAIL;
}

/* The flags runs and show share. */
struct http_flags {
    const char *http; /* --http, NULL: $RUNCAST_HTTP or the default */
    uint64_t timeout_ms;
    bool json;
};

/* Takes o when it is a shared flag (--json, --http, --timeout), else ends
 * the flags as every subcommand does (cli_flag_end): call it from the
 * default case.  Returns -1 when o was taken, else the exit status. */
static int http_flag(const char *cmd, int o, struct http_flags *f, void (*usage)(FILE *))
{
    switch (o) {
    case O_JSON:
        f->json = true;
        return -1;
    case O_HTTP:
        f->http = optarg;
        return -1;
    case O_TIMEOUT:
        if (!cli_parse_ms(optarg, &f->timeout_ms) || f->timeout_ms == 0) {
            cli_err(cmd, "--timeout wants a duration, not '%s'", optarg);
            return CLI_EXIT_USAGE;
        }
        return -1;
    default:
        return cli_flag_end(cmd, o, usage);
    }
}

/* GET path from runcastd's HTTP API; *body (free()) holds a 200's answer.
 * Returns CLI_EXIT_OK on 200, else the exit status (reported). */
static int get_ok(const char *cmd, const struct http_flags *f, const char *path, char **body)
{
    char hp[256];
    *body = NULL;
    if (!cli_http_hostport(cmd, f->http, hp, sizeof(hp)))
        return CLI_EXIT_USAGE;
    int st = http_get(cmd, hp, path, f->timeout_ms, body);
    if (st == 200)
        return CLI_EXIT_OK;
    int rc = report_status(cmd, st, *body);
    free(*body);
    *body = NULL;
    return rc;
}

int cli_runs(int argc, char **argv)
{
    const char *status = NULL, *conv = NULL;
    uint64_t limit = 0;
    bool have_limit = false;
    struct http_flags f = {.timeout_ms = 5000};
    optind = 1;
    int o, rc;
    while ((o = getopt_long(argc, argv, "h", http_opts, NULL)) != -1) {
        switch (o) {
        case O_STATUS:
            status = optarg;
            break;
        case O_CONV:
            conv = optarg;
            break;
        case O_LIMIT:
            if (!cli_parse_u64(optarg, &limit) || limit == 0) {
                cli_err("runs", "--limit wants a positive number, not '%s'", optarg);
                return CLI_EXIT_USAGE;
            }
            have_limit = true;
            break;
        default:
            if ((rc = http_flag("runs", o, &f, runs_usage)) >= 0)
                return rc;
        }
    }
    if (optind < argc) {
        cli_err("runs", "unexpected argument '%s'", argv[optind]);
        return CLI_EXIT_USAGE;
    }
    if (status != NULL && strcmp(status, "pending") && strcmp(status, "running") &&
        strcmp(status, "completed") && strcmp(status, "failed")) {
        cli_err("runs", "--status is one of pending, running, completed, failed");
        return CLI_EXIT_USAGE;
    }
    if (conv != NULL && !rc_proto_valid_id(conv, strlen(conv), 128)) {
        cli_err("runs", "--conv '%s' is not a valid id", conv);
        return CLI_EXIT_USAGE;
    }
    char path[512];
    int n = snprintf(path, sizeof(path), "/runs");
    char sep = '?';
    if (status) {
        n += snprintf(path + n, sizeof(path) - (size_t)n, "%cstatus=%s", sep, status);
        sep = '&';
    }
    if (conv) {
        n += snprintf(path + n, sizeof(path) - (size_t)n, "%cconv=%s", sep, conv);
        sep = '&';
    }
    if (have_limit)
        snprintf(path + n, sizeof(path) - (size_t)n, "%climit=%llu", sep,
                 (unsigned long long)limit);
    char *body;
    if ((rc = get_ok("runs", &f, path, &body)) != CLI_EXIT_OK)
        return rc;
    if (f.json) {
        fputs(body ? body : "", stdout);
        if (body && body[0] && body[strlen(body) - 1] != '\n')
            putchar('\n');
        free(body);
        return CLI_EXIT_OK;
    }
    json_error_t je;
    json_t *j = body ? json_loads(body, JSON_DECODE_ANY, &je) : NULL;
    free(body);
    json_t *arr = j;
    if (json_is_object(j))
        arr = json_object_get(j, "runs");
    if (!json_is_array(arr)) {
        cli_err("runs", "unexpected answer from /runs (not a JSON list)");
        json_decref(j);
        return CLI_EXIT_FAIL;
    }
    printf("%-28s %-16s %-10s %-12s %6s  %s\n", "RUN", "CONV", "STATUS", "PHASE", "SEQ",
           "LAST EVENT");
    size_t i;
    json_t *r;
    json_array_foreach(arr, i, r)
    {
        char a[32];
        age(json_object_get(r, "last_event_at"), a, sizeof(a));
        printf("%-28s %-16s %-10s %-12s %6lld  %s\n", js(r, "run"), js(r, "conv"), js(r, "status"),
               js(r, "phase"), (long long)json_integer_value(json_object_get(r, "seq")), a);
    }
    if (json_array_size(arr) == 0)
        printf("(no runs)\n");
    json_decref(j);
    return CLI_EXIT_OK;
}

int cli_show(int argc, char **argv)
{
    struct http_flags f = {.timeout_ms = 5000};
    optind = 1;
    int o, rc;
    while ((o = getopt_long(argc, argv, "h", http_opts, NULL)) != -1) {
        /* runs' own flags (--status, --conv, --limit) are unknown here */
        if ((rc = http_flag("show", o, &f, show_usage)) >= 0)
            return rc;
    }
    if (optind + 1 != argc) {
        cli_err("show", "give exactly one RUN (runcast show --help)");
        return CLI_EXIT_USAGE;
    }
    const char *run = argv[optind];
    if (!rc_proto_valid_id(run, strlen(run), 128)) {
        cli_err("show", "'%s' is not a valid run id (1-128 of [A-Za-z0-9._:-])", run);
        return CLI_EXIT_USAGE;
    }
    char path[300];
    snprintf(path, sizeof(path), "/runs/%s", run);
    char *body;
    if ((rc = get_ok("show", &f, path, &body)) != CLI_EXIT_OK)
        return rc;
    json_error_t je;
    json_t *j = body ? json_loads(body, JSON_DECODE_ANY, &je) : NULL;
    if (j == NULL) {
        fputs(body ? body : "", stdout);
        free(body);
        return CLI_EXIT_OK;
    }
    free(body);
    char *s = json_dumps(j, f.json ? JSON_COMPACT : JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s != NULL)
        puts(s);
    free(s);
    json_decref(j);
    return CLI_EXIT_OK;
}
