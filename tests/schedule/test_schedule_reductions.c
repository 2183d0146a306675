/* Reductions before OPT (TIED and NORM) and the forward-only evaluation schedule. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "runtime/schedule/schedule.h"
#include "schedule_helpers.h"

/* ---------------------------------------------------------------------------------------- */
/* Reductions before OPT: TIED and NORM */

/* TIED on exactly the ranks of the first and last stage (naming each other; one local TIED when
 * one rank holds both), NORM on every rank when there are several, right before OPT, TIED first;
 * the validator proves the schedule completes and the simulator counts their cost. */
static void check_reductions(const char *name, int d, int m, int v, bool recompute)
{
    const int S = d * v;
    sl_schedule_params p = {.name = name,
                            .ranks = d,
                            .microbatches = m,
                            .chunks = v,
                            .recompute = recompute,
                            .tied_stages = {0, S - 1},
                            .norm = true};
    sl_schedule *s = NULL;
    cr_assert_eq(sl_schedule_generate(&p, &s), SL_OK, "%s D=%d v=%d: %s", name, d, v,
                 sl_last_error());
    cr_assert_eq(sl_schedule_validate(s, 0), SL_OK, "%s D=%d v=%d: %s", name, d, v,
                 sl_last_error());
    for (int r = 0; r < d; r++) {
        size_t n;
        const sl_action *a = sl_schedule_actions(s, r, &n);
        bool holds_first = r == 0, holds_last = (S - 1) % d == r;
        size_t at = n - 1;
        cr_assert_eq(a[at].type, SL_ACTION_OPT);
        if (d > 1) {
            cr_assert_eq(a[--at].type, SL_ACTION_NORM, "%s D=%d rank %d: NORM before OPT", name, d,
                         r);
        }
        int tieds = 0;
        for (size_t i = 0; i < n; i++) tieds += a[i].type == SL_ACTION_TIED;
        if (S == 1 || (!holds_first && !holds_last)) { /* one stage: its own alias */
            cr_assert_eq(tieds, 0, "%s D=%d: rank %d holds no tied stage", name, d, r);
            continue;
        }
        cr_assert_eq(tieds, 1, "%s D=%d rank %d", name, d, r);
        const sl_action *t = &a[--at];
        cr_assert_eq(t->type, SL_ACTION_TIED, "%s D=%d rank %d: TIED before NORM and OPT", name, d,
                     r);
        cr_assert_eq(t->stage, holds_first ? 0 : S - 1);
        cr_assert_eq(t->peer, holds_first ? (S - 1) % d : 0);
        for (size_t i = at + 1; i < n; i++) cr_assert(a[i].type >= SL_ACTION_SEND_F);
    }
    sl_schedule_sim sim, plain;
    cr_assert_eq(sl_schedule_simulate(s, NULL, &sim), SL_OK, "%s", sl_last_error());
    sl_schedule *bare;
    p.tied_stages[1] = 0;
    p.norm = false;
    cr_assert_eq(sl_schedule_generate(&p, &bare), SL_OK);
    cr_assert_eq(sl_schedule_simulate(bare, NULL, &plain), SL_OK);
    cr_assert(S == 1 ? sim.makespan == plain.makespan
                     : sim.makespan > plain.makespan && sim.makespan < plain.makespan + 1,
              "%s D=%d: the reductions cost a little (%g vs %g)", name, d, sim.makespan,
              plain.makespan);
    sl_schedule_sim_free(&sim);
    sl_schedule_sim_free(&plain);
    sl_schedule_free(bare);
    sl_schedule_free(s);
}

