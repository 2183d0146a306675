/* The few functions only the OpenCL backend has: CLBlast GEMM tuning, and a hook for tests. The
 * device interface itself is backends/backend.h; open OpenCL devices with
 * sl_device_open("opencl:0").
 *
 * Tuned CLBlast parameters live in a JSON cache, one entry per device name:
 *   $SLUICE_CACHE_DIR/clblast.json, else $XDG_CACHE_HOME/sluice/clblast.json,
 *   else ~/.cache/sluice/clblast.json
 * Opening an OpenCL device applies its cached entry; a CPU device without one gets a built-in set
 * that suits CPUs (CLBlast's own defaults are tuned for GPUs). With the environment variable
 * SLUICE_CLBLAST_PARAMS=default, devices open with CLBlast's own parameters instead. */
#ifndef SL_OPENCL_H
#define SL_OPENCL_H

#include <stddef.h>

#include "backends/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What sl_opencl_tune_gemm found. */
typedef struct sl_opencl_tune_result {
    /* Each set is timed against OpenBLAS on the host, runs interleaved, so that the ratios hold
     * on a machine whose load changes; the best set is the one with the best ratio. */
    double default_gflops, default_vs_openblas; /* CLBlast's own parameters (0 if not measured:
                                                   the device opened with other parameters) */
    double builtin_gflops, builtin_vs_openblas; /* the parameters in use when the search began */
    double best_gflops, best_vs_openblas;       /* the best set, now in use and saved */
    int candidates;                             /* candidate sets tried */
    int failed;     /* of those, how many failed to build, run, or gave wrong results */
    char best[512]; /* the best set, "GEMMK=0 KREG=1 ..." */
} sl_opencl_tune_result;

/* Searches a dozen or so CLBlast Xgemm parameter sets for SGEMM of n x n x n on an opened OpenCL
 * device, checks each result against CLBlast's default parameters, times the correct ones, keeps
 * the fastest in use on the device and saves it in the cache under the device's name. With
 * `verbose`, prints one line per candidate to stdout. Returns SL_EINVAL for a non-OpenCL device,
 * SL_EIO when the cache cannot be written. */
int sl_opencl_tune_gemm(sl_device *dev, size_t n, int verbose, sl_opencl_tune_result *result);

/* The path of the tuning cache file (see above) in buf. */
int sl_opencl_cache_path(char *buf, size_t cap);

/* Builds OpenCL C `source` for an opened OpenCL device with the backend's own build options, then
 * releases it: SL_EBUILD with the compiler's log in the message when it does not compile. For
 * tests and for checking kernels. */
int sl_opencl_build_source(sl_device *dev, const char *source);

/* The name of an OpenCL error code ("CL_OUT_OF_RESOURCES"), or "CL error <n>" for unknown ones
 * (in a static buffer per thread). */
const char *sl_opencl_error_name(int cl_error);

#ifdef __cplusplus
}
#endif
#endif
