/* Hand-broken schedules: the validator rejects each with a message that says what is wrong. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/schedule/schedule.h"
#include "schedule_helpers.h"

Test(schedule, hand_written_schedule_passes)
{
    const char *ok[] = {"0F0 SEND_F 0F0->r1 0F1 SEND_F 0F1->r1 RECV_B 0B0<-r1 0B0 "
                        "RECV_B 0B1<-r1 0B1 OPT",
                        "RECV_F 1F0<-r0 1F0 1B0 SEND_B 1B0->r0 RECV_F 1F1<-r0 1F1 1B1 "
                        "SEND_B 1B1->r0 OPT"};
    sl_schedule *s = from_text("custom", 2, 2, false, ok);
    cr_assert_eq(sl_schedule_validate(s, 1), SL_OK, "%s", sl_last_error());
    sl_schedule_free(s);
}

Test(schedule, rejects_a_swapped_pair)
{
    /* 1F0 and 1B0 swapped on rank 1. */
    const char *bad[] = {"0F0 SEND_F 0F0->r1 RECV_B 0B0<-r1 0B0 OPT",
                         "RECV_F 1F0<-r0 1B0 1F0 SEND_B 1B0->r0 OPT"};
    sl_schedule *s = from_text("custom", 2, 1, false, bad);
    expect_rejected(s, SL_EINVAL,
                    "rank 1: 1B0 (action 1) runs before 1F0 (action 2), which "
                    "stashes the activations it needs");
    sl_schedule_free(s);

    /* A backward before the RECV that brings its gradient. */
    const char *bad2[] = {"0F0 SEND_F 0F0->r1 0B0 RECV_B 0B0<-r1 OPT",
                          "RECV_F 1F0<-r0 1F0 1B0 SEND_B 1B0->r0 OPT"};
    s = from_text("custom", 2, 1, false, bad2);
    expect_rejected(s, SL_EINVAL,
                    "rank 0: 0B0 (action 2) runs before RECV_B 0B0<-r1 (action 3), "
                    "which brings its output gradient");
    sl_schedule_free(s);
}

Test(schedule, rejects_a_missing_action)
{
    sl_schedule *s = gen("1f1b", 4, 8, 1, false);
    size_t n;
    const sl_action *a = sl_schedule_actions(s, 2, &n);
    sl_action *copy = malloc(sizeof *copy * n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!(a[i].type == SL_ACTION_B && a[i].mb == 5)) copy[k++] = a[i];
    cr_assert_eq(k, n - 1);
    cr_assert_eq(sl_schedule_set_actions(s, 2, copy, k), SL_OK);
    expect_rejected(s, SL_EINVAL, "rank 2 is missing 2B5");
    free(copy);
    sl_schedule_free(s);

    /* A missing RECV. */
    s = gen("gpipe", 2, 2, 1, false);
    a = sl_schedule_actions(s, 1, &n);
    cr_assert_eq(a[0].type, SL_ACTION_RECV_F);
    copy = malloc(sizeof *copy * n);
    memcpy(copy, a + 1, sizeof *copy * (n - 1));
    cr_assert_eq(sl_schedule_set_actions(s, 1, copy, n - 1), SL_OK);
    expect_rejected(s, SL_EINVAL, "rank 1 is missing RECV_F 1F0<-r0");
    free(copy);
    sl_schedule_free(s);
}

Test(schedule, rejects_a_crossed_send_order)
{
    /* Rank 0 sends micro-batch 1 before micro-batch 0; rank 1 receives 0 first. */
    const char *bad[] = {"0F0 0F1 SEND_F 0F1->r1 SEND_F 0F0->r1 RECV_B 0B0<-r1 0B0 "
                         "RECV_B 0B1<-r1 0B1 OPT",
                         "RECV_F 1F0<-r0 1F0 1B0 SEND_B 1B0->r0 RECV_F 1F1<-r0 1F1 1B1 "
                         "SEND_B 1B1->r0 OPT"};
    sl_schedule *s = from_text("custom", 2, 2, false, bad);
    expect_rejected(s, SL_EINVAL,
                    "rank 1: action 0 (RECV_F 1F0<-r0) expects 0F0 from rank 0, "
                    "but the next message on link r0->r1 is 0F1");
    /* The communication pass repairs it: it re-derives the sends from the compute order. */
    cr_assert_eq(sl_schedule_insert_comms(s), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_schedule_validate(s, 1), SL_OK, "%s", sl_last_error());
    sl_schedule_free(s);
}

