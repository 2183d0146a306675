/* The CPU backend is the oracle for every other backend, so it is checked here against plain
 * loops in double precision, finite differences, and optimizer steps worked out by hand from
 * PyTorch's formulas. Bad input to the device interface is checked here too. */
#include "kernel_util.h"

#include <cblas.h>

#include "backends/cpu/cpu_impl.h"

static sl_device *cpu;

static void open_cpu(void)
{
    OK(sl_device_open("cpu", &cpu));
}

static void close_cpu(void)
{
    sl_device_close(cpu);
}

TestSuite(reference, .init = open_cpu, .fini = close_cpu);

/* ------------------------------------------------------------------------------------------------
 * GEMM against naive loops */

Test(reference, gemm_matches_naive_loops)
{
    static const size_t shapes[][3] = {{1, 1, 1},    {7, 33, 1},   {33, 7, 257},  {257, 33, 7},
                                       {1, 257, 33}, {64, 48, 80}, {257, 257, 33}};
    for (size_t s = 0; s < SL_ARRAY_LEN(shapes); s++) {
        size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1, tb = t & 2;
            float *a = vec_rand(m * k, 1 + t, -1, 1), *b = vec_rand(k * n, 2 + t, -1, 1);
            float *c0 = vec_rand(m * n, 3 + t, -1, 1);
            const float betas[] = {0.0f, 1.0f};
            for (int bi = 0; bi < 2; bi++) {
                float *ref = naive_gemm(ta, tb, m, n, k, 0.5f, a, b, betas[bi], c0);
                float *got = run_gemm(cpu, ta, tb, m, n, k, 0.5f, a, b, betas[bi], c0);
                char what[96];
                snprintf(what, sizeof what, "gemm %zux%zux%zu ta=%d tb=%d beta=%g", m, n, k, ta, tb,
                         (double)betas[bi]);
                assert_close(ref, got, m * n, 1e-5f, 1e-5f, what);
                free(ref);
                free(got);
            }
            free(a);
            free(b);
            free(c0);
        }
    }
}

/* The CPU backend's own GEMM (backends/cpu/gemm.c) at shapes it takes: row counts that leave a
 * partial tile, K over several blocks of 128 and not a multiple of anything, N of one to three
 * tiles of 64, A transposed or not, beta 1 adding to C and beta 0 over NaN. Against double loops,
 * and against OpenBLAS for the same call. It runs where OpenBLAS has one thread (a device opened
 * with threads 1, as sluice train opens the cpu device) and the CPU has AVX-512; elsewhere it takes
 * no shape, which is checked instead. */
