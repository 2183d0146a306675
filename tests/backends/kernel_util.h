/* Helpers shared by the backend suites: host <-> device arrays, seeded data, tolerant comparison,
 * and one runner per kernel that takes host arrays, runs the kernel on a device and returns the
 * outputs, so the same case runs on the CPU oracle and on the device under test. */
#ifndef SL_TEST_KERNEL_UTIL_H
#define SL_TEST_KERNEL_UTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/backend_impl.h"

#define OK(expr) cr_assert_eq((expr), SL_OK, "%s failed: %s", #expr, sl_last_error())

static inline float *vec_new(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    cr_assert_not_null(p);
    return p;
}

/* Uniform in [lo, hi) from a small LCG, so every run sees the same data. */
static inline float *vec_rand(size_t n, uint32_t seed, float lo, float hi)
{
    float *p = vec_new(n);
    uint64_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = lo + (hi - lo) * (float)((s >> 40) & 0xFFFFFF) / 16777216.0f;
    }
    return p;
}

static inline sl_buffer *buf_from(sl_device *dev, const void *host, size_t bytes)
{
    sl_buffer *b = NULL;
    OK(sl_buffer_alloc(dev, bytes ? bytes : 4, &b));
    if (host && bytes) OK(sl_buffer_upload(b, 0, host, bytes));
    return b;
}

static inline sl_buffer *buf_f(sl_device *dev, const float *host, size_t n)
{
    return buf_from(dev, host, n * sizeof(float));
}

/* Downloads n floats into a new array and frees the buffer. */
static inline float *buf_take(sl_buffer *b, size_t n)
{
    float *p = vec_new(n);
    if (n) OK(sl_buffer_download(b, 0, p, n * sizeof(float)));
    sl_buffer_free(b);
    return p;
}

/* |got - ref| <= atol + rtol * |ref| everywhere, NaN never passes. */
static inline void assert_close(const float *ref, const float *got, size_t n, float atol,
                                float rtol, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        float tol = atol + rtol * fabsf(ref[i]);
        cr_assert(fabsf(got[i] - ref[i]) <= tol,
                  "%s: element %zu is %.9g, expected %.9g (tol %.3g)", what, i, (double)got[i],
                  (double)ref[i], (double)tol);
    }
}

/* C = alpha op(A) op(B) + beta C0 in double, as sl_gemm defines it (a new array). */
static inline float *naive_gemm(bool ta, bool tb, size_t m, size_t n, size_t k, float alpha,
                                const float *a, const float *b, float beta, const float *c0)
{
    float *c = vec_new(m * n);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0.0;
            for (size_t p = 0; p < k; p++) {
                double av = ta ? a[p * m + i] : a[i * k + p];
                double bv = tb ? b[j * k + p] : b[p * n + j];
                s += av * bv;
            }
            c[i * n + j] = (float)(alpha * s + (beta == 0.0f ? 0.0 : beta * c0[i * n + j]));
        }
    return c;
}

/* ------------------------------------------------------------------------------------------------
 * Kernel runners: host arrays in, a new host array out (the caller frees). */

static inline float *run_gemm(sl_device *dev, bool ta, bool tb, size_t m, size_t n, size_t k,
                              float alpha, const float *a, const float *b, float beta,
                              const float *c0)
{
    sl_buffer *ba = buf_f(dev, a, m * k), *bb = buf_f(dev, b, k * n), *bc = buf_f(dev, c0, m * n);
    OK(sl_gemm(dev, ta, tb, m, n, k, alpha, ba, bb, beta, bc));
    sl_buffer_free(ba);
    sl_buffer_free(bb);
    return buf_take(bc, m * n);
}

static inline float *run_bias_add(sl_device *dev, size_t rows, size_t cols, const float *y,
                                  const float *bias)
{
    sl_buffer *by = buf_f(dev, y, rows * cols), *bb = buf_f(dev, bias, cols);
    OK(sl_bias_add(dev, rows, cols, by, bb));
    sl_buffer_free(bb);
    return buf_take(by, rows * cols);
}

static inline float *run_bias_grad(sl_device *dev, size_t rows, size_t cols, const float *dy,
                                   float beta, const float *db0)
{
    sl_buffer *bdy = buf_f(dev, dy, rows * cols), *bdb = buf_f(dev, db0, cols);
    OK(sl_bias_grad(dev, rows, cols, bdy, beta, bdb));
    sl_buffer_free(bdy);
    return buf_take(bdb, cols);
}

