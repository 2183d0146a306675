/* The Vulkan backend's devices: the loader, opened at run time (dlopen) so that a machine without
 * Vulkan still runs the other backends, the instance, the physical devices every Vulkan driver
 * offers (CPU drivers such as Mesa's lavapipe included), and opening and closing a device. The
 * execution model is described in vulkan_impl.h. */
#define _GNU_SOURCE
#include "backends/vulkan/vulkan_impl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------------
 * Loader entry points, resolved through vkGetInstanceProcAddr */

#define DEFINE_FN(name) PFN_##name sl__##name;
VK_GLOBAL_FNS(DEFINE_FN)
VK_INSTANCE_FNS(DEFINE_FN)
#undef DEFINE_FN
static PFN_vkGetInstanceProcAddr sl__vkGetInstanceProcAddr;
static PFN_vkEnumerateInstanceVersion sl__vkEnumerateInstanceVersion;
static PFN_vkCreateDebugUtilsMessengerEXT sl__vkCreateDebugUtilsMessengerEXT;

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

int sl__vk_fail(VkResult r, const char *what)
{
    int st = SL_EDEVICE;
    if (r == VK_ERROR_OUT_OF_HOST_MEMORY || r == VK_ERROR_OUT_OF_DEVICE_MEMORY) st = SL_ENOMEM;
    return sl_fail(st, "vulkan: %s failed: %s (%d)", what, vk_result_name(r), (int)r);
}

#define VK_TRY(call, what)                                                                         \
    do {                                                                                           \
        VkResult vk_try_r_ = (call);                                                               \
        if (vk_try_r_ != VK_SUCCESS) return sl__vk_fail(vk_try_r_, what);                          \
    } while (0)

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

/* Whether SLUICE_VK_VALIDATION asks for the validation layer (see vulkan_backend.h). */
static bool validation_requested(void)
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
    *(void **)&sl__vkGetInstanceProcAddr = dlsym(g.lib, "vkGetInstanceProcAddr");
    if (!sl__vkGetInstanceProcAddr)
        return sl_fail(SL_EUNAVAILABLE, "%s has no vkGetInstanceProcAddr: not a Vulkan loader",
                       path);
#define LOAD_GLOBAL(name)                                                                          \
    *(void **)&sl__##name = (void *)sl__vkGetInstanceProcAddr(NULL, #name);                        \
    if (!sl__##name) return sl_fail(SL_EUNAVAILABLE, "the Vulkan loader lacks %s", #name);
    VK_GLOBAL_FNS(LOAD_GLOBAL)
#undef LOAD_GLOBAL
    *(void **)&sl__vkEnumerateInstanceVersion =
        (void *)sl__vkGetInstanceProcAddr(NULL, "vkEnumerateInstanceVersion");
    return SL_OK;
}

