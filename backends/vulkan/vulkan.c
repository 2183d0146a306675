/* The Vulkan backend: SPIR-V compute shaders (the .comp files of kernels/vulkan/, embedded at build
 * time) on every Vulkan physical device, CPU drivers such as Mesa's lavapipe included.
 *
 * The loader is opened at run time (dlopen), so a machine without Vulkan still runs the other
 * backends: enumerate() then reports the backend unavailable with the reason.
 *
 * Execution model: one compute queue per device. Kernels and device copies are recorded into one
 * command buffer (a "batch") with a compute/transfer memory barrier between commands, which keeps
 * the in-order semantics of backends/backend.h without a host wait per kernel; the batch is
 * submitted and waited for by finish, upload, download, an event wait, or when its descriptor pool
 * runs out. Buffers live in device-local memory; where that memory is also host-visible (CPU
 * devices, integrated GPUs) uploads and downloads are plain copies through a persistent mapping,
 * elsewhere they go through a host-visible staging buffer. */
#define _GNU_SOURCE
#define VK_NO_PROTOTYPES
#include "backends/vulkan/vulkan_backend.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vulkan/vulkan.h>

#include "backends/backend_impl.h"

/* ------------------------------------------------------------------------------------------------
 * Loader entry points, resolved through vkGetInstanceProcAddr */

#define VK_GLOBAL_FNS(X)                                                                           \
    X(vkCreateInstance)                                                                            \
    X(vkEnumerateInstanceLayerProperties)                                                          \
    X(vkEnumerateInstanceExtensionProperties)

#define VK_INSTANCE_FNS(X)                                                                         \
    X(vkDestroyInstance)                                                                           \
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
    X(vkUnmapMemory)                                                                               \
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

#define DECLARE_FN(name) static PFN_##name name;
VK_GLOBAL_FNS(DECLARE_FN)
VK_INSTANCE_FNS(DECLARE_FN)
#undef DECLARE_FN
static PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
static PFN_vkEnumerateInstanceVersion vkEnumerateInstanceVersion;
static PFN_vkCreateDebugUtilsMessengerEXT vkCreateDebugUtilsMessengerEXT;

/* The name of a VkResult, for messages ("VK_ERROR_OUT_OF_DEVICE_MEMORY"). */
static const char *vk_result_name(VkResult r)
{
#define R(x)                                                                                       \
    {                                                                                              \
        x, #x                                                                                      \
    }
    static const struct {
        VkResult r;
        const char *name;
    } names[] = {R(VK_SUCCESS),
                 R(VK_NOT_READY),
                 R(VK_TIMEOUT),
                 R(VK_EVENT_SET),
                 R(VK_EVENT_RESET),
                 R(VK_INCOMPLETE),
                 R(VK_ERROR_OUT_OF_HOST_MEMORY),
                 R(VK_ERROR_OUT_OF_DEVICE_MEMORY),
                 R(VK_ERROR_INITIALIZATION_FAILED),
                 R(VK_ERROR_DEVICE_LOST),
                 R(VK_ERROR_MEMORY_MAP_FAILED),
                 R(VK_ERROR_LAYER_NOT_PRESENT),
                 R(VK_ERROR_EXTENSION_NOT_PRESENT),
                 R(VK_ERROR_FEATURE_NOT_PRESENT),
                 R(VK_ERROR_INCOMPATIBLE_DRIVER),
                 R(VK_ERROR_TOO_MANY_OBJECTS),
                 R(VK_ERROR_FORMAT_NOT_SUPPORTED),
                 R(VK_ERROR_FRAGMENTED_POOL),
                 R(VK_ERROR_UNKNOWN),
                 R(VK_ERROR_OUT_OF_POOL_MEMORY),
                 R(VK_ERROR_INVALID_EXTERNAL_HANDLE),
                 R(VK_ERROR_FRAGMENTATION),
                 R(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS),
                 R(VK_PIPELINE_COMPILE_REQUIRED),
                 R(VK_ERROR_INVALID_SHADER_NV)};
#undef R
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++)
        if (names[i].r == r) return names[i].name;
    return "VK_RESULT_UNKNOWN";
}

/* Maps a failed VkResult to a status and records "<what> failed: VK_ERROR_...". */
static int vk_fail(VkResult r, const char *what)
{
    int st = SL_EDEVICE;
    if (r == VK_ERROR_OUT_OF_HOST_MEMORY || r == VK_ERROR_OUT_OF_DEVICE_MEMORY) st = SL_ENOMEM;
    return sl_fail(st, "vulkan: %s failed: %s (%d)", what, vk_result_name(r), (int)r);
}

#define VK_TRY(call, what)                                                                         \
    do {                                                                                           \
        VkResult vk_try_r_ = (call);                                                               \
        if (vk_try_r_ != VK_SUCCESS) return vk_fail(vk_try_r_, what);                              \
    } while (0)

/* ------------------------------------------------------------------------------------------------
 * Embedded SPIR-V (generated by backends/vulkan/CMakeLists.txt) and the kernel table */

#define SL_KERNELS(X)                                                                              \
    X(FILL, fill, 1, 12, 0)                                                                        \
    X(SCALE, scale, 1, 12, 0)                                                                      \
    X(AXPY, axpy, 2, 12, 0)                                                                        \
    X(BIAS_ADD, bias_add, 2, 12, 0)                                                                \
    X(BIAS_GRAD, bias_grad, 2, 16, 0)                                                              \
    X(ACT_FWD, act_forward, 2, 12, 0)                                                              \
    X(ACT_BWD, act_backward, 3, 12, 0)                                                             \
    X(XENT, softmax_xent, 4, 16, 0)                                                                \
    X(MSE, mse, 4, 16, 0)                                                                          \
    X(SGD, sgd, 3, 24, 0)                                                                          \
    X(ADAM, adam, 4, 36, 0)                                                                        \
    X(GEMM, gemm, 4, 36, 0)                                                                        \
    X(GEMM_TEX, gemm_tex, 5, 36, 0x1B)                                                             \
    X(PEAK, peak, 1, 16, 0)                                                                        \
    X(AXPY_TEX, axpy_tex, 3, 12, 0x3)                                                              \
    X(SCALE_TEX, scale_tex, 2, 12, 0x1)                                                            \
    X(ACT_FWD_TEX_0, act_forward_tex, 2, 12, 0x1)                                                  \
    X(ACT_FWD_TEX_1, act_forward_tex, 2, 12, 0x1)                                                  \
    X(ACT_FWD_TEX_2, act_forward_tex, 2, 12, 0x1)                                                  \
    X(ACT_FWD_TEX_3, act_forward_tex, 2, 12, 0x1)                                                  \
    X(ACT_BWD_TEX_0, act_backward_tex, 3, 12, 0x3)                                                 \
    X(ACT_BWD_TEX_1, act_backward_tex, 3, 12, 0x3)                                                 \
    X(ACT_BWD_TEX_2, act_backward_tex, 3, 12, 0x3)                                                 \
    X(ACT_BWD_TEX_3, act_backward_tex, 3, 12, 0x3)                                                 \
    X(SGD_TEX, sgd_tex, 5, 24, 0x7)                                                                \
    X(ADAM_TEX, adam_tex, 7, 36, 0xF)

#define DECLARE_SPV(id, name, nbind, push, texel)                                                  \
    extern const unsigned char sl_spv_##name[];                                                    \
    extern const size_t sl_spv_##name##_size;
SL_KERNELS(DECLARE_SPV)
#undef DECLARE_SPV

enum {
#define KERNEL_ENUM(id, name, nbind, push, texel) K_##id,
    SL_KERNELS(KERNEL_ENUM)
#undef KERNEL_ENUM
        K_COUNT
};

