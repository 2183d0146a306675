/* `sluice schedule`: generate, validate and simulate a pipeline schedule, and show it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cli/cli.h"
#include "core/core.h"
#include "runtime/config/config.h"
#include "runtime/plan/plan.h"
#include "runtime/schedule/schedule.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sluice schedule --schedule NAME --stages D --microbatches M [--chunks V]\n"
        "                       [--recompute] [--tied] [--clip] [--costs F,B[,W]] [--latency L]\n"
        "                       [--queue-depth Q] [--format FMT] [--json]\n"
        "       sluice schedule --check FILE.csv [--costs F,B[,W]] [--latency L]\n"
        "                       [--queue-depth Q] [--format FMT] [--json]\n"
        "       sluice schedule --config FILE [--costs F,B[,W]] [--latency L]\n"
        "                       [--queue-depth Q] [--format FMT] [--json]\n\n"
        "Generates the action list of every rank, checks it (every dependency, and a run of\n"
        "all ranks over links that hold Q messages), simulates it in time and prints it.\n"
        "With --check it reads a schedule in PyTorch pipelining's action CSV instead (one row\n"
        "per rank: 0F0,0I0,0W0 or with transfers 0SEND_F0,1RECV_B0; the form _dump_csv writes),\n"
        "proves it completes or names the rank and action that waits forever, and simulates it.\n"
        "With --config it shows the schedule sluice train FILE runs (model, partition and\n"
        "pipeline from the config) and each rank's peak stash bytes from the layer table.\n\n"
        "  --check FILE.csv    a PyTorch schedule CSV, compute-only or with communication; its\n"
        "                      links are unbounded (PyTorch's sends do not block) unless\n"
        "                      --queue-depth is given\n"
        "  --config FILE       a training config: its pipeline's schedule, and beside the\n"
        "                      peak counts each rank's most bytes of stashed activations and\n"
        "                      stage inputs held at once (summary.json's stash_bytes_predicted)\n"
        "  --schedule NAME     gpipe, 1f1b, interleaved, looped-bfs, zb-h1, zb-v, dualpipev or\n"
        "                      chimera (D and M even)\n"
        "  --stages D          number of ranks (pipeline.stages); D >= 1\n"
        "  --microbatches M    micro-batches per step; M >= 1 (interleaved: a multiple of D;\n"
        "                      zb-v: >= 2D-1; dualpipev: >= 2D)\n"
        "  --chunks V          model chunks per rank: 1, >= 2 for interleaved, any for\n"
        "                      looped-bfs, 2 for zb-v and dualpipev (their default); there are\n"
        "                      D*V model stages, stage s on rank s mod D, or in a V for zb-v and\n"
        "                      dualpipev (rank r holds stages r and 2D-1-r)\n"
        "  --recompute         stash only each stage's input; recompute (R) before backward\n"
        "  --tied              the first and last stage hold copies of a tied parameter (a\n"
        "                      GPT's wte and lm_head): TIED sums their gradients before OPT\n"
        "  --clip              gradient clipping: NORM combines the gradient norm of every\n"
        "                      rank before OPT (with D >= 2)\n"
        "  --costs F,B[,W]     time of one forward, one backward per stage and micro-batch\n"
        "                      (default 1,2); W is the weight-gradient part of B, used by\n"
        "                      zb-h1, zb-v and dualpipev (default B/2; I costs B-W); R costs F\n"
        "  --latency L         time a transfer takes between ranks (default 0)\n"
        "  --queue-depth Q     messages a link holds before a send blocks (default %d)\n"
        "  --format FMT        text (a timeline table), json, svg, pytorch (PyTorch's\n"
        "                      compute-only CSV) or pytorch-comms (its CSV with SEND/RECV)\n"
        "                      (default text)\n"
        "  --json              same as --format json\n",
        SL_SCHEDULE_QUEUE_DEPTH);
}

static int bad(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "sluice schedule: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return 2;
}

/* A whole decimal integer, or -1 with a message. */
static int parse_int(const char *opt, const char *text, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < -1000000000L || v > 1000000000L)
        return bad("%s needs a whole number (got '%s')", opt, text);
    *out = (int)v;
    return 0;
}

static int parse_double(const char *opt, const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= 0) || v > 1e12)
        return bad("%s needs a number >= 0 (got '%s')", opt, text);
    *out = v;
    return 0;
}

static int parse_costs(const char *text, sl_schedule_costs *c)
{
    double v[3] = {0, 0, 0};
    int n = 0;
    const char *p = text;
    while (n < 3) {
        char *end;
        errno = 0;
        v[n] = strtod(p, &end);
        if (errno || end == p || !(v[n] > 0) || v[n] > 1e12) break;
        n++;
        if (*end == 0) {
            p = end;
            break;
        }
        if (*end != ',') break;
        p = end + 1;
    }
    if (n < 2 || *p)
        return bad("--costs needs F,B or F,B,W: positive numbers, e.g. 1,2 or 1,2,1 (got '%s')%s",
                   text, "");
    c->f = v[0];
    c->b = v[1];
    c->w = n == 3 ? v[2] : 0;
    return 0;
}

