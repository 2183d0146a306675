/* Model: the layer table, the model's parameters, partition, weights init/load/save checks, the
 * stage passes (zero-bubble's split included) and the reference trainer. */
#include <criterion/criterion.h>
#include <math.h>

#include "helpers.h"
#include "runtime/data/data.h"
#include "runtime/model/model.h"
#include "runtime/safetensors/safetensors.h"

static void digits_config(const char *const *sets, int nsets, sl_config *cfg)
{
    char path[512];
    snprintf(path, sizeof path, "%s/samples/digits/digits.json", source_dir());
    cr_assert_eq(sl_config_load(path, sets, nsets, cfg), SL_OK, "%s", sl_last_error());
}

Test(model, layers)
{
    sl_layer l;
    cr_assert_eq(sl_layer_parse("linear:12", &l), SL_OK);
    cr_assert_str_eq(l.kind->name, "linear");
    cr_assert(sl_layer_has_params(&l));
    cr_assert_eq(l.arg, 12);
    cr_assert_eq(sl_layer_parse("linear:16777216", &l), SL_OK);
    cr_assert_eq(l.arg, 1 << 24);
    cr_assert_eq(sl_layer_parse("gelu", &l), SL_OK);
    cr_assert_eq(l.act, SL_ACT_GELU);
    cr_assert_not(sl_layer_has_params(&l));
    const char *bad[] = {
        "linear:",         "linear:0", "linear:-3", "linear:3x", "linear: 3", "linear:+3", "linear",
        "linear:16777217", "Relu",     "softmax",   "relu:2",    "relu:",     "",          ":3"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        cr_assert_neq(sl_layer_parse(bad[i], &l), SL_OK, "'%s' parsed", bad[i]);
        cr_assert_null(l.kind, "a failed parse leaves no kind");
    }
    assert_fails_with(sl_layer_parse("foo", &l),
                      "unknown layer 'foo' (linear:N, relu, tanh, sigmoid, gelu, gelu_tanh, "
                      "embedding, block, head, delay:MS[:WIDTH])");
    assert_fails_with(sl_layer_parse("linear:0", &l),
                      "layer 'linear:0': linear needs a width 1..16777216");
    assert_fails_with(sl_layer_parse("relu:2", &l), "layer 'relu:2': relu takes no argument");

    sl_config cfg;
    sl_model m;
    digits_config(NULL, 0, &cfg);
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK);
    cr_assert_eq(m.nparams, 64 * 128 + 128 + 128 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10);
    cr_assert_eq(m.outputs, 10);
    cr_assert_eq(m.layers[3].in, 128);
    cr_assert_eq(sl_model_width(&m, 6), 64);
    cr_assert_eq(sl_model_width(&m, 7), 10);
    cr_assert_eq(m.max_width, 128);

    /* The parameters, by name in model order: each linear layer's weight then bias. */
    const char *names[] = {"0.weight", "0.bias", "2.weight", "2.bias",
                           "4.weight", "4.bias", "6.weight", "6.bias"};
    cr_assert_eq(m.ntensors, 8);
    size_t total = 0;
    for (int p = 0; p < m.ntensors; p++) {
        cr_assert_str_eq(m.params[p].name, names[p]);
        cr_assert_eq(sl_model_find_param(&m, names[p]), p);
        cr_assert_eq(m.params[p].layer, p / 2 * 2);
        total += m.params[p].numel;
    }
    cr_assert_eq(total, m.nparams);
    cr_assert_eq(m.params[4].spec.ndim, 2);
    cr_assert_eq(m.params[4].spec.shape[0], 64);
    cr_assert_eq(m.params[4].spec.shape[1], 128);
    cr_assert_eq(m.params[4].numel, 64 * 128);
    cr_assert_eq(m.params[7].numel, 10);
    cr_assert_eq(sl_model_find_param(&m, "1.weight"), -1, "activations own nothing");
    cr_assert_eq(sl_model_find_param(&m, "0.weigh"), -1);
    int first[] = {0, 2, 2, 4, 4, 6, 6, 8};
    for (int i = 0; i <= m.nlayers; i++) cr_assert_eq(m.first_param[i], first[i], "layer %d", i);
    cr_assert_str_eq(m.layers[4].prefix, "4.");
    cr_assert_eq(sl_model_params(&m, 0, 2), 64 * 128 + 128);
    cr_assert_eq(sl_model_params(&m, 1, 2), 0);
    cr_assert_eq(sl_model_params(&m, 0, m.nlayers), m.nparams);
    sl_model_free(&m);
    sl_config_free(&cfg);

    /* cross_entropy over one output trains nothing: the model refuses it. */
    const char *one[] = {"model.layers=[\"linear:4\",\"relu\",\"linear:1\"]", "pipeline.stages=1"};
    digits_config(one, 2, &cfg);
    assert_fails_with(sl_model_init(&cfg, &m), "cross_entropy needs at least 2 classes");
    sl_config_free(&cfg);
}

