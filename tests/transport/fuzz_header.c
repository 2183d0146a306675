/* libFuzzer target for the wire header decoder: any bytes must decode or be refused, never crash,
 * read out of bounds or overflow, and an accepted header must be self-consistent. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly `size` bytes, so ASan catches any read past the end. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    sl_wire_header h;
    if (sl_wire_decode(buf, size, &h) == 0) {
        size_t es = sl_dtype_size(h.dtype);
        uint64_t n = 1;
        if (!es || h.ndim > SL_WIRE_MAX_NDIM || h.magic != SL_WIRE_MAGIC) abort();
        for (int i = 0; i < h.ndim; i++) {
            if (h.shape[i] <= 0) abort();
            n *= (uint64_t)h.shape[i];
        }
        if (n * es != h.payload_len) abort();
        /* Encoding what was decoded gives back the same bytes. */
        uint8_t again[SL_WIRE_HEADER_SIZE];
        sl_wire_encode(&h, again);
        if (memcmp(again, buf, 140)) abort();
    }
    (void)sl_crc32c(0, buf, size);
    free(buf);
    return 0;
}
