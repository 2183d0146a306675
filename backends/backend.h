/* sluice device interface: devices, buffers, one in-order queue per device, events, and the stage
 * kernels that training needs. Every backend (cpu, opencl, vulkan) sits behind this one header.
 *
 * Conventions
 * - Every function that can fail returns an sl_status (core/core.h); the detailed message
 *   is in sl_last_error().
 * - Tensors are fp32, row-major, and always whole buffers: a kernel reads and writes its buffers
 *   from element 0. The wrapper checks every size against the buffer sizes and the device limits
 *   before the backend sees a call, so no backend repeats those checks.
 * - Kernels are enqueued on the device's in-order queue and may run asynchronously; uploads and
 *   downloads are ordered after everything enqueued before them and are complete when they return.
 *   sl_device_finish() waits for the queue to drain.
 * - Labels for the cross-entropy loss are int32 class ids stored in a buffer (4 bytes each).
 *
 * Environment variables the backends read, all of them (when devices are listed or opened, and
 * the cache path also when tuning saves; never per kernel call):
 * - cpu (backends/cpu/cpu.h): OPENBLAS_CORETYPE and SLUICE_OPENBLAS_FALLBACK, to tell a core
 *   the user chose from one sluice chose for the processes it starts when OpenBLAS fell back to a
 *   generic core. OpenBLAS reads its own (OPENBLAS_NUM_THREADS, OPENBLAS_CORETYPE);
 *   sl_device_options.threads > 0 overrides the thread count.
 * - opencl (backends/opencl/opencl.h):
 *   SLUICE_CLBLAST_PARAMS=default  open devices with CLBlast's own GEMM parameters instead of the
 *                                  cached or built-in ones; any other value is ignored.
 *   SLUICE_CACHE_DIR, else XDG_CACHE_HOME, else HOME (the first one set and non-empty)
 *                                  where the GEMM tuning cache lives: $SLUICE_CACHE_DIR/
 *                                  clblast.json, $XDG_CACHE_HOME/sluice/clblast.json or
 *                                  $HOME/.cache/sluice/clblast.json.
 * - vulkan (backends/vulkan/vulkan_backend.h):
 *   SLUICE_VK_LOADER=<library>     the loader to dlopen instead of libvulkan.so.1 (empty: default).
 *   SLUICE_VK_VALIDATION           set, non-empty and not "0": the Khronos validation layer and a
 *                                  messenger that logs and counts its warnings and errors.
 *   SLUICE_VK_GEMM_TILE=TMxTN4xWG  GEMM tile: rows 1..32, vec4 columns 1..8, work-group size up to
 *                                  the device's; a malformed value is logged and ignored.
 *   SLUICE_VK_GEMM_TEX=<int>       non-zero: GEMM reads A and B through texel buffers, 0: through
 *                                  storage buffers; unset: texel buffers on CPU devices only.
 *   SLUICE_VK_ELEM_TEX=<int>       the same choice for activations, axpy, scale, SGD and Adam.
 *   SLUICE_VK_MAX_GROUPS=<n>       n > 0 caps the work-groups per dispatch in x and y below the
 *                                  device's limit, so tests split launches with small buffers.
 *   The texel choices apply only where the device supports the texel formats. */
#ifndef SL_BACKEND_H
#define SL_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_device sl_device;
typedef struct sl_buffer sl_buffer;
typedef struct sl_event sl_event;

enum sl_device_kind { SL_DEVICE_CPU, SL_DEVICE_GPU, SL_DEVICE_ACCELERATOR, SL_DEVICE_OTHER };

