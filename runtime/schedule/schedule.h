/* sluice schedules: for each rank, the ordered list of actions it runs in one training step.
 *
 * A schedule is plain data. Generators (gpipe, 1f1b, interleaved, looped-bfs, zb-h1, zb-v,
 * dualpipev) produce the compute order
 * of every rank; a communication pass inserts the SEND/RECV actions; the validator checks every
 * dependency and simulates all ranks with the transport's blocking semantics; the timed simulator
 * predicts makespan, bubble ratio and peak stashed activations. The executor runs these lists
 * exactly, so what `sluice schedule` prints is what runs.
 *
 * Stages and ranks. With D ranks and v chunks per rank there are D·v model stages. The placement
 * says which rank runs each: the loop (stage s on rank s mod D, so rank r holds r, r+D, r+2D, ...;
 * without interleaving v = 1 and stage = rank), or the V of zb-v and dualpipev (v = 2: rank r holds
 * stages r and 2D-1-r, so the last rank runs stages D-1 and D back to back and the first rank holds
 * both ends of the model). Either way every transfer is between ring neighbours. Text form of a
 * compute action: `<stage><type><micro-batch>`, e.g. `5F2`, as PyTorch's pipelining writes it.
 *
 * Blocking semantics (what the validator proves the schedule completes under, and what the
 * executor and transport must provide):
 *   - every directed pair of ranks (src -> dst) is one link; messages on a link arrive in the order
 *     they were sent, whatever their kind, stage or micro-batch;
 *   - a SEND blocks only while the link toward its peer already holds `queue_depth` messages that
 *     the peer has not received yet (queue_depth >= 1; SL_SCHEDULE_QUEUE_DEPTH by default);
 *   - a RECV blocks until a message is available on the link from its peer, and that message must
 *     be the one the RECV names (the communication pass orders sends and receives so that both ends
 *     of every link agree; a RECV may come before the compute that needs it, in which case the
 *     tensor is held until then);
 *   - compute actions and OPT never block: their inputs are either local or were brought in by an
 *     earlier RECV on the same rank.
 */
#ifndef SL_SCHEDULE_H
#define SL_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The queue depth the validator and simulator use when given 0. */
#define SL_SCHEDULE_QUEUE_DEPTH 2

enum sl_action_type {
    SL_ACTION_F,      /* forward of (stage, mb); stashes its activations (or only its input) */
    SL_ACTION_B,      /* full backward of (stage, mb): input gradient and weight gradient */
    SL_ACTION_I,      /* zero-bubble: input gradient only (what is sent back upstream) */
    SL_ACTION_W,      /* zero-bubble: weight gradient only; frees the stash */
    SL_ACTION_R,      /* recompute the forward of (stage, mb) from its stashed input */
    SL_ACTION_SEND_F, /* send stage's forward output of mb to the rank of stage+1 */
    SL_ACTION_RECV_F, /* receive stage's input for mb from the rank of stage-1 */
    SL_ACTION_SEND_B, /* send stage's input gradient of mb to the rank of stage-1 */
    SL_ACTION_RECV_B, /* receive stage's output gradient of mb from the rank of stage+1 */
    SL_ACTION_OPT,    /* optimizer step: exactly one, last on every rank */
    SL_ACTION_TIED,   /* sum a tied parameter's gradient with its twin on another stage */
    SL_ACTION_NORM,   /* all-reduce the squared gradient norm around the ring */
    SL_ACTION_SYNC,   /* chimera: sum the gradients of the two replicas of this rank's stages */
};

