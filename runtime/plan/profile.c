/* Profiles for `time` partitions (see plan.h): each unit of the partition timed on a device at
 * the run's micro-batch size, and the cache that keeps them per device and model shape. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/plan/plan.h"

/* Timed runs of each pass after one warm-up; the fastest is kept: on a shared host the other
 * runs measure the neighbours' load, which changes from one run to the next, not the layer. */
#define PROFILE_REPS 5

/* Before each timed pass the host's caches are given other data to hold: as many bytes as the
 * model's parameters and gradients, or as a micro-batch's stash through the whole model if that
 * is more, at least EVICT_MIN and at most EVICT_MAX. In a run a unit's weights come back after
 * the rank has been through its other units (and a stage of several large layers does not keep
 * them all cached), and its activations go out after the other units' stashes; timed alone, over
 * and over, a unit would find both in the cache every time and look faster than it will be (a
 * quarter to a third for layers of 16 MiB, a GPT's forward at 768 rows a fifth: see
 * bench/partition.md). */
#define EVICT_MIN (8u << 20)
#define EVICT_MAX (256u << 20)

/* ------------------------------------------------------------------------------------------------
 * The cache */

static int cache_path(const char *device, char *buf, size_t cap)
{
    char name[64];
    snprintf(name, sizeof name, "profile-%s.json", device);
    for (char *c = name; *c; c++)
        if (*c == ':' || *c == '/') *c = '_';
    const char *dir = getenv("SLUICE_CACHE_DIR");
    int n;
    if (dir && *dir)
        n = snprintf(buf, cap, "%s/%s", dir, name);
    else if ((dir = getenv("XDG_CACHE_HOME")) && *dir)
        n = snprintf(buf, cap, "%s/sluice/%s", dir, name);
    else if ((dir = getenv("HOME")) && *dir)
        n = snprintf(buf, cap, "%s/.cache/sluice/%s", dir, name);
    else
        return sl_fail(SL_EIO, "no cache directory: set SLUICE_CACHE_DIR, XDG_CACHE_HOME or HOME");
    if (n < 0 || (size_t)n >= cap) return sl_fail(SL_EINVAL, "profile cache path too long");
    return SL_OK;
}

/* The model's shape as the profile depends on it: every layer's text and widths, the GPT's
 * config, the loss and the micro-batch rows, hashed (FNV-1a 64), after a version that changes when
 * the profile's method or the kernels' speed does (v4: the cpu backend's own GEMM), so that older
 * profiles are measured again. */
