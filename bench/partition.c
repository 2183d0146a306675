/* `sluice bench partition`: pipeline.partition "time" against "uniform", each trained through
 * `sluice train`'s machinery, with the plan's predicted step time beside the measured one.
 *
 * Rows: a skewed MLP (layer widths varying 8x, so that uniform counts leave one stage with most of
 * the work) on 4 ranks; the Shakespeare sample's GPT on 4 ranks; and the skewed MLP on a two-device
 * pipeline (cpu + opencl:0, PoCL) whose devices differ in speed. The layers are profiled once per
 * device into a private cache (the first plan measures, the others read it). The measured step
 * is summary.json's step_time_measured_s (the mean after step 0); the predicted one the simulator's
 * makespan of the plan's schedule for the profiled costs (sl_plan_predict); between them,
 * summary.json's step_time_predicted_s, the simulator's for the costs the run measured, splits a
 * prediction's error into the profile's (predicted against it) and what the simulator leaves out
 * (it against the measured step: links, the runtime). */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "core/core.h"
#include "runtime/plan/plan.h"
#include "runtime/safetensors/safetensors.h"
#include "runtime/train/train.h"

/* One model's pair of runs. */
struct row {
    const char *name;
    const char *devices;          /* text for the table */
    double step[2], predicted[2]; /* [uniform, time], seconds */
    double simulated[2];          /* the simulator's step for the run's measured costs */
    char counts[2][64];
    int ok;
    char note[256];
};

struct options {
    int steps, ranks; /* ranks: the skewed MLP's (the GPT runs on the sample's 4) */
    int json;
    int gpt, two_device;
    const char *source; /* the source tree, for the Shakespeare sample */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice bench partition [--steps N] [--ranks D] [--no-gpt] [--no-two-device]\n"
            "                              [--source DIR] [--json]\n\n"
            "Trains each model with pipeline.partition \"uniform\" and \"time\" and compares the\n"
            "step times, with the plan's predicted step beside each measured one:\n"
            "  skewed MLP   widths 2048 x3, 256 x8, 10 (8x), 12 linear layers, D ranks on the cpu\n"
            "  GPT          samples/shakespeare's model, 4 ranks on the cpu\n"
            "  two devices  the skewed MLP on 2 ranks: cpu and opencl:0 (PoCL)\n\n"
            "  --steps N        steps per run; step 0 is not timed (default 8)\n"
            "  --ranks D        the skewed MLP's ranks, 2..12 (default 4)\n"
            "  --source DIR     the source tree holding samples/ (default .)\n"
            "  --no-gpt, --no-two-device   leave a row out\n"
            "  --json           one JSON object\n");
}

/* x [rows, 256] in [0, 1) and labels in 0..9: the skewed MLP's data. */
static int write_data(const char *path, int rows, int in)
{
    float *x = sl_alloc((size_t)rows * (size_t)in * sizeof *x);
    int32_t *y = sl_alloc((size_t)rows * sizeof *y);
    int rc = x && y ? SL_OK : SL_ENOMEM;
    uint64_t s = 7;
    for (size_t i = 0; rc == SL_OK && i < (size_t)rows * (size_t)in; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)(s >> 40) / (float)(1ull << 24);
    }
    for (int i = 0; rc == SL_OK && i < rows; i++) y[i] = i % 10;
    sl_tensor t[2] = {
        {.name = "x", .dtype = SL_DTYPE_F32, .ndim = 2, .shape = {rows, in}, .data = x},
        {.name = "y", .dtype = SL_DTYPE_I32, .ndim = 1, .shape = {rows}, .data = y},
    };
    if (rc == SL_OK) rc = sl_safetensors_save(path, t, 2, NULL, NULL, 0);
    free(x);
    free(y);
    return rc;
}

/* The skewed MLP: 256 inputs, three layers of 2048 then eight of 256 (relu between), 10 classes.
 * A uniform cut of 4 stages leaves the two 2048 x 2048 layers (9/10 of the work) on stage 0: with
 * the wide layers straddling two stages, as when there were four of them, a uniform cut kept two
 * ranks computing, which on a host of 2 cores is within 0.8x of any cut's step
 * (bench/partition.md). */