static const struct kernel_desc {
    const char *name;
    const unsigned char *spv;
    const size_t *spv_size;
    uint32_t nbind;     /* storage-buffer bindings 0..nbind-1 */
    uint32_t push_size; /* bytes of push constants; the first word is the work-group base */
    uint32_t texel;     /* bit i set: binding i is a uniform texel buffer, else a storage buffer */
} kernel_descs[K_COUNT] = {
#define KERNEL_DESC(id, name, nbind, push, texel)                                                  \
    {#name, sl_spv_##name, &sl_spv_##name##_size, nbind, push, texel},
    SL_KERNELS(KERNEL_DESC)
#undef KERNEL_DESC
};

#define MAX_BINDINGS  7
#define POOL_SETS     256 /* descriptor sets per batch before the batch is submitted */
#define STAGING_BYTES ((VkDeviceSize)16 << 20)

/* ------------------------------------------------------------------------------------------------
 * Process-wide state: the loader, the instance and the physical devices */

#define MAX_PHYS 32

static struct {
    pthread_once_t once;
    int status;
    char error[1024];
    void *lib;
    VkInstance instance;
    uint32_t api; /* the instance's API version */
    bool validation;
    VkDebugUtilsMessengerEXT messenger;
    uint32_t count; /* usable devices */
    VkPhysicalDevice phys[MAX_PHYS];
    uint32_t family[MAX_PHYS]; /* the compute queue family */
    sl_device_info infos[MAX_PHYS];
} g = {.once = PTHREAD_ONCE_INIT};

static atomic_uint_fast64_t validation_count;

uint64_t sl_vulkan_validation_messages(void)
{
    return (uint64_t)atomic_load(&validation_count);
}

int sl_vulkan_validation_enabled(void)
{
    const char *v = getenv("SLUICE_VK_VALIDATION");
    return v && v[0] && strcmp(v, "0") != 0;
}

static VKAPI_ATTR VkBool32 VKAPI_CALL debug_callback(
    VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT types,
    const VkDebugUtilsMessengerCallbackDataEXT *data, void *user)
{
    (void)types;
    (void)user;
    if (severity & (VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                    VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT)) {
        atomic_fetch_add(&validation_count, 1);
        sl_log(SL_LOG_ERROR, "vulkan validation: %s",
               data && data->pMessage ? data->pMessage : "(no message)");
    }
    return VK_FALSE;
}

static bool has_extension(const VkExtensionProperties *exts, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(exts[i].extensionName, name)) return true;
    return false;
}

static const char *vendor_name(uint32_t id, char *buf, size_t cap)
{
    switch (id) {
    case 0x10DE:
        return "NVIDIA";
    case 0x1002:
        return "AMD";
    case 0x8086:
        return "Intel";
    case 0x10005:
        return "Mesa";
    case 0x13B5:
        return "ARM";
    case 0x5143:
        return "Qualcomm";
    case 0x106B:
        return "Apple";
    default:
        snprintf(buf, cap, "0x%04x", id);
        return buf;
    }
}

static int load_loader(void)
{
    const char *path = getenv("SLUICE_VK_LOADER");
    if (!path || !path[0]) path = "libvulkan.so.1";
    g.lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!g.lib)
        return sl_fail(SL_EUNAVAILABLE,
                       "the Vulkan loader %s could not be opened (%s); install it (Debian: "
                       "libvulkan1) and a driver (mesa-vulkan-drivers gives the lavapipe CPU "
                       "device)",
                       path, dlerror());
    *(void **)&vkGetInstanceProcAddr = dlsym(g.lib, "vkGetInstanceProcAddr");
    if (!vkGetInstanceProcAddr)
        return sl_fail(SL_EUNAVAILABLE, "%s has no vkGetInstanceProcAddr: not a Vulkan loader",
                       path);
