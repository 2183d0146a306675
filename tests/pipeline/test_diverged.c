/* A run that diverges stops: a learning rate of 1e6 makes the gradients NaN within a few steps,
 * and the run fails (the command exits non-zero) with a message naming the step, the rank and the
 * parameter's layer, on one rank, on a pipeline and in the one-device trainer. Ranks are real
 * processes started from the sluice executable (SLUICE_EXE). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/backend.h"
#include "core/core.h"
#include "runtime/config/config.h"
#include "runtime/data/data.h"
#include "runtime/model/model.h"
#include "runtime/train/train.h"
#include "tests/pipeline/outdir.h"

static const char *config =
    "{\"model\": {\"inputs\": 64, \"layers\": [\"linear:32\", \"relu\", \"linear:16\", \"relu\","
    " \"linear:10\"], \"loss\": \"cross_entropy\", \"seed\": 0},"
    " \"data\": {\"path\": \"samples/digits/digits.csv.gz\", \"scale\": 0.0625},"
    " \"train\": {\"steps\": 20, \"batch\": 16, \"microbatches\": 2, \"threads\": 1,"
    "  \"optimizer\": {\"name\": \"sgd\", \"lr\": 1000000}},"
    " \"pipeline\": {\"stages\": 1}, \"devices\": \"cpu\"}";

TestSuite(diverged, .init = setup, .fini = teardown, .timeout = 0);

static int train_with(const char *stages, const char *clip)
{
    static int run_no;
    char dirset[160];
    snprintf(dirset, sizeof dirset, "output.dir=\"%s/run%d\"", outdir, run_no++);
    const char *sets[] = {stages, dirset, clip};
    sl_config cfg;
    cr_assert_eq(sl_config_parse(config, ".", sets, clip ? 3 : 2, &cfg), SL_OK, "%s",
                 sl_last_error());
    sl_train_options opt = {.exe = getenv("SLUICE_EXE")};
    sl_train_summary sum;
    int st = sl_train(&cfg, &opt, &sum);
    sl_config_free(&cfg);
    return st;
}

static void assert_names_divergence(const char *what, const char *hint)
{
    const char *m = sl_last_error();
    cr_assert(strstr(m, "not finite") && strstr(m, "diverged"), "%s: %s", what, m);
    cr_assert(strstr(m, hint), "%s: the hint is '%s': %s", what, hint, m);
    cr_assert(strstr(m, ", step "), "%s: the step is named: %s", what, m);
    cr_assert(strstr(m, "rank "), "%s: the rank is named: %s", what, m);
    cr_assert(strstr(m, "(layer "), "%s: the layer is named: %s", what, m);
}

Test(diverged, one_rank_stops_naming_step_rank_and_layer)
{
    cr_assert_neq(train_with("pipeline.stages=1", NULL), SL_OK, "a diverged run must fail");
    assert_names_divergence("1 rank", "lower train.optimizer.lr or set train.grad_clip");
}

Test(diverged, a_pipeline_stops_naming_step_rank_and_layer)
{
    cr_assert_neq(train_with("pipeline.stages=3", NULL), SL_OK, "a diverged run must fail");
    assert_names_divergence("3 ranks", "lower train.optimizer.lr or set train.grad_clip");
    int ws;
    cr_assert_eq(waitpid(-1, &ws, WNOHANG), -1, "no rank process is left behind");
    cr_assert_eq(errno, ECHILD);
}

/* With clipping already on, the hint says to lower it instead of setting it. */
Test(diverged, with_clipping_the_hint_names_its_value)
{
    cr_assert_neq(train_with("pipeline.stages=2", "train.grad_clip=1e20"), SL_OK,
                  "a diverged run must fail");
    const char *m = sl_last_error();
    cr_assert(strstr(m, "diverged") &&
                  strstr(m, "lower train.optimizer.lr or train.grad_clip (now 1e+20)"),
              "%s", m);
}

/* The command itself exits non-zero (it used to print "final loss -nan" and exit 0). */
Test(diverged, the_command_exits_non_zero)
{
    char cfgpath[256], dirset[256];
    snprintf(cfgpath, sizeof cfgpath, "%s/diverge.json", outdir);
    snprintf(dirset, sizeof dirset, "output.dir=\"%s/cli\"", outdir);
    FILE *f = fopen(cfgpath, "w");
    cr_assert_not_null(f);
    fputs(config, f);
    fclose(f);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        freopen("/dev/null", "w", stdout);
        execl(getenv("SLUICE_EXE"), "sluice", "train", cfgpath, "--set", "pipeline.stages=2",
              "--set", dirset, (char *)NULL);
        _exit(127);
    }
    int ws;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) != 0 && WEXITSTATUS(ws) != 127,
              "sluice train exits non-zero on a diverged run (status %d)", ws);
}

/* The one-device trainer (the oracle) stops the same way. */
Test(diverged, the_reference_trainer_stops)
{
    sl_config cfg;
    cr_assert_eq(sl_config_parse(config, ".", NULL, 0, &cfg), SL_OK, "%s", sl_last_error());
    sl_model m;
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK, "%s", sl_last_error());
    sl_data data;
    cr_assert_eq(sl_data_load(&cfg, m.outputs, &data), SL_OK, "%s", sl_last_error());
    sl_weights w;
    cr_assert_eq(sl_weights_init(&m, 0, &w), SL_OK);
    sl_device *dev;
    cr_assert_eq(sl_device_open("cpu", &dev), SL_OK, "%s", sl_last_error());
    sl_train_result r;
    int st = sl_reference_train(dev, &cfg, &m, &w, &data, &r);
    cr_assert_eq(st, SL_ENONFINITE, "%s", sl_last_error());
    cr_assert(strstr(sl_last_error(), "step ") && strstr(sl_last_error(), "(layer "), "%s",
              sl_last_error());
    sl_device_close(dev);
    sl_weights_free(&w);
    sl_data_free(&data);
    sl_model_free(&m);
    sl_config_free(&cfg);
}