static uint64_t shape_hash(const sl_model *m, const sl_config *cfg, size_t rows)
{
    char buf[512];
    uint64_t h = 1469598103934665603ull;
#define MIX(...)                                                                                   \
    do {                                                                                           \
        snprintf(buf, sizeof buf, __VA_ARGS__);                                                    \
        for (const char *c = buf; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;               \
    } while (0)
    MIX("v4 rows %zu inputs %d loss %d optimizer %d %d", rows, m->inputs, (int)m->loss,
        (int)cfg->train.optimizer.kind, cfg->train.optimizer.momentum > 0);
    for (int i = 0; i < m->nlayers; i++)
        MIX("|%s %d %d", cfg->model.layers[i], m->layers[i].in, m->layers[i].out);
    const sl_gpt_config *g = &cfg->model.gpt;
    if (cfg->model.has_gpt)
        MIX("gpt %d %d %d %d %d %d %d", g->vocab_size, g->block_size, g->n_layer, g->n_head,
            g->n_embd, g->bias, g->tie_embeddings);
#undef MIX
    return h;
}

static cJSON *numbers(const double *v, int n)
{
    return cJSON_CreateDoubleArray(v, n);
}

static bool read_numbers(const cJSON *arr, double *v, int n)
{
    if (cJSON_GetArraySize(arr) != n) return false;
    for (int i = 0; i < n; i++) {
        const cJSON *x = cJSON_GetArrayItem(arr, i);
        if (!cJSON_IsNumber(x) || !(x->valuedouble >= 0)) return false;
        v[i] = x->valuedouble;
    }
    return true;
}

/* 1 when the cache held this device's profile for this shape, 0 when there is none, -1 when it
 * holds one for another shape (or cannot be read: profiled again all the same). */
static int cache_read(const char *path, const char *hash, const char *name, sl_profile *p)
{
    char *text;
    size_t len;
    if (sl_read_file(path, &text, &len) != SL_OK) {
        sl_clear_error();
        return 0;
    }
    cJSON *o = cJSON_ParseWithLength(text, len);
    free(text);
    const char *h = cJSON_GetStringValue(cJSON_GetObjectItem(o, "shape"));
    const char *dn = cJSON_GetStringValue(cJSON_GetObjectItem(o, "device_name"));
    const cJSON *loss = cJSON_GetObjectItem(o, "loss_ms");
    int n = p->units;
    int rc = -1;
    if (h && !strcmp(h, hash) && dn && !strcmp(dn, name) && cJSON_IsNumber(loss) &&
        read_numbers(cJSON_GetObjectItem(o, "f_ms"), p->f, n) &&
        read_numbers(cJSON_GetObjectItem(o, "i_ms"), p->i, n) &&
        read_numbers(cJSON_GetObjectItem(o, "w_ms"), p->w, n) &&
        read_numbers(cJSON_GetObjectItem(o, "link_ms"), p->link, n) &&
        read_numbers(cJSON_GetObjectItem(o, "opt_ms"), p->opt, n)) {
        p->loss_ms = loss->valuedouble;
        rc = 1;
    }
    cJSON_Delete(o);
    return rc;
}

static int cache_write(const char *path, const char *hash, const char *name, const sl_profile *p)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    SL_TRY(sl_mkdir_p(dir));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "device", p->device);
    cJSON_AddStringToObject(o, "device_name", name);
    cJSON_AddStringToObject(o, "shape", hash);
    cJSON_AddNumberToObject(o, "rows", (double)p->rows);
    cJSON_AddItemToObject(o, "f_ms", numbers(p->f, p->units));
    cJSON_AddItemToObject(o, "i_ms", numbers(p->i, p->units));
    cJSON_AddItemToObject(o, "w_ms", numbers(p->w, p->units));
    cJSON_AddItemToObject(o, "link_ms", numbers(p->link, p->units));
    cJSON_AddItemToObject(o, "opt_ms", numbers(p->opt, p->units));
    cJSON_AddNumberToObject(o, "loss_ms", p->loss_ms);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return SL_ENOMEM;
    int rc = sl_write_file(path, text, strlen(text), 0644);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------------------------------------
 * Measuring */

static double fastest(const double *v, int n)
{
    double best = v[0];
    for (int i = 1; i < n; i++) best = fmin(best, v[i]);
    return best;
}

/* Milliseconds a link takes to carry `bytes`, estimated from this host's copy time: a local link
 * copies the payload twice, each copy checking or making its CRC (the sender's into the shared
 * ring, the receiver's out; elsewhere the device's download and the socket's copies come in), about
 * three plain copies' time, plus a message's fixed cost. */
static double link_ms(size_t bytes)
{
    double t[PROFILE_REPS];
    char *a = malloc(bytes ? bytes : 1), *b = malloc(bytes ? bytes : 1);
    if (!a || !b) {
        free(a);
        free(b);
        return 0;
    }
    memset(a, 1, bytes);
    memcpy(b, a, bytes); /* warm-up: the pages are touched */
    for (int r = 0; r < PROFILE_REPS; r++) {
        double t0 = sl_now();
        memcpy(b, a, bytes);
        t[r] = sl_now() - t0;
        a[r % (bytes ? bytes : 1)] = b[0];
    }
    free(a);
    free(b);
    return 3e3 * fastest(t, PROFILE_REPS) + 0.02;
}

/* Other data through the host's caches (see EVICT_MIN); the buffer is the caller's. */
static void evict(unsigned char *junk, size_t bytes, int round)
{
    if (junk) memset(junk, round, bytes);
}

/* One unit on the device: F, I and W timed (each finished on the device), then the step's
 * per-parameter work (clearing the gradients, their sum of squares, the optimizer's update), each
 * after the caches held other data, the fastest of PROFILE_REPS after a warm-up. The first unit
 * computes no input gradient, as in a run. */
