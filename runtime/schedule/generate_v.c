/* Generators with several model stages per rank: looped BFS (the loop placement, chunk by chunk)
 * and the two V schedules, zb-v and dualpipev (rank r holds stages r and 2D-1-r). Their orders
 * are PyTorch pipelining's (ScheduleLoopedBFS, ScheduleZBVZeroBubble, ScheduleDualPipeV), so a
 * schedule written here compares action by action with theirs. */
#include <stdlib.h>

#include "core/core.h"
#include "runtime/schedule/schedule_internal.h"

/* Breadth-first (Lamy-Poirier 2022): every micro-batch through a chunk before the next chunk,
 * forwards chunk 0..v-1, then backwards chunk v-1..0 with the micro-batches in reverse. Rank r
 * holds stages r, r+D, ... as interleaved does; every micro-batch of every chunk is stashed at the
 * turn (v·M), GPipe's memory over v chunks. */
int sl__gen_looped_bfs(sl_schedule *s)
{
    const int D = s->ranks, M = s->microbatches, v = s->chunks;
    for (int r = 0; r < D; r++) {
        for (int c = 0; c < v; c++)
            for (int m = 0; m < M; m++) SL_TRY(sl__add(s, r, SL_ACTION_F, c * D + r, m));
        for (int c = v - 1; c >= 0; c--)
            for (int m = M - 1; m >= 0; m--) SL_TRY(sl__add(s, r, SL_ACTION_B, c * D + r, m));
    }
    return SL_OK;
}

/* Appends (stage, type, mb) unless mb is past the schedule's micro-batches: the V orders below are
 * written for at least 2D-1 micro-batches and drop the rest, as PyTorch's does; what remains is
 * the same order restricted to the real ones, so it stays valid. */
static int add_upto(sl_schedule *s, int r, enum sl_action_type t, int stage, int mb)
{
    return mb < s->microbatches ? sl__add(s, r, t, stage, mb) : SL_OK;
}

/* ZB-V (Qi et al. 2024, section 6): stages in a V, the backward split into I and W. Rank r warms
 * up with 2(D-r)-1 forwards of its first stage, then r pairs of forwards of both, then D-r rounds
 * of its second stage's F, I, W; the steady state runs F, I, W of the first stage then of the
 * second; the cool-down runs the input gradients first and the deferred Ws last. */
int sl__gen_zbv(sl_schedule *s)
{
    const int D = s->ranks, M = s->microbatches, n = SL_MAX(2 * D - 1, M);
    for (int r = 0; r < D; r++) {
        const int c0 = r, c1 = 2 * D - 1 - r;
        int f0 = 0, f1 = 0, b0 = 0, b1 = 0;
        for (int k = 0; k < 2 * (D - r) - 1; k++) SL_TRY(add_upto(s, r, SL_ACTION_F, c0, f0++));
        for (int k = 0; k < r; k++) {
            SL_TRY(add_upto(s, r, SL_ACTION_F, c1, f1++));
            SL_TRY(add_upto(s, r, SL_ACTION_F, c0, f0++));
        }
        for (int k = 0; k < D - r; k++) {
            SL_TRY(add_upto(s, r, SL_ACTION_F, c1, f1++));
            SL_TRY(add_upto(s, r, SL_ACTION_I, c1, b1));
            SL_TRY(add_upto(s, r, SL_ACTION_W, c1, b1++));
        }
        while (f1 < f0 || f0 < n) {
            if (f0 < n) SL_TRY(add_upto(s, r, SL_ACTION_F, c0, f0++));
            SL_TRY(add_upto(s, r, SL_ACTION_I, c0, b0));
            SL_TRY(add_upto(s, r, SL_ACTION_W, c0, b0++));
            SL_TRY(add_upto(s, r, SL_ACTION_F, c1, f1++));
            SL_TRY(add_upto(s, r, SL_ACTION_I, c1, b1));
            SL_TRY(add_upto(s, r, SL_ACTION_W, c1, b1++));
        }
        int w0 = b0, w1 = b1;
        for (int k = 0; k < r; k++) {
            SL_TRY(add_upto(s, r, SL_ACTION_I, c0, b0++));
            SL_TRY(add_upto(s, r, SL_ACTION_I, c1, b1++));
        }
        for (int k = 0; k < D - r; k++) {
            SL_TRY(add_upto(s, r, SL_ACTION_I, c0, b0++));
            SL_TRY(add_upto(s, r, SL_ACTION_W, c0, w0++));
        }
        while (w1 < b1) SL_TRY(add_upto(s, r, SL_ACTION_W, c1, w1++));
        while (w0 < b0) SL_TRY(add_upto(s, r, SL_ACTION_W, c0, w0++));
    }
    return SL_OK;
}

