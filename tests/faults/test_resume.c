/* Checkpoints that resume: a run stopped by a failing rank and resumed with --resume gives the
 * metrics and final weights of the uninterrupted run bit for bit (a digits MLP with Adam, clipping
 * and a learning-rate schedule; a tied GPT with AdamW and evaluations), and within 1e-5 under
 * another stage count and schedule; a truncated or half-written checkpoint is passed over for the
 * one before it; old checkpoints are pruned to output.keep_checkpoints. */
#define _GNU_SOURCE
#include <math.h>
#include <sys/stat.h>

#include "backends/backend.h"
#include "tests/backends/require_devices.h"
#include "tests/faults/faults.h"

TestSuite(resume, .init = faults_setup, .fini = faults_teardown, .timeout = 0);

static const char *mlp =
    "{\"model\": {\"inputs\": 64, \"layers\": [\"linear:32\", \"tanh\", \"linear:24\", \"relu\","
    " \"linear:16\", \"gelu\", \"linear:10\"], \"loss\": \"cross_entropy\", \"seed\": 3},"
    " \"data\": {\"path\": \"samples/digits/digits.csv.gz\", \"scale\": 0.0625, \"shuffle\": true,"
    "  \"seed\": 5},"
    " \"train\": {\"steps\": 8, \"batch\": 16, \"microbatches\": 4, \"threads\": 1, \"grad_clip\": "
    "1.0,"
    "  \"optimizer\": {\"name\": \"adam\", \"lr\": 0.01},"
    "  \"lr_schedule\": {\"warmup_steps\": 2, \"decay_steps\": 7}},"
    " \"pipeline\": {\"stages\": 2, \"schedule\": \"1f1b\"}, \"devices\": \"cpu\","
    " \"output\": {\"checkpoint_interval\": 3}}";

static const char *gpt_template =
    "{\"model\": {\"gpt\": {\"vocab_size\": 40, \"block_size\": 8, \"n_layer\": 2, "
    "\"n_head\": 2, \"n_embd\": 16, \"tie_embeddings\": true}, \"seed\": 1},"
    " \"data\": {\"text\": \"%s\", \"val_fraction\": 0.1},"
    " \"train\": {\"steps\": 6, \"batch\": 8, \"microbatches\": 4, \"threads\": 1, "
    "  \"grad_clip\": 1.0, \"optimizer\": {\"name\": \"adamw\", \"lr\": 0.003},"
    "  \"lr_schedule\": {\"warmup_steps\": 2}},"
    " \"eval\": {\"interval\": 2, \"iters\": 2},"
    " \"pipeline\": {\"stages\": 2}, \"devices\": \"cpu\", \"output\": {\"checkpoint_interval\": "
    "2}}";

static void gpt_json(char *json, size_t cap)
{
    char text[512];
    fpath(text, sizeof text, "text.txt");
    FILE *f = fopen(text, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 40; i++) fputs("To be, or not to be: that is the question. ", f);
    fclose(f);
    snprintf(json, cap, gpt_template, text);
}

/* A run that a failing rank stops at `fail_at` (RANK:STEP), after some checkpoints. */
static void run_failing(const char *json, const char *const *sets, int nsets, const char *dir,
                        const char *fail_at)
{
    setenv("SLUICE_FAIL_AT", fail_at, 1);
    int st = run_train(json, sets, nsets, dir, false, NULL);
    unsetenv("SLUICE_FAIL_AT");
    cr_assert_eq(st, SL_EPEER, "the injected failure stops the run: %s", sl_last_error());
}

