/* The OpenCL backend: every device of every platform the ICD loader finds (GPUs, and CPUs through
 * PoCL), one in-order profiling queue per device, buffers as cl_mem, GEMM through CLBlast and the
 * other stage kernels as OpenCL C from kernels/opencl/, embedded at build time and compiled once
 * per device at open with no fast-math options. */
#include "backends/opencl/opencl_impl.h"

#include <clblast_c.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kernel sources, embedded by backends/opencl/CMakeLists.txt. */
extern const unsigned char sl_cl_elementwise[], sl_cl_loss[], sl_cl_peak[];
extern const size_t sl_cl_elementwise_size, sl_cl_loss_size, sl_cl_peak_size;

/* Only -cl-std: fast-math options (-cl-fast-relaxed-math, -cl-mad-enable, ...) would make results
 * differ from the reference by more than rounding, and -cl-denorms-are-zero would flush small
 * gradients. */
static const char BUILD_OPTIONS[] = "-cl-std=CL1.2";

static const char *const KERNEL_NAMES[K_COUNT] = {
    [K_ACT_FWD_RELU] = "act_fwd_relu",
    [K_ACT_FWD_TANH] = "act_fwd_tanh",
    [K_ACT_FWD_SIGMOID] = "act_fwd_sigmoid",
    [K_ACT_FWD_GELU] = "act_fwd_gelu",
    [K_ACT_BWD_RELU] = "act_bwd_relu",
    [K_ACT_BWD_TANH] = "act_bwd_tanh",
    [K_ACT_BWD_SIGMOID] = "act_bwd_sigmoid",
    [K_ACT_BWD_GELU] = "act_bwd_gelu",
    [K_FILL] = "fill",
    [K_SCALE] = "scale",
    [K_AXPY] = "axpy",
    [K_SGD] = "sgd",
    [K_SGD_MOMENTUM] = "sgd_momentum",
    [K_ADAM] = "adam",
    [K_BIAS_ADD] = "bias_add",
    [K_BIAS_GRAD] = "bias_grad",
    [K_SOFTMAX_XENT] = "softmax_xent",
    [K_MSE] = "mse",
    [K_PEAK_FMA] = "peak_fma",
};

/* ------------------------------------------------------------------------------------------------
 * Errors */

#define E(x)                                                                                       \
    {                                                                                              \
        x, #x                                                                                      \
    }
static const struct {
    cl_int code;
    const char *name;
} CL_ERRORS[] = {
    E(CL_SUCCESS),
    E(CL_DEVICE_NOT_FOUND),
    E(CL_DEVICE_NOT_AVAILABLE),
    E(CL_COMPILER_NOT_AVAILABLE),
    E(CL_MEM_OBJECT_ALLOCATION_FAILURE),
    E(CL_OUT_OF_RESOURCES),
    E(CL_OUT_OF_HOST_MEMORY),
    E(CL_PROFILING_INFO_NOT_AVAILABLE),
    E(CL_MEM_COPY_OVERLAP),
    E(CL_IMAGE_FORMAT_MISMATCH),
    E(CL_IMAGE_FORMAT_NOT_SUPPORTED),
    E(CL_BUILD_PROGRAM_FAILURE),
    E(CL_MAP_FAILURE),
    E(CL_MISALIGNED_SUB_BUFFER_OFFSET),
    E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST),
    E(CL_COMPILE_PROGRAM_FAILURE),
    E(CL_LINKER_NOT_AVAILABLE),
    E(CL_LINK_PROGRAM_FAILURE),
    E(CL_DEVICE_PARTITION_FAILED),
    E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE),
    E(CL_INVALID_VALUE),
    E(CL_INVALID_DEVICE_TYPE),
    E(CL_INVALID_PLATFORM),
    E(CL_INVALID_DEVICE),
    E(CL_INVALID_CONTEXT),
    E(CL_INVALID_QUEUE_PROPERTIES),
    E(CL_INVALID_COMMAND_QUEUE),
    E(CL_INVALID_HOST_PTR),
    E(CL_INVALID_MEM_OBJECT),
    E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR),
    E(CL_INVALID_IMAGE_SIZE),
    E(CL_INVALID_SAMPLER),
    E(CL_INVALID_BINARY),
    E(CL_INVALID_BUILD_OPTIONS),
    E(CL_INVALID_PROGRAM),
    E(CL_INVALID_PROGRAM_EXECUTABLE),
    E(CL_INVALID_KERNEL_NAME),
    E(CL_INVALID_KERNEL_DEFINITION),
    E(CL_INVALID_KERNEL),
    E(CL_INVALID_ARG_INDEX),
    E(CL_INVALID_ARG_VALUE),
    E(CL_INVALID_ARG_SIZE),
    E(CL_INVALID_KERNEL_ARGS),
    E(CL_INVALID_WORK_DIMENSION),
    E(CL_INVALID_WORK_GROUP_SIZE),
    E(CL_INVALID_WORK_ITEM_SIZE),
    E(CL_INVALID_GLOBAL_OFFSET),
    E(CL_INVALID_EVENT_WAIT_LIST),
    E(CL_INVALID_EVENT),
    E(CL_INVALID_OPERATION),
    E(CL_INVALID_GL_OBJECT),
    E(CL_INVALID_BUFFER_SIZE),
    E(CL_INVALID_MIP_LEVEL),
    E(CL_INVALID_GLOBAL_WORK_SIZE),
    E(CL_INVALID_PROPERTY),
    E(CL_INVALID_IMAGE_DESCRIPTOR),
    E(CL_INVALID_COMPILER_OPTIONS),
    E(CL_INVALID_LINKER_OPTIONS),
    E(CL_INVALID_DEVICE_PARTITION_COUNT),
    {-1001, "CL_PLATFORM_NOT_FOUND_KHR"},
};
#undef E

