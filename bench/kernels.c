/* `sluice bench kernels`: GEMM GFLOP/s per device against the device's own FMA peak and against
 * OpenBLAS on this CPU under the best OpenBLAS core for it, measured in the same run; elementwise
 * kernels in GB/s against a device-to-device copy of the same size. */
#define _GNU_SOURCE
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/cpu/cpu.h"
#include "bench/bench.h"
#include "bench/kernels_impl.h"
#include "runtime/cli/cli.h"

#include "backends/opencl/opencl.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice bench kernels [--device ID]... [--sizes N,N,...] [--elems N]\n"
            "                            [--min-time S] [--json] [--tune]\n\n"
            "GEMM GFLOP/s per device at each size, as a fraction of the device's FMA peak\n"
            "(measured with a chain-of-FMA kernel) and of OpenBLAS cblas_sgemm on this CPU\n"
            "under the best OpenBLAS core for it, measured in the same run by a child process\n"
            "with OPENBLAS_CORETYPE set to that core (a value you set is kept); elementwise\n"
            "kernels in GB/s against a device copy; layer norm, causal softmax and embedding\n"
            "forward in GB/s against a device copy of the same bytes; batched GEMM at\n"
            "attention's shapes against an OpenBLAS loop. Where this process's OpenBLAS fell\n"
            "back to a generic core, the command first starts itself again with the best core.\n\n"
            "  --device ID    a device from `sluice devices` (repeatable; default: all)\n"
            "  --sizes LIST   square GEMM sizes (default 256,512,1024,2048)\n"
            "  --elems N      elementwise length in floats (default 8388608); the layer norm,\n"
            "                 causal softmax and embedding rows size their tensors from it\n"
            "  --min-time S   time each figure over at least S seconds (default 0.3)\n"
            "  --json         one JSON object instead of the tables\n"
            "  --tune         search CLBlast GEMM parameters for every OpenCL device and store\n"
            "                 the best in the cache that devices read when they open\n");
}

/* The one timing rule for devices and OpenBLAS alike (bench/kernels_impl.h). */
int sl__bench_best_batch(sl__bench_batch_fn batch, void *ctx, double min_time, double *seconds)
{
    double best = 1e30, total = 0.0;
    int reps = 1;
    for (int batches = 0; total < min_time || batches < 3; batches++) {
        double dt = 0.0;
        SL_TRY(batch(ctx, reps, &dt));
        best = SL_MIN(best, dt / reps);
        total += dt;
        if (dt < 0.05) reps *= 2;
    }
    *seconds = best;
    return SL_OK;
}

struct device_batch {
    sl_device *dev;
    sl__bench_fn fn;
    void *ctx;
};

/* reps calls of fn, timed by the device's events. */
static int device_batch_run(void *p, int reps, double *seconds)
{
    struct device_batch *b = p;
    sl_event *e0, *e1;
    SL_TRY(sl_event_record(b->dev, &e0));
    int st = SL_OK;
    for (int r = 0; r < reps && st == SL_OK; r++) st = b->fn(b->dev, b->ctx);
    double ms = 0.0;
    if (st == SL_OK) st = sl_event_record(b->dev, &e1);
    if (st == SL_OK) {
        st = sl_event_wait(e1);
        if (st == SL_OK) st = sl_event_elapsed_ms(e0, e1, &ms);
        sl_event_free(e1);
    }
    sl_event_free(e0);
    *seconds = ms * 1e-3;
    return st;
}

/* Seconds per fn(ctx) on the device after one warm-up, by sl__bench_best_batch. */
int sl__bench_time_op(sl_device *dev, sl__bench_fn fn, void *ctx, double min_time, double *seconds)
{
    SL_TRY(fn(dev, ctx)); /* warm-up: kernel builds, caches, page faults */
    SL_TRY(sl_device_finish(dev));
    struct device_batch b = {dev, fn, ctx};
    return sl__bench_best_batch(device_batch_run, &b, min_time, seconds);
}

struct gemm_ctx {
    size_t n;
    sl_buffer *a, *b, *c;
};

static int run_gemm(sl_device *dev, void *p)
{
    struct gemm_ctx *g = p;
    return sl_gemm(dev, false, false, g->n, g->n, g->n, 1.0f, g->a, g->b, 0.0f, g->c);
}

struct elem_ctx {
    int kind;
    size_t n;
    sl_buffer *x, *y;
};

static const char *elem_names[] = {"copy", "axpy", "scale", "fill", "relu"};
/* bytes moved per element by each kind */
static const double elem_bytes[] = {8.0, 12.0, 8.0, 4.0, 8.0};