/* Reductions before the optimizer step. Both come after every compute action of their rank and
 * right before OPT, TIED before NORM (the norm counts the tied matrix once, after its sum).
 *
 * TIED: the first and the last stage hold copies of one matrix (a GPT's token embedding and its
 * head). Each rank holding one of them sends its copy's gradient to the rank holding the other and
 * receives that one's, and both compute g_first + g_last, in that order, so the copies take the
 * same update and stay bit-identical. The two ranks must be ring neighbours (they are: stage 0 is
 * on rank 0, the last stage on rank D-1). In the action, `stage` is this rank's tied stage and
 * `peer` the twin's rank; peer == this rank (one rank holding both stages, as interleaved chunks on
 * one rank) is a local sum with no message, and `stage` is then the first tied stage.
 *
 * Under chimera TIED is a local sum, after SYNC: the ranks of the tied stages (0 and D-1) each hold
 * one tied copy of either replica (rank 0: stage 0 and the up replica's last, 2D-1; rank D-1:
 * stage D-1 and the up replica's first, D), whose gradients SYNC has made the model's; `peer` is
 * the rank itself and `stage` its stage of the down replica.
 *
 * NORM: a ring all-reduce of one double (the sum of squared gradients). Rank 0 sends its partial to
 * rank 1, rank r adds its own to what it received from r-1 and sends that on, and rank D-1, which
 * then has the total, sends it to rank 0; the total goes round once more to ranks 1..D-2, so every
 * rank ends with the same bits. Only in schedules of more than one rank. stage, mb, peer are -1. */

/* SYNC (chimera only): rank r holds model stage r of the down replica and model stage D-1-r of the
 * up replica; rank D-1-r holds their twins. The two exchange the gradients of both stages and each
 * sums them (down's copy first), so the replicas take the same update. `peer` is D-1-r (this rank
 * itself, a local sum, for the middle rank of an odd D); stage and mb are -1. It comes after the
 * rank's compute actions, before NORM and OPT.
 *
 * Its messages travel on the ring links: pair p (ranks p and D-1-p, p < D/2) directly when the two
 * are neighbours (p = 0 over the ring's wrap, and the middle pair), otherwise through the ranks
 * between them, p+1 .. D-2-p, which relay both directions. Every rank handles the pairs whose
 * messages cross it innermost first: its own (send, then receive), then each outer pair it
 * relays (receive from one side and send on, both directions), so both ends of every link agree
 * on the order. */

/* One action. For compute actions (F, B, I, W, R) `stage` is the model stage 0..D·v-1 and `peer`
 * is -1. For SEND_* and RECV_* `stage` is the stage that runs on THIS rank (the sender's stage for
 * SEND_*, the receiver's stage for RECV_*) and `peer` is the other rank. There is no SEND/RECV
 * between two stages on the same rank: the executor hands the tensor over locally. For OPT stage,
 * mb and peer are -1. */
typedef struct sl_action {
    enum sl_action_type type;
    int stage;
    int mb;
    int peer;
} sl_action;

/* Evaluation. A forward-only schedule (`forward_only`) runs F of every (stage, mb) and the
 * SEND_F/RECV_F that carry the activations, and nothing else: no B, I, W, R, SEND_B/RECV_B,
 * TIED, NORM or OPT; the last stage computes the loss of each micro-batch and no gradient. The
 * generator "eval" makes one: GPipe's forward order (rank r runs its chunks c = 0..v-1 in order,
 * each for micro-batches 0..M-1), with any chunks v >= 1, then the communication pass. The
 * validator checks it like a training schedule minus everything backward, and proves it completes
 * under the same blocking semantics: with links of depth 1 for one chunk per rank; with v > 1
 * chunks a link may need up to M·v messages (every forward one batch sends on it), which the
 * executor's links hold. The executor runs it between training steps to evaluate
 * the model (eval.interval, eval.iters), once per evaluation batch. */

/* Which rank runs each model stage (see the top of this file). A schedule read from a file may
 * place stages any way (SL_PLACE_CUSTOM, set stage by stage). */
enum sl_placement {
    SL_PLACE_LOOP = 0, /* stage s on rank s mod D */
    SL_PLACE_V = 1,    /* v = 2: rank r holds stages r and 2D-1-r */
    SL_PLACE_CUSTOM = 2,
};

/* The rank of `stage` under a placement of `ranks` ranks (LOOP or V). */
int sl_placement_rank(enum sl_placement placement, int ranks, int stage);

/* What to generate. `name` is one of "gpipe", "1f1b", "interleaved", "looped-bfs", "zb-h1",
 * "zb-v", "dualpipev", "chimera" (D even, at most SL_CHIMERA_MAX_RANKS), or "eval" (the
 * forward-only schedule above; recompute, tied_stages and norm are then ignored). `ranks` is D (the
 * config's pipeline.stages), `chunks` is v (0 means 1; interleaved needs v >= 2, the others v = 1).
 * With `recompute` only each stage's input is stashed, and R(stage, mb) runs before that stage's B
 * (or I) of mb. */