const char *sl_opencl_error_name(int err)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(CL_ERRORS); i++)
        if (CL_ERRORS[i].code == err) return CL_ERRORS[i].name;
    static _Thread_local char buf[32];
    snprintf(buf, sizeof buf, "CL error %d", err);
    return buf;
}

int __sl_cl_fail(cl_int err, const char *what)
{
    int st = SL_EDEVICE;
    const char *hint = "";
    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY) {
        st = SL_ENOMEM;
        hint = " (the device is out of memory: use smaller batches or more stages)";
    } else if (err == CL_OUT_OF_RESOURCES) {
        hint = " (the device ran out of resources or a kernel faulted)";
    } else if (err == CL_BUILD_PROGRAM_FAILURE) {
        st = SL_EBUILD;
    }
    return sl_fail(st, "%s failed: %s%s", what, sl_opencl_error_name(err), hint);
}

static const char *clblast_status_name(int s)
{
    switch (s) {
    case CLBlastNotImplemented:
        return "CLBlastNotImplemented";
    case CLBlastInvalidMatrixA:
        return "CLBlastInvalidMatrixA";
    case CLBlastInvalidMatrixB:
        return "CLBlastInvalidMatrixB";
    case CLBlastInvalidMatrixC:
        return "CLBlastInvalidMatrixC";
    case CLBlastInvalidDimension:
        return "CLBlastInvalidDimension";
    case CLBlastInvalidLeadDimA:
        return "CLBlastInvalidLeadDimA";
    case CLBlastInvalidLeadDimB:
        return "CLBlastInvalidLeadDimB";
    case CLBlastInvalidLeadDimC:
        return "CLBlastInvalidLeadDimC";
    case CLBlastInsufficientMemoryA:
        return "CLBlastInsufficientMemoryA";
    case CLBlastInsufficientMemoryB:
        return "CLBlastInsufficientMemoryB";
    case CLBlastInsufficientMemoryC:
        return "CLBlastInsufficientMemoryC";
    case CLBlastInsufficientMemoryTemp:
        return "CLBlastInsufficientMemoryTemp";
    case CLBlastInvalidOverrideKernel:
        return "CLBlastInvalidOverrideKernel";
    case CLBlastMissingOverrideParameter:
        return "CLBlastMissingOverrideParameter";
    case CLBlastInvalidLocalMemUsage:
        return "CLBlastInvalidLocalMemUsage";
    case CLBlastDatabaseError:
        return "CLBlastDatabaseError";
    case CLBlastUnknownError:
        return "CLBlastUnknownError";
    case CLBlastUnexpectedError:
        return "CLBlastUnexpectedError";
    default:
        return s > -1024 ? sl_opencl_error_name(s) : "unknown CLBlast status";
    }
}

int __sl_clblast_fail(int status, const char *what)
{
    int st = status == CLBlastTempBufferAllocFailure || status == CLBlastOpenCLOutOfHostMemory
                 ? SL_ENOMEM
                 : SL_EDEVICE;
    return sl_fail(st, "%s failed: CLBlast status %d (%s)", what, status,
                   clblast_status_name(status));
}

/* ------------------------------------------------------------------------------------------------
 * Enumeration: every device of every platform, numbered across platforms. The ids are kept for
 * open(); enumerate runs once per process. */

#define MAX_CL_DEVICES 64

static struct {
    cl_platform_id platform[MAX_CL_DEVICES];
    cl_device_id device[MAX_CL_DEVICES];
    size_t count;
} found;

static void info_string(cl_device_id d, cl_device_info what, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (clGetDeviceInfo(d, what, cap, buf, NULL) != CL_SUCCESS) buf[0] = '\0';
    buf[cap - 1] = '\0';
}

