/* Internals shared by the Vulkan backend's files. Nothing outside backends/vulkan includes this.
 *
 *   device.c    the loader, the instance, physical devices, open and close
 *   dispatch.c  memory, command batches, kernel dispatch, buffers and events
 *   kernels.c   the shader table, pipelines, the stage-kernel entry points and the backend table
 *   transformer.c  layer norm, embedding, causal softmax, the strided copy, batched GEMM and the
 *                  sum of squares
 *
 * Execution model: one compute queue per device. Kernels and device copies are recorded into one
 * command buffer (a "batch") with a compute/transfer memory barrier between commands, which keeps
 * the in-order semantics of backends/backend.h without a host wait per kernel; the batch is
 * submitted and waited for by finish, upload, download, an event wait, or when its descriptor pool
 * runs out. Buffers live in device-local memory; where that memory is also host-visible (CPU
 * devices, integrated GPUs) uploads and downloads are plain copies through a persistent mapping,
 * elsewhere they go through a host-visible staging buffer.
 *
 * Every file includes this header before any Vulkan header, so VK_NO_PROTOTYPES holds everywhere:
 * the loader is opened at run time and its entry points are the sl__vk* pointers below. */
#ifndef SL_VULKAN_IMPL_H
#define SL_VULKAN_IMPL_H

#define VK_NO_PROTOTYPES
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <vulkan/vulkan.h>

#include "backends/backend_impl.h"
#include "backends/vulkan/vulkan_backend.h"

/* ------------------------------------------------------------------------------------------------
 * Loader entry points, resolved through vkGetInstanceProcAddr */

#define VK_GLOBAL_FNS(X)                                                                           \
    X(vkCreateInstance)                                                                            \
    X(vkEnumerateInstanceLayerProperties)                                                          \
    X(vkEnumerateInstanceExtensionProperties)

#define VK_INSTANCE_FNS(X)                                                                         \
    X(vkEnumeratePhysicalDevices)                                                                  \
    X(vkGetPhysicalDeviceProperties)                                                               \
    X(vkGetPhysicalDeviceProperties2)                                                              \
    X(vkGetPhysicalDeviceMemoryProperties)                                                         \
    X(vkGetPhysicalDeviceFormatProperties)                                                         \
    X(vkCreateBufferView)                                                                          \
    X(vkDestroyBufferView)                                                                         \
    X(vkGetPhysicalDeviceQueueFamilyProperties)                                                    \
    X(vkEnumerateDeviceExtensionProperties)                                                        \
    X(vkCreateDevice)                                                                              \
    X(vkDestroyDevice)                                                                             \
    X(vkGetDeviceQueue)                                                                            \
    X(vkDeviceWaitIdle)                                                                            \
    X(vkCreateBuffer)                                                                              \
    X(vkDestroyBuffer)                                                                             \
    X(vkGetBufferMemoryRequirements)                                                               \
    X(vkAllocateMemory)                                                                            \
    X(vkFreeMemory)                                                                                \
    X(vkBindBufferMemory)                                                                          \
    X(vkMapMemory)                                                                                 \
    X(vkCreateShaderModule)                                                                        \
    X(vkDestroyShaderModule)                                                                       \
    X(vkCreateDescriptorSetLayout)                                                                 \
    X(vkDestroyDescriptorSetLayout)                                                                \
    X(vkCreatePipelineLayout)                                                                      \
    X(vkDestroyPipelineLayout)                                                                     \
    X(vkCreateComputePipelines)                                                                    \
    X(vkDestroyPipeline)                                                                           \
    X(vkCreateDescriptorPool)                                                                      \
    X(vkDestroyDescriptorPool)                                                                     \
    X(vkResetDescriptorPool)                                                                       \
    X(vkAllocateDescriptorSets)                                                                    \
    X(vkUpdateDescriptorSets)                                                                      \
    X(vkCreateCommandPool)                                                                         \
    X(vkDestroyCommandPool)                                                                        \
    X(vkResetCommandPool)                                                                          \
    X(vkAllocateCommandBuffers)                                                                    \
    X(vkBeginCommandBuffer)                                                                        \
    X(vkEndCommandBuffer)                                                                          \
    X(vkCmdBindPipeline)                                                                           \
    X(vkCmdBindDescriptorSets)                                                                     \
    X(vkCmdPushConstants)                                                                          \
    X(vkCmdDispatch)                                                                               \
    X(vkCmdPipelineBarrier)                                                                        \
    X(vkCmdCopyBuffer)                                                                             \
    X(vkCmdWriteTimestamp)                                                                         \
    X(vkCmdResetQueryPool)                                                                         \
    X(vkCreateQueryPool)                                                                           \
    X(vkDestroyQueryPool)                                                                          \
    X(vkGetQueryPoolResults)                                                                       \
    X(vkQueueSubmit)                                                                               \
    X(vkCreateFence)                                                                               \
    X(vkDestroyFence)                                                                              \
    X(vkWaitForFences)                                                                             \
    X(vkResetFences)