/* What a device is and what it can do, read once when the backend enumerates it. */
typedef struct sl_device_info {
    char id[32];      /* the id configs use: "cpu", "opencl:0", "vulkan:1" */
    char backend[16]; /* "cpu", "opencl", "vulkan" */
    char name[256];   /* the device's own name */
    char vendor[128];
    char driver[128]; /* driver or platform name and version */
    enum sl_device_kind kind;
    uint64_t memory_bytes;       /* global memory */
    uint32_t compute_units;      /* cores or compute units */
    uint64_t max_alloc_bytes;    /* the largest single buffer */
    uint64_t max_buffer_range;   /* the largest range one kernel may bind (Vulkan storage range) */
    uint32_t max_workgroup_size; /* invocations per work-group */
    uint32_t max_workgroup_count[3];
    bool timestamps; /* events measure device time; otherwise host time */
} sl_device_info;

/* ------------------------------------------------------------------------------------------------
 * Devices */

/* Lists every usable device of every backend that is available on this machine. A backend whose
 * loader or driver is missing contributes no devices (sl_device_list_problems() says why). The
 * array belongs to sluice and stays valid until the process ends. */
int sl_device_list(const sl_device_info **infos, size_t *count);

/* Why backends that are built in contributed no devices, one line each, or "" (static string). */
const char *sl_device_list_problems(void);

/* How to open a device. Zero-initialise it and set what matters: every field's zero is the
 * default, and a backend ignores the fields it has no use for. */
typedef struct sl_device_options {
    int threads; /* CPU backend: OpenBLAS threads for this process, 0 = the library's default;
                    other backends ignore it */
} sl_device_options;

/* Opens a device by id ("cpu", "opencl:0", "vulkan:0"). An unknown id is SL_EINVAL with a
 * message that lists the ids that exist. Same as sl_device_open_with(id, NULL, out). */
int sl_device_open(const char *id, sl_device **out);

/* Opens a device by id with options (NULL: all defaults). A negative thread count is SL_EINVAL.
 * OpenBLAS's thread count belongs to the process, not the device: the last CPU device opened
 * with threads > 0 sets it for every CPU device of the process. */
int sl_device_open_with(const char *id, const sl_device_options *opt, sl_device **out);
void sl_device_close(sl_device *dev);
const sl_device_info *sl_device_get_info(const sl_device *dev);

/* Waits until everything enqueued on the device has finished. */
int sl_device_finish(sl_device *dev);

/* Measures the device's fp32 peak in GFLOP/s with a kernel of independent FMA chains (as clpeak
 * does), for benchmarks to report GEMM as a fraction of it. SL_EUNSUPPORTED where not built. */
int sl_device_peak_gflops(sl_device *dev, double *gflops);

/* Bytes currently and at most allocated through sl_buffer_alloc on this device. */
uint64_t sl_device_allocated(const sl_device *dev);
uint64_t sl_device_peak_allocated(const sl_device *dev);

/* ------------------------------------------------------------------------------------------------
 * Buffers (byte sizes and byte offsets) */

int sl_buffer_alloc(sl_device *dev, size_t bytes, sl_buffer **out);
void sl_buffer_free(sl_buffer *buf);
size_t sl_buffer_size(const sl_buffer *buf);
sl_device *sl_buffer_device(const sl_buffer *buf);

int sl_buffer_upload(sl_buffer *dst, size_t offset, const void *src, size_t bytes);
int sl_buffer_download(sl_buffer *src, size_t offset, void *dst, size_t bytes);
/* dst and src must be on the same device. */
int sl_buffer_copy(sl_buffer *dst, size_t dst_offset, sl_buffer *src, size_t src_offset,
                   size_t bytes);

/* Host memory to write [offset, offset + bytes) of a buffer through: fill *host, then
 * sl_buffer_unmap makes it the buffer's contents. Where the device's memory is host memory (the
 * CPU backend, PoCL) *host points into the buffer itself, so a producer that copies anyway (the
 * transport, checking a message's CRC as it copies it) writes the data once instead of into a
 * staging copy first; elsewhere it is memory the driver or a staging buffer uploads from. What
 * *host holds before it is written is undefined. One mapping per buffer at a time, and nothing
 * else may use the buffer until it is unmapped. */
int sl_buffer_map_write(sl_buffer *buf, size_t offset, size_t bytes, void **host);

