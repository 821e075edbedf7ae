/*
 * Unit tests of the run actors and the registry, in process (no sockets):
 * the state machine, seq, terminal fence, idempotency, snapshots, history,
 * gap, tombstones, limits, subscriptions and queries.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rc_clock.h"
#include "rc_error.h"
#include "rc_metrics.h"
#include "rc_hash.h"
#include "rc_run.h"
#include "rc_testsub.h"
#include "rc_tutil.h"

static struct rc_testsub *sub_run(struct rc_tb *t, const char *run, uint64_t sub_id, bool has_since,
                                  uint64_t since, int snapshot)
{
    return tb_subscribe(t, (struct rc_sub_req){.kind = RC_SUB_RUN,
                                               .target = run,
                                               .target_len = strlen(run),
                                               .sub_id = sub_id,
                                               .has_since = has_since,
                                               .since = since,
                                               .snapshot = snapshot});
}

static void frame_str(struct rc_testsub *ts, size_t i, const char *path, char *out, size_t cap)
{
    struct rc_tframe f;
    cr_assert(rc_testsub_get(ts, i, &f), "no frame %zu", i);
    cr_assert(rc_mp_str(f.raw, f.len, path, out, cap), "frame %zu has no string %s", i, path);
}

static void expect_frame_str(struct rc_testsub *ts, size_t i, const char *path, const char *want)
{
    char got[256];
    frame_str(ts, i, path, got, sizeof(got));
    cr_assert_str_eq(got, want, "frame %zu %s", i, path);
}

static uint64_t frame_uint(struct rc_testsub *ts, size_t i, const char *path)
{
    struct rc_tframe f;
    uint64_t v = 0;
    cr_assert(rc_testsub_get(ts, i, &f), "no frame %zu", i);
    cr_assert(rc_mp_uint(f.raw, f.len, path, &v), "frame %zu has no uint %s", i, path);
    return v;
}

/* Frames 0 and 1 are a gap {from..to} and the snapshot at snap_seq. */
static void expect_gap_then_snap(struct rc_testsub *ts, uint64_t from, uint64_t to,
                                 uint64_t snap_seq)
{
    expect_frame_str(ts, 0, "op", "gap");
    cr_assert_eq(frame_uint(ts, 0, "from"), from);
    cr_assert_eq(frame_uint(ts, 0, "to"), to);
    expect_frame_str(ts, 1, "op", "snap");
    cr_assert_eq(frame_uint(ts, 1, "seq"), snap_seq);
}

/* Waits for the snapshot query of run and returns its status string. */
struct snapw {
    pthread_mutex_t mtx;
    bool done;
    int rc;
    uint8_t raw[65536];
    size_t len;
};

static void snap_cb(void *arg, int rc, struct rc_blob *snap)
{
    struct snapw *w = arg;
    pthread_mutex_lock(&w->mtx);
    w->rc = rc;
    if (snap && snap->len <= sizeof(w->raw)) {
        memcpy(w->raw, snap->data, snap->len);
        w->len = snap->len;
    }
    w->done = true;
    pthread_mutex_unlock(&w->mtx);
}

static int get_snap(struct rc_tb *t, const char *run, struct snapw *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->mtx, NULL);
    int rc = rc_runs_snapshot(rc_broker_runs(t->b), run, strlen(run), snap_cb, w);
    if (rc != 0)
        return rc;
    for (int i = 0; i < 5000; i++) {
        pthread_mutex_lock(&w->mtx);
        bool d = w->done;
        pthread_mutex_unlock(&w->mtx);
        if (d)
            return w->rc;
        rc_clock_sleep_ms(1);
    }
    cr_assert_fail("snapshot query timed out");
    return -1;
}

static void snap_status(struct rc_tb *t, const char *run, char *out, size_t cap)
{
    struct snapw *w = malloc(sizeof(*w));
    cr_assert_eq(get_snap(t, run, w), 0);
    cr_assert(rc_mp_str(w->raw, w->len, "status", out, cap));
    free(w);
}

Test(runs, state_machine_pending_running_completed)
{
    struct rc_tb t;
    tb_start(&t, NULL);
    char st[32];
    uint64_t seq;
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "r1", .type = "start"}, 0, &seq), RC_PROTO_OK);
    cr_assert_eq(seq, 1);
    snap_status(&t, "r1", st, sizeof(st));
    cr_assert_str_eq(st, "pending");
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "r1", .type = "thinking", .text = "a"}, 0, &seq),
                 RC_PROTO_OK);
    cr_assert_eq(seq, 2);
    snap_status(&t, "r1", st, sizeof(st));
    cr_assert_str_eq(st, "running");
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "r1", .type = "complete"}, 0, &seq), RC_PROTO_OK);
    cr_assert_eq(seq, 3);
    snap_status(&t, "r1", st, sizeof(st));
    cr_assert_str_eq(st, "completed");
    /* exactly one terminal: a second terminal and any later event are fenced */
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "r1", .type = "complete"}, 0, &seq),
                 RC_PROTO_RUN_TERMINAL);
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "r1", .type = "error", .err_code = "x"}, 0, &seq),
                 RC_PROTO_RUN_TERMINAL);
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "r1", .type = "delta", .text = "x"}, 0, &seq),
                 RC_PROTO_RUN_TERMINAL);
    struct rc_metrics *m = rc_broker_metrics(t.b);
    cr_assert_eq(rc_metric_get(&m->run_terminal_rejections), 3);
    cr_assert_eq(rc_metric_get(&m->terminals[RC_TERM_COMPLETE]), 1);
    cr_assert_eq(rc_metric_get(&m->runs_completed), 1);
    cr_assert_eq(rc_metric_get(&m->runs_created), 1);
    tb_stop(&t);
}

Test(runs, first_event_without_start_is_running_and_error_fails)
{
    struct rc_tb t;
    tb_start(&t, NULL);
    char st[32];
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "r2", .type = "phase", .phase = "plan"}, 0, NULL),
                 RC_PROTO_OK);
    snap_status(&t, "r2", st, sizeof(st));
    cr_assert_str_eq(st, "running");
    cr_assert_eq(
        tb_pub(&t, &(struct tev){.run = "r2", .type = "error", .err_code = "boom"}, 0, NULL),
        RC_PROTO_OK);
    snap_status(&t, "r2", st, sizeof(st));
    cr_assert_str_eq(st, "failed");
    cr_assert_eq(rc_metric_get(&rc_broker_metrics(t.b)->terminals[RC_TERM_ERROR]), 1);
    /* start after the end is fenced too */
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "r2", .type = "start"}, 0, NULL),
                 RC_PROTO_RUN_TERMINAL);
    tb_stop(&t);
}