Test(reference, gemm_direct_matches_naive_loops_and_openblas)
{
    static const size_t shapes[][3] = {
        {16, 64, 64}, {23, 128, 65}, {100, 192, 300}, {768, 128, 512}, {61, 64, 129}};
    sl_device *one;
    OK(sl_device_open_with("cpu", &(sl_device_options){.threads = 1}, &one));
    cr_assert_eq(openblas_get_num_threads(), 1);
    bool avx512 = __builtin_cpu_supports("avx512f");
    for (size_t s = 0; s < SL_ARRAY_LEN(shapes); s++) {
        size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        cr_assert_eq(sl__cpu_gemm_direct_fits(false, m, n, k, 1.0f, 0.0f), avx512,
                     "%zux%zux%zu is a shape of the direct GEMM", m, n, k);
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1, nan_c = t & 2;
            float *a = vec_rand(m * k, 11 + t, -1, 1), *b = vec_rand(k * n, 12 + t, -1, 1);
            float *c0 = vec_rand(m * n, 13 + t, -1, 1);
            if (nan_c) c0[0] = c0[m * n - 1] = NAN;
            float beta = nan_c ? 0.0f : 1.0f;
            float *ref = naive_gemm(ta, false, m, n, k, 1.0f, a, b, beta, c0);
            float *got = run_gemm(one, ta, false, m, n, k, 1.0f, a, b, beta, c0);
            sl__cpu_gemm_direct_use(false);
            float *blas = run_gemm(one, ta, false, m, n, k, 1.0f, a, b, beta, c0);
            sl__cpu_gemm_direct_use(true);
            char what[96];
            snprintf(what, sizeof what, "direct gemm %zux%zux%zu ta=%d beta=%g", m, n, k, ta,
                     (double)beta);
            /* a sum of k products rounds to about sqrt(k) of its terms' ulps */
            float tol = 4e-7f * (float)k;
            assert_close(ref, got, m * n, tol, 1e-5f, what);
            assert_close(blas, got, m * n, tol, 1e-5f, what);
            free(ref);
            free(got);
            free(blas);
            free(a);
            free(b);
            free(c0);
        }
    }
    /* and what it leaves to OpenBLAS */
    cr_assert_not(sl__cpu_gemm_direct_fits(true, 768, 128, 128, 1.0f, 0.0f), "B transposed");
    cr_assert_not(sl__cpu_gemm_direct_fits(false, 768, 128, 128, 0.5f, 0.0f), "alpha 0.5");
    cr_assert_not(sl__cpu_gemm_direct_fits(false, 768, 128, 128, 1.0f, 2.0f), "beta 2");
    cr_assert_not(sl__cpu_gemm_direct_fits(false, 768, 100, 128, 1.0f, 0.0f), "N of 100");
    cr_assert_not(sl__cpu_gemm_direct_fits(false, 768, 128, 32, 1.0f, 0.0f), "K of 32");
    cr_assert_not(sl__cpu_gemm_direct_fits(false, 8, 128, 128, 1.0f, 0.0f), "8 rows");
    cr_assert_not(sl__cpu_gemm_direct_fits(false, 1024, 1024, 1024, 1.0f, 0.0f), "1024 cubed");
    sl_device_close(one);
    openblas_set_num_threads(2);
    cr_assert_not(sl__cpu_gemm_direct_fits(false, 768, 128, 128, 1.0f, 0.0f), "two threads");
}

Test(reference, gemm_beta_zero_overwrites_nan)
{
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 1, 1}, c0[4] = {NAN, NAN, INFINITY, NAN};
    float *got = run_gemm(cpu, false, false, 2, 2, 3, 1.0f, a, b, 0.0f, c0);
    const float want[4] = {4, 5, 10, 11};
    assert_close(want, got, 4, 0, 0, "gemm beta=0 over NaN");
    free(got);
}

/* ------------------------------------------------------------------------------------------------
 * Elementwise kernels against their definitions */

Test(reference, bias_and_elementwise)
{
    size_t rows = 7, cols = 33;
    float *y = vec_rand(rows * cols, 4, -1, 1), *bias = vec_rand(cols, 5, -1, 1);
    float *got = run_bias_add(cpu, rows, cols, y, bias);
    for (size_t i = 0; i < rows * cols; i++) cr_assert_float_eq(got[i], y[i] + bias[i % cols], 0);
    free(got);
    float *db0 = vec_rand(cols, 6, -1, 1);
    for (int beta = 0; beta <= 1; beta++) {
        float *db = run_bias_grad(cpu, rows, cols, y, (float)beta, db0);
        for (size_t c = 0; c < cols; c++) {
            double s = beta ? db0[c] : 0.0;
            for (size_t r = 0; r < rows; r++) s += y[r * cols + c];
            cr_assert_float_eq(db[c], (float)s, 1e-5, "bias_grad beta=%d col %zu", beta, c);
        }
        free(db);
    }
    float *x = vec_rand(257, 7, -2, 2);
    free(y);
    y = vec_rand(257, 17, -1, 1);
    float *ax = run_elementwise(cpu, 0, 257, -0.5f, x, y);
    float *sc = run_elementwise(cpu, 1, 257, 3.0f, x, NULL);
    float *fi = run_elementwise(cpu, 2, 257, 1.25f, x, NULL);
    for (size_t i = 0; i < 257; i++) {
        cr_assert_float_eq(ax[i], y[i] - 0.5f * x[i], 1e-6);
        cr_assert_float_eq(sc[i], 3.0f * x[i], 1e-6);
        cr_assert_float_eq(fi[i], 1.25f, 0);
    }
    free(ax);
    free(sc);
    free(fi);
    free(x);
    free(y);
    free(bias);
    free(db0);
}

