/* The GPT against PyTorch: fixtures written by tests/fixtures/make_torch_gpt_fixture.py (nanoGPT's
 * model and training loop: AdamW with nanoGPT's parameter groups, warm-up and cosine decay,
 * clip_grad_norm_, micro-batches), trained here by the one-device trainer on cpu, on PoCL's
 * OpenCL device and on lavapipe's Vulkan device. */
#include <criterion/criterion.h>
#include <math.h>

#include "fixture.h"
#include "tests/backends/require_devices.h"

/* Every step's loss within 1e-4 relative; the final weights allclose(rtol 1e-3, atol 1e-4). */
#define LOSS_RTOL 1e-4
#define W_ATOL    1e-4
#define W_RTOL    1e-3

static void check_fixture(const char *name, const char *backend)
{
    const char *id = backend ? sl_test_first_device(backend) : "cpu";
    if (!id) sl_test_no_device(backend, sl_device_list_problems());
    torch_fixture f;
    fixture_load(name, &f);
    cr_assert(f.cfg.model.has_gpt);
    sl_device *dev;
    cr_assert_eq(sl_device_open(id, &dev), SL_OK, "%s", sl_last_error());
    sl_train_result r;
    cr_assert_eq(sl_reference_train(dev, &f.cfg, &f.m, &f.init, &f.data, &r), SL_OK, "%s",
                 sl_last_error());
    cr_assert_eq(f.losses->elems, (size_t)r.steps);
    for (int s = 0; s < r.steps; s++) {
        double want = fixture_loss(&f, s);
        cr_assert(fabs(r.losses[s] - want) <= LOSS_RTOL * fabs(want),
                  "%s on %s, step %d: loss %.8f, PyTorch %.8f", name, id, s, r.losses[s], want);
    }
    cr_assert(r.losses[r.steps - 1] < r.losses[0] - 0.3, "training must lower the loss");
    double worst = 0;
    for (int p = 0; p < f.m.ntensors; p++) {
        for (size_t k = 0; k < f.m.params[p].numel; k++) {
            float got = r.weights.data[p][k], want = f.final.data[p][k];
            double err = fabs((double)got - want), tol = W_ATOL + W_RTOL * fabs(want);
            worst = fmax(worst, err / tol);
            cr_assert(err <= tol, "%s on %s: %s[%zu] %.8f, PyTorch %.8f", name, id,
                      f.m.params[p].name, k, (double)got, (double)want);
        }
    }
    cr_log_info("%s on %s: worst weight error %.3f of the tolerance", name, id, worst);
    sl_train_result_free(&r);
    sl_device_close(dev);
    fixture_free(&f);
}

Test(torch_gpt, tied_on_cpu)
{
    check_fixture("torch_gpt_tied", NULL);
}

Test(torch_gpt, untied_on_cpu)
{
    check_fixture("torch_gpt_untied", NULL);
}

Test(torch_gpt, tied_on_opencl)
{
    check_fixture("torch_gpt_tied", "opencl");
}

Test(torch_gpt, untied_on_opencl)
{
    check_fixture("torch_gpt_untied", "opencl");
}

Test(torch_gpt, tied_on_vulkan)
{
    check_fixture("torch_gpt_tied", "vulkan");
}

Test(torch_gpt, untied_on_vulkan)
{
    check_fixture("torch_gpt_untied", "vulkan");
}
