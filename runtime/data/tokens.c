/* Token data for a GPT: a UTF-8 text read and tokenised by character, its vocabulary (and
 * vocab.json), the windows at seeded offsets, the validation batches, and token safetensors
 * fixtures. The feature data, the split and the rows of a step are in data.c. See data.h for the
 * exact rules. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/core.h"
#include "runtime/data/data.h"
#include "runtime/data/data_impl.h"
#include "runtime/safetensors/safetensors.h"

/* ------------------------------------------------------------------------------------------------
 * Token safetensors fixtures */

/* Reads tensor t (I32 or I64 [rows, T]) into dst, checking every id is in [0, vocab). */
static int read_token_ids(const char *path, const sl_tensor *t, int vocab, int32_t *dst)
{
    const char *p = t->data;
    size_t cols = (size_t)t->shape[1];
    for (size_t i = 0; i < t->elems; i++) {
        int64_t v;
        if (t->dtype == SL_DTYPE_I64) {
            memcpy(&v, p + 8 * i, 8);
        } else {
            int32_t w;
            memcpy(&w, p + 4 * i, 4);
            v = w;
        }
        if (v < 0 || v >= vocab)
            return sl_fail(SL_ECONFIG,
                           "data %s: tensor '%s' row %zu column %zu: token id %lld is out of range "
                           "[0, %d) (model.gpt.vocab_size)",
                           path, t->name, i / cols, i % cols, (long long)v, vocab);
        dst[i] = (int32_t)v;
    }
    return SL_OK;
}

/* A GPT's token windows: x and y I32/I64 [N, T]. */
int sl__data_token_dataset(const sl_config *cfg, const char *path, const sl_safetensors *st,
                           sl_dataset *ds)
{
    int T = cfg->model.gpt.block_size, V = cfg->model.gpt.vocab_size, rc = SL_OK;
    const sl_tensor *t[2] = {sl_safetensors_find(st, cfg->data.inputs),
                             sl_safetensors_find(st, cfg->data.labels)};
    const char *keys[2] = {"inputs", "labels"}, *names[2] = {cfg->data.inputs, cfg->data.labels};
    for (int k = 0; rc == SL_OK && k < 2; k++) {
        if (!t[k])
            rc = sl_fail(SL_ECONFIG, "data %s: no tensor '%s' (set data.%s to the tensor's name)",
                         path, names[k], keys[k]);
        else if (t[k]->ndim != 2 || t[k]->shape[1] != T || t[k]->shape[0] < 1 ||
                 t[k]->shape[0] != t[0]->shape[0] ||
                 (t[k]->dtype != SL_DTYPE_I32 && t[k]->dtype != SL_DTYPE_I64))
            rc = sl_fail(SL_ECONFIG,
                         "data %s: tensor '%s' must be I64 or I32 [N, %d] token ids "
                         "(model.gpt.block_size) with N >= 1%s",
                         path, t[k]->name, T, k ? ", as many rows as x" : "");
    }
    if (rc == SL_OK) {
        ds->tokens = true;
        ds->rows = (size_t)t[0]->shape[0];
        ds->label_width = T;
        ds->ids = sl_alloc(t[0]->elems * sizeof(int32_t));
        ds->labels = sl_alloc(t[1]->elems * sizeof(int32_t));
        if (!ds->ids || !ds->labels) rc = SL_ENOMEM;
    }
    if (rc == SL_OK) rc = read_token_ids(path, t[0], V, ds->ids);
    if (rc == SL_OK) rc = read_token_ids(path, t[1], V, ds->labels);
    return rc;
}

int sl__data_load_token_fixture(const sl_config *cfg, sl_dataset *ds)
{
    sl_safetensors st;
    if (sl_safetensors_load(cfg->data.path, &st) != SL_OK)
        return sl_fail_context(SL_ECONFIG, "data");
    int rc = sl__data_token_dataset(cfg, cfg->data.path, &st, ds);
    sl_safetensors_free(&st);
    return rc;
}

/* ------------------------------------------------------------------------------------------------
 * Text: reading, UTF-8, the character vocabulary, the split and the windows */

