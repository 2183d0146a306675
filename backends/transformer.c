/* The public wrappers of the kernels a GPT needs beyond the MLP ones (backend.c): sum of squares,
 * layer norm, embedding, causal softmax, the strided 4-D copy and batched strided GEMM. As in
 * backend.c, every size is checked here once, against the buffers and the device, before a backend
 * sees the call. */
#include "backends/backend_impl.h"

#include <stdint.h>

/* Records that the element count of `name` overflows size_t. */
static int overflow(const char *kernel, const char *name)
{
    return sl_fail(SL_ERANGE, "%s: the size of '%s' overflows", kernel, name);
}

int sl_sum_squares(sl_device *dev, size_t n, sl_buffer *x, sl_buffer *out, size_t at)
{
    static const char *K = "sl_sum_squares";
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_arg(K, "x", dev, x, n));
    if (at == SIZE_MAX) return overflow(K, "at");
    SL_TRY(sl__check_arg(K, "out", dev, out, at + 1));
    if (n == 0) {
        const float zero = 0.0f;
        return sl_buffer_upload(out, at * sizeof zero, &zero, sizeof zero);
    }
    return dev->ops->sum_squares(dev, n, x, out, at);
}

/* ------------------------------------------------------------------------------------------------
 * Layer norm */

int sl_layernorm_forward(sl_device *dev, size_t rows, size_t cols, sl_buffer *x, sl_buffer *weight,
                         sl_buffer *bias, sl_buffer *y, sl_buffer *mean, sl_buffer *rstd)
{
    static const char *K = "sl_layernorm_forward";
    size_t e;
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_shape(K, rows, cols, &e));
    if (cols == 0) return sl_fail(SL_EINVAL, "%s: zero columns", K);
    SL_TRY(sl__check_arg(K, "x", dev, x, e));
    SL_TRY(sl__check_arg(K, "weight", dev, weight, cols));
    SL_TRY(sl__check_arg(K, "bias", dev, bias, cols));
    SL_TRY(sl__check_arg(K, "y", dev, y, e));
    SL_TRY(sl__check_arg(K, "mean", dev, mean, rows));
    SL_TRY(sl__check_arg(K, "rstd", dev, rstd, rows));
    if (rows == 0) return SL_OK;
    return dev->ops->layernorm_forward(dev, rows, cols, x, weight, bias, y, mean, rstd);
}

int sl_layernorm_backward(sl_device *dev, size_t rows, size_t cols, sl_buffer *dy, sl_buffer *x,
                          sl_buffer *mean, sl_buffer *rstd, sl_buffer *weight, sl_buffer *dx,
                          sl_buffer *dweight, sl_buffer *dbias)
{
    static const char *K = "sl_layernorm_backward";
    size_t e;
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_shape(K, rows, cols, &e));
    if (cols == 0) return sl_fail(SL_EINVAL, "%s: zero columns", K);
    SL_TRY(sl__check_arg(K, "dy", dev, dy, e));
    SL_TRY(sl__check_arg(K, "x", dev, x, e));
    SL_TRY(sl__check_arg(K, "mean", dev, mean, rows));
    SL_TRY(sl__check_arg(K, "rstd", dev, rstd, rows));
    SL_TRY(sl__check_arg(K, "weight", dev, weight, cols));
    SL_TRY(sl__check_arg(K, "dx", dev, dx, e));
    SL_TRY(sl__check_arg(K, "dweight", dev, dweight, cols));
    SL_TRY(sl__check_arg(K, "dbias", dev, dbias, cols));
    if (rows == 0) return SL_OK;
    return dev->ops->layernorm_backward(dev, rows, cols, dy, x, mean, rstd, weight, dx, dweight,
                                        dbias);
}

/* ------------------------------------------------------------------------------------------------
 * Embedding */

