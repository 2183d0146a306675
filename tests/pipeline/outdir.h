/* The set-up of the end-to-end suites: a fresh output directory under /tmp for each test (removed
 * after it), the source tree as the working directory (for samples/), and the sluice executable
 * that runs the ranks (SLUICE_EXE), both set by ctest. */
#ifndef SL_TEST_PIPELINE_OUTDIR_H
#define SL_TEST_PIPELINE_OUTDIR_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/core.h"

static char outdir_template[] = "/tmp/sluice-test-XXXXXX";
static char *outdir;

static void setup(void)
{
    outdir = mkdtemp(outdir_template);
    cr_assert_not_null(outdir);
    const char *src = getenv("SLUICE_SOURCE_DIR");
    cr_assert(src && chdir(src) == 0, "run through ctest (SLUICE_SOURCE_DIR)");
    cr_assert(getenv("SLUICE_EXE"), "run through ctest (SLUICE_EXE)");
}

static void teardown(void)
{
    cr_assert_eq(sl_remove_tree(outdir), SL_OK, "%s", sl_last_error());
}

#endif