static int time_unit(sl_device *dev, const sl_model *m, const sl_config *cfg, const sl_weights *w,
                     size_t rows, int first, int last, bool is_first, unsigned char *junk,
                     size_t junk_bytes, double out[4])
{
    sl_stage *st = NULL;
    sl_stash stash = {0};
    sl_buffer *x = NULL, *dout = NULL, *din = NULL;
    size_t in_bytes = rows * (size_t)sl_model_width(m, first) * sizeof(float);
    size_t out_bytes = rows * (size_t)sl_model_width(m, last) * sizeof(float);
    int rc = sl_stage_create(dev, m, first, last, w, &st);
    if (rc == SL_OK) rc = sl_stash_alloc(st, rows, &stash);
    if (rc == SL_OK) rc = sl_buffer_alloc(dev, in_bytes, &x);
    if (rc == SL_OK) rc = sl_buffer_alloc(dev, out_bytes, &dout);
    if (rc == SL_OK && !is_first) rc = sl_buffer_alloc(dev, in_bytes, &din);
    /* Zeros: token 0 for an embedding, a zero gradient; the kernels' time does not depend on it,
     * and a zero gradient leaves the weights as they are through the optimizer's steps. */
    if (rc == SL_OK) rc = sl_fill(dev, in_bytes / sizeof(float), 0.0f, x);
    if (rc == SL_OK) rc = sl_fill(dev, out_bytes / sizeof(float), 0.0f, dout);
    double t[4][PROFILE_REPS];
    for (int r = -1; r < PROFILE_REPS && rc == SL_OK; r++) {
        for (int k = 0; k < 4 && rc == SL_OK; k++) {
            evict(junk, junk_bytes, r + k);
            double t0 = sl_now(), norm, lr;
            if (k == 0) rc = sl_stage_forward(st, rows, x, &stash);
            if (k == 1) rc = sl_stage_backward_input(st, rows, x, &stash, dout, din);
            if (k == 2) rc = sl_stage_backward_weight(st, rows, x, &stash);
            if (k == 3) rc = sl_stage_zero_grad(st);
            if (k == 3 && rc == SL_OK) rc = sl_stages_step(&st, 1, cfg, 0, true, NULL, &norm, &lr);
            if (rc == SL_OK) rc = sl_device_finish(dev);
            if (r >= 0) t[k][r] = sl_now() - t0;
        }
    }
    if (rc == SL_OK)
        for (int k = 0; k < 4; k++) out[k] = 1e3 * fastest(t[k], PROFILE_REPS);
    sl_buffer_free(x);
    sl_buffer_free(dout);
    sl_buffer_free(din);
    if (stash.n) sl_stash_free(&stash);
    sl_stage_free(st);
    return rc;
}

/* The loss and its gradient on the model's output, timed like a unit. */
static int time_loss(sl_device *dev, const sl_model *m, size_t rows, double *ms)
{
    const sl_loss *loss = sl_loss_get(m->loss);
    size_t pos = (size_t)m->positions;
    size_t out_bytes = rows * (size_t)m->outputs * sizeof(float);
    size_t tbytes = rows * sl_loss_target_width(loss, (size_t)m->outputs, pos) * 4;
    sl_buffer *out = NULL, *target = NULL, *l = NULL, *dout = NULL;
    int rc = sl_buffer_alloc(dev, out_bytes, &out);
    if (rc == SL_OK) rc = sl_buffer_alloc(dev, tbytes, &target);
    if (rc == SL_OK) rc = sl_buffer_alloc(dev, rows * pos * sizeof(float), &l);
    if (rc == SL_OK) rc = sl_buffer_alloc(dev, out_bytes, &dout);
    if (rc == SL_OK) rc = sl_fill(dev, out_bytes / sizeof(float), 0.0f, out);
    if (rc == SL_OK) rc = sl_fill(dev, tbytes / 4, 0.0f, target); /* class 0, or targets 0 */
    double t[PROFILE_REPS];
    for (int r = -1; r < PROFILE_REPS && rc == SL_OK; r++) {
        double t0 = sl_now();
        rc = sl_loss_forward_backward(dev, m, rows, out, target, 1.0f, l, dout);
        if (rc == SL_OK) rc = sl_device_finish(dev);
        if (r >= 0) t[r] = sl_now() - t0;
    }
    if (rc == SL_OK) *ms = 1e3 * fastest(t, PROFILE_REPS);
    sl_buffer_free(out);
    sl_buffer_free(target);
    sl_buffer_free(l);
    sl_buffer_free(dout);
    return rc;
}