static int check_embedding(const char *K, sl_device *dev, size_t batch, size_t seq, size_t cols,
                           size_t vocab, sl_buffer *tokens, const char *out_name, sl_buffer *out,
                           const char *wte_name, sl_buffer *wte, const char *wpe_name,
                           sl_buffer *wpe)
{
    size_t n, e, ewte, ewpe;
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_shape(K, batch, seq, &n));
    SL_TRY(sl__check_shape(K, n, cols, &e));
    SL_TRY(sl__check_shape(K, vocab, cols, &ewte));
    SL_TRY(sl__check_shape(K, seq, cols, &ewpe));
    if (vocab == 0 || vocab > INT32_MAX)
        return sl_fail(SL_EINVAL, "%s: vocabulary of %zu; it must be 1..%d", K, vocab, INT32_MAX);
    SL_TRY(sl__check_arg(K, "tokens", dev, tokens, n));
    SL_TRY(sl__check_arg(K, out_name, dev, out, e));
    SL_TRY(sl__check_arg(K, wte_name, dev, wte, ewte));
    SL_TRY(sl__check_arg(K, wpe_name, dev, wpe, ewpe));
    return SL_OK;
}

int sl_embedding_forward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                         sl_buffer *tokens, sl_buffer *wte, sl_buffer *wpe, sl_buffer *out)
{
    static const char *K = "sl_embedding_forward";
    SL_TRY(check_embedding(K, dev, batch, seq, cols, vocab, tokens, "out", out, "wte", wte, "wpe",
                           wpe));
    if (batch == 0 || seq == 0 || cols == 0) return SL_OK;
    return dev->ops->embedding_forward(dev, batch, seq, cols, vocab, tokens, wte, wpe, out);
}

int sl_embedding_backward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                          sl_buffer *tokens, sl_buffer *dout, sl_buffer *dwte, sl_buffer *dwpe)
{
    static const char *K = "sl_embedding_backward";
    SL_TRY(check_embedding(K, dev, batch, seq, cols, vocab, tokens, "dout", dout, "dwte", dwte,
                           "dwpe", dwpe));
    if (batch == 0 || seq == 0 || cols == 0) return SL_OK;
    return dev->ops->embedding_backward(dev, batch, seq, cols, vocab, tokens, dout, dwte, dwpe);
}

/* ------------------------------------------------------------------------------------------------
 * Causal softmax */

int sl_causal_softmax_forward(sl_device *dev, size_t heads, size_t seq, float scale, sl_buffer *s,
                              sl_buffer *p)
{
    static const char *K = "sl_causal_softmax_forward";
    size_t rows, e;
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_shape(K, heads, seq, &rows));
    SL_TRY(sl__check_shape(K, rows, seq, &e));
    SL_TRY(sl__check_arg(K, "s", dev, s, e));
    SL_TRY(sl__check_arg(K, "p", dev, p, e));
    if (e == 0) return SL_OK;
    return dev->ops->causal_softmax_forward(dev, heads, seq, scale, s, p);
}

int sl_causal_softmax_backward(sl_device *dev, size_t heads, size_t seq, float scale, sl_buffer *p,
                               sl_buffer *dp, sl_buffer *ds)
{
    static const char *K = "sl_causal_softmax_backward";
    size_t rows, e;
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_shape(K, heads, seq, &rows));
    SL_TRY(sl__check_shape(K, rows, seq, &e));
    SL_TRY(sl__check_arg(K, "p", dev, p, e));
    SL_TRY(sl__check_arg(K, "dp", dev, dp, e));
    SL_TRY(sl__check_arg(K, "ds", dev, ds, e));
    if (e == 0) return SL_OK;
    return dev->ops->causal_softmax_backward(dev, heads, seq, scale, p, dp, ds);
}

/* ------------------------------------------------------------------------------------------------
 * Strided 4-D copy */

/* *end = 1 + the largest element index of a view (offset + sum (shape[d]-1) * strides[d]) for a
 * shape without zeros; refuses overflow. */
static int view_end(const char *K, const char *name, const size_t shape[4], size_t offset,
                    const size_t strides[4], size_t *end)
{
    size_t e = offset;
    for (int d = 0; d < 4; d++) {
        size_t step = sl_mul_size(shape[d] - 1, strides[d]);
        if ((shape[d] > 1 && strides[d] && !step) || step > SIZE_MAX - e) return overflow(K, name);
        e += step;
    }
    if (e == SIZE_MAX) return overflow(K, name);
    *end = e + 1;
    return SL_OK;
}

