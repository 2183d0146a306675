/* The CPU backend's transformer kernels (the oracle for the other backends): sum of squares,
 * layer norm, embedding, the strided 4-D copy and batched GEMM (attention.c has the attention's).
 * The sums run in fp32 in a fixed order: along a row in SL_CPU_LANES lanes (cpu_impl.h), down a
 * column over the rows in index order; the deterministic kernels (embedding backward, the copy)
 * match the other devices bit for bit, the rest to rounding. The sum of squares accumulates in
 * double, as the reference the devices' tree reductions are measured against. */
#include "backends/cpu/cpu_impl.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define LN_EPS 1e-5f

/* In 8 double lanes (element i in lane i % 8), added pairwise. */
SL_CPU_CLONES int sl__cpu_sum_squares(sl_device *dev, size_t n, sl_buffer *x, sl_buffer *out,
                                      size_t at)
{
    (void)dev;
    const float *px = F(x);
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t l = 0; l < 8; l++) acc[l] += (double)px[i + l] * px[i + l];
    for (size_t l = 0; i + l < n; l++) acc[l] += (double)px[i + l] * px[i + l];
    double s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    F(out)[at] = (float)s;
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Layer norm: one row at a time, mean then the biased variance about it (two passes). */

SL_CPU_CLONES int sl__cpu_layernorm_forward(sl_device *dev, size_t rows, size_t cols, sl_buffer *x,
                                            sl_buffer *weight, sl_buffer *bias, sl_buffer *y,
                                            sl_buffer *mean, sl_buffer *rstd)
{
    (void)dev;
    const float *w = F(weight), *b = F(bias);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = F(x) + r * cols;
        float *yr = F(y) + r * cols;
        float mu = sl_cpu_sum(xr, cols) / (float)cols;
        float acc[SL_CPU_LANES] = {0};
        size_t c = 0;
        for (; c + SL_CPU_LANES <= cols; c += SL_CPU_LANES)
            for (size_t l = 0; l < SL_CPU_LANES; l++) acc[l] += (xr[c + l] - mu) * (xr[c + l] - mu);
        for (size_t l = 0; c + l < cols; l++) acc[l] += (xr[c + l] - mu) * (xr[c + l] - mu);
        float v = sl_cpu_lanes_sum(acc);
        float rs = 1.0f / sqrtf(v / (float)cols + LN_EPS);
        for (c = 0; c < cols; c++) yr[c] = (xr[c] - mu) * rs * w[c] + b[c];
        F(mean)[r] = mu;
        F(rstd)[r] = rs;
    }
    return SL_OK;
}

#define COL_BLOCK 256

