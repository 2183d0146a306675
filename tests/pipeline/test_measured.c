/* Measured beside predicted, end to end through the built executable: a run of delay layers on 2
 * ranks (zb-h1, so F, I and W all run) with pipeline.partition "time" (profiled into a private
 * cache; plan.json records the counts and the ranks load that plan), its summary.json (per rank
 * busy, idle, transfer, runtime and wall time that add up; the measured step beside the
 * simulator's, also for dualpipev, whose backwards are both whole and split) and `sluice trace
 * --svg` of a step. No timing is asserted beyond what sleeping guarantees: the machines are
 * shared. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../bench/run.h"
#include "core/core.h"
#include "runtime/safetensors/safetensors.h"

static char dir[64];

static void cleanup(void)
{
    sl_remove_tree(dir);
}

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/sluice-measured-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    atexit(cleanup);
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    cr_assert(cJSON_IsNumber(v), "'%s' is missing", key);
    return v->valuedouble;
}

static cJSON *read_json(const char *path)
{
    char *text;
    size_t len;
    cr_assert_eq(sl_read_file(path, &text, &len), SL_OK, "%s", sl_last_error());
    cJSON *o = cJSON_ParseWithLength(text, len);
    free(text);
    cr_assert_not_null(o, "%s is not JSON", path);
    return o;
}

/* x and y of `rows` zeros in one column: a delay model's data. */
static void save_zeros(const char *path, int64_t rows)
{
    float zeros[16] = {0};
    cr_assert_leq(rows, 16);
    sl_tensor t[2] = {
        {.name = "x", .dtype = SL_DTYPE_F32, .ndim = 2, .shape = {rows, 1}, .data = zeros},
        {.name = "y", .dtype = SL_DTYPE_F32, .ndim = 2, .shape = {rows, 1}, .data = zeros},
    };
    cr_assert_eq(sl_safetensors_save(path, t, 2, NULL, NULL, 0), SL_OK);
}

/* Trains a delay model through the built executable: `body` is the config's model, train and
 * pipeline keys, to which `rows` zeros of data and the output directory dir/run (into out) are
 * added. */
static void train_delay(int64_t rows, const char *body, char *out, size_t cap)
{
    char data[256], config[256];
    snprintf(data, sizeof data, "%s/data.safetensors", dir);
    snprintf(config, sizeof config, "%s/config.json", dir);
    snprintf(out, cap, "%s/run", dir);
    save_zeros(data, rows);
    FILE *f = fopen(config, "w");
    cr_assert_not_null(f);
    fprintf(f, "{%s, \"data\": {\"path\": \"%s\"}, \"output\": {\"dir\": \"%s\"}}", body, data,
            out);
    fclose(f);
    int status;
    char *text = run_sluice(&status, "train '%s' 2>&1", config);
    cr_assert_eq(status, 0, "%s", text);
    free(text);
}

