/* The CPU backend: plain C on host memory, with GEMM through OpenBLAS. It is the oracle that every
 * other backend is tested against, and a real device that users train on ("devices": "cpu").
 *
 * Everything runs synchronously on the calling thread, so finish() has nothing to wait for. */
#define _GNU_SOURCE
#include "backends/backend_impl.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/cpu/cpu.h"
#include "backends/cpu/cpu_impl.h"

/* ------------------------------------------------------------------------------------------------
 * Device */

static void read_cpu_name(char *name, size_t cap)
{
    snprintf(name, cap, "host CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        char *colon = strchr(line, ':');
        if (!colon) break;
        colon += 1 + (colon[1] == ' ');
        colon[strcspn(colon, "\n")] = '\0';
        snprintf(name, cap, "%s", colon);
        break;
    }
    fclose(f);
}

static int cpu_enumerate(sl_device_info *infos, size_t cap, size_t *count)
{
    *count = 0;
    if (cap == 0) return SL_OK;
    sl_device_info *d = &infos[0];
    memset(d, 0, sizeof *d);
    snprintf(d->id, sizeof d->id, "cpu");
    read_cpu_name(d->name, sizeof d->name);
    snprintf(d->vendor, sizeof d->vendor, "host");
    const char *blas = OPENBLAS_VERSION;
    while (*blas == ' ') blas++;
    snprintf(d->driver, sizeof d->driver, "sluice cpu, %s", blas);
    d->kind = SL_DEVICE_CPU;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    d->memory_bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    d->compute_units = cores > 0 ? (uint32_t)cores : 1;
    d->max_alloc_bytes = d->memory_bytes;
    d->max_buffer_range = 0; /* no limit beyond the allocation */
    d->max_workgroup_size = 1;
    d->max_workgroup_count[0] = d->max_workgroup_count[1] = d->max_workgroup_count[2] = 1;
    d->timestamps = false;
    *count = 1;
    return SL_OK;
}

static int cpu_open(sl_device *dev)
{
    dev->impl = NULL;
    return SL_OK;
}

/* OpenBLAS keeps one thread pool per process; the executor sets its size per rank, so that ranks
 * sharing a machine do not oversubscribe its cores. */
static int cpu_apply_options(sl_device *dev, const sl_device_options *opt)
{
    (void)dev;
    if (opt->threads > 0) openblas_set_num_threads(opt->threads);
    return SL_OK;
}

static void cpu_close(sl_device *dev)
{
    (void)dev;
}

static int cpu_finish(sl_device *dev)
{
    (void)dev;
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * FMA peak: every core runs independent FMA chains (enough of them to cover the FMA latency on
 * two FMA ports), as clpeak does on GPUs, with the widest vectors the processor has: AVX-512
 * where it and the kernel support it (the vectors OpenBLAS's SkylakeX core uses, so that SGEMM
 * never reads above "peak"), else AVX2+FMA, else scalar fmaf. */

#define PEAK_CHAINS 10

__attribute__((target("avx2,fma"))) static float fma_chains_avx2(long iters)
{
    const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
    __m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2);
    __m256 a3 = _mm256_set1_ps(3), a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5);
    __m256 a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7), a8 = _mm256_set1_ps(8);
    __m256 a9 = _mm256_set1_ps(9);
    for (long i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, mul, add);
        a1 = _mm256_fmadd_ps(a1, mul, add);
        a2 = _mm256_fmadd_ps(a2, mul, add);
        a3 = _mm256_fmadd_ps(a3, mul, add);
        a4 = _mm256_fmadd_ps(a4, mul, add);
        a5 = _mm256_fmadd_ps(a5, mul, add);
        a6 = _mm256_fmadd_ps(a6, mul, add);
        a7 = _mm256_fmadd_ps(a7, mul, add);
        a8 = _mm256_fmadd_ps(a8, mul, add);
        a9 = _mm256_fmadd_ps(a9, mul, add);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(a8, a9));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

