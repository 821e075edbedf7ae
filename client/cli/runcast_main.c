/*
 * runcast: the command-line client of runcastd.
 *
 *   runcast pub    publish events (flags, or JSON lines)
 *   runcast tail   follow runs over WebSocket, resuming across reconnects
 *   runcast runs   list runs (HTTP API)
 *   runcast show   one run's snapshot (HTTP API)
 *   runcast demo   publish synthetic agent runs
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    cli_cmd_fn fn;
    const char *summary;
} cmds[] = {
    {"pub", cli_pub, "publish one event from flags, or JSON lines from stdin or a file"},
    {"tail", cli_tail, "follow runs (--run, --conv, --all) as JSON lines or --pretty"},
    {"runs", cli_runs, "list runs"},
    {"show", cli_show, "show one run's snapshot"},
    {"demo", cli_demo, "publish synthetic agent runs (completed, failed, silent)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: runcast COMMAND [options]   (runcast COMMAND --help for details)\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        fprintf(f, "  %-6s %s\n", cmds[i].name, cmds[i].summary);
    fprintf(f,
            "\naddresses (flags override the environment; defaults are runcastd's):\n"
            "  RUNCAST_INGEST      PUSH events to runcastd's PULL socket  [%s]\n"
            "  RUNCAST_INGEST_ACK  acknowledged publishing (REQ/REP)      [%s]\n"
            "  RUNCAST_HTTP        HTTP API and WebSocket (host:port)     [%s]\n"
            "\nexit status: 0 ok, 1 rejected event or failed run, 2 usage, 3 network\n",
            CLI_DEFAULT_INGEST, CLI_DEFAULT_INGEST_ACK, CLI_DEFAULT_HTTP);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("runcast %s\n", RUNCAST_VERSION);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strcmp(cmd, cmds[i].name) == 0)
            return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "runcast: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
