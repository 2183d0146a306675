/* Internals of the stage executor (runtime/exec), shared by its files: exec.c (set-up, teardown,
 * the step loop and the reports), actions.c (buffer pools, stashes and the micro-batch actions),
 * reduce.c (TIED, NORM and the optimizer step) and eval.c (evaluation between steps). */
#ifndef SL_EXEC_IMPL_H
#define SL_EXEC_IMPL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "backends/backend.h"
#include "runtime/data/data.h"
#include "runtime/exec/exec.h"
#include "runtime/launch/launch.h"
#include "runtime/plan/plan.h"
#include "transport/transport.h"

/* ------------------------------------------------------------------------------------------------
 * Buffer pools: free buffers by exact size */

#define SL__EXEC_POOL_MAX 512
#define SL__EXEC_LENT_MAX 64

typedef struct sl__exec_pool {
    sl_device *dev;
    sl_buffer *free[SL__EXEC_POOL_MAX];
    int nfree;
} sl__exec_pool;

/* ------------------------------------------------------------------------------------------------
 * Per micro-batch state */

typedef struct sl__exec_mb {
    sl_buffer *input; /* the stage's input [rows, width(first)] */
    sl_stash *stash;  /* activations between F (or R) and B (or W) */
    sl_buffer *dout;  /* the gradient of the stage's output */
    sl_buffer *loss;  /* last stage: per-row losses [rows] */
    float *send_f;    /* host copy of the output, waiting for SEND_F */
    float *send_b;    /* host copy of the input gradient, waiting for SEND_B */
    /* Where the device's memory is the host's, no host copies: SEND_F reads the output in the
     * stash (send_out), SEND_B the input gradient kept from the pool until then (send_din). */
    sl_buffer *send_out, *send_din;
} sl__exec_mb;

typedef struct sl__exec_stage {
    int stage; /* model stage index */
    sl_stage *st;
    sl_stash *stash_free[64]; /* stashes kept for reuse */
    int nstash_free;
    sl__exec_mb *mb;           /* [M] */
    double f_s, b_s, i_s, w_s; /* compute seconds this run, for the timed simulation */
    long nf, nb, ni, nw;
} sl__exec_stage;

#define SL__EXEC_ACTION_TYPES 32 /* above every enum sl_action_type */

typedef struct sl__exec_trace_event {
    char name[24];
    double t0, t1;
} sl__exec_trace_event;

typedef struct sl__exec {
    const sl_plan *plan;
    const sl_config *cfg; /* the plan's */
    const sl_model *model;
    const sl_partition *part;
    const sl_exec_options *opt;
    int rank, world;
    int start_step, start_evals; /* 0, or a resumed checkpoint's */
    double vote; /* the stop vote of the step before: gathered (the last rank) or read (stop.c) */
    bool vote_inside;  /* the ranks read the broadcast inside the step (stop.c) */
    long vote_at;      /* where in a step's actions this rank reads it, or -1 */
    bool vote_pending; /* it is still to be read in this step */
    /* The action running (NULL between actions), its step and start; read by the watchdog
     * thread, hence atomic. avg_s/n_done: each action type's mean duration so far. */
    const sl_action *_Atomic cur;
    _Atomic int64_t cur_step;
    _Atomic double cur_t0;
    double avg_s[SL__EXEC_ACTION_TYPES];
    long n_done[SL__EXEC_ACTION_TYPES];
    struct sl__watchdog *watchdog;
    int vote_peer;   /* outside the actions: the rank this one exchanges a stop vote with, or
                        -1 (stop.c) */
    bool vote_sends; /* and whether it sends it (else it waits for it) */
    sl_data data;
    sl_device *dev;
    sl_transport *tr;
    sl_reporter *rep;
    sl__exec_pool pool;
    /* Buffers whose bytes SEND lent to the transport's copy thread (sl_transport_send_lent), still
     * mapped, until sl__exec_settle: an output stays in its micro-batch's stash (`stash`), an input
     * gradient (stash NULL) goes back to the pool then. */
    struct sl__exec_lent {
        sl_buffer *buf;
        const void *data;
        const sl_stash *stash;
    } lent[SL__EXEC_LENT_MAX];
    int nlent;
    /* Per link (SL_LINK_NEXT, SL_LINK_PREV): the buffer posted for its next RECV of a training step
     * (sl_transport_recv_post), mapped, and that action; buf NULL when none. */
    struct sl__exec_posted {
        sl_buffer *buf;
        void *host;
        const sl_action *a;
        int64_t step;
    } posted[2];
    sl__exec_stage *ls; /* [chunks] */
    int nls;
    size_t rows; /* per micro-batch */
    float *host_x;
    int32_t *host_labels;
    float *host_targets;
    float *host_loss; /* one micro-batch's per-row losses */
    sl__exec_trace_event *trace;
    int ntrace, max_trace;
    double busy;
    double zero_s;   /* clearing the gradients at each step's start, in all */
    double transfer; /* seconds in SEND and RECV actions (waiting for a neighbour included) and
                        in the messages of TIED, SYNC and NORM */
    double comm_s;   /* the current action's seconds sending and receiving (reduce.c) */
    /* Bytes of micro-batch stashes and stage inputs held now and at most (training steps only;
     * what the simulator predicts from the layer table as peak_bytes) */
    double held_bytes, peak_held_bytes;
    double lr, grad_norm; /* of the last optimizer step (the norm: NaN unless it is global) */
    double sumsq;         /* the whole model's sum of squared gradients, after NORM */
    bool have_sumsq;      /* NORM ran this step */
    int eval_share; /* 0: training; 1: evaluating the validation share, 2: the training share */
    int64_t eval_k; /* the evaluation batch the forwards read (sl_data_eval_batch) */
    double eval_s;  /* wall seconds spent evaluating (left out of wall_s and busy_s) */
    float *tied_host[2]; /* TIED: this copy's gradient and the twin's, on the host */
    float *sync_host[3]; /* SYNC: this rank's gradients of both replicas, its peer's, and another
                            pair's message passing through */
    double sync_loss;    /* SYNC: the up replica's loss sum of the step, from rank 0 */
    /* CURVE: this rank's key pair and every rank's public key */
    char secret[41], (*pubs)[41];
    const char **allowed;
    sl_transport_curve curve;
} sl__exec;