__attribute__((target("avx512f"))) static float fma_chains_avx512(long iters)
{
    const __m512 mul = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-7f);
    __m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2);
    __m512 a3 = _mm512_set1_ps(3), a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5);
    __m512 a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7), a8 = _mm512_set1_ps(8);
    __m512 a9 = _mm512_set1_ps(9);
    for (long i = 0; i < iters; i++) {
        a0 = _mm512_fmadd_ps(a0, mul, add);
        a1 = _mm512_fmadd_ps(a1, mul, add);
        a2 = _mm512_fmadd_ps(a2, mul, add);
        a3 = _mm512_fmadd_ps(a3, mul, add);
        a4 = _mm512_fmadd_ps(a4, mul, add);
        a5 = _mm512_fmadd_ps(a5, mul, add);
        a6 = _mm512_fmadd_ps(a6, mul, add);
        a7 = _mm512_fmadd_ps(a7, mul, add);
        a8 = _mm512_fmadd_ps(a8, mul, add);
        a9 = _mm512_fmadd_ps(a9, mul, add);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(a8, a9));
    return _mm512_reduce_add_ps(s);
}

static float fma_chains_scalar(long iters)
{
    float acc[PEAK_CHAINS];
    for (int c = 0; c < PEAK_CHAINS; c++) acc[c] = (float)c;
    for (long i = 0; i < iters; i++)
        for (int c = 0; c < PEAK_CHAINS; c++) acc[c] = fmaf(acc[c], 0.999999f, 1e-7f);
    float s = 0.0f;
    for (int c = 0; c < PEAK_CHAINS; c++) s += acc[c];
    return s;
}

struct peak_job {
    long iters;
    int lanes; /* 16: AVX-512, 8: AVX2+FMA, 1: scalar */
    volatile float sink;
};

static void *peak_thread(void *arg)
{
    struct peak_job *job = arg;
    job->sink = job->lanes == 16  ? fma_chains_avx512(job->iters)
                : job->lanes == 8 ? fma_chains_avx2(job->iters)
                                  : fma_chains_scalar(job->iters);
    return NULL;
}

static int cpu_peak_gflops(sl_device *dev, double *gflops)
{
    int threads = (int)SL_MAX(1u, dev->info.compute_units);
    sl_cpu_features f;
    sl_cpu_features_read(&f);
    int lanes = f.avx512f ? 16 : f.avx2 && f.fma ? 8 : 1;
    struct peak_job *jobs = sl_alloc((size_t)threads * sizeof *jobs);
    pthread_t *tids = sl_alloc((size_t)threads * sizeof *tids);
    if (!jobs || !tids) {
        free(jobs);
        free(tids);
        return SL_ENOMEM;
    }
    long iters = 1 << 20;
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = sl_now();
        int started = 0;
        for (int t = 0; t < threads; t++) {
            jobs[t] = (struct peak_job){.iters = iters, .lanes = lanes};
            if (pthread_create(&tids[t], NULL, peak_thread, &jobs[t]) != 0) break;
            started++;
        }
        for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
        double dt = sl_now() - t0;
        double flops = 2.0 * PEAK_CHAINS * lanes * (double)iters * started;
        if (dt > 0 && flops / dt > best) best = flops / dt;
        if (dt < 0.05) iters *= 4, rep--; /* too short to time well: longer runs */
    }
    free(jobs);
    free(tids);
    *gflops = best * 1e-9;
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Buffers: 64-byte aligned host memory */

static int cpu_buffer_alloc(sl_buffer *buf)
{
    size_t bytes = (buf->size + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, bytes);
    if (!p) return sl_fail(SL_ENOMEM, "could not allocate %zu bytes of host memory", buf->size);
    memset(p, 0, bytes);
    buf->impl = p;
    return SL_OK;
}

static void cpu_buffer_free(sl_buffer *buf)
{
    free(buf->impl);
}

static int cpu_upload(sl_buffer *dst, size_t offset, const void *src, size_t bytes)
{
    memcpy((char *)dst->impl + offset, src, bytes);
    return SL_OK;
}