typedef struct sl_schedule_params {
    const char *name;
    int ranks;
    int microbatches;
    int chunks;
    bool recompute;
    /* The two stages holding the copies of a tied parameter, first < last; equal (as when the
     * struct is zeroed) when no tied parameter spans two stages: no TIED action then. */
    int tied_stages[2];
    bool norm; /* a NORM action on every rank (only with ranks > 1): clipping needs the norm */
    bool forward_only; /* forwards only (see Evaluation above); "eval" sets it */
    /* Which rank runs each stage: generators set it from the name (zb-v and dualpipev: V), so
     * it matters only to sl_schedule_create. */
    enum sl_placement placement;
} sl_schedule_params;

/* A schedule. Read it; build or change it only through the functions below. */
typedef struct sl_schedule {
    char name[16];
    int ranks;           /* D */
    int microbatches;    /* M */
    int chunks;          /* v */
    int stages;          /* D·v */
    bool recompute;      /* R before each B (or I) */
    bool split_backward; /* I and W instead of B (zb-h1, zb-v; dualpipev splits some) */
    int tied_stages[2];  /* as in sl_schedule_params; equal when there is no TIED */
    bool norm;           /* every rank runs NORM (ranks > 1) */
    bool forward_only;   /* F and SEND_F/RECV_F only: an evaluation (no backward, no OPT) */
    /* Independent pipelines through the stages: 1, or 2 for chimera, whose stages 0..D-1 are the
     * down replica (micro-batches 0..M/2-1) and D..2D-1 the up replica (M/2..M-1), model stage k
     * of the up replica being stage D+k, on rank D-1-k (the V placement): no transfer between
     * stage D-1 and stage D. */
    int chains;
    enum sl_placement placement;
    int *stage_rank;     /* [stages]: the rank that runs each model stage */
    size_t *count;       /* [ranks]: number of actions of each rank */
    size_t *cap;         /* [ranks]: allocated room */
    sl_action **actions; /* [ranks][count[r]] */
} sl_schedule;

/* Generates the compute order of every rank, inserts R (with recompute), runs the communication
 * pass and appends OPT. Returns SL_OK, SL_EINVAL with a one-line message saying what is allowed
 * (unknown name, D < 1, M < 1, chunks the schedule does not support, M/D it cannot run) or
 * SL_ENOMEM. The result is freed with sl_schedule_free. */
int sl_schedule_generate(const sl_schedule_params *params, sl_schedule **out);

/* An empty schedule (no actions) with the given shape, for building one by hand. The name must be
 * one of the generators' names or anything else up to 15 characters; `split_backward` says whether
 * the schedule uses I/W instead of B. */
int sl_schedule_create(const sl_schedule_params *params, bool split_backward, sl_schedule **out);

/* Replaces rank's list with a copy of `actions[0..count)`. */
int sl_schedule_set_actions(sl_schedule *s, int rank, const sl_action *actions, size_t count);

/* Appends one action to rank's list. */
int sl_schedule_append(sl_schedule *s, int rank, const sl_action *action);

/* Parses whitespace-separated actions in text form (see sl_action_format) and replaces rank's list
 * with them. Returns SL_EFORMAT naming the bad token. */
int sl_schedule_parse_rank(sl_schedule *s, int rank, const char *text);

/* The communication pass: removes every SEND/RECV/TIED/NORM/OPT from the lists, then puts a SEND
 * right after each compute action whose result goes to another rank, and the matching RECVs before
 * each compute action that needs one, in the order the sender sends on that link (so both ends
 * agree), and appends TIED (on the ranks of the schedule's tied stages), NORM (every rank, when the
 * schedule has it) and OPT to every rank (none of the three in a forward-only schedule).
 * sl_schedule_generate runs it; hand-built compute orders may too. */
int sl_schedule_insert_comms(sl_schedule *s);

void sl_schedule_free(sl_schedule *s);

/* Rank s's list: returns the actions and stores their number in *count. NULL for a bad rank. */
const sl_action *sl_schedule_actions(const sl_schedule *s, int rank, size_t *count);

