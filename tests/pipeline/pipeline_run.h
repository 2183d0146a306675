/* The end-to-end suites' runs: train a config (base_config, or a GPT on a short text) through the
 * sluice executable with overrides, load the losses, evaluations and final weights it wrote, and
 * compare two runs. */
#ifndef SL_TEST_PIPELINE_RUN_H
#define SL_TEST_PIPELINE_RUN_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/config/config.h"
#include "runtime/model/model.h"
#include "runtime/plan/plan.h"
#include "runtime/train/train.h"
#include "tests/pipeline/outdir.h"

#define STEPS     4
#define MAX_EVALS 8

/* Eight linear layers so that 4 ranks x 2 chunks still get one each. */
static const char *base_config =
    "{\"model\": {\"inputs\": 64, \"layers\": [\"linear:24\", \"tanh\", \"linear:20\", \"gelu\","
    " \"linear:18\", \"relu\", \"linear:16\", \"sigmoid\", \"linear:16\", \"tanh\", \"linear:14\","
    " \"relu\", \"linear:12\", \"gelu\", \"linear:10\"], \"loss\": \"cross_entropy\", \"seed\": 3},"
    " \"data\": {\"path\": \"samples/digits/digits.csv.gz\", \"scale\": 0.0625},"
    " \"train\": {\"steps\": 4, \"batch\": 16, \"microbatches\": 4, \"threads\": 1,"
    "  \"optimizer\": {\"name\": \"sgd\", \"lr\": 0.1, \"momentum\": 0.9, \"weight_decay\": "
    "0.001}},"
    " \"pipeline\": {\"stages\": 1, \"schedule\": \"1f1b\"}, \"devices\": \"cpu\"}";

typedef struct result {
    int nsteps;
    double losses[STEPS];
    double grad_norms[STEPS]; /* NaN where the step report had none */
    /* a text's evaluations (metrics.jsonl lines with val_loss/train_loss): after which step,
     * and the two means (NaN when absent) */
    int nevals;
    int eval_steps[MAX_EVALS];
    double val_losses[MAX_EVALS], train_losses[MAX_EVALS];
    double summary_val, summary_train; /* summary.json's val_loss, train_loss (NaN: absent) */
    sl_weights weights;
    sl_model model;
} result;

/* Trains `base` with the given overrides; returns SL_OK or the failure. */
static inline int train_config(const char *base, const char **sets, int nsets, result *out)
{
    static int run_no;
    char dir[128], dirset[160];
    snprintf(dir, sizeof dir, "%s/run%d", outdir, run_no++);
    snprintf(dirset, sizeof dirset, "output.dir=\"%s\"", dir);
    const char *all[16];
    int n = 0;
    for (int i = 0; i < nsets; i++) all[n++] = sets[i];
    all[n++] = dirset;
    sl_config cfg;
    int st = sl_config_parse(base, ".", all, n, &cfg);
    if (st != SL_OK) return st;
    sl_train_options opt = {.exe = getenv("SLUICE_EXE"), .progress = 0};
    sl_train_summary sum;
    st = sl_train(&cfg, &opt, &sum);
    if (st == SL_OK) {
        char path[256];
        snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f);
        out->nsteps = SL_MIN(cfg.train.steps, STEPS);
        out->nevals = 0;
        char line[1024];
        for (int k = 0; k < out->nsteps;) {
            int step;
            cr_assert_not_null(fgets(line, sizeof line, f), "metrics.jsonl line %d", k);
            if (!strstr(line, "\"loss\": ")) { /* an evaluation */
                cr_assert_lt(out->nevals, MAX_EVALS);
                int e = out->nevals++;
                const char *v = strstr(line, "\"val_loss\": "),
                           *t = strstr(line, "\"train_loss\": ");
                cr_assert_eq(sscanf(line, "{\"step\": %d", &out->eval_steps[e]), 1, "%s", line);
                out->val_losses[e] = v ? strtod(v + 12, NULL) : NAN;
                out->train_losses[e] = t ? strtod(t + 14, NULL) : NAN;
                continue;
            }
            cr_assert_eq(sscanf(line, "{\"step\": %d, \"loss\": %lf", &step, &out->losses[k]), 2,
                         "metrics.jsonl line %d", k);
            cr_assert_eq(step, k);
            const char *gn = strstr(line, "\"grad_norm\": ");
            out->grad_norms[k] = gn ? strtod(gn + 13, NULL) : NAN;
            k++;
        }
        while (fgets(line, sizeof line, f)) { /* the evaluation after the last step */
            cr_assert(!strstr(line, "\"loss\": "), "%s", line);
            cr_assert_lt(out->nevals, MAX_EVALS);
            int e = out->nevals++;
            const char *v = strstr(line, "\"val_loss\": "), *t = strstr(line, "\"train_loss\": ");
            cr_assert_eq(sscanf(line, "{\"step\": %d", &out->eval_steps[e]), 1, "%s", line);
            out->val_losses[e] = v ? strtod(v + 12, NULL) : NAN;
            out->train_losses[e] = t ? strtod(t + 14, NULL) : NAN;
        }
        fclose(f);
        char *summary;
        size_t len;
        snprintf(path, sizeof path, "%s/summary.json", dir);
        cr_assert_eq(sl_read_file(path, &summary, &len), SL_OK, "%s", sl_last_error());
        const char *v = strstr(summary, "\"val_loss\":"), *t = strstr(summary, "\"train_loss\":");
        out->summary_val = v ? strtod(v + 11, NULL) : NAN;
        out->summary_train = t ? strtod(t + 13, NULL) : NAN;
        /* Every rank's measured peak of stashed activations and stage inputs is within 10% of
         * what the simulator predicts from the layer table (on the CPU they are equal). */
        int nranks = 0;
        for (const char *m = strstr(summary, "\"stash_bytes_measured\":"); m;
             m = strstr(m + 1, "\"stash_bytes_measured\":"), nranks++) {
            const char *pr = strstr(m, "\"stash_bytes_predicted\":");
            cr_assert_not_null(pr, "%s", summary);
            double measured = strtod(m + 23, NULL), predicted = strtod(pr + 24, NULL);
            cr_assert_gt(predicted, 0, "%s", summary);
            cr_assert_leq(fabs(measured - predicted), 0.1 * predicted,
                          "rank %d: %.0f bytes stashed, %.0f predicted", nranks, measured,
                          predicted);
        }
        cr_assert_eq(nranks, cfg.pipeline.stages, "%s", summary);
        free(summary);
        /* The plan the ranks ran is in the output too, and loads back. */
        sl_plan plan;
        cr_assert_eq(sl_plan_load(dir, &plan), SL_OK, "%s", sl_last_error());
        cr_assert_eq(plan.ranks, cfg.pipeline.stages);
        cr_assert_str_eq(plan.cfg.pipeline.schedule, cfg.pipeline.schedule);
        sl_plan_free(&plan);
        snprintf(path, sizeof path, "%s/final.safetensors", dir);
        cr_assert_eq(sl_model_init(&cfg, &out->model), SL_OK, "%s", sl_last_error());
        cr_assert_eq(sl_weights_load(&out->model, path, &out->weights), SL_OK, "%s",
                     sl_last_error());
    }
    sl_config_free(&cfg);
    return st;
}