/* The entry points, loaded by device.c: sl__vkCreateBuffer is vkCreateBuffer, and so on. The
 * prefix keeps these pointers from clashing with the loader's own exported symbols. */
#define SL__VK_DECLARE_FN(name) extern PFN_##name sl__##name;
VK_GLOBAL_FNS(SL__VK_DECLARE_FN)
VK_INSTANCE_FNS(SL__VK_DECLARE_FN)
#undef SL__VK_DECLARE_FN

/* Maps a failed VkResult to a status and records "<what> failed: VK_ERROR_...". */
int sl__vk_fail(VkResult r, const char *what);

#define VK_TRY(call, what)                                                                         \
    do {                                                                                           \
        VkResult vk_try_r_ = (call);                                                               \
        if (vk_try_r_ != VK_SUCCESS) return sl__vk_fail(vk_try_r_, what);                          \
    } while (0)

/* ------------------------------------------------------------------------------------------------
 * The kernels: one row per pipeline, X(ID, shader file stem, bindings, push-constant bytes, texel
 * binding mask). The activation _tex kernels appear once per activation, which each pipeline
 * takes as a specialization constant. kernels.c turns the rows into sl__vk_kernels with the
 * SPIR-V that backends/vulkan/CMakeLists.txt embeds as sl__spv_<stem>. */

#define SL_KERNELS(X)                                                                              \
    X(FILL, fill, 1, 12, 0)                                                                        \
    X(SCALE, scale, 1, 12, 0)                                                                      \
    X(AXPY, axpy, 2, 12, 0)                                                                        \
    X(BIAS_ADD, bias_add, 2, 12, 0)                                                                \
    X(BIAS_GRAD, bias_grad, 2, 16, 0)                                                              \
    X(ACT_FWD, act_forward, 2, 12, 0)                                                              \
    X(ACT_BWD, act_backward, 3, 12, 0)                                                             \
    X(GELU_BWD_Y, gelu_backward, 4, 8, 0)                                                          \
    X(XENT, softmax_xent, 4, 16, 0)                                                                \
    X(MSE, mse, 4, 16, 0)                                                                          \
    X(SGD, sgd, 3, 24, 0)                                                                          \
    X(ADAM, adam, 4, 40, 0)                                                                        \
    X(GEMM, gemm, 4, 92, 0)                                                                        \
    X(GEMM_TEX, gemm_tex, 5, 36, 0x1B)                                                             \
    X(PEAK, peak, 1, 16, 0)                                                                        \
    X(AXPY_TEX, axpy_tex, 3, 12, 0x3)                                                              \
    X(SCALE_TEX, scale_tex, 2, 12, 0x1)                                                            \
    X(ACT_FWD_TEX_0, act_forward_tex, 2, 12, 0x1)                                                  \
    X(ACT_FWD_TEX_1, act_forward_tex, 2, 12, 0x1)                                                  \
    X(ACT_FWD_TEX_2, act_forward_tex, 2, 12, 0x1)                                                  \
    X(ACT_FWD_TEX_3, act_forward_tex, 2, 12, 0x1)                                                  \
    X(ACT_FWD_TEX_4, act_forward_tex, 2, 12, 0x1)                                                  \
    X(ACT_BWD_TEX_0, act_backward_tex, 3, 12, 0x3)                                                 \
    X(ACT_BWD_TEX_1, act_backward_tex, 3, 12, 0x3)                                                 \
    X(ACT_BWD_TEX_2, act_backward_tex, 3, 12, 0x3)                                                 \
    X(ACT_BWD_TEX_3, act_backward_tex, 3, 12, 0x3)                                                 \
    X(ACT_BWD_TEX_4, act_backward_tex, 3, 12, 0x3)                                                 \
    X(SGD_TEX, sgd_tex, 5, 24, 0x7)                                                                \
    X(ADAM_TEX, adam_tex, 7, 40, 0xF)                                                              \
    X(LN_FWD, layernorm_forward, 6, 12, 0)                                                         \
    X(LN_PARAMS, layernorm_params, 6, 12, 0)                                                       \
    X(LN_DX, layernorm_dx, 6, 12, 0)                                                               \
    X(EMB_FWD, embedding_forward, 4, 20, 0)                                                        \
    X(EMB_DWTE, embedding_dwte, 3, 16, 0)                                                          \
    X(EMB_DWPE, embedding_dwpe, 2, 16, 0)                                                          \
    X(CSM_FWD, causal_softmax_forward, 2, 16, 0)                                                   \
    X(CSM_BWD, causal_softmax_backward, 3, 16, 0)                                                  \
    X(COPY_STRIDED, copy_strided, 2, 60, 0)                                                        \
    X(SUM_SQUARES, sum_squares, 2, 20, 0)

