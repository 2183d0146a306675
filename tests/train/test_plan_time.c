/* "time" partitions and `sluice plan`'s predictions. The balancer is checked on profiles made up
 * here (no device, no timing): a stage on a slower device gets fewer units, a plan that cannot
 * fit a device's memory is refused. Then through the real executable with a private profile
 * cache: the cache is written, read back, refused when it is for another model shape (profiled
 * again, and said so), and the costs it holds decide the cut. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../bench/run.h"
#include "helpers.h"
#include "tests/backends/require_devices.h"
#include "runtime/plan/plan.h"

/* The digits sample's config with `sets`, and its plan. */
static void plan_of(const char *const *sets, int n, sl_config *cfg, sl_plan *plan)
{
    char path[512];
    snprintf(path, sizeof path, "%s/samples/digits/digits.json", source_dir());
    cr_assert_eq(sl_config_load(path, sets, n, cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_plan_build(cfg, plan), SL_OK, "%s", sl_last_error());
}

/* Profiles whose unit u costs unit_ms[r] x scale[u] (F = I = W; scale NULL: 1) on rank r. */
static void scaled_profiles(const sl_plan *p, const double *unit_ms, const double *scale,
                            sl_profile *pr)
{
    int units = sl_partition_units(&p->model, NULL);
    for (int r = 0; r < p->ranks; r++) {
        pr[r] = (sl_profile){.rows = p->rows, .units = units};
        pr[r].f = calloc(5 * (size_t)units, sizeof(double));
        pr[r].i = pr[r].f + units;
        pr[r].w = pr[r].i + units;
        pr[r].link = pr[r].w + units;
        pr[r].opt = pr[r].link + units;
        for (int u = 0; u < units; u++)
            pr[r].f[u] = pr[r].i[u] = pr[r].w[u] = unit_ms[r] * (scale ? scale[u] : 1.0);
    }
}

/* Profiles whose every unit costs `unit_ms[r]` (F = I = W) on rank r. */
static void fake_profiles(const sl_plan *p, const double *unit_ms, sl_profile *pr)
{
    scaled_profiles(p, unit_ms, NULL, pr);
}

Test(plan_time, slower_device_gets_fewer_units)
{
    const char *sets[] = {"model.layers=[\"linear:16\",\"relu\",\"linear:16\",\"linear:16\","
                          "\"linear:16\",\"linear:16\",\"linear:16\",\"linear:16\",\"linear:10\"]",
                          "pipeline.stages=2", "pipeline.schedule=gpipe"};
    sl_config cfg;
    sl_plan plan;
    plan_of(sets, 3, &cfg, &plan);
    plan.host_cores = -1; /* each rank its own processor, whatever this host has */
    sl_profile pr[2];
    int counts[2];
    fake_profiles(&plan, (double[]){1.0, 1.0}, pr);
    cr_assert_eq(sl_plan_balance_time(&plan, pr, counts), SL_OK, "%s", sl_last_error());
    cr_assert_eq(counts[0] + counts[1], 8);
    cr_assert(counts[0] == 4 || counts[0] == 5, "equal devices: %d + %d", counts[0], counts[1]);
    for (int r = 0; r < 2; r++) sl_profile_free(&pr[r]);
    /* Rank 1's device three times slower: rank 0 takes 6 of the 8. */
    fake_profiles(&plan, (double[]){1.0, 3.0}, pr);
    cr_assert_eq(sl_plan_balance_time(&plan, pr, counts), SL_OK, "%s", sl_last_error());
    cr_assert_eq(counts[0], 6, "the faster device took %d of 8", counts[0]);
    /* The predicted step beats the uniform cut's. */
    sl_stage_range st[2];
    sl_plan_prediction timed, uniform;
    cr_assert_eq(sl_partition_make(&plan.model, 2, counts, st), SL_OK);
    cr_assert_eq(sl_plan_predict(&plan, pr, st, &timed), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_plan_predict(&plan, pr, NULL, &uniform), SL_OK);
    cr_assert_lt(timed.step_ms, uniform.step_ms);
    cr_assert_gt(timed.params[0], timed.params[1]);
    cr_assert_eq(timed.send_bytes[0], plan.rows * 16 * 4);
    cr_assert_eq(timed.send_bytes[1], 0);
    sl_plan_prediction_free(&timed);
    /* Both ranks' cpu devices on one core (each rank computing with its one thread): their
     * computes cannot overlap, so the step is at least all of them, whatever the cut. */
    plan.host_cores = 1;
    cr_assert_eq(sl_plan_predict(&plan, pr, st, &timed), SL_OK, "%s", sl_last_error());
    double total = 0;
    for (int s = 0; s < 2; s++)
        total += cfg.train.microbatches * (timed.f[s] + timed.i[s] + timed.w[s]);
    cr_assert_geq(timed.step_ms, total - 1e-9, "%g ms for %g ms of compute on one core",
                  timed.step_ms, total);
    sl_plan_prediction_free(&timed);
    /* The step's OPT (per unit, on its rank) ends each rank's step: under GPipe rank 0's last
     * backward ends the pipeline, so its OPT adds to the step whole, and plan prints it. */
    plan.host_cores = -1;
    double before = uniform.step_ms;
    int units = sl_partition_units(&plan.model, NULL);
    for (int u = 0; u < units; u++) pr[0].opt[u] = 0.5, pr[1].opt[u] = 0.25;
    cr_assert_eq(sl_plan_predict(&plan, pr, NULL, &timed), SL_OK, "%s", sl_last_error());
    cr_assert_float_eq(timed.opt[0], 0.5 * 4, 1e-12, "rank 0 holds 4 units: %g", timed.opt[0]);
    cr_assert_float_eq(timed.opt[1], 0.25 * 4, 1e-12);
    cr_assert_float_eq(timed.step_ms, before + 2.0, 1e-9, "%g then %g", before, timed.step_ms);
    sl_plan_prediction_free(&timed);
    sl_plan_prediction_free(&uniform);
    for (int r = 0; r < 2; r++) sl_profile_free(&pr[r]);
    sl_plan_free(&plan);
    sl_config_free(&cfg);
}

/* The predicted step of `counts` units per stage. */
static double step_of(const sl_plan *plan, const sl_profile *pr, const int *counts)
{
    sl_stage_range st[16];
    sl_plan_prediction p;
    cr_assert_eq(sl_partition_make(&plan->model, plan->part.nstages, counts, st), SL_OK, "%s",
                 sl_last_error());
    cr_assert_eq(sl_plan_predict(plan, pr, st, &p), SL_OK, "%s", sl_last_error());
    double step = p.step_ms;
    sl_plan_prediction_free(&p);
    return step;
}

/* The least predicted step over every cut of `left` units into stages s..S-1. */
static double best_cut(const sl_plan *plan, const sl_profile *pr, int *counts, int s, int S,
                       int left)
{
    if (s == S - 1) {
        counts[s] = left;
        return step_of(plan, pr, counts);
    }
    double best = INFINITY;
    for (counts[s] = 1; counts[s] <= left - (S - 1 - s); counts[s]++)
        best = fmin(best, best_cut(plan, pr, counts, s + 1, S, left - counts[s]));
    return best;
}

/* The "time" cut is the fastest the simulator knows. With few cuts it is the best of all of them
 * (as simulated here, every one; 1365 for 16 units on 12 stages, a count that passes 4096 on the
 * way if reckoned carelessly, and where the descents miss the best under zb-h1); with many (40
 * units on 6 stages: 575757 cuts) it descends from both the min-max cut and the uniform cut, so
 * it is never slower than uniform. Unit costs vary 8x with the dearest first (as in the skewed
 * bench model), or are even but for a dearer first and last unit (a GPT's embedding and head,
 * the loss with it): with 6 units a descent from the min-max cut alone stopped at [2,1,1,2],
 * slower than the uniform [2,2,1,1]. */
Test(plan_time, the_cut_is_the_fastest_simulated)
{
    static const char *scheds[] = {"1f1b", "gpipe", "zb-h1"};
    static const struct {
        int units, stages;
    } shapes[] = {{6, 4}, {10, 4}, {12, 3}, {16, 12}, {40, 6}};
    for (size_t k = 0; k < sizeof scheds / sizeof *scheds; k++)
        for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
            const int U = shapes[sh].units, S = shapes[sh].stages;
            char layers[1024] = "model.layers=[", sched[64], stages[64];
            for (int u = 0; u < U; u++)
                strcat(layers, u + 1 < U ? "\"linear:16\"," : "\"linear:10\"]");
            snprintf(sched, sizeof sched, "pipeline.schedule=\"%s\"", scheds[k]);
            snprintf(stages, sizeof stages, "pipeline.stages=%d", S);
            const char *sets[] = {layers, sched, stages, "train.microbatches=4"};
            sl_config cfg;
            sl_plan plan;
            plan_of(sets, 4, &cfg, &plan);
            plan.host_cores = -1;
            double scale[64];
            for (int u = 0; u < U; u++) scale[u] = u < U / 3 ? 8.0 : 1.0 + (u % 3);
            if (U == 6 || U == 16)
                for (int u = 0; u < U; u++) scale[u] = u == 0 ? 1.1 : u == U - 1 ? 1.3 : 1.0;
            sl_profile pr[16];
            double ms[16];
            for (int r = 0; r < S; r++) ms[r] = 1.0;
            scaled_profiles(&plan, ms, scale, pr);
            int counts[16], tmp[16], uniform[16];
            cr_assert_eq(sl_plan_balance_time(&plan, pr, counts), SL_OK, "%s", sl_last_error());
            double got = step_of(&plan, pr, counts);
            for (int s = 0; s < S; s++) uniform[s] = U / S + (s < U % S);
            cr_assert_leq(got, step_of(&plan, pr, uniform) * (1 + 1e-12), "%s, %d units", scheds[k],
                          U);
            if (U <= 16)
                cr_assert_float_eq(got, best_cut(&plan, pr, tmp, 0, S, U), 1e-9,
                                   "%s, %d units on %d stages", scheds[k], U, S);
            for (int r = 0; r < S; r++) sl_profile_free(&pr[r]);
            sl_plan_free(&plan);
            sl_config_free(&cfg);
        }
}