#define LOAD_GLOBAL(name)                                                                          \
    *(void **)&name = (void *)vkGetInstanceProcAddr(NULL, #name);                                  \
    if (!name) return sl_fail(SL_EUNAVAILABLE, "the Vulkan loader lacks %s", #name);
    VK_GLOBAL_FNS(LOAD_GLOBAL)
#undef LOAD_GLOBAL
    *(void **)&vkEnumerateInstanceVersion =
        (void *)vkGetInstanceProcAddr(NULL, "vkEnumerateInstanceVersion");
    return SL_OK;
}

static int create_instance(void)
{
    uint32_t loader_api = VK_API_VERSION_1_0;
    if (vkEnumerateInstanceVersion) vkEnumerateInstanceVersion(&loader_api);
    if (loader_api < VK_API_VERSION_1_1)
        return sl_fail(SL_EUNAVAILABLE,
                       "the Vulkan loader supports Vulkan %u.%u; sluice needs 1.1 or newer",
                       VK_API_VERSION_MAJOR(loader_api), VK_API_VERSION_MINOR(loader_api));
    g.api = loader_api >= VK_API_VERSION_1_2 ? VK_API_VERSION_1_2 : VK_API_VERSION_1_1;

    const char *exts[4];
    uint32_t next = 0;
    VkInstanceCreateFlags flags = 0;
    uint32_t n_ext = 0;
    vkEnumerateInstanceExtensionProperties(NULL, &n_ext, NULL);
    VkExtensionProperties *ext_props = calloc(n_ext ? n_ext : 1, sizeof *ext_props);
    if (!ext_props) return sl_fail(SL_ENOMEM, "vulkan: out of host memory");
    vkEnumerateInstanceExtensionProperties(NULL, &n_ext, ext_props);
    /* Portability drivers (MoltenVK) are listed only when asked for; sluice hides no device. */
    if (has_extension(ext_props, n_ext, "VK_KHR_portability_enumeration")) {
        exts[next++] = "VK_KHR_portability_enumeration";
        flags |= 0x00000001; /* VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR */
    }

    const char *layers[1];
    uint32_t n_layers = 0;
    g.validation = sl_vulkan_validation_enabled();
    if (g.validation) {
        uint32_t n = 0;
        vkEnumerateInstanceLayerProperties(&n, NULL);
        VkLayerProperties *props = calloc(n ? n : 1, sizeof *props);
        if (!props) {
            free(ext_props);
            return sl_fail(SL_ENOMEM, "vulkan: out of host memory");
        }
        vkEnumerateInstanceLayerProperties(&n, props);
        bool found = false;
        for (uint32_t i = 0; i < n; i++)
            found |= !strcmp(props[i].layerName, "VK_LAYER_KHRONOS_validation");
        free(props);
        if (!found || !has_extension(ext_props, n_ext, VK_EXT_DEBUG_UTILS_EXTENSION_NAME)) {
            free(ext_props);
            return sl_fail(SL_EUNAVAILABLE,
                           "SLUICE_VK_VALIDATION=1 but VK_LAYER_KHRONOS_validation or "
                           "VK_EXT_debug_utils is not installed (Debian: vulkan-validationlayers)");
        }
        layers[n_layers++] = "VK_LAYER_KHRONOS_validation";
        exts[next++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
    }
    free(ext_props);

    VkDebugUtilsMessengerCreateInfoEXT dbg = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = debug_callback,
    };
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "sluice",
        .pEngineName = "sluice",
        .apiVersion = g.api,
    };
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pNext = g.validation ? &dbg : NULL,
        .flags = flags,
        .pApplicationInfo = &app,
        .enabledLayerCount = n_layers,
        .ppEnabledLayerNames = layers,
        .enabledExtensionCount = next,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = vkCreateInstance(&ci, NULL, &g.instance);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
        return sl_fail(SL_EUNAVAILABLE,
                       "no Vulkan driver is installed (vkCreateInstance: "
                       "VK_ERROR_INCOMPATIBLE_DRIVER); Debian: mesa-vulkan-drivers");
    if (r != VK_SUCCESS) return vk_fail(r, "vkCreateInstance");

#define LOAD_INSTANCE(name)                                                                        \
    *(void **)&name = (void *)vkGetInstanceProcAddr(g.instance, #name);                            \
    if (!name) return sl_fail(SL_EUNAVAILABLE, "the Vulkan loader lacks %s", #name);
    VK_INSTANCE_FNS(LOAD_INSTANCE)
#undef LOAD_INSTANCE
    if (g.validation) {
        *(void **)&vkCreateDebugUtilsMessengerEXT =
            (void *)vkGetInstanceProcAddr(g.instance, "vkCreateDebugUtilsMessengerEXT");
        if (!vkCreateDebugUtilsMessengerEXT)
            return sl_fail(SL_EUNAVAILABLE, "vulkan: VK_EXT_debug_utils has no entry points");
        VK_TRY(vkCreateDebugUtilsMessengerEXT(g.instance, &dbg, NULL, &g.messenger),
               "vkCreateDebugUtilsMessengerEXT");
    }
    return SL_OK;
}

/* Fills `d` for physical device `pd`, or returns a message naming what it lacks. */
static int describe_device(VkPhysicalDevice pd, uint32_t index, sl_device_info *d, uint32_t *family)
{
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(pd, &props);
    if (props.apiVersion < VK_API_VERSION_1_1)
        return sl_fail(SL_EUNSUPPORTED, "%s supports Vulkan %u.%u; sluice needs Vulkan 1.1",
                       props.deviceName, VK_API_VERSION_MAJOR(props.apiVersion),
                       VK_API_VERSION_MINOR(props.apiVersion));
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, NULL);
    VkQueueFamilyProperties qf[16];
    nq = SL_MIN(nq, 16u);
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf);
    /* A compute-only family first (it is the dedicated compute engine on GPUs), else any. */
    uint32_t fam = UINT32_MAX;
    for (uint32_t i = 0; i < nq && fam == UINT32_MAX; i++)
        if ((qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) &&
            !(qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT))
            fam = i;
    for (uint32_t i = 0; i < nq && fam == UINT32_MAX; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) fam = i;
    if (fam == UINT32_MAX)
        return sl_fail(SL_EUNSUPPORTED, "%s has no queue with VK_QUEUE_COMPUTE_BIT",
                       props.deviceName);
    const VkPhysicalDeviceLimits *lim = &props.limits;
    if (lim->maxPushConstantsSize < 128)
        return sl_fail(SL_EUNSUPPORTED, "%s: maxPushConstantsSize %u < 128", props.deviceName,
                       lim->maxPushConstantsSize);
    if (lim->maxComputeWorkGroupInvocations < 64 || lim->maxComputeWorkGroupSize[0] < 64)
        return sl_fail(SL_EUNSUPPORTED, "%s: maxComputeWorkGroupInvocations %u < 64",
                       props.deviceName, lim->maxComputeWorkGroupInvocations);
    if (lim->maxBoundDescriptorSets < 1 || lim->maxPerStageDescriptorStorageBuffers < 4)
        return sl_fail(SL_EUNSUPPORTED, "%s: maxPerStageDescriptorStorageBuffers %u < 4",
                       props.deviceName, lim->maxPerStageDescriptorStorageBuffers);
    *family = fam;

    VkPhysicalDeviceMaintenance3Properties m3 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    VkPhysicalDeviceDriverProperties drv = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
    bool have_drv = g.api >= VK_API_VERSION_1_2 && props.apiVersion >= VK_API_VERSION_1_2;
    if (have_drv) m3.pNext = &drv;
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = &m3};
    vkGetPhysicalDeviceProperties2(pd, &p2);

    VkPhysicalDeviceMemoryProperties mem;
    vkGetPhysicalDeviceMemoryProperties(pd, &mem);
    uint64_t heap = 0;
    for (uint32_t i = 0; i < mem.memoryHeapCount; i++)
        if (mem.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
            heap = SL_MAX(heap, (uint64_t)mem.memoryHeaps[i].size);

    memset(d, 0, sizeof *d);
    snprintf(d->id, sizeof d->id, "vulkan:%u", index);
    snprintf(d->backend, sizeof d->backend, "vulkan");
    snprintf(d->name, sizeof d->name, "%s", props.deviceName);
    char vbuf[16];
    snprintf(d->vendor, sizeof d->vendor, "%s", vendor_name(props.vendorID, vbuf, sizeof vbuf));
    if (have_drv)
        snprintf(d->driver, sizeof d->driver, "%.40s %.80s", drv.driverName, drv.driverInfo);
    else
        snprintf(d->driver, sizeof d->driver, "Vulkan %u.%u, driver 0x%x",
                 VK_API_VERSION_MAJOR(props.apiVersion), VK_API_VERSION_MINOR(props.apiVersion),
                 props.driverVersion);
    switch (props.deviceType) {
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
        d->kind = SL_DEVICE_CPU;
        break;
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
        d->kind = SL_DEVICE_GPU;
        break;
    default:
        d->kind = SL_DEVICE_OTHER;
        break;
    }
    d->memory_bytes = heap;
    /* Vulkan does not say how many compute units a GPU has; a CPU driver runs on the host's
     * cores. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    d->compute_units = d->kind == SL_DEVICE_CPU && cores > 0 ? (uint32_t)cores : 0;
    d->max_alloc_bytes = m3.maxMemoryAllocationSize;
    if (heap && d->max_alloc_bytes > heap) d->max_alloc_bytes = heap;
    d->max_buffer_range = lim->maxStorageBufferRange;
    d->max_workgroup_size =
        SL_MIN(lim->maxComputeWorkGroupInvocations, lim->maxComputeWorkGroupSize[0]);
    for (int i = 0; i < 3; i++) d->max_workgroup_count[i] = lim->maxComputeWorkGroupCount[i];
    d->timestamps = qf[fam].timestampValidBits > 0 && lim->timestampPeriod > 0.0f;
    return SL_OK;
}

static void init_once(void)
{
    g.status = load_loader();
    if (g.status == SL_OK) g.status = create_instance();
    if (g.status == SL_OK) {
        uint32_t n = 0;
        VkResult r = vkEnumeratePhysicalDevices(g.instance, &n, NULL);
        VkPhysicalDevice phys[MAX_PHYS];
        n = SL_MIN(n, (uint32_t)MAX_PHYS);
        if (r == VK_SUCCESS) r = vkEnumeratePhysicalDevices(g.instance, &n, phys);
        if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
            g.status = vk_fail(r, "vkEnumeratePhysicalDevices");
        } else {
            char skipped[768] = "";
            for (uint32_t i = 0; i < n; i++) {
                int st = describe_device(phys[i], g.count, &g.infos[g.count], &g.family[g.count]);
                if (st != SL_OK) {
                    /* Listed, with what it lacks, rather than silently hidden. */
                    sl_log(SL_LOG_WARN, "vulkan: device %u not usable: %s", i, sl_last_error());
                    size_t used = strlen(skipped);
                    snprintf(skipped + used, sizeof skipped - used, "%s%s", used ? "; " : "",
                             sl_last_error());
                    continue;
                }
                g.phys[g.count++] = phys[i];
            }
            if (g.count == 0)
                g.status = sl_fail(SL_EUNAVAILABLE,
                                   "no usable Vulkan device (%u found%s%s); install a driver "
                                   "(Debian: mesa-vulkan-drivers gives lavapipe)",
                                   n, skipped[0] ? ": " : "", skipped);
        }
    }
    if (g.status != SL_OK) snprintf(g.error, sizeof g.error, "%s", sl_last_error());
}

