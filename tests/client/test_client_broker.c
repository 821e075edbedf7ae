/*
 * The publisher library and the `runcast` CLI against a real runcastd
 * (label integration).  Each test starts its own runcastd on free ports
 * (port 0; the ports are read from its "runcastd listening:" line) with
 * short timeouts, and stops it at the end.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "rc_buf.h"
#include "rc_clock.h"
#include "rc_error.h"
#include "rc_proto.h"
#include "rc_tipc.h"
#include "rc_tproc.h"
#include "runcast.h"

#define RUNCAST RC_BINARY_DIR "/client/runcast"

/* A runcastd for this test, and its addresses as the CLI's environment. */
struct broker {
    struct rcd d;
    char env[512]; /* RUNCAST_* assignments for CLI commands */
};

static void broker_set_env(struct broker *b)
{
    snprintf(b->env, sizeof(b->env), "RUNCAST_INGEST=%s RUNCAST_INGEST_ACK=%s RUNCAST_HTTP=%s",
             b->d.pull, b->d.rep, b->d.http);
}

static const char *const broker_flags[] = {"--shutdown-timeout", "1s", NULL};

static void broker_start(struct broker *b)
{
    rcd_start(&b->d, broker_flags);
    broker_set_env(b);
}

/* Starts runcastd on the addresses `prev` listened on (a restart on the same
 * ports). */
static void broker_start_at(struct broker *b, const struct broker *prev)
{
    rcd_start_at(&b->d, &prev->d, broker_flags);
    broker_set_env(b);
}

static void broker_stop(struct broker *b)
{
    rcd_stop(&b->d, 10000);
}

static struct rc_client *open_both(struct broker *b, const char *req_url)
{
    struct rc_client_opts o;
    rc_client_opts_init(&o);
    o.push_url = b->d.pull;
    o.req_url = req_url ? req_url : b->d.rep;
    o.ack_timeout_ms = 300;
    struct rc_client *c;
    cr_assert_eq(rc_client_open_opts(&c, &o), RC_OK);
    return c;
}

static json_t *line_json(const char *line)
{
    json_error_t je;
    json_t *j = json_loads(line, 0, &je);
    cr_assert_not_null(j, "not JSON: %s", line);
    return j;
}

/* `runcast show RUN --json` (exit 0), parsed; out holds the text. */
static json_t *show_json(struct broker *b, const char *run, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s " RUNCAST " show %s --json", b->env, run);
    cr_assert_eq(tproc_run(cmd, out, cap), 0, "%s", out);
    return line_json(out);
}

/* Counts the ev lines of `runcast tail --run R --until-terminal` and checks
 * their seqs are 1..n in order; returns n (or -1) and the exit status. */
static int tail_run(struct broker *b, const char *run, int *status, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s timeout 10 " RUNCAST " tail --run %s --until-terminal --since 0",
             b->env, run);
    *status = tproc_run(cmd, out, cap);
    int want = 1;
    char *save = NULL;
    char *copy = strdup(out);
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *j = line_json(line);
        if (strcmp(json_string_value(json_object_get(j, "op")), "ev") == 0) {
            cr_assert_eq(json_integer_value(json_object_get(j, "seq")), want, "%s", out);
            want++;
        }
        json_decref(j);
    }
    free(copy);
    return want - 1;
}

/* the proxy test's ipc socket: removed passed or failed (rc_tipc.h) */
TestSuite(client_broker, .fini = rc_tipc_cleanup);

