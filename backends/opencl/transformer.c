/* The OpenCL backend's transformer kernels (kernels/opencl/transformer.cl): layer norm, embedding,
 * causal softmax, the strided 4-D copy and the sum of squares, and batched GEMM through CLBlast. */
#include "backends/opencl/opencl_impl.h"

#include <clblast_c.h>
#include <stdio.h>

/* The most work-groups of the sum of squares' first pass (and so the most partial sums). */
#define SUM_GROUPS 256

static size_t div_up(size_t n, size_t d)
{
    return (n + d - 1) / d;
}

/* One pass of sum_squares over n elements of `in` with `groups` work-groups of d->wg, into out
 * from element `at`. */
static int sum_pass(struct sl__cl_device *d, cl_mem in, cl_mem out, size_t n, cl_int square,
                    size_t groups, size_t at)
{
    cl_ulong nn = n, off = at;
    ARG(K_SUM_SQUARES, 0, in);
    ARG(K_SUM_SQUARES, 1, out);
    ARG(K_SUM_SQUARES, 2, nn);
    ARG(K_SUM_SQUARES, 3, square);
    CL_TRY(clSetKernelArg(d->kernels[K_SUM_SQUARES], 4, d->wg * sizeof(float), NULL),
           "clSetKernelArg K_SUM_SQUARES (local)");
    ARG(K_SUM_SQUARES, 5, off);
    size_t local = d->wg, global = groups * d->wg;
    CL_TRY(clEnqueueNDRangeKernel(d->queue, d->kernels[K_SUM_SQUARES], 1, NULL, &global, &local, 0,
                                  NULL, NULL),
           "clEnqueueNDRangeKernel (sum_squares)");
    return SL_OK;
}

/* Two passes: up to SUM_GROUPS work-groups write partial sums, then one work-group adds them. The
 * number of work-groups follows from n and d->wg alone, so the order of every addition is fixed. */
int sl__cl_sum_squares(sl_device *dev, size_t n, sl_buffer *x, sl_buffer *out, size_t at)
{
    struct sl__cl_device *d = CLDEV(dev);
    size_t groups = SL_MIN((size_t)SUM_GROUPS, div_up(n, d->wg));
    if (groups == 1) return sum_pass(d, MEM(x), MEM(out), n, 1, 1, at);
    if (!d->partials) {
        cl_int err;
        d->partials =
            clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, SUM_GROUPS * sizeof(float), NULL, &err);
        if (err != CL_SUCCESS) return sl__cl_fail(err, "clCreateBuffer (sum of squares)");
    }
    SL_TRY(sum_pass(d, MEM(x), d->partials, n, 1, groups, 0));
    return sum_pass(d, d->partials, MEM(out), groups, 0, 1, at);
}

int sl__cl_layernorm_forward(sl_device *dev, size_t rows, size_t cols, sl_buffer *x,
                             sl_buffer *weight, sl_buffer *bias, sl_buffer *y, sl_buffer *mean,
                             sl_buffer *rstd)
{
    struct sl__cl_device *d = CLDEV(dev);
    cl_ulong r = rows, c = cols;
    ARG(K_LAYERNORM_FORWARD, 0, x->impl);
    ARG(K_LAYERNORM_FORWARD, 1, weight->impl);
    ARG(K_LAYERNORM_FORWARD, 2, bias->impl);
    ARG(K_LAYERNORM_FORWARD, 3, y->impl);
    ARG(K_LAYERNORM_FORWARD, 4, mean->impl);
    ARG(K_LAYERNORM_FORWARD, 5, rstd->impl);
    ARG(K_LAYERNORM_FORWARD, 6, r);
    ARG(K_LAYERNORM_FORWARD, 7, c);
    return sl__cl_launch1(d, K_LAYERNORM_FORWARD, rows);
}