static int cl_enumerate(sl_device_info *infos, size_t cap, size_t *count)
{
    *count = 0;
    cl_uint nplat = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &nplat);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && nplat == 0))
        return sl_fail(SL_EUNAVAILABLE, "no OpenCL platform found (install an ICD such as "
                                        "pocl-opencl-icd for CPUs, or your GPU vendor's driver)");
    if (err != CL_SUCCESS) return __sl_cl_fail(err, "listing OpenCL platforms (clGetPlatformIDs)");
    cl_platform_id plats[16];
    nplat = SL_MIN(nplat, 16u);
    CL_TRY(clGetPlatformIDs(nplat, plats, NULL), "clGetPlatformIDs");

    found.count = 0;
    for (cl_uint p = 0; p < nplat; p++) {
        cl_device_id devs[MAX_CL_DEVICES];
        cl_uint ndev = 0;
        /* A platform with no devices answers CL_DEVICE_NOT_FOUND; skip it. */
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAX_CL_DEVICES, devs, &ndev) != CL_SUCCESS)
            continue;
        ndev = SL_MIN(ndev, (cl_uint)MAX_CL_DEVICES); /* ndev counts all, even beyond the array */
        char pname[128] = "";
        clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
        pname[sizeof pname - 1] = '\0';
        for (cl_uint i = 0; i < ndev && found.count < SL_MIN(cap, (size_t)MAX_CL_DEVICES); i++) {
            cl_device_id d = devs[i];
            sl_device_info *inf = &infos[found.count];
            memset(inf, 0, sizeof *inf);
            snprintf(inf->id, sizeof inf->id, "opencl:%zu", found.count);
            info_string(d, CL_DEVICE_NAME, inf->name, sizeof inf->name);
            info_string(d, CL_DEVICE_VENDOR, inf->vendor, sizeof inf->vendor);
            char dver[64];
            info_string(d, CL_DRIVER_VERSION, dver, sizeof dver);
            snprintf(inf->driver, sizeof inf->driver, "%.58s, driver %.58s", pname, dver);
            cl_device_type type = 0;
            cl_ulong mem = 0, max_alloc = 0;
            cl_uint cus = 0;
            size_t max_wg = 1;
            clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, NULL);
            clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
            clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL);
            clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cus, &cus, NULL);
            clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_wg, &max_wg, NULL);
            inf->kind = (type & CL_DEVICE_TYPE_GPU)           ? SL_DEVICE_GPU
                        : (type & CL_DEVICE_TYPE_CPU)         ? SL_DEVICE_CPU
                        : (type & CL_DEVICE_TYPE_ACCELERATOR) ? SL_DEVICE_ACCELERATOR
                                                              : SL_DEVICE_OTHER;
            inf->memory_bytes = mem;
            inf->compute_units = cus;
            inf->max_alloc_bytes = max_alloc;
            inf->max_buffer_range = 0; /* a kernel may use a whole buffer */
            inf->max_workgroup_size = (uint32_t)SL_MIN(max_wg, (size_t)UINT32_MAX);
            /* OpenCL launches by global size; work-group counts have no limit of their own. */
            inf->max_workgroup_count[0] = inf->max_workgroup_count[1] =
                inf->max_workgroup_count[2] = UINT32_MAX;
            inf->timestamps = true;
            found.platform[found.count] = plats[p];
            found.device[found.count] = d;
            found.count++;
        }
    }
    if (found.count == 0)
        return sl_fail(SL_EUNAVAILABLE,
                       "%u OpenCL platform(s) found but no devices on them; check "
                       "the driver installation (clinfo -l)",
                       nplat);
    *count = found.count;
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Programs */

/* Builds `source` for the device; on failure the message holds the compiler's log. */
static int build_program(struct __sl_cl_device *d, const char *source, cl_program *out)
{
    cl_int err;
    size_t len = strlen(source);
    cl_program prog = clCreateProgramWithSource(d->ctx, 1, &source, &len, &err);
    if (err != CL_SUCCESS) return __sl_cl_fail(err, "clCreateProgramWithSource");
    err = clBuildProgram(prog, 1, &d->device, BUILD_OPTIONS, NULL, NULL);
    if (err != CL_SUCCESS) {
        size_t log_size = 0;
        clGetProgramBuildInfo(prog, d->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_size);
        char *log = malloc(log_size + 1);
        if (log) {
            log[0] = '\0';
            clGetProgramBuildInfo(prog, d->device, CL_PROGRAM_BUILD_LOG, log_size, log, NULL);
            log[log_size] = '\0';
        }
        int st = sl_fail(err == CL_BUILD_PROGRAM_FAILURE ? SL_EBUILD : SL_EDEVICE,
                         "building OpenCL kernels (options \"%s\") failed: %s; build log:\n%s",
                         BUILD_OPTIONS, sl_opencl_error_name(err), log ? log : "(no memory)");
        free(log);
        clReleaseProgram(prog);
        return st;
    }
    *out = prog;
    return SL_OK;
}

