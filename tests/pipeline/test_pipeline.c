/* End-to-end equivalence: every schedule, with and without recomputation, on 1, 2 and 4 ranks
 * (and 2 chunks for interleaved, looped-bfs, zb-v and dualpipev, two replicas for chimera) gives
 * the per-step losses and final weights of the 1-rank run within 1e-5 relative, on the CPU backend
 * and on an OpenCL device; a mixed-device pipeline gives the same; two runs of one config are
 * bit-identical; a failing rank stops the run cleanly. Each run starts real rank processes through
 * the sluice executable (SLUICE_EXE). */
#include <criterion/criterion.h>
#include <errno.h>
#include <sys/wait.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "core/core.h"
#include "runtime/config/config.h"
#include "runtime/data/data.h"
#include "runtime/launch/launch.h"
#include "runtime/model/model.h"
#include "runtime/plan/plan.h"
#include "runtime/train/train.h"
#include "tests/backends/require_devices.h"
#include "tests/pipeline/outdir.h"
#include "tests/pipeline/pipeline_run.h"

TestSuite(pipeline, .init = setup, .fini = teardown, .timeout = 0);

static void check_schedules(const char *device)
{
    char devset[64];
    snprintf(devset, sizeof devset, "devices=\"%s\"", device);
    result ref;
    const char *base[] = {devset, "pipeline.stages=1", "pipeline.schedule=\"1f1b\""};
    cr_assert_eq(train(base, 3, &ref), SL_OK, "1-rank run on %s: %s", device, sl_last_error());
    cr_assert(ref.losses[STEPS - 1] < ref.losses[0], "training must lower the loss");
    /* The V schedules (zb-v, dualpipev: rank r holds stages r and 2D-1-r), chimera (rank r holds
     * stage r of one replica and D-1-r of the other, which sums their gradients with rank D-1-r)
     * and looped BFS run on 2 and 4 ranks; on 4 zb-v and dualpipev take 8 micro-batches, their
     * minimum being 2D-1 and 2D. */
    static const struct {
        const char *schedule;
        int chunks;
        bool one_rank;
    } scheds[] = {{"gpipe", 1, true},      {"1f1b", 1, true},        {"interleaved", 2, true},
                  {"zb-h1", 1, true},      {"looped-bfs", 2, false}, {"zb-v", 2, false},
                  {"dualpipev", 2, false}, {"chimera", 2, false}};
    static const int ranks[] = {1, 2, 4};
    for (size_t s = 0; s < sizeof scheds / sizeof scheds[0]; s++)
        for (size_t r = 0; r < sizeof ranks / sizeof ranks[0]; r++)
            for (int recompute = 0; recompute <= 1; recompute++) {
                /* 1f1b on one rank without recomputation is the reference run itself. */
                if (!strcmp(scheds[s].schedule, "1f1b") && ranks[r] == 1 && !recompute) continue;
                if (ranks[r] == 1 && !scheds[s].one_rank) continue;
                char a[64], b[64], c[64], d[64], e[64], what[128];
                snprintf(a, sizeof a, "pipeline.schedule=\"%s\"", scheds[s].schedule);
                snprintf(b, sizeof b, "pipeline.chunks=%d", scheds[s].chunks);
                snprintf(c, sizeof c, "pipeline.stages=%d", ranks[r]);
                snprintf(d, sizeof d, "pipeline.recompute=%s", recompute ? "true" : "false");
                bool v =
                    !strcmp(scheds[s].schedule, "zb-v") || !strcmp(scheds[s].schedule, "dualpipev");
                snprintf(e, sizeof e, "train.microbatches=%d", v && ranks[r] == 4 ? 8 : 4);
                snprintf(what, sizeof what, "%s on %s, %d ranks, %d chunks, recompute %d",
                         scheds[s].schedule, device, ranks[r], scheds[s].chunks, recompute);
                const char *sets[] = {devset, a, b, c, d, e};
                result got;
                cr_assert_eq(train(sets, 6, &got), SL_OK, "%s: %s", what, sl_last_error());
                assert_same(&got, &ref, 1e-5, what);
                result_free(&got);
            }
    /* Chimera on 6 ranks: pair 1's gradients (ranks 1 and 4) pass through ranks 2 and 3. */
    const char *six[] = {devset, "pipeline.schedule=\"chimera\"", "pipeline.stages=6"};
    result got;
    cr_assert_eq(train(six, 3, &got), SL_OK, "chimera on 6 ranks: %s", sl_last_error());
    assert_same(&got, &ref, 1e-5, "chimera on 6 ranks");
    result_free(&got);
    result_free(&ref);
}

Test(pipeline, every_schedule_equals_one_rank_on_cpu)
{
    check_schedules("cpu");
}