/* Every row of the layer table parses from its own syntax, and the list of kinds in messages is
 * the table's. */
Test(model, layer_table_rows)
{
    const char *text = sl_layer_kinds_text();
    cr_assert_str_eq(text,
                     "linear:N, relu, tanh, sigmoid, gelu, gelu_tanh, embedding, block, head, "
                     "delay:MS[:WIDTH]");
    char buf[256];
    snprintf(buf, sizeof buf, "%s", text);
    int rows = 0;
    for (char *save = NULL, *syn = strtok_r(buf, ", ", &save); syn;
         syn = strtok_r(NULL, ", ", &save), rows++) {
        /* NAME or NAME:ARG, with an example in place of the argument. */
        char example[64];
        const char *colon = strchr(syn, ':');
        if (colon)
            snprintf(example, sizeof example, "%.*s:7", (int)(colon - syn), syn);
        else
            snprintf(example, sizeof example, "%s", syn);
        sl_layer l;
        cr_assert_eq(sl_layer_parse(example, &l), SL_OK, "'%s': %s", example, sl_last_error());
        cr_assert_str_eq(l.kind->syntax, syn);
        cr_assert(!strncmp(l.kind->name, syn, strlen(l.kind->name)));
        cr_assert_not_null(l.kind->parse);
        cr_assert_not_null(l.kind->shape);
        cr_assert_not_null(l.kind->forward);
        cr_assert_not_null(l.kind->backward_input);
        cr_assert_not_null(l.kind->flops);
        cr_assert_eq(l.kind->params != NULL, l.kind->backward_weight != NULL,
                     "%s: parameters and a weight gradient go together", syn);
        /* The GPT's kinds take their shape from model.gpt (the gpt tests shape them); delay's
         * argument is a time (test_delay.c). */
        enum sl_activation act;
        if (!colon && sl_activation_parse(l.kind->name, &act) != SL_OK) continue;
        if (!strcmp(l.kind->name, "delay")) continue;
        /* Shaped after an input of width 5. */
        l.in = 5;
        cr_assert_eq(l.kind->shape(&l), SL_OK);
        cr_assert_eq(l.out, colon ? 7 : 5, "%s", syn);
        if (!colon) {
            /* The activations: the row's name is the backends' activation. */
            cr_assert_str_eq(sl_activation_name(l.act), l.kind->name);
            cr_assert_not(sl_layer_has_params(&l));
            cr_assert_eq(sl_layer_stash_bytes(&l), 5 * sizeof(float));
            cr_assert_eq(l.kind->flops(&l, SL_PHASE_W), 0.0);
        }
    }
    cr_assert_eq(rows, 10);
}

/* The linear kind's parameters, FLOPs and stash, for a layer 5 -> 3. */
Test(model, linear_kind)
{
    sl_layer l;
    cr_assert_eq(sl_layer_parse("linear:3", &l), SL_OK);
    l.in = 5;
    cr_assert_eq(l.kind->shape(&l), SL_OK);
    cr_assert_eq(l.out, 3);
    sl_param_spec spec[SL_LAYER_MAX_PARAMS];
    cr_assert_eq(l.kind->params(&l, spec), 2);
    cr_assert_str_eq(spec[0].name, "weight");
    cr_assert_eq(spec[0].ndim, 2);
    cr_assert_eq(spec[0].shape[0], 3, "PyTorch's layout: [out, in]");
    cr_assert_eq(spec[0].shape[1], 5);
    cr_assert_str_eq(spec[1].name, "bias");
    cr_assert_eq(spec[1].ndim, 1);
    cr_assert_eq(spec[1].shape[0], 3);
    for (int p = 0; p < 2; p++) {
        cr_assert_eq(spec[p].init, SL_INIT_UNIFORM);
        cr_assert_eq(spec[p].scale, 1.0f / sqrtf(5.0f), "nn.Linear's bound 1/sqrt(fan_in)");
        cr_assert(spec[p].decay);
    }
    /* Forward: x W^T and the bias add; I: g W; W: g^T x and the bias gradient's column sum. */
    cr_assert_eq(l.kind->flops(&l, SL_PHASE_F), 2.0 * 5 * 3 + 3);
    cr_assert_eq(l.kind->flops(&l, SL_PHASE_I), 2.0 * 5 * 3);
    cr_assert_eq(l.kind->flops(&l, SL_PHASE_W), 2.0 * 5 * 3 + 3);
    cr_assert_null(l.kind->keep, "linear keeps nothing beyond its output");
    cr_assert_eq(sl_layer_stash_bytes(&l), 3 * sizeof(float));
}