Test(runs, batch_mixing_good_and_bad_events)
{
    struct rc_tb t;
    tb_start(&t, NULL);
    struct tev evs[] = {
        {.run = "a", .type = "start"},
        {.run = "a", .type = "bogus"},
        {.run = "b", .type = "thinking", .text = "x"},
        {.run = "bad run!", .type = "delta"},
        {.run = "a", .type = "delta", .text = "y"},
        {.type = "delta"},
        {.run = "b", .type = "complete"},
    };
    struct tack a;
    tb_pub_batch(&t, evs, 7, 0, &a);
    cr_assert_eq(a.n, 7);
    cr_assert_eq(a.code[0], RC_PROTO_OK);
    cr_assert_eq(a.seq[0], 1);
    cr_assert_eq(a.code[1], RC_PROTO_UNKNOWN_TYPE);
    cr_assert_eq(a.code[2], RC_PROTO_OK);
    cr_assert_eq(a.seq[2], 1);
    cr_assert_eq(a.code[3], RC_PROTO_BAD_FIELD);
    cr_assert_eq(a.code[4], RC_PROTO_OK);
    cr_assert_eq(a.seq[4], 2);
    cr_assert_eq(a.code[5], RC_PROTO_MISSING_FIELD);
    cr_assert_eq(a.code[6], RC_PROTO_OK);
    cr_assert_eq(a.seq[6], 2);
    struct rc_metrics *m = rc_broker_metrics(t.b);
    cr_assert_eq(rc_metric_get(&m->events_accepted), 4);
    cr_assert_eq(rc_metric_get(&m->events_rejected[RC_PROTO_UNKNOWN_TYPE]), 1);
    cr_assert_eq(rc_metric_get(&m->events_rejected[RC_PROTO_MISSING_FIELD]), 1);
    /* garbage: one whole-message error */
    tb_publish_raw(&t, "\xc1garbage", 8, 0, &a);
    cr_assert_eq(a.n, 1);
    cr_assert_eq(a.code[0], RC_PROTO_MALFORMED);
    cr_assert_eq(rc_metric_get(&m->messages_rejected), 1);
    tb_stop(&t);
}

Test(runs, idempotency_ids_answer_dup_with_the_original_seq)
{
    struct rc_tb t;
    tb_start(&t, NULL);
    struct rc_testsub *ts = sub_run(&t, "r", 1, false, 0, -1);
    uint64_t seq;
    cr_assert_eq(
        tb_pub(&t, &(struct tev){.run = "r", .type = "delta", .text = "a", .id = "e1"}, 0, &seq),
        RC_PROTO_OK);
    cr_assert_eq(seq, 1);
    cr_assert_eq(
        tb_pub(&t, &(struct tev){.run = "r", .type = "delta", .text = "b", .id = "e2"}, 0, &seq),
        RC_PROTO_OK);
    cr_assert_eq(seq, 2);
    struct tev again = {.run = "r", .type = "delta", .text = "a", .id = "e1"};
    struct tack a;
    tb_pub_batch(&t, &again, 1, 0, &a);
    cr_assert_eq(a.code[0], RC_PROTO_OK);
    cr_assert_eq(a.seq[0], 1);
    cr_assert(a.dup[0]);
    /* terminal with an id; its retry is a dup, not run_terminal */
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "r", .type = "complete", .id = "end"}, 0, &seq),
                 RC_PROTO_OK);
    cr_assert_eq(seq, 3);
    tb_pub_batch(&t, &(struct tev){.run = "r", .type = "complete", .id = "end"}, 1, 0, &a);
    cr_assert_eq(a.code[0], RC_PROTO_OK);
    cr_assert(a.dup[0]);
    cr_assert_eq(a.seq[0], 3);
    cr_assert(rc_testsub_wait_terminal(ts, "r", 2000));
    rc_clock_sleep_ms(20);
    /* delivered once each: seqs 1, 2, 3 */
    cr_assert_eq(rc_testsub_count(ts), 3);
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(frame_uint(ts, i, "seq"), i + 1);
    cr_assert_eq(rc_metric_get(&rc_broker_metrics(t.b)->events_dup), 2);
    rc_testsub_free(ts);
    tb_stop(&t);
}

/* A delta for run whose id is the given msgpack bytes. */
static void pub_raw_id(struct rc_tb *t, const char *run, const void *id, size_t id_len,
                       struct tack *a)
{
    struct rc_buf b;
    rc_buf_init(&b);
    rc_mpw_map(&b, 4);
    rc_mpw_cstr(&b, "run");
    rc_mpw_cstr(&b, run);
    rc_mpw_cstr(&b, "type");
    rc_mpw_cstr(&b, "delta");
    rc_mpw_cstr(&b, "text");
    rc_mpw_cstr(&b, "x");
    rc_mpw_cstr(&b, "id");
    rc_mpw_raw(&b, id, id_len);
    tb_publish_raw(t, b.data, b.len, 0, a);
    rc_buf_fini(&b);
}

Test(runs, integer_ids_are_the_same_id_whatever_their_encoding)
{
    struct rc_tb t;
    tb_start(&t, NULL);
    struct tack a;
    pub_raw_id(&t, "r", "\x05", 1, &a); /* positive fixint 5 */
    cr_assert_eq(a.code[0], RC_PROTO_OK);
    cr_assert_eq(a.seq[0], 1);
    cr_assert_not(a.dup[0]);
    pub_raw_id(&t, "r", "\xd0\x05", 2, &a); /* int 8 */
    cr_assert_eq(a.code[0], RC_PROTO_OK);
    cr_assert(a.dup[0], "d0 05 is id 5 again");
    cr_assert_eq(a.seq[0], 1);
    pub_raw_id(&t, "r", "\xcd\x00\x05", 3, &a); /* uint 16 */
    cr_assert(a.dup[0], "cd 00 05 is id 5 again");
    cr_assert_eq(a.seq[0], 1);
    pub_raw_id(&t, "r", "\xcf\x00\x00\x00\x00\x00\x00\x00\x05", 9, &a); /* uint 64 */
    cr_assert(a.dup[0], "cf ... 05 is id 5 again");
    /* the string "5" is another id */
    pub_raw_id(&t, "r",
               "\xa1"
               "5",
               2, &a);
    cr_assert_eq(a.code[0], RC_PROTO_OK);
    cr_assert_not(a.dup[0], "the string \"5\" is not the integer 5");
    cr_assert_eq(a.seq[0], 2);
    pub_raw_id(&t, "r",
               "\xd9\x01"
               "5",
               3, &a); /* str 8 "5" */
    cr_assert(a.dup[0]);
    cr_assert_eq(a.seq[0], 2);
    /* a terminal's integer id in another width is its dup too */
    pub_raw_id(&t, "r", "\x07", 1, &a);
    cr_assert_eq(a.seq[0], 3);
    struct rc_buf b;
    rc_buf_init(&b);
    rc_mpw_map(&b, 3);
    rc_mpw_cstr(&b, "run");
    rc_mpw_cstr(&b, "r");
    rc_mpw_cstr(&b, "type");
    rc_mpw_cstr(&b, "complete");
    rc_mpw_cstr(&b, "id");
    rc_mpw_raw(&b, "\x09", 1);
    tb_publish_raw(&t, b.data, b.len, 0, &a);
    cr_assert_eq(a.seq[0], 4);
    rc_buf_reset(&b);
    rc_mpw_map(&b, 3);
    rc_mpw_cstr(&b, "run");
    rc_mpw_cstr(&b, "r");
    rc_mpw_cstr(&b, "type");
    rc_mpw_cstr(&b, "complete");
    rc_mpw_cstr(&b, "id");
    rc_mpw_raw(&b, "\xcc\x09", 2);
    tb_publish_raw(&t, b.data, b.len, 0, &a);
    cr_assert_eq(a.code[0], RC_PROTO_OK, "the terminal's retry is a dup, not run_terminal");
    cr_assert(a.dup[0]);
    cr_assert_eq(a.seq[0], 4);
    rc_buf_fini(&b);
    tb_stop(&t);
}