Test(reference, activations_match_their_formulas)
{
    const float xs[] = {-3.0f, -0.5f, 0.0f, 0.25f, 2.0f};
    size_t n = SL_ARRAY_LEN(xs);
    float *relu = run_act_forward(cpu, SL_ACT_RELU, n, xs);
    float *tanh_ = run_act_forward(cpu, SL_ACT_TANH, n, xs);
    float *sigm = run_act_forward(cpu, SL_ACT_SIGMOID, n, xs);
    float *gelu = run_act_forward(cpu, SL_ACT_GELU_TANH, n, xs);
    float *exact = run_act_forward(cpu, SL_ACT_GELU, n, xs);
    for (size_t i = 0; i < n; i++) {
        double x = xs[i];
        double g = 0.5 * x * (1.0 + tanh(0.79788456080286535588 * (x + 0.044715 * x * x * x)));
        cr_assert_float_eq(relu[i], x > 0 ? x : 0, 0);
        cr_assert_float_eq(tanh_[i], tanh(x), 1e-6);
        cr_assert_float_eq(sigm[i], 1.0 / (1.0 + exp(-x)), 1e-6);
        cr_assert_float_eq(gelu[i], g, 1e-6, "gelu_tanh(%g)", x);
        cr_assert_float_eq(exact[i], 0.5 * x * (1.0 + erf(x / sqrt(2.0))), 1e-6, "gelu(%g)", x);
    }
    /* PyTorch: F.gelu(torch.tensor(2.0), approximate='tanh') = 1.9545977; F.gelu(2.0) = 1.9544997,
     * F.gelu(-0.5) = -0.1542687 */
    cr_assert_float_eq(gelu[4], 1.9545977f, 1e-6);
    cr_assert_float_eq(exact[4], 1.9544997f, 1e-6);
    cr_assert_float_eq(exact[1], -0.1542687f, 1e-6);
    free(exact);
    enum sl_activation act;
    OK(sl_activation_parse("gelu", &act));
    cr_assert_eq(act, SL_ACT_GELU);
    OK(sl_activation_parse("gelu_tanh", &act));
    cr_assert_eq(act, SL_ACT_GELU_TANH);
    cr_assert_str_eq(sl_activation_name(SL_ACT_GELU_TANH), "gelu_tanh");
    free(relu);
    free(tanh_);
    free(sigm);
    free(gelu);
}

/* ------------------------------------------------------------------------------------------------
 * Backward kernels against central finite differences of the forward kernels (in float, so the
 * step is large and the tolerance loose enough for single precision). */

/* The exact GELU and its derivative on a dense grid (an odd count, so the vector loops have a
 * tail) against double erf and exp: the cpu backend's own erf and exp (backends/cpu/cpu_impl.h)
 * must stay within a few ulp, as glibc's erff and expf do. */
