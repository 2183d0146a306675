/* Internals shared by the OpenCL backend's files. Nothing outside backends/opencl includes this
 * except tests/opencl, for the accessors at the end.
 *
 *   opencl.c   errors, enumeration, programs, devices, buffers and events
 *   kernels.c  the stage kernels (GEMM through CLBlast), the FMA peak and the backend table
 *   transformer.c  layer norm, embedding, causal softmax, the strided copy, batched GEMM and the
 *                  sum of squares
 *   tune.c     CLBlast's GEMM parameters: the cache, the built-in CPU set and the search */
#ifndef SL_OPENCL_IMPL_H
#define SL_OPENCL_IMPL_H

#include <CL/cl.h>

#include "backends/backend_impl.h"
#include "backends/opencl/opencl.h"

/* The kernels built from the files in kernels/opencl at open, in this order. */
enum sl__cl_kernel {
    K_ACT_FWD_RELU,
    K_ACT_FWD_TANH,
    K_ACT_FWD_SIGMOID,
    K_ACT_FWD_GELU,
    K_ACT_FWD_GELU_TANH,
    K_ACT_BWD_RELU,
    K_ACT_BWD_TANH,
    K_ACT_BWD_SIGMOID,
    K_ACT_BWD_GELU,
    K_ACT_BWD_GELU_TANH,
    K_GELU_BWD_Y,
    K_FILL,
    K_SCALE,
    K_AXPY,
    K_SGD,
    K_SGD_MOMENTUM,
    K_ADAM,
    K_BIAS_ADD,
    K_BIAS_GRAD,
    K_SOFTMAX_XENT,
    K_MSE,
    K_LAYERNORM_FORWARD,
    K_LAYERNORM_PARAMS,
    K_LAYERNORM_DX,
    K_EMBEDDING_FORWARD,
    K_EMBEDDING_DWTE,
    K_EMBEDDING_DWPE,
    K_CAUSAL_SOFTMAX_FORWARD,
    K_CAUSAL_SOFTMAX_BACKWARD,
    K_COPY_STRIDED,
    K_SUM_SQUARES,
    K_PEAK_FMA,
    K_COUNT
};

struct sl__cl_device {
    cl_platform_id platform;
    cl_device_id device;
    cl_context ctx;
    cl_command_queue queue; /* in order, with profiling */
    cl_program program;
    cl_kernel kernels[K_COUNT];
    size_t wg;        /* the work-group size used for 1-D launches */
    cl_mem temp;      /* CLBlast's GEMM scratch, grown on demand and kept */
    size_t temp_size; /* bytes in temp */
    cl_mem partials;  /* the sum of squares' per-work-group sums, made on first use */
    cl_mem zero;      /* one float 0, which batched GEMM copies over C views (first use) */
    /* The Xgemm parameters sluice gave CLBlast for this device ("GEMMK=0 KREG=1 ...
     * XGEMM_MIN_INDIRECT_SIZE=64", from the cache, the built-in CPU set or the search), or "" while
     * CLBlast's own are in use. */
    char gemm_params[512];
};

#define CLDEV(dev) ((struct sl__cl_device *)(dev)->impl)
#define MEM(buf)   ((cl_mem)(buf)->impl)

/* The kernels' names in the OpenCL C sources, indexed by enum sl__cl_kernel (kernels.c). */
extern const char *const sl__cl_kernel_names[K_COUNT];

/* Sets argument i of kernel k (in a function with `struct sl__cl_device *d`), or returns. */
#define ARG(k, i, v) CL_TRY(clSetKernelArg(d->kernels[k], i, sizeof(v), &(v)), "clSetKernelArg " #k)

/* Runs kernel k over `items` work-items in 1-D work-groups of d->wg (kernels.c). */
int sl__cl_launch1(struct sl__cl_device *d, enum sl__cl_kernel k, size_t items);

/* Records "<what> failed: <CL_ERROR_NAME>" and returns the matching status (SL_ENOMEM for
 * allocation failures, SL_EBUILD for build failures, SL_EDEVICE otherwise). */
