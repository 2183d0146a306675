/* Schedules with several stages per rank beyond interleaved: looped BFS, and the V schedules zb-v
 * and dualpipev (rank r holds stages r and 2D-1-r). Every one passes the validator over the grid,
 * meets its bubble formula exactly and its memory bound on every rank, and refuses the shapes it
 * cannot run with one line naming the rule and the numbers. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "runtime/schedule/schedule.h"

static const int grid_d[] = {2, 3, 4, 8};

static int gen_st(const char *name, int d, int m, int v, bool recompute, sl_schedule **s)
{
    sl_schedule_params p = {
        .name = name, .ranks = d, .microbatches = m, .chunks = v, .recompute = recompute};
    *s = NULL;
    return sl_schedule_generate(&p, s);
}

static sl_schedule *gen(const char *name, int d, int m, int v, bool recompute)
{
    sl_schedule *s;
    int st = gen_st(name, d, m, v, recompute, &s);
    cr_assert_eq(st, SL_OK, "%s D=%d M=%d v=%d: %s", name, d, m, v, sl_last_error());
    return s;
}

static sl_schedule_sim sim_of(const sl_schedule *s, double f, double b, double w, int depth)
{
    sl_schedule_costs c = {.f = f, .b = b, .w = w, .queue_depth = depth};
    sl_schedule_sim sim;
    int st = sl_schedule_simulate(s, &c, &sim);
    cr_assert_eq(st, SL_OK, "%s D=%d M=%d: %s", s->name, s->ranks, s->microbatches,
                 sl_last_error());
    return sim;
}

/* The smallest M each takes (and the chunks it needs, 0 for the default). */
static int min_m(const char *name, int d)
{
    return !strcmp(name, "zb-v") ? 2 * d - 1 : !strcmp(name, "dualpipev") ? 2 * d : 1;
}

Test(schedule_v, v_placement_puts_stages_r_and_2d_minus_1_minus_r_on_rank_r)
{
    sl_schedule *s = gen("zb-v", 4, 8, 0, false);
    cr_assert_eq(s->chunks, 2);
    cr_assert_eq(s->stages, 8);
    const int want[8] = {0, 1, 2, 3, 3, 2, 1, 0};
    for (int st = 0; st < 8; st++) cr_assert_eq(sl_schedule_rank_of_stage(s, st), want[st]);
    /* Every transfer is between ring neighbours, and the two ends pick the two ends of a link:
     * rank 3 hands stage 3's output to stage 4 locally, and sends stage 4's back to rank 2. */
    for (int r = 0; r < 4; r++) {
        size_t n;
        const sl_action *a = sl_schedule_actions(s, r, &n);
        for (size_t i = 0; i < n; i++) {
            if (a[i].type < SL_ACTION_SEND_F || a[i].type > SL_ACTION_RECV_B) continue;
            int dir = sl_schedule_link_dir(s, r, &a[i]);
            cr_assert(dir == 0 || dir == 1, "rank %d action %zu", r, i);
            cr_assert_eq(a[i].peer, dir == 0 ? (r + 1) % 4 : (r + 3) % 4);
            cr_assert_neq(a[i].stage, a[i].type == SL_ACTION_SEND_F ? 3 : -1);
        }
    }
    sl_schedule_free(s);
}

/* Every new generator, with and without recompute, over D in {2,3,4,8}, M in 1..32 (v in {1,2,3}
 * for looped-bfs): legal shapes pass the validator at the default link depth; the others are
 * refused with one line naming the minimum. */