static int measure(const sl_model *m, const sl_config *cfg, const int *first, sl_profile *p)
{
    sl_device *dev;
    sl_device_options dopt = {.threads = cfg->train.threads};
    SL_TRY(sl_device_open_with(p->device, &dopt, &dev));
    sl_weights w;
    int rc = sl_weights_from_config(cfg, m, &w);
    bool have_weights = rc == SL_OK;
    double evict = 8.0 * (double)m->nparams;
    double stash = (double)(p->rows * sl_model_stash_bytes(m, 0, m->nlayers));
    evict = SL_MIN(SL_MAX(SL_MAX(evict, stash), (double)EVICT_MIN), (double)EVICT_MAX);
    size_t junk_bytes = (size_t)evict;
    unsigned char *junk = malloc(junk_bytes); /* without it the profile is only warmer */
    for (int u = 0; u < p->units && rc == SL_OK; u++) {
        double t[4];
        rc = time_unit(dev, m, cfg, &w, p->rows, first[u], first[u + 1], u == 0, junk, junk_bytes,
                       t);
        p->f[u] = t[0];
        p->i[u] = t[1];
        p->w[u] = t[2];
        p->opt[u] = t[3];
        p->link[u] = link_ms(p->rows * (size_t)sl_model_width(m, first[u + 1]) * sizeof(float));
    }
    if (rc == SL_OK) rc = time_loss(dev, m, p->rows, &p->loss_ms);
    if (have_weights) sl_weights_free(&w);
    free(junk);
    sl_device_close(dev);
    return rc;
}

/* ------------------------------------------------------------------------------------------------
 * The interface */

void sl_profile_free(sl_profile *p)
{
    if (!p) return;
    free(p->f);
    memset(p, 0, sizeof *p);
}

int sl_profile_get(const sl_model *m, const sl_config *cfg, size_t rows, const char *device,
                   bool refresh, sl_profile *out, char *note, size_t note_cap)
{
    memset(out, 0, sizeof *out);
    if (note_cap) note[0] = '\0';
    snprintf(out->device, sizeof out->device, "%s", device);
    out->rows = rows;
    out->units = sl_partition_units(m, NULL);
    int *first = sl_alloc(sizeof(int) * (size_t)(out->units + 1));
    out->f = sl_alloc(sizeof(double) * 5 * (size_t)out->units);
    if (!first || !out->f) {
        free(first);
        sl_profile_free(out);
        return SL_ENOMEM;
    }
    out->i = out->f + out->units;
    out->w = out->i + out->units;
    out->link = out->w + out->units;
    out->opt = out->link + out->units;
    sl_partition_units(m, first);

    const sl_device_info *infos;
    size_t count;
    const char *name = device;
    if (sl_device_list(&infos, &count) == SL_OK)
        for (size_t k = 0; k < count; k++)
            if (!strcmp(infos[k].id, device)) name = infos[k].name;
    char hash[32], path[4096];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)shape_hash(m, cfg, rows));
    int rc = cache_path(device, path, sizeof path);
    int cached = rc == SL_OK && !refresh ? cache_read(path, hash, name, out) : 0;
    if (cached == 1) {
        out->cached = true;
    } else {
        if (cached < 0)
            snprintf(note, note_cap,
                     "the profile cache %s is for another model shape or device: profiled again",
                     path);
        else if (refresh && note_cap)
            snprintf(note, note_cap, "profiled %s again (refresh)", device);
        if (rc == SL_OK) rc = measure(m, cfg, first, out);
        /* A cache that cannot be written costs a profile next time, nothing more. */
        if (rc == SL_OK && cache_write(path, hash, name, out) != SL_OK) sl_clear_error();
    }
    free(first);
    if (rc != SL_OK) {
        sl_profile_free(out);
        return sl_fail_context(rc, "profiling the layers on %s", device);
    }
    return SL_OK;
}
