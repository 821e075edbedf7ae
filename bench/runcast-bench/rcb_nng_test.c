/*
 * Tests of runcast-bench's raw nng baselines (no broker): the PULL sink in
 * a process of its own and in this one counts every message and byte a
 * PUSH socket sends, over tcp port 0 (the port it bound is what it
 * reports) and over ipc; the sink process is gone once freed; the REP echo
 * on port 0 answers.  Loopback; each wait polls for its exact condition,
 * bounded.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "rc_listen_line.h"
#include "rcb_nng.h"

/* Under TSan: see rcb_ws_test.c (nng's reaper destroys mutexes of objects
 * freed through its own uninstrumented atomics). */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
    return "race:pthread_mutex_destroy\n";
}

#define N_MSGS 2000

/* Pushes N_MSGS messages of 1..200 bytes to url, keeps the socket open
 * until the sink counted them all (closing drops what nng still queues),
 * and checks the counts. */
static void push_and_count(struct rcb_sink *k)
{
    nng_socket s;
    cr_assert_eq(nng_push0_open(&s), 0);
    cr_assert_eq(nng_dial(s, rcb_sink_url(k), NULL, 0), 0, "dial %s", rcb_sink_url(k));
    char buf[200];
    memset(buf, 'x', sizeof(buf));
    uint64_t bytes = 0;
    for (int i = 0; i < N_MSGS; i++) {
        size_t len = 1 + (size_t)i % sizeof(buf);
        cr_assert_eq(nng_send(s, buf, len, 0), 0);
        bytes += len;
    }
    uint64_t dl = rcb_now_ns() + 10000000000ull;
    while (rcb_sink_msgs(k) < N_MSGS && rcb_now_ns() < dl)
        rcb_sleep_ns(1000000);
    cr_assert_eq(rcb_sink_msgs(k), N_MSGS);
    cr_assert_eq(rcb_sink_bytes(k), bytes);
    nng_close(s);
}

/* Where the raw baselines' receivers run (--raw-sink) and over which
 * transport (--transport): the options every case sets first. */
static void baseline_mode(bool thread, bool ipc)
{
    rcb_o.quiet = true;
    rcb_o.sink_thread = thread;
    rcb_o.sink_exe = RCB_BENCH_EXE;
    rcb_o.ipc = ipc;
}

static void tcp_case(bool thread)
{
    baseline_mode(thread, false);
    char url[256], path[200];
    rcb_pull_listen_url(url, sizeof(url), path, sizeof(path), "test");
    cr_assert_str_eq(url, "tcp://127.0.0.1:0");
    cr_assert_str_eq(path, "");
    struct rcb_sink *k = rcb_sink_new(url, 4);
    cr_assert_not_null(k);
    /* the port the listener bound, not the 0 it was given */
    cr_assert_eq(strncmp(rcb_sink_url(k), "tcp://127.0.0.1:", 16), 0, "%s", rcb_sink_url(k));
    cr_assert_gt(rc_listen_line_port(rcb_sink_url(k)), 0, "%s", rcb_sink_url(k));
    pid_t pid = rcb_sink_pid(k);
    cr_assert_eq(pid != getpid(), !thread);
    push_and_count(k);
    rcb_sink_free(k);
    if (!thread)
        cr_assert(kill(pid, 0) != 0 && errno == ESRCH, "the sink process was reaped");
}

Test(bench_nng, sink_process_counts_every_message_on_a_bound_port)
{
    tcp_case(false);
}

Test(bench_nng, sink_thread_counts_every_message_on_a_bound_port)
{
    tcp_case(true);
}

Test(bench_nng, sink_process_over_ipc)
{
    baseline_mode(false, true);
    char url[256], path[200];
    rcb_pull_listen_url(url, sizeof(url), path, sizeof(path), "test");
    cr_assert_eq(strncmp(url, "ipc:///tmp/", 11), 0, "%s", url);
    cr_assert_str_eq(url + 6, path);
    struct rcb_sink *k = rcb_sink_new(url, 4);
    cr_assert_not_null(k);
    cr_assert_str_eq(rcb_sink_url(k), url);
    cr_assert_eq(access(path, F_OK), 0, "the socket file exists while listening");
    push_and_count(k);
    rcb_sink_free(k);
    unlink(path);
    cr_assert_neq(access(path, F_OK), 0);
}

Test(bench_nng, sink_process_that_cannot_listen_is_reported)
{
    baseline_mode(false, false);
    /* an address not on this host: the child's listen fails */
    cr_assert_null(rcb_sink_new("tcp://192.0.2.1:0", 2));
}

static void echo_answers(bool thread)
{
    baseline_mode(thread, false);
    struct rcb_echo *e = rcb_echo_new("tcp://127.0.0.1:0", 2);
    cr_assert_not_null(e);
    pid_t pid = rcb_echo_pid(e);
    cr_assert_eq(pid != getpid(), !thread);
    cr_assert_gt(rc_listen_line_port(rcb_echo_url(e)), 0, "%s", rcb_echo_url(e));
    nng_socket s;
    cr_assert_eq(rcb_req_open(&s, rcb_echo_url(e)), 0);
    static const unsigned char req[] = {0x91, 0x80}; /* [{}]: one element */
    cr_assert_eq(nng_send(s, (void *)req, sizeof(req), 0), 0);
    char *rep = NULL;
    size_t len = 0;
    cr_assert_eq(nng_recv(s, &rep, &len, NNG_FLAG_ALLOC), 0);
    uint32_t acc, results;
    uint64_t sum;
    char err[64] = "";
    cr_assert(rcb_parse_ack(rep, len, &acc, &sum, &results, err, sizeof(err)));
    cr_assert_eq(results, 1);
    cr_assert_eq(acc, 1);
    nng_free(rep, len);
    nng_close(s);
    rcb_echo_free(e);
    if (!thread)
        cr_assert(kill(pid, 0) != 0 && errno == ESRCH, "the echo process was reaped");
}

Test(bench_nng, echo_on_port_zero_answers_in_this_process)
{
    echo_answers(true);
}

/* The default: the echo in a process of its own (as the sink), reaped when
 * freed. */
Test(bench_nng, echo_on_port_zero_answers_from_its_own_process)
{
    echo_answers(false);
}
