/* The conformance suite: every stage kernel on every device of one backend (SLUICE_TEST_BACKEND,
 * e.g. opencl or vulkan) against the CPU oracle, at several shapes including odd ones. A backend
 * that is named but has no device fails the suite: CI installs PoCL and lavapipe, so an empty list
 * means a broken install, not a reason to pass. */
#include "kernel_util.h"
#include "require_devices.h"

#include <stdio.h>

#ifdef SL_HAVE_VULKAN
#include "backends/vulkan/vulkan_backend.h"
#endif

#define MAX_DEVS 16

static sl_device *cpu;
static sl_device *devs[MAX_DEVS];
static size_t ndevs;
static const char *backend;

static void setup(void)
{
    backend = getenv("SLUICE_TEST_BACKEND");
    cr_assert(backend && backend[0], "set SLUICE_TEST_BACKEND to the backend under test");
    OK(sl_device_open("cpu", &cpu));
    const sl_device_info *infos;
    size_t count;
    OK(sl_device_list(&infos, &count));
    for (size_t i = 0; i < count && ndevs < MAX_DEVS; i++)
        if (!strcmp(infos[i].backend, backend)) OK(sl_device_open(infos[i].id, &devs[ndevs++]));
    cr_assert_gt(ndevs, 0, "no %s device found (install %s); problems: %s", backend,
                 sl_test_device_package(backend), sl_device_list_problems());
}

static void teardown(void)
{
    for (size_t i = 0; i < ndevs; i++) sl_device_close(devs[i]);
    ndevs = 0;
    sl_device_close(cpu);
#ifdef SL_HAVE_VULKAN
    /* With SLUICE_VK_VALIDATION=1 the Khronos layer checks every call; any message fails. */
    cr_assert_eq(sl_vulkan_validation_messages(), 0, "the validation layer reported %llu messages",
                 (unsigned long long)sl_vulkan_validation_messages());
#endif
}

TestSuite(conformance, .init = setup, .fini = teardown);

static const char *id(sl_device *dev)
{
    return sl_device_get_info(dev)->id;
}

/* Compares a device's output with the oracle's and frees both. */
static void check(float *ref, float *got, size_t n, float atol, float rtol, sl_device *dev,
                  const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    int len = snprintf(what, sizeof what, "%s: ", id(dev));
    vsnprintf(what + len, sizeof what - (size_t)len, fmt, ap);
    va_end(ap);
    assert_close(ref, got, n, atol, rtol, what);
    free(ref);
    free(got);
}

static const size_t sizes[] = {1, 7, 33, 257};

Test(conformance, gemm)
{
    static const size_t shapes[][3] = {{1, 1, 1},       {7, 33, 1},    {33, 7, 257},
                                       {257, 33, 7},    {1, 257, 33},  {64, 64, 64},
                                       {257, 257, 257}, {128, 10, 64}, {10, 128, 64}};
    for (size_t d = 0; d < ndevs; d++)
        for (size_t s = 0; s < SL_ARRAY_LEN(shapes); s++) {
            size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            float *a = vec_rand(m * k, 1, -1, 1), *b = vec_rand(k * n, 2, -1, 1);
            float *c0 = vec_rand(m * n, 3, -1, 1);
            for (int t = 0; t < 4; t++)
                for (int beta = 0; beta <= 1; beta++) {
                    bool ta = t & 1, tb = t & 2;
                    float alpha = beta ? 1.0f : 0.75f;
                    check(run_gemm(cpu, ta, tb, m, n, k, alpha, a, b, (float)beta, c0),
                          run_gemm(devs[d], ta, tb, m, n, k, alpha, a, b, (float)beta, c0), m * n,
                          1e-4f, 1e-4f, devs[d], "gemm %zux%zux%zu ta=%d tb=%d beta=%d", m, n, k,
                          ta, tb, beta);
                }
            free(a);
            free(b);
            free(c0);
        }
}

Test(conformance, gemm_beta_zero_overwrites_nan)
{
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 1, 1}, c0[4] = {NAN, NAN, INFINITY, NAN};
    const float want[4] = {4, 5, 10, 11};
    for (size_t d = 0; d < ndevs; d++) {
        float *got = run_gemm(devs[d], false, false, 2, 2, 3, 1.0f, a, b, 0.0f, c0);
        assert_close(want, got, 4, 0, 0, id(devs[d]));
        free(got);
    }
}

Test(conformance, bias)
{
    for (size_t d = 0; d < ndevs; d++)
        for (size_t i = 0; i < SL_ARRAY_LEN(sizes); i++)
            for (size_t j = 0; j < SL_ARRAY_LEN(sizes); j++) {
                size_t rows = sizes[i], cols = sizes[j];
                float *y = vec_rand(rows * cols, 4, -1, 1), *bias = vec_rand(cols, 5, -1, 1);
                check(run_bias_add(cpu, rows, cols, y, bias),
                      run_bias_add(devs[d], rows, cols, y, bias), rows * cols, 1e-6f, 1e-6f,
                      devs[d], "bias_add %zux%zu", rows, cols);
                for (int beta = 0; beta <= 1; beta++)
                    check(run_bias_grad(cpu, rows, cols, y, (float)beta, bias),
                          run_bias_grad(devs[d], rows, cols, y, (float)beta, bias), cols, 1e-5f,
                          1e-5f, devs[d], "bias_grad %zux%zu beta=%d", rows, cols, beta);
                free(y);
                free(bias);
            }
}

