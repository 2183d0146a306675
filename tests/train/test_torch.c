/* The reference trainer against PyTorch: fixtures written by tests/fixtures/make_torch_fixture.py
 * (nn.Sequential, the same micro-batch accumulation, torch.optim.SGD / Adam). */
#include <criterion/criterion.h>
#include <math.h>

#include "fixture.h"

/* |got - want| <= atol + rtol * |want|, as llm.c checks against its PyTorch state. */
#define ATOL 1e-5
#define RTOL 1e-4

static void check_fixture(const char *name)
{
    torch_fixture f;
    fixture_load(name, &f);
    sl_device *dev;
    cr_assert_eq(sl_device_open("cpu", &dev), SL_OK);
    sl_train_result r;
    cr_assert_eq(sl_reference_train(dev, &f.cfg, &f.m, &f.init, &f.data, &r), SL_OK, "%s",
                 sl_last_error());
    cr_assert_eq(f.losses->elems, (size_t)r.steps);
    double worst = 0;
    for (int s = 0; s < r.steps; s++) {
        double want = fixture_loss(&f, s), err = fabs(r.losses[s] - want);
        worst = fmax(worst, err / (ATOL + RTOL * fabs(want)));
        cr_assert(err <= ATOL + RTOL * fabs(want), "%s step %d: loss %.8f, PyTorch %.8f", name, s,
                  r.losses[s], want);
    }
    /* Every parameter of the model, weights and biases alike. */
    cr_assert(f.m.ntensors > 0);
    for (int p = 0; p < f.m.ntensors; p++) {
        for (size_t k = 0; k < f.m.params[p].numel; k++) {
            float got = r.weights.data[p][k], want = f.final.data[p][k];
            double err = fabs((double)got - want);
            worst = fmax(worst, err / (ATOL + RTOL * fabs(want)));
            cr_assert(err <= ATOL + RTOL * fabs(want), "%s %s[%zu]: %.8f, PyTorch %.8f", name,
                      f.m.params[p].name, k, (double)got, (double)want);
        }
    }
    cr_log_info("%s: worst error %.3f of the tolerance", name, worst);
    sl_train_result_free(&r);
    sl_device_close(dev);
    fixture_free(&f);
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
