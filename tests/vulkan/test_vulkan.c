/* The Vulkan backend against the CPU oracle: every kernel on every Vulkan device, with odd shapes,
 * transposes, split launches and the buffer paths. Each test ends by asserting that the validation
 * layer (on when SLUICE_VK_VALIDATION=1) reported nothing. Without a Vulkan device the tests
 * skip, or fail where SLUICE_REQUIRE_DEVICES names vulkan (tests/backends/require_devices.h). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/vulkan/vulkan_backend.h"
#include "tests/backends/require_devices.h"

#define MAX_VK 8

static sl_device *cpu;
static sl_device *vk[MAX_VK];
static size_t nvk;

static void setup(void)
{
    cr_assert_eq(sl_device_open("cpu", &cpu), SL_OK, "%s", sl_last_error());
    const sl_device_info *infos;
    size_t count;
    cr_assert_eq(sl_device_list(&infos, &count), SL_OK);
    for (size_t i = 0; i < count && nvk < MAX_VK; i++) {
        if (strcmp(infos[i].backend, "vulkan") != 0) continue;
        cr_assert_eq(sl_device_open(infos[i].id, &vk[nvk]), SL_OK, "%s", sl_last_error());
        nvk++;
    }
}

static void teardown(void)
{
    for (size_t i = 0; i < nvk; i++) sl_device_close(vk[i]);
    sl_device_close(cpu);
    nvk = 0;
}

TestSuite(vulkan, .init = setup, .fini = teardown);

#define NEED_VULKAN()                                                                              \
    do {                                                                                           \
        if (nvk == 0) sl_test_no_device("vulkan", sl_device_list_problems());                      \
    } while (0)

static void no_validation_messages(void)
{
    for (size_t i = 0; i < nvk; i++) cr_assert_eq(sl_device_finish(vk[i]), SL_OK);
    cr_assert_eq(sl_vulkan_validation_messages(), 0, "%llu validation-layer messages (see log)",
                 (unsigned long long)sl_vulkan_validation_messages());
}

static unsigned rng_state = 12345;
static float frand(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static float *rand_vec(size_t n)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = frand();
    return v;
}

static sl_buffer *make(sl_device *dev, const float *data, size_t n)
{
    sl_buffer *b = NULL;
    cr_assert_eq(sl_buffer_alloc(dev, (n ? n : 1) * 4, &b), SL_OK, "%s", sl_last_error());
    if (data && n) cr_assert_eq(sl_buffer_upload(b, 0, data, n * 4), SL_OK, "%s", sl_last_error());
    return b;
}

/* Downloads n floats of b and n of r and checks |x - ref| <= atol + rtol |ref|. */
static void expect_close(const char *what, sl_buffer *b, sl_buffer *r, size_t n, float atol,
                         float rtol)
{
    float *x = malloc(n * 4), *ref = malloc(n * 4);
    cr_assert_eq(sl_buffer_download(b, 0, x, n * 4), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_buffer_download(r, 0, ref, n * 4), SL_OK, "%s", sl_last_error());
    for (size_t i = 0; i < n; i++) {
        float tol = atol + rtol * fabsf(ref[i]);
        if (!(fabsf(x[i] - ref[i]) <= tol))
            cr_assert_fail("%s: element %zu is %.8g, expected %.8g", what, i, x[i], ref[i]);
    }
    free(x);
    free(ref);
}

/* ------------------------------------------------------------------------------------------------
 */

Test(vulkan, device_info)
{
    NEED_VULKAN();
    for (size_t d = 0; d < nvk; d++) {
        const sl_device_info *info = sl_device_get_info(vk[d]);
        cr_expect(!strncmp(info->id, "vulkan:", 7));
        cr_expect_str_eq(info->backend, "vulkan");
        cr_expect(info->name[0] && info->driver[0] && info->vendor[0]);
        cr_expect_gt(info->max_alloc_bytes, 0);
        cr_expect_gt(info->max_buffer_range, 0);
        cr_expect_geq(info->max_workgroup_size, 64);
        cr_expect_gt(info->max_workgroup_count[0], 0);
        cr_expect_gt(info->memory_bytes, 0);
    }
    no_validation_messages();
}