static int vk_enumerate(sl_device_info *infos, size_t cap, size_t *count)
{
    *count = 0;
    pthread_once(&g.once, init_once);
    if (g.status != SL_OK) return sl_fail(g.status, "%s", g.error);
    size_t n = SL_MIN((size_t)g.count, cap);
    memcpy(infos, g.infos, n * sizeof *infos);
    *count = n;
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Device */

struct vk_kernel {
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipeline pipe;
};

struct vkdev {
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
    uint32_t max_groups[2]; /* maxComputeWorkGroupCount x and y (SLUICE_VK_MAX_GROUPS caps them) */
    struct vk_kernel k[K_COUNT];

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
};

struct vkbuf {
    VkBuffer buf;
    VkDeviceMemory mem;
    void *map; /* persistent mapping where the memory is host-visible */
    VkDeviceSize size;
    VkBufferView view4; /* rgba32f view of the whole buffer where elem_tex and it fits, else null */
};

#define D(dev)  ((struct vkdev *)(dev)->impl)
#define VB(buf) ((struct vkbuf *)(buf)->impl)

/* The memory type for `bits` with all of `want`, or UINT32_MAX. */
static uint32_t find_memory(const VkPhysicalDeviceMemoryProperties *mem, uint32_t bits,
                            VkMemoryPropertyFlags want)
{
    for (uint32_t i = 0; i < mem->memoryTypeCount; i++)
        if ((bits & (1u << i)) && (mem->memoryTypes[i].propertyFlags & want) == want) return i;
    return UINT32_MAX;
}

static int create_buffer(struct vkdev *d, VkDeviceSize size, bool host, struct vkbuf *out)
{
    memset(out, 0, sizeof *out);
    VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT |
                 VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VK_TRY(vkCreateBuffer(d->dev, &bci, NULL, &out->buf), "vkCreateBuffer");
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(d->dev, out->buf, &req);
    const VkMemoryPropertyFlags hv =
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    uint32_t type = UINT32_MAX;
    bool map = false;
    if (host) { /* staging: cached host memory reads back fastest */
        type = find_memory(&d->mem, req.memoryTypeBits, hv | VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
        if (type == UINT32_MAX) type = find_memory(&d->mem, req.memoryTypeBits, hv);
        map = true;
    } else if (d->unified) {
        type = find_memory(&d->mem, req.memoryTypeBits, hv | VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
        map = type != UINT32_MAX;
    }
    if (type == UINT32_MAX)
        type = find_memory(&d->mem, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    if (type == UINT32_MAX) type = find_memory(&d->mem, req.memoryTypeBits, 0);
    if (type == UINT32_MAX) {
        vkDestroyBuffer(d->dev, out->buf, NULL);
        return sl_fail(SL_EUNSUPPORTED, "vulkan: no memory type fits a storage buffer");
    }
    VkMemoryAllocateInfo mai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                                .allocationSize = req.size,
                                .memoryTypeIndex = type};
    VkResult r = vkAllocateMemory(d->dev, &mai, NULL, &out->mem);
    if (r == VK_SUCCESS) r = vkBindBufferMemory(d->dev, out->buf, out->mem, 0);
    if (r == VK_SUCCESS && map) r = vkMapMemory(d->dev, out->mem, 0, VK_WHOLE_SIZE, 0, &out->map);
    if (r != VK_SUCCESS) {
        vkDestroyBuffer(d->dev, out->buf, NULL);
        if (out->mem) vkFreeMemory(d->dev, out->mem, NULL);
        memset(out, 0, sizeof *out);
        return vk_fail(r, "allocating device memory (vkAllocateMemory)");
    }
    out->size = size;
    return SL_OK;
}

static void destroy_buffer(struct vkdev *d, struct vkbuf *b)
{
    if (b->view4) vkDestroyBufferView(d->dev, b->view4, NULL);
    if (b->buf) vkDestroyBuffer(d->dev, b->buf, NULL);
    if (b->mem) vkFreeMemory(d->dev, b->mem, NULL); /* unmaps implicitly */
    memset(b, 0, sizeof *b);
}

static int create_kernel(struct vkdev *d, int id)
{
    const struct kernel_desc *kd = &kernel_descs[id];
    struct vk_kernel *k = &d->k[id];
    VkDescriptorSetLayoutBinding binds[MAX_BINDINGS];
    for (uint32_t i = 0; i < kd->nbind; i++)
        binds[i] = (VkDescriptorSetLayoutBinding){
            .binding = i,
            .descriptorType = (kd->texel >> i) & 1 ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER
                                                   : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    VkDescriptorSetLayoutCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = kd->nbind,
        .pBindings = binds,
    };
    VK_TRY(vkCreateDescriptorSetLayout(d->dev, &dci, NULL, &k->dsl), "vkCreateDescriptorSetLayout");
    VkPushConstantRange pcr = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .size = kd->push_size};
    VkPipelineLayoutCreateInfo lci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &k->dsl,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &pcr,
    };
    VK_TRY(vkCreatePipelineLayout(d->dev, &lci, NULL, &k->layout), "vkCreatePipelineLayout");

    /* SPIR-V words must be 4-byte aligned; the embedded bytes need not be. */
    size_t size = *kd->spv_size;
    uint32_t *code = malloc(size ? size : 4);
    if (!code) return sl_fail(SL_ENOMEM, "vulkan: out of host memory");
    memcpy(code, kd->spv, size);
    VkShaderModuleCreateInfo sci = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, .codeSize = size, .pCode = code};
    VkShaderModule mod;
    VkResult r = vkCreateShaderModule(d->dev, &sci, NULL, &mod);
    free(code);
    if (r != VK_SUCCESS) {
        vk_fail(r, "vkCreateShaderModule");
        return sl_fail_context(SL_EBUILD, "shader %s.comp", kd->name);
    }

    /* Specialization: id 0 is the work-group size of every shader; GEMM takes its tile (ids 1,
     * 2), the peak kernel its chain count (id 1),
     * the texel-read activation kernels their activation (id 1). */
    uint32_t spec[3] = {d->wg, 0, 0};
    uint32_t nspec = 1;
    if (id == K_GEMM || id == K_GEMM_TEX) {
        spec[0] = d->gemm_wg;
        spec[1] = d->gemm_tm;
        spec[2] = d->gemm_tn4;
        nspec = 3;
    } else if (id == K_PEAK) {
        spec[1] = d->peak_chains;
        nspec = 2;
    } else if (id >= K_ACT_FWD_TEX_0 && id <= K_ACT_FWD_TEX_3) {
        spec[1] = (uint32_t)(id - K_ACT_FWD_TEX_0); /* enum sl_activation */
        nspec = 2;
    } else if (id >= K_ACT_BWD_TEX_0 && id <= K_ACT_BWD_TEX_3) {
        spec[1] = (uint32_t)(id - K_ACT_BWD_TEX_0);
        nspec = 2;
    }
    VkSpecializationMapEntry entries[3];
    for (uint32_t i = 0; i < nspec; i++)
        entries[i] = (VkSpecializationMapEntry){.constantID = i, .offset = 4 * i, .size = 4};
    VkSpecializationInfo si = {
        .mapEntryCount = nspec, .pMapEntries = entries, .dataSize = 4 * nspec, .pData = spec};
    VkComputePipelineCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage =
            {
                .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                .module = mod,
                .pName = "main",
                .pSpecializationInfo = &si,
            },
        .layout = k->layout,
    };
    r = vkCreateComputePipelines(d->dev, VK_NULL_HANDLE, 1, &pci, NULL, &k->pipe);
    vkDestroyShaderModule(d->dev, mod, NULL);
    if (r != VK_SUCCESS) {
        vk_fail(r, "vkCreateComputePipelines");
        return sl_fail_context(SL_EBUILD, "shader %s.comp", kd->name);
    }
    return SL_OK;
}

/* Picks the work-group sizes and GEMM tile from the device's limits. */
static void choose_tiles(struct vkdev *d, enum sl_device_kind kind)
{
    uint32_t maxwg = SL_MIN(d->props.limits.maxComputeWorkGroupInvocations,
                            d->props.limits.maxComputeWorkGroupSize[0]);
    d->wg = SL_MIN(256u, maxwg);
    if (kind == SL_DEVICE_CPU) {
        /* A CPU driver runs a work-group's invocations as SIMD lanes and loads buffers lane by
         * lane, so the FMAs per loaded float decide the speed: a 16 x 16 block gives 8. Measured
         * at 1024 on lavapipe (2 cores, SLUICE_VK_GEMM_TILE=TMxTN4xWG): 16x4 beat 8x2, 4x4 and
         * 16x2; work-groups of 16 and 64 were within the machine's noise (15-21 GFLOP/s NN). */
        d->gemm_tm = 16;
        d->gemm_tn4 = 4;
        d->gemm_wg = SL_MIN(64u, maxwg);
    } else {
        d->gemm_tm = 4;
        d->gemm_tn4 = 1;
        d->gemm_wg = SL_MIN(64u, maxwg);
    }
    /* Measured on lavapipe (LLVM 15, 2 AVX2 cores): 8 vec4 chains gave the highest figure, 45-50
     * GFLOP/s on a quiet machine (2 chains ~30). Float chains (4 to 16), x * m + a in place of
     * fma(), constant multipliers, work-groups of 64 to 256: all the same or lower; the shader's
     * throughput stays near 25-30 GFLOP/s per CPU second whatever the chain count, where a native
     * AVX2 FMA loop on the same cores makes 96, so the limit is llvmpipe's code, not the chains. */
    d->peak_chains = 8;
    d->max_groups[0] = d->props.limits.maxComputeWorkGroupCount[0];
    d->max_groups[1] = d->props.limits.maxComputeWorkGroupCount[1];
    /* Tests cap the counts to exercise split launches without huge buffers. */
    const char *cap = getenv("SLUICE_VK_MAX_GROUPS");
    if (cap && atoi(cap) > 0) {
        d->max_groups[0] = SL_MIN(d->max_groups[0], (uint32_t)atoi(cap));
        d->max_groups[1] = SL_MIN(d->max_groups[1], (uint32_t)atoi(cap));
    }
    const char *env = getenv("SLUICE_VK_GEMM_TILE");
    unsigned tm, tn4, wg;
    if (env && sscanf(env, "%ux%ux%u", &tm, &tn4, &wg) == 3 && tm >= 1 && tm <= 32 && tn4 >= 1 &&
        tn4 <= 8 && wg >= 1 && wg <= maxwg) {
        d->gemm_tm = tm;
        d->gemm_tn4 = tn4;
        d->gemm_wg = wg;
    } else if (env) {
        sl_log(SL_LOG_WARN,
               "SLUICE_VK_GEMM_TILE=%s ignored: want TMxTN4xWG with TM 1..32, "
               "TN4 1..8, WG 1..%u",
               env, maxwg);
    }
}