Test(reference, exact_gelu_matches_double_erf_closely)
{
    size_t n = (1u << 20) + 3;
    float *x = malloc(n * sizeof *x), *ones = malloc(n * sizeof *ones);
    cr_assert(x && ones);
    for (size_t i = 0; i < n; i++) x[i] = -12.0f + 24.0f * (float)i / (float)(n - 1), ones[i] = 1;
    float *y = run_act_forward(cpu, SL_ACT_GELU, n, x);
    float *d = run_act_backward(cpu, SL_ACT_GELU, n, x, ones);
    float *dfy = run_gelu_backward(cpu, n, x, y, ones); /* Phi from y / x */
    double worst_y = 0, worst_d = 0, worst_dfy = 0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i], cdf = 0.5 * (1.0 + erf(v / sqrt(2.0)));
        double ey = fabs(y[i] - v * cdf) / fmax(1.0, fabs(v));
        double dd = cdf + v * exp(-0.5 * v * v) * 0.39894228040143268;
        double ed = fabs(d[i] - dd), edfy = fabs(dfy[i] - dd);
        worst_y = fmax(worst_y, ey), worst_d = fmax(worst_d, ed), worst_dfy = fmax(worst_dfy, edfy);
    }
    /* Measured: 1.05e-7 and 1.40e-7 without FMA, 1.07e-7 and 1.31e-7 with it (glibc's erff and
     * expf: 1.02e-7 and 1.36e-7). */
    cr_expect_lt(worst_y, 1.5e-7, "gelu: largest error %g (relative above |x| = 1)", worst_y);
    cr_expect_lt(worst_d, 2e-7, "gelu': largest error %g", worst_d);
    /* From y / x: 1.91e-7 with FMA (y's rounding passes into Phi). */
    cr_expect_lt(worst_dfy, 2.5e-7, "gelu' from y: largest error %g", worst_dfy);
    free(y);
    free(d);
    free(dfy);
    const float odd[] = {NAN, INFINITY, -30.0f, 30.0f, 0.0f, -1e-30f};
    y = run_act_forward(cpu, SL_ACT_GELU, 6, odd);
    d = run_act_backward(cpu, SL_ACT_GELU, 6, odd, ones);
    cr_expect(isnan(y[0]) && isnan(d[0]), "NaN in, NaN out");
    cr_expect(y[1] == INFINITY); /* gelu'(inf) is inf * 0 = NaN, as with erff and expf */
    cr_expect(y[2] == 0.0f && d[2] == 0.0f && y[3] == 30.0f && d[3] == 1.0f);
    cr_expect(y[4] == 0.0f && d[4] == 0.5f && y[5] == -0.5e-30f);
    dfy = run_gelu_backward(cpu, 6, odd, y, ones);
    cr_expect(isnan(dfy[0]) && dfy[2] == 0.0f && dfy[3] == 1.0f, "from y: NaN, -30, 30");
    cr_expect(dfy[4] == 0.5f && dfy[5] == 0.5f, "from y: 0 and -1e-30 (Phi 0.5, not 0/0)");
    free(dfy);
    free(y);
    free(d);
    free(x);
    free(ones);
}

Test(reference, activation_backward_matches_finite_differences)
{
    size_t n = 33;
    float *x = vec_rand(n, 8, -3, 3), *ones = vec_new(n);
    for (size_t i = 0; i < n; i++) {
        ones[i] = 1.0f;
        if (fabsf(x[i]) < 0.05f) x[i] = 0.5f; /* relu's kink */
    }
    const float h = 1e-2f;
    float *xp = vec_new(n), *xm = vec_new(n);
    for (size_t i = 0; i < n; i++) {
        xp[i] = x[i] + h;
        xm[i] = x[i] - h;
    }
    for (int a = 0; a < SL_ACT_COUNT; a++) {
        float *d = run_act_backward(cpu, (enum sl_activation)a, n, x, ones);
        float *fp = run_act_forward(cpu, (enum sl_activation)a, n, xp);
        float *fm = run_act_forward(cpu, (enum sl_activation)a, n, xm);
        float *fd = vec_new(n);
        for (size_t i = 0; i < n; i++) fd[i] = (fp[i] - fm[i]) / (2 * h);
        assert_close(fd, d, n, 2e-3f, 2e-3f, sl_activation_name((enum sl_activation)a));
        free(d);
        free(fp);
        free(fm);
        free(fd);
    }
    free(x);
    free(xp);
    free(xm);
    free(ones);
}

static float sum(const float *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += v[i];
    return (float)s;
}

/* The mini-batch loss of the cross-entropy (xent) or MSE kernel: the scaled sum of row losses. */
static double batch_loss(bool xent, size_t rows, size_t cols, const float *in, const void *target,
                         float scale)
{
    float *loss, *d = xent ? run_softmax_xent(cpu, rows, cols, in, target, scale, &loss)
                           : run_mse(cpu, rows, cols, in, target, scale, &loss);
    double s = scale * (double)sum(loss, rows);
    free(loss);
    free(d);
    return s;
}

