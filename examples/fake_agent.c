/*
 * fake_agent: publishes one fake agent run through the runcast publisher
 * library: start (with watchdog timeouts), phases, thinking, a tool call,
 * a verification item, streamed output deltas, and complete.
 *
 *   fake_agent [RUN] [PUSH_URL REQ_URL]
 *
 * Ordinary events go fire-and-forget (batched while a send is in flight);
 * complete is acknowledged, and the program prints the seq the broker gave
 * it.  Build: part of the runcast tree (target fake_agent); against an
 * installed runcast:
 *   cc -std=c17 fake_agent.c $(pkg-config --cflags --static --libs runcast-client)
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#endif
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "runcast.h"

static void pause_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    const char *run = argc > 1 ? argv[1] : "fake-agent-1";

    struct rc_client_opts o;
    rc_client_opts_init(&o); /* tcp://127.0.0.1:7450 and :7451, runcastd's defaults */
    if (argc > 3) {
        o.push_url = argv[2];
        o.req_url = argv[3];
    }
    struct rc_client *c;
    int rv = rc_client_open_opts(&c, &o);
    if (rv != 0) {
        fprintf(stderr, "fake_agent: open: %s\n", rc_client_strerror(rv));
        return 1;
    }

    /* The run may spend at most 30 s in any phase and 2 min overall. */
    struct rc_client_timeout t[] = {{"*", 30000}, {"execute", 60000}};
    rc_client_start(c, run, "conv-demo", t, 2, 120000, NULL);

    rc_client_phase(c, run, "planning", NULL);
    rc_client_thinking(c, run, "The user asks for 17 * 23. ", NULL);
    rc_client_thinking(c, run, "I will use the calculator tool.", NULL);

    rc_client_phase(c, run, "execute", NULL);
    /* Tool extras are a msgpack map: {"args": "17*23"} here, hand-encoded. */
    static const unsigned char args[] = {0x81, 0xa4, 'a', 'r', 'g', 's',
                                         0xa5, '1',  '7', '*', '2', '3'};
    rc_client_tool(c, run, "call-1", "calculator", "running", args, sizeof(args), NULL);
    pause_ms(50);
    static const unsigned char result[] = {0x81, 0xa6, 'r',  'e',  's', 'u',
                                           'l',  't',  0xcd, 0x01, 0x87};
    rc_client_tool(c, run, "call-1", "calculator", "done", result, sizeof(result), NULL);

    rc_client_phase(c, run, "verify", NULL);
    rc_client_verification(c, run, "check-1", "391 / 23 == 17", "passed", NULL);

    rc_client_phase(c, run, "streaming", NULL);
    const char *words[] = {"17 ", "* ", "23 ", "= ", "391."};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        rc_client_delta(c, run, words[i], NULL);

    /* complete is acknowledged by default: it returns once runcastd has
     * accepted it (or after retries with the same idempotency id). */
    struct rc_client_result r;
    rv = rc_client_complete(c, run, NULL, 0, &r);
    if (rv == 0)
        printf("%s completed: terminal seq %llu (epoch %llu)\n", run, (unsigned long long)r.seq,
               (unsigned long long)r.epoch);
    else
        fprintf(stderr, "%s: complete failed: %s %s %s\n", run, r.code, r.field, r.message);

    struct rc_client_stats st;
    rc_client_get_stats(c, &st);
    printf("pushed %llu events in %llu messages, %llu acknowledged\n",
           (unsigned long long)st.events_pushed, (unsigned long long)st.messages_pushed,
           (unsigned long long)st.events_acked);
    return rc_client_close(c) == 0 && rv == 0 ? 0 : 1;
}
