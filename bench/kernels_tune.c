/* `sluice bench kernels --tune`: searches CLBlast GEMM parameters for every OpenCL device, saves
 * the best per device name in the tuning cache (see backends/opencl/opencl.h), and prints the best
 * GFLOP/s against CLBlast's own defaults and against OpenBLAS on the host, both measured in this
 * run. The lead's `sluice bench kernels` calls sl_bench_kernels_tune() for --tune. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/opencl/opencl.h"
#include "bench/bench.h"

#ifdef SL_HAVE_OPENCL

/* Host SGEMM through the CPU backend (OpenBLAS), best of three; GFLOP/s. */
static int host_gemm_gflops(size_t n, double *gflops)
{
    sl_device *cpu;
    SL_TRY(sl_device_open("cpu", &cpu));
    sl_buffer *a = NULL, *b = NULL, *c = NULL;
    size_t bytes = n * n * sizeof(float);
    int st = sl_buffer_alloc(cpu, bytes, &a);
    if (st == SL_OK) st = sl_buffer_alloc(cpu, bytes, &b);
    if (st == SL_OK) st = sl_buffer_alloc(cpu, bytes, &c);
    if (st == SL_OK) st = sl_fill(cpu, n * n, 0.5f, a);
    if (st == SL_OK) st = sl_fill(cpu, n * n, 0.25f, b);
    double best = 1e30;
    for (int r = 0; st == SL_OK && r < 4; r++) {
        double t0 = sl_now();
        st = sl_gemm(cpu, false, false, n, n, n, 1.0f, a, b, 0.0f, c);
        double t = sl_now() - t0;
        if (r > 0 && t < best) best = t; /* the first run warms OpenBLAS's threads up */
    }
    sl_buffer_free(a);
    sl_buffer_free(b);
    sl_buffer_free(c);
    sl_device_close(cpu);
    SL_TRY(st);
    *gflops = 2.0 * (double)n * (double)n * (double)n / best * 1e-9;
    return SL_OK;
}

/* Reads the command line; returns -1 to go on, else the exit status (0 after --help, 2 on a usage
 * error). */
static int parse_options(int argc, char **argv, size_t *n, int *json, const char **only)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tune")) {
            continue;
        } else if (!strcmp(argv[i], "--json")) {
            *json = 1;
        } else if (!strcmp(argv[i], "--n") && i + 1 < argc) {
            *n = strtoul(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            *only = argv[++i];
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: sluice bench kernels --tune [--n N] [--device opencl:I] [--json]\n\n"
                   "Searches CLBlast SGEMM parameters (N x N x N, default 1024) for every OpenCL\n"
                   "device, keeps the fastest correct set per device name in the tuning cache\n"
                   "($SLUICE_CACHE_DIR, $XDG_CACHE_HOME/sluice or ~/.cache/sluice, clblast.json)\n"
                   "and prints it against CLBlast's defaults and OpenBLAS on the host.\n");
            return 0;
        } else {
            fprintf(stderr, "sluice bench kernels --tune: unknown argument '%s' (see --help)\n",
                    argv[i]);
            return 2;
        }
    }
    if (*n < 16 || *n > 8192) {
        fprintf(stderr, "sluice bench kernels --tune: --n must be in 16..8192\n");
        return 2;
    }
    return -1;
}

/* Tunes one OpenCL device at n, prints the outcome and adds its object to `arr`; *vs_default is
 * the best set's speed over CLBlast's defaults. A failure is said on stderr. */