#define WIN     100
#define WIN_IDS 1000

Test(runs, idempotency_window_remembers_the_last_n_ids)
{
    struct rc_tb t;
    const char *opts[] = {"idempotency-window", "100", NULL};
    tb_start(&t, opts);
    static char ids[WIN_IDS][16];
    static struct tev ev[WIN_IDS];
    static struct tack a;
    for (size_t i = 0; i < WIN_IDS; i++) {
        snprintf(ids[i], sizeof(ids[i]), "id-%zu", i);
        ev[i] = (struct tev){.run = "w", .type = "delta", .text = "x", .id = ids[i]};
    }
    /* 1000 ids in batches of 100: seqs 1..1000 */
    for (size_t k = 0; k < WIN_IDS; k += 100) {
        tb_pub_batch(&t, ev + k, 100, 0, &a);
        for (size_t i = 0; i < 100; i++) {
            cr_assert_eq(a.code[i], RC_PROTO_OK);
            cr_assert_not(a.dup[i]);
            cr_assert_eq(a.seq[i], k + i + 1);
        }
    }
    /* the last 100 are remembered (every one of them, after 900 evictions) */
    tb_pub_batch(&t, ev + WIN_IDS - WIN, WIN, 0, &a);
    for (size_t i = 0; i < WIN; i++) {
        cr_assert(a.dup[i], "id %s is within the window", ids[WIN_IDS - WIN + i]);
        cr_assert_eq(a.seq[i], WIN_IDS - WIN + i + 1);
    }
    /* the one just before them was evicted: accepted again as new (seq
     * 1001), which evicts the oldest remembered id in turn */
    tb_pub_batch(&t, ev + WIN_IDS - WIN - 1, 1, 0, &a);
    cr_assert_not(a.dup[0], "id %s fell out of the window", ids[WIN_IDS - WIN - 1]);
    cr_assert_eq(a.seq[0], WIN_IDS + 1);
    tb_pub_batch(&t, ev + WIN_IDS - WIN, 1, 0, &a);
    cr_assert_not(a.dup[0], "the oldest was evicted by the new one");
    cr_assert_eq(a.seq[0], WIN_IDS + 2);
    tb_pub_batch(&t, ev + WIN_IDS - 1, 1, 0, &a);
    cr_assert(a.dup[0]);
    cr_assert_eq(a.seq[0], WIN_IDS);
    tb_pub_batch(&t, ev, 1, 0, &a);
    cr_assert_not(a.dup[0]);
    cr_assert_eq(a.seq[0], WIN_IDS + 3);
    tb_stop(&t);
}

Test(runs, snapshot_accumulates_and_is_bounded)
{
    struct rc_tb t;
    const char *opts[] = {"snapshot-text-max", "10", NULL};
    tb_start(&t, opts);
    struct tev evs[] = {
        {.run = "s", .type = "start", .conv = "c1"},
        {.run = "s", .type = "phase", .phase = "plan"},
        {.run = "s", .type = "thinking", .text = "think "},
        {.run = "s", .type = "thinking", .text = "more and more"},
        {.run = "s", .type = "delta", .text = "out"},
        {.run = "s", .type = "tool", .tool_id = "t1", .tool_status = "running"},
        {.run = "s", .type = "tool", .tool_id = "t2", .tool_status = "running"},
        {.run = "s", .type = "tool", .tool_id = "t1", .tool_status = "done"},
        {.run = "s", .type = "verification", .item_id = "v1", .item_status = "ok"},
        {.run = "s", .type = "phase", .phase = "execute"},
    };
    struct tack a;
    tb_pub_batch(&t, evs, 10, 0, &a);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(a.code[i], RC_PROTO_OK);
    struct snapw *w = malloc(sizeof(*w));
    cr_assert_eq(get_snap(&t, "s", w), 0);
    char s[64];
    cr_assert(rc_mp_str(w->raw, w->len, "thinking", s, sizeof(s)));
    cr_assert_str_eq(s, "think more"); /* cut at 10 bytes */
    cr_assert(rc_mp_str(w->raw, w->len, "output", s, sizeof(s)));
    cr_assert_str_eq(s, "out");
    bool tr = false;
    cr_assert(rc_mp_bool(w->raw, w->len, "truncated", &tr));
    cr_assert(tr);
    cr_assert_eq(rc_mp_len(w->raw, w->len, "tools"), 2);
    cr_assert_eq(rc_mp_len(w->raw, w->len, "verification"), 1);
    cr_assert_eq(rc_mp_len(w->raw, w->len, "phases"), 2);
    cr_assert(rc_mp_str(w->raw, w->len, "phase", s, sizeof(s)));
    cr_assert_str_eq(s, "execute");
    cr_assert(rc_mp_str(w->raw, w->len, "conv", s, sizeof(s)));
    cr_assert_str_eq(s, "c1");
    uint64_t seq = 0;
    cr_assert(rc_mp_uint(w->raw, w->len, "seq", &seq));
    cr_assert_eq(seq, 10);
    cr_assert_not(rc_mp_has(w->raw, w->len, "terminal"));
    free(w);
    tb_stop(&t);
}

Test(runs, utf8_text_is_cut_at_a_character_boundary)
{
    struct rc_tb t;
    const char *opts[] = {"snapshot-text-max", "4", NULL};
    tb_start(&t, opts);
    /* "aé" is 3 bytes; "éé" would need 4 more: only the whole first é fits */
    cr_assert_eq(
        tb_pub(&t, &(struct tev){.run = "u", .type = "delta", .text = "a\xc3\xa9"}, 0, NULL),
        RC_PROTO_OK);
    cr_assert_eq(
        tb_pub(&t, &(struct tev){.run = "u", .type = "delta", .text = "\xc3\xa9\xc3\xa9"}, 0, NULL),
        RC_PROTO_OK);
    struct snapw *w = malloc(sizeof(*w));
    cr_assert_eq(get_snap(&t, "u", w), 0);
    char s[16];
    cr_assert(rc_mp_str(w->raw, w->len, "output", s, sizeof(s)));
    cr_assert_str_eq(s, "a\xc3\xa9");
    free(w);
    tb_stop(&t);
}

Test(runs, history_bound_gives_gap_then_snap)
{
    struct rc_tb t;
    const char *opts[] = {"history-max-events", "5", NULL};
    tb_start(&t, opts);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(tb_pub(&t, &(struct tev){.run = "h", .type = "delta", .text = "x"}, 0, NULL),
                     RC_PROTO_OK);
    /* within history: exact replay 7..10 */
    struct rc_testsub *a = sub_run(&t, "h", 1, true, 6, -1);
    cr_assert(rc_testsub_wait(a, 4, 2000));
    rc_clock_sleep_ms(20);
    cr_assert_eq(rc_testsub_count(a), 4);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(frame_uint(a, i, "seq"), 7 + i);
        struct rc_tframe f;
        rc_testsub_get(a, i, &f);
        cr_assert(f.replay);
    }
    /* older than history: gap {3..5} + snap */
    struct rc_testsub *b = sub_run(&t, "h", 2, true, 2, -1);
    cr_assert(rc_testsub_wait(b, 2, 2000));
    expect_gap_then_snap(b, 3, 5, 10);
    /* another epoch: snap */
    struct rc_testsub *c = tb_subscribe(&t, (struct rc_sub_req){.kind = RC_SUB_RUN,
                                                                .target = "h",
                                                                .target_len = 1,
                                                                .sub_id = 3,
                                                                .has_since = true,
                                                                .since = 8,
                                                                .has_epoch = true,
                                                                .epoch = rc_broker_epoch(t.b) + 1,
                                                                .snapshot = -1});
    cr_assert(rc_testsub_wait(c, 1, 2000));
    expect_frame_str(c, 0, "op", "snap");
    /* live after each: one more event reaches all three */
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "h", .type = "complete"}, 0, NULL), RC_PROTO_OK);
    cr_assert(rc_testsub_wait_terminal(a, "h", 2000));
    cr_assert(rc_testsub_wait_terminal(b, "h", 2000));
    cr_assert(rc_testsub_wait_terminal(c, "h", 2000));
    cr_assert_eq(frame_uint(a, 4, "seq"), 11);
    rc_testsub_free(a);
    rc_testsub_free(b);
    rc_testsub_free(c);
    tb_stop(&t);
}