int sl_opencl_build_source(sl_device *dev, const char *source)
{
    if (!dev || !source) return sl_fail(SL_EINVAL, "sl_opencl_build_source: null argument");
    if (dev->ops != &sl_opencl_backend)
        return sl_fail(SL_EINVAL, "%s is not an OpenCL device", dev->info.id);
    cl_program prog;
    SL_TRY(build_program(CLDEV(dev), source, &prog));
    clReleaseProgram(prog);
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Device */

static void cl_close(sl_device *dev)
{
    struct __sl_cl_device *d = CLDEV(dev);
    if (!d) return;
    if (d->queue) clFinish(d->queue);
    for (int k = 0; k < K_COUNT; k++)
        if (d->kernels[k]) clReleaseKernel(d->kernels[k]);
    if (d->program) clReleaseProgram(d->program);
    if (d->temp) clReleaseMemObject(d->temp);
    if (d->queue) clReleaseCommandQueue(d->queue);
    if (d->ctx) clReleaseContext(d->ctx);
    free(d);
    dev->impl = NULL;
}

static int open_device(sl_device *dev, struct __sl_cl_device *d)
{
    cl_int err;
    d->platform = found.platform[dev->index];
    d->device = found.device[dev->index];
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)d->platform, 0};
    d->ctx = clCreateContext(props, 1, &d->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) return __sl_cl_fail(err, "clCreateContext");
    d->queue = clCreateCommandQueue(d->ctx, d->device, CL_QUEUE_PROFILING_ENABLE, &err);
    if (err != CL_SUCCESS) return __sl_cl_fail(err, "clCreateCommandQueue");

    /* One program from all kernel files, built once per device. */
    size_t total = sl_cl_elementwise_size + sl_cl_loss_size + sl_cl_peak_size + 4;
    char *src = malloc(total);
    if (!src) return sl_fail(SL_ENOMEM, "no memory for kernel sources");
    snprintf(src, total, "%s\n%s\n%s\n", (const char *)sl_cl_elementwise, (const char *)sl_cl_loss,
             (const char *)sl_cl_peak);
    int st = build_program(d, src, &d->program);
    free(src);
    SL_TRY(st);

    size_t wg = 256;
    for (int k = 0; k < K_COUNT; k++) {
        d->kernels[k] = clCreateKernel(d->program, KERNEL_NAMES[k], &err);
        if (err != CL_SUCCESS) return __sl_cl_fail(err, KERNEL_NAMES[k]);
        size_t kwg = 0;
        if (clGetKernelWorkGroupInfo(d->kernels[k], d->device, CL_KERNEL_WORK_GROUP_SIZE,
                                     sizeof kwg, &kwg, NULL) == CL_SUCCESS &&
            kwg > 0)
            wg = SL_MIN(wg, kwg);
    }
    wg = SL_MIN(wg, (size_t)dev->info.max_workgroup_size);
    /* A power of two, so that 2-D launches can split it. */
    size_t p2 = 1;
    while (p2 * 2 <= wg) p2 *= 2;
    d->wg = p2;
    return __sl_cl_apply_tuning(dev);
}

static int cl_open(sl_device *dev)
{
    struct __sl_cl_device *d = sl_alloc(sizeof *d);
    if (!d) return SL_ENOMEM;
    dev->impl = d;
    int st = open_device(dev, d);
    if (st != SL_OK) cl_close(dev);
    return st;
}