Test(conformance, activations)
{
    const size_t ns[] = {1, 7, 33, 257, 100003};
    for (size_t d = 0; d < ndevs; d++)
        for (size_t i = 0; i < SL_ARRAY_LEN(ns); i++) {
            size_t n = ns[i];
            float *x = vec_rand(n, 6, -6, 6), *dy = vec_rand(n, 7, -1, 1);
            for (int a = 0; a < SL_ACT_COUNT; a++) {
                enum sl_activation act = (enum sl_activation)a;
                check(run_act_forward(cpu, act, n, x), run_act_forward(devs[d], act, n, x), n,
                      1e-5f, 1e-5f, devs[d], "%s forward n=%zu", sl_activation_name(act), n);
                check(run_act_backward(cpu, act, n, x, dy),
                      run_act_backward(devs[d], act, n, x, dy), n, 1e-5f, 1e-5f, devs[d],
                      "%s backward n=%zu", sl_activation_name(act), n);
            }
            /* The GELU's backward from its output too, both sides given the oracle's output. */
            float *y = run_act_forward(cpu, SL_ACT_GELU, n, x);
            check(run_gelu_backward(cpu, n, x, y, dy), run_gelu_backward(devs[d], n, x, y, dy), n,
                  1e-5f, 1e-5f, devs[d], "gelu backward from y n=%zu", n);
            free(y);
            free(x);
            free(dy);
        }
}

Test(conformance, losses)
{
    static const size_t shapes[][2] = {{1, 1}, {7, 10}, {33, 257}, {257, 7}, {1, 33}};
    for (size_t d = 0; d < ndevs; d++)
        for (size_t s = 0; s < SL_ARRAY_LEN(shapes); s++) {
            size_t rows = shapes[s][0], cols = shapes[s][1];
            float *x = vec_rand(rows * cols, 8, -8, 8), *t = vec_rand(rows * cols, 9, -1, 1);
            int32_t *labels = calloc(rows, sizeof *labels);
            for (size_t r = 0; r < rows; r++) labels[r] = (int32_t)((r * 7 + 3) % cols);
            float scale = 1.0f / (float)rows, *lr, *lg;
            float *dr = run_softmax_xent(cpu, rows, cols, x, labels, scale, &lr);
            float *dg = run_softmax_xent(devs[d], rows, cols, x, labels, scale, &lg);
            check(dr, dg, rows * cols, 1e-6f, 1e-4f, devs[d], "softmax_xent grad %zux%zu", rows,
                  cols);
            check(lr, lg, rows, 1e-5f, 1e-5f, devs[d], "softmax_xent loss %zux%zu", rows, cols);
            dr = run_mse(cpu, rows, cols, x, t, scale, &lr);
            dg = run_mse(devs[d], rows, cols, x, t, scale, &lg);
            check(dr, dg, rows * cols, 1e-6f, 1e-5f, devs[d], "mse grad %zux%zu", rows, cols);
            check(lr, lg, rows, 1e-5f, 1e-5f, devs[d], "mse loss %zux%zu", rows, cols);
            free(x);
            free(t);
            free(labels);
        }
}

/* Cross-entropy over token rows: vocabulary widths of 65 (Shakespeare characters), 5000 and
 * GPT-2's 50257, and row counts that are not multiples of any work-group size. (With one
 * invocation per row, lavapipe cut rows of over 32768 classes short: it ends an invocation after
 * 65535 loop iterations in all.) */
Test(conformance, softmax_xent_wide_rows)
{
    static const size_t shapes[][2] = {{257, 65}, {33, 5000}, {67, 5000}, {3, 50257}};
    for (size_t d = 0; d < ndevs; d++)
        for (size_t s = 0; s < SL_ARRAY_LEN(shapes); s++) {
            size_t rows = shapes[s][0], cols = shapes[s][1];
            float *x = vec_rand(rows * cols, 30, -6, 6);
            int32_t *labels = calloc(rows, sizeof *labels);
            for (size_t r = 0; r < rows; r++) labels[r] = (int32_t)((r * 7919 + 11) % cols);
            labels[0] = (int32_t)cols - 1;
            float scale = 1.0f / (float)rows, *lr, *lg;
            float *dr = run_softmax_xent(cpu, rows, cols, x, labels, scale, &lr);
            float *dg = run_softmax_xent(devs[d], rows, cols, x, labels, scale, &lg);
            check(dr, dg, rows * cols, 1e-7f, 1e-4f, devs[d], "softmax_xent grad %zux%zu", rows,
                  cols);
            check(lr, lg, rows, 1e-5f, 1e-5f, devs[d], "softmax_xent loss %zux%zu", rows, cols);
            free(x);
            free(labels);
        }
}

