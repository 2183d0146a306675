/* Schedules: every generator passes the validator over a grid, the simulator reproduces the
 * papers' tables and bubble formulas, and hand-broken schedules are rejected with the right
 * message. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/schedule/schedule.h"
#include "schedule_helpers.h"

/* ---------------------------------------------------------------------------------------- */

Test(schedule, text_form_round_trips)
{
    const char *forms[] = {"5F2",
                           "0B0",
                           "3I7",
                           "3W7",
                           "12R31",
                           "SEND_F 5F2->r1",
                           "RECV_F 5F2<-r0",
                           "SEND_B 5B2->r0",
                           "RECV_B 5B2<-r2",
                           "OPT"};
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        sl_action a;
        size_t used;
        cr_assert_eq(sl_action_parse(forms[i], &a, &used), SL_OK, "%s: %s", forms[i],
                     sl_last_error());
        cr_assert_eq(used, strlen(forms[i]));
        char buf[40];
        sl_action_format(&a, buf, sizeof buf);
        cr_assert_str_eq(buf, forms[i]);
    }
    sl_action a;
    cr_assert_eq(sl_action_parse("5F2", &a, NULL), SL_OK);
    cr_assert(a.type == SL_ACTION_F && a.stage == 5 && a.mb == 2 && a.peer == -1);
    const char *bad[] = {"5X2", "F2", "5F", "SEND_F 5F2->1", "RECV_B 5B2->r1", "5F2x", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(sl_action_parse(bad[i], &a, NULL), SL_EFORMAT, "'%s' parsed", bad[i]);
        cr_assert(strstr(sl_last_error(), "bad action"), "%s", sl_last_error());
    }
}

/* Every generator, with and without recompute, over D in {1,2,3,4,8}, M in 1..32, v in {2,3,4}
 * where legal, passes the validator with the default link depth (2); gpipe, 1f1b and zb-h1 even
 * with depth 1. Interleaved needs 2 on some shapes (on two ranks both directions of the ring
 * carry activations, and each rank sends before it receives). */
Test(schedule, validator_passes_every_generator_over_the_grid)
{
    int checked = 0;
    for (size_t di = 0; di < sizeof grid_d / sizeof *grid_d; di++)
        for (int m = 1; m <= 32; m++)
            for (int rc = 0; rc < 2; rc++) {
                for (size_t g = 0; g < 3; g++) {
                    sl_schedule *s = gen(one_chunk[g], grid_d[di], m, 1, rc);
                    cr_assert_eq(sl_schedule_validate(s, 1), SL_OK, "%s D=%d M=%d: %s",
                                 one_chunk[g], grid_d[di], m, sl_last_error());
                    cr_assert_eq(sl_schedule_validate(s, 0), SL_OK, "%s", sl_last_error());
                    sl_schedule_free(s);
                    checked++;
                }
                for (int v = 2; v <= 4; v++) {
                    if (m % grid_d[di]) continue;
                    sl_schedule *s = gen("interleaved", grid_d[di], m, v, rc);
                    cr_assert_eq(sl_schedule_validate(s, 0), SL_OK,
                                 "interleaved D=%d M=%d v=%d: %s", grid_d[di], m, v,
                                 sl_last_error());
                    cr_assert_leq(sl_schedule_min_queue_depth(s), 2);
                    sl_schedule_free(s);
                    checked++;
                }
            }
    cr_assert_gt(checked, 1300);
}

