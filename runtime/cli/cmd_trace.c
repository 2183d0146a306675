/* `sluice trace RUN_DIR|trace.json`: what each rank spent its time on, from a run's trace. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <math.h>

#include "core/core.h"
#include "runtime/cli/cli.h"
#include "runtime/schedule/schedule.h"
#include "runtime/timeline/timeline.h"

#define MAX_RANKS 256

/* Action kinds as the trace names them: "3F1", "0B2", "SEND_F 0F1->r1", "OPT". */
enum { K_F, K_B, K_I, K_W, K_R, K_SEND, K_RECV, K_OPT, K_COUNT };
static const char *kind_names[K_COUNT] = {"F", "B", "I", "W", "R", "SEND", "RECV", "OPT"};

static int kind_of(const char *name)
{
    if (!strncmp(name, "SEND", 4)) return K_SEND;
    if (!strncmp(name, "RECV", 4)) return K_RECV;
    if (!strcmp(name, "OPT")) return K_OPT;
    const char *p = name;
    while (*p >= '0' && *p <= '9') p++;
    switch (*p) {
    case 'F':
        return K_F;
    case 'B':
        return K_B;
    case 'I':
        return K_I;
    case 'W':
        return K_W;
    case 'R':
        return K_R;
    default:
        return -1;
    }
}

typedef struct rank_stats {
    char label[128];
    double us[K_COUNT];
    long n[K_COUNT];
    double first, last;
    bool seen;
} rank_stats;

/* ------------------------------------------------------------------------------------------------
 * --svg: one step's measured timeline drawn as `sluice schedule --format svg` draws the planned
 * one. The step's compute actions become a schedule (in the order each rank ran them) and their
 * measured start and end times its simulation, in units of the step's mean forward time. */

/* The schedule's name in the run directory's plan.json, if there is one. */
static void schedule_name(const char *path, char *name, size_t cap)
{
    char file[1200], *text;
    size_t len;
    snprintf(name, cap, "measured");
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) return;
    snprintf(file, sizeof file, "%s/plan.json", path);
    if (sl_read_file(file, &text, &len) != SL_OK) {
        sl_clear_error();
        return;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const char *n = cJSON_GetStringValue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(root, "pipeline"), "schedule"));
    if (n) snprintf(name, cap, "%s", n);
    cJSON_Delete(root);
}