static int cpu_download(sl_buffer *src, size_t offset, void *dst, size_t bytes)
{
    memcpy(dst, (const char *)src->impl + offset, bytes);
    return SL_OK;
}

/* The buffer is host memory: a mapping is the buffer itself. */
static int cpu_map_write(sl_buffer *buf, size_t offset, size_t bytes, void **host)
{
    (void)bytes;
    *host = (char *)buf->impl + offset;
    return SL_OK;
}

static int cpu_map_read(sl_buffer *buf, size_t offset, size_t bytes, const void **host)
{
    (void)bytes;
    *host = (const char *)buf->impl + offset;
    return SL_OK;
}

static int cpu_unmap(sl_buffer *buf, void *host)
{
    (void)buf, (void)host;
    return SL_OK;
}

static int cpu_copy(sl_buffer *dst, size_t dst_offset, sl_buffer *src, size_t src_offset,
                    size_t bytes)
{
    memmove((char *)dst->impl + dst_offset, (const char *)src->impl + src_offset, bytes);
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Kernels */

static int cpu_gemm(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                    float alpha, sl_buffer *a, sl_buffer *b, float beta, sl_buffer *c)
{
    (void)dev;
    /* Either way C is overwritten when beta is 0, NaN included (a test holds both to that). */
    if (sl__cpu_gemm_direct_fits(trans_b, m, n, k, alpha, beta)) {
        sl__cpu_gemm_direct(trans_a, m, n, k, F(a), F(b), beta, F(c));
        return SL_OK;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha,
                F(a), trans_a ? (blasint)m : (blasint)k, F(b), trans_b ? (blasint)k : (blasint)n,
                beta, F(c), (blasint)n);
    return SL_OK;
}

/* y[rows,cols] += bias[cols] */
SL_CPU_CLONES static int cpu_bias_add(sl_device *dev, size_t rows, size_t cols, sl_buffer *y,
                                      sl_buffer *bias)
{
    (void)dev;
    float *py = F(y);
    const float *pb = F(bias);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) py[r * cols + c] += pb[c];
    return SL_OK;
}

/* dbias[cols] = beta * dbias + sum_r dy[r, cols]: each column's sum runs over the rows in order,
 * a block of columns at a time, so that the rows stream through memory and the columns vectorize.
 */
#define COL_BLOCK 256

SL_CPU_CLONES static int cpu_bias_grad(sl_device *dev, size_t rows, size_t cols, sl_buffer *dy,
                                       float beta, sl_buffer *dbias)
{
    (void)dev;
    const float *pdy = F(dy);
    float *pdb = F(dbias);
    for (size_t c0 = 0; c0 < cols; c0 += COL_BLOCK) {
        size_t w = SL_MIN(COL_BLOCK, cols - c0);
        float s[COL_BLOCK] = {0};
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < w; c++) s[c] += pdy[r * cols + c0 + c];
        for (size_t c = 0; c < w; c++) pdb[c0 + c] = (beta == 0.0f ? 0.0f : pdb[c0 + c]) + s[c];
    }
    return SL_OK;
}

#define GELU_K      0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C      0.044715f
#define SQRT1_2     0.70710678118654752f /* 1/sqrt(2) */
#define INV_SQRT2PI 0.39894228040143268f /* 1/sqrt(2 pi) */

static float act_f(enum sl_activation act, float x)
{
    switch (act) {
    case SL_ACT_RELU:
        return x > 0.0f ? x : 0.0f;
    case SL_ACT_TANH:
        return tanhf(x);
    case SL_ACT_SIGMOID:
        return 1.0f / (1.0f + expf(-x));
    case SL_ACT_GELU:
        return 0.5f * x * (1.0f + sl_cpu_erf(x * SQRT1_2));
    case SL_ACT_GELU_TANH:
        return 0.5f * x * (1.0f + tanhf(GELU_K * (x + GELU_C * x * x * x)));
    default:
        return NAN;
    }
}

