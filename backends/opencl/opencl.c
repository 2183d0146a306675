/* The OpenCL backend: every device of every platform the ICD loader finds (GPUs, and CPUs through
 * PoCL), one in-order profiling queue per device, and buffers as cl_mem. The stage kernels (GEMM
 * through CLBlast, the others in OpenCL C from kernels/opencl/, embedded at build time and compiled
 * once per device at open with no fast-math options) are in kernels.c. */
#include "backends/opencl/opencl_impl.h"

#include <clblast_c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kernel sources, embedded by backends/opencl/CMakeLists.txt. */
extern const unsigned char sl__cl_src_elementwise[], sl__cl_src_loss[], sl__cl_src_transformer[],
    sl__cl_src_peak[];
extern const size_t sl__cl_src_elementwise_size, sl__cl_src_loss_size, sl__cl_src_transformer_size,
    sl__cl_src_peak_size;

/* Only -cl-std: fast-math options (-cl-fast-relaxed-math, -cl-mad-enable, ...) would make results
 * differ from the reference by more than rounding, and -cl-denorms-are-zero would flush small
 * gradients. */
static const char BUILD_OPTIONS[] = "-cl-std=CL1.2";

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

int sl__cl_fail(cl_int err, const char *what)
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

int sl__clblast_fail(int status, const char *what)
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

int sl__cl_enumerate(sl_device_info *infos, size_t cap, size_t *count)
{
    *count = 0;
    cl_uint nplat = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &nplat);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && nplat == 0))
        return sl_fail(SL_EUNAVAILABLE, "no OpenCL platform found (install an ICD such as "
                                        "pocl-opencl-icd for CPUs, or your GPU vendor's driver)");
    if (err != CL_SUCCESS) return sl__cl_fail(err, "listing OpenCL platforms (clGetPlatformIDs)");
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
static int build_program(struct sl__cl_device *d, const char *source, cl_program *out)
{
    cl_int err;
    size_t len = strlen(source);
    cl_program prog = clCreateProgramWithSource(d->ctx, 1, &source, &len, &err);
    if (err != CL_SUCCESS) return sl__cl_fail(err, "clCreateProgramWithSource");
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
    if (dev->ops != &sl__opencl_backend)
        return sl_fail(SL_EINVAL, "%s is not an OpenCL device", dev->info.id);
    cl_program prog;
    SL_TRY(build_program(CLDEV(dev), source, &prog));
    clReleaseProgram(prog);
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Device */

void sl__cl_close(sl_device *dev)
{
    struct sl__cl_device *d = CLDEV(dev);
    if (!d) return;
    if (d->queue) clFinish(d->queue);
    for (int k = 0; k < K_COUNT; k++)
        if (d->kernels[k]) clReleaseKernel(d->kernels[k]);
    if (d->program) clReleaseProgram(d->program);
    if (d->temp) clReleaseMemObject(d->temp);
    if (d->partials) clReleaseMemObject(d->partials);
    if (d->zero) clReleaseMemObject(d->zero);
    if (d->queue) clReleaseCommandQueue(d->queue);
    if (d->ctx) clReleaseContext(d->ctx);
    free(d);
    dev->impl = NULL;
}

static int open_device(sl_device *dev, struct sl__cl_device *d)
{
    cl_int err;
    d->platform = found.platform[dev->index];
    d->device = found.device[dev->index];
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)d->platform, 0};
    d->ctx = clCreateContext(props, 1, &d->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) return sl__cl_fail(err, "clCreateContext");
    d->queue = clCreateCommandQueue(d->ctx, d->device, CL_QUEUE_PROFILING_ENABLE, &err);
    if (err != CL_SUCCESS) return sl__cl_fail(err, "clCreateCommandQueue");

    /* One program from all kernel files, built once per device. */
    size_t total = sl__cl_src_elementwise_size + sl__cl_src_loss_size +
                   sl__cl_src_transformer_size + sl__cl_src_peak_size + 5;
    char *src = malloc(total);
    if (!src) return sl_fail(SL_ENOMEM, "no memory for kernel sources");
    snprintf(src, total, "%s\n%s\n%s\n%s\n", (const char *)sl__cl_src_elementwise,
             (const char *)sl__cl_src_loss, (const char *)sl__cl_src_transformer,
             (const char *)sl__cl_src_peak);
    int st = build_program(d, src, &d->program);
    free(src);
    SL_TRY(st);

    size_t wg = 256;
    for (int k = 0; k < K_COUNT; k++) {
        d->kernels[k] = clCreateKernel(d->program, sl__cl_kernel_names[k], &err);
        if (err != CL_SUCCESS) return sl__cl_fail(err, sl__cl_kernel_names[k]);
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
    return sl__cl_apply_tuning(dev);
}

