/* The stage executor: one rank of a pipeline runs its action list (from the plan, runtime/plan)
 * for every training step, on its device, exchanging activations and gradients with its
 * neighbours through the transport, and reports to the coordinator (runtime/launch).
 *
 * Reports are JSON objects, one per message, each with "type" and "rank":
 *   {"type":"step","step":k,"loss":L,"t":seconds}      from the rank of the last model stage
 *   {"type":"checkpoint","step":k}     every rank, after writing its weights after k steps
 *   {"type":"trace","events":[[name, start_us, duration_us], ...]}    every rank, at the end
 *   {"type":"done","device":id,"device_name":name,"peak_bytes":B,"busy_s":s,"wall_s":s,
 *    "transfer_s":s (time in SEND/RECV actions),
 *    "stages":[{"stage":s,"f_ms":..,"b_ms":..,"i_ms":..,"w_ms":..}, ...]}  every rank,
 *    last (mean times of the stage's actions of each kind, 0 for a kind it did not run)
 *   {"type":"error","status":st,"message":"...","host":h,"action":"waiting for RECV_B(stage 3,
 *    micro-batch 5) from rank 3 in step 7"}           a rank that failed (action: when in one)
 * The trace comes before "done": "done" tells a coordinator under a launcher that the rank has
 * nothing more to say. Every rank writes its stages' weights (safetensors, by parameter name)
 * into `weights_dir` at the end (SL_RUN_RANK_WEIGHTS, the whole model's names, other ranks'
 * layers zero), and every output.checkpoint_interval steps its stages' weights and optimizer
 * state (SL_RUN_RANK_CHECKPOINT: sl_stage_state_save's tensors, its own parameters only); the
 * coordinator merges them (a checkpoint: runtime/train/checkpoint.c).
 * With send_weights (under a launcher, no shared filesystem) each such file goes to the
 * coordinator over the report channel right after it is written, before the report that
 * announces it, and is removed here. Every report carries "run_id" (decimal text), by which the
 * coordinator tells the run's reports from a stranger's. */
#ifndef SL_EXEC_H
#define SL_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_exec_options {
    int rank;
    const char *bind_endpoint; /* this rank's transport endpoint */
    const int *bind_fd;        /* a socket listening at bind_endpoint for the transport to take over
                                  (sl_launch_tcp_endpoint), or NULL */
    const char *next_endpoint; /* the endpoint of rank (rank+1) % world */
    const char *report_endpoint; /* the coordinator's report socket, or NULL */
    const char *weights_dir;     /* where to leave this rank's weights for the coordinator */
    const char *keys_dir;        /* CURVE keys when launch.keys is not set: a local run's own */
    uint64_t run_id;
    int max_trace_events; /* per rank; 0 for the default (5000) */
    bool send_weights;    /* send weight files to the coordinator (see above) */
    /* CURVE on the report channel: this rank's key pair, the coordinator's public key as
     * next_public_key; NULL for none. */
    const struct sl_transport_curve *report_curve;
    const char *resume; /* a complete checkpoint directory to start from, or NULL */
} sl_exec_options;

/* Asks the rank to stop after the current step (every rank stops after the same step; with
 * output.checkpoint_interval each writes its part of a checkpoint of that step first, and each
 * reports {"type":"stop","step":done,"signal":sig} before it); callable from a signal handler.
 * A local run's coordinator relays SIGINT and SIGTERM to its ranks as SIGUSR1, on which
 * sl_exec_rank calls this; under a launcher each rank gets the launcher's signal itself. */
void sl_exec_request_stop(int sig);
/* The same, returning the signal that had asked before (0: none), in one atomic step: a handler
 * that two signals run at once on two threads sees exactly one of them first. */
int sl_exec_request_stop_again(int sig);
/* The signal that asked, or 0. */
int sl_exec_stop_requested(void);

/* Runs rank opt->rank of `plan` to the end. On failure the rank tells its neighbours and the
 * coordinator, and returns the status (the message names the action). */
struct sl_plan;
int sl_exec_rank(const struct sl_plan *plan, const sl_exec_options *opt);

/* ------------------------------------------------------------------------------------------------
 * Checkpoints: output.dir/checkpoint-<step>/ (step: the steps done) holds
 *   model.safetensors      the weights by parameter name (loads as model.init, and in PyTorch)
 *   optimizer.safetensors  the optimizer state by parameter name (sl_stage_state_save's names)
 *   manifest.json          written last: {"step", "optimizer": {"name", "step"}, "data": {"seed",
 *                          "shuffle", "batch", "next_sample"}, "evaluations", "files": [{"name",
 *                          "bytes"}, ...]}
 * The data's order and the evaluation batches are functions of data.seed and the step alone
 * (runtime/data/data.h), so the step and the seed are the whole random state and data position.
 * A checkpoint is complete when its manifest reads and every file it lists has its size. */

typedef struct sl_checkpoint {
    char dir[4096];
    int step;        /* steps done: training goes on at this step */
    int evaluations; /* evaluations done (a text's eval.interval) */
    int batch;       /* train.batch it was made with */
    uint64_t data_seed;
    char optimizer[16]; /* train.optimizer.name */
} sl_checkpoint;

/* The checkpoint in `dir` when it is complete; SL_EFORMAT saying what is missing or wrong. */
int sl_checkpoint_read(const char *dir, sl_checkpoint *out);

/* The complete checkpoint of `output_dir` with the largest step (*found false when there is
 * none); incomplete ones are skipped, each with a warning naming it and why. */
int sl_checkpoint_newest(const char *output_dir, sl_checkpoint *out, bool *found);

/* Every checkpoint-<step> directory of `output_dir` (complete or not), steps[0..*n-1] ascending
 * (at most `cap`). */
int sl_checkpoint_list(const char *output_dir, int *steps, int cap, int *n);

/* Writes manifest.json into `dir` (holding model.safetensors and optimizer.safetensors already)
 * for a checkpoint after `step` steps of `cfg`'s run with `evaluations` evaluations done. */
struct sl_config;
int sl_checkpoint_write_manifest(const char *dir, const struct sl_config *cfg, int step,
                                 int evaluations);

/* Whether `cfg` may go on from `ck`: the same optimizer, batch and data seed (SL_ECONFIG naming
 * the difference otherwise), and a step below train.steps. */
int sl_checkpoint_check(const sl_checkpoint *ck, const struct sl_config *cfg);

#endif