/* Ranks on the host's CPU share its cores, each with the threads it computes on: beside a cpu rank
 * (one thread), an OpenCL CPU device (PoCL, a thread per compute unit) on as many cores as it has
 * units slows both while both compute; with a core more, or a processor each, neither. */
Test(plan_time, cpu_devices_share_the_host)
{
    const sl_device_info *infos;
    size_t count;
    cr_assert_eq(sl_device_list(&infos, &count), SL_OK, "%s", sl_last_error());
    const sl_device_info *ocl = NULL;
    for (size_t k = 0; k < count && !ocl; k++)
        if (!strcmp(infos[k].backend, "opencl") && infos[k].kind == SL_DEVICE_CPU) ocl = &infos[k];
    if (!ocl) sl_test_no_device("opencl", sl_device_list_problems());
    char devices[96];
    snprintf(devices, sizeof devices, "devices=[\"cpu\", \"%s\"]", ocl->id);
    const char *sets[] = {"pipeline.stages=2", "train.threads=1", devices};
    sl_config cfg;
    sl_plan plan;
    plan_of(sets, 3, &cfg, &plan);
    sl_profile pr[2];
    fake_profiles(&plan, (double[]){1.0, 1.0}, pr);
    double step[3];
    const int cores[] = {-1, (int)ocl->compute_units, (int)ocl->compute_units + 1};
    for (int k = 0; k < 3; k++) {
        plan.host_cores = cores[k];
        sl_plan_prediction p;
        cr_assert_eq(sl_plan_predict(&plan, pr, NULL, &p), SL_OK, "%s", sl_last_error());
        step[k] = p.step_ms;
        /* what the prediction assumed, as `sluice plan` prints it */
        cr_assert_eq(p.cores, k == 1 ? cores[1] : 0, "case %d: %d cores", k, p.cores);
        if (k == 1) {
            cr_assert_eq(p.threads[0], 1);
            cr_assert_eq(p.threads[1], (int)ocl->compute_units);
        }
        sl_plan_prediction_free(&p);
    }
    /* a rank asking for more threads than the host has counts the host's cores: its profile,
     * taken with them all, already ran that slowly */
    plan.cfg.train.threads = 64;
    plan.host_cores = cores[1];
    sl_plan_prediction many;
    cr_assert_eq(sl_plan_predict(&plan, pr, NULL, &many), SL_OK, "%s", sl_last_error());
    cr_assert_eq(many.threads[0], cores[1]);
    sl_plan_prediction_free(&many);
    cr_assert_gt(step[1], step[0] * 1.05, "shared: %g ms, alone: %g ms", step[1], step[0]);
    cr_assert_float_eq(step[2], step[0], 1e-9, "room for both: %g ms against %g", step[2], step[0]);
    for (int r = 0; r < 2; r++) sl_profile_free(&pr[r]);
    sl_plan_free(&plan);
    sl_config_free(&cfg);
}