Test(client_broker, push_events_then_acked_complete, .timeout = 30)
{
    static struct broker b;
    broker_start(&b);
    struct rc_client *c = open_both(&b, NULL);
    struct rc_client_timeout to = {"*", 5000};
    cr_assert_eq(rc_client_start(c, "it-1", "conv-it", &to, 1, 0, NULL), RC_OK);
    cr_assert_eq(rc_client_phase(c, "it-1", "execute", NULL), RC_OK);
    for (int i = 0; i < 200; i++)
        cr_assert_eq(rc_client_delta(c, "it-1", "tok ", NULL), RC_OK);
    struct rc_client_result r;
    cr_assert_eq(rc_client_complete(c, "it-1", NULL, 0, &r), RC_OK, "%s %s", r.code, r.message);
    /* The library flushed the PUSH queue first, so everything before the
     * terminal made it into the run: 1 start + 1 phase + 200 deltas. */
    cr_assert_eq(r.seq, 203, "terminal seq %llu", (unsigned long long)r.seq);
    cr_assert_neq(r.epoch, 0);
    /* A late event is refused with a precise error. */
    struct rc_client_event e = {.run = "it-1", .type = "delta", .text = "late"};
    cr_assert_eq(rc_client_publish(c, &e, RC_DELIVER_ACK, &r), RC_EPROTO);
    cr_assert_str_eq(r.code, "run_terminal");
    struct rc_client_stats st;
    rc_client_get_stats(c, &st);
    cr_assert_eq(st.events_pushed, 202);
    cr_assert_eq(rc_client_close(c), RC_OK);

    static char out[1 << 16];
    int status;
    cr_assert_eq(tail_run(&b, "it-1", &status, out, sizeof(out)), 203);
    cr_assert_eq(status, 0, "completed run: tail exits 0");
    broker_stop(&b);
}

/* A REP<->REQ proxy in front of runcastd's REP socket that swallows the
 * first reply: the client must time out and resend the same bytes. */
struct proxy {
    nng_socket front, back;
    char url[128];
    int drop;
    int forwarded;
    pthread_t th;
};

static void *proxy_fn(void *arg)
{
    struct proxy *p = arg;
    nng_msg *m;
    while (nng_recvmsg(p->front, &m, 0) == 0) {
        if (nng_sendmsg(p->back, m, 0) != 0) {
            nng_msg_free(m);
            break;
        }
        p->forwarded++;
        nng_msg *reply;
        if (nng_recvmsg(p->back, &reply, 0) != 0)
            break;
        if (p->drop > 0) {
            p->drop--;
            nng_msg_free(reply);
            continue;
        }
        if (nng_sendmsg(p->front, reply, 0) != 0)
            nng_msg_free(reply);
    }
    return NULL;
}

Test(client_broker, a_retry_after_a_lost_reply_is_not_delivered_twice, .timeout = 30)
{
    static struct broker b;
    broker_start(&b);
    static struct proxy p;
    rc_tipc_url(p.url, sizeof(p.url), "proxy");
    cr_assert_eq(nng_rep0_open(&p.front), 0);
    cr_assert_eq(nng_listen(p.front, p.url, NULL, 0), 0);
    cr_assert_eq(nng_req0_open(&p.back), 0);
    cr_assert_eq(nng_dial(p.back, b.d.rep, NULL, 0), 0);
    nng_socket_set_ms(p.back, NNG_OPT_RECVTIMEO, 3000);
    p.drop = 0;
    pthread_create(&p.th, NULL, proxy_fn, &p);

    struct rc_client *c = open_both(&b, p.url);
    struct rc_client_result r;
    struct rc_client_event e = {.run = "it-2", .type = "start"};
    cr_assert_eq(rc_client_publish(c, &e, RC_DELIVER_ACK, &r), RC_OK, "%s", r.message);
    cr_assert_eq(r.seq, 1);
    p.drop = 1; /* the broker accepts the terminal, but its reply is lost */
    cr_assert_eq(rc_client_complete(c, "it-2", NULL, 0, &r), RC_OK, "%s", r.message);
    cr_assert_eq(r.attempts, 2);
    cr_assert_eq(r.seq, 2, "the retry got the original seq");
    cr_assert(r.dup, "the broker recognised the idempotency id");
    cr_assert_eq(p.forwarded, 3);
    rc_client_close(c);

    static char out[1 << 16];
    int status;
    cr_assert_eq(tail_run(&b, "it-2", &status, out, sizeof(out)), 2,
                 "start + one complete, not two: %s", out);
    cr_assert_eq(status, 0);
    nng_close(p.front);
    nng_close(p.back);
    pthread_join(p.th, NULL);
    broker_stop(&b);
}

