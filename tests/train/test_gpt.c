/* The GPT's layers: model.gpt expands into embedding, blocks and head with nanoGPT's parameter
 * names, shapes and init rules; tied embeddings are one tensor; weights move to and from files by
 * nanoGPT's names; zero-bubble's I/W split gives the full backward's weights bit for bit. */
#include <criterion/criterion.h>
#include <math.h>

#include "helpers.h"
#include "runtime/data/data.h"
#include "runtime/model/model.h"
#include "runtime/safetensors/safetensors.h"

/* nanoGPT's example shape (README of the GPT issue): 0.80 M parameters without wpe. */
#define GPT_SMALL                                                                                  \
    "{\"model\": {\"gpt\": {\"vocab_size\": 65, \"block_size\": 64, \"n_layer\": 4, "              \
    "\"n_head\": 4, \"n_embd\": 128}}, \"data\": {\"path\": \"%s\"}, \"train\": {\"steps\": 2, "   \
    "\"batch\": 4, \"microbatches\": 2, \"optimizer\": {\"name\": \"adamw\", \"lr\": 0.001}}}"

static char fixture[600];

static void setup(void)
{
    snprintf(fixture, sizeof fixture, "%s/tests/fixtures/torch_gpt_tied.safetensors", source_dir());
}

TestSuite(gpt, .init = setup);

