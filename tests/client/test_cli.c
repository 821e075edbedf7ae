/*
 * The `runcast` CLI against fake servers (label unit): pub from flags and
 * JSON lines (fake PULL / REP), and tail's resume logic against a fake
 * WebSocket server that drops the connection mid-run, repeats events,
 * changes epoch, and ends runs both ways.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/reqrep0/rep.h>

#include "rc_buf.h"
#include "rc_clock.h"
#include "rc_proto.h"
#include "rc_tipc.h"
#include "rc_tproc.h"

#define RUNCAST RC_BINARY_DIR "/client/runcast"

/* In a directory the suite's fini removes, passed or failed (rc_tipc.h). */
static void ipc_url(char *out, size_t cap, const char *tag)
{
    rc_tipc_url(out, cap, tag);
}

TestSuite(cli_pub, .fini = rc_tipc_cleanup);

/* ---- pub ---- */

struct fake_rep {
    nng_socket s;
    char url[128];
    int requests;
    char last[4096]; /* JSON of the last request's first event */
    pthread_t th;
};

static void *fake_rep_fn(void *arg)
{
    struct fake_rep *r = arg;
    nng_msg *m;
    uint64_t seq = 0;
    while (nng_recvmsg(r->s, &m, 0) == 0) {
        r->requests++;
        struct rc_buf out;
        rc_buf_init(&out);
        struct rc_proto_limits lim;
        rc_proto_limits_default(&lim);
        struct rc_event ev;
        struct rc_proto_error err;
        struct rc_proto_ack_result res = {0};
        if (rc_proto_decode_event(nng_msg_body(m), nng_msg_len(m), &lim, &ev, &err) ==
            RC_PROTO_OK) {
            res.seq = ++seq;
            if (ev.type == RC_EV_ERROR) { /* pretend the run had ended */
                res.code = RC_PROTO_RUN_TERMINAL;
                res.field = "run";
                res.message = "run already ended";
            }
        } else {
            res.code = err.code;
            res.field = err.field;
            res.message = "bad";
        }
        rc_proto_encode_ack(&out, 9, &res, 1);
        nng_msg_free(m);
        nng_send(r->s, out.data, out.len, 0);
        rc_buf_fini(&out);
    }
    return NULL;
}

static void fake_rep_start(struct fake_rep *r)
{
    ipc_url(r->url, sizeof(r->url), "rep");
    cr_assert_eq(nng_rep0_open(&r->s), 0);
    cr_assert_eq(nng_listen(r->s, r->url, NULL, 0), 0);
    pthread_create(&r->th, NULL, fake_rep_fn, r);
}

static void fake_rep_stop(struct fake_rep *r)
{
    nng_close(r->s);
    pthread_join(r->th, NULL);
}

Test(cli_pub, ack_prints_the_seq_and_errors_exit_nonzero)
{
    static struct fake_rep r;
    fake_rep_start(&r);
    char push[128], cmd[1024], out[4096];
    ipc_url(push, sizeof(push), "push");
    snprintf(cmd, sizeof(cmd),
             RUNCAST " pub --ingest %s --ingest-ack %s --run r1 --type tool "
                     "--tool '{\"id\":\"t1\",\"name\":\"search\"}' --ack --wait 1s 2>&1",
             push, r.url);
    cr_assert_eq(tproc_run(cmd, out, sizeof(out)), 0, "%s", out);
    cr_assert_str_eq(out, "1\n");

    snprintf(cmd, sizeof(cmd),
             RUNCAST " pub --ingest %s --ingest-ack %s --run r1 --type error --error-code x "
                     "--error-message y --wait 1s 2>&1",
             push, r.url);
    cr_assert_eq(tproc_run(cmd, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "run_terminal") != NULL, "%s", out);
    cr_assert(strstr(out, "field run") != NULL, "%s", out);
    fake_rep_stop(&r);
}