/* The rank that runs model stage `stage` (stage mod D in the loop placement); -1 outside. */
int sl_schedule_rank_of_stage(const sl_schedule *s, int stage);

/* Places `stage` on `rank` (the placement becomes SL_PLACE_CUSTOM), for schedules read from a
 * file. */
int sl_schedule_set_stage_rank(sl_schedule *s, int stage, int rank);

/* The ring link a SEND_* or RECV_* action of `rank` uses: 0 toward (rank+1)%D (SL_LINK_NEXT), 1
 * toward (rank-1+D)%D (SL_LINK_PREV); -1 when its peer is not a ring neighbour. With two ranks both
 * links lead to the peer: activations go out on NEXT and come in on PREV, gradients the other way,
 * so both ends of a transfer pick the two ends of one link. */
int sl_schedule_link_dir(const sl_schedule *s, int rank, const sl_action *a);

/* Where `rank` can read, without waiting longer than its list does, a message that its NEXT
 * neighbour sent before anything of the same step towards it (the stop vote's broadcast,
 * runtime/exec/stop.c): the index of its first receive from NEXT (as sl_schedule_link_dir picks
 * the link), when no action before it sends towards PREV or reduces (TIED, NORM, SYNC), so the
 * neighbour's own messages of the step cannot depend on it; else -1. */
long sl_schedule_upstream_read(const sl_schedule *s, int rank);

/* One message of a TIED, NORM or SYNC action: sent or received, to or from `peer`, over the ring
 * link toward the next rank ((r+1)%D, dir 0) or the previous one (dir 1): the transport's
 * SL_LINK_NEXT and SL_LINK_PREV. `round` tells NORM's two rounds apart (0: partial sums, 1: the
 * total) and names SYNC's pair p; TIED's is 0. A `relay` message (SYNC) is another pair's, passed
 * on: received, then sent on by the next exchange. */
typedef struct sl_exchange {
    bool send;
    bool relay;
    int peer;
    int dir;
    int round;
} sl_exchange;

/* Chimera's most ranks, and the most messages of one reduction on one rank (SYNC's own two and
 * four for each outer pair it relays). */
#define SL_CHIMERA_MAX_RANKS 64
#define SL_EXCHANGES_MAX     (2 + 4 * (SL_CHIMERA_MAX_RANKS / 2 - 1))

/* The messages rank `rank` sends and receives, in order, to run TIED, NORM or SYNC action `a` of
 * schedule `s` (at most SL_EXCHANGES_MAX; none for a local TIED or SYNC, any other action, or NORM
 * on one rank). Returns their number, or -1 when the action is not one the schedule can run on
 * that rank (a TIED whose stages are not this rank's or whose ranks are not ring neighbours, a
 * SYNC whose peer is not D-1-rank). */
int sl_action_exchanges(const sl_schedule *s, int rank, const sl_action *a,
                        sl_exchange out[SL_EXCHANGES_MAX]);

/* Checks every dependency and simulates all ranks with links of `queue_depth` messages (0 for
 * SL_SCHEDULE_QUEUE_DEPTH):
 *   - each compute action exactly once per (stage, mb) on the rank of its stage: F, then B, or I
 *     then W (zb-h1), and R between F and B/I exactly when the schedule recomputes; every stage of
 *     the model (hence every layer) is covered for every micro-batch;
 *   - a stage's F after the previous stage's F of that micro-batch, its B (or I) after the next
 *     stage's B (or I): on the same rank by list order, across ranks through a RECV on this rank
 *     that comes before it and a SEND on the other rank that comes after the producer;
 *   - one SEND and one RECV for every transfer between ranks, with the right peers; none between
 *     stages on the same rank; exactly one OPT, last on every rank;
 *   - TIED exactly once on each rank of the tied stages (naming the other) when the schedule has
 *     tied stages, NORM exactly once on every rank when it has the norm, after every compute
 *     action of the rank (TIED before NORM), none otherwise; in the run each is the send and the
 *     receive of sl_action_exchanges on the ring links;
 *   - a forward-only schedule: F and SEND_F/RECV_F only (any other action is refused), every
 *     (stage, mb) forward once with its input brought as above, and no OPT;
 *   - the simulation completes: every RECV gets the message it names.
 * Returns SL_OK, SL_EINVAL (a broken dependency; the message names the rank, the position, the
 * action and what it needed) or SL_EDEADLOCK (the message names each blocked rank, the action it
 * is blocked on and what it waits for). */
