/* sluice plan: what a run will do, built once from a validated config.
 *
 * The plan holds the model's layers (runtime/model), the partition (layers -> model stages ->
 * ranks -> devices), the validated schedule (one action list per rank, runtime/schedule), each
 * rank's device and transport endpoints, and the names of the files in a run directory. The
 * coordinator of `sluice train` builds it once, checks it, and writes it to the run directory as
 * plan.json; rank processes load that file (sl_plan_load) instead of building pieces from the
 * config again; `sluice plan` prints it. Under a launcher (mpirun, srun, torchrun) every rank
 * builds the plan from the same config and the ranks compare sl_plan_hash when their links
 * connect, so all run one plan.
 *
 * plan.json (sl_plan_to_json) is one object, which `sluice plan --json` prints too:
 *   "model"       {"inputs", "outputs", "params", "loss", "layers": [{"index", "layer", "in",
 *                 "out", "params", "stash_bytes_per_row"}...]}
 *   "pipeline"    {"ranks", "chunks", "model_stages", "schedule", "partition", "microbatches",
 *                 "microbatch_rows", "recompute"}
 *   "stages"      per model stage: {"stage", "rank", "device", "first_layer", "last_layer",
 *                 "params", "input_width", "output_width", "input_bytes", "output_bytes",
 *                 "stash_bytes"} (bytes of one micro-batch)
 *   "ranks"       per rank: {"rank", "device", "stages", "params", "bind", "next" (null until
 *                 known), "actions" (the rank's action list in text form, "0F0 0SEND_F0 ..."),
 *                 and with a text "eval_actions" (its list of the evaluation schedule)}
 *   "config_hash" sl_config_hash, hex
 *   "config"      the effective config (sl_config_to_json): every default filled in */
#ifndef SL_PLAN_H
#define SL_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/config/config.h"
#include "runtime/model/model.h"
#include "runtime/schedule/schedule.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_PLAN_ENDPOINT_MAX 256

typedef struct sl_plan_rank {
    const char *device;              /* the device id configs use (points into the config) */
    char bind[SL_PLAN_ENDPOINT_MAX]; /* the endpoint this rank's link binds ("" until known) */
    char next[SL_PLAN_ENDPOINT_MAX]; /* the endpoint of rank (rank + 1) % ranks */
} sl_plan_rank;

typedef struct sl_plan {
    sl_config cfg; /* the plan's own copy of the config (a "time" partition's counts filled in) */
    sl_model model;
    sl_partition part;
    sl_schedule *sched;      /* validated */
    sl_schedule *eval_sched; /* data.text: the forward-only evaluation schedule ("eval"),
                                validated; NULL for other data */
    int ranks;               /* pipeline.stages */
    size_t rows;             /* samples per micro-batch */
    sl_plan_rank *rank;      /* [ranks] */
    char note[1024];         /* for the user: how a "time" partition was profiled ("" if not) */
    /* The cores that predictions let the ranks on this host's CPU devices share: 0 (as built)
     * counts the host's in a local run (sl_plan_predict), -1 shares none (every rank its own
     * processor), N > 0 shares N. */
    int host_cores;
} sl_plan;

/* Builds the plan from a validated config (the plan takes a copy): model, partition (a "time"
 * partition without recorded counts profiles the ranks' devices, sl_plan_balance_time, and records
 * the counts in the plan's config as pipeline.partition_counts) and the schedule, which is
 * validated (SL_ECONFIG or SL_EDEADLOCK naming the schedule otherwise). With static endpoints
 * (launch.endpoints) the ranks' endpoints are set; otherwise they stay "" until
 * sl_plan_set_endpoints. */
int sl_plan_build(const sl_config *cfg, sl_plan *out);
/* The same, measuring a "time" partition's profiles again instead of reading the cache. */
int sl_plan_build_with(const sl_config *cfg, bool refresh_profile, sl_plan *out);
void sl_plan_free(sl_plan *p);

/* Sets rank r's bind endpoint and the endpoint of the rank after it, for every rank. */
void sl_plan_set_endpoints(sl_plan *p, const char *const *endpoints);

/* The plan as JSON text (see the top of this file); free() it. NULL when out of memory. */
char *sl_plan_to_json(const sl_plan *p, bool pretty);