static void load(const char *json_fmt, const char *const *sets, int nsets, sl_config *cfg,
                 sl_model *m)
{
    char json[2048];
    snprintf(json, sizeof json, json_fmt, fixture);
    cr_assert_eq(sl_config_parse(json, tmpdir(), sets, nsets, cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_model_init(cfg, m), SL_OK, "%s", sl_last_error());
}

Test(gpt, expands_into_nanogpt_layers_and_names)
{
    sl_config cfg;
    sl_model m;
    load(GPT_SMALL, NULL, 0, &cfg, &m);
    cr_assert_eq(m.nlayers, 6);
    cr_assert_str_eq(m.layers[0].kind->name, "embedding");
    cr_assert_str_eq(m.layers[1].kind->name, "block");
    cr_assert_str_eq(m.layers[4].kind->name, "block");
    cr_assert_str_eq(m.layers[5].kind->name, "head");
    cr_assert_eq(m.inputs, 64);
    cr_assert_eq(m.layers[0].out, 64 * 128);
    cr_assert_eq(m.outputs, 64 * 65);
    cr_assert_eq(m.positions, 64);
    cr_assert_eq(m.classes, 65);
    static const char *const names[] = {
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.h.0.ln_1.weight",
        "transformer.h.0.ln_1.bias",
        "transformer.h.0.attn.c_attn.weight",
        "transformer.h.0.attn.c_attn.bias",
        "transformer.h.0.attn.c_proj.weight",
        "transformer.h.0.attn.c_proj.bias",
        "transformer.h.0.ln_2.weight",
        "transformer.h.0.ln_2.bias",
        "transformer.h.0.mlp.c_fc.weight",
        "transformer.h.0.mlp.c_fc.bias",
        "transformer.h.0.mlp.c_proj.weight",
        "transformer.h.0.mlp.c_proj.bias",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++)
        cr_assert_str_eq(m.params[i].name, names[i], "parameter %zu", i);
    int p = sl_model_find_param(&m, "transformer.h.3.attn.c_attn.weight");
    cr_assert_geq(p, 0);
    cr_assert_eq(m.params[p].spec.shape[0], 3 * 128);
    cr_assert_eq(m.params[p].spec.shape[1], 128);
    cr_assert(m.params[p].spec.decay);
    p = sl_model_find_param(&m, "transformer.h.3.mlp.c_proj.weight");
    cr_assert_eq(m.params[p].spec.shape[1], 4 * 128);
    cr_assert_float_eq(m.params[p].spec.scale, 0.02f / sqrtf(8.0f), 1e-9);
    cr_assert_not(m.params[sl_model_find_param(&m, "transformer.ln_f.bias")].spec.decay);
    cr_assert_not(m.params[sl_model_find_param(&m, "transformer.h.0.attn.c_attn.bias")].spec.decay);
    p = sl_model_find_param(&m, "lm_head.weight");
    cr_assert_str_eq(m.params[p].spec.tied_to, "transformer.wte.weight");
    /* nanoGPT prints 0.80M: everything but wpe, the tied matrix once */
    size_t wpe = 64 * 128;
    cr_assert_eq(m.nparams - wpe, 801664);
    sl_model_free(&m);
    sl_config_free(&cfg);
}

Test(gpt, init_follows_nanogpt_and_ties_the_head)
{
    sl_config cfg;
    sl_model m;
    sl_weights w;
    load(GPT_SMALL, NULL, 0, &cfg, &m);
    cr_assert_eq(sl_weights_init(&m, 7, &w), SL_OK);
    int wte = sl_model_find_param(&m, "transformer.wte.weight");
    int lm = sl_model_find_param(&m, "lm_head.weight");
    cr_assert_arr_eq(w.data[lm], w.data[wte], m.params[wte].numel * sizeof(float));
    int ln = sl_model_find_param(&m, "transformer.h.1.ln_2.weight");
    int b = sl_model_find_param(&m, "transformer.h.1.mlp.c_fc.bias");
    for (size_t k = 0; k < 128; k++) cr_assert_eq(w.data[ln][k], 1.0f);
    for (size_t k = 0; k < 512; k++) cr_assert_eq(w.data[b][k], 0.0f);
    /* std 0.02 over the 49152 elements of c_attn.weight: within a few percent */
    int a = sl_model_find_param(&m, "transformer.h.2.attn.c_attn.weight");
    double sum = 0, sq = 0;
    size_t n = m.params[a].numel;
    for (size_t k = 0; k < n; k++) sum += w.data[a][k], sq += (double)w.data[a][k] * w.data[a][k];
    double mean = sum / n, sd = sqrt(sq / n - mean * mean);
    cr_assert(fabs(mean) < 0.001 && fabs(sd - 0.02) < 0.001, "mean %g sd %g", mean, sd);
    sl_weights_free(&w);
    sl_model_free(&m);
    sl_config_free(&cfg);
}

/* A file with one name of the tied matrix, and nanoGPT's attn.bias mask buffers, loads. */
Test(gpt, loads_by_nanogpt_names_with_one_name_of_the_tied_matrix)
{
    sl_config cfg;
    sl_model m;
    sl_weights w, back;
    load(GPT_SMALL, NULL, 0, &cfg, &m);
    cr_assert_eq(sl_weights_init(&m, 3, &w), SL_OK);
    sl_tensor *t = calloc((size_t)m.ntensors + 1, sizeof *t);
    int n = 0;
    for (int p = 0; p < m.ntensors; p++) {
        if (!strcmp(m.params[p].name, "transformer.wte.weight")) continue; /* lm_head stays */
        t[n] = (sl_tensor){.name = m.params[p].name,
                           .dtype = SL_DTYPE_F32,
                           .ndim = m.params[p].spec.ndim,
                           .data = w.data[p]};
        memcpy(t[n].shape, m.params[p].spec.shape, sizeof t[n].shape);
        n++;
    }
    static float mask[64 * 64];
    t[n++] = (sl_tensor){.name = "transformer.h.0.attn.bias",
                         .dtype = SL_DTYPE_F32,
                         .ndim = 4,
                         .shape = {1, 1, 64, 64},
                         .data = mask};
    char path[256];
    tmppath(path, sizeof path, "gpt.safetensors");
    cr_assert_eq(sl_safetensors_save(path, t, (size_t)n, NULL, NULL, 0), SL_OK, "%s",
                 sl_last_error());
    cr_assert_eq(sl_weights_load(&m, path, &back), SL_OK, "%s", sl_last_error());
    for (int p = 0; p < m.ntensors; p++)
        cr_assert_arr_eq(back.data[p], w.data[p], m.params[p].numel * sizeof(float), "%s",
                         m.params[p].name);
    free(t);
    sl_weights_free(&back);
    sl_weights_free(&w);
    sl_model_free(&m);
    sl_config_free(&cfg);
}

Test(gpt, bad_shapes_are_refused)
{
    sl_config cfg;
    char json[2048];
    snprintf(json, sizeof json, GPT_SMALL, fixture);
    const char *odd[] = {"model.gpt.n_head=3"};
    assert_fails_with(sl_config_parse(json, tmpdir(), odd, 1, &cfg), "n_head");
}

/* Trains the tied fixture's model for its steps twice on cpu: once with every micro-batch's full
 * backward, once split into I passes and W passes deferred to the step's end (zero-bubble); the
 * weights are the same bits. */
Test(gpt, split_backward_equals_full)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/fixtures", source_dir());
    sl_safetensors st;
    cr_assert_eq(sl_safetensors_load(fixture, &st), SL_OK, "%s", sl_last_error());
    sl_config cfg;
    sl_model m;
    sl_weights init;
    sl_data d;
    sl_device *dev;
    cr_assert_eq(sl_config_parse(sl_safetensors_meta(&st, "config"), dir, NULL, 0, &cfg), SL_OK,
                 "%s", sl_last_error());
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_weights_from_safetensors(&m, &st, "init.", fixture, &init), SL_OK);
    cr_assert_eq(sl_data_load(&cfg, m.outputs, &d), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_device_open("cpu", &dev), SL_OK);
    size_t per = (size_t)(cfg.train.batch / cfg.train.microbatches), T = (size_t)m.positions;
    sl_weights out[2];
    for (int split = 0; split < 2; split++) {
        sl_stage *s;
        sl_stash stash[2] = {0};
        sl_buffer *x[2], *y, *loss, *dout;
        int32_t *hx = calloc(per * T, 4), *hy = calloc(per * T, 4);
        cr_assert_eq(sl_stage_create(dev, &m, 0, m.nlayers, &init, &s), SL_OK, "%s",
                     sl_last_error());
        for (int mb = 0; mb < 2; mb++) {
            cr_assert_eq(sl_stash_alloc(s, per, &stash[mb]), SL_OK);
            cr_assert_eq(sl_buffer_alloc(dev, per * T * 4, &x[mb]), SL_OK);
        }
        cr_assert_eq(sl_buffer_alloc(dev, per * T * 4, &y), SL_OK);
        cr_assert_eq(sl_buffer_alloc(dev, per * T * 4, &loss), SL_OK);
        cr_assert_eq(sl_buffer_alloc(dev, per * (size_t)m.outputs * 4, &dout), SL_OK);
        for (int step = 0; step < 3; step++) {
            cr_assert_eq(sl_stage_zero_grad(s), SL_OK);
            for (int mb = 0; mb < 2; mb++) {
                cr_assert_eq(sl_data_microbatch(&d, step, mb, hx, hy, NULL), SL_OK);
                cr_assert_eq(sl_buffer_upload(x[mb], 0, hx, per * T * 4), SL_OK);
                cr_assert_eq(sl_buffer_upload(y, 0, hy, per * T * 4), SL_OK);
                cr_assert_eq(sl_stage_forward(s, per, x[mb], &stash[mb]), SL_OK, "%s",
                             sl_last_error());
                cr_assert_eq(sl_loss_forward_backward(dev, &m, per, sl_stash_output(&stash[mb]), y,
                                                      1.0f / (float)(4 * T), loss, dout),
                             SL_OK);
                if (split)
                    cr_assert_eq(sl_stage_backward_input(s, per, x[mb], &stash[mb], dout, NULL),
                                 SL_OK, "%s", sl_last_error());
                else
                    cr_assert_eq(sl_stage_backward(s, per, x[mb], &stash[mb], dout, NULL), SL_OK,
                                 "%s", sl_last_error());
            }
            for (int mb = 0; split && mb < 2; mb++)
                cr_assert_eq(sl_stage_backward_weight(s, per, x[mb], &stash[mb]), SL_OK, "%s",
                             sl_last_error());
            cr_assert_eq(sl_stage_optimizer_step(s, &cfg.train.optimizer, 1e-3), SL_OK);
        }
        cr_assert_eq(sl_weights_alloc(&m, &out[split]), SL_OK);
        cr_assert_eq(sl_stage_download(s, &out[split]), SL_OK);
        for (int mb = 0; mb < 2; mb++) {
            sl_stash_free(&stash[mb]);
            sl_buffer_free(x[mb]);
        }
        sl_buffer_free(y);
        sl_buffer_free(loss);
        sl_buffer_free(dout);
        sl_stage_free(s);
        free(hx);
        free(hy);
    }
    for (int p = 0; p < m.ntensors; p++)
        cr_assert_arr_eq(out[1].data[p], out[0].data[p], m.params[p].numel * sizeof(float), "%s",
                         m.params[p].name);
    sl_weights_free(&out[0]);
    sl_weights_free(&out[1]);
    sl_device_close(dev);
    sl_data_free(&d);
    sl_weights_free(&init);
    sl_model_free(&m);
    sl_config_free(&cfg);
    sl_safetensors_free(&st);
}