/* Host memory to read [offset, offset + bytes) of a buffer from, until sl_buffer_unmap: the
 * buffer's own memory where sl_device_host_memory() says so, else a downloaded copy. The same
 * rules as sl_buffer_map_write: one mapping at a time, nothing else using the buffer meanwhile. */
int sl_buffer_map_read(sl_buffer *buf, size_t offset, size_t bytes, const void **host);
int sl_buffer_unmap(sl_buffer *buf, void *host);

/* Whether the device's buffers are host memory that sl_buffer_map_read hands out as it is (the
 * CPU backend), so that reading a buffer through a mapping copies nothing. */
bool sl_device_host_memory(const sl_device *dev);

/* ------------------------------------------------------------------------------------------------
 * Events: a point in the queue, for waiting and for timing. */

int sl_event_record(sl_device *dev, sl_event **out);
int sl_event_wait(sl_event *ev);
/* Milliseconds between two events of the same device (both are waited for). */
int sl_event_elapsed_ms(sl_event *start, sl_event *end, double *ms);
void sl_event_free(sl_event *ev);

/* ------------------------------------------------------------------------------------------------
 * Stage kernels (fp32). Shapes are in elements; the comment above each gives them. */

/* SL_ACT_GELU is PyTorch's nn.GELU(), the exact erf form 0.5 x (1 + erf(x / sqrt 2));
 * SL_ACT_GELU_TANH is nn.GELU(approximate='tanh'), GPT-2's
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Names: "relu", "tanh", "sigmoid", "gelu",
 * "gelu_tanh". */
enum sl_activation {
    SL_ACT_RELU,
    SL_ACT_TANH,
    SL_ACT_SIGMOID,
    SL_ACT_GELU,
    SL_ACT_GELU_TANH,
    SL_ACT_COUNT
};
const char *sl_activation_name(enum sl_activation act);
int sl_activation_parse(const char *name, enum sl_activation *act);

/* C[m,n] = alpha * op(A) * op(B) + beta * C, op(A) [m,k] and op(B) [k,n].
 * A is stored [m,k] (or [k,m] when trans_a), B [k,n] (or [n,k] when trans_b).
 * beta = 0 overwrites C (whatever it held, NaN included); beta = 1 accumulates. */
int sl_gemm(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
            sl_buffer *a, sl_buffer *b, float beta, sl_buffer *c);

/* y[rows,cols] += bias[cols] */
int sl_bias_add(sl_device *dev, size_t rows, size_t cols, sl_buffer *y, sl_buffer *bias);

/* dbias[cols] = beta * dbias + sum over rows of dy[rows,cols]  (beta 0 or 1) */
int sl_bias_grad(sl_device *dev, size_t rows, size_t cols, sl_buffer *dy, float beta,
                 sl_buffer *dbias);

/* y[n] = act(x[n]); y may be x. */
int sl_act_forward(sl_device *dev, enum sl_activation act, size_t n, sl_buffer *x, sl_buffer *y);

/* dx[n] = dy[n] * act'(x[n]) where x is the activation's input; dx may be dy. */
int sl_act_backward(sl_device *dev, enum sl_activation act, size_t n, sl_buffer *x, sl_buffer *dy,
                    sl_buffer *dx);

/* The exact GELU's backward given its output too: dx[n] = dy[n] * gelu'(x[n]) where y = gelu(x)
 * as sl_act_forward(SL_ACT_GELU) made it on this device. gelu'(x) = Phi(x) + x phi(x) takes Phi
 * from y / x (0.5 where |x| < 2^-60), so erf is not computed again; it agrees with
 * sl_act_backward to a few ulp of Phi. dx may be dy; y is another buffer. */
int sl_gelu_backward(sl_device *dev, size_t n, sl_buffer *x, sl_buffer *y, sl_buffer *dy,
                     sl_buffer *dx);

