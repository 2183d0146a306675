/* Internals shared by the CPU backend's files: cpu.c (device, buffers, the MLP kernels and the
 * backend table) and transformer.c (the kernels a GPT adds). */
#ifndef SL_CPU_IMPL_H
#define SL_CPU_IMPL_H

#include "backends/backend_impl.h"

#include <math.h>
#include <stdint.h>

#define F(buf) ((float *)(buf)->impl)

/* ------------------------------------------------------------------------------------------------
 * Vector loops. The hot kernels are plain loops that GCC vectorizes (-O3, no fast-math), compiled
 * once per vector ISA and picked at load time (SL_CPU_CLONES). Every clone does the same float
 * operations in the same order, and C here never contracts a * b + c into an FMA (-std=c11), so
 * the clones agree bit for bit and with the scalar loop.
 *
 * Sums that vectorize keep SL_CPU_LANES partial sums: element i goes to lane i % SL_CPU_LANES, in
 * index order, and sl_cpu_lanes_sum() adds the lanes pairwise; that order is fixed, whatever the
 * vector width. Build with -DSL_CPU_NO_CLONES to get the baseline loops only (to test them on a
 * machine that would pick a wider clone). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(SL_CPU_NO_CLONES)
#define SL_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SL_CPU_CLONES
#endif

/* The exception: the exact GELU, pure polynomial arithmetic (about 2/3 of its time in a * b + c),
 * lets GCC contract a * b + c into one FMA where the clone has FMA (x86-64-v3 and v4), which halves
 * its time. Those clones agree with each other bit for bit, and with the default one (no FMA) to
 * within an ulp or two; an FMA rounds once where the two operations round twice, so it is the
 * more accurate. cpu_reference checks the clone this machine runs against double erf (and the
 * baseline one in a -DSL_CPU_NO_CLONES build). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(SL_CPU_NO_CLONES)
#define SL_CPU_FMA_CLONES                                                                          \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"),                   \
                   optimize("fp-contract=fast")))
#else
#define SL_CPU_FMA_CLONES SL_CPU_CLONES
#endif

#define SL_CPU_LANES 16

static inline float sl_cpu_lanes_sum(const float acc[SL_CPU_LANES])
{
    float a[8];
    for (int l = 0; l < 8; l++) a[l] = acc[l] + acc[l + 8];
    for (int l = 0; l < 4; l++) a[l] += a[l + 4];
    return (a[0] + a[2]) + (a[1] + a[3]);
}

/* The sum of x[0..n) in lanes. */
static inline float sl_cpu_sum(const float *x, size_t n)
{
    float acc[SL_CPU_LANES] = {0};
    size_t i = 0;
    for (; i + SL_CPU_LANES <= n; i += SL_CPU_LANES)
        for (size_t l = 0; l < SL_CPU_LANES; l++) acc[l] += x[i + l];
    for (size_t l = 0; i + l < n; l++) acc[l] += x[i + l];
    return sl_cpu_lanes_sum(acc);
}

/* The sum of a[i] b[i] over [0, n) in lanes. (One accumulator per lane loop: with two, GCC
 * vectorizes the outer loop instead, through shuffles.) */
static inline float sl_cpu_dot(const float *a, const float *b, size_t n)
{
    float acc[SL_CPU_LANES] = {0};
    size_t i = 0;
    for (; i + SL_CPU_LANES <= n; i += SL_CPU_LANES)
        for (size_t l = 0; l < SL_CPU_LANES; l++) acc[l] += a[i + l] * b[i + l];
    for (size_t l = 0; i + l < n; l++) acc[l] += a[i + l] * b[i + l];
    return sl_cpu_lanes_sum(acc);
}

/* The largest of x[0..n), n > 0, in lanes (a NaN in a lane may be lost, as in the scalar loop
 * `m = x[i] > m ? x[i] : m`). */
static inline float sl_cpu_max(const float *x, size_t n)
{
    float acc[SL_CPU_LANES];
    for (size_t l = 0; l < SL_CPU_LANES; l++) acc[l] = x[0];
    size_t i = 0;
    for (; i + SL_CPU_LANES <= n; i += SL_CPU_LANES)
        for (size_t l = 0; l < SL_CPU_LANES; l++) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
    for (size_t l = 0; i + l < n; l++) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
    float m = acc[0];
    for (size_t l = 1; l < SL_CPU_LANES; l++) m = acc[l] > m ? acc[l] : m;
    return m;
}

/* e^x without libm, branch-free so that loops of it vectorize: x = n ln2 + r with |r| <= ln2/2
 * (Cody-Waite, ln2 in two parts), e^r = 1 + r + r^2 P(r) (P a degree-4 minimax fit, relative error
 * 3e-9), times 2^n built in the exponent bits. Within 2 ulp of e^x. The core takes |x| <= 87 only
 * (no checks); sl_cpu_exp takes any x: 0 below -87.33 (where expf goes subnormal), inf above 88 (a
 * little early: e^88.72 is still finite), NaN for NaN. The callers pass x <= 0. */
static inline float sl_cpu_exp_core(float x)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23: x + magic - magic rounds x to an integer */
    union {
        float f;
        uint32_t u;
    } t = {.f = x * 1.44269504f + magic}, sc;
    float n = t.f - magic;
    float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.381461043e-03f;
    p = p * r + 8.368710056e-03f;
    p = p * r + 4.166838899e-02f;
    p = p * r + 1.666652113e-01f;
    p = p * r + 4.999999404e-01f;
    sc.u = (t.u - 0x4b400000u + 127u) << 23; /* the low bits of t.u hold n + 2^22 */
    return (1.0f + (r + r * r * p)) * sc.f;
}