static int tune_device(const sl_device_info *info, size_t n, int json, cJSON *arr,
                       double *vs_default)
{
    if (!json)
        printf("%s (%s): tuning, each new candidate compiles first...\n", info->id, info->name);
    fflush(stdout);
    sl_device *dev;
    sl_opencl_tune_result r;
    int st = sl_device_open(info->id, &dev);
    if (st == SL_OK) {
        st = sl_opencl_tune_gemm(dev, n, !json, &r);
        sl_device_close(dev);
    }
    if (st != SL_OK) {
        fprintf(stderr, "%s: tuning failed: %s\n", info->id, sl_last_error());
        return st;
    }
    *vs_default = r.default_gflops > 0 ? r.best_vs_openblas / r.default_vs_openblas : 0.0;
    if (!json)
        printf("%s: best %.1f GFLOP/s = %.2fx OpenBLAS; CLBlast default %.2fx OpenBLAS; best "
               "= %.2fx default (ratios from interleaved runs; %d of %d candidates failed)\n"
               "  %s\n",
               info->id, r.best_gflops, r.best_vs_openblas, r.default_vs_openblas, *vs_default,
               r.failed, r.candidates, r.best);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", info->id);
    cJSON_AddStringToObject(o, "device", info->name);
    cJSON_AddNumberToObject(o, "default_gflops", r.default_gflops);
    cJSON_AddNumberToObject(o, "best_gflops", r.best_gflops);
    cJSON_AddNumberToObject(o, "ratio_vs_default", *vs_default);
    cJSON_AddNumberToObject(o, "default_vs_openblas", r.default_vs_openblas);
    cJSON_AddNumberToObject(o, "best_vs_openblas", r.best_vs_openblas);
    cJSON_AddNumberToObject(o, "candidates", r.candidates);
    cJSON_AddNumberToObject(o, "failed", r.failed);
    cJSON_AddStringToObject(o, "parameters", r.best);
    cJSON_AddItemToArray(arr, o);
    return SL_OK;
}

int sl_bench_kernels_tune(int argc, char **argv)
{
    size_t n = 1024;
    int json = 0;
    const char *only = NULL;
    int rc = parse_options(argc, argv, &n, &json, &only);
    if (rc >= 0) return rc;
    /* Open devices with CLBlast's own parameters, so that the first figure is its default. */
    setenv("SLUICE_CLBLAST_PARAMS", "default", 0);

    const sl_device_info *infos;
    size_t count;
    if (sl_device_list(&infos, &count) != SL_OK) return 1;
    double host = 0.0;
    if (host_gemm_gflops(n, &host) != SL_OK) {
        fprintf(stderr, "sluice bench kernels --tune: host GEMM: %s\n", sl_last_error());
        return 1;
    }
    char cache[1024] = "";
    sl_opencl_cache_path(cache, sizeof cache);
    if (!json) printf("SGEMM %zu x %zu x %zu; host OpenBLAS: %.1f GFLOP/s\n", n, n, n, host);

    cJSON *root = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    int tuned = 0, failures = 0;
    double ratio = 0.0;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(infos[i].backend, "opencl") != 0) continue;
        if (only && strcmp(infos[i].id, only) != 0) continue;
        double vs_default = 0.0;
        if (tune_device(&infos[i], n, json, arr, &vs_default) != SL_OK) {
            failures++;
            continue;
        }
        tuned++;
        if (ratio == 0.0) ratio = vs_default;
    }
    if (!json) {
        if (tuned)
            printf("saved to %s\n", cache);
        else if (!failures)
            printf("no OpenCL device to tune. %s", sl_device_list_problems());
    }
    cJSON_AddStringToObject(root, "name", "kernels-tune");
    cJSON_AddStringToObject(root, "baseline", "CLBlast default parameters, same device and run");
    cJSON_AddNumberToObject(root, "ratio", ratio);
    cJSON_AddNumberToObject(root, "n", (double)n);
    cJSON_AddNumberToObject(root, "openblas_gflops", host);
    cJSON_AddStringToObject(root, "cache", cache);
    cJSON_AddItemToObject(root, "devices", arr);
    if (json)
        sl_bench_print_json(root);
    else
        cJSON_Delete(root);
    return failures ? 1 : 0;
}

#else

int sl_bench_kernels_tune(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sluice bench kernels --tune: this build has no OpenCL backend (it needs the "
                    "OpenCL ICD loader and CLBlast at build time)\n");
    return 1;
}

#endif
