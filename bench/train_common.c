/* What the files of `sluice bench train` share (bench/train_impl.h): training a config through
 * sluice train's machinery, running a PyTorch baseline script and taking its last JSON line, and
 * the JSON helpers of the results. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/train_impl.h"
#include "core/core.h"
#include "runtime/config/config.h"

int sl__bench_train_config(cJSON *root, const char *dir, const char *what, int ranks,
                           sl_train_summary *sum)
{
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) return sl_fail(SL_ENOMEM, "bench train: cannot build the %s config", what);
    sl_config cfg;
    int rc = sl_config_parse(text, dir, NULL, 0, &cfg);
    free(text);
    if (rc != SL_OK) return rc;
    sl_train_options opt = {.progress = 0};
    rc = sl_train(&cfg, &opt, sum);
    sl_config_free(&cfg);
    if (rc != SL_OK)
        return sl_fail_context(rc, "bench train: %s on %d rank%s", what, ranks,
                               ranks == 1 ? "" : "s");
    if (!(sum->samples_per_s > 0))
        return sl_fail(SL_EINTERNAL, "bench train: %s on %d rank%s measured no samples/s", what,
                       ranks, ranks == 1 ? "" : "s");
    return SL_OK;
}

int sl__bench_train_torch_prepare(const char *python, int no_torch, const char *tmp,
                                  const char *name, const unsigned char *text, size_t size,
                                  char *script, size_t script_size, char *note, size_t note_size)
{
    if (no_torch) {
        snprintf(note, note_size, "skipped (--no-torch)");
        return 0;
    }
    if (access(python, X_OK) != 0) {
        snprintf(note, note_size, "%s not found: no PyTorch baseline", python);
        return 0;
    }
    snprintf(script, script_size, "%s/%s", tmp, name);
    FILE *f = fopen(script, "w");
    if (!f || fwrite(text, 1, size, f) != size) {
        if (f) fclose(f);
        snprintf(note, note_size, "cannot write the PyTorch script into %.400s", tmp);
        return 0;
    }
    fclose(f);
    return 1;
}

int sl__bench_train_last_json(const char *cmd, const char *python, size_t line_size, cJSON **obj,
                              int *status, char *note, size_t note_size)
{
    *obj = NULL;
    *status = 0;
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(note, note_size, "cannot start %s", python);
        return -1;
    }
    char line[16384], last[16384] = "";
    int n = (int)(line_size < sizeof line ? line_size : sizeof line);
    while (fgets(line, n, p))
        if (line[0] == '{') snprintf(last, (size_t)n, "%s", line);
    *status = pclose(p);
    *obj = last[0] ? cJSON_Parse(last) : NULL;
    return 0;
}

double sl__bench_train_torch_figure(const char *cmd, const char *python, const char *key,
                                    cJSON **obj, char *note, size_t note_size)
{
    int status;
    if (sl__bench_train_last_json(cmd, python, 4096, obj, &status, note, note_size) != 0) return 0;
    if (!*obj) {
        snprintf(note, note_size, "%s exited with status %d and no result", python, status);
        return 0;
    }
    const char *err = cJSON_GetStringValue(cJSON_GetObjectItem(*obj, "error"));
    if (cJSON_IsNull(cJSON_GetObjectItem(*obj, "torch")) || err) {
        snprintf(note, note_size, "%s has no PyTorch (%s)", python, err ? err : "?");
        return 0;
    }
    double v = cJSON_GetNumberValue(cJSON_GetObjectItem(*obj, key));
    if (!(v > 0)) {
        snprintf(note, note_size, "the PyTorch script measured nothing");
        return 0;
    }
    return v;
}

cJSON *sl__bench_train_number_or_null(double v)
{
    return v > 0 && isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

cJSON *sl__bench_train_rounds_array(const double *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, sl__bench_train_number_or_null(v[i]));
    return a;
}

cJSON *sl__bench_train_bubble_or_null(double v)
{
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}