static int cl_finish(sl_device *dev)
{
    CL_TRY(clFinish(CLDEV(dev)->queue), "clFinish");
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Buffers */

#define MEM(buf) ((cl_mem)(buf)->impl)

static int cl_buffer_alloc(sl_buffer *buf)
{
    cl_int err;
    cl_mem m = clCreateBuffer(CLDEV(buf->dev)->ctx, CL_MEM_READ_WRITE, buf->size, NULL, &err);
    if (err != CL_SUCCESS) return __sl_cl_fail(err, "clCreateBuffer");
    buf->impl = m;
    /* Zero it, as the CPU backend does, so that no kernel ever reads uninitialised memory. */
    const cl_uchar zero = 0;
    err = clEnqueueFillBuffer(CLDEV(buf->dev)->queue, m, &zero, 1, 0, buf->size, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        clReleaseMemObject(m);
        buf->impl = NULL;
        return __sl_cl_fail(err, "clEnqueueFillBuffer (zeroing a new buffer)");
    }
    return SL_OK;
}

static void cl_buffer_free(sl_buffer *buf)
{
    /* OpenCL keeps a buffer alive until the commands using it have finished. */
    if (buf->impl) clReleaseMemObject(MEM(buf));
}

static int cl_upload(sl_buffer *dst, size_t offset, const void *src, size_t bytes)
{
    CL_TRY(clEnqueueWriteBuffer(CLDEV(dst->dev)->queue, MEM(dst), CL_TRUE, offset, bytes, src, 0,
                                NULL, NULL),
           "clEnqueueWriteBuffer (upload)");
    return SL_OK;
}

static int cl_download(sl_buffer *src, size_t offset, void *dst, size_t bytes)
{
    CL_TRY(clEnqueueReadBuffer(CLDEV(src->dev)->queue, MEM(src), CL_TRUE, offset, bytes, dst, 0,
                               NULL, NULL),
           "clEnqueueReadBuffer (download)");
    return SL_OK;
}

/* CL_MAP_WRITE_INVALIDATE_REGION: the old contents need not be read back. On CPU drivers (PoCL)
 * the mapping is the buffer's own memory; on GPUs it is pinned memory the driver uploads from at
 * unmap, faster than clEnqueueWriteBuffer from pageable memory. The unmap is queued: the
 * in-order queue puts it before any later use of the buffer. */
static int cl_map_write(sl_buffer *buf, size_t offset, size_t bytes, void **host)
{
    cl_int err;
    *host = clEnqueueMapBuffer(CLDEV(buf->dev)->queue, MEM(buf), CL_TRUE,
                               CL_MAP_WRITE_INVALIDATE_REGION, offset, bytes, 0, NULL, NULL, &err);
    CL_TRY(err, "clEnqueueMapBuffer (write)");
    return SL_OK;
}

static int cl_unmap(sl_buffer *buf, void *host)
{
    CL_TRY(clEnqueueUnmapMemObject(CLDEV(buf->dev)->queue, MEM(buf), host, 0, NULL, NULL),
           "clEnqueueUnmapMemObject");
    return SL_OK;
}

static int cl_copy(sl_buffer *dst, size_t dst_offset, sl_buffer *src, size_t src_offset,
                   size_t bytes)
{
    /* OpenCL rejects overlapping copies within one buffer (CL_MEM_COPY_OVERLAP); memmove's
     * meaning is kept by going through a scratch buffer. */
    cl_command_queue q = CLDEV(dst->dev)->queue;
    if (dst == src && dst_offset < src_offset + bytes && src_offset < dst_offset + bytes) {
        if (dst_offset == src_offset) return SL_OK;
        cl_int err;
        cl_mem tmp = clCreateBuffer(CLDEV(dst->dev)->ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (err != CL_SUCCESS) return __sl_cl_fail(err, "clCreateBuffer (copy scratch)");
        err = clEnqueueCopyBuffer(q, MEM(src), tmp, src_offset, 0, bytes, 0, NULL, NULL);
        if (err == CL_SUCCESS)
            err = clEnqueueCopyBuffer(q, tmp, MEM(dst), 0, dst_offset, bytes, 0, NULL, NULL);
        clReleaseMemObject(tmp);
        CL_TRY(err, "clEnqueueCopyBuffer");
        return SL_OK;
    }
    CL_TRY(clEnqueueCopyBuffer(q, MEM(src), MEM(dst), src_offset, dst_offset, bytes, 0, NULL, NULL),
           "clEnqueueCopyBuffer");
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Events: a marker in the queue. A marker's profiling times are when the queue reached it (every
 * command before it had finished), so the time between two markers is END(end) - END(start). */

static int cl_event_record(sl_device *dev, sl_event *ev)
{
    cl_event e;
    CL_TRY(clEnqueueMarkerWithWaitList(CLDEV(dev)->queue, 0, NULL, &e),
           "clEnqueueMarkerWithWaitList (event record)");
    /* Markers are only guaranteed to progress once the queue is flushed. */
    clFlush(CLDEV(dev)->queue);
    ev->impl = e;
    return SL_OK;
}

static int cl_event_wait(sl_event *ev)
{
    cl_event e = ev->impl;
    CL_TRY(clWaitForEvents(1, &e), "clWaitForEvents");
    return SL_OK;
}

static int cl_event_elapsed_ms(sl_event *start, sl_event *end, double *ms)
{
    SL_TRY(cl_event_wait(start));
    SL_TRY(cl_event_wait(end));
    cl_ulong t0 = 0, t1 = 0;
    CL_TRY(clGetEventProfilingInfo(start->impl, CL_PROFILING_COMMAND_END, sizeof t0, &t0, NULL),
           "clGetEventProfilingInfo (start event)");
    CL_TRY(clGetEventProfilingInfo(end->impl, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL),
           "clGetEventProfilingInfo (end event)");
    *ms = ((double)t1 - (double)t0) * 1e-6;
    return SL_OK;
}

static void cl_event_free(sl_event *ev)
{
    if (ev->impl) clReleaseEvent(ev->impl);
}

/* ------------------------------------------------------------------------------------------------
 * Launch helpers */

#define ARG(k, i, v) CL_TRY(clSetKernelArg(d->kernels[k], i, sizeof(v), &(v)), "clSetKernelArg " #k)

static size_t round_up(size_t n, size_t m)
{
    return (n + m - 1) / m * m;
}

/* Runs kernel k over `items` work-items in 1-D work-groups of d->wg. */
static int launch1(struct __sl_cl_device *d, enum __sl_cl_kernel k, size_t items)
{
    size_t local = d->wg, global = round_up(items ? items : 1, local);
    cl_int err =
        clEnqueueNDRangeKernel(d->queue, d->kernels[k], 1, NULL, &global, &local, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "clEnqueueNDRangeKernel (%s)", KERNEL_NAMES[k]);
        return __sl_cl_fail(err, what);
    }
    return SL_OK;
}

/* Work-items for the elementwise kernels: n/4 vector items and n%4 tail items. */
static size_t ew_items(size_t n)
{
    return n / 4 + n % 4;
}

/* ------------------------------------------------------------------------------------------------
 * Kernels */

static int cl_gemm(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                   float alpha, sl_buffer *a, sl_buffer *b, float beta, sl_buffer *c)
{
    struct __sl_cl_device *d = CLDEV(dev);
    /* beta = 0 must overwrite C even where it holds NaN, which 0 * NaN in a kernel would not. */
    if (beta == 0.0f) {
        const float zero = 0.0f;
        CL_TRY(clEnqueueFillBuffer(d->queue, MEM(c), &zero, sizeof zero, 0, m * n * sizeof(float),
                                   0, NULL, NULL),
               "clEnqueueFillBuffer (GEMM with beta 0)");
    }
    const CLBlastTranspose ta = trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    const CLBlastTranspose tb = trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    const size_t lda = trans_a ? m : k, ldb = trans_b ? k : n, ldc = n;
    /* Our matrices are row-major; CLBlast is asked for the column-major product C^T = B^T A^T
     * over the same memory. Its Xgemm kernel wants C column-major, so a row-major call would
     * transpose C into scratch and back on every call (and A too); this way only one operand is
     * rearranged at most. CLBlast would also allocate and free its scratch buffer on every call;
     * we keep one per device. */
    size_t need = 0;
    CLBlastStatusCode s = CLBlastSGemmTempBufferSize(CLBlastLayoutColMajor, tb, ta, n, m, k, 0, ldb,
                                                     0, lda, 0, ldc, &d->queue, &need);
    if (s != CLBlastSuccess) return __sl_clblast_fail(s, "CLBlastSGemmTempBufferSize");
    if (need > d->temp_size) {
        if (d->temp) clReleaseMemObject(d->temp);
        d->temp = NULL;
        d->temp_size = 0;
        cl_int err;
        d->temp = clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, need, NULL, &err);
        if (err != CL_SUCCESS) return __sl_cl_fail(err, "clCreateBuffer (CLBlast GEMM scratch)");
        d->temp_size = need;
    }
    s = CLBlastSgemmWithTempBuffer(CLBlastLayoutColMajor, tb, ta, n, m, k, alpha, MEM(b), 0, ldb,
                                   MEM(a), 0, lda, beta, MEM(c), 0, ldc, &d->queue, NULL,
                                   need ? d->temp : NULL);
    if (s != CLBlastSuccess) {
        char what[128];
        snprintf(what, sizeof what, "CLBlast SGEMM (m=%zu n=%zu k=%zu%s%s)", m, n, k,
                 trans_a ? ", A transposed" : "", trans_b ? ", B transposed" : "");
        int st = __sl_clblast_fail(s, what);
        if (!d->tuned) return st;
        char cache[512] = "the tuning cache";
        sl_opencl_cache_path(cache, sizeof cache);
        return sl_fail_context(st,
                               "with sluice's CLBlast parameters for '%s' (from %s, or built "
                               "in for CPUs; SLUICE_CLBLAST_PARAMS=default turns them off)",
                               dev->info.name, cache);
    }
    return SL_OK;
}

