/* safetensors reader and writer. See safetensors.h for the format and the checks. */
#include "runtime/safetensors/safetensors.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

/* Headers larger than this are refused before parsing (the reference implementation uses 100 MB).
 */
#define MAX_HEADER ((uint64_t)100 << 20)

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = sl_alloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ------------------------------------------------------------------------------------------------
 * Reader */

/* A JSON number that is an integer in [0, 2^53]. */
static int get_index(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d)) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const sl_tensor *)a)->name, ((const sl_tensor *)b)->name);
}

/* By start offset, an empty tensor before a non-empty one at the same offset. */
static int cmp_by_offset(const void *a, const void *b)
{
    const sl_tensor *x = *(const sl_tensor *const *)a, *y = *(const sl_tensor *const *)b;
    const char *px = x->data, *py = y->data;
    if (px != py) return px < py ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int parse_tensor(const cJSON *item, const char *data, uint64_t data_size, sl_tensor *t)
{
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return sl_fail(SL_EFORMAT, "tensor '%s': header entry is not an object", name);
    for (const cJSON *k = item->child; k; k = k->next)
        if (strcmp(k->string, "dtype") && strcmp(k->string, "shape") &&
            strcmp(k->string, "data_offsets"))
            return sl_fail(SL_EFORMAT, "tensor '%s': unknown header field '%s'", name, k->string);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt)) return sl_fail(SL_EFORMAT, "tensor '%s': no dtype string", name);
    t->dtype = SL_DTYPE_COUNT;
    for (int i = 1; i < SL_DTYPE_COUNT; i++)
        if (!strcmp(dt->valuestring, sl_dtype_name(i))) t->dtype = (enum sl_dtype)i;
    if (t->dtype == SL_DTYPE_COUNT)
        return sl_fail(SL_EFORMAT,
                       "tensor '%s': dtype '%.16s' is not supported (F32, F16, BF16, "
                       "F64, I32, I64, U8)",
                       name, dt->valuestring);
    if (!cJSON_IsArray(shape)) return sl_fail(SL_EFORMAT, "tensor '%s': no shape array", name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > SL_TENSOR_MAX_DIMS)
        return sl_fail(SL_EFORMAT, "tensor '%s': %d dimensions (at most %d)", name, ndim,
                       SL_TENSOR_MAX_DIMS);
    t->ndim = ndim;
    size_t elems = 1;
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        uint64_t v;
        if (!get_index(d, &v))
            return sl_fail(SL_EFORMAT, "tensor '%s': shape[%d] is not a non-negative integer", name,
                           i);
        t->shape[i] = (int64_t)v;
        if (v != 0 && elems > SIZE_MAX / v)
            return sl_fail(SL_EFORMAT, "tensor '%s': shape overflows", name);
        elems *= (size_t)v;
    }
    t->elems = elems;
    size_t nbytes = sl_mul_size(elems, sl_dtype_size(t->dtype));
    if (elems && !nbytes) return sl_fail(SL_EFORMAT, "tensor '%s': size overflows", name);
    uint64_t b, e;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !get_index(cJSON_GetArrayItem(offs, 0), &b) || !get_index(cJSON_GetArrayItem(offs, 1), &e))
        return sl_fail(SL_EFORMAT, "tensor '%s': data_offsets must be [begin, end]", name);
    if (b > e)
        return sl_fail(SL_EFORMAT, "tensor '%s': data_offsets [%llu, %llu] end before they begin",
                       name, (unsigned long long)b, (unsigned long long)e);
    if (e > data_size)
        return sl_fail(SL_EFORMAT,
                       "tensor '%s': data_offsets [%llu, %llu] end past the %llu data bytes after "
                       "the header (a truncated file?)",
                       name, (unsigned long long)b, (unsigned long long)e,
                       (unsigned long long)data_size);
    if (e - b != nbytes)
        return sl_fail(SL_EFORMAT,
                       "tensor '%s': %s shape needs %zu bytes but data_offsets span %llu", name,
                       sl_dtype_name(t->dtype), nbytes, (unsigned long long)(e - b));
    t->nbytes = nbytes;
    t->data = data + b;
    return SL_OK;
}

