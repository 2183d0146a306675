/* The Vulkan backend's command path: device memory, command batches (record, submit, wait),
 * kernel dispatch, buffers and events. See vulkan_impl.h for the execution model. */
#include "backends/vulkan/vulkan_impl.h"

#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------------------------------
 * Memory */

/* The memory type for `bits` with all of `want`, or UINT32_MAX. */
static uint32_t find_memory(const VkPhysicalDeviceMemoryProperties *mem, uint32_t bits,
                            VkMemoryPropertyFlags want)
{
    for (uint32_t i = 0; i < mem->memoryTypeCount; i++)
        if ((bits & (1u << i)) && (mem->memoryTypes[i].propertyFlags & want) == want) return i;
    return UINT32_MAX;
}

int sl__vk_create_buffer(struct sl__vk_device *d, VkDeviceSize size, bool host,
                         struct sl__vk_buffer *out)
{
    memset(out, 0, sizeof *out);
    VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT |
                 VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VK_TRY(sl__vkCreateBuffer(d->dev, &bci, NULL, &out->buf), "vkCreateBuffer");
    VkMemoryRequirements req;
    sl__vkGetBufferMemoryRequirements(d->dev, out->buf, &req);
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
        sl__vkDestroyBuffer(d->dev, out->buf, NULL);
        return sl_fail(SL_EUNSUPPORTED, "vulkan: no memory type fits a storage buffer");
    }
    VkMemoryAllocateInfo mai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                                .allocationSize = req.size,
                                .memoryTypeIndex = type};
    VkResult r = sl__vkAllocateMemory(d->dev, &mai, NULL, &out->mem);
    if (r == VK_SUCCESS) r = sl__vkBindBufferMemory(d->dev, out->buf, out->mem, 0);
    if (r == VK_SUCCESS && map)
        r = sl__vkMapMemory(d->dev, out->mem, 0, VK_WHOLE_SIZE, 0, &out->map);
    if (r != VK_SUCCESS) {
        sl__vkDestroyBuffer(d->dev, out->buf, NULL);
        if (out->mem) sl__vkFreeMemory(d->dev, out->mem, NULL);
        memset(out, 0, sizeof *out);
        return sl__vk_fail(r, "allocating device memory (vkAllocateMemory)");
    }
    out->size = size;
    return SL_OK;
}

void sl__vk_destroy_buffer(struct sl__vk_device *d, struct sl__vk_buffer *b)
{
    if (b->view4) sl__vkDestroyBufferView(d->dev, b->view4, NULL);
    if (b->buf) sl__vkDestroyBuffer(d->dev, b->buf, NULL);
    if (b->mem) sl__vkFreeMemory(d->dev, b->mem, NULL); /* unmaps implicitly */
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------------------------------------
 * Batches: record, submit, wait */

int sl__vk_begin_batch(struct sl__vk_device *d)
{
    if (d->recording) return SL_OK;
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    VK_TRY(sl__vkBeginCommandBuffer(d->cb, &bi), "vkBeginCommandBuffer");
    d->recording = true;
    d->need_barrier = false;
    return SL_OK;
}

static void barrier(struct sl__vk_device *d, VkPipelineStageFlags dst_stage,
                    VkAccessFlags dst_access)
{
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask =
                              VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = dst_access};
    sl__vkCmdPipelineBarrier(d->cb,
                             VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                             dst_stage, 0, 1, &mb, 0, NULL, 0, NULL);
}

/* Orders the next command after everything recorded before it in this batch. */
static void order_command(struct sl__vk_device *d)
{
    if (d->need_barrier)
        barrier(d, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                    VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT);
    d->need_barrier = true;
}

