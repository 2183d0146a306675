/* Predictions from profiles, and the "time" partition's balancer (see plan.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "runtime/launch/launch.h"
#include "runtime/plan/plan.h"

int sl_plan_profiles(const sl_plan *p, bool refresh, sl_profile **out, char *note, size_t cap)
{
    sl_profile *pr = sl_alloc(sizeof *pr * (size_t)p->ranks);
    if (!pr) return SL_ENOMEM;
    if (cap) note[0] = '\0';
    int rc = SL_OK;
    for (int r = 0; r < p->ranks && rc == SL_OK; r++) {
        /* One measurement per device: a rank on a device already profiled shares it. */
        int same = -1;
        for (int q = 0; q < r && same < 0; q++)
            if (!strcmp(p->rank[q].device, p->rank[r].device)) same = q;
        if (same >= 0) {
            pr[r] = pr[same];
            continue;
        }
        char line[512];
        rc = sl_profile_get(&p->model, &p->cfg, p->rows, p->rank[r].device, refresh, &pr[r], line,
                            sizeof line);
        size_t used = strlen(note);
        if (rc == SL_OK && line[0] && cap > used)
            snprintf(note + used, cap - used, "%s%s", used ? "\n" : "", line);
    }
    if (rc != SL_OK) {
        sl_plan_profiles_free(p, pr);
        return rc;
    }
    *out = pr;
    return SL_OK;
}

void sl_plan_profiles_free(const sl_plan *p, sl_profile *profiles)
{
    if (!profiles) return;
    /* From the last: a rank that shares an earlier rank's profile is seen before that one is
     * freed (and zeroed). */
    for (int r = p->ranks - 1; r >= 0; r--) {
        bool shared = false;
        for (int q = 0; q < r && !shared; q++) shared = profiles[q].f == profiles[r].f;
        if (!shared) sl_profile_free(&profiles[r]);
    }
    free(profiles);
}

void sl_plan_prediction_free(sl_plan_prediction *pr)
{
    if (!pr) return;
    free(pr->f);
    free(pr->threads);
    memset(pr, 0, sizeof *pr);
}

/* Optimizer state tensors per parameter: SGD's momentum, Adam's two moments. */
static int optimizer_states(const sl_config *cfg)
{
    const sl_optimizer_config *o = &cfg->train.optimizer;
    if (o->kind == SL_OPT_SGD) return o->momentum > 0 ? 1 : 0;
    return 2;
}

/* Per stage F/I/W from the profile of its rank's device (the loss with the last stage's F), and
 * per rank the OPT of the units it holds. */
static void stage_costs(const sl_plan *p, const sl_profile *profiles, const sl_stage_range *st,
                        const int *first, int units, double *f, double *i, double *w, double *opt)
{
    int S = p->part.nstages;
    for (int r = 0; r < p->ranks; r++) opt[r] = 0;
    for (int s = 0; s < S; s++) {
        int r = sl_partition_rank(&p->part, s);
        const sl_profile *pf = &profiles[r];
        f[s] = i[s] = w[s] = 0;
        for (int u = 0; u < units; u++)
            if (first[u] >= st[s].first && first[u] < st[s].last) {
                f[s] += pf->f[u];
                i[s] += pf->i[u];
                w[s] += pf->w[u];
                opt[r] += pf->opt[u];
            }
        if (sl_partition_is_last(&p->part, s)) f[s] += pf->loss_ms;
    }
}

/* The host's cores when the ranks on its CPU devices would compute on more threads than it has
 * (0 otherwise: each rank as fast as its profile), with threads[r] each rank's (0: not on the
 * host's CPU). In a local run (no launcher, no launch.endpoints) the cpu backend computes with
 * train.threads (all cores for the library's default), and an OpenCL or Vulkan CPU device (PoCL,
 * lavapipe) with one thread per compute unit, as each was profiled alone; p->host_cores, when
 * set, stands for the host's count. A model of delay layers sleeps instead of computing: its
 * ranks share nothing. */
