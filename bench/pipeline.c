/* `sluice bench pipeline`: the runtime's own overhead per schedule. A model of `delay` layers (each
 * forward sleeps MS, each backward 2·MS, split I = W = MS for zero-bubble) moving activations of a
 * chosen size runs on D ranks; the step time it measures is set against the simulator's makespan
 * for the same schedule with the ideal costs (F = MS, B = 2·MS, no transfer time), and the bubble
 * ratio it measures against the closed formula (the simulator's where there is none). Both come
 * from the run's trace.json, over the steps after the first (which opens devices and links).
 *
 * The layers sleep rather than compute, so D ranks fit on a machine with fewer cores: what is
 * left over the ideal is the runtime (copies, checksums, the links, waking up) and the host. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "core/core.h"
#include "runtime/plan/plan.h"
#include "runtime/safetensors/safetensors.h"
#include "runtime/timeline/timeline.h"
#include "runtime/train/train.h"

#define MAX_SCHEDULES 16

struct options {
    double ms; /* a stage's forward, milliseconds */
    int ranks; /* D */
    int microbatches;
    double mib; /* activation size per micro-batch */
    int steps;  /* timed steps are steps - 1 */
    const char *device;
    char schedules[256];
    int json;
    int socket; /* launch.shared_memory false: payloads over the ipc sockets */
    long cores; /* this host's, which the ranks share */
};

/* What one schedule measured and what it should have. */
struct row {
    char name[24];
    int chunks;
    double ideal_ms, step_ms;      /* simulated ideal makespan, measured step */
    double bubble_formula, bubble; /* predicted and measured bubble ratio */
    double bubble_sim;             /* the simulator's, for the ideal costs */
    double measured_sim_ms;        /* the simulator's makespan for the measured mean costs */
    double f_ms, b_ms, w_ms;       /* measured mean compute per action */
    double link_ms, gap_ms;        /* a step's critical path: waiting on links, between actions */
    const char *formula;           /* where bubble_formula comes from */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice bench pipeline [--ms MS] [--ranks D] [--microbatches M] [--mib S]\n"
            "                             [--steps N] [--schedules LIST] [--device ID] [--socket]\n"
            "                             [--json]\n\n"
            "Trains a model of delay layers (a forward sleeps MS, a backward 2*MS) with each\n"
            "schedule and compares the measured step time with the simulator's ideal makespan\n"
            "and the measured bubble ratio with the formula, in the same run. Where the\n"
            "difference goes: sim(meas.), the simulator's makespan for the measured compute\n"
            "times; links and gaps, a step's critical path waiting on links and between a\n"
            "rank's own actions (as `sluice trace` follows it), both means over the steps.\n\n"
            "  --ms MS            forward time of one stage (default 2)\n"
            "  --ranks D          ranks (default 4)\n"
            "  --microbatches M   micro-batches per step (default 16)\n"
            "  --mib S            activation size per micro-batch in MiB (default 1)\n"
            "  --steps N          steps per schedule; the first is not timed (default 8)\n"
            "  --schedules LIST   comma-separated (default gpipe,1f1b,interleaved,looped-bfs,\n"
            "                     zb-h1,zb-v,dualpipev,chimera; interleaved, looped-bfs, zb-v\n"
            "                     and dualpipev run 2 chunks per rank, chimera 2 replicas)\n"
            "  --device ID        every rank's device (default cpu)\n"
            "  --socket           payloads over the ipc sockets, not shared memory\n"
            "                     (launch.shared_memory false)\n"
            "  --json             one JSON object\n");
}

static int parse_options(int argc, char **argv, struct options *o)
{
    *o = (struct options){
        .ms = 2, .ranks = 4, .microbatches = 16, .mib = 1, .steps = 8, .device = "cpu"};
    o->cores = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(o->schedules, sizeof o->schedules,
             "gpipe,1f1b,interleaved,looped-bfs,zb-h1,zb-v,dualpipev,chimera");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (!strcmp(a, "--socket")) {
            o->socket = 1;
            continue;
        }
        if (!v) goto bad;
        i++;
        if (!strcmp(a, "--ms")) {
            o->ms = strtod(v, &end);
            if (*end || !(o->ms >= 0.01 && o->ms <= 1000)) goto bad;
        } else if (!strcmp(a, "--mib")) {
            o->mib = strtod(v, &end);
            if (*end || !(o->mib > 0 && o->mib <= 64)) goto bad;
        } else if (!strcmp(a, "--ranks") || !strcmp(a, "--microbatches") || !strcmp(a, "--steps")) {
            long n = strtol(v, &end, 10);
            if (*end || n < 2 || n > 256) goto bad;
            *(a[2] == 'r' ? &o->ranks : a[2] == 'm' ? &o->microbatches : &o->steps) = (int)n;
        } else if (!strcmp(a, "--schedules")) {
            if (!*v || strlen(v) >= sizeof o->schedules) goto bad;
            snprintf(o->schedules, sizeof o->schedules, "%s", v);
        } else if (!strcmp(a, "--device")) {
            o->device = v;
        } else {
            goto bad;
        }
        continue;
    bad:
        fprintf(stderr, "sluice bench pipeline: bad argument '%s%s%s' (try --help)\n", a,
                v ? " " : "", v ? v : "");
        return 2;
    }
    return 0;
}