int sl_copy_strided(sl_device *dev, const size_t shape[4], sl_buffer *src, size_t src_offset,
                    const size_t src_strides[4], sl_buffer *dst, size_t dst_offset,
                    const size_t dst_strides[4])
{
    static const char *K = "sl_copy_strided";
    SL_TRY(sl__check_dev(K, dev));
    if (!shape || !src_strides || !dst_strides)
        return sl_fail(SL_EINVAL, "%s: null shape or strides", K);
    if (src && src == dst) return sl_fail(SL_EINVAL, "%s: src and dst are the same buffer", K);
    if (!shape[0] || !shape[1] || !shape[2] || !shape[3]) {
        SL_TRY(sl__check_arg(K, "src", dev, src, 0));
        return sl__check_arg(K, "dst", dev, dst, 0);
    }
    size_t rows, cols, total, src_end, dst_end;
    SL_TRY(sl__check_shape(K, shape[0], shape[1], &rows));
    SL_TRY(sl__check_shape(K, shape[2], shape[3], &cols));
    SL_TRY(sl__check_shape(K, rows, cols, &total));
    SL_TRY(view_end(K, "src", shape, src_offset, src_strides, &src_end));
    SL_TRY(view_end(K, "dst", shape, dst_offset, dst_strides, &dst_end));
    SL_TRY(sl__check_arg(K, "src", dev, src, src_end));
    SL_TRY(sl__check_arg(K, "dst", dev, dst, dst_end));
    /* A necessary condition only: more indices than elements in dst's span must repeat one. */
    if (total > dst_end - dst_offset)
        return sl_fail(SL_EINVAL,
                       "%s: %zu elements written into a span of %zu: the destinations repeat", K,
                       total, dst_end - dst_offset);
    /* A dimension of size 1 never moves along its stride; 0 keeps the backends' arithmetic within
     * the view whatever the caller passed. */
    size_t ss[4], ds[4];
    for (int d = 0; d < 4; d++) {
        ss[d] = shape[d] > 1 ? src_strides[d] : 0;
        ds[d] = shape[d] > 1 ? dst_strides[d] : 0;
    }
    return dev->ops->copy_strided(dev, shape, src, src_offset, ss, dst, dst_offset, ds);
}

/* ------------------------------------------------------------------------------------------------
 * Batched strided GEMM */

/* The elements a batch of `batch` matrices of `elems` each, `stride` apart, spans; 0 overflows. */
static size_t batch_span(size_t batch, size_t stride, size_t elems)
{
    size_t before = sl_mul_size(batch - 1, stride);
    if (batch > 1 && stride && !before) return 0;
    return before > SIZE_MAX / 4 - elems ? 0 : before + elems;
}

int sl_gemm_strided_batched(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n,
                            size_t k, float alpha, sl_buffer *a, size_t stride_a, sl_buffer *b,
                            size_t stride_b, float beta, sl_buffer *c, size_t stride_c,
                            size_t batch)
{
    static const char *K = "sl_gemm_strided_batched";
    size_t ea, eb, ec;
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_shape(K, m, k, &ea));
    SL_TRY(sl__check_shape(K, k, n, &eb));
    SL_TRY(sl__check_shape(K, m, n, &ec));
    if (batch == 0) {
        SL_TRY(sl__check_arg(K, "a", dev, a, 0));
        SL_TRY(sl__check_arg(K, "b", dev, b, 0));
        return sl__check_arg(K, "c", dev, c, 0);
    }
    if (batch > 1 && stride_c < ec)
        return sl_fail(SL_EINVAL,
                       "%s: stride_c %zu is less than m*n = %zu, so the C matrices "
                       "would overlap",
                       K, stride_c, ec);
    size_t na = batch_span(batch, stride_a, ea), nb = batch_span(batch, stride_b, eb);
    size_t nc = batch_span(batch, stride_c, ec);
    if (!na && ea) return overflow(K, "a");
    if (!nb && eb) return overflow(K, "b");
    if (!nc && ec) return overflow(K, "c");
    SL_TRY(sl__check_arg(K, "a", dev, a, na));
    SL_TRY(sl__check_arg(K, "b", dev, b, nb));
    SL_TRY(sl__check_arg(K, "c", dev, c, nc));
    if (m == 0 || n == 0) return SL_OK;
    if (k == 0) {
        if (beta == 1.0f) return SL_OK;
        if (batch > 1 && stride_c != ec)
            return sl_fail(SL_EUNSUPPORTED,
                           "%s: k = 0 with beta %g needs contiguous C matrices (stride_c = m*n)", K,
                           (double)beta);
        return beta == 0.0f ? dev->ops->fill(dev, nc, 0.0f, c) : dev->ops->scale(dev, nc, beta, c);
    }
    const sl_gemm_view va = {a, 0, trans_a ? m : k, stride_a, 0, 0},
                       vb = {b, 0, trans_b ? k : n, stride_b, 0, 0};
    const sl_gemm_view vc = {c, 0, n, stride_c, 0, 0};
    return dev->ops->gemm_batched(dev, trans_a, trans_b, m, n, k, alpha, &va, &vb, beta, &vc,
                                  batch);
}