int sl_schedule_validate(const sl_schedule *s, int queue_depth);

/* The smallest link depth with which the schedule completes (1 for the generated gpipe, 1f1b and
 * zb-h1 schedules; 2 for interleaved ones, whose two directions of a ring both carry forwards).
 * Returns the depth (>= 1), or a negative status when it does not complete with any depth up to
 * the number of transfers (then the message says why). The transport must let at least this
 * many messages wait on a link. */
int sl_schedule_min_queue_depth(const sl_schedule *s);

/* A stage's whole backward (the costs' B) from the mean times measured of its actions of each kind
 * (0 for a kind it did not run): its I's and W's together when it ran I, else its B's. A schedule
 * may run both (dualpipev: B where a micro-batch's I and W would meet); the simulator's I is then
 * B - W, which taking B from the B actions could make negative where W runs longer than B. */
static inline double sl_schedule_whole_backward(double b, double i, double w)
{
    return i > 0 ? i + w : b;
}

/* Costs of one action of one stage for one micro-batch. Defaults: F = 1, B = 2 and, when the
 * backward is split, W = B/2 and I = B - W. R costs as F. SEND/RECV take no rank time; a message
 * arrives `latency` after it is sent. TIED and NORM take `tied` and `norm` once their messages
 * are in (defaults 0.25 and 0.05: a sum of one matrix, a norm over the gradients). Per-stage arrays
 * (length stages, or NULL) override the scalars. */
typedef struct sl_schedule_costs {
    double f, b, w;        /* 0 means the default; w is the weight-gradient part of b */
    const double *stage_f; /* [stages] or NULL */
    const double *stage_b;
    const double *stage_w;
    double tied, norm;      /* 0 means the default */
    const double *rank_opt; /* [ranks] or NULL (0): OPT's cost on each rank (the optimizer step,
                               its gradient norm and the gradients' clearing) */
    double latency;         /* per transfer, >= 0 */
    int queue_depth;        /* link depth for the simulation, 0 for SL_SCHEDULE_QUEUE_DEPTH */
    /* Memory (optional, both or neither): per stage, the bytes one micro-batch's stash of
     * activations holds and the bytes of the stage's input (the layer table's figures,
     * sl_plan_stash_bytes and sl_plan_input_bytes). */
    const double *stage_stash_bytes; /* [stages] or NULL */
    const double *stage_input_bytes; /* [stages] or NULL */
    /* Processors that ranks share (0: every rank has its own). The compute actions (F, B, I, W,
     * R) of the ranks with rank_threads[r] > 0 (NULL: 1 each) share `cores` processors as the
     * kernel time-slices threads: while ranks with T threads in all compute, each runs at
     * min(1, cores / T) of the speed its costs (measured alone) assume. Ranks on the CPU devices
     * of one host share its cores so. */
    int cores;
    const int *rank_threads; /* [ranks] or NULL */
} sl_schedule_costs;

/* What the timed simulator predicts. Arrays are per rank; start/end are per action, parallel to
 * the rank's list. */
typedef struct sl_schedule_sim {
    int ranks;
    double makespan;       /* the end of the last action on any rank */
    double bubble_ratio;   /* sum of idle / (ranks × makespan) */
    double *busy;          /* [ranks]: compute time */
    double *idle;          /* [ranks]: makespan - busy */
    int *peak_activations; /* [ranks]: most micro-batch stashes held at once: F to B, or F to W
                              when the backward is split (W still needs each layer's input); with
                              recompute each stash is only the stage input (and R's activations
                              live from R to B, or to W) */
    int *peak_pending_w;   /* [ranks]: split backward only: most micro-batches between I and W,
                              each holding what W needs (layer inputs, output gradients) */
    double *peak_bytes;    /* [ranks]: with the costs' stage bytes, the most bytes of stashes and
                              stage inputs held at once, as the executor holds them: an input from
                              its RECV_F (stage 0: its F; a stage whose predecessor is local: that
                              F) and the stash from F to B or W (with recompute from F's start to
                              its end, and from R to B or W); 0 without them */
    bool has_bytes;        /* the costs carried the stage bytes: peak_bytes holds the replay */
    double **start, **end; /* [ranks][count[r]] */
} sl_schedule_sim;