Test(plan_time, refuses_what_does_not_fit)
{
    /* Two layers of 10^10 parameters with Adam: 160 GB each, on no machine's CPU. */
    const char *sets[] = {"model.layers=[\"linear:100000\",\"linear:100000\",\"linear:10\"]",
                          "model.inputs=100000", "pipeline.stages=2",
                          "train.optimizer={\"name\":\"adam\",\"lr\":0.001}"};
    sl_config cfg;
    char path[512];
    snprintf(path, sizeof path, "%s/samples/digits/digits.json", source_dir());
    /* The digits data has 64 features: the model's inputs are only checked when data loads. */
    cr_assert_eq(sl_config_load(path, sets, 4, &cfg), SL_OK, "%s", sl_last_error());
    sl_plan plan;
    cr_assert_eq(sl_plan_build(&cfg, &plan), SL_OK, "%s", sl_last_error());
    sl_profile pr[2];
    int counts[2];
    fake_profiles(&plan, (double[]){1.0, 1.0}, pr);
    assert_fails_with(sl_plan_balance_time(&plan, pr, counts), "which has");
    cr_assert(strstr(sl_last_error(), "or a device with more memory"), "%s", sl_last_error());
    for (int r = 0; r < 2; r++) sl_profile_free(&pr[r]);
    sl_plan_free(&plan);
    sl_config_free(&cfg);
}