Test(schedule_v, validator_passes_every_new_generator_over_the_grid)
{
    const char *names[] = {"looped-bfs", "zb-v", "dualpipev"};
    int checked = 0;
    for (size_t di = 0; di < sizeof grid_d / sizeof *grid_d; di++)
        for (int m = 1; m <= 32; m++)
            for (int rc = 0; rc < 2; rc++)
                for (size_t g = 0; g < 3; g++)
                    for (int v = 1; v <= (g == 0 ? 3 : 1); v++) {
                        const int d = grid_d[di];
                        sl_schedule *s;
                        int st = gen_st(names[g], d, m, g == 0 ? v : 0, rc, &s);
                        if (m < min_m(names[g], d)) {
                            cr_assert_eq(st, SL_EINVAL, "%s D=%d M=%d", names[g], d, m);
                            char want[64];
                            snprintf(want, sizeof want, "(got M=%d, D=%d)", m, d);
                            cr_assert(strstr(sl_last_error(), want), "%s", sl_last_error());
                            cr_assert_null(strchr(sl_last_error(), '\n'));
                            continue;
                        }
                        cr_assert_eq(st, SL_OK, "%s D=%d M=%d: %s", names[g], d, m,
                                     sl_last_error());
                        /* Looped BFS sends a whole chunk's forwards before it receives:
                         * its links need M·v messages, what the executor's hold. */
                        cr_assert_eq(sl_schedule_validate(s, g == 0 ? SL_MAX(m * v, 2) : 0), SL_OK,
                                     "%s D=%d M=%d: %s", names[g], d, m, sl_last_error());
                        sl_schedule_free(s);
                        checked++;
                    }
    cr_assert_gt(checked, 900);
}

/* Looped BFS with F = B = 1 over links deep enough never to block: the makespan is
 * 2(v·max(M,D) + min(M,D) - 1), so with M >= D the bubble is interleaved's (D-1)/(vM+D-1); every
 * rank stashes all v·M micro-batch chunks at the turn. */
Test(schedule_v, looped_bfs_bubble_and_memory)
{
    for (size_t di = 0; di < sizeof grid_d / sizeof *grid_d; di++)
        for (int m = 1; m <= 32; m++)
            for (int v = 1; v <= 3; v++) {
                const int d = grid_d[di];
                sl_schedule *s = gen("looped-bfs", d, m, v, false);
                sl_schedule_sim sim = sim_of(s, 1, 1, 0, m * v + 2);
                double want = 2.0 * (v * SL_MAX(m, d) + SL_MIN(m, d) - 1);
                cr_assert_float_eq(sim.makespan, want, 1e-9, "D=%d M=%d v=%d: %g", d, m, v,
                                   sim.makespan);
                if (m >= d)
                    cr_assert_float_eq(sim.bubble_ratio, (d - 1.0) / (v * m + d - 1), 1e-12);
                for (int r = 0; r < d; r++) cr_assert_eq(sim.peak_activations[r], v * m);
                sl_schedule_sim_free(&sim);
                sl_schedule_free(s);
            }
}

/* ZB-V with F = I = W = 1 per stage: each rank idles only D-1 units (the ramp: rank r starts r
 * units late and ends D-1-r early), so its bubble ratio is (D-1)/(6M+D-1), zero in the steady
 * state; no rank holds more than 2D stage stashes between F and W, which is D ranks' worth of
 * 1F1B's (each stage is half a rank's layers): 1F1B's peak. */
Test(schedule_v, zb_v_zero_bubble_with_equal_costs_within_1f1b_memory)
{
    for (size_t di = 0; di < sizeof grid_d / sizeof *grid_d; di++)
        for (int m = 2 * grid_d[di] - 1; m <= 32; m++) {
            const int d = grid_d[di];
            sl_schedule *s = gen("zb-v", d, m, 0, false);
            sl_schedule_sim sim = sim_of(s, 1, 2, 1, 0);
            for (int r = 0; r < d; r++) {
                cr_assert_float_eq(sim.idle[r], d - 1.0, 1e-9, "D=%d M=%d r=%d: %g", d, m, r,
                                   sim.idle[r]);
                cr_assert_leq(sim.peak_activations[r], 2 * d, "D=%d M=%d r=%d", d, m, r);
            }
            cr_assert_float_eq(sim.bubble_ratio, (d - 1.0) / (6.0 * m + d - 1), 1e-12);
            sl_schedule_sim_free(&sim);
            sl_schedule_free(s);
        }
}

/* DualPipeV: with F = I = W = 1 each rank idles D-1 units, bubble (D-1)/(6M+D-1); with other
 * costs the idle time per rank stays within DeepSeek's published (PP/2-1)(F&B + B - 3W), PP = 2D
 * stages, here with the pair run in sequence (F&B = F + B); each rank holds at most 2D+1 stage
 * stashes (their "PP+1"). */