Test(measured, summary_and_trace_svg, .init = make_dir)
{
    char out[256], cache[256], svg[256];
    snprintf(cache, sizeof cache, "%s/cache", dir);
    snprintf(svg, sizeof svg, "%s/step.svg", dir);
    setenv("SLUICE_CACHE_DIR", cache, 1);
    train_delay(16,
                "\"model\": {\"inputs\": 1, \"layers\": [\"delay:0.3:64\", \"delay:0.3\", "
                "\"delay:0.3\", \"delay:0.3:1\"], \"loss\": \"mse\"},"
                " \"train\": {\"steps\": 3, \"batch\": 4, \"microbatches\": 4,"
                "  \"optimizer\": {\"name\": \"sgd\", \"lr\": 0.1}},"
                " \"pipeline\": {\"stages\": 2, \"schedule\": \"zb-h1\", \"partition\": \"time\"}",
                out, sizeof out);

    char path[400];
    snprintf(path, sizeof path, "%s/plan.json", out);
    cJSON *plan = read_json(path);
    const cJSON *pc = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(plan, "config"), "pipeline"), "partition_counts");
    cr_assert_eq(cJSON_GetArraySize(pc), 2, "the time partition's counts are recorded");
    cr_assert_eq(cJSON_GetNumberValue(cJSON_GetArrayItem(pc, 0)) +
                     cJSON_GetNumberValue(cJSON_GetArrayItem(pc, 1)),
                 4);
    cJSON_Delete(plan);

    snprintf(path, sizeof path, "%s/summary.json", out);
    cJSON *s = read_json(path);
    cr_assert_gt(num(s, "step_time_measured_s"), 0.0);
    cr_assert_gt(num(s, "step_time_predicted_s"), 0.0);
    double bm = num(s, "bubble_ratio_measured"), bp = num(s, "bubble_ratio_predicted");
    cr_assert(bm >= 0 && bm < 1 && bp >= 0 && bp < 1, "bubbles %g %g", bm, bp);
    const cJSON *ranks = cJSON_GetObjectItem(s, "ranks");
    cr_assert_eq(cJSON_GetArraySize(ranks), 2);
    for (int r = 0; r < 2; r++) {
        const cJSON *o = cJSON_GetArrayItem(ranks, r);
        double busy = num(o, "busy_s"), idle = num(o, "idle_s"), tr = num(o, "transfer_s"),
               rt = num(o, "runtime_s"), wall = num(o, "wall_s");
        /* Every rank runs 2 delay layers of 0.3 ms F, I and W for 4 micro-batches, 3 steps. */
        cr_assert_geq(busy, 3 * 4 * 3 * 0.3e-3, "rank %d busy %g", r, busy);
        cr_assert_gt(tr, 0.0);
        cr_assert_geq(rt, 0.0);
        cr_assert_float_eq(busy + tr + rt, wall, 1e-9);
        cr_assert_float_eq(idle, wall - busy, 1e-9);
        /* OPT and the gradients' clearing: some time each step, less than the step */
        double opt = num(o, "opt_ms");
        cr_assert(opt > 0 && opt < 1e3 * num(s, "step_time_measured_s"), "rank %d OPT %g ms", r,
                  opt);
    }
    cJSON_Delete(s);

    int status;
    char *text = run_sluice(&status, "trace '%s' --svg '%s' --step 1", out, svg);
    cr_assert_eq(status, 0, "%s", text);
    cr_assert(strstr(text, "step 1 as measured"), "%s", text);
    free(text);
    char *pic;
    size_t len;
    cr_assert_eq(sl_read_file(svg, &pic, &len), SL_OK);
    cr_assert(strstr(pic, "<svg") && strstr(pic, "zb-h1 D=2 M=4"), "%.300s", pic);
    cr_assert(strstr(pic, "<title>0F0 [") && strstr(pic, "<title>1W3 ["), "every action drawn");
    free(pic);
    text = run_sluice(&status, "trace '%s' --svg '%s' --step 9 2>&1", out, svg);
    cr_assert_eq(status, 1);
    cr_assert(strstr(text, "has no step 9"), "%s", text);
    free(text);
}

/* A reduction's wait is transfer, not compute: with clipping every rank meets the others in
 * NORM at the step's end. On 2 ranks of 1F1B, rank 1 (delay:4, done first) waits there for rank
 * 0's last backward (delay:40, 80 ms), which summary.json counted as rank 1's busy time when
 * NORM's messages were timed as compute. Sleeps only ever run long, so the bounds hold on a
 * loaded host: rank 1 computes 2 micro-batches x (4 + 8) ms a step and waits at least 80 ms. */
Test(measured, reduction_wait_is_transfer, .init = make_dir)
{
    char out[256];
    train_delay(4,
                "\"model\": {\"inputs\": 1, \"layers\": [\"delay:40\", \"delay:4\"], "
                "\"loss\": \"mse\"},"
                " \"train\": {\"steps\": 3, \"batch\": 2, \"microbatches\": 2, \"grad_clip\": 1.0,"
                "  \"optimizer\": {\"name\": \"sgd\", \"lr\": 0.1}},"
                " \"pipeline\": {\"stages\": 2, \"schedule\": \"1f1b\"}",
                out, sizeof out);
    char path[400];
    snprintf(path, sizeof path, "%s/summary.json", out);
    cJSON *s = read_json(path);
    const cJSON *r1 = cJSON_GetArrayItem(cJSON_GetObjectItem(s, "ranks"), 1);
    cr_assert_not_null(r1);
    /* steps 1 and 2 are measured (step 0 is not) */
    double busy = num(r1, "busy_s"), tr = num(r1, "transfer_s");
    cr_assert_geq(busy, 2 * 2 * 12e-3, "rank 1 busy %g s", busy);
    cr_assert_lt(busy, 2 * (2 * 12e-3 + 40e-3), "rank 1's wait in NORM counted as busy: %g s",
                 busy);
    cr_assert_geq(tr, 2 * 80e-3, "rank 1 transfer %g s", tr);
    cJSON_Delete(s);
}