static int parse_meta(const cJSON *meta, sl_safetensors *out)
{
    if (!cJSON_IsObject(meta)) return sl_fail(SL_EFORMAT, "__metadata__ is not an object");
    size_t n = (size_t)cJSON_GetArraySize(meta);
    out->meta_keys = sl_alloc(sizeof(char *) * (n + 1));
    out->meta_values = sl_alloc(sizeof(char *) * (n + 1));
    if (!out->meta_keys || !out->meta_values) return SL_ENOMEM;
    for (const cJSON *m = meta->child; m; m = m->next) {
        if (!cJSON_IsString(m))
            return sl_fail(SL_EFORMAT, "__metadata__ '%s' is not a string", m->string);
        out->meta_keys[out->nmeta] = dup_str(m->string);
        out->meta_values[out->nmeta] = dup_str(m->valuestring);
        if (!out->meta_keys[out->nmeta] || !out->meta_values[out->nmeta]) return SL_ENOMEM;
        out->nmeta++;
    }
    return SL_OK;
}

static int parse(sl_safetensors *out)
{
    const unsigned char *p = out->blob;
    size_t size = out->blob_size;
    if (size < 8) return sl_fail(SL_EFORMAT, "%zu bytes is too short for a header length", size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen > MAX_HEADER)
        return sl_fail(SL_EFORMAT,
                       "header length %llu is more than 100 MB (not a safetensors file?)",
                       (unsigned long long)hlen);
    if (hlen > size - 8)
        return sl_fail(SL_EFORMAT,
                       "header length %llu is more than the %zu bytes after it (a truncated file, "
                       "or not a safetensors file)",
                       (unsigned long long)hlen, size - 8);
    const char *header = (const char *)p + 8;
    if (hlen < 2 || header[0] != '{') return sl_fail(SL_EFORMAT, "the header is not a JSON object");
    const char *nul = memchr(header, '\0', (size_t)hlen);
    if (nul)
        return sl_fail(SL_EFORMAT, "the header holds a NUL byte at byte %zu of the file",
                       (size_t)(nul - (const char *)p));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(header, (size_t)hlen, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return sl_fail(SL_EFORMAT, "the header is not valid JSON");
    }
    /* What follows the JSON in the header may only be the writer's padding. */
    for (const char *q = end; q < header + hlen; q++) {
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            cJSON_Delete(root);
            return sl_fail(SL_EFORMAT,
                           "the header has bytes after its JSON object (at byte %zu of the file)",
                           (size_t)(q - (const char *)p));
        }
    }
    const char *data = header + hlen;
    uint64_t data_size = size - 8 - hlen;
    size_t n = 0;
    for (const cJSON *it = root->child; it; it = it->next)
        n += strcmp(it->string, "__metadata__") != 0;
    int st = SL_OK;
    out->tensors = sl_alloc(sizeof(sl_tensor) * (n + 1));
    if (!out->tensors) st = SL_ENOMEM;
    for (const cJSON *it = root->child; st == SL_OK && it; it = it->next) {
        if (!strcmp(it->string, "__metadata__")) {
            if (out->meta_keys)
                st = sl_fail(SL_EFORMAT, "__metadata__ appears twice");
            else
                st = parse_meta(it, out);
            continue;
        }
        sl_tensor *t = &out->tensors[out->count];
        if (!it->string[0]) {
            st = sl_fail(SL_EFORMAT, "a tensor has an empty name");
        } else if (!(t->name = dup_str(it->string))) {
            st = SL_ENOMEM;
        } else {
            out->count++;
            st = parse_tensor(it, data, data_size, t);
        }
    }
    cJSON_Delete(root);
    if (st != SL_OK) return st;
    qsort(out->tensors, out->count, sizeof(sl_tensor), cmp_tensor);
    for (size_t i = 1; i < out->count; i++)
        if (!strcmp(out->tensors[i].name, out->tensors[i - 1].name))
            return sl_fail(SL_EFORMAT, "tensor '%s' appears twice", out->tensors[i].name);
    /* As the reference implementation: the tensors tile the data exactly, in offset order, with
     * no overlap, no hole and nothing after the last one (a file with more is corrupt or has
     * something appended). */
    const sl_tensor **by = sl_alloc(sizeof(sl_tensor *) * (out->count + 1));
    if (!by) return SL_ENOMEM;
    for (size_t i = 0; i < out->count; i++) by[i] = &out->tensors[i];
    qsort(by, out->count, sizeof *by, cmp_by_offset);
    uint64_t at = 0;
    const sl_tensor *prev = NULL;
    for (size_t i = 0; st == SL_OK && i < out->count; i++) {
        uint64_t b = (uint64_t)((const char *)by[i]->data - data);
        if (b < at)
            st = sl_fail(SL_EFORMAT, "tensors '%s' and '%s' overlap", prev->name, by[i]->name);
        else if (b > at)
            st = sl_fail(SL_EFORMAT,
                         "data bytes [%llu, %llu) belong to no tensor (a hole before "
                         "tensor '%s')",
                         (unsigned long long)at, (unsigned long long)b, by[i]->name);
        at = b + by[i]->nbytes;
        prev = by[i];
    }
    if (st == SL_OK && at != data_size)
        st = sl_fail(SL_EFORMAT,
                     "the file has %llu bytes after the last tensor's data (the header describes "
                     "%llu data bytes): a corrupt file, or one with something appended",
                     (unsigned long long)(data_size - at), (unsigned long long)at);
    free(by);
    return st;
}

