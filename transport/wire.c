/* The wire format: message type names, header encoding and the header decoder (the one place
 * that reads a link's untrusted bytes, fuzzed by tests/transport/fuzz_header.c). Kept free of
 * libzmq so the fuzzer can build it alone (with crc32c.c). */
#include "transport/transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

/* ------------------------------------------------------------------------------------------------
 * Names and sizes */

int sl_msg_type_known(int type)
{
    switch (type) {
    case SL_MSG_HELLO:
    case SL_MSG_ACTIVATION:
    case SL_MSG_GRADIENT:
    case SL_MSG_DONE:
    case SL_MSG_ABORT:
    case SL_MSG_TIED:
    case SL_MSG_NORM:
    case SL_MSG_SYNC:
        return 1;
    default:
        return 0;
    }
}

const char *sl_step_text(uint64_t step, char *buf, size_t cap)
{
    if (step & SL_STEP_EVAL)
        snprintf(buf, cap, "evaluation batch %llu", (unsigned long long)(step & ~SL_STEP_EVAL));
    else if (step & SL_STEP_VOTE)
        snprintf(buf, cap, "the stop vote after step %llu",
                 (unsigned long long)(step & ~SL_STEP_VOTE));
    else
        snprintf(buf, cap, "step %llu", (unsigned long long)step);
    return buf;
}

const char *sl_msg_type_name(int type)
{
    static const char *const names[SL_MSG_SYNC + 1] = {
        [SL_MSG_HELLO] = "HELLO",       [SL_MSG_ACTIVATION] = "ACTIVATION",
        [SL_MSG_GRADIENT] = "GRADIENT", [SL_MSG_DONE] = "DONE",
        [SL_MSG_ABORT] = "ABORT",       [SL_MSG_TIED] = "TIED",
        [SL_MSG_NORM] = "NORM",         [SL_MSG_SYNC] = "SYNC"};
    return sl_msg_type_known(type) ? names[type] : "unknown";
}

/* ------------------------------------------------------------------------------------------------
 * Encoding: explicit little-endian bytes, so the format does not depend on the host's struct
 * layout or byte order. */

enum {
    OFF_MAGIC = 0,
    OFF_VERSION = 4,
    OFF_TYPE = 6,
    OFF_RUN = 8,
    OFF_SRC = 16,
    OFF_DST = 20,
    OFF_STEP = 24,
    OFF_STAGE = 32,
    OFF_MB = 36,
    OFF_SEQ = 40,
    OFF_DTYPE = 48,
    OFF_NDIM = 50,
    OFF_FLAGS = 52,
    OFF_SHAPE = 56,
    OFF_PAYLOAD = 120,
    OFF_AUX = 128,
    OFF_CRC = 136,
    /* 140..143 reserved, zero */
};
_Static_assert(OFF_SHAPE + 8 * SL_WIRE_MAX_NDIM == OFF_PAYLOAD, "header layout");
_Static_assert(OFF_CRC + 8 == SL_WIRE_HEADER_SIZE, "header layout");

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

void sl_wire_encode(const sl_wire_header *h, uint8_t out[SL_WIRE_HEADER_SIZE])
{
    memset(out, 0, SL_WIRE_HEADER_SIZE);
    put32(out + OFF_MAGIC, h->magic);
    put16(out + OFF_VERSION, h->version);
    put16(out + OFF_TYPE, h->type);
    put64(out + OFF_RUN, h->run_id);
    put32(out + OFF_SRC, h->src);
    put32(out + OFF_DST, h->dst);
    put64(out + OFF_STEP, h->step);
    put32(out + OFF_STAGE, h->stage);
    put32(out + OFF_MB, h->mb);
    put64(out + OFF_SEQ, h->seq);
    put16(out + OFF_DTYPE, h->dtype);
    put16(out + OFF_NDIM, h->ndim);
    put32(out + OFF_FLAGS, h->flags);
    for (int i = 0; i < SL_WIRE_MAX_NDIM; i++)
        put64(out + OFF_SHAPE + 8 * i, (uint64_t)h->shape[i]);
    put64(out + OFF_PAYLOAD, h->payload_len);
    put64(out + OFF_AUX, h->aux);
    put32(out + OFF_CRC, h->crc);
}

uint32_t sl_wire_header_crc(const uint8_t raw[SL_WIRE_HEADER_SIZE])
{
    static const uint8_t zero[4];
    uint32_t crc = sl_crc32c(0, raw, OFF_CRC);
    crc = sl_crc32c(crc, zero, sizeof zero);
    return sl_crc32c(crc, raw + OFF_CRC + 4, SL_WIRE_HEADER_SIZE - OFF_CRC - 4);
}

