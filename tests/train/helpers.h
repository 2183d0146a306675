/* Small helpers shared by the training suites: a private temp directory and file writers. */
#ifndef SL_TEST_TRAIN_HELPERS_H
#define SL_TEST_TRAIN_HELPERS_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

/* A fresh directory under /tmp for this test process (created once, removed at exit). */
static char tmpdir_path[64];

static inline void remove_tmpdir(void)
{
    sl_remove_tree(tmpdir_path);
}

static inline const char *tmpdir(void)
{
    if (!tmpdir_path[0]) {
        snprintf(tmpdir_path, sizeof tmpdir_path, "/tmp/sluice-train-XXXXXX");
        cr_assert_not_null(mkdtemp(tmpdir_path));
        atexit(remove_tmpdir);
    }
    return tmpdir_path;
}

/* tmpdir()/name into buf. */
static inline const char *tmppath(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir(), name);
    return buf;
}

static inline void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* The source tree (set by ctest), for samples and fixtures. */
static inline const char *source_dir(void)
{
    const char *s = getenv("SLUICE_SOURCE_DIR");
    return s ? s : ".";
}

/* Asserts that `status` failed and the message contains `needle`. */
#define assert_fails_with(status, needle)                                                          \
    do {                                                                                           \
        int st_ = (status);                                                                        \
        cr_assert_neq(st_, SL_OK, "expected a failure mentioning '%s'", needle);                   \
        cr_assert(strstr(sl_last_error(), needle) != NULL, "message '%s' lacks '%s'",              \
                  sl_last_error(), needle);                                                        \
    } while (0)

#endif