/* FNV-1a 64 of the compact JSON: what ranks compare when they connect. */
uint64_t sl_plan_hash(const sl_plan *p);

/* Writes plan.json into `dir`, and reads it back: sl_plan_load rebuilds the plan from the config
 * the file holds and refuses a file that does not describe exactly that plan (edited by hand, or
 * written by another version of sluice). */
int sl_plan_write(const sl_plan *p, const char *dir);
int sl_plan_load(const char *dir, sl_plan *out);

/* The messages each link of the executor holds (M·v, at least 2): the depth the plan's schedule is
 * validated with, and the one to simulate it with (looped BFS needs more than the default). */
static inline int sl_plan_link_depth(const sl_plan *p)
{
    int d = p->cfg.train.microbatches * p->sched->chunks;
    return d > 2 ? d : 2;
}

/* The model stages rank r runs, in order: r, r + ranks, r + 2·ranks, ... (pipeline.chunks), or
 * r and 2·ranks-1-r in the V of zb-v and dualpipev. */
static inline int sl_plan_stage_of(const sl_plan *p, int rank, int chunk)
{
    if (p->part.v_shape && chunk == 1) return 2 * p->ranks - 1 - rank;
    return rank + chunk * p->ranks;
}

/* Bytes one micro-batch holds on model stage `stage` between its forward and its backward (or
 * W), from the layer table: the activations its layers stash, and the stage's input. */
size_t sl_plan_stash_bytes(const sl_plan *p, int stage);
size_t sl_plan_input_bytes(const sl_plan *p, int stage);
/* The same for a stage of layers r (a cut the plan does not have yet, as the balancer tries). */
size_t sl_plan_range_stash_bytes(const sl_plan *p, const sl_stage_range *r);
size_t sl_plan_range_input_bytes(const sl_plan *p, const sl_stage_range *r);
/* Both for every model stage, as the simulator takes them (sl_schedule_costs' stage_stash_bytes
 * and stage_input_bytes): `stash` and `input` hold p->sched->stages each. */
void sl_plan_stage_bytes(const sl_plan *p, double *stash, double *input);

/* ------------------------------------------------------------------------------------------------
 * Profiles and predictions (profile.c, predict.c)
 *
 * A profile is what each unit of the partition (sl_partition_units: a layer with parameters and
 * the layers without that follow it) costs on one device at the run's micro-batch size: forward,
 * input gradient and weight gradient, each timed after a warm-up (the fastest of 5), the loss on
 * the model's output, and the link's cost for the unit's output (estimated from this host's copy
 * time: a transfer touches its bytes about three times). Profiles are cached per device in
 * SLUICE_CACHE_DIR, else $XDG_CACHE_HOME/sluice, else ~/.cache/sluice, as profile-<device>.json
 * keyed by the model's shape (layers, widths, GPT config, loss, rows) and the device's name; a
 * file for another shape is profiled again, and the note says so. */

typedef struct sl_profile {
    char device[32];
    size_t rows;
    int units;
    double *f, *i, *w; /* [units] milliseconds per micro-batch */
    double *link;      /* [units] milliseconds to send the unit's output to the next rank */
    double *opt;       /* [units] milliseconds of the step's per-parameter work (OPT) */
    double loss_ms;    /* the loss and its gradient, on the last stage */
    bool cached;       /* read from the cache, not measured */
} sl_profile;

/* The profile of `m` (with cfg's weights and threads) on `device` at `rows` rows per micro-batch,
 * from the cache unless `refresh`; measured (and cached) otherwise. `note` gets a line for the
 * user when the cache was stale or refreshed ("" otherwise). */
int sl_profile_get(const sl_model *m, const sl_config *cfg, size_t rows, const char *device,
                   bool refresh, sl_profile *out, char *note, size_t note_cap);
void sl_profile_free(sl_profile *p);