int sl_wire_decode(const void *buf, size_t len, sl_wire_header *h)
{
    const uint8_t *p = buf;
    memset(h, 0, sizeof *h);
    if (!p || len != SL_WIRE_HEADER_SIZE)
        return sl_fail(SL_EFORMAT, "header of %zu bytes (truncated or padded; expected %d)", len,
                       SL_WIRE_HEADER_SIZE);
    h->magic = get32(p + OFF_MAGIC);
    if (h->magic != SL_WIRE_MAGIC)
        return sl_fail(SL_EFORMAT, "bad magic 0x%08x (expected 0x%08x: not a sluice message)",
                       h->magic, SL_WIRE_MAGIC);
    h->version = get16(p + OFF_VERSION);
    if (h->version != SL_WIRE_VERSION)
        return sl_fail(SL_EPROTOCOL, "wire version %u (this build speaks %d: mixed sluice builds?)",
                       h->version, SL_WIRE_VERSION);
    h->type = get16(p + OFF_TYPE);
    if (!sl_msg_type_known(h->type)) return sl_fail(SL_EFORMAT, "unknown message type %u", h->type);
    h->run_id = get64(p + OFF_RUN);
    h->src = get32(p + OFF_SRC);
    h->dst = get32(p + OFF_DST);
    h->step = get64(p + OFF_STEP);
    h->stage = get32(p + OFF_STAGE);
    h->mb = get32(p + OFF_MB);
    h->seq = get64(p + OFF_SEQ);
    h->dtype = get16(p + OFF_DTYPE);
    h->ndim = get16(p + OFF_NDIM);
    h->flags = get32(p + OFF_FLAGS);
    h->payload_len = get64(p + OFF_PAYLOAD);
    h->aux = get64(p + OFF_AUX);
    h->crc = get32(p + OFF_CRC);
    if (h->flags & ~SL_WIRE_FLAG_RING) return sl_fail(SL_EFORMAT, "unknown flags 0x%08x", h->flags);
    if (h->flags && h->type != SL_MSG_HELLO && h->type != SL_MSG_ACTIVATION &&
        h->type != SL_MSG_GRADIENT && h->type != SL_MSG_TIED && h->type != SL_MSG_SYNC)
        return sl_fail(SL_EFORMAT, "%s with the ring flag: only HELLO and tensors use rings",
                       sl_msg_type_name(h->type));
    size_t esize = sl_dtype_size(h->dtype);
    if (!esize) return sl_fail(SL_EFORMAT, "unknown dtype %u", h->dtype);
    if (h->ndim > SL_WIRE_MAX_NDIM)
        return sl_fail(SL_EFORMAT, "ndim %u exceeds the maximum of %d", h->ndim, SL_WIRE_MAX_NDIM);
    uint64_t count = 1;
    for (int i = 0; i < SL_WIRE_MAX_NDIM; i++) {
        int64_t d = (int64_t)get64(p + OFF_SHAPE + 8 * i);
        h->shape[i] = d;
        if (i >= h->ndim) {
            if (d != 0)
                return sl_fail(SL_EFORMAT, "shape[%d] = %lld beyond ndim %u", i, (long long)d,
                               h->ndim);
            continue;
        }
        if (d <= 0)
            return sl_fail(SL_EFORMAT, "shape[%d] = %lld (dimensions must be positive)", i,
                           (long long)d);
        if ((uint64_t)d > UINT64_MAX / count)
            return sl_fail(SL_EFORMAT, "shape overflows: the element count exceeds 2^64");
        count *= (uint64_t)d;
    }
    if (count > UINT64_MAX / esize || count * esize > (uint64_t)SIZE_MAX)
        return sl_fail(SL_EFORMAT, "shape overflows: %llu elements of %zu bytes",
                       (unsigned long long)count, esize);
    if (h->payload_len != count * esize)
        return sl_fail(SL_EFORMAT,
                       "payload length %llu does not match the shape (%llu elements of %s = %llu "
                       "bytes)",
                       (unsigned long long)h->payload_len, (unsigned long long)count,
                       sl_dtype_name(h->dtype), (unsigned long long)(count * esize));
    /* The reductions' messages have one shape each: anything else is not what the peer's
     * schedule sends, whatever a receiver would expect. */
    if (h->type == SL_MSG_TIED && (h->dtype != SL_DTYPE_F32 || h->ndim < 1 || h->ndim > 2))
        return sl_fail(SL_EFORMAT,
                       "TIED message of %s with %u dimensions: it carries a gradient matrix, F32 "
                       "of one or two dimensions",
                       sl_dtype_name(h->dtype), h->ndim);
    if (h->type == SL_MSG_NORM && (h->dtype != SL_DTYPE_F64 || h->ndim != 1 || h->shape[0] != 1))
        return sl_fail(SL_EFORMAT,
                       "NORM message of %s with %u dimensions (first %lld): it carries one F64 "
                       "of shape [1]",
                       sl_dtype_name(h->dtype), h->ndim, (long long)h->shape[0]);
    if (h->type == SL_MSG_SYNC &&
        (h->ndim != 1 || h->dtype != (h->mb ? SL_DTYPE_F64 : SL_DTYPE_F32) ||
         (h->mb && h->shape[0] != 1) || h->mb > 1))
        return sl_fail(SL_EFORMAT,
                       "SYNC message %u of %s with %u dimensions (first %lld): it carries F32 "
                       "gradients of shape [n] (mb 0) or one F64 loss sum of shape [1] (mb 1)",
                       h->mb, sl_dtype_name(h->dtype), h->ndim, (long long)h->shape[0]);
    return SL_OK;
}