Test(schedule_v, dualpipev_bubble_and_memory)
{
    const double costs[][3] = {{1, 2, 1}, {1, 3, 1}, {2, 3, 1}, {2, 4, 1}, {1, 4, 2}};
    for (size_t di = 0; di < sizeof grid_d / sizeof *grid_d; di++)
        for (int m = 2 * grid_d[di]; m <= 32; m++) {
            const int d = grid_d[di];
            sl_schedule *s = gen("dualpipev", d, m, 0, false);
            for (size_t k = 0; k < sizeof costs / sizeof *costs; k++) {
                const double f = costs[k][0], b = costs[k][1], w = costs[k][2];
                sl_schedule_sim sim = sim_of(s, f, b, w, 0);
                for (int r = 0; r < d; r++) {
                    cr_assert_leq(sim.idle[r], (d - 1) * ((f + b) + b - 3 * w) + 1e-9,
                                  "D=%d M=%d r=%d costs %g,%g,%g: %g", d, m, r, f, b, w,
                                  sim.idle[r]);
                    if (k == 0) cr_assert_float_eq(sim.idle[r], d - 1.0, 1e-9);
                    cr_assert_leq(sim.peak_activations[r], 2 * d + 1);
                }
                if (k == 0)
                    cr_assert_float_eq(sim.bubble_ratio, (d - 1.0) / (6.0 * m + d - 1), 1e-12);
                sl_schedule_sim_free(&sim);
            }
            sl_schedule_free(s);
        }
}

/* Costs measured from a dualpipev run, which times whole Bs as well as I and W: the stage's whole
 * backward for the simulator comes from I + W, so its I (B - W) is the measured one, even where a
 * noisy W ran longer than the stage's B (0.40 ms B beside 0.54 ms W under a sanitizer, which the
 * simulator refused as I = B - W < 0). */
Test(schedule_v, dualpipev_simulates_measured_costs)
{
    const double b = 0.403, i = 0.31, w = 0.537;
    double whole = sl_schedule_whole_backward(b, i, w);
    cr_assert_float_eq(whole - w, i, 1e-12);
    cr_assert_float_eq(sl_schedule_whole_backward(4.0, 0, 0), 4.0, 0); /* no I: B as measured */
    sl_schedule *s = gen("dualpipev", 2, 4, 0, false);
    sl_schedule_sim sim = sim_of(s, 0.2, whole, w, 0);
    cr_assert_gt(sim.makespan, 0.0);
    sl_schedule_sim_free(&sim);
    sl_schedule_free(s);
}