static inline float sl_cpu_exp(float x)
{
    float xc = x < -87.5f ? -87.5f : x;
    xc = xc > 88.0f ? 88.0f : xc;
    float e = sl_cpu_exp_core(xc);
    e = x > 88.0f ? INFINITY : e;
    return x < -87.33f ? 0.0f : e;
}

/* erf(x), branch-free: below |x| = 1, x + x P(x^2) (P a degree-6 minimax fit of erf(x)/x - 1,
 * relative error 1.2e-9; adding x last keeps the rounding to about half an ulp); above, 1 -
 * e^Q(|x|) with the sign of x (Q a degree-7 fit of log erfc on [1, 3.9375], weighted by erfc; |x|
 * is clamped to 3.9375, where erfc is under 1e-8). Both sides are computed and one kept. The fits'
 * error is far below fp32's rounding: against double erf the largest error is about 8e-8 absolute,
 * where glibc's erff gives 5e-8 (cpu_reference checks 1e-7). NaN in, NaN out. */
static inline float sl_cpu_erf(float x)
{
    float s = x * x, a = x < 0.0f ? -x : x;
    float p = 7.889119297e-05f;
    p = p * s + -8.020841051e-04f;
    p = p * s + 5.189535208e-03f;
    p = p * s + -2.685444430e-02f;
    p = p * s + 1.128360033e-01f;
    p = p * s + -3.761262596e-01f;
    p = p * s + 1.283791661e-01f;
    float t = a > 3.9375f ? 3.9375f : a;
    float q = 1.855748560e-04f; /* Q(t) is in [-17.6, -1.8] */
    q = q * t + -2.939615399e-03f;
    q = q * t + 2.180534974e-02f;
    q = q * t + -1.030374318e-01f;
    q = q * t + -6.382256150e-01f;
    q = q * t + -1.127040029e+00f;
    q = q * t + -3.537094162e-04f;
    float big = 1.0f - sl_cpu_exp_core(q);
    big = x < 0.0f ? -big : big;
    return a < 1.0f ? x + x * p : big;
}

int sl__cpu_sum_squares(sl_device *dev, size_t n, sl_buffer *x, sl_buffer *out, size_t at);
int sl__cpu_layernorm_forward(sl_device *dev, size_t rows, size_t cols, sl_buffer *x,
                              sl_buffer *weight, sl_buffer *bias, sl_buffer *y, sl_buffer *mean,
                              sl_buffer *rstd);
int sl__cpu_layernorm_backward(sl_device *dev, size_t rows, size_t cols, sl_buffer *dy,
                               sl_buffer *x, sl_buffer *mean, sl_buffer *rstd, sl_buffer *weight,
                               sl_buffer *dx, sl_buffer *dweight, sl_buffer *dbias);
int sl__cpu_embedding_forward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                              sl_buffer *tokens, sl_buffer *wte, sl_buffer *wpe, sl_buffer *out);
int sl__cpu_embedding_backward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                               sl_buffer *tokens, sl_buffer *dout, sl_buffer *dwte,
                               sl_buffer *dwpe);
int sl__cpu_causal_softmax_forward(sl_device *dev, size_t heads, size_t seq, float scale,
                                   sl_buffer *s, sl_buffer *p);
int sl__cpu_causal_softmax_backward(sl_device *dev, size_t heads, size_t seq, float scale,
                                    sl_buffer *p, sl_buffer *dp, sl_buffer *ds);
int sl__cpu_attention_forward(sl_device *dev, size_t batch, size_t seq, size_t heads, size_t hs,
                              float scale, sl_buffer *qkv, sl_buffer *att, sl_buffer *y);
int sl__cpu_attention_backward(sl_device *dev, size_t batch, size_t seq, size_t heads, size_t hs,
                               float scale, sl_buffer *qkv, sl_buffer *att, sl_buffer *dy,
                               sl_buffer *work, sl_buffer *dqkv);
/* For tests: the fused attention's products as plain loops (true) or, where the CPU has AVX-512,
 * in its registers (false, the default). */
void sl__cpu_attention_use_loops(bool loops);
int sl__cpu_copy_strided(sl_device *dev, const size_t shape[4], sl_buffer *src, size_t src_offset,
                         const size_t src_strides[4], sl_buffer *dst, size_t dst_offset,
                         const size_t dst_strides[4]);
/* gemm.c: the shapes where C = op(A) B (+ C) is faster without OpenBLAS's packing (B not
 * transposed, alpha 1, beta 0 or 1, and more; see gemm.c), and the product for them: a is m x k
 * (k x m when trans_a), b k x n, c m x n, all row-major and dense. use(false) sends every shape
 * to OpenBLAS (for tests). */
bool sl__cpu_gemm_direct_fits(bool trans_b, size_t m, size_t n, size_t k, float alpha, float beta);
void sl__cpu_gemm_direct(bool trans_a, size_t m, size_t n, size_t k, const float *a, const float *b,
                         float beta, float *c);
void sl__cpu_gemm_direct_use(bool use);
int sl__cpu_gemm_batched(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                         float alpha, const sl_gemm_view *a, const sl_gemm_view *b, float beta,
                         const sl_gemm_view *c, size_t batch);

#endif