/* Any partition: a plan whose rank cannot hold its stages is refused before anything is
 * allocated, by `sluice train` (through sl__run_open) and `sluice plan` (which prints the plan,
 * without profiling, and exits 1). */
Test(plan_time, memory_checked_for_every_partition)
{
    const char *sets[] = {"model.layers=[\"linear:100000\",\"linear:100000\",\"linear:10\"]",
                          "model.inputs=100000", "pipeline.stages=2"};
    sl_config cfg;
    char path[512];
    snprintf(path, sizeof path, "%s/samples/digits/digits.json", source_dir());
    cr_assert_eq(sl_config_load(path, sets, 3, &cfg), SL_OK, "%s", sl_last_error());
    sl_plan plan;
    cr_assert_eq(sl_plan_build(&cfg, &plan), SL_OK, "%s", sl_last_error());
    /* rank 0: two layers of 10^10 parameters, SGD with momentum: 3 x 80 GB */
    assert_fails_with(sl_plan_check_memory(&plan), "rank 0 would hold about 223.5 GiB on cpu");
    cr_assert(strstr(sl_last_error(), "use more stages"), "%s", sl_last_error());
    sl_plan_free(&plan);
    sl_config_free(&cfg);
    /* The digits sample fits. */
    cr_assert_eq(sl_config_load(path, NULL, 0, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_plan_build(&cfg, &plan), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_plan_check_memory(&plan), SL_OK, "%s", sl_last_error());
    sl_plan_free(&plan);
    sl_config_free(&cfg);

    int status;
    char *out = run_sluice(&status,
                           "plan '%s' --set 'model.layers=[\"linear:100000\",\"linear:100000\","
                           "\"linear:10\"]' --set model.inputs=100000 --set pipeline.stages=2 2>&1",
                           path);
    cr_assert_eq(status, 1, "%s", out);
    cr_assert(strstr(out, "MODEL STAGES") && strstr(out, "would hold about 223.5 GiB"), "%s", out);
    free(out);
    out = run_sluice(&status,
                     "train '%s' --quiet --set 'model.layers=[\"linear:100000\",\"linear:100000\","
                     "\"linear:10\"]' --set model.inputs=100000 --set pipeline.stages=2 --set "
                     "output.dir='\"%s/huge\"' 2>&1",
                     path, tmpdir());
    cr_assert_eq(status, 1, "%s", out);
    cr_assert(strstr(out, "would hold about 223.5 GiB"), "%s", out);
    free(out);
}

/* ------------------------------------------------------------------------------------------------
 * Through `sluice plan`, with a private cache */

static char cache[300];

static void setup_cache(void)
{
    snprintf(cache, sizeof cache, "%s/cache", tmpdir());
}

static cJSON *plan_json(const char *args, char **err_out)
{
    char config[512];
    snprintf(config, sizeof config, "%s/samples/digits/digits.json", source_dir());
    int status;
    char errf[400];
    snprintf(errf, sizeof errf, "%s/stderr.txt", tmpdir());
    char *out = run_sluice(&status,
                           "plan '%s' --set 'model.layers=[\"delay:0.2:8\",\"delay:0.2\","
                           "\"delay:0.2\",\"delay:0.2\",\"delay:0.2:10\"]' --set "
                           "pipeline.stages=2 %s --json 2>'%s'",
                           config, args, errf);
    char *err;
    size_t len;
    cr_assert_eq(sl_read_file(errf, &err, &len), SL_OK);
    cr_assert_eq(status, 0, "exit %d: %s", status, err);
    cJSON *root = cJSON_Parse(out);
    cr_assert_not_null(root, "%s", out);
    free(out);
    if (err_out)
        *err_out = err;
    else
        free(err);
    return root;
}

static int first_count(const cJSON *root)
{
    const cJSON *pc = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(root, "config"), "pipeline"), "partition_counts");
    cr_assert(cJSON_IsArray(pc), "no partition_counts");
    return (int)cJSON_GetNumberValue(cJSON_GetArrayItem(pc, 0));
}