static void gemm_case(sl_device *dev, bool ta, bool tb, size_t m, size_t n, size_t k, float alpha,
                      float beta)
{
    float *a = rand_vec(m * k), *b = rand_vec(k * n), *c = rand_vec(m * n);
    if (beta == 0.0f)
        for (size_t i = 0; i < m * n; i++) c[i] = NAN; /* beta = 0 must overwrite NaN */
    sl_buffer *va = make(dev, a, m * k), *vb = make(dev, b, k * n), *vc = make(dev, c, m * n);
    sl_buffer *ca = make(cpu, a, m * k), *cb = make(cpu, b, k * n), *cc = make(cpu, c, m * n);
    cr_assert_eq(sl_gemm(dev, ta, tb, m, n, k, alpha, va, vb, beta, vc), SL_OK, "%s",
                 sl_last_error());
    cr_assert_eq(sl_gemm(cpu, ta, tb, m, n, k, alpha, ca, cb, beta, cc), SL_OK);
    char what[96];
    snprintf(what, sizeof what, "gemm %c%c m=%zu n=%zu k=%zu alpha=%g beta=%g", ta ? 'T' : 'N',
             tb ? 'T' : 'N', m, n, k, alpha, beta);
    expect_close(what, vc, cc, m * n, 1e-5f * (float)k, 1e-4f);
    sl_buffer_free(va), sl_buffer_free(vb), sl_buffer_free(vc);
    sl_buffer_free(ca), sl_buffer_free(cb), sl_buffer_free(cc);
    free(a), free(b), free(c);
}

Test(vulkan, gemm_shapes_and_transposes)
{
    NEED_VULKAN();
    static const size_t shapes[][3] = {{1, 1, 1},
                                       {7, 5, 3},
                                       {1, 7, 33},
                                       {33, 17, 9},
                                       {16, 64, 8},
                                       {64, 16, 32},
                                       {257, 33, 65},
                                       {10, 257, 7},
                                       /* k % 4 == 0 with ragged m and n: B^T read as vec4s */
                                       {33, 18, 12}};
    for (size_t d = 0; d < nvk; d++)
        for (size_t s = 0; s < SL_ARRAY_LEN(shapes); s++)
            for (int t = 0; t < 4; t++)
                gemm_case(vk[d], t & 1, t & 2, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f,
                          0.0f);
    no_validation_messages();
}

Test(vulkan, gemm_alpha_beta)
{
    NEED_VULKAN();
    for (size_t d = 0; d < nvk; d++) {
        gemm_case(vk[d], false, false, 33, 36, 17, 1.0f, 1.0f);
        gemm_case(vk[d], true, false, 20, 12, 40, 0.5f, 0.25f);
        gemm_case(vk[d], false, true, 9, 13, 5, -2.0f, 1.0f);
        gemm_case(vk[d], false, true, 9, 13, 8, -2.0f, 1.0f);
        gemm_case(vk[d], true, true, 65, 8, 3, 1.0f, 0.0f);
    }
    no_validation_messages();
}

/* Every elementwise kernel once, Vulkan against CPU, on an odd size. */
Test(vulkan, elementwise_kernels)
{
    NEED_VULKAN();
    const size_t rows = 37, cols = 19, n = rows * cols;
    float *x = rand_vec(n), *y = rand_vec(n), *bias = rand_vec(cols);
    for (size_t d = 0; d < nvk; d++) {
        sl_device *dev = vk[d];
        sl_buffer *vx = make(dev, x, n), *vy = make(dev, y, n), *vb = make(dev, bias, cols);
        sl_buffer *cx = make(cpu, x, n), *cy = make(cpu, y, n), *cb = make(cpu, bias, cols);

        cr_assert_eq(sl_bias_add(dev, rows, cols, vy, vb), SL_OK, "%s", sl_last_error());
        sl_bias_add(cpu, rows, cols, cy, cb);
        expect_close("bias_add", vy, cy, n, 1e-6f, 1e-6f);

        cr_assert_eq(sl_bias_grad(dev, rows, cols, vx, 1.0f, vb), SL_OK, "%s", sl_last_error());
        sl_bias_grad(cpu, rows, cols, cx, 1.0f, cb);
        expect_close("bias_grad beta=1", vb, cb, cols, 1e-5f, 1e-5f);
        cr_assert_eq(sl_bias_grad(dev, rows, cols, vx, 0.0f, vb), SL_OK);
        sl_bias_grad(cpu, rows, cols, cx, 0.0f, cb);
        expect_close("bias_grad beta=0", vb, cb, cols, 1e-5f, 1e-5f);

        for (int a = 0; a < SL_ACT_COUNT; a++) {
            sl_buffer *vo = make(dev, NULL, n), *co = make(cpu, NULL, n);
            sl_buffer *vs = make(dev, x, n), *cs = make(cpu, x, n);
            /* Scale inputs up so tanh and sigmoid saturate somewhere. */
            sl_scale(dev, n, 8.0f, vs), sl_scale(cpu, n, 8.0f, cs);
            cr_assert_eq(sl_act_forward(dev, (enum sl_activation)a, n, vs, vo), SL_OK);
            sl_act_forward(cpu, (enum sl_activation)a, n, cs, co);
            expect_close(sl_activation_name((enum sl_activation)a), vo, co, n, 1e-5f, 1e-5f);
            cr_assert_eq(sl_act_backward(dev, (enum sl_activation)a, n, vs, vy, vo), SL_OK);
            sl_act_backward(cpu, (enum sl_activation)a, n, cs, cy, co);
            expect_close("act backward", vo, co, n, 1e-5f, 1e-4f);
            /* In place: y = act(y). */
            cr_assert_eq(sl_act_forward(dev, (enum sl_activation)a, n, vs, vs), SL_OK);
            sl_act_forward(cpu, (enum sl_activation)a, n, cs, cs);
            expect_close("act in place", vs, cs, n, 1e-5f, 1e-5f);
            sl_buffer_free(vo), sl_buffer_free(co), sl_buffer_free(vs), sl_buffer_free(cs);
        }

        cr_assert_eq(sl_axpy(dev, n, 0.75f, vx, vy), SL_OK);
        sl_axpy(cpu, n, 0.75f, cx, cy);
        expect_close("axpy", vy, cy, n, 1e-6f, 1e-6f);
        cr_assert_eq(sl_scale(dev, n, -1.5f, vy), SL_OK);
        sl_scale(cpu, n, -1.5f, cy);
        expect_close("scale", vy, cy, n, 1e-6f, 1e-6f);
        cr_assert_eq(sl_fill(dev, n, 3.25f, vy), SL_OK);
        sl_fill(cpu, n, 3.25f, cy);
        expect_close("fill", vy, cy, n, 0.0f, 0.0f);

        sl_buffer_free(vx), sl_buffer_free(vy), sl_buffer_free(vb);
        sl_buffer_free(cx), sl_buffer_free(cy), sl_buffer_free(cb);
    }
    free(x), free(y), free(bias);
    no_validation_messages();
}