Test(schedule, rejects_a_deadlock_naming_who_waits_for_what)
{
    /* Rank 0 waits for the gradient before sending the activation that produces it. */
    const char *bad[] = {"0F0 RECV_B 0B0<-r1 SEND_F 0F0->r1 0B0 OPT",
                         "RECV_F 1F0<-r0 1F0 1B0 SEND_B 1B0->r0 OPT"};
    sl_schedule *s = from_text("custom", 2, 1, false, bad);
    expect_rejected(s, SL_EDEADLOCK,
                    "rank 0 is blocked on action 1 (RECV_B 0B0<-r1), waiting "
                    "for rank 1 to send 1B0; rank 1 is blocked on action 0 "
                    "(RECV_F 1F0<-r0), waiting for rank 0 to send 0F0");
    sl_schedule_free(s);

    /* Full links: on a ring of two ranks (chunks 0/2 on rank 0, 1/3 on rank 1) rank 0 sends
     * four activations before it receives anything, while rank 1 receives two, then sends two.
     * With links of depth 2 that completes; with depth 1 each rank waits for the other to
     * receive. */
    char r0[2048], r1[2048];
    size_t l0 = 0, l1 = 0;
#define ADD(buf, len, ...) len += (size_t)snprintf(buf + len, sizeof buf - len, __VA_ARGS__)
    for (int m = 0; m < 4; m++) ADD(r0, l0, "0F%d SEND_F 0F%d->r1 ", m, m);
    for (int m = 0; m < 4; m++) ADD(r0, l0, "RECV_F 2F%d<-r1 2F%d SEND_F 2F%d->r1 ", m, m, m);
    for (int m = 0; m < 4; m++) ADD(r0, l0, "RECV_B 2B%d<-r1 2B%d SEND_B 2B%d->r1 ", m, m, m);
    for (int m = 0; m < 4; m++) ADD(r0, l0, "RECV_B 0B%d<-r1 0B%d ", m, m);
    ADD(r0, l0, "OPT");
    for (int m = 0; m < 4; m += 2)
        ADD(r1, l1, "RECV_F 1F%d<-r0 RECV_F 1F%d<-r0 1F%d SEND_F 1F%d->r0 1F%d SEND_F 1F%d->r0 ", m,
            m + 1, m, m, m + 1, m + 1);
    for (int m = 0; m < 4; m++)
        ADD(r1, l1, "RECV_F 3F%d<-r0 3F%d 3B%d SEND_B 3B%d->r0 ", m, m, m, m);
    for (int m = 0; m < 4; m++) ADD(r1, l1, "RECV_B 1B%d<-r0 1B%d SEND_B 1B%d->r0 ", m, m, m);
    ADD(r1, l1, "OPT");
#undef ADD
    sl_schedule_params p = {.name = "custom", .ranks = 2, .microbatches = 4, .chunks = 2};
    cr_assert_eq(sl_schedule_create(&p, false, &s), SL_OK);
    cr_assert_eq(sl_schedule_parse_rank(s, 0, r0), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_schedule_parse_rank(s, 1, r1), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_schedule_validate(s, 2), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_schedule_min_queue_depth(s), 2);
    expect_rejected(s, SL_EDEADLOCK,
                    "rank 0 is blocked on action 7 (SEND_F 0F3->r1), waiting "
                    "for rank 1 to receive (the link holds 1 messages)");
    sl_schedule_free(s);
}

Test(schedule, rejects_duplicates_wrong_peers_and_misplaced_opt)
{
    const char *dup[] = {"0F0 0F0 SEND_F 0F0->r1 RECV_B 0B0<-r1 0B0 OPT",
                         "RECV_F 1F0<-r0 1F0 1B0 SEND_B 1B0->r0 OPT"};
    sl_schedule *s = from_text("custom", 2, 1, false, dup);
    expect_rejected(s, SL_EINVAL, "rank 0: 0F0 appears twice (actions 0 and 1)");
    sl_schedule_free(s);

    const char *peer[] = {"0F0 SEND_F 0F0->r0 RECV_B 0B0<-r1 0B0 OPT",
                          "RECV_F 1F0<-r0 1F0 1B0 SEND_B 1B0->r0 OPT"};
    s = from_text("custom", 2, 1, false, peer);
    expect_rejected(s, SL_EINVAL, "names peer 0 but the other stage runs on rank 1");
    sl_schedule_free(s);

    const char *opt[] = {"0F0 SEND_F 0F0->r1 OPT RECV_B 0B0<-r1 0B0",
                         "RECV_F 1F0<-r0 1F0 1B0 SEND_B 1B0->r0 OPT"};
    s = from_text("custom", 2, 1, false, opt);
    expect_rejected(s, SL_EINVAL, "OPT at action 2 must be the last action");
    sl_schedule_free(s);

    const char *wrong_rank[] = {"1F0 OPT", "OPT"};
    s = from_text("custom", 2, 1, false, wrong_rank);
    expect_rejected(s, SL_EINVAL, "belongs to rank 1");
    sl_schedule_free(s);

    const char *split[] = {"0F0 0I0 0B0 0W0 OPT"};
    s = from_text("zb-h1", 1, 1, true, split);
    expect_rejected(s, SL_EINVAL, "runs 0B0 and also I or W of it");
    sl_schedule_free(s);
}