static int create_instance(void)
{
    uint32_t loader_api = VK_API_VERSION_1_0;
    if (sl__vkEnumerateInstanceVersion) sl__vkEnumerateInstanceVersion(&loader_api);
    if (loader_api < VK_API_VERSION_1_1)
        return sl_fail(SL_EUNAVAILABLE,
                       "the Vulkan loader supports Vulkan %u.%u; sluice needs 1.1 or newer",
                       VK_API_VERSION_MAJOR(loader_api), VK_API_VERSION_MINOR(loader_api));
    g.api = loader_api >= VK_API_VERSION_1_2 ? VK_API_VERSION_1_2 : VK_API_VERSION_1_1;

    const char *exts[4];
    uint32_t next = 0;
    VkInstanceCreateFlags flags = 0;
    uint32_t n_ext = 0;
    sl__vkEnumerateInstanceExtensionProperties(NULL, &n_ext, NULL);
    VkExtensionProperties *ext_props = calloc(n_ext ? n_ext : 1, sizeof *ext_props);
    if (!ext_props) return sl_fail(SL_ENOMEM, "vulkan: out of host memory");
    sl__vkEnumerateInstanceExtensionProperties(NULL, &n_ext, ext_props);
    /* Portability drivers (MoltenVK) are listed only when asked for; sluice hides no device. */
    if (has_extension(ext_props, n_ext, "VK_KHR_portability_enumeration")) {
        exts[next++] = "VK_KHR_portability_enumeration";
        flags |= 0x00000001; /* VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR */
    }

    const char *layers[1];
    uint32_t n_layers = 0;
    g.validation = validation_requested();
    if (g.validation) {
        uint32_t n = 0;
        sl__vkEnumerateInstanceLayerProperties(&n, NULL);
        VkLayerProperties *props = calloc(n ? n : 1, sizeof *props);
        if (!props) {
            free(ext_props);
            return sl_fail(SL_ENOMEM, "vulkan: out of host memory");
        }
        sl__vkEnumerateInstanceLayerProperties(&n, props);
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
    VkResult r = sl__vkCreateInstance(&ci, NULL, &g.instance);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
        return sl_fail(SL_EUNAVAILABLE,
                       "no Vulkan driver is installed (vkCreateInstance: "
                       "VK_ERROR_INCOMPATIBLE_DRIVER); Debian: mesa-vulkan-drivers");
    if (r != VK_SUCCESS) return sl__vk_fail(r, "vkCreateInstance");

#define LOAD_INSTANCE(name)                                                                        \
    *(void **)&sl__##name = (void *)sl__vkGetInstanceProcAddr(g.instance, #name);                  \
    if (!sl__##name) return sl_fail(SL_EUNAVAILABLE, "the Vulkan loader lacks %s", #name);
    VK_INSTANCE_FNS(LOAD_INSTANCE)
#undef LOAD_INSTANCE
    if (g.validation) {
        *(void **)&sl__vkCreateDebugUtilsMessengerEXT =
            (void *)sl__vkGetInstanceProcAddr(g.instance, "vkCreateDebugUtilsMessengerEXT");
        if (!sl__vkCreateDebugUtilsMessengerEXT)
            return sl_fail(SL_EUNAVAILABLE, "vulkan: VK_EXT_debug_utils has no entry points");
        VK_TRY(sl__vkCreateDebugUtilsMessengerEXT(g.instance, &dbg, NULL, &g.messenger),
               "vkCreateDebugUtilsMessengerEXT");
    }
    return SL_OK;
}

/* Fills `d` for physical device `pd`, or returns a message naming what it lacks. */
static int describe_device(VkPhysicalDevice pd, uint32_t index, sl_device_info *d, uint32_t *family)
{
    VkPhysicalDeviceProperties props;
    sl__vkGetPhysicalDeviceProperties(pd, &props);
    if (props.apiVersion < VK_API_VERSION_1_1)
        return sl_fail(SL_EUNSUPPORTED, "%s supports Vulkan %u.%u; sluice needs Vulkan 1.1",
                       props.deviceName, VK_API_VERSION_MAJOR(props.apiVersion),
                       VK_API_VERSION_MINOR(props.apiVersion));
    uint32_t nq = 0;
    sl__vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, NULL);
    VkQueueFamilyProperties qf[16];
    nq = SL_MIN(nq, 16u);
    sl__vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf);
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
    sl__vkGetPhysicalDeviceProperties2(pd, &p2);

    VkPhysicalDeviceMemoryProperties mem;
    sl__vkGetPhysicalDeviceMemoryProperties(pd, &mem);
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
        VkResult r = sl__vkEnumeratePhysicalDevices(g.instance, &n, NULL);
        VkPhysicalDevice phys[MAX_PHYS];
        n = SL_MIN(n, (uint32_t)MAX_PHYS);
        if (r == VK_SUCCESS) r = sl__vkEnumeratePhysicalDevices(g.instance, &n, phys);
        if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
            g.status = sl__vk_fail(r, "vkEnumeratePhysicalDevices");
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

int sl__vk_enumerate(sl_device_info *infos, size_t cap, size_t *count)
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
 * Opening and closing a device */

/* Picks the work-group sizes and GEMM tile from the device's limits. */
static void choose_tiles(struct sl__vk_device *d, enum sl_device_kind kind)
{
    uint32_t maxwg = SL_MIN(d->props.limits.maxComputeWorkGroupInvocations,
                            d->props.limits.maxComputeWorkGroupSize[0]);
    d->wg = SL_MIN(256u, maxwg);
    if (kind == SL_DEVICE_CPU) {
        /* A CPU driver runs a work-group's invocations as SIMD lanes and loads buffers lane by
         * lane, so the FMAs per loaded float decide the speed: a 16 x 16 block gives 8, and on
         * lavapipe it beat the smaller tiles, while the work-group size made no difference that
         * stood out of the noise. Measure a tile with
         *   SLUICE_VK_GEMM_TILE=TMxTN4xWG build-ci/tests/vulkan/vk_gemm_perf 1024 */
        d->gemm_tm = 16;
        d->gemm_tn4 = 4;
        d->gemm_wg = SL_MIN(64u, maxwg);
    } else {
        d->gemm_tm = 4;
        d->gemm_tn4 = 1;
        d->gemm_wg = SL_MIN(64u, maxwg);
    }
    /* 8 vec4 chains gave lavapipe's highest figure; more or fewer chains, float chains and other
     * work-group sizes did no better, since llvmpipe's generated code, not the chain count, is
     * what limits the shader (a native AVX2 FMA loop on the same cores runs about three times as
     * fast). Measure with PEAK_ONLY=1 build-ci/tests/vulkan/vk_gemm_perf */
    d->peak_chains = 8;
    d->max_groups[0] = d->props.limits.maxComputeWorkGroupCount[0];
    d->max_groups[1] = d->props.limits.maxComputeWorkGroupCount[1];
    d->max_groups[2] = d->props.limits.maxComputeWorkGroupCount[2];
    /* Tests cap the counts to exercise split launches without huge buffers. */
    const char *cap = getenv("SLUICE_VK_MAX_GROUPS");
    if (cap && atoi(cap) > 0) {
        d->max_groups[0] = SL_MIN(d->max_groups[0], (uint32_t)atoi(cap));
        d->max_groups[1] = SL_MIN(d->max_groups[1], (uint32_t)atoi(cap));
        d->max_groups[2] = SL_MIN(d->max_groups[2], (uint32_t)atoi(cap));
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

static int vk_open_inner(sl_device *dev, struct sl__vk_device *d)
{
    d->phys = g.phys[dev->index];
    d->family = g.family[dev->index];
    sl__vkGetPhysicalDeviceProperties(d->phys, &d->props);
    sl__vkGetPhysicalDeviceMemoryProperties(d->phys, &d->mem);
    d->unified = dev->info.kind == SL_DEVICE_CPU ||
                 d->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU;
    uint32_t nq = 0;
    sl__vkGetPhysicalDeviceQueueFamilyProperties(d->phys, &nq, NULL);
    VkQueueFamilyProperties qf[16];
    nq = SL_MIN(nq, 16u);
    sl__vkGetPhysicalDeviceQueueFamilyProperties(d->phys, &nq, qf);
    d->ts_bits = dev->info.timestamps ? qf[d->family].timestampValidBits : 0;
    choose_tiles(d, dev->info.kind);
    /* Texel fetches are what a CPU driver vectorises; GPUs read storage buffers as fast. Both
     * formats are mandatory for uniform texel buffers, but a driver is checked, not trusted. */
    VkFormatProperties f1, f4;
    sl__vkGetPhysicalDeviceFormatProperties(d->phys, VK_FORMAT_R32_SFLOAT, &f1);
    sl__vkGetPhysicalDeviceFormatProperties(d->phys, VK_FORMAT_R32G32B32A32_SFLOAT, &f4);
    const char *tex_env = getenv("SLUICE_VK_GEMM_TEX");
    d->gemm_tex = (f1.bufferFeatures & VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT) &&
                  (f4.bufferFeatures & VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT) &&
                  (tex_env ? atoi(tex_env) != 0 : dev->info.kind == SL_DEVICE_CPU);
    const char *elem_env = getenv("SLUICE_VK_ELEM_TEX");
    d->elem_tex = (f4.bufferFeatures & VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT) &&
                  (elem_env ? atoi(elem_env) != 0 : dev->info.kind == SL_DEVICE_CPU);

    uint32_t n_ext = 0;
    sl__vkEnumerateDeviceExtensionProperties(d->phys, NULL, &n_ext, NULL);
    VkExtensionProperties *exts = calloc(n_ext ? n_ext : 1, sizeof *exts);
    if (!exts) return sl_fail(SL_ENOMEM, "vulkan: out of host memory");
    sl__vkEnumerateDeviceExtensionProperties(d->phys, NULL, &n_ext, exts);
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
    VK_TRY(sl__vkCreateDevice(d->phys, &dci, NULL, &d->dev), "vkCreateDevice");
    sl__vkGetDeviceQueue(d->dev, d->family, 0, &d->queue);

    VkCommandPoolCreateInfo cpci = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                    .flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT,
                                    .queueFamilyIndex = d->family};
    VK_TRY(sl__vkCreateCommandPool(d->dev, &cpci, NULL, &d->cmd_pool), "vkCreateCommandPool");
    VkCommandBufferAllocateInfo cbai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                        .commandPool = d->cmd_pool,
                                        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                        .commandBufferCount = 1};
    VK_TRY(sl__vkAllocateCommandBuffers(d->dev, &cbai, &d->cb), "vkAllocateCommandBuffers");
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VK_TRY(sl__vkCreateFence(d->dev, &fci, NULL, &d->fence), "vkCreateFence");
    VkDescriptorPoolSize ps[2] = {
        {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = POOL_SETS * MAX_BINDINGS},
        {.type = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER,
         .descriptorCount = POOL_SETS * MAX_BINDINGS}};
    VkDescriptorPoolCreateInfo dpci = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                       .maxSets = POOL_SETS,
                                       .poolSizeCount = 2,
                                       .pPoolSizes = ps};
    VK_TRY(sl__vkCreateDescriptorPool(d->dev, &dpci, NULL, &d->desc_pool),
           "vkCreateDescriptorPool");
    return sl__vk_create_pipelines(d);
}

