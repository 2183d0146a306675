/* Elementwise stage kernels of the OpenCL backend. The meaning of each is in backends/backend.h and
 * its plain-C reference in backends/cpu/cpu.c.
 *
 * Every kernel covers n elements with ceil(n/4) + 3 work-items at most: work-item i < n/4 handles
 * the four elements 4i..4i+3 with vload4/vstore4 (which need only float alignment), and the few
 * work-items after those handle the scalar tail 4*(n/4) .. n-1 one element each. Four elements per
 * work-item keep loads wide on GPUs and let PoCL vectorize its work-item loop on CPUs. The host
 * rounds the global size up to a multiple of the work-group size, so every kernel checks bounds.
 *
 * Contraction into FMA is off so that results round like the C reference. */
#pragma OPENCL FP_CONTRACT OFF

#define GELU_K      0.7978845608028654f  /* sqrt(2/pi) */
#define GELU_C      0.044715f
#define SQRT1_2     0.70710678118654752f /* 1/sqrt(2) */
#define INV_SQRT2PI 0.39894228040143268f /* 1/sqrt(2 pi) */

/* `if (VEC) {four elements at vector index i} else if (TAIL) {one element at index s}` */
#define VEC_INDEX   const ulong i = get_global_id(0), n4 = n >> 2, s = (n4 << 2) + (i - n4)
#define VEC         (i < n4)
#define TAIL        (s < n)

/* Activations and their derivatives, for T = float (suffix 1) and T = float4 (suffix 4). The
 * formulas are the reference's, written once so both widths agree. */
#define ACT_FUNCS(T, S)                                                                            \
    inline T relu_f##S(T x) { return select((T)0.0f, x, x > (T)0.0f); }                           \
    inline T relu_d##S(T x) { return select((T)0.0f, (T)1.0f, x > (T)0.0f); }                      \
    inline T tanh_f##S(T x) { return tanh(x); }                                                    \
    inline T tanh_d##S(T x)                                                                        \
    {                                                                                              \
        T t = tanh(x);                                                                             \
        return 1.0f - t * t;                                                                       \
    }                                                                                              \
    inline T sigmoid_f##S(T x) { return 1.0f / (1.0f + exp(-x)); }                                 \
    inline T sigmoid_d##S(T x)                                                                     \
    {                                                                                              \
        T s = 1.0f / (1.0f + exp(-x));                                                             \
        return s * (1.0f - s);                                                                     \
    }                                                                                              \
    inline T gelu_f##S(T x) { return 0.5f * x * (1.0f + erf(x * SQRT1_2)); }                      \
    inline T gelu_d##S(T x)                                                                        \
    {                                                                                              \
        return 0.5f * (1.0f + erf(x * SQRT1_2)) + x * exp(-0.5f * x * x) * INV_SQRT2PI;            \
    }                                                                                              \
    inline T gelu_tanh_f##S(T x)                                                                   \
    {                                                                                              \
        return 0.5f * x * (1.0f + tanh(GELU_K * (x + GELU_C * x * x * x)));                        \
    }                                                                                              \
    inline T gelu_tanh_d##S(T x)                                                                   \
    {                                                                                              \
        T t = tanh(GELU_K * (x + GELU_C * x * x * x));                                             \
        return 0.5f * (1.0f + t) +                                                                 \
               0.5f * x * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * GELU_C * x * x);                \
    }

ACT_FUNCS(float, 1)
ACT_FUNCS(float4, 4)