Test(schedule, reductions_before_opt_on_the_right_ranks)
{
    static const int ranks[] = {1, 2, 3, 4};
    for (size_t g = 0; g < SL_ARRAY_LEN(one_chunk); g++)
        for (size_t i = 0; i < SL_ARRAY_LEN(ranks); i++)
            for (int rc = 0; rc <= 1; rc++) check_reductions(one_chunk[g], ranks[i], 8, 1, rc);
    check_reductions("interleaved", 2, 4, 2, false);
    check_reductions("interleaved", 4, 8, 2, true);
    check_reductions("interleaved", 1, 2, 2, false); /* both copies on rank 0: a local sum */
    sl_schedule *s;
    cr_assert_eq(sl_schedule_generate(&(sl_schedule_params){.name = "interleaved",
                                                            .ranks = 1,
                                                            .microbatches = 2,
                                                            .chunks = 2,
                                                            .tied_stages = {0, 1}},
                                      &s),
                 SL_OK);
    size_t n;
    const sl_action *a = sl_schedule_actions(s, 0, &n);
    cr_assert_eq(a[n - 2].type, SL_ACTION_TIED);
    cr_assert_eq(a[n - 2].peer, 0);
    sl_exchange ex[SL_EXCHANGES_MAX];
    cr_assert_eq(sl_action_exchanges(s, 0, &a[n - 2], ex), 0, "a local sum sends nothing");
    sl_schedule_free(s);
}

Test(schedule, norm_is_a_ring_all_reduce)
{
    sl_schedule *s = gen("1f1b", 4, 4, 1, false);
    sl_schedule_free(s);
    cr_assert_eq(sl_schedule_generate(
                     &(sl_schedule_params){
                         .name = "1f1b", .ranks = 4, .microbatches = 4, .chunks = 1, .norm = true},
                     &s),
                 SL_OK);
    sl_action norm = {SL_ACTION_NORM, -1, -1, -1};
    sl_exchange ex[SL_EXCHANGES_MAX];
    /* rank 0: partial to 1, total from 3, total to 1; rank 3: partial from 2, total to 0 */
    cr_assert_eq(sl_action_exchanges(s, 0, &norm, ex), 3);
    cr_assert(ex[0].send && ex[0].peer == 1 && ex[0].dir == 0 && ex[0].round == 0);
    cr_assert(!ex[1].send && ex[1].peer == 3 && ex[1].dir == 1 && ex[1].round == 1);
    cr_assert(ex[2].send && ex[2].peer == 1 && ex[2].round == 1);
    cr_assert_eq(sl_action_exchanges(s, 2, &norm, ex), 3, "rank 2 receives the total last");
    cr_assert_eq(sl_action_exchanges(s, 3, &norm, ex), 2);
    cr_assert(!ex[0].send && ex[0].peer == 2 && ex[0].round == 0);
    cr_assert(ex[1].send && ex[1].peer == 0 && ex[1].dir == 0 && ex[1].round == 1);
    cr_assert_eq(sl_schedule_min_queue_depth(s), 1);
    sl_schedule_free(s);
}

Test(schedule, reductions_text_round_trip)
{
    const char *texts[] = {"TIED 0<->r3", "TIED 7<->r0", "NORM"};
    for (size_t i = 0; i < SL_ARRAY_LEN(texts); i++) {
        sl_action a;
        size_t used;
        cr_assert_eq(sl_action_parse(texts[i], &a, &used), SL_OK, "%s", sl_last_error());
        cr_assert_eq(used, strlen(texts[i]));
        char buf[32];
        sl_action_format(&a, buf, sizeof buf);
        cr_assert_str_eq(buf, texts[i]);
    }
    sl_action a;
    cr_assert_eq(sl_action_parse("TIED 0->r3", &a, NULL), SL_EFORMAT);
    cr_assert_eq(sl_action_parse("NORMAL", &a, NULL), SL_EFORMAT);
}

static sl_schedule *tied_from_text(bool norm, const char *r0, const char *r1)
{
    sl_schedule_params p = {.name = "custom",
                            .ranks = 2,
                            .microbatches = 1,
                            .chunks = 1,
                            .tied_stages = {0, 1},
                            .norm = norm};
    sl_schedule *s;
    cr_assert_eq(sl_schedule_create(&p, false, &s), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_schedule_parse_rank(s, 0, r0), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_schedule_parse_rank(s, 1, r1), SL_OK, "%s", sl_last_error());
    return s;
}

