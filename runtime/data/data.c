/* Feature data: CSV, gzip'd CSV and safetensors features read and checked, the train/test split
 * and the rows of a step. The token data for a GPT is in tokens.c. See data.h for the exact rules.
 */
#include "runtime/data/data.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "core/core.h"
#include "runtime/data/data_impl.h"
#include "runtime/safetensors/safetensors.h"

/* ------------------------------------------------------------------------------------------------
 * PRNG and permutations */

uint64_t sl__data_splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void sl_data_permutation(uint64_t seed, size_t n, size_t *perm)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        double u = (double)(sl__data_splitmix64(&s) >> 11) * 0x1.0p-53;
        size_t j = (size_t)(u * (double)i);
        if (j >= i) j = i - 1;
        size_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

/* ------------------------------------------------------------------------------------------------
 * Reading a (gzip'd) file whole */

int sl__data_read_file(const char *path, unsigned char **out, size_t *len)
{
    int fd;
    SL_TRY(sl_open_regular(path, SL_DATA_MAX_BYTES, &fd, NULL));
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        return sl_fail(SL_ENOMEM, "data %s: cannot start reading it (zlib)", path);
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap + 1);
    int st = buf ? SL_OK : sl_fail(SL_ENOMEM, "data: out of memory reading '%s'", path);
    while (st == SL_OK) {
        if (n == cap) {
            /* One byte past the limit tells a file that is too large from one that fits. */
            size_t more = cap <= SL_DATA_MAX_BYTES / 2 ? cap * 2 : SL_DATA_MAX_BYTES + 1;
            unsigned char *bigger = more > cap ? realloc(buf, more + 1) : NULL;
            if (!bigger) {
                st = more > cap ? sl_fail(SL_ENOMEM, "data: out of memory reading '%s'", path)
                                : sl_fail(SL_ELIMIT,
                                          "data %s: more than %zu bytes (once decompressed): "
                                          "too large for sluice to read whole",
                                          path, (size_t)SL_DATA_MAX_BYTES);
                break;
            }
            buf = bigger;
            cap = more;
        }
        int got = gzread(gz, buf + n, (unsigned)SL_MIN(cap - n, (size_t)1 << 30));
        if (got <= 0) break;
        n += (size_t)got;
    }
    /* A gzip stream cut short reads as its first part: zlib reports it after the last read. */
    int err = Z_OK;
    const char *msg = gzerror(gz, &err);
    if (st == SL_OK && err != Z_OK && err != Z_STREAM_END)
        st = sl_fail(SL_EIO, "data %s: %s (a truncated or corrupt gzip file?)", path, msg);
    gzclose(gz);
    if (st != SL_OK) {
        free(buf);
        return st;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * CSV */

/* Growing arrays of floats for CSV parsing. */
typedef struct fvec {
    float *v;
    size_t n, cap;
} fvec;

static int fvec_push(fvec *f, float x)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 4096;
        float *v = realloc(f->v, cap * sizeof(float));
        if (!v) return sl_fail(SL_ENOMEM, "data: out of memory reading CSV");
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = x;
    return SL_OK;
}

/* One line b[0..n-1] (without its newline) of numbers into vals; *ncol is their count. */
static int csv_line(const char *path, size_t lineno, const char *b, size_t n, fvec *vals,
                    size_t *ncol)
{
    const char *p = b, *end = b + n;
    *ncol = 0;
    const char *nul = memchr(b, '\0', n);
    if (nul)
        return sl_fail(SL_ECONFIG,
                       "data %s: line %zu has a NUL byte at byte %zu of the line (a binary or "
                       "corrupt file?)",
                       path, lineno, (size_t)(nul - b) + 1);
    for (;;) {
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        size_t col = *ncol + 1;
        /* strtod would skip a line break as white space and read the next line's number. */
        if (p == end || *p == '\r' || *p == ',')
            return sl_fail(SL_ECONFIG, "data %s: line %zu, column %zu is empty", path, lineno, col);
        char *stop;
        double d = strtod(p, &stop);
        if (stop == p || stop > end)
            return sl_fail(SL_ECONFIG, "data %s: line %zu, column %zu is not a number", path,
                           lineno, col);
        if (!isfinite(d))
            return sl_fail(SL_ECONFIG, "data %s: line %zu, column %zu is %s", path, lineno, col,
                           isnan(d) ? "NaN" : "infinite");
        if (fabs(d) > FLT_MAX)
            return sl_fail(SL_ECONFIG,
                           "data %s: line %zu, column %zu: %g is too large for a 32-bit float (at "
                           "most %g)",
                           path, lineno, col, d, (double)FLT_MAX);
        SL_TRY(fvec_push(vals, (float)d));
        *ncol = col;
        p = stop;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
        if (p == end) return SL_OK;
        if (*p != ',')
            return sl_fail(SL_ECONFIG, "data %s: line %zu: unexpected '%c' after column %zu", path,
                           lineno, isprint((unsigned char)*p) ? *p : '?', col);
        p++;
    }
}

