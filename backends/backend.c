/* The public wrapper of the device interface: device registry, argument and bounds checks, and
 * defaults for optional operations. Backends see only calls that passed these checks. */
#include "backends/backend_impl.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct sl_backend_ops *const backends[] = {
    &sl__cpu_backend,
#ifdef SL_HAVE_OPENCL
    &sl__opencl_backend,
#endif
#ifdef SL_HAVE_VULKAN
    &sl__vulkan_backend,
#endif
};

#define MAX_DEVICES 64

static struct {
    pthread_once_t once;
    sl_device_info infos[MAX_DEVICES];
    const struct sl_backend_ops *ops[MAX_DEVICES];
    size_t index[MAX_DEVICES];
    size_t count;
    char problems[2048];
} registry = {.once = PTHREAD_ONCE_INIT};

static void registry_init(void)
{
    for (size_t b = 0; b < SL_ARRAY_LEN(backends); b++) {
        size_t n = 0;
        sl_device_info *infos = &registry.infos[registry.count];
        int st = backends[b]->enumerate(infos, MAX_DEVICES - registry.count, &n);
        if (st != SL_OK) {
            size_t used = strlen(registry.problems);
            snprintf(registry.problems + used, sizeof registry.problems - used, "%s: %s\n",
                     backends[b]->name, sl_last_error());
            sl_clear_error();
            continue;
        }
        n = SL_MIN(n, MAX_DEVICES - registry.count);
        for (size_t i = 0; i < n; i++) {
            registry.ops[registry.count + i] = backends[b];
            registry.index[registry.count + i] = i;
            snprintf(infos[i].backend, sizeof infos[i].backend, "%s", backends[b]->name);
        }
        registry.count += n;
    }
}

int sl_device_list(const sl_device_info **infos, size_t *count)
{
    if (!infos || !count) return sl_fail(SL_EINVAL, "sl_device_list: null argument");
    pthread_once(&registry.once, registry_init);
    *infos = registry.infos;
    *count = registry.count;
    return SL_OK;
}

const char *sl_device_list_problems(void)
{
    pthread_once(&registry.once, registry_init);
    return registry.problems;
}

int sl_device_open(const char *id, sl_device **out)
{
    return sl_device_open_with(id, NULL, out);
}

int sl_device_open_with(const char *id, const sl_device_options *opt, sl_device **out)
{
    if (!id || !out) return sl_fail(SL_EINVAL, "sl_device_open: null argument");
    *out = NULL;
    if (opt && opt->threads < 0)
        return sl_fail(SL_EINVAL,
                       "opening device %s: %d threads; give a count of 1 or more, or 0 for the "
                       "BLAS library's default",
                       id, opt->threads);
    pthread_once(&registry.once, registry_init);
    for (size_t i = 0; i < registry.count; i++) {
        if (strcmp(registry.infos[i].id, id) != 0) continue;
        sl_device *dev = sl_alloc(sizeof *dev);
        if (!dev) return SL_ENOMEM;
        dev->ops = registry.ops[i];
        dev->info = registry.infos[i];
        dev->index = registry.index[i];
        int st = dev->ops->open(dev);
        if (st != SL_OK) {
            free(dev);
            return sl_fail_context(st, "opening device %s", id);
        }
        if (opt && dev->ops->apply_options && (st = dev->ops->apply_options(dev, opt)) != SL_OK) {
            sl_device_close(dev);
            return sl_fail_context(st, "opening device %s", id);
        }
        *out = dev;
        return SL_OK;
    }
    char ids[1024] = "";
    for (size_t i = 0; i < registry.count; i++) {
        size_t used = strlen(ids);
        snprintf(ids + used, sizeof ids - used, "%s%s", i ? ", " : "", registry.infos[i].id);
    }
    return sl_fail(SL_EINVAL,
                   "unknown device '%s'; the devices here are: %s (see `sluice devices`)", id, ids);
}

void sl_device_close(sl_device *dev)
{
    if (!dev) return;
    dev->ops->close(dev);
    free(dev);
}

const sl_device_info *sl_device_get_info(const sl_device *dev)
{
    return dev ? &dev->info : NULL;
}

int sl_device_finish(sl_device *dev)
{
    if (!dev) return sl_fail(SL_EINVAL, "sl_device_finish: null device");
    return dev->ops->finish(dev);
}