static char *mlp_config(const char *data, const char *out_dir, int steps, int ranks,
                        const char *devices)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddNumberToObject(model, "inputs", 256);
    cJSON *layers = cJSON_AddArrayToObject(model, "layers");
    for (int i = 0; i < 12; i++) {
        char text[32];
        snprintf(text, sizeof text, "linear:%d", i < 3 ? 2048 : i == 11 ? 10 : 256);
        cJSON_AddItemToArray(layers, cJSON_CreateString(text));
        if (i < 11) cJSON_AddItemToArray(layers, cJSON_CreateString("relu"));
    }
    cJSON_AddStringToObject(model, "loss", "cross_entropy");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "data"), "path", data);
    cJSON *t = cJSON_AddObjectToObject(root, "train");
    cJSON_AddNumberToObject(t, "steps", steps);
    cJSON_AddNumberToObject(t, "batch", 256);
    cJSON_AddNumberToObject(t, "microbatches", 8);
    cJSON_AddNumberToObject(t, "threads", 1);
    cJSON *opt = cJSON_AddObjectToObject(t, "optimizer");
    cJSON_AddStringToObject(opt, "name", "sgd");
    cJSON_AddNumberToObject(opt, "lr", 0.01);
    cJSON *p = cJSON_AddObjectToObject(root, "pipeline");
    cJSON_AddNumberToObject(p, "stages", ranks);
    cJSON_AddStringToObject(p, "schedule", "1f1b");
    cJSON *dev = cJSON_Parse(devices);
    cJSON_AddItemToObject(root, "devices", dev ? dev : cJSON_CreateString("cpu"));
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "output"), "dir", out_dir);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* The plan's predicted step (s) for cfg, from the (cached) profiles. */
static int predict(const sl_config *cfg, double *step, char *counts, size_t cap)
{
    sl_plan plan;
    SL_TRY(sl_plan_build(cfg, &plan));
    sl_profile *profiles = NULL;
    char note[1024];
    int rc = sl_plan_profiles(&plan, false, &profiles, note, sizeof note);
    sl_plan_prediction pr = {0};
    if (rc == SL_OK) rc = sl_plan_predict(&plan, profiles, NULL, &pr);
    if (rc == SL_OK) *step = pr.step_ms / 1e3;
    counts[0] = '\0';
    for (int s = 0; rc == SL_OK && s < plan.part.nstages; s++) {
        int n = 0;
        for (int i = plan.part.stages[s].first; i < plan.part.stages[s].last; i++)
            n += sl_layer_has_params(&plan.model.layers[i]);
        snprintf(counts + strlen(counts), cap - strlen(counts), "%s%d", s ? "," : "", n);
    }
    sl_plan_prediction_free(&pr);
    sl_plan_profiles_free(&plan, profiles);
    sl_plan_free(&plan);
    return rc;
}

/* A finished run's measured step and the simulator's for its measured costs (summary.json's
 * step_time_measured_s and step_time_predicted_s; NaN without one). */
static int measured_step(const char *out_dir, double *step, double *simulated)
{
    char path[1600], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/summary.json", out_dir);
    SL_TRY(sl_read_file(path, &text, &len));
    cJSON *o = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *v = cJSON_GetObjectItem(o, "step_time_measured_s");
    const cJSON *sim = cJSON_GetObjectItem(o, "step_time_predicted_s");
    int rc = cJSON_IsNumber(v) ? SL_OK : sl_fail(SL_EFORMAT, "%s has no step time", path);
    if (rc == SL_OK) *step = v->valuedouble;
    *simulated = cJSON_IsNumber(sim) ? sim->valuedouble : NAN;
    cJSON_Delete(o);
    return rc;
}

/* Trains `text` (a config) with each partition and fills the row. */
static int run_pair(const char *text, const char *dir, const char *out_dir, const char *const *sets,
                    int nsets, struct row *row)
{
    static const char *const methods[2] = {"\"uniform\"", "\"time\""};
    for (int k = 0; k < 2; k++) {
        const char *all[8];
        char part[64], out[1400];
        snprintf(part, sizeof part, "pipeline.partition=%s", methods[k]);
        snprintf(out, sizeof out, "output.dir=\"%s-%d\"", out_dir, k);
        int n = 0;
        for (int i = 0; i < nsets && n < 6; i++) all[n++] = sets[i];
        all[n++] = part;
        all[n++] = out;
        sl_config cfg;
        SL_TRY(sl_config_parse(text, dir, all, n, &cfg));
        int rc = predict(&cfg, &row->predicted[k], row->counts[k], sizeof row->counts[k]);
        sl_train_summary sum;
        sl_train_options topt = {.progress = 0};
        if (rc == SL_OK) rc = sl_train(&cfg, &topt, &sum);
        char od[1300];
        snprintf(od, sizeof od, "%s-%d", out_dir, k);
        if (rc == SL_OK) rc = measured_step(od, &row->step[k], &row->simulated[k]);
        sl_config_free(&cfg);
        SL_TRY(rc);
    }
    row->ok = 1;
    return SL_OK;
}