enum {
#define KERNEL_ENUM(id, name, nbind, push, texel) K_##id,
    SL_KERNELS(KERNEL_ENUM)
#undef KERNEL_ENUM
        K_COUNT
};

/* One row of the kernel table (kernels.c). */
struct sl__vk_kernel_desc {
    const char *name;
    const unsigned char *spv;
    const size_t *spv_size;
    uint32_t nbind;     /* storage-buffer bindings 0..nbind-1 */
    uint32_t push_size; /* bytes of push constants; the first word is the work-group base */
    uint32_t texel;     /* bit i set: binding i is a uniform texel buffer, else a storage buffer */
};
extern const struct sl__vk_kernel_desc sl__vk_kernels[K_COUNT];

#define MAX_BINDINGS  7
#define POOL_SETS     256 /* descriptor sets per batch before the batch is submitted */
#define STAGING_BYTES ((VkDeviceSize)16 << 20)

/* ------------------------------------------------------------------------------------------------
 * Devices and buffers */

struct sl__vk_pipeline {
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipeline pipe;
};

struct sl__vk_device {
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t family;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem;
    bool unified; /* device memory is host-visible and cheap to read: map instead of staging */
    uint32_t wg;  /* work-group size of the elementwise kernels */
    uint32_t gemm_tm, gemm_tn4, gemm_wg;
    bool gemm_tex; /* GEMM reads A and B through texel buffers (gemm_tex.comp) where they fit */
    bool elem_tex; /* elementwise kernels read through rgba32f texel views (the *_tex.comp) */
    uint32_t peak_chains; /* independent vec4 FMA chains per invocation of the peak kernel */
    uint32_t ts_bits;
    uint32_t max_groups[3]; /* maxComputeWorkGroupCount (SLUICE_VK_MAX_GROUPS caps them) */
    struct sl__vk_pipeline k[K_COUNT];

    VkCommandPool cmd_pool;
    VkCommandBuffer cb;
    VkFence fence;
    VkDescriptorPool desc_pool;
    bool recording;
    bool need_barrier; /* a command was recorded since the last barrier */
    uint32_t sets_used;
    uint64_t batch;      /* serial of the batch being recorded */
    VkBufferView *views; /* texel-buffer views the batch uses, destroyed once it has run */
    size_t n_views, cap_views;

    VkBuffer staging;
    VkDeviceMemory staging_mem;
    void *staging_map;

    sl_buffer *partials; /* the sum of squares' per-work-group sums, made on first use */
};