Test(conformance, optimizers)
{
    for (size_t d = 0; d < ndevs; d++)
        for (size_t i = 0; i < SL_ARRAY_LEN(sizes); i++) {
            size_t n = sizes[i] * 3;
            float *p0 = vec_rand(n, 10, -1, 1);
            float *g[3] = {vec_rand(n, 11, -1, 1), vec_rand(n, 12, -1, 1), vec_rand(n, 13, -1, 1)};
            const float *const *grads = (const float *const *)g;
            float *bufr, *bufg;
            check(run_sgd(cpu, n, p0, grads, 3, 0.05f, 0.9f, 0.01f, &bufr),
                  run_sgd(devs[d], n, p0, grads, 3, 0.05f, 0.9f, 0.01f, &bufg), n, 1e-6f, 1e-5f,
                  devs[d], "sgd momentum n=%zu", n);
            check(bufr, bufg, n, 1e-6f, 1e-5f, devs[d], "sgd momentum buffer n=%zu", n);
            check(run_sgd(cpu, n, p0, grads, 3, 0.05f, 0.0f, 0.0f, NULL),
                  run_sgd(devs[d], n, p0, grads, 3, 0.05f, 0.0f, 0.0f, NULL), n, 1e-6f, 1e-5f,
                  devs[d], "sgd plain n=%zu", n);
            check(run_adam(cpu, n, p0, grads, 3, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f),
                  run_adam(devs[d], n, p0, grads, 3, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f), n, 1e-6f,
                  1e-5f, devs[d], "adam n=%zu", n);
            check(run_adamw(cpu, n, p0, grads, 3, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f),
                  run_adamw(devs[d], n, p0, grads, 3, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f), n, 1e-6f,
                  1e-5f, devs[d], "adamw n=%zu", n);
            free(p0);
            for (int k = 0; k < 3; k++) free(g[k]);
        }
}

Test(conformance, elementwise)
{
    const size_t ns[] = {1, 7, 33, 257, 100003};
    for (size_t d = 0; d < ndevs; d++)
        for (size_t i = 0; i < SL_ARRAY_LEN(ns); i++) {
            size_t n = ns[i];
            float *x = vec_rand(n, 14, -1, 1), *y = vec_rand(n, 15, -1, 1);
            for (int kind = 0; kind < 3; kind++)
                check(run_elementwise(cpu, kind, n, 0.37f, x, y),
                      run_elementwise(devs[d], kind, n, 0.37f, x, y), n, 1e-7f, 1e-6f, devs[d],
                      "%s n=%zu", (const char *[]){"axpy", "scale", "fill"}[kind], n);
            free(x);
            free(y);
        }
}

Test(conformance, buffers_and_events)
{
    for (size_t d = 0; d < ndevs; d++) {
        sl_device *dev = devs[d];
        float *x = vec_rand(1000, 16, -1, 1);
        sl_buffer *a = buf_f(dev, x, 1000), *b = buf_f(dev, NULL, 1000);
        OK(sl_buffer_copy(b, 40, a, 400, 2000)); /* floats 100..599 of a to 10..509 of b */
        float got[500];
        OK(sl_buffer_download(b, 40, got, sizeof got));
        assert_close(x + 100, got, 500, 0, 0, id(dev));
        OK(sl_buffer_upload(a, 8, x + 500, 12)); /* partial upload at an offset */
        OK(sl_buffer_download(a, 0, got, 20));
        cr_assert(got[0] == x[0] && got[1] == x[1] && got[2] == x[500] && got[4] == x[502]);
        cr_assert_eq(sl_buffer_copy(b, 0, a, 3996, 8), SL_ERANGE);
        sl_event *e0, *e1;
        double ms = -1;
        OK(sl_event_record(dev, &e0));
        OK(sl_fill(dev, 1000, 1.0f, a));
        OK(sl_event_record(dev, &e1));
        OK(sl_event_wait(e1));
        OK(sl_event_elapsed_ms(e0, e1, &ms));
        cr_assert(ms >= 0.0, "%s: elapsed %g ms", id(dev), ms);
        sl_event_free(e0);
        sl_event_free(e1);
        OK(sl_device_finish(dev));
        sl_buffer_free(a);
        sl_buffer_free(b);
        free(x);
    }
}

/* Writing through a mapping: the range gets what was written, the rest keeps its contents, and
 * the wrapper refuses a second mapping, a foreign pointer and a range outside the buffer. The
 * CPU oracle's own mapping is checked here too. */
static void check_map_write(sl_device *dev)
{
    float *x = vec_rand(1000, 21, -1, 1);
    sl_buffer *a = buf_f(dev, x, 1000);
    void *host = NULL;
    OK(sl_buffer_map_write(a, 400, 2000, &host)); /* floats 100..599 */
    cr_assert_not_null(host);
    void *again = NULL;
    cr_assert_eq(sl_buffer_map_write(a, 0, 4, &again), SL_EINVAL, "%s: mapped twice", id(dev));
    cr_assert_null(again);
    for (int i = 0; i < 500; i++) ((float *)host)[i] = (float)i;
    cr_assert_eq(sl_buffer_unmap(a, x), SL_EINVAL, "%s: unmapped a foreign pointer", id(dev));
    OK(sl_buffer_unmap(a, host));
    cr_assert_eq(sl_buffer_unmap(a, host), SL_EINVAL, "%s: unmapped twice", id(dev));
    float *got = malloc(4000);
    OK(sl_buffer_download(a, 0, got, 4000));
    for (int i = 0; i < 1000; i++) {
        float want = i >= 100 && i < 600 ? (float)(i - 100) : x[i];
        cr_assert(got[i] == want, "%s: float %d is %g, wanted %g", id(dev), i, got[i], want);
    }
    cr_assert_eq(sl_buffer_map_write(a, 3000, 1004, &host), SL_ERANGE);
    /* A buffer freed while mapped gives its mapping back (ASan checks nothing leaks). */
    OK(sl_buffer_map_write(a, 0, 4000, &host));
    sl_buffer_free(a);
    free(got);
    free(x);
}

Test(conformance, map_write)
{
    check_map_write(cpu);
    for (size_t d = 0; d < ndevs; d++) check_map_write(devs[d]);
}