int sl__cl_layernorm_backward(sl_device *dev, size_t rows, size_t cols, sl_buffer *dy, sl_buffer *x,
                              sl_buffer *mean, sl_buffer *rstd, sl_buffer *weight, sl_buffer *dx,
                              sl_buffer *dweight, sl_buffer *dbias)
{
    struct sl__cl_device *d = CLDEV(dev);
    cl_ulong r = rows, c = cols;
    /* The parameter gradients first: dx may be dy. */
    ARG(K_LAYERNORM_PARAMS, 0, dy->impl);
    ARG(K_LAYERNORM_PARAMS, 1, x->impl);
    ARG(K_LAYERNORM_PARAMS, 2, mean->impl);
    ARG(K_LAYERNORM_PARAMS, 3, rstd->impl);
    ARG(K_LAYERNORM_PARAMS, 4, dweight->impl);
    ARG(K_LAYERNORM_PARAMS, 5, dbias->impl);
    ARG(K_LAYERNORM_PARAMS, 6, r);
    ARG(K_LAYERNORM_PARAMS, 7, c);
    SL_TRY(sl__cl_launch1(d, K_LAYERNORM_PARAMS, cols));
    ARG(K_LAYERNORM_DX, 0, dy->impl);
    ARG(K_LAYERNORM_DX, 1, x->impl);
    ARG(K_LAYERNORM_DX, 2, mean->impl);
    ARG(K_LAYERNORM_DX, 3, rstd->impl);
    ARG(K_LAYERNORM_DX, 4, weight->impl);
    ARG(K_LAYERNORM_DX, 5, dx->impl);
    ARG(K_LAYERNORM_DX, 6, r);
    ARG(K_LAYERNORM_DX, 7, c);
    return sl__cl_launch1(d, K_LAYERNORM_DX, rows);
}

int sl__cl_embedding_forward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                             sl_buffer *tokens, sl_buffer *wte, sl_buffer *wpe, sl_buffer *out)
{
    struct sl__cl_device *d = CLDEV(dev);
    cl_ulong total = batch * seq * cols, s = seq, c = cols, v = vocab;
    ARG(K_EMBEDDING_FORWARD, 0, tokens->impl);
    ARG(K_EMBEDDING_FORWARD, 1, wte->impl);
    ARG(K_EMBEDDING_FORWARD, 2, wpe->impl);
    ARG(K_EMBEDDING_FORWARD, 3, out->impl);
    ARG(K_EMBEDDING_FORWARD, 4, total);
    ARG(K_EMBEDDING_FORWARD, 5, s);
    ARG(K_EMBEDDING_FORWARD, 6, c);
    ARG(K_EMBEDDING_FORWARD, 7, v);
    return sl__cl_launch1(d, K_EMBEDDING_FORWARD, total);
}

int sl__cl_embedding_backward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                              sl_buffer *tokens, sl_buffer *dout, sl_buffer *dwte, sl_buffer *dwpe)
{
    struct sl__cl_device *d = CLDEV(dev);
    cl_ulong ntok = batch * seq, b = batch, s = seq, c = cols, v = vocab;
    ARG(K_EMBEDDING_DWTE, 0, tokens->impl);
    ARG(K_EMBEDDING_DWTE, 1, dout->impl);
    ARG(K_EMBEDDING_DWTE, 2, dwte->impl);
    ARG(K_EMBEDDING_DWTE, 3, ntok);
    ARG(K_EMBEDDING_DWTE, 4, c);
    ARG(K_EMBEDDING_DWTE, 5, v);
    SL_TRY(sl__cl_launch1(d, K_EMBEDDING_DWTE, cols));
    ARG(K_EMBEDDING_DWPE, 0, dout->impl);
    ARG(K_EMBEDDING_DWPE, 1, dwpe->impl);
    ARG(K_EMBEDDING_DWPE, 2, b);
    ARG(K_EMBEDDING_DWPE, 3, s);
    ARG(K_EMBEDDING_DWPE, 4, c);
    return sl__cl_launch1(d, K_EMBEDDING_DWPE, seq * cols);
}

