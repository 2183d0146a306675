/* OpenCL-only checks: every kernel against the CPU oracle on awkward sizes (tails of the float4
 * path, work-group remainders), GEMM edge cases, events, copies, the peak kernel, build failures
 * with the compiler's log, and the tuning cache. The generic conformance suite
 * (tests/backends) is more thorough; this one is quick to run while working on the backend. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/opencl/opencl.h"
#include "backends/opencl/opencl_impl.h" /* sl__cl_gemm_params, sl__cl_gemm_scratch_bytes */
#include "tests/backends/require_devices.h"

static sl_device *cpu, *ocl;

static void open_devices(void)
{
    cr_assert_eq(sl_device_open("cpu", &cpu), SL_OK, "%s", sl_last_error());
    int st = sl_device_open("opencl:0", &ocl);
    if (st != SL_OK) {
        sl_device_close(cpu);
        cpu = NULL;
        sl_test_no_device("opencl", sl_device_list_problems());
    }
}

static void close_devices(void)
{
    sl_device_close(ocl);
    sl_device_close(cpu);
}

TestSuite(opencl, .init = open_devices, .fini = close_devices);

static float frand(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 16777216.0f * 4.0f - 2.0f;
}

/* A pair of buffers with the same contents, one per device. */
struct pair {
    sl_buffer *c, *o;
    size_t n;
};

static struct pair make(size_t n, uint32_t seed)
{
    struct pair p = {.n = n};
    float *h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = frand(&seed);
    cr_assert_eq(sl_buffer_alloc(cpu, n * 4, &p.c), SL_OK);
    cr_assert_eq(sl_buffer_alloc(ocl, n * 4, &p.o), SL_OK);
    cr_assert_eq(sl_buffer_upload(p.c, 0, h, n * 4), SL_OK);
    cr_assert_eq(sl_buffer_upload(p.o, 0, h, n * 4), SL_OK, "%s", sl_last_error());
    free(h);
    return p;
}

static void drop(struct pair p)
{
    sl_buffer_free(p.c);
    sl_buffer_free(p.o);
}

/* Every element within atol + rtol |ref|. */
static void same(struct pair p, double atol, double rtol, const char *what)
{
    float *a = malloc(p.n * 4), *b = malloc(p.n * 4);
    cr_assert_eq(sl_buffer_download(p.c, 0, a, p.n * 4), SL_OK);
    cr_assert_eq(sl_buffer_download(p.o, 0, b, p.n * 4), SL_OK, "%s", sl_last_error());
    for (size_t i = 0; i < p.n; i++) {
        double tol = atol + rtol * fabs(a[i]);
        if (!(fabs((double)a[i] - (double)b[i]) <= tol))
            cr_assert_fail("%s: element %zu: cpu %.9g, opencl %.9g", what, i, a[i], b[i]);
    }
    free(a);
    free(b);
}

/* Sizes around the float4 path and the work-group size. */
static const size_t SIZES[] = {1, 3, 4, 5, 255, 256, 257, 1029, 70001};

Test(opencl, device_info)
{
    const sl_device_info *i = sl_device_get_info(ocl);
    cr_expect_str_eq(i->backend, "opencl");
    cr_expect_eq(strncmp(i->id, "opencl:", 7), 0);
    cr_expect_gt(strlen(i->name), 0);
    cr_expect_gt(i->memory_bytes, 0);
    cr_expect_gt(i->max_alloc_bytes, 0);
    cr_expect_gt(i->compute_units, 0);
    cr_expect_gt(i->max_workgroup_size, 0);
    cr_expect(i->timestamps);
}