/* x and y F32 [rows, 1] of zeros: the delay model reads one input and gives one output. */
static int write_data(const char *path, int rows)
{
    float *z = calloc((size_t)rows, sizeof *z);
    if (!z) return SL_ENOMEM;
    sl_tensor t[2] = {
        {.name = "x", .dtype = SL_DTYPE_F32, .ndim = 2, .shape = {rows, 1}, .data = z},
        {.name = "y", .dtype = SL_DTYPE_F32, .ndim = 2, .shape = {rows, 1}, .data = z},
    };
    int rc = sl_safetensors_save(path, t, 2, NULL, NULL, 0);
    free(z);
    return rc;
}

/* The config of one schedule's run: one delay layer per model stage (chimera's two replicas share
 * one cut into D), the first widening the one input to the activation width and the last
 * narrowing it to one output. */
static char *config_text(const struct options *o, const char *schedule, int chunks,
                         const char *data, const char *out_dir)
{
    int stages = o->ranks * (strcmp(schedule, "chimera") ? chunks : 1);
    int width = (int)(o->mib * 1024 * 1024 / sizeof(float));
    cJSON *root = cJSON_CreateObject();
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddNumberToObject(model, "inputs", 1);
    cJSON *layers = cJSON_AddArrayToObject(model, "layers");
    for (int s = 0; s < stages; s++) {
        char text[64];
        snprintf(text, sizeof text, "delay:%g:%d", o->ms, s == stages - 1 ? 1 : width);
        cJSON_AddItemToArray(layers, cJSON_CreateString(text));
    }
    cJSON_AddStringToObject(model, "loss", "mse");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "data"), "path", data);
    cJSON *t = cJSON_AddObjectToObject(root, "train");
    cJSON_AddNumberToObject(t, "steps", o->steps);
    cJSON_AddNumberToObject(t, "batch", o->microbatches);
    cJSON_AddNumberToObject(t, "microbatches", o->microbatches);
    cJSON_AddNumberToObject(t, "threads", 1);
    cJSON *opt = cJSON_AddObjectToObject(t, "optimizer");
    cJSON_AddStringToObject(opt, "name", "sgd");
    cJSON_AddNumberToObject(opt, "lr", 0.1);
    cJSON *p = cJSON_AddObjectToObject(root, "pipeline");
    cJSON_AddNumberToObject(p, "stages", o->ranks);
    cJSON_AddStringToObject(p, "schedule", schedule);
    cJSON_AddNumberToObject(p, "chunks", chunks);
    cJSON_AddStringToObject(root, "devices", o->device);
    cJSON_AddBoolToObject(cJSON_AddObjectToObject(root, "launch"), "shared_memory", !o->socket);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "output"), "dir", out_dir);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* The closed-form bubble ratio of a schedule with F = ms, B = 2·ms (W = ms), or NAN. */
static double bubble_formula(const char *name, int D, int M, int v, const char **source)
{
    double F = 1, B = 2, W = 1;
    *source = "formula";
    if (!strcmp(name, "gpipe") || !strcmp(name, "1f1b")) return (D - 1.0) / (M + D - 1.0);
    if (!strcmp(name, "interleaved")) return (D - 1.0) / (v * M + D - 1.0);
    if (!strcmp(name, "zb-h1")) {
        double idle = (D - 1.0) * (F + B - 2 * W);
        return idle / (M * (F + B) + idle);
    }
    *source = "simulator";
    return NAN;
}

/* The timed steps' window, compute time and mean costs from the run's trace, whose events are each
 * rank's actions in order, `count[r]` a step. */