bool sl_utf8_next(const unsigned char *b, size_t n, size_t i, uint32_t *cp, size_t *used,
                  size_t *bad)
{
    unsigned c = b[i];
    size_t len;
    unsigned lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
    if (c < 0x80) {
        *cp = c;
        *used = 1;
        return true;
    } else if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        *cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        *cp = c & 0x0f;
        if (c == 0xe0) lo = 0xa0; /* no overlong forms */
        if (c == 0xed) hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        *cp = c & 0x07;
        if (c == 0xf0) lo = 0x90; /* no overlong forms */
        if (c == 0xf4) hi = 0x8f; /* nothing above U+10FFFF */
    } else {
        *bad = i;
        return false;
    }
    for (size_t k = 1; k < len; k++) {
        if (i + k >= n) {
            *bad = i + k;
            return false;
        }
        unsigned t = b[i + k];
        if (t < (k == 1 ? lo : 0x80) || t > (k == 1 ? hi : 0xbf)) {
            *bad = i + k;
            return false;
        }
        *cp = (*cp << 6) | (t & 0x3f);
    }
    *used = len;
    return true;
}

#define SL__CODE_POINTS 0x110000u

/* Tokenises b[0..n-1] by character: d->vocab (the sorted distinct code points), and the token ids
 * into *ids (*len of them). */