/* Reading through a mapping: the range as the buffer holds it, the buffer itself where the device
 * says its memory is the host's (cpu: writes to the buffer show through) and a copy elsewhere;
 * unmapping changes nothing, and a read mapping is refused like a write one while it lasts. */
static void check_map_read(sl_device *dev)
{
    float *x = vec_rand(1000, 22, -1, 1);
    sl_buffer *a = buf_f(dev, x, 1000);
    const void *host = NULL;
    OK(sl_buffer_map_read(a, 400, 2000, &host)); /* floats 100..599 */
    cr_assert_not_null(host);
    cr_assert_eq(memcmp(host, x + 100, 2000), 0, "%s: the mapping is not the range", id(dev));
    void *w = NULL;
    cr_assert_eq(sl_buffer_map_write(a, 0, 4, &w), SL_EINVAL, "%s: mapped twice", id(dev));
    const void *r = NULL;
    cr_assert_eq(sl_buffer_map_read(a, 0, 4, &r), SL_EINVAL, "%s: mapped twice", id(dev));
    if (sl_device_host_memory(dev)) {
        float *direct = (float *)(uintptr_t)host;
        direct[0] = 42.0f; /* the buffer's own memory */
        x[100] = 42.0f;
    }
    OK(sl_buffer_unmap(a, (void *)(uintptr_t)host));
    float *got = buf_take(a, 1000);
    cr_assert_eq(memcmp(got, x, 4000), 0, "%s: unmapping a read mapping changed the buffer",
                 id(dev));
    free(got);
    free(x);
}

Test(conformance, map_read)
{
    cr_assert(sl_device_host_memory(cpu));
    check_map_read(cpu);
    for (size_t d = 0; d < ndevs; d++) {
        cr_assert(!sl_device_host_memory(devs[d]), "%s", id(devs[d]));
        check_map_read(devs[d]);
    }
}

Test(conformance, limits_are_checked)
{
    for (size_t d = 0; d < ndevs; d++) {
        const sl_device_info *info = sl_device_get_info(devs[d]);
        cr_assert_gt(info->max_alloc_bytes, 0, "%s reports no allocation limit", info->id);
        cr_assert(info->name[0] && info->driver[0], "%s: name and driver must be filled", info->id);
        sl_buffer *b = NULL;
        if (info->max_alloc_bytes < SIZE_MAX) {
            cr_assert_eq(sl_buffer_alloc(devs[d], (size_t)info->max_alloc_bytes + 1, &b),
                         SL_ELIMIT);
            cr_assert_null(b);
        }
        /* buffers of one device are refused by another */
        sl_buffer *on_cpu = buf_f(cpu, NULL, 4), *on_dev = buf_f(devs[d], NULL, 4);
        cr_assert_eq(sl_axpy(devs[d], 4, 1.0f, on_cpu, on_dev), SL_EINVAL);
        cr_assert(strstr(sl_last_error(), "lives on cpu"), "%s", sl_last_error());
        sl_buffer_free(on_cpu);
        sl_buffer_free(on_dev);
        double gflops = 0;
        OK(sl_device_peak_gflops(devs[d], &gflops));
        cr_assert_gt(gflops, 0.0);
    }
}

/* ------------------------------------------------------------------------------------------------
 * Transformer kernels */

Test(conformance, sum_squares)
{
    const size_t ns[] = {1, 7, 257, 4099, 100003, (1u << 20) + 3};
    for (size_t d = 0; d < ndevs; d++)
        for (size_t i = 0; i < SL_ARRAY_LEN(ns); i++) {
            size_t n = ns[i];
            float *x = vec_rand(n, 31, -2, 2);
            float ref = run_sum_squares(cpu, n, x), got = run_sum_squares(devs[d], n, x);
            assert_close(&ref, &got, 1, 0.0f, 1e-5f, id(devs[d]));
            /* Fixed-order reduction: the same bits on a second run. */
            float again = run_sum_squares(devs[d], n, x);
            cr_assert(!memcmp(&got, &again, sizeof got),
                      "%s: sum_squares n=%zu gave %.9g then %.9g", id(devs[d]), n, (double)got,
                      (double)again);
            /* Written at an index (a stage's sums, one per parameter), the same bits. */
            float at = run_sum_squares_at(devs[d], n, x, 5);
            cr_assert(!memcmp(&got, &at, sizeof got), "%s: sum_squares n=%zu at 5 gave %.9g",
                      id(devs[d]), n, (double)at);
            free(x);
        }
}

