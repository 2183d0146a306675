/* The validator: every dependency, then a run of all ranks with bounded links (run.c). */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/schedule/schedule_internal.h"

#define NTYPES      9 /* every action type but OPT has a position table */
#define RANK(stage) (s->stage_rank[stage])

static const char *fmt(const sl_action *a, char *buf, size_t cap)
{
    sl_action_format(a, buf, cap);
    return buf;
}

/* ------------------------------------------------------------------------------------------ */
/* Dependencies */

typedef struct checker {
    const sl_schedule *s;
    long *pos; /* [type][stage][mb]: index in its rank's list, -1 when absent */
} checker;

static long *at(checker *c, enum sl_action_type t, int stage, int mb)
{
    return &c->pos[((size_t)t * (size_t)c->s->stages + (size_t)stage) * (size_t)c->s->microbatches +
                   (size_t)mb];
}

static long get(checker *c, enum sl_action_type t, int stage, int mb)
{
    return *at(c, t, stage, mb);
}

/* `first` (at index i) must come before `then` (at index j) on rank r. */
static int before(const sl_schedule *s, int r, long i, sl_action first, long j, sl_action then,
                  const char *why)
{
    if (i < j) return SL_OK;
    char a[40], b[40];
    return sl_fail(SL_EINVAL, "rank %d: %s (action %ld) runs before %s (action %ld), which %s", r,
                   fmt(&then, b, sizeof b), j, fmt(&first, a, sizeof a), i, why);
}

