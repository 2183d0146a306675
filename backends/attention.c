/* Causal self-attention's public wrappers (backends/backend.h): checked here once, then the
 * backend's fused kernel where it has one, else batched GEMMs around the causal softmax, with the
 * causal mask's zeros skipped. */
#include "backends/backend_impl.h"

/* The elements of qkv, att and y (dy) for the shape, or a status on overflow or a zero size. */
static int attention_sizes(const char *K, size_t batch, size_t seq, size_t heads, size_t hs,
                           size_t *e_qkv, size_t *e_att, size_t *e_y)
{
    if (!batch || !seq || !heads || !hs)
        return sl_fail(SL_EINVAL,
                       "%s: batch %zu, seq %zu, heads %zu, head size %zu: each must be "
                       "at least 1",
                       K, batch, seq, heads, hs);
    size_t rows, C, C3, bh, tt;
    SL_TRY(sl__check_shape(K, batch, seq, &rows));
    SL_TRY(sl__check_shape(K, heads, hs, &C));
    SL_TRY(sl__check_shape(K, C, 3, &C3));
    SL_TRY(sl__check_shape(K, rows, C3, e_qkv));
    SL_TRY(sl__check_shape(K, rows, C, e_y));
    SL_TRY(sl__check_shape(K, batch, heads, &bh));
    SL_TRY(sl__check_shape(K, seq, seq, &tt));
    return sl__check_shape(K, bh, tt, e_att);
}

typedef struct att_dims {
    size_t B, T, H, hs;
} att_dims;

/* The heads of every sample in [B, T, row] activations, from column col0: head h of sample b is
 * the T x hs matrix at b*T*row + col0 + h*hs with rows `row` apart (read and written in place,
 * no copies), grouped by sample so that one call covers them all. */
static sl_gemm_view heads_of(sl_buffer *buf, const att_dims *d, size_t row, size_t col0)
{
    return (sl_gemm_view){buf, col0, row, d->hs, d->H, d->T * row};
}

/* The [B, H, T, T] scores or probabilities, grouped alike. */
static sl_gemm_view scores_of(sl_buffer *buf, const att_dims *d)
{
    return (sl_gemm_view){buf, 0, d->T, d->T * d->T, d->H, d->H * d->T * d->T};
}

/* v moved down `rows` rows and right `cols` columns. */
static sl_gemm_view at(sl_gemm_view v, size_t rows, size_t cols)
{
    v.offset += rows * v.ld + cols;
    return v;
}

/* The attention's products for the H heads of every sample, skipping the causal mask's zeros: the
 * rows split at h = T/2, and a [T, T] matrix's block of rows < h and columns >= h is neither
 * computed (the softmax kernels do not read it) nor multiplied (it is zero), a quarter of each
 * product. lower_of: the lower part of C[T, T] = A B^T (A, B [T, n]); lower_by: C[T, n] = L B;
 * lower_t_by: C[T, n] = L^T B, where L is [T, T] and zero above its diagonal. */
static int lower_of(sl_device *dev, const att_dims *d, sl_gemm_view a, sl_gemm_view b,
                    sl_gemm_view c)
{
    size_t h = d->T / 2, T = d->T, n = d->hs;
    SL_TRY(sl_gemm_batched(dev, false, true, h, h, n, 1.0f, a, b, 0.0f, c, d->B * d->H));
    return sl_gemm_batched(dev, false, true, T - h, T, n, 1.0f, at(a, h, 0), b, 0.0f, at(c, h, 0),
                           d->B * d->H);
}

static int lower_by(sl_device *dev, const att_dims *d, sl_gemm_view l, sl_gemm_view b,
                    sl_gemm_view c)
{
    size_t h = d->T / 2, T = d->T, n = d->hs;
    SL_TRY(sl_gemm_batched(dev, false, false, h, n, h, 1.0f, l, b, 0.0f, c, d->B * d->H));
    return sl_gemm_batched(dev, false, false, T - h, n, T, 1.0f, at(l, h, 0), b, 0.0f, at(c, h, 0),
                           d->B * d->H);
}

static int lower_t_by(sl_device *dev, const att_dims *d, sl_gemm_view l, sl_gemm_view b,
                      sl_gemm_view c)
{
    size_t h = d->T / 2, T = d->T, n = d->hs;
    SL_TRY(sl_gemm_batched(dev, true, false, h, n, T, 1.0f, l, b, 0.0f, c, d->B * d->H));
    return sl_gemm_batched(dev, true, false, T - h, n, T - h, 1.0f, at(l, h, h), at(b, h, 0), 0.0f,
                           at(c, h, 0), d->B * d->H);
}