/* DualPipeV's per-rank state: the next micro-batch of F, of the input gradient (I or B) of each
 * of the rank's two stages, and the Ws deferred after an I, oldest first. */
typedef struct dpv {
    sl_schedule *s;
    int r, stage[2];
    int f[2], b[2];
    int *wq; /* pending W as stage*M + mb; a ring of at most 2M */
    int whead, wtail;
} dpv;

static int dpv_f(dpv *d, int c)
{
    return sl__add(d->s, d->r, SL_ACTION_F, d->stage[c], d->f[c]++);
}

/* The input gradient of stage c: a whole B, or an I whose W is deferred. */
static int dpv_b(dpv *d, int c, bool split)
{
    const int mb = d->b[c]++;
    if (!split) return sl__add(d->s, d->r, SL_ACTION_B, d->stage[c], mb);
    d->wq[d->wtail++] = d->stage[c] * d->s->microbatches + mb;
    return sl__add(d->s, d->r, SL_ACTION_I, d->stage[c], mb);
}

static int dpv_w(dpv *d)
{
    if (d->whead == d->wtail) return SL_OK;
    int k = d->wq[d->whead++];
    return sl__add(d->s, d->r, SL_ACTION_W, k / d->s->microbatches, k % d->s->microbatches);
}

/* DualPipeV (DeepSeek-V3's DualPipe cut in half, as in deepseek-ai/DualPipe and PyTorch): the V
 * placement fed from one end, in eight phases per rank: forwards of the first stage, forwards of
 * both, I-W-F of the second, then the main part, where each forward of one stage is paired with a
 * backward of the other (on devices that can, the pair overlaps: F&B; here it runs as F then B),
 * then the pairs run down, and the last backwards split into I and W where Ws fill the tail. */
int sl__gen_dualpipev(sl_schedule *s)
{
    const int D = s->ranks, M = s->microbatches;
    int *wq = malloc(sizeof *wq * (size_t)(2 * M));
    if (!wq) return sl_fail(SL_ENOMEM, "out of memory generating dualpipev");
    int st = SL_OK;
    for (int r = 0; r < D && !st; r++) {
        dpv d = {.s = s, .r = r, .stage = {r, 2 * D - 1 - r}, .wq = wq};
#define RUN(x)                                                                                     \
    do {                                                                                           \
        if ((st = (x))) goto out;                                                                  \
    } while (0)
        for (int k = 0; k < 2 * (D - r - 1); k++) RUN(dpv_f(&d, 0));
        for (int k = 0; k < r + 1; k++) {
            RUN(dpv_f(&d, 0));
            RUN(dpv_f(&d, 1));
        }
        for (int k = 0; k < D - r - 1; k++) {
            RUN(dpv_b(&d, 1, true));
            RUN(dpv_w(&d));
            RUN(dpv_f(&d, 1));
        }
        for (int k = 0; k < M - 2 * D + r + 1; k++) {
            RUN(dpv_f(&d, 0));
            RUN(dpv_b(&d, 1, false));
            RUN(dpv_f(&d, 1));
            RUN(dpv_b(&d, 0, false));
        }
        for (int k = 0; k < D - r - 1; k++) {
            RUN(dpv_b(&d, 1, false));
            RUN(dpv_f(&d, 1));
            RUN(dpv_b(&d, 0, false));
        }
        bool zb = false;
        for (int k = 0; k < r + 1; k++) {
            if (k == (r + 1) / 2 && r % 2 == 1) zb = true;
            RUN(dpv_b(&d, 1, zb));
            if (k == (r + 1) / 2 && r % 2 == 0) zb = true;
            RUN(dpv_b(&d, 0, zb));
        }
        for (int k = 0; k < D - r - 1; k++) {
            RUN(dpv_w(&d));
            RUN(dpv_b(&d, 0, zb));
        }
        while (d.whead < d.wtail) RUN(dpv_w(&d));
#undef RUN
    }
out:
    free(wq);
    return st;
}