SL_CPU_CLONES int sl__cpu_layernorm_backward(sl_device *dev, size_t rows, size_t cols,
                                             sl_buffer *dy, sl_buffer *x, sl_buffer *mean,
                                             sl_buffer *rstd, sl_buffer *weight, sl_buffer *dx,
                                             sl_buffer *dweight, sl_buffer *dbias)
{
    (void)dev;
    const float *px = F(x), *pdy = F(dy), *mu = F(mean), *rs = F(rstd), *w = F(weight);
    float *pdx = F(dx), *dw = F(dweight), *db = F(dbias);
    /* The parameter gradients first: dx may be dy. Per column, rows in order (a block of columns
     * at a time, so that the rows stream and the columns vectorize). */
    for (size_t c0 = 0; c0 < cols; c0 += COL_BLOCK) {
        size_t nc = SL_MIN(COL_BLOCK, cols - c0);
        float sw[COL_BLOCK] = {0}, sb[COL_BLOCK] = {0};
        for (size_t r = 0; r < rows; r++) {
            const float *g = pdy + r * cols + c0, *xr = px + r * cols + c0;
            for (size_t c = 0; c < nc; c++) {
                sw[c] += g[c] * ((xr[c] - mu[r]) * rs[r]);
                sb[c] += g[c];
            }
        }
        for (size_t c = 0; c < nc; c++) dw[c0 + c] += sw[c], db[c0 + c] += sb[c];
    }
    /* dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm = weight * dy. */
    for (size_t r = 0; r < rows; r++) {
        const float *xr = px + r * cols, *gr = pdy + r * cols;
        float m = mu[r], s = rs[r], acc[SL_CPU_LANES] = {0};
        float a = sl_cpu_dot(w, gr, cols) / (float)cols; /* mean(dnorm) */
        size_t c = 0;
        for (; c + SL_CPU_LANES <= cols; c += SL_CPU_LANES)
            for (size_t l = 0; l < SL_CPU_LANES; l++)
                acc[l] += (w[c + l] * gr[c + l]) * ((xr[c + l] - m) * s);
        for (size_t l = 0; c + l < cols; l++)
            acc[l] += (w[c + l] * gr[c + l]) * ((xr[c + l] - m) * s);
        float bsum = sl_cpu_lanes_sum(acc) / (float)cols; /* mean(dnorm * norm) */
        float *dr = pdx + r * cols;
        for (c = 0; c < cols; c++) {
            float norm = (xr[c] - m) * s;
            dr[c] = (w[c] * gr[c] - a - norm * bsum) * s;
        }
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Embedding */

int sl__cpu_embedding_forward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                              sl_buffer *tokens, sl_buffer *wte, sl_buffer *wpe, sl_buffer *out)
{
    (void)dev;
    const int32_t *tok = (const int32_t *)tokens->impl;
    const float *pe = F(wpe);
    for (size_t n = 0; n < batch * seq; n++) {
        const float *te = tok[n] >= 0 && (size_t)tok[n] < vocab ? F(wte) + tok[n] * cols : NULL;
        const float *pr = pe + (n % seq) * cols;
        float *o = F(out) + n * cols;
        for (size_t c = 0; c < cols; c++) o[c] = (te ? te[c] : 0.0f) + pr[c];
    }
    return SL_OK;
}

int sl__cpu_embedding_backward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                               sl_buffer *tokens, sl_buffer *dout, sl_buffer *dwte, sl_buffer *dwpe)
{
    (void)dev;
    const int32_t *tok = (const int32_t *)tokens->impl;
    const float *g = F(dout);
    float *dte = F(dwte), *dpe = F(dwpe);
    for (size_t n = 0; n < batch * seq; n++) {
        const float *gr = g + n * cols;
        float *pr = dpe + (n % seq) * cols;
        for (size_t c = 0; c < cols; c++) pr[c] += gr[c];
        if (tok[n] < 0 || (size_t)tok[n] >= vocab) continue;
        float *tr = dte + tok[n] * cols;
        for (size_t c = 0; c < cols; c++) tr[c] += gr[c];
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Strided 4-D copy: nested loops, innermost i3. */

SL_CPU_CLONES int sl__cpu_copy_strided(sl_device *dev, const size_t shape[4], sl_buffer *src,
                                       size_t src_offset, const size_t src_strides[4],
                                       sl_buffer *dst, size_t dst_offset,
                                       const size_t dst_strides[4])
{
    (void)dev;
    const float *ps = F(src) + src_offset;
    float *pd = F(dst) + dst_offset;
    for (size_t i0 = 0; i0 < shape[0]; i0++)
        for (size_t i1 = 0; i1 < shape[1]; i1++)
            for (size_t i2 = 0; i2 < shape[2]; i2++) {
                const float *s =
                    ps + i0 * src_strides[0] + i1 * src_strides[1] + i2 * src_strides[2];
                float *d = pd + i0 * dst_strides[0] + i1 * dst_strides[1] + i2 * dst_strides[2];
                if (src_strides[3] == 1 && dst_strides[3] == 1) /* the usual case: a row */
                    memcpy(d, s, shape[3] * sizeof *d);
                else
                    for (size_t i3 = 0; i3 < shape[3]; i3++)
                        d[i3 * dst_strides[3]] = s[i3 * src_strides[3]];
            }
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Batched GEMM: one cblas_sgemm per matrix (OpenBLAS zeroes C when beta is 0). */

int sl__cpu_gemm_batched(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                         float alpha, const sl_gemm_view *a, const sl_gemm_view *b, float beta,
                         const sl_gemm_view *c, size_t batch)
{
    (void)dev;
    for (size_t i = 0; i < batch; i++)
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha,
                    F(a->buf) + sl_gemm_view_at(a, i), (blasint)a->ld,
                    F(b->buf) + sl_gemm_view_at(b, i), (blasint)b->ld, beta,
                    F(c->buf) + sl_gemm_view_at(c, i), (blasint)c->ld);
    return SL_OK;
}