/* Events evicted from the history while a live subscriber's frames or a
 * replay still hold them arrive whole and in order: eviction frees an
 * event without reading it only when nobody else was ever given it (debug
 * and sanitizer builds trap if it still has another holder). */
Test(runs, evicted_events_stay_valid_for_subscribers_holding_them)
{
    struct rc_tb t;
    const char *opts[] = {"history-max-events", "2", NULL};
    tb_start(&t, opts);
    enum { N = 200 };
    static char texts[2 * N][16];
    static struct tev evs[N];
    struct rc_testsub *live = sub_run(&t, "e", 1, false, 0, 0);
    struct tack *a = malloc(sizeof(*a));
    cr_assert_not_null(a);
    for (int i = 0; i < N; i++) {
        snprintf(texts[i], sizeof(texts[i]), "t%d", i + 1);
        evs[i] = (struct tev){.run = "e", .type = "delta", .text = texts[i]};
    }
    tb_pub_batch(&t, evs, N, 0, a);
    for (int i = 0; i < N; i++)
        cr_assert_eq(a->code[i], RC_PROTO_OK);
    /* a replay of the last two, then a batch that evicts them at once */
    struct rc_testsub *rep = sub_run(&t, "e", 2, true, N - 2, 0);
    for (int i = 0; i < N; i++) {
        snprintf(texts[N + i], sizeof(texts[N + i]), "t%d", N + i + 1);
        evs[i].text = texts[N + i];
    }
    tb_pub_batch(&t, evs, N, 0, a);
    cr_assert(rc_testsub_wait(live, 2 * N, 5000));
    for (size_t i = 0; i < 2 * N; i++) {
        cr_assert_eq(frame_uint(live, i, "seq"), i + 1);
        expect_frame_str(live, i, "text", texts[i]);
    }
    cr_assert(rc_testsub_wait(rep, N + 2, 5000));
    for (size_t i = 0; i < N + 2; i++) {
        cr_assert_eq(frame_uint(rep, i, "seq"), N - 1 + i);
        expect_frame_str(rep, i, "text", texts[N - 2 + i]);
    }
    free(a);
    rc_testsub_free(live);
    rc_testsub_free(rep);
    tb_stop(&t);
}

/* An event larger than --history-max-bytes is not retained, and neither is
 * anything older: replays map seqs onto a contiguous history, so a hole
 * would have replayed the wrong events under the wrong seqs. */
Test(runs, an_event_too_big_for_history_clears_what_is_older)
{
    struct rc_tb t;
    const char *opts[] = {"history-max-bytes", "400", NULL};
    tb_start(&t, opts);
    char big[600];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    const char *texts[] = {"a", "b", big, "d", "e"};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(
            tb_pub(&t, &(struct tev){.run = "hole", .type = "delta", .text = texts[i]}, 0, NULL),
            RC_PROTO_OK);
    /* since 1: 2 and 3 are gone (3 was never retained): gap {2..3} + snap */
    struct rc_testsub *a = sub_run(&t, "hole", 1, true, 1, -1);
    cr_assert(rc_testsub_wait(a, 2, 2000));
    expect_gap_then_snap(a, 2, 3, 5);
    /* since 3: exactly 4 and 5, each frame carrying its own event */
    struct rc_testsub *b = sub_run(&t, "hole", 2, true, 3, -1);
    cr_assert(rc_testsub_wait(b, 2, 2000));
    for (size_t i = 0; i < 2; i++) {
        cr_assert_eq(frame_uint(b, i, "seq"), 4 + i);
        expect_frame_str(b, i, "text", texts[3 + i]);
    }
    rc_testsub_free(a);
    rc_testsub_free(b);
    tb_stop(&t);
}

Test(runs, history_bytes_bound_keeps_the_terminal)
{
    struct rc_tb t;
    const char *opts[] = {"history-max-bytes", "1", NULL};
    tb_start(&t, opts);
    for (int i = 0; i < 3; i++)
        tb_pub(&t, &(struct tev){.run = "hb", .type = "delta", .text = "x"}, 0, NULL);
    tb_pub(&t, &(struct tev){.run = "hb", .type = "complete"}, 0, NULL);
    /* since 3: the terminal (seq 4) is still retained */
    struct rc_testsub *a = sub_run(&t, "hb", 1, true, 3, -1);
    cr_assert(rc_testsub_wait_terminal(a, "hb", 2000));
    cr_assert_eq(frame_uint(a, 0, "seq"), 4);
    expect_frame_str(a, 0, "type", "complete");
    rc_testsub_free(a);
    tb_stop(&t);
}

Test(runs, tombstone_fences_late_events_and_answers_late_subscribers)
{
    struct rc_tb t;
    const char *opts[] = {"retention", "20ms", "tombstone-ttl", "10s", "watchdog-tick",
                          "1ms",       NULL};
    tb_start(&t, opts);
    tb_pub(&t, &(struct tev){.run = "t", .type = "delta", .text = "x"}, 0, NULL);
    tb_pub(&t, &(struct tev){.run = "t", .type = "complete", .id = "fin"}, 0, NULL);
    struct rc_metrics *m = rc_broker_metrics(t.b);
    for (int i = 0; i < 2000 && rc_metric_get(&m->runs_tombstoned) == 0; i++)
        rc_clock_sleep_ms(1);
    cr_assert_eq(rc_metric_get(&m->runs_tombstoned), 1);
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "t", .type = "delta", .text = "late"}, 0, NULL),
                 RC_PROTO_RUN_TERMINAL);
    /* the terminal's retry is still a dup */
    struct tack a;
    tb_pub_batch(&t, &(struct tev){.run = "t", .type = "complete", .id = "fin"}, 1, 0, &a);
    cr_assert_eq(a.code[0], RC_PROTO_OK);
    cr_assert(a.dup[0]);
    cr_assert_eq(a.seq[0], 2);
    /* late subscriber with since: gap + final snap holding the terminal */
    struct rc_testsub *s = sub_run(&t, "t", 1, true, 0, -1);
    cr_assert(rc_testsub_wait(s, 2, 2000));
    expect_frame_str(s, 0, "op", "gap");
    expect_frame_str(s, 1, "op", "snap");
    expect_frame_str(s, 1, "terminal.type", "complete");
    struct rc_tframe f;
    rc_testsub_get(s, 1, &f);
    cr_assert(f.terminal);
    rc_testsub_free(s);
    tb_stop(&t);
}