Test(model, loss_table)
{
    enum sl_loss_kind k;
    cr_assert_eq(sl_loss_parse("mse", &k), SL_OK);
    cr_assert_eq(k, SL_LOSS_MSE);
    cr_assert_eq(sl_loss_parse("cross_entropy", &k), SL_OK);
    cr_assert_eq(k, SL_LOSS_CROSS_ENTROPY);
    assert_fails_with(sl_loss_parse("l1", &k), "unknown loss 'l1' (cross_entropy, mse)");
    const sl_loss *ce = sl_loss_get(SL_LOSS_CROSS_ENTROPY), *mse = sl_loss_get(SL_LOSS_MSE);
    cr_assert_str_eq(ce->name, "cross_entropy");
    cr_assert(ce->int_targets);
    cr_assert_eq(ce->min_outputs, 2);
    cr_assert_eq(sl_loss_target_width(ce, 10, 1), 1);
    cr_assert_str_eq(mse->name, "mse");
    cr_assert_not(mse->int_targets);
    cr_assert_eq(sl_loss_target_width(mse, 10, 1), 10);
    cr_assert_null(sl_loss_get(SL_LOSS_COUNT));
}

static void check_parts(const sl_model *m, int n, const int *counts, const int *expect_first)
{
    sl_stage_range r[16];
    cr_assert_eq(sl_partition_make(m, n, counts, r), SL_OK, "%s", sl_last_error());
    for (int s = 0; s < n; s++) {
        cr_assert_eq(r[s].first, expect_first[s], "stage %d starts at %d", s, r[s].first);
        cr_assert_eq(r[s].last, s + 1 < n ? expect_first[s + 1] : m->nlayers);
    }
}

Test(model, partition)
{
    sl_config cfg;
    sl_model m;
    digits_config(NULL, 0, &cfg);
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK);
    /* linear relu linear relu linear relu linear */
    check_parts(&m, 4, NULL, (int[]){0, 2, 4, 6});
    check_parts(&m, 3, NULL, (int[]){0, 4, 6});
    check_parts(&m, 2, NULL, (int[]){0, 4});
    check_parts(&m, 1, NULL, (int[]){0});
    check_parts(&m, 2, (int[]){3, 1}, (int[]){0, 6});
    check_parts(&m, 3, (int[]){1, 1, 2}, (int[]){0, 2, 4});
    sl_stage_range r[8];
    assert_fails_with(sl_partition_make(&m, 5, NULL, r), "5 stages but the model has only 4");
    assert_fails_with(sl_partition_make(&m, 2, (int[]){3, 2}, r), "stage 1 wants 2");
    sl_partition p;
    sl_config c2;
    const char *sets[] = {"pipeline.stages=2", "pipeline.chunks=2",
                          "pipeline.schedule=interleaved"};
    digits_config(sets, 3, &c2);
    cr_assert_eq(sl_partition_from_config(&c2, &m, &p), SL_OK, "%s", sl_last_error());
    cr_assert_eq(p.nstages, 4);
    cr_assert_eq(sl_partition_rank(&p, 3), 1);
    cr_assert_eq(p.stages[2].first, 4);
    sl_partition_free(&p);
    sl_config_free(&c2);
    sl_model_free(&m);
    sl_config_free(&cfg);

    /* An activation before the first linear layer goes to stage 0. */
    const char *lead[] = {"model.layers=[\"tanh\",\"linear:4\",\"linear:3\",\"relu\"]",
                          "pipeline.stages=2"};
    digits_config(lead, 2, &cfg);
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK);
    check_parts(&m, 2, NULL, (int[]){0, 2});
    sl_model_free(&m);
    sl_config_free(&cfg);
}

