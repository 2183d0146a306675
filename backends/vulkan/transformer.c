/* The Vulkan backend's transformer kernels: layer norm, embedding, causal softmax, the strided 4-D
 * copy, batched GEMM (gemm.comp with a batch in work-group z) and the sum of squares. Sizes fit the
 * shaders' 32-bit indices: the wrapper has checked every buffer against maxStorageBufferRange. */
#include "backends/vulkan/vulkan_impl.h"

#include <stdlib.h>

/* The most work-groups of the sum of squares' first pass (and so the most partial sums). */
#define SUM_GROUPS 256u

void sl__vk_free_partials(sl_device *dev)
{
    struct sl__vk_device *d = D(dev);
    if (!d->partials) return;
    sl__vk_buffer_free(d->partials);
    free(d->partials);
    d->partials = NULL;
}

/* Two passes: up to SUM_GROUPS work-groups write partial sums, then one work-group adds them. The
 * number of work-groups follows from n and the work-group size alone, so the order of every
 * addition is fixed. The scratch is the backend's own, outside the device's allocation count. */
int sl__vk_sum_squares(sl_device *dev, size_t n, sl_buffer *x, sl_buffer *out, size_t at)
{
    struct sl__vk_device *d = D(dev);
    uint32_t groups = SL_MIN(SUM_GROUPS, div_up(n, d->wg));
    if (groups == 1) {
        uint32_t push[5] = {0, (uint32_t)n, 1, 1, (uint32_t)at};
        sl_buffer *bufs[2] = {x, out};
        return sl__vk_record_kernel(d, K_SUM_SQUARES, bufs, push, 1, 1);
    }
    if (!d->partials) {
        sl_buffer *b = calloc(1, sizeof *b);
        if (!b) return sl_fail(SL_ENOMEM, "vulkan: out of host memory");
        b->dev = dev;
        b->size = SUM_GROUPS * sizeof(float);
        int st = sl__vk_buffer_alloc(b);
        if (st != SL_OK) {
            free(b);
            return st;
        }
        d->partials = b;
    }
    uint32_t push1[5] = {0, (uint32_t)n, 1, groups, 0};
    sl_buffer *bufs1[2] = {x, d->partials};
    SL_TRY(sl__vk_record_kernel(d, K_SUM_SQUARES, bufs1, push1, groups, 1));
    uint32_t push2[5] = {0, groups, 0, 1, (uint32_t)at};
    sl_buffer *bufs2[2] = {d->partials, out};
    return sl__vk_record_kernel(d, K_SUM_SQUARES, bufs2, push2, 1, 1);
}

int sl__vk_layernorm_forward(sl_device *dev, size_t rows, size_t cols, sl_buffer *x,
                             sl_buffer *weight, sl_buffer *bias, sl_buffer *y, sl_buffer *mean,
                             sl_buffer *rstd)
{
    sl_buffer *bufs[6] = {x, weight, bias, y, mean, rstd};
    uint32_t push[3] = {0, (uint32_t)rows, (uint32_t)cols};
    return sl__vk_run_1d(dev, K_LN_FWD, bufs, push, rows);
}

int sl__vk_layernorm_backward(sl_device *dev, size_t rows, size_t cols, sl_buffer *dy, sl_buffer *x,
                              sl_buffer *mean, sl_buffer *rstd, sl_buffer *weight, sl_buffer *dx,
                              sl_buffer *dweight, sl_buffer *dbias)
{
    /* The parameter gradients first: dx may be dy. */
    sl_buffer *params[6] = {dy, x, mean, rstd, dweight, dbias};
    uint32_t push[3] = {0, (uint32_t)rows, (uint32_t)cols};
    SL_TRY(sl__vk_run_1d(dev, K_LN_PARAMS, params, push, cols));
    sl_buffer *bufs[6] = {dy, x, mean, rstd, weight, dx};
    uint32_t push2[3] = {0, (uint32_t)rows, (uint32_t)cols};
    return sl__vk_run_1d(dev, K_LN_DX, bufs, push2, rows);
}

int sl__vk_embedding_forward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                             sl_buffer *tokens, sl_buffer *wte, sl_buffer *wpe, sl_buffer *out)
{
    size_t total = batch * seq * cols;
    sl_buffer *bufs[4] = {tokens, wte, wpe, out};
    uint32_t push[5] = {0, (uint32_t)total, (uint32_t)seq, (uint32_t)cols, (uint32_t)vocab};
    return sl__vk_run_1d(dev, K_EMB_FWD, bufs, push, total);
}