Test(runs, tombstone_expiry_forgets_the_run)
{
    struct rc_tb t;
    const char *opts[] = {"retention", "0", "tombstone-ttl", "20ms", "watchdog-tick", "1ms", NULL};
    tb_start(&t, opts);
    tb_pub(&t, &(struct tev){.run = "x", .type = "complete"}, 0, NULL);
    struct rc_metrics *m = rc_broker_metrics(t.b);
    /* the counter and the registry are two relaxed reads: wait for both */
    for (int i = 0; i < 2000 && (rc_metric_get(&m->runs_removed) == 0 ||
                                 rc_runs_count(rc_broker_runs(t.b)) != 0);
         i++)
        rc_clock_sleep_ms(1);
    cr_assert_eq(rc_metric_get(&m->runs_removed), 1);
    cr_assert_eq(rc_runs_count(rc_broker_runs(t.b)), 0);
    /* the id is free again: a new run starts at seq 1 */
    uint64_t seq;
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "x", .type = "start"}, 0, &seq), RC_PROTO_OK);
    cr_assert_eq(seq, 1);
    tb_stop(&t);
}

/* The decoder's lookup cache (rc_runs_get_cached): a hit is the registry's
 * answer without a lock, and a run removed from the registry is never
 * answered from it (the next lookup creates the new run of that id). */
Test(runs, lookup_cache_hits_and_never_answers_a_removed_run)
{
    struct rc_tb t;
    const char *opts[] = {"retention", "0", "tombstone-ttl", "20ms", "watchdog-tick", "1ms", NULL};
    tb_start(&t, opts);
    struct rc_runs *runs = rc_broker_runs(t.b);
    struct rc_runs_cache *cache = calloc(1, sizeof(*cache));
    cr_assert_not_null(cache);
    uint32_t h = rc_runs_hash("x", 1);
    struct rc_actor *a1 = NULL, *again = NULL, *reg = NULL;
    cr_assert_eq(rc_runs_get_cached(runs, cache, "x", 1, h, false, &a1), RC_ENOTFOUND);
    cr_assert_eq(rc_runs_get_cached(runs, cache, "x", 1, h, true, &a1), 0);
    cr_assert_eq(rc_runs_get_cached(runs, cache, "x", 1, h, true, &again), 0);
    cr_assert_eq(again, a1, "a second lookup answers the same actor");
    cr_assert_eq(rc_runs_get(runs, "x", 1, h, false, &reg), 0);
    cr_assert_eq(reg, a1, "the cache answers what the registry does");
    rc_actor_release(reg);
    /* more ids of the same set than it has ways: each is still answered
     * right (the set keeps the newest) */
    char other[RC_RUNS_CACHE_WAYS + 1][16];
    uint32_t ho[RC_RUNS_CACHE_WAYS + 1];
    uint32_t set = h & (RC_RUNS_CACHE_SETS - 1);
    for (uint32_t k = 0, i = 0; k < RC_RUNS_CACHE_WAYS + 1 && i < 1000000; i++) {
        snprintf(other[k], sizeof(other[k]), "y%u", i);
        ho[k] = rc_runs_hash(other[k], strlen(other[k]));
        if ((ho[k] & (RC_RUNS_CACHE_SETS - 1)) == set)
            k++;
    }
    for (uint32_t round = 0; round < 2; round++) {
        for (uint32_t k = 0; k < RC_RUNS_CACHE_WAYS + 1; k++) {
            cr_assert_eq(ho[k] & (RC_RUNS_CACHE_SETS - 1), set);
            struct rc_actor *ao = NULL, *ro = NULL;
            cr_assert_eq(
                rc_runs_get_cached(runs, cache, other[k], strlen(other[k]), ho[k], true, &ao), 0);
            cr_assert_neq(ao, a1);
            cr_assert_eq(rc_runs_get(runs, other[k], strlen(other[k]), ho[k], false, &ro), 0);
            cr_assert_eq(ao, ro, "id %s answered with another run's actor", other[k]);
            rc_actor_release(ro);
        }
        cr_assert_eq(rc_runs_get_cached(runs, cache, "x", 1, h, true, &again), 0);
        cr_assert_eq(again, a1);
    }

    /* end x and let its tombstone expire: the registry forgets it */
    tb_pub(&t, &(struct tev){.run = "x", .type = "complete"}, 0, NULL);
    for (int i = 0; i < 2000 && rc_runs_get(runs, "x", 1, h, false, &reg) == 0; i++) {
        rc_actor_release(reg);
        rc_clock_sleep_ms(1);
    }
    cr_assert_eq(rc_runs_get(runs, "x", 1, h, false, &reg), RC_ENOTFOUND);
    /* the cache still holds the old actor (so its address is not reused)
     * but must not answer it: not found, then a new run */
    struct rc_actor *a2 = NULL;
    cr_assert_eq(rc_runs_get_cached(runs, cache, "x", 1, h, false, &a2), RC_ENOTFOUND);
    cr_assert_eq(rc_runs_get_cached(runs, cache, "x", 1, h, true, &a2), 0);
    cr_assert_neq(a2, a1, "a removed run is not answered from the cache");
    cr_assert_eq(rc_runs_get(runs, "x", 1, h, false, &reg), 0);
    cr_assert_eq(reg, a2);
    rc_actor_release(reg);
    rc_runs_cache_drop(cache, h);
    cr_assert_eq(rc_runs_get_cached(runs, cache, "x", 1, h, false, &again), 0);
    cr_assert_eq(again, a2, "after a drop the registry is asked again");
    rc_runs_cache_fini(cache);
    free(cache);
    tb_stop(&t);
}

Test(runs, max_runs_refuses_new_runs_with_limit)
{
    struct rc_tb t;
    const char *opts[] = {"max-runs", "3", NULL};
    tb_start(&t, opts);
    char id[8];
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "m%d", i);
        cr_assert_eq(tb_pub(&t, &(struct tev){.run = id, .type = "start"}, 0, NULL), RC_PROTO_OK);
    }
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "m3", .type = "start"}, 0, NULL), RC_PROTO_LIMIT);
    /* existing runs still work */
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "m0", .type = "complete"}, 0, NULL), RC_PROTO_OK);
    /* the ended run frees a slot */
    cr_assert_eq(tb_pub(&t, &(struct tev){.run = "m3", .type = "start"}, 0, NULL), RC_PROTO_OK);
    cr_assert_eq(rc_metric_get(&rc_broker_metrics(t.b)->limit_rejections), 1);
    cr_assert_eq(rc_metric_get(&rc_broker_metrics(t.b)->events_rejected[RC_PROTO_LIMIT]), 1);
    tb_stop(&t);
}