Test(model, weights_init_load_save)
{
    sl_config cfg;
    sl_model m;
    digits_config(NULL, 0, &cfg);
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK);
    sl_weights a, b, c;
    cr_assert_eq(sl_weights_init(&m, 0, &a), SL_OK);
    cr_assert_eq(sl_weights_init(&m, 0, &b), SL_OK);
    cr_assert_eq(sl_weights_init(&m, 1, &c), SL_OK);
    int w0 = sl_model_find_param(&m, "0.weight"), b0 = sl_model_find_param(&m, "0.bias");
    int w2 = sl_model_find_param(&m, "2.weight"), b2 = sl_model_find_param(&m, "2.bias");
    int w4 = sl_model_find_param(&m, "4.weight"), b4 = sl_model_find_param(&m, "4.bias");
    int w6 = sl_model_find_param(&m, "6.weight"), b6 = sl_model_find_param(&m, "6.bias");
    cr_assert(w0 >= 0 && b0 >= 0 && w2 >= 0 && b2 >= 0 && w4 >= 0 && b4 >= 0 && w6 >= 0 && b6 >= 0);
    cr_assert_eq(a.ntensors, m.ntensors);
    cr_assert_arr_eq(a.data[w2], b.data[w2], 128 * 128 * 4);
    cr_assert(memcmp(a.data[w2], c.data[w2], 128 * 128 * 4) != 0);
    /* Uniform in +-1/sqrt(fan_in), spread over most of the range. */
    float lo = 1, hi = -1, bound = 1.0f / sqrtf(128);
    for (int k = 0; k < 128 * 128; k++) {
        lo = fminf(lo, a.data[w2][k]);
        hi = fmaxf(hi, a.data[w2][k]);
    }
    cr_assert(lo >= -bound && hi <= bound && lo < -0.95f * bound && hi > 0.95f * bound);
    cr_assert(fabsf(a.data[b6][0]) <= 1.0f / 8.0f);
    cr_assert_eq(sl_model_find_param(&m, "1.weight"), -1, "activations own no weights");
    cr_assert_eq(m.first_param[1], m.first_param[2], "activations own no weights");

    char path[256];
    tmppath(path, sizeof path, "w.safetensors");
    cr_assert_eq(sl_weights_save(&m, &a, path), SL_OK, "%s", sl_last_error());
    sl_weights d;
    cr_assert_eq(sl_weights_load(&m, path, &d), SL_OK, "%s", sl_last_error());
    cr_assert_arr_eq(d.data[w4], a.data[w4], 64 * 128 * 4);
    cr_assert_arr_eq(d.data[b6], a.data[b6], 10 * 4);
    sl_weights_free(&d);

    /* A model with another shape must refuse these weights, naming the tensor. */
    sl_config c2;
    sl_model m2;
    const char *sets[] = {"model.layers=[\"linear:128\",\"relu\",\"linear:100\",\"relu\","
                          "\"linear:64\",\"relu\",\"linear:10\"]"};
    digits_config(sets, 1, &c2);
    cr_assert_eq(sl_model_init(&c2, &m2), SL_OK);
    assert_fails_with(sl_weights_load(&m2, path, &d),
                      "tensor '2.weight' has shape [128, 128], the model needs [100, 128]");
    sl_model_free(&m2);
    sl_config_free(&c2);
    const char *sets3[] = {"model.layers=[\"linear:128\",\"relu\",\"linear:128\",\"relu\","
                           "\"linear:64\",\"relu\",\"linear:10\",\"relu\",\"linear:10\"]"};
    digits_config(sets3, 1, &c2);
    cr_assert_eq(sl_model_init(&c2, &m2), SL_OK);
    assert_fails_with(sl_weights_load(&m2, path, &d), "tensor '8.weight' is missing");
    sl_model_free(&m2);
    sl_config_free(&c2);
    const char *sets4[] = {"model.layers=[\"linear:128\",\"relu\",\"linear:128\",\"relu\","
                           "\"linear:64\",\"linear:10\"]"};
    digits_config(sets4, 1, &c2);
    cr_assert_eq(sl_model_init(&c2, &m2), SL_OK);
    assert_fails_with(sl_weights_load(&m2, path, &d), "tensor '5.weight' is missing");
    sl_model_free(&m2);
    sl_config_free(&c2);

    /* Extra tensors and wrong dtypes are named too. */
    int32_t bogus[10] = {0};
    sl_tensor t[] = {
        {.name = "0.weight",
         .dtype = SL_DTYPE_F32,
         .ndim = 2,
         .shape = {128, 64},
         .data = a.data[w0]},
        {.name = "0.bias", .dtype = SL_DTYPE_F32, .ndim = 1, .shape = {128}, .data = a.data[b0]},
        {.name = "2.weight",
         .dtype = SL_DTYPE_F32,
         .ndim = 2,
         .shape = {128, 128},
         .data = a.data[w2]},
        {.name = "2.bias", .dtype = SL_DTYPE_F32, .ndim = 1, .shape = {128}, .data = a.data[b2]},
        {.name = "4.weight",
         .dtype = SL_DTYPE_F32,
         .ndim = 2,
         .shape = {64, 128},
         .data = a.data[w4]},
        {.name = "4.bias", .dtype = SL_DTYPE_F32, .ndim = 1, .shape = {64}, .data = a.data[b4]},
        {.name = "6.weight",
         .dtype = SL_DTYPE_F32,
         .ndim = 2,
         .shape = {10, 64},
         .data = a.data[w6]},
        {.name = "6.bias", .dtype = SL_DTYPE_I32, .ndim = 1, .shape = {10}, .data = bogus},
        {.name = "7.weight", .dtype = SL_DTYPE_F32, .ndim = 1, .shape = {10}, .data = a.data[b6]},
    };
    char p2[256];
    tmppath(p2, sizeof p2, "bad.safetensors");
    cr_assert_eq(sl_safetensors_save(p2, t, 9, NULL, NULL, 0), SL_OK);
    assert_fails_with(sl_weights_load(&m, p2, &d), "tensor '6.bias' is I32, expected F32");
    t[7].dtype = SL_DTYPE_F32;
    t[7].data = a.data[b6];
    cr_assert_eq(sl_safetensors_save(p2, t, 9, NULL, NULL, 0), SL_OK);
    assert_fails_with(sl_weights_load(&m, p2, &d), "tensor '7.weight' does not belong");
    cr_assert_eq(sl_safetensors_save(p2, t, 8, NULL, NULL, 0), SL_OK);
    cr_assert_eq(sl_weights_load(&m, p2, &d), SL_OK, "%s", sl_last_error());
    sl_weights_free(&d);

    sl_weights_free(&a);
    sl_weights_free(&b);
    sl_weights_free(&c);
    sl_model_free(&m);
    sl_config_free(&cfg);
}