static int check_entries(checker *c)
{
    const sl_schedule *s = c->s;
    const int D = s->ranks, S = s->stages, M = s->microbatches;
    char t[40];
    for (int r = 0; r < D; r++) {
        size_t nopt = 0;
        long tied = -1, norm = -1, sync = -1, last_compute = -1;
        for (size_t i = 0; i < s->count[r]; i++) {
            sl_action a = s->actions[r][i];
            if (s->forward_only && a.type != SL_ACTION_F && a.type != SL_ACTION_SEND_F &&
                a.type != SL_ACTION_RECV_F)
                return sl_fail(SL_EINVAL,
                               "rank %d: action %zu (%s): a forward-only schedule runs only F, "
                               "SEND_F and RECV_F",
                               r, i, fmt(&a, t, sizeof t));
            if (a.type == SL_ACTION_SYNC) {
                sl_exchange ex[SL_EXCHANGES_MAX];
                if (sync >= 0)
                    return sl_fail(SL_EINVAL, "rank %d: SYNC appears twice (actions %ld and %zu)",
                                   r, sync, i);
                if (sl_action_exchanges(s, r, &a, ex) < 0)
                    return sl_fail(SL_EINVAL,
                                   "rank %d: action %zu (%s): only chimera sums replicas, each "
                                   "rank r with rank D-1-r = %d",
                                   r, i, fmt(&a, t, sizeof t), D - 1 - r);
                sync = (long)i;
                continue;
            }
            if (a.type == SL_ACTION_TIED || a.type == SL_ACTION_NORM) {
                sl_exchange ex[SL_EXCHANGES_MAX];
                bool is_tied = a.type == SL_ACTION_TIED;
                long *seen = is_tied ? &tied : &norm;
                if (*seen >= 0)
                    return sl_fail(SL_EINVAL, "rank %d: %s appears twice (actions %ld and %zu)", r,
                                   fmt(&a, t, sizeof t), *seen, i);
                if (!is_tied && !s->norm)
                    return sl_fail(SL_EINVAL,
                                   "rank %d: action %zu (NORM): this schedule has no norm to "
                                   "combine (one rank, or no clipping)",
                                   r, i);
                if (is_tied && sl_action_exchanges(s, r, &a, ex) < 0)
                    return sl_fail(SL_EINVAL,
                                   "rank %d: action %zu (%s) does not match the schedule's tied "
                                   "stages %d and %d (on ranks %d and %d)",
                                   r, i, fmt(&a, t, sizeof t), s->tied_stages[0], s->tied_stages[1],
                                   RANK(s->tied_stages[0]), RANK(s->tied_stages[1]));
                *seen = (long)i;
                continue;
            }
            if (sl__is_compute(a.type)) last_compute = (long)i;
            if (a.type == SL_ACTION_OPT) {
                if (++nopt > 1 || i + 1 != s->count[r])
                    return sl_fail(SL_EINVAL,
                                   "rank %d: OPT at action %zu must be the last action "
                                   "and appear once",
                                   r, i);
                continue;
            }
            if ((unsigned)a.type >= NTYPES)
                return sl_fail(SL_EINVAL, "rank %d: action %zu has an unknown type %d", r, i,
                               (int)a.type);
            if (a.stage < 0 || a.stage >= S || a.mb < 0 || a.mb >= M)
                return sl_fail(SL_EINVAL,
                               "rank %d: action %zu (%s) is outside the schedule's %d "
                               "stages and %d micro-batches",
                               r, i, fmt(&a, t, sizeof t), S, M);
            if (!sl__chain_has(s, a.stage, a.mb))
                return sl_fail(SL_EINVAL,
                               "rank %d: action %zu (%s): micro-batch %d goes through the other "
                               "replica (chimera: micro-batches 0..%d down stages 0..%d, the rest "
                               "up stages %d..%d)",
                               r, i, fmt(&a, t, sizeof t), a.mb, M / 2 - 1, S / 2 - 1, S / 2,
                               S - 1);
            if (RANK(a.stage) != r)
                return sl_fail(SL_EINVAL,
                               "rank %d: action %zu (%s) belongs to rank %d, which runs stage %d",
                               r, i, fmt(&a, t, sizeof t), RANK(a.stage), a.stage);
            switch (a.type) {
            case SL_ACTION_I:
            case SL_ACTION_W:
                if (!s->split_backward)
                    return sl_fail(SL_EINVAL,
                                   "rank %d: action %zu (%s): %s does not split the "
                                   "backward, so it has no I or W",
                                   r, i, fmt(&a, t, sizeof t), s->name);
                break;
            case SL_ACTION_R:
                if (!s->recompute)
                    return sl_fail(SL_EINVAL,
                                   "rank %d: action %zu (%s): this schedule does not "
                                   "recompute",
                                   r, i, fmt(&a, t, sizeof t));
                break;
            default:
                break;
            }
            int want_peer = -1;
            if (a.type == SL_ACTION_SEND_F || a.type == SL_ACTION_RECV_B)
                want_peer = !sl__chain_last(s, a.stage) ? RANK(a.stage + 1) : -2;
            if (a.type == SL_ACTION_RECV_F || a.type == SL_ACTION_SEND_B)
                want_peer = !sl__chain_first(s, a.stage) ? RANK(a.stage - 1) : -2;
            if (want_peer == -2 || want_peer == r)
                return sl_fail(SL_EINVAL,
                               "rank %d: action %zu (%s) transfers to or from a stage "
                               "that %s",
                               r, i, fmt(&a, t, sizeof t),
                               want_peer == r ? "is on the same rank (handed over locally, with "
                                                "no SEND/RECV)"
                                              : "does not exist");
            if (want_peer >= 0 && a.peer != want_peer)
                return sl_fail(SL_EINVAL,
                               "rank %d: action %zu (%s) names peer %d but the other "
                               "stage runs on rank %d",
                               r, i, fmt(&a, t, sizeof t), a.peer, want_peer);
            long *p = at(c, a.type, a.stage, a.mb);
            if (*p >= 0)
                return sl_fail(SL_EINVAL,
                               "rank %d: %s appears twice (actions %ld and %zu); each "
                               "action runs exactly once",
                               r, fmt(&a, t, sizeof t), *p, i);
            *p = (long)i;
        }
        if (s->forward_only) continue; /* no reductions and no OPT to check */
        if (nopt != 1)
            return sl_fail(SL_EINVAL, "rank %d has no OPT: every rank ends with one optimizer step",
                           r);
        const int *ts = s->tied_stages;
        bool want_tied = ts[0] != ts[1] && (RANK(ts[0]) == r || RANK(ts[1]) == r);
        if (want_tied && tied < 0)
            return sl_fail(SL_EINVAL,
                           "rank %d has no TIED: it holds stage %d, one of the two copies of a "
                           "tied parameter (stages %d and %d), whose gradients are summed before "
                           "the optimizer step",
                           r, RANK(ts[0]) == r ? ts[0] : ts[1], ts[0], ts[1]);
        if (!want_tied && tied >= 0)
            return sl_fail(SL_EINVAL, "rank %d: action %ld (TIED): this rank holds no tied stage",
                           r, tied);
        if (s->chains == 2 && sync < 0)
            return sl_fail(SL_EINVAL,
                           "rank %d has no SYNC: chimera sums the gradients of its two replicas "
                           "(with rank %d) before the optimizer step",
                           r, D - 1 - r);
        if (sync >= 0 &&
            (sync < last_compute || (tied >= 0 && tied < sync) || (norm >= 0 && norm < sync)))
            return sl_fail(SL_EINVAL,
                           "rank %d: SYNC (action %ld) must come after every compute action and "
                           "before TIED and NORM",
                           r, sync);
        if (s->norm && norm < 0)
            return sl_fail(SL_EINVAL,
                           "rank %d has no NORM: every rank combines the gradient norm before "
                           "the optimizer step",
                           r);
        if ((tied >= 0 && tied < last_compute) || (norm >= 0 && norm < last_compute))
            return sl_fail(SL_EINVAL,
                           "rank %d: %s (action %ld) runs before compute action %ld: the "
                           "reductions need every gradient of the step",
                           r, tied >= 0 && tied < last_compute ? "TIED" : "NORM",
                           tied >= 0 && tied < last_compute ? tied : norm, last_compute);
        if (tied >= 0 && norm >= 0 && norm < tied)
            return sl_fail(SL_EINVAL,
                           "rank %d: NORM (action %ld) runs before TIED (action %ld): the norm "
                           "counts the tied matrix after its sum",
                           r, norm, tied);
    }
    return SL_OK;
}