/* Softmax cross-entropy over logits[rows,classes] with int32 labels[rows]:
 * loss[r] = logsumexp(logits[r,:]) - logits[r,labels[r]]   (per row, not scaled)
 * dlogits[r,c] = scale * (softmax(logits[r,:])[c] - (c == labels[r]))
 * The caller passes scale = 1/batch for a loss that is the mean over the mini-batch. Labels must
 * be in [0, classes); the runtime checks them when it loads data. */
int sl_softmax_xent(sl_device *dev, size_t rows, size_t classes, sl_buffer *logits,
                    sl_buffer *labels, float scale, sl_buffer *loss, sl_buffer *dlogits);

/* Mean-squared error over pred[rows,cols] and target[rows,cols]:
 * loss[r] = sum_c (pred - target)^2 / cols
 * dpred[r,c] = scale * 2 * (pred - target) / cols
 * With scale = 1/batch the mean of loss[] over the batch equals PyTorch's MSELoss (mean). */
int sl_mse(sl_device *dev, size_t rows, size_t cols, sl_buffer *pred, sl_buffer *target,
           float scale, sl_buffer *loss, sl_buffer *dpred);

/* SGD with momentum and weight decay, PyTorch's rule with dampening 0 and no Nesterov:
 * g = grad + weight_decay * p;  buf = momentum * buf + g;  p -= lr * (momentum ? buf : g).
 * buf starts at zero, which makes the first step equal PyTorch's buf = g. momentum_buf may be
 * NULL when momentum is 0. */
int sl_sgd(sl_device *dev, size_t n, sl_buffer *param, sl_buffer *grad, sl_buffer *momentum_buf,
           float lr, float momentum, float weight_decay);

/* Adam, PyTorch's rule (weight decay added to the gradient, not AdamW), step t counted from 1:
 * g = grad + wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 * p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
int sl_adam(sl_device *dev, size_t n, sl_buffer *param, sl_buffer *grad, sl_buffer *m, sl_buffer *v,
            float lr, float beta1, float beta2, float eps, float weight_decay, int64_t t);

/* AdamW, PyTorch's torch.optim.AdamW (decoupled weight decay), step t counted from 1:
 * p *= 1 - lr wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 * p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). Arguments as sl_adam. */
int sl_adamw(sl_device *dev, size_t n, sl_buffer *param, sl_buffer *grad, sl_buffer *m,
             sl_buffer *v, float lr, float beta1, float beta2, float eps, float weight_decay,
             int64_t t);

/* out[at] = sum of x[n]^2, written (not accumulated; the rest of out untouched), for the gradient
 * norm: a stage writes each parameter's at its index and reads them all back at once. The sum is
 * deterministic: a fixed-order tree reduction whose shape depends only on n and the device, so
 * the same input gives the same bits on every run on a given device. Devices sum in fp32 and may
 * differ from the CPU's double-accumulated sum by rounding (about 1e-6 relative). n = 0 writes 0.
 */
int sl_sum_squares(sl_device *dev, size_t n, sl_buffer *x, sl_buffer *out, size_t at);

/* ------------------------------------------------------------------------------------------------
 * Transformer kernels (GPT-2 as nanoGPT and llm.c have it). */

/* Layer norm over the last dimension, PyTorch's nn.LayerNorm(cols) (eps 1e-5, biased variance):
 * x[rows,cols], weight[cols], bias[cols] -> y[rows,cols], mean[rows], rstd[rows]
 * mean[r] = sum_c x / cols;  rstd[r] = 1 / sqrt(sum_c (x - mean)^2 / cols + 1e-5);
 * y[r,c] = (x[r,c] - mean[r]) * rstd[r] * weight[c] + bias[c]. y may be x. */
int sl_layernorm_forward(sl_device *dev, size_t rows, size_t cols, sl_buffer *x, sl_buffer *weight,
                         sl_buffer *bias, sl_buffer *y, sl_buffer *mean, sl_buffer *rstd);

/* Layer norm backward from dy[rows,cols] and the forward's x, mean, rstd and weight:
 * dx[rows,cols] is written; dweight[cols] and dbias[cols] are accumulated (+=), summed over rows
 * in row order (no atomics: the same bits on every run). dx may be dy. */