Test(opencl, elementwise_kernels_match_cpu)
{
    for (size_t si = 0; si < SL_ARRAY_LEN(SIZES); si++) {
        size_t n = SIZES[si];
        for (int act = 0; act < SL_ACT_COUNT; act++) {
            struct pair x = make(n, 1), y = make(n, 2), dy = make(n, 3);
            cr_assert_eq(sl_act_forward(cpu, act, n, x.c, y.c), SL_OK);
            cr_assert_eq(sl_act_forward(ocl, act, n, x.o, y.o), SL_OK, "%s", sl_last_error());
            same(y, 1e-6, 1e-5, sl_activation_name(act));
            cr_assert_eq(sl_act_backward(cpu, act, n, x.c, dy.c, dy.c), SL_OK);
            cr_assert_eq(sl_act_backward(ocl, act, n, x.o, dy.o, dy.o), SL_OK, "%s",
                         sl_last_error());
            same(dy, 1e-6, 1e-5, sl_activation_name(act));
            drop(x), drop(y), drop(dy);
        }
        struct pair x = make(n, 4), y = make(n, 5);
        cr_assert_eq(sl_axpy(cpu, n, 0.75f, x.c, y.c), SL_OK);
        cr_assert_eq(sl_axpy(ocl, n, 0.75f, x.o, y.o), SL_OK);
        same(y, 0, 0, "axpy");
        cr_assert_eq(sl_scale(cpu, n, -1.5f, y.c), SL_OK);
        cr_assert_eq(sl_scale(ocl, n, -1.5f, y.o), SL_OK);
        same(y, 0, 0, "scale");
        cr_assert_eq(sl_fill(cpu, n, 3.25f, x.c), SL_OK);
        cr_assert_eq(sl_fill(ocl, n, 3.25f, x.o), SL_OK);
        same(x, 0, 0, "fill");
        drop(x), drop(y);
    }
}

Test(opencl, optimizers_match_cpu)
{
    for (size_t si = 0; si < SL_ARRAY_LEN(SIZES); si++) {
        size_t n = SIZES[si];
        struct pair p = make(n, 6), g = make(n, 7), buf = make(n, 8), m = make(n, 9),
                    v = make(n, 10);
        cr_assert_eq(sl_fill(cpu, n, 0.5f, v.c), SL_OK);
        cr_assert_eq(sl_fill(ocl, n, 0.5f, v.o), SL_OK);
        for (int step = 1; step <= 3; step++) {
            cr_assert_eq(sl_sgd(cpu, n, p.c, g.c, NULL, 0.1f, 0.0f, 0.01f), SL_OK);
            cr_assert_eq(sl_sgd(ocl, n, p.o, g.o, NULL, 0.1f, 0.0f, 0.01f), SL_OK);
            cr_assert_eq(sl_sgd(cpu, n, p.c, g.c, buf.c, 0.1f, 0.9f, 0.01f), SL_OK);
            cr_assert_eq(sl_sgd(ocl, n, p.o, g.o, buf.o, 0.1f, 0.9f, 0.01f), SL_OK);
            cr_assert_eq(
                sl_adam(cpu, n, p.c, g.c, m.c, v.c, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, step),
                SL_OK);
            cr_assert_eq(
                sl_adam(ocl, n, p.o, g.o, m.o, v.o, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, step), SL_OK,
                "%s", sl_last_error());
        }
        same(p, 1e-6, 1e-5, "param");
        same(buf, 1e-6, 1e-5, "momentum");
        same(m, 1e-6, 1e-5, "adam m");
        same(v, 1e-6, 1e-5, "adam v");
        drop(p), drop(g), drop(buf), drop(m), drop(v);
    }
}