Test(vulkan, losses)
{
    NEED_VULKAN();
    const size_t rows = 13, classes = 11;
    float *logits = rand_vec(rows * classes), *target = rand_vec(rows * classes);
    for (size_t i = 0; i < rows * classes; i++) logits[i] *= 30.0f; /* large logits */
    int32_t labels[13];
    for (size_t r = 0; r < rows; r++) labels[r] = (int32_t)((r * 7) % classes);
    for (size_t d = 0; d < nvk; d++) {
        sl_device *dev = vk[d];
        sl_buffer *vl = make(dev, logits, rows * classes), *cl = make(cpu, logits, rows * classes);
        sl_buffer *vt = make(dev, target, rows * classes), *ct = make(cpu, target, rows * classes);
        sl_buffer *vy = make(dev, NULL, rows), *cy = make(cpu, NULL, rows);
        sl_buffer_upload(vy, 0, labels, sizeof labels),
            sl_buffer_upload(cy, 0, labels, sizeof labels);
        sl_buffer *vloss = make(dev, NULL, rows), *closs = make(cpu, NULL, rows);
        sl_buffer *vd = make(dev, NULL, rows * classes), *cd = make(cpu, NULL, rows * classes);
        cr_assert_eq(sl_softmax_xent(dev, rows, classes, vl, vy, 0.125f, vloss, vd), SL_OK, "%s",
                     sl_last_error());
        sl_softmax_xent(cpu, rows, classes, cl, cy, 0.125f, closs, cd);
        expect_close("xent loss", vloss, closs, rows, 1e-4f, 1e-5f);
        expect_close("xent grad", vd, cd, rows * classes, 1e-6f, 1e-4f);
        cr_assert_eq(sl_mse(dev, rows, classes, vl, vt, 0.5f, vloss, vd), SL_OK);
        sl_mse(cpu, rows, classes, cl, ct, 0.5f, closs, cd);
        expect_close("mse loss", vloss, closs, rows, 1e-4f, 1e-5f);
        expect_close("mse grad", vd, cd, rows * classes, 1e-6f, 1e-5f);
        sl_buffer *bufs[] = {vl, cl, vt, ct, vy, cy, vloss, closs, vd, cd};
        for (size_t i = 0; i < SL_ARRAY_LEN(bufs); i++) sl_buffer_free(bufs[i]);
    }
    free(logits), free(target);
    no_validation_messages();
}