/* y[rows,cols] += bias[cols] */
static int cl_bias_add(sl_device *dev, size_t rows, size_t cols, sl_buffer *y, sl_buffer *bias)
{
    struct __sl_cl_device *d = CLDEV(dev);
    cl_ulong r = rows, c = cols;
    ARG(K_BIAS_ADD, 0, y->impl);
    ARG(K_BIAS_ADD, 1, bias->impl);
    ARG(K_BIAS_ADD, 2, r);
    ARG(K_BIAS_ADD, 3, c);
    size_t local[2] = {SL_MIN(d->wg, round_up(cols, 8)), 1};
    size_t global[2] = {round_up(cols, local[0]), rows};
    CL_TRY(clEnqueueNDRangeKernel(d->queue, d->kernels[K_BIAS_ADD], 2, NULL, global, local, 0, NULL,
                                  NULL),
           "clEnqueueNDRangeKernel (bias_add)");
    return SL_OK;
}

/* dbias[cols] = beta * dbias + sum_r dy[r, cols] */
static int cl_bias_grad(sl_device *dev, size_t rows, size_t cols, sl_buffer *dy, float beta,
                        sl_buffer *dbias)
{
    struct __sl_cl_device *d = CLDEV(dev);
    cl_ulong r = rows, c = cols;
    ARG(K_BIAS_GRAD, 0, dy->impl);
    ARG(K_BIAS_GRAD, 1, dbias->impl);
    ARG(K_BIAS_GRAD, 2, r);
    ARG(K_BIAS_GRAD, 3, c);
    ARG(K_BIAS_GRAD, 4, beta);
    return launch1(d, K_BIAS_GRAD, cols);
}