int sl_device_peak_gflops(sl_device *dev, double *gflops)
{
    if (!dev || !gflops) return sl_fail(SL_EINVAL, "sl_device_peak_gflops: null argument");
    if (!dev->ops->peak_gflops)
        return sl_fail(SL_EUNSUPPORTED, "%s cannot measure its FMA peak", dev->info.id);
    return dev->ops->peak_gflops(dev, gflops);
}

uint64_t sl_device_allocated(const sl_device *dev)
{
    return dev ? dev->allocated : 0;
}

uint64_t sl_device_peak_allocated(const sl_device *dev)
{
    return dev ? dev->peak : 0;
}

/* ------------------------------------------------------------------------------------------------
 * Buffers */

int sl_buffer_alloc(sl_device *dev, size_t bytes, sl_buffer **out)
{
    if (!dev || !out) return sl_fail(SL_EINVAL, "sl_buffer_alloc: null argument");
    *out = NULL;
    if (bytes == 0) return sl_fail(SL_EINVAL, "sl_buffer_alloc: zero-byte buffer");
    if (dev->info.max_alloc_bytes && bytes > dev->info.max_alloc_bytes)
        return sl_fail(SL_ELIMIT,
                       "a buffer of %zu bytes exceeds %s's largest allocation (%llu bytes); use "
                       "smaller batches or layers, or more stages",
                       bytes, dev->info.id, (unsigned long long)dev->info.max_alloc_bytes);
    sl_buffer *buf = sl_alloc(sizeof *buf);
    if (!buf) return SL_ENOMEM;
    buf->dev = dev;
    buf->size = bytes;
    int st = dev->ops->buffer_alloc(buf);
    if (st != SL_OK) {
        free(buf);
        return sl_fail_context(st, "allocating %zu bytes on %s", bytes, dev->info.id);
    }
    dev->allocated += bytes;
    if (dev->allocated > dev->peak) dev->peak = dev->allocated;
    *out = buf;
    return SL_OK;
}

void sl_buffer_free(sl_buffer *buf)
{
    if (!buf) return;
    if (buf->mapped && buf->map_staged)
        free(buf->mapped);
    else if (buf->mapped)
        buf->dev->ops->unmap(buf, buf->mapped);
    buf->dev->ops->buffer_free(buf);
    buf->dev->allocated -= buf->size;
    free(buf);
}

size_t sl_buffer_size(const sl_buffer *buf)
{
    return buf ? buf->size : 0;
}

sl_device *sl_buffer_device(const sl_buffer *buf)
{
    return buf ? buf->dev : NULL;
}

static int check_range(const char *what, const sl_buffer *buf, size_t offset, size_t bytes)
{
    if (!buf) return sl_fail(SL_EINVAL, "%s: null buffer", what);
    if (offset > buf->size || bytes > buf->size - offset)
        return sl_fail(SL_ERANGE, "%s: bytes [%zu, %zu+%zu) outside a buffer of %zu bytes", what,
                       offset, offset, bytes, buf->size);
    return SL_OK;
}

int sl_buffer_upload(sl_buffer *dst, size_t offset, const void *src, size_t bytes)
{
    SL_TRY(check_range("sl_buffer_upload", dst, offset, bytes));
    if (!src && bytes) return sl_fail(SL_EINVAL, "sl_buffer_upload: null source");
    if (bytes == 0) return SL_OK;
    return dst->dev->ops->upload(dst, offset, src, bytes);
}

int sl_buffer_download(sl_buffer *src, size_t offset, void *dst, size_t bytes)
{
    SL_TRY(check_range("sl_buffer_download", src, offset, bytes));
    if (!dst && bytes) return sl_fail(SL_EINVAL, "sl_buffer_download: null destination");
    if (bytes == 0) return SL_OK;
    return src->dev->ops->download(src, offset, dst, bytes);
}

/* What both mappings check (after the caller has cleared *host): the range, no mapping yet. */
static int map_check(const char *K, sl_buffer *buf, size_t offset, size_t bytes)
{
    SL_TRY(check_range(K, buf, offset, bytes));
    if (buf->mapped)
        return sl_fail(SL_EINVAL, "%s: the buffer is already mapped (unmap it first)", K);
    return SL_OK;
}

/* The wrapper's bookkeeping of a mapping made, for sl_buffer_unmap and sl_buffer_free. */
static void map_record(sl_buffer *buf, void *p, size_t offset, size_t bytes, bool staged, bool read)
{
    buf->mapped = p;
    buf->map_offset = offset;
    buf->map_bytes = bytes;
    buf->map_staged = staged;
    buf->map_read = read;
}