static int missing(const sl_schedule *s, enum sl_action_type t, int stage, int mb, int peer,
                   const char *why)
{
    sl_action a = {t, stage, mb, peer};
    char b[40];
    return sl_fail(SL_EINVAL, "rank %d is missing %s: %s", RANK(stage), fmt(&a, b, sizeof b), why);
}

/* The action that runs the input-gradient part of (stage, mb)'s backward: B, or I where the
 * schedule splits it (a split schedule may still run a whole B for some micro-batches, as
 * DualPipeV does, since B is I then W at once). */
static enum sl_action_type bwd_type(checker *c, int stage, int mb)
{
    if (!c->s->split_backward) return SL_ACTION_B;
    return get(c, SL_ACTION_B, stage, mb) >= 0 ? SL_ACTION_B : SL_ACTION_I;
}

static int check_order(checker *c)
{
    const sl_schedule *s = c->s;
    const int S = s->stages, M = s->microbatches;
    for (int st = 0; st < S; st++) {
        const int r = RANK(st);
        for (int m = 0; m < M; m++) {
            if (!sl__chain_has(s, st, m)) continue;
            const enum sl_action_type BWD = bwd_type(c, st, m);
            if (BWD == SL_ACTION_B &&
                (get(c, SL_ACTION_I, st, m) >= 0 || get(c, SL_ACTION_W, st, m) >= 0)) {
                sl_action b = {SL_ACTION_B, st, m, -1};
                char t[40];
                return sl_fail(SL_EINVAL,
                               "rank %d runs %s and also I or W of it: a backward runs whole (B) "
                               "or split (I, then W), not both",
                               r, fmt(&b, t, sizeof t));
            }
            sl_action F = {SL_ACTION_F, st, m, -1}, Bk = {BWD, st, m, -1};
            sl_action R = {SL_ACTION_R, st, m, -1}, W = {SL_ACTION_W, st, m, -1};
            long f = get(c, SL_ACTION_F, st, m), b = get(c, BWD, st, m);
            if (f < 0)
                return missing(s, SL_ACTION_F, st, m, -1,
                               "every stage (so every layer) runs "
                               "forward for every micro-batch");
            if (b < 0 && !s->forward_only)
                return missing(s, BWD, st, m, -1,
                               "every stage (so every layer) runs backward "
                               "for every micro-batch");
            if (!s->forward_only)
                SL_TRY(before(s, r, f, F, b, Bk, "stashes the activations it needs"));
            if (BWD == SL_ACTION_I) {
                long w = get(c, SL_ACTION_W, st, m);
                if (w < 0) return missing(s, SL_ACTION_W, st, m, -1, "every I has its W");
                SL_TRY(before(s, r, b, Bk, w, W, "computes the gradient it needs"));
            }
            if (s->recompute) {
                long rr = get(c, SL_ACTION_R, st, m);
                if (rr < 0)
                    return missing(s, SL_ACTION_R, st, m, -1,
                                   "with recompute every backward "
                                   "rebuilds its activations first");
                SL_TRY(before(s, r, f, F, rr, R, "stashes the input it recomputes from"));
                SL_TRY(before(s, r, rr, R, b, Bk, "rebuilds the activations it needs"));
            }
            /* The input of this forward. */
            if (!sl__chain_first(s, st)) {
                const int pr = RANK(st - 1);
                sl_action Fp = {SL_ACTION_F, st - 1, m, -1};
                if (pr == r) {
                    SL_TRY(before(s, r, get(c, SL_ACTION_F, st - 1, m), Fp, f, F,
                                  "produces its input"));
                } else {
                    sl_action rv = {SL_ACTION_RECV_F, st, m, pr},
                              sd = {SL_ACTION_SEND_F, st - 1, m, r};
                    long i = get(c, SL_ACTION_RECV_F, st, m),
                         j = get(c, SL_ACTION_SEND_F, st - 1, m);
                    if (i < 0)
                        return missing(s, rv.type, st, m, pr, "it brings the forward's input");
                    if (j < 0)
                        return missing(s, sd.type, st - 1, m, r,
                                       "the next stage needs this output");
                    SL_TRY(before(s, r, i, rv, f, F, "brings its input"));
                    SL_TRY(before(s, pr, get(c, SL_ACTION_F, st - 1, m), Fp, j, sd,
                                  "computes what it sends"));
                }
            }
            /* The output gradient of this backward. */
            if (!sl__chain_last(s, st) && !s->forward_only) {
                const int nr = RANK(st + 1);
                const enum sl_action_type BWDn = bwd_type(c, st + 1, m);
                sl_action Bn = {BWDn, st + 1, m, -1};
                if (nr == r) {
                    SL_TRY(before(s, r, get(c, BWDn, st + 1, m), Bn, b, Bk,
                                  "produces its output gradient"));
                } else {
                    sl_action rv = {SL_ACTION_RECV_B, st, m, nr},
                              sd = {SL_ACTION_SEND_B, st + 1, m, r};
                    long i = get(c, SL_ACTION_RECV_B, st, m),
                         j = get(c, SL_ACTION_SEND_B, st + 1, m);
                    if (i < 0)
                        return missing(s, rv.type, st, m, nr, "it brings the output gradient");
                    if (j < 0)
                        return missing(s, sd.type, st + 1, m, r,
                                       "the previous stage needs this "
                                       "gradient");
                    SL_TRY(before(s, r, i, rv, b, Bk, "brings its output gradient"));
                    SL_TRY(before(s, nr, get(c, BWDn, st + 1, m), Bn, j, sd,
                                  "computes what it sends"));
                }
            }
        }
    }
    return SL_OK;
}