int sl_layernorm_backward(sl_device *dev, size_t rows, size_t cols, sl_buffer *dy, sl_buffer *x,
                          sl_buffer *mean, sl_buffer *rstd, sl_buffer *weight, sl_buffer *dx,
                          sl_buffer *dweight, sl_buffer *dbias);

/* Token and position embedding for batch*seq tokens (int32 tokens[batch*seq], n = b*seq + t):
 * out[n,cols] = wte[tokens[n],:] + wpe[t,:], with wte [vocab,cols] and wpe [seq,cols].
 * Tokens must be in [0, vocab) (the runtime checks them when it loads data); a kernel reads an
 * out-of-range token as a zero row of wte rather than outside the buffer. */
int sl_embedding_forward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                         sl_buffer *tokens, sl_buffer *wte, sl_buffer *wpe, sl_buffer *out);

/* Embedding backward from dout[batch*seq,cols], accumulated (+=):
 * dwte[v,:] += sum of dout[n,:] over the n with tokens[n] == v, in increasing n;
 * dwpe[t,:] += sum over b of dout[b*seq + t,:], in increasing b.
 * The order of every sum is fixed (no atomics), so the bits do not depend on the device's
 * scheduling; out-of-range tokens contribute nothing. */
int sl_embedding_backward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                          sl_buffer *tokens, sl_buffer *dout, sl_buffer *dwte, sl_buffer *dwpe);

/* Causal softmax of attention scores s[heads,seq,seq] (heads = batch * attention heads; rows of
 * length seq): row t keeps columns 0..t, p[h,t,j] = softmax_j(scale * s[h,t,j]) over j <= t and
 * 0 for j > t. s[h,t,j] for j > t is not read (the GPT block leaves it uncomputed). p may be s. */
int sl_causal_softmax_forward(sl_device *dev, size_t heads, size_t seq, float scale, sl_buffer *s,
                              sl_buffer *p);

/* Its backward from p (the forward's output) and dp[heads,seq,seq]:
 * ds[h,t,j] = scale * p[h,t,j] * (dp[h,t,j] - sum_{k<=t} p[h,t,k] dp[h,t,k]) for j <= t, 0 beyond.
 * p and dp are not read beyond the diagonal (j > t). ds may be dp. */
int sl_causal_softmax_backward(sl_device *dev, size_t heads, size_t seq, float scale, sl_buffer *p,
                               sl_buffer *dp, sl_buffer *ds);

/* Causal multi-head self-attention over nanoGPT's c_attn rows: qkv is [batch, seq, 3C] with
 * C = heads * hs, q, k and v side by side in each row and head h at columns h*hs of each. Per
 * sample b and head h:
 *   att[b,h] = the causal softmax (above) of scale * q k^T   (att [batch*heads, seq, seq])
 *   y[b, :, h*hs .. h*hs + hs) = att[b,h] v                  (y [batch, seq, C])
 * The backend's fused kernel where it has one (cpu), else batched GEMMs and the softmax kernels;
 * the causal mask's zeros are not multiplied either way. */
int sl_attention_forward(sl_device *dev, size_t batch, size_t seq, size_t heads, size_t hs,
                         float scale, sl_buffer *qkv, sl_buffer *att, sl_buffer *y);

/* Its backward from dy [batch, seq, C]: dqkv [batch, seq, 3C] gets dq, dk and dv where qkv has q,
 * k and v (overwritten); work [batch*heads, seq, seq] is scratch (the gradient of the scores). */
int sl_attention_backward(sl_device *dev, size_t batch, size_t seq, size_t heads, size_t hs,
                          float scale, sl_buffer *qkv, sl_buffer *att, sl_buffer *dy,
                          sl_buffer *work, sl_buffer *dqkv);