static int measure(const char *out_dir, const sl_plan *plan, int steps, struct row *row,
                   double *stage_f, double *stage_b, double *stage_w)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/trace.json", out_dir);
    char *text;
    size_t len;
    SL_TRY(sl_read_file(path, &text, &len));
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *events = cJSON_GetObjectItem(root, "traceEvents");
    int D = plan->ranks, S = plan->part.nstages;
    double t_a = INFINITY, t_b = -INFINITY, busy = 0;
    double sum[3] = {0}, n[3] = {0};
    double *cost = calloc((size_t)S * 8, sizeof *cost); /* per stage: f, b, i, w sums, counts */
    long *seen = calloc((size_t)D, sizeof *seen);
    int rc = root && cost && seen ? SL_OK : sl_fail(SL_EFORMAT, "%s: not a trace", path);
    const cJSON *ev, *list = rc == SL_OK ? events : NULL;
    cJSON_ArrayForEach(ev, list)
    {
        const char *ph = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "ph"));
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "name"));
        int r = sl_to_int(cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "tid")), -1);
        if (!ph || strcmp(ph, "X") || !name || r < 0 || r >= D) continue;
        size_t count;
        sl_schedule_actions(plan->sched, r, &count);
        long step = seen[r]++ / (long)count;
        if (step < 1) continue; /* the first step opens links and warms the pools */
        double ts = cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "ts"));
        double dur = cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "dur"));
        t_a = SL_MIN(t_a, ts);
        t_b = SL_MAX(t_b, ts + dur);
        sl_action a;
        size_t used;
        if (sl_action_parse(name, &a, &used) != SL_OK) {
            sl_clear_error();
            continue;
        }
        int k = a.type == SL_ACTION_F ? 0 : a.type == SL_ACTION_W ? 2 : 1;
        if (a.type != SL_ACTION_F && a.type != SL_ACTION_B && a.type != SL_ACTION_I &&
            a.type != SL_ACTION_W)
            continue;
        busy += dur;
        sum[k] += dur;
        n[k]++;
        if (a.stage >= 0 && a.stage < S) {
            int kind = a.type == SL_ACTION_I ? 2 : a.type == SL_ACTION_W ? 3 : k;
            cost[a.stage * 8 + kind] += dur;
            cost[a.stage * 8 + 4 + kind]++;
        }
    }
    if (rc == SL_OK) {
        for (int r = 0; r < D && rc == SL_OK; r++) {
            size_t count;
            sl_schedule_actions(plan->sched, r, &count);
            if (seen[r] != (long)count * steps)
                rc = sl_fail(SL_EFORMAT,
                             "%s holds %ld events of rank %d, not %d steps of %zu (raise the "
                             "trace's room or lower --steps)",
                             path, seen[r], r, steps, count);
        }
    }
    if (rc == SL_OK) {
        double span = t_b - t_a;
        row->step_ms = span / 1e3 / (steps - 1);
        row->bubble = 1.0 - busy / (D * span);
        row->f_ms = n[0] ? sum[0] / n[0] / 1e3 : 0;
        row->b_ms = n[1] ? sum[1] / n[1] / 1e3 : 0;
        row->w_ms = n[2] ? sum[2] / n[2] / 1e3 : 0;
        for (int s = 0; s < S; s++) {
            const double *c = cost + s * 8;
            double mean[4];
            for (int j = 0; j < 4; j++) mean[j] = c[4 + j] ? c[j] / c[4 + j] / 1e3 : 0;
            stage_f[s] = mean[0];
            stage_b[s] = sl_schedule_whole_backward(mean[1], mean[2], mean[3]);
            stage_w[s] = mean[3];
        }
    }
    for (int k = 1; k < steps && rc == SL_OK; k++) {
        sl_critical_path cp;
        rc = sl_timeline_critical_path(events, D, k, &cp);
        row->link_ms += cp.link / 1e3 / (steps - 1);
        row->gap_ms += cp.rank / 1e3 / (steps - 1);
    }
    free(cost);
    free(seen);
    cJSON_Delete(root);
    return rc;
}

/* The simulator's makespan and bubble for per-stage costs (NULL arrays: the ideal ones). */
static int simulate(const sl_plan *plan, double ms, const double *f, const double *b,
                    const double *w, double *makespan, double *bubble)
{
    sl_schedule_costs costs = {.f = ms,
                               .b = 2 * ms,
                               .w = ms,
                               .stage_f = f,
                               .stage_b = b,
                               .stage_w = plan->sched->split_backward ? w : NULL,
                               .queue_depth = sl_plan_link_depth(plan)};
    sl_schedule_sim sim;
    SL_TRY(sl_schedule_simulate(plan->sched, &costs, &sim));
    *makespan = sim.makespan;
    *bubble = sim.bubble_ratio;
    sl_schedule_sim_free(&sim);
    return SL_OK;
}