Test(conformance, layernorm)
{
    static const size_t shapes[][2] = {{1, 1}, {7, 33}, {33, 257}, {257, 7}, {65, 768}};
    for (size_t d = 0; d < ndevs; d++)
        for (size_t s = 0; s < SL_ARRAY_LEN(shapes); s++) {
            size_t rows = shapes[s][0], cols = shapes[s][1], e = rows * cols;
            float *x = vec_rand(e, 32, -3, 2), *w = vec_rand(cols, 33, -1, 1);
            float *b = vec_rand(cols, 34, -1, 1), *dy = vec_rand(e, 35, -1, 1);
            float *dw0 = vec_rand(cols, 36, -1, 1), *db0 = vec_rand(cols, 37, -1, 1);
            float *mr, *rr, *mg, *rg;
            float *yr = run_layernorm_forward(cpu, rows, cols, x, w, b, &mr, &rr);
            float *yg = run_layernorm_forward(devs[d], rows, cols, x, w, b, &mg, &rg);
            check(yr, yg, e, 1e-5f, 1e-4f, devs[d], "layernorm y %zux%zu", rows, cols);
            check(mr, mg, rows, 1e-6f, 1e-5f, devs[d], "layernorm mean %zux%zu", rows, cols);
            /* rstd of a one-column row is 1/sqrt(eps): keep the CPU's for the backward. */
            float *mean, *rstd;
            free(run_layernorm_forward(cpu, rows, cols, x, w, b, &mean, &rstd));
            check(rr, rg, rows, 1e-6f, 1e-4f, devs[d], "layernorm rstd %zux%zu", rows, cols);
            float *dwr, *dbr, *dwg, *dbg;
            float *dxr =
                run_layernorm_backward(cpu, rows, cols, dy, x, mean, rstd, w, dw0, db0, &dwr, &dbr);
            float *dxg = run_layernorm_backward(devs[d], rows, cols, dy, x, mean, rstd, w, dw0, db0,
                                                &dwg, &dbg);
            check(dxr, dxg, e, 1e-4f, 1e-4f, devs[d], "layernorm dx %zux%zu", rows, cols);
            check(dwr, dwg, cols, 1e-4f, 1e-4f, devs[d], "layernorm dweight %zux%zu", rows, cols);
            check(dbr, dbg, cols, 1e-5f, 1e-5f, devs[d], "layernorm dbias %zux%zu", rows, cols);
            free(x), free(w), free(b), free(dy), free(dw0), free(db0), free(mean), free(rstd);
        }
}

Test(conformance, embedding)
{
    /* batch, seq, cols, vocab */
    static const size_t shapes[][4] = {
        {1, 1, 1, 1}, {3, 7, 33, 65}, {2, 257, 5, 11}, {4, 33, 257, 300}, {5, 3, 768, 7}};
    for (size_t d = 0; d < ndevs; d++)
        for (size_t s = 0; s < SL_ARRAY_LEN(shapes); s++) {
            size_t bsz = shapes[s][0], seq = shapes[s][1], cols = shapes[s][2];
            size_t vocab = shapes[s][3], n = bsz * seq;
            int32_t *tok = calloc(n, sizeof *tok);
            /* Many repeats (a small set of tokens for each vocabulary) and, where there is room,
             * one token out of range, which reads as a zero row and adds to nothing. */
            for (size_t i = 0; i < n; i++) tok[i] = (int32_t)((i * i * 7 + 3 * i) % vocab);
            if (n > 4) tok[n / 2] = (int32_t)vocab;
            float *wte = vec_rand(vocab * cols, 40, -1, 1), *wpe = vec_rand(seq * cols, 41, -1, 1);
            float *dout = vec_rand(n * cols, 42, -1, 1);
            float *ref = run_embedding_forward(cpu, bsz, seq, cols, vocab, tok, wte, wpe);
            float *got = run_embedding_forward(devs[d], bsz, seq, cols, vocab, tok, wte, wpe);
            check(ref, got, n * cols, 0.0f, 0.0f, devs[d], "embedding forward %zux%zux%zu V=%zu",
                  bsz, seq, cols, vocab);
            /* The backward sums in a fixed order: the CPU's bits exactly, on every run. */
            float *per, *peg, *peg2;
            float *ter =
                run_embedding_backward(cpu, bsz, seq, cols, vocab, tok, dout, wte, wpe, &per);
            float *teg =
                run_embedding_backward(devs[d], bsz, seq, cols, vocab, tok, dout, wte, wpe, &peg);
            float *teg2 =
                run_embedding_backward(devs[d], bsz, seq, cols, vocab, tok, dout, wte, wpe, &peg2);
            cr_assert(!memcmp(teg, teg2, vocab * cols * 4) && !memcmp(peg, peg2, seq * cols * 4),
                      "%s: embedding backward differs between runs", id(devs[d]));
            free(teg2);
            free(peg2);
            check(ter, teg, vocab * cols, 0.0f, 0.0f, devs[d], "embedding dwte %zux%zux%zu V=%zu",
                  bsz, seq, cols, vocab);
            check(per, peg, seq * cols, 0.0f, 0.0f, devs[d], "embedding dwpe %zux%zux%zu V=%zu",
                  bsz, seq, cols, vocab);
            free(tok), free(wte), free(wpe), free(dout);
        }
}

/* Causal self-attention: the device's way (the composed batched GEMMs and softmax kernels, or its
 * fused kernel) against the CPU's fused kernel, forward and backward. */
Test(conformance, attention)
{
    static const size_t shapes[][4] = {{1, 1, 1, 1}, {2, 5, 3, 7}, {2, 64, 4, 32}, {1, 70, 1, 33}};
    for (size_t d = 0; d < ndevs; d++)
        for (size_t s = 0; s < SL_ARRAY_LEN(shapes); s++) {
            size_t B = shapes[s][0], T = shapes[s][1], H = shapes[s][2], hs = shapes[s][3];
            size_t e_qkv = B * T * 3 * H * hs, e_att = B * H * T * T, e_y = B * T * H * hs;
            float scale = 1.0f / sqrtf((float)hs);
            float *qkv = vec_rand(e_qkv, 45, -2, 2), *dy = vec_rand(e_y, 46, -1, 1), *ar, *ag;
            float *yr = run_attention(cpu, false, B, T, H, hs, scale, qkv, NULL, NULL, &ar);
            float *yg = run_attention(devs[d], false, B, T, H, hs, scale, qkv, NULL, NULL, &ag);
            check(yr, yg, e_y, 1e-6f, 1e-4f, devs[d], "attention y B%zu T%zu H%zu hs%zu", B, T, H,
                  hs);
            check(run_attention(cpu, false, B, T, H, hs, scale, qkv, ar, dy, NULL),
                  run_attention(devs[d], false, B, T, H, hs, scale, qkv, ar, dy, NULL), e_qkv,
                  1e-5f, 1e-4f, devs[d], "attention dqkv B%zu T%zu H%zu hs%zu", B, T, H, hs);
            check(ar, ag, e_att, 1e-7f, 1e-5f, devs[d], "attention att B%zu T%zu H%zu hs%zu", B, T,
                  H, hs);
            free(qkv), free(dy);
        }
}