/* Copies a 4-D strided view, for moving attention heads between [B, T, H, hs] rows and packed
 * [B, H, T, hs]: for every index (i0, i1, i2, i3) < shape,
 *   dst[dst_offset + i0*dst_strides[0] + ... + i3*dst_strides[3]] =
 *   src[src_offset + i0*src_strides[0] + ... + i3*src_strides[3]]   (elements, fp32).
 * src and dst are different buffers; the destinations must not repeat (no two indices write the
 * same element). The wrapper checks that the largest index read and written lies inside each
 * buffer. A shape with a zero dimension copies nothing. */
int sl_copy_strided(sl_device *dev, const size_t shape[4], sl_buffer *src, size_t src_offset,
                    const size_t src_strides[4], sl_buffer *dst, size_t dst_offset,
                    const size_t dst_strides[4]);

/* Batched strided GEMM: for i < batch, C_i = alpha * op(A_i) * op(B_i) + beta * C_i with the
 * shapes and transposes of sl_gemm, where A_i starts at element i * stride_a of a (B_i, C_i
 * likewise). stride_a or stride_b may be 0 (one matrix for every batch entry); the C matrices
 * must not overlap (stride_c >= m*n when batch > 1). beta = 0 overwrites each C_i. With k = 0 and
 * beta other than 1, the C matrices must be contiguous (stride_c == m*n). */
int sl_gemm_strided_batched(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n,
                            size_t k, float alpha, sl_buffer *a, size_t stride_a, sl_buffer *b,
                            size_t stride_b, float beta, sl_buffer *c, size_t stride_c,
                            size_t batch);

/* One operand of sl_gemm_batched: matrix i of the batch starts at element offset + i * stride of
 * buf, and its stored rows (row-major) lie ld elements apart; ld is at least a stored row's length
 * (A: k, or m if transposed; B: n, or k if transposed; C: n). */
typedef struct sl_gemm_view {
    sl_buffer *buf;
    size_t offset, ld, stride;
    /* Matrices in groups of `group` (0: one group of the whole batch), `group_stride` apart: the
     * heads of every sample of a [B, T, H*hs] tensor in one call (group H, stride hs, group stride
     * T*H*hs). The three views of a call group alike. */
    size_t group, group_stride;
} sl_gemm_view;

/* Where matrix z of a view's batch starts. */
static inline size_t sl_gemm_view_at(const sl_gemm_view *v, size_t z)
{
    size_t g = v->group ? v->group : (size_t)-1;
    return v->offset + (z / g) * v->group_stride + (z % g) * v->stride;
}

/* Batched GEMM over views: for i < batch, C_i = alpha * op(A_i) * op(B_i) + beta * C_i as in
 * sl_gemm_strided_batched, with matrices that may lie inside wider rows: attention heads read and
 * written in place in [T, H*hs] rows are offset h*hs, ld H*hs, stride hs, and grouped by sample
 * (group H, group stride T*H*hs), so one call covers every head of every sample. The batch is a
 * whole number of groups, a group stride is at least the group's strides ((group-1)*stride), and
 * the C matrices must not overlap: within a group one after another (c.stride >= (m-1)*c.ld + n)
 * or side by side within the rows (c.stride >= n and (group-1)*c.stride + n <= c.ld), and each
 * group after the last one's end. beta = 0 overwrites each C_i and nothing between them. k = 0 is
 * refused (SL_EUNSUPPORTED) unless beta is 1; m, n or batch 0 do nothing. */
int sl_gemm_batched(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                    float alpha, sl_gemm_view a, sl_gemm_view b, float beta, sl_gemm_view c,
                    size_t batch);

/* y[n] += alpha * x[n]  (gradient accumulation) */
int sl_axpy(sl_device *dev, size_t n, float alpha, sl_buffer *x, sl_buffer *y);

/* x[n] *= alpha */
int sl_scale(sl_device *dev, size_t n, float alpha, sl_buffer *x);

/* x[n] = value */
int sl_fill(sl_device *dev, size_t n, float value, sl_buffer *x);

#ifdef __cplusplus
}
#endif
#endif
