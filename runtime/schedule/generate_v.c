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