/* Chimera's replicas share one cut: "time" gives one count per stage of a replica, costed on the
 * slower of the two ranks that run each stage (here both devices share it: rank 1 three times
 * slower everywhere, so the cut stays even), and plan.json records them. */
Test(plan_time, chimera_cuts_once_for_both_replicas, .init = setup_cache)
{
    const char *sets[] = {"model.layers=[\"linear:16\",\"relu\",\"linear:16\",\"linear:16\","
                          "\"linear:16\",\"linear:16\",\"linear:16\",\"linear:16\",\"linear:10\"]",
                          "pipeline.stages=2", "pipeline.schedule=chimera", "pipeline.chunks=2"};
    sl_config cfg;
    sl_plan plan;
    plan_of(sets, 4, &cfg, &plan);
    plan.host_cores = -1;
    sl_profile pr[2];
    int counts[4] = {0, 0, -1, -1};
    fake_profiles(&plan, (double[]){1.0, 3.0}, pr);
    cr_assert_eq(sl_plan_balance_time(&plan, pr, counts), SL_OK, "%s", sl_last_error());
    cr_assert(counts[0] + counts[1] == 8 && counts[0] >= 3 && counts[0] <= 5, "%d + %d", counts[0],
              counts[1]);
    cr_assert(counts[2] == -1 && counts[3] == -1, "one count per stage of a replica");
    for (int r = 0; r < 2; r++) sl_profile_free(&pr[r]);
    sl_plan_free(&plan);
    sl_config_free(&cfg);

    setenv("SLUICE_CACHE_DIR", cache, 1);
    char *err;
    cJSON *root = plan_json("--set pipeline.schedule=chimera --set pipeline.chunks=2 --set "
                            "pipeline.partition=time",
                            &err);
    const cJSON *pc = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(root, "config"), "pipeline"), "partition_counts");
    cr_assert_eq(cJSON_GetArraySize(pc), 2, "%s", err);
    cJSON_Delete(root);
    free(err);
}