/* actions.c: the pools (a freed buffer goes back for reuse; sl__exec_pool_free frees them all),
 * this rank's copy of a model stage (NULL when another rank holds it), and a micro-batch's
 * buffers and stash given back. */
void sl__exec_pool_put(sl__exec_pool *p, sl_buffer *b);
void sl__exec_pool_free(sl__exec_pool *p);
sl__exec_stage *sl__exec_local_of(sl__exec *e, int stage);
void sl__exec_release_mb(sl__exec *e, sl__exec_stage *l, sl__exec_mb *s);
/* actions.c: waits for the transport's copy thread to finish with every buffer SEND lent it, then
 * unmaps them (and gives input gradients back to the pool); with `stash`, only if one of them is
 * that stash's output (before the stash is written or reused). */
int sl__exec_settle(sl__exec *e, const sl_stash *stash);
/* actions.c: gives back the buffers posted for receives (before the transport closes, or on the
 * way out of a failure). */
void sl__exec_unpost(sl__exec *e);

/* actions.c: runs one action of a schedule, timed and traced; a failure's message names it. */
int sl__exec_run_action(sl__exec *e, int64_t step, const sl_action *a);
/* actions.c: what the rank is doing, for a failure's report: "waiting for RECV_B(stage 3,
 * micro-batch 5) from rank 3 in step 7", "running F(stage 1, micro-batch 0) in step 2" ("" when
 * between actions). */
void sl__exec_doing(const sl__exec *e, char *buf, size_t cap);

/* actions.c: the losses of last stage `stage` (its buffers given back) for micro-batches
 * [mb0, mb1), summed in order; and the step's mean over the mini-batch (on the rank that holds the
 * last stage of the model, or of chimera's down replica). */
int sl__exec_loss_sum(sl__exec *e, int stage, int mb0, int mb1, double *sum_out);
int sl__exec_step_loss(sl__exec *e, double *loss);
/* Whether local stage l is a copy of chimera's up replica: the same model stage as one of the down
 * replica's, equal to it after SYNC, so saved and counted only once. */
static inline bool sl__exec_is_replica(const sl__exec *e, const sl__exec_stage *l)
{
    return l->stage >= sl_partition_chain_stages(e->part);
}

/* Whether this rank reports the losses: it holds the last stage of the (first) chain. */
static inline bool sl__exec_has_loss(const sl__exec *e)
{
    return sl_partition_rank(e->part, sl_partition_chain_stages(e->part) - 1) == e->rank;
}

/* reduce.c: the TIED, SYNC and NORM actions, and the optimizer step (OPT). */
int sl__exec_tied(sl__exec *e, int64_t step, const sl_action *a);
int sl__exec_sync(sl__exec *e, int64_t step, const sl_action *a);
/* reduce.c: the largest SYNC message (0 without chimera). */
size_t sl__exec_sync_bytes(const sl__exec *e);
int sl__exec_norm(sl__exec *e, int64_t step, const sl_action *a);
int sl__exec_optimizer_step(sl__exec *e, int64_t step);

/* exec.c: sends one report (and frees it), with this rank's number added. */
int sl__exec_report(sl__exec *e, cJSON *obj);

/* stop.c: whether every rank stops after step `step` (a signal asked one of them to); all ranks
 * call it at the end of every step and get the same answer. sl__exec_vote_setup chooses where
 * the vote is read (e->vote_at) from the schedule, at set-up; the step loop calls
 * sl__exec_vote_read before action e->vote_at of each step. */
void sl__exec_vote_setup(sl__exec *e);
int sl__exec_vote_read(sl__exec *e, int64_t step);
int sl__exec_stop_after(sl__exec *e, int64_t step, bool *stop);

/* watchdog.c: a thread that warns (on stderr, naming the rank, its host and the action) when the
 * action running has run over 20 times its type's mean and at least 2 s: a hung device or a
 * neighbour that answers heartbeats but sends nothing. */
int sl__watchdog_start(sl__exec *e);
void sl__watchdog_stop(sl__exec *e);

/* eval.c: evaluation number `number`, after step `step`. */
int sl__exec_evaluate(sl__exec *e, int64_t step, int number);

#endif