static inline float *run_act_forward(sl_device *dev, enum sl_activation act, size_t n,
                                     const float *x)
{
    sl_buffer *bx = buf_f(dev, x, n), *by = buf_f(dev, NULL, n);
    OK(sl_act_forward(dev, act, n, bx, by));
    sl_buffer_free(bx);
    return buf_take(by, n);
}

static inline float *run_act_backward(sl_device *dev, enum sl_activation act, size_t n,
                                      const float *x, const float *dy)
{
    sl_buffer *bx = buf_f(dev, x, n), *bdy = buf_f(dev, dy, n), *bdx = buf_f(dev, NULL, n);
    OK(sl_act_backward(dev, act, n, bx, bdy, bdx));
    sl_buffer_free(bx);
    sl_buffer_free(bdy);
    return buf_take(bdx, n);
}

static inline float *run_gelu_backward(sl_device *dev, size_t n, const float *x, const float *y,
                                       const float *dy)
{
    sl_buffer *bx = buf_f(dev, x, n), *by = buf_f(dev, y, n), *bdy = buf_f(dev, dy, n);
    sl_buffer *bdx = buf_f(dev, NULL, n);
    OK(sl_gelu_backward(dev, n, bx, by, bdy, bdx));
    sl_buffer_free(bx);
    sl_buffer_free(by);
    sl_buffer_free(bdy);
    return buf_take(bdx, n);
}

/* Returns dlogits; *loss_out gets the per-row losses (caller frees). */
static inline float *run_softmax_xent(sl_device *dev, size_t rows, size_t classes,
                                      const float *logits, const int32_t *labels, float scale,
                                      float **loss_out)
{
    sl_buffer *bl = buf_f(dev, logits, rows * classes);
    sl_buffer *by = buf_from(dev, labels, rows * sizeof(int32_t));
    sl_buffer *bloss = buf_f(dev, NULL, rows), *bd = buf_f(dev, NULL, rows * classes);
    OK(sl_softmax_xent(dev, rows, classes, bl, by, scale, bloss, bd));
    sl_buffer_free(bl);
    sl_buffer_free(by);
    *loss_out = buf_take(bloss, rows);
    return buf_take(bd, rows * classes);
}

static inline float *run_mse(sl_device *dev, size_t rows, size_t cols, const float *pred,
                             const float *target, float scale, float **loss_out)
{
    sl_buffer *bp = buf_f(dev, pred, rows * cols), *bt = buf_f(dev, target, rows * cols);
    sl_buffer *bloss = buf_f(dev, NULL, rows), *bd = buf_f(dev, NULL, rows * cols);
    OK(sl_mse(dev, rows, cols, bp, bt, scale, bloss, bd));
    sl_buffer_free(bp);
    sl_buffer_free(bt);
    *loss_out = buf_take(bloss, rows);
    return buf_take(bd, rows * cols);
}

/* Runs `steps` SGD steps with the same gradient list grads[step]; returns the parameters and
 * stores the momentum buffer in *buf_out when momentum != 0. */
static inline float *run_sgd(sl_device *dev, size_t n, const float *p0, const float *const *grads,
                             int steps, float lr, float momentum, float wd, float **buf_out)
{
    sl_buffer *bp = buf_f(dev, p0, n), *bm = buf_f(dev, NULL, n), *bg = buf_f(dev, NULL, n);
    OK(sl_fill(dev, n, 0.0f, bm));
    for (int s = 0; s < steps; s++) {
        OK(sl_buffer_upload(bg, 0, grads[s], n * sizeof(float)));
        OK(sl_sgd(dev, n, bp, bg, bm, lr, momentum, wd));
    }
    sl_buffer_free(bg);
    if (buf_out)
        *buf_out = buf_take(bm, n);
    else
        sl_buffer_free(bm);
    return buf_take(bp, n);
}

/* Runs `steps` Adam (or with `decoupled`, AdamW) steps from zero moments; returns the parameters.
 */