int sl__attention_forward_composed(sl_device *dev, size_t batch, size_t seq, size_t heads,
                                   size_t hs, float scale, sl_buffer *qkv, sl_buffer *att,
                                   sl_buffer *y)
{
    att_dims d = {batch, seq, heads, hs};
    size_t C = heads * hs, C3 = 3 * C;
    SL_TRY(
        lower_of(dev, &d, heads_of(qkv, &d, C3, 0), heads_of(qkv, &d, C3, C), scores_of(att, &d)));
    SL_TRY(sl_causal_softmax_forward(dev, batch * heads, seq, scale, att, att));
    return lower_by(dev, &d, scores_of(att, &d), heads_of(qkv, &d, C3, 2 * C),
                    heads_of(y, &d, C, 0));
}

int sl__attention_backward_composed(sl_device *dev, size_t batch, size_t seq, size_t heads,
                                    size_t hs, float scale, sl_buffer *qkv, sl_buffer *att,
                                    sl_buffer *dy, sl_buffer *work, sl_buffer *dqkv)
{
    att_dims d = {batch, seq, heads, hs};
    size_t C = heads * hs, C3 = 3 * C;
    /* d(att) = dy v^T into work, dv = att^T dy, then work becomes d(scores): dq = work k,
     * dk = work^T q */
    sl_gemm_view dyh = heads_of(dy, &d, C, 0);
    SL_TRY(lower_of(dev, &d, dyh, heads_of(qkv, &d, C3, 2 * C), scores_of(work, &d)));
    SL_TRY(lower_t_by(dev, &d, scores_of(att, &d), dyh, heads_of(dqkv, &d, C3, 2 * C)));
    SL_TRY(sl_causal_softmax_backward(dev, batch * heads, seq, scale, att, work, work));
    SL_TRY(lower_by(dev, &d, scores_of(work, &d), heads_of(qkv, &d, C3, C),
                    heads_of(dqkv, &d, C3, 0)));
    return lower_t_by(dev, &d, scores_of(work, &d), heads_of(qkv, &d, C3, 0),
                      heads_of(dqkv, &d, C3, C));
}

int sl_attention_forward(sl_device *dev, size_t batch, size_t seq, size_t heads, size_t hs,
                         float scale, sl_buffer *qkv, sl_buffer *att, sl_buffer *y)
{
    static const char *K = "sl_attention_forward";
    size_t e_qkv, e_att, e_y;
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(attention_sizes(K, batch, seq, heads, hs, &e_qkv, &e_att, &e_y));
    SL_TRY(sl__check_arg(K, "qkv", dev, qkv, e_qkv));
    SL_TRY(sl__check_arg(K, "att", dev, att, e_att));
    SL_TRY(sl__check_arg(K, "y", dev, y, e_y));
    if (dev->ops->attention_forward)
        return dev->ops->attention_forward(dev, batch, seq, heads, hs, scale, qkv, att, y);
    return sl__attention_forward_composed(dev, batch, seq, heads, hs, scale, qkv, att, y);
}

int sl_attention_backward(sl_device *dev, size_t batch, size_t seq, size_t heads, size_t hs,
                          float scale, sl_buffer *qkv, sl_buffer *att, sl_buffer *dy,
                          sl_buffer *work, sl_buffer *dqkv)
{
    static const char *K = "sl_attention_backward";
    size_t e_qkv, e_att, e_y;
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(attention_sizes(K, batch, seq, heads, hs, &e_qkv, &e_att, &e_y));
    SL_TRY(sl__check_arg(K, "qkv", dev, qkv, e_qkv));
    SL_TRY(sl__check_arg(K, "att", dev, att, e_att));
    SL_TRY(sl__check_arg(K, "dy", dev, dy, e_y));
    SL_TRY(sl__check_arg(K, "work", dev, work, e_att));
    SL_TRY(sl__check_arg(K, "dqkv", dev, dqkv, e_qkv));
    if (dev->ops->attention_backward)
        return dev->ops->attention_backward(dev, batch, seq, heads, hs, scale, qkv, att, dy, work,
                                            dqkv);
    return sl__attention_backward_composed(dev, batch, seq, heads, hs, scale, qkv, att, dy, work,
                                           dqkv);
}
