/* Generators: the compute order of every rank for gpipe, 1f1b, interleaved and zb-h1.
 *
 * Each generator is a pure function of (D, M, v) that appends compute actions to the schedule;
 * recomputation and the communication pass are applied afterwards, the same way for all. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/schedule/schedule_internal.h"

int sl__add(sl_schedule *s, int rank, enum sl_action_type t, int stage, int mb)
{
    sl_action a = {t, stage, mb, -1};
    return sl_schedule_append(s, rank, &a);
}

/* GPipe: all forwards, then all backwards, both in micro-batch order (as PyTorch's ScheduleGPipe).
 * Every rank stashes all M micro-batches at the turn. */
static int gen_gpipe(sl_schedule *s)
{
    for (int r = 0; r < s->ranks; r++) {
        for (int m = 0; m < s->microbatches; m++) SL_TRY(sl__add(s, r, SL_ACTION_F, r, m));
        for (int m = 0; m < s->microbatches; m++) SL_TRY(sl__add(s, r, SL_ACTION_B, r, m));
    }
    return SL_OK;
}

/* 1F1B (PipeDream-flush, DAPPLE): rank r runs D-1-r warm-up forwards, then alternates one forward
 * and one backward, then runs the remaining backwards. It never holds more than D-r stashes. */
static int gen_1f1b(sl_schedule *s)
{
    const int D = s->ranks, M = s->microbatches;
    for (int r = 0; r < D; r++) {
        int warm = SL_MIN(D - 1 - r, M);
        for (int m = 0; m < warm; m++) SL_TRY(sl__add(s, r, SL_ACTION_F, r, m));
        for (int i = 0; i < M - warm; i++) {
            SL_TRY(sl__add(s, r, SL_ACTION_F, r, warm + i));
            SL_TRY(sl__add(s, r, SL_ACTION_B, r, i));
        }
        for (int m = M - warm; m < M; m++) SL_TRY(sl__add(s, r, SL_ACTION_B, r, m));
    }
    return SL_OK;
}

/* Megatron-LM's interleaved 1F1B. Rank r holds chunks c = 0..v-1 (stages c·D + r). Virtual
 * micro-batch k = 0..v·M-1 walks the chunks in groups of D micro-batches: forward k runs chunk
 * (k mod D·v) / D on micro-batch (k / D·v)·D + k mod D; backward k runs the chunks in reverse.
 * Rank r warms up with 2·(D-1-r) + (v-1)·D forwards, then alternates, then cools down. The
 * grouping is why Megatron needs M to be a multiple of D. */
static int gen_interleaved(sl_schedule *s)
{
    const int D = s->ranks, M = s->microbatches, v = s->chunks;
    const int total = M * v, group = D * v;
    for (int r = 0; r < D; r++) {
        int warm = SL_MIN(2 * (D - 1 - r) + (v - 1) * D, total);
#define FWD(k) sl__add(s, r, SL_ACTION_F, (((k) % group) / D) * D + r, ((k) / group) * D + (k) % D)
#define BWD(k)                                                                                     \
    sl__add(s, r, SL_ACTION_B, (v - 1 - ((k) % group) / D) * D + r, ((k) / group) * D + (k) % D)
        for (int k = 0; k < warm; k++) SL_TRY(FWD(k));
        for (int i = 0; i < total - warm; i++) {
            SL_TRY(FWD(warm + i));
            SL_TRY(BWD(i));
        }
        for (int k = total - warm; k < total; k++) SL_TRY(BWD(k));
#undef FWD
#undef BWD
    }
    return SL_OK;
}

/* Zero-bubble H1 (Qi et al. 2024): the backward is split into I (input gradient, on the critical
 * path, sent upstream) and W (weight gradient, needed only by the optimizer step). Rank r runs
 * 1F1B's order with I for B (D-1-r warm-up forwards, then F and I alternating, then the remaining
 * Is), and each W_m right after I_{m+r}: rank r defers r weight gradients, and the deferred ones
 * fill 1F1B's cool-down bubbles. A micro-batch holds memory from F to W (W still needs each
 * layer's input), at most (D-r) + r = D on every rank: 1F1B's peak, rank 0's. Each rank then idles
 * (D-1)(F+I-W) = (D-1)(F+B-2W) when M >= D, a third of 1F1B's (D-1)(F+B) when F = I = W. */