Test(runs, waiting_conv_and_all_subscriptions)
{
    struct rc_tb t;
    tb_start(&t, NULL);
    struct rc_testsub *all =
        tb_subscribe(&t, (struct rc_sub_req){.kind = RC_SUB_ALL, .sub_id = 1, .snapshot = -1});
    struct rc_testsub *conv = tb_subscribe(
        &t, (struct rc_sub_req){
                .kind = RC_SUB_CONV, .target = "c", .target_len = 1, .sub_id = 2, .snapshot = -1});
    /* a run subscription before the run exists waits for it */
    struct rc_testsub *wait = tb_subscribe(
        &t,
        (struct rc_sub_req){
            .kind = RC_SUB_RUN, .target = "later", .target_len = 5, .sub_id = 3, .snapshot = -1});
    /* "later" joins conv c with its second event */
    tb_pub(&t, &(struct tev){.run = "later", .type = "start"}, 0, NULL);
    tb_pub(&t, &(struct tev){.run = "later", .type = "delta", .text = "x", .conv = "c"}, 0, NULL);
    tb_pub(&t, &(struct tev){.run = "other", .type = "delta", .text = "y"}, 0, NULL);
    tb_pub(&t, &(struct tev){.run = "later", .type = "complete"}, 0, NULL);
    tb_pub(&t, &(struct tev){.run = "other", .type = "complete"}, 0, NULL);
    cr_assert(rc_testsub_wait_terminal(wait, "later", 2000));
    cr_assert(rc_testsub_wait_terminal(all, "later", 2000));
    cr_assert(rc_testsub_wait_terminal(all, "other", 2000));
    cr_assert(rc_testsub_wait_terminal(conv, "later", 2000));
    rc_clock_sleep_ms(20);
    cr_assert_eq(rc_testsub_count(wait), 3); /* all of it, from seq 1 */
    cr_assert_eq(rc_testsub_count(all), 5);
    /* conv: attached when the conv was set (after seq 2 was accepted): it
     * gets the snapshot at its attach, then seq 3 */
    size_t n = rc_testsub_count(conv);
    struct rc_tframe f;
    rc_testsub_get(conv, n - 1, &f);
    cr_assert_eq(f.seq, 3);
    for (size_t i = 0; i < n; i++) {
        rc_testsub_get(conv, i, &f);
        cr_assert_str_eq(f.run, "later");
    }
    rc_testsub_free(all);
    rc_testsub_free(conv);
    rc_testsub_free(wait);
    tb_stop(&t);
}

Test(runs, two_subscriptions_of_one_subscriber_deliver_once)
{
    struct rc_tb t;
    tb_start(&t, NULL);
    struct rc_runs *runs = rc_broker_runs(t.b);
    tb_pub(&t, &(struct tev){.run = "d", .type = "start"}, 0, NULL);
    struct rc_testsub *ts = sub_run(&t, "d", 1, true, 1, -1);
    struct rc_sub_req ra = {
        .kind = RC_SUB_ALL, .subscriber = rc_testsub_actor(ts), .sub_id = 2, .snapshot = 0};
    cr_assert_eq(rc_runs_subscribe(runs, &ra), 0);
    for (int i = 0; i < 5; i++)
        tb_pub(&t, &(struct tev){.run = "d", .type = "delta", .text = "x"}, 0, NULL);
    /* unsubscribing the run subscription keeps delivery through "all" */
    cr_assert_eq(rc_runs_unsubscribe(runs, RC_SUB_RUN, "d", 1, rc_testsub_actor(ts), 1), 0);
    tb_pub(&t, &(struct tev){.run = "d", .type = "complete"}, 0, NULL);
    cr_assert(rc_testsub_wait_terminal(ts, "d", 2000));
    rc_clock_sleep_ms(20);
    cr_assert_eq(rc_testsub_count(ts), 6);
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(frame_uint(ts, i, "seq"), i + 2);
    rc_testsub_free(ts);
    tb_stop(&t);
}

Test(runs, unsubscribe_stops_delivery)
{
    struct rc_tb t;
    tb_start(&t, NULL);
    struct rc_testsub *ts = sub_run(&t, "u", 1, false, 0, -1);
    tb_pub(&t, &(struct tev){.run = "u", .type = "delta", .text = "x"}, 0, NULL);
    cr_assert(rc_testsub_wait(ts, 1, 2000));
    cr_assert_eq(
        rc_runs_unsubscribe(rc_broker_runs(t.b), RC_SUB_RUN, "u", 1, rc_testsub_actor(ts), 1), 0);
    tb_pub(&t, &(struct tev){.run = "u", .type = "complete"}, 0, NULL);
    rc_clock_sleep_ms(50);
    cr_assert_eq(rc_testsub_count(ts), 1);
    cr_assert_eq(
        rc_runs_unsubscribe(rc_broker_runs(t.b), RC_SUB_CONV, "nope", 4, rc_testsub_actor(ts), 9),
        RC_ENOTFOUND);
    rc_testsub_free(ts);
    tb_stop(&t);
}

struct listw {
    pthread_mutex_t mtx;
    bool done;
    size_t n;
    struct rc_run_summary v[16];
};

static void list_cb(void *arg, int rc, const struct rc_run_summary *v, size_t n)
{
    struct listw *w = arg;
    pthread_mutex_lock(&w->mtx);
    w->n = n;
    for (size_t i = 0; i < n && i < 16; i++)
        w->v[i] = v[i];
    w->done = true;
    pthread_mutex_unlock(&w->mtx);
}

static void list_wait(struct rc_tb *t, const struct rc_runs_filter *f, struct listw *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->mtx, NULL);
    cr_assert_eq(rc_runs_list(rc_broker_runs(t->b), f, list_cb, w), 0);
    for (int i = 0; i < 5000; i++) {
        pthread_mutex_lock(&w->mtx);
        bool d = w->done;
        pthread_mutex_unlock(&w->mtx);
        if (d)
            return;
        rc_clock_sleep_ms(1);
    }
    cr_assert_fail("list timed out");
}

Test(runs, list_and_queries)
{
    struct rc_tb t;
    tb_start(&t, NULL);
    tb_pub(&t, &(struct tev){.run = "q1", .type = "start", .conv = "cv"}, 0, NULL);
    tb_pub(&t, &(struct tev){.run = "q2", .type = "phase", .phase = "plan"}, 0, NULL);
    tb_pub(&t, &(struct tev){.run = "q2", .type = "complete"}, 0, NULL);
    struct listw w;
    list_wait(&t, NULL, &w);
    cr_assert_eq(w.n, 2);
    struct rc_runs_filter f = {.status = RC_RUN_COMPLETED, .conv = NULL, .limit = 0};
    list_wait(&t, &f, &w);
    cr_assert_eq(w.n, 1);
    cr_assert_str_eq(w.v[0].run, "q2");
    cr_assert_str_eq(w.v[0].phase, "plan");
    cr_assert_eq(w.v[0].seq, 2);
    struct rc_runs_filter fc = {.status = -1, .conv = "cv", .conv_len = 2, .limit = 0};
    list_wait(&t, &fc, &w);
    cr_assert_eq(w.n, 1);
    cr_assert_str_eq(w.v[0].run, "q1");
    cr_assert_str_eq(w.v[0].conv, "cv");
    struct snapw *sw = malloc(sizeof(*sw));
    cr_assert_eq(get_snap(&t, "nope", sw), RC_ENOTFOUND);
    free(sw);
    tb_stop(&t);
}

