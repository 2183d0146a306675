/* Vulkan-only functions of the Vulkan backend (backends/vulkan/).
 *
 * Environment (backends/backend.h lists every backend's):
 * - SLUICE_VK_VALIDATION set to anything but "" or "0" enables VK_LAYER_KHRONOS_validation and a
 *   debug messenger that logs every warning and error through sl_log and counts it; a test fails
 *   when the count is not 0.
 * - SLUICE_VK_LOADER names the loader library to open instead of libvulkan.so.1 (a missing one
 *   shows how sluice behaves on a machine without Vulkan).
 * - SLUICE_VK_GEMM_TILE=TMxTN4xWG overrides the GEMM tile (rows 1..32, vec4 columns 1..8,
 *   work-group size up to the device's limit) chosen for the device, for tuning; a malformed value
 *   is logged and ignored.
 * - SLUICE_VK_GEMM_TEX=0|1 makes GEMM read its operands through storage buffers (gemm.comp) or
 *   uniform texel buffers (gemm_tex.comp); the default is texel buffers on CPU drivers, where
 *   lavapipe fetches texels for all SIMD lanes at once but loads storage buffers lane by lane.
 * - SLUICE_VK_ELEM_TEX=0|1 makes the same choice for activations, axpy, scale, SGD and Adam (the
 *   *_tex.comp shaders read through rgba32f texel views); the same default.
 *   Both texel choices need the device to support the texel formats, whatever the variable says.
 * - SLUICE_VK_MAX_GROUPS=N (N > 0) caps the work-group counts per dispatch below the device's
 *   maxComputeWorkGroupCount, so tests exercise split launches with small buffers. */
#ifndef SL_VULKAN_BACKEND_H
#define SL_VULKAN_BACKEND_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Validation-layer warnings and errors seen so far in this process (0 when validation is off). */
uint64_t sl_vulkan_validation_messages(void);

#ifdef __cplusplus
}
#endif
#endif