static void copy_dir(const char *from, const char *to)
{
    char a[512], b[512], cmd[2200];
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", fpath(a, sizeof a, from), fpath(b, sizeof b, to));
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static void assert_same_run(const char *got, const char *want)
{
    char *m1 = metrics_untimed(got), *m2 = metrics_untimed(want);
    cr_assert_str_eq(m1, m2, "metrics of %s and %s differ", got, want);
    free(m1);
    free(m2);
    char a[512], b[512], ra[1024], rb[1024];
    snprintf(ra, sizeof ra, "%s/final.safetensors", got);
    snprintf(rb, sizeof rb, "%s/final.safetensors", want);
    cr_assert(same_file(fpath(a, sizeof a, ra), fpath(b, sizeof b, rb)),
              "final weights of %s and %s differ", got, want);
}

static bool exists(const char *dir, const char *name)
{
    char p[1024], rel[512];
    snprintf(rel, sizeof rel, "%s/%s", dir, name);
    struct stat st;
    return stat(fpath(p, sizeof p, rel), &st) == 0;
}

Test(resume, mlp_adam_resumes_bit_identical)
{
    cr_assert_eq(run_train(mlp, NULL, 0, "mlp_a", false, NULL), SL_OK, "%s", sl_last_error());
    run_failing(mlp, NULL, 0, "mlp_b", "1:7");
    cr_assert(exists("mlp_b", "checkpoint-3/manifest.json") &&
              exists("mlp_b", "checkpoint-6/manifest.json"));
    cr_assert(!exists("mlp_b", "final.safetensors"), "a failed run writes no final weights");
    copy_dir("mlp_b", "mlp_trunc");
    copy_dir("mlp_b", "mlp_half");
    sl_train_summary sum;
    cr_assert_eq(run_train(mlp, NULL, 0, "mlp_b", true, &sum), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sum.steps, 8);
    assert_same_run("mlp_b", "mlp_a");

    /* A checkpoint cut short (its manifest promises more bytes than the file has) and one whose
     * manifest was never written are passed over for checkpoint-3. */
    char p[1024];
    cr_assert_eq(truncate(fpath(p, sizeof p, "mlp_trunc/checkpoint-6/optimizer.safetensors"), 100),
                 0);
    cr_assert_eq(unlink(fpath(p, sizeof p, "mlp_half/checkpoint-6/manifest.json")), 0);
    cr_assert_eq(run_train(mlp, NULL, 0, "mlp_trunc", true, NULL), SL_OK, "%s", sl_last_error());
    assert_same_run("mlp_trunc", "mlp_a");
    cr_assert_eq(run_train(mlp, NULL, 0, "mlp_half", true, NULL), SL_OK, "%s", sl_last_error());
    assert_same_run("mlp_half", "mlp_a");
    /* The resumed runs wrote checkpoint-6 again, whole. */
    cr_assert(exists("mlp_half", "checkpoint-6/manifest.json"));
}

Test(resume, gpt_adamw_resumes_bit_identical)
{
    char json[2048];
    gpt_json(json, sizeof json);
    cr_assert_eq(run_train(json, NULL, 0, "gpt_a", false, NULL), SL_OK, "%s", sl_last_error());
    run_failing(json, NULL, 0, "gpt_b", "0:5");
    cr_assert(exists("gpt_b", "checkpoint-4/manifest.json"));
    cr_assert_eq(run_train(json, NULL, 0, "gpt_b", true, NULL), SL_OK, "%s", sl_last_error());
    assert_same_run("gpt_b", "gpt_a");
}

/* Each step's loss and every final weight within `tol` relative (1e-3 absolute floor). */
static void assert_close_run(const char *got, const char *want, double tol)
{
    char *m1 = read_output(got, "metrics.jsonl"), *m2 = read_output(want, "metrics.jsonl");
    cr_assert(m1 && m2);
    int lines = 0;
    for (char *a = m1, *b = m2; *a && *b; lines++) {
        int sa, sb;
        double la, lb;
        cr_assert_eq(sscanf(a, "{\"step\": %d, \"loss\": %lf", &sa, &la), 2, "%s", a);
        cr_assert_eq(sscanf(b, "{\"step\": %d, \"loss\": %lf", &sb, &lb), 2, "%s", b);
        cr_assert_eq(sa, sb);
        cr_assert(fabs(la - lb) <= tol * fmax(fabs(lb), 1e-3), "step %d: loss %.9g vs %.9g", sa, la,
                  lb);
        a = strchr(a, '\n') + 1;
        b = strchr(b, '\n') + 1;
    }
    cr_assert_eq(lines, 8);
    free(m1);
    free(m2);
    sl_config cfg;
    cr_assert_eq(sl_config_parse(mlp, ".", NULL, 0, &cfg), SL_OK);
    sl_model m;
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK);
    sl_weights wa, wb;
    char pa[1024], pb[1024], ra[1024], rb[1024];
    snprintf(ra, sizeof ra, "%s/final.safetensors", got);
    snprintf(rb, sizeof rb, "%s/final.safetensors", want);
    cr_assert_eq(sl_weights_load(&m, fpath(pa, sizeof pa, ra), &wa), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_weights_load(&m, fpath(pb, sizeof pb, rb), &wb), SL_OK, "%s", sl_last_error());
    for (int p = 0; p < m.ntensors; p++)
        for (size_t j = 0; j < m.params[p].numel; j++) {
            double a = wa.data[p][j], b = wb.data[p][j];
            cr_assert(fabs(a - b) <= tol * fmax(fabs(b), 1e-3), "%s[%zu] %.9g vs %.9g",
                      m.params[p].name, j, a, b);
        }
    sl_weights_free(&wa);
    sl_weights_free(&wb);
    sl_model_free(&m);
    sl_config_free(&cfg);
}