int sl_schedule_validate(const sl_schedule *s, int queue_depth)
{
    if (!s) return sl_fail(SL_EINVAL, "sl_schedule_validate: null schedule");
    if (queue_depth < 0)
        return sl_fail(SL_EINVAL, "queue depth must be >= 1, or 0 for the default (got %d)",
                       queue_depth);
    checker c = {.s = s};
    size_t n = (size_t)NTYPES * (size_t)s->stages * (size_t)s->microbatches;
    if (!(c.pos = malloc(sizeof *c.pos * n))) return sl_fail(SL_ENOMEM, "out of memory validating");
    for (size_t i = 0; i < n; i++) c.pos[i] = -1;
    int st = check_entries(&c);
    if (!st) st = check_order(&c);
    free(c.pos);
    SL_TRY(st);
    return sl__schedule_run(s, queue_depth ? queue_depth : SL_SCHEDULE_QUEUE_DEPTH, NULL, NULL);
}

int sl_schedule_min_queue_depth(const sl_schedule *s)
{
    /* The dependency checks do not depend on the depth: run them once at a depth at which
     * nothing ever blocks on a send, then search upward from 1. */
    if (!s) return sl_fail(SL_EINVAL, "sl_schedule_min_queue_depth: null schedule");
    size_t sends = 1;
    for (int r = 0; r < s->ranks; r++) sends += s->count[r];
    int most = (int)SL_MIN(sends, (size_t)1 << 30);
    SL_TRY(sl_schedule_validate(s, most));
    for (int q = 1; q < most; q *= 2)
        if (sl__schedule_run(s, q, NULL, NULL) == SL_OK) {
            /* Completion is monotone in the depth: refine between q/2 and q. */
            int lo = q / 2, hi = q;
            while (hi - lo > 1) {
                int mid = lo + (hi - lo) / 2;
                if (sl__schedule_run(s, mid, NULL, NULL) == SL_OK)
                    hi = mid;
                else
                    lo = mid;
            }
            sl_clear_error();
            return hi;
        }
    sl_clear_error();
    return most;
}