int sl__cl_fail(cl_int err, const char *what);
#define CL_TRY(call, what)                                                                         \
    do {                                                                                           \
        cl_int cl_try_err_ = (call);                                                               \
        if (cl_try_err_ != CL_SUCCESS) return sl__cl_fail(cl_try_err_, what);                      \
    } while (0)

/* Records a CLBlast failure with its status name and returns SL_EDEVICE (or SL_ENOMEM). */
int sl__clblast_fail(int status, const char *what);

/* Applies the cached (or built-in) CLBlast parameters for this device at open. */
int sl__cl_apply_tuning(sl_device *dev);

/* For tests/opencl, to see that a cached parameter set reached CLBlast: the parameters in use
 * on an OpenCL device (see gemm_params above; "" for another backend's device), and the scratch
 * bytes CLBlast asks for to run sl_gemm with these arguments there, which follow the parameters
 * (0 where it picks the direct kernel, else operands padded to the tile sizes). */
const char *sl__cl_gemm_params(const sl_device *dev);
int sl__cl_gemm_scratch_bytes(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n,
                              size_t k, size_t *bytes);

/* The backend operations that opencl.c implements, for the table in kernels.c. */
int sl__cl_enumerate(sl_device_info *infos, size_t cap, size_t *count);
int sl__cl_open(sl_device *dev);
void sl__cl_close(sl_device *dev);
int sl__cl_finish(sl_device *dev);
int sl__cl_buffer_alloc(sl_buffer *buf);
void sl__cl_buffer_free(sl_buffer *buf);
int sl__cl_upload(sl_buffer *dst, size_t offset, const void *src, size_t bytes);
int sl__cl_download(sl_buffer *src, size_t offset, void *dst, size_t bytes);
int sl__cl_copy(sl_buffer *dst, size_t dst_offset, sl_buffer *src, size_t src_offset, size_t bytes);
int sl__cl_map_write(sl_buffer *buf, size_t offset, size_t bytes, void **host);
int sl__cl_unmap(sl_buffer *buf, void *host);
int sl__cl_event_record(sl_device *dev, sl_event *ev);
int sl__cl_event_wait(sl_event *ev);
int sl__cl_event_elapsed_ms(sl_event *start, sl_event *end, double *ms);
void sl__cl_event_free(sl_event *ev);

/* The operations in transformer.c, for the table in kernels.c. */
int sl__cl_sum_squares(sl_device *dev, size_t n, sl_buffer *x, sl_buffer *out, size_t at);
int sl__cl_layernorm_forward(sl_device *dev, size_t rows, size_t cols, sl_buffer *x,
                             sl_buffer *weight, sl_buffer *bias, sl_buffer *y, sl_buffer *mean,
                             sl_buffer *rstd);
int sl__cl_layernorm_backward(sl_device *dev, size_t rows, size_t cols, sl_buffer *dy, sl_buffer *x,
                              sl_buffer *mean, sl_buffer *rstd, sl_buffer *weight, sl_buffer *dx,
                              sl_buffer *dweight, sl_buffer *dbias);
int sl__cl_embedding_forward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                             sl_buffer *tokens, sl_buffer *wte, sl_buffer *wpe, sl_buffer *out);
int sl__cl_embedding_backward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                              sl_buffer *tokens, sl_buffer *dout, sl_buffer *dwte, sl_buffer *dwpe);
int sl__cl_causal_softmax_forward(sl_device *dev, size_t heads, size_t seq, float scale,
                                  sl_buffer *s, sl_buffer *p);
int sl__cl_causal_softmax_backward(sl_device *dev, size_t heads, size_t seq, float scale,
                                   sl_buffer *p, sl_buffer *dp, sl_buffer *ds);
int sl__cl_copy_strided(sl_device *dev, const size_t shape[4], sl_buffer *src, size_t src_offset,
                        const size_t src_strides[4], sl_buffer *dst, size_t dst_offset,
                        const size_t dst_strides[4]);
int sl__cl_gemm_batched(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                        float alpha, const sl_gemm_view *a, const sl_gemm_view *b, float beta,
                        const sl_gemm_view *c, size_t batch);

#endif