Test(runs, all_subscription_reports_ended_runs_only_when_asked)
{
    struct rc_tb t;
    tb_start(&t, NULL);
    tb_pub(&t, &(struct tev){.run = "ended", .type = "complete"}, 0, NULL);
    tb_pub(&t, &(struct tev){.run = "live", .type = "start"}, 0, NULL);
    struct rc_testsub *a =
        tb_subscribe(&t, (struct rc_sub_req){.kind = RC_SUB_ALL, .sub_id = 1, .snapshot = -1});
    /* b names "ended" in its since map: it gets what it missed */
    struct rc_buf m;
    rc_buf_init(&m);
    rc_mpw_map(&m, 1);
    rc_mpw_cstr(&m, "ended");
    rc_mpw_uint(&m, 0);
    struct rc_testsub *b = tb_subscribe(&t, (struct rc_sub_req){.kind = RC_SUB_ALL,
                                                                .sub_id = 2,
                                                                .since_map = m.data,
                                                                .since_map_len = m.len,
                                                                .snapshot = -1});
    rc_buf_fini(&m);
    cr_assert(rc_testsub_wait(a, 1, 2000));
    cr_assert(rc_testsub_wait(b, 2, 2000));
    rc_clock_sleep_ms(50);
    cr_assert_eq(rc_testsub_count(a), 1);
    struct rc_tframe f;
    rc_testsub_get(a, 0, &f);
    cr_assert_str_eq(f.run, "live");
    cr_assert_eq(f.kind, RC_FRAME_SNAP);
    cr_assert_eq(rc_testsub_count(b), 2);
    bool saw_ended = false;
    for (size_t i = 0; i < 2; i++) {
        rc_testsub_get(b, i, &f);
        if (strcmp(f.run, "ended") == 0) {
            saw_ended = true;
            cr_assert_eq(f.kind, RC_FRAME_EV);
            cr_assert(f.terminal);
        }
    }
    cr_assert(saw_ended);
    rc_testsub_free(a);
    rc_testsub_free(b);
    tb_stop(&t);
}

/* ---- the run id hash (rc_runs_hash: shard from the top 6 bits, bucket
 * from the low bits) ---- */

Test(runs_hash, depends_on_bytes_and_length_only)
{
    char a[80], b[88];
    for (size_t i = 0; i < sizeof(a); i++)
        a[i] = (char)('a' + i % 26);
    uint32_t h[sizeof(a) + 1];
    for (size_t len = 0; len <= sizeof(a); len++) {
        h[len] = rc_runs_hash(a, len);
        memcpy(b + 3, a, len); /* another address, unaligned */
        cr_assert_eq(rc_runs_hash(b + 3, len), h[len], "len %zu", len);
        for (size_t k = 0; k < len; k++)
            cr_assert_neq(h[k], h[len], "prefixes of %zu and %zu bytes collide", k, len);
    }
    /* one byte changed anywhere, in every tail case (1-3, 4-7, 8+ bytes) */
    for (size_t len = 1; len <= 40; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            memcpy(b, a, len);
            b[pos] ^= 0x01;
            cr_assert_neq(rc_runs_hash(b, len), h[len], "len %zu, byte %zu", len, pos);
        }
    }
}

Test(runs_hash, sequential_ids_spread_over_shards_and_buckets)
{
    enum { N = 65536, SHARDS = 64, BUCKETS = 256 };
    static uint32_t shard[SHARDS], bucket[BUCKETS];
    for (uint32_t i = 0; i < N; i++) {
        char id[48];
        int len = snprintf(id, sizeof(id), "run-%08u", i);
        uint32_t h = rc_runs_hash(id, (size_t)len);
        shard[h >> 26]++;
        bucket[h & (BUCKETS - 1)]++;
    }
    /* means 1024 and 256, binomial sigma ~32 and ~16: deterministic input,
     * and a sound hash is far inside these bounds */
    for (int s = 0; s < SHARDS; s++)
        cr_assert(shard[s] > N / SHARDS * 3 / 4 && shard[s] < N / SHARDS * 5 / 4,
                  "shard %d has %u of %d ids", s, shard[s], N);
    for (int k = 0; k < BUCKETS; k++)
        cr_assert(bucket[k] > N / BUCKETS / 2 && bucket[k] < N / BUCKETS * 2,
                  "bucket %d has %u of %d ids", k, bucket[k], N);
}

/* ---- hash flooding: every table keyed by ids from outside uses a keyed
 * hash (SipHash-1-3, one random key per process), so ids that collide in
 * it cannot be computed from this source ---- */

/* SipHash-1-3 under the all-zero key of the bytes i * 7 + 1 (i = 0 ..
 * len - 1) for len 1..20 (every tail case), as CPython 3.11 computes it
 * (its bytes hash is SipHash-1-3; PYTHONHASHSEED=0 makes the key zero):
 *   PYTHONHASHSEED=0 python3 -c 'b = bytes(i * 7 + 1 for i in range(20));
 *     print([hash(b[:n]) % 2**64 for n in range(1, 21)])' */
static const uint64_t sip13_zero_key[20] = {
    UINT64_C(4952851536318644461),  UINT64_C(12842142218615890384), UINT64_C(6395194971279471032),
    UINT64_C(2605282575947423832),  UINT64_C(7183269172129335797),  UINT64_C(6440866931616788605),
    UINT64_C(12974891068981364692), UINT64_C(15144923029692024616), UINT64_C(5675706999282627899),
    UINT64_C(6170654340187388044),  UINT64_C(9365427950029055666),  UINT64_C(11646355953110736860),
    UINT64_C(12154091607957519547), UINT64_C(16787080284628243624), UINT64_C(6228321179899629906),
    UINT64_C(9109651249763150532),  UINT64_C(16218894777991158915), UINT64_C(14311085275975755606),
    UINT64_C(5004772852271609789),  UINT64_C(3475810842359675375),
};

Test(runs_hash, is_siphash13)
{
    rc_hash_seed(0, 0);
    char b[20];
    for (size_t i = 0; i < sizeof(b); i++)
        b[i] = (char)(i * 7 + 1);
    for (size_t len = 1; len <= sizeof(b); len++) {
        cr_assert_eq(rc_hash_keyed(b, len), sip13_zero_key[len - 1], "len %zu", len);
        uint64_t h = sip13_zero_key[len - 1];
        cr_assert_eq(rc_runs_hash(b, len), (uint32_t)(h ^ h >> 32), "len %zu", len);
    }
}

Test(runs_hash, two_keys_hash_the_same_ids_differently)
{
    enum { N = 1000 };
    static uint64_t first[N];
    char id[32];
    /* the process's own key (getrandom at start) is not the zero key */
    uint64_t own = rc_hash_keyed("run-1", 5);
    rc_hash_seed(0, 0);
    cr_assert_neq(own, rc_hash_keyed("run-1", 5));

    rc_hash_seed(0x0123456789abcdefu, 0xfedcba9876543210u);
    for (int i = 0; i < N; i++)
        first[i] = rc_hash_keyed(id, (size_t)snprintf(id, sizeof(id), "run-%d", i));
    rc_hash_seed(0x0123456789abcdefu, 0xfedcba9876543211u); /* one key bit */
    int same32 = 0;
    for (int i = 0; i < N; i++) {
        size_t len = (size_t)snprintf(id, sizeof(id), "run-%d", i);
        cr_assert_neq(rc_hash_keyed(id, len), first[i], "%s", id);
        same32 += rc_runs_hash(id, len) == (uint32_t)(first[i] ^ first[i] >> 32);
    }
    cr_assert_leq(same32, 1, "%d of %d 32-bit hashes unchanged by the key", same32, N);
    /* the same key again gives the same hashes (one key, one table layout) */
    rc_hash_seed(0x0123456789abcdefu, 0xfedcba9876543210u);
    for (int i = 0; i < N; i++)
        cr_assert_eq(rc_hash_keyed(id, (size_t)snprintf(id, sizeof(id), "run-%d", i)), first[i]);
}

