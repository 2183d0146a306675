/* `sluice bench train --model gpt --quick --json` run as a subprocess of the sluice tool: the
 * fields bench.h promises (name, baseline, ratio), the target and whether it is met, positive raw
 * figures, the pipeline row (2 ranks against 1: runs, bubbles, speed-up and its target), a missing
 * PyTorch reported as null rather than a number, and usage errors. No timing is asserted: the
 * machines are shared and noisy. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"

static double positive(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    cr_assert(cJSON_IsNumber(v), "'%s' is not a number", key);
    cr_assert_gt(v->valuedouble, 0.0, "'%s' is %g", key, v->valuedouble);
    return v->valuedouble;
}

/* Checks everything but the PyTorch figures; returns the parsed object. */
static cJSON *check_common(const char *out, int steps)
{
    cJSON *root = cJSON_Parse(out);
    cr_assert_not_null(root, "stdout is not one JSON object:\n%s", out);
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(root, "name")), "train-gpt");
    const char *baseline = cJSON_GetStringValue(cJSON_GetObjectItem(root, "baseline"));
    cr_assert(baseline && *baseline, "no baseline");
    cr_assert(cJSON_HasObjectItem(root, "ratio"), "no ratio");
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(root, "target")),
                     "at least 1.5x PyTorch's tokens per second");
    cr_assert_float_eq(positive(root, "target_ratio"), 1.5, 1e-12);
    cr_assert(cJSON_HasObjectItem(root, "target_met"), "no target_met");
    const cJSON *m = cJSON_GetObjectItem(root, "model");
    cr_assert_not_null(m, "no model");
    cr_assert_eq((int)positive(m, "vocab_size"), 65);
    cr_assert_eq((int)positive(m, "block_size"), 64);
    cr_assert_eq((int)positive(m, "n_layer"), 4);
    cr_assert_eq((int)positive(m, "n_head"), 4);
    cr_assert_eq((int)positive(m, "n_embd"), 128);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(m, "bias")));
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(m, "tie_embeddings")));
    cr_assert_eq((int)positive(root, "batch"), 12);
    cr_assert_eq((int)positive(root, "microbatches"), 1);
    cr_assert_eq((int)positive(root, "tokens_per_step"), 12 * 64);
    cr_assert_eq((int)positive(root, "threads_per_rank"), 1);
    cr_assert_eq((int)positive(root, "steps"), steps);
    cr_assert_eq((int)positive(root, "rounds"), 1);
    double tps = positive(root, "tokens_per_s");
    cr_assert_float_eq(tps, 64 * positive(root, "samples_per_s"), 1e-9 * tps);
    const cJSON *rounds = cJSON_GetObjectItem(root, "tokens_per_s_rounds");
    cr_assert_eq(cJSON_GetArraySize(rounds), 1);
    cr_assert_float_eq(cJSON_GetNumberValue(cJSON_GetArrayItem(rounds, 0)), tps, 1e-9 * tps);
    double loss = positive(root, "final_loss");
    cr_assert(loss < 10.0, "final loss %g: the model trains from ln(65) = 4.17", loss);
    return root;
}

/* The pipeline row (--quick: 1 timed step, n_embd 128): 1 rank and 2 ranks, their tokens/s,
 * bubbles and the speed-up with its target; no timing is asserted. */
static void check_pipeline(const cJSON *root)
{
    const cJSON *p = cJSON_GetObjectItem(root, "pipeline");
    cr_assert(cJSON_IsObject(p), "no pipeline object");
    const cJSON *m = cJSON_GetObjectItem(p, "model");
    cr_assert_eq((int)positive(m, "n_layer"), 8);
    cr_assert_eq((int)positive(m, "block_size"), 128);
    cr_assert_eq((int)positive(m, "n_head"), 8);
    cr_assert_eq((int)positive(m, "n_embd"), 128);
    cr_assert_eq((int)positive(m, "vocab_size"), 65);
    cr_assert_eq((int)positive(p, "batch"), 8);
    cr_assert_eq((int)positive(p, "microbatches"), 8);
    cr_assert_eq((int)positive(p, "steps"), 1);
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(p, "schedule")), "1f1b");
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(p, "target")),
                     "at least 1.6x (the bubble allows 1.88x)");
    cr_assert_float_eq(positive(p, "target_ratio"), 1.6, 1e-12);
    const cJSON *runs = cJSON_GetObjectItem(p, "runs");
    cr_assert_eq(cJSON_GetArraySize(runs), 2);
    double tps[2];
    for (int k = 0; k < 2; k++) {
        const cJSON *r = cJSON_GetArrayItem(runs, k);
        cr_assert_eq((int)positive(r, "ranks"), k + 1);
        tps[k] = positive(r, "tokens_per_s");
        cr_assert_float_eq(tps[k], 128 * positive(r, "samples_per_s"), 1e-9 * tps[k]);
        cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r, "tokens_per_s_rounds")), 1);
        cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(r, "bubble_measured")));
        cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(r, "bubble_predicted")));
    }
    double ratio = positive(p, "ratio");
    cr_assert_float_eq(ratio, tps[1] / tps[0], 1e-9 * ratio);
    cr_assert(cJSON_IsBool(cJSON_GetObjectItem(p, "target_met")));
    cr_assert_eq(cJSON_IsTrue(cJSON_GetObjectItem(p, "target_met")), ratio >= 1.6);
}