int sl__cl_open(sl_device *dev)
{
    struct sl__cl_device *d = sl_alloc(sizeof *d);
    if (!d) return SL_ENOMEM;
    dev->impl = d;
    int st = open_device(dev, d);
    if (st != SL_OK) sl__cl_close(dev);
    return st;
}

int sl__cl_finish(sl_device *dev)
{
    CL_TRY(clFinish(CLDEV(dev)->queue), "clFinish");
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Buffers */

int sl__cl_buffer_alloc(sl_buffer *buf)
{
    cl_int err;
    cl_mem m = clCreateBuffer(CLDEV(buf->dev)->ctx, CL_MEM_READ_WRITE, buf->size, NULL, &err);
    if (err != CL_SUCCESS) return sl__cl_fail(err, "clCreateBuffer");
    buf->impl = m;
    /* Zero it, as the CPU backend does, so that no kernel ever reads uninitialised memory. */
    const cl_uchar zero = 0;
    err = clEnqueueFillBuffer(CLDEV(buf->dev)->queue, m, &zero, 1, 0, buf->size, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        clReleaseMemObject(m);
        buf->impl = NULL;
        return sl__cl_fail(err, "clEnqueueFillBuffer (zeroing a new buffer)");
    }
    return SL_OK;
}

void sl__cl_buffer_free(sl_buffer *buf)
{
    /* OpenCL keeps a buffer alive until the commands using it have finished. */
    if (buf->impl) clReleaseMemObject(MEM(buf));
}

int sl__cl_upload(sl_buffer *dst, size_t offset, const void *src, size_t bytes)
{
    CL_TRY(clEnqueueWriteBuffer(CLDEV(dst->dev)->queue, MEM(dst), CL_TRUE, offset, bytes, src, 0,
                                NULL, NULL),
           "clEnqueueWriteBuffer (upload)");
    return SL_OK;
}

int sl__cl_download(sl_buffer *src, size_t offset, void *dst, size_t bytes)
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
int sl__cl_map_write(sl_buffer *buf, size_t offset, size_t bytes, void **host)
{
    cl_int err;
    *host = clEnqueueMapBuffer(CLDEV(buf->dev)->queue, MEM(buf), CL_TRUE,
                               CL_MAP_WRITE_INVALIDATE_REGION, offset, bytes, 0, NULL, NULL, &err);
    CL_TRY(err, "clEnqueueMapBuffer (write)");
    return SL_OK;
}

int sl__cl_unmap(sl_buffer *buf, void *host)
{
    CL_TRY(clEnqueueUnmapMemObject(CLDEV(buf->dev)->queue, MEM(buf), host, 0, NULL, NULL),
           "clEnqueueUnmapMemObject");
    return SL_OK;
}

int sl__cl_copy(sl_buffer *dst, size_t dst_offset, sl_buffer *src, size_t src_offset, size_t bytes)
{
    /* OpenCL rejects overlapping copies within one buffer (CL_MEM_COPY_OVERLAP); memmove's
     * meaning is kept by going through a scratch buffer. */
    cl_command_queue q = CLDEV(dst->dev)->queue;
    if (dst == src && dst_offset < src_offset + bytes && src_offset < dst_offset + bytes) {
        if (dst_offset == src_offset) return SL_OK;
        cl_int err;
        cl_mem tmp = clCreateBuffer(CLDEV(dst->dev)->ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (err != CL_SUCCESS) return sl__cl_fail(err, "clCreateBuffer (copy scratch)");
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

int sl__cl_event_record(sl_device *dev, sl_event *ev)
{
    cl_event e;
    CL_TRY(clEnqueueMarkerWithWaitList(CLDEV(dev)->queue, 0, NULL, &e),
           "clEnqueueMarkerWithWaitList (event record)");
    /* Markers are only guaranteed to progress once the queue is flushed. */
    clFlush(CLDEV(dev)->queue);
    ev->impl = e;
    return SL_OK;
}

int sl__cl_event_wait(sl_event *ev)
{
    cl_event e = ev->impl;
    CL_TRY(clWaitForEvents(1, &e), "clWaitForEvents");
    return SL_OK;
}

int sl__cl_event_elapsed_ms(sl_event *start, sl_event *end, double *ms)
{
    SL_TRY(sl__cl_event_wait(start));
    SL_TRY(sl__cl_event_wait(end));
    cl_ulong t0 = 0, t1 = 0;
    CL_TRY(clGetEventProfilingInfo(start->impl, CL_PROFILING_COMMAND_END, sizeof t0, &t0, NULL),
           "clGetEventProfilingInfo (start event)");
    CL_TRY(clGetEventProfilingInfo(end->impl, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL),
           "clGetEventProfilingInfo (end event)");
    *ms = ((double)t1 - (double)t0) * 1e-6;
    return SL_OK;
}

void sl__cl_event_free(sl_event *ev)
{
    if (ev->impl) clReleaseEvent(ev->impl);
}