/* The run id hash as it was before it was keyed (a multiply-xorshift with
 * fixed constants): what an attacker reading the source could target. */
static uint64_t unkeyed_run_hash(const char *p, size_t len)
{
    const uint64_t k = 0x9E3779B97F4A7C15u;
    uint64_t h = ((uint64_t)len + 1) * k;
    uint64_t w;
    if (len >= 8) {
        const char *last = p + len - 8;
        for (; p < last; p += 8) {
            memcpy(&w, p, 8);
            h = (h ^ w) * k;
            h ^= h >> 32;
        }
        memcpy(&w, last, 8);
        h = (h ^ w) * k;
    } else if (len >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + len - 4, 4);
        h = (h ^ (a | (uint64_t)b << 32)) * k;
    } else if (len > 0) {
        w = (uint64_t)(uint8_t)p[0] | (uint64_t)(uint8_t)p[len / 2] << 8 |
            (uint64_t)(uint8_t)p[len - 1] << 16;
        h = (h ^ w) * k;
    }
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9u;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBu;
    h ^= h >> 31;
    return h >> 32;
}

/* The idempotency index's hash before it was keyed: FNV-1a of the key of
 * a string id, 's' + its bytes (rc_run.c). */
static uint64_t unkeyed_idem_hash(const char *p, size_t len)
{
    uint64_t h = 1469598103934665603u;
    h = (h ^ 's') * 1099511628211u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211u;
    return h;
}

static uint64_t keyed_idem_hash(const char *p, size_t len)
{
    uint8_t k[40];
    k[0] = 's';
    memcpy(k + 1, p, len);
    return rc_hash_keyed(k, len + 1);
}

enum { FLOOD_N = 128 };

/* Finds FLOOD_N ids "<prefix><number>" whose hashes under fn agree in the
 * bits of mask, by brute force, as a flooder reading the source would. */
static void find_colliding(const char *prefix, uint64_t (*fn)(const char *, size_t), uint64_t mask,
                           char ids[FLOOD_N][32])
{
    uint64_t want = 0;
    int n = 0;
    for (uint32_t i = 0; n < FLOOD_N; i++) {
        cr_assert_lt(i, 1u << 30, "brute force ran away");
        char id[32];
        size_t len = (size_t)snprintf(id, sizeof(id), "%s%u", prefix, i);
        uint64_t h = fn(id, len) & mask;
        if (n == 0)
            want = h;
        if (h == want)
            memcpy(ids[n++], id, len + 1);
    }
}

Test(runs_hash, run_ids_colliding_without_the_key_spread_with_it_and_are_all_found)
{
    /* one shard (top 6 bits) and one bucket of a 256-bucket table (low 8) */
    const uint64_t mask = 0xFC0000FFu;
    static char ids[FLOOD_N][32];
    find_colliding("flood-", unkeyed_run_hash, mask, ids);

    /* Under a few fixed keys (deterministic), the ids spread as random ones
     * do: 128 ids over 64 shards fill ~55 of them, a few ids each, and
     * nearly every id has a (shard, bucket) of its own. */
    for (uint64_t key = 1; key <= 4; key++) {
        rc_hash_seed(key, key * 0x9E3779B97F4A7C15u);
        int shard[64] = {0}, shards = 0, most = 0, cells = 0;
        static uint8_t cell[1 << 14];
        memset(cell, 0, sizeof(cell));
        for (int i = 0; i < FLOOD_N; i++) {
            uint32_t h = rc_runs_hash(ids[i], strlen(ids[i]));
            shards += shard[h >> 26]++ == 0;
            most = shard[h >> 26] > most ? shard[h >> 26] : most;
            cells += cell[(h >> 26) << 8 | (h & 0xFF)]++ == 0;
        }
        cr_assert_geq(shards, 40, "key %lu: %d shards", (unsigned long)key, shards);
        cr_assert_leq(most, 12, "key %lu: %d ids in one shard", (unsigned long)key, most);
        cr_assert_geq(cells, FLOOD_N - 4, "key %lu: %d cells", (unsigned long)key, cells);
    }

    /* A registry (under the last key) takes every one of them and finds
     * each again: one run per id, each id's second event its seq 2. */
    struct rc_tb t;
    tb_start(&t, NULL);
    static struct tev ev[FLOOD_N];
    static struct tack a;
    for (int i = 0; i < FLOOD_N; i++)
        ev[i] = (struct tev){.run = ids[i], .type = "delta", .text = "x"};
    for (uint64_t seq = 1; seq <= 2; seq++) {
        tb_pub_batch(&t, ev, FLOOD_N, 0, &a);
        cr_assert_eq(a.n, FLOOD_N);
        for (int i = 0; i < FLOOD_N; i++) {
            cr_assert_eq(a.code[i], RC_PROTO_OK, "%s", ids[i]);
            cr_assert_eq(a.seq[i], seq, "%s", ids[i]);
        }
    }
    struct rc_runs *runs = rc_broker_runs(t.b);
    for (int i = 0; i < FLOOD_N; i++) {
        struct rc_actor *act = NULL;
        size_t len = strlen(ids[i]);
        cr_assert_eq(rc_runs_get(runs, ids[i], len, rc_runs_hash(ids[i], len), false, &act), 0,
                     "%s", ids[i]);
        rc_actor_release(act);
    }
    tb_stop(&t);
}

Test(runs_hash, event_ids_colliding_without_the_key_spread_with_it_and_stay_deduplicated)
{
    /* one slot of a 4096-slot idempotency index (its low 12 bits) */
    const uint64_t mask = 0xFFF;
    static char ids[FLOOD_N][32];
    find_colliding("ev-", unkeyed_idem_hash, mask, ids);
    for (uint64_t key = 1; key <= 4; key++) {
        rc_hash_seed(key, ~key);
        static uint8_t slot[4096];
        memset(slot, 0, sizeof(slot));
        int slots = 0;
        for (int i = 0; i < FLOOD_N; i++)
            slots += slot[keyed_idem_hash(ids[i], strlen(ids[i])) & mask]++ == 0;
        cr_assert_geq(slots, FLOOD_N - 8, "key %lu: %d slots", (unsigned long)key, slots);
    }

    /* One run takes them all once, then answers each again with `dup` and
     * its original seq. */
    struct rc_tb t;
    tb_start(&t, NULL);
    static struct tev ev[FLOOD_N];
    static struct tack a;
    for (int i = 0; i < FLOOD_N; i++)
        ev[i] = (struct tev){.run = "flooded", .type = "delta", .text = "x", .id = ids[i]};
    for (int round = 0; round < 2; round++) {
        tb_pub_batch(&t, ev, FLOOD_N, 0, &a);
        cr_assert_eq(a.n, FLOOD_N);
        for (int i = 0; i < FLOOD_N; i++) {
            cr_assert_eq(a.code[i], RC_PROTO_OK, "%s", ids[i]);
            cr_assert_eq(a.dup[i], round == 1, "%s, round %d", ids[i], round);
            cr_assert_eq(a.seq[i], (uint64_t)i + 1, "%s", ids[i]);
        }
    }
    tb_stop(&t);
}