/* Simulates the schedule in time. `costs` may be NULL for the defaults. Fails like
 * sl_schedule_validate if the schedule cannot complete; the result is freed with
 * sl_schedule_sim_free. */
int sl_schedule_simulate(const sl_schedule *s, const sl_schedule_costs *costs,
                         sl_schedule_sim *out);
void sl_schedule_sim_free(sl_schedule_sim *sim);

/* Text form: compute actions "5F2" (stage, type letter F/B/I/W/R, mb); communication
 * "SEND_F 5F2->r1", "RECV_F 5F2<-r0", "SEND_B 5B2->r0", "RECV_B 5B2<-r2" (the stage on this
 * rank, the peer rank); "TIED 0<->r3" (this rank's tied stage, the twin's rank); "NORM"; "OPT".
 * Writes at most cap bytes including the NUL and returns the length it wanted, like snprintf. */
int sl_action_format(const sl_action *a, char *buf, size_t cap);

/* Parses one action in text form from `text`; stores in *used how many characters it took
 * (leading spaces included). Returns SL_EFORMAT with a message naming what was wrong. */
int sl_action_parse(const char *text, sl_action *out, size_t *used);

/* Short names: "F", "SEND_F", ... */
const char *sl_action_type_name(enum sl_action_type type);

/* Output for people and tools. `sim` must come from sl_schedule_simulate on `s`. */
/* A table, one row per rank and one column per time unit (costs are rounded to whole units for
 * the table), idle units shown as '.', then makespan, bubble ratio and peak stash per rank. */
int sl_schedule_write_text(FILE *f, const sl_schedule *s, const sl_schedule_sim *sim);
/* One JSON object: schedule, stages (= ranks, as the config counts them), microbatches, chunks,
 * recompute, ranks (per rank the compute actions in order, as strings), makespan, bubble_ratio,
 * idle (per rank), peak_activations (per rank). */
int sl_schedule_write_json(FILE *f, const sl_schedule *s, const sl_schedule_sim *sim);
/* An SVG timeline: one row per rank, a colour per micro-batch, F light, B/I darker, W darkest,
 * R outlined dashed. */
int sl_schedule_write_svg(FILE *f, const sl_schedule *s, const sl_schedule_sim *sim);

/* PyTorch pipelining's action CSV (torch/distributed/pipelining/schedules.py, _dump_csv and
 * _load_csv): one row per rank, one cell per action, "<stage><type><mb>" (`0F0`, `1I2`, `2W1`,
 * `3B0`). The compute-only form (`with_comms` false) lists F, I, W and B; the with-communication
 * form also `3SEND_F1`, `1RECV_F0`, `2SEND_B0`, `1RECV_B0`, where they run. Neither has a peer: it
 * follows from where the stages run. TIED, NORM and OPT have no PyTorch action and are left out;
 * a schedule with recompute (R) or with two pipelines (chimera: two replicas and SYNC) is refused.
 */
int sl_schedule_write_pytorch(FILE *f, const sl_schedule *s, bool with_comms);

/* Reads such a CSV (either form: with any SEND/RECV in it, the file's own transfers are used as
 * written; without, the communication pass inserts them). The ranks are the rows, the stages,
 * micro-batches and each stage's rank come from the compute actions; empty cells (PyTorch's None)
 * and PyTorch's UNSHARD, RESHARD and REDUCE_GRAD (FSDP and data-parallel actions, no pipeline
 * dependency) are skipped; an OVERLAP_F_B pair "(0F1;3B0)OVERLAP_F_B" runs as its two actions in
 * order. OPT is appended to every rank. The result is not yet validated: run
 * sl_schedule_validate or sl_schedule_simulate, which name the rank and action that is missing,
 * duplicated, out of order or waits forever. SL_EFORMAT names the rank (row) and action (column,
 * from 0) of a cell that is not an action; SL_EINVAL a stage on two ranks or ranks holding
 * different numbers of stages. */
int sl_schedule_read_pytorch(const char *text, sl_schedule **out);

#ifdef __cplusplus
}
#endif
#endif