/* The derivative of act at x. */
static float act_df(enum sl_activation act, float x)
{
    switch (act) {
    case SL_ACT_RELU:
        return x > 0.0f ? 1.0f : 0.0f;
    case SL_ACT_TANH: {
        float t = tanhf(x);
        return 1.0f - t * t;
    }
    case SL_ACT_SIGMOID: {
        float s = 1.0f / (1.0f + expf(-x));
        return s * (1.0f - s);
    }
    case SL_ACT_GELU:
        return 0.5f * (1.0f + sl_cpu_erf(x * SQRT1_2)) +
               x * sl_cpu_exp(-0.5f * x * x) * INV_SQRT2PI;
    case SL_ACT_GELU_TANH: {
        float t = tanhf(GELU_K * (x + GELU_C * x * x * x));
        return 0.5f * (1.0f + t) +
               0.5f * x * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * GELU_C * x * x);
    }
    default:
        return NAN;
    }
}

/* relu into another buffer with streaming stores (see fill_stream_avx). max(x, +0) gives what
 * `x > 0 ? x : 0` gives, for NaN and -0 too: MAXPS returns its second operand then. */
__attribute__((target("avx"))) static void relu_stream_avx(const float *x, float *y, size_t n)
{
    size_t i = 0;
    while (i < n && ((uintptr_t)(y + i) & 31)) y[i] = x[i] > 0.0f ? x[i] : 0.0f, i++;
    const __m256 zero = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) _mm256_stream_ps(y + i, _mm256_max_ps(_mm256_loadu_ps(x + i), zero));
    _mm_sfence();
    for (; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* The exact GELU and its gradient, in loops of their own (see SL_CPU_FMA_CLONES). */
SL_CPU_FMA_CLONES static void gelu_forward(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = act_f(SL_ACT_GELU, x[i]);
}

SL_CPU_FMA_CLONES static void gelu_backward(const float *x, const float *dy, float *dx, size_t n)
{
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * act_df(SL_ACT_GELU, x[i]);
}

/* From the output: Phi(x) = y / x, where the division is safe (|x| >= 2^-60, far from
 * subnormal); below, Phi(x) rounds to 0.5. Only e^(-x^2/2) is left to compute. */
SL_CPU_FMA_CLONES static void gelu_backward_y(const float *x, const float *y, const float *dy,
                                              float *dx, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        bool tiny = (v < 0.0f ? -v : v) < 0x1p-60f;
        float cdf = tiny ? 0.5f : y[i] / (tiny ? 1.0f : v);
        dx[i] = dy[i] * (cdf + v * sl_cpu_exp(-0.5f * v * v) * INV_SQRT2PI);
    }
}

static int cpu_gelu_backward(sl_device *dev, size_t n, sl_buffer *x, sl_buffer *y, sl_buffer *dy,
                             sl_buffer *dx)
{
    (void)dev;
    gelu_backward_y(F(x), F(y), F(dy), F(dx), n);
    return SL_OK;
}

SL_CPU_CLONES static int cpu_act_forward(sl_device *dev, enum sl_activation act, size_t n,
                                         sl_buffer *x, sl_buffer *y)
{
    (void)dev;
    const float *px = F(x);
    float *py = F(y);
    if (act == SL_ACT_RELU && n >= (1u << 20) && px != py && __builtin_cpu_supports("avx")) {
        relu_stream_avx(px, py, n);
        return SL_OK;
    }
    /* relu and gelu get their own loops, so that they vectorize */
    if (act == SL_ACT_RELU) {
        for (size_t i = 0; i < n; i++) py[i] = px[i] > 0.0f ? px[i] : 0.0f;
        return SL_OK;
    }
    if (act == SL_ACT_GELU) {
        gelu_forward(px, py, n);
        return SL_OK;
    }
    for (size_t i = 0; i < n; i++) py[i] = act_f(act, px[i]);
    return SL_OK;
}