/* Chimera (Li and Hoefler 2021): two replicas of the D-stage model in opposite directions over the
 * same ranks, rank r holding model stage r of the down replica (stage r) and model stage D-1-r of
 * the up one (stage 2D-1-r); micro-batches 0..M/2-1 go down, the rest up. Every rank's order is
 * list-scheduled in unit time (F = B = 1, the costs the paper's bubble assumes): whenever a rank
 * is free it runs a ready backward, else the ready forward furthest along its pipeline, so the two
 * pipelines fill each other's bubbles. With D even and M a multiple of D (whole basic units of D
 * micro-batches) every rank idles D-2 units, bubble (D-2)/(D-2+2M), and holds at most D stashes
 * over its two stages; SYNC then sums each stage's two replicas' gradients. */
int sl__gen_chimera(sl_schedule *s)
{
    const int D = s->ranks, M = s->microbatches, S = s->stages;
    long *fdone = malloc(sizeof *fdone * (size_t)S * (size_t)M);
    long *bdone = malloc(sizeof *bdone * (size_t)S * (size_t)M);
    long *free_at = calloc((size_t)D, sizeof *free_at);
    int st = fdone && bdone && free_at ? SL_OK : sl_fail(SL_ENOMEM, "out of memory (chimera)");
    for (size_t i = 0; !st && i < (size_t)S * (size_t)M; i++) fdone[i] = bdone[i] = -1;
    long left = (long)S * M / 2; /* backwards still to run (one per stage of its chain) */
    for (long t = 0; !st && left > 0; t++) {
        if (t > 6L * (S + M) + 16) {
            st = sl_fail(SL_EINTERNAL, "chimera generation did not finish for D=%d M=%d", D, M);
            break;
        }
        for (int r = 0; r < D && !st; r++) {
            if (free_at[r] > t) continue;
            /* Of the rank's two stages' ready actions: a backward before any forward, and among
             * forwards the one further along its pipeline (as 1F1B drains before it fills); the
             * earliest ready, then the older micro-batch, on ties. */
            const int P = S / 2;
            long best = -1, bprio = -1;
            int bst = -1, bm = -1;
            enum sl_action_type bt = SL_ACTION_F;
            for (int pass = 0; pass < 2; pass++)
                for (int k = 0; k < 2; k++) {
                    const int stg = k == 0 ? r : 2 * D - 1 - r, pos = stg % P;
                    for (int m = 0; m < M; m++) {
                        if (!sl__chain_has(s, stg, m)) continue;
                        const size_t i = (size_t)stg * M + m;
                        long ready, prio;
                        if (pass == 0) { /* backward */
                            if (bdone[i] >= 0 || fdone[i] < 0 || fdone[i] > t) continue;
                            ready = fdone[i];
                            if (!sl__chain_last(s, stg)) {
                                long nb = bdone[i + (size_t)M];
                                if (nb < 0 || nb > t) continue;
                                ready = SL_MAX(ready, nb);
                            }
                            prio = P; /* above any forward */
                        } else {      /* forward */
                            if (fdone[i] >= 0) continue;
                            ready = 0;
                            if (!sl__chain_first(s, stg)) {
                                long pf = fdone[i - (size_t)M];
                                if (pf < 0 || pf > t) continue;
                                ready = pf;
                            }
                            prio = pos;
                        }
                        if (bst < 0 || prio > bprio || (prio == bprio && ready < best) ||
                            (prio == bprio && ready == best && m < bm)) {
                            best = ready, bprio = prio, bst = stg, bm = m;
                            bt = pass == 0 ? SL_ACTION_B : SL_ACTION_F;
                        }
                    }
                }
            if (bst < 0) continue;
            const size_t i = (size_t)bst * M + bm;
            if (bt == SL_ACTION_B) {
                bdone[i] = t + 1, free_at[r] = t + 1, left--;
            } else {
                fdone[i] = t + 1, free_at[r] = t + 1;
            }
            st = sl__add(s, r, bt, bst, bm);
        }
    }
    free(fdone);
    free(bdone);
    free(free_at);
    return st;
}