int sl_buffer_map_write(sl_buffer *buf, size_t offset, size_t bytes, void **host)
{
    if (!host) return sl_fail(SL_EINVAL, "sl_buffer_map_write: no pointer for the mapping");
    *host = NULL;
    SL_TRY(map_check("sl_buffer_map_write", buf, offset, bytes));
    void *p = NULL;
    bool staged = !buf->dev->ops->map_write || bytes == 0;
    if (staged) {
        if (!(p = sl_alloc(bytes))) return SL_ENOMEM;
    } else {
        SL_TRY(buf->dev->ops->map_write(buf, offset, bytes, &p));
    }
    map_record(buf, p, offset, bytes, staged, false);
    *host = p;
    return SL_OK;
}

int sl_buffer_map_read(sl_buffer *buf, size_t offset, size_t bytes, const void **host)
{
    if (!host) return sl_fail(SL_EINVAL, "sl_buffer_map_read: no pointer for the mapping");
    *host = NULL;
    SL_TRY(map_check("sl_buffer_map_read", buf, offset, bytes));
    const void *p = NULL;
    bool staged = !buf->dev->ops->map_read || bytes == 0;
    if (staged) {
        void *copy = sl_alloc(bytes ? bytes : 1);
        if (!copy) return SL_ENOMEM;
        int st = bytes ? buf->dev->ops->download(buf, offset, copy, bytes) : SL_OK;
        if (st != SL_OK) {
            free(copy);
            return st;
        }
        p = copy;
    } else {
        SL_TRY(buf->dev->ops->map_read(buf, offset, bytes, &p));
    }
    map_record(buf, (void *)p, offset, bytes, staged, true);
    *host = p;
    return SL_OK;
}

bool sl_device_host_memory(const sl_device *dev)
{
    return dev && dev->ops->map_read;
}

int sl_buffer_unmap(sl_buffer *buf, void *host)
{
    if (!buf || !buf->mapped || host != buf->mapped)
        return sl_fail(SL_EINVAL, "sl_buffer_unmap: not the buffer's current mapping");
    int st;
    if (buf->map_staged) {
        st = buf->map_bytes && !buf->map_read
                 ? buf->dev->ops->upload(buf, buf->map_offset, host, buf->map_bytes)
                 : SL_OK;
        free(host);
    } else {
        st = buf->dev->ops->unmap(buf, host);
    }
    buf->mapped = NULL;
    return st;
}

int sl_buffer_copy(sl_buffer *dst, size_t dst_offset, sl_buffer *src, size_t src_offset,
                   size_t bytes)
{
    SL_TRY(check_range("sl_buffer_copy (destination)", dst, dst_offset, bytes));
    SL_TRY(check_range("sl_buffer_copy (source)", src, src_offset, bytes));
    if (dst->dev != src->dev)
        return sl_fail(SL_EINVAL, "sl_buffer_copy: buffers on different devices (%s and %s)",
                       dst->dev->info.id, src->dev->info.id);
    if (bytes == 0) return SL_OK;
    return dst->dev->ops->copy(dst, dst_offset, src, src_offset, bytes);
}

/* ------------------------------------------------------------------------------------------------
 * Events */

int sl_event_record(sl_device *dev, sl_event **out)
{
    if (!dev || !out) return sl_fail(SL_EINVAL, "sl_event_record: null argument");
    sl_event *ev = sl_alloc(sizeof *ev);
    if (!ev) return SL_ENOMEM;
    ev->dev = dev;
    int st;
    if (dev->ops->event_record) {
        st = dev->ops->event_record(dev, ev);
    } else {
        st = dev->ops->finish(dev);
        ev->host_time = sl_now();
    }
    if (st != SL_OK) {
        free(ev);
        return st;
    }
    *out = ev;
    return SL_OK;
}

int sl_event_wait(sl_event *ev)
{
    if (!ev) return sl_fail(SL_EINVAL, "sl_event_wait: null event");
    return ev->dev->ops->event_wait ? ev->dev->ops->event_wait(ev) : SL_OK;
}

int sl_event_elapsed_ms(sl_event *start, sl_event *end, double *ms)
{
    if (!start || !end || !ms) return sl_fail(SL_EINVAL, "sl_event_elapsed_ms: null argument");
    if (start->dev != end->dev)
        return sl_fail(SL_EINVAL, "sl_event_elapsed_ms: events of different devices");
    if (start->dev->ops->event_elapsed_ms) return start->dev->ops->event_elapsed_ms(start, end, ms);
    *ms = 1e3 * (end->host_time - start->host_time);
    return SL_OK;
}