Test(opencl, rowwise_kernels_match_cpu)
{
    static const size_t shapes[][2] = {{1, 1}, {3, 10}, {64, 10}, {257, 33}, {5, 1000}};
    for (size_t si = 0; si < SL_ARRAY_LEN(shapes); si++) {
        size_t rows = shapes[si][0], cols = shapes[si][1];
        struct pair y = make(rows * cols, 11), bias = make(cols, 12), db = make(cols, 13);
        cr_assert_eq(sl_bias_add(cpu, rows, cols, y.c, bias.c), SL_OK);
        cr_assert_eq(sl_bias_add(ocl, rows, cols, y.o, bias.o), SL_OK, "%s", sl_last_error());
        same(y, 0, 0, "bias_add");
        for (int beta = 0; beta <= 1; beta++) {
            cr_assert_eq(sl_bias_grad(cpu, rows, cols, y.c, (float)beta, db.c), SL_OK);
            cr_assert_eq(sl_bias_grad(ocl, rows, cols, y.o, (float)beta, db.o), SL_OK);
            same(db, 1e-5, 1e-5, "bias_grad");
        }

        struct pair t = make(rows * cols, 14), loss = make(rows, 15), d = make(rows * cols, 16);
        cr_assert_eq(sl_mse(cpu, rows, cols, y.c, t.c, 0.25f, loss.c, d.c), SL_OK);
        cr_assert_eq(sl_mse(ocl, rows, cols, y.o, t.o, 0.25f, loss.o, d.o), SL_OK);
        same(loss, 1e-6, 1e-5, "mse loss");
        same(d, 1e-6, 1e-5, "mse grad");

        int32_t *labels = malloc(rows * 4);
        for (size_t r = 0; r < rows; r++) labels[r] = (int32_t)((r * 7) % cols);
        sl_buffer *lc, *lo;
        cr_assert_eq(sl_buffer_alloc(cpu, rows * 4, &lc), SL_OK);
        cr_assert_eq(sl_buffer_alloc(ocl, rows * 4, &lo), SL_OK);
        sl_buffer_upload(lc, 0, labels, rows * 4);
        sl_buffer_upload(lo, 0, labels, rows * 4);
        cr_assert_eq(sl_softmax_xent(cpu, rows, cols, y.c, lc, 0.5f, loss.c, d.c), SL_OK);
        cr_assert_eq(sl_softmax_xent(ocl, rows, cols, y.o, lo, 0.5f, loss.o, d.o), SL_OK);
        same(loss, 1e-5, 1e-5, "xent loss");
        same(d, 1e-6, 1e-5, "xent grad");
        sl_buffer_free(lc);
        sl_buffer_free(lo);
        free(labels);
        drop(y), drop(bias), drop(db), drop(t), drop(loss), drop(d);
    }
}

Test(opencl, gemm_matches_cpu)
{
    static const size_t shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {64, 10, 128}, {100, 33, 257}};
    for (size_t si = 0; si < SL_ARRAY_LEN(shapes); si++) {
        size_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1, tb = t & 2;
            struct pair a = make(m * k, 20), b = make(k * n, 21), c = make(m * n, 22);
            /* beta = 0 overwrites C even where it holds NaN */
            float *nan = malloc(m * n * 4);
            for (size_t i = 0; i < m * n; i++) nan[i] = NAN;
            cr_assert_eq(sl_buffer_upload(c.c, 0, nan, m * n * 4), SL_OK);
            cr_assert_eq(sl_buffer_upload(c.o, 0, nan, m * n * 4), SL_OK);
            free(nan);
            cr_assert_eq(sl_gemm(cpu, ta, tb, m, n, k, 1.5f, a.c, b.c, 0.0f, c.c), SL_OK);
            cr_assert_eq(sl_gemm(ocl, ta, tb, m, n, k, 1.5f, a.o, b.o, 0.0f, c.o), SL_OK, "%s",
                         sl_last_error());
            same(c, 1e-4, 1e-4, "gemm beta 0");
            cr_assert_eq(sl_gemm(cpu, ta, tb, m, n, k, -0.5f, a.c, b.c, 1.0f, c.c), SL_OK);
            cr_assert_eq(sl_gemm(ocl, ta, tb, m, n, k, -0.5f, a.o, b.o, 1.0f, c.o), SL_OK);
            same(c, 1e-4, 1e-4, "gemm beta 1");
            drop(a), drop(b), drop(c);
        }
    }
}