SL_CPU_CLONES static int cpu_act_backward(sl_device *dev, enum sl_activation act, size_t n,
                                          sl_buffer *x, sl_buffer *dy, sl_buffer *dx)
{
    (void)dev;
    const float *px = F(x), *pdy = F(dy);
    float *pdx = F(dx);
    if (act == SL_ACT_GELU) {
        gelu_backward(px, pdy, pdx, n);
        return SL_OK;
    }
    for (size_t i = 0; i < n; i++) pdx[i] = pdy[i] * act_df(act, px[i]);
    return SL_OK;
}

/* Per row: the max, e = exp(logit - max) into dlogits, their sum in lanes (SL_CPU_LANES), then
 * dlogits = scale (e / sum - onehot). dlogits may be logits. */
SL_CPU_CLONES static int cpu_softmax_xent(sl_device *dev, size_t rows, size_t classes,
                                          sl_buffer *logits, sl_buffer *labels, float scale,
                                          sl_buffer *loss, sl_buffer *dlogits)
{
    (void)dev;
    const float *pl = F(logits);
    const int32_t *py = (const int32_t *)labels->impl;
    float *ploss = F(loss), *pd = F(dlogits);
    for (size_t r = 0; r < rows; r++) {
        const float *row = pl + r * classes;
        float *d = pd + r * classes;
        size_t y = (size_t)py[r];
        float ly = row[y]; /* before d overwrites it */
        float mx = sl_cpu_max(row, classes);
        for (size_t c = 0; c < classes; c++) d[c] = sl_cpu_exp(row[c] - mx);
        float sum = sl_cpu_sum(d, classes), inv = 1.0f / sum;
        ploss[r] = mx + logf(sum) - ly;
        for (size_t c = 0; c < classes; c++) d[c] = scale * (d[c] * inv - (c == y ? 1.0f : 0.0f));
    }
    return SL_OK;
}

static int cpu_mse(sl_device *dev, size_t rows, size_t cols, sl_buffer *pred, sl_buffer *target,
                   float scale, sl_buffer *loss, sl_buffer *dpred)
{
    (void)dev;
    const float *pp = F(pred), *pt = F(target);
    float *ploss = F(loss), *pd = F(dpred);
    float inv = 1.0f / (float)cols;
    for (size_t r = 0; r < rows; r++) {
        float s = 0.0f;
        for (size_t c = 0; c < cols; c++) {
            float d = pp[r * cols + c] - pt[r * cols + c];
            s += d * d;
            pd[r * cols + c] = scale * 2.0f * d * inv;
        }
        ploss[r] = s * inv;
    }
    return SL_OK;
}

static int cpu_sgd(sl_device *dev, size_t n, sl_buffer *param, sl_buffer *grad,
                   sl_buffer *momentum_buf, float lr, float momentum, float weight_decay)
{
    (void)dev;
    float *p = F(param), *buf = momentum_buf ? F(momentum_buf) : NULL;
    const float *g = F(grad);
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + weight_decay * p[i];
        if (buf) {
            buf[i] = momentum * buf[i] + d;
            d = buf[i];
        }
        p[i] -= lr * d;
    }
    return SL_OK;
}

/* Adam, or with `decoupled` AdamW (p *= 1 - lr wd instead of wd p added to the gradient). */
SL_CPU_CLONES static void adam_update(size_t n, float *p, const float *g, float *pm, float *pv,
                                      float lr, float beta1, float beta2, float eps,
                                      float weight_decay, float bc1, float bc2, bool decoupled)
{
    float step = lr / bc1, sqrt_bc2 = sqrtf(bc2), decay = 1.0f - lr * weight_decay;
    for (size_t i = 0; i < n; i++) {
        float w = p[i], d = g[i];
        if (decoupled)
            w *= decay;
        else
            d += weight_decay * w;
        pm[i] = beta1 * pm[i] + (1.0f - beta1) * d;
        pv[i] = beta2 * pv[i] + (1.0f - beta2) * d * d;
        p[i] = w - step * pm[i] / (sqrtf(pv[i]) / sqrt_bc2 + eps);
    }
}

