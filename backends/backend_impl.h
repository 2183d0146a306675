/* The backend side of backends/backend.h: what a backend implements. Users never include this.
 *
 * A backend fills one `struct sl_backend_ops` with designated initializers. The public wrapper
 * (backends/backend.c) has already checked every argument, size, device match and device limit,
 * so an operation only does the work. Operations marked optional may be NULL; the wrapper then
 * supplies the default named in the comment. */
#ifndef SL_BACKEND_IMPL_H
#define SL_BACKEND_IMPL_H

#include "backends/backend.h"

struct sl_device {
    const struct sl_backend_ops *ops;
    sl_device_info info;
    size_t index;       /* the device's index within its backend */
    uint64_t allocated; /* bytes in live buffers */
    uint64_t peak;      /* the most `allocated` has been */
    void *impl;         /* the backend's state */
};

struct sl_buffer {
    sl_device *dev;
    size_t size; /* bytes */
    void *impl;  /* the backend's handle (host pointer, cl_mem, ...) */
    /* The mapping sl_buffer_map_write made, if any (the wrapper's bookkeeping). */
    void *mapped;
    size_t map_offset, map_bytes;
    bool map_staged; /* host staging memory of the wrapper's, uploaded at unmap */
    bool map_read;   /* a mapping to read (sl_buffer_map_read): nothing to upload */
};

struct sl_event {
    sl_device *dev;
    double host_time; /* sl_now() when recorded, for backends without device timestamps */
    void *impl;
};

struct sl_backend_ops {
    const char *name; /* "cpu", "opencl", "vulkan": the prefix of device ids */

    /* Fills at most `cap` infos (id, name, limits, ...) and sets *count to the number of devices.
     * Called once; a backend that is unavailable returns SL_EUNAVAILABLE with a message. */
    int (*enumerate)(sl_device_info *infos, size_t cap, size_t *count);

    /* Opens device dev->index (dev->info is already filled); sets dev->impl. */
    int (*open)(sl_device *dev);
    /* Optional: applies the options of sl_device_open_with to a device just opened (the wrapper
     * has checked them, and closes the device when this fails). NULL where the backend uses
     * none of them. */
    int (*apply_options)(sl_device *dev, const sl_device_options *opt);
    void (*close)(sl_device *dev);
    int (*finish)(sl_device *dev);

    /* buf->dev and buf->size are set; sets buf->impl. */
    int (*buffer_alloc)(sl_buffer *buf);
    void (*buffer_free)(sl_buffer *buf);
    int (*upload)(sl_buffer *dst, size_t offset, const void *src, size_t bytes);
    int (*download)(sl_buffer *src, size_t offset, void *dst, size_t bytes);
    int (*copy)(sl_buffer *dst, size_t dst_offset, sl_buffer *src, size_t src_offset, size_t bytes);
    /* Optional, both or neither: host memory to write a range through (see
     * sl_buffer_map_write). Default: host staging memory, uploaded at unmap. */
    int (*map_write)(sl_buffer *buf, size_t offset, size_t bytes, void **host);
    int (*unmap)(sl_buffer *buf, void *host);
    /* Optional, with the two above, where the device's memory is host memory: the buffer's own
     * memory to read a range from (see sl_buffer_map_read). Default: a staged download. */
    int (*map_read)(sl_buffer *buf, size_t offset, size_t bytes, const void **host);

    /* Optional, all four or none: device-timed events. Default: finish() then host time. */
    int (*event_record)(sl_device *dev, sl_event *ev);
    int (*event_wait)(sl_event *ev);
    int (*event_elapsed_ms)(sl_event *start, sl_event *end, double *ms);
    void (*event_free)(sl_event *ev);

    /* Optional: the fp32 FMA peak in GFLOP/s (see sl_device_peak_gflops). */
    int (*peak_gflops)(sl_device *dev, double *gflops);

