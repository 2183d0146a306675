/* PyTorch pipelining's schedule CSV both ways: every generator's schedule written and read back is
 * the same schedule (compute-only: the same compute order and placement; with communication: the
 * same action lists), and hand-broken files are refused naming the rank and the action. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/schedule/schedule.h"

static sl_schedule *gen(const char *name, int d, int m, int v)
{
    sl_schedule_params p = {.name = name, .ranks = d, .microbatches = m, .chunks = v};
    sl_schedule *s = NULL;
    cr_assert_eq(sl_schedule_generate(&p, &s), SL_OK, "%s D=%d M=%d: %s", name, d, m,
                 sl_last_error());
    return s;
}

/* The schedule in PyTorch's CSV, as a string to free. */
static char *csv_of(const sl_schedule *s, bool comms)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    cr_assert_eq(sl_schedule_write_pytorch(f, s, comms), SL_OK, "%s", sl_last_error());
    fclose(f);
    return buf;
}

static bool same_actions(const sl_schedule *a, const sl_schedule *b, int r, bool compute_only)
{
    size_t na, nb, i = 0, j = 0;
    const sl_action *x = sl_schedule_actions(a, r, &na), *y = sl_schedule_actions(b, r, &nb);
    for (;;) {
        while (compute_only && i < na && x[i].type > SL_ACTION_R) i++;
        while (compute_only && j < nb && y[j].type > SL_ACTION_R) j++;
        if (i == na || j == nb) return i == na && j == nb;
        if (memcmp(&x[i], &y[j], sizeof *x)) return false;
        i++, j++;
    }
}

Test(schedule_csv, every_generator_round_trips_through_both_forms)
{
    static const struct {
        const char *name;
        int v, min_m;
    } gens[] = {{"gpipe", 1, 1}, {"1f1b", 1, 1}, {"interleaved", 2, 4}, {"looped-bfs", 3, 1},
                {"zb-h1", 1, 1}, {"zb-v", 0, 7}, {"dualpipev", 0, 8}};
    int checked = 0;
    for (size_t g = 0; g < sizeof gens / sizeof *gens; g++)
        for (int d = 2; d <= 4; d++)
            for (int m = gens[g].min_m; m <= 12; m += 4) {
                if (!strcmp(gens[g].name, "interleaved") && m % d) continue;
                sl_schedule *s = gen(gens[g].name, d, m, gens[g].v);
                for (int comms = 0; comms < 2; comms++) {
                    char *text = csv_of(s, comms);
                    sl_schedule *t = NULL;
                    cr_assert_eq(sl_schedule_read_pytorch(text, &t), SL_OK, "%s D=%d M=%d: %s",
                                 gens[g].name, d, m, sl_last_error());
                    cr_assert_eq(sl_schedule_validate(t, 1 << 20), SL_OK, "%s", sl_last_error());
                    cr_assert_eq(t->ranks, s->ranks);
                    cr_assert_eq(t->stages, s->stages);
                    cr_assert_eq(t->microbatches, s->microbatches);
                    for (int st = 0; st < s->stages; st++)
                        cr_assert_eq(sl_schedule_rank_of_stage(t, st),
                                     sl_schedule_rank_of_stage(s, st));
                    for (int r = 0; r < d; r++)
                        cr_assert(same_actions(s, t, r, !comms), "%s D=%d M=%d rank %d comms %d",
                                  gens[g].name, d, m, r, comms);
                    /* and written again, the same text */
                    char *again = csv_of(t, comms);
                    cr_assert_str_eq(again, text);
                    free(again);
                    free(text);
                    sl_schedule_free(t);
                    checked++;
                }
                sl_schedule_free(s);
            }
    cr_assert_gt(checked, 80);
}