static int show(const sl_schedule *s, const sl_schedule_sim *sim, const char *format)
{
    if (!strcmp(format, "json")) return sl_schedule_write_json(stdout, s, sim);
    if (!strcmp(format, "svg")) return sl_schedule_write_svg(stdout, s, sim);
    if (!strcmp(format, "pytorch")) return sl_schedule_write_pytorch(stdout, s, false);
    if (!strcmp(format, "pytorch-comms")) return sl_schedule_write_pytorch(stdout, s, true);
    return sl_schedule_write_text(stdout, s, sim);
}

/* --check FILE.csv: read, prove, simulate, show. A file that does not describe a schedule that
 * completes is a user error (exit 2) with the message that names the rank and action. */
static int check_file(const char *path, sl_schedule_costs *costs, const char *format)
{
    char *text;
    size_t len;
    int st = sl_read_file(path, &text, &len);
    if (st) {
        fprintf(stderr, "sluice schedule: %s\n", sl_last_error());
        return 2;
    }
    sl_schedule *s = NULL;
    st = sl_schedule_read_pytorch(text, &s);
    free(text);
    if (!st && !costs->queue_depth) {
        /* PyTorch's isend never blocks: links as deep as the schedule's transfers. */
        size_t n = 1;
        for (int r = 0; r < s->ranks; r++) n += s->count[r];
        costs->queue_depth = (int)SL_MIN(n, (size_t)1 << 30);
    }
    sl_schedule_sim sim;
    if (!st) st = sl_schedule_simulate(s, costs, &sim);
    if (st == SL_EINVAL || st == SL_EFORMAT || st == SL_EDEADLOCK) {
        fprintf(stderr, "sluice schedule: %s: %s\n", path, sl_last_error());
        sl_schedule_free(s);
        return 2;
    }
    if (st) {
        sl_schedule_free(s);
        return sl_cli_error("schedule", st);
    }
    if (!strcmp(format, "text"))
        printf("%s: completes (%d ranks, %d stages, %d micro-batches)\n", path, s->ranks, s->stages,
               s->microbatches);
    st = show(s, &sim, format);
    sl_schedule_sim_free(&sim);
    sl_schedule_free(s);
    return st ? sl_cli_error("schedule", st) : 0;
}

/* Simulates a valid schedule with `costs` and shows it; the exit status. */
static int simulate_and_show(const sl_schedule *s, const sl_schedule_costs *costs,
                             const char *format)
{
    sl_schedule_sim sim;
    int st = sl_schedule_simulate(s, costs, &sim);
    if (st == SL_EINVAL && (costs->f || costs->latency)) {
        /* A valid schedule, so EINVAL here is about the costs the user gave. */
        fprintf(stderr, "sluice schedule: %s\n", sl_last_error());
        return 2;
    }
    if (st) return sl_cli_error("schedule", st);
    st = show(s, &sim, format);
    sl_schedule_sim_free(&sim);
    if (st == SL_EINVAL) {
        fprintf(stderr, "sluice schedule: %s\n", sl_last_error());
        return 2;
    }
    return st ? sl_cli_error("schedule", st) : 0;
}

/* --config FILE: the plan's schedule (as sluice train FILE builds it), simulated with the layer
 * table's bytes per stage, so that each rank's peak stash bytes show beside the counts. */
static int from_config(const char *path, sl_schedule_costs *costs, const char *format)
{
    sl_config cfg;
    int st = sl_config_load(path, NULL, 0, &cfg);
    if (st) return sl_cli_error("schedule", st);
    sl_plan plan;
    st = sl_plan_build(&cfg, &plan);
    sl_config_free(&cfg);
    if (st) return sl_cli_error("schedule", st);
    if (plan.note[0]) fprintf(stderr, "sluice schedule: %s\n", plan.note);
    const int S = plan.sched->stages;
    double *bytes = sl_alloc(sizeof(double) * (size_t)(2 * S));
    int rc = bytes ? 0 : sl_cli_error("schedule", SL_ENOMEM);
    if (bytes) {
        sl_plan_stage_bytes(&plan, bytes, bytes + S);
        costs->stage_stash_bytes = bytes;
        costs->stage_input_bytes = bytes + S;
        rc = simulate_and_show(plan.sched, costs, format);
    }
    free(bytes);
    sl_plan_free(&plan);
    return rc;
}