/* The simulator's step for the measured costs (summary.json's step_time_predicted_s) of a
 * schedule that runs both whole backwards (B) and split ones (I, W): dualpipev on 2 ranks. Each
 * kind's mean stands apart: counting I among B and adding W to it made the prediction 1.28 times
 * the measured step, which it cannot be by more than averaging (the run waits for the same
 * dependencies with costs that vary, so it only ever takes longer than its means would). */
Test(measured, prediction_of_a_schedule_with_both_backwards, .init = make_dir)
{
    char out[256];
    train_delay(16,
                "\"model\": {\"inputs\": 1, \"layers\": [\"delay:2:64\", \"delay:2\", "
                "\"delay:2\", \"delay:2:1\"], \"loss\": \"mse\"},"
                " \"train\": {\"steps\": 3, \"batch\": 16, \"microbatches\": 8,"
                "  \"optimizer\": {\"name\": \"sgd\", \"lr\": 0.1}},"
                " \"pipeline\": {\"stages\": 2, \"schedule\": \"dualpipev\", \"chunks\": 2}",
                out, sizeof out);
    char path[400];
    snprintf(path, sizeof path, "%s/summary.json", out);
    cJSON *s = read_json(path);
    double measured = num(s, "step_time_measured_s"), predicted = num(s, "step_time_predicted_s");
    cr_assert(predicted > 0 && predicted <= 1.1 * measured,
              "predicted step %g s beside a measured %g s", predicted, measured);
    cJSON_Delete(s);
}

/* `sluice trace`'s critical path, where the path is known: one micro-batch through 2 ranks of
 * delay:20 runs 0F0, 1F0, 1B0, 0B0, each waiting for the one before (two of them across the
 * link), 120 ms of sleep at least; the parts add up to the step's span. */
Test(measured, trace_critical_path, .init = make_dir)
{
    char out[256];
    train_delay(2,
                "\"model\": {\"inputs\": 1, \"layers\": [\"delay:20:64\", \"delay:20:1\"], "
                "\"loss\": \"mse\"},"
                " \"train\": {\"steps\": 2, \"batch\": 2, \"microbatches\": 1,"
                "  \"optimizer\": {\"name\": \"sgd\", \"lr\": 0.1}},"
                " \"pipeline\": {\"stages\": 2, \"schedule\": \"gpipe\"}",
                out, sizeof out);
    int status;
    char *text = run_sluice(&status, "trace '%s' --json", out);
    cr_assert_eq(status, 0, "%s", text);
    cJSON *o = cJSON_Parse(text);
    cr_assert_not_null(o, "%s", text);
    free(text);
    const cJSON *cp = cJSON_GetObjectItem(o, "critical_path");
    cr_assert_not_null(cp, "no critical_path");
    cr_assert_eq(num(cp, "step"), 1);
    cr_assert_eq(num(cp, "actions"), 4);
    cr_assert_eq(num(cp, "hops"), 2);
    cr_assert_eq(num(cp, "rank_gaps"), 1);
    cr_assert_geq(num(cp, "compute_ms"), 120.0);
    cr_assert_float_eq(num(cp, "compute_ms") + num(cp, "link_wait_ms") + num(cp, "rank_gap_ms") +
                           num(cp, "start_ms"),
                       num(cp, "span_ms"), 1e-6);
    cJSON_Delete(o);

    text = run_sluice(&status, "trace '%s' --step 0", out);
    cr_assert_eq(status, 0, "%s", text);
    cr_assert(strstr(text, "critical path of step 0:") && strstr(text, "4 actions") &&
                  strstr(text, "2 hops"),
              "%s", text);
    free(text);
}

/* `sluice schedule --config FILE` prints each rank's peak stash bytes (text and JSON) as
 * summary.json's stash_bytes_predicted has them after `sluice train FILE`: layers of different
 * widths on 2 ranks, interleaved (2 chunks per rank) and 1f1b with recompute. */