/* Every element of the kernel's gradient `d` against central differences of batch_loss. */
static void check_loss_gradient(bool xent, size_t rows, size_t cols, float *in, const void *target,
                                float scale, const float *d, double tol)
{
    const float h = 1e-2f;
    for (size_t i = 0; i < rows * cols; i++) {
        float keep = in[i];
        in[i] = keep + h;
        double lp = batch_loss(xent, rows, cols, in, target, scale);
        in[i] = keep - h;
        double lm = batch_loss(xent, rows, cols, in, target, scale);
        in[i] = keep;
        double fd = (lp - lm) / (2 * h);
        cr_assert_float_eq(d[i], fd, tol, "%s gradient[%zu] = %g, finite difference %g",
                           xent ? "softmax_xent" : "mse", i, (double)d[i], fd);
    }
}

Test(reference, softmax_xent_gradient_matches_finite_differences)
{
    size_t rows = 5, classes = 7;
    float *logits = vec_rand(rows * classes, 9, -2, 2);
    int32_t labels[5] = {0, 6, 3, 3, 1};
    float scale = 1.0f / (float)rows, *loss;
    float *d = run_softmax_xent(cpu, rows, classes, logits, labels, scale, &loss);
    /* The per-row loss equals -log softmax at the label. */
    for (size_t r = 0; r < rows; r++) {
        double mx = -1e30, s = 0;
        for (size_t c = 0; c < classes; c++) mx = fmax(mx, logits[r * classes + c]);
        for (size_t c = 0; c < classes; c++) s += exp(logits[r * classes + c] - mx);
        cr_assert_float_eq(loss[r], mx + log(s) - logits[r * classes + labels[r]], 1e-5);
    }
    check_loss_gradient(true, rows, classes, logits, labels, scale, d, 2e-4);
    free(d);
    free(loss);
    free(logits);
}

Test(reference, mse_gradient_matches_finite_differences)
{
    size_t rows = 4, cols = 3;
    float *pred = vec_rand(rows * cols, 10, -1, 1), *target = vec_rand(rows * cols, 11, -1, 1);
    float scale = 1.0f / (float)rows, *loss;
    float *d = run_mse(cpu, rows, cols, pred, target, scale, &loss);
    /* mean of loss[] = PyTorch's MSELoss(reduction='mean') */
    double want = 0;
    for (size_t i = 0; i < rows * cols; i++) want += pow(pred[i] - target[i], 2);
    cr_assert_float_eq(sum(loss, rows) / (float)rows, want / (double)(rows * cols), 1e-6);
    check_loss_gradient(false, rows, cols, pred, target, scale, d, 1e-4);
    free(d);
    free(loss);
    free(pred);
    free(target);
}

/* A linear layer's backward (dX = dY W, dW = dY^T X, db = colsum dY), composed from the GEMM and
 * bias kernels as the executor composes it, against finite differences of L = sum(Y * G). */
Test(reference, linear_backward_matches_finite_differences)
{
    size_t bsz = 3, in = 4, out = 5;
    float *x = vec_rand(bsz * in, 12, -1, 1), *w = vec_rand(out * in, 13, -1, 1);
    float *bias = vec_rand(out, 14, -1, 1), *g = vec_rand(bsz * out, 15, -1, 1);
    float *zero = vec_new(out * in);
    float *dx = run_gemm(cpu, false, false, bsz, in, out, 1.0f, g, w, 0.0f, zero);
    float *dw = run_gemm(cpu, true, false, out, in, bsz, 1.0f, g, x, 0.0f, zero);
    float *db = run_bias_grad(cpu, bsz, out, g, 0.0f, zero);
    /* L(x, w, b) = sum over Y = x W^T + b, weighted by g */
#define LOSS(res)                                                                                  \
    do {                                                                                           \
        float *y_ = run_gemm(cpu, false, true, bsz, out, in, 1.0f, x, w, 0.0f, zero);              \
        float *yb_ = run_bias_add(cpu, bsz, out, y_, bias);                                        \
        double s_ = 0;                                                                             \
        for (size_t i_ = 0; i_ < bsz * out; i_++) s_ += (double)yb_[i_] * g[i_];                   \
        (res) = s_;                                                                                \
        free(y_);                                                                                  \
        free(yb_);                                                                                 \
    } while (0)
    const float h = 1e-2f;
    struct {
        float *param, *grad;
        size_t n;
        const char *name;
    } ps[] = {{x, dx, bsz * in, "dX"}, {w, dw, out * in, "dW"}, {bias, db, out, "db"}};
    for (size_t p = 0; p < 3; p++)
        for (size_t i = 0; i < ps[p].n; i++) {
            double lp, lm;
            float keep = ps[p].param[i];
            ps[p].param[i] = keep + h;
            LOSS(lp);
            ps[p].param[i] = keep - h;
            LOSS(lm);
            ps[p].param[i] = keep;
            cr_assert_float_eq(ps[p].grad[i], (lp - lm) / (2 * h), 1e-3, "%s[%zu]", ps[p].name, i);
        }
#undef LOSS
    free(x);
    free(w);
    free(bias);
    free(g);
    free(zero);
    free(dx);
    free(dw);
    free(db);
}