#define R0 "0F0 SEND_F 0F0->r1 RECV_B 0B0<-r1 0B0 "
#define R1 "RECV_F 1F0<-r0 1F0 1B0 SEND_B 1B0->r0 "

Test(schedule, validator_checks_the_reductions)
{
    sl_schedule *s = tied_from_text(true, R0 "TIED 0<->r1 NORM OPT", R1 "TIED 1<->r0 NORM OPT");
    cr_assert_eq(sl_schedule_validate(s, 1), SL_OK, "%s", sl_last_error());
    sl_schedule_free(s);
    /* one side of the exchange missing */
    s = tied_from_text(true, R0 "TIED 0<->r1 NORM OPT", R1 "NORM OPT");
    expect_rejected(s, SL_EINVAL, "rank 1 has no TIED");
    sl_schedule_free(s);
    s = tied_from_text(true, R0 "TIED 0<->r1 NORM OPT", R1 "TIED 1<->r0 OPT");
    expect_rejected(s, SL_EINVAL, "rank 1 has no NORM");
    sl_schedule_free(s);
    /* the wrong twin, NORM before TIED, a reduction before the last compute */
    s = tied_from_text(true, R0 "TIED 0<->r0 NORM OPT", R1 "TIED 1<->r0 NORM OPT");
    expect_rejected(s, SL_EINVAL, "does not match the schedule's tied stages 0 and 1");
    sl_schedule_free(s);
    s = tied_from_text(true, R0 "NORM TIED 0<->r1 OPT", R1 "TIED 1<->r0 NORM OPT");
    expect_rejected(s, SL_EINVAL, "NORM (action 4) runs before TIED (action 5)");
    sl_schedule_free(s);
    s = tied_from_text(false, "0F0 SEND_F 0F0->r1 TIED 0<->r1 RECV_B 0B0<-r1 0B0 OPT",
                       R1 "TIED 1<->r0 OPT");
    expect_rejected(s, SL_EINVAL, "runs before compute action");
    sl_schedule_free(s);
    /* both ends present but in an order the links cannot carry: rank 1 sends its tied gradient
     * before the gradient rank 0 waits for */
    s = tied_from_text(false, R0 "TIED 0<->r1 OPT",
                       "RECV_F 1F0<-r0 1F0 1B0 TIED 1<->r0 SEND_B 1B0->r0 OPT");
    expect_rejected(s, SL_EINVAL, "the tied gradient for stage 0");
    sl_schedule_free(s);
    /* NORM where the schedule has none */
    s = tied_from_text(false, R0 "TIED 0<->r1 NORM OPT", R1 "TIED 1<->r0 NORM OPT");
    expect_rejected(s, SL_EINVAL, "no norm to combine");
    sl_schedule_free(s);
}

/* The evaluation schedule: GPipe's forwards only, through every stage, validated. */
static sl_schedule *gen_eval(int d, int m, int v)
{
    sl_schedule_params p = {.name = "eval",
                            .ranks = d,
                            .microbatches = m,
                            .chunks = v,
                            .recompute = true, /* ignored: nothing to recompute */
                            .tied_stages = {0, d * v - 1},
                            .norm = true}; /* ignored: no gradients */
    sl_schedule *s = NULL;
    cr_assert_eq(sl_schedule_generate(&p, &s), SL_OK, "eval D=%d M=%d v=%d: %s", d, m, v,
                 sl_last_error());
    return s;
}

static void list_text(const sl_schedule *s, int rank, char *buf, size_t cap)
{
    size_t n, len = 0;
    const sl_action *a = sl_schedule_actions(s, rank, &n);
    buf[0] = 0;
    for (size_t i = 0; i < n; i++) {
        char t[40];
        sl_action_format(&a[i], t, sizeof t);
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? " " : "", t);
    }
}