Test(client_broker, cli_pub_tail_runs_show_end_to_end, .timeout = 30)
{
    static struct broker b;
    broker_start(&b);
    static char out[1 << 16];
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s " RUNCAST " pub --run cli-1 --conv cc --type start --ack",
             b.env);
    cr_assert_eq(tproc_run(cmd, out, sizeof(out)), 0, "%s", out);
    cr_assert_str_eq(out, "1\n");
    snprintf(cmd, sizeof(cmd),
             "printf '%%s\\n' '{\"type\":\"phase\",\"phase\":\"execute\"}' "
             "'{\"type\":\"tool\",\"tool\":{\"id\":\"t1\",\"name\":\"grep\",\"status\":\"done\"}}' "
             "'{\"type\":\"delta\",\"text\":\"hello\",\"data\":{\"n\":[1,2]}}' | "
             "%s " RUNCAST " pub --run cli-1 --file - --ack",
             b.env);
    cr_assert_eq(tproc_run(cmd, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "{\"line\":1,\"seq\":2") != NULL, "%s", out);
    cr_assert(strstr(out, "{\"line\":3,\"seq\":4") != NULL, "%s", out);
    snprintf(cmd, sizeof(cmd),
             "%s " RUNCAST " pub --run cli-1 --type error --error-code boom --error-message "
             "'it broke'",
             b.env);
    cr_assert_eq(tproc_run(cmd, out, sizeof(out)), 0, "%s", out);
    snprintf(cmd, sizeof(cmd), "%s " RUNCAST " pub --run cli-1 --type delta --text x --ack 2>&1",
             b.env);
    cr_assert_eq(tproc_run(cmd, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "run_terminal") != NULL, "%s", out);

    int status;
    cr_assert_eq(tail_run(&b, "cli-1", &status, out, sizeof(out)), 5);
    cr_assert_eq(status, 1, "a failed run: tail --until-terminal exits 1");
    cr_assert(strstr(out, "\"text\":\"hello\"") != NULL, "%s", out);
    cr_assert(strstr(out, "\"data\":{\"n\":[1,2]}") != NULL, "data round trip: %s", out);

    snprintf(cmd, sizeof(cmd), "%s " RUNCAST " runs --conv cc", b.env);
    cr_assert_eq(tproc_run(cmd, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "cli-1") != NULL && strstr(out, "failed") != NULL, "%s", out);
    json_t *j = show_json(&b, "cli-1", out, sizeof(out));
    cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "failed");
    cr_assert_str_eq(json_string_value(json_object_get(j, "output")), "hello");
    json_decref(j);
    snprintf(cmd, sizeof(cmd), "%s " RUNCAST " show nosuchrun 2>&1", b.env);
    cr_assert_eq(tproc_run(cmd, out, sizeof(out)), 1, "%s", out);
    broker_stop(&b);
}

Test(client_broker, demo_runs_complete_fail_and_time_out, .timeout = 30)
{
    static struct broker b;
    broker_start(&b);
    static char out[1 << 16];
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "%s " RUNCAST " demo --fast --runs 3 --prefix dm --silent-timeout 300ms --delay 5ms",
             b.env);
    cr_assert_eq(tproc_run(cmd, out, sizeof(out)), 0, "%s", out);
    /* The silent run ends by watchdog: its tail sees a synthesized error. */
    int status;
    tail_run(&b, "dm-3", &status, out, sizeof(out));
    cr_assert_eq(status, 1, "%s", out);
    cr_assert(strstr(out, "\"synthetic\":true") != NULL, "%s", out);
    tail_run(&b, "dm-1", &status, out, sizeof(out));
    cr_assert_eq(status, 0, "dm-1 completes");
    tail_run(&b, "dm-2", &status, out, sizeof(out));
    cr_assert_eq(status, 1, "dm-2 fails");
    snprintf(cmd, sizeof(cmd), "%s " RUNCAST " runs --conv dm --json", b.env);
    cr_assert_eq(tproc_run(cmd, out, sizeof(out)), 0);
    cr_assert(strstr(out, "dm-1") && strstr(out, "dm-2") && strstr(out, "dm-3"), "%s", out);
    broker_stop(&b);
}