int sl__vk_flush(struct sl__vk_device *d)
{
    if (!d->recording) return SL_OK;
    /* Make the batch's writes visible to the host's reads of mapped memory. */
    barrier(d, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
    d->recording = false;
    d->batch++;
    VkResult r = sl__vkEndCommandBuffer(d->cb);
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &d->cb};
    if (r == VK_SUCCESS) r = sl__vkQueueSubmit(d->queue, 1, &si, d->fence);
    if (r == VK_SUCCESS) r = sl__vkWaitForFences(d->dev, 1, &d->fence, VK_TRUE, UINT64_MAX);
    if (r == VK_SUCCESS) r = sl__vkResetFences(d->dev, 1, &d->fence);
    if (r == VK_SUCCESS) r = sl__vkResetCommandPool(d->dev, d->cmd_pool, 0);
    if (r == VK_SUCCESS) r = sl__vkResetDescriptorPool(d->dev, d->desc_pool, 0);
    d->sets_used = 0;
    for (size_t i = 0; i < d->n_views; i++) sl__vkDestroyBufferView(d->dev, d->views[i], NULL);
    d->n_views = 0;
    if (r != VK_SUCCESS) return sl__vk_fail(r, "running a command batch");
    return SL_OK;
}

int sl__vk_finish(sl_device *dev)
{
    return sl__vk_flush(D(dev));
}

int sl__vk_record_kernel_views(struct sl__vk_device *d, int id, sl_buffer *const *bufs,
                               const VkBufferView *views, uint32_t *push, uint32_t groups_x,
                               uint32_t groups_y, uint32_t groups_z)
{
    const struct sl__vk_kernel_desc *kd = &sl__vk_kernels[id];
    if (d->sets_used >= POOL_SETS) SL_TRY(sl__vk_flush(d));
    SL_TRY(sl__vk_begin_batch(d));
    VkDescriptorSet set;
    VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                      .descriptorPool = d->desc_pool,
                                      .descriptorSetCount = 1,
                                      .pSetLayouts = &d->k[id].dsl};
    VK_TRY(sl__vkAllocateDescriptorSets(d->dev, &ai, &set), "vkAllocateDescriptorSets");
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
        struct sl__vk_buffer *b = VB(bufs[i]);
        infos[i] = (VkDescriptorBufferInfo){
            .buffer = b->buf, .offset = 0, .range = SL_MIN(b->size, max_range)};
        writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        writes[i].pBufferInfo = &infos[i];
    }
    sl__vkUpdateDescriptorSets(d->dev, kd->nbind, writes, 0, NULL);
    order_command(d);
    sl__vkCmdBindPipeline(d->cb, VK_PIPELINE_BIND_POINT_COMPUTE, d->k[id].pipe);
    sl__vkCmdBindDescriptorSets(d->cb, VK_PIPELINE_BIND_POINT_COMPUTE, d->k[id].layout, 0, 1, &set,
                                0, NULL);
    uint32_t max_x = d->max_groups[0], max_y = d->max_groups[1];
    for (uint32_t y = 0; y < groups_y; y += max_y) {
        for (uint32_t x = 0; x < groups_x; x += max_x) {
            push[0] = x;
            if (id == K_GEMM || id == K_GEMM_TEX) push[1] = y;
            sl__vkCmdPushConstants(d->cb, d->k[id].layout, VK_SHADER_STAGE_COMPUTE_BIT, 0,
                                   kd->push_size, push);
            sl__vkCmdDispatch(d->cb, SL_MIN(max_x, groups_x - x), SL_MIN(max_y, groups_y - y),
                              groups_z);
        }
    }
    return SL_OK;
}

int sl__vk_record_kernel(struct sl__vk_device *d, int id, sl_buffer *const *bufs, uint32_t *push,
                         uint32_t groups_x, uint32_t groups_y)
{
    return sl__vk_record_kernel_views(d, id, bufs, NULL, push, groups_x, groups_y, 1);
}

int sl__vk_batch_view(struct sl__vk_device *d, sl_buffer *buf, VkFormat format, size_t bytes,
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
    VK_TRY(sl__vkCreateBufferView(d->dev, &ci, NULL, out), "vkCreateBufferView");
    d->views[d->n_views++] = *out;
    return SL_OK;
}

int sl__vk_run_1d(sl_device *dev, int id, sl_buffer *const *bufs, uint32_t *push, size_t n)
{
    struct sl__vk_device *d = D(dev);
    return sl__vk_record_kernel(d, id, bufs, push, div_up(n, d->wg), 1);
}