static int cl_act_forward(sl_device *dev, enum sl_activation act, size_t n, sl_buffer *x,
                          sl_buffer *y)
{
    struct __sl_cl_device *d = CLDEV(dev);
    enum __sl_cl_kernel k = (enum __sl_cl_kernel)(K_ACT_FWD_RELU + act);
    cl_ulong nn = n;
    ARG(k, 0, x->impl);
    ARG(k, 1, y->impl);
    ARG(k, 2, nn);
    return launch1(d, k, ew_items(n));
}

static int cl_act_backward(sl_device *dev, enum sl_activation act, size_t n, sl_buffer *x,
                           sl_buffer *dy, sl_buffer *dx)
{
    struct __sl_cl_device *d = CLDEV(dev);
    enum __sl_cl_kernel k = (enum __sl_cl_kernel)(K_ACT_BWD_RELU + act);
    cl_ulong nn = n;
    ARG(k, 0, x->impl);
    ARG(k, 1, dy->impl);
    ARG(k, 2, dx->impl);
    ARG(k, 3, nn);
    return launch1(d, k, ew_items(n));
}

static int cl_softmax_xent(sl_device *dev, size_t rows, size_t classes, sl_buffer *logits,
                           sl_buffer *labels, float scale, sl_buffer *loss, sl_buffer *dlogits)
{
    struct __sl_cl_device *d = CLDEV(dev);
    cl_ulong r = rows, c = classes;
    ARG(K_SOFTMAX_XENT, 0, logits->impl);
    ARG(K_SOFTMAX_XENT, 1, labels->impl);
    ARG(K_SOFTMAX_XENT, 2, loss->impl);
    ARG(K_SOFTMAX_XENT, 3, dlogits->impl);
    ARG(K_SOFTMAX_XENT, 4, r);
    ARG(K_SOFTMAX_XENT, 5, c);
    ARG(K_SOFTMAX_XENT, 6, scale);
    return launch1(d, K_SOFTMAX_XENT, rows);
}

static int cl_mse(sl_device *dev, size_t rows, size_t cols, sl_buffer *pred, sl_buffer *target,
                  float scale, sl_buffer *loss, sl_buffer *dpred)
{
    struct __sl_cl_device *d = CLDEV(dev);
    cl_ulong r = rows, c = cols;
    ARG(K_MSE, 0, pred->impl);
    ARG(K_MSE, 1, target->impl);
    ARG(K_MSE, 2, loss->impl);
    ARG(K_MSE, 3, dpred->impl);
    ARG(K_MSE, 4, r);
    ARG(K_MSE, 5, c);
    ARG(K_MSE, 6, scale);
    return launch1(d, K_MSE, rows);
}

static int cl_sgd(sl_device *dev, size_t n, sl_buffer *param, sl_buffer *grad,
                  sl_buffer *momentum_buf, float lr, float momentum, float weight_decay)
{
    struct __sl_cl_device *d = CLDEV(dev);
    cl_ulong nn = n;
    if (!momentum_buf) {
        ARG(K_SGD, 0, param->impl);
        ARG(K_SGD, 1, grad->impl);
        ARG(K_SGD, 2, nn);
        ARG(K_SGD, 3, lr);
        ARG(K_SGD, 4, weight_decay);
        return launch1(d, K_SGD, ew_items(n));
    }
    ARG(K_SGD_MOMENTUM, 0, param->impl);
    ARG(K_SGD_MOMENTUM, 1, grad->impl);
    ARG(K_SGD_MOMENTUM, 2, momentum_buf->impl);
    ARG(K_SGD_MOMENTUM, 3, nn);
    ARG(K_SGD_MOMENTUM, 4, lr);
    ARG(K_SGD_MOMENTUM, 5, momentum);
    ARG(K_SGD_MOMENTUM, 6, weight_decay);
    return launch1(d, K_SGD_MOMENTUM, ew_items(n));
}

static int cl_adam(sl_device *dev, size_t n, sl_buffer *param, sl_buffer *grad, sl_buffer *m,
                   sl_buffer *v, float lr, float beta1, float beta2, float eps, float weight_decay,
                   float bc1, float bc2)
{
    struct __sl_cl_device *d = CLDEV(dev);
    cl_ulong nn = n;
    float step = lr / bc1, sqrt_bc2 = sqrtf(bc2); /* as the reference computes them */
    ARG(K_ADAM, 0, param->impl);
    ARG(K_ADAM, 1, grad->impl);
    ARG(K_ADAM, 2, m->impl);
    ARG(K_ADAM, 3, v->impl);
    ARG(K_ADAM, 4, nn);
    ARG(K_ADAM, 5, step);
    ARG(K_ADAM, 6, beta1);
    ARG(K_ADAM, 7, beta2);
    ARG(K_ADAM, 8, eps);
    ARG(K_ADAM, 9, weight_decay);
    ARG(K_ADAM, 10, sqrt_bc2);
    return launch1(d, K_ADAM, ew_items(n));
}