static void vk_close(sl_device *dev);

static int vk_open_inner(sl_device *dev, struct vkdev *d)
{
    d->phys = g.phys[dev->index];
    d->family = g.family[dev->index];
    vkGetPhysicalDeviceProperties(d->phys, &d->props);
    vkGetPhysicalDeviceMemoryProperties(d->phys, &d->mem);
    d->unified = dev->info.kind == SL_DEVICE_CPU ||
                 d->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU;
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(d->phys, &nq, NULL);
    VkQueueFamilyProperties qf[16];
    nq = SL_MIN(nq, 16u);
    vkGetPhysicalDeviceQueueFamilyProperties(d->phys, &nq, qf);
    d->ts_bits = dev->info.timestamps ? qf[d->family].timestampValidBits : 0;
    choose_tiles(d, dev->info.kind);
    /* Texel fetches are what a CPU driver vectorises; GPUs read storage buffers as fast. Both
     * formats are mandatory for uniform texel buffers, but a driver is checked, not trusted. */
    VkFormatProperties f1, f4;
    vkGetPhysicalDeviceFormatProperties(d->phys, VK_FORMAT_R32_SFLOAT, &f1);
    vkGetPhysicalDeviceFormatProperties(d->phys, VK_FORMAT_R32G32B32A32_SFLOAT, &f4);
    const char *tex_env = getenv("SLUICE_VK_GEMM_TEX");
    d->gemm_tex = (f1.bufferFeatures & VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT) &&
                  (f4.bufferFeatures & VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT) &&
                  (tex_env ? atoi(tex_env) != 0 : dev->info.kind == SL_DEVICE_CPU);
    const char *elem_env = getenv("SLUICE_VK_ELEM_TEX");
    d->elem_tex = (f4.bufferFeatures & VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT) &&
                  (elem_env ? atoi(elem_env) != 0 : dev->info.kind == SL_DEVICE_CPU);

    uint32_t n_ext = 0;
    vkEnumerateDeviceExtensionProperties(d->phys, NULL, &n_ext, NULL);
    VkExtensionProperties *exts = calloc(n_ext ? n_ext : 1, sizeof *exts);
    if (!exts) return sl_fail(SL_ENOMEM, "vulkan: out of host memory");
    vkEnumerateDeviceExtensionProperties(d->phys, NULL, &n_ext, exts);
    /* A portability driver must have its subset extension enabled. */
    const char *dev_exts[1];
    uint32_t n_dev_exts = 0;
    if (has_extension(exts, n_ext, "VK_KHR_portability_subset"))
        dev_exts[n_dev_exts++] = "VK_KHR_portability_subset";
    free(exts);

    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                   .queueFamilyIndex = d->family,
                                   .queueCount = 1,
                                   .pQueuePriorities = &prio};
    VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                              .queueCreateInfoCount = 1,
                              .pQueueCreateInfos = &qci,
                              .enabledExtensionCount = n_dev_exts,
                              .ppEnabledExtensionNames = dev_exts};
    VK_TRY(vkCreateDevice(d->phys, &dci, NULL, &d->dev), "vkCreateDevice");
    vkGetDeviceQueue(d->dev, d->family, 0, &d->queue);

    VkCommandPoolCreateInfo cpci = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                    .flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT,
                                    .queueFamilyIndex = d->family};
    VK_TRY(vkCreateCommandPool(d->dev, &cpci, NULL, &d->cmd_pool), "vkCreateCommandPool");
    VkCommandBufferAllocateInfo cbai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                        .commandPool = d->cmd_pool,
                                        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                        .commandBufferCount = 1};
    VK_TRY(vkAllocateCommandBuffers(d->dev, &cbai, &d->cb), "vkAllocateCommandBuffers");
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VK_TRY(vkCreateFence(d->dev, &fci, NULL, &d->fence), "vkCreateFence");
    VkDescriptorPoolSize ps[2] = {
        {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = POOL_SETS * MAX_BINDINGS},
        {.type = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER,
         .descriptorCount = POOL_SETS * MAX_BINDINGS}};
    VkDescriptorPoolCreateInfo dpci = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                       .maxSets = POOL_SETS,
                                       .poolSizeCount = 2,
                                       .pPoolSizes = ps};
    VK_TRY(vkCreateDescriptorPool(d->dev, &dpci, NULL, &d->desc_pool), "vkCreateDescriptorPool");
    for (int i = 0; i < K_COUNT; i++) SL_TRY(create_kernel(d, i));
    return SL_OK;
}