/* Initial weights (model.init) with both names of the tied matrix holding different values: one
 * message before any rank starts, not a silent choice. */
Test(gpt, refuses_init_weights_whose_tied_names_differ)
{
    sl_config cfg;
    sl_model m;
    sl_weights w, back;
    load(GPT_SMALL, NULL, 0, &cfg, &m);
    cr_assert_eq(sl_weights_init(&m, 3, &w), SL_OK);
    int lm = sl_model_find_param(&m, "lm_head.weight");
    float was = w.data[lm][5];
    w.data[lm][5] += 1.0f;
    char path[256], set[300];
    tmppath(path, sizeof path, "gpt-differ.safetensors");
    cr_assert_eq(sl_weights_save(&m, &w, path), SL_OK, "%s", sl_last_error());
    snprintf(set, sizeof set, "model.init=\"%s\"", path);
    sl_model_free(&m);
    sl_config_free(&cfg);
    const char *sets[] = {set};
    load(GPT_SMALL, sets, 1, &cfg, &m);
    assert_fails_with(sl_weights_from_config(&cfg, &m, &back), "different values");
    cr_assert(strstr(sl_last_error(), "lm_head.weight"), "%s", sl_last_error());
    w.data[lm][5] = was;
    cr_assert_eq(sl_weights_save(&m, &w, path), SL_OK);
    cr_assert_eq(sl_weights_from_config(&cfg, &m, &back), SL_OK, "%s", sl_last_error());
    sl_weights_free(&back);
    sl_weights_free(&w);
    sl_model_free(&m);
    sl_config_free(&cfg);
}