/* ------------------------------------------------------------------------------------------------
 * Optimizers: values worked out by hand from PyTorch's update rules. */

Test(reference, sgd_momentum_weight_decay_by_hand)
{
    /* torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01), p0 = 1.0, grads 0.5, -0.2:
     * step 1: d = 0.5 + 0.01*1.0 = 0.51; buf = 0.51; p = 1.0 - 0.1*0.51 = 0.949
     * step 2: d = -0.2 + 0.01*0.949 = -0.19051; buf = 0.9*0.51 - 0.19051 = 0.26849;
     *         p = 0.949 - 0.026849 = 0.922151 */
    float p0[1] = {1.0f}, g1[1] = {0.5f}, g2[1] = {-0.2f}, *buf;
    const float *grads[2] = {g1, g2};
    float *p = run_sgd(cpu, 1, p0, grads, 2, 0.1f, 0.9f, 0.01f, &buf);
    cr_assert_float_eq(p[0], 0.922151f, 1e-6);
    cr_assert_float_eq(buf[0], 0.26849f, 1e-6);
    free(p);
    free(buf);
    /* Without momentum: p = 1 - 0.1*0.5 = 0.95, then 0.95 + 0.02 = 0.97 */
    p = run_sgd(cpu, 1, p0, grads, 2, 0.1f, 0.0f, 0.0f, NULL);
    cr_assert_float_eq(p[0], 0.97f, 1e-6);
    free(p);
}

Test(reference, adam_by_hand)
{
    /* torch.optim.Adam([p], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1), p0 = 2.0,
     * grads 0.3 then -0.1:
     * step 1: g = 0.3 + 0.2 = 0.5; m = 0.05; v = 0.00025; mhat = 0.5, vhat = 0.25;
     *         p = 2 - 0.01 * 0.5 / (0.5 + 1e-8) = 1.99
     * step 2: g = -0.1 + 0.199 = 0.099; m = 0.045 + 0.0099 = 0.0549;
     *         v = 0.00024975 + 0.000009801 = 0.000259551; bc1 = 0.19, bc2 = 0.001999;
     *         p = 1.99 - (0.01/0.19) * 0.0549 / (sqrt(0.000259551)/sqrt(0.001999) + 1e-8)
     *           = 1.99 - 0.0526315789 * 0.0549 / 0.360337... = 1.981981... */
    float p0[1] = {2.0f}, g1[1] = {0.3f}, g2[1] = {-0.1f};
    const float *grads[2] = {g1, g2};
    float *p = run_adam(cpu, 1, p0, grads, 1, 0.01f, 0.9f, 0.999f, 1e-8f, 0.1f);
    cr_assert_float_eq(p[0], 1.99f, 1e-6);
    free(p);
    p = run_adam(cpu, 1, p0, grads, 2, 0.01f, 0.9f, 0.999f, 1e-8f, 0.1f);
    double denom = sqrt(0.000259551) / sqrt(0.001999) + 1e-8;
    cr_assert_float_eq(p[0], 1.99 - (0.01 / 0.19) * 0.0549 / denom, 2e-6);
    free(p);
}

