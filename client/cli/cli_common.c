/*
 * cli_common: addresses, errors and JSON conversion shared by the
 * subcommands of `runcast`.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rc_error.h"
#include "rc_proto.h"

const char *cli_addr(const char *flag, const char *env, const char *def)
{
    if (flag != NULL && flag[0] != '\0')
        return flag;
    const char *e = env != NULL ? getenv(env) : NULL;
    if (e != NULL && e[0] != '\0')
        return e;
    return def;
}

bool cli_hostport(const char *in, char *out, size_t cap)
{
    const char *p = in;
    const char *schemes[] = {"http://", "ws://", "tcp://"};
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t n = strlen(schemes[i]);
        if (strncmp(p, schemes[i], n) == 0) {
            p += n;
            break;
        }
    }
    size_t len = strcspn(p, "/?");
    if (len == 0 || len >= cap)
        return false;
    const char *colon = memchr(p, ':', len);
    if (colon == NULL || colon == p || colon + 1 == p + len)
        return false;
    for (const char *q = colon + 1; q < p + len; q++)
        if (!isdigit((unsigned char)*q))
            return false;
    memcpy(out, p, len);
    out[len] = '\0';
    return true;
}

bool cli_http_hostport(const char *cmd, const char *flag, char *out, size_t cap)
{
    const char *addr = cli_addr(flag, "RUNCAST_HTTP", CLI_DEFAULT_HTTP);
    if (!cli_hostport(addr, out, cap)) {
        cli_err(cmd, "bad address '%s' (want HOST:PORT)", addr);
        return false;
    }
    return true;
}

int cli_ingest_flag(const char *cmd, int opt, struct cli_ingest *in, void (*usage)(FILE *))
{
    switch (opt) {
    case CLI_O_INGEST:
        in->ingest = optarg;
        return -1;
    case CLI_O_INGEST_ACK:
        in->ingest_ack = optarg;
        return -1;
    default:
        return cli_flag_end(cmd, opt, usage);
    }
}

void cli_client_opts(struct rc_client_opts *co, const struct cli_ingest *in)
{
    rc_client_opts_init(co);
    co->push_url = cli_addr(in->ingest, "RUNCAST_INGEST", CLI_DEFAULT_INGEST);
    co->req_url = cli_addr(in->ingest_ack, "RUNCAST_INGEST_ACK", CLI_DEFAULT_INGEST_ACK);
}

int cli_flag_end(const char *cmd, int opt, void (*usage)(FILE *))
{
    if (opt == 'h') {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    fprintf(stderr, "(runcast %s --help for usage)\n", cmd);
    return CLI_EXIT_USAGE;
}

void cli_err(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "runcast %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_json_to_mp(struct rc_buf *b, const json_t *j)
{
    int rv;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        if ((rv = rc_mpw_map(b, (uint32_t)json_object_size(j))) != 0)
            return rv;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            if ((rv = rc_mpw_cstr(b, k)) != 0 || (rv = cli_json_to_mp(b, v)) != 0)
                return rv;
        }
        return 0;
    }
    case JSON_ARRAY: {
        if ((rv = rc_mpw_array(b, (uint32_t)json_array_size(j))) != 0)
            return rv;
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            if ((rv = cli_json_to_mp(b, v)) != 0)
                return rv;
        }
        return 0;
    }
    case JSON_STRING:
        return rc_mpw_str(b, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: {
        json_int_t v = json_integer_value(j);
        return v >= 0 ? rc_mpw_uint(b, (uint64_t)v) : rc_mpw_int(b, (int64_t)v);
    }
    case JSON_REAL:
        return rc_mpw_double(b, json_real_value(j));
    case JSON_TRUE:
        return rc_mpw_bool(b, true);
    case JSON_FALSE:
        return rc_mpw_bool(b, false);
    case JSON_NULL:
        return rc_mpw_nil(b);
    }
    return RC_EINVAL;
}

json_t *cli_json_parse(const char *text, char *err, size_t errcap)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (j == NULL)
        snprintf(err, errcap, "invalid JSON at column %d: %s", je.column, je.text);
    return j;
}

bool cli_parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || !isdigit((unsigned char)s[0]))
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

bool cli_parse_ms(const char *s, uint64_t *out)
{
    if (s == NULL || !isdigit((unsigned char)s[0]))
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return false;
    uint64_t mul;
    if (*end == '\0' || strcmp(end, "ms") == 0)
        mul = 1;
    else if (strcmp(end, "s") == 0)
        mul = 1000;
    else if (strcmp(end, "m") == 0)
        mul = 60000;
    else
        return false;
    if (v > UINT64_MAX / mul)
        return false;
    *out = v * mul;
    return true;
}
