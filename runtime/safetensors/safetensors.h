/* sluice safetensors: read and write the safetensors format (https://github.com/huggingface/
 * safetensors) used for weights, data sets and test fixtures.
 *
 * A file is an 8-byte little-endian header length H, H bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "string value"}}
 * and the data, with offsets relative to the end of the header. The reader trusts nothing: every
 * field is checked (header length within the file, known dtype, shape of non-negative integers,
 * shape x dtype size equal to end - begin without overflow, offsets within the data, the
 * tensors tiling the data exactly as the reference implementation requires (no overlap, no
 * hole, nothing after the last), no duplicate names, nothing but padding after the header's JSON,
 * no NUL byte in it) and a failure is SL_EFORMAT naming the tensor.
 * The writer puts tensors in name order, pads the header with spaces to a multiple of 8 so the
 * data is 8-byte aligned, and writes metadata as string pairs. */
#ifndef SL_SAFETENSORS_H
#define SL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_TENSOR_MAX_DIMS 8

typedef struct sl_tensor {
    const char *name;
    enum sl_dtype dtype;
    int ndim;
    int64_t shape[SL_TENSOR_MAX_DIMS];
    size_t elems;
    size_t nbytes;
    const void *data; /* little-endian; NOT necessarily aligned: read with memcpy or sl_tensor_* */
} sl_tensor;

typedef struct sl_safetensors {
    size_t count;
    sl_tensor *tensors; /* in name order */
    size_t nmeta;
    char **meta_keys, **meta_values;
    void *blob; /* the file's bytes; tensors point into it */
    size_t blob_size;
} sl_safetensors;

/* The largest file sl_safetensors_load reads (it holds the whole file in memory). */
#define SL_SAFETENSORS_MAX_BYTES ((size_t)16 << 30)

/* Parses a whole file held in memory. The bytes are copied, so `bytes` may be freed after. */
int sl_safetensors_parse(const void *bytes, size_t size, sl_safetensors *out);
/* Reads and parses a regular file of at most SL_SAFETENSORS_MAX_BYTES (sl_read_file_max's
 * checks); messages name the path. */
int sl_safetensors_load(const char *path, sl_safetensors *out);
void sl_safetensors_free(sl_safetensors *st);

/* The tensor called `name`, or NULL. */
const sl_tensor *sl_safetensors_find(const sl_safetensors *st, const char *name);
/* The metadata value of `key`, or NULL. */
const char *sl_safetensors_meta(const sl_safetensors *st, const char *key);

/* Converts a tensor's elements to float (from F32 or F64; a NaN, an infinity or an F64 value
 * beyond float's range is SL_EFORMAT naming the tensor and the element) or int32 (from I32 or
 * I64, checking each value fits) into dst[t->elems]. Other dtypes are SL_EFORMAT. */
int sl_tensor_to_f32(const sl_tensor *t, float *dst);
int sl_tensor_to_i32(const sl_tensor *t, int32_t *dst);

/* Writes `n` tensors (name, dtype, ndim, shape and data are used; elems and nbytes are computed)
 * and `nmeta` metadata pairs. Names must be unique and not "__metadata__". */
int sl_safetensors_save(const char *path, const sl_tensor *tensors, size_t n,
                        const char *const *meta_keys, const char *const *meta_values, size_t nmeta);

#ifdef __cplusplus
}
#endif
#endif
