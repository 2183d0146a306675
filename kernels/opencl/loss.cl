/* Row- and column-wise stage kernels of the OpenCL backend: bias add and gradient, softmax
 * cross-entropy and mean-squared error. Each sums in the same order as the C reference
 * (backends/cpu/cpu.c), one work-item per row or column, so results match it closely.
 *
 * Contraction into FMA is off so that results round like the C reference. */
#pragma OPENCL FP_CONTRACT OFF

/* y[rows,cols] += bias[cols]; global size (>= cols, rows). */
__kernel void bias_add(__global float *y, __global const float *bias, ulong rows, ulong cols)
{
    const ulong c = get_global_id(0), r = get_global_id(1);
    if (c < cols && r < rows) y[r * cols + c] += bias[c];
}

/* dbias[cols] = (beta == 0 ? 0 : dbias) + sum_r dy[r, cols]; one work-item per column, so
 * neighbouring work-items read neighbouring addresses. */
__kernel void bias_grad(__global const float *dy, __global float *dbias, ulong rows, ulong cols,
                        float beta)
{
    const ulong c = get_global_id(0);
    if (c >= cols) return;
    float s = 0.0f;
    for (ulong r = 0; r < rows; r++) s += dy[r * cols + c];
    dbias[c] = (beta == 0.0f ? 0.0f : dbias[c]) + s;
}

/* loss[r] = logsumexp(logits[r,:]) - logits[r,labels[r]];
 * dlogits[r,c] = scale * (softmax(logits[r,:])[c] - (c == labels[r])); one work-item per row. */
__kernel void softmax_xent(__global const float *logits, __global const int *labels,
                           __global float *loss, __global float *dlogits, ulong rows,
                           ulong classes, float scale)
{
    const ulong r = get_global_id(0);
    if (r >= rows) return;
    __global const float *row = logits + r * classes;
    float mx = row[0];
    for (ulong c = 1; c < classes; c++) mx = row[c] > mx ? row[c] : mx;
    float sum = 0.0f;
    for (ulong c = 0; c < classes; c++) sum += exp(row[c] - mx);
    const float lse = mx + log(sum);
    const int y = labels[r];
    loss[r] = lse - row[y];
    for (ulong c = 0; c < classes; c++)
        dlogits[r * classes + c] = scale * (exp(row[c] - lse) - ((long)c == y ? 1.0f : 0.0f));
}

/* loss[r] = sum_c (pred - target)^2 / cols;  dpred[r,c] = scale * 2 * (pred - target) / cols */
__kernel void mse(__global const float *pred, __global const float *target, __global float *loss,
                  __global float *dpred, ulong rows, ulong cols, float scale)
{
    const ulong r = get_global_id(0);
    if (r >= rows) return;
    const float inv = 1.0f / (float)cols;
    float s = 0.0f;
    for (ulong c = 0; c < cols; c++) {
        const float d = pred[r * cols + c] - target[r * cols + c];
        s += d * d;
        dpred[r * cols + c] = scale * 2.0f * d * inv;
    }
    loss[r] = s * inv;
}