/* runcastd keeps PUSH order with several receives in flight on one PULL
 * socket (--ingest-inflight 8): consecutive messages of one publisher are
 * applied in publish order (broker/core's ticketed reorder stage). */
Test(client_broker, pushed_events_keep_publish_order, .timeout = 30)
{
    static struct broker b;
    broker_start(&b);
    struct rc_client *c = open_both(&b, NULL);
    cr_assert_eq(rc_client_start(c, "ord-1", NULL, NULL, 0, 0, NULL), RC_OK);
    static char want[1 << 16];
    size_t wl = 0;
    for (int i = 0; i < 3000; i++) {
        char t[16];
        snprintf(t, sizeof(t), "%d,", i);
        cr_assert_eq(rc_client_delta(c, "ord-1", t, NULL), RC_OK);
        wl += (size_t)snprintf(want + wl, sizeof(want) - wl, "%s", t);
        if (i % 500 == 0)
            rc_client_flush(c, 1000); /* a mix of lone events and batches */
    }
    struct rc_client_result r;
    cr_assert_eq(rc_client_complete(c, "ord-1", NULL, 0, &r), RC_OK, "%s", r.message);
    cr_assert_eq(r.seq, 3002);
    struct rc_client_stats st;
    rc_client_get_stats(c, &st);
    cr_assert_lt(st.messages_pushed, st.events_pushed, "some events were batched");
    rc_client_close(c);
    static char out[1 << 17];
    json_t *j = show_json(&b, "ord-1", out, sizeof(out));
    const char *got = json_string_value(json_object_get(j, "output"));
    cr_assert_not_null(got);
    size_t d = 0;
    while (got[d] && got[d] == want[d])
        d++;
    cr_assert_str_eq(got, want,
                     "deltas arrive in publish order; first difference at byte %zu: got "
                     "'%.40s' want '%.40s' (%llu events re-sent with the terminal)",
                     d, got + d, want + d, (unsigned long long)st.resent);
    json_decref(j);
    broker_stop(&b);
}