/* No PyTorch figure: no ratio, no verdict on the target, and a note that says why. */
static void check_no_torch(const cJSON *root, const char *why)
{
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(root, "ratio")));
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(root, "target_met")));
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(root, "torch_tokens_per_s")));
    const char *note = cJSON_GetStringValue(cJSON_GetObjectItem(root, "torch_note"));
    cr_assert(note && (!why || strstr(note, why)), "note: %s", note ? note : "(none)");
}

Test(bench_train_gpt, quick_json)
{
    int status;
    char *out = run_sluice(&status, "bench train --model gpt --quick --json");
    cr_assert_eq(status, 0, "exit %d:\n%s", status, out);
    cJSON *root = check_common(out, 3);
    check_pipeline(root);
    if (cJSON_IsNull(cJSON_GetObjectItem(root, "torch"))) {
        check_no_torch(root, NULL); /* no PyTorch for /usr/bin/python3 here */
    } else {
        double tps = positive(root, "tokens_per_s");
        double torch = positive(root, "torch_tokens_per_s");
        const cJSON *ratio = cJSON_GetObjectItem(root, "ratio");
        cr_assert(cJSON_IsNumber(ratio));
        cr_assert_float_eq(ratio->valuedouble, tps / torch, 1e-9 * tps / torch);
        cr_assert(cJSON_IsBool(cJSON_GetObjectItem(root, "target_met")));
        cr_assert_eq(cJSON_IsTrue(cJSON_GetObjectItem(root, "target_met")),
                     ratio->valuedouble >= 1.5);
        positive(root, "torch_final_loss");
        cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(root, "torch_tokens_per_s_rounds")), 1);
        cr_assert_eq((int)positive(cJSON_GetObjectItem(root, "model"), "params"), 809856,
                     "nanoGPT's count with the tied matrix once");
    }
    cJSON_Delete(root);
    free(out);
}

Test(bench_train_gpt, no_torch)
{
    int status;
    char *out = run_sluice(&status, "bench train --model gpt --quick --steps 2 --no-torch --json");
    cr_assert_eq(status, 0, "exit %d:\n%s", status, out);
    cJSON *root = check_common(out, 2);
    check_no_torch(root, "--no-torch");
    check_pipeline(root);
    cJSON_Delete(root);
    free(out);
}

Test(bench_train_gpt, no_python_means_no_ratio)
{
    int status;
    char *out = run_sluice(
        &status, "bench train --model gpt --quick --steps 2 --python /nonexistent/python3 --json");
    cr_assert_eq(status, 0, "exit %d:\n%s", status, out);
    cJSON *root = check_common(out, 2);
    check_no_torch(root, "/nonexistent/python3");
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(root, "torch")));
    cJSON_Delete(root);
    free(out);
}

Test(bench_train_gpt, table_and_usage)
{
    int status;
    char *out = run_sluice(&status, "bench train --model gpt --quick --steps 2 --no-torch");
    cr_assert_eq(status, 0, "exit %d:\n%s", status, out);
    cr_assert(strstr(out, "tokens/s") && strstr(out, "at least 1.5x PyTorch's tokens per second"),
              "%s", out);
    cr_assert(strstr(out, "pipeline:") && strstr(out, "at least 1.6x (the bubble allows 1.88x)"),
              "%s", out);
    free(out);
    out = run_sluice(&status, "bench train --model gpt --quick --steps 2 --no-torch --pipe-steps 0 "
                              "--json");
    cr_assert_eq(status, 0, "exit %d:\n%s", status, out);
    cJSON *root = cJSON_Parse(out);
    cr_assert_not_null(root, "%s", out);
    cr_assert_null(cJSON_GetObjectItem(root, "pipeline"), "--pipe-steps 0 has no pipeline row");
    cJSON_Delete(root);
    free(out);
    free(run_sluice(&status, "bench train --model gpt --pipe-embd 100 2>/dev/null"));
    cr_assert_eq(status, 2);
    free(run_sluice(&status, "bench train --model gpt --shakespeare-config /nonexistent.json "
                             "--shakespeare --no-torch 2>/dev/null"));
    cr_assert_eq(status, 1);
    free(run_sluice(&status, "bench train --model gpt --steps 0 2>/dev/null"));
    cr_assert_eq(status, 2);
    free(run_sluice(&status, "bench train --model gpt --rounds 17 2>/dev/null"));
    cr_assert_eq(status, 2);
    free(run_sluice(&status, "bench train --model frobnicate 2>/dev/null"));
    cr_assert_eq(status, 2);
    out = run_sluice(&status, "bench train --model gpt --help");
    cr_assert_eq(status, 0);
    cr_assert(strstr(out, "--quick") && strstr(out, "--json") && strstr(out, "1.5x") &&
                  strstr(out, "--pipe-steps") && strstr(out, "--shakespeare"),
              "%s", out);
    free(out);
    out = run_sluice(&status, "bench train --help");
    cr_assert_eq(status, 0);
    cr_assert(strstr(out, "--model"), "%s", out);
    free(out);
}