Test(schedule_v, refuses_shapes_it_cannot_run)
{
    struct {
        const char *name;
        int d, m, v;
        const char *says;
    } cases[] = {
        {"zb-v", 4, 8, 3, "zb-v places two model stages per rank in a V"},
        {"dualpipev", 4, 8, 1, "it needs chunks = 2 (got 1)"},
        {"zb-v", 4, 6, 2, "zb-v needs at least 2 x stages - 1 = 7 micro-batches (got M=6, D=4)"},
        {"dualpipev", 3, 5, 2, "dualpipev needs at least as many micro-batches as model stages"},
        {"zb-h1", 4, 8, 2, "use interleaved or looped-bfs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sl_schedule *s;
        cr_assert_eq(gen_st(cases[i].name, cases[i].d, cases[i].m, cases[i].v, false, &s),
                     SL_EINVAL, "case %zu", i);
        cr_assert(strstr(sl_last_error(), cases[i].says), "case %zu: %s", i, sl_last_error());
    }
}

/* The orders are PyTorch's: ZB-V rank 0 of 2 starts with 3 forwards of stage 0; DualPipeV's rank 1
 * of 2 pairs forwards of one stage with backwards of the other in its main phase. */
Test(schedule_v, orders_match_pytorch)
{
    sl_schedule *s = gen("zb-v", 2, 4, 0, false);
    char buf[512] = "";
    size_t n, len = 0;
    const sl_action *a = sl_schedule_actions(s, 0, &n);
    for (size_t i = 0; i < n && len < 200; i++) {
        if (a[i].type > SL_ACTION_R) continue;
        char t[16];
        sl_action_format(&a[i], t, sizeof t);
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", len ? " " : "", t);
    }
    cr_assert(!strncmp(buf, "0F0 0F1 0F2 3F0 3I0 3W0 3F1 3I1 3W1 0F3 0I0 0W0 3F2", 51), "%s", buf);
    sl_schedule_free(s);
}

/* Chimera: two replicas in opposite directions (rank r holds model stage r going down, stage 2D-1-r
 * being model stage D-1-r going up), micro-batches split evenly. Over D in {2,4,6,8} and every even
 * M up to 32, with and without recompute, it passes the validator; every rank ends with one SYNC
 * with rank D-1-r and holds at most D stashes; with F = B = 1 and M a multiple of D every rank
 * idles D-2 units, the paper's bubble (D-2)/(D-2+2M) of its compute. */
Test(schedule_v, chimera_bubble_memory_and_sync)
{
    const int ds[] = {2, 4, 6, 8};
    for (size_t di = 0; di < 4; di++)
        for (int m = 2; m <= 32; m += 2)
            for (int rc = 0; rc < 2; rc++) {
                const int d = ds[di];
                sl_schedule *s = gen("chimera", d, m, 0, rc);
                cr_assert_eq(s->chains, 2);
                cr_assert_eq(sl_schedule_validate(s, 0), SL_OK, "D=%d M=%d: %s", d, m,
                             sl_last_error());
                for (int r = 0; r < d; r++) {
                    size_t n;
                    const sl_action *a = sl_schedule_actions(s, r, &n);
                    cr_assert(n >= 2 && a[n - 2].type == SL_ACTION_SYNC &&
                              a[n - 2].peer == d - 1 - r);
                }
                if (rc) {
                    sl_schedule_free(s);
                    continue;
                }
                sl_schedule_sim sim = sim_of(s, 1, 1, 0, 0);
                for (int r = 0; r < d; r++) {
                    cr_assert_leq(sim.peak_activations[r], d, "D=%d M=%d r=%d", d, m, r);
                    if (m % d) continue;
                    cr_assert_float_eq(sim.idle[r], d - 2.0, 1e-9, "D=%d M=%d r=%d: %g", d, m, r,
                                       sim.idle[r]);
                    cr_assert_float_eq(sim.idle[r] / (sim.idle[r] + 2.0 * m),
                                       (d - 2.0) / (d - 2.0 + 2.0 * m), 1e-12);
                }
                sl_schedule_sim_free(&sim);
                sl_schedule_free(s);
            }
    struct {
        int d, m;
        const char *says;
    } bad[] = {{3, 6, "chimera needs an even number of stages (got D=3)"},
               {4, 6 + 1, "M must be even (got M=7, D=4)"}};
    for (size_t i = 0; i < 2; i++) {
        sl_schedule *s;
        cr_assert_eq(gen_st("chimera", bad[i].d, bad[i].m, 0, false, &s), SL_EINVAL);
        cr_assert(strstr(sl_last_error(), bad[i].says), "%s", sl_last_error());
    }
    sl_schedule *big;
    cr_assert_eq(gen_st("chimera", SL_CHIMERA_MAX_RANKS + 2, 4, 0, false, &big), SL_EINVAL);
    cr_assert(strstr(sl_last_error(), "at most 64 stages (got D=66)"), "%s", sl_last_error());
    /* SYNC in text form, and a chimera without it refused */
    sl_action a;
    cr_assert_eq(sl_action_parse("SYNC<->r3", &a, NULL), SL_OK);
    cr_assert(a.type == SL_ACTION_SYNC && a.peer == 3);
    sl_schedule *s = gen("chimera", 2, 2, 0, false);
    size_t n;
    const sl_action *acts = sl_schedule_actions(s, 1, &n);
    sl_action copy[64];
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (acts[i].type != SL_ACTION_SYNC) copy[k++] = acts[i];
    cr_assert_eq(sl_schedule_set_actions(s, 1, copy, k), SL_OK);
    cr_assert_eq(sl_schedule_validate(s, 0), SL_EINVAL);
    cr_assert(strstr(sl_last_error(), "rank 1 has no SYNC"), "%s", sl_last_error());
    sl_schedule_free(s);
}

/* Chimera's SYNC messages on the ring: pair 0 (ranks 0 and D-1) over the wrap, the middle pair
 * directly, every other pair through the ranks between them, each rank taking its own pair first
 * and then the outer pairs it relays, innermost first; the widest schedule completes. */
Test(schedule_v, chimera_sync_relays_through_the_middle)
{
    sl_schedule *s = gen("chimera", 8, 4, 0, false);
    sl_action sync = {SL_ACTION_SYNC, -1, -1, 7};
    sl_exchange ex[SL_EXCHANGES_MAX];
    cr_assert_eq(sl_action_exchanges(s, 0, &sync, ex), 2);
    cr_assert(ex[0].send && !ex[0].relay && ex[0].peer == 7 && ex[0].dir == 1 && ex[0].round == 0);
    cr_assert(!ex[1].send && ex[1].peer == 7 && ex[1].dir == 1);
    sync.peer = 0;
    cr_assert_eq(sl_action_exchanges(s, 7, &sync, ex), 2);
    cr_assert(ex[0].send && ex[0].peer == 0 && ex[0].dir == 0);
    sync.peer = 4; /* rank 3: its own pair with 4, then relays of pairs 2 and 1 */
    cr_assert_eq(sl_action_exchanges(s, 3, &sync, ex), 10);
    cr_assert(ex[0].send && !ex[0].relay && ex[0].peer == 4 && ex[0].round == 3);
    cr_assert(!ex[1].send && !ex[1].relay && ex[1].peer == 4 && ex[1].round == 3);
    const struct {
        bool send;
        int peer, round;
    } want[] = {{false, 2, 2}, {true, 4, 2}, {false, 4, 2}, {true, 2, 2},
                {false, 2, 1}, {true, 4, 1}, {false, 4, 1}, {true, 2, 1}};
    for (int i = 0; i < 8; i++)
        cr_assert(ex[2 + i].relay && ex[2 + i].send == want[i].send &&
                      ex[2 + i].peer == want[i].peer && ex[2 + i].round == want[i].round,
                  "exchange %d", 2 + i);
    sync.peer = 3; /* rank 4: the same order, rightwards (from its previous rank) first */
    cr_assert_eq(sl_action_exchanges(s, 4, &sync, ex), 10);
    cr_assert(ex[2].relay && !ex[2].send && ex[2].peer == 3 && ex[2].round == 2);
    cr_assert(ex[4].relay && !ex[4].send && ex[4].peer == 5 && ex[4].round == 2);
    sync.peer = 5; /* not rank 1's twin */
    cr_assert_eq(sl_action_exchanges(s, 1, &sync, ex), -1);
    sl_schedule_free(s);
    s = gen("chimera", SL_CHIMERA_MAX_RANKS, 2, 0, false);
    cr_assert_eq(sl_schedule_validate(s, 0), SL_OK, "%s", sl_last_error());
    sl_schedule_free(s);
}

/* Chimera with a tied parameter (a GPT's wte on model stage 0, lm_head on D-1) and clipping: ranks
 * 0 and D-1 hold a copy of each replica's, so after SYNC each sums its two locally (TIED with
 * itself), then NORM; the other ranks have no TIED. */
Test(schedule_v, chimera_with_tied_stages_and_norm)
{
    for (int d = 2; d <= 8; d += 2)
        for (int rc = 0; rc < 2; rc++) {
            sl_schedule_params p = {.name = "chimera",
                                    .ranks = d,
                                    .microbatches = 4,
                                    .recompute = rc,
                                    .tied_stages = {0, d - 1},
                                    .norm = true};
            sl_schedule *s;
            cr_assert_eq(sl_schedule_generate(&p, &s), SL_OK, "D=%d: %s", d, sl_last_error());
            cr_assert_eq(sl_schedule_validate(s, 0), SL_OK, "D=%d: %s", d, sl_last_error());
            for (int r = 0; r < d; r++) {
                size_t n;
                const sl_action *a = sl_schedule_actions(s, r, &n);
                bool ends = r == 0 || r == d - 1;
                size_t k = n - (ends ? 4 : 3);
                cr_assert_eq(a[k].type, SL_ACTION_SYNC, "D=%d rank %d", d, r);
                if (ends) {
                    cr_assert(a[k + 1].type == SL_ACTION_TIED && a[k + 1].peer == r &&
                                  a[k + 1].stage == (r ? d - 1 : 0),
                              "D=%d rank %d: a local TIED of its down replica's stage", d, r);
                    sl_exchange ex[SL_EXCHANGES_MAX];
                    cr_assert_eq(sl_action_exchanges(s, r, &a[k + 1], ex), 0);
                }
                cr_assert_eq(a[n - 2].type, SL_ACTION_NORM);
            }
            sl_schedule_free(s);
        }
}
