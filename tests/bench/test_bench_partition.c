/* `sluice bench partition --json` at its smallest (the skewed MLP on 2 ranks, 2 steps, no GPT, no
 * second device): the fields bench.h promises, both plans' counts covering the model's 12 layers
 * with parameters, positive measured, predicted and simulated (for the measured costs) step
 * times, and usage errors. Never a timing. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <string.h>

#include "run.h"

static int sum_counts(const char *text)
{
    int sum = 0;
    for (const char *p = text; *p;) {
        char *end;
        sum += (int)strtol(p, &end, 10);
        p = *end ? end + 1 : end;
    }
    return sum;
}

Test(bench_partition, json_row)
{
    int status;
    char *out = run_sluice(&status, "bench partition --ranks 2 --steps 2 --no-gpt "
                                    "--no-two-device --json");
    cr_assert_eq(status, 0, "exit %d:\n%s", status, out);
    cJSON *root = cJSON_Parse(out);
    cr_assert_not_null(root, "%s", out);
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(root, "name")), "partition");
    cr_assert(cJSON_GetStringValue(cJSON_GetObjectItem(root, "baseline")));
    cr_assert_gt(cJSON_GetNumberValue(cJSON_GetObjectItem(root, "ratio")), 0.0);
    const cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "rows"), 0);
    cr_assert_not_null(row);
    const char *keys[] = {"step_uniform_s",
                          "step_time_s",
                          "predicted_uniform_s",
                          "predicted_time_s",
                          "simulated_for_measured_uniform_s",
                          "simulated_for_measured_time_s"};
    for (int k = 0; k < 6; k++)
        cr_assert_gt(cJSON_GetNumberValue(cJSON_GetObjectItem(row, keys[k])), 0.0, "%s", keys[k]);
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(row, "counts_uniform")), "6,6");
    cr_assert_eq(sum_counts(cJSON_GetStringValue(cJSON_GetObjectItem(row, "counts_time"))), 12);
    cJSON_Delete(root);
    free(out);
}

Test(bench_partition, bad_options)
{
    int status;
    const char *bad[] = {"--ranks 1", "--ranks 13", "--steps 1", "--what"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        free(run_sluice(&status, "bench partition %s 2>/dev/null", bad[i]));
        cr_assert_eq(status, 2, "'%s' gave %d", bad[i], status);
    }
}
