/* Internals of the coordinator (runtime/train): the state of a run it follows, shared by train.c
 * (starting ranks), run.c (reports and outputs) and trace.c (the Chrome trace). */
#ifndef SL_TRAIN_IMPL_H
#define SL_TRAIN_IMPL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>

#include "runtime/data/data.h"
#include "runtime/plan/plan.h"
#include "runtime/train/train.h"

#define SL__MAX_RANKS 256

typedef struct sl__rank_info {
    char device[32], device_name[256];
    double peak_bytes, busy_s, wall_s, transfer_s;
    double peak_stash_bytes; /* the executor's most bytes of stashes and stage inputs held */
} sl__rank_info;

/* The Chrome trace of a run: every rank's events on its own track. */
typedef struct sl__trace {
    cJSON *events;
    double t0; /* the earliest event's start (µs): the trace's time 0 */
} sl__trace;

typedef struct sl__run {
    const sl_plan *plan;
    const sl_config *cfg; /* the plan's */
    const sl_train_options *opt;
    sl_data data;            /* loaded once, checked before any rank starts, used for evaluation */
    const char *weights_dir; /* where ranks leave their weights */
    int lock_fd;             /* output.dir/.lock, held (flock) while the run lives */
    int metrics_fd;          /* output.dir/metrics.jsonl, appended a whole line at a time */
    char resume[4096];       /* the checkpoint the run goes on from ("" for none) */
    int start_step;          /* its step, else 0 */
    int last_checkpoint;     /* the step of the last checkpoint written (0: none) */
    int stopped_at;          /* a signal stopped the ranks after this many steps (0: not) */
    int stop_signal, stop_parts;
    int steps_seen;
    double last_t, first_t, last_loss, t_start;
    double val_loss, train_loss; /* the last evaluation's (NaN before one) */
    int evals_seen;
    bool tty;
    sl__rank_info ranks[SL__MAX_RANKS];
    double *stage_f, *stage_b, *stage_i, *stage_w; /* measured ms per model stage (means) */
    double *rank_opt; /* measured ms of OPT (and clearing) per rank and step */
    int *checkpoints; /* ranks that reported each checkpoint, by step / interval */
    sl__trace trace;
} sl__run;

/* Checks what the plan cannot (data, initial weights, device ids, key files), loads the data and
 * opens metrics.jsonl in output.dir. */
int sl__run_open(sl__run *r, const sl_plan *plan, const sl_train_options *opt);
void sl__run_close(sl__run *r);
/* An sl_launch_report_fn: one JSON report from a rank. */
int sl__run_on_report(void *ctx, const char *json, size_t len);
/* After every rank finished: merges the weights into final.safetensors, evaluates, writes
 * summary.json and trace.json. */
int sl__run_finish(sl__run *r, sl_train_summary *out);

/* A run id: 64 random bits. */
uint64_t sl__new_run_id(void);

/* checkpoint.c: merges the ranks' parts after `step` steps into output.dir/checkpoint-<step>/
 * and prunes to output.keep_checkpoints; removes what a killed run left half written. */
int sl__checkpoint_write(sl__run *r, int step);
int sl__checkpoint_clean(const sl__run *r);

/* output.c: locks output.dir (a second run on it is refused, naming the first one's pid), finds
 * the checkpoint to resume from (opt->resume), and opens metrics.jsonl (on resume: keeping the
 * lines of the steps before the checkpoint). */
int sl__output_open(sl__run *r);
void sl__output_close(sl__run *r);
/* Appends one line to metrics.jsonl in one write; a failure (a full disk) takes back what part
 * of the line was written and is SL_EIO naming the file. */
int sl__metrics_line(sl__run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes `obj` as output.dir/NAME of `file`. */
int sl__write_json(const sl__run *r, enum sl_run_file file, const cJSON *obj);

int sl__trace_init(sl__trace *t);
/* Adds a "trace" report's events ([name, start_us, duration_us]...) to rank's track. */
void sl__trace_add(sl__trace *t, int rank, const cJSON *events);
/* Writes output.dir/trace.json, naming each rank's track after its device. */
int sl__trace_write(sl__trace *t, const sl__run *r);
void sl__trace_free(sl__trace *t);

#endif