Test(schedule, generators_reject_bad_input_with_one_line)
{
    struct {
        sl_schedule_params p;
        const char *says;
    } cases[] = {
        {{.name = "chimaera", .ranks = 4, .microbatches = 8, .chunks = 1, .recompute = false},
         "unknown schedule 'chimaera': choose gpipe, 1f1b, interleaved"},
        {{.name = "1f1b", .ranks = 0, .microbatches = 8, .chunks = 1, .recompute = false},
         "stages must be at least 1"},
        {{.name = "1f1b", .ranks = 4, .microbatches = 0, .chunks = 1, .recompute = false},
         "micro-batches must be at least 1"},
        {{.name = "gpipe", .ranks = 4, .microbatches = 8, .chunks = 2, .recompute = false},
         "gpipe runs one chunk per rank"},
        {{.name = "zb-h1", .ranks = 4, .microbatches = 8, .chunks = 3, .recompute = false},
         "zb-h1 runs one chunk per rank"},
        {{.name = "interleaved", .ranks = 4, .microbatches = 8, .chunks = 1, .recompute = false},
         "interleaved needs chunks >= 2"},
        {{.name = "interleaved", .ranks = 4, .microbatches = 6, .chunks = 2, .recompute = false},
         "multiple of stages"},
        {{.name = "1f1b", .ranks = 4, .microbatches = 8, .chunks = -1, .recompute = false},
         "chunks must be at least 1"},
        {{.name = "1f1b", .ranks = 5000, .microbatches = 8, .chunks = 1, .recompute = false},
         "too large"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sl_schedule *s = (sl_schedule *)1;
        cr_assert_eq(sl_schedule_generate(&cases[i].p, &s), SL_EINVAL, "case %zu", i);
        cr_assert_null(s);
        cr_assert(strstr(sl_last_error(), cases[i].says), "case %zu: %s", i, sl_last_error());
        cr_assert_null(strchr(sl_last_error(), '\n'), "one line: %s", sl_last_error());
    }
}

/* "Equal costs" here means F = B (both 1): then the bubble ratio is (D-1)/(M+D-1) for gpipe and
 * 1f1b, and (D-1)/(v·M+D-1) for interleaved with M a multiple of D. */
Test(schedule, bubble_ratio_matches_the_formulas_with_equal_costs)
{
    for (size_t di = 0; di < sizeof grid_d / sizeof *grid_d; di++) {
        const int d = grid_d[di];
        for (int m = 1; m <= 32; m++) {
            for (size_t g = 0; g < 2; g++) {
                sl_schedule *s = gen(one_chunk[g], d, m, 1, false);
                sl_schedule_sim sim = sim_of(s, 1, 1, 0);
                double want = (double)(d - 1) / (m + d - 1);
                cr_assert_float_eq(sim.bubble_ratio, want, 1e-12, "%s D=%d M=%d: %g, want %g",
                                   one_chunk[g], d, m, sim.bubble_ratio, want);
                cr_assert_float_eq(sim.makespan, 2.0 * (m + d - 1), 1e-12);
                sl_schedule_sim_free(&sim);
                sl_schedule_free(s);
            }
            for (int v = 2; v <= 4; v++) {
                if (m % d) continue;
                sl_schedule *s = gen("interleaved", d, m, v, false);
                sl_schedule_sim sim = sim_of(s, 1, 1, 0);
                double want = (double)(d - 1) / (v * m + d - 1);
                cr_assert_float_eq(sim.bubble_ratio, want, 1e-12,
                                   "interleaved D=%d M=%d v=%d: %g, want %g", d, m, v,
                                   sim.bubble_ratio, want);
                sl_schedule_sim_free(&sim);
                sl_schedule_free(s);
            }
        }
    }
}

/* ZB-H1 as the paper defines it: with M >= D every rank idles (D-1)(F+B-2W), a third of 1f1b's
 * (D-1)(F+B) when F = I = W, and no rank ever holds more than D micro-batches between F and W
 * (1F1B's peak, rank 0's), for every M. */
Test(schedule, zb_h1_idles_d_minus_1_times_f_plus_b_minus_2w_within_1f1b_memory)
{
    const double costs[][3] = {{1, 2, 1}, {1, 3, 1}, {2, 3, 1}};
    for (size_t di = 1; di < sizeof grid_d / sizeof *grid_d; di++) {
        const int d = grid_d[di];
        for (int m = 1; m <= 32; m++) {
            sl_schedule *z = gen("zb-h1", d, m, 1, false), *o = gen("1f1b", d, m, 1, false);
            for (size_t k = 0; k < sizeof costs / sizeof *costs; k++) {
                const double f = costs[k][0], b = costs[k][1], w = costs[k][2];
                sl_schedule_sim zs = sim_of(z, f, b, w), os = sim_of(o, f, b, 0);
                for (int r = 0; r < d; r++) {
                    cr_assert_leq(zs.peak_activations[r], d, "D=%d M=%d r=%d: %d between F and W",
                                  d, m, r, zs.peak_activations[r]);
                    if (m < d) continue;
                    cr_assert_float_eq(zs.idle[r], (d - 1) * (f + b - 2 * w), 1e-9,
                                       "D=%d M=%d r=%d costs %g,%g,%g: idle %g", d, m, r, f, b, w,
                                       zs.idle[r]);
                    if (w == 1 && b == 2 && f == 1)
                        cr_assert_float_eq(zs.idle[r] * 3, os.idle[r], 1e-9);
                }
                sl_schedule_sim_free(&zs);
                sl_schedule_sim_free(&os);
            }
            sl_schedule_free(z);
            sl_schedule_free(o);
        }
    }
    /* The example: W0 right after I0 on rank 0, not after F6 (ZB-H2's memory). */
    sl_schedule *z = gen("zb-h1", 4, 8, 1, false);
    char buf[512];
    compute_text(z, 0, buf, sizeof buf);
    cr_assert(strstr(buf, "0F3 0I0 0W0 0F4 0I1 0W1"), "%s", buf);
    sl_schedule_free(z);
}

Test(schedule, peak_stash_is_m_for_gpipe_and_at_most_d_minus_r_for_1f1b)
{
    for (size_t di = 0; di < sizeof grid_d / sizeof *grid_d; di++) {
        const int d = grid_d[di];
        for (int m = 1; m <= 32; m++) {
            sl_schedule *g = gen("gpipe", d, m, 1, true), *o = gen("1f1b", d, m, 1, false);
            sl_schedule_sim gs = sim_of(g, 0, 0, 0), os = sim_of(o, 0, 0, 0);
            for (int r = 0; r < d; r++) {
                cr_assert_eq(gs.peak_activations[r], m, "gpipe D=%d M=%d r=%d", d, m, r);
                cr_assert_leq(os.peak_activations[r], d - r, "1f1b D=%d M=%d r=%d", d, m, r);
                cr_assert_eq(os.peak_activations[r], SL_MIN(d - r, m));
            }
            sl_schedule_sim_free(&gs);
            sl_schedule_sim_free(&os);
            sl_schedule_free(g);
            sl_schedule_free(o);
        }
    }
}

/* The GPipe and PipeDream tables for 4 stages and 8 micro-batches (F = B = 1 per cell). */
Test(schedule, reproduces_the_papers_tables)
{
    sl_schedule *o = gen("1f1b", 4, 8, 1, false);
    char buf[512];
    compute_text(o, 0, buf, sizeof buf);
    cr_assert_str_eq(buf, "0F0 0F1 0F2 0F3 0B0 0F4 0B1 0F5 0B2 0F6 0B3 0F7 0B4 0B5 0B6 0B7");
    compute_text(o, 3, buf, sizeof buf);
    cr_assert_str_eq(buf, "3F0 3B0 3F1 3B1 3F2 3B2 3F3 3B3 3F4 3B4 3F5 3B5 3F6 3B6 3F7 3B7");
    sl_schedule_sim sim = sim_of(o, 1, 1, 0);
    /* PipeDream table, row 0: 0F 1F 2F 3F at 0..3 (but spaced: 0,2,4,6 there because that table
     * starts micro-batches every other unit); here 0B0 on rank 0 starts at 7 and the last
     * backward ends at 22 as in both tables. */
    size_t n;
    const sl_action *a = sl_schedule_actions(o, 0, &n);
    for (size_t i = 0; i < n; i++)
        if (a[i].type == SL_ACTION_B && a[i].mb == 0) cr_assert_float_eq(sim.start[0][i], 7, 0);
    cr_assert_float_eq(sim.makespan, 22, 0);
    sl_schedule_sim_free(&sim);
    sl_schedule_free(o);

    sl_schedule *g = gen("gpipe", 4, 8, 1, false);
    sim = sim_of(g, 1, 1, 0);
    a = sl_schedule_actions(g, 0, &n);
    for (size_t i = 0; i < n; i++)
        if (a[i].type == SL_ACTION_B && a[i].mb == 0) cr_assert_float_eq(sim.start[0][i], 14, 0);
    a = sl_schedule_actions(g, 3, &n);
    for (size_t i = 0; i < n; i++)
        if (a[i].type == SL_ACTION_F && a[i].mb == 0) cr_assert_float_eq(sim.start[3][i], 3, 0);
    cr_assert_float_eq(sim.makespan, 22, 0);
    sl_schedule_sim_free(&sim);
    sl_schedule_free(g);
}

Test(schedule, comm_pass_shape)
{
    /* 1f1b on 2 ranks, 1 micro-batch: the whole list of each rank. */
    sl_schedule *s = gen("1f1b", 2, 1, 1, false);
    char want0[] = "0F0 SEND_F 0F0->r1 RECV_B 0B0<-r1 0B0 OPT";
    char want1[] = "RECV_F 1F0<-r0 1F0 1B0 SEND_B 1B0->r0 OPT";
    for (int r = 0; r < 2; r++) {
        size_t n, len = 0;
        char buf[256] = "";
        const sl_action *a = sl_schedule_actions(s, r, &n);
        for (size_t i = 0; i < n; i++) {
            char t[40];
            sl_action_format(&a[i], t, sizeof t);
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", i ? " " : "", t);
        }
        cr_assert_str_eq(buf, r ? want1 : want0);
    }
    cr_assert_eq(sl_schedule_rank_of_stage(s, 1), 1);
    sl_schedule_free(s);

    /* All chunks on one rank: no transfers at all, tensors are handed over locally. */
    s = gen("interleaved", 1, 4, 3, true);
    size_t n;
    const sl_action *a = sl_schedule_actions(s, 0, &n);
    cr_assert_eq(n, 4 * 3 * 3 + 1);
    for (size_t i = 0; i < n; i++)
        cr_assert(a[i].type <= SL_ACTION_R || a[i].type == SL_ACTION_OPT);
    cr_assert_eq(a[n - 1].type, SL_ACTION_OPT);
    sl_schedule_free(s);

    /* Interleaved ring: the last rank sends stage D-1's output to rank 0 (stage D). */
    s = gen("interleaved", 4, 4, 2, false);
    a = sl_schedule_actions(s, 3, &n);
    bool wraps = false;
    for (size_t i = 0; i < n; i++)
        wraps |= a[i].type == SL_ACTION_SEND_F && a[i].stage == 3 && a[i].peer == 0;
    cr_assert(wraps);
    cr_assert_eq(sl_schedule_rank_of_stage(s, 6), 2);
    cr_assert_eq(sl_schedule_rank_of_stage(s, 8), -1);
    sl_schedule_free(s);
}

Test(schedule, recompute_puts_r_before_each_backward)
{
    const char *names[] = {"gpipe", "1f1b", "zb-h1", "interleaved"};
    for (size_t g = 0; g < 4; g++) {
        sl_schedule *s = gen(names[g], 2, 4, g == 3 ? 2 : 1, true);
        for (int r = 0; r < 2; r++) {
            size_t n;
            const sl_action *a = sl_schedule_actions(s, r, &n);
            int rs = 0;
            for (size_t i = 0; i < n; i++) {
                if (a[i].type != SL_ACTION_B && a[i].type != SL_ACTION_I) continue;
                bool found = false;
                for (size_t j = 0; j < i; j++)
                    found |=
                        a[j].type == SL_ACTION_R && a[j].stage == a[i].stage && a[j].mb == a[i].mb;
                cr_assert(found, "%s rank %d: no R before backward %zu", names[g], r, i);
                rs++;
            }
            cr_assert_eq(rs, 4 * (g == 3 ? 2 : 1));
        }
        sl_schedule_free(s);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The timed simulator */

Test(schedule, latency_and_per_stage_costs)
{
    sl_schedule *s = gen("gpipe", 2, 1, 1, false);
    sl_schedule_costs c = {.f = 1, .b = 2, .latency = 0.5};
    sl_schedule_sim sim;
    cr_assert_eq(sl_schedule_simulate(s, &c, &sim), SL_OK, "%s", sl_last_error());
    /* F0 r0 [0,1], transfer, F r1 [1.5,2.5], B r1 [2.5,4.5], transfer, B r0 [5,7]. */
    cr_assert_float_eq(sim.makespan, 7, 1e-12);
    cr_assert_float_eq(sim.idle[0], 4, 1e-12);
    sl_schedule_sim_free(&sim);
    sl_schedule_free(s);

    /* A slow second stage sets the pace. */
    s = gen("gpipe", 2, 2, 1, false);
    double f[] = {1, 3}, b[] = {2, 2};
    sl_schedule_costs pc = {.stage_f = f, .stage_b = b};
    cr_assert_eq(sl_schedule_simulate(s, &pc, &sim), SL_OK, "%s", sl_last_error());
    cr_assert_float_eq(sim.makespan, 13, 1e-12);
    cr_assert_float_eq(sim.busy[1], 10, 1e-12);
    sl_schedule_sim_free(&sim);

    sl_schedule_costs neg = {.f = -1};
    cr_assert_eq(sl_schedule_simulate(s, &neg, &sim), SL_EINVAL);
    sl_schedule_free(s);

    /* Recompute costs as a forward. */
    s = gen("gpipe", 1, 1, 1, true);
    sim = sim_of(s, 1, 2, 0);
    cr_assert_float_eq(sim.makespan, 4, 1e-12);
    sl_schedule_sim_free(&sim);
    sl_schedule_free(s);

    /* A split backward needs 0 < W < B. */
    s = gen("zb-h1", 2, 2, 1, false);
    sl_schedule_costs w = {.f = 1, .b = 2, .w = 2};
    cr_assert_eq(sl_schedule_simulate(s, &w, &sim), SL_EINVAL);
    cr_assert(strstr(sl_last_error(), "I = B - W"), "%s", sl_last_error());
    sl_schedule_free(s);
}

Test(schedule, json_and_svg_outputs)
{
    sl_schedule *s = gen("interleaved", 2, 4, 2, false);
    sl_schedule_sim sim = sim_of(s, 1, 2, 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(sl_schedule_write_json(f, s, &sim), SL_OK);
    fclose(f);
    cJSON *root = cJSON_Parse(buf);
    cr_assert_not_null(root, "%s", buf);
    cr_assert_str_eq(cJSON_GetObjectItem(root, "schedule")->valuestring, "interleaved");
    cr_assert_eq(cJSON_GetObjectItem(root, "stages")->valueint, 2);
    cr_assert_eq(cJSON_GetObjectItem(root, "microbatches")->valueint, 4);
    cr_assert_eq(cJSON_GetObjectItem(root, "chunks")->valueint, 2);
    cJSON *ranks = cJSON_GetObjectItem(root, "ranks");
    cr_assert_eq(cJSON_GetArraySize(ranks), 2);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetArrayItem(ranks, 1)), 2 * 4 * 2);
    cr_assert_str_eq(cJSON_GetArrayItem(cJSON_GetArrayItem(ranks, 0), 0)->valuestring, "0F0");
    cr_assert_float_eq(cJSON_GetObjectItem(root, "makespan")->valuedouble, sim.makespan, 1e-12);
    cr_assert_float_eq(cJSON_GetObjectItem(root, "bubble_ratio")->valuedouble, sim.bubble_ratio,
                       1e-12);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(root, "peak_activations")), 2);
    cJSON_Delete(root);
    free(buf);

    f = open_memstream(&buf, &len);
    cr_assert_eq(sl_schedule_write_svg(f, s, &sim), SL_OK);
    fclose(f);
    cr_assert(strstr(buf, "<svg") && strstr(buf, "</svg>") && strstr(buf, ">2F1<"));
    free(buf);

    f = open_memstream(&buf, &len);
    cr_assert_eq(sl_schedule_write_text(f, s, &sim), SL_OK);
    fclose(f);
    cr_assert(strstr(buf, "rank 1") && strstr(buf, "bubble ratio"), "%s", buf);
    free(buf);
    sl_schedule_sim_free(&sim);
    sl_schedule_free(s);
}