Test(vulkan, optimizers)
{
    NEED_VULKAN();
    const size_t n = 1031;
    float *p = rand_vec(n), *g = rand_vec(n);
    for (size_t d = 0; d < nvk; d++) {
        sl_device *dev = vk[d];
        sl_buffer *vp = make(dev, p, n), *cp = make(cpu, p, n);
        sl_buffer *vg = make(dev, g, n), *cg = make(cpu, g, n);
        sl_buffer *vm = make(dev, NULL, n), *cm = make(cpu, NULL, n);
        sl_buffer *vv = make(dev, NULL, n), *cv = make(cpu, NULL, n);
        for (int step = 0; step < 3; step++) {
            cr_assert_eq(sl_sgd(dev, n, vp, vg, vm, 0.1f, 0.9f, 0.01f), SL_OK, "%s",
                         sl_last_error());
            sl_sgd(cpu, n, cp, cg, cm, 0.1f, 0.9f, 0.01f);
            cr_assert_eq(sl_sgd(dev, n, vp, vg, NULL, 0.05f, 0.0f, 0.0f), SL_OK);
            sl_sgd(cpu, n, cp, cg, NULL, 0.05f, 0.0f, 0.0f);
        }
        expect_close("sgd param", vp, cp, n, 1e-6f, 1e-5f);
        expect_close("sgd momentum", vm, cm, n, 1e-6f, 1e-5f);
        sl_fill(dev, n, 0.0f, vm), sl_fill(cpu, n, 0.0f, cm);
        for (int t = 1; t <= 3; t++) {
            cr_assert_eq(sl_adam(dev, n, vp, vg, vm, vv, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, t),
                         SL_OK, "%s", sl_last_error());
            sl_adam(cpu, n, cp, cg, cm, cv, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, t);
        }
        expect_close("adam param", vp, cp, n, 1e-5f, 1e-5f);
        expect_close("adam m", vm, cm, n, 1e-6f, 1e-5f);
        expect_close("adam v", vv, cv, n, 1e-7f, 1e-5f);
        sl_buffer *bufs[] = {vp, cp, vg, cg, vm, cm, vv, cv};
        for (size_t i = 0; i < SL_ARRAY_LEN(bufs); i++) sl_buffer_free(bufs[i]);
    }
    free(p), free(g);
    no_validation_messages();
}

Test(vulkan, buffers_offsets_and_copies)
{
    NEED_VULKAN();
    unsigned char src[1003], out[1003];
    for (size_t i = 0; i < sizeof src; i++) src[i] = (unsigned char)(i * 31 + 7);
    for (size_t d = 0; d < nvk; d++) {
        sl_buffer *a = NULL, *b = NULL;
        cr_assert_eq(sl_buffer_alloc(vk[d], sizeof src, &a), SL_OK);
        cr_assert_eq(sl_buffer_alloc(vk[d], sizeof src, &b), SL_OK);
        /* New buffers read as zeros. */
        cr_assert_eq(sl_buffer_download(a, 0, out, sizeof out), SL_OK);
        for (size_t i = 0; i < sizeof out; i++) cr_assert_eq(out[i], 0);
        cr_assert_eq(sl_buffer_upload(a, 0, src, sizeof src), SL_OK);
        cr_assert_eq(sl_buffer_copy(b, 3, a, 0, 1000), SL_OK);
        cr_assert_eq(sl_buffer_download(b, 3, out, 1000), SL_OK);
        cr_assert_eq(memcmp(out, src, 1000), 0);
        /* An overlapping copy within one buffer behaves like memmove. */
        unsigned char ref[1003];
        memcpy(ref, src, sizeof ref);
        memmove(ref + 10, ref, 500);
        cr_assert_eq(sl_buffer_copy(a, 10, a, 0, 500), SL_OK);
        cr_assert_eq(sl_buffer_download(a, 0, out, sizeof out), SL_OK);
        cr_assert_eq(memcmp(out, ref, sizeof ref), 0);
        /* Partial upload and download at odd offsets. */
        cr_assert_eq(sl_buffer_upload(a, 501, src, 17), SL_OK);
        cr_assert_eq(sl_buffer_download(a, 501, out, 17), SL_OK);
        cr_assert_eq(memcmp(out, src, 17), 0);
        /* A kernel then a copy then a download keep queue order. */
        cr_assert_eq(sl_fill(vk[d], 250, 2.0f, a), SL_OK);
        cr_assert_eq(sl_buffer_copy(b, 0, a, 0, 1000), SL_OK);
        cr_assert_eq(sl_scale(vk[d], 250, 3.0f, b), SL_OK);
        float f[250];
        cr_assert_eq(sl_buffer_download(b, 0, f, sizeof f), SL_OK);
        for (size_t i = 0; i < 250; i++) cr_assert_eq(f[i], 6.0f);
        sl_buffer_free(a), sl_buffer_free(b);
    }
    no_validation_messages();
}