Test(cli_pub, flag_and_input_errors_are_clear_and_exit_2)
{
    char out[4096];
    struct {
        const char *args;
        const char *expect;
    } cases[] = {
        {"--type start", "--run"},
        {"--run r --type nope", "unknown --type"},
        {"--run 'a b' --type start", "not a valid id"},
        {"--run r --type phase", "needs --phase"},
        {"--run r --type tool --tool '{\"name\":1}'", "\"id\""},
        {"--run r --type delta --data '{bad'", "invalid JSON"},
        {"--run r --type start --timeout '*=soon'", "PHASE=DURATION"},
        {"--run r --type delta --timeout '*=1s'", "only go with --type start"},
        {"--run r --type error --error-code x", "--error-message"},
        {"--file - --type delta", "only --run and --conv"},
        {"extra", "unexpected argument"},
        {"--bogus", "--help"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), RUNCAST " pub %s 2>&1 </dev/null", cases[i].args);
        cr_assert_eq(tproc_run(cmd, out, sizeof(out)), 2, "%s: %s", cases[i].args, out);
        cr_assert(strstr(out, cases[i].expect) != NULL, "%s: want '%s' in: %s", cases[i].args,
                  cases[i].expect, out);
    }
    cr_assert_eq(tproc_run(RUNCAST " pub --help", out, sizeof(out)), 0);
    cr_assert(strstr(out, "usage: runcast pub") != NULL);
}

Test(cli_pub, json_lines_push_and_report_bad_lines)
{
    char pull_url[128], req_url[128], cmd[1024], out[8192], file[128];
    ipc_url(pull_url, sizeof(pull_url), "lines");
    ipc_url(req_url, sizeof(req_url), "lines-req");
    nng_socket s;
    cr_assert_eq(nng_pull0_open(&s), 0);
    cr_assert_eq(nng_listen(s, pull_url, NULL, 0), 0);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 3000);
    snprintf(file, sizeof(file), "/tmp/rc-cli-lines-%d.jsonl", (int)getpid());
    FILE *f = fopen(file, "w");
    fprintf(f, "{\"type\":\"start\",\"timeouts\":{\"*\":5000}}\n"
               "\n"
               "{\"type\":\"phase\",\"phase\":\"planning\"}\n"
               "not json\n"
               "{\"type\":\"delta\",\"text\":\"hi\",\"data\":{\"k\":[1,2.5,null,true]}}\n"
               "{\"type\":\"phase\"}\n");
    fclose(f);
    snprintf(cmd, sizeof(cmd),
             RUNCAST " pub --ingest %s --ingest-ack %s --run lr --conv lc --file %s --wait 2s "
                     "2>&1",
             pull_url, req_url, file);
    int st = tproc_run(cmd, out, sizeof(out));
    cr_assert_neq(st, 0, "bad lines make the exit status non-zero: %s", out);
    cr_assert(strstr(out, ":4: invalid JSON") != NULL, "%s", out);
    cr_assert(strstr(out, ":6: rejected: missing_field (field phase)") != NULL, "%s", out);
    /* The three good events arrived, with the defaults filled in. */
    struct rc_proto_limits lim;
    rc_proto_limits_default(&lim);
    int got = 0;
    while (got < 3) {
        nng_msg *m;
        cr_assert_eq(nng_recvmsg(s, &m, 0), 0, "got %d of 3", got);
        struct rc_event ev;
        struct rc_proto_error err;
        const uint8_t *p = nng_msg_body(m);
        size_t len = nng_msg_len(m);
        if ((p[0] & 0xf0) == 0x90) { /* a batch: count its elements */
            got += p[0] & 0x0f;
        } else {
            cr_assert_eq(rc_proto_decode_event(p, len, &lim, &ev, &err), RC_PROTO_OK);
            cr_assert_eq(ev.run.len, 2);
            cr_assert_eq(memcmp(ev.run.ptr, "lr", 2), 0);
            cr_assert_eq(ev.conv.len, 2);
            got++;
        }
        nng_msg_free(m);
    }
    nng_close(s);
    unlink(file);
}