int sl__vk_run_tex(sl_device *dev, int id, sl_buffer *const *bufs, uint32_t *push, size_t n)
{
    struct sl__vk_device *d = D(dev);
    const struct sl__vk_kernel_desc *kd = &sl__vk_kernels[id];
    if (!d->elem_tex) return SL_EUNSUPPORTED;
    VkBufferView views[MAX_BINDINGS] = {VK_NULL_HANDLE};
    for (uint32_t i = 0; i < kd->nbind; i++) {
        if (!((kd->texel >> i) & 1)) continue;
        views[i] = VB(bufs[i])->view4;
        if (!views[i]) return SL_EUNSUPPORTED;
    }
    return sl__vk_record_kernel_views(d, id, bufs, views, push, div_up(div_up(n, 4), d->wg), 1, 1);
}

/* ------------------------------------------------------------------------------------------------
 * Buffers */

int sl__vk_buffer_alloc(sl_buffer *buf)
{
    struct sl__vk_device *d = D(buf->dev);
    struct sl__vk_buffer *b = sl_alloc(sizeof *b);
    if (!b) return SL_ENOMEM;
    /* Rounded up to whole vec4s, so vector loads of a tail stay inside the buffer. */
    VkDeviceSize size = ((VkDeviceSize)buf->size + 15) & ~(VkDeviceSize)15;
    int st = sl__vk_create_buffer(d, size, false, b);
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
        VkResult r = sl__vkCreateBufferView(d->dev, &ci, NULL, &b->view4);
        if (r != VK_SUCCESS) {
            sl__vk_destroy_buffer(d, b);
            free(b);
            return sl__vk_fail(r, "vkCreateBufferView");
        }
    }
    /* New buffers read as zeros, as on the CPU backend. */
    if (b->map) {
        memset(b->map, 0, size);
    } else {
        uint32_t push[3] = {0, (uint32_t)(size / 4), 0};
        st = sl__vk_run_1d(buf->dev, K_FILL, &buf, push, size / 16);
        if (st != SL_OK) {
            sl__vk_destroy_buffer(d, b);
            free(b);
            return st;
        }
    }
    return SL_OK;
}

void sl__vk_buffer_free(sl_buffer *buf)
{
    struct sl__vk_device *d = D(buf->dev);
    /* A batch may still name the buffer. */
    if (d->recording) sl__vk_flush(d);
    sl__vk_destroy_buffer(d, VB(buf));
    free(buf->impl);
}

static int ensure_staging(struct sl__vk_device *d)
{
    if (d->staging) return SL_OK;
    struct sl__vk_buffer s;
    SL_TRY(sl__vk_create_buffer(d, STAGING_BYTES, true, &s));
    d->staging = s.buf;
    d->staging_mem = s.mem;
    d->staging_map = s.map;
    return SL_OK;
}

static void record_copy(struct sl__vk_device *d, VkBuffer dst, size_t dst_off, VkBuffer src,
                        size_t src_off, size_t bytes)
{
    order_command(d);
    VkBufferCopy region = {.srcOffset = src_off, .dstOffset = dst_off, .size = bytes};
    sl__vkCmdCopyBuffer(d->cb, src, dst, 1, &region);
}

int sl__vk_upload(sl_buffer *dst, size_t offset, const void *src, size_t bytes)
{
    struct sl__vk_device *d = D(dst->dev);
    struct sl__vk_buffer *b = VB(dst);
    SL_TRY(sl__vk_flush(d)); /* queued kernels may still read or write the buffer */
    if (b->map) {
        memcpy((char *)b->map + offset, src, bytes);
        return SL_OK;
    }
    SL_TRY(ensure_staging(d));
    for (size_t done = 0; done < bytes; done += STAGING_BYTES) {
        size_t part = SL_MIN(bytes - done, (size_t)STAGING_BYTES);
        memcpy(d->staging_map, (const char *)src + done, part);
        SL_TRY(sl__vk_begin_batch(d));
        record_copy(d, b->buf, offset + done, d->staging, 0, part);
        SL_TRY(sl__vk_flush(d));
    }
    return SL_OK;
}