static int gen_zbh1(sl_schedule *s)
{
    const int D = s->ranks, M = s->microbatches;
    for (int r = 0; r < D; r++) {
        int warm = SL_MIN(D - 1 - r, M), nw = 0;
        for (int m = 0; m < warm; m++) SL_TRY(sl__add(s, r, SL_ACTION_F, r, m));
        for (int i = 0; i < M; i++) {
            if (warm + i < M) SL_TRY(sl__add(s, r, SL_ACTION_F, r, warm + i));
            SL_TRY(sl__add(s, r, SL_ACTION_I, r, i));
            if (i - nw >= r) SL_TRY(sl__add(s, r, SL_ACTION_W, r, nw++));
        }
        while (nw < M) SL_TRY(sl__add(s, r, SL_ACTION_W, r, nw++));
    }
    return SL_OK;
}

/* Evaluation (forward only): GPipe's forwards, chunk by chunk. Rank r runs each of its stages in
 * ascending order (c·D + r for c = 0..v-1 in the loop placement; r, then 2D-1-r in the V) for
 * micro-batches 0..M-1; a stage's inputs arrive in the order its predecessor
 * produced them, so every link is read in order and nothing waits on a later chunk. */
static int gen_eval(sl_schedule *s)
{
    for (int r = 0; r < s->ranks; r++)
        for (int st = 0; st < s->stages; st++)
            if (s->stage_rank[st] == r)
                for (int m = 0; m < s->microbatches; m++) SL_TRY(sl__add(s, r, SL_ACTION_F, st, m));
    return SL_OK;
}

static const struct {
    const char *name;
    int (*gen)(sl_schedule *);
    bool split;
    enum sl_placement placement;
} generators[] = {
    {"gpipe", gen_gpipe, false, SL_PLACE_LOOP},
    {"1f1b", gen_1f1b, false, SL_PLACE_LOOP},
    {"interleaved", gen_interleaved, false, SL_PLACE_LOOP},
    {"looped-bfs", sl__gen_looped_bfs, false, SL_PLACE_LOOP},
    {"zb-h1", gen_zbh1, true, SL_PLACE_LOOP},
    {"zb-v", sl__gen_zbv, true, SL_PLACE_V},
    {"dualpipev", sl__gen_dualpipev, true, SL_PLACE_V},
    {"chimera", sl__gen_chimera, false, SL_PLACE_V},
    {"eval", gen_eval, false, SL_PLACE_LOOP},
};