static int vk_open(sl_device *dev)
{
    struct vkdev *d = sl_alloc(sizeof *d);
    if (!d) return SL_ENOMEM;
    dev->impl = d;
    int st = vk_open_inner(dev, d);
    if (st != SL_OK) {
        vk_close(dev);
        return sl_fail_context(st, "opening %s (%s)", dev->info.id, dev->info.name);
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Batches: record, submit, wait */

static int begin_batch(struct vkdev *d)
{
    if (d->recording) return SL_OK;
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    VK_TRY(vkBeginCommandBuffer(d->cb, &bi), "vkBeginCommandBuffer");
    d->recording = true;
    d->need_barrier = false;
    return SL_OK;
}

static void barrier(struct vkdev *d, VkPipelineStageFlags dst_stage, VkAccessFlags dst_access)
{
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask =
                              VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = dst_access};
    vkCmdPipelineBarrier(d->cb,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         dst_stage, 0, 1, &mb, 0, NULL, 0, NULL);
}

/* Orders the next command after everything recorded before it in this batch. */
static void order_command(struct vkdev *d)
{
    if (d->need_barrier)
        barrier(d, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                    VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT);
    d->need_barrier = true;
}

/* Submits the batch being recorded and waits for it; afterwards the device is idle. */
static int flush(struct vkdev *d)
{
    if (!d->recording) return SL_OK;
    /* Make the batch's writes visible to the host's reads of mapped memory. */
    barrier(d, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
    d->recording = false;
    d->batch++;
    VkResult r = vkEndCommandBuffer(d->cb);
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &d->cb};
    if (r == VK_SUCCESS) r = vkQueueSubmit(d->queue, 1, &si, d->fence);
    if (r == VK_SUCCESS) r = vkWaitForFences(d->dev, 1, &d->fence, VK_TRUE, UINT64_MAX);
    if (r == VK_SUCCESS) r = vkResetFences(d->dev, 1, &d->fence);
    if (r == VK_SUCCESS) r = vkResetCommandPool(d->dev, d->cmd_pool, 0);
    if (r == VK_SUCCESS) r = vkResetDescriptorPool(d->dev, d->desc_pool, 0);
    d->sets_used = 0;
    for (size_t i = 0; i < d->n_views; i++) vkDestroyBufferView(d->dev, d->views[i], NULL);
    d->n_views = 0;
    if (r != VK_SUCCESS) return vk_fail(r, "running a command batch");
    return SL_OK;
}

static int vk_finish(sl_device *dev)
{
    return flush(D(dev));
}

static void vk_close(sl_device *dev)
{
    struct vkdev *d = D(dev);
    if (!d) return;
    if (d->dev) {
        if (d->recording) flush(d);
        vkDeviceWaitIdle(d->dev);
        for (size_t i = 0; i < d->n_views; i++) vkDestroyBufferView(d->dev, d->views[i], NULL);
        free(d->views);
        for (int i = 0; i < K_COUNT; i++) {
            if (d->k[i].pipe) vkDestroyPipeline(d->dev, d->k[i].pipe, NULL);
            if (d->k[i].layout) vkDestroyPipelineLayout(d->dev, d->k[i].layout, NULL);
            if (d->k[i].dsl) vkDestroyDescriptorSetLayout(d->dev, d->k[i].dsl, NULL);
        }
        if (d->staging) {
            struct vkbuf s = {.buf = d->staging, .mem = d->staging_mem};
            destroy_buffer(d, &s);
        }
        if (d->desc_pool) vkDestroyDescriptorPool(d->dev, d->desc_pool, NULL);
        if (d->fence) vkDestroyFence(d->dev, d->fence, NULL);
        if (d->cmd_pool) vkDestroyCommandPool(d->dev, d->cmd_pool, NULL);
        vkDestroyDevice(d->dev, NULL);
    }
    free(d);
    dev->impl = NULL;
}

/* Records kernel `id` over groups_x * groups_y work-groups with `bufs` bound in order. Launches
 * beyond maxComputeWorkGroupCount are split; push[0] (and push[1] for 2-D kernels) carry the
 * work-group base of each part. */
static int record_kernel_views(struct vkdev *d, int id, sl_buffer *const *bufs,
                               const VkBufferView *views, uint32_t *push, uint32_t groups_x,
                               uint32_t groups_y)
{
    const struct kernel_desc *kd = &kernel_descs[id];
    if (d->sets_used >= POOL_SETS) SL_TRY(flush(d));
    SL_TRY(begin_batch(d));
    VkDescriptorSet set;
    VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                      .descriptorPool = d->desc_pool,
                                      .descriptorSetCount = 1,
                                      .pSetLayouts = &d->k[id].dsl};
    VK_TRY(vkAllocateDescriptorSets(d->dev, &ai, &set), "vkAllocateDescriptorSets");
    d->sets_used++;
    VkDescriptorBufferInfo infos[MAX_BINDINGS];
    VkWriteDescriptorSet writes[MAX_BINDINGS];
    /* Bind as much of each buffer as one descriptor may reach; the wrapper has checked that every
     * kernel's elements lie within maxStorageBufferRange. */
    VkDeviceSize max_range = d->props.limits.maxStorageBufferRange & ~(VkDeviceSize)15;
    for (uint32_t i = 0; i < kd->nbind; i++) {
        writes[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                           .dstSet = set,
                                           .dstBinding = i,
                                           .descriptorCount = 1};
        if ((kd->texel >> i) & 1) {
            writes[i].descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER;
            writes[i].pTexelBufferView = &views[i];
            continue;
        }
        struct vkbuf *b = VB(bufs[i]);
        infos[i] = (VkDescriptorBufferInfo){
            .buffer = b->buf, .offset = 0, .range = SL_MIN(b->size, max_range)};
        writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        writes[i].pBufferInfo = &infos[i];
    }
    vkUpdateDescriptorSets(d->dev, kd->nbind, writes, 0, NULL);
    order_command(d);
    vkCmdBindPipeline(d->cb, VK_PIPELINE_BIND_POINT_COMPUTE, d->k[id].pipe);
    vkCmdBindDescriptorSets(d->cb, VK_PIPELINE_BIND_POINT_COMPUTE, d->k[id].layout, 0, 1, &set, 0,
                            NULL);
    uint32_t max_x = d->max_groups[0], max_y = d->max_groups[1];
    for (uint32_t y = 0; y < groups_y; y += max_y) {
        for (uint32_t x = 0; x < groups_x; x += max_x) {
            push[0] = x;
            if (id == K_GEMM || id == K_GEMM_TEX) push[1] = y;
            vkCmdPushConstants(d->cb, d->k[id].layout, VK_SHADER_STAGE_COMPUTE_BIT, 0,
                               kd->push_size, push);
            vkCmdDispatch(d->cb, SL_MIN(max_x, groups_x - x), SL_MIN(max_y, groups_y - y), 1);
        }
    }
    return SL_OK;
}

static int record_kernel(struct vkdev *d, int id, sl_buffer *const *bufs, uint32_t *push,
                         uint32_t groups_x, uint32_t groups_y)
{
    return record_kernel_views(d, id, bufs, NULL, push, groups_x, groups_y);
}

/* A texel-buffer view of the first `bytes` of buf, destroyed when the current batch has run. */
static int batch_view(struct vkdev *d, sl_buffer *buf, VkFormat format, size_t bytes,
                      VkBufferView *out)
{
    if (d->n_views == d->cap_views) {
        size_t cap = d->cap_views ? 2 * d->cap_views : 64;
        VkBufferView *v = realloc(d->views, cap * sizeof *v);
        if (!v) return sl_fail(SL_ENOMEM, "vulkan: out of host memory");
        d->views = v;
        d->cap_views = cap;
    }
    VkBufferViewCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
                                 .buffer = VB(buf)->buf,
                                 .format = format,
                                 .offset = 0,
                                 .range = bytes};
    VK_TRY(vkCreateBufferView(d->dev, &ci, NULL, out), "vkCreateBufferView");
    d->views[d->n_views++] = *out;
    return SL_OK;
}

static uint32_t div_up(size_t n, uint32_t d)
{
    return (uint32_t)((n + d - 1) / d);
}

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* An elementwise kernel over n items (one invocation each). */
static int run_1d(sl_device *dev, int id, sl_buffer *const *bufs, uint32_t *push, size_t n)
{
    struct vkdev *d = D(dev);
    return record_kernel(d, id, bufs, push, div_up(n, d->wg), 1);
}

/* A *_tex.comp kernel over n elements, four per invocation, its texel bindings reading the
 * buffers' rgba32f views. Returns SL_EUNSUPPORTED without recording anything where the device
 * reads storage buffers instead or a buffer has no view (too large for one); the caller then
 * runs the storage-buffer kernel. */
static int run_tex(sl_device *dev, int id, sl_buffer *const *bufs, uint32_t *push, size_t n)
{
    struct vkdev *d = D(dev);
    const struct kernel_desc *kd = &kernel_descs[id];
    if (!d->elem_tex) return SL_EUNSUPPORTED;
    VkBufferView views[MAX_BINDINGS] = {VK_NULL_HANDLE};
    for (uint32_t i = 0; i < kd->nbind; i++) {
        if (!((kd->texel >> i) & 1)) continue;
        views[i] = VB(bufs[i])->view4;
        if (!views[i]) return SL_EUNSUPPORTED;
    }
    return record_kernel_views(d, id, bufs, views, push, div_up(div_up(n, 4), d->wg), 1);
}

/* ------------------------------------------------------------------------------------------------
 * Buffers */

static int vk_buffer_alloc(sl_buffer *buf)
{
    struct vkdev *d = D(buf->dev);
    struct vkbuf *b = sl_alloc(sizeof *b);
    if (!b) return SL_ENOMEM;
    /* Rounded up to whole vec4s, so vector loads of a tail stay inside the buffer. */
    VkDeviceSize size = ((VkDeviceSize)buf->size + 15) & ~(VkDeviceSize)15;
    int st = create_buffer(d, size, false, b);
    if (st != SL_OK) {
        free(b);
        return st;
    }
    buf->impl = b;
    /* One view for every elementwise kernel's reads, made once here rather than per dispatch. */
    if (d->elem_tex && size / 16 <= d->props.limits.maxTexelBufferElements) {
        VkBufferViewCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
                                     .buffer = b->buf,
                                     .format = VK_FORMAT_R32G32B32A32_SFLOAT,
                                     .offset = 0,
                                     .range = size};
        VkResult r = vkCreateBufferView(d->dev, &ci, NULL, &b->view4);
        if (r != VK_SUCCESS) {
            destroy_buffer(d, b);
            free(b);
            return vk_fail(r, "vkCreateBufferView");
        }
    }
    /* New buffers read as zeros, as on the CPU backend. */
    if (b->map) {
        memset(b->map, 0, size);
    } else {
        uint32_t push[3] = {0, (uint32_t)(size / 4), 0};
        st = run_1d(buf->dev, K_FILL, &buf, push, size / 16);
        if (st != SL_OK) {
            destroy_buffer(d, b);
            free(b);
            return st;
        }
    }
    return SL_OK;
}

static void vk_buffer_free(sl_buffer *buf)
{
    struct vkdev *d = D(buf->dev);
    /* A batch may still name the buffer. */
    if (d->recording) flush(d);
    destroy_buffer(d, VB(buf));
    free(buf->impl);
}

