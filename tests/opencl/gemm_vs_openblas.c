/* A measuring tool, not a test: SGEMM GFLOP/s on an OpenCL device against OpenBLAS (the CPU
 * backend) in the same process, runs interleaved so that both see the same machine load.
 *   opencl_gemm_vs_openblas [M N K [device [runs [nn|tn|nt|tt]]]]
 * (default 1024 1024 1024 opencl:0 8 nn; t: that operand transposed)
 * Prints the best-of ratio and the spread (best and median of each side), and checks the device's
 * result (A and B are filled with 0.5, so every element of C must be k/4): a parameter set that
 * builds but computes nothing would otherwise show as absurdly fast.
 * With SLUICE_CLBLAST_PARAMS=default the device keeps CLBlast's own parameters; otherwise the
 * tuning cache or the built-in CPU set applies (see backends/opencl/opencl.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "backends/backend.h"

static bool trans_a, trans_b;

static int gemm(sl_device *d, size_t m, size_t n, size_t k, sl_buffer **b, double *seconds)
{
    double t0 = sl_now();
    SL_TRY(sl_gemm(d, trans_a, trans_b, m, n, k, 1.0f, b[0], b[1], 0.0f, b[2]));
    SL_TRY(sl_device_finish(d));
    *seconds = sl_now() - t0;
    return SL_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    size_t m = 1024, n = 1024, k = 1024;
    if (argc >= 4)
        m = strtoul(argv[1], NULL, 10), n = strtoul(argv[2], NULL, 10),
        k = strtoul(argv[3], NULL, 10);
    const char *id = argc >= 5 ? argv[4] : "opencl:0";
    int runs = argc >= 6 ? atoi(argv[5]) : 8;
    const char *tr = argc >= 7 ? argv[6] : "nn";
    trans_a = tr[0] == 't', trans_b = tr[0] && tr[1] == 't';
    if (m == 0 || n == 0 || k == 0 || runs < 2 || runs > 1000) {
        fprintf(stderr, "usage: %s [M N K [device [runs >= 2 [nn|tn|nt|tt]]]]\n", argv[0]);
        return 2;
    }
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
    double *t[2] = {calloc((size_t)runs, sizeof(double)), calloc((size_t)runs, sizeof(double))};
    if (!t[0] || !t[1]) return 1;
    for (int r = 0; r <= runs; r++)
        for (int d = 0; d < 2; d++) {
            double s;
            if (gemm(dev[d], m, n, k, buf[d], &s) != SL_OK) {
                fprintf(stderr, "%s\n", sl_last_error());
                return 1;
            }
            if (r > 0) t[d][r - 1] = s; /* run 0 compiles and warms up */
        }
    float *c = malloc(sizes[2]);
    if (!c || sl_buffer_download(buf[1][2], 0, c, sizes[2]) != SL_OK) return 1;
    size_t bad = 0;
    for (size_t i = 0; i < m * n; i++)
        if (!(fabsf(c[i] - 0.25f * (float)k) <= 1e-3f * (float)k)) bad++;
    free(c);
    for (int d = 0; d < 2; d++) qsort(t[d], (size_t)runs, sizeof(double), cmp_double);
    double flop = 2.0 * (double)m * (double)n * (double)k * 1e-9;
    printf("SGEMM %zux%zux%zu  %s: %.1f GFLOP/s (median %.1f)  OpenBLAS: %.1f (median %.1f)  "
           "ratio %.2f (median %.2f)  %s%s\n",
           m, n, k, id, flop / t[1][0], flop / t[1][runs / 2], flop / t[0][0],
           flop / t[0][runs / 2], t[0][0] / t[1][0], t[0][runs / 2] / t[1][runs / 2],
           getenv("SLUICE_CLBLAST_PARAMS") ? getenv("SLUICE_CLBLAST_PARAMS") : "tuned/built-in",
           bad ? "  WRONG RESULT" : "");
    free(t[0]);
    free(t[1]);
    for (int d = 0; d < 2; d++) {
        for (int i = 0; i < 3; i++) sl_buffer_free(buf[d][i]);
        sl_device_close(dev[d]);
    }
    return bad ? 1 : 0;
}
