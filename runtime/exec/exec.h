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
 *    "stages":[{"stage":s,"f_ms":..,"b_ms":..,"w_ms":..}, ...]}   every rank, last
 *   {"type":"error","status":st,"message":"..."}                       a rank that failed
 * The trace comes before "done": "done" tells a coordinator under a launcher that the rank has
 * nothing more to say. Every rank writes its stages' weights (safetensors, by parameter name)
 * into `weights_dir` at the end and at every output.checkpoint_interval steps, under the names
 * sl_run_path gives (SL_RUN_RANK_WEIGHTS, SL_RUN_RANK_CHECKPOINT); the coordinator merges them.
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
    const char *bind_endpoint;   /* this rank's transport endpoint */
    const char *next_endpoint;   /* the endpoint of rank (rank+1) % world */
    const char *report_endpoint; /* the coordinator's report socket, or NULL */
    const char *weights_dir;     /* where to leave this rank's weights for the coordinator */
    const char *keys_dir;        /* CURVE keys when launch.keys is not set: a local run's own */
    uint64_t run_id;
    int max_trace_events; /* per rank; 0 for the default (5000) */
    bool send_weights;    /* send weight files to the coordinator (see above) */
    /* CURVE on the report channel: this rank's key pair, the coordinator's public key as
     * next_public_key; NULL for none. */
    const struct sl_transport_curve *report_curve;
} sl_exec_options;

/* Runs rank opt->rank of `plan` to the end. On failure the rank tells its neighbours and the
 * coordinator, and returns the status (the message names the action). */
struct sl_plan;
int sl_exec_rank(const struct sl_plan *plan, const sl_exec_options *opt);

#endif
