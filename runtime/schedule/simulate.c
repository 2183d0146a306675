/* The timed simulator: the run of every rank with a clock per rank, then what it predicts
 * (makespan, idle time, bubble ratio, memory). */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/schedule/schedule_internal.h"

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
    free(sim->peak_bytes);
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

/* The most bytes rank r holds at once, replaying its list as the executor runs it. */
static double peak_bytes(const sl_schedule *s, const sl_schedule_costs *c, int r)
{
    const double *stash = c->stage_stash_bytes, *in = c->stage_input_bytes;
    double held = 0, peak = 0;
    for (size_t i = 0; i < s->count[r]; i++) {
        const sl_action *a = &s->actions[r][i];
        const int st = a->stage;
        switch (a->type) {
        case SL_ACTION_RECV_F:
            held += in[st];
            break;
        case SL_ACTION_F:
            if (sl__chain_first(s, st)) held += in[st];
            held += stash[st];
            if (!sl__chain_last(s, st) && s->stage_rank[st + 1] == r) held += in[st + 1];
            peak = SL_MAX(peak, held);
            if (s->recompute && !s->forward_only) held -= stash[st];
            break;
        case SL_ACTION_R:
            held += stash[st];
            break;
        case SL_ACTION_B:
        case SL_ACTION_W:
            held -= stash[st] + in[st];
            break;
        default:
            break;
        }
        peak = SL_MAX(peak, held);
    }
    return peak;
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
    out->peak_bytes = sl_alloc(sizeof(double) * (size_t)D);
    out->start = sl_alloc(sizeof(double *) * (size_t)D);
    out->end = sl_alloc(sizeof(double *) * (size_t)D);
    int st = (!out->busy || !out->idle || !out->peak_activations || !out->peak_pending_w ||
              !out->peak_bytes || !out->start || !out->end)
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
    for (int r = 0; r < D; r++) {
        int held = 0, pending = 0;
        for (size_t i = 0; i < s->count[r]; i++) {
            const sl_action *a = &s->actions[r][i];
            if (sl__is_compute(a->type)) out->busy[r] += out->end[r][i] - out->start[r][i];
            if (sl__is_reduction(a->type) || a->type == SL_ACTION_OPT)
                out->busy[r] += sl__cost_of(s, &c, r, a);
            if (a->type == SL_ACTION_F) held++;
            if (a->type == SL_ACTION_B || a->type == SL_ACTION_W) held--; /* W: not I */
            if (a->type == SL_ACTION_I) pending++;
            if (a->type == SL_ACTION_W) pending--;
            out->peak_activations[r] = SL_MAX(out->peak_activations[r], held);
            out->peak_pending_w[r] = SL_MAX(out->peak_pending_w[r], pending);
            out->makespan = SL_MAX(out->makespan, out->end[r][i]);
        }
    }
    out->has_bytes = c.stage_stash_bytes && c.stage_input_bytes;
    for (int r = 0; out->has_bytes && r < D; r++) out->peak_bytes[r] = peak_bytes(s, &c, r);
    double idle = 0;
    for (int r = 0; r < D; r++) {
        out->idle[r] = out->makespan - out->busy[r];
        idle += out->idle[r];
    }
    out->bubble_ratio = out->makespan > 0 ? idle / (D * out->makespan) : 0;
    return SL_OK;
}