static inline int train(const char **sets, int nsets, result *out)
{
    return train_config(base_config, sets, nsets, out);
}

static inline void result_free(result *r)
{
    sl_weights_free(&r->weights);
    sl_model_free(&r->model);
}

static inline double rel(double a, double b)
{
    return fabs(a - b) / fmax(fabs(b), 1e-3);
}

/* Losses, gradient norms (where both runs have them) and every weight within `tol` relative
 * (tol 0: bit-identical), a weight also within `atol` absolute (see gpt_on_opencl_and_mixed_devices
 * for the one test that allows any). */
static inline void assert_close(const result *got, const result *want, double tol, double atol,
                                const char *what)
{
    cr_assert_eq(got->nsteps, want->nsteps, "%s: %d steps vs %d", what, got->nsteps, want->nsteps);
    for (int k = 0; k < want->nsteps && tol; k++) {
        /* a pipeline reports the norm only when it computes it (for clipping) */
        if (isnan(want->grad_norms[k]) || isnan(got->grad_norms[k])) continue;
        cr_assert(rel(got->grad_norms[k], want->grad_norms[k]) <= tol,
                  "%s: step %d grad_norm %.9g vs %.9g", what, k, got->grad_norms[k],
                  want->grad_norms[k]);
    }
    for (int k = 0; k < want->nsteps; k++)
        cr_assert(tol ? rel(got->losses[k], want->losses[k]) <= tol
                      : got->losses[k] == want->losses[k],
                  "%s: step %d loss %.9g vs %.9g", what, k, got->losses[k], want->losses[k]);
    const sl_model *m = &want->model;
    for (int p = 0; p < m->ntensors; p++) {
        for (size_t j = 0; j < m->params[p].numel; j++) {
            float a = got->weights.data[p][j], b = want->weights.data[p][j];
            bool near = fabs((double)a - b) <= atol || rel(a, b) <= tol;
            cr_assert(tol ? near : a == b, "%s: %s[%zu] %.9g vs %.9g", what, m->params[p].name, j,
                      (double)a, (double)b);
        }
    }
}

static inline void assert_same(const result *got, const result *want, double tol, const char *what)
{
    assert_close(got, want, tol, 0.0, what);
}

/* A GPT (untied) on a text. */
static const char *gpt_config =
    "{\"model\": {\"gpt\": {\"vocab_size\": 40, \"block_size\": 8, \"n_layer\": 2, "
    "\"n_head\": 2, \"n_embd\": 16, \"tie_embeddings\": false}, \"seed\": 1},"
    " \"data\": {\"text\": \"%s\", \"val_fraction\": 0.1},"
    " \"train\": {\"steps\": 4, \"batch\": 8, \"microbatches\": 4, \"threads\": 1,"
    "  \"optimizer\": {\"name\": \"adamw\", \"lr\": 0.003}, \"lr_schedule\": {\"warmup_steps\": "
    "2}},"
    " \"pipeline\": {\"stages\": 1}, \"devices\": \"cpu\"}";

/* gpt_config on a short text written into the test's directory. */
static inline void gpt_json(char *json, size_t cap)
{
    char text[256];
    snprintf(text, sizeof text, "%s/text.txt", outdir);
    FILE *f = fopen(text, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 40; i++) fputs("To be, or not to be: that is the question. ", f);
    fclose(f);
    snprintf(json, cap, gpt_config, text);
}

#endif
