/* Shared by the fault suites: a private directory, a run of `sluice train` in this process
 * (sl_train, its ranks started from SLUICE_EXE), and its outputs read back. */
#ifndef SL_TEST_FAULTS_H
#define SL_TEST_FAULTS_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "runtime/config/config.h"
#include "runtime/model/model.h"
#include "runtime/train/train.h"

/* Paths here are a short temporary directory and short names: GCC cannot know that. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

static char faults_dir_template[] = "/tmp/sluice-faults-XXXXXX";
static char *faults_dir;

static inline void faults_setup(void)
{
    faults_dir = mkdtemp(faults_dir_template);
    cr_assert_not_null(faults_dir);
    const char *src = getenv("SLUICE_SOURCE_DIR");
    cr_assert(src && chdir(src) == 0, "run through ctest (SLUICE_SOURCE_DIR)");
    cr_assert(getenv("SLUICE_EXE"), "run through ctest (SLUICE_EXE)");
}

static inline void faults_teardown(void)
{
    cr_assert_eq(sl_remove_tree(faults_dir), SL_OK, "%s", sl_last_error());
}

/* faults_dir/name */
static inline const char *fpath(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", faults_dir, name);
    return buf;
}

/* Trains `json` with `sets` into faults_dir/dir (resuming when asked); returns the status. */
static inline int run_train(const char *json, const char *const *sets, int nsets, const char *dir,
                            bool resume, sl_train_summary *sum)
{
    char out[512], set_dir[1100];
    snprintf(set_dir, sizeof set_dir, "output.dir=\"%s\"", fpath(out, sizeof out, dir));
    const char *all[32];
    int n = 0;
    for (int i = 0; i < nsets; i++) all[n++] = sets[i];
    all[n++] = set_dir;
    sl_config cfg;
    int st = sl_config_parse(json, ".", all, n, &cfg);
    cr_assert_eq(st, SL_OK, "%s", sl_last_error());
    sl_train_options opt = {.exe = getenv("SLUICE_EXE"), .resume = resume};
    sl_train_summary local;
    st = sl_train(&cfg, &opt, sum ? sum : &local);
    sl_config_free(&cfg);
    return st;
}

/* The whole text of faults_dir/dir/name (NULL when it cannot be read); free it. */
static inline char *read_output(const char *dir, const char *name)
{
    char path[1024], rel[512];
    snprintf(rel, sizeof rel, "%s/%s", dir, name);
    char *text = NULL;
    size_t len;
    if (sl_read_file(fpath(path, sizeof path, rel), &text, &len) != SL_OK) {
        sl_clear_error();
        return NULL;
    }
    return text;
}

/* metrics.jsonl without the fields that time a run (samples_per_s, time_s): what must be
 * bit-identical between an uninterrupted run and a resumed one. */
static inline char *metrics_untimed(const char *dir)
{
    char *text = read_output(dir, "metrics.jsonl");
    cr_assert_not_null(text, "%s/metrics.jsonl", dir);
    const char *keys[] = {", \"samples_per_s\": ", ", \"time_s\": "};
    for (size_t k = 0; k < 2; k++) {
        char *p;
        while ((p = strstr(text, keys[k]))) {
            char *end = p + strlen(keys[k]);
            end += strcspn(end, ",}");
            memmove(p, end, strlen(end) + 1);
        }
    }
    return text;
}

/* Two files' bytes are equal. */
static inline bool same_file(const char *a, const char *b)
{
    char *x, *y;
    size_t nx, ny;
    if (sl_read_file(a, &x, &nx) != SL_OK) return false;
    if (sl_read_file(b, &y, &ny) != SL_OK) {
        free(x);
        return false;
    }
    bool same = nx == ny && !memcmp(x, y, nx);
    free(x);
    free(y);
    return same;
}

#endif