int sl__vk_download(sl_buffer *src, size_t offset, void *dst, size_t bytes)
{
    struct sl__vk_device *d = D(src->dev);
    struct sl__vk_buffer *b = VB(src);
    SL_TRY(sl__vk_flush(d));
    if (b->map) {
        memcpy(dst, (const char *)b->map + offset, bytes);
        return SL_OK;
    }
    SL_TRY(ensure_staging(d));
    for (size_t done = 0; done < bytes; done += STAGING_BYTES) {
        size_t part = SL_MIN(bytes - done, (size_t)STAGING_BYTES);
        SL_TRY(sl__vk_begin_batch(d));
        record_copy(d, d->staging, 0, b->buf, offset + done, part);
        SL_TRY(sl__vk_flush(d));
        memcpy((char *)dst + done, d->staging_map, part);
    }
    return SL_OK;
}

int sl__vk_copy(sl_buffer *dst, size_t dst_offset, sl_buffer *src, size_t src_offset, size_t bytes)
{
    struct sl__vk_device *d = D(dst->dev);
    if (dst == src && dst_offset < src_offset + bytes && src_offset < dst_offset + bytes) {
        /* vkCmdCopyBuffer forbids overlapping regions; go through the host (rare). */
        void *tmp = malloc(bytes);
        if (!tmp) return sl_fail(SL_ENOMEM, "vulkan: no host memory for an overlapping copy");
        int st = sl__vk_download(src, src_offset, tmp, bytes);
        if (st == SL_OK) st = sl__vk_upload(dst, dst_offset, tmp, bytes);
        free(tmp);
        return st;
    }
    if (d->sets_used >= POOL_SETS) SL_TRY(sl__vk_flush(d));
    SL_TRY(sl__vk_begin_batch(d));
    record_copy(d, VB(dst)->buf, dst_offset, VB(src)->buf, src_offset, bytes);
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Events: a timestamp query in the batch where the device has timestamps, else host time */

struct vkevent {
    VkQueryPool pool;
    uint64_t batch;
};

int sl__vk_event_record(sl_device *dev, sl_event *ev)
{
    struct sl__vk_device *d = D(dev);
    struct vkevent *e = sl_alloc(sizeof *e);
    if (!e) return SL_ENOMEM;
    ev->impl = e;
    if (!d->ts_bits) {
        SL_TRY(sl__vk_flush(d));
        ev->host_time = sl_now();
        return SL_OK;
    }
    VkQueryPoolCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                 .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                 .queryCount = 1};
    VkResult r = sl__vkCreateQueryPool(d->dev, &qci, NULL, &e->pool);
    if (r != VK_SUCCESS) {
        free(e);
        ev->impl = NULL;
        return sl__vk_fail(r, "vkCreateQueryPool");
    }
    int st = sl__vk_begin_batch(d);
    if (st != SL_OK) {
        sl__vkDestroyQueryPool(d->dev, e->pool, NULL);
        free(e);
        ev->impl = NULL;
        return st;
    }
    sl__vkCmdResetQueryPool(d->cb, e->pool, 0, 1);
    /* Bottom of pipe: written once every earlier command of the queue has completed. */
    sl__vkCmdWriteTimestamp(d->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, e->pool, 0);
    e->batch = d->batch;
    ev->host_time = sl_now();
    return SL_OK;
}

int sl__vk_event_wait(sl_event *ev)
{
    struct sl__vk_device *d = D(ev->dev);
    struct vkevent *e = ev->impl;
    if (e && e->pool && e->batch == d->batch && d->recording) return sl__vk_flush(d);
    return SL_OK;
}

static int read_timestamp(struct sl__vk_device *d, struct vkevent *e, uint64_t *t)
{
    VK_TRY(sl__vkGetQueryPoolResults(d->dev, e->pool, 0, 1, sizeof *t, t, sizeof *t,
                                     VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT),
           "vkGetQueryPoolResults");
    return SL_OK;
}

int sl__vk_event_elapsed_ms(sl_event *start, sl_event *end, double *ms)
{
    struct sl__vk_device *d = D(start->dev);
    SL_TRY(sl__vk_event_wait(start));
    SL_TRY(sl__vk_event_wait(end));
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

void sl__vk_event_free(sl_event *ev)
{
    struct vkevent *e = ev->impl;
    if (!e) return;
    if (e->pool) {
        struct sl__vk_device *d = D(ev->dev);
        /* The query may still be in the batch being recorded. */
        if (e->batch == d->batch && d->recording) sl__vk_flush(d);
        sl__vkDestroyQueryPool(d->dev, e->pool, NULL);
    }
    free(e);
}