static int run_elem(sl_device *dev, void *p)
{
    struct elem_ctx *e = p;
    switch (e->kind) {
    case 0:
        return sl_buffer_copy(e->y, 0, e->x, 0, e->n * sizeof(float));
    case 1:
        return sl_axpy(dev, e->n, 0.5f, e->x, e->y);
    case 2:
        return sl_scale(dev, e->n, 0.999f, e->y);
    case 3:
        return sl_fill(dev, e->n, 1.0f, e->y);
    default:
        return sl_act_forward(dev, SL_ACT_RELU, e->n, e->x, e->y);
    }
}

/* The device's GEMM and OpenBLAS's in alternating rounds, so that both see the same moments of a
 * shared machine; the best time of each (SL__BENCH_GEMM_ROUNDS rounds). */
static int time_gemm_pair(sl_device *dev, struct gemm_ctx *g, double min_time, double *dev_s,
                          double *host_s)
{
    struct sl__bench_host_gemm h = {0};
    int st = sl__bench_blas_ref.pid ? SL_OK : sl__bench_host_gemm_init(&h, g->n);
    if (st == SL_OK && !sl__bench_blas_ref.pid)
        sl__bench_host_gemm_run(&h); /* warm-up: threads, page faults */
    *dev_s = *host_s = 1e30;
    for (int r = 0; r < SL__BENCH_GEMM_ROUNDS && st == SL_OK; r++) {
        double d = 0.0;
        st = sl__bench_time_op(dev, run_gemm, g, min_time / SL__BENCH_GEMM_ROUNDS, &d);
        if (st != SL_OK) break;
        *dev_s = SL_MIN(*dev_s, d);
        if (sl__bench_blas_ref.pid)
            st = sl__bench_blas_ref_time(g->n, min_time / SL__BENCH_GEMM_ROUNDS, &d);
        else
            st = sl__bench_best_batch(sl__bench_host_batch_run, &h,
                                      min_time / SL__BENCH_GEMM_ROUNDS, &d);
        *host_s = SL_MIN(*host_s, d);
    }
    sl__bench_host_gemm_free(&h);
    return st;
}

static int parse_options(int argc, char **argv, struct sl__bench_kernels_options *o)
{
    *o = (struct sl__bench_kernels_options){
        .sizes = {256, 512, 1024, 2048}, .nsizes = 4, .elems = 8u << 20, .min_time = 0.3};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(arg, "--json")) {
            o->json = 1;
        } else if (!strcmp(arg, "--device") && val && o->ndevices < 16) {
            o->devices[o->ndevices++] = val;
            i++;
        } else if (!strcmp(arg, "--sizes") && val) {
            o->nsizes = 0;
            char *copy = strdup(val), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t && o->nsizes < SL__BENCH_MAX_SIZES;
                 t = strtok_r(NULL, ",", &save))
                o->sizes[o->nsizes++] = strtoul(t, NULL, 10);
            free(copy);
            i++;
        } else if (!strcmp(arg, "--elems") && val) {
            o->elems = strtoul(val, NULL, 10);
            i++;
        } else if (!strcmp(arg, "--min-time") && val) {
            o->min_time = atof(val);
            i++;
        } else {
            fprintf(stderr,
                    "sluice bench kernels: unknown or incomplete option '%s' (try --help)\n", arg);
            return 2;
        }
    }
    for (int s = 0; s < o->nsizes; s++)
        if (o->sizes[s] == 0) {
            fprintf(stderr, "sluice bench kernels: --sizes takes positive integers\n");
            return 2;
        }
    if (o->elems == 0 || o->min_time <= 0) {
        fprintf(stderr, "sluice bench kernels: --elems and --min-time must be positive\n");
        return 2;
    }
    return 0;
}

/* The device's FMA peak: the better of two measurements, one before and one after the GEMMs. A
 * peak is the best rate the device reaches, and on a shared machine a single measurement can read
 * far below it (the "FMA peak" line of `sluice bench kernels`; runs in bench/kernels.md). */
static double measure_peak(sl_device *dev, double best)
{
    double g = 0.0;
    if (sl_device_peak_gflops(dev, &g) != SL_OK) {
        sl_log(SL_LOG_WARN, "%s: no FMA peak: %s", sl_device_get_info(dev)->id, sl_last_error());
        return best;
    }
    return SL_MAX(best, g);
}