static int shared_cores(const sl_plan *p, int *threads)
{
    for (int r = 0; r < p->ranks; r++) threads[r] = 0;
    sl_launch_info li;
    if (p->host_cores < 0 || p->cfg.launch.nendpoints > 0 || sl_launch_detect(&li) != SL_OK ||
        li.launcher != SL_LAUNCHER_NONE) {
        sl_clear_error();
        return 0;
    }
    bool computes = false;
    for (int l = 0; l < p->model.nlayers; l++)
        computes |= strcmp(p->model.layers[l].kind->name, "delay") != 0;
    const sl_device_info *infos;
    size_t count;
    if (!computes || sl_device_list(&infos, &count) != SL_OK) {
        sl_clear_error();
        return 0;
    }
    long online = p->host_cores > 0 ? p->host_cores : sysconf(_SC_NPROCESSORS_ONLN);
    online = SL_MAX(online, 1);
    long demand = 0;
    for (int r = 0; r < p->ranks; r++) {
        for (size_t k = 0; k < count; k++) {
            const sl_device_info *d = &infos[k];
            if (strcmp(d->id, p->rank[r].device) || d->kind != SL_DEVICE_CPU) continue;
            if (!strcmp(d->backend, "cpu"))
                threads[r] = p->cfg.train.threads > 0 ? p->cfg.train.threads : (int)online;
            else
                threads[r] = d->compute_units > 0 ? (int)d->compute_units : (int)online;
            /* more threads than cores were already slowed so in the profile */
            threads[r] = (int)SL_MIN(threads[r], online);
        }
        demand += threads[r];
    }
    return demand > online ? (int)online : 0;
}

/* The simulator's makespan and bubble for per-stage costs (latency: the costliest link; `cores`
 * shared by the ranks with threads[r] > 0, as shared_cores says, 0: none shared), and with the
 * stages' stash and input bytes its replay of the bytes each rank holds (peak[ranks], NULL: not
 * wanted). */
static int simulate(const sl_plan *p, const sl_stage_range *st, const double *f, const double *i,
                    const double *w, const double *rank_opt, double latency, int cores,
                    const int *threads, double *makespan, double *bubble, double *peak)
{
    int S = p->part.nstages;
    double *ff = sl_alloc(sizeof(double) * 5 * (size_t)S);
    if (!ff) return SL_ENOMEM;
    double *b = ff + S, *ww = b + S, *stash = ww + S, *input = stash + S;
    for (int s = 0; s < S; s++) {
        stash[s] = (double)sl_plan_range_stash_bytes(p, &st[s]);
        input[s] = (double)sl_plan_range_input_bytes(p, &st[s]);
    }
    bool split = p->sched->split_backward;
    /* The simulator wants positive costs and W inside (0, B): a stage that costs nothing (no
     * weight gradient, say) still gets a sliver. */
    for (int s = 0; s < S; s++) {
        ff[s] = fmax(f[s], 1e-6);
        b[s] = fmax(i[s] + w[s], 1e-6);
        ww[s] = fmin(fmax(w[s], b[s] * 1e-3), b[s] * (1 - 1e-3));
    }
    sl_schedule_costs costs = {.cores = cores,
                               .rank_threads = threads,
                               .stage_f = ff,
                               .stage_b = b,
                               .stage_w = split ? ww : NULL,
                               .rank_opt = rank_opt,
                               .latency = latency,
                               .queue_depth = sl_plan_link_depth(p),
                               .stage_stash_bytes = stash,
                               .stage_input_bytes = input};
    sl_schedule_sim sim;
    int rc = sl_schedule_simulate(p->sched, &costs, &sim);
    if (rc == SL_OK) {
        *makespan = sim.makespan;
        *bubble = sim.bubble_ratio;
        for (int r = 0; peak && r < p->ranks; r++) peak[r] = sim.peak_bytes[r];
        sl_schedule_sim_free(&sim);
    }
    free(ff);
    return rc;
}

static double device_memory(const char *id)
{
    const sl_device_info *infos;
    size_t count;
    if (sl_device_list(&infos, &count) != SL_OK) {
        sl_clear_error();
        return 0;
    }
    for (size_t k = 0; k < count; k++)
        if (!strcmp(infos[k].id, id)) return (double)infos[k].memory_bytes;
    return 0;
}

/* Bytes of parameters, gradients and optimizer state that rank r holds with stages `st`. */
static double state_bytes(const sl_plan *p, const sl_stage_range *st, int r)
{
    double params = 0;
    for (int s = 0; s < p->part.nstages; s++)
        if (sl_partition_rank(&p->part, s) == r)
            params += (double)sl_model_params(&p->model, st[s].first, st[s].last);
    return params * 4.0 * (2 + optimizer_states(&p->cfg));
}

