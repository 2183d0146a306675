/* The OpenCL backend's transformer kernels: layer norm, embedding, causal softmax, the strided copy
 * and the sum of squares. Each sums in the order of the C reference (backends/cpu/transformer.c),
 * one work-item per row or per column, so results match it to rounding, and no kernel uses
 * atomics: the same input gives the same bits on every run.
 *
 * Contraction into FMA is off so that results round like the C reference. */
#pragma OPENCL FP_CONTRACT OFF

#define LN_EPS 1e-5f

/* Layer norm forward, one work-item per row of x[rows,cols]; y may be x. */
__kernel void layernorm_forward(__global const float *x, __global const float *w,
                                __global const float *b, __global float *y, __global float *mean,
                                __global float *rstd, ulong rows, ulong cols)
{
    const ulong r = get_global_id(0);
    if (r >= rows) return;
    __global const float *xr = x + r * cols;
    __global float *yr = y + r * cols;
    float s = 0.0f;
    for (ulong c = 0; c < cols; c++) s += xr[c];
    const float mu = s / (float)cols;
    float v = 0.0f;
    for (ulong c = 0; c < cols; c++) {
        const float d = xr[c] - mu;
        v += d * d;
    }
    const float rs = 1.0f / sqrt(v / (float)cols + LN_EPS);
    for (ulong c = 0; c < cols; c++) yr[c] = (xr[c] - mu) * rs * w[c] + b[c];
    mean[r] = mu;
    rstd[r] = rs;
}

/* dweight[c] += sum_r dy * norm, dbias[c] += sum_r dy; one work-item per column, rows in order.
 * Runs before layernorm_dx, which may overwrite dy. */
__kernel void layernorm_params(__global const float *dy, __global const float *x,
                               __global const float *mean, __global const float *rstd,
                               __global float *dw, __global float *db, ulong rows, ulong cols)
{
    const ulong c = get_global_id(0);
    if (c >= cols) return;
    float sw = 0.0f, sb = 0.0f;
    for (ulong r = 0; r < rows; r++) {
        const float g = dy[r * cols + c];
        sw += g * ((x[r * cols + c] - mean[r]) * rstd[r]);
        sb += g;
    }
    dw[c] += sw;
    db[c] += sb;
}

/* dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm = w * dy; one work-item
 * per row; dx may be dy. */
__kernel void layernorm_dx(__global const float *dy, __global const float *x,
                           __global const float *mean, __global const float *rstd,
                           __global const float *w, __global float *dx, ulong rows, ulong cols)
{
    const ulong r = get_global_id(0);
    if (r >= rows) return;
    __global const float *xr = x + r * cols;
    __global const float *gr = dy + r * cols;
    const float mu = mean[r], rs = rstd[r];
    float a = 0.0f, bsum = 0.0f;
    for (ulong c = 0; c < cols; c++) {
        const float dn = w[c] * gr[c];
        a += dn;
        bsum += dn * ((xr[c] - mu) * rs);
    }
    a /= (float)cols;
    bsum /= (float)cols;
    for (ulong c = 0; c < cols; c++) {
        const float norm = (xr[c] - mu) * rs;
        dx[r * cols + c] = (w[c] * gr[c] - a - norm * bsum) * rs;
    }
}

/* out[n,c] = wte[tokens[n],c] + wpe[n % seq,c]; one work-item per element of out. A token
 * outside [0, vocab) reads as a zero row. */
__kernel void embedding_forward(__global const int *tokens, __global const float *wte,
                                __global const float *wpe, __global float *out, ulong total,
                                ulong seq, ulong cols, ulong vocab)
{
    const ulong i = get_global_id(0);
    if (i >= total) return;
    const ulong n = i / cols, c = i % cols;
    const int tok = tokens[n];
    const float te = tok >= 0 && (ulong)tok < vocab ? wte[(ulong)tok * cols + c] : 0.0f;
    out[i] = te + wpe[(n % seq) * cols + c];
}

/* dwte[tokens[n],c] += dout[n,c] for n in order; one work-item per column c, so no two work-items
 * touch the same element and the order of each sum is fixed. */
__kernel void embedding_dwte(__global const int *tokens, __global const float *dout,
                             __global float *dwte, ulong ntok, ulong cols, ulong vocab)
{
    const ulong c = get_global_id(0);
    if (c >= cols) return;
    for (ulong n = 0; n < ntok; n++) {
        const int tok = tokens[n];
        if (tok >= 0 && (ulong)tok < vocab) dwte[(ulong)tok * cols + c] += dout[n * cols + c];
    }
}