/* sl_weights_init's numbers for linear layers are fixed: a seed gives the same weights on every
 * machine and in every version, so that runs and checkpoints can be compared. These values are
 * the ones the per-layer init before the layer table drew (splitmix64 from the seed, layer by
 * layer, weight then bias, (2u - 1) / sqrt(in)). */
Test(model, weights_init_is_fixed)
{
    const char *sets[] = {"model.layers=[\"linear:3\",\"relu\",\"linear:2\"]", "pipeline.stages=1"};
    sl_config cfg;
    sl_model m;
    sl_weights w;
    digits_config(sets, 2, &cfg);
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_weights_init(&m, 42, &w), SL_OK);
    const float w0[] = {0x1.eeb99p-5f, -0x1.5c4074p-4f, -0x1.c56cc8p-5f, -0x1.3f18f8p-5f};
    const float b0[] = {-0x1.6166p-10f, -0x1.4b9d08p-4f, 0x1.c2dd6p-7f};
    const float w2[] = {-0x1.e54cc2p-3f, 0x1.4a7be6p-2f, 0x1.3accd2p-3f,
                        0x1.51c338p-3f,  0x1.3f0b0ep-2f, 0x1.c167dep-5f};
    const float b2[] = {0x1.0ebc9ep-1f, 0x1.a35478p-5f};
    struct {
        const char *name;
        const float *want;
        size_t n;
    } check[] = {{"0.weight", w0, 4}, {"0.bias", b0, 3}, {"2.weight", w2, 6}, {"2.bias", b2, 2}};
    for (size_t c = 0; c < SL_ARRAY_LEN(check); c++) {
        int p = sl_model_find_param(&m, check[c].name);
        cr_assert(p >= 0, "%s", check[c].name);
        for (size_t k = 0; k < check[c].n; k++)
            cr_assert_eq(w.data[p][k], check[c].want[k], "%s[%zu] %a, expected %a", check[c].name,
                         k, (double)w.data[p][k], (double)check[c].want[k]);
    }
    sl_weights_free(&w);
    sl_model_free(&m);
    sl_config_free(&cfg);
}

/* The merge of the ranks' weights takes exactly the parameters of the layers asked for. */
Test(model, weights_copy_layers)
{
    sl_config cfg;
    sl_model m;
    sl_weights a, b;
    digits_config(NULL, 0, &cfg);
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK);
    cr_assert_eq(sl_weights_init(&m, 1, &a), SL_OK);
    cr_assert_eq(sl_weights_init(&m, 2, &b), SL_OK);
    sl_weights_copy_layers(&m, 1, 4, &a, &b); /* relu linear relu: 2.weight and 2.bias */
    for (int p = 0; p < m.ntensors; p++) {
        bool copied = p == 2 || p == 3;
        cr_assert_eq(memcmp(a.data[p], b.data[p], m.params[p].numel * 4) == 0, copied, "%s",
                     m.params[p].name);
    }
    sl_weights_free(&a);
    sl_weights_free(&b);
    sl_model_free(&m);
    sl_config_free(&cfg);
}