static inline float *run_adam_rule(sl_device *dev, bool decoupled, size_t n, const float *p0,
                                   const float *const *grads, int steps, float lr, float b1,
                                   float b2, float eps, float wd)
{
    sl_buffer *bp = buf_f(dev, p0, n), *bm = buf_f(dev, NULL, n), *bv = buf_f(dev, NULL, n);
    sl_buffer *bg = buf_f(dev, NULL, n);
    OK(sl_fill(dev, n, 0.0f, bm));
    OK(sl_fill(dev, n, 0.0f, bv));
    for (int s = 0; s < steps; s++) {
        OK(sl_buffer_upload(bg, 0, grads[s], n * sizeof(float)));
        if (decoupled)
            OK(sl_adamw(dev, n, bp, bg, bm, bv, lr, b1, b2, eps, wd, s + 1));
        else
            OK(sl_adam(dev, n, bp, bg, bm, bv, lr, b1, b2, eps, wd, s + 1));
    }
    sl_buffer_free(bg);
    sl_buffer_free(bm);
    sl_buffer_free(bv);
    return buf_take(bp, n);
}

static inline float *run_adam(sl_device *dev, size_t n, const float *p0, const float *const *grads,
                              int steps, float lr, float b1, float b2, float eps, float wd)
{
    return run_adam_rule(dev, false, n, p0, grads, steps, lr, b1, b2, eps, wd);
}

static inline float *run_adamw(sl_device *dev, size_t n, const float *p0, const float *const *grads,
                               int steps, float lr, float b1, float b2, float eps, float wd)
{
    return run_adam_rule(dev, true, n, p0, grads, steps, lr, b1, b2, eps, wd);
}

/* kind: 0 axpy (y += alpha x), 1 scale (x *= alpha), 2 fill (x = alpha) */
static inline float *run_elementwise(sl_device *dev, int kind, size_t n, float alpha,
                                     const float *x, const float *y)
{
    sl_buffer *bx = buf_f(dev, x, n);
    if (kind == 0) {
        sl_buffer *by = buf_f(dev, y, n);
        OK(sl_axpy(dev, n, alpha, bx, by));
        sl_buffer_free(bx);
        return buf_take(by, n);
    }
    if (kind == 1)
        OK(sl_scale(dev, n, alpha, bx));
    else
        OK(sl_fill(dev, n, alpha, bx));
    return buf_take(bx, n);
}

/* The sum written at out[at] of a buffer of at + 2 floats; the others must keep their 7. */
static inline float run_sum_squares_at(sl_device *dev, size_t n, const float *x, size_t at)
{
    sl_buffer *bx = buf_f(dev, x, n), *bo = buf_f(dev, NULL, at + 2);
    OK(sl_fill(dev, at + 2, 7.0f, bo));
    OK(sl_fill(dev, 1, NAN, bo));                      /* written, not accumulated */
    if (at > 0) OK(sl_sum_squares(dev, 1, bx, bo, 0)); /* out[0] is then the start's */
    OK(sl_sum_squares(dev, n, bx, bo, at));
    sl_buffer_free(bx);
    float *o = buf_take(bo, at + 2), r = o[at];
    for (size_t i = 1; i < at + 2; i++)
        if (i != at) cr_assert_eq(o[i], 7.0f, "sum_squares at %zu wrote element %zu", at, i);
    free(o);
    return r;
}

static inline float run_sum_squares(sl_device *dev, size_t n, const float *x)
{
    return run_sum_squares_at(dev, n, x, 0);
}

/* Returns y; *mean and *rstd get the saved statistics (caller frees). */
static inline float *run_layernorm_forward(sl_device *dev, size_t rows, size_t cols, const float *x,
                                           const float *w, const float *b, float **mean,
                                           float **rstd)
{
    sl_buffer *bx = buf_f(dev, x, rows * cols), *bw = buf_f(dev, w, cols),
              *bb = buf_f(dev, b, cols);
    sl_buffer *by = buf_f(dev, NULL, rows * cols), *bm = buf_f(dev, NULL, rows);
    sl_buffer *br = buf_f(dev, NULL, rows);
    OK(sl_layernorm_forward(dev, rows, cols, bx, bw, bb, by, bm, br));
    sl_buffer_free(bx);
    sl_buffer_free(bw);
    sl_buffer_free(bb);
    *mean = buf_take(bm, rows);
    *rstd = buf_take(br, rows);
    return buf_take(by, rows * cols);
}