Test(schedule_csv, writes_pytorch_action_names)
{
    sl_schedule *s = gen("1f1b", 2, 2, 1);
    char *text = csv_of(s, false);
    cr_assert_str_eq(text, "0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1\n");
    free(text);
    text = csv_of(s, true);
    cr_assert(!strncmp(text, "0F0,0SEND_F0,0F1,0SEND_F1,0RECV_B0,0B0", 38), "%s", text);
    cr_assert(strstr(text, "\n1RECV_F0,1F0,1B0,1SEND_B0,"), "%s", text);
    free(text);
    sl_schedule_free(s);
    /* PyTorch's own cells: empty slots (None), FSDP's UNSHARD/RESHARD, REDUCE_GRAD, and an
     * overlapped pair, as DualPipeV writes them. */
    sl_schedule *t = NULL;
    cr_assert_eq(sl_schedule_read_pytorch("0UNSHARD,0F0,,0F1,(0B0;0F2)OVERLAP_F_B,0B1,0B2,"
                                          "0REDUCE_GRAD\n",
                                          &t),
                 SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_schedule_validate(t, 0), SL_OK, "%s", sl_last_error());
    cr_assert_eq(t->microbatches, 3);
    sl_schedule_free(t);
    /* with recompute there is no PyTorch form */
    sl_schedule_params p = {.name = "1f1b", .ranks = 2, .microbatches = 2, .recompute = true};
    cr_assert_eq(sl_schedule_generate(&p, &s), SL_OK);
    FILE *f = fopen("/dev/null", "w");
    cr_assert_eq(sl_schedule_write_pytorch(f, s, false), SL_EINVAL);
    cr_assert(strstr(sl_last_error(), "no recompute action (R)"), "%s", sl_last_error());
    sl_schedule_free(s);
    /* nor for chimera's two replicas: written, the file would lack half of every stage's
     * micro-batches and the replicas' SYNC, and its reader would refuse it */
    p = (sl_schedule_params){.name = "chimera", .ranks = 4, .microbatches = 8};
    cr_assert_eq(sl_schedule_generate(&p, &s), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_schedule_write_pytorch(f, s, true), SL_EINVAL);
    cr_assert(strstr(sl_last_error(), "chimera's 2 replicas"), "%s", sl_last_error());
    fclose(f);
    sl_schedule_free(s);
}

/* Reads `text` and validates it; expects `status` with `says` in the message. */
static void refused(const char *text, int status, const char *says)
{
    sl_schedule *s = NULL;
    int st = sl_schedule_read_pytorch(text, &s);
    if (st == SL_OK) st = sl_schedule_validate(s, 1 << 20);
    cr_assert_eq(st, status, "%s: %d %s", text, st, sl_last_error());
    cr_assert(strstr(sl_last_error(), says), "%s\n  said: %s\n  want: %s", text, sl_last_error(),
              says);
    sl_schedule_free(s);
}

Test(schedule_csv, hand_broken_files_are_refused_naming_rank_and_action)
{
    /* an unknown action */
    refused("0F0,0F1,0B0,0B1\n1F0,1X0,1F1,1B1\n", SL_EFORMAT,
            "rank 1, action 1: '1X0' is not a PyTorch pipelining action");
    /* a duplicate */
    refused("0F0,0F1,0B0,0B1\n1F0,1B0,1F0,1F1,1B1\n", SL_EINVAL, "1F0 appears twice");
    /* a missing backward: the rank before waits for a gradient never made */
    refused("0F0,0F1,0B0,0B1\n1F0,1B0,1F1\n", SL_EINVAL,
            "rank 0: 0B1 needs a gradient from rank 1, which rank 1 never produces");
    /* a SEND without its RECV */
    refused("0F0,0SEND_F0,0RECV_B0,0B0\n1F0,1B0,1SEND_B0\n", SL_EINVAL,
            "rank 1 is missing RECV_F 1F0<-r0");
    /* a RECV without its SEND */
    refused("0F0,0RECV_B0,0B0\n1RECV_F0,1F0,1B0,1SEND_B0\n", SL_EINVAL,
            "rank 0 is missing SEND_F 0F0->r1");
    /* both ranks wait forever: rank 0 receives the gradient before it sends the input */
    refused("0F0,0RECV_B0,0SEND_F0,0B0\n1RECV_F0,1F0,1B0,1SEND_B0\n", SL_EDEADLOCK,
            "rank 0 is blocked on action 1 (RECV_B 0B0<-r1), waiting for rank 1 to send 1B0");
    /* a stage on two ranks */
    refused("0F0,0B0,1F0,1B0\n1F1,1B1,0F1,0B1\n", SL_EINVAL,
            "rank 1, action 0: stage 1 runs on rank 0 and on rank 1");
}