Test(pipeline, every_schedule_equals_one_rank_on_opencl)
{
    const char *dev = sl_test_first_device("opencl");
    if (!dev) sl_test_no_device("opencl", sl_device_list_problems());
    check_schedules(dev);
}

Test(pipeline, mixed_devices_equal_one_device)
{
    const char *ocl = sl_test_first_device("opencl"), *vk = sl_test_first_device("vulkan");
    if (!ocl) sl_test_no_device("opencl", sl_device_list_problems());
    if (!vk) sl_test_no_device("vulkan", sl_device_list_problems());
    char mixed[160];
    snprintf(mixed, sizeof mixed, "devices=[\"cpu\", \"%s\", \"%s\", \"cpu\"]", ocl, vk);
    result ref, got;
    const char *one[] = {"pipeline.stages=1"};
    cr_assert_eq(train(one, 1, &ref), SL_OK, "%s", sl_last_error());
    const char *sets[] = {mixed, "pipeline.stages=4"};
    cr_assert_eq(train(sets, 2, &got), SL_OK, "%s", sl_last_error());
    assert_same(&got, &ref, 1e-5, mixed);
    result_free(&got);
    result_free(&ref);
}

Test(pipeline, two_runs_are_bit_identical)
{
    const char *sets[] = {"pipeline.stages=4", "pipeline.schedule=\"zb-h1\"",
                          "train.optimizer={\"name\": \"adam\", \"lr\": 0.01}"};
    result a, b;
    cr_assert_eq(train(sets, 3, &a), SL_OK, "%s", sl_last_error());
    cr_assert_eq(train(sets, 3, &b), SL_OK, "%s", sl_last_error());
    assert_same(&a, &b, 0, "second run");
    result_free(&a);
    result_free(&b);
}

Test(pipeline, curve_encrypted_links_train_the_same)
{
    result plain, enc;
    const char *a[] = {"pipeline.stages=2"};
    const char *b[] = {"pipeline.stages=2", "launch.curve=true"};
    cr_assert_eq(train(a, 1, &plain), SL_OK, "%s", sl_last_error());
    cr_assert_eq(train(b, 2, &enc), SL_OK, "%s", sl_last_error());
    assert_same(&enc, &plain, 0, "CURVE links");
    result_free(&plain);
    result_free(&enc);
}

/* A checkpoint after k steps holds the weights a k-step run ends with. */
Test(pipeline, checkpoints_hold_the_weights_of_that_step)
{
    char dir[128], set_dir[160];
    snprintf(dir, sizeof dir, "%s/ckpt", outdir);
    snprintf(set_dir, sizeof set_dir, "output.dir=\"%s\"", dir);
    const char *sets[] = {"pipeline.stages=2", "output.checkpoint_interval=2", set_dir};
    sl_config cfg;
    cr_assert_eq(sl_config_parse(base_config, ".", sets, 3, &cfg), SL_OK, "%s", sl_last_error());
    sl_train_options opt = {.exe = getenv("SLUICE_EXE")};
    sl_train_summary sum;
    cr_assert_eq(sl_train(&cfg, &opt, &sum), SL_OK, "%s", sl_last_error());
    result ckpt, two;
    char path[256];
    snprintf(path, sizeof path, "%s/checkpoint-2/model.safetensors", dir);
    cr_assert_eq(sl_model_init(&cfg, &ckpt.model), SL_OK);
    cr_assert_eq(sl_weights_load(&ckpt.model, path, &ckpt.weights), SL_OK, "%s", sl_last_error());
    snprintf(path, sizeof path, "%s/checkpoint-4", dir);
    cr_assert_neq(access(path, F_OK), 0,
                  "no checkpoint at the last step: that is final.safetensors");
    sl_config_free(&cfg);
    const char *short_run[] = {"pipeline.stages=2", "train.steps=2"};
    cr_assert_eq(train(short_run, 2, &two), SL_OK, "%s", sl_last_error());
    /* compare weights only: a checkpoint has no losses */
    ckpt.nsteps = two.nsteps;
    for (int k = 0; k < two.nsteps; k++) ckpt.losses[k] = two.losses[k];
    assert_same(&ckpt, &two, 0, "checkpoint after 2 steps");
    result_free(&ckpt);
    result_free(&two);
}