struct sl__vk_buffer {
    VkBuffer buf;
    VkDeviceMemory mem;
    void *map; /* persistent mapping where the memory is host-visible */
    VkDeviceSize size;
    VkBufferView view4; /* rgba32f view of the whole buffer where elem_tex and it fits, else null */
};

#define D(dev)  ((struct sl__vk_device *)(dev)->impl)
#define VB(buf) ((struct sl__vk_buffer *)(buf)->impl)

static inline uint32_t div_up(size_t n, uint32_t d)
{
    return (uint32_t)((n + d - 1) / d);
}

/* The bits of a float, for push constants. */
static inline uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* gemm.comp's push constants (gemm_tex.comp reads the first nine) for a batch of views, the z
 * base 0 (push[12]). A stride is only set for batch > 1 and a group stride for several groups,
 * where each lies within the bound range. */
#define SL__VK_GEMM_PUSH 23
static inline void sl__vk_gemm_push(uint32_t push[SL__VK_GEMM_PUSH], size_t m, size_t n, size_t k,
                                    bool trans_a, bool trans_b, float alpha, float beta,
                                    const sl_gemm_view *a, const sl_gemm_view *b,
                                    const sl_gemm_view *c, size_t batch)
{
    bool many = batch > 1, grouped = c->group && c->group < batch;
    const uint32_t words[SL__VK_GEMM_PUSH] = {0,
                                              0,
                                              (uint32_t)m,
                                              (uint32_t)n,
                                              (uint32_t)k,
                                              trans_a,
                                              trans_b,
                                              f2u(alpha),
                                              f2u(beta),
                                              many ? (uint32_t)a->stride : 0,
                                              many ? (uint32_t)b->stride : 0,
                                              many ? (uint32_t)c->stride : 0,
                                              0,
                                              (uint32_t)a->ld,
                                              (uint32_t)b->ld,
                                              (uint32_t)c->ld,
                                              (uint32_t)a->offset,
                                              (uint32_t)b->offset,
                                              (uint32_t)c->offset,
                                              grouped ? (uint32_t)c->group : 0,
                                              grouped ? (uint32_t)a->group_stride : 0,
                                              grouped ? (uint32_t)b->group_stride : 0,
                                              grouped ? (uint32_t)c->group_stride : 0};
    memcpy(push, words, sizeof words);
}

/* ------------------------------------------------------------------------------------------------
 * device.c */

int sl__vk_enumerate(sl_device_info *infos, size_t cap, size_t *count);
int sl__vk_open(sl_device *dev);
void sl__vk_close(sl_device *dev);

/* ------------------------------------------------------------------------------------------------
 * dispatch.c */

/* A buffer of `size` bytes: device-local (mapped where the device memory is host-visible), or
 * with `host`, host-visible staging memory. */
int sl__vk_create_buffer(struct sl__vk_device *d, VkDeviceSize size, bool host,
                         struct sl__vk_buffer *out);
void sl__vk_destroy_buffer(struct sl__vk_device *d, struct sl__vk_buffer *b);

/* Starts recording a batch unless one is being recorded. */
int sl__vk_begin_batch(struct sl__vk_device *d);
/* Submits the batch being recorded and waits for it; afterwards the device is idle. */
int sl__vk_flush(struct sl__vk_device *d);
int sl__vk_finish(sl_device *dev);

/* Records kernel `id` over groups_x * groups_y * groups_z work-groups with `bufs` bound in order
 * (and `views` at its texel bindings). Launches beyond maxComputeWorkGroupCount in x and y are
 * split; push[0] (and push[1] for 2-D kernels) carry the work-group base of each part. groups_z
 * must be within the z limit (the caller splits z and passes its base). */
int sl__vk_record_kernel_views(struct sl__vk_device *d, int id, sl_buffer *const *bufs,
                               const VkBufferView *views, uint32_t *push, uint32_t groups_x,
                               uint32_t groups_y, uint32_t groups_z);
int sl__vk_record_kernel(struct sl__vk_device *d, int id, sl_buffer *const *bufs, uint32_t *push,
                         uint32_t groups_x, uint32_t groups_y);