Test(conformance, causal_softmax)
{
    static const size_t shapes[][2] = {{1, 1}, {3, 7}, {5, 33}, {2, 257}, {1, 300}};
    for (size_t d = 0; d < ndevs; d++)
        for (size_t s = 0; s < SL_ARRAY_LEN(shapes); s++) {
            size_t heads = shapes[s][0], seq = shapes[s][1], e = heads * seq * seq;
            float *sc = vec_rand(e, 43, -8, 8), *dp = vec_rand(e, 44, -1, 1);
            const float scale = 0.125f;
            float *pr = run_causal_softmax(cpu, heads, seq, scale, sc, NULL, false);
            for (int inplace = 0; inplace <= 1; inplace++) {
                float *pg = run_causal_softmax(devs[d], heads, seq, scale, sc, NULL, inplace);
                float *pr2 = vec_new(e);
                memcpy(pr2, pr, e * 4);
                check(pr2, pg, e, 1e-7f, 1e-5f, devs[d], "causal softmax %zux%zu in place=%d",
                      heads, seq, inplace);
                check(run_causal_softmax(cpu, heads, seq, scale, pr, dp, false),
                      run_causal_softmax(devs[d], heads, seq, scale, pr, dp, inplace), e, 1e-6f,
                      1e-4f, devs[d], "causal softmax backward %zux%zu in place=%d", heads, seq,
                      inplace);
            }
            /* Nothing beyond the diagonal is read: NaN there changes nothing, on any device
             * (cpu included), forward or backward. */
            float *scn = vec_new(e), *dpn = vec_new(e), *prn = vec_new(e);
            memcpy(scn, sc, e * 4), memcpy(dpn, dp, e * 4), memcpy(prn, pr, e * 4);
            for (size_t i = 0; i < e; i++)
                if (i % seq > (i / seq) % seq) scn[i] = dpn[i] = prn[i] = NAN;
            for (size_t w = 0; w < 2; w++) {
                sl_device *dev = w ? devs[d] : cpu;
                float *pr2 = vec_new(e);
                memcpy(pr2, pr, e * 4);
                check(pr2, run_causal_softmax(dev, heads, seq, scale, scn, NULL, false), e, 1e-7f,
                      1e-5f, dev, "causal softmax %zux%zu, NaN above the diagonal", heads, seq);
                check(run_causal_softmax(cpu, heads, seq, scale, pr, dp, false),
                      run_causal_softmax(dev, heads, seq, scale, prn, dpn, false), e, 1e-6f, 1e-4f,
                      dev, "causal softmax backward %zux%zu, NaN above the diagonal", heads, seq);
            }
            free(pr), free(sc), free(dp), free(scn), free(dpn), free(prn);
        }
}

Test(conformance, copy_strided)
{
    /* B, T, H, hs */
    static const size_t shapes[][4] = {{1, 1, 1, 1}, {3, 7, 5, 3}, {2, 65, 4, 16}};
    for (size_t d = 0; d < ndevs; d++)
        for (size_t s = 0; s < SL_ARRAY_LEN(shapes); s++) {
            size_t B = shapes[s][0], T = shapes[s][1], H = shapes[s][2], hs = shapes[s][3];
            size_t C = H * hs, n = B * T * 3 * C, packed = B * H * T * hs, pad = 5;
            const size_t shape[4] = {B, H, T, hs};
            const size_t rows[4] = {T * 3 * C, hs, 3 * C, 1};
            const size_t heads[4] = {H * T * hs, T * hs, hs, 1};
            float *qkv = vec_rand(n, 72, -1, 1), *p0 = vec_rand(packed + pad, 73, -1, 1);
            float *r0 = vec_rand(n, 74, -1, 1);
            for (size_t j = 0; j < 3; j++) {
                /* Split: head j of [B, T, 3C] into packed [B, H, T, hs] after `pad` elements. */
                check(
                    run_copy_strided(cpu, shape, qkv, n, j * C, rows, p0, packed + pad, pad, heads),
                    run_copy_strided(devs[d], shape, qkv, n, j * C, rows, p0, packed + pad, pad,
                                     heads),
                    packed + pad, 0.0f, 0.0f, devs[d], "copy strided split %zu %zux%zux%zux%zu", j,
                    B, T, H, hs);
                /* Merge: packed (from offset pad) back into the j-th third of the rows. */
                check(
                    run_copy_strided(cpu, shape, p0, packed + pad, pad, heads, r0, n, j * C, rows),
                    run_copy_strided(devs[d], shape, p0, packed + pad, pad, heads, r0, n, j * C,
                                     rows),
                    n, 0.0f, 0.0f, devs[d], "copy strided merge %zu %zux%zux%zux%zu", j, B, T, H,
                    hs);
            }
            free(qkv), free(p0), free(r0);
        }
    /* Broadcast: a row (stride 0 down the rows) into every row of a matrix, as the linear layers
     * start their output from the bias. */
    static const size_t bshapes[][2] = {{1, 1}, {7, 5}, {768, 384}};
    for (size_t d = 0; d < ndevs; d++)
        for (size_t s = 0; s < SL_ARRAY_LEN(bshapes); s++) {
            size_t rows = bshapes[s][0], cols = bshapes[s][1], n = rows * cols + 3;
            const size_t shape[4] = {1, 1, rows, cols}, from[4] = {0, 0, 0, 1};
            const size_t to[4] = {0, 0, cols, 1};
            float *row = vec_rand(cols + 2, 75, -1, 1), *y0 = vec_rand(n, 76, -1, 1);
            float *ref = run_copy_strided(cpu, shape, row, cols + 2, 2, from, y0, n, 3, to);
            for (size_t r = 0; r < rows; r++)
                cr_assert(!memcmp(ref + 3 + r * cols, row + 2, cols * 4),
                          "cpu: broadcast %zux%zu row %zu", rows, cols, r);
            check(ref, run_copy_strided(devs[d], shape, row, cols + 2, 2, from, y0, n, 3, to), n,
                  0.0f, 0.0f, devs[d], "copy strided broadcast %zux%zu", rows, cols);
            free(row), free(y0);
        }
}