static int run_rows(const struct options *o, const char *tmp, struct row *rows, int *n)
{
    char data[1200], out[1200], steps[64];
    snprintf(data, sizeof data, "%s/mlp.safetensors", tmp);
    snprintf(steps, sizeof steps, "train.steps=%d", o->steps);
    SL_TRY(write_data(data, 512, 256));
    *n = 0;
    struct row *r = &rows[(*n)++];
    static char devs[32];
    snprintf(devs, sizeof devs, "%d x cpu", o->ranks);
    *r = (struct row){.name = "skewed MLP", .devices = devs};
    snprintf(out, sizeof out, "%s/mlp", tmp);
    char *text = mlp_config(data, out, o->steps, o->ranks, "\"cpu\"");
    if (!text) return SL_ENOMEM;
    int rc = run_pair(text, tmp, out, NULL, 0, r);
    free(text);
    SL_TRY(rc);
    if (o->gpt) {
        r = &rows[(*n)++];
        *r = (struct row){.name = "Shakespeare GPT", .devices = "4 x cpu"};
        char path[1200], *cfg_text;
        size_t len;
        snprintf(path, sizeof path, "%s/samples/shakespeare/shakespeare.json", o->source);
        snprintf(out, sizeof out, "%s/gpt", tmp);
        rc = sl_read_file(path, &cfg_text, &len);
        /* The sample's relative data path resolves against the source tree. */
        const char *sets[] = {steps, "eval.interval=0", "eval.iters=1"};
        if (rc == SL_OK) rc = run_pair(cfg_text, o->source, out, sets, 3, r);
        if (rc == SL_OK) free(cfg_text);
        SL_TRY(rc);
    }
    if (o->two_device) {
        r = &rows[(*n)++];
        *r = (struct row){.name = "skewed MLP", .devices = "cpu + opencl:0"};
        snprintf(out, sizeof out, "%s/two", tmp);
        text = mlp_config(data, out, o->steps, 2, "[\"cpu\",\"opencl:0\"]");
        if (!text) return SL_ENOMEM;
        rc = run_pair(text, tmp, out, NULL, 0, r);
        free(text);
        if (rc != SL_OK) {
            /* No PoCL here: the row says why instead of failing the bench. */
            snprintf(r->note, sizeof r->note, "%s", sl_last_error());
            sl_clear_error();
            r->ok = 0;
        }
    }
    return SL_OK;
}

static void print_table(const struct row *rows, int n)
{
    printf("%-16s %-15s %-22s %10s %10s %7s %10s %10s %9s %10s\n", "model", "devices",
           "counts uniform | time", "uniform", "time", "ratio", "pred.uni", "pred.time", "pred.err",
           "sim.time");
    for (int i = 0; i < n; i++) {
        const struct row *r = &rows[i];
        if (!r->ok) {
            printf("%-16s %-15s not run: %s\n", r->name, r->devices, r->note);
            continue;
        }
        char counts[160];
        snprintf(counts, sizeof counts, "%s | %s", r->counts[0], r->counts[1]);
        double err =
            fmax(fabs(r->predicted[0] / r->step[0] - 1), fabs(r->predicted[1] / r->step[1] - 1));
        printf("%-16s %-15s %-22s %8.1fms %8.1fms %6.3fx %8.1fms %8.1fms %8.1f%% %8.1fms\n",
               r->name, r->devices, counts, 1e3 * r->step[0], 1e3 * r->step[1],
               r->step[1] / r->step[0], 1e3 * r->predicted[0], 1e3 * r->predicted[1], 100 * err,
               1e3 * r->simulated[1]);
    }
    printf("\n(ratio: time's measured step over uniform's; pred.: the plan's predicted step from "
           "the profiles; pred.err: the larger |predicted/measured - 1| of the two. Targets on "
           "the skewed MLP: ratio <= 0.8, pred.err <= 15%%. sim.time: the simulator's step for "
           "the time cut's measured compute times; pred.time against it is the profile's error, "
           "it against the measured step what the simulator leaves out: links, the runtime.)\n");
}