int sl_cmd_schedule(int argc, char **argv)
{
    sl_schedule_params p = {.name = NULL, .ranks = 0, .microbatches = 0, .chunks = 0};
    sl_schedule_costs costs = {0};
    const char *format = "text", *check = NULL, *config = NULL;
    bool have_d = false, have_m = false, have_v = false, tied = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--recompute")) {
            p.recompute = true;
            continue;
        }
        if (!strcmp(a, "--tied")) {
            tied = true;
            continue;
        }
        if (!strcmp(a, "--clip")) {
            p.norm = true;
            continue;
        }
        if (!strcmp(a, "--json")) {
            format = "json";
            continue;
        }
        static const char *const with_value[] = {
            "--schedule", "--stages",  "--microbatches", "--chunks", "--costs",
            "--format",   "--latency", "--queue-depth",  "--check",  "--config"};
        bool known = false;
        for (size_t k = 0; k < SL_ARRAY_LEN(with_value); k++) known |= !strcmp(a, with_value[k]);
        if (!known) {
            bad("unknown option '%s'%s; see sluice schedule --help", a, "");
            return 2;
        }
        if (i + 1 >= argc) return bad("%s needs a value%s; see sluice schedule --help", a, "");
        const char *v = argv[++i];
        int rc = 0;
        if (!strcmp(a, "--schedule"))
            p.name = v;
        else if (!strcmp(a, "--stages"))
            rc = parse_int(a, v, &p.ranks), have_d = true;
        else if (!strcmp(a, "--microbatches"))
            rc = parse_int(a, v, &p.microbatches), have_m = true;
        else if (!strcmp(a, "--chunks"))
            rc = parse_int(a, v, &p.chunks), have_v = true;
        else if (!strcmp(a, "--costs"))
            rc = parse_costs(v, &costs);
        else if (!strcmp(a, "--latency"))
            rc = parse_double(a, v, &costs.latency);
        else if (!strcmp(a, "--queue-depth")) {
            rc = parse_int(a, v, &costs.queue_depth);
            if (!rc && costs.queue_depth < 1)
                rc = bad("--queue-depth must be at least 1 (got %s)%s", v, "");
        } else if (!strcmp(a, "--format")) {
            if (strcmp(v, "text") && strcmp(v, "json") && strcmp(v, "svg") &&
                strcmp(v, "pytorch") && strcmp(v, "pytorch-comms"))
                rc = bad("--format must be text, json, svg, pytorch or pytorch-comms (got "
                         "'%s')%s",
                         v, "");
            format = v;
        } else if (!strcmp(a, "--check")) {
            check = v;
        } else if (!strcmp(a, "--config")) {
            config = v;
        }
        if (rc) return rc;
    }
    if (check && config) return bad("--check and --config exclude each other%s%s", "", "");
    if (config) {
        if (p.name || have_d || have_m || have_v || p.recompute || tied || p.norm)
            return bad("--config takes the schedule from %s: leave out --schedule, --stages, "
                       "--microbatches, --chunks, --recompute, --tied and --clip (set them in "
                       "the config's pipeline, train.microbatches, model and train.grad_clip)%s",
                       config, "");
        return from_config(config, &costs, format);
    }
    if (check) {
        if (p.name || have_d || have_m || have_v || p.recompute || tied || p.norm)
            return bad("--check reads the whole schedule from %s: leave out --schedule, "
                       "--stages, --microbatches, --chunks, --recompute, --tied and --clip%s",
                       check, "");
        return check_file(check, &costs, format);
    }
    if (!p.name || !have_d || !have_m)
        return bad("needs --schedule NAME, --stages D and --microbatches M%s%s; see sluice "
                   "schedule --help",
                   "", "");
    if (have_v && p.chunks < 1) {
        fprintf(stderr, "sluice schedule: --chunks must be at least 1 (got %d)\n", p.chunks);
        return 2;
    }

    int nstages = p.ranks * (p.chunks ? p.chunks : 1);
    if (p.name &&
        (!strcmp(p.name, "zb-v") || !strcmp(p.name, "dualpipev") || !strcmp(p.name, "chimera")))
        nstages = 2 * p.ranks;
    if (tied && nstages > 1) { /* the model's first and last stage (chimera: of one replica) */
        p.tied_stages[0] = 0;
        p.tied_stages[1] = p.name && !strcmp(p.name, "chimera") ? p.ranks - 1 : nstages - 1;
    }
    sl_schedule *s = NULL;
    int st = sl_schedule_generate(&p, &s);
    if (st == SL_EINVAL) {
        fprintf(stderr, "sluice schedule: %s\n", sl_last_error());
        return 2;
    }
    if (st) return sl_cli_error("schedule", st);
    st = simulate_and_show(s, &costs, format);
    sl_schedule_free(s);
    return st;
}