Test(cli_pub, unreachable_broker_exits_3)
{
    char out[2048], cmd[512];
    snprintf(cmd, sizeof(cmd),
             RUNCAST " pub --ingest ipc:///tmp/rc-none-%d --ingest-ack ipc:///tmp/rc-none2-%d "
                     "--run r --type heartbeat --wait 200ms 2>&1",
             (int)getpid(), (int)getpid());
    cr_assert_eq(tproc_run(cmd, out, sizeof(out)), 3, "%s", out);
    cr_assert(strstr(out, "is it running") != NULL, "%s", out);
    snprintf(cmd, sizeof(cmd),
             RUNCAST " pub --ingest-ack ipc:///tmp/rc-none3-%d --run r --type heartbeat --ack "
                     "--wait 100ms --retries 1 2>&1",
             (int)getpid());
    cr_assert_eq(tproc_run(cmd, out, sizeof(out)), 3, "%s", out);
}

/* ---- tail against a fake WebSocket server ---- */

struct fake_ws {
    nng_stream_listener *l;
    int port;
    int script;        /* which scenario */
    char subs[4][512]; /* the sub request of each connection */
    int n_conns;
    pthread_t th;
};

static void ws_send(nng_stream *s, const char *text)
{
    nng_aio *aio;
    nng_msg *m;
    nng_aio_alloc(&aio, NULL, NULL);
    nng_msg_alloc(&m, 0);
    nng_msg_append(m, text, strlen(text));
    nng_iov iov = {.iov_buf = nng_msg_body(m), .iov_len = nng_msg_len(m)};
    nng_aio_set_iov(aio, 1, &iov);
    nng_aio_set_msg(aio, m);
    nng_aio_set_timeout(aio, 2000);
    nng_stream_send(s, aio);
    nng_aio_wait(aio);
    nng_msg *left = nng_aio_get_msg(aio);
    if (left != NULL)
        nng_msg_free(left);
    nng_aio_free(aio);
}

static void ws_recv(nng_stream *s, char *out, size_t cap)
{
    nng_aio *aio;
    nng_aio_alloc(&aio, NULL, NULL);
    nng_aio_set_timeout(aio, 3000);
    nng_stream_recv(s, aio);
    nng_aio_wait(aio);
    out[0] = '\0';
    if (nng_aio_result(aio) == 0) {
        nng_msg *m = nng_aio_get_msg(aio);
        snprintf(out, cap, "%.*s", (int)nng_msg_len(m), (char *)nng_msg_body(m));
        nng_msg_free(m);
    }
    nng_aio_free(aio);
}

static nng_stream *ws_accept(struct fake_ws *w)
{
    nng_aio *aio;
    nng_aio_alloc(&aio, NULL, NULL);
    nng_aio_set_timeout(aio, 5000);
    nng_stream_listener_accept(w->l, aio);
    nng_aio_wait(aio);
    nng_stream *s = nng_aio_result(aio) == 0 ? nng_aio_get_output(aio, 0) : NULL;
    nng_aio_free(aio);
    return s;
}

#define EV(seq, type, extra)                                                                       \
    "{\"op\":\"ev\",\"run\":\"r1\",\"epoch\":%d,\"seq\":" #seq ",\"type\":\"" type                 \
    "\",\"ts\":1700000000000" extra "}"