/* GFLOP/s of the device's GEMM and of OpenBLAS's at n x n x n, timed by time_gemm_pair. */
static int gemm_at(sl_device *dev, size_t n, double min_time, double *gflops, double *blas)
{
    struct gemm_ctx g = {.n = n};
    size_t bytes = g.n * g.n * sizeof(float);
    double sec = 0.0, host_sec = 0.0;
    int st = sl_buffer_alloc(dev, bytes, &g.a);
    if (st == SL_OK) st = sl_buffer_alloc(dev, bytes, &g.b);
    if (st == SL_OK) st = sl_buffer_alloc(dev, bytes, &g.c);
    if (st == SL_OK) st = sl_fill(dev, g.n * g.n, 0.5f, g.a);
    if (st == SL_OK) st = sl_fill(dev, g.n * g.n, 0.25f, g.b);
    if (st == SL_OK) st = time_gemm_pair(dev, &g, min_time, &sec, &host_sec);
    sl_buffer_free(g.a);
    sl_buffer_free(g.b);
    sl_buffer_free(g.c);
    double flop = 2.0 * (double)g.n * g.n * g.n;
    if (st == SL_OK) {
        *gflops = flop / sec * 1e-9;
        *blas = flop / host_sec * 1e-9;
    }
    return st;
}

/* The device's GEMM at every size against its FMA peak and OpenBLAS: the device's name, its peak
 * and the "gemm" array into `out`, and the table. */
static int bench_gemm(sl_device *dev, const struct sl__bench_kernels_options *o, cJSON *out)
{
    const sl_device_info *info = sl_device_get_info(dev);
    double peak = measure_peak(dev, 0.0);
    double gf[SL__BENCH_MAX_SIZES], blas[SL__BENCH_MAX_SIZES];
    for (int s = 0; s < o->nsizes; s++)
        SL_TRY(gemm_at(dev, o->sizes[s], o->min_time, &gf[s], &blas[s]));
    peak = measure_peak(dev, peak);

    cJSON_AddStringToObject(out, "device", info->id);
    cJSON_AddStringToObject(out, "device_name", info->name);
    cJSON_AddNumberToObject(out, "peak_gflops", peak);
    cJSON *gemms = cJSON_AddArrayToObject(out, "gemm");
    if (!o->json)
        printf("\n%s  %s\nFMA peak %.1f GFLOP/s; OpenBLAS: core %s (%s)\n  %6s %10s %9s %11s "
               "%9s\n",
               info->id, info->name, peak, sl__bench_blas_ref.core, sl__bench_blas_ref.how, "size",
               "GFLOP/s", "of peak", "OpenBLAS", "ratio");
    for (int s = 0; s < o->nsizes; s++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "size", (double)o->sizes[s]);
        cJSON_AddNumberToObject(e, "gflops", gf[s]);
        cJSON_AddNumberToObject(e, "fraction_of_peak", peak > 0 ? gf[s] / peak : 0);
        cJSON_AddNumberToObject(e, "openblas_gflops", blas[s]);
        cJSON_AddNumberToObject(e, "ratio_to_openblas", gf[s] / blas[s]);
        cJSON_AddItemToArray(gemms, e);
        if (!o->json)
            printf("  %6zu %10.1f %8.1f%% %11.1f %8.1f%%\n", o->sizes[s], gf[s],
                   peak > 0 ? 100 * gf[s] / peak : 0, blas[s], 100 * gf[s] / blas[s]);
    }
    return SL_OK;
}

/* The elementwise kernels in GB/s against a device-to-device copy: the "elementwise" array into
 * `out`, and the table. */
static int bench_elementwise(sl_device *dev, const struct sl__bench_kernels_options *o, cJSON *out)
{
    struct elem_ctx e = {.n = o->elems};
    int st = sl_buffer_alloc(dev, e.n * sizeof(float), &e.x);
    if (st == SL_OK) st = sl_buffer_alloc(dev, e.n * sizeof(float), &e.y);
    if (st == SL_OK) st = sl_fill(dev, e.n, 0.5f, e.x);
    if (st == SL_OK) st = sl_fill(dev, e.n, 0.25f, e.y);
    double copy_gbs = 0.0;
    cJSON *elems = cJSON_AddArrayToObject(out, "elementwise");
    if (!o->json && st == SL_OK)
        printf("  %-8s %9s %9s   (%zu floats)\n", "kernel", "GB/s", "of copy", e.n);
    for (e.kind = 0; e.kind < (int)SL_ARRAY_LEN(elem_names) && st == SL_OK; e.kind++) {
        double sec = 0.0;
        st = sl__bench_time_op(dev, run_elem, &e, o->min_time, &sec);
        if (st != SL_OK) break;
        double gbs = elem_bytes[e.kind] * (double)e.n / sec * 1e-9;
        if (e.kind == 0) copy_gbs = gbs;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "kernel", elem_names[e.kind]);
        cJSON_AddNumberToObject(j, "gb_per_s", gbs);
        cJSON_AddNumberToObject(j, "ratio_to_copy", gbs / copy_gbs);
        cJSON_AddItemToArray(elems, j);
        if (!o->json)
            printf("  %-8s %9.1f %8.1f%%\n", elem_names[e.kind], gbs, 100 * gbs / copy_gbs);
    }
    sl_buffer_free(e.x);
    sl_buffer_free(e.y);
    return st;
}