Test(opencl, copy_and_events)
{
    struct pair x = make(1000, 30);
    sl_event *e0, *e1;
    cr_assert_eq(sl_event_record(ocl, &e0), SL_OK, "%s", sl_last_error());
    /* overlapping copies inside one buffer behave like memmove */
    cr_assert_eq(sl_buffer_copy(x.c, 40, x.c, 0, 2000), SL_OK);
    cr_assert_eq(sl_buffer_copy(x.o, 40, x.o, 0, 2000), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_buffer_copy(x.c, 100, x.c, 400, 1200), SL_OK);
    cr_assert_eq(sl_buffer_copy(x.o, 100, x.o, 400, 1200), SL_OK);
    cr_assert_eq(sl_event_record(ocl, &e1), SL_OK);
    double ms = -1;
    cr_assert_eq(sl_event_elapsed_ms(e0, e1, &ms), SL_OK, "%s", sl_last_error());
    cr_expect_geq(ms, 0.0);
    cr_assert_eq(sl_event_wait(e1), SL_OK);
    sl_event_free(e0);
    sl_event_free(e1);
    same(x, 0, 0, "copy");
    drop(x);
}

Test(opencl, peak_gflops)
{
    double g = 0;
    cr_assert_eq(sl_device_peak_gflops(ocl, &g), SL_OK, "%s", sl_last_error());
    cr_expect_gt(g, 0.1);
}

Test(opencl, build_failure_reports_the_log)
{
    int st = sl_opencl_build_source(ocl, "__kernel void broken(__global float *x)\n"
                                         "{ x[0] = undeclared_thing_42; }\n");
    cr_assert_eq(st, SL_EBUILD, "status %d: %s", st, sl_last_error());
    cr_expect(strstr(sl_last_error(), "undeclared_thing_42") != NULL, "%s", sl_last_error());
    cr_expect(strstr(sl_last_error(), "build log") != NULL, "%s", sl_last_error());
    cr_assert_eq(sl_opencl_build_source(ocl, "__kernel void ok(__global float *x) { x[0] = 1; }"),
                 SL_OK, "%s", sl_last_error());
}

Test(opencl, error_names)
{
    cr_expect_str_eq(sl_opencl_error_name(-5), "CL_OUT_OF_RESOURCES");
    cr_expect_str_eq(sl_opencl_error_name(-11), "CL_BUILD_PROGRAM_FAILURE");
    cr_expect_str_eq(sl_opencl_error_name(-12345), "CL error -12345");
}

Test(opencl, cache_path_follows_the_environment)
{
    char path[512];
    setenv("SLUICE_CACHE_DIR", "/tmp/x", 1);
    cr_assert_eq(sl_opencl_cache_path(path, sizeof path), SL_OK);
    cr_expect_str_eq(path, "/tmp/x/clblast.json");
    unsetenv("SLUICE_CACHE_DIR");
    setenv("XDG_CACHE_HOME", "/tmp/y", 1);
    cr_assert_eq(sl_opencl_cache_path(path, sizeof path), SL_OK);
    cr_expect_str_eq(path, "/tmp/y/sluice/clblast.json");
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/tmp/z", 1);
    cr_assert_eq(sl_opencl_cache_path(path, sizeof path), SL_OK);
    cr_expect_str_eq(path, "/tmp/z/.cache/sluice/clblast.json");
}

/* A cached entry is applied at open (GEMM stays correct with it), and a malformed cache is
 * ignored rather than failing the open. */
static void gemm_still_correct(void)
{
    sl_device *dev;
    cr_assert_eq(sl_device_open("opencl:0", &dev), SL_OK, "%s", sl_last_error());
    sl_device *saved = ocl;
    ocl = dev;
    size_t m = 70, n = 40, k = 90;
    struct pair a = make(m * k, 40), b = make(k * n, 41), c = make(m * n, 42);
    cr_assert_eq(sl_gemm(cpu, false, true, m, n, k, 1.0f, a.c, b.c, 0.0f, c.c), SL_OK);
    cr_assert_eq(sl_gemm(ocl, false, true, m, n, k, 1.0f, a.o, b.o, 0.0f, c.o), SL_OK, "%s",
                 sl_last_error());
    same(c, 1e-4, 1e-4, "gemm with cached parameters");
    drop(a), drop(b), drop(c);
    ocl = saved;
    sl_device_close(dev);
}