/* Ranks sharing cores: 1F1B on 4 ranks, 8 micro-batches, F = 1, B = 2 has (M+D-1)(F+B) = 33 units
 * of makespan with a processor per rank; on one shared core every compute runs in turn (96 units,
 * no core ever idle); on two at least half that; with 4 cores, as without the limit; a rank left
 * out of the sharing computes on its own. */
Test(schedule, shared_cores_serialise_the_ranks)
{
    sl_schedule *s = gen("1f1b", 4, 8, 1, false);
    const double want[] = {96, 48, 33};
    const int cores[] = {1, 2, 4};
    for (int k = 0; k < 3; k++) {
        sl_schedule_costs c = {.f = 1, .b = 2, .cores = cores[k]};
        sl_schedule_sim sim;
        cr_assert_eq(sl_schedule_simulate(s, &c, &sim), SL_OK, "%s", sl_last_error());
        if (k == 1)
            cr_assert_geq(sim.makespan, want[k], "2 cores: %g", sim.makespan);
        else
            cr_assert_float_eq(sim.makespan, want[k], 1e-9, "%d cores: %g", cores[k], sim.makespan);
        sl_schedule_sim_free(&sim);
    }
    int threads[4] = {0, 1, 1, 1};
    sl_schedule_costs c = {.f = 1, .b = 2, .cores = 1, .rank_threads = threads};
    sl_schedule_sim sim;
    cr_assert_eq(sl_schedule_simulate(s, &c, &sim), SL_OK, "%s", sl_last_error());
    cr_assert(sim.makespan >= 72 && sim.makespan < 96, "rank 0 on its own: %g", sim.makespan);
    sl_schedule_sim_free(&sim);
    sl_schedule_free(s);
    /* Time-sliced: 1F1B on 2 ranks, 2 micro-batches, F = 1, B = 2, on 2 cores, rank 1 computing
     * with 2 threads (as PoCL does beside a cpu rank). Alone each runs at full speed; together 3
     * threads share 2 cores and each rank runs at 2/3: r0 F0 [0, 1]; F1 on r0 and F0 on r1 [1,
     * 2.5]; r1 B0 alone [2.5, 4.5]; then r0 B0 beside r1 F1 (1.5) and B1 until r0 ends at 7.5; r1
     * B1's last unit alone [7.5, 8.5]; r0 B1 alone [8.5, 10.5]. With a thread each, no sharing:
     * (M + D - 1)(F + B) = 9. */
    s = gen("1f1b", 2, 2, 1, false);
    int two[2] = {1, 2}, one[2] = {1, 1};
    c = (sl_schedule_costs){.f = 1, .b = 2, .cores = 2, .rank_threads = two};
    cr_assert_eq(sl_schedule_simulate(s, &c, &sim), SL_OK, "%s", sl_last_error());
    cr_assert_float_eq(sim.makespan, 10.5, 1e-9, "%g", sim.makespan);
    size_t f0 = 0;
    while (s->actions[1][f0].type != SL_ACTION_F) f0++;
    cr_assert_float_eq(sim.start[1][f0], 1.0, 1e-9);
    cr_assert_float_eq(sim.end[1][f0], 2.5, 1e-9, "r1's F0 at 2/3 speed: %g", sim.end[1][f0]);
    sl_schedule_sim_free(&sim);
    c.rank_threads = one;
    cr_assert_eq(sl_schedule_simulate(s, &c, &sim), SL_OK, "%s", sl_last_error());
    cr_assert_float_eq(sim.makespan, 9, 1e-9, "%g", sim.makespan);
    sl_schedule_sim_free(&sim);
    sl_schedule_free(s);
}