/* A texel-buffer view of the first `bytes` of buf, destroyed when the current batch has run. */
int sl__vk_batch_view(struct sl__vk_device *d, sl_buffer *buf, VkFormat format, size_t bytes,
                      VkBufferView *out);
/* An elementwise kernel over n items (one invocation each). */
int sl__vk_run_1d(sl_device *dev, int id, sl_buffer *const *bufs, uint32_t *push, size_t n);
/* A *_tex.comp kernel over n elements, four per invocation, its texel bindings reading the
 * buffers' rgba32f views. Returns SL_EUNSUPPORTED without recording anything where the device
 * reads storage buffers instead or a buffer has no view (too large for one); the caller then
 * runs the storage-buffer kernel. */
int sl__vk_run_tex(sl_device *dev, int id, sl_buffer *const *bufs, uint32_t *push, size_t n);

int sl__vk_buffer_alloc(sl_buffer *buf);
void sl__vk_buffer_free(sl_buffer *buf);
int sl__vk_upload(sl_buffer *dst, size_t offset, const void *src, size_t bytes);
int sl__vk_download(sl_buffer *src, size_t offset, void *dst, size_t bytes);
int sl__vk_copy(sl_buffer *dst, size_t dst_offset, sl_buffer *src, size_t src_offset, size_t bytes);
int sl__vk_event_record(sl_device *dev, sl_event *ev);
int sl__vk_event_wait(sl_event *ev);
int sl__vk_event_elapsed_ms(sl_event *start, sl_event *end, double *ms);
void sl__vk_event_free(sl_event *ev);

/* ------------------------------------------------------------------------------------------------
 * kernels.c */

/* Creates the pipeline of every kernel in the table for an opened device, with the work-group
 * sizes and GEMM tile already chosen in `d`. */
int sl__vk_create_pipelines(struct sl__vk_device *d);
/* Destroys whatever sl__vk_create_pipelines created (also after it failed part-way). */
void sl__vk_destroy_pipelines(struct sl__vk_device *d);

/* ------------------------------------------------------------------------------------------------
 * transformer.c: the transformer kernels, for the table in kernels.c */

int sl__vk_sum_squares(sl_device *dev, size_t n, sl_buffer *x, sl_buffer *out, size_t at);
int sl__vk_layernorm_forward(sl_device *dev, size_t rows, size_t cols, sl_buffer *x,
                             sl_buffer *weight, sl_buffer *bias, sl_buffer *y, sl_buffer *mean,
                             sl_buffer *rstd);
int sl__vk_layernorm_backward(sl_device *dev, size_t rows, size_t cols, sl_buffer *dy, sl_buffer *x,
                              sl_buffer *mean, sl_buffer *rstd, sl_buffer *weight, sl_buffer *dx,
                              sl_buffer *dweight, sl_buffer *dbias);
int sl__vk_embedding_forward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                             sl_buffer *tokens, sl_buffer *wte, sl_buffer *wpe, sl_buffer *out);
int sl__vk_embedding_backward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                              sl_buffer *tokens, sl_buffer *dout, sl_buffer *dwte, sl_buffer *dwpe);
int sl__vk_causal_softmax_forward(sl_device *dev, size_t heads, size_t seq, float scale,
                                  sl_buffer *s, sl_buffer *p);
int sl__vk_causal_softmax_backward(sl_device *dev, size_t heads, size_t seq, float scale,
                                   sl_buffer *p, sl_buffer *dp, sl_buffer *ds);
int sl__vk_copy_strided(sl_device *dev, const size_t shape[4], sl_buffer *src, size_t src_offset,
                        const size_t src_strides[4], sl_buffer *dst, size_t dst_offset,
                        const size_t dst_strides[4]);
int sl__vk_gemm_batched(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                        float alpha, const sl_gemm_view *a, const sl_gemm_view *b, float beta,
                        const sl_gemm_view *c, size_t batch);
/* Frees the device's sum-of-squares scratch (at close). */
void sl__vk_free_partials(sl_device *dev);

#endif