static int cpu_adam(sl_device *dev, size_t n, sl_buffer *param, sl_buffer *grad, sl_buffer *m,
                    sl_buffer *v, float lr, float beta1, float beta2, float eps, float weight_decay,
                    float bc1, float bc2)
{
    (void)dev;
    adam_update(n, F(param), F(grad), F(m), F(v), lr, beta1, beta2, eps, weight_decay, bc1, bc2,
                false);
    return SL_OK;
}

static int cpu_adamw(sl_device *dev, size_t n, sl_buffer *param, sl_buffer *grad, sl_buffer *m,
                     sl_buffer *v, float lr, float beta1, float beta2, float eps,
                     float weight_decay, float bc1, float bc2)
{
    (void)dev;
    adam_update(n, F(param), F(grad), F(m), F(v), lr, beta1, beta2, eps, weight_decay, bc1, bc2,
                true);
    return SL_OK;
}

SL_CPU_CLONES static int cpu_axpy(sl_device *dev, size_t n, float alpha, sl_buffer *x, sl_buffer *y)
{
    (void)dev;
    const float *px = F(x);
    float *py = F(y);
    for (size_t i = 0; i < n; i++) py[i] += alpha * px[i];
    return SL_OK;
}

SL_CPU_CLONES static int cpu_scale(sl_device *dev, size_t n, float alpha, sl_buffer *x)
{
    (void)dev;
    float *px = F(x);
    for (size_t i = 0; i < n; i++) px[i] *= alpha;
    return SL_OK;
}

/* Large fills use streaming stores, as memset does: plain stores first read every line they
 * write (write-allocate), which halves the bandwidth a fill can reach. */
__attribute__((target("avx"))) static void fill_stream_avx(float *p, size_t n, float value)
{
    size_t i = 0;
    while (i < n && ((uintptr_t)(p + i) & 31)) p[i++] = value;
    __m256 v = _mm256_set1_ps(value);
    for (; i + 8 <= n; i += 8) _mm256_stream_ps(p + i, v);
    _mm_sfence();
    for (; i < n; i++) p[i] = value;
}

static int cpu_fill(sl_device *dev, size_t n, float value, sl_buffer *x)
{
    (void)dev;
    float *px = F(x);
    if (n >= (1u << 20) && __builtin_cpu_supports("avx")) {
        fill_stream_avx(px, n, value);
        return SL_OK;
    }
    for (size_t i = 0; i < n; i++) px[i] = value;
    return SL_OK;
}

const struct sl_backend_ops sl__cpu_backend = {
    .name = "cpu",
    .enumerate = cpu_enumerate,
    .open = cpu_open,
    .apply_options = cpu_apply_options,
    .close = cpu_close,
    .finish = cpu_finish,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .copy = cpu_copy,
    .map_write = cpu_map_write,
    .unmap = cpu_unmap,
    .map_read = cpu_map_read,
    /* events: host time after finish (the default) */
    .peak_gflops = cpu_peak_gflops,
    .gemm = cpu_gemm,
    .bias_add = cpu_bias_add,
    .bias_grad = cpu_bias_grad,
    .act_forward = cpu_act_forward,
    .act_backward = cpu_act_backward,
    .gelu_backward = cpu_gelu_backward,
    .softmax_xent = cpu_softmax_xent,
    .mse = cpu_mse,
    .sgd = cpu_sgd,
    .adam = cpu_adam,
    .adamw = cpu_adamw,
    .sum_squares = sl__cpu_sum_squares,
    .layernorm_forward = sl__cpu_layernorm_forward,
    .layernorm_backward = sl__cpu_layernorm_backward,
    .embedding_forward = sl__cpu_embedding_forward,
    .embedding_backward = sl__cpu_embedding_backward,
    .causal_softmax_forward = sl__cpu_causal_softmax_forward,
    .causal_softmax_backward = sl__cpu_causal_softmax_backward,
    .attention_forward = sl__cpu_attention_forward,
    .attention_backward = sl__cpu_attention_backward,
    .copy_strided = sl__cpu_copy_strided,
    .gemm_batched = sl__cpu_gemm_batched,
    .axpy = cpu_axpy,
    .scale = cpu_scale,
    .fill = cpu_fill,
};