/* Makes `dir` (a mkdtemp template) the tuning cache directory; `path` gets the cache file's path.
 */
static void use_cache_dir(char *dir, char *path, size_t cap)
{
    cr_assert(mkdtemp(dir));
    setenv("SLUICE_CACHE_DIR", dir, 1);
    cr_assert_eq(sl_opencl_cache_path(path, cap), SL_OK);
}

/* Writes a cache with an Xgemm parameter set for the device under test: the given MWG, VWM and
 * XGEMM_MIN_INDIRECT_SIZE, and the built-in CPU set's other values. */
static void write_entry(const char *path, int mwg, int vwm, int min_indirect)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "{\"devices\": {\"%s\": {\"Xgemm\": {\"GEMMK\":0,\"KREG\":1,\"KWG\":64,\"KWI\":8,"
            "\"MDIMA\":8,\"MDIMC\":8,\"MWG\":%d,\"NDIMB\":8,\"NDIMC\":8,\"NWG\":32,\"SA\":1,"
            "\"SB\":1,\"STRM\":0,\"STRN\":0,\"VWM\":%d,\"VWN\":4},"
            "\"GemmRoutine\": {\"XGEMM_MIN_INDIRECT_SIZE\": %d}}}}",
            sl_device_get_info(ocl)->name, mwg, vwm, min_indirect);
    fclose(f);
}

static void write_cache(char *dir, char *path, size_t cap, int mwg, int vwm)
{
    use_cache_dir(dir, path, cap);
    write_entry(path, mwg, vwm, 0);
}

/* What the tuning left in use on a device opened now, and the scratch CLBlast asks for to run
 * sl_gemm(m=70, n=130, k=90, B transposed) with it. */
static void open_and_observe(char *params, size_t cap, size_t *scratch)
{
    sl_device *dev;
    cr_assert_eq(sl_device_open("opencl:0", &dev), SL_OK, "%s", sl_last_error());
    snprintf(params, cap, "%s", sl__cl_gemm_params(dev));
    cr_assert_eq(sl__cl_gemm_scratch_bytes(dev, false, true, 70, 130, 90, scratch), SL_OK, "%s",
                 sl_last_error());
    sl_device_close(dev);
}

Test(opencl, tuning_cache_is_applied_or_ignored)
{
    char dir[] = "/tmp/sluice-cl-XXXXXX", path[512];
    /* The built-in CPU tiles (so PoCL finds the kernel in its cache), another threshold. */
    write_cache(dir, path, sizeof path, 128, 8);
    gemm_still_correct();
    char params[512];
    size_t scratch;
    open_and_observe(params, sizeof params, &scratch);
    cr_expect(strstr(params, "MWG=128") && strstr(params, "XGEMM_MIN_INDIRECT_SIZE=0"),
              "the cached set is not the one in use: '%s'", params);

    FILE *f = fopen(path, "w");
    fprintf(f, "{ not json");
    fclose(f);
    gemm_still_correct();
    /* Ignored: a CPU device falls back to the built-in set, any other to CLBlast's own. */
    open_and_observe(params, sizeof params, &scratch);
    if (sl_device_get_info(ocl)->kind == SL_DEVICE_CPU)
        cr_expect(strstr(params, "XGEMM_MIN_INDIRECT_SIZE=64") != NULL,
                  "a malformed cache should leave the built-in set in use, not '%s'", params);
    else
        cr_expect_str_eq(params, "");

    remove(path);
    rmdir(dir);
    unsetenv("SLUICE_CACHE_DIR");
}

/* A cache entry reaches CLBlast itself, not only sluice's record of it: CLBlast's scratch size for
 * one GEMM follows the planted XGEMM_MIN_INDIRECT_SIZE (none for the direct kernel, which a huge
 * threshold selects) and MWG (C^T's rows, our n = 130, pad to 256 with MWG=128 and to 192 with
 * MWG=64). Only sizes are asked for, so no kernel is compiled for these sets. */