/* What a cut of the model into the plan's model stages should cost, from the ranks' profiles. */
typedef struct sl_plan_prediction {
    int nstages, ranks;
    double *f, *i, *w;      /* [nstages] ms per micro-batch; the full backward is i + w */
    double *send_bytes;     /* [nstages] bytes one micro-batch's output sends on (0: last) */
    double *params;         /* [nstages] parameters */
    double *peak_bytes;     /* [ranks] predicted peak device memory */
    double *memory_bytes;   /* [ranks] the device's memory (0: unknown) */
    double *opt;            /* [ranks] ms of the step's OPT (update, norm, clearing) */
    double step_ms, bubble; /* the simulator's makespan and bubble ratio for these costs */
    /* The host's cores that the ranks on its CPU devices share in this prediction, time-sliced
     * (0: each rank computes at its profiled speed), and the threads each rank computes with
     * there ([ranks]; 0: not on the host's CPU): see sl_schedule_costs.cores. */
    int cores;
    int *threads;
} sl_plan_prediction;

/* Predicts the plan's schedule with the stages `stages` (NULL: the plan's own) on the ranks'
 * devices, whose profiles are profiles[rank]. Peak memory per rank: the simulator's replay of the
 * stashes and stage inputs it holds (as the executor holds them), plus parameters, gradients and
 * optimizer state, an output gradient per stage and the backward's two scratch buffers. */
int sl_plan_predict(const sl_plan *p, const sl_profile *profiles, const sl_stage_range *stages,
                    sl_plan_prediction *out);
void sl_plan_prediction_free(sl_plan_prediction *pr);

/* SL_ECONFIG when a rank's predicted peak memory (as sl_plan_predict counts it, without profiles)
 * does not fit its device, naming the rank, the bytes and what to change. */
int sl_plan_check_memory(const sl_plan *p);

/* The profiles of every rank's device (one measurement per distinct device), notes joined. */
int sl_plan_profiles(const sl_plan *p, bool refresh, sl_profile **out, char *note, size_t cap);
void sl_plan_profiles_free(const sl_plan *p, sl_profile *profiles);

/* The "time" cut: the cut whose simulated step time (the plan's schedule with each stage's costs
 * on its device and the link cost, as sl_plan_predict predicts it) is least among those whose
 * predicted memory fits every device. Up to 4096 cuts (fewer for long schedules: 2 million
 * simulated actions in all) it simulates them all (the cut whose
 * costliest stage costs least, sl_partition_balance on the units' F+I+W and the loss, winning
 * ties); beyond, it moves single units across stage boundaries while the step falls, once from
 * that cut and once from the uniform cut, and keeps the better. SL_ECONFIG when no cut it tried
 * fits, naming what the min-max cut's rank would hold. counts gets layers-with-parameters counts,
 * one per stage of a chain (sl_partition_chain_stages: chimera's replicas share one cut, costed on
 * the slower device). */
int sl_plan_balance_time(const sl_plan *p, const sl_profile *profiles, int *counts);

/* ------------------------------------------------------------------------------------------------
 * The run directory: every file name in one place. */

enum sl_run_file {
    SL_RUN_PLAN,            /* plan.json */
    SL_RUN_METRICS,         /* metrics.jsonl */
    SL_RUN_SUMMARY,         /* summary.json */
    SL_RUN_TRACE,           /* trace.json */
    SL_RUN_FINAL,           /* final.safetensors */
    SL_RUN_VOCAB,           /* vocab.json: a text's characters in token order */
    SL_RUN_CHECKPOINT,      /* checkpoint-<step>: a checkpoint directory (runtime/exec/exec.h) */
    SL_RUN_RANK_WEIGHTS,    /* .weights-r<rank>.safetensors: a rank's final weights, merged */
    SL_RUN_RANK_CHECKPOINT, /* .weights-r<rank>-step<step>.safetensors: its part of a checkpoint */
    SL_RUN_SECRET_KEY,      /* rank<rank>.key: a rank's CURVE secret key (mode 0600) */
    SL_RUN_PUBLIC_KEY,      /* rank<rank>.pub */
    SL_RUN_LINK_SOCKET,     /* r<rank>: a local run's ipc socket of a rank's link */
    SL_RUN_REPORT_SOCKET,   /* report: a local run's report socket */
};

/* Writes DIR/NAME of `file` into buf ("NAME" alone when dir is NULL); `rank` and `step` fill the
 * names that have them. Returns buf. */
const char *sl_run_path(char *buf, size_t cap, const char *dir, enum sl_run_file file, int rank,
                        int step);

#ifdef __cplusplus
}
#endif
#endif