void sl_event_free(sl_event *ev)
{
    if (!ev) return;
    if (ev->dev->ops->event_free) ev->dev->ops->event_free(ev);
    free(ev);
}

/* ------------------------------------------------------------------------------------------------
 * Kernel argument checks */

const char *sl_activation_name(enum sl_activation act)
{
    static const char *names[SL_ACT_COUNT] = {"relu", "tanh", "sigmoid", "gelu", "gelu_tanh"};
    return (unsigned)act < SL_ACT_COUNT ? names[act] : "unknown";
}

int sl_activation_parse(const char *name, enum sl_activation *act)
{
    for (int a = 0; a < SL_ACT_COUNT; a++) {
        if (name && !strcmp(name, sl_activation_name((enum sl_activation)a))) {
            *act = (enum sl_activation)a;
            return SL_OK;
        }
    }
    return sl_fail(SL_EINVAL, "unknown activation '%s' (relu, tanh, sigmoid, gelu, gelu_tanh)",
                   name ? name : "(null)");
}

/* Checks that `buf` is on `dev` and holds at least `elems` 4-byte elements, within the device's
 * binding range. `name` is the argument's name for the message. */
int sl__check_arg(const char *kernel, const char *name, sl_device *dev, const sl_buffer *buf,
                  size_t elems)
{
    if (!buf) return sl_fail(SL_EINVAL, "%s: buffer '%s' is null", kernel, name);
    if (buf->dev != dev)
        return sl_fail(SL_EINVAL, "%s: buffer '%s' lives on %s, not on %s", kernel, name,
                       buf->dev->info.id, dev->info.id);
    size_t bytes = sl_mul_size(elems, 4);
    if (elems && !bytes)
        return sl_fail(SL_ERANGE, "%s: '%s' needs %zu elements, which overflows", kernel, name,
                       elems);
    if (bytes > buf->size)
        return sl_fail(SL_ERANGE, "%s: '%s' needs %zu elements (%zu bytes) but its buffer has %zu",
                       kernel, name, elems, bytes, buf->size);
    if (dev->info.max_buffer_range && bytes > dev->info.max_buffer_range)
        return sl_fail(
            SL_ELIMIT, "%s: '%s' spans %zu bytes, more than %s can bind in one kernel (%llu)",
            kernel, name, bytes, dev->info.id, (unsigned long long)dev->info.max_buffer_range);
    return SL_OK;
}

int sl__check_dev(const char *kernel, sl_device *dev)
{
    return dev ? SL_OK : sl_fail(SL_EINVAL, "%s: null device", kernel);
}

/* rows * cols without overflow, as an element count. */
int sl__check_shape(const char *kernel, size_t rows, size_t cols, size_t *elems)
{
    *elems = rows * cols;
    if (rows && cols && (*elems / cols != rows || *elems > SIZE_MAX / 4))
        return sl_fail(SL_ERANGE, "%s: shape [%zu, %zu] overflows", kernel, rows, cols);
    return SL_OK;
}

int sl_gemm(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
            sl_buffer *a, sl_buffer *b, float beta, sl_buffer *c)
{
    static const char *K = "sl_gemm";
    size_t ea, eb, ec;
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_shape(K, m, k, &ea));
    SL_TRY(sl__check_shape(K, k, n, &eb));
    SL_TRY(sl__check_shape(K, m, n, &ec));
    SL_TRY(sl__check_arg(K, "a", dev, a, ea));
    SL_TRY(sl__check_arg(K, "b", dev, b, eb));
    SL_TRY(sl__check_arg(K, "c", dev, c, ec));
    if (m == 0 || n == 0) return SL_OK;
    if (k == 0)
        return beta == 0.0f ? dev->ops->fill(dev, ec, 0.0f, c)
                            : (beta == 1.0f ? SL_OK : dev->ops->scale(dev, ec, beta, c));
    return dev->ops->gemm(dev, trans_a, trans_b, m, n, k, alpha, a, b, beta, c);
}

int sl_bias_add(sl_device *dev, size_t rows, size_t cols, sl_buffer *y, sl_buffer *bias)
{
    static const char *K = "sl_bias_add";
    size_t e;
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_shape(K, rows, cols, &e));
    SL_TRY(sl__check_arg(K, "y", dev, y, e));
    SL_TRY(sl__check_arg(K, "bias", dev, bias, cols));
    if (e == 0) return SL_OK;
    return dev->ops->bias_add(dev, rows, cols, y, bias);
}

