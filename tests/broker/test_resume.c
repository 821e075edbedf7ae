/*
 * Resume exactness while events race the subscription: subscribers that
 * join a run at random moments of a fast publish stream, with `since` or a
 * snapshot, must see every later seq exactly once, in order, up to the
 * terminal.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "rc_clock.h"
#include "rc_testsub.h"
#include "rc_tutil.h"

enum { PRE = 100, N = 3000, SUBS = 8 };

struct pubarg {
    struct rc_tb *t;
};

static void *publisher(void *arg)
{
    struct pubarg *p = arg;
    struct rc_buf b;
    rc_buf_init(&b);
    int sent = 0, k = 1;
    while (sent < N) {
        int n = k % 7 + 1; /* batches of 1..7 events */
        if (sent + n > N)
            n = N - sent;
        rc_buf_reset(&b);
        rc_mpw_array(&b, (uint32_t)n);
        for (int i = 0; i < n; i++)
            tev_encode(&b, &(struct tev){.run = "rr", .type = "delta", .text = "0123456789"});
        while (rc_broker_publish(p->t->b, b.data, b.len, 0, NULL, NULL) != 0)
            rc_clock_sleep_ms(1);
        sent += n;
        k++;
        if (k % 50 == 0)
            rc_clock_sleep_ms(1);
    }
    rc_buf_reset(&b);
    tev_encode(&b, &(struct tev){.run = "rr", .type = "complete"});
    rc_broker_publish(p->t->b, b.data, b.len, 0, NULL, NULL);
    rc_buf_fini(&b);
    return NULL;
}

Test(resume, exact_while_events_race_the_subscription)
{
    struct rc_tb t;
    const char *opts[] = {"run-mailbox-limit", "1000000", NULL};
    tb_start(&t, opts);
    for (int i = 0; i < PRE; i++)
        cr_assert_eq(tb_pub(&t, &(struct tev){.run = "rr", .type = "delta", .text = "x"}, 0, NULL),
                     RC_PROTO_OK);
    struct pubarg pa = {&t};
    pthread_t th;
    pthread_create(&th, NULL, publisher, &pa);
    struct rc_testsub *subs[SUBS];
    uint64_t since[SUBS];
    for (int s = 0; s < SUBS; s++) {
        bool snap = s % 4 == 3;
        since[s] = snap ? 0 : (uint64_t)(s * 13) % PRE;
        subs[s] = tb_subscribe(&t, (struct rc_sub_req){.kind = RC_SUB_RUN,
                                                       .target = "rr",
                                                       .target_len = 2,
                                                       .sub_id = (uint64_t)s,
                                                       .has_since = !snap,
                                                       .since = since[s],
                                                       .has_epoch = true,
                                                       .epoch = rc_broker_epoch(t.b),
                                                       .snapshot = -1});
        rc_clock_sleep_ms(3);
    }
    pthread_join(th, NULL);
    const uint64_t last = PRE + N + 1;
    for (int s = 0; s < SUBS; s++) {
        cr_assert(rc_testsub_wait_terminal(subs[s], "rr", 10000), "subscriber %d", s);
        size_t n = rc_testsub_count(subs[s]);
        size_t i = 0;
        uint64_t expect = since[s] + 1;
        struct rc_tframe f;
        if (s % 4 == 3) {
            rc_testsub_get(subs[s], 0, &f);
            cr_assert_eq(f.kind, RC_FRAME_SNAP, "snapshot first");
            expect = f.seq + 1;
            i = 1;
        }
        for (; i < n; i++) {
            rc_testsub_get(subs[s], i, &f);
            cr_assert_eq(f.kind, RC_FRAME_EV);
            cr_assert_eq(f.seq, expect, "subscriber %d: got seq %lu, expected %lu", s,
                         (unsigned long)f.seq, (unsigned long)expect);
            expect++;
        }
        cr_assert_eq(expect, last + 1, "subscriber %d ended at %lu", s, (unsigned long)expect);
    }
    for (int s = 0; s < SUBS; s++)
        rc_testsub_free(subs[s]);
    tb_stop(&t);
}