/* Returns dx; *dw and *db get dw0 + dweight and db0 + dbias (caller frees). */
static inline float *run_layernorm_backward(sl_device *dev, size_t rows, size_t cols,
                                            const float *dy, const float *x, const float *mean,
                                            const float *rstd, const float *w, const float *dw0,
                                            const float *db0, float **dw, float **db)
{
    sl_buffer *bdy = buf_f(dev, dy, rows * cols), *bx = buf_f(dev, x, rows * cols);
    sl_buffer *bm = buf_f(dev, mean, rows), *br = buf_f(dev, rstd, rows), *bw = buf_f(dev, w, cols);
    sl_buffer *bdx = buf_f(dev, NULL, rows * cols), *bdw = buf_f(dev, dw0, cols);
    sl_buffer *bdb = buf_f(dev, db0, cols);
    OK(sl_layernorm_backward(dev, rows, cols, bdy, bx, bm, br, bw, bdx, bdw, bdb));
    sl_buffer_free(bdy);
    sl_buffer_free(bx);
    sl_buffer_free(bm);
    sl_buffer_free(br);
    sl_buffer_free(bw);
    *dw = buf_take(bdw, cols);
    *db = buf_take(bdb, cols);
    return buf_take(bdx, rows * cols);
}

static inline float *run_embedding_forward(sl_device *dev, size_t batch, size_t seq, size_t cols,
                                           size_t vocab, const int32_t *tokens, const float *wte,
                                           const float *wpe)
{
    size_t n = batch * seq;
    sl_buffer *bt = buf_from(dev, tokens, n * sizeof(int32_t));
    sl_buffer *bte = buf_f(dev, wte, vocab * cols), *bpe = buf_f(dev, wpe, seq * cols);
    sl_buffer *bo = buf_f(dev, NULL, n * cols);
    OK(sl_embedding_forward(dev, batch, seq, cols, vocab, bt, bte, bpe, bo));
    sl_buffer_free(bt);
    sl_buffer_free(bte);
    sl_buffer_free(bpe);
    return buf_take(bo, n * cols);
}

/* Returns dwte0 + the wte gradient; *dwpe gets dwpe0 + the wpe gradient (caller frees). */
static inline float *run_embedding_backward(sl_device *dev, size_t batch, size_t seq, size_t cols,
                                            size_t vocab, const int32_t *tokens, const float *dout,
                                            const float *dwte0, const float *dwpe0, float **dwpe)
{
    size_t n = batch * seq;
    sl_buffer *bt = buf_from(dev, tokens, n * sizeof(int32_t)), *bd = buf_f(dev, dout, n * cols);
    sl_buffer *bte = buf_f(dev, dwte0, vocab * cols), *bpe = buf_f(dev, dwpe0, seq * cols);
    OK(sl_embedding_backward(dev, batch, seq, cols, vocab, bt, bd, bte, bpe));
    sl_buffer_free(bt);
    sl_buffer_free(bd);
    *dwpe = buf_take(bpe, seq * cols);
    return buf_take(bte, vocab * cols);
}

/* Causal softmax forward (backward with dp): in place when `inplace`, the result replacing s
 * (dp). */
static inline float *run_causal_softmax(sl_device *dev, size_t heads, size_t seq, float scale,
                                        const float *s_or_p, const float *dp, bool inplace)
{
    size_t e = heads * seq * seq;
    sl_buffer *a = buf_f(dev, s_or_p, e), *g = dp ? buf_f(dev, dp, e) : NULL;
    sl_buffer *out = inplace ? (dp ? g : a) : buf_f(dev, NULL, e);
    if (dp)
        OK(sl_causal_softmax_backward(dev, heads, seq, scale, a, g, out));
    else
        OK(sl_causal_softmax_forward(dev, heads, seq, scale, a, out));
    if (a != out) sl_buffer_free(a);
    if (g && g != out) sl_buffer_free(g);
    return buf_take(out, e);
}

/* Causal self-attention on [batch, seq, 3*heads*hs] rows qkv: forward (dy NULL) returns y and
 * sets *att_out to the probabilities; backward (from att and dy) returns dqkv. Fused where the
 * device has a kernel, or composed of batched GEMMs and the softmax kernels with `composed`. */
