/* Checkpoints on disk: the manifest that makes one complete, and finding the newest complete one
 * (see exec.h). Writing the tensors is the coordinator's (runtime/train/checkpoint.c). */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"
#include "runtime/config/config.h"
#include "runtime/exec/exec.h"
#include "runtime/plan/plan.h"

static const char *const files[] = {"model.safetensors", "optimizer.safetensors"};

static const char *optimizer_name(enum sl_optimizer_kind k)
{
    return k == SL_OPT_SGD ? "sgd" : k == SL_OPT_ADAM ? "adam" : "adamw";
}

int sl_checkpoint_write_manifest(const char *dir, const sl_config *cfg, int step, int evaluations)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", "sluice checkpoint 1");
    cJSON_AddNumberToObject(o, "step", step);
    cJSON *opt = cJSON_AddObjectToObject(o, "optimizer");
    cJSON_AddStringToObject(opt, "name", optimizer_name(cfg->train.optimizer.kind));
    cJSON_AddNumberToObject(opt, "step", step);
    cJSON *data = cJSON_AddObjectToObject(o, "data");
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, cfg->data.seed);
    cJSON_AddStringToObject(data, "seed", seed); /* a string: JSON numbers lose 64-bit values */
    cJSON_AddBoolToObject(data, "shuffle", cfg->data.shuffle);
    cJSON_AddNumberToObject(data, "batch", cfg->train.batch);
    cJSON_AddNumberToObject(data, "next_sample", (double)step * cfg->train.batch);
    cJSON_AddNumberToObject(o, "evaluations", evaluations);
    cJSON *list = cJSON_AddArrayToObject(o, "files");
    int rc = SL_OK;
    for (size_t i = 0; i < SL_ARRAY_LEN(files) && rc == SL_OK; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        struct stat st;
        if (stat(path, &st) != 0) {
            rc = sl_fail(SL_EIO, "checkpoint %s: %s: %s", dir, files[i], strerror(errno));
            break;
        }
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "name", files[i]);
        cJSON_AddNumberToObject(f, "bytes", (double)st.st_size);
        cJSON_AddItemToArray(list, f);
    }
    char *text = rc == SL_OK ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (rc != SL_OK) return rc;
    if (!text) return sl_fail(SL_ENOMEM, "out of memory writing a checkpoint manifest");
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    size_t len = strlen(text);
    text[len] = '\n';
    rc = sl_write_file(path, text, len + 1, 0644);
    free(text);
    return rc;
}

int sl_checkpoint_read(const char *dir, sl_checkpoint *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->dir, sizeof out->dir, "%s", dir);
    char path[4200], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    struct stat st;
    if (stat(path, &st) != 0)
        return sl_fail(SL_EFORMAT, "checkpoint %s has no manifest.json (it was not finished)", dir);
    SL_TRY(sl_read_file(path, &text, &len));
    cJSON *o = cJSON_ParseWithLength(text, len);
    free(text);
    int rc = SL_OK;
    const cJSON *opt = cJSON_GetObjectItem(o, "optimizer"), *data = cJSON_GetObjectItem(o, "data");
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(opt, "name"));
    const char *seed = cJSON_GetStringValue(cJSON_GetObjectItem(data, "seed"));
    out->step = sl_to_int(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "step")), -1);
    out->evaluations = sl_to_int(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "evaluations")), -1);
    out->batch = sl_to_int(cJSON_GetNumberValue(cJSON_GetObjectItem(data, "batch")), -1);
    if (!o || !name || !seed || out->step < 1 || out->evaluations < 0 || out->batch < 1)
        rc = sl_fail(SL_EFORMAT, "checkpoint %s: manifest.json is malformed", dir);
    if (rc == SL_OK) {
        snprintf(out->optimizer, sizeof out->optimizer, "%s", name);
        out->data_seed = strtoull(seed, NULL, 10);
    }
    /* Every file the manifest lists, whole. */
    for (size_t i = 0; rc == SL_OK && i < SL_ARRAY_LEN(files); i++) {
        const cJSON *f;
        double bytes = -1;
        cJSON_ArrayForEach(f, cJSON_GetObjectItem(o, "files"))
        {
            const char *n = cJSON_GetStringValue(cJSON_GetObjectItem(f, "name"));
            if (n && !strcmp(n, files[i]))
                bytes = cJSON_GetNumberValue(cJSON_GetObjectItem(f, "bytes"));
        }
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (!(bytes >= 0))
            rc =
                sl_fail(SL_EFORMAT, "checkpoint %s: manifest.json does not list %s", dir, files[i]);
        else if (stat(path, &st) != 0)
            rc = sl_fail(SL_EFORMAT, "checkpoint %s: %s is missing", dir, files[i]);
        else if ((double)st.st_size != bytes)
            rc = sl_fail(SL_EFORMAT, "checkpoint %s: %s holds %lld bytes, the manifest says %.0f",
                         dir, files[i], (long long)st.st_size, bytes);
    }
    cJSON_Delete(o);
    return rc;
}