/* The elements up to the end of a batch of views of rows x cols matrices (rows, cols > 0) in
 * groups of g, after checking ld >= cols and the grouping; 0 on overflow. */
static int view_span(const char *K, const char *name, const sl_gemm_view *v, size_t rows,
                     size_t cols, size_t batch, size_t g, size_t *end)
{
    if (v->ld < cols)
        return sl_fail(SL_EINVAL, "%s: %s's ld %zu is less than its rows' %zu elements", K, name,
                       v->ld, cols);
    size_t groups = batch / g;
    size_t a = sl_mul_size(g - 1, v->stride), b = sl_mul_size(rows - 1, v->ld);
    size_t c = sl_mul_size(groups - 1, v->group_stride);
    if ((g > 1 && v->stride && !a) || (rows > 1 && !b) || (groups > 1 && v->group_stride && !c) ||
        a > SIZE_MAX / 8 || b > SIZE_MAX / 8 || c > SIZE_MAX / 8 || cols > SIZE_MAX / 8 ||
        v->offset > SIZE_MAX / 8)
        return overflow(K, name);
    if (groups > 1 && v->group_stride < a)
        return sl_fail(SL_EINVAL, "%s: %s's group stride %zu is less than its group's %zu", K, name,
                       v->group_stride, a);
    *end = v->offset + a + b + c + cols;
    return SL_OK;
}

int sl_gemm_batched(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                    float alpha, sl_gemm_view a, sl_gemm_view b, float beta, sl_gemm_view c,
                    size_t batch)
{
    static const char *K = "sl_gemm_batched";
    SL_TRY(sl__check_dev(K, dev));
    if (!m || !n || !k || !batch) {
        SL_TRY(sl__check_arg(K, "a", dev, a.buf, 0));
        SL_TRY(sl__check_arg(K, "b", dev, b.buf, 0));
        SL_TRY(sl__check_arg(K, "c", dev, c.buf, 0));
        if (k || !m || !n || !batch || beta == 1.0f) return SL_OK;
        return sl_fail(SL_EUNSUPPORTED, "%s: k = 0 with beta %g (use sl_gemm_strided_batched)", K,
                       (double)beta);
    }
    size_t g = c.group ? c.group : batch;
    if (a.group != c.group || b.group != c.group || batch % g)
        return sl_fail(SL_EINVAL,
                       "%s: the views group their matrices by %zu, %zu and %zu, and the batch is "
                       "%zu: they must group alike, the batch a whole number of groups",
                       K, a.group, b.group, c.group, batch);
    size_t ea, eb, ec;
    SL_TRY(view_span(K, "a", &a, trans_a ? k : m, trans_a ? m : k, batch, g, &ea));
    SL_TRY(view_span(K, "b", &b, trans_b ? n : k, trans_b ? k : n, batch, g, &eb));
    SL_TRY(view_span(K, "c", &c, m, n, batch, g, &ec));
    SL_TRY(sl__check_arg(K, "a", dev, a.buf, ea));
    SL_TRY(sl__check_arg(K, "b", dev, b.buf, eb));
    SL_TRY(sl__check_arg(K, "c", dev, c.buf, ec));
    /* No overflow below: within the spans checked. */
    bool after = c.stride >= (m - 1) * c.ld + n;
    bool beside = c.stride >= n && (g - 1) * c.stride + n <= c.ld;
    bool groups_apart = c.group_stride >= (g - 1) * c.stride + (m - 1) * c.ld + n;
    if ((g > 1 && !after && !beside) || (batch > g && !groups_apart))
        return sl_fail(SL_EINVAL,
                       "%s: the C matrices overlap (stride %zu, ld %zu, group stride %zu, %zu x "
                       "%zu each)",
                       K, c.stride, c.ld, c.group_stride, m, n);
    return dev->ops->gemm_batched(dev, trans_a, trans_b, m, n, k, alpha, &a, &b, beta, &c, batch);
}