static void *fake_ws_fn(void *arg)
{
    struct fake_ws *w = arg;
    char buf[2048];
    for (int conn = 0; conn < 2; conn++) {
        nng_stream *s = ws_accept(w);
        if (s == NULL)
            return NULL;
        int epoch = (w->script == 1 && conn == 1) ? 6 : 5;
        snprintf(buf, sizeof(buf),
                 "{\"op\":\"hello\",\"epoch\":%d,\"server\":\"fake\",\"hb_ms\":1000}", epoch);
        ws_send(s, buf);
        ws_recv(s, w->subs[conn], sizeof(w->subs[conn]));
        w->n_conns++;
        ws_send(s, "{\"op\":\"ok\",\"req\":1}");
        if (conn == 0) {
            /* Three events in one coalesced frame, then an abrupt drop. */
            snprintf(buf, sizeof(buf),
                     "[" EV(1, "start", "") "," EV(2, "phase", ",\"phase\":\"plan\"") "," EV(
                         3, "delta", ",\"text\":\"a\"") "]",
                     5, 5, 5);
            ws_send(s, buf);
            rc_clock_sleep_ms(100);
            nng_stream_close(s);
            nng_stream_free(s);
            continue;
        }
        if (w->script == 0) {
            /* Resume: an overlapping event (3, must be dropped), then 4 and a terminal. */
            snprintf(buf, sizeof(buf), EV(3, "delta", ",\"text\":\"a\""), 5);
            ws_send(s, buf);
            snprintf(buf, sizeof(buf), EV(4, "delta", ",\"text\":\"b\""), 5);
            ws_send(s, buf);
            snprintf(buf, sizeof(buf), EV(5, "complete", ""), 5);
            ws_send(s, buf);
        } else {
            /* New epoch: a snapshot, then a synthesized failure. */
            ws_send(s, "{\"op\":\"snap\",\"run\":\"r1\",\"epoch\":6,\"seq\":2,\"status\":"
                       "\"running\",\"phases\":[],\"created_at\":1,\"last_event_at\":2,"
                       "\"thinking\":\"\",\"output\":\"\",\"tools\":[],\"verification\":[]}");
            ws_send(s, "{\"op\":\"ev\",\"run\":\"r1\",\"epoch\":6,\"seq\":3,\"type\":\"error\","
                       "\"ts\":1,\"synthetic\":true,\"error\":{\"code\":\"watchdog_timeout\","
                       "\"message\":\"silent\"}}");
        }
        rc_clock_sleep_ms(500);
        nng_stream_close(s);
        nng_stream_free(s);
    }
    return NULL;
}

static void fake_ws_start(struct fake_ws *w, int script)
{
    w->script = script;
    cr_assert_eq(nng_stream_listener_alloc(&w->l, "ws://127.0.0.1:0/ws"), 0);
    nng_stream_listener_set_bool(w->l, "ws:msgmode", true);
    nng_stream_listener_set_bool(w->l, NNG_OPT_WS_RECV_TEXT, true);
    nng_stream_listener_set_bool(w->l, NNG_OPT_WS_SEND_TEXT, true);
    cr_assert_eq(nng_stream_listener_listen(w->l), 0);
    cr_assert_eq(nng_stream_listener_get_int(w->l, NNG_OPT_TCP_BOUND_PORT, &w->port), 0);
    pthread_create(&w->th, NULL, fake_ws_fn, w);
}

static void fake_ws_stop(struct fake_ws *w)
{
    pthread_join(w->th, NULL);
    nng_stream_listener_close(w->l);
    nng_stream_listener_free(w->l);
}

static json_t *line_json(const char *line)
{
    json_error_t je;
    json_t *j = json_loads(line, 0, &je);
    cr_assert_not_null(j, "not JSON: %s", line);
    return j;
}

/* `runcast tail --run r1 --until-terminal [flags]` against a fake server
 * playing `script` (fake_ws_start); returns the exit status, stdout in out. */
static int tail_r1(struct fake_ws *w, int script, const char *flags, char *out, size_t cap)
{
    fake_ws_start(w, script);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             RUNCAST " tail --run r1 --until-terminal %s --http 127.0.0.1:%d --backoff-max 100ms "
                     "2>/dev/null",
             flags, w->port);
    int st = tproc_run(cmd, out, cap);
    fake_ws_stop(w);
    return st;
}