/* y[n] = act(x[n]); y may be x.  dx[n] = dy[n] * act'(x[n]); dx may be dy. */
#define ACT_KERNELS(NAME)                                                                          \
    __kernel void act_fwd_##NAME(__global const float *x, __global float *y, ulong n)              \
    {                                                                                              \
        VEC_INDEX;                                                                                 \
        if (VEC)                                                                                   \
            vstore4(NAME##_f4(vload4(i, x)), i, y);                                                \
        else if (TAIL)                                                                             \
            y[s] = NAME##_f1(x[s]);                                                                \
    }                                                                                              \
    __kernel void act_bwd_##NAME(__global const float *x, __global const float *dy,                \
                                 __global float *dx, ulong n)                                      \
    {                                                                                              \
        VEC_INDEX;                                                                                 \
        if (VEC)                                                                                   \
            vstore4(vload4(i, dy) * NAME##_d4(vload4(i, x)), i, dx);                               \
        else if (TAIL)                                                                             \
            dx[s] = dy[s] * NAME##_d1(x[s]);                                                       \
    }

ACT_KERNELS(relu)
ACT_KERNELS(tanh)
ACT_KERNELS(sigmoid)
ACT_KERNELS(gelu)
ACT_KERNELS(gelu_tanh)

/* The exact GELU's backward from its output as well: Phi(x) = y / x (0.5 where |x| < 2^-60). */
#define GELU_D_Y(T, S)                                                                             \
    inline T gelu_d_y##S(T x, T y)                                                                 \
    {                                                                                              \
        T cdf = select(y / select(x, (T)1.0f, fabs(x) < 0x1p-60f), (T)0.5f, fabs(x) < 0x1p-60f);   \
        return cdf + x * exp(-0.5f * x * x) * INV_SQRT2PI;                                         \
    }
GELU_D_Y(float, 1)
GELU_D_Y(float4, 4)

__kernel void gelu_bwd_y(__global const float *x, __global const float *y,
                         __global const float *dy, __global float *dx, ulong n)
{
    VEC_INDEX;
    if (VEC)
        vstore4(vload4(i, dy) * gelu_d_y4(vload4(i, x), vload4(i, y)), i, dx);
    else if (TAIL)
        dx[s] = dy[s] * gelu_d_y1(x[s], y[s]);
}

/* x[n] = value */
__kernel void fill(__global float *x, ulong n, float value)
{
    VEC_INDEX;
    if (VEC)
        vstore4((float4)value, i, x);
    else if (TAIL)
        x[s] = value;
}

/* x[n] *= alpha */
__kernel void scale(__global float *x, ulong n, float alpha)
{
    VEC_INDEX;
    if (VEC)
        vstore4(vload4(i, x) * alpha, i, x);
    else if (TAIL)
        x[s] *= alpha;
}

/* y[n] += alpha * x[n] */
__kernel void axpy(__global const float *x, __global float *y, ulong n, float alpha)
{
    VEC_INDEX;
    if (VEC)
        vstore4(vload4(i, y) + alpha * vload4(i, x), i, y);
    else if (TAIL)
        y[s] += alpha * x[s];
}

/* SGD without momentum: p[n] -= lr * (g + wd * p) */
__kernel void sgd(__global float *p, __global const float *g, ulong n, float lr, float wd)
{
    VEC_INDEX;
    if (VEC) {
        float4 pv = vload4(i, p);
        vstore4(pv - lr * (vload4(i, g) + wd * pv), i, p);
    } else if (TAIL) {
        p[s] -= lr * (g[s] + wd * p[s]);
    }
}

/* SGD with momentum: buf = momentum * buf + (g + wd * p);  p -= lr * buf */
__kernel void sgd_momentum(__global float *p, __global const float *g, __global float *buf,
                           ulong n, float lr, float momentum, float wd)
{
    VEC_INDEX;
    if (VEC) {
        float4 pv = vload4(i, p);
        float4 b = momentum * vload4(i, buf) + (vload4(i, g) + wd * pv);
        vstore4(b, i, buf);
        vstore4(pv - lr * b, i, p);
    } else if (TAIL) {
        float b = momentum * buf[s] + (g[s] + wd * p[s]);
        buf[s] = b;
        p[s] -= lr * b;
    }
}

/* Adam (PyTorch's rule), or with `decoupled` AdamW (p *= decay = 1 - lr wd, the gradient left
 * alone); step = lr / bc1, sqrt_bc2 = sqrt(bc2) and decay come from the host, computed as the
 * reference does. */
#define ADAM_STEP(T, pv, gv, mv, vv)                                                               \
    T d = gv;                                                                                      \
    if (decoupled)                                                                                 \
        pv = pv * decay;                                                                           \
    else                                                                                           \
        d = d + wd * pv;                                                                           \
    mv = b1 * mv + (1.0f - b1) * d;                                                                \
    vv = b2 * vv + (1.0f - b2) * d * d;                                                            \
    pv = pv - step * mv / (sqrt(vv) / sqrt_bc2 + eps)

__kernel void adam(__global float *p, __global const float *g, __global float *m,
                   __global float *v, ulong n, float step, float b1, float b2, float eps, float wd,
                   float sqrt_bc2, float decay, int decoupled)
{
    VEC_INDEX;
    if (VEC) {
        float4 pv = vload4(i, p), gv = vload4(i, g), mv = vload4(i, m), vv = vload4(i, v);
        ADAM_STEP(float4, pv, gv, mv, vv);
        vstore4(mv, i, m);
        vstore4(vv, i, v);
        vstore4(pv, i, p);
    } else if (TAIL) {
        float pv = p[s], gv = g[s], mv = m[s], vv = v[s];
        ADAM_STEP(float, pv, gv, mv, vv);
        m[s] = mv;
        v[s] = vv;
        p[s] = pv;
    }
}