Test(conformance, gemm_strided_batched)
{
    /* m, n, k, batch */
    static const size_t shapes[][4] = {{1, 1, 1, 1},    {7, 33, 5, 3},   {33, 7, 257, 2},
                                       {17, 64, 12, 5}, {64, 64, 64, 4}, {1, 257, 33, 7}};
    for (size_t d = 0; d < ndevs; d++)
        for (size_t s = 0; s < SL_ARRAY_LEN(shapes); s++) {
            size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2], batch = shapes[s][3];
            /* Strides: packed; padded by an odd count; A shared by every batch entry. */
            size_t strides[3][3] = {{m * k, k * n, m * n},
                                    {m * k + 3, k * n + 5, m * n + 1},
                                    {0, k * n + 4, m * n + 2}};
            for (int st = 0; st < 3; st++) {
                size_t sa = strides[st][0], sb = strides[st][1], scs = strides[st][2];
                size_t na = sa * (batch - 1) + m * k, nb = sb * (batch - 1) + k * n;
                size_t nc = scs * (batch - 1) + m * n;
                float *a = vec_rand(na, 45, -1, 1), *b = vec_rand(nb, 46, -1, 1);
                float *c0 = vec_rand(nc, 47, -1, 1);
                for (int t = 0; t < 4; t++)
                    for (int beta = 0; beta <= 1; beta++) {
                        bool ta = t & 1, tb = t & 2;
                        float alpha = beta ? 1.0f : 0.75f;
                        check(run_gemm_batched(cpu, ta, tb, m, n, k, alpha, a, sa, na, b, sb, nb,
                                               (float)beta, c0, scs, nc, batch),
                              run_gemm_batched(devs[d], ta, tb, m, n, k, alpha, a, sa, na, b, sb,
                                               nb, (float)beta, c0, scs, nc, batch),
                              nc, 1e-4f, 1e-4f, devs[d],
                              "gemm batched %zux%zux%zu x%zu strides %d ta=%d tb=%d beta=%d", m, n,
                              k, batch, st, ta, tb, beta);
                    }
                free(a), free(b), free(c0);
            }
        }
}

/* Every sample's heads in one call: views grouped by sample ([B, T, 3C] rows, group H, group
 * stride T*3C; scores [B, H, T, T]). On the cpu the grouped call equals B calls of one sample
 * each; every device equals the cpu. */