static int write_svg(const char *run, const cJSON *events, int nranks, int step, const char *out)
{
    sl_timeline_step st;
    int rc = sl_timeline_step_load(events, nranks, step, &st);
    sl_timed_action *const *ev = st.ev;
    const size_t *n = st.n;
    /* The shape and the time unit (the mean forward) from the events. */
    int mbs = 0, stages = 0;
    bool split = false;
    double t0 = INFINITY, t1 = -INFINITY, fsum = 0, busy = 0;
    long nf = 0;
    for (int r = 0; r < nranks && rc == SL_OK; r++)
        for (size_t i = 0; i < n[r]; i++) {
            const sl_timed_action *t = &ev[r][i];
            mbs = SL_MAX(mbs, t->a.mb + 1);
            stages = SL_MAX(stages, t->a.stage + 1);
            split |= t->a.type == SL_ACTION_I || t->a.type == SL_ACTION_W;
            t0 = SL_MIN(t0, t->t0);
            t1 = SL_MAX(t1, t->t1);
            busy += t->t1 - t->t0;
            if (t->a.type == SL_ACTION_F) fsum += t->t1 - t->t0, nf++;
        }
    double unit = nf && fsum > 0 ? fsum / (double)nf : 1;
    char name[16];
    schedule_name(run, name, sizeof name);
    sl_schedule *s = NULL;
    sl_schedule_sim sim = {0};
    if (rc == SL_OK) {
        sl_schedule_params sp = {.name = name,
                                 .ranks = nranks,
                                 .microbatches = SL_MAX(mbs, 1),
                                 .chunks = SL_MAX((stages + nranks - 1) / nranks, 1)};
        rc = sl_schedule_create(&sp, split, &s);
    }
    sim.ranks = nranks;
    if (rc == SL_OK) {
        sim.start = calloc((size_t)nranks, sizeof *sim.start);
        sim.end = calloc((size_t)nranks, sizeof *sim.end);
        sim.peak_activations = calloc((size_t)nranks, sizeof *sim.peak_activations);
        if (!sim.start || !sim.end || !sim.peak_activations) rc = SL_ENOMEM;
    }
    for (int r = 0; r < nranks && rc == SL_OK; r++) {
        sim.start[r] = malloc((n[r] + 1) * sizeof **sim.start);
        sim.end[r] = malloc((n[r] + 1) * sizeof **sim.end);
        if (!sim.start[r] || !sim.end[r]) rc = SL_ENOMEM;
        int held = 0;
        for (size_t i = 0; i < n[r] && rc == SL_OK; i++) {
            const sl_timed_action *t = &ev[r][i];
            rc = sl_schedule_append(s, r, &t->a);
            sim.start[r][i] = (t->t0 - t0) / unit;
            sim.end[r][i] = (t->t1 - t0) / unit;
            held += t->a.type == SL_ACTION_F                               ? 1
                    : t->a.type == SL_ACTION_B || t->a.type == SL_ACTION_I ? -1
                                                                           : 0;
            sim.peak_activations[r] = SL_MAX(sim.peak_activations[r], held);
        }
    }
    sim.makespan = t1 > t0 ? (t1 - t0) / unit : 0;
    sim.bubble_ratio = t1 > t0 ? 1.0 - busy / (nranks * (t1 - t0)) : 0;
    FILE *f = rc == SL_OK ? fopen(out, "w") : NULL;
    if (rc == SL_OK && !f) rc = sl_fail(SL_EIO, "cannot write '%s'", out);
    if (rc == SL_OK) rc = sl_schedule_write_svg(f, s, &sim);
    if (f && fclose(f) != 0 && rc == SL_OK) rc = sl_fail(SL_EIO, "cannot write '%s'", out);
    if (rc == SL_OK)
        printf("wrote %s: step %d as measured, 1 unit = %.3f ms (the step's mean forward), "
               "step %.2f ms, bubble %.4f\n",
               out, step, unit / 1e3, (t1 - t0) / 1e3, sim.bubble_ratio);
    sl_schedule_sim_free(&sim);
    sl_schedule_free(s);
    sl_timeline_step_free(&st);
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice trace RUN_DIR|TRACE_JSON [--json] [--svg OUT.svg [--step N]]\n\n"
            "Summarises a run's trace.json (written by `sluice train` into output.dir): per\n"
            "rank, the time spent in forward (F), backward (B, or I and W), recompute (R),\n"
            "sends, receives (waiting for a neighbour) and the optimizer, and the idle share;\n"
            "then step N's critical path: from the action that ended last back through what\n"
            "each action waited for (the action before it on its rank, or its input from\n"
            "another rank), split into computing, waiting on links and the gaps between a\n"
            "rank's own actions, which the simulator's predicted step leaves out.\n"
            "The trace itself opens in Perfetto (ui.perfetto.dev) or chrome://tracing.\n\n"
            "  --svg OUT.svg  draw step N's measured timeline as `sluice schedule --format svg`\n"
            "                 draws the planned one (time in units of the step's mean forward)\n"
            "  --step N       the step to draw and follow (default 1, or 0 in a trace of one:\n"
            "                 step 0 opens devices and links; an evaluation between steps is\n"
            "                 drawn with the step after it)\n");
}