static inline float *run_attention(sl_device *dev, bool composed, size_t batch, size_t seq,
                                   size_t heads, size_t hs, float scale, const float *qkv,
                                   const float *att, const float *dy, float **att_out)
{
    size_t e_qkv = batch * seq * 3 * heads * hs, e_att = batch * heads * seq * seq,
           e_y = batch * seq * heads * hs;
    sl_buffer *q = buf_f(dev, qkv, e_qkv), *a = buf_f(dev, att, e_att);
    float *out;
    if (!dy) {
        sl_buffer *y = buf_f(dev, NULL, e_y);
        OK((composed ? sl__attention_forward_composed
                     : sl_attention_forward)(dev, batch, seq, heads, hs, scale, q, a, y));
        out = buf_take(y, e_y);
        *att_out = buf_take(a, e_att);
    } else {
        sl_buffer *g = buf_f(dev, dy, e_y), *w = buf_f(dev, NULL, e_att),
                  *d = buf_f(dev, NULL, e_qkv);
        OK((composed ? sl__attention_backward_composed
                     : sl_attention_backward)(dev, batch, seq, heads, hs, scale, q, a, g, w, d));
        out = buf_take(d, e_qkv);
        sl_buffer_free(g), sl_buffer_free(w), sl_buffer_free(a);
    }
    sl_buffer_free(q);
    return out;
}

/* The strided 4-D copy from src (nsrc floats) into a copy of dst0 (ndst floats); returns dst. */
static inline float *run_copy_strided(sl_device *dev, const size_t shape[4], const float *src,
                                      size_t nsrc, size_t src_offset, const size_t src_strides[4],
                                      const float *dst0, size_t ndst, size_t dst_offset,
                                      const size_t dst_strides[4])
{
    sl_buffer *bs = buf_f(dev, src, nsrc), *bd = buf_f(dev, dst0, ndst);
    OK(sl_copy_strided(dev, shape, bs, src_offset, src_strides, bd, dst_offset, dst_strides));
    sl_buffer_free(bs);
    return buf_take(bd, ndst);
}

/* Batched GEMM over host arrays of na, nb and nc floats; returns C (nc floats). */
static inline float *run_gemm_batched(sl_device *dev, bool ta, bool tb, size_t m, size_t n,
                                      size_t k, float alpha, const float *a, size_t sa, size_t na,
                                      const float *b, size_t sb, size_t nb, float beta,
                                      const float *c0, size_t sc, size_t nc, size_t batch)
{
    sl_buffer *ba = buf_f(dev, a, na), *bb = buf_f(dev, b, nb), *bc = buf_f(dev, c0, nc);
    OK(sl_gemm_strided_batched(dev, ta, tb, m, n, k, alpha, ba, sa, bb, sb, beta, bc, sc, batch));
    sl_buffer_free(ba);
    sl_buffer_free(bb);
    return buf_take(bc, nc);
}

/* sl_gemm_batched over host arrays: a, b and c0 hold na, nb and nc floats and the views' offset,
 * ld and stride come from va, vb and vc (their buf is ignored); returns C (nc floats). */
static inline float *run_gemm_views(sl_device *dev, bool ta, bool tb, size_t m, size_t n, size_t k,
                                    float alpha, const float *a, size_t na, sl_gemm_view va,
                                    const float *b, size_t nb, sl_gemm_view vb, float beta,
                                    const float *c0, size_t nc, sl_gemm_view vc, size_t batch)
{
    va.buf = buf_f(dev, a, na), vb.buf = buf_f(dev, b, nb), vc.buf = buf_f(dev, c0, nc);
    OK(sl_gemm_batched(dev, ta, tb, m, n, k, alpha, va, vb, beta, vc, batch));
    sl_buffer_free(va.buf);
    sl_buffer_free(vb.buf);
    return buf_take(vc.buf, nc);
}

/* Matrix i of a view (rows x cols stored) copied out packed. */
static inline float *view_take(const float *x, sl_gemm_view v, size_t i, size_t rows, size_t cols)
{
    float *p = vec_new(rows * cols);
    for (size_t r = 0; r < rows; r++)
        memcpy(p + r * cols, x + v.offset + i * v.stride + r * v.ld, cols * sizeof *p);
    return p;
}

#endif
