/* The stage executor: one rank of a pipeline runs its action list (runtime/schedule) for every
 * training step, on its device, exchanging activations and gradients with its neighbours through
 * the transport, and reports to the coordinator (runtime/launch).
 *
 * Reports are JSON objects, one per message, each with "type" and "rank":
 *   {"type":"step","step":k,"loss":L,"t":seconds}      from the rank of the last model stage
 *   {"type":"done", "device":..., "peak_bytes":..., "busy_s":..., "wall_s":...,
 *    "f_ms":[per local stage], "b_ms":[...], "w_ms":[...]}              every rank, at the end
 *   {"type":"trace","events":[[name, start_us, duration_us], ...]}    every rank, at the end
 *   {"type":"error","status":st,"message":"..."}                       a rank that failed
 *   {"type":"checkpoint","step":k}   every rank, after writing its weights after step k-1
 * Every rank writes its stages' weights (safetensors with nn.Sequential names) into `weights_dir`
 * at the end, and every output.checkpoint_interval steps, under the names sl_exec_weights_path
 * gives; the coordinator merges them. */
#ifndef SL_EXEC_H
#define SL_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/config/config.h"

typedef struct sl_exec_options {
    int rank;
    const char *bind_endpoint;   /* this rank's transport endpoint */
    const char *next_endpoint;   /* the endpoint of rank (rank+1) % world */
    const char *report_endpoint; /* the coordinator's report socket, or NULL */
    const char *weights_dir;     /* where to leave this rank's weights for the coordinator */
    uint64_t run_id;
    int max_trace_events; /* per rank; 0 for the default (5000) */
} sl_exec_options;

struct sl_schedule;
/* The schedule the config asks for (pipeline.schedule on pipeline.stages ranks, train.microbatches,
 * pipeline.chunks, pipeline.recompute): what every rank runs. */
int sl_exec_schedule(const sl_config *cfg, struct sl_schedule **out);

/* The file rank `rank` writes its weights to in `dir`: after `step` steps for a checkpoint, or
 * the final weights with step < 0. */
void sl_exec_weights_path(char *buf, size_t cap, const char *dir, int rank, int step);

/* Runs rank opt->rank of the run described by `cfg` to the end. On failure the rank tells its
 * neighbours and the coordinator, and returns the status (the message names the action). */
int sl_exec_rank(const sl_config *cfg, const sl_exec_options *opt);

#endif
