/* Internals shared by the OpenCL backend's files. Nothing outside backends/opencl includes this
 * except tests/opencl, for the accessors at the end.
 *
 *   opencl.c   errors, enumeration, programs, devices, buffers and events
 *   kernels.c  the stage kernels (GEMM through CLBlast), the FMA peak and the backend table
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
    K_ACT_BWD_RELU,
    K_ACT_BWD_TANH,
    K_ACT_BWD_SIGMOID,
    K_ACT_BWD_GELU,
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
    /* The Xgemm parameters sluice gave CLBlast for this device ("GEMMK=0 KREG=1 ...
     * XGEMM_MIN_INDIRECT_SIZE=64", from the cache, the built-in CPU set or the search), or "" while
     * CLBlast's own are in use. */
    char gemm_params[512];
};

#define CLDEV(dev) ((struct sl__cl_device *)(dev)->impl)
#define MEM(buf)   ((cl_mem)(buf)->impl)

/* The kernels' names in the OpenCL C sources, indexed by enum sl__cl_kernel (kernels.c). */
extern const char *const sl__cl_kernel_names[K_COUNT];

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

#endif