/* Trains digits for `steps` steps on the reference trainer. */
static void train_digits(int steps, sl_train_result *r)
{
    char set[64];
    snprintf(set, sizeof set, "train.steps=%d", steps);
    const char *sets[] = {set};
    sl_config cfg;
    sl_model m;
    sl_weights w;
    sl_data d;
    sl_device *dev;
    digits_config(sets, 1, &cfg);
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK);
    cr_assert_eq(sl_weights_from_config(&cfg, &m, &w), SL_OK);
    cr_assert_eq(sl_data_load(&cfg, m.outputs, &d), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_device_open("cpu", &dev), SL_OK);
    cr_assert_eq(sl_reference_train(dev, &cfg, &m, &w, &d, r), SL_OK, "%s", sl_last_error());
    sl_device_close(dev);
    sl_data_free(&d);
    sl_weights_free(&w);
    sl_model_free(&m);
    sl_config_free(&cfg);
}

Test(reference, digits_learns_and_is_deterministic)
{
    sl_train_result a, b;
    train_digits(150, &a);
    train_digits(150, &b);
    double first = 0, last = 0;
    for (int s = 0; s < 10; s++) first += a.losses[s] / 10;
    for (int s = 140; s < 150; s++) last += a.losses[s] / 10;
    cr_assert(last < 0.5 * first, "loss %.4f -> %.4f should fall", first, last);
    cr_assert(first > 2.0 && first < 2.5, "starts near ln 10 (%.3f)", first);
    cr_assert_eq(a.test_rows, 270);
    cr_assert(a.test_accuracy > 0.8, "accuracy after 150 steps %.3f", a.test_accuracy);
    cr_assert_arr_eq(a.losses, b.losses, 150 * sizeof(double), "two runs give identical losses");
    /* The digits model's parameters in order: 0.weight, 0.bias, 2.weight, ... 6.bias. */
    cr_assert_eq(a.weights.ntensors, 8);
    cr_assert_arr_eq(a.weights.data[2], b.weights.data[2], 128 * 128 * 4, "2.weight");
    cr_assert_arr_eq(a.weights.data[7], b.weights.data[7], 10 * 4, "6.bias");
    sl_train_result_free(&a);
    sl_train_result_free(&b);
}

/* The stage functions, run as a hand-made pipeline of 3 stages (forward 0,1,2 then backward 2,1,0
 * per micro-batch), give bit-identical weights to the one-stage reference. */