/* The step of a directory entry named checkpoint-<digits>, or -1. */
static int step_of(const char *name)
{
    if (strncmp(name, "checkpoint-", 11) != 0) return -1;
    const char *d = name + 11;
    if (!*d || strlen(d) > 9) return -1;
    for (const char *c = d; *c; c++)
        if (*c < '0' || *c > '9') return -1;
    return atoi(d);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int sl_checkpoint_list(const char *output_dir, int *steps, int cap, int *n)
{
    *n = 0;
    DIR *d = opendir(output_dir);
    if (!d) {
        if (errno == ENOENT) return SL_OK;
        return sl_fail(SL_EIO, "cannot read '%s': %s", output_dir, strerror(errno));
    }
    struct dirent *e;
    while ((e = readdir(d)) && *n < cap) {
        int s = step_of(e->d_name);
        if (s >= 0) steps[(*n)++] = s;
    }
    closedir(d);
    qsort(steps, (size_t)*n, sizeof *steps, cmp_int);
    return SL_OK;
}

int sl_checkpoint_newest(const char *output_dir, sl_checkpoint *out, bool *found)
{
    *found = false;
    int steps[4096], n;
    SL_TRY(sl_checkpoint_list(output_dir, steps, (int)SL_ARRAY_LEN(steps), &n));
    for (int i = n - 1; i >= 0; i--) {
        char dir[4096];
        sl_run_path(dir, sizeof dir, output_dir, SL_RUN_CHECKPOINT, 0, steps[i]);
        if (sl_checkpoint_read(dir, out) == SL_OK) {
            *found = true;
            return SL_OK;
        }
        sl_log(SL_LOG_WARN, "%s; skipping it", sl_last_error());
        sl_clear_error();
    }
    return SL_OK;
}

int sl_checkpoint_check(const sl_checkpoint *ck, const sl_config *cfg)
{
    const char *opt = optimizer_name(cfg->train.optimizer.kind);
    if (strcmp(ck->optimizer, opt) != 0)
        return sl_fail(SL_ECONFIG,
                       "checkpoint %s was made with train.optimizer.name \"%s\", this config "
                       "has \"%s\": resume with the same optimizer",
                       ck->dir, ck->optimizer, opt);
    if (ck->batch != cfg->train.batch)
        return sl_fail(SL_ECONFIG,
                       "checkpoint %s was made with train.batch %d, this config has %d: the "
                       "data position counts batches, resume with the same batch",
                       ck->dir, ck->batch, cfg->train.batch);
    if (ck->data_seed != cfg->data.seed)
        return sl_fail(SL_ECONFIG,
                       "checkpoint %s was made with data.seed %" PRIu64 ", this config has %" PRIu64
                       ": resume with the same seed",
                       ck->dir, ck->data_seed, cfg->data.seed);
    if (ck->step >= cfg->train.steps)
        return sl_fail(SL_ECONFIG,
                       "checkpoint %s is after step %d, and train.steps is %d: nothing is left "
                       "to train (raise train.steps to go on)",
                       ck->dir, ck->step, cfg->train.steps);
    return SL_OK;
}
