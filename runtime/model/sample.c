/* Sampling text from a GPT as nanoGPT's sample.py does: the PRNG, the choice of one token from a
 * row of logits, and the generation loop over a one-stage model on one row. See model.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/model/model.h"

/* ------------------------------------------------------------------------------------------------
 * PRNG: xoshiro256** seeded through splitmix64 */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void sl_rng_seed(sl_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

uint64_t sl_rng_next(sl_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double sl_rng_uniform(sl_rng *r)
{
    return (double)(sl_rng_next(r) >> 11) * 0x1.0p-53;
}

/* ------------------------------------------------------------------------------------------------
 * One token from a row of logits */

static int desc_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

int sl_sample_pick(const float *logits, int n, float temperature, int top_k, sl_rng *rng,
                   float *work, int *token)
{
    if (n < 1 || !(temperature > 0) || top_k < 0)
        return sl_fail(SL_EINVAL,
                       "sample: %d classes, temperature %g, top_k %d (want >= 1, > 0, "
                       ">= 0)",
                       n, (double)temperature, top_k);
    int best = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(logits[i]))
            return sl_fail(SL_EFORMAT,
                           "sample: the logit of token %d is NaN (do the weights hold "
                           "NaN or infinity?)",
                           i);
        if (logits[i] > logits[best]) best = i;
    }
    if (top_k == 1) {
        *token = best;
        return SL_OK;
    }
    /* logits / temperature, as torch divides a float tensor */
    for (int i = 0; i < n; i++) work[i] = logits[i] / temperature;
    float max = work[best], cut = -INFINITY;
    if (top_k > 0 && top_k < n) {
        /* torch.topk's k-th value: the k-th of the sorted scaled logits (ties stay in, as
         * sample.py's `logits[logits < v[:, [-1]]] = -inf` keeps them) */
        float *sorted = sl_alloc(sizeof(float) * (size_t)n);
        if (!sorted) return SL_ENOMEM;
        memcpy(sorted, work, sizeof(float) * (size_t)n);
        qsort(sorted, (size_t)n, sizeof(float), desc_float);
        cut = sorted[top_k - 1];
        free(sorted);
    }
    if (max == INFINITY || max == -INFINITY) {
        /* no softmax to take: the first of the largest (+inf) or of all (-inf) */
        *token = best;
        return SL_OK;
    }
    double sum = 0;
    for (int i = 0; i < n; i++) sum += work[i] >= cut ? exp((double)work[i] - (double)max) : 0.0;
    double u = sl_rng_uniform(rng) * sum, acc = 0;
    int last = best;
    for (int i = 0; i < n; i++) {
        if (!(work[i] >= cut)) continue;
        double p = exp((double)work[i] - (double)max);
        if (p > 0) last = i;
        acc += p;
        if (acc > u) {
            *token = i;
            return SL_OK;
        }
    }
    *token = last; /* rounding left u at the very top: the last token with a probability */
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Generation */

struct sl_generator {
    sl_device *dev;
    const sl_model *model;
    sl_stage *stage;
    sl_stash stash;
    sl_buffer *input; /* [1, T] int32 */
    int32_t *window;  /* [T] */
    int T, V;
};

int sl_generator_create(sl_device *dev, const sl_model *m, const sl_weights *w, sl_generator **out)
{
    *out = NULL;
    if (m->nlayers < 1 || strcmp(m->layers[0].kind->name, "embedding") != 0)
        return sl_fail(SL_EINVAL,
                       "sample: the model is not a GPT (its first layer is %s, not "
                       "embedding)",
                       m->nlayers ? m->layers[0].kind->name : "missing");
    sl_generator *g = sl_alloc(sizeof *g);
    if (!g) return SL_ENOMEM;
    g->dev = dev;
    g->model = m;
    g->T = m->layers[0].gpt.block_size;
    g->V = m->layers[0].gpt.vocab_size;
    int st = sl_stage_create(dev, m, 0, m->nlayers, w, &g->stage);
    if (st == SL_OK) st = sl_stash_alloc(g->stage, 1, &g->stash);
    if (st == SL_OK) st = sl_buffer_alloc(dev, (size_t)g->T * 4, &g->input);
    if (st == SL_OK && !(g->window = sl_alloc((size_t)g->T * 4))) st = SL_ENOMEM;
    if (st != SL_OK) {
        sl_generator_free(g);
        return st;
    }
    *out = g;
    return SL_OK;
}

void sl_generator_free(sl_generator *g)
{
    if (!g) return;
    sl_stash_free(&g->stash);
    sl_stage_free(g->stage);
    sl_buffer_free(g->input);
    free(g->window);
    free(g);
}

int sl_generator_logits(sl_generator *g, const int32_t *ids, size_t n, float *logits)
{
    if (n < 1) return sl_fail(SL_EINVAL, "sample: the context is empty");
    size_t T = (size_t)g->T, V = (size_t)g->V;
    if (n > T) { /* idx_cond = idx[:, -block_size:] */
        ids += n - T;
        n = T;
    }
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= g->V)
            return sl_fail(SL_EINVAL, "sample: token id %d is outside the vocabulary [0, %d)",
                           (int)ids[i], g->V);
        g->window[i] = ids[i];
    }
    for (size_t i = n; i < T; i++) g->window[i] = 0; /* any valid id: position n-1 never sees it */
    SL_TRY(sl_buffer_upload(g->input, 0, g->window, T * 4));
    SL_TRY(sl_stage_forward(g->stage, 1, g->input, &g->stash));
    /* the output is [T, V] logits: row n-1 */
    return sl_buffer_download(sl_stash_output(&g->stash), (n - 1) * V * 4, logits, V * 4);
}

int sl_generate(sl_generator *g, int32_t *ids, size_t n, size_t count, const sl_sample_options *opt,
                int (*emit)(int32_t token, void *ctx), void *ctx)
{
    int classes = opt->classes > 0 ? SL_MIN(opt->classes, g->V) : g->V;
    float *logits = sl_alloc(sizeof(float) * (size_t)g->V);
    float *work = sl_alloc(sizeof(float) * (size_t)g->V);
    int st = logits && work ? SL_OK : SL_ENOMEM;
    sl_rng rng;
    sl_rng_seed(&rng, opt->seed);
    for (size_t k = 0; st == SL_OK && k < count; k++) {
        int token = 0;
        st = sl_generator_logits(g, ids, n + k, logits);
        if (st == SL_OK)
            st = sl_sample_pick(logits, classes, opt->temperature, opt->top_k, &rng, work, &token);
        if (st != SL_OK) break;
        ids[n + k] = token;
        if (emit) st = emit(token, ctx);
    }
    free(logits);
    free(work);
    return st;
}