static int ensure_staging(struct vkdev *d)
{
    if (d->staging) return SL_OK;
    struct vkbuf s;
    SL_TRY(create_buffer(d, STAGING_BYTES, true, &s));
    d->staging = s.buf;
    d->staging_mem = s.mem;
    d->staging_map = s.map;
    return SL_OK;
}

static void record_copy(struct vkdev *d, VkBuffer dst, size_t dst_off, VkBuffer src, size_t src_off,
                        size_t bytes)
{
    order_command(d);
    VkBufferCopy region = {.srcOffset = src_off, .dstOffset = dst_off, .size = bytes};
    vkCmdCopyBuffer(d->cb, src, dst, 1, &region);
}

static int vk_upload(sl_buffer *dst, size_t offset, const void *src, size_t bytes)
{
    struct vkdev *d = D(dst->dev);
    struct vkbuf *b = VB(dst);
    SL_TRY(flush(d)); /* queued kernels may still read or write the buffer */
    if (b->map) {
        memcpy((char *)b->map + offset, src, bytes);
        return SL_OK;
    }
    SL_TRY(ensure_staging(d));
    for (size_t done = 0; done < bytes; done += STAGING_BYTES) {
        size_t part = SL_MIN(bytes - done, (size_t)STAGING_BYTES);
        memcpy(d->staging_map, (const char *)src + done, part);
        SL_TRY(begin_batch(d));
        record_copy(d, b->buf, offset + done, d->staging, 0, part);
        SL_TRY(flush(d));
    }
    return SL_OK;
}

static int vk_download(sl_buffer *src, size_t offset, void *dst, size_t bytes)
{
    struct vkdev *d = D(src->dev);
    struct vkbuf *b = VB(src);
    SL_TRY(flush(d));
    if (b->map) {
        memcpy(dst, (const char *)b->map + offset, bytes);
        return SL_OK;
    }
    SL_TRY(ensure_staging(d));
    for (size_t done = 0; done < bytes; done += STAGING_BYTES) {
        size_t part = SL_MIN(bytes - done, (size_t)STAGING_BYTES);
        SL_TRY(begin_batch(d));
        record_copy(d, d->staging, 0, b->buf, offset + done, part);
        SL_TRY(flush(d));
        memcpy((char *)dst + done, d->staging_map, part);
    }
    return SL_OK;
}

static int vk_copy(sl_buffer *dst, size_t dst_offset, sl_buffer *src, size_t src_offset,
                   size_t bytes)
{
    struct vkdev *d = D(dst->dev);
    if (dst == src && dst_offset < src_offset + bytes && src_offset < dst_offset + bytes) {
        /* vkCmdCopyBuffer forbids overlapping regions; go through the host (rare). */
        void *tmp = malloc(bytes);
        if (!tmp) return sl_fail(SL_ENOMEM, "vulkan: no host memory for an overlapping copy");
        int st = vk_download(src, src_offset, tmp, bytes);
        if (st == SL_OK) st = vk_upload(dst, dst_offset, tmp, bytes);
        free(tmp);
        return st;
    }
    if (d->sets_used >= POOL_SETS) SL_TRY(flush(d));
    SL_TRY(begin_batch(d));
    record_copy(d, VB(dst)->buf, dst_offset, VB(src)->buf, src_offset, bytes);
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Events: a timestamp query in the batch where the device has timestamps, else host time */

struct vkevent {
    VkQueryPool pool;
    uint64_t batch;
};

static int vk_event_record(sl_device *dev, sl_event *ev)
{
    struct vkdev *d = D(dev);
    struct vkevent *e = sl_alloc(sizeof *e);
    if (!e) return SL_ENOMEM;
    ev->impl = e;
    if (!d->ts_bits) {
        SL_TRY(flush(d));
        ev->host_time = sl_now();
        return SL_OK;
    }
    VkQueryPoolCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                 .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                 .queryCount = 1};
    VkResult r = vkCreateQueryPool(d->dev, &qci, NULL, &e->pool);
    if (r != VK_SUCCESS) {
        free(e);
        ev->impl = NULL;
        return vk_fail(r, "vkCreateQueryPool");
    }
    int st = begin_batch(d);
    if (st != SL_OK) {
        vkDestroyQueryPool(d->dev, e->pool, NULL);
        free(e);
        ev->impl = NULL;
        return st;
    }
    vkCmdResetQueryPool(d->cb, e->pool, 0, 1);
    /* Bottom of pipe: written once every earlier command of the queue has completed. */
    vkCmdWriteTimestamp(d->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, e->pool, 0);
    e->batch = d->batch;
    ev->host_time = sl_now();
    return SL_OK;
}

static int vk_event_wait(sl_event *ev)
{
    struct vkdev *d = D(ev->dev);
    struct vkevent *e = ev->impl;
    if (e && e->pool && e->batch == d->batch && d->recording) return flush(d);
    return SL_OK;
}

static int read_timestamp(struct vkdev *d, struct vkevent *e, uint64_t *t)
{
    VK_TRY(vkGetQueryPoolResults(d->dev, e->pool, 0, 1, sizeof *t, t, sizeof *t,
                                 VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT),
           "vkGetQueryPoolResults");
    return SL_OK;
}

static int vk_event_elapsed_ms(sl_event *start, sl_event *end, double *ms)
{
    struct vkdev *d = D(start->dev);
    SL_TRY(vk_event_wait(start));
    SL_TRY(vk_event_wait(end));
    struct vkevent *s = start->impl, *e = end->impl;
    if (!s || !e || !s->pool || !e->pool) {
        *ms = 1e3 * (end->host_time - start->host_time);
        return SL_OK;
    }
    uint64_t t0, t1;
    SL_TRY(read_timestamp(d, s, &t0));
    SL_TRY(read_timestamp(d, e, &t1));
    uint64_t mask = d->ts_bits >= 64 ? UINT64_MAX : ((uint64_t)1 << d->ts_bits) - 1;
    uint64_t ticks = (t1 - t0) & mask;
    *ms = (double)ticks * (double)d->props.limits.timestampPeriod * 1e-6;
    return SL_OK;
}

static void vk_event_free(sl_event *ev)
{
    struct vkevent *e = ev->impl;
    if (!e) return;
    if (e->pool) {
        struct vkdev *d = D(ev->dev);
        /* The query may still be in the batch being recorded. */
        if (e->batch == d->batch && d->recording) flush(d);
        vkDestroyQueryPool(d->dev, e->pool, NULL);
    }
    free(e);
}

/* ------------------------------------------------------------------------------------------------
 * FMA peak */