int sl__cl_causal_softmax_forward(sl_device *dev, size_t heads, size_t seq, float scale,
                                  sl_buffer *s, sl_buffer *p)
{
    struct sl__cl_device *d = CLDEV(dev);
    cl_ulong rows = heads * seq, n = seq;
    ARG(K_CAUSAL_SOFTMAX_FORWARD, 0, s->impl);
    ARG(K_CAUSAL_SOFTMAX_FORWARD, 1, p->impl);
    ARG(K_CAUSAL_SOFTMAX_FORWARD, 2, rows);
    ARG(K_CAUSAL_SOFTMAX_FORWARD, 3, n);
    ARG(K_CAUSAL_SOFTMAX_FORWARD, 4, scale);
    return sl__cl_launch1(d, K_CAUSAL_SOFTMAX_FORWARD, rows);
}

int sl__cl_causal_softmax_backward(sl_device *dev, size_t heads, size_t seq, float scale,
                                   sl_buffer *p, sl_buffer *dp, sl_buffer *ds)
{
    struct sl__cl_device *d = CLDEV(dev);
    cl_ulong rows = heads * seq, n = seq;
    ARG(K_CAUSAL_SOFTMAX_BACKWARD, 0, p->impl);
    ARG(K_CAUSAL_SOFTMAX_BACKWARD, 1, dp->impl);
    ARG(K_CAUSAL_SOFTMAX_BACKWARD, 2, ds->impl);
    ARG(K_CAUSAL_SOFTMAX_BACKWARD, 3, rows);
    ARG(K_CAUSAL_SOFTMAX_BACKWARD, 4, n);
    ARG(K_CAUSAL_SOFTMAX_BACKWARD, 5, scale);
    return sl__cl_launch1(d, K_CAUSAL_SOFTMAX_BACKWARD, rows);
}

/* The strided copy kernel from src (at so, strides ss) to dst (at dof, strides ds) over shape sh.
 */
static int launch_copy_strided(struct sl__cl_device *d, cl_mem src, cl_mem dst, cl_ulong4 sh,
                               cl_ulong so, cl_ulong4 ss, cl_ulong dof, cl_ulong4 ds)
{
    cl_ulong total = sh.s[0] * sh.s[1] * sh.s[2] * sh.s[3];
    ARG(K_COPY_STRIDED, 0, src);
    ARG(K_COPY_STRIDED, 1, dst);
    ARG(K_COPY_STRIDED, 2, total);
    ARG(K_COPY_STRIDED, 3, sh);
    ARG(K_COPY_STRIDED, 4, so);
    ARG(K_COPY_STRIDED, 5, ss);
    ARG(K_COPY_STRIDED, 6, dof);
    ARG(K_COPY_STRIDED, 7, ds);
    return sl__cl_launch1(d, K_COPY_STRIDED, (size_t)total);
}

int sl__cl_copy_strided(sl_device *dev, const size_t shape[4], sl_buffer *src, size_t src_offset,
                        const size_t src_strides[4], sl_buffer *dst, size_t dst_offset,
                        const size_t dst_strides[4])
{
    cl_ulong4 sh, ss, ds;
    for (int i = 0; i < 4; i++) {
        sh.s[i] = shape[i];
        ss.s[i] = src_strides[i];
        ds.s[i] = dst_strides[i];
    }
    return launch_copy_strided(CLDEV(dev), MEM(src), MEM(dst), sh, src_offset, ss, dst_offset, ds);
}

/* beta = 0 must overwrite C even where it holds NaN (CLBlast computes beta * C), and only the
 * matrices, not what lies between them: packed matrices take fills, others a strided copy of one
 * zero over the view. */