Test(client_broker, tail_resumes_across_a_broker_restart_with_the_new_epoch, .timeout = 60)
{
    static struct broker a, b2;
    broker_start(&a);
    char out_path[128], cmd[1024];
    snprintf(out_path, sizeof(out_path), "/tmp/rc-client-tail-%d.out", (int)getpid());
    snprintf(cmd, sizeof(cmd),
             "%s timeout 30 " RUNCAST
             " tail --run rs-1 --until-terminal --backoff-max 200ms >%s 2>/dev/null; echo "
             "\"exit=$?\" >>%s",
             a.env, out_path, out_path);
    FILE *tail = tproc_popen(cmd);
    cr_assert_not_null(tail);
    struct rc_client *c = open_both(&a, NULL);
    struct rc_client_event e = {.run = "rs-1", .type = "start"};
    cr_assert_eq(rc_client_publish(c, &e, RC_DELIVER_ACK, NULL), RC_OK);
    struct rc_client_event d = {.run = "rs-1", .type = "delta", .text = "before "};
    cr_assert_eq(rc_client_publish(c, &d, RC_DELIVER_ACK, NULL), RC_OK);
    rc_client_close(c);
    /* Let tail print both, then restart the broker on the same ports. */
    static char out[1 << 16];
    for (int i = 0; i < 300; i++) {
        FILE *f = fopen(out_path, "r");
        size_t n = f ? fread(out, 1, sizeof(out) - 1, f) : 0;
        out[n] = '\0';
        if (f)
            fclose(f);
        if (strstr(out, "\"seq\":2") != NULL)
            break;
        rc_clock_sleep_ms(20);
    }
    cr_assert(strstr(out, "\"seq\":2") != NULL, "tail printed: %s", out);
    broker_stop(&a);
    broker_start_at(&b2, &a);
    /* The new incarnation knows nothing of rs-1: the publisher starts over. */
    c = open_both(&b2, NULL);
    cr_assert_eq(rc_client_publish(c, &e, RC_DELIVER_ACK, NULL), RC_OK);
    struct rc_client_event d2 = {.run = "rs-1", .type = "delta", .text = "after"};
    cr_assert_eq(rc_client_publish(c, &d2, RC_DELIVER_ACK, NULL), RC_OK);
    struct rc_client_result r;
    cr_assert_eq(rc_client_complete(c, "rs-1", NULL, 0, &r), RC_OK);
    rc_client_close(c);
    pclose(tail);
    FILE *f = fopen(out_path, "r");
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    fclose(f);
    unlink(out_path);
    static char copy[1 << 16];
    memcpy(copy, out, sizeof(copy));
    cr_assert(strstr(out, "exit=0") != NULL, "tail ends 0 on the new epoch's complete: %s", out);
    /* Every line is JSON; per epoch, ev seqs strictly increase (no duplicate),
     * and the second epoch is entered through its snapshot or its events. */
    uint64_t epochs[2] = {0, 0}, last[2] = {0, 0};
    int n_epochs = 0, snaps_new = 0;
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "exit=", 5) == 0)
            continue;
        json_t *j = line_json(line);
        uint64_t ep = (uint64_t)json_integer_value(json_object_get(j, "epoch"));
        const char *op = json_string_value(json_object_get(j, "op"));
        int k = n_epochs > 0 && epochs[n_epochs - 1] == ep ? n_epochs - 1 : n_epochs++;
        cr_assert_lt(k, 2, "at most two epochs: %s", line);
        epochs[k] = ep;
        uint64_t seq = (uint64_t)json_integer_value(json_object_get(j, "seq"));
        if (strcmp(op, "ev") == 0) {
            cr_assert_gt(seq, last[k], "no duplicate within an epoch: %s", line);
            last[k] = seq;
        } else if (strcmp(op, "snap") == 0) {
            snaps_new += k == 1;
            cr_assert_geq(seq, last[k], "a snapshot never goes back: %s", line);
            last[k] = seq;
        }
        json_decref(j);
    }
    cr_assert_eq(n_epochs, 2, "tail followed the run into the new epoch");
    cr_assert_neq(epochs[0], epochs[1]);
    cr_assert_eq(last[0], 2, "%s", copy);
    cr_assert_eq(last[1], 3, "the new epoch's complete (seq 3) was seen: %s", copy);
    (void)snaps_new;
    broker_stop(&b2);
}

Test(client_broker, events_published_while_the_broker_is_down_arrive_when_it_is_back, .timeout = 60)
{
    static struct broker a, b2;
    broker_start(&a); /* only to find free ports */
    broker_stop(&a);
    struct rc_client_opts o;
    rc_client_opts_init(&o);
    o.push_url = a.d.pull;
    o.req_url = a.d.rep;
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 100;
    o.ack_timeout_ms = 500;
    o.ack_retries = 20;
    struct rc_client *c;
    cr_assert_eq(rc_client_open_opts(&c, &o), RC_OK, "opening never needs the broker");
    cr_assert_eq(rc_client_start(c, "down-1", NULL, NULL, 0, 0, NULL), RC_OK);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(rc_client_delta(c, "down-1", "x", NULL), RC_OK);
    struct rc_client_stats st;
    rc_client_get_stats(c, &st);
    cr_assert_eq(st.events_pushed, 0, "nothing could be sent yet");
    cr_assert_eq(st.queued, 5, "one send waits in flight, five are queued");
    broker_start_at(&b2, &a);
    struct rc_client_result r;
    cr_assert_eq(rc_client_complete(c, "down-1", NULL, 0, &r), RC_OK, "%s", r.message);
    cr_assert_eq(r.seq, 7, "start + 5 deltas + complete, none lost or doubled");
    rc_client_get_stats(c, &st);
    cr_assert_eq(st.events_pushed, 6);
    cr_assert_eq(rc_client_close(c), RC_OK);
    broker_stop(&b2);
}