Test(reference, adamw_by_hand)
{
    /* torch.optim.AdamW([p], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1), p0 = 2.0,
     * grads 0.3 then -0.1:
     * step 1: p = 2 * (1 - 0.001) = 1.998; m = 0.03; v = 0.00009; mhat = 0.3, vhat = 0.09;
     *         p = 1.998 - 0.01 * 0.3 / (0.3 + 1e-8) = 1.988
     * step 2: p = 1.988 * 0.999 = 1.986012; m = 0.027 - 0.01 = 0.017;
     *         v = 0.00008991 + 0.00001 = 0.00009991; bc1 = 0.19, bc2 = 0.001999;
     *         p = 1.986012 - (0.01/0.19) * 0.017 / (sqrt(0.00009991)/sqrt(0.001999) + 1e-8) */
    float p0[1] = {2.0f}, g1[1] = {0.3f}, g2[1] = {-0.1f};
    const float *grads[2] = {g1, g2};
    float *p = run_adamw(cpu, 1, p0, grads, 1, 0.01f, 0.9f, 0.999f, 1e-8f, 0.1f);
    cr_assert_float_eq(p[0], 1.998 - 0.01 * 0.3 / (0.3 + 1e-8), 1e-6);
    free(p);
    p = run_adamw(cpu, 1, p0, grads, 2, 0.01f, 0.9f, 0.999f, 1e-8f, 0.1f);
    double denom = sqrt(0.00009991) / sqrt(0.001999) + 1e-8;
    cr_assert_float_eq(p[0], 1.986012 - (0.01 / 0.19) * 0.017 / denom, 2e-6);
    free(p);
}

/* ------------------------------------------------------------------------------------------------
 * Bad input: statuses with messages, never a crash */

Test(reference, unknown_device_lists_the_ids)
{
    sl_device *dev = (sl_device *)1;
    cr_assert_eq(sl_device_open("opencl:99", &dev), SL_EINVAL);
    cr_assert_null(dev);
    cr_assert(strstr(sl_last_error(), "opencl:99") && strstr(sl_last_error(), "cpu"), "%s",
              sl_last_error());
}

Test(reference, out_of_range_accesses_are_refused)
{
    sl_buffer *b = buf_f(cpu, NULL, 16), *c = buf_f(cpu, NULL, 16);
    float host[32] = {0};
    cr_assert_eq(sl_buffer_upload(b, 60, host, 8), SL_ERANGE);
    cr_assert_eq(sl_buffer_download(b, 0, host, 65), SL_ERANGE);
    cr_assert_eq(sl_buffer_copy(b, 8, c, 0, 64), SL_ERANGE);
    cr_assert_eq(sl_buffer_upload(b, SIZE_MAX, host, 2), SL_ERANGE);
    /* a 4x5 GEMM output does not fit 16 floats */
    cr_assert_eq(sl_gemm(cpu, false, false, 4, 5, 1, 1.0f, b, b, 0.0f, c), SL_ERANGE);
    cr_assert(strstr(sl_last_error(), "'c'"), "%s", sl_last_error());
    cr_assert_eq(sl_gemm(cpu, false, false, SIZE_MAX / 2, 4, 1, 1.0f, b, b, 0.0f, c), SL_ERANGE);
    cr_assert_eq(sl_act_forward(cpu, SL_ACT_COUNT, 4, b, c), SL_EINVAL);
    cr_assert_eq(sl_bias_grad(cpu, 2, 2, b, 0.5f, c), SL_EINVAL);
    cr_assert_eq(sl_adam(cpu, 4, b, b, b, c, 0.1f, 0.9f, 0.999f, 1e-8f, 0, 0), SL_EINVAL);
    cr_assert_eq(sl_fill(cpu, 17, 0.0f, b), SL_ERANGE);
    sl_buffer *none = NULL;
    cr_assert_eq(sl_buffer_alloc(cpu, 0, &none), SL_EINVAL);
    cr_assert_null(none);
    sl_buffer_free(b);
    sl_buffer_free(c);
}