static int cl_axpy(sl_device *dev, size_t n, float alpha, sl_buffer *x, sl_buffer *y)
{
    struct __sl_cl_device *d = CLDEV(dev);
    cl_ulong nn = n;
    ARG(K_AXPY, 0, x->impl);
    ARG(K_AXPY, 1, y->impl);
    ARG(K_AXPY, 2, nn);
    ARG(K_AXPY, 3, alpha);
    return launch1(d, K_AXPY, ew_items(n));
}

static int cl_scale(sl_device *dev, size_t n, float alpha, sl_buffer *x)
{
    struct __sl_cl_device *d = CLDEV(dev);
    cl_ulong nn = n;
    ARG(K_SCALE, 0, x->impl);
    ARG(K_SCALE, 1, nn);
    ARG(K_SCALE, 2, alpha);
    return launch1(d, K_SCALE, ew_items(n));
}

static int cl_fill(sl_device *dev, size_t n, float value, sl_buffer *x)
{
    struct __sl_cl_device *d = CLDEV(dev);
    cl_ulong nn = n;
    ARG(K_FILL, 0, x->impl);
    ARG(K_FILL, 1, nn);
    ARG(K_FILL, 2, value);
    return launch1(d, K_FILL, ew_items(n));
}

/* ------------------------------------------------------------------------------------------------
 * Peak FMA throughput */

/* Times one peak_fma launch of `global` work-items and `iters` loop iterations; seconds. */
static int time_peak(struct __sl_cl_device *d, size_t global, size_t local, cl_int iters,
                     double *seconds)
{
    float a = 0.9999f, b = 0.0001f;
    ARG(K_PEAK_FMA, 1, a);
    ARG(K_PEAK_FMA, 2, b);
    ARG(K_PEAK_FMA, 3, iters);
    cl_event e;
    CL_TRY(clEnqueueNDRangeKernel(d->queue, d->kernels[K_PEAK_FMA], 1, NULL, &global, &local, 0,
                                  NULL, &e),
           "clEnqueueNDRangeKernel (peak_fma)");
    cl_int err = clWaitForEvents(1, &e);
    cl_ulong t0 = 0, t1 = 0;
    if (err == CL_SUCCESS)
        err = clGetEventProfilingInfo(e, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
    if (err == CL_SUCCESS)
        err = clGetEventProfilingInfo(e, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
    clReleaseEvent(e);
    CL_TRY(err, "timing peak_fma");
    *seconds = ((double)t1 - (double)t0) * 1e-9;
    return SL_OK;
}

static int cl_peak_gflops(sl_device *dev, double *gflops)
{
    struct __sl_cl_device *d = CLDEV(dev);
    size_t local = d->wg;
    /* Enough work-groups to fill every compute unit several times over. */
    size_t global = local * SL_MAX((size_t)dev->info.compute_units, 1) * 8;
    cl_int err;
    cl_mem out = clCreateBuffer(d->ctx, CL_MEM_WRITE_ONLY, global * sizeof(float), NULL, &err);
    if (err != CL_SUCCESS) return __sl_cl_fail(err, "clCreateBuffer (peak)");
    int st = clSetKernelArg(d->kernels[K_PEAK_FMA], 0, sizeof out, &out) == CL_SUCCESS
                 ? SL_OK
                 : sl_fail(SL_EDEVICE, "clSetKernelArg (peak_fma) failed");
    /* Grow the loop until one launch takes 50 ms, then keep the best of three. */
    cl_int iters = 4;
    double t = 0.0, best = 0.0;
    while (st == SL_OK && (st = time_peak(d, global, local, iters, &t)) == SL_OK && t < 0.05 &&
           iters < (1 << 24))
        iters *= 2;
    for (int rep = 0; st == SL_OK && rep < 3; rep++) {
        st = time_peak(d, global, local, iters, &t);
        double g = (double)global * (double)iters * 2048.0 / t * 1e-9;
        if (st == SL_OK && t > 0 && g > best) best = g;
    }
    clReleaseMemObject(out);
    SL_TRY(st);
    *gflops = best;
    return SL_OK;
}

const struct sl_backend_ops sl_opencl_backend = {
    .name = "opencl",
    .enumerate = cl_enumerate,
    .open = cl_open,
    .close = cl_close,
    .finish = cl_finish,
    .buffer_alloc = cl_buffer_alloc,
    .buffer_free = cl_buffer_free,
    .upload = cl_upload,
    .download = cl_download,
    .copy = cl_copy,
    .map_write = cl_map_write,
    .unmap = cl_unmap,
    .event_record = cl_event_record,
    .event_wait = cl_event_wait,
    .event_elapsed_ms = cl_event_elapsed_ms,
    .event_free = cl_event_free,
    .peak_gflops = cl_peak_gflops,
    .gemm = cl_gemm,
    .bias_add = cl_bias_add,
    .bias_grad = cl_bias_grad,
    .act_forward = cl_act_forward,
    .act_backward = cl_act_backward,
    .softmax_xent = cl_softmax_xent,
    .mse = cl_mse,
    .sgd = cl_sgd,
    .adam = cl_adam,
    .axpy = cl_axpy,
    .scale = cl_scale,
    .fill = cl_fill,
};