    /* The stage kernels, with the meaning given in backends/backend.h. */
    int (*gemm)(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                float alpha, sl_buffer *a, sl_buffer *b, float beta, sl_buffer *c);
    int (*bias_add)(sl_device *dev, size_t rows, size_t cols, sl_buffer *y, sl_buffer *bias);
    int (*bias_grad)(sl_device *dev, size_t rows, size_t cols, sl_buffer *dy, float beta,
                     sl_buffer *dbias);
    int (*act_forward)(sl_device *dev, enum sl_activation act, size_t n, sl_buffer *x,
                       sl_buffer *y);
    int (*act_backward)(sl_device *dev, enum sl_activation act, size_t n, sl_buffer *x,
                        sl_buffer *dy, sl_buffer *dx);
    /* Optional: the exact GELU's backward from its output as well (n > 0). Default: act_backward
     * with SL_ACT_GELU, which recomputes Phi from x. */
    int (*gelu_backward)(sl_device *dev, size_t n, sl_buffer *x, sl_buffer *y, sl_buffer *dy,
                         sl_buffer *dx);
    int (*softmax_xent)(sl_device *dev, size_t rows, size_t classes, sl_buffer *logits,
                        sl_buffer *labels, float scale, sl_buffer *loss, sl_buffer *dlogits);
    int (*mse)(sl_device *dev, size_t rows, size_t cols, sl_buffer *pred, sl_buffer *target,
               float scale, sl_buffer *loss, sl_buffer *dpred);
    /* momentum_buf is NULL when momentum is 0. */
    int (*sgd)(sl_device *dev, size_t n, sl_buffer *param, sl_buffer *grad, sl_buffer *momentum_buf,
               float lr, float momentum, float weight_decay);
    /* bc1 = 1 - beta1^t and bc2 = 1 - beta2^t, computed by the wrapper in double. */
    int (*adam)(sl_device *dev, size_t n, sl_buffer *param, sl_buffer *grad, sl_buffer *m,
                sl_buffer *v, float lr, float beta1, float beta2, float eps, float weight_decay,
                float bc1, float bc2);
    /* AdamW: as adam, with the decoupled weight decay of sl_adamw. */
    int (*adamw)(sl_device *dev, size_t n, sl_buffer *param, sl_buffer *grad, sl_buffer *m,
                 sl_buffer *v, float lr, float beta1, float beta2, float eps, float weight_decay,
                 float bc1, float bc2);
    /* n > 0. */
    int (*sum_squares)(sl_device *dev, size_t n, sl_buffer *x, sl_buffer *out, size_t at);
    /* rows, cols > 0. */
    int (*layernorm_forward)(sl_device *dev, size_t rows, size_t cols, sl_buffer *x,
                             sl_buffer *weight, sl_buffer *bias, sl_buffer *y, sl_buffer *mean,
                             sl_buffer *rstd);
    int (*layernorm_backward)(sl_device *dev, size_t rows, size_t cols, sl_buffer *dy, sl_buffer *x,
                              sl_buffer *mean, sl_buffer *rstd, sl_buffer *weight, sl_buffer *dx,
                              sl_buffer *dweight, sl_buffer *dbias);
    /* batch, seq, cols, vocab > 0. */
    int (*embedding_forward)(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                             sl_buffer *tokens, sl_buffer *wte, sl_buffer *wpe, sl_buffer *out);
    int (*embedding_backward)(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                              sl_buffer *tokens, sl_buffer *dout, sl_buffer *dwte, sl_buffer *dwpe);
    /* heads, seq > 0. */
    int (*causal_softmax_forward)(sl_device *dev, size_t heads, size_t seq, float scale,
                                  sl_buffer *s, sl_buffer *p);
    int (*causal_softmax_backward)(sl_device *dev, size_t heads, size_t seq, float scale,
                                   sl_buffer *p, sl_buffer *dp, sl_buffer *ds);
    /* Optional (NULL: the wrapper composes gemm_batched and the causal softmax): a fused causal
     * self-attention. batch, seq, heads, hs > 0. */
    int (*attention_forward)(sl_device *dev, size_t batch, size_t seq, size_t heads, size_t hs,
                             float scale, sl_buffer *qkv, sl_buffer *att, sl_buffer *y);
    int (*attention_backward)(sl_device *dev, size_t batch, size_t seq, size_t heads, size_t hs,
                              float scale, sl_buffer *qkv, sl_buffer *att, sl_buffer *dy,
                              sl_buffer *work, sl_buffer *dqkv);
    /* Every shape[d] > 0, src != dst, both views within their buffers, and
     * shape[0]*...*shape[3] no more than the elements dst's view spans (so it fits wherever the
     * buffer's range does); strides of dimensions of size 1 are 0. */
    int (*copy_strided)(sl_device *dev, const size_t shape[4], sl_buffer *src, size_t src_offset,
                        const size_t src_strides[4], sl_buffer *dst, size_t dst_offset,
                        const size_t dst_strides[4]);
    /* sl_gemm_batched and sl_gemm_strided_batched (packed views): m, n, k, batch > 0; every
     * view within its buffer, each ld at least its stored row's length; the C matrices do not
     * overlap. */
    int (*gemm_batched)(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                        float alpha, const sl_gemm_view *a, const sl_gemm_view *b, float beta,
                        const sl_gemm_view *c, size_t batch);
    int (*axpy)(sl_device *dev, size_t n, float alpha, sl_buffer *x, sl_buffer *y);
    int (*scale)(sl_device *dev, size_t n, float alpha, sl_buffer *x);
    int (*fill)(sl_device *dev, size_t n, float value, sl_buffer *x);
};

/* Argument checks shared by the wrapper's files (backend.c, transformer.c); each records a
 * message naming `kernel` and returns a status. */
/* `buf` is on `dev` and holds at least `elems` 4-byte elements within the device's range. */
int sl__check_arg(const char *kernel, const char *name, sl_device *dev, const sl_buffer *buf,
                  size_t elems);
int sl__check_dev(const char *kernel, sl_device *dev);
/* *elems = rows * cols, refusing overflow. */
int sl__check_shape(const char *kernel, size_t rows, size_t cols, size_t *elems);

/* The attention composed of sl_gemm_batched and the causal softmax, as the wrappers run it on a
 * backend without a fused kernel (checked arguments); tests run it on any backend. */
int sl__attention_forward_composed(sl_device *dev, size_t batch, size_t seq, size_t heads,
                                   size_t hs, float scale, sl_buffer *qkv, sl_buffer *att,
                                   sl_buffer *y);
int sl__attention_backward_composed(sl_device *dev, size_t batch, size_t seq, size_t heads,
                                    size_t hs, float scale, sl_buffer *qkv, sl_buffer *att,
                                    sl_buffer *dy, sl_buffer *work, sl_buffer *dqkv);

extern const struct sl_backend_ops sl__cpu_backend;
#ifdef SL_HAVE_OPENCL
extern const struct sl_backend_ops sl__opencl_backend;
#endif
#ifdef SL_HAVE_VULKAN
extern const struct sl_backend_ops sl__vulkan_backend;
#endif

#endif