int sl_safetensors_parse(const void *bytes, size_t size, sl_safetensors *out)
{
    memset(out, 0, sizeof *out);
    if (!bytes && size) return sl_fail(SL_EINVAL, "safetensors: no bytes");
    out->blob = sl_alloc(size + 1);
    if (!out->blob) return SL_ENOMEM;
    if (size) memcpy(out->blob, bytes, size);
    out->blob_size = size;
    int st = parse(out);
    if (st != SL_OK) sl_safetensors_free(out);
    return st;
}

int sl_safetensors_load(const char *path, sl_safetensors *out)
{
    memset(out, 0, sizeof *out);
    char *data = NULL;
    size_t size = 0;
    int st = sl_read_file_max(path, SL_SAFETENSORS_MAX_BYTES, &data, &size);
    if (st != SL_OK) return st;
    out->blob = data;
    out->blob_size = size;
    st = parse(out);
    if (st != SL_OK) {
        sl_safetensors_free(out);
        return sl_fail_context(st, "%s", path);
    }
    return SL_OK;
}

void sl_safetensors_free(sl_safetensors *st)
{
    if (!st) return;
    for (size_t i = 0; st->tensors && i < st->count; i++) free((char *)st->tensors[i].name);
    free(st->tensors);
    for (size_t i = 0; i < st->nmeta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    free(st->blob);
    memset(st, 0, sizeof *st);
}

const sl_tensor *sl_safetensors_find(const sl_safetensors *st, const char *name)
{
    for (size_t i = 0; i < st->count; i++)
        if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}

const char *sl_safetensors_meta(const sl_safetensors *st, const char *key)
{
    for (size_t i = 0; i < st->nmeta; i++)
        if (!strcmp(st->meta_keys[i], key)) return st->meta_values[i];
    return NULL;
}

/* "element [i, j, k]" of a refused value, by the tensor's shape. */
static int bad_value(const sl_tensor *t, size_t flat, const char *what)
{
    char idx[SL_TENSOR_MAX_DIMS * 22 + 4] = "";
    size_t used = 0;
    for (int d = t->ndim - 1, first = 1; d >= 0; d--, first = 0) {
        size_t dim = t->shape[d] > 0 ? (size_t)t->shape[d] : 1;
        char part[24];
        snprintf(part, sizeof part, "%zu%s", flat % dim, first ? "" : ", ");
        size_t n = strlen(part);
        memmove(idx + n, idx, used + 1);
        memcpy(idx, part, n);
        used += n;
        flat /= dim;
    }
    return sl_fail(SL_EFORMAT, "tensor '%s' element [%s] is %s", t->name, idx, what);
}

int sl_tensor_to_f32(const sl_tensor *t, float *dst)
{
    const char *p = t->data;
    if (t->dtype == SL_DTYPE_F32) {
        memcpy(dst, p, t->elems * 4);
        for (size_t i = 0; i < t->elems; i++)
            if (!isfinite(dst[i])) return bad_value(t, i, isnan(dst[i]) ? "NaN" : "infinite");
    } else if (t->dtype == SL_DTYPE_F64) {
        for (size_t i = 0; i < t->elems; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            if (!isfinite(d)) return bad_value(t, i, isnan(d) ? "NaN" : "infinite");
            if (fabs(d) > FLT_MAX) {
                char what[64];
                snprintf(what, sizeof what, "%g, too large for a 32-bit float", d);
                return bad_value(t, i, what);
            }
            dst[i] = (float)d;
        }
    } else {
        return sl_fail(SL_EFORMAT, "tensor '%s' is %s, expected F32 or F64", t->name,
                       sl_dtype_name(t->dtype));
    }
    return SL_OK;
}

int sl_tensor_to_i32(const sl_tensor *t, int32_t *dst)
{
    const char *p = t->data;
    if (t->dtype == SL_DTYPE_I32) {
        memcpy(dst, p, t->elems * 4);
    } else if (t->dtype == SL_DTYPE_I64) {
        for (size_t i = 0; i < t->elems; i++) {
            int64_t v;
            memcpy(&v, p + 8 * i, 8);
            if (v < INT32_MIN || v > INT32_MAX)
                return sl_fail(SL_EFORMAT, "tensor '%s'[%zu] = %lld does not fit in 32 bits",
                               t->name, i, (long long)v);
            dst[i] = (int32_t)v;
        }
    } else {
        return sl_fail(SL_EFORMAT, "tensor '%s' is %s, expected I32 or I64", t->name,
                       sl_dtype_name(t->dtype));
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Writer */

static int cmp_ptr_name(const void *a, const void *b)
{
    return strcmp((*(const sl_tensor *const *)a)->name, (*(const sl_tensor *const *)b)->name);
}

int sl_safetensors_save(const char *path, const sl_tensor *tensors, size_t n,
                        const char *const *meta_keys, const char *const *meta_values, size_t nmeta)
{
    const sl_tensor **order = sl_alloc(sizeof(sl_tensor *) * (n + 1));
    size_t *sizes = sl_alloc(sizeof(size_t) * (n + 1));
    if (!order || !sizes) {
        free(order);
        free(sizes);
        return SL_ENOMEM;
    }
    int st = SL_OK;
    for (size_t i = 0; i < n; i++) order[i] = &tensors[i];
    qsort(order, n, sizeof *order, cmp_ptr_name);
    cJSON *root = cJSON_CreateObject();
    if (nmeta) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (size_t i = 0; i < nmeta; i++)
            cJSON_AddStringToObject(meta, meta_keys[i], meta_values[i]);
    }
    uint64_t off = 0;
    for (size_t i = 0; st == SL_OK && i < n; i++) {
        const sl_tensor *t = order[i];
        if (!t->name || !t->name[0] || !strcmp(t->name, "__metadata__") ||
            (i && !strcmp(t->name, order[i - 1]->name)) || sl_dtype_size(t->dtype) == 0 ||
            t->ndim < 0 || t->ndim > SL_TENSOR_MAX_DIMS) {
            st = sl_fail(SL_EINVAL,
                         "safetensors %s: tensor '%s' has a bad or duplicate name, "
                         "dtype or rank",
                         path, t->name ? t->name : "(null)");
            break;
        }
        size_t elems = 1;
        for (int d = 0; d < t->ndim; d++) elems *= (size_t)t->shape[d];
        sizes[i] = elems * sl_dtype_size(t->dtype);
        cJSON *o = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(o, "dtype", sl_dtype_name(t->dtype));
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *of = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + sizes[i])));
        off += sizes[i];
    }
    char *header = st == SL_OK ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (st == SL_OK && !header) st = sl_fail(SL_ENOMEM, "safetensors %s: header", path);
    /* Under a temporary name, renamed over `path` once whole: a failed write (a full disk)
     * leaves the file that was there as it was, and says why (sl_out_*). */
    sl_out_file f;
    if (st == SL_OK) st = sl_out_open(&f, path, 0644);
    if (st == SL_OK) {
        size_t hlen = strlen(header);
        size_t padded = (hlen + 7) & ~(size_t)7;
        unsigned char len[8];
        for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)padded >> (8 * i));
        st = sl_out_write(&f, len, 8);
        if (st == SL_OK) st = sl_out_write(&f, header, hlen);
        if (st == SL_OK) st = sl_out_write(&f, "        ", padded - hlen);
        for (size_t i = 0; st == SL_OK && i < n; i++)
            if (sizes[i]) st = sl_out_write(&f, order[i]->data, sizes[i]);
        if (st == SL_OK) st = sl_out_commit(&f);
        sl_out_abort(&f);
    }
    free(header);
    free(order);
    free(sizes);
    return st;
}