Test(pipeline, config_errors_stop_before_any_rank)
{
    result r;
    const char *bad_dev[] = {"pipeline.stages=2", "devices=[\"cpu\", \"opencl:42\"]"};
    cr_assert_eq(train(bad_dev, 2, &r), SL_ECONFIG);
    cr_assert(strstr(sl_last_error(), "opencl:42") && strstr(sl_last_error(), "cpu"), "%s",
              sl_last_error());
    const char *too_many[] = {"pipeline.stages=9"};
    cr_assert_neq(train(too_many, 1, &r), SL_OK);
    cr_assert(strstr(sl_last_error(), "stages"), "%s", sl_last_error());
    const char *bad_interleave[] = {"pipeline.stages=2", "pipeline.schedule=\"interleaved\"",
                                    "pipeline.chunks=1"};
    cr_assert_neq(train(bad_interleave, 3, &r), SL_OK);
    cr_assert(strstr(sl_last_error(), "chunks"), "%s", sl_last_error());
    const char *no_keys[] = {"pipeline.stages=2", "launch.curve=true", "launch.keys=\"/tmp\""};
    cr_assert_eq(train(no_keys, 3, &r), SL_ECONFIG);
    cr_assert(strstr(sl_last_error(), "rank0.pub") && strstr(sl_last_error(), "sluice keys"), "%s",
              sl_last_error());
}

Test(pipeline, a_failing_rank_stops_the_run)
{
    /* SLUICE_FAIL_AT makes one rank fail at a given step (a test hook of the executor). */
    setenv("SLUICE_FAIL_AT", "2:1", 1); /* rank 2, step 1 */
    result r;
    const char *sets[] = {"pipeline.stages=4"};
    int st = train(sets, 1, &r);
    unsetenv("SLUICE_FAIL_AT");
    cr_assert_eq(st, SL_EPEER, "%s", sl_last_error());
    cr_assert(strstr(sl_last_error(), "rank 2"), "the message names the failing rank: %s",
              sl_last_error());
    /* No rank process is left behind: every child of ours has been reaped. */
    int ws;
    cr_assert_eq(waitpid(-1, &ws, WNOHANG), -1);
    cr_assert_eq(errno, ECHILD);
}

/* The same command started by a launcher (here: Open MPI's environment, set by hand) meets at
 * MASTER_ADDR:MASTER_PORT over tcp and trains to the same weights as a local run. */
Test(pipeline, under_a_launcher_equals_local)
{
    result ref, got;
    const char *local[] = {"pipeline.stages=1"};
    cr_assert_eq(train(local, 1, &ref), SL_OK, "%s", sl_last_error());

    char host[64], dir[128], cfgpath[160], port[16];
    int p;
    cr_assert_eq(sl_rendezvous_local(host, sizeof host, &p), SL_OK);
    snprintf(port, sizeof port, "%d", p);
    snprintf(dir, sizeof dir, "%s/launched", outdir);
    snprintf(cfgpath, sizeof cfgpath, "%s/launched.json", outdir);
    FILE *f = fopen(cfgpath, "w");
    cr_assert_not_null(f);
    fputs(base_config, f);
    fclose(f);
    char src[512], set_dir[200], set_data[700];
    cr_assert_not_null(getcwd(src, sizeof src));
    snprintf(set_dir, sizeof set_dir, "output.dir=\"%s\"", dir);
    snprintf(set_data, sizeof set_data, "data.path=\"%s/samples/digits/digits.csv.gz\"", src);
    pid_t pids[2];
    for (int r = 0; r < 2; r++) {
        pids[r] = fork();
        cr_assert_geq(pids[r], 0);
        if (pids[r] == 0) {
            char rank[8];
            snprintf(rank, sizeof rank, "%d", r);
            setenv("OMPI_COMM_WORLD_RANK", rank, 1);
            setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
            setenv("MASTER_ADDR", "127.0.0.1", 1);
            setenv("MASTER_PORT", port, 1);
            setenv("SLUICE_HOST", "127.0.0.1", 1);
            execl(getenv("SLUICE_EXE"), "sluice", "train", cfgpath, "--quiet", "--set",
                  "pipeline.stages=2", "--set", set_dir, "--set", set_data, (char *)NULL);
            _exit(127);
        }
    }
    for (int r = 0; r < 2; r++) {
        int ws;
        cr_assert_eq(waitpid(pids[r], &ws, 0), pids[r]);
        cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "launched rank %d failed", r);
    }
    /* Read the launched run's outputs like train() does. */
    char path[256];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    f = fopen(path, "r");
    cr_assert_not_null(f, "rank 0 writes metrics.jsonl");
    got.nsteps = STEPS;
    for (int k = 0; k < STEPS; k++) {
        got.grad_norms[k] = NAN;
        int step;
        cr_assert_eq(fscanf(f, "{\"step\": %d, \"loss\": %lf%*[^\n]\n", &step, &got.losses[k]), 2);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/final.safetensors", dir);
    sl_config cfg;
    cr_assert_eq(sl_config_parse(base_config, ".", NULL, 0, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_model_init(&cfg, &got.model), SL_OK);
    sl_config_free(&cfg);
    cr_assert_eq(sl_weights_load(&got.model, path, &got.weights), SL_OK, "%s", sl_last_error());
    assert_same(&got, &ref, 1e-5, "launched by Open MPI's environment");
    result_free(&got);
    result_free(&ref);
}
