/* The reference trainer against PyTorch: fixtures written by tests/fixtures/make_torch_fixture.py
 * (nn.Sequential, the same micro-batch accumulation, torch.optim.SGD / Adam). */
#include <criterion/criterion.h>
#include <math.h>

#include "helpers.h"
#include "runtime/data/data.h"
#include "runtime/model/model.h"
#include "runtime/safetensors/safetensors.h"

/* |got - want| <= atol + rtol * |want|, as llm.c checks against its PyTorch state. */
#define ATOL 1e-5
#define RTOL 1e-4

static void check_fixture(const char *name)
{
    char dir[512], path[640];
    snprintf(dir, sizeof dir, "%s/tests/fixtures", source_dir());
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    sl_safetensors st;
    cr_assert_eq(sl_safetensors_load(path, &st), SL_OK, "%s", sl_last_error());
    const char *json = sl_safetensors_meta(&st, "config");
    cr_assert_not_null(json, "%s has no config metadata", name);
    sl_config cfg;
    sl_model m;
    sl_weights init, final;
    sl_data d;
    sl_device *dev;
    cr_assert_eq(sl_config_parse(json, dir, NULL, 0, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_weights_from_safetensors(&m, &st, "init.", path, &init), SL_OK, "%s",
                 sl_last_error());
    cr_assert_eq(sl_weights_from_safetensors(&m, &st, "final.", path, &final), SL_OK, "%s",
                 sl_last_error());
    cr_assert_eq(sl_data_load(&cfg, m.outputs, &d), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_device_open("cpu", &dev), SL_OK);
    sl_train_result r;
    cr_assert_eq(sl_reference_train(dev, &cfg, &m, &init, &d, &r), SL_OK, "%s", sl_last_error());

    const sl_tensor *losses = sl_safetensors_find(&st, "losses");
    cr_assert(losses && losses->dtype == SL_DTYPE_F64 && losses->elems == (size_t)r.steps);
    double worst = 0;
    for (int s = 0; s < r.steps; s++) {
        double want;
        memcpy(&want, (const char *)losses->data + 8 * s, 8);
        double err = fabs(r.losses[s] - want);
        worst = fmax(worst, err / (ATOL + RTOL * fabs(want)));
        cr_assert(err <= ATOL + RTOL * fabs(want), "%s step %d: loss %.8f, PyTorch %.8f", name, s,
                  r.losses[s], want);
    }
    /* Every parameter of the model, weights and biases alike. */
    cr_assert(m.ntensors > 0);
    for (int p = 0; p < m.ntensors; p++) {
        for (size_t k = 0; k < m.params[p].numel; k++) {
            float got = r.weights.data[p][k], want = final.data[p][k];
            double err = fabs((double)got - want);
            worst = fmax(worst, err / (ATOL + RTOL * fabs(want)));
            cr_assert(err <= ATOL + RTOL * fabs(want), "%s %s[%zu]: %.8f, PyTorch %.8f", name,
                      m.params[p].name, k, (double)got, (double)want);
        }
    }
    cr_log_info("%s: worst error %.3f of the tolerance", name, worst);
    sl_train_result_free(&r);
    sl_device_close(dev);
    sl_data_free(&d);
    sl_weights_free(&init);
    sl_weights_free(&final);
    sl_model_free(&m);
    sl_config_free(&cfg);
    sl_safetensors_free(&st);
}

Test(torch, cross_entropy_sgd_momentum_weight_decay)
{
    check_fixture("torch_ce_sgd");
}

Test(torch, cross_entropy_adam_weight_decay)
{
    check_fixture("torch_ce_adam");
}

Test(torch, mse_adam)
{
    check_fixture("torch_mse_adam");
}

Test(torch, mse_sgd_momentum)
{
    check_fixture("torch_mse_sgd");
}