Test(reference, stages_equal_reference)
{
    const char *sets[] = {"train.steps=5", "train.batch=16", "train.microbatches=4",
                          "model.layers=[\"linear:32\",\"gelu\",\"linear:16\",\"tanh\","
                          "\"linear:16\",\"sigmoid\",\"linear:10\"]",
                          "train.optimizer={\"name\":\"adam\",\"lr\":0.01,\"weight_decay\":0.1}"};
    sl_config cfg;
    sl_model m;
    sl_weights w;
    sl_data d;
    sl_device *dev;
    digits_config(sets, 5, &cfg);
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK);
    cr_assert_eq(sl_weights_from_config(&cfg, &m, &w), SL_OK);
    cr_assert_eq(sl_data_load(&cfg, m.outputs, &d), SL_OK);
    cr_assert_eq(sl_device_open("cpu", &dev), SL_OK);
    sl_train_result ref;
    cr_assert_eq(sl_reference_train(dev, &cfg, &m, &w, &d, &ref), SL_OK, "%s", sl_last_error());

    enum { S = 3, ROWS = 4 };
    sl_stage_range r[S];
    cr_assert_eq(sl_partition_make(&m, S, NULL, r), SL_OK);
    sl_stage *st[S];
    sl_stash stash[S];
    sl_buffer *grad[S + 1] = {NULL}; /* grad[s]: gradient of stage s's input */
    for (int s = 0; s < S; s++) {
        cr_assert_eq(sl_stage_create(dev, &m, r[s].first, r[s].last, &w, &st[s]), SL_OK);
        cr_assert_eq(sl_stash_alloc(st[s], ROWS, &stash[s]), SL_OK);
        cr_assert_eq(
            sl_buffer_alloc(dev, ROWS * (size_t)sl_model_width(&m, r[s].first) * 4, &grad[s]),
            SL_OK);
    }
    cr_assert_eq(sl_buffer_alloc(dev, ROWS * 10 * 4, &grad[S]), SL_OK);
    sl_buffer *bx, *by, *bloss;
    cr_assert_eq(sl_buffer_alloc(dev, ROWS * 64 * 4, &bx), SL_OK);
    cr_assert_eq(sl_buffer_alloc(dev, ROWS * 4, &by), SL_OK);
    cr_assert_eq(sl_buffer_alloc(dev, ROWS * 4, &bloss), SL_OK);
    float hx[ROWS * 64];
    int32_t hy[ROWS];
    for (int step = 0; step < 5; step++) {
        for (int s = 0; s < S; s++) cr_assert_eq(sl_stage_zero_grad(st[s]), SL_OK);
        for (int mb = 0; mb < 4; mb++) {
            cr_assert_eq(sl_data_microbatch(&d, step, mb, hx, hy, NULL), SL_OK);
            cr_assert_eq(sl_buffer_upload(bx, 0, hx, sizeof hx), SL_OK);
            cr_assert_eq(sl_buffer_upload(by, 0, hy, sizeof hy), SL_OK);
            sl_buffer *in = bx;
            for (int s = 0; s < S; s++) {
                cr_assert_eq(sl_stage_forward(st[s], ROWS, in, &stash[s]), SL_OK);
                in = sl_stash_output(&stash[s]);
            }
            cr_assert_eq(sl_loss_forward_backward(dev, &m, ROWS, in, by, 1.0f / 16, bloss, grad[S]),
                         SL_OK);
            for (int s = S - 1; s >= 0; s--) {
                sl_buffer *input = s == 0 ? bx : sl_stash_output(&stash[s - 1]);
                cr_assert_eq(sl_stage_backward(st[s], ROWS, input, &stash[s], grad[s + 1],
                                               s == 0 ? NULL : grad[s]),
                             SL_OK, "%s", sl_last_error());
            }
        }
        for (int s = 0; s < S; s++)
            cr_assert_eq(
                sl_stage_optimizer_step(st[s], &cfg.train.optimizer, cfg.train.optimizer.lr),
                SL_OK);
    }
    sl_weights out;
    cr_assert_eq(sl_weights_alloc(&m, &out), SL_OK);
    for (int s = 0; s < S; s++) cr_assert_eq(sl_stage_download(st[s], &out), SL_OK);
    for (int p = 0; p < m.ntensors; p++)
        cr_assert_arr_eq(out.data[p], ref.weights.data[p], m.params[p].numel * 4, "%s",
                         m.params[p].name);
    for (int s = 0; s < S; s++) {
        sl_stash_free(&stash[s]);
        sl_stage_free(st[s]);
    }
    for (int s = 0; s <= S; s++) sl_buffer_free(grad[s]);
    sl_buffer_free(bx);
    sl_buffer_free(by);
    sl_buffer_free(bloss);
    sl_weights_free(&out);
    sl_train_result_free(&ref);
    sl_device_close(dev);
    sl_data_free(&d);
    sl_weights_free(&w);
    sl_model_free(&m);
    sl_config_free(&cfg);
}

/* Zero-bubble's split: 3 stages running each micro-batch's input pass (I) at once and every weight
 * pass (W) only after the step's last micro-batch give bit-identical weights to the one-stage
 * reference, whose full backward runs backward_weight then backward_input per layer. */