Test(resume, under_another_stage_count_and_schedule)
{
    cr_assert_eq(run_train(mlp, NULL, 0, "other_a", false, NULL), SL_OK, "%s", sl_last_error());
    run_failing(mlp, NULL, 0, "other_one", "0:5");
    copy_dir("other_one", "other_four");
    const char *one[] = {"pipeline.stages=1", "pipeline.schedule=\"gpipe\""};
    cr_assert_eq(run_train(mlp, one, 2, "other_one", true, NULL), SL_OK, "%s", sl_last_error());
    assert_close_run("other_one", "other_a", 1e-5);
    const char *four[] = {"pipeline.stages=2", "pipeline.schedule=\"interleaved\"",
                          "pipeline.chunks=2"};
    cr_assert_eq(run_train(mlp, four, 3, "other_four", true, NULL), SL_OK, "%s", sl_last_error());
    assert_close_run("other_four", "other_a", 1e-5);
}

Test(resume, refusals)
{
    /* Nothing to resume from. */
    cr_assert_eq(run_train(mlp, NULL, 0, "none", true, NULL), SL_ECONFIG);
    cr_assert(strstr(sl_last_error(), "no complete checkpoint"), "%s", sl_last_error());
    run_failing(mlp, NULL, 0, "refuse", "1:4");
    /* A fresh run into a directory with an earlier run's checkpoints. */
    cr_assert_eq(run_train(mlp, NULL, 0, "refuse", false, NULL), SL_ECONFIG);
    cr_assert(strstr(sl_last_error(), "checkpoint-3") && strstr(sl_last_error(), "--resume"), "%s",
              sl_last_error());
    /* Another optimizer or batch than the checkpoint's. */
    const char *sgd[] = {"train.optimizer={\"name\": \"sgd\", \"lr\": 0.1}"};
    cr_assert_eq(run_train(mlp, sgd, 1, "refuse", true, NULL), SL_ECONFIG);
    cr_assert(strstr(sl_last_error(), "adam"), "%s", sl_last_error());
    const char *batch[] = {"train.batch=32"};
    cr_assert_eq(run_train(mlp, batch, 1, "refuse", true, NULL), SL_ECONFIG);
    cr_assert(strstr(sl_last_error(), "train.batch 16"), "%s", sl_last_error());
}

Test(resume, keeps_the_newest_checkpoints)
{
    const char *sets[] = {"output.checkpoint_interval=2", "output.keep_checkpoints=2",
                          "train.steps=9"};
    cr_assert_eq(run_train(mlp, sets, 3, "keep", false, NULL), SL_OK, "%s", sl_last_error());
    cr_assert(!exists("keep", "checkpoint-2") && !exists("keep", "checkpoint-4"));
    cr_assert(exists("keep", "checkpoint-6/manifest.json") &&
              exists("keep", "checkpoint-8/manifest.json"));
}

/* Another device assignment: the checkpoint of a cpu run goes on with one rank on OpenCL. */
Test(resume, under_another_device_assignment)
{
    const char *ocl = sl_test_first_device("opencl");
    if (!ocl) sl_test_no_device("opencl", sl_device_list_problems());
    cr_assert_eq(run_train(mlp, NULL, 0, "dev_a", false, NULL), SL_OK, "%s", sl_last_error());
    run_failing(mlp, NULL, 0, "dev_b", "1:4");
    char devices[160];
    snprintf(devices, sizeof devices, "devices=[\"%s\", \"cpu\"]", ocl);
    const char *sets[] = {devices};
    cr_assert_eq(run_train(mlp, sets, 1, "dev_b", true, NULL), SL_OK, "%s", sl_last_error());
    assert_close_run("dev_b", "dev_a", 1e-5);
}