/* Every numeric row of b[0..n-1] (b[n] must be '\0'); *cols is the column count (all rows must
 * agree). */
static int parse_csv(const char *path, const char *b, size_t n, fvec *vals, size_t *rows,
                     size_t *cols)
{
    *rows = *cols = 0;
    size_t lineno = 0;
    for (size_t at = 0; at < n;) {
        const char *line = b + at, *nl = memchr(line, '\n', n - at);
        size_t len = nl ? (size_t)(nl - line) : n - at;
        at += len + 1;
        lineno++;
        size_t skip = 0;
        while (skip < len && (line[skip] == ' ' || line[skip] == '\t' || line[skip] == '\r'))
            skip++;
        if (skip == len || line[skip] == '#') continue;
        size_t ncol;
        SL_TRY(csv_line(path, lineno, line + skip, len - skip, vals, &ncol));
        if (*rows == 0)
            *cols = ncol;
        else if (ncol != *cols)
            return sl_fail(SL_ECONFIG, "data %s: line %zu has %zu columns, earlier lines %zu", path,
                           lineno, ncol, *cols);
        (*rows)++;
    }
    if (*rows == 0) return sl_fail(SL_ECONFIG, "data %s: no rows", path);
    return SL_OK;
}

int sl__data_csv_dataset(const sl_config *cfg, int outputs, const char *path, const char *bytes,
                         size_t n, sl_dataset *ds)
{
    fvec vals = {0};
    size_t rows = 0, cols = 0;
    int st = parse_csv(path, bytes, n, &vals, &rows, &cols);
    bool classes = cfg->model.loss == SL_LOSS_CROSS_ENTROPY;
    size_t ny = classes ? 1 : (size_t)outputs;
    if (st == SL_OK && cols != (size_t)cfg->model.inputs + ny)
        st = sl_fail(SL_ECONFIG,
                     "data %s: rows have %zu columns but model.inputs (%d) + %s (%zu) = %zu", path,
                     cols, cfg->model.inputs, classes ? "one label" : "the targets", ny,
                     (size_t)cfg->model.inputs + ny);
    if (st == SL_OK) {
        ds->rows = rows;
        ds->label_width = classes ? 1 : 0;
        ds->x = sl_alloc(sl_mul_size(rows, (size_t)cfg->model.inputs * sizeof(float)));
        if (classes)
            ds->labels = sl_alloc(sl_mul_size(rows, sizeof(int32_t)));
        else
            ds->targets = sl_alloc(sl_mul_size(rows, ny * sizeof(float)));
        if (!ds->x || (!ds->labels && !ds->targets)) st = SL_ENOMEM;
    }
    for (size_t r = 0; st == SL_OK && r < rows; r++) {
        const float *row = vals.v + r * cols;
        memcpy(ds->x + r * (size_t)cfg->model.inputs, row, (size_t)cfg->model.inputs * 4);
        const float *y = row + cfg->model.inputs;
        if (classes) {
            if (y[0] != floorf(y[0]) || y[0] < 0 || y[0] >= (float)outputs) {
                st = sl_fail(SL_ECONFIG,
                             "data %s: row %zu: label %g is not a class id in [0, %d) (the "
                             "model's last linear layer has %d outputs)",
                             path, r + 1, (double)y[0], outputs, outputs);
                break;
            }
            ds->labels[r] = (int32_t)y[0];
        } else {
            memcpy(ds->targets + r * ny, y, ny * sizeof(float));
        }
    }
    free(vals.v);
    return st;
}