Test(reference, allocation_beyond_the_device_limit_is_refused)
{
    sl_buffer *b = NULL;
    size_t too_big = (size_t)sl_device_get_info(cpu)->max_alloc_bytes + 1;
    cr_assert_eq(sl_buffer_alloc(cpu, too_big, &b), SL_ELIMIT);
    cr_assert_null(b);
    cr_assert(strstr(sl_last_error(), "largest allocation"), "%s", sl_last_error());
}

Test(reference, peak_and_memory_accounting)
{
    double gflops = 0;
    OK(sl_device_peak_gflops(cpu, &gflops));
    cr_assert_gt(gflops, 0.1);
    uint64_t before = sl_device_allocated(cpu);
    sl_buffer *b = buf_f(cpu, NULL, 1000);
    cr_assert_eq(sl_device_allocated(cpu), before + 4000);
    cr_assert_geq(sl_device_peak_allocated(cpu), before + 4000);
    sl_buffer_free(b);
    cr_assert_eq(sl_device_allocated(cpu), before);
}

/* Large relu and fill take a streaming-store path: same results as the plain loops, odd lengths,
 * NaN and -0 included. */
Test(reference, large_relu_and_fill)
{
    size_t n = (1u << 20) + 13;
    float *x = vec_rand(n, 18, -1, 1);
    x[5] = NAN;
    x[n - 2] = -0.0f;
    x[n - 1] = 3.0f;
    float *y = run_act_forward(cpu, SL_ACT_RELU, n, x);
    for (size_t i = 0; i < n; i++) {
        float want = x[i] > 0.0f ? x[i] : 0.0f;
        cr_assert(y[i] == want && !signbit(y[i]), "relu[%zu] = %g for %g", i, (double)y[i],
                  (double)x[i]);
    }
    float *f = run_elementwise(cpu, 2, n, -2.5f, x, NULL);
    for (size_t i = 0; i < n; i++) cr_assert_eq(f[i], -2.5f, "fill[%zu]", i);
    free(x);
    free(y);
    free(f);
}

/* ------------------------------------------------------------------------------------------------
 * Device options */

/* threads is the CPU backend's OpenBLAS thread count: opening with 1 must leave OpenBLAS at 1,
 * whatever it started with (Criterion runs each test in its own process). */
Test(device_options, cpu_threads_set_openblas)
{
    /* Start from more than one thread where OpenBLAS allows it, so that 1 afterwards is the
     * option's doing and not the machine's default. */
    openblas_set_num_threads(2);
    if (openblas_get_num_threads() < 2)
        cr_log_warn("OpenBLAS runs one thread here; the check below cannot see a change");
    sl_device *dev = NULL;
    sl_device_options opt = {.threads = 1};
    OK(sl_device_open_with("cpu", &opt, &dev));
    cr_expect_eq(openblas_get_num_threads(), 1, "OpenBLAS runs %d threads after threads=1",
                 openblas_get_num_threads());
    /* The device still computes: a 2x2 GEMM through OpenBLAS. */
    const float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8}, c0[4] = {0};
    float *c = run_gemm(dev, false, false, 2, 2, 2, 1.0f, a, b, 0.0f, c0);
    const float want[4] = {19, 22, 43, 50};
    assert_close(want, c, 4, 0.0f, 0.0f, "gemm with threads=1");
    free(c);
    sl_device_close(dev);
}

Test(device_options, null_options_and_zero_threads_are_the_defaults)
{
    int before = openblas_get_num_threads();
    sl_device *dev = NULL;
    OK(sl_device_open_with("cpu", NULL, &dev));
    sl_device_close(dev);
    sl_device_options opt = {0};
    OK(sl_device_open_with("cpu", &opt, &dev));
    sl_device_close(dev);
    cr_expect_eq(openblas_get_num_threads(), before);
}

Test(device_options, negative_threads_are_refused)
{
    sl_device *dev = (sl_device *)1;
    sl_device_options opt = {.threads = -2};
    cr_assert_eq(sl_device_open_with("cpu", &opt, &dev), SL_EINVAL);
    cr_expect_null(dev);
    cr_expect(strstr(sl_last_error(), "-2 threads") != NULL, "%s", sl_last_error());
}
