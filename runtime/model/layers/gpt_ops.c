/* Pieces the GPT's layer kinds share: a linear map over [rows, in] activations with its weight
 * gradient, and the parameter specs nanoGPT initialises the same way. */
#include <math.h>

#include "core/core.h"
#include "runtime/model/layers/layers_impl.h"

int sl__linear_forward(sl_device *dev, size_t rows, size_t in, size_t out, sl_buffer *x,
                       sl_buffer *w, sl_buffer *b, sl_buffer *y)
{
    /* y[rows,out] = x[rows,in] W[out,in]^T (+ b[out]) */
    if (!b) return sl_gemm(dev, false, true, rows, out, in, 1.0f, x, w, 0.0f, y);
    /* With a bias, y starts as b on every row and the product is added to it (beta 1), as
     * PyTorch's addmm does: one pass over y before the GEMM, where beta 0 costs OpenBLAS a pass
     * clearing y (a memset that leaves y out of the cache on this host) and the bias another. */
    size_t shape[4] = {1, 1, rows, out}, from[4] = {0, 0, 0, 1}, to[4] = {0, 0, out, 1};
    SL_TRY(sl_copy_strided(dev, shape, b, 0, from, y, 0, to));
    return sl_gemm(dev, false, true, rows, out, in, 1.0f, x, w, 1.0f, y);
}

int sl__linear_backward_input(sl_device *dev, size_t rows, size_t in, size_t out, sl_buffer *dy,
                              sl_buffer *w, sl_buffer *dx)
{
    /* dx[rows,in] = dy[rows,out] W[out,in] */
    return sl_gemm(dev, false, false, rows, in, out, 1.0f, dy, w, 0.0f, dx);
}

int sl__linear_backward_weight(sl_device *dev, size_t rows, size_t in, size_t out, sl_buffer *dy,
                               sl_buffer *x, sl_buffer *dw, sl_buffer *db)
{
    /* dW[out,in] += dy[rows,out]^T x[rows,in];  db[out] += colsum(dy) */
    SL_TRY(sl_gemm(dev, true, false, out, in, rows, 1.0f, dy, x, 1.0f, dw));
    return db ? sl_bias_grad(dev, rows, out, dy, 1.0f, db) : SL_OK;
}

sl_param_spec sl__gpt_param(const char *name, int64_t d0, int64_t d1, enum sl_init init,
                            float scale)
{
    /* nanoGPT's configure_optimizers: every tensor of two or more dimensions decays, biases and
     * layer norms do not. */
    return (sl_param_spec){.name = name,
                           .ndim = d1 ? 2 : 1,
                           .shape = {d0, d1},
                           .init = init,
                           .scale = scale,
                           .decay = d1 != 0};
}