/* Benchmarks one device; adds its object to `out`. */
static int bench_device(sl_device *dev, const struct sl__bench_kernels_options *o, cJSON *out)
{
    SL_TRY(bench_gemm(dev, o, out));
    SL_TRY(bench_elementwise(dev, o, out));
    SL_TRY(sl__bench_transformer(dev, o, out));
    SL_TRY(sl__bench_batched_gemm(dev, o, out));
    return sl__bench_attention(dev, o, out);
}

int sl_bench_kernels(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--tune")) return sl_bench_kernels_tune(argc, argv);
    if (argc == 2 && !strcmp(argv[1], "--blas-only")) return sl__bench_blas_only();
    if (sl_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    struct sl__bench_kernels_options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc;
    sl_cpu_blas_reexec(); /* this process's cpu device on the best core (backends/cpu/cpu.h) */
    const sl_device_info *infos;
    size_t count;
    int st = sl_device_list(&infos, &count);
    if (st != SL_OK) return sl_cli_error("bench kernels", st);
    if (o.ndevices == 0)
        for (size_t i = 0; i < count && o.ndevices < 16; i++) o.devices[o.ndevices++] = infos[i].id;

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "name", "kernels");
    sl__bench_blas_ref_start();
    cJSON_AddStringToObject(
        root, "baseline",
        "GEMM: OpenBLAS cblas_sgemm on this CPU at the same size under the best OpenBLAS core "
        "for it (a child process with OPENBLAS_CORETYPE set to that core unless it was set), in "
        "rounds alternating with the device's GEMM and timed by the same rule; elementwise: a "
        "device-to-device copy of the same length");
    cJSON_AddStringToObject(
        root, "baseline_transformer",
        "layernorm, causal_softmax, embedding: a device-to-device copy moving the same bytes "
        "(half read, half written), in alternating rounds; batched_gemm: OpenBLAS on this CPU "
        "running the same batch as a loop of cblas_sgemm, in alternating rounds");
    cJSON_AddStringToObject(root, "openblas_core", sl__bench_blas_ref.core);
    cJSON_AddStringToObject(root, "openblas_core_how", sl__bench_blas_ref.how);
    cJSON_AddStringToObject(root, "openblas_core_here", openblas_get_corename());
    cJSON_AddNumberToObject(root, "ratio_target", 0.8);
    cJSON_AddStringToObject(root, "ratio_is",
                            "first device's GEMM GFLOP/s at 1024 (or the "
                            "largest size) over OpenBLAS's");
    cJSON *devs = cJSON_AddArrayToObject(root, "devices");
    double headline = 0.0;
    int headline_size = 0;
    for (int s = 0; s < o.nsizes; s++)
        if (o.sizes[s] == 1024 ||
            (o.sizes[s] > o.sizes[headline_size] && o.sizes[headline_size] != 1024))
            headline_size = s;
    for (int d = 0; d < o.ndevices; d++) {
        sl_device *dev;
        st = sl_device_open(o.devices[d], &dev);
        if (st != SL_OK) {
            cJSON_Delete(root);
            sl__bench_blas_ref_stop();
            return sl_cli_error("bench kernels", st);
        }
        cJSON *obj = cJSON_CreateObject();
        cJSON_AddItemToArray(devs, obj);
        st = bench_device(dev, &o, obj);
        sl_device_close(dev);
        if (st != SL_OK) {
            cJSON_Delete(root);
            sl__bench_blas_ref_stop();
            return sl_cli_error("bench kernels", st);
        }
        if (d == 0) {
            cJSON *g = cJSON_GetArrayItem(cJSON_GetObjectItem(obj, "gemm"), headline_size);
            headline = cJSON_GetNumberValue(cJSON_GetObjectItem(g, "ratio_to_openblas"));
        }
    }
    sl__bench_blas_ref_stop();
    cJSON_AddNumberToObject(root, "ratio", headline);
    if (o.json)
        sl_bench_print_json(root);
    else
        cJSON_Delete(root);
    return 0;
}