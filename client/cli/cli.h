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
#include <stdio.h>

#include <jansson.h>

#include "rc_buf.h"
#include "runcast.h"

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

/* runcastd's HTTP/WebSocket host:port from --http (flag, may be NULL), else
 * $RUNCAST_HTTP, else the default, into out.  False, with the message
 * printed for cmd, when it does not look like an address. */
bool cli_http_hostport(const char *cmd, const char *flag, char *out, size_t cap);

/* --ingest URL and --ingest-ack URL, the publishing subcommands' flags
 * (pub, demo): the getopt_long codes of their tables, the values taken by
 * cli_ingest_flag. */
enum { CLI_O_INGEST = 1000, CLI_O_INGEST_ACK }; /* above every subcommand's own codes */

struct cli_ingest {
    const char *ingest, *ingest_ack; /* NULL: not given */
};

/* For the default case of the flag switch: takes --ingest / --ingest-ack,
 * else ends the flags (cli_flag_end).  Returns -1 when opt was taken, else
 * the exit status. */
int cli_ingest_flag(const char *cmd, int opt, struct cli_ingest *in, void (*usage)(FILE *));

/* Client options with the ingest URLs from the flags, else
 * $RUNCAST_INGEST / $RUNCAST_INGEST_ACK, else the defaults; everything else
 * at the library's defaults. */
void cli_client_opts(struct rc_client_opts *co, const struct cli_ingest *in);

/* The last case of every subcommand's getopt switch: -h/--help prints the
 * usage on stdout (CLI_EXIT_OK); anything else points at --help on stderr
 * (CLI_EXIT_USAGE).  Returns the exit status. */
int cli_flag_end(const char *cmd, int opt, void (*usage)(FILE *));

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
