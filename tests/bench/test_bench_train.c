/* `sluice bench train --json` run as a subprocess of the sluice tool: the fields bench.h promises
 * (name, baseline, ratio), positive raw figures, a missing PyTorch reported as null rather than a
 * number, and usage errors. No timing is asserted: the machines are shared and noisy. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"

/* Runs `sluice bench train ARGS` and returns its stdout (malloc'd) and exit status. */
static char *run_bench(const char *args, int *status)
{
    return run_sluice(status, "bench train %s", args);
}

static double positive(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    cr_assert(cJSON_IsNumber(v), "'%s' is not a number", key);
    cr_assert_gt(v->valuedouble, 0.0, "'%s' is %g", key, v->valuedouble);
    return v->valuedouble;
}

/* Checks everything but the PyTorch figures; returns the parsed object. */
static cJSON *check_common(const char *out, int nranks, const int *ranks)
{
    cJSON *root = cJSON_Parse(out);
    cr_assert_not_null(root, "stdout is not one JSON object:\n%s", out);
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(root, "name")), "train");
    const char *baseline = cJSON_GetStringValue(cJSON_GetObjectItem(root, "baseline"));
    cr_assert(baseline && *baseline, "no baseline");
    cr_assert(cJSON_HasObjectItem(root, "ratio"), "no ratio");
    const cJSON *digits = cJSON_GetObjectItem(root, "digits");
    cr_assert_not_null(digits);
    positive(digits, "samples_per_s");
    positive(digits, "final_loss");
    const cJSON *runs = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "pipeline"), "runs");
    cr_assert_eq(cJSON_GetArraySize(runs), nranks + 1);
    for (int i = 0; i <= nranks; i++) {
        const cJSON *r = cJSON_GetArrayItem(runs, i);
        cr_assert_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(r, "ranks")),
                     i ? ranks[i - 1] : 1);
        positive(r, "samples_per_s");
        double s = positive(r, "speedup");
        if (i == 0) cr_assert_float_eq(s, 1.0, 1e-12);
    }
    return root;
}

Test(bench_train, json_fields_and_positive_figures)
{
    int status;
    /* --ranks 2 only: tiny 4-rank runs on 2 cores hit a race in the DONE exchange at the end of
     * a run (a rank sees its neighbour disconnect before that neighbour's DONE), which the
     * pipeline suite covers; this suite is about the bench. */
    char *out = run_bench("--quick --steps 4 --pipe-steps 2 --width 32 --ranks 2 --json", &status);
    cr_assert_eq(status, 0, "exit %d:\n%s", status, out);
    cJSON *root = check_common(out, 1, (const int[]){2});
    const cJSON *digits = cJSON_GetObjectItem(root, "digits");
    const cJSON *ratio = cJSON_GetObjectItem(root, "ratio");
    if (cJSON_IsNull(cJSON_GetObjectItem(digits, "torch"))) {
        /* No PyTorch here: said so, and no ratio against nothing. */
        cr_assert(cJSON_IsNull(ratio));
        cr_assert_not_null(cJSON_GetStringValue(cJSON_GetObjectItem(digits, "torch_note")));
    } else {
        double sps = positive(digits, "samples_per_s");
        double torch = positive(digits, "torch_samples_per_s");
        cr_assert(cJSON_IsNumber(ratio));
        cr_assert_float_eq(ratio->valuedouble, sps / torch, 1e-9 * sps / torch);
    }
    cJSON_Delete(root);
    free(out);
}

Test(bench_train, no_python_means_no_ratio)
{
    int status;
    char *out = run_bench("--quick --steps 3 --pipe-steps 2 --width 16 --ranks 2 "
                          "--python /nonexistent/python3 --json",
                          &status);
    cr_assert_eq(status, 0, "exit %d:\n%s", status, out);
    cJSON *root = check_common(out, 1, (const int[]){2});
    const cJSON *digits = cJSON_GetObjectItem(root, "digits");
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(root, "ratio")));
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(digits, "torch")));
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(digits, "torch_samples_per_s")));
    const char *note = cJSON_GetStringValue(cJSON_GetObjectItem(digits, "torch_note"));
    cr_assert(note && strstr(note, "/nonexistent/python3"), "note: %s", note ? note : "(none)");
    cJSON_Delete(root);
    free(out);
}

Test(bench_train, usage_errors)
{
    int status;
    free(run_bench("--steps 1 2>/dev/null", &status));
    cr_assert_eq(status, 2);
    free(run_bench("--ranks 3 2>/dev/null", &status));
    cr_assert_eq(status, 2);
    free(run_bench("--frobnicate 2>/dev/null", &status));
    cr_assert_eq(status, 2);
    char *out = run_bench("--help", &status);
    cr_assert_eq(status, 0);
    cr_assert(strstr(out, "--quick") && strstr(out, "--json"));
    free(out);
}