Test(opencl, tuning_cache_entry_reaches_clblast)
{
    char dir[] = "/tmp/sluice-cl-XXXXXX", path[512], params[512];
    use_cache_dir(dir, path, sizeof path);
    size_t direct, mwg128, mwg64;

    write_entry(path, 128, 8, 4096);
    open_and_observe(params, sizeof params, &direct);
    cr_expect(strstr(params, "XGEMM_MIN_INDIRECT_SIZE=4096") != NULL, "in use: '%s'", params);
    cr_expect_eq(direct, 0, "the direct kernel needs no scratch, but CLBlast asked for %zu bytes",
                 direct);

    write_entry(path, 128, 8, 0);
    open_and_observe(params, sizeof params, &mwg128);
    cr_expect(strstr(params, "MWG=128") != NULL, "in use: '%s'", params);
    cr_expect_gt(mwg128, 0, "with XGEMM_MIN_INDIRECT_SIZE=0 CLBlast should pad into scratch");

    write_entry(path, 64, 8, 0);
    open_and_observe(params, sizeof params, &mwg64);
    cr_expect(strstr(params, "MWG=64 ") != NULL, "in use: '%s'", params);
    cr_expect_lt(mwg64, mwg128, "MWG=64 should pad less than MWG=128 (%zu and %zu bytes)", mwg64,
                 mwg128);

    remove(path);
    rmdir(dir);
    unsetenv("SLUICE_CACHE_DIR");
}

/* Run by ctest a second time with an empty ICD directory (test opencl_no_icd): the backend then
 * contributes no devices, says why, and the CPU backend still works. */
Test(opencl_icd, missing_icd_is_reported)
{
    if (!getenv("SLUICE_TEST_NO_ICD")) cr_skip_test("only under the opencl_no_icd test");
    const sl_device_info *infos;
    size_t count;
    cr_assert_eq(sl_device_list(&infos, &count), SL_OK);
    for (size_t i = 0; i < count; i++) cr_expect_str_neq(infos[i].backend, "opencl");
    cr_expect(strstr(sl_device_list_problems(), "no OpenCL platform found") != NULL, "%s",
              sl_device_list_problems());
    sl_device *dev;
    cr_expect_eq(sl_device_open("opencl:0", &dev), SL_EINVAL);
    cr_assert_eq(sl_device_open("cpu", &dev), SL_OK);
    sl_device_close(dev);
}

/* A cached parameter set that CLBlast cannot compile (VWM=3 is no vector width) makes GEMM fail
 * with a status that names CLBlast's error, not a crash. */
Test(opencl, clblast_failure_is_a_clear_status)
{
    char dir[] = "/tmp/sluice-cl-XXXXXX", path[512];
    write_cache(dir, path, sizeof path, 96, 3);
    sl_device *dev;
    cr_assert_eq(sl_device_open("opencl:0", &dev), SL_OK, "%s", sl_last_error());
    sl_buffer *a, *b, *c;
    cr_assert_eq(sl_buffer_alloc(dev, 96 * 96 * 4, &a), SL_OK);
    cr_assert_eq(sl_buffer_alloc(dev, 96 * 96 * 4, &b), SL_OK);
    cr_assert_eq(sl_buffer_alloc(dev, 96 * 96 * 4, &c), SL_OK);
    int st = sl_gemm(dev, false, false, 96, 96, 96, 1.0f, a, b, 0.0f, c);
    cr_expect_neq(st, SL_OK);
    cr_expect(strstr(sl_last_error(), "CLBlast") != NULL, "%s", sl_last_error());
    cr_log_info("as expected: %s", sl_last_error());
    sl_buffer_free(a);
    sl_buffer_free(b);
    sl_buffer_free(c);
    sl_device_close(dev);
    remove(path);
    rmdir(dir);
    unsetenv("SLUICE_CACHE_DIR");
}