int sl__vk_embedding_backward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                              sl_buffer *tokens, sl_buffer *dout, sl_buffer *dwte, sl_buffer *dwpe)
{
    sl_buffer *bte[3] = {tokens, dout, dwte};
    uint32_t pte[4] = {0, (uint32_t)(batch * seq), (uint32_t)cols, (uint32_t)vocab};
    SL_TRY(sl__vk_run_1d(dev, K_EMB_DWTE, bte, pte, cols));
    sl_buffer *bpe[2] = {dout, dwpe};
    uint32_t ppe[4] = {0, (uint32_t)batch, (uint32_t)seq, (uint32_t)cols};
    return sl__vk_run_1d(dev, K_EMB_DWPE, bpe, ppe, seq * cols);
}

int sl__vk_causal_softmax_forward(sl_device *dev, size_t heads, size_t seq, float scale,
                                  sl_buffer *s, sl_buffer *p)
{
    sl_buffer *bufs[2] = {s, p};
    uint32_t push[4] = {0, (uint32_t)(heads * seq), (uint32_t)seq, f2u(scale)};
    return sl__vk_run_1d(dev, K_CSM_FWD, bufs, push, heads * seq);
}

int sl__vk_causal_softmax_backward(sl_device *dev, size_t heads, size_t seq, float scale,
                                   sl_buffer *p, sl_buffer *dp, sl_buffer *ds)
{
    sl_buffer *bufs[3] = {p, dp, ds};
    uint32_t push[4] = {0, (uint32_t)(heads * seq), (uint32_t)seq, f2u(scale)};
    return sl__vk_run_1d(dev, K_CSM_BWD, bufs, push, heads * seq);
}

/* One invocation per element, the flat index split in the shader; sl__vk_record_kernel splits a
 * launch beyond the device's x count. The wrapper has zeroed the strides of size-1 dimensions and
 * checked both views against the buffers (so against maxStorageBufferRange) and the count against
 * dst's span; a view whose last index still needs more than 32 bits is refused here. */
int sl__vk_copy_strided(sl_device *dev, const size_t shape[4], sl_buffer *src, size_t src_offset,
                        const size_t src_strides[4], sl_buffer *dst, size_t dst_offset,
                        const size_t dst_strides[4])
{
    size_t total = shape[0] * shape[1] * shape[2] * shape[3], src_last = src_offset,
           dst_last = dst_offset;
    for (int i = 0; i < 4; i++) {
        src_last += (shape[i] - 1) * src_strides[i];
        dst_last += (shape[i] - 1) * dst_strides[i];
    }
    if (total > UINT32_MAX || src_last > UINT32_MAX || dst_last > UINT32_MAX)
        return sl_fail(SL_ELIMIT,
                       "sl_copy_strided: %zu elements, last indices %zu (src) and %zu (dst): more "
                       "than the Vulkan kernel's 32-bit indices hold",
                       total, src_last, dst_last);
    sl_buffer *bufs[2] = {src, dst};
    /* base, total, shape[1..3], src offset and strides, dst offset and strides */
    uint32_t push[15] = {0,
                         (uint32_t)total,
                         (uint32_t)shape[1],
                         (uint32_t)shape[2],
                         (uint32_t)shape[3],
                         (uint32_t)src_offset};
    push[10] = (uint32_t)dst_offset;
    for (int i = 0; i < 4; i++) {
        push[6 + i] = (uint32_t)src_strides[i];
        push[11 + i] = (uint32_t)dst_strides[i];
    }
    return sl__vk_run_1d(dev, K_COPY_STRIDED, bufs, push, total);
}

/* gemm.comp with the batch in work-group z, split where it exceeds the device's z count (push[12]
 * carries the base). Always the storage-buffer shader: gemm_tex's texel views would have to span
 * the whole batch. */
int sl__vk_gemm_batched(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                        float alpha, const sl_gemm_view *a, const sl_gemm_view *b, float beta,
                        const sl_gemm_view *c, size_t batch)
{
    struct sl__vk_device *d = D(dev);
    sl_buffer *bufs[4] = {a->buf, b->buf, c->buf, b->buf};
    uint32_t push[SL__VK_GEMM_PUSH];
    sl__vk_gemm_push(push, m, n, k, trans_a, trans_b, alpha, beta, a, b, c, batch);
    uint32_t col_blocks = div_up(n, 4 * d->gemm_tn4), row_blocks = div_up(m, d->gemm_tm);
    uint32_t gx = div_up(col_blocks, d->gemm_wg);
    for (size_t z = 0; z < batch; z += d->max_groups[2]) {
        push[12] = (uint32_t)z; /* the z base of this part of the batch */
        uint32_t gz = (uint32_t)SL_MIN((size_t)d->max_groups[2], batch - z);
        SL_TRY(sl__vk_record_kernel_views(d, K_GEMM, bufs, NULL, push, gx, row_blocks, gz));
    }
    return SL_OK;
}
