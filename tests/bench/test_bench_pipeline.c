/* `sluice bench pipeline --json` through the real executable, at its smallest (2 ranks, 4
 * micro-batches, 0.2 ms delay layers, small activations): every schedule's row holds positive
 * figures (the critical path's waits within the step), the ideal makespan and the formula's bubble
 * ratio are the known ones, and bad options are refused. Never a timing: the machines are shared
 * and noisy. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "run.h"

static double number(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    cr_assert(cJSON_IsNumber(v), "'%s' is not a number", key);
    return v->valuedouble;
}

Test(bench_pipeline, json_rows)
{
    int status;
    char *out = run_sluice(&status, "bench pipeline --ranks 2 --microbatches 4 --ms 0.2 --mib "
                                    "0.01 --steps 3 --json");
    cr_assert_eq(status, 0, "exit %d:\n%s", status, out);
    cJSON *root = cJSON_Parse(out);
    cr_assert_not_null(root, "stdout is not one JSON object:\n%s", out);
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(root, "name")), "pipeline");
    cr_assert(cJSON_GetStringValue(cJSON_GetObjectItem(root, "baseline")));
    cr_assert_gt(number(root, "ratio"), 0.0);
    cr_assert(cJSON_IsBool(cJSON_GetObjectItem(root, "met")));
    cr_assert_eq((long)number(root, "cores"), sysconf(_SC_NPROCESSORS_ONLN));
    const cJSON *rows = cJSON_GetObjectItem(root, "schedules");
    const char *names[] = {"gpipe", "1f1b", "interleaved", "looped-bfs",
                           "zb-h1", "zb-v", "dualpipev",   "chimera"};
    const int chunks[] = {1, 1, 2, 2, 1, 2, 2, 2};
    cr_assert_eq(cJSON_GetArraySize(rows), 8);
    /* D = 2, M = 4, F = 0.2, B = 0.4: (M + D - 1)(F + B) for gpipe and 1f1b; interleaved runs
     * 2 chunks of a stage each. */
    const double ideal_1f1b = 5 * 0.6;
    for (int i = 0; i < 8; i++) {
        const cJSON *r = cJSON_GetArrayItem(rows, i);
        cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(r, "schedule")), names[i]);
        cr_assert_eq((int)number(r, "chunks"), chunks[i]);
        cr_assert_gt(number(r, "step_ms"), 0.0);
        cr_assert_gt(number(r, "f_ms"), 0.0);
        cr_assert_gt(number(r, "b_ms"), 0.0);
        /* The critical path's waits lie within the step. */
        double link = number(r, "critical_path_link_wait_ms");
        double gap = number(r, "critical_path_rank_gap_ms");
        cr_assert(link >= 0 && gap >= 0 && link + gap < number(r, "step_ms"), "%g + %g of %g", link,
                  gap, number(r, "step_ms"));
        double bm = number(r, "bubble_measured");
        cr_assert(bm > -1 && bm < 1, "bubble %g", bm);
        if (i < 2) {
            cr_assert_float_eq(number(r, "ideal_ms"), ideal_1f1b, 1e-9);
            cr_assert_float_eq(number(r, "bubble_predicted"), 1.0 / 5.0, 1e-12);
        }
        if (i == 4) cr_assert_gt(number(r, "w_ms"), 0.0, "zb-h1 runs W");
    }
    cJSON_Delete(root);
    free(out);
}

Test(bench_pipeline, bad_options)
{
    int status;
    const char *bad[] = {"--ms 0", "--ranks 1", "--mib -1", "--steps x", "--what"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        free(run_sluice(&status, "bench pipeline %s 2>/dev/null", bad[i]));
        cr_assert_eq(status, 2, "'%s' gave %d", bad[i], status);
    }
    char *out = run_sluice(&status, "bench pipeline --schedules nope --ranks 2 2>&1");
    cr_assert_eq(status, 1);
    cr_assert(strstr(out, "nope"), "%s", out);
    free(out);
}