/* Many small kernels in one batch (more than one descriptor pool's worth) stay in order. */
Test(vulkan, long_batches)
{
    NEED_VULKAN();
    for (size_t d = 0; d < nvk; d++) {
        sl_buffer *x = make(vk[d], NULL, 100);
        cr_assert_eq(sl_fill(vk[d], 100, 0.0f, x), SL_OK);
        for (int i = 0; i < 700; i++)
            cr_assert_eq(sl_scale(vk[d], 100, 1.0f, x) == SL_OK &&
                             sl_fill(vk[d], 100, (float)i, x) == SL_OK,
                         1);
        float f[100];
        cr_assert_eq(sl_buffer_download(x, 0, f, sizeof f), SL_OK);
        for (int i = 0; i < 100; i++) cr_assert_eq(f[i], 699.0f);
        sl_buffer_free(x);
    }
    no_validation_messages();
}

Test(vulkan, events_and_peak)
{
    NEED_VULKAN();
    for (size_t d = 0; d < nvk; d++) {
        sl_buffer *a = make(vk[d], NULL, 128 * 128), *c = make(vk[d], NULL, 128 * 128);
        sl_event *e0 = NULL, *e1 = NULL;
        cr_assert_eq(sl_event_record(vk[d], &e0), SL_OK, "%s", sl_last_error());
        cr_assert_eq(sl_gemm(vk[d], false, false, 128, 128, 128, 1.0f, a, a, 0.0f, c), SL_OK);
        cr_assert_eq(sl_event_record(vk[d], &e1), SL_OK);
        double ms = -1.0;
        cr_assert_eq(sl_event_elapsed_ms(e0, e1, &ms), SL_OK, "%s", sl_last_error());
        cr_assert(ms > 0.0 && ms < 60e3, "elapsed %g ms", ms);
        cr_assert_eq(sl_event_wait(e1), SL_OK);
        sl_event_free(e0), sl_event_free(e1);
        /* An event freed before its batch ran. */
        cr_assert_eq(sl_event_record(vk[d], &e0), SL_OK);
        sl_event_free(e0);
        double gflops = 0.0;
        cr_assert_eq(sl_device_peak_gflops(vk[d], &gflops), SL_OK, "%s", sl_last_error());
        cr_assert_gt(gflops, 0.0);
        sl_buffer_free(a), sl_buffer_free(c);
    }
    no_validation_messages();
}

/* Run with SLUICE_VK_MAX_GROUPS=3 (a ctest entry does) so that every launch is split. */
Test(vulkan, split_launches)
{
    NEED_VULKAN();
    for (size_t d = 0; d < nvk; d++) {
        /* n is not a multiple of 4: the four-per-invocation kernels must leave x[n..n+2]. */
        const size_t n = 5001;
        sl_buffer *x = make(vk[d], NULL, n + 3), *y = make(vk[d], NULL, n + 3);
        cr_assert_eq(sl_fill(vk[d], n + 3, 2.0f, y), SL_OK);
        cr_assert_eq(sl_fill(vk[d], n, 1.5f, x), SL_OK);
        cr_assert_eq(sl_axpy(vk[d], n, 2.0f, x, y), SL_OK);
        float *f = malloc((n + 3) * 4), *g = malloc((n + 3) * 4);
        cr_assert_eq(sl_buffer_download(x, 0, f, (n + 3) * 4), SL_OK);
        cr_assert_eq(sl_buffer_download(y, 0, g, (n + 3) * 4), SL_OK);
        for (size_t i = 0; i < n + 3; i++) {
            cr_assert_eq(f[i], i < n ? 1.5f : 0.0f, "fill element %zu", i);
            cr_assert_eq(g[i], i < n ? 5.0f : 2.0f, "axpy element %zu", i);
        }
        free(f), free(g);
        sl_buffer_free(x), sl_buffer_free(y);
        gemm_case(vk[d], false, false, 300, 520, 9, 1.0f, 0.0f);
        gemm_case(vk[d], true, true, 130, 70, 5, 1.0f, 1.0f);
    }
    no_validation_messages();
}

Test(vulkan, limits_are_checked)
{
    NEED_VULKAN();
    for (size_t d = 0; d < nvk; d++) {
        const sl_device_info *info = sl_device_get_info(vk[d]);
        sl_buffer *b = NULL;
        cr_assert_eq(sl_buffer_alloc(vk[d], (size_t)info->max_alloc_bytes + 1, &b), SL_ELIMIT);
        cr_assert(strstr(sl_last_error(), "largest allocation"), "%s", sl_last_error());
    }
    no_validation_messages();
}