static int load_csv(const sl_config *cfg, int outputs, sl_dataset *ds)
{
    unsigned char *bytes;
    size_t n;
    SL_TRY(sl__data_read_file(cfg->data.path, &bytes, &n));
    int st = sl__data_csv_dataset(cfg, outputs, cfg->data.path, (const char *)bytes, n, ds);
    free(bytes);
    return st;
}

/* ------------------------------------------------------------------------------------------------
 * Safetensors features */

int sl__data_safetensors_dataset(const sl_config *cfg, int outputs, const char *path,
                                 const sl_safetensors *st, sl_dataset *ds)
{
    const sl_tensor *x = sl_safetensors_find(st, cfg->data.inputs);
    const sl_tensor *y = sl_safetensors_find(st, cfg->data.labels);
    bool classes = cfg->model.loss == SL_LOSS_CROSS_ENTROPY;
    int in = cfg->model.inputs, rc = SL_OK;
    if (!x || !y) {
        rc = sl_fail(SL_ECONFIG, "data %s: no tensor '%s' (set data.%s to the tensor's name)", path,
                     !x ? cfg->data.inputs : cfg->data.labels, !x ? "inputs" : "labels");
    } else if (x->ndim != 2 || x->shape[1] != in || x->shape[0] < 1) {
        rc = sl_fail(SL_ECONFIG, "data %s: tensor '%s' must be [N, %d] (model.inputs) with N >= 1",
                     path, x->name, in);
    } else if (x->dtype != SL_DTYPE_F32 && x->dtype != SL_DTYPE_F64) {
        rc = sl_fail(SL_ECONFIG, "data %s: tensor '%s' is %s, expected F32", path, x->name,
                     sl_dtype_name(x->dtype));
    } else if (classes && (y->ndim != 1 || y->shape[0] != x->shape[0] ||
                           (y->dtype != SL_DTYPE_I32 && y->dtype != SL_DTYPE_I64))) {
        rc = sl_fail(SL_ECONFIG,
                     "data %s: tensor '%s' must be I64 or I32 [%lld] class ids for cross_entropy",
                     path, y->name, (long long)x->shape[0]);
    } else if (!classes &&
               ((!(y->ndim == 2 && y->shape[1] == outputs) && !(y->ndim == 1 && outputs == 1)) ||
                y->shape[0] != x->shape[0] ||
                (y->dtype != SL_DTYPE_F32 && y->dtype != SL_DTYPE_F64))) {
        rc = sl_fail(SL_ECONFIG, "data %s: tensor '%s' must be F32 [%lld, %d] targets for mse",
                     path, y->name, (long long)x->shape[0], outputs);
    }
    if (rc == SL_OK) {
        ds->rows = (size_t)x->shape[0];
        ds->label_width = classes ? 1 : 0;
        ds->x = sl_alloc(x->elems * sizeof(float));
        if (classes)
            ds->labels = sl_alloc(y->elems * sizeof(int32_t));
        else
            ds->targets = sl_alloc(y->elems * sizeof(float));
        if (!ds->x || (!ds->labels && !ds->targets)) rc = SL_ENOMEM;
    }
    if (rc == SL_OK) {
        /* The conversions refuse NaN, infinities and values beyond float's range. */
        rc = sl_tensor_to_f32(x, ds->x);
        if (rc == SL_OK)
            rc = classes ? sl_tensor_to_i32(y, ds->labels) : sl_tensor_to_f32(y, ds->targets);
        if (rc != SL_OK) return sl_fail_context(SL_ECONFIG, "data %s", path);
    }
    for (size_t i = 0; rc == SL_OK && classes && i < ds->rows; i++)
        if (ds->labels[i] < 0 || ds->labels[i] >= outputs)
            rc = sl_fail(SL_ECONFIG,
                         "data %s: tensor '%s' row %zu: label %d is out of range [0, %d) (the "
                         "model's last linear layer has %d outputs)",
                         path, y->name, i, ds->labels[i], outputs, outputs);
    return rc;
}