static cJSON *to_json(const struct row *rows, int n)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "name", "partition");
    cJSON_AddStringToObject(root, "baseline", "the same model with pipeline.partition \"uniform\"");
    cJSON *arr = cJSON_AddArrayToObject(root, "rows");
    for (int i = 0; i < n; i++) {
        const struct row *r = &rows[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", r->name);
        cJSON_AddStringToObject(o, "devices", r->devices);
        if (!r->ok) {
            cJSON_AddStringToObject(o, "not_run", r->note);
            cJSON_AddItemToArray(arr, o);
            continue;
        }
        cJSON_AddStringToObject(o, "counts_uniform", r->counts[0]);
        cJSON_AddStringToObject(o, "counts_time", r->counts[1]);
        cJSON_AddNumberToObject(o, "step_uniform_s", r->step[0]);
        cJSON_AddNumberToObject(o, "step_time_s", r->step[1]);
        cJSON_AddNumberToObject(o, "ratio", r->step[1] / r->step[0]);
        cJSON_AddNumberToObject(o, "predicted_uniform_s", r->predicted[0]);
        cJSON_AddNumberToObject(o, "predicted_time_s", r->predicted[1]);
        cJSON_AddNumberToObject(o, "simulated_for_measured_uniform_s", r->simulated[0]);
        cJSON_AddNumberToObject(o, "simulated_for_measured_time_s", r->simulated[1]);
        double err =
            fmax(fabs(r->predicted[0] / r->step[0] - 1), fabs(r->predicted[1] / r->step[1] - 1));
        cJSON_AddNumberToObject(o, "prediction_error", err);
        cJSON_AddItemToArray(arr, o);
        if (i == 0) {
            cJSON_AddNumberToObject(root, "ratio", r->step[1] / r->step[0]);
            cJSON_AddNumberToObject(root, "prediction_error", err);
            cJSON_AddBoolToObject(root, "met", r->step[1] / r->step[0] <= 0.8 && err <= 0.15);
        }
    }
    return root;
}

int sl_bench_partition(int argc, char **argv)
{
    struct options o = {.steps = 8, .ranks = 4, .gpt = 1, .two_device = 1, .source = "."};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            o.json = 1;
        } else if (!strcmp(a, "--no-gpt")) {
            o.gpt = 0;
        } else if (!strcmp(a, "--no-two-device")) {
            o.two_device = 0;
        } else if (!strcmp(a, "--source") && i + 1 < argc) {
            o.source = argv[++i];
        } else if (!strcmp(a, "--ranks") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 2 || v > 12) {
                fprintf(stderr, "sluice bench partition: --ranks needs 2..12\n");
                return 2;
            }
            o.ranks = (int)v;
        } else if (!strcmp(a, "--steps") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 2 || v > 100000) {
                fprintf(stderr, "sluice bench partition: --steps needs 2 or more\n");
                return 2;
            }
            o.steps = (int)v;
        } else {
            fprintf(stderr, "sluice bench partition: unexpected argument '%s' (try --help)\n", a);
            return 2;
        }
    }
    char tmp[] = "/tmp/sluice-bench-partition-XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("sluice bench partition: mkdtemp");
        return 1;
    }
    /* A private profile cache: every run of the bench measures its layers afresh. */
    char cache[256];
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    setenv("SLUICE_CACHE_DIR", cache, 1);
    struct row rows[3];
    int n = 0;
    int rc = run_rows(&o, tmp, rows, &n);
    if (sl_remove_tree(tmp) != SL_OK)
        fprintf(stderr, "sluice bench partition: %s\n", sl_last_error());
    if (rc != SL_OK) {
        fprintf(stderr, "sluice bench partition: %s\n", sl_last_error());
        return 1;
    }
    if (o.json)
        sl_bench_print_json(to_json(rows, n));
    else
        print_table(rows, n);
    return 0;
}