/* Adds to each rank's replay of stashes and stage inputs in peak[r] the rest of what it holds:
 * parameters, gradients and optimizer state, an output gradient per stage and the backward's two
 * scratch buffers. */
static void add_state_bytes(const sl_plan *p, const sl_stage_range *st, double *peak)
{
    const sl_model *m = &p->model;
    for (int r = 0; r < p->ranks; r++) {
        double widest = 0, douts = 0;
        for (int s = 0; s < p->part.nstages; s++) {
            if (sl_partition_rank(&p->part, s) != r) continue;
            douts += (double)(p->rows * (size_t)sl_model_width(m, st[s].last) * 4);
            for (int l = st[s].first; l < st[s].last; l++)
                widest = fmax(widest, (double)m->layers[l].out);
        }
        peak[r] += state_bytes(p, st, r) + douts + 2.0 * (double)p->rows * widest * 4;
    }
}

/* Bytes for a person: "1.5 GiB". */
static const char *bytes_text(double b, char *buf, size_t cap)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int k = 0;
    while (b >= 1024 && k < 4) b /= 1024, k++;
    snprintf(buf, cap, "%.1f %s", b, unit[k]);
    return buf;
}

/* SL_ECONFIG when a rank's predicted peak (with stages `st`) does not fit its device's memory
 * (`what` names the plan), saying what it holds. */
static int check_fits(const sl_plan *p, const sl_stage_range *st, const char *what,
                      const double *peak)
{
    for (int r = 0; r < p->ranks; r++) {
        double has = device_memory(p->rank[r].device);
        if (!(has > 0 && peak[r] > has)) continue;
        char a[32], b[32], c[32];
        return sl_fail(SL_ECONFIG,
                       "%s: rank %d would hold about %s on %s (%s of it parameters, gradients and "
                       "optimizer state), which has %s: use more stages, fewer rows per "
                       "micro-batch or a device with more memory",
                       what, r, bytes_text(peak[r], a, sizeof a), p->rank[r].device,
                       bytes_text(state_bytes(p, st, r), b, sizeof b),
                       bytes_text(has, c, sizeof c));
    }
    return SL_OK;
}

int sl_plan_check_memory(const sl_plan *p)
{
    int S = p->part.nstages, R = p->ranks;
    double *ones = sl_alloc(sizeof(double) * (size_t)(S + R));
    if (!ones) return SL_ENOMEM;
    double *peak = ones + S, makespan, bubble;
    for (int s = 0; s < S; s++) ones[s] = 1;
    /* The bytes a rank holds follow its own list, whatever the timing: no cores shared here. */
    int rc =
        simulate(p, p->part.stages, ones, ones, ones, NULL, 0, 0, NULL, &makespan, &bubble, peak);
    if (rc == SL_OK) {
        add_state_bytes(p, p->part.stages, peak);
        rc = check_fits(p, p->part.stages, "the plan's predicted memory", peak);
    }
    free(ones);
    return rc;
}

int sl_plan_predict(const sl_plan *p, const sl_profile *profiles, const sl_stage_range *stages,
                    sl_plan_prediction *out)
{
    memset(out, 0, sizeof *out);
    const sl_model *m = &p->model;
    const sl_stage_range *st = stages ? stages : p->part.stages;
    int S = p->part.nstages, R = p->ranks;
    out->nstages = S;
    out->ranks = R;
    int units = sl_partition_units(m, NULL);
    int *first = sl_alloc(sizeof(int) * (size_t)(units + 1));
    out->f = sl_alloc(sizeof(double) * (5 * (size_t)S + 3 * (size_t)R));
    out->threads = sl_alloc(sizeof(int) * (size_t)R);
    if (!first || !out->f || !out->threads) {
        free(first);
        sl_plan_prediction_free(out);
        return SL_ENOMEM;
    }
    out->i = out->f + S;
    out->w = out->i + S;
    out->send_bytes = out->w + S;
    out->params = out->send_bytes + S;
    out->peak_bytes = out->params + S;
    out->memory_bytes = out->peak_bytes + R;
    out->opt = out->memory_bytes + R;
    sl_partition_units(m, first);
    stage_costs(p, profiles, st, first, units, out->f, out->i, out->w, out->opt);
    out->cores = shared_cores(p, out->threads);
    double latency = 0;
    for (int s = 0; s < S; s++) {
        bool last = sl_partition_is_last(&p->part, s);
        out->send_bytes[s] =
            last ? 0 : (double)(p->rows * (size_t)sl_model_width(m, st[s].last) * 4);
        out->params[s] = (double)sl_model_params(m, st[s].first, st[s].last);
        if (!last && sl_partition_rank(&p->part, s) != sl_partition_rank(&p->part, s + 1))
            for (int u = 0; u < units; u++)
                if (first[u + 1] == st[s].last)
                    latency = fmax(latency, profiles[sl_partition_rank(&p->part, s)].link[u]);
    }
    /* The simulator's replay of the stashes and stage inputs each rank holds, written into
     * peak_bytes, then the rest added. */
    int rc = simulate(p, st, out->f, out->i, out->w, out->opt, latency, out->cores, out->threads,
                      &out->step_ms, &out->bubble, out->peak_bytes);
    if (rc == SL_OK) add_state_bytes(p, st, out->peak_bytes);
    for (int r = 0; rc == SL_OK && r < R; r++)
        out->memory_bytes[r] = device_memory(p->rank[r].device);
    free(first);
    if (rc != SL_OK) sl_plan_prediction_free(out);
    return rc;
}