Test(cli_tail, resumes_after_a_drop_without_gap_or_duplicate)
{
    static struct fake_ws w;
    char out[8192];
    int st = tail_r1(&w, 0, "", out, sizeof(out));
    cr_assert_eq(st, 0, "complete -> exit 0; output: %s", out);
    cr_assert_eq(w.n_conns, 2);
    /* The second sub resumes after seq 3 of epoch 5. */
    json_t *sub = line_json(w.subs[1]);
    cr_assert_str_eq(json_string_value(json_object_get(sub, "op")), "sub");
    cr_assert_str_eq(json_string_value(json_object_get(sub, "run")), "r1");
    cr_assert_eq(json_integer_value(json_object_get(sub, "since")), 3);
    cr_assert_eq(json_integer_value(json_object_get(sub, "epoch")), 5);
    json_decref(sub);
    sub = line_json(w.subs[0]);
    cr_assert_null(json_object_get(sub, "since"), "first sub starts fresh");
    json_decref(sub);
    /* Output: seqs 1..5, each once, in order. */
    int want = 1;
    for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        json_t *j = line_json(line);
        cr_assert_str_eq(json_string_value(json_object_get(j, "op")), "ev");
        cr_assert_eq(json_integer_value(json_object_get(j, "seq")), want, "line: %s", line);
        want++;
        json_decref(j);
    }
    cr_assert_eq(want, 6);
}

Test(cli_tail, epoch_change_takes_the_snapshot_and_failure_exits_1)
{
    static struct fake_ws w;
    char out[8192];
    int st = tail_r1(&w, 1, "--pretty", out, sizeof(out));
    cr_assert_eq(st, 1, "a failed run exits 1; output: %s", out);
    cr_assert(strstr(out, "r1 #3 delta") != NULL, "%s", out);
    cr_assert(strstr(out, "r1 #2 snapshot: running") != NULL, "%s", out);
    cr_assert(
        strstr(out, "r1 #3 error        watchdog_timeout: silent (synthesized by runcastd)") !=
            NULL,
        "the new epoch's seq 3 is not a duplicate of the old one: %s", out);
}

Test(cli_tail, flag_errors_exit_2)
{
    char out[2048];
    const char *bad[] = {
        RUNCAST " tail 2>&1",
        RUNCAST " tail --run a --all 2>&1",
        RUNCAST " tail --all --until-terminal 2>&1",
        RUNCAST " tail --all --since 3 2>&1",
        RUNCAST " tail --run 'x y' 2>&1",
        RUNCAST " tail --run r --epoch 3 2>&1",
        RUNCAST " tail --run r --http nowhere 2>&1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(tproc_run(bad[i], out, sizeof(out)), 2, "%s: %s", bad[i], out);
    cr_assert_eq(tproc_run(RUNCAST " tail --help", out, sizeof(out)), 0);
    cr_assert_eq(tproc_run(RUNCAST " tail --run r --http 127.0.0.1:1 --retries 1 --backoff-max "
                                   "10ms 2>&1",
                           out, sizeof(out)),
                 3, "%s", out);
}

Test(cli_misc, every_subcommand_has_help)
{
    const char *cmds[] = {"pub", "tail", "runs", "show", "demo"};
    for (size_t i = 0; i < 5; i++) {
        char cmd[256], out[8192];
        snprintf(cmd, sizeof(cmd), RUNCAST " %s --help", cmds[i]);
        cr_assert_eq(tproc_run(cmd, out, sizeof(out)), 0, "%s", cmds[i]);
        char want[64];
        snprintf(want, sizeof(want), "usage: runcast %s", cmds[i]);
        cr_assert(strstr(out, want) != NULL, "%s", out);
    }
    char out[4096];
    cr_assert_eq(tproc_run(RUNCAST " nosuch 2>&1", out, sizeof(out)), 2);
    cr_assert_eq(tproc_run(RUNCAST " show 'bad id' 2>&1", out, sizeof(out)), 2);
    cr_assert_eq(tproc_run(RUNCAST " runs --status weird 2>&1", out, sizeof(out)), 2);
    cr_assert_eq(tproc_run(RUNCAST " demo --runs 0 2>&1", out, sizeof(out)), 2);
    cr_assert_eq(tproc_run("RUNCAST_HTTP=127.0.0.1:1 " RUNCAST " runs --timeout 500ms 2>&1", out,
                           sizeof(out)),
                 3, "the environment variable is used: %s", out);
    cr_assert(strstr(out, "127.0.0.1:1") != NULL, "%s", out);
}