static int tokenise(const char *path, const unsigned char *b, size_t n, int vocab_max, sl_data *d,
                    int32_t **ids, size_t *len)
{
    int32_t *t = sl_alloc(sl_mul_size(n ? n : 1, sizeof(int32_t)));
    uint64_t *seen = calloc(SL__CODE_POINTS / 64, sizeof(uint64_t));
    int st = t && seen ? SL_OK : sl_fail(SL_ENOMEM, "data: out of memory tokenising '%s'", path);
    size_t count = 0;
    for (size_t i = 0; st == SL_OK && i < n;) {
        uint32_t cp;
        size_t used, bad;
        if (!sl_utf8_next(b, n, i, &cp, &used, &bad)) {
            if (bad >= n)
                st = sl_fail(SL_ECONFIG,
                             "data %s: the text ends inside the UTF-8 sequence that starts at "
                             "byte offset %zu",
                             path, i);
            else
                st = sl_fail(SL_ECONFIG,
                             "data %s: byte 0x%02x at byte offset %zu is not valid UTF-8 (a text "
                             "must be UTF-8)",
                             path, b[bad], bad);
            break;
        }
        seen[cp >> 6] |= (uint64_t)1 << (cp & 63);
        t[count++] = (int32_t)cp;
        i += used;
    }
    int nv = 0;
    /* The bitmap word by word: most of the code points are absent. */
    for (uint32_t w = 0; st == SL_OK && w < SL__CODE_POINTS / 64; w++)
        for (uint64_t bits = seen[w]; bits; bits &= bits - 1) nv++;
    if (st == SL_OK && nv > vocab_max)
        st = sl_fail(SL_ECONFIG,
                     "data %s: the text has %d distinct characters, more than model.gpt.vocab_size "
                     "(%d)",
                     path, nv, vocab_max);
    if (st == SL_OK && !(d->vocab = sl_alloc(sizeof(uint32_t) * (size_t)(nv ? nv : 1))))
        st = SL_ENOMEM;
    if (st == SL_OK) {
        d->nvocab = 0;
        for (uint32_t w = 0; w < SL__CODE_POINTS / 64; w++)
            for (uint32_t k = 0; seen[w] && k < 64; k++)
                if (seen[w] >> k & 1) d->vocab[d->nvocab++] = w * 64 + k;
        /* Code point -> index in the sorted vocabulary, by binary search. */
        for (size_t i = 0; i < count; i++) {
            uint32_t cp = (uint32_t)t[i];
            int lo = 0, hi = d->nvocab - 1;
            while (lo < hi) {
                int mid = (lo + hi) / 2;
                if (d->vocab[mid] < cp)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            t[i] = lo;
        }
    }
    free(seen);
    if (st != SL_OK) {
        free(t);
        return st;
    }
    *ids = t;
    *len = count;
    return SL_OK;
}

int sl__data_load_text(const sl_config *cfg, sl_data *d)
{
    unsigned char *bytes = NULL;
    size_t n = 0;
    SL_TRY(sl__data_read_file(cfg->data.text, &bytes, &n));
    int st = sl__data_text_from_bytes(cfg, cfg->data.text, bytes, n, d);
    free(bytes);
    return st;
}

int sl__data_text_from_bytes(const sl_config *cfg, const char *path, const unsigned char *bytes,
                             size_t nbytes, sl_data *d)
{
    const sl_gpt_config *g = &cfg->model.gpt;
    if (!cfg->model.has_gpt)
        return sl_fail(SL_ECONFIG, "config: data.text needs model.gpt (got no GPT)");
    size_t T = (size_t)g->block_size;
    d->train.inputs = d->test.inputs = g->block_size;
    d->train.outputs = d->test.outputs = g->vocab_size;
    d->train.tokens = d->test.tokens = true;
    d->train.label_width = d->test.label_width = g->block_size;
    size_t n = 0;
    int32_t *ids = NULL;
    SL_TRY(tokenise(path, bytes, nbytes, g->vocab_size, d, &ids, &n));
    /* nanoGPT: train_data = data[:int(n*(1 - f))], val_data = data[int(n*(1 - f)):]. */
    size_t ntrain = (size_t)((double)n * (1.0 - cfg->data.val_fraction));
    if (ntrain > n) ntrain = n;
    d->text.ids = ids;
    d->text.len = ntrain;
    d->val.ids = n > ntrain ? ids + ntrain : NULL;
    d->val.len = n - ntrain;
    if (ntrain < T + 1)
        return sl_fail(SL_ECONFIG,
                       "data %s: the text's training share has %zu tokens, fewer than "
                       "model.gpt.block_size + 1 (%zu)",
                       path, ntrain, T + 1);
    if (cfg->data.val_fraction > 0 && d->val.len < T + 1)
        return sl_fail(SL_ECONFIG,
                       "data %s: the text's validation share (data.val_fraction %g) has %zu "
                       "tokens, fewer than model.gpt.block_size + 1 (%zu)",
                       path, cfg->data.val_fraction, d->val.len, T + 1);
    return SL_OK;
}

/* Windows of batch k of share `val` (the validation share, else the training share) from the
 * stream data.seed ^ mix(2k + odd). */
static int windows(const sl_data *d, bool val, bool odd, int64_t k, size_t *offsets)
{
    const sl_tokens *s = val ? &d->val : &d->text;
    size_t T = (size_t)d->block_size;
    if (!d->text.ids) return sl_fail(SL_EINVAL, "data: no text, so no windows");
    if (k < 0) return sl_fail(SL_EINVAL, "data: batch %lld has no windows", (long long)k);
    if (s->len < T + 1)
        return sl_fail(SL_EINVAL, "data: the %s share has %zu tokens, fewer than block_size + 1",
                       val ? "validation" : "training", s->len);
    /* The step's own stream: data.seed ^ mix(2k) (mix(2k + 1) for evaluation batches). */
    uint64_t v = 2 * (uint64_t)k + (odd ? 1 : 0);
    uint64_t state = d->seed ^ sl__data_splitmix64(&v);
    size_t span = s->len - T; /* offsets 0 .. len - T - 1 */
    for (int i = 0; i < d->batch; i++) {
        double u = (double)(sl__data_splitmix64(&state) >> 11) * 0x1.0p-53;
        size_t o = (size_t)(u * (double)span);
        offsets[i] = o < span ? o : span - 1;
    }
    return SL_OK;
}

int sl_data_windows(const sl_data *d, int64_t k, size_t *offsets)
{
    return windows(d, false, false, k, offsets);
}

int sl_data_eval_windows(const sl_data *d, bool val, int64_t k, size_t *offsets)
{
    return windows(d, val, true, k, offsets);
}

/* Micro-batch mb of batch k of a text's share: x = S[o .. o+T-1], y = S[o+1 .. o+T]; the windows
 * of an evaluation batch (`eval`) or of a training step. */
int sl__data_text_microbatch(const sl_data *d, bool val, bool eval, int64_t k, int mb, int32_t *x,
                             int32_t *labels)
{
    if (mb < 0 || mb >= d->microbatches)
        return sl_fail(SL_EINVAL, "data: micro-batch %d of %d", mb, d->microbatches);
    size_t *off = sl_alloc(sizeof(size_t) * (size_t)d->batch);
    if (!off) return SL_ENOMEM;
    int st = windows(d, val, val || eval, k, off);
    const sl_tokens *s = val ? &d->val : &d->text;
    size_t per = (size_t)(d->batch / d->microbatches), T = (size_t)d->block_size;
    for (size_t i = 0; st == SL_OK && i < per; i++) {
        size_t o = off[(size_t)mb * per + i];
        if (x) memcpy(x + i * T, s->ids + o, T * sizeof(int32_t));
        if (labels) memcpy(labels + i * T, s->ids + o + 1, T * sizeof(int32_t));
    }
    free(off);
    return st;
}

int sl_data_eval_batch(const sl_data *d, bool val, int64_t k, int mb, int32_t *x, int32_t *labels)
{
    if (val && !d->val.ids)
        return sl_fail(SL_EINVAL, "data: no validation share (data.text with "
                                  "data.val_fraction > 0 has one)");
    if (!d->text.ids) return sl_fail(SL_EINVAL, "data: no text, so no evaluation batches");
    return sl__data_text_microbatch(d, val, true, k, mb, x, labels);
}

int sl_data_vocab_size(const sl_data *d)
{
    return d->text.ids ? d->nvocab : 0;
}

size_t sl_utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Appends code point cp as the body of a JSON string (escaped where JSON requires). */
static size_t json_char(uint32_t cp, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    if (cp == '"' || cp == '\\') {
        out[n++] = '\\';
        out[n++] = (char)cp;
    } else if (cp == '\n' || cp == '\t' || cp == '\r' || cp == '\b' || cp == '\f') {
        out[n++] = '\\';
        out[n++] = cp == '\n' ? 'n' : cp == '\t' ? 't' : cp == '\r' ? 'r' : cp == '\b' ? 'b' : 'f';
    } else if (cp < 0x20) {
        memcpy(out, "\\u00", 4);
        n = 4;
        out[n++] = hex[cp >> 4];
        out[n++] = hex[cp & 15];
    } else {
        n = sl_utf8_put(cp, out);
    }
    return n;
}

int sl_data_write_vocab(const sl_data *d, const char *path)
{
    if (!d->text.ids) return sl_fail(SL_EINVAL, "data: no text, so no vocabulary to write");
    /* Built whole, then written under a temporary name and renamed (sl_write_file): a failure
     * leaves the vocab.json that was there. */
    char *text = sl_alloc((size_t)d->nvocab * 12 + 4);
    if (!text) return SL_ENOMEM;
    size_t len = 0;
    text[len++] = '[';
    for (int i = 0; i < d->nvocab; i++) {
        if (i) text[len++] = ',', text[len++] = ' ';
        text[len++] = '"';
        len += json_char(d->vocab[i], text + len);
        text[len++] = '"';
    }
    text[len++] = ']';
    text[len++] = '\n';
    int rc = sl_write_file(path, text, len, 0644);
    free(text);
    return rc;
}

int sl_data_read_vocab(const char *path, uint32_t **vocab, int *nvocab)
{
    *vocab = NULL;
    *nvocab = 0;
    char *text;
    size_t len;
    /* A vocabulary of the largest model.gpt.vocab_size, every entry escaped: far below this. */
    SL_TRY(sl_read_file_max(path, (size_t)256 << 20, &text, &len));
    int st = sl__data_parse_vocab(path, text, len, vocab, nvocab);
    free(text);
    return st;
}

int sl__data_parse_vocab(const char *path, const char *text, size_t len, uint32_t **vocab,
                         int *nvocab)
{
    *vocab = NULL;
    *nvocab = 0;
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    while (doc && end < text + len && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
        end++;
    if (doc && end != text + len) { /* bytes after the array */
        cJSON_Delete(doc);
        doc = NULL;
    }
    int n = cJSON_IsArray(doc) ? cJSON_GetArraySize(doc) : 0;
    int st = n > 0 ? SL_OK
                   : sl_fail(SL_EFORMAT,
                             "%s: not a vocabulary (a JSON array of one-character "
                             "strings, as sluice train writes it)",
                             path);
    uint32_t *cps = st == SL_OK ? sl_alloc(sizeof(uint32_t) * (size_t)n) : NULL;
    if (st == SL_OK && !cps) st = SL_ENOMEM;
    for (int i = 0; st == SL_OK && i < n; i++) {
        const char *s = cJSON_GetStringValue(cJSON_GetArrayItem(doc, i));
        size_t used = 0, bad = 0, slen = s ? strlen(s) : 0;
        if (!s || slen == 0 ||
            !sl_utf8_next((const unsigned char *)s, slen, 0, &cps[i], &used, &bad) ||
            used != slen) {
            st = sl_fail(SL_EFORMAT, "%s: entry %d is not a string of one character", path, i);
            break;
        }
        for (int j = 0; j < i; j++)
            if (cps[j] == cps[i]) {
                st = sl_fail(SL_EFORMAT, "%s: entries %d and %d are the same character (U+%04X)",
                             path, j, i, (unsigned)cps[i]);
                break;
            }
    }
    cJSON_Delete(doc);
    if (st != SL_OK) {
        free(cps);
        return st;
    }
    *vocab = cps;
    *nvocab = n;
    return SL_OK;
}
