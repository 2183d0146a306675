/* Model: layers, partition, weights init/load/save checks, and the reference trainer. */
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
    cr_assert_eq(l.kind, SL_LAYER_LINEAR);
    cr_assert_eq(l.out, 12);
    cr_assert_eq(sl_layer_parse("gelu", &l), SL_OK);
    cr_assert_eq(l.act, SL_ACT_GELU);
    const char *bad[] = {"linear:",   "linear:0", "linear:-3", "linear:3x",
                         "linear: 3", "Relu",     "softmax",   ""};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++)
        cr_assert_neq(sl_layer_parse(bad[i], &l), SL_OK, "'%s' parsed", bad[i]);

    sl_config cfg;
    sl_model m;
    digits_config(NULL, 0, &cfg);
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK);
    cr_assert_eq(m.nparams, 64 * 128 + 128 + 128 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10);
    cr_assert_eq(m.outputs, 10);
    cr_assert_eq(m.layers[3].in, 128);
    cr_assert_eq(sl_model_width(&m, 6), 64);
    cr_assert_eq(sl_model_width(&m, 7), 10);
    sl_model_free(&m);
    sl_config_free(&cfg);
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
    cr_assert_arr_eq(a.weight[2], b.weight[2], 128 * 128 * 4);
    cr_assert(memcmp(a.weight[2], c.weight[2], 128 * 128 * 4) != 0);
    /* Uniform in +-1/sqrt(fan_in), spread over most of the range. */
    float lo = 1, hi = -1, bound = 1.0f / sqrtf(128);
    for (int k = 0; k < 128 * 128; k++) {
        lo = fminf(lo, a.weight[2][k]);
        hi = fmaxf(hi, a.weight[2][k]);
    }
    cr_assert(lo >= -bound && hi <= bound && lo < -0.95f * bound && hi > 0.95f * bound);
    cr_assert(fabsf(a.bias[6][0]) <= 1.0f / 8.0f);
    cr_assert_null(a.weight[1], "activations own no weights");

    char path[256];
    tmppath(path, sizeof path, "w.safetensors");
    cr_assert_eq(sl_weights_save(&m, &a, path), SL_OK, "%s", sl_last_error());
    sl_weights d;
    cr_assert_eq(sl_weights_load(&m, path, &d), SL_OK, "%s", sl_last_error());
    cr_assert_arr_eq(d.weight[4], a.weight[4], 64 * 128 * 4);
    cr_assert_arr_eq(d.bias[6], a.bias[6], 10 * 4);
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
         .data = a.weight[0]},
        {.name = "0.bias", .dtype = SL_DTYPE_F32, .ndim = 1, .shape = {128}, .data = a.bias[0]},
        {.name = "2.weight",
         .dtype = SL_DTYPE_F32,
         .ndim = 2,
         .shape = {128, 128},
         .data = a.weight[2]},
        {.name = "2.bias", .dtype = SL_DTYPE_F32, .ndim = 1, .shape = {128}, .data = a.bias[2]},
        {.name = "4.weight",
         .dtype = SL_DTYPE_F32,
         .ndim = 2,
         .shape = {64, 128},
         .data = a.weight[4]},
        {.name = "4.bias", .dtype = SL_DTYPE_F32, .ndim = 1, .shape = {64}, .data = a.bias[4]},
        {.name = "6.weight",
         .dtype = SL_DTYPE_F32,
         .ndim = 2,
         .shape = {10, 64},
         .data = a.weight[6]},
        {.name = "6.bias", .dtype = SL_DTYPE_I32, .ndim = 1, .shape = {10}, .data = bogus},
        {.name = "7.weight", .dtype = SL_DTYPE_F32, .ndim = 1, .shape = {10}, .data = a.bias[6]},
    };
    char p2[256];
    tmppath(p2, sizeof p2, "bad.safetensors");
    cr_assert_eq(sl_safetensors_save(p2, t, 9, NULL, NULL, 0), SL_OK);
    assert_fails_with(sl_weights_load(&m, p2, &d), "tensor '6.bias' is I32, expected F32");
    t[7].dtype = SL_DTYPE_F32;
    t[7].data = a.bias[6];
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
    cr_assert_arr_eq(a.weights.weight[2], b.weights.weight[2], 128 * 128 * 4);
    cr_assert_arr_eq(a.weights.bias[6], b.weights.bias[6], 10 * 4);
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
            cr_assert_eq(sl_stage_optimizer_step(st[s], &cfg.train.optimizer), SL_OK);
    }
    sl_weights out;
    cr_assert_eq(sl_weights_alloc(&m, &out), SL_OK);
    for (int s = 0; s < S; s++) cr_assert_eq(sl_stage_download(st[s], &out), SL_OK);
    for (int i = 0; i < m.nlayers; i++) {
        if (m.layers[i].kind != SL_LAYER_LINEAR) continue;
        cr_assert_arr_eq(out.weight[i], ref.weights.weight[i],
                         (size_t)m.layers[i].in * (size_t)m.layers[i].out * 4, "layer %d", i);
        cr_assert_arr_eq(out.bias[i], ref.weights.bias[i], (size_t)m.layers[i].out * 4);
    }
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
