/* A measuring tool, not a test: SGEMM GFLOP/s on an OpenCL device against OpenBLAS (the CPU
 * backend) in the same process, runs interleaved so that both see the same machine load.
 *   opencl_gemm_vs_openblas [M N K] [device]           (default 1024 1024 1024 opencl:0)
 * With SLUICE_CLBLAST_PARAMS=default the device keeps CLBlast's own parameters; otherwise the
 * tuning cache or the built-in CPU set applies (see backends/opencl/opencl.h). */
#include <stdio.h>
#include <stdlib.h>

#include "backends/backend.h"

static int gemm(sl_device *d, size_t m, size_t n, size_t k, sl_buffer **b, double *seconds)
{
    double t0 = sl_now();
    SL_TRY(sl_gemm(d, false, false, m, n, k, 1.0f, b[0], b[1], 0.0f, b[2]));
    SL_TRY(sl_device_finish(d));
    *seconds = sl_now() - t0;
    return SL_OK;
}

int main(int argc, char **argv)
{
    size_t m = 1024, n = 1024, k = 1024;
    if (argc >= 4)
        m = strtoul(argv[1], NULL, 10), n = strtoul(argv[2], NULL, 10),
        k = strtoul(argv[3], NULL, 10);
    const char *id = argc >= 5 ? argv[4] : "opencl:0";
    sl_device *dev[2];
    sl_buffer *buf[2][3];
    size_t sizes[3] = {m * k * 4, k * n * 4, m * n * 4};
    if (sl_device_open("cpu", &dev[0]) || sl_device_open(id, &dev[1])) {
        fprintf(stderr, "%s\n", sl_last_error());
        return 1;
    }
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < 3; i++)
            if (sl_buffer_alloc(dev[d], sizes[i], &buf[d][i]) ||
                sl_fill(dev[d], sizes[i] / 4, 0.5f, buf[d][i])) {
                fprintf(stderr, "%s\n", sl_last_error());
                return 1;
            }
    double best[2] = {1e30, 1e30}, t;
    for (int r = 0; r < 8; r++)
        for (int d = 0; d < 2; d++) {
            if (gemm(dev[d], m, n, k, buf[d], &t) != SL_OK) {
                fprintf(stderr, "%s\n", sl_last_error());
                return 1;
            }
            if (r > 0 && t < best[d]) best[d] = t; /* run 0 compiles and warms up */
        }
    double flop = 2.0 * (double)m * (double)n * (double)k;
    printf("SGEMM %zux%zux%zu  %s: %.1f GFLOP/s  OpenBLAS: %.1f GFLOP/s  ratio %.2f  (%s)\n", m, n,
           k, id, flop / best[1] * 1e-9, flop / best[0] * 1e-9, best[0] / best[1],
           getenv("SLUICE_CLBLAST_PARAMS") ? getenv("SLUICE_CLBLAST_PARAMS") : "tuned/built-in");
    for (int d = 0; d < 2; d++) {
        for (int i = 0; i < 3; i++) sl_buffer_free(buf[d][i]);
        sl_device_close(dev[d]);
    }
    return 0;
}