Test(schedule, eval_is_forward_only_and_valid)
{
    sl_schedule *s = gen_eval(2, 2, 1);
    cr_assert(s->forward_only);
    cr_assert(!s->norm && !s->recompute && s->tied_stages[0] == s->tied_stages[1]);
    char buf[512];
    list_text(s, 0, buf, sizeof buf);
    cr_assert_str_eq(buf, "0F0 SEND_F 0F0->r1 0F1 SEND_F 0F1->r1");
    list_text(s, 1, buf, sizeof buf);
    cr_assert_str_eq(buf, "RECV_F 1F0<-r0 1F0 RECV_F 1F1<-r0 1F1");
    cr_assert_eq(sl_schedule_validate(s, 1), SL_OK, "%s", sl_last_error());
    sl_schedule_free(s);

    /* Every shape the executor can meet, interleaved chunks included (the ring's last link
     * carries forwards back to rank 0): valid with the executor's link depth (M·v messages, all
     * one evaluation batch puts on a link), with depth-1 links when there is one chunk per rank,
     * every F once, no backward. */
    static const int ds[] = {1, 2, 3, 4, 8}, ms[] = {1, 2, 4, 5}, vs[] = {1, 2, 3};
    for (size_t i = 0; i < SL_ARRAY_LEN(ds); i++)
        for (size_t j = 0; j < SL_ARRAY_LEN(ms); j++)
            for (size_t k = 0; k < SL_ARRAY_LEN(vs); k++) {
                s = gen_eval(ds[i], ms[j], vs[k]);
                int depth = SL_MAX(ms[j] * vs[k], 2);
                cr_assert_eq(sl_schedule_validate(s, depth), SL_OK, "D=%d M=%d v=%d: %s", ds[i],
                             ms[j], vs[k], sl_last_error());
                int least = sl_schedule_min_queue_depth(s);
                cr_assert(least >= 1 && least <= depth, "D=%d M=%d v=%d: %d", ds[i], ms[j], vs[k],
                          least);
                if (vs[k] == 1) cr_assert_eq(least, 1, "D=%d M=%d", ds[i], ms[j]);
                int nf = 0;
                for (int r = 0; r < s->ranks; r++) {
                    size_t n;
                    const sl_action *a = sl_schedule_actions(s, r, &n);
                    for (size_t x = 0; x < n; x++) {
                        cr_assert(a[x].type == SL_ACTION_F || a[x].type == SL_ACTION_SEND_F ||
                                  a[x].type == SL_ACTION_RECV_F);
                        nf += a[x].type == SL_ACTION_F;
                    }
                }
                cr_assert_eq(nf, ds[i] * ms[j] * vs[k]);
                sl_schedule_sim sim;
                sl_schedule_costs costs = {.queue_depth = depth};
                cr_assert_eq(sl_schedule_simulate(s, &costs, &sim), SL_OK, "%s", sl_last_error());
                sl_schedule_sim_free(&sim);
                sl_schedule_free(s);
            }

    /* Only "eval" makes a forward-only schedule. */
    sl_schedule_params p = {.name = "1f1b", .ranks = 2, .microbatches = 2, .forward_only = true};
    cr_assert_eq(sl_schedule_generate(&p, &s), SL_EINVAL);
    cr_assert(strstr(sl_last_error(), "forward-only schedule is generated by \"eval\""), "%s",
              sl_last_error());
}

