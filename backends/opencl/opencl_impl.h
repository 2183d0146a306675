/* Internals shared by the OpenCL backend's files (opencl.c: devices, buffers, kernels; tune.c:
 * CLBlast parameters). Nothing outside backends/opencl includes this. */
#ifndef SL_OPENCL_IMPL_H
#define SL_OPENCL_IMPL_H

#include <CL/cl.h>

#include "backends/backend_impl.h"
#include "backends/opencl/opencl.h"

/* The kernels built from the files in kernels/opencl at open, in this order. */
enum __sl_cl_kernel {
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

struct __sl_cl_device {
    cl_platform_id platform;
    cl_device_id device;
    cl_context ctx;
    cl_command_queue queue; /* in order, with profiling */
    cl_program program;
    cl_kernel kernels[K_COUNT];
    size_t wg;        /* the work-group size used for 1-D launches */
    cl_mem temp;      /* CLBlast's GEMM scratch, grown on demand and kept */
    size_t temp_size; /* bytes in temp */
    bool tuned;       /* our CLBlast parameters (cached or built-in) are in use */
};

#define CLDEV(dev) ((struct __sl_cl_device *)(dev)->impl)

/* Records "<what> failed: <CL_ERROR_NAME>" and returns the matching status (SL_ENOMEM for
 * allocation failures, SL_EBUILD for build failures, SL_EDEVICE otherwise). */
int __sl_cl_fail(cl_int err, const char *what);
#define CL_TRY(call, what)                                                                         \
    do {                                                                                           \
        cl_int cl_try_err_ = (call);                                                               \
        if (cl_try_err_ != CL_SUCCESS) return __sl_cl_fail(cl_try_err_, what);                     \
    } while (0)

/* Records a CLBlast failure with its status name and returns SL_EDEVICE (or SL_ENOMEM). */
int __sl_clblast_fail(int status, const char *what);

/* Applies the cached (or built-in) CLBlast parameters for this device at open. */
int __sl_cl_apply_tuning(sl_device *dev);

#endif
