/*
 * cli.h: shared pieces of the `runcast` command-line client.
 *
 * Each subcommand lives in its own file and has the signature of
 * cli_cmd_fn.  Addresses come from flags, then RUNCAST_* environment
 * variables, then runcastd's defaults.
 */
#ifndef RC_CLI_H
#define RC_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "rc_buf.h"

#define CLI_DEFAULT_INGEST     "tcp://127.0.0.1:7450"
#define CLI_DEFAULT_INGEST_ACK "tcp://127.0.0.1:7451"
#define CLI_DEFAULT_HTTP       "127.0.0.1:7480"

/* Exit statuses, shared by every subcommand. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAIL = 1,    /* an event was rejected; a run failed (tail --until-terminal) */
    CLI_EXIT_USAGE = 2,   /* bad flags or input */
    CLI_EXIT_NETWORK = 3, /* runcastd unreachable / gave up */
};

typedef int (*cli_cmd_fn)(int argc, char **argv);

int cli_pub(int argc, char **argv);
int cli_tail(int argc, char **argv);
int cli_runs(int argc, char **argv);
int cli_show(int argc, char **argv);
int cli_demo(int argc, char **argv);

/* flag value, else $env, else def. */
const char *cli_addr(const char *flag, const char *env, const char *def);

/* "host:port", "http://host:port" or "ws://host:port[/ws]" -> host:port
 * (into out).  Returns false when it does not look like an address. */
bool cli_hostport(const char *in, char *out, size_t cap);

/* Prints "runcast CMD: msg" to stderr. */
void cli_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* JSON -> msgpack (rc_mpw_*).  Integers become msgpack ints, reals doubles. */
int cli_json_to_mp(struct rc_buf *b, const json_t *j);

/* Parses a JSON text; on error writes a message into err. */
json_t *cli_json_parse(const char *text, char *err, size_t errcap);

/* Parses a non-negative integer; false on junk or overflow. */
bool cli_parse_u64(const char *s, uint64_t *out);

/* A duration: "250ms", "2s", "1m" or plain milliseconds. */
bool cli_parse_ms(const char *s, uint64_t *out);

#endif