/* Checks the parameters and says what is allowed. */
static int check_params(const sl_schedule_params *p, int *which)
{
    const char *name = p->name ? p->name : "";
    *which = -1;
    for (size_t i = 0; i < SL_ARRAY_LEN(generators); i++)
        if (!strcmp(name, generators[i].name)) *which = (int)i;
    if (*which < 0)
        return sl_fail(SL_EINVAL,
                       "unknown schedule '%s': choose gpipe, 1f1b, interleaved, looped-bfs, "
                       "zb-h1, zb-v, dualpipev or chimera (or eval, forwards only)",
                       name);
    if (p->ranks < 1)
        return sl_fail(SL_EINVAL,
                       "stages must be at least 1 (got %d): it is the number of ranks "
                       "in the pipeline",
                       p->ranks);
    if (p->microbatches < 1)
        return sl_fail(SL_EINVAL, "micro-batches must be at least 1 (got %d)", p->microbatches);
    int v = p->chunks ? p->chunks : 1;
    if (v < 1) return sl_fail(SL_EINVAL, "chunks must be at least 1 (got %d)", p->chunks);
    /* sl_schedule_create checks the size limits. */
    if (!strcmp(name, "eval")) {
        /* forwards only: any number of chunks per rank */
    } else if (!strcmp(name, "interleaved")) {
        if (v < 2)
            return sl_fail(SL_EINVAL,
                           "interleaved needs chunks >= 2 (got %d): it runs several "
                           "model chunks per rank; use 1f1b for one chunk per rank",
                           v);
        if (p->microbatches % p->ranks)
            return sl_fail(SL_EINVAL,
                           "interleaved needs micro-batches to be a multiple of stages "
                           "(got M=%d, D=%d): Megatron's interleaved 1F1B moves micro-batches "
                           "through the chunks in groups of D; try M=%d",
                           p->microbatches, p->ranks, (p->microbatches / p->ranks + 1) * p->ranks);
    } else if (!strcmp(name, "looped-bfs")) {
        /* any chunks: with one it is GPipe with the backwards in reverse */
    } else if (generators[*which].placement == SL_PLACE_V) {
        if (v != 2 && p->chunks != 0)
            return sl_fail(SL_EINVAL,
                           "%s places two model stages per rank in a V (rank r holds stages r and "
                           "2D-1-r): it needs chunks = 2 (got %d)",
                           name, v);
        if (!strcmp(name, "chimera") && p->ranks % 2)
            return sl_fail(SL_EINVAL,
                           "chimera needs an even number of stages (got D=%d): its two "
                           "pipelines cross in the middle, each rank r paired with rank D-1-r",
                           p->ranks);
        if (!strcmp(name, "chimera") && p->ranks > SL_CHIMERA_MAX_RANKS)
            return sl_fail(SL_EINVAL,
                           "chimera runs on at most %d stages (got D=%d): each rank relays the "
                           "gradient sums of the pairs outside it",
                           SL_CHIMERA_MAX_RANKS, p->ranks);
        if (!strcmp(name, "chimera") && p->microbatches % 2)
            return sl_fail(SL_EINVAL,
                           "chimera splits the micro-batches evenly between its two replicas: "
                           "M must be even (got M=%d, D=%d)",
                           p->microbatches, p->ranks);
        if (!strcmp(name, "zb-v") && p->microbatches < 2 * p->ranks - 1)
            return sl_fail(SL_EINVAL,
                           "zb-v needs at least 2 x stages - 1 = %d micro-batches (got M=%d, "
                           "D=%d): rank 0 warms up with that many forwards of its first stage "
                           "before its first backward",
                           2 * p->ranks - 1, p->microbatches, p->ranks);
        if (!strcmp(name, "dualpipev") && p->microbatches < 2 * p->ranks)
            return sl_fail(SL_EINVAL,
                           "dualpipev needs at least as many micro-batches as model stages, 2 x "
                           "stages = %d (got M=%d, D=%d): its main phase pairs every forward "
                           "with a backward only once both ends of the V are full",
                           2 * p->ranks, p->microbatches, p->ranks);
    } else if (v != 1) {
        return sl_fail(SL_EINVAL,
                       "%s runs one chunk per rank (got chunks=%d); use interleaved or looped-bfs "
                       "for several chunks per rank",
                       name, v);
    }
    return SL_OK;
}

/* Puts R(stage, mb) right before each B (or I) of the same stage and micro-batch. The
 * communication pass then places the RECV of the gradient between R and B, so the recompute
 * overlaps the wait for the gradient. */
static int insert_recompute(sl_schedule *s)
{
    for (int r = 0; r < s->ranks; r++) {
        size_t n = s->count[r];
        sl_action *old = s->actions[r];
        s->actions[r] = NULL;
        s->count[r] = s->cap[r] = 0;
        int st = SL_OK;
        for (size_t i = 0; i < n && !st; i++) {
            if (old[i].type == SL_ACTION_B || old[i].type == SL_ACTION_I)
                st = sl__add(s, r, SL_ACTION_R, old[i].stage, old[i].mb);
            if (!st) st = sl_schedule_append(s, r, &old[i]);
        }
        free(old);
        SL_TRY(st);
    }
    return SL_OK;
}

int sl_schedule_generate(const sl_schedule_params *p, sl_schedule **out)
{
    if (!p || !out) return sl_fail(SL_EINVAL, "sl_schedule_generate: null argument");
    *out = NULL;
    int which;
    SL_TRY(check_params(p, &which));
    sl_schedule *s;
    sl_schedule_params q = *p;
    if (!strcmp(generators[which].name, "eval")) q.forward_only = true, q.recompute = false;
    /* The evaluation runs on the training schedule's placement. */
    if (strcmp(generators[which].name, "eval")) q.placement = generators[which].placement;
    if (q.placement == SL_PLACE_V) q.chunks = 2;
    if (q.forward_only && strcmp(generators[which].name, "eval"))
        return sl_fail(SL_EINVAL, "a forward-only schedule is generated by \"eval\", not \"%s\"",
                       generators[which].name);
    SL_TRY(sl_schedule_create(&q, generators[which].split, &s));
    if (!strcmp(generators[which].name, "chimera")) s->chains = 2;
    int st = generators[which].gen(s);
    if (!st && q.recompute) st = insert_recompute(s);
    if (!st) st = sl_schedule_insert_comms(s);
    if (st) {
        sl_schedule_free(s);
        return st;
    }
    *out = s;
    return SL_OK;
}