/* The stages of `counts` units per stage. */
static int ranges_of(const sl_plan *p, const int *counts, sl_stage_range *st)
{
    return sl_partition_cut(&p->model, &p->part, counts, st);
}

static int predict_counts(const sl_plan *p, const sl_profile *profiles, const int *counts,
                          sl_stage_range *st, sl_plan_prediction *pr)
{
    SL_TRY(ranges_of(p, counts, st));
    return sl_plan_predict(p, profiles, st, pr);
}

/* Whether `units` units have at most `cap` cuts into `stages` stages: C(n, k) with n = units - 1,
 * k = stages - 1, built up as C(n - k + j, j) for j = 1..min(k, n - k), which only grows. */
static bool cuts_at_most(int units, int stages, double cap)
{
    int n = units - 1, k = SL_MIN(stages - 1, units - stages);
    double c = 1;
    for (int j = 1; j <= k; j++) {
        c = c * (n - k + j) / j;
        if (c > cap) return false;
    }
    return true;
}

/* The search's state: the best cut so far that fits every device, and the prediction's scratch. */
typedef struct cut_search {
    const sl_plan *p;
    const sl_profile *profiles;
    int C;
    sl_stage_range *st;
    double best; /* its predicted step (ms), INFINITY before any fits */
    int *best_counts;
} cut_search;

/* The predicted step of `counts` into *step; INFINITY when it does not fit a device's memory.
 * The best so far is kept. */
static int try_cut(cut_search *cs, const int *counts, double *step)
{
    sl_plan_prediction pr;
    SL_TRY(predict_counts(cs->p, cs->profiles, counts, cs->st, &pr));
    bool fits = check_fits(cs->p, cs->st, "", pr.peak_bytes) == SL_OK;
    sl_clear_error();
    *step = fits ? pr.step_ms : INFINITY;
    sl_plan_prediction_free(&pr);
    if (*step < cs->best * (1 - 1e-9)) {
        cs->best = *step;
        memcpy(cs->best_counts, counts, sizeof(int) * (size_t)cs->C);
    }
    return SL_OK;
}

/* Every cut, the first stages taking from one unit up (counts[s..C) still to choose). */
static int try_every_cut(cut_search *cs, int *counts, int s, int left)
{
    if (s == cs->C - 1) {
        counts[s] = left;
        double step;
        return try_cut(cs, counts, &step);
    }
    for (counts[s] = 1; counts[s] <= left - (cs->C - 1 - s); counts[s]++)
        SL_TRY(try_every_cut(cs, counts, s + 1, left - counts[s]));
    return SL_OK;
}

/* From `counts`, single units across one boundary at a time while the simulated step falls: the
 * schedule's own order decides what a stage's extra time costs (the first and last stages of
 * 1F1B wait differently), which the largest stage alone does not say. */