/* The schedules that run 2 chunks (chimera: 2 replicas) per rank here (the others run 1). */
static bool two_chunks(const char *name)
{
    return !strcmp(name, "interleaved") || !strcmp(name, "looped-bfs") || !strcmp(name, "zb-v") ||
           !strcmp(name, "dualpipev") || !strcmp(name, "chimera");
}

static int run_schedule(const struct options *o, const char *tmp, const char *data,
                        const char *name, struct row *row)
{
    memset(row, 0, sizeof *row);
    snprintf(row->name, sizeof row->name, "%s", name);
    row->chunks = two_chunks(name) ? 2 : 1;
    char out_dir[1200];
    snprintf(out_dir, sizeof out_dir, "%s/run-%s", tmp, name);
    char *text = config_text(o, name, row->chunks, data, out_dir);
    if (!text) return SL_ENOMEM;
    sl_config cfg;
    int rc = sl_config_parse(text, tmp, NULL, 0, &cfg);
    free(text);
    SL_TRY(rc);
    sl_plan plan;
    rc = sl_plan_build(&cfg, &plan);
    if (rc != SL_OK) {
        sl_config_free(&cfg);
        return rc;
    }
    int S = plan.part.nstages;
    double *per = calloc((size_t)S * 3, sizeof *per);
    if (!per) rc = SL_ENOMEM;
    if (rc == SL_OK)
        rc = simulate(&plan, o->ms, NULL, NULL, NULL, &row->ideal_ms, &row->bubble_sim);
    row->bubble_formula =
        bubble_formula(name, o->ranks, o->microbatches, row->chunks, &row->formula);
    if (isnan(row->bubble_formula)) row->bubble_formula = row->bubble_sim;
    sl_train_summary sum;
    sl_train_options topt = {.progress = 0};
    if (rc == SL_OK) rc = sl_train(&cfg, &topt, &sum);
    if (rc == SL_OK) rc = measure(out_dir, &plan, o->steps, row, per, per + S, per + 2 * S);
    double unused;
    if (rc == SL_OK)
        rc = simulate(&plan, o->ms, per, per + S, per + 2 * S, &row->measured_sim_ms, &unused);
    free(per);
    sl_plan_free(&plan);
    sl_config_free(&cfg);
    return rc == SL_OK ? SL_OK : sl_fail_context(rc, "bench pipeline: %s", name);
}

static void print_table(const struct options *o, const struct row *rows, int n)
{
    printf(
        "sluice bench pipeline: %d ranks on %ld cores, %d micro-batches, %g MiB activations over "
        "%s, delay %g ms forward / %g ms backward, %d timed steps, device %s\n\n",
        o->ranks, o->cores, o->microbatches, o->mib,
        o->socket ? "the ipc sockets" : "shared memory", o->ms, 2 * o->ms, o->steps - 1, o->device);
    printf("%-12s %6s %9s %9s %7s %9s %9s %7s %8s %8s %8s %11s %8s %8s\n", "schedule", "chunks",
           "ideal", "step", "ratio", "bubble", "measured", "diff", "F", "B|I", "W", "sim(meas.)",
           "links", "gaps");
    for (int i = 0; i < n; i++) {
        const struct row *r = &rows[i];
        printf("%-12s %6d %7.1fms %7.1fms %6.3fx %9.4f %9.4f %+7.4f %6.3fms %6.3fms %6.3fms "
               "%9.1fms %6.1fms %6.1fms\n",
               r->name, r->chunks, r->ideal_ms, r->step_ms, r->step_ms / r->ideal_ms,
               r->bubble_formula, r->bubble, r->bubble - r->bubble_formula, r->f_ms, r->b_ms,
               r->w_ms, r->measured_sim_ms, r->link_ms, r->gap_ms);
    }
    printf("\n(ideal: the simulator's makespan with F = %g ms, B = %g ms (I = W = %g ms), no "
           "transfer time; bubble: the formula (gpipe/1f1b (D-1)/(M+D-1), interleaved "
           "(D-1)/(vM+D-1), zb-h1 (D-1)(F+B-2W) idle per rank) against the measured share of "
           "rank time not in F/B/I/W; sim(meas.): the simulator's makespan for the measured mean "
           "costs per stage; links, gaps: per step, the critical path's waits on links and "
           "between a rank's own actions. Targets: ratio <= 1.05, |diff| <= 0.03.)\n",
           o->ms, 2 * o->ms, o->ms);
    if (o->cores > 0 && o->ranks > o->cores)
        printf("(%d ranks share %ld cores: every pass over the activations, a copy into or out of "
               "a link or a delay layer's own, takes a core from a rank that may be on the "
               "critical path, so the ratios hold the sharing as well as the runtime's overhead; "
               "see bench/pipeline.md.)\n",
               o->ranks, o->cores);
}