/* dwpe[t,c] += dout[b*seq + t,c] for b in order; one work-item per (t, c). */
__kernel void embedding_dwpe(__global const float *dout, __global float *dwpe, ulong batch,
                             ulong seq, ulong cols)
{
    const ulong i = get_global_id(0);
    if (i >= seq * cols) return;
    float acc = dwpe[i];
    for (ulong b = 0; b < batch; b++) acc += dout[b * seq * cols + i];
    dwpe[i] = acc;
}

/* Causal softmax over rows of length seq (row index % seq = t keeps columns 0..t); one work-item
 * per row; p may be s. */
__kernel void causal_softmax_forward(__global const float *s, __global float *p, ulong rows,
                                     ulong seq, float scale)
{
    const ulong row = get_global_id(0);
    if (row >= rows) return;
    const ulong t = row % seq;
    __global const float *sr = s + row * seq;
    __global float *pr = p + row * seq;
    float mx = scale * sr[0];
    for (ulong j = 1; j <= t; j++) mx = fmax(mx, scale * sr[j]);
    float sum = 0.0f;
    for (ulong j = 0; j <= t; j++) {
        const float e = exp(scale * sr[j] - mx);
        pr[j] = e;
        sum += e;
    }
    const float inv = 1.0f / sum;
    for (ulong j = 0; j <= t; j++) pr[j] *= inv;
    for (ulong j = t + 1; j < seq; j++) pr[j] = 0.0f;
}

/* ds = scale * p * (dp - sum_k p_k dp_k) over the causal part, 0 beyond; ds may be dp. */
__kernel void causal_softmax_backward(__global const float *p, __global const float *dp,
                                      __global float *ds, ulong rows, ulong seq, float scale)
{
    const ulong row = get_global_id(0);
    if (row >= rows) return;
    const ulong t = row % seq;
    __global const float *pr = p + row * seq;
    __global const float *gr = dp + row * seq;
    __global float *dr = ds + row * seq;
    float dot = 0.0f;
    for (ulong j = 0; j <= t; j++) dot += pr[j] * gr[j];
    for (ulong j = 0; j <= t; j++) dr[j] = scale * pr[j] * (gr[j] - dot);
    for (ulong j = t + 1; j < seq; j++) dr[j] = 0.0f;
}

/* The strided 4-D copy, one work-item per element: the flat index splits into (i0, i1, i2, i3),
 * innermost i3, and dst[dst_off + i . dst_strides] = src[src_off + i . src_strides]. */
__kernel void copy_strided(__global const float *src, __global float *dst, ulong total,
                           ulong4 shape, ulong src_off, ulong4 ss, ulong dst_off, ulong4 ds)
{
    ulong i = get_global_id(0);
    if (i >= total) return;
    const ulong i3 = i % shape.s3;
    i /= shape.s3;
    const ulong i2 = i % shape.s2;
    i /= shape.s2;
    const ulong i1 = i % shape.s1, i0 = i / shape.s1;
    dst[dst_off + i0 * ds.s0 + i1 * ds.s1 + i2 * ds.s2 + i3 * ds.s3] =
        src[src_off + i0 * ss.s0 + i1 * ss.s1 + i2 * ss.s2 + i3 * ss.s3];
}

/* One pass of the sum of squares: work-group g writes out[at + g] = the sum over its work-items of
 * (square ? x^2 : x) for the elements i = gid, gid + global size, ..., then a tree over the
 * work-group in local memory, halving the active count each step (any work-group size). The
 * shape depends only on n, the global and the work-group size, never on scheduling. */
__kernel void sum_squares(__global const float *x, __global float *out, ulong n, int square,
                          __local float *acc, ulong at)
{
    const ulong gid = get_global_id(0), stride = get_global_size(0);
    const uint lid = get_local_id(0);
    float s = 0.0f;
    for (ulong i = gid; i < n; i += stride) s += square ? x[i] * x[i] : x[i];
    acc[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint w = get_local_size(0); w > 1;) {
        const uint h = (w + 1) / 2;
        if (lid < w - h) acc[lid] += acc[lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
        w = h;
    }
    if (lid == 0) out[at + get_group_id(0)] = acc[0];
}