static int load_safetensors(const sl_config *cfg, int outputs, sl_dataset *ds)
{
    sl_safetensors st;
    if (sl_safetensors_load(cfg->data.path, &st) != SL_OK)
        return sl_fail_context(SL_ECONFIG, "data");
    int rc = sl__data_safetensors_dataset(cfg, outputs, cfg->data.path, &st, ds);
    sl_safetensors_free(&st);
    return rc;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

int sl_dataset_load(const sl_config *cfg, int outputs, sl_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    ds->inputs = cfg->model.inputs;
    ds->outputs = cfg->model.has_gpt ? cfg->model.gpt.vocab_size : outputs;
    const char *path = cfg->data.path;
    if (!path)
        return sl_fail(SL_EINVAL, "data: data.text '%s' has no rows (load it with sl_data_load)",
                       cfg->data.text ? cfg->data.text : "");
    int st;
    if (cfg->model.has_gpt && ends_with(path, ".safetensors"))
        st = sl__data_load_token_fixture(cfg, ds);
    else if (cfg->model.has_gpt)
        st = sl_fail(SL_ECONFIG, "data.path '%s': a GPT reads a .safetensors file of tokens", path);
    else if (ends_with(path, ".safetensors"))
        st = load_safetensors(cfg, outputs, ds);
    else if (ends_with(path, ".csv") || ends_with(path, ".csv.gz"))
        st = load_csv(cfg, outputs, ds);
    else
        st = sl_fail(SL_ECONFIG, "data.path '%s': expected a .safetensors, .csv or .csv.gz file",
                     path);
    if (st == SL_OK && cfg->data.scale != 1.0) {
        float s = (float)cfg->data.scale;
        for (size_t i = 0; st == SL_OK && i < ds->rows * (size_t)ds->inputs; i++) {
            ds->x[i] *= s;
            if (!isfinite(ds->x[i]))
                st = sl_fail(SL_ECONFIG,
                             "data %s: row %zu, column %zu times data.scale (%g) is too large for "
                             "a 32-bit float",
                             path, i / (size_t)ds->inputs + 1, i % (size_t)ds->inputs + 1,
                             cfg->data.scale);
        }
    }
    if (st != SL_OK) sl_dataset_free(ds);
    return st;
}

void sl_dataset_free(sl_dataset *ds)
{
    if (!ds) return;
    free(ds->x);
    free(ds->ids);
    free(ds->labels);
    free(ds->targets);
    memset(ds, 0, sizeof *ds);
}

/* ------------------------------------------------------------------------------------------------
 * Split and batches */

void sl_dataset_gather(const sl_dataset *ds, const size_t *rows, size_t n, void *x, int32_t *labels,
                       float *targets)
{
    size_t in = (size_t)ds->inputs, out = (size_t)ds->outputs, lw = (size_t)ds->label_width;
    const void *src = ds->tokens ? (const void *)ds->ids : (const void *)ds->x;
    for (size_t i = 0; i < n; i++) {
        size_t r = rows[i];
        /* float and int32 elements are both 4 bytes. */
        if (x) memcpy((char *)x + i * in * 4, (const char *)src + r * in * 4, in * 4);
        if (labels && ds->labels) memcpy(labels + i * lw, ds->labels + r * lw, lw * 4);
        if (targets && ds->targets) memcpy(targets + i * out, ds->targets + r * out, out * 4);
    }
}

static int subset(const sl_dataset *all, const size_t *rows, size_t n, sl_dataset *out)
{
    memset(out, 0, sizeof *out);
    out->rows = n;
    out->inputs = all->inputs;
    out->outputs = all->outputs;
    out->tokens = all->tokens;
    out->label_width = all->label_width;
    if (n == 0) return SL_OK;
    void *x = sl_alloc(sl_mul_size(n, (size_t)all->inputs * 4));
    if (all->tokens)
        out->ids = x;
    else
        out->x = x;
    if (all->labels)
        out->labels = sl_alloc(sl_mul_size(n, (size_t)all->label_width * sizeof(int32_t)));
    if (all->targets) out->targets = sl_alloc(sl_mul_size(n, (size_t)all->outputs * 4));
    if (!x || (!out->labels && !out->targets)) return SL_ENOMEM;
    sl_dataset_gather(all, rows, n, x, out->labels, out->targets);
    return SL_OK;
}

int sl_data_load(const sl_config *cfg, int outputs, sl_data *out)
{
    memset(out, 0, sizeof *out);
    out->batch = cfg->train.batch;
    out->microbatches = cfg->train.microbatches;
    out->shuffle = cfg->data.shuffle;
    out->seed = cfg->data.seed;
    out->perm_epoch = -1;
    if (cfg->model.has_gpt) {
        out->tokens = true;
        out->block_size = cfg->model.gpt.block_size;
        out->label_width = cfg->model.gpt.block_size;
    }
    if (cfg->data.text) {
        int st = sl__data_load_text(cfg, out);
        if (st != SL_OK) sl_data_free(out);
        return st;
    }
    sl_dataset all;
    SL_TRY(sl_dataset_load(cfg, outputs, &all));
    if (!cfg->model.has_gpt) out->label_width = all.label_width;
    size_t n = all.rows;
    size_t ntest = 0;
    if (cfg->data.test_fraction > 0) ntest = (size_t)ceil(cfg->data.test_fraction * (double)n);
    int st = SL_OK;
    if (ntest >= n)
        st = sl_fail(SL_ECONFIG,
                     "config: data.test_fraction (%g) of %zu rows leaves no training rows",
                     cfg->data.test_fraction, n);
    if (st == SL_OK && ntest == 0) {
        out->train = all;
        memset(&all, 0, sizeof all);
        out->test.inputs = out->train.inputs;
        out->test.outputs = out->train.outputs;
        out->test.tokens = out->train.tokens;
        out->test.label_width = out->train.label_width;
        return SL_OK;
    }
    size_t *perm = st == SL_OK ? sl_alloc(sl_mul_size(n, sizeof(size_t))) : NULL;
    if (st == SL_OK && !perm) st = SL_ENOMEM;
    if (st == SL_OK) {
        sl_data_permutation(cfg->data.seed, n, perm);
        st = subset(&all, perm, ntest, &out->test);
        if (st == SL_OK) st = subset(&all, perm + ntest, n - ntest, &out->train);
    }
    free(perm);
    sl_dataset_free(&all);
    if (st != SL_OK) sl_data_free(out);
    return st;
}

void sl_data_free(sl_data *d)
{
    if (!d) return;
    sl_dataset_free(&d->train);
    sl_dataset_free(&d->test);
    free(d->text.ids); /* val.ids points into the same buffer */
    free(d->vocab);
    free(d->perm);
    memset(d, 0, sizeof *d);
}

int sl_data_batch_rows(sl_data *d, int64_t step, size_t *rows)
{
    size_t n = d->train.rows;
    if (d->text.ids) return sl_fail(SL_EINVAL, "data: a text has windows, not rows");
    if (step < 0 || n == 0)
        return sl_fail(SL_EINVAL, "data: step %lld has no rows", (long long)step);
    for (int i = 0; i < d->batch; i++) {
        uint64_t g = (uint64_t)step * (uint64_t)d->batch + (uint64_t)i;
        if (!d->shuffle) {
            rows[i] = (size_t)(g % n);
            continue;
        }
        int64_t epoch = (int64_t)(g / n);
        if (epoch != d->perm_epoch) {
            if (!d->perm && !(d->perm = sl_alloc(sl_mul_size(n, sizeof(size_t))))) return SL_ENOMEM;
            sl_data_permutation(d->seed + 1 + (uint64_t)epoch, n, d->perm);
            d->perm_epoch = epoch;
        }
        rows[i] = d->perm[g % n];
    }
    return SL_OK;
}

int sl_data_microbatch(sl_data *d, int64_t step, int mb, void *x, int32_t *labels, float *targets)
{
    if (mb < 0 || mb >= d->microbatches)
        return sl_fail(SL_EINVAL, "data: micro-batch %d of %d", mb, d->microbatches);
    if (d->text.ids) return sl__data_text_microbatch(d, false, false, step, mb, x, labels);
    size_t *rows = sl_alloc(sizeof(size_t) * (size_t)d->batch);
    if (!rows) return SL_ENOMEM;
    int st = sl_data_batch_rows(d, step, rows);
    size_t per = (size_t)(d->batch / d->microbatches);
    if (st == SL_OK) sl_dataset_gather(&d->train, rows + (size_t)mb * per, per, x, labels, targets);
    free(rows);
    return st;
}