static cJSON *to_json(const struct options *o, const struct row *rows, int n)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "name", "pipeline");
    cJSON_AddStringToObject(root, "baseline",
                            "the simulator's ideal makespan of the same schedule (F = ms, "
                            "B = 2 ms, no transfer time)");
    double worst = 0, worst_bubble = 0;
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        const struct row *r = &rows[i];
        double ratio = r->step_ms / r->ideal_ms, diff = r->bubble - r->bubble_formula;
        worst = SL_MAX(worst, ratio);
        worst_bubble = SL_MAX(worst_bubble, fabs(diff));
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "schedule", r->name);
        cJSON_AddNumberToObject(s, "chunks", r->chunks);
        cJSON_AddNumberToObject(s, "ideal_ms", r->ideal_ms);
        cJSON_AddNumberToObject(s, "step_ms", r->step_ms);
        cJSON_AddNumberToObject(s, "ratio", ratio);
        cJSON_AddNumberToObject(s, "bubble_predicted", r->bubble_formula);
        cJSON_AddStringToObject(s, "bubble_predicted_from", r->formula);
        cJSON_AddNumberToObject(s, "bubble_simulated", r->bubble_sim);
        cJSON_AddNumberToObject(s, "bubble_measured", r->bubble);
        cJSON_AddNumberToObject(s, "bubble_diff", diff);
        cJSON_AddNumberToObject(s, "f_ms", r->f_ms);
        cJSON_AddNumberToObject(s, "b_ms", r->b_ms);
        cJSON_AddNumberToObject(s, "w_ms", r->w_ms);
        cJSON_AddNumberToObject(s, "simulated_for_measured_costs_ms", r->measured_sim_ms);
        cJSON_AddNumberToObject(s, "critical_path_link_wait_ms", r->link_ms);
        cJSON_AddNumberToObject(s, "critical_path_rank_gap_ms", r->gap_ms);
        cJSON_AddBoolToObject(s, "met", ratio <= 1.05 && fabs(diff) <= 0.03);
        cJSON_AddItemToArray(arr, s);
    }
    cJSON_AddNumberToObject(root, "ratio", worst);
    cJSON_AddNumberToObject(root, "bubble_diff_max", worst_bubble);
    cJSON_AddBoolToObject(root, "met", worst <= 1.05 && worst_bubble <= 0.03);
    cJSON_AddNumberToObject(root, "ranks", o->ranks);
    cJSON_AddNumberToObject(root, "cores", (double)o->cores);
    cJSON_AddNumberToObject(root, "microbatches", o->microbatches);
    cJSON_AddNumberToObject(root, "mib", o->mib);
    cJSON_AddBoolToObject(root, "shared_memory", !o->socket);
    cJSON_AddNumberToObject(root, "ms", o->ms);
    cJSON_AddNumberToObject(root, "timed_steps", o->steps - 1);
    cJSON_AddStringToObject(root, "device", o->device);
    cJSON_AddItemToObject(root, "schedules", arr);
    return root;
}

int sl_bench_pipeline(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
    struct options o;
    if (parse_options(argc, argv, &o)) return 2;
    char *names[MAX_SCHEDULES];
    int n = 0;
    for (char *save = NULL, *t = strtok_r(o.schedules, ",", &save); t && n < MAX_SCHEDULES;
         t = strtok_r(NULL, ",", &save))
        names[n++] = t;
    char tmp[] = "/tmp/sluice-bench-pipeline-XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("sluice bench pipeline: mkdtemp");
        return 1;
    }
    char data[256];
    snprintf(data, sizeof data, "%s/data.safetensors", tmp);
    struct row rows[MAX_SCHEDULES];
    int rc = write_data(data, 4 * o.microbatches);
    for (int i = 0; i < n && rc == SL_OK; i++) {
        rc = run_schedule(&o, tmp, data, names[i], &rows[i]);
        if (rc == SL_OK && o.json)
            fprintf(stderr, "  %s: step %.1f ms, ideal %.1f ms\n", rows[i].name, rows[i].step_ms,
                    rows[i].ideal_ms);
    }
    if (sl_remove_tree(tmp) != SL_OK)
        fprintf(stderr, "sluice bench pipeline: %s\n", sl_last_error());
    if (rc != SL_OK) {
        fprintf(stderr, "sluice bench pipeline: %s\n", sl_last_error());
        return 1;
    }
    if (o.json)
        sl_bench_print_json(to_json(&o, rows, n));
    else
        print_table(&o, rows, n);
    return 0;
}