Test(schedule, validator_checks_forward_only_schedules)
{
    sl_schedule_params p = {.name = "eval", .ranks = 2, .microbatches = 1, .forward_only = true};
    sl_schedule *s;
    cr_assert_eq(sl_schedule_create(&p, false, &s), SL_OK);
    cr_assert_eq(sl_schedule_parse_rank(s, 0, "0F0 SEND_F 0F0->r1"), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_schedule_parse_rank(s, 1, "RECV_F 1F0<-r0 1F0"), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_schedule_validate(s, 1), SL_OK, "%s", sl_last_error());
    /* a backward, an OPT, a missing forward, a missing receive */
    cr_assert_eq(sl_schedule_parse_rank(s, 1, "RECV_F 1F0<-r0 1F0 1B0"), SL_OK);
    expect_rejected(s, SL_EINVAL, "a forward-only schedule runs only F, SEND_F and RECV_F");
    cr_assert_eq(sl_schedule_parse_rank(s, 1, "RECV_F 1F0<-r0 1F0 OPT"), SL_OK);
    expect_rejected(s, SL_EINVAL, "a forward-only schedule runs only F, SEND_F and RECV_F");
    cr_assert_eq(sl_schedule_parse_rank(s, 1, "RECV_F 1F0<-r0"), SL_OK);
    expect_rejected(s, SL_EINVAL, "rank 1 is missing 1F0");
    cr_assert_eq(sl_schedule_parse_rank(s, 1, "1F0"), SL_OK);
    expect_rejected(s, SL_EINVAL, "rank 1 is missing RECV_F 1F0<-r0");
    /* the communication pass rebuilds it without an OPT */
    cr_assert_eq(sl_schedule_insert_comms(s), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_schedule_validate(s, 1), SL_OK, "%s", sl_last_error());
    size_t n;
    const sl_action *a = sl_schedule_actions(s, 1, &n);
    cr_assert_eq(n, 2);
    cr_assert_eq(a[1].type, SL_ACTION_F);
    sl_schedule_free(s);
}

/* ---------------------------------------------------------------------------------------- */
/* Where a message from NEXT can be read inside a step (the stop vote's broadcast) */

static long first_recv_b0(const sl_schedule *s, int rank)
{
    size_t n;
    const sl_action *a = sl_schedule_actions(s, rank, &n);
    for (size_t i = 0; i < n; i++)
        if (a[i].type == SL_ACTION_RECV_B && a[i].mb == 0) return (long)i;
    return -1;
}

/* GPipe, 1F1B and ZB-H1 with a GPT's reductions: every rank but the last reads at its first
 * RECV_B (from NEXT, its first receive from there, after no send towards PREV); the last rank
 * receives nothing from NEXT. The V schedules and chimera on 4 ranks read inside too; on 2 ranks
 * (both links lead to one peer) rank 0 sends towards PREV first, so it cannot. */
Test(reductions, upstream_read_is_the_first_receive_from_next)
{
    const int ds[] = {2, 3, 4, 8};
    for (size_t g = 0; g < 3; g++)
        for (size_t di = 0; di < sizeof ds / sizeof *ds; di++) {
            int d = ds[di];
            sl_schedule_params p = {.name = one_chunk[g],
                                    .ranks = d,
                                    .microbatches = 8,
                                    .chunks = 1,
                                    .tied_stages = {0, d - 1},
                                    .norm = true};
            sl_schedule *s = NULL;
            cr_assert_eq(sl_schedule_generate(&p, &s), SL_OK, "%s", sl_last_error());
            for (int r = 0; r < d; r++) {
                long at = sl_schedule_upstream_read(s, r);
                if (r == d - 1) {
                    cr_assert_eq(at, -1, "%s D=%d: the last rank", one_chunk[g], d);
                    continue;
                }
                cr_assert_eq(at, first_recv_b0(s, r), "%s D=%d rank %d", one_chunk[g], d, r);
                size_t n;
                const sl_action *a = sl_schedule_actions(s, r, &n);
                cr_assert_eq(sl_schedule_link_dir(s, r, &a[at]), 0);
                for (long i = 0; i < at; i++)
                    cr_assert(a[i].type != SL_ACTION_SEND_B, "%s D=%d rank %d", one_chunk[g], d, r);
            }
            sl_schedule_free(s);
        }
    const char *two_chunks[] = {"zb-v", "dualpipev", "chimera"};
    for (size_t g = 0; g < 3; g++) {
        sl_schedule *four = gen(two_chunks[g], 4, 8, 2, false);
        for (int r = 0; r < 3; r++)
            cr_assert_geq(sl_schedule_upstream_read(four, r), 0, "%s rank %d", two_chunks[g], r);
        sl_schedule_free(four);
        sl_schedule *two = gen(two_chunks[g], 2, 8, 2, false);
        cr_assert_eq(sl_schedule_upstream_read(two, 0), -1, "%s on 2 ranks", two_chunks[g]);
        sl_schedule_free(two);
    }
}