Test(measured, schedule_bytes_equal_summary, .init = make_dir)
{
    float zeros[16 * 8] = {0};
    sl_tensor t[2] = {
        {.name = "x", .dtype = SL_DTYPE_F32, .ndim = 2, .shape = {16, 8}, .data = zeros},
        {.name = "y", .dtype = SL_DTYPE_F32, .ndim = 2, .shape = {16, 1}, .data = zeros},
    };
    char data[256];
    snprintf(data, sizeof data, "%s/data.safetensors", dir);
    cr_assert_eq(sl_safetensors_save(data, t, 2, NULL, NULL, 0), SL_OK);
    static const char *const pipelines[] = {
        "\"schedule\": \"interleaved\", \"chunks\": 2",
        "\"schedule\": \"1f1b\", \"recompute\": true",
    };
    for (int k = 0; k < 2; k++) {
        char config[256], out[256], path[400];
        snprintf(config, sizeof config, "%s/config%d.json", dir, k);
        snprintf(out, sizeof out, "%s/run%d", dir, k);
        FILE *f = fopen(config, "w");
        cr_assert_not_null(f);
        fprintf(f,
                "{\"model\": {\"inputs\": 8, \"layers\": [\"linear:32\", \"relu\", \"linear:16\","
                " \"tanh\", \"linear:24\", \"gelu\", \"linear:1\"], \"loss\": \"mse\"},"
                " \"data\": {\"path\": \"%s\"},"
                " \"train\": {\"steps\": 1, \"batch\": 8, \"microbatches\": 4,"
                "  \"optimizer\": {\"name\": \"sgd\", \"lr\": 0.1}},"
                " \"pipeline\": {\"stages\": 2, %s}, \"output\": {\"dir\": \"%s\"}}",
                data, pipelines[k], out);
        fclose(f);
        int status;
        char *text = run_sluice(&status, "train '%s' 2>&1", config);
        cr_assert_eq(status, 0, "%s", text);
        free(text);
        snprintf(path, sizeof path, "%s/summary.json", out);
        cJSON *s = read_json(path);
        const cJSON *ranks = cJSON_GetObjectItem(s, "ranks");
        cr_assert_eq(cJSON_GetArraySize(ranks), 2);

        char *json = run_sluice(&status, "schedule --config '%s' --json 2>&1", config);
        cr_assert_eq(status, 0, "%s", json);
        cJSON *o = cJSON_Parse(json);
        cr_assert_not_null(o, "not JSON: %.300s", json);
        const cJSON *bytes = cJSON_GetObjectItem(o, "peak_stash_bytes");
        cr_assert_eq(cJSON_GetArraySize(bytes), 2, "%.300s", json);
        cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(o, "peak_activations")), 2);
        char *txt = run_sluice(&status, "schedule --config '%s' 2>&1", config);
        cr_assert_eq(status, 0, "%s", txt);
        const char *line = strstr(txt, "peak stash bytes (stashes and stage inputs held at once) "
                                       "per rank:");
        cr_assert_not_null(line, "%s", txt);
        cr_assert(strstr(txt, "peak stash (micro-batches"), "the counts stay: %s", txt);
        char *p = strchr(line, ':') + 1;
        for (int r = 0; r < 2; r++) {
            double want = num(cJSON_GetArrayItem(ranks, r), "stash_bytes_predicted");
            cr_assert_gt(want, 0.0);
            cr_assert_eq(cJSON_GetNumberValue(cJSON_GetArrayItem(bytes, r)), want,
                         "%s rank %d: --json %g, summary.json %g", pipelines[k], r,
                         cJSON_GetNumberValue(cJSON_GetArrayItem(bytes, r)), want);
            char *end;
            double got = strtod(p, &end);
            cr_assert(end != p, "rank %d's bytes missing: %s", r, line);
            cr_assert_eq(got, want, "%s rank %d: text %g, summary.json %g", pipelines[k], r, got,
                         want);
            p = end;
        }
        cr_assert(*p == '\n', "one figure per rank: %s", line);
        free(txt);
        cJSON_Delete(o);
        free(json);
        cJSON_Delete(s);
    }
}
