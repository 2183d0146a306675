/* The delay:MS[:WIDTH] layer kind: its parsing and its errors, its shape, that it is a unit of the
 * partition without parameters, and its passes on the CPU: the identity when the widths match,
 * zeros otherwise, and at least MS of time per forward, input pass and weight pass (a lower
 * bound, which no load can break: the layer sleeps), with no output gradient kept for its weight
 * pass. */
#include <criterion/criterion.h>
#include <time.h>

#include "helpers.h"
#include "runtime/model/model.h"

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

Test(delay, parse_and_shape)
{
    sl_layer l;
    cr_assert_eq(sl_layer_parse("delay:2", &l), SL_OK, "%s", sl_last_error());
    cr_assert_str_eq(l.kind->name, "delay");
    cr_assert_eq(l.arg, 2000, "kept in microseconds");
    l.in = 5;
    cr_assert_eq(l.kind->shape(&l), SL_OK);
    cr_assert_eq(l.out, 5, "the input's width by default");
    cr_assert_eq(sl_layer_parse("delay:0.25:262144", &l), SL_OK, "%s", sl_last_error());
    cr_assert_eq(l.arg, 250);
    l.in = 1;
    cr_assert_eq(l.kind->shape(&l), SL_OK);
    cr_assert_eq(l.out, 262144);
    /* A unit of the partition, with no parameters and nothing computed. */
    cr_assert(sl_layer_has_params(&l));
    sl_param_spec spec[SL_LAYER_MAX_PARAMS];
    cr_assert_eq(l.kind->params(&l, spec), 0);
    cr_assert_eq(l.kind->flops(&l, SL_PHASE_F), 0.0);
    cr_assert_eq(sl_layer_stash_bytes(&l), 262144 * sizeof(float));

    const char *bad[] = {"delay",       "delay:",       "delay:0",     "delay:-1",  "delay:+2",
                         "delay:x",     "delay:2:0",    "delay:2:-3",  "delay:2:x", "delay:2:",
                         "delay:70000", "delay:0.0001", "delay:2:1.5", "delay: 2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_neq(sl_layer_parse(bad[i], &l), SL_OK, "'%s' was taken", bad[i]);
        cr_assert(strstr(sl_last_error(), "delay:MS or delay:MS:WIDTH"), "'%s': %s", bad[i],
                  sl_last_error());
    }
}

/* linear:8, delay:1 (identity), delay:1:4 (zeros), linear:10 as one stage on the CPU. */
Test(delay, passes_on_cpu)
{
    char path[512];
    snprintf(path, sizeof path, "%s/samples/digits/digits.json", source_dir());
    const char *sets[] = {"model.layers=[\"linear:8\",\"delay:1\",\"delay:1:4\",\"linear:10\"]"};
    sl_config cfg;
    cr_assert_eq(sl_config_load(path, sets, 1, &cfg), SL_OK, "%s", sl_last_error());
    sl_model m;
    sl_weights w;
    sl_device *dev;
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_weights_from_config(&cfg, &m, &w), SL_OK);
    cr_assert_eq(sl_device_open("cpu", &dev), SL_OK);
    enum { ROWS = 3 };
    sl_stage *st;
    sl_stash stash;
    cr_assert_eq(sl_stage_create(dev, &m, 0, m.nlayers, &w, &st), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_stash_alloc(st, ROWS, &stash), SL_OK);
    sl_buffer *x, *dout, *din;
    float hx[ROWS * 64], hd[ROWS * 10];
    for (int i = 0; i < ROWS * 64; i++) hx[i] = (float)(i % 7) * 0.25f;
    for (int i = 0; i < ROWS * 10; i++) hd[i] = 1.0f;
    cr_assert_eq(sl_buffer_alloc(dev, sizeof hx, &x), SL_OK);
    cr_assert_eq(sl_buffer_alloc(dev, sizeof hd, &dout), SL_OK);
    cr_assert_eq(sl_buffer_alloc(dev, sizeof hx, &din), SL_OK);
    cr_assert_eq(sl_buffer_upload(x, 0, hx, sizeof hx), SL_OK);
    cr_assert_eq(sl_buffer_upload(dout, 0, hd, sizeof hd), SL_OK);

    double t0 = now_ms();
    cr_assert_eq(sl_stage_forward(st, ROWS, x, &stash), SL_OK, "%s", sl_last_error());
    double t1 = now_ms();
    cr_assert_geq(t1 - t0, 2.0, "two delay:1 layers took %.3f ms", t1 - t0);
    float a0[ROWS * 8], a1[ROWS * 8], a2[ROWS * 4];
    cr_assert_eq(sl_buffer_download(stash.act[0], 0, a0, sizeof a0), SL_OK);
    cr_assert_eq(sl_buffer_download(stash.act[1], 0, a1, sizeof a1), SL_OK);
    cr_assert_eq(sl_buffer_download(stash.act[2], 0, a2, sizeof a2), SL_OK);
    cr_assert_arr_eq(a0, a1, sizeof a0, "delay:1 is the identity");
    for (int i = 0; i < ROWS * 4; i++) cr_assert_eq(a2[i], 0.0f, "delay:1:4 gives zeros");

    /* The input pass: MS per delay layer; the output gradient through delay:1:4 is zero, so
     * nothing reaches the first linear layer's input. */
    t0 = now_ms();
    cr_assert_eq(sl_stage_backward_input(st, ROWS, x, &stash, dout, din), SL_OK, "%s",
                 sl_last_error());
    t1 = now_ms();
    cr_assert_geq(t1 - t0, 2.0, "the input pass took %.3f ms", t1 - t0);
    float hdin[ROWS * 64];
    cr_assert_eq(sl_buffer_download(din, 0, hdin, sizeof hdin), SL_OK);
    for (int i = 0; i < ROWS * 64; i++) cr_assert_eq(hdin[i], 0.0f);
    /* It keeps the output gradient for the weight pass of the linear layers only: a delay layer's
     * weight pass reads none, so a copy of it would be time outside its MS. */
    cr_assert_not_null(stash.grad);
    cr_assert_not_null(stash.grad[0]);
    cr_assert_null(stash.grad[1]);
    cr_assert_null(stash.grad[2]);
    cr_assert_not_null(stash.grad[3]);
    t0 = now_ms();
    cr_assert_eq(sl_stage_backward_weight(st, ROWS, x, &stash), SL_OK, "%s", sl_last_error());
    t1 = now_ms();
    cr_assert_geq(t1 - t0, 2.0, "the weight pass took %.3f ms", t1 - t0);

    sl_buffer_free(x);
    sl_buffer_free(dout);
    sl_buffer_free(din);
    sl_stash_free(&stash);
    sl_stage_free(st);
    sl_device_close(dev);
    sl_weights_free(&w);
    sl_model_free(&m);
    sl_config_free(&cfg);
}