static void grouped_views(size_t T, size_t base)
{
    const size_t B = 3, H = 2, hs = 4, C = H * hs;
    size_t nq = B * T * 3 * C + 1, ns = B * H * T * T, ny = B * T * C + 1;
    float *qkv = vec_rand(nq, 81, -1, 1), *att = vec_rand(ns, 82, -1, 1);
    float *y0 = vec_rand(ny, 83, -1, 1), *s0 = vec_rand(ns, 84, -1, 1);
    sl_gemm_view q = {NULL, base, 3 * C, hs, H, T * 3 * C};
    sl_gemm_view kk = {NULL, base + C, 3 * C, hs, H, T * 3 * C};
    sl_gemm_view v = {NULL, base + 2 * C, 3 * C, hs, H, T * 3 * C};
    sl_gemm_view sc = {NULL, 0, T, T * T, H, H * T * T}, y = {NULL, base, C, hs, H, T * C};
    float *ref_s = run_gemm_views(cpu, false, true, T, T, hs, 1.0f, qkv, nq, q, qkv, nq, kk, 1.0f,
                                  s0, ns, sc, B * H);
    float *ref_y = run_gemm_views(cpu, true, false, T, hs, T, 0.5f, att, ns, sc, qkv, nq, v, 0.0f,
                                  y0, ny, y, B * H);
    /* the same, one sample at a time */
    float *one_s = vec_new(ns), *one_y = vec_new(ny);
    memcpy(one_s, s0, ns * 4), memcpy(one_y, y0, ny * 4);
    for (size_t b = 0; b < B; b++) {
        sl_gemm_view qb = q, kb = kk, vb = v, sb = sc, yb = y;
        qb.group = kb.group = vb.group = sb.group = yb.group = 0;
        qb.offset += b * T * 3 * C, kb.offset += b * T * 3 * C, vb.offset += b * T * 3 * C;
        sb.offset += b * H * T * T, yb.offset += b * T * C;
        float *got_s = run_gemm_views(cpu, false, true, T, T, hs, 1.0f, qkv, nq, qb, qkv, nq, kb,
                                      1.0f, one_s, ns, sb, H);
        float *got_y = run_gemm_views(cpu, true, false, T, hs, T, 0.5f, att, ns, sb, qkv, nq, vb,
                                      0.0f, one_y, ny, yb, H);
        memcpy(one_s, got_s, ns * 4), memcpy(one_y, got_y, ny * 4);
        free(got_s), free(got_y);
    }
    cr_assert(!memcmp(ref_s, one_s, ns * 4) && !memcmp(ref_y, one_y, ny * 4),
              "cpu: the grouped call differs from one call per sample");
    for (size_t d = 0; d < ndevs; d++) { /* check() frees what it is given: copies of the cpu's */
        float *rs = vec_new(ns), *ry = vec_new(ny);
        memcpy(rs, ref_s, ns * 4), memcpy(ry, ref_y, ny * 4);
        check(rs,
              run_gemm_views(devs[d], false, true, T, T, hs, 1.0f, qkv, nq, q, qkv, nq, kk, 1.0f,
                             s0, ns, sc, B * H),
              ns, 1e-4f, 1e-4f, devs[d], "grouped q k^T");
        check(ry,
              run_gemm_views(devs[d], true, false, T, hs, T, 0.5f, att, ns, sc, qkv, nq, v, 0.0f,
                             y0, ny, y, B * H),
              ny, 1e-4f, 1e-4f, devs[d], "grouped att^T v");
    }
    free(ref_s), free(ref_y), free(one_s), free(one_y), free(qkv), free(att), free(y0), free(s0);
}

/* Odd offsets and T (OpenCL then goes a matrix at a time) and aligned ones (a strided batch per
 * group). */
Test(conformance, gemm_batched_grouped_views)
{
    grouped_views(9, 1);
    grouped_views(8, 0);
}

/* Attention heads in place: H heads of hs side by side in rows of `row` (q at 0, k at C, v at 2C
 * of [T, 3C]; the output at 0 of [T, C]), both products of the forward and the transposed ones of
 * the backward, beta 0 over NaN and beta 1; and views whose offsets or ld are odd. */
Test(conformance, gemm_batched_views)
{
    static const size_t shapes[][3] = {{64, 4, 32}, {7, 3, 5}, {33, 2, 6}}; /* T, H, hs */
    for (size_t d = 0; d < ndevs; d++)
        for (size_t s = 0; s < SL_ARRAY_LEN(shapes); s++) {
            size_t T = shapes[s][0], H = shapes[s][1], hs = shapes[s][2], C = H * hs;
            size_t nq = T * 3 * C + 1, ns = H * T * T, ny = T * C + 1;
            float *qkv = vec_rand(nq, 77, -1, 1), *att = vec_rand(ns, 78, -1, 1);
            float *y0 = vec_rand(ny, 79, -1, 1), *s0 = vec_rand(ns, 80, -1, 1);
            sl_gemm_view q = {NULL, 1, 3 * C, hs, 0, 0}, kk = {NULL, 1 + C, 3 * C, hs, 0, 0};
            sl_gemm_view v = {NULL, 1 + 2 * C, 3 * C, hs, 0, 0}, sc = {NULL, 0, T, T * T, 0, 0};
            sl_gemm_view y = {NULL, 1, C, hs, 0, 0};
            for (int beta = 0; beta <= 1; beta++) {
                float *yin = vec_new(ny), *sin = vec_new(ns);
                memcpy(yin, y0, ny * 4), memcpy(sin, s0, ns * 4);
                if (!beta)
                    for (size_t t = 0; t < T; t++)
                        for (size_t c = 0; c < C; c++) yin[1 + t * C + c] = NAN;
                /* scores = q k^T; y = att v; att^T y; scores^T q */
                check(run_gemm_views(cpu, false, true, T, T, hs, 1.0f, qkv, nq, q, qkv, nq, kk,
                                     (float)beta, sin, ns, sc, H),
                      run_gemm_views(devs[d], false, true, T, T, hs, 1.0f, qkv, nq, q, qkv, nq, kk,
                                     (float)beta, sin, ns, sc, H),
                      ns, 1e-4f, 1e-4f, devs[d], "gemm views q k^T T=%zu H=%zu beta=%d", T, H,
                      beta);
                for (int ta = 0; ta <= 1; ta++)
                    check(run_gemm_views(cpu, ta, false, T, hs, T, 0.5f, att, ns, sc, qkv, nq, v,
                                         (float)beta, yin, ny, y, H),
                          run_gemm_views(devs[d], ta, false, T, hs, T, 0.5f, att, ns, sc, qkv, nq,
                                         v, (float)beta, yin, ny, y, H),
                          ny, 1e-4f, 1e-4f, devs[d], "gemm views att%s v T=%zu H=%zu beta=%d",
                          ta ? "^T" : "", T, H, beta);
                free(yin), free(sin);
            }
            free(qkv), free(att), free(y0), free(s0);
        }
}