int sl_bias_grad(sl_device *dev, size_t rows, size_t cols, sl_buffer *dy, float beta,
                 sl_buffer *dbias)
{
    static const char *K = "sl_bias_grad";
    size_t e;
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_shape(K, rows, cols, &e));
    SL_TRY(sl__check_arg(K, "dy", dev, dy, e));
    SL_TRY(sl__check_arg(K, "dbias", dev, dbias, cols));
    if (beta != 0.0f && beta != 1.0f) return sl_fail(SL_EINVAL, "%s: beta must be 0 or 1", K);
    if (cols == 0) return SL_OK;
    if (rows == 0) return beta == 0.0f ? dev->ops->fill(dev, cols, 0.0f, dbias) : SL_OK;
    return dev->ops->bias_grad(dev, rows, cols, dy, beta, dbias);
}

static int check_act(const char *kernel, enum sl_activation act)
{
    if ((unsigned)act >= SL_ACT_COUNT)
        return sl_fail(SL_EINVAL, "%s: unknown activation %d", kernel, (int)act);
    return SL_OK;
}

int sl_act_forward(sl_device *dev, enum sl_activation act, size_t n, sl_buffer *x, sl_buffer *y)
{
    static const char *K = "sl_act_forward";
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(check_act(K, act));
    SL_TRY(sl__check_arg(K, "x", dev, x, n));
    SL_TRY(sl__check_arg(K, "y", dev, y, n));
    if (n == 0) return SL_OK;
    return dev->ops->act_forward(dev, act, n, x, y);
}

int sl_act_backward(sl_device *dev, enum sl_activation act, size_t n, sl_buffer *x, sl_buffer *dy,
                    sl_buffer *dx)
{
    static const char *K = "sl_act_backward";
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(check_act(K, act));
    SL_TRY(sl__check_arg(K, "x", dev, x, n));
    SL_TRY(sl__check_arg(K, "dy", dev, dy, n));
    SL_TRY(sl__check_arg(K, "dx", dev, dx, n));
    if (n == 0) return SL_OK;
    return dev->ops->act_backward(dev, act, n, x, dy, dx);
}

int sl_gelu_backward(sl_device *dev, size_t n, sl_buffer *x, sl_buffer *y, sl_buffer *dy,
                     sl_buffer *dx)
{
    static const char *K = "sl_gelu_backward";
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_arg(K, "x", dev, x, n));
    SL_TRY(sl__check_arg(K, "y", dev, y, n));
    SL_TRY(sl__check_arg(K, "dy", dev, dy, n));
    SL_TRY(sl__check_arg(K, "dx", dev, dx, n));
    if (y == dx) return sl_fail(SL_EINVAL, "%s: y and dx are the same buffer", K);
    if (n == 0) return SL_OK;
    if (!dev->ops->gelu_backward) return dev->ops->act_backward(dev, SL_ACT_GELU, n, x, dy, dx);
    return dev->ops->gelu_backward(dev, n, x, y, dy, dx);
}

int sl_softmax_xent(sl_device *dev, size_t rows, size_t classes, sl_buffer *logits,
                    sl_buffer *labels, float scale, sl_buffer *loss, sl_buffer *dlogits)
{
    static const char *K = "sl_softmax_xent";
    size_t e;
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_shape(K, rows, classes, &e));
    if (classes == 0) return sl_fail(SL_EINVAL, "%s: zero classes", K);
    SL_TRY(sl__check_arg(K, "logits", dev, logits, e));
    SL_TRY(sl__check_arg(K, "labels", dev, labels, rows));
    SL_TRY(sl__check_arg(K, "loss", dev, loss, rows));
    SL_TRY(sl__check_arg(K, "dlogits", dev, dlogits, e));
    if (rows == 0) return SL_OK;
    return dev->ops->softmax_xent(dev, rows, classes, logits, labels, scale, loss, dlogits);
}