int sl_cmd_trace(int argc, char **argv)
{
    const char *path = NULL, *svg = NULL;
    int json = 0, step = 1, step_given = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--svg") && i + 1 < argc) {
            svg = argv[++i];
        } else if (!strcmp(argv[i], "--step") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 1 << 30) {
                fprintf(stderr, "sluice trace: --step needs a step number >= 0\n");
                return 2;
            }
            step = (int)v;
            step_given = 1;
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "sluice trace: unexpected argument '%s' (try --help)\n", argv[i]);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    char file[1200];
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        snprintf(file, sizeof file, "%s/trace.json", path);
    else
        snprintf(file, sizeof file, "%s", path);
    char *text;
    size_t len;
    int st = sl_read_file(file, &text, &len);
    if (st != SL_OK) return sl_cli_error("trace", st);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *events = cJSON_GetObjectItem(root, "traceEvents"), *ev0;
    if (!cJSON_IsArray(events)) {
        cJSON_Delete(root);
        sl_fail(SL_EFORMAT, "%s is not a Chrome trace (no traceEvents array)", file);
        return sl_cli_error("trace", SL_EFORMAT);
    }
    int nr = 0; /* ranks */
    cJSON_ArrayForEach(ev0, events)
    {
        int tid = sl_to_int(cJSON_GetNumberValue(cJSON_GetObjectItem(ev0, "tid")), -1);
        if (tid >= 0 && tid < MAX_RANKS) nr = SL_MAX(nr, tid + 1);
    }
    if (svg) {
        st = nr ? write_svg(path, events, nr, step, svg)
                : sl_fail(SL_EFORMAT, "%s holds no rank's events", file);
        cJSON_Delete(root);
        return st == SL_OK ? 0 : sl_cli_error("trace", st);
    }
    /* The critical path of the step asked for, else of step 1, or 0 when there is only one. */
    sl_critical_path cp;
    st = nr ? sl_timeline_critical_path(events, nr, step, &cp) : SL_EINVAL;
    if (st != SL_OK && !step_given && nr) st = sl_timeline_critical_path(events, nr, step = 0, &cp);
    if (st != SL_OK && step_given) {
        cJSON_Delete(root);
        return sl_cli_error("trace", st);
    }
    sl_clear_error();
    bool have_cp = st == SL_OK;
    rank_stats *ranks = calloc(MAX_RANKS, sizeof *ranks);
    if (!ranks) return sl_cli_error("trace", SL_ENOMEM);
    const cJSON *ev;
    cJSON_ArrayForEach(ev, events)
    {
        int tid = sl_to_int(cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "tid")), -1);
        const char *ph = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "ph"));
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "name"));
        if (tid < 0 || tid >= MAX_RANKS || !ph || !name) continue;
        rank_stats *r = &ranks[tid];
        if (!strcmp(ph, "M")) {
            const char *label =
                cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "args"), "name"));
            snprintf(r->label, sizeof r->label, "%s", label ? label : "");
            continue;
        }
        int k = kind_of(name);
        if (strcmp(ph, "X") != 0 || k < 0) continue;
        double ts = cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "ts"));
        double dur = cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "dur"));
        if (!r->seen || ts < r->first) r->first = ts;
        r->seen = true;
        if (ts + dur > r->last) r->last = ts + dur;
        r->us[k] += dur;
        r->n[k]++;
    }
    cJSON_Delete(root);

    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "trace", file);
    cJSON *arr = cJSON_AddArrayToObject(out, "ranks");
    if (!json) {
        printf("%-22s", "rank");
        for (int k = 0; k < K_COUNT; k++) printf(" %9s", kind_names[k]);
        printf(" %9s %6s\n", "span", "idle");
    }
    for (int i = 0; i < nr; i++) {
        rank_stats *r = &ranks[i];
        double span = r->last - r->first, compute = 0;
        for (int k = K_F; k <= K_R; k++) compute += r->us[k];
        compute += r->us[K_OPT];
        double idle = span > 0 ? 1.0 - compute / span : 0;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "rank", i);
        cJSON_AddStringToObject(o, "label", r->label);
        for (int k = 0; k < K_COUNT; k++) {
            char key[32];
            snprintf(key, sizeof key, "%s_ms", kind_names[k]);
            cJSON_AddNumberToObject(o, key, r->us[k] / 1e3);
        }
        cJSON_AddNumberToObject(o, "span_ms", span / 1e3);
        cJSON_AddNumberToObject(o, "idle_ratio", idle);
        cJSON_AddItemToArray(arr, o);
        if (!json) {
            printf("%-22.22s", r->label[0] ? r->label : "?");
            for (int k = 0; k < K_COUNT; k++) printf(" %7.1fms", r->us[k] / 1e3);
            printf(" %7.1fms %5.1f%%\n", span / 1e3, 100 * idle);
        }
    }
    if (have_cp) {
        cJSON *o = cJSON_AddObjectToObject(out, "critical_path");
        cJSON_AddNumberToObject(o, "step", step);
        cJSON_AddNumberToObject(o, "span_ms", cp.span / 1e3);
        cJSON_AddNumberToObject(o, "compute_ms", cp.compute / 1e3);
        cJSON_AddNumberToObject(o, "actions", cp.actions);
        cJSON_AddNumberToObject(o, "link_wait_ms", cp.link / 1e3);
        cJSON_AddNumberToObject(o, "hops", cp.hops);
        cJSON_AddNumberToObject(o, "rank_gap_ms", cp.rank / 1e3);
        cJSON_AddNumberToObject(o, "rank_gaps", cp.gaps);
        cJSON_AddNumberToObject(o, "start_ms", cp.start / 1e3);
    }
    if (have_cp && !json) {
        printf("\ncritical path of step %d: %.2f ms from its first action to its last\n", step,
               cp.span / 1e3);
        printf("  computing           %8.2f ms  %d actions\n", cp.compute / 1e3, cp.actions);
        printf("  waiting on links    %8.2f ms  %d hops%s", cp.link / 1e3, cp.hops,
               cp.hops ? "" : "\n");
        if (cp.hops) printf(", %.3f ms each\n", cp.link / 1e3 / cp.hops);
        printf("  between actions     %8.2f ms  %d gaps%s", cp.rank / 1e3, cp.gaps,
               cp.gaps ? "" : "\n");
        if (cp.gaps)
            printf(", %.3f ms each (sends, data already there, the runtime)\n",
                   cp.rank / 1e3 / cp.gaps);
        if (cp.start > 0) printf("  before the path     %8.2f ms\n", cp.start / 1e3);
    }
    if (json) {
        char *t = cJSON_Print(out);
        printf("%s\n", t ? t : "{}");
        free(t);
    }
    cJSON_Delete(out);
    free(ranks);
    return 0;
}
