/* with_best_blas_core PROGRAM [ARGS...]: runs PROGRAM with OPENBLAS_CORETYPE set to the best
 * OpenBLAS core for this processor (backends/cpu/cpu.h), so that ctest runs the CPU suites once
 * more under that core whatever the library picks by itself. A set OPENBLAS_CORETYPE is kept
 * (some machines set it because other cores compute wrong results there), and a processor with
 * no better core than the SSE ones runs PROGRAM as it is. SLUICE_EXPECT_BLAS_CORE tells
 * test_cpu_reference_blas_core which core it must find loaded. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/cpu/cpu.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: with_best_blas_core PROGRAM [ARGS...]\n");
        return 2;
    }
    sl_cpu_features f;
    sl_cpu_features_read(&f);
    const char *best = sl_cpu_blas_best_core(&f), *set = getenv("OPENBLAS_CORETYPE");
    if (set) {
        fprintf(stderr, "with_best_blas_core: OPENBLAS_CORETYPE=%s is set; kept\n", set);
    } else if (best) {
        setenv("OPENBLAS_CORETYPE", best, 1);
        setenv("SLUICE_EXPECT_BLAS_CORE", best, 1);
        fprintf(stderr, "with_best_blas_core: OPENBLAS_CORETYPE=%s\n", best);
    } else {
        fprintf(stderr, "with_best_blas_core: no core better than the SSE ones on this CPU\n");
    }
    execv(argv[1], argv + 1);
    fprintf(stderr, "with_best_blas_core: cannot run %s: %s\n", argv[1], strerror(errno));
    return 127;
}
