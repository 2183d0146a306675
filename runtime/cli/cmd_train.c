/* `sluice train CONFIG [--set KEY=VALUE]...`: train a model on a pipeline of stage processes. */
#define _GNU_SOURCE /* strsignal */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu.h"
#include "runtime/cli/cli.h"
#include "runtime/config/config.h"
#include "core/core.h"
#include "runtime/train/train.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sluice train CONFIG [--set KEY=VALUE]... [--resume] [--quiet] [--keep-run-dir]\n\n"
        "Trains the model that CONFIG (JSON) describes, cut into pipeline.stages ranks, one\n"
        "process per rank on this host, linked over ipc://, running the pipeline.schedule for\n"
        "every step. Writes metrics.jsonl, final.safetensors, summary.json and trace.json\n"
        "into output.dir. If any rank fails, every rank stops and the command exits 1 with\n"
        "that rank's message. SIGINT or SIGTERM stops every rank after the current step\n"
        "(writing a checkpoint when output.checkpoint_interval is set); a second one stops\n"
        "them at once.\n\n"
        "  --set KEY=VALUE  override a config key (the value is JSON when it parses as JSON,\n"
        "                   else a string): --set pipeline.schedule=gpipe --set train.steps=50\n"
        "  --resume         go on from the newest complete checkpoint in output.dir\n"
        "                   (output.checkpoint_interval makes them), with its weights,\n"
        "                   optimizer state and data position\n"
        "  --quiet          no progress output\n"
        "  --keep-run-dir   keep the private run directory (sockets, per-rank files)\n"
        "  --rank R         be rank R of launch.endpoints (start one such process per rank,\n"
        "                   on any host; rank 0 gathers the outputs)\n\n"
        "Under mpirun, srun or torchrun the command is one rank, read from the launcher's\n"
        "environment; rank 0 hosts the rendezvous at MASTER_ADDR:MASTER_PORT.\n\n"
        "Example: sluice train samples/digits/digits.json --set pipeline.stages=2\n");
}

int sl_cmd_train(int argc, char **argv)
{
    const char *config = NULL, *run_dir = NULL, *resume_from = NULL;
    const char **sets = calloc((size_t)argc, sizeof *sets);
    int nsets = 0, rank = -1, quiet = 0, keep = 0, resume = 0;
    unsigned long long run_id = 0;
    if (!sets) return sl_cli_error("train", SL_ENOMEM);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(sets);
            return 0;
        } else if (!strcmp(a, "--set") && v) {
            sets[nsets++] = v;
            i++;
        } else if (!strncmp(a, "--set=", 6)) {
            sets[nsets++] = a + 6;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else if (!strcmp(a, "--keep-run-dir")) {
            keep = 1;
        } else if (!strcmp(a, "--resume")) {
            resume = 1;
        } else if (!strcmp(a, "--resume-from") && v) { /* internal: the rank side of --resume */
            resume_from = v;
            i++;
        } else if (!strcmp(a, "--rank") && v) { /* static, or with --run-dir internal */
            rank = atoi(v);
            i++;
        } else if (!strcmp(a, "--run-dir") && v) {
            run_dir = v;
            i++;
        } else if (!strcmp(a, "--run-id") && v) {
            run_id = strtoull(v, NULL, 10);
            i++;
        } else if (a[0] == '-' || config) {
            fprintf(stderr, "sluice train: unexpected argument '%s' (try --help)\n", a);
            free(sets);
            return 2;
        } else {
            config = a;
        }
    }
    if (run_dir) {
        free(sets);
        if (rank < 0) {
            fprintf(stderr, "sluice train: --rank and --run-dir go together\n");
            return 2;
        }
        int st = sl_train_rank(run_dir, rank, run_id, resume_from);
        if (st != SL_OK) {
            fprintf(stderr, "sluice train: rank %d: %s\n", rank, sl_last_error());
            return 1;
        }
        return 0;
    }
    if (!config) {
        usage(stderr);
        free(sets);
        return 2;
    }
    sl_config cfg;
    int st = sl_config_load(config, sets, nsets, &cfg);
    free(sets);
    if (st != SL_OK) return sl_cli_error("train", st);
    sl_launch_info launch;
    st = sl_launch_detect(&launch);
    if (st == SL_OK && rank >= 0) { /* static: launch.endpoints, each process given its rank */
        if (!cfg.launch.nendpoints || rank >= cfg.pipeline.stages)
            st = sl_fail(SL_ECONFIG,
                         "--rank %d needs launch.endpoints, one per rank of the %d in "
                         "pipeline.stages (or leave --rank out to start every rank here)",
                         rank, cfg.pipeline.stages);
        launch = (sl_launch_info){
            .launcher = SL_LAUNCHER_STATIC, .rank = rank, .world = cfg.pipeline.stages};
    }
    if (st != SL_OK) {
        sl_config_free(&cfg);
        return sl_cli_error("train", st);
    }
    /* A rank that sluice did not start (mpirun, srun, torchrun) fixes OpenBLAS's fallback core
     * (backends/cpu/cpu.h) by starting itself again, before it prints or runs anything. */
    if (launch.launcher != SL_LAUNCHER_NONE) sl_cpu_blas_reexec();
    if (!quiet && launch.rank == 0)
        fprintf(stderr, "sluice train: %s, %d stage%s (%s%s), %d steps of %d in %d micro-batches\n",
                config, cfg.pipeline.stages, cfg.pipeline.stages == 1 ? "" : "s",
                cfg.pipeline.schedule, cfg.pipeline.recompute ? ", recompute" : "", cfg.train.steps,
                cfg.train.batch, cfg.train.microbatches);
    sl_train_options opt = {
        .progress = !quiet && launch.rank == 0, .keep_run_dir = keep, .resume = resume};
    sl_train_summary sum;
    if (launch.launcher == SL_LAUNCHER_NONE) {
        st = sl_train(&cfg, &opt, &sum);
    } else {
        if (!quiet && launch.rank == 0)
            fprintf(stderr, "sluice train: started by %s as rank %d of %d\n",
                    sl_launcher_name(launch.launcher), launch.rank, launch.world);
        st = sl_train_launched(&cfg, &launch, &opt, &sum);
    }
    if (st != SL_OK) {
        sl_config_free(&cfg);
        if (launch.launcher != SL_LAUNCHER_NONE) st = sl_fail_context(st, "rank %d", launch.rank);
        return sl_cli_error("train", st);
    }
    if (launch.rank != 0) {
        sl_config_free(&cfg);
        return 0;
    }
    if (sum.interrupted) {
        printf("stopped by %s after %d steps", strsignal(sum.interrupted), sum.steps);
        if (sum.checkpoint == sum.steps)
            printf(": checkpoint-%d in %s; go on with --resume\n", sum.checkpoint, cfg.output.dir);
        else
            printf(" (no checkpoint: output.checkpoint_interval is not set)\n");
        sl_config_free(&cfg);
        return 128 + sum.interrupted;
    }
    printf("trained %d steps: final loss %.4f", sum.steps, sum.final_loss);
    if (!isnan(sum.eval_accuracy) && cfg.model.loss == SL_LOSS_CROSS_ENTROPY)
        printf(", test accuracy %.2f%%", 100.0 * sum.eval_accuracy);
    else if (!isnan(sum.eval_loss))
        printf(", test loss %.4f", sum.eval_loss);
    if (!isnan(sum.val_loss)) printf(", val loss %.4f", sum.val_loss);
    printf(", %.0f samples/s; outputs in %s\n", sum.samples_per_s, cfg.output.dir);
    sl_config_free(&cfg);
    return 0;
}