int sl__vk_open(sl_device *dev)
{
    struct sl__vk_device *d = sl_alloc(sizeof *d);
    if (!d) return SL_ENOMEM;
    dev->impl = d;
    int st = vk_open_inner(dev, d);
    if (st != SL_OK) {
        sl__vk_close(dev);
        return sl_fail_context(st, "opening %s (%s)", dev->info.id, dev->info.name);
    }
    return SL_OK;
}

void sl__vk_close(sl_device *dev)
{
    struct sl__vk_device *d = D(dev);
    if (!d) return;
    if (d->dev) {
        if (d->recording) sl__vk_flush(d);
        sl__vkDeviceWaitIdle(d->dev);
        for (size_t i = 0; i < d->n_views; i++) sl__vkDestroyBufferView(d->dev, d->views[i], NULL);
        free(d->views);
        sl__vk_free_partials(dev);
        sl__vk_destroy_pipelines(d);
        if (d->staging) {
            struct sl__vk_buffer s = {.buf = d->staging, .mem = d->staging_mem};
            sl__vk_destroy_buffer(d, &s);
        }
        if (d->desc_pool) sl__vkDestroyDescriptorPool(d->dev, d->desc_pool, NULL);
        if (d->fence) sl__vkDestroyFence(d->dev, d->fence, NULL);
        if (d->cmd_pool) sl__vkDestroyCommandPool(d->dev, d->cmd_pool, NULL);
        sl__vkDestroyDevice(d->dev, NULL);
    }
    free(d);
    dev->impl = NULL;
}