Test(plan_time, sluice_plan_and_its_cache, .init = setup_cache)
{
    setenv("SLUICE_CACHE_DIR", cache, 1);
    char *err;
    cJSON *root = plan_json("", &err);
    const cJSON *pred = cJSON_GetObjectItem(root, "prediction");
    cr_assert_not_null(pred, "no prediction");
    cr_assert_gt(cJSON_GetNumberValue(cJSON_GetObjectItem(pred, "step_ms")), 0.0);
    const cJSON *uni = cJSON_GetObjectItem(pred, "uniform");
    cr_assert_gt(cJSON_GetNumberValue(cJSON_GetObjectItem(uni, "step_ms")), 0.0);
    const cJSON *st0 = cJSON_GetArrayItem(cJSON_GetObjectItem(pred, "stages"), 0);
    cr_assert_geq(cJSON_GetNumberValue(cJSON_GetObjectItem(st0, "f_ms")), 0.2, "a delay:0.2");
    cr_assert_gt(cJSON_GetNumberValue(cJSON_GetObjectItem(
                     cJSON_GetArrayItem(cJSON_GetObjectItem(pred, "ranks"), 0), "peak_bytes")),
                 0.0);
    cr_assert_not(cJSON_IsTrue(cJSON_GetObjectItem(
        cJSON_GetArrayItem(cJSON_GetObjectItem(pred, "profiles"), 0), "cached")));
    cJSON_Delete(root);
    free(err);

    /* The cache as written: make the first unit cost 100 ms, so "time" puts it alone. */
    char path[400], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/profile-cpu.json", cache);
    cr_assert_eq(sl_read_file(path, &text, &len), SL_OK, "%s", sl_last_error());
    cJSON *c = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(c);
    const char *keys[] = {"f_ms", "i_ms", "w_ms"};
    for (int k = 0; k < 3; k++) {
        cJSON *arr = cJSON_GetObjectItem(c, keys[k]);
        for (int u = 0; u < 5; u++) cJSON_SetNumberValue(cJSON_GetArrayItem(arr, u), u ? 1 : 100);
    }
    text = cJSON_Print(c);
    cr_assert_eq(sl_write_file(path, text, strlen(text), 0644), SL_OK);
    free(text);
    root = plan_json("--set pipeline.partition=time", &err);
    cr_assert_eq(first_count(root), 1, "the costly unit alone");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(
        cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "prediction"), "profiles"),
                           0),
        "cached")));
    cr_assert_eq(err[0], '\0', "nothing to say: %s", err);
    cJSON_Delete(root);
    free(err);

    /* A cache for another shape: profiled again, and said so. */
    cJSON_ReplaceItemInObject(c, "shape", cJSON_CreateString("0000000000000000"));
    text = cJSON_Print(c);
    cr_assert_eq(sl_write_file(path, text, strlen(text), 0644), SL_OK);
    free(text);
    cJSON_Delete(c);
    root = plan_json("--set pipeline.partition=time", &err);
    cr_assert(strstr(err, "is for another model shape or device: profiled again"), "%s", err);
    cJSON_Delete(root);
    free(err);
    /* --profile refreshes; --no-profile gives no prediction. */
    root = plan_json("--profile", &err);
    cr_assert_not(cJSON_IsTrue(cJSON_GetObjectItem(
        cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "prediction"), "profiles"),
                           0),
        "cached")));
    cJSON_Delete(root);
    free(err);
    root = plan_json("--no-profile", NULL);
    cr_assert_null(cJSON_GetObjectItem(root, "prediction"));
    cJSON_Delete(root);
}

/* Under a launcher every rank builds its own plan: a "time" cut must come resolved. */
Test(plan_time, launcher_needs_counts)
{
    char config[512];
    snprintf(config, sizeof config, "%s/samples/digits/digits.json", source_dir());
    int status;
    char *out;
    setenv("RANK", "0", 1);
    setenv("WORLD_SIZE", "2", 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", "1", 1);
    out = run_sluice(&status,
                     "train '%s' --set pipeline.stages=2 --set pipeline.partition=time "
                     "--set 'output.dir=\"%s/launched2\"' 2>&1",
                     config, tmpdir());
    unsetenv("RANK");
    unsetenv("WORLD_SIZE");
    unsetenv("MASTER_ADDR");
    unsetenv("MASTER_PORT");
    cr_assert_neq(status, 0, "%s", out);
    cr_assert(strstr(out, "give every rank its counts as pipeline.partition_counts"), "%s", out);
    free(out);
}
