/* Training runs: the coordinator behind `sluice train`.
 *
 * sl_train builds the plan once (runtime/plan: model, partition, validated schedule), checks
 * everything else it can before a rank starts (data, initial weights, device ids, key files),
 * writes the plan into a private run directory, starts one process per rank on this host
 * (runtime/launch), each of which loads that plan, follows their reports, and writes the run's
 * outputs into output.dir:
 *   plan.json          the plan the ranks ran (runtime/plan/plan.h describes it)
 *   metrics.jsonl      one object per step: step, loss (mean over the mini-batch, before that
 *                      step's update), samples_per_s, time_s (lr, grad_norm); with a text also
 *                      one line per evaluation (every eval.interval steps and after the last):
 *                      {"step", "val_loss" (with a held-out share), "train_loss"}, the mean loss
 *                      over eval.iters batches of each share after that step's update
 *   final.safetensors  the trained weights by parameter name (nn.Sequential names for a
 *                      layer list)
 *   checkpoint-<step>/ every output.checkpoint_interval steps: model.safetensors (the weights),
 *                      optimizer.safetensors and manifest.json (runtime/exec/exec.h); the newest
 *                      output.keep_checkpoints kept; --resume goes on from the newest complete
 *                      one
 *   .lock              while a run writes here: a second run on output.dir is refused
 *   summary.json       steps, final_loss, eval_loss/eval_accuracy (with a test share),
 *                      val_loss/train_loss (a text: the last evaluation's),
 *                      samples_per_s, schedule, stages, chunks, bubble ratio measured and
 *                      predicted, step_time_measured_s (the mean after step 0) beside
 *                      step_time_predicted_s (the simulator's for the measured costs), and per
 *                      rank its device, peak device memory, busy_s (compute), transfer_s
 *                      (SEND/RECV, waits included), runtime_s (between actions), idle_s
 *                      (wall - busy), wall_s and opt_ms (a step's OPT with the gradients'
 *                      clearing, which the prediction counts too)
 *   trace.json         Chrome trace format, one track per rank (opens in Perfetto)
 *   vocab.json         a text's vocabulary: its characters in token order (data.text)
 * Every file is written under a temporary name and renamed, so a failure never leaves half a file
 * nor replaces a good one (metrics.jsonl is appended whole lines at a time). Nothing is left
 * behind on failure: every rank is stopped and the run directory removed. */
#ifndef SL_TRAIN_H
#define SL_TRAIN_H

#include <stdbool.h>

#include "runtime/config/config.h"
#include "runtime/launch/launch.h"

typedef struct sl_train_options {
    const char *exe;   /* the sluice executable that runs ranks (`sluice train --rank ...`);
                          NULL: this process's own executable */
    int progress;      /* 1 bar on a terminal / lines otherwise, 0 quiet */
    bool keep_run_dir; /* leave the private run directory behind, for debugging */
    bool resume;       /* go on from the newest complete checkpoint in output.dir */
} sl_train_options;

typedef struct sl_train_summary {
    int steps;
    double final_loss;
    double samples_per_s;
    double eval_loss, eval_accuracy; /* NaN without a test share */
    double val_loss, train_loss;     /* a text's last evaluation; NaN without one (or no
                                        held-out share, for val_loss) */
    double bubble_measured, bubble_predicted;
    int interrupted; /* the signal (SIGINT, SIGTERM) that stopped the run after `steps` steps
                        (its checkpoint written when output.checkpoint_interval is set), else 0;
                        nothing else is written then */
    int checkpoint;  /* the step of the last checkpoint written, 0 for none */
} sl_train_summary;

/* Runs the whole training described by cfg. */
int sl_train(const sl_config *cfg, const sl_train_options *opt, sl_train_summary *out);

/* The same run when this process is one rank started by mpirun, srun or torchrun (`info` from
 * sl_launch_detect): ranks meet at MASTER_ADDR:MASTER_PORT, where rank 0 hosts the rendezvous
 * and coordinates (metrics, outputs) beside its own stage. Each rank leaves its weights in
 * output.dir, which every host must share. `out` is filled on rank 0. */
int sl_train_launched(const sl_config *cfg, const sl_launch_info *info, const sl_train_options *opt,
                      sl_train_summary *out);

/* The rank side of a local run: `sluice train --rank R --run-dir DIR --run-id ID [--resume-from
 * CHECKPOINT]`. */
int sl_train_rank(const char *run_dir, int rank, unsigned long long run_id, const char *resume);

#endif