static int vk_peak_gflops(sl_device *dev, double *gflops)
{
    struct vkdev *d = D(dev);
    const uint32_t chains = d->peak_chains;
    uint32_t groups = dev->info.kind == SL_DEVICE_CPU ? 256 : 8192;
    size_t invocations = (size_t)groups * d->wg;
    sl_buffer *out = NULL;
    SL_TRY(sl_buffer_alloc(dev, invocations * 4, &out));
    uint32_t iters = 16;
    double best = 0.0;
    int st = SL_OK;
    /* Grow the loop until one run takes 50 ms, then keep the best of three runs. */
    int kept = 0;
    for (int run = 0; run < 40 && kept < 3 && st == SL_OK; run++) {
        uint32_t push[4] = {0, iters, f2u(0.9999f), f2u(0.0001f)};
        st = flush(d);
        double t0 = sl_now();
        if (st == SL_OK) st = record_kernel(d, K_PEAK, &out, push, groups, 1);
        if (st == SL_OK) st = flush(d);
        double dt = sl_now() - t0;
        if (st != SL_OK) break;
        if (dt < 0.05 && iters < (1u << 24)) {
            iters *= dt < 0.005 ? 8 : 2;
            continue;
        }
        double flops = (double)invocations * iters * 16.0 * chains * 4.0 * 2.0;
        best = SL_MAX(best, flops / dt * 1e-9);
        kept++;
    }
    sl_buffer_free(out);
    SL_TRY(st);
    *gflops = best;
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Kernels */

static int vk_gemm(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                   float alpha, sl_buffer *a, sl_buffer *b, float beta, sl_buffer *c)
{
    struct vkdev *d = D(dev);
    sl_buffer *bufs[4] = {a, b, c, b};
    uint32_t push[9] = {0,       0,       (uint32_t)m, (uint32_t)n, (uint32_t)k,
                        trans_a, trans_b, f2u(alpha),  f2u(beta)};
    uint32_t col_blocks = div_up(n, 4 * d->gemm_tn4), row_blocks = div_up(m, d->gemm_tm);
    uint32_t gx = div_up(col_blocks, d->gemm_wg);
    uint64_t max_texels = d->props.limits.maxTexelBufferElements;
    if (d->gemm_tex && m * k <= max_texels && k * n <= max_texels) {
        /* The views must outlive the batch, so make room in it before creating them. */
        if (d->sets_used >= POOL_SETS) SL_TRY(flush(d));
        SL_TRY(begin_batch(d));
        VkBufferView views[5] = {VK_NULL_HANDLE};
        SL_TRY(batch_view(d, a, VK_FORMAT_R32_SFLOAT, m * k * 4, &views[0]));
        SL_TRY(batch_view(d, b, VK_FORMAT_R32_SFLOAT, k * n * 4, &views[1]));
        if (trans_b ? k % 4 == 0 : n % 4 == 0)
            SL_TRY(batch_view(d, b, VK_FORMAT_R32G32B32A32_SFLOAT, k * n * 4, &views[3]));
        else
            views[3] = views[1]; /* not read: the shader takes the scalar path */
        if (!trans_a && !trans_b && n % 4 == 0 && k % 4 == 0)
            SL_TRY(batch_view(d, a, VK_FORMAT_R32G32B32A32_SFLOAT, m * k * 4, &views[4]));
        else
            views[4] = views[0]; /* not read */
        return record_kernel_views(d, K_GEMM_TEX, bufs, views, push, gx, row_blocks);
    }
    return record_kernel(d, K_GEMM, bufs, push, gx, row_blocks);
}

static int vk_bias_add(sl_device *dev, size_t rows, size_t cols, sl_buffer *y, sl_buffer *bias)
{
    sl_buffer *bufs[2] = {y, bias};
    uint32_t push[3] = {0, (uint32_t)(rows * cols), (uint32_t)cols};
    return run_1d(dev, K_BIAS_ADD, bufs, push, rows * cols);
}

static int vk_bias_grad(sl_device *dev, size_t rows, size_t cols, sl_buffer *dy, float beta,
                        sl_buffer *dbias)
{
    sl_buffer *bufs[2] = {dy, dbias};
    uint32_t push[4] = {0, (uint32_t)rows, (uint32_t)cols, f2u(beta)};
    return run_1d(dev, K_BIAS_GRAD, bufs, push, cols);
}

static int vk_act_forward(sl_device *dev, enum sl_activation act, size_t n, sl_buffer *x,
                          sl_buffer *y)
{
    sl_buffer *bufs[2] = {x, y};
    uint32_t push[3] = {0, (uint32_t)n, (uint32_t)act};
    int st = run_tex(dev, K_ACT_FWD_TEX_0 + (int)act, bufs, push, n);
    if (st != SL_EUNSUPPORTED) return st;
    return run_1d(dev, K_ACT_FWD, bufs, push, n);
}

static int vk_act_backward(sl_device *dev, enum sl_activation act, size_t n, sl_buffer *x,
                           sl_buffer *dy, sl_buffer *dx)
{
    sl_buffer *bufs[3] = {x, dy, dx};
    uint32_t push[3] = {0, (uint32_t)n, (uint32_t)act};
    int st = run_tex(dev, K_ACT_BWD_TEX_0 + (int)act, bufs, push, n);
    if (st != SL_EUNSUPPORTED) return st;
    return run_1d(dev, K_ACT_BWD, bufs, push, n);
}

static int vk_softmax_xent(sl_device *dev, size_t rows, size_t classes, sl_buffer *logits,
                           sl_buffer *labels, float scale, sl_buffer *loss, sl_buffer *dlogits)
{
    sl_buffer *bufs[4] = {logits, labels, loss, dlogits};
    uint32_t push[4] = {0, (uint32_t)rows, (uint32_t)classes, f2u(scale)};
    return run_1d(dev, K_XENT, bufs, push, rows);
}

static int vk_mse(sl_device *dev, size_t rows, size_t cols, sl_buffer *pred, sl_buffer *target,
                  float scale, sl_buffer *loss, sl_buffer *dpred)
{
    sl_buffer *bufs[4] = {pred, target, loss, dpred};
    uint32_t push[4] = {0, (uint32_t)rows, (uint32_t)cols, f2u(scale)};
    return run_1d(dev, K_MSE, bufs, push, rows);
}

static int vk_sgd(sl_device *dev, size_t n, sl_buffer *param, sl_buffer *grad,
                  sl_buffer *momentum_buf, float lr, float momentum, float weight_decay)
{
    /* Without momentum the shader never touches binding 2; param fills the slot. */
    sl_buffer *mom = momentum_buf ? momentum_buf : param;
    uint32_t push[6] = {0,       (uint32_t)n,   momentum_buf != NULL,
                        f2u(lr), f2u(momentum), f2u(weight_decay)};
    sl_buffer *tex[5] = {param, grad, mom, param, mom};
    int st = run_tex(dev, K_SGD_TEX, tex, push, n);
    if (st != SL_EUNSUPPORTED) return st;
    sl_buffer *bufs[3] = {param, grad, mom};
    return run_1d(dev, K_SGD, bufs, push, n);
}

static int vk_adam(sl_device *dev, size_t n, sl_buffer *param, sl_buffer *grad, sl_buffer *m,
                   sl_buffer *v, float lr, float beta1, float beta2, float eps, float weight_decay,
                   float bc1, float bc2)
{
    uint32_t push[9] = {0,        (uint32_t)n,       f2u(lr),  f2u(beta1), f2u(beta2),
                        f2u(eps), f2u(weight_decay), f2u(bc1), f2u(bc2)};
    sl_buffer *tex[7] = {param, grad, m, v, param, m, v};
    int st = run_tex(dev, K_ADAM_TEX, tex, push, n);
    if (st != SL_EUNSUPPORTED) return st;
    sl_buffer *bufs[4] = {param, grad, m, v};
    return run_1d(dev, K_ADAM, bufs, push, n);
}

static int vk_axpy(sl_device *dev, size_t n, float alpha, sl_buffer *x, sl_buffer *y)
{
    uint32_t push[3] = {0, (uint32_t)n, f2u(alpha)};
    sl_buffer *tex[3] = {x, y, y};
    int st = run_tex(dev, K_AXPY_TEX, tex, push, n);
    if (st != SL_EUNSUPPORTED) return st;
    sl_buffer *bufs[2] = {x, y};
    return run_1d(dev, K_AXPY, bufs, push, n);
}

static int vk_scale(sl_device *dev, size_t n, float alpha, sl_buffer *x)
{
    uint32_t push[3] = {0, (uint32_t)n, f2u(alpha)};
    sl_buffer *tex[2] = {x, x};
    int st = run_tex(dev, K_SCALE_TEX, tex, push, n);
    if (st != SL_EUNSUPPORTED) return st;
    return run_1d(dev, K_SCALE, &x, push, n);
}

static int vk_fill(sl_device *dev, size_t n, float value, sl_buffer *x)
{
    uint32_t push[3] = {0, (uint32_t)n, f2u(value)};
    return run_1d(dev, K_FILL, &x, push, div_up(n, 4)); /* four elements per invocation */
}

const struct sl_backend_ops sl_vulkan_backend = {
    .name = "vulkan",
    .enumerate = vk_enumerate,
    .open = vk_open,
    .close = vk_close,
    .finish = vk_finish,
    .buffer_alloc = vk_buffer_alloc,
    .buffer_free = vk_buffer_free,
    .upload = vk_upload,
    .download = vk_download,
    .copy = vk_copy,
    .event_record = vk_event_record,
    .event_wait = vk_event_wait,
    .event_elapsed_ms = vk_event_elapsed_ms,
    .event_free = vk_event_free,
    .peak_gflops = vk_peak_gflops,
    .gemm = vk_gemm,
    .bias_add = vk_bias_add,
    .bias_grad = vk_bias_grad,
    .act_forward = vk_act_forward,
    .act_backward = vk_act_backward,
    .softmax_xent = vk_softmax_xent,
    .mse = vk_mse,
    .sgd = vk_sgd,
    .adam = vk_adam,
    .axpy = vk_axpy,
    .scale = vk_scale,
    .fill = vk_fill,
};
