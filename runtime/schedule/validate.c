/* The validator (dependencies, then a run of all ranks with bounded links) and the timed
 * simulator, which is the same run with a clock per rank. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/schedule/schedule_internal.h"

#define NTYPES 9 /* every action type but OPT has a position table */

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
        long tied = -1, norm = -1, last_compute = -1;
        for (size_t i = 0; i < s->count[r]; i++) {
            sl_action a = s->actions[r][i];
            if (s->forward_only && a.type != SL_ACTION_F && a.type != SL_ACTION_SEND_F &&
                a.type != SL_ACTION_RECV_F)
                return sl_fail(SL_EINVAL,
                               "rank %d: action %zu (%s): a forward-only schedule runs only F, "
                               "SEND_F and RECV_F",
                               r, i, fmt(&a, t, sizeof t));
            if (a.type == SL_ACTION_TIED || a.type == SL_ACTION_NORM) {
                sl_exchange ex[4];
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
                                   s->tied_stages[0] % D, s->tied_stages[1] % D);
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
            if (a.stage % D != r)
                return sl_fail(SL_EINVAL,
                               "rank %d: action %zu (%s) belongs to rank %d (stage s "
                               "runs on rank s mod %d)",
                               r, i, fmt(&a, t, sizeof t), a.stage % D, D);
            switch (a.type) {
            case SL_ACTION_B:
                if (s->split_backward)
                    return sl_fail(SL_EINVAL,
                                   "rank %d: action %zu (%s): %s splits the backward "
                                   "into I and W, so it has no B",
                                   r, i, fmt(&a, t, sizeof t), s->name);
                break;
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
                want_peer = a.stage + 1 < S ? (a.stage + 1) % D : -2;
            if (a.type == SL_ACTION_RECV_F || a.type == SL_ACTION_SEND_B)
                want_peer = a.stage > 0 ? (a.stage - 1) % D : -2;
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
        bool want_tied = ts[0] != ts[1] && (ts[0] % D == r || ts[1] % D == r);
        if (want_tied && tied < 0)
            return sl_fail(SL_EINVAL,
                           "rank %d has no TIED: it holds stage %d, one of the two copies of a "
                           "tied parameter (stages %d and %d), whose gradients are summed before "
                           "the optimizer step",
                           r, ts[0] % D == r ? ts[0] : ts[1], ts[0], ts[1]);
        if (!want_tied && tied >= 0)
            return sl_fail(SL_EINVAL, "rank %d: action %ld (TIED): this rank holds no tied stage",
                           r, tied);
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
    return sl_fail(SL_EINVAL, "rank %d is missing %s: %s", stage % s->ranks, fmt(&a, b, sizeof b),
                   why);
}

static int check_order(checker *c)
{
    const sl_schedule *s = c->s;
    const int D = s->ranks, S = s->stages, M = s->microbatches;
    const enum sl_action_type BWD = s->split_backward ? SL_ACTION_I : SL_ACTION_B;
    for (int st = 0; st < S; st++) {
        const int r = st % D;
        for (int m = 0; m < M; m++) {
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
            if (s->split_backward) {
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
            if (st > 0) {
                const int pr = (st - 1) % D;
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
            if (st + 1 < S && !s->forward_only) {
                const int nr = (st + 1) % D;
                sl_action Bn = {BWD, st + 1, m, -1};
                if (nr == r) {
                    SL_TRY(before(s, r, get(c, BWD, st + 1, m), Bn, b, Bk,
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
                    SL_TRY(
                        before(s, nr, get(c, BWD, st + 1, m), Bn, j, sd, "computes what it sends"));
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

/* ------------------------------------------------------------------------------------------ */
/* Running all ranks */

/* kind 0: activation, 1: gradient (as in the communication pass), WIRE_TIED (stage: the
 * receiver's tied stage), WIRE_NORM (mb: the round). */
typedef struct wire {
    int kind, stage, mb; /* named by the receiver, as in the communication pass */
} wire;

enum { WIRE_TIED = 2, WIRE_NORM = 3 };

typedef struct link {
    wire *m;
    double *sent_at, *recv_at;
    size_t cap, sent, recvd;
} link;

static double cost_of(const sl_schedule *s, const sl_schedule_costs *c, const sl_action *a)
{
    if (a->type == SL_ACTION_TIED) return c->tied;
    if (a->type == SL_ACTION_NORM) return s->ranks > 1 ? c->norm : 0;
    if (!sl__is_compute(a->type)) return 0; /* OPT has no stage to index */
    double f = c->stage_f ? c->stage_f[a->stage] : c->f;
    double b = c->stage_b ? c->stage_b[a->stage] : c->b;
    double w = c->stage_w ? c->stage_w[a->stage] : c->w;
    switch (a->type) {
    case SL_ACTION_F:
    case SL_ACTION_R:
        return f;
    case SL_ACTION_B:
        return b;
    case SL_ACTION_I:
        return b - w;
    case SL_ACTION_W:
        return w;
    default:
        return 0;
    }
}

/* What the sender's action looked like, for messages. */
static const char *wire_text(const wire *w, char *buf, size_t cap)
{
    if (w->kind == WIRE_TIED) {
        snprintf(buf, cap, "the tied gradient for stage %d", w->stage);
        return buf;
    }
    if (w->kind == WIRE_NORM) {
        snprintf(buf, cap, "NORM's %s", w->mb ? "total" : "partial sum");
        return buf;
    }
    sl_action a = {w->kind ? SL_ACTION_B : SL_ACTION_F, w->kind ? w->stage + 1 : w->stage - 1,
                   w->mb, -1};
    return fmt(&a, buf, cap);
}

int sl__schedule_run(const sl_schedule *s, int depth, const sl_schedule_costs *costs,
                     sl_schedule_sim *sim)
{
    const int D = s->ranks;
    int st = SL_OK;
    link *links = sl_alloc(sizeof *links * (size_t)D * (size_t)D); /* [src * D + dst] */
    size_t *pc = sl_alloc(sizeof *pc * (size_t)D);
    int *sub = sl_alloc(sizeof *sub * (size_t)D); /* messages of a TIED/NORM already done */
    double *clock = sl_alloc(sizeof *clock * (size_t)D);
    double *began = sl_alloc(sizeof *began * (size_t)D); /* when the TIED/NORM in progress began */
    if (!links || !pc || !sub || !clock || !began) {
        st = SL_ENOMEM;
        goto out;
    }
    for (int r = 0; r < D; r++)
        for (size_t i = 0; i < s->count[r]; i++) {
            const sl_action *a = &s->actions[r][i];
            if ((a->type == SL_ACTION_SEND_F || a->type == SL_ACTION_SEND_B) && a->peer >= 0 &&
                a->peer < D)
                links[r * D + a->peer].cap++;
            sl_exchange ex[4];
            int n = sl_action_exchanges(s, r, a, ex);
            for (int k = 0; k < n; k++)
                if (ex[k].send) links[r * D + ex[k].peer].cap++;
        }
    for (int l = 0; l < D * D; l++) {
        size_t n = links[l].cap ? links[l].cap : 1;
        links[l].m = malloc(sizeof(wire) * n);
        links[l].sent_at = malloc(sizeof(double) * n);
        links[l].recv_at = malloc(sizeof(double) * n);
        if (!links[l].m || !links[l].sent_at || !links[l].recv_at) {
            st = sl_fail(SL_ENOMEM, "out of memory simulating the schedule");
            goto out;
        }
    }
    const double latency = costs ? costs->latency : 0;
    char t1[40], t2[40], t3[40];
    bool progress = true;
    while (progress) {
        progress = false;
        for (int r = 0; r < D; r++) {
            while (pc[r] < s->count[r]) {
                const sl_action *a = &s->actions[r][pc[r]];
                double start = clock[r], end;
                if (a->type == SL_ACTION_TIED || a->type == SL_ACTION_NORM) {
                    /* The action's messages one by one; it ends once they are all done. */
                    sl_exchange ex[4];
                    int n = sl_action_exchanges(s, r, a, ex);
                    if (n < 0) {
                        st = sl_fail(SL_EINVAL, "rank %d: action %zu (%s) cannot run on this rank",
                                     r, pc[r], fmt(a, t1, sizeof t1));
                        goto out;
                    }
                    if (sub[r] == 0) began[r] = clock[r];
                    bool blocked = false;
                    while (sub[r] < n && !blocked) {
                        const sl_exchange *x = &ex[sub[r]];
                        wire w = {a->type == SL_ACTION_TIED ? WIRE_TIED : WIRE_NORM, -1, x->round};
                        if (a->type == SL_ACTION_TIED)
                            w.stage = x->send ? s->tied_stages[0] + s->tied_stages[1] - a->stage
                                              : a->stage;
                        double t = clock[r];
                        if (x->send) {
                            link *L = &links[r * D + x->peer];
                            if (L->sent - L->recvd >= (size_t)depth) {
                                blocked = true;
                                break;
                            }
                            if (L->sent >= (size_t)depth)
                                t = SL_MAX(t, L->recv_at[L->sent - depth]);
                            L->m[L->sent] = w;
                            L->sent_at[L->sent++] = t;
                        } else {
                            link *L = &links[x->peer * D + r];
                            if (L->recvd == L->sent) {
                                blocked = true;
                                break;
                            }
                            const wire *got = &L->m[L->recvd];
                            if (got->kind != w.kind || got->stage != w.stage || got->mb != w.mb) {
                                st = sl_fail(SL_EINVAL,
                                             "rank %d: action %zu (%s) expects %s from rank %d, "
                                             "but the next message on link r%d->r%d is %s: the "
                                             "two ends send and receive in different orders",
                                             r, pc[r], fmt(a, t1, sizeof t1),
                                             wire_text(&w, t2, sizeof t2), x->peer, x->peer, r,
                                             wire_text(got, t3, sizeof t3));
                                goto out;
                            }
                            t = SL_MAX(t, L->sent_at[L->recvd] + latency);
                            L->recv_at[L->recvd++] = t;
                        }
                        clock[r] = t;
                        sub[r]++;
                        progress = true;
                    }
                    if (blocked) break;
                    start = began[r];
                    end = clock[r] + (costs ? cost_of(s, costs, a) : 0);
                    sub[r] = 0;
                } else if (a->peer < -1 || a->peer >= D) {
                    st = sl_fail(SL_EINVAL,
                                 "rank %d: action %zu (%s) names rank %d, outside "
                                 "0..%d",
                                 r, pc[r], fmt(a, t1, sizeof t1), a->peer, D - 1);
                    goto out;
                } else if (a->type == SL_ACTION_SEND_F || a->type == SL_ACTION_SEND_B) {
                    link *L = &links[r * D + a->peer];
                    if (L->sent - L->recvd >= (size_t)depth) break;
                    if (L->sent >= (size_t)depth)
                        start = SL_MAX(start, L->recv_at[L->sent - depth]);
                    bool fw = a->type == SL_ACTION_SEND_F;
                    L->m[L->sent] = (wire){fw ? 0 : 1, fw ? a->stage + 1 : a->stage - 1, a->mb};
                    L->sent_at[L->sent++] = start;
                    end = start;
                } else if (a->type == SL_ACTION_RECV_F || a->type == SL_ACTION_RECV_B) {
                    link *L = &links[a->peer * D + r];
                    if (L->recvd == L->sent) break;
                    wire want = {a->type == SL_ACTION_RECV_F ? 0 : 1, a->stage, a->mb};
                    const wire *got = &L->m[L->recvd];
                    if (got->kind != want.kind || got->stage != want.stage || got->mb != want.mb) {
                        st = sl_fail(SL_EINVAL,
                                     "rank %d: action %zu (%s) expects %s from rank "
                                     "%d, but the next message on link r%d->r%d is %s: the two "
                                     "ends send and receive in different orders",
                                     r, pc[r], fmt(a, t1, sizeof t1),
                                     wire_text(&want, t2, sizeof t2), a->peer, a->peer, r,
                                     wire_text(got, t3, sizeof t3));
                        goto out;
                    }
                    start = SL_MAX(start, L->sent_at[L->recvd] + latency);
                    L->recv_at[L->recvd++] = start;
                    end = start;
                } else {
                    end = start + (costs ? cost_of(s, costs, a) : 0);
                }
                if (sim) {
                    sim->start[r][pc[r]] = start;
                    sim->end[r][pc[r]] = end;
                }
                clock[r] = end;
                pc[r]++;
                progress = true;
            }
        }
    }
    /* Anything left is blocked for good: say who waits for what. */
    char why[2048];
    size_t len = 0;
    for (int r = 0; r < D && len < sizeof why - 1; r++) {
        if (pc[r] == s->count[r]) continue;
        const sl_action *a = &s->actions[r][pc[r]];
        int n;
        sl_exchange ex[4];
        int nex = sl_action_exchanges(s, r, a, ex);
        if ((a->type == SL_ACTION_TIED || a->type == SL_ACTION_NORM) && sub[r] < nex) {
            const sl_exchange *x = &ex[sub[r]];
            wire w = {a->type == SL_ACTION_TIED ? WIRE_TIED : WIRE_NORM, a->stage, x->round};
            if (x->send)
                n = snprintf(why + len, sizeof why - len,
                             "%srank %d is blocked on action %zu (%s), waiting for rank %d to "
                             "receive (the link holds %d messages)",
                             len ? "; " : "", r, pc[r], fmt(a, t1, sizeof t1), x->peer, depth);
            else
                n = snprintf(why + len, sizeof why - len,
                             "%srank %d is blocked on action %zu (%s), waiting for rank %d to "
                             "send %s",
                             len ? "; " : "", r, pc[r], fmt(a, t1, sizeof t1), x->peer,
                             wire_text(&w, t2, sizeof t2));
        } else if (a->type == SL_ACTION_RECV_F || a->type == SL_ACTION_RECV_B) {
            wire want = {a->type == SL_ACTION_RECV_F ? 0 : 1, a->stage, a->mb};
            n = snprintf(why + len, sizeof why - len,
                         "%srank %d is blocked on action %zu (%s), "
                         "waiting for rank %d to send %s",
                         len ? "; " : "", r, pc[r], fmt(a, t1, sizeof t1), a->peer,
                         wire_text(&want, t2, sizeof t2));
        } else {
            n = snprintf(why + len, sizeof why - len,
                         "%srank %d is blocked on action %zu (%s), "
                         "waiting for rank %d to receive (the link holds %d messages)",
                         len ? "; " : "", r, pc[r], fmt(a, t1, sizeof t1), a->peer, depth);
        }
        len = n > 0 ? SL_MIN(len + (size_t)n, sizeof why - 1) : len;
    }
    if (len) {
        st = sl_fail(SL_EDEADLOCK, "the schedule cannot complete with queue depth %d: %s", depth,
                     why);
        goto out;
    }
    for (int l = 0; l < D * D; l++)
        if (links[l].recvd != links[l].sent) {
            wire *w = &links[l].m[links[l].recvd];
            st = sl_fail(SL_EINVAL, "rank %d sends %s to rank %d, which never receives it", l / D,
                         wire_text(w, t1, sizeof t1), l % D);
            goto out;
        }
out:
    if (links)
        for (int l = 0; l < D * D; l++) {
            free(links[l].m);
            free(links[l].sent_at);
            free(links[l].recv_at);
        }
    free(links);
    free(pc);
    free(sub);
    free(clock);
    free(began);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Timed simulation */

void sl_schedule_sim_free(sl_schedule_sim *sim)
{
    if (!sim) return;
    if (sim->start)
        for (int r = 0; r < sim->ranks; r++) free(sim->start[r]);
    if (sim->end)
        for (int r = 0; r < sim->ranks; r++) free(sim->end[r]);
    free(sim->start);
    free(sim->end);
    free(sim->busy);
    free(sim->idle);
    free(sim->peak_activations);
    free(sim->peak_pending_w);
    memset(sim, 0, sizeof *sim);
}

static int check_cost(const char *what, double v, int stage)
{
    if (v > 0 && v < 1e12) return SL_OK;
    if (stage >= 0)
        return sl_fail(SL_EINVAL, "cost %s of stage %d must be a positive number (got %g)", what,
                       stage, v);
    return sl_fail(SL_EINVAL, "cost %s must be a positive number (got %g)", what, v);
}

int sl_schedule_simulate(const sl_schedule *s, const sl_schedule_costs *costs, sl_schedule_sim *out)
{
    if (!s || !out) return sl_fail(SL_EINVAL, "sl_schedule_simulate: null argument");
    memset(out, 0, sizeof *out);
    sl_schedule_costs c = costs ? *costs : (sl_schedule_costs){0};
    if (!c.f) c.f = 1;
    if (!c.b) c.b = 2;
    if (!c.w) c.w = c.b / 2;
    if (!c.tied) c.tied = 0.25;
    if (!c.norm) c.norm = 0.05;
    SL_TRY(check_cost("TIED", c.tied, -1));
    SL_TRY(check_cost("NORM", c.norm, -1));
    SL_TRY(check_cost("F", c.f, -1));
    SL_TRY(check_cost("B", c.b, -1));
    if (c.latency < 0 || c.latency > 1e12)
        return sl_fail(SL_EINVAL, "link latency must be >= 0 (got %g)", c.latency);
    for (int st = 0; st < s->stages; st++) {
        if (c.stage_f) SL_TRY(check_cost("F", c.stage_f[st], st));
        if (c.stage_b) SL_TRY(check_cost("B", c.stage_b[st], st));
        if (s->split_backward) {
            double b = c.stage_b ? c.stage_b[st] : c.b, w = c.stage_w ? c.stage_w[st] : c.w;
            if (!(w > 0 && w < b))
                return sl_fail(SL_EINVAL,
                               "with a split backward the weight-gradient cost W must "
                               "be above 0 and below B, since I = B - W (got B=%g, W=%g%s)",
                               b, w, c.stage_w ? " for a stage" : "");
        }
    }
    int depth = c.queue_depth ? c.queue_depth : SL_SCHEDULE_QUEUE_DEPTH;
    SL_TRY(sl_schedule_validate(s, depth));

    const int D = s->ranks;
    out->ranks = D;
    out->busy = sl_alloc(sizeof(double) * (size_t)D);
    out->idle = sl_alloc(sizeof(double) * (size_t)D);
    out->peak_activations = sl_alloc(sizeof(int) * (size_t)D);
    out->peak_pending_w = sl_alloc(sizeof(int) * (size_t)D);
    out->start = sl_alloc(sizeof(double *) * (size_t)D);
    out->end = sl_alloc(sizeof(double *) * (size_t)D);
    int st = (!out->busy || !out->idle || !out->peak_activations || !out->peak_pending_w ||
              !out->start || !out->end)
                 ? SL_ENOMEM
                 : SL_OK;
    for (int r = 0; r < D && !st; r++) {
        size_t n = s->count[r] ? s->count[r] : 1;
        out->start[r] = sl_alloc(sizeof(double) * n);
        out->end[r] = sl_alloc(sizeof(double) * n);
        if (!out->start[r] || !out->end[r]) st = SL_ENOMEM;
    }
    if (!st) st = sl__schedule_run(s, depth, &c, out);
    if (st) {
        sl_schedule_sim_free(out);
        return st;
    }
    const enum sl_action_type frees = s->split_backward ? SL_ACTION_I : SL_ACTION_B;
    for (int r = 0; r < D; r++) {
        int held = 0, pending = 0;
        for (size_t i = 0; i < s->count[r]; i++) {
            const sl_action *a = &s->actions[r][i];
            if (sl__is_compute(a->type)) out->busy[r] += out->end[r][i] - out->start[r][i];
            if (a->type == SL_ACTION_TIED || a->type == SL_ACTION_NORM)
                out->busy[r] += cost_of(s, &c, a);
            if (a->type == SL_ACTION_F) held++;
            if (a->type == frees) held--;
            if (a->type == SL_ACTION_I) pending++;
            if (a->type == SL_ACTION_W) pending--;
            out->peak_activations[r] = SL_MAX(out->peak_activations[r], held);
            out->peak_pending_w[r] = SL_MAX(out->peak_pending_w[r], pending);
            out->makespan = SL_MAX(out->makespan, out->end[r][i]);
        }
    }
    double idle = 0;
    for (int r = 0; r < D; r++) {
        out->idle[r] = out->makespan - out->busy[r];
        idle += out->idle[r];
    }
    out->bubble_ratio = out->makespan > 0 ? idle / (D * out->makespan) : 0;
    return SL_OK;
}