static int clear_c(struct sl__cl_device *d, size_t m, size_t n, const sl_gemm_view *c, size_t batch)
{
    const float zero = 0.0f;
    size_t g = c->group ? c->group : batch;
    if (c->ld == n && g == batch) {
        size_t parts = c->stride == m * n ? 1 : batch, bytes = m * n * sizeof(float);
        if (parts == 1) bytes *= batch;
        for (size_t i = 0; i < parts; i++)
            CL_TRY(clEnqueueFillBuffer(d->queue, MEM(c->buf), &zero, sizeof zero,
                                       (c->offset + i * c->stride) * sizeof(float), bytes, 0, NULL,
                                       NULL),
                   "clEnqueueFillBuffer (batched GEMM with beta 0)");
        return SL_OK;
    }
    cl_int err = CL_SUCCESS;
    if (!d->zero)
        d->zero = clCreateBuffer(d->ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof zero,
                                 (void *)&zero, &err);
    CL_TRY(err, "clCreateBuffer (batched GEMM's zero)");
    cl_ulong4 sh = {{batch / g, g, m, n}}, ss = {{0, 0, 0, 0}};
    cl_ulong4 ds = {{c->group_stride, c->stride, c->ld, 1}};
    return launch_copy_strided(d, d->zero, MEM(c->buf), sh, 0, ss, c->offset, ds);
}

/* As cl_gemm (kernels.c): the column-major product C^T = B^T A^T over the same memory, for every
 * matrix of the batch (of each group) in one CLBlast call. */
int sl__cl_gemm_batched(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                        float alpha, const sl_gemm_view *a, const sl_gemm_view *b, float beta,
                        const sl_gemm_view *c, size_t batch)
{
    struct sl__cl_device *d = CLDEV(dev);
    if (beta == 0.0f) SL_TRY(clear_c(d, m, n, c, batch));
    const CLBlastTranspose ta = trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    const CLBlastTranspose tb = trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    /* CLBlast's batched kernels gave wrong results on PoCL where a stride was not a whole number
     * of float4s (A transposed, 64x64x64, strides 4099/4101/4097 floats: the conformance suite's
     * padded case), so such batches (and views whose offsets or ld are not) go one matrix at a
     * time. */
    CLBlastStatusCode s = CLBlastSuccess;
    size_t all = a->stride | b->stride | c->stride | a->offset | b->offset | c->offset | a->ld |
                 b->ld | c->ld | a->group_stride | b->group_stride | c->group_stride;
    /* Groups go one strided batch each: CLBlast's batched call with offset arrays measured
     * slower on PoCL than the per-group strided calls (bench/train.md). */
    size_t g = c->group && c->group < batch ? c->group : batch;
    if (all % 4 == 0) {
        for (size_t z = 0; z < batch && s == CLBlastSuccess; z += g)
            s = CLBlastSgemmStridedBatched(
                CLBlastLayoutColMajor, tb, ta, n, m, k, alpha, MEM(b->buf), sl_gemm_view_at(b, z),
                b->ld, b->stride, MEM(a->buf), sl_gemm_view_at(a, z), a->ld, a->stride, beta,
                MEM(c->buf), sl_gemm_view_at(c, z), c->ld, c->stride, g, &d->queue, NULL);
    } else {
        for (size_t i = 0; i < batch && s == CLBlastSuccess; i++)
            s = CLBlastSgemm(CLBlastLayoutColMajor, tb, ta, n, m, k, alpha, MEM(b->buf),
                             sl_gemm_view_at(b, i), b->ld, MEM(a->buf), sl_gemm_view_at(a, i),
                             a->ld, beta, MEM(c->buf), sl_gemm_view_at(c, i), c->ld, &d->queue,
                             NULL);
    }
    if (s != CLBlastSuccess) {
        char what[160];
        snprintf(what, sizeof what, "CLBlast batched SGEMM (m=%zu n=%zu k=%zu, batch %zu%s%s)", m,
                 n, k, batch, trans_a ? ", A transposed" : "", trans_b ? ", B transposed" : "");
        return sl__clblast_fail(s, what);
    }
    return SL_OK;
}