int sl_mse(sl_device *dev, size_t rows, size_t cols, sl_buffer *pred, sl_buffer *target,
           float scale, sl_buffer *loss, sl_buffer *dpred)
{
    static const char *K = "sl_mse";
    size_t e;
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_shape(K, rows, cols, &e));
    if (cols == 0) return sl_fail(SL_EINVAL, "%s: zero columns", K);
    SL_TRY(sl__check_arg(K, "pred", dev, pred, e));
    SL_TRY(sl__check_arg(K, "target", dev, target, e));
    SL_TRY(sl__check_arg(K, "loss", dev, loss, rows));
    SL_TRY(sl__check_arg(K, "dpred", dev, dpred, e));
    if (rows == 0) return SL_OK;
    return dev->ops->mse(dev, rows, cols, pred, target, scale, loss, dpred);
}

int sl_sgd(sl_device *dev, size_t n, sl_buffer *param, sl_buffer *grad, sl_buffer *momentum_buf,
           float lr, float momentum, float weight_decay)
{
    static const char *K = "sl_sgd";
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_arg(K, "param", dev, param, n));
    SL_TRY(sl__check_arg(K, "grad", dev, grad, n));
    if (momentum != 0.0f) SL_TRY(sl__check_arg(K, "momentum_buf", dev, momentum_buf, n));
    if (!(lr >= 0.0f) || !(momentum >= 0.0f) || !(weight_decay >= 0.0f))
        return sl_fail(SL_EINVAL, "%s: lr, momentum and weight_decay must be >= 0", K);
    if (n == 0) return SL_OK;
    return dev->ops->sgd(dev, n, param, grad, momentum != 0.0f ? momentum_buf : NULL, lr, momentum,
                         weight_decay);
}

/* sl_adam and sl_adamw: the same checks and bias corrections, then the backend's update. */
static int adam_common(const char *K, bool decoupled, sl_device *dev, size_t n, sl_buffer *param,
                       sl_buffer *grad, sl_buffer *m, sl_buffer *v, float lr, float beta1,
                       float beta2, float eps, float weight_decay, int64_t t)
{
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_arg(K, "param", dev, param, n));
    SL_TRY(sl__check_arg(K, "grad", dev, grad, n));
    SL_TRY(sl__check_arg(K, "m", dev, m, n));
    SL_TRY(sl__check_arg(K, "v", dev, v, n));
    if (t < 1) return sl_fail(SL_EINVAL, "%s: step t counts from 1 (got %lld)", K, (long long)t);
    if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f))
        return sl_fail(SL_EINVAL, "%s: betas must be in [0, 1)", K);
    if (n == 0) return SL_OK;
    float bc1 = (float)(1.0 - pow((double)beta1, (double)t));
    float bc2 = (float)(1.0 - pow((double)beta2, (double)t));
    return (decoupled ? dev->ops->adamw : dev->ops->adam)(dev, n, param, grad, m, v, lr, beta1,
                                                          beta2, eps, weight_decay, bc1, bc2);
}

int sl_adam(sl_device *dev, size_t n, sl_buffer *param, sl_buffer *grad, sl_buffer *m, sl_buffer *v,
            float lr, float beta1, float beta2, float eps, float weight_decay, int64_t t)
{
    return adam_common("sl_adam", false, dev, n, param, grad, m, v, lr, beta1, beta2, eps,
                       weight_decay, t);
}

int sl_adamw(sl_device *dev, size_t n, sl_buffer *param, sl_buffer *grad, sl_buffer *m,
             sl_buffer *v, float lr, float beta1, float beta2, float eps, float weight_decay,
             int64_t t)
{
    return adam_common("sl_adamw", true, dev, n, param, grad, m, v, lr, beta1, beta2, eps,
                       weight_decay, t);
}

int sl_axpy(sl_device *dev, size_t n, float alpha, sl_buffer *x, sl_buffer *y)
{
    static const char *K = "sl_axpy";
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_arg(K, "x", dev, x, n));
    SL_TRY(sl__check_arg(K, "y", dev, y, n));
    if (n == 0) return SL_OK;
    return dev->ops->axpy(dev, n, alpha, x, y);
}

int sl_scale(sl_device *dev, size_t n, float alpha, sl_buffer *x)
{
    static const char *K = "sl_scale";
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_arg(K, "x", dev, x, n));
    if (n == 0) return SL_OK;
    return dev->ops->scale(dev, n, alpha, x);
}

int sl_fill(sl_device *dev, size_t n, float value, sl_buffer *x)
{
    static const char *K = "sl_fill";
    SL_TRY(sl__check_dev(K, dev));
    SL_TRY(sl__check_arg(K, "x", dev, x, n));
    if (n == 0) return SL_OK;
    return dev->ops->fill(dev, n, value, x);
}