static int descend(cut_search *cs, int *counts, int units)
{
    double here;
    SL_TRY(try_cut(cs, counts, &here));
    for (int round = 0; round < 4 * units; round++) {
        bool moved = false;
        for (int b = 0; b + 1 < cs->C; b++)
            for (int d = -1; d <= 1; d += 2) {
                if (counts[b] + d < 1 || counts[b + 1] - d < 1) continue;
                counts[b] += d;
                counts[b + 1] -= d;
                double t;
                SL_TRY(try_cut(cs, counts, &t));
                if (t < here * (1 - 1e-9)) {
                    here = t;
                    moved = true;
                } else {
                    counts[b] -= d;
                    counts[b + 1] += d;
                }
            }
        if (!moved) break;
    }
    return SL_OK;
}

/* Up to this many cuts the balancer simulates them all (a 24-unit model on 4 stages has 1771), as
 * long as they come to at most SL__PLAN_SIM_ACTIONS simulated actions (about a second here: 16
 * ranks with 64 micro-batches simulate some 4500 actions a cut). */
#define SL__PLAN_EVERY_CUT   4096
#define SL__PLAN_SIM_ACTIONS 2e6

int sl_plan_balance_time(const sl_plan *p, const sl_profile *profiles, int *counts)
{
    const sl_model *m = &p->model;
    /* One cut of a chain's C stages (chimera's replicas share it: a stage costs what it costs on
     * the slower of the two ranks that run it). */
    int S = p->part.nstages, C = sl_partition_chain_stages(&p->part);
    int units = sl_partition_units(m, NULL);
    double *cost = sl_alloc(sizeof(double) * (size_t)units * (size_t)C);
    int *work = sl_alloc(sizeof(int) * 2 * (size_t)C);
    cut_search cs = {.p = p,
                     .profiles = profiles,
                     .C = C,
                     .st = sl_alloc(sizeof(sl_stage_range) * (size_t)S),
                     .best = INFINITY,
                     .best_counts = work ? work + C : NULL};
    int rc = cost && work && cs.st ? SL_OK : SL_ENOMEM;
    for (int s = 0; rc == SL_OK && s < S; s++) {
        const sl_profile *pf = &profiles[sl_partition_rank(&p->part, s)];
        for (int u = 0; u < units; u++) {
            double *c = &cost[(size_t)(s % C) * (size_t)units + (size_t)u];
            *c = fmax(s < C ? 0 : *c,
                      pf->f[u] + pf->i[u] + pf->w[u] + (u == units - 1 ? pf->loss_ms : 0));
        }
    }
    /* The cut whose costliest stage costs least (it refuses more stages than units). */
    if (rc == SL_OK) rc = sl_partition_balance(units, C, cost, counts);
    size_t actions = 0;
    for (int r = 0; r < p->ranks; r++) {
        size_t n;
        sl_schedule_actions(p->sched, r, &n);
        actions += n;
    }
    double every = fmin(SL__PLAN_EVERY_CUT, SL__PLAN_SIM_ACTIONS / (double)SL_MAX(actions, 1));
    if (rc == SL_OK && cuts_at_most(units, C, every)) {
        /* Few enough cuts to simulate them all; the min-max cut first, so that it stays unless
         * another is faster. */
        double step;
        rc = try_cut(&cs, counts, &step);
        if (rc == SL_OK) rc = try_every_cut(&cs, work, 0, units);
    } else if (rc == SL_OK) {
        /* Else a descent from that cut and one from the uniform cut, keeping the better: a
         * descent can stop short of a cut the other finds. */
        memcpy(work, counts, sizeof(int) * (size_t)C);
        rc = descend(&cs, work, units);
        for (int s = 0; rc == SL_OK && s < C; s++) work[s] = units / C + (s < units % C);
        if (rc == SL_OK) rc = descend(&cs, work, units);
    }
    if (rc == SL_OK && cs.best < INFINITY) {
        memcpy(counts, cs.best_counts, sizeof(int) * (size_t)C);
    } else if (rc == SL_OK) {
        /* No cut fits a device: refused, saying what the min-max cut's ranks would hold. */
        sl_plan_prediction pr;
        rc = predict_counts(p, profiles, counts, cs.st, &pr);
        if (rc == SL_OK) {
            rc = check_fits(p, cs.st, "partition \"time\"", pr.peak_bytes);
            sl_plan_prediction_free(&pr);
        }
        if (rc == SL_OK) rc = sl_fail(SL_EINTERNAL, "partition \"time\": no cut was tried");
    }
    free(cost);
    free(work);
    free(cs.st);
    return rc;
}