Test(reference, split_backward_equals_full)
{
    const char *sets[] = {"train.steps=4", "train.batch=16", "train.microbatches=4",
                          "model.layers=[\"relu\",\"linear:32\",\"gelu\",\"linear:16\","
                          "\"tanh\",\"linear:16\",\"sigmoid\",\"linear:16\",\"relu\","
                          "\"linear:10\"]",
                          "train.optimizer={\"name\":\"adam\",\"lr\":0.01,\"weight_decay\":0.1}"};
    sl_config cfg;
    sl_model m;
    sl_weights w;
    sl_data d;
    sl_device *dev;
    digits_config(sets, 5, &cfg);
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_weights_from_config(&cfg, &m, &w), SL_OK);
    cr_assert_eq(sl_data_load(&cfg, m.outputs, &d), SL_OK);
    cr_assert_eq(sl_device_open("cpu", &dev), SL_OK);
    sl_train_result ref;
    cr_assert_eq(sl_reference_train(dev, &cfg, &m, &w, &d, &ref), SL_OK, "%s", sl_last_error());

    enum { S = 3, MB = 4, ROWS = 4 };
    sl_stage_range r[S];
    cr_assert_eq(sl_partition_make(&m, S, NULL, r), SL_OK);
    sl_stage *st[S];
    sl_stash stash[S][MB];
    sl_buffer *grad[S + 1] = {NULL}; /* grad[s]: gradient of stage s's input */
    sl_buffer *bx[MB], *by, *bloss;
    for (int s = 0; s < S; s++) {
        cr_assert_eq(sl_stage_create(dev, &m, r[s].first, r[s].last, &w, &st[s]), SL_OK);
        for (int mb = 0; mb < MB; mb++)
            cr_assert_eq(sl_stash_alloc(st[s], ROWS, &stash[s][mb]), SL_OK);
        cr_assert_eq(
            sl_buffer_alloc(dev, ROWS * (size_t)sl_model_width(&m, r[s].first) * 4, &grad[s]),
            SL_OK);
    }
    cr_assert_eq(sl_buffer_alloc(dev, ROWS * 10 * 4, &grad[S]), SL_OK);
    for (int mb = 0; mb < MB; mb++)
        cr_assert_eq(sl_buffer_alloc(dev, ROWS * 64 * 4, &bx[mb]), SL_OK);
    cr_assert_eq(sl_buffer_alloc(dev, ROWS * 4, &by), SL_OK);
    cr_assert_eq(sl_buffer_alloc(dev, ROWS * 4, &bloss), SL_OK);
    /* A weight pass before its input pass has no gradient to work from. */
    assert_fails_with(sl_stage_backward_weight(st[1], ROWS, bx[0], &stash[1][0]),
                      "before its input gradient");
    float hx[ROWS * 64];
    int32_t hy[ROWS];
    for (int step = 0; step < 4; step++) {
        for (int s = 0; s < S; s++) cr_assert_eq(sl_stage_zero_grad(st[s]), SL_OK);
        for (int mb = 0; mb < MB; mb++) {
            cr_assert_eq(sl_data_microbatch(&d, step, mb, hx, hy, NULL), SL_OK);
            cr_assert_eq(sl_buffer_upload(bx[mb], 0, hx, sizeof hx), SL_OK);
            cr_assert_eq(sl_buffer_upload(by, 0, hy, sizeof hy), SL_OK);
            sl_buffer *in = bx[mb];
            for (int s = 0; s < S; s++) {
                cr_assert_eq(sl_stage_forward(st[s], ROWS, in, &stash[s][mb]), SL_OK);
                in = sl_stash_output(&stash[s][mb]);
            }
            cr_assert_eq(sl_loss_forward_backward(dev, &m, ROWS, in, by, 1.0f / 16, bloss, grad[S]),
                         SL_OK);
            for (int s = S - 1; s >= 0; s--) {
                sl_buffer *input = s == 0 ? bx[mb] : sl_stash_output(&stash[s - 1][mb]);
                cr_assert_eq(sl_stage_backward_input(st[s], ROWS, input, &stash[s][mb], grad[s + 1],
                                                     s == 0 ? NULL : grad[s]),
                             SL_OK, "%s", sl_last_error());
            }
        }
        /* Every W after every I, in micro-batch order for each stage, as zero-bubble defers
         * them: each gradient still accumulates its micro-batches in the same order. */
        for (int s = S - 1; s >= 0; s--)
            for (int mb = 0; mb < MB; mb++) {
                sl_buffer *input = s == 0 ? bx[mb] : sl_stash_output(&stash[s - 1][mb]);
                cr_assert_eq(sl_stage_backward_weight(st[s], ROWS, input, &stash[s][mb]), SL_OK,
                             "%s", sl_last_error());
            }
        for (int s = 0; s < S; s++)
            cr_assert_eq(
                sl_stage_optimizer_step(st[s], &cfg.train.optimizer, cfg.train.optimizer.lr),
                SL_OK);
    }
    sl_weights out;
    cr_assert_eq(sl_weights_alloc(&m, &out), SL_OK);
    for (int s = 0; s < S; s++) cr_assert_eq(sl_stage_download(st[s], &out), SL_OK);
    cr_assert_eq(m.ntensors, 10);
    for (int p = 0; p < m.ntensors; p++)
        cr_assert_arr_eq(out.data[p], ref.weights.data[p], m.params[p].numel * 4, "%s",
                         m.params[p].name);
    for (int s = 0; s < S; s++) {
        for (int mb = 0; mb < MB; mb++) sl_stash_free(&stash[s][mb]);
        sl_stage_free(st[s]);
    }
    for (int s = 0; s <= S; s++) sl_buffer_free(grad[s]);
    for (int mb = 0; mb < MB; mb++) sl_buffer_free(bx[mb]);
    sl_buffer_free(by);
    sl_buffer_free(bloss);
    sl_weights_free(&out);
    sl_train_result_free(&ref);
    sl_device_close(dev);
    sl_data_free(&d);
    sl_weights_free(&w);
    sl_model_free(&m);
    sl_config_free(&cfg);
}
